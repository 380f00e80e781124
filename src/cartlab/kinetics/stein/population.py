"""Population fits of the Stein 2019 model by SAEM (:class:`SteinPopulationModel`) and what they give:
population parameters with standard errors, individual (EBE) parameters, predictions, the visual
predictive check."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from cartlab.errors import CartlabWarning, InputError
from cartlab.kinetics.stein.base import _SteinFitter
from cartlab.kinetics.stein.curve import derived_quantities, stein_curve
from cartlab.kinetics.stein.data import _observations_frame, _with_observed_peaks
from cartlab.kinetics.stein.flags import (
    AUC_EXTRAP_WARN_PCT,
    PRIOR_DOMINATED_SHRINKAGE,
    WARN_DEFAULTS,
    add_shrinkage,
    individual_shrinkage,
    population_warnings,
)
from cartlab.kinetics.stein.likelihood import _Evaluator
from cartlab.kinetics.stein.params import PARAMS, STEIN_2019, PopulationParams, Progress
from cartlab.kinetics.stein.plots import fits_figure, vpc_figure
from cartlab.kinetics.stein.saem import _mu, _Saem
from cartlab.kinetics.stein.starts import (
    N_STARTS_DEFAULT,
    best_start,
    start_record,
    start_seeds,
    starts_warnings,
)

__all__ = ["SteinPopulationModel"]

#: covariates derived from the CAR-T rows of doses.csv (cells/kg; cells are divided by weight_kg)
_DOSE_COVARIATES = ("dose_total", "log_dose", "n_infusions")


def _dose_reasons(study: Any, ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Per subject: why its CAR-T dose in cells/kg cannot be formed, as (cause, where): the doses.csv
    row and unit, or the empty subjects.csv weight_kg."""
    from cartlab.kinetics.agents import car_t_infusions

    inf = car_t_infusions(study).filter(pl.col("subject_id").is_in(list(ids)))
    from cartlab.protocol.dose_inputs import study_weights

    weights = study_weights(study, ids)  # subjects.csv, else a WEIGHT observation (review 39 B4)
    wt = {sid: v[0] for sid, v in weights.items()}
    out: dict[str, tuple[str, str]] = {}
    for r in inf.iter_rows(named=True):
        sid = r["subject_id"]
        if sid in out:
            continue
        where = (f"{r.get('src_file') or 'doses.csv'} row {r['src_row']}" if r.get("src_row") is not None
                 else "no doses.csv row")
        unit = (r.get("unit") or "").replace(" ", "").lower()
        if r.get("dose") is None:
            out[sid] = ("the CAR-T dose is empty", where)
        elif unit == "cells" and wt.get(sid) is None:
            out[sid] = (f"the CAR-T dose is in cells and there is no weight_kg ({weights.get(sid, (None, 'no subjects.csv row'))[1]}; cells/kg needs "
                        "the weight)", f"{where}: {r['dose']:g} cells")
        elif unit not in ("cells", "cells/kg"):
            out[sid] = ("the CAR-T dose unit is neither cells nor cells/kg", f"{where}: {r.get('unit')!r}")
    for sid in ids:
        out.setdefault(sid, ("no CAR-T row with a dose in doses.csv", ""))
    return out


def _check_study_covariates(data: Any, cov: pl.DataFrame, spec: Mapping[str, Sequence[str]]) -> None:
    """InputError naming the input behind each missing covariate value of a study (the subjects.csv
    column, or the doses.csv row and unit of the CAR-T dose and weight_kg) and how to proceed."""
    from cartlab.kinetics.stein.data import _is_study

    if not _is_study(data):
        return
    for p, cols in spec.items():
        for c in cols:
            if c not in cov.columns or not cov[c].null_count():
                continue
            who = cov.filter(pl.col(c).is_null())["subject_id"].to_list()
            if c in _DOSE_COVARIATES:
                reasons = _dose_reasons(data, who)
                causes: dict[str, list[str]] = {}
                for sid in who:
                    cause, where = reasons[sid]
                    causes.setdefault(cause, []).append(f"{sid} ({where})" if where else str(sid))
                detail = "; ".join(f"{cause}: {', '.join(items[:10])}{' ...' if len(items) > 10 else ''}"
                                   for cause, items in causes.items())
                weight = any("weight_kg" in cause for cause in causes)
                give = ("give weight_kg in subjects.csv (or the dose in cells/kg in doses.csv)" if weight
                        else "give the CAR-T dose in cells or cells/kg in doses.csv")
            else:
                detail = (f"subjects.csv, column {c} is empty: {', '.join(map(str, who[:10]))}"
                          f"{' ...' if len(who) > 10 else ''}")
                give = f"give {c} in subjects.csv"
            raise InputError(f"--covariate {p}={c}: {c} is missing for {len(who)} subject(s) -- {detail}",
                             hint=f"{give} for these subjects, or drop --covariate {p}={c}. Nothing was written.")


