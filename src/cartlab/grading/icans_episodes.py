"""ASTCT 2019 ICANS: an absent events.csv and the end of an episode (review 39 B1, B2).

* :func:`open_absent_events`: events.csv not given at all (``Study.absent``, or a stored study's
  "not given" warning) does not say that no seizure, motor weakness or cerebral oedema happened
  (ASTCT 2019 Table 4: the ICANS grade is the most severe of five domains, three of them events).
  With option ``absent_events="unknown"`` (default, as ``crs.absent_interventions``) every graded
  ICANS day is a range from its observed grade up to 4 (seizure_life_threatening, motor_weakness,
  cerebral_edema_diffuse), ``missing_inputs`` "events.csv (not given)", rule
  ``icans.conv.absent_events``; ``"none_happened"`` keeps the grades and only says so in the reason.
  A header-only events.csv records none (no range).
* :func:`episode_ends`: ASTCT 2019 defines no ICANS episode (convention ``icans.conv.episodes``);
  its end is the last ICANS day (AENDY), and the days after it decide what that end rests on, as
  CRS's ``crs_resolution_day_latest`` / ``crs_resolution_open`` (missing is not negative):
  ``resolved`` (the next day is an assessed ICANS-free day, grade_max 0), ``not_assessed`` (the
  days after it have no settled ICANS-free assessment: the resolution day is a range up to the day
  before the first such assessment, or before the next episode; open when none follows) or
  ``death`` (a death, whatever its attribution, on the last ICANS day or with every day between
  them assessed, none ICANS-free: the episode ended at death). A death after unassessed days is
  ``not_assessed`` with the death day as the latest end (review 39 diff1 B1: assessments that
  stopped do not say the episode lasted to the death). Convention ``icans.conv.episode_end``.
"""

from __future__ import annotations

import polars as pl

from cartlab.io.absent_files import table_absent
from cartlab.provenance import evidence_ref

__all__ = ["ABSENT_EVENTS", "EVENTS_MISSING", "EVENTS_TOP", "END_COLUMNS", "END_NOTE", "episode_ends", "free_day",
           "open_absent_events", "resolution_summary"]

#: values of IcansOptions.absent_events
ABSENT_EVENTS = ("unknown", "none_happened")
#: the ``missing_inputs`` entry of a day an absent events.csv leaves open (as CRS's interventions.csv)
EVENTS_MISSING = "events.csv (not given)"
#: ASTCT 2019 Table 4: life-threatening seizure, deep focal motor weakness, diffuse cerebral oedema are grade 4
EVENTS_TOP = 4
#: the daily columns :func:`episode_ends` adds (on the rows of each episode)
END_COLUMNS = ("episode_end", "episode_resolution_day_latest", "episode_end_note")
#: the end note at the end of an episode's last day's reason (what :func:`episode_ends` writes)
END_NOTE = (r"; ((?:episode ongoing at death|episode not seen resolved|resolution between day|resolution not observed)"
            r".*\(convention icans\.conv\.episode_end\))$")


def open_absent_events(study, f: pl.DataFrame, mode: str) -> pl.DataFrame:
    """``f`` (the ICANS daily frame: grade, grade_max, missing_inputs, rule, reason) when events.csv
    was not given: with ``mode`` 'unknown' each day below :data:`EVENTS_TOP` is opened up to it
    (grade unchanged, the convention joins ``rule``); with 'none_happened' only the reason says it."""
    if mode not in ABSENT_EVENTS:
        raise ValueError(f"absent_events must be one of {ABSENT_EVENTS}, not {mode!r}")
    if f.height == 0 or not table_absent(study, "events"):
        return f
    if mode == "none_happened":
        return f.with_columns(pl.concat_str("reason", pl.lit(
            "; events.csv not given: no seizure, motor weakness or cerebral edema recorded, read as none "
            "(option icans.absent_events=none_happened)")).alias("reason"))
    opened = pl.col("grade_max") < EVENTS_TOP
    return f.with_columns(
        pl.when(opened).then(pl.lit(EVENTS_TOP, dtype=f.schema["grade_max"])).otherwise(pl.col("grade_max"))
        .alias("grade_max"),
        pl.when(opened).then(pl.col("missing_inputs").list.concat(pl.lit([EVENTS_MISSING], dtype=pl.List(pl.String))))
        .otherwise(pl.col("missing_inputs")).alias("missing_inputs"),
        pl.when(opened).then(pl.concat_str("reason", pl.lit(
            f"; up to {EVENTS_TOP} if a seizure, motor weakness or cerebral edema happened: events.csv (not given) "
            "(option icans.absent_events=unknown, convention icans.conv.absent_events)")))
        .otherwise(pl.col("reason")).alias("reason"),
        pl.when(opened).then(pl.concat_str(pl.coalesce(pl.col("rule"), pl.lit("icans.g0")),
                                           pl.lit("; icans.conv.absent_events")))
        .otherwise(pl.col("rule")).alias("rule"),
    )


