"""ASTCT 2019 CRS: which days are graded, episodes and the open end of the course (review 38).

* :func:`observed_days`: with option ``observed_days="any_row"`` every day with any observation,
  dose, intervention or event row of the subject is graded (convention ``crs.conv.observed_days``);
  the default ``"vitals"`` grades only days with a CRS input row (spec; cartlab before session 38).
* :func:`number_episodes`: episodes of CRS days; with ``death_joins_episode`` a death graded 5 (ASTCT
  2019 Table 1: death due to CRS) joins the preceding episode unless recorded CRS-free days separate
  them (convention ``crs.conv.death_joins_episode``; session 45).
* :func:`latest_resolution`: ``crs_resolution_day_latest`` / ``crs_resolution_open``, the twin of the
  onset's ``crs_onset_day_earliest`` (missing is not negative: a day after the last CRS day without a
  temperature could have been a CRS day).
* :func:`excluded_rows`: intervention rows of a category the grade reads that do not count (their
  indication, a vasopressor at dose 0: convention ``crs.conv.zero_dose_vasopressor``, an oxygen row at
  0 L/min by a flow device: ``crs.conv.zero_flow_oxygen``), named on
  their days, and the first excluded fever-waiver agent (named on the afebrile days it would have waived).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from cartlab._days import day_expr
from cartlab.grading.common import expand_days, interventions_from_start, rows_from_start
from cartlab.grading.crs_features import counted, norm_text, norm_values, zero_flow_oxygen
from cartlab.model import Study
from cartlab.provenance import evidence_ref

KEY = ["subject_id", "day"]
OBSERVED_DAYS = ("vitals", "any_row")
#: how a day's reason names an oxygen row at 0 L/min (crs.conv.zero_flow_oxygen; the older scales too)
ZERO_FLOW_TEXT = "flow 0 L/min: not counted (no oxygen given, convention crs.conv.zero_flow_oxygen)"


def observed_days(study: Study, start: pl.DataFrame | None) -> pl.DataFrame:
    """(subject_id, d): the calendar days with any observation, dose, intervention or event row of the
    subject, from the assessment start (option ``observed_days="any_row"``)."""
    parts = []
    for frame in (study.observations, study.doses, study.events):
        if frame.height and "day" in frame.columns:
            rows = rows_from_start(frame.filter(pl.col("day").is_not_null()), start)
            parts.append(rows.select("subject_id", pl.col("day").floor().cast(pl.Int64).alias("d")))
    iv = interventions_from_start(study.interventions, start)
    if iv.height:
        parts.append(expand_days(iv).select("subject_id", pl.col("d").cast(pl.Int64)))
    if not parts:
        return pl.DataFrame(schema={"subject_id": pl.String, "d": pl.Int64})
    return pl.concat(parts, how="vertical").unique()


def excluded_rows(interventions: pl.DataFrame, opts: dict[str, Any], graded: tuple[str, ...],
                  waiver_cats: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(per_day, first_waiver)``.

    ``per_day`` (subject_id, d, not_counted, not_counted_refs): on each day it covers, every row of a
    category the grade reads (``graded``, the fever-waiver categories) left out by its indication
    (options counted_indications / waiver_indications) or, for a vasopressor, by a recorded dose of 0
    ("dose 0: not counted": not a vasopressor given, convention crs.conv.zero_dose_vasopressor) or, for
    oxygen by a flow device, a recorded flow of 0 L/min (convention crs.conv.zero_flow_oxygen).
    ``first_waiver`` (subject_id, _excl_waiver_day, _excl_waiver_txt, _excl_waiver_ref): the first
    fever-waiver agent left out by its indication, named on the afebrile days after it (review 38 B2).
    """
    counted_ind = opts["counted_indications"]
    waiver_ind = opts["waiver_indications"] if opts["waiver_indications"] is not None else counted_ind
    waiver_opt = "crs.waiver_indications"
    cat = norm_text(pl.col("category"))
    is_waiver = cat.is_in(norm_values(waiver_cats))
    by_indication = pl.when(is_waiver).then(~counted("indication", waiver_ind)).otherwise(
        cat.is_in(norm_values(graded)) & ~counted("indication", counted_ind))
    dose0 = (pl.col("dose") == 0).fill_null(False) if "dose" in interventions.columns else pl.lit(False)
    zero = (cat == "vasopressor") & dose0 & ~by_indication
    # an oxygen row at 0 L/min by a flow device (convention crs.conv.zero_flow_oxygen, review 40 B1)
    zero_o2 = zero_flow_oxygen(interventions.columns) & ~by_indication.fill_null(False)
    detail = pl.coalesce(pl.col("o2_device"), pl.col("agent")).cast(pl.String)
    rows = (interventions.with_columns(evidence_ref().alias("ref"), cat.alias("category"),
                                       by_indication.fill_null(False).alias("_by_ind"), zero.alias("_zero"),
                                       zero_o2.alias("_zero_o2"), is_waiver.alias("_is_waiver"))
            .filter(pl.col("_by_ind") | pl.col("_zero") | pl.col("_zero_o2"))
            .with_columns(pl.format("{}{} ({})", pl.col("category"),
                                    pl.when(detail.is_not_null() & (norm_text(detail) != pl.col("category")))
                                    .then(pl.concat_str(pl.lit(" "), detail)).otherwise(pl.lit("")),
                                    pl.col("ref").fill_null("row not given")).alias("_what")))
    why = (pl.when(pl.col("_zero")).then(pl.lit("dose 0: not counted"))
           .when(pl.col("_zero_o2")).then(pl.lit(ZERO_FLOW_TEXT))
           .otherwise(pl.format("not counted: indication {} (option {})", pl.col("indication"),
                                pl.when(pl.col("_is_waiver")).then(pl.lit(waiver_opt))
                                .otherwise(pl.lit("crs.counted_indications")))))
    per_day = (expand_days(rows.with_columns(pl.format("{} {}", pl.col("_what"), why).alias("_txt")))
               .group_by("subject_id", "d", maintain_order=True)
               .agg(pl.col("_txt").unique(maintain_order=True).str.join("; ").alias("not_counted"),
                    pl.col("ref").drop_nulls().unique(maintain_order=True).alias("not_counted_refs")))
    first = (rows.filter(pl.col("_is_waiver") & pl.col("_by_ind") & pl.col("start_day").is_not_null())
             .sort("subject_id", "start_day").group_by("subject_id", maintain_order=True)
             .agg(pl.col("start_day").first().floor().cast(pl.Int64).alias("_excl_waiver_day"),
                  pl.format("{} on day {} not counted: indication {} (option {}): it does not waive the fever",
                            pl.col("_what"), pl.col("start_day").floor().cast(pl.Int64), pl.col("indication"),
                            pl.lit(waiver_opt)).first().alias("_excl_waiver_txt"),
                  pl.col("ref").first().alias("_excl_waiver_ref")))
    return per_day, first


