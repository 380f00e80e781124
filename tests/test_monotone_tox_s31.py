"""Session 31 monotonicity audit of the toxicity engines (/work/notes/audit_monotone_tox): adding the
missing input must give a grade inside the range the day had without it (missing is not negative).
Expected grades by hand from ASTCT 2019 (Lee et al.), Tables 1 and 4, quoted inline."""

from __future__ import annotations

import polars as pl
import pytest

from cartlab.grading.crs import derive_crs_daily
from cartlab.grading.icans import derive_icans_daily
from cartlab.io import read_study


def _study(tmp_path, obs: str = "", iv: str = ""):
    (tmp_path / "subjects.csv").write_text("subject_id,age_years\nS1,50\n")
    (tmp_path / "observations.csv").write_text("subject_id,day,param,value,value_text,unit\n" + obs)
    (tmp_path / "events.csv").write_text("subject_id,day,event\n")  # none recorded (absent is unknown since s39)
    if iv:
        (tmp_path / "interventions.csv").write_text("subject_id,start_day,end_day,category,agent,indication\n" + iv)
    return read_study(tmp_path)


# -- ICANS: "ICE 0 ... grade 4 if the patient is unarousable" (Table 4): without LOC that is unknown ----

@pytest.mark.parametrize("loc, expected", [
    ("", (3, 4, ["LOC"])),                       # ICE 0 alone: 3 (ICE 0-2), could be 4
    ("S1,3,LOC,,unarousable,\n", (4, 4, [])),    # ICE 0 and unarousable: 4
    ("S1,3,LOC,,awakens_to_voice,\n", (3, 3, [])),  # LOC known (grade 2): 3 from the ICE score
])
def test_ice_zero_without_loc_is_three_that_could_be_four(tmp_path, loc, expected):
    d = derive_icans_daily(_study(tmp_path, "S1,3,ICE,0,,\n" + loc)).filter(pl.col("day") == 3).row(0, named=True)
    assert (d["grade"], d["grade_max"], d["missing_inputs"]) == expected


def test_ice_above_zero_without_loc_opens_nothing(tmp_path):
    # ICE 1: grade 3 (0-2) whatever the consciousness short of unarousable-with-ICE-0: no range
    d = derive_icans_daily(_study(tmp_path, "S1,3,ICE,1,,\n")).row(0, named=True)
    assert (d["grade"], d["grade_max"], d["missing_inputs"]) == (3, 3, [])


# -- CRS: "multiple vasopressors (excluding vasopressin)" = grade 4 (Table 1) --------------------------

FEVER = "S1,2,TEMP,39,,C\nS1,2,SYSBP,80,,mmHg\n"


@pytest.mark.parametrize("second, expected", [
    ("", (3, 4)),                      # an agent-less row: the same drug (3) or another (4)
    ("norepinephrine", (3, 3)),        # the same drug twice: one vasopressor
    ("vasopressin", (3, 3)),           # vasopressin never counts toward multiple
    ("phenylephrine", (4, 4)),         # two drugs other than vasopressin
])
def test_a_named_vasopressor_and_a_row_without_agent_is_a_range(tmp_path, second, expected):
    iv = f"S1,2,2,vasopressor,norepinephrine,CRS\nS1,2,2,vasopressor,{second},CRS\n"
    d = derive_crs_daily(_study(tmp_path, FEVER, iv)).filter(pl.col("day") == 2).row(0, named=True)
    assert (d["grade"], d["grade_max"]) == expected
