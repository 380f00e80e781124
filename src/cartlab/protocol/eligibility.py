"""Eligibility screening: each criterion of a protocol evaluated against a subject's data.

:func:`screen_eligibility` is a pure function ``(study, protocol) -> polars.DataFrame`` with one
row per subject and criterion: the value used, its day, ``status`` (``pass`` / ``fail`` /
``unknown``), the reason in words and the source rows (``evidence``). It never guesses: a missing
value, a censored value that cannot decide the criterion, a missing ULN, a criterion that needs the
source documents (``manual``) all give ``unknown`` with the reason.

Screening values are the last ones recorded in the criterion's window (default: the protocol's
``screening_window``, in days relative to day 0, both ends inclusive).
"""

from __future__ import annotations

import math
import operator
from typing import Any

import polars as pl

from cartlab.grading.common import EVIDENCE

__all__ = ["screen_eligibility", "eligibility_verdict", "ELIGIBILITY_SCHEMA"]

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
    "citation": pl.String,
    "evidence": EVIDENCE,
}

_CMP = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
        "==": operator.eq, "!=": operator.ne}


def _holds(op: str, value: Any, target: Any) -> bool:
    if op in _CMP:
        return bool(_CMP[op](value, target))
    if op == "between":
        return target[0] <= value <= target[1]
    if op == "in":
        return value in target
    if op == "not_in":
        return value not in target
    raise ValueError(f"unknown operator {op!r}")


def _interval_holds(op: str, lo: float, hi: float, lo_open: bool, hi_open: bool, target: Any) -> bool | None:
    """Three-valued: does ``x op target`` hold for every x in the interval (True), none (False), or
    some (None)? Used for censored results such as ``<0.5``."""
    if op == "between":
        a, b = target
        if lo >= a and hi <= b:
            return True
        if hi < a or lo > b or (hi == a and hi_open) or (lo == b and lo_open):
            return False
        return None
    if op not in ("<", "<=", ">", ">="):
        return None
    t = float(target)
    # every value in the interval satisfies x op t?
    if op in ("<", "<="):
        all_ok = hi < t or (hi == t and (op == "<=" or hi_open))
        none_ok = lo > t or (lo == t and (op == "<" or lo_open)) if math.isfinite(lo) else False
    else:
        all_ok = lo > t or (lo == t and (op == ">=" or lo_open))
        none_ok = hi < t or (hi == t and (op == ">" or hi_open)) if math.isfinite(hi) else False
    return True if all_ok else (False if none_ok else None)


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


class _Subject:
    def __init__(self, study, subject_id: str):
        self.id = subject_id
        subs = study.subjects.filter(pl.col("subject_id") == subject_id)
        self.row = subs.row(0, named=True) if subs.height else {}
        self.obs = study.observations.filter(pl.col("subject_id") == subject_id)
        self.events = study.events.filter(pl.col("subject_id") == subject_id)


def _src(r: dict) -> str | None:
    return r.get("source") or None


def _ref(r: dict) -> list[str]:
    return [f"{r['src_file']}:{r['src_row']}"] if r.get("src_file") else []