#: how the reason of a CRS death kept apart from the earlier episode names it (session 45, review 45 finding 5)
DEATH_APART_TEXT = ("own episode, not joined to the CRS episode that ended on day {}: {} recorded CRS-free days "
                    "in a row (days {}-{}) lie between (convention crs.conv.death_joins_episode)")


def _free_runs(daily: pl.DataFrame) -> pl.DataFrame:
    """(subject_id, _k, _n, _a, _b): per subject and CRS day count ``_k`` (the CRS days up to a day),
    the longest run of consecutive calendar days graded 0 for sure (grade_max 0: recorded CRS-free,
    not a range) after the ``_k``-th CRS day and before the next: its length and first / last day."""
    gmax = pl.col("grade_max") if "grade_max" in daily.columns else pl.col("grade")
    free = (pl.col("grade").fill_null(0) < 1) & (gmax.fill_null(1) == 0)
    d = daily.sort(KEY).with_columns(free.alias("_free"),
                                     (pl.col("grade").fill_null(0) >= 1).cum_sum().over("subject_id").alias("_k"))
    brk = ~pl.col("_free") | ((pl.col("day") - pl.col("day").shift(1).over("subject_id")) != 1).fill_null(True)
    d = d.with_columns(brk.cum_sum().over("subject_id").alias("_run")).filter(pl.col("_free"))
    runs = d.group_by("subject_id", "_k", "_run").agg(pl.len().alias("_n"), pl.col("day").min().alias("_a"),
                                                        pl.col("day").max().alias("_b"))
    return runs.sort("subject_id", "_k", "_n", "_a", descending=[False, False, True, False]).group_by(
        "subject_id", "_k", maintain_order=True).first().drop("_run")


