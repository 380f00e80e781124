"""Best overall response, time to and duration of response, ORR, and the ADRS frame.

Conventions (study-format v1, "Derivation conventions", Response): best response ranks
CR > CRh > CRi > MLFS > PR > NR > NE, ties go to the first day (option ``rank_mrd``: an MRD-negative
assessment first, ELN 2022); ``mrd_negative`` is taken at the
best-response marrow (empty when MRDFCM was not measured that day). When a counted assessment could
be better than the best for want of an input (its ``could_be``), the best is a range: at least
``best_response``, ``could_be`` the better categories and ``missing_inputs`` what was not measured
(spec "Response": a missing input never yields a definitive negative). Relapse and duration of
response belong to a counted response: a remission after an end event starts no relapse here. Assessments after an allogeneic
HSCT or a new therapy are not responses to the CAR-T and are left out by default
(``BestResponseOptions.end_events``). The overall response rate counts the categories the trial
defines (``orr_categories``; NCT04762485: CR + CRi + MLFS + PR, the default adds CRh, which ELN 2022
introduced and which that trial's definition predates).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from typing import Literal

import polars as pl

from cartlab._deprecated import renamed
from cartlab.criteria import load_raw as load_criteria
from cartlab.criteria.options import CriteriaOptions
from cartlab.errors import CartlabWarning, SubjectsWarning
from cartlab.model import Study
from cartlab.provenance import EVIDENCE, row_ref
from cartlab.response.endpoint_options import EFS_CENSOR, check_choice
from cartlab.response.infusion_evidence import INFUSION_EVIDENCE, infused_subjects, reinfusions, warn_kinetics_infused
from cartlab.response.last_assessment import blood_samples, dor_last_blood
from cartlab.response.marrow import (
    CATEGORY_RANK,
    PACKAGE,
    ResponseOptions,
    criteria_for_disease,
    derive_marrow_response,
    derive_relapse,
)
from cartlab.response.marrow_options import applicable, mrd_qualifies
from cartlab.response.mrd_status import mrd_below_note
from cartlab.response.refractory import refractory
from cartlab.response.relapse_episodes import mrd_off_day_note, mrd_off_marrow_day

__all__ = [
    "ADRS_COLUMNS",
    "BestResponseOptions",
    "derive_best_response",
    "derive_adrs",
    "orr",
    "derive_response_summary",
]


class BestResponseOptions(CriteriaOptions):
    """* ``orr_categories``: the categories counted as response (time to / duration of response).
    * ``end_events``: assessments on days after the first of these events are not counted.
    * ``landmark_day``: when set, only assessments up to this day count (e.g. 28 or 90), and
      ``refractory`` is derived (ELN 2022 "No CR, CRh, or CRi at the response landmark"; rule
      ``response.refractory``, :mod:`cartlab.response.refractory`; empty without a landmark).
    * ``dor_censor_events`` (none): duration of response is censored at the first of these events
      (e.g. ``allo_hsct``, ``new_therapy``) when it comes before relapse or death; by default, as the
      time-to-event endpoints (ELN 2022 Table 9 censors at neither), a relapse or death after them
      is still the event.
    * ``dor_pr_end`` ("loss_of_response"): how a response outside ``response.relapse_after`` (PR,
      and MLFS by default; ELN 2022 has relapse only after CR/CRh/CRi) ends: at the first later
      counted assessment no longer in ``orr_categories`` (NE does not end it) or a ``relapse`` /
      ``extramedullary_disease`` event, whichever first (rule ``response.loss_of_response``, a cartlab
      convention); "relapse_only" = only a relapse (never, for such a response) or death end it.
    * ``dor_censor`` ("last_disease_assessment"): where a response without relapse, loss of response
      or death is censored - on the day of the last disease assessment, as EFS is (ELN 2022 Table 9:
      "censored on the date they were last assessed for response"; ELN 2017 Table 7 censored RFS and
      CIR "on the date they were last examined"; admiralonco's duration-of-response template censors
      at the last response assessment; ELN gives no duration-of-response row of its own): the last
      response assessment (a marrow whose category is not NE; any, also after an allo-HSCT, which does
      not censor) or, when later, the last PBBLAST sample after the relapse episode's response that
      the relapse rule reads as no circulating blasts (ELN 2022 Table 7 relapse by blood; not a ``<x``
      bound; on or before the day last known alive and a censoring event; :mod:`cartlab.response.last_assessment`,
      review 48 F1; a PR/MLFS without relapse episode: the marrow only). "last_response_assessment" =
      the marrow only (sessions 37-47); "last_known_alive" = when last known alive (before session 37).
    * ``last_alive_sources`` (None = the analysis's ``endpoints.last_alive_sources``, "all_tables"
      when called alone): what makes the day last known alive, as
      :class:`~cartlab.response.endpoints.EndpointOptions` reads it.
    * ``undetermined_relapse`` (None = the analysis's ``endpoints.undetermined_relapse``,
      "censor_last_settled" when called alone): a marrow after the response that could be a relapse
      for want of an input (the relapse table's ``relapse_possible_day``, e.g. BMBLAST ``<10``), read
      as ADTTE reads it for RFS (review 41 diff1 F2: duration of response and RFS agree).
      "censor_last_settled" = without a relapse, loss of response or death recorded after it, the
      duration is censored at the last response assessment before it that settles no relapse (the
      response day when none), ``dor_end_reason`` naming the marrow; a later relapse or death is the
      event on its day, the reason naming the marrow too. "ignore" = not read (the behaviour before
      session 41); "event" = the duration ends with a relapse on that marrow's day.
    * ``rank_mrd`` (False, study-format v1: ties go to the first day, MRD does not rank): True ranks an
      MRD-negative assessment above one of the same category without it (ELN 2022 makes "CR/CRh/CRi
      without MRD" a response of its own, research note grading.md §4.1): CR MRD+ on day 28 and CR
      MRD- on day 60 give best CR_MRD- on day 60 (the first response day stays 28).
    * ``rate_population`` ("infused"): the response rates' denominators leave out subjects without a
      CAR-T dose (rule ``response.not_infused``; CAR-T trials report the infused set); "all" keeps them
      in as non-responders (:func:`orr`'s ``population``).
    * ``infusion_evidence`` ("dose_or_kinetics"): a subject without a CAR-T dose row but with a
      quantifiable CARCOPY/CARCELL after day 0 is infused, the infusion not recorded (day 0 as the
      spec's anchor; its reason says so, a warning names it); "dose" = a dose row only (review 39 A1,
      :mod:`cartlab.response.infusion_evidence`). The endpoint population reads the same option.
    * ``after_relapse`` ("count"): whether a remission after a relapse (no end event between) can be
      the best response. ELN 2022 Table 7 defines the categories per assessment and no best response,
      so it is silent here; "count" (the behaviour before session 40) ranks every counted assessment,
      "exclude" stops at the first relapse (RECIST 1.1 §4.4 style: "the best response recorded from
      the start of the treatment until disease progression/recurrence"). Either way the reason names
      the relapse between (review 40 B3).
    * ``reinfusion`` ("count"): a further CAR-T dose more than ``kinetics.split_dose_gap_days`` (7) after
      the previous one (a re-infusion; the fractions of a split dose are one administration; review 41 F7). "count" (intention to treat, the behaviour before
      session 41) counts every assessment, and the reason names the re-infusion before the best;
      "end_window" ends the assessment window at the first such dose, as an end event (assessments
      after it are not the first infusion's response). No source fixes it.
    * ``response``: options of the per-assessment criteria.
    """

    orr_categories: tuple[str, ...] = ("CR", "CRh", "CRi", "MLFS", "PR")
    end_events: tuple[str, ...] = ("allo_hsct", "new_therapy")
    landmark_day: float | None = None
    dor_censor_events: tuple[str, ...] = ()
    dor_pr_end: Literal["loss_of_response", "relapse_only"] = "loss_of_response"
    dor_censor: Literal["last_disease_assessment", "last_response_assessment", "last_known_alive"] = \
        "last_disease_assessment"
    last_alive_sources: Literal["all_tables", "followup_day"] | None = None
    rank_mrd: bool = False
    undetermined_relapse: Literal["censor_last_settled", "ignore", "event"] | None = None
    rate_population: Literal["infused", "all"] = "infused"
    infusion_evidence: Literal["dose_or_kinetics", "dose"] = "dose_or_kinetics"
    after_relapse: Literal["count", "exclude"] = "count"
    reinfusion: Literal["count", "end_window"] = "count"
    response: ResponseOptions = ResponseOptions()

    def __post_init__(self) -> None:
        bad = [c for c in self.orr_categories if c not in CATEGORY_RANK]
        if bad:
            raise ValueError(f"unknown response categories {bad}; known: {list(CATEGORY_RANK)}")
        check_choice("dor_censor", self.dor_censor, EFS_CENSOR)
        check_choice("rate_population", self.rate_population, ("infused", "all"))
        check_choice("infusion_evidence", self.infusion_evidence, INFUSION_EVIDENCE)
        check_choice("reinfusion", self.reinfusion, ("count", "end_window"))
        if self.landmark_day is not None and not self.landmark_day >= 0:
            raise ValueError(f"best_response.landmark_day = {self.landmark_day!r} is not valid; expected a day 0 or later")
        if not self.orr_categories:
            raise ValueError("best_response.orr_categories is empty; expected at least one category (e.g. [CR])")
        if self.undetermined_relapse is not None:
            check_choice("undetermined_relapse", self.undetermined_relapse, ("censor_last_settled", "ignore", "event"))
        if self.last_alive_sources not in (None, "all_tables", "followup_day"):
            raise ValueError("last_alive_sources must be 'all_tables' or 'followup_day', "
                             f"got {self.last_alive_sources!r}")


def _marrow_options(options: BestResponseOptions) -> ResponseOptions:
    """``options.response`` with the best response's ``infusion_evidence`` (one decision: review 39 diff1 B3)."""
    r = options.response
    return r if r.infusion_evidence == options.infusion_evidence else replace(r, infusion_evidence=options.infusion_evidence)


_BEST_SCHEMA = {
    "subject_id": pl.String, "criteria": pl.String, "best_response": pl.String,
    "best_response_mrd": pl.String, "best_response_day": pl.Float64, "mrd_negative": pl.Boolean,
    "mrd_rule": pl.String, "n_assessments": pl.Int64, "first_response_day": pl.Float64, "responder": pl.Boolean,
    "relapse_day": pl.Float64, "relapse_rule": pl.String, "relapse_reason": pl.String,
    "mrd_relapse_day": pl.Float64, "mrd_relapse_rule": pl.String, "mrd_relapse_reason": pl.String,
    "dor_days": pl.Float64, "dor_event": pl.Boolean, "dor_end_day": pl.Float64, "dor_end_reason": pl.String,
    "end_day": pl.Float64, "end_reason": pl.String,
    "rule": pl.String, "reason": pl.String, "evidence": EVIDENCE,
    "could_be": pl.List(pl.String), "missing_inputs": pl.List(pl.String),
    "refractory": pl.Boolean,  # review 47 F6: only with landmark_day (rule response.refractory)
}


def _end_days(study: Study, events: tuple[str, ...], reinfusion: str = "count", gap_days: float | None = None
              ) -> dict[str, tuple[float, str, str | None]]:
    """Per subject, the first of ``events`` on or after day 0: (day, event, row ref). An event before
    the infusion (bridging therapy recorded as ``new_therapy``) ends nothing: the CAR-T comes after it.
    With ``reinfusion`` "end_window", a further CAR-T dose after the first infusion's day ends it too
    (option ``best_response.reinfusion``, review 41 F7)."""
    out: dict[str, tuple[float, str, str | None]] = {}
    ev = study.events.filter(pl.col("event").is_in(list(events)) & pl.col("day").is_not_null()
                             & (pl.col("day") >= 0)).sort("day")
    for r in ev.iter_rows(named=True):
        if r["subject_id"] not in out:
            ref = row_ref(r)
            out[r["subject_id"]] = (float(r["day"]), r["event"], ref)
    if reinfusion == "end_window":
        for sid, doses in reinfusions(study, gap_days).items():
            day, ref = doses[0]
            if sid not in out or day < out[sid][0]:
                out[sid] = (day, "a further CAR-T infusion (option best_response.reinfusion=end_window)", ref)
    return out


def assessment_end_days(study: Study, events: tuple[str, ...], reinfusion: str = "count",
                        split_dose_gap_days: float | None = None) -> pl.DataFrame:
    """``subject_id``, ``end_day``: the first of ``events`` (``BestResponseOptions.end_events``) on or
    after day 0, after which assessments are not the CAR-T's (best response and the time-to-event
    endpoints count the same assessments; ``reinfusion``: ``BestResponseOptions.reinfusion``;
    ``split_dose_gap_days``: the analysis's ``kinetics.split_dose_gap_days``, None its default)."""
    ends = _end_days(study, events, reinfusion, split_dose_gap_days)
    return pl.DataFrame({"subject_id": list(ends), "end_day": [v[0] for v in ends.values()]},
                        schema={"subject_id": pl.String, "end_day": pl.Float64})


def _last_known_alive(study: Study, sources: str | None = "all_tables") -> dict[str, tuple[float, str]]:
    """Per subject, the day last known alive and how it is known, as the time-to-event endpoints
    censor (EndpointOptions.last_alive_sources, the same function ``last_recorded_rows``): the latest
    of ``last_followup_day``, the days of non-death events and, with "all_tables", the last dated row
    of any table (not death); without a follow-up day, the latest day of any of the subject's rows."""
    from cartlab.response.adtte import last_recorded_rows

    out: dict[str, tuple[float, str]] = {}

    def put(sid: str, day, how: str) -> None:
        if day is not None and (sid not in out or float(day) > out[sid][0]):
            out[sid] = (float(day), how)

    fu = {r["subject_id"]: r["last_followup_day"] for r in study.subjects.iter_rows(named=True)}
    for sid, day in fu.items():
        put(sid, day, "last_followup_day")
    alive = study.events.filter((pl.col("event") != "death") & pl.col("day").is_not_null())
    for sid, day in alive.group_by("subject_id").agg(pl.col("day").max()).iter_rows():
        put(sid, day, "a later event")
    no_fu = [sid for sid, day in fu.items() if day is None]
    with_fu = [sid for sid, day in fu.items() if day is not None]
    if (sources or "all_tables") == "all_tables" and with_fu:
        for r in last_recorded_rows(study, with_fu, alive_only=True).unique("subject_id").iter_rows(named=True):
            put(r["subject_id"], r["day"], f"the last {r['table']} row, day {r['day']:g} ({r['ref']})")
    if no_fu:
        for r in last_recorded_rows(study, no_fu).unique("subject_id").iter_rows(named=True):
            put(r["subject_id"], r["day"], f"the last recorded row ({r['table']}; no last_followup_day)")
    return out


def _days_between(start: float, end: float) -> float:
    """Whole calendar days from ``start``'s day to ``end``'s (a date-time counts on its day, as the
    time-to-event endpoints count; ELN 2022 measures duration "from the date of" to "the date of")."""
    return float(math.floor(end) - math.floor(start))


def _after_relapse(window: list[dict], rr: dict, options: BestResponseOptions):
    """(the assessments best response ranks, a function giving the reason's note for the best or None).

    A relapse (the subject's first relapse episode, ``rr``) after a response with counted assessments
    after it: "count" keeps them and the note says when the best is after the relapse; "exclude"
    leaves them out and the note names them (option ``after_relapse``; ELN 2022 is silent)."""
    day, first = rr.get("relapse_day"), next((r for r in window if r["category"] in options.orr_categories), None)
    if day is None or first is None or math.floor(day) < math.floor(first["day"]):
        return window, None
    later = [r for r in window if r["day"] > day]
    if not later:
        return window, None
    what = f"the relapse on day {day:g} ({rr.get('relapse_rule')})"
    if options.after_relapse == "exclude":
        shown = ", ".join(f"{r['category']} on day {r['day']:g}" for r in later)
        return [r for r in window if r["day"] <= day], lambda best: (
            f"{len(later)} assessment(s) after {what} not counted: {shown} (option best_response.after_relapse=exclude; "
            "ELN 2022 is silent on a remission after relapse)")

    def note(best: dict) -> str:
        if best["day"] <= day:
            return (f"{len(later)} assessment(s) after {what} counted, none better (option "
                    "best_response.after_relapse=count)")
        return (f"{best['category']} on day {best['day']:g} is after {what}: a remission after relapse, counted "
                "(option best_response.after_relapse=count; ELN 2022 is silent on a remission after relapse)")
    return window, note


def _not_derived(category: str | None, orr_categories: tuple[str, ...], could_be: list[str] | None = None) -> str:
    """Why relapse and duration of response are empty for a non-responder (review 40 consistency B2); a
    best response NE is not evaluable, not "no response" (review 40 diff1 F3): named with what it could be."""
    cats = ", ".join(orr_categories)
    if category == "NE":
        could = f"; could be {', '.join(could_be)}" if could_be else ""
        return f"not derived: best response NE (not evaluable{could}), no response established"
    return (f"not derived: no response (best response {category} is not in best_response.orr_categories [{cats}])")


def _loss_of_response(first: dict, window: list[dict], events: list[dict],
                      orr_categories: tuple[str, ...]) -> tuple[float, str, list[str]] | None:
    """Rule ``response.loss_of_response`` (cartlab convention): the end of a response after which the
    criteria define no relapse (PR; MLFS unless in ``relapse_after``): the first later counted
    assessment no longer in ``orr_categories`` (NE does not end it), or a ``relapse`` /
    ``extramedullary_disease`` event on or after the response's calendar day; (day, reason, evidence)."""
    cands = [(r["day"], f"loss of response ({r['category']} on day {r['day']:g} after {first['category']} on day "
              f"{first['day']:g}; rule response.loss_of_response)", r["evidence"] or [])
             for r in window if r["day"] > first["day"] and r["category"] not in orr_categories and r["category"] != "NE"][:1]
    cands += [(float(e["day"]), f"loss of response ({e['event'].replace('_', ' ')} event on day {e['day']:g} after "
               f"{first['category']} on day {first['day']:g}; rule response.loss_of_response)",
               [z for z in [row_ref(e)] if z])
              for e in events if math.floor(e["day"]) >= math.floor(first["day"])][:1]
    return min(cands, key=lambda c: c[0]) if cands else None


def _not_infused_rates(options: BestResponseOptions) -> str:
    """How the response rates count a not-infused subject, naming the option in force (review 38 B5)."""
    if options.rate_population == "all":
        return ("counted as a non-responder in the response rates (option best_response.rate_population=all)")
    return ("left out of the response-rate denominators (option best_response.rate_population=infused, "
            "the default)")


def derive_best_response(study: Study, options: BestResponseOptions | None = None,
                  assessments: pl.DataFrame | None = None, relapses: pl.DataFrame | None = None,
                  split_dose_gap_days: float | None = None) -> pl.DataFrame:
    """Best overall response per subject, with time to response, relapse and duration of response.

    Subjects whose disease has no response criteria get an empty ``best_response`` (not evaluable by
    these criteria); AML/ALL subjects without a post-infusion marrow get ``NE``. Duration of response
    (ELN 2022 Table 9; docs/derivation-conventions.md "Relapse and duration of response"): first
    response day to relapse or death (``dor_event`` true), else censored when last known alive (the
    latest of ``last_followup_day``, a non-death event and a marrow assessment), or at the first of
    ``options.dor_censor_events`` (none by default: an allo-HSCT does not censor it), in whole calendar
    days; not derived (empty, the reason says why) when death precedes the first response.
    ``dor_end_day`` / ``dor_end_reason``: the day the duration ends and why ("relapse", "death", "last
    known alive (last_followup_day)", "allo_hsct (option dor_censor_events)"); ``dor_days`` is
    ``floor(dor_end_day) - floor(first_response_day)``. ``end_day`` / ``end_reason`` are something
    else: the end of the response-assessment window (the first of ``options.end_events``), after which
    assessments are not counted.
    ``split_dose_gap_days``: what makes a later CAR-T dose a re-infusion (the analysis's
    ``kinetics.split_dose_gap_days``; None its default, 7), for ``reinfusion`` and the reasons.
    ``assessments``/``relapses``: :func:`derive_marrow_response`/:func:`derive_relapse` of the study
    with ``options.response``, when already derived.
    """
    options = options or BestResponseOptions()
    a = assessments if assessments is not None else derive_marrow_response(study, _marrow_options(options),
                                                                           split_dose_gap_days)
    ends = _end_days(study, options.end_events, options.reinfusion, split_dose_gap_days)
    further = reinfusions(study, split_dose_gap_days)  # named in the reason (review 41 F7)
    if relapses is None:
        relapses = derive_relapse(study, a, options.response)
    limit = {sid: e[0] for sid, e in ends.items()}
    if options.landmark_day is not None:
        limit = {sid: min(limit.get(sid, math.inf), float(options.landmark_day)) for sid in study.subjects["subject_id"]}
    rel: dict[str, dict] = {}
    for r in relapses.sort("subject_id", "episode").iter_rows(named=True):
        # the first episode that starts at a counted response (not after an end event or the landmark):
        # a remission after new therapy is not the CAR-T's, and neither is the relapse from it
        if r["response_day"] is not None and r["response_day"] <= limit.get(r["subject_id"], math.inf):
            rel.setdefault(r["subject_id"], r)
    alive = _last_known_alive(study, options.last_alive_sources)
    mrd_near = mrd_off_marrow_day(study)  # MRDFCM off the best-response marrow's day, named (review 39 B3)
    evs: dict[str, list[dict]] = {}
    for r in study.events.filter(pl.col("event").is_in(["relapse", "extramedullary_disease"])
                                 & pl.col("day").is_not_null()).sort("day").iter_rows(named=True):
        evs.setdefault(r["subject_id"], []).append(r)
    dor_censor = _end_days(study, options.dor_censor_events) if options.dor_censor_events else {}
    blood = ({k[0]: v for k, v in blood_samples(study, options.response.criteria).partition_by(
        "subject_id", as_dict=True).items()} if options.dor_censor == "last_disease_assessment" else {})  # review 48 F1
    deaths = {r["subject_id"]: float(r["day"]) for r in
              study.events.filter((pl.col("event") == "death") & pl.col("day").is_not_null()).sort("day")
              .unique("subject_id", keep="first").iter_rows(named=True)}
    by = {k[0]: v for k, v in a.partition_by("subject_id", as_dict=True).items()} if a.height else {}
    # None: doses unknown, day 0 taken as the infusion; by_car: infused from a CAR-T measurement (review 39 A1)
    given, doses_why, by_car = infused_subjects(study, options.infusion_evidence)
    from cartlab.io.absent_files import events_absent

    no_events = events_absent(study)  # review 39 B5: the end events are then unknown, and the reason says so
    not_infused: list[str] = []
    rows = []
    no_disease: list[str] = []
    unsupported: dict[str, None] = {}
    for s in study.subjects.iter_rows(named=True):
        sid = s["subject_id"]
        crit = options.response.criteria or criteria_for_disease(s["disease"])
        if crit is None:
            why = (f"no response criteria for disease {s['disease']!r} yet (cartlab has AML: ELN 2022; B-ALL, T-ALL, "
                   "T-LBL, MPAL: ALL CAR-T)" if s["disease"] is not None else
                   "subjects.disease is empty: the response criteria are chosen by the disease (give it in "
                   "subjects.csv, or choose them: --set response.criteria=eln2022_aml or all_car_t)")
            if s["disease"] is None:
                no_disease.append(sid)
            else:
                unsupported[str(s["disease"])] = None
            rows.append({"subject_id": sid, "criteria": None, "rule": "response.no_criteria",
                         "reason": why, "n_assessments": 0, "evidence": []})
            continue
        if given is not None and sid not in given:
            not_infused.append(sid)
            rows.append({"subject_id": sid, "criteria": load_criteria(crit, PACKAGE)["standard"],
                         "best_response": "NE", "best_response_mrd": "NE", "n_assessments": 0, "responder": False,
                         "rule": "response.not_infused",
                         "reason": ("not evaluable: no CAR-T dose for this subject in doses.csv (other subjects have "
                                    "one), so no marrow is a response to a CAR-T; " + _not_infused_rates(options)),
                         "evidence": []})
            continue
        part = by.get(sid)
        end = ends.get(sid)
        recs = [] if part is None else part.sort("day").to_dicts()
        window = recs
        notes = [] if given is not None else [doses_why]
        if sid in by_car:
            notes.append(by_car[sid])
        if no_events and options.end_events:
            notes.append(f"events.csv not given: new therapy / HSCT unknown, so an assessment after one would "
                         f"still be counted (best_response.end_events: {', '.join(options.end_events)})")
        if end is not None:
            window = [r for r in window if r["day"] <= end[0]]
            if len(window) < len(recs):
                notes.append(f"{len(recs) - len(window)} assessment(s) after {end[1]} on day {end[0]:g} not counted")
        if options.landmark_day is not None:
            kept = [r for r in window if r["day"] <= options.landmark_day]
            if len(kept) < len(window):
                notes.append(f"{len(window) - len(kept)} assessment(s) after the landmark day {options.landmark_day:g} not counted")
            window = kept
        if not window:
            rows.append({"subject_id": sid, "criteria": load_criteria(crit, PACKAGE)["standard"],
                         "best_response": "NE", "best_response_mrd": "NE",
                         "n_assessments": 0, "responder": False, "rule": "response.NE",
                         "reason": "not evaluable: no post-infusion marrow assessment" + (f" ({'; '.join(notes)})" if notes else ""),
                         # session 42: the window's end also when nothing in it counted (it was empty)
                         "end_day": end[0] if end else None, "end_reason": end[1] if end else None,
                         "evidence": []})
            continue
        rr = rel.get(sid) or {}
        refr, refr_note = refractory(window, options.landmark_day)  # review 47 F6
        if refr_note:
            notes.append(refr_note)
        window, relapse_note = _after_relapse(window, rr, options)  # option after_relapse (review 40 B3)
        best = min(window, key=lambda r: (CATEGORY_RANK[r["category"]],
                                          options.rank_mrd and r.get("mrd_negative") is not True, r["day"]))
        # "missing is not negative": a counted assessment that a missing input (or a censored bound)
        # leaves open to a better category than the best makes the best a range (at least best)
        could: dict[str, None] = {}
        missing: dict[str, None] = {}
        open_days: dict[float, None] = {}
        for r in window:
            better = [c for c in (r.get("could_be") or []) if CATEGORY_RANK.get(c, 99) < CATEGORY_RANK[best["category"]]]
            if better:
                could.update(dict.fromkeys(better))
                missing.update(dict.fromkeys(r.get("missing_inputs") or []))
                open_days[r["day"]] = None
        could_be = sorted(could, key=lambda c: CATEGORY_RANK[c])
        resp = [r for r in window if r["category"] in options.orr_categories]
        first = resp[0]["day"] if resp else None
        relapse_day = rr.get("relapse_day")
        # a relapse belongs to a response; one on the response's calendar day counts (as in ADTTE)
        if relapse_day is not None and (first is None or math.floor(relapse_day) < math.floor(first)):
            relapse_day = None
        loss = None
        if resp and options.dor_pr_end == "loss_of_response" and resp[0]["category"] not in \
                applicable(options.response, crit).resolved(load_criteria(crit, PACKAGE))["relapse_after"]:
            loss = _loss_of_response(resp[0], window, evs.get(sid, []), options.orr_categories)
        death = deaths.get(sid)
        dor = dor_event = dor_end = dor_why = None
        dor_refs: list[str] = []
        if first is not None and death is not None and math.floor(death) < math.floor(first):
            notes.append(f"duration of response not derived: death on day {death:g} precedes the first response "
                         f"on day {first:g} (check the dates)")
        elif first is not None:
            stop = min((d for d in (relapse_day, None if loss is None else loss[0], death) if d is not None), default=None)
            cens = dor_censor.get(sid)
            assessed = [r for r in recs if r["day"] is not None and r["category"] not in (None, "", "NE")]
            # a marrow that could be a relapse for want of an input, before any recorded end (review 41 diff1 F2)
            undet = options.undetermined_relapse or "censor_last_settled"
            p_day = rr.get("relapse_possible_day") if undet != "ignore" else None
            if p_day is not None and (math.floor(p_day) < math.floor(first) or (stop is not None and p_day >= stop)):
                p_day = None
            p_why = "" if p_day is None else (rr.get("relapse_possible_reason")
                                              or f"the marrow on day {p_day:g} could be a relapse")
            if p_day is not None and undet == "event" and (cens is None or cens[0] >= p_day):
                stop = p_day
            # no event recorded before the duration would be censored (an HSCT after the marrow censors no earlier)
            censored = stop is None or (cens is not None and first <= cens[0] < stop)
            if (p_day is not None and undet == "censor_last_settled" and censored
                    and (cens is None or cens[0] >= p_day)):
                settled = [r for r in assessed if first <= r["day"] < p_day and "relapse" not in (r.get("could_be") or [])]
                la = max(settled, key=lambda r: r["day"]) if settled else None
                dor_end, dor_event = (la["day"] if la else first), False
                dor_why = ("last response assessment that settles no relapse ("
                           + (f"{la['category']} on day {la['day']:g}" if la else "the response day") + f"); {p_why}: "
                           "relapse-free only known up to then (option undetermined_relapse='censor_last_settled')")
            elif cens is not None and cens[0] >= first and (stop is None or cens[0] < stop):
                dor_end, dor_event = cens[0], False  # option dor_censor_events
                dor_why = f"{cens[1]} (option dor_censor_events)"
                before = [r for r in assessed if first <= r["day"] <= cens[0]]
                if options.dor_censor != "last_known_alive" and before:  # the last one before the event
                    la = max(before, key=lambda r: r["day"])
                    dor_end = la["day"]
                    dor_why += (f": last response assessment before it ({la['category']} on day {la['day']:g}; "
                                "option dor_censor)")
                    pb = dor_last_blood(blood.get(sid), rr.get("response_day"), la["day"], cens[0],
                                        known[0] if (known := alive.get(sid)) else None)
                    if pb is not None:  # a later blood sample without blasts (review 48 F1)
                        dor_end, dor_refs = pb["day"], [pb["ref"]] if pb["ref"] else []
                        dor_why += f"; later, the last disease assessment before it: {pb['text']}"
            elif stop is not None:
                dor_end, dor_event = stop, True
                dor_why = ("relapse" if relapse_day is not None and relapse_day <= stop
                           else loss[1] if loss is not None and loss[0] <= stop
                           else f"possible relapse: {p_why} (option undetermined_relapse='event')"
                           if p_day is not None and p_day <= stop else "death")
                if p_day is not None and p_day < stop:  # the open marrow before the recorded end is named
                    dor_why += f"; earlier, {p_why} (option undetermined_relapse='{undet}')"
            else:  # censored at the last response assessment (default) or when last known alive
                last = max((r["day"] for r in recs if r["day"] is not None), default=None)
                known = alive.get(sid)
                if options.dor_censor != "last_known_alive" and assessed:
                    la = max(assessed, key=lambda r: r["day"])
                    dor_end = la["day"]
                    dor_why = f"last response assessment ({la['category']} on day {la['day']:g}; option dor_censor)"
                    pb = dor_last_blood(blood.get(sid), rr.get("response_day"), la["day"], None,
                                        known[0] if known else None)
                    if pb is not None:  # review 48 F1: a later blood sample without blasts
                        dor_end, dor_refs = pb["day"], [pb["ref"]] if pb["ref"] else []
                        dor_why = (f"last disease assessment: {pb['text']}, after the last response assessment "
                                   f"({la['category']} on day {la['day']:g}); option dor_censor")
                    dor_why += f"; last known alive on day {known[0]:g} ({known[1]})" if known else ""
                elif known is not None and (last is None or known[0] >= last):
                    dor_end, dor_why = known[0], f"last known alive ({known[1]})"
                else:
                    dor_end, dor_why = last, "last known alive (the last marrow assessment)"
                dor_event = False
            dor = _days_between(first, dor_end)
        reason = (f"best of {len(window)} assessment(s): {best['category']} on day {best['day']:g} "
                  f"({best['rule']})")
        by_marker = (load_criteria(crit, PACKAGE).get("mrd_molecular_first") or {}).get("id")
        if best["mrd_negative"] is not None and by_marker and best.get("mrd_rule") == by_marker:  # review 47 F2
            reason += (f"; MRD {'negative' if best['mrd_negative'] else 'positive'} by a molecular marker of an ELN 2021 "
                       f"D2 subgroup ({by_marker}; option mrd_molecular=molecular_first; marker in marrow_response.csv)")
        elif best["mrd_negative"] is not None:
            mrd = "below the assay limit" if best["mrd_fcm"] is None else f"{best['mrd_fcm']:.3g}"
            reason += (f"; MRDFCM {mrd} {'below' if best['mrd_negative'] else 'not below'} {best['mrd_threshold']:g}"
                       + (f" ({best['mrd_rule']}; specimen and LLOQ in marrow_response.csv)" if best.get("mrd_rule") else ""))
            if best["mrd_negative"] and best["category"] not in (q := mrd_qualifies(best["criteria"])):
                reason += "; " + mrd_below_note(best["category"], q, best["criteria"])  # review 45 F5
        elif (off := mrd_off_day_note(mrd_near.get(sid, []), best["day"])) is not None:
            reason += "; " + off  # an MRDFCM a few days off the marrow: named, not used (review 39 B3)
        reason += _mrd_day_note(best)  # review 41 F10: why the MRD status is empty; molecular markers (F4)
        before = [(d, ref) for d, ref in further.get(sid, []) if d < best["day"]]
        if before:  # review 41 F7
            reason += ("; after a further CAR-T infusion on day " + ", ".join(
                f"{d:g}" + (f" ({ref})" if ref else "") for d, ref in before)
                + f" (counted: option best_response.reinfusion={options.reinfusion})")
            best = {**best, "evidence": list(dict.fromkeys(best["evidence"] + [ref for _, ref in before if ref]))}
        if relapse_note is not None:
            reason += "; " + relapse_note(best)
        if first is None and best["category"] not in options.orr_categories and \
                CATEGORY_RANK[best["category"]] < CATEGORY_RANK["relapse"]:  # review 40 consistency B2
            reason += (f"; {best['category']} not in best_response.orr_categories [{', '.join(options.orr_categories)}]: "
                       "not counted as a response")
        not_resp = None if first is not None else _not_derived(best["category"], options.orr_categories, could_be)
        if options.rank_mrd:
            reason += "; MRD-negative ranked above the same category without it (option rank_mrd)"
        if could_be:
            reason += (f"; could be {', '.join(could_be)} (assessment day(s) "
                       f"{', '.join(f'{d:g}' for d in open_days)}): missing {', '.join(missing) or 'an input'}")
        if notes:
            reason += "; " + "; ".join(notes)
        rows.append({
            "subject_id": sid, "criteria": best["criteria"], "best_response": best["category"],
            "best_response_mrd": best["category_mrd"], "best_response_day": best["day"],
            "mrd_negative": best["mrd_negative"], "mrd_rule": best.get("mrd_rule"), "n_assessments": len(window), "first_response_day": first,
            "responder": first is not None, "relapse_day": relapse_day, "relapse_rule": rr.get("relapse_rule") if relapse_day is not None else None,
            "relapse_reason": (f"after {rr['response_category']} on day {rr['response_day']:g}: {rr['relapse_reason']}"
                               if rr and first is not None else not_resp),
            "mrd_relapse_day": rr.get("mrd_relapse_day") if first is not None else None,
            "mrd_relapse_rule": rr.get("mrd_relapse_rule") if first is not None else None,
            "mrd_relapse_reason": rr.get("mrd_relapse_reason") if first is not None else None,
            "dor_days": dor, "dor_event": dor_event,
            "dor_end_day": dor_end, "dor_end_reason": dor_why if first is not None else not_resp, "end_day": end[0] if end else None, "end_reason": end[1] if end else None,
            "rule": best["rule"], "reason": reason,
            "evidence": list(dict.fromkeys(best["evidence"] + ((rr.get("evidence") or []) if rr and first is not None else [])
                                           + ([] if loss is None else loss[2]) + dor_refs)),
            "could_be": could_be, "missing_inputs": list(missing) if could_be else [], "refractory": refr,
        })
    if not_infused:
        warnings.warn(SubjectsWarning(
            f"{len(not_infused)} subject(s) have no CAR-T dose in doses.csv: best response not evaluable (rule "
            "response.not_infused), " + _not_infused_rates(options) + ": {subjects}", not_infused,
            "best_response.csv (column reason)"), stacklevel=2)
    warn_kinetics_infused({k: v for k, v in by_car.items() if k in study.subject_ids},
                          "best_response.csv (column reason)")
    if no_disease:
        warnings.warn(SubjectsWarning(
            f"{len(no_disease)} subject(s) have no disease in subjects.csv, so no response criteria were applied: "
            "{subjects}", no_disease, "best_response.csv (column reason)"), stacklevel=2)
    for disease in unsupported:  # one message per disease (the same in every batch of a batched analysis)
        warnings.warn(CartlabWarning(
            f"disease {disease!r}: cartlab has no response criteria for it yet (it has AML: ELN 2022; B-ALL, T-ALL, "
            f"T-LBL, MPAL: ALL CAR-T), so best_response is empty for these subjects (best_response.csv says "
            f"so per subject)"), stacklevel=2)
    return pl.DataFrame(rows, schema=_BEST_SCHEMA, orient="row") if rows else pl.DataFrame(schema=_BEST_SCHEMA)


def _mrd_day_note(best: dict) -> str:
    """The best marrow's MRD notes its own reason carries, when they matter to the best response: why
    the MRD status is empty though MRDFCM was measured that day (a LLOQ above the threshold, results
    that disagree, a blood-only result: review 41 F10), and molecular markers of that day (F4)."""
    parts = (best.get("reason") or "").split(" | ")
    out = ""
    if best.get("mrd_negative") is None:
        why = [p for p in parts if p.startswith("MRDFCM") and "MRD status" in p]
        if why:
            out += "; MRD status empty: " + "; ".join(why)
    mol = [p for p in parts if p.startswith("molecular marker")]
    if mol:
        out += "; " + "; ".join(mol)
    return out


def derive_response_summary(study: Study) -> pl.DataFrame:
    """The ``subject_summary.csv`` columns ``best_response``, ``best_response_day``, ``mrd_negative``."""
    return derive_best_response(study).select("subject_id", "best_response", "best_response_day", "mrd_negative")


ADRS_COLUMNS = ("STUDYID", "USUBJID", "PARAMCD", "PARAM", "AVALC", "ADY", "CRIT", "RSSCAT", "MRDNEG",
                "RULE", "REASON", "EVIDENCE")


def _with_mrd_rule(frame: pl.DataFrame, category: str = "category") -> pl.Expr:
    """ADRS ``RULE``: the category's rule, and the MRD rule (``eln2022.MRD_negative``) when it decided
    the MRD qualifier of RSSCAT, so RULESTAT is the worse of the two: only for a category the
    standard's MRD qualifier applies to (``mrd.qualifies``: ELN 2022 "CR, CRh, or CRi without MRD";
    review 45 F5: an MLFS below the threshold is not "MRD negative", MRDNEG stays the threshold
    reading). ADaM ADRS has no standard variable for the MRD value, threshold or specimen (ADaM IG
    v1.3 BDS: one PARAMCD per parameter); REASON carries them."""
    if "mrd_rule" not in frame.columns:
        return pl.col("rule")
    return (pl.when(pl.col("mrd_rule").is_not_null() & pl.col("rule").is_not_null()
                    & pl.col(category).is_in(list(mrd_qualifies())))
            .then(pl.concat_str(pl.col("rule"), pl.lit("; "), pl.col("mrd_rule"))).otherwise(pl.col("rule")))


def derive_adrs(study: Study, options: BestResponseOptions | None = None,
                assessments: pl.DataFrame | None = None, best: pl.DataFrame | None = None) -> pl.DataFrame:
    """ADaM-style ADRS: one ``OVRLRESP`` row per marrow assessment, one ``BOR`` row per subject and one
    ``MRDREL`` row per subject with an MRD relapse (best_response.csv ``mrd_relapse_day``, rule
    ``response.mrd_relapse``; review 39 B2) and one ``RELAPSE`` row per subject with a hematologic
    relapse (best_response.csv ``relapse_day`` / ``relapse_rule`` / ``relapse_reason``: a marrow, blood
    samples or a relapse / EMD event; review 40 B6).

    ``assessments`` / ``best``: :func:`marrow_response` / :func:`best_response` when already computed.
    """
    options = options or BestResponseOptions()
    a = assessments if assessments is not None else derive_marrow_response(study, _marrow_options(options))
    b = best if best is not None else derive_best_response(study, options, a)
    per = a.select(
        pl.lit(study.study_id).alias("STUDYID"), pl.col("subject_id").alias("USUBJID"),
        pl.lit("OVRLRESP").alias("PARAMCD"), pl.lit("Overall response at the marrow assessment").alias("PARAM"),
        pl.col("category").alias("AVALC"), pl.col("day").alias("ADY"), pl.col("criteria").alias("CRIT"),
        pl.col("category_mrd").alias("RSSCAT"), pl.col("mrd_negative").alias("MRDNEG"),
        _with_mrd_rule(a).alias("RULE"), pl.col("reason").alias("REASON"), pl.col("evidence").alias("EVIDENCE"),
    )
    bor = b.filter(pl.col("criteria").is_not_null()).select(
        pl.lit(study.study_id).alias("STUDYID"), pl.col("subject_id").alias("USUBJID"),
        pl.lit("BOR").alias("PARAMCD"), pl.lit("Best overall response").alias("PARAM"),
        pl.col("best_response").alias("AVALC"), pl.col("best_response_day").alias("ADY"),
        pl.col("criteria").alias("CRIT"), pl.col("best_response_mrd").alias("RSSCAT"),
        pl.col("mrd_negative").alias("MRDNEG"), _with_mrd_rule(b, "best_response").alias("RULE"), pl.col("reason").alias("REASON"),
        pl.col("evidence").alias("EVIDENCE"),
    )
    mrdrel = b.filter(pl.col("mrd_relapse_day").is_not_null()).select(
        pl.lit(study.study_id).alias("STUDYID"), pl.col("subject_id").alias("USUBJID"),
        pl.lit("MRDREL").alias("PARAMCD"), pl.lit("MRD relapse (conversion to MRD positivity)").alias("PARAM"),
        pl.lit("Y").alias("AVALC"), pl.col("mrd_relapse_day").alias("ADY"), pl.col("criteria").alias("CRIT"),
        pl.lit(None, dtype=pl.String).alias("RSSCAT"), pl.lit(False).alias("MRDNEG"),
        pl.col("mrd_relapse_rule").alias("RULE"), pl.col("mrd_relapse_reason").alias("REASON"),
        pl.col("evidence").alias("EVIDENCE"),
    )
    # the relapse of record (marrow, blood or a relapse / EMD event; review 40 B6), as MRDREL
    relapse = b.filter(pl.col("relapse_day").is_not_null()).select(
        pl.lit(study.study_id).alias("STUDYID"), pl.col("subject_id").alias("USUBJID"),
        pl.lit("RELAPSE").alias("PARAMCD"), pl.lit("Hematologic relapse after response").alias("PARAM"),
        pl.lit("Y").alias("AVALC"), pl.col("relapse_day").alias("ADY"), pl.col("criteria").alias("CRIT"),
        pl.lit(None, dtype=pl.String).alias("RSSCAT"), pl.lit(None, dtype=pl.Boolean).alias("MRDNEG"),
        pl.col("relapse_rule").alias("RULE"), pl.col("relapse_reason").alias("REASON"),
        pl.col("evidence").alias("EVIDENCE"),
    )
    return pl.concat([per, bor, mrdrel, relapse], how="vertical_relaxed").sort("USUBJID", "PARAMCD", "ADY", nulls_last=True).select(ADRS_COLUMNS)


def orr(best: pl.DataFrame, categories: tuple[str, ...] | None = None, by: str | None = None,
        population: Literal["infused", "all"] = "infused") -> pl.DataFrame:
    """Overall response rate of a best-response frame with its exact (Clopper-Pearson) 95% CI.

    The denominator is every subject with response criteria (AML/ALL; intention to treat, NE counts
    as non-response); ``categories`` default to :class:`BestResponseOptions`' ``orr_categories``.
    ``n_no_criteria``: subjects left out of every denominator because their disease has no response
    criteria (the overall row says so in ``reason``; null on per-criteria rows).
    ``population`` ("infused", the treated set of CAR-T trials): subjects without a CAR-T dose (rule
    ``response.not_infused``) are in no denominator (``n_not_infused``, named in ``reason``); "all"
    keeps them in as non-responders. ``n_not_evaluable``: subjects of the denominator whose best
    response is NE (named with their rule in ``reason``); ``n_evaluable``, ``rate_evaluable``,
    ``ci_low_evaluable``, ``ci_high_evaluable``: the rate over the others (rule
    ``response.not_evaluable_rate``; the default ``rate`` keeps NE as non-response, cartlab's ITT
    convention).
    ``n_could_be_responders`` / ``rate_max``: the non-responders whose best response could reach a
    category for want of an input and the rate had they responded (the rate is then a lower bound).
    """
    from cartlab.response.endpoints import response_rate

    check_choice("population", population, ("infused", "all"))
    cats = categories or BestResponseOptions().orr_categories
    ni = (pl.col("rule") == "response.not_infused").fill_null(False) if "rule" in best.columns else pl.lit(False)
    skipped = best.filter(ni & pl.col("criteria").is_not_null()) if population == "infused" else best.clear()
    base = best.filter(pl.col("criteria").is_not_null() & ~(ni & pl.lit(population == "infused")))
    out = _with_could_be(response_rate(base, set(cats), by=by), base, cats, by)
    out = _with_evaluable(out, base, cats, by, skipped)
    none = best.filter(pl.col("criteria").is_null())
    if by is not None:
        return out.with_columns(pl.lit(None, dtype=pl.Int64).alias("n_no_criteria"))
    note = ""
    if none.height:
        ids = none["subject_id"].to_list()
        note = (f"; {none.height} subject(s) without response criteria for their disease are in no denominator: "
                f"{', '.join(ids[:20])}{' ...' if len(ids) > 20 else ''} (best_response.csv says why)")
    return out.with_columns(pl.lit(none.height, dtype=pl.Int64).alias("n_no_criteria"),
                            (pl.col("reason") + pl.lit(note)).alias("reason"))


def _with_evaluable(out: pl.DataFrame, base: pl.DataFrame, cats: tuple[str, ...], by: str | None,
                    skipped: pl.DataFrame) -> pl.DataFrame:
    """``n_not_evaluable`` (best response NE, named with their rule in ``reason``), the evaluable-only
    rate (``n_evaluable``, ``rate_evaluable``, ``ci_low_evaluable``, ``ci_high_evaluable``; Clopper-
    Pearson) and ``n_not_infused`` (left out, option population; named). Review 38 A2/B6."""
    from cartlab.response.endpoints import clopper_pearson

    level = float(out["level"][0]) if out.height and "level" in out.columns else 0.95
    extra = []
    for row in out.iter_rows(named=True):
        key = row.get(by) if by else None
        sub = base.filter(pl.col(by) == key) if by and key is not None else (
            base.filter(pl.col(by).is_null()) if by else base)
        sk = skipped.filter(pl.col(by) == key) if by and key is not None and by in skipped.columns else (
            skipped if not by else skipped.clear())
        ne = sub.filter(pl.col("best_response").fill_null("") == "NE")
        n_ev = sub.height - ne.height
        k = sub.filter(pl.col("best_response").is_in(list(cats))).height
        lo, hi = clopper_pearson(k, n_ev, level) if n_ev else (None, None)
        note = ""
        if ne.height:
            who = [f"{r['subject_id']} ({r.get('rule') or 'NE'})" for r in ne.head(20).iter_rows(named=True)]
            note += (f"; {ne.height} not evaluable (NE, counted as non-responders): {', '.join(who)}"
                     f"{' ...' if ne.height > 20 else ''}; over the {n_ev} evaluable: "
                     + (f"{k}/{n_ev} = {k / n_ev:.4g} (CI {lo:.4g}-{hi:.4g})" if n_ev else "not estimable"))
        if sk.height:
            ids = sk["subject_id"].to_list()
            note += (f"; {sk.height} subject(s) without a CAR-T dose in no denominator (option best_response.rate_population=infused; "
                     f"rule response.not_infused): {', '.join(ids[:20])}{' ...' if len(ids) > 20 else ''}")
        extra.append({"n_not_evaluable": ne.height, "n_evaluable": n_ev, "rate_evaluable": k / n_ev if n_ev else None,
                      "ci_low_evaluable": lo, "ci_high_evaluable": hi, "n_not_infused": sk.height, "_note": note})
    schema = {"n_not_evaluable": pl.Int64, "n_evaluable": pl.Int64, "rate_evaluable": pl.Float64,
              "ci_low_evaluable": pl.Float64, "ci_high_evaluable": pl.Float64, "n_not_infused": pl.Int64,
              "_note": pl.String}
    add = pl.DataFrame(extra, schema=schema, orient="row") if extra else pl.DataFrame(schema=schema)
    return pl.concat([out, add], how="horizontal").with_columns(
        (pl.col("reason") + pl.col("_note")).alias("reason")).drop("_note")


def _with_could_be(out: pl.DataFrame, best: pl.DataFrame, cats: tuple[str, ...], by: str | None) -> pl.DataFrame:
    """``n_could_be_responders`` (the non-responders, e.g. NE, whose ``could_be`` reaches a category of
    the rate for want of an input: missing is not negative) and ``rate_max`` (the rate had they all
    responded: the rate itself is then a lower bound; ELN 2022 ITT keeps them non-responders), named
    in ``reason`` with their missing inputs. Null when the frame has no ``could_be`` column."""
    if "could_be" not in best.columns:
        return out.with_columns(pl.lit(None, dtype=pl.Int64).alias("n_could_be_responders"),
                                pl.lit(None, dtype=pl.Float64).alias("rate_max"))
    open_ = best.filter(~pl.col("best_response").fill_null("").is_in(list(cats))
                        & pl.col("could_be").list.eval(pl.element().is_in(list(cats))).list.any().fill_null(False))
    miss = (pl.col("missing_inputs").list.join(", ") if "missing_inputs" in best.columns else pl.lit(""))
    open_ = open_.with_columns(pl.format("{} ({}; could be {}{})", "subject_id",
                                         pl.col("best_response").fill_null("not evaluable"),
                                         pl.col("could_be").list.join("/"),
                                         pl.when(miss != "").then(pl.concat_str(pl.lit(": "), miss))
                                         .otherwise(pl.lit(""))).alias("_who"))
    keys = [by] if by else []
    if keys:
        agg = open_.group_by(keys).agg(pl.len().cast(pl.Int64).alias("n_could_be_responders"),
                                       pl.col("_who").str.join("; ").alias("_who"))
        out = out.join(agg, on=keys, how="left", nulls_equal=True, maintain_order="left")
    else:
        out = out.with_columns(pl.lit(open_.height, dtype=pl.Int64).alias("n_could_be_responders"),
                               pl.lit("; ".join(open_["_who"].to_list())).alias("_who"))
    m = pl.col("n_could_be_responders").fill_null(0)
    rate_max = pl.when(pl.col("n") > 0).then((pl.col("n_responders") + m) / pl.col("n"))
    return out.with_columns(m.alias("n_could_be_responders"), rate_max.alias("rate_max")).with_columns(
        pl.when(pl.col("n_could_be_responders") > 0).then(pl.format(
            "{}; a lower bound: up to {} of {} (rate {}) had the {} subject(s) whose best response could reach "
            "{{{}}} for want of an input responded: {}", pl.col("reason"),
            pl.col("n_responders") + pl.col("n_could_be_responders"), pl.col("n"),
            pl.col("rate_max").round_sig_figs(4), pl.col("n_could_be_responders"), pl.lit(", ".join(cats)),
            pl.col("_who"))).otherwise(pl.col("reason")).alias("reason")).drop("_who")


def rate_definitions(orr_categories: tuple[str, ...], remission_categories: tuple[str, ...]
                     ) -> list[tuple[str, tuple[str, ...]]]:
    """The response rates cartlab reports, (endpoint name, categories): the ORR over the analysis's
    ``best_response.orr_categories`` and the remission rate over ``endpoints.remission_categories``
    (named by them, "CR/CRh/CRi" by default). One definition for the table and every view."""
    return [("ORR", tuple(orr_categories)), ("/".join(remission_categories), tuple(remission_categories))]


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
__getattr__ = renamed(__name__, "best_response", "response_summary")
