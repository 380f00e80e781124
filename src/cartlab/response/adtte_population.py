"""ADTTE population and source rows (review s39 A1, B2, B4) for :func:`cartlab.response.adtte.derive_adtte`.

* :func:`dose_refs` — per subject, the first CAR-T ``doses.csv`` row: day 0, the row an EFS record
  dated day 0 (treatment failure, not evaluable) takes its date from (CDISC ADTTE SRCDOM/SRCVAR/SRCSEQ:
  the record ADT comes from; admiral's ``censor_source(dataset_name = "adsl", date = TRTSDT, ...)`` names
  ADSL/TRTSDT when there is no dose row).
* :func:`not_infused` — with ``EndpointOptions.population="infused"`` (default, the reading of
  ``best_response.rate_population``), a subject without any CAR-T dose when the study records doses
  has no OS/EFS/RFS/LFS/CIR row counted: ANLFL, AVAL and CNSR empty, rule ``not_infused`` (ELN 2022
  Table 9 measures from day 1 of the therapy; cartlab's day 0 is the first CAR-T infusion, spec
  "Time"). Doses unknown (doses.csv absent, or no CAR-T row in the whole study): everybody is taken as
  infused, as best response does. A subject without a dose row but with a quantifiable CARCOPY/CARCELL
  after day 0 is infused, the infusion not recorded (option ``infusion_evidence``, default
  "dose_or_kinetics", review 39 A1: :func:`cartlab.response.infusion_evidence.infused_subjects`, the
  function best response uses): its records are counted and their reason says so.
* :func:`deciding_row_first` — for ``cartlab explain``'s endpoint view (its only caller; adtte.csv itself
  is not rewritten): ``SRCDOM`` from the row that fixed ADY and that row first in ``evidence``, as the
  ADaM export (:func:`cartlab.io.adam.srcrec.source_record`) does (review 39 diff1 C1).
"""

from __future__ import annotations

import warnings

import polars as pl

from cartlab.errors import SubjectsWarning
from cartlab.model import Study
from cartlab.provenance import EVIDENCE, evidence_ref

__all__ = ["BLANK", "deciding_row_first", "dose_refs", "not_infused"]

_SID = "subject_id"
#: the columns a not-defined record leaves empty
BLANK = ("ANLFL", "STARTDY", "ADY", "AVAL", "CNSR", "EVENT", "EVNTDESC", "CNSDTDSC", "SRCDOM", "_outcome")


def dose_refs(study: Study) -> pl.DataFrame:
    """Per subject with a CAR-T dose row: ``dose_ref`` (``doses.csv:<row>`` of its earliest CAR-T dose)."""
    from cartlab.kinetics.agents import car_t_agent_expr

    d = study.doses
    if d.height == 0 or not {"src_file", "src_row", "agent", "day"} <= set(d.columns):
        return pl.DataFrame(schema={_SID: pl.String, "dose_ref": pl.String})
    return (d.filter(pl.col("day").is_not_null() & car_t_agent_expr(pl.col("agent")))
            .sort(_SID, "day", "src_row").unique(_SID, keep="first", maintain_order=True)
            .select(_SID, evidence_ref().alias("dose_ref")))


def not_infused(rows: pl.DataFrame, study: Study, population: str, text,
                evidence: str = "dose_or_kinetics") -> tuple[pl.DataFrame, list[str]]:
    """``rows`` with every record of a subject without a CAR-T dose not defined (rule ``not_infused``),
    and those subjects; unchanged with ``population="all"`` or when the doses are unknown. With
    ``evidence="dose_or_kinetics"`` a subject infused only by its CAR-T measurement keeps its records,
    their reason naming it (review 39 A1)."""
    from cartlab.response.infusion_evidence import infused_subjects

    if population == "all":
        return rows, []
    given, _why, by_car = infused_subjects(study, evidence)
    if given is None:  # doses unknown: day 0 is the infusion (spec "Time"), as best response reads it
        return rows, []
    if by_car and "reason" in rows.columns and rows.height:
        note = pl.col(_SID).replace_strict(by_car, default=None, return_dtype=pl.String)
        rows = rows.with_columns(pl.when(note.is_not_null() & pl.col("reason").is_not_null())
                                 .then(pl.concat_str("reason", pl.lit("; "), note))
                                 .otherwise(pl.col("reason")).alias("reason"))
    missing = [s for s in study.subject_ids if s not in given]
    if not missing:
        return rows, []
    hit = pl.col(_SID).is_in(missing)
    return rows.with_columns(
        *[pl.when(hit).then(None).otherwise(pl.col(c)).alias(c) for c in BLANK if c in rows.columns],
        pl.when(hit).then(pl.lit("not_infused")).otherwise(pl.col("rule")).alias("rule"),
        pl.when(hit).then(text("not_infused", paramcd=pl.col("PARAMCD"))).otherwise(pl.col("reason")).alias("reason"),
        pl.when(hit).then(pl.lit([], dtype=EVIDENCE)).otherwise(pl.col("evidence")).alias("evidence"),
    ), missing


def warn_not_infused(missing: list[str]) -> None:
    if missing:
        warnings.warn(SubjectsWarning(
            f"{len(missing)} subject(s) have no CAR-T dose in doses.csv (other subjects have one): no day 0 to "
            "count from, so their OS, EFS, RFS, LFS and CIR are not counted (ADTTE rule not_infused; option "
            "endpoints.population=infused, the reading of best_response.rate_population): {subjects}",
            missing, "adtte.csv (rule not_infused)"), stacklevel=3)


def deciding_row_first(rows: pl.DataFrame, study: Study) -> pl.DataFrame:
    """``rows`` with ``SRCDOM`` the table of the row that fixed ADY (when one of the evidence rows
    carries ADY) and that row first in ``evidence`` (review s39 B2): explain's endpoint view then names the
    row the ADaM export names; adtte.csv keeps its own SRCDOM (review 39 diff1 C1)."""
    from cartlab.io.adam.srcrec import source_record

    if rows.is_empty():
        return rows
    t = source_record(rows.with_columns(pl.col("evidence").fill_null(pl.lit([], dtype=EVIDENCE))), study)
    return t.with_columns(
        pl.when(pl.col("ADY").is_not_null()).then(pl.coalesce(pl.col("_srcdom"), pl.col("SRCDOM")))
        .otherwise(pl.col("SRCDOM")).alias("SRCDOM"),
        pl.col("evidence").cast(EVIDENCE)).drop("_srcdom", "SRCVAR", "SRCSEQ")
