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
* :func:`easix` - EASIX, m-EASIX and s-EASIX (and their logarithm, base ``log_base``, 2 by default) at the pre-lymphodepletion timepoint,
  a chosen day, or every day.
* :func:`iec_hs_flags` - days on which the data meet the computable IEC-HS criteria (a flag for
  clinician review, not a diagnosis; defined in :mod:`cartlab.grading.iec_hs`).

Units: observations are in canonical units (NEUT/PLAT 10^9/L, HGB g/L, CRP mg/L, CREAT umol/L,
FERRITIN ug/L, FIBRINO g/L); every cut-off is written in the unit of its source and converted
explicitly with :func:`cartlab.units.conversion`.

>>> from cartlab.datasets import seed_case
>>> derive_icaht(seed_case())["icaht_early_grade"].to_list()
[3]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Literal

import polars as pl

from cartlab._deprecated import renamed
from cartlab.criteria import CriteriaOptions
from cartlab.grading.common import load_criteria
from cartlab.grading.count_recovery import RecoveryOptions, derive_count_recovery
from cartlab.grading.hemato_common import TIE_COLUMNS, DailyValue, Number, join_param, joined, str_list
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
from cartlab.grading.hematotox_baseline import after_baseline_days, age_text, timepoint_prefix, with_timepoint_columns
from cartlab.grading.icaht import (
    IcahtOptions,
    derive_icaht,
    derive_icaht_daily,
    derive_icaht_episodes,
    derive_icaht_summary,
)
from cartlab.grading.iec_hs import IecHsOptions, derive_iec_hs_flags
from cartlab.grading.ld_agents import lymphodepletion_days as _lymphodepletion_days
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


def _doses_absent(study: Study) -> bool:
    """doses.csv not given (``Study.absent``): the lymphodepletion day is unknown (review 39 A2)."""
    from cartlab.io.absent_files import table_absent

    return table_absent(study, "doses")
_STRINGS = pl.List(pl.String)
_SID = "subject_id"


# ---------------------------------------------------------------------------------------------
# baseline (pre-lymphodepletion) values


