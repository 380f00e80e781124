"""Hematologic relapse and MRD relapse after a response (ELN 2022 response table, hematologic
relapse; research note ../shared/research/grading.md §4.1), one row per response episode.

Moved out of :mod:`cartlab.response.marrow` (which re-exports :func:`derive_relapse`; the module is not named
``relapse``: that is the 0.2 name of derive_relapse, still importable from cartlab.response). A relapse
episode starts at a response in the option ``relapse_after`` (ELN 2022: CR, CRh, CRi; "relapse
after CR/CRh/CRi"); a response outside it (MLFS, PR by default) ends by loss of response
(``cartlab.response.best``, rule ``response.loss_of_response``), not by relapse.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from cartlab.criteria import decision
from cartlab.criteria.model import Leaf, leaves
from cartlab.model import Study
from cartlab.provenance import EVIDENCE, row_ref
from cartlab.response.marrow import (
    ResponseOptions,
    _by_subject,
    _interval,
    _mrd,
    _mrd_lloq,
    _pick_mrd,
    _rules,
    _shown,
    _table,
    criteria_for_disease,
    derive_marrow_response,
    mrd_shown,
)
from cartlab.response.marrow_options import resolve_for_study
from cartlab.response.molecular_relapse import (
    MolecularRelapse,
    confirm_gap_text,
    marker_params,
    molecular_mrd_relapse,
)

__all__ = ["derive_relapse", "mrd_off_day_note", "mrd_off_marrow_day"]

#: the categories after which an MRD-negative assessment can convert (ELN 2022 "CR, CRh or CRi
#: without MRD"; research note §4.1 "MRD relapse (after CR/CRh/CRi MRD−)")
MRD_REMISSION = ("CR", "CRh", "CRi")


def _relapse_rule(a: pl.DataFrame, names: list[str | None], resolved: dict[str, dict[str, Any]]) -> pl.Expr:
    """Per assessment, the first rule of its table's ``relapse`` rule set that holds (else null); an
    assessment :func:`derive_marrow_response` labelled ``relapse`` (a bound such as ``>20`` included)
    carries its rule."""
    table = pl.Series(names, dtype=pl.String)
    out = pl.lit(None, dtype=pl.String)
    for name, opts in resolved.items():
        rules = decision(_rules(name), "relapse", opts, schema=a.schema)
        out = pl.when(pl.lit(table) == name).then(rules.rule()).otherwise(out)
    if "rule" not in a.columns:
        return out
    return pl.when(pl.col("category") == "relapse").then(pl.col("rule")).otherwise(out)


_RELAPSE_SCHEMA = {
    "subject_id": pl.String, "episode": pl.Int64, "response_day": pl.Float64, "response_category": pl.String,
    "relapse_day": pl.Float64, "relapse_rule": pl.String, "relapse_reason": pl.String,
    # review 41 F2: the first marrow after the response (before the relapse) that could be a relapse
    # for want of an input (NE, could_be relapse): ADTTE censors at the last assessment before it
    "relapse_possible_day": pl.Float64, "relapse_possible_reason": pl.String, "relapse_possible_evidence": EVIDENCE,
    "mrd_relapse_day": pl.Float64, "mrd_relapse_rule": pl.String, "mrd_relapse_reason": pl.String,
    # review 41 diff1 F3: the day of the sample a possible MRD relapse (rule response.mrd_relapse_possible,
    # mrd_relapse_day empty) rests on - structured, so no reader parses it out of the reason
    "mrd_relapse_possible_day": pl.Float64,
    "evidence": EVIDENCE,
}


def _pb_status(x: dict[str, Any]) -> bool | None:
    """A PBBLAST sample: True = circulating blasts (a value > 0, or ``>x``/``>=x`` above 0), False =
    none (0, ``<=0``), None = a bound that does not settle it (``<1``: anything from 0 to 1)."""
    lo, hi, lo_open, _ = _interval({**x, "param": "PBBLAST"})
    if lo > 0 or (lo == 0 and lo_open):
        return True
    return False if hi is not None and hi <= 0 else None


def _unconfirmed(run: list[dict], gap: float, why: str) -> str:
    """The relapse reason's note on circulating blasts not confirmed by a second sample (review 38 A3)."""
    seen = ", ".join(f"{_shown(x)}% on day {x['day']:g}" for x in run)
    return (f"PBBLAST {seen}: not a relapse, not confirmed by a second sample with blasts >= {gap:g} days apart "
            f"({why}; ELN 2022 relapse by blood; option pb_blast_consecutive)")


