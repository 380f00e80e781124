"""Per-subject fits of the Stein 2019 model (:class:`SteinModel`): maximum likelihood on the log scale,
Beal M3 for BLQ samples, an optional population prior (MAP), standard errors from the Hessian."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy import optimize, special, stats

from cartlab._days import day_text
from cartlab.kinetics.stein.base import _SteinFitter
from cartlab.kinetics.stein.curve import derived_quantities, stein_curve, stein_log_curve
from cartlab.kinetics.stein.data import _Data, _observations_frame, _with_observed_peaks
from cartlab.kinetics.stein.flags import (
    AUC_EXTRAP_WARN_PCT,
    DERIVED_IF_UNIDENTIFIED,
    PRIOR_DOMINATED_SHRINKAGE,
    add_shrinkage,
    check_option,
    individual_shrinkage,
    null_unidentified,
)
from cartlab.kinetics.stein.likelihood import _Evaluator
from cartlab.kinetics.stein.params import _BOUNDS, _SIGMA_BOUNDS, PARAMS, STEIN_2019, PopulationParams, Progress
from cartlab.kinetics.stein.plots import fits_figure

__all__ = ["RSE_LIMIT_PCT", "SE_DF_CORRECTIONS", "SteinModel"]

#: Standard errors of a maximum-likelihood fit with sigma estimated (review 41 F6): ``"residual"``
#: (default) scales the inverse-Hessian covariance of the structural parameters by n/(n - p) (n
#: quantifiable samples, p free structural parameters: the ML residual variance RSS/n becomes the
#: unbiased RSS/(n - p), as nonlinear least squares -- R nls, scipy curve_fit(absolute_sigma=False) --
#: report it) and takes their 95% CIs from t(n - p) quantiles. The reported sigma stays the ML
#: sqrt(RSS/n), with its ML SE and a 1.96 CI (nls and curve_fit define no SE for sigma; review41_diff2
#: F10); ``iwres`` divides by that ML sigma. ``"none"``: the ML covariance and z = 1.96 (cartlab before 41). With sigma
#: held (fixed or the prior's) or under a prior (MAP) the residual scale is not estimated from the
#: residuals alone and no correction applies.
SE_DF_CORRECTIONS: tuple[str, ...] = ("residual", "none")

#: a maximum-likelihood fit (no prior) with a parameter RSE above this (percent; 100 x SE of the log
#: parameter, so 500% is a 95% CI wider than a factor 18,000 either side) is not determined by the
#: data: ``converged`` false, the message names the parameter
RSE_LIMIT_PCT = 500.0


def _data_start(t: np.ndarray, ly: np.ndarray, tpeak: float | None = None) -> dict[str, float]:
    """Starting values from one subject's quantifiable samples (times ``t``, log levels ``ly``).

    ``tmax`` at the observed peak time (or ``tpeak``), ``cmax`` at the observed peak; the expansion
    rate is the least-squares slope of log C over the rising samples (day > 0 up to the peak); the
    contraction by curve stripping: ``beta`` and ``fb`` from a log-linear fit of the last third of
    the post-peak samples, ``alpha`` from the earlier ones after the slow phase is subtracted."""
    if t.size == 0:
        return dict(STEIN_2019.theta)
    i = int(np.argmax(ly))
    t_pk = float(t[i])
    tmax = max(t_pk if tpeak is None else float(tpeak), 0.5)
    cmax = float(math.exp(ly[i]))
    rho = 0.9
    pre = (t > 0) & (t <= t_pk)
    if pre.sum() >= 2:
        slope = float(np.polyfit(t[pre], ly[pre], 1)[0])
        if slope > 0:
            rho = float(np.clip(slope, 0.05, 5.0))
    foldx = float(np.clip(math.exp(min(rho * tmax, 20.0)), 2.0, 1e8))
    post = t > t_pk
    tp, yp = t[post] - t_pk, ly[post]
    alpha, fb, beta = 0.16, 0.01, 0.01
    if tp.size:
        j = min(1, tp.size - 1)
        alpha = float(np.clip((ly[i] - yp[j]) / tp[j], 0.02, 2.0))
    if tp.size >= 4:
        k = max(2, tp.size // 3)
        slope, icpt = (float(v) for v in np.polyfit(tp[-k:], yp[-k:], 1))
        if slope < 0 and icpt < ly[i]:
            beta = float(np.clip(-slope, 1e-5, 1.0))
            fb = float(np.clip(math.exp(icpt - ly[i]), 1e-6, 0.5))
            fast = np.exp(yp[:-k]) - cmax * fb * np.exp(-beta * tp[:-k])
            ok = fast > 0
            if ok.any():
                z = np.log(fast[ok] / (cmax * (1.0 - fb)))
                a = -float(np.sum(tp[:-k][ok] * z) / np.sum(tp[:-k][ok] ** 2))
                if a > beta:
                    alpha = float(np.clip(a, 1e-3, 5.0))
    return {"foldx": foldx, "tmax": tmax, "cmax": cmax, "alpha": alpha, "fb": fb, "beta": beta}


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
    values: dict[str, float]  # natural scale, all PARAMS (NaN when not fitted)
    sigma: float
    sigma_estimated: bool
    cov_log: np.ndarray | None  # over est (+ log sigma)
    nll: float
    n_obs: int
    n_blq: int
    converged: bool
    message: str
    fitted: bool = True
    unidentified: tuple[str, ...] = ()  # parameters the data do not determine (maximum likelihood)
    df_resid: int | None = None  # residual degrees of freedom of the SEs (se_df_correction='residual')


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


def _ci(p: str, v: float, se_log: float, z: float = 1.96) -> tuple[float, float]:
    """95% CI of a parameter from the SE of its log: on the log scale, except ``fb`` (a fraction in
    (0, 1)), whose CI is taken on the logit scale, SE(logit fb) = SE(log fb) / (1 - fb), so that it
    stays inside (0, 1). ``z``: the quantile (1.96, or t(df) 0.975 under se_df_correction='residual')."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # unidentifiable: CI to the limits
        if p == "fb":
            lg, s = math.log(v / (1.0 - v)), se_log / (1.0 - v)
            return float(special.expit(lg - z * s)), float(special.expit(lg + z * s))
        return float(v * np.exp(-z * se_log)), float(v * np.exp(z * se_log))


