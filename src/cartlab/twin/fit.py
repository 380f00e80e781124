"""A patient's twin (:class:`TwinModel`): MAP fit of the CD7 CAR-T ODE model to one subject's course,
a Laplace posterior corrected by sampling-importance-resampling, and forecasts of the rest of the
course with the clinic rule active after the forecast day (design §4, issue 16).

Estimator convention of :class:`cartlab.kinetics.stein.SteinModel`: ``fit()`` returns the model;
fitted attributes end with ``_``; ``summary`` is a property; ``plot()`` draws the fit.

Objective (negative log posterior, log-parameter space ``x = log theta``):
  * observations (design §2.1): log-normal CARCOPY (sigma 0.56, Stein 2019 residual) with Beal M3
    for values below the LLOQ (as :mod:`cartlab.kinetics.stein`); log-normal IL6, CRP, counts, MRD;
    Gaussian TEMP and SYSBP; binomial marrow/blood blast differentials (500 / 100 cells); flow MRD
    with a between-method error (:mod:`cartlab.twin.mrd_obs`, review 40 A1);
  * the population prior: log-normal, median = the parameter table's value, log-SD = its IIV SD;
  * optional soft anchors (:data:`SEED_ANCHORS`): qualitative statements of a paper turned into
    Gaussian penalties on summaries of the noise-free course (fever days, hypotension, neutropenia,
    CD7+ fall, peak day).
Recorded tocilizumab/steroid doses are inputs (``clinic=None``); gradients and Hessians are finite
differences evaluated in ONE batched :func:`cartlab.twin.model.simulate` call each.

Posterior: Laplace (Gaussian at the MAP, Hessian covariance) corrected by SIR with a multivariate-t
(5 df) proposal. Why not MCMC by default: the same MAP + Hessian convention as the Stein fitter;
~3,000 solves per patient instead of ~10^5 (the forecast calibration runs 500 patients); log
parameters make the posterior nearly Gaussian and the SIR weights repair moderate skew, with their
effective sample size (ESS) as a diagnostic (ESS < 200: warned). ``posterior="mcmc"`` runs an
adaptive random-walk Metropolis (batched chains) for checking the Laplace answer.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy import optimize, special

from cartlab.errors import CartlabWarning, InputError
from cartlab.twin.baseline_prior import BASELINE_BLQ, MISSING_BASELINE, blq_baseline, drawn_baseline, drawn_text
from cartlab.twin.forecast import (
    defaults_text,
    events_until,
    forecast_notes,
    forecast_problems,
    forecast_table,
    n_effective,
    recorded_clinic,
    subject_target,
    with_recorded,
    withhold,
)
from cartlab.twin.mrd_obs import binomial_loglik, binomial_residual
from cartlab.twin.posterior import importance_draws, pd_cov, rw_metropolis
from cartlab.twin.quality import (
    CAR_BIAS_IWRES,
    car_ceiling_text,
    fit_quality,
    intervals_reliable,
    misfit_text,
    optimiser_message,
)

__all__ = ["OBS_MODEL", "SEED_ANCHORS", "Anchor", "TwinModel", "binomial_residual", "course_summaries"]

#: observation model per canonical param: (kind, spread). lognormal: SD of log value; normal: SD in
#: the canonical unit; binomial: cells counted (value a percentage; MRDFCM a fraction). The SAME noise
#: model that simulates patients (``twin/criteria/schedule_v1.yaml``, design §2.1; all [A] except
#: CARCOPY: Stein 2019 residual SD 0.56 on the log scale, kinetics.md §1.1), so a forecast of a
#: simulated patient is well specified.
def _obs_model() -> dict[str, tuple[str, float]]:
    from cartlab.twin.observe import load_schedule

    out = {}
    for p, spec in load_schedule().noise.items():
        if spec["kind"] in ("lognormal", "normal"):
            out[p] = (spec["kind"], float(spec["sd"]))
        elif spec["kind"] == "binomial" and p != "TGTBLAST":  # CD7 on blasts: baseline input, not fitted
            out[p] = ("binomial", float(spec["cells"]))
    return out


OBS_MODEL: dict[str, tuple[str, float]] = _obs_model()


def _zero_limits() -> dict[str, float]:
    """Half the reporting resolution of each log-normal param (``decimals`` of the schedule's noise
    spec; 0.005 for NEUT reported to 0.01), the limit a reported 0 is censored at."""
    from cartlab.twin.observe import load_schedule

    return {p: 0.5 * 10.0 ** -int(spec["decimals"]) for p, spec in load_schedule().noise.items()
            if OBS_MODEL.get(p, ("",))[0] == "lognormal" and "decimals" in spec}


_ZERO_LIMIT = _zero_limits()
#: reporting resolution of the log-normal params (NEUT to 0.01, PLAT to 1): a rounded value carries an
#: extra error of variance resolution^2 / 12, added on the log scale by the delta method
_RESOLUTION = {p: 2.0 * v for p, v in _ZERO_LIMIT.items()}
FD_STEP = 3e-3     # central-difference step in log-parameters (gradients); Hessians use 5e-3
_LOG_FLOOR = 1e-12  # a latent value of 0 on the log scale (extinct CAR-T, no leukaemia)
_T_GRID = np.arange(-7.0, 60.25, 0.25)  # the course grid for anchors, plots and forecasts (q6h)


@dataclass(frozen=True)
class Anchor:
    """A qualitative fact as a soft penalty 0.5*((stat - target)/sd)^2, one-sided when ``side`` is
    ``">="`` / ``"<="`` (no penalty on the right side of ``target``)."""

    name: str
    stat: str        # a key of course_summaries()
    target: float
    sd: float
    side: str        # "==", ">=", "<="
    source: str      # case-facts.md line


#: the seed paper's qualitative anchors (case-facts.md, design §4.3); tolerances are [A].
SEED_ANCHORS: tuple[Anchor, ...] = (
    Anchor("fever days", "fever_days", 12.0, 1.0, "==", "case-facts.md: fever lasting 12 days"),
    Anchor("hypotension (norepinephrine)", "sbp_min", 85.0, 3.0, "<=",
           "case-facts.md: CRS grade 3, hypotension treated with norepinephrine"),
    Anchor("neutropenia >= 14 d in d0-30", "anc_days_lt05", 14.0, 1.5, ">=",
           "case-facts.md: neutropenia persisted 38 days; early ICAHT >= 3"),
    Anchor("CD7+ T fall", "log_cd7t_nadir_ratio", math.log(0.2), 0.3, "<=",
           "case-facts.md: CD7+ T and NK cells fell markedly"),
    Anchor("CD7+ NK fall", "log_cd7nk_nadir_ratio", math.log(0.2), 0.3, "<=",
           "case-facts.md: CD7+ T and NK cells fell markedly"),
    Anchor("CAR peak on day 14", "log_peak_over_d14", 0.0, 0.15, "==",
           "case-facts.md: peak 183,945 copies/ug on day 14"),
)


def _soft_count(x: np.ndarray, thr: float, width: float, axis: int = -1) -> np.ndarray:
    return special.expit((x - thr) / width).sum(axis=axis)


def course_summaries(t: np.ndarray, latent: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Smooth per-row summaries of a noise-free course on a q6h grid ``t`` (days): fever days (daily
    max TEMP >= 38 in d0-28), min SYSBP, days ANC < 0.5 in d0-30, CD7+ nadir / baseline (log), and
    log(CAR peak / CAR on day 14). Smooth (logistic counts) so a finite-difference gradient exists."""
    out: dict[str, np.ndarray] = {}
    days = np.arange(0, 29)
    idx = np.searchsorted(t, days)
    if "TEMP" in latent:
        tm = latent["TEMP"]
        dmax = np.stack([tm[:, i:i + 4].max(axis=1) for i in idx], axis=1)
        out["fever_days"] = _soft_count(dmax, 38.0, 0.1)
    w = (t >= 0) & (t <= 28)
    if "SYSBP" in latent:
        out["sbp_min"] = latent["SYSBP"][:, w].min(axis=1)
    if "NEUT" in latent:
        d30 = np.searchsorted(t, np.arange(0, 31))
        ln = np.log(np.maximum(latent["NEUT"][:, d30], _LOG_FLOOR))
        out["anc_days_lt05"] = _soft_count(-ln, -math.log(0.5), 0.1)
    base = np.searchsorted(t, 0.0)
    for p, key in (("CD7T", "log_cd7t_nadir_ratio"), ("CD7NK", "log_cd7nk_nadir_ratio")):
        if p in latent:
            y = np.maximum(latent[p], _LOG_FLOOR)
            out[key] = np.log(y[:, w].min(axis=1)) - np.log(y[:, base - 28] if base >= 28 else y[:, 0])
    if "CARCOPY" in latent:
        c = np.maximum(latent["CARCOPY"], _LOG_FLOOR)
        out["log_peak_over_d14"] = np.log(c[:, w].max(axis=1)) - np.log(c[:, np.searchsorted(t, 14.0)])
    return out


