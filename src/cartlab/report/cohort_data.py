"""Cohort views as data ("figure specs"): pure functions ``Analysis -> polars frames``.

One set of functions feeds both renderers (matplotlib, :mod:`cartlab.report.cohort_mpl`; plotly,
:mod:`cartlab.report.cohort_plotly`), so the static report and the dashboard show the same numbers.
Every function reads the tables of one :class:`~cartlab.analyze.Analysis` (computed once, with the
analysis's options), takes ``subject_ids`` (None = every subject) and raises
:class:`~cartlab.report.cohort_base.ViewUnavailable` naming the missing table or input.

Views here: swimmer plot, CRS/ICANS grade distribution and the cross-scale table, ICAHT
distribution and count recovery, CAR-T expansion curves, exposure vs outcome, cytokine heat map.
Survival, relapse incidence, toxicity summary, response rates and protocol deviations are in
:mod:`cartlab.report.cohort_stats` (re-exported here).

Missing is not negative: a subject without a grade is "not evaluable" (counted apart, never grade 0),
a subject without a best response is "no criteria" or "not assessed" (never non-response), a relapse
without an antigen assessment is "antigen not assessed" (never antigen retained).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from cartlab.model import NOT_MEASURED_SOURCES
from cartlab.report.cohort_base import (
    CohortView,
    ViewUnavailable,
    auc_window,
    kind_expr,
    optional,
    require,
    response_label,
    safety_subjects,
    selected_ids,
    subjects_of,
    subset,
    worst_grade_counts,
)
from cartlab.report.cohort_stats import (
    SurvivalData,
    assumed_clause_notes,
    deviation_summary,
    relapse_incidence_data,
    response_rate_table,
    survival_data,
    toxicity_counts,
    toxicity_summary,
)
from cartlab.report.cohort_swimmer import SwimmerData, events_not_given, swimmer_data

__all__ = [
    "EXPANSION_MARKS",
    "HEAT_ABOVE_TEXT",
    "HEAT_BLQ_TEXT",
    "HEAT_ZERO_TEXT",
    "PERIPHERAL_SPECIMENS",
    "RECOVERY_BAND_TEXT",
    "CohortView",
    "CrossScale",
    "CytokineMatrix",
    "Distribution",
    "ExpansionData",
    "ExposureData",
    "RecoveryData",
    "SurvivalData",
    "SwimmerData",
    "ViewUnavailable",
    "count_recovery_data",
    "recovery_curve",
    "cross_scale_table",
    "cytokine_matrix",
    "deviation_summary",
    "events_not_given",
    "expansion_data",
    "exposure_outcome_data",
    "grade_distribution",
    "icaht_distribution",
    "relapse_incidence_data",
    "response_rate_table",
    "survival_data",
    "swimmer_data",
    "assumed_clause_notes",
    "toxicity_counts",
    "toxicity_summary",
]

#: specimens read as peripheral blood for expansion curves (as the course figure)
PERIPHERAL_SPECIMENS = ("", "PB", "BLOOD", "WB", "SERUM", "PLASMA")

_EVIDENCE = pl.List(pl.String)


# ------------------------------------------------------------------------------------------------
# 1. swimmer plot: cartlab.report.cohort_swimmer (re-exported)


# ------------------------------------------------------------------------------------------------
# 2. CRS / ICANS grade distribution and the cross-scale table


@dataclass(frozen=True)
class Distribution:
    """Subjects by worst grade: ``counts`` has ``term``, ``scale``, ``grade`` (null = not evaluable),
    ``label``, ``n``, ``pct`` (of the evaluable subjects; null for "not evaluable"), ``n_evaluable``
    and ``n_could_be_higher`` (a missing input leaves a higher grade possible)."""

    counts: pl.DataFrame
    notes: tuple[str, ...] = ()


def _distribution(long: pl.DataFrame, max_grade: int, upper: pl.DataFrame | None = None) -> pl.DataFrame:
    """``long`` (subject_id, term, scale, grade) -> one row per term, scale and grade 0..max plus
    "not evaluable"; ``upper`` (subject_id, term, grade_max) counts grades that could be higher."""
    c = worst_grade_counts(long, max_grade)
    rows = []
    for r in c.iter_rows(named=True):
        for g in range(max_grade + 1):
            rows.append((r["term"], r["scale"], g, f"grade {g}", r[f"grade_{g}"],
                         100.0 * r[f"grade_{g}"] / r["n_evaluable"] if r["n_evaluable"] else None, r["n_evaluable"]))
        rows.append((r["term"], r["scale"], None, "not evaluable", r["n_not_evaluable"], None, r["n_evaluable"]))
    out = pl.DataFrame(rows, schema={"term": pl.String, "scale": pl.String, "grade": pl.Int64, "label": pl.String,
                                     "n": pl.Int64, "pct": pl.Float64, "n_evaluable": pl.Int64}, orient="row")
    if upper is None:
        return out.with_columns(pl.lit(0, dtype=pl.Int64).alias("n_could_be_higher"))
    hi = (long.join(upper, on=["subject_id", "term"], how="inner")
          .filter(pl.col("grade").is_not_null() & (pl.col("grade_max") > pl.col("grade")))
          .group_by("term", "grade").agg(pl.len().cast(pl.Int64).alias("n_could_be_higher")))
    return (out.join(hi, on=["term", "grade"], how="left", maintain_order="left")
            .with_columns(pl.col("n_could_be_higher").fill_null(0)))


def grade_distribution(analysis, subject_ids=None) -> Distribution:
    """Subjects by worst ASTCT 2019 CRS and ICANS grade 0-5 (Lee DW et al., BBMT 2019;25:625; 5 = death
    from it), from
    ``crs_summary`` / ``icans_summary``; ``n_could_be_higher`` counts subjects whose grade could be
    higher had a missing input (a temperature) been recorded (``crs_grade_astct_max``)."""
    view = "CRS/ICANS grade distribution"
    ids = selected_ids(analysis, subject_ids, view)
    safety, left_out = safety_subjects(analysis, ids)
    parts, uppers, notes = [], [], list(left_out)
    for name, term, col, mx in (("crs_summary", "CRS", "crs_grade_astct", "crs_grade_astct_max"),
                                ("icans_summary", "ICANS", "icans_grade_astct", "icans_grade_astct_max")):
        t = optional(analysis, name)
        if t is None:
            notes.append(_why(analysis, name, view))
            continue
        t = safety.join(subset(t, ids), on="subject_id", how="left")
        parts.append(t.select("subject_id", pl.lit(term).alias("term"), pl.lit("ASTCT 2019").alias("scale"),
                              pl.col(col).cast(pl.Int64).alias("grade")))
        if mx in t.columns:
            uppers.append(t.select("subject_id", pl.lit(term).alias("term"), pl.col(mx).cast(pl.Int64).alias("grade_max")))
    if not parts:
        raise ViewUnavailable("; ".join(notes), ("crs_summary", "icans_summary"))
    upper = pl.concat(uppers) if uppers else None
    return Distribution(_distribution(pl.concat(parts), 5, upper), tuple(notes))


def _why(analysis, name: str, view: str) -> str:
    try:
        require(analysis, name, view)
    except ViewUnavailable as exc:
        return exc.reason
    return ""


@dataclass(frozen=True)
class CrossScale:
    """CRS grades of the same subjects on five scales (Lee 2014, Penn, CARTOX, MSKCC, ASTCT 2019):
    ``grades`` (as :class:`Distribution` counts, grades 0-5), ``pairwise`` and ``summary`` (the
    concordance tables, Pennisi et al. Blood Adv 2020;4:676)."""

    grades: pl.DataFrame
    pairwise: pl.DataFrame
    summary: pl.DataFrame
    notes: tuple[str, ...] = ()


CROSS_SCALES = (("astct", "ASTCT 2019"), ("lee2014", "Lee 2014"), ("penn", "Penn"), ("cartox", "CARTOX"),
                ("mskcc", "MSKCC"))


def cross_scale_table(analysis, subject_ids=None) -> CrossScale:
    """The CRS cross-scale view from ``crs_cross_scale`` (per subject) and its concordance tables
    ``crs_cross_scale_pairwise`` / ``crs_cross_scale_summary``; for a subset of subjects the
    concordance is recomputed from the subset's rows (``derive_crs_concordance``, no re-grading)."""
    view = "CRS cross-scale table"
    ids = selected_ids(analysis, subject_ids, view)
    per = require(analysis, "crs_cross_scale", view)
    safety, left_out = safety_subjects(analysis, ids)
    sub = safety.join(subset(per, ids), on="subject_id", how="left")
    # a range (an input missing) counts at its lower grade (``_min`` on the older scales, whose
    # ``crs_grade_<scale>`` is empty then), with ``n_could_be_higher``: never as not evaluable
    def lower(key: str) -> pl.Expr:
        g = pl.col(f"crs_grade_{key}").cast(pl.Int64)
        return pl.coalesce(g, pl.col(f"crs_grade_{key}_min").cast(pl.Int64)) if f"crs_grade_{key}_min" in sub.columns else g

    long = pl.concat([sub.select("subject_id", pl.lit("CRS").alias("term"), pl.lit(label).alias("scale"),
                                 lower(key).alias("grade"))
                      for key, label in CROSS_SCALES if f"crs_grade_{key}" in sub.columns])
    upper = pl.concat([sub.select("subject_id", pl.lit(label).alias("term"),
                                  pl.col(f"crs_grade_{key}_max").cast(pl.Int64).alias("grade_max"))
                       for key, label in CROSS_SCALES if f"crs_grade_{key}_max" in sub.columns])
    grades = _distribution(long.with_columns(pl.col("scale").alias("term")), 5, upper).drop("scale").rename(
        {"term": "scale"})
    if ids is None and not left_out:
        pairwise = require(analysis, "crs_cross_scale_pairwise", view)
        summary = require(analysis, "crs_cross_scale_summary", view)
    else:  # a subset, or the not infused left out: the concordance of the subjects shown
        from cartlab.grading.crs_legacy import derive_crs_concordance

        conc = derive_crs_concordance(subset(per, safety["subject_id"].to_list()))
        pairwise, summary = conc["pairwise"], conc["summary"]
    return CrossScale(grades, pairwise, summary, tuple(left_out))


