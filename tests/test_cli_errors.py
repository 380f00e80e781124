"""No tracebacks (issue 13, point 8): every command on broken inputs gives one clear message and exit
code 2 (bad input or usage) or 1 (anything else), never a Python traceback; --debug shows it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cartlab.cli import app
from cartlab.datasets import seed_case_path
from conftest import write
from test_cli import run_here


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """A folder of broken inputs."""
    d = tmp_path_factory.mktemp("broken")
    (d / "trial.xlsx").write_bytes(b"PK\x03\x04")
    write(d / "invalid", "subjects.csv", "subject_id,sex\nA,X")
    write(d / "invalid", "observations.csv", "subject_id,day,param,value,unit\nA,1,TEMP,38,furlongs")
    write(d / "semicolon", "subjects.csv", "subject_id;age_years\nA;17,5")
    shutil.copytree(seed_case_path(), d / "seed")
    write(d, "labs_no_columns.csv", "a,b\n1,2")
    write(d, "conc.csv", "id,t,c\nA,0,0\nA,1,x\n")
    write(d, "protocol.yaml", "schema: cartlab-protocol/1\nid: [unclosed\n")
    write(d, "notes.txt", "hello")
    write(d / "full", "anything.txt", "keep me")
    return d


CASES = [
    ("validate", ["validate", "{d}/missing"], 2, "no such file or folder"),
    ("validate", ["validate", "{d}/trial.xlsx"], 2, "spreadsheet"),
    ("validate", ["validate", "{d}/semicolon"], 1, "looks semicolon-separated"),
    ("import", ["import", "{d}/missing", "--store", "{d}/s.duckdb"], 2, "no such file or folder"),
    ("import", ["import", "{d}/invalid", "--store", "{d}/s.duckdb"], 2, "furlongs"),
    ("list", ["list", "--store", "{d}/none.duckdb"], 2, "no store"),
    ("show", ["show", "X", "--store", "{d}/none.duckdb"], 2, "no store"),
    ("export", ["export", "nostudy", "{d}/out", "--store", "{d}/none.duckdb"], 2, "no store"),
    ("export", ["export", "nostudy", "{d}/out", "--format", "xls"], 2, "csv or parquet"),
    ("analyze", ["analyze", "{d}/missing", "--out", "{d}/a"], 2, "no such file or folder"),
    ("analyze", ["analyze", "{d}/trial.xlsx", "--out", "{d}/a"], 2, "spreadsheet"),
    ("analyze", ["analyze", "{d}/invalid", "--out", "{d}/a"], 2, "not a valid sex"),
    ("analyze", ["analyze", "{d}/semicolon", "--out", "{d}/a"], 2, "--csv-dialect european"),
    ("analyze", ["analyze", "{d}/seed", "--protocol", "no_such_protocol", "--out", "{d}/a"], 2, "no_such_protocol"),
    ("analyze", ["analyze", "{d}/seed", "--csv-dialect", "klingon", "--out", "{d}/a"], 2, "unknown CSV dialect"),
    ("report", ["report", "{d}/missing"], 2, "no such file or folder"),
    ("report", ["report", "{d}/seed", "--subject", "nobody", "--out", "{d}/r"], 2, "no subject 'nobody'"),
    ("report", ["report", "{d}/seed", "--workers", "0", "--out", "{d}/r"], 2, "--workers"),
    ("serve", ["serve", "{d}/missing"], 2, "no such file or folder"),
    ("serve", ["serve", "--store", "{d}/none.duckdb"], 2, "no store"),
    ("serve", ["serve", "{d}/seed", "--host", "0.0.0.0"], 2, "no token is set"),
    ("synthetic", ["synthetic", "{d}/full", "--n", "2"], 2, "not empty"),
    ("synthetic", ["synthetic", "{d}/notes.txt", "--n", "2"], 2, "a file, not a folder"),
    ("explain", ["explain", "X", "--what", "everything"], 2, "cannot explain"),
    ("explain", ["explain", "X", "--store", "{d}/none.duckdb"], 2, "no store"),
    ("ctcae", ["ctcae", "{d}/missing.csv", "--out", "{d}/o.csv"], 2, "no such file or folder"),
    ("ctcae", ["ctcae", "{d}/labs_no_columns.csv", "--out", "{d}/o.csv"], 2, "labs_no_columns.csv"),
    ("ctcae", ["ctcae", "{d}/conc.csv", "--out", "{d}/o.csv", "--option", "nonsense"], 2, "NAME=VALUE"),
    ("nca", ["nca", "{d}/conc.csv", "--subject", "id", "--time", "t", "--conc", "nope", "--out", "{d}/n.csv"], 2, "nope"),
    ("nca", ["nca", "{d}/missing.csv", "--subject", "id", "--time", "t", "--conc", "c", "--out", "{d}/n.csv"], 2, "missing.csv"),
    ("stein", ["stein", "{d}/missing", "--out", "{d}/st"], 2, "no such file or folder"),
    ("stein", ["stein", "{d}/conc.csv", "--out", "{d}/st"], 2, "--subject"),
    ("protocols", ["protocols", "{d}/protocol.yaml"], 2, "problem"),
    ("protocols", ["protocols", "no_such_protocol"], 2, "no_such_protocol"),
    ("dose", ["dose", "--protocol", "nct04762485"], 2, "--weight"),
    ("dose", ["dose", "--protocol", "nct04762485", "--weight", "5000", "--height", "160"], 2, "weight"),
    ("dose", ["dose", "--protocol", "nct04762485", "--weight", "52", "--height", "160", "--age", "17", "--sex", "F",
              "--creatinine", "1", "furlongs"], 2, "furlongs"),
    ("dose", ["dose", "--protocol", "nct04762485", "--weight", "52", "--height", "160", "--format", "xml"], 2,
     "table or csv"),
    ("eligibility", ["eligibility", "nobody", "--protocol", "nct04762485", "--study-dir", "{d}/seed"], 2,
     "no subject 'nobody'"),
    ("eligibility", ["eligibility", "X", "--protocol", "nct04762485", "--store", "{d}/none.duckdb"], 2, "no store"),
    ("delete", ["delete", "X", "--store", "{d}/none.duckdb", "--yes"], 2, "no store at"),
    ("delete", ["delete", "X", "--store", "{d}/notes.txt", "--yes"], 2, "not a cartlab store"),
    ("deviations", ["deviations", "X"], 2, "Missing option '--protocol'"),
    ("deviations", ["deviations", "--protocol", "nct04762485"], 2, "give a SUBJECT"),
    ("demo", ["demo", "--out", "{d}/notes.txt"], 2, "a file"),
    ("simulate", ["simulate", "--n", "5", "--out", "{d}/notes.txt"], 2, "a file, not a folder"),
    ("simulate", ["simulate", "--protocol", "no_such_protocol", "--n", "5", "--out", "{d}/sim"], 2,
     "no_such_protocol"),
    ("simulate", ["simulate", "--n", "5", "--dose-levels", "abc", "--out", "{d}/sim"], 2, "expected numbers"),
    ("simulate", ["simulate", "--n", "0", "--out", "{d}/sim"], 2, "--n must be at least 1"),
    ("twin", ["twin", "fit", "{d}/missing", "--subject", "X", "--out", "{d}/tw"], 2, "no such file or folder"),
    ("twin", ["twin", "fit", "{d}/seed", "--subject", "nobody", "--out", "{d}/tw"], 2, "'nobody' is not in the study"),
    ("twin", ["twin", "forecast", "{d}/seed", "--subject", "CD7-AML-001", "--from-day", "abc", "--out", "{d}/tw"], 2,
     "--from-day"),
]


@pytest.mark.parametrize("cmd,args,code,message", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_broken_input_gives_one_message_and_no_traceback(bad, cmd, args, code, message):
    runner = CliRunner()
    res = runner.invoke(app, [a.format(d=bad) for a in args], env={"COLUMNS": "200", "CARTLAB_DEBUG": "", "CARTLAB_TOKEN": ""})
    text = res.output + (res.stderr if res.stderr_bytes is not None else "")
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in text
    assert res.exit_code == code, text
    assert message in " ".join(text.split()), text


def test_every_command_is_covered():
    covered = {c[0] for c in CASES}
    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    commands |= {g.name for g in app.registered_groups}  # command groups (twin fit|forecast)
    assert commands - covered == set(), commands - covered


def _run(*args, env=None):
    e = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "cartlab", *map(str, args)], capture_output=True, text=True, env=e)


def test_installed_command_prints_no_traceback_and_debug_shows_it(bad, monkeypatch):
    r = _run("analyze", bad / "invalid", "--out", bad / "a")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "not a valid sex" in r.stderr
    assert not (bad / "a").exists()  # nothing partial is written
    d = _run("--debug", "analyze", bad / "invalid", "--out", bad / "a")
    assert d.returncode != 0 and "Traceback" in d.stderr and "StudyValidationError" in d.stderr
    e = _run("analyze", bad / "invalid", "--out", bad / "a", env={"CARTLAB_DEBUG": "1"})
    assert "Traceback" in e.stderr


def test_an_unexpected_error_is_reported_as_a_bug(bad, monkeypatch):
    import cartlab.analyze as analyze

    def boom(*a, **k):
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr(analyze, "write_analysis", boom)
    res = CliRunner().invoke(app, ["analyze", str(bad / "seed"), "--out", str(bad / "b")])
    text = " ".join((res.output + res.stderr).split())
    assert res.exit_code == 1 and "Traceback" not in text
    assert "internal error: RuntimeError: something nobody expected" in text and "cartlab --debug COMMAND" in text


def test_a_file_system_error_names_the_path_not_a_bug(bad, tmp_path):
    """--out pointing at a file, or under one: the path and what is wrong (exit 2), not "a bug in
    cartlab"; the bug hint names where --debug goes (`cartlab --debug COMMAND`)."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "x"):
        e = run_here("analyze", bad / "seed", "--out", out)  # in this process (test_cli.run_here)
        text = " ".join(e.stderr.split())
        assert e.returncode == 2 and "Traceback" not in text and "bug in cartlab" not in text
        assert f"error: {out}:" in text


