"""Per-patient summaries of a chunk of simulated patients, vectorised over the chunk, and the
mergeable accumulators a trial adds them into.

The summaries are computed from the *recorded* course (:class:`cartlab.twin.observe.Observed`: the
sampled, noisy, censored values and the clinic log), with the engines' conventions, so they equal
what ``cartlab analyze`` derives from the written folder (tested in ``tests/test_twin_summaries.py``):

* CAR kinetics (study-format v1 "Cellular kinetics", ``cartlab.kinetics.car``): samples from day 0,
  a 0 imputed at the infusion, BLQ = 0 before the first and after the last quantifiable value and
  dropped between; Cmax/Tmax (first day of the maximum); AUC0-28 linear-up/log-down, the curve 0
  from the first BLQ sample after the last quantifiable one (AUCall), interpolated at day 28 (by the
  same method) when the day-28 sample is a dropped BLQ; NaN when no sample follows.
* ASTCT 2019 CRS grade (``grading/criteria/astct_crs_2019.yaml``, default options): per calendar
  day the table's fever, hypotension and hypoxia rules on the day's Tmax, SBP minimum, vasopressor
  count and oxygen level (none: the model has no hypoxia, so grade <= 3); fever required, or waived
  from the first day of a waiver category (tocilizumab / corticosteroid).
* Early ICAHT (EHA/EBMT 2023, ``grading/criteria/icaht_2023.yaml``, default options): daily ANC in
  the early window, linearly interpolated between measured days, cumulative days at or below each
  level the early rules name, with non-stable recoveries counted; "never above" only when the data
  start by day 3 and reach day 30 (a shorter follow-up is graded on the days observed, as analyze's
  ``icaht_early_grade``); the grade by the table's rules.
* ELN 2022 best response (AML; ``response/criteria/eln2022_aml.yaml``, default options): each
  post-infusion marrow with NEUT/PLAT/PBBLAST from the marrow day or the nearest day within the
  table's count window (ties: earlier), categorised by the table's rules (the catch-all NR while a
  better category is still possible for a missing input is NE); CR > CRh > CRi > MLFS > PR > NR >
  NE, ties to the first day; assessments after an allo-HSCT day are not counted.

The thresholds and grades come from the criteria tables through the one rule compiler
(:func:`cartlab.criteria.decision`); only the feature derivations are vectorised here. A table
default these derivations do not implement is refused (:func:`_require`), never silently ignored.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from cartlab.criteria import decision, load_raw, load_table
from cartlab.errors import InputError

CATEGORIES = ("CR", "CRh", "CRi", "MLFS", "PR", "NR", "NE")
CR_CRH_CRI = (0, 1, 2)
#: intervention categories of the criteria tables -> the clinic log's keys (cartlab.twin.clinic)
CLINIC_KEYS = {"tocilizumab": "tocilizumab", "corticosteroid": "steroid", "antipyretic": "antipyretic"}
#: fixed log10 bins (0.01 dex) of the histograms: Cmax, AUC0-28 (copies/ug gDNA [x day])
LOG_BINS = np.round(np.arange(0.0, 10.0 + 1e-9, 0.01), 2)


def _floor_groups(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Calendar days of sorted sample times and the start column of each day."""
    d = np.floor(t).astype(np.int64)
    starts = np.r_[0, np.nonzero(np.diff(d))[0] + 1]
    return d[starts], starts


def _daily(v: np.ndarray, t: np.ndarray, how) -> tuple[np.ndarray, np.ndarray]:
    days, starts = _floor_groups(t)
    with np.errstate(invalid="ignore"):
        out = how.reduceat(np.where(np.isfinite(v), v, np.nan), starts, axis=1)
    return days, out


