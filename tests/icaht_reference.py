"""ICAHT and T-ICAHT as they were before issue 14 (commit 45b3ff1), kept as an oracle.

tests/test_hemato_vectorised.py checks that :func:`cartlab.grading.icaht.icaht` and
:func:`cartlab.grading.t_icaht.t_icaht` (and their daily series) give identical frames. The code below
is the old implementation verbatim (only its imports changed; the shared helpers it used are copied
too); do not "fix" it here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import polars as pl
from hemato_reference import daily_values, param_obs, subject_ids, transfusion_days

from cartlab.grading.common import EVIDENCE, domain_grade, load_criteria, rule_text
from cartlab.grading.hemato_common import CMP, DURATIONS, empty, fmt, to_canonical
from cartlab.grading.icaht import IcahtOptions
from cartlab.grading.t_icaht import TIcahtOptions
from cartlab.model import Study
from cartlab.provenance import evidence_ref, unique_refs


def daily_series(study: Study, param: str, opts: dict[str, Any], label: str) -> pl.DataFrame:
    """One row per subject and calendar day from its first to its last measured day of ``param``.

    ``value`` is the day's ``opts["daily_value"]`` (min | max | mean | last) or, when
    ``opts["interpolate"]``, the linear interpolation of the neighbouring measured days (not across
    more than ``opts["max_interpolation_gap_days"]`` missing days when set); otherwise missing.
    Columns: ``subject_id``, ``day``, ``value``, ``source`` (measured | interpolated | missing),
    ``prev_day``/``next_day`` (interpolation neighbours), ``reason``, ``evidence``.
    """
    schema = {"subject_id": pl.String, "day": pl.Int64, "value": pl.Float64, "source": pl.String,
              "prev_day": pl.Int64, "next_day": pl.Int64, "reason": pl.String, "evidence": EVIDENCE}
    obs = daily_values(param_obs(study, [param]), opts["daily_value"])
    if obs.is_empty():
        return empty(schema)
    grid = (
        obs.group_by("subject_id").agg(pl.col("d").min().alias("lo"), pl.col("d").max().alias("hi"))
        .with_columns(pl.int_ranges("lo", pl.col("hi") + 1).alias("d")).explode("d").select("subject_id", "d")
    )
    f = grid.join(obs.select("subject_id", "d", "value", "refs"), on=["subject_id", "d"], how="left").sort("subject_id", "d")
    f = f.with_columns(pl.when(pl.col("value").is_not_null()).then(pl.col("d")).alias("_md"))
    f = f.with_columns(
        pl.col("_md").forward_fill().over("subject_id").alias("prev_day"),
        pl.col("value").forward_fill().over("subject_id").alias("prev_v"),
        pl.col("refs").forward_fill().over("subject_id").alias("prev_refs"),
        pl.col("_md").backward_fill().over("subject_id").alias("next_day"),
        pl.col("value").backward_fill().over("subject_id").alias("next_v"),
        pl.col("refs").backward_fill().over("subject_id").alias("next_refs"),
    )
    gap_ok = pl.lit(bool(opts["interpolate"]))
    if opts["max_interpolation_gap_days"] is not None:
        gap_ok = gap_ok & ((pl.col("next_day") - pl.col("prev_day") - 1) <= int(opts["max_interpolation_gap_days"]))
    interp = pl.col("prev_v") + (pl.col("next_v") - pl.col("prev_v")) * (
        (pl.col("d") - pl.col("prev_day")) / (pl.col("next_day") - pl.col("prev_day"))
    )
    measured = pl.col("value").is_not_null()
    f = f.with_columns(
        pl.when(measured).then(pl.col("value")).when(gap_ok).then(interp).alias("value"),
        pl.when(measured).then(pl.lit("measured")).when(gap_ok).then(pl.lit("interpolated"))
        .otherwise(pl.lit("missing")).alias("source"),
    )
    f = f.with_columns(
        pl.when(pl.col("source") == "measured").then(pl.format(f"measured {label} {{}}", pl.col("value")))
        .when(pl.col("source") == "interpolated").then(pl.format(
            "interpolated {} between day {} ({}) and day {} ({})",
            pl.col("value").round(3), pl.col("prev_day"), pl.col("prev_v"), pl.col("next_day"), pl.col("next_v")))
        .otherwise(pl.format(f"no {label}: gap between day {{}} and day {{}} too long to interpolate",
                             pl.col("prev_day"), pl.col("next_day"))).alias("reason"),
        pl.when(pl.col("source") == "measured").then(pl.col("refs"))
        .when(pl.col("source") == "interpolated").then(pl.concat_list("prev_refs", "next_refs"))
        .otherwise(pl.lit([], dtype=EVIDENCE)).alias("evidence"),
        pl.when(measured).then(None).otherwise(pl.col("prev_day")).alias("prev_day"),
        pl.when(measured).then(None).otherwise(pl.col("next_day")).alias("next_day"),
    )
    return f.rename({"d": "day"}).select(list(schema)).cast(schema)


# ---------------------------------------------------------------------------------------------
# durations below a threshold


def below_durations(frame: pl.DataFrame, flag: str, stable: int, count_gap: bool, how: str) -> pl.DataFrame:
    """Days below a threshold per subject, from the window days of ``frame`` (``subject_id``, ``day``
    and the nullable boolean column ``flag``: True = below, False = not below, null = unknown).

    Consecutive below-days form runs; a run of not-below days shorter than ``stable`` days between
    two below-runs (every day known) is a non-stable recovery: it joins them into one episode and its
    days count when ``count_gap``. Unknown days are never counted and never bridged.

    ``how``: ``"cumulative"`` = all below-days (plus counted recovery days) of the window, from the
    first to the last below-day; ``"longest_run"`` = the longest joined episode (ties: the earliest).
    Returns one row per subject with at least one known day: ``days`` (0 when none below),
    ``start``, ``end``, ``episodes`` (joined episodes in the window), ``recovery_days`` (non-stable
    recovery days counted) and ``joined`` (a counted episode spans a non-stable recovery).
    """
    if how not in DURATIONS:
        raise ValueError(f"unknown duration {how!r} ({' or '.join(DURATIONS)})")
    sid = "subject_id"
    f = frame.select(sid, "day", pl.col(flag).alias("flag")).sort(sid, "day")
    state = pl.when(pl.col("flag").is_null()).then(-1).when(pl.col("flag")).then(1).otherwise(0)
    f = f.with_columns(state.alias("state"))
    new_run = (pl.col("state") != pl.col("state").shift(1).over(sid)) | (
        pl.col("day") != pl.col("day").shift(1).over(sid) + 1)
    f = f.with_columns(new_run.fill_null(True).cast(pl.Int64).cum_sum().over(sid).alias("run"))
    runs = f.group_by(sid, "run", maintain_order=True).agg(
        pl.col("state").first(), pl.len().alias("n"), pl.col("day").min().alias("first"),
        pl.col("day").max().alias("last"),
    ).sort(sid, "run")
    prev_adj = (pl.col("last").shift(1).over(sid) == pl.col("first") - 1)
    next_adj = (pl.col("first").shift(-1).over(sid) == pl.col("last") + 1)
    bridged = ((pl.col("state") == 0) & (pl.col("state").shift(1).over(sid) == 1) & prev_adj
               & (pl.col("state").shift(-1).over(sid) == 1) & next_adj & (pl.col("n") < int(stable)))
    runs = runs.with_columns(bridged.fill_null(False).alias("bridged"))
    runs = runs.with_columns(
        ((pl.col("state") == 1) & ~pl.col("bridged").shift(1).over(sid).fill_null(False))
        .cast(pl.Int64).cum_sum().over(sid).alias("episode"),
    )
    counted = runs.filter((pl.col("state") == 1) | pl.col("bridged"))
    gap_n = pl.when(pl.col("bridged")).then(pl.col("n")).otherwise(0)
    episodes = counted.group_by(sid, "episode", maintain_order=True).agg(
        (pl.when(pl.col("state") == 1).then(pl.col("n")).otherwise(0).sum()
         + (gap_n.sum() if count_gap else pl.lit(0))).alias("days"),
        pl.col("first").min().alias("start"), pl.col("last").filter(pl.col("state") == 1).max().alias("end"),
        (gap_n.sum() if count_gap else pl.lit(0)).alias("recovery_days"),
        pl.col("bridged").any().alias("joined"),
    )
    if how == "cumulative":
        per = episodes.group_by(sid).agg(
            pl.col("days").sum(), pl.col("start").min(), pl.col("end").max(), pl.len().alias("episodes"),
            pl.col("recovery_days").sum(), pl.col("joined").any(),
        )
    else:
        per = episodes.sort(sid, pl.col("days"), pl.col("start"), descending=[False, True, False]).group_by(
            sid, maintain_order=True).agg(
            pl.col("days").first(), pl.col("start").first(), pl.col("end").first(),
            pl.len().alias("episodes"), pl.col("recovery_days").first(), pl.col("joined").first(),
        )
    known = f.filter(pl.col("state") >= 0).select(sid).unique()
    schema = {sid: pl.String, "days": pl.Int64, "start": pl.Int64, "end": pl.Int64, "episodes": pl.Int64,
              "recovery_days": pl.Int64, "joined": pl.Boolean}
    out = known.join(per, on=sid, how="left").with_columns(
        pl.col("days").fill_null(0), pl.col("episodes").fill_null(0), pl.col("recovery_days").fill_null(0),
        pl.col("joined").fill_null(False),
    )
    return out.select(list(schema)).cast(schema)


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


def in_window(end_inclusive: bool) -> pl.Expr:
    """``day`` within ``[_ws, _we]`` (``[_ws, _we)`` when not ``end_inclusive``)."""
    upper = (pl.col("day") <= pl.col("_we")) if end_inclusive else (pl.col("day") < pl.col("_we"))
    return (pl.col("day") >= pl.col("_ws")) & upper


def _levels(table: dict[str, Any]) -> dict[str, float]:
    """ANC levels of the table in canonical 10^9/L, keyed by the level's short name ("500")."""
    return {key.split("_", 1)[1]: to_canonical(v["value"], v["unit"], "NEUT") for key, v in table["levels"].items()}


