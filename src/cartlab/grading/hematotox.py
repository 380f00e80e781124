"""Haematotoxicity and inflammation scores: ICAHT, count recovery, CAR-HEMATOTOX, EASIX, IEC-HS flags.

Every threshold lives in a criteria table (``criteria/icaht_2023.yaml``,
``criteria/car_hematotox_2021.yaml``, ``criteria/easix.yaml``, ``criteria/iec_hs_2023.yaml``) whose
header says which rows were verified against which source; the code here only evaluates them.
Every result carries ``rule`` (criteria row id), ``reason`` (a sentence) and ``evidence`` (the
``"<file>:<row>"`` references of the source rows used).

Public functions (all pure functions of a canonical :class:`~cartlab.model.Study`):

* :func:`icaht` - early and late ICAHT grade per subject (EHA/EBMT 2023), with durations and nadir;
  :func:`icaht_daily` - the daily ANC series behind it (measured or interpolated, flagged).
* :func:`recovery_days` - neutrophil and platelet recovery days (ASTCT/CIBMTR definitions).
* :func:`car_hematotox` - CAR-HEMATOTOX score and risk group from pre-lymphodepletion values, with a
  score range (never a guess) when inputs are missing.
* :func:`easix` - EASIX, m-EASIX and s-EASIX (and their log2) at the pre-lymphodepletion timepoint,
  a chosen day, or every day.
* :func:`iec_hs_flags` - days on which the data meet the computable IEC-HS criteria (a flag for
  clinician review, not a diagnosis).

Units: observations are in canonical units (NEUT/PLAT 10^9/L, HGB g/L, CRP mg/L, CREAT umol/L,
FERRITIN ug/L, FIBRINO g/L); every cut-off is written in the unit of its source and converted
explicitly with :func:`cartlab.units.conversion`.

>>> from cartlab.datasets import seed_case
>>> icaht(seed_case())["icaht_early_grade"].to_list()
[3]
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import polars as pl

from cartlab.grading.common import (
    unique_refs,
    EVIDENCE,
    domain_grade,
    evidence_ref,
    load_criteria,
    rule_text,
)
from cartlab.io.dictionary import load_dictionary
from cartlab.model import Study
from cartlab.units import conversion

__all__ = [
    "CarHematotoxOptions",
    "EasixOptions",
    "IcahtOptions",
    "IecHsOptions",
    "RecoveryOptions",
    "car_hematotox",
    "easix",
    "icaht",
    "icaht_daily",
    "icaht_episodes",
    "icaht_summary",
    "iec_hs_flags",
    "recovery_days",
]

_CMP = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}


# ---------------------------------------------------------------------------------------------
# shared helpers


def _resolve(opts: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    """Criteria-table defaults overridden by the option fields that are not ``None``."""
    out = dict(defaults)
    for k, v in asdict(opts).items():
        if k != "criteria" and v is not None:
            out[k] = v
    return out


def _canonical_unit(param: str) -> tuple[str, float | None]:
    p = load_dictionary()[param]
    return p.unit, p.molar_mass_g_mol


def _to_canonical(value: float, unit: str, param: str) -> float:
    """A cut-off written in ``unit`` expressed in ``param``'s canonical unit."""
    canon, mm = _canonical_unit(param)
    return round(conversion(unit, canon, mm)(float(value)), 12)


def _from_canonical(value: float, unit: str, param: str) -> float:
    """A canonical value of ``param`` expressed in ``unit``."""
    canon, mm = _canonical_unit(param)
    return conversion(canon, unit, mm)(float(value))


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None:
        return "NA"
    return f"{x:.{digits}g}"


def _subject_ids(study: Study) -> list[str]:
    ids = list(study.subjects["subject_id"].to_list()) if study.subjects.height else []
    seen = set(ids)
    for sid in study.observations["subject_id"].unique(maintain_order=True).to_list():
        if sid not in seen:
            seen.add(sid)
            ids.append(sid)
    return ids


def _param_obs(study: Study, params: Iterable[str]) -> pl.DataFrame:
    """Non-null observations of ``params`` with calendar day ``d`` and evidence ``ref``."""
    return (
        study.observations.filter(
            pl.col("param").is_in(list(params)) & pl.col("value").is_not_null() & pl.col("day").is_not_null()
        )
        .with_columns(pl.col("day").floor().cast(pl.Int64).alias("d"), evidence_ref().alias("ref"))
        .select("subject_id", "param", "day", "d", "value", "lln", "uln", "ref", "src_row")
    )


def _daily(obs: pl.DataFrame, how: str) -> pl.DataFrame:
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


def _uniq(refs: Iterable[str | None]) -> list[str]:
    return unique_refs(refs)


def _lymphodepletion_days(study: Study, agents: Iterable[str]) -> dict[str, tuple[float, list[str]]]:
    """Per subject: (day of the first lymphodepletion dose, evidence of that dose)."""
    names = [a.lower() for a in agents]
    doses = study.doses.filter(
        pl.col("agent").str.to_lowercase().is_in(names) & pl.col("day").is_not_null()
    ).with_columns(evidence_ref().alias("ref")).sort("day")
    out: dict[str, tuple[float, list[str]]] = {}
    for row in doses.iter_rows(named=True):
        sid = row["subject_id"]
        if sid not in out:
            out[sid] = (float(row["day"]), _uniq([row["ref"]]))
        elif row["day"] == out[sid][0]:
            out[sid] = (out[sid][0], _uniq(out[sid][1] + [row["ref"]]))
    return out


def _pre_ld_values(study: Study, params: Iterable[str], agents: Iterable[str],
                   max_lookback: float | None) -> tuple[dict[str, dict[str, dict]], dict[str, dict]]:
    """Baseline values: the last value on or before the first lymphodepletion dose day, else the
    last value before day 0. Returns ({subject: {param: row}}, {subject: reference info})."""
    ld = _lymphodepletion_days(study, agents)
    obs = _param_obs(study, params).sort(["day", "src_row"], nulls_last=True)
    refs: dict[str, dict] = {}
    for sid in _subject_ids(study):
        if sid in ld:
            refs[sid] = {"day": ld[sid][0], "how": f"on or before day {ld[sid][0]:g} (first lymphodepletion dose)",
                         "rule": "baseline.first_lymphodepletion_day", "evidence": ld[sid][1]}
        else:
            refs[sid] = {"day": 0.0, "how": "before day 0 (no lymphodepletion dose recorded)",
                         "rule": "baseline.before_day0", "evidence": []}
    values: dict[str, dict[str, dict]] = {sid: {} for sid in refs}
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
    return values, refs