def number_episodes(daily: pl.DataFrame, join_gap_days: int = 1, death_joins: bool = False) -> pl.DataFrame:
    """``daily`` with ``episode`` (1, 2, ... per subject; null on days with grade 0).

    Days with grade >= 1 separated by at most ``join_gap_days`` calendar days without one are one
    episode (criteria table ``conventions``: crs.conv.episodes); with ``death_joins`` a day graded 5
    (a death due to CRS) joins the subject's preceding episode whatever the gap, unless a run of more
    than ``join_gap_days`` consecutive days recorded CRS-free (grade_max 0) lies between: then it is
    an episode of its own and its reason names the earlier one (crs.conv.death_joins_episode;
    session 45).
    """
    # the subject's first CRS day opens episode 1 (null gap -> True) before the death test: a CRS
    # death on that day is episode 1, not a continuation of nothing
    prev = pl.col("day").shift(1).over("subject_id")
    split = ((pl.col("day") - prev) > join_gap_days + 1).fill_null(True)
    pos = daily.filter(pl.col("grade") >= 1).sort(KEY)
    apart = pl.lit(False)
    if death_joins:
        runs = _free_runs(daily).with_columns((pl.col("_k") + 1).alias("_k"))
        pos = (pos.with_columns(pl.int_range(1, pl.len() + 1).over("subject_id").alias("_k"), prev.alias("_prev"))
               .join(runs, on=["subject_id", "_k"], how="left", maintain_order="left"))
        apart = (pl.col("_n") > join_gap_days).fill_null(False) & (pl.col("grade") >= 5) & prev.is_not_null()
        split = split & ((pl.col("grade") < 5) | prev.is_null() | apart)
    cols = [*KEY, split.cum_sum().over("subject_id").cast(pl.Int64).alias("episode")]
    if death_joins and "reason" in daily.columns:
        note = pl.format(DEATH_APART_TEXT, pl.col("_prev").cast(pl.Int64), pl.col("_n"), pl.col("_a").cast(pl.Int64),
                         pl.col("_b").cast(pl.Int64))
        cols.append(pl.when(apart & split).then(note).alias("_apart"))
    pos = pos.select(cols)
    out = daily.drop("episode", strict=False).join(pos, on=KEY, how="left")
    if "_apart" in out.columns:  # once: a frame numbered again keeps one note
        add = pl.col("_apart").is_not_null() & ~pl.col("reason").fill_null("").str.contains(
            "crs.conv.death_joins_episode", literal=True)
        out = out.with_columns(pl.when(add).then(pl.concat_str(pl.col("reason"), pl.lit("; "), pl.col("_apart")))
                               .otherwise(pl.col("reason")).alias("reason")).drop("_apart")
    return out


