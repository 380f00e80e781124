"""Eligibility screening: each criterion of a protocol evaluated against a subject's data.

:func:`screen_eligibility` is a pure function ``(study, protocol) -> polars.DataFrame`` with one
row per subject and criterion: the value used, its day, ``status`` (``pass`` / ``fail`` /
``unknown``), the reason in words and the source rows (``evidence``). It never guesses: a missing
value, a censored value that cannot decide the criterion, a missing ULN, a criterion that needs the
source documents (``manual``) all give ``unknown`` with the reason.

Age limits compare completed years by default (``protocol.age_whole_years``, overridable per call):
"up to 25 years of age" (Kymriah USPI; EU SmPC "up to and including 25 years") and "12-65 years"
(NCT04762485) are limits on the age in whole years, so floor(age_years) is compared: 25.4 meets
``<= 25``, 11.9 does not meet ``>= 12``. ``age_whole_years=False`` compares the exact age.

Screening values are the last ones recorded in the criterion's window (default: the protocol's
``screening_window``, in days relative to day 0, both ends inclusive). By default
(``screening_end="lymphodepletion"``) the window ends on the calendar day of the subject's own
first lymphodepletion dose (doses.csv) when one is recorded, as the nominal window ends on the
planned first dose day and the dose engine's screening creatinine is read; else on the window's
nominal end; the reason names which (rule ``<id>.screening_window``).
``screening_end="day_before_lymphodepletion"``: the day before that dose (a same-day value may
have been drawn after it); ``"fixed"``: always the nominal end.

An ``event`` criterion is TRUE when the event is recorded in the window; with ``event_decides:
false`` a recorded event gives *unknown* (NCT04762485: an infection is recorded, whether it was
"uncontrolled" and "active" is not in the study format). ``age_years`` is the age at infusion
(study format), which the reason says.

Each criterion is a condition of the criteria language (:mod:`cartlab.criteria`), evaluated for
every subject at once: a censored result (``<0.5``) is a value known only as a range, so the
comparison is TRUE when every value of the range meets it, FALSE when none does, else unknown; a
threshold relative to the ULN/LLN is a per-row column reference (``3 x ULN`` of the result used);
``any_of`` is a Kleene OR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl

from cartlab._deprecated import renamed
from cartlab.criteria import Compiler, Range
from cartlab.criteria.model import AnyOf, Column, Leaf
from cartlab.grading.ld_agents import canonical_agent, canonical_agent_expr
from cartlab.protocol.dosing import round_sig
from cartlab.provenance import EVIDENCE, row_ref, unique_refs

__all__ = ["ELIGIBILITY_SCHEMA", "SCREENING_ENDS", "eligibility_verdict", "derive_eligibility"]

#: how the screening window ends (derive_eligibility ``screening_end``; the first is the default)
SCREENING_ENDS = ("lymphodepletion", "day_before_lymphodepletion", "fixed")

ELIGIBILITY_SCHEMA = {
    "subject_id": pl.String,
    "criterion_id": pl.String,
    "kind": pl.String,
    "text": pl.String,
    "status": pl.String,  # pass | fail | unknown
    "value": pl.String,
    "unit": pl.String,
    "day": pl.Float64,
    "date": pl.String,  # calendar date of the value (from subjects.infusion_date), when known
    "reason": pl.String,
    "source": pl.String,  # provenance of the value used (paper, reconstructed, synthetic, observed)
    "rule": pl.String,
    "rule_status": pl.String,  # the rule's verification status (least verified of '; '-joined rules)
    "citation": pl.String,
    "evidence": EVIDENCE,
}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


def _target_text(c) -> str:
    if c.op == "between":
        return f"between {_fmt(c.value[0])} and {_fmt(c.value[1])}"
    if c.op in ("in", "not_in"):
        return f"{'in' if c.op == 'in' else 'not in'} {{{_fmt(c.value)}}}"
    suffix = " x ULN" if c.relative_to == "uln" else (" x LLN" if c.relative_to == "lln" else "")
    unit = f" {c.unit}" if c.unit else ""
    return f"{c.op} {_fmt(c.value)}{suffix}{unit}"


def _src(r: dict) -> str | None:
    return r.get("source") or None


def _ref(r: dict) -> list[str]:
    """The row's reference as a one-element evidence list (empty without provenance)."""
    return [x] if (x := row_ref(r)) is not None else []


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