# ------------------------------------------------------------------------------------------------
# 3. ICAHT and count recovery


ICAHT_TERMS = (
    ("icaht", "icaht_early_grade", "ICAHT early (days 0-30)", "EHA/EBMT 2023 ICAHT (neutrophils)"),
    ("icaht", "icaht_late_grade", "ICAHT late (after day 30)", "EHA/EBMT 2023 ICAHT (neutrophils)"),
    ("t_icaht", "t_icaht_early_grade", "T-ICAHT early (days 0-30)", "T-ICAHT 2025 (platelets)"),
    ("t_icaht", "t_icaht_late_grade", "T-ICAHT late (after day 30)", "T-ICAHT 2025 (platelets)"),
)


def icaht_distribution(analysis, subject_ids=None) -> Distribution:
    """Subjects by early and late ICAHT grade (Rejeski K et al., Blood 2023;142:865) and T-ICAHT
    grade (Rejeski K et al., Blood 2025), from ``icaht`` and ``t_icaht``; no grade = not evaluable;
    ``n_could_be_higher`` counts early grades that days without a count leave open (``icaht_early_grade_max``)."""
    view = "ICAHT distribution"
    ids = selected_ids(analysis, subject_ids, view)
    everyone, left_out = safety_subjects(analysis, ids)
    parts, uppers, notes = [], [], list(left_out)
    for name, col, term, scale in ICAHT_TERMS:
        t = optional(analysis, name)
        if t is None:
            why = _why(analysis, name, view)
            if why not in notes:
                notes.append(why)
            continue
        mx = f"{col}_max"  # e.g. icaht_early_grade_max: days of the window without a count
        t = everyone.join(subset(t, ids).select("subject_id", col, *([mx] if mx in t.columns else [])),
                          on="subject_id", how="left")
        parts.append(t.select("subject_id", pl.lit(term).alias("term"), pl.lit(scale).alias("scale"),
                              pl.col(col).cast(pl.Int64).alias("grade")))
        if mx in t.columns:
            uppers.append(t.select("subject_id", pl.lit(term).alias("term"), pl.col(mx).cast(pl.Int64).alias("grade_max")))
    if not parts:
        raise ViewUnavailable("; ".join(notes), ("icaht", "t_icaht"))
    return Distribution(_distribution(pl.concat(parts), 4, pl.concat(uppers) if uppers else None), tuple(notes))


