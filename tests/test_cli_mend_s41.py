"""Mend of review41_diff2 findings 1, 6, 7, 8, 9 and 13 (CLI parts): the one grammar's edges.

Expected messages are the wording decided in the mend's brief (not copied from the program's output);
each test fails on the code before the mend (checked by running it against HEAD's src/cartlab/cli).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cartlab.cli import app


def _run(*args, cwd: Path | None = None):
    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        res = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "250", "CARTLAB_STORE": None})
    finally:
        os.chdir(old)
    return res, " ".join(res.output.split())


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    from cartlab.datasets import synthetic_cohort

    return Path(synthetic_cohort(3, seed=2, out_dir=tmp_path_factory.mktemp("m41") / "mini"))


# 1. `--weight 115 lb`: "lb" was taken as the positional SUBJECT and 115 read as kg (BSA about 1.5x too high:
# 115 lb = 52.2 kg). Refused before anything is computed, naming the one-argument form; nothing written.
def test_dose_refuses_a_unit_or_number_as_the_positional_subject(tmp_path):
    sheet = tmp_path / "lb.html"
    res, text = _run("dose", "-p", "nct04762485", "--weight", "115", "lb", "--height", "160cm", "--age", "17",
                     "--sex", "F", "--creatinine", "54", "umol/L", "--sheet", sheet)
    assert res.exit_code == 2, text
    assert "'lb' is a unit, not a subject id" in text and "--weight '115 lb'" in text, text
    assert not sheet.exists()
    # a length unit names --height; a bare number is refused too; both point to --subject for such an id
    res, text = _run("dose", "-p", "nct04762485", "--weight", "52kg", "--height", "160", "cm")
    assert res.exit_code == 2 and "--height '160 cm'" in text, text
    res, text = _run("dose", "115", "-p", "nct04762485", "--weight", "52kg", "--height", "160cm")
    assert res.exit_code == 2 and "'115' is a number" in text and "--subject 115" in text, text
    # the long form is taken as given (a subject id may look like a number), and a plain id as positional
    res, text = _run("dose", "-p", "nct04762485", "--weight", "52kg", "--height", "160cm", "--subject", "115", "--csv")
    assert res.exit_code == 0, text
    res, text = _run("dose", "P01", "-p", "nct04762485", "--weight", "52kg", "--height", "160cm", "--csv")
    assert res.exit_code == 0, text


# 6. the same folder spelled relative and absolute (or through a symlink) is one study, not two values
def test_study_given_as_relative_and_absolute_path_is_one_study(study):
    res, text = _run("validate", study.name, "--study", study.resolve(), cwd=study.parent)
    assert res.exit_code == 0, text
    link = study.parent / "mini_link"
    link.symlink_to(study, target_is_directory=True)
    res, text = _run("validate", "mini_link", "--study", study.name, cwd=study.parent)
    assert res.exit_code == 0, text
    # two different folders are still refused
    res, text = _run("validate", study, "--study", study.parent, cwd=study.parent)
    assert res.exit_code == 2 and "two different study values" in text, text


# 7. stein: --subject is a subject id, no longer the old name of --subject-col (behaviour change)
def test_stein_refuses_subject_naming_the_column_option(tmp_path, study):
    for args in (["--study", study, "--subject", "SYN-0001"], [study / "observations.csv", "--subject=ID"]):
        res, text = _run("stein", *args, "--out", tmp_path / "st")
        assert res.exit_code == 2, text
        assert "--subject is a subject id" in text and "the column is --subject-col" in text, text
        assert "deprecated" not in text
    assert not (tmp_path / "st").exists()


# 8. import's --study is its old name of --study-id: without a folder, say so and show the folder form
def test_import_study_without_folder_explains_the_alias(tmp_path):
    res, text = _run("import", "--study", "syn", "--store", tmp_path / "s.duckdb")
    assert res.exit_code == 2, text
    assert "import's --study is the old name of --study-id" in text and "cartlab import syn" in text, text
    assert not (tmp_path / "s.duckdb").exists()


# 9. report --subject NOPE on the store's only study names that study (was "in None"); a second source
# names the spelling typed (--study, not STUDY)
def test_report_and_analyze_messages_name_what_was_given(tmp_path, study):
    db = tmp_path / "s.duckdb"
    res, text = _run("import", study, "--store", db, "--study-id", "mini")
    assert res.exit_code == 0, text
    res, text = _run("report", "--subject", "NOPE", "--store", db, "--out", tmp_path / "rep")
    assert res.exit_code == 2 and "no subject 'NOPE' in mini" in text, text
    sdtm = tmp_path / "sdtm"
    sdtm.mkdir()
    res, text = _run("analyze", "--study", study, "--sdtm", sdtm, "--out", tmp_path / "a")
    assert res.exit_code == 2 and "give one source, not --study and --sdtm" in text, text
    res, text = _run("analyze", study, "--sdtm", sdtm, "--out", tmp_path / "a")
    assert res.exit_code == 2 and "give one source, not STUDY and --sdtm" in text, text


# 13. --study/--subject repeated with different values: refused (click took the last), the same value is fine
def test_repeated_study_or_subject_with_different_values_is_refused(tmp_path, study):
    res, text = _run("validate", "--study", study, "--study", tmp_path)
    assert res.exit_code == 2 and "two different study values" in text, text
    res, text = _run("show", "--study", study, "--subject", "SYN-0001", "--subject", "SYN-0002")
    assert res.exit_code == 2 and "two different subject values" in text, text
    res, text = _run("show", "--study", study, "--subject", "SYN-0001", "--subject=SYN-0001")
    assert res.exit_code == 0, text
    res, text = _run("validate", "--study", study, f"--study={study.resolve()}")
    assert res.exit_code == 0, text
