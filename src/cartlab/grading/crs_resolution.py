"""ASTCT 2019 CRS: how each episode ended (review 40 B2) and the earliest possible onset.

* :func:`episode_resolution`: per CRS episode, ``episode_resolution_status`` and
  ``episode_resolution_note`` on the daily rows of the episode (convention
  ``crs.conv.resolution_status``; the twin of ICANS's ``icans.conv.episode_end``):

  - ``fatal``: a day of the episode is graded 5 (ASTCT 2019 Table 1: "death due to CRS"; the
    death's attribution is CRS, or empty and counted toward CRS: study format 'Attribution', option
    unattributed_death);
  - ``ongoing_at_death``: a death of another cause (or one not graded 5) on or after the last CRS
    day, with no settled CRS-free day between them (ICANS's ``death``: "episode ongoing at death");
  - ``not_settled`` (review 40 B1): the first CRS-free day after the last CRS day is grade 0 only as
    recorded, opened up to grade 4 by an absent interventions.csv (before any day with ``grade_max``
    0): whether the CRS ended is not known (ADAE AEOUT UNKNOWN); the note names the file;
  - ``resolved``: a settled CRS-free day (grade 0, ``grade_max`` 0) follows the last CRS day, or the
    next episode does (days without a graded row, or a day a missing temperature opens, between them
    are the ``crs_resolution_day_latest`` range);
  - ``ongoing_at_last_followup``: nothing of the above: the data end with the CRS not seen resolved
    (the note names the last follow-up day when ``subjects.csv`` records it).

  ``crs_resolution_day`` (spec: the last day graded >= 1) is unchanged: the status says whether it
  is an end seen (resolved) or where the observation stopped (CDISC ADAE AEOUT "NOT RECOVERED/NOT
  RESOLVED"; a duration ending there is right-censored).
* :func:`earliest_onset`: ``crs_onset_day_earliest`` / ``crs_onset_open`` (moved from crs.py).
"""

from __future__ import annotations

import polars as pl

from cartlab.grading.absent_interventions import MISSING
from cartlab.grading.crs_episodes import open_days, open_days_text
from cartlab.provenance import evidence_ref

#: values of ``episode_resolution_status`` / ``crs_resolution_status``
RESOLUTION_STATUS = ("resolved", "not_settled", "ongoing_at_last_followup", "ongoing_at_death", "fatal")
#: the daily columns :func:`episode_resolution` adds (on the rows of each episode)
RESOLUTION_COLUMNS = ("episode_resolution_status", "episode_resolution_note")
_CONV = "(convention crs.conv.resolution_status)"


def _deaths(events: pl.DataFrame) -> pl.DataFrame:
    if events.height and "event" in events.columns:
        attr = pl.col("attribution") if "attribution" in events.columns else pl.lit(None, pl.String)
        return (events.filter((pl.col("event") == "death") & pl.col("day").is_not_null())
                .select("subject_id", pl.col("day").floor().cast(pl.Int64).alias("_dd"), evidence_ref().alias("_dref"),
                        attr.cast(pl.String).alias("_dattr")))
    return pl.DataFrame(schema={"subject_id": pl.String, "_dd": pl.Int64, "_dref": pl.String, "_dattr": pl.String})


