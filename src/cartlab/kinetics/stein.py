"""Stein et al. 2019 piecewise CAR-T cellular kinetic model: curve, per-subject and population fits.

Model (Stein AM, Grupp SA, Levine JE, et al. *Tisagenlecleucel model-based cellular kinetic
analysis of chimeric antigen receptor-T cells.* CPT Pharmacometrics Syst Pharmacol
2019;8(5):285-295, doi:10.1002/psp4.12388; Figure 2, Table 1 and the supplement "Analytical
solution for the compartmental model")::

    rho = ln(foldx) / Tmax            R0 = Cmax / foldx
    C(t) = R0 * exp(rho * t)                                               0 <= t < Tmax
    C(t) = Cmax * [(1 - FB) exp(-alpha (t - Tmax)) + FB exp(-beta (t - Tmax))]    t >= Tmax

``C`` is the transgene level (qPCR, copies/ug genomic DNA, the cartlab parameter ``CARCOPY``) and
``t`` days from the first CAR-T infusion. Extensions, all off by default:

* **lag time** ``tlag``: ``C = R0`` for ``0 <= t < tlag``, then the curve above shifted by ``tlag``
  (the peak is at ``tlag + Tmax``; the parameter ``tmax`` is the *duration* of expansion).
* **comedication** ``ftoci`` / ``fster`` (Stein Table 1: 1.2 and 1.0): the expansion rate ``rho``
  is multiplied by ``ftoci`` after the first tocilizumab and by ``fster`` after the first
  corticosteroid. The expansion is integrated exactly (``log C = log R0 + integral of the rate``),
  so with a multiplier != 1 the realised peak differs from the parameter ``cmax``, which is then
  the peak the subject would have had without comedication; the decline starts from the realised
  peak (the ODE of Stein Figure 2 with a piecewise-constant ``rho``). Before infusion (t < 0) the
  curve is 0 (no CAR-T cells); fits drop pre-infusion samples.
* **split (fractionated) infusions** ``dose_handling``:

  - ``"first"`` (default, what Stein did: every ELIANA/ENSIGN patient had one infusion) -- time is
    counted from the first CAR-T infusion and the whole dose is treated as given then.
  - ``"superpose"`` -- each infusion k (day ``t_k``, dose ``d_k``) starts its own Stein curve with
    the subject's parameters, weighted by its dose fraction ``w_k = d_k / sum(d)``:
    ``C(t) = sum_k w_k C_stein(t - t_k)``. This is linear superposition: each fraction expands and
    contracts independently with the same kinetics and ``cmax`` keeps its meaning of "peak of the
    whole dose". It is an assumption (antigen-driven expansion is not linear in dose; Stein and
    Mueller 2017 found no clear dose-exposure relation), offered for split-dose protocols such as
    the seed case (1e6/kg on day 0 + 4e6/kg on day 2).

Published parameters: :data:`STEIN_2019` (typical values, inter-individual variability, residual
error). The IIV numbers of Table 1 are read as **variances omega^2 of log-normal random effects**,
as nlmixr2lib does (``inst/modeldb/specificDrugs/Stein_2019_Tisagenlecleucel.R``: ``etalfoldx ~
2.4`` etc.). The project's research note (``../shared/research/kinetics.md`` section 1.1 and gap
5.1) cautions that Monolix often reports omega as an SD and that this reading was not verified
against the paper PDF; simulated spreads depend on it (SD 1.55 vs 2.4 for foldx).

Estimation
----------
* :class:`SteinModel` -- per-subject maximum likelihood on the log scale (log C_obs = log C + e,
  e ~ N(0, sigma^2), Stein's "constant error model in log scale"). Samples below the LLOQ use
  Beal's M3 likelihood: a BLQ sample contributes ``log Phi((log LLOQ - log C)/sigma)`` (Beal SL,
  *J Pharmacokinet Pharmacodyn* 2001;28:481-504; Bergstrand M, Karlsson MO, *AAPS J*
  2009;11:371-380). Standard errors come from the inverse of the finite-difference Hessian of the
  negative log-likelihood on the log-parameter scale, and the delta method on the natural scale
  (SE(p) = p * SE(log p)). Options: ``blq="drop"`` (M1) and ``blq="half"`` (LLOQ/2 imputation)
  for comparison; an optional ``prior`` (a :class:`PopulationParams`) turns the fit into a MAP
  (Bayesian, "empirical Bayes") estimate for sparse subjects.
* :class:`SteinPopulationModel` -- nonlinear mixed effects by SAEM (Delyon B, Lavielle M, Moulines
  E. *Ann Stat* 1999;27:94-128; Kuhn E, Lavielle M. *Comput Stat Data Anal* 2005;49:1020-1038),
  the algorithm of Monolix, which Stein used:

  - individual log-parameters ``phi_i = X_i b + eta_i``, ``eta_i ~ N(0, diag(omega^2))``; covariates
    enter log-linearly (``log P_i = log theta_P + sum_c beta_{P,c} (c_i - center_c)``);
  - E-step: Metropolis-Hastings vectorised across subjects (and chains) in NumPy on the analytical
    solution, with the three kernels of Kuhn & Lavielle / Monolix (independent proposal from the
    population distribution, a joint random walk and component-wise random walks, step sizes
    adapted to ~40% acceptance);
  - BLQ samples: the MH target uses the M3 likelihood and the censored log-concentrations are then
    imputed from their truncated normal given the individual parameters, which makes the residual
    variance update closed-form (Samson A, Lavielle M, Mentre F. *Comput Stat Data Anal*
    2006;51:1562-1574);
  - stochastic approximation of the sufficient statistics with step 1 for ``n_burn`` iterations
    (with Monolix-style simulated annealing: variances shrink at most 5% per iteration) and
    steps ``1/k^0.8`` for ``n_smooth`` iterations; closed-form M-step (least squares per
    parameter for ``b``, then ``omega^2`` and ``sigma^2``); ``n_chains`` chains per subject;
  - standard errors: the observed Fisher information by Louis' missing-information principle
    (Louis TA. *J R Stat Soc B* 1982;44:226-233), averaged over ``n_post`` further MCMC iterations at
    the estimate (Kuhn & Lavielle 2005, section 4); the same draws give the observed score
    (Fisher's identity), reported as a convergence check and usable for optional Newton steps
    (Gu MG, Kong FH. *PNAS* 1998;95:7270-7274);
  - individual parameters: conditional means from the same iterations and the conditional modes
    (EBEs, MAP) by a batched damped Newton; eta-shrinkage ``1 - SD(eta_EBE)/omega`` (Savic RM,
    Karlsson MO. *AAPS J* 2009;11:558-569);
  - log-likelihood (for AIC/BIC) by importance sampling from a multivariate t centred on each
    subject's conditional mean and covariance (Lavielle M. *Mixed effects models for the
    population approach*, CRC 2014, section 9.2.1).

Likelihoods and AIC are those of the **log**-concentrations (they differ from the likelihood of the
concentrations by the constant sum of log C_obs over quantifiable samples).

Everything is deterministic given ``seed`` (NumPy ``default_rng``) on a given platform; the
MCMC amplifies last-bit floating-point differences, so another CPU/BLAS may follow a different
Monte-Carlo path (differences of the order of the Monte-Carlo error, see ``n_chains``).

Precision notes (500 simulated Stein subjects, LLOQ 50; ``tests/test_stein.py``): the foldx typical
value has an RSE of ~8% whatever the design (its IIV variance 2.4 alone gives the geometric mean of
500 subjects an SD of 6.9%); the terminal phase needs long follow-up -- the expected RSE of
omega^2_beta is ~39% with sampling to day 180 (:data:`DESIGN_180D`) and ~12% with monthly samples
to 1 year and quarterly ones to 2 years (:data:`DESIGN_2Y`). Over 30 replicate datasets of 500
subjects (``benchmarks/stein_recovery.py``, ``docs/kinetics/stein_recovery.md``) no typical value or
variance is biased by more than 2.2%; a single moment-matched dataset meets "theta within 10%,
omega^2 within 25%" for all six parameters in 27 of 30, a plain random draw in 15 of 30.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import polars as pl
from scipy import optimize, special

__all__ = [
    "PARAMS",
    "DEFAULT_TIMES",
    "DESIGN_180D",
    "DESIGN_2Y",
    "PopulationParams",
    "STEIN_2019",
    "stein_curve",
    "stein_log_curve",
    "stein_auc",
    "stein_peak",
    "derived_quantities",
    "simulate",
    "SteinModel",
    "SteinFit",
    "SteinPopulationModel",
    "SteinPopulationFit",
]

#: A progress callback: ``progress(stage, done, total)``.
Progress = Callable[[str, int, int], None]

#: BLQ handling: Beal M3 likelihood (default), M1 (drop), LLOQ/2 imputation.
BLQ_METHODS: dict[str, str] = {"m3": "Beal M3", "drop": "dropping (M1)", "half": "LLOQ/2 imputation"}
#: Split infusions: time from the first infusion (Stein's choice) or linear superposition.
DOSE_HANDLINGS: tuple[str, ...] = ("first", "superpose")

#: Structural parameters of the model, in order.
PARAMS: tuple[str, ...] = ("foldx", "tmax", "cmax", "alpha", "fb", "beta")
_EXTRA = ("tlag", "ftoci", "fster")
LN2 = math.log(2.0)
_LOG_2PI = math.log(2.0 * math.pi)

#: A rich sampling design to day 180 (days from the first infusion).
DESIGN_180D: tuple[float, ...] = (0, 1, 2, 3, 4, 7, 9, 11, 14, 21, 28, 42, 56, 90, 180)
#: Rich early sampling, monthly to 1 year, quarterly in year 2. Stein's terminal half-life is
#: ~217 d, so follow-up to day 180 leaves beta and its IIV poorly determined (expected RSE of
#: omega^2_beta ~39% with 500 subjects and LLOQ 50 vs ~12% with this design; see tests).
DESIGN_2Y: tuple[float, ...] = (0, 1, 2, 3, 4, 7, 9, 11, 14, 17, 21, 28, 35, 42, 56, 90, 120, 150, 180,
                                240, 300, 365, 450, 540, 630, 730)
#: Default design of :func:`simulate`.
DEFAULT_TIMES: tuple[float, ...] = DESIGN_2Y

#: Bounds (natural scale) used by the per-subject optimiser.
_BOUNDS = {
    "foldx": (1.01, 1e9),
    "tmax": (0.05, 365.0),
    "cmax": (1e-3, 1e10),
    "alpha": (1e-4, 20.0),
    "fb": (1e-9, 0.999),
    "beta": (1e-7, 5.0),
}
_SIGMA_BOUNDS = (1e-4, 10.0)
_FB_MAX = 1.0 - 1e-12

_CITATION = (
    "Stein AM, Grupp SA, Levine JE, Laetsch TW, Pulsipher MA, Boyer MW, et al. Tisagenlecleucel "
    "Model-Based Cellular Kinetic Analysis of Chimeric Antigen Receptor-T Cells. CPT "
    "Pharmacometrics Syst Pharmacol. 2019;8(5):285-295. doi:10.1002/psp4.12388 (Table 1)"
)


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PopulationParams:
    """Population parameters of the Stein model.

    ``theta``: typical values (natural scale, medians of the log-normal distributions);
    ``omega2``: between-subject variances of the log-parameters (0 or missing = no IIV);
    ``sigma``: residual SD, additive on the natural-log scale;
    ``covariate_effects``: ``{(parameter, covariate): coefficient}`` with
    ``log P_i = log theta_P + coefficient * (c_i - covariate_centers[c])``.
    """

    theta: Mapping[str, float]
    omega2: Mapping[str, float]
    sigma: float
    ftoci: float = 1.0
    fster: float = 1.0
    tlag: float = 0.0
    covariate_effects: Mapping[tuple[str, str], float] = field(default_factory=dict)
    covariate_centers: Mapping[str, float] = field(default_factory=dict)
    citation: str = field(default="", repr=False)
    note: str = field(default="", repr=False)

    def typical(self) -> dict[str, float]:
        """The typical curve's parameters (plus ``tlag``, ``ftoci``, ``fster``)."""
        d = {p: float(self.theta[p]) for p in PARAMS}
        d.update(tlag=self.tlag, ftoci=self.ftoci, fster=self.fster)
        return d

    def replace(self, **changes: Any) -> "PopulationParams":
        return replace(self, **changes)