def latest_resolution(daily: pl.DataFrame, agg: pl.DataFrame, mode: str, join_gap_days: int = 1) -> pl.DataFrame:
    """``crs_resolution_day_latest``: the latest day after ``crs_resolution_day`` that could be a CRS
    day had its missing inputs been recorded (a day graded below 1 whose ``grade_max`` reaches 1: no
    temperature, a censored value, an unknown attribution ...), null when no later day could be (the
    resolution is settled); for a subject without CRS, the last such day. With ``summary_episode``
    "first" / "worst" only the open days that would extend that episode count (each at most
    ``episode_join_gap_days`` + 1 days after the previous one, before the next CRS day).
    ``crs_resolution_open``: those days and their missing inputs ("day(s) 4, 5: TEMP not recorded").
    ``crs_resolution_day`` itself is the spec's (last day whose daily grade is >= 1) and unchanged."""
    gmax = pl.col("grade_max") if "grade_max" in daily.columns else pl.col("grade")
    has_miss = "missing_inputs" in daily.columns
    miss = pl.col("missing_inputs") if has_miss else pl.lit(None, pl.List(pl.String))
    d = daily.select("subject_id", "day", pl.col("grade").fill_null(0).alias("_g"), gmax.alias("_gm"),
                     miss.alias("_miss")).join(agg.select("subject_id", pl.col("crs_resolution_day").alias("_off")),
                                               on="subject_id", how="left")
    d = d.filter(pl.col("_off").is_null() | (pl.col("day") > pl.col("_off")))
    if mode != "course":  # the episode's end: stop at the next CRS day, chain the open days by the join gap
        nxt = d.filter(pl.col("_g") >= 1).group_by("subject_id").agg(pl.col("day").min().alias("_next"))
        d = (d.join(nxt, on="subject_id", how="left")
             .filter(pl.col("_off").is_null() | pl.col("_next").is_null() | (pl.col("day") < pl.col("_next")))
             .filter((pl.col("_g") < 1) & (pl.col("_gm") >= 1)).sort("subject_id", "day")
             .with_columns(pl.coalesce(pl.col("day").shift(1).over("subject_id"), pl.col("_off")).alias("_prev")))
        d = d.filter(((pl.col("day") - pl.col("_prev")) > join_gap_days + 1).fill_null(False)
                     .cum_sum().over("subject_id") == 0)
    opened = open_days(d.filter((pl.col("_g") < 1) & (pl.col("_gm") >= 1)))
    return opened.group_by("subject_id", maintain_order=True).agg(
        pl.col("day").max().cast(pl.Float64).alias("crs_resolution_day_latest"),
        open_days_text().alias("crs_resolution_open"))


def open_days(d: pl.DataFrame) -> pl.DataFrame:
    """The days a range leaves open (``day``, ``_miss``: the day's missing inputs), sorted, with ``_d``
    (the day as printed) and ``_m`` (its missing inputs as names) for :func:`open_days_text`."""
    return d.sort("subject_id", "day").with_columns(
        day_expr(pl.col("day")).alias("_d"),
        # each day's missing inputs as names: one list over the days, each name once
        # (review 38 C2: not "interventions.csv, TEMP, interventions.csv")
        # (a file not given keeps its "(not given)": open_days_text says "not given", review 40 C2)
        pl.when(pl.col("_miss").list.len() > 0).then(pl.col("_miss"))
        .otherwise(pl.lit(["an input"], dtype=pl.List(pl.String))).alias("_m"))


def open_days_text() -> pl.Expr:
    """Per subject (an aggregation over :func:`open_days`): "day(s) 4, 5: TEMP not recorded", the first
    10 days and each missing input once."""
    m = pl.col("_m").explode().unique(maintain_order=True).drop_nulls()
    given = m.str.contains(" (not given)", literal=True)
    # review 40 C2: a file not given is "interventions.csv not given", not "interventions.csv not recorded"
    files = m.filter(given).str.replace(r" \(not given\)(: )?", " not given: ").str.strip_chars_end(": ").str.join("; ")
    rest = m.filter(~given).str.join(", ")
    return pl.format("day(s) {}: {}",
                     pl.col("_d").head(10).str.join(", ") + pl.when(pl.len() > 10).then(pl.lit(", ...")).otherwise(pl.lit("")),
                     pl.concat_str(pl.when(files != "").then(files),
                                   pl.when(rest != "").then(rest + pl.lit(" not recorded")), separator="; ",
                                   ignore_nulls=True))
