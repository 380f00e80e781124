"""ICAHT, neutrophil grading (N-ICAHT; EHA/EBMT 2023, Rejeski et al., Blood 2023;142:865).

Thresholds and rules live in ``criteria/icaht_2023.yaml``; the code evaluates them. Early ICAHT
(days 0-30) grades the cumulative days of ANC at or below 0.5 and 0.1 x10^9/L (days between
measurements linearly interpolated, non-stable recoveries < 3 days counted; the longest run is an
option; the window ends at day 30 or death, option ``never_above_window_end``), late ICAHT (day 31
to the earliest of day 100, relapse, new therapy, allo-HSCT, death or last follow-up) the worst ANC
level reached by at least two measurements on different days "or nontransient neutropenia" (a run at
or below the level continuing from the early window or lasting >= 3 days between its first and last
recorded ANC, option ``nontransient_length``; the T-ICAHT footnote's words).

>>> from cartlab.datasets import seed_case
>>> derive_icaht(seed_case())["icaht_early_grade"].to_list()
[3]
"""

from __future__ import annotations

import re
import warnings
from typing import Any, Literal

import polars as pl

from cartlab._days import day_expr
from cartlab._deprecated import renamed
from cartlab.criteria import CriteriaTable, load_table
from cartlab.errors import SubjectsWarning
from cartlab.grading.hemato_common import (
    CountWindowOptions,
    EndDoses,
    Number,
    below_durations,
    censored_flag,
    censored_text,
    daily_series,
    day_ranges,
    dose_ends,
    early_upper_grade,
    empty,
    event_windows,
    fmt,
    grades,
    in_window,
    nadir_exprs,
    nadir_key,
    nontransient_runs,
    py_str,
    recorded_day,
    rule_features,
    subject_ids,
    table_levels,
    windows_frame,
)
from cartlab.grading.hemato_late import (
    gap_below_text,
    gap_days,
    gap_range_text,
    gcsf_days_text,
    late_lowest_text,
    late_range_text,
    late_upper_grade,
    late_window_text,
    long_gap_day,
    nontransient_days,
    nontransient_days_text,
    nontransient_text,
    window_grades,
    window_rules,
)
from cartlab.grading.icaht_absent import late_end_unknown, late_range
from cartlab.io.absent_files import EVENTS_NOT_GIVEN, events_absent
from cartlab.model import Study
from cartlab.provenance import EVIDENCE, evidence_ref

#: the ADAE terms of the early and late ICAHT episodes (:func:`derive_icaht_episodes`)
EARLY_TERM = "Immune effector cell-associated hematotoxicity, early (days 0-30)"
LATE_TERM = "Immune effector cell-associated hematotoxicity, late (after day 30)"

__all__ = ["EARLY_TERM", "LATE_TERM", "IcahtOptions", "derive_icaht", "derive_icaht_daily", "derive_icaht_episodes",
           "derive_icaht_summary", "early_level_columns"]


class IcahtOptions(CountWindowOptions):
    """Options of ICAHT grading; ``None`` means the criteria table's default (its ``defaults``, whose
    comments document each option: the table below is generated from them). Early durations are
    cumulative by default (the EHA/EBMT logic restated in Rejeski 2025, T-ICAHT Table 1 footnote)."""

    never_above_requires_full_window: bool | None = None
    never_above_bridges_nonstable: bool | None = None
    never_above_data_from_day: Number | None = None
    never_above_window_end: Literal["death", "death_or_last_followup"] | None = None
    early_censor_events: tuple[str, ...] | None = None
    late_end_events_from_day: Number | None = None
    late_end_doses: EndDoses | None = None
    late_nontransient: bool | None = None
    absent_events: Literal["unknown", "shortest_window", "none_happened"] | None = None
    late_episode_span: Literal["qualifying_measurements", "window"] | None = None
    criteria: str = "icaht_2023"

    def __post_init__(self) -> None:
        from cartlab.io.schema import EVENTS

        ev = self.early_censor_events
        bad = [e for e in (ev or ()) if e not in EVENTS]
        if bad or (ev is not None and "death" not in ev):  # a misspelt event would silently censor nothing
            raise ValueError(f"early_censor_events: {', '.join(map(repr, bad)) or repr(list(ev or ()))}: choose events "
                             f"of events.csv from {', '.join(EVENTS)}, death included (the early window always ends "
                             "at death)")


def _early_level_names(table: CriteriaTable, levels: dict[str, float]) -> list[str]:
    """Levels the early rules refer to (``anc_le_<level>_days`` / ``never_above_<level>``), deepest last."""
    used = set()
    for feature in rule_features(table.rule_set("early")):
        m = re.fullmatch(r"(?:anc_le_(\w+)_days|never_above_(\w+))", feature)
        if m:
            used.add(m.group(1) or m.group(2))
    return sorted(used, key=lambda n: -levels[n])


def early_level_columns(options: IcahtOptions | None = None) -> list[str]:
    """The daily series' flag columns (``anc_le_<level>``) the early grade reads, deepest last
    (session 38, review s38 C2: ``cartlab explain`` lists only these on early days)."""
    table = load_table((options or IcahtOptions()).criteria)
    return [f"anc_le_{n}" for n in _early_level_names(table, table_levels(table, "NEUT"))]


def _late_windows(study: Study, opts: dict[str, Any]) -> pl.DataFrame:
    return event_windows(study, subject_ids(study), opts["late_start_day"], opts["late_end_day"],
                         opts["late_end_events"], opts["late_end_at_last_followup"],
                         min_event_day=opts["late_end_events_from_day"],
                         doses=dose_ends(study, opts["late_end_doses"], opts.get("split_dose_gap_days")))  # review 45 F2


