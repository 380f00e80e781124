"""T-ICAHT: thrombocytopenia grading after CAR-T (Rejeski et al., Blood 2025, Table 1).

Criteria in ``criteria/t_icaht_2025.yaml`` (http://www.ash-sap.org/view-large/12809257). Early
T-ICAHT (days 0-30, censored at progression, new therapy or death): cumulative days with PLT < 50
(grade 1: 1-6 days, grade 2: >= 7) and < 20 x10^9/L (grade 3: 1-13 days, grade 4: >= 14), non-stable
recoveries (< 3 days) counted. Late T-ICAHT (days 31-100): PLT < 100 (grade 1) or < 50 (grade 2) on
two or more measurements "or nontransient thrombocytopenia" (a run below the level continuing from
the early window or lasting >= 3 days; option ``late_nontransient``), < 20 for 1-13 (grade 3) or
>= 14 days (grade 4). A count >= 20 within 7 days of a platelet transfusion given after an own count
< 20 is not a recovery (the paper's platelet-recovery definition) and counts as below 20. Too few
platelet counts in a window -> that grade is empty (not evaluable), never 0; the late window then
still gives ``t_icaht_late_grade_max``, the highest grade possible (missing is not negative).

>>> from cartlab.datasets import seed_case
>>> derive_t_icaht(seed_case()).select("t_icaht_early_grade", "t_icaht_late_grade").row(0)
(4, 4)
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import polars as pl
from pydantic import BeforeValidator

from cartlab._deprecated import renamed
from cartlab.criteria import CriteriaTable, load_table
from cartlab.grading import hemato_common as hc
from cartlab.grading import hemato_late as late
from cartlab.grading.absent_interventions import TX_MISSING, interventions_unknown, open_untransfused
from cartlab.grading.hemato_common import empty
from cartlab.grading.icaht import duration_text, rule_texts
from cartlab.grading.icaht_absent import late_end_unknown, late_range
from cartlab.io.absent_files import EVENTS_NOT_GIVEN, events_absent
from cartlab.model import Study
from cartlab.provenance import EVIDENCE

__all__ = ["TIcahtOptions", "derive_t_icaht", "derive_t_icaht_daily"]

#: a level's short name ("20"); a number is read as its text, as the levels are named
LevelName = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)]


class TIcahtOptions(hc.CountWindowOptions):
    """Options of T-ICAHT grading; ``None`` means the criteria table's default (its ``defaults``, whose
    comments document each option: the table below is generated from them). The operational choices
    the paper leaves open follow N-ICAHT (:class:`~cartlab.grading.icaht.IcahtOptions`)."""

    censor_events: tuple[str, ...] | None = None
    censor_day_inclusive: bool | None = None
    censor_doses: hc.EndDoses | None = None
    same_day_count_is_pre_transfusion: bool | None = None
    platelet_transfusion_categories: tuple[str, ...] | None = None
    platelet_transfusion_free_days: int | None = None
    transfusion_supported_levels: tuple[LevelName, ...] | None = None
    late_nontransient: bool | None = None
    absent_events: Literal["unknown", "shortest_window", "none_happened"] | None = None
    absent_interventions: Literal["unknown", "none_given"] | None = None
    criteria: str = "t_icaht_2025"


def _used(table: CriteriaTable, rule_set: str, pattern: str) -> list[str]:
    """The levels named by the features of a rule set that match ``pattern``, deepest last."""
    return sorted({m.group(1) for f in hc.rule_features(table.rule_set(rule_set)) if (m := re.fullmatch(pattern, f))},
                  key=lambda n: -float(n))


def _windows(study: Study, sids: list[str], opts: dict[str, Any]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(early windows: ``subject_id``, ``_el`` (last early day), ``why``, ``evidence``; late windows:
    ``subject_id``, ``start``, ``end``, ``why``, ``evidence``, ``_ws``, ``_we``, ``_el``)."""
    lo, hi = opts["early_window"]
    end = pl.col("end")
    last = pl.when(pl.lit(bool(opts["censor_day_inclusive"])) | (end == hi)).then(end.floor()).otherwise(end.ceil() - 1)
    doses = hc.dose_ends(study, opts["censor_doses"], opts.get("split_dose_gap_days"))  # review 45 F2: a new CAR-T course ends both windows
    early = hc.event_windows(study, sids, lo, hi, opts["censor_events"], False, min_event_day=lo,
                          doses=doses).with_columns(
        pl.min_horizontal(pl.lit(hi, dtype=pl.Float64), last).cast(pl.Int64).alias("_el"))
    late = hc.event_windows(study, sids, opts["late_start_day"], opts["late_end_day"], opts["late_end_events"],
                         opts["late_end_at_last_followup"], min_event_day=lo, doses=doses)
    late = late.with_columns(hc.windows_frame(late).drop("subject_id")).join(
        early.select("subject_id", "_el"), on="subject_id", how="left", maintain_order="left")
    if events_absent(study):  # review 37 B1: the late window's end assumes no relapse, new therapy or death
        late = late.with_columns(pl.concat_str("why", pl.lit(" (" + EVENTS_NOT_GIVEN.format(
            "relapse, new therapy, allo-HSCT or death") + ")")).alias("why"))
    return early, late


