"""cartlab.twin.fit: likelihood terms, batched finite differences, Laplace + SIR, the fit on a simulated
patient, forecasts that cannot see the future, the CLI, and the docs' parameter table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from cartlab.twin.fit import OBS_MODEL, TwinModel, _Objective, _Obs, _obs_loglik

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------
# likelihood terms against scipy.stats (independent implementation)


def _obs(rows):
    param, day, value, limit, cens = zip(*rows)
    return _Obs(param=np.array(param), day=np.array(day, float), value=np.array(value, float),
                limit=np.array(limit, float), cens=np.array(cens), frame=pl.DataFrame())


def test_observation_loglik_matches_scipy():
    obs = _obs([("CARCOPY", 1.0, 2000.0, 50.0, 0), ("CARCOPY", 2.0, np.nan, 50.0, -1),
                ("TEMP", 1.0, 38.7, np.nan, 0), ("BMBLAST", 2.0, 3.0, np.nan, 0),
                ("MRDFCM", 2.0, np.nan, 1e-4, -1), ("NEUT", 1.0, 0.02, np.nan, 0)])
    t_out = np.array([1.0, 2.0])
    latent = {"CARCOPY": np.array([[1500.0, 80.0]]), "TEMP": np.array([[38.2, 37.0]]),
              "BMBLAST": np.array([[10.0, 4.0]]), "MRDFCM": np.array([[0.5, 2e-4]]), "NEUT": np.array([[0.03, 1.0]])}
    ll, pred = _obs_loglik(obs, t_out, latent)
    s_car, s_t = OBS_MODEL["CARCOPY"][1], OBS_MODEL["TEMP"][1]
    n_bm, n_mrd = OBS_MODEL["BMBLAST"][1], OBS_MODEL["MRDFCM"][1]
    expected = [
        stats.norm.logpdf(math.log(2000.0), math.log(1500.0), s_car),           # log-normal on log scale
        stats.norm.logcdf(math.log(50.0), math.log(80.0), s_car),               # Beal M3: P(Y < LLOQ)
        stats.norm.logpdf(38.7, 38.2, s_t),
        stats.binom.logpmf(round(0.03 * n_bm), n_bm, 0.04),                     # 500-cell differential
        # below the flow LOD: Beal M3 on the log scale with the between-method SD 0.3 (schedule_v1.yaml, review
        # 40 A1) and the counting variance at the limit, (1 - 1e-4) / (n x 1e-4) (docs/twin.md observation model)
        stats.norm.logcdf(math.log(1e-4), math.log(2e-4), math.sqrt(0.3**2 + (1 - 1e-4) / (n_mrd * 1e-4))),
        # NEUT reported to 0.01: rounding variance 0.01^2/12 added on the log scale (delta method, / y^2)
        stats.norm.logpdf(math.log(0.02), math.log(0.03),
                          math.sqrt(OBS_MODEL["NEUT"][1] ** 2 + 0.01**2 / 12 / 0.02**2)),
    ]
    np.testing.assert_allclose(ll[0], expected, rtol=1e-6)
    np.testing.assert_allclose(pred[0], [1500.0, 80.0, 38.2, 4.0, 2e-4, 0.03])


# ------------------------------------------------------------------------------------------------
# the batched finite differences and the SIR correction on objectives with a known answer


class _Quadratic(_Objective):
    """f(x) = 0.5 (x-m)' A (x-m) + c * (x0 - m0)^3 without a solver."""

    def __init__(self, A, m, c=0.0):
        self.A, self.m, self.c = np.asarray(A, float), np.asarray(m, float), c
        self.free = np.arange(len(m))
        self.theta0 = np.ones(len(m))

    def __call__(self, x):
        d = np.atleast_2d(x) - self.m
        return 0.5 * np.einsum("ni,ij,nj->n", d, self.A, d) + self.c * d[:, 0] ** 3

    def theta(self, x):
        return np.exp(np.atleast_2d(x))