def derive_icaht_daily(study: Study, options: IcahtOptions | None = None,
                       split_dose_gap_days: float | None = None) -> pl.DataFrame:
    """The daily ANC series ICAHT is graded on, one row per subject and calendar day.

    Columns: ``day``, ``anc`` (10^9/L), ``source`` (measured | interpolated | missing),
    ``prev_day``/``next_day`` (interpolation neighbours), ``window`` (early | late | None),
    ``anc_le_<level>`` flags for every level of the criteria table, ``reason`` and ``evidence`` (the
    NEUT row of the day, or the two neighbouring rows an interpolated value comes from).
    """
    options = options or IcahtOptions()
    opts = {**options.resolved(), "split_dose_gap_days": split_dose_gap_days}
    levels = table_levels(load_table(options.criteria), "NEUT")
    daily = daily_series(study, "NEUT", opts, "ANC").rename({"value": "anc"})
    lo, hi = opts["early_window"]
    cut = _early_ends(study, subject_ids(study), opts).select("subject_id", "_early_cut", "_early_end_why")
    early_day = (pl.col("day") >= lo) & (pl.col("day") <= hi) & (pl.col("_early_cut").is_null()
                                                                  | (pl.col("day") <= pl.col("_early_cut")))
    daily = daily.join(windows_frame(_late_windows(study, opts)), on="subject_id", how="left",
                       maintain_order="left").join(cut, on="subject_id", how="left", maintain_order="left")
    # session 45 (review 45 F1, option early_censor_events): a day of a censored early window
    # interpolated toward an ANC after the censoring has no value (as T-ICAHT's censored windows)
    nxt = pl.when(recorded_day()).then(pl.col("day")).backward_fill().over("subject_id")
    leak = (early_day & (pl.col("source") == "interpolated") & (nxt > pl.col("_early_cut"))).fill_null(False)
    daily = daily.with_columns(
        pl.when(leak).then(None).otherwise(pl.col("anc")).alias("anc"),
        pl.when(leak).then(pl.lit("missing")).otherwise(pl.col("source")).alias("source"),
        pl.when(leak).then(pl.format(
            "no ANC: the next count (day {}) is after the early window's censored end (day {}: {}) and is not used",
            nxt, pl.col("_early_cut"), pl.col("_early_end_why"))).otherwise(pl.col("reason")).alias("reason"),
        pl.when(leak).then(pl.lit([], dtype=EVIDENCE)).otherwise(pl.col("evidence")).alias("evidence"),
    ).with_columns(
        pl.when(early_day).then(pl.lit("early"))
        .when(in_window(opts["late_window_end_inclusive"])).then(pl.lit("late"))
        .otherwise(pl.lit(None, dtype=pl.String)).alias("window"),
        # a censored result ("<0.1") is at or below a level when its bound says so, unknown otherwise
        *[pl.when(pl.col("anc").is_not_null()).then(pl.col("anc") <= thr if opts["inclusive"] else pl.col("anc") < thr)
          .otherwise(censored_flag(pl.col("censor"), pl.col("censor_limit"), thr, opts["inclusive"]))
          .alias(f"anc_le_{name}") for name, thr in levels.items()],
        censored_text(pl.col("censor"), pl.col("censor_limit")).alias("anc_censored"),
    )
    cols = ["subject_id", "day", "anc", "anc_censored", "source", "prev_day", "next_day", "window"]
    cols += [f"anc_le_{n}" for n in levels] + ["reason", "evidence"]
    return daily.select(cols)  # in subject and day order (daily_series)


def _early_ends(study: Study, sids: list[str], opts: dict[str, Any]) -> pl.DataFrame:
    """Per subject: ``_early_end``, the last day of the early window ("never above the level in days
    0-30" is judged up to it): the earliest of day 30 and death, and with the option
    ``never_above_window_end=death_or_last_followup`` (Liang's min(30, last follow-up)) the last
    follow-up day too (session 40, review s40 A1: a living subject whose follow-up ends on day 5 was
    grade 4 from 6 days of data). With option ``early_censor_events`` beyond death (session 45, review
    45 F1; the T-ICAHT footnote's "censoring at the time of disease progression, subsequent line of
    therapy, or death") the first of those events on or after day 0 - and, with ``new_therapy`` among
    them, the first new CAR-T course of doses.csv (option ``late_end_doses``) - ends it too
    (``_early_cut``: its day, null when no such event cuts the window). ``_early_end_why`` (day 30 |
    death | last follow-up | the event), ``_lfu`` (the last follow-up day), ``_death`` and ``_end_ev``
    (the row of the death or event ending the window)."""
    lo, hi = (int(x) for x in opts["early_window"])
    with_lfu = opts["never_above_window_end"] == "death_or_last_followup"
    death = (study.events.filter((pl.col("event") == "death") & pl.col("day").is_not_null())
             .with_columns(evidence_ref().alias("_ref")).sort("day")
             .group_by("subject_id", maintain_order=True)
             .agg(pl.col("day").first().floor().cast(pl.Int64).alias("_death"), pl.col("_ref").first()))
    lfu = (study.subjects.unique("subject_id", keep="last").filter(pl.col("last_followup_day").is_not_null())
           .select("subject_id", pl.col("last_followup_day").floor().cast(pl.Int64).alias("_lfu")))
    cuts = _early_cut_rows(study, opts, [e for e in opts["early_censor_events"] if e != "death"]).filter(
        pl.col("day") >= lo).group_by("subject_id", maintain_order=True).agg(
        pl.col("day").first().floor().cast(pl.Int64).alias("_cut"), pl.col("why").first().alias("_cut_why"),
        pl.col("ref").first().alias("_cut_ref"))
    dth = pl.col("_death")  # death always ends it (IcahtOptions refuses early_censor_events without it)
    end = pl.min_horizontal(pl.lit(hi, dtype=pl.Int64), dth, "_cut", *(["_lfu"] if with_lfu else []))
    by_death, by_cut = dth <= end, pl.col("_cut") <= end
    return (pl.DataFrame({"subject_id": sids}, schema={"subject_id": pl.String})
            .join(death, on="subject_id", how="left", maintain_order="left")
            .join(lfu, on="subject_id", how="left", maintain_order="left")
            .join(cuts, on="subject_id", how="left", maintain_order="left")
            .select("subject_id", end.alias("_early_end"), pl.when(by_death).then(pl.lit("death"))
                    .when(by_cut).then(pl.col("_cut_why"))
                    .when(pl.lit(with_lfu) & (pl.col("_lfu") <= end)).then(pl.lit("last follow-up"))
                    .otherwise(pl.lit(f"day {hi}")).alias("_early_end_why"), "_lfu",
                    dth.alias("_death"), pl.when(by_cut & ~by_death.fill_null(False)).then(pl.col("_cut"))
                    .alias("_early_cut"),
                    pl.when(by_death).then(pl.concat_list(pl.col("_ref")))
                    .when(by_cut).then(pl.concat_list(pl.col("_cut_ref")))
                    .otherwise(pl.lit([], dtype=EVIDENCE)).list.drop_nulls().alias("_end_ev")))


#: the events of the T-ICAHT footnote's early censoring other than death (option early_censor_events)
_CENSORABLE = ("relapse", "new_therapy", "allo_hsct")


def _early_cut_rows(study: Study, opts: dict[str, Any], events: list[str]) -> pl.DataFrame:
    """``subject_id``, ``day``, ``why`` (the event, or the dose's text), ``ref``: the rows of ``events``
    on or after day 0 and, with ``new_therapy`` among them, the new CAR-T courses of doses.csv (option
    ``late_end_doses``: a re-infusion or a lymphodepletion dose on or after day 1), sorted by day."""
    ev = study.events.filter(pl.col("event").is_in(events) & pl.col("day").is_not_null() & (pl.col("day") >= 0))
    parts = [ev.select("subject_id", pl.col("day").cast(pl.Float64), pl.col("event").cast(pl.String).alias("why"),
                       evidence_ref().alias("ref"))]
    if "new_therapy" in events:
        parts.append(dose_ends(study, opts["late_end_doses"], opts.get("split_dose_gap_days")).select("subject_id", "day", "why", "ref"))
    return pl.concat(parts).sort("subject_id", "day")