@dataclass
class _Part:
    """One data source of a criterion (a subjects field, a param, an event, or manual), the column
    ``key`` of its value and, per subject, the row it reads."""

    crit: Any
    key: str
    window: tuple[float, float]
    rows: dict[str, dict] = field(default_factory=dict)
    dtype: Any = None        # a field's dtype (subjects.csv)
    unit: str | None = None  # the param's canonical unit
    target: Any = None       # the param's threshold in that unit (before a ULN/LLN multiple)
    whole_years: bool = False  # age_years compared in completed years (floor)
    #: per subject, the window end from its first lymphodepletion dose: (first dose's calendar day,
    #: values before that day); subjects not listed use ``window[1]`` (the nominal end)
    #: None: the window ends at its nominal end for everyone (``screening_end="fixed"`` or the
    #: criterion's own window)
    ends: dict[str, float] | None = None
    strict: bool = False  # True: values before the first dose's calendar day only
    #: the part reads the protocol's screening window (capped before day 0, review 40 B1)
    screening: bool = False
    #: per subject, the doses of a lymphodepletion agent not taken as the course (review 40 A2)
    notes: dict[str, str] = field(default_factory=dict)
    #: per subject, the time (fractional day) of its first lymphodepletion dose when it has one: a value
    #: timed after it on that day is not a screening value (review 47 F6)
    times: dict[str, float] = field(default_factory=dict)
    #: per subject, the rows of the last day without a time of day when there are several (they have
    #: no order; review 47 F4), in file order
    ties: dict[str, list[dict]] = field(default_factory=dict)
    #: per subject with ties, the part's truth for each tied row
    tie_truths: dict[str, list] = field(default_factory=dict)


def _parts(c, window: tuple[float, float], key: str, ends: dict[str, float] | None,
           screening: bool = True) -> list[_Part]:
    """The data sources of a criterion, ``any_of`` flattened (each part keeps its own window; only
    the protocol's screening window ends at the subject's lymphodepletion, ``ends``)."""
    screening = screening and c.window is None
    win, ends = (c.window, None) if c.window is not None else (window, ends)
    if c.any_of:
        return [p for i, sub in enumerate(c.any_of) for p in _parts(sub, win, f"{key}_{i}", ends, screening)]
    return [_Part(c, key, win, ends=ends, screening=screening)]


def _nominal_end(part: _Part) -> float:
    """The window's nominal end; the screening window's is capped at calendar day -1: screening
    values are drawn before the infusion (study-format "Time": day 0 is the infusion; review 40 B1)."""
    return min(part.window[1], -1.0) if part.screening else part.window[1]


def _in_window(part: _Part, columns=()) -> pl.Expr:
    """Rows inside the part's window, in calendar days (both ends inclusive: a value at 12:00 on day
    -6 is in "days -42 to -6", review 40 B8): from its start; up to its nominal end (the screening
    window's capped before day 0), or for a subject with a lymphodepletion course, up to the calendar
    day of its first dose (``strict``: the day before). On that day, when the value and the first
    dose both have a time of day, a value drawn after the dose is not a screening value (review 47
    F6; without times the day counts). ``columns``: the frame's columns (a ``datetime`` column)."""
    from cartlab.io.clock import is_timed

    lo, hi = part.window[0], _nominal_end(part)
    cal = (pl.col("day") + 1e-9).floor()
    expr = cal >= lo
    if not part.ends:  # fixed, or no subject with a recorded lymphodepletion dose
        return expr & (cal <= hi)
    first = pl.col("subject_id").replace_strict(part.ends, default=None, return_dtype=pl.Float64)
    before = cal <= (first - 1 if part.strict else first)
    if part.times and not part.strict:
        at = pl.col("subject_id").replace_strict(part.times, default=None, return_dtype=pl.Float64)
        after = (cal == first) & is_timed("day", "datetime" if "datetime" in columns else None) & (pl.col("day") > at)
        before = before & ~after.fill_null(False)
    return expr & pl.when(first.is_null()).then(cal <= hi).otherwise(before)


def _first_lymphodepletion(study, protocol, tolerance_days: float | None = None) -> dict[str, float] | None:
    """Per subject, the calendar day (floor) of the first dose of its lymphodepletion course
    (:mod:`cartlab.protocol.ld_course`; subjects without one are not listed; None: the protocol has
    no lymphodepletion)."""
    return first_lymphodepletion_days(study.doses, protocol, tolerance_days)