def test_fd_gradient_and_hessian_of_a_quadratic():
    A = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, -0.7], [0.5, -0.7, 2.0]])
    m = np.array([0.3, -1.0, 2.0])
    q = _Quadratic(A, m)
    x = np.array([0.1, 0.2, -0.3])
    f, g = q.value_and_grad(x)
    assert f == pytest.approx(0.5 * (x - m) @ A @ (x - m))
    np.testing.assert_allclose(g, A @ (x - m), rtol=1e-8)          # analytic gradient
    np.testing.assert_allclose(q.hessian(x), A, rtol=1e-6, atol=1e-8)


def _posterior_of(obj, x, cov, n_sir=20000, n_draws=20000, seed=1):
    m = TwinModel(n_sir=n_sir, n_draws=n_draws, seed=seed)
    m._objective, m.x_, m.cov_ = obj, np.asarray(x, float), np.asarray(cov, float)
    m._posterior(np.random.default_rng(seed))
    return m


def test_sir_corrects_a_wrong_laplace_covariance():
    # the true posterior is N(m, inv(A)); give SIR a proposal twice too wide: the resampled draws must
    # have the true covariance (Laplace alone would report 2 * inv(A))
    A = np.array([[2.0, 0.6], [0.6, 1.0]])
    m = np.array([0.5, -0.5])
    true_cov = np.linalg.inv(A)
    post = _posterior_of(_Quadratic(A, m), m, 2 * true_cov)
    np.testing.assert_allclose(np.cov(post.posterior_x_.T), true_cov, rtol=0.1, atol=0.02)
    np.testing.assert_allclose(post.posterior_x_.mean(axis=0), m, atol=0.03)
    assert 2000 < post.ess_ < 20000


class _LogGamma(_Quadratic):
    """x = log of a Gamma(shape, 1) variable: f(x) = exp(x) - shape * x; mean of x = digamma(shape)."""

    def __init__(self, shape):
        self.shape = shape
        self.free = np.arange(1)
        self.theta0 = np.ones(1)

    def __call__(self, x):
        x = np.atleast_2d(x)[:, 0]
        return np.exp(x) - self.shape * x


def test_sir_moves_the_mean_of_a_skewed_posterior():
    # the Laplace approximation sits at the mode log(2) = 0.693 with variance 1/2; the true mean of the
    # log of a Gamma(2) variable is digamma(2) = 1 - Euler's gamma = 0.4228 (closed form)
    from scipy.special import digamma

    q = _LogGamma(2.0)
    post = _posterior_of(q, [math.log(2.0)], [[0.5]])
    assert float(post.posterior_x_.mean()) == pytest.approx(float(digamma(2.0)), abs=0.03)
    assert float(post.posterior_x_.var()) == pytest.approx(float(__import__("scipy").special.polygamma(1, 2.0)),
                                                           rel=0.08)   # trigamma(2) = pi^2/6 - 1


# ------------------------------------------------------------------------------------------------
# a fit to a simulated patient; forecasts see only the data up to their day


@pytest.fixture(scope="module")
def virtual():
    """One held-out virtual patient observed on the schedule, as a study (noise, censoring)."""
    from twin_helpers import virtual_patient

    return virtual_patient(123)


@pytest.fixture(scope="module")
def fitted(virtual):
    """The twin fitted to the whole course of the virtual patient (n_starts=1, n_sir=300, n_draws=100);
    shared, read-only, by the two tests that used to fit it each (session 42)."""
    study, _, _ = virtual
    return TwinModel(n_starts=1, n_sir=300, n_draws=100).fit(study, study.subject_ids[0])


def test_fit_recovers_the_course_of_a_simulated_patient(virtual, fitted):
    from cartlab.twin.params import load_params

    study, _, sim = virtual
    m = fitted
    assert m.converged_, m.message_
    # the fit is better than the prior median on the data, and the fitted CAR peak is within 1.5-fold
    # of the true (noise-free) one: ~10 CAR samples with log-SD 0.56 give ~0.2 log-units precision
    prior_nll = float(m._objective(np.log(load_params().vector()[m._objective.free])[None, :])[0])
    assert m.nll_ < prior_nll
    t = m.course_.t
    w = (t >= 0) & (t <= 28)
    true_peak = sim.latent["CARCOPY"][0][(sim.t >= 0) & (sim.t <= 28)].max()
    assert m.course_.latent["CARCOPY"][0][w].max() == pytest.approx(true_peak, rel=0.5)
    s = m.summary
    assert s.height == int((load_params().iiv_sd() > 0).sum())
    assert ((s["ci95_lo"] <= s["estimate"]) & (s["estimate"] <= s["ci95_hi"])).all()


