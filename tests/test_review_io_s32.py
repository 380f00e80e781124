"""Session 32 review of the study-folder reader (cases in notes/review32_io).

Every expected value is derived by hand from the study format's text (shared/spec/study-format.md),
never copied from cartlab's output:
* "Time": "`day`: days relative to the first CAR-T infusion. Day 0 is the infusion day ... day 14.5
  is noon of day 14"; "Instead of `day`, a row may give `datetime` (ISO 8601); then
  `subjects.infusion_date` (or `infusion_datetime`) anchors it";
* "subjects.csv": infusion_date / infusion_datetime = "calendar anchor of day 0";
* "observations.csv": `unit` "when value has a unit"; the contract: errors name "the file, the row
  and the column".
Rows are 1-based data rows (the header is line 1).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cartlab.io import read_study, validate_study
from cartlab.io.errors import StudyValidationError


def _folder(tmp_path: Path, **tables: str) -> Path:
    for name, text in tables.items():
        (tmp_path / f"{name}.csv").write_text(text.strip() + "\n")
    return tmp_path


def _issues(folder: Path, severity: str, text: str = "") -> list:
    return [i for i in validate_study(folder) if i.severity == severity and text in i.message]


SUBJ = "subject_id,age_years,disease,infusion_date\nS1,30,AML,2024-03-01\n"


# -- finding 1: the first CAR-T dose and day 0 --------------------------------------------------------


def test_first_car_t_after_day0_is_read_with_a_warning_naming_subject_row_and_engines(tmp_path):
    """Hand: fludarabine on day -5 (row 1), the only CAR-T on day 3 (row 2). Day 0 is "the infusion
    day", so either the days are shifted or the day-0 infusion is not recorded (doses.csv need not be
    complete): not invalid, but worth a warning on doses.csv row 2, column day, naming S1 and day 3,
    and saying CRS/ICANS and kinetics start there while ICAHT/response count from day 0."""
    f = _folder(tmp_path, subjects=SUBJ, doses="""
subject_id,day,agent,dose,unit
S1,-5,fludarabine,30,mg/m2
S1,3,CAR-T,1e6,cells/kg
""")
    s = read_study(f)  # read, not refused
    w = [i for i in s.warnings if "first CAR-T dose" in i.message]
    assert len(w) == 1
    assert (w[0].file, w[0].column, w[0].rows) == ("doses.csv", "day", [2])
    assert "subject 'S1'" in w[0].message and "on day 3," in w[0].message and "none is on day 0" in w[0].message
    assert "ICAHT and the response assessments count from day 0" in w[0].message
    assert "CRS/ICANS are graded from day 3" in w[0].message


def test_car_t_datetime_days_after_the_infusion_date_warns_with_its_day(tmp_path):
    """Hand: infusion_date 2024-03-01 is day 0; a CAR-T dated 2024-03-04T10:00 is day 3 + 10/24 =
    3.4167 (calendar day 3): after day 0 with none on day 0 -> warning on column datetime, row 1."""
    f = _folder(tmp_path, subjects=SUBJ, doses="""
