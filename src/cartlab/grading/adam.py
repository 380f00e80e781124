"""ADaM-style outputs of the grading engines.

* :func:`adae_toxicity`: an ADAE-like episodes table (one row per CRS / ICANS episode, ICAHT per
  subject) with ASTDY/AENDY/ADURN, the grade (ATOXGR), the grading scale (ATOXGRS), the rule and the
  evidence rows, so an episode can be traced back to the flowsheet.
* ``AEOUT`` (SDTM AE "Outcome of Adverse Event", CDISC codelist OUT C66768) of CRS and ICANS episodes
  (review 40 A1/B1; :func:`outcome`): from CRS ``resolution_status`` (crs.conv.resolution_status) and
  ICANS ``end_reason`` (icans.conv.episode_end). An episode not seen resolved is NOT RECOVERED/NOT
  RESOLVED only when it is still graded on the last follow-up day (``subjects.last_followup_day``; without
  it, the subject's last recorded day): assessed to the end. When the data simply stop before that, the
  outcome is UNKNOWN (option ``adam.aeout_unobserved``, default ``unknown``; ``not_resolved`` = before
  session 40's fix). ICAHT: no outcome derived (empty).
"""

from __future__ import annotations

import polars as pl

from cartlab._deprecated import renamed
from cartlab.grading.common import EVIDENCE
from cartlab.model import Study

ADAE_SCHEMA = {
    "STUDYID": pl.String,
    "USUBJID": pl.String,
    "AESEQ": pl.Int64,
    "AETERM": pl.String,
    "ASTDY": pl.Int64,
    "AENDY": pl.Int64,
    "ADURN": pl.Int64,
    "ADURU": pl.String,
    "ATOXGR": pl.Int64,
    "ATOXGRS": pl.String,
    "AEOUT": pl.String,
    "RULE": pl.String,
    "REASON": pl.String,
    "EVIDENCE": EVIDENCE,
}

#: crs.conv.resolution_status -> CDISC controlled terms of AE outcome (AEOUT, codelist OUT C66768);
#: ``ongoing_at_last_followup`` is NOT RECOVERED/NOT RESOLVED or UNKNOWN (:func:`outcome`); ``not_settled``
#: (an end opened by an absent interventions.csv, review 40 B1) UNKNOWN
AEOUT = {"resolved": "RECOVERED/RESOLVED", "ongoing_at_last_followup": "NOT RECOVERED/NOT RESOLVED",
         "ongoing_at_death": "NOT RECOVERED/NOT RESOLVED", "fatal": "FATAL", "not_settled": "UNKNOWN"}
#: values of option adam.aeout_unobserved (an episode whose data stop before the last follow-up)
AEOUT_UNOBSERVED = ("unknown", "not_resolved")
NOT_RESOLVED = "NOT RECOVERED/NOT RESOLVED"
UNKNOWN = "UNKNOWN"
CRS_TERM = "Cytokine release syndrome"
ICANS_TERM = "Immune effector cell-associated neurotoxicity syndrome"


def _last_seen(study: Study) -> pl.DataFrame:
    """Per subject: ``_lfu`` (floor of subjects.last_followup_day, else of the subject's last recorded
    day in observations / events / interventions: the end of what is known) and ``_dd`` (the first
    death day, floor)."""
    days = []
    for name in ("observations", "events", "interventions"):
        t = getattr(study, name, None)
        if t is not None and t.height and "day" in t.columns:
            days.append(t.select("subject_id", pl.col("day").cast(pl.Float64)))
    last = (pl.concat(days).group_by("subject_id").agg(pl.col("day").max().alias("_data")) if days
            else pl.DataFrame(schema={"subject_id": pl.String, "_data": pl.Float64}))
    subj = study.subjects.select("subject_id", (pl.col("last_followup_day").cast(pl.Float64)
                                                if "last_followup_day" in study.subjects.columns
                                                else pl.lit(None, pl.Float64)).alias("_lf"))
    ev = study.events
    if ev.height and {"event", "day"} <= set(ev.columns):
        dd = (ev.filter((pl.col("event") == "death") & pl.col("day").is_not_null()).group_by("subject_id")
              .agg(pl.col("day").min().floor().cast(pl.Int64).alias("_dd")))
    else:
        dd = pl.DataFrame(schema={"subject_id": pl.String, "_dd": pl.Int64})
    return (subj.join(last, on="subject_id", how="left").join(dd, on="subject_id", how="left")
            .select("subject_id", pl.coalesce("_lf", "_data").floor().cast(pl.Int64).alias("_lfu"),
                    pl.col("_lf").is_not_null().alias("_lf_given"), "_dd"))


