"""Inputs of a marrow assessment that :mod:`cartlab.response.marrow` reads (session 38, review 38):
who received a CAR-T, the pre-treatment (PR baseline) marrow and its same-day readings, and the notes
that name every same-day / equally near value a reading was chosen from.

* :func:`infusion_status` — which subjects have a CAR-T dose; an absent doses.csv (or one without any
  CAR-T row in the whole study) means the doses are unknown, not "not infused" (rule
  ``response.not_infused``).
* :func:`pick_baseline` — the last pre-treatment calendar day's BMBLAST readings and the one the
  column reports; :func:`baseline_interval` their range (option ``same_day_baseline``, ELN 2022 PR:
  "decrease of pre-treatment bone marrow blast percentage by at least 50%").
* :func:`choice_notes` — the reason's note on same-day counts / cellularity and equally near samples.
"""

from __future__ import annotations

import math
from typing import Any

from cartlab.model import Study
from cartlab.provenance import row_ref

__all__ = ["baseline_interval", "baseline_note", "choice_notes", "infusion_status", "pb_only_relapse", "pick_baseline"]


def infusion_status(study: Study) -> tuple[set[str] | None, str]:
    """(the subjects with a CAR-T dose on any day, or None when the doses are unknown; why).

    Unknown = doses.csv not given (``Study.absent``, or a stored study's "not given" warning) or
    given without a CAR-T row for any subject: the CAR-T was then not recorded, and day 0 is taken
    as the infusion (spec "Time": day 0 is the first CAR-T infusion). Whether the doses are recorded
    is a fact of the WHOLE study (``Study.car_t_doses_recorded``, carried by a subset, one subject, a
    batch or a stored subject: review 38 A1), so a subject without its own CAR-T row reads as not
    infused however the study was cut."""
    from cartlab.io.absent_files import table_absent
    from cartlab.kinetics.agents import car_t_infusions

    if table_absent(study, "doses"):
        return None, "doses.csv not given: the CAR-T infusion is taken on day 0 (spec 'Time')"
    recorded = study.car_t_doses_recorded() if hasattr(study, "car_t_doses_recorded") else None
    if recorded is False:
        return None, "no CAR-T row in doses.csv for any subject: the CAR-T infusion is taken on day 0 (spec 'Time')"
    inf = car_t_infusions(study)
    ids = set(inf["subject_id"].to_list()) if inf.height else set()
    if not ids and recorded is None:  # not a Study: read from its own rows
        return None, "no CAR-T row in doses.csv for any subject: the CAR-T infusion is taken on day 0 (spec 'Time')"
    return ids, "doses.csv"