def _early_level_names(table: dict[str, Any], levels: dict[str, float]) -> list[str]:
    """Levels the early rules refer to (``anc_le_<level>_days`` / ``never_above_<level>``), deepest last."""
    used = set()
    for rule in table["early"]:
        for c in rule["when"]:
            m = re.fullmatch(r"(?:anc_le_(\w+)_days|never_above_(\w+))", c["feature"])
            if m:
                used.add(m.group(1) or m.group(2))
    return sorted(used, key=lambda n: -levels[n])


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
    cols = ["subject_id", "day", "anc", "source", "prev_day", "next_day", "window"]
    cols += [f"anc_le_{n}" for n in levels] + ["reason", "evidence"]
    return daily.select(cols).sort("subject_id", "day")


def _early_features(daily: pl.DataFrame, sids: list[str], opts: dict[str, Any],
                    levels: dict[str, float]) -> pl.DataFrame:
    """Per subject: days with an ANC in the early window, evidence, and per level the duration
    (``anc_le_<level>_days``/``_start``/``_end``/``_episodes``/``_recovery_days``/``_joined``) and
    ``never_above_<level>``."""
    lo, hi = opts["early_window"]
    win = daily.filter(pl.col("day").is_between(lo, hi))
    known = win.filter(pl.col("anc").is_not_null())
    out = pl.DataFrame({"subject_id": sids}, schema={"subject_id": pl.String}).join(
        known.group_by("subject_id").agg(
            pl.len().alias("early_n_days"),
            pl.col("evidence").list.explode(keep_nulls=False, empty_as_null=False).drop_nulls().unique(maintain_order=True).alias("early_evidence"),
            *[pl.col(f"anc_le_{n}").all().alias(f"_all_{n}") for n in levels],
        ), on="subject_id", how="left",
    ).with_columns(pl.col("early_n_days").fill_null(0),
                   pl.col("early_evidence").fill_null(pl.lit([], dtype=EVIDENCE)))
    for name in levels:
        d = below_durations(win, f"anc_le_{name}", int(opts["stable_recovery_days"]),
                            bool(opts["count_recovery_days_in_run"]), opts["duration"])
        out = out.join(d.rename({c: f"anc_le_{name}_{c}" for c in d.columns if c != "subject_id"}),
                       on="subject_id", how="left")
        complete = (pl.col("early_n_days") == hi - lo + 1) | pl.lit(not opts["never_above_requires_full_window"])
        out = out.with_columns(
            ((pl.col("early_n_days") > 0) & pl.col(f"_all_{name}").fill_null(False) & complete)
            .alias(f"never_above_{name}"))
    return out.drop([f"_all_{n}" for n in levels])


