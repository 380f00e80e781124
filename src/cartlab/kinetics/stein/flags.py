"""What the Stein fits say about how far their derived numbers can be trusted: a fitted peak outside
the sampled window (``peak_window``), derived values of parameters the data do not identify
(``derived_if_unidentified``), per-subject shrinkage and the ``prior_dominated`` flag, and the
population fit's convergence / precision warnings. Frame -> frame, one option per choice."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from cartlab._days import day_text

__all__ = ["AUC_EXTRAP_WARN_PCT", "DERIVED_DEPENDS", "DERIVED_IF_UNIDENTIFIED", "PEAK_WINDOWS", "PRIOR_DOMINATED_SHRINKAGE",
           "WARN_DEFAULTS"]

#: ``peak_window``: ``"observed"`` (default) -- a fitted peak after the subject's last sample is not
#: reported (stein_cmax / stein_tmax null; stein_auc_0_28 null too when its window ends after the last
#: sample); ``"model"`` -- reported as the model extrapolates it. Both set ``peak_extrapolated``.
PEAK_WINDOWS: tuple[str, ...] = ("observed", "model")
#: ``derived_if_unidentified`` (maximum-likelihood fits flagged "not identified"): ``"null"`` (default)
#: -- derived values that depend on an unidentified parameter (:data:`DERIVED_DEPENDS`) are null;
#: ``"keep"`` -- kept, for inspection.
DERIVED_IF_UNIDENTIFIED: tuple[str, ...] = ("null", "keep")
#: Which parameters each derived value depends on. The AUC0-28 integrates the expansion and the
#: fast contraction (alpha); the slow phase (fb, beta) adds at most ~fb*Cmax*(28 - Tmax) and is not
#: counted, as the review's rule says (docs/kinetics/README.md).
DERIVED_DEPENDS: dict[str, tuple[str, ...]] = {
    "rho": ("foldx", "tmax"),
    "r0": ("foldx", "cmax"),
    "doubling_time": ("foldx", "tmax"),
    "t_half_alpha": ("alpha",),
    "t_half_beta": ("beta", "fb"),
    "stein_cmax": ("foldx", "tmax", "cmax"),
    "stein_tmax": ("foldx", "tmax", "cmax"),
    "stein_auc_0_28": ("foldx", "tmax", "cmax", "alpha"),
    "auc_extrapolated_pct": ("foldx", "tmax", "cmax", "alpha"),
}
#: ``auc_extrapolated`` flags a subject when more than this share (%) of its stein_auc_0_28 lies after
#: its last sample (``auc_extrapolated_pct``). 20% is the NCA convention for the extrapolated share of
#: AUCinf: PKNCA's option ``max.aucinf.pext`` (default 20: "the maximum percent extrapolation of
#: AUCinf") and the EMA bioequivalence guideline (CPMP/EWP/QWP/1401/98 Rev. 1, 2010: AUC0-t should
#: cover at least 80% of AUC0-inf).
AUC_EXTRAP_WARN_PCT = 20.0
#: A subject is ``prior_dominated`` when the individual (SD-based) shrinkage of every estimated
#: peak parameter (foldx, tmax, cmax: what Cmax, Tmax and AUC0-28 derive from) exceeds this.
#: Individual shrinkage on the variance scale is posterior variance / omega^2 (Pharmpy
#: ``calculate_individual_shrinkage``; PopED ``shrinkage``, Combes et al. 2013 Pharm Res 30:2355);
#: for a linear-Gaussian model its population mean equals the variance-based eta shrinkage
#: 1 - Var(EBE)/omega^2, so the SD-based analogue (the scale of ``shrinkage_sd_pct``) is
#: 1 - sqrt(1 - posterior variance / omega^2). 0.5 means the EBE can move at most half as far as the
#: population spread (the posterior SD is still ~87% of the prior's): twice the 20-30% at which Savic
#: & Karlsson 2009 (AAPS J 11:558-569) find EBE-based diagnostics unreliable; requiring it of all
#: three peak parameters flags only subjects whose peak is essentially the prior's.
PRIOR_DOMINATED_SHRINKAGE = 0.5
_PEAK_PARAMS = ("foldx", "tmax", "cmax")
#: Population-fit warning thresholds (options of :class:`SteinPopulationModel`): population eta
#: shrinkage above 30% (SD-based; Savic & Karlsson 2009: EBE-based diagnostics unreliable), an RSE
#: above 50%, and a typical value / omega^2 whose mean over the last 50 burn-in iterations differs by
#: more than 5% from its mean over the 50 before AND the difference is significant by the drift test
#: of :func:`drift_test` (Welch t on batch means, two-sided, family level 0.05 Bonferroni-split over
#: the traced columns).
WARN_DEFAULTS = {"shrinkage_warn_pct": 30.0, "rse_warn_pct": 50.0, "drift_warn_pct": 5.0, "drift_window": 50,
                 "drift_alpha": 0.05}
#: batches per window of the drift test (batch means absorb the autocorrelation of the iterates)
DRIFT_BATCHES = 5


def check_option(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, not {value!r}")
    return value


def last_sample_times(t: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Last sample day used per subject (quantifiable or BLQ)."""
    return np.where(mask, t, -np.inf).max(axis=1)


