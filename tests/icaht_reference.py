"""ICAHT and T-ICAHT as they were before issue 14 (commit 45b3ff1), kept as an oracle.

It reads the old criteria tables (tests/fixtures/icaht_v1) and grades their rule rows as the old
code did (``domain_grade``, ``rule_text``, below).

tests/test_hemato_vectorised.py checks that :func:`cartlab.grading.icaht.icaht` and
:func:`cartlab.grading.t_icaht.t_icaht` (and their daily series) give identical frames. The code below
is the old implementation of what changed, verbatim (the old event windows, late features and
reasons, and the functions calling them); what did not change is imported. Do not "fix" it here.
Session 30: daily_series' `source` names a not-measured day's word (simulated, synthetic,
reconstructed) instead of "measured"; the two checks of a recorded day follow (marked "session 30").
Session 34 (T-ICAHT, deliberate): a transfused count below a masked level is below every higher
level too; the late "or nontransient thrombocytopenia" alternative (option late_nontransient, rules
*_nontransient) and the not-evaluable late reason; each change is marked "session 34" and is a
row loop written from the rule's words, not from the engine's code.
Session 34 (N-ICAHT, deliberate; review s34 D1-D4, D9, D10): "never above" needs every day from the
data's start to the earliest of day 30, death and last follow-up known (_never_above, a row loop);
the late "or nontransient neutropenia" alternative (option late_nontransient, rules *_nontransient:
_t_nontransient on the ANC flags) and the not-evaluable late reason; death ends the late window (the
table's late_end_events). Each change is marked "session 34".
Session 36 (N-ICAHT and T-ICAHT, deliberate; review s36 A1): a window graded 0 names its row
<prefix>.<window>.g0, not <prefix>.<window>.not_evaluable; marked "session 36".
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import polars as pl

from cartlab.criteria import load_table
from cartlab.grading.hemato_common import (
    CMP,
    daily_series,
    empty,
    fmt,
    in_window,
    to_canonical,
)
from cartlab.grading.icaht import IcahtOptions, _early_features
from cartlab.grading.t_icaht import TIcahtOptions, _sym, _window_features
from cartlab.model import Study
from cartlab.provenance import EVIDENCE, evidence_ref, unique_refs
from hemato_reference import load_criteria, subject_ids, transfusion_days

# ---------------------------------------------------------------------------------------------
# the old tables' rule rows (tests/fixtures/icaht_v1), graded and read as the old code did


_OPS = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b,
        "==": lambda a, b: a == b, "!=": lambda a, b: a != b}


def _value(v: Any, options: dict[str, Any]) -> Any:
    return options[v[1:]] if isinstance(v, str) and v.startswith("$") else v


def condition(cond: dict[str, Any], options: dict[str, Any]) -> pl.Expr:
    """One ``{feature, op, value}`` condition (null -> False)."""
    return _OPS[cond["op"]](pl.col(cond["feature"]), _value(cond["value"], options)).fill_null(False)


def rule_text(rule: dict[str, Any], options: dict[str, Any]) -> str:
    return rule.get("text", rule["id"]).format(**options)


def domain_grade(rules: list[dict[str, Any]], options: dict[str, Any], name: str) -> list[pl.Expr]:
    """``<name>_grade`` (0 when no rule holds) and ``<name>_rule``: rules tried from the highest grade down."""
    ordered = sorted(rules, key=lambda r: -int(r["grade"]))
    grade: pl.Expr = pl.lit(0, dtype=pl.Int64)
    rid: pl.Expr = pl.lit(None, dtype=pl.String)
    for r in reversed(ordered):  # build so that the highest grade is checked first
        cond = pl.all_horizontal([condition(c, options) for c in r["when"]])
        grade = pl.when(cond).then(pl.lit(int(r["grade"]), dtype=pl.Int64)).otherwise(grade)
        rid = pl.when(cond).then(pl.lit(r["id"])).otherwise(rid)
    return [grade.alias(f"{name}_grade"), rid.alias(f"{name}_rule")]


def _levels(table: dict[str, Any]) -> dict[str, float]:
    return {key.split("_", 1)[1]: to_canonical(v["value"], v["unit"], "NEUT") for key, v in table["levels"].items()}


def _t_levels(table: dict[str, Any]) -> dict[str, float]:
    return {key.split("_", 1)[1]: to_canonical(v["value"], v["unit"], "PLAT") for key, v in table["levels"].items()}


def _early_level_names(table: dict[str, Any], levels: dict[str, float]) -> list[str]:
    used = set()
    for rule in table["early"]:
        for c in rule["when"]:
            m = re.fullmatch(r"(?:anc_le_(\w+)_days|never_above_(\w+))", c["feature"])
            if m:
                used.add(m.group(1) or m.group(2))
    return sorted(used, key=lambda n: -levels[n])


def _used(rules: list[dict], pattern: str) -> list[str]:
    return sorted({m.group(1) for r in rules for c in r["when"] if (m := re.fullmatch(pattern, c["feature"]))},
                  key=lambda n: -float(n))

# ---------------------------------------------------------------------------------------------
# durations below a threshold


# ---------------------------------------------------------------------------------------------
# windows ending at clinical events


def event_windows(study: Study, sids: list[str], start: float, end_day: float, events: Iterable[str],
                  at_last_followup: bool, min_event_day: float | None = None) -> dict[str, dict[str, Any]]:
    """Per subject: ``start``, ``end`` (the earliest of ``end_day``, the first of ``events`` - only
    those on or after ``min_event_day`` when given - and, when ``at_last_followup``, the last
    follow-up day), ``why`` (what ends it) and ``evidence`` (the rows of the ending events)."""
    ev = study.events.filter(pl.col("event").is_in(list(events)) & pl.col("day").is_not_null())
    if min_event_day is not None:
        ev = ev.filter(pl.col("day") >= float(min_event_day))
    ev = ev.with_columns(evidence_ref().alias("ref")).sort("day")
    lfu = dict(zip(study.subjects["subject_id"].to_list(), study.subjects["last_followup_day"].to_list())) \
        if study.subjects.height else {}
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for row in ev.iter_rows(named=True):
        by_subject.setdefault(row["subject_id"], []).append(row)
    out: dict[str, dict[str, Any]] = {}
    for sid in sids:
        ends: list[tuple[float, str, list[str]]] = [(float(end_day), f"day {end_day:g}", [])]
        for row in by_subject.get(sid, ()):
            ends.append((float(row["day"]), row["event"], unique_refs([row["ref"]])))
        if at_last_followup and lfu.get(sid) is not None:
            ends.append((float(lfu[sid]), "last follow-up", []))
        end = min(e[0] for e in ends)
        why = [e for e in ends if e[0] == end]
        out[sid] = {"start": float(start), "end": end, "why": ", ".join(w[1] for w in why),
                    "evidence": unique_refs(r for w in why for r in w[2])}
    return out


def windows_frame(wins: dict[str, dict[str, Any]]) -> pl.DataFrame:
    """``subject_id``, ``_ws``, ``_we`` (window start and end) of :func:`event_windows`."""
    return pl.DataFrame(
        {"subject_id": list(wins), "_ws": [w["start"] for w in wins.values()], "_we": [w["end"] for w in wins.values()]},
        schema={"subject_id": pl.String, "_ws": pl.Float64, "_we": pl.Float64},
    )


def _late_windows(study: Study, opts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return event_windows(study, subject_ids(study), opts["late_start_day"], opts["late_end_day"],
                         opts["late_end_events"], opts["late_end_at_last_followup"],
                         min_event_day=opts["late_end_events_from_day"])


def icaht_daily(study: Study, options: IcahtOptions | None = None) -> pl.DataFrame:
    """The daily ANC series ICAHT is graded on, one row per subject and calendar day.

    Columns: ``day``, ``anc`` (10^9/L), ``source`` (measured | interpolated | missing),
    ``prev_day``/``next_day`` (interpolation neighbours), ``window`` (early | late | None),
    ``anc_le_<level>`` flags for every level of the criteria table, ``reason`` and ``evidence`` (the
    NEUT row of the day, or the two neighbouring rows an interpolated value comes from).
    """
    options = options or IcahtOptions()
    opts = options.resolved()
    table = load_criteria(options.criteria)
    levels = _levels(table)
    daily = daily_series(study, "NEUT", opts, "ANC").rename({"value": "anc"})
    lo, hi = opts["early_window"]
    daily = daily.join(windows_frame(_late_windows(study, opts)), on="subject_id", how="left").with_columns(
        pl.when((pl.col("day") >= lo) & (pl.col("day") <= hi)).then(pl.lit("early"))
        .when(in_window(opts["late_window_end_inclusive"])).then(pl.lit("late"))
        .otherwise(pl.lit(None, dtype=pl.String)).alias("window"),
        *[(pl.col("anc") <= thr if opts["inclusive"] else pl.col("anc") < thr).alias(f"anc_le_{name}")
          for name, thr in levels.items()],
    )
    # session 32: the engine reads censored ANC results ("<0.1"); the studies this oracle is compared
    # on have none (tests/test_censored_counts_s32.py checks that reading by hand)
    daily = daily.with_columns(pl.lit(None, dtype=pl.String).alias("anc_censored"))
    cols = ["subject_id", "day", "anc", "anc_censored", "source", "prev_day", "next_day", "window"]
    cols += [f"anc_le_{n}" for n in levels] + ["reason", "evidence"]
    return daily.select(cols).sort("subject_id", "day")


def _late_features(daily: pl.DataFrame, sids: list[str], opts: dict[str, Any], levels: dict[str, float],
                   wins: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    cmp = CMP["<=" if opts["inclusive"] else "<"]
    meas = daily.filter(~pl.col("source").is_in(["interpolated", "missing"]) & (pl.col("window") == "late"))  # session 30
    by_sid = {k[0]: g for k, g in meas.partition_by("subject_id", as_dict=True).items()}
    rows = []
    for sid in sids:
        w = wins[sid]
        g = by_sid.get(sid)
        pts = [] if g is None else sorted(((r["anc"], r["day"], r["evidence"]) for r in g.iter_rows(named=True)),
                                          key=lambda t: (t[0], t[1]))
        row: dict[str, Any] = {
            "subject_id": sid, "late_window_start": float(w["start"]), "late_window_end": w["end"],
            "late_window_end_reason": w["why"], "late_n_measurements": len(pts),
            "late_anc_nadir": pts[0][0] if pts else None, "late_anc_nadir_day": pts[0][1] if pts else None,
            "late_anc_confirmed": pts[1][0] if len(pts) > 1 else None,
            "late_anc_confirmed_day": pts[1][1] if len(pts) > 1 else None,
            "late_evidence": unique_refs([r for p in sorted(pts, key=lambda t: t[1]) for r in p[2]] + w["evidence"]),
        }
        for name, thr in levels.items():
            row[f"late_n_anc_{name}"] = sum(1 for p in pts if cmp(p[0], thr))
        rows.append(row)
    return rows


def icaht(study: Study, options: IcahtOptions | None = None) -> pl.DataFrame:
    """Early and late ICAHT grade per subject (EHA/EBMT 2023; see ``criteria/icaht_2023.yaml``).

    Columns: ``icaht_early_grade``/``icaht_late_grade`` (Int64, null when not evaluable), the early
    durations ``anc_le_<level>_days`` (cumulative days by default, or the longest run) with the first
    and last day counted (``_start``/``_end``), the number of ``_episodes`` and the non-stable
    ``_recovery_days`` counted, ``never_above_500``, the late window
    (``late_window_start``/``_end``/``_end_reason``), ``late_n_measurements``, ``late_anc_nadir``
    (lowest) and ``late_anc_confirmed`` (the second lowest: the worst level reached by two
    measurements), ``early_rule``/``early_reason``/``early_evidence``, the same for ``late_``, and
    the combined ``rule``, ``reason`` and ``evidence`` (the NEUT rows used).
    """
    options = options or IcahtOptions()
    opts = options.resolved()
    table = load_criteria(options.criteria)
    levels = _levels(table)
    sids = subject_ids(study)
    if not sids:
        # the empty frame has the columns of a non-empty one (icaht_early_grade_max, early_unknown_days: a
        # study without subjects feeds the summary's icaht_early_grade_max too; session 28)
        return empty({"subject_id": pl.String, "icaht_early_grade": pl.Int64, "icaht_late_grade": pl.Int64,
                      "icaht_early_grade_max": pl.Int64, "early_unknown_days": pl.Int64,
                      "rule": pl.String, "reason": pl.String, "evidence": EVIDENCE})
    daily = icaht_daily(study, options)
    wins = _late_windows(study, opts)
    early = _early_features(daily, sids, opts, levels)
    # session 34: "never above" from the rule's words (row loop), replacing the engine's column
    na = _never_above(study, daily, sids, opts, levels)
    early = early.with_columns(*[pl.Series(f"never_above_{n}", [na[sid][n] for sid in sids], dtype=pl.Boolean)
                                 for n in levels])
    late = pl.DataFrame(_late_features(daily, sids, opts, levels, wins), infer_schema_length=None)
    f = early.join(late, on="subject_id", how="left")
    # session 34: "Two or more laboratory tests or nontransient neutropenia" (the T-ICAHT row loop on ANC)
    # a late day interpolated toward an ANC after the late window's end is unknown (not below)
    ends = {sid: wins[sid]["end"] for sid in sids}
    masked = pl.DataFrame([
        {**r, **({f"anc_le_{n}": None for n in levels} | {"source": "missing", "anc": None}
                 if r["window"] == "late" and r["source"] == "interpolated" and r["next_day"] is not None
                 and ends.get(r["subject_id"]) is not None
                 and (r["next_day"] > ends[r["subject_id"]] if opts["late_window_end_inclusive"]
                      else r["next_day"] >= ends[r["subject_id"]]) else {})}
        for r in daily.iter_rows(named=True)], schema=daily.schema)
    nt = _t_nontransient(masked.rename({f"anc_le_{n}": f"plt_lt_{n}" for n in levels}), sids, opts, levels)
    f = f.with_columns(*[pl.Series(f"late_nontransient_anc_{n}", [nt[sid][n] for sid in sids], dtype=pl.Int64)
                         for n in levels])
    late_rules = []
    for r in table["late"]:
        late_rules.append(r)
        if opts.get("late_nontransient"):
            when = [{**c, "feature": c["feature"].replace("late_n_anc_", "late_nontransient_anc_"), "value": 1}
                    if c["feature"].startswith("late_n_anc_") else c for c in r["when"]]
            late_rules.append({**r, "id": r["id"] + "_nontransient", "when": when})
    f = f.with_columns(*domain_grade(table["early"], opts, "early"), *domain_grade(late_rules, opts, "late"))
    need = int(opts["late_min_measurements"])
    late_ok = (pl.col("late_n_measurements") >= need) | pl.any_horizontal(
        [pl.col(f"late_nontransient_anc_{n}") > 0 for n in levels])
    f = f.with_columns(
        pl.when(pl.col("early_n_days") > 0).then(pl.col("early_grade")).otherwise(None).alias("icaht_early_grade"),
        pl.when(pl.col("early_n_days") > 0).then(pl.col("early_rule")).otherwise(None).alias("early_rule"),
        pl.when(late_ok).then(pl.col("late_grade")).otherwise(None).alias("icaht_late_grade"),
        pl.when(late_ok).then(pl.col("late_rule")).otherwise(None).alias("late_rule"),
    )
    texts = {r["id"]: rule_text(r, opts) for r in table["early"] + table["late"]}
    texts |= {k: v for k, v in load_table(options.criteria).texts(("late",), opts).items() if k.endswith("_nontransient")}
    early_levels = _early_level_names(table, levels)
    never_used = [n for n in early_levels
                  if any(c["feature"] == f"never_above_{n}" for r in table["early"] for c in r["when"])]
    sym = "<=" if opts["inclusive"] else "<"
    reasons = [(_early_reason(r, opts, levels, early_levels, never_used, texts, sym),
                _late_reason(r, opts, levels, texts, sym)) for r in f.iter_rows(named=True)]
    f = f.with_columns(
        pl.Series("early_reason", [x[0] for x in reasons], dtype=pl.String),
        pl.Series("late_reason", [x[1] for x in reasons], dtype=pl.String),
    )
    # session 36 (deliberate; review s36 A1): an evaluable window graded 0 names the criteria row
    # icaht.<window>.g0 (early_rule / late_rule and rule); not_evaluable only an empty grade
    f = f.with_columns(*[pl.Series(f"{w}_rule", [
        r[f"{w}_rule"] if r[f"icaht_{w}_grade"] != 0 or r[f"{w}_rule"] else f"icaht.{w}.g0"
        for r in f.iter_rows(named=True)], dtype=pl.String) for w in ("early", "late")])
    f = f.with_columns(
        pl.concat_str(pl.lit("early: "), pl.col("early_rule").fill_null("icaht.early.not_evaluable"),
                      pl.lit("; late: "), pl.col("late_rule").fill_null("icaht.late.not_evaluable")).alias("rule"),
        pl.concat_str(pl.lit("Early: "), pl.col("early_reason"), pl.lit(" Late: "), pl.col("late_reason"),
                      pl.col("subject_id").replace_strict(_gcsf(study, opts), default="")).alias("reason"),
        pl.concat_list("early_evidence", "late_evidence").list.unique(maintain_order=True).alias("evidence"),
    )
    lvl_cols = [f"anc_le_{n}_{c}" for n in early_levels for c in ("days", "start", "end", "episodes", "recovery_days")]
    cols = (["subject_id", "icaht_early_grade", "icaht_late_grade"] + lvl_cols
            + [f"never_above_{n}" for n in never_used]
            + ["late_window_start", "late_window_end", "late_window_end_reason", "late_n_measurements",
               "late_anc_nadir", "late_anc_nadir_day", "late_anc_confirmed", "late_anc_confirmed_day",
               "early_rule", "early_reason", "early_evidence", "late_rule", "late_reason", "late_evidence",
               "rule", "reason", "evidence"])
    return f.select(cols).cast({"icaht_early_grade": pl.Int64, "icaht_late_grade": pl.Int64,
                                "early_evidence": EVIDENCE, "late_evidence": EVIDENCE, "evidence": EVIDENCE})


def _gcsf(study: Study, opts: dict) -> dict[str, str]:
    """Session 38 (review s38 C1): the G-CSF days of days early_window[0]..late_end_day, named in the
    reason; the ANC is graded as measured (icaht.gcsf_not_considered)."""
    lo, hi = float(opts["early_window"][0]), float(opts["late_end_day"])
    iv = study.interventions
    if iv.is_empty() or "category" not in iv.columns:
        return {}
    out: dict[str, list[str]] = {}
    rows = sorted((r for r in iv.with_columns(evidence_ref().alias("_ref")).iter_rows(named=True)
                   if r["category"] == "gcsf" and r["start_day"] is not None), key=lambda r: (r["subject_id"], r["start_day"]))
    for r in rows:
        end = r.get("end_day") if r.get("end_day") is not None else r["start_day"]
        if r["start_day"] > hi or end < lo:
            continue
        days = f"day {int(r['start_day'])}" if r["start_day"] == end else f"days {int(r['start_day'])}-{int(end)}"
        agent = f" ({r['agent']})" if r.get("agent") is not None else ""
        out.setdefault(r["subject_id"], []).append(f"G-CSF{agent} on {days} ({r['_ref'] or 'no row'})")
    return {sid: " " + "; ".join(t) + ": counts graded as measured (icaht.gcsf_not_considered)." for sid, t in out.items()}


def _early_reason(r: dict, opts: dict, levels: dict[str, float], names: list[str], never_used: list[str],
                  texts: dict[str, str], sym: str) -> str:
    lo, hi = opts["early_window"]
    if not r["early_n_days"]:
        return f"not evaluable: no ANC in days {lo}-{hi} (measured or interpolated)."
    parts = [duration_text(r, f"anc_le_{name}", f"ANC {sym} {fmt(levels[name])}", opts) for name in names]
    for name in never_used:
        if r[f"never_above_{name}"]:
            parts.insert(0, f"ANC never above {fmt(levels[name])} in days {lo}-{hi} "
                            f"({r['early_n_days']} days with data)")
    g = r["icaht_early_grade"]
    why = texts.get(r["early_rule"], "no ICAHT criterion met") if r["early_rule"] else "no ICAHT criterion met"
    return f"{'; '.join(parts)} -> grade {g} ({why})."


def _late_reason(r: dict, opts: dict, levels: dict[str, float], texts: dict[str, str], sym: str) -> str:
    ws, we = int(r["late_window_start"]), r["late_window_end"]
    win = f"days {ws}-{fmt(we)} (window ends: {r['late_window_end_reason']})"
    n = r["late_n_measurements"]
    need = int(opts["late_min_measurements"])
    if we < ws:
        return (f"not evaluable: the late window is empty (it ends on day {fmt(we)}, "
                f"{r['late_window_end_reason']}, before day {ws}).")
    if r["icaht_late_grade"] is None:  # session 34: fewer tests (on different days) and no nontransient run
        also = (f", and no nontransient neutropenia (a run at or below a level continuing from the early window or "
                f"lasting >= {opts['stable_recovery_days']} days)" if opts.get("late_nontransient") else "")
        return f"not evaluable: {n} ANC measurement(s) in {win}, {need} needed on different days{also}."
    lowest = f"lowest ANC {fmt(r['late_anc_nadir'])} on day {r['late_anc_nadir_day']}, second lowest " \
             f"{fmt(r['late_anc_confirmed'])} on day {r['late_anc_confirmed_day']}"
    if n < 2:  # session 34: graded on a nontransient run with one measurement or none
        lowest = (f"lowest ANC {fmt(r['late_anc_nadir'])} on day {r['late_anc_nadir_day']} (the only measurement)"
                  if n == 1 else "no measurement in the window")
    g = r["icaht_late_grade"]
    if r["late_rule"]:
        return f"{n} measurements in {win}; {lowest} -> grade {g} ({texts[r['late_rule']]})."
    top = max(levels.values())
    where = "at or below" if sym == "<=" else "below"
    return f"{n} measurements in {win}; {lowest}; fewer than {need} {where} {fmt(top)} -> grade 0."


def _never_above(study: Study, daily: pl.DataFrame, sids: list[str], opts: dict, levels: dict[str, float]) -> dict:
    """Session 34, row loop: per subject and level, whether "ANC never above the level in days 0-30"
    holds: at least one day with an ANC (measured or interpolated) in days 0-30, every such day at or
    below the level, the first by never_above_data_from_day (day 0 with never_above_requires_full_window),
    and every day from the first to E known, E = the earliest of day 30, death and last follow-up."""
    lo, hi = (int(x) for x in opts["early_window"])
    end = {sid: hi for sid in sids}
    for sid, day in study.events.filter(pl.col("event") == "death").select("subject_id", "day").iter_rows():
        if day is not None and sid in end:
            end[sid] = min(end[sid], math.floor(day))
    # session 40 (review s40 A1): the last follow-up ends the window only with
    # never_above_window_end=death_or_last_followup (default death: the earliest of day 30 and death)
    for sid, lfu in study.subjects.select("subject_id", "last_followup_day").iter_rows():
        if lfu is not None and sid in end and opts.get("never_above_window_end") == "death_or_last_followup":
            end[sid] = min(end[sid], math.floor(lfu))
    known: dict[str, dict[int, dict]] = {sid: {} for sid in sids}
    for r in daily.filter(pl.col("day").is_between(lo, hi)).iter_rows(named=True):
        if r["anc"] is not None or r["anc_censored"] is not None:
            known.setdefault(r["subject_id"], {})[r["day"]] = r
    out = {}
    for sid in sids:
        days = known.get(sid, {})
        out[sid] = {}
        for n in levels:
            if not days:
                out[sid][n] = False
                continue
            first = min(days)
            starts = first == lo if opts["never_above_requires_full_window"] else (
                first <= opts["never_above_data_from_day"] and first <= end[sid])
            covered = all(d in days for d in range(first, end[sid] + 1))
            out[sid][n] = bool(starts and covered and all(bool(r[f"anc_le_{n}"]) for r in days.values()))
    return out


def duration_text(r: dict, prefix: str, what: str, opts: dict) -> str:
    """A sentence part for one level's duration: "<what> on 14 days in total (days 1-17, ...)"."""
    n = r[f"{prefix}_days"]
    if not n:
        return f"{what} on no day"
    span = f"days {r[f'{prefix}_start']}-{r[f'{prefix}_end']}"
    rec = r[f"{prefix}_recovery_days"]
    stable = opts["stable_recovery_days"]
    if opts["duration"] == "cumulative":
        eps = r[f"{prefix}_episodes"]
        extra = f", {rec} days of non-stable recovery (< {stable} days) counted" if rec else ""
        return f"{what} on {n} days in total ({span}, {eps} episode{'s' if eps != 1 else ''}{extra})"
    joined = f", joined across recoveries shorter than {stable} days" if r[f"{prefix}_joined"] else ""
    return f"{what} for {n} days (longest run, {span}{joined})"


