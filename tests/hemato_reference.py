"""The row-loop haematotoxicity engines as they were before issue 14 (commit 45b3ff1), kept as an oracle.

tests/test_hemato_vectorised.py checks that the vectorised engines of
:mod:`cartlab.grading.hematotox` give identical frames on synthetic cohorts and edge cases. The
code below is the old implementation verbatim (only its imports changed); do not "fix" it here -
except where an audit derived the new behaviour by hand: count recovery (rewritten as a row loop of
the audited rules) and IEC-HS (three-valued baseline status, missing inputs named, reported features),
session 26, /work/notes/audit_crs_legacy; the hand-derived cases are tests/test_hemato_audit_s26.py.
Session 30 (options audit): the low-risk band is written "score 0-1" (marked "session 30").
Session 29 (/work/notes/audit_diffscore, marked "session 29"; cases tests/test_scores_audit_s29.py):
a recovery run possible before the measured nadir opens the range; IEC-HS reads the highest value
against its own row's ULN/LLN.
Session 34 (/work/notes/review34_scores, marked "session 34"; cases tests/test_hematotox_fix_s34.py):
a one-day lymphodepletion course is "course day -5"; CAR-HEMATOTOX flags a risk group the other
undefined_boundary reading would change; EASIX applies daily_value (min/max/mean) at pre_ld too.
Not here: several different untimed values of the baseline time scored as a range (the synthetic
cohorts add same-day values with a time only): tested by hand.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from cartlab.grading.hemato_common import CMP as _CMP
from cartlab.grading.hemato_common import canonical_unit as _canonical_unit
from cartlab.grading.hemato_common import fmt as _fmt
from cartlab.grading.hemato_common import from_canonical as _from_canonical
from cartlab.grading.hemato_common import to_canonical as _to_canonical
from cartlab.grading.hematotox import (
    CarHematotoxOptions,
    EasixOptions,
    IecHsOptions,
    RecoveryOptions,
)
from cartlab.model import Study
from cartlab.provenance import EVIDENCE, evidence_ref
from cartlab.provenance import unique_refs as _uniq

# the shared helpers as they were (hemato_common)


#: the criteria tables as they were before issue 14 (the recovery rows were part of icaht_2023.yaml)
OLD_TABLES = Path(__file__).parent / "fixtures" / "icaht_v1"


def load_criteria(name: str) -> dict[str, Any]:
    """An old (pre-issue-14) haematotoxicity criteria table, parsed."""
    return yaml.safe_load((OLD_TABLES / f"{name}.yaml").read_text(encoding="utf-8"))


def subject_ids(study: Study) -> list[str]:
    """Subjects of ``subjects.csv`` in file order, then any subject seen only in observations."""
    ids = list(study.subjects["subject_id"].to_list()) if study.subjects.height else []
    seen = set(ids)
    for sid in study.observations["subject_id"].unique(maintain_order=True).to_list():
        if sid not in seen:
            seen.add(sid)
            ids.append(sid)
    return ids


def param_obs(study: Study, params: Iterable[str]) -> pl.DataFrame:
    """Non-null observations of ``params`` with calendar day ``d`` and evidence ``ref``."""
    return (
        study.observations.filter(
            pl.col("param").is_in(list(params)) & pl.col("value").is_not_null() & pl.col("day").is_not_null()
        )
        .with_columns(pl.col("day").floor().cast(pl.Int64).alias("d"), evidence_ref().alias("ref"))
        .select("subject_id", "param", "day", "d", "value", "lln", "uln", "ref", "src_row")
    )


def daily_values(obs: pl.DataFrame, how: str) -> pl.DataFrame:
    """One value per subject, param and calendar day: the ``how`` (min | max | last | mean) one."""
    keys = ["subject_id", "param", "d"]
    if how == "mean":
        return obs.group_by(keys).agg(
            pl.col("value").mean(), pl.col("ref").drop_nulls().alias("refs"),
            pl.col("lln").first(), pl.col("uln").first(),
        )
    if how in ("min", "max"):
        ordered = obs.sort(["value", "day", "src_row"], descending=[how == "max", False, False], nulls_last=True)
    elif how == "last":
        ordered = obs.sort(["day", "src_row"], descending=True, nulls_last=True)
    else:
        raise ValueError(f"unknown daily value {how!r} (min, max, last or mean)")
    return ordered.group_by(keys, maintain_order=True).agg(
        pl.col("value").first(),
        pl.col("ref").first().alias("ref1"),
        pl.col("lln").first(),
        pl.col("uln").first(),
    ).with_columns(
        pl.when(pl.col("ref1").is_not_null()).then(pl.concat_list(pl.col("ref1")))
        .otherwise(pl.lit([], dtype=EVIDENCE)).alias("refs")
    ).drop("ref1")


def empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def transfusion_days(study: Study, categories: Iterable[str]) -> pl.DataFrame:
    """One row per subject and calendar day covered by an intervention of ``categories``
    (``start_day`` to ``end_day`` inclusive; no end = the start day), with its evidence ``ref``."""
    iv = study.interventions.filter(pl.col("category").is_in(list(categories)) & pl.col("start_day").is_not_null())
    lo = pl.col("start_day").floor().cast(pl.Int64)
    hi = pl.coalesce(pl.col("end_day"), pl.col("start_day")).floor().cast(pl.Int64)
    return (
        iv.with_columns(pl.int_ranges(lo, pl.max_horizontal(lo, hi) + 1).alias("d"), evidence_ref().alias("ref"))
        .explode("d").select("subject_id", "d", "ref")
    )


_daily, _empty, _param_obs, _subject_ids = daily_values, empty, param_obs, subject_ids


def _lymphodepletion_days(study: Study, agents: Iterable[str], window=(-14, -1), max_gap=3
                          ) -> dict[str, tuple[float, list[str], float]]:
    """Per subject: (first dose day of the lymphodepletion course, evidence of that day's doses, its
    last dose day). Session 32: the course is the last run (gaps <= max_gap days) of doses of the
    agents within ``window`` (days relative to infusion); a bridging dose weeks earlier is not one."""
    from cartlab.grading.ld_agents import canonical_agent  # session 38: the alias table (review s38 A1)
    names = [canonical_agent(a) for a in agents]
    doses = study.doses.filter(pl.col("day").is_not_null() & (pl.col("day") <= window[1])).with_columns(
        evidence_ref().alias("ref")).sort("day")
    doses = doses.filter(pl.Series([canonical_agent(a) in names for a in doses["agent"]], dtype=pl.Boolean))
    courses: dict[str, list[list[dict]]] = {}
    for row in doses.iter_rows(named=True):
        cs = courses.setdefault(row["subject_id"], [])
        if not cs or row["day"] - cs[-1][-1]["day"] > max_gap:
            cs.append([])
        cs[-1].append(row)
    out: dict[str, tuple[float, list[str], float]] = {}
    for sid, cs in courses.items():
        # session 38 (review s38 B4): the last course with a dose in the window, taken whole
        cs = [c for c in cs if any(window[0] <= r["day"] <= window[1] for r in c)]
        if not cs:
            continue
        last = cs[-1]
        first = float(last[0]["day"])
        out[sid] = (first, _uniq([r["ref"] for r in last if r["day"] == first]), float(last[-1]["day"]))
    return out


def _other(study: Study, sid: str, agents: Iterable[str]) -> str:
    """Session 38 (review s38 A1): the doses of days -14..-1 not read as lymphodepletion, named."""
    from cartlab.grading.ld_agents import canonical_agent
    from cartlab.kinetics.agents import is_car_t_agent
    names = [canonical_agent(a) for a in agents]
    spans: dict[str, list[float]] = {}
    for r in study.doses.filter(pl.col("subject_id") == sid).iter_rows(named=True):
        if r["day"] is not None and -14 <= r["day"] <= -1 and canonical_agent(r["agent"]) not in names \
                and not is_car_t_agent(r["agent"]):
            spans.setdefault(r["agent"].strip(), []).append(r["day"])
    if not spans:
        return ""
    parts = [f"{a} on " + (f"day {min(d):g}" if min(d) == max(d) else f"days {min(d):g} to {max(d):g}")
             for a, d in sorted(spans.items(), key=lambda x: (min(x[1]), x[0]))]
    return (f"; not read as lymphodepletion: {', '.join(parts)} (agent not in lymphodepletion_agents "
            f"{'/'.join(agents)} nor CAR-T)")


def _pre_ld_values(study: Study, params: Iterable[str], agents: Iterable[str],
                   max_lookback: float | None, daily: str | None = None
                   ) -> tuple[dict[str, dict[str, dict]], dict[str, dict]]:
    """Baseline values: the last value on or before the first lymphodepletion dose day, else the
    last value before day 0. Returns ({subject: {param: row}}, {subject: reference info})."""
    ld = _lymphodepletion_days(study, agents)
    obs = _param_obs(study, params).sort(["day", "src_row"], nulls_last=True)
    refs: dict[str, dict] = {}
    names = "/".join(agents)
    for sid in _subject_ids(study):
        if sid in ld:
            # session 34 (review s34 C5): a one-day course is "course day -5"
            course = (f"course day {ld[sid][0]:g}" if ld[sid][0] == ld[sid][2]
                      else f"course days {ld[sid][0]:g} to {ld[sid][2]:g}")
            refs[sid] = {"day": ld[sid][0], "how": f"on or before day {ld[sid][0]:g} (first lymphodepletion dose: "
                         f"{course}, the last course of {names} with a dose within days -14 to -1)" + _other(study, sid, agents),
                         "rule": "baseline.first_lymphodepletion_day", "evidence": ld[sid][1]}
        else:
            refs[sid] = {"day": 0.0, "how": "before day 0 (no lymphodepletion dose recorded within days -14 to -1)"
                         + _other(study, sid, agents),
                         "rule": "baseline.before_day0", "evidence": []}
    values: dict[str, dict[str, dict]] = {sid: {} for sid in refs}
    day_rows: dict[tuple[str, str], list[dict]] = {}
    for row in obs.iter_rows(named=True):
        sid = row["subject_id"]
        info = refs.get(sid)
        if info is None:
            continue
        if info["rule"] == "baseline.first_lymphodepletion_day":
            ok = row["d"] <= math.floor(info["day"])
        else:
            ok = row["day"] < 0
        if ok and max_lookback is not None:
            ok = row["day"] >= info["day"] - float(max_lookback)
        if ok:
            values[sid][row["param"]] = row  # rows are sorted by day: the last one wins
            day_rows.setdefault((sid, row["param"]), []).append(row)  # session 34
    if daily in ("min", "max", "mean"):
        # session 34 (review s34 B2): EASIX's daily_value on the last calendar day with a number
        for (sid, p), rs in day_rows.items():
            last_d = max(r["d"] for r in rs)
            day = [r for r in rs if r["d"] == last_d]
            if daily == "mean":
                values[sid][p] = {**day[0], "value": sum(r["value"] for r in day) / len(day), "day": float(last_d)}
            else:
                key = (lambda r: (r["value"], r["day"], r["src_row"] if r["src_row"] is not None else math.inf))
                pick = min(day, key=key) if daily == "min" else \
                    min(day, key=lambda r: (-r["value"], r["day"], r["src_row"] if r["src_row"] is not None else math.inf))
                values[sid][p] = pick
    return values, refs




def _transfusion_days(study: Study, categories: tuple[str, ...]) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for sid, d in transfusion_days(study, categories).select("subject_id", "d").iter_rows():
        out.setdefault(sid, set()).add(d)
    return out


# ---------------------------------------------------------------------------------------------
# Count recovery: NOT the pre-issue-14 code any more. Rewritten (session 26) as a row loop of the
# audited behaviour (/work/notes/audit_crs_legacy, findings F2, F5, F8, F9; hand derivations in
# tests/test_hemato_audit_s26.py): in mode "days" a day without a value is unknown, not below the
# level (a run it could complete makes the day not evaluable, a range); the nadir is that of the first
# episode below the level unless option nadir=lowest (the old behaviour); a subject without a
# recovery is censored at the end of follow-up. Written independently of the vectorised engine.


def _follow_up(study: Study) -> dict[str, tuple[float | None, str]]:
    """Per subject: (calendar day of last_followup_day, else of its latest row in any table; how)."""
    out: dict[str, tuple[float | None, str]] = {}
    for r in study.subjects.iter_rows(named=True):
        if r["last_followup_day"] is not None:
            out[r["subject_id"]] = (math.floor(r["last_followup_day"]), "last_followup_day")
    latest: dict[str, float] = {}
    for t, col in (("observations", "day"), ("doses", "day"), ("interventions", "start_day"),
                   ("interventions", "end_day"), ("events", "day")):
        for sid, day in study.table(t).select("subject_id", col).iter_rows():
            if day is not None:
                latest[sid] = max(latest.get(sid, -math.inf), float(day))
    for sid, day in latest.items():
        out.setdefault(sid, (math.floor(day), "no last_followup_day: the latest day of the subject's rows"))
    return out


def _runs(pts, meets, opts: dict, mode: str, transfused: set[int] | None) -> list[dict]:
    """Every candidate first day of a run: definite / possible / open, its measured days, refs and gaps."""
    k, free = int(opts["consecutive"]), int(opts["platelet_transfusion_free_days"])
    by_day = {p[0]: p for p in pts}
    last = pts[-1][0]
    out = []
    if mode == "days":
        starts = [(d, [by_day.get(d + j) for j in range(k)], list(range(d, d + k))) for d in range(last + 1)]
    else:
        starts = [(p[0], pts[i:i + k], [q[0] for q in pts[i:i + k]]) for i, p in enumerate(pts)]
    for d, window, days in starts:
        fails = any(w is not None and not meets(w[1]) for w in window)
        complete = len(window) == k and all(w is not None for w in window)
        inside = days[-1] <= last if mode == "days" else len(window) == k
        hi = days[-1] if opts["transfusion_free_during_counting"] else d - 1
        blocked = transfused is not None and any(t in transfused for t in range(d - free, hi + 1))
        out.append({"d": d, "definite": complete and not fails and not blocked,
                    "possible": not fails and inside and not blocked, "open": not fails and not inside and not blocked,
                    "seq": [w[0] for w in window if w is not None], "refs": [r for w in window if w is not None for r in w[2]],
                    "gaps": [x for x, w in zip(days, window) if w is None and x <= last]})
    return out


def _recovery_one(points, rule: dict, opts: dict, thr: float, transfused: set[int] | None, label: str,
                  mode: str) -> dict | None:
    """status, day, day_min, day_max, last, reason (without censoring and the other reading), evidence."""
    def meets(v: float) -> bool:
        return _CMP[rule["op"]](v, thr)

    k, op, t = int(opts["consecutive"]), rule["op"], _fmt(thr)
    pts = [p for p in points if p[0] >= 0]
    if not pts:
        return None
    runs = _runs(pts, meets, opts, mode, transfused)
    low = min(pts, key=lambda p: (p[1], p[0]))
    drop = next((p for p in pts if not meets(p[1])), None)
    res = {"last": pts[-1][0], "day": None, "day_min": None, "day_max": None}
    # session 34 (review s34 D8): "never below from day 0" needs a value by never_below_data_from_day;
    # with the first value later, days 0 to it are unknown: not evaluable, day 1 up to the first run
    # of k consecutive days (or values) at the level from day 0
    f0 = pts[0][0]
    if opts["start"] in ("nadir", "first_drop") and f0 > int(opts["never_below_data_from_day"]) and all(
            meets(p[1]) for p in pts):
        U = next((r for r in runs if r["definite"]), None)
        if opts["start"] == "nadir":
            reason = (f"not evaluable: {label} never below {t} on the days with a value (from day {f0}; lowest "
                      f"{_fmt(low[1])} on day {low[0]}), but day(s) 0-{f0 - 1} have no {label} value: a nadir below "
                      f"{t} and a recovery before day {f0} cannot be ruled out")
            refs = low[2]
        else:
            reason = (f"not evaluable: {label} never below {t} on the days with a value (from day {f0}), but day(s) "
                      f"0-{f0 - 1} have no {label} value: a value below {t} and a recovery before day {f0} cannot be "
                      "ruled out")
            refs = []
        if U is not None:
            reason += (f" (the recovery day is between day 1 and day {U['d']}, the first {k} consecutive {mode} at "
                       "the level)")
        return res | {"status": "not_evaluable", "unknown_start": True, "day_min": 1.0,
                      "day_max": float(U["d"]) if U else None, "reason": reason,
                      "evidence": _uniq(refs + (U["refs"] if U else []))}
    if opts["start"] == "nadir":
        if meets(low[1]):
            return res | {"status": "not_applicable", "evidence": low[2],
                          "reason": f"not applicable: {label} never below {t} from day 0 (nadir {_fmt(low[1])} on day {low[0]})."}
        if opts["nadir"] == "lowest":
            nadir, how = low, " (the lowest value from day 0: option nadir=lowest)"
        else:
            end = next((r["d"] for r in runs if r["definite"] and r["d"] > drop[0]), None)
            nadir = min((p for p in pts if p[0] >= drop[0] and (end is None or p[0] < end)), key=lambda p: (p[1], p[0]))
            how = ""
        after, start_txt, start_refs = nadir[0], f"after the nadir {_fmt(nadir[1])} on day {nadir[0]}{how}", nadir[2]
    elif opts["start"] == "first_drop":
        if drop is None:
            return res | {"status": "not_applicable", "evidence": [],
                          "reason": f"not applicable: {label} never below {t} from day 0."}
        after, start_txt, start_refs = drop[0], f"after the first value below {t} on day {drop[0]}", drop[2]
    else:
        after, start_txt, start_refs = -1, "from day 0", []
    first = {f: next((r for r in runs if r[f] and r["d"] > after), None) for f in ("definite", "possible", "open")}
    if opts["start"] == "nadir" and opts["nadir"] != "lowest":
        # session 29: a run the unmeasured days could complete may end the first episode before the
        # measured nadir: the earliest possible run counts from the first value below the level
        first["possible"] = next((r for r in runs if r["possible"] and r["d"] > drop[0]), None)
    D, E, O = first["definite"], first["possible"], first["open"]
    def days(r: dict) -> str:
        return ", ".join(str(x) for x in r["seq"])

    if D is not None:
        extra = (f", no platelet transfusion from day {D['d'] - int(opts['platelet_transfusion_free_days'])}"
                 if transfused is not None else "")
        run = f"{label} {op} {t} on days {days(D)} {start_txt}{extra}"
    if E is not None:
        gaps = (f"no {label} value on day(s) {', '.join(str(x) for x in E['gaps'])}, so {k} consecutive days from "
                f"day {E['d']} cannot be ruled out"
                + (" (before the nadir: had they recovered, the first episode would have ended there)"
                   if E["d"] < after else ""))  # session 29
    if D is not None and E["d"] == D["d"]:
        again = ""
        if opts["start"] == "nadir" and opts["nadir"] == "first_episode":
            later = next((p[0] for p in pts if p[0] > max(D["seq"]) and not meets(p[1])), None)
            if later is not None:
                again = (f"; {label} below {t} again from day {later} (the initial recovery counts; option "
                         "nadir=lowest counts after the lowest value)")
        return res | {"status": "recovered", "day": float(D["d"]), "day_min": float(D["d"]), "day_max": float(D["d"]),
                      "reason": f"{run} -> recovery day {D['d']}{again}.", "evidence": _uniq(start_refs + D["refs"])}
    if E is not None:
        ev = _uniq(start_refs + E["refs"] + (D["refs"] if D else []))
        if D is not None:
            reason = f"not evaluable: the recovery day is between day {E['d']} and day {D['d']}: {run}, but {gaps}"
        else:
            reason = (f"not evaluable: no {k} consecutive days measured with {label} {op} {t} {start_txt} up to day "
                      f"{pts[-1][0]}, and {gaps}")
        return res | {"status": "not_evaluable", "day_min": float(E["d"]), "day_max": float(D["d"]) if D else None,
                      "reason": reason, "evidence": ev}
    tail = (f" (the values from day {O['d']} meet the level, but the data end before {k} consecutive {mode})"
            if O is not None else "")
    return res | {"status": "not_reached", "evidence": start_refs,
                  "reason": f"not reached: no {k} consecutive {mode} with {label} {op} {t} {start_txt} up to day {pts[-1][0]}{tail}"}


def recovery_days(study: Study, options: RecoveryOptions | None = None) -> pl.DataFrame:
    """Neutrophil and platelet recovery day per subject (ASTCT / CIBMTR definitions), as audited."""
    from cartlab.criteria import load_raw

    options = options or RecoveryOptions()
    opts = options.resolved()
    table = load_criteria("icaht_2023")["recovery"]
    ne_id = next((o["id"] for o in load_raw("count_recovery").get("outcomes", []) if o["id"] == "recovery.not_evaluable"), None)
    sids = _subject_ids(study)
    daily = _daily(_param_obs(study, ["NEUT", "PLAT"]), "min").sort("subject_id", "param", "d")
    pts: dict[tuple[str, str], list] = {}
    for r in daily.iter_rows(named=True):
        pts.setdefault((r["subject_id"], r["param"]), []).append((r["d"], r["value"], list(r["refs"])))
    tx = _transfusion_days(study, opts["platelet_transfusion_categories"])
    fu = _follow_up(study)
    k = int(opts["consecutive"])
    cols_ = ("day", "day_min", "day_max", "status", "censor_day", "rule", "reason", "evidence")
    cols: dict[str, list] = {"subject_id": []}
    for kind in ("neutrophil", "platelet"):
        for c in cols_:
            cols[f"{kind}_recovery_{c}"] = []
    for sid in sids:
        cols["subject_id"].append(sid)
        for kind, label in (("neutrophil", "ANC"), ("platelet", "platelets")):
            rule = table[kind]
            thr = _to_canonical(rule["value"], rule["unit"], rule["param"])
            args = (pts.get((sid, rule["param"]), []), rule, opts, thr, tx.get(sid, set()) if kind == "platelet" else None, label)
            r = _recovery_one(*args, opts["mode"])
            if r is None:
                r = {"status": "no_data", "day": None, "day_min": None, "day_max": None,
                     "reason": f"no {label} from day 0 on.", "evidence": []}
            censor = None
            if r["status"] in ("not_reached", "not_evaluable"):
                if r["status"] == "not_evaluable" and not r.get("unknown_start"):  # session 34
                    other = _recovery_one(*args, "measurements") if opts["mode"] == "days" else None
                    if other is not None:
                        gives = f"gives day {int(other['day'])}" if other["day"] is not None else "gives no recovery (not reached)"
                        r["reason"] += (f"; the CIBMTR reading of {k} consecutive values on different days (option "
                                        f"mode=measurements) {gives}")
                if r["day_max"] is None:
                    fu_day, how = fu.get(sid, (None, ""))
                    censor = float(max(fu_day, r["last"]) if fu_day is not None else r["last"])
                    how = how if fu_day is not None and fu_day >= r["last"] else "the last value: it is after the end of follow-up"
                    r["reason"] += f"; censored at day {int(censor)} ({how})"
                r["reason"] += "."
            vals = {"day": r["day"], "day_min": r["day_min"], "day_max": r["day_max"], "status": r["status"],
                    "censor_day": censor, "rule": rule["id"] + (
                        "; recovery.never_below_needs_start" if r.get("unknown_start")  # session 34
                        else f"; {ne_id}" if ne_id and r["status"] == "not_evaluable" else ""),
                    "reason": r["reason"], "evidence": r["evidence"]}
            for c in cols_:
                cols[f"{kind}_recovery_{c}"].append(vals[c])
    schema = {"subject_id": pl.String}
    for kind in ("neutrophil", "platelet"):
        schema |= {f"{kind}_recovery_day": pl.Float64, f"{kind}_recovery_day_min": pl.Float64,
                   f"{kind}_recovery_day_max": pl.Float64, f"{kind}_recovery_status": pl.String,
                   f"{kind}_recovery_censor_day": pl.Float64, f"{kind}_recovery_rule": pl.String,
                   f"{kind}_recovery_reason": pl.String, f"{kind}_recovery_evidence": EVIDENCE}
    return pl.DataFrame(cols, schema=schema)


_INCLUSIVE = {"<": "<=", ">": ">=", "<=": "<=", ">=": ">="}


def _item_points(item: dict, value: float, opts: dict) -> tuple[int, str]:
    """Points of one CAR-HEMATOTOX item for a canonical value, and the matching row's text."""
    at_cut = None  # exactly at an undefined cut-off: the comparison that holds (audit s27 item 12c)
    for row in item["points"]:
        op = row["op"]
        cut = _to_canonical(row["value"], item["unit"], item["param"])
        if row.get("boundary") == "undefined":
            if value == cut:
                at_cut = f"= {row['value']:g} {item['unit']}"
            if opts["undefined_boundary"] == "worst":
                op = _INCLUSIVE[op]
        if _CMP[op](value, cut):
            return int(row["points"]), at_cut or row["text"]
    return int(item["else"]["points"]), at_cut or item["else"]["text"]


