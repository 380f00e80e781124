"""Vasopressor time course of the older CRS scales before issue 14 (commit 4f30e41), kept as an
oracle for tests/test_crs_legacy_vectorised.py (see crs_legacy_reference.py). Verbatim; do not "fix"."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from cartlab.grading.common import load_criteria
from cartlab.grading.vasopressors import TABLE as VASOPRESSOR_TABLE
from cartlab.grading.vasopressors import normalize_agent, vocabulary
from cartlab.units import UnitError, conversion

_EPS_H = 1e-9  # hours; durations are compared after rounding to this


def _ref(row: Mapping[str, Any]) -> str | None:
    f, r = row.get("src_file"), row.get("src_row")
    if f is None or r is None:
        return None
    return f"{f}:{r}"


def _cmp(x: float, op: str, v: float) -> bool:
    if op == ">=":
        return x >= v
    if op == ">":
        return x > v
    if op == "<=":
        return x <= v
    if op == "<":
        return x < v
    if op == "==":
        return x == v
    raise ValueError(f"unknown operator {op!r}")


def _precise(value: float, dt: Any) -> bool:
    """A time point known to better than a day: a fractional day or a datetime with a time."""
    if isinstance(dt, str) and re.search(r"\d[T ]\d", dt):  # session 35: as cartlab.io.clock.is_timed
        return True
    return value != math.floor(value)


def _hours(days: float) -> float:
    return round(days * 24.0, 9)


def _union(intervals: Iterable[tuple[float, float]], gap: float = 0.0) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1] + gap:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _overlap(intervals: Iterable[tuple[float, float]], lo: float, hi: float) -> float:
    return sum(max(0.0, min(b, hi) - max(a, lo)) for a, b in intervals)


# --------------------------------------------------------------------------------------------------
# vasopressor table


@dataclass
class _VasoRow:
    agent: str
    known: bool
    vasopressin: bool
    ne_factor: float | None
    rate: float | None  # in the agent's table unit
    rate_reason: str | None
    weight_ref: str | None
    s_lo: float
    s_hi: float
    e_lo: float
    e_hi: float
    days: range
    ref: str | None

    @property
    def inner(self) -> tuple[float, float] | None:
        return (self.s_hi, self.e_lo) if self.e_lo > self.s_hi else None

    @property
    def outer(self) -> tuple[float, float] | None:
        return (self.s_lo, self.e_hi) if self.e_hi > self.s_lo else None


def _vaso_table() -> dict[str, Any]:
    """Canonical drug -> table row (names resolved by :mod:`cartlab.grading.vasopressors`)."""
    return {"agents": vocabulary().agents, "high_dose": load_criteria(VASOPRESSOR_TABLE)["high_dose"]}


def _agent_rate(row: Mapping[str, Any], unit: str | None, weight: float | None) -> tuple[float | None, str | None, bool]:
    """Dose of an infusion row in ``unit`` -> (rate, reason when unknown, weight used)."""
    dose, dose_unit = row.get("dose"), row.get("dose_unit")
    if unit is None:
        return None, None, False
    if dose is None:
        return None, "vasopressor dose", False
    if not dose_unit:
        return None, "vasopressor dose unit", False
    u = str(dose_unit).replace("mcg", "ug").replace("µg", "ug").replace("μg", "ug")
    try:
        return dose * conversion(u, unit).scale, None, False
    except UnitError:
        pass
    per_kg_target = "/kg" in unit.replace(" ", "")
    other = unit.replace("/kg", "") if per_kg_target else unit.replace("/min", "/kg/min", 1)
    try:
        scale = conversion(u, other).scale
    except UnitError:
        return None, f"vasopressor dose unit {dose_unit!r} not convertible to {unit}", False
    if weight is None or not weight > 0:
        return None, "patient weight (subjects.weight_kg)", False
    return (dose * scale / weight if per_kg_target else dose * scale * weight), None, True


def _time_bounds(row: Mapping[str, Any], mode: str) -> tuple[float, float, float, float]:
    """(start_lo, start_hi, end_lo, end_hi) in days for an intervention row."""
    s, e = float(row["start_day"]), row.get("end_day")
    s_prec = _precise(s, row.get("start_datetime"))
    if e is not None:
        e = float(e)
        e_prec = _precise(e, row.get("end_datetime"))
        # session 35: an untimed end on the start's calendar day covers that day (spec: an intervention
        # covers start_day to end_day inclusive; the study reader and the engine accept it, e.g. a row
        # from day 0.5 to day 1 read from a start of 1.5); only an end on an earlier calendar day, or a
        # timed end before a timed start, is an error
        if math.floor(e) < math.floor(s) or (e < s and s_prec and e_prec):
            raise ValueError(
                f"intervention {_ref(row) or row.get('agent')}: end_day {e} is before start_day {s}")
    if mode == "full_days":
        s_lo = s_hi = s
        if e is None:
            e_lo, e_hi = (s, math.floor(s) + 1.0) if s_prec else (s + 1.0, s + 1.0)
        else:
            e_lo = e_hi = e if e_prec else e + 1.0
        return s_lo, s_hi, e_lo, e_hi
    s_lo, s_hi = (s, s) if s_prec else (s, s + 1.0)
    if e is None:  # "a single administration at the start time": duration unknown, within that day
        e_lo, e_hi = (s, math.floor(s) + 1.0) if s_prec else (s, s + 1.0)
    else:
        e_lo, e_hi = (e, e) if e_prec else (e, e + 1.0)
    return s_lo, s_hi, e_lo, e_hi


def _coverage(row: Mapping[str, Any]) -> range:
    s = row["start_day"]
    e = row.get("end_day")
    return range(math.floor(s), math.floor(e if e is not None else s) + 1)


def _segment_status(active: list[_VasoRow], hd: Mapping[str, Any]):
    """Lee 2014 high-dose situation for a set of concurrently running infusions.

    Returns (status True/False/None, rule id, unknown reasons, NE-eq lower bound, NE-eq complete).
    """
    vp = [r for r in active if r.vasopressin]
    nv: dict[str, list[_VasoRow]] = defaultdict(list)
    for r in active:
        if not r.vasopressin:
            nv[r.agent].append(r)
    ne, complete, reasons = 0.0, True, []
    for agent, rows in nv.items():
        for r in rows:
            if r.ne_factor is None:
                complete = False
                reasons.append(f"norepinephrine equivalent of {agent!r} (not in vasopressor table)")
            elif r.rate is None:
                complete = False
                reasons.append(r.rate_reason or "vasopressor dose")
            else:
                ne += r.ne_factor * r.rate
    if not active:
        return False, None, [], 0.0, True
    situation = "with_vasopressin" if vp else ("monotherapy" if len(nv) == 1 else "combination")
    for row in hd["rows"]:
        if row["applies"] != situation:
            continue
        if situation == "monotherapy" and normalize_agent(row["agent"]) != next(iter(nv)):
            continue
        if row["measure"] == "dose":
            rows = next(iter(nv.values()))
            known = [r.rate for r in rows if r.rate is not None]
            total = sum(known)
            if len(known) == len(rows):
                return _cmp(total, row["op"], row["value"]), row["id"], [], ne, complete
            if row["op"] in (">=", ">") and _cmp(total, row["op"], row["value"]):
                return True, row["id"], [], ne, complete
            return None, row["id"], [r.rate_reason or "vasopressor dose" for r in rows if r.rate is None], ne, complete
        if complete:
            return _cmp(ne, row["op"], row["value"]), row["id"], [], ne, complete
        if row["op"] in (">=", ">") and _cmp(ne, row["op"], row["value"]):
            return True, row["id"], [], ne, complete
        return None, row["id"], reasons, ne, complete
    # no row of the table applies (e.g. monotherapy with an agent the table does not list)
    agent = next(iter(nv)) if nv else "vasopressin"
    return None, None, [f"high-dose threshold for {agent!r} (not in vasopressor table)"], ne, complete


def _sweep(intervals: list[tuple[float, float, _VasoRow]], hd: Mapping[str, Any]):
    """Time segments of constant infusion sets: (t0, t1, status, rule, reasons, ne, complete)."""
    pts = sorted({p for a, b, _ in intervals for p in (a, b)})
    segs = []
    for t0, t1 in pairwise(pts):
        active = [r for a, b, r in intervals if a <= t0 and b >= t1]
        if active:
            segs.append((t0, t1, *_segment_status(active, hd)))
    return segs


def _runs(segs, accept) -> list[tuple[float, float, list]]:
    """Maximal contiguous runs of segments whose status is in ``accept``."""
    runs: list[list] = []
    for t0, t1, st, rule, reasons, *_ in segs:
        if st not in accept:
            continue
        if runs and abs(runs[-1][1] - t0) < 1e-12:
            runs[-1][1] = t1
            runs[-1][2].append((st, rule, reasons))
        else:
            runs.append([t0, t1, [(st, rule, reasons)]])
    return [(a, b, info) for a, b, info in runs]


def _high_dose_by_day(rows: list[_VasoRow], days: Iterable[int], hd: Mapping[str, Any]):
    """Per day: (status, rule id, reasons) of the Lee 2014 high-dose rule, both time scenarios."""
    min_h = float(hd["min_duration_hours"])
    scen = {}
    for name in ("inner", "outer"):
        ivs = [(*getattr(r, name), r) for r in rows if getattr(r, name) is not None]
        segs = _sweep(ivs, hd)
        sure = [x for x in _runs(segs, {True}) if _hours(x[1] - x[0]) >= min_h - _EPS_H]
        maybe = [x for x in _runs(segs, {True, None}) if _hours(x[1] - x[0]) >= min_h - _EPS_H]
        scen[name] = (segs, sure, maybe)
    out = {}
    for d in days:
        status, rule, reasons = {}, None, []
        for name, (segs, sure, maybe) in scen.items():
            hit = [x for x in sure if x[0] < d + 1 and x[1] > d]
            if hit:
                status[name] = True
                rule = rule or next((i[1] for i in hit[0][2] if i[1]), None)
                continue
            poss = [x for x in maybe if x[0] < d + 1 and x[1] > d]
            if poss:
                status[name] = None
                for _, _, info in poss:
                    for st, rl, rs in info:
                        if st is None:
                            reasons.extend(rs)
                            rule = rule or rl
            else:
                status[name] = False
        if status["inner"] is True and status["outer"] is True:
            out[d] = (True, rule, [])
        elif status["inner"] is False and status["outer"] is False:
            out[d] = (False, None, [])
        else:
            if status["inner"] != status["outer"] and not reasons:
                reasons = ["vasopressor duration (times known to the day only, or end not recorded)"]
            out[d] = (None, rule, sorted(set(reasons)))
    # NE-equivalent actually running that day (widest time scenario)
    ne_by_day = {}
    for d in days:
        vals = [(ne, comp) for t0, t1, st, rule, rs, ne, comp in scen["outer"][0] if t0 < d + 1 and t1 > d]
        if vals:
            ne_by_day[d] = (max(v for v, _ in vals), all(c for _, c in vals))
    return out, ne_by_day