def _first_relapse(recs: list[dict], sd, after: float, rel: dict, rules: dict, prefix: str):
    """The first relapse after day ``after``: (day, rule id, reason, evidence, notes) or None, and
    the notes (PBBLAST bounds that settle nothing) either way. A relapse event recorded on the
    response's calendar day counts (as the time-to-event endpoints count it: AVAL 0), a marrow or
    blood sample must come after the response."""
    cands: list[tuple[float, str, str, list[str]]] = []
    notes: list[tuple[float, str, str | None]] = []
    emd_events = "extramedullary_disease" in rel["relapse_events"]
    for r in recs:
        if r["day"] <= after or r["_relapse_rule"] is None:
            continue
        rule = rules[r["_relapse_rule"]]
        if emd_events and {x.feature for c in rule.when for x in leaves(c) if isinstance(x, Leaf)} == {"emd"}:
            # relapse only by the EMD in the marrow's window: the EMD event itself is the relapse, on its
            # own day (below), not on a marrow day that may come before any evidence of it
            continue
        cands.append((r["day"], rule.id, f"day {r['day']:g}: {rule.text} ({rule.citation})", r["evidence"]))
        break  # the assessments are in day order: later ones cannot come first
    if sd is not None:
        later = [x for x in sd.obs.get("PBBLAST", []) if x["day"] > after]
        # a censored "<x" sample is neither a proven reappearance of blasts nor their absence: named
        notes += [(x["day"], f"PBBLAST {_shown(x)} on day {x['day']:g} does not settle circulating blasts "
                   "(a censored result is only a bound)", row_ref(x)) for x in later if _pb_status(x) is None]
        need, gap = int(rel["pb_blast_samples"]), float(rel["pb_blast_min_days_apart"])
        consecutive = bool(rel.get("pb_blast_consecutive", True))
        first = rel.get("pb_relapse_date", "confirming") == "first"  # option pb_relapse_date (review 45 F3)
        run: list[dict] = []  # the positive samples since the last negative one (option pb_blast_consecutive)
        found = None
        for x in later:
            status = _pb_status(x)
            if status is False and consecutive:
                if run:  # a positive run cleared by a negative sample before it was confirmed: named
                    notes.append((run[0]["day"], _unconfirmed(run, gap, f"negative PBBLAST {_shown(x)} on day "
                                                              f"{x['day']:g}"), row_ref(run[0])))
                run = []
                continue
            if status is not True:
                continue
            earlier = [y for y in run if x["day"] - y["day"] >= gap]
            if len(earlier) + 1 >= need:
                found = x
                refs = [z for z in (row_ref(earlier[0]), row_ref(x)) if z]
                on = earlier[0]["day"] if first else x["day"]
                cands.append((on, f"{prefix}.pb_blasts",
                              (f"day {on:g}: circulating blasts in {need} samples >= {gap:g} days apart "
                               f"(days {earlier[0]['day']:g} and {x['day']:g}"
                               + (", no negative sample between them; option pb_blast_consecutive" if consecutive
                                  else "; option pb_blast_consecutive=false")
                               + ("; dated on the first sample: option pb_relapse_date=first)" if first else
                                  "; dated on the confirming sample: option pb_relapse_date=confirming)")), refs))
                break
            run.append(x)
        if found is None and run:  # positive sample(s) still waiting for their confirmation
            notes.append((run[0]["day"], _unconfirmed(run, gap, "no later confirming sample"), row_ref(run[0])))
        for e in sd.events:
            if e["event"] in rel["relapse_events"] and math.floor(e["day"]) >= math.floor(after):
                what = "relapse" if e["event"] == "relapse" else e["event"].replace("_", " ")
                cands.append((e["day"], f"{prefix}.event", f"day {e['day']:g}: {what} recorded in events.csv",
                              [z for z in [row_ref(e)] if z]))
                break
    best = min(cands, key=lambda c: c[0]) if cands else None
    return best, [n for n in notes if best is None or n[0] < best[0]]