def car_hematotox(study: Study, options: CarHematotoxOptions | None = None) -> pl.DataFrame:
    """CAR-HEMATOTOX score (0-7) and risk group per subject from pre-lymphodepletion values.

    Columns: ``hematotox_score`` (Int64; null when an input is missing), ``hematotox_score_min`` /
    ``_max`` (the possible range given the missing inputs), ``hematotox_risk`` ("low" | "high"; null
    when the range spans both groups), ``hematotox_missing`` (params without a baseline value),
    ``baseline_day`` (reference day) and ``baseline_rule``, per item ``<param>_value`` (canonical
    unit), ``<param>_day`` and ``<param>_points``, and ``rule``, ``reason``, ``evidence``.
    """
    options = options or CarHematotoxOptions()
    opts = options.resolved()
    table = load_criteria(options.criteria)
    items = table["items"]
    groups = sorted(table["risk_groups"], key=lambda g: -int(g["min_score"]))
    values, refs = _pre_ld_values(study, [i["param"] for i in items], opts["lymphodepletion_agents"],
                                  opts["max_lookback_days"])
    # session 34 (review s34 B3): the other reading of a value exactly at an undefined cut-off
    alt = {**opts, "undefined_boundary": "best" if opts["undefined_boundary"] == "worst" else "worst"}

    def group_of(lo_: int, hi_: int):
        a = next((g for g in groups if lo_ >= int(g["min_score"])), None)
        b = next((g for g in groups if hi_ >= int(g["min_score"])), None)
        return a if a is not None and b is not None and a["id"] == b["id"] else None

    rows = []
    for sid, vals in values.items():
        ref = refs[sid]
        row: dict[str, Any] = {"subject_id": sid, "baseline_day": ref["day"], "baseline_rule": ref["rule"]}
        lo = hi = alo = ahi = 0
        missing, parts, ev = [], [], list(ref["evidence"])
        for item in items:
            p = item["param"]
            key = p.lower()
            v = vals.get(p)
            if v is None:
                top = max([int(r["points"]) for r in item["points"]] + [int(item["else"]["points"])])
                hi += top
                ahi += top  # session 34
                missing.append(p)
                row |= {f"{key}_value": None, f"{key}_day": None, f"{key}_points": None}
                parts.append(f"{item['label']} missing (0-{top} points)")
                continue
            pts, txt = _item_points(item, v["value"], opts)
            lo += pts
            hi += pts
            apts = _item_points(item, v["value"], alt)[0]  # session 34
            alo += apts
            ahi += apts
            row |= {f"{key}_value": v["value"], f"{key}_day": v["day"], f"{key}_points": pts}
            shown = _from_canonical(v["value"], item["unit"], p)
            parts.append(f"{item['label']} {_fmt(shown)} {item['unit']} (day {_fmt(v['day'])}) -> {pts} [{txt}]")
            ev.append(v["ref"])
        risk = None
        for g in groups:
            if lo >= int(g["min_score"]):
                top_group = g
                break
        else:
            top_group = None
        for g in groups:
            if hi >= int(g["min_score"]):
                hi_group = g
                break
        else:
            hi_group = None
        if top_group is not None and hi_group is not None and top_group["id"] == hi_group["id"]:
            risk = top_group
        score = lo if not missing else None
        score_txt = f"score {lo}" if not missing else f"score {lo}-{hi} ({', '.join(missing)} missing)"
        # session 30 (options audit): the band of a group below the highest is "min-(next min - 1)"
        # (Rejeski 2021: low 0-1, high >= 2), not ">= min"
        higher = [int(g["min_score"]) for g in groups if risk is not None and int(g["min_score"]) > int(risk["min_score"])]
        band = (f">= {risk['min_score']}" if not higher else f"{risk['min_score']}-{min(higher) - 1}") if risk else ""
        risk_txt = (f"{risk['label']} risk (score {band})" if risk is not None
                    else "risk group undetermined: the possible scores span more than one group")
        # session 34 (review s34 B3): flag and name a risk group the other reading would change
        arisk = group_of(alo, ahi)
        flips = (arisk["id"] if arisk else None) != (risk["id"] if risk else None)
        if flips:
            risk_txt += (f"; with undefined_boundary {alt['undefined_boundary']} (a value exactly at a cut-off the "
                         f"source leaves undefined) the risk group would be {arisk['label'] if arisk else 'undetermined'}"
                         f" (score {alo if alo == ahi else f'{alo}-{ahi}'})")
        row |= {
            "hematotox_score": score, "hematotox_score_min": lo, "hematotox_score_max": hi,
            "hematotox_risk": risk["label"] if risk else None, "hematotox_missing": missing,
            "hematotox_risk_depends_on_boundary": flips,  # session 34
            # the risk group and every item scored: the row rests on each item's cut-offs
            "rule": "; ".join([risk["id"] if risk else "car_hematotox.undetermined",
                               *(i.get("id", i["param"]) for i in items if i["param"] not in missing)]),
            "reason": f"baseline {ref['how']}: " + "; ".join(parts) + f" -> {score_txt}, {risk_txt}.",
            "evidence": _uniq(ev),
        }
        rows.append(row)
    schema = {"subject_id": pl.String, "hematotox_score": pl.Int64, "hematotox_score_min": pl.Int64,
              "hematotox_score_max": pl.Int64, "hematotox_risk": pl.String,
              "hematotox_risk_depends_on_boundary": pl.Boolean,  # session 34
              "hematotox_missing": pl.List(pl.String),
              "baseline_day": pl.Float64, "baseline_rule": pl.String}
    for item in items:
        k = item["param"].lower()
        schema |= {f"{k}_value": pl.Float64, f"{k}_day": pl.Float64, f"{k}_points": pl.Int64}
    schema |= {"rule": pl.String, "reason": pl.String, "evidence": EVIDENCE}
    if not rows:
        return _empty(schema)
    return pl.DataFrame(rows, schema=schema)


