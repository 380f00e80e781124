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
* ``antigen.no_blasts``: a marrow result on a day with BMBLAST 0 and no MRDFCM above 0: no blasts
  to stain, loss not assessable (``antigen_loss`` and ``below_cutoff`` empty).

The pre-treatment value is that of the follow-up's specimen (else another's, named), and of several
on its day the highest (option ``antigen_same_day``); never the file's row order. Several molecular
baselines on one day give a range (option ``same_day_baseline``); a baseline older than
``baseline_max_days_before`` (42) days is flagged, not dropped.

``with_relapse_marrow`` is true when the same day has marrow blasts (BMBLAST) >= 5%, false when
below 5%, and empty when no BMBLAST was measured that day (the reason names it) or when a censored
result does not settle it (``<=5`` could be 5%: empty; ``<5`` false; ``>20`` true). Such a marrow is a
relapse only after a remission (ELN 2022); before one it is persistent disease, which this table
does not decide (the reason says so; ``best_response.csv`` has the relapse). The default 30% is
the CD7 eligibility cut-off of NCT04762485 ("CD7 > 30% of blasts by flow"); set it from the protocol.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import polars as pl

from cartlab._deprecated import renamed
from cartlab.criteria.options import CriteriaOptions
from cartlab.errors import SubjectsWarning
from cartlab.model import Study
from cartlab.provenance import EVIDENCE, row_ref

__all__ = ["MOLECULAR_PARAMS", "MolecularOptions", "derive_antigen_loss", "derive_molecular_response",
           "derive_relapse_antigen"]

MOLECULAR_PARAMS = ("MOLVAF", "MOLAR", "FISHPCT", "FUSION")


class MolecularOptions(CriteriaOptions):
    """* ``baseline_before_day`` (0): baseline = last value with day < this.
    * ``params``: which molecular params are followed.
    * ``antigen_negative_below_pct`` (30, NCT04762485 eligibility "CD7 >30% of blasts by flow
      cytometry"): the antigen cut-off on blasts (a loss when the pre-treatment value was positive).
    * ``antigen_positive_inclusive`` (False): which side of the cut-off is positive. False = only a
      value above it ("more than 30%", NCT04762485 eligibility and the shipped protocol table
      nct04762485.yaml ``cd7_on_blasts`` op ">"): exactly 30% is antigen-low (``below_cutoff``);
      True = at or above it is positive.
    * ``same_specimen`` (True): a follow-up is compared only with a baseline of the same specimen
      (BM with BM, PB with PB; an empty specimen only with an empty one): blood and marrow levels of
      one marker differ, so a change across specimens is not a reduction. A cartlab convention
      (ELN MRD 2021, Heuser et al., Blood 2021;138:2753, monitors MRD in serial samples of one
      material; that wording is not verified here). False compares across specimens.
    * ``same_day_baseline`` ("range"): several results of a marker on its last pre-treatment day
      (no time to order them): "range" = the reduction is a range over them
      (``log10_reduction_at_least`` .. ``_at_most``, rule ``molecular.same_day_baseline``, every row
      named); "highest" / "lowest" = that one. Never the file's row order. Only with an ``analyte``:
      without one, several results on a day may be different markers (rule
      ``molecular.ambiguous_marker``: no reduction).
    * ``baseline_max_days_before`` (42): a baseline older than this many days before day 0 is still
      used but flagged in the reason and a warning (it may be a diagnosis value, not the pre-CAR-T
      level). Default: the screening window [-42, -6] of the shipped NCT04762485 protocol
      (cartlab/protocol/protocols/nct04762485.yaml; reconstructed there: the registry states none).
      None: no flag.
    * ``antigen_same_day`` ("highest"): several pre-treatment TGTBLAST of the follow-up's specimen on
      their last day: "highest" = the highest (a loss needs the antigen present before; the reason
      lists all); "not_evaluable" = undetermined when they differ on the cut-off. The pre-treatment
      value is that of the follow-up's specimen when there is one, else of another (named).
    """

    baseline_before_day: float = 0.0
    params: tuple[str, ...] = MOLECULAR_PARAMS
    same_specimen: bool = True
    antigen_negative_below_pct: float = 30.0
    antigen_positive_inclusive: bool = False
    same_day_baseline: Literal["range", "highest", "lowest"] = "range"
    baseline_max_days_before: float | None = 42.0
    antigen_same_day: Literal["highest", "not_evaluable"] = "highest"


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


def _compare(out: dict, name: str, b: dict, br: _Reading, r: dict, fr: _Reading) -> None:
    """The reduction (or its bound) of follow-up ``r`` from baseline ``b``, written into ``out``."""
    at = f"on day {r['day']:g}"
    bl = f"baseline {br.text} on day {b['day']:g}"
    if br.kind == "text" or fr.kind == "text":
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


