"""Molecular response (log10 reduction per marker) and target-antigen loss on blasts.

Molecular log reduction is not an ELN 2022 response category; it is reported as an exploratory
endpoint, ``log10(baseline / follow-up)`` (research note ../shared/research/grading.md §4.1,
"Molecular log reduction ... exploratory endpoint"). The baseline of a marker (``param`` +
``analyte``: MOLVAF, MOLAR, FISHPCT, FUSION) is its last value before day 0, whether a number or a
censored result (``value_text`` such as ``<0.01``): an older number is never used in its place.
Every result from day 0 on is a follow-up, whatever the infusion's clock time (spec "Response": the
last result before day 0 is the baseline), unlike the marrow response, which counts only marrows
after the infusion moment: a day-0 sample drawn before the infusion gives a near-zero "reduction".

A result that is not a quantified number is a bound, never an exact reduction:

* a censored result ``<x`` (or ``<=x``), a value of 0 with an ``lloq``, and a value above 0 but
  below its row's ``lloq`` (censored at the lloq, as the spec's BLQ rule for kinetics: "a value
  below ``lloq``" is BLQ) all mean "below x" (x = the limit or the lloq);
* as the follow-up, the log10 reduction is then *at least* ``log10(baseline / x)``
  (``log10_reduction_at_least``);
* as the baseline, it is *at most* ``log10(x / follow-up)`` (``log10_reduction_at_most``): the
  marker can have risen, not fallen by more than that;
* both censored: no bound (both columns empty), and the reason says so;
* a value of 0 without an ``lloq`` has no bound: not computable, never a number.

``baseline_censored`` / ``value_censored`` carry such a result as a bound in the canonical unit
(``<0.01``), empty for a quantified value.

Target antigen (TGTBLAST, % of blasts positive for ``analyte``, e.g. CD7): its pre-treatment value
(the last before day 0) and every later one, against ``antigen_negative_below_pct``:

* ``antigen.loss``: pre-treatment at or above the cut-off, later below it (``antigen_loss`` true);
* ``antigen.low_at_baseline``: already below the cut-off before treatment and still below it: an
  antigen-low disease, not a loss (``antigen_loss`` false, ``below_cutoff`` true);
* ``antigen.no_baseline``: below the cut-off with no pre-treatment value: loss or low from the start
  cannot be told (``antigen_loss`` empty);
* ``antigen.retained``: at or above the cut-off (``antigen_loss`` false).

``with_relapse_marrow`` is true when the same day has marrow blasts (BMBLAST) >= 5%, false when
below 5%, and empty when no BMBLAST was measured that day (the reason names it) or when a censored
result does not settle it (``<=5`` could be 5%: empty; ``<5`` false; ``>20`` true). Such a marrow is a
relapse only after a remission (ELN 2022); before one it is persistent disease, which this table
does not decide (the reason says so; ``best_response.csv`` has the relapse). The default 30% is
the CD7 eligibility cut-off of NCT04762485 ("CD7 > 30% of blasts by flow"); set it from the protocol.
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
    * ``antigen_negative_below_pct`` (30, NCT04762485 eligibility): TGTBLAST below it = antigen
      negative/low (a loss when the pre-treatment value was at or above it).
    * ``same_specimen`` (True): a follow-up is compared only with a baseline of the same specimen
      (BM with BM, PB with PB; an empty specimen only with an empty one): blood and marrow levels of
      one marker differ, so a change across specimens is not a reduction. A cartlab convention
      (ELN MRD 2021, Heuser et al., Blood 2021;138:2753, monitors MRD in serial samples of one
      material; that wording is not verified here). False compares across specimens.
    """

    baseline_before_day: float = 0.0
    params: tuple[str, ...] = MOLECULAR_PARAMS
    same_specimen: bool = True
    antigen_negative_below_pct: float = 30.0


_SCHEMA = {
    "subject_id": pl.String, "param": pl.String, "analyte": pl.String, "specimen": pl.String,
    "baseline_day": pl.Float64,
    "baseline": pl.Float64, "baseline_censored": pl.String, "day": pl.Float64, "value": pl.Float64,
    "value_censored": pl.String, "fold_reduction": pl.Float64, "log10_reduction": pl.Float64,
    "log10_reduction_at_least": pl.Float64, "log10_reduction_at_most": pl.Float64, "rule": pl.String,
    "reason": pl.String, "evidence": EVIDENCE,
}