def test_forecast_cannot_see_data_after_its_day(virtual):
    import dataclasses

    study, _, _ = virtual
    sid = study.subject_ids[0]
    opts = {"n_starts": 1, "n_sir": 100, "n_draws": 50, "maxiter": 8}
    a = TwinModel(**opts).fit(study, sid, until_day=5).forecast(5)
    # multiply every observation after day 5 by 10: the forecast from day 5 must not move ...
    late = study.observations.with_columns(
        pl.when(pl.col("day") > 5).then(pl.col("value") * 10).otherwise(pl.col("value")).alias("value"))
    changed = dataclasses.replace(study, observations=late)
    b = TwinModel(**opts).fit(changed, sid, until_day=5).forecast(5)
    assert a.equals(b)
    # ... while the forecast from day 7 sees the changed days 6-7 (so the comparison can fail)
    c = TwinModel(**opts).fit(changed, sid, until_day=7).forecast(7)
    assert not a.equals(c)
    row = a.filter(pl.col("quantity") == "car_cmax").row(0, named=True)
    assert row["pi90_lo"] <= row["pi50_lo"] <= row["median"] <= row["pi50_hi"] <= row["pi90_hi"]
    p = a.filter(pl.col("quantity") == "crs_ge3")["probability"][0]
    assert 0.0 <= p <= 1.0


