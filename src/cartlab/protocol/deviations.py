"""Protocol deviations: what was given (doses.csv) and measured (observations) against the protocol.

:func:`protocol_deviations` is a pure function ``(study, protocol) -> polars.DataFrame`` with one
row per deviation:

* ``missed_dose`` — a planned administration with no matching dose;
* ``wrong_day`` — given, but more than ``tolerances.day`` days from the planned day (doses pair with
  planned ones in day order by the smallest total shift, never farther than
  ``tolerances.max_shift_days``: beyond it the planned dose is missed and the given one extra); with a
  ``lymphodepletion_window`` (Kymriah: completed 2-14 days before the infusion) the planned
  lymphodepletion days are first shifted as a block to end on the day the given course ended, when
  that day lies in the window (else one ``wrong_day`` row says the course ended outside it);
* ``extra_dose`` — a dose of a protocol agent that matches no planned administration;
* ``unplanned_agent`` — an agent the protocol does not list (bridging therapy is reported here too);
* ``dose_out_of_tolerance`` — the dose differs from the plan by more than ``tolerances.dose_pct``
  (CAR-T: ``car_t_dose_pct``), compared on the protocol's basis (mg/m2, mg/kg, mg, cells/kg, cells)
  using the subject's own BSA and weight, after the protocol's renal adjustment. A CAR-T target
  that is not the protocol's dose (``car_t.target_source: reconstructed``, e.g. one patient's level
  of a dose escalation) is not compared: the subject's TOTAL dose (sum of its infusions, cells/kg
  with its weight) must lie in the band's range (rule ``<id>.car_t.range``), or within
  ``car_t_dose_pct`` of an intended dose given per subject (``car_doses``) or for all
  (``DoseOptions.car_dose``, ``--car-dose``); a split the protocol does not fix
  (``car_t.split_source: reconstructed``) is not checked (one ``not_checkable`` row);
* ``missed_monitoring`` — a scheduled parameter not measured within ``tolerance_days`` of a
  scheduled day (one row per parameter, listing the days), up to the end of monitoring (rule
  ``<id>.monitoring_end``): death, the end of follow-up (``last_followup_day``; blank: the
  subject's last recorded row in any table, as study-format.md censors follow-up) and, unless
  ``off_study_ends_monitoring=False``, the protocol's ``monitoring_ends_at`` events (allo-HSCT, new
  therapy: the subject leaves the post-infusion schedule);
* ``not_infused`` — a subject with dose rows but no CAR-T dose (and, with ``infusion_evidence=
  dose_or_kinetics``, no quantifiable CARCOPY/CARCELL after day 0): one row, rule ``<id>.not_infused``;
  its post-infusion checks (CAR-T dose, monitoring schedule) are not done, its lymphodepletion is
  (review 40 A1). A study whose doses.csv has no CAR-T row at all: day 0 is the infusion
  (study-format "Time"), the CAR-T dose is ``not_checkable``;
* ``not_checkable`` — what could not be checked and why: a dose the plan cannot evaluate (no
  weight for a per-kg dose, no height for a per-m2 dose, no screening creatinine for a renal rule;
  one row per agent naming the missing input), a dose in a unit that cannot be compared, no
  plan at all, or no dose row of the subject at all (its doses were not recorded), or no dose of a
  lymphodepletion agent in the whole study (doses.csv lists the infusions only: the lymphodepletion
  was not recorded, not missed; review 40 B3).

Every row names the protocol rule and the source rows (``evidence``); a row decided by a tolerance
also names ``<id>.tolerances`` (cartlab's defaults: status ``convention``); ``rule_status`` is the
least verified of the row's rules. :func:`deviation_summary` counts them per subject.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from cartlab._deprecated import renamed
from cartlab.protocol.dosing import round_sig
from cartlab.protocol.eligibility import protocol_ld_agent
from cartlab.provenance import EVIDENCE, row_ref

__all__ = ["derive_deviations", "deviation_summary", "planned_doses", "subject_patient", "DEVIATION_SCHEMA"]

DEVIATION_SCHEMA = {
    "subject_id": pl.String,
    "category": pl.String,
    "item": pl.String,  # agent or param
    "planned_day": pl.Float64,
    "actual_day": pl.Float64,
    "planned_dose": pl.Float64,
    "given_dose": pl.Float64,
    "unit": pl.String,  # unit of planned_dose / given_dose (the protocol's basis)
    "difference_pct": pl.Float64,
    "days": pl.List(pl.Float64),  # missed monitoring days
    "detail": pl.String,
    "rule": pl.String,
    "rule_status": pl.String,  # the least verified status of the row's rules
    "evidence": EVIDENCE,
}


def _screening_creatinine(obs: pl.DataFrame, protocol, given_first_ld: float | None = None
                          ) -> tuple[float | None, str | None, float | None, str | None]:
    """``(value, unit, day, None)`` of the screening creatinine: the last one from the start of the
    protocol's screening window up to the first lymphodepletion day, both inclusive, in calendar days
    (a value at 16:00 on that day is in) - the subject's own first recorded lymphodepletion dose
    (``given_first_ld``, its calendar day) when there is one, as eligibility's default screening
    window ends, else the protocol's planned first day (day 0 without lymphodepletion);
    ``(None, None, None, why)`` when there is none in that window (an older value is stale: renal
    function is then not assessable, not taken as normal). A censored last value ("<20") gives its
    bound (:func:`cartlab.protocol.dose_inputs.screening_creatinine` has its whole range)."""
    from cartlab.protocol.dose_inputs import screening_creatinine

    c = screening_creatinine(obs, protocol, given_first_ld)
    return c["value"], c["unit"], c["day"], c["note"]


def subject_patient(study, protocol, subject_id: str, ld_course_tolerance_days: float | None = None):
    """``(Patient, None)`` for dosing a study subject: weight, height, age and sex from subjects.csv
    (``None`` where not recorded: the doses that need them are not evaluable; a blank weight or
    height is taken from the latest WEIGHT / HEIGHT observation up to the first lymphodepletion day,
    :func:`cartlab.protocol.dose_inputs.subject_body_size`) and the screening creatinine with its day
    (:func:`cartlab.protocol.dose_inputs.screening_creatinine`: a censored or several untimed values
    give candidates; when there is none, the patient's ``creatinine_note`` says why).
    ``ld_course_tolerance_days``: the lymphodepletion course's reading (:mod:`cartlab.protocol.ld_course`)."""
    from cartlab.protocol.dosing import Patient

    sub = study.subjects.filter(pl.col("subject_id") == subject_id)
    if sub.height == 0:
        raise ValueError(f"no subject {subject_id!r}")
    r = sub.row(0, named=True)
    obs = study.observations.filter(pl.col("subject_id") == subject_id)
    from cartlab.protocol.dose_inputs import screening_creatinine, subject_body_size
    from cartlab.protocol.eligibility import first_lymphodepletion_days
    from cartlab.protocol.ld_course import lymphodepletion_courses

    doses = study.doses.filter(pl.col("subject_id") == subject_id)
    given = first_lymphodepletion_days(doses, protocol, ld_course_tolerance_days) or {}
    first_ld = given.get(subject_id)
    course = (lymphodepletion_courses(doses, protocol, ld_course_tolerance_days) or {}).get(subject_id)
    c = screening_creatinine(obs, protocol, first_ld,  # a creatinine timed after the timed first dose: not screening
                             course.first_time if course is not None and first_ld is not None else None)
    # review 39 B1: the weight/height observation in the protocol's screening window, as the creatinine
    size = subject_body_size(obs, r, first_ld if first_ld is not None else protocol.first_lymphodepletion_day,
                             protocol.screening_window[0])
    sex = r.get("sex") if r.get("sex") in ("F", "M") else None
    refs = [row_ref(r), *size["refs"]]
    return Patient(weight_kg=size["weight_kg"], height_cm=size["height_cm"], age_years=r.get("age_years"), sex=sex,
                   creatinine=c["value"], creatinine_unit=c["unit"], subject_id=subject_id, creatinine_day=c["day"],
                   creatinine_note=c["note"], subject_ref="; ".join(x for x in refs if x) or None,
                   creatinine_ref=c["ref"], creatinine_candidates=c["candidates"], creatinine_reason=c["reason"],
                   creatinine_censor=c.get("censor"), weight_source=size.get("weight_source"),
                   height_source=size.get("height_source"), input_warnings=tuple(size["warnings"])), None


def planned_doses(study, protocol, subject_id: str, options=None, ld_course_tolerance_days: float | None = None
                  ) -> tuple[pl.DataFrame | None, str | None]:
    """The subject's dose plan (:func:`subject_patient`); ``(None, reason)`` when it cannot be
    computed."""
    plan, _size, why = _plan_and_size(study, protocol, subject_id, options, ld_course_tolerance_days)
    return plan, why


def _plan_and_size(study, protocol, subject_id: str, options=None, ld_course_tolerance_days: float | None = None):
    """(plan, body size, None) or (None, None, reason)."""
    from cartlab.protocol.dosing import DoseOptions, DosingError, body_size, dose_plan

    patient, why = subject_patient(study, protocol, subject_id, ld_course_tolerance_days)
    if patient is None:
        return None, None, why
    options = options or DoseOptions()
    try:
        size = body_size(patient, protocol, options)
        return dose_plan(protocol, patient, options, size=size), size, None
    except DosingError as exc:
        return None, None, str(exc)


def _match_days(planned: list[float], given: list[float], tol: float,
                max_shift: float = math.inf) -> tuple[list[tuple[int, int]], list[tuple[int, int]], list[int], list[int]]:
    """Pair planned and given administrations of one agent by day.

    Days compare as calendar days: a dose at 14:00 on day 0 (day 0.583) is given on day 0. The
    pairing keeps day order and pairs as many doses as possible within ``max_shift`` days, then
    with the smallest total shift (ties: the smallest shift of the exact times): a course given one
    day early pairs each dose with the planned dose one day later. A pair within ``tol`` days is on
    time, a farther one a wrong-day pair; a given dose more than ``max_shift`` days from every free
    planned day is extra, and that planned day missed. Returns (on-time pairs, wrong-day pairs,
    missed planned indices, extra given indices); pairs are (planned index, given index), indices
    of the lists as passed.
    """
    po = sorted(range(len(planned)), key=lambda i: planned[i])
    go = sorted(range(len(given)), key=lambda i: given[i])
    cal = {gi: math.floor(given[gi] + 1e-9) for gi in go}
    n, m = len(po), len(go)
    # best[i][j]: (-pairs, calendar shift, exact shift) of the first i planned and j given, in day order
    best = [[(0, 0.0, 0.0)] * (m + 1) for _ in range(n + 1)]
    step = [[None] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        for j in range(m + 1):
            if i == 0 and j == 0:
                continue
            opts = []
            if i:
                opts.append((best[i - 1][j], "p"))
            if j:
                opts.append((best[i][j - 1], "g"))
            if i and j:
                p, g = planned[po[i - 1]], go[j - 1]
                d = abs(cal[g] - p)
                if d <= max_shift + 1e-9:
                    b = best[i - 1][j - 1]
                    opts.append(((b[0] - 1, b[1] + d, b[2] + abs(given[g] - p)), "m"))
            best[i][j], step[i][j] = min(opts, key=lambda o: o[0])
    pairs, i, j = [], n, m
    while i or j:
        s_ = step[i][j]
        if s_ == "m":
            pairs.append((po[i - 1], go[j - 1]))
            i, j = i - 1, j - 1
        elif s_ == "p":
            i -= 1
        else:
            j -= 1
    paired_p, paired_g = {p for p, _ in pairs}, {g for _, g in pairs}
    on_time = sorted((p, g) for p, g in pairs if abs(cal[g] - planned[p]) <= tol + 1e-9)
    late = sorted((p, g) for p, g in pairs if abs(cal[g] - planned[p]) > tol + 1e-9)
    return on_time, late, [p for p in range(n) if p not in paired_p], [g for g in range(m) if g not in paired_g]


def _to_basis(dose: float, unit: str, basis: str, bsa: float | None, weight: float | None) -> float | None:
    """A given dose expressed on the protocol's basis (None when it cannot be)."""
    if unit == basis:
        return dose
    absolute = {"mg/m2": bsa, "mg/kg": weight, "mg": 1.0, "cells/kg": weight, "cells": 1.0}
    fu, fb = absolute.get(unit), absolute.get(basis)
    if fu is None or fb is None:
        return None
    if (unit.startswith("cells")) != (basis.startswith("cells")):
        return None
    return dose * fu / fb


def derive_deviations(study, protocol, options=None, *, car_doses: dict[str, float] | None = None,
                      max_shift_days: float | None = None, off_study_ends_monitoring: bool = True,
                      dose_pct: float | None = None, car_t_dose_pct: float | None = None,
                      day_tolerance: float | None = None, infusion_evidence: str = "dose_or_kinetics",
                      split_dose_gap_days: float | None = None,
                      ld_course_tolerance_days: float | None = None) -> pl.DataFrame:
    """Every deviation of every subject of ``study`` from ``protocol`` (see the module docstring).

    ``options``: :class:`~cartlab.protocol.dosing.DoseOptions` of the plan (``car_dose``: the
    intended CAR-T total dose of every subject, in the band's unit), or the analysis's
    :class:`~cartlab.protocol.options.ProtocolOptions` (its dose-plan choices, ``max_shift_days``,
    ``off_study_ends_monitoring`` and tolerances: one options class for ``analyze`` and
    ``deviations``, review 40 B9); ``dose_pct`` / ``car_t_dose_pct`` / ``day_tolerance``: the
    tolerances (None: the protocol's ``tolerances``, cartlab's conventions ±10 %, ±20 %, 0 days;
    review 40 B10); ``infusion_evidence``: who is infused (as ``best_response.infusion_evidence``,
    :func:`cartlab.response.infusion_evidence.infused_subjects`); ``car_doses``: subject id ->
    its intended CAR-T total dose (overrides ``car_dose``); ``max_shift_days``: the farthest pairing
    of a given with a planned dose (None: ``tolerances.max_shift_days``, 7 days by default);
    ``off_study_ends_monitoring``: the protocol's ``monitoring_ends_at`` events (allo-HSCT, new
    therapy) end the monitoring schedule (default True; death and the end of follow-up always do);
    ``split_dose_gap_days``: a CAR-T dose more than this after the previous one is a re-infusion, not
    part of the first infusion course whose dose is checked (the analysis's
    ``kinetics.split_dose_gap_days``; None its default, 7; review 47 F2);
    ``ld_course_tolerance_days``: the lymphodepletion course's reading (None: the option's default, 2
    days, :mod:`cartlab.protocol.ld_course`; review 47 F1).
    """
    from dataclasses import replace

    from cartlab.protocol.options import ProtocolOptions
    from cartlab.response.infusion_evidence import infused_subjects

    if isinstance(options, ProtocolOptions):
        po, options = options, options.dose_options()
        max_shift_days = po.max_shift_days if max_shift_days is None else max_shift_days
        off_study_ends_monitoring = off_study_ends_monitoring and po.off_study_ends_monitoring
        dose_pct = po.dose_pct if dose_pct is None else dose_pct
        car_t_dose_pct = po.car_t_dose_pct if car_t_dose_pct is None else car_t_dose_pct
        day_tolerance = po.day_tolerance if day_tolerance is None else day_tolerance
        if ld_course_tolerance_days is None:
            ld_course_tolerance_days = po.ld_course_tolerance_days
    rows: list[dict[str, Any]] = []
    tol = protocol.tolerances.model_copy(update={k: float(v) for k, v in (
        ("dose_pct", dose_pct), ("car_t_dose_pct", car_t_dose_pct), ("day", day_tolerance)) if v is not None})
    max_shift = tol.max_shift_days if max_shift_days is None else float(max_shift_days)
    infused, _why, kin_notes = infused_subjects(study, infusion_evidence)
    ld_names = [a.agent for a in protocol.lymphodepletion]
    study_has_ld = not ld_names or (study.doses.height > 0 and study.doses.select(
        protocol_ld_agent(pl.col("agent"), ld_names).is_not_null().any()).item())
    car_range = protocol.car_t.target_source == "reconstructed"
    ld_agents = {a.agent: a for a in protocol.lymphodepletion}
    car_agent = protocol.car_t.agent.lower()
    from cartlab.protocol.ld_course import lymphodepletion_courses, not_counted_why
    from cartlab.response.infusion_evidence import reinfusions

    # one reading of the course (eligibility, dose plan) and of a re-infusion (kinetics, response)
    courses = lymphodepletion_courses(study.doses, protocol, ld_course_tolerance_days) or {}
    further = reinfusions(study, split_dose_gap_days)
    deaths = _death_days(study)
    for sid in study.subject_ids:
        def add(category: str, item: str, detail: str, rule: str, evidence=(), **kw) -> None:
            rows.append({"subject_id": sid, "category": category, "item": item, "detail": detail,
                         "rule": rule, "evidence": list(evidence), **kw})

        opts = options
        if car_doses and sid in car_doses:
            from cartlab.protocol.dosing import DoseOptions

            opts = replace(options or DoseOptions(), car_dose=float(car_doses[sid]))
        intended = getattr(opts, "car_dose", None)
        plan, size, why = _plan_and_size(study, protocol, sid, opts, ld_course_tolerance_days)
        sub = study.subjects.filter(pl.col("subject_id") == sid).row(0, named=True)
        # the weight the plan used (subjects.csv, else the latest WEIGHT observation: review 39 B1)
        weight = size["weight_kg"] if size is not None and size.get("weight_kg") is not None else sub.get("weight_kg")
        # a lymphodepletion agent by any name of the alias table ("Fludara" is the protocol's fludarabine)
        given = study.doses.filter(pl.col("subject_id") == sid).with_columns(
            pl.coalesce(protocol_ld_agent(pl.col("agent"), list(ld_agents)), pl.col("agent").str.to_lowercase())
            .alias("_agent"))
        if plan is None:
            add("not_checkable", "doses", f"doses not checked: {why}", f"{protocol.id}.dosing")
        bsa = size["bsa_m2"] if size is not None else None
        # ---- administrations: match planned and given per agent. A subject without any dose row has
        # its doses unrecorded (day 0 is a CAR-T infusion): not a missed dose of every agent
        agents = list(ld_agents) + [car_agent]
        not_infused = False
        if given.height == 0 and infused is not None and sid not in infused:
            # review 47 F5: no dose row while the study records CAR-T infusions, no CAR-T measured: a
            # screen failure or a subject not treated; nothing is scheduled relative to an infusion
            not_infused = True
            add("not_infused", protocol.car_t.agent, "not infused: no dose row of this subject in doses.csv (the "
                "study records CAR-T infusions)" + ("" if infusion_evidence == "dose" else " and no quantifiable "
                                                   "CARCOPY/CARCELL after day 0")
                + f" (option infusion_evidence={infusion_evidence}): a screen failure or a subject not treated; no "
                "dose and no post-infusion monitoring is checked", f"{protocol.id}.not_infused")
            agents = []
        elif given.height == 0:
            add("not_checkable", "doses", "administrations not checked: no dose of this subject is recorded "
                "(doses.csv not given, or without this subject's rows; day 0 is a CAR-T infusion, so its doses "
                "were not recorded rather than all missed)", f"{protocol.id}.dosing")
            agents = []
        tol_rule = f"{protocol.id}.tolerances"
        if deaths.get(sid) is not None:  # review 47 F10: a dose on a calendar day after death is a data error
            dday, dref = deaths[sid]
            for gr in given.filter((pl.col("day") + 1e-9).floor() > math.floor(dday + 1e-9)).sort("day").to_dicts():
                add("dose_after_death", gr["agent"], f"{gr['agent']} recorded on day {gr['day']:g} ({gr['dose']:g} "
                    f"{gr['unit']}), after death on day {dday:g}" + (f" ({dref})" if dref else "")
                    + ": check the dates (an input error)", f"{protocol.id}.dosing",
                    _refs([gr]) + ([dref] if dref else []), actual_day=gr["day"], given_dose=gr["dose"],
                    unit=gr["unit"])
        # review 47 F2: a CAR-T dose more than kinetics.split_dose_gap_days after the previous one is a
        # re-infusion (as the kinetics and response engines read it): its own informational row, not a dose
        # of the first infusion course whose total is checked
        first_re = min((d for d, _ in further.get(sid, ())), default=None)
        if first_re is not None:
            is_re = (pl.col("_agent") == car_agent) & (pl.col("day") >= first_re - 1e-9)
            from cartlab.kinetics.car import CarKineticsOptions

            gap = CarKineticsOptions.split_dose_gap_days if split_dose_gap_days is None else split_dose_gap_days
            for gr in given.filter(is_re).sort("day").to_dicts():
                add("not_checkable", protocol.car_t.agent, f"{protocol.car_t.agent} re-infusion on day {gr['day']:g} "
                    f"({gr['dose']:.4g} {gr['unit']}): a later infusion course, from day {first_re:g}, the first CAR-T "
                    f"dose more than {gap:g} days after the previous one (kinetics.split_dose_gap_days; a product's "
                    "labelled split-dose window when longer); not checked against the protocol's dose and not added "
                    "to the first course's total", f"{protocol.id}.car_t", _refs([gr]),
                    actual_day=gr["day"], given_dose=gr["dose"], unit=gr["unit"])
            given = given.filter(~is_re)
        # review 47 F1: doses of a lymphodepletion agent that are not the subject's course (bridging, or
        # after the infusion) are not paired with the planned course; each is an extra dose saying why
        course = courses.get(sid)
        if course is not None and any(d < 0 for _, d in course.not_counted) and agents:
            off = pl.any_horizontal([(pl.col("_agent") == a) & ((pl.col("day") - d).abs() < 1e-9)
                                     for a, d in course.not_counted if d < 0])  # a dose after day 0 is paired
            for gr in given.filter(off).sort("day").to_dicts():
                add("extra_dose", gr["_agent"], f"{gr['_agent']} given on day {gr['day']:g} ({gr['dose']:g} "
                    f"{gr['unit']}): not counted as the lymphodepletion course ({not_counted_why(course, gr['day'])})",
                    f"{protocol.days_rule(gr['_agent'])}; {protocol.id}.screening_window", _refs([gr]),
                    actual_day=gr["day"], given_dose=gr["dose"],
                    unit=gr["unit"])
            given = given.filter(~off)
        if agents and given.filter(pl.col("_agent") == car_agent).height == 0:
            name = protocol.car_t.agent
            if infused is None:  # no CAR-T row for any subject: day 0 is the infusion (study-format "Time")
                add("not_checkable", name, f"{name} dose not checked: doses.csv has no CAR-T row for any subject "
                    "(day 0 is the infusion, study-format 'Time': the infusions were not recorded)",
                    f"{protocol.id}.car_t")
            elif sid in infused:  # counted as infused from its CAR-T measurement (option infusion_evidence)
                add("not_checkable", name, f"{name} dose not checked: {kin_notes.get(sid, 'no CAR-T dose recorded')}",
                    f"{protocol.id}.car_t")
            else:
                not_infused = True
                add("not_infused", name, "not infused: no CAR-T dose recorded for this subject in doses.csv"
                    + ("" if infusion_evidence == "dose" else " and no quantifiable CARCOPY/CARCELL after day 0")
                    + f" (option infusion_evidence={infusion_evidence}); the post-infusion checks (CAR-T dose, "
                    "monitoring schedule) are not done, the lymphodepletion is checked", f"{protocol.id}.not_infused")
            agents = [a for a in agents if a != car_agent]
        if agents and not study_has_ld:  # review 40 B3: the study's doses.csv records no lymphodepletion
            add("not_checkable", "lymphodepletion", "lymphodepletion not checked: no dose of a lymphodepletion agent ("
                + ", ".join(ld_names) + ") is recorded for any subject of this study (doses.csv lists other "
                "doses only: the lymphodepletion was not recorded, not missed)", f"{protocol.id}.lymphodepletion")
            agents = [a for a in agents if a not in ld_agents]
        if car_agent in agents and (car_range or protocol.car_t.split_source == "reconstructed"):
            _car_total(add, protocol, given.filter(pl.col("_agent") == car_agent).sort("day").to_dicts(), weight,
                       intended, tol_rule, tol.car_t_dose_pct)
            agents = [a for a in agents if a != car_agent]
        shift = _window_shift(add, protocol, given, ld_agents) if set(agents) & set(ld_agents) else 0.0
        for agent in agents:
            is_car = agent == car_agent
            if plan is not None:
                p = plan.filter(pl.col("kind") == ("car_t" if is_car else "lymphodepletion"))
                p = p if is_car else p.filter(pl.col("agent") == agent)
                planned = p.to_dicts()
            else:
                planned = [{"day": d} for d in (ld_agents[agent].days if not is_car
                                                 else [i.day for i in protocol.car_t.infusions])]
            if shift and not is_car:  # the course moved as a block inside the protocol's window
                planned = [{**r, "day": r["day"] + shift} for r in planned]
            g = given.filter(pl.col("_agent") == agent).sort("day").to_dicts()
            rule = f"{protocol.id}.{'car_t' if is_car else 'lymphodepletion.' + agent}"
            name = protocol.car_t.agent if is_car else agent
            on_time, late, missed, extra = _match_days([r["day"] for r in planned], [r["day"] for r in g], tol.day,
                                                       max_shift)
            day_rule = "; ".join([rule if is_car else protocol.days_rule(agent), tol_rule])
            moved = f" (the planned course shifted {shift:+g} days in the window)" if shift and not is_car else ""
            for pi, gi in late:
                pr, gr = planned[pi], g[gi]
                add("wrong_day", name, f"{name} planned on day {pr['day']:g}{moved}, given on day {gr['day']:g} "
                    f"({math.floor(gr['day'] + 1e-9) - pr['day']:+g} days; tolerance {tol.day:g} days)", day_rule, _refs([gr]), planned_day=pr["day"], actual_day=gr["day"])
            # a missed and an extra dose of the same agent: max_shift_days kept them apart
            apart = bool(missed and extra)
            extra_days = ", ".join(f"{g[gi]['day']:g}" for gi in extra)
            far, far_rule = (f" (the dose(s) of day(s) {extra_days} lie more than {max_shift:g} days from it)",
                             f"{rule}; {tol_rule}") if apart else ("", rule)
            for pi in missed:
                add("missed_dose", name, f"{name} planned on day {planned[pi]['day']:g}: no dose recorded{far}",
                    far_rule, planned_day=planned[pi]["day"])
            for gi in extra:
                gr = g[gi]
                add("extra_dose", name, f"{name} given on day {gr['day']:g} ({gr['dose']:g} {gr['unit']}): "
                    "not in the protocol's schedule" + (f" (no free planned dose within {max_shift:g} days)"
                                                        if apart else ""),
                    far_rule, _refs([gr]), actual_day=gr["day"], given_dose=gr["dose"], unit=gr["unit"])
            pairs = [(planned[pi], g[gi]) for pi, gi in on_time + late]
            if plan is None:
                continue
            limit = tol.car_t_dose_pct if is_car else tol.dose_pct
            unjudged = [(pr, gr) for pr, gr in pairs if pr["status"] == "not_evaluable"]
            if unjudged:  # the plan cannot say what was due: not a deviation, not compliance either
                pr0, days = unjudged[0][0], ", ".join(f"{gr['day']:g}" for _, gr in unjudged)
                add("not_checkable", name, f"{name} given on day(s) {days}: not checked against the plan, whose "
                    f"dose is not evaluable ({pr0['adjustment']})", pr0["rule"], _refs([gr for _, gr in unjudged]))
            for pr, gr in pairs:
                basis = pr["protocol_unit"]
                if pr["status"] == "not_evaluable":
                    continue
                if pr["status"] == "withhold":  # not a tolerance question: the rule withholds it
                    add("dose_out_of_tolerance", name, f"{name} given on day {gr['day']:g} although the plan "
                        f"withholds it ({pr['adjustment']})", pr["rule"], _refs([gr]), planned_day=pr["day"],
                        actual_day=gr["day"], given_dose=gr["dose"], unit=gr["unit"])
                    continue
                if pr["status"] == "to_choose":
                    _check_car_range(add, pr, gr, weight, name, rule)
                    continue
                # planned dose on the protocol's basis, after renal adjustment / caps
                planned_basis = round_sig(_to_basis(pr["dose"], pr["unit"], basis, bsa, weight))
                given_basis = round_sig(_to_basis(gr["dose"], gr["unit"], basis, bsa, weight))
                if given_basis is None:
                    add("not_checkable", name, f"{name} day {gr['day']:g}: a dose in {gr['unit']} cannot be "
                        f"compared with the protocol's {basis}", rule, _refs([gr]), actual_day=gr["day"])
                    continue
                diff = round_sig(100.0 * (given_basis - planned_basis) / planned_basis)
                if abs(diff) > limit + 1e-9:
                    add("dose_out_of_tolerance", name,
                        f"{name} day {gr['day']:g}: given {given_basis:.4g} {basis}, planned {planned_basis:.4g} "
                        f"{basis} ({_pct(diff, limit)}, tolerance ±{limit:g}%); plan: {pr['basis']}",
                        f"{pr['rule']}; {tol_rule}", _refs([gr]), planned_day=pr["day"], actual_day=gr["day"],
                        planned_dose=planned_basis, given_dose=given_basis, unit=basis, difference_pct=diff)
        known = set(ld_agents) | {car_agent}
        for gr in given.filter(~pl.col("_agent").is_in(list(known))).sort("day").to_dicts():
            add("unplanned_agent", gr["agent"], f"{gr['agent']} given on day {gr['day']:g} ({gr['dose']:g} "
                f"{gr['unit']}): not an agent of the protocol (bridging or a protocol change?)",
                f"{protocol.id}.lymphodepletion", _refs([gr]), actual_day=gr["day"], given_dose=gr["dose"],
                unit=gr["unit"])
        if not_infused:  # no post-infusion schedule without an infusion (review 40 A1)
            continue
        _monitoring(add, study, protocol, sid, sub, off_study_ends_monitoring)
    from cartlab.criteria import with_rule_status
    from cartlab.criteria.status import register_rules

    register_rules(protocol.rule_infos())  # a protocol parsed from text, not loaded, too

    df = pl.DataFrame(rows, schema=DEVIATION_SCHEMA, orient="row") if rows else pl.DataFrame(schema=DEVIATION_SCHEMA)
    return with_rule_status(df.drop("rule_status")).select(list(DEVIATION_SCHEMA))


def deviation_summary(deviations: pl.DataFrame) -> pl.DataFrame:
    """Per subject: the number of rows per category (one column each, in the order of the module
    docstring) and ``missed_monitoring_days`` (the missed scheduled days, summed over parameters)."""
    cats = ["missed_dose", "wrong_day", "extra_dose", "unplanned_agent", "dose_out_of_tolerance",
            "missed_monitoring", "not_infused", "dose_after_death", "not_checkable"]
    if deviations.height == 0:
        return pl.DataFrame(schema={"subject_id": pl.String, **{c: pl.Int64 for c in cats},
                                    "missed_monitoring_days": pl.Int64})
    return deviations.group_by("subject_id", maintain_order=True).agg(
        *[(pl.col("category") == c).sum().cast(pl.Int64).alias(c) for c in cats],
        pl.col("days").filter(pl.col("category") == "missed_monitoring").list.len().sum().cast(pl.Int64)
        .alias("missed_monitoring_days"))


def _window_shift(add, protocol, given: pl.DataFrame, ld_agents: dict) -> float:
    """Days by which the planned lymphodepletion course moves as a block inside the protocol's
    ``lymphodepletion_window``: the given course's last day minus the planned last day, when the
    given course ended inside the window (0 without a window or lymphodepletion dose; a course that
    ended outside the window gets a ``wrong_day`` row and is compared unshifted)."""
    win, planned_last = protocol.lymphodepletion_window, protocol.last_lymphodepletion_day
    if win is None or planned_last is None:
        return 0.0
    from cartlab.protocol.ld_course import lymphodepletion_courses

    ld = given.filter(pl.col("_agent").is_in(list(ld_agents)))
    # the course's last calendar day (ld_course: the run nearest before day 0, as eligibility reads it)
    course = next(iter((lymphodepletion_courses(ld.drop("_agent"), protocol) or {}).values()), None)
    if ld.height == 0 or course is None or course.last is None:
        return 0.0
    last = course.last
    lo, hi = win.completed_days
    if lo - 1e-9 <= last <= hi + 1e-9:
        return float(last - planned_last)
    r = ld.filter(pl.col("day").floor() == last).to_dicts()
    add("wrong_day", "lymphodepletion", f"lymphodepletion completed on day {last:g}: outside the window (completed on "
        f"days {lo:g} to {hi:g}, i.e. {-hi:g}-{-lo:g} days before the infusion)",
        f"{protocol.id}.lymphodepletion_window", _refs(r), planned_day=float(planned_last), actual_day=float(last))
    return 0.0


def _pct(diff: float, limit: float) -> str:
    """``diff`` as a signed percentage with enough decimals to be on its side of ``±limit``
    (-10.03%, not -10.0%, for a dose flagged outside ±10%; review 40 C1)."""
    for d in range(1, 7):
        if (abs(round(diff, d)) > limit) == (abs(diff) > limit + 1e-9):
            return f"{diff:+.{d}f}%"
    return f"{diff:+g}%"


def _car_total(add, protocol, g: list[dict], weight, intended: float | None, tol_rule: str,
               limit: float | None = None) -> None:
    """A CAR-T dose whose protocol target is not a protocol dose (one patient's dose level): the
    subject's TOTAL dose against the band's range, or against ``intended`` (its own dose level,
    ``car_t_dose_pct``); the split, when the protocol does not fix it, is not checked."""
    car, name, pid = protocol.car_t, protocol.car_t.agent, protocol.id
    if not g:
        add("missed_dose", name, f"{name}: no infusion recorded", f"{pid}.car_t", planned_day=0.0)
        return
    if car.split_source == "reconstructed" and not _as_reconstructed(g, car, weight):
        given = "; ".join(f"day {r['day']:g}: {r['dose']:.4g} {r['unit']}" for r in g)
        add("not_checkable", name, f"{name} split not checked ({given}): the protocol does not fix the infusion days "
            "and fractions (" + "; ".join(f"day {i.day:g}: {i.fraction:.0%}" for i in car.infusions)
            + " is a reconstructed schedule, not a protocol rule)", f"{pid}.car_t.split", _refs(g))
    band = car.band_for(weight) if weight is not None else (car.bands[0] if len(car.bands) == 1 else None)
    if band is None:
        add("not_checkable", name, f"{name} total dose not checked: no weight, and the dose band depends on it",
            f"{pid}.car_t", _refs(g))
        return
    per, w = band.unit, weight
    conv = [_to_basis(r["dose"], r["unit"], per, None, w) for r in g]
    if any(c is None for c in conv):
        bad = sorted({r["unit"] for r, c in zip(g, conv) if c is None})
        add("not_checkable", name, f"{name} total dose not checked: a dose in {', '.join(bad)} cannot be expressed in "
            f"{per}" + (" without the subject's weight_kg" if w is None else ""), f"{pid}.car_t", _refs(g))
        return
    total = round_sig(sum(conv))
    days = ", ".join(f"{r['day']:g}" for r in g)
    cap = band.max_total_cells  # the band's maximum total, whatever the weight or the intended dose
    cells = None if cap is None else _to_basis(total, per, "cells", None, w)
    if cells is not None and _outside(cells, None, cap):  # (dose_plan caps at it)
        add("dose_out_of_tolerance", name, f"{name} total {cells:.4g} cells (days {days}; {total:.4g} {per}) is above "
            f"the protocol's maximum total {cap:.4g} cells", f"{pid}.car_t.range", _refs(g),
            given_dose=cells, unit="cells")
        return
    if intended is not None:
        limit = protocol.tolerances.car_t_dose_pct if limit is None else limit
        diff = round_sig(100.0 * (total - intended) / intended)
        if abs(diff) > limit + 1e-9:
            add("dose_out_of_tolerance", name, f"{name} total {total:.4g} {per} (days {days}), intended {intended:.4g} "
                f"{per} ({_pct(diff, limit)}, tolerance ±{limit:g}%)", f"{pid}.car_t; {tol_rule}", _refs(g),
                planned_dose=float(intended), given_dose=total, unit=per, difference_pct=diff)
        return
    lo, hi = band.min, band.max
    if _outside(total, lo, hi):
        add("dose_out_of_tolerance", name, f"{name} total {total:.4g} {per} (days {days}) is outside the protocol "
            f"range {'up to ' if lo is None else f'{lo:.4g}-'}{hi:.4g} {per}", f"{pid}.car_t.range", _refs(g),
            given_dose=total, unit=per)


#: how far an infusion's share of the total may be from the reconstructed split's fraction and still
#: follow it: 1 percentage point, the precision the split is written with (20%/80%; cartlab convention)
SPLIT_FRACTION_SLACK = 0.01


def _outside(x: float, lo: float | None, hi: float | None) -> bool:
    """Whether ``x`` is below ``lo`` or above ``hi`` (None: unbounded), with a 1e-9 relative slack for
    values computed from rounded inputs."""
    return (lo is not None and x < lo * (1 - 1e-9)) or (hi is not None and x > hi * (1 + 1e-9))


def _as_reconstructed(g: list[dict], car, weight) -> bool:
    """The infusions follow the reconstructed split: its calendar days, each its fraction of the
    total (within :data:`SPLIT_FRACTION_SLACK`); then there is nothing left unchecked to report."""
    planned = sorted(car.infusions, key=lambda i: i.day)
    if [math.floor(r["day"] + 1e-9) for r in g] != [i.day for i in planned]:
        return False
    cells = [_to_basis(r["dose"], r["unit"], "cells", None, weight) for r in g]
    if any(c is None for c in cells) or sum(cells) <= 0:
        return False
    total = sum(cells)
    return all(abs(c / total - i.fraction) <= SPLIT_FRACTION_SLACK for c, i in zip(cells, planned))


def _check_car_range(add, pr, gr, weight, agent, rule) -> None:
    """Without a protocol target, a CAR-T dose must lie within the band's range."""
    lo, hi = pr.get("dose_min"), pr.get("dose_max")
    cells = _to_basis(gr["dose"], gr["unit"], "cells", None, weight)
    if cells is None:
        return
    if _outside(cells, lo, hi):
        add("dose_out_of_tolerance", agent, f"{agent} day {gr['day']:g}: {cells:.4g} cells is outside the "
            f"protocol range {'' if lo is None else f'{lo:.4g}-'}{hi:.4g} cells for this infusion", rule,
            _refs([gr]), planned_day=pr["day"], actual_day=gr["day"], given_dose=cells, unit="cells")


def _refs(rows: list[dict]) -> list[str]:
    return [x for x in map(row_ref, rows) if x]


def _death_days(study) -> dict[str, tuple[float, str | None]]:
    """Per subject, the day of its first ``death`` event and that row's reference."""
    ev = study.events
    if ev.height == 0 or "event" not in ev.columns:
        return {}
    d = ev.filter((pl.col("event") == "death") & pl.col("day").is_not_null()).sort("day")
    out: dict[str, tuple[float, str | None]] = {}
    for r in d.iter_rows(named=True):
        out.setdefault(r["subject_id"], (float(r["day"]), row_ref(r)))
    return out


def _monitoring_end(study, protocol, sid: str, sub: dict, off_study: bool) -> tuple[float | None, str]:
    """(end day, why) of the subject's monitoring: the earliest of death, the end of follow-up
    (``last_followup_day``; blank: its last recorded row in any table, study-format.md: "a subject
    without `last_followup_day`, death or event is censored at its last recorded row in any table")
    and, with ``off_study``, the first of the protocol's ``monitoring_ends_at`` events.
    (None, why) when the subject has no recorded row at all."""
    ev = study.events.filter(pl.col("subject_id") == sid)
    ends: list[tuple[float, str]] = []
    if sub.get("last_followup_day") is not None:
        ends.append((float(sub["last_followup_day"]), "last_followup_day"))
    else:
        from cartlab.response.adtte import last_recorded_rows  # the endpoints' reading of "any table"

        last = last_recorded_rows(study, [sid])
        if last.height:
            ends.append((float(last["day"][0]), f"last recorded row, {last['table'][0]} "
                         "(last_followup_day blank)"))
    stops = ["death"] + (list(protocol.monitoring_ends_at) if off_study else [])
    for e in stops:
        d = ev.filter((pl.col("event") == e) & pl.col("day").is_not_null())["day"].to_list()
        if d:
            ends.append((float(min(d)), e))
    if not ends:
        return None, "no recorded row and no last_followup_day"
    end = min(x for x, _ in ends)
    return end, " and ".join(w for x, w in ends if x == end)


def _monitoring(add, study, protocol, sid: str, sub: dict, off_study: bool = True) -> None:
    obs = study.observations.filter(pl.col("subject_id") == sid)
    end, why = _monitoring_end(study, protocol, sid, sub, off_study)
    end_rule = f"{protocol.id}.monitoring_end"
    # the convention decided the end unless a recorded last_followup_day or a death did
    by_rule = not any(w in ("last_followup_day", "death") for w in why.split(" and "))
    died = "death" in why.split(" and ")
    if end is None:
        if protocol.monitoring:
            add("not_checkable", "monitoring", f"monitoring not checked: {why} (the end of follow-up is unknown)",
                end_rule)
        return
    for m in protocol.monitoring:
        for param in m.params:
            have = sorted(set(obs.filter(pl.col("param") == param)["day"].to_list()))
            missed = []
            for d in m.scheduled_days():
                # nothing is due on or after the day of death (review 47 F9)
                if d > end + 1e-9 or (died and d >= math.floor(end + 1e-9)):
                    continue
                if not any(abs(math.floor(h + 1e-9) - d) <= m.tolerance_days + 1e-9 for h in have):  # calendar days
                    missed.append(d)
            if missed:
                shown = ", ".join(f"{d:g}" for d in missed[:12]) + (f" and {len(missed) - 12} more" if len(missed) > 12 else "")
                tol_txt = f" (±{m.tolerance_days:g} d)" if m.tolerance_days else ""
                src = " [schedule reconstructed]" if m.source == "reconstructed" else ""
                checked = (f"monitoring checked to day {math.floor(end + 1e-9) - 1:g}, the day before death on day "
                           f"{end:g}{'' if why == 'death' else ' (' + why + ')'}" if died
                           else f"monitoring checked to day {end:g} ({why})")
                add("missed_monitoring", param, f"{param} not measured on scheduled day(s) {shown}{tol_txt}{src}; "
                    + checked,
                    f"{protocol.id}.monitoring.{m.id}" + (f"; {end_rule}" if by_rule else ""), days=[float(d) for d in missed],
                    planned_day=float(missed[0]))


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
__getattr__ = renamed(__name__, protocol_deviations="derive_deviations")