def _empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


# ---------------------------------------------------------------------------------------------
# ICAHT


@dataclass(frozen=True)
class IcahtOptions:
    """Options of ICAHT grading; ``None`` means the criteria table's default (the project contract).

    * ``early_window`` ((0, 30)): early ICAHT days, inclusive.
    * ``inclusive`` (True): "ANC <= level"; False = strictly below the level.
    * ``daily_value`` ("min"): several ANC values on one calendar day -> the lowest (min|max|mean).
    * ``interpolate`` (True): days between two measurements get the linear interpolation of the
      neighbouring measured days; False = unmeasured days are unknown and break runs.
    * ``max_interpolation_gap_days`` (None): do not interpolate across more missing days than this.
    * ``stable_recovery_days`` (3): two runs separated by a recovery of fewer days are joined.
    * ``count_recovery_days_in_run`` (True): a joined run's length includes the recovery days.
    * ``never_above_requires_full_window`` (False): grade 4 "never above 0.5 in days 0-30" only when
      every day of the window has a (measured or interpolated) value.
    * ``late_start_day`` (31), ``late_end_day`` (100), ``late_end_events`` (relapse, new_therapy,
      allo_hsct), ``late_end_at_last_followup`` (True): the late window runs from the start day to the
      earliest of these ends; ``late_window_end_inclusive`` (True) keeps a value on the end day.
    * ``late_min_measurements`` (2): the worst level must be reached by this many measurements
      (different calendar days); fewer measurements in the window -> late grade empty.
    """

    early_window: tuple[int, int] | None = None
    inclusive: bool | None = None
    daily_value: str | None = None
    interpolate: bool | None = None
    max_interpolation_gap_days: int | None = None
    stable_recovery_days: int | None = None
    count_recovery_days_in_run: bool | None = None
    never_above_requires_full_window: bool | None = None
    late_start_day: int | None = None
    late_end_day: int | None = None
    late_end_events: tuple[str, ...] | None = None
    late_end_at_last_followup: bool | None = None
    late_window_end_inclusive: bool | None = None
    late_min_measurements: int | None = None
    criteria: str = "icaht_2023"

    def resolved(self) -> dict[str, Any]:
        out = _resolve(self, load_criteria(self.criteria)["defaults"])
        out["early_window"] = tuple(int(x) for x in out["early_window"])
        out["late_end_events"] = tuple(out["late_end_events"])
        return out


def _levels(table: dict[str, Any]) -> dict[str, float]:
    """ANC levels of the table in canonical 10^9/L, keyed by the level's short name ("500")."""
    return {
        key.split("_", 1)[1]: _to_canonical(v["value"], v["unit"], "NEUT")
        for key, v in table["levels"].items()
    }


def _early_level_names(table: dict[str, Any], levels: dict[str, float]) -> list[str]:
    """Levels the early rules refer to (``anc_le_<level>_days`` / ``never_above_<level>``), deepest last."""
    used = set()
    for rule in table["early"]:
        for c in rule["when"]:
            m = re.fullmatch(r"(?:anc_le_(\w+)_days|never_above_(\w+))", c["feature"])
            if m:
                used.add(m.group(1) or m.group(2))
    return sorted(used, key=lambda n: -levels[n])


def _anc_daily_frame(study: Study, opts: dict[str, Any]) -> pl.DataFrame:
    schema = {"subject_id": pl.String, "day": pl.Int64, "anc": pl.Float64, "source": pl.String,
              "prev_day": pl.Int64, "next_day": pl.Int64, "reason": pl.String, "evidence": EVIDENCE}
    neut = _daily(_param_obs(study, ["NEUT"]), opts["daily_value"])
    if neut.is_empty():
        return _empty(schema)
    grid = (
        neut.group_by("subject_id").agg(pl.col("d").min().alias("lo"), pl.col("d").max().alias("hi"))
        .with_columns(pl.int_ranges("lo", pl.col("hi") + 1).alias("d")).explode("d").select("subject_id", "d")
    )
    f = grid.join(neut.select("subject_id", "d", "value", "refs"), on=["subject_id", "d"], how="left").sort("subject_id", "d")
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
        pl.when(measured).then(pl.col("value")).when(gap_ok).then(interp).alias("anc"),
        pl.when(measured).then(pl.lit("measured")).when(gap_ok).then(pl.lit("interpolated"))
        .otherwise(pl.lit("missing")).alias("source"),
    )
    f = f.with_columns(
        pl.when(pl.col("source") == "measured").then(pl.format("measured ANC {}", pl.col("anc")))
        .when(pl.col("source") == "interpolated").then(pl.format(
            "interpolated {} between day {} ({}) and day {} ({})",
            pl.col("anc").round(3), pl.col("prev_day"), pl.col("prev_v"), pl.col("next_day"), pl.col("next_v")))
        .otherwise(pl.format("no ANC: gap between day {} and day {} too long to interpolate",
                             pl.col("prev_day"), pl.col("next_day"))).alias("reason"),
        pl.when(pl.col("source") == "measured").then(pl.col("refs"))
        .when(pl.col("source") == "interpolated").then(pl.concat_list("prev_refs", "next_refs"))
        .otherwise(pl.lit([], dtype=EVIDENCE)).alias("evidence"),
        pl.when(measured).then(None).otherwise(pl.col("prev_day")).alias("prev_day"),
        pl.when(measured).then(None).otherwise(pl.col("next_day")).alias("next_day"),
    )
    return f.rename({"d": "day"}).select(list(schema)).cast(schema)


