"""Review 36 (Stein 2019 model): peak window, indefinite information, prior-dominated subjects, model-based
column names, missing doses / infusions, population warnings, unidentified fits, CLI extensions.

Expected values are by hand (the closed-form curve: C(tmax) = cmax for one infusion without comedication;
numpy's eigvalsh for the smallest eigenvalue), never copied from cartlab output."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import polars as pl
import pytest

from cartlab.errors import CartlabWarning, InputError
from cartlab.kinetics.stein import STEIN_2019, SteinModel, SteinPopulationModel, derived_quantities, simulate
from cartlab.kinetics.stein.data import _prepare

# expansion only: 4 rising samples, days 1-8 (no sample after the typical peak on day 9.3)
RISING = pl.DataFrame({"subject_id": ["r"] * 4, "time": [1.0, 3.0, 5.0, 8.0], "conc": [30.0, 150.0, 900.0, 4000.0],
                       "lloq": [50.0] * 4})


def test_derived_columns_are_model_named_not_nca_named():
    # B4: the model-based peak is stein_*, not the NCA car_* of subject_summary.csv; by hand the
    # typical curve peaks at cmax = 24,000 on day tmax = 9.3
    d = derived_quantities(STEIN_2019)
    assert {"stein_cmax", "stein_tmax", "stein_auc_0_28"} <= set(d)
    assert not {"car_cmax", "car_tmax", "car_auc_0_28"} & set(d)
    assert float(d["stein_cmax"]) == pytest.approx(24_000.0, rel=1e-12)
    assert float(d["stein_tmax"]) == pytest.approx(9.3, rel=1e-12)


def test_peak_after_last_sample_is_not_reported_by_default():
    # A1: MAP fit of expansion-only samples: the fitted peak lies after day 8, the last sample
    m = SteinModel(prior=STEIN_2019).fit(RISING)
    row = m.individual_.row(0, named=True)
    assert row["t_last_sample"] == 8.0
    assert row["peak_extrapolated"] is True
    assert row["stein_cmax"] is None and row["stein_tmax"] is None
    assert row["stein_auc_0_28"] is None  # day 28 is after the last sample (day 8)
    assert row["stein_cmax_over_obs"] is None
    assert "after the last sample (day 8)" in row["peak_note"]
    # peak_window="model": reported and flagged; one infusion, no comedication: by hand the peak is
    # (cmax, tlag + tmax) of the fitted parameters
    mm = SteinModel(prior=STEIN_2019, peak_window="model").fit(RISING)
    r2 = mm.individual_.row(0, named=True)
    assert r2["peak_extrapolated"] is True and "peak_window='model'" in r2["peak_note"]
    assert r2["stein_cmax"] == pytest.approx(r2["cmax"], rel=1e-9)
    assert r2["stein_tmax"] == pytest.approx(r2["tmax"], rel=1e-9)
    with pytest.raises(ValueError, match="peak_window"):
        SteinModel(peak_window="late")


def test_ml_fit_without_sample_after_peak_is_not_identified():
    # A1: the mirror of the foldx rule (maximum likelihood): 6 rising samples, nothing after the peak
    df = pl.DataFrame({"subject_id": ["s"] * 6, "time": [1.0, 2, 3, 4, 5, 6],
                       "conc": [10.0 * math.exp(0.9 * t) for t in (1, 2, 3, 4, 5, 6)]})
    m = SteinModel(fixed={"alpha": 0.16, "fb": 0.0079, "beta": 0.0032, "sigma": 0.3}).fit(df)
    row = m.individual_.row(0, named=True)
    if row["tmax"] < 6.0 - 1e-6:  # an optimum with the peak inside the samples is no extrapolation
        pytest.skip("the optimiser placed the peak inside the sampled window")
    assert "no quantifiable sample after the fitted peak" in row["message"]
    assert row["converged"] is False
    assert row["stein_cmax"] is None  # derived_if_unidentified="null" (default)


def test_prior_dominated_flag_for_one_sample():
    # B1: MAP fit of one sample (day 28) is the prior's curve: flagged, values kept
    df = pl.DataFrame({"subject_id": ["one"], "time": [28.0], "conc": [1500.0], "lloq": [50.0]})
    row = SteinModel(prior=STEIN_2019).fit(df).individual_.row(0, named=True)
    assert row["prior_dominated"] is True
    assert row["stein_auc_0_28"] is not None  # reported as prior-dominated, not nulled
    assert "prior-dominated" in row["message"] and "prior-dominated" in row["prior_note"]
    for p in ("foldx", "tmax", "cmax"):
        assert 0.5 < row[f"shrinkage_{p}"] <= 1.0
    # maximum likelihood: no prior, so nothing is prior-dominated
    t = np.array([1.0, 3, 7, 9, 11, 14, 21, 28, 42, 56])
    rich = simulate(1, seed=3, params=STEIN_2019, times=tuple(t))
    ml = SteinModel().fit(rich).individual_
    assert ml["prior_dominated"].to_list() == [False]


def test_individual_shrinkage_formula_by_hand():
    # posterior variance 0.75 of omega^2 1 -> SD-based 1 - sqrt(1 - 0.75) = 0.5; variance 0 -> 0; omega 0 -> NaN
    from cartlab.kinetics.stein.flags import individual_shrinkage

    s = individual_shrinkage(np.array([[0.75, 0.0, 1.0]]), np.array([1.0, 2.0, 0.0]))
    assert s[0, 0] == pytest.approx(0.5) and s[0, 1] == 0.0 and math.isnan(s[0, 2])


def _superpose(missing_dose: str):
    df = pl.DataFrame({"subject_id": ["s"] * 3, "time": [3.0, 7, 14], "conc": [100.0, 1000, 500]})
    doses = pl.DataFrame({"subject_id": ["s", "s"], "time": [0.0, 2.0], "dose": [1e6, None]})
    return _prepare(df, doses=doses, dose_handling="superpose", missing_dose=missing_dose)


def test_missing_split_dose():
    # B2: an unknown dose is not 1 cell
    with pytest.raises(InputError, match=r"doses row 2, column dose"):
        _superpose("error")
    d = _superpose("equal")
    np.testing.assert_allclose(d.dosing.dose_fractions, [[0.5, 0.5]])
    assert "missing_dose='equal'" in d.notes["s"]
    np.testing.assert_allclose(_superpose("first").dosing.dose_fractions, [[1.0, 0.0]])


def test_subject_without_infusion_row():
    # B3: x's infusion on day 3 (sample day 10 -> 7); y has no infusion row: its origin is unknown
    df = pl.DataFrame({"subject_id": ["x", "y"], "time": [10.0, 10.0], "conc": [100.0, 100.0]})
    doses = pl.DataFrame({"subject_id": ["x"], "time": [3.0]})
    d = _prepare(df, doses=doses)
    assert d.ids == ["x"] and d.t[0, 0] == 7.0
    assert d.dropped.filter(pl.col("subject_id") == "y")["reason"].to_list() == [
        "no CAR-T infusion row: time origin unknown (no_infusion='drop')"]
    keep = _prepare(df, doses=doses, no_infusion="as_is")
    assert keep.ids == ["x", "y"] and keep.t[1, 0] == 10.0 and "as_is" in keep.notes["y"]


def test_zero_with_lloq_reason():
    # C2
    df = pl.DataFrame({"subject_id": ["z"] * 2, "time": [7.0, 14], "conc": [0.0, 50], "lloq": [10.0, 10.0]})
    d = _prepare(df, blq_below_lloq=False)
    assert d.dropped["reason"].to_list() == ["value <= 0 (not treated as BLQ: blq_below_lloq=False)"]


def test_unidentified_ml_fit_nulls_dependent_derived_values():
    # B7: samples only after the peak: foldx not identified -> rho, doubling time, Cmax, AUC null
    t = [14.0, 17, 21, 28, 35, 42, 56, 90, 120, 180]
    c = [180000.0 * (0.99 * math.exp(-0.16 * (x - 14)) + 0.01 * math.exp(-0.003 * (x - 14))) for x in t]
    df = pl.DataFrame({"subject_id": ["p"] * len(t), "time": t, "conc": c})
    row = SteinModel().fit(df).individual_.row(0, named=True)
    assert row["message"].startswith("not identified")
    assert row["rho"] is None and row["stein_auc_0_28"] is None and row["stein_cmax"] is None
    assert row["foldx"] is not None  # the raw parameter is kept for inspection
    kept = SteinModel(derived_if_unidentified="keep").fit(df).individual_.row(0, named=True)
    assert kept["rho"] is not None and kept["stein_auc_0_28"] is not None


def test_population_warnings_by_hand():
    # B5: review's cohort numbers: beta shrinkage 92%, omega2 RSE 116%, omega2_beta 2.72 -> 0.92 in the last 50
    from cartlab.kinetics.stein.flags import WARN_DEFAULTS, population_warnings

    summ = pl.DataFrame({"parameter": ["beta", "cmax"], "kind": ["theta", "theta"], "rse_pct": [20.0, 10.0],
                         "omega2_rse_pct": [116.0, 20.0], "shrinkage_sd_pct": [92.3, 5.0]})
    trace = pl.DataFrame({"iteration": list(range(1, 101)), "omega2_beta": [2.72] * 50 + [0.92] * 50,
                          "cmax": [24000.0] * 100})
    w = population_warnings(summ, trace, 100, True, 1.0, WARN_DEFAULTS)
    assert any("beta: eta shrinkage 92.3%" in x for x in w)
    assert any("beta: RSE of the omega2 116%" in x for x in w)
    # window means 2.72 (iterations 1-50) and 0.92 (51-100): |0.92 - 2.72| / 2.72 = 66.2%
    assert any(x.startswith("omega2_beta: its mean moved 66.2%") for x in w)
    assert not any(x.startswith("cmax") for x in w)


def test_burn_in_noise_alone_is_not_drift():
    """Session 36 (review36_docs B3): burn-in iterates fluctuate by design. Iterates 1.0, 1.1, 1.2, 1.0, ...
    have window means 54.9/50 = 1.098 (iterations 1-50) and 55.0/50 = 1.100 (51-100): 0.18%, no drift
    warning. The first version compared two single iterates, iteration 50 (1.1) and 100 (1.0): 9.1%."""
    from cartlab.kinetics.stein.flags import WARN_DEFAULTS, population_warnings

    summ = pl.DataFrame({"parameter": ["cmax"], "kind": ["theta"], "rse_pct": [10.0], "omega2_rse_pct": [20.0],
                         "shrinkage_sd_pct": [5.0]})
    trace = pl.DataFrame({"iteration": list(range(1, 101)), "omega2_cmax": ([1.0, 1.1, 1.2] * 34)[:100]})
    assert population_warnings(summ, trace, 100, True, 1.0, WARN_DEFAULTS) == []


@pytest.fixture(scope="module")
def sparse4():
    return simulate(4, seed=11, params=STEIN_2019, times=(1, 7, 14, 28))


def test_indefinite_information_gives_no_standard_errors(sparse4):
    # A2 (review probe p8, seed 0: smallest eigenvalue -34.9): no pseudo-inverse SEs
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        m = SteinPopulationModel(n_starts=1, seed=0, n_burn=60, n_smooth=40, n_post=30, compute_ll=False).fit(sparse4)
    lam = float(np.linalg.eigvalsh(m.fim_).min())  # numpy, independently of the fit's own check
    assert lam < 0 and m.fim_ok_ is False
    assert m.fim_min_eigenvalue_ == pytest.approx(lam)
    assert any(issubclass(r.category, CartlabWarning) and "not positive definite" in str(r.message) for r in rec)
    s = m.summary
    assert s["se"].null_count() == s.height and s["rse_pct"].null_count() == s.height
    assert s["omega2_se"].null_count() == s.height
    assert "shrinkage_sd_pct" in s.columns
    assert all("not positive definite" in n for n in s["note"].to_list())
    assert m.diagnostics_["fim_ok"] is False and m.warnings_[0].startswith("information matrix not positive definite")
    ind = m.individual_
    assert {"shrinkage_cmax", "prior_dominated", "peak_extrapolated", "stein_cmax"} <= set(ind.columns)


def test_cli_records_diagnostics_and_extensions(tmp_path, sparse4):
    # A2/B5/B6 in stein_fit.json
    from cartlab.cli.kinetics_io import stein_command

    src = tmp_path / "c.csv"
    sparse4.select("subject_id", "time", pl.col("conc").cast(pl.String), "lloq").write_csv(src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CartlabWarning)
        meta = stein_command(src, tmp_path / "o", population=True, seed=0, n_burn=60, n_smooth=40, n_post=30,
                             vpc_reps=20, ftoci=1.2, tlag=0.5, subject="subject_id", time="time", conc="conc",
                             lloq="lloq")
    js = json.loads((tmp_path / "o" / "stein_fit.json").read_text())
    assert js["options"]["ftoci"] == 1.2 and js["options"]["tlag"] == 0.5 and js["options"]["peak_window"] == "observed"
    diag = js["diagnostics"]
    assert {"fim_ok", "fim_min_eigenvalue", "score_chi2", "thresholds", "warnings"} <= set(diag)
    assert isinstance(js["warnings"], list) and js["warnings"] == meta["warnings"]
    if diag["fim_ok"] is False:
        pop = pl.read_csv(tmp_path / "o" / "stein_population.csv")
        assert pop["se"].null_count() == pop.height
    subj = pl.read_csv(tmp_path / "o" / "stein_subjects.csv")
    assert "stein_cmax" in subj.columns and "car_cmax" not in subj.columns
    with pytest.raises(ValueError, match="--ftoci"):
        stein_command(src, tmp_path / "p", ftoci=-1.0, subject="subject_id", time="time", conc="conc")