def derive_t_icaht_daily(study: Study, options: TIcahtOptions | None = None,
                         split_dose_gap_days: float | None = None) -> pl.DataFrame:
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
    opts = {**options.resolved(), "split_dose_gap_days": split_dose_gap_days}
    levels = hc.table_levels(load_table(options.criteria), "PLAT")
    unknown = [n for n in opts["transfusion_supported_levels"] if n not in levels]
    if unknown:
        raise ValueError(f"transfusion_supported_levels {unknown} not among the levels {list(levels)}")
    sids = hc.subject_ids(study)
    daily = hc.daily_series(study, "PLAT", opts, "PLT").rename({"value": "plt"})
    free = int(opts["platelet_transfusion_free_days"])
    tx = hc.transfusion_days(study, opts["platelet_transfusion_categories"])
    cover = (tx.with_columns(pl.int_ranges("d", pl.col("d") + free + 1).alias("day")).explode("day")
             .group_by("subject_id", "day").agg(pl.col("ref").drop_nulls().unique(maintain_order=True).alias("tx_refs")))
    early_w, late_w = _windows(study, sids, opts)
    win = late_w.select("subject_id", "_ws", "_we", "_el", pl.col("why").alias("_lwhy")).join(
        early_w.select("subject_id", pl.col("why").alias("_ewhy")), on="subject_id", how="left", maintain_order="left")
    lo, hi = opts["early_window"]
    daily = daily.join(cover, on=["subject_id", "day"], how="left", maintain_order="left").join(
        win, on="subject_id", how="left", maintain_order="left")
    daily = daily.with_columns(
        pl.when((pl.col("day") >= lo) & (pl.col("day") <= pl.col("_el"))).then(pl.lit("early"))
        .when(hc.in_window(opts["late_window_end_inclusive"])).then(pl.lit("late"))
        .otherwise(pl.lit(None, dtype=pl.String)).alias("window"))
    daily = _censor_interpolation(daily, opts, hi)
    supported = pl.col("tx_refs").is_not_null() & (pl.col("tx_refs").list.len() > 0)
    below = {n: (pl.col("plt") <= thr) if opts["inclusive"] else (pl.col("plt") < thr) for n, thr in levels.items()}
    # a censored result ("<5") is below a level when its bound says so, unknown otherwise
    cens = {n: hc.censored_flag(pl.col("censor"), pl.col("censor_limit"), thr, opts["inclusive"]) for n, thr in levels.items()}
    masked = list(opts["transfusion_supported_levels"])
    same_day = None if opts["same_day_count_is_pre_transfusion"] else _timed_same_day(study, opts, levels, masked)
    daily = daily.join(_own_count_before_transfusion(daily, tx, free, levels, masked, opts["inclusive"], same_day),
                       on=["subject_id", "day"], how="left", maintain_order="left")

    def pre(n: str) -> pl.Expr:  # the patient's own count before the supporting transfusion was below n
        return pl.col(f"_pre_{n}").fill_null(False) if n in masked else pl.lit(False)

    # a count a transfusion supports is below a masked level when the patient's own count before the
    # transfusion was below it; after an own count at or above it the day is unknown there (a range),
    # never below for sure (session 33: a transfusion given at an own count of 40 made 8 days "< 20")
    flags = [
        (pl.when(pl.col("plt").is_null() & pl.col("censor").is_null()).then(None)
         .when(pl.col("plt").is_null()).then(
             pl.when(cens[n].fill_null(False)).then(True)
             .when(supported & pl.lit(n in masked) & pre(n)).then(True)
             .when(supported & pl.lit(n in masked)).then(None).otherwise(cens[n]))
         .when(below[n]).then(True)
         .when(supported & pl.lit(n in masked) & pre(n)).then(True)
         .when(supported & pl.lit(n in masked)).then(None)
         .otherwise(False))
        .alias(f"plt_lt_{n}") for n in levels
    ]
    # below a masked level by transfusion -> below every higher level too (session 34, review s33
    # finding 4: a transfused 60 after an own 10 counted < 20 but not < 50)
    higher = {n: [m for m in masked if levels[m] < levels[n]] for n in levels if n not in masked}
    flags = [f if not higher.get(n) else
             pl.when(pl.col("plt").is_not_null() & supported & pl.any_horizontal([pre(m) for m in higher[n]]))
             .then(True).otherwise(f).alias(f"plt_lt_{n}") for n, f in zip(levels, flags)]
    # a value that is below a masked level only because a transfusion supports it
    not_below = ~pl.all_horizontal([below[n] for n in masked] or [pl.lit(True)])
    by_tx = supported & pl.col("plt").is_not_null() & not_below & pl.all_horizontal([pre(n) for n in masked] or [pl.lit(False)])
    open_tx = supported & pl.col("plt").is_not_null() & not_below & ~by_tx
    note = (pl.when(by_tx).then(pl.lit(
        f"; a platelet transfusion within {free} days after an own count below "
        + "/".join(hc.fmt(levels[n]) for n in masked) + ": not a recovery, counted below "
        + "/".join(hc.fmt(levels[n]) for n in masked)))
        .when(open_tx).then(pl.lit(
            f"; a platelet transfusion within {free} days, the own count before it not below "
            + "/".join(hc.fmt(levels[n]) for n in masked) + " (or not measured): whether this count is the "
            "patient's own is unknown, so below " + "/".join(hc.fmt(levels[n]) for n in masked) + " is open"))
        .otherwise(pl.lit("")))
    daily = daily.with_columns(
        supported.alias("transfusion_supported"),
        by_tx.alias("below_by_transfusion"),
        *flags,
        hc.censored_text(pl.col("censor"), pl.col("censor_limit")).alias("plt_censored"),
        pl.concat_str(pl.col("reason"), note).alias("reason"),
    ).with_row_index("_row")
    if interventions_unknown(study, opts["absent_interventions"]):  # review 37 A2: absent is not "none given"
        daily = open_untransfused(daily, levels, masked)
    # the transfusion rows join the evidence of the (few) days counted below because of them
    extra = daily.filter(pl.col("below_by_transfusion")).select("_row", pl.concat_list("evidence", "tx_refs").alias("_ev"))
    daily = daily.join(extra, on="_row", how="left", maintain_order="left").with_columns(
        pl.coalesce("_ev", "evidence").alias("evidence"))
    cols = ["subject_id", "day", "plt", "plt_censored", "source", "prev_day", "next_day", "transfusion_supported",
            "below_by_transfusion", "window"]
    cols += [f"plt_lt_{n}" for n in levels] + ["reason", "evidence"]
    return daily.select(cols)  # in subject and day order (daily_series)