def _same_day(out: dict, name: str, same: list[dict], r: dict, fr: _Reading, how: str) -> None:
    """Several baseline results on the last pre-treatment day (no time orders them): the reduction from
    each; "range": the lowest and highest bound over them (rule ``molecular.same_day_baseline``);
    "highest" / "lowest": the reduction from that one."""
    key = [(_Reading(x).hi if _Reading(x).hi is not None else math.inf, _Reading(x).lo or 0.0) for x in same]
    shown = ", ".join(f"{_Reading(x).text} ({row_ref(x) or 'row not given'})" for x in same)
    note = f"; {len(same)} baseline results on day {same[0]['day']:g}: {shown}"
    if how in ("highest", "lowest"):
        pick = (max if how == "highest" else min)(range(len(same)), key=lambda i: key[i])
        b = same[pick]
        out.update(baseline=b["value"], baseline_censored=_Reading(b).censored)
        _compare(out, name, b, _Reading(b), r, fr)
        out["reason"] += note + f": the {how} used (option molecular.same_day_baseline={how})"
        out["evidence"] = list(dict.fromkeys(out["evidence"] + [x for x in map(row_ref, same) if x]))
        return
    lows, highs, texts = [], [], []
    for x in same:
        one = {"fold_reduction": None, "log10_reduction": None, "log10_reduction_at_least": None,
               "log10_reduction_at_most": None}
        _compare(one, name, x, _Reading(x), r, fr)
        exact = one["log10_reduction"]
        lows.append(exact if exact is not None else one["log10_reduction_at_least"])
        highs.append(exact if exact is not None else one["log10_reduction_at_most"])
        texts.append(one["reason"])
    least = None if any(v is None for v in lows) else min(lows)
    most = None if any(v is None for v in highs) else max(highs)
    span = (f"log10 reduction between {least:.2f} and {most:.2f}" if least is not None and most is not None
            else f"log10 reduction >= {least:.2f}" if least is not None
            else f"log10 reduction <= {most:.2f}" if most is not None else "no bound")
    out.update(baseline=None, baseline_censored=None, fold_reduction=None, log10_reduction=None,
               log10_reduction_at_least=least, log10_reduction_at_most=most, rule="molecular.same_day_baseline",
               reason=(f"{name} on day {r['day']:g}: {span} (option molecular.same_day_baseline=range: the baseline "
                       f"is undetermined between the results of day {same[0]['day']:g}, no time orders them)"
                       + note + " | " + " | ".join(texts)))
    out["evidence"] = list(dict.fromkeys(out["evidence"] + [x for x in map(row_ref, same) if x]))