def free_day(columns) -> pl.Expr:
    """An assessed ICANS-free day of the daily table (``columns``: its column names): grade_max 0, or
    grade 0 left open only by an absent events.csv (its score and consciousness settle it; the day's
    own reason names the file), on a day that is an ICANS assessment (``assessed``: not a day kept only
    to name an event attributed to another cause, convention icans.conv.excluded_events, review 46
    finding 1; a table without the column, written before it, reads every row as assessed). Used by
    :func:`episode_ends`, the episode numbering, the unattributed-death window and ADAE."""
    gmax = pl.col("grade_max") if "grade_max" in columns else pl.col("grade")
    miss = pl.col("missing_inputs") if "missing_inputs" in columns else pl.lit([], pl.List(pl.String))
    free = (gmax == 0) | ((pl.col("grade") == 0) & (miss == [EVENTS_MISSING]))
    return free & pl.col("assessed").fill_null(True) if "assessed" in columns else free


def _span(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """ "day 6" or "days 6-7"."""
    return pl.when(a == b).then(pl.format("day {}", a)).otherwise(pl.format("days {}-{}", a, b))


def episode_ends(daily: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """``daily`` (with ``episode``, integer ``day``) with :data:`END_COLUMNS` on each episode's rows:
    ``episode_end`` (resolved | not_assessed | death: see the module docstring), ``episode_resolution_day_latest`` (the latest
    day the episode could have lasted to; null when the end is settled, or open with no later
    assessment) and ``episode_end_note`` (the reason's text; null when resolved)."""
    key = ["subject_id", "episode"]
    eps = (daily.filter(pl.col("episode").is_not_null()).group_by(key)
           .agg(pl.col("day").min().alias("_start"), pl.col("day").max().alias("_end")).sort(key)
           .with_columns(pl.col("_start").shift(-1).over("subject_id").alias("_next")))
    if eps.height == 0:
        return daily.with_columns(pl.lit(None, pl.String).alias("episode_end"),
                                  pl.lit(None, pl.Int64).alias("episode_resolution_day_latest"),
                                  pl.lit(None, pl.String).alias("episode_end_note"))
    # an assessed ICANS-free day (free_day): grade_max 0 on a day that is an ICANS assessment
    free = daily.filter(free_day(daily.columns)).select("subject_id", pl.col("day").alias("_free"))
    first_free = (eps.join(free, on="subject_id")
                  .filter((pl.col("_free") > pl.col("_end")) & (pl.col("_next").is_null() | (pl.col("_free") < pl.col("_next"))))
                  .group_by(key).agg(pl.col("_free").min()))
    eps = eps.join(first_free, on=key, how="left")
    if events.height and "event" in events.columns:
        deaths = (events.filter((pl.col("event") == "death") & pl.col("day").is_not_null())
                  .select("subject_id", pl.col("day").floor().cast(pl.Int64).alias("_dd"), evidence_ref().alias("_dref"),
                          pl.col("attribution").alias("_dattr")))
    else:
        deaths = pl.DataFrame(schema={"subject_id": pl.String, "_dd": pl.Int64, "_dref": pl.String, "_dattr": pl.String})
    bound = pl.min_horizontal(pl.col("_free"), pl.col("_next"))  # a death on/after it is not this episode's end
    death = (eps.join(deaths, on="subject_id")
             .filter((pl.col("_dd") >= pl.col("_end")) & (bound.is_null() | (pl.col("_dd") < bound)))
             .sort("_dd").group_by(key).agg(pl.col("_dd").first(), pl.col("_dref").first(), pl.col("_dattr").first()))
    eps = eps.join(death, on=key, how="left")
    # assessed days between the last ICANS day and the death: none missing -> the episode ended at death
    # (a day kept only to name an event of another cause is no assessment: review 46 finding 1)
    assessed = daily.filter(pl.col("assessed").fill_null(True)) if "assessed" in daily.columns else daily
    seen = (eps.filter(pl.col("_dd").is_not_null()).join(assessed.select("subject_id", pl.col("day").alias("_d")),
                                                         on="subject_id")
            .filter((pl.col("_d") > pl.col("_end")) & (pl.col("_d") < pl.col("_dd")))
            .group_by(key).agg(pl.col("_d").n_unique().alias("_seen")))
    eps = eps.join(seen, on=key, how="left").with_columns(pl.col("_seen").fill_null(0))
    after = pl.col("_end") + 1
    attr = pl.when(pl.col("_dattr").is_not_null()).then(pl.format(", attributed to {}", pl.col("_dattr"))) \
        .otherwise(pl.lit(", no attribution recorded"))
    dref = pl.coalesce(pl.col("_dref"), pl.lit("events.csv"))
    is_death = pl.col("_dd").is_not_null()
    at_death = is_death & (pl.col("_dd") - pl.col("_end") - 1 <= pl.col("_seen"))  # no unassessed day before it
    resolved = ~is_death & (pl.col("_free") == after).fill_null(False)
    end = pl.when(at_death).then(pl.lit("death")).when(is_death).then(pl.lit("not_assessed")).when(resolved).then(pl.lit("resolved")).otherwise(pl.lit("not_assessed"))
    latest = (pl.when(is_death).then(pl.when(pl.col("_dd") > pl.col("_end")).then(pl.col("_dd")))
              .when(resolved).then(None)
              .otherwise(pl.coalesce(pl.col("_free"), pl.col("_next")) - 1))
    note = (
        pl.when(is_death & (pl.col("_dd") == pl.col("_end"))).then(pl.format(
            "episode ongoing at death on day {} ({}{}) (convention icans.conv.episode_end)", pl.col("_dd"), dref, attr))
        .when(at_death).then(pl.format(
            "episode ongoing at death on day {} ({}{}): every day after day {} assessed, none ICANS-free "
            "(convention icans.conv.episode_end)", pl.col("_dd"), dref, attr, pl.col("_end")))
        .when(is_death).then(pl.format(
            "episode not seen resolved before death on day {} ({}{}): no ICANS-free assessment after day {}, "
            "days without an assessment before the death, so it lasted to day {} at the latest "
            "(convention icans.conv.episode_end)", pl.col("_dd"), dref, attr, pl.col("_end"), pl.col("_dd")))
        .when(resolved).then(None)
        .when(pl.col("_free").is_not_null()).then(pl.format(
            "resolution between day {} and day {}: {} without an ICANS-free assessment (no row, or a range); "
            "first ICANS-free assessment day {} (convention icans.conv.episode_end)",
            after, pl.col("_free"), _span(after, pl.col("_free") - 1), pl.col("_free")))
        .when(pl.col("_next").is_not_null()).then(pl.format(
            "resolution not observed before the next episode (day {}): {} without an ICANS-free assessment "
            "(convention icans.conv.episode_end)", pl.col("_next"), _span(after, pl.col("_next") - 1)))
        .otherwise(pl.format("resolution not observed: no ICANS-free assessment after day {} "
                             "(convention icans.conv.episode_end)", pl.col("_end"))))
    eps = eps.select(*key, end.alias("episode_end"), latest.cast(pl.Int64).alias("episode_resolution_day_latest"),
                     note.alias("episode_end_note"))
    return daily.drop(*END_COLUMNS, strict=False).join(eps, on=key, how="left", maintain_order="left")


def resolution_summary(daily: pl.DataFrame) -> pl.DataFrame:
    """Per subject, from its last ICANS episode (:func:`episode_ends` columns of the daily frame):
    ``icans_resolution_day_latest`` (as ``crs_resolution_day_latest``: null when the end is settled)
    and ``icans_resolution_open`` (why the end is not settled: the end note)."""
    schema = {"subject_id": pl.String, "icans_resolution_day_latest": pl.Float64, "icans_resolution_open": pl.String}
    if daily.height == 0 or "episode_end" not in daily.columns:
        return pl.DataFrame(schema=schema)
    last = (daily.filter(pl.col("episode").is_not_null()).sort("subject_id", "episode", "day")
            .group_by("subject_id", maintain_order=True).last())
    return last.select("subject_id",
                       pl.col("episode_resolution_day_latest").cast(pl.Float64).alias("icans_resolution_day_latest"),
                       pl.when(pl.col("episode_end") != "resolved").then(pl.col("reason").str.extract(END_NOTE))
                       .alias("icans_resolution_open"))
