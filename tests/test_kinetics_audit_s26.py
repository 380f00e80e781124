"""Fixes of the cellular-kinetics audit (notes/audit_nca): Stein MAP sigma, local optima, minimum
data, fb CIs, exposure-response counting, NCA units and warnings.

Every expected value is derived independently of cartlab: by hand (the arithmetic is in the
comments), or by the auditor's own optimiser -- a closed-form Stein curve and log-scale likelihood
written from the paper's equations (:func:`_curve`, :func:`_nll` below, as in the audit's
``mysim.py``/``mynll.py``) minimised with SciPy's Nelder-Mead.
"""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from scipy.optimize import minimize

from cartlab.cli.kinetics_io import nca_command, parse_assignments, stein_command
from cartlab.errors import CartlabWarning
from cartlab.kinetics.exposure import derive_exposure_response
from cartlab.kinetics.nca import NcaOptions, derive_nca, nca_profile, nca_units
from cartlab.kinetics.stein import PARAMS, STEIN_2019, SteinModel

K = ("foldx", "tmax", "cmax", "alpha", "fb", "beta")

# the audit's few3.csv: three samples of one subject
FEW3 = [(1.0, 15.0), (9.0, 20_000.0), (28.0, 1_300.0)]
# the audit's sim_s03_lloq1.csv, subject S2 (simulated with sigma 0.3, no BLQ)
S2 = [(1, 329.968), (2, 405.349), (3, 493.381), (4, 992.682), (5, 3668.39), (6, 2982.1), (7, 7143.61),
      (8, 12268.3), (9, 21113.3), (10, 38427.5), (11, 49400.5), (12, 88345.9), (14, 59470.3), (17, 27344.1),
      (21, 15800), (28, 5686.21), (35, 1475.37), (42, 1844.06), (56, 973.539), (90, 755.407), (120, 642.282),
      (180, 391.672), (270, 134.901), (365, 26.9604)]
# the auditor's Nelder-Mead optimum for S2 (notes/audit_nca/stein/myfit.py, started from the truth)
S2_OPTIMUM = {"foldx": 639.969898, "tmax": 11.803634, "cmax": 91546.15306, "alpha": 0.211811, "fb": 0.021625,
              "beta": 0.011327, "sigma": 0.227418}
S2_NLL = -1.4886


def _frame(rows, sid="F", lloq=None):
    return pl.DataFrame({"subject_id": [sid] * len(rows), "time": [float(t) for t, _ in rows],
                         "conc": [None if c is None else float(c) for _, c in rows],
                         "lloq": [lloq] * len(rows)}, schema_overrides={"conc": pl.Float64, "lloq": pl.Float64})


def _curve(t, p):
    """Stein 2019 (supplement, analytical solution): exponential rise to cmax at tmax, biphasic fall."""
    if t < p["tmax"]:
        return p["cmax"] / p["foldx"] * math.exp(math.log(p["foldx"]) / p["tmax"] * t)
    d = t - p["tmax"]
    return p["cmax"] * ((1 - p["fb"]) * math.exp(-p["alpha"] * d) + p["fb"] * math.exp(-p["beta"] * d))


def _nll(rows, p, sigma):
    """-log L of log C_obs = log C + N(0, sigma^2), quantifiable samples only."""
    s = 0.0
    for t, y in rows:
        r = math.log(y) - math.log(_curve(t, p))
        s += 0.5 * math.log(2 * math.pi * sigma**2) + r * r / (2 * sigma**2)
    return s


# ---------------------------------------------------------------------------------------------
# 1. MAP fits hold sigma at the population's value


def _independent_map(rows, sigma):
    th, om = STEIN_2019.theta, STEIN_2019.omega2

    def f(x):
        p = dict(zip(K, np.exp(x)))
        if p["fb"] >= 1:
            return 1e9
        return _nll(rows, p, sigma) + 0.5 * sum((x[i] - math.log(th[k])) ** 2 / om[k] for i, k in enumerate(K))

    x = np.log([th[k] for k in K])
    for _ in range(3):
        x = minimize(f, x, method="Nelder-Mead", options={"maxiter": 40000, "maxfev": 40000, "xatol": 1e-10,
                                                           "fatol": 1e-12}).x
    return dict(zip(K, np.exp(x)))


