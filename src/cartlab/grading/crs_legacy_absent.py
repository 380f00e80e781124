"""Older CRS scales (Lee 2014, Penn, CARTOX, MSKCC): what is not recorded stays open (review 38).

* ``absent_interventions`` (A1): interventions.csv not given at all (``Study.absent``) does not say
  that no vasopressor, oxygen, tocilizumab or corticosteroid was given. Each older scale reaches
  grade 4 through an intervention (PMC7006459 Table 2: Lee 2014 G4 "requirement for ventilator
  support"; Penn G4 "hypoxia requiring mechanical ventilation"; CARTOX G4 "needing ventilator
  support"; MSKCC G4 "hypoxia/dyspnea requiring mechanical ventilation"), so the days the ASTCT
  engine opens (:func:`cartlab.grading.absent_interventions.open_crs_days`, same days: a possible
  fever day and, for a waiver, every later day) get ``grade_max`` :data:`SCALE_TOP` of the scale and
  ``missing_inputs`` "interventions.csv (not given)"; the lower grade is unchanged.
* ``open_end_infusion`` (A2): a vasopressor row without an end lasted an unknown time
  (docs/derivation-conventions.md "durations"): with "unknown" (default) the duration criteria
  read on its start day (MSKCC ">= 24 h") are a range there, naming "vasopressor end not recorded";
  "start_day_only" keeps cartlab's earlier reading (the support ends by midnight of the start day).
* ``organ_labs_required`` (B1): which labs settle "no organ toxicity" on a day; with the default
  "renal_and_liver" the day's reason names the panel labs not measured that were read as normal.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from cartlab.grading.absent_interventions import MISSING, interventions_unknown, open_crs_days
from cartlab.provenance import evidence_ref

__all__ = ["ABSENT_INTERVENTIONS", "check_options", "CONV_ABSENT", "hospitalization_days", "CONV_OPEN_END", "CONV_ORGAN_LABS", "OPEN_END_INFUSION",
           "PANEL", "SCALE_TOP", "lab_label", "open_absent_interventions", "open_end_inputs", "organ_parts",
           "panel_note"]

#: values of CrsLegacyOptions.absent_interventions (as crs.absent_interventions)
ABSENT_INTERVENTIONS = ("unknown", "none_given")
#: values of CrsLegacyOptions.open_end_infusion
OPEN_END_INFUSION = ("unknown", "start_day_only")
#: the highest grade an intervention can give on each scale (PMC7006459 Table 2; 5 = death only):
#: ventilation is grade 4 on all four
SCALE_TOP = {"lee2014": 4, "penn": 4, "cartox": 4, "mskcc": 4}
CONV_ABSENT = "{}.conv.absent_interventions"  # per scale: lee2014.conv.absent_interventions, ...
CONV_OPEN_END = "crs_legacy.conv.open_end_infusion"
CONV_ORGAN_LABS = "crs_legacy.conv.organ_labs_required"
#: the labs of the "each" reading, name -> the organ group (crs_legacy_inputs._organ) they belong to
PANEL = {"creatinine": "creatinine_grade", "ALT/AST": "organ_grade_max_transaminase", "bilirubin": "_bilirubin"}
OPEN_END_REASON = ("vaso_episode_hours:vasopressor end not recorded (a row without end_day lasted an unknown time; "
                   "option open_end_infusion=unknown)")


def check_options(opts: Any) -> None:
    """Validate ``CrsLegacyOptions.absent_interventions`` / ``open_end_infusion``."""
    if opts.absent_interventions not in (None, *ABSENT_INTERVENTIONS):
        raise ValueError(f"absent_interventions must be None (as the ASTCT option) or one of "
                         f"{ABSENT_INTERVENTIONS}, not {opts.absent_interventions!r}")
    if opts.open_end_infusion not in OPEN_END_INFUSION:
        raise ValueError(f"open_end_infusion must be one of {OPEN_END_INFUSION}, not {opts.open_end_infusion!r}")


def organ_parts(required: str) -> dict[str, dict[str, str]]:
    """Per all-organ input, the labs it needs on a day (``organ_labs_required``): "renal_and_liver"
    a creatinine and any liver lab (the chemistry panel drawn; convention crs_legacy.conv
    .organ_labs_required), "each" a creatinine, ALT/AST and bilirubin, "any" nothing more."""
    if required == "any":
        return {}
    if required == "each":
        return {"organ_grade_max": dict(PANEL),
                "organ_grade_max_non_transaminase": {"creatinine": "creatinine_grade", "bilirubin": "_bilirubin"}}
    need = {"creatinine": "creatinine_grade", "liver": "lft_grade"}
    return {"organ_grade_max": need, "organ_grade_max_non_transaminase": need}


def lab_label(term: pl.Expr, organ: pl.Expr, value: pl.Expr, unit: pl.Expr, grade: pl.Expr, lag: pl.Expr,
              day: pl.Expr) -> pl.Expr:
    """What raised an organ-toxicity grade, for a reason: "hypokalemia (K 2.8 mmol/L, CTCAE grade 3)";
    without a term "K 2.8 mmol/L (CTCAE grade 3)"; a lab of an earlier day (organ_labs
    "last_known_within_days") adds ", day <d>"."""
    v = value.round(6).cast(pl.String).str.replace(r"\.0$", "")
    measure = pl.concat_str([organ, pl.lit(" "), v, pl.when(unit.is_not_null() & (unit != "")).then(
        pl.concat_str(pl.lit(" "), unit)).otherwise(pl.lit(""))])
    measure = pl.when(value.is_not_null() & ~value.is_nan().fill_null(False)).then(measure).otherwise(organ)
    second = term.str.slice(1, 1)
    name = pl.when(second == second.str.to_lowercase()).then(
        pl.concat_str(term.str.slice(0, 1).str.to_lowercase(), term.str.slice(1))).otherwise(term)
    when = pl.when(lag > 0).then(pl.format(", day {}", day - lag)).otherwise(pl.lit(""))
    return (pl.when(term.is_not_null() & (term != "")).then(pl.format("{} ({}, CTCAE grade {}{})", name, measure, grade, when))
            .otherwise(pl.format("{} (CTCAE grade {}{})", measure, grade, when)))


def open_end_inputs(x: pl.DataFrame, iv: pl.DataFrame, opts: Any) -> pl.DataFrame:
    """The daily inputs ``x`` with, under ``open_end_infusion="unknown"``, the start day of every
    vasopressor row without ``end_day`` (``iv``: the counted interventions, ``cat`` normalised) given
    an unknown upper episode duration (``vaso_episode_hours_max`` infinite) and its reason."""
    if opts.open_end_infusion != "unknown":
        return x
    days = (iv.filter((pl.col("cat") == "vasopressor") & pl.col("end_day").is_null())
            .select("subject_id", pl.col("start_day").floor().cast(pl.Int64).alias("day")).unique()
            .with_columns(pl.lit(True).alias("_open_end")))
    if days.height == 0:
        return x
    x = x.join(days, on=["subject_id", "day"], how="left", maintain_order="left")
    hit = pl.col("_open_end").fill_null(False)
    return x.with_columns(
        pl.when(hit).then(float("inf")).otherwise(pl.col("vaso_episode_hours_max")).alias("vaso_episode_hours_max"),
        pl.when(hit).then(pl.concat_list(pl.col("unknown_reasons"), pl.lit([OPEN_END_REASON])).list.unique().list.sort())
        .otherwise(pl.col("unknown_reasons")).alias("unknown_reasons"),
    ).drop("_open_end")


def for_maximum(daily: pl.DataFrame) -> pl.DataFrame:
    """The days a subject maximum reads (as ``grade_crs_scale(for_maximum=True)``): the first day at
    the subject's highest ``grade_min`` and every day whose ``grade_max`` exceeds it."""
    top = pl.col("grade_min").max().over("subject_id", "scale")
    at_top = pl.col("grade_min") == top
    first = at_top & (pl.col("day") == pl.col("day").filter(at_top).min().over("subject_id", "scale"))
    return daily.filter(first | (pl.col("grade_max") > top))


