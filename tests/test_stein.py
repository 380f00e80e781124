"""Stein 2019 CAR-T kinetic model: curve, per-subject fits (M3), SAEM population fit, covariates.

Reference values: ``../shared/research/kinetics.md`` section 1.1 ([C] = recomputed there from
Stein 2019 Table 1): AUC0-28 171,774 copies*d/ug, R0 6.15, doubling time 0.78 d, t1/2 4.3 d and
217 d. Population tests simulate from :data:`STEIN_2019` and fit back (issue acceptance: typical
values within 10%, variances within 25%). Seeds were fixed before the tests were first run.
"""

from __future__ import annotations

import math
import os

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartlab.datasets import seed_case
from cartlab.kinetics.stein import (
    DESIGN_2Y,
    DESIGN_180D,
    PARAMS,
    STEIN_2019,
    Dosing,
    PopulationParams,
    SteinModel,
    SteinPopulationModel,
    derived_quantities,
    simulate,
    stein_auc,
    stein_curve,
    stein_log_curve,
    stein_peak,
)

TYPICAL_AUC_0_28 = 171_774.0  # kinetics.md 1.1 [C]
#: a deliberately poor start for the population fits (x2 / x0.6 / x0.5 of the truth)
BAD_INIT = {p: STEIN_2019.theta[p] * f for p, f in zip(PARAMS, (2.0, 0.6, 0.5, 2.0, 2.0, 0.5))}


def _rel(a, b):
    return a / b - 1.0


def _report(title, rows):
    print(f"\n{title}")
    for r in rows:
        print("  " + r)


# ---------------------------------------------------------------------------------------------
# the curve
# ---------------------------------------------------------------------------------------------


def test_typical_curve_reference_values():
    typ = STEIN_2019.typical()
    auc = float(stein_auc(0, 28, typ))
    assert auc == pytest.approx(TYPICAL_AUC_0_28, rel=0.005)
    t = np.linspace(0, 28, 280_001)  # 1e-4 d grid; the kink at Tmax is resolved
    trap = float(np.trapezoid(stein_curve(t, typ), t))
    assert trap == pytest.approx(TYPICAL_AUC_0_28, rel=0.005)
    assert trap == pytest.approx(auc, rel=1e-6)
    # Cmax at Tmax, and the curve is continuous there
    assert float(stein_curve(9.3, typ)) == pytest.approx(24_000.0, rel=1e-12)
    assert float(stein_curve(9.3 - 1e-9, typ)) == pytest.approx(24_000.0, rel=1e-6)
    cmax, tmax = stein_peak(typ)
    assert float(cmax) == pytest.approx(24_000.0) and float(tmax) == pytest.approx(9.3)
    d = derived_quantities(typ)
    assert round(float(d["r0"]), 2) == 6.15
    assert float(stein_curve(0.0, typ)) == pytest.approx(24_000 / 3_900)
    assert round(float(d["rho"]), 3) == 0.889
    assert round(float(d["doubling_time"]), 2) == 0.78
    assert round(float(d["t_half_alpha"]), 1) == 4.3
    assert round(float(d["t_half_beta"])) == 217
    assert float(d["stein_auc_0_28"]) == pytest.approx(auc)
    # C(28)/Cmax = 0.057 [C]
    assert float(stein_curve(28.0, typ)) / 24_000 == pytest.approx(0.057, abs=5e-4)
    # before the first infusion there are no CAR-T cells
    assert float(stein_curve(-1.0, typ)) == 0.0


def test_curve_is_vectorised_over_subjects_and_times():
    n, T = 7, 11
    rng = np.random.default_rng(0)
    p = {k: STEIN_2019.theta[k] * np.exp(0.3 * rng.standard_normal(n)) for k in PARAMS}
    t = np.linspace(0, 60, T)
    c = stein_curve(t, p)
    assert c.shape == (n, T)
    for i in range(n):
        one = stein_curve(t, {k: float(v[i]) for k, v in p.items()})
        np.testing.assert_allclose(c[i], one, rtol=1e-12)
    # per-subject times (n, T) and a leading batch axis (2, n) broadcast the same way
    tt = np.broadcast_to(t, (n, T)) + np.arange(n)[:, None]
    assert stein_curve(tt, p).shape == (n, T)
    pb = {k: np.stack([v, v]) for k, v in p.items()}
    assert stein_log_curve(t, pb).shape == (2, n, T)
    assert stein_auc(0, 28, p).shape == (n,)


