"""CLI input checks of the s28 CLI audit (findings 2, 3, 4, 6, 9, 13, 14e/h): ctcae and nca refuse bad
cells, units and outputs with one message naming file, row and column (exit 2, README: "exit code 2 for
bad input or usage"), and write nothing; the study reader gives one error per bad cell."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cartlab.cli import app

runner = CliRunner()
HEADER = "term,direction,aval,unit\n"
GOOD = HEADER + "ANC,L,0.4,10^9/L\n"


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _text(res) -> str:
    return " ".join((res.output + (res.stderr if res.stderr_bytes is not None else "")).split())


@pytest.mark.parametrize("row, col, needle", [
    ("ANC,L,abc,10^9/L", "aval", "'abc' is not a number"),
    ("ANC,L,NaN,10^9/L", "aval", "'NaN' is not a number"),
    ("ANC,L,inf,10^9/L", "aval", "'inf' is not a number"),
    ("ANC,L,-1,10^9/L", "aval", "negative"),
    ("Neutrophil count decreased,L,-1,10^9/L", "aval", "negative"),
    ("ANC,X,0.4,10^9/L", "direction", "'X' is not a direction"),
    ("PLT,L,20,zorks", "unit", "unknown unit 'zorks'"),
])
def test_ctcae_bad_cell_names_file_row_column(tmp_path, row, col, needle):
    src = tmp_path / "labs.csv"
    src.write_text(GOOD + row + "\n")
    out = tmp_path / "o.csv"
    res = _run("ctcae", src, "--out", out)
    text = _text(res)
    assert res.exit_code == 2, text
    assert f"labs.csv: row 2 (line 3), column '{col}'" in text and needle in text
    assert "Traceback" not in text and not out.exists()


def test_ctcae_direction_error_lists_accepted(tmp_path):
    src = tmp_path / "labs.csv"
    src.write_text(HEADER + "ANC,X,0.4,10^9/L\n")
    text = _text(_run("ctcae", src, "--out", tmp_path / "o.csv"))
    for spelling in ("L", "H", "low", "high"):
        assert spelling in text.split("accepted", 1)[1]


def test_ctcae_semicolon_file_one_message(tmp_path):
    src = tmp_path / "semi.csv"
    src.write_text("term;direction;aval;unit\nANC;L;0,4;10^9/L\n")
    res = _run("ctcae", src, "--out", tmp_path / "o.csv")
    text = _text(res)
    assert res.exit_code == 2 and "semi.csv" in text and "semicolon-separated" in text
    assert "truncate_ragged_lines" not in text and "--csv-dialect european" in text
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("cmd", ["ctcae", "nca"])
def test_out_equal_to_input_or_existing_file_needs_force(tmp_path, cmd):
    if cmd == "ctcae":
        src = tmp_path / "in.csv"
        src.write_text(GOOD)
        extra: list = []
    else:
        src = tmp_path / "in.csv"
        src.write_text("id,t,c\nA,0,0\nA,1,10\nA,2,20\nA,4,10\nA,8,5\nA,12,2.5\n")
        extra = ["--subject", "id", "--time", "t", "--conc", "c"]
    before = src.read_text()
    res = _run(cmd, src, *extra, "--out", src)
    assert res.exit_code == 2 and "pass --force" in _text(res) and src.read_text() == before
    other = tmp_path / "notes.csv"
    other.write_text("mine\n")
    res = _run(cmd, src, *extra, "--out", other)
    assert res.exit_code == 2 and "pass --force" in _text(res) and other.read_text() == "mine\n"
    res = _run(cmd, src, *extra, "--out", other, "--force")
    assert res.exit_code == 0, _text(res)
    assert other.read_text() != "mine\n"


@pytest.mark.parametrize("cmd", ["ctcae", "nca"])
def test_unwritable_out_names_the_users_path(tmp_path, cmd):
    src = tmp_path / "in.csv"
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    target = blocker / "sub" / "o.csv"   # a file among the parents: cannot be written
    if cmd == "ctcae":
        src.write_text(GOOD)
        extra: list = []
    else:
        src.write_text("id,t,c\nA,0,0\nA,1,10\nA,2,20\n")
        extra = ["--subject", "id", "--time", "t", "--conc", "c"]
    res = _run(cmd, src, *extra, "--out", target)
    assert res.exit_code == 2 and "internal error" not in _text(res) and "afile" in _text(res)
    if Path("/proc").is_dir():
        res = _run(cmd, src, *extra, "--out", "/proc/x.csv")
        text = _text(res)
        assert res.exit_code == 2, text   # as synthetic/analyze --out /proc/x
        assert "/proc/x.csv" in text and ".tmp" not in text and "internal error" not in text


def test_nca_unknown_conc_unit_refused(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("id,t,c\nA,0,0\nA,1,10\nA,2,20\n")
    out = tmp_path / "o.csv"
    res = _run("nca", src, "--subject", "id", "--time", "t", "--conc", "c", "--out", out, "--conc-unit", "zorks")
    assert res.exit_code == 2 and "zorks" in _text(res) and "unknown unit" in _text(res)
    assert not out.exists() and not (tmp_path / "o_units.csv").exists()


def test_ctcae_set_and_ctcae_version(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text(GOOD)
    res = _run("ctcae", src, "--out", tmp_path / "a.csv", "--set", "hypokalemia_symptomatic=false",
               "--ctcae-version", "5.0")
    assert res.exit_code == 0, _text(res)
    res = _run("ctcae", src, "--out", tmp_path / "b.csv", "--set", "crs.fever_threshold_c=38")
    assert res.exit_code == 2
    res = _run("ctcae", src, "--out", tmp_path / "c.csv", "--version", "5.0")   # the old spelling still works
    assert res.exit_code == 0, _text(res)
    res = _run("ctcae", "--version")   # no clash with the program's --version
    assert res.exit_code == 0 and "cartlab" in res.output


def test_validate_one_error_per_bad_cell(tmp_path):
    folder = tmp_path / "study"
    assert _run("synthetic", "--n", "2", "--seed", "5", "--out", folder).exit_code == 0
    obs = folder / "observations.csv"
    lines = obs.read_text().splitlines()
    head = lines[0].split(",")
    crp = next(i for i, ln in enumerate(lines) if ",CRP," in ln)
    cells = lines[crp].split(",")
    cells[head.index("value")] = "NaN"
    lines[crp] = ",".join(cells)
    obs.write_text("\n".join(lines) + "\n")
    res = _run("validate", folder, "--json")
    assert res.exit_code == 1
    import json

    issues = json.loads(res.output)
    assert [i["message"].split(",")[0] for i in issues if i["severity"] == "error"] == ["value must be a number"]


def test_malformed_infusion_date_only_its_own_error(tmp_path):
    import csv
    import json

    folder = tmp_path / "study"
    assert _run("synthetic", "--n", "2", "--seed", "5", "--out", folder).exit_code == 0
    subj = folder / "subjects.csv"
    rows = list(csv.DictReader(subj.open()))
    rows[0]["infusion_date"] = "05/01/2021"
    with subj.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    obs = folder / "observations.csv"
    orows = list(csv.DictReader(obs.open()))
    if "datetime" not in orows[0]:
        pytest.skip("synthetic observations have no datetime column")
    i = next(k for k, r in enumerate(orows) if r["subject_id"] == rows[0]["subject_id"])
    orows[i]["day"], orows[i]["datetime"] = "", "2021-05-03T08:00"
    with obs.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(orows[0]))
        w.writeheader()
        w.writerows(orows)
    res = _run("validate", folder, "--json")
    errors = [x for x in json.loads(res.output) if x["severity"] == "error"]
    assert len(errors) == 1 and errors[0]["column"] == "infusion_date", errors


def test_twin_forecast_from_day_beyond_last_day(tmp_path):
    from cartlab.datasets import seed_case_path

    seed = seed_case_path()
    res = _run("twin", "forecast", seed, "--subject", "CD7-AML-001", "--from-day", "1000", "--out",
               tmp_path / "f", "--draws", "10")
    text = _text(res)
    assert res.exit_code == 2 and "1000" in text and "day 60" in text
    assert not (tmp_path / "f").exists()


def test_twin_fit_out_checked_before_fitting(tmp_path):
    afile = tmp_path / "afile.txt"
    afile.write_text("mine")
    res = _run("twin", "fit", tmp_path / "nonexistent_study", "--subject", "X", "--out", afile)
    assert res.exit_code == 2 and "afile.txt" in _text(res) and "nonexistent_study" not in _text(res)
