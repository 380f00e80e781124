"""Molecular MRD relapse after a response (review 47 F1; option ``mrd_relapse_methods``), one marker at
a time, for :func:`cartlab.response.relapse_episodes.derive_relapse`.

A marker is a param of ``molecular_mrd_relapse.params`` (response_rules.yaml: FUSION, MOLAR, MOLVAF) with
its ``analyte`` and specimen (a row without a specimen is read as marrow, as the flow MRD relapse reads
it). Only results while in CR/CRh/CRi count: from the episode's first CR/CRh/CRi assessment's calendar
day to its hematologic relapse day (exclusive, as the flow MRD relapse). Two rules (response_rules.yaml,
status unverified: ELN 2021 MRD, Heuser et al., Blood 2021;138:2753, wording not read):

* ``response.mrd_relapse_molecular``: the first positive result after an undetectable / below-LLOQ one,
  confirmed as the flow rule confirms (option ``mrd_relapse_confirm``, ``mrd_relapse_confirm_within_days``);
* ``response.mrd_relapse_molecular_rise``: a >= 1 log10 rise between two positive quantified samples.

With ``mrd_relapse_methods`` "flow" (default) the same search only names what it found, as "not assessed
for MRD relapse" (the flow MRD relapse reason must not say "no conversion" when a marker converted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from cartlab.criteria import load_raw
from cartlab.provenance import row_ref

__all__ = ["MOLECULAR_RELAPSE_RULE", "MOLECULAR_RISE_RULE", "MolecularRelapse", "molecular_mrd_relapse",
           "confirm_gap_text"]

MOLECULAR_RELAPSE_RULE, MOLECULAR_RISE_RULE = "response.mrd_relapse_molecular", "response.mrd_relapse_molecular_rise"
_REMISSION = ("CR", "CRh", "CRi")


def _settings() -> dict[str, Any]:
    return load_raw("response_rules", "cartlab.response")["molecular_mrd_relapse"]


def marker_params() -> tuple[str, ...]:
    """The params read as molecular MRD markers for an MRD relapse (response_rules.yaml)."""
    return tuple(_settings()["params"])


def confirm_gap_text(gap: float, within: float) -> str:
    """The reason's note on a confirming sample too late (option mrd_relapse_confirm_within_days, review 47 F4)."""
    return (f"{gap:g} days later, more than mrd_relapse_confirm_within_days={within:g}: does not confirm "
            "(ELN MRD 2021 'within 4 weeks' as recalled, unverified)")


