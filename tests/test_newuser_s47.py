"""New-user review 47 (/work/notes/review47_newuser/REPORT.md): message and CLI fixes, end to end through
the CLI. Expected values are derived by hand in the comments."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cartlab.cli import app

DOSE = ["dose", "--protocol", "nct04762485", "--weight", "52kg", "--height", "160cm", "--age", "17"]


def run(*args, code: int | None = 0, cwd: Path | None = None, env: dict | None = None) -> str:
    res = CliRunner().invoke(app, [str(a) for a in args],
                             env={"COLUMNS": "250", "CARTLAB_DEBUG": "", "CARTLAB_CSV_DIALECT": None, **(env or {})})
    text = res.output
    assert "Traceback" not in text, text
    if code is not None:
        assert res.exit_code == code, text
    return " ".join(text.split())


def _rows(folder: Path, name: str, *lines: str) -> None:
    with open(folder / name, "a", encoding="utf-8") as fh:
        fh.write("".join(line + "\n" for line in lines))


# ------------------------------------------------------------------------------------------------
# F1: --creatinine VALUE UNIT with the unit left out; one token 54umol/L


@pytest.mark.parametrize("tail, got", [
    (["--creatinine", "54", "--csv"], "'54 --csv'"),                  # the next flag taken as the unit
    (["--creatinine", "54", "--sex", "F"], "'54 --sex'"),             # old: "'F' is a number"-style subject error
    (["--sex", "F", "--creatinine", "54", "17"], "'54 17'"),          # a number as the unit
])
def test_creatinine_without_its_unit_is_one_message(tail, got):
    text = run(*DOSE, *tail, code=2)
    # old: "creatinine unit '--csv': unit '--csv' (read as 'centisverdrup') ..." (pint) or a subject-id error
    assert ("--creatinine needs a value and its unit, e.g. --creatinine 54 umol/L (or mg/dL): got " + got) in text, text
    assert "centisverdrup" not in text and "subject id" not in text


def test_creatinine_as_one_token_is_the_two_token_form():
    two = run(*DOSE, "--sex", "F", "--creatinine", "54", "umol/L", "--csv")
    # old: "Invalid value for '--creatinine': ... unable to parse string as a number" (exit 2)
    for one in (["--creatinine", "54umol/L"], ["--creatinine", "54 umol/L"], ["--creatinine=54umol/L"]):
        assert run(*DOSE, "--sex", "F", *one, "--csv") == two
    # 54 umol/L = 54 / 88.4 = 0.610859728507 mg/dL; bedside Schwartz 0.413 x 160 / 0.6108597 = 108.175407
    # mL/min/1.73 m2: the renal inputs are read, not dropped
    assert ",0.610859728507," in two and ",108.175407407," in two, two


# ------------------------------------------------------------------------------------------------
# F2 and F3: creatinine in umol/L labelled mg/dL


def test_creatinine_above_20_mg_dl_is_warned_with_file_row_column(seed_copy):
    # row 1299 (the seed has 1,298 rows): 54 mg/dl = 54 x 88.4 = 4773.6 umol/L, inside the plausible
    # [0, 5000] (old: silent) and above the new suspicious bound 1768 umol/L (20 mg/dL, dose's limit)
    # row 1300: 1.0 mg/dl = 88.4 umol/L, not warned
    _rows(seed_copy, "observations.csv", "CD7-AML-001,-5,CREAT,,54,,mg/dl,,,,,reconstructed,",
          "CD7-AML-001,-4,CREAT,,1.0,,mg/dl,,,,,reconstructed,")
    text = run("validate", seed_copy)
    assert ("! observations.csv, row 1299 (line 1300), column 'value': CREAT value 54 mg/dl (= 4773.6 umol/L) is "
            "above 1768 umol/L: is the unit right?") in text, text
    assert "umol/L labelled mg/dL" in text and "row 1300 " not in text


def test_creatinine_uln_message_has_its_unit_and_converted_value(seed_copy):
    # uln 81 mg/dl = 81 x 88.4 = 7160.4 umol/L > 5000 (the plausible high bound): an error; old message
    # "uln 81.0 of CREAT is outside the plausible range of its values [0.0, 5000.0] (umol/L)"
    _rows(seed_copy, "observations.csv", "CD7-AML-001,-5,CREAT,,0.5,,mg/dl,0.4,81,,,reconstructed,")
    text = run("validate", seed_copy, code=1)
    assert ("observations.csv, row 1299 (line 1300), column 'uln': uln 81 mg/dl of CREAT (= 7160.4 umol/L) is outside "
            "the plausible range of its values [0, 5000] umol/L: is the unit right?") in text, text


# ------------------------------------------------------------------------------------------------
# F6: a study folder's README / LICENSE / *.md is documentation, not an input warning


def test_readme_in_a_study_folder_is_not_a_warning(seed_copy, tmp_path):
    assert (seed_copy / "README.md").is_file()  # the shipped seed case has one
    (seed_copy / "LICENSE").write_text("CC-BY 4.0\n", encoding="utf-8")
    (seed_copy / "notes.md").write_text("my notes\n", encoding="utf-8")
    (seed_copy / "notes.txt").write_text("not a table\n", encoding="utf-8")  # still a warning
    text = run("validate", seed_copy)
    assert "README.md" not in text and "LICENSE" not in text and "notes.md" not in text, text
    assert "notes.txt, file: not read" in text
    store = tmp_path / "s.duckdb"
    run("import", seed_copy, "--store", store)
    # one recorded warning (notes.txt); old: 4 (README.md, LICENSE, notes.md, notes.txt)
    shown = run("show", "CD7-AML-001", "--study", "seed_case", "--store", store, "--to", "0", cwd=tmp_path)
    assert "1 input warning recorded when seed_case was imported" in shown, shown


# ------------------------------------------------------------------------------------------------
# F8: a standard file read as european: drop the flag, not re-export


def test_standard_file_read_as_european_says_drop_the_flag(seed_copy):
    text = run("validate", seed_copy, "--csv-dialect", "european", code=1)
    # old: "... re-export it as comma-separated with decimal points, or pass --csv-dialect standard"
    assert "drop --csv-dialect european (or pass --csv-dialect standard)" in text, text
    assert "re-export" not in text


# ------------------------------------------------------------------------------------------------
# F5: nca and ctcae take --csv-dialect


def test_nca_reads_a_european_table(tmp_path):
    src = tmp_path / "eu.csv"
    src.write_text("ID;DAY;DV\nA;0;0\nA;1;10,5\nA;7;100\nA;14;50\n", encoding="utf-8-sig")  # Excel: BOM
    out = tmp_path / "o.csv"
    text = run("nca", src, "--subject-col", "ID", "--time-col", "DAY", "--conc-col", "DV", "--out", out, code=2)
    # old: "row 2 (line 3): expected 1 field(s) as in the header (ID;DAY;DV), found 2 ..."
    assert ("looks semicolon-separated with decimal commas (e.g. row 2, column 'DV': '10,5'), but is read as "
            "standard") in text and "--csv-dialect european" in text, text
    assert not out.exists()
    run("nca", src, "--subject-col", "ID", "--time-col", "DAY", "--conc-col", "DV", "--out", out,
        "--csv-dialect", "european")
    import polars as pl

    r = pl.read_csv(out).row(0, named=True)
    # by hand, lin-up/log-down: 0-1 (0 + 10.5)/2 = 5.25; 1-7 (10.5 + 100)/2 x 6 = 331.5;
    # 7-14 down, log: (100 - 50) x 7 / ln 2 = 504.943; auclast 841.693
    assert (r["ID"], r["cmax"], r["tmax"], r["tlast"]) == ("A", 100.0, 7.0, 14.0)
    assert r["auclast"] == pytest.approx(5.25 + 331.5 + 350 / 0.6931471805599453, rel=1e-9)


def test_nca_decimal_point_in_a_european_table_is_named(tmp_path):
    src = tmp_path / "eu.csv"
    src.write_text("ID;DAY;DV\nA;0;0\nA;1;10,5\nA;7;100.5\n", encoding="utf-8")
    text = run("nca", src, "--subject-col", "ID", "--time-col", "DAY", "--conc-col", "DV", "--out",
               tmp_path / "o.csv", "--csv-dialect", "european", code=2)
    assert "row 3 (line 4), column 'DV': '100.5' has a decimal point, but the european dialect" in text, text


def test_ctcae_reads_a_european_table(tmp_path):
    src = tmp_path / "eu.csv"
    src.write_text("term;direction;aval;anrlo;anrhi;unit\nPLAT;L;40,5;150;400;10^9/L\n", encoding="utf-8-sig")
    out = tmp_path / "g.csv"
    text = run("ctcae", src, "--out", out, code=2)
    assert "looks semicolon-separated with decimal commas" in text and "--csv-dialect european" in text, text
    run("ctcae", src, "--out", out, "--csv-dialect", "european")
    import polars as pl

    r = pl.read_csv(out, infer_schema=False).row(0, named=True)
    # platelets 40.5 x10^9/L < 50: CTCAE v5 platelet count decreased grade 3 (25-<50); old: "No such
    # option: --csv-dialect"
    assert (r["aval"], r["grade"]) == ("40.5", "3"), r


# ------------------------------------------------------------------------------------------------
# F10: smaller message gaps


def test_dose_sex_female_is_f():
    base = [*DOSE, "--creatinine", "54", "umol/L", "--csv"]
    # old: "sex must be F or M (got 'FEMALE')"
    assert run(*base, "--sex", "female") == run(*base, "--sex", "F")
    assert run(*base, "--sex", "Male") == run(*base, "--sex", "M")


def test_set_engine_any_case_and_spaces(small_study, tmp_path):
    from cartlab.cli.base import analysis_options

    # old: "unknown engine 'ICAHT' in the options"
    assert analysis_options(None, ["ICAHT.duration=longest_run"]).icaht.duration == "longest_run"
    # old: "Got unexpected extra argument(s) (longest_run)"
    text = run("analyze", small_study, "--out", tmp_path / "r", "--set", "icaht.duration", "=", "longest_run", code=2)
    assert ("--set icaht.duration = longest_run: write --set ENGINE.OPTION=VALUE without spaces, e.g. "
            "--set icaht.duration=longest_run") in text, text
    assert not (tmp_path / "r").exists()


def test_unknown_param_suggests_and_day_date_says_where(seed_copy):
    _rows(seed_copy, "observations.csv", "CD7-AML-001,-5,CD7TT,,300,,cells/uL,,,,,reconstructed,",
          "CD7-AML-001,2021-06-01,TEMP,,37,,C,,,,,reconstructed,")
    text = run("validate", seed_copy, code=1)
    # old: "unknown param 'CD7TT': not in the parameter dictionary" (nothing more)
    assert ("unknown param 'CD7TT': not in the parameter dictionary (did you mean CD7T?; the codes are in "
            "src/cartlab/io/params_v1.yaml)") in text, text
    # old: "day must be a number, got '2021-06-01'"
    assert ("day must be a number, got '2021-06-01' (a date: put it in datetime, with the subject's infusion_date "
            "in subjects.csv)") in text, text



# ------------------------------------------------------------------------------------------------
# F4: show on an 80-column terminal never cuts a number; --csv


def test_show_keeps_numbers_whole_at_80_columns_and_prints_csv(seed_copy):
    res = CliRunner().invoke(app, ["show", "CD7-AML-001", "--study", str(seed_copy), "--from", "8", "--to", "10"],
                             env={"COLUMNS": "80", "CARTLAB_DEBUG": ""})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in res.output, res.output  # old: 'Tmax 39.…'
    # the seed's day 8-10 values (observations.csv, reconstructed: starred): Tmax 39.0/39.4/39.1 C, ANC
    # 0.08/0.05/0.03, CAR 96,000 copies/ug on day 10, and day 10's platelet transfusion
    for cell in ("39.0*", "39.4", "39.1*", "0.08*", "0.05*", "0.03*", "96,000*", "platelets"):
        assert cell in res.output, (cell, res.output)
    text = CliRunner().invoke(app, ["show", "CD7-AML-001", "--study", str(seed_copy), "--from", "8", "--to", "10",
                                    "--csv"], env={"COLUMNS": "80", "CARTLAB_DEBUG": ""})
    assert text.exit_code == 0, text.output  # old: "No such option: --csv"
    rows = text.output.strip().splitlines()
    assert rows[0] == ("day,doses,Tmax °C,SBP min,ANC 10⁹/L,PLT 10⁹/L,CRP mg/L,IL-6 pg/mL,CAR copies/µg,"
                       "interventions,events / marrow"), rows
    assert rows[3] == '10,,39.1*,86*,0.03*,17*,149*,,"96,000*","acetaminophen, dexamethasone, norepinephrine, platelets",'
