"""Neutrophil and platelet recovery days (ASTCT / CIBMTR definitions; ``criteria/count_recovery.yaml``).

A count recovers on the first of ``consecutive`` successive days (or measurements) at or above its
level after the nadir; a day without a value is unknown, so a recovery the data do not settle is a
range, never a guess. A censored count ("<0.1") is a measured day, at or above a level only where
its bound settles it. Moved out of :mod:`cartlab.grading.hematotox` (session 32), which still
exports :func:`derive_count_recovery` and :class:`RecoveryOptions`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import polars as pl
from pydantic import Field

from cartlab.criteria import CriteriaOptions
from cartlab.grading.absent_interventions import interventions_unknown
from cartlab.grading.common import load_criteria
from cartlab.grading.hemato_common import CMP as _CMP
from cartlab.grading.hemato_common import EndDoses, dose_ends, transfusion_days
from cartlab.grading.hemato_common import bounds as _bounds
from cartlab.grading.hemato_common import censored_days as _censored_days
from cartlab.grading.hemato_common import daily_values as _daily
from cartlab.grading.hemato_common import fmt as _fmt
from cartlab.grading.hemato_common import fmt_expr as _fmt_expr
from cartlab.grading.hemato_common import interval_cmp as _icmp
from cartlab.grading.hemato_common import param_obs as _param_obs
from cartlab.grading.hemato_common import point as _point
from cartlab.grading.hemato_common import subject_order as _subject_order
from cartlab.grading.hemato_common import to_canonical as _to_canonical
from cartlab.grading.hemato_common import unique_refs_expr as _refs
from cartlab.model import Study
from cartlab.provenance import EVIDENCE, evidence_ref

__all__ = ["RecoveryOptions", "derive_count_recovery"]

_NO_REFS = pl.lit([], dtype=EVIDENCE)
_STRINGS = pl.List(pl.String)
_SID = "subject_id"


class RecoveryOptions(CriteriaOptions):
    """Options of the neutrophil/platelet recovery days (ASTCT / CIBMTR); ``None`` means the criteria
    table's default (``criteria/count_recovery.yaml``, whose comments document each option: the
    table below is generated from them)."""

    consecutive: Annotated[int, Field(ge=1)] | None = None
    mode: Literal["days", "measurements"] | None = None
    start: Literal["nadir", "first_drop", "day0"] | None = None
    nadir: Literal["first_episode", "lowest"] | None = None
    platelet_transfusion_free_days: int | None = None
    transfusion_free_during_counting: bool | None = None
    platelet_transfusion_categories: tuple[str, ...] | None = None
    never_below_data_from_day: int | None = None
    never_below_max_gap_days: Annotated[int, Field(ge=0)] | None = None
    transfusion_supported: Literal["transfusion_free_rule", "as_measured"] | None = None
    censor_events: tuple[str, ...] | None = None
    censor_doses: EndDoses | None = None
    event_day_counts: bool | None = None
    absent_interventions: Literal["unknown", "none_given"] | None = None
    criteria: str = "count_recovery"

    def __post_init__(self) -> None:
        from cartlab.io.schema import EVENTS

        bad = [e for e in (self.censor_events or ()) if e not in EVENTS or e == "death"]
        if bad:  # a misspelt event would silently end nothing
            raise ValueError(f"censor_events: {', '.join(map(repr, bad))}: choose events of events.csv from "
                             f"{', '.join(e for e in EVENTS if e != 'death')} (death always ends recovery)")


def _gcsf_near(study: Study, rec: pl.DataFrame, k: int, before: int = 7) -> pl.DataFrame:
    """Per subject whose neutrophil recovery run (``day`` to ``day + k - 1``) or the ``before`` days before
    it overlap a G-CSF intervention (interventions.csv category gcsf): ``_gcsf`` ("G-CSF on days 8-12
    (interventions.csv:1)") and ``_gcsf_refs``. The ANC is counted as measured (no verified source
    excludes G-CSF-supported counts; row recovery.gcsf_not_considered, review s40 B3), as ICAHT grades it
    (icaht.gcsf_not_considered): the reason names the G-CSF days."""
    from cartlab.grading.common import last_covered_day

    schema = {_SID: pl.String, "_gcsf": pl.String, "_gcsf_refs": EVIDENCE}
    iv = study.interventions
    if iv.is_empty() or "category" not in iv.columns or rec.is_empty():
        return pl.DataFrame(schema=schema)
    if "end_day" not in iv.columns:
        iv = iv.with_columns(pl.lit(None, dtype=pl.Float64).alias("end_day"))
    g = iv.filter((pl.col("category") == "gcsf") & pl.col("start_day").is_not_null())
    g = g.with_columns(evidence_ref().alias("_ref"), last_covered_day(g).alias("_end"))
    hit = (g.join(rec.select(_SID, "day"), on=_SID, how="inner")
           .filter((pl.col("start_day") <= pl.col("day") + k - 1) & (pl.col("_end") >= pl.col("day") - before))
           .sort(_SID, "start_day"))
    days = (pl.when(pl.col("start_day").floor() == pl.col("_end")).then(pl.format("day {}", pl.col("start_day").cast(pl.Int64)))
            .otherwise(pl.format("days {}-{}", pl.col("start_day").cast(pl.Int64), pl.col("_end").cast(pl.Int64))))
    return hit.group_by(_SID, maintain_order=True).agg(
        pl.format("G-CSF on {} ({})", days, pl.col("_ref").fill_null("no row")).str.join("; ").alias("_gcsf"),
        pl.col("_ref").drop_nulls().alias("_gcsf_refs")).cast(schema)


def _days_list(col: str) -> pl.Expr:
    return pl.col(col).cast(_STRINGS).list.join(", ")


def _candidates(pts: pl.DataFrame, tx: pl.DataFrame | None, opts: dict, mode: str) -> pl.DataFrame:
    """Per subject and candidate first day ``d`` (day 0 to the subject's last value ``L``) of a run of
    ``consecutive`` days (mode "days") or values (mode "measurements"):

    * ``definite``: every day/value of the run measured at the level (and no platelet transfusion
      from ``free`` days before it, nor during it unless the option says otherwise);
    * ``possible``: no value of the run below the level and no such transfusion, the run ending by
      ``L``: days not measured (mode "days") could make it a recovery (missing is not negative);
    * ``open``: as possible, but the run ends after ``L`` (the data end before it is complete);

    with ``seq`` (the measured days of the run), ``seq_refs`` and ``gaps`` (its days without a value, up to ``L``)."""
    k = int(opts["consecutive"])
    if mode == "days":  # a calendar grid: shift(-j) is day d + j
        grid = (pts.group_by(_SID).agg(pl.col("d").max().alias("L"))
                .with_columns(pl.int_ranges(0, pl.col("L") + k).alias("d")).explode("d")
                .join(pts.select(_SID, "d", "m", "refs"), on=[_SID, "d"], how="left").sort(_SID, "d"))
        day = [pl.col("d") + j for j in range(k)]
    else:
        grid = pts.select(_SID, "d", "m", "refs", pl.col("d").max().over(_SID).alias("L"))
        day = [pl.col("d").shift(-j).over(_SID) for j in range(k)]
    grid = grid.with_columns(*[pl.col("m").shift(-j).over(_SID).alias(f"m{j}") for j in range(k)],
                             *[pl.col("refs").shift(-j).over(_SID).alias(f"r{j}") for j in range(k)],
                             *[e.alias(f"d{j}") for j, e in enumerate(day)]).filter(pl.col("d") <= pl.col("L"))
    m = [pl.col(f"m{j}") for j in range(k)]
    fails = pl.any_horizontal([(~x).fill_null(False) for x in m])
    last = pl.col(f"d{k - 1}") if mode == "days" else pl.max_horizontal([pl.col(f"d{j}") for j in range(k)])
    inside = (pl.col(f"d{k - 1}") <= pl.col("L")).fill_null(False)
    c = grid.select(
        _SID, "d", "L", pl.all_horizontal([x.fill_null(False) for x in m]).alias("definite"),
        (~fails & inside).alias("possible"), (~fails & ~inside).alias("open"), last.alias("hi"),
        pl.concat_list([pl.when(m[j].is_not_null()).then(pl.col(f"d{j}")) for j in range(k)]).list.drop_nulls().alias("seq"),
        pl.concat_list([pl.col(f"r{j}").fill_null(_NO_REFS) for j in range(k)]).alias("seq_refs"),
        pl.concat_list([pl.when(m[j].is_null() & (pl.col(f"d{j}") <= pl.col("L"))).then(pl.col(f"d{j}"))
                        for j in range(k)]).list.drop_nulls().alias("gaps"))
    if tx is not None:  # no platelet transfusion from `free` days before the run (and during it)
        hi = pl.col("hi") if opts["transfusion_free_during_counting"] else pl.col("d") - 1
        blocked = (c.select(_SID, "d", (pl.col("d") - int(opts["platelet_transfusion_free_days"])).alias("lo"),
                            hi.alias("hi")).join(tx, on=_SID, how="inner")
                   .filter(pl.col("d_tx").is_between(pl.col("lo"), pl.col("hi"))).select(_SID, "d").unique()
                   .with_columns(pl.lit(True).alias("_tx")))
        c = c.join(blocked, on=[_SID, "d"], how="left", maintain_order="left").with_columns(
            *[(pl.col(x) & pl.col("_tx").is_null()).alias(x) for x in ("definite", "possible", "open")],
            pl.col("_tx").is_not_null().alias("txb")).drop("_tx")
    else:
        c = c.with_columns(pl.lit(False).alias("txb"))
    return c


def _transfusion_supported(c: pl.DataFrame, tx: pl.DataFrame | None, opts: dict) -> pl.DataFrame:
    """Per subject whose first candidate run (from day 0, or the first value in mode "measurements")
    is blocked by a platelet transfusion: ``sup_days`` (the transfusion days from ``free`` days before
    it to the last value) and ``sup_refs``. A count at the level only with transfusions is not "never below" (ASTCT: "in the
    absence of platelet transfusion for 7 consecutive days"; session 37, review s37 A1)."""
    schema = {_SID: pl.String, "sup": pl.Boolean, "sup_days": pl.String, "sup_refs": EVIDENCE}
    if tx is None or opts["transfusion_supported"] == "as_measured":
        return pl.DataFrame(schema=schema)
    first = c.sort(_SID, "d").group_by(_SID).agg(pl.col("d", "L", "txb").first()).filter(pl.col("txb"))
    # every platelet transfusion from `free` days before the first run to the last value: they decide
    # which later run is the first transfusion-free one
    return (first.join(tx, on=_SID, how="inner")
            .filter(pl.col("d_tx").is_between(pl.col("d") - int(opts["platelet_transfusion_free_days"]), pl.col("L")))
            .group_by(_SID).agg(pl.col("d_tx").unique().sort().cast(pl.String).str.join(", ").alias("sup_days"),
                                pl.col("tx_ref").drop_nulls().unique().sort().cast(pl.String).alias("sup_refs"))
            .select(_SID, pl.lit(True).alias("sup"), "sup_days", pl.col("sup_refs").cast(EVIDENCE)))


def _first(c: pl.DataFrame, st: pl.DataFrame, flag: str, name: str, cols: tuple[str, ...] = ()) -> pl.DataFrame:
    """Per subject: the first candidate day after ``after`` with ``flag`` (``<name>``) and its ``cols`` (``<name>_<col>``)."""
    return (c.join(st.select(_SID, "after"), on=_SID, how="inner").filter(pl.col(flag) & (pl.col("d") > pl.col("after")))
            .group_by(_SID).agg(pl.col("d", *cols).sort_by("d").first())
            .rename({"d": name, **{x: f"{name}_{x}" for x in cols}}))


def _recovery_start(pts: pl.DataFrame, c: pl.DataFrame, tx: pl.DataFrame | None, meets: Any, thr: float,
                    label: str, opts: dict) -> pl.DataFrame:
    """Per subject: counting starts after day ``after``; ``na`` (not applicable) with ``na_reason``;
    ``start_txt`` and ``start_refs`` (the value that fixes the start); ``sup``: never below the level,
    but only with platelet transfusions, so counted from day 0 under the transfusion-free rule."""
    thr_txt, start = _fmt(thr), opts["start"]
    free = int(opts["platelet_transfusion_free_days"])
    sup_txt = pl.format(
        f"from day 0 ({label} never below {thr_txt} on the days with a value, but with platelet transfusions "
        f"(day(s) {{}}; the first within {free} days before or during the first run from day 0): counted "
        f"without platelet transfusion for {free} days, option transfusion_supported)", pl.col("sup_days"))
    sups = _transfusion_supported(c, tx, opts)
    low = pts.group_by(_SID).agg(pl.col("value", "d", "refs", "ctxt", "m").sort_by("value", "d").first())
    # "never below from day 0" needs the values to start by never_below_data_from_day: days before the
    # first value are unknown (session 34, review s34 D8); later ones leave the recovery open (`unk`)
    first = pts.group_by(_SID).agg(pl.col("d").min().alias("_first"))
    # the longest run of days without a value between two values (review s40 B1): read as not below,
    # named in the reason, and longer than never_below_max_gap_days (default 7, as ICAHT's and
    # T-ICAHT's range_interpolation_gap_days; session 48, review 48 F1) it leaves "never below" open
    gaps = (pts.select(_SID, (pl.col("d").shift(1).over(_SID) + 1).alias("_ga"), (pl.col("d") - 1).alias("_gb"))
            .filter(pl.col("_gb") >= pl.col("_ga")).sort(pl.col("_gb") - pl.col("_ga"), "_ga", descending=[True, False])
            .group_by(_SID, maintain_order=True).first())
    first = first.join(gaps, on=_SID, how="left")
    max_gap = opts.get("never_below_max_gap_days")
    gap_n = pl.col("_gb") - pl.col("_ga") + 1
    long_gap = (gap_n > int(max_gap)).fill_null(False) if max_gap is not None else pl.lit(False)
    gap_days = pl.when(pl.col("_ga") == pl.col("_gb")).then(pl.format("day {}", pl.col("_ga"))).otherwise(
        pl.format("days {}-{}", pl.col("_ga"), pl.col("_gb")))
    gap_note = pl.when(pl.col("_ga").is_not_null()).then(pl.format(
        f"; the longest gap between values: {{}} ({{}} days with no value, read as not below: option "
        f"never_below_max_gap_days={max_gap if max_gap is not None else 'null'})", gap_days, gap_n)).otherwise(pl.lit(""))
    gap_unknown = pl.format(
        f"not evaluable: {label} never below {thr_txt} on the days with a value, but {{}} have no {label} value "
        f"({{}} days, more than never_below_max_gap_days={max_gap}): a value below {thr_txt} and a recovery in them "
        "cannot be ruled out", gap_days, gap_n)
    late_start = (pl.col("_first") > int(opts["never_below_data_from_day"])) | long_gap
    drop = pts.filter(~pl.col("m")).group_by(_SID).agg(pl.col("value", "d", "refs", "ctxt", "m").sort_by("d").first())
    subj = pts.select(_SID).unique()
    if start == "nadir":
        never = pl.format(f"not applicable: {label} never below {thr_txt} from day 0 (nadir {{}} on day {{}}{{}}).",
                          pl.coalesce(pl.col("ctxt"), _fmt_expr(pl.col("value"))), pl.col("d").cast(pl.String),
                          gap_note)
        # a censored lowest result ("<0.1") is below the level only when its bound says so (m)
        unknown = pl.format(
            f"not evaluable: {label} never below {thr_txt} on the days with a value (from day {{}}; lowest {{}} on "
            f"day {{}}), but day(s) 0-{{}} have no {label} value: a nadir below {thr_txt} and a recovery before day {{}} "
            "cannot be ruled out", pl.col("_first"), pl.coalesce(pl.col("ctxt"), _fmt_expr(pl.col("value"))),
            pl.col("d").cast(pl.String), pl.col("_first") - 1, pl.col("_first"))
        never_low = pl.col("m").fill_null(False)
        sup = never_low & ~late_start & pl.col("sup").fill_null(False)
        na = low.join(first, on=_SID, how="left").join(sups, on=_SID, how="left").select(
            _SID, (never_low & ~late_start & ~sup).alias("na"), (never_low & late_start).alias("unk"),
            sup.alias("sup"), "sup_days", "sup_refs",
            pl.when(pl.col("_first") > int(opts["never_below_data_from_day"])).then(unknown)
            .when(late_start).then(gap_unknown).otherwise(never).alias("na_reason"), pl.col("refs").alias("na_refs"))
        if opts["nadir"] == "lowest":  # the lowest value from day 0 on (the earliest of equal ones)
            st = low.with_columns(pl.lit(" (the lowest value from day 0: option nadir=lowest)").alias("how"))
        else:  # the lowest value of the first episode below the level: from the first value below it
            # to the first run that recovers (the initial recovery), the earliest of equal ones
            end = _first(c, drop.select(_SID, pl.col("d").alias("after")), "definite", "_end")
            st = (pts.join(drop.select(_SID, pl.col("d").alias("_f")), on=_SID, how="inner")
                  .join(end, on=_SID, how="left")
                  .filter((pl.col("d") >= pl.col("_f")) & (pl.col("_end").is_null() | (pl.col("d") < pl.col("_end"))))
                  .group_by(_SID).agg(pl.col("value", "d", "refs", "ctxt", "m").sort_by("value", "d").first())
                  .with_columns(pl.lit("").alias("how")))
        sup = pl.col("sup")
        st = na.join(st, on=_SID, how="left").select(
            _SID, pl.when(sup).then(pl.lit(-1, dtype=pl.Int64)).otherwise(pl.col("d")).alias("after"), "na", "unk",
            "na_reason", "sup",
            pl.when(sup).then(sup_txt).otherwise(pl.format(
                "after the nadir {} on day {}{}", pl.coalesce(pl.col("ctxt"), _fmt_expr(pl.col("value"))),
                pl.col("d").cast(pl.String), pl.col("how"))).alias("start_txt"),
            pl.when(sup).then(_refs(pl.col("sup_refs"), pl.col("na_refs")))
            .when(pl.col("na") | pl.col("unk")).then(pl.col("na_refs")).otherwise(pl.col("refs")).alias("start_refs"))
        return st
    if start == "first_drop":
        sup = pl.col("d").is_null() & ~late_start & pl.col("sup").fill_null(False)
        return subj.join(drop, on=_SID, how="left").join(first, on=_SID, how="left").join(
            sups, on=_SID, how="left").select(
            _SID, pl.when(sup).then(pl.lit(-1, dtype=pl.Int64)).otherwise(pl.col("d")).alias("after"),
            (pl.col("d").is_null() & ~late_start & ~sup).alias("na"),
            (pl.col("d").is_null() & late_start).alias("unk"), sup.alias("sup"),
            pl.when(pl.col("_first") > int(opts["never_below_data_from_day"])).then(pl.format(
                f"not evaluable: {label} never below {thr_txt} on the days with a value (from day {{}}), but day(s) "
                f"0-{{}} have no {label} value: a value below {thr_txt} and a recovery before day {{}} cannot be ruled out",
                pl.col("_first"), pl.col("_first") - 1, pl.col("_first")))
            .when(late_start).then(gap_unknown)
            .otherwise(pl.concat_str(pl.lit(f"not applicable: {label} never below {thr_txt} from day 0"),
                                     pl.when(pl.col("_ga").is_not_null()).then(pl.concat_str(
                                         pl.lit(" ("), gap_note.str.strip_prefix("; "), pl.lit(")")))
                                     .otherwise(pl.lit("")), pl.lit("."))).alias("na_reason"),
            pl.when(sup).then(sup_txt).otherwise(
                pl.format(f"after the first value below {thr_txt} on day {{}}", pl.col("d"))).alias("start_txt"),
            pl.when(sup).then(pl.col("sup_refs")).otherwise(pl.col("refs")).fill_null(_NO_REFS).alias("start_refs"))
    if start == "day0":
        return subj.select(
            _SID, pl.lit(-1, dtype=pl.Int64).alias("after"), pl.lit(False).alias("na"), pl.lit(False).alias("unk"),
            pl.lit(False).alias("sup"),
            pl.lit(None, dtype=pl.String).alias("na_reason"), pl.lit("from day 0").alias("start_txt"),
            _NO_REFS.alias("start_refs"))
    raise ValueError(f"unknown recovery start {start!r} (nadir, first_drop or day0)")


def _recovery(pts: pl.DataFrame, tx: pl.DataFrame | None, rule: dict, opts: dict, thr: float, label: str,
              mode: str) -> pl.DataFrame:
    """Per subject with a value from day 0 on: ``status``, recovery ``day`` (when decided), ``day_min``
    / ``day_max`` (the possible range), ``L`` (last value's day), ``reason`` (without the censoring and
    the other reading) and ``evidence``.

    ``pts``: daily values (``d`` >= 0, ``value``, ``refs``) in day order within each subject; ``tx``: the
    (``subject_id``, ``d_tx``) platelet transfusion days, or None (neutrophils)."""
    meets, op = _CMP[rule["op"]], rule["op"]
    k, thr_txt = int(opts["consecutive"]), _fmt(thr)
    # a censored result ("<0.1") meets the level where its bound settles it, else it is unknown (null)
    pts = pts.with_columns(pl.when(pl.col("censor").is_null()).then(meets(pl.col("value"), thr))
                           .otherwise(_icmp(op, _bounds(pl.lit(None, dtype=pl.Float64), pl.col("censor"),
                                                        pl.col("censor_limit")), _point(thr))).alias("m"))
    c = _candidates(pts, tx, opts, mode)
    st = _recovery_start(pts, c, tx, meets, thr, label, opts)
    live = st.filter(~pl.col("na") & ~pl.col("unk"))
    live_e = live
    if opts["start"] == "nadir" and opts["nadir"] == "first_episode":
        # the first episode ends at its first run that recovers, and a run the unmeasured days could
        # complete may end it before the measured nadir (ANC 0.4 on day 1, days 2 and 4 unmeasured,
        # 0.6 on day 3, 0.1 on day 5): the earliest possible run counts from the first value below
        first_low = pts.filter(~pl.col("m")).group_by(_SID).agg(pl.col("d").min().alias("_f"))
        live_e = live.join(first_low, on=_SID, how="left").with_columns(
            pl.coalesce("_f", "after").alias("after")).drop("_f")
    # the first run that recovers (D), the earliest one the data leave possible (E), the first one
    # the data end in (O): D = E is the recovery day; E < D (or no D) leaves it open
    first = (_first(c, live, "definite", "D", ("seq", "seq_refs"))
             .join(_first(c, live_e, "possible", "E", ("seq_refs", "gaps")), on=_SID, how="full", coalesce=True)
             .join(_first(c, live, "open", "O"), on=_SID, how="full", coalesce=True))
    # never below on the days with a value, which start late: the latest recovery day possible is the
    # first complete run from day 0 (a dip before the first value recovers by then at the latest)
    unk = _first(c, st.filter(pl.col("unk")).with_columns(pl.lit(-1, dtype=pl.Int64).alias("after")), "definite",
                 "U", ("seq_refs",))
    out = (pts.group_by(_SID).agg(pl.col("d").max().alias("L")).join(st, on=_SID, how="left")
           .join(first, on=_SID, how="left").join(unk, on=_SID, how="left"))
    if opts["start"] == "nadir" and opts["nadir"] == "first_episode":  # a later episode below the level
        again = (pts.filter(~pl.col("m")).join(out.select(_SID, pl.col("D_seq").list.max().alias("_e")), on=_SID)
                 .filter(pl.col("d") > pl.col("_e")).group_by(_SID).agg(pl.col("d").min().alias("again")))
        out = out.join(again, on=_SID, how="left")
    else:
        out = out.with_columns(pl.lit(None, dtype=pl.Int64).alias("again"))
    D, E = pl.col("D"), pl.col("E")
    status = (pl.when(pl.col("na")).then(pl.lit("not_applicable")).when(pl.col("unk")).then(pl.lit("not_evaluable"))
              .when(D.is_not_null() & (E == D))
              .then(pl.lit("recovered")).when(E.is_not_null()).then(pl.lit("not_evaluable"))
              .otherwise(pl.lit("not_reached")))
    out = out.with_columns(status.alias("status"))
    extra = (pl.format(", no platelet transfusion from day {}", D - int(opts["platelet_transfusion_free_days"]))
             if tx is not None else pl.lit(""))
    run = pl.concat_str(pl.lit(f"{label} {op} {thr_txt} on days "), _days_list("D_seq"), pl.lit(" "),
                        pl.col("start_txt"), extra)
    gaps = pl.concat_str(pl.lit(f"no {label} value on day(s) "), _days_list("E_gaps"),
                         pl.format(f", so {k} consecutive days from day {{}} cannot be ruled out", E),
                         pl.when(E < pl.col("after")).then(pl.lit(
                             " (before the nadir: had they recovered, the first episode would have ended there)"))
                         .otherwise(pl.lit("")))
    again = pl.when(pl.col("again").is_not_null()).then(pl.format(
        f"; {label} below {thr_txt} again from day {{}} (the initial recovery counts; option nadir=lowest counts "
        "after the lowest value)", pl.col("again"))).otherwise(pl.lit(""))
    s = pl.col("status")
    reason = (pl.when(s == "not_applicable").then(pl.col("na_reason"))
              .when(pl.col("unk")).then(pl.concat_str(pl.col("na_reason"), pl.when(pl.col("U").is_not_null()).then(
                  pl.format(" (the recovery day is between day 1 and day {}, the first {} consecutive {} at the level)",
                            pl.col("U"), pl.lit(k), pl.lit(mode))).otherwise(pl.lit(""))))
              .when(s == "recovered").then(pl.concat_str(run, pl.lit(" -> recovery day "), D.cast(pl.String), again,
                                                          pl.lit(".")))
              .when(D.is_not_null()).then(pl.concat_str(
                  pl.format("not evaluable: the recovery day is between day {} and day {}: ", E, D), run,
                  pl.lit(", but "), gaps))
              .when(s == "not_evaluable").then(pl.concat_str(
                  pl.lit(f"not evaluable: no {k} consecutive days measured with {label} {op} {thr_txt} "),
                  pl.col("start_txt"), pl.format(" up to day {}, and ", pl.col("L")), gaps))
              .otherwise(pl.concat_str(
                  pl.lit(f"not reached: no {k} consecutive {mode} with {label} {op} {thr_txt} "), pl.col("start_txt"),
                  pl.format(" up to day {}", pl.col("L")),
                  pl.when(pl.col("O").is_not_null()).then(pl.format(
                      f" (the values from day {{}} meet the level, but the data end before {k} consecutive {mode})",
                      pl.col("O"))).otherwise(pl.lit("")))))
    return out.select(
        _SID, "status", "L",
        pl.when(s == "recovered").then(D.cast(pl.Float64)).alias("day"),
        pl.when(pl.col("unk")).then(pl.lit(1.0))
        .when(s.is_in(["recovered", "not_evaluable"])).then(E.cast(pl.Float64)).alias("day_min"),
        pl.when(pl.col("unk")).then(pl.col("U").cast(pl.Float64))
        .when(s.is_in(["recovered", "not_evaluable"])).then(D.cast(pl.Float64)).alias("day_max"),
        pl.col("unk").fill_null(False).alias("unk"), pl.col("sup").fill_null(False).alias("sup"),
        reason.alias("reason"),
        pl.when(pl.col("unk")).then(_refs(pl.col("start_refs"), pl.col("U_seq_refs").fill_null(_NO_REFS)))
        .when(s == "recovered").then(_refs(pl.col("start_refs"), pl.col("D_seq_refs")))
        .when(s == "not_evaluable").then(_refs(pl.col("start_refs"), pl.col("E_seq_refs"),
                                               pl.col("D_seq_refs").fill_null(_NO_REFS)))
        .otherwise(pl.col("start_refs")).alias("evidence"),
    )


def _follow_up_end(study: Study) -> pl.DataFrame:
    """Per subject: ``fu_day`` (the calendar day of ``last_followup_day``; without it, of the latest
    day of the subject's rows in any table - the spec's "Follow-up for time-to-event endpoints") and ``fu_how``."""
    given = study.subjects.filter(pl.col("last_followup_day").is_not_null()).group_by(_SID).agg(
        pl.col("last_followup_day").last().floor().alias("fu"))
    rows = pl.concat([study.table(t).select(_SID, pl.col(col).cast(pl.Float64).alias("day"))
                      for t, col in (("observations", "day"), ("doses", "day"), ("interventions", "start_day"),
                                     ("interventions", "end_day"), ("events", "day"))])
    latest = rows.group_by(_SID).agg(pl.col("day").max().floor().alias("rows"))
    return _subject_order(study).join(given, on=_SID, how="left").join(latest, on=_SID, how="left").select(
        _SID, pl.coalesce("fu", "rows").alias("fu_day"),
        pl.when(pl.col("fu").is_not_null()).then(pl.lit("last_followup_day"))
        .otherwise(pl.lit("no last_followup_day: the latest day of the subject's rows")).alias("fu_how"),
        pl.when(pl.col("fu").is_not_null()).then(pl.lit("last_followup_day")).otherwise(pl.lit("latest_row"))
        .alias("fu_code"))


def _first_events(study: Study, events: list[str], name: str) -> pl.DataFrame:
    """Per subject: the first of ``events`` on or after day 0 (an event before the infusion, such as a
    bridging therapy recorded as ``new_therapy``, ends nothing): ``<name>_day`` (its calendar day),
    ``<name>_event`` and ``<name>_ref``."""
    ev = study.events.filter(pl.col("event").is_in(events) & pl.col("day").is_not_null() & (pl.col("day") >= 0))
    return (ev.select(_SID, pl.col("day").cast(pl.Float64).floor().alias(f"{name}_day"),
                      pl.col("event").alias(f"{name}_event"), evidence_ref().alias(f"{name}_ref"))
            .sort(_SID, f"{name}_day", f"{name}_event").group_by(_SID).first())


def _transfusions_unknown(rec: pl.DataFrame, free: int) -> pl.DataFrame:
    """Platelet recovery with interventions.csv not given (option ``absent_interventions="unknown"``;
    ASTCT: "in the absence of platelet transfusion for 7 consecutive days", and an unknown transfusion is
    not an absent one): a run of counts at the level may rest on a transfusion, so the recovery day as
    measured is the earliest possible (``day_min``) and no later day is excluded (``day_max`` empty);
    a recovery becomes not evaluable. ``txu`` flags the rows changed."""
    hit = pl.col("day_max").is_not_null() & pl.col("status").is_in(["recovered", "not_evaluable"])
    return rec.with_columns(
        hit.fill_null(False).alias("txu"),
        pl.when(hit).then(pl.lit("not_evaluable")).otherwise(pl.col("status")).alias("status"),
        pl.when(hit).then(pl.lit(None, dtype=pl.Float64)).otherwise(pl.col("day")).alias("day"),
        pl.when(hit).then(pl.lit(None, dtype=pl.Float64)).otherwise(pl.col("day_max")).alias("day_max"),
        pl.when(hit).then(pl.concat_str(
            # review 40 B4: the opening clause says the range is open (not "between day E and day D")
            pl.format("not evaluable: the recovery day is day {} or later (no later day excluded: platelet "
                      "transfusions unknown, interventions.csv not given); as measured: ",
                      _fmt_expr(pl.col("day_min"))),
            pl.col("reason").str.strip_prefix("not evaluable: ")
            .str.replace(r"^the recovery day is between day (\S+) and day (\S+): ", "between day $1 and day $2: ")
            .str.replace_all("no platelet transfusion from", "no platelet transfusion recorded from",
                                             literal=True)
            .str.replace_all("-> recovery day", "-> earliest possible recovery day", literal=True)
            .str.strip_chars_end(" ").str.strip_suffix("."), pl.lit(
            f"; platelet transfusions unknown (interventions.csv not given, option count_recovery.absent_interventions="
            f"unknown): "
            f"a transfusion within {free} days before or during a run makes its counts not the patient's own, so the "
            f"recovery is on or after day_min with no later day excluded"))).otherwise(pl.col("reason")).alias("reason"))


def derive_count_recovery(study: Study, options: RecoveryOptions | None = None,
                          split_dose_gap_days: float | None = None) -> pl.DataFrame:
    """Neutrophil and platelet recovery day per subject (ASTCT / CIBMTR definitions).

    Per kind (``neutrophil``, ``platelet``): ``<kind>_recovery_day`` (Float64; empty unless decided),
    ``_day_min`` / ``_day_max`` (the possible range, as the other engines' grade / grade_max: equal to
    the day when decided; when unmeasured days leave the first day of the run open, the earliest day
    they allow and the first complete run, ``_day_max`` empty when no run is complete),
    ``_status`` (recovered | not_evaluable | not_reached | not_applicable | no_data),
    ``_censor_day`` (when no recovery is established: the end of follow-up, ``last_followup_day`` -
    else the latest day of the subject's rows - and not before the count's last value; a death, or an
    event of option ``censor_events`` - allo-HSCT, new therapy -, before it: that day),
    ``_censor_reason`` (death | the event | last_followup_day | latest_row | last_value), ``_rule``,
    ``_reason`` and ``_evidence``. Values on and after the first ``censor_events`` event are not
    counted (a recovery after a transplant or a new therapy is not the CAR-T's; session 37). A
    platelet count never below the level only with platelet transfusions (one within the
    transfusion-free days of the first run) is counted from day 0 under the transfusion-free rule
    (option ``transfusion_supported``), not "not applicable". Uses measured values only (lowest of a calendar day); days are
    calendar days after day 0. The nadir is that of the first episode below the level (the initial
    recovery; option ``nadir``). In mode "days" a value not measured is not a value below the level:
    a run it could complete makes the day not evaluable, and the reason gives what the CIBMTR reading
    (three consecutive values, mode "measurements") yields.
    """
    # split_dose_gap_days: the analysis's kinetics.split_dose_gap_days (None: its default, 7), what makes a
    # later CAR-T dose a re-infusion that ends the window (option censor_doses)
    options = options or RecoveryOptions()
    opts = options.resolved()  # consecutive >= 1, mode, start and nadir validated
    table = load_criteria(options.criteria)
    # by subject and day: the windows below read each subject's values in day order
    daily = _daily(_param_obs(study, ["NEUT", "PLAT"]), "min").filter(pl.col("d") >= 0).sort(_SID, "d")
    tx = transfusion_days(study, opts["platelet_transfusion_categories"]).select(
        _SID, pl.col("d").alias("d_tx"), pl.col("ref").alias("tx_ref")).unique()
    # session 37 (review s37 B1/B2): the recovery window ends at the first censor event (values from
    # its day on are not counted) or at death; both are named as the censoring reason
    ends = _first_events(study, list(opts["censor_events"]), "end").with_columns(
        pl.col("end_event").alias("end_txt"), pl.lit("censor_events").alias("end_opt"))
    # session 45 (review 45 F2): a re-infusion or a further lymphodepletion in doses.csv ends it too
    doses = dose_ends(study, opts["censor_doses"], split_dose_gap_days).select(
        _SID, pl.col("day").floor().alias("end_day"), pl.col("event").alias("end_event"), pl.col("ref").alias("end_ref"),
        pl.col("why").alias("end_txt"), pl.lit("censor_doses").alias("end_opt"))
    ends = pl.concat([ends, doses], how="vertical_relaxed").sort(_SID, "end_day", "end_opt", descending=[False, False, True]
                                                                  ).group_by(_SID, maintain_order=True).first()
    deaths = _first_events(study, ["death"], "death")
    # session 48 (review 48 F5, option event_day_counts): the event day's own values count (default), as
    # ICAHT / T-ICAHT keep the count of a late window's end day (late_window_end_inclusive)
    on_day = bool(opts["event_day_counts"])
    kept = (pl.col("d") <= pl.col("end_day")) if on_day else (pl.col("d") < pl.col("end_day"))
    not_counted = "after that day" if on_day else "from that day on"
    daily = (daily.join(ends.select(_SID, "end_day"), on=_SID, how="left")
             .filter(pl.col("end_day").is_null() | kept).drop("end_day"))
    fu = _follow_up_end(study).join(ends, on=_SID, how="left").join(deaths, on=_SID, how="left")
    out = _subject_order(study)
    schema: dict[str, pl.DataType] = {_SID: pl.String}
    k, mode = int(opts["consecutive"]), opts["mode"]
    ne_id = next((o["id"] for o in table.get("outcomes", []) if o["id"] == "recovery.not_evaluable"), None)
    sup_id = next((o["id"] for o in table.get("outcomes", [])
                   if o["id"] == "recovery.platelet_transfusion_supported"), None)
    ev_id = next((o["id"] for o in table.get("outcomes", []) if o["id"] == "recovery.censor_event"), None)
    dose_id = next((o["id"] for o in table.get("outcomes", []) if o["id"] == "recovery.censor_dose"), None)
    ai_id = next((o["id"] for o in table.get("outcomes", []) if o["id"] == "recovery.absent_interventions"), None)
    tx_unknown = interventions_unknown(study, opts["absent_interventions"])
    gap_id = next((o["id"] for o in table.get("outcomes", []) if o["id"] == "recovery.never_below_gap"), None)
    start_id = next((o["id"] for o in table.get("outcomes", []) if o["id"] == "recovery.never_below_needs_start"),
                    ne_id)
    for kind, label in (("neutrophil", "ANC"), ("platelet", "platelets")):
        rule = table[kind]
        thr = _to_canonical(rule["value"], rule["unit"], rule["param"])
        num = daily.filter(pl.col("param") == rule["param"])
        # censored results ("<0.1") on days without a number: measured days whose bound stands in for
        # the number in the nadir's order and meets the level only where it settles it (session 32)
        cens = (_censored_days(study, rule["param"], num).filter(pl.col("d") >= 0)
                .join(ends.select(_SID, "end_day"), on=_SID, how="left")
                .filter(pl.col("end_day").is_null() | kept).drop("end_day"))
        pts = pl.concat([
            num.select(_SID, "d", "value", "refs", pl.lit(None, dtype=pl.String).alias("ctxt"),
                       pl.lit(None, dtype=pl.String).alias("censor"), pl.lit(None, dtype=pl.Float64).alias("censor_limit")),
            cens.select(_SID, "d", pl.col("censor_limit").alias("value"), pl.concat_list(pl.col("_crs")).cast(EVIDENCE)
                        .alias("refs"), pl.col("_cs").alias("ctxt"), "censor", "censor_limit"),
        ]).sort(_SID, "d")
        ktx = tx if kind == "platelet" else None
        rec = _recovery(pts, ktx, rule, opts, thr, label, mode)
        if mode == "days":  # what the CIBMTR reading (consecutive values) gives, for the days left open
            alt = _recovery(pts, ktx, rule, opts, thr, label, "measurements").select(
                _SID, pl.when(pl.col("day").is_not_null()).then(pl.format("gives day {}", pl.col("day").cast(pl.Int64)))
                .otherwise(pl.lit("gives no recovery (not reached)")).alias("_alt"))
            rec = rec.join(alt, on=_SID, how="left")
        else:
            rec = rec.with_columns(pl.lit(None, dtype=pl.String).alias("_alt"))
        if kind == "platelet" and tx_unknown:
            rec = _transfusions_unknown(rec, int(opts["platelet_transfusion_free_days"]))
        else:
            rec = rec.with_columns(pl.lit(False).alias("txu"))
        s = pl.col("status")
        open_end = s.is_in(["not_reached", "not_evaluable"]) & pl.col("day_max").is_null()
        L, end_d, death = pl.col("L").cast(pl.Float64), pl.col("end_day"), pl.col("death_day")
        # a death or an end event after the end of follow-up (and the count's last value) is not where
        # the count's follow-up ended: censored there instead (review 37 diff B2)
        fu_end = pl.max_horizontal(pl.col("fu_day"), L)
        within = lambda d: pl.col("fu_day").is_null() | (d <= fu_end)  # noqa: E731
        by_death = death.is_not_null() & within(death) & (end_d.is_null() | (death <= end_d))
        by_event = end_d.is_not_null() & within(end_d) & ~by_death
        censor = pl.when(open_end).then(pl.when(by_event).then(end_d).when(by_death).then(pl.max_horizontal(death, L))
                                        .otherwise(pl.max_horizontal(pl.col("fu_day"), L)))
        why = (pl.when(by_event).then(pl.col("end_event")).when(by_death & (death >= L)).then(pl.lit("death"))
               .when(~by_death & (pl.col("fu_day") >= L)).then(pl.col("fu_code")).otherwise(pl.lit("last_value")))
        why_txt = (pl.when(by_event).then(pl.format(
            f"{{}} on day {{}}: option {{}}, values {not_counted} are not counted (option event_day_counts="
            f"{str(on_day).lower()})", pl.col("end_txt"), end_d.cast(pl.Int64), pl.col("end_opt")))
            .when(by_death & (death >= L)).then(pl.lit("death"))
            .when(~by_death & (pl.col("fu_day") >= L)).then(pl.col("fu_how"))
            .otherwise(pl.lit("the last value: it is after the end of follow-up")))
        rec = (fu.join(rec, on=_SID, how="left")
               .with_columns(censor.alias("censor_day")).with_columns(
                   pl.when(pl.col("censor_day").is_not_null()).then(why).alias("censor_reason"),
                   (pl.col("censor_day").is_not_null() & by_event).alias("by_event"),
                   pl.when(pl.col("censor_day").is_not_null() & by_event).then(pl.col("end_ref"))
                   .when(pl.col("censor_day").is_not_null() & by_death).then(pl.col("death_ref")).alias("censor_ref"))
               .with_columns(
            pl.concat_str(
                pl.col("reason"),
                pl.when((s == "not_evaluable") & ~pl.col("unk") & ~pl.col("txu")).then(pl.format(
                    f"; the CIBMTR reading of {k} consecutive values on different days (option mode=measurements) {{}}",
                    pl.col("_alt"))).otherwise(pl.lit("")),
                pl.when(pl.col("censor_day").is_not_null()).then(pl.format(
                    "; censored at day {} ({})", pl.col("censor_day").cast(pl.Int64), why_txt)).otherwise(pl.lit("")),
                pl.when(s.is_in(["not_reached", "not_evaluable"])).then(pl.lit(".")).otherwise(pl.lit(""))).alias("reason"))
               .filter(pl.col("status").is_not_null()))
        if kind == "neutrophil":  # review s40 B3: G-CSF around the recovery run named, counts as measured
            g = _gcsf_near(study, rec.filter(pl.col("status") == "recovered"), k)
            rec = rec.join(g, on=_SID, how="left", maintain_order="left").with_columns(
                pl.when(pl.col("_gcsf").is_not_null()).then(pl.concat_str(
                    pl.col("reason"), pl.lit(" "), pl.col("_gcsf"),
                    pl.lit(" within the 7 days before or during the recovery run: the ANC is counted as measured "
                           "(recovery.gcsf_not_considered)."))).otherwise(pl.col("reason")).alias("reason"),
                pl.when(pl.col("_gcsf").is_not_null()).then(_refs(pl.col("evidence").fill_null(_NO_REFS),
                                                                  pl.col("_gcsf_refs")))
                .otherwise(pl.col("evidence")).alias("evidence")).drop("_gcsf", "_gcsf_refs")
        rid = pl.lit(rule["id"], dtype=pl.String)
        by_dose = pl.col("by_event").fill_null(False) & (pl.col("end_opt") == "censor_doses").fill_null(False)
        extra_ids = [(pl.col("sup").fill_null(False), sup_id), (pl.col("by_event").fill_null(False) & ~by_dose, ev_id),
                     (by_dose, dose_id),
                     (pl.col("txu").fill_null(False), ai_id)]
        rid = pl.concat_str(rid, *[pl.when(flag).then(pl.lit(f"; {i}")).otherwise(pl.lit("")) for flag, i in extra_ids
                                   if i])
        no_data = pl.when(pl.col("end_day").is_not_null()).then(pl.format(
            f"no {label} from day 0 on {'up to' if on_day else 'before'} {{}} on day {{}} (option {{}}: values "
            f"{not_counted} are not counted, option event_day_counts={str(on_day).lower()}).", pl.col("end_txt"),
            pl.col("end_day").cast(pl.Int64), pl.col("end_opt"))).otherwise(
            pl.lit(f"no {label} from day 0 on."))
        out = out.join(rec.drop("_order", strict=False), on=_SID, how="left").join(
            ends.select(_SID, "end_day", "end_event", "end_txt", "end_opt"), on=_SID, how="left").select(
            *out.columns,
            pl.col("day").alias(f"{kind}_recovery_day"),
            pl.col("day_min").alias(f"{kind}_recovery_day_min"),
            pl.col("day_max").alias(f"{kind}_recovery_day_max"),
            pl.col("status").fill_null(pl.lit("no_data")).alias(f"{kind}_recovery_status"),
            pl.col("censor_day").alias(f"{kind}_recovery_censor_day"),
            pl.col("censor_reason").alias(f"{kind}_recovery_censor_reason"),
            (pl.when(pl.col("unk").fill_null(False) & pl.col("reason").str.contains("never_below_max_gap_days=", literal=True)
                     & pl.lit(gap_id is not None)).then(pl.concat_str(rid, pl.lit(f"; {gap_id}")))
             .when(pl.col("unk").fill_null(False)).then(pl.concat_str(rid, pl.lit(f"; {start_id}")))
             .when((s == "not_evaluable") & ~pl.col("txu").fill_null(False)).then(pl.concat_str(rid, pl.lit(f"; {ne_id}")))
             .otherwise(rid)
             if ne_id else rid).alias(f"{kind}_recovery_rule"),
            pl.col("reason").fill_null(no_data).alias(f"{kind}_recovery_reason"),
            pl.when(pl.col("censor_ref").is_not_null()).then(
                _refs(pl.col("evidence").fill_null(_NO_REFS), pl.concat_list(pl.col("censor_ref")).cast(EVIDENCE)))
            .otherwise(pl.col("evidence").fill_null(_NO_REFS)).alias(f"{kind}_recovery_evidence"),
        )
        schema |= {f"{kind}_recovery_day": pl.Float64, f"{kind}_recovery_day_min": pl.Float64,
                   f"{kind}_recovery_day_max": pl.Float64, f"{kind}_recovery_status": pl.String,
                   f"{kind}_recovery_censor_day": pl.Float64, f"{kind}_recovery_censor_reason": pl.String,
                   f"{kind}_recovery_rule": pl.String,
                   f"{kind}_recovery_reason": pl.String, f"{kind}_recovery_evidence": EVIDENCE}
    return out.sort("_order").select(list(schema)).cast(schema)