def _below_flags(levels: dict[str, float], masked: list[str], inclusive: bool) -> dict[str, pl.Expr]:
    """Per masked level: ``plt`` (or the censored ``censor``/``censor_limit``) below it."""
    return {n: (pl.when(pl.col("plt").is_not_null())
                .then((pl.col("plt") <= levels[n]) if inclusive else (pl.col("plt") < levels[n]))
                .otherwise(hc.censored_flag(pl.col("censor"), pl.col("censor_limit"), levels[n], inclusive)))
            for n in masked}


def _timed_same_day(study: Study, opts: dict[str, Any], levels: dict[str, float], masked: list[str]) -> pl.DataFrame:
    """``subject_id``, ``tx_day`` and ``_b_<level>``: the last platelet count of a transfusion's calendar
    day taken before it, where both have a time of day (:func:`cartlab.io.clock.is_timed`; session 48,
    review 48 F4: the time order decides; without times the order is unknown)."""
    from cartlab.io.clock import is_timed

    iv = study.interventions
    dt = "start_datetime" if "start_datetime" in iv.columns else None
    starts = (iv.filter(pl.col("category").is_in(list(opts["platelet_transfusion_categories"]))
                        & pl.col("start_day").is_not_null() & is_timed("start_day", dt))
              .group_by("subject_id", pl.col("start_day").floor().cast(pl.Int64).alias("tx_day"))
              .agg(pl.col("start_day").min().alias("_tx_t")))
    obs = study.observations
    cens = [pl.col(c) if c in obs.columns else pl.lit(None, dtype=t).alias(c)
            for c, t in (("censor", pl.String), ("censor_limit", pl.Float64))]
    counts = (obs.filter((pl.col("param") == "PLAT") & pl.col("day").is_not_null()
                         & is_timed("day", "datetime" if "datetime" in obs.columns else None))
              .select("subject_id", "day", pl.col("value").alias("plt"), *cens)
              .filter(pl.col("plt").is_not_null() | pl.col("censor").is_not_null())
              .with_columns(pl.col("day").floor().cast(pl.Int64).alias("tx_day")))
    return (counts.join(starts, on=["subject_id", "tx_day"], how="inner").filter(pl.col("day") < pl.col("_tx_t"))
            .sort("subject_id", "tx_day", "day").group_by("subject_id", "tx_day", maintain_order=True).last()
            .select("subject_id", "tx_day", *[f.alias(f"_b_{n}") for n, f in
                                               _below_flags(levels, masked, opts["inclusive"]).items()]))