def _one_spelling(df: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """Marker names that differ only in letter case or separators (``CD7``/``cd7``, ``FLT3-ITD``/``flt3 itd``)
    are one marker (review 45 folder F2: they were two series, each without a baseline): each takes the
    first spelling in day order; ``_spelled`` names them all when there are several."""
    key = [*by, "_akey"]
    return (df.sort("subject_id", "day", "src_row", nulls_last=True)
            .with_columns(pl.col("analyte").str.to_uppercase().str.replace_all(r"[\s_\-]+", "").alias("_akey"))
            .with_columns(pl.col("analyte").first().over(key).alias("analyte"),
                          pl.col("analyte").unique(maintain_order=True).drop_nulls().over(key, mapping_strategy="join")
                          .list.join(" / ").alias("_spelled")))


def _spelled(recs: list[dict]) -> str:
    """" (written CD7 / cd7)" when a marker's results spell its name in several ways, else ""."""
    s = recs[0].get("_spelled") or ""
    return f" (written {s})" if " / " in s else ""


def _material(x: dict | None) -> str:
    """The specimen a molecular result is paired by: a row without one is read as marrow ("BM"), as
    the MRD status of a marrow reads an MRDFCM without a specimen (one convention, review 39 A2/B6)."""
    return str((x or {}).get("specimen") or "").strip().upper() or "BM"


def _mixed_without_analyte(recs: list[dict], r: dict, b: dict | None, cut: float) -> tuple[str, list[dict]] | None:
    """(what, rows) when the follow-up's calendar day or the baseline's has more than one different
    result of the param in the follow-up's specimen (no analyte tells the markers apart), else None."""
    def key(x: dict):
        return x["value"] if x["value"] is not None else x["value_text"]

    for d, label in ((r["day"], "the follow-up day"), (None if b is None else b["day"], "the baseline day")):
        if d is None:
            continue
        same = [x for x in recs if math.floor(x["day"]) == math.floor(d) and _material(x) == _material(r)
                and (x["day"] < cut) == (d < cut)]
        if len({key(x) for x in same}) > 1:
            shown = ", ".join(f"{key(x)}" for x in same)
            return f"{len(same)} different results on {label} {math.floor(d):g} ({shown})", same
    return None


def derive_molecular_response(study: Study, options: MolecularOptions | None = None) -> pl.DataFrame:
    """One row per post-baseline molecular result: fold and log10 reduction from the marker's
    baseline, or a bound (``log10_reduction_at_least`` / ``_at_most``) when either is censored."""
    options = options or MolecularOptions()
    cut = options.baseline_before_day
    obs = _one_spelling(
        study.observations.filter(pl.col("param").is_in(list(options.params)) & pl.col("day").is_not_null()
                                  & (pl.col("value").is_not_null() | pl.col("value_text").is_not_null())),
        ["subject_id", "param"]).sort("subject_id", "param", "analyte", "day", "src_row", nulls_last=True)
    rows: list[dict] = []
    old: list[str] = []
    pre_all: dict[tuple[str, str], list[dict]] = {}  # (subject, param) -> every result before the cut (F12)
    for x in obs.filter(pl.col("day") < cut).iter_rows(named=True):
        pre_all.setdefault((x["subject_id"], x["param"]), []).append(x)
    for key, part in obs.partition_by(["subject_id", "param", "analyte"], as_dict=True).items() if obs.height else []:
        sid, param, analyte = key
        recs = part.to_dicts()
        name = f"{param} {analyte or ''}".strip() + _spelled(recs)
        for r in recs:
            if r["day"] < cut:
                continue
            base = [x for x in recs if x["day"] < cut
                    and (not options.same_specimen or _material(x) == _material(r))]
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
            mixed = _mixed_without_analyte(recs, r, b, cut) if analyte is None else None
            if mixed is not None:  # several markers under one param and no analyte: nothing to pair
                out.update(rule="molecular.ambiguous_marker", evidence=[x for x in map(row_ref, mixed[1]) if x],
                           baseline=None, baseline_day=None, baseline_censored=None,
                           reason=f"{name} {fr.text} {at}: no analyte, and {mixed[0]}: the results cannot be paired "
                                  "marker with marker, so no reduction is computed (give observations.csv analyte)")
            elif b is None:
                other = sorted({x["specimen"] or "no specimen" for x in recs if x["day"] < cut})
                where = (f" in {r['specimen'] or 'a row without a specimen (read as marrow, BM)'}"
                         if options.same_specimen else "")
                note = (f" (before day {cut:g} only in {', '.join(other)}: blood and marrow levels differ, "
                        "so only the same specimen is compared; option molecular.same_specimen)" if other else "")
                # review 41 F12: a result of the param before day 0 under another analyte (or none) is named,
                # never paired silently (it may be another marker)
                unpaired = [x for x in pre_all.get((sid, param), []) if x.get("analyte") != analyte]
                if unpaired:
                    note += "; " + ", ".join(
                        f"{param} {x.get('analyte') or 'without an analyte'} on day {x['day']:g} ({row_ref(x) or 'row not given'})"
                        for x in unpaired) + (" not paired with it (the analytes differ: give observations.csv "
                                              "analyte where it is missing, if it is this marker)")
                    out["evidence"] = list(dict.fromkeys(ev + [y for y in map(row_ref, unpaired) if y]))
                out.update(rule="molecular.no_baseline",
                           reason=f"{name} {fr.text} {at}: no value before day {cut:g}{where}, so no reduction "
                                  f"can be computed{note}")
            else:
                same = [x for x in base if math.floor(x["day"]) == math.floor(b["day"])]
                if len(same) > 1:
                    _same_day(out, name, same, r, fr, options.same_day_baseline)
                else:
                    _compare(out, name, b, br, r, fr)
                if options.same_specimen and not all(str(x.get("specimen") or "").strip() for x in (r, b)):
                    out["reason"] += "; specimen not given: read as marrow (BM), as the MRD status reads MRDFCM"
                if options.baseline_max_days_before is not None and b["day"] < -options.baseline_max_days_before:
                    old.append(sid)
                    out["reason"] += (f"; the baseline is {-b['day']:g} days before day 0, older than "
                                      f"{options.baseline_max_days_before:g} (option molecular.baseline_max_days_before):"
                                      " it may be a diagnosis value rather than the pre-CAR-T level")
            rows.append(out)
    if old:
        warnings.warn(SubjectsWarning(
            f"a molecular baseline older than {options.baseline_max_days_before:g} days before day 0 was used for "
            "{subjects} (it may be a diagnosis value; option molecular.baseline_max_days_before)", old,
            "molecular_response.csv (column reason)"), stacklevel=2)
    return pl.DataFrame(rows, schema=_SCHEMA, orient="row") if rows else pl.DataFrame(schema=_SCHEMA)


_AG_SCHEMA = {
    "subject_id": pl.String, "antigen": pl.String, "pre_day": pl.Float64, "pre_pct": pl.Float64,
    "pre_pct_censored": pl.String, "day": pl.Float64, "specimen": pl.String, "pct": pl.Float64,
    "pct_censored": pl.String, "below_cutoff": pl.Boolean, "antigen_loss": pl.Boolean,
    "with_relapse_marrow": pl.Boolean, "rule": pl.String, "reason": pl.String, "evidence": EVIDENCE,
}

#: marrow blasts at or above this (%) make a relapse marrow (ELN 2022 / ALL: >= 5% blasts)
_CENSOR_OPS = ("<", "<=", ">", ">=")
_RELAPSE_BLASTS = 5.0


def _below(r: dict, thr: float, inclusive: bool = False) -> bool | None:
    """Whether a TGTBLAST result is not antigen-positive against ``thr`` %: positive = above ``thr``
    (``inclusive`` False, NCT04762485 "CD7 >30% of blasts") or at or above it (``inclusive`` True).
    A number compares; a censored result when its bound settles it ("<1", "<=30" against 30: not
    positive; ">30", ">95": positive; ">=30" only when inclusive), else None ("<50")."""
    if r["value"] is not None:
        return r["value"] < thr if inclusive else r["value"] <= thr
    op, lim = r["censor"], r["censor_limit"]
    if (op == "<" and lim <= thr) or (op == "<=" and (lim < thr if inclusive else lim <= thr)):
        return True
    if (op == ">" and lim >= thr) or (op == ">=" and (lim >= thr if inclusive else lim > thr)):
        return False
    return None


def antigen_sides(thr: float, inclusive: bool) -> tuple[str, str]:
    """The reason's words for (not positive, positive) against the cut-off (option
    ``antigen_positive_inclusive``)."""
    if inclusive:
        return f"below {thr:g}%", f"at or above {thr:g}%"
    return f"at or below {thr:g}% (not above it)", f"above {thr:g}%"


def _pct(r: dict) -> str:
    """A TGTBLAST result as written: "95.6%" or the censored "<1%"."""
    return f"{r['value']:g}%" if r["value"] is not None else f"{r['censor']}{r['censor_limit']:g}%"


def _spec(r: dict) -> str:
    return str(r.get("specimen") or "").strip().upper()


def _antigen_baseline(pre: list[dict], r: dict, thr: float, same_day: str, inclusive: bool = False,
                      max_days: float | None = None):
    """The pre-treatment TGTBLAST for follow-up ``r``: the last of ``r``'s specimen, else of any other
    (named); several on that day: the highest ("highest", all listed), or none settled when they
    differ on the cut-off ("not_evaluable"). A same-specimen value older than ``max_days`` before day 0
    (``baseline_max_days_before``) yields to a value of another specimen within that window (review 41
    F6: a diagnosis value is not the pre-CAR-T level). Never the file's row order. Every pre-treatment
    value not used is named. Returns (row, below cut-off (None = undetermined), note for the reason,
    the rows used, the rows not used)."""
    mine = [x for x in pre if _spec(x) == _spec(r)]
    pool, note = mine, ""
    if not mine and pre:
        pool = pre
        note = (f"; none in {_spec(r) or 'rows without a specimen'}, so of "
                f"{', '.join(sorted({_spec(x) or 'no specimen' for x in pre}))}")
    if mine and max_days is not None and max(x["day"] for x in mine) < -max_days:
        recent = [x for x in pre if _spec(x) != _spec(r) and x["day"] >= -max_days]
        age = f"{-max(x['day'] for x in mine):g}"
        if recent:
            pool = recent
            note = (f"; the last {_spec(r) or 'no-specimen'} value is {age} days before day 0, older than "
                    f"{max_days:g} (option molecular.baseline_max_days_before), so the {_spec(recent[-1]) or 'no-specimen'}"
                    " value within that window is used")
        else:
            note = (f"; the baseline is {age} days before day 0, older than {max_days:g} (option "
                    "molecular.baseline_max_days_before): it may be a diagnosis value")
    if not pool:
        return None, None, note, [], []
    last = max(math.floor(x["day"]) for x in pool)
    tie = [x for x in pool if math.floor(x["day"]) == last]
    unused = [x for x in pre if not any(x is y for y in tie)]
    if unused:
        note += "; pre-treatment values not used: " + ", ".join(
            f"{_pct(x)} {_spec(x) or 'no specimen'} on day {x['day']:g} ({row_ref(x) or 'row not given'})" for x in unused)

    def key(x: dict) -> tuple[float, bool]:
        return (x["value"] if x["value"] is not None else float(x["censor_limit"]), x["value"] is not None)

    p = max(tie, key=key)
    status = {_below(x, thr, inclusive) for x in tie}
    if len(tie) > 1:
        note += (f"; {len(tie)} results that day: " + ", ".join(f"{_pct(x)} ({row_ref(x) or 'row not given'})"
                                                                for x in tie)
                 + (", the highest used (option molecular.antigen_same_day=highest)" if same_day == "highest"
                    else f", option molecular.antigen_same_day={same_day}"))
    if same_day == "not_evaluable" and len(status) > 1:
        return p, None, note, tie, unused
    return p, _below(p, thr, inclusive), note, tie, unused


def _no_blast_days(study: Study) -> dict[tuple[str, int], str]:
    """(subject, calendar day) -> text, for marrow days with BMBLAST 0 (every BMBLAST of the day) and no
    MRDFCM above 0: no blasts whose antigen could be counted."""
    ob = study.observations.filter(pl.col("param").is_in(["BMBLAST", "MRDFCM"]) & pl.col("day").is_not_null())
    out: dict[tuple[str, int], list] = {}
    for r in ob.iter_rows(named=True):
        out.setdefault((r["subject_id"], math.floor(r["day"])), []).append(r)
    res = {}
    for key, rs in out.items():
        bm = [r for r in rs if r["param"] == "BMBLAST"]
        zero = bm and all(r["value"] == 0 or (r["value"] is None and r["censor"] == "<=" and r["censor_limit"] == 0)
                          for r in bm)
        seen = any(r["param"] == "MRDFCM" and ((r["value"] or 0) > 0 or r["censor"] in (">", ">=")) for r in rs)
        if zero and not seen:
            res[key] = "BMBLAST 0%" + ("" if any(r["param"] == "MRDFCM" for r in rs) else ", no MRDFCM")
    return res


def _bm_status(r: dict) -> tuple[bool | None, str, float] | None:
    """A BMBLAST reading against 5%: (relapse marrow? (None = the bound does not settle it), as
    written, sort key), None when it is neither a number nor a censored result. A censored result
    settles ">= 5%" only when every value it allows does ("<5": below; "<=5" could be 5: None; ">=5": at
    least 5)."""
    if r["value"] is not None:
        return r["value"] >= _RELAPSE_BLASTS, f"{r['value']:g}%", float(r["value"])
    op, lim = r["censor"], r["censor_limit"]
    if op not in _CENSOR_OPS or lim is None:
        return None
    if (op == "<" and lim <= _RELAPSE_BLASTS) or (op == "<=" and lim < _RELAPSE_BLASTS):
        return False, f"{op}{lim:g}%", float(lim)
    if op in (">", ">=") and lim >= _RELAPSE_BLASTS:
        return True, f"{op}{lim:g}%", float(lim)
    return None, f"{op}{lim:g}%", float(lim)


def _marrow_blasts(study: Study) -> dict[tuple[str, int], tuple[bool | None, str]]:
    """(subject, calendar day) -> (relapse marrow?, text): of several BMBLAST of a day the highest (as
    the marrow response's default ``same_day_marrow=highest``, review 39 B5), every reading named;
    never the file's row order."""
    days: dict[tuple[str, int], list[tuple[bool | None, str, float]]] = {}
    for r in study.observations.filter((pl.col("param") == "BMBLAST") & pl.col("day").is_not_null()
                                       & (pl.col("value").is_not_null() | pl.col("censor_limit").is_not_null())
                                       ).iter_rows(named=True):
        st = _bm_status(r)
        if st is not None:
            days.setdefault((r["subject_id"], math.floor(r["day"])), []).append(st)
    out = {}
    for key, reads in days.items():
        # the day's highest is at least every reading: one settled >= 5% settles it (a "<=10%" beside a 6%
        # cannot lower it), below 5% only when every reading is; else undetermined (review 39 diff1 B4)
        high = [x for x in reads if x[0] is True]
        st = True if high else False if all(x[0] is False for x in reads) else None
        top = max(high or reads, key=lambda x: (x[2], x[1].startswith(">")))
        text = top[1] if len(reads) == 1 else (
            f"{top[1]} ({'the highest of the day is at least this, of' if high else 'the highest of'} the day's "
            f"readings {', '.join(x[1] for x in reads)}, as the marrow response with same_day_marrow=highest)")
        out[key] = (st, text)
    return out


def derive_antigen_loss(study: Study, options: MolecularOptions | None = None) -> pl.DataFrame:
    """Target antigen on blasts (TGTBLAST) before and after infusion; flags antigen loss.

    ``below_cutoff``: the value is not antigen-positive against ``antigen_negative_below_pct``
    (default: at or below 30%, NCT04762485 "CD7 >30% of blasts"; option ``antigen_positive_inclusive``).
    ``antigen_loss`` is true only when the pre-treatment value was positive (``antigen.loss``); not
    positive from before treatment is ``antigen.low_at_baseline`` (false: not a loss), and with no
    pre-treatment value ``antigen.no_baseline`` (empty: unknown). A TGTBLAST row without an analyte is
    the subject's target (subjects.target), filled in before the results are paired. ``with_relapse_marrow``
    is true when the same day has marrow blasts >= 5% (the highest BMBLAST of the day), false below 5%,
    and empty when no BMBLAST was measured that day.
    """
    options = options or MolecularOptions()
    thr, inclusive = options.antigen_negative_below_pct, options.antigen_positive_inclusive
    low_side, high_side = antigen_sides(thr, inclusive)
    # TGTBLAST is the subject's CAR target on blasts: without an analyte the antigen is subjects.target,
    # filled in before the series are split (review 39 A3: "CD7" and an empty analyte are one series)
    obs = study.observations
    if "target" in study.subjects.columns:
        obs = obs.join(study.subjects.select("subject_id", pl.col("target").cast(pl.String).alias("_target")),
                       on="subject_id", how="left")
    else:
        obs = obs.with_columns(pl.lit(None, dtype=pl.String).alias("_target"))
    # a censored result ("<1" %, CD7-negative by flow) is a reading: below the cut-off when its bound
    # settles it, undetermined when not ("<50" against 30%); session 33 (it was dropped)
    tg = obs.filter(
        (pl.col("param") == "TGTBLAST") & pl.col("day").is_not_null()
        & (pl.col("value").is_not_null() | (pl.col("censor").is_in(list(_CENSOR_OPS))
                                           & pl.col("censor_limit").is_not_null()))
    ).with_columns(pl.col("analyte").is_null().alias("_no_analyte"), pl.coalesce("analyte", "_target").alias("analyte"))
    tg = _one_spelling(tg, ["subject_id"]).sort("subject_id", "analyte", "day", "src_row")
    bm = _marrow_blasts(study)
    no_blasts = _no_blast_days(study)
    rows = []
    for key, part in tg.partition_by(["subject_id", "analyte"], as_dict=True).items() if tg.height else []:
        sid, antigen = key
        recs = part.to_dicts()
        pre = [r for r in recs if r["day"] < options.baseline_before_day]
        ag = (antigen or "target") + _spelled(recs)
        filled = [r for r in recs if r["_no_analyte"] and antigen]
        shown_days = ", ".join(f"{x['day']:g}" for x in filled)
        fill_note = f"; analyte not given on day(s) {shown_days}: subjects.target {antigen}" if filled else ""
        for r in recs:
            if r["day"] < options.baseline_before_day:
                continue
            p, p_below, p_note, p_rows, p_unused = _antigen_baseline(pre, r, thr, options.antigen_same_day, inclusive,
                                                                     options.baseline_max_days_before)
            below = _below(r, thr, inclusive)
            what = f"{ag} on {_pct(r)} of blasts on day {r['day']:g} ({_spec(r) or 'specimen not given'})"
            if p is not None:
                what += f" (pre-treatment {_pct(p)} on day {p['day']:g}{p_note})"
            elif p_note:
                what += f" (pre-treatment{p_note})"
            what += fill_note
            day = math.floor(r["day"])
            if (sid, day) in no_blasts and _spec(r) in ("BM", ""):
                lost, rule = None, "antigen.no_blasts"
                why = (f"no blasts in the marrow that day ({no_blasts[(sid, day)]}): the % of blasts carrying "
                       f"{ag} has no denominator, antigen loss not assessable")
                below = None
            elif below is None:
                lost, rule = None, "antigen.undetermined"
                why = (f"the censored result {_pct(r)} does not settle whether it is {low_side}: loss "
                       "undetermined")
            elif not below:
                lost, rule, why = False, "antigen.retained", f"{high_side}: antigen-positive"
            elif p is None:
                lost, rule = None, "antigen.no_baseline"
                why = (f"{low_side}, but no pre-treatment {ag} value (TGTBLAST before day "
                       f"{options.baseline_before_day:g}): loss or antigen-low from the start cannot be told")
            elif p_below is None:
                lost, rule = None, "antigen.undetermined"
                why = (f"{low_side}, but the pre-treatment censored result {_pct(p)} does not settle whether "
                       f"it was {high_side}: loss or antigen-low from the start cannot be told"
                       if len(p_rows) < 2 else
                       f"{low_side}, but the pre-treatment results of day {p['day']:g} differ on the cut-off "
                       "(option molecular.antigen_same_day=not_evaluable): loss or antigen-low from the start "
                       "cannot be told")
            elif p_below:
                lost, rule = False, "antigen.low_at_baseline"
                why = (f"{low_side}, as it already was before treatment ({_pct(p)}): "
                       "antigen-low at baseline, not a loss")
            else:
                lost, rule = True, "antigen.loss"
                why = f"{low_side}, from {_pct(p)} ({high_side}) before treatment: antigen loss"
            why += f" (option molecular.antigen_positive_inclusive={str(inclusive).lower()})"
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
                if rel and _spec(r) not in ("BM", ""):  # review 41 F2: a blood result says nothing of the marrow's
                    why += (f"; marrow blasts {shown} the same day (>= {_RELAPSE_BLASTS:g}%); this result is on "
                            f"{_spec(r)} blasts, not the marrow's (relapse_antigen.csv reads the marrow's first)")
                elif rel:
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
                "day": r["day"], "specimen": _spec(r) or None, "pct": r["value"], "pct_censored": None if r["value"] is not None else _pct(r)[:-1],
                "below_cutoff": below, "antigen_loss": lost, "with_relapse_marrow": rel, "rule": rule,
                "reason": f"{what}: {why}",
                "evidence": list(dict.fromkeys(x for x in [row_ref(r), *map(row_ref, p_rows), *map(row_ref, p_unused)]
                                               if x)),
            })
    return pl.DataFrame(rows, schema=_AG_SCHEMA, orient="row") if rows else pl.DataFrame(schema=_AG_SCHEMA)