def car_kinetics(t: np.ndarray, v: np.ndarray, blq: np.ndarray, first_dose: float = 0.0,
                 auc_end: float = 28.0) -> dict[str, np.ndarray]:
    """Cmax, Tmax, Tlast, AUC(first_dose..auc_end) of sampled CAR levels ``v`` (n, K) at ``t``."""
    keep = t >= first_dose
    t, v, blq = t[keep] - first_dose, v[:, keep], blq[:, keep]
    if t.size == 0 or t[0] > 0:   # a 0 at the infusion (no CAR-T before it is given)
        t = np.r_[0.0, t]
        v = np.c_[np.zeros(v.shape[0]), v]
        blq = np.c_[np.zeros(v.shape[0], bool), blq]
    qa = np.isfinite(v) & ~blq & (v > 0)   # quantifiable (PKNCA: a 0 counts as BLQ)
    k = t.size
    idx = np.arange(k)
    first = np.where(qa.any(1), np.argmax(qa, axis=1), k)
    last = np.where(qa.any(1), k - 1 - np.argmax(qa[:, ::-1], axis=1), -1)
    c = np.where(qa, v, np.nan)
    zero = (blq | (v == 0)) & ((idx[None, :] < first[:, None]) | (idx[None, :] > last[:, None]))
    c = np.where(zero, 0.0, c)
    c[:, 0] = np.where(np.isfinite(c[:, 0]), c[:, 0], 0.0)
    valid = np.isfinite(c)
    cm = np.where(valid, c, -np.inf)
    cmax = cm.max(axis=1)
    tmax = t[np.argmax(cm, axis=1)]
    tlast = np.where(last >= 0, t[np.clip(last, 0, k - 1)], np.nan)
    # AUC over [0, auc_end]: consecutive valid samples, lin-up/log-down
    auc = np.zeros(v.shape[0])
    pt, pc = np.full(v.shape[0], t[0]), c[:, 0].copy()
    reached = np.zeros(v.shape[0], bool)
    for j in range(1, k):
        if t[j] > auc_end:
            break
        ok = valid[:, j]
        c2 = c[:, j]
        dt = t[j] - pt
        with np.errstate(divide="ignore", invalid="ignore"):
            lg = dt * (c2 - pc) / np.log(c2 / pc)
        down = (c2 < pc) & (c2 > 0) & (pc > 0)
        area = np.where(down, lg, dt * (c2 + pc) / 2)
        auc = np.where(ok, auc + area, auc)
        pt = np.where(ok, t[j], pt)
        pc = np.where(ok, c2, pc)
        reached |= ok & (t[j] == auc_end)
    # no usable sample on auc_end (a BLQ between quantifiable values is dropped): interpolate there
    # between the samples around it by the same method (PKNCA aucint)
    nt, nc = np.full(v.shape[0], np.nan), np.full(v.shape[0], np.nan)
    for j in range(k - 1, -1, -1):
        if t[j] <= auc_end:
            break
        nt = np.where(valid[:, j], t[j], nt)
        nc = np.where(valid[:, j], c[:, j], nc)
    part = ~reached & np.isfinite(nt) & (pt < auc_end)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = (auc_end - pt) / (nt - pt)
        down = (nc < pc) & (nc > 0) & (pc > 0)
        ce = np.where(down, np.exp(np.log(pc) + f * (np.log(nc) - np.log(pc))), pc + f * (nc - pc))
        area = np.where(down, (auc_end - pt) * (ce - pc) / np.log(ce / pc), (auc_end - pt) * (ce + pc) / 2)
    auc = np.where(part, auc + area, auc)
    auc = np.where(reached | part, auc, np.nan)
    return {"cmax": cmax, "tmax": tmax, "tlast": tlast, "auc": auc}


def _require(what: str, opts: dict[str, Any], **expected: Any) -> None:
    """Refuse table defaults the vectorised derivations here do not implement (they would be ignored)."""
    def norm(x: Any) -> Any:
        return tuple(x) if isinstance(x, (list, tuple)) else x

    bad = {k: opts.get(k) for k, v in expected.items() if norm(opts.get(k)) != norm(v)}
    if bad:
        raise InputError(f"twin summaries: {what} defaults {bad} are not implemented by the fast summaries "
                         f"(they implement {expected}); analyse the written study folders instead")


@functools.cache
def _rules(kind: str) -> tuple[Any, dict[str, Any]]:
    """(criteria table, resolved default options) of ``kind``: crs, icaht or eln."""
    if kind == "crs":
        from cartlab.grading.crs import CrsOptions as Options
    elif kind == "icaht":
        from cartlab.grading.icaht import IcahtOptions as Options
    else:
        from cartlab.response.marrow import ResponseOptions

        options = ResponseOptions()
        return load_table("eln2022_aml", "cartlab.response"), options.resolved("eln2022_aml")
    options = Options()
    return load_table(options.criteria), options.resolved()


