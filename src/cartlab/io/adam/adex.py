"""ADEX: the exposure analysis dataset (BDS) from the study's ``doses`` rows.

The structure follows admiral's ADEX template (``inst/templates/ad_adex.R``: one record per dose
record with ``PARCAT1 = "INDIVIDUAL"`` and summary records with ``PARCAT1 = "OVERALL"``, PARAMCD
``DOSE`` / ``TDOSE``) and random.cdisc.data ``radex`` (PARAMCD ``DOSE``, ``TDOSE``, ``TNDOSE``;
``PARCAT2`` the drug). A CAR-T programme gives several agents (lymphodepletion, the CAR-T product,
bridging), so PARAM names the parameter alone (one PARAM per PARAMCD, ADaMIG BDS), the agent is
``PARCAT2`` and the unit ``AVALU``; ``CARTFL`` says which records are CAR-T infusions
(:func:`cartlab.kinetics.agents.car_t_agent_expr`).

* ``DOSE`` (INDIVIDUAL): ``doses.dose`` of the row in its ``doses.unit``: the reader's canonical unit of
  the dose (``10^6 cells/kg`` is read as cells/kg, with pint; the file's own in ``orig_dose``/``orig_unit``).
* ``TDOSE`` (OVERALL), per subject, agent and unit: the sum of the doses (a split CAR-T dose of
  days 0 and 2 is one TDOSE); **empty with AVALC ``NE``** when one of the doses is not known
  (missing is not zero). Doses given in two units of one agent are not added up: one TDOSE per unit.
* ``TNDOSE`` (OVERALL): the number of dose rows (administrations) of the agent, unit ``"DOSES"``.
"""

from __future__ import annotations

import polars as pl

from cartlab.provenance import evidence_ref

__all__ = ["ADEX_PARAMS", "adex"]

#: PARAMCD -> PARAM (admiral ad_adex.R / radex wording, without the unit: AVALU carries it)
ADEX_PARAMS = {"DOSE": "Dose administered", "TDOSE": "Total dose administered",
               "TNDOSE": "Total number of doses administered"}


def adex(analysis, dates: pl.DataFrame) -> pl.DataFrame:
    """The ADEX records of ``analysis.study``'s doses (module docstring); ``dates`` as the other builders."""
    from cartlab.io.adam.build import _label, _with_dates, cdisc_day, evidence_text
    from cartlab.kinetics.agents import car_t_agent_expr

    d = analysis.study.doses
    if "source" not in d.columns:
        d = d.with_columns(pl.lit(None, pl.String).alias("source"))
    d = (d.with_row_index("_row")
         .with_columns(pl.col("subject_id").cast(pl.String), pl.col("agent").cast(pl.String),
                       pl.col("unit").cast(pl.String), pl.col("dose").cast(pl.Float64),
                       pl.col("day").cast(pl.Float64), evidence_ref().alias("_ref"), _label().alias("_src"),
                       pl.when(car_t_agent_expr(pl.col("agent"))).then(pl.lit("Y")).otherwise(pl.lit("N"))
                       .alias("CARTFL"))
         .sort(["subject_id", "day", "_row"], nulls_last=True))
    ne = pl.when(pl.col("AVAL").is_null()).then(pl.lit("NE")).otherwise(None)
    individual = d.select(
        pl.col("subject_id").alias("USUBJID"), pl.lit("DOSE").alias("PARAMCD"), pl.lit("INDIVIDUAL").alias("PARCAT1"),
        pl.col("agent").alias("PARCAT2"), "CARTFL", pl.col("dose").alias("AVAL"), pl.col("unit").alias("AVALU"),
        pl.col("day").alias("ASTRLDY"), pl.col("day").alias("AENRLDY"), pl.col("_src").alias("DATASRC"),
        pl.concat_list(pl.col("_ref")).alias("_refs"), pl.col("_row").alias("_order"))
    groups = d.group_by("subject_id", "agent", "unit", maintain_order=True).agg(
        "CARTFL", pl.when(pl.col("dose").is_null().any()).then(None).otherwise(pl.col("dose").sum()).alias("_total"),
        pl.len().cast(pl.Float64).alias("_n"), pl.col("day").min().alias("ASTRLDY"),
        pl.col("day").max().alias("AENRLDY"),
        pl.col("_src").drop_nulls().unique().sort().str.join("; ").alias("DATASRC"),
        pl.col("_ref").alias("_refs"), pl.col("_row").min().alias("_order"),
    ).with_columns(pl.col("CARTFL").list.first(), pl.when(pl.col("DATASRC") == "").then(None)
                   .otherwise(pl.col("DATASRC")).alias("DATASRC"))
    overall = [groups.select(
        pl.col("subject_id").alias("USUBJID"), pl.lit(code).alias("PARAMCD"), pl.lit("OVERALL").alias("PARCAT1"),
        pl.col("agent").alias("PARCAT2"), "CARTFL", pl.col(value).alias("AVAL"),
        (pl.col("unit") if code == "TDOSE" else pl.lit("DOSES")).alias("AVALU"), "ASTRLDY", "AENRLDY", "DATASRC",
        "_refs", "_order") for code, value in (("TDOSE", "_total"), ("TNDOSE", "_n"))]
    rank = {"DOSE": 0, "TDOSE": 1, "TNDOSE": 2}
    f = (pl.concat([individual, *overall], how="vertical_relaxed")
         .with_columns(pl.col("PARAMCD").replace_strict(rank, return_dtype=pl.Int8).alias("_rank"))
         .sort(["USUBJID", "_rank", "_order"], nulls_last=True))
    f = f.select(
        pl.lit(analysis.study.study_id).alias("STUDYID"), "USUBJID", "PARAMCD",
        pl.col("PARAMCD").replace_strict(ADEX_PARAMS, return_dtype=pl.String).alias("PARAM"),
        "PARCAT1", "PARCAT2", "CARTFL", "AVAL", ne.alias("AVALC"), "AVALU",
        cdisc_day(pl.col("ASTRLDY")).alias("ASTDY"), cdisc_day(pl.col("AENRLDY")).alias("AENDY"),
        "ASTRLDY", "AENRLDY", "DATASRC", evidence_text(pl.col("_refs")).alias("EVIDENCE"))
    return _with_dates(f, dates, ASTDT="ASTRLDY", AENDT="AENRLDY")
