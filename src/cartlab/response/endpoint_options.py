"""The ADTTE endpoint table and options (ELN 2022 Table 9): :func:`endpoint_definitions` reads
``criteria/endpoints.yaml``; :class:`EndpointOptions` holds every documented choice of
:func:`cartlab.response.adtte.derive_adtte` with ELN 2022's reading as the default."""

from __future__ import annotations

import math
from functools import cache
from importlib import resources
from typing import Any

from cartlab._yaml import load_yaml
from cartlab.criteria.options import CriteriaOptions

__all__ = ["EFS_CENSOR", "LANDMARK_FROM_BEST_RESPONSE", "PARAMCDS", "EndpointOptions", "analysis_endpoint_options", "check_choice",
           "endpoint_definitions", "followed_options", "landmark_inherited"]

#: The values of ``EndpointOptions.efs_censor`` and ``BestResponseOptions.dor_censor`` (review 48 F1).
EFS_CENSOR: tuple[str, ...] = ("last_disease_assessment", "last_response_assessment", "last_known_alive")

#: The ADTTE parameters, in output order.
PARAMCDS: tuple[str, ...] = ("OS", "EFS", "RFS", "LFS", "CIR")


def check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    """ValueError "<name> must be 'a' or 'b', got <value>" (three or more: "'a', 'b' or 'c'") unless
    ``value`` is one of ``allowed``: the check of an option with a fixed set of values."""
    if value not in allowed:
        shown = [repr(a) for a in allowed]
        choices = f"{', '.join(shown[:-1])} or {shown[-1]}" if len(shown) > 1 else "".join(shown)
        raise ValueError(f"{name} must be {choices}, got {value!r}")


@cache
def endpoint_definitions() -> dict[str, Any]:
    """The endpoint table ``cartlab/response/criteria/endpoints.yaml`` (parsed YAML)."""
    path = resources.files("cartlab.response").joinpath("criteria", "endpoints.yaml")
    data = load_yaml(path.read_text(encoding="utf-8"))
    for key in ("version", "citation", "params", "rules"):
        if key not in data:
            raise ValueError(f"endpoints.yaml lacks {key!r}")
    return data