def test_map_fit_holds_sigma_at_the_prior_and_matches_an_independent_map():
    fit = SteinModel(prior=STEIN_2019).fit(_frame(FEW3))
    row = fit.individual_.row(0, named=True)
    assert row["sigma"] == STEIN_2019.sigma == 0.56
    assert row["converged"] and row["fitted"], row["message"]
    ref = _independent_map(FEW3, 0.56)
    for p in K:
        assert row[p] == pytest.approx(ref[p], rel=1e-3), p
    # the audit's expectation: cmax ~ 23,922, tmax ~ 9.2 (no comedication: the peak is (tmax, cmax))
    assert row["stein_cmax"] == pytest.approx(23_922, abs=2) and row["stein_tmax"] == pytest.approx(9.2, abs=1e-3)
    s = fit.summary.filter(parameter="sigma").row(0, named=True)
    assert s["fixed"] and s["se"] is None
    assert "prior's residual SD 0.56" in fit.sigma_rule_


def test_sigma_options_estimate_fix_and_conflicts():
    est = SteinModel(prior=STEIN_2019, sigma="estimate").fit(_frame(FEW3)).individual_.row(0, named=True)
    assert est["sigma"] < 0.01 and not est["converged"]  # what the audit saw: sigma collapses to its bound
    assert "sigma lower bound" in est["message"]
    held = SteinModel(prior=STEIN_2019, fixed={"sigma": 0.3}).fit(_frame(FEW3)).individual_.row(0, named=True)
    assert held["sigma"] == 0.3 and held["converged"]
    ref = _independent_map(FEW3, 0.3)
    assert held["cmax"] == pytest.approx(ref["cmax"], rel=1e-3)
    with pytest.raises(ValueError, match="contradicts"):
        SteinModel(sigma=0.4, fixed={"sigma": 0.3})
    with pytest.raises(ValueError, match="sigma must be"):
        SteinModel(sigma="free")
    assert parse_assignments(["sigma=0.56"], "--fix", float, extra=("sigma",)) == [("sigma", 0.56)]
    with pytest.raises(ValueError, match="unknown parameter 'sigma'"):
        parse_assignments(["sigma=0.56"], "--covariate")


def test_cli_fix_sigma_and_estimate_sigma(tmp_path):
    path = tmp_path / "few3.csv"
    pl.DataFrame({"ID": ["F"] * 3, "DAY": [t for t, _ in FEW3], "DV": [c for _, c in FEW3]}).write_csv(path)
    meta = stein_command(path, tmp_path / "a", subject="ID", time="DAY", conc="DV", prior="stein2019",
                         fixed=["sigma=0.56"])
    assert meta["options"]["sigma"] == "fixed at 0.56" and meta["n_converged"] == 1
    got = pl.read_csv(tmp_path / "a" / "stein_subjects.csv").row(0, named=True)
    assert got["cmax"] == pytest.approx(23_922, abs=2)
    meta = stein_command(path, tmp_path / "b", subject="ID", time="DAY", conc="DV", prior="stein2019")
    assert meta["options"]["sigma"].startswith("held at the prior's residual SD 0.56")
    with pytest.raises(ValueError, match="--fix sigma: a population fit"):
        stein_command(path, tmp_path / "c", subject="ID", time="DAY", conc="DV", population=True,
                      fixed=["sigma=0.5"])
    with pytest.raises(ValueError, match="--estimate-sigma is for per-subject MAP fits"):
        stein_command(path, tmp_path / "c", subject="ID", time="DAY", conc="DV", estimate_sigma=True)


# ---------------------------------------------------------------------------------------------
# 2. data-driven starts reach the better optimum; an optimiser failure is named


@pytest.fixture(scope="module")
def s2_fit():
    """The maximum-likelihood fit of the audit's subject S2, shared (read-only) by the optimum and the fb-CI
    tests, which fitted it each (session 42)."""
    return SteinModel().fit(_frame([(float(t), float(c)) for t, c in S2], "S2"))


def test_well_sampled_subject_reaches_the_independent_optimum(s2_fit):
    rows = [(float(t), float(c)) for t, c in S2]
    fit = s2_fit
    row = fit.individual_.row(0, named=True)
    assert row["converged"], row["message"]
    assert row["nll"] == pytest.approx(S2_NLL, abs=1e-3)  # was 44.84 (foldx 1.01, tmax 0.05)
    for p, v in S2_OPTIMUM.items():
        assert row[p] == pytest.approx(v, rel=1e-3), p
    # cartlab's estimates evaluated with the independent likelihood give the same optimum
    assert _nll(rows, {p: row[p] for p in K}, row["sigma"]) == pytest.approx(S2_NLL, abs=1e-3)
    again = SteinModel().fit(_frame(rows, "S2")).individual_.row(0, named=True)
    assert all(again[p] == row[p] for p in (*K, "sigma", "nll"))  # deterministic


