"""Session 31: the metamorphic audit (/work/notes/audit_metamorph: transformations that must leave the
outputs of `cartlab analyze` unchanged). Each case is a minimised finding; the relation tested is the
transformation itself (same study, another spelling), expected values by hand where numbers are given."""

from __future__ import annotations

import math
from datetime import datetime

import polars as pl
import pytest

from cartlab.analyze import Analysis, AnalysisOptions
from cartlab.grading.crs import derive_crs_daily
from cartlab.io import read_study


# -- a Parquet timestamp column at 00:00 is a date column (pandas writes dates so) --------------------

def _interventions(tmp_path, fmt: str):
    d = tmp_path / fmt
    d.mkdir()
    (d / "subjects.csv").write_text("subject_id,disease,infusion_date\nP1,AML,2024-03-28\n")
    start = ["2024-03-29", "2024-03-30"]
    if fmt == "csv":
        (d / "interventions.csv").write_text(
            "subject_id,start_datetime,end_datetime,agent,category\n"
            + "".join(f"P1,{s},{s},norepinephrine,vasopressor\n" for s in start))
    else:
        ts = [datetime.fromisoformat(s) for s in start]
        pl.DataFrame({"subject_id": ["P1", "P1"], "start_datetime": ts, "end_datetime": ts,
                      "agent": ["norepinephrine"] * 2, "category": ["vasopressor"] * 2}).write_parquet(
            d / "interventions.parquet")
    return d


def test_parquet_midnight_timestamps_read_as_the_dates_a_csv_gives(tmp_path):
    csv = read_study(_interventions(tmp_path, "csv"))
    pq = read_study(_interventions(tmp_path, "parquet"))
    # the same dates: day 1 and day 2 after the 2024-03-28 infusion, known to the day only
    cols = ["start_datetime", "end_datetime", "start_day", "end_day"]
    assert pq.interventions.select(cols).to_dicts() == csv.interventions.select(cols).to_dicts()
    assert pq.interventions["start_datetime"].to_list() == ["2024-03-29", "2024-03-30"]
    assert any("every value is at 00:00: read as dates" in w.message for w in pq.warnings)


def test_parquet_timestamps_with_a_clock_time_stay_exact(tmp_path):
    d = tmp_path / "t"
    d.mkdir()
    (d / "subjects.csv").write_text("subject_id,disease,infusion_date\nP1,AML,2024-03-28\n")
    ts = [datetime(2024, 3, 29, 0, 0), datetime(2024, 3, 29, 18, 0)]  # one row not at midnight
    pl.DataFrame({"subject_id": ["P1", "P1"], "start_datetime": ts, "agent": ["norepinephrine"] * 2,
                  "category": ["vasopressor"] * 2}).write_parquet(d / "interventions.parquet")
    s = read_study(d)
    assert sorted(s.interventions["start_day"].to_list()) == [1.0, 1.75]  # 18:00 = 0.75 day
    assert not any("read as dates" in w.message for w in s.warnings)


# -- whole-day CAR-T samples after an infusion with a clock time --------------------------------------

def _kinetics(tmp_path):
    d = tmp_path / "k"
    d.mkdir()
    (d / "subjects.csv").write_text("subject_id,disease,infusion_datetime\nK1,B-ALL,2024-03-01T12:00\n")
    (d / "doses.csv").write_text("subject_id,day,agent,dose,unit\nK1,0,CAR-T,1000000,cells/kg\n")
    (d / "observations.csv").write_text("subject_id,day,param,value,unit\n"
                                        "K1,7,CARCOPY,1000,copies/ug\nK1,14,CARCOPY,10000,copies/ug\n"
                                        "K1,28,CARCOPY,500,copies/ug\n")
    return read_study(d)


def test_whole_day_samples_are_warned_about_as_date_only_samples(tmp_path):
    a = Analysis(_kinetics(tmp_path))
    k = a.table("car_kinetics").row(0, named=True)
    assert k["tmax"] == pytest.approx(13.5, abs=1e-9)  # day 14 00:00 is 13.5 days after day 0 12:00
    msgs = [w["message"] for w in a.warnings if "dates without a clock time" in w["message"]]
    assert len(msgs) == 1 and msgs[0].endswith(": K1")


def test_calendar_day_counts_whole_day_samples_in_whole_days(tmp_path):
    a = Analysis(_kinetics(tmp_path), AnalysisOptions.from_settings({"kinetics": {"date_only_samples": "calendar_day"}}))
    k = a.table("car_kinetics").row(0, named=True)
    assert (k["tmax"], k["tlast"]) == (14.0, 28.0)
    # lin-up/log-down 0-28 (0 at the infusion): 0-7 up 3,500; 7-14 up 38,500; 14-28 down (log)
    # (10000 - 500) * 14 / ln(20) = 44,396.45
    assert k["auc_window"] == pytest.approx(3500 + 38500 + 9500 * 14 / math.log(20), rel=1e-9)


# -- the CRS fever-waiver reason does not depend on the file's row order ------------------------------

@pytest.mark.parametrize("order", [("tocilizumab", "corticosteroid"), ("corticosteroid", "tocilizumab")])
def test_fever_waiver_reason_names_every_category_of_its_first_day(tmp_path, order):
    d = tmp_path / "w"
    d.mkdir()
    (d / "subjects.csv").write_text("subject_id,age_years\nP1,50\n")
    agent = {"tocilizumab": "tocilizumab", "corticosteroid": "dexamethasone"}
    (d / "interventions.csv").write_text("subject_id,start_day,agent,category\n"
                                         + "".join(f"P1,3,{agent[c]},{c}\n" for c in order))
    (d / "observations.csv").write_text("subject_id,day,param,value,unit\nP1,2,TEMP,39.0,C\nP1,4,TEMP,37.0,C\n"
                                        "P1,4,SYSBP,80,mmHg\n")
    daily = derive_crs_daily(read_study(d))
    reasons = " ".join(daily["reason"].drop_nulls().to_list())
    assert "fever not required since day 3 (corticosteroid, tocilizumab)" in reasons
