"""The steps of an :class:`~cartlab.analyze.Analysis`: every engine declared as a producer of named
tables, with the tables it reads (a small dependency graph; each table has one producer), and the
protocol's steps. Engines are imported inside their step, so an engine's import cost is paid only
when it runs. See docs/architecture.md, "Adding an engine"."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

__all__ = ["KM_ENDPOINTS", "STEPS", "SUMMARY_SOURCES", "Step", "protocol_steps"]

@dataclass(frozen=True)
class Step:
    """A producer of one or more named tables.

    ``run(study, options, **inputs)`` returns a frame (one output) or a dict of frames (several).
    ``per_subject``: its rows are per subject, so it can be run on part of the subjects (and failures
    isolated to the subjects that cause them); cohort steps run whole or not at all, and read only
    their input tables and ``study.subjects`` (so a study can be analysed in subject batches,
    :mod:`cartlab.analyze_batched`).
    ``write``: the tables are written by ``cartlab analyze`` (internal tables are not).
    """

    outputs: tuple[str, ...]
    run: Callable[..., Any]
    engine: str
    inputs: tuple[str, ...] = ()
    per_subject: bool = True
    write: bool = True
    fix: str = "check the rows of these subjects named in the reason"
    #: outputs kept for other consumers (the report) but not written by ``cartlab analyze``
    internal: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------------------
# the engines, as steps (imports inside: an engine's import cost is paid only when it runs)


def _cross_scale(study, o, crs_summary, adlb):
    from cartlab.grading.crs_legacy import derive_crs_cross_scale, organ_grades_from_adlb

    return derive_crs_cross_scale(study, crs_summary, organ_grades_from_adlb(adlb), options=o.crs_legacy)


def _concordance(study, o, crs_cross_scale):
    from cartlab.grading.crs_legacy import derive_crs_concordance

    cross = derive_crs_concordance(crs_cross_scale)
    return {"crs_cross_scale_pairwise": cross["pairwise"], "crs_cross_scale_summary": cross["summary"]}


def _icaht_summary(study, o, icaht):
    return study.subjects.select("subject_id").join(
        icaht.select("subject_id", "icaht_early_grade", "icaht_late_grade", "icaht_early_grade_max",
                     pl.col("icaht_late_grade_max") if "icaht_late_grade_max" in icaht.columns
                     else pl.lit(None, dtype=pl.Int64).alias("icaht_late_grade_max")),
        on="subject_id", how="left", maintain_order="left")


def _adae(study, o, crs_daily, icans_daily, icaht):
    from cartlab.grading.adam import derive_adae_toxicity
    from cartlab.grading.crs import crs_episodes_from_daily
    from cartlab.grading.hematotox import derive_icaht_episodes
    from cartlab.grading.icans import icans_episodes_from_daily

    parts = [
        crs_episodes_from_daily(crs_daily),
        icans_episodes_from_daily(icans_daily, o.icans),
        derive_icaht_episodes(study, o.icaht, graded=icaht),
    ]
    # the analysis's ADaM options: adae_toxicity.csv gives the outcome the export gives (one reading)
    return derive_adae_toxicity(study, parts, aeout_unobserved=o.adam.aeout_unobserved if o.adam else "unknown")


def _engine(module: str, name: str, option: str | None = None, gap: bool = False, **tables: str):
    """A step running ``module.name(study, options=<AnalysisOptions.option>, <arg>=<table>, ...)``;
    ``gap``: also ``split_dose_gap_days`` (the analysis's kinetics option: what makes a later CAR-T
    dose a re-infusion, session 45)."""

    def run(study, o, **inputs):
        import importlib

        fn = getattr(importlib.import_module(module), name)
        kwargs = {arg: inputs[table] for arg, table in tables.items()}
        if option is not None:
            kwargs["options"] = (o.endpoint_options() if option == "endpoints" else
                                 o.best_response_options() if option == "best_response" else getattr(o, option))
        if gap:
            kwargs["split_dose_gap_days"] = _split_dose_gap(o)
        return fn(study, **kwargs)

    run.__name__ = name
    run.inputs = tuple(tables.values())
    return run


def _step(outputs: str | tuple[str, ...], run, engine: str, **kw) -> Step:
    """A Step whose inputs are those its run function declares (``_engine``) unless given."""
    outs = (outputs,) if isinstance(outputs, str) else outputs
    return Step(outs, run, engine, kw.pop("inputs", getattr(run, "inputs", ())), **kw)


def _split_dose_gap(o) -> float:
    """The analysis's ``kinetics.split_dose_gap_days``: what makes a later CAR-T dose a re-infusion, for
    the kinetics and the response engines alike (session 42: the response engines read the option too)."""
    from cartlab.kinetics.car import CarKineticsOptions

    return float((o.kinetics or CarKineticsOptions()).split_dose_gap_days)


def _marrow_response(study, o):
    from cartlab.response.marrow import derive_marrow_response

    return derive_marrow_response(study, options=o.response, split_dose_gap_days=_split_dose_gap(o))


def _best_options(o):
    """The best-response options the analysis applies, with what it inherits from the endpoints filled in
    (one reading for the best response and the protocol's ORR)."""
    from dataclasses import replace

    opts = o.best_response_options()  # with the analysis's response options unless set apart
    if opts.last_alive_sources is None:  # duration of response: the endpoints' day last known alive
        opts = replace(opts, last_alive_sources=o.endpoint_options().last_alive_sources)
    if opts.undetermined_relapse is None:  # ... and their reading of a marrow that could be a relapse (diff1 F2)
        opts = replace(opts, undetermined_relapse=o.endpoint_options().undetermined_relapse)
    return opts


def _best_response(study, o, marrow_response, relapse):
    from cartlab.response.best import derive_best_response
    from cartlab.response.marrow import ResponseOptions

    opts = _best_options(o)
    # the relapse table was derived with the analysis's response options: reused when they are the same
    same = opts.response == (o.response or ResponseOptions())
    return derive_best_response(study, opts, assessments=marrow_response, relapses=relapse if same else None,
                                split_dose_gap_days=_split_dose_gap(o))


def _response_summary(study, o, best_response):
    # could_be: the better categories a missing input leaves possible (a CRi without platelets: CR;CRh)
    # best_response_day as a calendar day (study format, derivation conventions: "Days are calendar days relative
    # to day 0"): a marrow timed 31.39 (from its datetime) is day 31, as CRS onset days are (review 48 oracle #5);
    # best_response.csv keeps the assessment's own time
    return best_response.select("subject_id", "best_response", pl.col("could_be").list.join(";").replace("", None).alias("best_response_could_be"),
                                pl.col("best_response_day").floor(), "mrd_negative")


def _adtte(study, o, marrow_response, relapse, best_response):
    from cartlab.response.best import assessment_end_days
    from cartlab.response.endpoints import derive_adtte
    from cartlab.response.marrow import ResponseOptions

    # every assessment (not only the best) so that the first remission day starts RFS/CIR; the same
    # assessments best_response counts: none after its end events (allo-HSCT, new therapy), so a
    # remission reached only after new therapy is not the CAR-T's (EFS failure, not in RFS/CIR)
    # option best_response.reinfusion=end_window: a further CAR-T dose ends the window too (review 41 F7)
    ends = assessment_end_days(study, o.best_response_options().end_events, o.best_response_options().reinfusion,
                               _split_dose_gap(o))
    # could_be / missing_inputs: an assessment that could be a remission (or a relapse) for want of an
    # input is not read as a definite "no remission" (review 41 F1)
    cols = ("subject_id", pl.col("category").alias("best_response"), pl.col("day").alias("best_response_day"),
            "evidence", *[c for c in ("could_be", "missing_inputs") if c in marrow_response.columns])
    eo = o.endpoint_options()
    lm = o.best_response_options().landmark_day
    efs = eo.params is None or "EFS" in eo.params  # the mismatch matters only to EFS (review 41 diff1 11)
    if efs and lm is not None and eo.efs_landmark_day is not None and float(lm) != float(eo.efs_landmark_day):
        import warnings

        from cartlab.errors import CartlabWarning

        warnings.warn(CartlabWarning(  # review 41 F3: one study, one protocol landmark
            f"best_response.landmark_day ({float(lm):g}) and endpoints.efs_landmark_day ({eo.efs_landmark_day:g}) "
            "differ: the response rates count remission by the first, EFS treatment failure by the second; set "
            "one landmark (endpoints.efs_landmark_day follows best_response.landmark_day when left unset)"),
            stacklevel=2)
    assessments = (marrow_response.join(ends, on="subject_id", how="left")
                   .filter(pl.col("end_day").is_null() | pl.col("day").is_null() | (pl.col("day") <= pl.col("end_day")))
                   .select(*cols))
    # ... but every assessment, also after those events, fixes the EFS censoring day (the last response
    # assessment) and counts as a day known alive: ELN 2022 does not censor at HSCT, and a relapse after
    # it already ends EFS/RFS (the relapse table is derived from every marrow)
    # subjects whose disease has no response criteria: the response-based endpoints are not defined
    no_criteria = dict(best_response.filter(pl.col("rule") == "response.no_criteria")
                       .select("subject_id", "reason").iter_rows())
    from cartlab.response.endpoint_options import LANDMARK_FROM_BEST_RESPONSE, landmark_inherited

    # where the EFS landmark came from, named in the EFS reasons: derived, not an option (review 41 diff1 F8)
    source = LANDMARK_FROM_BEST_RESPONSE if landmark_inherited(o.endpoints, o.best_response_options()) else None
    # review 48 F1: the table the relapses were derived by says whether blood samples set the EFS censoring day
    return derive_adtte(study, eo, responses=assessments, relapses=relapse, no_criteria=no_criteria,
                        censoring_responses=marrow_response.select(*cols), landmark_source=source,
                        response_criteria=(o.response or ResponseOptions()).criteria)


def _relapse_antigen(study, o, relapse, antigen_loss):
    from cartlab.response.molecular import derive_relapse_antigen

    # the target antigen at each relapse (review 41 F1/F2): options response.antigen_forward_days /
    # antigen_relapse_specimen; the cut-off is the molecular options'
    return derive_relapse_antigen(study, relapse, antigen_loss, o.response, o.molecular)


def _response_rates(study, o, best_response):
    from cartlab.response.best import orr, rate_definitions

    rates = []
    for name, cats in rate_definitions(o.best_response_options().orr_categories,
                                       o.endpoint_options().remission_categories):
        for by in (None, "criteria"):
            r = orr(best_response, cats, by=by, population=o.best_response_options().rate_population).with_columns(
                pl.lit(name).alias("endpoint"))
            # a cohort rate points at the subject table and the filter that gives its numerator
            # (listing every responder's source rows made cells of tens of thousands of characters)
            where = pl.format("best_response.csv: best_response in {{{}}}{}",
                              pl.col("responders").list.join(", "),
                              pl.format(", criteria = {}", pl.col("criteria")) if by else pl.lit(""))
            rates.append(r.with_columns(pl.concat_list(where).alias("evidence")))
    return pl.concat(rates, how="diagonal_relaxed")


#: the ADTTE endpoints estimated by Kaplan-Meier (CIR is competing-risk: cumulative_incidence)
KM_ENDPOINTS = ("OS", "EFS", "RFS", "LFS")


def _km(study, o, adtte):
    from cartlab.response.endpoints import km_estimate

    return pl.concat([km_estimate(adtte, p) for p in KM_ENDPOINTS], how="diagonal_relaxed")


def _km_median(study, o, adtte):
    from cartlab.response.endpoints import median_survival

    return pl.concat([median_survival(adtte, p) for p in KM_ENDPOINTS], how="diagonal_relaxed")


def _cif(study, o, adtte):
    from cartlab.response.endpoints import cumulative_incidence

    return pl.concat([cumulative_incidence(adtte, code).with_columns(pl.lit(what).alias("event"))
                      for code, what in ((1, "relapse"), (2, "death without relapse"))], how="diagonal_relaxed")


def _exposure(study, o, kinetics_summary, best_response, crs_summary):
    from cartlab.kinetics.exposure import ExposureOptions, derive_exposure_response

    frame = (kinetics_summary
             .join(best_response.select("subject_id", "best_response",
                                        *[c for c in ("responder",) if c in best_response.columns]),
                   on="subject_id", how="left")  # the analysis's responder definition (review40 B8)
             .join(crs_summary.select("subject_id", "crs_grade_astct",  # the range, as the report (review45 F6)
                                      *[c for c in ("crs_grade_astct_min", "crs_grade_astct_max")
                                        if c in crs_summary.columns]),
                   on="subject_id", how="left"))
    return derive_exposure_response(frame, min_epv=(o.exposure or ExposureOptions()).min_epv)


def _data_sources(study, o):
    """Per subject: the kinds of its rows (study-format ``source``: paper / reconstructed / synthetic /
    simulated / observed), so the subject summary says which results rest on data not measured."""
    from cartlab.provenance import subject_data_sources

    return subject_data_sources(study.tables(), study.subject_ids)


GRADING_FIX = "check these subjects' observations and interventions (cartlab explain SUBJECT --what crs|icans|icaht)"
RESPONSE_FIX = "check these subjects' marrow (BMBLAST, BMCELL, MRDFCM) and count rows, and subjects.disease"
KINETICS_FIX = "check these subjects' CARCOPY/CARCELL rows and CAR-T doses"

GRADING, HEMATO = "cartlab.grading.crs", "cartlab.grading.hematotox"
KIN, MOLECULAR = "cartlab.kinetics.car", "cartlab.response.molecular"
STEPS: tuple[Step, ...] = (
    _step("adlb", _engine("cartlab.grading.ctcae", "derive_ctcae", "ctcae"), "CTCAE v5 lab grading",
          fix="check these subjects' lab rows (units, lln/uln)"),
    _step("crs_daily", _engine(GRADING, "derive_crs_daily", "crs"), "ASTCT 2019 CRS", fix=GRADING_FIX),
    _step("crs_summary", _engine(GRADING, "derive_crs_summary", "crs", daily="crs_daily"), "ASTCT 2019 CRS",
          write=False, fix=GRADING_FIX),
    _step("icans_daily", _engine("cartlab.grading.icans", "derive_icans_daily", "icans"), "ASTCT 2019 ICANS",
          fix=GRADING_FIX),
    _step("icans_summary", _engine("cartlab.grading.icans", "derive_icans_summary", "icans", daily="icans_daily"),
          "ASTCT 2019 ICANS", write=False, fix=GRADING_FIX),
    _step("crs_cross_scale", _cross_scale, "CRS scales side by side (Lee 2014, Penn, CARTOX, MSKCC)",
          inputs=("crs_summary", "adlb"), fix=GRADING_FIX),
    _step(("crs_cross_scale_pairwise", "crs_cross_scale_summary"), _concordance,
          "CRS scales: concordance (Pennisi 2020)", inputs=("crs_cross_scale",), per_subject=False,
          fix=GRADING_FIX),
    _step("icaht", _engine(HEMATO, "derive_icaht", "icaht", gap=True, daily="icaht_daily"), "EHA/EBMT ICAHT",
          fix="check these subjects' NEUT/PLAT rows"),
    _step("icaht_summary", _icaht_summary, "EHA/EBMT ICAHT", inputs=("icaht",), write=False),
    _step("icaht_daily", _engine(HEMATO, "derive_icaht_daily", "icaht", gap=True), "EHA/EBMT ICAHT (daily ANC)"),
    _step("t_icaht", _engine(HEMATO, "derive_t_icaht", "t_icaht", gap=True, daily="t_icaht_daily"), "T-ICAHT (thrombocytopenia)",
          fix="check these subjects' PLAT rows and platelet transfusions"),
    _step("t_icaht_daily", _engine(HEMATO, "derive_t_icaht_daily", "t_icaht", gap=True), "T-ICAHT (daily platelets)"),
    _step("count_recovery", _engine(HEMATO, "derive_count_recovery", "count_recovery", gap=True), "count recovery"),
    _step("car_hematotox", _engine(HEMATO, "derive_car_hematotox", "car_hematotox"), "CAR-HEMATOTOX"),
    _step("easix", _engine(HEMATO, "derive_easix", "easix"), "EASIX"),
    _step("iec_hs_flags", _engine(HEMATO, "derive_iec_hs_flags", "iec_hs"), "IEC-HS flags"),
    _step("adae_toxicity", _adae, "ADAE-like toxicity episodes", inputs=("crs_daily", "icans_daily", "icaht")),
    _step("marrow_response", _marrow_response, "ELN 2022 AML / ALL response", fix=RESPONSE_FIX),
    _step("relapse", _engine("cartlab.response.marrow", "derive_relapse", "response", assessments="marrow_response"),
          "relapse from the marrow", write=False, fix=RESPONSE_FIX),
    _step("best_response", _best_response, "best response", inputs=("marrow_response", "relapse"),
          fix=RESPONSE_FIX),
    _step("response_summary", _response_summary, "best response", inputs=("best_response",), write=False),
    _step("adrs", _engine("cartlab.response.best", "derive_adrs", "best_response", assessments="marrow_response",
                          best="best_response"), "ADRS", fix=RESPONSE_FIX),
    _step("adtte", _adtte, "time-to-event endpoints (ELN 2022 Table 9)",
          inputs=("marrow_response", "relapse", "best_response"),
          fix="check these subjects' death, relapse and last_followup_day against their marrow assessments "
              "(cartlab explain SUBJECT --what response); where none is recorded, give subjects.last_followup_day "
              "or record death/relapse events"),
    _step("response_rates", _response_rates, "response rates", inputs=("best_response",), per_subject=False),
    _step("km", _km, "Kaplan-Meier", inputs=("adtte",), per_subject=False),
    _step("km_median", _km_median, "Kaplan-Meier median survival", inputs=("adtte",), per_subject=False),
    _step("cumulative_incidence", _cif, "cumulative incidence of relapse", inputs=("adtte",), per_subject=False),
    _step("molecular_response", _engine(MOLECULAR, "derive_molecular_response", "molecular"), "molecular response"),
    _step("antigen_loss", _engine(MOLECULAR, "derive_antigen_loss", "molecular"), "target-antigen loss"),
    _step("relapse_antigen", _relapse_antigen, "target antigen at relapse", inputs=("relapse", "antigen_loss")),
    _step("car_kinetics", _engine(KIN, "derive_car_kinetics", "kinetics"), "CAR-T kinetics (NCA)",
          fix=KINETICS_FIX),
    _step("kinetics_summary", _engine(KIN, "derive_kinetics_summary", "kinetics", kinetics="car_kinetics"),
          "CAR-T kinetics (NCA)", write=False, fix=KINETICS_FIX),
    _step("adpc", _engine(KIN, "derive_adpc", "kinetics"), "ADPC", fix=KINETICS_FIX),
    _step("adpp", _engine(KIN, "derive_adpp", "kinetics", kinetics="car_kinetics"), "ADPP",
          fix=KINETICS_FIX),
    _step("data_sources", _data_sources, "data sources (measured or not)", write=False),
    _step("exposure_response", _exposure, "exposure-response",
          inputs=("kinetics_summary", "best_response", "crs_summary"), per_subject=False),
)

#: the summary tables whose columns make ``subject_summary.csv``, with the engine and citation
SUMMARY_SOURCES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("crs_summary", "Lee DW et al., Biol Blood Marrow Transplant 2019;25:625, Table 1",
     ("crs_grade_astct", "crs_onset_day", "crs_resolution_day", "crs_episode", "crs_n_episodes",
      "crs_grade_astct_max", "crs_grade_astct_min", "crs_onset_day_earliest", "crs_onset_open",
      "crs_resolution_day_latest", "crs_resolution_open", "crs_resolution_status")),
    ("icans_summary", "Lee DW et al., Biol Blood Marrow Transplant 2019;25:625, Table 4",
     ("icans_grade_astct", "icans_grade_astct_max", "icans_resolution_day_latest", "icans_resolution_open",
      "icans_onset_day", "icans_resolution_day", "icans_n_episodes")),  # session 46 (review 46 ICANS F6)
    ("icaht_summary", "Rejeski K et al., Blood 2023;142:865 (criteria/icaht_2023.yaml)",
     ("icaht_early_grade", "icaht_late_grade", "icaht_early_grade_max", "icaht_late_grade_max")),
    ("response_summary", "Döhner H et al., Blood 2022;140:1345, Table 7; ELIANA (Maude 2018) for ALL",
     ("best_response", "best_response_could_be", "best_response_day", "mrd_negative")),
    ("kinetics_summary", "PKNCA conventions (Denney et al. 2015): lin-up/log-down AUC, BLQ first/middle/last = 0/drop/0",
     ("car_cmax", "car_tmax", "car_auc_0_28", "car_auc_window", "car_tlast", "car_param", "car_unit")),
    ("data_sources", "study-format spec, column 'source' (paper / reconstructed / synthetic / simulated; else observed)",
     ("data_source", "n_rows_not_measured", "n_rows")),
)