subject_id,datetime,agent,dose,unit
S1,2024-03-04T10:00,CAR-T,1e6,cells/kg
""")
    w = _issues(f, "warning", "first CAR-T dose")
    assert [(i.column, i.rows) for i in w] == [("datetime", [1])]
    assert "dated 2024-03-04T10:00, day 3.4167 from infusion_date 2024-03-01 (calendar day 3)" in w[0].message
    assert not _issues(f, "error")


@pytest.mark.parametrize("dose_row, column, shown", [
    ("S1,-1,,CAR-T,1e6,cells/kg", "day", "on day -1,"),
    ("S1,-0.25,,CAR-T,1e6,cells/kg", "day", "on day -0.25 (calendar day -1)"),  # 18:00 the evening before
    ("S1,,2024-02-29T10:00,CAR-T,1e6,cells/kg", "datetime", "day -0.5833 from infusion_date 2024-03-01"),
])
def test_car_t_before_day0_is_an_error(tmp_path, dose_row, column, shown):
    """Hand: day 0 is the first CAR-T infusion, so no CAR-T dose can be on a calendar day < 0:
    day -1; day -0.25 (floor -1); 2024-02-29T10:00 = -1 + 10/24 = -0.5833 before the 1 March
    anchor. Each is one error on doses.csv row 1 naming S1; nothing is read."""
    f = _folder(tmp_path, subjects=SUBJ, doses=f"subject_id,day,datetime,agent,dose,unit\n{dose_row}\n")
    with pytest.raises(StudyValidationError) as err:
        read_study(f)
    e = [i for i in err.value.issues if "first CAR-T dose" in i.message]
    assert [(i.file, i.column, i.rows) for i in e] == [("doses.csv", column, [1])]
    assert "subject 'S1'" in e[0].message and shown in e[0].message and "before day 0" in e[0].message


def test_car_t_on_day0_or_later_dose_after_it_raises_nothing(tmp_path):
    """Hand: a split dose on days 0, 1, 2 has its first CAR-T on day 0; a timed infusion at 23:00 on
    the infusion date is day 0.9583 (calendar day 0); a subject with no CAR-T row has nothing to
    compare. No issue from the day-0 rule."""
    f = _folder(tmp_path, subjects="subject_id,infusion_date\nA,2024-03-01\nB,2024-03-01\nC,2024-03-01\n", doses="""
subject_id,day,datetime,agent,dose,unit
A,0,,CAR-T,1e5,cells/kg
A,1,,CAR-T,3e5,cells/kg
A,2,,CAR-T,6e5,cells/kg
B,,2024-03-01T23:00,tisagenlecleucel,1e6,cells/kg
C,-5,,fludarabine,30,mg/m2
""")
    assert not [i for i in validate_study(f) if "first CAR-T dose" in i.message]


def test_brand_names_are_car_t_and_unknown_subjects_are_not_reported_twice(tmp_path):
    """Hand: Kymriah is a CAR-T product (tisagenlecleucel), so S1's Kymriah on day 2 alone is a first
    CAR-T after day 0 -> warning on row 1; S2 is not in subjects -> only "unknown subject" (row 2),
    not also a day-0 issue."""
    f = _folder(tmp_path, subjects=SUBJ, doses="""