def _optimiser_note(r: Any, method: str) -> str:
    return f"{method}: {str(getattr(r, 'message', '')).strip() or 'no message'}"


class SteinModel(_SteinFitter):
    """Per-subject maximum-likelihood fits of the Stein 2019 model (log scale, Beal M3 for BLQ).

    Parameters
    ----------
    sigma: residual SD on the log scale. ``None`` (default): estimated per subject by maximum
        likelihood; with a ``prior``, held at the prior's residual SD (``prior.sigma``, 0.56 for
        :data:`STEIN_2019`), as empirical-Bayes (MAP/POSTHOC) fits do. ``"estimate"``: estimated
        also under a prior. A number: held at that value.
    fixed: ``{parameter: value}`` held fixed (not estimated), e.g. ``{"beta": 0.0032}``; ``"sigma"``
        may be one of them (the same as ``sigma=value``).
    prior: a :class:`PopulationParams` (e.g. ``STEIN_2019``) for MAP fits of sparse data.
    blq: ``"m3"`` (default), ``"drop"`` (M1) or ``"half"`` (BLQ set to LLOQ/2).
    blq_below_lloq: a reported value below its LLOQ is treated as BLQ.
    dose_handling: ``"first"`` (default) or ``"superpose"`` (see :mod:`cartlab.kinetics.stein`).
    ftoci, fster, tlag: fixed model extensions (defaults: no effect, no lag). ``ftoci``/``fster``
        ``None`` (default): the prior's (``STEIN_2019``: 1.2 / 1.0) when a ``prior`` is given, so that
        the prior's typical curve is Stein's, else 1 (no effect); ``comedication_rule_`` says which.
    se_df_correction: ``"residual"`` (default) or ``"none"``: see :data:`SE_DF_CORRECTIONS` (maximum-
        likelihood fits with sigma estimated: the structural parameters' covariance x n/(n - p), CIs
        from t(n - p); sigma itself, its SE and CI stay the ML ones).
    param: the observation parameter of a Study (``CARCOPY``).
    missing_dose: ``"superpose"`` with an unknown infusion dose: ``"error"`` (default, naming the
        row), ``"equal"`` or ``"first"`` (:data:`~cartlab.kinetics.stein.params.MISSING_DOSES`).
    no_infusion: ``doses=`` given and a subject has no infusion row: ``"drop"`` (default; its rows
        go to ``dropped_``, "time origin unknown") or ``"as_is"``.
    peak_window: ``"observed"`` (default): a fitted peak after the subject's last sample is not
        reported (stein_cmax/stein_tmax null, stein_auc_0_28 too when day 28 is after the last
        sample); ``"model"``: reported. Either way ``peak_extrapolated`` and ``peak_note`` say so.
    auc_extrap_warn_pct: ``auc_extrapolated_pct`` is the share (%) of stein_auc_0_28 after the
        subject's last sample; above this (default 20, the NCA convention for AUCinf %extrap:
        :data:`~cartlab.kinetics.stein.flags.AUC_EXTRAP_WARN_PCT`) ``auc_extrapolated`` is true and
        ``auc_note`` says so.
    derived_if_unidentified: ``"null"`` (default): a fit flagged "not identified" gets null derived
        values where they depend on an unidentified parameter
        (:data:`~cartlab.kinetics.stein.flags.DERIVED_DEPENDS`); ``"keep"``: kept for inspection.
    prior_dominated_shrinkage: MAP fits: ``prior_dominated`` when the individual SD-based shrinkage
        1 - sqrt(1 - posterior var/omega²) of every estimated peak parameter (foldx, tmax, cmax) exceeds it
        (default 0.5, :data:`~cartlab.kinetics.stein.flags.PRIOR_DOMINATED_SHRINKAGE`).

    Fitted attributes (after :meth:`fit`, which returns the model)
    ----------------------------------------------------------------
    params_: one row per subject: ``subject_id``, the six parameters, ``tlag``, ``ftoci``, ``fster``
        and ``sigma`` (``stein_curve(t, model.params_, model.dosing_)`` draws the fitted curves).
    individual_: one row per subject: parameters, derived quantities (rho, r0, doubling_time,
        t_half_alpha, t_half_beta, stein_cmax, stein_tmax, stein_auc_0_28 -- analytical, from the fitted
        curve), the observed peak beside them (:data:`~cartlab.kinetics.stein.PEAK_COLUMNS`),
        sigma, n_obs, n_blq, nll, aic (log-scale likelihood), fitted, converged, message;
        t_last_sample, peak_extrapolated, peak_note (``peak_window``); under a prior
        shrinkage_<param> (SD-based, fraction; posterior SD from the inverse Hessian), prior_dominated,
        prior_note (without a prior prior_dominated is false); dosing_note.
    observations_: every observation used: subject_id, time, conc (null when BLQ), lloq, blq,
        ipred (the fitted curve), iwres ((log conc - log ipred) / sigma; null when BLQ) and the
        input row's provenance (source, src_file, src_row).
    sigma_rule_: how sigma was set ("estimated", or held: "fixed at ..." / "the prior's ...").
    comedication_rule_: the ftoci / fster used and where they came from (given, the prior's, default).
    subject_ids_, dosing_, dropped_: the subjects, their dosing, the input rows not used.
    summary: (property) one row per subject and parameter with SE, RSE and 95% CI.

    Minimum data: a subject is fitted only when its data can identify the free parameters. Without
    a quantifiable sample (every sample BLQ: a non-expander) no curve is fitted; without a prior it
    needs more quantifiable samples than free parameters (the six structural ones not fixed, plus
    sigma when estimated), so that at least one residual degree of freedom is left (with as many
    samples as parameters the curve goes through every sample and sigma collapses to 0). Otherwise
    the subject gets no estimates (``fitted`` false, null parameters and derived quantities) and
    ``message`` says why and what to give (a prior, fixed parameters).

    Identification (maximum-likelihood fits, no prior): a fit whose data do not determine it is
    reported with ``converged`` false and a ``message`` starting "not identified": when ``foldx``
    is estimated and no quantifiable sample lies before the fitted peak (the expansion, and with it
    the AUC0-28, is then not determined by the data: the likelihood is flat in ``foldx``), when
    ``cmax`` or ``alpha`` is estimated and no quantifiable sample lies after the fitted peak (the
    peak and the contraction are then extrapolated), or when a parameter's RSE exceeds
    :data:`RSE_LIMIT_PCT` (500%). Its parameter estimates are kept, for inspection only; its derived
    values follow ``derived_if_unidentified``. With a prior (MAP) the prior determines what the data do not, so these checks do not apply.

    Optimisation: L-BFGS-B from several starts (data-driven -- tmax at the observed peak time, cmax
    at the observed peak, the expansion rate from the rising samples, the contraction rates by
    curve stripping of the post-peak samples --, published typical values, earlier peak times, a
    slower contraction; the residual SD starts at the start curve's RMS residual), then a
    Nelder-Mead polish of the best two optima and a last L-BFGS-B step; log-parameter bounds.
    Everything is deterministic. ``converged`` requires that the optimiser reports success (or
    stops because its line search finds no lower point, "ABNORMAL", which the next checks then
    decide), a ~zero gradient, a positive-definite Hessian and no estimate at a bound; ``message`` names
    what failed (the optimiser's own message when it is the optimiser). When the fitted peak
    coincides with a sampling time the likelihood has a kink in ``tmax`` (that sample switches
    between the rising and the falling branch): the optimum is accepted (``converged`` true) if it
    is a one-sided minimum in ``tmax`` and the other checks pass on the remaining parameters;
    ``tmax`` then gets no SE (the others come from the Hessian with ``tmax`` held) and the message
    says so. (FB, alpha, beta) and (1-FB, beta, alpha) give the same curve; estimates are reported
    with alpha >= beta. The 95% CIs are taken on the log scale, ``fb``'s on the logit scale.
    """

    def __init__(
        self,
        *,
        sigma: float | str | None = None,
        fixed: Mapping[str, float] | None = None,
        prior: PopulationParams | None = None,
        blq: str = "m3",
        blq_below_lloq: bool = True,
        dose_handling: str = "first",
        ftoci: float | None = None,
        fster: float | None = None,
        tlag: float = 0.0,
        param: str = "CARCOPY",
        missing_dose: str = "error",
        no_infusion: str = "drop",
        peak_window: str = "observed",
        split_dose_gap_days: float | None = None,
        derived_if_unidentified: str = "null",
        prior_dominated_shrinkage: float = PRIOR_DOMINATED_SHRINKAGE,
        auc_extrap_warn_pct: float = AUC_EXTRAP_WARN_PCT,
        se_df_correction: str = "residual",
    ):
        self.se_df_correction = check_option("se_df_correction", se_df_correction, SE_DF_CORRECTIONS)
        self.auc_extrap_warn_pct = float(auc_extrap_warn_pct)
        self.derived_if_unidentified = check_option("derived_if_unidentified", derived_if_unidentified,
                                                    DERIVED_IF_UNIDENTIFIED)
        self.prior_dominated_shrinkage = float(prior_dominated_shrinkage)
        self.sigma = sigma
        self.fixed = dict(fixed or {})
        unknown = set(self.fixed) - set(PARAMS) - {"sigma"}
        if unknown:
            raise ValueError(f"unknown parameters in fixed: {sorted(unknown)}")
        if isinstance(sigma, str) and sigma != "estimate":
            raise ValueError(f"sigma must be None, 'estimate' or a number > 0, not {sigma!r}")
        for what, v in (("sigma", None if isinstance(sigma, str) else sigma), ("fixed['sigma']", self.fixed.get("sigma"))):
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{what} must be a number > 0, not {v!r}")
        if "sigma" in self.fixed and sigma is not None and (sigma == "estimate" or sigma != self.fixed["sigma"]):
            raise ValueError(f"sigma={sigma!r} contradicts fixed['sigma']={self.fixed['sigma']!r}: give one")
        fx = self.fixed.get("foldx")
        if fx is not None and not fx > 1:  # R0 = Cmax / foldx below Cmax: rho = ln(foldx) / Tmax > 0 (review 41 F8)
            raise ValueError(f"fixed['foldx'] = {fx!r}: foldx is the fold expansion from R0 to Cmax; must be > 1")
        self.prior = prior
        # the comedication multipliers: given, else the prior's (its typical curve is then the published one),
        # else no effect (review 41 F7)
        used, src = {}, {}
        for name, v in (("ftoci", ftoci), ("fster", fster)):
            if v is not None:
                used[name], src[name] = float(v), "given"
            elif prior is not None:
                used[name], src[name] = float(getattr(prior, name)), "the prior's"
            else:
                used[name], src[name] = 1.0, "default, no effect"
        self._comedication_rule = "; ".join(f"{n} {used[n]:g} ({src[n]})" for n in ("ftoci", "fster"))
        self._data_options(blq=blq, blq_below_lloq=blq_below_lloq, dose_handling=dose_handling, ftoci=used["ftoci"],
                           fster=used["fster"], tlag=tlag, param=param, missing_dose=missing_dose,
                           no_infusion=no_infusion, peak_window=peak_window,
                           split_dose_gap_days=split_dose_gap_days)

    def _sigma_setting(self) -> tuple[float | None, str]:
        """(the residual SD held fixed, or None when it is estimated; how it was chosen)."""
        if "sigma" in self.fixed:
            return float(self.fixed["sigma"]), f"fixed at {self.fixed['sigma']:g}"
        if self.sigma == "estimate" or (self.sigma is None and self.prior is None):
            return None, "estimated per subject (maximum likelihood)" if self.prior is None else \
                "estimated per subject (jointly with the MAP parameters)"
        if self.sigma is not None:
            return float(self.sigma), f"fixed at {float(self.sigma):g}"
        return float(self.prior.sigma), (f"held at the prior's residual SD {float(self.prior.sigma):g} "
                                         "(empirical Bayes: MAP fits keep the population's residual error)")

    def fit(self, data: Any, *, doses: pl.DataFrame | None = None,
            covariates: pl.DataFrame | None = None, progress: Progress | None = None) -> SteinModel:
        """Fit every subject of ``data`` (a cartlab Study or a plain frame; see
        :mod:`cartlab.kinetics.stein`) and return the model, fitted.

        ``progress(stage, done, total)`` is called after each subject."""
        d = self._prepare(data, doses, covariates)
        est = [p for p in PARAMS if p not in self.fixed]
        sigma_fixed, self.sigma_rule_ = self._sigma_setting()
        self.comedication_rule_ = self._comedication_rule
        fits = []
        for i in range(d.n):
            fits.append(self._fit_one(d.subset([i]), est, sigma_fixed))
            if progress is not None:
                progress(f"subject {d.ids[i]}", i + 1, d.n)
        self._fits = fits
        self._set_data(d)
        p = self._params(range(d.n))
        sigma = np.array([f.sigma for f in fits])
        self.params_ = pl.DataFrame({"subject_id": self.subject_ids_,
                                     **{n: np.broadcast_to(p[n], (d.n,)) for n in (*PARAMS, "tlag", "ftoci", "fster")},
                                     "sigma": sigma}).fill_nan(None)
        self.observations_ = _observations_frame(d, stein_log_curve(d.t, p, d.dosing), sigma).with_columns(
            pl.col("ipred").fill_nan(None))
        self.individual_ = _with_observed_peaks(self._individual(p), self.observations_)
        return self

    def _unidentified(self, n_q: int, n_blq: int, names: list[str]) -> str:
        """Why a subject's data cannot identify its free parameters ('' when they can)."""
        if n_q == 0:
            return (f"not fitted: no quantifiable sample ({n_blq} BLQ): the level was never above the LLOQ, so "
                    "there is no expansion or peak to fit (Cmax is below the LLOQ, not a number)")
        if self.prior is None and n_q <= len(names):
            return (f"not fitted: {n_q} quantifiable sample(s) for {len(names)} free parameters "
                    f"({', '.join(names)}): the data cannot identify them (a fit needs more quantifiable samples "
                    "than free parameters, at least one residual degree of freedom); give the population prior "
                    "(--prior stein2019, prior=STEIN_2019) or hold parameters fixed (--fix / fixed=, e.g. "
                    "beta=0.0032, sigma=0.56)")
        return ""

    def _fit_one(self, d: _Data, est: list[str], sigma_fixed: float | None) -> _SubjectFit:
        fixed = {p: float(v) for p, v in self.fixed.items() if p in PARAMS}
        ev = _Evaluator(d, est, fixed, self.extras)
        est_sigma = sigma_fixed is None
        k = len(est)
        # quantifiable as reported: a blq='half' imputed value is still BLQ (review 41 F3)
        q = d.quantified[0]
        n_obs, n_q = int(d.mask.sum()), int(q.sum())
        n_blq = n_obs - n_q
        why = self._unidentified(n_q, n_blq, est + (["sigma"] if est_sigma else []))
        if why:
            nan = float("nan")
            return _SubjectFit(subject_id=d.ids[0], est=est, values={p: fixed.get(p, nan) for p in PARAMS},
                               sigma=nan if est_sigma else float(sigma_fixed), sigma_estimated=est_sigma,
                               cov_log=None, nll=nan, n_obs=n_obs, n_blq=n_blq, converged=False, message=why,
                               fitted=False)
        prior = self.prior
        if prior is not None:
            pm = np.array([math.log(prior.theta[p]) for p in est])
            pv = np.array([max(float(prior.omega2.get(p, 0.0)), 1e-12) for p in est])

        def nll(x):
            sig = math.exp(x[k]) if est_sigma else sigma_fixed
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
        tq, lyq = d.t[0][q], d.logy[0][q]
        s0 = _data_start(tq, lyq)
        starts = [s0, dict(prior.theta if prior is not None else STEIN_2019.theta)]
        for f in (0.8, 0.6):  # the peak usually lies between samples, before the highest one
            starts.append(_data_start(tq, lyq, tpeak=s0["tmax"] * f))
        alt = dict(s0)
        alt.update(alpha=s0["alpha"] * 0.5, fb=min(s0["fb"] * 5, 0.5), beta=0.05)
        starts.append(alt)
        results = []
        for s in starts:
            s = {p: fixed.get(p, s[p]) for p in PARAMS}
            x0 = [math.log(float(np.clip(s[p], *_BOUNDS[p]))) for p in est]
            if est_sigma:  # the start curve's RMS residual on the log scale
                with np.errstate(all="ignore"):
                    lf = ev.logf(np.array(x0)[None, :k])[0][q]
                    rms = float(np.sqrt(np.mean((lyq - lf) ** 2)))
                x0.append(math.log(float(np.clip(rms if np.isfinite(rms) else 0.5, 0.05, 3.0))))
            x0 = np.clip(np.array(x0), np.array(lo) + 1e-6, np.array(hi) - 1e-6)
            results.append(optimize.minimize(nll, x0, method="L-BFGS-B", bounds=bounds, options={"maxiter": 2000}))
        results.sort(key=lambda r: r.fun)
        # polish the best optimum and the best distinct runner-up: Nelder-Mead, then L-BFGS-B
        polish = [results[0]] + [r for r in results[1:] if r.fun > results[0].fun + 1e-6][:1]
        r = results[0]
        nm_ok = False
        for c in polish:
            nm = optimize.minimize(nll, c.x, method="Nelder-Mead", bounds=bounds,
                                   options={"maxiter": 6000, "maxfev": 12000, "xatol": 1e-7, "fatol": 1e-10,
                                            "adaptive": True})
            if nm.fun < r.fun:
                r, nm_ok = nm, bool(nm.success)
        r2 = optimize.minimize(nll, r.x, method="L-BFGS-B", bounds=bounds)
        if r2.fun < r.fun:
            r = r2
        # the optimiser succeeded when its last run (or the Nelder-Mead run it could not improve on) says so
        opt_ok = bool(r2.success) or (r is not r2 and nm_ok)
        x = np.asarray(r.x, dtype=float)
        vals = dict(fixed)
        vals.update({p: math.exp(x[i]) for i, p in enumerate(est)})
        if {"alpha", "beta", "fb"} <= set(est):
            sw = _swap_phases(vals)
            if sw != vals:
                vals = sw
                for i, p in enumerate(est):
                    x[i] = math.log(min(max(vals[p], _BOUNDS[p][0]), _BOUNDS[p][1]))
        sig = math.exp(x[k]) if est_sigma else float(sigma_fixed)
        fval = nll(x)
        cov = None
        converged = bool(np.isfinite(fval))
        msg = ""
        # L-BFGS-B ends "ABNORMAL" when its line search finds no lower point: at an optimum, finite-
        # difference gradient noise does that (scipy >= 1.15's L-BFGS-B says so more often). It is not a
        # failure by itself: the fit is accepted when the checks below (~zero gradient, positive-definite
        # Hessian, no estimate at a bound) all pass, and the message says the optimiser stopped so.
        abnormal = not opt_ok and "ABNORMAL" in str(getattr(r2, "message", "")).upper()
        if abnormal:
            msg += (f"; the optimiser stopped without a success flag ({_optimiser_note(r2, 'L-BFGS-B')}: its line "
                    "search found no lower point); accepted on the gradient and Hessian checks")
        elif not opt_ok:
            converged = False
            msg += f"; the optimiser did not converge ({_optimiser_note(r2, 'L-BFGS-B')})"
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
                msg += ("; Hessian not positive definite (not a local minimum, or a direction the data do not "
                        "determine)")
        except np.linalg.LinAlgError:
            converged = False
            msg += "; Hessian singular"
        names = est + (["sigma"] if est_sigma else [])
        near = [f"{n} {'lower' if abs(x[i] - lo[i]) <= abs(x[i] - hi[i]) else 'upper'} bound "
                f"{math.exp(lo[i] if abs(x[i] - lo[i]) <= abs(x[i] - hi[i]) else hi[i]):g}"
                for i, n in enumerate(names) if min(abs(x[i] - lo[i]), abs(x[i] - hi[i])) < 1e-3]
        if near:
            converged = False
            msg += f"; an estimate is at its bound ({', '.join(near)})"
        df_resid = None
        if cov is not None and self.se_df_correction == "residual" and est_sigma and prior is None:
            # ML residual variance RSS/n -> RSS/(n - p) (review 41 F6; SE_DF_CORRECTIONS); n_q > p + 1 here.
            # The structural block only: sigma's own SE stays the ML one, as the reported sigma is the ML
            # sqrt(RSS/n) (review41_diff2 F10); D cov D keeps the matrix positive definite.
            df_resid = n_q - k
            dscale = np.ones(x.size)
            dscale[:k] = math.sqrt(n_q / df_resid)
            cov = cov * np.outer(dscale, dscale)
        unid: list[str] = []
        if prior is None:
            why, unid = self._not_identified(d, q, vals, names, cov)
            if why:
                converged = False
                msg = f"not identified: {why}" + msg
        return _SubjectFit(
            subject_id=d.ids[0], est=est, values=vals, sigma=sig, sigma_estimated=est_sigma,
            cov_log=cov, nll=fval, n_obs=n_obs, n_blq=n_blq, converged=converged, message=msg.strip("; "),
            unidentified=tuple(unid), df_resid=df_resid,
        )

    def _not_identified(self, d: _Data, q: np.ndarray, vals: dict[str, float], names: list[str],
                        cov: np.ndarray | None) -> tuple[str, list[str]]:
        """Why a maximum-likelihood fit is not determined by the data ('' when it is) and which
        parameters: no quantifiable sample before the fitted peak while ``foldx`` is estimated, none
        after it while ``cmax`` or ``alpha`` is, or an RSE above RSE_LIMIT_PCT."""
        why, bad = [], []
        tpk = self.extras["tlag"] + vals["tmax"]
        tq = d.t[0][q]
        if {"cmax", "alpha"} & set(names) and not np.any(tq > tpk + 1e-6 * max(1.0, tpk)):
            last = f"day {day_text(tq.max())}" if tq.size else "none"
            why.append(f"no quantifiable sample after the fitted peak (day {day_text(tpk)}; last quantifiable sample "
                       f"{last}), so the peak and the contraction (cmax, alpha; Cmax, Tmax, AUC0-28) are "
                       "extrapolated, not determined by the data; give --prior stein2019 (prior=STEIN_2019) or "
                       "later samples")
            bad += [p for p in ("tmax", "cmax", "alpha") if p in names]
        if "foldx" in names:
            if not np.any(tq < tpk - 1e-6 * max(1.0, tpk)):
                first = f"day {day_text(tq.min())}" if tq.size else "none"
                why.append(f"no quantifiable sample before the fitted peak (day {day_text(tpk)}; first quantifiable "
                           f"sample {first}), so the expansion (foldx, and with it AUC0-28) is not determined "
                           "by the data; give --prior stein2019 (prior=STEIN_2019) or --fix foldx=VALUE")
                bad.append("foldx")
        if cov is not None:
            with np.errstate(invalid="ignore"):
                rse = 100 * np.sqrt(np.diag(cov))
            big = [f"{n} {r:.0f}%" for n, r in zip(names, rse) if np.isfinite(r) and r > RSE_LIMIT_PCT]
            bad += [n for n, r in zip(names, rse) if np.isfinite(r) and r > RSE_LIMIT_PCT]
            if big:
                why.append(f"RSE above {RSE_LIMIT_PCT:g}% ({', '.join(big)}): the data do not determine "
                           f"{'it' if len(big) == 1 else 'them'}")
        return "; ".join(why), sorted(set(bad))

    # -- results ------------------------------------------------------------------------------
    def _params(self, idx: Sequence[int]) -> dict[str, np.ndarray]:
        d = {p: np.array([self._fits[i].values[p] for i in idx]) for p in PARAMS}
        d.update(self.extras)
        return d

    @property
    def summary(self) -> pl.DataFrame:
        """One row per subject and parameter: estimate, SE (delta method), RSE%, 95% CI (from the
        log scale; for ``fb``, a fraction, from the logit scale; t(n - p) quantiles under
        ``se_df_correction='residual'`` when sigma is estimated without a prior, else 1.96; the
        ``sigma`` row is the ML sigma sqrt(RSS/n) with its ML SE and a 1.96 CI, never df-corrected),
        ``fixed``, ``converged``; ``iiv`` is null (no population). A subject that was not fitted has
        null estimates."""
        self._fitted()
        rows = []
        for f in self._fits:
            names = f.est + (["sigma"] if f.sigma_estimated else [])
            se_log = np.sqrt(np.diag(f.cov_log)) if f.cov_log is not None else np.full(len(names), np.nan)
            z = float(stats.t.ppf(0.975, f.df_resid)) if f.df_resid else 1.96
            for p in PARAMS + ("sigma",):
                v = f.sigma if p == "sigma" else f.values[p]
                if p in names:
                    s = float(se_log[names.index(p)])
                    lo, hi = _ci(p, v, s, 1.96 if p == "sigma" else z)  # sigma: ML (review41_diff2 F10)
                    rows.append((f.subject_id, p, v, v * s, 100 * s, lo, hi, False, f.converged))
                else:
                    rows.append((f.subject_id, p, v, None, None, None, None, True, f.converged))
        return pl.DataFrame(
            rows, orient="row",
            schema={"subject_id": pl.String, "parameter": pl.String, "estimate": pl.Float64,
                    "se": pl.Float64, "rse_pct": pl.Float64, "ci_lower": pl.Float64,
                    "ci_upper": pl.Float64, "fixed": pl.Boolean, "converged": pl.Boolean},
        ).with_columns(
            [pl.col(c).fill_nan(None) for c in ("estimate", "se", "rse_pct", "ci_lower", "ci_upper")]
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
            fitted=[f.fitted for f in fits],
            converged=[f.converged for f in fits],
            message=[f.message for f in fits],
        )
        out = self._finish_individual(pl.DataFrame(cols).fill_nan(None), self._data)
        if self.derived_if_unidentified == "null":
            out = null_unidentified(out, [f.unidentified for f in fits])
        est = list(fits[0].est) if fits else []
        shrink = None
        if self.prior is not None:
            om = np.array([float(self.prior.omega2.get(q, 0.0)) for q in est])
            var = np.array([np.diag(f.cov_log)[: len(est)] if f.cov_log is not None else np.full(len(est), np.nan)
                            for f in fits]).reshape(len(fits), len(est))
            shrink = individual_shrinkage(var, om)
        out = add_shrinkage(out, shrink, est, self.prior_dominated_shrinkage, self.prior is not None)
        return out.with_columns(
            pl.when(pl.col("prior_dominated").fill_null(False))
            .then(pl.concat_str([pl.col("message"), pl.col("prior_note")], separator="; ").str.strip_chars("; "))
            .otherwise(pl.col("message")).alias("message"))

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