class _Reading:
    """One molecular result as an interval [lo, hi] of the true level (``hi`` None = no upper
    bound known, ``lo`` None = no lower bound known)."""

    def __init__(self, r: dict):
        v, lloq, cens, lim = r["value"], r.get("lloq"), r.get("censor"), r.get("censor_limit")
        self.value = v
        self.censored = None  # the bound as text, canonical unit
        if v is not None:
            if v > 0 and lloq and v < lloq:
                self.kind, self.lo, self.hi = "blq", 0.0, lloq
                self.censored = f"<{lloq:g}"
                self.text = f"{v:g} (below its LLOQ {lloq:g}, censored at the LLOQ)"
            elif v > 0:
                self.kind, self.lo, self.hi = "exact", v, v
                self.text = f"{v:g}"
            elif lloq:
                self.kind, self.lo, self.hi = "undetectable_lloq", 0.0, lloq
                self.censored = f"<{lloq:g}"
                self.text = f"undetectable (LLOQ {lloq:g})"
            else:
                self.kind, self.lo, self.hi = "undetectable", 0.0, None
                self.text = f"{v:g} (undetectable, no LLOQ)"
        elif cens in ("<", "<=") and lim is not None and lim > 0:
            self.kind, self.lo, self.hi = "below", 0.0, lim
            self.censored = f"{cens}{lim:g}"
            self.text = f"{cens}{lim:g} (censored)"
        elif cens in (">", ">=") and lim is not None and lim > 0:
            self.kind, self.lo, self.hi = "above", lim, None
            self.censored = f"{cens}{lim:g}"
            self.text = f"{cens}{lim:g} (censored)"
        else:
            self.kind, self.lo, self.hi = "text", None, None
            self.text = repr(r.get("value_text"))


def _bound(num: float | None, den: float | None) -> float | None:
    """log10(num / den) when both are finite and positive, else None (no bound)."""
    return math.log10(num / den) if num and den and num > 0 and den > 0 else None