def _t_windows(study: Study, sids: list[str], opts: dict[str, Any]) -> tuple[dict, dict, pl.DataFrame]:
    """(early windows, late windows, frame of subject_id, _el (last early day), _ws, _we)."""
    lo, hi = opts["early_window"]
    early = event_windows(study, sids, lo, hi, opts["censor_events"], False, min_event_day=lo)
    for w in early.values():
        end = w["end"]
        last = math.floor(end) if (opts["censor_day_inclusive"] or end == hi) else math.ceil(end) - 1
        w["last"] = min(hi, last)
    late = event_windows(study, sids, opts["late_start_day"], opts["late_end_day"], opts["late_end_events"],
                         opts["late_end_at_last_followup"], min_event_day=lo)
    frame = windows_frame(late).join(
        pl.DataFrame({"subject_id": list(early), "_el": [w["last"] for w in early.values()]},
                     schema={"subject_id": pl.String, "_el": pl.Int64}), on="subject_id", how="left")
    return early, late, frame


def _censor_after_end(daily: pl.DataFrame, early_w: dict, late_w: dict, opts: dict[str, Any]) -> pl.DataFrame:
    """Session 28 audit, finding 6 (a row loop, not the engine's code): a day of a censored window
    (ended by an event or the last follow-up, not its nominal day) interpolated toward a count after
    the window's last day has no value (Rejeski 2025 Table 1 footnote: "censoring at the time of
    disease progression")."""
    hi, late_end = opts["early_window"][1], opts["late_end_day"]
    rows = daily.to_dicts()
    nxt: list[int | None] = [None] * len(rows)
    last: dict[str, int | None] = {}
    for i in range(len(rows) - 1, -1, -1):
        r = rows[i]
        if r["source"] not in ("interpolated", "missing"):  # session 30: a simulated/synthetic day is recorded too
            last[r["subject_id"]] = r["day"]
        nxt[i] = last.get(r["subject_id"])
    for i, r in enumerate(rows):
        sid, cut = r["subject_id"], None
        if r["window"] == "early" and early_w[sid]["why"] != f"day {hi:g}":
            cut, why = early_w[sid]["last"], early_w[sid]["why"]
        elif r["window"] == "late" and late_w[sid]["why"] != f"day {late_end:g}":
            we = late_w[sid]["end"]
            cut = math.floor(we) if opts["late_window_end_inclusive"] else math.ceil(we) - 1
            why = late_w[sid]["why"]
        if cut is not None and r["source"] == "interpolated" and nxt[i] is not None and nxt[i] > cut:
            r.update(plt=None, source="missing", evidence=[],
                     reason=f"no PLT: the next count (day {nxt[i]}) is after the {r['window']} window's censored "
                            f"end (day {int(cut)}: {why}) and is not used")
    return pl.DataFrame(rows, schema=daily.schema)


