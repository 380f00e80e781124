"""Reading the study folder format v1: canonical conversion, time anchoring, extras, provenance."""

from __future__ import annotations

import json

import polars as pl
import pytest

from cartlab.io import StudyValidationError, read_study, validate_study
from cartlab.model import TABLES

from conftest import write


def _errors(folder) -> list[tuple]:
    """(column, rows, message) of every error reading ``folder`` raises."""
    with pytest.raises(StudyValidationError) as err:
        read_study(folder)
    return [(i.column, i.rows, i.message) for i in err.value.issues if i.severity == "error"]


def obs(study, **kw):
    df = study.observations
    for k, v in kw.items():
        df = df.filter(pl.col(k) == v)
    return df


def test_reads_all_tables_with_canonical_schema(small_study):
    s = read_study(small_study)
    assert s.study_id == "small"
    for name, schema in TABLES.items():
        assert dict(s.table(name).schema) == schema, name
    assert s.subjects.height == 2 and s.observations.height == 10
    assert s.interventions.height == 2 and s.events.height == 2 and s.doses.height == 3


def test_units_converted_and_originals_kept(small_study):
    s = read_study(small_study)
    t = obs(s, param="TEMP").row(0, named=True)
    assert t["value"] == 38.0 and t["unit"] == "degC"
    assert t["orig_value"] == 100.4 and t["orig_unit"] == "F"
    n = obs(s, param="NEUT").row(0, named=True)
    assert n["value"] == 0.5 and n["lln"] == 1.5 and n["unit"] == "10^9/L"
    crp = obs(s, param="CRP").row(0, named=True)
    assert crp["value"] == 30.0 and crp["uln"] == 5.0
    bili = obs(s, param="BILI").row(0, named=True)
    assert bili["value"] == pytest.approx(1.2 * 17.104, rel=1e-4)
    k = obs(s, param="K").row(0, named=True)
    assert k["value"] == 4.1 and k["unit"] == "mmol/L"
    mrd = obs(s, param="MRDFCM").row(0, named=True)
    assert mrd["value"] == 2.5e-4 and mrd["unit"] == "fraction"
    mol = obs(s, param="MOLAR").row(0, named=True)
    assert mol["analyte"] == "FLT3-ITD" and mol["value"] == 5.9


def test_censored_value_text(small_study):
    s = read_study(small_study)
    blq = obs(s, param="CARCOPY", day=1.0).row(0, named=True)
    assert blq["value"] is None and blq["value_text"] == "<50"
    assert blq["censor"] == "<" and blq["censor_limit"] == 50.0 and blq["lloq"] == 50.0


def test_datetime_is_anchored_to_infusion_date(small_study):
    s = read_study(small_study)
    n = obs(s, param="NEUT").row(0, named=True)
    assert n["day"] == 1.5 and n["datetime"] == "2022-01-11T12:00"


def test_dose_units_canonical(small_study):
    s = read_study(small_study)
    car = s.doses.filter(pl.col("subject_id") == "S2").row(0, named=True)
    assert car["dose"] == 1e6 and car["unit"] == "cells/kg"
    assert car["orig_dose"] == 1.0 and car["orig_unit"] == "10^6 cells/kg"


def test_extra_columns_kept(small_study):
    s = read_study(small_study)
    assert json.loads(s.subjects["extra"][0]) == {"site": "Suzhou"}


def test_provenance_on_every_row(small_study):
    s = read_study(small_study)
    for name, df in s.tables().items():
        if df.height:
            assert df["src_file"].null_count() == 0, name
            assert df["src_sha256"].str.len_chars().min() == 64
            assert df["src_row"].to_list() == list(range(1, df.height + 1))
    assert set(s.sources["file"]) == {
        "subjects.csv", "doses.csv", "observations.csv", "interventions.csv", "events.csv"
    }


def test_only_subjects_is_required(tmp_path):
    write(tmp_path / "s", "subjects.csv", "subject_id\nA\nB")
    s = read_study(tmp_path / "s")
    assert s.subjects.height == 2 and s.observations.height == 0


