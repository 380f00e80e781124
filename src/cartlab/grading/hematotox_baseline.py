"""How a pre-lymphodepletion baseline was chosen, for the CAR-HEMATOTOX and EASIX reasons (review 40).

Both scores are "determined prior to lymphodepleting chemotherapy (e.g. day -5)" (EMCL score page,
quoted in ``criteria/car_hematotox_2021.yaml``); EASIX-pre is "measured immediately before the start of
lymphodepletion" (Korell et al., Front Immunol 2022). The baseline rule
(:func:`cartlab.grading.hematotox._pre_ld_values`) is a cartlab convention; these helpers make each
output row say which rule chose its day and how old each value is:

* :func:`with_timepoint_columns` / :func:`timepoint_prefix` - EASIX (review 40 B1): ``baseline_rule``
  and the reason's opening "pre_ld values taken on or before day -5 (first lymphodepletion dose: ...)"
  or "... before day 0 (no lymphodepletion dose recorded ...; not read as lymphodepletion: decitabine ...)".
* :func:`age_text` - CAR-HEMATOTOX (review 40 B4): "195 day(s) before the first lymphodepletion dose".
* :func:`easix_timepoints` - EASIX at every timepoint of the option ``easix.timepoints`` (review 40 B5):
  Pennisi 2021 computes the scores "at lymphodepletion, day -1, day +1 and day +3"; Korell 2022 uses
  EASIX-pre. Default ``[pre_ld]``; ``--set 'easix.timepoints=[pre_ld,-1,1,3]'`` adds the other days.
* :func:`after_baseline_days` - CAR-HEMATOTOX (review 40 B4): the days a missing item was measured
  only after the first lymphodepletion dose (not baseline), so "missing" is not read as "never measured".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import polars as pl

from cartlab.errors import InputError
from cartlab.grading.hemato_common import fmt_expr, param_obs, subject_order
from cartlab.model import Study
from cartlab.provenance import EVIDENCE

__all__ = ["after_baseline_days", "age_text", "easix_timepoints", "timepoint_prefix", "with_timepoint_columns"]

_SID = "subject_id"
_FIRST_LD = "baseline.first_lymphodepletion_day"


def with_timepoint_columns(f: pl.DataFrame) -> pl.DataFrame:
    """``f`` (EASIX inputs) with ``baseline_rule``, ``_how`` and ``_ld_refs``: null / empty for a
    chosen day or ``each`` (no baseline rule chose those days)."""
    add = []
    if "baseline_rule" not in f.columns:
        add.append(pl.lit(None, dtype=pl.String).alias("baseline_rule"))
    if "_how" not in f.columns:
        add.append(pl.lit(None, dtype=pl.String).alias("_how"))
    if "_ld_refs" not in f.columns:
        add.append(pl.lit([], dtype=EVIDENCE).alias("_ld_refs"))
    f = f.with_columns(add) if add else f
    return f.with_columns(pl.col("_ld_refs").fill_null(pl.lit([], dtype=EVIDENCE)))


def timepoint_prefix() -> pl.Expr:
    """The opening of a pre_ld EASIX reason: which rule chose the day and how ("" for other days)."""
    return (pl.when(pl.col("_how").is_not_null())
            .then(pl.concat_str(pl.lit("pre_ld values taken "), pl.col("_how"), pl.lit(" (rule "),
                                pl.col("baseline_rule"), pl.lit("): ")))
            .otherwise(pl.lit("")))


def age_text(day: pl.Expr) -> pl.Expr:
    """", 195 day(s) before the first lymphodepletion dose (day -5)" / ", 200 day(s) before day 0" for a
    baseline value of ``day`` (uses the frame's ``ref_day`` and ``baseline_rule``); "" on the day itself."""
    age = pl.col("ref_day") - day
    first = pl.col("baseline_rule") == _FIRST_LD
    where = (pl.when(first).then(pl.format("the first lymphodepletion dose (day {})", fmt_expr(pl.col("ref_day"), 6)))
             .otherwise(pl.format("day {}", fmt_expr(pl.col("ref_day"), 6))))
    return (pl.when(day.is_null() | (age <= 0)).then(pl.lit(""))
            .otherwise(pl.format(", {} day(s) before {}", fmt_expr(age, 6), where)))


def after_baseline_days(study: Study, params: Iterable[str], refs: pl.DataFrame, shown: int = 3) -> pl.DataFrame:
    """Per subject, ``_<param>_after``: "day -4 (row), day -1 (row)" - the values of ``param`` measured
    after the first lymphodepletion dose day and before day 0 (not baseline: after chemotherapy), the
    first ``shown`` of them, "and N more"; null when there are none or the baseline is not the first
    lymphodepletion day. ``refs``: ``subject_id``, ``ref_day``, ``baseline_rule``."""
    params = list(params)
    base = refs.filter(pl.col("baseline_rule") == _FIRST_LD).select(_SID, "ref_day")
    obs = (param_obs(study, params).join(base, on=_SID, how="inner")
           .filter((pl.col("d") > pl.col("ref_day").floor()) & (pl.col("day") < 0))
           .sort(_SID, "param", "day", "src_row", nulls_last=True)
           .with_columns(pl.format("day {} ({})", fmt_expr(pl.col("day"), 6), pl.col("ref").fill_null("no row"))
                         .alias("_t")))
    agg = obs.group_by(_SID, "param", maintain_order=True).agg(pl.col("_t").head(shown).str.join(", "), pl.len().alias("_n"))
    agg = agg.with_columns(pl.when(pl.col("_n") > shown).then(pl.format("{}, and {} more", pl.col("_t"), pl.col("_n") - shown))
                           .otherwise(pl.col("_t")).alias("_t"))
    out = refs.select(_SID)
    for p in params:
        out = out.join(agg.filter(pl.col("param") == p).select(_SID, pl.col("_t").alias(f"_{p.lower()}_after")),
                       on=_SID, how="left", maintain_order="left")
    return out


def _timepoint(x) -> str | float:
    """"pre_ld" | "each" | a day (a number, or its text from ``--set``)."""
    if isinstance(x, str) and x.strip() in ("pre_ld", "each"):
        return x.strip()
    try:
        return float(x)
    except (TypeError, ValueError):
        raise InputError(f"easix.timepoints: {x!r} is not pre_ld, each or a day (a number)") from None


def easix_timepoints(study: Study, options, timepoints, derive: Callable) -> pl.DataFrame:
    """``derive(study, day=<timepoint>, options=options)`` for each of ``timepoints``, concatenated; the
    rows of one subject together (subject order), each subject's in the option's order (``timepoint``
    tells them apart: "pre_ld", "day 3", "each")."""
    tps = list(dict.fromkeys(_timepoint(x) for x in (timepoints or ["pre_ld"])))
    frames = [derive(study, day=tp, options=options) for tp in tps]
    if len(frames) == 1:
        return frames[0]
    out = pl.concat(frames, how="vertical")
    order = subject_order(study).select(_SID, "_order")
    return (out.with_row_index("_i").join(order, on=_SID, how="left", maintain_order="left")
            .sort("_order", "_i", nulls_last=True).drop("_i", "_order"))