def t_icaht_daily(study: Study, options: TIcahtOptions | None = None) -> pl.DataFrame:
    """The daily platelet series T-ICAHT is graded on, one row per subject and calendar day.

    Columns: ``day``, ``plt`` (10^9/L), ``source`` (measured | interpolated | missing),
    ``prev_day``/``next_day``, ``transfusion_supported`` (a platelet transfusion on this day or the
    ``platelet_transfusion_free_days`` before it), ``below_by_transfusion`` (the value is at or above
    a ``transfusion_supported_levels`` level but counts below it because of that transfusion),
    ``window`` (early | late | None), ``plt_lt_<level>`` (below the level, or transfusion-supported
    at a ``transfusion_supported_levels`` level; null when the day has no value), ``reason`` and
    ``evidence`` (PLAT rows, and the transfusion rows when they make the day count below).
    """
    options = options or TIcahtOptions()
    opts = options.resolved()
    levels = _t_levels(load_criteria(options.criteria))
    unknown = [n for n in opts["transfusion_supported_levels"] if n not in levels]
    if unknown:
        raise ValueError(f"transfusion_supported_levels {unknown} not among the levels {list(levels)}")
    sids = subject_ids(study)
    daily = daily_series(study, "PLAT", opts, "PLT").rename({"value": "plt"})
    free = int(opts["platelet_transfusion_free_days"])
    tx = transfusion_days(study, opts["platelet_transfusion_categories"])
    cover = (tx.with_columns(pl.int_ranges("d", pl.col("d") + free + 1).alias("day")).explode("day")
             .group_by("subject_id", "day").agg(pl.col("ref").drop_nulls().unique(maintain_order=True).alias("tx_refs")))
    early_w, late_w, win = _t_windows(study, sids, opts)
    lo = opts["early_window"][0]
    daily = daily.join(cover, on=["subject_id", "day"], how="left").join(win, on="subject_id", how="left")
    daily = daily.with_columns(
        pl.when((pl.col("day") >= lo) & (pl.col("day") <= pl.col("_el"))).then(pl.lit("early"))
        .when(in_window(opts["late_window_end_inclusive"])).then(pl.lit("late"))
        .otherwise(pl.lit(None, dtype=pl.String)).alias("window"))
    daily = _censor_after_end(daily, early_w, late_w, opts)
    supported = pl.col("tx_refs").is_not_null() & (pl.col("tx_refs").list.len() > 0)
    below = {n: (pl.col("plt") <= thr) if opts["inclusive"] else (pl.col("plt") < thr) for n, thr in levels.items()}
    masked = list(opts["transfusion_supported_levels"])
    # session 33: a supported count is below a masked level only when the patient's own count before
    # the transfusion (the last recorded count on or before its day that no earlier transfusion
    # supports) was below it; otherwise unknown there. Row loop, written independently of the engine.
    lt = (lambda v, t: v <= t) if opts["inclusive"] else (lambda v, t: v < t)
    tx_days: dict[str, list[int]] = {}
    for sid, d in tx.select("subject_id", "d").unique().iter_rows():
        tx_days.setdefault(sid, []).append(int(d))
    own: dict[str, list[tuple[int, float]]] = {}
    for sid, day, v, src in daily.select("subject_id", "day", "plt", "source").iter_rows():
        if v is None or src in ("interpolated", "missing"):
            continue
        if any(t < day <= t + free for t in tx_days.get(sid, [])):
            continue
        own.setdefault(sid, []).append((int(day), float(v)))
    pre_rows = []
    for sid, days in tx_days.items():
        for t in days:
            before = [v for d, v in sorted(own.get(sid, [])) if d <= t]
            for day in range(t, t + free + 1):
                pre_rows.append({"subject_id": sid, "day": day,
                                 **{f"_pre_{n}": bool(before) and lt(before[-1], levels[n]) for n in masked}})
    pre_schema = {"subject_id": pl.String, "day": pl.Int64, **{f"_pre_{n}": pl.Boolean for n in masked}}
    pre = (pl.DataFrame(pre_rows, schema=pre_schema, orient="row").group_by("subject_id", "day")
           .agg(*[pl.col(f"_pre_{n}").any() for n in masked]))
    daily = daily.join(pre, on=["subject_id", "day"], how="left")
    pre_of = {n: pl.col(f"_pre_{n}").fill_null(False) for n in masked}
    flags = [
        (pl.when(pl.col("plt").is_null()).then(None)
         .when(below[n]).then(True)
         .when(supported & pre_of[n]).then(True) if n in masked else
         pl.when(pl.col("plt").is_null()).then(None).when(below[n]).then(True))
        .pipe(lambda e, n=n: e.when(supported).then(None).otherwise(False) if n in masked else e.otherwise(False))
        .alias(f"plt_lt_{n}") for n in levels
    ]
    # session 34: below a masked level by transfusion -> below every higher level too (review s33 finding 4)
    for i, n in enumerate(levels):
        lower = [m for m in masked if levels[m] < levels[n]]
        if n not in masked and lower:
            flags[i] = (pl.when(pl.col("plt").is_not_null() & supported & pl.any_horizontal([pre_of[m] for m in lower]))
                        .then(True).otherwise(flags[i]).alias(f"plt_lt_{n}"))
    # a value that is below a masked level only because a transfusion supports it
    not_below = ~pl.all_horizontal([below[n] for n in masked] or [pl.lit(True)])
    by_tx = (supported & pl.col("plt").is_not_null() & not_below
             & pl.all_horizontal([pre_of[n] for n in masked] or [pl.lit(False)]))
    open_tx = supported & pl.col("plt").is_not_null() & not_below & ~by_tx
    lv = "/".join(fmt(levels[n]) for n in masked)
    note = (pl.when(by_tx).then(pl.lit(
        f"; a platelet transfusion within {free} days after an own count below {lv}: not a recovery, counted below {lv}"))
        .when(open_tx).then(pl.lit(
            f"; a platelet transfusion within {free} days, the own count before it not below {lv} (or not measured): "
            f"whether this count is the patient's own is unknown, so below {lv} is open"))
        .otherwise(pl.lit("")))
    daily = daily.with_columns(
        supported.alias("transfusion_supported"),
        by_tx.alias("below_by_transfusion"),
        *flags,
        pl.concat_str(pl.col("reason"), note).alias("reason"),
        pl.when(by_tx).then(pl.concat_list("evidence", pl.col("tx_refs"))).otherwise(pl.col("evidence")).alias("evidence"),
    )
    # session 32: censored PLT results are read by the engine; none in the studies compared here
    daily = daily.with_columns(pl.lit(None, dtype=pl.String).alias("plt_censored"))
    cols = ["subject_id", "day", "plt", "plt_censored", "source", "prev_day", "next_day", "transfusion_supported",
            "below_by_transfusion", "window"]
    cols += [f"plt_lt_{n}" for n in levels] + ["reason", "evidence"]
    return daily.select(cols).sort("subject_id", "day")


