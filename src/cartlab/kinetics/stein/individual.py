"""Per-subject fits of the Stein 2019 model (:class:`SteinModel`): maximum likelihood on the log scale,
Beal M3 for BLQ samples, an optional population prior (MAP), standard errors from the Hessian."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy import optimize

from cartlab.kinetics.stein.base import _SteinFitter
from cartlab.kinetics.stein.curve import derived_quantities, stein_curve, stein_log_curve
from cartlab.kinetics.stein.data import _Data, _observations_frame, _with_observed_peaks
from cartlab.kinetics.stein.likelihood import _Evaluator
from cartlab.kinetics.stein.params import _BOUNDS, _SIGMA_BOUNDS, PARAMS, STEIN_2019, PopulationParams, Progress
from cartlab.kinetics.stein.plots import fits_figure

__all__ = ["SteinModel"]


def _data_start(t: np.ndarray, ly: np.ndarray, tpeak: float | None = None) -> dict[str, float]:
    """Rough starting values from one subject's quantifiable samples (peak time overridable)."""
    if t.size == 0:
        return dict(STEIN_2019.theta)
    i = int(np.argmax(ly))
    tmax = max(float(t[i]) if tpeak is None else float(tpeak), 1.0)
    cmax = float(math.exp(ly[i]))
    pre = (t < t[i]) & (t > 0)
    rho = 0.9
    if pre.any():
        j = int(np.flatnonzero(pre)[0])
        if t[i] > t[j]:
            rho = float(np.clip((ly[i] - ly[j]) / (t[i] - t[j]), 0.2, 3.0))
    foldx = float(np.clip(math.exp(min(rho * tmax, 20.0)), 5.0, 1e8))
    post = np.flatnonzero(t > t[i])
    alpha = 0.16
    if post.size:
        j = post[min(1, post.size - 1)]
        alpha = float(np.clip((ly[i] - ly[j]) / (t[j] - t[i]), 0.02, 2.0))
    fb = 0.01
    if post.size >= 3:
        fb = float(np.clip(math.exp(ly[post[-1]] - ly[i]) * 2, 1e-5, 0.3))
    return {"foldx": foldx, "tmax": tmax, "cmax": cmax, "alpha": alpha, "fb": fb, "beta": 0.01}


def _swap_phases(vals: dict[str, float]) -> dict[str, float]:
    """Label switching: (FB, alpha, beta) and (1-FB, beta, alpha) give the same curve."""
    v = dict(vals)
    if v["beta"] > v["alpha"] and v["fb"] < 1:
        v["alpha"], v["beta"], v["fb"] = vals["beta"], vals["alpha"], 1.0 - vals["fb"]
    return v


@dataclass
class _SubjectFit:
    subject_id: str
    est: list[str]
    values: dict[str, float]  # natural scale, all PARAMS
    sigma: float
    sigma_estimated: bool
    cov_log: np.ndarray | None  # over est (+ log sigma)
    nll: float
    n_obs: int
    n_blq: int
    converged: bool
    message: str


def _fd_hessian(f, x: np.ndarray, h: float = 1e-3) -> np.ndarray:
    """Central finite-difference Hessian of a scalar function."""
    x = np.asarray(x, dtype=float)
    k = x.size
    H = np.zeros((k, k))
    f0 = f(x)
    E = np.eye(k) * h
    fp = np.array([f(x + E[i]) for i in range(k)])
    fm = np.array([f(x - E[i]) for i in range(k)])
    for i in range(k):
        H[i, i] = (fp[i] - 2 * f0 + fm[i]) / h**2
        for j in range(i + 1, k):
            v = (f(x + E[i] + E[j]) - f(x + E[i] - E[j]) - f(x - E[i] + E[j]) + f(x - E[i] - E[j])) / (4 * h**2)
            H[i, j] = H[j, i] = v
    return H