def test_parquet_reads_like_csv(small_study, tmp_path):
    pq = tmp_path / "pq"
    pq.mkdir()
    for f in small_study.glob("*.csv"):
        pl.read_csv(f, infer_schema_length=0).write_parquet(pq / f"{f.stem}.parquet")
    a, b = read_study(small_study), read_study(pq, study_id="small")
    for name in TABLES:
        cols = [c for c in TABLES[name] if c not in ("src_file", "src_sha256")]
        assert a.table(name).select(cols).equals(b.table(name).select(cols)), name


def test_typed_parquet_columns(tmp_path):
    f = tmp_path / "t"
    f.mkdir()
    pl.DataFrame({"subject_id": ["A"], "age_years": [17.0]}).write_parquet(f / "subjects.parquet")
    pl.DataFrame(
        {"subject_id": ["A"], "day": [1.5], "param": ["NEUT"], "value": [0.4], "unit": ["10^9/L"]}
    ).write_parquet(f / "observations.parquet")
    s = read_study(f)
    assert s.observations["value"][0] == 0.4 and s.observations["day"][0] == 1.5


def test_whitespace_and_case_of_enums(tmp_path):
    f = tmp_path / "w"
    write(f, "subjects.csv", "subject_id,sex,disease\n A ,f,aml")
    write(f, "observations.csv", "subject_id,day,param,value,unit\nA,1, neut ,0.4, 10^9/L ")
    s = read_study(f)
    assert s.subjects.row(0, named=True)["sex"] == "F"
    assert s.subjects.row(0, named=True)["disease"] == "AML"
    assert s.observations["param"][0] == "NEUT"


def test_vocabulary_words_with_spaces_hyphens_and_capitals(tmp_path):
    f = tmp_path / "v"
    write(f, "subjects.csv", "subject_id,disease\nA,b all\nB,T_LBL")
    write(f, "observations.csv", "subject_id,day,param,value_text\nA,1,LOC,Awakens to voice\nA,2,LOC,ALERT")
    write(f, "interventions.csv", "subject_id,start_day,category,o2_device,o2_flow_lpm\n"
          "A,1,Oxygen,High-flow nasal cannula,30\nA,2,oxygen,Nasal  Cannula,2\nA,3,oxygen,non-rebreather,")
    s = read_study(f)
    assert s.subjects["disease"].to_list() == ["B-ALL", "T-LBL"]
    assert s.observations["value_text"].to_list() == ["awakens_to_voice", "alert"]
    assert s.interventions["o2_device"].to_list() == ["high_flow_nasal_cannula", "nasal_cannula", "non_rebreather"]
    assert s.interventions["category"].to_list() == ["oxygen"] * 3


def test_a_course_without_interventions_or_events_files_says_what_is_read_as_not_given(tmp_path):
    f = tmp_path / "nf"
    write(f, "subjects.csv", "subject_id\nA")
    write(f, "observations.csv", "subject_id,day,param,value,unit\nA,3,TEMP,38.2,C")
    warned = {w.file: w.message for w in read_study(f).warnings}
    assert set(warned) == {"doses.csv", "interventions.csv", "events.csv"}
    assert "vasopressor" in warned["interventions.csv"] and "death" in warned["events.csv"]
    assert "not checkable rather than missed" in warned["doses.csv"]
    # an empty file with its header says none was given: no warning
    write(f, "doses.csv", "subject_id,day,agent,dose,unit")
    write(f, "interventions.csv", "subject_id,start_day,category")
    write(f, "events.csv", "subject_id,day,event")
    assert read_study(f).warnings == []


def test_an_unreadable_day_is_one_error_not_also_a_missing_one(tmp_path):
    f = tmp_path / "d"
    write(f, "subjects.csv", "subject_id\nA")
    write(f, "events.csv", "subject_id,day,event\nA,day5,death\nA,,death")
    issues = _errors(f)
    assert issues == [("day", [1], "day must be a number, got 'day5'"),
                      ("day", [2], "neither 'day' nor 'datetime' is given")]