def protocol_ld_agent(agent: pl.Expr, agents: list[str]) -> pl.Expr:
    """The protocol's lymphodepletion agent (of ``agents``) a ``doses.csv`` agent is, read through the
    alias table (:mod:`cartlab.grading.ld_agents`: "Fludara", "fludarabine phosphate" are
    fludarabine; case- and space-blind), null when it is none of them (review 38 diff1 F6)."""
    by_canon = {canonical_agent(a): a for a in agents}
    return canonical_agent_expr(agent).replace_strict(list(by_canon), list(by_canon.values()), default=None,
                                                     return_dtype=pl.String)


def first_lymphodepletion_days(d: pl.DataFrame, protocol, tolerance_days: float | None = None
                               ) -> dict[str, float] | None:
    """:func:`_first_lymphodepletion` of a doses frame (the screening creatinine of dosing reads it
    too): the first calendar day of each subject's course (review 40 A2: the contiguous run nearest
    before day 0, :func:`cartlab.protocol.ld_course.lymphodepletion_courses`; a bridging dose of the
    same agent weeks earlier, or a dose after day 0, does not count; ``tolerance_days``: option
    ``ld_course_tolerance_days``, None its default)."""
    from cartlab.protocol.ld_course import lymphodepletion_courses

    courses = lymphodepletion_courses(d, protocol, tolerance_days)
    if courses is None:
        return None
    return {sid: c.first for sid, c in courses.items() if c.first is not None}


def _course_notes(study, protocol, tolerance_days: float | None = None) -> dict[str, str]:
    """Per subject, the words naming the lymphodepletion-agent doses not taken as its course."""
    from cartlab.protocol.ld_course import course_note, lymphodepletion_courses

    courses = lymphodepletion_courses(study.doses, protocol, tolerance_days) or {}
    return {sid: n for sid, c in courses.items() if (n := course_note(c))}


def _course_ends(study, protocol, tolerance_days: float | None = None
                 ) -> tuple[dict[str, float] | None, dict[str, float], dict[str, str]]:
    """(first calendar day of each subject's course, or None without lymphodepletion in the protocol;
    the first dose's time where it has one; the words naming the doses not taken as the course)."""
    from cartlab.protocol.ld_course import course_note, lymphodepletion_courses

    courses = lymphodepletion_courses(study.doses, protocol, tolerance_days)
    if courses is None:
        return None, {}, {}
    return ({sid: c.first for sid, c in courses.items() if c.first is not None},
            {sid: c.first_time for sid, c in courses.items() if c.first is not None and c.first_time is not None},
            {sid: n for sid, c in courses.items() if (n := course_note(c))})


def _last(frame: pl.DataFrame, by: list[str]) -> dict[str, dict]:
    """Per subject, the last row in ``by`` order (ties: the later row of the source frame)."""
    if frame.height == 0:
        return {}
    last = frame.sort(["subject_id", *by]).group_by("subject_id", maintain_order=True).last()
    return {r["subject_id"]: r for r in last.iter_rows(named=True)}


def _ties(obs: pl.DataFrame, last: dict[str, dict]) -> dict[str, list[dict]]:
    """Per subject whose last row has no time of day, every row of that day without one when there are
    several: they have no order (the study reader warns about such values; the dose plan's screening
    creatinine reads them alike), so each is tried (review 47 F4)."""
    from cartlab.io.clock import is_timed

    if obs.height == 0:
        return {}
    timed = is_timed("day", "datetime" if "datetime" in obs.columns else None)
    untimed = obs.filter(~timed)
    keys = pl.DataFrame([(sid, r["day"]) for sid, r in last.items()], orient="row",
                        schema={"subject_id": pl.String, "day": pl.Float64})
    same = untimed.join(keys, on=["subject_id", "day"]).sort("subject_id", "_i")
    out: dict[str, list[dict]] = {}
    for r in same.iter_rows(named=True):
        out.setdefault(r["subject_id"], []).append(r)
    # only where the last row itself is one of them (an untimed last row) and there are several
    return {sid: rs for sid, rs in out.items() if len(rs) > 1 and rs[-1]["_i"] == last[sid]["_i"]}


