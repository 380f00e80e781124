"""Kinetics-fit audit s28 (/work/notes/audit_kinfit/REPORT.md): exposure-response and NE, identification of
per-subject Stein fits, TwinModel fit state and its pre-fit errors.

Expected values: the auditor's scipy/statsmodels computations (case3_er/CASE.md, edge_expected.py), hand
counts, and a profile likelihood written here from the Stein equations with numpy/scipy (no cartlab)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import optimize, stats

from cartlab.errors import CartlabWarning, InputError
from cartlab.kinetics.exposure import derive_exposure_response
from cartlab.kinetics.stein import STEIN_2019, SteinModel

FIXTURES = Path(__file__).parent / "fixtures" / "kinfit_s28"


# ---------------------------------------------------------------------------------------------
# 1. exposure-response: a best response NE is an unknown outcome (excluded, named), not a non-response

# the auditor's hand frame (case3_er/edge_frame.py)
EDGE = pl.DataFrame({
    "subject_id": ["Z0", "N1", "A", "B", "C", "D", "E", "F", "G", "H", "I"],
    "car_cmax": [0.0, None, 100., 1000., 5000., 20000., 800., 300., 60000., 7000., 2500.],
    "car_auc_0_28": [0.0, None, 900., None, 40000., 2e5, 7000., 2500., 6e5, 5e4, 2e4],
    "best_response": ["NR", "CR", "NR", "CR", "CR", "CR", "NE", "", "PR", "PD", None],
    "crs_grade_astct": [0, 1, 2, 3, 2, 1, None, 0, 2, 0, 1],
    "crs_grade_astct_max": [0, 1, 3, 4, 2, None, None, 2, 2, 0, 1],
})
NE_REASON = "best_response NE or empty"


def test_ne_best_response_is_excluded_and_named_in_the_hand_frame():
    with pytest.warns(CartlabWarning, match=NE_REASON) as w:
        er = derive_exposure_response(EDGE)
    r = er.filter(exposure="car_cmax", outcome="responder").row(0, named=True)
    # edge_expected.py (scipy mannwhitneyu, statsmodels Logit) on Z0 A B C D G H, E excluded:
    # n 7, 4 responders, median of the non-responders (0, 100, 7000) = 100, U 10, exact p 0.22857, OR 4.387
    assert (r["n"], r["n_event"]) == (7, 4)
    assert r["median_no_event"] == 100.0 and r["median_event"] == 12500.0
    assert r["mann_whitney_u"] == 10.0 and r["mann_whitney_p"] == pytest.approx(0.22857142857142856, rel=1e-9)
    assert r["or_per_10fold"] == pytest.approx(4.387063444030051, rel=1e-6)
    # E (NE), F (empty) and I (null) are named under one reason; N1 (no exposure) under its own
    assert f"{NE_REASON} (not evaluable: no post-infusion response assessment" in r["excluded"]
    assert "): E, F, I" in r["excluded"] and r["n_excluded"] == 4
    # the left-out warning (session 36: a sparse-data warning may come first, review36_newuser B6)
    assert "E, F, I" in next(str(x.message) for x in w if NE_REASON in str(x.message))
    # the CRS rows are not touched by the best response: E is out for its missing grade only
    c = er.filter(exposure="car_cmax", outcome="crs_grade_ge3").row(0, named=True)
    assert c["n"] == 8 and "crs_grade_astct empty (no CRS grade): E" in c["excluded"]
    assert NE_REASON not in c["excluded"]


def test_ne_is_excluded_case_insensitively_and_with_blanks():
    f = EDGE.with_columns(pl.when(pl.col("subject_id") == "E").then(pl.lit(" ne "))
                          .otherwise(pl.col("best_response")).alias("best_response"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CartlabWarning)
        r = derive_exposure_response(f).filter(exposure="car_cmax", outcome="responder").row(0, named=True)
    assert r["n"] == 7 and "E, F, I" in r["excluded"]  # as above: the same 7 subjects


def test_ne_subject_of_the_synthetic_cohort_is_excluded():
    # case3_er/cohort_ne: `cartlab synthetic --n 20 --seed 4` with SYN-0017's post-infusion marrow removed;
    # the columns of its subject_summary.csv. SYN-0017 is NE.
    s = pl.read_csv(FIXTURES / "cohort_ne_summary.csv", schema_overrides={"best_response": pl.String})
    assert s.filter(pl.col("subject_id") == "SYN-0017")["best_response"].to_list() == ["NE"]
    with pytest.warns(CartlabWarning, match="SYN-0017"):
        er = derive_exposure_response(s)
    r = er.filter(exposure="car_cmax", outcome="responder").row(0, named=True)
    # CASE.md 3b: 13 responders against SYN-0008 (396,000), two responders above it: U 2, exact p 2 x 3/14
    assert (r["n"], r["n_event"]) == (14, 13)
    assert r["median_no_event"] == 396000.0
    assert r["mann_whitney_u"] == 2.0 and r["mann_whitney_p"] == pytest.approx(2 * 3 / 14, rel=1e-9)
    assert NE_REASON in r["excluded"] and "SYN-0017" in r["excluded"]


# ---------------------------------------------------------------------------------------------
# 2. Stein per-subject fits: more samples than free parameters; fits the data do not determine are flagged

# case2_sparse/sparse.csv, subject C_declineonly (LLOQ 50): 7 quantifiable samples, days 14-90, all falling
C_DECLINE = [(14, 20000), (17, 12000), (21, 6000), (28, 2000), (42, 500), (56, 300), (90, 150)]


def _frame(rows, sid="C_declineonly"):
    return pl.DataFrame({"subject_id": [sid] * len(rows), "time": [float(t) for t, _ in rows],
                         "conc": [float(c) for _, c in rows], "lloq": [50.0] * len(rows)})


def test_as_many_quantifiable_samples_as_free_parameters_is_not_fitted():
    # 7 samples, 7 free parameters (6 structural + sigma): 0 residual degrees of freedom (hand count)
    row = SteinModel().fit(_frame(C_DECLINE)).individual_.row(0, named=True)
    assert not row["fitted"] and not row["converged"] and row["stein_auc_0_28"] is None
    assert "7 quantifiable sample(s) for 7 free parameters" in row["message"]
    assert "more quantifiable samples than free parameters" in row["message"]
    # sigma held: 6 free parameters, 6 samples -> not fitted either
    six = SteinModel(sigma=0.3).fit(_frame(C_DECLINE[:6])).individual_.row(0, named=True)
    assert not six["fitted"] and "6 quantifiable sample(s) for 6 free parameters" in six["message"]


def _log_stein(t, foldx, tmax, cmax, alpha, fb, beta):
    """log C(t) of Stein 2019 (no lag, no comedication), written from the equations."""
    rise = np.log(cmax / foldx) + np.log(foldx) / tmax * t
    with np.errstate(divide="ignore", over="ignore"):
        fall = np.log(cmax) + np.log((1 - fb) * np.exp(-alpha * (t - tmax)) + fb * np.exp(-beta * (t - tmax)))
    return np.where(t <= tmax, rise, fall)


def _profile_nll(foldx, sigma=0.3):
    """Minimum log-scale normal NLL of C_declineonly with foldx fixed (Nelder-Mead over the other five)."""
    t = np.array([x for x, _ in C_DECLINE], float)
    ly = np.log([c for _, c in C_DECLINE])

    def f(x):
        p = np.exp(x)
        if p[3] >= 1:
            return 1e300
        v = -np.sum(stats.norm.logpdf(ly, _log_stein(t, foldx, *p), sigma))
        return v if np.isfinite(v) else 1e300

    return min(optimize.minimize(f, np.log([tm, 20300, 0.18, 0.03, 0.02]), method="Nelder-Mead",
                                 options={"maxiter": 20000, "maxfev": 20000, "xatol": 1e-9, "fatol": 1e-11,
                                          "adaptive": True}).fun for tm in (12.0, 14.02, 14.5))


def test_decline_only_fit_with_sigma_held_is_not_identified():
    # independent: the profile likelihood in foldx is flat (same minimum for foldx 300, 3e4 and 3e6), so
    # the data do not determine foldx (the expansion before the first sample on day 14)
    prof = [_profile_nll(fx) for fx in (300.0, 3e4, 3e6)]
    assert max(prof) - min(prof) < 1e-4
    m = SteinModel(sigma=0.3).fit(_frame(C_DECLINE))
    row = m.individual_.row(0, named=True)
    assert row["nll"] == pytest.approx(min(prof), abs=1e-3)  # cartlab's optimum lies on that ridge
    assert row["fitted"] and not row["converged"]
    assert row["message"].startswith("not identified") and "RSE above 500%" in row["message"]
    assert "foldx" in row["message"]
    s = m.summary.filter(parameter="foldx").row(0, named=True)
    assert s["rse_pct"] > 500 and s["converged"] is False
    # with the prior (MAP) the prior determines foldx: not flagged
    prior = SteinModel(prior=STEIN_2019).fit(_frame(C_DECLINE)).individual_.row(0, named=True)
    assert prior["fitted"] and "not identified" not in prior["message"]


def test_no_quantifiable_sample_before_the_fitted_peak_is_named():
    # C_declineonly plus two later samples: 9 samples for 7 parameters, still nothing before day 14
    rows = C_DECLINE + [(120, 100), (180, 60)]
    row = SteinModel().fit(_frame(rows)).individual_.row(0, named=True)
    assert row["fitted"] and not row["converged"] and row["tmax"] < 14
    assert row["message"].startswith("not identified: no quantifiable sample before the fitted peak")
    assert "first quantifiable sample day 14" in row["message"] and "--prior stein2019" in row["message"]


def test_cli_stein_reports_the_unidentified_fit(tmp_path):
    path = tmp_path / "c.csv"
    pl.DataFrame({"ID": ["C_declineonly"] * 7, "DAY": [float(t) for t, _ in C_DECLINE],
                  "DV": [float(c) for _, c in C_DECLINE], "LLOQ": [50.0] * 7}).write_csv(path)
    out = tmp_path / "out"
    # in-process (typer's CliRunner, session 42): the same exit code, stdout and stderr without an
    # interpreter start-up per call; an exception other than the command's exit fails the test
    from typer.testing import CliRunner

    from cartlab.cli import app

    def stein(*args):
        res = CliRunner().invoke(app, ["stein", str(path), "--subject-col", "ID", "--time", "DAY", "--conc", "DV",
                                       "--lloq", "LLOQ", *args], env={"COLUMNS": "250"})
        assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
        return res

    r = stein("--fix", "sigma=0.3", "--out", str(out))
    assert r.exit_code == 0, r.stderr
    assert re.search(r"not converged[^:\n]*: C_declineonly", r.stdout), r.stdout
    subj = pl.read_csv(out / "stein_subjects.csv").row(0, named=True)
    assert subj["converged"] is False and subj["message"].startswith("not identified")
    # without --fix: 7 samples for 7 free parameters, nothing can be fitted
    r = stein("--out", str(tmp_path / "out2"))
    assert r.exit_code == 2 and "7 quantifiable sample(s) for 7 free parameters" in r.stderr


# ---------------------------------------------------------------------------------------------
# 3-4. TwinModel: clear pre-fit errors; a failed fit leaves the previous fit intact


@pytest.mark.parametrize("what", ["summary", "plot", "events_", "forecast", "simulate_after"])
def test_twin_before_fit_says_not_fitted(what):
    from cartlab.twin.fit import TwinModel

    with pytest.raises(AttributeError, match=r"this TwinModel is not fitted yet: call fit\(\) first"):
        a = getattr(TwinModel(), what)
        if callable(a):
            a(None) if what == "simulate_after" else a()


@pytest.fixture(scope="module")
def twin_fit():
    from cartlab.datasets import seed_case
    from cartlab.twin.fit import TwinModel

    s = seed_case()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = TwinModel(n_starts=1, n_sir=200, n_draws=100, maxiter=20).fit(s, "CD7-AML-001")
    return s, m


def test_twin_failed_refit_keeps_the_previous_fit(twin_fit, monkeypatch):
    from cartlab.twin.fit import TwinModel

    s, m = twin_fit
    before = {k: v for k, v in vars(m).items() if k.endswith("_") or k == "_objective"}
    nll, sid = m.nll_, m.subject_id_
    with pytest.raises(InputError, match="NOPE"):
        m.fit(s, "NOPE")
    assert m.subject_id_ == sid == "CD7-AML-001" and m.nll_ == nll and m.until_day_ is None
    assert {k for k in vars(m) if k.endswith("_") or k == "_objective"} == set(before)
    assert all(vars(m)[k] is v for k, v in before.items())
    assert m.summary.height > 0

    # a failure after validation (here: in the optimiser) also restores every fitted attribute
    def boom(self, ob):
        self.x_ = "partial"
        raise RuntimeError("optimiser failed")

    monkeypatch.setattr(TwinModel, "_fit_objective", boom)
    with pytest.raises(RuntimeError, match="optimiser failed"):
        m.fit(s, "CD7-AML-001", until_day=5.0)
    assert m.until_day_ is None and m.nll_ == nll and m.x_ is before["x_"]
    assert all(vars(m)[k] is v for k, v in before.items())


def test_twin_failed_first_fit_stays_unfitted():
    from cartlab.datasets import seed_case
    from cartlab.twin.fit import TwinModel

    m = TwinModel()
    with pytest.raises(InputError):
        m.fit(seed_case(), "NOPE")
    assert not [k for k in vars(m) if k.endswith("_") or k == "_objective"]
    with pytest.raises(AttributeError, match="not fitted yet"):
        m.summary  # noqa: B018
