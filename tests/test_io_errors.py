"""Bad input: every problem names file, row and column; all problems of a file come together."""

from __future__ import annotations

import pytest

from cartlab.io import StudyValidationError, read_study

from conftest import write

SUBJ = "subject_id,sex,age_years\nS1,F,17\nS2,M,40\n"


def issues_of(folder):
    with pytest.raises(StudyValidationError) as ei:
        read_study(folder)
    return ei.value.issues


def one(issues, file, column):
    hits = [i for i in issues if i.file == file and i.column == column]
    assert hits, f"no issue for {file}/{column}: {[str(i) for i in issues]}"
    return hits[0]


def test_wrong_unit(tmp_path):
    f = tmp_path / "s"
    write(f, "subjects.csv", SUBJ)
    write(f, "observations.csv", "subject_id,day,param,value,unit\nS1,1,NEUT,0.5,10^9/L\nS1,2,NEUT,0.5,mg/dL")
    i = one(issues_of(f), "observations.csv", "unit")
    assert i.rows == [2]
    assert "mg/dL" in i.message and "NEUT" in i.message
    assert "observations.csv, row 2 (line 3), column 'unit'" in str(i)


def test_unknown_unit_spelling(tmp_path):
    f = tmp_path / "s"
    write(f, "subjects.csv", SUBJ)
    write(f, "observations.csv", "subject_id,day,param,value,unit\nS1,1,CRP,5,mg/lol")
    i = one(issues_of(f), "observations.csv", "unit")
    assert "unknown unit" in i.message and i.rows == [1]


def test_missing_unit_is_not_guessed(tmp_path):
    f = tmp_path / "s"
    write(f, "subjects.csv", SUBJ)
    write(f, "observations.csv", "subject_id,day,param,value,unit\nS1,1,TEMP,38.5,")
    i = one(issues_of(f), "observations.csv", "unit")
    assert "unit missing" in i.message


def test_missing_required_column(tmp_path):
    f = tmp_path / "s"
    write(f, "subjects.csv", SUBJ)
    write(f, "observations.csv", "subject_id,day,value,unit\nS1,1,0.5,10^9/L")
    i = one(issues_of(f), "observations.csv", "param")
    assert "required column 'param' is missing" in i.message
    assert "header (line 1)" in str(i)


def test_missing_subjects_file(tmp_path):
    f = tmp_path / "s"
    write(f, "observations.csv", "subject_id,day,param,value,unit\nS1,1,NEUT,0.5,10^9/L")
    issues = issues_of(f)
    assert issues[0].file == "subjects.csv" and "required" in issues[0].message


def test_text_in_numeric_column(tmp_path):
    f = tmp_path / "s"
    write(f, "subjects.csv", SUBJ)
    write(f, "observations.csv", "subject_id,day,param,value,unit\nS1,1,NEUT,0.5,10^9/L\nS1,two,NEUT,high,10^9/L")
    issues = issues_of(f)
    v = one(issues, "observations.csv", "value")
    assert v.rows == [2] and "'high'" in v.message
    d = one(issues, "observations.csv", "day")
    assert d.rows == [2] and "'two'" in d.message


def test_duplicate_subject(tmp_path):
    f = tmp_path / "s"
    write(f, "subjects.csv", "subject_id\nS1\nS2\nS1")
    i = one(issues_of(f), "subjects.csv", "subject_id")
    assert i.rows == [1, 3] and "duplicate subject_id 'S1'" in i.message


def test_unknown_subject_in_observations(tmp_path):
    f = tmp_path / "s"
    write(f, "subjects.csv", SUBJ)
    write(f, "observations.csv", "subject_id,day,param,value,unit\nS1,1,NEUT,0.5,10^9/L\nS9,1,NEUT,0.5,10^9/L")
    i = one(issues_of(f), "observations.csv", "subject_id")
    assert i.rows == [2] and "unknown subject 'S9'" in i.message


def test_unknown_param(tmp_path):
    f = tmp_path / "s"
    write(f, "subjects.csv", SUBJ)
    write(f, "observations.csv", "subject_id,day,param,value,unit\nS1,1,NEUTX,0.5,10^9/L")
    i = one(issues_of(f), "observations.csv", "param")
    assert "unknown param 'NEUTX'" in i.message


def test_implausible_value_flags_unit(tmp_path):
    f = tmp_path / "s"
    write(f, "subjects.csv", SUBJ)
    write(f, "observations.csv", "subject_id,day,param,value,unit\nS1,1,TEMP,101.2,C")
    i = one(issues_of(f), "observations.csv", "value")
    assert "plausible range" in i.message and "is the unit right" in i.message