@dataclass(frozen=True)
class RecoveryData:
    """``subjects``: ``subject_id``, ``lineage`` (neutrophil / platelet), ``status`` (recovered,
    not reached = a death or a censoring event came first, censored = follow-up ended before a
    recovery, not applicable = never below the threshold, not evaluable = the day lies in a range
    days without a value leave open, no data), ``day``, ``day_min``/``day_max`` (the range of a not
    evaluable day; ``day_max`` empty = open-ended), ``censor_day``/``censor_reason``. ``curve`` (:func:`recovery_curve`): per lineage
    and day the cumulative share recovered among the subjects who needed to recover (recovered, not
    reached and not evaluable): ``n_recovered_low``/``proportion_low`` (each not evaluable subject at
    its latest possible day), ``n_recovered_high``/``proportion_high`` (at its earliest),
    ``n_needing``; ``proportion`` = the lower bound (= the value where the two meet). A crude
    proportion, not a competing-risk estimate."""

    subjects: pl.DataFrame
    curve: pl.DataFrame
    notes: tuple[str, ...] = ()
    #: per lineage, the recovery definition as the criteria table states it (legend text)
    labels: dict = field(default_factory=dict)
    #: consecutive days the definition requires (the table's default; the engine runs with it)
    consecutive: int | None = None

    def legend(self, lin: str) -> str:
        """One lineage's legend text (both renderers): recovered of N needing (not evaluable in N),
        never below, no data."""
        counts = dict(self.subjects.filter(pl.col("lineage") == lin).group_by("status").len().iter_rows())
        ne, cens = counts.get("not evaluable", 0), counts.get("censored", 0)
        need = counts.get("recovered", 0) + counts.get("not reached", 0) + ne + cens
        return (f"{self.labels.get(lin, lin)}: N = {need} below the threshold ({counts.get('recovered', 0)} recovered, "
                f"{counts.get('not reached', 0)} not reached (death or a censoring event)"
                + (f", {cens} censored before recovery: band" if cens else "")
                + (f", {ne} not evaluable: days unknown, band" if ne else "")
                + f"); {counts.get('not applicable', 0)} never below; {counts.get('no data', 0)} no data")


