"""The swimmer plot as data (one of the cohort views of :mod:`cartlab.report.cohort_data`, which
re-exports it): per subject a bar from infusion to death or last known alive, and markers for
response, relapse (with the target antigen at relapse, from the response engine's
``relapse_antigen`` table), allo-HSCT and death, each with the source kind of its rows.

Missing is not negative: a relapse without an antigen assessment is "antigen not assessed" (never
antigen retained); with events.csv not given no death is known (``events_absent``)."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from cartlab.provenance import evidence_ref
from cartlab.report import cohort_base as cb
from cartlab.report.provenance_marks import approximate_day

__all__ = ["MARKER_SCHEMA", "SwimmerData", "events_not_given", "swimmer_data"]

_EVIDENCE = pl.List(pl.String)


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
    ids = cb.selected_ids(analysis, subject_ids, view)
    study = analysis.study
    adtte = cb.subset(cb.require(analysis, "adtte", view), ids)
    os_rows = adtte.filter((pl.col("PARAMCD") == "OS") & (pl.col("ANLFL") == "Y") & pl.col("ADY").is_not_null())
    subj = cb.subjects_of(analysis, ids).select("subject_id", "disease")
    notes = []
    lost = subj.join(os_rows, on="subject_id", how="anti")
    if lost.height:
        notes.append(f"{lost.height} subject(s) without an overall-survival row (ADTTE) are not drawn: "
                     f"{', '.join(lost['subject_id'].head(10).to_list())}{' ...' if lost.height > 10 else ''}")
    if os_rows.height == 0:
        raise cb.ViewUnavailable(f"{view}: no subject has an overall-survival row in table 'adtte'", ("adtte",))
    best = cb.optional(analysis, "best_response")
    if best is None:
        notes.append("best response not available (table 'best_response'); response markers not drawn")
        best = pl.DataFrame(schema={"subject_id": pl.String, "criteria": pl.String, "best_response": pl.String,
                                    "best_response_day": pl.Float64, "relapse_day": pl.Float64, "evidence": _EVIDENCE})
    best = cb.subset(best, ids)
    bars = (subj.join(os_rows.select("subject_id", pl.col("ADY").alias("end_day"), (pl.col("EVENT") == 1).alias("dead"),
                                     "evidence"), on="subject_id", how="inner")
            .join(best.select("subject_id", "criteria", "best_response"), on="subject_id", how="left")
            .with_columns(cb.response_label().alias("response"), (~pl.col("dead")).alias("ongoing")))
    kinds = cb.evidence_kinds(study, bars, precise=True)  # the CSV says synthetic / simulated as such (review 39 C2)
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
    rel_tab = cb.optional(analysis, "relapse")
    src = [best.filter(pl.col("relapse_day").is_not_null()).select(
        "subject_id", pl.col("relapse_day").alias("day"), pl.lit([], dtype=_EVIDENCE).alias("evidence"))]
    if rel_tab is not None:
        src.append(cb.subset(rel_tab, ids).filter(pl.col("relapse_day").is_not_null()).select(
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
    loss = cb.optional(analysis, "antigen_loss")
    if loss is None:
        notes.append("target-antigen assessment not available (table 'antigen_loss'): relapses marked "
                     "'antigen not assessed'")
        loss = pl.DataFrame(schema={"subject_id": pl.String, "antigen": pl.String, "antigen_loss": pl.Boolean})
    # below_cutoff (antigen_loss.csv since the s28 molecular audit): below the cut-off without a
    # documented loss (antigen.low_at_baseline: low before treatment; antigen.no_baseline: no
    # pre-treatment value, antigen_loss empty) is "low", never "retained" nor "not assessed"
    below = pl.col("below_cutoff") if "below_cutoff" in loss.columns else pl.col("antigen_loss")
    loss = cb.subset(loss, ids)
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
    engine = cb.optional(analysis, "relapse_antigen")  # the antigen at each relapse (review 41 F1/F2)
    if engine is not None:
        engine = _with_uncovered(analysis, cb.subset(engine, ids), rel, rel_tab, cb.subset(cb.optional(analysis, "antigen_loss"), ids))
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
    ev = cb.subset(study.events, ids)
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
    kinds = cb.evidence_kinds(study, markers, key="_m", precise=True, approximate_days=True)
    # a response is what its marrow shows: a marrow result stated in the publication makes the response
    # marker "paper" even when the counts beside it (ANC, platelets, PB blasts) were reconstructed
    marrow = _marrow_evidence(study, markers.filter(pl.col("marker") == "response"))
    if marrow.height:
        mk = cb.evidence_kinds(study, marrow, key="_m", precise=True).rename({"kind": "_mk"})
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