subject_id,day,agent,dose,unit
S1,2,Kymriah,1e6,cells/kg
S2,-3,CAR-T,1e6,cells/kg
""")
    issues = validate_study(f)
    day0 = [(i.severity, i.rows) for i in issues if "first CAR-T dose" in i.message]
    assert day0 == [("warning", [1])]
    assert [(i.column, i.rows) for i in issues if i.severity == "error"] == [("subject_id", [2])]


# -- finding 2: day and datetime both given --------------------------------------------------------------


def test_whole_day_with_a_datetime_on_that_date_is_read_at_the_datetime(tmp_path):
    """Hand: infusion_datetime 2024-03-01T10:00 -> day 0 is 1 March. CAR-T `0,2024-03-01T10:00`:
    10:00 of day 0 = 10/24 = 0.41667; CRP `14,2024-03-15T12:00`: noon of day 14 = 14.5 ("day 14.5 is
    noon of day 14"); intervention start_day 2 with start_datetime 2024-03-03T06:00 = 2.25. The whole
    day names the calendar day and the date-time its time, so each is accepted at the finer value."""
    f = _folder(tmp_path, subjects="subject_id,infusion_datetime\nS1,2024-03-01T10:00\n", doses="""
subject_id,day,datetime,agent,dose,unit
S1,0,2024-03-01T10:00,CAR-T,1e6,cells/kg
""", observations="""
subject_id,day,datetime,param,value,unit
S1,14,2024-03-15T12:00,CRP,40,mg/L
""", interventions="""
subject_id,start_day,start_datetime,category,agent
S1,2,2024-03-03T06:00,tocilizumab,tocilizumab
""")
    s = read_study(f)
    assert s.doses["day"].to_list() == pytest.approx([10 / 24])
    assert s.observations["day"].to_list() == [14.5]
    assert s.interventions["start_day"].to_list() == [2.25]
    assert not [i for i in s.warnings if "first CAR-T dose" in i.message]


def test_day_and_datetime_that_disagree_give_the_implied_day(tmp_path):
    """Hand (infusion_date 2024-03-01, day 0 = 1 March): 2024-03-15T12:00 is day 14.5, calendar day
    14. Row 1 day 3 (another calendar day), row 2 day 15 (noon of 15 March is still day 14), row 3
    day 14.25 (a fractional day 6 h off) -> errors on column day naming that day; row 4 day 14.5
    (equal) and row 5 day 14 with 23:59:40 on 14 March (13.99977, within a minute) are accepted."""
    f = _folder(tmp_path, subjects=SUBJ, observations="""
subject_id,day,datetime,param,value,unit
S1,3,2024-03-15T12:00,CRP,40,mg/L
S1,15,2024-03-15T12:00,CRP,41,mg/L
S1,14.25,2024-03-15T12:00,CRP,42,mg/L
S1,14.5,2024-03-15T12:00,TEMP,37,C
S1,14,2024-03-14T23:59:40,TEMP,37.2,C
""")
    errors = [i for i in validate_study(f) if i.severity == "error"]
    assert sorted(r for i in errors for r in i.rows) == [1, 2, 3]
    assert {i.column for i in errors} == {"day"}
    first = next(i for i in errors if i.rows == [1])
    assert first.message.startswith("day 3 disagrees with datetime 2024-03-15T12:00, which is day 14.5 "
                                    "(calendar day 14) from infusion_date 2024-03-01 (day 0 = 2024-03-01)")
    assert "give one of them or make them agree" in first.message


# -- findings 3 and 4: messages ------------------------------------------------------------------------


def test_missing_unit_column_names_the_rows_that_need_a_unit(tmp_path):
    """Hand: ICE is a score without unit (rows 1, 4 need none); CRP (row 2) and NEUT (row 3) have
    units ("unit: when value has a unit") -> one error, column unit, rows [2, 3]."""
    f = _folder(tmp_path, subjects=SUBJ, observations="""
subject_id,day,param,value
S1,3,ICE,8
S1,4,CRP,40
S1,4,NEUT,0.4
S1,5,ICE,9
""")
    e = [i for i in validate_study(f) if i.severity == "error"]
    assert [(i.column, i.rows) for i in e] == [("unit", [2, 3])]
    assert "no 'unit' column" in e[0].message and "CRP, NEUT" in e[0].message and "(2 rows)" in e[0].message


def test_unknown_subject_with_a_datetime_is_one_error(tmp_path):
    """Hand: S2 is not in subjects -> "unknown subject 'S2'" (row 1, column subject_id), and nothing
    about its missing infusion date: it has no subjects row to have one."""
    f = _folder(tmp_path, subjects=SUBJ, observations="""
subject_id,datetime,param,value,unit
S2,2024-03-05T10:00,CRP,40,mg/L
""")
    e = [i for i in validate_study(f) if i.severity == "error"]
    assert [(i.column, i.rows) for i in e] == [("subject_id", [1])]
    assert "unknown subject 'S2'" in e[0].message


def test_known_subject_without_anchor_still_gets_the_anchor_error(tmp_path):
    """Hand: S1 is in subjects without infusion_date/infusion_datetime; its datetime row has nothing
    to anchor it ("then subjects.infusion_date ... anchors it") -> the error on column datetime stays."""
    f = _folder(tmp_path, subjects="subject_id\nS1\n", observations="""
subject_id,datetime,param,value,unit
S1,2024-03-05T10:00,CRP,40,mg/L
""")
    e = [i for i in validate_study(f) if i.severity == "error"]
    assert [(i.column, i.rows) for i in e] == [("datetime", [1])]
    assert "has no infusion_date or infusion_datetime" in e[0].message