#: the legend entry of the count-recovery band (not evaluable and censored subjects)
RECOVERY_BAND_TEXT = ("band: not evaluable and censored subjects at their latest (solid line; never, if open-ended) "
                      "to earliest (dashed) possible recovery day")
#: count_recovery censor reasons that end the observation (not a death or a censoring event): the recovery may
#: come after them (grading/count_recovery.py ``_censor_reason``)
FOLLOWUP_ENDS = ("last_followup_day", "latest_row", "last_value")


def recovery_definition() -> tuple[dict[str, str], int | None]:
    """Legend text per lineage and the consecutive days, read from ``count_recovery.yaml`` (the
    thresholds are data there, not code here)."""
    from cartlab.criteria import load_table

    table = load_table("count_recovery")
    labels = {}
    for lin, noun in (("neutrophil", "neutrophils"), ("platelet", "platelets")):
        row = table.extra(lin)
        labels[lin] = f"{noun} ({row['param']} {row['op']} {row['value']:,} {row['unit']})"
    return labels, table.defaults.get("consecutive")


def count_recovery_data(analysis, subject_ids=None) -> RecoveryData:
    """Neutrophil and platelet recovery days (ASTCT / CIBMTR definitions, thresholds in
    ``grading/criteria/count_recovery.yaml``) from ``count_recovery``."""
    view = "count recovery"
    ids = selected_ids(analysis, subject_ids, view)
    rec = subjects_of(analysis, ids).select("subject_id").join(
        subset(require(analysis, "count_recovery", view), ids), on="subject_id", how="left")
    parts = []
    words = {"recovered": "recovered", "not_reached": "not reached", "not_applicable": "not applicable",
             "not_evaluable": "not evaluable", "no_data": "no data"}
    for lin in ("neutrophil", "platelet"):
        status = f"{lin}_recovery_status"
        if status in rec.columns:  # the engine's own status (0.4): recovered ... not evaluable (days unknown)
            st = pl.col(status).replace_strict(words, default="no data", return_dtype=pl.String)
        else:  # an analysis of an earlier version: read from the reason
            reason = pl.col(f"{lin}_recovery_reason").fill_null("")
            st = (pl.when(pl.col(f"{lin}_recovery_day").is_not_null()).then(pl.lit("recovered"))
                  .when(reason.str.starts_with("not reached")).then(pl.lit("not reached"))
                  .when(reason.str.starts_with("not applicable")).then(pl.lit("not applicable"))
                  .otherwise(pl.lit("no data")))
        rng = [pl.col(f"{lin}_recovery_day_{b}").cast(pl.Float64).alias(f"day_{b}") if f"{lin}_recovery_day_{b}"
               in rec.columns else pl.lit(None, pl.Float64).alias(f"day_{b}") for b in ("min", "max")]
        cday, cwhy = f"{lin}_recovery_censor_day", f"{lin}_recovery_censor_reason"
        censor = [pl.col(cday).cast(pl.Float64).alias("censor_day") if cday in rec.columns
                  else pl.lit(None, pl.Float64).alias("censor_day"),
                  pl.col(cwhy).cast(pl.String).alias("censor_reason") if cwhy in rec.columns
                  else pl.lit(None, pl.String).alias("censor_reason")]
        parts.append(rec.select("subject_id", pl.lit(lin).alias("lineage"), st.fill_null("no data").alias("status"),
                                pl.col(f"{lin}_recovery_day").cast(pl.Float64).alias("day"), *rng, *censor))
    # not reached because the observation ended (last follow-up, the latest row or value), not because of a
    # death or a censoring event: the recovery may come later, so it is "censored", a band (review 47b #2)
    ended = (pl.col("status") == "not reached") & pl.col("censor_reason").is_in(list(FOLLOWUP_ENDS))
    parts = [p.with_columns(pl.when(ended).then(pl.lit("censored")).otherwise(pl.col("status")).alias("status"))
             for p in parts]
    subjects = pl.concat(parts)
    curve = recovery_curve(subjects)
    labels, consecutive = recovery_definition()
    n_ne = subjects.filter(pl.col("status") == "not evaluable").group_by("lineage").len().sort("lineage")
    notes = ([" and ".join(f"{n} {lin}" for lin, n in n_ne.iter_rows())
              + " subject(s) not evaluable (recovery day in a range days without a value leave open) are counted "
              "in the denominator"] if n_ne.height else [])
    cens = subjects.filter(pl.col("status") == "censored").sort("lineage", "subject_id")
    for lin, sub in cens.partition_by("lineage", as_dict=True, maintain_order=True).items():
        shown = ", ".join(f"{s} (day {d:g})" for s, d in sub.select("subject_id", "censor_day").head(10).iter_rows())
        notes.append(f"{sub.height} {lin[0]} subject(s) censored before recovery (follow-up ended, not a death or a "
                     f"censoring event: {shown}{' and more' if sub.height > 10 else ''}): in the denominator, never "
                     "recovered on the solid line, from the day after the censoring on the dashed line")
    return RecoveryData(subjects, curve, tuple(notes), labels=labels, consecutive=consecutive)


