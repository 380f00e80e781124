"""ASTCT CRS and T-ICAHT when interventions.csv was not given at all (``Study.absent``; review 37 A2).

The project rule "missing is not negative": an absent interventions file does not say that no
vasopressor, oxygen, tocilizumab or corticosteroid was given, only that none is known. ASTCT 2019
(Lee DW et al., Biol Blood Marrow Transplant 2019;25:625, Table 1) grades hypotension with
vasopressors and hypoxia with oxygen up to grade 4 ("multiple vasopressors (excluding vasopressin)";
"positive pressure"), and its footnote waives the fever once tocilizumab or steroids were given.
With option ``absent_interventions="unknown"`` (default) every day the engine grades on which such an
intervention could raise the grade gets ``grade_max`` 4 and ``missing_inputs`` naming
:data:`MISSING`; the lower grade is the grade without any intervention (unchanged). ``"none_given"``
reads the absent file as an empty one (cartlab before session 37).
"""

from __future__ import annotations

import polars as pl

__all__ = ["CRS_TOP", "MISSING", "MISSING_TEXT", "TX_MISSING", "interventions_unknown", "open_crs_days",
           "open_untransfused"]

#: the ``missing_inputs`` entry of a day an absent interventions.csv leaves open
MISSING = "interventions.csv (not given)"
#: what the day's reason says about it (after "up to <grade>")
MISSING_TEXT = ("if interventions were given (a vasopressor or oxygen with the fever; after a possible fever day, "
                "tocilizumab/corticosteroid waiving the fever with a vasopressor or oxygen): interventions.csv not "
                "given (option crs.absent_interventions=unknown)")
#: ASTCT 2019 Table 1: multiple vasopressors (hypotension) or positive pressure (hypoxia) is grade 4
CRS_TOP = 4


def interventions_unknown(study, option: str) -> bool:
    """True when ``study`` was read from a folder without interventions.csv and ``option`` (the
    engine's ``absent_interventions``) is ``unknown``."""
    return option == "unknown" and "interventions" in getattr(study, "absent", frozenset())


def open_crs_days(f: pl.DataFrame, fever_day: pl.Expr, closed: pl.Expr) -> pl.DataFrame:
    """``f`` (the ASTCT daily frame with ``grade_max`` and ``missing_inputs``) with the days an unknown
    intervention could raise raised to :data:`CRS_TOP` and naming :data:`MISSING`.

    ``fever_day``: the day's fever counts toward CRS or could (no temperature recorded): a vasopressor
    or oxygen could raise it. A later day could have its fever waived by a tocilizumab/corticosteroid
    not known to us, so it is open too - but only on or after the subject's first such possible fever
    day, whatever ``fever_waiver_requires_crs``: a subject with a temperature every day and never a
    fever is not opened (ASTCT 2019: fever is the sign CRS starts
    with; the agents that waive it are given for CRS; cartlab convention, review 37 diff B1).
    ``closed``: days no intervention can raise (a CRS death; a fever day attributed to another cause
    with ``other_cause_scope="day"``)."""
    first = (f.filter(fever_day & ~closed).group_by("subject_id")
             .agg(pl.col("day").min().alias("_first_fever")))
    f = f.join(first, on="subject_id", how="left")
    waivable = pl.col("day") >= pl.col("_first_fever")
    opened = ~closed & (fever_day | waivable.fill_null(False)) & (pl.col("grade_max") < CRS_TOP)
    return f.with_columns(
        pl.when(opened).then(pl.lit(CRS_TOP)).otherwise(pl.col("grade_max")).cast(f.schema["grade_max"])
        .alias("grade_max"),
        pl.when(opened).then(pl.col("missing_inputs").list.concat(pl.lit([MISSING], dtype=pl.List(pl.String))))
        .otherwise(pl.col("missing_inputs")).alias("missing_inputs"),
    ).drop("_first_fever")


#: T-ICAHT: what the daily reason and the grade's reason say of a count an unknown transfusion leaves open
TX_MISSING = "interventions.csv not given (option t_icaht.absent_interventions=unknown)"


def open_untransfused(daily: pl.DataFrame, levels: dict[str, float], masked: list[str]) -> pl.DataFrame:
    """T-ICAHT daily series (Rejeski et al., Blood 2025, Table 1: a count >= 20 within 7 days of a
    platelet transfusion given after an own count < 20 is not a recovery) with the transfusions
    unknown: on every day with a count on or after the subject's first day below a masked level
    (``transfusion_supported_levels``), a level at or above it that the count is not below becomes
    open (flag null: the count may not be the patient's own, chained transfusions keep it so), and the
    reason says why. Before the first count below the level the recorded counts are read as own."""
    if not masked:
        return daily
    floor = min(levels[m] for m in masked)
    opened = [n for n in levels if levels[n] >= floor]
    first = (daily.filter(pl.any_horizontal([pl.col(f"plt_lt_{m}").fill_null(False) for m in masked]))
             .group_by("subject_id").agg(pl.col("day").min().alias("_first_low")))
    daily = daily.join(first, on="subject_id", how="left", maintain_order="left")
    after = pl.col("plt").is_not_null() & (pl.col("day") >= pl.col("_first_low")).fill_null(False)
    hit = after & pl.any_horizontal([(pl.col(f"plt_lt_{n}") == False).fill_null(False) for n in opened])  # noqa: E712
    names = "/".join(f"{levels[n]:g}" for n in sorted(opened, key=lambda n: levels[n]))
    note = pl.format("; a platelet transfusion after the count below {} on day {} could make this count not the "
                     "patient's own: below {} is open ({})", pl.lit("/".join(f"{levels[m]:g}" for m in masked)),
                     pl.col("_first_low"), pl.lit(names), pl.lit(TX_MISSING))
    return daily.with_columns(
        *[pl.when(after & (pl.col(f"plt_lt_{n}") == False)).then(None)  # noqa: E712
          .otherwise(pl.col(f"plt_lt_{n}")).alias(f"plt_lt_{n}") for n in opened],
        pl.when(hit).then(pl.concat_str(pl.col("reason"), note)).otherwise(pl.col("reason")).alias("reason"),
    ).drop("_first_low")
