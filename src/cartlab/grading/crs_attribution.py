"""ASTCT CRS fever attribution when events.csv was not given at all (``Study.absent``; review 40 A1).

ASTCT 2019 (Lee DW et al., Biol Blood Marrow Transplant 2019;25:625, Table 1 footnote) counts a
fever "not attributable to any other cause". cartlab attributes a fever to another cause through an
event of ``other_cause_events`` (``infection``) near the day, or an antipyretic given for infection
(:func:`cartlab.grading.crs_features.other_cause_days`). An events.csv not given at all (not a
header-only file, which is "none recorded") does not say that no infection happened: with option
``absent_events="unknown"`` (default; convention ``crs.conv.absent_events``) a fever day that no
recorded intervention already attributes could have been attributed to an infection, so its lower
grade ``grade_min`` is the grade without that fever (0 with ``other_cause_scope="day"``; the
hypotension/hypoxia a waived fever leaves with "fever"), and ``missing_inputs`` names
:data:`MISSING_EVENTS`. ``grade`` and ``grade_max`` keep their meaning (the fever counted).
``"none_happened"`` reads the absent file as a header-only one (cartlab before session 40).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from cartlab.io.absent_files import table_absent

__all__ = ["ABSENT_EVENTS", "CONV", "MISSING_EVENTS", "attribution_unknown", "open_attribution"]

#: values of CrsOptions.absent_events
ABSENT_EVENTS = ("unknown", "none_happened")
#: the ``missing_inputs`` entry of a fever day an absent events.csv leaves open
MISSING_EVENTS = "events.csv (not given): infection unknown"
CONV = "crs.conv.absent_events"


def attribution_unknown(study, opts: dict[str, Any]) -> bool:
    """True when events.csv was not given, option ``absent_events`` is "unknown" and the fever
    attribution reads events (``other_cause_attribution`` on, ``other_cause_events`` not empty)."""
    mode = opts.get("absent_events") or "unknown"
    if mode not in ABSENT_EVENTS:
        raise ValueError(f"absent_events must be one of {ABSENT_EVENTS}, not {mode!r}")
    return (mode == "unknown" and bool(opts.get("other_cause_attribution"))
            and bool(opts.get("other_cause_events")) and table_absent(study, "events"))


def open_attribution(study, f: pl.DataFrame, opts: dict[str, Any]) -> pl.DataFrame:
    """``f`` (the ASTCT daily frame: grade, grade_max, missing_inputs, reason, fever,
    fever_other_cause, fever_waived, hypotension_grade, hypoxia_grade) with ``grade_min``: = ``grade``,
    except, when :func:`attribution_unknown`, on a fever day not attributed to another cause and not a
    CRS death (grade 5): the grade without the fever (see the module docstring)."""
    order = [c for c in f.columns if c != "grade_min"]
    order.insert(order.index("grade") + 1, "grade_min")
    if not attribution_unknown(study, opts):
        return f.with_columns(pl.col("grade").alias("grade_min")).select(order)
    fever = pl.col("fever").fill_null(False) & ~pl.col("fever_other_cause").fill_null(False)
    opened = fever & (pl.col("grade") >= 1) & (pl.col("grade") < 5)
    support = pl.max_horizontal(pl.col("hypotension_grade").fill_null(0), pl.col("hypoxia_grade").fill_null(0))
    without = (pl.lit(0) if opts["other_cause_scope"] == "day"
               else pl.when(pl.col("fever_waived").fill_null(False)).then(support).otherwise(pl.lit(0)))
    lower = pl.when(opened).then(pl.min_horizontal(pl.col("grade"), without)).otherwise(pl.col("grade"))
    low = opened & (lower < pl.col("grade"))
    note = pl.format("; grade_min {}: the fever could be attributed to an infection (events.csv not given: "
                     "infection unknown; option crs.absent_events=unknown, convention {})", lower, pl.lit(CONV))
    return f.with_columns(
        lower.cast(f.schema["grade"]).alias("grade_min"),
        pl.when(low).then(pl.col("missing_inputs").list.concat(pl.lit([MISSING_EVENTS], dtype=pl.List(pl.String))))
        .otherwise(pl.col("missing_inputs")).alias("missing_inputs"),
        pl.when(low).then(pl.concat_str(pl.col("reason"), note)).otherwise(pl.col("reason")).alias("reason"),
    ).select(order)


#: the short form of the absent-interventions text in ``cartlab explain``'s day rows (review 40 C2:
#: the long text is said once, in the header)
SHORT_INTERVENTIONS = "if interventions were given: interventions.csv not given"


def explain_days(daily: pl.DataFrame) -> pl.DataFrame:
    """``cartlab explain --what crs`` rows: the absent-file texts of each day's reason shortened
    (the header says them once, :func:`explain_range`)."""
    from cartlab.grading.absent_interventions import MISSING_TEXT

    if "reason" not in daily.columns:
        return daily
    return daily.with_columns(pl.col("reason").str.replace(MISSING_TEXT, SHORT_INTERVENTIONS, literal=True)
                              .str.replace(r"; grade_min (\d): the fever could be attributed to an infection \(events\.csv "
                                           r"not given: infection unknown; [^)]*\)", "; grade_min $1 (events.csv not given: "
                                           "infection unknown)"))


def explain_range(daily: pl.DataFrame, s: dict[str, Any]) -> str:
    """The ``cartlab explain --what crs`` header's range ("; up to grade 4 on days 48-60: interventions.csv
    not given (...); TEMP not recorded"; "; at least grade 0: ..."): a file not given is named once, with
    what it leaves unknown, not as "not recorded" (review 40 C2)."""
    from cartlab._days import days_text
    from cartlab.grading.absent_interventions import MISSING, MISSING_TEXT

    out, g, gmax, gmin = "", s.get("crs_grade_astct"), s.get("crs_grade_astct_max"), s.get("crs_grade_astct_min")
    if g is not None and gmin is not None and gmin < g:
        days = daily.filter(pl.col("grade_min") < pl.col("grade"))["day"].to_list() if "grade_min" in daily.columns else []
        out += (f"; at least grade {gmin}: the fever on {'day' if len(days) == 1 else 'days'} {days_text(days)} could "
                "be attributed to an infection (events.csv not given: infection unknown; option crs.absent_events, "
                f"convention {CONV})")
    if g is None or gmax is None or gmax <= g:
        return out
    top = daily.filter(pl.col("grade_max") == gmax) if "grade_max" in daily.columns else daily
    names = (list(dict.fromkeys(n for ns in top["missing_inputs"].to_list() for n in (ns or [])))
             if "missing_inputs" in top.columns else [])
    parts = [f"interventions.csv not given ({MISSING_TEXT.split(': interventions.csv')[0].removeprefix('if ')}: "
             "unknown; option crs.absent_interventions)" if n == MISSING else n.replace(" (not given)", " not given")
             for n in names if "(not given)" in n and n != MISSING_EVENTS]
    rest = [n for n in names if "(not given)" not in n]
    if rest:
        parts.append(f"{', '.join(rest)} not recorded")
    on = f"{'day' if top.height == 1 else 'days'} {days_text(top['day'].to_list())}"
    return out + f"; up to grade {gmax} on {on}" + (f": {'; '.join(parts)}" if parts else "")