def test_no_unit_column_is_one_error_naming_the_parameters_and_problems_come_in_file_order(tmp_path):
    f = tmp_path / "u"
    write(f, "subjects.csv", "subject_id\nA")
    write(f, "observations.csv", "subject_id,day,param,value\nA,1,NEUT,0.4\nA,1,TEMP,38.2\nA,2,PLAT,50\n"
          "A,2,ICE,7\nA,3,MRDFCM,40")
    messages = []
    for _ in range(2):  # the same problems in the same order on every run
        with pytest.raises(StudyValidationError) as err:
            read_study(f)
        messages.append([i.message for i in err.value.issues if i.severity == "error"])
    assert messages[0] == messages[1]
    first = messages[0][0]
    # NEUT, TEMP, PLAT need a unit (ICE is a score; MRDFCM's empty unit means a fraction), in file order
    assert "no 'unit' column" in first and "values of NEUT, TEMP, PLAT need their unit" in first
    # 40 as a fraction is implausible: said once, without a double space for the empty unit
    assert messages[0][1:] == ["MRDFCM value 40 (no unit) (= 40 fraction) is outside the plausible range "
                               "[0, 1] fraction: is the unit right?"]


def test_records_after_a_death_are_warned_about_with_their_rows(tmp_path):
    f = tmp_path / "dd"
    write(f, "subjects.csv", "subject_id,last_followup_day\nA,60\nB,60")
    write(f, "events.csv", "subject_id,day,event\nA,10.5,death\nB,70,death")
    # A died on day 10 (at noon): its day-10 evening row is fine, days 11 and 27 are not
    write(f, "observations.csv", "subject_id,day,param,value,unit\nA,10.9,TEMP,38.5,C\nA,11,TEMP,37,C\n"
          "A,27,NEUT,1.2,10^9/L\nB,30,TEMP,37,C")
    warned = [(w.file, w.column, w.rows) for w in read_study(f).warnings if "after its death" in w.message]
    assert warned == [("observations.csv", "day", [2, 3]), ("subjects.csv", "last_followup_day", [1])]


def test_an_unknown_oxygen_device_is_one_error_not_also_a_missing_one(tmp_path):
    f = tmp_path / "o2"
    write(f, "subjects.csv", "subject_id\nA")
    write(f, "interventions.csv", "subject_id,start_day,category,o2_device\nA,1,oxygen,nasal prongs\nA,2,oxygen,")
    issues = _errors(f)
    assert [(c, r) for c, r, _ in issues] == [("o2_device", [1]), ("o2_device", [2])]
    assert "'nasal prongs' is not a valid o2_device" in issues[0][2]
    assert issues[1][2] == "o2_device is required for oxygen"


@pytest.mark.parametrize("written, code", [("Male", "M"), ("FEMALE", "F"), ("female", "F"), (" unknown ", "U"),
                                           ("m", "M")])
def test_sex_as_commonly_written(tmp_path, written, code):
    f = tmp_path / "sx"
    write(f, "subjects.csv", f"subject_id,sex\nA,{written}")
    assert read_study(f).subjects["sex"].to_list() == [code]


@pytest.mark.parametrize("written", ["X", "man", "2", "fem"])
def test_other_sex_values_are_refused(tmp_path, written):
    f = tmp_path / "sx"
    write(f, "subjects.csv", f"subject_id,sex\nA,{written}")
    with pytest.raises(StudyValidationError, match="not a valid sex; allowed: F, M, U"):
        read_study(f)


def test_validate_returns_empty_for_valid(small_study):
    assert validate_study(small_study) == []


def test_not_a_folder_says_what_the_path_is(tmp_path):
    with pytest.raises(StudyValidationError, match="no such file or folder"):
        read_study(tmp_path / "nope")
    (tmp_path / "trial.xlsx").write_bytes(b"PK\x03\x04")
    with pytest.raises(StudyValidationError, match=r"a spreadsheet \(.xlsx\).*export each sheet to CSV"):
        read_study(tmp_path / "trial.xlsx")
    (tmp_path / "subjects.csv").write_text("subject_id\nA\n")
    with pytest.raises(StudyValidationError, match="single csv file.*the folder that holds subjects.csv"):
        read_study(tmp_path / "subjects.csv")