def t_icaht(study: Study, options: TIcahtOptions | None = None) -> pl.DataFrame:
    """Early and late T-ICAHT grade per subject (Rejeski 2025; see ``criteria/t_icaht_2025.yaml``).

    Columns: ``t_icaht_early_grade``/``t_icaht_late_grade`` (Int64, null when not evaluable), the
    early window's last day and why (``early_window_end``/``_end_reason``), the early durations
    ``plt_lt_<level>_days`` with ``_start``/``_end``/``_episodes``/``_recovery_days`` and
    ``early_transfusion_supported_days`` (days counted below 20 only because of a transfusion); the late window (``late_window_start``/``_end``/``_end_reason``),
    ``late_n_measurements``, ``late_plt_nadir`` and ``late_plt_confirmed`` (second lowest) with their
    days, ``late_n_plt_<level>`` (measurements below), ``late_plt_lt_20_days`` (+ ``_start``/``_end``/
    ``_episodes``/``_recovery_days``), ``late_transfusion_supported_days``;
    ``early_rule``/``early_reason``/``early_evidence``, the same for ``late_``, and the combined
    ``rule``, ``reason`` and ``evidence`` (PLAT, transfusion and censoring-event rows).
    """
    options = options or TIcahtOptions()
    opts = options.resolved()
    table = load_criteria(options.criteria)
    levels = _t_levels(table)
    sids = subject_ids(study)
    if not sids:
        return empty({"subject_id": pl.String, "t_icaht_early_grade": pl.Int64, "t_icaht_late_grade": pl.Int64,
                      "rule": pl.String, "reason": pl.String, "evidence": EVIDENCE})
    daily = t_icaht_daily(study, options)
    early_w, late_w, _ = _t_windows(study, sids, opts)
    f = _window_features(daily, sids, opts, levels, "early", "").rename(
        {"transfusion_supported_days": "early_transfusion_supported_days"}).join(
        _window_features(daily, sids, opts, levels, "late", "late_"), on="subject_id", how="left")
    f = f.with_columns(
        pl.Series("early_window_end", [float(early_w[s]["last"]) for s in sids], dtype=pl.Float64),
        pl.Series("early_window_end_reason", [early_w[s]["why"] for s in sids], dtype=pl.String),
        pl.Series("late_window_start", [late_w[s]["start"] for s in sids], dtype=pl.Float64),
        pl.Series("late_window_end", [late_w[s]["end"] for s in sids], dtype=pl.Float64),
        pl.Series("late_window_end_reason", [late_w[s]["why"] for s in sids], dtype=pl.String),
        pl.concat_list(pl.col("_ev"), pl.Series([early_w[s]["evidence"] for s in sids], dtype=EVIDENCE))
        .list.unique(maintain_order=True).alias("early_evidence"),
        pl.concat_list(pl.col("late__ev"), pl.Series([late_w[s]["evidence"] for s in sids], dtype=EVIDENCE))
        .list.unique(maintain_order=True).alias("late_evidence"),
    )
    # session 34: "Two or more laboratory tests or nontransient thrombocytopenia" (row loop below)
    nt = _t_nontransient(daily, sids, opts, levels)
    f = f.with_columns(*[pl.Series(f"late_nontransient_plt_{n}", [nt[sid][n] for sid in sids], dtype=pl.Int64)
                         for n in levels])
    late_rules = []
    for r in table["late"]:
        late_rules.append(r)
        if opts.get("late_nontransient"):  # the same rule with the second test replaced by a nontransient run
            when = [{**c, "feature": c["feature"].replace("late_n_plt_", "late_nontransient_plt_"), "value": 1}
                    if c["feature"].startswith("late_n_plt_") else c for c in r["when"]]
            late_rules.append({**r, "id": r["id"] + "_nontransient", "when": when})
    f = f.with_columns(*domain_grade(table["early"], opts, "early"), *domain_grade(late_rules, opts, "late"))
    need = int(opts["late_min_measurements"])
    early_ok = pl.col("n_days") > 0
    late_ok = (pl.col("late_n_measurements") >= need) | pl.any_horizontal(
        [pl.col(f"late_nontransient_plt_{n}") > 0 for n in levels])
    f = f.with_columns(
        pl.when(early_ok).then(pl.col("early_grade")).alias("t_icaht_early_grade"),
        pl.when(early_ok).then(pl.col("early_rule")).alias("early_rule"),
        pl.when(late_ok).then(pl.col("late_grade")).alias("t_icaht_late_grade"),
        pl.when(late_ok).then(pl.col("late_rule")).alias("late_rule"),
    )
    texts = {r["id"]: rule_text(r, opts) for r in table["early"] + table["late"]}
    # session 34: the *_nontransient rows' texts (data of the current table; the old table has none)
    texts |= {k: v for k, v in load_table(options.criteria).texts(("late",), opts).items() if k.endswith("_nontransient")}
    e_lv = _used(table["early"], r"plt_lt_(\w+)_days")
    l_lv = _used(table["late"], r"late_plt_lt_(\w+)_days")
    n_lv = sorted(levels, key=lambda n: -levels[n])
    reasons = [(_t_early_reason(r, opts, levels, e_lv, texts), _t_late_reason(r, opts, levels, l_lv, n_lv, texts))
               for r in f.iter_rows(named=True)]
    f = f.with_columns(
        pl.Series("early_reason", [x[0] for x in reasons], dtype=pl.String),
        pl.Series("late_reason", [x[1] for x in reasons], dtype=pl.String),
    )
    # session 36 (deliberate; review s36 A1): an evaluable window graded 0 names the criteria row
    # t_icaht.<window>.g0 (early_rule / late_rule and rule); not_evaluable only an empty grade
    f = f.with_columns(*[pl.Series(f"{w}_rule", [
        r[f"{w}_rule"] if r[f"t_icaht_{w}_grade"] != 0 or r[f"{w}_rule"] else f"t_icaht.{w}.g0"
        for r in f.iter_rows(named=True)], dtype=pl.String) for w in ("early", "late")])
    f = f.with_columns(
        pl.concat_str(pl.lit("early: "), pl.col("early_rule").fill_null("t_icaht.early.not_evaluable"),
                      pl.lit("; late: "), pl.col("late_rule").fill_null("t_icaht.late.not_evaluable")).alias("rule"),
        pl.concat_str(pl.lit("Early: "), pl.col("early_reason"), pl.lit(" Late: "), pl.col("late_reason")).alias("reason"),
        pl.concat_list("early_evidence", "late_evidence").list.unique(maintain_order=True).alias("evidence"),
    )
    dur = ("days", "start", "end", "episodes", "recovery_days")
    cols = (["subject_id", "t_icaht_early_grade", "t_icaht_late_grade", "early_window_end", "early_window_end_reason"]
            + [f"plt_lt_{n}_{c}" for n in e_lv for c in dur] + ["early_transfusion_supported_days"]
            + ["late_window_start", "late_window_end", "late_window_end_reason", "late_n_measurements",
               "late_plt_nadir", "late_plt_nadir_day", "late_plt_confirmed", "late_plt_confirmed_day"]
            + [f"late_n_plt_{n}" for n in n_lv] + [f"late_plt_lt_{n}_{c}" for n in l_lv for c in dur]
            + ["late_transfusion_supported_days", "early_rule", "early_reason", "early_evidence",
               "late_rule", "late_reason", "late_evidence", "rule", "reason", "evidence"])
    return f.select(cols).cast({"t_icaht_early_grade": pl.Int64, "t_icaht_late_grade": pl.Int64,
                                "late_plt_nadir_day": pl.Int64, "late_plt_confirmed_day": pl.Int64,
                                "early_evidence": EVIDENCE, "late_evidence": EVIDENCE, "evidence": EVIDENCE})