def derive_molecular_response(study: Study, options: MolecularOptions | None = None) -> pl.DataFrame:
    """One row per post-baseline molecular result: fold and log10 reduction from the marker's
    baseline, or a bound (``log10_reduction_at_least`` / ``_at_most``) when either is censored."""
    options = options or MolecularOptions()
    cut = options.baseline_before_day
    obs = (
        study.observations.filter(pl.col("param").is_in(list(options.params)) & pl.col("day").is_not_null()
                                  & (pl.col("value").is_not_null() | pl.col("value_text").is_not_null()))
        .sort("subject_id", "param", "analyte", "day", "src_row", nulls_last=True)
    )
    rows = []
    for key, part in obs.partition_by(["subject_id", "param", "analyte"], as_dict=True).items() if obs.height else []:
        sid, param, analyte = key
        recs = part.to_dicts()
        name = f"{param} {analyte or ''}".strip()
        for r in recs:
            if r["day"] < cut:
                continue
            base = [x for x in recs if x["day"] < cut
                    and (not options.same_specimen or x["specimen"] == r["specimen"])]
            b = base[-1] if base else None
            br = _Reading(b) if b else None
            fr = _Reading(r)
            ev = [x for x in (row_ref(r), row_ref(b) if b else None) if x]
            out = {"subject_id": sid, "param": param, "analyte": analyte, "specimen": r["specimen"],
                   "day": r["day"], "value": r["value"],
                   "value_censored": fr.censored,
                   "baseline_day": None if b is None else b["day"], "baseline": None if b is None else b["value"],
                   "baseline_censored": None if br is None else br.censored,
                   "fold_reduction": None, "log10_reduction": None, "log10_reduction_at_least": None,
                   "log10_reduction_at_most": None, "evidence": ev}
            at = f"on day {r['day']:g}"
            bl = "" if b is None else f"baseline {br.text} on day {b['day']:g}"
            if b is None:
                other = sorted({x["specimen"] or "no specimen" for x in recs if x["day"] < cut})
                where = f" in {r['specimen'] or 'a row without a specimen'}" if options.same_specimen else ""
                note = (f" (before day {cut:g} only in {', '.join(other)}: blood and marrow levels differ, "
                        "so only the same specimen is compared; option molecular.same_specimen)" if other else "")
                out.update(rule="molecular.no_baseline",
                           reason=f"{name} {fr.text} {at}: no value before day {cut:g}{where}, so no reduction "
                                  f"can be computed{note}")
            elif br.kind == "text" or fr.kind == "text":
                which = (f"baseline value_text {br.text} on day {b['day']:g}" if br.kind == "text"
                         else f"value_text {fr.text} {at}")
                out.update(rule="molecular.not_numeric",
                           reason=f"{name}: {which} is neither a number nor a censored result such as <x, "
                                  "so no reduction can be computed")
            elif br.kind == "undetectable":
                out.update(rule="molecular.baseline_zero",
                           reason=f"{name}: baseline {b['value']:g} on day {b['day']:g} is not positive")
            elif br.kind == "exact" and fr.kind == "exact":
                fold = br.value / fr.value
                out.update(fold_reduction=fold, log10_reduction=math.log10(fold), rule="molecular.log10_reduction",
                           reason=f"{name}: log10({br.value:g} / {fr.value:g}) = {math.log10(fold):.2f} "
                                  f"(baseline day {b['day']:g}, follow-up day {r['day']:g})")
            elif br.kind == "exact" and fr.kind == "undetectable":
                out.update(rule="molecular.undetectable",
                           reason=f"{name} undetectable {at} and no LLOQ given: the log "
                                  "reduction is not finite and is not reported")
            elif br.kind == "exact" and fr.kind in ("undetectable_lloq", "blq", "below"):
                least = math.log10(br.value / fr.hi)
                what = (f"undetectable {at}" if fr.kind == "undetectable_lloq"
                        else f"{fr.value:g} {at} is below its LLOQ {fr.hi:g} (not quantifiable, censored at "
                             "the LLOQ)" if fr.kind == "blq"
                        else f"{fr.censored} {at} (censored result)")
                lim = {"undetectable_lloq": "LLOQ ", "blq": "LLOQ ", "below": ""}[fr.kind]
                out.update(log10_reduction_at_least=least,
                           rule={"undetectable_lloq": "molecular.undetectable_lloq", "blq": "molecular.below_lloq",
                                 "below": "molecular.followup_censored"}[fr.kind],
                           reason=f"{name} {what}: log10 reduction >= log10({br.value:g} / {lim}{fr.hi:g}) = "
                                  f"{least:.2f} (baseline day {b['day']:g})")
            elif br.kind == "exact" and fr.kind == "above":
                most = math.log10(br.value / fr.lo)
                out.update(log10_reduction_at_most=most, rule="molecular.followup_censored",
                           reason=f"{name} {fr.censored} {at} (censored result): log10 reduction <= "
                                  f"log10({br.value:g} / {fr.lo:g}) = {most:.2f} (baseline day {b['day']:g})")
            elif fr.kind == "exact":
                # censored baseline (below x, or above x), quantified follow-up
                if br.kind == "above":
                    least = math.log10(br.lo / fr.value)
                    out.update(log10_reduction_at_least=least, rule="molecular.baseline_censored",
                               reason=f"{name}: {bl} is a censored result: log10 reduction >= "
                                      f"log10({br.lo:g} / {fr.value:g}) = {least:.2f} (follow-up day {r['day']:g})")
                else:
                    most = math.log10(br.hi / fr.value)
                    change = (f"the marker rose at least {fr.value / br.hi:g}-fold" if most < 0
                              else f"a reduction of at most {br.hi / fr.value:g}-fold")
                    out.update(log10_reduction_at_most=most, rule="molecular.baseline_censored",
                               reason=f"{name}: {bl}, below {br.hi:g}, so {fr.value:g} {at} gives a log10 "
                                      f"reduction <= log10({br.hi:g} / {fr.value:g}) = {most:.2f} ({change}); "
                                      "no exact reduction")
            else:
                least, most = _bound(br.lo, fr.hi), _bound(br.hi, fr.lo)
                bounds = "; ".join(x for x in (
                    None if least is None else f"log10 reduction >= {least:.2f}",
                    None if most is None else f"log10 reduction <= {most:.2f}") if x)
                out.update(log10_reduction_at_least=least, log10_reduction_at_most=most, rule="molecular.both_censored",
                           reason=f"{name}: {bl} and {fr.text} {at} are both censored or undetectable: "
                                  + (bounds if bounds else "no reduction and no bound can be computed"))
            rows.append(out)
    return pl.DataFrame(rows, schema=_SCHEMA, orient="row") if rows else pl.DataFrame(schema=_SCHEMA)