def _own_count_before_transfusion(daily: pl.DataFrame, tx: pl.DataFrame, free: int, levels: dict[str, float],
                                  masked: list[str], inclusive: bool,
                                  same_day: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per subject and day a transfusion supports: ``_pre_<level>`` for each masked level, True when
    the patient's own count before a supporting transfusion was below the level, else null. That
    count is the last one of the transfusion's calendar day taken before it by the time of day
    (``same_day``: :func:`_timed_same_day`), else the last recorded one strictly before that day that no
    earlier transfusion supports (session 48, review 48 F4: a count of the same day without times may
    have been drawn after the transfusion); a count of the same day below the level still shows the own
    count was below it, whatever the order (a transfusion raises the count). ``same_day`` None (option
    ``same_day_count_is_pre_transfusion``): the last count on or before the transfusion day (cartlab
    before session 48). Rejeski 2025 Table 1 names transfusions only in its recovery ("... in the
    absence of a PLT transfusion for 7 consecutive days"): a transfused count is no recovery from
    below 20 only when the count was below 20 before it."""
    out_schema = {"subject_id": pl.String, "day": pl.Int64, **{f"_pre_{n}": pl.Boolean for n in masked}}
    if tx.is_empty() or not masked:
        return pl.DataFrame(schema=out_schema)
    starts = tx.select("subject_id", pl.col("d").cast(pl.Int64).alias("tx_day")).unique()
    own = daily.filter(hc.recorded_day() & (pl.col("plt").is_not_null() | pl.col("censor").is_not_null())).select(
        "subject_id", pl.col("day").cast(pl.Int64), "plt", "censor", "censor_limit")
    # a count on a day an earlier transfusion (strictly before it, within `free` days) supports is not own
    sup = (own.select("subject_id", "day").join(starts, on="subject_id", how="inner")
           .filter((pl.col("tx_day") < pl.col("day")) & (pl.col("day") - pl.col("tx_day") <= free))
           .select("subject_id", "day").unique())
    own = own.join(sup, on=["subject_id", "day"], how="anti")
    flag = _below_flags(levels, masked, inclusive)
    own = own.with_columns(*[f.alias(f"_b_{n}") for n, f in flag.items()]).sort("subject_id", "day")
    pre = (starts.sort("subject_id", "tx_day")
           .join_asof(own.select("subject_id", pl.col("day").alias("tx_day"), *[f"_b_{n}" for n in masked]),
                      on="tx_day", by="subject_id", strategy="backward", check_sortedness=False,  # both sorted
                      allow_exact_matches=same_day is None))
    if same_day is not None:
        # the day's own count below the level (before or after the transfusion, it shows the own count was)
        pre = pre.join(own.select("subject_id", pl.col("day").alias("tx_day"),
                                  *[pl.col(f"_b_{n}").alias(f"_b_{n}_day") for n in masked]),
                       on=["subject_id", "tx_day"], how="left").with_columns(
            *[pl.when(pl.col(f"_b_{n}_day").fill_null(False)).then(True).otherwise(pl.col(f"_b_{n}")).alias(f"_b_{n}")
              for n in masked])
        # a timed count of the day before a timed transfusion is the count before it (the time order decides)
        sd = same_day.join(sup.rename({"day": "tx_day"}), on=["subject_id", "tx_day"], how="anti").with_columns(
            pl.lit(True).alias("_sd"))
        pre = pre.join(sd, on=["subject_id", "tx_day"], how="left", suffix="_sd").with_columns(
            *[pl.when(pl.col("_sd").fill_null(False)).then(pl.col(f"_b_{n}_sd")).otherwise(pl.col(f"_b_{n}"))
              .alias(f"_b_{n}") for n in masked])
    covered = (pre.with_columns(pl.int_ranges("tx_day", pl.col("tx_day") + free + 1).alias("day")).explode("day")
               .group_by("subject_id", "day")
               .agg(*[pl.col(f"_b_{n}").fill_null(False).any().alias(f"_pre_{n}") for n in masked]))
    return covered.with_columns(*[pl.when(pl.col(f"_pre_{n}")).then(True).alias(f"_pre_{n}") for n in masked]).select(
        list(out_schema)).cast(out_schema)


def _censor_interpolation(daily: pl.DataFrame, opts: dict[str, Any], early_hi: float) -> pl.DataFrame:
    """Days of a censored window (ended by a ``censor_events``/``late_end_events`` event or the last
    follow-up, not by its nominal last day) interpolated toward a count measured after the window's
    last day lose that value: "the cumulative length beneath the respective threshold is calculated,
    censoring at the time of disease progression, subsequent line of therapy, or death" (Rejeski 2025,
    Table 1 footnote), so no count after the censoring is used. Such a day has no count (``source``
    missing, unknown: it is never counted below a level; early days count in ``early_unknown_days``)."""
    late_end = float(opts["late_end_day"])
    late_last = (pl.when(pl.lit(bool(opts["late_window_end_inclusive"]))).then(pl.col("_we").floor())
                 .otherwise(pl.col("_we").ceil() - 1))
    # censored = the window ends before its nominal last day (decided by the day, not by the reason's
    # text: a last follow-up on day 100 ends the late window on its nominal day; session 33)
    cut = (pl.when((pl.col("window") == "early") & (pl.col("_el") < early_hi)).then(pl.col("_el"))
           .when((pl.col("window") == "late") & (pl.col("_we") < late_end)).then(late_last)
           .cast(pl.Int64))
    why = pl.when(pl.col("window") == "early").then(pl.col("_ewhy")).otherwise(pl.col("_lwhy"))
    # the next measured day (from the sources: daily_series' next_day is not filled on interpolated days)
    nxt = (pl.when(hc.recorded_day()).then(pl.col("day")).backward_fill().over("subject_id"))
    daily = daily.with_columns(cut.alias("_cut"), why.alias("_cwhy"), nxt.alias("_next"))
    leak = (pl.col("source") == "interpolated") & pl.col("_cut").is_not_null() & (pl.col("_next") > pl.col("_cut"))
    return daily.with_columns(
        pl.when(leak).then(None).otherwise(pl.col("plt")).alias("plt"),
        pl.when(leak).then(pl.lit("missing")).otherwise(pl.col("source")).alias("source"),
        pl.when(leak).then(pl.format(
            "no PLT: the next count (day {}) is after the {} window's censored end (day {}: {}) and is not used",
            pl.col("_next"), pl.col("window"), pl.col("_cut"), pl.col("_cwhy"))).otherwise(pl.col("reason")).alias("reason"),
        pl.when(leak).then(pl.lit([], dtype=EVIDENCE)).otherwise(pl.col("evidence")).alias("evidence"),
    ).drop("_cut", "_cwhy", "_next")


def _window_features(daily: pl.DataFrame, sids: list[str], opts: dict[str, Any], levels: dict[str, float],
                     window: str, prefix: str) -> pl.DataFrame:
    """Per subject in one window: days with a value, measured days, lowest measured values, evidence,
    per level the duration and the measured days below, and transfusion-supported days."""
    win = daily.filter(pl.col("window") == window)
    known = win.filter(pl.col("plt").is_not_null() | pl.col("plt_censored").is_not_null())
    # a censored result is no nadir number: ordered by its bound ("<50" as 50), shown as written (session 32)
    key = hc.nadir_key("plt", "plt_censored")
    meas = known.filter(hc.recorded_day()).sort(key, "day", nulls_last=True)
    out = pl.DataFrame({"subject_id": sids}, schema={"subject_id": pl.String})
    out = out.join(known.group_by("subject_id").agg(
        pl.len().alias(f"{prefix}n_days"),
        pl.col("evidence").list.explode(keep_nulls=False, empty_as_null=False).drop_nulls().unique(maintain_order=True).alias(f"{prefix}_ev"),
        pl.col("below_by_transfusion").sum().alias(f"{prefix}transfusion_supported_days"),
    ), on="subject_id", how="left", maintain_order="left")
    out = out.join(meas.group_by("subject_id", maintain_order=True).agg(
        pl.len().alias(f"{prefix}n_measurements"), *hc.nadir_exprs("plt", "plt_censored", f"{prefix}plt"),
        pl.format("{} on day {}", pl.col("plt_censored"), pl.col("day"))
        .filter(pl.any_horizontal([pl.col(f"plt_lt_{n}").is_null() for n in levels]))
        .str.join(", ").alias(f"_{prefix}open"),
        *[pl.col(f"plt_lt_{n}").fill_null(False).sum().alias(f"{prefix}n_plt_{n}") for n in levels],
    ), on="subject_id", how="left", maintain_order="left")
    zero = [f"{prefix}n_days", f"{prefix}n_measurements", f"{prefix}transfusion_supported_days"]
    zero += [f"{prefix}n_plt_{n}" for n in levels]
    out = out.with_columns(*[pl.col(c).fill_null(0).cast(pl.Int64) for c in zero],
                           pl.col(f"{prefix}_ev").fill_null(pl.lit([], dtype=EVIDENCE)))
    for name in levels:
        d = hc.below_durations(win, f"plt_lt_{name}", int(opts["stable_recovery_days"]),
                            bool(opts["count_recovery_days_in_run"]), opts["duration"])
        out = out.join(d.rename({c: f"{prefix}plt_lt_{name}_{c}" for c in d.columns if c != "subject_id"}),
                       on="subject_id", how="left", maintain_order="left")
    return out


def _early_upper(daily: pl.DataFrame, early_w: pl.DataFrame, opts: dict[str, Any], levels: dict[str, float],
                 table: CriteriaTable, sids: list[str]) -> pl.DataFrame:
    """The highest early grade the data leave possible: every day of the early window (to its
    censoring end) without a platelet count (measured or interpolated) read as below every level
    (missing is not negative); ``early_unknown_days`` counts those days."""
    lo = int(opts["early_window"][0])
    flags = [f"plt_lt_{n}" for n in levels]
    grid = (early_w.select("subject_id", pl.int_ranges(lo, pl.col("_el") + 1).alias("day")).explode("day")
            .drop_nulls("day"))
    day = daily.filter(pl.col("window") == "early").select(
        "subject_id", "day", "plt", "plt_censored", "source", "prev_day", "next_day", "evidence", "below_by_transfusion",
        *flags)
    # session 48 (review 48 F1): days interpolated across a gap longer than range_interpolation_gap_days
    # are unknown for the range (the grade keeps them)
    gaps = late.gap_days(day.join(grid, on=["subject_id", "day"], how="semi"), opts, flags, "early")
    gap = late.long_gap_day(opts)
    day = day.with_columns(*[pl.when(gap).then(None).otherwise(pl.col(c)).alias(c) for c in ("plt", *flags)])
    fills = (pl.col("source").fill_null("missing"), pl.col("below_by_transfusion").fill_null(False),
             pl.lit("early").alias("window"))
    return hc.early_upper_grade(grid, day.drop("prev_day", "next_day"), "plt", flags,
                                lambda f: _window_features(f, sids, opts, levels, "early", ""), table, opts,
                                fills).join(gaps, on="subject_id", how="left", maintain_order="left")


def derive_t_icaht(study: Study, options: TIcahtOptions | None = None, daily: pl.DataFrame | None = None,
                   split_dose_gap_days: float | None = None) -> pl.DataFrame:
    """:func:`_derive_t_icaht`; with interventions.csv not given (``absent_interventions="unknown"``) the
    grades are those of the counts as measured (no transfusion: the lower bound) and the ``_max``
    columns the higher of that and the open reading, so an unknown transfusion only widens a grade,
    never lowers it (review 37 diff A1: opening counts split a run the recovery rule joins)."""
    options = options or TIcahtOptions()
    if late_end_unknown(study, options.resolved()):  # events.csv not given: the late window's end is unknown
        return late_range(study, options, derive_t_icaht, "t_icaht", daily,  # (review 40 A2, t_icaht.conv.absent_events)
                          split_dose_gap_days=split_dose_gap_days)
    if not interventions_unknown(study, options.resolved()["absent_interventions"]):
        return _derive_t_icaht(study, options, daily, split_dose_gap_days)
    from dataclasses import replace

    low = _derive_t_icaht(study, replace(options, absent_interventions="none_given"),  # the counts as measured
                          split_dose_gap_days=split_dose_gap_days)
    high = _derive_t_icaht(study, options, daily, split_dose_gap_days)  # counts after one below 20 open
    out = low.join(high.select("subject_id", *[pl.col(f"t_icaht_{w}_grade_max").alias(f"_hi_{w}")
                                               for w in ("early", "late")]),
                   on="subject_id", how="left", maintain_order="left")
    for w in ("early", "late"):
        up = pl.max_horizontal(f"t_icaht_{w}_grade_max", f"_hi_{w}")
        note = pl.format("; up to grade {} with interventions.csv not given: a platelet transfusion after a count "
                         "below 20 could make later counts not the patient's own ({})", up, pl.lit(TX_MISSING))
        widened = up > pl.col(f"t_icaht_{w}_grade_max").fill_null(-1)
        out = out.with_columns(
            up.alias(f"t_icaht_{w}_grade_max"),
            pl.when(widened).then(pl.concat_str(pl.col(f"{w}_reason"), note)).otherwise(pl.col(f"{w}_reason"))
            .alias(f"{w}_reason"))
    return out.drop("_hi_early", "_hi_late")


def _derive_t_icaht(study: Study, options: TIcahtOptions | None = None, daily: pl.DataFrame | None = None,
                    split_dose_gap_days: float | None = None) -> pl.DataFrame:
    """Early and late T-ICAHT grade per subject (Rejeski 2025; see ``criteria/t_icaht_2025.yaml``).

    Columns: ``t_icaht_early_grade``/``t_icaht_late_grade`` (Int64, null when not evaluable),
    ``t_icaht_early_grade_max`` and ``early_unknown_days`` (the highest early grade possible had the
    window's days without a count been below every level, and how many such days),
    ``t_icaht_late_grade_max`` (the same for the late window; given also when the late window is not
    evaluable, empty only when it is empty; session 34), the
    early window's last day and why (``early_window_end``/``_end_reason``), the early durations
    ``plt_lt_<level>_days`` with ``_start``/``_end``/``_episodes``/``_recovery_days`` and
    ``early_transfusion_supported_days`` (days counted below 20 only because of a transfusion); the late window (``late_window_start``/``_end``/``_end_reason``),
    ``late_n_measurements``, ``late_plt_nadir`` and ``late_plt_confirmed`` (second lowest) with their
    days, ``late_n_plt_<level>`` (measurements below), ``late_plt_lt_20_days`` (+ ``_start``/``_end``/
    ``_episodes``/``_recovery_days``), ``late_transfusion_supported_days``;
    ``early_rule``/``early_reason``/``early_evidence``, the same for ``late_``, and the combined
    ``rule``, ``reason`` and ``evidence`` (PLAT, transfusion and censoring-event rows).
    ``daily``: the output of :func:`t_icaht_daily` with the same options, when already computed.
    ``split_dose_gap_days``: the analysis's ``kinetics.split_dose_gap_days`` (None: its default, 7), what
    makes a later CAR-T dose a re-infusion that ends both windows (option ``censor_doses``).
    """
    options = options or TIcahtOptions()
    opts = {**options.resolved(), "split_dose_gap_days": split_dose_gap_days}
    table = load_table(options.criteria)
    levels = hc.table_levels(table, "PLAT")
    sids = hc.subject_ids(study)
    if not sids:
        return empty({"subject_id": pl.String, "t_icaht_early_grade": pl.Int64, "t_icaht_late_grade": pl.Int64,
                      "rule": pl.String, "reason": pl.String, "evidence": EVIDENCE})
    daily = derive_t_icaht_daily(study, options, split_dose_gap_days) if daily is None else daily
    early_w, late_w = _windows(study, sids, opts)
    f = _window_features(daily, sids, opts, levels, "early", "").rename(
        {"transfusion_supported_days": "early_transfusion_supported_days"}).join(
        _window_features(daily, sids, opts, levels, "late", "late_"), on="subject_id", how="left", maintain_order="left")
    f = f.join(early_w.select("subject_id", pl.col("_el").cast(pl.Float64).alias("early_window_end"),
                              pl.col("why").alias("early_window_end_reason"), pl.col("evidence").alias("_early_w_ev")),
               on="subject_id", how="left", maintain_order="left").join(
        late_w.select("subject_id", pl.col("start").alias("late_window_start"), pl.col("end").alias("late_window_end"),
                      pl.col("why").alias("late_window_end_reason"), pl.col("evidence").alias("_late_w_ev")),
        on="subject_id", how="left", maintain_order="left")
    f = f.with_columns(
        pl.concat_list(pl.col("_ev"), "_early_w_ev").list.unique(maintain_order=True).alias("early_evidence"),
        pl.concat_list(pl.col("late__ev"), "_late_w_ev").list.unique(maintain_order=True).alias("late_evidence"),
    )
    nt_cols = [f"late_nontransient_plt_{n}" for n in levels]
    f = f.join(hc.nontransient_runs(daily, sids, opts, list(levels), "plt_lt_", "late_nontransient_plt_"),
               on="subject_id", how="left", maintain_order="left")
    f = f.with_columns(hc.grades(table, opts))
    f = f.join(_early_upper(daily, early_w, opts, levels, table, sids), on="subject_id", how="left",
               maintain_order="left").with_columns(pl.col("early_unknown_days").fill_null(0))
    need = int(opts["late_min_measurements"])
    # "Two or more laboratory tests or nontransient thrombocytopenia" (session 34: the second alternative)
    early_ok = pl.col("n_days") > 0
    late_ok = (pl.col("late_n_measurements") >= need) | pl.any_horizontal([pl.col(c) > 0 for c in nt_cols])
    f = f.join(late.late_upper_grade(daily, late_w, sids, opts, list(levels), table, value="plt", flag="plt_lt_",
                                out="late_nontransient_plt_", keep=("plt_censored", "below_by_transfusion"),
                                fills=(pl.col("below_by_transfusion").fill_null(False),),
                                features=lambda up: _window_features(up, sids, opts, levels, "late", "late_")),
               on="subject_id", how="left", maintain_order="left")
    # not evaluable: still the highest grade possible (missing is not negative; session 34: it was null)
    f = f.with_columns(late.window_grades("t_icaht", early_ok, late_ok))
    f = f.with_columns(late.nontransient_days(list(levels), "late_nontransient_plt_", "plt"))
    texts = table.texts(("early", "late"), opts)
    e_lv = _used(table, "early", r"plt_lt_(\w+)_days")
    l_lv = _used(table, "late", r"late_plt_lt_(\w+)_days")
    n_lv = sorted(levels, key=lambda n: -levels[n])
    # early days a transfusion supports after an own count not below the masked level: open there (session 33)
    masked = list(opts["transfusion_supported_levels"])
    is_open = (pl.col("transfusion_supported") & pl.col("plt").is_not_null()
               & pl.any_horizontal([pl.col(f"plt_lt_{n}").is_null() for n in masked] or [pl.lit(False)]))
    # interventions.csv not given (option absent_interventions): counts after one below 20 left open
    unknown_tx = (~pl.col("transfusion_supported") & pl.col("plt").is_not_null()
                  & pl.any_horizontal([pl.col(f"plt_lt_{n}").is_null() for n in masked] or [pl.lit(False)]))
    open_days = daily.group_by("subject_id").agg(
        (is_open & (pl.col("window") == "early")).sum().cast(pl.Int64).alias("_tx_open"),
        (is_open & (pl.col("window") == "late")).sum().cast(pl.Int64).alias("_tx_open_late"),
        (unknown_tx & (pl.col("window") == "early")).sum().cast(pl.Int64).alias("_tx_unknown"),
        (unknown_tx & (pl.col("window") == "late")).sum().cast(pl.Int64).alias("_tx_unknown_late"))
    f = f.join(open_days, on="subject_id", how="left", maintain_order="left").with_columns(
        pl.col(c).fill_null(0) for c in ("_tx_open", "_tx_open_late", "_tx_unknown", "_tx_unknown_late"))

    def tx_open_text(col: str) -> pl.Expr:
        return pl.concat_str(pl.when(pl.col(col) > 0).then(pl.format(
            "; {} day(s) follow a platelet transfusion given when the own count was not below {} (or not measured), "
            "so whether they are below it is open", hc.py_str(pl.col(col)),
            pl.lit("/".join(hc.fmt(levels[n]) for n in masked)))).otherwise(pl.lit("")),
            pl.when(pl.col(col.replace("open", "unknown")) > 0).then(pl.format(
                "; {} day(s) with a count not below {} after one below it could have followed a platelet transfusion "
                "({}), so whether they are below it is open", hc.py_str(pl.col(col.replace("open", "unknown"))),
                pl.lit("/".join(hc.fmt(levels[n]) for n in masked)), pl.lit(TX_MISSING))).otherwise(pl.lit("")))

    tx_open = tx_open_text("_tx_open")
    # what leaves a higher grade open: days without a count, censored results whose bound leaves a deeper
    # level open (session 36: they were not named), days after a transfusion
    n_missing = pl.col("early_unknown_days") - pl.col("_early_gap_days").fill_null(0)
    gaps = pl.when(n_missing > 0).then(pl.format(
        "{} day(s) of the early window have no platelet count (measured or interpolated) and are not counted",
        hc.py_str(n_missing)))
    cens = pl.when(pl.col("_open").fill_null("") != "").then(pl.format(
        "the censored result(s) {} leave a deeper level open", pl.col("_open")))
    tx = pl.when(tx_open != "").then(tx_open.str.strip_prefix("; "))
    could = pl.format(" Could be up to grade {}: {}; had they been below every level, the grade would be that.",
                      hc.py_str(pl.col("t_icaht_early_grade_max")),
                      pl.concat_str(gaps, late.gap_range_text("early", "platelet count", opts), cens, tx,
                                    separator="; ", ignore_nulls=True))
    f = f.with_columns(
        pl.concat_str(_early_reason(opts, levels, e_lv, texts),
                      pl.when((pl.col("t_icaht_early_grade_max") > pl.col("t_icaht_early_grade"))
                           | (pl.col("t_icaht_early_grade").is_null() & pl.col("t_icaht_early_grade_max").is_not_null()))
                      .then(could)
                      .otherwise(pl.lit(""))).alias("early_reason"),
        pl.concat_str(_late_reason(opts, levels, l_lv, n_lv, texts), pl.when(
            pl.col("t_icaht_late_grade_max") > pl.col("t_icaht_late_grade")).then(pl.format(
                " Could be up to grade {}: days of the late window without a platelet count{} are not counted{}{}; had "
                "they been below every level, the grade would be that.", hc.py_str(pl.col("t_icaht_late_grade_max")),
                pl.when(pl.col("_late_open").fill_null("") != "").then(pl.format(
                    " and the censored result(s) {} (their bound leaves a deeper level open)",
                    pl.col("_late_open"))).otherwise(pl.lit("")),
                pl.concat_str(pl.lit("; "), late.gap_range_text("late", "platelet count", opts)).fill_null(""),
                tx_open_text("_tx_open_late")))
            .when(pl.col("t_icaht_late_grade").is_null() & pl.col("t_icaht_late_grade_max").is_not_null())
            .then(late.late_range_text("t_icaht_late_grade", "t_icaht_late_grade_max",
                                  "platelet count (measured or interpolated)",
                                  "no day of the late window lacks a count but a second test is missing",
                                  tx_open_text("_tx_open_late"), opts, "platelet count")).otherwise(pl.lit("")))
        .alias("late_reason"))
    f = f.with_columns(
        # a grade 0 names its row (t_icaht.<window>.g0), not_evaluable only an empty grade (review s36 A1)
        *late.window_rules(table, "t_icaht"),
        pl.concat_str(pl.lit("Early: "), pl.col("early_reason"), pl.lit(" Late: "), pl.col("late_reason")).alias("reason"),
        pl.concat_list("early_evidence", "late_evidence").list.unique(maintain_order=True).alias("evidence"),
    )
    dur = ("days", "start", "end", "episodes", "recovery_days")
    cols = (["subject_id", "t_icaht_early_grade", "t_icaht_late_grade", "t_icaht_early_grade_max", "early_unknown_days",
             "t_icaht_late_grade_max",
             "early_window_end", "early_window_end_reason"]
            + [f"plt_lt_{n}_{c}" for n in e_lv for c in dur] + ["early_transfusion_supported_days"]
            + ["late_window_start", "late_window_end", "late_window_end_reason", "late_n_measurements",
               "late_plt_nadir", "late_plt_nadir_day", "late_plt_confirmed", "late_plt_confirmed_day"]
            + [f"late_n_plt_{n}" for n in n_lv] + [f"late_plt_lt_{n}_{c}" for n in l_lv for c in dur]
            + ["late_transfusion_supported_days", "late_nontransient_days", "early_rule", "early_reason", "early_evidence",
               "late_rule", "late_reason", "late_evidence", "rule", "reason", "evidence"])
    return f.select(cols).cast({"t_icaht_early_grade": pl.Int64, "t_icaht_late_grade": pl.Int64,
                                "t_icaht_early_grade_max": pl.Int64,
                                "late_plt_nadir_day": pl.Int64, "late_plt_confirmed_day": pl.Int64,
                                "early_evidence": EVIDENCE, "late_evidence": EVIDENCE, "evidence": EVIDENCE})


def _sym(opts: dict) -> str:
    return "<=" if opts["inclusive"] else "<"


def _tx_text(days: str, opts: dict) -> pl.Expr:
    """The days counted below a level only because of a platelet transfusion ("" when none)."""
    n = pl.col(days)
    return pl.when(n.fill_null(0) == 0).then(pl.lit("")).otherwise(pl.format(
        f"; {{}} day(s) counted below {'/'.join(opts['transfusion_supported_levels'])} although the count was not, "
        f"a platelet transfusion within {opts['platelet_transfusion_free_days']} days (not a recovery)", hc.py_str(n)))


def _early_reason(opts: dict, levels: dict[str, float], names: list[str], texts: dict[str, str]) -> pl.Expr:
    lo, hi = opts["early_window"]
    last, why = pl.col("early_window_end").cast(pl.Int64), hc.py_str(pl.col("early_window_end_reason"))
    win = pl.concat_str(pl.lit(f"days {lo}-"), hc.py_str(last), pl.when(why != f"day {hi:g}")
                        .then(pl.format(" (censored: {})", why)).otherwise(pl.lit("")))
    parts = [duration_text(f"plt_lt_{n}", f"PLT {_sym(opts)} {hc.fmt(levels[n])}", opts) for n in names]
    return (pl.when(last < lo).then(pl.format("not evaluable: the early window is empty (censored: {}).", why))
            .when(pl.col("n_days").fill_null(0) == 0)
            .then(pl.format("not evaluable: no platelet count in {} (measured or interpolated).", win))
            .otherwise(pl.concat_str(win, pl.lit(": "), pl.concat_str(parts, separator="; "),
                                     late.gap_below_text("early", [(f"plt_lt_{n}", f"{_sym(opts)} {hc.fmt(levels[n])}")
                                                                 for n in names], opts),
                                     _tx_text("early_transfusion_supported_days", opts), pl.lit(" -> grade "),
                                     hc.py_str(pl.col("t_icaht_early_grade")), pl.lit(" ("),
                                     rule_texts(texts, "early_rule", "no T-ICAHT criterion met"), pl.lit(")."))))


def _late_reason(opts: dict, levels: dict[str, float], dur_names: list[str], names: list[str],
                 texts: dict[str, str]) -> pl.Expr:
    win, empty, is_empty = late.late_window_text("late_window_start", "late_window_end", "late_window_end_reason")
    n, need = pl.col("late_n_measurements"), int(opts["late_min_measurements"])
    counts = pl.concat_str([pl.concat_str(hc.py_str(pl.col(f"late_n_plt_{x}")), pl.lit(f" {_sym(opts)} {hc.fmt(levels[x])}"))
                            for x in names], separator=", ")
    durs = [duration_text(f"late_plt_lt_{x}", f"PLT {_sym(opts)} {hc.fmt(levels[x])}", opts) for x in dur_names]
    nt = late.nontransient_text(opts, "thrombocytopenia", "below")
    return (pl.when(is_empty).then(empty)
            .when(pl.col("t_icaht_late_grade").is_null()).then(pl.format(
                f"not evaluable: {{}} platelet measurement(s) in {{}}, {need} needed{nt}.",
                hc.py_str(n), win))
            .otherwise(pl.concat_str(
                hc.py_str(n), pl.lit(" measurements in "), win, pl.lit(", of which "), counts, pl.lit("; "),
                late.late_lowest_text(n, "PLT", "late_plt"), pl.lit("; "), pl.concat_str(durs, separator="; ") if durs else pl.lit(""),
                late.gap_below_text("late", [(f"plt_lt_{x}", f"{_sym(opts)} {hc.fmt(levels[x])}") for x in dur_names], opts),
                _tx_text("late_transfusion_supported_days", opts), late.nontransient_days_text(), pl.lit(" -> grade "),
                hc.py_str(pl.col("t_icaht_late_grade")), pl.lit(" ("),
                rule_texts(texts, "late_rule", "no T-ICAHT criterion met"), pl.lit(")."))))


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
__getattr__ = renamed(__name__, "t_icaht", "t_icaht_daily")