def _late_windows(study: Study, opts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per subject: start, end, why it ends there, and the evidence of the ending event."""
    start = int(opts["late_start_day"])
    ev = study.events.filter(
        pl.col("event").is_in(list(opts["late_end_events"])) & pl.col("day").is_not_null()
    ).with_columns(evidence_ref().alias("ref")).sort("day")
    lfu = dict(zip(study.subjects["subject_id"].to_list(), study.subjects["last_followup_day"].to_list())) \
        if study.subjects.height else {}
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for row in ev.iter_rows(named=True):
        by_subject.setdefault(row["subject_id"], []).append(row)
    out: dict[str, dict[str, Any]] = {}
    for sid in _subject_ids(study):
        ends: list[tuple[float, str, list[str]]] = [(float(opts["late_end_day"]), f"day {opts['late_end_day']}", [])]
        for row in by_subject.get(sid, ()):
            ends.append((float(row["day"]), row["event"], _uniq([row["ref"]])))
        if opts["late_end_at_last_followup"] and lfu.get(sid) is not None:
            ends.append((float(lfu[sid]), "last follow-up", []))
        end = min(e[0] for e in ends)
        why = [e for e in ends if e[0] == end]
        out[sid] = {"start": start, "end": end, "why": ", ".join(w[1] for w in why),
                    "evidence": _uniq(r for w in why for r in w[2])}
    return out


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
    daily = _anc_daily_frame(study, opts)
    cmp = "<=" if opts["inclusive"] else "<"
    lo, hi = opts["early_window"]
    wins = _late_windows(study, opts)
    win = pl.DataFrame(
        {"subject_id": list(wins), "_ls": [w["start"] for w in wins.values()], "_le": [w["end"] for w in wins.values()]},
        schema={"subject_id": pl.String, "_ls": pl.Float64, "_le": pl.Float64},
    )
    in_late = (pl.col("day") >= pl.col("_ls")) & (
        (pl.col("day") <= pl.col("_le")) if opts["late_window_end_inclusive"] else (pl.col("day") < pl.col("_le"))
    )
    daily = daily.join(win, on="subject_id", how="left").with_columns(
        pl.when((pl.col("day") >= lo) & (pl.col("day") <= hi)).then(pl.lit("early"))
        .when(in_late).then(pl.lit("late")).otherwise(pl.lit(None, dtype=pl.String)).alias("window"),
        *[
            (pl.col("anc") <= thr if cmp == "<=" else pl.col("anc") < thr).alias(f"anc_le_{name}")
            for name, thr in _levels(table).items()
        ],
    )
    cols = ["subject_id", "day", "anc", "source", "prev_day", "next_day", "window"]
    cols += [f"anc_le_{n}" for n in _levels(table)] + ["reason", "evidence"]
    return daily.select(cols).sort("subject_id", "day")


def _joined_runs(days: list[int], flags: list[bool | None], stable: int, count_gap: bool) -> list[tuple[int, int, int, bool]]:
    """Runs of ``True`` days joined across recoveries (``False`` days) shorter than ``stable``.

    Unknown days (``None``) end a run and are never bridged. Returns (start, end, length, joined).
    """
    raw: list[tuple[int, int]] = []
    start = prev = None
    for d, f in zip(days, flags):
        if f is True and start is not None and d == prev + 1:
            prev = d
        else:
            if start is not None:
                raw.append((start, prev))
            start, prev = (d, d) if f is True else (None, None)
    if start is not None:
        raw.append((start, prev))
    flag_at = dict(zip(days, flags))
    joined: list[list[Any]] = []
    for s, e in raw:
        if joined:
            gap = range(joined[-1][1] + 1, s)
            if len(gap) < stable and all(flag_at.get(g) is False for g in gap):
                joined[-1][1] = e
                joined[-1][2] += e - s + 1
                joined[-1][3] = True
                continue
        joined.append([s, e, e - s + 1, False])
    return [(s, e, (e - s + 1) if count_gap else n, j) for s, e, n, j in joined]


def _early_features(daily: pl.DataFrame, sids: list[str], opts: dict[str, Any],
                    levels: dict[str, float]) -> list[dict[str, Any]]:
    lo, hi = opts["early_window"]
    days = list(range(lo, hi + 1))
    cmp = _CMP["<=" if opts["inclusive"] else "<"]
    by_sid = {k[0]: g for k, g in daily.filter(pl.col("day").is_between(lo, hi)).partition_by("subject_id", as_dict=True).items()}
    rows = []
    for sid in sids:
        g = by_sid.get(sid)
        vals: dict[int, float] = {}
        refs: list[str] = []
        if g is not None:
            for r in g.iter_rows(named=True):
                if r["anc"] is not None:
                    vals[r["day"]] = r["anc"]
                    refs.extend(r["evidence"])
        row: dict[str, Any] = {"subject_id": sid, "early_n_days": len(vals), "early_evidence": _uniq(refs)}
        for name, thr in levels.items():
            flags = [None if d not in vals else cmp(vals[d], thr) for d in days]
            runs = _joined_runs(days, flags, int(opts["stable_recovery_days"]), bool(opts["count_recovery_days_in_run"]))
            best = max(runs, key=lambda r: (r[2], -r[0])) if runs else None
            row[f"anc_le_{name}_days"] = best[2] if best else (0 if vals else None)
            row[f"anc_le_{name}_start"] = best[0] if best else None
            row[f"anc_le_{name}_end"] = best[1] if best else None
            row[f"_joined_{name}"] = best[3] if best else False
            complete = len(vals) == len(days) or not opts["never_above_requires_full_window"]
            row[f"never_above_{name}"] = bool(vals) and complete and all(cmp(v, thr) for v in vals.values())
        rows.append(row)
    return rows


def _late_features(daily: pl.DataFrame, sids: list[str], opts: dict[str, Any], levels: dict[str, float],
                   wins: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    cmp = _CMP["<=" if opts["inclusive"] else "<"]
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
            "late_evidence": _uniq([r for p in sorted(pts, key=lambda t: t[1]) for r in p[2]] + w["evidence"]),
        }
        for name, thr in levels.items():
            row[f"late_n_anc_{name}"] = sum(1 for p in pts if cmp(p[0], thr))
        rows.append(row)
    return rows


def icaht(study: Study, options: IcahtOptions | None = None) -> pl.DataFrame:
    """Early and late ICAHT grade per subject (EHA/EBMT 2023; see ``criteria/icaht_2023.yaml``).

    Columns: ``icaht_early_grade``/``icaht_late_grade`` (Int64, null when not evaluable), the early
    durations ``anc_le_<level>_days`` with their ``_start``/``_end`` days, ``never_above_500``,
    the late window (``late_window_start``/``_end``/``_end_reason``), ``late_n_measurements``,
    ``late_anc_nadir`` (lowest) and ``late_anc_confirmed`` (the second lowest: the worst level reached
    by two measurements), ``early_rule``/``early_reason``/``early_evidence``, the same for ``late_``,
    and the combined ``rule``, ``reason`` and ``evidence`` (the NEUT rows used).
    """
    options = options or IcahtOptions()
    opts = options.resolved()
    table = load_criteria(options.criteria)
    levels = _levels(table)
    sids = _subject_ids(study)
    daily = icaht_daily(study, options)
    wins = _late_windows(study, opts)
    early = pl.DataFrame(_early_features(daily, sids, opts, levels), infer_schema_length=None)
    late = pl.DataFrame(_late_features(daily, sids, opts, levels, wins), infer_schema_length=None)
    if not sids:
        return _empty({"subject_id": pl.String, "icaht_early_grade": pl.Int64, "icaht_late_grade": pl.Int64,
                       "rule": pl.String, "reason": pl.String, "evidence": EVIDENCE})
    f = early.join(late, on="subject_id", how="left")
    f = f.with_columns(*domain_grade(table["early"], opts, "early"), *domain_grade(table["late"], opts, "late"))
    used = {c["feature"] for r in table["early"] for c in r["when"]}
    f = f.drop([c for c in f.columns if c.startswith("never_above_") and c not in used])
    f = f.with_columns(
        pl.when(pl.col("early_n_days") > 0).then(pl.col("early_grade")).otherwise(None).alias("icaht_early_grade"),
        pl.when(pl.col("early_n_days") > 0).then(pl.col("early_rule")).otherwise(None).alias("early_rule"),
        pl.when(pl.col("late_n_measurements") >= int(opts["late_min_measurements"]))
        .then(pl.col("late_grade")).otherwise(None).alias("icaht_late_grade"),
        pl.when(pl.col("late_n_measurements") >= int(opts["late_min_measurements"]))
        .then(pl.col("late_rule")).otherwise(None).alias("late_rule"),
    )
    texts = {r["id"]: rule_text(r, opts) for r in table["early"] + table["late"]}
    early_levels = _early_level_names(table, levels)
    sym = "<=" if opts["inclusive"] else "<"
    reasons = []
    for r in f.iter_rows(named=True):
        reasons.append((_early_reason(r, opts, levels, early_levels, texts, sym),
                        _late_reason(r, opts, levels, texts, sym)))
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
    lvl_cols = [c for n in early_levels for c in (f"anc_le_{n}_days", f"anc_le_{n}_start", f"anc_le_{n}_end")]
    cols = (["subject_id", "icaht_early_grade", "icaht_late_grade"] + lvl_cols
            + [f"never_above_{n}" for n in early_levels if any(
                c["feature"] == f"never_above_{n}" for r in table["early"] for c in r["when"])]
            + ["late_window_start", "late_window_end", "late_window_end_reason", "late_n_measurements",
               "late_anc_nadir", "late_anc_nadir_day", "late_anc_confirmed", "late_anc_confirmed_day",
               "early_rule", "early_reason", "early_evidence", "late_rule", "late_reason", "late_evidence",
               "rule", "reason", "evidence"])
    return f.select(cols).cast({"icaht_early_grade": pl.Int64, "icaht_late_grade": pl.Int64,
                                "early_evidence": EVIDENCE, "late_evidence": EVIDENCE, "evidence": EVIDENCE})


def icaht_summary(study: Study, options: IcahtOptions | None = None) -> pl.DataFrame:
    """``icaht_early_grade`` and ``icaht_late_grade`` per subject (the ``subject_summary.csv`` columns)."""
    return icaht(study, options).select("subject_id", "icaht_early_grade", "icaht_late_grade")


def icaht_episodes(study: Study, options: IcahtOptions | None = None,
                   graded: pl.DataFrame | None = None) -> pl.DataFrame:
    """ICAHT as ADAE-like rows (EHA/EBMT 2023): one early and one late row per subject with grade >= 1.

    Early: ASTDY/AENDY = the longest (joined) run of ANC at or below the first early level (500/uL by
    default) and ADURN its length in days. Late: ASTDY/AENDY = the late window, ADURN = its length.
    ``graded`` is the output of :func:`icaht` when already computed.
    """
    f = graded if graded is not None else icaht(study, options)
    table = load_criteria((options or IcahtOptions()).criteria)
    first = _early_level_names(table, _levels(table))[0]  # the shallowest early level (500/uL)
    schema = {"subject_id": pl.String, "episode": pl.Int64, "AETERM": pl.String, "ASTDY": pl.Int64,
              "AENDY": pl.Int64, "ADURN": pl.Int64, "ATOXGR": pl.Int64, "ATOXGRS": pl.String,
              "rule": pl.String, "reason": pl.String, "evidence": EVIDENCE}
    scale = "EHA/EBMT 2023 ICAHT"
    early = f.filter(pl.col("icaht_early_grade") >= 1).select(
        "subject_id", pl.lit(1, dtype=pl.Int64).alias("episode"),
        pl.lit("Immune effector cell-associated hematotoxicity, early (days 0-30)").alias("AETERM"),
        pl.col(f"anc_le_{first}_start").cast(pl.Int64).alias("ASTDY"),
        pl.col(f"anc_le_{first}_end").cast(pl.Int64).alias("AENDY"),
        pl.col(f"anc_le_{first}_days").cast(pl.Int64).alias("ADURN"),
        pl.col("icaht_early_grade").alias("ATOXGR"), pl.lit(scale).alias("ATOXGRS"),
        pl.col("early_rule").alias("rule"), pl.col("early_reason").alias("reason"),
        pl.col("early_evidence").alias("evidence"),
    )
    late = f.filter(pl.col("icaht_late_grade") >= 1).select(
        "subject_id", pl.lit(2, dtype=pl.Int64).alias("episode"),
        pl.lit("Immune effector cell-associated hematotoxicity, late (after day 30)").alias("AETERM"),
        pl.col("late_window_start").cast(pl.Int64).alias("ASTDY"),
        pl.col("late_window_end").cast(pl.Int64).alias("AENDY"),
        (pl.col("late_window_end") - pl.col("late_window_start") + 1).cast(pl.Int64).alias("ADURN"),
        pl.col("icaht_late_grade").alias("ATOXGR"), pl.lit(scale).alias("ATOXGRS"),
        pl.col("late_rule").alias("rule"), pl.col("late_reason").alias("reason"),
        pl.col("late_evidence").alias("evidence"),
    )
    return pl.concat([early.cast(schema), late.cast(schema)]).sort("subject_id", "episode")


def _early_reason(r: dict, opts: dict, levels: dict[str, float], names: list[str], texts: dict[str, str],
                  sym: str) -> str:
    lo, hi = opts["early_window"]
    if not r["early_n_days"]:
        return f"not evaluable: no ANC in days {lo}-{hi} (measured or interpolated)."
    parts = []
    for name in names:
        n = r[f"anc_le_{name}_days"]
        if n:
            joined = (f", joined across recoveries shorter than {opts['stable_recovery_days']} days"
                      if r[f"_joined_{name}"] else "")
            parts.append(f"ANC {sym} {_fmt(levels[name])} for {n} days (days {r[f'anc_le_{name}_start']}-"
                         f"{r[f'anc_le_{name}_end']}{joined})")
        else:
            parts.append(f"ANC never {sym} {_fmt(levels[name])}")
    for name in names:
        if r.get(f"never_above_{name}") and f"never_above_{name}" in r:
            parts.insert(0, f"ANC never above {_fmt(levels[name])} in days {lo}-{hi} "
                            f"({r['early_n_days']} days with data)")
    g = r["icaht_early_grade"]
    why = texts.get(r["early_rule"], "no ICAHT criterion met") if r["early_rule"] else "no ICAHT criterion met"
    return f"{'; '.join(parts)} -> grade {g} ({why})."


def _late_reason(r: dict, opts: dict, levels: dict[str, float], texts: dict[str, str], sym: str) -> str:
    ws, we = int(r["late_window_start"]), r["late_window_end"]
    win = f"days {ws}-{_fmt(we)} (window ends: {r['late_window_end_reason']})"
    n = r["late_n_measurements"]
    need = int(opts["late_min_measurements"])
    if we < ws:
        return (f"not evaluable: the late window is empty (it ends on day {_fmt(we)}, "
                f"{r['late_window_end_reason']}, before day {ws}).")
    if n < need:
        return f"not evaluable: {n} ANC measurement(s) in {win}, {need} needed."
    lowest = f"lowest ANC {_fmt(r['late_anc_nadir'])} on day {r['late_anc_nadir_day']}, second lowest " \
             f"{_fmt(r['late_anc_confirmed'])} on day {r['late_anc_confirmed_day']}"
    g = r["icaht_late_grade"]
    if r["late_rule"]:
        return f"{n} measurements in {win}; {lowest} -> grade {g} ({texts[r['late_rule']]})."
    top = max(levels.values())
    where = "at or below" if sym == "<=" else "below"
    return f"{n} measurements in {win}; {lowest}; fewer than {need} {where} {_fmt(top)} -> grade 0."


# ---------------------------------------------------------------------------------------------
# Recovery days


@dataclass(frozen=True)
class RecoveryOptions:
    """Options of the neutrophil/platelet recovery days (defaults in ``icaht_2023.yaml`` ``recovery``).

    * ``consecutive`` (3): number of consecutive days (or values) at or above the level.
    * ``mode`` ("days"): consecutive calendar days each with a measured value (ASTCT);
      "measurements": consecutive measured values on different days (CIBMTR, for sparse labs).
    * ``start`` ("nadir"): count only after the lowest value from day 0 on (ASTCT/CIBMTR);
      "first_drop": after the first value below the level; "day0": from day 0.
    * ``platelet_transfusion_free_days`` (7): no platelet transfusion in this many days before the
      first counting day; ``transfusion_free_during_counting`` (True): nor on the counting days.
    * ``platelet_transfusion_categories`` (("platelet_transfusion",)): intervention categories.
    """

    consecutive: int | None = None
    mode: str | None = None
    start: str | None = None
    platelet_transfusion_free_days: int | None = None
    transfusion_free_during_counting: bool | None = None
    platelet_transfusion_categories: tuple[str, ...] | None = None
    criteria: str = "icaht_2023"

    def resolved(self) -> dict[str, Any]:
        out = _resolve(self, load_criteria(self.criteria)["recovery"]["defaults"])
        out["platelet_transfusion_categories"] = tuple(out["platelet_transfusion_categories"])
        return out


def _transfusion_days(study: Study, categories: tuple[str, ...]) -> dict[str, set[int]]:
    iv = study.interventions.filter(pl.col("category").is_in(list(categories)) & pl.col("start_day").is_not_null())
    out: dict[str, set[int]] = {}
    for r in iv.iter_rows(named=True):
        lo = math.floor(r["start_day"])
        hi = math.floor(r["end_day"]) if r["end_day"] is not None else lo
        out.setdefault(r["subject_id"], set()).update(range(lo, max(lo, hi) + 1))
    return out


def _recovery_one(points: list[tuple[int, float, list[str]]], rule: dict, opts: dict, thr: float,
                  transfused: set[int] | None, label: str) -> tuple[int | None, str, list[str]]:
    """(recovery day, reason, evidence) for one subject's daily values ``points`` (day, value, refs)."""
    meets = _CMP[rule["op"]]
    k = int(opts["consecutive"])
    pts = [p for p in points if p[0] >= 0]
    if not pts:
        return None, f"no {label} from day 0 on.", []
    if opts["start"] == "nadir":
        nadir = min(pts, key=lambda p: (p[1], p[0]))
        if meets(nadir[1], thr):
            return None, f"not applicable: {label} never below {_fmt(thr)} from day 0 (nadir {_fmt(nadir[1])} on day {nadir[0]}).", nadir[2]
        after, start_txt, start_refs = nadir[0], f"after the nadir {_fmt(nadir[1])} on day {nadir[0]}", nadir[2]
    elif opts["start"] == "first_drop":
        drop = next((p for p in pts if not meets(p[1], thr)), None)
        if drop is None:
            return None, f"not applicable: {label} never below {_fmt(thr)} from day 0.", []
        after, start_txt, start_refs = drop[0], f"after the first value below {_fmt(thr)} on day {drop[0]}", drop[2]
    elif opts["start"] == "day0":
        after, start_txt, start_refs = -1, "from day 0", []
    else:
        raise ValueError(f"unknown recovery start {opts['start']!r} (nadir, first_drop or day0)")
    cand = [p for p in pts if p[0] > after]
    by_day = {p[0]: p for p in cand}
    for i, p in enumerate(cand):
        if opts["mode"] == "days":
            seq = [by_day.get(p[0] + j) for j in range(k)]
        elif opts["mode"] == "measurements":
            seq = cand[i:i + k] if i + k <= len(cand) else [None]
        else:
            raise ValueError(f"unknown recovery mode {opts['mode']!r} (days or measurements)")
        if any(s is None or not meets(s[1], thr) for s in seq):
            continue
        if transfused is not None:
            last = seq[-1][0] if opts["transfusion_free_during_counting"] else p[0] - 1
            window = range(p[0] - int(opts["platelet_transfusion_free_days"]), last + 1)
            hit = sorted(d for d in window if d in transfused)
            if hit:
                continue
        days = ", ".join(str(s[0]) for s in seq)
        extra = (f", no platelet transfusion from day {p[0] - int(opts['platelet_transfusion_free_days'])}"
                 if transfused is not None else "")
        return p[0], (f"{label} {rule['op']} {_fmt(thr)} on days {days} {start_txt}{extra} -> recovery day {p[0]}."), \
            _uniq(start_refs + [r for s in seq for r in s[2]])
    last_day = pts[-1][0]
    return None, f"not reached: no {k} consecutive {opts['mode']} with {label} {rule['op']} {_fmt(thr)} {start_txt} up to day {last_day}.", start_refs


def recovery_days(study: Study, options: RecoveryOptions | None = None) -> pl.DataFrame:
    """Neutrophil and platelet recovery day per subject (ASTCT / CIBMTR definitions).

    Columns: ``neutrophil_recovery_day``, ``platelet_recovery_day`` (Float64, null = not reached or
    not applicable) and for each its ``_rule``, ``_reason`` and ``_evidence``.
    Uses measured values only (lowest of a calendar day); days are calendar days after day 0.
    """
    options = options or RecoveryOptions()
    opts = options.resolved()
    table = load_criteria(options.criteria)["recovery"]
    sids = _subject_ids(study)
    daily = _daily(_param_obs(study, ["NEUT", "PLAT"]), "min").sort("subject_id", "param", "d")
    pts: dict[tuple[str, str], list] = {}
    for r in daily.iter_rows(named=True):
        pts.setdefault((r["subject_id"], r["param"]), []).append((r["d"], r["value"], list(r["refs"])))
    tx = _transfusion_days(study, opts["platelet_transfusion_categories"])
    cols: dict[str, list] = {"subject_id": []}
    for kind in ("neutrophil", "platelet"):
        for c in ("day", "rule", "reason", "evidence"):
            cols[f"{kind}_recovery_{c}"] = []
    for sid in sids:
        cols["subject_id"].append(sid)
        for kind, label in (("neutrophil", "ANC"), ("platelet", "platelets")):
            rule = table[kind]
            thr = _to_canonical(rule["value"], rule["unit"], rule["param"])
            day, why, ev = _recovery_one(pts.get((sid, rule["param"]), []), rule, opts, thr,
                                         tx.get(sid, set()) if kind == "platelet" else None, label)
            cols[f"{kind}_recovery_day"].append(None if day is None else float(day))
            cols[f"{kind}_recovery_rule"].append(rule["id"])
            cols[f"{kind}_recovery_reason"].append(why)
            cols[f"{kind}_recovery_evidence"].append(ev)
    schema = {"subject_id": pl.String}
    for kind in ("neutrophil", "platelet"):
        schema |= {f"{kind}_recovery_day": pl.Float64, f"{kind}_recovery_rule": pl.String,
                   f"{kind}_recovery_reason": pl.String, f"{kind}_recovery_evidence": EVIDENCE}
    return pl.DataFrame(cols, schema=schema)


# ---------------------------------------------------------------------------------------------
# CAR-HEMATOTOX


@dataclass(frozen=True)
class CarHematotoxOptions:
    """Options of the CAR-HEMATOTOX score (defaults in ``car_hematotox_2021.yaml``).

    * ``lymphodepletion_agents`` (fludarabine, cyclophosphamide, bendamustine): doses.csv agents whose
      first dose day is the baseline reference; without one, values before day 0 are used.
    * ``max_lookback_days`` (None): a baseline value older than this many days is not used.
    * ``undefined_boundary`` ("worst"): a value exactly at a binary cut-off the source leaves undefined
      scores the point ("worst") or not ("best").
    """

    lymphodepletion_agents: tuple[str, ...] | None = None
    max_lookback_days: float | None = None
    undefined_boundary: str | None = None
    criteria: str = "car_hematotox_2021"

    def resolved(self) -> dict[str, Any]:
        out = _resolve(self, load_criteria(self.criteria)["defaults"])
        out["lymphodepletion_agents"] = tuple(out["lymphodepletion_agents"])
        if out["undefined_boundary"] not in ("worst", "best"):
            raise ValueError("undefined_boundary must be 'worst' or 'best'")
        return out


_INCLUSIVE = {"<": "<=", ">": ">=", "<=": "<=", ">=": ">="}


def _item_points(item: dict, value: float, opts: dict) -> tuple[int, str]:
    """Points of one CAR-HEMATOTOX item for a canonical value, and the matching row's text."""
    for row in item["points"]:
        op = row["op"]
        if row.get("boundary") == "undefined" and opts["undefined_boundary"] == "worst":
            op = _INCLUSIVE[op]
        if _CMP[op](value, _to_canonical(row["value"], item["unit"], item["param"])):
            return int(row["points"]), row["text"]
    return int(item["else"]["points"]), item["else"]["text"]


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
    rows = []
    for sid, vals in values.items():
        ref = refs[sid]
        row: dict[str, Any] = {"subject_id": sid, "baseline_day": ref["day"], "baseline_rule": ref["rule"]}
        lo = hi = 0
        missing, parts, ev = [], [], list(ref["evidence"])
        for item in items:
            p = item["param"]
            key = p.lower()
            v = vals.get(p)
            if v is None:
                top = max([int(r["points"]) for r in item["points"]] + [int(item["else"]["points"])])
                hi += top
                missing.append(p)
                row |= {f"{key}_value": None, f"{key}_day": None, f"{key}_points": None}
                parts.append(f"{item['label']} missing (0-{top} points)")
                continue
            pts, txt = _item_points(item, v["value"], opts)
            lo += pts
            hi += pts
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
        risk_txt = (f"{risk['label']} risk (score >= {risk['min_score']})" if risk is not None
                    else "risk group undetermined: the possible scores span more than one group")
        row |= {
            "hematotox_score": score, "hematotox_score_min": lo, "hematotox_score_max": hi,
            "hematotox_risk": risk["label"] if risk else None, "hematotox_missing": missing,
            "rule": risk["id"] if risk else "car_hematotox.undetermined",
            "reason": f"baseline {ref['how']}: " + "; ".join(parts) + f" -> {score_txt}, {risk_txt}.",
            "evidence": _uniq(ev),
        }
        rows.append(row)
    schema = {"subject_id": pl.String, "hematotox_score": pl.Int64, "hematotox_score_min": pl.Int64,
              "hematotox_score_max": pl.Int64, "hematotox_risk": pl.String, "hematotox_missing": pl.List(pl.String),
              "baseline_day": pl.Float64, "baseline_rule": pl.String}
    for item in items:
        k = item["param"].lower()
        schema |= {f"{k}_value": pl.Float64, f"{k}_day": pl.Float64, f"{k}_points": pl.Int64}
    schema |= {"rule": pl.String, "reason": pl.String, "evidence": EVIDENCE}
    if not rows:
        return _empty(schema)
    return pl.DataFrame(rows, schema=schema)


# ---------------------------------------------------------------------------------------------
# EASIX family


@dataclass(frozen=True)
class EasixOptions:
    """Options of the EASIX family (defaults in ``easix.yaml``).

    * ``lymphodepletion_agents``, ``max_lookback_days``: the pre-lymphodepletion timepoint, as for
      :class:`CarHematotoxOptions` (each input is its own last value on or before the reference day).
    * ``day_tolerance_days`` (0): at a chosen day, inputs measured within +/- this many calendar days
      are used (the nearest; on a tie the earlier).
    * ``daily_value`` ("last"): several values on one calendar day -> last | min | max.
    * ``log_base`` (2): base of the ``log<base>_<score>`` columns.
    """

    lymphodepletion_agents: tuple[str, ...] | None = None
    max_lookback_days: float | None = None
    day_tolerance_days: int | None = None
    daily_value: str | None = None
    log_base: float | None = None
    criteria: str = "easix"

    def resolved(self) -> dict[str, Any]:
        out = _resolve(self, load_criteria(self.criteria)["defaults"])
        out["lymphodepletion_agents"] = tuple(out["lymphodepletion_agents"])
        return out


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
        values, refs = _pre_ld_values(study, inputs, opts["lymphodepletion_agents"], opts["max_lookback_days"])
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
        notes = [f"{p} {_fmt(vals[p]['value'])} {_canonical_unit(p)[0]} -> {_fmt(conv[p])} {inputs[p]['unit']}"
                 for p in inputs if conv[p] is not None and _canonical_unit(p)[0] != inputs[p]["unit"]]
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


# ---------------------------------------------------------------------------------------------
# IEC-HS flags


@dataclass(frozen=True)
class IecHsOptions:
    """Options of the IEC-HS flagging aid (defaults in ``iec_hs_2023.yaml``).

    * ``start_day`` (0): first day that can be flagged.
    * ``baseline_day`` (0): baseline = the last value on or before this day (infusion).
    * ``lab_window_days`` (0): a value measured up to this many days before a day counts for it.
    * ``min_supporting`` (1): supporting criteria needed besides a key (ferritin) criterion.
    * ``exclude`` (()): criterion ids not to use (e.g. the cytopenia proxy).
    """

    start_day: int | None = None
    baseline_day: int | None = None
    lab_window_days: int | None = None
    min_supporting: int | None = None
    exclude: tuple[str, ...] = ()
    criteria: str = "iec_hs_2023"

    def resolved(self) -> dict[str, Any]:
        return _resolve(self, load_criteria(self.criteria)["defaults"])


def _cond_params(criteria: list[dict]) -> set[str]:
    return {c["param"] for crit in criteria if crit.get("computable") for alt in crit["any"] for c in alt}


def _eval_condition(c: dict, day_vals: dict[str, dict], base: dict[str, dict]) -> tuple[bool | None, str, list[str]]:
    """(holds, text, evidence) for one condition; holds is None when the data cannot decide."""
    p, op = c["param"], c["op"]
    v = day_vals.get(p, {}).get("min" if op.startswith("<") else "max")
    if v is None:
        return None, f"no {p}", []
    b = base.get(p)
    if "baseline" in c:
        abnormal = b is not None and b["uln"] is not None and b["value"] > b["uln"]
        if (c["baseline"] == "abnormal") != abnormal:
            return False, "", []
    kind, k = c["compare"], float(c["value"])
    unit = _canonical_unit(p)[0]
    if kind == "value":
        ref, what = _to_canonical(k, c["unit"], p), f"{_fmt(k)} {c['unit']}"
    elif kind in ("uln_multiple", "lln_multiple"):
        lim = v["uln"] if kind == "uln_multiple" else v["lln"]
        name = "ULN" if kind == "uln_multiple" else "LLN"
        if lim is None:
            return None, f"{p} has no {name}", []
        ref, what = k * lim, f"{_fmt(k)} x {name} ({_fmt(lim)})"
    elif kind == "baseline_multiple":
        if b is None:
            return None, f"no baseline {p}", []
        ref, what = k * b["value"], f"{_fmt(k)} x baseline ({_fmt(b['value'])} on day {b['d']})"
    else:
        raise ValueError(f"unknown comparison {kind!r}")
    holds = _CMP[op](v["value"], ref)
    refs = [v["ref"]] + ([b["ref"]] if kind == "baseline_multiple" and b else [])
    return holds, f"{p} {_fmt(v['value'])} {unit} on day {v['d']} {op} {what}", refs


def iec_hs_flags(study: Study, options: IecHsOptions | None = None) -> pl.DataFrame:
    """Days on which the data meet the computable IEC-HS criteria (Hines 2023) - a flag, not a diagnosis.

    One row per subject and calendar day (from ``start_day``) with any criterion parameter measured.
    Columns: ``iec_hs_flag`` (a key criterion and >= ``min_supporting`` supporting criteria met),
    ``key_met``, ``supporting_met``, ``not_evaluable`` (criteria the data cannot decide that day),
    ``needs_adjudication`` (criteria that are never computed: hemophagocytosis, rapid rise, timing,
    attribution), ``rule``, ``reason`` and ``evidence``. Thresholds are unverified (see the table).
    """
    options = options or IecHsOptions()
    opts = options.resolved()
    table = load_criteria(options.criteria)
    key = [c for c in table["key"] if c["id"] not in options.exclude]
    sup = [c for c in table["supporting"] if c["id"] not in options.exclude]
    adjud = [c["id"] for c in key + sup if not c.get("computable")] + [c["id"] for c in table.get("adjudication_only", [])]
    params = _cond_params(key + sup)
    obs = _param_obs(study, params)
    lo_d = _daily(obs, "min").rename({"value": "min", "refs": "min_refs"})
    hi_d = _daily(obs, "max").select("subject_id", "param", "d", pl.col("value").alias("max"), pl.col("refs").alias("max_refs"))
    daily = lo_d.join(hi_d, on=["subject_id", "param", "d"], how="left").sort("subject_id", "param", "d")
    series: dict[tuple[str, str], list[dict]] = {}
    for r in daily.iter_rows(named=True):
        series.setdefault((r["subject_id"], r["param"]), []).append(r)
    base_obs = obs.filter(pl.col("d") <= int(opts["baseline_day"])).sort(["day", "src_row"], nulls_last=True)
    baseline: dict[str, dict[str, dict]] = {}
    for r in base_obs.iter_rows(named=True):
        baseline.setdefault(r["subject_id"], {})[r["param"]] = r
    w = int(opts["lab_window_days"])
    rows = []
    for sid in _subject_ids(study):
        days = sorted({r["d"] for (s, _), lst in series.items() if s == sid for r in lst if r["d"] >= int(opts["start_day"])})
        base = baseline.get(sid, {})
        for d in days:
            day_vals: dict[str, dict] = {}
            for p in params:
                cands = [r for r in series.get((sid, p), []) if d - w <= r["d"] <= d]
                if cands:
                    mn = min(cands, key=lambda r: (r["min"], -r["d"]))
                    mx = max(cands, key=lambda r: (r["max"], r["d"]))
                    day_vals[p] = {
                        "min": {"value": mn["min"], "d": mn["d"], "lln": mn["lln"], "uln": mn["uln"], "ref": (mn["min_refs"] or [None])[0]},
                        "max": {"value": mx["max"], "d": mx["d"], "lln": mx["lln"], "uln": mx["uln"], "ref": (mx["max_refs"] or [None])[0]},
                    }
            met: dict[str, list[str]] = {"key": [], "supporting": []}
            not_eval, texts, ev = [], [], []
            for role, crits in (("key", key), ("supporting", sup)):
                for crit in crits:
                    if not crit.get("computable"):
                        continue
                    decided, hit_txt = False, None
                    for alt in crit["any"]:
                        res = [_eval_condition(c, day_vals, base) for c in alt]
                        if all(h is True for h, _, _ in res):
                            hit_txt = " and ".join(t for _, t, _ in res)
                            ev += [x for _, _, refs in res for x in refs]
                            break
                        if any(h is False for h, _, _ in res):
                            decided = True
                    if hit_txt is not None:
                        met[role].append(crit["id"])
                        texts.append(f"{crit['id']}: {hit_txt}")
                    elif not decided:
                        not_eval.append(crit["id"])
            flag = bool(met["key"]) and len(met["supporting"]) >= int(opts["min_supporting"])
            if flag:
                reason = (f"data meet {', '.join(met['key'])} and {len(met['supporting'])} supporting criterion(s) "
                          f"({'; '.join(texts)}) -> flagged for review, not a diagnosis; needs adjudication of "
                          f"{', '.join(adjud)}.")
            elif texts:
                reason = (f"not flagged: {'; '.join(texts)}; needs a key (ferritin) criterion and "
                          f">= {opts['min_supporting']} supporting criterion(s).")
            else:
                reason = "not flagged: no computable IEC-HS criterion met."
            rows.append({
                "subject_id": sid, "day": d, "iec_hs_flag": flag, "key_met": met["key"],
                "supporting_met": met["supporting"], "not_evaluable": not_eval, "needs_adjudication": adjud,
                "rule": "iec_hs.flag" if flag else None, "reason": reason,
                "evidence": _uniq(ev) if (flag or texts) else [],
            })
    schema = {"subject_id": pl.String, "day": pl.Int64, "iec_hs_flag": pl.Boolean, "key_met": pl.List(pl.String),
              "supporting_met": pl.List(pl.String), "not_evaluable": pl.List(pl.String),
              "needs_adjudication": pl.List(pl.String), "rule": pl.String, "reason": pl.String, "evidence": EVIDENCE}
    if not rows:
        return _empty(schema)
    return pl.DataFrame(rows, schema=schema)