def test_extensions_lag_comedication_split_dose():
    typ = STEIN_2019.typical()
    t = np.linspace(0, 60, 600_001)
    # lag: flat at R0, then the curve shifted
    lag = dict(typ, tlag=2.0)
    np.testing.assert_allclose(stein_curve([0.0, 1.0, 1.99], lag), typ["cmax"] / typ["foldx"])
    np.testing.assert_allclose(stein_curve(t[t > 2] , lag), stein_curve(t[t > 2] - 2, typ), rtol=1e-10)
    # Ftoci multiplies rho after the first tocilizumab: slope of log C changes there
    toci = dict(typ, ftoci=1.5)
    lc = stein_log_curve(np.array([3.0, 4.0, 5.0, 6.0]), toci, Dosing(t_toci=5.0))
    rho = math.log(3900) / 9.3
    assert lc[1] - lc[0] == pytest.approx(rho)
    assert lc[3] - lc[2] == pytest.approx(1.5 * rho)
    # a comedication after Tmax changes nothing; none (NaN) = no effect
    np.testing.assert_allclose(stein_curve(t[::1000], toci, Dosing(t_toci=20.0)), stein_curve(t[::1000], typ))
    np.testing.assert_allclose(stein_curve(t[::1000], toci, Dosing(t_toci=np.nan)), stein_curve(t[::1000], typ))
    # split dose, superposition: 20% on day 0, 80% on day 2
    ev = Dosing(dose_times=[0.0, 2.0], dose_fractions=[1.0, 4.0])
    c = stein_curve(t, typ, ev)
    np.testing.assert_allclose(c, 0.2 * stein_curve(t, typ) + 0.8 * stein_curve(t - 2, typ), rtol=1e-10)
    # everything together: analytical AUC and exact peak vs a fine grid
    allx = dict(typ, tlag=0.5, ftoci=1.3, fster=0.6)
    ev = Dosing(t_toci=4.0, t_ster=6.5, dose_times=[0.0, 2.0], dose_fractions=[0.2, 0.8])
    c = stein_curve(t, allx, ev)
    assert float(stein_auc(0, 60, allx, ev)) == pytest.approx(float(np.trapezoid(c, t)), rel=1e-6)
    assert float(stein_auc(3, 28, allx, ev)) == pytest.approx(
        float(np.trapezoid(c[(t >= 3) & (t <= 28)], t[(t >= 3) & (t <= 28)])), rel=1e-6)
    cm, tm = stein_peak(allx, ev)
    assert float(cm) == pytest.approx(c.max(), rel=1e-9)
    assert float(tm) == pytest.approx(t[c.argmax()], abs=1e-3)


@settings(max_examples=60, deadline=None)
@given(
    foldx=st.floats(2, 1e6), tmax=st.floats(1, 30), cmax=st.floats(10, 1e6), alpha=st.floats(0.01, 2),
    fb=st.floats(1e-5, 0.5), beta=st.floats(1e-4, 0.05), t_toci=st.one_of(st.none(), st.floats(0, 40)),
    ftoci=st.floats(0.3, 3), second=st.one_of(st.none(), st.floats(0.5, 10)),
)
def test_analytical_auc_and_peak_match_numerics(foldx, tmax, cmax, alpha, fb, beta, t_toci, ftoci, second):
    p = dict(foldx=foldx, tmax=tmax, cmax=cmax, alpha=alpha, fb=fb, beta=beta, ftoci=ftoci)
    ev = Dosing(t_toci=t_toci)
    if second is not None:
        ev = Dosing(t_toci=t_toci, dose_times=[0.0, second], dose_fractions=[0.3, 0.7])
    t = np.linspace(0, 60, 200_001)
    c = stein_curve(t, p, ev)
    assert float(stein_auc(0, 60, p, ev)) == pytest.approx(float(np.trapezoid(c, t)), rel=1e-4)
    cm, _ = stein_peak(p, ev)
    assert float(cm) >= c.max() * (1 - 1e-9)
    assert float(cm) <= c.max() * (1 + 1e-3)


# ---------------------------------------------------------------------------------------------
# simulation
# ---------------------------------------------------------------------------------------------


def test_simulate_is_seeded_and_marks_blq():
    a = simulate(20, seed=3, times=DESIGN_180D, lloq=50.0)
    b = simulate(20, seed=3, times=DESIGN_180D, lloq=50.0)
    assert a.equals(b)
    assert not a.equals(simulate(20, seed=4, times=DESIGN_180D))
    assert a.height == 20 * len(DESIGN_180D)
    assert set(a.columns) >= {"subject_id", "time", "conc", "pred", "lloq", "blq"}
    assert a.filter(pl.col("blq"))["conc"].null_count() == a["blq"].sum() > 0
    assert a.filter(~pl.col("blq"))["conc"].min() >= 50.0
    # moment-matched draws reproduce the population moments exactly
    _, truth = simulate(300, seed=1, exact_moments=True, return_params=True)
    for p in PARAMS:
        lp = np.log(truth[p].to_numpy())
        assert lp.mean() == pytest.approx(math.log(STEIN_2019.theta[p]), abs=1e-9)
        assert lp.var() == pytest.approx(STEIN_2019.omega2[p], rel=1e-9)


