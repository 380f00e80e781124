"""Vasopressor time course for the older CRS scales: hours, episodes and the Lee 2014 "high-dose" rule.

Used by :mod:`cartlab.grading.crs_legacy_inputs`. Agent names are resolved by
:mod:`cartlab.grading.vasopressors` before rows reach this module; the dose table and the
norepinephrine-equivalent (NE-eq) formula are ``criteria/vasopressor_equivalents.yaml``. Everything
is computed on frames (every subject at once):

* each infusion's rate in its agent's table unit (:func:`vaso_rows`; a dose per kg uses
  ``subjects.weight_kg``) and its time bounds: a whole-number day only says *which day*
  (``day_precision="bounds"``: the earliest and latest possible times are carried, giving an
  *inner* (shortest) and an *outer* (longest) time scenario); ``"full_days"`` reads it as the day;
* per time segment of constant infusions, the Lee 2014 high-dose situation (monotherapy / with
  vasopressin / combination) and whether its threshold is met (True / False / unknown);
* per calendar day (:func:`vaso_course`): hours of support that day, hours of the episode up to
  the end of the day (MSKCC), the high-dose status (held for >= ``min_duration_hours`` in both
  scenarios, else unknown with its reasons) and the NE-eq actually running.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from cartlab.criteria.model import COMPARE
from cartlab.grading.common import last_covered_day, load_criteria
from cartlab.grading.vasopressors import TABLE as VASOPRESSOR_TABLE
from cartlab.grading.vasopressors import UNSPECIFIED, normalize_agent, vocabulary
from cartlab.io.clock import is_timed
from cartlab.provenance import evidence_ref, row_ref
from cartlab.units import UnitError, conversion

__all__ = ["EPS_H", "SAME_AGENT_OVERLAP", "VASOPRESSOR_TABLE", "hours", "vaso_course", "vaso_rows"]

EPS_H = 1e-9  # hours; durations are compared after rounding to this
SID, D = "subject_id", "day"
DURATION_REASON = "vasopressor duration (times known to the day only, or end not recorded)"
_S = pl.List(pl.String)
# review 45 finding 4: rows of one drug running at the same time (the same infusion from two feeds, a
# titration recorded by day): "range" (default) the drug's rate lies between its highest row and the
# rows' sum, the high-dose status is unknown when the threshold lies between; "sum" adds them (cartlab
# before session 45); "max" takes the highest row (vasopressor_equivalents.yaml same_agent_overlap)
SAME_AGENT_OVERLAP = ("range", "sum", "max")
OVERLAP_REASON = ("rate of overlapping rows of the same vasopressor ({}): between the highest row and "
                  "their sum (option same_agent_overlap)")


def hours(days: pl.Expr) -> pl.Expr:
    """A duration in days as hours, rounded to 1e-9 h (so that 24 h is 24 h whatever the sum order)."""
    return (days * 24.0).round(9)


def _seq_sum(expr: pl.Expr) -> pl.Expr:
    """Left-to-right sum in the frame's order (as Python's ``sum``): the last cumulative sum."""
    return expr.cum_sum().last()


# --------------------------------------------------------------------------------------------------
# infusion rows: rate in the table unit, time bounds, calendar days


def _unit_rule(dose_unit: str, unit: str) -> tuple[str, float | None, str | None]:
    """How a dose in ``dose_unit`` becomes the agent's ``unit``: (kind, scale, reason when it cannot).

    kind: ``direct`` (dose x scale), ``div`` / ``mul`` (a per-kg unit on one side only: divided /
    multiplied by the weight) or ``bad``."""
    u = str(dose_unit).replace("mcg", "ug").replace("µg", "ug").replace("μg", "ug")
    try:
        return "direct", conversion(u, unit).scale, None
    except UnitError:
        pass
    per_kg_target = "/kg" in unit.replace(" ", "")
    other = unit.replace("/kg", "") if per_kg_target else unit.replace("/min", "/kg/min", 1)
    try:
        scale = conversion(u, other).scale
    except UnitError:
        return "bad", None, f"vasopressor dose unit {dose_unit!r} not convertible to {unit}"
    return ("div" if per_kg_target else "mul"), scale, None


def _time_bounds(mode: str) -> list[pl.Expr]:
    """s_lo, s_hi, e_lo, e_hi (days) of an intervention row under ``day_precision`` ``mode``."""
    s, e = pl.col("start_day"), pl.col("end_day")
    sp, ep = is_timed("start_day", "start_datetime"), is_timed("end_day", "end_datetime")
    no_end = e.is_null()
    if mode == "full_days":
        s_hi = s
        e_lo = pl.when(no_end & sp).then(s).when(no_end).then(s + 1.0).when(ep).then(e).otherwise(e + 1.0)
        e_hi = pl.when(no_end & sp).then(s.floor() + 1.0).otherwise(e_lo)
    else:
        s_hi = pl.when(sp).then(s).otherwise(s + 1.0)
        e_lo = pl.when(no_end).then(s).otherwise(e)
        e_hi = (pl.when(no_end & sp).then(s.floor() + 1.0).when(no_end).then(s + 1.0)
                .when(ep).then(e).otherwise(e + 1.0))
    # an end without a time on a timed start's calendar day (end_day 2 with start_day 2.5): it ended
    # at some time from the start to the end of that day, never before the start (session 34)
    e_lo = pl.max_horizontal(e_lo, s)
    return [s.alias("s_lo"), s_hi.alias("s_hi"), e_lo.alias("e_lo"), e_hi.alias("e_hi")]


def _check_order(iv: pl.DataFrame) -> None:
    """An infusion that ends before it starts: a calendar day before the start's, or both ends timed
    and the end earlier (the study folder reader refuses these; an API caller gets the message)."""
    e, st = pl.col("end_day"), pl.col("start_day")
    both_timed = is_timed("start_day", "start_datetime") & is_timed("end_day", "end_datetime")
    bad = iv.filter((e.floor() < st.floor()) | ((e < st) & both_timed)).head(1).to_dicts()
    if bad:
        r = bad[0]
        where = row_ref(r) or r.get("agent")
        raise ValueError(f"intervention {where}: end_day {r['end_day']} is before start_day {r['start_day']}")


def vaso_rows(iv: pl.DataFrame, subjects: pl.DataFrame, day_precision: str) -> pl.DataFrame:
    """One row per vasopressor infusion (``iv``: resolved by :func:`~cartlab.grading.vasopressors.
    resolve_agents`, in the engine's row order) with ``idx``, ``agent``, ``vasopressin``,
    ``ne_factor``, ``rate`` (in the agent's table unit) or ``rate_reason``, ``weight_ref`` (the
    subjects row when the weight was used), time bounds ``s_lo, s_hi, e_lo, e_hi``, ``days`` (the
    calendar days it covers) and ``ref``."""
    _check_order(iv)
    agents = vocabulary().agents
    table = pl.DataFrame(
        [{"agent": k, "unit": a.get("unit"), "ne_factor": a.get("ne_factor")} for k, a in agents.items()],
        schema={"agent": pl.String, "unit": pl.String, "ne_factor": pl.Float64})
    subj = (subjects.select(SID, pl.col("weight_kg").cast(pl.Float64), evidence_ref().alias("weight_ref"))
            .unique(SID, keep="last", maintain_order=True))
    rows = (
        iv.with_row_index("idx")
        .select("idx", SID, pl.col("vaso_agent").alias("agent"), pl.col("vaso_known").alias("known"),
                pl.col("vaso_is_vasopressin").alias("vasopressin"), "dose", "dose_unit", *_time_bounds(day_precision),
                pl.int_ranges(pl.col("start_day").floor().cast(pl.Int64),
                              last_covered_day(iv) + 1).alias("days"),  # an end at 00:00: the day before (review 38 A1)
                evidence_ref().alias("ref"))
        .join(table, on="agent", how="left")
        .with_columns(pl.when(pl.col("known")).then(pl.col("unit")).alias("unit"),
                      pl.when(pl.col("known")).then(pl.col("ne_factor")).alias("ne_factor"))
        .join(subj, on=SID, how="left")
    )
    pairs = rows.filter(pl.col("unit").is_not_null() & pl.col("dose").is_not_null()
                        & (pl.col("dose_unit").fill_null("") != "")).select("dose_unit", "unit").unique()
    rules = pl.DataFrame([dict(zip(("dose_unit", "unit", "kind", "scale", "bad"), (du, u, *_unit_rule(du, u))))
                          for du, u in pairs.iter_rows()],
                         schema={"dose_unit": pl.String, "unit": pl.String, "kind": pl.String, "scale": pl.Float64,
                                 "bad": pl.String})
    rows = rows.join(rules, on=["dose_unit", "unit"], how="left")
    kind, dose, scale, w = pl.col("kind"), pl.col("dose"), pl.col("scale"), pl.col("weight_kg")
    no_weight = w.is_null() | w.is_nan() | (w <= 0)
    rate = (pl.when(pl.col("unit").is_null() | dose.is_null() | (pl.col("dose_unit").fill_null("") == "")).then(None)
            .when(kind == "direct").then(dose * scale)
            .when((kind == "bad") | no_weight).then(None)
            .when(kind == "div").then(dose * scale / w)
            .otherwise(dose * scale * w))
    why = (pl.when(pl.col("unit").is_null()).then(None)
           .when(dose.is_null()).then(pl.lit("vasopressor dose"))
           .when(pl.col("dose_unit").fill_null("") == "").then(pl.lit("vasopressor dose unit"))
           .when(kind == "direct").then(None)
           .when(kind == "bad").then(pl.col("bad"))
           .when(no_weight).then(pl.lit("patient weight (subjects.weight_kg)")))
    used_weight = rate.is_not_null() & kind.is_in(["div", "mul"])
    return rows.select(
        "idx", SID, "agent", "known", "vasopressin", "ne_factor", rate.alias("rate"), why.alias("rate_reason"),
        pl.when(used_weight).then(pl.col("weight_ref")).alias("weight_ref"),
        "s_lo", "s_hi", "e_lo", "e_hi", "days", "ref")


# --------------------------------------------------------------------------------------------------
# segments of constant infusions and their high-dose status


def _high_dose_rows(hd: dict[str, Any]) -> pl.DataFrame:
    """The table's rows keyed by situation (and agent for monotherapy): the first row that applies."""
    out, seen = [], set()
    for row in hd["rows"]:
        key = (row["applies"], normalize_agent(row.get("agent")) if row["applies"] == "monotherapy" else "")
        if key not in seen:
            seen.add(key)
            out.append({"situation": key[0], "key_agent": key[1], "hd_id": row["id"], "measure": row["measure"],
                        "op": row["op"], "value": float(row["value"])})
    return pl.DataFrame(out, schema={"situation": pl.String, "key_agent": pl.String, "hd_id": pl.String,
                                     "measure": pl.String, "op": pl.String, "value": pl.Float64})


def _compare(x: pl.Expr, op: pl.Expr, value: pl.Expr) -> pl.Expr:
    out = pl.lit(None, dtype=pl.Boolean)
    for name, fn in COMPARE.items():
        out = pl.when(op == name).then(fn(x, value)).otherwise(out)
    return out


def _repr_map(agents: pl.Series) -> dict[str, str]:
    return {a: repr(a) for a in agents.unique().drop_nulls().to_list()}


def _segments(intervals: pl.DataFrame, hd: dict[str, Any], overlap: str = "range") -> pl.DataFrame:
    """Per subject, scenario and time segment (t0, t1) between consecutive infusion start/end
    points with at least one infusion running: ``st`` (high dose True / False / unknown), ``rule``
    (the table row), ``reasons`` (when unknown), ``ne`` and ``complete`` (NE-eq and whether every
    running drug's dose is known). Rows of one agent running together count by ``overlap``
    (:data:`SAME_AGENT_OVERLAP`): the agent's rate is its highest row (``lo``) up to their sum
    (``hi``); "sum" reads both as the sum, "max" both as the highest row."""
    key = [SID, "scen"]
    pts = pl.concat([intervals.select(*key, pl.col("a").alias("t0")), intervals.select(*key, pl.col("b").alias("t0"))])
    seg = (pts.unique().sort(*key, "t0")
           .with_columns(pl.col("t0").shift(-1).over(key).alias("t1")).drop_nulls("t1"))
    reprs = _repr_map(intervals["agent"])
    nv = ~pl.col("vasopressin")
    skey = [*key, "t0"]
    act = (
        seg.join(intervals, on=key).filter((pl.col("a") <= pl.col("t0")) & (pl.col("b") >= pl.col("t1")))
        .with_columns(pl.when(nv).then(pl.col("idx").min().over(*skey, "agent")).alias("rank"))
        .sort(*skey, "rank", "idx", nulls_last=True)
        .with_columns(pl.col("rank").min().over(skey).alias("first_rank"))
    )
    first = nv & (pl.col("rank") == pl.col("first_rank"))
    same = [*skey, "agent"]
    act = act.with_columns(pl.len().over(same).alias("n_same"),
                           (pl.col("rate").rank("ordinal", descending=True).over(same) == 1).alias("top"))
    dup = nv & (pl.col("n_same") > 1)
    # the rate a row adds: lo = only the highest row of its agent counts, hi = every row (sum)
    rate_lo = pl.when(dup & ~pl.col("top").fill_null(False) & pl.col("rate").is_not_null()).then(0.0) \
        .otherwise(pl.col("rate"))
    rate_hi = rate_lo if overlap == "max" else pl.col("rate")
    if overlap == "sum":
        rate_lo = rate_hi
    incomplete = nv & (pl.col("ne_factor").is_null() | pl.col("rate").is_null())
    rate_why = pl.coalesce("rate_reason", pl.lit("vasopressor dose"))
    ne_why = (pl.when(nv & pl.col("ne_factor").is_null())
              .then(pl.format("norepinephrine equivalent of {} (not in vasopressor table)",
                              pl.col("agent").replace_strict(reprs, return_dtype=pl.String)))
              .when(incomplete).then(rate_why))
    agent = pl.col("agent")
    seg = act.group_by(*skey, "t1", maintain_order=True).agg(
        # drugs running together in the segment, counted as crs_features counts them per day (session 33)
        agent.n_unique().cast(pl.Int64).alias("n_all"),
        (agent.filter(nv & (agent != UNSPECIFIED)).n_unique()
         + ((agent == UNSPECIFIED).any() & (agent != UNSPECIFIED).not_().all()).cast(pl.Int64)).cast(pl.Int64)
        .alias("n_excl"),
        pl.col("vasopressin").any().alias("has_vp"),
        pl.col("agent").filter(nv).n_unique().alias("n_nv"),
        pl.col("agent").filter(first).first().alias("agent"),
        _seq_sum(pl.when(nv & ~incomplete).then(pl.col("ne_factor") * rate_hi).otherwise(0.0)).alias("ne"),
        _seq_sum(pl.when(nv & ~incomplete).then(pl.col("ne_factor") * rate_lo).otherwise(0.0)).alias("ne_lo"),
        (~incomplete.any()).alias("complete"),
        ne_why.drop_nulls().alias("ne_reasons"),
        _seq_sum(pl.when(first & pl.col("rate").is_not_null()).then(rate_hi).otherwise(0.0)).alias("total"),
        _seq_sum(pl.when(first & pl.col("rate").is_not_null()).then(rate_lo).otherwise(0.0)).alias("total_lo"),
        pl.col("ref").filter(dup).drop_nulls().alias("dup_refs"),
        (pl.col("rate").filter(first).null_count() == 0).alias("all_known"),
        rate_why.filter(first & pl.col("rate").is_null()).alias("dose_reasons"),
    )
    situation = (pl.when(pl.col("has_vp")).then(pl.lit("with_vasopressin"))
                 .when(pl.col("n_nv") == 1).then(pl.lit("monotherapy")).otherwise(pl.lit("combination")))
    seg = seg.with_columns(situation.alias("situation")).with_columns(
        pl.when(pl.col("situation") == "monotherapy").then(pl.col("agent")).otherwise(pl.lit("")).alias("key_agent")
    ).join(_high_dose_rows(hd), on=["situation", "key_agent"], how="left", maintain_order="left")
    dose = pl.col("measure") == "dose"
    x = pl.when(dose).then(pl.col("total")).otherwise(pl.col("ne"))
    x_lo = pl.when(dose).then(pl.col("total_lo")).otherwise(pl.col("ne_lo"))
    known = pl.when(dose).then(pl.col("all_known")).otherwise(pl.col("complete"))
    holds, holds_lo = _compare(x, pl.col("op"), pl.col("value")), _compare(x_lo, pl.col("op"), pl.col("value"))
    straddles = (holds != holds_lo).fill_null(False)  # the threshold between the highest row and the sum
    unknown = pl.lit(None, dtype=pl.Boolean)
    st = (pl.when(pl.col("hd_id").is_null()).then(unknown).when(known & ~straddles).then(holds)
          .when(pl.col("op").is_in([">=", ">"]) & holds_lo).then(pl.lit(True)).otherwise(unknown))
    overlap_why = pl.format(OVERLAP_REASON, pl.col("dup_refs").list.unique(maintain_order=True).list.join(", "))
    no_row = pl.format("high-dose threshold for {} (not in vasopressor table)",
                       pl.coalesce(pl.col("agent").replace_strict(reprs, default=None, return_dtype=pl.String),
                                   pl.lit("'vasopressin'")))
    reasons = (pl.when(pl.col("hd_id").is_null()).then(pl.concat_list(no_row))
               .when(dose).then(pl.col("dose_reasons")).otherwise(pl.col("ne_reasons")))
    reasons = pl.when(straddles).then(pl.concat_list(reasons, overlap_why)).otherwise(reasons)
    return seg.select(*key, "t0", "t1", st.alias("st"), pl.col("hd_id").alias("rule"),
                      pl.when(st.is_null()).then(reasons).otherwise(pl.lit([], dtype=_S)).alias("reasons"),
                      "ne", "complete", "n_all", "n_excl")


def _runs(seg: pl.DataFrame, accept_unknown: bool, min_h: float) -> pl.DataFrame:
    """Maximal runs of adjacent segments that are high dose (or, with ``accept_unknown``, possibly
    so) lasting >= ``min_h`` hours: x0, x1, the rule and the reasons of their unknown segments."""
    key = [SID, "scen"]
    ok = pl.col("st").fill_null(accept_unknown)
    prev = pl.col("t1").shift(1).over(key)
    runs = (
        seg.filter(ok)
        .with_columns((prev.is_null() | ~((prev - pl.col("t0")).abs() < 1e-12)).cum_sum().over(key).alias("run"))
        .group_by(*key, "run", maintain_order=True)
        .agg(pl.col("t0").first().alias("x0"), pl.col("t1").last().alias("x1"),
             pl.col("rule").drop_nulls().first().alias("sure_rule"),
             pl.col("rule").filter(pl.col("st").is_null()).drop_nulls().first().alias("maybe_rule"),
             pl.col("reasons").filter(pl.col("st").is_null()).explode().drop_nulls().alias("reasons"))
    )
    return runs.filter(hours(pl.col("x1") - pl.col("x0")) >= min_h - EPS_H)


def _by_day(days: pl.DataFrame, frame: pl.DataFrame, lo: str, hi: str, on: list[str]) -> pl.DataFrame:
    """``days`` x the rows of ``frame`` (same subject) whose [lo, hi] overlaps the day, in frame order."""
    return days.join(frame, on=on).filter((pl.col(lo) < pl.col(D) + 1) & (pl.col(hi) > pl.col(D)))


def _high_dose(days: pl.DataFrame, seg: pl.DataFrame, hd: dict[str, Any]) -> pl.DataFrame:
    """Per day: ``high_dose`` (True only when both time scenarios hold it for >= 3 h, False when
    neither can), ``high_dose_rule``, ``high_dose_reasons`` (what is unknown) and the NE-eq."""
    min_h = float(hd["min_duration_hours"])
    sure = _runs(seg, False, min_h)
    maybe = _runs(seg, True, min_h)
    out = days
    for scen in ("inner", "outer"):
        s = _by_day(days, sure.filter(pl.col("scen") == scen), "x0", "x1", [SID]).sort(SID, D, "x0").group_by(
            SID, D).agg(pl.col("sure_rule").first().alias(f"{scen}_sure_rule"), pl.lit(True).alias(f"{scen}_sure"))
        m = _by_day(days, maybe.filter(pl.col("scen") == scen), "x0", "x1", [SID]).sort(SID, D, "x0").group_by(
            SID, D).agg(pl.col("maybe_rule").drop_nulls().first().alias(f"{scen}_maybe_rule"),
                        pl.col("reasons").explode().drop_nulls().alias(f"{scen}_reasons"),
                        pl.lit(True).alias(f"{scen}_maybe"))
        out = out.join(s, on=[SID, D], how="left").join(m, on=[SID, D], how="left")
    code = {}
    rule = {}
    for scen in ("inner", "outer"):
        sure_, maybe_ = pl.col(f"{scen}_sure").fill_null(False), pl.col(f"{scen}_maybe").fill_null(False)
        code[scen] = pl.when(sure_).then(2).when(maybe_).then(1).otherwise(0)
        rule[scen] = pl.when(sure_).then(pl.col(f"{scen}_sure_rule")).when(maybe_).then(pl.col(f"{scen}_maybe_rule"))
    both_true = (code["inner"] == 2) & (code["outer"] == 2)
    both_false = (code["inner"] == 0) & (code["outer"] == 0)
    empty = pl.lit([], dtype=_S)
    collected = pl.concat_list(
        pl.when(code["inner"] == 1).then(pl.col("inner_reasons")).otherwise(empty),
        pl.when(code["outer"] == 1).then(pl.col("outer_reasons")).otherwise(empty))
    reasons = (pl.when(both_true | both_false).then(empty)
               .when((collected.list.len() == 0) & (code["inner"] != code["outer"])).then(pl.lit([DURATION_REASON]))
               .otherwise(collected.list.unique().list.sort()))
    out = out.select(
        SID, D,
        pl.when(both_true).then(True).when(both_false).then(False).otherwise(None).alias("high_dose"),
        pl.when(~both_false).then(pl.coalesce(rule["inner"], rule["outer"])).alias("high_dose_rule"),
        reasons.alias("high_dose_reasons"))
    ne = (_by_day(days, seg.filter(pl.col("scen") == "outer"), "t0", "t1", [SID])
          .group_by(SID, D).agg(pl.col("ne").max().round(9).alias("ne_equiv_max_ug_min"),
                                pl.col("complete").all().alias("ne_equiv_complete")))
    return out.join(ne, on=[SID, D], how="left")


# --------------------------------------------------------------------------------------------------
# hours per day and per episode


def _union(intervals: pl.DataFrame, gap: float = 0.0) -> pl.DataFrame:
    """Per subject, the union of [a, b] intervals (pieces closer than ``gap`` days joined)."""
    prev = pl.col("b").cum_max().shift(1).over(SID)
    return (intervals.sort(SID, "a", "b")
            .with_columns((prev.is_null() | (pl.col("a") > prev + gap)).cum_sum().over(SID).alias("piece"))
            .group_by(SID, "piece", maintain_order=True).agg(pl.col("a").min(), pl.col("b").max()))


def _hours_in_day(days: pl.DataFrame, union: pl.DataFrame, name: str) -> pl.DataFrame:
    overlap = (pl.min_horizontal("b", pl.col(D) + 1) - pl.max_horizontal("a", pl.col(D))).clip(lower_bound=0.0)
    return (days.join(union, on=SID).sort(SID, D, "a")
            .group_by(SID, D).agg(hours(_seq_sum(overlap)).alias(name)))


def _episode_hours(days: pl.DataFrame, episodes: pl.DataFrame, union: pl.DataFrame, name: str) -> pl.DataFrame:
    """Per day, the longest cumulative support (``union`` pieces) within an episode touching the
    day, counted up to the end of the day."""
    pieces = union.sort(SID, "a").join_asof(episodes.sort(SID, "A").select(SID, "ep", "A"), left_on="a",
                                            right_on="A", by=SID, strategy="backward", check_sortedness=False)
    # an episode overlapping the day [D, D+1): one that ended by midnight starting the day (or starts at
    # the next midnight) gives no support that day (audit s29: a vasopressin "days 0-1" ends by day 2.0)
    touching = days.join(episodes, on=SID).filter((pl.col("A") < pl.col(D) + 1) & (pl.col("B") > pl.col(D)))
    upto = pl.min_horizontal("b", pl.col(D) + 1) - pl.col("a")
    per_episode = (touching.join(pieces, on=[SID, "ep"], how="left").sort(SID, D, "ep", "a")
                   .group_by(SID, D, "ep").agg(_seq_sum(pl.when(pl.col("a") < pl.col(D) + 1).then(upto)
                                                        .otherwise(0.0)).fill_null(0.0).alias("h")))
    return per_episode.group_by(SID, D).agg(hours(pl.col("h").max()).alias(name))


def vaso_course(rows: pl.DataFrame, hd: dict[str, Any] | None = None, episode_gap_hours: float = 0.0,
                same_agent_overlap: str = "range") -> pl.DataFrame:
    """Per subject and calendar day covered by an infusion of :func:`vaso_rows`: ``vaso_hours_day_min
    / _max``, ``vaso_episode_hours_min / _max``, ``duration_unknown``, ``high_dose``,
    ``high_dose_rule``, ``high_dose_reasons``, ``ne_equiv_max_ug_min``, ``ne_equiv_complete``,
    ``n_vasopressors[_excl_vasopressin]_concurrent_min / _max`` (the most drugs running at the same
    time that day in the inner / outer time scenario; null where none runs in that scenario).

    An episode is uninterrupted support by any agent (gaps up to ``episode_gap_hours`` joined); its
    hours count up to the end of the day (MSKCC "vasopressors >= 24 h"). ``same_agent_overlap``: rows
    of one agent running together (:data:`SAME_AGENT_OVERLAP`; review 45)."""
    if same_agent_overlap not in SAME_AGENT_OVERLAP:
        raise ValueError(f"same_agent_overlap must be one of {SAME_AGENT_OVERLAP}, not {same_agent_overlap!r}")
    hd = hd or load_criteria(VASOPRESSOR_TABLE)["high_dose"]
    days = rows.select(SID, pl.col("days").alias(D)).explode(D).drop_nulls(D).unique().sort(SID, D)
    cols = ["idx", SID, "agent", "vasopressin", "ne_factor", "rate", "rate_reason", "ref"]
    inner = rows.filter(pl.col("e_lo") > pl.col("s_hi")).select(
        *cols, pl.lit("inner").alias("scen"), pl.col("s_hi").alias("a"), pl.col("e_lo").alias("b"))
    outer = rows.filter(pl.col("e_hi") > pl.col("s_lo")).select(
        *cols, pl.lit("outer").alias("scen"), pl.col("s_lo").alias("a"), pl.col("e_hi").alias("b"))
    seg = _segments(pl.concat([inner, outer]), hd, same_agent_overlap)
    out = _high_dose(days, seg, hd)
    # session 33: the most drugs running at the same time on the day, in the shortest (inner: surely
    # together) and longest (outer: possibly together) time scenario
    for scen, tail in (("inner", "min"), ("outer", "max")):
        conc = (_by_day(days, seg.filter(pl.col("scen") == scen), "t0", "t1", [SID]).group_by(SID, D)
                .agg(pl.col("n_all").max().alias(f"n_vasopressors_concurrent_{tail}"),
                     pl.col("n_excl").max().alias(f"n_vasopressors_excl_vasopressin_concurrent_{tail}")))
        out = out.join(conc, on=[SID, D], how="left")
    inner_u, outer_u = _union(inner), _union(outer)
    episodes = _union(outer_u, episode_gap_hours / 24.0).select(
        SID, pl.col("piece").alias("ep"), pl.col("a").alias("A"), pl.col("b").alias("B"))
    zero = 0.0
    for frame in (_hours_in_day(days, inner_u, "vaso_hours_day_min"), _hours_in_day(days, outer_u, "vaso_hours_day_max"),
                  _episode_hours(days, episodes, inner_u, "vaso_episode_hours_min"),
                  _episode_hours(days, episodes, outer_u, "vaso_episode_hours_max")):
        out = out.join(frame, on=[SID, D], how="left")
    out = out.with_columns(pl.col(c).fill_null(zero) for c in (
        "vaso_hours_day_min", "vaso_hours_day_max", "vaso_episode_hours_min", "vaso_episode_hours_max"))
    return out.with_columns(
        ((pl.col("vaso_episode_hours_max") - pl.col("vaso_episode_hours_min")) > EPS_H).alias("duration_unknown"))


def _number(e: pl.Expr) -> pl.Expr:
    return e.round(6).cast(pl.String).str.replace(r"\.0$", "")


def high_dose_detail() -> pl.Expr:
    """What a high-dose rule's reason adds (session 33, review33 C1): the table row that decided it
    (its text, id and status: vasopressor_equivalents.yaml is unverified) and the day's dose: the
    drug's own dose when it is the day's only drug other than vasopressin (the row's measure is its
    dose), else the norepinephrine equivalent (VASST formula); "up to": the day's highest."""
    table = load_criteria(VASOPRESSOR_TABLE)
    hd, agents = table["high_dose"], vocabulary().agents
    rows = {r["id"]: r for r in hd["rows"]}
    pick = lambda f: pl.col("high_dose_rule").replace_strict({k: f(r) for k, r in rows.items()}, default=None,
                                                            return_dtype=pl.String)
    status = lambda r: r.get("status") or table.get("status") or "unverified"
    head = pl.format(f"{{}} for >= {hd['min_duration_hours']:g} h (table row {{}}, vasopressor_equivalents.yaml, "
                     "status {})", pick(lambda r: r["text"]), pl.col("high_dose_rule"), pick(status))
    agent = pick(lambda r: r.get("agent") if r["measure"] == "dose" else None)
    factor = agent.replace_strict({a: r.get("ne_factor") for a, r in agents.items()}, default=None,
                                  return_dtype=pl.Float64)
    vasopressin = [a for a, r in agents.items() if r.get("vasopressin")]
    drugs = pl.col("vasopressor_agents").list.set_difference(pl.lit(vasopressin, dtype=pl.List(pl.String)))
    alone = (drugs.list.len() == 1) & (drugs.list.first() == agent) & (factor > 0)
    ne = pl.col("ne_equiv_max_ug_min")
    dose = (pl.when(~pl.col("ne_equiv_complete").fill_null(False) | ne.is_null()).then(pl.lit("dose not known for every drug"))
            .when(alone.fill_null(False)).then(pl.format("{} up to {} {} that day", agent, _number(ne / factor),
                                                         pick(lambda r: r["unit"])))
            .otherwise(pl.format("norepinephrine equivalent up to {} ug/min that day", _number(ne))))
    return (pl.when(pl.col("high_dose").fill_null(False) & pl.col("high_dose_rule").is_not_null())
            .then(pl.format("{}; {}", head, dose)))
