"""Session 37 (new-user review B4, B7): the twin's output folders follow the analyses' rule, and an
unknown target is not taken as CD7."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from cartlab.cli import app
from cartlab.datasets import seed_case
from cartlab.errors import InputError
from cartlab.twin.fit import TwinModel


def test_an_empty_target_is_not_taken_as_cd7():
    s = seed_case()
    blank = dataclasses.replace(s, subjects=s.subjects.with_columns(pl.lit(None, dtype=pl.String).alias("target")))
    with pytest.raises(InputError, match="subjects.target is empty for CD7-AML-001.*not taken as CD7"):
        TwinModel().fit(blank, "CD7-AML-001")
    gone = dataclasses.replace(s, subjects=s.subjects.drop("target"))
    with pytest.raises(InputError, match="--allow-other-target"):
        TwinModel().fit(gone, "CD7-AML-001")


def test_an_unknown_target_fitted_anyway_is_flagged():
    from types import SimpleNamespace

    from cartlab.twin.forecast import forecast_notes, forecast_problems

    obs = pl.DataFrame({"param": ["CARCOPY"], "day": [7.0], "value": [100.0], "iwres": [0.1]})
    m = SimpleNamespace(intervals_reliable_=True, ess_=500.0, n_unique_draws_=35, converged_=True, message_="",
                        observations_=obs, target_=None, baseline_defaults_used_={})
    assert "not_cd7" in forecast_problems(m)
    table = pl.DataFrame({"quantity": ["car_cmax"], "pi90_hi": [1e6]})
    assert any("the subject's target is not given" in n for n in forecast_notes(m, table))


@pytest.mark.parametrize("cmd", [["twin", "fit"], ["twin", "forecast"]])
def test_a_folder_of_other_files_is_refused_before_the_fit(tmp_path: Path, cmd):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "twin_params.csv").write_text("not cartlab's\n", encoding="utf-8")
    (out / "notes.txt").write_text("keep\n", encoding="utf-8")
    seed = Path(__file__).parents[1] / "src" / "cartlab" / "datasets" / "seed_case"
    r = CliRunner().invoke(app, [*cmd, str(seed), "--subject", "CD7-AML-001", "--out", str(out)])
    assert r.exit_code == 2, r.output
    assert "not empty" in r.output and "--force" in r.output
    assert (out / "twin_params.csv").read_text(encoding="utf-8") == "not cartlab's\n"
