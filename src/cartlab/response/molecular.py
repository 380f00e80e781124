"""Molecular response (log10 reduction per marker) and target-antigen loss on blasts.

Molecular log reduction is not an ELN 2022 response category; it is reported as an exploratory
endpoint, ``log10(baseline / follow-up)`` (research note ../shared/research/grading.md §4.1,
"Molecular log reduction ... exploratory endpoint"). The baseline of a marker (``param`` +
``analyte``: MOLVAF, MOLAR, FISHPCT, FUSION) is its last value before day 0. A follow-up value of 0
(undetectable) has no finite log reduction: with an ``lloq`` it is reported as ">= log10(baseline /
lloq)", otherwise as not computable, never as a number.

Target antigen (TGTBLAST, % of blasts positive for ``analyte``, e.g. CD7): its pre-treatment value
and every later one; a later value below ``antigen_negative_below_pct`` flags antigen loss (an
antigen-low/negative relapse when it comes with a relapse marrow). The default 30% is the CD7
eligibility cut-off of NCT04762485 ("CD7 > 30% of blasts by flow"); set it from the protocol.
"""

from __future__ import annotations

import math

import polars as pl

from cartlab._deprecated import renamed
from cartlab.criteria.options import CriteriaOptions
from cartlab.model import Study
from cartlab.provenance import EVIDENCE, row_ref

__all__ = ["MOLECULAR_PARAMS", "MolecularOptions", "derive_antigen_loss", "derive_molecular_response"]

MOLECULAR_PARAMS = ("MOLVAF", "MOLAR", "FISHPCT", "FUSION")


class MolecularOptions(CriteriaOptions):
    """* ``baseline_before_day`` (0): baseline = last value with day < this.
    * ``params``: which molecular params are followed.
    * ``antigen_negative_below_pct`` (30, NCT04762485 eligibility): TGTBLAST below it = antigen loss.
    """

    baseline_before_day: float = 0.0
    params: tuple[str, ...] = MOLECULAR_PARAMS
    antigen_negative_below_pct: float = 30.0


_SCHEMA = {
    "subject_id": pl.String, "param": pl.String, "analyte": pl.String, "baseline_day": pl.Float64,
    "baseline": pl.Float64, "day": pl.Float64, "value": pl.Float64, "fold_reduction": pl.Float64,
    "log10_reduction": pl.Float64, "log10_reduction_at_least": pl.Float64, "rule": pl.String,
    "reason": pl.String, "evidence": EVIDENCE,
}


def derive_molecular_response(study: Study, options: MolecularOptions | None = None) -> pl.DataFrame:
    """One row per post-baseline molecular value: fold and log10 reduction from the marker's baseline."""
    options = options or MolecularOptions()
    obs = (
        study.observations.filter(pl.col("param").is_in(list(options.params)) & pl.col("day").is_not_null())
        .sort("subject_id", "param", "analyte", "day", "src_row", nulls_last=True)
    )
    rows = []
    for key, part in obs.partition_by(["subject_id", "param", "analyte"], as_dict=True).items() if obs.height else []:
        sid, param, analyte = key
        recs = part.to_dicts()
        base = [r for r in recs if r["day"] < options.baseline_before_day and r["value"] is not None]
        b = base[-1] if base else None
        for r in recs:
            if r["day"] < options.baseline_before_day or r["value"] is None:
                continue
            name = f"{param} {analyte or ''}".strip()
            ev = [x for x in (row_ref(r), row_ref(b) if b else None) if x]
            out = {"subject_id": sid, "param": param, "analyte": analyte, "day": r["day"], "value": r["value"],
                   "baseline_day": None if b is None else b["day"], "baseline": None if b is None else b["value"],
                   "fold_reduction": None, "log10_reduction": None, "log10_reduction_at_least": None,
                   "evidence": ev}
            if b is None:
                out.update(rule="molecular.no_baseline",
                           reason=f"{name} {r['value']:g} on day {r['day']:g}: no value before day "
                                  f"{options.baseline_before_day:g}, so no reduction can be computed")
            elif b["value"] <= 0:
                out.update(rule="molecular.baseline_zero",
                           reason=f"{name}: baseline {b['value']:g} on day {b['day']:g} is not positive")
            elif r["value"] > 0:
                fold = b["value"] / r["value"]
                out.update(fold_reduction=fold, log10_reduction=math.log10(fold), rule="molecular.log10_reduction",
                           reason=f"{name}: log10({b['value']:g} / {r['value']:g}) = {math.log10(fold):.2f} "
                                  f"(baseline day {b['day']:g}, follow-up day {r['day']:g})")
            elif r.get("lloq"):
                bound = math.log10(b["value"] / r["lloq"])
                out.update(log10_reduction_at_least=bound, rule="molecular.undetectable_lloq",
                           reason=f"{name} undetectable on day {r['day']:g}: log10 reduction >= "
                                  f"log10({b['value']:g} / LLOQ {r['lloq']:g}) = {bound:.2f}")
            else:
                out.update(rule="molecular.undetectable",
                           reason=f"{name} undetectable on day {r['day']:g} and no LLOQ given: the log "
                                  "reduction is not finite and is not reported")
            rows.append(out)
    return pl.DataFrame(rows, schema=_SCHEMA, orient="row") if rows else pl.DataFrame(schema=_SCHEMA)


