"""Session 45: the study folder reader's edge cases found by review 45 (folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cartlab.io.study_folder import validate_study
from test_session38_lead import mk, offset_warnings  # the study-writing helpers of session 38

# --- review 45 F4: a daylight-saving change is judged by the tz database, not by the month

def test_utc_mixed_with_local_on_a_date_no_zone_changes_is_warned(tmp_path):
    # The reviewer's case: UTC (Z) stamps until 1 March 2024, then +01:00 from 2 March. No IANA zone goes
    # from +00:00 to +01:00 between 1 and 2 March 2024 (the EU change was on 31 March; Europe/London and
    # Europe/Lisbon stay at +00:00 until then), so this is a UTC feed mixed with local stamps: warned. The
    # month rule before this session exempted it (March is a daylight-saving month).
    folder = mk(tmp_path / "s", {
        "subjects.csv": "subject_id,disease,infusion_datetime\nP1,AML,2024-03-01T23:30+01:00\n",
        "observations.csv": "subject_id,datetime,param,value,unit\n"
                            "P1,2024-02-27T08:00Z,NEUT,1.2,10^9/L\n"
                            "P1,2024-03-01T23:00Z,CARCOPY,800,copies/ug\n"
                            "P1,2024-03-02T10:00+01:00,CARCOPY,2000,copies/ug\n"
                            "P1,2024-03-08T10:00+01:00,CARCOPY,50000,copies/ug\n",
    })
    assert len(offset_warnings(folder)) == 2  # subjects.csv and observations.csv


@pytest.mark.parametrize("stamps", [
    # Europe/London: GMT +00:00 until 31 March 2024 01:00 UTC, then BST +01:00 (a real change: not warned)
    ("2024-03-20T10:00Z", "2024-03-30T08:00Z", "2024-04-02T08:00+01:00"),
    # America/New_York: EST -05:00, EDT -04:00 from 10 March 2024
    ("2024-03-05T10:00-05:00", "2024-03-09T08:00-05:00", "2024-03-11T08:00-04:00"),
    # Australia/Sydney: AEDT +11:00 until 7 April 2024, then AEST +10:00 (southern hemisphere)
    ("2024-04-01T10:00+11:00", "2024-04-06T08:00+11:00", "2024-04-08T08:00+10:00"),
])
def test_a_real_daylight_saving_change_is_not_warned(tmp_path, stamps):
    inf, a, b = stamps
    folder = mk(tmp_path / "s", {
        "subjects.csv": f"subject_id,disease,infusion_datetime\nS1,AML,{inf}\n",
        "observations.csv": f"subject_id,day,datetime,param,value,unit\nS1,,{a},TEMP,37,C\nS1,,{b},TEMP,37,C\n",
    })
    assert offset_warnings(folder) == []


def test_a_change_on_the_wrong_date_is_warned(tmp_path):
    # -05:00 to -04:00 on 20 February 2024: New York changed on 10 March; no zone of the database does it
    # between 19 and 21 February 2024 (Havana: 10 March; Santiago goes the other way in April)
    folder = mk(tmp_path / "s", {
        "subjects.csv": "subject_id,disease,infusion_datetime\nS1,AML,2024-02-15T10:00-05:00\n",
        "observations.csv": "subject_id,day,datetime,param,value,unit\nS1,,2024-02-19T08:00-05:00,TEMP,37,C\n"
                            "S1,,2024-02-21T08:00-04:00,TEMP,37,C\n",
    })
    assert len(offset_warnings(folder)) == 2


# --- review 45 F6: Parquet column names are stripped as CSV ones are

def test_parquet_column_names_are_stripped(tmp_path):
    import polars as pl

    from cartlab.io.study_folder import read_study

    folder = tmp_path / "pq"
    folder.mkdir()
    pl.DataFrame({"subject_id ": ["P1"], " disease": ["AML"], "infusion_date": ["2024-03-01"]}).write_parquet(
        folder / "subjects.parquet")
    assert [i for i in validate_study(folder) if i.severity == "error"] == []
    st = read_study(folder)
    assert st.subjects["subject_id"].to_list() == ["P1"] and st.subjects["disease"].to_list() == ["AML"]


def test_parquet_names_that_clash_once_stripped_are_an_error(tmp_path):
    import polars as pl

    folder = tmp_path / "pq"
    folder.mkdir()
    pl.DataFrame({"subject_id": ["P1"], "subject_id ": ["P2"], "disease": ["AML"],
                  "infusion_date": ["2024-03-01"]}).write_parquet(folder / "subjects.parquet")
    errors = [str(i) for i in validate_study(folder) if i.severity == "error"]
    assert errors and any("subject_id" in e for e in errors)


# --- review 45 F5: hints for what was written where a number belongs

def _errors(folder: Path) -> list[str]:
    return [str(i) for i in validate_study(folder) if i.severity == "error"]


@pytest.mark.parametrize("cell, hint", [
    ("<50", "write it in value_text"),
    (">1e6", "write it in value_text"),
    ("BLQ", "write it in value_text"),
    ("5%", "% in unit"),
    ("#N/A", "leave the cell empty"),
])
def test_value_hints(tmp_path, cell, hint):
    folder = mk(tmp_path / "s", {
        "subjects.csv": "subject_id,disease,infusion_date\nP1,AML,2024-03-01\n",
        "observations.csv": f"subject_id,day,param,value,unit\nP1,3,CARCOPY,{cell},copies/ug\n",
    })
    errs = _errors(folder)
    assert len(errs) == 1 and f"got {cell!r}" in errs[0] and hint in errs[0], errs


def test_fio2_in_percent_hint(tmp_path):
    folder = mk(tmp_path / "s", {
        "subjects.csv": "subject_id,disease,infusion_date\nP1,AML,2024-03-01\n",
        "interventions.csv": "subject_id,start_day,category,o2_device,o2_flow_lpm,fio2\n"
                             "P1,3,oxygen,face_mask,8,40\n",
    })
    errs = _errors(folder)
    assert len(errs) == 1 and "FiO2 is a fraction: 40 % is 0.4" in errs[0], errs


# --- review 45 folder F3 / hemato F4: values that usually mean a wrong unit are warned about, read as given

def _warnings(folder: Path) -> list[str]:
    return [str(i) for i in validate_study(folder) if i.severity == "warning" and "is the unit right?" in str(i)]


@pytest.mark.parametrize("row, warned", [
    # 2.5 /uL: a count per uL with a fraction (a CBC reports whole cells per uL): 2.5 x10^3/uL meant
    ("NEUT,2.5,/uL", True),
    ("NEUT,2500,/uL", False),      # 2.5 x10^9/L as whole cells per uL
    ("NEUT,250,10^9/L", True),     # above 100 x10^9/L: /uL labelled 10^9/L (250 is inside plausible [0, 500])
    ("NEUT,0.05,10^9/L", False),   # aplasia is real
    ("HGB,10.5,g/L", True),        # below 30 g/L: g/dL labelled g/L
    ("HGB,105,g/L", False),
    ("HGB,10.5,g/dL", False),      # = 105 g/L
    ("CREAT,1.1,umol/L", True),    # below 10 umol/L: mg/dL labelled umol/L
    ("CREAT,1.1,mg/dL", False),    # = 97.2 umol/L
    ("FIBRINO,2.5,mg/dL", True),   # = 0.025 g/L, below 0.1 g/L
    ("FIBRINO,250,mg/dL", False),  # = 2.5 g/L
    ("CARCELL,0.5,cells/uL", False),  # flow counts of CAR+ cells per uL may have fractions
])
def test_suspicious_values_warned_and_read(tmp_path, row, warned):
    from cartlab.io.study_folder import read_study

    folder = mk(tmp_path / "s", {
        "subjects.csv": "subject_id,disease,infusion_date\nP1,AML,2024-03-01\n",
        "observations.csv": f"subject_id,day,param,value,unit\nP1,3,{row}\n",
    })
    w = _warnings(folder)
    assert bool(w) == warned, w
    if warned:
        assert "observations.csv" in w[0] and "value" in w[0] and "row 1" in w[0]
    assert [str(i) for i in validate_study(folder) if i.severity == "error"] == []
    assert read_study(folder).observations.height == 1  # read as given


# --- review 45 folder F2: a marker spelled in another letter case or with other separators is one marker

def test_marker_spellings_are_one_series(tmp_path):
    import polars as pl

    from cartlab.io.study_folder import read_study
    from cartlab.response.molecular import derive_antigen_loss, derive_molecular_response

    # P1: TGTBLAST CD7 95 % before, cd7 0.5 % on day 28; MOLVAF FLT3-ITD 30 % before, "flt3 itd" 0 on day 28.
    # P2: target cd7, TGTBLAST without analyte 95 % before (the target fills it in), CD7 0.5 % on day 28.
    # By hand: 95 % >= 30 % (antigen_negative_below_pct) before and 0.5 % < 30 % after -> antigen loss true
    # for both; FLT3-ITD 30 % -> 0: undetectable (molecular.undetectable), baseline 30.
    folder = mk(tmp_path / "s", {
        "subjects.csv": "subject_id,disease,target,infusion_date\nP1,AML,CD7,2024-03-01\nP2,AML,cd7,2024-03-01\n",
        "doses.csv": "subject_id,day,agent,dose,unit\nP1,0,CAR-T,1e6,cells/kg\nP2,0,CAR-T,1e6,cells/kg\n",
        "observations.csv": "subject_id,day,param,analyte,value,unit,specimen\n"
                            "P1,-7,TGTBLAST,CD7,95,%,BM\nP1,-7,BMBLAST,,40,%,BM\nP1,28,TGTBLAST,cd7,0.5,%,BM\n"
                            "P1,28,BMBLAST,,30,%,BM\nP2,-7,TGTBLAST,,95,%,BM\nP2,-7,BMBLAST,,40,%,BM\n"
                            "P2,28,TGTBLAST,CD7,0.5,%,BM\nP2,28,BMBLAST,,30,%,BM\n"
                            "P1,-7,MOLVAF,FLT3-ITD,30,%,BM\nP1,28,MOLVAF,flt3 itd,0,%,BM\n",
    })
    st = read_study(folder)
    al = derive_antigen_loss(st)
    assert al.height == 2 and al["antigen_loss"].to_list() == [True, True], al
    assert "written CD7 / cd7" in al.filter(pl.col("subject_id") == "P1")["reason"][0]
    mr = derive_molecular_response(st)
    assert mr.height == 1 and mr["rule"][0] == "molecular.undetectable" and mr["baseline"][0] == 30.0
    assert mr["analyte"][0] == "FLT3-ITD" and "written FLT3-ITD / flt3 itd" in mr["reason"][0]
