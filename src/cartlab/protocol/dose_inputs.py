"""The inputs of a study subject's dose plan, read from its data (review 39, split out of
:mod:`cartlab.protocol.dosing` / :mod:`cartlab.protocol.deviations`).

* :func:`screening_creatinine` - the screening creatinine: the last CREAT row in the screening window,
  numeric or censored ("<20" in value_text is a bound, never skipped for an older value); several
  values on that last day without a time of day have no order (the study reader's convention), so
  every one is a candidate.
* :func:`plan_over_candidates` - a plan whose renal rules hold for every candidate creatinine (the
  censored value's whole range, or every same-day value): the band they share, else not evaluable
  naming the rows.
* :func:`subject_body_size` - weight and height: subjects.csv (study-format.md: "at
  lymphodepletion; needed for dosing"); when blank there, the latest WEIGHT / HEIGHT observation on
  or before the first lymphodepletion day (converted by the reader with pint), named as such; a
  warning when both exist and differ by more than 5 %.
* :func:`parse_quantity` - ``--weight 154 lb`` / ``--height 5 ft 6 in`` with pint.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any

import polars as pl

from cartlab.provenance import row_ref

__all__ = ["screening_creatinine", "plan_over_candidates", "subject_body_size", "study_weights", "study_body_sizes",
           "parse_quantity",
           "BODY_SIZE_DISCREPANCY_PCT", "CENSOR_LIMIT_FACTOR"]

#: subjects.csv and the latest observation differing by more than this (%) give a warning (lead's decision)
BODY_SIZE_DISCREPANCY_PCT = 5.0
#: a censored creatinine "<x" spans (0, x): its renal measure spans (f(x), inf). The other end is
#: evaluated at x / 1000 (a measure 1000 x f(x), above every band bound); ">x" at 1000 x (measure
#: f(x) / 1000). Renal bands are intervals and the measures are monotonic in creatinine, so the two
#: ends in the same band mean the whole range is in it.
CENSOR_LIMIT_FACTOR = 1000.0


def _in_window(lo: float, hi: float) -> pl.Expr:
    cal = (pl.col("day") + 1e-9).floor()
    return (cal >= lo) & (cal <= hi)


def _fmt(x: float) -> str:
    return f"{x:g}"


def screening_creatinine(obs: pl.DataFrame, protocol, given_first_ld: float | None = None,
                         first_ld_time: float | None = None) -> dict[str, Any]:
    """The screening creatinine of one subject's observations (see the module docstring).
    ``first_ld_time``: the first lymphodepletion dose's time (a fractional day) when it has one: a
    creatinine timed after it on that day is not a screening value, as eligibility reads it (review 47
    F6; an untimed value of that day counts).

    Returns ``value, unit, day, ref, note`` (the value used to print and compute CrCl / eGFR: the
    number, or a censored row's bound), ``candidates`` (tuple of ``(value, unit, ref, label)``; more
    than one when the value is censored or the last day has several untimed values), ``reason``
    (why there are several). ``value`` None: ``note`` says why (none in the window; an older value
    is stale)."""
    first_ld = given_first_ld if given_first_ld is not None else protocol.first_lymphodepletion_day
    lo, hi = protocol.screening_window[0], (first_ld if first_ld is not None else 0.0)
    has_censor = "censor_limit" in obs.columns
    usable = pl.col("value").is_not_null()
    if has_censor:
        usable = usable | pl.col("censor_limit").is_not_null()
    c = obs.filter((pl.col("param") == "CREAT") & usable).sort("day", maintain_order=True)
    inside = c.filter(_in_window(lo, hi))
    if first_ld_time is not None and inside.height:
        from cartlab.io.clock import is_timed

        after = (is_timed("day", "datetime" if "datetime" in inside.columns else None)
                 & ((pl.col("day") + 1e-9).floor() == math.floor(first_ld_time + 1e-9)) & (pl.col("day") > first_ld_time))
        inside = inside.filter(~after)
    out: dict[str, Any] = {"value": None, "unit": None, "day": None, "ref": None, "note": None,
                           "candidates": (), "reason": None}
    if not inside.height:
        why = f"none recorded on days {lo:g} to {hi:g}" + (" (the first lymphodepletion dose given)"
                                                           if given_first_ld is not None else "")
        before = c.filter((pl.col("day") + 1e-9).floor() < lo)
        if before.height:
            why += f"; the last before, on day {before['day'][-1]:g}, is outside the screening window"
        out["note"] = why
        return out
    from cartlab.io.clock import is_timed

    timed = is_timed("day", "datetime" if "datetime" in inside.columns else None)
    inside = inside.with_columns(timed.alias("__timed"))
    last = inside.row(-1, named=True)
    # the last day's values known to the day only have no order (the reader's convention): all are candidates
    same = inside.filter((pl.col("day") == last["day"]) & ~pl.col("__timed")) if not last["__timed"] else inside.tail(1)
    rows = same.to_dicts()
    cands: list[tuple[float, str, str | None, str]] = []
    for r in rows:
        ref = row_ref(r)
        if r["value"] is not None:
            cands.append((float(r["value"]), r["unit"], ref, f"{_fmt(r['value'])} {r['unit']}"))
        else:
            cens, x = r.get("censor") or "<", float(r["censor_limit"])
            far = x / CENSOR_LIMIT_FACTOR if cens.startswith("<") else x * CENSOR_LIMIT_FACTOR
            label = f"{cens}{_fmt(x)} {r['unit']}"
            cands += [(x, r["unit"], ref, label), (far, r["unit"], ref, f"{label} (the far end of its range)")]
    distinct = {(v, u) for v, u, _, _ in cands}
    main = cands[-1] if rows[-1]["value"] is not None else cands[-2]  # the later row's value (or bound)
    out.update(value=main[0], unit=main[1], day=float(last["day"]), ref=main[2])
    refs = ", ".join(dict.fromkeys(ref for _, _, ref, _ in cands if ref))
    if len(rows) > 1 and len({(r["value"], r.get("censor_limit")) for r in rows}) > 1:
        labels = ", ".join(dict.fromkeys(lbl for _, _, _, lbl in cands if "far end" not in lbl))
        out["reason"] = (f"{len(rows)} creatinine values on day {last['day']:g} without a time of day ({labels}; "
                         f"{refs}): they have no order")
        out["ref"] = refs
    elif len(distinct) > 1:
        out["reason"] = f"the creatinine of day {last['day']:g} is censored ({cands[0][3]}, {refs})"
    if len(distinct) > 1:
        out["candidates"] = tuple(cands)
    out["censor"] = next((r.get("censor") for r in rows if r["value"] is None), None)
    return out


def _renal_key(row: dict[str, Any]) -> tuple:
    return (row["status"], row["rule"], row["factor"])


def plan_over_candidates(protocol, patient, options, plan_fn) -> pl.DataFrame:
    """The dose plan when the screening creatinine has several candidates (``patient.creatinine_
    candidates``): ``plan_fn(patient)`` for each; a renal-adjusted row whose band is the same for
    every candidate keeps it (its reason names the rows and the bound), one whose bands differ is
    not evaluable naming the rows (review 39 A1, B9). Other rows do not read the creatinine."""
    reason = patient.creatinine_reason or "several creatinine values"
    plans = []
    for value, unit, ref, label in patient.creatinine_candidates:
        extra = {}
        if "far end" in label:  # the limit of a censored range: outside the plausibility limits on purpose
            lim = {**options.plausibility, "creatinine_mg_dl": {"low": 0.0, "high": math.inf}}
            extra["_opts"] = replace(options, plausibility=lim)
        p = replace(patient, creatinine=value, creatinine_unit=unit, creatinine_ref=ref,
                    creatinine_candidates=(), creatinine_reason=None)
        plans.append((label, plan_fn(p, extra.get("_opts", options))))
    # the row values of the main candidate (the later row's value, or the censored bound)
    main_i = next(i for i, c in enumerate(patient.creatinine_candidates)
                  if c[0] == patient.creatinine and c[1] == patient.creatinine_unit)
    base = plans[main_i][1]
    refs = [r for r in dict.fromkeys(c[2] for c in patient.creatinine_candidates) if r]
    rows = base.to_dicts()
    for i, row in enumerate(rows):
        if row["kind"] != "lymphodepletion" or ".renal" not in (row["rule"] or ""):
            continue
        keys = {_renal_key(p.row(i, named=True)) for _, p in plans}
        row["evidence"] = list(dict.fromkeys([*(row["evidence"] or []), *refs]))
        if len(keys) == 1:
            note = f"{reason}: the same renal band for every value it may be"
            row["renal_basis"] = "; ".join(x for x in (note, row.get("renal_basis")) if x)
            if row["adjustment"]:
                row["adjustment"] = f"{row['adjustment']} [{note}]"
            continue
        options_txt = "; ".join(
            f"{lbl}: " + (p.row(i, named=True)["adjustment"] or p.row(i, named=True)["renal_basis"] or
                          p.row(i, named=True)["status"])
            for lbl, p in plans)
        doses = " or ".join(dict.fromkeys(
            "withhold" if p.row(i, named=True)["dose"] is None else f"{p.row(i, named=True)['dose']:.6g} mg"
            for _, p in plans))
        row.update(status="not_evaluable", dose=None, needs="one creatinine",
                   basis=f"{row['basis'].split(' x ')[0]} — NOT EVALUABLE (needs one creatinine: {reason})",
                   adjustment=f"NOT EVALUABLE: {reason}; the renal bands differ ({options_txt}): {doses}",
                   renal_basis=f"NOT EVALUABLE: {reason}", renal_value=None, factor=None)
    return pl.DataFrame(rows, schema=base.schema, orient="row")


def subject_body_size(obs: pl.DataFrame, sub: dict[str, Any], first_ld: float | None,
                      screening_lo: float | None = None) -> dict[str, Any]:
    """``weight_kg, height_cm`` and, per measure, its source (``weight_source``: subjects.csv row or
    the observation's day and row), plus ``warnings`` (subjects.csv vs the latest observation
    differing by more than :data:`BODY_SIZE_DISCREPANCY_PCT`) and the observation rows used
    (``refs``).

    A WEIGHT/HEIGHT observation counts from ``screening_lo`` (the protocol's screening window start,
    as the screening creatinine: review 39 B1; None = any earlier day) up to the first lymphodepletion
    day (spec: ``weight_kg, height_cm`` "at lymphodepletion; needed for dosing"); an older one is not
    used and the source says so. Used by the protocol commands, the twin and Stein's dose covariate
    (review 39 B4: one lookup)."""
    hi = first_ld if first_ld is not None else 0.0
    out: dict[str, Any] = {"warnings": [], "refs": []}
    for param, col, unit, name in (("WEIGHT", "weight_kg", "kg", "weight"), ("HEIGHT", "height_cm", "cm", "height")):
        given = sub.get(col)
        o = obs.filter((pl.col("param") == param) & pl.col("value").is_not_null()
                       & ((pl.col("day") + 1e-9).floor() <= hi)).sort("day", maintain_order=True)
        older = None
        if screening_lo is not None:
            cal = (pl.col("day") + 1e-9).floor()
            older = o.filter(cal < screening_lo)
            older = older.row(-1, named=True) if older.height else None
            o = o.filter(cal >= screening_lo)
        last = o.row(-1, named=True) if o.height else None
        src = None
        if last is not None:
            orig = (f" ({last['orig_value']:g} {last['orig_unit']})"
                    if last.get("orig_unit") not in (None, unit) and last.get("orig_value") is not None else "")
            src = f"{param} {last['value']:.5g} {unit}{orig} of day {last['day']:g} ({row_ref(last)})"
        if given is not None:
            out[col], out[f"{name}_source"] = float(given), f"subjects.csv ({row_ref(sub)})"
            if last is not None and abs(last["value"] - given) > BODY_SIZE_DISCREPANCY_PCT / 100 * given:
                out["warnings"].append(
                    f"WARNING: {name} {given:g} {unit} of subjects.csv ({row_ref(sub)}) is used; the latest {src} "
                    f"differs by more than {BODY_SIZE_DISCREPANCY_PCT:g}% (give the weight at lymphodepletion "
                    "in subjects.csv)")
        elif last is not None:
            out[col], out[f"{name}_source"] = float(last["value"]), src + ", subjects.csv blank"
            out["refs"].append(row_ref(last))
        else:
            blank = "blank in subjects.csv" if col in sub else f"subjects.csv has no {col} column"
            span = f"on days {screening_lo:g} to {hi:g}" if screening_lo is not None else f"up to day {hi:g}"
            why = f"{blank} and no {param} observation {span}"
            if older is not None:  # the same wording as the screening creatinine's
                why += (f"; the last {param}, day {older['day']:g} ({row_ref(older)}), is outside the screening "
                        f"window (days {screening_lo:g} to {hi:g}): not used")
            out[col], out[f"{name}_source"] = None, why
    return out


def study_weights(study, ids=None, screening_lo: float | None = None) -> dict[str, tuple[float | None, str]]:
    """Per subject: (weight in kg or None, its source) by :func:`study_body_sizes`."""
    return {sid: (z["weight_kg"], z["weight_source"]) for sid, z in study_body_sizes(study, ids, screening_lo).items()}


def study_body_sizes(study, ids=None, screening_lo: float | None = None) -> dict[str, dict[str, Any]]:
    """Per subject: :func:`subject_body_size` (``weight_kg``, ``height_cm`` and their sources):
    subjects.csv, else the last WEIGHT / HEIGHT observation on or before day 0. The rule the protocol
    commands apply, but with no screening window unless ``screening_lo`` is given: the twin and Stein's
    dose covariate have no protocol (review 39 B4, diff1 B5), so a weight of any earlier day is used and
    its source names the day."""
    subs = study.subjects
    if ids is not None:
        subs = subs.filter(pl.col("subject_id").is_in(list(ids)))
    obs = study.observations
    if "param" in obs.columns:
        obs = obs.filter(pl.col("param").is_in(["WEIGHT", "HEIGHT"]))
    by = {k[0]: v for k, v in obs.partition_by("subject_id", as_dict=True).items()} if obs.height else {}
    out: dict[str, dict[str, Any]] = {}
    for r in subs.iter_rows(named=True):
        out[r["subject_id"]] = subject_body_size(by.get(r["subject_id"], obs.clear()), r, None, screening_lo)
    return out


#: the accepted forms named when a unit is not understood (review 41 F9)
_EXAMPLES = {"height": "5 ft 7 in, 67 in or 170 cm", "weight": "154 lb, 10 lb 4 oz or 70 kg"}

_NUM_UNIT = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z].*)?$")


def parse_quantity(text: str | float | None, unit: str, what: str) -> tuple[float | None, str | None]:
    """``(value in unit, note)`` of a command-line weight/height: a bare number is in ``unit``
    (note "kg (assumed: no unit given)"); "154 lb", "5 ft 6 in", "1.68 m" are converted with pint
    (note "= 70 kg (154 lb)") and rounded to 12 significant digits (:func:`~cartlab.protocol.dosing.round_sig`:
    pint's 5 ft is 152.39999999999998 cm); several parts only with distinct units, each smaller than the one before
    and each part less than one of it (5 ft 6 in; not "70 kg 154 lb"). :class:`ValueError` for text that is not a quantity of that kind."""
    if text is None:
        return None, None
    if isinstance(text, (int, float)):
        return float(text), f"{unit} (assumed: no unit given)"
    s = str(text).strip()
    m = _NUM_UNIT.match(s)
    if m and not m.group(2):
        return float(m.group(1)), f"{unit} (assumed: no unit given)"
    from cartlab.units import ureg

    parts = re.findall(r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z\"']+)", s)
    if not parts or re.sub(r"[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?\s*[A-Za-z\"']+", "", s).strip():
        raise ValueError(f"--{what} {s!r}: give a number and a unit, e.g. 70 kg, 154 lb, 168 cm, 5 ft 6 in")
    total, sizes, vals = 0.0, [], []
    for num, u in parts:
        try:
            vals.append(ureg.Quantity(float(num), u).to(unit).magnitude)
            total += vals[-1]
            sizes.append(ureg.Quantity(1, u).to(unit).magnitude)
        except Exception as exc:  # pint: undefined unit or wrong dimension
            # pint's message can be empty ("5'7\"": review 41 F9): name the accepted forms instead
            why = f" ({exc})" if str(exc).strip() else ""
            raise ValueError(f"--{what} {s!r}: {u!r} is not a unit of {what}{why}; use e.g. "
                             f"{_EXAMPLES.get(what, '70 kg or 170 cm')}") from None
    # several parts only as a compound of distinct, decreasing units, each part less than one of the unit
    # before it (5 ft 6 in, 10 lb 4 oz): "70 kg 154 lb" is a weight pasted with its conversion, not a sum
    # (review 39 diff2 B2)
    if any(b >= a or v >= a for a, b, v in zip(sizes, sizes[1:], vals[1:])):
        raise ValueError(f"--{what} {s!r}: one quantity, or a compound of decreasing units such as 5 ft 6 in "
                         "(the parts are added up)")
    # rounded to 12 significant digits as the study reader rounds every converted value: pint gives
    # 5 ft = 152.39999999999998 cm, which must not fall below Devine's 60-inch floor (review 41 F1)
    from cartlab.protocol.dosing import round_sig

    return round_sig(total), f"{unit} ({s})"