def _gather(study, part: _Part, subjects: dict[str, dict]) -> None:
    """The row each subject's part reads: the subject row, the last result or event in the window."""
    c = part.crit
    if c.field is not None:
        part.rows, part.dtype = subjects, study.subjects.schema[c.field]
    elif c.event is not None:
        ev = study.events.with_row_index("_i").filter((pl.col("event") == c.event)
                                                      & _in_window(part, study.events.columns))
        part.rows = _last(ev, ["day", "_i"])
    elif c.param is not None:
        from cartlab.io.dictionary import load_dictionary

        p = load_dictionary()[c.param]
        obs = study.observations.with_row_index("_i").filter(
            (pl.col("param") == c.param) & _in_window(part, study.observations.columns)
            & (pl.col("value").is_not_null() | pl.col("censor").is_not_null()))
        if c.analyte is not None:  # free text (study-format): case- and space-blind (review 40 B11)
            obs = obs.filter(pl.col("analyte").str.replace_all(r"\s+", "").str.to_lowercase()
                             == "".join(c.analyte.split()).lower())
        part.rows, part.unit = _last(obs, ["day", "_i"]), p.unit
        part.ties = _ties(obs, part.rows)
        target = c.value
        if c.unit is not None and isinstance(target, (int, float, list)):
            # rounded to 12 significant digits as the study reader rounds a converted value, so that
            # equal quantities compare equal (2.0 mg/dL read from a study is <= 2.0 mg/dL)
            conv = p.conversion_from(c.unit)
            target = ([round_sig(conv.scale * float(t) + conv.offset) for t in target] if isinstance(target, list)
                      else round_sig(conv.scale * float(target) + conv.offset))
        elif isinstance(target, (int, float)) and not isinstance(target, bool):
            target = float(target)
        part.target = target


def _ref_value(part: _Part, r: dict | None) -> float | None:
    """The row's ULN/LLN when the threshold is a multiple of it (None when absent or not > 0)."""
    ref = None if r is None else r.get(part.crit.relative_to)
    return float(ref) if ref is not None and ref > 0 else None


def _columns(part: _Part, ids: list[str]) -> dict[str, pl.Series]:
    """The part's value for every subject: a field's value, an event flag (None = unknown), or a
    result as a range (a value is the range [v, v]; ``<5`` is (-inf, 5)) with its ULN/LLN."""
    c, k = part.crit, part.key
    if c.manual:
        return {k: pl.Series(k, [None] * len(ids), dtype=pl.Boolean)}
    if c.event is not None:
        flag = [(True if c.event_decides else None) if sid in part.rows
                else (False if c.absence_means_no else None) for sid in ids]
        return {k: pl.Series(k, flag, dtype=pl.Boolean)}
    if c.field is not None:
        vals = [None if _missing(v := part.rows.get(sid, {}).get(c.field)) else v for sid in ids]
        col = pl.Series(k, vals, dtype=part.dtype)
        if c.field == "age_years" and part.whole_years:  # completed years
            col = col.floor()
        return {k: col}
    lo, hi, lo_open, hi_open, ref = [], [], [], [], []
    for sid in ids:
        r = part.rows.get(sid)
        a = b = None
        ao = bo = False
        if r is not None and r["value"] is not None:
            a = b = float(r["value"])
        elif r is not None:
            lim, cz = r["censor_limit"], r["censor"]
            a, b = (None, lim) if cz in ("<", "<=") else (lim, None)
            ao, bo = cz == ">", cz == "<"
        lo.append(a)
        hi.append(b)
        lo_open.append(ao)
        hi_open.append(bo)
        ref.append(_ref_value(part, r) if c.relative_to else None)
    return {f"{k}_lo": pl.Series(lo, dtype=pl.Float64), f"{k}_hi": pl.Series(hi, dtype=pl.Float64),
            f"{k}_lo_open": pl.Series(lo_open, dtype=pl.Boolean), f"{k}_hi_open": pl.Series(hi_open, dtype=pl.Boolean),
            f"{k}_ref": pl.Series(ref, dtype=pl.Float64)}


def _condition(c, parts: dict[str, _Part], key: str):
    """A criterion as a condition of the criteria language (the data of part ``key`` is feature ``key``)."""
    if c.any_of:
        return AnyOf(any=tuple(_condition(sub, parts, f"{key}_{i}") for i, sub in enumerate(c.any_of)))
    if c.manual or c.event is not None:
        return Leaf(feature=key, op="==", value=True)  # an event that does not decide is None (unknown)
    if c.field is not None:
        value = tuple(c.value) if isinstance(c.value, list) else c.value
        return Leaf(feature=key, op=c.op, value=value, closed="both" if c.op == "between" else None)
    target = parts[key].target
    if c.relative_to:  # a multiple of the row's ULN/LLN
        target = ([Column(column=f"{key}_ref", factor=t) for t in target] if isinstance(target, list)
                  else Column(column=f"{key}_ref", factor=target))
    value = tuple(target) if isinstance(target, list) else target
    return Leaf(feature=key, op=c.op, value=value, closed="both" if c.op == "between" else None)