def test_an_optimiser_failure_says_so(monkeypatch):
    import cartlab.kinetics.stein.individual as ind

    real = ind.optimize.minimize

    def failing(*a, **kw):
        r = real(*a, **{**kw, "options": {**kw.get("options", {}), "maxiter": 2}})
        r.success = False
        r.message = "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT"
        return r

    monkeypatch.setattr(ind.optimize, "minimize", failing)
    row = SteinModel().fit(_frame([(float(t), float(c)) for t, c in S2], "S2")).individual_.row(0, named=True)
    assert not row["converged"]
    assert row["message"].startswith("the optimiser did not converge (L-BFGS-B: STOP: TOTAL NO. OF ITERATIONS")


# ---------------------------------------------------------------------------------------------
# 3. too little data: no estimates, a reason, and the CLI refuses


def test_too_few_samples_and_all_blq_give_no_estimates():
    few = SteinModel().fit(_frame(FEW3)).individual_.row(0, named=True)
    # 3 quantifiable samples, 7 free parameters (6 structural + sigma): 3 < 7
    assert not few["fitted"] and not few["converged"]
    assert "3 quantifiable sample(s) for 7 free parameters" in few["message"] and "--prior stein2019" in few["message"]
    assert all(few[c] is None for c in (*PARAMS, "sigma", "stein_cmax", "stein_auc_0_28", "nll", "aic"))
    blq = _frame([(1.0, None), (9.0, None), (28.0, None)], lloq=1.0).with_columns(
        pl.lit("<").alias("censor"), pl.lit(1.0).alias("censor_limit"))
    for model in (SteinModel(), SteinModel(prior=STEIN_2019)):
        fit = model.fit(blq)
        row = fit.individual_.row(0, named=True)
        assert not row["fitted"] and row["stein_cmax"] is None and row["cmax"] is None  # not 0.001
        assert "no quantifiable sample (3 BLQ)" in row["message"]
        assert fit.summary["estimate"].null_count() == 6 + (model.prior is None)  # sigma held under the prior
    # three parameters fixed and sigma held: 3 free parameters, 3 samples -> not fitted (kinfit audit s28:
    # a fit needs more quantifiable samples than free parameters); a fourth fixed: 2 free, 3 samples -> fitted
    three = SteinModel(sigma=0.3, fixed={"alpha": 0.16, "fb": 0.0079, "beta": 0.0032}).fit(_frame(FEW3))
    assert not three.individual_["fitted"][0]
    assert "3 quantifiable sample(s) for 3 free parameters" in three.individual_["message"][0]
    ok = SteinModel(sigma=0.3, fixed={"alpha": 0.16, "fb": 0.0079, "beta": 0.0032, "tmax": 9.0}).fit(_frame(FEW3))
    assert ok.individual_["fitted"][0] and ok.individual_["cmax"][0] is not None


def test_cli_refuses_when_no_subject_can_be_fitted(tmp_path):
    path = tmp_path / "few3.csv"
    pl.DataFrame({"ID": ["F"] * 3, "DAY": [t for t, _ in FEW3], "DV": [c for _, c in FEW3]}).write_csv(path)
    out = tmp_path / "out"
    # in-process (typer's CliRunner, session 42): the same exit code and stderr without an interpreter
    # start-up; an exception other than the command's exit (a traceback in the real process) fails
    from typer.testing import CliRunner

    from cartlab.cli import app

    r = CliRunner().invoke(app, ["stein", str(path), "--subject-col", "ID", "--time", "DAY", "--conc", "DV", "--out",
                                 str(out)], env={"COLUMNS": "250"})
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code == 2 and "no subject could be fitted" in r.stderr and "Nothing was written" in r.stderr
    assert not out.exists()
    # with a subject that can be fitted, the other is written without estimates and named
    rows = [("S2", t, c) for t, c in S2] + [("F", t, c) for t, c in FEW3]
    pl.DataFrame({"ID": [a for a, _, _ in rows], "DAY": [float(b) for _, b, _ in rows],
                  "DV": [float(c) for _, _, c in rows]}).write_csv(path)
    meta = stein_command(path, out, subject="ID", time="DAY", conc="DV")
    assert list(meta["not_fitted"]) == ["F"] and meta["not_converged"] == []
    subj = pl.read_csv(out / "stein_subjects.csv")
    f = subj.filter(pl.col("subject_id") == "F").row(0, named=True)
    assert f["stein_cmax"] is None and f["fitted"] is False and f["message"].startswith("not fitted")