def crs_grade(obs) -> np.ndarray:
    """ASTCT 2019 maximum daily CRS grade per patient (0-3; no hypoxia in the model), by the rules of
    ``astct_crs_2019.yaml`` (Lee et al. 2019, Table 1)."""
    days = obs.clinic_days.astype(np.int64)
    n, D = obs.n, days.size
    if not D:
        return np.zeros(n, np.int64)
    tmax = np.full((n, D), np.nan)
    sbp = np.full((n, D), np.nan)
    for p, arr, how in (("TEMP", tmax, np.fmax), ("SYSBP", sbp, np.fmin)):
        if p not in obs.values:
            continue
        d, val = _daily(obs.values[p], obs.times[p], how)
        sel = np.isin(d, days)
        arr[:, np.searchsorted(days, d[sel])] = val[:, sel]
    vaso = obs.clinic.get("vasopressor", np.zeros((n, D), bool))
    return crs_daily_grades(tmax, sbp, vaso, obs.clinic).max(axis=1)


def crs_daily_grades(tmax: np.ndarray, sbp: np.ndarray, vasopressor: np.ndarray, clinic: dict) -> np.ndarray:
    """ASTCT 2019 CRS grade per patient and day ((n, D) arrays: daily Tmax in C, SBP minimum in
    mmHg, vasopressor given; ``clinic``: the clinic log's (n, D) flags, for the fever waiver) by the
    rules of ``astct_crs_2019.yaml`` (default options): the fever, hypotension and hypoxia rule sets
    (no oxygen in the model), fever required or waived from the first day of a waiver category."""
    table, opts = _rules("crs")
    _require("ASTCT CRS", opts, age_adjusted_sbp=False, antipyretics_waive_fever=False, assessment_window=None,
             assessment_end_events=())
    n, D = tmax.shape
    vaso = np.asarray(vasopressor).astype(np.int64)   # one agent (norepinephrine) when given
    waiver_any = np.zeros((n, D), bool)
    for category in opts["waiver_categories"]:
        key = CLINIC_KEYS.get(category)
        if key in clinic:
            waiver_any |= np.asarray(clinic[key], bool)
    waived = np.maximum.accumulate(waiver_any, axis=1)
    features = pl.DataFrame({"tmax_c": tmax.ravel(), "sbp_min_mmhg": sbp.ravel(),
                             "sbp_cutoff": np.full(n * D, float(opts["sbp_cutoff_mmhg"])),
                             "n_vasopressors": vaso.ravel(), "n_vasopressors_excl_vasopressin": vaso.ravel(),
                             "o2_level": np.zeros(n * D, np.int64)}, nan_to_null=True)
    from cartlab.grading.crs import day_grade

    g = features.with_columns(pl.Series("waived", waived.ravel())).select(
        *[decision(table, dom, opts, otherwise_grade=0).grade().alias(dom) for dom in ("fever", "hypotension", "hypoxia")],
        "waived")
    grade = g.select(day_grade(pl.col("fever") >= 1, pl.max_horizontal("hypotension", "hypoxia"), pl.col("waived")))
    return grade.to_series().to_numpy().reshape(n, D)


def _below_days(flag: np.ndarray, known: np.ndarray, stable: int = 3) -> np.ndarray:
    """Cumulative days below (``flag``) among ``known`` days, plus non-stable recoveries (runs of
    fewer than ``stable`` known not-below days between two below runs)."""
    n, D = flag.shape
    total = (flag & known).sum(axis=1)
    # a not-below run [a, b] is bridged when day a-1 and b+1 are below and all of a..b are known
    state = np.where(~known, -1, np.where(flag, 1, 0))
    for r in range(n):
        s = state[r]
        j = 0
        while j < D:
            if s[j] == 0:
                a = j
                while j < D and s[j] == 0:
                    j += 1
                if a > 0 and j < D and s[a - 1] == 1 and s[j] == 1 and j - a < stable:
                    total[r] += j - a
            else:
                j += 1
    return total


