"""Session 38, lead's fixes (each test fails on the code before it)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from cartlab.io import read_study, validate_study


def mk(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8", newline="")
    return root


def offset_warnings(folder: Path) -> list[str]:
    return [str(i) for i in validate_study(folder) if i.severity == "warning" and "UTC offsets" in str(i)]


# --- a daylight-saving change is the site's clock, not mixed clocks (left over from review 37 B4)

def test_daylight_saving_changes_are_not_mixed_offsets(tmp_path):
    # Paris (CET +01:00 / CEST +02:00; EU summer time 31 Mar - 27 Oct 2024): infusion in March at +01:00,
    # readings after the spring change at +02:00 and after the autumn change at +01:00 again. Two changes of
    # one hour, 210 days apart: one zone's clock, written as local time, as the spec asks.
    folder = mk(tmp_path / "s", {
        "subjects.csv": "subject_id,disease,infusion_datetime\nS1,AML,2024-03-20T10:00+01:00\n",
        "observations.csv": "subject_id,day,datetime,param,value,unit\n"
                            "S1,,2024-03-25T08:00+01:00,TEMP,37,C\n"
                            "S1,,2024-04-05T08:00+02:00,TEMP,37,C\n"
                            "S1,,2024-10-28T08:00+01:00,TEMP,37,C\n",
    })
    assert offset_warnings(folder) == []
    # the documented rule (offsets not applied; spec "Time": calendar day + clock time) is unchanged:
    # 5 April is 16 calendar days after 20 March, 08:00 as written -> 16 + 8/24
    obs = read_study(folder).observations.sort("day")
    assert obs["day"][1] == pytest.approx(16 + 8 / 24)


@pytest.mark.parametrize("stamps", [
    # local time and UTC interleaved within days: changes of one hour, but 1 day apart, not a DST pattern
    ("2024-03-20T10:00+01:00", "2024-03-21T08:00Z", "2024-03-22T08:00+01:00"),
    # a two-hour change is no daylight-saving change
    ("2024-03-20T10:00+01:00", "2024-03-21T08:00-01:00", "2024-03-22T08:00-01:00"),
])
def test_mixed_clocks_are_still_warned(tmp_path, stamps):
    inf, a, b = stamps
    folder = mk(tmp_path / "s", {
        "subjects.csv": f"subject_id,disease,infusion_datetime\nS1,AML,{inf}\n",
        "observations.csv": f"subject_id,day,datetime,param,value,unit\nS1,,{a},TEMP,37,C\nS1,,{b},TEMP,37,C\n",
    })
    assert len(offset_warnings(folder)) == 2  # subjects.csv and observations.csv, as before


# --- count recovery with interventions.csv not given: platelet transfusions unknown, not "none given"

PLAT_COURSE = (50, 40, 30, 10, 8, 12, 25, 30, 35, 40, 45)  # x10^9/L on days 0..10


def _recovery_study(root: Path, interventions: str | None) -> Path:
    obs = "".join(f"S1,{d},PLAT,{v},10^9/L\nS1,{d},NEUT,{0.2 if 2 <= d <= 4 else 1.5},10^9/L\n"
                  for d, v in enumerate(PLAT_COURSE))
    files = {"subjects.csv": "subject_id,disease,infusion_date,last_followup_day\nS1,AML,2024-03-01,30\n",
             "observations.csv": "subject_id,day,param,value,unit\n" + obs}
    if interventions is not None:
        files["interventions.csv"] = interventions
    return mk(root, files)


def _platelet(folder: Path, **opts) -> dict:
    from cartlab.grading.count_recovery import RecoveryOptions, derive_count_recovery

    row = derive_count_recovery(read_study(folder), RecoveryOptions(**opts)).row(0, named=True)
    return {k.removeprefix("platelet_recovery_"): v for k, v in row.items() if k.startswith("platelet_recovery_")}


def test_platelet_recovery_without_interventions_file_is_a_range(tmp_path):
    # ASTCT (Kharfan-Dabaja, PMC11161398 Table 1): first of 3 consecutive days >= 20 without platelet
    # transfusion for 7 days, after the nadir. Nadir 8 on day 4; days 6, 7, 8 are 25, 30, 35 -> day 6 if no
    # transfusion was given. Without interventions.csv a transfusion is unknown, not absent: day 6 is the
    # earliest possible recovery and no later day is excluded.
    p = _platelet(_recovery_study(tmp_path / "none", None))
    assert p["status"] == "not_evaluable"
    assert p["day"] is None and p["day_min"] == 6 and p["day_max"] is None
    assert "recovery.absent_interventions" in p["rule"] and "interventions.csv not given" in p["reason"]
    # neutrophils have no transfusion rule: ANC 0.2 on days 2-4, >= 0.5 from day 5 -> day 5 as before
    from cartlab.grading.count_recovery import derive_count_recovery

    n = derive_count_recovery(read_study(tmp_path / "none")).row(0, named=True)
    assert n["neutrophil_recovery_status"] == "recovered" and n["neutrophil_recovery_day"] == 5


def test_platelet_recovery_with_empty_interventions_or_none_given_is_day_6(tmp_path):
    header = "subject_id,category,agent,start_day,end_day\n"
    assert _platelet(_recovery_study(tmp_path / "empty", header))["day"] == 6  # an empty file: none given
    p = _platelet(_recovery_study(tmp_path / "none", None), absent_interventions="none_given")
    assert p["status"] == "recovered" and p["day"] == 6 and p["day_max"] == 6


# --- explain --what response names a relapse without a marrow and the duration of response (review 38 B10)

def test_explain_response_names_an_event_relapse_and_the_duration(tmp_path):
    # ELN 2022: CR = BM blasts < 5 %, no circulating blasts, no EMD, ANC >= 1.0, PLT >= 100; relapse includes
    # "development of extramedullary disease". Day -7 marrow 40 %; day 28 BM 2 %, PB 0, ANC 1.5, PLT 150 -> CR;
    # EMD event on day 60 -> relapse on day 60; duration of response 60 - 28 = 32 days, ended by the relapse.
    def obs(day, bm, pb, anc, plt):
        return (f"S1,{day},BMBLAST,{bm},%,BM\n" + ("" if pb is None else f"S1,{day},PBBLAST,{pb},%,PB\n")
                + ("" if anc is None else f"S1,{day},NEUT,{anc},10^9/L,PB\nS1,{day},PLAT,{plt},10^9/L,PB\n"))
    folder = mk(tmp_path / "s", {
        "subjects.csv": "subject_id,disease,infusion_date,last_followup_day\nS1,AML,2024-03-01,120\n",
        "doses.csv": "subject_id,day,agent,dose,unit\nS1,0,CAR-T,1000000,cells/kg\n",
        "observations.csv": "subject_id,day,param,value,unit,specimen\n" + obs(-7, 40, None, None, None)
                            + obs(28, 2, 0, 1.5, 150),
        "events.csv": "subject_id,day,event\nS1,60,extramedullary_disease\n",
        "interventions.csv": "subject_id,category,agent,start_day,end_day\n",
    })
    from cartlab.explain import explain

    e = explain(read_study(folder), "response", "S1")
    assert "best response CR on day 28" in e.headline
    assert "Relapse on day 60" in e.headline and "Duration of response 32 days, ended on day 60" in e.headline
    rel = e.days.filter(pl.col("grade") == "relapse")
    assert rel["day"].to_list() == [60.0] and rel["evidence"][0].to_list() == ["events.csv:1"]


# --- explain lists long day sets as runs (new-user trial, session 38)

def test_days_text_compresses_runs_of_whole_days():
    from cartlab._days import days_text

    # by hand: 0,1,2 consecutive -> "0-2"; 3.5 a timed day on its own; 5 alone; 7,8 -> "7-8"; 10 alone
    assert days_text([8, 0, 1, 2, 5, 7, 3.5, 10, 2]) == "0-2, 3.5, 5, 7-8, 10"
    assert days_text([4]) == "4" and days_text([]) == ""
    assert days_text([-2, -1, 0]) == "-2 to 0"


@pytest.mark.parametrize("stamps", [
    # review 38 diff2 B5: one switch in June is no daylight-saving change (UTC, then local time)
    ("2024-06-01T10:00Z", "2024-06-05T08:00Z", "2024-06-12T08:00+01:00"),
    # two steps the same way (+00 -> +01 -> +02) are no daylight-saving clock
    ("2024-03-20T10:00Z", "2024-04-05T08:00+01:00", "2024-10-28T08:00+02:00"),
])
def test_other_offset_changes_are_still_warned(tmp_path, stamps):
    inf, a, b = stamps
    folder = mk(tmp_path / "s", {
        "subjects.csv": f"subject_id,disease,infusion_datetime\nS1,AML,{inf}\n",
        "observations.csv": f"subject_id,day,datetime,param,value,unit\nS1,,{a},TEMP,37,C\nS1,,{b},TEMP,37,C\n",
    })
    assert len(offset_warnings(folder)) == 2
