"""Nothing silently lost or double-counted (issue 13, point 2): table names in any letter case, every
file not read named, duplicate rows dropped once with a warning, conflicting values refused, CSV
dialects recognised, paths described."""

from __future__ import annotations

import shutil

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cartlab.analyze import Analysis
from cartlab.datasets import seed_case_path
from cartlab.io import StudyValidationError, read_study, validate_study
from cartlab.io.folder import sniff_dialect

from conftest import write


def _errors(issues):
    return [i for i in issues if i.severity == "error"]


def _warnings(issues):
    return [i for i in issues if i.severity == "warning"]


@pytest.fixture
def seed_copy(tmp_path):
    f = tmp_path / "seed"
    shutil.copytree(seed_case_path(), f)
    return f


@pytest.mark.parametrize("name", ["Observations.CSV", "OBSERVATIONS.csv", "observations.Csv"])
def test_table_names_in_any_case_are_read(seed_copy, name):
    (seed_copy / "observations.csv").rename(seed_copy / name)
    s = read_study(seed_copy)
    # the vitals are there, so CRS is graded from them: onset day 3 as with the lower-case file
    # (seed case, reconstructed course: first fever on day 3)
    assert s.observations.height > 1000
    assert Analysis(s).subject_summary()["crs_onset_day"].to_list() == [3.0]
    assert s.observations["src_file"][0] == name


def test_two_files_for_one_table_is_an_error(seed_copy):
    shutil.copy(seed_copy / "observations.csv", seed_copy / "Observations.CSV")
    errs = _errors(validate_study(seed_copy))
    assert len(errs) == 1 and "2 files for the observations table" in errs[0].message


def test_every_file_not_read_is_named(seed_copy):
    (seed_copy / "notes.xlsx").write_bytes(b"PK")
    (seed_copy / "lb.xpt").write_bytes(b"HEADER")
    (seed_copy / "labs.csv").write_text("a,b\n1,2\n")
    (seed_copy / "old").mkdir()
    (seed_copy / ".DS_Store").write_bytes(b"")
    issues = validate_study(seed_copy)
    assert not _errors(issues)
    msgs = {i.file: i.message for i in _warnings(issues)}
    assert set(msgs) == {"notes.xlsx", "lb.xpt", "labs.csv", "old"}  # hidden files skipped; README.md is documentation (review 47 F6)
    assert "spreadsheets" in msgs["notes.xlsx"] and "export each sheet to CSV" in msgs["notes.xlsx"]
    assert "SDTM domain LB" in msgs["lb.xpt"]
    assert "not a study table" in msgs["labs.csv"]
    assert "subfolder" in msgs["old"]
    # the warnings travel with the study (analysis.json records them)
    assert {w.file for w in read_study(seed_copy).warnings} == set(msgs)


def test_missing_subjects_hints_at_spreadsheets_and_sdtm(tmp_path):
    f = tmp_path / "x"
    f.mkdir()
    (f / "Trial data.xlsx").write_bytes(b"PK")
    (f / "dm.csv").write_text("STUDYID,USUBJID\n1,2\n")
    (f / "lb.xpt").write_bytes(b"HEADER")
    errs = _errors(validate_study(f))
    assert len(errs) == 1
    msg = errs[0].message
    assert msg.startswith("subjects.csv is required and missing")
    assert "Trial data.xlsx" in msg and "export each sheet to CSV" in msg
    assert "CDISC SDTM (dm.csv, lb.xpt)" in msg


# ------------------------------------------------------------------------------------------------
# duplicates and conflicts


def test_exact_duplicate_rows_are_dropped_once_with_a_warning(seed_copy):
    obs = pl.read_csv(seed_copy / "observations.csv", infer_schema=False)
    n = obs.height
    # repeat rows 5, 6 and 7 (1-based data rows) at the end of the file
    pl.concat([obs, obs.slice(4, 3)]).write_csv(seed_copy / "observations.csv")
    s = read_study(seed_copy)
    assert s.observations.height == n
    dup = [w for w in s.warnings if "duplicate" in w.message]
    assert len(dup) == 1
    assert dup[0].rows == [n + 1, n + 2, n + 3]
    assert f"row {n + 1} repeats row 5" in dup[0].message
    # every engine sees each measurement once: ADLB has as many rows as with the clean file
    clean = read_study(seed_case_path())
    from cartlab.grading.ctcae import derive_ctcae

    assert derive_ctcae(s).height == derive_ctcae(clean).height


def test_same_value_in_another_unit_is_a_duplicate(tmp_path):
    f = tmp_path / "u"
    write(f, "subjects.csv", "subject_id\nA")
    write(f, "observations.csv", "subject_id,day,param,value,unit\nA,2,CRP,30,mg/L\nA,2,CRP,3,mg/dL")
    s = read_study(f)
    assert s.observations.height == 1
    assert "row 2 repeats row 1" in s.warnings[0].message


def test_conflicting_values_name_both_rows(tmp_path):
    # session 32: a conflict is two different values at one time (a fractional day or a datetime with a
    # clock time); 14.5 is noon of day 14
    f = tmp_path / "c"
    write(f, "subjects.csv", "subject_id\nA")
    write(f, "observations.csv", "subject_id,day,param,value,unit\nA,14.5,CARCOPY,183945,copies/ug\n"
          "A,20,CARCOPY,5000,copies/ug\nA,14.5,CARCOPY,18394,copies/ug")
    with pytest.raises(StudyValidationError) as e:
        read_study(f)
    [err] = e.value.issues
    assert (err.file, err.column, err.rows) == ("observations.csv", "value", [1, 3])
    assert "CARCOPY of subject 'A' on day 14.5" in err.message and "rows 1, 3" in err.message