def outcome(p: pl.DataFrame, seen: pl.DataFrame, unobserved: str = "unknown") -> pl.DataFrame:
    """``p`` (one engine's episodes: subject_id, AENDY, ATOXGR, reason and CRS ``resolution_status`` or
    ICANS ``end_reason`` / ``resolution_day_latest``) with ``AEOUT`` and, for an outcome the data leave
    unknown, a note in front of ``reason``. ``seen``: :func:`_last_seen`.

    Not seen resolved (CRS ongoing_at_last_followup; ICANS not_assessed with no later assessment, or
    bounded only by a death after unassessed days): NOT RECOVERED/NOT RESOLVED when the episode is
    still graded on the last follow-up day, else UNKNOWN (``unobserved="not_resolved"``: always NOT
    RECOVERED/NOT RESOLVED). ICANS: grade 5 (death due to ICANS, ASTCT 2019) FATAL; death (episode
    ongoing at a death) NOT RECOVERED/NOT RESOLVED; resolved, or a later ICANS-free assessment / next
    episode bounding the end, RECOVERED/RESOLVED (the range: ADAE AENRGFL / ADURNUP)."""
    if unobserved not in AEOUT_UNOBSERVED:
        raise ValueError(f"aeout_unobserved must be one of {AEOUT_UNOBSERVED}, not {unobserved!r}")
    if "resolution_status" in p.columns:
        open_end = pl.col("resolution_status") == "ongoing_at_last_followup"
        known = pl.col("resolution_status").replace_strict(AEOUT, default=None, return_dtype=pl.String)
    elif "end_reason" in p.columns:
        latest = pl.col("resolution_day_latest")
        death_bound = latest.is_not_null() & (latest == pl.col("_dd"))
        open_end = (pl.col("end_reason") == "not_assessed") & (latest.is_null() | death_bound)
        known = (pl.when(pl.col("ATOXGR") >= 5).then(pl.lit("FATAL"))
                 .when(pl.col("end_reason") == "death").then(pl.lit(NOT_RESOLVED))
                 .when(pl.col("end_reason").is_in(["resolved", "not_assessed"])).then(pl.lit("RECOVERED/RESOLVED")))
    else:
        return p.with_columns(pl.lit(None, dtype=pl.String).alias("AEOUT"))
    f = p.join(seen, on="subject_id", how="left", maintain_order="left")
    to_end = (pl.col("AENDY") >= pl.col("_lfu")).fill_null(False)
    unknown = open_end & ~to_end & (pl.col("ATOXGR").fill_null(0) < 5)
    fatal = pl.col("ATOXGR").fill_null(0) >= 5
    if "end_reason" in p.columns:
        open_end = open_end & ~fatal
    what = pl.when(pl.col("_lf_given")).then(pl.format("the last follow-up day {}", pl.col("_lfu"))) \
        .otherwise(pl.format("the subject's last recorded day {}", pl.col("_lfu")))
    aeout = (pl.when(unknown).then(pl.lit(UNKNOWN if unobserved == "unknown" else NOT_RESOLVED))
             .when(open_end).then(pl.lit(NOT_RESOLVED)).otherwise(known))
    note = (pl.when(unknown).then(pl.format(
        "AEOUT {}: not seen resolved, no assessment settles the end after day {} up to {} "
        "(option adam.aeout_unobserved={}); ", aeout, pl.col("AENDY"), what, pl.lit(unobserved))))
    return f.with_columns(aeout.alias("AEOUT"),
                          pl.concat_str(note, pl.col("reason"), ignore_nulls=False).fill_null(pl.col("reason")).alias("reason"))


def derive_adae_toxicity(study: Study, parts: list[pl.DataFrame] | None = None,
                         aeout_unobserved: str = "unknown") -> pl.DataFrame:
    """CRS and ICANS episodes (ASTCT 2019) and ICAHT (EHA/EBMT 2023) of every subject, one ADAE-like
    frame; AEOUT by :func:`outcome` (``aeout_unobserved``: option adam.aeout_unobserved)."""
    from cartlab.grading.crs import derive_crs_episodes
    from cartlab.grading.hematotox import derive_icaht_episodes
    from cartlab.grading.icans import derive_icans_episodes

    parts = parts if parts is not None else [derive_crs_episodes(study), derive_icans_episodes(study), derive_icaht_episodes(study)]
    seen = _last_seen(study)
    parts = [outcome(p, seen, aeout_unobserved) if p.height else p for p in parts]
    rows = [
        p.select(
            pl.lit(study.study_id).alias("STUDYID"),
            pl.col("subject_id").alias("USUBJID"),
            pl.col("AETERM"),
            pl.col("ASTDY").cast(pl.Int64),
            pl.col("AENDY").cast(pl.Int64),
            pl.col("ADURN").cast(pl.Int64),
            # no unit where there is no duration (the late ICAHT row: its tests, not an episode; review 37 B6)
            pl.when(pl.col("ADURN").is_not_null()).then(pl.lit("DAYS")).alias("ADURU"),
            pl.col("ATOXGR").cast(pl.Int64),
            pl.col("ATOXGRS"),
            # how a CRS / ICANS episode ended (crs.conv.resolution_status, icans.conv.episode_end), codelist OUT
            pl.col("AEOUT"),
            pl.col("rule").alias("RULE"),
            pl.col("reason").alias("REASON"),
            pl.col("evidence").cast(EVIDENCE).alias("EVIDENCE"),
        )
        for p in parts
        if p.height
    ]
    if not rows:
        return pl.DataFrame(schema=ADAE_SCHEMA)
    out = pl.concat(rows).sort("USUBJID", "ASTDY", "AETERM")
    out = out.with_columns(pl.int_range(1, pl.len() + 1).over("USUBJID").cast(pl.Int64).alias("AESEQ"))
    return out.select(list(ADAE_SCHEMA))


def to_csv_frame(df: pl.DataFrame) -> pl.DataFrame:
    """Lists (evidence) joined with '; ' so the frame can be written as CSV."""
    def joined(c: str, t: pl.List) -> pl.Expr:
        items = pl.col(c) if t.inner == pl.String else pl.col(c).list.eval(pl.element().cast(pl.String))
        return items.list.join("; ")

    return df.with_columns(joined(c, t) for c, t in df.schema.items() if isinstance(t, pl.List))


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
__getattr__ = renamed(__name__, "adae_toxicity")
