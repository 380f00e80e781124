"""ADTTE source-record variables (review s38 B4): SRCDOM, SRCVAR, SRCSEQ of the study row that fixed
ADY (CDISC pilot ADTTE: "SRCDOM Source Domain ... SRCVAR Source Variable ... SRCSEQ Source Sequence
Number"), and that row listed first in EVIDENCE so the 200-character cut never drops it.

The deciding row is the first reference of the record's evidence (``file:row``) whose row carries
ADY in one of its day columns (exactly, else its calendar day for a calendar-day ADY): events / observations / doses ``day`` (``datetime`` when the row was
dated by it), interventions ``start_day`` / ``end_day``, subjects ``last_followup_day``. SRCDOM is
then the file's table (``events``, ``subjects`` ...), SRCVAR that column, SRCSEQ the row number
cartlab's evidence gives it (``events.csv:3`` -> 3, sponsor value: not an SDTM --SEQ). A record dated
day 0 (EFS treatment failure, not evaluable) lists the first CAR-T ``doses.csv`` row first, so that row
decides (review s39 B4); without one the engine's SRCDOM is ``ADSL`` (SRCVAR ``TRTSDT`` in the export).
No such row otherwise: SRCVAR/SRCSEQ empty, SRCDOM the engine's, EVIDENCE as the engine listed it.
"""

from __future__ import annotations

import polars as pl

from cartlab.provenance import evidence_ref

__all__ = ["source_record"]

#: table -> (day column, SRCVAR); a row dated by ``datetime`` has SRCVAR datetime
_DAY_COLUMNS = {"subjects": (("last_followup_day", "last_followup_day"),),
                "events": (("day", "day"),), "observations": (("day", "day"),), "doses": (("day", "day"),),
                "interventions": (("start_day", "start_day"), ("end_day", "end_day"))}


def _candidates(study) -> pl.DataFrame:
    """``_ref``, ``_table``, ``_day`` and ``_var`` of every dated cell the study's rows have."""
    parts = []
    tables = study.tables()
    for table, cols in _DAY_COLUMNS.items():
        t = tables.get(table)
        if t is None or not {"src_file", "src_row"} <= set(t.columns):
            continue
        for col, var in cols:
            if col not in t.columns:
                continue
            v = (pl.when(pl.col("datetime").is_not_null()).then(pl.lit("datetime")).otherwise(pl.lit(var))
                 if "datetime" in t.columns and col == "day" else pl.lit(var))
            parts.append(t.select(evidence_ref().alias("_ref"), pl.lit(table).alias("_table"),
                                  pl.col(col).cast(pl.Float64).alias("_day"), v.alias("_var"))
                         .drop_nulls(["_ref", "_day"]))
    schema = {"_ref": pl.String, "_table": pl.String, "_day": pl.Float64, "_var": pl.String}
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


def source_record(t: pl.DataFrame, study, evidence: str = "evidence", day: str = "ADY") -> pl.DataFrame:
    """``t`` (one ADTTE record per row) with ``_srcdom``, ``SRCVAR``, ``SRCSEQ`` and ``evidence``
    reordered: the deciding row first."""
    cand = _candidates(study)
    f = t.with_row_index("_k")
    refs = (f.select("_k", pl.col(day).cast(pl.Float64).alias("_ady"),
                     pl.col(evidence).cast(pl.List(pl.String)).alias("_ref"))
            .explode("_ref").with_columns(pl.int_range(pl.len()).over("_k").alias("_pos")).drop_nulls("_ref"))
    # the exact day first; a calendar-day ADY (EndpointOptions.calendar_days) matches the row's floor
    exact = (pl.col("_day") - pl.col("_ady")).abs() < 1e-9
    hit = (refs.join(cand, on="_ref", how="inner").filter(exact | (pl.col("_day").floor() == pl.col("_ady")))
           .with_columns(exact.not_().alias("_inexact")).sort("_k", "_inexact", "_pos")
           .group_by("_k", maintain_order=True).first()
           .select("_k", pl.col("_ref").alias("_lead"), pl.col("_table").alias("_srcdom"), pl.col("_var").alias("SRCVAR"),
                   pl.col("_ref").str.extract(r":(\d+)$").cast(pl.Int64).alias("SRCSEQ")))
    f = f.join(hit, on="_k", how="left", maintain_order="left")
    ev = pl.col(evidence).cast(pl.List(pl.String))
    lead_first = pl.concat_list(pl.col("_lead"), ev).list.drop_nulls().list.unique(maintain_order=True)
    return f.with_columns(pl.when(pl.col("_lead").is_not_null()).then(lead_first).otherwise(ev).alias(evidence)
                          ).drop("_k", "_lead")