def _recorded(study: Study) -> dict:
    """(subject, "file:row") -> (value, unit) as recorded (orig_value, orig_unit)."""
    o = study.observations
    if "orig_unit" not in o.columns:
        return {}
    return {(r["subject_id"], f"{r['src_file']}:{r['src_row']}"): (r.get("orig_value"), r["orig_unit"])
            for r in o.iter_rows(named=True) if r["src_file"] is not None and r["src_row"] is not None}


def easix(study: Study, day: float | str = "pre_ld", options: EasixOptions | None = None) -> pl.DataFrame:
    """EASIX, m-EASIX and s-EASIX per subject at one timepoint (or per day).

    ``day``: ``"pre_ld"`` (default; last values on or before the first lymphodepletion dose, else
    before day 0), a number (calendar day, with ``day_tolerance_days``), or ``"each"`` (one row per
    subject and calendar day with any input). Inputs are converted from their canonical units to the
    formula units (CREAT umol/L -> mg/dL with its molar mass, CRP mg/L -> mg/dL). Columns: the inputs
    (``ldh_u_l``, ``creat_mg_dl``, ``crp_mg_dl``, ``plat_1e9_l``) with their ``_day``, each score and
    ``log<base>_<score>``, ``missing``, ``rule`` (scores computed), ``reason``, ``evidence``.
    """
    options = options or EasixOptions()
    opts = options.resolved()
    table = load_criteria(options.criteria)
    inputs: dict[str, dict] = table["inputs"]
    base = opts["log_base"]
    # one dict per output row: subject_id, timepoint, day, {param: row}
    frames: list[tuple[str, str, float | None, dict[str, dict]]] = []
    if day == "pre_ld":
        values, refs = _pre_ld_values(study, inputs, opts["lymphodepletion_agents"], opts["max_lookback_days"],
                                      daily=opts["daily_value"])  # session 34
        for sid, vals in values.items():
            frames.append((sid, "pre_ld", refs[sid]["day"], vals))
    else:
        daily = _daily(_param_obs(study, inputs), opts["daily_value"])
        by: dict[tuple[str, int], dict[str, dict]] = {}
        for r in daily.iter_rows(named=True):
            by.setdefault((r["subject_id"], r["d"]), {})[r["param"]] = {
                "value": r["value"], "day": float(r["d"]), "ref": r["refs"][0] if r["refs"] else None}
        if day == "each":
            for (sid, d), vals in sorted(by.items()):
                frames.append((sid, "each", float(d), vals))
        elif isinstance(day, (int, float)):
            tol = int(opts["day_tolerance_days"])
            target = math.floor(day)
            for sid in _subject_ids(study):
                vals: dict[str, dict] = {}
                for p in inputs:
                    for off in sorted(range(-tol, tol + 1), key=lambda o: (abs(o), o)):
                        hit = by.get((sid, target + off), {}).get(p)
                        if hit is not None:
                            vals[p] = hit
                            break
                frames.append((sid, f"day {target}", float(target), vals))
        else:
            raise ValueError(f"day must be 'pre_ld', 'each' or a number, not {day!r}")
    rows = []
    recorded = _recorded(study)
    for sid, tp, d, vals in frames:
        row: dict[str, Any] = {"subject_id": sid, "timepoint": tp, "day": d}
        conv: dict[str, float | None] = {}
        for p, spec in inputs.items():
            v = vals.get(p)
            conv[p] = None if v is None else _from_canonical(v["value"], spec["unit"], p)
            row[spec["column"]] = conv[p]
            row[f"{spec['column']}_day"] = None if v is None else v["day"]
        missing = [p for p in inputs if conv[p] is None]
        done, parts, ev = [], [], []
        for sc in table["scores"]:
            need = sc["numerator"] + sc["denominator"]
            val = None
            if all(conv[p] is not None for p in need):
                den = math.prod(conv[p] for p in sc["denominator"])
                if den > 0:
                    val = math.prod(conv[p] for p in sc["numerator"]) / den
            row[sc["id"]] = val
            row[f"log{base:g}_{sc['id']}"] = math.log(val, base) if val else None
            if val is not None:
                done.append(sc["id"])
                terms = " x ".join(f"{_fmt(conv[p])} {inputs[p]['unit']}" for p in sc["numerator"])
                dens = " x ".join(f"{_fmt(conv[p])} {inputs[p]['unit']}" for p in sc["denominator"])
                parts.append(f"{sc['id']} = {terms} / {dens} = {_fmt(val)} (log{base:g} {_fmt(math.log(val, base))})")
                ev += [vals[p]["ref"] for p in need]
            else:
                why = "platelets 0" if all(conv[p] is not None for p in need) else \
                    "missing " + ", ".join(p for p in need if conv[p] is None)
                parts.append(f"{sc['id']} not computable ({why})")
        notes = []
        for p in inputs:
            if conv[p] is None or _canonical_unit(p)[0] == inputs[p]["unit"]:
                continue
            oval, ounit = recorded.get((sid, vals[p]["ref"]), (None, None))
            if ounit is not None and ounit.lower().replace(" ", "") == inputs[p]["unit"].lower().replace(" ", ""):
                continue  # recorded in the formula's unit: not converted (audit s27 item 12b)
            shown = _fmt(oval) if ounit is not None and oval is not None else _fmt(vals[p]["value"])
            notes.append(f"{p} {shown} {ounit or _canonical_unit(p)[0]} -> {_fmt(conv[p])} {inputs[p]['unit']}")
        row |= {"missing": missing, "rule": ", ".join(done) if done else None,
                "reason": "; ".join(parts) + (f" [converted: {'; '.join(notes)}]" if notes else "") + ".",
                "evidence": _uniq(ev)}
        rows.append(row)
    schema: dict[str, pl.DataType] = {"subject_id": pl.String, "timepoint": pl.String, "day": pl.Float64}
    for spec in inputs.values():
        schema |= {spec["column"]: pl.Float64, f"{spec['column']}_day": pl.Float64}
    for sc in table["scores"]:
        schema |= {sc["id"]: pl.Float64, f"log{base:g}_{sc['id']}": pl.Float64}
    schema |= {"missing": pl.List(pl.String), "rule": pl.String, "reason": pl.String, "evidence": EVIDENCE}
    if not rows:
        return _empty(schema)
    return pl.DataFrame(rows, schema=schema)


