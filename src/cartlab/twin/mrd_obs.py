"""Observation model of the binomial rows (marrow / blood blast differentials, flow MRD) shared by the
twin's simulator (:mod:`cartlab.twin.observe`) and its fit (:mod:`cartlab.twin.fit`), review 40 A1.

* **Blast differentials** (BMBLAST 500 cells, PBBLAST 100 cells): a binomial count of the latent
  percentage (``twin/criteria/schedule_v1.yaml`` noise, design §2.1, assumed).
* **Flow MRD** (MRDFCM, a fraction of 500,000 events): a different method from the morphological
  differential (flow cytometry on a different denominator, gating, far more cells), so the twin's
  MRD, ``f_flow`` x the latent marrow blasts, meets the measured value with a **between-method error**:
  a log-normal factor of SD ``between_method_log_sd`` (schedule YAML; 0.3 on the log scale, status
  assumed, no cited value) on the fraction, then the binomial count of 500,000 events. Without it the
  fit scored MRDFCM as a 500,000-cell count of 0.65 x the 500-cell BMBLAST it starts from and called
  45 of 50 of its own simulated patients "not described" (review 40 A1).

  Fit likelihood of a quantified MRDFCM row ``y`` (fraction) at the twin's ``f``: log-normal,
  ``log y ~ N(log f, s^2)``, ``s^2 = sd_method^2 + (1 - y) / (n y)`` (the binomial counting variance of
  the observed fraction on the log scale, delta method; y >= the LLOQ 1e-4 means >= 50 events
  counted, where the approximation holds). Below the LLOQ: Beal M3, ``P(Y < L) = Phi((log L - log f)
  / s_L)`` with ``s_L^2 = sd_method^2 + (1 - L) / (n L)``. Standardised residual ``(log y - log f) / s``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

__all__ = ["METHOD_LOG_SD", "binomial_loglik", "binomial_residual", "method_sd"]

_LOG_FLOOR = 1e-12


def _method_sd() -> dict[str, float]:
    from cartlab.twin.observe import load_schedule

    return {p: float(spec["between_method_log_sd"]) for p, spec in load_schedule().noise.items()
            if spec.get("kind") == "binomial" and spec.get("between_method_log_sd") is not None}


#: param -> between-method SD on the log scale (schedule_v1.yaml ``between_method_log_sd``; MRDFCM 0.3)
METHOD_LOG_SD: dict[str, float] = _method_sd()


def _scale(p) -> np.ndarray | float:
    """Value unit of a binomial param: MRDFCM a fraction, the blast differentials percentages."""
    return np.where(np.asarray(p) == "MRDFCM", 1.0, 100.0)


def method_sd(y: np.ndarray, cells: float | np.ndarray, sd_method: float) -> np.ndarray:
    """Total log-scale SD of a method-error row of observed fraction ``y`` (see module docstring)."""
    yy = np.clip(np.nan_to_num(np.asarray(y, float), nan=1.0), 0.5 / np.asarray(cells, float), 1.0)
    return np.sqrt(sd_method ** 2 + (1.0 - yy) / (np.asarray(cells, float) * yy))


def binomial_loglik(p: str, f: np.ndarray, y: np.ndarray, lim: np.ndarray, c: np.ndarray, s: float) -> np.ndarray:
    """(B, n) log-likelihood of the rows of binomial param ``p`` (values ``y``, limits ``lim``, censor
    flags ``c``: -1 below the limit) at the twin's predictions ``f`` (B, n), ``s`` cells counted."""
    scale = 1.0 if p == "MRDFCM" else 100.0
    if p in METHOD_LOG_SD:   # between-method error (review 40 A1): log-normal with the counting variance
        sm = METHOD_LOG_SD[p]
        lf = np.log(np.maximum(f / scale, _LOG_FLOOR))
        yq = np.nan_to_num(y, nan=1.0) / scale
        sq = method_sd(yq, s, sm)
        r = (np.log(np.maximum(yq, 0.5 / s)) - lf) / sq
        llq = -0.5 * r * r - np.log(sq) - 0.5 * math.log(2 * math.pi)
        lq = np.nan_to_num(lim, nan=1.0) / scale
        sl = method_sd(lq, s, sm)
        llc = special.log_ndtr((np.log(np.maximum(lq, 0.5 / s)) - lf) / sl)
        return np.where(c == 0, llq, llc)
    k = np.round(np.nan_to_num(y) / scale * s)
    pr = np.clip(f / scale, 1e-9, 1 - 1e-9)
    llq = (special.gammaln(s + 1) - special.gammaln(k + 1) - special.gammaln(s - k + 1)
           + k * np.log(pr) + (s - k) * np.log1p(-pr))
    kl = np.ceil(np.nan_to_num(lim) / scale * s) - 1  # below the limit: P(K <= ceil(limit*s) - 1)
    with np.errstate(divide="ignore"):
        llc = np.log(np.maximum(special.bdtr(np.maximum(kl, 0), int(s), pr), 1e-300))
    return np.where(c == 0, llq, llc)


def binomial_residual(param: np.ndarray, value: np.ndarray, ipred: np.ndarray, cells: np.ndarray,
                      rows: np.ndarray) -> np.ndarray:
    """The standardised residual of binomial rows (blast percentages counted on ``cells`` cells):
    the normal quantile of the observed count's mid-p tail probability under the twin,
    Phi^-1(P(K < k) + P(K = k) / 2) (the quantile residual, Dunn & Smyth, J Comput Graph Stat
    1996;5:236, mid-p form), on the scale of the other parameters' residuals (about N(0, 1) when the
    model describes the rows). Rows of a param with a between-method error (MRDFCM): (log y - log f) /
    s of the log-normal likelihood above. NaN on the other rows."""
    from scipy import stats

    out = np.full(value.shape, np.nan)
    if not rows.any():
        return out
    mrd = rows & np.isin(param, list(METHOD_LOG_SD))
    bin_rows = rows & ~mrd
    if bin_rows.any():
        scale = _scale(param[bin_rows])
        n = cells[bin_rows].astype(int)
        k = np.round(np.nan_to_num(value[bin_rows]) / scale * n)
        p = np.clip(ipred[bin_rows] / scale, 1e-12, 1 - 1e-12)
        u = stats.binom.cdf(k - 1, n, p) + 0.5 * stats.binom.pmf(k, n, p)
        out[bin_rows] = stats.norm.ppf(np.clip(u, 1e-15, 1 - 1e-15))
    for prm in np.unique(param[mrd]):
        j = mrd & (param == prm)
        scale = 1.0 if prm == "MRDFCM" else 100.0
        y, n = value[j] / scale, cells[j].astype(float)
        s = method_sd(y, n, METHOD_LOG_SD[prm])
        with np.errstate(divide="ignore", invalid="ignore"):
            out[j] = (np.log(np.maximum(y, 0.5 / n)) - np.log(np.maximum(ipred[j] / scale, _LOG_FLOOR))) / s
    return out