def _t_nontransient(daily: pl.DataFrame, sids: list[str], opts: dict, levels: dict[str, float]) -> dict[str, dict[str, int]]:
    """Session 34, row loop: per subject and level, 1 when a run of consecutive calendar days below the
    level in the early and late windows reaches the late window and holds a recorded early count
    below the level, or lasts >= stable_recovery_days days from its first recorded count below the
    level (Rejeski 2025 Table 1 footnote "or nontransient thrombocytopenia"); all 0 when the option
    is off."""
    out = {sid: {n: 0 for n in levels} for sid in sids}
    if not opts.get("late_nontransient"):
        return out
    stable = int(opts["stable_recovery_days"])
    rows = daily.filter(pl.col("window").is_in(["early", "late"])).sort("subject_id", "day").to_dicts()
    for n in levels:
        run: list[dict] = []
        for i, r in enumerate(rows + [None]):
            cont = (r is not None and bool(r[f"plt_lt_{n}"]) and run and run[-1]["subject_id"] == r["subject_id"]
                    and r["day"] == run[-1]["day"] + 1)
            if cont:
                run.append(r)
                continue
            if run:  # close the run
                recorded = [x["day"] for x in run if x["source"] not in ("interpolated", "missing")]
                late = any(x["window"] == "late" for x in run)
                from_early = any(x["window"] == "early" and x["source"] not in ("interpolated", "missing") for x in run)
                long = bool(recorded) and run[-1]["day"] - min(recorded) + 1 >= stable
                if opts.get("nontransient_length", "measured") == "measured":
                    # session 40 (review s40 A2): the run lasts from its first to its last recorded count
                    # below the level; interpolated days after the last one do not extend it
                    late = bool(recorded) and any(x["window"] == "late" and min(recorded) <= x["day"] <= max(recorded)
                                                  for x in run)
                    long = bool(recorded) and max(recorded) - min(recorded) + 1 >= stable
                if late and (from_early or long):
                    out[run[0]["subject_id"]][n] = 1
            run = [r] if r is not None and r[f"plt_lt_{n}"] else []
    return out


