"""Session 31, dashboard differential audit (/work/notes/audit_dashdiff, finding 3): with
``kinetics.auc_window=[0,21]`` the value in ``car_auc_0_28`` is the AUC over days 0-21 (the column keeps
the spec's name), but the report labelled it "AUC 0-28" everywhere. The labels must say the window used."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cartlab.cli import app
from cartlab.datasets import synthetic_cohort


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return synthetic_cohort(5, seed=3, out_dir=tmp_path_factory.mktemp("syn") / "syn")


def _report(cohort, out, *extra):
    res = CliRunner().invoke(app, ["report", str(cohort), "--out", str(out), "--no-pdf", "--workers", "1", *extra])
    assert res.exit_code == 0, res.output
    return (out / "index.html").read_text(encoding="utf-8"), (out / "subject_SYN-0001.html").read_text(encoding="utf-8")


def test_auc_labels_name_the_window_of_the_analysis(cohort, tmp_path):
    index, subject = _report(cohort, tmp_path / "r21", "--set", "kinetics.auc_window=[0,21]")
    assert "CAR AUC 0–21" in index and "CAR AUC₀₋₂₈" not in index  # study table header
    assert "CAR AUC 0–21" in subject and "CAR AUC0–28" not in subject  # subject summary label
    assert "Cmax and AUC(0-21)" in index  # exposure view caption


def test_default_window_keeps_the_0_28_labels(cohort, tmp_path):
    index, subject = _report(cohort, tmp_path / "r28")
    assert "CAR AUC₀₋₂₈" in index and "CAR AUC0–28" in subject and "Cmax and AUC(0-28)" in index