# ---------------------------------------------------------------------------------------------
# 6. fb's CI on the logit scale; converged with tmax on a sample is documented


def test_fb_ci_on_the_logit_scale(s2_fit):
    from cartlab.kinetics.stein.individual import _ci

    # logit(0.9) = ln 9 = 2.197225; SE(logit) = SE(log)/(1 - fb) = 0.2/0.1 = 2;
    # 2.197225 -/+ 1.96*2 = -1.722775, 6.117225; e^1.722775 = e^1.7 * e^0.022775 = 5.473947 * 1.023036 = 5.600046
    # -> 1/6.600046 = 0.151514; e^-6.117225 = 0.00247875 * 0.889385 = 0.00220456 -> 1/1.00220456 = 0.997800
    lo, hi = _ci("fb", 0.9, 0.2)
    assert lo == pytest.approx(0.151514, abs=1e-6) and hi == pytest.approx(0.997800, abs=1e-6)
    # the log scale would give 0.9 * e^0.392 = 1.33 > 1
    assert 0.9 * math.exp(1.96 * 0.2) > 1
    lo, hi = _ci("cmax", 1000.0, 0.1)  # log scale: 1000 e^-0.196, 1000 e^0.196
    assert (lo, hi) == (pytest.approx(822.0, abs=0.1), pytest.approx(1216.5, abs=0.1))
    s = s2_fit.summary.filter(parameter="fb")
    r = s.row(0, named=True)
    assert 0 < r["ci_lower"] < r["estimate"] < r["ci_upper"] < 1


def test_docs_define_converged_as_the_code_does():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "kinetics" / "README.md").read_text(encoding="utf-8")
    assert "the optimiser reports success" in doc and "`tmax` has no SE" in doc
    assert "logit scale" in doc and "0.56 for Stein 2019" in doc


# ---------------------------------------------------------------------------------------------
# 4-5. exposure-response: non-expanders counted, every excluded subject named


def test_exposure_response_keeps_zeros_and_names_the_excluded():
    summary = pl.DataFrame({
        "subject_id": ["A", "B", "C", "D", "E", "F"],
        "car_cmax": [0.0, 100.0, 10.0, 1000.0, 50.0, None],
        "car_auc_0_28": [0.0, 900.0, 90.0, 9000.0, 450.0, None],
        "best_response": ["CR", "CR", "NR", "NR", "", "CR"],
        "crs_grade_astct": [1, 3, 1, 3, 0, 2],
    })
    with pytest.warns(CartlabWarning, match="E") as w:
        er = derive_exposure_response(summary)
    msg = str(w[0].message)
    assert "best_response NE or empty" in msg and ": E" in msg and "no CAR-T kinetics" in msg and ": F" in msg
    r = er.filter(exposure="car_cmax", outcome="responder").row(0, named=True)
    # usable: A (0, CR), B (100, CR), C (10, NR), D (1000, NR); E has no response, F no exposure
    assert (r["n"], r["n_event"], r["n_zero"], r["n_logit"], r["n_excluded"]) == (4, 2, 1, 3, 2)
    # grouped by reason: "reason: ID, ID; reason: ID"
    assert r["excluded"].startswith("best_response NE or empty") and ": E; no CAR-T kinetics" in r["excluded"]
    assert r["excluded"].endswith(": F")
    # medians: responders {0, 100} -> 50; non-responders {10, 1000} -> 505
    assert (r["median_event"], r["median_no_event"]) == (50.0, 505.0)
    # U of responders vs non-responders: pairs (0,10) 0, (0,1000) 0, (100,10) 1, (100,1000) 0 -> U = 1;
    # exact null distribution for 2 vs 2 (6 orderings): U = 0,1,2,2,3,4 -> P(U <= 1) = 2/6, two-sided 4/6
    assert r["mann_whitney_u"] == 1.0 and r["mann_whitney_p"] == pytest.approx(4 / 6)
    assert "1 non-expander(s) with car_cmax = 0 (A) left out of the log10 fit only" in r["logit_note"]
    c = er.filter(exposure="car_cmax", outcome="crs_grade_ge3").row(0, named=True)
    # CRS known for all six; F has no exposure: n = 5 (A, B, C, D, E), events B, D (grade 3)
    assert (c["n"], c["n_event"], c["n_zero"], c["n_excluded"]) == (5, 2, 1, 1)
    assert c["median_no_event"] == 10.0  # A 0, C 10, E 50 -> 10
    assert c["excluded"] == ("no CAR-T kinetics: exposure empty (no CAR-T profile: not infused - no CAR-T dose "
                             "recorded - or no CARCOPY/CARCELL sample after the CAR-T infusion): F")  # review 40 C4