def early_icaht_window() -> tuple[float, float]:
    """The early ICAHT window (first and last day after infusion) of ``icaht_2023.yaml``'s options."""
    _, opts = _rules("icaht")
    lo, hi = opts["early_window"]
    return float(lo), float(hi)


def icaht_early(obs) -> np.ndarray:
    """EHA/EBMT 2023 early ICAHT grade (0-4; -1 = not evaluable: no ANC in the early window), by the
    rules of ``icaht_2023.yaml`` (Rejeski et al. 2023), graded on the days with an ANC (measured or
    interpolated) as ``cartlab analyze``'s ``icaht_early_grade``: "never above <level>" needs the data to
    start by ``never_above_data_from_day`` and every day from there to the window's end (day 30: the
    model has no deaths) known, so a follow-up shorter than the window (``cartlab simulate --days 20``)
    is graded by the cumulative days observed, not "never above" (review 47 A2)."""
    from cartlab.grading.hemato_common import rule_features, table_levels

    table, opts = _rules("icaht")
    _require("ICAHT", opts, daily_value="min", interpolate=True, max_interpolation_gap_days=None,
             duration="cumulative", count_recovery_days_in_run=True, never_above_requires_full_window=False,
             never_above_window_end="death", early_censor_events=("death",))
    levels = table_levels(table, "NEUT")
    t, v = obs.times["NEUT"], obs.values["NEUT"]
    d, val = _daily(v, t, np.fmin)
    n = v.shape[0]
    lo, hi = opts["early_window"]
    grid = np.arange(int(lo), int(hi) + 1)
    anc = np.full((n, grid.size), np.nan)
    ok = np.isfinite(val)
    for g, day in enumerate(grid):
        before = ok & (d[None, :] <= day)
        after = ok & (d[None, :] >= day)
        has_b, has_a = before.any(1), after.any(1)
        ib = np.where(has_b, d.size - 1 - np.argmax(before[:, ::-1], axis=1), 0)
        ia = np.where(has_a, np.argmax(after, axis=1), 0)
        vb, va = val[np.arange(n), ib], val[np.arange(n), ia]
        db, da = d[ib], d[ia]
        w = np.where(da > db, (day - db) / np.where(da > db, da - db, 1), 0.0)
        anc[:, g] = np.where(has_b & has_a, vb + (va - vb) * w, np.nan)
    known = np.isfinite(anc)
    # "never above" is established only when the data start by never_above_data_from_day and every day
    # from the first known one to the window's end is known (cartlab.grading.icaht._early_features;
    # the window ends at day 30 or death, and the twin has no death model)
    first = np.where(known.any(1), np.argmax(known, axis=1), grid.size)
    starts = known.any(1) & (grid[np.minimum(first, grid.size - 1)] <= float(opts["never_above_data_from_day"]))
    complete = starts & (known | (np.arange(grid.size)[None, :] < first[:, None])).all(axis=1)
    below = np.less_equal if opts["inclusive"] else np.less
    features: dict[str, np.ndarray] = {}
    for name in rule_features(table.rule_set("early")):
        m = re.fullmatch(r"anc_le_(\w+)_days|never_above_(\w+)", name)
        if m is None or (m.group(1) or m.group(2)) not in levels:
            raise InputError(f"twin summaries: the early ICAHT rules use {name!r}, which the fast summaries do not derive")
        with np.errstate(invalid="ignore"):
            flag = below(anc, levels[m.group(1) or m.group(2)])
        features[name] = (_below_days(flag, known, int(opts["stable_recovery_days"])) if m.group(1)
                          else complete & np.all(~known | flag, axis=1))
    grade = pl.DataFrame(features).select(decision(table, "early", opts, otherwise_grade=0).grade())
    return np.where(known.any(1), grade.to_series().to_numpy(), -1)


