"""End-to-end through the `cartlab` command: the installed command in a subprocess, as a user runs it,
where the process itself is the point (--help, an exit code, nothing created); elsewhere the same command
line in this process (``run_here``: typer's CliRunner, the same exit code, stdout and stderr), which
saves the 3-5 s a Python subprocess spends importing."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

from cartlab.model import SUBJECT_SUMMARY_COLUMNS
from test_store import assert_snapshots_equal, snapshot

CARTLAB = [sys.executable, "-m", "cartlab"]


def run(*args, cwd=None, env=None):
    e = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([*CARTLAB, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=e)


def run_here(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    """``run`` in this process (typer's CliRunner): the same returncode, stdout and stderr. An exception
    the command did not turn into a message is written to stderr as a traceback, as the installed
    command would print it (so that "Traceback" / exit-code checks see it)."""
    import traceback

    from typer.testing import CliRunner

    from cartlab.cli import app

    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        res = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200", **(env or {})},
                                 prog_name="cartlab")
    finally:
        os.chdir(old)
    stderr = res.stderr
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        stderr += "".join(traceback.format_exception(res.exception))
    return subprocess.CompletedProcess(list(args), res.exit_code, res.stdout, stderr)


def test_help_on_every_command():
    out = run("--help")  # the installed command
    assert out.returncode == 0
    for cmd in ("import", "validate", "list", "show", "analyze", "report", "demo", "synthetic", "export", "explain",
                "ctcae", "nca", "stein", "protocols", "dose", "eligibility", "deviations"):
        assert cmd in out.stdout
        h = run_here(cmd, "--help")
        assert h.returncode == 0 and "Example" in h.stdout, cmd


def test_help_command_list_is_not_broken_mid_sentence():
    """The command list shows each docstring's first paragraph as flowing text: the docstring's own
    line breaks ("... and warn about\\n every file ...") are not kept (rich help would keep them)."""
    import typer

    from cartlab.cli import app

    group = typer.main.get_command(app)
    ctx = typer.Context(group)

    def walk(cmd):
        for name in getattr(cmd, "list_commands", lambda _c: [])(ctx):
            sub = cmd.get_command(ctx, name)
            yield name, sub
            yield from walk(sub)

    seen = 0
    for name, sub in walk(group):
        if hasattr(sub, "list_commands"):  # a command group (``twin``): its help is one line already
            continue
        seen += 1
        assert sub.short_help and "\n" not in sub.short_help, name
        assert sub.short_help == " ".join(sub.help.split("\n\n")[0].split()), name
    assert seen >= 20


def test_validate_ok_and_json(small_study):
    ok = run_here("validate", small_study)
    assert ok.returncode == 0 and "valid" in ok.stdout
    js = run_here("validate", small_study, "--json")
    assert js.returncode == 0 and json.loads(js.stdout) == []


def test_import_list_show(seed_copy, tmp_path):
    db = tmp_path / "c.duckdb"
    r = run_here("import", seed_copy, "--store", db)
    assert r.returncode == 0, r.stderr
    assert "imported" in r.stdout
    again = run_here("import", seed_copy, "--store", db)
    assert again.returncode == 0 and "unchanged" in again.stdout
    ls = run_here("list", "--store", db, "--subjects")
    assert ls.returncode == 0 and "seed_case" in ls.stdout and "CD7-AML-001" in ls.stdout
    show = run_here("show", "CD7-AML-001", "--store", db, "--from", "12", "--to", "16")
    assert show.returncode == 0, show.stderr
    assert "183,945" in show.stdout and "reconstructed" in show.stdout
    missing = run_here("show", "nobody", "--store", db)
    assert missing.returncode == 2 and "no subject" in missing.stderr


def test_store_via_environment(seed_copy, tmp_path):
    db = tmp_path / "env.duckdb"
    r = run_here("import", seed_copy, env={"CARTLAB_STORE": str(db)})
    assert r.returncode == 0 and db.exists()


BAD = {
    "wrong_unit": (
        "observations.csv",
        "subject_id,day,param,value,unit\nS1,1,NEUT,0.5,10^9/L\nS1,2,NEUT,0.4,mg/dL\n",
        "observations.csv, row 2 (line 3), column 'unit'",
    ),
    "missing_required_column": (
        "observations.csv",
        "subject_id,day,value,unit\nS1,1,0.5,10^9/L\n",
        "observations.csv, header (line 1), column 'param'",
    ),
    "text_in_numeric": (
        "observations.csv",
        "subject_id,day,param,value,unit\nS1,1,NEUT,0.5,10^9/L\nS1,2,NEUT,low,10^9/L\n",
        "observations.csv, row 2 (line 3), column 'value'",
    ),
    "duplicate_subject": (
        "subjects.csv",
        "subject_id,sex\nS1,F\nS2,M\nS2,M\n",
        "subjects.csv, rows 2, 3, column 'subject_id'",
    ),
    "unknown_subject": (
        "observations.csv",
        "subject_id,day,param,value,unit\nS1,1,NEUT,0.5,10^9/L\nS7,2,NEUT,0.4,10^9/L\n",
        "observations.csv, row 2 (line 3), column 'subject_id'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("command", ["import", "validate", "analyze"])
def test_bad_input_rejected_store_unchanged(case, command, tmp_path, small_study):
    fname, text, where = BAD[case]
    db = tmp_path / "store.duckdb"
    out_dir = tmp_path / "analysis"
    good = run_here("import", small_study, "--store", db, "--study-id", "kept")
    assert good.returncode == 0
    before = snapshot(db)
    bad = tmp_path / "bad"
    shutil.copytree(small_study, bad)
    if fname == "subjects.csv":
        (bad / "observations.csv").write_text("subject_id,day,param,value,unit\nS1,1,NEUT,0.5,10^9/L\n")
        for f in ("doses.csv", "interventions.csv", "events.csv"):
            (bad / f).unlink()
    (bad / fname).write_text(text)
    args = {"import": ("import", bad, "--store", db), "validate": ("validate", bad),
            "analyze": ("analyze", bad, "--out", out_dir)}[command]
    r = run_here(*args)
    assert r.returncode != 0
    assert where in r.stderr, r.stderr
    assert_snapshots_equal(before, snapshot(db))
    assert not out_dir.exists()


def test_bad_import_does_not_create_a_store(tmp_path, small_study):
    (small_study / "observations.csv").write_text("subject_id,day,param,value,unit\nS1,1,NEUT,x,10^9/L\n")
    db = tmp_path / "new.duckdb"
    r = run("import", small_study, "--store", db)  # the installed command: exit code 2, no store file
    assert r.returncode == 2 and not db.exists()


@pytest.fixture(scope="module")
def seed_analyzed(tmp_path_factory):
    """`cartlab analyze` of a copy of the seed case, run once for the tests that read its output (read only)."""
    from cartlab.datasets import seed_case_path

    base = tmp_path_factory.mktemp("seed_analyzed")
    seed = base / "seed_case"
    shutil.copytree(seed_case_path(), seed)
    out = base / "d"
    return run_here("analyze", seed, "--out", out), out


def test_analyze_seed_case_writes_all_spec_columns(seed_analyzed):
    r, out = seed_analyzed
    assert r.returncode == 0, r.stderr
    with open(out / "subject_summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0].keys())[: len(SUBJECT_SUMMARY_COLUMNS)] == SUBJECT_SUMMARY_COLUMNS
    assert [r["subject_id"] for r in rows] == ["CD7-AML-001"]
    meta = json.loads((out / "analysis.json").read_text())
    assert meta["study_id"] == "seed_case" and meta["inputs"]
    # every spec column is derived by an engine, with its citation; nothing was skipped
    derived = {c for e in meta["summary_columns"] for c in e["columns"]}
    assert derived >= set(SUBJECT_SUMMARY_COLUMNS) - {"subject_id"}
    assert all(e["citation"] for e in meta["summary_columns"])
    assert meta["skipped"] == [] and "pending_columns" not in meta
    assert {e["status"] for e in meta["engines"]} == {"ok"}


def test_report_command(seed_copy, tmp_path):
    r = run_here("report", seed_copy, "--out", tmp_path / "rep", "--subject", "CD7-AML-001")
    assert r.returncode == 0, r.stderr
    html = next((tmp_path / "rep").glob("*.html")).read_text()
    assert "reconstructed" in html and "183,945" in html


def test_report_subject_shows_only_its_own_problems(tmp_path):
    """`report --subject` analyses that subject: another subject's problem (a disease without response
    criteria, LBCL) is not listed; the same problem is listed when that subject is the one reported."""
    study = tmp_path / "s"
    assert run_here("synthetic", "--n", "3", "--seed", "11", "--out", study).returncode == 0
    path = study / "subjects.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    rows[2]["disease"] = "LBCL"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    other = run_here("report", study, "--out", tmp_path / "r1", "--subject", rows[0]["subject_id"], "--no-pdf")
    assert other.returncode == 0, other.stderr
    assert "LBCL" not in other.stderr
    own = run_here("report", study, "--out", tmp_path / "r2", "--subject", rows[2]["subject_id"], "--no-pdf")
    assert own.returncode == 0, own.stderr
    assert "'LBCL'" in own.stderr


def test_demo_end_to_end(tmp_path):
    r = run_here("demo", "--out", "out", cwd=tmp_path)  # the default store: ./cartlab.duckdb where the user is
    assert r.returncode == 0, r.stderr
    assert "report:" in r.stdout
    out = tmp_path / "out"
    assert (out / "analysis" / "subject_summary.csv").exists()
    assert (out / "report" / "index.html").exists()
    # the README's next commands work where the demo left the user (issue 14)
    assert (tmp_path / "cartlab.duckdb").exists()
    ls = run_here("list", "--subjects", cwd=tmp_path)
    assert ls.returncode == 0 and "CD7-AML-001" in ls.stdout, ls.stderr
    ex = run_here("explain", "CD7-AML-001", "--what", "crs", cwd=tmp_path)
    assert ex.returncode == 0 and "ASTCT CRS grade 3" in ex.stdout, ex.stderr
    # the shipped NCT04762485 protocol: dose plan, eligibility, deviations and the dosing sheet
    for name in ("dose_plan", "eligibility", "protocol_deviations"):
        assert (out / "analysis" / f"{name}.csv").exists(), name
    sheet = (out / "report" / "dosing_sheet.html").read_text(encoding="utf-8")
    assert "reconstructed (synthetic)" in sheet and "45.6" in sheet
    assert "54 umol/L" in sheet and "fludarabine_label.normal" in sheet  # the seed's screening creatinine
    # the seed's Stein fit, its reconstructed samples counted
    meta = json.loads((out / "stein" / "stein_fit.json").read_text())
    assert meta["n_observations"] == 12 and meta["n_not_measured"] == 10 and meta["n_converged"] == 1
    assert "6. Stein 2019 kinetic fit" in r.stdout
    # the seed's digital twin is a section of the subject page, labelled simulated (issue 16)
    page = next((out / "report").glob("subject_*.html")).read_text(encoding="utf-8")
    assert '<h2 id="twin">Digital twin (simulated)</h2>' in page and "SIMULATED, not measured" in page
    assert "approximation is poor" not in page  # the band comes from MCMC draws, not a degenerate SIR
    anchors = (out / "twin" / "seed_twin_anchors.csv").read_text(encoding="utf-8")
    assert "183,945, day 14" in anchors and anchors.count("simulated") >= 7
    # running it twice works (idempotent import into the same store)
    again = run_here("demo", "--out", "out", cwd=tmp_path)
    assert again.returncode == 0, again.stderr


def test_synthetic_then_validate_and_import(tmp_path):
    folder = tmp_path / "coh"
    r = run_here("synthetic", folder, "--n", "12", "--seed", "3")
    assert r.returncode == 0, r.stderr
    assert run_here("validate", folder).returncode == 0
    imp = run_here("import", folder, "--store", tmp_path / "c.duckdb")
    assert imp.returncode == 0 and "12 subjects" in imp.stdout.replace(",", "")


def test_import_export_round_trip(small_study, tmp_path):
    from cartlab.io import read_study
    from test_roundtrip import assert_same

    db = tmp_path / "r.duckdb"
    assert run_here("import", small_study, "--store", db).returncode == 0
    r = run_here("export", "small", tmp_path / "exported", "--store", db)
    assert r.returncode == 0, r.stderr
    assert_same(read_study(small_study), read_study(tmp_path / "exported", study_id="small"))
    bad = run_here("export", "nope", tmp_path / "x", "--store", db)
    assert bad.returncode == 2 and "no study" in bad.stderr


def test_explain_crs_and_icans(seed_copy, tmp_path):
    db = tmp_path / "x.duckdb"
    assert run_here("import", seed_copy, "--store", db).returncode == 0
    r = run_here("explain", "CD7-AML-001", "--what", "crs", "--store", db)
    assert r.returncode == 0, r.stderr
    assert "ASTCT CRS grade 3" in r.stdout and "crs.hypotension.one_vasopressor" in r.stdout
    assert "interventions.csv:2" in r.stdout
    i = run_here("explain", "CD7-AML-001", "--what", "icans", "--store", db, "--all-days")
    assert i.returncode == 0 and "ICANS grade 0" in i.stdout and "ICE 10" in i.stdout
    bad = run_here("explain", "CD7-AML-001", "--what", "nonsense", "--store", db)
    assert bad.returncode == 2
    # a table has a grade column only where days are graded: ICAHT grades a window, not a day
    header = lambda out: next(line for line in out.splitlines() if "┃ day" in line)  # noqa: E731
    assert "grade" in header(r.stdout)
    assert "row 1 is the first data row (line 2 of a CSV file" in " ".join(r.stdout.split())
    ic = run_here("explain", "CD7-AML-001", "--what", "icaht", "--store", db, "--all-days")
    assert ic.returncode == 0 and "grade" not in header(ic.stdout) and "icaht.early.day" in ic.stdout


def test_analyze_fills_grading_columns(seed_analyzed):
    r, out = seed_analyzed
    assert r.returncode == 0
    with open(out / "subject_summary.csv") as fh:
        row = next(csv.DictReader(fh))
    assert (row["crs_grade_astct"], row["crs_onset_day"], row["crs_resolution_day"], row["icans_grade_astct"]) == (
        "3", "3.0", "14.0", "0")
