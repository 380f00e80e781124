"""Session 42: `cartlab ctcae --options FILE` names the study-only CTCAE options its ctcae section sets
(baseline_day, baseline_inclusive, baseline_day0, calcium_summary): cartlab ctcae grades a table row by
row and does not use them. The file may be the one written for cartlab analyze, so they are named on
stderr and the table is still graded (--set refuses them: it is written for this command)."""

from __future__ import annotations

import polars as pl
from typer.testing import CliRunner

from cartlab.cli import app


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400", "CARTLAB_STORE": None})


def _table(tmp_path):
    # K 3.4 mmol/L, LLN 3.5: CTCAE v5 Hypokalemia grade 1 (<LLN-3.0) unless symptomatic (grade 2)
    p = tmp_path / "k.csv"
    p.write_text("subject_id,term,direction,aval,unit,lln\nS1,Hypokalemia,L,3.4,mmol/L,3.5\n")
    return p


def test_study_only_option_in_the_file_is_named_and_the_rest_applies(tmp_path):
    opts = tmp_path / "opts.yaml"
    opts.write_text("ctcae:\n  baseline_day: 5\n  hypokalemia_symptomatic: false\n")
    res = _run("ctcae", _table(tmp_path), "--out", tmp_path / "out.csv", "--options", opts)
    assert res.exit_code == 0, res.output
    assert "ctcae.baseline_day applies to cartlab analyze" in res.output and "not used here" in res.output
    out = pl.read_csv(tmp_path / "out.csv")
    assert out["grade"].to_list() == [1]  # hypokalemia_symptomatic=false from the same file applied: grade 1


def test_a_file_without_study_only_options_says_nothing_of_them(tmp_path):
    opts = tmp_path / "opts.yaml"
    opts.write_text("ctcae:\n  hypokalemia_symptomatic: true\n")
    res = _run("ctcae", _table(tmp_path), "--out", tmp_path / "out.csv", "--options", opts)
    assert res.exit_code == 0, res.output
    assert "applies to cartlab analyze" not in res.output
    assert pl.read_csv(tmp_path / "out.csv")["grade"].to_list() == [2]  # symptomatic: grade 2 (CTCAE v5)