def apply_peak_window(df: pl.DataFrame, t_last: np.ndarray, peak_window: str,
                      auc_window: tuple[float, float] = (0.0, 28.0)) -> pl.DataFrame:
    """Add ``t_last_sample``, ``peak_extrapolated`` (fitted peak after the last sample; null when
    there is no fitted peak) and ``peak_note``; with ``peak_window="observed"`` null the peak (and
    the AUC when its window ends after the last sample)."""
    tmax = pl.col("stein_tmax")
    tl = pl.col("t_last_sample")
    ext = pl.when(tmax.is_null() | tmax.is_nan()).then(None).otherwise(tmax > tl + 1e-9 * pl.max_horizontal(tl, 1.0))
    out = df.with_columns(pl.Series("t_last_sample", np.asarray(t_last, dtype=float))).with_columns(
        ext.alias("peak_extrapolated"))
    days = [(day_text(a) if a is not None and math.isfinite(a) else "?", day_text(b))
            for a, b in zip(out["stein_tmax"].to_list(), out["t_last_sample"].to_list())]
    kept = "reported as extrapolated (peak_window='model')" if peak_window == "model" else \
        "Cmax/Tmax not reported (peak_window='observed')"
    notes = [f"fitted peak on day {a} after the last sample (day {b}): {kept}" if e else None
             for (a, b), e in zip(days, out["peak_extrapolated"].to_list())]
    out = out.with_columns(pl.Series("peak_note", notes, dtype=pl.String))
    if peak_window == "observed":
        e = pl.col("peak_extrapolated").fill_null(False)
        out = out.with_columns(
            pl.when(e).then(None).otherwise(pl.col("stein_cmax")).alias("stein_cmax"),
            pl.when(e).then(None).otherwise(pl.col("stein_tmax")).alias("stein_tmax"),
            pl.when(e & (pl.lit(float(auc_window[1])) > tl)).then(None).otherwise(pl.col("stein_auc_0_28"))
            .alias("stein_auc_0_28"),
        )
    return out