def _specimen(r: dict[str, Any] | None) -> str:
    """The MRDFCM row's specimen, upper case; a row without one is read as marrow ("BM"), as the MRD
    status of a marrow reads it (:func:`cartlab.response.marrow._pick_mrd`; one convention for the
    relapse comparison and the status, review 39 A2)."""
    return str((r or {}).get("specimen") or "").strip().upper() or "BM"


def _shown_mrd(x: dict[str, Any]) -> str:
    """An MRDFCM result as the reason shows it, saying when its specimen was not given."""
    given = str(x.get("specimen") or "").strip()
    return mrd_shown(x) + ("" if given else " (specimen not given: read as marrow)")


#: the rule ids of an MRD relapse (response_rules.yaml rule set ``mrd_relapse``)
MRD_RELAPSE_RULE, MRD_RELAPSE_POSSIBLE_RULE = "response.mrd_relapse", "response.mrd_relapse_possible"


def _mrd_relapse(recs: list[dict], sd, start: float, stop: float | None, opts: dict[str, Any]):
    """Conversion to MRD positivity (ELN MRD WP 2021; research note §4.1 "MRD relapse (after
    CR/CRh/CRi MRD−)"; rule ``response.mrd_relapse``): after the first MRD-negative CR/CRh/CRi
    assessment in [start, stop), the first later calendar day before the episode's hematologic
    relapse day ``stop`` (exclusive: the episode ends there, a later result belongs to the next
    episode) whose MRDFCM :func:`cartlab.response.marrow._mrd` reads as positive (honouring
    ``mrd_threshold_inclusive``; a ``>x`` bound above the threshold counts; a value below its row's
    ``lloq`` is only ``<lloq``, which settles no positivity), of the same specimen when
    ``mrd_relapse_same_specimen`` (a row without a specimen is read as marrow, as the MRD status
    reads it). Several results of one day that disagree on the status (no time orders them): the
    day is undetermined, as the marrow's MRD status; a positive among them is only a possible MRD
    relapse (rule ``response.mrd_relapse_possible``, no day), both rows named. Returns (day, rule,
    reason, evidence, possible_day: the day of the sample a possible MRD relapse rests on); the reason names every result that could not be compared or whose bound does
    not settle the threshold. Confirmation (option ``mrd_relapse_confirm``, review 41 molecular F3):
    "next_sample" (default; research note §4.1 "confirm on a second consecutive sample", ELN 2022's
    wording as recalled, unverified) = the next calendar day with an MRDFCM of the compared specimen
    must be positive too - or, with no such sample before it, the episode's hematologic relapse
    confirms it; the relapse is dated on the first positive sample; a positive sample whose
    next sample is negative is named and not counted; one with no later sample yet, or whose next
    sample does not settle the threshold, is a possible MRD relapse (rule
    ``response.mrd_relapse_possible``, no day) naming it. "none" = the first positive sample dates it
    (the behaviour before session 41)."""
    if sd is None:
        return None, None, None, [], None
    rows = sd.obs.get("MRDFCM", [])

    def flow_negative(r: dict[str, Any]) -> bool:  # the MRDFCM reading itself (mrd_molecular=molecular_first)
        return _mrd(_pick_mrd([x for x in rows if math.floor(x["day"]) == math.floor(r["day"])], opts)[0], opts)[1] is True

    neg = next((r for r in recs if r["mrd_negative"] is True and r["category"] in MRD_REMISSION
                and r["day"] >= start and (stop is None or r["day"] < stop) and flow_negative(r)), None)
    if neg is None:
        return None, None, None, [], None
    neg_row, _, _ = _pick_mrd([x for x in rows if math.floor(x["day"]) == math.floor(neg["day"])], opts)
    spec = _specimen(neg_row)
    given = bool(str((neg_row or {}).get("specimen") or "").strip())
    thr, inclusive = float(opts["mrd_threshold"]), bool(opts["mrd_threshold_inclusive"])
    same = bool(opts["mrd_relapse_same_specimen"])
    head = (f"MRD negative on day {neg['day']:g} ({neg['category']}, MRDFCM "
            f"{'specimen ' + spec if given else 'specimen not given: read as marrow'})")
    notes: list[str] = []
    refs: list[str] = []
    possible: tuple[float, str, list[str]] | None = None
    later = [x for x in rows if math.floor(x["day"]) > math.floor(neg["day"])]
    ended = [x for x in later if stop is not None and math.floor(x["day"]) >= math.floor(stop)]
    days: dict[int, list[dict]] = {}
    for x in later:
        if not any(x is y for y in ended):
            days.setdefault(math.floor(x["day"]), []).append(x)
    tail = (f" before the hematologic relapse on day {stop:g}" if stop is not None else "")
    if ended:  # the episode ends at its hematologic relapse: later results are the next episode's (review 39 A1)
        tail += ("; " + ", ".join(f"MRDFCM {_shown_mrd(x)} on day {x['day']:g}" for x in ended)
                 + f" not used: on or after the hematologic relapse on day {stop:g}, which ends the episode")
    above = ">" if inclusive else ">="
    confirm = str(opts.get("mrd_relapse_confirm") or "next_sample") == "next_sample"
    within = None if opts.get("mrd_relapse_confirm_within_days") is None else float(opts["mrd_relapse_confirm_within_days"])
    groups: list[tuple[list[dict], list[bool | None], list[str], list[str]]] = []
    for _, group in sorted(days.items()):
        other = [x for x in group if same and _specimen(x) != spec]
        o_notes = [f"MRDFCM {_shown_mrd(x)} on day {x['day']:g} not compared: another specimen than the "
                   "MRD-negative marrow's (option mrd_relapse_same_specimen)" for x in other]
        o_refs = [z for z in map(row_ref, other) if z]  # every row the reason names is in the evidence
        group = [x for x in group if not (same and _specimen(x) != spec)]
        groups.append((group, [_mrd(x, opts)[1] for x in group], o_notes, o_refs))

    def shown(g: list[dict]) -> str:
        return ", ".join(_shown_mrd(y) for y in g) + f" on day {g[0]['day']:g}"

    compared = [i for i, g in enumerate(groups) if g[0]]
    nspec = f"{spec} " if same else ""  # the compared specimen (any, without mrd_relapse_same_specimen)
    for i, (group, status, o_notes, o_refs) in enumerate(groups):
        notes += o_notes
        refs += o_refs
        if not group:
            continue
        pos = [x for x, st in zip(group, status) if st is False]
        if pos and len(set(status)) == 1:
            x = max(pos, key=lambda r: r["value"] if r["value"] is not None else float(r["censor_limit"] or 0))
            pos_refs = [z for z in map(row_ref, pos) if z]
            why = (f"{head}; MRDFCM {', '.join(_shown_mrd(y) for y in pos)} on day {x['day']:g} {above} {thr:g}: "
                   "positive (conversion to MRD positivity)")
            if confirm:  # the next sample of the compared specimen must be positive too
                nxt = next((groups[j] for j in compared if j > i), None)
                opt_txt = "(option mrd_relapse_confirm='next_sample')"
                # option mrd_relapse_confirm_within_days (review 47 F4): a confirmation too late does not confirm
                by = nxt[0][0]["day"] if nxt is not None else stop
                if within is not None and by is not None and math.floor(by) - math.floor(x["day"]) > within:
                    if possible is None:
                        what = (f"the next {nspec}MRDFCM, {shown(nxt[0])}," if nxt is not None
                                else f"the hematologic relapse on day {stop:g}")
                        gap = confirm_gap_text(math.floor(by) - math.floor(x["day"]), within)
                        possible = (x["day"], (f"possible MRD relapse: MRDFCM {shown(pos)} {above} {thr:g} not "
                                               f"confirmed: {what} is {gap} {opt_txt}"),
                                    pos_refs + ([z for z in map(row_ref, nxt[0]) if z] if nxt is not None else []))
                    continue
                if nxt is None and stop is not None:  # the episode's hematologic relapse confirms it
                    why += (f"; confirmed by the hematologic relapse on day {stop:g}, with no {nspec}MRDFCM "
                            f"between {opt_txt}")
                elif nxt is None:
                    if possible is None:
                        possible = (x["day"], (f"possible MRD relapse: MRDFCM {shown(pos)} {above} {thr:g} not yet "
                                               f"confirmed: no later {nspec}MRDFCM {opt_txt}"), pos_refs)
                    continue
            if confirm and nxt is not None:
                n_group, n_status = nxt[0], nxt[1]
                n_refs = [z for z in map(row_ref, n_group) if z]
                if all(st is True for st in n_status):
                    notes.append(f"MRDFCM {shown(pos)} {above} {thr:g} not confirmed: the next {nspec}MRDFCM, "
                                 f"{shown(n_group)}, is negative {opt_txt}")
                    refs += pos_refs + n_refs
                    continue
                if not all(st is False for st in n_status):
                    if possible is None:
                        possible = (x["day"], (f"possible MRD relapse: MRDFCM {shown(pos)} {above} {thr:g} not "
                                               f"confirmed: the next {nspec}MRDFCM, {shown(n_group)}, does not "
                                               f"settle the MRD status {opt_txt}"), pos_refs + n_refs)
                    continue
                why += f"; confirmed by the next {nspec}MRDFCM, {shown(n_group)}, positive {opt_txt}"
                pos_refs += n_refs
            refs = pos_refs + refs
            if possible is not None:
                why += f"; earlier {possible[1]}"
                refs = refs + possible[2]
            return x["day"], MRD_RELAPSE_RULE, why + ("; " + "; ".join(notes) if notes else ""), refs, None
        if pos and possible is None:  # the day's results disagree: the MRD status of the day is undetermined
            shown_all = ", ".join(_shown_mrd(y) for y in group)
            possible = (group[0]["day"], f"possible MRD relapse on day {math.floor(group[0]['day']):g}: the "
                        f"MRDFCM of that day disagree on the MRD status ({shown_all}; no time orders them): MRD status "
                        "undetermined, as at the marrow, so not dated", [z for z in map(row_ref, group) if z])
            continue
        for x, st in zip(group, status):
            if st is None:
                lloq = _mrd_lloq(x)
                notes.append(f"MRDFCM {_shown_mrd(x)} on day {x['day']:g}: the bound does not settle the threshold "
                             f"{thr:g} (undetermined" + (f": the LLOQ {lloq:g} is above the threshold)" if lloq else ")"))
                refs += [z for z in [row_ref(x)] if z]
    refs += [z for z in map(row_ref, ended) if z]
    if possible is not None:
        return (None, MRD_RELAPSE_POSSIBLE_RULE, f"{head}; {possible[1]}; no later certain conversion by flow{tail}"
                + ("; " + "; ".join(notes) if notes else ""), possible[2] + refs, possible[0])
    return (None, None, f"{head}; no later conversion to MRD positivity by flow (MRDFCM){tail}"
            + ("; " + "; ".join(notes) if notes else ""), refs, None)


