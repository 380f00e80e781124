"""ADaM-style outputs of the grading engines.

* :func:`adae_toxicity`: an ADAE-like episodes table (one row per CRS / ICANS episode, ICAHT per
  subject) with ASTDY/AENDY/ADURN, the grade (ATOXGR), the grading scale (ATOXGRS), the rule and the
  evidence rows, so an episode can be traced back to the flowsheet.
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

#: crs.conv.resolution_status -> CDISC controlled terms of AE outcome (AEOUT)
AEOUT = {"resolved": "RECOVERED/RESOLVED", "ongoing_at_last_followup": "NOT RECOVERED/NOT RESOLVED",
         "ongoing_at_death": "NOT RECOVERED/NOT RESOLVED", "fatal": "FATAL"}


def derive_adae_toxicity(study: Study, parts: list[pl.DataFrame] | None = None) -> pl.DataFrame:
    """CRS and ICANS episodes (ASTCT 2019) and ICAHT (EHA/EBMT 2023) of every subject, one ADAE-like frame."""
    from cartlab.grading.crs import derive_crs_episodes
    from cartlab.grading.hematotox import derive_icaht_episodes
    from cartlab.grading.icans import derive_icans_episodes

    parts = parts if parts is not None else [derive_crs_episodes(study), derive_icans_episodes(study), derive_icaht_episodes(study)]
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
            # how a CRS episode ended (crs.conv.resolution_status, review 40 B2), CDISC AE outcome terms
            (pl.col("resolution_status").replace_strict(AEOUT, default=None, return_dtype=pl.String)
             if "resolution_status" in p.columns else pl.lit(None, dtype=pl.String)).alias("AEOUT"),
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
