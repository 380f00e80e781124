"""ADAE: the end of an episode (review 40 A1, B1, B3; docs/interop/adam.md "Conventions chosen").

* :func:`end_range`: an episode recorded as ended (AEOUT RECOVERED/RESOLVED) whose end the data bound
  but do not pin down - its last graded day is followed by days with no settled toxicity-free
  assessment, up to the first such assessment or the next episode's start - keeps AENDY/ADURN as
  the earliest end / shortest duration and gets ``ADURNUP`` (the longest duration the data leave
  possible, days) and ``AENRGFL`` "Y" (the end is a range), its REASON starting "end between day X
  and day Y". A settled end (the next day assessed free, a death) is ``AENRGFL`` "N", ADURNUP =
  ADURN. CRS: crs.conv.resolution_status; ICANS: icans.conv.episode_end (missing is not negative).
* :func:`open_end`: option ``adam.aeout_unobserved`` (``unknown`` default: CDISC codelist OUT C66768
  UNKNOWN; ``not_resolved``: NOT RECOVERED/NOT RESOLVED) applied to the CRS/ICANS episodes the
  analysis left UNKNOWN, and AENDY, ADURN, ADURU emptied for every episode not seen resolved
  (AEOUT NOT RECOVERED/NOT RESOLVED or UNKNOWN): its last graded day is in REASON.
"""

from __future__ import annotations

import polars as pl

from cartlab.grading.adam import CRS_TERM, ICANS_TERM, NOT_RESOLVED, UNKNOWN

__all__ = ["DAILY_TERMS", "end_range", "episode_bounds", "lower_note", "open_end"]

_RESOLVED = "RECOVERED/RESOLVED"

#: the ADAE terms graded day by day (steps._adae) and their daily tables, with ``grade_max`` per day
DAILY_TERMS = {CRS_TERM: "crs_daily", ICANS_TERM: "icans_daily"}


def _with_death_episode_start(daily: pl.DataFrame) -> pl.DataFrame:
    """``_dstart``: on a day whose unattributed death the engine attached to an episode
    (``death_episode``), that episode's first day; null elsewhere (and without the column)."""
    if "death_episode" not in daily.columns or "episode" not in daily.columns:
        return daily.with_columns(pl.lit(None, dtype=pl.Float64).alias("_dstart"))
    starts = (daily.filter(pl.col("episode").is_not_null()).group_by("subject_id", "episode")
              .agg(pl.col("day").min().floor().cast(pl.Float64).alias("_dstart"))
              .rename({"episode": "death_episode"}))
    return daily.join(starts, on=["subject_id", "death_episode"], how="left", maintain_order="left")