#: Stein 2019 Table 1 (final model), as encoded in nlmixr2lib ``Stein_2019_Tisagenlecleucel``.
#: IIV entries are read as variances omega^2 (see the module docstring for the caveat).
STEIN_2019 = PopulationParams(
    theta={"foldx": 3900.0, "tmax": 9.3, "cmax": 24000.0, "alpha": 0.16, "fb": 0.0079, "beta": 0.0032},
    omega2={"foldx": 2.4, "tmax": 0.38, "cmax": 0.65, "alpha": 0.91, "fb": 0.80, "beta": 0.86},
    sigma=0.56,
    ftoci=1.2,
    fster=1.0,
    citation=_CITATION,
    note=(
        "IIV read as variances omega^2 of log-normal random effects, as nlmixr2lib does; the "
        "research note (kinetics.md 1.1, 5.1) cautions that Monolix often reports omega as an SD "
        "and this was not verified against the paper. Ftoci=1.2 was not significant in Stein 2019. "
        "Units: copies/ug genomic DNA, days."
    ),
)


def _params_arrays(params: Any) -> dict[str, np.ndarray]:
    if isinstance(params, PopulationParams):
        d: dict[str, Any] = params.typical()
    elif isinstance(params, pl.DataFrame):
        d = {c: params[c].to_numpy() for c in params.columns if c in PARAMS + _EXTRA}
    else:
        d = dict(params)
    missing = [p for p in PARAMS if p not in d]
    if missing:
        raise KeyError(f"missing Stein parameters: {missing}")
    out = {k: np.asarray(d[k], dtype=float) for k in PARAMS}
    out["tlag"] = np.asarray(d.get("tlag", 0.0), dtype=float)
    out["ftoci"] = np.asarray(d.get("ftoci", 1.0), dtype=float)
    out["fster"] = np.asarray(d.get("fster", 1.0), dtype=float)
    return out


def _event_time(x: Any) -> np.ndarray:
    if x is None:
        return np.asarray(np.inf)
    a = np.asarray(x, dtype=float)
    return np.where(np.isfinite(a), a, np.inf)


def _x(a: np.ndarray) -> np.ndarray:
    """Add a trailing time axis."""
    return np.asarray(a, dtype=float)[..., None]


# --------------------------------------------------------------------------------------------
# Curve
# --------------------------------------------------------------------------------------------


def _expansion_integral(u, tl, tt, ts, ftoci, fster):
    """Integral of the rate multiplier m(s) from tl to u (u >= tl); m = ftoci after tt, fster after ts."""
    out = np.maximum(u - tl, 0.0)
    out = out + (ftoci - 1.0) * np.maximum(u - np.maximum(tt, tl), 0.0)
    out = out + (fster - 1.0) * np.maximum(u - np.maximum(ts, tl), 0.0)
    both = np.maximum(np.maximum(tt, ts), tl)
    out = out + (ftoci - 1.0) * (fster - 1.0) * np.maximum(u - both, 0.0)
    return out


def _shape(p):
    """The quantities both the curve and its integral derive from one parameter set:
    (alpha, beta, fb, tlag, ftoci, fster, rho, log R0, peak time)."""
    lfold = np.log(p["foldx"])
    rho = lfold / p["tmax"]
    lr0 = np.log(p["cmax"]) - lfold
    fb = np.minimum(p["fb"], _FB_MAX)
    return p["alpha"], p["beta"], fb, p["tlag"], p["ftoci"], p["fster"], rho, lr0, p["tlag"] + p["tmax"]


def _log_single(tau, p, tt, ts):
    """log C of one dose term at times ``tau`` since that dose; params have a trailing axis."""
    alpha, beta, fb, tl, ftoci, fster, rho, lr0, tpk = _shape(p)
    lexp = lr0 + rho * _expansion_integral(np.minimum(tau, tpk), tl, tt, ts, ftoci, fster)
    lpk = lr0 + rho * _expansion_integral(tpk, tl, tt, ts, ftoci, fster)
    d = np.maximum(tau - tpk, 0.0)
    ldec = lpk + np.logaddexp(np.log1p(-fb) - alpha * d, np.log(fb) - beta * d)
    out = np.where(tau < tpk, lexp, ldec)
    return np.where(tau < 0.0, -np.inf, out)


def _dose_terms(dose_times, dose_fractions):
    dt = np.asarray(dose_times, dtype=float)
    if dose_fractions is None:
        w = np.ones_like(dt)
    else:
        w = np.asarray(dose_fractions, dtype=float)
    w = np.where(np.isfinite(dt), np.nan_to_num(w, nan=0.0), 0.0)
    tot = w.sum(axis=-1, keepdims=True)
    w = w / np.where(tot > 0, tot, 1.0)
    dt = np.where(np.isfinite(dt), dt, 0.0)
    return dt, w


def stein_log_curve(
    t: Any,
    params: Any,
    *,
    t_toci: Any = None,
    t_ster: Any = None,
    dose_times: Any = None,
    dose_fractions: Any = None,
) -> np.ndarray:
    """Natural log of :func:`stein_curve` (``-inf`` before the first infusion).

    Shapes: every parameter (and ``t_toci``/``t_ster``) has a subject shape ``S`` (``()`` for one
    curve, ``(n,)`` for n subjects, any leading batch axes allowed); ``t`` is ``(T,)`` or
    ``S + (T,)``; the result is ``S + (T,)``. ``dose_times``/``dose_fractions`` are ``S + (K,)``
    (``"superpose"`` handling, see the module docstring); by default one infusion at t = 0.
    """
    p = {k: _x(v) for k, v in _params_arrays(params).items()}
    t = np.asarray(t, dtype=float)
    if t.ndim == 0:
        return stein_log_curve(t[None], params, t_toci=t_toci, t_ster=t_ster, dose_times=dose_times,
                               dose_fractions=dose_fractions)[..., 0]
    tt = _x(_event_time(t_toci))
    ts = _x(_event_time(t_ster))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if dose_times is None:
            return _log_single(t, p, tt, ts)
        dt, w = _dose_terms(dose_times, dose_fractions)
        out = None
        for k in range(dt.shape[-1]):
            tk = _x(dt[..., k])
            term = np.log(_x(w[..., k])) + _log_single(t - tk, p, tt - tk, ts - tk)
            out = term if out is None else np.logaddexp(out, term)
        return out


def stein_curve(t: Any, params: Any, **events: Any) -> np.ndarray:
    """The Stein 2019 curve C(t) (copies/ug) -- vectorised over subjects x times.

    ``params``: a mapping (or polars frame, or :class:`PopulationParams` for the typical curve)
    with ``foldx, tmax, cmax, alpha, fb, beta`` and optionally ``tlag, ftoci, fster``; each a
    scalar or an array of subjects. Keywords as :func:`stein_log_curve`.

    >>> float(stein_curve(9.3, STEIN_2019))
    24000.0
    """
    return np.exp(stein_log_curve(t, params, **events))


def _expm1_over(r, u):
    """(exp(r u) - 1) / r with the r -> 0 limit u."""
    ru = r * u
    small = np.abs(ru) < 1e-10
    safe_r = np.where(small, 1.0, r)
    return np.where(small, u * (1.0 + 0.5 * ru), np.expm1(ru) / safe_r)


def _F_single(T, p, tt, ts):
    """Integral from 0 to T (arrays of shape S) of one dose term."""
    alpha, beta, fb, tl, ftoci, fster, rho, _, tpk = _shape(p)
    r0 = p["cmax"] / p["foldx"]
    F = r0 * np.clip(T, 0.0, tl)
    e1 = np.minimum(tt, ts)
    e2 = np.maximum(tt, ts)
    f_first = np.where(tt <= ts, ftoci, fster)
    a0, a1, a2 = tl, np.clip(e1, tl, tpk), np.clip(e2, tl, tpk)
    r1, r2, r3 = rho, rho * f_first, rho * ftoci * fster
    c0 = r0
    c1 = c0 * np.exp(r1 * (a1 - a0))
    c2 = c1 * np.exp(r2 * (a2 - a1))
    cpk = c2 * np.exp(r3 * (tpk - a2))
    for c, r, a, b in ((c0, r1, a0, a1), (c1, r2, a1, a2), (c2, r3, a2, tpk)):
        F = F + c * _expm1_over(r, np.clip(T, a, b) - a)
    d = np.maximum(T - tpk, 0.0)
    F = F + cpk * ((1.0 - fb) * (-np.expm1(-alpha * d)) / alpha + fb * (-np.expm1(-beta * d)) / beta)
    return F