def recovery_curve(subjects: pl.DataFrame) -> pl.DataFrame:
    """Crude cumulative share recovered per lineage and day among every subject whose counts fell
    below the threshold (recovered, not reached, not evaluable: missing is not "not recovered", nor
    is it left out). A not-evaluable subject's day lies in ``[day_min, day_max]``: the lower bound
    counts it at ``day_max`` (never, if open-ended), the upper bound at ``day_min`` (day 0 if
    unknown); a censored subject (follow-up ended before recovery) is never counted by the lower bound
    and from the day after its censoring by the upper one. One pass over the subjects (expressions, no
    loop)."""
    st = pl.col("status")
    need = subjects.filter(st.is_in(["recovered", "not reached", "not evaluable", "censored"]))
    n_need = need.group_by("lineage").agg(pl.len().cast(pl.Int64).alias("n_needing"))
    rec = st == "recovered"
    ne = st == "not evaluable"
    lo_day = pl.when(rec).then(pl.col("day")).when(ne).then(pl.col("day_max"))
    hi_day = pl.when(rec).then(pl.col("day")).when(ne).then(pl.col("day_min").fill_null(0.0))
    if "censor_day" in need.columns:  # censored (follow-up ended): open-ended from the day after (review 47b #2)
        hi_day = hi_day.when(st == "censored").then(pl.col("censor_day").floor() + 1)
    ev = pl.concat([need.select("lineage", lo_day.alias("day"), pl.lit(1).alias("lo"), pl.lit(0).alias("hi")),
                    need.select("lineage", hi_day.alias("day"), pl.lit(0).alias("lo"), pl.lit(1).alias("hi"))])
    return (ev.filter(pl.col("day").is_not_null()).group_by("lineage", "day").agg(pl.col("lo").sum(), pl.col("hi").sum())
            .sort("lineage", "day")
            .with_columns(pl.col("lo").cum_sum().over("lineage").cast(pl.Int64).alias("n_recovered_low"),
                          pl.col("hi").cum_sum().over("lineage").cast(pl.Int64).alias("n_recovered_high"))
            .join(n_need, on="lineage")
            .select("lineage", "day", "n_recovered_low", "n_recovered_high", "n_needing",
                    (pl.col("n_recovered_low") / pl.col("n_needing")).alias("proportion_low"),
                    (pl.col("n_recovered_high") / pl.col("n_needing")).alias("proportion_high"),
                    (pl.col("n_recovered_low") / pl.col("n_needing")).alias("proportion")))


# ------------------------------------------------------------------------------------------------
# 4. CAR-T expansion and exposure vs outcome