_AG_SCHEMA = {
    "subject_id": pl.String, "antigen": pl.String, "pre_day": pl.Float64, "pre_pct": pl.Float64,
    "day": pl.Float64, "pct": pl.Float64, "antigen_loss": pl.Boolean, "with_relapse_marrow": pl.Boolean,
    "rule": pl.String, "reason": pl.String, "evidence": EVIDENCE,
}


def derive_antigen_loss(study: Study, options: MolecularOptions | None = None) -> pl.DataFrame:
    """Target antigen on blasts (TGTBLAST) before and after infusion; flags antigen loss.

    ``with_relapse_marrow`` is True when the same day has marrow blasts >= 5% (an antigen-negative
    or antigen-low relapse, the escape the digital twin models).
    """
    options = options or MolecularOptions()
    thr = options.antigen_negative_below_pct
    tg = study.observations.filter((pl.col("param") == "TGTBLAST") & pl.col("value").is_not_null()
                                   & pl.col("day").is_not_null()).sort("subject_id", "analyte", "day")
    bm = {(r["subject_id"], math.floor(r["day"])): r["value"] for r in
          study.observations.filter((pl.col("param") == "BMBLAST") & pl.col("value").is_not_null()
                                    & pl.col("day").is_not_null()).iter_rows(named=True)}
    rows = []
    for key, part in tg.partition_by(["subject_id", "analyte"], as_dict=True).items() if tg.height else []:
        sid, antigen = key
        recs = part.to_dicts()
        pre = [r for r in recs if r["day"] < options.baseline_before_day]
        p = pre[-1] if pre else None
        for r in recs:
            if r["day"] < options.baseline_before_day:
                continue
            lost = r["value"] < thr
            blasts = bm.get((sid, math.floor(r["day"])))
            rel = blasts is not None and blasts >= 5
            what = f"{antigen or 'target'} on {r['value']:g}% of blasts on day {r['day']:g}"
            if p is not None:
                what += f" (pre-treatment {p['value']:g}% on day {p['day']:g})"
            rows.append({
                "subject_id": sid, "antigen": antigen, "pre_day": None if p is None else p["day"],
                "pre_pct": None if p is None else p["value"], "day": r["day"], "pct": r["value"],
                "antigen_loss": lost, "with_relapse_marrow": rel,
                "rule": "antigen.loss" if lost else "antigen.retained",
                "reason": f"{what}: {'below' if lost else 'not below'} {thr:g}%"
                          + (f"; marrow blasts {blasts:g}% the same day: antigen-{'negative/low ' if lost else 'positive '}relapse" if rel else ""),
                "evidence": [x for x in (row_ref(r), row_ref(p) if p else None) if x],
            })
    return pl.DataFrame(rows, schema=_AG_SCHEMA, orient="row") if rows else pl.DataFrame(schema=_AG_SCHEMA)


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
__getattr__ = renamed(__name__, "antigen_loss", "molecular_response")