def open_absent_interventions(graded: pl.DataFrame, inputs: pl.DataFrame, study: Any, opts: Any,
                              scale: str) -> pl.DataFrame:
    """One scale's daily grades with the days an unknown intervention could raise opened up to
    :data:`SCALE_TOP` (see the module docstring), when ``opts.absent_interventions`` is "unknown"
    and the study has no interventions.csv; the rule id ``<scale>.conv.absent_interventions`` joins ``possible_rules``."""
    if not interventions_unknown(study, opts.absent_interventions) or graded.height == 0:
        return graded
    from cartlab.grading.crs_features import FeverAttribution

    scope = (opts.fever_attribution or FeverAttribution.from_table()).scope
    x = graded.join(inputs.select("subject_id", "day", "fever", "fever_other_cause", "other_cause", "death_crs"),
                    on=["subject_id", "day"], how="left", maintain_order="left")
    other = pl.col("other_cause").is_not_null() & (pl.col("other_cause") != "")
    fever_day = pl.col("fever").fill_null(False) | (pl.col("fever").is_null() & ~other)
    closed = pl.col("death_crs").fill_null(False) | (pl.lit(scope == "day") & pl.col("fever_other_cause").fill_null(False))
    top = SCALE_TOP[scale]
    before = x["grade_max"]
    x = open_crs_days(x.with_columns(pl.col("grade_max").alias("_gmax0")), fever_day, closed)
    # open_crs_days raises to ASTCT's 4; every older scale's intervention top is 4 too (SCALE_TOP)
    opened = pl.col("grade_max") > pl.col("_gmax0")
    text = pl.format("; could be up to grade {} if interventions were given (ventilation, vasopressors, oxygen; or a "
                     "tocilizumab/corticosteroid waiving the fever): {} (option absent_interventions=unknown, {})",
                     pl.lit(top), pl.lit(MISSING), pl.lit(CONV_ABSENT.format(scale)))
    x = x.with_columns(
        pl.when(opened).then(pl.lit(top)).otherwise(pl.col("grade_max")).cast(before.dtype).alias("grade_max"),
        pl.when(opened).then(pl.concat_str(pl.col("reason"), text)).otherwise(pl.col("reason")).alias("reason"),
        pl.when(opened).then(pl.col("possible_rules").list.concat(pl.lit([CONV_ABSENT.format(scale)])).list.unique().list.sort())
        .otherwise(pl.col("possible_rules")).alias("possible_rules"))
    return x.with_columns(pl.when(pl.col("grade_min") == pl.col("grade_max")).then(pl.col("grade_min"))
                          .alias("grade")).select(graded.columns)


