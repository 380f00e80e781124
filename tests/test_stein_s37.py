"""Session 37: a Stein output folder is replaced whole, as analyses and reports are.

A population fit written over an earlier per-subject fit left that fit's stein_estimates.csv beside the
new stein_population.csv (the folder was merged file by file); a folder of other files was written into
silently. Now: an earlier Stein output is replaced whole, a folder of other files needs --force.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cartlab.cli.kinetics_io import _write_files, check_stein_folder
from cartlab.errors import InputError


def test_an_earlier_stein_output_is_replaced_whole(tmp_path: Path):
    out = tmp_path / "stein"
    _write_files({"stein_estimates.csv": __import__("polars").DataFrame({"a": [1]}), "stein_fit.json": {"x": 1}}, out)
    assert (out / "stein_estimates.csv").is_file()
    # a later fit writing other files: the earlier fit's files do not survive beside it
    _write_files({"stein_population.csv": __import__("polars").DataFrame({"b": [2]}), "stein_fit.json": {"x": 2}},
                 out)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["stein_fit.json",
                                                                                   "stein_population.csv"]


def test_a_folder_of_other_files_is_refused_unless_force(tmp_path: Path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(InputError, match="not empty"):
        check_stein_folder(out)
    check_stein_folder(out, force=True)
    _write_files({"stein_fit.json": {"x": 1}}, out, force=True)
    assert (out / "notes.txt").read_text(encoding="utf-8") == "keep me" and (out / "stein_fit.json").is_file()
    # a Stein folder written before the output marker existed (stein_fit.json in it) is an earlier output
    old = tmp_path / "old"
    old.mkdir()
    (old / "stein_fit.json").write_text("{}", encoding="utf-8")
    (old / "stein_estimates.csv").write_text("a\n1\n", encoding="utf-8")
    check_stein_folder(old)
    _write_files({"stein_fit.json": {"x": 1}}, old)
    assert not (old / "stein_estimates.csv").exists()


def test_the_cli_refuses_before_fitting(tmp_path: Path):
    from typer.testing import CliRunner

    from cartlab.cli import app

    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("x", encoding="utf-8")
    conc = tmp_path / "conc.csv"
    conc.write_text("ID,DAY,DV\n1,1,10\n1,7,1000\n1,14,100\n", encoding="utf-8")
    r = CliRunner().invoke(app, ["stein", str(conc), "--subject-col", "ID", "--time-col", "DAY", "--conc-col", "DV",
                                 "--out", str(out)])
    assert r.exit_code == 2 and "not empty" in r.output and "--force" in r.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