@dataclass(frozen=True)
class ExpansionData:
    """``points``: ``subject_id``, ``day``, ``value`` (copies/µg gDNA; a result below the limit of
    quantification is drawn at its limit), ``blq``, ``above`` (a ``>x`` result above the upper limit,
    drawn at x), ``kind``, ``response`` (best response or "no
    criteria" / "not assessed"); ``n_without`` = selected subjects without any CARCOPY value."""

    points: pl.DataFrame
    unit: str
    n_subjects: int
    n_without: int
    notes: tuple[str, ...] = ()

    def marker_groups(self):
        """``(kind, not_measured, points)`` per point kind (:data:`EXPANSION_MARKS`: measured, ``<x`` at
        its limit, ``>x`` at its limit) and source (not measured = open markers): what both renderers
        draw, in that order."""
        pts = self.points
        above = pl.col("above") if "above" in pts.columns else pl.lit(False)
        kind = pl.when(pl.col("blq")).then(pl.lit("blq")).when(above).then(pl.lit("above")).otherwise(pl.lit("measured"))
        nm = pl.col("kind").is_in(list(NOT_MEASURED_SOURCES))
        for key in EXPANSION_MARKS:
            for open_ in (False, True):
                sub = pts.filter((kind == key) & (nm == open_))
                if sub.height:
                    yield key, open_, sub


#: the expansion view's point kinds and their legend text (both renderers)
EXPANSION_MARKS = {"measured": "measured value", "blq": "below limit of quantification (at the limit)",
                   "above": "above the upper limit (at the limit)"}


def expansion_data(analysis, subject_ids=None, param: str = "CARCOPY") -> ExpansionData:
    """CAR transgene copies in peripheral blood per subject and day (observations ``param``), with
    each subject's best response for colour; non-positive values without a limit are left out (log
    axis) and counted in ``notes``."""
    view = "CAR-T expansion"
    ids = selected_ids(analysis, subject_ids, view)
    obs = subset(analysis.study.observations, ids)
    obs = obs.filter((pl.col("param") == param)
                     & pl.col("specimen").fill_null("").str.to_uppercase().is_in(list(PERIPHERAL_SPECIMENS))
                     & pl.col("day").is_not_null())
    n_sel = subjects_of(analysis, ids).height
    if obs.height == 0:
        raise ViewUnavailable(f"{view}: no {param} observations (peripheral blood) for the selected subjects")
    lim = pl.coalesce("censor_limit", "lloq")
    censored = pl.col("censor").fill_null("").str.starts_with("<")
    above = pl.col("censor").fill_null("").str.starts_with(">")  # above the upper limit: at it (review 47b #1)
    pts = obs.select(
        "subject_id", "day",
        pl.when(above).then(pl.col("censor_limit"))
        .when(censored | (pl.col("value").fill_null(1.0) <= 0)).then(lim).otherwise(pl.col("value")).alias("value"),
        (censored | (pl.col("value") <= 0)).fill_null(False).alias("blq"), above.alias("above"),
        kind_expr(precise=True).alias("kind"), pl.col("unit").fill_null(""))
    dropped = pts.filter(pl.col("value").is_null() | (pl.col("value") <= 0)).height
    pts = pts.filter(pl.col("value") > 0)
    best = optional(analysis, "best_response")
    notes = [] if best is not None else ["best response not available (table 'best_response'): curves not coloured"]
    lab = (subset(best, ids).select("subject_id", response_label().alias("response")) if best is not None
           else pts.select("subject_id").unique().with_columns(pl.lit("not assessed").alias("response")))
    pts = pts.join(lab, on="subject_id", how="left").with_columns(pl.col("response").fill_null("not assessed"))
    if dropped:
        notes.append(f"{dropped} {param} row(s) without a positive value or limit left out (log axis)")
    unit = pts["unit"].drop_nulls().mode().sort().to_list()
    n_with = pts["subject_id"].n_unique()
    return ExpansionData(pts.drop("unit").sort("subject_id", "day"), unit[0] if unit else "", n_sel, n_sel - n_with,
                         tuple(notes))


@dataclass(frozen=True)
class ExposureData:
    """``points``: ``subject_id``, ``car_cmax``, ``car_auc_0_28``, ``response``, ``responder``,
    ``crs_grade`` (ASTCT), ``crs_ge3``; ``stats``: the ``exposure_response`` table (Mann-Whitney and
    logistic regression per exposure and outcome); ``param``/``unit``: the measurement drawn (CARCOPY,
    else CARCELL: one scale per figure, never pooled)."""

    points: pl.DataFrame
    stats: pl.DataFrame
    notes: tuple[str, ...] = ()
    param: str | None = None
    unit: str = ""
    window: tuple[float, float] = (0.0, 28.0)

    def medians(self, col: str) -> dict[str, float]:
        """Per best-response category, the median of ``col`` over every subject with a value, a
        non-expander's 0 included, as the exposure-response table's medians (review 47b #3: the figure
        left the zeros out and overstated the category)."""
        return dict(self.points.filter(pl.col(col).is_not_null()).group_by("response")
                    .agg(pl.col(col).median()).iter_rows())