def test_intervention_datetimes_anchor_on_infusion_datetime(tmp_path):
    f = tmp_path / "dt"
    write(f, "subjects.csv", "subject_id,infusion_datetime\nA,2022-03-01T10:00:00")
    write(
        f,
        "interventions.csv",
        "subject_id,start_datetime,end_datetime,category,agent\n"
        "A,2022-03-05T22:00,2022-03-07T10:00,vasopressor,norepinephrine\n"
        "A,2022-03-06T10:00:00Z,,tocilizumab,tocilizumab",
    )
    iv = read_study(f).interventions
    # day 0 is 1 March (the infusion's date); days count from its midnight on the clock as written
    # (study format v1: "day 14.5 is noon of day 14"): 5 March 22:00 = 4 + 22/24; 7 March 10:00 =
    # 6 + 10/24; 6 March 10:00Z = 5 + 10/24 (the offset is not applied)
    assert iv["start_day"].to_list() == pytest.approx([4 + 22 / 24, 5 + 10 / 24])
    assert iv["end_day"].to_list()[0] == pytest.approx(6 + 10 / 24) and iv["end_day"].to_list()[1] is None


def test_blank_lines_are_skipped_with_a_warning_and_rows_keep_their_numbers(tmp_path):
    """A trailing blank line (editors add one) or a line of separators only (spreadsheet exports)
    is not a record: skipped with a warning naming it, not four "required value is empty" errors.
    Rows after it keep their file numbers (data row 4 below is line 5 of the file)."""
    f = tmp_path / "s"
    write(f, "subjects.csv", "subject_id,infusion_date\nS1,2022-03-01\n")
    (f / "observations.csv").write_text("subject_id,day,param,value,unit\nS1,1,TEMP,38.5,C\n\n,,,,\n"
                                        "S1,2,TEMP,37.0,C\n\n")
    s = read_study(f)
    assert s.observations["src_row"].to_list() == [1, 4]
    assert [w.rows for w in s.warnings if "blank line" in w.message] == [[2, 3, 5]]
    (f / "observations.csv").write_text("subject_id,day,param,value,unit\nS1,1,TEMP,38.5,C\n\nS1,2,TEMP,hot,C\n")
    with pytest.raises(StudyValidationError, match=r"observations.csv, row 3 \(line 4\), column 'value'") as exc:
        read_study(f)
    assert "1 problem found" in str(exc.value)  # not also "neither value nor value_text is given"


def test_parquet_with_date_and_datetime_typed_columns(tmp_path):
    """Parquet written from a data frame keeps dates as Date and times as Datetime: read as ISO text
    (a Date column used to stop the reader with a polars formatting error). By hand: infusion on
    1 March; 2 March 08:00 = day 1 + 8/24; a zone-aware 3 March 09:30 (Paris) = day 2 + 9.5/24 on
    the clock as written."""
    import datetime as dt

    f = tmp_path / "pq"
    f.mkdir()
    pl.DataFrame({"subject_id": ["A"], "infusion_date": [dt.date(2024, 3, 1)]}).write_parquet(f / "subjects.parquet")
    pl.DataFrame({"subject_id": ["A"], "datetime": [dt.datetime(2024, 3, 2, 8, 0)], "param": ["TEMP"],
                  "value": [38.5], "unit": ["C"]}).write_parquet(f / "observations.parquet")
    pl.DataFrame({"subject_id": ["A"], "datetime": [dt.datetime(2024, 3, 3, 9, 30)], "event": ["infection"]}).with_columns(
        pl.col("datetime").dt.replace_time_zone("Europe/Paris")).write_parquet(f / "events.parquet")
    s = read_study(f)
    assert s.subjects["infusion_date"].to_list() == ["2024-03-01"]
    assert s.observations["day"].to_list() == pytest.approx([1 + 8 / 24])
    assert s.events["day"].to_list() == pytest.approx([2 + 9.5 / 24])


def test_a_missing_value_word_where_a_number_belongs_gets_a_hint(tmp_path):
    f = tmp_path / "s"
    write(f, "subjects.csv", "subject_id,infusion_date,age_years\nA,2024-03-01,N/A")
    write(f, "observations.csv", "subject_id,day,param,value,unit\nA,2,NEUT,ND,/uL\nA,3,NEUT,lots,/uL")
    with pytest.raises(StudyValidationError) as exc:
        read_study(f)
    msg = str(exc.value)
    assert "got 'N/A' (leave the cell empty for a missing value)" in msg
    # session 34: ND (not detected) is a below-detection result, not a missing value (review34 B4)
    assert "got 'ND' (a below-detection result: write '<' and the detection limit" in msg
    assert "got 'ND' (leave the cell empty" not in msg
    assert "got 'lots'" in msg and "got 'lots' (" not in msg