def apply_auc_extrapolation(df: pl.DataFrame, t_last: np.ndarray, dosing, threshold: float,
                            auc_window: tuple[float, float] = (0.0, 28.0)) -> pl.DataFrame:
    """Add ``auc_extrapolated_pct`` = 100 * AUC(t_last, 28) / AUC(0, 28) of the fitted curve (0 when the
    last sample is on or after day 28; null when stein_auc_0_28 is null), ``auc_extrapolated`` (above
    ``threshold``, :data:`AUC_EXTRAP_WARN_PCT`) and ``auc_note``. Applies to ML, MAP and EBE rows alike."""
    from cartlab.kinetics.stein.curve import stein_auc
    from cartlab.kinetics.stein.params import PARAMS

    a, b = float(auc_window[0]), float(auc_window[1])
    params = {k: df[k].cast(pl.Float64).fill_null(float("nan")).to_numpy() for k in PARAMS}
    start = np.clip(np.asarray(t_last, dtype=float), a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        tail = np.where(start >= b, 0.0, stein_auc(start, b, params, dosing))
        pct = 100.0 * tail / stein_auc(a, b, params, dosing)
    pct = np.where(np.isfinite(pct), pct, np.nan)
    out = df.with_columns(pl.Series("auc_extrapolated_pct", pct).fill_nan(None))
    out = out.with_columns(pl.when(pl.col("stein_auc_0_28").is_null()).then(None)
                           .otherwise(pl.col("auc_extrapolated_pct")).alias("auc_extrapolated_pct"))
    flag = pl.col("auc_extrapolated_pct") > float(threshold)
    days = [day_text(x) if math.isfinite(x) else "?" for x in np.asarray(t_last, dtype=float)]
    notes = [f"{v:.3g}% of stein_auc_0_28 lies after the last sample (day {dd}), above {threshold:g}% "
             "(auc_extrap_warn_pct): the AUC0-28 is mostly the model's extrapolation"
             if v is not None and v > threshold else None
             for v, dd in zip(out["auc_extrapolated_pct"].to_list(), days)]
    return out.with_columns(flag.alias("auc_extrapolated"), pl.Series("auc_note", notes, dtype=pl.String))


def null_unidentified(df: pl.DataFrame, unidentified: Sequence[Sequence[str]]) -> pl.DataFrame:
    """Null each derived value of a subject that depends on one of its unidentified parameters."""
    bad = pl.Series("_unid", [list(u) for u in unidentified], dtype=pl.List(pl.String))
    out = df.with_columns(bad)
    out = out.with_columns([
        pl.when(pl.col("_unid").list.set_intersection(list(deps)).list.len() > 0).then(None)
        .otherwise(pl.col(c)).alias(c)
        for c, deps in DERIVED_DEPENDS.items() if c in df.columns
    ]).drop("_unid")
    if "auc_extrapolated_pct" in out.columns and "auc_extrapolated" in out.columns:  # flag follows its value
        gone = pl.col("auc_extrapolated_pct").is_null()
        out = out.with_columns(pl.when(gone).then(None).otherwise(pl.col(c)).alias(c)
                               for c in ("auc_extrapolated", "auc_note") if c in out.columns)
    return out


def individual_shrinkage(post_var: np.ndarray, omega2: np.ndarray) -> np.ndarray:
    """Individual eta shrinkage on the SD scale, 1 - sqrt(1 - posterior variance / omega^2) (the
    ratio clipped to [0, 1]; see :data:`PRIOR_DOMINATED_SHRINKAGE`), per subject x parameter (NaN
    where omega^2 is 0 or the posterior variance is unknown). 0 = the data determine the parameter,
    1 = the posterior is the prior."""
    om = np.asarray(omega2, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip(np.asarray(post_var, dtype=float) / np.where(om > 0, om, 1.0), 0.0, 1.0)
        return np.where(om > 0, 1.0 - np.sqrt(1.0 - r), np.nan)


def add_shrinkage(df: pl.DataFrame, shrink: np.ndarray | None, est: Sequence[str], threshold: float,
                  prior: bool) -> pl.DataFrame:
    """``shrinkage_<param>`` (SD-based, fraction) per estimated parameter, ``prior_dominated`` and a
    note. Without a prior (maximum likelihood) nothing is prior-dominated (False) and shrinkage is
    null; an unknown posterior variance gives null (not False)."""
    n = df.height
    if not prior:
        return df.with_columns(pl.lit(False).alias("prior_dominated"), pl.lit(None, dtype=pl.String)
                               .alias("prior_note"))
    sh = np.full((n, len(est)), np.nan) if shrink is None else np.asarray(shrink, dtype=float)
    cols = [pl.Series(f"shrinkage_{p}", sh[:, j]).fill_nan(None) for j, p in enumerate(est)]
    peak = [j for j, p in enumerate(est) if p in _PEAK_PARAMS]
    flags: list[bool | None] = []
    for i in range(n):
        v = sh[i, peak] if peak else np.array([])
        if v.size == 0:
            flags.append(None)
        elif np.all(v > threshold):
            flags.append(True)
        elif np.any(~np.isfinite(v)):
            flags.append(None)
        else:
            flags.append(False)
    notes = [f"prior-dominated: the shrinkage of {', '.join(est[j] for j in peak)} exceeds {threshold:g} "
             "(the data barely move the prior); Cmax, Tmax and AUC0-28 are the population's, not the subject's"
             if f else None for f in flags]
    return df.with_columns(*cols, pl.Series("prior_dominated", flags, dtype=pl.Boolean),
                           pl.Series("prior_note", notes, dtype=pl.String))


def population_warnings(summary: pl.DataFrame, trace: pl.DataFrame, n_burn: int, fim_ok: bool,
                        fim_min_eig: float | None, opts: Mapping[str, float]) -> list[str]:
    """Warnings of a population fit: information matrix not positive definite, population
    shrinkage / RSE above their thresholds, burn-in not stationary (:data:`WARN_DEFAULTS`)."""
    out = []
    if not fim_ok:
        eig = "not computed" if fim_min_eig is None else f"smallest eigenvalue {fim_min_eig:.3g}"
        out.append(f"information matrix not positive definite ({eig}): no standard errors or RSEs are reported")
    sh = opts["shrinkage_warn_pct"]
    for r in summary.filter(pl.col("shrinkage_sd_pct") > sh).iter_rows(named=True):
        out.append(f"{r['parameter']}: eta shrinkage {r['shrinkage_sd_pct']:.3g}% > {sh:g}% (SD-based): EBE-based "
                   "diagnostics and individual values of this parameter are unreliable (Savic & Karlsson 2009)")
    rl = opts["rse_warn_pct"]
    for r in summary.iter_rows(named=True):
        for col, what in (("rse_pct", "estimate"), ("omega2_rse_pct", "omega2")):
            v = r.get(col)
            if v is not None and math.isfinite(v) and v > rl:
                out.append(f"{r['parameter']}: RSE of the {what} {v:.3g}% > {rl:g}%: poorly determined")
    out += drift_warnings(trace, n_burn, opts)
    return out


def drift_test(prev: np.ndarray, last: np.ndarray, batches: int = DRIFT_BATCHES) -> tuple[float, float]:
    """Welch t statistic and its degrees of freedom for the difference of the means of two windows of
    a trace, each split into ``batches`` batch means (the batch means of an autocorrelated chain are
    nearly independent: the batch-means SE of MCMC output). A stationary trace gives |t| of the size
    of a t variate; a trace still moving gives a large |t|."""
    a = np.asarray(prev, dtype=float)
    b = np.asarray(last, dtype=float)
    ma = a[: a.size // batches * batches].reshape(batches, -1).mean(axis=1)
    mb = b[: b.size // batches * batches].reshape(batches, -1).mean(axis=1)
    va, vb = ma.var(ddof=1) / batches, mb.var(ddof=1) / batches
    se2 = va + vb
    diff = mb.mean() - ma.mean()
    if se2 <= 0:
        return (0.0 if diff == 0 else math.copysign(math.inf, diff)), float(2 * (batches - 1))
    df = se2**2 / ((va**2 + vb**2) / (batches - 1)) if va > 0 and vb > 0 else float(batches - 1)
    return float(diff / math.sqrt(se2)), float(df)


def drift_warnings(trace: pl.DataFrame, n_burn: int, opts: Mapping[str, float]) -> list[str]:
    """A burn-in warning for each traced value (typical value, omega^2, sigma) whose mean over the last
    ``drift_window`` burn-in iterations differs from its mean over the ``drift_window`` before by more
    than ``drift_warn_pct`` % AND by more than Monte-Carlo noise: |t| of :func:`drift_test` above the
    two-sided ``drift_alpha`` quantile, Bonferroni-split over the traced values. Window means of a
    weakly identified omega^2 (high shrinkage) differ by more than 5% from noise alone (review 39 B2):
    the t test tells that noise apart from a trace still moving."""
    from scipy.stats import t as student_t

    w, lim = int(opts["drift_window"]), opts["drift_warn_pct"]
    alpha = float(opts.get("drift_alpha", WARN_DEFAULTS["drift_alpha"]))
    out: list[str] = []
    cols = [c for c in trace.columns if c != "iteration"]
    if not cols or trace.height < n_burn or n_burn < 2 * w or w < 2 * DRIFT_BATCHES:
        return out
    prev, last = trace.slice(n_burn - 2 * w, w), trace.slice(n_burn - w, w)
    for c in cols:
        a, b = prev[c].mean(), last[c].mean()
        if a is None or b is None or not a:
            continue
        ch = 100 * abs(b - a) / abs(a)
        if ch <= lim:
            continue
        tstat, df = drift_test(prev[c].to_numpy(), last[c].to_numpy())
        crit = float(student_t.ppf(1 - alpha / (2 * len(cols)), df))
        if abs(tstat) > crit:
            out.append(f"{c}: its mean moved {ch:.3g}% between the last two windows of {w} burn-in iterations "
                       f"(> {lim:g}%), more than Monte-Carlo noise (batch-means t {tstat:.3g}, |t| > {crit:.3g}): "
                       "SAEM had not reached its stationary phase at the end of the burn-in; increase n_burn "
                       "and compare n_starts")
    return out