def exposure_outcome_data(analysis, subject_ids=None) -> ExposureData:
    """Cmax and AUC(0-28) (``kinetics_summary``, PKNCA conventions) against best response and CRS
    grade >= 3, with the ``exposure_response`` statistics (recomputed on a subset of subjects with
    ``derive_exposure_response``, the statistic the analysis used)."""
    view = "exposure vs outcome"
    ids = selected_ids(analysis, subject_ids, view)
    kin_all = subset(require(analysis, "kinetics_summary", view), ids)  # the stats count every selected subject
    kin = kin_all.filter(pl.col("car_cmax").is_not_null() | pl.col("car_auc_0_28").is_not_null())
    if kin.height == 0:
        raise ViewUnavailable(f"{view}: no selected subject has CAR-T kinetics (car_cmax / car_auc_0_28 empty "
                              "in table 'kinetics_summary')", ("kinetics_summary",))
    best, crs = optional(analysis, "best_response"), optional(analysis, "crs_summary")
    notes = [n for n, t in (("best response not available (table 'best_response')", best),
                            ("CRS grades not available (table 'crs_summary')", crs)) if t is None]
    param, unit = None, ""
    if "car_param" in kin.columns and kin["car_param"].drop_nulls().len():
        counts = kin.group_by("car_param", "car_unit").len().sort(  # the most subjects; CARCOPY on a tie
            "len", pl.col("car_param") == "CARCOPY", descending=True)
        param, unit = counts.row(0)[:2]
        other = kin.filter(pl.col("car_param") != param)
        if other.height:
            notes.append(f"{other.height} subject(s) with kinetics from another measurement "
                         f"({', '.join(sorted(set(other['car_param'].to_list())))}) not drawn: not on the {param} "
                         f"scale ({unit}); exposure_response.csv has their own rows")
        kin = kin.filter(pl.col("car_param") == param)
    pts = kin.select("subject_id", "car_cmax", "car_auc_0_28")
    if best is not None:
        pts = pts.join(best.select("subject_id", "criteria", "best_response", "responder"), on="subject_id", how="left")
        pts = pts.with_columns(response_label().alias("response"))
    else:
        pts = pts.with_columns(pl.lit(None, pl.String).alias("best_response"), pl.lit("not assessed").alias("response"),
                               pl.lit(None, pl.Boolean).alias("responder"))
    from cartlab.kinetics.exposure import crs_at_least

    # grade >= 3 only where the grade range settles it, read as exposure_response.csv reads it (review41_diff2
    # F3): a 2-3 (an input missing) or a 1-3 (events.csv not given, crs_grade_astct_min) is unknown, not "no"
    grade_cols = ("crs_grade_astct", "crs_grade_astct_min", "crs_grade_astct_max")
    if crs is not None:
        pts = pts.join(crs.select("subject_id", *[c for c in grade_cols if c in crs.columns]),
                       on="subject_id", how="left")
    pts = pts.with_columns(pl.lit(None, pl.Int64).alias(c) for c in grade_cols if c not in pts.columns)
    ge3, known = crs_at_least(3)
    pts = pts.with_columns(pl.col("crs_grade_astct").alias("crs_grade"),
                           pl.when(known).then(ge3).otherwise(None).alias("crs_ge3"))
    if ids is None:
        stats = require(analysis, "exposure_response", view)
    elif best is not None and crs is not None:
        from cartlab.kinetics.exposure import ExposureOptions, derive_exposure_response

        # the analysis's option (nothing re-derives with defaults)
        epv = (getattr(analysis.options, "exposure", None) or ExposureOptions()).min_epv
        # every selected subject, those without kinetics too: excluded and named, as in the analysis (review40
        # B9); the analysis's responder flag (best_response.orr_categories, review40 B8)
        stats = derive_exposure_response(kin_all.join(best.select("subject_id", "best_response",
                                                                  *[c for c in ("responder",) if c in best.columns]),
                                                      on="subject_id", how="left")
                                         .join(crs.select("subject_id", "crs_grade_astct",
                                                          *[c for c in grade_cols[1:] if c in crs.columns]),
                                               on="subject_id", how="left"), min_epv=epv)
    else:
        stats = pl.DataFrame()
    if param is not None and "param" in stats.columns:
        stats = stats.filter(pl.col("param") == param)
    cols = ["subject_id", "car_cmax", "car_auc_0_28", "response", "responder", "crs_grade", "crs_ge3"]
    return ExposureData(pts.select(cols), stats, tuple(notes), param, unit, auc_window(analysis))


