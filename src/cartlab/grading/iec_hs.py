"""IEC-HS flags: days on which the data meet the computable IEC-HS criteria (Hines 2023).

A flagging aid for clinician review, not a diagnosis. The criteria live in
``criteria/iec_hs_2023.yaml`` (numeric thresholds unverified, see its header); the code evaluates
them as polars expressions over one row per subject and calendar day. A criterion holds when any of
its alternatives holds, an alternative when all its conditions hold; a condition compares a
parameter's value of the day (the lowest for "<", the highest for ">", also from the
``lab_window_days`` before) with a value, a multiple of ULN/LLN or of the baseline value.

>>> from cartlab.datasets import seed_case
>>> iec_hs_flags(seed_case()).filter("iec_hs_flag").height > 0
True
"""

from __future__ import annotations

import functools
from typing import Literal

import polars as pl
from pydantic import Field

from cartlab._deprecated import renamed
from cartlab.criteria import CriteriaOptions
from cartlab.grading.common import load_criteria
from cartlab.grading.hemato_common import (
    bounds,
    canonical_unit,
    censored_text,
    daily_min_max,
    empty,
    fmt,
    fmt_expr,
    interval_cmp,
    join_param,
    joined,
    param_obs,
    param_obs_censored,
    point,
    str_list,
    subject_order,
    to_canonical,
)
from cartlab.model import Study
from cartlab.provenance import EVIDENCE, evidence_ref

__all__ = ["IecHsOptions", "derive_iec_hs_flags"]

_SID = "subject_id"


class IecHsOptions(CriteriaOptions):
    """Options of the IEC-HS flagging aid; ``None`` means the criteria table's default (its
    ``defaults``, whose comments document each option: the table below is generated from them)."""

    start_day: int | None = None
    baseline_day: int | None = None
    lab_window_days: int | None = None
    min_supporting: int | None = None
    baseline_max_lookback_days: int | None = Field(default=None, description=(
        "how many days before baseline_day a baseline value may be (None: any earlier value; session 38)"))
    transaminase_baseline_uln: Literal["none", "same_as_day"] | None = None
    ferritin_uln_when_baseline_abnormal: Literal["either", "baseline"] | None = None
    exclude: tuple[str, ...] = Field(default=(), description="criterion ids not to use (e.g. the cytopenia "
                                     "proxy ``iec_hs.cytopenia_new_or_worse``)")
    criteria: str = "iec_hs_2023"


def _conditions(criteria: list[dict]) -> list[dict]:
    return [c for crit in criteria if crit.get("computable") for alt in crit["any"] for c in alt]


def _side(c: dict) -> str:
    """The value of the day a condition reads: the lowest for "<" / "<=", else the highest."""
    return "min" if c["op"].startswith("<") else "max"