def _cond_params(criteria: list[dict]) -> set[str]:
    return {c["param"] for crit in criteria if crit.get("computable") for alt in crit["any"] for c in alt}


# IEC-HS: the pre-issue-14 code with the audited changes of session 26 (/work/notes/audit_crs_legacy,
# findings F4, F7; hand derivations in tests/test_hemato_audit_s26.py): a baseline without its value
# or ULN leaves "normal / abnormal at baseline" unknown (missing is not normal), the reason names the
# missing inputs, and the table's other_features (LDH > ULN, ...) are reported for adjudication.


def _eval_condition(c: dict, day_vals: dict[str, dict], base: dict[str, dict],
                    ignore_baseline: bool = False) -> tuple[bool | None, str, list[str], str | None]:
    """(holds, text, evidence, why) for one condition; holds is None when the data cannot decide, why names the missing input."""
    p, op = c["param"], c["op"]
    v = day_vals.get(p, {}).get("min" if op.startswith("<") else "max")
    if v is None:
        return None, f"no {p}", [], f"{p} not measured"
    b = base.get(p)
    check = "baseline" in c and not ignore_baseline
    status = None if b is None or b["uln"] is None else b["value"] > b["uln"]
    if check and status is not None and (c["baseline"] == "abnormal") != status:
        return False, "", [], None
    kind, k = c["compare"], float(c["value"])
    unit = _canonical_unit(p)[0]
    if kind == "value":
        ref, what = _to_canonical(k, c["unit"], p), f"{_fmt(k)} {c['unit']}"
    elif kind in ("uln_multiple", "lln_multiple"):
        lim = v["uln"] if kind == "uln_multiple" else v["lln"]
        name = "ULN" if kind == "uln_multiple" else "LLN"
        if lim is None:
            return None, f"{p} has no {name}", [], f"{p} without {name}"
        ref, what = k * lim, f"{_fmt(k)} x {name} ({_fmt(lim)})"
    elif kind == "baseline_multiple":
        if b is None:
            return None, f"no baseline {p}", [], f"no baseline {p}"
        ref, what = k * b["value"], f"{_fmt(k)} x baseline ({_fmt(b['value'])} on day {b['d']}, {b['bd'] - b['d']} day(s) before day {b['bd']})"
    else:
        raise ValueError(f"unknown comparison {kind!r}")
    holds = _CMP[op](v["value"], ref)
    if check and status is None:
        if not holds:
            return False, "", [], None
        return None, "", [], f"no baseline {p}" if b is None else f"baseline {p} without ULN"
    refs = [v["ref"]] + ([b["ref"]] if kind == "baseline_multiple" and b else [])
    return holds, f"{p} {_fmt(v['value'])} {unit} on day {v['d']} {op} {what}", refs, None


