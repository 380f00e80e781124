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

The comedication times and the infusions of the subject(s) are one :class:`Dosing` value
(``t_toci``, ``t_ster``, ``dose_times``, ``dose_fractions``), the last argument of
:func:`stein_curve`, :func:`stein_log_curve`, :func:`stein_auc`, :func:`stein_peak`,
:func:`derived_quantities` and :func:`simulate`.

Published parameters: :data:`STEIN_2019` (typical values, inter-individual variability, residual
error). The IIV numbers of Table 1 are read as **variances omega^2 of log-normal random effects**,
as nlmixr2lib does (``inst/modeldb/specificDrugs/Stein_2019_Tisagenlecleucel.R``: ``etalfoldx ~
2.4`` etc.). The project's research note (``../shared/research/kinetics.md`` section 1.1 and gap
5.1) cautions that Monolix often reports omega as an SD and that this reading was not verified
against the paper PDF; simulated spreads depend on it (SD 1.55 vs 2.4 for foldx).

Estimation
----------
Both fitters follow the convention of lifelines and scikit-learn: options in the constructor,
``fit(data)`` returns the fitted model, estimates are attributes ending in ``_`` (``params_``,
``individual_``, ``observations_`` ...), ``summary`` is a property and ``plot()`` draws the fit::

    model = SteinModel().fit(study)
    model.summary; model.individual_; model.plot()

* :class:`SteinModel` -- per-subject maximum likelihood on the log scale (log C_obs = log C + e,
  e ~ N(0, sigma^2), Stein's "constant error model in log scale"). Samples below the LLOQ use
  Beal's M3 likelihood: a BLQ sample contributes ``log Phi((log LLOQ - log C)/sigma)`` (Beal SL,
  *J Pharmacokinet Pharmacodyn* 2001;28:481-504; Bergstrand M, Karlsson MO, *AAPS J*
  2009;11:371-380). Standard errors come from the inverse of the finite-difference Hessian of the
  negative log-likelihood on the log-parameter scale, and the delta method on the natural scale
  (SE(p) = p * SE(log p)). Options: ``blq="drop"`` (M1) and ``blq="half"`` (LLOQ/2 imputation)
  for comparison; an optional ``prior`` (a :class:`PopulationParams`) turns the fit into a MAP
  (Bayesian, "empirical Bayes") estimate for sparse subjects, with the residual SD held at the
  prior's ``sigma`` as MAP/POSTHOC fits do (``sigma="estimate"`` estimates it). A subject whose
  data cannot identify the free parameters (no quantifiable sample; without a prior, no more
  quantifiable samples than free parameters, i.e. no residual degree of freedom) gets no estimates
  and a reason. A maximum-likelihood fit the data do not determine (``foldx`` estimated with no
  quantifiable sample before the fitted peak, ``cmax``/``alpha`` estimated with none after it, or a
  parameter RSE above :data:`RSE_LIMIT_PCT`, 500%) is reported with ``converged`` false and a message
  starting "not identified"; its dependent derived values are null (``derived_if_unidentified``).
  MAP fits give each subject's shrinkage and a ``prior_dominated`` flag; a fitted peak after the last
  sample is flagged and, by default, not reported (``peak_window``). The 95% CIs are on the log
  scale, ``fb``'s on the logit scale.
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

Modules: :mod:`~cartlab.kinetics.stein.params` (parameters, published values, designs),
:mod:`~cartlab.kinetics.stein.curve` (the curve, AUC, peak, :class:`Dosing`),
:mod:`~cartlab.kinetics.stein.simulate`, :mod:`~cartlab.kinetics.stein.data` (data preparation),
:mod:`~cartlab.kinetics.stein.likelihood`, :mod:`~cartlab.kinetics.stein.individual`
(:class:`SteinModel`), :mod:`~cartlab.kinetics.stein.saem` and
:mod:`~cartlab.kinetics.stein.population` (:class:`SteinPopulationModel`),
:mod:`~cartlab.kinetics.stein.plots`, :mod:`~cartlab.kinetics.stein.flags` (peak window, unidentified
derived values, individual shrinkage, population warnings). Reading files and writing results (``cartlab stein``) is the
command line's: :func:`cartlab.cli.kinetics_io.stein_command`.
"""

from cartlab.kinetics.stein.curve import (
    Dosing,
    derived_quantities,
    stein_auc,
    stein_curve,
    stein_log_curve,
    stein_peak,
)
from cartlab.kinetics.stein.data import (
    FIRST_DOSE_NOTE,
    PEAK_COLUMNS,
    SPLIT_DOSE_GAP_DAYS,
    SPLIT_DOSE_NOTE,
    observed_peaks,
)
from cartlab.kinetics.stein.individual import RSE_LIMIT_PCT, SE_DF_CORRECTIONS, SteinModel
from cartlab.kinetics.stein.params import (
    BLQ_METHODS,
    DEFAULT_TIMES,
    DESIGN_2Y,
    DESIGN_180D,
    DOSE_HANDLINGS,
    LN2,
    PARAMS,
    STEIN_2019,
    PopulationParams,
    Progress,
)
from cartlab.kinetics.stein.population import SteinPopulationModel
from cartlab.kinetics.stein.simulate import simulate

__all__ = [
    "BLQ_METHODS",
    "DEFAULT_TIMES",
    "DESIGN_180D",
    "DESIGN_2Y",
    "DOSE_HANDLINGS",
    "FIRST_DOSE_NOTE",
    "LN2",
    "PARAMS",
    "PEAK_COLUMNS",
    "RSE_LIMIT_PCT",
    "SE_DF_CORRECTIONS",
    "SPLIT_DOSE_GAP_DAYS",
    "SPLIT_DOSE_NOTE",
    "STEIN_2019",
    "Dosing",
    "PopulationParams",
    "Progress",
    "SteinModel",
    "SteinPopulationModel",
    "derived_quantities",
    "observed_peaks",
    "simulate",
    "stein_auc",
    "stein_curve",
    "stein_log_curve",
    "stein_peak",
]