_AG_SCHEMA = {
    "subject_id": pl.String, "antigen": pl.String, "pre_day": pl.Float64, "pre_pct": pl.Float64,
    "pre_pct_censored": pl.String, "day": pl.Float64, "pct": pl.Float64, "pct_censored": pl.String, "below_cutoff": pl.Boolean, "antigen_loss": pl.Boolean,
    "with_relapse_marrow": pl.Boolean, "rule": pl.String, "reason": pl.String, "evidence": EVIDENCE,
}

#: marrow blasts at or above this (%) make a relapse marrow (ELN 2022 / ALL: >= 5% blasts)
_CENSOR_OPS = ("<", "<=", ">", ">=")
_RELAPSE_BLASTS = 5.0


def _below(r: dict, thr: float) -> bool | None:
    """Whether a TGTBLAST result is below ``thr`` %: a number compares; a censored result when its
    bound settles it ("<1", "<=20" against 30: below; ">=30", ">95": not), else None ("<50")."""
    if r["value"] is not None:
        return r["value"] < thr
    op, lim = r["censor"], r["censor_limit"]
    if (op == "<" and lim <= thr) or (op == "<=" and lim < thr):
        return True
    if op in (">", ">=") and lim >= thr:
        return False
    return None


def _pct(r: dict) -> str:
    """A TGTBLAST result as written: "95.6%" or the censored "<1%"."""
    return f"{r['value']:g}%" if r["value"] is not None else f"{r['censor']}{r['censor_limit']:g}%"