def _nearest(obs, p: str, day: float, window: float) -> np.ndarray:
    if p not in obs.values:   # not recorded at all (a reduced schedule): missing
        return np.full(next(iter(obs.values.values())).shape[0], np.nan)
    t, v = obs.times[p], obs.values[p]
    dist = np.abs(np.floor(t) - np.floor(day))
    order = np.lexsort((t, dist))
    out = np.full(v.shape[0], np.nan)
    for j in order[::-1]:   # the nearest (then earliest) valid one wins: written last
        if dist[j] > window:
            continue
        out = np.where(np.isfinite(v[:, j]), v[:, j], out)
    return out


def _eln_rules() -> tuple[Any, dict[str, Any]]:
    table, opts = _rules("eln")
    _require("ELN 2022", opts, missing_pb_blasts="not_evaluable")
    return table, opts


def eln_categories(bm_blast_pct, pb_blast_pct, anc, plt, blast_reduction_pct) -> np.ndarray:
    """ELN 2022 category (index into :data:`CATEGORIES`) of n marrow assessments, by the rules of
    ``eln2022_aml.yaml`` (default options); NaN = not measured. The model has no extramedullary
    disease and no cellularity (absent: not aplastic, as the engine reads it)."""
    from cartlab.response.marrow import categorise_assessments

    table, opts = _eln_rules()
    n = np.asarray(bm_blast_pct).size
    feats = pl.DataFrame({"bm_blast_pct": bm_blast_pct, "pb_blast_pct": pb_blast_pct, "emd": np.zeros(n, bool),
                          "anc": anc, "plt": plt, "not_aplastic": np.ones(n, bool),
                          "blast_reduction_pct": blast_reduction_pct}, nan_to_null=True)
    cats, _ = categorise_assessments(table, opts, feats)
    rank = {c: i for i, c in enumerate(CATEGORIES)}
    return cats["a_category"].replace_strict(rank, default=rank["NE"], return_dtype=pl.Int64).to_numpy()