class SteinPopulationModel(_Saem, _SteinFitter):
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
    n_starts: independent SAEM runs (default 3), from the seeds of
        :func:`~cartlab.kinetics.stein.starts.start_seeds` (the first is ``seed``); the run with the
        highest importance-sampling log-likelihood is kept, every run is in ``starts_``, and a warning
        says when their log-likelihoods differ by more than 2 x the Monte-Carlo SE of the difference
        (local maxima: review 39 found one seed in five stopping 40 log-likelihood units low with
        clean diagnostics). Each start costs one full fit.
    n_chains: MCMC chains per subject (default: enough for 50 subject-chains, the Monolix rule).
        More chains reduce the Monte-Carlo error of the estimates: for omega^2 of a parameter with
        high shrinkage (beta) the SAEM-seed-to-seed SD is ~6% with 1 chain and ~3% with 3 chains
        (500 subjects; statistical RSE ~12%).
    n_newton: optional stochastic-approximation Newton-Raphson steps after SAEM (Gu MG, Kong FH.
        *PNAS* 1998;95:7270-7274): theta += I^-1 score with the Louis information and the score
        by Fisher's identity, both from the post-phase draws (default 0: in our tests the SAEM end
        point was already within Monte-Carlo noise of the stationary point).
    kernels: MH iterations per SAEM iteration for the three kernels.
    missing_dose, no_infusion, peak_window, prior_dominated_shrinkage: as :class:`SteinModel`
        (defaults ``"error"``, ``"drop"``, ``"observed"``, 0.5; here the posterior variance of a
        subject's shrinkage is its conditional variance ``cond_cov_``, the prior its omega^2).
    shrinkage_warn_pct, rse_warn_pct, drift_warn_pct, drift_window, drift_alpha: thresholds of
        ``warnings_`` (defaults 30, 50, 5, 50 and 0.05: :data:`~cartlab.kinetics.stein.flags.WARN_DEFAULTS`).
    auc_extrap_warn_pct: ``auc_extrapolated`` flags a subject whose ``auc_extrapolated_pct`` (share of
        stein_auc_0_28 after its last sample) exceeds it (default 20, as :class:`SteinModel`).

    Fitted attributes (after :meth:`fit`, which returns the model)
    ----------------------------------------------------------------
    params_: the fitted population as :class:`PopulationParams` (typical values, omega², sigma,
        covariate effects and centers; e.g. to :func:`simulate`); ``theta_``, ``omega2_`` (estimated
        parameters only) and ``sigma_`` as plain values.
    summary: (property) population parameters with SE, RSE, IIV CV% and shrinkage (SD-based,
        ``shrinkage_sd_pct``). When the information matrix is not positive definite every SE and
        RSE is null (no pseudo-inverse) and ``note`` gives its smallest eigenvalue.
    individual_: one row per subject: EBE parameters, eta, derived quantities, t_last_sample,
        peak_extrapolated, peak_note, shrinkage_<param> (individual, SD-based, fraction),
        prior_dominated, prior_note, dosing_note and the observed peak (:data:`~cartlab.kinetics.stein.PEAK_COLUMNS`), n_obs, n_blq.
    observations_: every observation used with ipred (EBE curve), iwres, pred (population curve)
        and provenance.
    loglik_, loglik_se_: observed-data log-likelihood (log scale, importance sampling) and its
        Monte-Carlo SE (None with ``compute_ll=False``); ``aic_``, ``bic_``, ``n_parameters_``.
    shrinkage_: eta-shrinkage (SD-based, 1 - SD(eta_EBE)/omega, %) per estimated parameter.
    fim_, fim_ok_, fim_min_eigenvalue_: Louis' observed information, whether it is positive definite
        (else a :class:`~cartlab.errors.CartlabWarning` and no SEs), its smallest eigenvalue.
    starts_: one record per SAEM start (start, seed, loglik, loglik_se, score_chi2, fim_ok,
        converged, typical values, omega2_<param>, sigma, kept).
    warnings_: convergence / precision warnings (see ``shrinkage_warn_pct`` ..., and ``n_starts``);
        ``diagnostics_``: fim_ok, fim_min_eigenvalue, score_chi2, thresholds, warnings.
    polish_: convergence diagnostic: score' I^-1 score of the observed-data score (Fisher's
        identity, from the post-phase draws) at the estimate (last row) and before each optional
        Newton step; at a converged estimate it reflects Monte-Carlo noise only (<< n_parameters_
        means the SAEM end point is within MC noise of the likelihood's stationary point).
    trace_: the SAEM iterations; ``n_chains_``: chains per subject used.
    ebe_, cond_mean_, cond_cov_: per-subject conditional modes, means and covariances of the
        log-parameters (estimated ones, in ``PARAMS`` order).
    subject_ids_, dosing_, dropped_: the subjects, their dosing, the input rows not used.
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
        n_starts: int = N_STARTS_DEFAULT,
        blq: str = "m3",
        blq_below_lloq: bool = True,
        dose_handling: str = "first",
        ftoci: float | None = None,
        fster: float | None = None,
        tlag: float = 0.0,
        param: str = "CARCOPY",
        compute_se: bool = True,
        compute_ll: bool = True,
        n_is: int = 1000,
        missing_dose: str = "error",
        no_infusion: str = "drop",
        peak_window: str = "observed",
        split_dose_gap_days: float | None = None,
        prior_dominated_shrinkage: float = PRIOR_DOMINATED_SHRINKAGE,
        shrinkage_warn_pct: float = WARN_DEFAULTS["shrinkage_warn_pct"],
        rse_warn_pct: float = WARN_DEFAULTS["rse_warn_pct"],
        drift_warn_pct: float = WARN_DEFAULTS["drift_warn_pct"],
        drift_window: int = WARN_DEFAULTS["drift_window"],
        drift_alpha: float = WARN_DEFAULTS["drift_alpha"],
        auc_extrap_warn_pct: float = AUC_EXTRAP_WARN_PCT,
    ):
        self.prior_dominated_shrinkage = float(prior_dominated_shrinkage)
        self.warn_options = {"shrinkage_warn_pct": float(shrinkage_warn_pct), "rse_warn_pct": float(rse_warn_pct),
                             "drift_warn_pct": float(drift_warn_pct), "drift_window": int(drift_window),
                             "drift_alpha": float(drift_alpha)}
        self.auc_extrap_warn_pct = float(auc_extrap_warn_pct)
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
        self.n_starts = int(n_starts)
        start_seeds(seed, self.n_starts)  # n_starts >= 1
        # ftoci / fster None: no effect (1); a population fit has no prior to take them from (review 41 F7)
        self._data_options(blq=blq, blq_below_lloq=blq_below_lloq, dose_handling=dose_handling,
                           ftoci=1.0 if ftoci is None else ftoci, fster=1.0 if fster is None else fster,
                           tlag=tlag, param=param, missing_dose=missing_dose,
                           no_infusion=no_infusion, peak_window=peak_window,
                           split_dose_gap_days=split_dose_gap_days)
        self.compute_se = compute_se
        self.compute_ll = compute_ll
        self.n_is = n_is

    def fit(self, data: Any, *, doses: pl.DataFrame | None = None,
            covariates: pl.DataFrame | None = None, progress: Progress | None = None) -> SteinPopulationModel:
        """Fit the population model to ``data`` (a cartlab Study or a plain frame) and return the
        model, fitted.

        ``progress(stage, done, total)`` is called after each SAEM iteration and each iteration at
        the estimate (``total`` = n_starts x (n_burn + n_smooth + n_post + 1 for the log-likelihood),
        counted on across the starts)."""
        d = self._prepare(data, doses, covariates)
        _check_study_covariates(data, d.covariates, self.covariates)
        if d.n < 2:
            raise ValueError(f"a population fit needs at least 2 subjects with {self.param} data (got {d.n}); "
                             "fit a single subject with SteinModel (cartlab stein without --population)")
        seeds = start_seeds(self.seed, self.n_starts)
        runs = []
        for k, s in enumerate(seeds):
            tick = progress if progress is None or len(seeds) == 1 else (
                lambda stage, done, total, k=k: progress(f"start {k + 1}/{len(seeds)}: {stage}", k * total + done,
                                                         len(seeds) * total))
            runs.append(self._estimate(d, tick, seed=s))
        n_par = sum(x.shape[1] for x in runs[0].X) + len(runs[0].est) + 1
        self.starts_ = [start_record(k, s, rr, n_par) for k, (s, rr) in enumerate(zip(seeds, runs))]
        kept = best_start(self.starts_)
        for k, rec in enumerate(self.starts_):
            rec["kept"] = k == kept
        r = runs[kept]
        del runs
        self._set_data(d)
        self._est, self._X, self._state = r.est, r.X, r.state
        self._cov_names, self._cov_notes, self._centers = r.cov_names, r.cov_notes, r.centers
        self.trace_, self.polish_, self.n_chains_ = r.trace, r.polish, r.n_chains
        self.ebe_, self.cond_mean_, self.cond_cov_ = r.ebe, r.cond_mean, r.cond_cov
        self.loglik_, self.loglik_se_ = r.loglik, r.loglik_se
        self.fim_ = r.fim
        self._cov = None
        self.fim_min_eigenvalue_ = None
        self.fim_ok_ = False
        if r.fim is not None:
            if np.all(np.isfinite(r.fim)):
                self.fim_min_eigenvalue_ = float(np.linalg.eigvalsh(r.fim).min())
            self.fim_ok_ = bool(self.fim_min_eigenvalue_ is not None and self.fim_min_eigenvalue_ > 0)
            # an indefinite information matrix gives no standard errors (a pseudo-inverse is no covariance)
            self._cov = np.linalg.inv(r.fim) if self.fim_ok_ else None
            if not self.fim_ok_:
                eig = "not finite" if self.fim_min_eigenvalue_ is None else f"{self.fim_min_eigenvalue_:.3g}"
                warnings.warn(f"Stein population fit: the information matrix is not positive definite (smallest "
                              f"eigenvalue {eig}): no standard errors or RSEs are reported", CartlabWarning,
                              stacklevel=2)
        # parameters
        est, b = self._est, self._state.b
        theta = {p: math.exp(b[j][0]) for j, p in enumerate(est)}
        theta.update(self.fixed)
        self.theta_ = {p: theta[p] for p in PARAMS}
        self.omega2_ = {p: float(self._state.omega2[j]) for j, p in enumerate(est)}
        self.sigma_ = self._state.sigma
        self.params_ = PopulationParams(
            theta=self.theta_, omega2={p: self.omega2_.get(p, 0.0) for p in PARAMS}, sigma=self.sigma_,
            ftoci=self.extras["ftoci"], fster=self.extras["fster"], tlag=self.extras["tlag"],
            covariate_effects={(p, c): float(b[j][1 + k]) for j, p in enumerate(est)
                               for k, c in enumerate(self._cov_names[j])},
            covariate_centers=dict(self._centers), citation="cartlab SAEM fit", note="",
        )
        self.n_parameters_ = sum(x.shape[1] for x in self._X) + len(est) + 1
        ll = self.loglik_
        self.aic_ = None if ll is None else -2 * ll + 2 * self.n_parameters_
        self.bic_ = None if ll is None else -2 * ll + math.log(d.n) * self.n_parameters_
        eta = self.ebe_ - _mu(self._X, b)
        self.shrinkage_ = {p: float(100 * (1 - np.std(eta[:, j]) / math.sqrt(self._state.omega2[j])))
                           for j, p in enumerate(est)}
        # individuals
        ev = self._evaluator()
        self.observations_ = _observations_frame(d, ev.logf(self.ebe_), self._state.sigma,
                                                 log_pred=ev.logf(_mu(self._X, b)))
        self.individual_ = _with_observed_peaks(self._individual(), self.observations_)
        self.warnings_ = population_warnings(self.summary, self.trace_, self.n_burn, self.fim_ok_ or r.fim is None,
                                             self.fim_min_eigenvalue_, self.warn_options)
        self.warnings_ += starts_warnings(self.starts_, kept, self.n_parameters_)
        pol = self.polish_["score_chi2"].to_list()
        self.diagnostics_ = {
            "fim_ok": self.fim_ok_ if r.fim is not None else None, "fim_min_eigenvalue": self.fim_min_eigenvalue_,
            "score_chi2": pol[-1] if pol else None, "n_parameters": self.n_parameters_,
            "shrinkage_basis": "SD: 1 - SD(eta_EBE)/omega (NONMEM convention)",
            "thresholds": dict(self.warn_options), "warnings": list(self.warnings_),
            "n_starts": len(self.starts_), "kept_start": kept, "kept_seed": self.starts_[kept]["seed"],
        }
        return self

    def _evaluator(self) -> _Evaluator:
        return _Evaluator(self._fitted(), self._est, self.fixed, self.extras)

    def _se(self) -> np.ndarray | None:
        if self._cov is None:
            return None
        d = np.diag(self._cov)
        return np.sqrt(np.where(d > 0, d, np.nan))

    @property
    def summary(self) -> pl.DataFrame:
        """Population parameters: kind (theta / covariate / residual), estimate, se, rse_pct,
        omega2 (IIV variance) with its se and rse_pct, iiv_cv_pct (sqrt(exp(omega2)-1)),
        shrinkage_sd_pct (1 - SD(eta_EBE)/omega) and a note. Theta SEs by the delta method from log
        theta; none when the information matrix is not positive definite (the note says so)."""
        self._fitted()
        se = self._se()
        nose = "" if self._cov is not None or getattr(self, "fim_", None) is None else (
            "; no SE: information matrix not positive definite (smallest eigenvalue "
            + ("not finite" if self.fim_min_eigenvalue_ is None else f"{self.fim_min_eigenvalue_:.3g}") + ")")
        dims = [x.shape[1] for x in self._X]
        offs = np.cumsum([0] + dims)
        P = len(self._est)
        shr = self.shrinkage_
        rows = []
        for j, p in enumerate(self._est):
            th = math.exp(self._state.b[j][0])
            s_log = float(se[offs[j]]) if se is not None else None
            om = float(self._state.omega2[j])
            s_om = float(se[offs[-1] + j]) if se is not None else None
            rows.append(dict(parameter=p, kind="theta", estimate=th,
                             se=None if s_log is None else th * s_log,
                             rse_pct=None if s_log is None else 100 * s_log,
                             omega2=om, omega2_se=s_om,
                             omega2_rse_pct=None if s_om is None else 100 * s_om / om,
                             iiv_cv_pct=100 * math.sqrt(math.expm1(om)), shrinkage_pct=shr[p],
                             note="typical value (median); IIV log-normal" + nose))
        for j, p in enumerate(self._est):
            for k, c in enumerate(self._cov_names[j]):
                v = float(self._state.b[j][1 + k])
                s = float(se[offs[j] + 1 + k]) if se is not None else None
                rows.append(dict(parameter=f"{p}~{c}", kind="covariate", estimate=v, se=s,
                                 rse_pct=None if s is None or v == 0 else 100 * abs(s / v),
                                 omega2=None, omega2_se=None, omega2_rse_pct=None, iiv_cv_pct=None,
                                 shrinkage_pct=None,
                                 note=f"log P = log theta + beta * x; {self._cov_notes[j][k]}" + nose))
        for p, v in self.fixed.items():
            rows.append(dict(parameter=p, kind="fixed", estimate=float(v), se=None, rse_pct=None, omega2=None,
                             omega2_se=None, omega2_rse_pct=None, iiv_cv_pct=None, shrinkage_pct=None,
                             note="fixed, not estimated"))
        sig = self._state.sigma
        s_sig2 = float(se[offs[-1] + P]) if se is not None else None
        s_sig = None if s_sig2 is None else s_sig2 / (2 * sig)
        rows.append(dict(parameter="sigma", kind="residual", estimate=sig, se=s_sig,
                         rse_pct=None if s_sig is None else 100 * s_sig / sig, omega2=None, omega2_se=None,
                         omega2_rse_pct=None, iiv_cv_pct=None, shrinkage_pct=None,
                         note="additive SD on the natural-log scale" + nose))
        schema = {"parameter": pl.String, "kind": pl.String, "estimate": pl.Float64, "se": pl.Float64,
                  "rse_pct": pl.Float64, "omega2": pl.Float64, "omega2_se": pl.Float64,
                  "omega2_rse_pct": pl.Float64, "iiv_cv_pct": pl.Float64, "shrinkage_sd_pct": pl.Float64,
                  "note": pl.String}
        return pl.DataFrame([{("shrinkage_sd_pct" if k == "shrinkage_pct" else k): v for k, v in r.items()}
                             for r in rows], schema=schema)


    # -- individuals --------------------------------------------------------------------------
    def individual_parameters(self, kind: str = "mode") -> pl.DataFrame:
        """EBEs (``mode``, MAP) or conditional means (``mean``) on the natural scale."""
        ev = self._evaluator()
        p = ev.params(self.ebe_ if kind == "mode" else self.cond_mean_)
        return pl.DataFrame({"subject_id": self.subject_ids_, **{k: p[k] for k in PARAMS}})

    def _individual(self) -> pl.DataFrame:
        """Per subject (``individual_`` without the observed peaks): EBE parameters (conditional
        modes), eta_<param>, derived quantities (rho, r0, doubling_time, t_half_alpha, t_half_beta,
        stein_cmax, stein_tmax, stein_auc_0_28 from the individual curve, analytical), n_obs, n_blq,
        the peak-window flag, individual shrinkage and ``prior_dominated``."""
        d = self._fitted()
        p = self._evaluator().params(self.ebe_)
        der = derived_quantities(p, d.dosing)
        eta = self.ebe_ - _mu(self._X, self._state.b)
        cols = {"subject_id": d.ids, **{k: p[k] for k in PARAMS}}
        cols.update({f"eta_{q}": eta[:, j] for j, q in enumerate(self._est)})
        cols.update({k: np.asarray(v) for k, v in der.items()})
        cols["n_obs"] = d.mask.sum(axis=1)
        cols["n_blq"] = (d.mask & ~d.quantified).sum(axis=1)  # as reported, whatever blq imputes (review 41 F3)
        out = self._finish_individual(pl.DataFrame(cols), d)
        var = np.diagonal(self.cond_cov_, axis1=-2, axis2=-1)
        shrink = individual_shrinkage(var, np.asarray(self._state.omega2))
        return add_shrinkage(out, shrink, self._est, self.prior_dominated_shrinkage, True)

    def predict(self, times: Any, subject: Any = None) -> pl.DataFrame:
        """Typical curve (``subject=None``: reference covariates, no comedication, one infusion at 0)
        or individual EBE curves: subject_id, time, pred."""
        times = np.asarray(times, dtype=float)
        if subject is None:
            self._fitted()
            c = stein_curve(times, self.params_.typical())
            return pl.DataFrame({"subject_id": ["typical"] * times.size, "time": times, "pred": c})
        idx = self._idx(subject)
        subs = [self.subject_ids_[i] for i in idx]
        p = self._evaluator().params(self.ebe_[idx])
        c = stein_curve(np.broadcast_to(times, (len(idx), times.size)), p, self._data.dosing[idx])
        return pl.DataFrame({"subject_id": np.repeat(subs, times.size), "time": np.tile(times, len(idx)),
                             "pred": c.ravel()})

    def simulate_design(self, n_rep: int = 200, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Replicates of the observed design from the fitted population: (log y, blq) arrays of
        shape (n_rep, N, J), with the subjects' covariates, comedication and doses."""
        rng = np.random.default_rng(seed)
        d = self._fitted()
        n, P = d.n, len(self._est)
        mu = _mu(self._X, self._state.b)
        eta = rng.standard_normal((n_rep, n, P)) * np.sqrt(self._state.omega2)
        lf = self._evaluator().logf(mu + eta)
        ly = lf + self._state.sigma * rng.standard_normal(lf.shape)
        blq = ly < self._log_lloq()
        return ly, blq

    def _log_lloq(self) -> np.ndarray:
        """log LLOQ per (subject, sample) of the design (-inf where unknown)."""
        d = self._fitted()
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
        d = self._fitted()
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
        obs_ly = np.where(~d.quantified, lloq, d.logy)[d.mask]
        obs_blq = (~d.quantified)[d.mask]
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
            ids = [self.subject_ids_[i] for i in self._idx(subject)[:max_subjects]]
            return fits_figure(self._data.obs, ids, self.predict, figsize,
                               typical=lambda tg: self.predict(tg)["pred"].to_numpy())
        if kind != "vpc":
            raise ValueError("kind must be 'vpc' or 'fits'")
        v = self.vpc(n_rep=n_rep, seed=seed) if vpc is None else vpc
        return vpc_figure(self._fitted().obs, v, figsize)