def _with_molecular(flow: tuple, mol: MolecularRelapse, opts: dict[str, Any]) -> tuple:
    """The episode's MRD relapse (day, rule, reason, evidence, possible day) from the flow one
    (:func:`_mrd_relapse`) and the molecular one (:func:`~cartlab.response.molecular_relapse.
    molecular_mrd_relapse`), by option ``mrd_relapse_methods`` (review 47 F1). "flow": the flow result,
    its reason saying it is read from MRDFCM only and naming every molecular marker that converted or
    rose >= 1 log10 while in CR/CRh/CRi as not assessed; "flow_and_molecular": the earlier dated one,
    else the earlier possible one, the other named."""
    day, rule, reason, ev, possible = flow
    how = str(opts.get("mrd_relapse_methods") or "flow")
    no_flow = "no MRD-negative CR/CRh/CRi by flow (MRDFCM)"
    if how == "flow":
        if reason is None and not mol.found:
            return flow
        note = "MRD relapse read from flow (MRDFCM) only (option mrd_relapse_methods=flow)"
        if mol.found:
            note += ("; molecular MRD marker(s) while in CR/CRh/CRi: " + "; ".join(t for t, _ in mol.found)
                     + ": not assessed for MRD relapse (option mrd_relapse_methods=flow; flow_and_molecular reads them)")
            ev = list(dict.fromkeys(ev + [z for _, refs in mol.found for z in refs]))
        return day, rule, f"{reason or no_flow}; {note}", ev, possible
    extra = ("; " + "; ".join(mol.notes)) if mol.notes else ""
    mol_text = ("molecular MRD relapse: " + mol.text) if mol.text else (
        ("molecular MRD markers: " + mol.possible_text) if mol.possible_text else
        "molecular MRD markers: no conversion to positive nor >= 1 log10 rise while in CR/CRh/CRi")
    flow_text = f"flow: {reason or no_flow}"
    tag = " (option mrd_relapse_methods=flow_and_molecular)"
    if mol.day is not None and (day is None or math.floor(mol.day) < math.floor(day)):
        return mol.day, mol.rule, f"{mol_text}; {flow_text}{extra}{tag}", list(dict.fromkeys(mol.refs + ev)), None
    if day is not None:
        return day, rule, f"{flow_text}; {mol_text}{extra}{tag}", list(dict.fromkeys(ev + mol.refs)), None
    if mol.possible_day is not None and (possible is None or mol.possible_day < possible):
        return (None, MRD_RELAPSE_POSSIBLE_RULE, f"{mol_text}; {flow_text}{extra}{tag}",
                list(dict.fromkeys(mol.possible_refs + ev)), mol.possible_day)
    if reason is None and not mol.found and not mol.notes:
        return flow
    return day, rule, f"{flow_text}; {mol_text}{extra}{tag}", list(dict.fromkeys(ev + mol.possible_refs)), possible


