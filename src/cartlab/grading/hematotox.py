"""Haematotoxicity and inflammation scores: ICAHT, T-ICAHT, count recovery, CAR-HEMATOTOX, EASIX, IEC-HS flags.

Every threshold lives in a criteria table (``criteria/icaht_2023.yaml``, ``criteria/t_icaht_2025.yaml``,
``criteria/car_hematotox_2021.yaml``, ``criteria/easix.yaml``, ``criteria/iec_hs_2023.yaml``) whose
header says which rows were verified against which source; the code here only evaluates them.
Every result carries ``rule`` (criteria row id), ``reason`` (a sentence) and ``evidence`` (the
``"<file>:<row>"`` references of the source rows used).

Public functions (all pure functions of a canonical :class:`~cartlab.model.Study`):

* :func:`icaht` - early and late ICAHT grade per subject (EHA/EBMT 2023), with cumulative durations
  and nadir; :func:`icaht_daily` - the daily ANC series behind it (measured or interpolated, flagged);
  :func:`icaht_summary`, :func:`icaht_episodes` (defined in :mod:`cartlab.grading.icaht`).
* :func:`t_icaht` - early and late thrombocytopenia grade (T-ICAHT, Rejeski 2025) and
  :func:`t_icaht_daily` (defined in :mod:`cartlab.grading.t_icaht`).
* :func:`recovery_days` - neutrophil and platelet recovery days (ASTCT/CIBMTR definitions).
* :func:`car_hematotox` - CAR-HEMATOTOX score and risk group from pre-lymphodepletion values, with a
  score range (never a guess) when inputs are missing.
* :func:`easix` - EASIX, m-EASIX and s-EASIX (and their log2) at the pre-lymphodepletion timepoint,
  a chosen day, or every day.
* :func:`iec_hs_flags` - days on which the data meet the computable IEC-HS criteria (a flag for
  clinician review, not a diagnosis; defined in :mod:`cartlab.grading.iec_hs`).

Units: observations are in canonical units (NEUT/PLAT 10^9/L, HGB g/L, CRP mg/L, CREAT umol/L,
FERRITIN ug/L, FIBRINO g/L); every cut-off is written in the unit of its source and converted
explicitly with :func:`cartlab.units.conversion`.

>>> from cartlab.datasets import seed_case
>>> icaht(seed_case())["icaht_early_grade"].to_list()
[3]
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import polars as pl

from cartlab._deprecated import renamed
from cartlab.criteria import CriteriaOptions
from cartlab.grading.common import load_criteria
from cartlab.grading.count_recovery import RecoveryOptions, derive_count_recovery
from cartlab.grading.hemato_common import DailyValue, Number, join_param, joined, str_list
from cartlab.grading.hemato_common import bounds as _bounds
from cartlab.grading.hemato_common import canonical_unit as _canonical_unit
from cartlab.grading.hemato_common import censored_days as _censored_days
from cartlab.grading.hemato_common import daily_values as _daily
from cartlab.grading.hemato_common import empty as _empty
from cartlab.grading.hemato_common import fmt_expr as _fmt_expr
from cartlab.grading.hemato_common import from_canonical_expr as _from_canonical
from cartlab.grading.hemato_common import interval_cmp as _icmp
from cartlab.grading.hemato_common import param_obs as _param_obs
from cartlab.grading.hemato_common import param_obs_censored as _param_obs_censored
from cartlab.grading.hemato_common import point as _point
from cartlab.grading.hemato_common import subject_order as _subject_order
from cartlab.grading.hemato_common import to_canonical as _to_canonical
from cartlab.grading.hemato_common import unique_refs_expr as _refs
from cartlab.grading.icaht import (
    IcahtOptions,
    derive_icaht,
    derive_icaht_daily,
    derive_icaht_episodes,
    derive_icaht_summary,
)
from cartlab.grading.iec_hs import IecHsOptions, derive_iec_hs_flags
from cartlab.grading.t_icaht import TIcahtOptions, derive_t_icaht, derive_t_icaht_daily
from cartlab.model import Study
from cartlab.provenance import EVIDENCE, evidence_ref

__all__ = [
    "CarHematotoxOptions",
    "EasixOptions",
    "IcahtOptions",
    "IecHsOptions",
    "RecoveryOptions",
    "TIcahtOptions",
    "derive_car_hematotox",
    "derive_count_recovery",
    "derive_easix",
    "derive_icaht",
    "derive_icaht_daily",
    "derive_icaht_episodes",
    "derive_icaht_summary",
    "derive_iec_hs_flags",
    "derive_t_icaht",
    "derive_t_icaht_daily",
]

_NO_REFS = pl.lit([], dtype=EVIDENCE)
_STRINGS = pl.List(pl.String)
_SID = "subject_id"


# ---------------------------------------------------------------------------------------------
# baseline (pre-lymphodepletion) values


def _lymphodepletion_days(study: Study, agents: Iterable[str], window: tuple[float, float],
                          max_gap: float) -> pl.DataFrame:
    """Per subject: ``ld_day`` (the first dose day of the lymphodepletion course), ``ld_last`` (its
    last dose day) and ``ld_refs`` (the first day's dose rows). The course: the doses of ``agents``
    within ``window`` (days relative to the CAR-T infusion, day 0), the last run of them with no gap
    longer than ``max_gap`` days - a bridging cyclophosphamide weeks earlier is not lymphodepletion
    (EMCL score page: the score is "determined prior to lymphodepleting chemotherapy (e.g. day -5)")."""
    names = [a.lower() for a in agents]
    lo, hi = (float(x) for x in window)
    doses = study.doses.filter(
        pl.col("agent").str.to_lowercase().is_in(names) & pl.col("day").is_not_null()
        & pl.col("day").is_between(lo, hi)
    ).with_columns(evidence_ref().alias("ref")).sort(_SID, "day")
    # a new course starts after a gap longer than max_gap days; the last course is lymphodepletion
    doses = doses.with_columns(((pl.col("day") - pl.col("day").shift(1).over(_SID)) > float(max_gap))
                               .fill_null(False).cast(pl.Int64).cum_sum().over(_SID).alias("_course"))
    doses = doses.filter(pl.col("_course") == pl.col("_course").max().over(_SID))
    first = pl.col("day").min()
    return doses.group_by(_SID, maintain_order=True).agg(
        first.cast(pl.Float64).alias("ld_day"), pl.col("day").max().cast(pl.Float64).alias("ld_last"),
        pl.col("ref").filter(pl.col("day") == first).drop_nulls().unique(maintain_order=True).alias("ld_refs"),
    )


def _pre_ld_values(study: Study, params: Iterable[str], opts: dict) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Baseline values: the last result on or before the first dose day of the lymphodepletion
    course (:func:`_lymphodepletion_days`), else the last result before day 0. A censored result
    (">40000") is a result: when it is the last one it is the baseline (``censor``/``censor_limit``
    set, ``value`` null), never an older number.

    Returns (the observation used - ``day``, ``value``, ``censor``, ``censor_limit``, ``ref`` - per
    subject and param; per subject in subject order: ``ref_day``, ``how``, ``baseline_rule``,
    ``ref_evidence``)."""
    agents, max_lookback = opts["lymphodepletion_agents"], opts["max_lookback_days"]
    # the window and the gap come from the criteria table's defaults (car_hematotox_2021.yaml,
    # easix.yaml) or the user's options: no second copy of the defaults here
    window = tuple(opts["lymphodepletion_window"])
    ld = _lymphodepletion_days(study, agents, window, opts["lymphodepletion_max_gap_days"])
    has_ld = pl.col("ld_day").is_not_null()
    refs = _subject_order(study).join(ld, on=_SID, how="left").select(
        _SID, "_order",
        pl.when(has_ld).then(pl.col("ld_day")).otherwise(0.0).alias("ref_day"),
        pl.when(has_ld).then(pl.format(
            f"on or before day {{}} (first lymphodepletion dose: course days {{}} to {{}}, the last course of "
            f"{'/'.join(agents)} within days {window[0]:g} to {window[1]:g})",
            _fmt_expr(pl.col("ld_day"), 6), _fmt_expr(pl.col("ld_day"), 6), _fmt_expr(pl.col("ld_last"), 6)))
        .otherwise(pl.lit(f"before day 0 (no lymphodepletion dose recorded within days {window[0]:g} to "
                          f"{window[1]:g})")).alias("how"),
        pl.when(has_ld).then(pl.lit("baseline.first_lymphodepletion_day"))
        .otherwise(pl.lit("baseline.before_day0")).alias("baseline_rule"),
        pl.col("ld_refs").fill_null(_NO_REFS).alias("ref_evidence"),
    ).sort("_order")
    obs = _param_obs_censored(study, params).join(
        refs.select(_SID, "ref_day", "baseline_rule"), on=_SID, how="inner")
    ok = (pl.when(pl.col("baseline_rule") == "baseline.first_lymphodepletion_day")
          .then(pl.col("d") <= pl.col("ref_day").floor()).otherwise(pl.col("day") < 0))
    if max_lookback is not None:
        ok = ok & (pl.col("day") >= pl.col("ref_day") - float(max_lookback))
    # the last result by day wins, numeric or censored; two of one day without a time in value order
    # (the higher is taken as the later: file order must not decide)
    values = (obs.filter(ok).sort(["day", "value", "censor_limit", "src_row"], nulls_last=True)
              .group_by(_SID, "param", maintain_order=True)
              .agg(pl.col("day", "value", "censor", "censor_limit", "src_file", "src_row").last())
              .with_columns(evidence_ref().alias("ref")))
    return values, refs


# ---------------------------------------------------------------------------------------------
# CAR-HEMATOTOX


class CarHematotoxOptions(CriteriaOptions):
    """Options of the CAR-HEMATOTOX score; ``None`` means the criteria table's default (its
    ``defaults``, whose comments document each option: the table below is generated from them)."""

    lymphodepletion_agents: tuple[str, ...] | None = None
    lymphodepletion_window: tuple[Number, Number] | None = None
    lymphodepletion_max_gap_days: Number | None = None
    max_lookback_days: Number | None = None
    undefined_boundary: Literal["worst", "best"] | None = None
    criteria: str = "car_hematotox_2021"


_INCLUSIVE = {"<": "<=", ">": ">=", "<=": "<=", ">=": ">="}


def _item_points(item: dict, opts: dict) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """(lowest points, highest points, text) of one CAR-HEMATOTOX item for its baseline
    ``<param>_value`` or censored ``_<param>_censor``/``_<param>_limit`` (canonical): the first row
    that holds, else the ``else`` row. A censored result (">40000") scores where its bound settles
    the rows (> 2000 -> 2 points); where it does not, the points are the range its bound leaves
    (like a missing item's). Null when the item is missing."""
    k = item["param"].lower()
    v = pl.col(f"{k}_value")
    iv = _bounds(v, pl.col(f"_{k}_censor"), pl.col(f"_{k}_limit"))
    conds, texts, pts = [], [], []
    at_cut = []  # (value exactly at a cut-off the source leaves undefined, what was done)
    for row in item["points"]:
        op = row["op"]
        cut = _to_canonical(row["value"], item["unit"], item["param"])
        if row.get("boundary") == "undefined":
            worst = opts["undefined_boundary"] == "worst"
            op = _INCLUSIVE[op] if worst else op
            at_cut.append((v == cut, f"= {row['value']:g} {item['unit']}",
                           f"; exactly {row['value']:g} {item['unit']}, a cut-off the source leaves "
                           f"undefined: scored {'worst' if worst else 'best'} (option undefined_boundary)"))
        conds.append(_icmp(op, iv, _point(cut)))
        texts.append(row["text"])
        pts.append(int(row["points"]))
    else_pts = int(item["else"]["points"])
    not_true = [~c.fill_null(False) for c in conds]   # the row may fail
    false = [(~c).fill_null(False) for c in conds]     # the row fails for sure
    possible = [c.fill_null(True) & pl.all_horizontal([pl.lit(True), *not_true[:i]]) for i, c in enumerate(conds)]
    possible_else = pl.all_horizontal([pl.lit(True), *not_true])
    opts_pts = [pl.when(ok).then(p) for ok, p in zip(possible, pts)] + [pl.when(possible_else).then(else_pts)]
    lo = pl.min_horizontal(opts_pts).cast(pl.Int64)
    hi = pl.max_horizontal(opts_pts).cast(pl.Int64)
    text = pl.when(pl.lit(False)).then(pl.lit(None, dtype=pl.String))
    for i, (c, t) in enumerate(zip(conds, texts)):
        text = text.when(c.fill_null(False) & pl.all_horizontal([pl.lit(True), *false[:i]])).then(pl.lit(t))
    text = text.when(pl.all_horizontal([pl.lit(True), *false])).then(pl.lit(item["else"]["text"]))
    text = text.otherwise(pl.lit("the censored result does not settle the cut-offs"))
    note = pl.lit("")
    for hit, holds, words in at_cut:
        # exactly at an undefined cut-off neither "< x" nor "> x" holds: show the comparison that does
        # ("= 1200 /uL"), then how it was scored (audit s27 item 12c)
        text = pl.when(hit.fill_null(False)).then(pl.lit(holds)).otherwise(text)
        note = pl.when(hit.fill_null(False)).then(pl.lit(words)).otherwise(note)
    known = iv[0].is_not_null()
    return (pl.when(known).then(lo), pl.when(known).then(hi),
            pl.when(known).then(pl.concat_str(text, note)).cast(pl.String))


def _risk_group(score: pl.Expr, groups: list[dict]) -> pl.Expr:
    """Id of the highest risk group whose ``min_score`` the score reaches (null when none)."""
    out = pl.when(pl.lit(False)).then(pl.lit(None, dtype=pl.String))
    for g in groups:
        out = out.when(score >= int(g["min_score"])).then(pl.lit(g["id"]))
    return out.otherwise(pl.lit(None, dtype=pl.String))


def derive_car_hematotox(study: Study, options: CarHematotoxOptions | None = None) -> pl.DataFrame:
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
    values, refs = _pre_ld_values(study, [i["param"] for i in items], opts)
    schema = {_SID: pl.String, "hematotox_score": pl.Int64, "hematotox_score_min": pl.Int64,
              "hematotox_score_max": pl.Int64, "hematotox_risk": pl.String, "hematotox_missing": pl.List(pl.String),
              "baseline_day": pl.Float64, "baseline_rule": pl.String}
    for item in items:
        k = item["param"].lower()
        schema |= {f"{k}_value": pl.Float64, f"{k}_day": pl.Float64, f"{k}_points": pl.Int64}
    schema |= {"rule": pl.String, "reason": pl.String, "evidence": EVIDENCE}
    if refs.is_empty():
        return _empty(schema)
    f = refs
    for item in items:
        k = item["param"].lower()
        f = join_param(f, values, [_SID], item["param"],
                       {"value": f"{k}_value", "day": f"{k}_day", "ref": f"_{k}_ref",
                        "censor": f"_{k}_censor", "censor_limit": f"_{k}_limit"})
    lo = hi = pl.lit(0, dtype=pl.Int64)
    parts, missing, scored, open_ = [], [], [], []
    for item in items:
        p, k = item["param"], item["param"].lower()
        v = pl.col(f"{k}_value")
        absent = v.is_null() & pl.col(f"_{k}_censor").is_null()
        p_lo, p_hi, txt = _item_points(item, opts)
        f = f.with_columns(p_lo.alias(f"_{k}_lo"), p_hi.alias(f"_{k}_hi"), txt.alias(f"_{k}_text"))
        f = f.with_columns(pl.when(pl.col(f"_{k}_lo") == pl.col(f"_{k}_hi")).then(pl.col(f"_{k}_lo"))
                           .alias(f"{k}_points"))
        top = max([int(r["points"]) for r in item["points"]] + [int(item["else"]["points"])])
        lo = lo + pl.col(f"_{k}_lo").fill_null(0)
        hi = hi + pl.when(absent).then(top).otherwise(pl.col(f"_{k}_hi"))
        missing.append((absent, p))
        unsettled = ~absent & pl.col(f"{k}_points").is_null()
        open_.append((unsettled, p))
        scored.append((pl.col(f"{k}_points").is_not_null(), item.get("id", p)))
        # a censored result in the item's unit ("ferritin >40000 ng/mL")
        shown = pl.coalesce(
            pl.concat_str(pl.col(f"_{k}_censor"),
                          _fmt_expr(_from_canonical(pl.col(f"_{k}_limit"), item["unit"], p), 6)),
            _fmt_expr(_from_canonical(v, item["unit"], p)))
        pts_txt = pl.when(pl.col(f"{k}_points").is_not_null()).then(pl.col(f"{k}_points").cast(pl.String)).otherwise(
            pl.format("{}-{} points (censored result)", pl.col(f"_{k}_lo"), pl.col(f"_{k}_hi")))
        parts.append(pl.when(absent).then(pl.lit(f"{item['label']} missing (0-{top} points)")).otherwise(
            pl.concat_str(pl.lit(f"{item['label']} "), shown, pl.lit(f" {item['unit']} (day "),
                          _fmt_expr(pl.col(f"{k}_day")), pl.lit(") -> "), pts_txt,
                          pl.lit(" ["), pl.col(f"_{k}_text"), pl.lit("]"))))
    f = f.with_columns(lo.alias("hematotox_score_min"), hi.alias("hematotox_score_max"),
                       str_list(missing).alias("hematotox_missing"), joined(open_, ", ").alias("_open"))
    lo, hi, miss = pl.col("hematotox_score_min"), pl.col("hematotox_score_max"), pl.col("hematotox_missing")
    complete = lo == hi
    why = pl.concat_str(pl.when(miss.list.len() > 0).then(pl.concat_str(miss.list.join(", "), pl.lit(" missing"))),
                        pl.when(pl.col("_open") != "").then(pl.concat_str(pl.col("_open"),
                                                                          pl.lit(" censored, not settled"))),
                        separator="; ", ignore_nulls=True)
    f = f.with_columns(pl.when(_risk_group(lo, groups) == _risk_group(hi, groups))
                       .then(_risk_group(lo, groups)).alias("_risk"))
    risk = pl.col("_risk")
    labels = {g["id"]: g["label"] for g in groups}
    # each group's band: from its min_score up to the next higher group's (groups: highest first)
    above = [None, *(int(g["min_score"]) for g in groups[:-1])]
    risk_txt = {g["id"]: f"{g['label']} risk (score " + (f">= {g['min_score']})" if top is None else
                                                        f"{g['min_score']}-{top - 1})")
                for g, top in zip(groups, above)}
    score_txt = pl.when(complete).then(pl.format("score {}", lo)).otherwise(
        pl.format("score {}-{} ({})", lo, hi, why))
    f = f.with_columns(
        pl.when(complete).then(lo).alias("hematotox_score"),
        risk.replace_strict(labels, default=None, return_dtype=pl.String).alias("hematotox_risk"),
        pl.col("ref_day").alias("baseline_day"),
        # the risk group and every item scored: the row rests on each item's cut-offs
        joined([(pl.lit(True), risk.fill_null(pl.lit("car_hematotox.undetermined"))), *scored], "; ").alias("rule"),
        pl.concat_str(pl.lit("baseline "), pl.col("how"), pl.lit(": "), pl.concat_str(parts, separator="; "),
                      pl.lit(" -> "), score_txt, pl.lit(", "),
                      pl.when(risk.is_null()).then(pl.lit("risk group undetermined: the possible scores span more "
                                                           "than one group"))
                      .otherwise(risk.replace_strict(risk_txt, default=None, return_dtype=pl.String)),
                      pl.lit(".")).alias("reason"),
        _refs(pl.col("ref_evidence"), *[pl.col(f"_{i['param'].lower()}_ref") for i in items]).alias("evidence"),
    )
    return f.sort("_order").select(list(schema)).cast(schema)


# ---------------------------------------------------------------------------------------------
# EASIX family


class EasixOptions(CriteriaOptions):
    """Options of the EASIX family; ``None`` means the criteria table's default (its ``defaults``,
    whose comments document each option: the table below is generated from them)."""

    lymphodepletion_agents: tuple[str, ...] | None = None
    lymphodepletion_window: tuple[Number, Number] | None = None
    lymphodepletion_max_gap_days: Number | None = None
    max_lookback_days: Number | None = None
    day_tolerance_days: int | None = None
    daily_value: DailyValue | None = None
    log_base: Number | None = None
    criteria: str = "easix"


def _easix_inputs(study: Study, day: float | str, opts: dict, inputs: dict[str, dict]) -> pl.DataFrame:
    """One row per output row (``subject_id``, ``_order``, ``timepoint``, ``day``) with, per input
    param, its canonical value ``_<param>``, ``<column>_day`` and reference ``_<param>_ref``."""
    if day == "pre_ld":
        values, refs = _pre_ld_values(study, inputs, opts)
        f = refs.select(_SID, "_order", pl.lit("pre_ld").alias("timepoint"), pl.col("ref_day").alias("day"))
        keys = [_SID]
    else:
        numeric = _daily(_param_obs(study, inputs), opts["daily_value"]).select(
            _SID, "param", "d", "value", pl.col("d").cast(pl.Float64).alias("day"),
            pl.col("refs").list.first().alias("ref"),
            pl.lit(None, dtype=pl.String).alias("censor"), pl.lit(None, dtype=pl.Float64).alias("censor_limit"))
        # a day with only a censored result ("PLAT <10") is a result of that day, read as a bound
        # (session 33: it read as missing, and a chosen day's nearest number could come from further away)
        cens = [_censored_days(study, p, numeric.filter(pl.col("param") == p)).select(
            _SID, pl.lit(p).alias("param"), "d", pl.lit(None, dtype=pl.Float64).alias("value"),
            pl.col("d").cast(pl.Float64).alias("day"), pl.col("_crs").alias("ref"), "censor", "censor_limit")
            for p in inputs]
        values = pl.concat([numeric, *cens], how="vertical_relaxed")
        if day == "each":
            f = values.select(_SID, "d").unique().sort(_SID, "d").select(
                _SID, "d", pl.col("d").alias("_order"), pl.lit("each").alias("timepoint"),
                pl.col("d").cast(pl.Float64).alias("day"))
            keys = [_SID, "d"]
        elif isinstance(day, (int, float)):
            # the nearest day within the tolerance; on a tie the earlier
            tol, target = int(opts["day_tolerance_days"]), math.floor(day)
            off = pl.col("d") - target
            values = (values.filter(off.abs() <= tol).sort(off.abs(), off)
                      .group_by(_SID, "param", maintain_order=True).first())
            f = _subject_order(study).with_columns(pl.lit(f"day {target}").alias("timepoint"),
                                                   pl.lit(float(target)).alias("day"))
            keys = [_SID]
        else:
            raise ValueError(f"day must be 'pre_ld', 'each' or a number, not {day!r}")
    for p, spec in inputs.items():
        f = join_param(f, values, keys, p, {"value": f"_{p}", "day": f"{spec['column']}_day", "ref": f"_{p}_ref",
                                            "censor": f"_{p}_censor", "censor_limit": f"_{p}_limit"})
    return f


def _unit_key(e: pl.Expr) -> pl.Expr:
    """A unit for comparison: lower case, no spaces ("mg/dL" == "mg / dl")."""
    return e.cast(pl.String).str.to_lowercase().str.replace_all(r"\s+", "")


def _with_recorded_units(f: pl.DataFrame, study: Study, params: list[str]) -> pl.DataFrame:
    """``f`` with ``_<param>_ounit`` / ``_<param>_oval``: the unit and value as recorded in the row
    ``_<param>_ref`` cites (null when the study keeps no ``orig_unit`` or the row has none)."""
    obs = study.observations
    if not params:
        return f
    if "orig_unit" not in obs.columns:
        return f.with_columns(*[pl.lit(None, dtype=pl.String).alias(f"_{p}_ounit") for p in params],
                              *[pl.lit(None, dtype=pl.Float64).alias(f"_{p}_oval") for p in params])
    val = pl.col("orig_value") if "orig_value" in obs.columns else pl.lit(None)
    rec = (obs.filter(pl.col("param").is_in(params))
           .select(_SID, evidence_ref().alias("_r"), pl.col("orig_unit").cast(pl.String).alias("_ou"),
                   val.cast(pl.Float64, strict=False).alias("_ov"))
           .filter(pl.col("_r").is_not_null()).unique([_SID, "_r"], keep="first"))
    for p in params:
        f = f.join(rec.rename({"_r": f"_{p}_ref", "_ou": f"_{p}_ounit", "_ov": f"_{p}_oval"}),
                   on=[_SID, f"_{p}_ref"], how="left")
    return f


def derive_easix(study: Study, day: float | str = "pre_ld", options: EasixOptions | None = None) -> pl.DataFrame:
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
    schema: dict[str, pl.DataType] = {_SID: pl.String, "timepoint": pl.String, "day": pl.Float64}
    for spec in inputs.values():
        schema |= {spec["column"]: pl.Float64, f"{spec['column']}_day": pl.Float64}
    for sc in table["scores"]:
        schema |= {sc["id"]: pl.Float64, f"log{base:g}_{sc['id']}": pl.Float64}
    schema |= {"missing": pl.List(pl.String), "rule": pl.String, "reason": pl.String, "evidence": EVIDENCE}
    f = _easix_inputs(study, day, opts, inputs)
    if f.is_empty():
        return _empty(schema)
    f = f.with_columns(_from_canonical(pl.col(f"_{p}"), spec["unit"], p).alias(spec["column"])
                       for p, spec in inputs.items())

    def conv(p: str) -> pl.Expr:
        return pl.col(inputs[p]["column"])

    def product(ps: list[str]) -> pl.Expr:  # math.prod: 1 * a * b ...
        out = pl.lit(1.0)
        for p in ps:
            out = out * conv(p)
        return out

    # a censored input (PLAT "<10") in the formula's unit, and the interval it leaves (counts and
    # concentrations are >= 0): the score is then a bound ("easix > 30"), never an older value
    f = f.with_columns(_from_canonical(pl.col(f"_{p}_limit"), spec["unit"], p).alias(f"_{p}_lim")
                       for p, spec in inputs.items())

    def cens(p: str) -> pl.Expr:
        return pl.col(f"_{p}_censor")

    def edge(p: str, upper: bool) -> tuple[pl.Expr, pl.Expr]:
        lo, lo_o, hi, hi_o = _bounds(conv(p), cens(p), pl.col(f"_{p}_lim"))
        return (hi, hi_o) if upper else (pl.max_horizontal(lo, pl.lit(0.0)), lo_o & (lo >= 0))

    def bound(num: list[str], den: list[str], upper: bool) -> tuple[pl.Expr, pl.Expr]:
        out, open_ = pl.lit(1.0), pl.lit(False)
        for p in num:
            e, o = edge(p, upper)
            out, open_ = out * e, open_ | o.fill_null(False)
        for p in den:
            e, o = edge(p, not upper)
            out, open_ = out / e, open_ | o.fill_null(False)
        return out, open_

    bound_txt = {}
    for sc in table["scores"]:
        need = sc["numerator"] + sc["denominator"]
        present = pl.all_horizontal([conv(p).is_not_null() | cens(p).is_not_null() for p in need])
        censored = pl.any_horizontal([cens(p).is_not_null() for p in need])
        lo, lo_o = bound(sc["numerator"], sc["denominator"], False)
        hi, hi_o = bound(sc["numerator"], sc["denominator"], True)
        fin_lo = lo.is_finite() & (lo > 0)
        fin_hi = hi.is_finite()
        names = pl.concat_str([pl.when(cens(p).is_not_null()).then(pl.concat_str(
            pl.lit(f"{p} "), cens(p), _fmt_expr(pl.col(f"_{p}_lim"), 6), pl.lit(f" {inputs[p]['unit']}")))
            for p in need], separator=", ", ignore_nulls=True)
        txt = (pl.when(fin_lo & fin_hi).then(pl.format(f"{sc['id']} between {{}} and {{}}", _fmt_expr(lo), _fmt_expr(hi)))
               .when(fin_lo).then(pl.format(f"{sc['id']} {{}} {{}}", pl.when(lo_o).then(pl.lit(">")).otherwise(pl.lit(">=")),
                                            _fmt_expr(lo)))
               .when(fin_hi).then(pl.format(f"{sc['id']} {{}} {{}}", pl.when(hi_o).then(pl.lit("<")).otherwise(pl.lit("<=")),
                                            _fmt_expr(hi)))
               .otherwise(pl.lit(f"{sc['id']} not computable")))
        bound_txt[sc["id"]] = pl.when(present & censored).then(pl.concat_str(
            txt, pl.lit(" (censored "), names, pl.lit(": a bound, not a value; the score is left empty)")))
    for sc in table["scores"]:
        known = pl.all_horizontal([conv(p).is_not_null() for p in sc["numerator"] + sc["denominator"]])
        den = product(sc["denominator"])
        val = pl.when(known & (den > 0)).then(product(sc["numerator"]) / den)
        f = f.with_columns(val.alias(sc["id"]))
        f = f.with_columns(pl.when(pl.col(sc["id"]).is_not_null() & (pl.col(sc["id"]) != 0))
                           .then(pl.col(sc["id"]).log(base)).alias(f"log{base:g}_{sc['id']}"))
    parts, done, ev = [], [], []
    for sc in table["scores"]:
        need = sc["numerator"] + sc["denominator"]
        val, ok = pl.col(sc["id"]), pl.col(sc["id"]).is_not_null()

        def terms(ps: list[str], ok: pl.Expr = ok) -> pl.Expr:
            if not ps:
                return pl.lit("")
            return pl.concat_str([pl.concat_str(_fmt_expr(pl.when(ok).then(conv(p))), pl.lit(f" {inputs[p]['unit']}"))
                                  for p in ps], separator=" x ")

        known = pl.all_horizontal([conv(p).is_not_null() for p in need])
        parts.append(
            pl.when(ok).then(pl.concat_str(
                pl.lit(f"{sc['id']} = "), terms(sc["numerator"]), pl.lit(" / "), terms(sc["denominator"]),
                pl.lit(" = "), _fmt_expr(pl.when(ok).then(val)), pl.lit(f" (log{base:g} "),
                _fmt_expr(pl.when(ok).then(pl.col(f"log{base:g}_{sc['id']}"))).fill_null(pl.lit("NA")), pl.lit(")")))
            .when(known).then(pl.lit(f"{sc['id']} not computable (platelets 0)"))
            .when(bound_txt[sc["id"]].is_not_null()).then(bound_txt[sc["id"]])
            .otherwise(pl.concat_str(pl.lit(f"{sc['id']} not computable (missing "),
                                     joined([(conv(p).is_null() & cens(p).is_null(), p) for p in need], ", "),
                                     pl.lit(")"))))
        done.append((ok, sc["id"]))
        ev.append(pl.when(ok | bound_txt[sc["id"]].is_not_null()).then(pl.concat_list([pl.col(f"_{p}_ref") for p in need])).otherwise(_NO_REFS))
    # "converted" only for an input whose row was recorded in another unit than the formula's (audit
    # s27 item 12b: a CREAT row of 1.0 mg/dL is not "converted" although the canonical unit is umol/L);
    # the note shows the row's value and unit as recorded (a row without a unit: the canonical one)
    f = _with_recorded_units(f, study, [p for p, spec in inputs.items() if _canonical_unit(p)[0] != spec["unit"]])
    notes = []
    for p, spec in inputs.items():
        if _canonical_unit(p)[0] == spec["unit"]:
            continue
        ounit, oval = pl.col(f"_{p}_ounit"), pl.col(f"_{p}_oval")
        same = _unit_key(ounit) == _unit_key(pl.lit(spec["unit"]))
        shown_val = pl.when(ounit.is_not_null() & oval.is_not_null()).then(_fmt_expr(oval)).otherwise(_fmt_expr(pl.col(f"_{p}")))
        shown_unit = pl.coalesce(ounit, pl.lit(_canonical_unit(p)[0]))
        notes.append((conv(p).is_not_null() & ~same.fill_null(False), pl.concat_str(
            pl.lit(f"{p} "), shown_val, pl.lit(" "), shown_unit, pl.lit(" -> "), _fmt_expr(conv(p)),
            pl.lit(f" {spec['unit']}"))))
    f = f.with_columns(joined(done, ", ").alias("_done"), joined(notes, "; ").alias("_notes"))
    f = f.with_columns(
        str_list([(conv(p).is_null() & cens(p).is_null(), p) for p in inputs]).alias("missing"),
        pl.when(pl.col("_done") != "").then(pl.col("_done")).alias("rule"),
        pl.concat_str(pl.concat_str(parts, separator="; "),
                      pl.when(pl.col("_notes") != "")
                      .then(pl.concat_str(pl.lit(" [converted: "), pl.col("_notes"), pl.lit("]")))
                      .otherwise(pl.lit("")), pl.lit(".")).alias("reason"),
        _refs(*ev).alias("evidence"),
    )
    return f.sort("_order" if day != "each" else [_SID, "_order"]).select(list(schema)).cast(schema)


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
__getattr__ = renamed(
    __name__, "car_hematotox", "easix", "icaht", "icaht_daily", "icaht_episodes", "icaht_summary", "iec_hs_flags",
    "t_icaht", "t_icaht_daily", recovery_days="derive_count_recovery")