def panel_note(graded: pl.DataFrame, inputs: pl.DataFrame, opts: Any, scale: str) -> pl.DataFrame:
    """With ``organ_labs_required="renal_and_liver"``: on a day whose organ-toxicity inputs were
    settled by the panel, the reason names the labs of :data:`PANEL` not measured that were read as
    not raising the grade (MSKCC reads no organ toxicity: unchanged)."""
    if scale == "mskcc" or opts.organ_labs_required != "renal_and_liver" or "organ_labs_unmeasured" not in inputs.columns:
        return graded
    x = graded.join(inputs.select("subject_id", "day", "organ_grade_max", "organ_labs_unmeasured"),
                    on=["subject_id", "day"], how="left", maintain_order="left")
    hit = ((pl.col("organ_grade_max") < 4).fill_null(False)  # a grade 4 is the top: nothing to raise
           & (pl.col("organ_labs_unmeasured").list.len().fill_null(0) > 0)
           # Penn's organ rows stop at grade 3 ("grade 4 LFTs", "grade 3 creatinine"): nothing to raise above it
           & pl.lit(scale != "penn" or None).fill_null(pl.col("grade_min") < 3))
    note = pl.format("; not measured, read as not raising the grade (option organ_labs_required=renal_and_liver, {}): {}",
                     pl.lit(CONV_ORGAN_LABS), pl.col("organ_labs_unmeasured").list.join(", "))
    return x.with_columns(pl.when(hit).then(pl.concat_str(pl.col("reason"), note)).otherwise(pl.col("reason"))
                          .alias("reason")).select(graded.columns)


def hospitalization_days(hospitalization: pl.DataFrame) -> pl.DataFrame:
    """Per subject and calendar day of a ``hospitalization`` row: ``h`` (hospitalized, the day's last
    row) and ``h_ref`` (its evidence; crs_legacy_inputs, moved here to keep that module short)."""
    h = hospitalization.with_row_index("i").filter(pl.col("day").is_not_null() & pl.col("hospitalized").is_not_null())
    src = evidence_ref() if {"src_file", "src_row"} <= set(h.columns) else pl.lit(None, dtype=pl.String)
    return h.select("subject_id", pl.col("day").floor().cast(pl.Int64).alias("day"),
                    pl.col("hospitalized").cast(pl.Boolean).alias("h"),
                    pl.coalesce(src, pl.format("hospitalization:{}", pl.col("i") + 1)).alias("h_ref")
                    ).unique(["subject_id", "day"], keep="last", maintain_order=True)
