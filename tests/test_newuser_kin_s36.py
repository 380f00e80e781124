"""Review 36 (a new user's trial of the CLI), kinetics: B4, C1, C6, C10.

Expected texts are what the review asked for (its REPORT.md), not copied from the program's output;
row numbers are found in the input files by the test itself.
"""

from __future__ import annotations

import csv
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cartlab.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "kinetics" / "README.md"
EXAMPLES = ROOT / "docs" / "kinetics" / "examples"


def run(*args, code: int | None = 0, cwd: Path | None = None) -> str:
    env = {"COLUMNS": "250", "CARTLAB_DEBUG": ""}
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        res = CliRunner().invoke(app, [str(a) for a in args], env=env)
    finally:
        os.chdir(old)
    text = res.output
    assert "Traceback" not in text, text
    if code is not None:
        assert res.exit_code == code, text
    return " ".join(text.split())


# ------------------------------------------------------------------------------------------------
# B4: a missing dose covariate names its cause (weight_kg for a dose in cells), the file and row


def _rewrite(path: Path, change) -> int | None:
    """Rewrite a CSV row by row with ``change(row) -> row``; returns the 1-based data row changed."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    fields = list(rows[0])
    hit = None
    for i, r in enumerate(rows, start=1):
        if change(r) and hit is None:
            hit = i
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return hit


def test_b4_missing_weight_for_a_cell_dose_is_named(tmp_path):
    study = tmp_path / "syn"
    run("synthetic", "--out", study, "--n", "4", "--seed", "36")

    def cells(r):  # SYN-0003's CAR-T dose given as absolute cells instead of cells/kg
        if r["subject_id"] == "SYN-0003" and r["agent"] == "CAR-T":
            r["dose"], r["unit"] = "19800000", "cells"
            return True
        return False

    row = _rewrite(study / "doses.csv", cells)
    assert row is not None
    _rewrite(study / "subjects.csv", lambda r: r["subject_id"] == "SYN-0003" and r.update(weight_kg="") is None)
    out = tmp_path / "stein"
    text = run("stein", study, "--population", "--covariate", "cmax=log_dose", "--out", out,
               "--n-burn", "2", "--n-smooth", "2", "--n-post", "2", code=2)
    assert "SYN-0003" in text and "log_dose" in text
    # the cause: the dose is in cells and the weight is empty (file and column), the doses.csv row
    # session 39: a WEIGHT observation up to day 0 would do too, so the message names both places
    assert "no weight_kg (blank in subjects.csv and no WEIGHT observation up to day 0" in " ".join(text.split()), text
    assert f"doses.csv row {row}" in text and "cells" in text, text
    # how to proceed: give the weight, or drop the covariate
    assert "give weight_kg" in text and "drop --covariate cmax=log_dose" in text, text
    assert not out.exists()


# ------------------------------------------------------------------------------------------------
# C6: stein names the file that lists the dropped rows


def test_c6_stein_points_to_the_dropped_rows_file(tmp_path):
    table = tmp_path / "car.csv"
    # the table's times count from the first infusion: the day -1 sample is before it, so dropped
    shutil.copy(EXAMPLES / "car.csv", table)
    with open(table, "a", encoding="utf-8") as fh:
        fh.write("SYN-0004,-1,<50,50\nSYN-0004,1,80,50\nSYN-0004,4,900,50\nSYN-0004,7,5000,50\n"
                 "SYN-0004,14,2000,50\nSYN-0004,28,300,50\n")
    out = tmp_path / "stein"
    text = run("stein", table, "--subject-col", "ID", "--time-col", "DAY", "--conc-col", "DV", "--lloq-col", "LLOQ",
               "--out", out)
    dropped = out / "stein_dropped.csv"
    assert dropped.is_file()
    n = sum(1 for _ in open(dropped, encoding="utf-8")) - 1
    assert n >= 1
    assert f"{n} dropped" in text and str(dropped) in text, text


# ------------------------------------------------------------------------------------------------
# C1: the nca block of docs/kinetics/README.md runs as pasted, in order, in a fresh folder


def _nca_block() -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    block = next(b for b in blocks if "cartlab nca" in b)
    return [shlex.split(line) for line in block.replace("\\\n", " ").splitlines() if line.strip()
            and not line.lstrip().startswith("#")]


def test_c1_nca_block_runs_as_pasted(tmp_path):
    commands = _nca_block()
    assert sum(c[0] == "cartlab" for c in commands) >= 3
    outs = []
    for cmd in commands:
        if cmd[0] == "cp":  # cp "$EX/theoph.csv" "$EX/car.csv" .
            *srcs, dest = [a.replace("$EX", str(EXAMPLES)) for a in cmd[1:]]
            assert dest == "."
            for s in srcs:
                shutil.copy(s, tmp_path)
            continue
        assert cmd[0] == "cartlab", cmd
        run(*cmd[1:], cwd=tmp_path)
        outs.append(cmd[cmd.index("--out") + 1])
    assert len(set(outs)) == len(outs)  # no command writes over an earlier one
    for o in outs:
        assert (tmp_path / o).is_file(), o
    # the Units bullet's file exists where it says
    assert (tmp_path / "nca_mgL_units.csv").is_file()
    # theoph.csv is R's Theoph data: 12 subjects, 132 rows (docs/kinetics/examples/README.md)
    with open(tmp_path / "theoph.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 132 and len({r["Subject"] for r in rows}) == 12


# ------------------------------------------------------------------------------------------------
# C10: a row with too many fields: one clear message, expected vs found


@pytest.mark.parametrize("line, found", [("SYN-0001,4,0,298.0", 4), ("SYN-0001,4", 2)])
def test_c10_ragged_row_message(tmp_path, line, found):
    table = tmp_path / "conc.csv"
    table.write_text(f"ID,TIME,CONC\nSYN-0001,0,<50\nSYN-0001,1,53.8\n{line}\nSYN-0001,7,2130\n", encoding="utf-8")
    text = run("nca", table, "--subject-col", "ID", "--time-col", "TIME", "--conc-col", "CONC",
               "--out", tmp_path / "nca.csv", code=2)
    assert "conc.csv" in text and "row 3 (line 4)" in text, text
    assert "expected 3 field(s)" in text and f"found {found}" in text, text
    assert "must have the same length" not in text
    assert not (tmp_path / "nca.csv").exists()