# ---------------------------------------------------------------------------------------------
# per-subject fits
# ---------------------------------------------------------------------------------------------

TRUE_1 = {"foldx": 5000.0, "tmax": 8.5, "cmax": 30_000.0, "alpha": 0.2, "fb": 0.01, "beta": 0.004}
TIMES_1 = np.array([0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 17, 21, 28, 35, 42, 56, 90, 120, 180, 270, 365])


def test_per_subject_fit_recovers_noise_free_curve():
    df = pl.DataFrame({"subject_id": "S1", "time": TIMES_1, "conc": stein_curve(TIMES_1, TRUE_1)})
    fit = SteinModel(sigma=0.1).fit(df)
    row = fit.individual_.row(0, named=True)
    assert row["converged"], row["message"]
    for p in PARAMS:
        assert row[p] == pytest.approx(TRUE_1[p], rel=1e-4), p
    # derived quantities of the fitted curve
    d = derived_quantities(TRUE_1)
    assert row["stein_auc_0_28"] == pytest.approx(float(d["stein_auc_0_28"]), rel=1e-4)
    assert row["stein_cmax"] == pytest.approx(30_000, rel=1e-4) and row["stein_tmax"] == pytest.approx(8.5, rel=1e-4)
    # a wrong start does not matter; fixed parameters are honoured
    fx = SteinModel(sigma=0.1, fixed={"beta": 0.004}).fit(df)
    s = fx.summary
    assert s.filter(parameter="beta")["fixed"][0] and s.filter(parameter="beta")["se"][0] is None
    assert fx.individual_["alpha"][0] == pytest.approx(0.2, rel=1e-4)


def _pooled_blq_case(seed=2019, reps=60):
    """One 'subject' with `reps` replicate samples per time; the slow phase falls through the LLOQ."""
    true = {"foldx": 3900.0, "tmax": 9.3, "cmax": 24_000.0, "alpha": 0.16, "fb": 0.0079, "beta": 0.01}
    times = np.array([1, 2, 3, 4, 7, 9, 11, 14, 21, 28, 42, 56, 90, 120, 150, 180, 240, 300, 365.0])
    rng = np.random.default_rng(seed)
    t = np.repeat(times, reps)
    y = stein_curve(t, true) * np.exp(0.5 * rng.standard_normal(t.size))
    blq = y < 50.0
    df = pl.DataFrame({"subject_id": "POOL", "time": t, "conc": np.where(blq, np.nan, y), "lloq": 50.0,
                       "blq": blq}).with_columns(pl.col("conc").fill_nan(None))
    return true, df


def test_m3_handles_blq_and_dropping_blq_is_biased():
    true, df = _pooled_blq_case()
    assert 0.25 < df["blq"].mean() < 0.5
    m3 = SteinModel(blq="m3").fit(df)
    drop = SteinModel(blq="drop").fit(df)
    s3, sd = m3.summary, drop.summary
    rows = []
    for p in PARAMS:
        e3, r3 = s3.filter(parameter=p)["estimate"][0], s3.filter(parameter=p)["rse_pct"][0] / 100
        ed, rd = sd.filter(parameter=p)["estimate"][0], sd.filter(parameter=p)["rse_pct"][0] / 100
        z3, zd = math.log(e3 / true[p]) / r3, math.log(ed / true[p]) / rd
        rows.append(f"{p:6s} true {true[p]:<9.4g} M3 {e3:<10.4g} (z {z3:+.1f})  drop {ed:<10.4g} (z {zd:+.1f})")
        assert abs(z3) < 3, (p, e3, true[p])  # M3: unbiased within its own SE
    _report("BLQ designed case (pooled replicates)", rows)
    assert m3.individual_["converged"][0] and drop.individual_["converged"][0]
    # ignoring BLQ: the slow phase looks flatter (only high tail values survive) and sigma shrinks
    zb = math.log(sd.filter(parameter="beta")["estimate"][0] / true["beta"]) / (
        sd.filter(parameter="beta")["rse_pct"][0] / 100)
    assert zb < -3  # biased by more than 3 of its own SEs
    assert sd.filter(parameter="beta")["estimate"][0] < 0.7 * true["beta"]
    sig3, sigd = m3.individual_["sigma"][0], drop.individual_["sigma"][0]
    assert abs(math.log(sig3 / 0.5)) < 0.05 and sigd < 0.94 * 0.5