def _evaluate(c, s: _Subject, window: tuple[float, float]) -> dict[str, Any]:
    """{cond: True/False/None, value, unit, day, reason, evidence} for one criterion's condition."""
    from cartlab.io.dictionary import load_dictionary

    lo, hi = c.window or window
    wtxt = f"days {lo:g} to {hi:g}"
    if c.any_of:
        parts = [_evaluate(sub, s, c.window or window) for sub in c.any_of]
        conds = [p["cond"] for p in parts]
        cond = True if any(x is True for x in conds) else (False if all(x is False for x in conds) else None)
        reason = " OR ".join(f"[{sub.text}: {p['reason']}]" for sub, p in zip(c.any_of, parts))
        chosen = next((p for p in parts if p["cond"] is True), parts[0])
        return {**chosen, "cond": cond, "reason": reason,
                "evidence": [e for p in parts for e in p["evidence"]]}
    if c.manual:
        return {"cond": None, "value": None, "unit": None, "day": None, "evidence": [],
                "reason": "not decidable from the study data: check the source documents"}
    if c.field is not None:
        v = s.row.get(c.field)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return {"cond": None, "value": None, "unit": None, "day": None, "evidence": [],
                    "reason": f"{c.field} is not recorded in subjects.csv"}
        ok = _holds(c.op, v, c.value)
        return {"cond": ok, "value": _fmt(v), "unit": "years" if c.field == "age_years" else None,
                "day": None, "evidence": _ref(s.row), "source": _src(s.row),
                "reason": f"{c.field} = {_fmt(v)}, {'meets' if ok else 'does not meet'} {_target_text(c)}"}
    if c.event is not None:
        ev = s.events.filter((pl.col("event") == c.event) & pl.col("day").is_between(lo, hi))
        if ev.height:
            r = ev.sort("day").row(-1, named=True)
            return {"cond": True, "value": c.event, "unit": None, "day": r["day"], "evidence": _ref(r), "source": _src(r),
                    "reason": f"{c.event} recorded on day {r['day']:g}" + (f" ({r['detail']})" if r.get("detail") else "")}
        if c.absence_means_no:
            return {"cond": False, "value": None, "unit": None, "day": None, "evidence": [],
                    "reason": f"no {c.event} event recorded in {wtxt}"}
        return {"cond": None, "value": None, "unit": None, "day": None, "evidence": [],
                "reason": f"no {c.event} event recorded in {wtxt}; absence of a record is not evidence of absence "
                          "(set absence_means_no: true when the study records every event)"}
    # observation param
    p = load_dictionary()[c.param]
    obs = s.obs.filter((pl.col("param") == c.param) & pl.col("day").is_between(lo, hi)
                       & (pl.col("value").is_not_null() | pl.col("censor").is_not_null()))
    if c.analyte is not None:
        obs = obs.filter(pl.col("analyte") == c.analyte)
    label = c.param + (f" ({c.analyte})" if c.analyte else "")
    if obs.height == 0:
        return {"cond": None, "value": None, "unit": None, "day": None, "evidence": [],
                "reason": f"no {label} result in {wtxt}"}
    r = obs.with_row_index("_i").sort(["day", "_i"]).row(-1, named=True)
    unit = p.unit
    if c.relative_to:
        ref = r.get(c.relative_to)
        if ref is None or not ref > 0:
            shown = _fmt(r["value"]) if r["value"] is not None else r["value_text"]
            return {"cond": None, "value": shown, "unit": unit, "day": r["day"], "evidence": _ref(r), "source": _src(r),
                    "reason": f"{label} {shown} {unit} on day {r['day']:g} but no {c.relative_to.upper()} given for it"}
        scale = float(ref)
    else:
        scale = 1.0
    target = c.value
    if c.unit is not None and isinstance(target, (int, float, list)):
        conv = p.conversion_from(c.unit)
        target = ([conv.scale * float(t) + conv.offset for t in target] if isinstance(target, list)
                  else conv.scale * float(target) + conv.offset)
    if isinstance(target, list):
        target = [t * scale for t in target] if c.relative_to else target
    elif isinstance(target, (int, float)):
        target = float(target) * scale
    shown_target = _target_text(c) + (f" (= {target:.4g} {unit})" if not isinstance(target, list) else f" (= {_fmt(target)} {unit})" if (c.unit and c.unit != unit) or c.relative_to else "")
    if r["value"] is None:  # censored, e.g. "<0.5"
        lim = r["censor_limit"]
        cz = r["censor"]
        lo_v, hi_v = (-math.inf, lim) if cz in ("<", "<=") else (lim, math.inf)
        cond = _interval_holds(c.op, lo_v, hi_v, cz == ">", cz == "<", target)
        txt = f"{r['value_text']} {unit}"
        reason = (f"{label} {txt} on day {r['day']:g}: " + ("meets" if cond else "does not meet" if cond is False
                  else "cannot decide") + f" {shown_target}")
        return {"cond": cond, "value": r["value_text"], "unit": unit, "day": r["day"], "evidence": _ref(r), "source": _src(r), "reason": reason}
    v = float(r["value"])
    ok = _holds(c.op, v, target)
    reason = (f"{label} {v:g} {unit} on day {r['day']:g} (last in {wtxt}), "
              f"{'meets' if ok else 'does not meet'} {shown_target}")
    return {"cond": ok, "value": _fmt(v), "unit": unit, "day": r["day"], "evidence": _ref(r), "source": _src(r), "reason": reason}


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


def screen_eligibility(study, protocol, subject_id: str | None = None) -> pl.DataFrame:
    """Every eligibility criterion of ``protocol`` for every subject (or one) of ``study``.

    Inclusion criteria pass when their condition holds; exclusion criteria pass when it does not.
    """
    ids = [subject_id] if subject_id is not None else study.subject_ids
    rows = []
    for sid in ids:
        s = _Subject(study, sid)
        if not s.row:
            raise ValueError(f"no subject {sid!r} in study {study.study_id!r}")
        for c in protocol.eligibility:
            e = _evaluate(c, s, protocol.screening_window)
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
                "value": e["value"], "unit": e["unit"], "day": e["day"], "date": _date(s.row, e["day"]),
                "reason": reason,
                "source": e.get("source"), "rule": f"{protocol.id}.eligibility.{c.id}", "citation": c.citation, "evidence": e["evidence"],
            })
    return pl.DataFrame(rows, schema=ELIGIBILITY_SCHEMA, orient="row") if rows else pl.DataFrame(schema=ELIGIBILITY_SCHEMA)


def eligibility_verdict(screen: pl.DataFrame) -> pl.DataFrame:
    """Per subject: ``eligible`` (every criterion passes), ``not eligible`` (any fails, listed) or
    ``undetermined`` (none fails, some unknown, listed)."""
    rows = []
    for sid, g in screen.group_by("subject_id", maintain_order=True):
        failed = g.filter(pl.col("status") == "fail")["criterion_id"].to_list()
        unknown = g.filter(pl.col("status") == "unknown")["criterion_id"].to_list()
        verdict = "not eligible" if failed else ("undetermined" if unknown else "eligible")
        rows.append({"subject_id": sid[0], "verdict": verdict, "n_pass": int((g["status"] == "pass").sum()),
                     "n_fail": len(failed), "n_unknown": len(unknown),
                     "failed": ", ".join(failed), "unknown": ", ".join(unknown)})
    return pl.DataFrame(rows, schema={"subject_id": pl.String, "verdict": pl.String, "n_pass": pl.Int64,
                                      "n_fail": pl.Int64, "n_unknown": pl.Int64, "failed": pl.String,
                                      "unknown": pl.String})