def _uncensored_early(study: Study, sids: list[str], opts: dict[str, Any], ends: pl.DataFrame) -> pl.DataFrame:
    """``subject_id``, ``_early_uncensored`` (text) and ``_early_unc_refs``: the relapses, new therapies,
    allo-HSCTs and new CAR-T courses (doses.csv) inside the early window that option
    ``early_censor_events`` does not censor at (default ``[death]``, the spec's days 0-30; review 45 F1)."""
    events = [e for e in _CENSORABLE if e not in opts["early_censor_events"]]
    rows = _early_cut_rows(study, opts, events).join(ends.select("subject_id", "_early_end"), on="subject_id", how="inner").filter(
        (pl.col("day") >= float(opts["early_window"][0])) & (pl.col("day").floor() <= pl.col("_early_end")))
    return rows.sort("subject_id", "day").group_by("subject_id", maintain_order=True).agg(
        pl.format("{} on day {}{}", pl.col("why"), day_expr(pl.col("day")),
                  pl.when(pl.col("ref").is_not_null() & ~pl.col("why").str.contains("doses.csv", literal=True))
                  .then(pl.format(" ({})", pl.col("ref"))).otherwise(pl.lit(""))).str.join(", ").alias("_early_uncensored"),
        pl.col("ref").drop_nulls().alias("_early_unc_refs"))