def episode_resolution(daily: pl.DataFrame, events: pl.DataFrame, subjects: pl.DataFrame | None = None) -> pl.DataFrame:
    """``daily`` (with ``episode``, integer ``day``, ``grade``, ``grade_max``, ``missing_inputs``) with
    :data:`RESOLUTION_COLUMNS` on each episode's rows (null on the other days); ``events`` (for the
    deaths, any attribution), ``subjects`` (``last_followup_day``, named in the note)."""
    key = ["subject_id", "episode"]
    eps = (daily.filter(pl.col("episode").is_not_null()).group_by(key)
           .agg(pl.col("day").max().alias("_end"), (pl.col("grade").max() >= 5).alias("_fatal"),
                pl.col("day").filter(pl.col("grade") >= 5).min().alias("_d5")).sort(key)
           .with_columns(pl.col("_end").shift(-1).over("subject_id").alias("_nx_end")))
    if eps.height == 0:
        return daily.drop(*RESOLUTION_COLUMNS, strict=False).with_columns(
            *(pl.lit(None, pl.String).alias(c) for c in RESOLUTION_COLUMNS))
    starts = (daily.filter(pl.col("episode").is_not_null()).group_by(key).agg(pl.col("day").min().alias("_next"))
              .with_columns(pl.col("episode") - 1))
    eps = eps.join(starts, on=key, how="left")
    miss = pl.col("missing_inputs") if "missing_inputs" in daily.columns else pl.lit([], pl.List(pl.String))
    gmax = pl.col("grade_max") if "grade_max" in daily.columns else pl.col("grade")
    settled = (pl.col("grade").fill_null(0) < 1) & ((gmax.fill_null(0) < 1) | (miss == [MISSING]))
    free = daily.filter(settled).select("subject_id", pl.col("day").alias("_free"),
                                        (gmax.fill_null(0) >= 1).alias("_by_absent"))
    after = (pl.col("_free") > pl.col("_end")) & (pl.col("_next").is_null() | (pl.col("_free") < pl.col("_next")))
    first_free = (eps.join(free, on="subject_id").filter(after).group_by(key).agg(
        pl.col("_free").min(), pl.col("_free").filter(~pl.col("_by_absent")).min().alias("_seen"),
        pl.col("_free").filter(pl.col("_by_absent")).min().alias("_absent")))
    eps = eps.join(first_free, on=key, how="left")
    # review 40 B1: a CRS-free day opened by an absent interventions.csv (grade 0 as recorded, up to 4)
    # does not settle the end; one before any day really settled (grade_max 0) or the next episode
    # leaves the episode not_settled (AEOUT UNKNOWN), naming the file
    unsettled = pl.col("_absent").is_not_null() & (pl.col("_seen").is_null() | (pl.col("_absent") < pl.col("_seen")))
    bound = pl.min_horizontal(pl.col("_free"), pl.col("_next"))
    death = (eps.join(_deaths(events), on="subject_id")
             # review 40 diff1 F1: a death ends the episode only on its last CRS day or the next one; with
             # days not assessed between, the end is not known (ongoing at last follow-up, AEOUT UNKNOWN)
             .filter((pl.col("_dd") >= pl.col("_end")) & (pl.col("_dd") <= pl.col("_end") + 1)
                     & (bound.is_null() | (pl.col("_dd") < bound)))
             .sort("_dd").group_by(key).agg(pl.col("_dd").first(), pl.col("_dref").first(), pl.col("_dattr").first()))
    eps = eps.join(death, on=key, how="left")
    if subjects is not None and "last_followup_day" in subjects.columns:
        eps = eps.join(subjects.select("subject_id", pl.col("last_followup_day").alias("_lfu")), on="subject_id", how="left")
    else:
        eps = eps.with_columns(pl.lit(None, pl.Float64).alias("_lfu"))
    is_death = pl.col("_dd").is_not_null()
    status = (pl.when(pl.col("_fatal")).then(pl.lit("fatal"))
              .when(is_death).then(pl.lit("ongoing_at_death"))
              .when(unsettled).then(pl.lit("not_settled"))
              .when(pl.col("_free").is_not_null() | pl.col("_next").is_not_null()).then(pl.lit("resolved"))
              .otherwise(pl.lit("ongoing_at_last_followup")))
    attr = (pl.when(pl.col("_dattr").is_not_null() & (pl.col("_dattr") != ""))
            .then(pl.format(", attributed to {}", pl.col("_dattr"))).otherwise(pl.lit(", no attribution recorded")))
    lfu = pl.col("_lfu").floor().cast(pl.Int64)
    note = (
        pl.when(pl.col("_fatal")).then(pl.format("CRS episode fatal: death due to CRS on day {} (grade 5) {}",
                                                 pl.col("_d5"), pl.lit(_CONV)))
        .when(is_death & (pl.col("_dd") == pl.col("_end"))).then(pl.format(
            "CRS ongoing at death on day {} ({}{}) {}", pl.col("_dd"), pl.col("_dref"), attr, pl.lit(_CONV)))
        .when(is_death).then(pl.format(
            "CRS ongoing at death on day {} ({}{}): last CRS day {}, no CRS-free day graded before the death {}",
            pl.col("_dd"), pl.col("_dref"), attr, pl.col("_end"), pl.lit(_CONV)))
        .when(unsettled).then(pl.format(
            "CRS end not settled: last CRS day {}; day {} on is CRS-free as recorded but could be CRS (up to grade 4: "
            "{}: a vasopressor, oxygen or a fever-waiving tocilizumab/corticosteroid unknown) {}", pl.col("_end"),
            pl.col("_absent"), pl.lit(MISSING), pl.lit(_CONV)))
        .when(pl.col("_free").is_not_null() | pl.col("_next").is_not_null()).then(None)
        .otherwise(pl.format(
            "CRS ongoing at last follow-up: last CRS day {}, no CRS-free day graded after it{} {}", pl.col("_end"),
            pl.when(lfu.is_not_null()).then(pl.format(" (last follow-up day {})", lfu)).otherwise(pl.lit("")),
            pl.lit(_CONV))))
    eps = eps.select(*key, status.alias("episode_resolution_status"), note.alias("episode_resolution_note"))
    return daily.drop(*RESOLUTION_COLUMNS, strict=False).join(eps, on=key, how="left", maintain_order="left")