@dataclass
class MolecularRelapse:
    """The earliest molecular MRD relapse of an episode (``day`` None when none is dated), a possible
    one (``possible_day``: positive but not confirmed), and the text and rows of every marker that
    converted or rose (``found``: for the flow-only note)."""

    day: float | None = None
    rule: str | None = None
    text: str | None = None
    refs: list[str] = field(default_factory=list)
    possible_day: float | None = None
    possible_text: str | None = None
    possible_refs: list[str] = field(default_factory=list)
    found: list[tuple[str, list[str]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _status(r: dict[str, Any]) -> bool | None:
    """True = positive (above 0 and not below its lloq, or a ``>x`` bound above 0), False = undetectable
    (0), below its lloq or a ``<x`` result, None = not settled."""
    v, lloq = r.get("value"), r.get("lloq")
    if v is not None:
        if v <= 0 or (lloq is not None and lloq > 0 and v < lloq):
            return False
        return True
    op, lim = r.get("censor"), r.get("censor_limit")
    if op in ("<", "<="):
        return False
    return True if op in (">", ">=") and (lim or 0) > 0 else None


def _shown(r: dict[str, Any]) -> str:
    v, lloq = r.get("value"), r.get("lloq")
    if v is None:
        text = f"{r.get('censor')}{r.get('censor_limit'):g}"
    elif v == 0:
        text = "0 (undetectable)" + (f" at its LLOQ {lloq:g}" if lloq else "")
    elif lloq is not None and v < lloq:
        text = f"{v:g} below its LLOQ {lloq:g}"
    else:
        text = f"{v:g}"
    return f"{text} on day {r['day']:g} ({row_ref(r) or 'row not given'})"


def _key(r: dict[str, Any]) -> tuple[str, str, str]:
    return (r["param"], str(r.get("analyte") or "").strip(), str(r.get("specimen") or "").strip().upper() or "BM")


def _name(key: tuple[str, str, str]) -> str:
    return " ".join(x for x in key[:2] if x) + f" ({key[2]})"


def _marker(key, rows: list[dict[str, Any]], stop: float | None, opts: dict[str, Any], rise: float) -> dict[str, Any]:
    """One marker's conversion and rise (see the module docstring): a dict with ``conv`` / ``rise``
    ((day, text, refs) or None), ``possible`` ((day, text, refs) or None), ``notes`` and ``seen``
    (the values the found conversion or rise rests on)."""
    days: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        days.setdefault(math.floor(r["day"]), []).append(r)
    groups = [(d, g, {_status(x) for x in g}) for d, g in sorted(days.items())]
    name, out = _name(key), {"conv": None, "rise": None, "possible": None, "notes": [], "seen": []}
    confirm = str(opts.get("mrd_relapse_confirm") or "next_sample") == "next_sample"
    within = opts.get("mrd_relapse_confirm_within_days")
    neg_seen: dict[str, Any] | None = None
    for i, (d, g, st) in enumerate(groups):
        if len(st) > 1:  # results of one day that disagree: the day settles nothing (no time orders them)
            out["notes"].append(f"{name}: results of day {d:g} disagree ({'; '.join(map(_shown, g))}): not read")
            continue
        if st == {False}:
            neg_seen = neg_seen or g[0]
            continue
        if st != {True} or neg_seen is None or out["conv"] is not None:
            continue
        x = max(g, key=lambda r: r["value"] if r["value"] is not None else float(r["censor_limit"] or 0))
        refs = [z for z in map(row_ref, [neg_seen, *g]) if z]
        text = (f"{name} {_shown(neg_seen)} then {', '.join(map(_shown, g))}: conversion to positive "
                f"({MOLECULAR_RELAPSE_RULE})")
        if not confirm:
            out["conv"] = (x["day"], text + " (option mrd_relapse_confirm='none')", refs)
            break
        nxt = next(((dn, gn, sn) for dn, gn, sn in groups[i + 1:] if len(sn) == 1), None)
        end = ("the next sample", nxt[0]) if nxt is not None else (("the hematologic relapse", math.floor(stop))
                                                                  if stop is not None else None)
        if end is not None and within is not None and end[1] - d > float(within):
            why = f"{end[0]} on day {end[1]:g} is {confirm_gap_text(end[1] - d, float(within))}"
            out["possible"] = out["possible"] or (x["day"], f"possible: {text}, not confirmed: {why}", refs)
            continue
        if nxt is None and stop is not None:
            out["conv"] = (x["day"], text + f"; confirmed by the hematologic relapse on day {stop:g} "
                           "(option mrd_relapse_confirm='next_sample')", refs)
            break
        if nxt is None:
            out["possible"] = out["possible"] or (x["day"], f"possible: {text}, not yet confirmed: no later "
                                                  f"{name} result (option mrd_relapse_confirm='next_sample')", refs)
            continue
        n_refs = [z for z in map(row_ref, nxt[1]) if z]
        if nxt[2] == {True}:
            out["conv"] = (x["day"], text + f"; confirmed by the next, {', '.join(map(_shown, nxt[1]))} "
                           "(option mrd_relapse_confirm='next_sample')", refs + n_refs)
            break
        if nxt[2] == {False}:
            out["notes"].append(f"{text} not confirmed: the next, {', '.join(map(_shown, nxt[1]))}, is negative")
            neg_seen = nxt[1][0]
            continue
        out["possible"] = out["possible"] or (x["day"], f"possible: {text}, not confirmed: the next, "
                                              f"{', '.join(map(_shown, nxt[1]))}, settles nothing", refs + n_refs)
    low: dict[str, Any] | None = None  # the lowest earlier positive quantified value
    for d, g, st in groups:
        q = [r for r in g if r.get("value") is not None and _status(r) is True]
        if len(st) > 1 or not q:
            continue
        hi = max(q, key=lambda r: r["value"])
        if low is not None and math.log10(hi["value"] / low["value"]) >= rise - 1e-9:
            up = math.log10(hi["value"] / low["value"])
            out["rise"] = (hi["day"], f"{name} {_shown(low)} to {_shown(hi)}: a rise of {up:.2f} log10 >= {rise:g} "
                           f"between two positive samples ({MOLECULAR_RISE_RULE})",
                           [z for z in (row_ref(low), row_ref(hi)) if z])
            break
        lo_ = min(q, key=lambda r: r["value"])
        low = lo_ if low is None or lo_["value"] < low["value"] else low
    return out


def molecular_mrd_relapse(recs: list[dict[str, Any]], obs: dict[str, list[dict[str, Any]]], start: float,
                          stop: float | None, opts: dict[str, Any]) -> MolecularRelapse:
    """The molecular MRD relapse of the episode starting at ``start`` and ending at the hematologic
    relapse ``stop`` (None: none): results from the first CR/CRh/CRi assessment in [start, stop) on
    (calendar days), before ``stop``'s calendar day. See the module docstring."""
    out = MolecularRelapse()
    rem = next((r for r in recs if r["category"] in _REMISSION and r["day"] >= start
                and (stop is None or r["day"] < stop)), None)
    if rem is None:
        return out
    first, rise = math.floor(rem["day"]), float(_settings()["log10_rise"])
    markers: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for p in marker_params():
        for r in obs.get(p, []):
            if math.floor(r["day"]) >= first and (stop is None or math.floor(r["day"]) < math.floor(stop)):
                markers.setdefault(_key(r), []).append(r)
    dated, possible = [], []
    for key, rows in sorted(markers.items()):
        m = _marker(key, rows, stop, opts, rise)
        out.notes += m["notes"]
        for kind in ("conv", "rise"):
            if m[kind] is not None:
                dated.append((m[kind][0], MOLECULAR_RELAPSE_RULE if kind == "conv" else MOLECULAR_RISE_RULE, *m[kind][1:]))
        if m["possible"] is not None:
            possible.append(m["possible"])
        hits = [x for x in (m["conv"], m["rise"], m["possible"]) if x is not None]
        if hits:
            out.found.append(("; ".join(h[1] for h in hits), [z for h in hits for z in h[2]]))
    if dated:
        out.day, out.rule, out.text, out.refs = min(dated, key=lambda x: x[0])
        others = [x[2] for x in dated if x[2] != out.text]
        if others:
            out.text += "; also " + "; ".join(others)
            out.refs = list(dict.fromkeys(out.refs + [z for x in dated for z in x[3]]))
    if possible:
        out.possible_day, out.possible_text, out.possible_refs = min(possible, key=lambda x: x[0])
    return out