def _tx_text(n: int, opts: dict) -> str:
    if not n:
        return ""
    return (f"; {n} day(s) counted below {'/'.join(opts['transfusion_supported_levels'])} although the count "
            f"was not, a platelet transfusion within {opts['platelet_transfusion_free_days']} days (not a recovery)")


def _t_early_reason(r: dict, opts: dict, levels: dict[str, float], names: list[str], texts: dict[str, str]) -> str:
    lo = opts["early_window"][0]
    last = int(r["early_window_end"])
    win = f"days {lo}-{last}" + (f" (censored: {r['early_window_end_reason']})"
                                 if r["early_window_end_reason"] != f"day {opts['early_window'][1]:g}" else "")
    if last < lo:
        return f"not evaluable: the early window is empty (censored: {r['early_window_end_reason']})."
    if not r["n_days"]:
        return f"not evaluable: no platelet count in {win} (measured or interpolated)."
    parts = [duration_text(r, f"plt_lt_{n}", f"PLT {_sym(opts)} {fmt(levels[n])}", opts) for n in names]
    why = texts[r["early_rule"]] if r["early_rule"] else "no T-ICAHT criterion met"
    return (f"{win}: {'; '.join(parts)}{_tx_text(r['early_transfusion_supported_days'], opts)} "
            f"-> grade {r['t_icaht_early_grade']} ({why}).")


