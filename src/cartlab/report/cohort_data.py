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

from cartlab.provenance import evidence_ref
from cartlab.report.cohort_base import (
    CohortView,
    ViewUnavailable,
    auc_window,
    evidence_kinds,
    kind_expr,
    optional,
    require,
    response_label,
    selected_ids,
    subjects_of,
    subset,
    worst_grade_counts,
)
from cartlab.report.cohort_stats import (
    SurvivalData,
    deviation_summary,
    relapse_incidence_data,
    response_rate_table,
    survival_data,
    toxicity_counts,
    toxicity_summary,
)
from cartlab.report.provenance_marks import approximate_day

__all__ = [
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
    "expansion_data",
    "exposure_outcome_data",
    "grade_distribution",
    "icaht_distribution",
    "relapse_incidence_data",
    "response_rate_table",
    "survival_data",
    "swimmer_data",
    "toxicity_counts",
    "toxicity_summary",
]

#: specimens read as peripheral blood for expansion curves (as the course figure)
PERIPHERAL_SPECIMENS = ("", "PB", "BLOOD", "WB", "SERUM", "PLASMA")

_EVIDENCE = pl.List(pl.String)


# ------------------------------------------------------------------------------------------------
# 1. swimmer plot


@dataclass(frozen=True)
class SwimmerData:
    """``bars``: one row per subject (``subject_id``, ``disease``, ``response``, ``end_day`` = death or
    last known alive (ADTTE OS), ``dead``, ``ongoing`` (alive at last follow-up), ``end_kind``,
    ``order`` = 0 for the longest follow-up). ``markers``: ``subject_id``, ``day``, ``marker``
    (response / relapse / allo-HSCT / death), ``label``, ``antigen`` (relapse: ``negative``,
    ``retained`` or ``not assessed``), ``kind`` (paper / observed / reconstructed / synthetic / simulated:
    the rows' own source kind; an approximate event day counts as reconstructed, review 41 F1/F2)."""

    bars: pl.DataFrame
    markers: pl.DataFrame
    notes: tuple[str, ...] = ()
    #: the events file's name ("events.csv") when the study was given without it: no death is known
    events_absent: str = ""


MARKER_SCHEMA = {"subject_id": pl.String, "day": pl.Float64, "marker": pl.String, "label": pl.String,
                 "antigen": pl.String, "evidence": _EVIDENCE}