_RA_SCHEMA = {
    "subject_id": pl.String, "episode": pl.Int64, "relapse_day": pl.Float64, "antigen": pl.String,
    "status": pl.String, "antigen_day": pl.Float64, "specimen": pl.String, "antigen_rule": pl.String,
    "label": pl.String, "reason": pl.String, "evidence": EVIDENCE,
}
#: the end events of the forward search (BestResponseOptions.end_events' defaults)
_RA_END_EVENTS = ("new_therapy", "allo_hsct")


def _ag_pct(r: dict) -> str:
    """An antigen_loss.csv row's result as written: "60%" or the censored "<1%"."""
    return f"{r['pct']:g}%" if r.get("pct") is not None else f"{r.get('pct_censored') or '?'}%"


def _ra_status(rows: list[dict]) -> str:
    """The antigen status of one specimen's results of a day (antigen_loss.csv rows): negative when one
    is a documented loss, low when one is below the cut-off without one, retained when one is above
    it, else not assessed (no blasts, or a bound that settles nothing)."""
    if any(r.get("antigen_loss") is True for r in rows):
        return "negative"
    if any(r.get("below_cutoff") is True for r in rows):
        return "low"
    if any(r.get("below_cutoff") is False for r in rows):
        return "retained"
    return "not assessed"