def pick_baseline(before: list[dict[str, Any]], opts: dict[str, Any],
                  key) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The pre-treatment BMBLAST (the last calendar day before ``pre_treatment_before_day``, spec
    "Response": "the last one before day 0"): (the reading the column reports, every reading of that
    day). ``same_day_baseline`` lowest / highest picks one reading (the group is then that one);
    range keeps them all (the reported one is the highest)."""
    if not before:
        return None, []
    last = math.floor(before[-1]["day"])
    group = [m for m in before if math.floor(m["day"]) == last]
    how = opts.get("same_day_baseline", "range")
    if how == "lowest":
        pick = min(group, key=key)
        return pick, group
    pick = max(group, key=key)
    return pick, group


def baseline_interval(group: list[dict[str, Any]], pick: dict[str, Any] | None, opts: dict[str, Any],
                      interval) -> tuple:
    """The interval of the PR baseline: the chosen reading's (lowest / highest), or with ``range`` the
    span [lowest value any reading allows, highest] (so a reduction >= 50% holds only when it holds
    for every reading; ``_reduction`` takes the closed interval)."""
    if pick is None:
        return interval(None)
    if opts.get("same_day_baseline", "range") != "range" or len(group) < 2:
        return interval({**pick, "param": "BMBLAST"})
    ivs = [interval({**r, "param": "BMBLAST"}) for r in group]
    los = [x[0] for x in ivs]
    his = [x[1] for x in ivs]
    return min(los), (None if any(h is None for h in his) else max(his)), False, False


def baseline_note(group: list[dict[str, Any]], pick: dict[str, Any] | None, opts: dict[str, Any], shown,
                  events: list[dict[str, Any]]) -> str:
    """The reason's note on the PR baseline: its day and age before day 0 (review 38 B3), every
    reading of that day and the option that chose (A1), a new_therapy event between it and day 0."""
    if pick is None:
        return ""
    day = pick["day"]
    out = f" | pre-treatment marrow on day {day:g} ({math.floor(-day) if day < 0 else 0:g} days before day 0)"
    between = [e for e in events if e.get("event") == "new_therapy" and e["day"] is not None and day < e["day"] < 0]
    if between:
        out += ("; before " + ", ".join(f"new_therapy on day {e['day']:g}" + (f" ({row_ref(e)})" if row_ref(e) else "")
                                        for e in between) + " (bridging therapy between the baseline and the infusion)")
    if len(group) > 1:
        how = opts.get("same_day_baseline", "range")
        rows = ", ".join(f"{shown(r)}% ({row_ref(r) or 'row not given'})" for r in group)
        pick_txt = {"range": "the reduction is taken over all of them (option same_day_baseline=range)",
                    "lowest": f"the lowest, {shown(pick)}%, used (option same_day_baseline=lowest)",
                    "highest": f"the highest, {shown(pick)}%, used (option same_day_baseline=highest)"}[how]
        out += f"; {len(group)} BMBLAST readings that day: {rows}: {pick_txt}"
    return out


def _same_day(rows: list[dict[str, Any]], chosen: dict[str, Any] | None) -> list[dict[str, Any]]:
    if chosen is None:
        return []
    return [r for r in rows if math.floor(r["day"]) == math.floor(chosen["day"])]


def _tie(rows: list[dict[str, Any]], chosen: dict[str, Any] | None, day: float) -> list[dict[str, Any]]:
    """The rows on the other side of the marrow day at the same distance as ``chosen`` (B2)."""
    if chosen is None:
        return []
    dist = abs(math.floor(chosen["day"]) - math.floor(day))
    if dist == 0:
        return []
    return [r for r in rows if abs(math.floor(r["day"]) - math.floor(day)) == dist
            and math.floor(r["day"]) != math.floor(chosen["day"])]


def choice_notes(sd_obs: dict[str, list[dict[str, Any]]], used: dict[str, Any], day: float, shown,
                 plats: list[dict[str, Any]] | None = None) -> tuple[str, list[str]]:
    """The reason's note on values chosen among several (review 38 B1, B2, B5) and their rows: the
    other NEUT / PLAT / PBBLAST of the chosen count day (the lowest is used: rows of a day are in
    value order), equally near samples before and after the marrow (the earlier is used: spec
    "Derivation conventions", "of two days equally near, the earlier"), and several BMCELL of the
    marrow day (the highest: ELN MLFS "at least 200 cells ... or cellularity ... at least 10%", either
    specimen may satisfy it). Returns (text, the rows' refs for the evidence)."""
    out, refs = "", []
    names = {"NEUT": "ANC", "PLAT": "PLT", "PBBLAST": "PBBLAST"}
    for p, label in names.items():
        chosen = used.get(p)
        pool = plats if (p == "PLAT" and plats is not None) else sd_obs.get(p, [])
        same = _same_day(pool, chosen)
        if len(same) > 1:
            vals = ", ".join(f"{shown(r)} ({row_ref(r) or 'row not given'})" for r in same)
            what = "the highest" if p == "PBBLAST" else "the lowest"
            if p == "PBBLAST":
                what = f"{shown(chosen)} used"
            else:
                what = f"{what} used"
            out += f" | {len(same)} {p} on day {chosen['day']:g}: {vals}: {what}"
            refs += [x for x in map(row_ref, same) if x]
        tie = _tie(pool, chosen, day)
        if tie:
            vals = ", ".join(f"{shown(r)} on day {r['day']:g} ({row_ref(r) or 'row not given'})" for r in tie)
            out += (f" | {p} equally near the marrow day before and after it: {shown(chosen)} on day {chosen['day']:g} "
                    f"and {vals}: the earlier used (docs/derivation-conventions.md; {label} of the later day not used)")
            refs += [x for x in map(row_ref, tie) if x]
    cells = used.get("BMCELL_all") or []
    if len(cells) > 1:
        vals = ", ".join(f"{shown(r)}% ({row_ref(r) or 'row not given'})" for r in cells)
        out += (f" | {len(cells)} BMCELL on the marrow day: {vals}: the highest used (ELN MLFS: aspirate count "
                "or biopsy cellularity, either may satisfy it)")
        refs += [x for x in map(row_ref, cells) if x]
    return out, refs



def pb_only_relapse(a: dict[str, Any], since: float, f: dict[str, Any], used: dict[str, Any],
                    shown) -> dict[str, Any] | None:
    """After a remission, a marrow with < 5% blasts but circulating blasts (NR by the categories):
    NE "could be relapse" naming the missing confirming blood sample (ELN 2022 hematologic relapse:
    "reappearance of blasts in the blood in at least 2 peripheral blood samples at least one week
    apart"; review 38 B8), else None."""
    pb_lo, bm_hi = f.get("pb_blast_pct_lo"), f.get("bm_blast_pct_hi")
    pb_pos = pb_lo is not None and (pb_lo > 0 or (pb_lo == 0 and f.get("pb_blast_pct_lo_open")))
    if (a["relapse_rule"] is None and not a["relapse_possible"] and a["category"] == "NR" and pb_pos
            and bm_hi is not None and bm_hi < 5):
        pb = used.get("PBBLAST")
        seen = f"PBBLAST {shown(pb)}% on day {pb['day']:g}" if pb is not None else "circulating blasts"
        return {**a, "category": "NE", "rule": a.get("unresolved_id") or a["rule"], "could_be": ["relapse"],
                "failed": [], "missing": ["pb_blast_confirm"],
                "text": (f"after the response on day {since:g}: marrow blasts < 5% with circulating blasts ({seen}): "
                         "relapse possible, not proven - relapse by blood needs a second PBBLAST sample with blasts "
                         ">= pb_blast_min_days_apart days apart (ELN 2022 hematologic relapse; derive_relapse dates it)")}
    return None