def eln_marrow_categories(obs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ELN 2022 category (index into :data:`CATEGORIES`) of every post-infusion marrow, by the rules of
    ``eln2022_aml.yaml`` (default options): (days (J,), categories (n, J), counted (n, J): a marrow
    blast value on or before the end of follow-up / the allo-HSCT day)."""
    _, opts = _eln_rules()
    window = float(opts["count_window_days"])
    t, bm = obs.times["BMBLAST"], obs.values["BMBLAST"]
    n = bm.shape[0]
    pre = np.full(n, np.nan)
    for j in np.nonzero(t < 0)[0]:
        pre = np.where(np.isfinite(bm[:, j]), bm[:, j], pre)
    end = np.where(np.isfinite(obs.hsct_day), obs.hsct_day, np.inf)
    post = np.nonzero(t > 0)[0]
    cats = np.full((n, post.size), CATEGORIES.index("NE"))
    counted = np.zeros((n, post.size), bool)
    for k, j in enumerate(post):
        b = bm[:, j]
        counted[:, k] = np.isfinite(b) & (t[j] <= end)
        anc, plt, pb = (_nearest(obs, p, t[j], window) for p in ("NEUT", "PLAT", "PBBLAST"))
        with np.errstate(invalid="ignore", divide="ignore"):
            red = np.where(pre > 0, 100 * (pre - b) / np.where(pre > 0, pre, 1), np.nan)
        cats[:, k] = eln_categories(b, pb, anc, plt, red)
    return t[post], cats, counted


def eln_best_response(obs, marrows=None) -> tuple[np.ndarray, np.ndarray]:
    """ELN 2022 best response (index into :data:`CATEGORIES`) and its day, per patient, each marrow
    categorised by the rules of ``eln2022_aml.yaml`` (Döhner et al. 2022, Table 7)."""
    days, cats, counted = marrows if marrows is not None else eln_marrow_categories(obs)
    n = cats.shape[0]
    best = np.full(n, CATEGORIES.index("NE"))
    best_day = np.full(n, np.nan)
    for k in range(days.size):
        cat = cats[:, k]
        better = counted[:, k] & ((cat < best) | ~np.isfinite(best_day))
        better &= ~(np.isfinite(best_day) & (cat >= best))
        best = np.where(better, cat, best)
        best_day = np.where(better, days[k], best_day)
    return best, best_day


@functools.cache
def relapse_rule() -> dict[str, Any]:
    """The ELN 2022 table's ``relapse:`` block (``after_categories``, the circulating-blast rule) and
    its marrow threshold (rule ``eln2022.relapse.marrow``), as ``cartlab.response.marrow.derive_relapse``
    reads them (read once: every chunk asks)."""
    raw = load_raw("eln2022_aml", "cartlab.response")
    marrow = [w for r in raw["rule_sets"]["relapse"] for w in r["when"]
              if isinstance(w, dict) and w.get("feature") == "bm_blast_pct" and w.get("op") == ">="]
    if len(marrow) != 1:
        raise InputError("twin relapse: the ELN 2022 table's relapse rules are not one 'bm_blast_pct >=' rule "
                         "(plus EMD), which the twin's relapse derivation implements")
    thr = float(marrow[0]["value"])
    rel = raw["relapse"]
    # the response engine's option relapse_after, at its default (session 35: ELN 2022, CR/CRh/CRi)
    after = raw.get("defaults", {}).get("relapse_after", rel.get("after_categories"))
    return {"after_categories": tuple(after), "bm_blast_pct": thr,
            "pb_blast_samples": int(rel["pb_blast_samples"]), "pb_blast_min_days_apart": float(rel["pb_blast_min_days_apart"])}


def first_response_day(obs, marrows=None) -> np.ndarray:
    """Day of the first post-infusion marrow whose ELN 2022 category is one after which a relapse can
    occur (the option ``relapse_after`` at its default: CR, CRh, CRi), NaN when none: the start of
    ``derive_relapse``'s first episode."""
    days, cats, counted = marrows if marrows is not None else eln_marrow_categories(obs)
    after = [CATEGORIES.index(c) for c in relapse_rule()["after_categories"] if c in CATEGORIES]
    hit = counted & np.isin(cats, after)
    return np.where(hit.any(axis=1), days[np.argmax(hit, axis=1)] if days.size else np.nan, np.nan)


def summarise(obs) -> dict[str, np.ndarray]:
    """All per-patient summaries of a chunk (arrays of length n)."""
    car = obs.times.get("CARCOPY")
    out: dict[str, np.ndarray] = {"index": obs.index}
    if car is not None:
        k = car_kinetics(car, obs.values["CARCOPY"], obs.censored["CARCOPY"])
        out.update(cmax=k["cmax"], tmax=k["tmax"], tlast=k["tlast"], auc28=k["auc"])
    out["crs_grade"] = crs_grade(obs)
    out["icaht_early"] = icaht_early(obs)
    out["response"], out["response_day"] = eln_best_response(obs)   # the marrows' categories: as observe's relapse
    out["relapse"] = np.isfinite(obs.relapse_day)
    out["cd7neg_relapse"] = np.asarray(obs.relapse_cd7_negative, bool)
    # a relapse without a CD7 result in its window is unknown, not "not CD7-negative" (review 47 B3)
    out["cd7unknown_relapse"] = out["relapse"] & ~np.isfinite(np.asarray(obs.relapse_cd7_pct, float))
    out["hsct"] = np.isfinite(obs.hsct_day)
    return out


# ---------------------------------------------------------------------------------------------
# accumulators


@dataclass
class Accumulator:
    """Counts and fixed-bin histograms per arm; ``merge`` is associative (chunk-order merges give
    identical bytes whatever the chunking)."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)       # arm -> name -> count
    hists: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # arm -> name -> (bins+2,)

    def _c(self, arm: str, name: str, k: int) -> None:
        a = self.counts.setdefault(arm, {})
        a[name] = a.get(name, 0) + int(k)

    def _h(self, arm: str, name: str, x: np.ndarray) -> None:
        h = self.hists.setdefault(arm, {}).setdefault(name, np.zeros(LOG_BINS.size + 1, np.int64))
        x = np.asarray(x, float)
        x = x[np.isfinite(x)]
        lx = np.log10(np.maximum(x, 1e-300))
        h += np.bincount(np.searchsorted(LOG_BINS, lx, side="right"), minlength=h.size)[: h.size]

    def add(self, arm: str, s: dict[str, np.ndarray]) -> None:
        n = s["index"].size
        self._c(arm, "n", n)
        resp = s["response"]
        self._c(arm, "response_cr_crh_cri", np.isin(resp, CR_CRH_CRI).sum())
        self._c(arm, "response_cr_crh_cri_mlfs", (resp <= 3).sum())
        self._c(arm, "response_evaluable", (resp != CATEGORIES.index("NE")).sum())
        for c, name in enumerate(CATEGORIES):
            self._c(arm, f"best_{name}", (resp == c).sum())
        self._c(arm, "crs_any", (s["crs_grade"] >= 1).sum())
        self._c(arm, "crs_ge3", (s["crs_grade"] >= 3).sum())
        self._c(arm, "icaht_early_ge3", (s["icaht_early"] >= 3).sum())
        self._c(arm, "icaht_evaluable", (s["icaht_early"] >= 0).sum())
        self._c(arm, "relapse", s["relapse"].sum())
        self._c(arm, "cd7neg_relapse", s["cd7neg_relapse"].sum())
        if "cd7unknown_relapse" in s:
            self._c(arm, "cd7unknown_relapse", s["cd7unknown_relapse"].sum())
        self._c(arm, "hsct", s["hsct"].sum())
        if "cmax" in s:
            self._c(arm, "expanded", (s["cmax"] > 0).sum())
            self._h(arm, "cmax", s["cmax"][s["cmax"] > 0])
            self._h(arm, "auc28", s["auc28"][s["auc28"] > 0])
            th = self.hists.setdefault(arm, {}).setdefault("tmax", np.zeros(121, np.int64))
            tm = s["tmax"][s["cmax"] > 0]
            th += np.bincount(np.clip(np.round(tm).astype(np.int64), 0, 120), minlength=121)

    def add_solver(self, arm: str, n_fallback: int, failed: dict[int, str]) -> None:
        """Patients that needed the LSODA fallback, and those left out because every solver failed
        (global index -> reason; kept as one count per patient, ``solver_failed|<index>|<reason>``)."""
        self._c(arm, "n_fallback", n_fallback)
        self._c(arm, "n_solver_failed", len(failed))
        for i, why in failed.items():
            self._c(arm, f"solver_failed|{int(i)}|{why.replace('/', ' per ').replace('|', ' ')}", 1)

    def merge(self, other: Accumulator) -> Accumulator:
        for arm, c in other.counts.items():
            for k, v in c.items():
                self._c(arm, k, v)
        for arm, hs in other.hists.items():
            for k, h in hs.items():
                mine = self.hists.setdefault(arm, {}).setdefault(k, np.zeros_like(h))
                mine += h
        return self

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for arm, c in self.counts.items():
            for k, v in c.items():
                out[f"c|{arm}|{k}"] = np.array([v], np.int64)
        for arm, hs in self.hists.items():
            for k, h in hs.items():
                out[f"h|{arm}|{k}"] = h
        return out

    @classmethod
    def from_arrays(cls, arrays) -> Accumulator:
        acc = cls()
        for key in sorted(arrays):
            kind, arm, name = key.split("|", 2)
            if kind == "c":
                acc._c(arm, name, int(arrays[key][0]))
            else:
                acc.hists.setdefault(arm, {})[name] = np.array(arrays[key], np.int64)
        return acc


def hist_median(h: np.ndarray, log: bool = True) -> float:
    """Median of a fixed-bin histogram: the centre of the middle order statistic's bin, or for an even
    count the mean of the two middle order statistics' bin centres (as a sample median averages them).
    Log10 bins of 0.01 dex: every value lies within a factor 10^0.005 (-1.15%, +1.16%) of its bin
    centre, so the result is within that of the sample median; integer-day bins: exact for whole days."""
    total = int(h.sum())
    if total == 0:
        return float("nan")
    cum = np.cumsum(h)
    ranks = (total // 2, total // 2 + 1) if total % 2 == 0 else ((total + 1) // 2,)
    centres = []
    for r in ranks:
        k = int(np.searchsorted(cum, r))   # bin holding the r-th smallest value (1-based)
        if not log:
            centres.append(float(k))
        else:
            lo = LOG_BINS[k - 1] if k >= 1 else LOG_BINS[0] - 0.01
            centres.append(float(10 ** (lo + 0.005)))
    return float(sum(centres) / len(centres))