def derive_relapse(study: Study, assessments: pl.DataFrame | None = None,
                   options: ResponseOptions | None = None) -> pl.DataFrame:
    """Hematologic relapse and MRD relapse after a response, one row per response episode.

    Relapse (criteria table ``relapse:``, ELN 2022 response table, hematologic relapse): the first
    later assessment with marrow blasts >= 5% or new EMD, the second of >= 2 PBBLAST samples with
    blasts (a value > 0 or a ``>x`` bound; a ``<x`` bound settles nothing and is named in
    ``relapse_reason``) >= 7 days apart after the response, or a recorded ``relapse`` or
    ``extramedullary_disease`` event - whichever comes first. Episode 1 starts at the first response
    in the option ``relapse_after`` (default CR, CRh, CRi); a response after a relapse starts the next
    episode, whose relapse is looked for after it (a relapse after a second remission is not lost).
    MRD relapse: see :func:`_mrd_relapse` (``mrd_relapse_rule``: ``response.mrd_relapse`` when dated,
    ``response.mrd_relapse_possible`` when only a day whose results disagree suggests it).
    """
    options = options or ResponseOptions()
    a = assessments if assessments is not None else derive_marrow_response(study, options)
    a = a.sort("subject_id", "day")
    names = [options.criteria or criteria_for_disease(d) for d in a["disease"].to_list()]
    # an option one table lacks is not used for its subjects (warned once by derive_marrow_response; review 40 B1)
    resolved = resolve_for_study(options, dict(zip(a["subject_id"].to_list(), names)), warn=False)
    a = a.with_columns(_relapse_rule(a, names, resolved).alias("_relapse_rule"))
    # what relapse reads besides the assessments; the molecular markers for the MRD relapse (review 47 F1)
    data = _by_subject(study, params=("PBBLAST", "MRDFCM", *marker_params()))
    rows = []
    for sid, part in a.partition_by("subject_id", as_dict=True, maintain_order=True).items():
        sid = sid[0]
        name = options.criteria or criteria_for_disease(part["disease"][0])
        table = _table(name)
        rel, rule_set = table["relapse"], _rules(name).rule_set("relapse")
        after = list(resolved[name]["relapse_after"])
        rules = {r.id: r for r in rule_set}
        prefix = rule_set[0].id.rsplit(".", 1)[0]  # e.g. eln2022.relapse: the table's relapse rule ids
        recs = part.to_dicts()
        sd = data.get(sid)
        start = next((r for r in recs if r["category"] in after), None)
        episode = 0
        while start is not None:
            episode += 1
            best, notes = _first_relapse(recs, sd, start["day"],
                                         {**rel, "pb_blast_consecutive": resolved[name]["pb_blast_consecutive"],
                                          "pb_relapse_date": resolved[name]["pb_relapse_date"]},
                                         rules, prefix)
            stop = None if best is None else best[0]
            mrd_day, mrd_rule, mrd_reason, mrd_ev, mrd_possible = _with_molecular(
                _mrd_relapse(recs, sd, start["day"], stop, resolved[name]),
                molecular_mrd_relapse(recs, sd.obs, start["day"], stop, resolved[name]) if sd is not None
                else MolecularRelapse(), resolved[name])
            why = "no relapse after the response" if best is None else best[2]
            # a marrow whose blasts are only a bound that does not settle ">= 5%" (NE, could be relapse)
            open_ = [r for r in recs if r["day"] > start["day"] and (best is None or r["day"] < best[0])
                     and "relapse" in (r.get("could_be") or [])]
            possible = None
            if open_:
                possible = (f"the marrow on day {open_[0]['day']:g} could be a relapse (undetermined: "
                            f"{', '.join(open_[0].get('missing_inputs') or ['an input'])} not settled)")
                why += "; " + possible
            if notes:
                why += "; " + "; ".join(n[1] for n in notes)
            rows.append({
                "subject_id": sid, "episode": episode, "response_day": start["day"],
                "response_category": start["category"],
                "relapse_day": None if best is None else best[0], "relapse_rule": None if best is None else best[1],
                "relapse_reason": why,
                "relapse_possible_day": open_[0]["day"] if open_ else None, "relapse_possible_reason": possible,
                "relapse_possible_evidence": list(open_[0].get("evidence") or []) if open_ else [],
                "mrd_relapse_day": mrd_day, "mrd_relapse_rule": mrd_rule, "mrd_relapse_reason": mrd_reason,
                "mrd_relapse_possible_day": mrd_possible if mrd_rule == MRD_RELAPSE_POSSIBLE_RULE else None,
                "evidence": list(dict.fromkeys((best[3] if best else []) + [n[2] for n in notes if n[2]] + mrd_ev
                                               + (list(open_[0].get("evidence") or []) if open_ else []))),
            })
            # the next episode's response comes after the relapse (and after this response: a relapse
            # event on the response's own day must not restart the same episode)
            start = None if best is None else next(
                (r for r in recs if r["day"] > max(best[0], start["day"]) and r["category"] in after), None)
    return pl.DataFrame(rows, schema=_RELAPSE_SCHEMA, orient="row") if rows else pl.DataFrame(schema=_RELAPSE_SCHEMA)