def _markers(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select([pl.col(c).cast(t) if c in frame.columns else pl.lit(None, dtype=t).alias(c)
                         for c, t in MARKER_SCHEMA.items()])


def swimmer_data(analysis, subject_ids=None, antigen_window_days: float = 0.0) -> SwimmerData:
    """Per subject a bar from infusion (day 0) to death or last known alive, with markers for the best
    response (category and day), every relapse (flagged by target-antigen loss), allo-HSCT and death.

    Sources: ``adtte`` OS (bar end, death; ELN 2022 Table 9), ``best_response`` (best response and
    its day, marrow relapse day), ``relapse`` (every relapse episode), ``adtte`` CIR and EFS/RFS/LFS
    relapse events (relapse event day; one marker per subject and day), ``antigen_loss`` (antigen-negative
    relapse), ``events`` ``allo_hsct`` (day >= 0). Sorted by follow-up, longest first.
    ``antigen_window_days`` (0): an antigen assessment up to that many days before a relapse (and after
    the episode's response) is the relapse's when none is on or after it (blood flow drawn two days
    before the relapse marrow); 0 = on or after the relapse day only (no source fixes a window)."""
    view = "swimmer plot"
    ids = selected_ids(analysis, subject_ids, view)
    study = analysis.study
    adtte = subset(require(analysis, "adtte", view), ids)
    os_rows = adtte.filter((pl.col("PARAMCD") == "OS") & (pl.col("ANLFL") == "Y") & pl.col("ADY").is_not_null())
    subj = subjects_of(analysis, ids).select("subject_id", "disease")
    notes = []
    lost = subj.join(os_rows, on="subject_id", how="anti")
    if lost.height:
        notes.append(f"{lost.height} subject(s) without an overall-survival row (ADTTE) are not drawn: "
                     f"{', '.join(lost['subject_id'].head(10).to_list())}{' ...' if lost.height > 10 else ''}")
    if os_rows.height == 0:
        raise ViewUnavailable(f"{view}: no subject has an overall-survival row in table 'adtte'", ("adtte",))
    best = optional(analysis, "best_response")
    if best is None:
        notes.append("best response not available (table 'best_response'); response markers not drawn")
        best = pl.DataFrame(schema={"subject_id": pl.String, "criteria": pl.String, "best_response": pl.String,
                                    "best_response_day": pl.Float64, "relapse_day": pl.Float64, "evidence": _EVIDENCE})
    best = subset(best, ids)
    bars = (subj.join(os_rows.select("subject_id", pl.col("ADY").alias("end_day"), (pl.col("EVENT") == 1).alias("dead"),
                                     "evidence"), on="subject_id", how="inner")
            .join(best.select("subject_id", "criteria", "best_response"), on="subject_id", how="left")
            .with_columns(response_label().alias("response"), (~pl.col("dead")).alias("ongoing")))
    kinds = evidence_kinds(study, bars, precise=True)  # the CSV says synthetic / simulated as such (review 39 C2)
    bars = (bars.join(kinds.rename({"kind": "end_kind"}), on="subject_id", how="left")
            .sort(["end_day", "subject_id"], descending=[True, False])
            .with_row_index("order").select("subject_id", "disease", "response", "end_day", "dead", "ongoing",
                                            "end_kind", pl.col("order").cast(pl.Int64)))
    drawn = bars["subject_id"].to_list()

    parts = [_markers(best.filter(pl.col("best_response_day").is_not_null() & pl.col("subject_id").is_in(drawn))
                      .select("subject_id", pl.col("best_response_day").alias("day"), pl.lit("response").alias("marker"),
                              pl.col("best_response").alias("label"), "evidence"))]
    # relapse: every episode (table 'relapse', one row per response episode; a response after a relapse
    # starts a new episode), the best-response relapse day and the relapse events of ADTTE (CIR; EFS/RFS
    # with EVNTDESC RELAPSE), one marker per subject and day -- never only the first relapse
    rel_tab = optional(analysis, "relapse")
    src = [best.filter(pl.col("relapse_day").is_not_null()).select(
        "subject_id", pl.col("relapse_day").alias("day"), pl.lit([], dtype=_EVIDENCE).alias("evidence"))]
    if rel_tab is not None:
        src.append(subset(rel_tab, ids).filter(pl.col("relapse_day").is_not_null()).select(
            "subject_id", pl.col("relapse_day").alias("day"), pl.col("evidence").cast(_EVIDENCE)))
    desc = pl.col("EVNTDESC").cast(pl.String).str.to_uppercase() if "EVNTDESC" in adtte.columns else pl.lit(None, pl.String)
    src.append(adtte.filter((pl.col("EVENT") == 1) & pl.col("ADY").is_not_null()
                            & ((pl.col("PARAMCD") == "CIR") | (pl.col("PARAMCD").is_in(["EFS", "RFS", "LFS"])
                                                               & (desc == "RELAPSE"))))
               .select("subject_id", pl.col("ADY").alias("day"), pl.col("evidence").cast(_EVIDENCE)))
    rel = (pl.concat(src, how="vertical_relaxed").with_columns(pl.col("day").cast(pl.Float64))
           .group_by("subject_id", "day")
           .agg(pl.col("evidence").list.explode(keep_nulls=False, empty_as_null=False).unique(maintain_order=True))
           .sort("subject_id", "day"))
    loss = optional(analysis, "antigen_loss")
    if loss is None:
        notes.append("target-antigen assessment not available (table 'antigen_loss'): relapses marked "
                     "'antigen not assessed'")
        loss = pl.DataFrame(schema={"subject_id": pl.String, "antigen": pl.String, "antigen_loss": pl.Boolean})
    # below_cutoff (antigen_loss.csv since the s28 molecular audit): below the cut-off without a
    # documented loss (antigen.low_at_baseline: low before treatment; antigen.no_baseline: no
    # pre-treatment value, antigen_loss empty) is "low", never "retained" nor "not assessed"
    below = pl.col("below_cutoff") if "below_cutoff" in loss.columns else pl.col("antigen_loss")
    loss = subset(loss, ids)
    if "day" not in loss.columns:  # an assessment without a day cannot be tied to a relapse episode
        notes.append("target-antigen assessments without a day (table 'antigen_loss'): relapses marked "
                     "'antigen not assessed'")
        loss = loss.clear().with_columns(pl.lit(None, pl.Float64).alias("day"))
    # per assessment day: the flags of that day's antigens; on a day with a marrow (BM, or no specimen)
    # result a blood result does not decide (option response.antigen_relapse_specimen=BM; review 41 F2)
    if "specimen" in loss.columns and _antigen_specimen(analysis) == "BM":
        marrow_day = pl.col("specimen").fill_null("").str.to_uppercase().is_in(["BM", ""])
        loss = loss.filter(marrow_day | ~marrow_day.any().over("subject_id", "day", "antigen"))
    ag = loss.filter(pl.col("day").is_not_null()).group_by("subject_id", pl.col("day").cast(pl.Float64).alias("ag_day")).agg(
        pl.col("antigen_loss").any().alias("neg"),
        (below.fill_null(False) & ~pl.col("antigen_loss").fill_null(False)).any().alias("low"),
        (pl.col("antigen_loss").is_not_null() | below.is_not_null()).any().alias("assessed"),
        pl.col("antigen").filter(pl.col("antigen_loss").fill_null(False)).unique().sort().str.join("/").alias("neg_ag"),
        pl.col("antigen").filter(below.fill_null(False) & ~pl.col("antigen_loss").fill_null(False))
        .unique().sort().str.join("/").alias("low_ag"),
        pl.col("antigen").unique().sort().str.join("/").alias("ag")).sort("ag_day")
    engine = optional(analysis, "relapse_antigen")  # the antigen at each relapse (review 41 F1/F2)
    if engine is not None:
        engine = _with_uncovered(analysis, subset(engine, ids), rel, rel_tab, subset(optional(analysis, "antigen_loss"), ids))
    rel = _episode_antigen(rel, ag, rel_tab, best, antigen_window_days, engine)
    rel = rel.with_columns(
        pl.when(pl.col("neg").fill_null(False)).then(pl.lit("negative"))
        .when(pl.col("low").fill_null(False)).then(pl.lit("low"))
        .when(pl.col("assessed").fill_null(False)).then(pl.lit("retained")).otherwise(pl.lit("not assessed")).alias("antigen"))
    parts.append(_markers(rel.filter(pl.col("subject_id").is_in(drawn)).select(
        "subject_id", "day", pl.lit("relapse").alias("marker"), "antigen", "evidence",
        # the engine's label names the result's day ("CD7-low/negative relapse (≤30%; CD7 on day 92, BM)")
        pl.coalesce(pl.col("ra_label"), pl.when(pl.col("antigen") == "negative")
                    .then(pl.format("{}-low/negative relapse (at or below the cut-off)", pl.col("neg_ag")))
                    .when(pl.col("antigen") == "low").then(pl.format("relapse, {} below the cut-off (low before "
                                                                     "treatment or no pre-treatment value: not a "
                                                                     "documented loss)", pl.col("low_ag")))
                    .when(pl.col("antigen") == "retained").then(pl.format("relapse, {} retained", pl.col("ag")))
                    .otherwise(pl.lit("relapse, antigen not assessed"))).alias("label"))))
    ev = subset(study.events, ids)
    hsct = (ev.filter((pl.col("event") == "allo_hsct") & (pl.col("day") >= 0) & pl.col("subject_id").is_in(drawn))
            .sort("day").group_by("subject_id", maintain_order=True).first())
    # a day the row calls approximate ("day 60 is approximate") is labelled so and drawn open (review 41 F1)
    approx = pl.Series("_approx", [approximate_day(r) for r in hsct.iter_rows(named=True)], dtype=pl.Boolean)
    parts.append(_markers(hsct.with_columns(approx).select(
        "subject_id", "day", pl.lit("allo-HSCT").alias("marker"),
        pl.when(pl.col("_approx")).then(pl.format("allo-HSCT (day ≈{}, approximate)", pl.col("day").round(2)
                                                  .cast(pl.String).str.replace(r"\.0$", "")))
        .otherwise(pl.lit("allo-HSCT")).alias("label"),
        pl.concat_list(evidence_ref()).alias("evidence"))))
    parts.append(_markers(bars.filter("dead").join(os_rows.select("subject_id", "evidence"), on="subject_id")
                          .select("subject_id", pl.col("end_day").alias("day"), pl.lit("death").alias("marker"),
                                  pl.lit("death").alias("label"), "evidence")))
    markers = pl.concat(parts).with_row_index("_m")
    # the rows' own source kind (synthetic stays synthetic, review 41 F2); an approximate event day is
    # not a stated one (review 41 F1)
    kinds = evidence_kinds(study, markers, key="_m", precise=True, approximate_days=True)
    # a response is what its marrow shows: a marrow result stated in the publication makes the response
    # marker "paper" even when the counts beside it (ANC, platelets, PB blasts) were reconstructed
    marrow = _marrow_evidence(study, markers.filter(pl.col("marker") == "response"))
    if marrow.height:
        mk = evidence_kinds(study, marrow, key="_m", precise=True).rename({"kind": "_mk"})
        kinds = (kinds.join(mk, on="_m", how="left")
                 .with_columns(pl.coalesce("_mk", "kind").alias("kind")).drop("_mk"))
    markers = markers.join(kinds, on="_m", how="left").drop("_m", "evidence").sort("subject_id", "day")
    return SwimmerData(bars, markers, tuple(notes), events_not_given(study))


def events_not_given(study) -> str:
    """The events file's name ("events.csv", "events.parquet") when ``study`` was given without it
    (:func:`cartlab.io.absent_files.table_absent`), else ""."""
    from cartlab.io.absent_files import absent_file_name, table_absent

    return absent_file_name(study, "events") if table_absent(study, "events") else ""


def _antigen_specimen(analysis) -> str:
    """The analysis's ``response.antigen_relapse_specimen`` (BM by default)."""
    return str((analysis.options.to_dict().get("response") or {}).get("antigen_relapse_specimen") or "BM")


def _with_uncovered(analysis, engine: pl.DataFrame, rel: pl.DataFrame, rel_tab: pl.DataFrame | None,
                    loss: pl.DataFrame) -> pl.DataFrame:
    """Table ``relapse_antigen`` plus the engine's reading of the relapse markers it has no row for (an
    ADTTE relapse day not in table ``relapse``): one rule for every marker, with the analysis's options."""
    from cartlab.response.molecular import derive_relapse_antigen

    days = rel.select("subject_id", pl.col("day").alias("relapse_day"))
    todo = days.join(engine.select("subject_id", pl.col("relapse_day").cast(pl.Float64)), on=["subject_id", "relapse_day"],
                     how="anti")
    if todo.height == 0:
        return engine
    eps = todo.select("subject_id", pl.lit(None, dtype=pl.Int64).alias("episode"),
                      pl.lit(None, dtype=pl.Float64).alias("response_day"), pl.col("relapse_day").cast(pl.Float64))
    if rel_tab is not None and "response_day" in rel_tab.columns:  # the next response ends the search
        eps = pl.concat([eps, rel_tab.select("subject_id", pl.lit(None, dtype=pl.Int64).alias("episode"),
                                             pl.col("response_day").cast(pl.Float64),
                                             pl.lit(None, dtype=pl.Float64).alias("relapse_day"))])
    o = analysis.options
    extra = derive_relapse_antigen(analysis.study, eps, loss, getattr(o, "response", None), getattr(o, "molecular", None))
    return pl.concat([engine.select(extra.columns), extra], how="vertical_relaxed")


def _engine_flags(rel: pl.DataFrame, engine: pl.DataFrame) -> pl.DataFrame:
    """The relapse markers with the flags of table ``relapse_antigen`` (the engine's antigen at each
    relapse: a result within ``response.antigen_forward_days`` after it, before new therapy / HSCT;
    review 41 F1), matched on the relapse day; ``ag_day`` is the result's day, ``ra_label`` its label."""
    st = pl.col("status")
    per = engine.filter(pl.col("relapse_day").is_not_null()).group_by(
        "subject_id", pl.col("relapse_day").cast(pl.Float64).alias("day")).agg(
        (st == "negative").any().alias("neg"), (st == "low").any().alias("low"),
        st.is_in(["negative", "low", "retained"]).any().alias("assessed"),
        pl.col("antigen").filter(st == "negative").unique().sort().str.join("/").alias("neg_ag"),
        pl.col("antigen").filter(st == "low").unique().sort().str.join("/").alias("low_ag"),
        pl.col("antigen").drop_nulls().unique().sort().str.join("/").alias("ag"),
        pl.col("antigen_day").min().alias("ag_day"), pl.col("label").unique().sort().str.join("; ").alias("ra_label"))
    return rel.join(per, on=["subject_id", "day"], how="left")


def _episode_antigen(rel: pl.DataFrame, ag: pl.DataFrame, rel_tab: pl.DataFrame | None,
                     best: pl.DataFrame, window: float = 0.0, engine: pl.DataFrame | None = None) -> pl.DataFrame:
    """Each relapse marker (``subject_id``, ``day``) with the antigen flags of its own episode: the
    engine's (table ``relapse_antigen``) when the analysis has it, else the first assessment (``ag``,
    one row per subject and ``ag_day``) on or after the relapse day and before the episode ends (the
    subject's next relapse marker or next response: ``relapse`` ``response_day``, best response day);
    none there, the last one within ``window`` days before the relapse and after the episode's
    response. None matched: the flags stay empty ("antigen not assessed"), never an assessment of
    another episode."""
    rel = rel.sort("day").with_columns(pl.col("day").shift(-1).over("subject_id", order_by="day").alias("_next_rel"))
    resp = [best.select("subject_id", pl.col("best_response_day").cast(pl.Float64).alias("_resp"))]
    if rel_tab is not None and "response_day" in rel_tab.columns:
        resp.append(rel_tab.select("subject_id", pl.col("response_day").cast(pl.Float64).alias("_resp")))
    resp = pl.concat(resp).drop_nulls().unique().sort("_resp")
    prev = resp.rename({"_resp": "_prev"})
    rel = rel.join_asof(resp, left_on="day", right_on="_resp", by="subject_id", strategy="forward",
                        allow_exact_matches=False, check_sortedness=False)
    rel = rel.join_asof(prev, left_on="day", right_on="_prev", by="subject_id", strategy="backward",
                        check_sortedness=False)
    flags = ["neg", "low", "assessed", "neg_ag", "low_ag", "ag"]
    if engine is not None:  # review 41 F1: never a result after the forward window or new therapy
        fwd = _engine_flags(rel, engine)
        fwd = fwd.with_columns(pl.when(pl.col("assessed").fill_null(False)).then(pl.col("ag_day")).alias("ag_day"))
    else:
        fwd = rel.join_asof(ag, left_on="day", right_on="ag_day", by="subject_id", strategy="forward",
                            check_sortedness=False)
        end = pl.min_horizontal("_next_rel", "_resp")
        inside = pl.col("ag_day").is_not_null() & (end.is_null() | (pl.col("ag_day") < end))
        fwd = fwd.with_columns(*[pl.when(inside).then(pl.col(c)).alias(c) for c in [*flags, "ag_day"]],
                               pl.lit(None, dtype=pl.String).alias("ra_label"))
    if window > 0:  # an assessment shortly before the relapse, after the episode's response
        back = rel.join_asof(ag.rename({c: f"_b_{c}" for c in [*flags, "ag_day"]}), left_on="day",
                             right_on="_b_ag_day", by="subject_id", strategy="backward", check_sortedness=False)
        ok = (pl.col("_b_ag_day").is_not_null() & (pl.col("day") - pl.col("_b_ag_day") <= window)
              & (pl.col("_prev").is_null() | (pl.col("_b_ag_day") > pl.col("_prev"))))
        fwd = fwd.join(back.select("subject_id", "day", ok.alias("_ok"), *[f"_b_{c}" for c in [*flags, "ag_day"]]),
                       on=["subject_id", "day"], how="left")
        use = pl.col("ag_day").is_null() & pl.col("_ok").fill_null(False)
        fwd = fwd.with_columns(*[pl.when(use).then(pl.col(f"_b_{c}")).otherwise(pl.col(c)).alias(c) for c in flags],
                               pl.when(use).then(pl.lit(None, dtype=pl.String)).otherwise(pl.col("ra_label")).alias("ra_label")
                               ).drop([f"_b_{c}" for c in [*flags, "ag_day"]] + ["_ok"])
    return fwd.drop("_next_rel", "_resp", "_prev", "ag_day").sort("subject_id", "day")


#: marrow observations: the result a response category is read from
MARROW_PARAMS = ("BMBLAST", "BMCELL")


def _marrow_evidence(study, frame: pl.DataFrame) -> pl.DataFrame:
    """``_m``, ``subject_id``, ``evidence`` restricted to marrow rows (:data:`MARROW_PARAMS` or a
    ``BM`` specimen) for the rows of ``frame`` that cite any."""
    obs = study.observations
    if frame.height == 0 or not {"src_file", "src_row"} <= set(obs.columns):
        return pl.DataFrame(schema={"_m": pl.UInt32, "subject_id": pl.String, "evidence": _EVIDENCE})
    is_bm = pl.col("param").is_in(list(MARROW_PARAMS)) | (pl.col("specimen").fill_null("").str.to_uppercase() == "BM")
    refs = set(obs.filter(is_bm & pl.col("src_row").is_not_null())
               .select(pl.format("{}:{}", "src_file", "src_row")).to_series().to_list())
    return (frame.select("_m", "subject_id", pl.col("evidence").cast(_EVIDENCE))
            .with_columns(pl.col("evidence").list.eval(pl.element().filter(pl.element().is_in(list(refs)))))
            .filter(pl.col("evidence").list.len() > 0))


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
    parts, uppers, notes = [], [], []
    for name, term, col, mx in (("crs_summary", "CRS", "crs_grade_astct", "crs_grade_astct_max"),
                                ("icans_summary", "ICANS", "icans_grade_astct", "icans_grade_astct_max")):
        t = optional(analysis, name)
        if t is None:
            notes.append(_why(analysis, name, view))
            continue
        t = subjects_of(analysis, ids).select("subject_id").join(subset(t, ids), on="subject_id", how="left")
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
    sub = subjects_of(analysis, ids).select("subject_id").join(subset(per, ids), on="subject_id", how="left")
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
    if ids is None:
        pairwise = require(analysis, "crs_cross_scale_pairwise", view)
        summary = require(analysis, "crs_cross_scale_summary", view)
    else:
        from cartlab.grading.crs_legacy import derive_crs_concordance

        conc = derive_crs_concordance(subset(per, ids))
        pairwise, summary = conc["pairwise"], conc["summary"]
    return CrossScale(grades, pairwise, summary)


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
    everyone = subjects_of(analysis, ids).select("subject_id")
    parts, uppers, notes = [], [], []
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
    not reached, not applicable = never below the threshold, not evaluable = the day lies in a range
    days without a value leave open, no data), ``day``, ``day_min``/``day_max`` (the range of a not
    evaluable day; ``day_max`` empty = open-ended). ``curve`` (:func:`recovery_curve`): per lineage
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
        ne = counts.get("not evaluable", 0)
        need = counts.get("recovered", 0) + counts.get("not reached", 0) + ne
        return (f"{self.labels.get(lin, lin)}: N = {need} below the threshold ({counts.get('recovered', 0)} recovered, "
                f"{counts.get('not reached', 0)} not reached" + (f", {ne} not evaluable: days unknown, band" if ne else "")
                + f"); {counts.get('not applicable', 0)} never below; {counts.get('no data', 0)} no data")


