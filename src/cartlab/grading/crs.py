"""ASTCT 2019 cytokine release syndrome (CRS) grading from raw vitals and interventions.

Lee DW et al., Biol Blood Marrow Transplant 2019;25(4):625-638, Table 1. The rules live in
``criteria/astct_crs_2019.yaml``; this module computes the daily features they refer to (Tmax,
lowest SBP, vasopressors, oxygen support, fever waiver), applies the table, and derives episodes and
the ``subject_summary.csv`` columns ``crs_grade_astct``, ``crs_onset_day``, ``crs_resolution_day``.

>>> from cartlab.datasets import seed_case
>>> crs_summary(seed_case())["crs_grade_astct"].to_list()
[3]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

from cartlab.grading.common import (
    EVIDENCE,
    domain_grade,
    evidence_ref,
    expand_days,
    load_criteria,
    rule_texts,
)
from cartlab.model import Study

KEY = ["subject_id", "day"]


@dataclass(frozen=True)
class CrsOptions:
    """Options of ASTCT CRS grading; ``None`` means the criteria table's default.

    * ``fever_threshold_c`` (38.0): Tmax at or above it is fever.
    * ``sbp_cutoff_mmhg`` (90): SBP below it is hypotension (adults).
    * ``age_adjusted_sbp`` (False): PALS age-based cut-offs for children instead.
    * ``antipyretics_waive_fever`` (False): antipyretics given for CRS also waive the fever
      requirement (the ASTCT footnote's wording is ambiguous; default is tocilizumab/steroids only).
    * ``counted_indications`` (("CRS",)): interventions with these indications (or none) count.
    * ``episode_join_gap_days`` (1): CRS days separated by at most this many days without CRS
      form one episode.
    """

    fever_threshold_c: float | None = None
    sbp_cutoff_mmhg: float | None = None
    age_adjusted_sbp: bool | None = None
    antipyretics_waive_fever: bool | None = None
    counted_indications: tuple[str, ...] | None = None
    episode_join_gap_days: int = 1
    criteria: str = "astct_crs_2019"

    def resolved(self) -> dict[str, Any]:
        table = load_criteria(self.criteria)
        out = dict(table["defaults"])
        for k, v in asdict(self).items():
            if v is not None:
                out[k] = v
        out["counted_indications"] = tuple(out["counted_indications"])
        return out


def _ref_list(col: str = "ref") -> pl.Expr:
    return pl.col(col).drop_nulls().unique(maintain_order=True)


def _counted(df: pl.DataFrame, column: str, counted: tuple[str, ...]) -> pl.DataFrame:
    """Rows whose indication/attribution is empty or one of ``counted``."""
    return df.filter(pl.col(column).is_null() | pl.col(column).is_in(list(counted)))


def _sbp_cutoff(subjects: pl.DataFrame, opts: dict[str, Any], table: dict[str, Any]) -> pl.DataFrame:
    """Per-subject SBP cut-off: the adult default, or PALS by age when age_adjusted_sbp is on."""
    base = subjects.select("subject_id", pl.col("age_years"))
    cutoff = pl.lit(float(opts["sbp_cutoff_mmhg"]))
    if opts.get("age_adjusted_sbp"):
        rows = table["pals_sbp"]["rows"]
        expr = cutoff
        for r in reversed(rows):
            if "cutoff" in r:
                val = pl.lit(float(r["cutoff"]))
            else:
                val = float(r["cutoff_base"]) + float(r["cutoff_per_year"]) * pl.col("age_years").floor()
            expr = pl.when(pl.col("age_years") <= r["age_max_years"]).then(val).otherwise(expr)
        cutoff = pl.when(pl.col("age_years").is_null()).then(cutoff).otherwise(expr)
    return base.select("subject_id", cutoff.cast(pl.Float64).alias("sbp_cutoff"))


def crs_features(study: Study, options: CrsOptions | None = None) -> pl.DataFrame:
    """Daily CRS inputs per subject and calendar day (``day`` = floor of the study day).

    Columns: tmax_c, sbp_min_mmhg, sbp_cutoff, n_vasopressors, n_vasopressors_excl_vasopressin,
    vasopressors, o2_level, o2_devices, waiver_from_day, crs_death, and evidence lists per input.
    """
    opts = (options or CrsOptions()).resolved()
    table = load_criteria((options or CrsOptions()).criteria)
    obs = study.observations.with_columns(
        pl.col("day").floor().cast(pl.Int64).alias("d"), evidence_ref().alias("ref")
    )

    temp = (
        obs.filter((pl.col("param") == "TEMP") & pl.col("value").is_not_null())
        .sort("value", descending=True)
        .group_by("subject_id", "d")
        .agg(pl.col("value").first().alias("tmax_c"), pl.col("ref").first().alias("tmax_ref"))
    )
    sbp = (
        obs.filter((pl.col("param") == "SYSBP") & pl.col("value").is_not_null())
        .sort("value")
        .group_by("subject_id", "d")
        .agg(pl.col("value").first().alias("sbp_min_mmhg"), pl.col("ref").first().alias("sbp_ref"))
    )

    iv = _counted(study.interventions, "indication", opts["counted_indications"]).with_columns(
        evidence_ref().alias("ref"),
        pl.col("agent").str.to_lowercase().fill_null("unspecified").alias("agent_lc"),
    )
    days = expand_days(iv)
    vaso = (
        days.filter(pl.col("category") == "vasopressor")
        .group_by("subject_id", "d")
        .agg(
            pl.col("agent_lc").n_unique().alias("n_vasopressors"),
            pl.col("agent_lc").filter(pl.col("agent_lc") != "vasopressin").n_unique().alias(
                "n_vasopressors_excl_vasopressin"
            ),
            pl.col("agent_lc").unique(maintain_order=True).str.join(", ").alias("vasopressors"),
            _ref_list().alias("vaso_refs"),
        )
    )
    level = pl.col("o2_device").replace_strict(table["devices"], default=None, return_dtype=pl.Int64)
    level = (
        pl.when((pl.col("o2_device") == "nasal_cannula") & (pl.col("o2_flow_lpm") > table["low_flow_max_lpm"]))
        .then(pl.lit(3, dtype=pl.Int64))
        .otherwise(level)
    )
    o2 = (
        days.filter(pl.col("category") == "oxygen")
        .with_columns(level.alias("lvl"))
        .group_by("subject_id", "d")
        .agg(
            pl.col("lvl").max().alias("o2_level"),
            pl.col("o2_device").unique(maintain_order=True).str.join(", ").alias("o2_devices"),
            _ref_list().alias("o2_refs"),
        )
    )
    waiver_cats = list(opts["waiver_categories"]) + (["antipyretic"] if opts["antipyretics_waive_fever"] else [])
    waiver = (
        iv.filter(pl.col("category").is_in(waiver_cats))
        .sort("start_day")
        .group_by("subject_id")
        .agg(
            pl.col("start_day").first().floor().cast(pl.Int64).alias("waiver_from_day"),
            pl.col("ref").first().alias("waiver_ref"),
            pl.col("category").first().alias("waiver_category"),
        )
    )
    ev = _counted(study.events, "attribution", ("CRS",)).filter(pl.col("event") == "death")
    death = ev.with_columns(
        pl.col("day").floor().cast(pl.Int64).alias("d"), evidence_ref().alias("ref")
    ).group_by("subject_id", "d").agg(pl.lit(True).alias("crs_death"), _ref_list().alias("death_refs"))

    grid = pl.concat(
        [f.select("subject_id", "d") for f in (temp, sbp, vaso, o2, death)], how="vertical"
    ).unique()
    out = grid
    for f in (temp, sbp, vaso, o2, death):
        out = out.join(f, on=["subject_id", "d"], how="left")
    out = (
        out.join(waiver, on="subject_id", how="left")
        .join(_sbp_cutoff(study.subjects, opts, table), on="subject_id", how="left")
        .with_columns(
            pl.col("n_vasopressors").fill_null(0),
            pl.col("n_vasopressors_excl_vasopressin").fill_null(0),
            pl.col("o2_level").fill_null(0),
            pl.col("crs_death").fill_null(False),
            pl.col("sbp_cutoff").fill_null(float(opts["sbp_cutoff_mmhg"])),
        )
        .rename({"d": "day"})
        .sort(KEY)
    )
    return out


def crs_daily(study: Study, options: CrsOptions | None = None) -> pl.DataFrame:
    """ASTCT CRS grade per subject and day, with the rule that drove it, a reason and evidence."""
    options = options or CrsOptions()
    opts = options.resolved()
    table = load_criteria(options.criteria)
    rule_opts = {**opts, "sbp_cutoff": "@sbp_cutoff"}
    texts = rule_texts(table, ("fever", "hypotension", "hypoxia", "death"), {**opts, "sbp_cutoff": opts["sbp_cutoff_mmhg"]})
    f = crs_features(study, options)
    f = f.with_columns(
        *domain_grade(table["fever"], rule_opts, "fever"),
        *domain_grade(table["hypotension"], rule_opts, "hypotension"),
        *domain_grade(table["hypoxia"], rule_opts, "hypoxia"),
    )
    fever = pl.col("fever_grade") >= 1
    waived = pl.col("waiver_from_day").is_not_null() & (pl.col("day") >= pl.col("waiver_from_day"))
    support = pl.max_horizontal("hypotension_grade", "hypoxia_grade")
    support_rule = (
        pl.when(pl.col("hypotension_grade") >= pl.col("hypoxia_grade"))
        .then(pl.col("hypotension_rule"))
        .otherwise(pl.col("hypoxia_rule"))
    )
    death_rule = table["death"][0]["id"]
    grade = (
        pl.when(pl.col("crs_death")).then(pl.lit(5, dtype=pl.Int64))
        .when(fever).then(pl.max_horizontal(pl.lit(1, dtype=pl.Int64), support))
        .when(waived).then(support)
        .otherwise(pl.lit(0, dtype=pl.Int64))
    )
    rule = (
        pl.when(pl.col("crs_death")).then(pl.lit(death_rule))
        .when(fever & (support > 1)).then(support_rule)
        .when(fever).then(pl.col("fever_rule"))
        .when(waived & (support > 0)).then(support_rule)
        .when(support > 0).then(pl.lit("crs.no_fever"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    f = f.with_columns(grade.alias("grade"), rule.alias("rule"), fever.alias("fever"), waived.alias("fever_waived"))

    texts["crs.no_fever"] = "hypotension or hypoxia without fever before any tocilizumab/corticosteroid for CRS: not graded as CRS"
    reason_bits = [
        pl.when(pl.col("tmax_c").is_not_null()).then(
            pl.format("Tmax {} C{}", pl.col("tmax_c").round(1), pl.when(fever).then(pl.lit(" (fever)")).otherwise(pl.lit("")))
        ),
        pl.when(pl.col("sbp_min_mmhg").is_not_null()).then(
            pl.format("SBP min {} mmHg{}", pl.col("sbp_min_mmhg").round(0).cast(pl.Int64),
                      pl.when(pl.col("sbp_min_mmhg") < pl.col("sbp_cutoff")).then(pl.format(" (< {})", pl.col("sbp_cutoff").round(0).cast(pl.Int64))).otherwise(pl.lit("")))
        ),
        pl.when(pl.col("n_vasopressors") > 0).then(pl.format("vasopressors: {}", pl.col("vasopressors"))),
        pl.when(pl.col("o2_level") > 0).then(pl.format("oxygen: {}", pl.col("o2_devices"))),
        pl.when(waived & ~fever & (support > 0)).then(
            pl.format("fever not required since day {} ({})", pl.col("waiver_from_day"), pl.col("waiver_category"))
        ),
        pl.when(pl.col("crs_death")).then(pl.lit("death attributed to CRS")),
    ]
    conclusion = pl.format(
        "grade {}{}", pl.col("grade"),
        pl.when(pl.col("rule").is_not_null()).then(
            pl.format(": {}", pl.col("rule").replace_strict(texts, default=pl.col("rule")))
        ).otherwise(pl.lit("")),
    )
    reason = pl.concat_str(
        [pl.concat_str(reason_bits, separator="; ", ignore_nulls=True), conclusion], separator=" -> "
    )
    evidence = pl.concat_list(
        pl.when(pl.col("tmax_ref").is_not_null()).then(pl.concat_list(pl.col("tmax_ref"))).otherwise(pl.lit([], dtype=EVIDENCE)),
        pl.when(pl.col("sbp_min_mmhg") < pl.col("sbp_cutoff")).then(pl.concat_list(pl.col("sbp_ref"))).otherwise(pl.lit([], dtype=EVIDENCE)),
        pl.col("vaso_refs").fill_null(pl.lit([], dtype=EVIDENCE)),
        pl.col("o2_refs").fill_null(pl.lit([], dtype=EVIDENCE)),
        pl.when(waived & ~fever & (support > 0)).then(pl.concat_list(pl.col("waiver_ref"))).otherwise(pl.lit([], dtype=EVIDENCE)),
        pl.col("death_refs").fill_null(pl.lit([], dtype=EVIDENCE)),
    )
    return f.with_columns(reason.alias("reason"), evidence.alias("evidence")).select(
        "subject_id", "day", "grade", "rule", "reason", "evidence",
        "tmax_c", "fever", "sbp_min_mmhg", "sbp_cutoff", "n_vasopressors",
        "n_vasopressors_excl_vasopressin", "vasopressors", "o2_level", "o2_devices",
        "fever_waived", "waiver_from_day", "fever_grade", "hypotension_grade", "hypoxia_grade",
    )


def episodes(daily: pl.DataFrame, term: str, scale: str, join_gap_days: int = 1) -> pl.DataFrame:
    """ADAE-like episodes from a daily grade frame: runs of days with grade >= 1.

    Days with grade >= 1 separated by at most ``join_gap_days`` days without one form one episode.
    """
    pos = daily.filter(pl.col("grade") >= 1).sort(KEY)
    if pos.height == 0:
        return pl.DataFrame(
            schema={"subject_id": pl.String, "episode": pl.Int64, "AETERM": pl.String, "ASTDY": pl.Int64,
                    "AENDY": pl.Int64, "ADURN": pl.Int64, "ATOXGR": pl.Int64, "ATOXGRS": pl.String,
                    "rule": pl.String, "reason": pl.String, "evidence": EVIDENCE}
        )
    pos = pos.with_columns(
        ((pl.col("day") - pl.col("day").shift(1).over("subject_id")) > join_gap_days + 1)
        .fill_null(True)
        .cum_sum()
        .over("subject_id")
        .alias("episode")
    )
    top = pos.sort(["subject_id", "episode", "grade", "day"], descending=[False, False, True, False])
    return (
        top.group_by("subject_id", "episode", maintain_order=True)
        .agg(
            pl.col("day").min().alias("ASTDY"),
            pl.col("day").max().alias("AENDY"),
            pl.col("grade").max().alias("ATOXGR"),
            pl.col("rule").first(),
            pl.col("reason").first(),
            pl.col("evidence").list.explode(keep_nulls=False, empty_as_null=False).unique(maintain_order=True),
        )
        .with_columns(
            (pl.col("AENDY") - pl.col("ASTDY") + 1).alias("ADURN"),
            pl.lit(term).alias("AETERM"),
            pl.lit(scale).alias("ATOXGRS"),
            pl.col("episode").cast(pl.Int64),
        )
        .select("subject_id", "episode", "AETERM", "ASTDY", "AENDY", "ADURN", "ATOXGR", "ATOXGRS",
                "rule", "reason", "evidence")
        .sort("subject_id", "episode")
    )


def crs_episodes(study: Study, options: CrsOptions | None = None) -> pl.DataFrame:
    """CRS episodes (ADAE-like): onset (ASTDY), resolution (AENDY), duration, maximum grade."""
    options = options or CrsOptions()
    return episodes(crs_daily(study, options), "Cytokine release syndrome", "ASTCT 2019",
                    options.episode_join_gap_days)


def crs_summary(study: Study, options: CrsOptions | None = None, daily: pl.DataFrame | None = None) -> pl.DataFrame:
    """``crs_grade_astct``, ``crs_onset_day``, ``crs_resolution_day`` per subject.

    The grade is the maximum daily grade; a subject with no temperature, blood pressure or CRS
    intervention data at all is not evaluable (empty). Onset/resolution: first/last day with grade
    >= 1 (empty when none).
    """
    daily = daily if daily is not None else crs_daily(study, options)
    agg = daily.group_by("subject_id").agg(
        pl.col("grade").max().alias("crs_grade_astct"),
        pl.col("day").filter(pl.col("grade") >= 1).min().cast(pl.Float64).alias("crs_onset_day"),
        pl.col("day").filter(pl.col("grade") >= 1).max().cast(pl.Float64).alias("crs_resolution_day"),
    )
    return study.subjects.select("subject_id").join(agg, on="subject_id", how="left", maintain_order="left")
