"""cartlab.twin.population: per-patient draws, targets, objective, and the calibrated cohort's rates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cartlab.twin.population import draw, load_population, load_targets, objective


def test_targets_are_cited_with_status():
    ts = load_targets()
    assert {t["id"] for t in ts} >= {"response_cr_cri", "crs_ge3", "cd7neg_relapse", "cmax_median", "tmax_median"}
    for t in ts:
        assert t["citation"].strip() and t["status"] in ("verified", "unverified", "assumed")
        lo, hi = t["range"]
        assert lo <= hi


def test_a_patient_is_the_same_in_any_batch():
    pop = load_population()
    a = draw(pop, np.arange(10), seed=5)
    b = draw(pop, np.array([6, 3]), seed=5)
    np.testing.assert_array_equal(b.theta, a.theta[[6, 3]])
    np.testing.assert_array_equal(b.covariates["weight_kg"], a.covariates["weight_kg"][[6, 3]])
    np.testing.assert_array_equal(b.hsct_day, a.hsct_day[[6, 3]])
    c = draw(pop, np.arange(10), seed=6)
    assert not np.array_equal(c.theta, a.theta)


def test_covariates_respect_their_bounds_and_rates():
    pop = load_population()
    d = draw(pop, np.arange(2000), seed=1)
    cov = pop.spec["covariates"]
    for name in ("weight_kg", "age_years", "bm_blast_pct", "cd7_on_blasts_pct"):
        x = d.covariates[name]
        assert x.min() >= cov[name]["lower"] and x.max() <= cov[name]["upper"], name
    # HSCT probability 0.54: 2000 draws within 4 binomial SDs (sd = sqrt(.54*.46/2000) = 0.011)
    assert abs(np.isfinite(d.hsct_day).mean() - cov["hsct_p"]["value"]) < 0.045
    days = d.hsct_day[np.isfinite(d.hsct_day)]
    assert days.min() >= 30 and days.max() <= 60 and np.all(days == np.floor(days))
    # non-expanders: rho scaled by 0.1
    irho = pop.table.index("rho")
    assert 0.04 < d.non_expander.mean() < 0.10
    mu, _ = pop.medians_and_sd()
    assert np.median(d.theta[d.non_expander, irho]) < 0.3 * mu[irho]


def test_objective_by_hand():
    targets = ({"id": "r", "statistic": "rate", "summary": "r", "k": 3, "n": 10, "range": [0, 1]},
               {"id": "m", "statistic": "median_log10", "summary": "m", "value": 1000.0, "sd_log10": 0.5, "range": [0, 1]})
    # -[3 ln 0.3 + 7 ln 0.7] + 0.5*((log10 10000 - 3)/0.5)^2 = 6.1086 + 2
    val = objective({"r": 0.3, "m": 1e4}, targets)
    assert val == pytest.approx(-(3 * math.log(0.3) + 7 * math.log(0.7)) + 2.0, rel=1e-12)
    assert objective({"r": 0.3, "m": 1e3}, targets) < val


def test_calibrated_cohort_rates_fall_in_the_cited_ranges(tmp_path):
    """Acceptance (issue 16): simulate --n 200 with the shipped (calibrated) population; every target
    statistic falls in the range targets/cd7_v1.yaml cites."""
    from cartlab.twin.population import target_rates
    from cartlab.twin.summaries import Accumulator
    from cartlab.twin.trial import TrialConfig, run_chunk

    cfg = TrialConfig(n=200, seed=4, chunk=200, folders=0)
    acc = Accumulator().merge(run_chunk(cfg, 0)["acc"])
    rates = target_rates(acc, cfg.arms[0].label)
    for t in load_targets():
        lo, hi = t["range"]
        assert lo <= rates[t["summary"]] <= hi, (t["id"], rates[t["summary"]], t["range"])