def episode_bounds(analysis, t: pl.DataFrame) -> pl.DataFrame:
    """Per ADAE row (``AESEQ`` of ``USUBJID``) the grades the data leave possible for the episode.

    ``ATOXGRUP``, the highest - CRS/ICANS: the highest daily ``grade_max`` from its start to its end
    day, and the day after it whose unattributed death the engine attached to the episode
    (``death_episode``, review 41 F1); ICAHT: ``icaht_early_grade_max`` / ``icaht_late_grade_max`` of
    the window - never below ATOXGR; empty when the analysis lacks the table that says (not known,
    never read as ATOXGR).

    ``ATOXGRLO``, the lowest (review41_diff2 F4, as ADSL CRSGRLO): the highest daily ``grade_min``
    from the episode's start to its end day (the episode's grade is at least each day's lowest
    possible grade), never above ATOXGR; below it only when events.csv was not given and a fever
    could be an infection's (crs.conv.absent_events), 0 when the episode may not have happened at
    all. = ATOXGR where the daily table has no ``grade_min`` (ICANS) and for ICAHT."""
    from cartlab.grading.icaht import EARLY_TERM, LATE_TERM

    keys = t.select("USUBJID", "AESEQ", "AETERM", "ASTDY", "AENDY", "ATOXGR")
    ups = []
    for term, name in DAILY_TERMS.items():
        if not analysis.has(name) or "grade_max" not in analysis.table(name).columns:
            continue
        daily = analysis.table(name)
        lo = pl.coalesce(pl.col("grade_min"), pl.col("grade")) if "grade_min" in daily.columns else pl.lit(None)
        d = _with_death_episode_start(daily).select(
            pl.col("subject_id").alias("USUBJID"), pl.col("day").floor().alias("_d"),
            pl.col("grade_max").cast(pl.Int64).alias("_up"), lo.cast(pl.Int64).alias("_lo"), "_dstart")
        # ... and an unattributed death the engine attached to the episode after its last day (icans_daily
        # death_episode, convention icans.conv.unattributed_death; review 41 F1): the episode it starts
        inside = pl.col("_d").is_between(pl.col("ASTDY"), pl.col("AENDY"))
        ups.append(keys.filter(pl.col("AETERM") == term).join(d, on="USUBJID", how="inner")
                   .filter(inside | (pl.col("_dstart") == pl.col("ASTDY")))
                   .group_by("USUBJID", "AESEQ").agg(pl.col("_up").max(), pl.col("_lo").filter(inside).max()))
    if analysis.has("icaht"):
        ic = analysis.table("icaht")
        for term, col in ((EARLY_TERM, "icaht_early_grade_max"), (LATE_TERM, "icaht_late_grade_max")):
            if col in ic.columns:
                ups.append(keys.filter(pl.col("AETERM") == term).join(
                    ic.select(pl.col("subject_id").alias("USUBJID"), pl.col(col).cast(pl.Int64).alias("_up")),
                    on="USUBJID", how="inner").select("USUBJID", "AESEQ", "_up", pl.lit(None, dtype=pl.Int64).alias("_lo")))
    schema = {"USUBJID": pl.String, "AESEQ": pl.Int64, "_up": pl.Int64, "_lo": pl.Int64}
    up = pl.concat([u.cast(schema) for u in ups]) if ups else pl.DataFrame(schema=schema)
    g = pl.col("ATOXGR").cast(pl.Int64)
    return keys.join(up, on=["USUBJID", "AESEQ"], how="left", maintain_order="left").select(
        "USUBJID", "AESEQ", pl.when(pl.col("_up").is_not_null()).then(pl.max_horizontal(pl.col("_up"), g)).alias("ATOXGRUP"),
        pl.coalesce(pl.min_horizontal(pl.col("_lo"), g), g).alias("ATOXGRLO"))


def _settled(term: str, cols: list[str]) -> pl.Expr:
    """A settled toxicity-free day of the daily table: CRS grade < 1 with grade_max < 1 (or opened only
    by an absent interventions.csv); ICANS: the engine's own test (icans_episodes.free_day: grade_max 0
    or opened only by an absent events.csv, on a day that is an ICANS assessment - not a day kept only
    to name an event of another cause, review 46 finding 1)."""
    from cartlab.grading.absent_interventions import MISSING
    from cartlab.grading.icans_episodes import free_day

    if term != CRS_TERM:
        return free_day(cols)
    gmax = pl.col("grade_max") if "grade_max" in cols else pl.col("grade")
    miss = pl.col("missing_inputs") if "missing_inputs" in cols else pl.lit([], pl.List(pl.String))
    return (pl.col("grade").fill_null(0) < 1) & ((gmax.fill_null(0) < 1) | (miss == [MISSING]))


