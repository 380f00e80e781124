"""Shared fixtures: small valid study folders written on the fly."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# The CLI's rich consoles are made when cartlab.cli is imported, and rich fixes their width then if
# COLUMNS is set (CI sets COLUMNS=80). The in-process tests pass their own COLUMNS to CliRunner, so
# the width must be read when the command prints, not frozen at import (session 43: two tests failed
# on CI only, their expected text wrapped at 80 columns).
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

from cartlab.datasets import seed_case_path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(text.strip() + "\n", encoding="utf-8")
    return p


@pytest.fixture
def small_study(tmp_path: Path) -> Path:
    """A valid two-subject study using several unit spellings, datetimes and an extra column."""
    f = tmp_path / "small"
    write(f, "subjects.csv", """
subject_id,sex,age_years,weight_kg,height_cm,disease,target,infusion_date,site
S1,F,17,52,160,AML,CD7,2022-01-10,Suzhou
S2,M,40,80,180,B-ALL,CD19,,Boston
""")
    write(f, "doses.csv", """
subject_id,day,agent,dose,unit
S1,-5,fludarabine,30,mg/m2
S1,0,CAR-T,1e6,cells/kg
S2,0,CAR-T,1,10^6 cells/kg
""")
    write(f, "observations.csv", """
subject_id,day,datetime,param,analyte,value,value_text,unit,lln,uln,lloq,specimen
S1,0,,TEMP,,100.4,,F,,,,
S1,,2022-01-11T12:00,NEUT,,500,,/uL,1500,,,PB
S1,1,,CARCOPY,,,<50,copies/ug gDNA,,,50,PB
S1,14,,CARCOPY,,183945,,copies/ug gDNA,,,50,PB
S1,17,,MRDFCM,,2.5e-4,,,,,,BM
S1,17,,MOLAR,FLT3-ITD,5.9,,%,,,,BM
S1,3,,LOC,,,alert,,,,,
S2,2,,CRP,,3,,mg/dL,,0.5,,
S2,2,,BILI,,1.2,,mg/dL,,1.2,,
S2,2,,K,,4.1,,mEq/L,3.5,5.1,,
""")
    write(f, "interventions.csv", """
subject_id,start_day,end_day,category,agent,dose,dose_unit,o2_device,o2_flow_lpm,indication
S1,8,10,vasopressor,norepinephrine,0.08,ug/kg/min,,,CRS
S1,8,,oxygen,,,,nasal_cannula,2,CRS
""")
    write(f, "events.csv", """
subject_id,day,event,detail,attribution
S1,60,allo_hsct,HSCT,
S2,5,seizure,,ICANS
""")
    return f


@pytest.fixture
def seed_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "seed_case"
    shutil.copytree(seed_case_path(), dst)
    return dst