def derive_relapse_antigen(study: Study, relapses: pl.DataFrame, antigen: pl.DataFrame,
                           options=None, molecular: MolecularOptions | None = None) -> pl.DataFrame:
    """The target antigen at each relapse (one row per relapse episode and antigen; review 41 F1/F2):
    the first calendar day from the relapse's day to ``antigen_forward_days`` after it (option of
    :class:`~cartlab.response.marrow_options.ResponseOptions`, default 7) with a TGTBLAST result
    (``antigen``: :func:`derive_antigen_loss`), stopping before the first ``new_therapy`` / ``allo_hsct``
    after the relapse's day and before the subject's next response episode. A later result is not the
    relapse's phenotype (research note cd7_trials.md §3.4 asks for the phenotype *at relapse*; "missing
    is not negative"). With option ``antigen_relapse_specimen`` "BM" the first day in that window with a
    marrow result (BM, or no specimen) decides, even when a blood result comes earlier (review 41 diff1
    F5), and the first day of any specimen only when the window has no marrow result; "any" = the first
    day's results of every specimen, negative when either is. Every other result in the window is named
    in the reason and the label and is in the evidence.
    ``status``: negative (a documented loss, ``antigen.loss``), low (at or below the cut-off without a
    documented loss), retained, not assessed. ``label``: the swimmer's text, with the result's day."""
    from cartlab.response.marrow_options import ResponseOptions

    options = options or ResponseOptions()
    molecular = molecular or MolecularOptions()
    fwd, how = float(options.antigen_forward_days), options.antigen_relapse_specimen
    cut = ("<" if molecular.antigen_positive_inclusive else "≤") + f"{molecular.antigen_negative_below_pct:g}%"
    ends: dict[str, list[tuple[float, str]]] = {}
    for e in study.events.filter(pl.col("event").is_in(list(_RA_END_EVENTS)) & pl.col("day").is_not_null()
                                 ).sort("day").iter_rows(named=True):
        ends.setdefault(e["subject_id"], []).append((float(e["day"]), f"{e['event']} on day {e['day']:g}"
                                                     + (f" ({row_ref(e)})" if row_ref(e) else "")))
    ag = antigen.filter(pl.col("day").is_not_null()).sort("subject_id", "day").to_dicts() if antigen.height else []
    by_sid: dict[str, list[dict]] = {}
    for r in ag:
        by_sid.setdefault(r["subject_id"], []).append(r)
    relapses = relapses.with_columns(*[pl.lit(None, dtype=t).alias(c) for c, t in (("episode", pl.Int64),
                                       ("response_day", pl.Float64)) if c not in relapses.columns])
    eps = relapses.filter(pl.col("relapse_day").is_not_null()).sort("subject_id", "episode", "relapse_day").to_dicts()
    resp = {}
    for r in relapses.iter_rows(named=True):
        if r.get("response_day") is not None:
            resp.setdefault(r["subject_id"], []).append(float(r["response_day"]))
    out = []
    for e in eps:
        sid, day0 = e["subject_id"], math.floor(e["relapse_day"])
        stop, why_stop = day0 + fwd, f"{fwd:g} days after it, option response.antigen_forward_days"
        for d, text in ends.get(sid, []):
            if math.floor(d) > day0 and math.floor(d) <= stop:  # a result on the end event's day is after it
                stop, why_stop = math.floor(d) - 1, f"the day before {text}: new therapy or HSCT ends the search"
                break
        nxt = [d for d in resp.get(sid, []) if math.floor(d) > day0]
        if nxt and math.floor(min(nxt)) <= stop:
            stop, why_stop = math.floor(min(nxt)) - 1, f"the day before the next response on day {min(nxt):g}"
        window = [r for r in by_sid.get(sid, []) if day0 <= math.floor(r["day"]) <= stop]
        base = {"subject_id": sid, "episode": e.get("episode"), "relapse_day": e["relapse_day"]}
        span = f"from day {day0:g} to {stop:g} ({why_stop})"
        if not window:
            later = [r for r in by_sid.get(sid, []) if math.floor(r["day"]) > stop]
            out.append({**base, "antigen": None, "status": "not assessed", "antigen_day": None, "specimen": None,
                        "antigen_rule": None, "label": "relapse, antigen not assessed",
                        "reason": f"relapse on day {e['relapse_day']:g}: no target-antigen (TGTBLAST) result {span}"
                                  + (f"; a later result (day {later[0]['day']:g}) is not this relapse's phenotype"
                                     if later else ""),
                        "evidence": []})
            continue
        for antigen_name in dict.fromkeys(r["antigen"] for r in window):
            mine = [r for r in window if r["antigen"] == antigen_name]
            marrow = [r for r in mine if _spec(r) in ("BM", "")]
            # option antigen_relapse_specimen=BM: the first day in the window with a marrow result (BM, or no
            # specimen) decides, whatever blood result comes earlier or the same day (review 41 diff1 F5);
            # only without any marrow result in the window does the first day of any specimen decide
            pool = marrow if how == "BM" and marrow else mine
            first = min(math.floor(r["day"]) for r in pool)
            used = [r for r in pool if math.floor(r["day"]) == first]
            # every other result in the window is named (and in the evidence), not used; with "any" the
            # first day's results of every specimen are used together, as before
            if how == "any":
                used = [r for r in mine if math.floor(r["day"]) == first]
            named = [r for r in mine if not any(r is u for u in used)]
            status = _ra_status(used)
            spec = "/".join(sorted({_spec(r) for r in used if _spec(r)}))  # empty: not given (read as marrow)
            name = antigen_name or "target"
            when = f"{name} on day {first:g}{', ' + spec if spec else ''}"
            groups: dict[tuple[str, int], list[dict]] = {}
            for r in named:
                groups.setdefault((_spec(r) or "no specimen", math.floor(r["day"])), []).append(r)
            shown = {"negative": f"{cut}, a loss", "low": f"{cut}", "retained": "retained",
                     "not assessed": "not assessable"}
            note = "".join(f"; {sp} on day {d:g}: {shown[_ra_status(g)]}" for (sp, d), g in groups.items())
            label = {"negative": f"{name}-low/negative relapse ({cut}; {when}{note})",
                     "low": f"relapse, {name} low ({cut}: low before treatment or no pre-treatment value, not a "
                            f"documented loss; {when}{note})",
                     "retained": f"relapse, {name} retained ({when}{note})",
                     "not assessed": f"relapse, {name} not assessable ({when}{note})"}[status]

            def results(rows: list[dict]) -> str:
                return "; ".join(f"{_ag_pct(r)} {_spec(r) or 'no specimen'} ({r.get('rule') or 'rule not given'})"
                                 for r in rows)

            kind = "marrow result" if how == "BM" and marrow else "result"
            reason = (f"relapse on day {e['relapse_day']:g}: the first {name} {kind} {span} is on day {first:g}: "
                      + results(used)
                      + ("; not used, named: " + "; ".join(f"{results(g)} on day {d:g}" for (_, d), g in groups.items())
                         + (" (option response.antigen_relapse_specimen=BM: the marrow's result decides)" if how == "BM"
                            else " (the first day's results decide)") if named else
                         " (option response.antigen_relapse_specimen=any: negative when either is)" if how == "any"
                         and len({_spec(r) for r in used}) > 1 else ""))
            out.append({**base, "antigen": antigen_name, "status": status, "antigen_day": float(first),
                        "specimen": spec or None, "antigen_rule": "; ".join(dict.fromkeys(r["rule"] for r in used if r.get("rule"))) or None,
                        "label": label, "reason": reason,
                        "evidence": list(dict.fromkeys(x for r in [*used, *named] for x in (r.get("evidence") or [])))})
    return pl.DataFrame(out, schema=_RA_SCHEMA, orient="row") if out else pl.DataFrame(schema=_RA_SCHEMA)


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
__getattr__ = renamed(__name__, "antigen_loss", "molecular_response")