def _early_features(daily: pl.DataFrame, sids: list[str], opts: dict[str, Any],
                    levels: dict[str, float], ends: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per subject: days with an ANC in the early window, evidence, and per level the duration
    (``anc_le_<level>_days``/``_start``/``_end``/``_episodes``/``_recovery_days``/``_joined``) and
    ``never_above_<level>``. ``ends``: :func:`_early_ends` (without it: day 30 for every subject)."""
    lo, hi = opts["early_window"]
    sid = pl.DataFrame({"subject_id": sids}, schema={"subject_id": pl.String})
    ends = (sid.with_columns(pl.lit(int(hi), dtype=pl.Int64).alias("_early_end"),
                             pl.lit(None, dtype=pl.Int64).alias("_early_cut")) if ends is None
            else sid.join(ends.select("subject_id", "_early_end", "_early_cut"), on="subject_id", how="left",
                          maintain_order="left"))
    # days after an early_censor_events event are not in the window (session 45, review 45 F1)
    cut = ends.filter(pl.col("_early_cut").is_not_null()).select("subject_id", "_early_cut")
    win = daily.filter(pl.col("day").is_between(lo, hi))
    if cut.height:
        win = win.join(cut, on="subject_id", how="left", maintain_order="left").filter(
            pl.col("_early_cut").is_null() | (pl.col("day") <= pl.col("_early_cut"))).drop("_early_cut")
    known = win.filter(pl.col("anc").is_not_null() | pl.col("anc_censored").is_not_null())
    known = known.join(ends, on="subject_id", how="left")
    out = ends.join(
        known.group_by("subject_id").agg(
            pl.len().alias("early_n_days"), pl.col("day").min().alias("_first_day"),
            (pl.col("day") <= pl.col("_early_end")).sum().alias("_n_to_end"),
            pl.col("evidence").list.explode(keep_nulls=False, empty_as_null=False).drop_nulls().unique(maintain_order=True).alias("early_evidence"),
            # a censored day whose bound leaves the level open is not "never above" for sure
            *[pl.col(f"anc_le_{n}").fill_null(False).all().alias(f"_all_{n}") for n in levels],
            *[pl.col(f"anc_le_{n}").fill_null(False).sum().alias(f"_nbelow_{n}") for n in levels],
        ), on="subject_id", how="left", maintain_order="left",
    ).with_columns(pl.col("early_n_days").fill_null(0),
                   pl.col("early_evidence").fill_null(pl.lit([], dtype=EVIDENCE)))
    # "never above" (Liang: an episode starting day 0-3 that does not end) needs the data to start by
    # never_above_data_from_day (day 0 with never_above_requires_full_window) and every day from there
    # to the window's end E - the earliest of day 30, death and last follow-up - known (session 34,
    # review s34 D1/D2: one ANC of 0.5 on day 1 was grade 4 with days 2-30 unknown; an early death
    # in aplasia is 4 with the option too). Missing is not negative.
    frm = pl.lit(lo, dtype=pl.Int64) if opts["never_above_requires_full_window"] else pl.col("_first_day")
    starts = ((pl.col("_first_day") <= float(opts["never_above_data_from_day"]))
              & (pl.col("_first_day") <= pl.col("_early_end")))
    if opts["never_above_requires_full_window"]:
        starts = pl.col("_first_day") == lo
    # a window censored before day 30 by an event other than death cannot show 'never above ... in days 0-30'
    complete = (starts & (pl.col("_n_to_end") == pl.col("_early_end") - frm + 1)
                & pl.col("_early_cut").is_null()).fill_null(False)
    bridges = bool(opts.get("never_above_bridges_nonstable"))
    for name in levels:
        d = below_durations(win, f"anc_le_{name}", int(opts["stable_recovery_days"]),
                            bool(opts["count_recovery_days_in_run"]), opts["duration"])
        out = out.join(d.rename({c: f"anc_le_{name}_{c}" for c in d.columns if c != "subject_id"}),
                       on="subject_id", how="left", maintain_order="left")
        # session 48 (review 48 F3): the days of non-stable recoveries (< stable_recovery_days, between two
        # runs at or below the level), which option never_above_bridges_nonstable reads as not above it
        nonstable = below_durations(win, f"anc_le_{name}", int(opts["stable_recovery_days"]), True, "cumulative")
        out = out.join(nonstable.select("subject_id", pl.col("recovery_days").alias(f"_nonstable_{name}")),
                       on="subject_id", how="left", maintain_order="left")
        n = pl.col("early_n_days")
        literal = (n > 0) & pl.col(f"_all_{name}").fill_null(False)
        bridged = (n > 0) & ((pl.col(f"_nbelow_{name}") + pl.col(f"_nonstable_{name}").fill_null(0)) == n).fill_null(False)
        low, other = (bridged, literal) if bridges else (literal, bridged)
        out = out.with_columns((low & complete).alias(f"never_above_{name}"),
                               # every known day at or below the level, but not up to E (the reason says so)
                               (low & ~complete).alias(f"_never_open_{name}"),
                               (other & complete).alias(f"_never_above_other_{name}"))
    return out.drop([f"_all_{n}" for n in levels] + [f"_nbelow_{n}" for n in levels]
                    + ["_first_day", "_n_to_end", "_early_cut"])


def _early_upper(study: Study, daily: pl.DataFrame, sids: list[str], opts: dict[str, Any],
                 levels: dict[str, float], table: CriteriaTable, ends: pl.DataFrame) -> pl.DataFrame:
    """The highest early grade the data leave possible: the grade with every day of the early window
    without an ANC (measured or interpolated) read as below every level, up to death (missing is not
    negative: one normal ANC on day 28 does not show days 0-27 were normal), and so every day
    interpolated across a gap longer than ``range_interpolation_gap_days`` (session 48, review 48 F1).
    ``early_unknown_days`` counts both, ``_early_unknown_list`` names the days without an ANC ("0, 2-30"),
    ``_early_gap_list`` the gap days (:func:`~cartlab.grading.hemato_common.gap_days`)."""
    lo, hi = (int(x) for x in opts["early_window"])
    death = (study.events.filter((pl.col("event") == "death") & pl.col("day").is_not_null())
             .group_by("subject_id").agg(pl.col("day").min().floor().cast(pl.Int64).alias("_death")))
    grid = (pl.DataFrame({"subject_id": sids}, schema={"subject_id": pl.String})
            .join(death, on="subject_id", how="left")
            .join(ends.select("subject_id", "_early_cut"), on="subject_id", how="left")  # option early_censor_events
            .with_columns(pl.int_ranges(lo, pl.min_horizontal(pl.col("_death").fill_null(hi), pl.lit(hi), "_early_cut")
                                        + 1).alias("day")).explode("day").drop("_death", "_early_cut").drop_nulls("day"))
    flags = [f"anc_le_{n}" for n in levels]
    day = daily.filter(pl.col("day").is_between(lo, hi)).select("subject_id", "day", "anc", "anc_censored", "evidence",
                                                                  "source", "prev_day", "next_day", *flags)
    # session 48 (review 48 F1): days interpolated across a gap longer than range_interpolation_gap_days
    # are unknown here (the grade keeps them); named apart from the days without any ANC
    gap = long_gap_day(opts)
    gaps = gap_days(day.join(grid, on=["subject_id", "day"], how="semi"), opts, flags, "early")
    known = day.filter(pl.col("anc").is_not_null() | pl.any_horizontal([pl.col(c).is_not_null() for c in flags]))
    unknown = day_ranges(grid.join(known.select("subject_id", "day"), on=["subject_id", "day"], how="anti"),
                         "_early_unknown_list")
    day = day.with_columns(*[pl.when(gap).then(None).otherwise(pl.col(c)).alias(c) for c in ("anc", *flags)])
    # censored results whose bound leaves a deeper level open (session 36: named as the late window's are)
    open_ = (pl.col("anc").is_null() & pl.col("anc_censored").is_not_null()
             & pl.any_horizontal([pl.col(c).is_null() for c in flags]))
    opened = (day.join(grid, on=["subject_id", "day"], how="semi").filter(open_).sort("subject_id", "day")
              .group_by("subject_id", maintain_order=True)
              .agg(pl.format("{} on day {}", pl.col("anc_censored"), pl.col("day")).str.join(", ").alias("_early_open")))
    return (early_upper_grade(grid, day.drop("source", "prev_day", "next_day"), "anc", flags,
                              lambda f: _early_features(f, sids, opts, levels, ends), table, opts)
            .join(unknown, on="subject_id", how="left", maintain_order="left")
            .join(gaps, on="subject_id", how="left", maintain_order="left")
            .join(opened, on="subject_id", how="left", maintain_order="left"))


def _warn_partial_never_above(f: pl.DataFrame, opts: dict[str, Any]) -> None:
    """Say which early grades rest on "never above" with the first days of the window unknown (the
    default ``never_above_requires_full_window=False``: data from day 1-3 on, Liang's reading)."""
    if opts["never_above_requires_full_window"]:
        return
    lo, hi = (int(x) for x in opts["early_window"])
    or_lfu = ", or last follow-up" if opts["never_above_window_end"] == "death_or_last_followup" else ""
    part = f.filter(pl.col("early_rule").str.contains("never_above").fill_null(False)
                    & (pl.col("early_n_days") < pl.col("_early_end") - lo + 1))
    if part.height:
        rows = part.select("subject_id", "early_n_days").rows()
        warnings.warn(SubjectsWarning(
            f"early ICAHT: {part.height} subject(s) graded by 'ANC never above the level in days {lo}-{hi}' with "
            "days before their first ANC unknown: {subjects}. Their data start by "
            f"day {opts['never_above_data_from_day']:g} and reach day {hi} (or death{or_lfu}) (Liang: an "
            "episode from day 0-3 that does not end); never_above_requires_full_window=true grades them by "
            "duration instead.", [r[0] for r in rows], "icaht.csv (early_rule, early_n_days)",
            labels=[f"{sid} ({n} d)" for sid, n in rows]), stacklevel=3)


def _late_features(daily: pl.DataFrame, opts: dict[str, Any], levels: dict[str, float],
                   wins: pl.DataFrame) -> pl.DataFrame:
    """Per subject (the rows of ``wins``): the late window, its measured ANCs (count, lowest and
    second lowest with their days, count at or below each level) and evidence."""
    sid = "subject_id"
    meas = daily.filter(recorded_day() & (pl.col("window") == "late"))
    # a censored result counts at the levels its bound settles (its flags), and is no nadir number:
    # it is ordered by its bound ("<0.5" as 0.5) and shown as written (session 32); at a level its
    # bound leaves open it counts toward the highest grade possible (late_n_anc_<level>_max)
    key = nadir_key("anc", "anc_censored")
    open_ = pl.any_horizontal([pl.col(f"anc_le_{name}").is_null() for name in levels])
    by_value = meas.sort(key, "day", nulls_last=True).group_by(sid, maintain_order=True).agg(
        pl.len().alias("late_n_measurements"), *nadir_exprs("anc", "anc_censored", "late_anc"),
        pl.format("{} on day {}", pl.col("anc_censored"), pl.col("day")).filter(open_).sort_by(
            pl.col("day").filter(open_)).str.join(", ").alias("_late_open"),
        *[pl.col(f"anc_le_{name}").fill_null(False).sum().alias(f"late_n_anc_{name}") for name in levels],
        *[pl.col(f"anc_le_{name}").fill_null(True).sum().alias(f"_late_max_n_{name}") for name in levels],
        # the measurements at or below each level (the late grade's qualifying tests: its episode span)
        *[e for name in levels for e in (
            pl.col("day").filter(pl.col(f"anc_le_{name}").fill_null(False)).min().alias(f"_late_first_{name}"),
            pl.col("day").filter(pl.col(f"anc_le_{name}").fill_null(False)).max().alias(f"_late_last_{name}"),
            day_expr(pl.col("day").filter(pl.col(f"anc_le_{name}").fill_null(False)).sort())
            .str.join(", ").alias(f"_late_days_{name}"))])
    refs = meas.sort("day").group_by(sid, maintain_order=True).agg(pl.col("evidence").explode().alias("_refs"))
    counts = ["late_n_measurements", *[f"late_n_anc_{name}" for name in levels]]
    return wins.join(by_value, on=sid, how="left", maintain_order="left").join(refs, on=sid, how="left", maintain_order="left").select(
        sid, pl.col("start").alias("late_window_start"), pl.col("end").alias("late_window_end"),
        pl.col("why").alias("late_window_end_reason"), pl.col("late_n_measurements").fill_null(0),
        "late_anc_nadir", "late_anc_nadir_day", "late_anc_confirmed", "late_anc_confirmed_day",
        pl.concat_list(pl.col("_refs").fill_null(pl.lit([], dtype=EVIDENCE)), "evidence").list.drop_nulls()
        .list.unique(maintain_order=True).alias("late_evidence"),
        *[pl.col(c).fill_null(0).cast(pl.Int64) for c in counts[1:]],
        "_late_anc_nadir_cs", "_late_anc_confirmed_cs", "_late_open",
        *[pl.col(f"_late_max_n_{name}").fill_null(0).cast(pl.Int64) for name in levels],
        *[f"_late_{k}_{name}" for name in levels for k in ("first", "last", "days")],
    ).with_columns(pl.col("late_n_measurements").cast(pl.Int64))


def _late_qualifying(levels: dict[str, float]) -> list[pl.Expr]:
    """``late_qualifying_start``/``_end``/``_n``/``_days``: the measured ANCs of the late window at or
    below the level of the late grade's rule (``icaht.late.g2_anc1000`` -> 1000/uL): the tests the grade
    rests on (Rejeski 2023: late ICAHT is graded from measurements after day 30, not an episode)."""
    rule = pl.col("late_rule").fill_null("")

    def pick(k: str) -> pl.Expr:
        e = pl.lit(None)
        for name in levels:
            e = pl.when(rule.str.contains(rf"^icaht\.late\.g\d_anc{name}(_|$)")).then(pl.col(f"_late_{k}_{name}")).otherwise(e)
        return e

    n = pl.lit(None, pl.Int64)
    for name in levels:
        n = pl.when(rule.str.contains(rf"^icaht\.late\.g\d_anc{name}(_|$)")).then(
            pl.col(f"late_n_anc_{name}").cast(pl.Int64)).otherwise(n)
    return [pick("first").cast(pl.Float64).alias("late_qualifying_start"),
            pick("last").cast(pl.Float64).alias("late_qualifying_end"),
            n.alias("late_qualifying_n"), pick("days").cast(pl.String).alias("late_qualifying_days")]


def _unknown_past_end(daily: pl.DataFrame, wins: pl.DataFrame, levels: dict[str, float],
                      end_inclusive: bool) -> pl.DataFrame:
    """``daily`` with the late days interpolated toward an ANC after the late window's end made unknown
    (as T-ICAHT's censored windows): a value after relapse or follow-up does not fill the window."""
    past = ((pl.col("window") == "late") & (pl.col("source") == "interpolated")
            & ((pl.col("next_day") > pl.col("_we")) if end_inclusive
               else (pl.col("next_day") >= pl.col("_we")))).fill_null(False)
    return (daily.join(windows_frame(wins), on="subject_id", how="left", maintain_order="left").with_columns(
        pl.when(past).then(None).otherwise(pl.col("anc")).alias("anc"),
        pl.when(past).then(pl.lit("missing")).otherwise(pl.col("source")).alias("source"),
        *[pl.when(past).then(None).otherwise(pl.col(f"anc_le_{n}")).alias(f"anc_le_{n}") for n in levels])
        .drop("_ws", "_we"))


def derive_icaht(study: Study, options: IcahtOptions | None = None, daily: pl.DataFrame | None = None,
                 split_dose_gap_days: float | None = None) -> pl.DataFrame:
    """Early and late ICAHT grade per subject (EHA/EBMT 2023; see ``criteria/icaht_2023.yaml``).

    Columns: ``icaht_early_grade``/``icaht_late_grade`` (Int64, null when not evaluable),
    ``icaht_early_grade_max`` (the highest early grade possible had the ``early_unknown_days`` of
    the window without an ANC been below every level; equal to the grade when the data settle it), the early
    durations ``anc_le_<level>_days`` (cumulative days by default, or the longest run) with the first
    and last day counted (``_start``/``_end``), the number of ``_episodes`` and the non-stable
    ``_recovery_days`` counted, ``never_above_500``, the late window
    (``late_window_start``/``_end``/``_end_reason``), ``late_n_measurements``, ``late_anc_nadir``
    (lowest) and ``late_anc_confirmed`` (the second lowest: the worst level reached by two
    measurements), ``early_rule``/``early_reason``/``early_evidence``, the same for ``late_``, and
    the combined ``rule``, ``reason`` and ``evidence`` (the NEUT rows used).
    ``daily``: the output of :func:`icaht_daily` with the same options, when already computed.
    ``split_dose_gap_days``: the analysis's ``kinetics.split_dose_gap_days`` (None: its default, 7), what
    makes a later CAR-T dose a re-infusion that ends the late window (option ``late_end_doses``).
    """
    options = options or IcahtOptions()
    if late_end_unknown(study, options.resolved()):  # events.csv not given: the late window's end is unknown
        return late_range(study, options, derive_icaht, "icaht", daily,  # (review 40 A2, icaht.conv.absent_events)
                          split_dose_gap_days=split_dose_gap_days)
    opts = {**options.resolved(), "split_dose_gap_days": split_dose_gap_days}
    table = load_table(options.criteria)
    levels = table_levels(table, "NEUT")
    sids = subject_ids(study)
    if not sids:
        return empty({"subject_id": pl.String, "icaht_early_grade": pl.Int64, "icaht_late_grade": pl.Int64,
                      "icaht_early_grade_max": pl.Int64, "early_unknown_days": pl.Int64,
                      "rule": pl.String, "reason": pl.String, "evidence": EVIDENCE})
    daily = derive_icaht_daily(study, options, split_dose_gap_days) if daily is None else daily
    ends = _early_ends(study, sids, opts)
    early = _early_features(daily, sids, opts, levels, ends)
    wins = _late_windows(study, opts)
    if events_absent(study):  # review 37 B1: the window's end assumes no relapse, new therapy or death
        wins = wins.with_columns(pl.concat_str("why", pl.lit(" (" + EVENTS_NOT_GIVEN.format(
            "relapse, new therapy, allo-HSCT or death") + ")")).alias("why"))
    late = _late_features(daily, opts, levels, wins)
    f = early.join(late, on="subject_id", how="left", maintain_order="left")
    # "Two or more laboratory tests or nontransient neutropenia" (session 34, as T-ICAHT's footnote)
    nt_cols = [f"late_nontransient_anc_{n}" for n in levels]
    late_daily = _unknown_past_end(daily, wins, levels, opts["late_window_end_inclusive"])
    f = f.join(nontransient_runs(late_daily, sids, opts, list(levels), "anc_le_", "late_nontransient_anc_"),
               on="subject_id", how="left", maintain_order="left")
    f = f.with_columns(grades(table, opts))
    # the early grade under the other reading of option never_above_bridges_nonstable (review 48 F3)
    other = f.with_columns(*[pl.col(f"_never_above_other_{n}").alias(f"never_above_{n}") for n in levels]).with_columns(
        grades(table, opts, ("early",))).get_column("early_grade")
    f = f.with_columns(other.alias("_other_early_grade"))
    f = f.join(_early_upper(study, daily, sids, opts, levels, table, ends), on="subject_id", how="left",
               maintain_order="left").join(ends.select("subject_id", "_early_end_why", "_lfu", "_end_ev", "_early_cut"),
                                           on="subject_id", how="left", maintain_order="left")
    f = f.join(_uncensored_early(study, sids, opts, ends), on="subject_id", how="left", maintain_order="left")
    # the death (or censoring event) row that ends the early window is evidence of the early grade (review
    # s40 B2), and so are the events inside it the window is not censored at (review 45 F1)
    f = f.with_columns(pl.concat_list("early_evidence", pl.col("_end_ev").fill_null(pl.lit([], dtype=EVIDENCE)),
                                      pl.col("_early_unc_refs").fill_null(pl.lit([], dtype=EVIDENCE)))
                       .list.unique(maintain_order=True).alias("early_evidence"))
    need = int(opts["late_min_measurements"])
    early_ok = pl.col("early_n_days") > 0
    late_ok = (pl.col("late_n_measurements") >= need) | pl.any_horizontal([pl.col(c) > 0 for c in nt_cols])
    # the highest late grade possible: days without an ANC read as tests below every level, censored
    # results at the levels their bounds leave open as at or below them (session 34, as T-ICAHT);
    # given also when the window is not evaluable, empty only when it is empty
    f = f.join(late_upper_grade(late_daily, wins, sids, opts, list(levels), table, value="anc", flag="anc_le_",
                                out="late_nontransient_anc_", censored="anc_censored",
                                features=lambda up: _late_features(up, opts, levels, wins)),
               on="subject_id", how="left", maintain_order="left")
    f = f.with_columns(window_grades("icaht", early_ok, late_ok))
    f = f.with_columns(nontransient_days(list(levels), "late_nontransient_anc_", "anc"))
    _warn_partial_never_above(f, opts)
    texts = table.texts(("early", "late"), opts)
    early_levels = _early_level_names(table, levels)
    never_used = [n for n in early_levels if f"never_above_{n}" in rule_features(table.rule_set("early"))]
    sym = "<=" if opts["inclusive"] else "<"
    lo, hi = opts["early_window"]
    # every known day at or below the level, but days up to E unknown: "never above" not established
    need_txt = (f"every day from day {lo}" if opts["never_above_requires_full_window"] else
                f"data from day {opts['never_above_data_from_day']:g} at the latest and every day from there")
    ends_txt = ("death and last follow-up" if opts["never_above_window_end"] == "death_or_last_followup"
                else "death")
    not_est = [pl.when(pl.col(f"_never_open_{n}")).then(pl.format(
        f"; ANC {sym} {fmt(levels[n])} on every day with data, but 'never above {fmt(levels[n])}' needs {need_txt} "
        f"to day {{}} (the earliest of day {hi} and {ends_txt}: {{}}; option never_above_window_end="
        f"{opts['never_above_window_end']}) known, so it is not established",
        pl.col("_early_end"), pl.col("_early_end_why"))) for n in never_used]
    # session 40 (review s40 A1): a living subject whose follow-up ends inside the window - named
    fu_end = pl.when(pl.col("_lfu") < pl.col("_early_end")).then(pl.format(
        "last follow-up on day {} (alive): days {}-{} not observed", pl.col("_lfu"), pl.col("_lfu") + 1,
        pl.col("_early_end")))
    n_missing = pl.col("early_unknown_days") - pl.col("_early_gap_days").fill_null(0)
    gaps = pl.when(n_missing > 0).then(pl.format(
        f"{{}} day(s) of days {lo}-{hi} ({{}}) have no ANC (measured or interpolated) and are not counted",
        py_str(n_missing), pl.lit("days ") + pl.col("_early_unknown_list")))
    cens = pl.when(pl.col("_early_open").fill_null("") != "").then(pl.format(
        "the censored result(s) {} leave a deeper level open", pl.col("_early_open")))
    never = (pl.concat_str(not_est, ignore_nulls=True) if not_est else pl.lit(""))
    never = pl.when(never != "").then(never.str.strip_prefix("; "))
    could = pl.format(" Could be up to grade {}: {}; had they been below every level, the grade would be that.",
                      py_str(pl.col("icaht_early_grade_max")),
                      pl.concat_str(gaps, gap_range_text("early", "ANC", opts), fu_end, cens, never, separator="; ",
                                    ignore_nulls=True))
    late_could = late_range_text(
        "icaht_late_grade", "icaht_late_grade_max", "ANC (measured or interpolated) and could each have been a test",
        "no day of the late window lacks an ANC",
        pl.when(pl.col("_late_open").fill_null("") != "").then(pl.format(
            " and the censored result(s) {} leave a deeper level open", pl.col("_late_open"))).otherwise(pl.lit("")),
        opts, "ANC")
    bridges = bool(opts["never_above_bridges_nonstable"])
    other_txt = pl.when((pl.col("_other_early_grade") != pl.col("icaht_early_grade")).fill_null(False)).then(pl.format(
        (" The literal reading (option never_above_bridges_nonstable=false: a day above the level is above it, even in a "
         "non-stable recovery) gives grade {}." if bridges else
         " The other reading (option never_above_bridges_nonstable=true, Liang et al.: a non-stable recovery (< "
         f"{opts['stable_recovery_days']} days) is no recovery, so 'never above' holds) gives grade {{}}."),
        pl.col("_other_early_grade"))).otherwise(pl.lit(""))
    f = f.with_columns(
        pl.concat_str(_early_reason(opts, levels, early_levels, never_used, texts, sym), other_txt,
                      pl.when((pl.col("icaht_early_grade_max") > pl.col("icaht_early_grade"))
                           | (pl.col("icaht_early_grade").is_null() & pl.col("icaht_early_grade_max").is_not_null()))
                      .then(could)
                      .otherwise(pl.lit(""))).alias("early_reason"),
        pl.concat_str(_late_reason(opts, levels, texts, sym),
                      pl.when((pl.col("icaht_late_grade_max") > pl.col("icaht_late_grade"))
                              | (pl.col("icaht_late_grade").is_null() & pl.col("icaht_late_grade_max").is_not_null()))
                      .then(late_could).otherwise(pl.lit("")))
        .alias("late_reason"))
    f = f.join(gcsf_days_text(study, float(opts["early_window"][0]), float(opts["late_end_day"])), on="subject_id",
               how="left", maintain_order="left")
    f = f.with_columns(
        # a grade 0 names its row (icaht.<window>.g0), not_evaluable only an empty grade (review s36 A1)
        *window_rules(table, "icaht"),
        pl.concat_str(pl.lit("Early: "), pl.col("early_reason"), pl.lit(" Late: "), pl.col("late_reason"),
                      # session 38 (review s38 C1): G-CSF days named; the ANC is graded as measured
                      pl.when(pl.col("_gcsf").is_not_null()).then(pl.concat_str(
                          pl.lit(" "), pl.col("_gcsf"), pl.lit(": counts graded as measured (icaht.gcsf_not_considered)."))
                      ).otherwise(pl.lit(""))).alias("reason"),
        pl.concat_list("early_evidence", "late_evidence").list.unique(maintain_order=True).alias("evidence"),
    ).with_columns(*_late_qualifying(levels), pl.col("_early_end").cast(pl.Float64).alias("early_window_end"),
                   pl.col("_early_end_why").alias("early_window_end_reason"))
    lvl_cols = [f"anc_le_{n}_{c}" for n in early_levels for c in ("days", "start", "end", "episodes", "recovery_days")]
    cols = (["subject_id", "icaht_early_grade", "icaht_late_grade", "icaht_early_grade_max",
             "early_unknown_days", "icaht_late_grade_max"] + lvl_cols
            + [f"never_above_{n}" for n in never_used]
            + ["early_window_end", "early_window_end_reason"]
            + ["late_window_start", "late_window_end", "late_window_end_reason", "late_n_measurements",
               "late_anc_nadir", "late_anc_nadir_day", "late_anc_confirmed", "late_anc_confirmed_day",
               "late_qualifying_start", "late_qualifying_end", "late_qualifying_n", "late_qualifying_days",
               "late_nontransient_days",
               "early_rule", "early_reason", "early_evidence", "late_rule", "late_reason", "late_evidence",
               "rule", "reason", "evidence"])
    return f.select(cols).cast({"icaht_early_grade": pl.Int64, "icaht_late_grade": pl.Int64,
                                "icaht_early_grade_max": pl.Int64,
                                "early_evidence": EVIDENCE, "late_evidence": EVIDENCE, "evidence": EVIDENCE})


def derive_icaht_summary(study: Study, options: IcahtOptions | None = None) -> pl.DataFrame:
    """``icaht_early_grade``, ``icaht_late_grade`` and ``icaht_early_grade_max`` per subject (the
    ``subject_summary.csv`` columns)."""
    return derive_icaht(study, options).select("subject_id", "icaht_early_grade", "icaht_late_grade",
                                               "icaht_early_grade_max")


def derive_icaht_episodes(study: Study, options: IcahtOptions | None = None,
                   graded: pl.DataFrame | None = None) -> pl.DataFrame:
    """ICAHT as ADAE-like rows (EHA/EBMT 2023): one early and one late row per subject with grade >= 1.

    Early: ASTDY/AENDY = the first and last day counted at or below the first early level (500/uL by
    default) and ADURN the duration graded (cumulative days by default, or the longest run's length).
    Late (option ``late_episode_span``): ``qualifying_measurements`` (default) ASTDY/AENDY = the first
    and last measured ANC of the late window at or below the late grade's level, ADURN empty (the
    grade counts tests, not days; the reason names them); a grade from a nontransient run without
    such a measurement, and ``window``, give the late window and its length.
    ``graded`` is the output of :func:`icaht` when already computed.
    """
    f = graded if graded is not None else derive_icaht(study, options)
    table = load_table((options or IcahtOptions()).criteria)
    first = _early_level_names(table, table_levels(table, "NEUT"))[0]  # the shallowest early level (500/uL)
    schema = {"subject_id": pl.String, "episode": pl.Int64, "AETERM": pl.String, "ASTDY": pl.Int64,
              "AENDY": pl.Int64, "ADURN": pl.Int64, "ATOXGR": pl.Int64, "ATOXGRS": pl.String,
              "rule": pl.String, "reason": pl.String, "evidence": EVIDENCE}
    scale = "EHA/EBMT 2023 ICAHT"
    if f.height == 0:  # a study without subjects: no episode (the graded frame carries no feature columns)
        return pl.DataFrame(schema=schema)
    early = f.filter(pl.col("icaht_early_grade") >= 1).select(
        "subject_id", pl.lit(1, dtype=pl.Int64).alias("episode"),
        pl.lit(EARLY_TERM).alias("AETERM"),
        pl.col(f"anc_le_{first}_start").cast(pl.Int64).alias("ASTDY"),
        pl.col(f"anc_le_{first}_end").cast(pl.Int64).alias("AENDY"),
        pl.col(f"anc_le_{first}_days").cast(pl.Int64).alias("ADURN"),
        pl.col("icaht_early_grade").alias("ATOXGR"), pl.lit(scale).alias("ATOXGRS"),
        pl.col("early_rule").alias("rule"), pl.col("early_reason").alias("reason"),
        pl.col("early_evidence").alias("evidence"),
    )
    span = (options or IcahtOptions()).resolved()["late_episode_span"]
    # qualifying_measurements (default, review 37 B6): the first and last measured ANC at or below the late
    # grade's level, no duration (the grade counts tests, not days); window: the late window (0.x)
    qual = (pl.col("late_qualifying_start").is_not_null() if span == "qualifying_measurements"
            and "late_qualifying_start" in f.columns else pl.lit(False))
    late = f.filter(pl.col("icaht_late_grade") >= 1).select(
        "subject_id", pl.lit(2, dtype=pl.Int64).alias("episode"),
        pl.lit(LATE_TERM).alias("AETERM"),
        pl.when(qual).then(pl.col("late_qualifying_start") if span == "qualifying_measurements" else None)
        .otherwise(pl.col("late_window_start")).cast(pl.Int64).alias("ASTDY"),
        pl.when(qual).then(pl.col("late_qualifying_end") if span == "qualifying_measurements" else None)
        .otherwise(pl.col("late_window_end")).cast(pl.Int64).alias("AENDY"),
        pl.when(qual).then(None)
        .otherwise(pl.col("late_window_end") - pl.col("late_window_start") + 1).cast(pl.Int64).alias("ADURN"),
        pl.col("icaht_late_grade").alias("ATOXGR"), pl.lit(scale).alias("ATOXGRS"),
        pl.col("late_rule").alias("rule"),
        pl.when(qual).then(pl.format(
            "{} Episode span (option late_episode_span=qualifying_measurements): the {} ANC measurement(s) of the "
            "late window (days {}-{}) at or below the grade's level, on day(s) {}; no duration (late ICAHT is "
            "graded from tests, not a continuous episode).",
            pl.col("late_reason"), pl.col("late_qualifying_n") if span == "qualifying_measurements" else None,
            day_expr(pl.col("late_window_start")), day_expr(pl.col("late_window_end")),
            pl.col("late_qualifying_days") if span == "qualifying_measurements" else None))
        .otherwise(pl.col("late_reason")).alias("reason"),
        pl.col("late_evidence").alias("evidence"),
    )
    return pl.concat([early.cast(schema), late.cast(schema)]).sort("subject_id", "episode")


def rule_texts(texts: dict[str, str], rule: str, default: str) -> pl.Expr:
    """The text of the rule named in column ``rule`` (``default`` when it is empty or unknown)."""
    r = pl.col(rule)
    return (pl.when(r.is_null() | (r == "")).then(pl.lit(default))
            .otherwise(r.replace_strict(texts, default=pl.lit(default), return_dtype=pl.String)))


def duration_text(prefix: str, what: str, opts: dict) -> pl.Expr:
    """A sentence part for one level's duration: "<what> on 14 days in total (days 1-17, ...)"."""
    n, rec = pl.col(f"{prefix}_days"), pl.col(f"{prefix}_recovery_days")
    span = pl.format("days {}-{}", py_str(pl.col(f"{prefix}_start")), py_str(pl.col(f"{prefix}_end")))
    stable = opts["stable_recovery_days"]
    if opts["duration"] == "cumulative":
        eps = pl.col(f"{prefix}_episodes")
        extra = (pl.when(rec.fill_null(0) != 0)
                 .then(pl.format(f", {{}} days of non-stable recovery (< {stable} days) counted", py_str(rec)))
                 .otherwise(pl.lit("")))
        text = pl.concat_str(pl.lit(f"{what} on "), py_str(n), pl.lit(" days in total ("), span, pl.lit(", "),
                             py_str(eps), pl.lit(" episode"),
                             pl.when((eps != 1).fill_null(True)).then(pl.lit("s")).otherwise(pl.lit("")), extra, pl.lit(")"))
    else:
        joined = (pl.when(pl.col(f"{prefix}_joined").fill_null(False))
                  .then(pl.lit(f", joined across recoveries shorter than {stable} days")).otherwise(pl.lit("")))
        text = pl.concat_str(pl.lit(f"{what} for "), py_str(n), pl.lit(" days (longest run, "), span, joined, pl.lit(")"))
    return pl.when(n.fill_null(0) == 0).then(pl.lit(f"{what} on no day")).otherwise(text)


def _early_reason(opts: dict, levels: dict[str, float], names: list[str], never_used: list[str],
                  texts: dict[str, str], sym: str) -> pl.Expr:
    lo, hi = opts["early_window"]
    # days without an ANC next to a grade resting on 'never above' are named (review s40 A1)
    unknown = pl.when(pl.col("_early_unknown_list").is_not_null()).then(pl.format(
        "; days {} have no ANC (measured or interpolated) and are not counted", pl.col("_early_unknown_list")))
    # session 48 (review 48 F3): the non-stable recovery days option never_above_bridges_nonstable bridges
    def bridged(name: str) -> pl.Expr:
        return (pl.when(pl.lit(bool(opts["never_above_bridges_nonstable"])) & (pl.col(f"_nonstable_{name}") > 0))
                .then(pl.format(f"; {{}} day(s) of non-stable recovery above {fmt(levels[name])} bridged, option "
                                "never_above_bridges_nonstable=true", pl.col(f"_nonstable_{name}"))))

    parts = [pl.when(pl.col(f"never_above_{name}").fill_null(False)).then(pl.concat_str(pl.format(
        f"ANC never above {fmt(levels[name])} in days {lo}-{hi} ({{}} days with data", py_str(pl.col("early_n_days"))),
        unknown, bridged(name), pl.lit(")"), ignore_nulls=True))
        for name in reversed(never_used)]
    # the window cut by death (or last follow-up, option never_above_window_end) is said, as T-ICAHT
    # says it (review s40 B2)
    cut = pl.col("_early_end") < hi
    censor = "[" + ", ".join(opts["early_censor_events"]) + "]"
    head = (pl.when(pl.col("_early_cut").is_not_null() & cut).then(pl.format(
        f"days {lo}-{{}} (censored: {{}} on day {{}}, option early_censor_events={censor}; days {{}}-{hi} not counted, "
        f"so 'never above' in days {lo}-{hi} is not established): ",
        pl.col("_early_end"), pl.col("_early_end_why"), pl.col("_early_end"), pl.col("_early_end") + 1))
        .when(cut).then(pl.format(f"days {lo}-{{}} (censored: {{}} on day {{}}; days {{}}-{hi} not observed): ",
                                  pl.col("_early_end"), pl.col("_early_end_why"), pl.col("_early_end"),
                                  pl.col("_early_end") + 1)).otherwise(pl.lit("")))
    parts += [duration_text(f"anc_le_{name}", f"ANC {sym} {fmt(levels[name])}", opts) for name in names]
    # review 45 F1: a relapse, new therapy, allo-HSCT or new CAR-T course inside the window that option
    # early_censor_events does not censor at is named (the spec's days 0-30 are cut only by death)
    alt = "[relapse, new_therapy, allo_hsct, death]"
    unc = pl.when(pl.col("_early_uncensored").is_not_null()).then(pl.format(
        f" Not censored at (option early_censor_events={censor}: the early window is days {lo}-{hi}, cut only by "
        f"{', '.join(opts['early_censor_events'])}; {alt} censors at them, as the T-ICAHT footnote does): {{}}.",
        pl.col("_early_uncensored"))).otherwise(pl.lit(""))
    return (pl.when(pl.col("early_n_days").fill_null(0) == 0)
            .then(pl.concat_str(pl.lit(f"not evaluable: no ANC in days {lo}-{hi} (measured or interpolated)."), unc))
            .otherwise(pl.concat_str(head, pl.concat_str(parts, separator="; ", ignore_nulls=True),
                                     gap_below_text("early", [(f"anc_le_{n}", f"{sym} {fmt(levels[n])}") for n in names],
                                                    opts), pl.lit(" -> grade "),
                                     py_str(pl.col("icaht_early_grade")), pl.lit(" ("),
                                     rule_texts(texts, "early_rule", "no ICAHT criterion met"), pl.lit(")."), unc)))


def _late_reason(opts: dict, levels: dict[str, float], texts: dict[str, str], sym: str) -> pl.Expr:
    win, empty, is_empty = late_window_text("late_window_start", "late_window_end", "late_window_end_reason")
    n, need = pl.col("late_n_measurements"), int(opts["late_min_measurements"])
    head = pl.concat_str(py_str(n), pl.lit(" measurements in "), win, pl.lit("; "), late_lowest_text(n, "ANC", "late_anc"))
    where = "at or below" if sym == "<=" else "below"
    # two tests on one calendar day count as one (convention icaht.late.same_day_one_test, session 34)
    nt = nontransient_text(opts, "neutropenia", "at or below")
    return (pl.when(is_empty).then(empty)
            .when(pl.col("icaht_late_grade").is_null()).then(pl.format(
                f"not evaluable: {{}} ANC measurement(s) in {{}}, {need} needed on different days{nt}.",
                py_str(n), win))
            .when(pl.col("late_rule").is_not_null() & (pl.col("late_rule") != ""))
            .then(pl.concat_str(head, nontransient_days_text(), pl.lit(" -> grade "), py_str(pl.col("icaht_late_grade")), pl.lit(" ("),
                                rule_texts(texts, "late_rule", ""), pl.lit(").")))
            .otherwise(pl.concat_str(head, pl.lit(f"; fewer than {need} {where} {fmt(max(levels.values()))} -> grade 0."))))


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
__getattr__ = renamed(__name__, "icaht", "icaht_daily", "icaht_episodes", "icaht_summary")
