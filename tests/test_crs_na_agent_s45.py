"""Session 45, review 45 folder F1: a vasopressor agent written as a missing-value word is no second drug."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from cartlab.grading.crs import derive_crs_daily
from cartlab.io.study_folder import read_study


def _study(tmp_path: Path, second: str) -> Path:
    # day 3: Tmax 39 C, SBP 80, norepinephrine and a second vasopressor row whose agent is `second`
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "subjects.csv").write_text("subject_id,age_years,disease,infusion_date\nP1,40,AML,2024-03-01\n")
    (folder / "doses.csv").write_text("subject_id,day,agent,dose,unit\nP1,0,CAR-T,1e6,cells/kg\n")
    (folder / "observations.csv").write_text("subject_id,day,param,value,unit\nP1,3,TEMP,39,C\nP1,3,SYSBP,80,mmHg\n")
    (folder / "interventions.csv").write_text("subject_id,start_day,end_day,category,agent,indication\n"
                                             f"P1,3,3,vasopressor,norepinephrine,CRS\nP1,3,3,vasopressor,{second},CRS\n")
    (folder / "events.csv").write_text("subject_id,day,event\n")
    return folder


@pytest.mark.parametrize("second", ["NA", "N/A", "unknown", "none", "#N/A", "", "-"])
def test_missing_word_agent_is_one_unspecified_vasopressor(tmp_path, second):
    # ASTCT 2019 (Lee et al., BBMT 2019;25:625, Table 1): grade 3 "with a vasopressor with or without
    # vasopressin", grade 4 "multiple vasopressors (excluding vasopressin)". The second drug is unknown: it
    # could be vasopressin or the same norepinephrine (3) or another pressor (4) -> grade 3, up to 4 (by
    # hand; what an empty agent already gave). Before: NA/N/A/unknown counted as a drug of its own -> 4, 4-4.
    with pytest.warns(Warning):
        daily = derive_crs_daily(read_study(_study(tmp_path, second)))
    r = daily.filter(pl.col("day") == 3).row(0, named=True)
    assert (r["grade"], r["grade_min"], r["grade_max"]) == (3, 3, 4), r


def test_a_named_second_drug_is_still_grade_4(tmp_path):
    r = derive_crs_daily(read_study(_study(tmp_path, "epinephrine"))).filter(pl.col("day") == 3).row(0, named=True)
    assert (r["grade"], r["grade_min"], r["grade_max"]) == (4, 4, 4)