def _pre_ld_values(study: Study, params: Iterable[str], opts: dict, daily: str | None = None,
                   ld_day: float | Mapping[str, float] | None = None) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Baseline values: the last result on or before the first dose day of the lymphodepletion
    course (:func:`_lymphodepletion_days`), else the last result before day 0. A censored result
    (">40000") is a result: when it is the last one it is the baseline (``censor``/``censor_limit``
    set, ``value`` null), never an older number.

    ``daily`` (EASIX's ``daily_value``): ``min``/``max``/``mean`` take that value of the numbers of
    the last calendar day with a result (as on a chosen day); ``None`` or ``last`` take the latest
    result. Several different results at that latest time (one day, no time to order them) are a
    tie (session 34): no silent choice - ``tie`` is set, ``value``/``censor`` are null, ``tlo``/
    ``thi``/``tn``/``trefs`` give the range they leave (``hemato_common.daily_values(ties="range")``,
    session 35) and the rows are returned in the third frame, for the caller to score.

    Returns (the result used - ``day``, ``value``, ``censor``, ``censor_limit``, ``ref`` (its row),
    ``refs`` (every row it rests on: all those a mean averages, session 35), ``tie``, ``n_results``,
    ``tlo``/``thi``/``tn``/``trefs`` - per subject and param; per subject in subject order: ``ref_day``, ``how``,
    ``baseline_rule``, ``ref_evidence``; the tied rows - ``day``, ``value``, ``censor``,
    ``censor_limit``, ``ref``, ``src_row``).

    ``ld_day`` (review 39 A2): a candidate first lymphodepletion day when doses.csv is not given (the
    day is then unknown: :mod:`cartlab.grading.hematotox_absent`); with doses.csv absent and
    ``absent_doses=before_day0`` the reason says the day-0 fallback rests on the absent file."""
    agents, max_lookback = opts["lymphodepletion_agents"], opts["max_lookback_days"]
    # the window and the gap come from the criteria table's defaults (car_hematotox_2021.yaml,
    # easix.yaml) or the user's options: no second copy of the defaults here
    window = tuple(opts["lymphodepletion_window"])
    ld = _lymphodepletion_days(study, agents, window, opts["lymphodepletion_max_gap_days"])
    no_ld = (f"before day 0 (no lymphodepletion dose recorded within days {window[0]:g} to {window[1]:g})")
    if ld_day is not None:  # a candidate day (doses.csv not given): every subject on it
        # (a mapping: each subject's own candidate day, hematotox_absent's copies of the subjects)
        day = (pl.col(_SID).replace_strict({k: float(v) for k, v in ld_day.items()}, return_dtype=pl.Float64)
               if isinstance(ld_day, Mapping) else pl.lit(float(ld_day)))
        ld = ld.clear().vstack(_subject_order(study).select(
            _SID, day.alias("ld_day"), day.alias("ld_last"),
            pl.lit([], dtype=EVIDENCE).alias("ld_refs"), pl.lit(None, dtype=pl.String).alias("ld_other"))
            .select(ld.columns).cast(ld.schema))
    elif _doses_absent(study):
        no_ld = ("before day 0 (doses.csv not given: the lymphodepletion day is unknown; option "
                 "absent_doses=before_day0 takes the last value before day 0)")
    has_ld = pl.col("ld_day").is_not_null()
    one_day = pl.col("ld_day") == pl.col("ld_last")  # session 34 (review s34 C5): "course day -5"
    refs = _subject_order(study).join(ld, on=_SID, how="left").select(
        _SID, "_order",
        pl.when(has_ld).then(pl.col("ld_day")).otherwise(0.0).alias("ref_day"),
        pl.when(has_ld).then(pl.format(
            f"on or before day {{}} (first lymphodepletion dose: {{}}, the last course of "
            f"{'/'.join(agents)} with a dose within days {window[0]:g} to {window[1]:g})",
            _fmt_expr(pl.col("ld_day"), 6),
            pl.when(one_day).then(pl.format("course day {}", _fmt_expr(pl.col("ld_day"), 6)))
            .otherwise(pl.format("course days {} to {}", _fmt_expr(pl.col("ld_day"), 6),
                                 _fmt_expr(pl.col("ld_last"), 6)))))
        .otherwise(pl.lit(no_ld)).alias("how"), "ld_day", "ld_refs", "ld_other",
    ).with_columns(
        # session 38 (review s38 A1): the doses of the window not read as lymphodepletion are named
        pl.concat_str(pl.col("how"), pl.when(pl.col("ld_other").is_not_null()).then(pl.concat_str(
            pl.lit("; not read as lymphodepletion: "), pl.col("ld_other"),
            pl.lit(f" (agent not in lymphodepletion_agents {'/'.join(agents)} nor CAR-T)"))).otherwise(pl.lit("")))
        .alias("how"),
        pl.when(has_ld).then(pl.lit("baseline.first_lymphodepletion_day"))
        .otherwise(pl.lit("baseline.before_day0")).alias("baseline_rule"),
        pl.col("ld_refs").fill_null(_NO_REFS).alias("ref_evidence"),
    ).drop("ld_day", "ld_refs", "ld_other").sort("_order")
    if ld_day is not None:
        how = "on or before day {:g} (a candidate first lymphodepletion day: doses.csv not given)"
        refs = refs.with_columns(
            pl.col(_SID).replace_strict({k: how.format(float(v)) for k, v in ld_day.items()}, return_dtype=pl.String)
            .alias("how") if isinstance(ld_day, Mapping) else pl.lit(how.format(float(ld_day))).alias("how"))
    obs = _param_obs_censored(study, params).join(
        refs.select(_SID, "ref_day", "baseline_rule"), on=_SID, how="inner")
    ok = (pl.when(pl.col("baseline_rule") == "baseline.first_lymphodepletion_day")
          .then(pl.col("d") <= pl.col("ref_day").floor()).otherwise(pl.col("day") < 0))
    if max_lookback is not None:
        ok = ok & (pl.col("day") >= pl.col("ref_day") - float(max_lookback))
    by = [_SID, "param"]
    # the last calendar day with a result: its latest time is the last result's
    cand = (obs.filter(ok).with_columns(evidence_ref().alias("ref"))
            .filter(pl.col("d") == pl.col("d").max().over(by)).sort("day", "src_row", nulls_last=True))
    no_tie = [pl.lit(None, dtype=t).alias(c) for c, t in TIE_COLUMNS.items()]
    picked = []
    if daily in ("min", "max", "mean"):
        # the numbers of that day by the daily_value rule (as on a chosen day: hemato_common.daily_values);
        # a day with only censored results falls through to "last". A mean cites every row it averages.
        num = cand.filter(pl.col("value").is_not_null())
        day_num = _daily(num, daily, carry=("day",)).join(num.group_by(by).agg(pl.len().alias("n_results")), on=by)
        picked.append(day_num.select(
            *by, pl.col("d").cast(pl.Float64).alias("day") if daily == "mean" else "day", "value",
            pl.lit(None, dtype=pl.String).alias("censor"), pl.lit(None, dtype=pl.Float64).alias("censor_limit"),
            pl.col("refs").list.first().alias("ref"), "refs", "n_results", pl.lit(False).alias("tie"), *no_tie))
        cand = cand.join(num.select(by).unique(), on=by, how="anti")
    # the last result by time, numeric or censored; several different results at that time (one
    # day without a time to order them) are a tie: never a choice by file order or by value
    # (a tie's rows by result, then row: the order its range and the reason name them)
    cand = cand.sort("value", "censor_limit", "src_row", nulls_last=True)
    last = _daily(cand, "last", ties="range", carry=("day", "censor", "censor_limit"))
    tie = pl.col("tn").is_not_null()
    picked.append(last.select(
        *by, "day", "value", *[pl.when(~tie).then(pl.col(c)).alias(c) for c in ("censor", "censor_limit")],
        pl.col("refs").list.first().alias("ref"), "refs", pl.coalesce("tn", pl.lit(1)).alias("n_results"),
        tie.alias("tie"), *TIE_COLUMNS))
    schema = {_SID: pl.String, "param": pl.String, "day": pl.Float64, "value": pl.Float64, "censor": pl.String,
              "censor_limit": pl.Float64, "ref": pl.String, "refs": EVIDENCE, "n_results": pl.Int64, "tie": pl.Boolean,
              **TIE_COLUMNS}
    values = pl.concat([x.select(list(schema)).cast(schema) for x in picked])
    tied = cand.join(last.filter(tie).select(*by, "day"), on=[*by, "day"], how="semi")
    return values, refs, tied.select(*by, "day", "value", "censor", "censor_limit", "ref", "src_row")


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
    absent_doses: Literal["unknown", "before_day0"] | None = None
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


def _tie_points(tied: pl.DataFrame, item: dict, opts: dict, alt: dict) -> pl.DataFrame:
    """Per subject, for an item whose baseline time holds several different results (one day, no
    time to order them; session 34, review s34 B1): each result scored, and the range they leave -
    ``_<k>_tlo``/``_<k>_thi`` (and ``_<k>_alo``/``_<k>_ahi`` under the other ``undefined_boundary``),
    ``_<k>_tshown`` ("50 or 100"), ``_<k>_tdetail`` (each result with its points and row) and
    ``_<k>_trefs`` (the rows)."""
    p, k = item["param"], item["param"].lower()
    t = tied.filter(pl.col("param") == p).rename(
        {"value": f"{k}_value", "censor": f"_{k}_censor", "censor_limit": f"_{k}_limit"})
    lo, hi, txt = _item_points(item, opts)
    alo, ahi, _ = _item_points(item, alt)
    shown = pl.coalesce(
        pl.concat_str(pl.col(f"_{k}_censor"), _fmt_expr(_from_canonical(pl.col(f"_{k}_limit"), item["unit"], p), 6)),
        _fmt_expr(_from_canonical(pl.col(f"{k}_value"), item["unit"], p)))
    t = t.with_columns(lo.alias("_lo"), hi.alias("_hi"), alo.alias("_alo"), ahi.alias("_ahi"), txt.alias("_txt"),
                       shown.alias("_shown"))
    pts = pl.when(pl.col("_lo") == pl.col("_hi")).then(pl.col("_lo").cast(pl.String)).otherwise(
        pl.format("{}-{}", pl.col("_lo"), pl.col("_hi")))
    return t.group_by(_SID, maintain_order=True).agg(
        pl.col("_lo").min().alias(f"_{k}_tlo"), pl.col("_hi").max().alias(f"_{k}_thi"),
        pl.col("_alo").min().alias(f"_{k}_alo_t"), pl.col("_ahi").max().alias(f"_{k}_ahi_t"),
        pl.col("_shown").str.join(" or ").alias(f"_{k}_tshown"),
        pl.format("{} ({}) -> {} ({})", pl.col("_shown"), pl.col("ref").fill_null("no row"), pts, pl.col("_txt"))
        .str.join("; ").alias(f"_{k}_tdetail"),
        pl.col("ref").drop_nulls().alias(f"_{k}_trefs"))


def _item_column(item: dict) -> str:
    """The column of an item's value in the item's own unit: the table's ``column`` (``hgb_g_dl``),
    else ``<param>_<unit>`` with the unit spelt as in easix.csv ("10^9/L" -> ``1e9_l``, "/uL" -> ``per_ul``)."""
    if item.get("column"):
        return str(item["column"])
    u = str(item["unit"]).lower().replace("10^", "1e").replace("x", "").strip()
    u = ("per_" + u[1:]) if u.startswith("/") else u
    return item["param"].lower() + "_" + "".join(c if c.isalnum() else "_" for c in u).strip("_")


def derive_car_hematotox(study: Study, options: CarHematotoxOptions | None = None,
                         _ld_day: float | Mapping[str, float] | None = None) -> pl.DataFrame:
    """CAR-HEMATOTOX score (0-7) and risk group per subject from pre-lymphodepletion values.

    Columns: ``hematotox_score`` (Int64; null when an input is missing or unsettled),
    ``hematotox_score_min`` / ``_max`` (the possible range given the missing, censored or tied
    inputs), ``hematotox_risk`` ("low" | "high"; null when the range spans both groups),
    ``hematotox_risk_depends_on_boundary`` (the risk group would differ under the other
    ``undefined_boundary`` reading of a value exactly at a cut-off), ``hematotox_missing`` (params
    without a baseline value), ``baseline_day`` (reference day) and ``baseline_rule``, per item
    ``<param>_value`` (canonical unit, named in ``<param>_value_unit``; null for a censored result or
    for several different results at the baseline time, which are each scored: the item is then
    their points range), the same value in the item's unit (the criteria table's, as in the reason:
    ``plat_1e9_l``, ``neut_per_ul``, ``hgb_g_dl``, ``crp_mg_dl``, ``ferritin_ng_ml``),
    ``<param>_day`` and ``<param>_points``, and ``rule``, ``reason``, ``evidence``.

    doses.csv not given: the lymphodepletion day is unknown; option ``absent_doses`` "unknown"
    (default) scores each candidate first lymphodepletion day of ``lymphodepletion_window`` and gives
    the range (:func:`cartlab.grading.hematotox_absent.car_hematotox_unknown_ld`, review 39 A2);
    "before_day0" takes the last value before day 0 and the reason names the absent file.
    """
    options = options or CarHematotoxOptions()
    opts = options.resolved()
    if _ld_day is None and opts.get("absent_doses", "unknown") == "unknown" and _doses_absent(study):
        from cartlab.grading.hematotox_absent import car_hematotox_unknown_ld

        return car_hematotox_unknown_ld(study, options, opts)
    # the other reading of a value exactly at an undefined cut-off (session 34, review s34 B3)
    alt = {**opts, "undefined_boundary": "best" if opts["undefined_boundary"] == "worst" else "worst"}
    table = load_criteria(options.criteria)
    items = table["items"]
    groups = sorted(table["risk_groups"], key=lambda g: -int(g["min_score"]))
    values, refs, tied = _pre_ld_values(study, [i["param"] for i in items], opts, ld_day=_ld_day)
    schema = {_SID: pl.String, "hematotox_score": pl.Int64, "hematotox_score_min": pl.Int64,
              "hematotox_score_max": pl.Int64, "hematotox_risk": pl.String,
              "hematotox_risk_depends_on_boundary": pl.Boolean, "hematotox_missing": pl.List(pl.String),
              "baseline_day": pl.Float64, "baseline_rule": pl.String, "hematotox_baseline_oldest_day": pl.Float64}
    for item in items:
        k = item["param"].lower()
        # session 37 (review s37 B3): the unit of <param>_value named beside it, and the value in the
        # item's (the criteria table's) unit under a unit-named column, as easix.csv does
        schema |= {f"{k}_value": pl.Float64, f"{k}_value_unit": pl.String, _item_column(item): pl.Float64,
                   f"{k}_day": pl.Float64, f"{k}_points": pl.Int64}
    schema |= {"rule": pl.String, "reason": pl.String, "evidence": EVIDENCE}
    if refs.is_empty():
        return _empty(schema)
    # review 40 B4: the days an item was measured only after the first lymphodepletion dose
    f = refs.join(after_baseline_days(study, [i["param"] for i in items], refs), on=_SID, how="left",
                  maintain_order="left")
    for item in items:
        k = item["param"].lower()
        f = join_param(f, values, [_SID], item["param"],
                       {"value": f"{k}_value", "day": f"{k}_day", "ref": f"_{k}_ref",
                        "censor": f"_{k}_censor", "censor_limit": f"_{k}_limit", "tie": f"_{k}_tie",
                        "n_results": f"_{k}_n"})
        f = f.join(_tie_points(tied, item, opts, alt), on=_SID, how="left", maintain_order="left")
        f = f.with_columns(pl.lit(_canonical_unit(item["param"])[0]).alias(f"{k}_value_unit"),
                           _from_canonical(pl.col(f"{k}_value"), item["unit"], item["param"]).alias(_item_column(item)))
    lo = hi = alo = ahi = pl.lit(0, dtype=pl.Int64)
    parts, missing, scored, open_, ties = [], [], [], [], []
    for item in items:
        p, k = item["param"], item["param"].lower()
        v = pl.col(f"{k}_value")
        tie = pl.col(f"_{k}_tie").fill_null(False)
        absent = v.is_null() & pl.col(f"_{k}_censor").is_null() & ~tie
        p_lo, p_hi, txt = _item_points(item, opts)
        a_lo, a_hi, _ = _item_points(item, alt)
        f = f.with_columns(pl.coalesce(p_lo, pl.col(f"_{k}_tlo")).alias(f"_{k}_lo"),
                           pl.coalesce(p_hi, pl.col(f"_{k}_thi")).alias(f"_{k}_hi"),
                           pl.coalesce(a_lo, pl.col(f"_{k}_alo_t")).alias(f"_{k}_alo"),
                           pl.coalesce(a_hi, pl.col(f"_{k}_ahi_t")).alias(f"_{k}_ahi"), txt.alias(f"_{k}_text"))
        f = f.with_columns(pl.when(pl.col(f"_{k}_lo") == pl.col(f"_{k}_hi")).then(pl.col(f"_{k}_lo"))
                           .alias(f"{k}_points"))
        top = max([int(r["points"]) for r in item["points"]] + [int(item["else"]["points"])])
        lo = lo + pl.col(f"_{k}_lo").fill_null(0)
        hi = hi + pl.when(absent).then(top).otherwise(pl.col(f"_{k}_hi"))
        alo = alo + pl.col(f"_{k}_alo").fill_null(0)
        ahi = ahi + pl.when(absent).then(top).otherwise(pl.col(f"_{k}_ahi"))
        missing.append((absent, p))
        unsettled = ~absent & pl.col(f"{k}_points").is_null()
        open_.append((unsettled & ~tie, p))
        ties.append((unsettled & tie, pl.format(f"{p} {{}} results of day {{}}", pl.col(f"_{k}_n"),
                                                _fmt_expr(pl.col(f"{k}_day")))))
        scored.append((pl.col(f"{k}_points").is_not_null(), item.get("id", p)))
        # a censored result in the item's unit ("ferritin >40000 ng/mL")
        shown = pl.coalesce(
            pl.concat_str(pl.col(f"_{k}_censor"),
                          _fmt_expr(_from_canonical(pl.col(f"_{k}_limit"), item["unit"], p), 6)),
            _fmt_expr(_from_canonical(v, item["unit"], p)))
        pts_txt = pl.when(pl.col(f"{k}_points").is_not_null()).then(pl.col(f"{k}_points").cast(pl.String)).otherwise(
            pl.format("{}-{} points (censored result)", pl.col(f"_{k}_lo"), pl.col(f"_{k}_hi")))
        # several different results at the baseline time (one day, no time to order them): each is
        # scored and named with its row, the item is the range they leave (session 34, review s34 B1)
        tie_txt = pl.concat_str(
            pl.lit(f"{item['label']} "), pl.col(f"_{k}_tshown"), pl.lit(f" {item['unit']} (day "),
            _fmt_expr(pl.col(f"{k}_day")), age_text(pl.col(f"{k}_day")), pl.lit(", "), pl.col(f"_{k}_n").cast(pl.String),
            pl.lit(" different results with no time to order them: each scored) -> "),
            pl.when(pl.col(f"{k}_points").is_not_null()).then(pl.col(f"{k}_points").cast(pl.String))
            .otherwise(pl.format("{}-{} points", pl.col(f"_{k}_lo"), pl.col(f"_{k}_hi"))),
            pl.lit(" ["), pl.col(f"_{k}_tdetail"), pl.lit("]"))
        after = pl.col(f"_{k}_after")
        parts.append(pl.when(absent).then(pl.concat_str(
            pl.lit(f"{item['label']} missing (0-{top} points"),
            pl.when(after.is_not_null()).then(pl.format("; not measured on or before day {}, only after the first "
                                                        "lymphodepletion dose, not baseline: {}",
                                                        _fmt_expr(pl.col("ref_day"), 6), after)).otherwise(pl.lit("")),
            pl.lit(")"))).when(tie).then(tie_txt)
                     .otherwise(pl.concat_str(pl.lit(f"{item['label']} "), shown, pl.lit(f" {item['unit']} (day "),
                                              _fmt_expr(pl.col(f"{k}_day")), age_text(pl.col(f"{k}_day")),
                                              pl.lit(") -> "), pts_txt,
                                              pl.lit(" ["), pl.col(f"_{k}_text"), pl.lit("]"))))
    f = f.with_columns(lo.alias("hematotox_score_min"), hi.alias("hematotox_score_max"),
                       alo.alias("_alt_min"), ahi.alias("_alt_max"),
                       str_list(missing).alias("hematotox_missing"), joined(open_, ", ").alias("_open"),
                       joined(ties, ", ").alias("_ties"))
    lo, hi, miss = pl.col("hematotox_score_min"), pl.col("hematotox_score_max"), pl.col("hematotox_missing")
    complete = lo == hi
    why = pl.concat_str(pl.when(miss.list.len() > 0).then(pl.concat_str(miss.list.join(", "), pl.lit(" missing"))),
                        pl.when(pl.col("_open") != "").then(pl.concat_str(pl.col("_open"),
                                                                          pl.lit(" censored, not settled"))),
                        pl.when(pl.col("_ties") != "").then(pl.concat_str(pl.col("_ties"),
                                                                          pl.lit(" with no time to order them"))),
                        separator="; ", ignore_nulls=True)
    f = f.with_columns(pl.when(_risk_group(lo, groups) == _risk_group(hi, groups))
                       .then(_risk_group(lo, groups)).alias("_risk"),
                       pl.when(_risk_group(pl.col("_alt_min"), groups) == _risk_group(pl.col("_alt_max"), groups))
                       .then(_risk_group(pl.col("_alt_min"), groups)).alias("_alt_risk"))
    risk = pl.col("_risk")
    # session 34 (review s34 B3): the risk group under the other reading of an undefined cut-off
    flips = ~risk.eq_missing(pl.col("_alt_risk"))
    labels = {g["id"]: g["label"] for g in groups}
    # each group's band: from its min_score up to the next higher group's (groups: highest first)
    above = [None, *(int(g["min_score"]) for g in groups[:-1])]
    risk_txt = {g["id"]: f"{g['label']} risk (score " + (f">= {g['min_score']})" if top is None else
                                                        f"{g['min_score']}-{top - 1})")
                for g, top in zip(groups, above)}
    score_txt = pl.when(complete).then(pl.format("score {}", lo)).otherwise(
        pl.format("score {}-{} ({})", lo, hi, why))
    flip_txt = pl.when(flips).then(pl.concat_str(
        pl.lit(f"; with undefined_boundary {alt['undefined_boundary']} (a value exactly at a cut-off the source "
               f"leaves undefined) the risk group would be "),
        pl.col("_alt_risk").replace_strict(labels, default=None, return_dtype=pl.String).fill_null("undetermined"),
        pl.lit(" (score "), pl.when(pl.col("_alt_min") == pl.col("_alt_max")).then(pl.col("_alt_min").cast(pl.String))
        .otherwise(pl.format("{}-{}", pl.col("_alt_min"), pl.col("_alt_max"))), pl.lit(")"))).otherwise(pl.lit(""))
    f = f.with_columns(
        pl.when(complete).then(lo).alias("hematotox_score"),
        risk.replace_strict(labels, default=None, return_dtype=pl.String).alias("hematotox_risk"),
        flips.alias("hematotox_risk_depends_on_boundary"),
        pl.col("ref_day").alias("baseline_day"),
        # review 40 B4: the oldest item value used, so a cohort table can find an old "baseline"
        pl.min_horizontal([pl.col(f"{i['param'].lower()}_day") for i in items]).alias("hematotox_baseline_oldest_day"),
        # the risk group and every item scored: the row rests on each item's cut-offs
        joined([(pl.lit(True), risk.fill_null(pl.lit("car_hematotox.undetermined"))), *scored], "; ").alias("rule"),
        pl.concat_str(pl.lit("baseline "), pl.col("how"), pl.lit(": "), pl.concat_str(parts, separator="; "),
                      pl.lit(" -> "), score_txt, pl.lit(", "),
                      pl.when(risk.is_null()).then(pl.lit("risk group undetermined: the possible scores span more "
                                                           "than one group"))
                      .otherwise(risk.replace_strict(risk_txt, default=None, return_dtype=pl.String)),
                      flip_txt, pl.lit(".")).alias("reason"),
        _refs(pl.col("ref_evidence"), *[pl.col(f"_{i['param'].lower()}_ref") for i in items],
              *[pl.col(f"_{i['param'].lower()}_trefs").fill_null(_NO_REFS) for i in items]).alias("evidence"),
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
    absent_doses: Literal["unknown", "before_day0"] | None = None
    timepoints: tuple[str | float, ...] | None = None
    criteria: str = "easix"


def _easix_inputs(study: Study, day: float | str, opts: dict, inputs: dict[str, dict]) -> pl.DataFrame:
    """One row per output row (``subject_id``, ``_order``, ``timepoint``, ``day``) with, per input
    param, its canonical value ``_<param>``, ``<column>_day``, reference ``_<param>_ref`` and every
    row it rests on ``_<param>_refs`` (a mean's: all it averages) (and ``_<param>_tlo``/``_thi``/
    ``_tn``/``_trefs`` when the day's value is a tie: ``hemato_common.daily_values(ties="range")``;
    EASIX rises with LDH, creatinine and CRP and falls with platelets, so the score's range is that
    of the ends).

    Several values of one calendar day: the ``daily_value`` one, on every path (session 34, review
    s34 B2: the pre-lymphodepletion timepoint took the higher one whatever the option). ``last`` is
    the latest by time; several different results at that time (a day without times) have no last:
    the input is the range they leave, never the file's last row."""
    how = opts["daily_value"]
    if day == "pre_ld":
        values, refs, _ = _pre_ld_values(study, inputs, opts, daily=how)
        # review 40 B1: how the timepoint was chosen (rule, course, doses not read as lymphodepletion)
        f = refs.select(_SID, "_order", pl.lit("pre_ld").alias("timepoint"), pl.col("ref_day").alias("day"),
                        "baseline_rule", pl.col("how").alias("_how"), pl.col("ref_evidence").alias("_ld_refs"))
        keys = [_SID]
    else:
        obs = _param_obs(study, inputs)
        # "last" of several different results at one time (a day without times): the range they leave
        numeric = _daily(obs, how, ties="range").select(
            _SID, "param", "d", "value", pl.col("d").cast(pl.Float64).alias("day"),
            pl.col("refs").list.first().alias("ref"), "refs",
            pl.lit(None, dtype=pl.String).alias("censor"), pl.lit(None, dtype=pl.Float64).alias("censor_limit"),
            *TIE_COLUMNS)
        # a day with only a censored result ("PLAT <10") is a result of that day, read as a bound
        # (session 33: it read as missing, and a chosen day's nearest number could come from further away)
        cens = [_censored_days(study, p, numeric.filter(pl.col("param") == p)).select(
            _SID, pl.lit(p).alias("param"), "d", pl.lit(None, dtype=pl.Float64).alias("value"),
            pl.col("d").cast(pl.Float64).alias("day"), pl.col("_crs").alias("ref"),
            pl.concat_list(pl.col("_crs")).list.drop_nulls().cast(EVIDENCE).alias("refs"), "censor", "censor_limit",
            *[pl.lit(None, dtype=t).alias(c) for c, t in TIE_COLUMNS.items()])
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
                                            "refs": f"_{p}_refs", "censor": f"_{p}_censor", "censor_limit": f"_{p}_limit",
                                            **{c: f"_{p}_{c}" for c in TIE_COLUMNS}})
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