# ---------------------------------------------------------------------------------------------
# 7-8. NCA: units, span.ratio tolerance, the sparse-sampling warning


def _codes(row):
    return {w.split(":")[0] for w in row["warnings"]}


def test_span_ratio_of_exactly_two_does_not_warn():
    # lambda.z from (2, 5), (4, 2.5), (6, 1.25): halves every 2 -> half-life 2; span (6 - 2)/2 = 2
    t, c = [0, 1, 2, 4, 6], [0, 10, 5, 2.5, 1.25]
    r = nca_profile(t, c).row(0, named=True)
    assert r["span.ratio"] == pytest.approx(2.0, rel=1e-12) and "span_ratio_below_min" not in _codes(r)
    r = nca_profile(t, c, options=NcaOptions(min_span_ratio=2.0001)).row(0, named=True)
    assert "span_ratio_below_min" in _codes(r)


def test_sparse_early_sampling_warning_is_generic_and_cites_the_guide():
    from pathlib import Path

    r = nca_profile([0, 1, 2, 4, 6, 8], [0, 64, 64, 32, 16, 8]).row(0, named=True)  # 1 sample before tmax 1
    (w,) = [x for x in r["warnings"] if x.startswith("sparse_early_sampling")]
    assert "CAR-T" not in w and "kinetics.md" not in w and "docs/kinetics/README.md" in w
    assert "log-up/log-down" in w
    doc = (Path(__file__).resolve().parents[1] / "docs" / "kinetics" / "README.md").read_text(encoding="utf-8")
    assert "**Sparse early sampling:**" in doc


def test_nca_units(tmp_path):
    u = nca_units("ng/mL", "h")
    # PKNCA pknca_units_table(concu="ng/mL", timeu="hr"): cmax "ng/mL", auclast "hr*ng/mL", lambda.z "1/hr"
    assert (u["cmax"], u["tmax"], u["auclast"], u["aucinf.obs"], u["lambda.z"], u["half.life"]) == \
        ("ng/mL", "h", "h*ng/mL", "h*ng/mL", "1/h", "h")
    assert (u["span.ratio"], u["r.squared"], u["lambda.z.n.points"]) == ("fraction", "unitless", "count")
    only_c = nca_units("ng/mL", None)
    assert only_c["cmax"] == "ng/mL" and only_c["auclast"] is None and only_c["lambda.z"] is None
    src = tmp_path / "a.csv"
    pl.DataFrame({"ID": ["A"] * 6, "T": [0, 1, 2, 4, 6, 8], "C": [0, 64, 64, 32, 16, 8]}).write_csv(src)
    plain = nca_command(src, tmp_path / "plain.csv", subject="ID", time="T", conc="C")
    assert plain["units"].startswith("not given") and not (tmp_path / "plain_units.csv").exists()
    withu = nca_command(src, tmp_path / "nca.csv", subject="ID", time="T", conc="C", conc_unit="ng/mL",
                        time_unit="h")
    table = dict(pl.read_csv(tmp_path / "nca_units.csv").iter_rows())
    assert withu["units"].endswith("nca_units.csv")
    assert table["cmax"] == "ng/mL" and table["auclast"] == "h*ng/mL" and table["lambda.z"] == "1/h"
    assert table["half.life"] == "h" and table["tmax"] == "h"
    # the results themselves are the same file
    assert (tmp_path / "nca.csv").read_bytes() == (tmp_path / "plain.csv").read_bytes()
    with pytest.raises(ValueError, match="--time-unit: the unit is empty"):
        nca_command(src, tmp_path / "x.csv", subject="ID", time="T", conc="C", time_unit=" ")
    assert json.dumps(withu)  # the summary stays JSON-able
    # derive_nca itself is unchanged by units
    assert derive_nca(pl.DataFrame({"s": ["A"] * 3, "t": [0.0, 1.0, 2.0], "c": [0.0, 2.0, 1.0]}), subject="s",
                      time="t", conc="c").height == 1