def _clock(day: float) -> str:
    """The clock time of a fractional day (-5.6667 -> "08:00")."""
    minutes = round((day - math.floor(day)) * 1440)
    return f"{minutes // 60 % 24:02d}:{minutes % 60:02d}"


def _shown(r: dict) -> str:
    """A result as compared, in the parameter's unit: the value, or a censored one's text; a censored
    result converted from another unit is its converted bound ("<8.552" umol/L for "<0.5" mg/dL, not
    "<0.5" with the parameter's unit; review 47 F3)."""
    if r["value"] is not None:
        return _fmt(float(r["value"]))
    ou, lim = r.get("orig_unit"), r.get("censor_limit")
    if ou and r.get("unit") and ou != r["unit"] and lim is not None and r.get("censor"):
        return f"{r['censor']}{float(lim):.4g}"
    return r["value_text"]


def _as_recorded(r: dict, unit: str | None) -> str:
    """A result with its unit as recorded and, when converted, as compared ("0.5 mg/dL (= 8.552
    umol/L)", "<0.5 mg/dL (= <8.552 umol/L)"); else "22 U/L" ("2" for a unitless value)."""
    ou = r.get("orig_unit")
    if ou and unit and ou != unit:
        if r["value"] is None and r.get("censor_limit") is not None:
            return f"{r['value_text']} {ou} (= {_shown(r)} {unit})"
        if r["value"] is not None and r.get("orig_value") is not None:
            return f"{float(r['orig_value']):g} {ou} (= {float(r['value']):.4g} {unit})"
    return f"{_shown(r)} {unit}" if unit else _shown(r)