#: calendar days either side of a marrow in which an MRDFCM on another day is named (review 39 B3)
MRD_NEAR_DAYS = 3


def mrd_off_marrow_day(study: Study) -> dict[str, list[dict[str, Any]]]:
    """Per subject, the MRDFCM rows (canonical fraction) for :func:`mrd_off_day_note`."""
    return {sid: sd.obs.get("MRDFCM", []) for sid, sd in _by_subject(study, params=("MRDFCM",)).items()}


def mrd_off_day_note(rows: list[dict[str, Any]], day: float, within: int = MRD_NEAR_DAYS) -> str | None:
    """The reason's note when no MRDFCM was measured on the marrow's calendar day ``day`` but one was
    within ``within`` calendar days: named, not used (spec "Response": ``mrd_negative`` at the
    best-response marrow, empty when no MRD was measured that day), so an empty ``mrd_negative`` is
    not read as "no MRD measured at all". None otherwise."""
    d = math.floor(day)
    if any(math.floor(x["day"]) == d for x in rows):
        return None
    near = [x for x in rows if 0 < abs(math.floor(x["day"]) - d) <= within]
    if not near:
        return None
    shown = ", ".join(f"MRDFCM {_shown_mrd(x)} on day {x['day']:g}" for x in near)
    return (f"no MRDFCM on the marrow day {day:g} ({shown} not used: the spec takes MRD at the best-response "
            "marrow only, the same calendar day)")