def _anchor_penalty(anchors, summ: dict[str, np.ndarray], n: int) -> np.ndarray:
    pen = np.zeros(n)
    for a in anchors:
        z = (summ[a.stat] - a.target) / a.sd
        if a.side == ">=":
            z = np.minimum(z, 0.0)
        elif a.side == "<=":
            z = np.maximum(z, 0.0)
        pen += 0.5 * z * z
    return pen


# ------------------------------------------------------------------------------------------------
# data of one subject as arrays


@dataclass
class _Obs:
    """The fitted observations of one subject: one entry per row."""

    param: np.ndarray      # (N,) str
    day: np.ndarray        # (N,)
    value: np.ndarray      # (N,) NaN when censored
    limit: np.ndarray      # (N,) censoring limit (LLOQ) or NaN
    cens: np.ndarray       # (N,) -1 below limit, 0 quantified
    frame: pl.DataFrame    # the input rows (provenance)

    @property
    def t_out(self) -> np.ndarray:
        return np.unique(np.concatenate([self.day, _T_GRID]))


def _subject_obs(study, subject_id: str, sources, until_day: float | None) -> _Obs:
    o = study.observations.filter(pl.col("subject_id") == subject_id)
    o = o.filter(pl.col("param").is_in(list(OBS_MODEL)) & pl.col("day").is_not_null())
    if sources is not None:
        o = o.filter(pl.col("source").is_in(list(sources)))
    if until_day is not None:
        o = o.filter(pl.col("day") <= until_day)
    cens = (pl.col("censor") == "<").fill_null(False)
    o = o.filter(pl.col("value").is_not_null() | cens).with_columns(
        _cens=cens, _limit=pl.coalesce("censor_limit", "lloq"))
    o = o.filter(~pl.col("_cens") | pl.col("_limit").is_not_null())
    # a log-normal count reported as 0 (e.g. NEUT 0.00 = undetectable) is below its reporting
    # resolution: censored at half of it (Beal M3), never log(0)
    zero = pl.col("param").is_in([p for p, (k, _) in OBS_MODEL.items() if k == "lognormal"]) & (pl.col("value") <= 0)
    o = o.with_columns(_limit=pl.when(zero).then(pl.col("param").replace_strict(_ZERO_LIMIT, default=None))
                       .otherwise(pl.col("_limit")), _cens=pl.col("_cens") | zero)
    o = o.filter(~pl.col("_cens") | pl.col("_limit").is_not_null())
    return _Obs(param=o["param"].to_numpy(), day=o["day"].to_numpy().astype(float),
                value=o["value"].fill_null(float("nan")).to_numpy().astype(float),
                limit=o["_limit"].fill_null(float("nan")).to_numpy().astype(float),
                cens=np.where(o["_cens"].to_numpy(), -1, 0), frame=o.drop("_cens", "_limit"))