def _late_features(daily: pl.DataFrame, sids: list[str], opts: dict[str, Any], levels: dict[str, float],
                   wins: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    cmp = CMP["<=" if opts["inclusive"] else "<"]
    meas = daily.filter((pl.col("source") == "measured") & (pl.col("window") == "late"))
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
        return empty({"subject_id": pl.String, "icaht_early_grade": pl.Int64, "icaht_late_grade": pl.Int64,
                       "rule": pl.String, "reason": pl.String, "evidence": EVIDENCE})
    daily = icaht_daily(study, options)
    wins = _late_windows(study, opts)
    early = _early_features(daily, sids, opts, levels)
    late = pl.DataFrame(_late_features(daily, sids, opts, levels, wins), infer_schema_length=None)
    f = early.join(late, on="subject_id", how="left")
    f = f.with_columns(*domain_grade(table["early"], opts, "early"), *domain_grade(table["late"], opts, "late"))
    need = int(opts["late_min_measurements"])
    f = f.with_columns(
        pl.when(pl.col("early_n_days") > 0).then(pl.col("early_grade")).otherwise(None).alias("icaht_early_grade"),
        pl.when(pl.col("early_n_days") > 0).then(pl.col("early_rule")).otherwise(None).alias("early_rule"),
        pl.when(pl.col("late_n_measurements") >= need).then(pl.col("late_grade")).otherwise(None).alias("icaht_late_grade"),
        pl.when(pl.col("late_n_measurements") >= need).then(pl.col("late_rule")).otherwise(None).alias("late_rule"),
    )
    texts = {r["id"]: rule_text(r, opts) for r in table["early"] + table["late"]}
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
    f = f.with_columns(
        pl.concat_str(pl.lit("early: "), pl.col("early_rule").fill_null("not evaluable"),
                      pl.lit("; late: "), pl.col("late_rule").fill_null("not evaluable")).alias("rule"),
        pl.concat_str(pl.lit("Early: "), pl.col("early_reason"), pl.lit(" Late: "), pl.col("late_reason")).alias("reason"),
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
    if n < need:
        return f"not evaluable: {n} ANC measurement(s) in {win}, {need} needed."
    lowest = f"lowest ANC {fmt(r['late_anc_nadir'])} on day {r['late_anc_nadir_day']}, second lowest " \
             f"{fmt(r['late_anc_confirmed'])} on day {r['late_anc_confirmed_day']}"
    g = r["icaht_late_grade"]
    if r["late_rule"]:
        return f"{n} measurements in {win}; {lowest} -> grade {g} ({texts[r['late_rule']]})."
    top = max(levels.values())
    where = "at or below" if sym == "<=" else "below"
    return f"{n} measurements in {win}; {lowest}; fewer than {need} {where} {fmt(top)} -> grade 0."


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


def _t_levels(table: dict[str, Any]) -> dict[str, float]:
    """PLT levels in canonical 10^9/L keyed by short name ("20")."""
    return {key.split("_", 1)[1]: to_canonical(v["value"], v["unit"], "PLAT") for key, v in table["levels"].items()}


def _used(rules: list[dict], pattern: str) -> list[str]:
    return sorted({m.group(1) for r in rules for c in r["when"] if (m := re.fullmatch(pattern, c["feature"]))},
                  key=lambda n: -float(n))


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
    _, _, win = _t_windows(study, sids, opts)
    lo = opts["early_window"][0]
    daily = daily.join(cover, on=["subject_id", "day"], how="left").join(win, on="subject_id", how="left")
    supported = pl.col("tx_refs").is_not_null() & (pl.col("tx_refs").list.len() > 0)
    below = {n: (pl.col("plt") <= thr) if opts["inclusive"] else (pl.col("plt") < thr) for n, thr in levels.items()}
    flags = [
        (pl.when(pl.col("plt").is_null()).then(None)
         .otherwise(below[n] | (supported if n in opts["transfusion_supported_levels"] else pl.lit(False))))
        .alias(f"plt_lt_{n}") for n in levels
    ]
    masked = list(opts["transfusion_supported_levels"])
    # a value that is below a masked level only because a transfusion supports it
    by_tx = (supported & pl.col("plt").is_not_null()
             & ~pl.all_horizontal([below[n] for n in masked] or [pl.lit(True)]))
    note = pl.when(by_tx).then(pl.lit(
        f"; a platelet transfusion within {free} days: not a recovery, counted below "
        + "/".join(fmt(levels[n]) for n in masked))).otherwise(pl.lit(""))
    daily = daily.with_columns(
        supported.alias("transfusion_supported"),
        by_tx.alias("below_by_transfusion"),
        pl.when((pl.col("day") >= lo) & (pl.col("day") <= pl.col("_el"))).then(pl.lit("early"))
        .when(in_window(opts["late_window_end_inclusive"])).then(pl.lit("late"))
        .otherwise(pl.lit(None, dtype=pl.String)).alias("window"),
        *flags,
        pl.concat_str(pl.col("reason"), note).alias("reason"),
        pl.when(by_tx).then(pl.concat_list("evidence", pl.col("tx_refs"))).otherwise(pl.col("evidence")).alias("evidence"),
    )
    cols = ["subject_id", "day", "plt", "source", "prev_day", "next_day", "transfusion_supported",
            "below_by_transfusion", "window"]
    cols += [f"plt_lt_{n}" for n in levels] + ["reason", "evidence"]
    return daily.select(cols).sort("subject_id", "day")


def _window_features(daily: pl.DataFrame, sids: list[str], opts: dict[str, Any], levels: dict[str, float],
                     window: str, prefix: str) -> pl.DataFrame:
    """Per subject in one window: days with a value, measured days, lowest measured values, evidence,
    per level the duration and the measured days below, and transfusion-supported days."""
    win = daily.filter(pl.col("window") == window)
    known = win.filter(pl.col("plt").is_not_null())
    meas = known.filter(pl.col("source") == "measured").sort("plt", "day")
    out = pl.DataFrame({"subject_id": sids}, schema={"subject_id": pl.String})
    out = out.join(known.group_by("subject_id").agg(
        pl.len().alias(f"{prefix}n_days"),
        pl.col("evidence").list.explode(keep_nulls=False, empty_as_null=False).drop_nulls().unique(maintain_order=True).alias(f"{prefix}_ev"),
        pl.col("below_by_transfusion").sum().alias(f"{prefix}transfusion_supported_days"),
    ), on="subject_id", how="left")
    out = out.join(meas.group_by("subject_id", maintain_order=True).agg(
        pl.len().alias(f"{prefix}n_measurements"),
        pl.col("plt").first().alias(f"{prefix}plt_nadir"), pl.col("day").first().alias(f"{prefix}plt_nadir_day"),
        pl.col("plt").get(1, null_on_oob=True).alias(f"{prefix}plt_confirmed"),
        pl.col("day").get(1, null_on_oob=True).alias(f"{prefix}plt_confirmed_day"),
        *[pl.col(f"plt_lt_{n}").sum().alias(f"{prefix}n_plt_{n}") for n in levels],
    ), on="subject_id", how="left")
    zero = [f"{prefix}n_days", f"{prefix}n_measurements", f"{prefix}transfusion_supported_days"]
    zero += [f"{prefix}n_plt_{n}" for n in levels]
    out = out.with_columns(*[pl.col(c).fill_null(0).cast(pl.Int64) for c in zero],
                           pl.col(f"{prefix}_ev").fill_null(pl.lit([], dtype=EVIDENCE)))
    for name in levels:
        d = below_durations(win, f"plt_lt_{name}", int(opts["stable_recovery_days"]),
                            bool(opts["count_recovery_days_in_run"]), opts["duration"])
        out = out.join(d.rename({c: f"{prefix}plt_lt_{name}_{c}" for c in d.columns if c != "subject_id"}),
                       on="subject_id", how="left")
    return out


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
    f = f.with_columns(*domain_grade(table["early"], opts, "early"), *domain_grade(table["late"], opts, "late"))
    need = int(opts["late_min_measurements"])
    early_ok, late_ok = pl.col("n_days") > 0, pl.col("late_n_measurements") >= need
    f = f.with_columns(
        pl.when(early_ok).then(pl.col("early_grade")).alias("t_icaht_early_grade"),
        pl.when(early_ok).then(pl.col("early_rule")).alias("early_rule"),
        pl.when(late_ok).then(pl.col("late_grade")).alias("t_icaht_late_grade"),
        pl.when(late_ok).then(pl.col("late_rule")).alias("late_rule"),
    )
    texts = {r["id"]: rule_text(r, opts) for r in table["early"] + table["late"]}
    e_lv = _used(table["early"], r"plt_lt_(\w+)_days")
    l_lv = _used(table["late"], r"late_plt_lt_(\w+)_days")
    n_lv = sorted(levels, key=lambda n: -levels[n])
    reasons = [(_t_early_reason(r, opts, levels, e_lv, texts), _t_late_reason(r, opts, levels, l_lv, n_lv, texts))
               for r in f.iter_rows(named=True)]
    f = f.with_columns(
        pl.Series("early_reason", [x[0] for x in reasons], dtype=pl.String),
        pl.Series("late_reason", [x[1] for x in reasons], dtype=pl.String),
    )
    f = f.with_columns(
        pl.concat_str(pl.lit("early: "), pl.col("early_rule").fill_null("not evaluable"),
                      pl.lit("; late: "), pl.col("late_rule").fill_null("not evaluable")).alias("rule"),
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


def _sym(opts: dict) -> str:
    return "<=" if opts["inclusive"] else "<"


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
    if n < need:
        return f"not evaluable: {n} platelet measurement(s) in {win}, {need} needed."
    counts = ", ".join(f"{r[f'late_n_plt_{x}']} {_sym(opts)} {fmt(levels[x])}" for x in names)
    lowest = (f"lowest PLT {fmt(r['late_plt_nadir'])} on day {r['late_plt_nadir_day']}, second lowest "
              f"{fmt(r['late_plt_confirmed'])} on day {r['late_plt_confirmed_day']}")
    durs = [duration_text(r, f"late_plt_lt_{x}", f"PLT {_sym(opts)} {fmt(levels[x])}", opts) for x in dur_names]
    why = texts[r["late_rule"]] if r["late_rule"] else "no T-ICAHT criterion met"
    return (f"{n} measurements in {win}, of which {counts}; {lowest}; {'; '.join(durs)}"
            f"{_tx_text(r['late_transfusion_supported_days'], opts)} -> grade {r['t_icaht_late_grade']} ({why}).")

