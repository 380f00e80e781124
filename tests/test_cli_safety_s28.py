"""CLI audit s28 (store, output folders, exit codes): what the README and the project standard promise.

Standard: "Bad input gets one clear message naming the file, row and column (no traceback; --debug
shows it); nothing partial is written". README: "exit code 2 for bad input or usage and 1 otherwise
... `cartlab --debug ...` (or `CARTLAB_DEBUG=1`) also prints the traceback"; "Study folders exported
with semicolons ... are read with `--csv-dialect`"; export/report/synthetic refuse a folder that
holds other files unless --force (now analyze too, and export --fhir for a file).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cartlab.cli import app
from test_cli import run_here

HAS_PROC = os.path.isdir("/proc")


def _run(*args, env: dict | None = None):
    res = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200", **(env or {})})
    text = " ".join((res.output + (res.stderr if res.stderr_bytes is not None else "")).split())
    return res, text


def _proc(*args, env=None):
    e = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "cartlab", *map(str, args)], capture_output=True, text=True, env=e)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _one_message(res, text: str) -> None:
    """One cartlab message: no traceback, no DuckDB/internal wording."""
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in text and "internal error" not in text and "IO Error" not in text, text


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    from cartlab.datasets import synthetic_cohort

    return Path(synthetic_cohort(2, seed=5, out_dir=tmp_path_factory.mktemp("s") / "mini"))


@pytest.fixture(scope="module")
def semi(study, tmp_path_factory) -> Path:
    """The same study written with semicolons (README: read with --csv-dialect)."""
    out = tmp_path_factory.mktemp("semi") / "study"
    out.mkdir()
    for f in study.glob("*.csv"):
        rows = list(csv.reader(f.open(newline="", encoding="utf-8")))
        with (out / f.name).open("w", newline="", encoding="utf-8") as fh:
            csv.writer(fh, delimiter=";", lineterminator="\n").writerows(rows)
    return out


# ------------------------------------------------------------------------------------------------
# --store: only a cartlab store (a DuckDB file) or a new file (audit 1, 10; i01_import_bad)


def test_import_into_a_csv_named_as_store_is_refused_and_the_file_unchanged(study, tmp_path):
    csv_store = tmp_path / "myevents.csv"
    csv_store.write_text("subject_id,event\nA,death\n")
    before = _md5(csv_store)
    res, text = _run("import", study, "--store", csv_store)
    _one_message(res, text)
    assert res.exit_code == 2, text
    assert "myevents.csv" in text and "not a cartlab store" in text, text
    assert "imported" not in text
    assert _md5(csv_store) == before
    res, text = _run("list", "--store", csv_store)
    _one_message(res, text)
    assert res.exit_code == 2 and "not a cartlab store" in text, text


def test_a_study_table_as_store_is_not_called_an_earlier_cartlab_store(study):
    res, text = _run("import", study, "--store", study / "subjects.csv")
    _one_message(res, text)
    assert res.exit_code == 2, text
    assert "not a cartlab store" in text and "earlier cartlab" not in text, text


def test_a_text_file_as_store_is_refused_for_every_store_command(study, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    for args in (["list"], ["show", "SYN-0001"], ["analyze", "--out", tmp_path / "a"],
                 ["eligibility", "SYN-0001", "--protocol", "nct04762485"]):
        res, text = _run(*args, "--store", notes)
        _one_message(res, text)
        assert res.exit_code == 2, (args, text)
        assert "notes.txt" in text and "not a cartlab store" in text, (args, text)
    assert notes.read_text() == "my notes\n"
    assert not (tmp_path / "a").exists()


def test_a_folder_as_store_is_usage_with_one_cartlab_message(study):
    for args in (["list"], ["import", study]):
        res, text = _run(*args, "--store", study)
        _one_message(res, text)
        assert res.exit_code == 2, (args, text)
        assert str(study) in text and "a folder" in text and "not a cartlab store" in text, (args, text)


def test_a_real_store_still_works(study, tmp_path):
    store = tmp_path / "st.duckdb"
    res, text = _run("import", study, "--store", store)
    assert res.exit_code == 0 and "imported" in text, text
    res, text = _run("list", "--store", store)
    assert res.exit_code == 0 and "mini" in text, text


# ------------------------------------------------------------------------------------------------
# analyze --out: refused into a folder of other files unless --force; an earlier analysis replaced whole


def test_analyze_refuses_a_folder_of_other_files_unless_force(study, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    res, text = _run("analyze", study, "--out", other)
    _one_message(res, text)
    assert res.exit_code == 2, text
    assert "is not empty" in text and "cartlab will not write into it" in text and "--force" in text, text
    assert sorted(p.name for p in other.iterdir()) == ["mine.txt"]  # nothing written
    res, text = _run("analyze", study, "--out", other, "--force")
    assert res.exit_code == 0, text
    assert (other / "mine.txt").read_text() == "keep me"
    assert (other / "subject_summary.csv").is_file() and (other / "analysis.json").is_file()


def test_an_earlier_analysis_is_replaced_as_a_whole(study, tmp_path):
    out = tmp_path / "res"
    res, text = _run("analyze", study, "--out", out, "--protocol", "nct04762485")
    assert res.exit_code == 0, text
    assert (out / "dose_plan.csv").is_file()
    res, text = _run("analyze", study, "--out", out)  # no protocol: its tables are not this analysis'
    assert res.exit_code == 0, text
    assert not (out / "dose_plan.csv").exists(), sorted(p.name for p in out.iterdir())
    assert (out / "subject_summary.csv").is_file()


def test_analyze_out_a_file_says_it_is_a_file(study, tmp_path):
    afile = tmp_path / "afile.txt"
    afile.write_text("x")
    res, text = _run("analyze", study, "--out", afile)
    _one_message(res, text)
    assert res.exit_code == 2, text
    assert "afile.txt: a file, not a folder to write" in text and "File exists" not in text, text
    assert afile.read_text() == "x"


# ------------------------------------------------------------------------------------------------
# export --fhir FILE: not over a file that is not an earlier FHIR export, unless --force


def test_export_fhir_does_not_replace_an_unrelated_file(study, tmp_path):
    afile = tmp_path / "afile.txt"
    afile.write_text("hello\n")
    res, text = _run("export", study, "--fhir", afile)
    _one_message(res, text)
    assert res.exit_code == 2, text
    assert "afile.txt" in text and "--force" in text, text
    assert afile.read_text() == "hello\n"
    res, text = _run("export", study, "--fhir", afile, "--force")
    assert res.exit_code == 0, text
    assert json.loads(afile.read_text())["resourceType"] == "Bundle"


def test_export_fhir_replaces_its_own_earlier_export(study, tmp_path):
    bundle = tmp_path / "b.json"
    assert _run("export", study, "--fhir", bundle)[0].exit_code == 0
    res, text = _run("export", study, "--fhir", bundle)
    assert res.exit_code == 0, text


# ------------------------------------------------------------------------------------------------
# demo: --store and --out checked before anything is written (audit 5)


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc (a folder nothing can be created in)")
def test_demo_with_an_unusable_store_writes_nothing(tmp_path):
    dd = tmp_path / "dd"
    res, text = _run("demo", "--out", dd, "--store", "/proc/x.duckdb")
    _one_message(res, text)
    assert res.exit_code != 0, text
    assert "/proc/x.duckdb" in text, text
    assert not dd.exists(), sorted(str(p) for p in dd.rglob("*"))
    assert [p.name for p in tmp_path.iterdir()] == []  # no staging folder left either


def test_demo_with_a_folder_as_store_writes_nothing(tmp_path):
    dd = tmp_path / "dd"
    (tmp_path / "st").mkdir()
    res, text = _run("demo", "--out", dd, "--store", tmp_path / "st")
    _one_message(res, text)
    assert res.exit_code == 2 and "not a cartlab store" in text, text
    assert not dd.exists()


# ------------------------------------------------------------------------------------------------
# an unwritable --out: one message naming it, the same exit code as synthetic/analyze (audit 6)


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc (a folder nothing can be created in)")
def test_unwritable_out_same_exit_code_for_every_command(study):
    codes = {}
    for name, args in (("synthetic", ["synthetic", "--n", "1", "--out", "/proc/x"]),
                       ("analyze", ["analyze", study, "--out", "/proc/x"]),
                       ("export", ["export", study, "--out", "/proc/x"]),
                       ("export --adam", ["export", study, "--adam", "/proc/x"]),
                       ("export --fhir", ["export", study, "--fhir", "/proc/x.json"]),
                       ("report", ["report", study, "--out", "/proc/x", "--no-pdf", "--workers", "1"])):
        res, text = _run(*args)
        _one_message(res, text)
        assert "/proc/x" in text and "/proc/." not in text, (name, text)  # the path given, not a temporary one
        codes[name] = res.exit_code
    assert set(codes.values()) == {2}, codes  # README: a path that cannot be used as given is usage


# ------------------------------------------------------------------------------------------------
# --csv-dialect for export and dose (audit 7)


def test_export_reads_a_semicolon_folder_with_csv_dialect(semi, tmp_path):
    res, text = _run("export", semi, "--out", tmp_path / "plain")
    assert res.exit_code == 2 and "--csv-dialect" in text, text  # the hint names the option ...
    res, text = _run("export", semi, "--out", tmp_path / "ex", "--csv-dialect", "semicolon")
    assert res.exit_code == 0, text  # ... and export has it
    assert (tmp_path / "ex" / "subjects.csv").is_file()
    res, text = _run("export", semi, "--fhir", tmp_path / "b.json", env={"CARTLAB_CSV_DIALECT": "semicolon"})
    assert res.exit_code == 0, text


def test_dose_reads_a_semicolon_folder_with_csv_dialect(semi):
    args = ["dose", "--protocol", "nct04762485", "--subject", "SYN-0001", "--study", semi, "--csv"]
    res, text = _run(*args, "--csv-dialect", "semicolon")
    assert res.exit_code == 0, text
    assert "cyclophosphamide" in res.output
    res, text = _run(*args, env={"CARTLAB_CSV_DIALECT": "semicolon"})
    assert res.exit_code == 0, text


# ------------------------------------------------------------------------------------------------
# --debug does not change the exit code (audit 8)


def test_debug_keeps_exit_code_2_and_shows_the_traceback(tmp_path):
    # the installed command with --debug; the plain and CARTLAB_DEBUG=1 runs in this process (run_here)
    plain = run_here("validate", tmp_path / "nonexist")
    assert plain.returncode == 2, plain.stderr
    for r in (_proc("--debug", "validate", tmp_path / "nonexist"),
              run_here("validate", tmp_path / "nonexist", env={"CARTLAB_DEBUG": "1"})):
        assert r.returncode == 2, r.stderr
        assert "Traceback" in r.stderr and "nonexist" in r.stderr


# ------------------------------------------------------------------------------------------------
# show/explain --study naming nothing (audit 12)


def test_show_with_a_mistyped_study_says_it_is_neither_folder_nor_stored(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no store here
    res, text = _run("show", "SYN-0001", "--study", "nonexist")
    _one_message(res, text)
    assert res.exit_code == 2, text
    assert "nonexist: no such study folder" in text and "no store at" in text, text


def test_show_with_a_study_not_in_the_store(study, tmp_path):
    store = tmp_path / "st.duckdb"
    assert _run("import", study, "--store", store)[0].exit_code == 0
    res, text = _run("show", "SYN-0001", "--study", "nonexist", "--store", store)
    _one_message(res, text)
    assert res.exit_code == 2, text
    assert "nonexist: no such study folder" in text and "mini" in text, text


# ------------------------------------------------------------------------------------------------
# export --adam --sdtm prints where the mapping report is after the run (docs audit 2)


def test_export_adam_from_sdtm_prints_the_final_mapping_report_path(study, tmp_path):
    from cartlab.io import read_study
    from cartlab.io.sdtm import write_sdtm

    sdtm = write_sdtm(read_study(study), tmp_path / "sdtm")
    adam = tmp_path / "adam2"
    res, text = _run("export", "--adam", adam, "--sdtm", sdtm, "--format", "csv")
    assert res.exit_code == 0, text
    flat = "".join(text.split())  # rich wraps long paths over lines
    want = adam / "sdtm_mapping_report.csv"
    assert f"mappingreport:{want}" in flat and want.is_file(), text
    assert "-tmp" not in flat, text  # never the staging folder's name


def test_simulate_refuses_a_folder_of_other_files_unless_force(tmp_path):
    out = tmp_path / "sim"
    out.mkdir()
    (out / "mine.txt").write_text("mine")
    args = ("simulate", "--n", "2", "--out", out, "--days", "5", "--folders", "0")
    res, text = _run(*args)
    assert res.exit_code == 2 and "pass --force" in text and sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    res, text = _run(*args, "--force")
    assert res.exit_code == 0, text
    assert (out / "mine.txt").read_text() == "mine" and (out / "summary.json").is_file()