def _either_pairs(crit: dict) -> list[tuple[str, int, int]]:
    """(param, alternative if normal at baseline, alternative if abnormal): single-parameter pairs."""
    normal, abnormal = [], []
    for j, alt in enumerate(crit["any"]):
        ps = {c["param"] for c in alt}
        st = {c["baseline"] for c in alt if "baseline" in c}
        if len(ps) == 1 and len(st) == 1:
            (normal if st == {"normal"} else abnormal).append((next(iter(ps)), j))
    return [(p, jn, ja) for p, jn in normal for q, ja in abnormal if p == q]


def iec_hs_flags(study: Study, options: IecHsOptions | None = None) -> pl.DataFrame:
    """Days on which the data meet the computable IEC-HS criteria (Hines 2023) - a flag, not a diagnosis."""
    from cartlab.criteria import load_raw

    options = options or IecHsOptions()
    opts = options.resolved()
    table = load_criteria(options.criteria)
    key = [c for c in table["key"] if c["id"] not in options.exclude]
    sup = [c for c in table["supporting"] if c["id"] not in options.exclude]
    # the reported features are not in the old table: the shipped one's
    feats = [c for c in load_raw(options.criteria).get("other_features", [])
             if c["id"] not in options.exclude and c.get("computable")]
    adjud = [c["id"] for c in key + sup if not c.get("computable")] + [c["id"] for c in table.get("adjudication_only", [])]
    crit_params = _cond_params(key + sup)
    params = crit_params | _cond_params(feats)
    obs = _param_obs(study, params)
    lo_d = _daily(obs, "min").rename({"value": "min", "refs": "min_refs"})
    # session 29: the highest value's own lln/uln (spec: a reference range belongs to its row)
    hi_d = _daily(obs, "max").select("subject_id", "param", "d", pl.col("value").alias("max"), pl.col("refs").alias("max_refs"),
                                     pl.col("lln").alias("max_lln"), pl.col("uln").alias("max_uln"))
    daily = lo_d.join(hi_d, on=["subject_id", "param", "d"], how="left").sort("subject_id", "param", "d")
    series: dict[tuple[str, str], list[dict]] = {}
    for r in daily.iter_rows(named=True):
        series.setdefault((r["subject_id"], r["param"]), []).append(r)
    base_obs = obs.filter(pl.col("d") <= int(opts["baseline_day"])).sort(["day", "src_row"], nulls_last=True)
    base_obs = base_obs.with_columns(pl.lit(int(opts["baseline_day"])).alias("bd"))  # session 38: the age's day
    baseline: dict[str, dict[str, dict]] = {}
    for r in base_obs.iter_rows(named=True):
        baseline.setdefault(r["subject_id"], {})[r["param"]] = r
    w = int(opts["lab_window_days"])
    rows = []
    for sid in _subject_ids(study):
        days = sorted({r["d"] for (s, _), lst in series.items() if s == sid for r in lst if r["d"] >= int(opts["start_day"])})
        base = baseline.get(sid, {})
        for d in days:
            measured = any(r["d"] == d for p in crit_params for r in series.get((sid, p), []))
            day_vals: dict[str, dict] = {}
            for p in params:
                cands = [r for r in series.get((sid, p), []) if d - w <= r["d"] <= d]
                if cands:
                    mn = min(cands, key=lambda r: (r["min"], -r["d"]))
                    mx = max(cands, key=lambda r: (r["max"], r["d"]))
                    day_vals[p] = {
                        "min": {"value": mn["min"], "d": mn["d"], "lln": mn["lln"], "uln": mn["uln"], "ref": (mn["min_refs"] or [None])[0]},
                        "max": {"value": mx["max"], "d": mx["d"], "lln": mx["max_lln"], "uln": mx["max_uln"], "ref": (mx["max_refs"] or [None])[0]},
                    }
            met: dict[str, list[str]] = {"key": [], "supporting": [], "feature": []}
            opened = {"key": 0, "supporting": 0}  # criteria met or undecided
            not_eval, whys, texts, ftexts, ev = [], [], [], [], []
            for role, crits in (("key", key), ("supporting", sup), ("feature", feats)):
                for crit in crits:
                    if not crit.get("computable"):
                        continue
                    failed, hit_txt, why = 0, None, []  # alternatives with a condition that fails
                    for alt in crit["any"]:
                        res = [_eval_condition(c, day_vals, base) for c in alt]
                        if all(h is True for h, _, _, _ in res):
                            hit_txt = " and ".join(t for _, t, _, _ in res)
                            ev += [x for _, _, refs, _ in res for x in refs]
                            break
                        if any(h is False for h, _, _, _ in res):
                            failed += 1
                        else:
                            for h, _, _, y in res:
                                if h is None and y not in why:
                                    why.append(y)
                    if hit_txt is None:  # a baseline status unknown, and both readings met
                        for p, jn, ja in _either_pairs(crit):
                            b = base.get(p)
                            res = [_eval_condition(c, day_vals, base, ignore_baseline=True)
                                   for c in crit["any"][jn] + crit["any"][ja]]
                            if (b is None or b["uln"] is None) and all(h is True for h, _, _, _ in res):
                                hit_txt = (" and ".join(t for _, t, _, _ in res)
                                           + f" (baseline {p} above or below ULN unknown: met either way)")
                                ev += [x for _, _, refs, _ in res for x in refs]
                                break
                    if hit_txt is not None:
                        met[role].append(crit["id"])
                        (ftexts if role == "feature" else texts).append(f"{crit['id']}: {hit_txt}")
                        if role != "feature":
                            opened[role] += 1
                    elif role != "feature" and failed < len(crit["any"]):  # some alternative is undecided: not false
                        not_eval.append(crit["id"])
                        whys.append(f"{crit['id']} ({'; '.join(why)})")
                        opened[role] += 1
            if not measured and not met["feature"]:
                continue  # a day with only a reported feature's parameter, not met: no row
            n_min = int(opts["min_supporting"])
            flag = bool(met["key"]) and len(met["supporting"]) >= n_min
            if not flag and opened["key"] and opened["supporting"] >= n_min:
                flag = None  # the undecided criteria could still raise the flag
            if flag is None:
                reason = (f"not evaluable: the data cannot decide {', '.join(whys)}, and with them a key "
                          f"(ferritin) criterion and >= {n_min} supporting criterion(s) could be met"
                          + (f"; met: {'; '.join(texts)}" if texts else "") + ".")
            elif flag:
                reason = (f"data meet {', '.join(met['key'])} and {len(met['supporting'])} supporting criterion(s) "
                          f"({'; '.join(texts)}) -> flagged for review, not a diagnosis; needs adjudication of "
                          f"{', '.join(adjud)}.")
                # session 34: a flag that needs a proxy criterion (status proxy) to reach n_min names it
                proxies = sorted(c["id"] for c in sup if c.get("status") == "proxy")
                if len([c for c in met["supporting"] if c not in proxies]) < n_min:
                    reason += (f" Met via the proxy criterion ({', '.join(proxies)}: cartlab's operationalisation, "
                               "status proxy); without it the flag would not be raised (leave it out with "
                               "the option iec_hs.exclude).")
            elif texts:
                reason = (f"not flagged: {'; '.join(texts)}; needs a key (ferritin) criterion and "
                          f">= {opts['min_supporting']} supporting criterion(s).")
            else:
                reason = "not flagged: no computable IEC-HS criterion met."
            if flag is False and adjud:  # session 33: the criteria never computed are named
                reason += f" Not assessed (adjudication): {', '.join(adjud)}."
            if ftexts:
                reason += f" Reported for adjudication, never used for the flag: {'; '.join(ftexts)}."
            rows.append({
                "subject_id": sid, "day": d, "iec_hs_flag": flag, "key_met": met["key"],
                "supporting_met": met["supporting"], "not_evaluable": not_eval, "needs_adjudication": adjud,
                "adjudication_features": met["feature"],
                # the decision and the criteria met: the row's status is that of the least verified
                "rule": "; ".join(["iec_hs.flag" if flag else "iec_hs.not_evaluable" if flag is None else "iec_hs.no_flag",
                                   *met["key"], *met["supporting"]]),
                "reason": reason,
                "evidence": _uniq(ev) if (flag or texts or ftexts) else [],
            })
    schema = {"subject_id": pl.String, "day": pl.Int64, "iec_hs_flag": pl.Boolean, "key_met": pl.List(pl.String),
              "supporting_met": pl.List(pl.String), "not_evaluable": pl.List(pl.String),
              "needs_adjudication": pl.List(pl.String), "adjudication_features": pl.List(pl.String),
              "rule": pl.String, "reason": pl.String, "evidence": EVIDENCE}
    if not rows:
        return _empty(schema)
    return pl.DataFrame(rows, schema=schema)