def test_plain_frame_forms_censor_text_and_pre_dose_rows():
    t = np.array([-1.0, 0.5, 2, 4, 7, 9, 11, 14, 21, 28, 42])
    c = stein_curve(np.maximum(t, 0), TRUE_1)
    df = pl.DataFrame({"subject": "A", "day": t, "value": c, "lloq": 40.0,
                       "censor": [None] * t.size}).with_columns(pl.col("censor").cast(pl.String))
    df = df.with_columns(  # first sample reported "<40", one below-LLOQ number
        pl.when(pl.col("day") == -1).then(pl.lit("<")).otherwise(pl.col("censor")).alias("censor"),
        pl.when(pl.col("day") == -1).then(None).when(pl.col("day") == 0.5).then(12.0)
        .otherwise(pl.col("value")).alias("value"),
    )
    fit = SteinModel(sigma=0.3).fit(df)
    assert fit.dropped_["reason"].to_list() == ["before the first infusion"]
    row = fit.individual_.row(0, named=True)
    assert row["n_obs"] == 10 and row["n_blq"] == 1  # 12 < LLOQ 40 is treated as BLQ (M3)


def test_seed_case_fit_passes_through_the_paper_values():
    study = seed_case()
    fit = SteinModel().fit(study)
    assert fit.subject_ids_ == ["CD7-AML-001"]
    # the pre-infusion "<50" row is not used; the 12 post-infusion CARCOPY rows are
    assert fit.dropped_["reason"].to_list() == ["before the first infusion"]
    row = fit.individual_.row(0, named=True)
    assert row["converged"], row["message"]
    assert row["n_obs"] == 12 and row["n_blq"] == 0
    pred = fit.predict([14.0, 28.0])["pred"].to_numpy()
    resid = np.log(np.array([183_945.0, 5_084.0]) / pred)
    assert np.all(np.abs(resid) < STEIN_2019.sigma)  # within Stein's residual SD on the log scale
    assert np.all(np.abs(resid) < 2 * row["sigma"])  # and within 2 SD of the fitted residual error
    # the fitted curve's derived quantities (analytical AUC) agree with a fine-grid trapezoid
    t = np.linspace(0, 28, 280_001)
    c = fit.predict(t)["pred"].to_numpy()
    assert row["stein_auc_0_28"] == pytest.approx(float(np.trapezoid(c, t)), rel=1e-6)
    assert row["stein_cmax"] == pytest.approx(c.max(), rel=1e-4)  # grid max just misses the exact peak
    assert 10 <= row["stein_tmax"] <= 14
    assert row["stein_cmax"] >= 183_945 * 0.9
    sup = SteinModel(dose_handling="superpose").fit(study).individual_.row(0, named=True)
    assert sup["converged"], sup["message"]
    # the 4e6/kg fraction on day 2 starts its own curve: the peak is 2 d after its expansion
    assert sup["stein_tmax"] == pytest.approx(sup["tmax"] + 2.0)
    _report("seed case CD7-AML-001 (per-subject Stein fit)", [
        f"first : Cmax {row['stein_cmax']:,.0f} copies/ug at Tmax {row['stein_tmax']:.2f} d, AUC0-28 "
        f"{row['stein_auc_0_28']:,.0f}, sigma {row['sigma']:.3f}, AIC {row['aic']:.1f}, "
        f"pred d14 {pred[0]:,.0f} d28 {pred[1]:,.0f}",
        f"superpose: Cmax {sup['stein_cmax']:,.0f} at {sup['stein_tmax']:.2f} d, AUC0-28 {sup['stein_auc_0_28']:,.0f}, "
        f"sigma {sup['sigma']:.3f}, AIC {sup['aic']:.1f}",
    ])


def test_per_subject_fits_of_simulated_subjects_and_peaks_on_a_sample():
    obs, truth = simulate(12, seed=1, times=DESIGN_2Y, return_params=True)
    fit = SteinModel().fit(obs)
    f = fit.individual_
    assert f["converged"].all(), f.filter(~pl.col("converged"))["message"].to_list()
    kink = f.filter(pl.col("message").str.contains("peak at a sampling time"))
    assert kink.height >= 1  # with this design some optima put the peak exactly on a sample
    assert all(min(abs(t - np.array(DESIGN_2Y))) < 1e-9 for t in kink["tmax"])
    s = fit.summary.filter(pl.col("subject_id").is_in(kink["subject_id"].to_list()))
    assert s.filter(parameter="tmax")["se"].null_count() == kink.height
    assert s.filter(parameter="cmax")["se"].null_count() == 0
    # the per-subject estimates track the true individual peaks
    r = np.log(f["cmax"].to_numpy() / truth["cmax"].to_numpy())
    assert np.median(np.abs(r)) < 0.3


@pytest.fixture(scope="module")
def map3():
    """Three simulated subjects (seed 5, DESIGN_180D), the unfitted MAP model, and what its fit() returned;
    shared read-only by the result-API and the convention tests, which fitted the same thing each (session 42)."""
    obs = simulate(3, seed=5, times=DESIGN_180D)
    model = SteinModel(prior=STEIN_2019)
    return obs, model, model.fit(obs)


