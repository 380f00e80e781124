"""The ASTCT 2019 CRS fever waiver: from which day, and until when, a day without fever is graded.

ASTCT 2019 (Lee DW et al., Biol Blood Marrow Transplant 2019;25:625) Table 1 footnote, as reproduced
by SITC (JITC): "In patients who have CRS then receive tocilizumab or steroids, fever is no longer
required to grade subsequent CRS severity." The study format (spec "Derivation conventions") reads
it from the day of the first tocilizumab or corticosteroid given for CRS for the whole course. Two
options (criteria ``astct_crs_2019.yaml``, conventions ``crs.conv.fever_waiver*``) give the other
readings:

* ``fever_waiver_scope``: ``course`` (spec) or ``episode`` (the waiver holds inside the CRS episode
  in which it was given; a later episode needs a fever, then its own tocilizumab/corticosteroid);
* ``fever_waiver_requires_crs``: ``False`` (spec) or ``True`` (only a tocilizumab/corticosteroid
  on or after the first CRS day, a counted fever day, starts the waiver: not a prophylactic dose).

:func:`apply_waiver` adds ``_waived`` and the waiver's day, row and category to a daily frame; the
loop is over waiver restarts (episodes), never over rows.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from cartlab.provenance import EVIDENCE

KEY = ["subject_id", "day"]
_NEVER = -(10**9)


def _first_start(cand: pl.DataFrame, requires_crs: bool) -> pl.DataFrame:
    """Per subject the first day (of ``cand``) a waiver agent was given that may start the waiver."""
    given = pl.col("_waiver_given").fill_null(False)
    if requires_crs:
        first_crs = cand.filter(pl.col("_crs_fever")).group_by("subject_id").agg(pl.col("day").min().alias("_first_crs"))
        cand = cand.join(first_crs, on="subject_id", how="inner").filter(pl.col("day") >= pl.col("_first_crs"))
    return (cand.filter(given).sort(KEY).group_by("subject_id", maintain_order=True)
            .agg(pl.col("day").first().alias("_w"), pl.col("_waiver_day_ref").first().alias("_w_ref"),
                 pl.col("_waiver_day_cat").first().alias("_w_cat")))


def apply_waiver(f: pl.DataFrame, crs_fever: pl.Expr, crs_if_waived: pl.Expr, opts: dict[str, Any]) -> pl.DataFrame:
    """``f`` (features of :func:`cartlab.grading.crs.derive_crs_features`, one row per subject and
    day) with ``_waived`` (the day's fever requirement is waived), ``waiver_from_day``,
    ``waiver_to_day`` (its last day; null: to the end of the course), ``waiver_ref``,
    ``waiver_category`` (of the waiver in force that day, else of the subject's first counted agent) and ``_waiver_note`` / ``_waiver_note_refs`` (a waiver agent that did not
    waive, or a waiver that ended: named on the days it would have changed).

    ``crs_fever``: the day's fever counts toward CRS; ``crs_if_waived``: the day would be a CRS day
    (grade >= 1) were its fever requirement waived (episodes are counted with it)."""
    scope, requires = opts["fever_waiver_scope"], bool(opts["fever_waiver_requires_crs"])
    gap = int(opts["episode_join_gap_days"])
    f = f.with_columns(crs_fever.fill_null(False).alias("_crs_fever"), crs_if_waived.fill_null(False).alias("_crs_w"))
    if scope == "course" and not requires:  # the spec's reading: the subject's first counted agent, whole course
        return f.with_columns((pl.col("waiver_from_day").is_not_null() & (pl.col("day") >= pl.col("waiver_from_day")))
                              .alias("_waived"), pl.lit(None, dtype=pl.Int64).alias("waiver_to_day"),
                              pl.lit(None, dtype=pl.String).alias("_waiver_note"),
                              pl.lit(None, dtype=EVIDENCE).alias("_waiver_note_refs")
                              ).drop("_crs_fever", "_crs_w")
    first_agent = f.select("subject_id", pl.col("waiver_from_day").alias("_agent_day"),
                           pl.col("waiver_ref").alias("_agent_ref"),
                           pl.col("waiver_category").alias("_agent_cat")).unique("subject_id", keep="first")
    base = f.select(*KEY, "_crs_fever", "_crs_w", "_waiver_given", "_waiver_day_ref", "_waiver_day_cat").sort(KEY)
    spans = []
    state = base.select("subject_id").unique().with_columns(pl.lit(_NEVER, dtype=pl.Int64).alias("_from"))
    for _ in range(base.height + 1):  # one round per waiver (re)start; ends when no subject starts one
        cand = base.join(state, on="subject_id", how="inner").filter(pl.col("day") >= pl.col("_from"))
        starts = _first_start(cand, requires)
        if starts.height == 0:
            break
        if scope == "course":
            spans.append(starts.with_columns(pl.lit(None, dtype=pl.Int64).alias("_e")))
            break
        # the waiver's episode: from its day, CRS days (graded with the waiver) separated by at most
        # `gap` days without one; the first longer gap ends it (convention crs.conv.fever_waiver_scope)
        chain = (cand.join(starts, on="subject_id", how="inner")
                 .filter((pl.col("day") >= pl.col("_w")) & (pl.col("_crs_w") | (pl.col("day") == pl.col("_w"))))
                 .sort(KEY)
                 .with_columns(((pl.col("day") - pl.col("day").shift(1).over("subject_id")) > gap + 1)
                               .fill_null(False).cum_sum().over("subject_id").alias("_brk")))
        ends = chain.filter(pl.col("_brk") == 0).group_by("subject_id").agg(pl.col("day").max().alias("_e"))
        span = starts.join(ends, on="subject_id", how="left")
        spans.append(span)
        state = span.select("subject_id", (pl.col("_e") + 1).alias("_from"))
    span_schema = {"subject_id": pl.String, "_w": pl.Int64, "_w_ref": f.schema["waiver_ref"],
                   "_w_cat": pl.String, "_e": pl.Int64}
    spans = pl.concat([s.select(*span_schema).cast(span_schema) for s in spans]) if spans else pl.DataFrame(
        schema=span_schema)
    # the span in force on each day (the latest start on or before it)
    days = f.select(KEY).sort("subject_id", "day")
    hit = days.join_asof(spans.sort("subject_id", "_w"), left_on="day", right_on="_w", by="subject_id",
                         strategy="backward", check_sortedness=False)
    f = (f.drop("waiver_from_day", "waiver_ref", "waiver_category")
         .join(hit, on=KEY, how="left").join(first_agent, on="subject_id", how="left"))
    in_span = pl.col("_w").is_not_null() & (pl.col("_e").is_null() | (pl.col("day") <= pl.col("_e")))
    # a day that would be CRS with the waiver but is not: say why the agent recorded does not waive
    missed = ~in_span & ~pl.col("_crs_fever") & pl.col("_crs_w") & pl.col("_agent_day").is_not_null() \
        & (pl.col("day") >= pl.col("_agent_day"))
    ended = pl.col("_w").is_not_null() & pl.col("_e").is_not_null() & (pl.col("day") > pl.col("_e"))
    before_crs = pl.col("_agent_day").is_not_null() & (pl.col("_w").is_null() | (pl.col("_agent_day") < pl.col("_w")))
    note = (
        pl.when(missed & ended).then(pl.format(
            "the fever waiver from day {} ({}) ended with its CRS episode on day {}: a new episode needs a fever "
            "(option fever_waiver_scope=episode)", pl.col("_w"), pl.col("_w_cat"), pl.col("_e")))
        .when((missed | (pl.col("_waiver_given").fill_null(False) & ~in_span)) & before_crs & pl.lit(requires)).then(
            pl.format("{} on day {} given before any CRS: does not waive the fever (option fever_waiver_requires_crs)",
                      pl.col("_agent_cat"), pl.col("_agent_day")))
    )
    note_ref = pl.when(missed & ended).then(pl.concat_list(pl.col("_w_ref"))).when(note.is_not_null()).then(
        pl.concat_list(pl.col("_agent_ref")))
    return f.with_columns(
        in_span.alias("_waived"),
        pl.col("_w").alias("waiver_from_day"), pl.col("_e").alias("waiver_to_day"), pl.col("_w_ref").alias("waiver_ref"),
        pl.col("_w_cat").alias("waiver_category"), note.alias("_waiver_note"), note_ref.alias("_waiver_note_refs"),
    ).drop("_w", "_w_ref", "_w_cat", "_e", "_agent_day", "_agent_ref", "_agent_cat", "_crs_fever", "_crs_w")


SPAN_SCHEMA = {"subject_id": pl.String, "waiver_from_day": pl.Int64, "waiver_to_day": pl.Int64,
               "waiver_ref": pl.String, "waiver_category": pl.String}


def waiver_spans(f: pl.DataFrame) -> pl.DataFrame:
    """The waivers of a frame :func:`apply_waiver` returned: one row per subject and waiver, from
    ``waiver_from_day`` to ``waiver_to_day`` (null: to the end of the course), with the row and
    category that started it (:data:`SPAN_SCHEMA`). The older CRS scales read their fever waiver
    from these (:mod:`cartlab.grading.crs_legacy_waiver`), so both engines waive the same days."""
    started = f.filter(pl.col("waiver_from_day").is_not_null() & (pl.col("day") >= pl.col("waiver_from_day")))
    return (started.select(*SPAN_SCHEMA).cast(SPAN_SCHEMA).unique(["subject_id", "waiver_from_day"], keep="first")
            .sort("subject_id", "waiver_from_day"))