def stein_auc(
    t0: Any,
    t1: Any,
    params: Any,
    *,
    t_toci: Any = None,
    t_ster: Any = None,
    dose_times: Any = None,
    dose_fractions: Any = None,
) -> np.ndarray:
    """Exact (analytical) AUC of the curve from ``t0`` to ``t1`` (copies*d/ug), shape ``S``.

    The curve is a sum of exponential pieces, each integrated in closed form.

    >>> round(float(stein_auc(0, 28, STEIN_2019)))
    171774
    """
    p = _params_arrays(params)
    tt, ts = _event_time(t_toci), _event_time(t_ster)
    t0 = np.asarray(t0, dtype=float)
    t1 = np.asarray(t1, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if dose_times is None:
            return _F_single(t1, p, tt, ts) - _F_single(t0, p, tt, ts)
        dt, w = _dose_terms(dose_times, dose_fractions)
        out = 0.0
        for k in range(dt.shape[-1]):
            tk = dt[..., k]
            fk = _F_single(t1 - tk, p, tt - tk, ts - tk) - _F_single(t0 - tk, p, tt - tk, ts - tk)
            out = out + w[..., k] * fk
        return np.asarray(out)


def stein_peak(
    params: Any,
    *,
    t_toci: Any = None,
    t_ster: Any = None,
    dose_times: Any = None,
    dose_fractions: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact peak (Cmax, Tmax) of the curve.

    Every piece is convex in t (constant, a rising exponential, or a positive sum of decaying
    exponentials), so the maximum lies at a breakpoint: an infusion, the end of the lag, the end
    of expansion of a dose term, or a comedication start. All are evaluated.
    """
    p = _params_arrays(params)
    shape = np.broadcast_shapes(*(v.shape for v in p.values()), np.shape(_event_time(t_toci)),
                                np.shape(_event_time(t_ster)))
    tl = np.broadcast_to(p["tlag"], shape)
    tpk = np.broadcast_to(p["tlag"] + p["tmax"], shape)
    tt = np.broadcast_to(_event_time(t_toci), shape)
    ts = np.broadcast_to(_event_time(t_ster), shape)
    if dose_times is None:
        dts = [np.zeros(shape)]
    else:
        dt, _ = _dose_terms(dose_times, dose_fractions)
        dt = np.broadcast_to(dt, shape + dt.shape[-1:])
        dts = [dt[..., k] for k in range(dt.shape[-1])]
    cands = []
    for tk in dts:
        cands += [tk, tk + tl, tk + tpk]
    cands += [np.where(np.isfinite(tt), tt, 0.0), np.where(np.isfinite(ts), ts, 0.0)]
    cand = np.maximum(np.stack(cands, axis=-1), 0.0)
    lc = stein_log_curve(cand, params, t_toci=t_toci, t_ster=t_ster, dose_times=dose_times,
                         dose_fractions=dose_fractions)
    i = np.argmax(lc, axis=-1)
    cmax = np.exp(np.take_along_axis(lc, i[..., None], axis=-1)[..., 0])
    tmax = np.take_along_axis(cand, i[..., None], axis=-1)[..., 0]
    return cmax, tmax


def derived_quantities(
    params: Any,
    *,
    t_toci: Any = None,
    t_ster: Any = None,
    dose_times: Any = None,
    dose_fractions: Any = None,
    auc_window: tuple[float, float] = (0.0, 28.0),
) -> dict[str, np.ndarray]:
    """rho, R0, doubling time ln2/rho, t1/2 alpha and beta, and the fitted curve's Cmax, Tmax and
    AUC0-28 (analytical). Column names follow ``subject_summary.csv`` (``car_*``)."""
    p = _params_arrays(params)
    ev = dict(t_toci=t_toci, t_ster=t_ster, dose_times=dose_times, dose_fractions=dose_fractions)
    rho = np.log(p["foldx"]) / p["tmax"]
    cmax, tmax = stein_peak(params, **ev)
    return {
        "rho": rho,
        "r0": p["cmax"] / p["foldx"],
        "doubling_time": LN2 / rho,
        "t_half_alpha": LN2 / p["alpha"],
        "t_half_beta": LN2 / p["beta"],
        "car_cmax": cmax,
        "car_tmax": tmax,
        "car_auc_0_28": stein_auc(auc_window[0], auc_window[1], params, **ev),
    }


# --------------------------------------------------------------------------------------------
# Data preparation
# --------------------------------------------------------------------------------------------


@dataclass
class _Data:
    ids: list[str]
    t: np.ndarray  # (N, J) days from the first infusion
    logy: np.ndarray  # (N, J) log conc, or log of the censoring limit
    cens: np.ndarray  # (N, J) 0 quantifiable, +1 below the limit, -1 above the limit
    mask: np.ndarray  # (N, J) bool
    tt: np.ndarray  # (N,) first tocilizumab (inf = none)
    ts: np.ndarray  # (N,) first corticosteroid (inf = none)
    dose_t: np.ndarray | None  # (N, K) or None
    dose_w: np.ndarray | None
    obs: pl.DataFrame  # long: subject_id, time, conc, lloq, blq
    covariates: pl.DataFrame  # subject_id + candidate covariates
    dropped: pl.DataFrame

    @property
    def n(self) -> int:
        return len(self.ids)

    def events(self, idx: Any = slice(None)) -> dict[str, Any]:
        return {
            "t_toci": self.tt[idx],
            "t_ster": self.ts[idx],
            "dose_times": None if self.dose_t is None else self.dose_t[idx],
            "dose_fractions": None if self.dose_w is None else self.dose_w[idx],
        }

    def subset(self, idx: Sequence[int]) -> "_Data":
        idx = np.asarray(idx)
        ids = [self.ids[i] for i in idx]
        return _Data(
            ids=ids,
            t=self.t[idx], logy=self.logy[idx], cens=self.cens[idx], mask=self.mask[idx],
            tt=self.tt[idx], ts=self.ts[idx],
            dose_t=None if self.dose_t is None else self.dose_t[idx],
            dose_w=None if self.dose_w is None else self.dose_w[idx],
            obs=self.obs.filter(pl.col("subject_id").is_in(ids)),
            covariates=self.covariates.filter(pl.col("subject_id").is_in(ids)),
            dropped=self.dropped,
        )


def _first_col(df: pl.DataFrame, names: Sequence[str], what: str, required: bool = True) -> str | None:
    for n in names:
        if n in df.columns:
            return n
    if required:
        raise ValueError(f"data has no {what} column (one of {list(names)})")
    return None


def _is_study(data: Any) -> bool:
    from cartlab.model import Study

    return isinstance(data, Study)


def _from_study(study: Any, param: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(long obs, doses, per-subject covariates/events) from a canonical Study."""
    doses = study.doses.filter(pl.col("agent").str.contains(r"(?i)^car[- ]?t"))
    # dose in cells/kg (absolute cell doses divided by the subject's weight)
    wt = study.subjects.select("subject_id", "weight_kg") if "weight_kg" in study.subjects.columns else None
    if wt is not None:
        doses = doses.join(wt, on="subject_id", how="left")
    else:
        doses = doses.with_columns(pl.lit(None, dtype=pl.Float64).alias("weight_kg"))
    unit = pl.col("unit").fill_null("").str.to_lowercase().str.replace_all(" ", "")
    doses = doses.select(
        "subject_id", pl.col("day").alias("time"),
        pl.when(unit == "cells/kg").then(pl.col("dose"))
        .when(unit == "cells").then(pl.col("dose") / pl.col("weight_kg"))
        .otherwise(None).alias("dose"),
    )
    first = doses.group_by("subject_id").agg(pl.col("time").min().alias("t0"))
    o = study.observations.filter(pl.col("param") == param)
    cens = pl.col("censor").fill_null("")
    o = o.select(
        "subject_id",
        pl.col("day").alias("time"),
        pl.col("value").alias("conc"),
        pl.col("lloq"),
        pl.coalesce(pl.col("censor_limit"), pl.col("lloq")).alias("limit"),
        pl.when(cens.str.starts_with("<")).then(1).when(cens.str.starts_with(">")).then(-1)
        .otherwise(0).alias("cens"),
        *_provenance(study.observations),
    )
    o = o.join(first, on="subject_id", how="left").with_columns(
        (pl.col("time") - pl.col("t0").fill_null(0.0)).alias("time")
    ).drop("t0")
    doses = doses.join(first, on="subject_id").with_columns((pl.col("time") - pl.col("t0")).alias("time")).drop("t0")
    iv = study.interventions.join(first, on="subject_id", how="left").with_columns(
        (pl.col("start_day") - pl.col("t0").fill_null(0.0)).alias("start")
    )
    cat = pl.col("category").fill_null("").str.to_lowercase()
    agent = pl.col("agent").fill_null("").str.to_lowercase()
    toci = iv.filter((cat == "tocilizumab") | agent.str.contains("tocilizumab")).group_by("subject_id").agg(
        pl.col("start").min().alias("t_toci"))
    ster = iv.filter(cat.is_in(["corticosteroid", "steroid", "corticosteroids"])).group_by("subject_id").agg(
        pl.col("start").min().alias("t_ster"))
    subj = study.subjects.select(
        [c for c in ("subject_id", "sex", "age_years", "weight_kg", "height_cm", "disease", "target")
         if c in study.subjects.columns]
    )
    dsum = doses.group_by("subject_id").agg(
        pl.when(pl.col("dose").null_count() == 0).then(pl.col("dose").sum()).otherwise(None).alias("dose_total"),
        pl.len().alias("n_infusions"))
    cov = (
        subj.join(dsum, on="subject_id", how="left")
        .join(toci, on="subject_id", how="left")
        .join(ster, on="subject_id", how="left")
        .with_columns(
            pl.col("dose_total").log().alias("log_dose"),
            pl.col("t_toci").is_not_null().cast(pl.Int64).alias("toci"),
            pl.col("t_ster").is_not_null().cast(pl.Int64).alias("steroid"),
        )
    )
    return o, doses, cov


_PROVENANCE = {"source": pl.String, "src_file": pl.String, "src_row": pl.Int64}


def _provenance(df: pl.DataFrame) -> list[pl.Expr]:
    """Provenance columns carried from input rows to fitted observations (null when absent)."""
    return [pl.col(c).cast(t) if c in df.columns else pl.lit(None, dtype=t).alias(c) for c, t in _PROVENANCE.items()]


def _from_frame(df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(long obs, per-subject extra columns) from a plain frame."""
    sid = _first_col(df, ("subject_id", "subject", "id"), "subject")
    tcol = _first_col(df, ("time", "day", "t"), "time")
    ccol = _first_col(df, ("conc", "value", "dv"), "concentration")
    lcol = _first_col(df, ("lloq",), "lloq", required=False)
    bcol = _first_col(df, ("blq",), "blq", required=False)
    scol = _first_col(df, ("censor",), "censor", required=False)
    lim = _first_col(df, ("censor_limit",), "limit", required=False)
    lloq = pl.col(lcol).cast(pl.Float64) if lcol else pl.lit(None, dtype=pl.Float64)
    if bcol:
        cens = pl.when(pl.col(bcol).cast(pl.Boolean).fill_null(False)).then(1).otherwise(0)
    elif scol:
        c = pl.col(scol).fill_null("")
        cens = pl.when(c.str.starts_with("<")).then(1).when(c.str.starts_with(">")).then(-1).otherwise(0)
    else:
        cens = pl.lit(0)
    limit = pl.coalesce(pl.col(lim).cast(pl.Float64), lloq) if lim else lloq
    o = df.select(
        pl.col(sid).cast(pl.String).alias("subject_id"),
        pl.col(tcol).cast(pl.Float64).alias("time"),
        pl.col(ccol).cast(pl.Float64).alias("conc"),
        lloq.alias("lloq"),
        limit.alias("limit"),
        cens.cast(pl.Int64).alias("cens"),
        *_provenance(df),
    )
    known = {sid, tcol, ccol, lcol, bcol, scol, lim, "pred", "value_text", *_PROVENANCE}
    extra_cols = [c for c in df.columns if c not in known]
    extra = (
        df.with_columns(pl.col(sid).cast(pl.String).alias("subject_id"))
        .group_by("subject_id", maintain_order=True)
        .agg([pl.col(c).drop_nulls().first() for c in extra_cols if c != "subject_id"])
    )
    return o, extra


def _prepare(
    data: Any,
    *,
    doses: pl.DataFrame | None = None,
    covariates: pl.DataFrame | None = None,
    param: str = "CARCOPY",
    blq: str = "m3",
    blq_below_lloq: bool = True,
    dose_handling: str = "first",
) -> _Data:
    if blq not in BLQ_METHODS:
        raise ValueError(f"blq must be one of {', '.join(map(repr, BLQ_METHODS))}")
    if dose_handling not in DOSE_HANDLINGS:
        raise ValueError(f"dose_handling must be one of {', '.join(map(repr, DOSE_HANDLINGS))}")
    if _is_study(data):
        o, dose_df, cov = _from_study(data, param)
    else:
        if not isinstance(data, pl.DataFrame):
            data = pl.DataFrame(data) if not hasattr(data, "to_numpy") else pl.from_pandas(data)
        o, cov = _from_frame(data)
        dose_df = None
        if doses is not None:
            dsid = _first_col(doses, ("subject_id", "subject", "id"), "subject")
            dt = _first_col(doses, ("time", "day"), "time")
            dd = _first_col(doses, ("dose",), "dose", required=False)
            dose_df = doses.select(
                pl.col(dsid).cast(pl.String).alias("subject_id"),
                pl.col(dt).cast(pl.Float64).alias("time"),
                (pl.col(dd).cast(pl.Float64) if dd else pl.lit(1.0)).alias("dose"),
            )
            t0 = dose_df.group_by("subject_id").agg(pl.col("time").min().alias("t0"))
            o = o.join(t0, on="subject_id", how="left").with_columns(
                (pl.col("time") - pl.col("t0").fill_null(0.0)).alias("time")).drop("t0")
            dose_df = dose_df.join(t0, on="subject_id").with_columns(
                (pl.col("time") - pl.col("t0")).alias("time")).drop("t0")
    if covariates is not None:
        cov_in = covariates.with_columns(pl.col("subject_id").cast(pl.String))
        keep = [c for c in cov.columns if c == "subject_id" or c not in cov_in.columns]
        cov = cov.select(keep).join(cov_in, on="subject_id", how="full", coalesce=True)

    # BLQ classification
    o = o.with_columns(
        pl.when(
            (pl.col("cens") == 0) & pl.lit(blq_below_lloq) & pl.col("conc").is_not_null()
            & pl.col("lloq").is_not_null() & (pl.col("conc") < pl.col("lloq"))
        ).then(1).otherwise(pl.col("cens")).alias("cens")
    ).with_columns(
        pl.when(pl.col("cens") == 0).then(pl.col("conc")).otherwise(pl.col("limit")).alias("y")
    )
    reason = (
        pl.when(pl.col("time").is_null()).then(pl.lit("no time"))
        .when(pl.col("time") < 0).then(pl.lit("before the first infusion"))
        .when(pl.col("y").is_null() & (pl.col("cens") != 0)).then(pl.lit("censored without a limit"))
        .when(pl.col("y").is_null()).then(pl.lit("no value"))
        .when(pl.col("y") <= 0).then(pl.lit("value <= 0 without an LLOQ"))
        .when((pl.col("cens") != 0) & pl.lit(blq == "drop")).then(pl.lit("BLQ dropped (blq='drop')"))
        .otherwise(pl.lit(None, dtype=pl.String))
        .alias("reason")
    )
    o = o.with_columns(reason)
    dropped = o.filter(pl.col("reason").is_not_null()).select("subject_id", "time", "conc", "lloq", "reason",
                                                               *_PROVENANCE)
    o = o.filter(pl.col("reason").is_null()).drop("reason")
    if blq == "half":
        o = o.with_columns(
            pl.when(pl.col("cens") == 1).then(pl.col("y") / 2).otherwise(pl.col("y")).alias("y"),
            pl.lit(0).alias("cens_m"),
        ).with_columns(pl.when(pl.col("cens") == -1).then(-1).otherwise(0).alias("cens_m"))
    else:
        o = o.with_columns(pl.col("cens").alias("cens_m"))
    o = o.sort("subject_id", "time", maintain_order=True)
    ids = o["subject_id"].unique(maintain_order=True).to_list()
    if not ids:
        raise ValueError(f"no usable {param} observations")
    # keep the subjects' order of first appearance in the input
    counts = o.group_by("subject_id", maintain_order=True).len()
    nmax = int(counts["len"].max())
    n = len(ids)
    pos = {s: i for i, s in enumerate(ids)}
    t = np.ones((n, nmax))
    logy = np.zeros((n, nmax))
    cens = np.zeros((n, nmax), dtype=np.int8)
    mask = np.zeros((n, nmax), dtype=bool)
    fill = np.zeros(n, dtype=int)
    for sid, ti, yi, ci in zip(o["subject_id"].to_list(), o["time"].to_numpy(), o["y"].to_numpy(),
                                o["cens_m"].to_numpy()):
        i = pos[sid]
        j = fill[i]
        t[i, j], logy[i, j], cens[i, j], mask[i, j] = ti, math.log(yi), ci, True
        fill[i] += 1
    cov = pl.DataFrame({"subject_id": ids}).join(cov, on="subject_id", how="left")
    tt = np.full(n, np.inf)
    ts = np.full(n, np.inf)
    for name, arr in (("t_toci", tt), ("t_ster", ts)):
        if name in cov.columns:
            v = cov[name].cast(pl.Float64).to_numpy()
            arr[:] = np.where(np.isfinite(v), v, np.inf)
    dose_t = dose_w = None
    if dose_handling == "superpose" and dose_df is not None and dose_df.height:
        g = dose_df.sort("time").group_by("subject_id", maintain_order=True).agg("time", "dose")
        gm = {r[0]: (r[1], r[2]) for r in g.iter_rows()}
        kmax = max((len(v[0]) for v in gm.values()), default=1)
        dose_t = np.zeros((n, kmax))
        dose_w = np.zeros((n, kmax))
        for s, i in pos.items():
            times, dd = gm.get(s, ([0.0], [1.0]))
            dd = [1.0 if (x is None or not np.isfinite(x)) else x for x in dd]
            dose_t[i, : len(times)] = times
            dose_w[i, : len(times)] = np.asarray(dd) / np.sum(dd)
    obs = o.select(
        "subject_id", "time", pl.when(pl.col("cens") == 0).then(pl.col("conc")).otherwise(None).alias("conc"),
        "lloq", pl.col("limit"), (pl.col("cens") != 0).alias("blq"), *_PROVENANCE,
    )
    return _Data(ids, t, logy, cens, mask, tt, ts, dose_t, dose_w, obs, cov, dropped)


# --------------------------------------------------------------------------------------------
# Likelihood
# --------------------------------------------------------------------------------------------


class _Evaluator:
    """Log-likelihood of individual log-parameters ``phi`` (..., N, P) on the data (N, J)."""

    def __init__(self, data: _Data, est: Sequence[str], fixed: Mapping[str, float], extras: Mapping[str, float]):
        self.d = data
        self.est = list(est)
        self.fixed = dict(fixed)
        self.extras = dict(extras)
        self.ev = data.events()
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
        return stein_log_curve(self.d.t, self.params(phi), **self.ev)

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


# --------------------------------------------------------------------------------------------
# Numerical helpers
# --------------------------------------------------------------------------------------------


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


def _batched_grad_hess(f, x: np.ndarray, h: float = 1e-4):
    """Gradient and Hessian of f: (..., N, P) -> (..., N) for every row, in one batched call."""
    n, k = x.shape
    E = np.eye(k) * h
    shifts = [np.zeros(k)]
    for i in range(k):
        shifts += [E[i], -E[i]]
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    for i, j in pairs:
        shifts += [E[i] + E[j], E[i] - E[j], -E[i] + E[j], -E[i] - E[j]]
    S = np.stack(shifts)  # (M, k)
    vals = f(x[None, :, :] + S[:, None, :])  # (M, N)
    f0 = vals[0]
    g = np.zeros((n, k))
    H = np.zeros((n, k, k))
    for i in range(k):
        fp, fm = vals[1 + 2 * i], vals[2 + 2 * i]
        g[:, i] = (fp - fm) / (2 * h)
        H[:, i, i] = (fp - 2 * f0 + fm) / h**2
    base = 1 + 2 * k
    for m, (i, j) in enumerate(pairs):
        a, b, c, d = vals[base + 4 * m: base + 4 * m + 4]
        H[:, i, j] = H[:, j, i] = (a - b - c + d) / (4 * h**2)
    return f0, g, H


def _batched_newton(f, x0: np.ndarray, max_iter: int = 60, tol: float = 1e-8):
    """Minimise f row-wise (f: (..., N, P) -> (..., N)) by Levenberg-damped Newton steps.

    Rows are independent problems (one per subject); a step is kept only where it lowers f."""
    x = x0.copy()
    fx = f(x)
    n, k = x.shape
    lam = np.full(n, 1e-2)
    active = np.isfinite(fx)
    eye = np.eye(k)
    for _ in range(max_iter):
        if not active.any():
            break
        _, g, H = _batched_grad_hess(f, x)
        D = np.abs(np.diagonal(H, axis1=1, axis2=2))[:, :, None] * eye + 1e-6 * eye
        A = H + lam[:, None, None] * D
        try:
            step = -np.linalg.solve(A, g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = -g / (lam[:, None] + 1.0)
        step = np.where(np.isfinite(step), step, 0.0)
        nrm = np.abs(step).max(axis=1)
        step = step * np.minimum(1.0, 2.0 / np.maximum(nrm, 1e-300))[:, None]
        step[~active] = 0.0
        xn = x + step
        fn = f(xn)
        better = active & np.isfinite(fn) & (fn < fx)
        gain = np.where(better, fx - fn, 0.0)
        x[better] = xn[better]
        fx[better] = fn[better]
        lam[better] = np.maximum(lam[better] / 4.0, 1e-8)
        lam[active & ~better] *= 6.0
        done = (better & (gain < tol)) | (np.abs(step).max(axis=1) < 1e-9) | (lam > 1e10)
        active &= ~done
    return x, fx


# --------------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------------


def _individual_log_params(
    params: PopulationParams, eta: np.ndarray, cov: pl.DataFrame | None, n: int
) -> dict[str, np.ndarray]:
    out = {}
    for i, p in enumerate(PARAMS):
        lp = np.full(n, math.log(params.theta[p])) + eta[:, i]
        for (pp, c), b in params.covariate_effects.items():
            if pp != p:
                continue
            if cov is None or c not in cov.columns:
                raise ValueError(f"covariate {c!r} is needed by the parameters but not given")
            lp = lp + b * (cov[c].cast(pl.Float64).to_numpy() - params.covariate_centers.get(c, 0.0))
        out[p] = lp
    return out


def simulate(
    n: int = 100,
    seed: int = 0,
    times: Sequence[float] = DEFAULT_TIMES,
    params: PopulationParams = STEIN_2019,
    lloq: float | None = 50.0,
    *,
    covariates: pl.DataFrame | None = None,
    t_toci: Any = None,
    t_ster: Any = None,
    dose_times: Any = None,
    dose_fractions: Any = None,
    residual: bool = True,
    exact_moments: bool = False,
    return_params: bool = False,
) -> pl.DataFrame | tuple[pl.DataFrame, pl.DataFrame]:
    """Virtual subjects from population parameters (default: Stein 2019).

    Individual parameters are log-normal around ``params.theta`` with variances ``params.omega2``
    (plus covariate effects on ``covariates``, a frame with ``n`` rows in subject order).
    Observations are ``exp(log C + sigma * z)``; those below ``lloq`` are BLQ (``conc`` null,
    ``blq`` true). ``t_toci``/``t_ster`` (length n, NaN = none) switch on Ftoci/Fster.
    ``exact_moments=True`` draws moment-matched random effects (the n subjects' log-parameters
    have exactly the population mean and variances, zero sample correlations): a variance-reduction
    device for estimator-recovery studies, which then measure estimation error rather than the
    sampling error of n individuals (with omega^2 = 2.4 the geometric mean of 500 random foldx
    values alone has an SD of ~7%).

    Returns a plain frame (``subject_id, time, conc, pred, lloq, blq``) that :class:`SteinModel`
    and :class:`SteinPopulationModel` accept; with ``return_params=True`` also a per-subject frame
    of the true parameters (and covariates).
    """
    rng = np.random.default_rng(seed)
    times = np.asarray(times, dtype=float)
    om = np.array([float(params.omega2.get(p, 0.0)) for p in PARAMS])
    z = rng.standard_normal((n, len(PARAMS)))
    if exact_moments:
        # moment-matched draws: sample mean 0 and sample covariance (1/n) exactly the identity
        z = z - z.mean(axis=0)
        L = np.linalg.cholesky(z.T @ z / n)
        z = np.linalg.solve(L, z.T).T
    eta = z * np.sqrt(om)
    lp = _individual_log_params(params, eta, covariates, n)
    ind = {p: np.exp(lp[p]) for p in PARAMS}
    ind.update(tlag=params.tlag, ftoci=params.ftoci, fster=params.fster)
    ev = dict(t_toci=None if t_toci is None else np.asarray(t_toci, float),
              t_ster=None if t_ster is None else np.asarray(t_ster, float),
              dose_times=dose_times, dose_fractions=dose_fractions)
    lf = stein_log_curve(np.broadcast_to(times, (n, times.size)), ind, **ev)
    eps = rng.standard_normal(lf.shape) * params.sigma if residual else 0.0
    ly = lf + eps
    conc = np.exp(ly)
    ids = [f"SIM-{i + 1:04d}" for i in range(n)]
    blq = (conc < lloq) if lloq is not None else np.zeros_like(conc, dtype=bool)
    frame = pl.DataFrame({
        "subject_id": np.repeat(ids, times.size),
        "time": np.tile(times, n),
        "conc": np.where(blq, np.nan, conc).ravel(),
        "pred": np.exp(lf).ravel(),
        "lloq": np.full(n * times.size, np.nan if lloq is None else float(lloq)),
        "blq": blq.ravel(),
    }).with_columns(pl.col("conc").fill_nan(None), pl.col("lloq").fill_nan(None))
    extra = {}
    for name, v in (("t_toci", ev["t_toci"]), ("t_ster", ev["t_ster"])):
        if v is not None:
            extra[name] = np.broadcast_to(v, (n,)).astype(float)
    if extra:
        frame = frame.join(pl.DataFrame({"subject_id": ids, **extra}).with_columns(
            [pl.col(c).fill_nan(None) for c in extra]), on="subject_id", how="left")
    if not return_params:
        return frame
    truth = pl.DataFrame({"subject_id": ids, **{p: ind[p] for p in PARAMS}})
    if covariates is not None:
        truth = pl.concat([truth, covariates.drop("subject_id", strict=False)], how="horizontal")
    return frame, truth


# --------------------------------------------------------------------------------------------
# Per-subject fits
# --------------------------------------------------------------------------------------------


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


class SteinModel:
    """Per-subject maximum-likelihood fits of the Stein 2019 model (log scale, Beal M3 for BLQ).

    Parameters
    ----------
    sigma: residual SD on the log scale; ``None`` (default) estimates it per subject.
    fixed: ``{parameter: value}`` held fixed (not estimated), e.g. ``{"beta": 0.0032}``.
    prior: a :class:`PopulationParams` (e.g. ``STEIN_2019``) for MAP fits of sparse data.
    blq: ``"m3"`` (default), ``"drop"`` (M1) or ``"half"`` (BLQ set to LLOQ/2).
    blq_below_lloq: a reported value below its LLOQ is treated as BLQ.
    dose_handling: ``"first"`` (default) or ``"superpose"`` (see the module docstring).
    ftoci, fster, tlag: fixed model extensions (defaults: no effect, no lag).
    param: the observation parameter of a Study (``CARCOPY``).

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
        self.blq = blq
        self.blq_below_lloq = blq_below_lloq
        self.dose_handling = dose_handling
        self.extras = {"ftoci": ftoci, "fster": fster, "tlag": tlag}
        self.param = param

    def fit(self, data: Any, *, doses: pl.DataFrame | None = None,
            covariates: pl.DataFrame | None = None, progress: Progress | None = None) -> "SteinFit":
        """Fit every subject of ``data`` (a cartlab Study or a plain frame; see the module doc).

        ``progress(stage, done, total)`` is called after each subject."""
        d = _prepare(data, doses=doses, covariates=covariates, param=self.param, blq=self.blq,
                     blq_below_lloq=self.blq_below_lloq, dose_handling=self.dose_handling)
        est = [p for p in PARAMS if p not in self.fixed]
        fits = []
        for i in range(d.n):
            fits.append(self._fit_one(d.subset([i]), est))
            if progress is not None:
                progress(f"subject {d.ids[i]}", i + 1, d.n)
        return SteinFit(self, d, fits)

    # -- one subject ---------------------------------------------------------------------
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


def _plot_subjects(ax_list, obs: pl.DataFrame, curves: dict[str, tuple[np.ndarray, np.ndarray]], ids):
    for ax, sid in zip(ax_list, ids):
        o = obs.filter(pl.col("subject_id") == sid)
        q = o.filter(~pl.col("blq"))
        b = o.filter(pl.col("blq"))
        ax.plot(q["time"].to_numpy(), q["conc"].to_numpy(), "o", color="C0", ms=4, label="observed")
        if b.height:
            ax.plot(b["time"].to_numpy(), b["limit"].to_numpy(), "v", mfc="none", color="C3", ms=5,
                    label="BLQ (at LLOQ)")
        tg, cg = curves[sid]
        ax.plot(tg, cg, "-", color="C1", lw=1.5, label="fitted")
        ll = o["lloq"].drop_nulls()
        if ll.len():
            ax.axhline(float(ll[0]), color="0.6", ls=":", lw=1)
        ax.set_yscale("log")
        ax.set_title(sid, fontsize=8)
        ax.tick_params(labelsize=7)


def _observations_frame(d: _Data, log_ipred: np.ndarray, sigma: np.ndarray,
                        log_pred: np.ndarray | None = None) -> pl.DataFrame:
    """Every used observation with ipred (and pred), iwres on the log scale and its provenance."""
    m = d.mask
    sig = np.asarray(sigma, dtype=float)
    sig = np.broadcast_to(sig[:, None] if sig.ndim else sig, m.shape)[m]
    res = np.where(d.cens[m] == 0, (d.logy[m] - log_ipred[m]) / sig, np.nan)
    out = d.obs.with_columns(pl.Series("ipred", np.exp(log_ipred[m])),
                             pl.Series("iwres", res).fill_nan(None))
    if log_pred is not None:
        out = out.with_columns(pl.Series("pred", np.exp(log_pred[m])))
    cols = ["subject_id", "time", "conc", "lloq", "blq", "ipred", "iwres"] + (["pred"] if log_pred is not None else [])
    return out.select(*cols, *_PROVENANCE)


def _figure(figsize):
    """A matplotlib Figure on the Agg canvas (no pyplot state, as cartlab.report does)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _grid_axes(n: int, figsize=None):
    cols = min(4, n)
    rows = int(math.ceil(n / cols))
    fig = _figure(figsize or (max(3.2 * cols, 5.0), max(2.6 * rows, 3.6)))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()[:n]


class SteinFit:
    """Result of :meth:`SteinModel.fit` (one fit per subject)."""

    def __init__(self, model: SteinModel, data: _Data, fits: list[_SubjectFit]):
        self.model = model
        self.data = data
        self.fits = fits
        self._by_id = {f.subject_id: i for i, f in enumerate(fits)}

    @property
    def subject_ids(self) -> list[str]:
        return [f.subject_id for f in self.fits]

    @property
    def dropped(self) -> pl.DataFrame:
        """Input rows not used (pre-infusion, no value, ...), with the reason."""
        return self.data.dropped

    def _params(self, idx: Sequence[int]) -> dict[str, np.ndarray]:
        d = {p: np.array([self.fits[i].values[p] for i in idx]) for p in PARAMS}
        d.update(self.model.extras)
        return d

    def _idx(self, subject: Any) -> list[int]:
        if subject is None:
            return list(range(len(self.fits)))
        subs = [subject] if isinstance(subject, str) else list(subject)
        try:
            return [self._by_id[s] for s in subs]
        except KeyError as e:
            raise KeyError(f"unknown subject {e.args[0]!r}") from None

    def summary(self) -> pl.DataFrame:
        """One row per subject and parameter: estimate, SE (delta method), RSE%, 95% CI (from the
        log scale), ``fixed``, ``converged``; ``iiv`` is null (no population)."""
        rows = []
        for f in self.fits:
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

    def to_frame(self) -> pl.DataFrame:
        """One row per subject: parameters, derived quantities (rho, r0, doubling_time,
        t_half_alpha, t_half_beta, car_cmax, car_tmax, car_auc_0_28 -- analytical, from the fitted
        curve), sigma, n_obs, n_blq, nll, aic (log-scale likelihood), converged, message."""
        idx = list(range(len(self.fits)))
        p = self._params(idx)
        der = derived_quantities(p, **self.data.events())
        k = [len(f.est) + int(f.sigma_estimated) for f in self.fits]
        cols = {"subject_id": self.subject_ids, **{n: p[n] for n in PARAMS}}
        cols.update({n: np.asarray(v) for n, v in der.items()})
        cols.update(
            sigma=[f.sigma for f in self.fits],
            n_obs=[f.n_obs for f in self.fits],
            n_blq=[f.n_blq for f in self.fits],
            nll=[f.nll for f in self.fits],
            aic=[2 * f.nll + 2 * kk for f, kk in zip(self.fits, k)],
            converged=[f.converged for f in self.fits],
            message=[f.message for f in self.fits],
        )
        return pl.DataFrame(cols)

    def predict(self, times: Any, subject: Any = None) -> pl.DataFrame:
        """Fitted curves at ``times`` (days from the first infusion): subject_id, time, pred."""
        idx = self._idx(subject)
        times = np.asarray(times, dtype=float)
        p = self._params(idx)
        c = stein_curve(np.broadcast_to(times, (len(idx), times.size)), p, **self.data.events(idx))
        return pl.DataFrame({
            "subject_id": np.repeat([self.fits[i].subject_id for i in idx], times.size),
            "time": np.tile(times, len(idx)),
            "pred": c.ravel(),
        })

    def observations(self) -> pl.DataFrame:
        """Every observation used in the fit: subject_id, time, conc (null when BLQ), lloq, blq,
        ipred (the fitted curve), iwres ((log conc - log ipred) / sigma; null when BLQ) and the
        input row's provenance (source, src_file, src_row)."""
        p = self._params(list(range(len(self.fits))))
        lf = stein_log_curve(self.data.t, p, **self.data.events())
        return _observations_frame(self.data, lf, np.array([f.sigma for f in self.fits]))

    def plot(self, subject: Any = None, max_subjects: int = 12, figsize=None):
        """Observed (BLQ as open triangles at the LLOQ) vs fitted curve per subject; log scale."""
        idx = self._idx(subject)[:max_subjects]
        ids = [self.fits[i].subject_id for i in idx]
        tmax = float(self.data.obs["time"].max()) * 1.05 + 1
        tg = np.linspace(0, tmax, 400)
        pr = self.predict(tg, ids)
        curves = {s: (tg, pr.filter(pl.col("subject_id") == s)["pred"].to_numpy()) for s in ids}
        fig, axes = _grid_axes(len(ids), figsize)
        _plot_subjects(axes, self.data.obs, curves, ids)
        axes[0].legend(fontsize=6)
        fig.supxlabel("days from first infusion")
        fig.supylabel("transgene copies/ug")
        fig.tight_layout()
        return fig


# --------------------------------------------------------------------------------------------
# Population fit (SAEM)
# --------------------------------------------------------------------------------------------


def _covariate_design(cov: pl.DataFrame, spec: Mapping[str, Sequence[str]],
                      centers: Mapping[str, float] | None, est: Sequence[str]):
    """Per parameter design matrix [1, covariates...] and the covariate descriptions."""
    centers = dict(centers or {})
    n = cov.height

    def column(c: str) -> list[tuple[str, np.ndarray, str, float]]:
        if c not in cov.columns:
            raise ValueError(f"covariate {c!r} not found (available: {cov.columns[1:]})")
        s = cov[c]
        if s.null_count():
            who = cov.filter(pl.col(c).is_null())["subject_id"].to_list()
            raise ValueError(f"covariate {c!r} has missing values for {len(who)} subject(s): "
                             f"{', '.join(map(str, who[:10]))}{' ...' if len(who) > 10 else ''}")
        if s.dtype in (pl.String, pl.Categorical, pl.Enum):
            vals = s.cast(pl.String).to_list()
            levels = sorted(set(vals))
            counts = {lv: vals.count(lv) for lv in levels}
            ref = max(levels, key=lambda lv: (counts[lv], -levels.index(lv)))
            out = []
            for lv in levels:
                if lv == ref:
                    continue
                out.append((f"{c}[{lv}]", np.array([v == lv for v in vals], dtype=float),
                            f"binary: 1 if {c} == {lv!r} (reference {ref!r})", 0.0))
            return out
        v = s.cast(pl.Float64).to_numpy()
        if s.dtype == pl.Boolean or set(np.unique(v)) <= {0.0, 1.0}:
            return [(c, v, "binary (0/1)", 0.0)]
        ctr = float(centers.get(c, np.median(v)))
        return [(c, v - ctr, f"continuous, centered at {ctr:.6g}", ctr)]

    X = []
    names: list[list[str]] = []
    notes: list[list[str]] = []
    centers_out: dict[str, float] = {}
    for p in est:
        cols = [np.ones(n)]
        nm, nt = [], []
        for c in spec.get(p, ()):
            for name, v, note, ctr in column(c):
                cols.append(v)
                nm.append(name)
                nt.append(note)
                centers_out[name] = ctr
        X.append(np.column_stack(cols))
        names.append(nm)
        notes.append(nt)
    for p in spec:
        if p not in est:
            raise ValueError(f"covariates given for {p!r}, which is not an estimated parameter")
    return X, names, notes, centers_out


@dataclass
class _SaemState:
    b: list[np.ndarray]
    omega2: np.ndarray
    sigma: float


class SteinPopulationModel:
    """Population (nonlinear mixed-effects) fit of the Stein model by SAEM.

    Parameters
    ----------
    covariates: ``{parameter: [covariate, ...]}``, log-linear effects; a covariate is a column of
        the subject frame (Study: sex, age_years, weight_kg, disease, target, dose_total (CAR-T
        cells/kg, all infusions), log_dose, n_infusions, toci and steroid (0/1: any tocilizumab /
        corticosteroid; note they are post-infusion and confounded with CRS -- Stein modelled them
        as the time-varying Ftoci/Fster instead); plain frame: its extra columns or ``covariates=``
        of :meth:`fit`). Numeric 0/1 or boolean = binary; other numeric = continuous, centered at
        the median (or ``centers``); strings = one binary per non-reference level (reference =
        most frequent).
    fixed: parameters held fixed (no estimate, no IIV).
    init: initial typical values (default: :data:`STEIN_2019` theta); ``omega2_init`` (default 1
        for each), ``sigma_init`` (default 1).
    n_burn, n_smooth: SAEM iterations with step 1 and with decreasing step; ``n_post``: MCMC
        iterations at the estimate for the standard errors and conditional means.
    n_chains: MCMC chains per subject (default: enough for 50 subject-chains, the Monolix rule).
        More chains reduce the Monte-Carlo error of the estimates: for omega^2 of a parameter with
        high shrinkage (beta) the SAEM-seed-to-seed SD is ~6% with 1 chain and ~3% with 3 chains
        (500 subjects; statistical RSE ~12%).
    n_newton: optional stochastic-approximation Newton-Raphson steps after SAEM (Gu MG, Kong FH.
        *PNAS* 1998;95:7270-7274): theta += I^-1 score with the Louis information and the score
        by Fisher's identity, both from the post-phase draws (default 0: in our tests the SAEM end
        point was already within Monte-Carlo noise of the stationary point).
    kernels: MH iterations per SAEM iteration for the three kernels.
    """

    def __init__(
        self,
        *,
        covariates: Mapping[str, Sequence[str]] | None = None,
        centers: Mapping[str, float] | None = None,
        fixed: Mapping[str, float] | None = None,
        init: Mapping[str, float] | None = None,
        omega2_init: Mapping[str, float] | None = None,
        sigma_init: float = 1.0,
        n_burn: int = 300,
        n_smooth: int = 200,
        n_post: int = 150,
        n_newton: int = 0,
        n_chains: int | None = None,
        kernels: tuple[int, int, int] = (2, 2, 2),
        step_exponent: float = 0.8,
        anneal: bool = True,
        seed: int = 0,
        blq: str = "m3",
        blq_below_lloq: bool = True,
        dose_handling: str = "first",
        ftoci: float = 1.0,
        fster: float = 1.0,
        tlag: float = 0.0,
        param: str = "CARCOPY",
        compute_se: bool = True,
        compute_ll: bool = True,
        n_is: int = 1000,
    ):
        self.covariates = {k: list(v) for k, v in (covariates or {}).items()}
        self.centers = dict(centers or {})
        self.fixed = dict(fixed or {})
        self.init = dict(init or STEIN_2019.theta)
        self.omega2_init = dict(omega2_init or {})
        self.sigma_init = sigma_init
        self.n_burn, self.n_smooth, self.n_post = n_burn, n_smooth, n_post
        self.n_newton = n_newton
        self.n_chains = n_chains
        self.kernels = kernels
        self.step_exponent = step_exponent
        self.anneal = anneal
        self.seed = seed
        self.blq = blq
        self.blq_below_lloq = blq_below_lloq
        self.dose_handling = dose_handling
        self.extras = {"ftoci": ftoci, "fster": fster, "tlag": tlag}
        self.param = param
        self.compute_se = compute_se
        self.compute_ll = compute_ll
        self.n_is = n_is

    def fit(self, data: Any, *, doses: pl.DataFrame | None = None,
            covariates: pl.DataFrame | None = None, progress: Progress | None = None) -> "SteinPopulationFit":
        """Fit the population model to ``data`` (a cartlab Study or a plain frame).

        ``progress(stage, done, total)`` is called after each SAEM iteration and each iteration at
        the estimate (``total`` = n_burn + n_smooth + n_post + 1 for the log-likelihood)."""
        d = _prepare(data, doses=doses, covariates=covariates, param=self.param, blq=self.blq,
                     blq_below_lloq=self.blq_below_lloq, dose_handling=self.dose_handling)
        if d.n < 2:
            raise ValueError(f"a population fit needs at least 2 subjects with {self.param} data (got {d.n}); "
                             "fit a single subject with SteinModel (cartlab stein without --population)")
        est = [p for p in PARAMS if p not in self.fixed]
        X, cov_names, cov_notes, centers = _covariate_design(d.covariates, self.covariates, self.centers, est)
        rng = np.random.default_rng(self.seed)
        ev = _Evaluator(d, est, self.fixed, self.extras)
        n_chains = self.n_chains or max(1, int(math.ceil(50 / d.n)))
        total = self.n_burn + self.n_smooth + max(self.n_post, 1) + 1

        def tick(stage: str, done: int) -> None:
            if progress is not None:
                progress(stage, done, total)

        state, trace, phi, ll = self._saem(ev, X, est, rng, n_chains, tick=tick)
        post = self._post(ev, X, est, state, phi, ll, rng, tick=tick, offset=self.n_burn + self.n_smooth)
        polish = []
        dims = [x.shape[1] for x in X]
        for k in range(self.n_newton if self.compute_se else 0):
            info, score = post["fim"], post["score"]
            if not (np.all(np.isfinite(info)) and np.linalg.eigvalsh(info).min() > 0):
                break
            delta = np.linalg.solve(info, score)
            polish.append({"step": k, "score_chi2": float(score @ delta)})
            state = self._newton_step(state, delta, dims)
            post = self._post(ev, X, est, state, post["phi"], post["ll"], rng)
        if "score" in post and np.all(np.isfinite(post["fim"])) and np.linalg.eigvalsh(post["fim"]).min() > 0:
            polish.append({"step": len(polish),
                           "score_chi2": float(post["score"] @ np.linalg.solve(post["fim"], post["score"]))})
        mu = _mu(X, state.b)
        # EBE (conditional mode), batched
        om = state.omega2

        def obj(z):
            return -ev.loglik(z, state.sigma) + 0.5 * np.sum((z - mu) ** 2 / om, axis=-1)

        start = post["cond_mean"].copy()
        f_cm, f_best = obj(start), obj(post["best"])
        start[f_best < f_cm] = post["best"][f_best < f_cm]
        ebe, _ = _batched_newton(obj, start)
        fim = post.get("fim")
        ll_is, ll_se = self._is_loglik(ev, mu, state, post, rng) if self.compute_ll else (None, None)
        tick("done", total)
        return SteinPopulationFit(
            model=self, data=d, est=est, X=X, cov_names=cov_names, cov_notes=cov_notes, centers=centers,
            state=state, trace=pl.DataFrame(trace), ebe=ebe, cond_mean=post["cond_mean"],
            cond_cov=post["cond_cov"], fim=fim, loglik=ll_is, loglik_se=ll_se, n_chains=n_chains,
            polish=pl.DataFrame(polish, schema={"step": pl.Int64, "score_chi2": pl.Float64}),
        )

    # -- SAEM -------------------------------------------------------------------------------
    def _mcmc(self, ev, phi, ll, mu, state, steps, rng):
        om = state.omega2
        sd = np.sqrt(om)
        sig = state.sigma
        k1, k2, k3 = self.kernels
        P = phi.shape[-1]

        def lprior(z):
            return -0.5 * np.sum((z - mu) ** 2 / om, axis=-1)

        for _ in range(k1):
            prop = mu + sd * rng.standard_normal(phi.shape)
            llp = ev.loglik(prop, sig)
            acc = np.log(rng.uniform(size=ll.shape)) < llp - ll
            phi = np.where(acc[..., None], prop, phi)
            ll = np.where(acc, llp, ll)
        lp = lprior(phi)
        for _ in range(k2):
            prop = phi + steps["rw"] * sd * rng.standard_normal(phi.shape)
            llp, lpp = ev.loglik(prop, sig), lprior(prop)
            acc = np.log(rng.uniform(size=ll.shape)) < (llp + lpp) - (ll + lp)
            phi = np.where(acc[..., None], prop, phi)
            ll, lp = np.where(acc, llp, ll), np.where(acc, lpp, lp)
            steps["rw"] *= 1 + 0.4 * (acc.mean() - 0.4)
        for _ in range(k3):
            for j in range(P):
                prop = phi.copy()
                prop[..., j] += steps["cw"][j] * sd[j] * rng.standard_normal(phi.shape[:-1])
                llp, lpp = ev.loglik(prop, sig), lprior(prop)
                acc = np.log(rng.uniform(size=ll.shape)) < (llp + lpp) - (ll + lp)
                phi = np.where(acc[..., None], prop, phi)
                ll, lp = np.where(acc, llp, ll), np.where(acc, lpp, lp)
                steps["cw"][j] *= 1 + 0.4 * (acc.mean() - 0.4)
        return phi, ll

    def _saem(self, ev: _Evaluator, X, est, rng, n_chains, tick=None):
        n, P = ev.d.n, len(est)
        b = [np.zeros(x.shape[1]) for x in X]
        for i, p in enumerate(est):
            b[i][0] = math.log(float(self.init[p]))
        om = np.array([float(self.omega2_init.get(p, 1.0)) for p in est])
        state = _SaemState(b=b, omega2=om, sigma=float(self.sigma_init))
        XtX_inv = [np.linalg.pinv(x.T @ x) for x in X]
        mu = _mu(X, state.b)
        phi = mu + np.sqrt(om) * rng.standard_normal((n_chains, n, P))
        ll = ev.loglik(phi, state.sigma)
        steps = {"rw": 0.5, "cw": np.full(P, 0.5)}
        nobs = float(ev.nobs.sum())
        s1 = np.zeros((n, P))
        s2 = np.zeros(P)
        s3 = 0.0
        trace = []
        total = self.n_burn + self.n_smooth
        for it in range(total):
            gamma = 1.0 if it < self.n_burn else 1.0 / (it - self.n_burn + 1) ** self.step_exponent
            phi, ll = self._mcmc(ev, phi, ll, mu, state, steps, rng)
            logf = ev.logf(phi)
            y = ev.impute(logf, state.sigma, rng)
            ss = float(np.mean(np.sum(np.where(ev.d.mask, (y - logf) ** 2, 0.0), axis=(-1, -2))))
            s1 = s1 + gamma * (phi.mean(axis=0) - s1)
            s2 = s2 + gamma * (np.mean(np.sum(phi**2, axis=-2), axis=0) - s2)
            s3 = s3 + gamma * (ss - s3)
            new_b, new_om = [], np.zeros(P)
            for j in range(P):
                xs = X[j].T @ s1[:, j]
                bj = XtX_inv[j] @ xs
                new_b.append(bj)
                new_om[j] = (s2[j] - 2 * bj @ xs + bj @ (X[j].T @ X[j]) @ bj) / n
            new_om = np.maximum(new_om, 1e-8)
            new_sig2 = max(s3 / nobs, 1e-10)
            if self.anneal and it < self.n_burn:
                new_om = np.maximum(new_om, 0.95 * state.omega2)
                new_sig2 = max(new_sig2, 0.95**2 * state.sigma**2)
            state = _SaemState(b=new_b, omega2=new_om, sigma=math.sqrt(new_sig2))
            mu = _mu(X, state.b)
            ll = ev.loglik(phi, state.sigma)
            row = {"iteration": it + 1}
            for j, p in enumerate(est):
                row[p] = math.exp(state.b[j][0])
                row[f"omega2_{p}"] = float(state.omega2[j])
            row["sigma"] = state.sigma
            trace.append(row)
            if tick is not None:
                tick("SAEM burn-in" if it < self.n_burn else "SAEM smoothing", it + 1)
        return state, trace, phi, ll

    def _post(self, ev: _Evaluator, X, est, state: _SaemState, phi, ll, rng, tick=None, offset: int = 0):
        """MCMC at the estimate: conditional means/covariances, best draws, Louis' FIM."""
        n, P = ev.d.n, len(est)
        mu = _mu(X, state.b)
        om = state.omega2
        s2 = state.sigma**2
        dims = [x.shape[1] for x in X]
        Q = sum(dims) + P + 1
        offs = np.cumsum([0] + dims)
        steps = {"rw": 0.5, "cw": np.full(P, 0.5)}
        sum_phi = np.zeros((n, P))
        sum_pp = np.zeros((n, P, P))
        sum_g = np.zeros((n, Q))
        sum_gg = np.zeros((n, Q, Q))
        sum_H = np.zeros((Q, Q))
        best = phi[0].copy()
        best_lp = np.full(n, -np.inf)
        ni = ev.nobs.astype(float)
        count = 0
        for _ in range(10):  # warm-up at the final estimate (the chains start from the SAEM state)
            phi, ll = self._mcmc(ev, phi, ll, mu, state, steps, rng)
        for k in range(max(self.n_post, 1)):
            phi, ll = self._mcmc(ev, phi, ll, mu, state, steps, rng)
            if tick is not None:
                tick("standard errors", offset + k + 1)
            C = phi.shape[0]
            lpost = ll - 0.5 * np.sum((phi - mu) ** 2 / om, axis=-1)
            for c in range(C):
                better = lpost[c] > best_lp
                best[better] = phi[c][better]
                best_lp[better] = lpost[c][better]
            sum_phi += phi.sum(axis=0)
            sum_pp += np.einsum("cnp,cnq->npq", phi, phi)
            count += C
            if not self.compute_se:
                continue
            logf = ev.logf(phi)
            y = ev.impute(logf, state.sigma, rng)
            SS = np.sum(np.where(ev.d.mask, (y - logf) ** 2, 0.0), axis=-1)  # (C, N)
            g = np.zeros((C, n, Q))
            Hs = np.zeros((Q, Q))
            for j in range(P):
                r = phi[..., j] - mu[:, j]
                x = X[j]
                sl = slice(offs[j], offs[j + 1])
                g[..., sl] = x[None] * (r / om[j])[..., None]
                g[..., offs[-1] + j] = -0.5 / om[j] + 0.5 * r**2 / om[j] ** 2
                Hs[sl, sl] += -(x.T @ x) / om[j] * C
                hb = -(x * r.sum(axis=0)[:, None]).sum(axis=0) / om[j] ** 2
                Hs[sl, offs[-1] + j] += hb
                Hs[offs[-1] + j, sl] += hb
                Hs[offs[-1] + j, offs[-1] + j] += np.sum(0.5 / om[j] ** 2 - r**2 / om[j] ** 3)
            g[..., Q - 1] = -0.5 * ni / s2 + 0.5 * SS / s2**2
            Hs[Q - 1, Q - 1] += np.sum(0.5 * ni / s2**2 - SS / s2**3)
            sum_g += g.sum(axis=0)
            sum_gg += np.einsum("cnp,cnq->npq", g, g)
            sum_H += Hs
        cm = sum_phi / count
        ccov = sum_pp / count - np.einsum("np,nq->npq", cm, cm)
        out = {"cond_mean": cm, "cond_cov": ccov, "best": best, "phi": phi, "ll": ll}
        if self.compute_se:
            Eg = sum_g / count
            cov_g = sum_gg / count - np.einsum("np,nq->npq", Eg, Eg)
            info = -sum_H / count - cov_g.sum(axis=0)
            out["fim"] = info
            out["score"] = Eg.sum(axis=0)  # Fisher's identity: the observed-data score
        return out

    @staticmethod
    def _newton_step(state: _SaemState, delta: np.ndarray, dims: list[int]) -> _SaemState:
        """theta + delta on (b, omega2, sigma2), damped so that variances stay above 30% of theirs."""
        P = len(dims)
        offs = np.cumsum([0] + dims)
        om, s2 = state.omega2, state.sigma**2
        d_om, d_s2 = delta[offs[-1]: offs[-1] + P], delta[-1]
        scale = 1.0
        for cur, d in list(zip(om, d_om)) + [(s2, d_s2)]:
            if cur + d < 0.3 * cur:
                scale = min(scale, 0.7 * cur / -d)
        delta = delta * scale
        b = [state.b[j] + delta[offs[j]: offs[j + 1]] for j in range(P)]
        return _SaemState(b=b, omega2=om + delta[offs[-1]: offs[-1] + P], sigma=math.sqrt(s2 + delta[-1]))

    def _is_loglik(self, ev: _Evaluator, mu, state: _SaemState, post, rng, nu: float = 5.0):
        """Observed-data log-likelihood by importance sampling.

        Proposal: a defensive mixture (Hesterberg T. *Technometrics* 1995;37:185-194) of a
        multivariate t (nu = 5) on each subject's conditional mean with twice its conditional
        covariance (weight 0.9) and the population distribution N(mu_i, Omega) (weight 0.1), which
        bounds the weights. Returns (log-likelihood, Monte-Carlo SE)."""
        n, P = mu.shape
        m = post["cond_mean"]
        S = 2.0 * post["cond_cov"] + 1e-8 * np.eye(P)
        S = S + 1e-6 * np.eye(P) * np.maximum(np.trace(S, axis1=1, axis2=2) / P, 1e-6)[:, None, None]
        L = np.linalg.cholesky(S)
        logdetS = 2 * np.sum(np.log(np.diagonal(L, axis1=1, axis2=2)), axis=1)
        om = state.omega2
        sd = np.sqrt(om)
        lnorm = -0.5 * np.sum(np.log(2 * np.pi * om))
        c_t = special.gammaln((nu + P) / 2) - special.gammaln(nu / 2) - 0.5 * P * math.log(nu * math.pi)
        M = self.n_is
        bs = 50
        chunks = []
        for start in range(0, M, bs):
            k = min(bs, M - start)
            z = rng.standard_normal((k, n, P))
            w = rng.chisquare(nu, size=(k, n)) / nu
            from_t = np.einsum("npq,knq->knp", L, z) / np.sqrt(w)[..., None] + m
            from_prior = mu + sd * rng.standard_normal((k, n, P))
            phi = np.where((rng.uniform(size=(k, n)) < 0.9)[..., None], from_t, from_prior)
            llik = ev.loglik(phi, state.sigma)
            lprior = -0.5 * np.sum((phi - mu) ** 2 / om, axis=-1) + lnorm
            sol = np.linalg.solve(L[None], (phi - m)[..., None])[..., 0]
            lt = c_t - 0.5 * logdetS - 0.5 * (nu + P) * np.log1p(np.sum(sol**2, axis=-1) / nu)
            lq = np.logaddexp(math.log(0.9) + lt, math.log(0.1) + lprior)
            chunks.append(llik + lprior - lq)
        lw = np.concatenate(chunks, axis=0)
        lli = special.logsumexp(lw, axis=0) - math.log(M)
        wn = np.exp(lw - lli)  # weights / their mean
        se = math.sqrt(float(np.sum(np.var(wn, axis=0) / M)))
        return float(np.sum(lli)), se


def _mu(X, b) -> np.ndarray:
    return np.column_stack([x @ bj for x, bj in zip(X, b)])


class SteinPopulationFit:
    """Result of :meth:`SteinPopulationModel.fit`."""

    def __init__(self, *, model, data, est, X, cov_names, cov_notes, centers, state, trace, ebe, cond_mean,
                 cond_cov, fim, loglik, loglik_se, n_chains, polish):
        self.model = model
        self.data = data
        self.est = est
        self.X = X
        self.cov_names = cov_names
        self.cov_notes = cov_notes
        self.centers = centers
        self.state = state
        self.trace = trace
        self.ebe = ebe
        self.cond_mean = cond_mean
        self.cond_cov = cond_cov
        self.fim = fim
        #: observed-data log-likelihood (log scale, importance sampling) and its Monte-Carlo SE
        self.loglik = loglik
        self.loglik_se = loglik_se
        self.n_chains = n_chains
        #: convergence diagnostic: score' I^-1 score of the observed-data score (Fisher's identity,
        #: estimated from the post-phase draws) at the estimate (last row) and before each optional
        #: Newton step; at a converged estimate it reflects Monte-Carlo noise only (<< n_parameters
        #: means the SAEM end point is within MC noise of the likelihood's stationary point)
        self.polish = polish
        self._cov = None
        if fim is not None:
            w = np.linalg.eigvalsh(fim)
            self.fim_ok = bool(np.all(np.isfinite(fim)) and w.min() > 0)
            self._cov = np.linalg.inv(fim) if self.fim_ok else np.linalg.pinv(fim)
        else:
            self.fim_ok = False
        self._by_id = {s: i for i, s in enumerate(data.ids)}

    # -- parameters -------------------------------------------------------------------------
    @property
    def theta(self) -> dict[str, float]:
        out = {p: math.exp(self.state.b[j][0]) for j, p in enumerate(self.est)}
        out.update(self.model.fixed)
        return {p: out[p] for p in PARAMS}

    @property
    def omega2(self) -> dict[str, float]:
        return {p: float(self.state.omega2[j]) for j, p in enumerate(self.est)}

    @property
    def sigma(self) -> float:
        return self.state.sigma

    @property
    def covariate_effects(self) -> dict[tuple[str, str], float]:
        return {(p, c): float(self.state.b[j][1 + k]) for j, p in enumerate(self.est)
                for k, c in enumerate(self.cov_names[j])}

    @property
    def params(self) -> PopulationParams:
        """The fitted population as :class:`PopulationParams` (e.g. to :func:`simulate`)."""
        return PopulationParams(
            theta=self.theta, omega2={p: self.omega2.get(p, 0.0) for p in PARAMS}, sigma=self.sigma,
            ftoci=self.model.extras["ftoci"], fster=self.model.extras["fster"], tlag=self.model.extras["tlag"],
            covariate_effects=self.covariate_effects, covariate_centers=dict(self.centers),
            citation="cartlab SAEM fit", note="",
        )

    @property
    def aic(self) -> float | None:
        if self.loglik is None:
            return None
        return -2 * self.loglik + 2 * self.n_parameters

    @property
    def bic(self) -> float | None:
        if self.loglik is None:
            return None
        return -2 * self.loglik + math.log(self.data.n) * self.n_parameters

    @property
    def n_parameters(self) -> int:
        return sum(x.shape[1] for x in self.X) + len(self.est) + 1

    def _se(self) -> np.ndarray | None:
        if self._cov is None:
            return None
        d = np.diag(self._cov)
        return np.sqrt(np.where(d > 0, d, np.nan))

    def shrinkage(self) -> dict[str, float]:
        """eta-shrinkage (SD-based, %) of the EBEs."""
        eta = self.ebe - _mu(self.X, self.state.b)
        return {p: float(100 * (1 - np.std(eta[:, j]) / math.sqrt(self.state.omega2[j])))
                for j, p in enumerate(self.est)}

    def summary(self) -> pl.DataFrame:
        """Population parameters: kind (theta / covariate / residual), estimate, se, rse_pct,
        omega2 (IIV variance) with its se and rse_pct, iiv_cv_pct (sqrt(exp(omega2)-1)),
        shrinkage_pct and a note. Theta SEs by the delta method from log theta."""
        se = self._se()
        dims = [x.shape[1] for x in self.X]
        offs = np.cumsum([0] + dims)
        P = len(self.est)
        shr = self.shrinkage()
        rows = []
        for j, p in enumerate(self.est):
            th = math.exp(self.state.b[j][0])
            s_log = float(se[offs[j]]) if se is not None else None
            om = float(self.state.omega2[j])
            s_om = float(se[offs[-1] + j]) if se is not None else None
            rows.append(dict(parameter=p, kind="theta", estimate=th,
                             se=None if s_log is None else th * s_log,
                             rse_pct=None if s_log is None else 100 * s_log,
                             omega2=om, omega2_se=s_om,
                             omega2_rse_pct=None if s_om is None else 100 * s_om / om,
                             iiv_cv_pct=100 * math.sqrt(math.expm1(om)), shrinkage_pct=shr[p],
                             note="typical value (median); IIV log-normal"))
        for j, p in enumerate(self.est):
            for k, c in enumerate(self.cov_names[j]):
                v = float(self.state.b[j][1 + k])
                s = float(se[offs[j] + 1 + k]) if se is not None else None
                rows.append(dict(parameter=f"{p}~{c}", kind="covariate", estimate=v, se=s,
                                 rse_pct=None if s is None or v == 0 else 100 * abs(s / v),
                                 omega2=None, omega2_se=None, omega2_rse_pct=None, iiv_cv_pct=None,
                                 shrinkage_pct=None,
                                 note=f"log P = log theta + beta * x; {self.cov_notes[j][k]}"))
        for p, v in self.model.fixed.items():
            rows.append(dict(parameter=p, kind="fixed", estimate=float(v), se=None, rse_pct=None, omega2=None,
                             omega2_se=None, omega2_rse_pct=None, iiv_cv_pct=None, shrinkage_pct=None,
                             note="fixed, not estimated"))
        sig = self.state.sigma
        s_sig2 = float(se[offs[-1] + P]) if se is not None else None
        s_sig = None if s_sig2 is None else s_sig2 / (2 * sig)
        rows.append(dict(parameter="sigma", kind="residual", estimate=sig, se=s_sig,
                         rse_pct=None if s_sig is None else 100 * s_sig / sig, omega2=None, omega2_se=None,
                         omega2_rse_pct=None, iiv_cv_pct=None, shrinkage_pct=None,
                         note="additive SD on the natural-log scale"))
        schema = {"parameter": pl.String, "kind": pl.String, "estimate": pl.Float64, "se": pl.Float64,
                  "rse_pct": pl.Float64, "omega2": pl.Float64, "omega2_se": pl.Float64,
                  "omega2_rse_pct": pl.Float64, "iiv_cv_pct": pl.Float64, "shrinkage_pct": pl.Float64,
                  "note": pl.String}
        return pl.DataFrame(rows, schema=schema)

    # -- individuals --------------------------------------------------------------------------
    def _ind_params(self, phi: np.ndarray) -> dict[str, np.ndarray]:
        ev = _Evaluator(self.data, self.est, self.model.fixed, self.model.extras)
        return ev.params(phi)

    def individual_parameters(self, kind: str = "mode") -> pl.DataFrame:
        """EBEs (``mode``, MAP) or conditional means (``mean``) on the natural scale."""
        phi = self.ebe if kind == "mode" else self.cond_mean
        p = self._ind_params(phi)
        return pl.DataFrame({"subject_id": self.data.ids, **{k: p[k] for k in PARAMS}})

    def to_frame(self) -> pl.DataFrame:
        """Per subject: EBE parameters (conditional modes), eta_<param>, derived quantities (rho,
        r0, doubling_time, t_half_alpha, t_half_beta, car_cmax, car_tmax, car_auc_0_28 from the
        individual curve, analytical), n_obs, n_blq."""
        p = self._ind_params(self.ebe)
        der = derived_quantities(p, **self.data.events())
        eta = self.ebe - _mu(self.X, self.state.b)
        cols = {"subject_id": self.data.ids, **{k: p[k] for k in PARAMS}}
        cols.update({f"eta_{q}": eta[:, j] for j, q in enumerate(self.est)})
        cols.update({k: np.asarray(v) for k, v in der.items()})
        cols["n_obs"] = self.data.mask.sum(axis=1)
        cols["n_blq"] = (self.data.mask & (self.data.cens != 0)).sum(axis=1)
        return pl.DataFrame(cols)

    def observations(self) -> pl.DataFrame:
        """Every observation used in the fit: subject_id, time, conc (null when BLQ), lloq, blq,
        ipred (individual EBE curve), iwres ((log conc - log ipred) / sigma; null when BLQ), pred
        (population curve at the subject's covariates, eta = 0) and the input row's provenance."""
        ev = _Evaluator(self.data, self.est, self.model.fixed, self.model.extras)
        return _observations_frame(self.data, ev.logf(self.ebe), self.state.sigma,
                                   log_pred=ev.logf(_mu(self.X, self.state.b)))

    def predict(self, times: Any, subject: Any = None) -> pl.DataFrame:
        """Typical curve (``subject=None``: reference covariates, no comedication, one infusion at 0)
        or individual EBE curves: subject_id, time, pred."""
        times = np.asarray(times, dtype=float)
        if subject is None:
            c = stein_curve(times, self.params.typical())
            return pl.DataFrame({"subject_id": ["typical"] * times.size, "time": times, "pred": c})
        subs = [subject] if isinstance(subject, str) else list(subject)
        idx = [self._by_id[s] for s in subs]
        p = self._ind_params(self.ebe[idx])
        c = stein_curve(np.broadcast_to(times, (len(idx), times.size)), p, **self.data.events(idx))
        return pl.DataFrame({"subject_id": np.repeat(subs, times.size), "time": np.tile(times, len(idx)),
                             "pred": c.ravel()})

    def simulate_design(self, n_rep: int = 200, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Replicates of the observed design from the fitted population: (log y, blq) arrays of
        shape (n_rep, N, J), with the subjects' covariates, comedication and doses."""
        rng = np.random.default_rng(seed)
        d = self.data
        n, P = d.n, len(self.est)
        mu = _mu(self.X, self.state.b)
        eta = rng.standard_normal((n_rep, n, P)) * np.sqrt(self.state.omega2)
        ev = _Evaluator(d, self.est, self.model.fixed, self.model.extras)
        lf = ev.logf(mu + eta)
        ly = lf + self.state.sigma * rng.standard_normal(lf.shape)
        blq = ly < self._log_lloq()
        return ly, blq

    def _log_lloq(self) -> np.ndarray:
        """log LLOQ per (subject, sample) of the design (-inf where unknown)."""
        d = self.data
        out = np.full(d.t.shape, -np.inf)
        pos = {s: i for i, s in enumerate(d.ids)}
        fill = np.zeros(d.n, dtype=int)
        for sid, lq in zip(d.obs["subject_id"].to_list(), d.obs["lloq"].to_list()):
            i = pos[sid]
            if lq is not None and lq > 0:
                out[i, fill[i]] = math.log(lq)
            fill[i] += 1
        return out

    def vpc(self, n_rep: int = 200, seed: int = 1, quantiles: Sequence[float] = (0.05, 0.5, 0.95),
            pi: float = 0.90, bins: Sequence[float] | None = None) -> pl.DataFrame:
        """Visual predictive check table (Bergstrand & Karlsson 2009 censoring rule: a percentile
        is BLQ (null) when at least that fraction of the bin is BLQ).

        Columns: bin, time (median sample time), n, quantile, observed, sim_lo, sim_median,
        sim_hi (the ``pi`` interval of the simulated percentile), obs_blq_frac, sim_blq_lo,
        sim_blq_median, sim_blq_hi."""
        d = self.data
        ly, blq = self.simulate_design(n_rep, seed)
        lloq = self._log_lloq()
        t = d.t[d.mask]
        if bins is None:
            ut = np.unique(t)
            if ut.size <= 30:
                edges = np.concatenate([[ut[0] - 1e-9], (ut[:-1] + ut[1:]) / 2, [ut[-1] + 1e-9]])
            else:
                edges = np.unique(np.quantile(t, np.linspace(0, 1, 13)))
                edges[0] -= 1e-9
                edges[-1] += 1e-9
        else:
            edges = np.asarray(bins, dtype=float)
        obs_ly = np.where(d.cens != 0, lloq, d.logy)[d.mask]
        obs_blq = (d.cens != 0)[d.mask]
        lloq_m = lloq[d.mask]
        sim_ly = np.where(blq, lloq, ly)[:, d.mask]
        sim_blq = blq[:, d.mask]
        b = np.digitize(t, edges) - 1
        lo_q, hi_q = (1 - pi) / 2, 1 - (1 - pi) / 2
        rows = []
        for k in range(len(edges) - 1):
            sel = b == k
            if not sel.any():
                continue
            o = obs_ly[sel]
            ob = obs_blq[sel]
            s = sim_ly[:, sel]
            sb = sim_blq[:, sel]
            ll = lloq_m[sel]
            ofrac = float(ob.mean())
            sfrac = sb.mean(axis=1)
            for q in quantiles:
                censored = np.isfinite(ll).any()
                ov = float(np.exp(np.quantile(np.maximum(o, ll), q))) if ofrac < q or not censored else None
                sv = np.exp(np.quantile(np.maximum(s, ll[None]), q, axis=1))
                sv = np.where(sfrac >= q, np.nan, sv) if censored else sv
                ok = np.isfinite(sv)
                qs = np.quantile(sv[ok], [lo_q, 0.5, hi_q]) if ok.mean() >= 0.5 else [np.nan] * 3
                rows.append(dict(bin=k, time=float(np.median(t[sel])), n=int(sel.sum()), quantile=q,
                                 observed=ov, sim_lo=float(qs[0]), sim_median=float(qs[1]), sim_hi=float(qs[2]),
                                 obs_blq_frac=ofrac, sim_blq_lo=float(np.quantile(sfrac, lo_q)),
                                 sim_blq_median=float(np.median(sfrac)),
                                 sim_blq_hi=float(np.quantile(sfrac, hi_q))))
        return pl.DataFrame(rows).with_columns(
            [pl.col(c).fill_nan(None) for c in ("sim_lo", "sim_median", "sim_hi")])

    def plot(self, kind: str = "vpc", subject: Any = None, max_subjects: int = 12, n_rep: int = 200,
             seed: int = 1, figsize=None, vpc: pl.DataFrame | None = None):
        """``kind="vpc"``: simulated 5/50/95th percentile bands (90% PI) vs observed percentiles,
        with the observations and the LLOQ (``vpc``: a table from :meth:`vpc` to draw instead of
        simulating again); ``kind="fits"``: observed vs individual (EBE) and typical curves per
        subject."""
        if kind == "fits":
            ids = (self.data.ids if subject is None else
                   ([subject] if isinstance(subject, str) else list(subject)))[:max_subjects]
            tg = np.linspace(0, float(self.data.obs["time"].max()) * 1.05 + 1, 400)
            pr = self.predict(tg, ids)
            curves = {s: (tg, pr.filter(pl.col("subject_id") == s)["pred"].to_numpy()) for s in ids}
            fig, axes = _grid_axes(len(ids), figsize)
            _plot_subjects(axes, self.data.obs, curves, ids)
            typ = self.predict(tg)["pred"].to_numpy()
            for ax in axes:
                ax.plot(tg, typ, "--", color="0.5", lw=1, label="typical")
            axes[0].legend(fontsize=6)
            fig.supxlabel("days from first infusion")
            fig.supylabel("transgene copies/ug")
            fig.tight_layout()
            return fig
        if kind != "vpc":
            raise ValueError("kind must be 'vpc' or 'fits'")
        v = self.vpc(n_rep=n_rep, seed=seed) if vpc is None else vpc
        fig = _figure(figsize or (7, 4.5))
        ax = fig.subplots()
        o = self.data.obs
        q = o.filter(~pl.col("blq"))
        ax.plot(q["time"].to_numpy(), q["conc"].to_numpy(), ".", color="0.7", ms=3, label="observed")
        colors = {0.05: "C0", 0.5: "C3", 0.95: "C0"}
        for qq in sorted(v["quantile"].unique().to_list()):
            s = v.filter(pl.col("quantile") == qq).sort("time")
            tt = s["time"].to_numpy()
            col = colors.get(qq, "C2")
            ax.fill_between(tt, s["sim_lo"].fill_null(np.nan).to_numpy(), s["sim_hi"].fill_null(np.nan).to_numpy(),
                            color=col, alpha=0.2, lw=0, label=f"simulated P{qq * 100:g} ({100 * 0.9:g}% PI)")
            ax.plot(tt, s["observed"].fill_null(np.nan).to_numpy(), "-o", color=col, ms=3, lw=1.2,
                    label=f"observed P{qq * 100:g}")
        ll = o["lloq"].drop_nulls()
        if ll.len():
            ax.axhline(float(ll.median()), color="k", ls=":", lw=1, label="LLOQ")
        ax.set_yscale("log")
        ax.set_xlabel("days from first infusion")
        ax.set_ylabel("transgene copies/ug")
        ax.set_title("VPC (Stein model, SAEM fit)")
        ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        return fig
