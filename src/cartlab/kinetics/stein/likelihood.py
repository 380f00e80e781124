"""The likelihood of the Stein model on prepared data: log-concentrations with additive normal error
(Stein's "constant error model in log scale"), Beal's M3 term for censored samples, and the
imputation of censored values from their truncated normal (Samson, Lavielle & Mentre 2006)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import special

from cartlab.kinetics.stein.curve import stein_log_curve
from cartlab.kinetics.stein.data import _Data
from cartlab.kinetics.stein.params import _LOG_2PI, PARAMS


class _Evaluator:
    """Log-likelihood of individual log-parameters ``phi`` (..., N, P) on the data (N, J)."""

    def __init__(self, data: _Data, est: Sequence[str], fixed: Mapping[str, float], extras: Mapping[str, float]):
        self.d = data
        self.est = list(est)
        self.fixed = dict(fixed)
        self.extras = dict(extras)
        self.quant = data.mask & (data.cens == 0)
        self.censd = data.mask & (data.cens != 0)
        self.sign = np.where(data.cens >= 0, 1.0, -1.0)
        self.nobs = data.mask.sum(axis=1)
        self.has_cens = bool(self.censd.any())

    def params(self, phi: np.ndarray) -> dict[str, np.ndarray]:
        shape = phi.shape[:-1]
        out = {}
        for p in PARAMS:
            if p in self.est:
                out[p] = np.exp(phi[..., self.est.index(p)])
            else:
                out[p] = np.full(shape, float(self.fixed[p]))
        for k, v in self.extras.items():
            out[k] = np.full(shape, float(v))
        return out

    def logf(self, phi: np.ndarray) -> np.ndarray:
        return stein_log_curve(self.d.t, self.params(phi), self.d.dosing)

    def loglik_terms(self, logf: np.ndarray, sigma: float | np.ndarray) -> np.ndarray:
        sigma = np.asarray(sigma, dtype=float)
        s = sigma[..., None, None] if sigma.ndim else sigma
        with np.errstate(invalid="ignore", over="ignore"):
            r = (self.d.logy - logf) / s
            llq = -0.5 * r * r - np.log(s) - 0.5 * _LOG_2PI
            ll = np.where(self.quant, llq, 0.0)
            if self.has_cens:
                llc = special.log_ndtr(self.sign * r)
                ll = np.where(self.censd, llc, ll)
        return np.where(np.isnan(ll), -np.inf, ll)

    def loglik(self, phi: np.ndarray, sigma: float | np.ndarray) -> np.ndarray:
        return self.loglik_terms(self.logf(phi), sigma).sum(axis=-1)

    def impute(self, logf: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
        """Complete-data log-concentrations: censored ones drawn from their truncated normal."""
        y = np.broadcast_to(self.d.logy, logf.shape).copy()
        if not self.has_cens:
            return y
        m = np.broadcast_to(self.censd, logf.shape)
        lf = logf[m]
        sg = np.broadcast_to(self.sign, logf.shape)[m]
        a = sg * (y[m] - lf) / sigma
        u = special.log_ndtr(a) + np.log(rng.uniform(1e-300, 1.0, size=lf.shape))
        z = sg * special.ndtri_exp(u)
        y[m] = lf + sigma * z
        return y