@pytest.mark.parametrize("debug", [False, True])
def test_a_cartlab_warning_is_printed_as_a_message(bad, monkeypatch, debug):
    """An engine's CartlabWarning (e.g. the twin's "SIR effective sample size ...") reaches the user as
    "  ! message" like the other warnings, not as Python's "file.py:123: CartlabWarning" with a source
    line; --debug keeps Python's format."""
    import warnings

    import cartlab.analyze as analyze
    from cartlab.errors import CartlabWarning

    real = analyze.write_analysis

    def warns(*a, **k):
        warnings.warn("a test warning from an engine", CartlabWarning, stacklevel=2)
        return real(*a, **k)

    monkeypatch.setattr(analyze, "write_analysis", warns)
    out = bad / f"w{int(debug)}"
    args = ["analyze", str(bad / "seed"), "--out", str(out)]
    if debug:  # Python's warning machinery shows it (here pytest's recorder stands in for stderr)
        with pytest.warns(CartlabWarning, match="a test warning from an engine"):
            res = CliRunner().invoke(app, ["--debug", *args])
        assert "! a test warning" not in res.output + res.stderr
    else:
        res = CliRunner().invoke(app, args)
        text = res.output + res.stderr
        assert "  ! a test warning from an engine" in text and "CartlabWarning" not in text
    assert res.exit_code == 0, res.output
    assert warnings.showwarning.__module__ == "warnings"  # restored after the command
