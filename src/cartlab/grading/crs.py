"""ASTCT 2019 cytokine release syndrome (CRS) grading from raw vitals and interventions.

Lee DW et al., Biol Blood Marrow Transplant 2019;25(4):625-638, Table 1. The rules live in
``criteria/astct_crs_2019.yaml``; this module computes the daily features they refer to (Tmax,
lowest SBP, oxygen support, fever waiver; vasopressor drugs and fever attribution come from the
layer shared with the older scales, :mod:`cartlab.grading.crs_features`), applies the table, and
derives episodes and the ``subject_summary.csv`` columns ``crs_grade_astct``, ``crs_onset_day``,
``crs_resolution_day`` (plus ``crs_episode`` / ``crs_n_episodes``: which episodes they describe).

>>> from cartlab.datasets import seed_case
>>> derive_crs_summary(seed_case())["crs_grade_astct"].to_list()
[3]
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

import polars as pl
import polars.selectors as cs

from cartlab._deprecated import renamed
from cartlab.criteria import CriteriaOptions, CriteriaTable, decision, load_table
from cartlab.criteria.compile import Range
from cartlab.grading.absent_interventions import MISSING, MISSING_TEXT, interventions_unknown, open_crs_days
from cartlab.grading.censored import day_extreme, interval_text, num_text, row_intervals
from cartlab.grading.common import (
    assessment_start,
    expand_days,
    interventions_from_start,
    rows_from_start,
)
from cartlab.grading.crs_attribution import open_attribution
from cartlab.grading.crs_death_reading import INSIDE_TEXT, death_episode, name_attached_death, read_unattributed
from cartlab.grading.crs_death_reading import death_open as death_open_expr
from cartlab.grading.crs_episodes import (
    excluded_rows,
    latest_resolution,
    number_episodes,
    observed_days,
)
from cartlab.grading.crs_features import (
    VITAL_OPTION_LIMITS,
    FeverAttribution,
    counted,
    crs_day_features,
    norm_text,
    norm_values,
    zero_flow_oxygen,
)
from cartlab.grading.crs_resolution import earliest_onset, episode_resolution, summary_status
from cartlab.grading.crs_waiver import apply_waiver, waiver_spans
from cartlab.grading.vasopressors import UNSPECIFIED
from cartlab.io.schema import CATEGORIES
from cartlab.model import Study
from cartlab.provenance import EVIDENCE, evidence_ref

KEY = ["subject_id", "day"]
DOMAINS = ("fever", "hypotension", "hypoxia")
#: feature of the criteria table -> the observation it comes from (``missing_inputs``)
INPUTS = {"tmax_c": "TEMP", "sbp_min_mmhg": "SYSBP"}
#: the day's Tmax and lowest SBP as intervals (a censored result such as ">39" or "<70" bounds them;
#: criteria compile: TRUE when the rule holds for every value of the interval, unknown when only some)
BINDINGS = {"tmax_c": Range("tmax_lo", "tmax_hi", "tmax_lo_open", "tmax_hi_open"),
            "sbp_min_mmhg": Range("sbp_lo", "sbp_hi", "sbp_lo_open", "sbp_hi_open")}
#: intervention categories the ASTCT grade reads (besides the fever-waiver ones): an excluded row of
#: one of these is named in the day's reason (option counted_indications)
GRADED_CATEGORIES = ("oxygen", "vasopressor")

Number = int | float


class CrsOptions(CriteriaOptions):
    """Options of ASTCT CRS grading; ``None`` means the criteria table's default (its ``defaults``,
    whose comments document each option: the table below is generated from them)."""

    fever_threshold_c: Number | None = None
    sbp_cutoff_mmhg: Number | None = None
    age_adjusted_sbp: bool | None = None
    antipyretics_waive_fever: bool | None = None
    counted_indications: tuple[str, ...] | None = None
    waiver_indications: tuple[str, ...] | None = None
    observed_days: Literal["vitals", "any_row"] | None = None
    death_joins_episode: bool | None = None
    other_cause_attribution: bool | None = None
    other_cause_events: tuple[str, ...] | None = None
    other_cause_event_window_days: tuple[int, int] | None = None
    other_cause_intervention_categories: tuple[str, ...] | None = None
    other_cause_indications: tuple[str, ...] | None = None
    other_cause_scope: Literal["day", "fever"] | None = None
    crs_indication_overrides_other_cause: bool | None = None
    episode_join_gap_days: int | None = None
    summary_episode: Literal["course", "first", "worst"] | None = None
    assessment_window: tuple[Number | None, Number | None] | None = None
    first_day: Literal["infusion", "all"] | float | None = None
    assessment_end_events: tuple[str, ...] | None = None
    unattributed_death: Literal["during_crs", "always"] | None = None
    unattributed_death_reading: Literal["grade5", "range"] | None = None
    waiver_categories: tuple[str, ...] | None = None
    fever_waiver_scope: Literal["course", "episode"] | None = None
    fever_waiver_requires_crs: bool | None = None
    hfnc_by_flow: bool | None = None
    multiple_vasopressors: Literal["same_day", "concurrent"] | None = None
    absent_interventions: Literal["unknown", "none_given"] | None = None
    absent_events: Literal["unknown", "none_happened"] | None = None
    criteria: str = "astct_crs_2019"

    #: values of the right type that cannot be meant (checked when the options are made)
    limits: ClassVar[dict[str, tuple[float, float, str]]] = VITAL_OPTION_LIMITS
    allowed: ClassVar[dict[str, tuple[str, ...]]] = {
        "waiver_categories": CATEGORIES, "other_cause_intervention_categories": CATEGORIES}

    def attribution(self) -> FeverAttribution:
        """The fever-attribution options as the shared feature layer takes them."""
        return FeverAttribution.from_options(self.resolved())


def _flag(table: CriteriaTable, name: str, opts: dict[str, Any]) -> tuple[str, pl.Expr]:
    """The id of a one-rule set (``death``, ``other_cause``) and whether it holds (unknown: no)."""
    (rule,) = table.rule_set(name)
    return rule.id, decision(table, name, opts).truth(rule.id).fill_null(False)


def _ref_list(col: str = "ref") -> pl.Expr:
    return pl.col(col).drop_nulls().unique(maintain_order=True)


def _counted(df: pl.DataFrame, column: str, indications: tuple[str, ...]) -> pl.DataFrame:
    """Rows whose indication/attribution is empty or one of ``indications`` (case-insensitive)."""
    return df.filter(counted(column, indications))


def _sbp_cutoff(subjects: pl.DataFrame, opts: dict[str, Any], table: CriteriaTable) -> pl.DataFrame:
    """Per-subject SBP cut-off: the adult default, or PALS by age when age_adjusted_sbp is on.

    ``sbp_cutoff_lo`` / ``sbp_cutoff_hi``: equal when known; with age_adjusted_sbp and no age, the
    lowest and highest cut-off of the PALS table (missing is not negative: the age decides the
    cut-off, so an SBP between them is not settled); ``sbp_cutoff`` is then empty."""
    base = subjects.select("subject_id", pl.col("age_years"))
    cutoff = pl.lit(float(opts["sbp_cutoff_mmhg"]))
    lo = hi = cutoff
    if opts.get("age_adjusted_sbp"):
        rows = table.extra("pals_sbp")["rows"]
        expr = cutoff
        values, prev = [], 0.0
        for r in rows:  # a row's bound: age_max_years (age <= bound) or age_below_years (age < bound)
            bound = float(r.get("age_max_years", r.get("age_below_years")))
            if "cutoff" in r:
                values.append(float(r["cutoff"]))
            else:
                values += [float(r["cutoff_base"]) + float(r["cutoff_per_year"]) * a
                           for a in (float(int(prev)), float(int(bound)))]
            prev = bound
        for r in reversed(rows):
            if "cutoff" in r:
                val = pl.lit(float(r["cutoff"]))
            else:
                val = float(r["cutoff_base"]) + float(r["cutoff_per_year"]) * pl.col("age_years").floor()
            inside = (pl.col("age_years") < r["age_below_years"]) if "age_below_years" in r \
                else (pl.col("age_years") <= r["age_max_years"])
            expr = pl.when(inside).then(val).otherwise(expr)
        unknown = pl.col("age_years").is_null()
        cutoff = pl.when(unknown).then(None).otherwise(expr)
        lo = pl.when(unknown).then(pl.lit(min(values))).otherwise(expr)
        hi = pl.when(unknown).then(pl.lit(max(values))).otherwise(expr)
    return base.select("subject_id", cutoff.cast(pl.Float64).alias("sbp_cutoff"),
                       lo.cast(pl.Float64).alias("sbp_cutoff_lo"), hi.cast(pl.Float64).alias("sbp_cutoff_hi"))


def derive_crs_features(study: Study, options: CrsOptions | None = None) -> pl.DataFrame:
    """Daily CRS inputs per subject and calendar day (``day`` = floor of the study day).

    Columns: tmax_c, sbp_min_mmhg, sbp_cutoff, n_vasopressors, n_vasopressors_excl_vasopressin,
    vasopressors, vasopressors_unknown, o2_level, o2_devices, waiver_from_day, crs_death,
    other_cause (+ reason), not_counted (+ not_counted_refs: oxygen, vasopressor and fever-waiver rows
    left out by ``counted_indications``), and evidence lists per input; columns starting with ``_``
    are inputs of the daily grade (waiver agents per day, a counted antipyretic, a high-flow nasal
    cannula at <= 6 L/min). Vasopressor drugs and fever attribution
    come from :func:`cartlab.grading.crs_features.crs_day_features` (shared with the older scales).
    """
    options = options or CrsOptions()
    opts = options.resolved()
    table = load_table(options.criteria)
    # the assessment starts at the first CAR-T infusion (option first_day): rows before it are not read,
    # interventions running across it count from it (convention crs.conv.first_day)
    start = assessment_start(study, opts["first_day"])
    # option observed_days="any_row": every day with a row of the subject is graded (crs.conv.observed_days)
    any_row = observed_days(study, start) if opts["observed_days"] == "any_row" else None
    if start is not None:
        study = dataclasses.replace(
            study, observations=rows_from_start(study.observations.filter(pl.col("param").is_in(["TEMP", "SYSBP"])), start),
            interventions=interventions_from_start(study.interventions, start))
    # only the rows and columns used (the references are built for those rows only)
    obs = row_intervals(
        study.observations.lazy()
        .filter(pl.col("param").is_in(["TEMP", "SYSBP"]))
        .select("subject_id", "param", "value", "censor", "censor_limit",
                pl.col("day").floor().cast(pl.Int64).alias("d"), evidence_ref().alias("ref"))
        .collect()
    )
    # the day's Tmax and lowest SBP, as intervals when a censored result (">39", "<70") bounds them
    temp = day_extreme(obs.filter(pl.col("param") == "TEMP"), "tmax", highest=True).rename({"tmax": "tmax_c"})
    sbp = day_extreme(obs.filter(pl.col("param") == "SYSBP"), "sbp", highest=False).rename({"sbp": "sbp_min_mmhg"})

    iv = _counted(study.interventions, "indication", opts["counted_indications"]).filter(
        ~zero_flow_oxygen(study.interventions.columns)).with_columns(  # 0 L/min: no oxygen (review 40 B1)
        evidence_ref().alias("ref"), norm_text(pl.col("category")).alias("category"))
    days = expand_days(iv)
    waiver_cats = list(opts["waiver_categories"]) + (["antipyretic"] if opts["antipyretics_waive_fever"] else [])
    # rows of a category the grade reads that do not count (their indication, a vasopressor at dose 0):
    # named on each day they cover, and the first excluded waiver agent on the afebrile days after it
    # (missing is not negative: the reader sees the row and the option that dropped it; review 38 B2/B5)
    dropped, excl_waiver = excluded_rows(study.interventions, opts, GRADED_CATEGORIES, waiver_cats)
    shared = crs_day_features(study, indications=opts["counted_indications"],
                              attribution=options.attribution(),
                              concurrent_vasopressors=opts["multiple_vasopressors"] == "concurrent").rename({"day": "d"})
    if "vasopressor_times_missing" not in shared.columns:  # option multiple_vasopressors="same_day"
        shared = shared.with_columns(pl.lit(False).alias("vasopressor_times_missing"),
                                     pl.lit(False).alias("vasopressors_sequential"))
    vaso = shared.filter(pl.col("n_vasopressors").is_not_null()).select(
        "subject_id", "d", "n_vasopressors", "n_vasopressors_excl_vasopressin", "n_vasopressors_excl_vasopressin_max",
        pl.col("vasopressor_agents").list.join(", ").alias("vasopressors"), "vasopressors_unknown", "vaso_refs",
        "vasopressor_times_missing", "vasopressors_sequential")
    other = shared.filter(pl.col("other_cause").fill_null(False)).select(
        "subject_id", "d", "other_cause", "other_cause_reason", "other_cause_refs")
    level = pl.col("o2_device").replace_strict(table.extra("devices"), default=None, return_dtype=pl.Int64)
    low_max = table.extra("low_flow_max_lpm")
    # a high-flow nasal cannula at a recorded flow <= low_flow_max_lpm: high flow by device (spec),
    # low flow by the flow with option hfnc_by_flow (ASTCT: "high flow refers to delivery at >6 L/min")
    hfnc_low = (pl.col("o2_device") == "high_flow_nasal_cannula") & (pl.col("o2_flow_lpm") <= low_max).fill_null(False)
    level = (
        pl.when((pl.col("o2_device") == "nasal_cannula") & (pl.col("o2_flow_lpm") > low_max))
        .then(pl.lit(3, dtype=pl.Int64))
        .when(hfnc_low & pl.lit(bool(opts["hfnc_by_flow"]))).then(pl.lit(2, dtype=pl.Int64))
        .otherwise(level)
    )
    # a nasal cannula without a recorded flow is low flow (the table's reading), but could have run
    # above low_flow_max_lpm: o2_level_max keeps that bound (missing is not negative)
    flow_unknown = (pl.col("o2_device") == "nasal_cannula") & pl.col("o2_flow_lpm").is_null()
    flow = pl.col("o2_flow_lpm")
    o2 = (
        days.filter(pl.col("category") == "oxygen")
        .with_columns(level.alias("lvl"), pl.when(flow_unknown).then(pl.lit(3, dtype=pl.Int64))
                      .otherwise(level).alias("lvl_max"),
                      # the reason shows the flow where recorded (6.5 L/min is what makes a nasal cannula high flow)
                      pl.when(flow.is_not_null()).then(pl.format("{} {} L/min{}", pl.col("o2_device"), num_text(flow),
                                                                 pl.when(hfnc_low).then(pl.lit(
                                                                     " (high flow by device (option hfnc_by_flow))"
                                                                     if not opts["hfnc_by_flow"] else
                                                                     f" (<= {low_max:g} L/min: low flow, option hfnc_by_flow)"))
                                                                 .otherwise(pl.lit(""))))
                      .otherwise(pl.col("o2_device")).alias("_o2_txt"), hfnc_low.alias("_hfnc_low"))
        .group_by("subject_id", "d")
        .agg(
            pl.col("lvl").max().alias("o2_level"),
            pl.col("lvl_max").max().alias("o2_level_max"),
            pl.col("o2_device").unique(maintain_order=True).str.join(", ").alias("o2_devices"),
            pl.col("_o2_txt").unique(maintain_order=True).str.join(", ").alias("o2_text"),
            (pl.col("_hfnc_low") & (pl.col("lvl") == pl.col("lvl").max())).any().alias("_hfnc_low"),
            _ref_list().alias("o2_refs"),
        )
    )
    # the fever-waiver agents: tocilizumab/corticosteroid rows of the indications of option
    # waiver_indications (null: counted_indications, spec "given for CRS"; crs.conv.waiver_indications)
    ind = opts["waiver_indications"] if opts["waiver_indications"] is not None else opts["counted_indications"]
    wv = _counted(study.interventions, "indication", ind).with_columns(
        evidence_ref().alias("ref"), norm_text(pl.col("category")).alias("category")).filter(
        pl.col("category").is_in(waiver_cats))
    waiver = (
        wv
        .sort("start_day")
        .group_by("subject_id")
        .agg(
            pl.col("start_day").first().floor().cast(pl.Int64).alias("waiver_from_day"),
            pl.col("ref").first().alias("waiver_ref"),
            # every category given on that first day, in a fixed order (not the file's row order)
            pl.col("category").filter(pl.col("start_day").floor() == pl.col("start_day").floor().min())
            .unique().sort().str.join(", ").alias("waiver_category"),
        )
    )
    ev = _counted(study.events, "attribution", ("CRS",)).filter(pl.col("event") == "death")
    death = ev.with_columns(
        pl.col("day").floor().cast(pl.Int64).alias("d"), evidence_ref().alias("ref")
    ).group_by("subject_id", "d").agg(
        pl.lit(True).alias("crs_death"), _ref_list().alias("death_refs"),
        # False: no death row of the day carries an attribution (empty counts toward CRS, spec "Attribution")
        (norm_text(pl.col("attribution")).fill_null("") != "").any().alias("death_attribution_recorded"))

    # a day with a fever-waiver agent counted toward CRS is assessed even without vital signs (missing
    # is not negative: its temperature and blood pressure are unknown, so its grade is a range)
    waiver_days = (expand_days(wv).sort("subject_id", "d", "start_day")
                   .group_by("subject_id", "d", maintain_order=True)
                   .agg(pl.lit(True).alias("_waiver_given"), pl.col("ref").first().alias("_waiver_day_ref"),
                        pl.col("category").unique().sort().str.join(", ").alias("_waiver_day_cat")))
    # a counted antipyretic that does not waive the fever (option antipyretics_waive_fever): named on
    # an afebrile CRS-like day after it (crs.py reason)
    antipyretic = (
        iv.filter((pl.col("category") == "antipyretic") & pl.lit(not opts["antipyretics_waive_fever"]))
        .sort("start_day").group_by("subject_id")
        .agg(pl.col("start_day").first().floor().cast(pl.Int64).alias("_antipyretic_day"),
             pl.col("ref").first().alias("_antipyretic_ref")))
    # the graded days: a CRS input row, or with option observed_days="any_row" any row of the subject
    # (crs.conv.observed_days). A row the grade does not count (indication, dose 0) is named on the days
    # graded anyway but does not add a day under "vitals" (it would open grade_max on a day the default
    # does not grade; review 38 diff1 F2)
    grid = pl.concat(
        [f.select("subject_id", "d") for f in (temp, sbp, vaso, o2, death, waiver_days)]
        + ([any_row] if any_row is not None else []), how="vertical"
    ).unique()
    if start is not None:  # days before the assessment start (deaths, other-cause rows) are not graded
        grid = (grid.join(start, on="subject_id", how="left")
                .filter(pl.col("_start").is_null() | (pl.col("d") >= pl.col("_start").floor())).drop("_start"))
    out = grid
    for f in (temp, sbp, vaso, o2, death, waiver_days):
        out = out.join(f, on=["subject_id", "d"], how="left")
    out = (
        out.join(other, on=["subject_id", "d"], how="left")
        .join(antipyretic, on="subject_id", how="left")
        .join(excl_waiver, on="subject_id", how="left")
        .join(dropped, on=["subject_id", "d"], how="left")
        .join(waiver, on="subject_id", how="left")
        .join(_sbp_cutoff(study.subjects, opts, table), on="subject_id", how="left")
        .with_columns(
            pl.col("n_vasopressors").fill_null(0),
            pl.col("n_vasopressors_excl_vasopressin").fill_null(0),
            pl.col("n_vasopressors_excl_vasopressin_max").fill_null(0),
            pl.col("o2_level").fill_null(0),
            pl.col("o2_level_max").fill_null(0),
            pl.col("crs_death").fill_null(False),
            pl.col("other_cause").fill_null(False),
            *[pl.col(c).fill_null(float(opts["sbp_cutoff_mmhg"])) for c in ("sbp_cutoff_lo", "sbp_cutoff_hi")],
            pl.when(pl.col("sbp_cutoff_lo").is_null()).then(float(opts["sbp_cutoff_mmhg"]))
            .otherwise(pl.col("sbp_cutoff")).alias("sbp_cutoff"),
        )
        .rename({"d": "day"})
        .sort(KEY)
    )
    return out


def assessed_days(study: Study, f: pl.DataFrame, opts: dict[str, Any]) -> pl.DataFrame:
    """Days inside the assessment window and before the first assessment-ending event (shared with the
    ICANS engine, review41_diff2 F13)."""
    window = opts["assessment_window"]
    if window is not None:
        lo, hi = window
        if lo is not None:
            f = f.filter(pl.col("day") >= lo)
        if hi is not None:
            f = f.filter(pl.col("day") <= hi)
    ends = opts["assessment_end_events"]
    if ends:
        stop = (study.events.filter(norm_text(pl.col("event")).is_in(norm_values(ends))
                                    & pl.col("day").is_not_null())
                .group_by("subject_id").agg(pl.col("day").min().floor().cast(pl.Int64).alias("_stop")))
        f = (f.join(stop, on="subject_id", how="left")
             .filter(pl.col("_stop").is_null() | (pl.col("day") < pl.col("_stop"))).drop("_stop"))
    return f


def day_grade(fever: pl.Expr, support: pl.Expr, waived: pl.Expr, death: pl.Expr | None = None,
              excluded: pl.Expr | None = None) -> pl.Expr:
    """The ASTCT CRS grade of a day from its domain results (ASTCT 2019, Lee et al., Table 1): 5 on a
    death from CRS; 0 when the day is attributed to another cause; with a fever (counted toward CRS)
    the higher of 1 and ``support`` (the hypotension/hypoxia grade); without one, ``support`` once
    the fever requirement is ``waived`` (tocilizumab/corticosteroid for CRS, within the scope of
    option fever_waiver_scope), else 0."""
    zero = pl.lit(0, dtype=pl.Int64)
    expr = pl.when(death if death is not None else pl.lit(False)).then(pl.lit(5, dtype=pl.Int64))
    return (expr.when(excluded if excluded is not None else pl.lit(False)).then(zero)
            .when(fever).then(pl.max_horizontal(pl.lit(1, dtype=pl.Int64), support))
            .when(waived).then(support)
            .otherwise(zero))


def _unattributed_deaths(f: pl.DataFrame, base_grade: pl.Expr, opts: dict[str, Any]) -> pl.DataFrame:
    """``crs_death`` of a death with no attribution: kept inside a CRS episode (a day graded >= 1 by
    ``base_grade``, the grade without the death, on the death's day or at most
    ``episode_join_gap_days`` + 1 days before it) or with ``unattributed_death = "always"``; else
    dropped, and ``death_outside_crs`` marks the day (convention crs.conv.unattributed_death)."""
    unattributed = pl.col("crs_death") & ~pl.col("death_attribution_recorded").fill_null(True)
    if opts["unattributed_death"] == "always":
        return read_unattributed(f.with_columns(pl.lit(False).alias("death_outside_crs")), opts)
    reach = int(opts["episode_join_gap_days"]) + 1
    crs_days = (f.filter(base_grade >= 1).select("subject_id", pl.col("day").alias("_last_crs_day"))
                .sort("subject_id", "_last_crs_day"))
    deaths = f.filter(unattributed).select(KEY).sort("subject_id", "day")
    inside = deaths.join_asof(crs_days, left_on="day", right_on="_last_crs_day", by="subject_id", check_sortedness=False,
                              strategy="backward").filter(
        pl.col("_last_crs_day").is_not_null() & (pl.col("day") - pl.col("_last_crs_day") <= reach))
    f = f.join(inside.select(*KEY, pl.lit(True).alias("_inside")), on=KEY, how="left")
    outside = unattributed & pl.col("_inside").is_null()
    return read_unattributed(f.with_columns(outside.alias("death_outside_crs"), pl.when(outside).then(False)
                                            .otherwise(pl.col("crs_death")).alias("crs_death")).drop("_inside"), opts)


def derive_crs_daily(study: Study, options: CrsOptions | None = None) -> pl.DataFrame:
    """ASTCT CRS grade per subject and day, with the rule that drove it, a reason and evidence.

    A day whose fever is attributed to another cause is not a CRS day (rule ``crs.other_cause``;
    with ``other_cause_scope="fever"`` only its fever is discounted); a day without fever has none to
    attribute and keeps its grade (after the fever waiver). The fever waiver (ASTCT Table 1
    footnote) runs from the first tocilizumab/corticosteroid given for CRS to the end of the course
    (spec), or within its CRS episode / only after CRS began with the options fever_waiver_scope /
    fever_waiver_requires_crs (:mod:`cartlab.grading.crs_waiver`); an afebrile hypotension or
    hypoxia without it is rule ``crs.no_fever``. ``episode`` numbers the CRS episodes; days
    outside the assessment (options) are not returned.
    """
    return _derive_daily(study, options)


def derive_crs_waiver(study: Study, options: CrsOptions | None = None) -> pl.DataFrame:
    """The ASTCT fever waivers (Table 1 footnote) per subject: one row per waiver, ``waiver_from_day``
    to ``waiver_to_day`` (null: to the end of the course), ``waiver_ref``, ``waiver_category``
    (:data:`cartlab.grading.crs_waiver.SPAN_SCHEMA`), as :func:`derive_crs_daily` applies them with
    these options (fever_waiver_scope, fever_waiver_requires_crs, waiver_categories, ...). The older
    CRS scales read their waiver from it (:mod:`cartlab.grading.crs_legacy_waiver`)."""
    return _derive_daily(study, options, spans_only=True)


def _derive_daily(study: Study, options: CrsOptions | None, spans_only: bool = False) -> pl.DataFrame:
    options = options or CrsOptions()
    opts = options.resolved()
    table = load_table(options.criteria)
    texts = table.texts((*DOMAINS, "death", "other_cause"), opts)
    f = derive_crs_features(study, options)
    # the measured pass reads the lowest cut-off the subject's age allows (an SBP below it is
    # hypotension for sure); the age pass below the highest (an unknown age under age_adjusted_sbp)
    f = f.with_columns(pl.col("sbp_cutoff").alias("_sbp_cutoff_known"), pl.col("sbp_cutoff_lo").alias("sbp_cutoff"))
    domains = {d: decision(table, d, opts, bindings=BINDINGS, otherwise_grade=0, schema=f.schema) for d in DOMAINS}
    lazy = domains["fever"].apply(f.lazy(), "fever", "grade", "rule", "grade_max", "missing", labels=INPUTS)
    # grade_max of the measured pass: what an unrecorded SBP could have made the domain (< cut-off: 2)
    lazy = domains["hypotension"].apply(lazy, "hypotension", "grade", "rule", "grade_max", labels=INPUTS, truths=True)
    f = domains["hypoxia"].apply(lazy, "hypoxia", "grade", "rule").collect()
    f = f.rename({"hypotension_grade_max": "hypotension_grade_max_sbp"})
    # age_adjusted_sbp without an age: what the highest PALS cut-off makes the measured SBP (age_years)
    by_age = domains["hypotension"].apply(
        f.lazy().drop(cs.starts_with("hypotension_")).with_columns(pl.col("sbp_cutoff_hi").alias("sbp_cutoff")),
        "hypotension", "grade").collect()
    f = f.join(by_age.select(*KEY, pl.col("hypotension_grade").alias("hypotension_grade_max_age")), on=KEY, how="left")
    # the grades unrecorded inputs could have made (same rules): an oxygen flow not recorded
    # (o2_level_max), vasopressor rows without an agent, each possibly another drug (..._max)
    upper = f.lazy().drop(cs.starts_with("hypotension_", "hypoxia_")).with_columns(
        pl.col("o2_level_max").alias("o2_level"),
        pl.col("n_vasopressors_excl_vasopressin_max").alias("n_vasopressors_excl_vasopressin"))
    upper = domains["hypotension"].apply(upper, "hypotension", "grade", "rule")
    upper = domains["hypoxia"].apply(upper, "hypoxia", "grade", "rule").collect()
    f = f.join(upper.select(*KEY, pl.col("hypotension_grade").alias("hypotension_grade_max_vaso"),
                            pl.col("hypoxia_grade").alias("hypoxia_grade_max")), on=KEY, how="left")
    # missing is not negative: a day with no SYSBP row and no vasopressor could have been hypotensive
    # (grade 2 without a vasopressor); it counts only where the SBP matters (fever, or the waiver)
    f = f.with_columns(pl.max_horizontal("hypotension_grade_max_sbp", "hypotension_grade_max_vaso",
                                         "hypotension_grade_max_age").alias("hypotension_grade_max"))
    other_rule, other = _flag(table, "other_cause", opts)
    fever = pl.col("fever_grade") >= 1
    discounted = fever & other                      # a fever that does not count toward CRS
    crs_fever = fever & ~other
    # scope "day": a day whose fever is attributed to another cause is not a CRS day. Only a fever is
    # attributed: a day without one (hypotension or hypoxia after the fever waiver) keeps its grade
    attributed = other if opts["other_cause_scope"] == "day" else pl.lit(False)
    excluded = attributed & fever
    support = pl.max_horizontal("hypotension_grade", "hypoxia_grade")
    # the fever waiver (options fever_waiver_scope, fever_waiver_requires_crs: crs_waiver)
    f = apply_waiver(f, crs_fever & ~excluded, day_grade(crs_fever, support, pl.lit(True), None, excluded) >= 1, opts)
    if spans_only:
        return waiver_spans(f)
    waived = pl.col("_waived")
    f = _unattributed_deaths(f, day_grade(crs_fever, support, waived, None, excluded), opts)
    death_rule, death = _flag(table, "death", opts)
    support_rule = (
        pl.when(pl.col("hypotension_grade") >= pl.col("hypoxia_grade"))
        .then(pl.col("hypotension_rule"))
        .otherwise(pl.col("hypoxia_rule"))
    )
    grade = day_grade(crs_fever, support, waived, death, excluded)
    rule = (
        pl.when(death).then(pl.lit(death_rule))
        .when(excluded & (fever | (support > 0))).then(pl.lit(other_rule))
        .when(excluded).then(pl.lit(None, dtype=pl.String))
        .when(crs_fever & (support > 1)).then(support_rule)
        .when(crs_fever).then(pl.col("fever_rule"))
        .when(waived & (support > 0)).then(support_rule)
        .when(discounted).then(pl.lit(other_rule))
        .when(support > 0).then(pl.lit("crs.no_fever"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    f = f.with_columns(grade.alias("grade"), rule.alias("rule"), fever.alias("fever"),
                       discounted.alias("fever_other_cause"), waived.alias("fever_waived"))
    # missing is not negative: a day without a temperature could have been a fever day (the fever
    # domain is unknown), so its grade is a lower bound; grade_max is what a fever would have made it
    # (ASTCT: fever >= grade 1, and with fever hypotension/hypoxia count before any tocilizumab/steroid)
    # likewise a nasal cannula without a recorded flow: hypoxia up to its hypoxia_grade_max
    # (on an attributed day a fever, had there been one, would not count: no range from it)
    fever_open = (pl.col("fever_grade_max") > pl.col("fever_grade")) & ~death & ~other
    support_max = pl.max_horizontal("hypotension_grade_max", "hypoxia_grade_max")
    death_open = death_open_expr()  # an unattributed death outside CRS (or read as a range): could have been a CRS death
    f = f.with_columns(
        pl.when(death_open).then(pl.lit(5))
        .when(fever_open).then(pl.max_horizontal(pl.col("grade"), pl.col("fever_grade_max"), support_max))
        .otherwise(pl.max_horizontal(pl.col("grade"), day_grade(crs_fever, support_max, waived, death, excluded)))
        .alias("grade_max"))
    no_list = pl.lit([], dtype=pl.List(pl.String))
    # an unrecorded input is named when its upper bound alone would raise the day's grade
    gain = (day_grade(crs_fever | fever_open, support_max, waived, death, excluded)
            > day_grade(crs_fever | fever_open, support, waived, death, excluded))
    f = f.with_columns(
        pl.when(pl.col("grade_max") > pl.col("grade")).then(pl.concat_list(
            pl.when(fever_open).then(pl.col("fever_missing")).otherwise(no_list),
            *[pl.when(gain & (pl.col(upper_grade) > support)
                      & ((pl.lit(name) != "vasopressor agent") | ~pl.col("vasopressor_times_missing").fill_null(False)))
              .then(pl.lit([name], dtype=pl.List(pl.String)))
              .otherwise(no_list)
              for upper_grade, name in (("hypotension_grade_max_sbp", "SYSBP"), ("hypoxia_grade_max", "o2_flow_lpm"),
                                        ("hypotension_grade_max_vaso", "vasopressor agent"),
                                        ("hypotension_grade_max_age", "age_years"))],
            # option multiple_vasopressors="concurrent": drugs recorded by day, without times
            pl.when(gain & (pl.col("hypotension_grade_max_vaso") > support)
                    & pl.col("vasopressor_times_missing").fill_null(False))
            .then(pl.lit(["vasopressor times"], dtype=pl.List(pl.String))).otherwise(no_list),
            pl.when(death_open).then(pl.lit(["death attribution"], dtype=pl.List(pl.String))).otherwise(no_list)))
        .otherwise(no_list).alias("missing_inputs"))
    if interventions_unknown(study, opts["absent_interventions"]):  # review 37 A2: absent is not "none given"
        f = open_crs_days(f, crs_fever | fever_open, death | excluded)

    texts.update({r["id"]: r["text"] for r in table.extra("day_rules")})
    rule_text = pl.col("rule").replace_strict(texts, default=pl.col("rule"))
    # a high-flow nasal cannula at a recorded flow <= 6 L/min is high flow by its device (option
    # hfnc_by_flow): the rule's text does not claim "> 6 L/min" next to it
    rule_text = pl.when((pl.col("rule") == "crs.hypoxia.high_flow") & pl.col("_hfnc_low").fill_null(False)).then(
        rule_text.str.replace("high-flow nasal cannula (> 6 L/min)", "high-flow nasal cannula by device (option "
                              "hfnc_by_flow)", literal=True)).otherwise(rule_text)
    if opts["age_adjusted_sbp"]:  # the rule's text names the adult cut-off option: show the subject's
        rule_text = pl.when(pl.col("rule") == "crs.hypotension.no_vasopressor").then(rule_text.str.replace(
            f"SBP < {opts['sbp_cutoff_mmhg']:g} mmHg", pl.format("SBP < {} mmHg", num_text(pl.col("sbp_cutoff"))),
            literal=True)).otherwise(rule_text)
    # an afebrile hypotension/hypoxia not graded as CRS after a counted antipyretic (which does not waive)
    antipyretic_note = ((pl.col("rule") == "crs.no_fever") & pl.col("_antipyretic_day").is_not_null()
                        & (pl.col("day") >= pl.col("_antipyretic_day")))
    # a tocilizumab/corticosteroid left out by its indication, on an afebrile CRS-like day after it (review 38 B2)
    excl_waiver_note = ((pl.col("rule") == "crs.no_fever") & pl.col("_excl_waiver_day").is_not_null()
                        & (pl.col("day") >= pl.col("_excl_waiver_day")))
    unknown = pl.col("vasopressors_unknown").fill_null(pl.lit([], dtype=pl.List(pl.String)))
    # the cut-off used: the subject's, or the range of PALS cut-offs an unknown age leaves open
    cut_known = pl.col("_sbp_cutoff_known")
    cut_text = pl.when(cut_known.is_not_null()).then(num_text(cut_known)).otherwise(
        pl.format("{}-{}", num_text(pl.col("sbp_cutoff_lo")), num_text(pl.col("sbp_cutoff_hi"))))
    below = pl.col("hypotension_truth_crs.hypotension.no_vasopressor")
    sbp = pl.col("sbp_min_mmhg")
    tmax_censored = pl.col("tmax_c").is_null() & (pl.col("tmax_lo").is_not_null() | pl.col("tmax_hi").is_not_null())
    sbp_censored = sbp.is_null() & (pl.col("sbp_lo").is_not_null() | pl.col("sbp_hi").is_not_null())
    reason_bits = [
        # option observed_days="any_row": a day graded for its other rows says why it has no vital signs
        pl.when(pl.lit(opts["observed_days"] == "any_row") & pl.col("tmax_c").is_null() & ~tmax_censored
                & sbp.is_null() & ~sbp_censored).then(pl.lit(
                    "no temperature or systolic blood pressure recorded (a day with other rows: option observed_days=any_row)")),
        pl.when(pl.col("tmax_c").is_not_null()).then(
            # one decimal, unless rounding would cross the fever cut-off (37.99 is not "38.0": 2 decimals)
            pl.format("Tmax {} C{}", pl.when(fever == (pl.col("tmax_c").round(1) >= opts["fever_threshold_c"]))
                      .then(pl.col("tmax_c").round(1)).otherwise(pl.col("tmax_c").round(3)),
                      pl.when(fever).then(pl.lit(" (fever)")).otherwise(pl.lit("")))
        ).when(tmax_censored).then(pl.format(
            "Tmax {} C (censored result){}", interval_text("tmax_lo", "tmax_hi", "tmax_lo_open", "tmax_hi_open"),
            pl.when(fever).then(pl.lit(" (fever)")).otherwise(pl.lit("")))),
        pl.when(discounted).then(pl.format("fever attributed to another cause: {}", pl.col("other_cause_reason"))),
        pl.when(sbp.is_not_null()).then(
            # whole mmHg, unless rounding would cross the cut-off (89.6 is not "90 (< 90)")
            pl.format("SBP min {} mmHg{}",
                      pl.when((sbp.round(0) < pl.col("sbp_cutoff")) == (sbp < pl.col("sbp_cutoff"))).then(num_text(sbp.round(0)))
                      .otherwise(num_text(sbp)),
                      pl.when(below.fill_null(False)).then(pl.format(" (< {})", cut_text))
                      .when(cut_known.is_null()).then(pl.format(" (PALS cut-off {} mmHg: age not recorded)", cut_text))
                      .otherwise(pl.lit("")))
        ).when(sbp_censored).then(pl.format(
            "SBP min {} mmHg (censored result){}", interval_text("sbp_lo", "sbp_hi", "sbp_lo_open", "sbp_hi_open"),
            pl.when(below.fill_null(False)).then(pl.format(" (< {})", cut_text)).otherwise(pl.lit("")))),
        pl.when(pl.col("n_vasopressors") > 0).then(pl.format(
            "vasopressors: {}{}{}", pl.col("vasopressors"),
            pl.when(unknown.list.len() > 0).then(pl.format(
                " ({})", unknown.list.eval(pl.when(pl.element() == UNSPECIFIED).then(pl.lit(
                    "a vasopressor row without an agent: counted as one unspecified vasopressor")).otherwise(
                    pl.format("{} not in the vasopressor vocabulary: counted as a vasopressor of its own",
                              pl.element()))).list.join("; ")))
            .otherwise(pl.lit("")),
            pl.when(pl.col("vasopressors_sequential").fill_null(False)).then(pl.lit(
                " (never given at the same time: one at a time, option multiple_vasopressors=concurrent)"))
            .otherwise(pl.lit("")))),
        pl.when(pl.col("o2_level") > 0).then(pl.format("oxygen: {}", pl.col("o2_text"))),
        pl.col("not_counted"),
        pl.when(waived & ~crs_fever & ~excluded & (support > 0)).then(
            pl.format("fever not required since day {} ({}), {} (option fever_waiver_scope={})", pl.col("waiver_from_day"),
                      pl.col("waiver_category"), pl.lit("for the rest of the course" if opts["fever_waiver_scope"] == "course"
                                                        else "within its CRS episode"), pl.lit(opts["fever_waiver_scope"]))
        ).when(pl.col("day") == pl.col("waiver_from_day")).then(
            pl.format("{} given: fever not required from this day", pl.col("waiver_category"))),
        pl.col("_waiver_note"),
        pl.when(antipyretic_note).then(pl.format(
            "antipyretic on day {} does not waive the fever (option antipyretics_waive_fever=false)",
            pl.col("_antipyretic_day"))),
        pl.when(excl_waiver_note).then(pl.col("_excl_waiver_txt")),
        pl.when(death & pl.col("death_attribution_recorded").fill_null(True)).then(pl.lit("death attributed to CRS")),
        pl.when(death & ~pl.col("death_attribution_recorded").fill_null(True)).then(pl.lit(
            "death with no attribution recorded, during CRS (counted toward CRS: an empty attribution counts, "
            "study-format 'Attribution'; option unattributed_death)")),
        pl.when(pl.col("death_open_inside")).then(pl.lit(INSIDE_TEXT)),
        pl.when(pl.col("death_outside_crs")).then(pl.lit(
            "death with no attribution recorded, outside a CRS episode: not graded as CRS (option unattributed_death)")),
    ]
    conclusion = pl.format(
        "grade {}{}{}", pl.col("grade"),
        pl.when(pl.col("grade_max") > pl.col("grade")).then(pl.format(
            " (up to {} {})", pl.col("grade_max"), pl.concat_str([
                pl.when(pl.col("missing_inputs").list.contains(name)).then(
                    text if isinstance(text, pl.Expr) else pl.lit(text)) for name, text in (
                    ("death attribution", "if the death, with no attribution recorded, was due to CRS"),
                    ("TEMP", pl.when(tmax_censored).then(pl.format(
                        "with a fever: the temperature recorded ({} C) does not settle Tmax >= {} C",
                        interval_text("tmax_lo", "tmax_hi", "tmax_lo_open", "tmax_hi_open"),
                        pl.lit(opts["fever_threshold_c"])))
                     .otherwise(pl.lit("with a fever: no temperature recorded that day"))),
                    ("SYSBP", pl.when(sbp_censored).then(pl.format(
                        "if hypotensive (SBP < {} mmHg): the SBP recorded ({} mmHg) does not settle it", cut_text,
                        interval_text("sbp_lo", "sbp_hi", "sbp_lo_open", "sbp_hi_open")))
                     .otherwise(pl.format("if hypotensive (SBP < {} mmHg): no systolic blood pressure recorded that day",
                                          cut_text))),
                    ("age_years", pl.format("if hypotensive: the age, not recorded, sets the PALS SBP cut-off "
                                            "(option age_adjusted_sbp; {} mmHg)", cut_text)),
                    ("o2_flow_lpm", "if the nasal cannula flow, not recorded, was above 6 L/min (high flow)"),
                    ("vasopressor agent", "if the vasopressor rows without an agent are different drugs"),
                    ("vasopressor times", "if the vasopressors, recorded without times, ran at the same time "
                                          "(option multiple_vasopressors=concurrent)"),
                    (MISSING, MISSING_TEXT))],
                separator="; ", ignore_nulls=True))).otherwise(pl.lit("")),
        pl.when(pl.col("rule").is_not_null()).then(pl.format(": {}", rule_text)).otherwise(pl.lit("")),
    )
    reason = pl.concat_str(
        [pl.concat_str(reason_bits, separator="; ", ignore_nulls=True), conclusion], separator=" -> "
    )
    empty = pl.lit([], dtype=EVIDENCE)
    evidence = pl.concat_list(
        pl.when(pl.col("tmax_ref").is_not_null()).then(pl.concat_list(pl.col("tmax_ref"))).otherwise(empty),
        pl.when(discounted).then(pl.col("other_cause_refs")).otherwise(empty),
        # the day's lowest SBP: below the cut-off it is the hypotension; at or above it, it rules grade 2 out
        pl.when(pl.col("sbp_ref").is_not_null()).then(pl.concat_list(pl.col("sbp_ref"))).otherwise(empty),
        pl.col("vaso_refs").fill_null(empty),
        pl.col("o2_refs").fill_null(empty),
        pl.when((waived & ~crs_fever & ~excluded & (support > 0)) | (pl.col("day") == pl.col("waiver_from_day")))
        .then(pl.concat_list(pl.col("waiver_ref"))).otherwise(empty),
        pl.col("_waiver_note_refs").fill_null(empty),
        pl.when(antipyretic_note).then(pl.concat_list(pl.col("_antipyretic_ref"))).otherwise(empty),
        pl.when(excl_waiver_note).then(pl.concat_list(pl.col("_excl_waiver_ref"))).otherwise(empty),
        pl.col("death_refs").fill_null(empty),
        pl.col("not_counted_refs").fill_null(empty),
    ).list.unique(maintain_order=True)
    f = f.with_columns(reason.alias("reason"), evidence.alias("evidence")).select(
        "subject_id", "day", "grade", "grade_max", "missing_inputs", "rule", "reason", "evidence",
        "tmax_c", "fever", "sbp_min_mmhg", pl.col("_sbp_cutoff_known").alias("sbp_cutoff"), "n_vasopressors",
        "n_vasopressors_excl_vasopressin", "vasopressors", "o2_level", "o2_devices",
        "fever_waived", "waiver_from_day", "fever_grade", "hypotension_grade", "hypoxia_grade",
        "fever_other_cause", pl.col("other_cause_reason").alias("other_cause"), "death_open_inside",
    )
    f = assessed_days(study, f, opts).with_columns(  # a graded day meeting no criterion names that too
        pl.when(pl.col("rule").is_null() & (pl.col("grade") == 0)).then(pl.lit("crs.g0"))
        .otherwise(pl.col("rule")).alias("rule"))
    f = open_attribution(study, f, opts)  # events.csv not given: grade_min (crs.conv.absent_events, review 40 A1)
    f = death_episode(number_episodes(f, int(opts["episode_join_gap_days"]), bool(opts["death_joins_episode"])))
    return episode_resolution(f, study.events, study.subjects)  # crs.conv.resolution_status (review 40 B2)


_EPISODE_SCHEMA = {"subject_id": pl.String, "episode": pl.Int64, "AETERM": pl.String, "ASTDY": pl.Int64,
                   "AENDY": pl.Int64, "ADURN": pl.Int64, "ATOXGR": pl.Int64, "ATOXGRS": pl.String,
                   "rule": pl.String, "reason": pl.String, "evidence": EVIDENCE}


def episodes(daily: pl.DataFrame, term: str, scale: str, join_gap_days: int | None = 1) -> pl.DataFrame:
    """ADAE-like episodes from a daily grade frame: runs of days with grade >= 1.

    Days with grade >= 1 separated by at most ``join_gap_days`` days without one form one episode.
    A daily frame that already numbers its episodes (``episode``, as :func:`crs_daily` does with
    the options it was graded with) keeps its numbering, so ADAE and crs_summary agree.
    """
    if "episode" not in daily.columns:
        daily = number_episodes(daily, 1 if join_gap_days is None else join_gap_days)
    pos = daily.filter(pl.col("grade") >= 1).sort(KEY)
    if pos.height == 0:
        return pl.DataFrame(schema=_EPISODE_SCHEMA)
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
        .select(*_EPISODE_SCHEMA)
        .sort("subject_id", "episode")
        .pipe(_with_resolution, daily)
    )


def _with_resolution(eps: pl.DataFrame, daily: pl.DataFrame) -> pl.DataFrame:
    """CRS (:func:`crs_daily` frames): ``resolution_status`` of each episode and its note at the end
    of the reason (crs.conv.resolution_status, review 40 B2); other frames unchanged."""
    if "episode_resolution_status" not in daily.columns:
        return eps
    ends = daily.filter(pl.col("episode_resolution_status").is_not_null()).group_by("subject_id", "episode").agg(
        pl.col("episode_resolution_status").first().alias("resolution_status"),
        pl.col("episode_resolution_note").first().alias("_note"))
    return eps.join(ends, on=["subject_id", "episode"], how="left", maintain_order="left").with_columns(
        pl.concat_str("reason", pl.lit("; "), "_note", ignore_nulls=False).fill_null(pl.col("reason")).alias("reason")
    ).drop("_note")


def derive_crs_episodes(study: Study, options: CrsOptions | None = None) -> pl.DataFrame:
    """CRS episodes (ADAE-like): onset (ASTDY), resolution (AENDY), duration, maximum grade."""
    return crs_episodes_from_daily(derive_crs_daily(study, options))


def crs_episodes_from_daily(daily: pl.DataFrame) -> pl.DataFrame:
    """CRS episodes from :func:`derive_crs_daily`; an unattributed death the 'range' reading attaches to an
    episode (``death_episode``) is named in front of its reason, as ICANS does (session 42)."""
    return name_attached_death(episodes(daily, "Cytokine release syndrome", "ASTCT 2019"), daily,
                               "crs.conv.unattributed_death")


def derive_crs_summary(study: Study, options: CrsOptions | None = None, daily: pl.DataFrame | None = None) -> pl.DataFrame:
    """``crs_grade_astct``, ``crs_onset_day``, ``crs_resolution_day``, ``crs_episode``,
    ``crs_n_episodes``, ``crs_grade_astct_max``, ``crs_onset_day_earliest`` / ``crs_onset_open``
    (:func:`cartlab.grading.crs_resolution.earliest_onset`: an onset missing inputs leave open) and ``crs_resolution_day_latest`` /
    ``crs_resolution_open`` (:func:`cartlab.grading.crs_episodes.latest_resolution`: a resolution they
    leave open) per subject.

    ``crs_grade_astct_max`` is the highest ``grade_max`` of the graded days: the grade the course
    could have reached had every missing input of a graded day been the worst (a temperature, an SBP,
    a nasal cannula flow, a vasopressor's agent or times, the age for the PALS cut-off, a death's
    attribution, an interventions.csv not given; each named in the day's ``missing_inputs``);
    ``crs_grade_astct_min`` the highest ``grade_min`` (below the grade only when events.csv was not
    given: a fever that could be an infection's, :mod:`cartlab.grading.crs_attribution`). Which
    days are graded: option observed_days (crs.conv.observed_days).

    Default (``summary_episode="course"``, spec): the grade is the maximum daily grade, onset/
    resolution the first/last day with grade >= 1 over the whole course; ``crs_episode`` names the
    episodes that spans ("1", "1-2"). "first" / "worst" describe one episode (its maximum grade,
    first and last CRS day). A subject with no temperature, blood pressure or CRS intervention data
    at all is not evaluable (every column empty); no CRS: grade 0, no episode, ``crs_n_episodes`` 0.
    """
    options = options or CrsOptions()
    mode = options.resolved()["summary_episode"]
    daily = daily if daily is not None else derive_crs_daily(study, options)
    if "episode" not in daily.columns:
        daily = number_episodes(daily, int(options.resolved()["episode_join_gap_days"]),
                                bool(options.resolved()["death_joins_episode"]))
    # the lower bound an absent events.csv leaves (crs_attribution, review 40 A1); = grade otherwise
    daily = daily if "grade_min" in daily.columns else daily.with_columns(pl.col("grade").alias("grade_min"))
    eps = (daily.filter(pl.col("grade") >= 1)
           .group_by("subject_id", "episode")
           .agg(pl.col("grade").max().alias("g"), pl.col("day").min().alias("on"), pl.col("day").max().alias("off"),
                pl.col("grade_min").max().alias("gmin")))
    per = daily.group_by("subject_id").agg(
        pl.col("grade").max().alias("course_grade"), pl.col("grade_min").max().alias("course_min"),
        (pl.col("grade_max") if "grade_max" in daily.columns else pl.col("grade")).max().alias("crs_grade_astct_max"))
    n = eps.group_by("subject_id").agg(pl.len().cast(pl.Int64).alias("crs_n_episodes"))
    if mode == "course":
        pick = eps.group_by("subject_id").agg(
            pl.col("on").min(), pl.col("off").max(),
            pl.when(pl.len() == 1).then(pl.lit("1")).otherwise(pl.format("1-{}", pl.len())).alias("crs_episode"))
        grade, gmin = pl.col("course_grade"), pl.col("course_min")
    else:
        order = ["subject_id", "episode"] if mode == "first" else ["subject_id", "g", "episode"]
        desc = [False, False] if mode == "first" else [False, True, False]
        pick = (eps.sort(order, descending=desc).group_by("subject_id", maintain_order=True).first()
                .select("subject_id", "on", "off", "g", "gmin", pl.col("episode").cast(pl.String).alias("crs_episode")))
        grade, gmin = pl.coalesce("g", "course_grade"), pl.coalesce("gmin", "course_min")
    agg = (per.join(pick, on="subject_id", how="left").join(n, on="subject_id", how="left")
           .select("subject_id", grade.alias("crs_grade_astct"),
                   pl.col("on").cast(pl.Float64).alias("crs_onset_day"),
                   pl.col("off").cast(pl.Float64).alias("crs_resolution_day"),
                   "crs_episode", pl.col("crs_n_episodes").fill_null(0), "crs_grade_astct_max",
                   gmin.alias("crs_grade_astct_min")))
    agg = agg.join(earliest_onset(daily, agg, mode), on="subject_id", how="left", maintain_order="left")
    agg = agg.join(latest_resolution(daily, agg, mode, int(options.resolved()["episode_join_gap_days"])),
                   on="subject_id", how="left", maintain_order="left")
    # how that episode ended: resolved / ongoing at last follow-up / at death / fatal (review 40 B2)
    agg = agg.join(summary_status(daily, agg), on="subject_id", how="left", maintain_order="left")
    return study.subjects.select("subject_id").join(agg, on="subject_id", how="left", maintain_order="left")


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
__getattr__ = renamed(__name__, "crs_daily", "crs_episodes", "crs_features", "crs_summary")