def end_range(analysis, t: pl.DataFrame) -> pl.DataFrame:
    """``t`` (adae_toxicity rows, cartlab days) with ``ADURNUP``, ``AENRGFL`` and the range note in
    front of ``REASON`` (see the module docstring); both empty for ICAHT, for an episode not seen
    resolved and when the analysis lacks the daily table."""
    keys = t.select("USUBJID", "AESEQ", "AETERM", "ASTDY", "AENDY").with_columns(
        pl.col("ASTDY").shift(-1).over("USUBJID", "AETERM", order_by="ASTDY").alias("_next"))
    parts = []
    for term, name in DAILY_TERMS.items():
        if not analysis.has(name):
            continue
        d = analysis.table(name)
        free = d.filter(_settled(term, d.columns)).select(pl.col("subject_id").alias("USUBJID"),
                                                          pl.col("day").floor().cast(pl.Int64).alias("_free"))
        k = keys.filter(pl.col("AETERM") == term)
        first = (k.join(free, on="USUBJID").filter((pl.col("_free") > pl.col("AENDY"))
                                                   & (pl.col("_next").is_null() | (pl.col("_free") < pl.col("_next"))))
                 .group_by("USUBJID", "AESEQ").agg(pl.col("_free").min()))
        parts.append(k.join(first, on=["USUBJID", "AESEQ"], how="left").select(
            "USUBJID", "AESEQ", (pl.min_horizontal("_free", "_next") - 1).cast(pl.Int64).alias("_latest")))
    latest = (pl.concat(parts) if parts else pl.DataFrame(schema={"USUBJID": pl.String, "AESEQ": pl.Int64,
                                                                  "_latest": pl.Int64}))
    f = t.join(latest, on=["USUBJID", "AESEQ"], how="left", maintain_order="left")
    episode = pl.col("AETERM").is_in([CRS_TERM, ICANS_TERM]) & pl.col("AENDY").is_not_null()
    settled = (pl.col("AEOUT") == "FATAL") | ((pl.col("AEOUT") == _RESOLVED) & pl.col("_latest").is_not_null()
                                              & (pl.col("_latest") <= pl.col("AENDY")))
    ranged = episode & (pl.col("AEOUT") == _RESOLVED) & (pl.col("_latest") > pl.col("AENDY")).fill_null(False)
    name = pl.when(pl.col("AETERM") == CRS_TERM).then(pl.lit("CRS")).otherwise(pl.lit("ICANS"))
    note = pl.format("end between day {} and day {} (cartlab days): no settled {}-free assessment in between, ADURN "
                     "the shortest duration, ADURNUP {} the longest (AENRGFL Y); ", pl.col("AENDY"), pl.col("_latest"),
                     name, pl.col("_latest") - pl.col("ASTDY") + 1)
    return f.with_columns(
        pl.when(ranged).then(pl.col("_latest") - pl.col("ASTDY") + 1)
        .when(episode & settled).then(pl.col("ADURN")).cast(pl.Int64).alias("ADURNUP"),
        pl.when(ranged).then(pl.lit("Y")).when(episode & settled).then(pl.lit("N")).alias("AENRGFL"),
        pl.when(ranged).then(pl.concat_str(note, pl.col("REASON").fill_null(""))).otherwise(pl.col("REASON")).alias("REASON"),
    ).drop("_latest")


def open_end(t: pl.DataFrame, unobserved: str = "unknown") -> pl.DataFrame:
    """``t`` with option adam.aeout_unobserved applied to the CRS/ICANS AEOUT UNKNOWN rows (their REASON
    note follows) and AENDY, ADURN, ADURU empty where the episode was not seen resolved."""
    if unobserved not in ("unknown", "not_resolved"):
        raise ValueError(f"adam.aeout_unobserved must be unknown or not_resolved, not {unobserved!r}")
    if unobserved == "not_resolved":
        flip = (pl.col("AEOUT") == UNKNOWN) & pl.col("AETERM").is_in([CRS_TERM, ICANS_TERM])
        t = t.with_columns(
            pl.when(flip).then(pl.lit(NOT_RESOLVED)).otherwise(pl.col("AEOUT")).alias("AEOUT"),
            pl.when(flip).then(pl.col("REASON").str.replace(f"AEOUT {UNKNOWN}:", f"AEOUT {NOT_RESOLVED}:", literal=True)
                               .str.replace("adam.aeout_unobserved=unknown", "adam.aeout_unobserved=not_resolved",
                                            literal=True)).otherwise(pl.col("REASON")).alias("REASON"))
    unseen = pl.col("AEOUT").is_in([NOT_RESOLVED, UNKNOWN])
    return t.with_columns(*(pl.when(unseen).then(None).otherwise(pl.col(c)).alias(c) for c in ("AENDY", "ADURN", "ADURU")))


def lower_note(t: pl.DataFrame, width: int = 200) -> pl.DataFrame:
    """``t`` with REASON naming the lower bound where ATOXGRLO is below ATOXGR and the first ``width``
    characters of REASON (XPT v5 cuts it there) do not already say ``grade_min``: "down to grade N
    (ATOXGRLO): ..." in front (review41_diff2 F4)."""
    reason = pl.col("REASON").cast(pl.String).fill_null("")
    named = reason.str.slice(0, width).str.contains("grade_min", literal=True)
    note = pl.format("down to grade {} (ATOXGRLO): events.csv not given, a fever could be an infection's (option "
                     "crs.absent_events=unknown); ", pl.col("ATOXGRLO"))
    low = (pl.col("ATOXGRLO") < pl.col("ATOXGR").cast(pl.Int64)).fill_null(False) & ~named
    return t.with_columns(pl.when(low).then(pl.concat_str(note, reason)).otherwise(pl.col("REASON")).alias("REASON"))