def _day_frame(study: Study, conds: list[dict], opts: dict, criterion_params: set[str]) -> pl.DataFrame:
    """One row per subject and calendar day (from ``start_day``) with any condition parameter
    measured, in subject and day order; ``_crit_day``: a parameter of ``criterion_params`` (those of
    the flag's criteria, not of the features only reported) was measured that day.

    Per parameter and side the conditions read: ``<p>.<side>.value``, its day ``d``, ``ref`` and the
    ``lln``/``uln`` of the lowest value's row (equal values: the later day), and ``<p>.base.*``: the
    last value on or before ``baseline_day`` (``value``, ``uln``, ``d``, ``ref``)."""
    params = sorted({c["param"] for c in conds})
    w = int(opts["lab_window_days"])
    # subjects by their position, (subject, day) and (subject, param, day) as single sorted integer
    # keys: joins and groupings on strings cost many times more
    order = subject_order(study)
    obs = param_obs(study, params).with_columns(
        pl.col(_SID).replace_strict(order[_SID], order["_order"], default=None, return_dtype=pl.Int64).alias("_s"),
        pl.col("param").replace_strict(params, range(len(params)), return_dtype=pl.Int64).alias("_p"))
    lo_d, hi_d = (obs["d"].min() or 0), (obs["d"].max() or 0) + max(w, 0)
    span = hi_d - lo_d + 1
    key = pl.col("_s") * span + (pl.col("day") - lo_d)
    obs = obs.with_columns(((pl.col("_s") * span + (pl.col("d") - lo_d)) * len(params) + pl.col("_p")).alias("_kp"))
    daily = daily_min_max(obs, ["_kp"], ("_s", "param", "d"))
    crit_idx = [i for i, p in enumerate(params) if p in criterion_params]
    # censored results ("FERRITIN >40000", session 32): per subject, param and day without a number,
    # the most informative one (the highest lower bound, else the lowest upper bound); read on their
    # own day only (lab_window_days does not carry them)
    allc = param_obs_censored(study, params).with_columns(
        pl.col(_SID).replace_strict(order[_SID], order["_order"], default=None, return_dtype=pl.Int64).alias("_s"),
        pl.col("param").replace_strict(params, range(len(params)), return_dtype=pl.Int64).alias("_p"))
    cens = (allc.filter(pl.col("censor").is_not_null() & pl.col("_s").is_not_null())
            .join(obs.select("_s", "param", "d").unique(), on=["_s", "param", "d"], how="anti")
            .with_columns(evidence_ref().alias("ref"),
                          pl.when(pl.col("censor").is_in([">", ">="])).then(-pl.col("censor_limit"))
                          .otherwise(pl.col("censor_limit")).alias("_k"))
            .sort("_k", "day", "src_row").group_by("_s", "param", "d", maintain_order=True).first())
    if cens.height:
        lo_d, hi_d = min(lo_d, cens["d"].min()), max(hi_d, cens["d"].max() + max(w, 0))
        span = hi_d - lo_d + 1
        key = pl.col("_s") * span + (pl.col("day") - lo_d)
        obs = obs.with_columns(((pl.col("_s") * span + (pl.col("d") - lo_d)) * len(params) + pl.col("_p")).alias("_kp"))
        daily = daily_min_max(obs, ["_kp"], ("_s", "param", "d"))
    cens = cens.with_columns(((pl.col("_s") * span + (pl.col("d") - lo_d)) * len(params) + pl.col("_p")).alias("_kp"),
                             (pl.col("_s") * span + (pl.col("d") - lo_d)).alias("_k"))
    keys = pl.concat([daily.select("_kp", "d"), cens.select("_kp", "d")])
    days = (keys.filter(pl.col("d") >= int(opts["start_day"]))
            .group_by((pl.col("_kp") // len(params)).alias("_k"))
            .agg((pl.col("_kp") % len(params)).is_in(crit_idx).any().alias("_crit_day"))
            .sort("_k").with_columns((pl.col("_k") // span).alias("_s"), (pl.col("_k") % span + lo_d).alias("day")))
    cols = {"min": ["min", "min_ref", "lln", "uln", "d"], "max": ["max", "max_ref", "max_lln", "max_uln", "d"]}
    if w > 0:  # every value counts for its day and the w days after it
        win = daily.with_columns(pl.int_ranges("d", pl.col("d") + w + 1).alias("day")).explode("day").join(
            days, on=["_s", "day"], how="semi")
        by = ["_s", "param", "day"]
        side = {"min": win.group_by(by).agg(pl.col(cols["min"]).sort_by(["min", "d"], descending=[False, True]).first()),
                "max": win.group_by(by).agg(pl.col(cols["max"]).sort_by(["max", "d"], descending=[True, True]).first())}
        side = {k: v.with_columns(key.alias("_k")).sort("_k") for k, v in side.items()}
    else:
        side = dict.fromkeys(("min", "max"), daily.with_columns(pl.col("d").alias("day")).with_columns(
            key.alias("_k")).sort("_k"))
    # the baseline is the last result, numeric or censored (">40000" is a baseline, session 32)
    # session 38 (review s38 B5): baseline_max_lookback_days bounds how old the baseline may be
    lookback = opts.get("baseline_max_lookback_days")
    in_reach = pl.lit(True) if lookback is None else pl.col("d") >= int(opts["baseline_day"]) - int(lookback)
    base = (allc.filter((pl.col("d") <= int(opts["baseline_day"])) & in_reach & pl.col("_s").is_not_null())
            .sort(["day", "src_row"], nulls_last=True).with_columns(evidence_ref().alias("ref"))
            .group_by("_s", "param", maintain_order=True).agg(pl.col("value", "uln", "d", "ref", "censor", "censor_limit").last()))
    parts = [days.select(pl.col("_s").replace_strict(order["_order"], order[_SID], return_dtype=pl.String)
                         .alias(_SID), "day", "_crit_day")]
    for p, s in sorted({(c["param"], _side(c)) for c in conds}):
        parts.append(join_param(days.select("_k"), side[s], ["_k"], p, {
            cols[s][0]: f"{p}.{s}.value", cols[s][1]: f"{p}.{s}.ref",
            **{c: f"{p}.{s}.{c.removeprefix('max_')}" for c in cols[s][2:]}}))
    for p in params:
        parts.append(join_param(days.select("_s"), base, ["_s"], p,
                                {c: f"{p}.base.{c}" for c in ("value", "uln", "d", "ref", "censor", "censor_limit")}))
        parts.append(join_param(days.select("_k"), cens, ["_k"], p,
                                {c: f"{p}.cens.{c}" for c in ("censor", "censor_limit", "lln", "uln", "d", "ref")}))
    # each part holds the grid's rows in the grid's order: side by side
    return pl.concat([parts[0], *[x.drop("_k", "_s", strict=False) for x in parts[1:]]], how="horizontal")


def _baseline_abnormal(p: str) -> pl.Expr:
    """``p``'s baseline above its ULN: True / False; null when the baseline value or its ULN is missing
    (missing is not normal: the status is then unknown)."""
    return interval_cmp(">", _base_iv(p), point(pl.col(f"{p}.base.uln")))


def _base_iv(p: str, k: float = 1.0) -> tuple[pl.Expr, ...]:
    """``k`` x the baseline of ``p`` as an interval: a number, or the bound of a censored baseline."""
    lo, lo_o, hi, hi_o = bounds(pl.col(f"{p}.base.value"), pl.col(f"{p}.base.censor"), pl.col(f"{p}.base.censor_limit"))
    return lo * k, lo_o, hi * k, hi_o


def _condition_expr(c: dict, ignore_baseline: bool = False, baseline_day: int = 0, lookback: int | None = None,
               same_uln: bool = False) -> tuple[pl.Expr, pl.Expr, list[pl.Expr], list[str], pl.Expr]:
    """(holds, text, evidence, the numeric columns the text shows, why) of one condition; holds is
    null when the data cannot decide, and ``why`` then names the missing input ("ALT not measured",
    "ALT without ULN", "no baseline ALT", "baseline ALT without ULN"). The text reads each shown
    column ``x`` as formatted in ``x:fmt``.

    A condition on the baseline's status (``baseline: normal | abnormal``) is three-valued: without
    the baseline value or its ULN the status is unknown, and the condition is undecided unless its
    comparison fails. ``ignore_baseline``: the comparison alone (see ``_either_way``).

    ``baseline_day``/``lookback`` (options baseline_day, baseline_max_lookback_days) name the
    baseline's age in the text and the reach of a missing one; ``same_uln`` (option
    transaminase_baseline_uln same_as_day): without a baseline, "> k x baseline when abnormal" fails
    when the day's value is <= k x the day's ULN (an abnormal baseline is above that ULN)."""
    p, op, s = c["param"], c["op"], _side(c)
    v, b, cz = f"{p}.{s}.", f"{p}.base.", f"{p}.cens."
    shown = [v + "value"]
    kind, k = c["compare"], float(c["value"])
    # the day's censored result (">40000"), with the limits of its own row (session 32)
    c_iv = bounds(pl.lit(None, dtype=pl.Float64), pl.col(cz + "censor"), pl.col(cz + "censor_limit"))
    if kind == "value":
        ref, known, what = pl.lit(to_canonical(k, c["unit"], p)), pl.lit(True), pl.lit(f"{fmt(k)} {c['unit']}")
        ref_iv = c_ref_iv = point(ref)
        c_known = pl.lit(True)
        missing = pl.lit(None, dtype=pl.String)
    elif kind in ("uln_multiple", "lln_multiple"):
        name = "ULN" if kind == "uln_multiple" else "LLN"
        lim = v + name.lower()
        ref, known = k * pl.col(lim), pl.col(lim).is_not_null()
        ref_iv = point(ref)
        c_ref_iv, c_known = point(k * pl.col(cz + name.lower())), pl.col(cz + name.lower()).is_not_null()
        what = pl.concat_str(pl.lit(f"{fmt(k)} x {name} ("),
                             pl.coalesce(pl.col(lim + ":fmt"), fmt_expr(pl.col(cz + name.lower()))), pl.lit(")"))
        missing = pl.lit(f"{p} without {name}")
        shown.append(lim)
    elif kind == "baseline_multiple":
        ref_iv = c_ref_iv = _base_iv(p, k)
        ref = k * pl.col(b + "value")
        known = c_known = pl.col(b + "value").is_not_null() | pl.col(b + "censor").is_not_null()
        base_txt = pl.coalesce(pl.col(b + "value:fmt"), censored_text(pl.col(b + "censor"), pl.col(b + "censor_limit")))
        age = pl.lit(baseline_day) - pl.col(b + "d")
        what = pl.concat_str(pl.lit(f"{fmt(k)} x baseline ("), base_txt, pl.lit(" on day "),
                             pl.col(b + "d").cast(pl.String), pl.lit(", "), age.cast(pl.String),
                             pl.lit(f" day(s) before day {baseline_day})"))
        missing = pl.lit(f"no baseline {p}" + ("" if lookback is None else
                                               f" within {lookback} days before day {baseline_day} "
                                               "(option baseline_max_lookback_days)"))
        shown.append(b + "value")
    else:
        raise ValueError(f"unknown comparison {kind!r}")
    num, has_c = pl.col(v + "value"), pl.col(cz + "censor").is_not_null()
    # the day's numbers and its censored result: met when either meets it for sure (the lowest for
    # "<", the highest for ">"), failed when every one fails, else undecided
    cmp_n = pl.when(num.is_not_null() & known).then(interval_cmp(op, point(num), ref_iv))
    cmp_c = pl.when(has_c & c_known).then(interval_cmp(op, c_iv, c_ref_iv))
    cmp = (pl.when(cmp_n.fill_null(False) | cmp_c.fill_null(False)).then(True)
           .when((cmp_n.is_null() & num.is_not_null() & known) | (cmp_c.is_null() & has_c & c_known)).then(None)
           .otherwise(False))
    absent = num.is_null() & ~has_c
    known = pl.when(num.is_not_null()).then(known).otherwise(c_known)
    holds = pl.when(absent).then(None)
    if same_uln and kind == "baseline_multiple" and c.get("baseline") == "abnormal" and op.startswith(">"):
        # session 38 (review s38 B2): an abnormal baseline is above the ULN, read as the day's
        no_base = pl.col(b + "value").is_null() & pl.col(b + "censor").is_null()
        holds = holds.when(no_base & num.is_not_null() & (num <= k * pl.col(v + "uln")).fill_null(False)).then(False)
    why = pl.when(absent).then(pl.lit(f"{p} not measured"))
    status = "baseline" in c and not ignore_baseline
    if status:  # the condition applies only when the baseline is (not) above its ULN
        abn = _baseline_abnormal(p)
        holds = holds.when((~abn if c["baseline"] == "abnormal" else abn).fill_null(False)).then(False)
    holds, why = holds.when(~known).then(None), why.when(~known).then(missing)
    if status:  # status unknown: a failing comparison fails either way, else undecided
        holds = holds.when(abn.is_null() & (~cmp).fill_null(False)).then(False).when(abn.is_null()).then(None)
        why = why.when(abn.is_null()).then(pl.when(pl.col(b + "value").is_null() & pl.col(b + "censor").is_null())
                                           .then(pl.lit(f"no baseline {p}" + ("" if lookback is None else
                                                        f" within {lookback} days before day {baseline_day} "
                                                        "(option baseline_max_lookback_days)")))
                                           .otherwise(pl.lit(f"baseline {p} without ULN")))
    holds = holds.otherwise(cmp)
    why = why.when(cmp.is_null() & has_c).then(pl.format(f"{p} {{}}: its bound does not settle it",
                                                          censored_text(pl.col(cz + "censor"), pl.col(cz + "censor_limit"))))
    if kind == "baseline_multiple":  # session 38 (review s38 B1): a censored baseline leaves it undecided
        why = why.when(cmp.is_null()).then(pl.format(
            f"censored baseline {p} {{}} on day {{}}: {fmt(k)} x baseline {{}}{{}}, {{}} undecided",
            censored_text(pl.col(b + "censor"), pl.col(b + "censor_limit")), pl.col(b + "d").cast(pl.String),
            pl.col(b + "censor"), fmt_expr(k * pl.col(b + "censor_limit")), fmt_expr(num)))
    day_txt = pl.coalesce(pl.col(v + "value:fmt"), censored_text(pl.col(cz + "censor"), pl.col(cz + "censor_limit")))
    text = pl.concat_str(pl.lit(f"{p} "), day_txt, pl.lit(f" {canonical_unit(p)[0]} on day "),
                         pl.coalesce(pl.col(v + "d"), pl.col(cz + "d")).cast(pl.String), pl.lit(f" {op} "), what)
    refs = [pl.coalesce(pl.col(v + "ref"), pl.col(cz + "ref"))] + ([pl.col(b + "ref")] if kind == "baseline_multiple" else [])
    if c.get("baseline_option") and kind == "uln_multiple":
        # review 40 B2: "> k x ULN" always names the baseline (a baseline already above k x ULN shows no rise)
        base_txt = pl.coalesce(pl.col(b + "value:fmt"), censored_text(pl.col(b + "censor"), pl.col(b + "censor_limit")))
        already = interval_cmp(">", _base_iv(p), point(k * pl.col(b + "uln"))).fill_null(False)
        text = pl.concat_str(text, pl.when(base_txt.is_not_null()).then(pl.concat_str(
            pl.lit("; baseline "), base_txt, pl.lit(f" {canonical_unit(p)[0]} on day "), pl.col(b + "d").cast(pl.String),
            pl.when(already).then(pl.format(f", already > {fmt(k)} x ULN ({{}}) at baseline: met without a rise "
                                            f"(option {c['baseline_option']}=either)", fmt_expr(k * pl.col(b + "uln"))))
            .otherwise(pl.lit("")))).otherwise(pl.lit(f"; no baseline {p}")))
        refs.append(pl.col(b + "ref"))
        shown.append(b + "value")
    return holds, text, refs, shown, why.otherwise(None)


def _baseline_options(criteria: list[dict], opts: dict) -> list[dict]:
    """The criteria with each condition that names an option in ``baseline_option`` (review 40 B2:
    ``ferritin_uln_when_baseline_abnormal``) read by it: ``either`` (default) leaves the condition as it
    is; ``baseline`` adds ``baseline: normal`` (as the transaminase row: an abnormal baseline must be
    doubled, criterion ``iec_hs.ferritin_gt_2x_baseline``)."""
    out = []
    for crit in criteria:
        if not any(c.get("baseline_option") for alt in crit.get("any", []) for c in alt):
            out.append(crit)
            continue
        out.append({**crit, "any": [[{**c, "baseline": "normal"} if c.get("baseline_option")
                                     and opts.get(c["baseline_option"]) == "baseline" else c for c in alt]
                                    for alt in crit["any"]]})
    return out


def _abnormal_baseline_note(f: pl.DataFrame, opts: dict) -> pl.Expr:
    """With ``ferritin_uln_when_baseline_abnormal=baseline``, a day whose ferritin is above 2 x ULN but not
    counted because the baseline was already above the ULN says so (review 40 diff1 F4); "" otherwise."""
    cols = ("FERRITIN.max.value", "FERRITIN.max.uln", "FERRITIN.base.value", "FERRITIN.base.uln", "FERRITIN.base.d")
    if opts.get("ferritin_uln_when_baseline_abnormal") != "baseline" or not set(cols) <= set(f.columns):
        return pl.lit("")
    v, uln, b, buln = (pl.col(c) for c in cols[:4])
    hit = (v > 2 * uln) & (b > pl.coalesce(buln, uln)) & (v <= 2 * b)
    return pl.when(hit.fill_null(False)).then(pl.format(
        " Ferritin {} > 2 x ULN ({}) not counted: the baseline {} (day {}) was already above the ULN (option "
        "iec_hs.ferritin_uln_when_baseline_abnormal=baseline: an abnormal baseline must double, > {}).",
        v.round(1), (2 * uln).round(1), b.round(1), pl.col(cols[4]), (2 * b).round(1))).otherwise(pl.lit(""))


def _same_uln_notes(crits: list[tuple[str, dict]], opts: dict) -> pl.Expr:
    """" Assumed: no baseline ALT: read with the day's ULN (40), ..." where the option
    transaminase_baseline_uln same_as_day decided a "> k x baseline when abnormal" condition (session 38,
    review s38 B2); empty otherwise."""
    if opts.get("transaminase_baseline_uln") != "same_as_day":
        return pl.lit("")
    notes = []
    for _, crit in crits:
        for alt in crit["any"]:
            for c in alt:
                if c["compare"] == "baseline_multiple" and c.get("baseline") == "abnormal" and c["op"].startswith(">"):
                    p, k = c["param"], float(c["value"])
                    v, b = f"{p}.{_side(c)}.", f"{p}.base."
                    used = (pl.col(b + "value").is_null() & pl.col(b + "censor").is_null() & pl.col(v + "value").is_not_null()
                            & (pl.col(v + "value") <= k * pl.col(v + "uln")).fill_null(False))
                    notes.append((used, pl.format(f"no baseline {p}: read with the day's ULN ({{}}), so > {fmt(k)} x an "
                                                  "abnormal baseline is not met (option transaminase_baseline_uln "
                                                  "same_as_day)", fmt_expr(pl.col(v + "uln")))))
    if not notes:
        return pl.lit("")
    txt = pl.concat_list([pl.when(u).then(t) for u, t in notes]).list.drop_nulls().list.unique(maintain_order=True)
    return pl.when(txt.list.len() > 0).then(pl.concat_str(pl.lit(" Assumed: "), txt.list.join("; "), pl.lit(".")))\
        .otherwise(pl.lit(""))


def _either_way(crit: dict) -> list[tuple[str, int, int]]:
    """(param, normal alternative, abnormal alternative): the pairs of single-parameter alternatives
    that read one parameter's baseline status both ways ("> 5 x ULN if normal at baseline, > 5 x
    baseline if abnormal"). When that status is unknown and both comparisons hold, the criterion
    holds whatever the status."""
    side: dict[tuple[str, str], list[int]] = {}
    for j, alt in enumerate(crit["any"]):
        if len({c["param"] for c in alt}) == 1 and [c.get("baseline") for c in alt if "baseline" in c]:
            st = {c["baseline"] for c in alt if "baseline" in c}
            if len(st) == 1:
                side.setdefault((alt[0]["param"], st.pop()), []).append(j)
    return [(p, jn, ja) for (p, st), js in side.items() if st == "normal" for jn in js
            for ja in side.get((p, "abnormal"), [])]


def _unique(refs: list[tuple[pl.Expr, set[str]]]) -> list[pl.Expr]:
    """The references each once (first-seen order): a reference equal to an earlier one is nulled.
    Each comes with the params it can be a row of; rows of different params never share a reference."""
    out = []
    for i, (r, params) in enumerate(refs):
        same = [(r != e).fill_null(True) for e, ps in refs[:i] if ps & params]
        out.append(pl.when(pl.all_horizontal(same)).then(r) if same else r)
    return out


def derive_iec_hs_flags(study: Study, options: IecHsOptions | None = None) -> pl.DataFrame:
    """Days on which the data meet the computable IEC-HS criteria (Hines 2023) - a flag, not a diagnosis.

    One row per subject and calendar day (from ``start_day``) with a criterion parameter measured, or
    with one of the table's ``other_features`` met. Columns: ``iec_hs_flag`` (a key criterion and >=
    ``min_supporting`` supporting criteria met; null when the criteria the data cannot decide could
    still make it), ``key_met``, ``supporting_met``, ``not_evaluable`` (criteria the data cannot
    decide that day; the reason names the missing inputs), ``needs_adjudication`` (criteria that are
    never computed: hemophagocytosis, rapid rise, timing, attribution), ``adjudication_features``
    (the further features Hines 2023 lists that the data show that day, e.g. LDH > ULN: reported for
    adjudication, never used for the flag), ``rule``, ``reason`` and ``evidence``. A transaminase
    compared "x ULN if normal at baseline, x baseline if abnormal" without a baseline value or its ULN
    is undecided (missing is not normal) unless it is met, or fails, either way. Thresholds are
    unverified (see the table).
    """
    options = options or IecHsOptions()
    opts = options.resolved()
    table = load_criteria(options.criteria)
    _condition = functools.partial(_condition_expr, baseline_day=int(opts["baseline_day"]),
                                   lookback=opts.get("baseline_max_lookback_days"),
                                   same_uln=opts.get("transaminase_baseline_uln") == "same_as_day")
    key = _baseline_options([c for c in table["key"] if c["id"] not in options.exclude], opts)
    sup = [c for c in table["supporting"] if c["id"] not in options.exclude]
    feats = [c for c in table.get("other_features", []) if c["id"] not in options.exclude]
    adjud = [c["id"] for c in key + sup if not c.get("computable")] + [c["id"] for c in table.get("adjudication_only", [])]
    schema = {_SID: pl.String, "day": pl.Int64, "iec_hs_flag": pl.Boolean, "key_met": pl.List(pl.String),
              "supporting_met": pl.List(pl.String), "not_evaluable": pl.List(pl.String),
              "needs_adjudication": pl.List(pl.String), "adjudication_features": pl.List(pl.String),
              "rule": pl.String, "reason": pl.String, "evidence": EVIDENCE}
    f = _day_frame(study, _conditions(key + sup + feats), opts, {c["param"] for c in _conditions(key + sup)})
    if f.is_empty():
        return empty(schema)
    crits = [(role, crit) for role, cs in (("key", key), ("supporting", sup), ("feature", feats))
             for crit in cs if crit.get("computable")]
    # each condition once (True / False / null = undecided), then per alternative: all its
    # conditions hold (_all) / one of them fails, which decides it (_no)
    f = f.with_columns(_condition(c)[0].alias(f"_c.{cid}.{j}.{i}") for _, crit in crits
                       for j, alt in enumerate(crit["any"]) for i, c in enumerate(alt) if (cid := crit["id"]))
    f = f.with_columns(
        e for _, crit in crits for j, alt in enumerate(crit["any"]) for e in (
            pl.all_horizontal([pl.col(f"_c.{crit['id']}.{j}.{i}").fill_null(False) for i in range(len(alt))])
            .alias(f"_all.{crit['id']}.{j}"),
            pl.any_horizontal([(~pl.col(f"_c.{crit['id']}.{j}.{i}")).fill_null(False) for i in range(len(alt))])
            .alias(f"_no.{crit['id']}.{j}")))
    # a baseline status the data cannot tell, with the comparisons of both readings met: met either way
    pairs = {crit["id"]: _either_way(crit) for _, crit in crits}
    f = f.with_columns(
        (_baseline_abnormal(p).is_null() & pl.all_horizontal(
            [_condition(c, ignore_baseline=True)[0].fill_null(False) for c in crit["any"][jn] + crit["any"][ja]]))
        .alias(f"_either.{crit['id']}.{n}") for _, crit in crits for n, (p, jn, ja) in enumerate(pairs[crit["id"]]))
    met: dict[str, list] = {"key": [], "supporting": [], "feature": []}
    open_: dict[str, list] = {"key": [], "supporting": []}  # met, or undecided for want of an input
    texts: dict[str, list] = {"criteria": [], "feature": []}
    refs, not_eval, whys = [], [], []
    shown: dict[str, list[pl.Expr]] = {}
    for role, crit in crits:
        cid, alts = crit["id"], crit["any"]
        conds = [[_condition(c) for c in alt] for alt in alts]
        held = [pl.col(f"_all.{cid}.{j}") for j in range(len(alts))]
        notes = [""] * len(alts)
        for n, (p, jn, ja) in enumerate(pairs[cid]):  # "met either way" reads as one more alternative
            conds.append([_condition(c, ignore_baseline=True) for c in alts[jn] + alts[ja]])
            held.append(pl.col(f"_either.{cid}.{n}"))
            notes.append(f" (baseline {p} above or below ULN unknown: met either way)")
        hit = pl.any_horizontal(held)
        # false only when every alternative fails (one undecided alternative leaves it open)
        decided = pl.all_horizontal([pl.col(f"_no.{cid}.{j}") for j in range(len(alts))])
        text = None
        for h, cs, note in zip(held, conds, notes):  # the first alternative that holds gives the text and evidence
            t = pl.concat_str([c[1] for c in cs], separator=" and ")
            t = pl.concat_str(t, pl.lit(note)) if note else t
            text = pl.when(h).then(t) if text is None else text.when(h).then(t)
            for c in cs:
                for col in c[3]:
                    shown.setdefault(col, []).append(h)
        width = max(len([r for c in cs for r in c[2]]) for cs in conds)
        for slot in range(width):
            expr = None
            for h, cs in zip(held, conds):
                rs = [r for c in cs for r in c[2]]
                r = rs[slot] if slot < len(rs) else pl.lit(None, dtype=pl.String)
                expr = pl.when(h).then(r) if expr is None else expr.when(h).then(r)
            refs.append((expr.otherwise(None).alias(f"_ref.{len(refs)}"), {c["param"] for alt in alts for c in alt}))
        met[role].append((hit, cid))
        texts["feature" if role == "feature" else "criteria"].append(
            pl.when(hit).then(pl.concat_str(pl.lit(f"{cid}: "), text.otherwise(None))).alias(f"_text.{cid}"))
        if role == "feature":
            continue
        open_[role].append(hit | ~decided)
        not_eval.append((~hit & ~decided, cid))
        # what the undecided alternatives miss, each once: "iec_hs.transaminases_gt_5x (no baseline ALT; ...)"
        why = (pl.concat_list([pl.when(~pl.col(f"_no.{cid}.{j}")).then(c[4]) for j in range(len(alts)) for c in conds[j]])
               .list.drop_nulls().list.unique(maintain_order=True).list.join("; "))
        whys.append((~hit & ~decided, pl.concat_str(pl.lit(f"{cid} ("), why, pl.lit(")"))))
    # the texts and evidence of the rows where a criterion or feature is met (a row without is "not flagged")
    hits = [c for c, _ in met["key"] + met["supporting"] + met["feature"]]
    g = f.with_row_index("_row").filter(pl.any_horizontal(hits) if hits else pl.lit(False))
    # the numbers a reason shows, formatted once per column where a text needs them
    g = g.with_columns(fmt_expr(pl.when(pl.any_horizontal(masks)).then(pl.col(col))).alias(col + ":fmt")
                       for col, masks in shown.items())
    # computed once as columns (an expression used twice is computed twice)
    g = g.with_columns(*[r for r, _ in refs], *texts["criteria"], *texts["feature"])
    refs = [(pl.col(r.meta.output_name()), ps) for r, ps in refs]
    g = g.select("_row", str_list([(pl.lit(True), r) for r in _unique(refs)]).alias("evidence"),
                 *[joined([(pl.lit(True), pl.col(t.meta.output_name())) for t in texts[k]], "; ").alias(name)
                   for k, name in (("criteria", "_texts"), ("feature", "_ftexts"))])
    n_sup = pl.sum_horizontal([c.cast(pl.Int64) for c, _ in met["supporting"]] or [pl.lit(0)])
    # supporting criteria that are cartlab's operationalisation (status proxy), e.g. the cytopenia proxy
    proxy_ids = {c["id"] for c in sup if c.get("status") == "proxy"}
    n_sup_direct = pl.sum_horizontal([c.cast(pl.Int64) for c, cid in met["supporting"] if cid not in proxy_ids]
                                     or [pl.lit(0)])
    f = f.with_columns(
        str_list(met["key"]).alias("key_met"), str_list(met["supporting"]).alias("supporting_met"),
        str_list(not_eval).alias("not_evaluable"), str_list(met["feature"]).alias("adjudication_features"),
        joined(whys, ", ").alias("_why"),
        joined(met["key"], ", ").alias("_key"), joined(met["key"] + met["supporting"], "; ").alias("_met"),
        n_sup.alias("_n_sup"), n_sup_direct.alias("_n_sup_direct"), pl.any_horizontal([c for c, _ in met["key"]] or [pl.lit(False)]).alias("_any_key"),
    ).with_row_index("_row").join(g, on="_row", how="left", maintain_order="left").with_columns(
        pl.col("evidence").fill_null(pl.lit([], dtype=EVIDENCE)), pl.col("_texts").fill_null(pl.lit("")),
        pl.col("_ftexts").fill_null(pl.lit("")))
    # missing is not negative: when the criteria the data cannot decide (not_evaluable) could still
    # make a key and enough supporting criteria, the flag is unknown (null), not "not flagged"
    n_min = int(opts["min_supporting"])
    flag = pl.col("_any_key") & (pl.col("_n_sup") >= n_min)
    could = (pl.any_horizontal(open_["key"] or [pl.lit(False)])
             & (pl.sum_horizontal([c.cast(pl.Int64) for c in open_["supporting"]] or [pl.lit(0)]) >= n_min))
    f = f.with_columns(pl.when(flag).then(True).when(could).then(None).otherwise(False).alias("iec_hs_flag"))
    unknown = pl.col("iec_hs_flag").is_null()
    # "not flagged" is by the computable criteria only: the others are named (session 33 review)
    not_assessed = f" Not assessed (adjudication): {', '.join(adjud)}." if adjud else ""
    # a flag that needs a proxy criterion to reach min_supporting says so (session 34 review: after
    # lymphodepletion almost every patient meets the cytopenia proxy, so it is weak evidence alone)
    via_proxy = pl.when(pl.col("_n_sup_direct") < n_min).then(pl.lit(
        f" Met via the proxy criterion ({', '.join(sorted(proxy_ids))}: cartlab's operationalisation, status "
        "proxy); without it the flag would not be raised (leave it out with the option iec_hs.exclude).")).otherwise(pl.lit(""))
    features = pl.when(pl.col("_ftexts") != "").then(pl.concat_str(
        pl.lit(" Reported for adjudication, never used for the flag: "), pl.col("_ftexts"), pl.lit("."))).otherwise(pl.lit(""))
    f = f.with_columns(
        pl.lit(adjud, dtype=pl.List(pl.String)).alias("needs_adjudication"),
        # the decision and the criteria met: the row's status is that of the least verified
        pl.concat_str(pl.when(pl.col("iec_hs_flag")).then(pl.lit("iec_hs.flag"))
                      .when(unknown).then(pl.lit("iec_hs.not_evaluable")).otherwise(pl.lit("iec_hs.no_flag")),
                      pl.when(pl.col("_met") != "").then(pl.col("_met")), separator="; ", ignore_nulls=True).alias("rule"),
        pl.concat_str(pl.when(pl.col("iec_hs_flag")).then(pl.concat_str(
            pl.lit("data meet "), pl.col("_key"), pl.lit(" and "), pl.col("_n_sup").cast(pl.String),
            pl.lit(" supporting criterion(s) ("), pl.col("_texts"),
            pl.lit(f") -> flagged for review, not a diagnosis; needs adjudication of {', '.join(adjud)}."),
            via_proxy))
        .when(unknown).then(pl.concat_str(
            pl.lit("not evaluable: the data cannot decide "), pl.col("_why"),
            pl.lit(f", and with them a key (ferritin) criterion and >= {n_min} supporting criterion(s) could be met"),
            pl.when(pl.col("_texts") != "").then(pl.concat_str(pl.lit("; met: "), pl.col("_texts"))).otherwise(pl.lit("")),
            pl.lit(".")))
        .when(pl.col("_texts") != "").then(pl.concat_str(
            pl.lit("not flagged: "), pl.col("_texts"),
            pl.lit(f"; needs a key (ferritin) criterion and >= {opts['min_supporting']} supporting criterion(s)."
                   + not_assessed)))
        .otherwise(pl.lit("not flagged: no computable IEC-HS criterion met." + not_assessed)), features,
        _same_uln_notes(crits, opts), _abnormal_baseline_note(f, opts)).alias("reason"),
    )
    # a day with only a reported feature's parameter measured is a row when the feature is met
    f = f.filter(pl.col("_crit_day") | pl.any_horizontal([c for c, _ in met["feature"]] or [pl.lit(False)]))
    return f.select(list(schema)).cast(schema)


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
__getattr__ = renamed(__name__, "iec_hs_flags")