def _explain(c, parts: dict[str, _Part], key: str, sid: str, truth: dict[str, bool | None]) -> dict[str, Any]:
    """{cond, value, unit, day, reason, evidence, source} of one criterion for one subject."""
    if c.any_of:
        subs = [_explain(sub, parts, f"{key}_{i}", sid, truth) for i, sub in enumerate(c.any_of)]
        reason = " OR ".join(f"[{sub.text}: {p['reason']}]" for sub, p in zip(c.any_of, subs))
        chosen = next((p for p in subs if p["cond"] is True), subs[0])
        return {**chosen, "cond": truth[key], "reason": reason, "evidence": [e for p in subs for e in p["evidence"]]}
    part, cond = parts[key], truth[key]
    nothing = {"cond": None, "value": None, "unit": None, "day": None, "evidence": []}
    lo, hi = part.window[0], _nominal_end(part)
    note = part.notes.get(sid, "") if part.screening else ""
    if part.ends is not None and sid in part.ends:
        first = part.ends[sid]
        at = part.times.get(sid)
        clock = (f" at {_clock(at)} (a value timed after it on that day is not a screening value)"
                 if at is not None and not part.strict else "")
        wtxt = (f"days {lo:g} to {first - 1:g}, before the first lymphodepletion dose on day {first:g}" if part.strict
                else f"days {lo:g} to {first:g}, up to the first lymphodepletion dose on day {first:g}{clock}")
    elif part.ends is not None:
        wtxt = (f"days {lo:g} to {hi:g}; no lymphodepletion dose recorded"
                + (" before day 0" if note else "") + ": the window's nominal end")
    else:
        wtxt = f"days {lo:g} to {hi:g}"
    if hi < part.window[1] and not (part.ends is not None and sid in part.ends):
        wtxt += f" (capped before the infusion on day 0; the protocol's window ends on day {part.window[1]:g})"
    if note:
        wtxt += f"; {note}"
    if c.manual:
        return {**nothing, "reason": "not decidable from the study data: check the source documents"}
    if c.field is not None:
        v = part.rows.get(sid, {}).get(c.field)
        if _missing(v):
            return {**nothing, "reason": f"{c.field} is not recorded in subjects.csv"}
        row = part.rows[sid]
        whole = (f" ({math.floor(v):g} completed years)" if c.field == "age_years" and part.whole_years
                 and float(v) != math.floor(v) else "")
        what = "age at infusion (study format) " if c.field == "age_years" else ""
        return {"cond": cond, "value": _fmt(v), "unit": "years" if c.field == "age_years" else None,
                "day": None, "evidence": _ref(row), "source": _src(row),
                "reason": f"{what}{c.field} = {_fmt(v)}{whole}, {'meets' if cond else 'does not meet'} {_target_text(c)}"}
    r = part.rows.get(sid)
    if c.event is not None:
        if r is not None:
            said = f"{c.event} recorded on day {r['day']:g}" + (f" ({r['detail']})" if r.get("detail") else "")
            if not c.event_decides:
                said += (f" in {wtxt}; the event alone does not decide '{c.text}'"
                         + (f": {c.event_note.strip()}" if c.event_note else ""))
            return {"cond": cond, "value": c.event, "unit": None, "day": r["day"], "evidence": _ref(r), "source": _src(r),
                    "reason": said}
        if c.absence_means_no:
            return {**nothing, "cond": cond, "reason": f"no {c.event} event recorded in {wtxt}"}
        return {**nothing, "reason": f"no {c.event} event recorded in {wtxt}; absence of a record is not evidence of "
                                     "absence (when the study records every event: set absence_means_no: true on this "
                                     "criterion in a copy of the protocol YAML and pass --protocol FILE; docs/protocol.md)"}
    label = c.param + (f" ({c.analyte})" if c.analyte else "")
    if r is None:
        return {**nothing, "reason": f"no {label} result in {wtxt}"}
    unit, found = part.unit, {"day": r["day"], "evidence": _ref(r), "source": _src(r)}

    def with_unit(x: str) -> str:  # "2" for a unitless value (ECOG), "34.2 umol/L" otherwise
        return f"{x} {unit}" if unit else x

    target = part.target
    if c.relative_to:
        ref = _ref_value(part, r)
        if ref is None:
            return _tied(part, sid, label, wtxt, cond, {
                **found, "cond": None, "value": _shown(r), "unit": unit,
                "reason": f"{label} {_as_recorded(r, unit)} on day {r['day']:g} but no {c.relative_to.upper()} "
                          "given for it"})
        target = [t * ref for t in target] if isinstance(target, list) else target * ref
    # the threshold in the value's unit, when it differs from the protocol's text (converted or a ULN multiple)
    shown = _fmt(target) if isinstance(target, list) else f"{target:.4g}"
    scaled = f" (= {with_unit(shown)})" if (c.unit and c.unit != unit) or c.relative_to else ""
    shown_target = _target_text(c) + scaled
    # a censored result ("<0.5"): the window named as for a value (review 40 B2); as recorded, then as
    # compared in the parameter's unit (review 47 F3)
    verdict = "meets" if cond else "does not meet" if cond is False else "cannot decide"
    sep = ":" if r["value"] is None else ","
    return _tied(part, sid, label, wtxt, cond, {
        **found, "cond": cond, "value": _shown(r), "unit": unit,
        "reason": f"{label} {_as_recorded(r, unit)} on day {r['day']:g} (last in {wtxt}){sep} {verdict} "
                  f"{shown_target}"})


def _tied(part: _Part, sid: str, label: str, wtxt: str, cond: bool | None, out: dict[str, Any]) -> dict[str, Any]:
    """``out`` for a subject whose last day has several values without a time of day (review 47 F4):
    each is tried; they agree (the criterion is decided, every row is evidence) or disagree (unknown,
    naming the rows and what each gives)."""
    rows = part.ties.get(sid)
    if not rows:
        return out
    truths = part.tie_truths.get(sid, [])
    word = {True: "meets", False: "does not meet", None: "cannot decide"}
    each = "; ".join(f"{_as_recorded(r, part.unit)} ({row_ref(r) or 'row ' + str(r['_i'] + 1)}): {word[t]}"
                     for r, t in zip(rows, truths))
    refs = unique_refs(x for r in rows for x in _ref(r))  # every row of that day, in file order
    day = rows[-1]["day"]
    if cond is None and len(set(truths)) > 1:
        return {**out, "cond": None, "value": ", ".join(_shown(r) for r in rows), "evidence": refs,
                "reason": f"{len(rows)} {label} values on day {day:g} without a time of day (last in {wtxt}; they "
                          f"have no order) disagree: {each}; not evaluable"}
    return {**out, "evidence": refs,
            "reason": out["reason"] + f" ({len(rows)} values on day {day:g} without a time of day, each tried: {each})"}


def _date(subject: dict, day: float | None) -> str | None:
    """The calendar date of study day ``day`` (day 0 = ``infusion_date`` / ``infusion_datetime``)."""
    import datetime as dt

    anchor = subject.get("infusion_date") or (subject.get("infusion_datetime") or "")[:10]
    if day is None or not anchor:
        return None
    try:
        d0 = dt.date.fromisoformat(anchor[:10])
    except ValueError:
        return None
    return (d0 + dt.timedelta(days=math.floor(day))).isoformat()


