"""Study-format contract audit (s27): inputs a different team would plausibly write. Expected values by
hand from /work/shared/spec/study-format.md ("any common unit; cartlab converts"; "must reject what
breaks it with a clear error that names the file, the row and the column")."""

from __future__ import annotations

import pytest

from cartlab.io import StudyValidationError, read_study


def write(folder, name, text, encoding="utf-8"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(text.encode(encoding))


def _errors(folder):
    with pytest.raises(StudyValidationError) as err:
        read_study(folder)
    return [(i.file, i.column, i.rows, i.message) for i in err.value.issues if i.severity == "error"]


def test_a_latin1_byte_in_a_data_row_is_one_message_naming_file_and_row(tmp_path):
    f = tmp_path / "l"
    write(f, "subjects.csv", "subject_id,sex\nA,M\nJosé,F\n", encoding="latin-1")
    (file, _col, rows, msg), = _errors(f)
    assert file == "subjects.csv" and rows == [2] and msg.startswith("not UTF-8 text")  # line 3 = data row 2


def test_mm_hg_with_a_space_is_mmhg(tmp_path):
    f = tmp_path / "u"
    write(f, "subjects.csv", "subject_id\nA")
    write(f, "observations.csv", "subject_id,day,param,value,unit\nA,1,SYSBP,85,mm Hg\nA,1,NEUT,0.4,thou/uL\n")
    obs = {r["param"]: (r["value"], r["unit"]) for r in read_study(f).observations.iter_rows(named=True)}
    assert obs["SYSBP"] == (85.0, "mmHg")
    assert obs["NEUT"][0] == pytest.approx(0.4)  # thousand per uL = 10^9/L, factor 1


def test_a_number_for_a_categorical_param_is_rejected(tmp_path):
    """LOC takes value_text (alert ... unarousable); a number there was read and then ignored by ICANS."""
    f = tmp_path / "c"
    write(f, "subjects.csv", "subject_id\nA")
    write(f, "observations.csv", "subject_id,day,param,value,unit\nA,1,LOC,2,\n")
    (file, col, rows, msg), = _errors(f)
    assert (file, col, rows) == ("observations.csv", "value", [1]) and "LOC is categorical" in msg


@pytest.mark.parametrize("unit, dose, expected", [("Cells/kg", "1000000", (1e6, "cells/kg")),
                                                   ("10^6 Cells/kg", "2", (2e6, "cells/kg")),
                                                   ("MG/M2", "30", (30.0, "mg/m2"))])
def test_dose_units_in_any_case(tmp_path, unit, dose, expected):
    f = tmp_path / "d"
    write(f, "subjects.csv", "subject_id\nA")
    write(f, "doses.csv", f"subject_id,day,agent,dose,unit\nA,0,CD7 CAR-T,{dose},{unit}\n")
    r = read_study(f).doses.row(0, named=True)
    assert (r["dose"], r["unit"]) == expected and r["orig_unit"] == unit


def test_a_score_out_of_range_reads_plainly(tmp_path):
    f = tmp_path / "s"
    write(f, "subjects.csv", "subject_id\nA")
    write(f, "observations.csv", "subject_id,day,param,value,unit\nA,1,ICE,11,\n")
    (_f, _c, _r, msg), = _errors(f)
    assert msg == "ICE value 11 is outside its range [0, 10]"


def test_crs_reason_never_rounds_a_temperature_across_the_fever_cut_off(tmp_path):
    """Spec: fever = "the day's maximum temperature >= 38.0 C". 37.99 is no fever (grade 0), so the
    reason must not print it as 38.0; 38.44 (fever) prints with one decimal as before."""
    from cartlab.grading.crs import derive_crs_daily

    f = tmp_path / "t"
    write(f, "subjects.csv", "subject_id\nA")
    write(f, "observations.csv", "subject_id,day,param,value,unit\nA,1,TEMP,37.99,C\nA,1,SYSBP,110,mmHg\n"
                                 "A,2,TEMP,38.44,C\nA,2,SYSBP,110,mmHg\n")
    write(f, "interventions.csv", "subject_id,start_day,category\n")
    write(f, "events.csv", "subject_id,day,event\n")
    r = {d: why for d, why in derive_crs_daily(read_study(f)).select("day", "reason").iter_rows()}
    assert r[1].startswith("Tmax 37.99 C; SBP min 110 mmHg -> grade 0")
    assert r[2].startswith("Tmax 38.4 C (fever)")


def test_a_study_without_subjects_analyses_without_a_skip(tmp_path):
    """A study without subjects (built in memory: a header-only subjects.csv is an input error since
    session 37, review 37 B5): every engine gives its empty table; nothing is 'skipped' with an
    internal column error (the ADAE-like ICAHT episodes raised ColumnNotFoundError)."""
    from cartlab.analyze import Analysis
    from cartlab.model import Study, empty_frame

    f = tmp_path / "z"
    write(f, "subjects.csv", "subject_id,sex\n")
    with pytest.raises(StudyValidationError, match="no subject rows"):
        read_study(f)
    a = Analysis(Study(study_id="z", subjects=empty_frame("subjects")))
    a.tables()
    assert a.skipped == []
