"""Session 39 fixes of the study folder reader (review 39: A1, B1-B5, B7, B8, C2).

Every expected value is derived by hand from the study-format spec (/work/shared/spec/study-format.md),
the parameter dictionary's plausible ranges (src/cartlab/io/params_v1.yaml) or the review's decision,
as each test's comment says; none is copied from cartlab's output.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from cartlab.io import read_study, validate_study
from cartlab.io.course_checks import MIXED_OFFSETS
from cartlab.io.errors import Issue

SUBJ = "subject_id,sex,age_years,disease,infusion_date\nS1,F,40,AML,2024-03-01\n"
CART = "subject_id,day,agent,dose,unit\nS1,0,CAR-T,1e6,cells/kg\n"


def _study(tmp: Path, **files: str) -> Path:
    d = tmp / "study"
    d.mkdir(exist_ok=True)
    files.setdefault("subjects", SUBJ)
    for name, text in files.items():
        (d / f"{name}.csv").write_text(text, encoding="utf-8")
    return d


def _errors(issues: list[Issue]) -> list[Issue]:
    return [i for i in issues if i.severity == "error"]


def _warnings(issues: list[Issue], column: str | None = None) -> list[Issue]:
    return [i for i in issues if i.severity == "warning" and (column is None or i.column == column)]


# --- A1: lloq and a censored bound are checked against the plausible range, as value is --------------


def test_lloq_and_censored_bound_outside_the_plausible_range_are_errors(tmp_path):
    # params_v1.yaml: TEMP plausible [25, 45] degC, CARCOPY [0, 1e8] copies/ug gDNA; '>101' C and lloq
    # 5e9 are outside, so (as value 101 C is) each is an error naming its row and column
    obs = ("subject_id,day,param,value,value_text,unit,lloq\n"
           "S1,2,TEMP,,>101,C,\n"
           "S1,3,CARCOPY,20000,,copies/ug,\n"
           "S1,7,CARCOPY,90000,,copies/ug,5000000000\n")
    errs = _errors(validate_study(_study(tmp_path, doses=CART, observations=obs)))
    where = sorted((i.file, tuple(i.rows), i.column) for i in errs)
    assert where == [("observations.csv", (1,), "value_text"), ("observations.csv", (3,), "lloq")]
    assert all("plausible range" in i.message for i in errs)


def test_bounds_inside_the_plausible_range_stay_valid(tmp_path):
    # '<50' copies/ug and lloq 50 are inside [0, 1e8]; '>39' C inside [25, 45]: a valid study stays valid
    obs = ("subject_id,day,param,value,value_text,unit,lloq\n"
           "S1,2,TEMP,,>39,C,\n"
           "S1,3,CARCOPY,,<50,copies/ug,\n"
           "S1,7,CARCOPY,90000,,copies/ug,50\n")
    assert _errors(validate_study(_study(tmp_path, doses=CART, observations=obs))) == []


# --- B8: a misspelled optional column: a warning with "did you mean", still kept as an extra ----------


def test_misspelled_optional_column_is_named_and_kept(tmp_path):
    ev = "subject_id,day,event,atribution\nS1,3,seizure,other\n"
    d = _study(tmp_path, doses=CART, events=ev)
    issues = validate_study(d)
    w = _warnings(issues, "atribution")
    assert len(w) == 1 and w[0].file == "events.csv" and "did you mean 'attribution'?" in w[0].message
    study = read_study(d)
    assert "atribution" in study.events["extra"][0]  # still passed through (spec: extras are kept)


def test_a_far_extra_column_gets_no_hint(tmp_path):
    # 'site' is close to no events column: an ordinary extra column, no warning
    ev = "subject_id,day,event,site\nS1,3,seizure,FR\n"
    assert _warnings(validate_study(_study(tmp_path, doses=CART, events=ev)), "site") == []


# --- B7: infusion_datetime and the first CAR-T dose row at different clock times on day 0 -------------


def test_infusion_datetime_and_first_dose_time_disagree(tmp_path):
    # 10:00 = day 0.4167 (10/24), 16:00 = day 0.6667 (16/24): more than a minute apart -> one warning on
    # the dose row naming both times
    subj = "subject_id,sex,age_years,disease,infusion_datetime\nS1,F,40,AML,2024-03-01T10:00\n"
    doses = "subject_id,datetime,agent,dose,unit\nS1,2024-03-01T16:00,CAR-T,1e6,cells/kg\n"
    w = [i for i in validate_study(_study(tmp_path, subjects=subj, doses=doses)) if "infusion_datetime" in i.message
         and i.file == "doses.csv"]
    assert len(w) == 1 and w[0].rows == [1] and w[0].severity == "warning"
    assert "10:00" in w[0].message and "16:00" in w[0].message and "dose row" in w[0].message


def test_infusion_datetime_equal_to_the_dose_time_is_quiet(tmp_path):
    subj = "subject_id,sex,age_years,disease,infusion_datetime\nS1,F,40,AML,2024-03-01T10:00\n"
    doses = "subject_id,datetime,agent,dose,unit\nS1,2024-03-01T10:00,CAR-T,1e6,cells/kg\n"
    assert _warnings(validate_study(_study(tmp_path, subjects=subj, doses=doses))) == []


# --- B5: a UTC offset and no offset in one subject ---------------------------------------------------


def test_offset_and_no_offset_in_one_subject_warn(tmp_path):
    subj = "subject_id,sex,age_years,disease,infusion_datetime\nS1,F,40,AML,2024-03-01T10:00\n"
    doses = "subject_id,datetime,agent,dose,unit\nS1,2024-03-01T10:00,CAR-T,1e6,cells/kg\n"
    obs = ("subject_id,datetime,param,value,unit\nS1,2024-03-01T09:30Z,CARCOPY,500,copies/ug\n"
           "S1,2024-03-02T12:00,TEMP,37.0,C\n")
    w = [i for i in validate_study(_study(tmp_path, subjects=subj, doses=doses, observations=obs))
         if MIXED_OFFSETS in i.message]
    assert w and {i.file for i in w} == {"subjects.csv", "doses.csv", "observations.csv"}
    assert "no offset" in w[0].message and "+00:00" in w[0].message


def test_every_stamp_with_z_is_one_convention(tmp_path):
    subj = "subject_id,sex,age_years,disease,infusion_datetime\nS1,F,40,AML,2024-03-01T10:00Z\n"
    doses = "subject_id,datetime,agent,dose,unit\nS1,2024-03-01T10:00Z,CAR-T,1e6,cells/kg\n"
    obs = "subject_id,datetime,param,value,unit\nS1,2024-03-02T09:30Z,CARCOPY,500,copies/ug\n"
    issues = validate_study(_study(tmp_path, subjects=subj, doses=doses, observations=obs))
    assert not [i for i in issues if MIXED_OFFSETS in i.message]


# --- B2: an implausible age is one error, not one per row --------------------------------------------


def test_an_implausible_age_is_one_error(tmp_path):
    # spec/schema: age_years plausible [0, 120]; -3 is outside: the one error is on age_years, and the
    # rows of days 0-8 are not "before birth"
    subj = "subject_id,sex,age_years,disease,infusion_date\nS1,F,-3,AML,2024-03-01\n"
    obs = "subject_id,day,param,value,unit\n" + "".join(f"S1,{d},TEMP,37,C\n" for d in range(9))
    errs = _errors(validate_study(_study(tmp_path, subjects=subj, doses=CART, observations=obs)))
    assert [(i.file, i.rows, i.column) for i in errs] == [("subjects.csv", [1], "age_years")]


# --- B1: a Parquet study's course warnings name the Parquet files, without lines ---------------------


def test_parquet_course_warnings_name_the_parquet_files(tmp_path):
    d = _study(tmp_path,
               subjects="subject_id,sex,age_years,disease,infusion_date,last_followup_day\nS1,F,40,AML,2024-03-01,3\n",
               doses="subject_id,day,agent,dose,unit\nS1,-3,fludarabin,30,mg/m2\nS1,0,CAR-T,1e6,cells/kg\n",
               # days 5-6 after last_followup_day 3, day 9 after the death on day 8 (since session 39 a row after
               # a death gets only the death warning, not also the follow-up one)
               events="subject_id,day,event\nS1,8,death\n",
               observations="subject_id,day,param,value,unit\nS1,5,TEMP,37,C\nS1,6,TEMP,37,C\nS1,9,TEMP,37,C\n")
    for f in list(d.glob("*.csv")):
        pl.read_csv(f).write_parquet(f.with_suffix(".parquet"))
        f.unlink()
    w = _warnings(validate_study(d))
    files = {i.file for i in w}
    assert not any(f.endswith(".csv") for f in files), files
    assert {"observations.parquet", "doses.parquet"} <= files
    assert all("(line" not in str(i) for i in w)  # Parquet has no lines
    assert any("(events.parquet)" in i.message for i in w)
    assert any("(subjects.parquet row 1)" in i.message for i in w)
    # the absent interventions file is named in the study's format (C2)
    assert any(i.file == "interventions.parquet" and i.message.startswith("not given") for i in w)


# --- B3: a dose unit that does not fit the agent -----------------------------------------------------


def test_dose_unit_must_fit_the_agent_kind(tmp_path):
    doses = ("subject_id,day,agent,dose,unit\nS1,0,CAR-T,5,mg/m2\nS1,-3,fludarabine,1e6,cells/kg\n"
             "S1,20,DLI,1e7,cells/kg\n")  # a donor lymphocyte infusion is counted in cells: not checked
    w = _warnings(validate_study(_study(tmp_path, doses=doses)), "unit")
    assert sorted((i.file, tuple(i.rows)) for i in w) == [("doses.csv", (1,)), ("doses.csv", (2,))]


# --- B4: lines in JSON and for several rows ----------------------------------------------------------


def test_lines_in_json_and_multi_row_text(tmp_path):
    # a quoted cell spanning two lines: data row 2 is on line 4, row 3 on line 5 (header = line 1)
    ev = 'subject_id,day,event,detail\nS1,1,infection,"line one\nline two"\nS1,2,sezure,x\nS1,3,sezure,y\n'
    errs = _errors(validate_study(_study(tmp_path, doses=CART, events=ev)))
    e = next(i for i in errs if i.column == "event")
    assert e.rows == [2, 3] and e.to_dict()["lines"] == [4, 5]
    assert "rows 2 (line 4), 3 (line 5)" in str(e)
    assert "did you mean 'seizure'?" in e.message  # C2


def test_lines_default_and_parquet():
    assert Issue("a.csv", "x", "m", [1, 2]).to_dict()["lines"] == [2, 3]
    assert Issue("a.parquet", "x", "m", [1], lines={}).to_dict()["lines"] == [None]


# --- C2: small points --------------------------------------------------------------------------------


@pytest.mark.parametrize("written, hint", [("G-CSF", "gcsf"), ("steroid", "corticosteroid"),
                                           ("vasopressors", "vasopressor")])
def test_category_did_you_mean(tmp_path, written, hint):
    iv = f"subject_id,start_day,category\nS1,2,{written}\n"
    errs = _errors(validate_study(_study(tmp_path, doses=CART, interventions=iv)))
    assert len(errs) == 1 and f"did you mean '{hint}'?" in errs[0].message


def test_lln_above_uln_and_marrow_blasts_from_blood_warn(tmp_path):
    obs = ("subject_id,day,param,value,unit,lln,uln,specimen\n"
           "S1,3,NEUT,1.0,10^9/L,2.0,1.5,\n"
           "S1,28,BMBLAST,4,%,,,PB\n")
    issues = validate_study(_study(tmp_path, doses=CART, observations=obs))
    assert _errors(issues) == []
    assert [i.rows for i in _warnings(issues, "lln")] == [[1]]
    assert [i.rows for i in _warnings(issues, "specimen")] == [[2]]


def test_per_100_ml_is_per_decilitre(tmp_path):
    # 1 dL = 100 mL, so 12 g/100mL = 12 g/dL = 120 g/L (HGB canonical g/L)
    obs = "subject_id,day,param,value,unit\nS1,3,HGB,12,g/100mL\n"
    s = read_study(_study(tmp_path, doses=CART, observations=obs))
    assert s.observations["value"][0] == pytest.approx(120.0)