def test_per_subject_result_api(map3):
    _, _, fit = map3
    s = fit.summary
    assert s.columns[:9] == ["subject_id", "parameter", "estimate", "se", "rse_pct", "ci_lower", "ci_upper",
                             "fixed", "converged"]
    assert "iiv" in s.columns and s.height == 3 * 7
    f = fit.individual_
    for c in ("subject_id", *PARAMS, "rho", "r0", "doubling_time", "t_half_alpha", "t_half_beta", "stein_cmax",
              "stein_tmax", "stein_auc_0_28", "sigma", "nll", "aic", "converged"):
        assert c in f.columns
    pr = fit.predict([0, 7, 14], subject="SIM-0002")
    assert pr.shape == (3, 3) and pr["subject_id"].unique().to_list() == ["SIM-0002"]
    assert fit.predict([0, 7]).height == 6
    fig = fit.plot()
    assert len([a for a in fig.axes if a.get_visible()]) == 3


def test_fitters_follow_one_convention(map3):
    """Issue 14 point 5 (lifelines / scikit-learn): fit() returns the model itself, estimates are
    attributes ending in "_" that exist only after fit, summary is a property."""
    obs, model, returned = map3
    unfitted = SteinModel(prior=STEIN_2019)  # a model like the fixture's before its fit
    with pytest.raises(AttributeError, match=r"not fitted yet: call fit\(\) first"):
        unfitted.summary
    assert not hasattr(unfitted, "individual_")
    assert returned is model
    assert isinstance(model.summary, pl.DataFrame) and model.subject_ids_ == ["SIM-0001", "SIM-0002", "SIM-0003"]
    # params_ is what stein_curve takes: with the subjects' dosing it draws the fitted curves
    assert model.params_.columns == ["subject_id", *PARAMS, "tlag", "ftoci", "fster", "sigma"]
    t = np.array([0.5, 7.0, 14.0, 60.0])
    np.testing.assert_allclose(stein_curve(np.broadcast_to(t, (3, t.size)), model.params_, model.dosing_).ravel(),
                               model.predict(t)["pred"].to_numpy(), rtol=1e-12)
    # individual_ puts the observed peak beside the fitted one; the highest quantifiable sample of
    # each subject is read here straight from the simulated input
    top = obs.filter(~pl.col("blq")).group_by("subject_id", maintain_order=True).agg(pl.col("conc").max())
    ind = model.individual_
    assert ind["obs_cmax"].to_list() == top["conc"].to_list()
    np.testing.assert_allclose(ind["stein_cmax_over_obs"], ind["stein_cmax"] / ind["obs_cmax"], rtol=1e-15)

    pop = SteinPopulationModel(seed=5, n_burn=20, n_smooth=10, n_post=10, n_is=50)
    with pytest.raises(AttributeError, match="call fit"):
        pop.summary
    assert pop.fit(simulate(20, seed=2, times=DESIGN_180D)) is pop
    assert dict(pop.params_.theta) == pop.theta_ and pop.params_.sigma == pop.sigma_
    assert pop.n_parameters_ == 6 + 6 + 1  # six typical values, six variances, sigma
    assert pop.aic_ == pytest.approx(-2 * pop.loglik_ + 2 * pop.n_parameters_)
    assert set(pop.shrinkage_) == set(PARAMS) and pop.individual_.height == 20
    assert pop.summary["shrinkage_sd_pct"].head(6).to_list() == [pop.shrinkage_[p] for p in PARAMS]


def test_dosing_is_one_value_for_every_curve_function():
    """The comedication times and infusions travel together as a Dosing (issue 14 point 4)."""
    typ = dict(STEIN_2019.typical(), ftoci=1.5)
    two = {k: np.array([v, v]) for k, v in typ.items()}
    dosing = Dosing(t_toci=np.array([4.0, np.inf]), dose_times=np.array([[0.0, 2.0], [0.0, 0.0]]),
                    dose_fractions=np.array([[0.2, 0.8], [1.0, 0.0]]))
    t = np.linspace(0, 40, 401)
    both = stein_curve(t, two, dosing)
    # subject 2: no tocilizumab, the whole dose on day 0 = the plain curve
    np.testing.assert_allclose(both[1], stein_curve(t, typ), rtol=1e-12)
    # subject 1 through its own Dosing (indexing picks the subject); by hand: 20% of a curve from
    # day 0 plus 80% of one from day 2, each with rho x 1.5 after day 4
    np.testing.assert_allclose(both[0], stein_curve(t, typ, dosing[0]), rtol=1e-12)
    by_hand = (0.2 * stein_curve(t, typ, Dosing(t_toci=4.0))
               + 0.8 * stein_curve(t - 2.0, typ, Dosing(t_toci=2.0)))
    np.testing.assert_allclose(both[0], by_hand, rtol=1e-10)
    assert stein_auc(0, 28, two, dosing).shape == (2,) and stein_peak(two, dosing)[0].shape == (2,)
    assert derived_quantities(two, dosing)["stein_auc_0_28"][1] == pytest.approx(float(stein_auc(0, 28, typ)))
    np.testing.assert_array_equal(stein_curve(t, typ, Dosing()), stein_curve(t, typ))  # the default
    with pytest.raises(AttributeError):
        dosing.t_toci = None  # frozen
    sim = simulate(2, seed=1, times=[1.0, 14.0], dosing=Dosing(t_toci=[3.0, np.nan]), lloq=None)
    assert sim.group_by("subject_id", maintain_order=True).agg(pl.col("t_toci").first())["t_toci"].to_list() == [3.0, None]