def _truths(study, protocol, ids: list[str], subjects: dict[str, dict],
            whole_years: bool = True, screening_end: str = "lymphodepletion",
            ld_course_tolerance_days: float | None = None) -> tuple[dict, list[dict[str, bool | None]]]:
    """Every criterion's parts (data gathered once per part for all subjects) and, per subject, the
    truth of every criterion and part (one evaluation of the compiled conditions; with several values
    of the last day without a time of day, one evaluation per value: a criterion they disagree on is
    unknown, review 47 F4)."""
    parts: dict[str, _Part] = {}
    conds, bindings = {}, {}
    ends, times, notes = (_course_ends(study, protocol, ld_course_tolerance_days) if screening_end != "fixed"
                          else (None, {}, {}))
    for n, c in enumerate(protocol.eligibility):
        key = f"c{n}"
        for part in _parts(c, protocol.screening_window, key, ends):
            part.whole_years = whole_years
            part.strict = screening_end == "day_before_lymphodepletion"
            part.notes = notes
            part.times = times if part.ends is not None else {}
            _gather(study, part, subjects)
            parts[k := part.key] = part
            if part.crit.param is not None:  # a result is a range (a censored one is not a point)
                bindings[k] = Range(f"{k}_lo", f"{k}_hi", f"{k}_lo_open", f"{k}_hi_open")
            conds[k] = _condition(part.crit, parts, k)
        if c.any_of:
            conds[key] = _condition(c, parts, key)
    if not conds:
        return parts, [{} for _ in ids]

    def evaluate(world: int | None) -> list[dict[str, bool | None]]:
        columns = {}
        for part in parts.values():
            if world is not None and part.ties:  # the world-th value of each tie (else the last row)
                part = replace(part, rows={**part.rows, **{sid: rs[min(world, len(rs) - 1)]
                                                          for sid, rs in part.ties.items()}})
            columns.update(_columns(part, ids))
        frame = pl.DataFrame(columns) if columns else pl.DataFrame({"_": [None] * len(ids)})
        compiler = Compiler(bindings=bindings, schema=frame.schema)
        return frame.select([compiler.truth(cond).alias(k) for k, cond in conds.items()]).to_dicts()

    out = evaluate(None)
    n_worlds = max((len(rs) for part in parts.values() for rs in part.ties.values()), default=0)
    if n_worlds:
        worlds = [evaluate(w) for w in range(n_worlds)]
        pos = {sid: i for i, sid in enumerate(ids)}
        for part in parts.values():
            for sid in part.ties:
                part.tie_truths[sid] = [w[pos[sid]][part.key] for w in worlds][:len(part.ties[sid])]
        for i, truth in enumerate(out):
            for k in truth:
                if any(w[i][k] != truth[k] for w in worlds):
                    truth[k] = None  # the values without an order disagree: not evaluable
    return parts, out