class EndpointOptions(CriteriaOptions):
    """Options of :func:`derive_adtte`; the defaults are ELN 2022 Table 9's reading.

    * ``censor_at_allo_hsct`` (False): censor at the first ``allo_hsct`` event (ELN 2022 does not).
    * ``censor_at_new_therapy`` (False): censor at the first ``new_therapy`` event (ELN 2022 does not).
    * ``censor_params`` (EFS, RFS, LFS, CIR): the parameters those two options censor; OS is left
      out by default (ELN 2022 OS runs "to the date of death from any cause").
    * ``efs_censor`` ("last_disease_assessment"): where an EFS subject in remission by the landmark
      without relapse or death is censored (ELN 2022 Table 9: "censored on the date they were last
      assessed for response"). "last_disease_assessment" = the latest of the last response assessment
      (marrow) and the last PBBLAST sample after the remission that the relapse rule reads as no
      circulating blasts (0, ``<=0``; not a ``<x`` bound, not a row without a value), on or before the
      day last known alive and a censoring at HSCT / new therapy: ELN 2022 Table 7 relapse includes
      "reappearance of blasts in the blood in at least 2 peripheral blood samples at least one week
      apart", so a blood sample without blasts assesses continued response (rule
      ``censor.last_blood_assessment``, cartlab's reading of "assessed"; only for criteria whose
      relapse rule reads blood - AML and ALL both do; review 48 F1: with the marrow alone, follow-up
      after it added events, never event-free time). "last_response_assessment" = the last marrow
      only (the default of sessions 34-47); "last_known_alive" censors on the day last known alive, as
      OS and RFS do (the behaviour before session 34; a cartlab convention for EFS).
    * ``efs_ne_death_after_landmark`` ("event"): a subject not evaluable for response by the
      landmark who dies after it. ELN 2022 censors at day 1 only "patients alive who are
      non-evaluable" and counts "death from any cause": "event" = an EFS event on the death day;
      "censor" = censored at day 0 as not evaluable (reading "alive" as alive at the landmark).
    * ``efs_landmark_day`` (None): the EFS treatment-failure landmark - remission (CR/CRh/CRi) must
      be reached on or before this day; None = by the end of follow-up. ELN 2022 asks for a
      pre-defined landmark ("e.g., after two cycles of intensive chemotherapy or 180 d for
      non-intensive therapy"); for CAR-T a day-28 (or day-30) marrow is usual, so set it per protocol.
    * ``remission_categories`` (CR, CRh, CRi): responses that count as remission (ELN 2022 EFS, RFS,
      CIR). ``not_evaluable_categories`` (NE): responses that are no response assessment (an empty
      response is never an assessment).
    * ``relapse_events`` (relapse, extramedullary_disease): events that are hematologic relapse when
      on or after the remission day (ELN 2022 Table 7 counts development of extramedullary disease).
    * ``missing_followup`` ("last_observation"): a subject without ``last_followup_day`` is censored
      at the latest day of any of its rows (spec: "Follow-up for time-to-event endpoints"), with a
      warning naming the subjects; "error" raises ``ValueError`` naming the subjects instead.
    * ``params`` (None): the parameters to derive; None = OS alone without a ``responses`` frame, all
      of :data:`PARAMCDS` with one.
    * ``calendar_days`` (True): times are whole calendar days - a date-time counts on its day (spec
      "Days are calendar days relative to day 0"; ELN 2022 Table 9 measures "to the date of" the
      event), so a death at 08:00 on day 10 and a follow-up ending on day 10 tie on day 10, as the
      same facts given as day numbers do. False keeps the fractional days of date-times.
    * ``last_alive_sources`` ("all_tables"): what makes the day last known alive (OS, RFS, LFS, CIR
      censoring; duration of response). "all_tables" = the latest of ``last_followup_day`` and every
      dated row of the subject - observations, doses, interventions, events other than death, response
      assessments (spec: ``last_followup_day`` is the "last day the subject was known alive and
      followed", and ELN 2022 Table 9 censors "on the date they were last known to be alive": a lab
      drawn or a dose given later shows the subject alive later); a warning names the subjects whose
      rows lie after their ``last_followup_day``. "followup_day" = ``last_followup_day`` and the
      non-death events and response assessments only (the reading before session 37).
    * ``efs_evaluable_by`` ("any_time"): which assessments make an EFS subject "evaluable for
      response" (treatment failure at day 0 rather than censored there). ELN 2022 Table 9 qualifies
      the remission "by the defined landmark" but does not say by when evaluability is judged:
      "any_time" = any evaluable assessment (the behaviour before session 37, kept as default);
      "landmark" = an evaluable assessment on or before ``efs_landmark_day`` (no effect without one).
    * ``population`` ("infused"): who the parameters are counted for. "infused" = a subject without any
      CAR-T dose in doses.csv (when other subjects have one) has no OS/EFS/RFS/LFS/CIR record counted
      (ANLFL/AVAL/CNSR empty, rule ``not_infused``, a warning names it): day 0 is the first CAR-T
      infusion (spec "Time"), the same reading as ``best_response.rate_population``; doses unknown
      (no doses.csv, or no CAR-T row in the study) = everybody infused. "all" = every subject, from
      day 0 (the behaviour before session 39; day 0 is then undefined for the non-infused).
    * ``infusion_evidence`` ("dose_or_kinetics"): a subject without a CAR-T dose row but with a
      quantifiable CARCOPY/CARCELL after day 0 is infused, the infusion not recorded (review 39 A1,
      :mod:`cartlab.response.infusion_evidence`); "dose" = a dose row only. In an analysis it follows
      ``best_response.infusion_evidence`` (one decision).
    * ``efs_short_followup`` ("not_evaluable"): an EFS subject evaluable for response without
      CR/CRh/CRi, alive and last known alive before ``efs_landmark_day``: whether it missed remission
      "by the defined landmark" (ELN 2022 Table 9) is unknown, so it is censored at day 0 as not
      evaluable by the landmark (rule ``efs.followup_before_landmark``; missing is not negative);
      "event" = treatment failure at day 0 (the behaviour before session 39). No effect without a landmark.
    * The EFS landmark may come from ``best_response.landmark_day``: an analysis whose
      ``endpoints.efs_landmark_day`` is unset takes it (one protocol landmark for the response rates and
      EFS treatment failure, review 41 F3; :func:`analysis_endpoint_options`), the EFS reasons say so
      (``derive_adtte``'s ``landmark_source``, not an option: review 41 diff1 F8), and evaluability is
      then judged by that landmark too (``efs_evaluable_by="landmark"`` unless set: best response calls a
      subject assessed only after it not evaluable, review 41 diff1 F1); an explicit
      ``endpoints.efs_landmark_day`` keeps ``efs_evaluable_by`` as set (default "any_time").
    * ``efs_open_remission`` ("not_evaluable"): an EFS subject evaluable for response without
      CR/CRh/CRi by the landmark, alive, one of whose assessments by the landmark could be CR/CRh/CRi
      for want of an input (its ``could_be``; spec "Response": a missing input never yields a
      definitive negative): whether remission was reached by the landmark is unknown, so it is
      censored at day 0 as not evaluable by it (rule ``efs.remission_undetermined``; ELN 2022 counts
      as treatment failure only patients "not achieving either CR, CRh or CRi by the defined
      landmark"); "failure" = treatment failure at day 0 (the behaviour before session 41), the reason
      naming the open assessment. RFS/LFS/CIR reasons of a subject never in remission name it too.
    * ``undetermined_relapse`` ("censor_last_settled"): a marrow after the remission that could be a
      relapse for want of an input (the relapse table's ``relapse_possible_day``, e.g. BMBLAST ``<10``)
      with no relapse or death recorded after it: relapse-free status is known only up to the last
      response assessment before it that settles no relapse, so EFS (in remission), RFS, LFS and CIR
      are censored there (rule ``censor.relapse_undetermined``; a relapse or death recorded later is
      an event on its documented day, the reason naming the marrow - except a CIR death without
      relapse, which may have followed an unseen relapse: CIR is censored there too; the usual censoring of progression not
      known at the last adequate assessment); "ignore" = the marrow is not read (the behaviour before
      session 41: censored when last known alive); "event" = a relapse on that marrow's day (a
      sensitivity analysis).
    """

    censor_at_allo_hsct: bool = False
    censor_at_new_therapy: bool = False
    efs_landmark_day: float | None = None
    remission_categories: tuple[str, ...] = ("CR", "CRh", "CRi")
    not_evaluable_categories: tuple[str, ...] = ("NE",)
    relapse_events: tuple[str, ...] = ("relapse", "extramedullary_disease")
    missing_followup: str = "last_observation"
    params: tuple[str, ...] | None = None
    calendar_days: bool = True
    censor_params: tuple[str, ...] = ("EFS", "RFS", "LFS", "CIR")
    efs_censor: str = "last_disease_assessment"
    efs_ne_death_after_landmark: str = "event"
    last_alive_sources: str = "all_tables"
    efs_evaluable_by: str = "any_time"
    population: str = "infused"
    infusion_evidence: str = "dose_or_kinetics"
    efs_short_followup: str = "not_evaluable"
    efs_open_remission: str = "not_evaluable"
    undetermined_relapse: str = "censor_last_settled"

    def __post_init__(self) -> None:
        check_choice("missing_followup", self.missing_followup, ("error", "last_observation"))
        if self.params is not None:
            bad = [p for p in self.params if p not in PARAMCDS]
            if bad:
                raise ValueError(f"unknown ADTTE parameter(s) {bad}; known: {list(PARAMCDS)}")
        if self.efs_landmark_day is not None and not math.isfinite(float(self.efs_landmark_day)):
            raise ValueError("efs_landmark_day must be a finite number of days or None")
        if self.efs_landmark_day is not None and not self.efs_landmark_day >= 0:  # review 41 F7, as best_response
            raise ValueError(f"endpoints.efs_landmark_day = {self.efs_landmark_day!r} is not valid; expected a day 0 "
                             "or later")
        bad = [p for p in self.censor_params if p not in PARAMCDS]
        if bad:
            raise ValueError(f"unknown ADTTE parameter(s) {bad} in censor_params; known: {list(PARAMCDS)}")
        if self.efs_censor not in EFS_CENSOR:
            raise ValueError("efs_censor must be 'last_disease_assessment' (ELN 2022: marrow or blood), "
                             f"'last_response_assessment' (marrow only) or 'last_known_alive', got {self.efs_censor!r}")
        check_choice("efs_ne_death_after_landmark", self.efs_ne_death_after_landmark, ("event", "censor"))
        check_choice("last_alive_sources", self.last_alive_sources, ("all_tables", "followup_day"))
        check_choice("efs_evaluable_by", self.efs_evaluable_by, ("any_time", "landmark"))
        check_choice("infusion_evidence", self.infusion_evidence, ("dose_or_kinetics", "dose"))
        check_choice("population", self.population, ("infused", "all"))
        check_choice("efs_short_followup", self.efs_short_followup, ("not_evaluable", "event"))
        check_choice("efs_open_remission", self.efs_open_remission, ("not_evaluable", "failure"))
        check_choice("undetermined_relapse", self.undetermined_relapse, ("censor_last_settled", "ignore", "event"))
        if "death" in self.relapse_events:
            raise ValueError("relapse_events must not contain 'death'")


