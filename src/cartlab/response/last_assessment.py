"""The last disease assessment: the day EFS and duration of response censor a subject in response
without relapse or death (review 48 F1; options ``endpoints.efs_censor`` and ``best_response.dor_censor``,
default "last_disease_assessment").

ELN 2022 Table 9 censors EFS "on the date they were last assessed for response", and its Table 7
hematologic relapse includes "reappearance of blasts in the blood in at least 2 peripheral blood
samples at least one week apart", which cartlab's relapse rule reads (criteria ``relapse.pb_blast_samples``,
:mod:`cartlab.response.relapse_episodes`). A blood sample that rule reads as no circulating blasts (0,
``<=0``: ``_pb_status`` False) therefore assesses continued response on its day; a censored bound
(``<1``) settles nothing and does not count, and a row without a value is no sample. The reading of
"assessed" is cartlab's (endpoints.yaml rule ``censor.last_blood_assessment``, status convention). A
criteria table whose relapse rule does not read blood (no ``pb_blast_samples``) keeps the marrow alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import polars as pl

from cartlab.model import Study
from cartlab.provenance import EVIDENCE, row_ref
from cartlab.response.adtte_population import day_expr, fmt_g
from cartlab.response.marrow import _by_subject, _shown, _table, criteria_for_disease
from cartlab.response.relapse_episodes import _pb_status

__all__ = ["BLOOD_SCHEMA", "blood_samples", "dor_last_blood", "last_disease_assessment", "reads_blood"]

_SID = "subject_id"
_NO_REFS = pl.lit([], dtype=EVIDENCE)

#: one row per PBBLAST sample of a subject whose relapse rule reads blood; ``no_blasts``: True = the
#: relapse rule reads no circulating blasts (settles "no relapse" on that day), False = blasts, null = a
#: bound that settles nothing
BLOOD_SCHEMA: dict[str, pl.DataType] = {_SID: pl.String, "day": pl.Float64, "ref": pl.String, "shown": pl.String,
                                        "no_blasts": pl.Boolean}


def reads_blood(criteria: str | None) -> bool:
    """True when the criteria table's relapse rule reads peripheral-blood blasts (its ``relapse`` block
    gives ``pb_blast_samples``): eln2022_aml (ELN 2022 Table 7) and all_car_t (the AML rule applied to ALL,
    rule all.relapse.pb_blasts) both do."""
    if criteria is None:
        return False
    return (_table(criteria).get("relapse") or {}).get("pb_blast_samples") is not None


def blood_samples(study: Study, criteria: str | None = None) -> pl.DataFrame:
    """The PBBLAST samples of the subjects whose relapse rule reads blood (``criteria``: the response
    table for every subject, None = each subject's by its disease), read as that rule reads them: the
    rows of :func:`cartlab.response.marrow._by_subject` (a value or a censored bound; a row with
    neither is no sample) and :func:`cartlab.response.relapse_episodes._pb_status`. :data:`BLOOD_SCHEMA`."""
    names = {sid: criteria or criteria_for_disease(d)
             for sid, d in study.subjects.select(_SID, "disease").iter_rows()}
    blood = [sid for sid, name in names.items() if reads_blood(name)]
    if not blood:
        return pl.DataFrame(schema=BLOOD_SCHEMA)
    data = _by_subject(study, params=("PBBLAST",))
    rows = []
    for sid in blood:
        for x in data[sid].obs.get("PBBLAST", []) if sid in data else []:
            status = _pb_status(x)
            rows.append((sid, float(x["day"]), row_ref(x), _shown(x), None if status is None else not status))
    return pl.DataFrame(rows, schema=BLOOD_SCHEMA, orient="row")


def _later_note(later: pl.DataFrame) -> pl.DataFrame:
    """Per subject: the blood samples after the censoring day that do not settle no relapse, in a phrase."""
    one = pl.format("PBBLAST {} on day {}{}: {}", "shown", fmt_g(pl.col("day")),
                    pl.when(pl.col("ref").is_not_null()).then(pl.format(" ({})", "ref")).otherwise(pl.lit("")),
                    pl.when(pl.col("no_blasts").is_null()).then(pl.lit("a bound that does not settle circulating blasts"))
                    .otherwise(pl.lit("circulating blasts, no relapse established by the blood rule")))
    return later.sort(_SID, "day", "_i").group_by(_SID, maintain_order=True).agg(
        pl.len().alias("_n"), one.head(3).str.join("; ").alias("_txt")).select(
        _SID, pl.format("later blood sample(s) not read as no relapse: {}{}", "_txt",
                        pl.when(pl.col("_n") > 3).then(pl.format(" and {} more", pl.col("_n") - 3))
                        .otherwise(pl.lit(""))).alias("ld_later"))


def last_disease_assessment(f: pl.DataFrame, blood: pl.DataFrame | None, opts: Any, cut: bool) -> pl.DataFrame:
    """``f`` (the per-subject frame of :func:`cartlab.response.adtte._subjects`: ``la_*`` the last marrow,
    ``remefs_day``, ``c_day``, ``a_day``) with the EFS censoring assessment ``ld_day``, ``ld_how``,
    ``ld_refs``, ``ld_blood`` (a blood sample sets it) and ``ld_later`` (later samples that settle
    nothing, named). ``efs_censor="last_disease_assessment"``: the latest of the last marrow and the
    last blood sample after the EFS remission that reads no circulating blasts, on or before the day
    last known alive and (``cut``: a censoring at HSCT / new therapy applies) the censoring day;
    otherwise the last marrow."""
    f = f.with_columns(pl.col("la_day").alias("ld_day"), pl.col("la_how").alias("ld_how"),
                       pl.col("la_refs").alias("ld_refs"), pl.lit(False).alias("ld_blood"),
                       pl.lit(None, dtype=pl.String).alias("ld_later"))
    if opts.efs_censor != "last_disease_assessment" or blood is None or blood.is_empty():
        return f
    s = (blood.with_row_index("_i").with_columns(day_expr(pl.col("day"), opts.calendar_days))
         .join(f.select(_SID, "remefs_day", "c_day", "a_day", "la_day"), on=_SID, how="inner")
         .filter(pl.col("remefs_day").is_not_null() & (pl.col("day") > pl.col("remefs_day"))
                 & (pl.col("day") <= pl.col("a_day"))))
    if cut:  # not after the censoring day (HSCT / new therapy), as the marrows are cut (adtte._subjects)
        s = s.filter(pl.col("c_day").is_null() | (pl.col("day") <= pl.col("c_day")))
    settles = s.filter(pl.col("no_blasts").fill_null(False) & (pl.col("la_day").is_null()
                                                                | (pl.col("day") > pl.col("la_day"))))
    last = (settles.filter(pl.col("day") == pl.col("day").max().over(_SID)).sort(_SID, "_i")
            .group_by(_SID, maintain_order=True).agg(
                pl.col("day").first().alias("lb_day"), pl.col("shown").first().alias("lb_shown"),
                pl.col("ref").drop_nulls().alias("lb_refs")))
    later = (s.join(last.select(_SID, "lb_day"), on=_SID, how="left")
             .filter(~pl.col("no_blasts").fill_null(False)
                     & (pl.col("day") > pl.coalesce("lb_day", "la_day", "remefs_day"))))
    f = f.join(last, on=_SID, how="left").join(_later_note(later).rename({"ld_later": "_later"}), on=_SID, how="left")
    b = pl.col("lb_day").is_not_null()
    marrow = pl.col("la_how").fill_null(pl.lit("none dated"))
    ref = pl.when(pl.col("lb_refs").list.len() > 0).then(pl.format(" ({})", pl.col("lb_refs").list.join(", ")))
    how = pl.format("blood sample PBBLAST {} on day {}{}: no circulating blasts, read by the relapse rule "
                    "(ELN 2022 Table 7 relapse by blood), after the last marrow ({})", "lb_shown",
                    fmt_g(pl.col("lb_day")), ref.otherwise(pl.lit("")), marrow)
    return f.with_columns(
        pl.when(b).then(pl.col("lb_day")).otherwise(pl.col("ld_day")).alias("ld_day"),
        pl.when(b).then(how).otherwise(pl.col("ld_how")).alias("ld_how"),
        pl.when(b).then(pl.concat_list(pl.col("lb_refs").cast(EVIDENCE), pl.col("la_refs").fill_null(_NO_REFS))
                        .list.unique(maintain_order=True)).otherwise(pl.col("ld_refs")).alias("ld_refs"),
        b.alias("ld_blood"), pl.col("_later").alias("ld_later"),
    ).drop("lb_day", "lb_shown", "lb_refs", "_later")


def last_marrow(rows: pl.DataFrame) -> pl.DataFrame:
    """Per subject: the last dated response assessment (``la_day``, ``la_how``, ``la_refs``) - the
    day ELN 2022 Table 9 censors EFS at ("the date they were last assessed for response") when only
    the marrow counts (``efs_censor="last_response_assessment"``)."""
    last = rows.filter(pl.col("day").is_not_null())
    last = last.filter(pl.col("day") == pl.col("day").max().over(_SID)).sort("_r")
    return last.group_by(_SID, maintain_order=True).agg(
        pl.col("day").first().alias("la_day"),
        pl.format("{} on day {}", "category", fmt_g(pl.col("day"))).unique(maintain_order=True).str.join(", ").alias("la_how"),
        pl.col("refs").explode().drop_nulls().unique(maintain_order=True).alias("la_refs"))


def dor_last_blood(samples: pl.DataFrame | None, after: float | None, last_marrow_day: float | None,
                   upto: float | None, alive: float | None) -> dict[str, Any] | None:
    """Duration of response (``dor_censor="last_disease_assessment"``): the last of one subject's blood
    samples (:func:`blood_samples` rows) after the relapse episode's response day ``after`` and after the
    last marrow, that reads no circulating blasts, on or before ``upto`` (a censoring event) and the day
    last known alive ``alive`` (in calendar days): ``{"day", "ref", "text"}``, or None (the marrow stays; no episode, e.g. a
    PR, whose continuation a blood sample does not assess: None)."""
    if samples is None or samples.is_empty() or after is None:
        return None
    # whole calendar days, as duration of response counts them (best._days_between)
    day = pl.col("day").floor()
    keep = pl.col("no_blasts").fill_null(False) & (day > math.floor(after))
    for bound, later in ((last_marrow_day, True), (upto, False), (alive, False)):
        if bound is not None:
            keep = keep & (day > math.floor(bound) if later else day <= math.floor(bound))
    hit = samples.with_row_index("_i").filter(keep)
    if hit.is_empty():
        return None
    r = hit.sort("day", "_i", descending=[True, False]).row(0, named=True)
    ref = f" ({r['ref']})" if r["ref"] else ""
    return {"day": r["day"], "ref": r["ref"],
            "text": f"blood sample PBBLAST {r['shown']} on day {r['day']:g}{ref}: no circulating blasts, read by the "
                    "relapse rule (ELN 2022 Table 7 relapse by blood)"}


def reason_expr(text: Callable[..., pl.Expr], what: str, alive: pl.Expr) -> pl.Expr:
    """The EFS censoring reason at the last disease assessment (``ld_*``): rule
    ``censor.last_blood_assessment`` when a blood sample sets the day, else ``censor.last_assessment``,
    with the later samples that settle nothing named (``text``: :func:`cartlab.response.adtte._text`)."""
    day, how = pl.col("ld_day"), pl.col("ld_how")
    base = (pl.when(pl.col("ld_blood")).then(text("censor.last_blood_assessment", what=what, day=day, how=how, alive=alive))
            .otherwise(text("censor.last_assessment", what=what, day=day, how=how, alive=alive)))
    return pl.concat_str(base, pl.when(pl.col("ld_later").is_not_null()).then(pl.format("; {}", pl.col("ld_later")))
                         .otherwise(pl.lit("")))