def derive_eligibility(study, protocol, subject_id: str | None = None,
                       age_whole_years: bool | None = None, screening_end: str = "lymphodepletion",
                       ld_course_tolerance_days: float | None = None) -> pl.DataFrame:
    """Every eligibility criterion of ``protocol`` for every subject (or one) of ``study``.

    Inclusion criteria pass when their condition holds; exclusion criteria pass when it does not.
    ``age_whole_years``: compare age limits in completed years (None = ``protocol.age_whole_years``,
    True by default; see the module docstring). ``screening_end``: ``lymphodepletion`` (default: the
    window ends on the day of the subject's first recorded lymphodepletion dose, else at its nominal
    end), ``day_before_lymphodepletion`` (the day before that dose) or ``fixed`` (the nominal end).
    ``ld_course_tolerance_days``: how many days the recorded lymphodepletion course may span beyond
    the planned span (None: 2 days, :data:`cartlab.protocol.ld_course.COURSE_TOLERANCE_DAYS`).
    """
    if screening_end not in SCREENING_ENDS:
        raise ValueError(f"screening_end must be one of {', '.join(SCREENING_ENDS)} (got {screening_end!r})")
    whole = protocol.age_whole_years if age_whole_years is None else bool(age_whole_years)
    ids = [subject_id] if subject_id is not None else study.subject_ids
    subjects = {r["subject_id"]: r for r in study.subjects.unique("subject_id", keep="first", maintain_order=True)
                .iter_rows(named=True)}
    for sid in ids:
        if sid not in subjects:
            raise ValueError(f"no subject {sid!r} in study {study.study_id!r}")
    parts, truths = _truths(study.subset(ids) if subject_id is not None else study, protocol, ids, subjects, whole,
                            screening_end, ld_course_tolerance_days)
    rows = []
    for sid, truth in zip(ids, truths):
        for n, c in enumerate(protocol.eligibility):
            e = _explain(c, parts, f"c{n}", sid, truth)
            cond = e["cond"]
            if cond is None:
                status = "unknown"
            elif c.kind == "inclusion":
                status = "pass" if cond else "fail"
            else:
                status = "fail" if cond else "pass"
            reason = e["reason"]
            if c.kind == "exclusion" and cond is not None:
                reason = ("excluded: " if cond else "not excluded: ") + reason
            if c.note:
                reason += f" [note: {c.note.strip()}]"
            rows.append({
                "subject_id": sid, "criterion_id": c.id, "kind": c.kind, "text": c.text, "status": status,
                "value": e["value"], "unit": e["unit"], "day": e["day"], "date": _date(subjects[sid], e["day"]),
                "reason": reason,
                "source": e.get("source"), "rule": _rule(protocol, c), "rule_status": None,
                "citation": c.citation, "evidence": e["evidence"],
            })
    from cartlab.criteria import with_rule_status
    from cartlab.criteria.status import register_rules

    register_rules(protocol.rule_infos())  # a protocol parsed from text, not loaded, too

    out = pl.DataFrame(rows, schema=ELIGIBILITY_SCHEMA, orient="row") if rows else pl.DataFrame(schema=ELIGIBILITY_SCHEMA)
    return with_rule_status(out.drop("rule_status")).select(list(ELIGIBILITY_SCHEMA))


def _windowed(c) -> bool:
    """The criterion reads a value chosen by the protocol's screening window (a param or event)."""
    if c.any_of:
        return any(_windowed(sub) for sub in c.any_of)
    return c.window is None and (c.param is not None or c.event is not None)


def _rule(protocol, c) -> str:
    """The criterion's rule, with ``<id>.screening_window`` when the window chose its value."""
    rule = f"{protocol.id}.eligibility.{c.id}"
    return rule + (f"; {protocol.id}.screening_window" if _windowed(c) else "")


def eligibility_verdict(screen: pl.DataFrame, trace: bool = False) -> pl.DataFrame:
    """Per subject: ``eligible`` (every criterion passes), ``not eligible`` (any fails, listed) or
    ``undetermined`` (none fails, some unknown, listed).

    ``trace``: also ``rule`` (the rules of the criteria that decide the verdict: the failed ones for
    "not eligible", the unknown ones for "undetermined", every one for "eligible"; '; '-separated,
    so ``rule_status`` is the least verified of them) and ``evidence`` (those criteria's source rows).
    """
    rows = []
    for sid, g in screen.group_by("subject_id", maintain_order=True):
        failed = g.filter(pl.col("status") == "fail")["criterion_id"].to_list()
        unknown = g.filter(pl.col("status") == "unknown")["criterion_id"].to_list()
        verdict = "not eligible" if failed else ("undetermined" if unknown else "eligible")
        row = {"subject_id": sid[0], "verdict": verdict, "n_pass": int((g["status"] == "pass").sum()),
               "n_fail": len(failed), "n_unknown": len(unknown),
               "failed": ", ".join(failed), "unknown": ", ".join(unknown)}
        if trace:
            deciding = g.filter(pl.col("status") == {"not eligible": "fail", "undetermined": "unknown"}.get(verdict, "pass"))
            # each rule id once (a criterion's rule is '; '-joined: review 40 C2)
            row["rule"] = "; ".join(dict.fromkeys(x for r in deciding["rule"].to_list() if r
                                                  for x in r.split("; "))) or None
            row["evidence"] = unique_refs(e for refs in deciding["evidence"].to_list() for e in (refs or ()))
        rows.append(row)
    schema = {"subject_id": pl.String, "verdict": pl.String, "n_pass": pl.Int64, "n_fail": pl.Int64,
              "n_unknown": pl.Int64, "failed": pl.String, "unknown": pl.String}
    if trace:
        schema |= {"rule": pl.String, "evidence": EVIDENCE}
    return pl.DataFrame(rows, schema=schema)


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
__getattr__ = renamed(__name__, screen_eligibility="derive_eligibility")