def summary_status(daily: pl.DataFrame, agg: pl.DataFrame) -> pl.DataFrame:
    """``crs_resolution_status`` per subject: the status of the episode whose last CRS day is
    ``crs_resolution_day`` (the whole course's last one, or the "first" / "worst" episode's); null
    without CRS or without the daily columns."""
    if "episode_resolution_status" not in daily.columns:
        return agg.select("subject_id", pl.lit(None, pl.String).alias("crs_resolution_status"))
    ends = (daily.filter(pl.col("episode_resolution_status").is_not_null())
            .select("subject_id", pl.col("day").cast(pl.Float64).alias("crs_resolution_day"),
                    pl.col("episode_resolution_status").alias("crs_resolution_status")).unique(["subject_id", "crs_resolution_day"]))
    return agg.select("subject_id", "crs_resolution_day").join(
        ends, on=["subject_id", "crs_resolution_day"], how="left").select("subject_id", "crs_resolution_status")


def earliest_onset(daily: pl.DataFrame, agg: pl.DataFrame, mode: str) -> pl.DataFrame:
    """``crs_onset_day_earliest``: the earliest day before ``crs_onset_day`` that could be a CRS day had
    its missing inputs been recorded (a day graded below 1 whose ``grade_max`` reaches 1: no
    temperature, a censored ">38.3"; ASTCT 2019: onset = the first day of fever or the CRS sign), null
    when no earlier day could be (the onset is settled); for a subject without CRS, the first such day
    (its grade is then a range 0-n). With ``summary_episode="worst"`` only the days after the
    preceding CRS day count. ``crs_onset_open``: those days and the inputs missing on them
    ("days 1, 2, 3: TEMP not recorded"; review 37 B7: missing is not negative)."""
    gmax = pl.col("grade_max") if "grade_max" in daily.columns else pl.col("grade")
    miss = (pl.col("missing_inputs") if "missing_inputs" in daily.columns
            else pl.lit(None, pl.List(pl.String)))
    d = daily.select("subject_id", "day", pl.col("grade").fill_null(0).alias("_g"), gmax.alias("_gm"),
                     miss.alias("_miss")).join(agg.select("subject_id", pl.col("crs_onset_day").alias("_on")),
                                               on="subject_id", how="left")
    if mode == "worst":  # the CRS day before the episode's onset bounds it
        prev = (d.filter((pl.col("_g") >= 1) & (pl.col("day") < pl.col("_on"))).group_by("subject_id")
                .agg(pl.col("day").max().alias("_prev")))
        d = d.join(prev, on="subject_id", how="left").filter(pl.col("_prev").is_null() | (pl.col("day") > pl.col("_prev")))
    opened = open_days(d.filter((pl.col("_g") < 1) & (pl.col("_gm") >= 1)
                                & (pl.col("_on").is_null() | (pl.col("day") < pl.col("_on")))))
    return opened.group_by("subject_id", maintain_order=True).agg(
        pl.col("day").min().cast(pl.Float64).alias("crs_onset_day_earliest"),
        open_days_text().alias("crs_onset_open"))