def derive_easix(study: Study, day: float | str | None = None, options: EasixOptions | None = None) -> pl.DataFrame:
    """EASIX, m-EASIX and s-EASIX per subject at one timepoint (or per day).

    ``day``: ``"pre_ld"`` (default; last values on or before the first lymphodepletion dose, else
    before day 0), a number (calendar day, with ``day_tolerance_days``), or ``"each"`` (one row per
    subject and calendar day with any input). Inputs are converted from their canonical units to the
    formula units (CREAT umol/L -> mg/dL with its molar mass, CRP mg/L -> mg/dL). Columns: the inputs
    (``ldh_u_l``, ``creat_mg_dl``, ``crp_mg_dl``, ``plat_1e9_l``) with their ``_day``, each score and
    ``log<base>_<score>``, ``missing``, ``baseline_rule`` (pre_ld: the rule that chose the day), ``rule``
    (scores computed), ``reason``, ``evidence``. ``day`` None: every timepoint of the option ``timepoints``
    (default ``[pre_ld]``; review 40 B5), the rows of each subject together, in the option's order.
    """
    options = options or EasixOptions()
    opts = options.resolved()
    if day is None:
        from cartlab.grading.hematotox_baseline import easix_timepoints

        return easix_timepoints(study, options, opts["timepoints"], derive_easix)
    table = load_criteria(options.criteria)
    inputs: dict[str, dict] = table["inputs"]
    base = opts["log_base"]
    schema: dict[str, pl.DataType] = {_SID: pl.String, "timepoint": pl.String, "day": pl.Float64}
    for spec in inputs.values():
        schema |= {spec["column"]: pl.Float64, f"{spec['column']}_day": pl.Float64}
    for sc in table["scores"]:
        schema |= {sc["id"]: pl.Float64, f"log{base:g}_{sc['id']}": pl.Float64}
    schema |= {"missing": pl.List(pl.String), "baseline_rule": pl.String, "rule": pl.String, "reason": pl.String,
               "evidence": EVIDENCE}
    f = _easix_inputs(study, day, opts, inputs)
    if f.is_empty():
        return _empty(schema)
    f = with_timepoint_columns(f)
    if day == "pre_ld" and opts.get("absent_doses", "unknown") == "unknown" and _doses_absent(study):
        from cartlab.grading.hematotox_absent import easix_unknown_ld

        return easix_unknown_ld(f, schema, opts)
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
    # several different results of one time (a day without times; session 34): the range they leave
    f = f.with_columns(e for p, spec in inputs.items() for e in (
        _from_canonical(pl.col(f"_{p}_tlo"), spec["unit"], p).alias(f"_{p}_tlo_f"),
        _from_canonical(pl.col(f"_{p}_thi"), spec["unit"], p).alias(f"_{p}_thi_f")))

    def cens(p: str) -> pl.Expr:
        return pl.col(f"_{p}_censor")

    def tie(p: str) -> pl.Expr:
        return pl.col(f"_{p}_tn").is_not_null()

    def edge(p: str, upper: bool) -> tuple[pl.Expr, pl.Expr]:
        lo, lo_o, hi, hi_o = _bounds(conv(p), cens(p), pl.col(f"_{p}_lim"))
        if upper:
            return pl.when(tie(p)).then(pl.col(f"_{p}_thi_f")).otherwise(hi), pl.when(tie(p)).then(False).otherwise(hi_o)
        return (pl.when(tie(p)).then(pl.max_horizontal(pl.col(f"_{p}_tlo_f"), pl.lit(0.0)))
                .otherwise(pl.max_horizontal(lo, pl.lit(0.0))),
                pl.when(tie(p)).then(False).otherwise(lo_o & (lo >= 0)))

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
        present = pl.all_horizontal([conv(p).is_not_null() | cens(p).is_not_null() | tie(p) for p in need])
        censored = pl.any_horizontal([cens(p).is_not_null() for p in need])
        tied = pl.any_horizontal([tie(p) for p in need])
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
        tnames = pl.concat_str([pl.when(tie(p)).then(pl.concat_str(
            pl.lit(f"{p} "), _fmt_expr(pl.col(f"_{p}_tlo_f"), 6), pl.lit(" to "), _fmt_expr(pl.col(f"_{p}_thi_f"), 6),
            pl.lit(f" {inputs[p]['unit']} ("), pl.col(f"_{p}_tn").cast(pl.String), pl.lit(" different results of day "),
            _fmt_expr(pl.col(f"{inputs[p]['column']}_day")), pl.lit(" with no time to order them, rows "),
            pl.col(f"_{p}_trefs").list.join(", "), pl.lit(")")))
            for p in need], separator=", ", ignore_nulls=True)
        why = pl.concat_str(pl.when(censored).then(pl.concat_str(pl.lit("censored "), names, pl.lit(": a bound"))),
                            pl.when(tied).then(pl.concat_str(tnames, pl.lit(": a range"))),
                            separator="; ", ignore_nulls=True)
        bound_txt[sc["id"]] = pl.when(present & (censored | tied)).then(pl.concat_str(
            txt, pl.lit(" ("), why, pl.lit(", not a value; the score is left empty)")))
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
                                     joined([(conv(p).is_null() & cens(p).is_null() & ~tie(p), p) for p in need], ", "),
                                     pl.lit(")"))))
        done.append((ok, sc["id"]))
        # every row an input rests on: all of a daily_value mean's, a tie's (session 35, review s34 B3)
        ev.append(pl.when(ok | bound_txt[sc["id"]].is_not_null()).then(pl.concat_list(
            [pl.col(f"_{p}_refs").fill_null(_NO_REFS) for p in need]
            + [pl.col(f"_{p}_trefs").fill_null(_NO_REFS) for p in need]))
            .otherwise(_NO_REFS))
    # "converted" only for an input whose row was recorded in another unit than the formula's (audit
    # s27 item 12b: a CREAT row of 1.0 mg/dL is not "converted" although the canonical unit is umol/L);
    # the note shows the row's value and unit as recorded (a row without a unit: the canonical one)
    # session 37 (review s37 C1): every input, also one whose canonical unit is the formula's (LDH
    # recorded in ukat/L, platelets in /uL are converted by the reader): decided per row by its unit
    f = _with_recorded_units(f, study, list(inputs))
    notes = []
    for p, spec in inputs.items():
        ounit, oval = pl.col(f"_{p}_ounit"), pl.col(f"_{p}_oval")
        same = _unit_key(pl.coalesce(ounit, pl.lit(_canonical_unit(p)[0]))) == _unit_key(pl.lit(spec["unit"]))
        if _canonical_unit(p)[0] == spec["unit"]:  # only another name of the unit (G/L for 10^9/L): no note
            same = same | (oval.is_not_null() & ((oval - conv(p)).abs() <= 1e-9 * conv(p).abs()))
        shown_val = pl.when(ounit.is_not_null() & oval.is_not_null()).then(_fmt_expr(oval, 6)).otherwise(_fmt_expr(pl.col(f"_{p}")))
        shown_unit = pl.coalesce(ounit, pl.lit(_canonical_unit(p)[0]))
        notes.append((conv(p).is_not_null() & ~same.fill_null(False), pl.concat_str(
            pl.lit(f"{p} "), shown_val, pl.lit(" "), shown_unit, pl.lit(" -> "), _fmt_expr(conv(p)),
            pl.lit(f" {spec['unit']}"))))
    f = f.with_columns(joined(done, ", ").alias("_done"), joined(notes, "; ").alias("_notes"))
    f = f.with_columns(
        str_list([(conv(p).is_null() & cens(p).is_null() & ~tie(p), p) for p in inputs]).alias("missing"),
        pl.when(pl.col("_done") != "").then(pl.col("_done")).alias("rule"),
        pl.concat_str(timepoint_prefix(), pl.concat_str(parts, separator="; "),
                      pl.when(pl.col("_notes") != "")
                      .then(pl.concat_str(pl.lit(" [converted: "), pl.col("_notes"), pl.lit("]")))
                      .otherwise(pl.lit("")), pl.lit(".")).alias("reason"),
        _refs(pl.col("_ld_refs"), *ev).alias("evidence"),
    )
    return f.sort("_order" if day != "each" else [_SID, "_order"]).select(list(schema)).cast(schema)


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
__getattr__ = renamed(
    __name__, "car_hematotox", "easix", "icaht", "icaht_daily", "icaht_episodes", "icaht_summary", "iec_hs_flags",
    "t_icaht", "t_icaht_daily", recovery_days="derive_count_recovery")