class SteinModel(_SteinFitter):
    """Per-subject maximum-likelihood fits of the Stein 2019 model (log scale, Beal M3 for BLQ).

    Parameters
    ----------
    sigma: residual SD on the log scale; ``None`` (default) estimates it per subject.
    fixed: ``{parameter: value}`` held fixed (not estimated), e.g. ``{"beta": 0.0032}``.
    prior: a :class:`PopulationParams` (e.g. ``STEIN_2019``) for MAP fits of sparse data.
    blq: ``"m3"`` (default), ``"drop"`` (M1) or ``"half"`` (BLQ set to LLOQ/2).
    blq_below_lloq: a reported value below its LLOQ is treated as BLQ.
    dose_handling: ``"first"`` (default) or ``"superpose"`` (see :mod:`cartlab.kinetics.stein`).
    ftoci, fster, tlag: fixed model extensions (defaults: no effect, no lag).
    param: the observation parameter of a Study (``CARCOPY``).

    Fitted attributes (after :meth:`fit`, which returns the model)
    ----------------------------------------------------------------
    params_: one row per subject: ``subject_id``, the six parameters, ``tlag``, ``ftoci``, ``fster``
        and ``sigma`` (``stein_curve(t, model.params_, model.dosing_)`` draws the fitted curves).
    individual_: one row per subject: parameters, derived quantities (rho, r0, doubling_time,
        t_half_alpha, t_half_beta, car_cmax, car_tmax, car_auc_0_28 -- analytical, from the fitted
        curve), the observed peak beside them (:data:`~cartlab.kinetics.stein.PEAK_COLUMNS`),
        sigma, n_obs, n_blq, nll, aic (log-scale likelihood), converged, message.
    observations_: every observation used: subject_id, time, conc (null when BLQ), lloq, blq,
        ipred (the fitted curve), iwres ((log conc - log ipred) / sigma; null when BLQ) and the
        input row's provenance (source, src_file, src_row).
    subject_ids_, dosing_, dropped_: the subjects, their dosing, the input rows not used.
    summary: (property) one row per subject and parameter with SE, RSE and 95% CI.

    Optimisation: L-BFGS-B from five starts (data-driven, published typical values, earlier peak
    times, a slower contraction), Nelder-Mead polish, log-parameter bounds. ``converged`` requires
    a ~zero gradient, a positive-definite Hessian and no estimate at a bound. When the fitted peak
    coincides with a sampling time the likelihood has a kink in ``tmax`` (that sample switches
    between the rising and the falling branch): the optimum is accepted if it is a one-sided
    minimum in ``tmax``; ``tmax`` then gets no SE (the others come from the Hessian with ``tmax``
    held) and the message says so. (FB, alpha, beta) and (1-FB, beta, alpha) give the same curve;
    estimates are reported with alpha >= beta.
    """

    def __init__(
        self,
        *,
        sigma: float | None = None,
        fixed: Mapping[str, float] | None = None,
        prior: PopulationParams | None = None,
        blq: str = "m3",
        blq_below_lloq: bool = True,
        dose_handling: str = "first",
        ftoci: float = 1.0,
        fster: float = 1.0,
        tlag: float = 0.0,
        param: str = "CARCOPY",
    ):
        self.sigma = sigma
        self.fixed = dict(fixed or {})
        unknown = set(self.fixed) - set(PARAMS)
        if unknown:
            raise ValueError(f"unknown parameters in fixed: {sorted(unknown)}")
        self.prior = prior
        self._data_options(blq=blq, blq_below_lloq=blq_below_lloq, dose_handling=dose_handling, ftoci=ftoci,
                           fster=fster, tlag=tlag, param=param)

    def fit(self, data: Any, *, doses: pl.DataFrame | None = None,
            covariates: pl.DataFrame | None = None, progress: Progress | None = None) -> SteinModel:
        """Fit every subject of ``data`` (a cartlab Study or a plain frame; see
        :mod:`cartlab.kinetics.stein`) and return the model, fitted.

        ``progress(stage, done, total)`` is called after each subject."""
        d = self._prepare(data, doses, covariates)
        est = [p for p in PARAMS if p not in self.fixed]
        fits = []
        for i in range(d.n):
            fits.append(self._fit_one(d.subset([i]), est))
            if progress is not None:
                progress(f"subject {d.ids[i]}", i + 1, d.n)
        self._fits = fits
        self._set_data(d)
        p = self._params(range(d.n))
        sigma = np.array([f.sigma for f in fits])
        self.params_ = pl.DataFrame({"subject_id": self.subject_ids_,
                                     **{n: np.broadcast_to(p[n], (d.n,)) for n in (*PARAMS, "tlag", "ftoci", "fster")},
                                     "sigma": sigma})
        self.observations_ = _observations_frame(d, stein_log_curve(d.t, p, d.dosing), sigma)
        self.individual_ = _with_observed_peaks(self._individual(p), self.observations_)
        return self

    def _fit_one(self, d: _Data, est: list[str]) -> _SubjectFit:
        ev = _Evaluator(d, est, self.fixed, self.extras)
        est_sigma = self.sigma is None
        k = len(est)
        prior = self.prior
        if prior is not None:
            pm = np.array([math.log(prior.theta[p]) for p in est])
            pv = np.array([max(float(prior.omega2.get(p, 0.0)), 1e-12) for p in est])

        def nll(x):
            sig = math.exp(x[k]) if est_sigma else self.sigma
            v = -float(ev.loglik(x[None, :k], sig)[0])
            if prior is not None:
                v += 0.5 * float(np.sum((x[:k] - pm) ** 2 / pv))
            return v if np.isfinite(v) else 1e300

        lo = [math.log(_BOUNDS[p][0]) for p in est]
        hi = [math.log(_BOUNDS[p][1]) for p in est]
        if est_sigma:
            lo.append(math.log(_SIGMA_BOUNDS[0]))
            hi.append(math.log(_SIGMA_BOUNDS[1]))
        bounds = list(zip(lo, hi))
        q = d.mask[0] & (d.cens[0] == 0)
        tq, lyq = d.t[0][q], d.logy[0][q]
        s0 = _data_start(tq, lyq)
        starts = [s0, dict(prior.theta if prior is not None else STEIN_2019.theta)]
        for f in (0.8, 0.6):  # the peak usually lies between samples, before the highest one
            starts.append(_data_start(tq, lyq, tpeak=s0["tmax"] * f))
        alt = dict(s0)
        alt.update(alpha=s0["alpha"] * 0.5, fb=min(s0["fb"] * 5, 0.5), beta=0.05)
        starts.append(alt)
        best = None
        for s in starts:
            x0 = [math.log(float(np.clip(s[p], *_BOUNDS[p]))) for p in est]
            if est_sigma:
                x0.append(math.log(0.5))
            x0 = np.clip(np.array(x0), np.array(lo) + 1e-6, np.array(hi) - 1e-6)
            r = optimize.minimize(nll, x0, method="L-BFGS-B", bounds=bounds,
                                  options={"maxiter": 2000})
            if best is None or r.fun < best.fun:
                best = r
        r = optimize.minimize(nll, best.x, method="Nelder-Mead", bounds=bounds,
                              options={"maxiter": 6000, "maxfev": 12000, "xatol": 1e-7, "fatol": 1e-10,
                                       "adaptive": True})
        if r.fun > best.fun:
            r = best
        r2 = optimize.minimize(nll, r.x, method="L-BFGS-B", bounds=bounds)
        if r2.fun < r.fun:
            r = r2
        x = np.asarray(r.x, dtype=float)
        vals = {p: float(self.fixed[p]) for p in self.fixed}
        vals.update({p: math.exp(x[i]) for i, p in enumerate(est)})
        if {"alpha", "beta", "fb"} <= set(est):
            sw = _swap_phases(vals)
            if sw != vals:
                vals = sw
                for i, p in enumerate(est):
                    x[i] = math.log(min(max(vals[p], _BOUNDS[p][0]), _BOUNDS[p][1]))
        sig = math.exp(x[k]) if est_sigma else float(self.sigma)
        fval = nll(x)
        cov = None
        converged = bool(np.isfinite(fval))
        msg = ""
        h = 1e-5
        # Is the peak at a sampling time? There the likelihood has a kink in tmax (the sample moves
        # from the rising to the falling branch), so the optimum can legitimately sit on it.
        free = list(range(x.size))
        if "tmax" in est:
            tpk = self.extras["tlag"] + vals["tmax"]
            ts = d.t[0][d.mask[0]]
            if np.any(np.abs(ts - tpk) < 1e-6 * max(1.0, tpk)):
                it = est.index("tmax")
                e = np.eye(x.size)[it]
                d_minus = (fval - nll(x - h * e)) / h
                d_plus = (nll(x + h * e) - fval) / h
                if d_minus > 1e-2 or d_plus < -1e-2:
                    converged = False
                    msg += "; not a minimum in tmax"
                free.remove(it)
                msg += "; peak at a sampling time (non-differentiable optimum in tmax): no SE for tmax"
        E = np.eye(x.size)
        grad = np.array([(nll(x + h * E[i]) - nll(x - h * E[i])) / (2 * h) for i in free])
        if grad.size and np.abs(grad).max() > 1e-2:
            converged = False
            msg += f"; gradient not ~0 (max |g| = {np.abs(grad).max():.3g})"

        def nll_free(z):
            xx = x.copy()
            xx[free] = z
            return nll(xx)

        try:
            H = _fd_hessian(nll_free, x[free], h=1e-3)
            w = np.linalg.eigvalsh(H)
            if np.all(np.isfinite(H)) and w.min() > 0:
                cov = np.full((x.size, x.size), np.nan)
                cov[np.ix_(free, free)] = np.linalg.inv(H)
            else:
                converged = False
                msg += "; Hessian not positive definite"
        except np.linalg.LinAlgError:
            converged = False
            msg += "; Hessian singular"
        at_bound = np.any(np.isclose(x, lo, atol=1e-4) | np.isclose(x, hi, atol=1e-4))
        if at_bound:
            converged = False
            msg += "; an estimate is at its bound"
        return _SubjectFit(
            subject_id=d.ids[0], est=est, values=vals, sigma=sig, sigma_estimated=est_sigma,
            cov_log=cov, nll=fval, n_obs=int(d.mask.sum()), n_blq=int((d.mask & (d.cens != 0)).sum()),
            converged=converged, message=msg.strip("; "),
        )

    # -- results ------------------------------------------------------------------------------
    def _params(self, idx: Sequence[int]) -> dict[str, np.ndarray]:
        d = {p: np.array([self._fits[i].values[p] for i in idx]) for p in PARAMS}
        d.update(self.extras)
        return d

    @property
    def summary(self) -> pl.DataFrame:
        """One row per subject and parameter: estimate, SE (delta method), RSE%, 95% CI (from the
        log scale), ``fixed``, ``converged``; ``iiv`` is null (no population)."""
        self._fitted()
        rows = []
        for f in self._fits:
            names = f.est + (["sigma"] if f.sigma_estimated else [])
            se_log = np.sqrt(np.diag(f.cov_log)) if f.cov_log is not None else np.full(len(names), np.nan)
            for p in PARAMS + ("sigma",):
                v = f.sigma if p == "sigma" else f.values[p]
                if p in names:
                    s = float(se_log[names.index(p)])
                    with np.errstate(over="ignore"):  # an unidentifiable parameter: SE(log) huge, CI to inf
                        lo, hi = v * np.exp(-1.96 * s), v * np.exp(1.96 * s)
                    rows.append((f.subject_id, p, v, v * s, 100 * s, float(lo), float(hi), False, f.converged))
                else:
                    rows.append((f.subject_id, p, v, None, None, None, None, True, f.converged))
        return pl.DataFrame(
            rows, orient="row",
            schema={"subject_id": pl.String, "parameter": pl.String, "estimate": pl.Float64,
                    "se": pl.Float64, "rse_pct": pl.Float64, "ci_lower": pl.Float64,
                    "ci_upper": pl.Float64, "fixed": pl.Boolean, "converged": pl.Boolean},
        ).with_columns(
            [pl.col(c).fill_nan(None) for c in ("se", "rse_pct", "ci_lower", "ci_upper")]
        ).with_columns(pl.lit(None, dtype=pl.Float64).alias("iiv"))

    def _individual(self, p: dict[str, np.ndarray]) -> pl.DataFrame:
        """The per-subject table without the observed peaks (see ``individual_``)."""
        fits = self._fits
        der = derived_quantities(p, self._data.dosing)
        k = [len(f.est) + int(f.sigma_estimated) for f in fits]
        cols = {"subject_id": self.subject_ids_, **{n: p[n] for n in PARAMS}}
        cols.update({n: np.asarray(v) for n, v in der.items()})
        cols.update(
            sigma=[f.sigma for f in fits],
            n_obs=[f.n_obs for f in fits],
            n_blq=[f.n_blq for f in fits],
            nll=[f.nll for f in fits],
            aic=[2 * f.nll + 2 * kk for f, kk in zip(fits, k)],
            converged=[f.converged for f in fits],
            message=[f.message for f in fits],
        )
        return pl.DataFrame(cols)

    def predict(self, times: Any, subject: Any = None) -> pl.DataFrame:
        """Fitted curves at ``times`` (days from the first infusion): subject_id, time, pred."""
        idx = self._idx(subject)
        times = np.asarray(times, dtype=float)
        p = self._params(idx)
        c = stein_curve(np.broadcast_to(times, (len(idx), times.size)), p, self._data.dosing[idx])
        return pl.DataFrame({
            "subject_id": np.repeat([self.subject_ids_[i] for i in idx], times.size),
            "time": np.tile(times, len(idx)),
            "pred": c.ravel(),
        })

    def plot(self, subject: Any = None, max_subjects: int = 12, figsize=None):
        """Observed (BLQ as open triangles at the LLOQ) vs fitted curve per subject; log scale."""
        ids = [self.subject_ids_[i] for i in self._idx(subject)[:max_subjects]]
        return fits_figure(self._data.obs, ids, self.predict, figsize)