# ------------------------------------------------------------------------------------------------
# 5. cytokine heat map


@dataclass(frozen=True)
class CytokineMatrix:
    """``cells``: ``subject_id``, ``day`` (whole day), ``value`` (the day's maximum; a measured 0 is
    a value, drawn at the floor of the log scale and marked, never as "no sample"), ``blq`` (the
    value is a ``<x`` result shown at its limit x: censored, marked), ``above`` (a ``>x`` result above
    the upper limit, shown at x, marked), ``kind`` (of that maximum's row); ``subjects`` in display
    order (highest peak first, a subject with only ``<x`` results last); ``unit``."""

    param: str
    unit: str
    cells: pl.DataFrame
    subjects: tuple[str, ...]
    days: tuple[int, int]
    notes: tuple[str, ...] = ()

    def floor(self) -> float:
        """Where a measured value <= 0 is drawn on the log scale: a decade below the smallest positive
        value (:func:`~cartlab.report.cohort_base.log_floor`, as the exposure view draws a 0)."""
        from cartlab.report.cohort_base import log_floor

        return log_floor(self.cells["value"].to_list())

    def log_cells(self) -> pl.DataFrame:
        """``cells`` with ``log10`` (a value <= 0 at :meth:`floor`) and ``zero`` (value <= 0): what
        both renderers draw."""
        import math

        fl = math.log10(self.floor())
        return self.cells.with_columns(
            (pl.col("value") <= 0).alias("zero"),
            pl.when(pl.col("value") > 0).then(pl.col("value").log10()).otherwise(pl.lit(fl)).alias("log10"))


#: legend texts of the heat map's marked cells
HEAT_ZERO_TEXT = "measured 0, drawn at the floor of the scale"
HEAT_BLQ_TEXT = "censored: below the limit of quantification (<x), drawn at the limit"
HEAT_ABOVE_TEXT = "censored: above the upper limit of quantification (>x), drawn at the limit"


def cytokine_matrix(analysis, subject_ids=None, param: str = "IL6", days: tuple[int, int] | None = None) -> CytokineMatrix:
    """Daily maximum of a cytokine (``param``: IL6, IL10, IFNG ...) per subject and day (day = floor
    of the observation day); subjects ordered by their peak. Censored results (``<x``) are shown at
    their limit with ``blq`` set, and only when the day has no measured value. ``days`` limits the
    window (inclusive)."""
    view = f"{param} heat map"
    ids = selected_ids(analysis, subject_ids, view)
    obs = subset(analysis.study.observations, ids).filter((pl.col("param") == param) & pl.col("day").is_not_null())
    if days is not None:
        obs = obs.filter(pl.col("day").floor().is_between(days[0], days[1]))
    cens = pl.col("censor").fill_null("")
    blq, above = cens.str.starts_with("<"), cens.str.starts_with(">")
    val = pl.coalesce(pl.when(blq | above).then(pl.col("censor_limit")), pl.col("value"))
    # the day's maximum is picked before the limit stands in for a censored result: a measured value
    # (0 included) beats a "<x" of the same day, whose true value is unknown below x; a ">x" (above the
    # assay's upper limit: often the course's highest IL-6) is at least x, so it beats a measured value
    # at or below x (review 47b #1: it was dropped and its day drawn as "no sample")
    cells = (obs.select("subject_id", pl.col("day").floor().cast(pl.Int64).alias("day"), val.alias("value"),
                        blq.alias("blq"), above.alias("above"), kind_expr(precise=True).alias("kind"),
                        pl.col("unit").fill_null(""))
             .filter(pl.col("value").is_not_null())
             .sort(["blq", "value", "above"], descending=[False, True, True])
             .group_by("subject_id", "day", maintain_order=True).first())
    if cells.height == 0:
        raise ViewUnavailable(f"{view}: no {param} observations for the selected subjects")
    # ordered by the peak of measured and ">x" values; a subject with only "<x" results has no known peak: last
    # (review 47b #4: its limit is not its peak)
    order = (cells.group_by("subject_id").agg(pl.col("value").filter(~pl.col("blq")).max().alias("peak"))
             .sort(["peak", "subject_id"], descending=[True, False], nulls_last=True)["subject_id"].to_list())
    unit = cells["unit"].mode().sort().to_list()[0]
    n_sel = subjects_of(analysis, ids).height
    notes = [f"{n_sel - len(order)} selected subject(s) without {param} values"] if n_sel > len(order) else []
    return CytokineMatrix(param, unit, cells.drop("unit").sort("subject_id", "day"), tuple(order),
                          (int(cells["day"].min()), int(cells["day"].max())), tuple(notes))
