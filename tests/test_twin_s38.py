"""Session 38 (review 38 of the twin: A1, B2, B3, B4, B5, B9, C1-C3). Expected values by hand from the
review's and the standard's text (each test says how); never copied from cartlab's output."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from cartlab.cli import app

TWIN = Path(__file__).resolve().parents[1] / "src" / "cartlab" / "twin"


# ---- A1: a weighted share below 1/N (above 1 - 1/N) is shown as the bound ------------------------------
def test_a_weighted_share_below_one_over_n_is_shown_as_the_bound():
    from cartlab.twin.forecast import probability_text

    # by hand: 1/163 = 0.0061350 -> up to 3 significant digits "0.00614"; 1 - 1/163 = 0.9938650 -> down to
    # the 4th decimal (1/163's second significant digit) "0.9938". The seed forecast's raw values were
    # 3.46e-7 and 0.9999917 (review 38 A1), printed "0.000" and "1.000" before.
    assert probability_text(3.4598978747336903e-7, 163) == "< 0.00614"
    assert probability_text(0.9999917451139115, 163) == "> 0.9938"
    assert probability_text(0.0, 163) == "< 0.00614"          # unchanged: an exact 0
    assert probability_text(0.5, 163) == "0.500"               # resolved: the share to 3 decimals
    assert probability_text(1 / 163, 163) == "0.006"           # exactly 1/N (one of N equal draws) is resolved


# ---- B2: one patient whose solvers all fail does not sink the trial ------------------------------------
def _failing_solver(monkeypatch, fail_call: int):
    """Every patient exceeds the DP5 step limit (max_steps 1) and goes to LSODA; the ``fail_call``-th
    LSODA course raises as solve_ivp's failure does."""
    import cartlab.twin.solver as S

    orig_solve, orig_course = S.solve, S.python_course
    calls = {"n": 0}

    def solve(*a, **k):
        k["max_steps"] = 1
        return orig_solve(*a, **k)

    def course(*a, **k):
        calls["n"] += 1
        if calls["n"] == fail_call:
            raise RuntimeError("solve_ivp failed on [0.0, 1.0]: injected")
        return orig_course(*a, **k)

    monkeypatch.setattr(S, "solve", solve)
    monkeypatch.setattr(S, "python_course", course)


def test_a_patient_whose_solvers_fail_is_left_out_counted_and_listed(monkeypatch, tmp_path):
    from cartlab.twin.trial import TrialConfig, run_trial

    _failing_solver(monkeypatch, fail_call=2)   # patients 0, 1, 2 in order: the 2nd LSODA call is patient 1
    s = run_trial(TrialConfig(n=3, seed=5, chunk=3, course_days=3, folders=3), tmp_path / "run")
    arm = s["arms"][0]
    # by hand: 3 patients, 1 failed -> 2 summarised; all 3 needed the fallback (max_steps 1)
    assert arm["n"] == 2
    assert arm["solver"]["n_fallback"] == 3 and arm["solver"]["n_failed"] == 1
    (f,) = arm["solver"]["failed"]
    assert f["patient"] == 1 and f["subject_id"] == "SIM-0000001" and "LSODA fallback failed" in f["reason"]
    assert arm["rates"]["crs_any"]["n"] == 2
    subjects = pl.read_csv(tmp_path / "run" / "study" / "subjects.csv")["subject_id"].to_list()
    assert subjects == ["SIM-0000000", "SIM-0000002"]
    row = pl.read_csv(tmp_path / "run" / "tables" / "arms.csv").row(0, named=True)
    assert (row["n_solver_failed"], row["n_fallback"], row["n"]) == (1, 3, 2)


def test_on_solver_failure_error_stops_with_a_clear_message(monkeypatch, tmp_path):
    from cartlab.twin.trial import SolverFailed, TrialConfig, run_trial

    _failing_solver(monkeypatch, fail_call=1)
    with pytest.raises(SolverFailed, match=r"patient 0 \(SIM-0000000\) could not be solved.*on_solver_failure"):
        run_trial(TrialConfig(n=2, seed=5, chunk=2, course_days=3, folders=0, on_solver_failure="error"),
                  tmp_path / "run")


def test_on_solver_failure_is_validated():
    from cartlab.errors import InputError
    from cartlab.twin.trial import TrialConfig, validate_config

    with pytest.raises(InputError, match="on_solver_failure must be one of exclude, error"):
        validate_config(TrialConfig(n=1, on_solver_failure="skip"))


# ---- B9 + C3: response rates over the evaluable patients; car_quantifiable ---------------------------
def test_response_rates_are_over_the_patients_with_a_response_assessment():
    from cartlab.twin.summaries import Accumulator
    from cartlab.twin.trial import Arm, TrialConfig, summarise_acc

    cfg = TrialConfig(n=10, arms=(Arm(),))
    acc = Accumulator()
    lab = cfg.arms[0].label
    for k, v in {"n": 10, "response_evaluable": 8, "response_cr_crh_cri": 6, "response_cr_crh_cri_mlfs": 7,
                 "crs_ge3": 1, "expanded": 10}.items():
        acc._c(lab, k, v)
    arm = summarise_acc(cfg, acc)["arms"][0]
    # by hand: 6 responders of the 8 assessed = 0.75 (not 6/10); 2 not evaluable; CRS over all 10
    assert arm["rates"]["response_cr_crh_cri"]["n"] == 8 and arm["rates"]["response_cr_crh_cri"]["rate"] == 0.75
    assert arm["rates"]["response_cr_crh_cri_mlfs"]["rate"] == 0.875
    assert arm["n_response_evaluable"] == 8 and arm["n_response_not_evaluable"] == 2
    assert arm["rates"]["crs_ge3"]["n"] == 10 and arm["rates"]["crs_ge3"]["rate"] == 0.1
    # C3: the CAR-quantifiable rate is not called "expanded" and says why
    assert "expanded" not in arm["rates"]
    assert "not a measure of expansion" in arm["rates"]["car_quantifiable"]["label"]