def test_a_simulated_patient_is_described_by_its_own_model(virtual, fitted):
    """Data generated by the twin itself (noise from the observation model): RMS about 1 for every
    parameter, so no misfit is reported; the same data with NEUT multiplied by 20 after day 0 is not
    described (NEUT), and the fit says so in a warning."""
    import dataclasses
    import warnings

    from cartlab.errors import CartlabWarning

    study, _, _ = virtual
    sid = study.subject_ids[0]
    m = fitted
    q = m.fit_quality_.filter(pl.col("n_residuals") >= 5)
    assert q.height >= 8 and q["describes"].all(), q
    assert np.all(q["rms_iwres"].to_numpy() < 2.0)
    bad = study.observations.with_columns(
        pl.when((pl.col("param") == "NEUT") & (pl.col("day") > 0)).then(pl.col("value") * 20)
        .otherwise(pl.col("value")).alias("value"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m2 = TwinModel(n_starts=1, n_sir=300, n_draws=100).fit(dataclasses.replace(study, observations=bad), sid)
    assert m2.fit_quality_.filter(pl.col("param") == "NEUT")["describes"].to_list() == [False]
    assert any(issubclass(w.category, CartlabWarning) and "does not describe NEUT" in str(w.message) for w in caught)


def test_sources_filter_and_errors():
    from cartlab.datasets import seed_case
    from cartlab.errors import InputError

    study = seed_case()
    with pytest.raises(InputError, match="not in the study"):
        TwinModel().fit(study, "NOBODY")
    with pytest.raises(InputError, match="no observation"):
        TwinModel(sources="no-such-source").fit(study, "CD7-AML-001")
    with pytest.raises(InputError, match="posterior"):
        TwinModel(posterior="nuts")


# ------------------------------------------------------------------------------------------------
# CLI and docs


def test_cli_twin_fit_writes_outputs_and_bad_options_are_one_message(tmp_path):
    from typer.testing import CliRunner

    from cartlab.cli import app
    from cartlab.datasets import seed_case_path

    out = tmp_path / "twin"
    res = CliRunner().invoke(app, ["twin", "fit", str(seed_case_path()), "--subject", "CD7-AML-001",
                                   "--sources", "paper", "--draws", "50", "--out", str(out)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for f in ("twin_params.csv", "twin_observations.csv", "twin_identifiability.csv", "twin_fit.png",
              "twin_fit.json"):
        assert (out / f).is_file(), f
    assert set(pl.read_csv(out / "twin_observations.csv")["source"].to_list()) == {"paper"}
    bad = CliRunner().invoke(app, ["twin", "fit", str(seed_case_path()), "--subject", "CD7-AML-001",
                                   "--posterior", "nuts", "--out", str(tmp_path / "x")], env={"COLUMNS": "200"})
    assert bad.exit_code == 2 and "posterior" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "x").exists()


def test_docs_parameter_table_is_the_yaml():
    """docs/twin.md's parameter table is generated from twin/params/cd7_twin_v1.yaml: they cannot drift."""
    from cartlab.twin.plots import params_markdown

    doc = (ROOT / "docs" / "twin.md").read_text(encoding="utf-8")
    start, end = "<!-- params:cd7_twin_v1:start -->\n", "<!-- params:cd7_twin_v1:end -->"
    assert start in doc and end in doc
    assert doc.split(start, 1)[1].split(end, 1)[0] == params_markdown("cd7_twin_v1")


def test_cli_twin_forecast_writes_the_forecast(tmp_path, virtual):
    from typer.testing import CliRunner

    from cartlab.cli import app
    from cartlab.twin.observe import write_tables

    study, _, _ = virtual
    folder = write_tables(study.folder_tables, tmp_path / "virtual")
    out = tmp_path / "fc"
    res = CliRunner().invoke(app, ["twin", "forecast", str(folder), "--subject", study.subject_ids[0], "--from-day",
                                   "7", "--draws", "50", "--out", str(out)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    fc = pl.read_csv(out / "twin_forecast.csv")
    assert fc["quantity"].to_list() == ["car_cmax", "car_tmax", "car_day28", "crs_ge3", "response_d28"]
    assert (out / "twin_forecast.png").is_file() and (out / "twin_forecast.json").is_file()
    meta = json.loads((out / "twin_forecast.json").read_text())
    assert isinstance(meta["forecast_reliable"], bool) and isinstance(meta["forecast_notes"], list)
    assert {r["param"] for r in meta["fit_quality"]} == set(pl.read_csv(out / "twin_fit_quality.csv")["param"])
    # the forecast saw only rows up to day 7
    assert pl.read_csv(out / "twin_observations.csv")["day"].max() <= 7


def test_collinearity_index_by_hand():
    """Brun 2001: for two unit columns at angle a, S'S = [[1, c], [c, 1]] (c = cos a), smallest
    eigenvalue 1 - c, index 1 / sqrt(1 - c); orthogonal columns 1; identical columns infinite."""
    from cartlab.twin.identify import collinearity

    a = 0.3
    S = np.array([[1.0, math.cos(a), 0.0], [0.0, math.sin(a), 0.0], [0.0, 0.0, 2.0]])
    assert collinearity(S, (0, 1)) == pytest.approx(1 / math.sqrt(1 - math.cos(a)))
    assert collinearity(S, (0, 2)) == pytest.approx(1.0)
    assert collinearity(np.array([[1.0, 2.0], [1.0, 2.0]]), (0, 1)) == math.inf


def test_mcmc_option_samples_a_known_posterior():
    """posterior='mcmc': adaptive random-walk Metropolis on N(m, inv(A)) recovers m and inv(A)."""
    A = np.array([[2.0, 0.6], [0.6, 1.0]])
    m = np.array([0.5, -0.5])
    model = TwinModel(posterior="mcmc", n_draws=4000, seed=3)
    model._objective, model.x_, model.cov_ = _Quadratic(A, m), m.copy(), np.linalg.inv(A)
    model._posterior(np.random.default_rng(3))
    np.testing.assert_allclose(model.posterior_x_.mean(axis=0), m, atol=0.1)
    np.testing.assert_allclose(np.cov(model.posterior_x_.T), np.linalg.inv(A), rtol=0.25, atol=0.05)