def _popts(o):
    """The analysis' :class:`~cartlab.protocol.options.ProtocolOptions` (defaults when unset)."""
    from cartlab.protocol.options import ProtocolOptions

    return getattr(o, "protocol", None) or ProtocolOptions()


def protocol_steps(protocol) -> tuple[Step, ...]:
    from cartlab.criteria.status import register_rules

    # the protocol is a table of rules: its rows' statuses fill the rule_status of its outputs (a
    # protocol parsed from text, not through load_protocol, is registered here)
    register_rules(protocol.rule_infos())

    def dose_plan(study, o):
        from cartlab.protocol import DOSE_PLAN_SCHEMA, planned_doses

        plans, notes = [], []
        for sid in study.subject_ids:
            plan, why = planned_doses(study, protocol, sid, _popts(o).dose_options(), _popts(o).ld_course_tolerance_days)
            if plan is not None:
                plans.append(plan.select(pl.lit(sid).alias("subject_id"), pl.all()))
            notes.append((sid, why))
        refused = [(sid, why) for sid, why in notes if why]
        if refused:  # inputs dosing refuses (a weight of 1.5 kg, creatinine 25 mg/dL ...): said, not dropped
            import warnings

            from cartlab.errors import SubjectsWarning

            warnings.warn(SubjectsWarning(
                f"no plan for {len(refused)} subject(s) (dose_plan.csv has no rows for them): {{subjects}}",
                [sid for sid, _ in refused], "the report's dosing section",
                labels=[f"{sid}: {why}" for sid, why in refused]), stacklevel=2)
        return {
            "dose_plan": pl.concat(plans) if plans else pl.DataFrame(schema={"subject_id": pl.String,
                                                                           **DOSE_PLAN_SCHEMA}),
            # why a subject has no plan (missing weight, height ...), for the report
            "dose_plan_notes": pl.DataFrame(notes, schema={"subject_id": pl.String, "reason": pl.String},
                                            orient="row"),
        }

    def eligibility(study, o):
        from cartlab.protocol import derive_eligibility

        po = _popts(o)
        return derive_eligibility(study, protocol, age_whole_years=po.age_whole_years, screening_end=po.screening_end,
                                  ld_course_tolerance_days=po.ld_course_tolerance_days)

    def verdict(study, o, eligibility):
        from cartlab.protocol import eligibility_verdict

        return eligibility_verdict(eligibility, trace=True)

    def deviations(study, o):
        from cartlab.protocol import derive_deviations

        # review 40 B9/B10/A1: one options class (dose plan, tolerances, monitoring) as cartlab
        # deviations; who is infused is the analysis's one option best_response.infusion_evidence
        evidence = getattr(o.best_response_options(), "infusion_evidence", None) or "dose_or_kinetics"
        return derive_deviations(study, protocol, _popts(o), infusion_evidence=evidence,
                                 split_dose_gap_days=_split_dose_gap(o))

    def best(study, o):
        from cartlab.protocol.outcomes import derive_protocol_best_response

        # session 42: the analysis's best-response options (end events, re-infusion, response criteria
        # options, ...), with the protocol's ORR categories and landmarks; before, the defaults
        return derive_protocol_best_response(study, protocol, _best_options(o), _split_dose_gap(o))

    def orr(study, o, protocol_best_response):
        from cartlab.protocol.outcomes import protocol_orr_from

        return protocol_orr_from(protocol_best_response, protocol)

    fix = f"check these subjects' weight, height, creatinine and doses against protocol {protocol.id}"
    return (
        Step(("dose_plan", "dose_plan_notes"), dose_plan, f"protocol {protocol.id}: dose plan", fix=fix,
             internal=("dose_plan_notes",)),
        Step(("eligibility",), eligibility, f"protocol {protocol.id}: eligibility", fix=fix),
        Step(("eligibility_verdict",), verdict, f"protocol {protocol.id}: eligibility", ("eligibility",)),
        Step(("protocol_deviations",), deviations, f"protocol {protocol.id}: deviations", fix=fix),
        Step(("protocol_best_response",), best, f"protocol {protocol.id}: best response", fix=fix,
             internal=("protocol_best_response",)),
        Step(("protocol_orr",), orr, f"protocol {protocol.id}: ORR", ("protocol_best_response",),
             per_subject=False),
    )