def derive_antigen_loss(study: Study, options: MolecularOptions | None = None) -> pl.DataFrame:
    """Target antigen on blasts (TGTBLAST) before and after infusion; flags antigen loss.

    ``below_cutoff``: the value is below ``antigen_negative_below_pct``. ``antigen_loss`` is true only
    when the pre-treatment value was at or above the cut-off (``antigen.loss``); below it from before
    treatment is ``antigen.low_at_baseline`` (false: not a loss), and below it with no pre-treatment
    value is ``antigen.no_baseline`` (empty: unknown). ``with_relapse_marrow`` is true when the same
    day has marrow blasts >= 5% (an antigen-negative or antigen-low relapse, the escape the digital
    twin models), false below 5%, and empty when no BMBLAST was measured that day.
    """
    options = options or MolecularOptions()
    thr = options.antigen_negative_below_pct
    # a censored result ("<1" %, CD7-negative by flow) is a reading: below the cut-off when its bound
    # settles it, undetermined when not ("<50" against 30%); session 33 (it was dropped)
    tg = study.observations.filter(
        (pl.col("param") == "TGTBLAST") & pl.col("day").is_not_null()
        & (pl.col("value").is_not_null() | (pl.col("censor").is_in(list(_CENSOR_OPS))
                                           & pl.col("censor_limit").is_not_null()))
    ).sort("subject_id", "analyte", "day", "src_row")
    bm = {}
    for r in study.observations.filter((pl.col("param") == "BMBLAST") & pl.col("day").is_not_null()
                                       & (pl.col("value").is_not_null() | pl.col("censor_limit").is_not_null())
                                       ).sort("day", "src_row", nulls_last=True).iter_rows(named=True):
        key = (r["subject_id"], math.floor(r["day"]))
        if r["value"] is not None:
            bm[key] = (r["value"] >= _RELAPSE_BLASTS, f"{r['value']:g}%")
            continue
        op, lim = r["censor"], r["censor_limit"]
        # a censored result is a bound: it settles ">= 5%" only when every value it allows does
        # ("<5", "<4": below; "<=5" could be 5: undetermined; ">=5", ">4.9"? only ">= 5" or "> x >= 5": at least 5)
        if (op == "<" and lim <= _RELAPSE_BLASTS) or (op == "<=" and lim < _RELAPSE_BLASTS):
            bm[key] = (False, f"{op}{lim:g}%")
        elif op in (">", ">=") and lim >= _RELAPSE_BLASTS:
            bm[key] = (True, f"{op}{lim:g}%")
        elif op in _CENSOR_OPS:
            bm[key] = (None, f"{op}{lim:g}%")
    rows = []
    for key, part in tg.partition_by(["subject_id", "analyte"], as_dict=True).items() if tg.height else []:
        sid, antigen = key
        recs = part.to_dicts()
        pre = [r for r in recs if r["day"] < options.baseline_before_day]
        p = pre[-1] if pre else None
        p_below = None if p is None else _below(p, thr)
        ag = antigen or "target"
        for r in recs:
            if r["day"] < options.baseline_before_day:
                continue
            below = _below(r, thr)
            what = f"{ag} on {_pct(r)} of blasts on day {r['day']:g}"
            if p is not None:
                what += f" (pre-treatment {_pct(p)} on day {p['day']:g})"
            if below is None:
                lost, rule = None, "antigen.undetermined"
                why = (f"the censored result {_pct(r)} does not settle whether it is below {thr:g}%: loss "
                       "undetermined")
            elif not below:
                lost, rule, why = False, "antigen.retained", f"not below {thr:g}%"
            elif p is None:
                lost, rule = None, "antigen.no_baseline"
                why = (f"below {thr:g}%, but no pre-treatment {ag} value (TGTBLAST before day "
                       f"{options.baseline_before_day:g}): loss or antigen-low from the start cannot be told")
            elif p_below is None:
                lost, rule = None, "antigen.undetermined"
                why = (f"below {thr:g}%, but the pre-treatment censored result {_pct(p)} does not settle whether "
                       f"it was below {thr:g}%: loss or antigen-low from the start cannot be told")
            elif p_below:
                lost, rule = False, "antigen.low_at_baseline"
                why = (f"below {thr:g}%, as it already was before treatment ({_pct(p)} < {thr:g}%): "
                       "antigen-low at baseline, not a loss")
            else:
                lost, rule = True, "antigen.loss"
                why = f"below {thr:g}%, from {_pct(p)} (at or above {thr:g}%) before treatment: antigen loss"
            day = math.floor(r["day"])
            marrow = bm.get((sid, day))
            if marrow is not None and marrow[0] is None:
                rel = None
                why += (f"; marrow blasts {marrow[1]} the same day: the bound does not settle >= "
                        f"{_RELAPSE_BLASTS:g}%, whether this is a relapse marrow is undetermined")
            elif marrow is None:
                rel = None
                why += (f"; no marrow blasts (BMBLAST) measured on day {day:g}: whether this is a relapse "
                        "marrow is unknown")
            else:
                rel, shown = marrow
                if rel:
                    kind = ("antigen-negative/low" if lost else "antigen-low" if below
                            else "antigen level undetermined" if below is None else "antigen-positive")
                    # >= 5% blasts is a relapse only after a remission (ELN 2022); before one it is
                    # persistent disease: this table does not know which (best_response.csv does)
                    why += (f"; marrow blasts {shown} the same day (>= {_RELAPSE_BLASTS:g}%): {kind} leukaemia in "
                            "the marrow (a relapse if after a remission, else persistent disease: see "
                            "best_response.csv)")
                else:
                    why += f"; marrow blasts {shown} the same day: below {_RELAPSE_BLASTS:g}%, not a relapse marrow"
            rows.append({
                "subject_id": sid, "antigen": antigen, "pre_day": None if p is None else p["day"],
                "pre_pct": None if p is None else p["value"],
                "pre_pct_censored": None if p is None or p["value"] is not None else _pct(p)[:-1],
                "day": r["day"], "pct": r["value"], "pct_censored": None if r["value"] is not None else _pct(r)[:-1],
                "below_cutoff": below, "antigen_loss": lost, "with_relapse_marrow": rel, "rule": rule,
                "reason": f"{what}: {why}",
                "evidence": [x for x in (row_ref(r), row_ref(p) if p else None) if x],
            })
    return pl.DataFrame(rows, schema=_AG_SCHEMA, orient="row") if rows else pl.DataFrame(schema=_AG_SCHEMA)


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
__getattr__ = renamed(__name__, "antigen_loss", "molecular_response")