def _t_late_reason(r: dict, opts: dict, levels: dict[str, float], dur_names: list[str], names: list[str],
                 texts: dict[str, str]) -> str:
    ws, we = int(r["late_window_start"]), r["late_window_end"]
    win = f"days {ws}-{fmt(we)} (window ends: {r['late_window_end_reason']})"
    need = int(opts["late_min_measurements"])
    if we < ws:
        return (f"not evaluable: the late window is empty (it ends on day {fmt(we)}, "
                f"{r['late_window_end_reason']}, before day {ws}).")
    n = r["late_n_measurements"]
    if r["t_icaht_late_grade"] is None:  # session 34: fewer tests and no nontransient run
        also = (f", and no nontransient thrombocytopenia (a run below a level continuing from the early window or "
                f"lasting >= {opts['stable_recovery_days']} days)" if opts.get("late_nontransient") else "")
        return f"not evaluable: {n} platelet measurement(s) in {win}, {need} needed{also}."
    counts = ", ".join(f"{r[f'late_n_plt_{x}']} {_sym(opts)} {fmt(levels[x])}" for x in names)
    lowest = (f"lowest PLT {fmt(r['late_plt_nadir'])} on day {r['late_plt_nadir_day']}, second lowest "
              f"{fmt(r['late_plt_confirmed'])} on day {r['late_plt_confirmed_day']}")
    if n < 2:  # session 34: graded on a nontransient run with one measurement or none
        lowest = (f"lowest PLT {fmt(r['late_plt_nadir'])} on day {r['late_plt_nadir_day']} (the only measurement)"
                  if n == 1 else "no measurement in the window")
    durs = [duration_text(r, f"late_plt_lt_{x}", f"PLT {_sym(opts)} {fmt(levels[x])}", opts) for x in dur_names]
    why = texts[r["late_rule"]] if r["late_rule"] else "no T-ICAHT criterion met"
    return (f"{n} measurements in {win}, of which {counts}; {lowest}; {'; '.join(durs)}"
            f"{_tx_text(r['late_transfusion_supported_days'], opts)} -> grade {r['t_icaht_late_grade']} ({why}).")

