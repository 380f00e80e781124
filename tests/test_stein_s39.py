"""Session 39 (review 39): multi-start SAEM (A1), the AUC's extrapolated share (B3), units of the Stein
outputs (B1), the BLQ rule recorded (B4), the burn-in drift test (B2). Expected values are derived by
hand from the rules' text (comments say how), never copied from cartlab's output."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from scipy.integrate import quad

from cartlab.cli.kinetics_io import stein_command
from cartlab.kinetics.stein import STEIN_2019, SteinModel, SteinPopulationModel, simulate
from cartlab.kinetics.stein.flags import population_warnings
from cartlab.kinetics.stein.starts import best_start, start_seeds, starts_warnings

# one subject, samples to day 14, the first one (22.3) below its LLOQ 30
FRAME = pl.DataFrame({"subject_id": ["A"] * 6, "time": [1.0, 4, 7, 9, 11, 14],
                      "conc": [22.3, 300, 3000, 30000, 400000, 200000], "lloq": [30.0] * 6})


def _curve(t, p):
    """Stein 2019 (kinetics.md 1.1), written out: R0 e^(rho t) before Tmax, biexponential after."""
    rho = math.log(p["foldx"]) / p["tmax"]
    if t < p["tmax"]:
        return p["cmax"] / p["foldx"] * math.exp(rho * t)
    s = t - p["tmax"]
    return p["cmax"] * ((1 - p["fb"]) * math.exp(-p["alpha"] * s) + p["fb"] * math.exp(-p["beta"] * s))


# ---- A1: several SAEM starts --------------------------------------------------------------------
def _rec(seed, ll, se, chi2=1.0):
    return {"seed": seed, "loglik": ll, "loglik_se": se, "score_chi2": chi2}


def test_starts_disagree_warning_names_best_and_worst():
    # review 39: seed 1 -341.28 (MC SE 0.28), seed 2 -300.64 (0.27): difference 40.64 > 2*sqrt(0.28^2+0.27^2) = 0.778
    recs = [_rec(1, -341.28, 0.28), _rec(2, -300.64, 0.27)]
    assert best_start(recs) == 1
    w = starts_warnings(recs, 1, 13)
    assert len(w) == 1 and "seed 2" in w[0] and "seed 1" in w[0] and "0.778" in w[0]
    # 0.7 < 0.778: within Monte-Carlo error, no warning
    assert starts_warnings([_rec(1, -300.0, 0.28), _rec(2, -300.7, 0.27)], 0, 13) == []
    # no SE: the limit is 1 log-likelihood unit
    assert len(starts_warnings([_rec(1, -300.0, None), _rec(2, -301.2, None)], 0, 13)) == 1
    assert starts_warnings([_rec(1, -300.0, None), _rec(2, -300.9, None)], 0, 13) == []


def test_score_chi2_above_n_parameters_warns():
    # review 39: score chi2 11.1 for 13 parameters is below 13 (no warning); 14 > 13 warns
    assert starts_warnings([_rec(1, -300.0, 0.3, 11.1)], 0, 13) == []
    w = starts_warnings([_rec(1, -300.0, 0.3, 14.0)], 0, 13)
    assert len(w) == 1 and "score chi2 14 > 13" in w[0]


def test_start_seeds_deterministic_first_is_seed():
    assert start_seeds(1, 3) == start_seeds(1, 3)
    assert start_seeds(1, 3)[0] == 1 and len(set(start_seeds(1, 3))) == 3
    with pytest.raises(ValueError):
        start_seeds(1, 0)


def test_population_fit_keeps_the_best_start():
    sim = simulate(8, seed=3)
    m = SteinPopulationModel(n_starts=2, seed=5, n_burn=30, n_smooth=20, n_post=20, n_is=200).fit(sim)
    assert [r["seed"] for r in m.starts_] == start_seeds(5, 2)
    lls = [r["loglik"] for r in m.starts_]
    assert m.loglik_ == max(lls)
    assert [r["kept"] for r in m.starts_] == [ll == max(lls) for ll in lls]
    assert m.diagnostics_["n_starts"] == 2


# ---- B3: extrapolated share of AUC0-28 -----------------------------------------------------------
def test_auc_extrapolated_pct_by_hand():
    m = SteinModel(prior=STEIN_2019).fit(FRAME)
    r = m.individual_.row(0, named=True)
    p = {k: r[k] for k in ("foldx", "tmax", "cmax", "alpha", "fb", "beta")}
    # share = AUC(t_last=14, 28) / AUC(0, 28) of the curve written out above, by numerical quadrature
    tail = quad(_curve, 14, 28, args=(p,), points=[p["tmax"]], limit=200)[0]
    total = quad(_curve, 0, 28, args=(p,), points=[p["tmax"]], limit=200)[0]
    assert r["auc_extrapolated_pct"] == pytest.approx(100 * tail / total, rel=1e-6)
    assert r["auc_extrapolated"] is (100 * tail / total > 20)  # default threshold 20%
    assert r["auc_extrapolated"] and "auc_extrap_warn_pct" in r["auc_note"]
    # a sample on day 28: nothing extrapolated (0 by the rule's text)
    full = pl.concat([FRAME, pl.DataFrame({"subject_id": ["A"], "time": [28.0], "conc": [5000.0], "lloq": [30.0]})])
    r2 = SteinModel(prior=STEIN_2019, auc_extrap_warn_pct=50).fit(full).individual_.row(0, named=True)
    assert r2["auc_extrapolated_pct"] == 0.0 and r2["auc_extrapolated"] is False


# ---- B1 and B4 through the command --------------------------------------------------------------
def test_units_and_blq_rule_written(tmp_path):
    src = tmp_path / "conc.csv"
    FRAME.write_csv(src)
    out = tmp_path / "out"
    meta = stein_command(src, out, subject="subject_id", time="time", conc="conc", lloq="lloq",
                         prior="stein2019", conc_unit="copies/ug")
    units = pl.read_csv(out / "stein_units.csv")
    got = {(f, c): u for f, c, u in units.iter_rows()}
    # kinetics.md 1.1: C in the concentration unit, t in days, rates 1/d, AUC = d * concentration
    assert got[("stein_subjects.csv", "stein_auc_0_28")] == "d*copies/ug"
    assert got[("stein_subjects.csv", "stein_cmax")] == "copies/ug"
    assert got[("stein_subjects.csv", "alpha")] == "1/d"
    assert got[("stein_subjects.csv", "tmax")] == "d"
    assert got[("stein_subjects.csv", "foldx")] == "unitless"
    assert got[("stein_observations.csv", "conc")] == "copies/ug"
    js = json.loads((out / "stein_fit.json").read_text())
    assert js["units"]["conc"] == "copies/ug" and js["units"]["time"] == "d"
    # B4: the measured 22.3 stays beside the flag; the rule is recorded with the row's LLOQ
    obs = pl.read_csv(out / "stein_observations.csv").filter(pl.col("time") == 1.0).row(0, named=True)
    assert obs["conc"] == 22.3 and obs["blq"] is True and "below its LLOQ 30" in obs["blq_reason"]
    rule = js["blq_rule"]
    assert rule["blq_below_lloq"] is True and rule["n_below_lloq_censored"] == 1
    assert rule["below_lloq_rows"][0]["value"] == 22.3 and rule["below_lloq_rows"][0]["lloq"] == 30.0
    assert js["options"]["blq_below_lloq"] is True
    assert meta["n_blq"] == 1
    # without --conc-unit the concentration units are "not given"; with --no-blq-below-lloq the row counts
    out2 = tmp_path / "out2"
    meta2 = stein_command(src, out2, subject="subject_id", time="time", conc="conc", lloq="lloq",
                          prior="stein2019", blq_below_lloq=False)
    assert meta2["n_blq"] == 0 and meta2["blq_rule"]["n_below_lloq_censored"] == 0
    u2 = {(f, c): u for f, c, u in pl.read_csv(out2 / "stein_units.csv").iter_rows()}
    assert u2[("stein_subjects.csv", "stein_cmax")] == "not given"
    assert u2[("stein_subjects.csv", "tmax")] == "d"


# ---- B2: the drift test -------------------------------------------------------------------------
_SUMMARY = pl.DataFrame(schema={"parameter": pl.String, "shrinkage_sd_pct": pl.Float64, "rse_pct": pl.Float64,
                                "omega2_rse_pct": pl.Float64})
_OPTS = {"shrinkage_warn_pct": 30.0, "rse_warn_pct": 50.0, "drift_warn_pct": 5.0, "drift_window": 50,
         "drift_alpha": 0.05}


def _trace(prev_batches, last_batches):
    # 100 burn-in iterations: two windows of 50, each 5 batches of 10 equal values
    v = np.repeat(np.concatenate([prev_batches, last_batches]), 10)
    return pl.DataFrame({"iteration": np.arange(1, 101), "omega2_beta": v})


def test_drift_noise_is_not_a_drift():
    # window means 1.00 and 1.08 (8% > 5%), but the batch means spread by +-0.4: batch-mean variance
    # 0.64/4 = 0.16 per window, SE of the difference sqrt(2 * 0.16/5) = 0.253, t = 0.08/0.253 = 0.32: noise
    tr = _trace([0.6, 1.4, 0.6, 1.4, 1.0], [0.68, 1.48, 0.68, 1.48, 1.08])
    assert population_warnings(_SUMMARY, tr, 100, True, None, _OPTS) == []


def test_drift_real_trend_warns():
    # window means 1.00 and 1.20 (20%), batch means within +-0.01: t = 0.2/sqrt(2*0.00005/5) = 44.7
    tr = _trace([1.0, 1.01, 0.99, 1.0, 1.0], [1.2, 1.21, 1.19, 1.2, 1.2])
    w = population_warnings(_SUMMARY, tr, 100, True, None, _OPTS)
    assert len(w) == 1 and w[0].startswith("omega2_beta: its mean moved 20%")