#: what the EFS reasons name when the landmark comes from the best response (``derive_adtte``'s ``landmark_source``)
LANDMARK_FROM_BEST_RESPONSE = "best_response.landmark_day"


def landmark_inherited(endpoints: EndpointOptions | None, best_response: Any) -> bool:
    """True when the analysis's EFS landmark is ``best_response.landmark_day`` (``endpoints.efs_landmark_day``
    unset, ``best_response.landmark_day`` set): review 41 F3."""
    return ((endpoints is None or endpoints.efs_landmark_day is None)
            and getattr(best_response, "landmark_day", None) is not None)


def analysis_endpoint_options(endpoints: EndpointOptions | None, best_response: Any, strict: bool,
                              evaluable_by_set: bool = False) -> EndpointOptions:
    """The endpoint options an analysis applies (``AnalysisOptions.endpoint_options``): ``endpoints``
    with ``infusion_evidence`` following ``best_response.infusion_evidence`` (review 39 A1: who is
    infused is one decision); ``efs_landmark_day`` = ``best_response.landmark_day`` when only that
    one is set (review 41 F3: one protocol landmark, so the response rates and EFS treatment failure
    agree; :func:`landmark_inherited`), and then ``efs_evaluable_by="landmark"`` unless
    ``evaluable_by_set`` (the user set ``endpoints.efs_evaluable_by``): best response counts no
    assessment after its landmark, so a subject assessed only after it is not evaluable for EFS either
    (review 41 diff1 F1); ``missing_followup="error"`` when ``strict``."""
    from dataclasses import replace

    opts = endpoints or EndpointOptions()
    opts = replace(opts, infusion_evidence=best_response.infusion_evidence)
    if landmark_inherited(opts, best_response):
        opts = replace(opts, efs_landmark_day=float(best_response.landmark_day))
        if not evaluable_by_set and opts.efs_evaluable_by == "any_time":
            opts = replace(opts, efs_evaluable_by="landmark")
    return replace(opts, missing_followup="error") if strict else opts


def followed_options(endpoints: EndpointOptions | None, best_response: Any, applied: EndpointOptions) -> dict[str, str]:
    """The options of ``applied`` that follow ``best_response.landmark_day`` rather than being set, as text
    (``cartlab explain``: "efs_landmark_day=28 (follows best_response.landmark_day)"; review 41 diff1 F8)."""
    if not landmark_inherited(endpoints, best_response):
        return {}
    out = {"efs_landmark_day": f"{applied.efs_landmark_day:g} (follows {LANDMARK_FROM_BEST_RESPONSE})"}
    if applied.efs_evaluable_by == "landmark" and (endpoints is None or endpoints.efs_evaluable_by != "landmark"):
        out["efs_evaluable_by"] = f"landmark (follows {LANDMARK_FROM_BEST_RESPONSE})"
    return out