def test_all_errors_of_all_files_reported_together(tmp_path):
    f = tmp_path / "s"
    write(f, "subjects.csv", "subject_id,sex\nS1,F\nS1,Q")
    write(
        f,
        "observations.csv",
        "subject_id,day,param,value,unit\nS1,1,NEUT,abc,10^9/L\nS9,1,NEUT,0.5,10^9/L\nS1,,NEUT,0.5,10^9/L\nS1,1,CRP,1,furlong",
    )
    write(f, "events.csv", "subject_id,day,event\nS1,1,exploded")
    write(f, "interventions.csv", "subject_id,start_day,end_day,category\nS1,5,3,oxygen")
    issues = issues_of(f)
    got = {(i.file, i.column) for i in issues}
    assert {
        ("subjects.csv", "subject_id"),
        ("subjects.csv", "sex"),
        ("observations.csv", "value"),
        ("observations.csv", "subject_id"),
        ("observations.csv", "day"),
        ("observations.csv", "unit"),
        ("events.csv", "event"),
        ("interventions.csv", "end_day"),
        ("interventions.csv", "o2_device"),
    } <= got


def test_many_bad_rows_are_grouped(tmp_path):
    f = tmp_path / "s"
    write(f, "subjects.csv", SUBJ)
    rows = "\n".join(f"S1,{d},NEUT,0.5,mg" for d in range(500))
    write(f, "observations.csv", "subject_id,day,param,value,unit\n" + rows)
    issues = issues_of(f)
    assert len(issues) == 1 and len(issues[0].rows) == 500
    assert "and 492 more (500 rows)" in str(issues[0])


def test_datetime_without_anchor(tmp_path):
    f = tmp_path / "s"
    write(f, "subjects.csv", SUBJ)
    write(f, "observations.csv", "subject_id,datetime,param,value,unit\nS1,2022-01-01T10:00,NEUT,0.5,10^9/L")
    i = one(issues_of(f), "observations.csv", "datetime")
    assert "infusion_date" in i.message


def test_bad_datetime(tmp_path):
    f = tmp_path / "s"
    write(f, "subjects.csv", "subject_id,infusion_date\nS1,2022-01-01")
    write(f, "observations.csv", "subject_id,datetime,param,value,unit\nS1,01/02/2022,NEUT,0.5,10^9/L")
    i = one(issues_of(f), "observations.csv", "datetime")
    assert "ISO 8601" in i.message


def test_day_and_datetime_disagree(tmp_path):
    f = tmp_path / "s"
    write(f, "subjects.csv", "subject_id,infusion_date\nS1,2022-01-01")
    write(f, "observations.csv", "subject_id,day,datetime,param,value,unit\nS1,3,2022-01-02,NEUT,0.5,10^9/L")
    i = one(issues_of(f), "observations.csv", "day")
    assert "disagrees" in i.message


def test_upper_case_column_names(tmp_path):
    f = tmp_path / "s"
    write(f, "subjects.csv", "Subject_ID\nS1")
    issues = issues_of(f)
    assert any("lower case" in i.message for i in issues)


def test_ragged_csv_names_line(tmp_path):
    f = tmp_path / "s"
    write(f, "subjects.csv", SUBJ)
    write(f, "observations.csv", "subject_id,day,param,value,unit\nS1,1,NEUT,0.5,10^9/L\nS1,1,NEUT,0.5,10^9/L,extra,fields")
    issues = issues_of(f)
    assert issues[0].file == "observations.csv" and issues[0].rows == [2]
    assert "malformed CSV" in issues[0].message


def test_loc_value_text_vocabulary(tmp_path):
    f = tmp_path / "s"
    write(f, "subjects.csv", SUBJ)
    write(f, "observations.csv", "subject_id,day,param,value_text\nS1,1,LOC,sleepy")
    i = one(issues_of(f), "observations.csv", "value_text")
    assert "'sleepy'" in i.message and "awakens_to_voice" in i.message


def test_negative_dose_and_bad_dose_unit(tmp_path):
    f = tmp_path / "s"
    write(f, "subjects.csv", SUBJ)
    write(f, "doses.csv", "subject_id,day,agent,dose,unit\nS1,0,CAR-T,-1,cells/kg\nS1,0,CAR-T,1,bananas")
    issues = issues_of(f)
    assert one(issues, "doses.csv", "dose").rows == [1]
    assert one(issues, "doses.csv", "unit").rows == [2]


def test_both_csv_and_parquet(tmp_path):
    import polars as pl

    f = tmp_path / "s"
    write(f, "subjects.csv", SUBJ)
    pl.DataFrame({"subject_id": ["S1"]}).write_parquet(f / "subjects.parquet")
    issues = issues_of(f)
    assert "keep one" in issues[0].message


def test_non_utf8(tmp_path):
    f = tmp_path / "s"
    f.mkdir()
    (f / "subjects.csv").write_bytes("subject_id,target\nS1,\xe9\n".encode("latin-1"))
    issues = issues_of(f)
    assert "UTF-8" in issues[0].message


def test_a_cell_dose_without_cells_in_its_unit_says_how_to_write_it(tmp_path):
    f = tmp_path / "s"
    write(f, "subjects.csv", SUBJ)
    write(f, "doses.csv", "subject_id,day,agent,dose,unit\nS1,0,CAR-T,2,10^6/kg")
    msg = one(issues_of(f), "doses.csv", "unit").message
    assert "'10^6/kg'" in msg and "a cell dose names its cells: 10^6 cells/kg" in msg