# ---------------------------------------------------------------------------------------------
# population (SAEM)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pop500():
    """500 subjects, moment-matched random effects, 2-year design, LLOQ 50, sigma 0.56.

    Three MCMC chains: omega^2 of beta (shrinkage ~25%, RSE ~12%) has a SAEM Monte-Carlo SD of
    ~6% with one chain and ~3% with three, and the 25% band is only ~2 statistical SEs wide, so
    the extra chains keep the outcome a property of the data rather than of the MCMC path."""
    obs = simulate(500, seed=2019, times=DESIGN_2Y, params=STEIN_2019, lloq=50.0, exact_moments=True)
    fit = SteinPopulationModel(n_starts=1, init=BAD_INIT, seed=2019, n_chains=3).fit(obs)
    return obs, fit


@pytest.mark.slow
def test_population_recovery_of_stein_2019(pop500):
    obs, fit = pop500
    assert 0.2 < obs["blq"].mean() < 0.4
    s = fit.summary
    rows = []
    for p in PARAMS:
        r = s.filter(parameter=p).row(0, named=True)
        rows.append(f"{p:6s} theta {r['estimate']:<10.4g} true {STEIN_2019.theta[p]:<8.4g} "
                    f"({100 * _rel(r['estimate'], STEIN_2019.theta[p]):+5.1f}%, RSE {r['rse_pct']:.1f}%)  "
                    f"omega2 {r['omega2']:.3f} true {STEIN_2019.omega2[p]:.2f} "
                    f"({100 * _rel(r['omega2'], STEIN_2019.omega2[p]):+5.1f}%, RSE {r['omega2_rse_pct']:.1f}%)  "
                    f"shrinkage {r['shrinkage_sd_pct']:.0f}%")
    rows.append(f"sigma {fit.sigma_:.4f} true 0.56; -2LL {-2 * fit.loglik_:.1f} (IS MC SE {2 * fit.loglik_se_:.1f}); "
                f"score chi2 {fit.polish_['score_chi2'][-1] if fit.polish_.height else float('nan'):.2f} (13 d.f.)")
    _report("SAEM recovery, 500 subjects (moment-matched), DESIGN_2Y", rows)
    for p in PARAMS:
        assert abs(_rel(fit.theta_[p], STEIN_2019.theta[p])) < 0.10, p
        assert abs(_rel(fit.omega2_[p], STEIN_2019.omega2[p])) < 0.25, p
    assert abs(_rel(fit.sigma_, 0.56)) < 0.05
    assert fit.fim_ok_
    assert s["rse_pct"].is_not_null().all() and (s["rse_pct"] < 25).all()
    assert np.isfinite(fit.loglik_) and fit.aic_ == pytest.approx(-2 * fit.loglik_ + 2 * 13)
    assert fit.polish_.height == 1 and fit.polish_["score_chi2"][0] < 13  # stationary up to MC noise


@pytest.mark.slow
def test_population_recovery_plain_draw_within_standard_errors():
    """Independent random effects (no moment matching): every estimate within 3 SE.

    With omega^2 = 2.4 the geometric mean of 500 random foldx values alone has an SD of 6.9%, so a
    fixed 10% band is not a reliable criterion for a plain draw. The estimates are compared with
    the realised sample (mean and variance of the 500 simulated log-parameters), i.e. the
    estimation error; the Louis-FIM SE, which also contains the between-sample variance, is a
    conservative yardstick for it. (For this pre-chosen seed the sample variance of the tmax random
    effects happens to be 19% below the population's, p ~ 0.001, so against the population omega2
    of tmax is 3.9 SE off although the estimator matches the sample to 1.4%.)"""
    obs, truth = simulate(500, seed=2020, times=DESIGN_2Y, return_params=True)
    fit = SteinPopulationModel(n_starts=1, init=BAD_INIT, seed=2020, compute_ll=False).fit(obs)
    s = fit.summary
    rows = []
    for p in PARAMS:
        r = s.filter(parameter=p).row(0, named=True)
        lp = np.log(truth[p].to_numpy())
        gm, var = math.exp(lp.mean()), lp.var()
        z_t = math.log(r["estimate"] / gm) / (r["rse_pct"] / 100)
        z_o = (r["omega2"] - var) / r["omega2_se"]
        rows.append(f"{p:6s} theta vs population {100 * _rel(r['estimate'], STEIN_2019.theta[p]):+5.1f}%, vs sample "
                    f"{100 * _rel(r['estimate'], gm):+5.1f}% (z {z_t:+.1f}) | omega2 vs population "
                    f"{100 * _rel(r['omega2'], STEIN_2019.omega2[p]):+5.1f}%, vs sample "
                    f"{100 * _rel(r['omega2'], var):+5.1f}% (z {z_o:+.1f})")
        assert abs(z_t) < 3 and abs(z_o) < 3, p
    r = s.filter(parameter="sigma").row(0, named=True)
    assert abs(r["estimate"] - 0.56) / r["se"] < 3
    _report("SAEM, 500 subjects (plain random draw), DESIGN_2Y", rows)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("CARTLAB_STEIN_REPLICATES"),
                    reason="a replicate study (~4 min on one core): set CARTLAB_STEIN_REPLICATES=1; the 30-replicate "
                           "study is benchmarks/stein_recovery.py (results in docs/kinetics/stein_recovery.md)")