def _obs_loglik(obs: _Obs, t_out: np.ndarray, latent: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-row log-likelihood (B, N) and the prediction (B, N) of every observation."""
    n_rows = next(iter(latent.values())).shape[0]
    ll = np.zeros((n_rows, obs.param.size))
    pred = np.zeros_like(ll)
    ti = np.searchsorted(t_out, obs.day)
    for p in np.unique(obs.param):
        j = np.flatnonzero(obs.param == p)
        if p not in latent:
            raise InputError(f"the twin model has no observable {p}")
        f = latent[p][:, ti[j]]
        pred[:, j] = f
        kind, s = OBS_MODEL[p]
        y, lim, c = obs.value[j], obs.limit[j], obs.cens[j]
        if kind == "lognormal":
            lf = np.log(np.maximum(f, _LOG_FLOOR))
            q = c == 0
            res = _RESOLUTION.get(p, 0.0)
            s = np.sqrt(s * s + res * res / 12.0 / np.maximum(np.nan_to_num(y, nan=1.0), res / 2 or 1e-12) ** 2)
            with np.errstate(divide="ignore", invalid="ignore"):
                r = (np.log(np.maximum(y, _LOG_FLOOR)) - lf) / s
            llq = -0.5 * r * r - np.log(s) - 0.5 * math.log(2 * math.pi)
            llc = special.log_ndtr((np.log(np.where(q, 1.0, lim)) - lf) / s)  # Beal M3: P(Y < LLOQ)
            ll[:, j] = np.where(q, llq, llc)
        elif kind == "normal":
            r = (y - f) / s
            ll[:, j] = -0.5 * r * r - math.log(s) - 0.5 * math.log(2 * math.pi)
        else:  # binomial on s cells counted (percent; MRDFCM a fraction, with its between-method error)
            ll[:, j] = binomial_loglik(p, f, y, lim, c, s)
    return np.where(np.isfinite(ll), ll, -1e10), pred


# ------------------------------------------------------------------------------------------------
# the objective


def _repeat_rows(obj, idx: np.ndarray):
    """A per-patient dataclass of arrays (Baseline) with its rows taken at ``idx``."""
    if hasattr(obj, "take"):
        return obj.take(idx)
    return dataclasses.replace(obj, **{f.name: np.asarray(getattr(obj, f.name))[idx]
                                       for f in dataclasses.fields(obj)})


class _Objective:
    """Negative log posterior of log-parameters (batched): every call is one ``simulate``."""

    def __init__(self, table, theta0, free, prior_sd, baseline, events, obs: _Obs, anchors, clinic=None,
                 recorded=None):
        from cartlab.twin.model import latent_observables, simulate

        self._simulate, self._latent_obs = simulate, latent_observables
        #: (days, {key: (1, D) bool}) recorded antipyretic / vasopressor days: with clinic=None they act on
        #: the observation side (TEMP, SYSBP) through the model's one observable map
        self.recorded = recorded
        self.table, self.theta0, self.free = table, np.asarray(theta0, float), np.asarray(free)
        self.pm = np.log(self.theta0[self.free])
        self.psd = np.asarray(prior_sd, float)
        self.baseline, self.events, self.obs, self.anchors, self.clinic = baseline, events, obs, anchors, clinic
        # the q6h course grid only when anchors need it (it costs output points, not steps)
        self.t_out = obs.t_out if anchors else np.unique(obs.day) if obs.day.size else np.array([0.0])
        self.n_calls = 0

    def theta(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(x)
        th = np.repeat(self.theta0[None, :], x.shape[0], axis=0)
        th[:, self.free] = np.exp(x)
        return th

    def simulate(self, x: np.ndarray, t_out=None, clinic=None):
        th = self.theta(x)
        idx = np.zeros(th.shape[0], dtype=int)
        self.n_calls += 1
        clinic = clinic if clinic is not None else self.clinic
        t = self.t_out if t_out is None else t_out
        base, ev = _repeat_rows(self.baseline, idx), self.events.take(idx)
        db = getattr(self, "draw_baseline", None)   # per-draw baseline of a forecast (twin.baseline_prior, B2)
        base = db if db is not None and len(db) == th.shape[0] else base
        rec = self.recorded is not None and clinic is None
        sim = self._simulate(th, base, ev, t, clinic=clinic, keep_states=rec)
        if rec:
            days, flags = self.recorded
            arrays = {k: np.repeat(np.asarray(v, bool)[:1], th.shape[0], axis=0) for k, v in flags.items()}
            sim.latent = self._latent_obs(sim.states, th, base, np.asarray(t, float), arrays, clinic_days=days,
                                          toci_times=ev.toci_day)
            sim.states = None
        return sim

    def _latent(self, x: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Latent course of every row; rows the solver cannot integrate (extreme draws) are found by
        bisection and returned as failed (they get an infinite objective), the rest are kept."""
        try:
            return self.simulate(x).latent, np.zeros(x.shape[0], bool)
        except (RuntimeError, FloatingPointError, ValueError):
            if x.shape[0] == 1:
                return None, np.ones(1, bool)
        h = x.shape[0] // 2
        (la, fa), (lb, fb) = self._latent(x[:h]), self._latent(x[h:])
        if la is None and lb is None:
            return None, np.ones(x.shape[0], bool)
        ref = la if la is not None else lb
        out = {}
        for k, v in ref.items():
            a = la[k] if la is not None else np.full((h, v.shape[1]), np.nan)
            b = lb[k] if lb is not None else np.full((x.shape[0] - h, v.shape[1]), np.nan)
            out[k] = np.vstack([a, b])
        return out, np.concatenate([fa, fb])

    def parts(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.atleast_2d(x)
        latent, failed = self._latent(x)
        if latent is None:
            inf = np.full(x.shape[0], 1e12)
            return {"nll": inf, "loglik": -inf, "prior": inf, "anchors": inf,
                    "pred": np.full((x.shape[0], self.obs.param.size), np.nan)}
        latent = {k: np.where(failed[:, None], np.nan, v) for k, v in latent.items()}
        sim = type("_S", (), {"latent": latent})()
        ll, pred = _obs_loglik(self.obs, self.t_out, sim.latent)
        prior = 0.5 * (((x - self.pm) / self.psd) ** 2).sum(axis=1)
        pen = np.zeros(x.shape[0])
        if self.anchors:
            g = np.isin(self.t_out, _T_GRID)
            summ = course_summaries(self.t_out[g], {k: v[:, g] for k, v in sim.latent.items()})
            pen = _anchor_penalty(self.anchors, summ, x.shape[0])
        nll = -ll.sum(axis=1) + prior + pen
        nll[failed] = 1e12
        return {"nll": np.where(np.isfinite(nll), nll, 1e12), "loglik": ll.sum(axis=1), "prior": prior,
                "anchors": pen, "pred": pred}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.parts(x)["nll"]

    def value_and_grad(self, x: np.ndarray, h: float = FD_STEP) -> tuple[float, np.ndarray]:
        """f and its central finite-difference gradient from one batched solve (2k+1 rows)."""
        k = x.size
        E = np.eye(k) * h
        f = self(np.vstack([x[None, :], x + E, x - E]))
        return float(f[0]), (f[1:k + 1] - f[k + 1:]) / (2 * h)

    def hessian(self, x: np.ndarray, h: float = 5e-3) -> np.ndarray:
        """Central finite-difference Hessian from one batched solve (2k^2 + 1 rows)."""
        k = x.size
        E = np.eye(k) * h
        pts = [x]
        pts += [x + E[i] for i in range(k)] + [x - E[i] for i in range(k)]
        pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
        for i, j in pairs:
            pts += [x + E[i] + E[j], x - E[i] - E[j]]
        f = self(np.vstack(pts))
        f0, fp, fm = f[0], f[1:k + 1], f[k + 1:2 * k + 1]
        H = np.diag((fp - 2 * f0 + fm) / h**2)
        rest = f[2 * k + 1:]
        for n, (i, j) in enumerate(pairs):  # f(x+hi+hj) + f(x-hi-hj) - f(x+hi) - f(x-hi) - f(x+hj) - f(x-hj) + 2 f0
            v = (rest[2 * n] + rest[2 * n + 1] - fp[i] - fm[i] - fp[j] - fm[j] + 2 * f0) / (2 * h * h)
            H[i, j] = H[j, i] = v
        return H


# ------------------------------------------------------------------------------------------------
# the estimator


def thin_draws(draws: np.ndarray, n: int | None) -> np.ndarray:
    """``n`` posterior draws evenly spaced over ``draws`` (all when ``n`` is None or not smaller), not
    the first ``n``: SIR draws come sorted by proposal and MCMC draws in iteration order, so a prefix
    is not a sample of the posterior (session 33)."""
    if n is None or n >= draws.shape[0]:
        return draws
    if n < 1:
        raise InputError(f"n_draws must be at least 1, not {n}")
    return draws[np.unique(np.linspace(0, draws.shape[0] - 1, int(n)).round().astype(np.int64))]


def forecast_draws(m, n_draws: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The posterior draws a forecast simulates, and their weights (None: equal). A Laplace + SIR fit
    without ``n_draws``: every importance draw with its weight (those above 1e-6 of the largest), as
    the forecast calibration (docs/twin.md) measured, since resampling loses the tails to duplicates
    (session 34; before, the resampled draws with equal weights). MCMC, or ``n_draws`` given: the
    draws kept, evenly thinned to ``n_draws``, equal weights."""
    w = getattr(m, "is_weights_", None)
    if n_draws is not None or m.posterior == "mcmc" or w is None:
        return thin_draws(m.posterior_x_, n_draws), None
    keep = w > 1e-6 * w.max()
    return m.is_draws_[keep], w[keep] / w[keep].sum()


class TwinModel:
    """A patient's digital twin: MAP fit with the population prior, Laplace+SIR (or MCMC) posterior.

    Parameters
    ----------
    prior: a parameter table name or :class:`cartlab.twin.params.ParamTable` (population medians
        and log-normal IIV SDs; the SDs are the prior log-SDs). Default ``"cd7_twin_v1"``.
    fixed: ``{name: value}`` held fixed; the parameters estimated are those with IIV SD > 0 not fixed.
    posterior: ``"laplace"`` (default; Laplace + SIR) or ``"mcmc"`` (adaptive random-walk Metropolis).
    sources: only observation rows with these ``source`` labels are fitted (e.g. ``("paper",)``);
        ``None`` = all rows. Doses and interventions are inputs and always used.
    anchors: soft pseudo-observations (:data:`SEED_ANCHORS` for the seed case), default none.
    n_starts, n_sir, n_draws, seed, maxiter: optimiser starts, SIR proposal size, posterior draws kept,
        random seed (same seed, same result), L-BFGS-B iterations per start.
    missing_baseline: ``"integrate"`` (default): a forecast draws a missing weight / marrow blasts from the
        population prior per draw (:mod:`cartlab.twin.baseline_prior`); ``"default"``: the table's default.
    baseline_blq: a baseline value reported below its limit ("<1.5"): ``"half_lloq"`` (default) the limit / 2,
        ``"lloq"`` the limit, ``"missing"`` the population default (``baseline_blq_used_`` names them).

    Fitted attributes (after :meth:`fit`): ``params_`` (one row per parameter: name, unit, prior,
    estimate, free), ``x_`` (MAP log-parameters of the free ones), ``cov_`` (log-scale covariance),
    ``posterior_`` ((n, P) natural-scale draws), ``ess_`` (SIR effective sample size),
    ``observations_`` (rows fitted with ipred and iwres), ``fit_quality_`` (per parameter: RMS
    standardised residual and whether the twin describes it, :mod:`cartlab.twin.quality`),
    ``intervals_reliable_`` (the posterior draws resolve a 90% interval), ``baseline_defaults_used_``
    (baseline values the data lack and the population default replaced: name -> value, unit, what was
    empty, citation; each fit warns of them), ``anchors_`` (anchor
    statistics at the MAP), ``nll_``, ``converged_``, ``message_``; ``summary`` (SE, RSE, 95% CI,
    shrinkage). After :meth:`forecast`: ``forecast_``, ``forecast_reliable_`` and ``forecast_notes_``
    (why the intervals should not be read as they stand; each also a ``CartlabWarning``). Before
    :meth:`fit`, ``summary``, ``plot()``, ``forecast()`` and the other results raise
    ``AttributeError: this TwinModel is not fitted yet: call fit() first`` (as the Stein fitters); a
    failed :meth:`fit` leaves the model as it was.
    """

    def __init__(self, prior: Any = "cd7_twin_v1", fixed: dict[str, float] | None = None, posterior: str = "laplace",
                 sources=None, anchors=(), n_starts: int = 3, n_sir: int = 2000, n_draws: int = 1000, seed: int = 0,
                 maxiter: int = 200, allow_other_target: bool = False, missing_baseline: str = "integrate",
                 baseline_blq: str = "half_lloq"):
        if posterior not in ("laplace", "mcmc"):
            raise InputError(f"posterior must be laplace or mcmc, not {posterior!r}")
        self.prior, self.fixed, self.posterior = prior, dict(fixed or {}), posterior
        self.sources = None if sources is None else tuple([sources] if isinstance(sources, str) else sources)
        self.anchors, self.n_starts, self.n_sir, self.n_draws, self.seed = tuple(anchors), n_starts, n_sir, n_draws, seed
        self.maxiter = maxiter
        self.allow_other_target = bool(allow_other_target)
        if missing_baseline not in MISSING_BASELINE:
            raise InputError(f"missing_baseline must be one of {', '.join(MISSING_BASELINE)}, not {missing_baseline!r}")
        self.missing_baseline = missing_baseline   # twin.baseline_prior: "integrate" (default) or "default"
        if baseline_blq not in BASELINE_BLQ:
            raise InputError(f"baseline_blq must be one of {', '.join(BASELINE_BLQ)}, not {baseline_blq!r}")
        self.baseline_blq = baseline_blq           # twin.baseline_prior.blq_baseline (review 47 B6)

    # -- setup
    def _table(self):
        from cartlab.twin.params import load_params

        return load_params(self.prior) if isinstance(self.prior, str) else self.prior

    def _setup(self, study, subject_id: str, until_day: float | None) -> _Objective:
        from cartlab.twin.model import Baseline, Events

        if subject_id not in study.subject_ids:
            raise InputError(f"subject {subject_id!r} is not in the study")
        self.target_ = subject_target(study, subject_id)
        if self.target_ is None and not self.allow_other_target:  # missing is not "CD7"
            raise InputError(f"subjects.target is empty for {subject_id} (or the column is absent): the twin models "
                             "CD7 CAR-T therapy, and an unknown target is not taken as CD7. Give the subject's target, "
                             "or use --allow-other-target (allow_other_target=True) to fit the CD7 model anyway "
                             "(the forecast is then flagged)")
        if self.target_ is not None and self.target_.upper() != "CD7" and not self.allow_other_target:
            raise InputError(f"{subject_id} is a {self.target_} subject (subjects.target = {self.target_}); the twin "
                             "models CD7 CAR-T therapy (CD7 antigen pool, CD7+ blast and T/NK kill), so its fit would "
                             "not describe this subject. Use --allow-other-target (allow_other_target=True) to fit "
                             "the CD7 model anyway")
        table = self._table()
        unknown = set(self.fixed) - set(table.names)
        if unknown:
            raise InputError(f"unknown parameters in fixed: {sorted(unknown)}")
        theta0 = table.vector().astype(float).copy()
        for k, v in self.fixed.items():
            theta0[table.index(k)] = float(v)
        sd = table.iiv_sd()
        free = np.array([i for i, n in enumerate(table.names) if sd[i] > 0 and n not in self.fixed], dtype=int)
        obs = _subject_obs(study, subject_id, self.sources, until_day)
        if obs.param.size == 0 and not self.anchors:
            raise InputError(f"subject {subject_id!r} has no observation the twin can fit"
                             + (f" with source in {list(self.sources)}" if self.sources else ""))
        base_study = study.subject(subject_id)
        o = base_study.observations
        # the baseline params recorded with another source: left out by ``sources``, not missing (review 47 nu7)
        self._left_out = set() if self.sources is None else set(o.filter(
            ~pl.col("source").is_in(list(self.sources)) & (pl.col("day") <= 0) & pl.col("value").is_not_null())["param"])
        if self.sources is not None:
            base_study = dataclasses.replace(base_study, observations=o.filter(pl.col("source").is_in(list(self.sources))))
        baseline, self.baseline_blq_used_ = blq_baseline(base_study, subject_id, Baseline.from_study(
            base_study, [subject_id]), self.baseline_blq)
        self._baseline_defaults(baseline, subject_id)
        events = Events.from_study(study, [subject_id])
        cells = np.asarray(events.car_t_cells, dtype=float)
        if not (np.isfinite(cells) & (cells > 0)).any():  # no dose is not "no CAR-T": the fit would be of nothing
            raise InputError(f"subject {subject_id!r} has no CAR-T dose with its amount in doses.csv (agent, day, "
                             "dose in cells or cells/kg): the twin simulates the infused cells, so it cannot fit "
                             "or forecast this subject without them", hint="add the CAR-T infusion(s) to doses.csv")
        if until_day is not None:
            events = events_until(events, until_day)
        days = np.arange(-30.0, 121.0)
        flags = recorded_clinic(study, subject_id, days)
        if until_day is not None:
            flags = {k: v & (days <= until_day)[None, :] for k, v in flags.items()}
        return _Objective(table, theta0, free, sd[free], baseline, events, obs, self.anchors, recorded=(days, flags))

    def _baseline_defaults(self, baseline, subject_id: str) -> None:
        """``baseline_defaults_used_``: the baseline values the subject's data lack, replaced by the
        parameter table's ``baseline_defaults`` (missing is not negative: said, recorded and, for the
        weight or the marrow blasts, a forecast problem); a warning names them."""
        from cartlab.errors import SubjectsWarning
        from cartlab.twin.model import _BASE_PARAMS

        used, left = baseline.defaults_used(0), getattr(self, "_left_out", set())
        for f, v in used.items():
            if self.sources is not None and v["missing"].startswith("observations"):
                v["missing"] += f" with source in {list(self.sources)}" + (
                    " (recorded with another source, left out)"
                    if _BASE_PARAMS.get(f) in left else "")
        self.baseline_defaults_used_ = used
        if used:
            warnings.warn(SubjectsWarning(
                "baseline value(s) missing for {subjects}, the population default assumed: " + defaults_text(used)
                + " (the fit's baseline_defaults_used, twin_fit.json); " + ("values recorded with another source are "
                "left out by sources (--sources): include that source to use them" if any(
                    _BASE_PARAMS.get(f) in left for f in used) else "add the measurements if they exist"),
                [subject_id], "twin_fit.json (baseline_defaults_used)"), stacklevel=4)

    # -- fit
    def _fitted_state(self) -> dict[str, Any]:
        """The attributes a fit sets (the ``_``-suffixed results, the objective), by name."""
        return {k: v for k, v in vars(self).items()
                if k == "_objective" or (k.endswith("_") and not k.startswith("_"))}

    def _require_fitted(self) -> _Objective:
        """The fitted objective; AttributeError before :meth:`fit` (as the Stein fitters)."""
        ob = vars(self).get("_objective")
        if ob is None:
            raise AttributeError(f"this {type(self).__name__} is not fitted yet: call fit() first")
        return ob

    def fit(self, study, subject_id: str, *, until_day: float | None = None) -> TwinModel:
        """Fit the twin to ``subject_id`` of ``study`` (observations up to ``until_day`` when given).

        A fit replaces every fitted attribute (a forecast of the previous fit is dropped). When it
        fails (an invalid subject, no data to fit, ...) the model is left as it was: it still
        describes the previous fit, or stays unfitted."""
        before = self._fitted_state()
        for k in before:
            delattr(self, k)
        try:
            ob = self._setup(study, subject_id, until_day)
            self.study_, self.subject_id_, self.until_day_ = study, subject_id, until_day
            self._fit_objective(ob)
            self._fitted_frames()
        except BaseException:
            for k in self._fitted_state():
                delattr(self, k)
            vars(self).update(before)
            raise
        return self

    def _fit_objective(self, ob: _Objective) -> None:
        """MAP, Laplace covariance and posterior draws of an objective (no frames)."""
        self._objective = ob
        k = ob.free.size
        blo, bhi = ob.table.bounds()
        lo, hi = np.log(np.maximum(blo[ob.free], 1e-300)), np.log(bhi[ob.free])
        lo, hi = np.minimum(lo, ob.pm - 1e-6), np.maximum(hi, ob.pm + 1e-6)
        ob.bounds_x = (lo, hi)   # the posterior is truncated to the table's bounds (SIR / MCMC reject outside)
        rng = np.random.default_rng(self.seed)
        starts = [ob.pm.copy()]
        for _ in range(max(self.n_starts - 1, 0)):
            starts.append(np.clip(ob.pm + rng.standard_normal(k) * ob.psd, lo, hi))
        # screen the starts in one call, optimise the best two
        f0 = ob(np.vstack(starts))
        order = np.argsort(f0)[:min(2, len(starts))]
        best = None
        for i in order:
            r = optimize.minimize(ob.value_and_grad, starts[i], jac=True, method="L-BFGS-B",
                                  bounds=list(zip(lo, hi)), options={"maxiter": self.maxiter})
            if best is None or r.fun < best.fun:
                best = r
        # polish: restart L-BFGS-B from the optimum (fresh curvature memory; finite-difference gradients
        # can stop the first run early on a "relative reduction" criterion)
        for _ in range(2):
            r = optimize.minimize(ob.value_and_grad, best.x, jac=True, method="L-BFGS-B", bounds=list(zip(lo, hi)),
                                  options={"maxiter": self.maxiter})
            if r.fun >= best.fun - 1e-3:
                break
            best = r
        x = best.x
        H = ob.hessian(x)
        cov, pd = pd_cov(H, ob.psd)
        self.x_, self.cov_, self.nll_ = x, cov, float(best.fun)
        gnorm = float(np.max(np.abs(best.jac))) if best.jac is not None else float("nan")
        at_bound = bool(np.any(np.isclose(x, lo, atol=1e-6) | np.isclose(x, hi, atol=1e-6)))
        self.converged_ = bool(best.success and pd and not at_bound)
        why = [m for m in ("" if pd else "Hessian not positive definite (covariance regularised)",
                           "estimate at a bound" if at_bound else "") if m]
        if best.success and why:  # judged not converged although the optimiser calls it a success: why first
            self.message_ = f"{'; '.join(why)}; max |grad| {gnorm:.2g}, although {optimiser_message(best)}"
        else:
            self.message_ = "; ".join([optimiser_message(best), *why, f"max |grad| {gnorm:.2g}"])
        self.theta_ = ob.theta(x)[0]
        self._posterior(rng)

    def _posterior(self, rng: np.random.Generator) -> None:
        ob = self._objective
        if self.posterior == "mcmc":
            draws = rw_metropolis(ob, self.x_, self.cov_, rng, n_keep=self.n_draws)
            self.ess_ = float("nan")
            self.is_draws_, self.is_weights_ = draws, np.full(len(draws), 1.0 / len(draws))
        else:
            xs, w = importance_draws(ob, self.x_, self.cov_, self.n_sir, rng)
            self.ess_ = float(1.0 / np.sum(w * w))
            if self.ess_ < self.n_sir / 10:
                # adaptive importance sampling, one more round: the proposal re-centred and re-scaled
                # on the weighted draws (regularised towards the Laplace covariance)
                mu = w @ xs
                c = (xs - mu).T @ ((xs - mu) * w[:, None])
                xs2, w2 = importance_draws(ob, mu, 0.5 * c + 0.5 * self.cov_, self.n_sir, rng)
                ess2 = float(1.0 / np.sum(w2 * w2))
                if ess2 >= self.ess_:   # keep the better of the two rounds
                    xs, w, self.ess_ = xs2, w2, ess2
            if self.ess_ < 200:
                warnings.warn(f"SIR effective sample size {self.ess_:.0f} < 200: the Laplace approximation is poor "
                              "for this subject; consider posterior='mcmc' (cartlab twin fit --posterior mcmc)",
                              CartlabWarning, stacklevel=3)
            self.is_draws_, self.is_weights_ = xs, w
            # systematic resampling
            u = (rng.uniform() + np.arange(self.n_draws)) / self.n_draws
            draws = xs[np.minimum(np.searchsorted(np.cumsum(w), u), self.n_sir - 1)]
        self.posterior_x_ = draws
        self.posterior_ = ob.theta(draws)
        self.n_unique_draws_ = int(np.unique(draws, axis=0).shape[0])

    def _fitted_frames(self) -> None:
        ob = self._objective
        tab = ob.table
        prt = ob.parts(self.x_[None, :])
        names = list(tab.names)
        free = {int(i) for i in ob.free}
        self.params_ = pl.DataFrame({
            "parameter": names,
            "prior": ob.theta0.tolist(),
            "estimate": self.theta_.tolist(),
            "free": [i in free for i in range(len(names))],
        })
        kind = np.array([OBS_MODEL[p][0] for p in ob.obs.param]) if ob.obs.param.size else np.array([], str)
        sd = np.array([OBS_MODEL[p][1] for p in ob.obs.param]) if ob.obs.param.size else np.array([])
        ipred = prt["pred"][0]
        with np.errstate(divide="ignore", invalid="ignore"):
            iw = np.where(kind == "lognormal", (np.log(ob.obs.value) - np.log(np.maximum(ipred, _LOG_FLOOR))) / sd,
                          np.where(kind == "normal", (ob.obs.value - ipred) / sd,
                                   binomial_residual(ob.obs.param, ob.obs.value, ipred, sd, kind == "binomial")))
        iw = np.where(ob.obs.cens != 0, np.nan, iw)
        keep = [c for c in ("subject_id", "day", "param", "value", "unit", "censor", "lloq", "source", "src_file",
                            "src_row") if c in ob.obs.frame.columns]
        self.observations_ = ob.obs.frame.select(keep).with_columns(
            pl.Series("ipred", ipred, dtype=pl.Float64), pl.Series("iwres", iw, dtype=pl.Float64).fill_nan(None))
        self.fit_quality_ = fit_quality(self.observations_)
        self.intervals_reliable_ = intervals_reliable(self.posterior, self.ess_)
        if (bad := misfit_text(self.fit_quality_)) is not None:
            warnings.warn(f"the twin does not describe {bad}: the model cannot follow these measurements of this "
                          "subject, so its fit, and forecasts that depend on them, are not to be trusted",
                          CartlabWarning, stacklevel=3)
        th = dict(zip(ob.table.names, self.theta_))   # review 40 B3: a measured CARCOPY above the model's ceiling
        ceil = car_ceiling_text(self.observations_, th["VCN"], th["genomes_per_ug"]) if "VCN" in th else None
        if ceil is not None:
            warnings.warn(ceil, CartlabWarning, stacklevel=3)
        self.car_ceiling_ = ceil
        sim = ob.simulate(self.x_[None, :], t_out=_T_GRID)
        self.course_ = sim
        summ = course_summaries(_T_GRID, sim.latent)
        self.anchors_ = pl.DataFrame([{"anchor": a.name, "statistic": a.stat, "target": a.target, "side": a.side,
                                       "sd": a.sd, "value": float(summ[a.stat][0]), "source": a.source}
                                      for a in self.anchors],
                                     schema={"anchor": pl.String, "statistic": pl.String, "target": pl.Float64,
                                             "side": pl.String, "sd": pl.Float64, "value": pl.Float64,
                                             "source": pl.String})
        self.objective_ = {k: float(prt[k][0]) for k in ("nll", "loglik", "prior", "anchors")}

    @property
    def summary(self) -> pl.DataFrame:
        """One row per estimated parameter: estimate, SE (log scale), RSE %, 95% CI (Laplace, clipped to the
        parameter's bounds), posterior median, ``shrinkage`` = 1 - posterior SD / prior SD of the log
        parameter (posterior SD of the posterior draws: 0 = the data say nothing beyond the prior, 1 = the
        data pin the parameter; negative = the draws are wider than the prior). Shrinkage and the posterior
        median are null when the draws do not resolve the posterior (SIR ESS < 20, see
        :mod:`cartlab.twin.quality`); ``sir_ess`` and ``posterior_unique_draws`` say why; every value is
        model-based (``source`` = "simulated")."""
        ob = self._require_fitted()
        se = np.sqrt(np.diag(self.cov_))
        post_sd = self.posterior_x_.std(axis=0)
        names = [ob.table.names[i] for i in ob.free]
        blo, bhi = ob.table.bounds()
        lo, hi = blo[ob.free], bhi[ob.free]
        ok = self.intervals_reliable_
        nan = np.full(len(names), np.nan)
        x_lo, x_hi = getattr(ob, "bounds_x", (np.full(len(names), -np.inf), np.full(len(names), np.inf)))
        at = np.isclose(self.x_, x_lo, atol=1e-6) | np.isclose(self.x_, x_hi, atol=1e-6)
        return pl.DataFrame({
            "parameter": names, "prior_median": ob.theta0[ob.free], "prior_log_sd": ob.psd,
            "lower_bound": lo, "upper_bound": hi,
            "estimate": np.exp(self.x_), "estimate_at_bound": at, "se_log": se, "rse_pct": 100 * se,
            "ci95_lo": np.clip(np.exp(self.x_ - 1.96 * se), lo, hi),
            "ci95_hi": np.clip(np.exp(self.x_ + 1.96 * se), lo, hi),
            "posterior_median": np.exp(np.median(self.posterior_x_, axis=0)) if ok else nan,
            "shrinkage": 1.0 - post_sd / ob.psd if ok else nan,
            "sir_ess": np.full(len(names), self.ess_),
            "posterior_unique_draws": np.full(len(names), getattr(self, "n_unique_draws_", len(self.posterior_x_))),
            "baseline_defaults": [defaults_text(getattr(self, "baseline_defaults_used_", {})) or None] * len(names),
            "source": ["simulated"] * len(names),
        }).with_columns(pl.col("posterior_median", "shrinkage").fill_nan(None))

    # -- forecast
    def forecast(self, from_day: float | None = None, n_draws: int | None = None, *, show_withheld: bool = False,
                 car_bias_iwres: float = CAR_BIAS_IWRES) -> pl.DataFrame:
        """Predict the course after ``from_day`` from the posterior given the data up to it (refits on
        the truncated data, without anchors, if the model was fitted to more), with the clinic rule active after
        ``from_day``. Returns (and stores as ``forecast_``) one row per quantity: median, 50% and 90%
        prediction intervals, or a probability, with ``value_shown``/``interval_shown``/``withheld_reason``
        (:func:`cartlab.twin.forecast.withhold`: a quantity resting on a parameter the twin does not
        describe, or a CAR course off the CARCOPY data by more than ``car_bias_iwres`` mean standardised
        residuals, is not shown unless ``show_withheld``; nor are unresolved intervals)."""

        self._require_fitted()
        if from_day is None:
            from_day = self.until_day_
        m = self
        if from_day != self.until_day_ or self.anchors:
            # anchors summarise the whole course (fever days, peak day): a forecast never uses them
            m = TwinModel(self.prior, self.fixed, self.posterior, self.sources, (), self.n_starts,
                          self.n_sir, self.n_draws, self.seed, self.maxiter,
                          allow_other_target=self.allow_other_target, missing_baseline=self.missing_baseline,
                          baseline_blq=self.baseline_blq).fit(self.study_, self.subject_id_, until_day=from_day)
        draws, weights = forecast_draws(m, n_draws)
        with drawn_baseline(m, draws.shape[0], self.missing_baseline) as drawn:
            _t, sim = m.simulate_after(from_day, draws=draws)
        self.forecast_baseline_drawn_ = drawn
        self.forecast_sim_, self.forecast_weights_ = sim, weights
        table = forecast_table(_T_GRID, sim, n_effective=n_effective(m, draws.shape[0]), weights=weights)
        self.forecast_ = withhold(m, table, show_withheld=show_withheld, car_bias_iwres=car_bias_iwres)
        self.forecast_day_ = from_day
        self.forecast_notes_ = forecast_notes(m, self.forecast_, car_bias_iwres) + (
            [f"baseline_drawn: {drawn_text(drawn)}; the intervals include that spread"] if drawn else [])
        self.forecast_problems_ = problems = forecast_problems(m, car_bias_iwres)
        self.forecast_reliable_ = not problems
        self.forecast_prior_only_ = "no_car_samples" in problems
        for note in self.forecast_notes_:
            warnings.warn(note, CartlabWarning, stacklevel=2)
        return self.forecast_

    @property
    def events_(self):
        """The dosing events the model was fitted with (:class:`cartlab.twin.model.Events`)."""
        return self._require_fitted().events

    def simulate_after(self, from_day: float | None, *, clinic_overrides: dict | None = None, events=None,
                       draws: np.ndarray | None = None) -> tuple[np.ndarray, Any]:
        """The posterior draws (``draws``: default all) simulated on the course grid: the patient's
        recorded interventions up to ``from_day``, the clinic rule (``clinic_overrides``: its options, e.g.
        a tocilizumab threshold) after it. ``events`` replaces the dosing events (e.g. one more
        infusion, for a regimen comparison). Returns ``(days, simulation)``; every value is simulated."""
        from cartlab.twin.clinic import load_clinic

        ob = self._require_fitted()
        if events is not None:
            ob = copy.copy(ob)
            ob.events = events
        clinic = load_clinic(active_from_day=-math.inf if from_day is None else float(from_day),
                             **(clinic_overrides or {}))
        sim = ob.simulate(self.posterior_x_ if draws is None else draws, t_out=_T_GRID, clinic=clinic)
        if from_day is not None:
            sim = with_recorded(sim, recorded_clinic(self.study_, self.subject_id_, sim.clinic_days), sim.clinic_days,
                                 from_day)
        return _T_GRID, sim

    def plot(self, path=None):
        """Observed course over the twin (simulated values labelled as simulated); returns the figure."""
        from cartlab.twin.plots import fit_figure

        self._require_fitted()
        return fit_figure(self, path)


#: interventions categories of the study format -> clinic array keys of the model