#: the legend entry of the count-recovery band (not evaluable subjects)
RECOVERY_BAND_TEXT = ("band: not evaluable subjects at their latest (solid line) to earliest (dashed) possible "
                      "recovery day")


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
        parts.append(rec.select("subject_id", pl.lit(lin).alias("lineage"), st.fill_null("no data").alias("status"),
                                pl.col(f"{lin}_recovery_day").cast(pl.Float64).alias("day"), *rng))
    subjects = pl.concat(parts)
    curve = recovery_curve(subjects)
    labels, consecutive = recovery_definition()
    n_ne = subjects.filter(pl.col("status") == "not evaluable").group_by("lineage").len().sort("lineage")
    notes = ([" and ".join(f"{n} {lin}" for lin, n in n_ne.iter_rows())
              + " subject(s) not evaluable (recovery day in a range days without a value leave open) are counted "
              "in the denominator"] if n_ne.height else [])
    return RecoveryData(subjects, curve, tuple(notes), labels=labels, consecutive=consecutive)


def recovery_curve(subjects: pl.DataFrame) -> pl.DataFrame:
    """Crude cumulative share recovered per lineage and day among every subject whose counts fell
    below the threshold (recovered, not reached, not evaluable: missing is not "not recovered", nor
    is it left out). A not-evaluable subject's day lies in ``[day_min, day_max]``: the lower bound
    counts it at ``day_max`` (never, if open-ended), the upper bound at ``day_min`` (day 0 if
    unknown). One pass over the subjects (expressions, no loop)."""
    st = pl.col("status")
    need = subjects.filter(st.is_in(["recovered", "not reached", "not evaluable"]))
    n_need = need.group_by("lineage").agg(pl.len().cast(pl.Int64).alias("n_needing"))
    rec = st == "recovered"
    ne = st == "not evaluable"
    lo_day = pl.when(rec).then(pl.col("day")).when(ne).then(pl.col("day_max"))
    hi_day = pl.when(rec).then(pl.col("day")).when(ne).then(pl.col("day_min").fill_null(0.0))
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
    quantification is drawn at its limit), ``blq``, ``kind``, ``response`` (best response or "no
    criteria" / "not assessed"); ``n_without`` = selected subjects without any CARCOPY value."""

    points: pl.DataFrame
    unit: str
    n_subjects: int
    n_without: int
    notes: tuple[str, ...] = ()


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
    pts = obs.select(
        "subject_id", "day",
        pl.when(censored | (pl.col("value").fill_null(1.0) <= 0)).then(lim).otherwise(pl.col("value")).alias("value"),
        (censored | (pl.col("value") <= 0)).fill_null(False).alias("blq"), kind_expr(precise=True).alias("kind"),
        pl.col("unit").fill_null(""))
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
    hi_col = [pl.col("crs_grade_astct_max").alias("crs_grade_max")] if crs is not None and \
        "crs_grade_astct_max" in crs.columns else [pl.col("crs_grade_astct").alias("crs_grade_max")]
    if crs is not None:
        pts = pts.join(crs.select("subject_id", pl.col("crs_grade_astct").alias("crs_grade"), *hi_col),
                       on="subject_id", how="left")
    else:
        pts = pts.with_columns(pl.lit(None, pl.Int64).alias("crs_grade"), pl.lit(None, pl.Int64).alias("crs_grade_max"))
    # grade >= 3 only where the grade range settles it (2-3: unknown, not "no")
    hi = pl.coalesce(pl.col("crs_grade_max"), pl.col("crs_grade"))
    pts = pts.with_columns(pl.when(pl.col("crs_grade") >= 3).then(True).when(hi < 3).then(False)
                           .otherwise(None).alias("crs_ge3"))
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
                                                          *[c for c in ("crs_grade_astct_max",) if c in crs.columns]),
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
    value is a ``<x`` result shown at its limit x: censored, marked), ``kind`` (of that maximum's
    row); ``subjects`` in display order (highest peak first); ``unit``."""

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
    blq = pl.col("censor").fill_null("").str.starts_with("<")
    val = pl.coalesce(pl.when(blq).then(pl.col("censor_limit")), pl.col("value"))
    # the day's maximum is picked before the limit stands in for a censored result: a measured value
    # (0 included) beats a "<x" of the same day, whose true value is unknown below x
    cells = (obs.select("subject_id", pl.col("day").floor().cast(pl.Int64).alias("day"), val.alias("value"),
                        blq.alias("blq"), kind_expr(precise=True).alias("kind"), pl.col("unit").fill_null(""))
             .filter(pl.col("value").is_not_null())
             .sort(["blq", "value"], descending=[False, True])
             .group_by("subject_id", "day", maintain_order=True).first())
    if cells.height == 0:
        raise ViewUnavailable(f"{view}: no {param} observations for the selected subjects")
    order = (cells.group_by("subject_id").agg(pl.col("value").max().alias("peak"))
             .sort(["peak", "subject_id"], descending=[True, False])["subject_id"].to_list())
    unit = cells["unit"].mode().sort().to_list()[0]
    n_sel = subjects_of(analysis, ids).height
    notes = [f"{n_sel - len(order)} selected subject(s) without {param} values"] if n_sel > len(order) else []
    return CytokineMatrix(param, unit, cells.drop("unit").sort("subject_id", "day"), tuple(order),
                          (int(cells["day"].min()), int(cells["day"].max())), tuple(notes))