def test_population_recovery_mean_over_four_replicates():
    """The issue's bands on the mean error of four independent 500-subject datasets (seeds 1-4).

    One dataset is a draw from an estimator whose foldx typical value has a dataset-to-dataset SD
    of ~5% even with moment-matched random effects (information limit: the expansion is mostly
    below LLOQ), so single datasets miss the 10% band now and then (2 of 30). The mean over four
    halves that SD; this test therefore checks for bias of the estimator, independently of which
    dataset a seed happens to give. 30 replicates: ``benchmarks/stein_recovery.py`` and
    ``docs/kinetics/stein_recovery.md``."""
    th_err = {p: [] for p in PARAMS}
    om_err = {p: [] for p in PARAMS}
    for seed in (1, 2, 3, 4):
        obs = simulate(500, seed=seed, times=DESIGN_2Y, params=STEIN_2019, lloq=50.0, exact_moments=True)
        fit = SteinPopulationModel(n_starts=1, init=BAD_INIT, seed=seed, n_chains=3, compute_ll=False).fit(obs)
        for p in PARAMS:
            th_err[p].append(_rel(fit.theta_[p], STEIN_2019.theta[p]))
            om_err[p].append(_rel(fit.omega2_[p], STEIN_2019.omega2[p]))
    rows = [f"{p:6s} theta " + " ".join(f"{100 * e:+5.1f}%" for e in th_err[p])
            + f"  mean {100 * np.mean(th_err[p]):+5.1f}% | omega2 " + " ".join(f"{100 * e:+5.1f}%" for e in om_err[p])
            + f"  mean {100 * np.mean(om_err[p]):+5.1f}%" for p in PARAMS]
    _report("SAEM recovery, mean over 4 moment-matched 500-subject datasets (seeds 1-4), DESIGN_2Y", rows)
    for p in PARAMS:
        assert abs(np.mean(th_err[p])) < 0.10, p
        assert abs(np.mean(om_err[p])) < 0.25, p
        # and no single dataset is far out (3x the band would mean a failed fit, not bad luck)
        assert max(abs(e) for e in th_err[p]) < 0.30 and max(abs(e) for e in om_err[p]) < 0.75, p


@pytest.mark.slow
def test_vpc_of_the_population_fit(pop500):
    _, fit = pop500
    v = fit.vpc(n_rep=100, seed=3)
    assert set(v["quantile"].unique().to_list()) == {0.05, 0.5, 0.95}
    assert v["bin"].n_unique() == len(DESIGN_2Y)
    ok = v.filter(pl.col("observed").is_not_null() & pl.col("sim_lo").is_not_null())
    inside = ((ok["observed"] >= ok["sim_lo"]) & (ok["observed"] <= ok["sim_hi"])).mean()
    assert ok.height > 40 and inside >= 0.85
    # the BLQ fraction per time is reproduced as well
    assert ((v["obs_blq_frac"] >= v["sim_blq_lo"] - 0.02) & (v["obs_blq_frac"] <= v["sim_blq_hi"] + 0.02)).mean() > 0.85
    fig = fit.plot(kind="vpc", n_rep=50)
    assert fig.axes[0].get_yscale() == "log"


