"""Session 48 (session 47 left items): messages and options a new user meets, end to end through the CLI.
Expected values are derived by hand in the comments."""

from __future__ import annotations

import json
from pathlib import Path

from test_newuser_s47 import run


def test_dose_for_a_subject_without_study_or_store_says_how_to_give_it(tmp_path, monkeypatch):
    # no --study, no store in the working folder: the message names the subject and the two ways to read it
    # (old: "give --weight and --height ..., or --subject with --study/--store (there is no store at ...)")
    monkeypatch.chdir(tmp_path)
    text = run("dose", "P1", "--protocol", "nct04762485", code=2)
    assert "subject 'P1': its weight, height and creatinine are read from a study" in text, text
    assert "--study DIR" in text and "--store FILE (there is no store at cartlab.duckdb" in text, text


def test_nca_on_a_table_of_several_analytes_names_the_analyte_column(tmp_path):
    # a study's observations.csv: WBC and CARCOPY share day 3, so the time does not increase (an error);
    # the message now says why (several analytes in column 'param') and what to do
    f = tmp_path / "observations.csv"
    f.write_text("subject_id,day,param,value,unit\nP1,3,WBC,2.1,10^9/L\nP1,3,CARCOPY,1500,copies/ug\n"
                 "P1,7,CARCOPY,90000,copies/ug\n")
    text = run("nca", f, "--subject-col", "subject_id", "--time-col", "day", "--conc-col", "value",
               "--out", tmp_path / "n.csv", code=2)
    assert "row 2 (line 3), column 'day': time 3 is not greater than the previous time 3" in text, text
    assert "several analytes in column 'param': WBC, CARCOPY" in text and "keep one analyte's rows" in text, text
    assert not (tmp_path / "n.csv").exists()


def test_nca_one_analyte_repeated_time_has_no_analyte_hint(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("ID,TIME,DV\nA,1,10\nA,1,12\n")
    text = run("nca", f, "--subject-col", "ID", "--time-col", "TIME", "--conc-col", "DV", "--out", tmp_path / "n.csv",
               code=2)
    assert "monotonically increasing" in text and "analytes" not in text, text


def _eu_table(path: Path, with_doses: bool) -> None:
    # two subjects, semicolons and decimal commas; the doses table too (subject;time;dose)
    rows = ["ID;DAY;DV"]
    for sid in ("A", "B"):
        rows += [f"{sid};{t};{c}" for t, c in [(0, "10"), (3, "5000,5"), (7, "80000"), (10, "150000"),
                                               (14, "60000"), (21, "9000"), (28, "3000,25"), (60, "200")]]
    path.write_text("\n".join(rows) + "\n")
    if with_doses:
        (path.parent / "doses.csv").write_text("ID;DAY;dose\nA;0;0,3\nA;1;0,7\nB;0;1\n")


def test_stein_reads_a_plain_table_in_the_european_dialect(tmp_path):
    # old: --csv-dialect reached only a study folder; a european table was refused as "looks semicolon-separated"
    # even with --csv-dialect european. The value 5000,5 is read as 5000.5 (stein_observations.csv).
    f = tmp_path / "eu.csv"
    _eu_table(f, with_doses=True)
    run("stein", f, "--subject-col", "ID", "--time-col", "DAY", "--conc-col", "DV", "--doses", tmp_path / "doses.csv",
        "--out", tmp_path / "st", "--csv-dialect", "european", code=0)
    obs = (tmp_path / "st" / "stein_observations.csv").read_text()
    assert "5000.5" in obs and "3000.25" in obs, obs[:500]
    meta = json.loads((tmp_path / "st" / "stein_fit.json").read_text())
    assert len(meta["inputs"]) == 2  # the table and the doses table


def test_stein_european_table_read_as_standard_is_one_error(tmp_path):
    f = tmp_path / "eu.csv"
    _eu_table(f, with_doses=False)
    text = run("stein", f, "--subject-col", "ID", "--time-col", "DAY", "--conc-col", "DV", "--out", tmp_path / "st",
               code=2)
    assert "looks semicolon-separated with decimal commas" in text and "--csv-dialect european" in text, text
    assert not (tmp_path / "st").exists()
