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
from cartlab.response.endpoint_options import EndpointOptions

__all__ = ["BLANK", "day_expr", "deciding_row_first", "dose_refs", "fmt_g", "not_infused", "open_remission",
           "possible_relapse", "str_list", "warn_relapse_without_remission"]

_SID = "subject_id"
_NO_REFS = pl.lit([], dtype=EVIDENCE)
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


def fmt_g(expr: pl.Expr) -> pl.Expr:
    """``format(day, "g")`` of every value (each distinct value formatted once by Python)."""

    def one(s: pl.Series) -> pl.Series:
        u = s.drop_nulls().unique()
        return s.replace_strict(u, [format(x, "g") for x in u.to_list()], default=None, return_dtype=pl.String)

    return expr.map_batches(one, return_dtype=pl.String)


def day_expr(expr: pl.Expr, calendar: bool) -> pl.Expr:
    """A day as a Float64, its calendar day (floor) when ``calendar``."""
    expr = expr.cast(pl.Float64)
    return expr.floor() if calendar else expr


def str_list(f: pl.DataFrame, col: str) -> pl.Expr:
    """Column ``col`` as a list of strings (a "; "-joined string is split; absent: empty lists)."""
    if col not in f.columns:
        return pl.lit([], dtype=pl.List(pl.String))
    if f.schema[col] == pl.String:
        return pl.col(col).str.split(";").list.eval(pl.element().str.strip_chars()).list.eval(
            pl.element().filter(pl.element() != "")).fill_null(pl.lit([], dtype=pl.List(pl.String)))
    return pl.col(col).cast(pl.List(pl.String)).fill_null(pl.lit([], dtype=pl.List(pl.String)))


def open_remission(rows: pl.DataFrame, name: str, opts: EndpointOptions) -> pl.DataFrame:
    """Per subject: the assessments that could be CR/CRh/CRi for want of an input (review 41 F1):
    ``<name>_txt`` ("NE on day 28 could be CR, CRh, CRi (missing: PBBLAST ...)") and ``<name>_refs``."""
    rem = list(opts.remission_categories)
    one = pl.format("{} on day {} could be {} (missing: {})", pl.col("category"), fmt_g(pl.col("day")),
                    pl.col("could_be").list.set_intersection(rem).list.join(", "),
                    pl.when(pl.col("missing").list.len() > 0).then(pl.col("missing").list.join(", "))
                    .otherwise(pl.lit("an input")))
    return rows.sort("_r").with_columns(one.alias("_one")).group_by(_SID, maintain_order=True).agg(
        pl.col("_one").str.join("; ").alias(f"{name}_txt"),
        pl.col("refs").explode().drop_nulls().unique(maintain_order=True).alias(f"{name}_refs"))


def possible_relapse(relapses: pl.DataFrame | None, resp: pl.DataFrame, after: pl.DataFrame, name: str,
                      opts: EndpointOptions) -> pl.DataFrame:
    """Per subject (review 41 F2, option undetermined_relapse="censor_last_settled"): the first marrow
    after the remission day (``after``'s ``_after``) that could be a relapse for want of an input (the
    relapse table's ``relapse_possible_day``): ``<name>_day``, ``<name>_why``, ``<name>_refs``, and
    the last response assessment on or after the remission and before it that settles no relapse (an
    assessment whose ``could_be`` does not hold relapse): ``<name>_set_day``, ``<name>_set_how``,
    ``<name>_set_refs``."""
    cols = {_SID: pl.String, f"{name}_day": pl.Float64, f"{name}_why": pl.String, f"{name}_refs": EVIDENCE,
            f"{name}_set_day": pl.Float64, f"{name}_set_how": pl.String, f"{name}_set_refs": EVIDENCE}
    if (relapses is None or "relapse_possible_day" not in relapses.columns
            or opts.undetermined_relapse != "censor_last_settled"):
        return pl.DataFrame(schema=cols)
    why = pl.col("relapse_possible_reason") if "relapse_possible_reason" in relapses.columns else pl.format(
        "the marrow on day {} could be a relapse", fmt_g(pl.col("relapse_possible_day")))
    prefs = pl.col("relapse_possible_evidence") if "relapse_possible_evidence" in relapses.columns else _NO_REFS
    p = (relapses.filter(pl.col("relapse_possible_day").is_not_null())
         .select(_SID, day_expr(pl.col("relapse_possible_day"), opts.calendar_days).alias("p_day"), why.alias("p_why"),
                 prefs.fill_null(_NO_REFS).cast(EVIDENCE).alias("p_refs"))
         .join(after, on=_SID, how="inner").filter(pl.col("p_day") > pl.col("_after"))
         .sort(_SID, "p_day").unique(_SID, keep="first", maintain_order=True))
    if p.is_empty():
        return pl.DataFrame(schema=cols)
    settles = (pl.col("category").is_not_null() & (pl.col("category") != "") & pl.col("day").is_not_null()
               & ~pl.col("could_be").list.contains("relapse"))
    s = (resp.filter(settles).join(p.select(_SID, "p_day", "_after"), on=_SID, how="inner")
         .filter((pl.col("day") >= pl.col("_after")) & (pl.col("day") < pl.col("p_day"))))
    s = s.filter(pl.col("day") == pl.col("day").max().over(_SID)).sort("_r").group_by(_SID, maintain_order=True).agg(
        pl.col("day").first().alias(f"{name}_set_day"),
        pl.format("{} on day {}", "category", fmt_g(pl.col("day"))).unique(maintain_order=True).str.join(", ")
        .alias(f"{name}_set_how"),
        pl.col("refs").explode().drop_nulls().unique(maintain_order=True).alias(f"{name}_set_refs"))
    out = p.select(_SID, pl.col("p_day").alias(f"{name}_day"), pl.col("p_why").alias(f"{name}_why"),
                   pl.col("p_refs").alias(f"{name}_refs"), "_after").join(s, on=_SID, how="left")
    # no assessment from the remission on before it (the remission row itself was not given): the remission day
    return out.with_columns(pl.col(f"{name}_set_day").fill_null(pl.col("_after")),
                            pl.col(f"{name}_set_how").fill_null(pl.lit("the remission day")),
                            pl.col(f"{name}_set_refs").fill_null(_NO_REFS)).select(list(cols)).cast(cols)


def warn_relapse_without_remission(f: pl.DataFrame, rows: pl.DataFrame, params: tuple[str, ...]) -> None:
    """Review 41 F6: one warning naming the subjects counted (ANLFL Y) with a relapse recorded and never a
    CR/CRh/CRi (``anyrl_*``, ``rem_day`` of the per-subject frame): the relapse counts in no endpoint."""
    lone = f.filter(pl.col("anyrl_day").is_not_null() & pl.col("rem_day").is_null()
                    & pl.col(_SID).is_in(rows.filter(pl.col("ANLFL") == "Y")[_SID].unique().to_list()))
    if "EFS" in params and lone.height:
        warnings.warn(SubjectsWarning(
            f"{lone.height} subject(s) have a relapse recorded but no CR/CRh/CRi before it: the relapse is no EFS, "
            "RFS, LFS or CIR event (ELN 2022 counts relapse from CR/CRh/CRi) - are the remission marrows missing from "
            "the data? {subjects}", lone[_SID].to_list(), "adtte.csv (EFS reason)",
            labels=[f"{r[_SID]} (day {r['anyrl_day']:g}, {', '.join(r['anyrl_refs'] or [])})"
                    for r in lone.iter_rows(named=True)]), stacklevel=4)