@pytest.mark.slow
def test_covariate_effects_continuous_and_binary_are_recovered():
    n = 400
    rng = np.random.default_rng(7)
    log_dose = rng.normal(0.0, 0.7, n)
    nhl = (rng.uniform(size=n) < 0.35).astype(float)
    params = STEIN_2019.replace(covariate_effects={("cmax", "log_dose"): 0.5, ("alpha", "nhl"): 0.5})
    obs, truth = simulate(n, seed=7, times=DESIGN_180D, params=params,
                          covariates=pl.DataFrame({"log_dose": log_dose, "nhl": nhl}), return_params=True)
    cov = pl.DataFrame({"subject_id": truth["subject_id"], "log_dose": log_dose,
                        "disease": np.where(nhl == 1, "NHL", "ALL")})
    fit = SteinPopulationModel(n_starts=1, covariates={"cmax": ["log_dose"], "alpha": ["disease"]}, centers={"log_dose": 0.0},
                               seed=7, compute_ll=False).fit(obs, covariates=cov)
    s = fit.summary
    b_dose = s.filter(parameter="cmax~log_dose").row(0, named=True)
    b_nhl = s.filter(parameter="alpha~disease[NHL]").row(0, named=True)
    _report("covariate recovery (400 subjects)", [
        f"cmax~log_dose      {b_dose['estimate']:.3f} (SE {b_dose['se']:.3f}), true 0.5",
        f"alpha~disease[NHL] {b_nhl['estimate']:.3f} (SE {b_nhl['se']:.3f}), true 0.5 (reference ALL)",
        f"cmax theta {fit.theta_['cmax']:.0f} (true 24000), omega2 {fit.omega2_['cmax']:.3f} (true 0.65); "
        f"alpha theta {fit.theta_['alpha']:.4f} (true 0.16)",
    ])
    for b in (b_dose, b_nhl):
        assert abs(b["estimate"] - 0.5) < 3 * b["se"] and b["se"] < 0.15
        assert b["estimate"] / b["se"] > 3  # the effect is detected
    assert "reference 'ALL'" in b_nhl["note"]
    assert abs(_rel(fit.theta_["cmax"], 24_000)) < 0.1 and abs(_rel(fit.theta_["alpha"], 0.16)) < 0.15
    # the covariate explains between-subject variance instead of inflating omega2
    assert abs(_rel(fit.omega2_["cmax"], 0.65)) < 0.25
    assert fit.params_.covariate_effects[("cmax", "log_dose")] == pytest.approx(b_dose["estimate"])
    # individual level: the EBEs carry the effects, the random effects do not
    f = fit.individual_
    assert np.corrcoef(np.log(f["cmax"].to_numpy()), log_dose)[0, 1] > 0.3
    assert abs(np.corrcoef(f["eta_cmax"].to_numpy(), log_dose)[0, 1]) < 0.1
    eta_a = f["eta_alpha"].to_numpy()
    assert abs(eta_a[nhl == 1].mean() - eta_a[nhl == 0].mean()) < 0.1
    la = np.log(f["alpha"].to_numpy())
    assert la[nhl == 1].mean() - la[nhl == 0].mean() > 0.3


def test_population_fit_api_and_determinism():
    obs = simulate(60, seed=11, times=DESIGN_180D)
    kw = dict(seed=5, n_burn=60, n_smooth=40, n_post=30, n_is=200)
    a = SteinPopulationModel(n_starts=1, **kw).fit(obs)
    b = SteinPopulationModel(n_starts=1, **kw).fit(obs)
    assert a.summary.equals(b.summary) and a.individual_.equals(b.individual_)
    s = a.summary
    assert s.columns == ["parameter", "kind", "estimate", "se", "rse_pct", "omega2", "omega2_se", "omega2_rse_pct",
                         "iiv_cv_pct", "shrinkage_sd_pct", "note"]
    assert s["parameter"].to_list() == [*PARAMS, "sigma"]
    f = a.individual_
    assert f.height == 60
    for c in (*PARAMS, *(f"eta_{p}" for p in PARAMS), "stein_cmax", "stein_tmax", "stein_auc_0_28", "doubling_time",
              "t_half_alpha", "t_half_beta"):
        assert c in f.columns
    typ = a.predict([0, 9, 28])
    assert typ["subject_id"].to_list() == ["typical"] * 3
    np.testing.assert_allclose(typ["pred"].to_numpy(), stein_curve([0, 9, 28], a.params_.typical()))
    ind = a.predict([14], subject=["SIM-0001", "SIM-0002"])
    assert ind.height == 2
    assert a.plot(kind="fits", max_subjects=4) is not None
    assert isinstance(a.params_, PopulationParams) and a.trace_.height == 100


def test_population_fit_on_a_study_with_split_doses_and_covariates():
    from cartlab.datasets import synthetic_cohort
    from cartlab.io import read_study

    study = read_study(synthetic_cohort(40, seed=3))
    fit = SteinPopulationModel(n_starts=1, covariates={"cmax": ["log_dose", "toci"]}, dose_handling="superpose", seed=1,
                               n_burn=60, n_smooth=40, n_post=30, n_is=200).fit(study)
    s = fit.summary
    assert {"cmax~log_dose", "cmax~toci"} <= set(s["parameter"].to_list())
    assert np.all(np.isfinite(s["estimate"].to_numpy()))
    assert fit.dosing_.dose_times is not None and (fit.dosing_.dose_times[:, 1] == 2.0).any()  # split infusions seen
    assert fit.individual_.height == study.subjects.height