# ---- B4: WBC >= NEUT + LYM on every simulated CBC --------------------------------------------------------
def test_simulated_wbc_is_at_least_its_differential():
    from twin_helpers import virtual_patient

    study, _, _ = virtual_patient(seed=7, days=14)
    o = study.observations.filter(pl.col("param").is_in(["WBC", "NEUT", "LYM"]))
    w = o.pivot(on="param", index=["subject_id", "day"], values="value", aggregate_function="first").drop_nulls()
    assert w.height > 10
    # a differential is a share of the same count (ANC = WBC x neutrophil %): NEUT + LYM <= WBC
    assert ((w["NEUT"] + w["LYM"]) <= w["WBC"] * (1 + 1e-12)).all()
    doc = yaml.safe_load((TWIN / "criteria" / "schedule_v1.yaml").read_text())
    assert doc["noise"]["WBC"]["sum_of"] == ["NEUT", "LYM"]


# ---- B3 + B5: units / status / citation, versions, assumptions, not-measured rows ----------------------
def test_param_columns_come_from_the_yaml_rows():
    from cartlab.twin.params import load_params
    from cartlab.twin.provenance import with_param_columns

    doc = yaml.safe_load((TWIN / "params" / "cd7_twin_v1.yaml").read_text())
    rows = {r["name"]: r for r in doc["parameters"]}
    df = with_param_columns(pl.DataFrame({"parameter": ["rho", "K_A"], "estimate": [1.0, 2.0]}), load_params())
    assert df.columns[:4] == ["parameter", "unit", "status", "citation"]
    for r in df.iter_rows(named=True):   # read independently from the YAML file
        y = rows[r["parameter"]]
        assert (r["unit"], r["status"], r["citation"]) == (y["unit"], y["status"], y["citation"].strip())


def test_not_measured_note_over_half_of_the_rows():
    from cartlab.twin.provenance import not_measured_note, rows_by_source

    more = pl.DataFrame({"source": ["reconstructed"] * 3 + ["paper"] * 2})
    half = pl.DataFrame({"source": ["reconstructed"] * 2 + ["paper"] * 2})
    assert rows_by_source(more) == {"reconstructed": 3, "paper": 2}
    # 3/5 = 0.6 > 0.5: a note with the counts; 2/4 = 0.5 is not above the share: none
    assert not_measured_note(more).startswith("not_measured_data: 3 of 5 fitted rows are not measured")
    assert not_measured_note(half) is None


def test_fit_and_forecast_outputs_carry_units_versions_assumptions(tmp_path):
    import warnings

    from cartlab.cli.twin import _write_fit
    from cartlab.twin.fit import TwinModel
    from cartlab.twin.provenance import forecast_assumptions
    from twin_helpers import virtual_patient

    study, _, _ = virtual_patient(seed=11, days=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = TwinModel(n_starts=1, n_sir=200, n_draws=100, maxiter=60).fit(study, study.subjects["subject_id"][0])
        m.forecast(m.until_day_)
    # a virtual patient's rows are all source = simulated (not measured): the forecast says so
    assert any(n.startswith("not_measured_data:") for n in m.forecast_notes_)
    meta: dict = {}
    _write_fit(m, tmp_path, meta)
    head = pl.read_csv(tmp_path / "twin_params.csv").columns
    assert {"unit", "status", "citation"} <= set(head)
    assert {"unit", "status", "citation"} <= set(pl.read_csv(tmp_path / "twin_all_params.csv").columns)
    assert meta["model"]["version"] == "cartlab.twin v1" and meta["model"]["params"] == "cd7_twin_v1"
    assert meta["model"]["clinic"] == "clinic_v1"
    assert set(meta["rows_by_source"]) == {"simulated"}
    json.dumps(meta, default=str)
    a = forecast_assumptions(7.0)
    assert any("clinic rule clinic_v1 decides" in x and "after day 7" in x for x in a)
    assert any("recorded interventions after day 7 are not used" in x for x in a)
    assert any("noise-free course" in x for x in a)


# ---- C1 / C2: texts and option validation ----------------------------------------------------------------
def test_forecast_help_says_on_day_28_with_crh():
    out = CliRunner().invoke(app, ["twin", "forecast", "--help"], terminal_width=400).output
    assert "on day 28" in out and "CR/CRh/CRi/MLFS" in out and "by day 28" not in out


@pytest.mark.parametrize("args, message", [
    (["--dose-levels", "1e6,,2e6"], "--dose-levels: empty item in '1e6,,2e6'"),
    (["--ld-intensity", "1,"], "--ld-intensity: empty item in '1,'"),
    (["--split", "1;"], "--split: empty regimen after ';' in '1;'"),
])
def test_empty_items_are_refused_naming_the_option(tmp_path, args, message):
    r = CliRunner().invoke(app, ["simulate", "--n", "2", "--days", "2", "--out", str(tmp_path / "o"), *args],
                           terminal_width=400)
    assert r.exit_code == 2
    assert message in " ".join(r.output.split())
    assert not (tmp_path / "o").exists()


def test_solver_failure_option_is_checked_by_the_cli(tmp_path):
    r = CliRunner().invoke(app, ["simulate", "--n", "2", "--out", str(tmp_path / "o"), "--on-solver-failure",
                                 "skip"], terminal_width=400)
    assert r.exit_code == 2 and "--on-solver-failure must be exclude or error" in r.output