def test_two_values_of_a_day_without_a_time_are_both_read_with_a_warning(tmp_path):
    """Session 32 (review of the reader against the spec): observations.csv is "every measured value"
    (study-format.md); two labs drawn on day 3 with no time are two measurements, not a conflict."""
    f = tmp_path / "d"
    write(f, "subjects.csv", "subject_id\nA")
    write(f, "observations.csv", "subject_id,day,param,value,unit\nA,3,NEUT,0.4,10^9/L\nA,3,NEUT,0.6,10^9/L")
    s = read_study(f)
    assert sorted(s.observations["value"].to_list()) == [0.4, 0.6]
    [w] = [w for w in s.warnings if w.file == "observations.csv"]
    assert w.rows == [1, 2] and "no time of day" in w.message and "NEUT of subject 'A' on day 3" in w.message


def test_several_vital_signs_a_day_are_not_a_conflict(tmp_path):
    f = tmp_path / "v"
    write(f, "subjects.csv", "subject_id\nA")
    write(f, "observations.csv", "subject_id,day,param,value,unit\nA,3,TEMP,38.2,C\nA,3,TEMP,39.0,C\nA,3,SYSBP,85,mmHg\n"
          "A,3,SYSBP,110,mmHg")
    s = read_study(f)
    # the only warnings: the optional files not given (said once each), not the readings
    assert s.observations.height == 4
    assert [(w.file, w.message.split(":")[0]) for w in s.warnings] == [("doses.csv", "not given"),
                                                                       ("interventions.csv", "not given"),
                                                                       ("events.csv", "not given")]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(copies=st.lists(st.integers(0, 9), min_size=0, max_size=8))
def test_any_set_of_repeated_rows_reads_as_the_clean_file(tmp_path_factory, copies):
    f = tmp_path_factory.mktemp("dup")
    rows = [f"A,{d},NEUT,{0.1 * (d + 1):.1f},10^9/L" for d in range(10)]
    write(f, "subjects.csv", "subject_id\nA")
    write(f, "observations.csv", "\n".join(["subject_id,day,param,value,unit", *rows, *(rows[i] for i in copies)]))
    s = read_study(f)
    assert s.observations.sort("day")["value"].to_list() == [round(0.1 * (d + 1), 1) for d in range(10)]
    dropped = sum(len(w.rows) for w in s.warnings)
    assert dropped == len(copies)


# ------------------------------------------------------------------------------------------------
# CSV dialects


def _european(folder):
    """The seed case as a European spreadsheet exports it: semicolons, decimal commas."""
    for p in folder.glob("*.csv"):
        df = pl.read_csv(p, infer_schema=False)
        num = [c for c in df.columns if c in ("day", "value", "dose", "lln", "uln", "lloq", "age_years", "weight_kg",
                                               "height_cm", "last_followup_day", "start_day", "end_day",
                                               "o2_flow_lpm", "fio2")]
        df = df.with_columns(pl.col(c).str.replace(".", ",", literal=True) for c in num)
        df.write_csv(p, separator=";")


def test_semicolons_and_decimal_commas_get_one_message_per_file(seed_copy):
    _european(seed_copy)
    errs = _errors(validate_study(seed_copy))
    files = sorted(e.file for e in errs)
    assert files == sorted(p.name for p in seed_copy.glob("*.csv"))
    for e in errs:
        assert "looks semicolon-separated" in e.message and "re-export it as comma-separated" in e.message
    obs = next(e for e in errs if e.file == "observations.csv")
    assert "with decimal commas" in obs.message and "--csv-dialect european" in obs.message


def test_european_dialect_reads_the_same_study(seed_copy):
    _european(seed_copy)
    euro = read_study(seed_copy, csv_dialect="european")
    plain = read_study(seed_case_path())
    assert euro.observations.select("param", "day", "value").equals(plain.observations.select("param", "day", "value"))
    assert euro.subjects["weight_kg"].to_list() == plain.subjects["weight_kg"].to_list()


def test_european_dialect_refuses_a_decimal_point(tmp_path):
    f = tmp_path / "e"
    write(f, "subjects.csv", "subject_id;age_years\nA;17.5")
    with pytest.raises(StudyValidationError, match="decimal point"):
        read_study(f, csv_dialect="european")


@pytest.mark.parametrize("text,dialect,expect", [
    ("subject_id,day\nA,1.5\n", "standard", None),
    ("subject_id;day\nA;1,5\n", "standard", "european"),
    ("subject_id;day\nA;1.5\n", "standard", "semicolon"),
    ("subject_id\tday\nA\t1.5\n", "standard", "tab"),
    ("subject_id;day\nA;1,5\n", "european", None),
    ("subject_id,day\nA,1.5\n", "european", "standard"),
    ("subject_id\nA\n", "standard", None),  # one column: nothing to tell
    ("", "standard", None),
])
def test_sniff_dialect(tmp_path, text, dialect, expect):
    p = tmp_path / "subjects.csv"
    p.write_text(text)
    issue = sniff_dialect(p, dialect)
    if expect is None:
        assert issue is None
    else:
        assert issue is not None and f"--csv-dialect {expect}" in issue.message
