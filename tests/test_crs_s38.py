"""Session 38: ASTCT 2019 CRS fixes of review 38 (/work/notes/review38_crs/REPORT.md; fix in
/work/notes/fix38_crs/REPORT.md): A1 an end at 00:00, B5 a 0-dose vasopressor, B4 a CRS death after a
gap, B3 the open resolution, B2 a corticosteroid given for ICANS, B1 days with other rows only, C1 wording.

Expected values are derived by hand, never from cartlab's output:
- ASTCT 2019 (Lee DW et al., Biol Blood Marrow Transplant 2019;25:625) Table 1, as reproduced in
  PMC8021214 Table 1: fever Tmax >= 38 C = grade 1; hypotension not requiring vasopressors = 2
  (SBP < 90 mmHg, the spec's adult cut-off); requiring a vasopressor = 3; multiple vasopressors
  (excluding vasopressin) = 4; death due to CRS = 5. The day's grade is the highest of them, with a
  fever (or after tocilizumab/steroids: the footnote's fever waiver).
- study-format.md "Derivation conventions": an intervention covers every day from start_day to
  end_day inclusive; day 14.5 is noon of day 14; the waiver runs from the first tocilizumab or
  corticosteroid given for CRS; crs_resolution_day = the last day with grade >= 1.
- The day numbers: infusion 2024-01-01T14:00 is day 0 (calendar day of the infusion), so
  2024-01-03 is day 2 and 2024-01-04T00:00 is day 3.0.
"""

from __future__ import annotations

import csv
import warnings

import polars as pl
import pytest

from cartlab.grading.common import expand_days
from cartlab.grading.crs import CrsOptions, derive_crs_daily, derive_crs_episodes, derive_crs_summary
from cartlab.io import read_study

warnings.simplefilter("ignore")

SUBJECT = {"subject_id": "S1", "sex": "M", "age_years": 50, "weight_kg": 70, "disease": "LBCL",
           "infusion_datetime": "2024-01-01T14:00:00"}


def _write(path, rows, header=None):
    cols = list(dict.fromkeys(k for r in rows for k in r)) or header
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r.get(k) is None else r[k] for k in cols})


def study(tmp_path, obs=(), iv=(), ev=None):
    _write(tmp_path / "subjects.csv", [SUBJECT])
    _write(tmp_path / "doses.csv", [{"subject_id": "S1", "day": 0, "agent": "CAR-T", "dose": 1e6, "unit": "cells/kg"}])
    _write(tmp_path / "observations.csv", list(obs))
    _write(tmp_path / "interventions.csv", list(iv),
           ["subject_id", "start_day", "end_day", "category", "agent", "indication"])
    if ev is not None:
        _write(tmp_path / "events.csv", list(ev), ["subject_id", "day", "event", "attribution"])
    return read_study(tmp_path)


def obs(day, param, value, unit):
    return {"subject_id": "S1", "day": day, "param": param, "value": value, "unit": unit}


def T(day, v):
    return obs(day, "TEMP", v, "C")


def B(day, v):
    return obs(day, "SYSBP", v, "mmHg")


def grades(daily):
    return {r["day"]: r["grade"] for r in daily.iter_rows(named=True)}


def day_row(daily, day):
    return daily.filter(pl.col("day") == day).row(0, named=True)


NOREPI_TO_MIDNIGHT = {"subject_id": "S1", "start_datetime": "2024-01-03T10:00:00", "end_datetime": "2024-01-04T00:00:00",
                      "category": "vasopressor", "agent": "norepinephrine", "indication": "CRS"}


# ---------------------------------------------------------------------------------------------- A1
def test_expand_days_end_at_midnight_covers_up_to_the_day_before():
    """start 2.4167 (10:00 of day 2) to end 3.0 written as 2024-01-04T00:00: it ended at the start of
    day 3, so it covers day 2 only; a whole end_day 3 (no date-time) keeps the spec's inclusive day 3."""
    timed = pl.DataFrame({"start_day": [2 + 10 / 24], "end_day": [3.0], "end_datetime": ["2024-01-04T00:00:00"]})
    assert expand_days(timed)["d"].to_list() == [2]
    date_only = timed.with_columns(pl.lit("2024-01-04").alias("end_datetime"))
    assert expand_days(date_only)["d"].to_list() == [2, 3]
    whole = timed.drop("end_datetime")
    assert expand_days(whole)["d"].to_list() == [2, 3]


def test_vasopressor_stopped_at_midnight_does_not_count_the_next_day(tmp_path):
    """Day 2: fever + SBP 85 + norepinephrine (10:00 onward) = 3; day 3: fever, SBP 120, no
    vasopressor ran (it stopped at 00:00) = 1 (review 38 p6: cartlab gave 3)."""
    st = study(tmp_path, [T(2, 38.5), B(2, 85), T(3, 38.5), B(3, 120)], [NOREPI_TO_MIDNIGHT])
    assert grades(derive_crs_daily(st)) == {2: 3, 3: 1}


def test_midnight_stop_then_another_vasopressor_is_not_multiple(tmp_path):
    """Day 3: norepinephrine stopped at 00:00, phenylephrine 08:00-20:00, fever, SBP 84: one
    vasopressor on calendar day 3 = grade 3, not 4 (review 38 p6b); the course grade is 3."""
    phe = {"subject_id": "S1", "start_datetime": "2024-01-04T08:00:00", "end_datetime": "2024-01-04T20:00:00",
           "category": "vasopressor", "agent": "phenylephrine", "indication": "CRS"}
    st = study(tmp_path, [T(2, 38.5), B(2, 85), T(3, 38.5), B(3, 84)], [NOREPI_TO_MIDNIGHT, phe])
    daily = derive_crs_daily(st)
    assert grades(daily) == {2: 3, 3: 3}
    assert derive_crs_summary(st, daily=daily)["crs_grade_astct"].to_list() == [3]


def test_date_only_end_keeps_the_inclusive_day(tmp_path):
    """end_datetime 2024-01-04 (a date alone: some time on day 3): the row covers day 3 (spec), so
    fever + vasopressor on day 3 = 3."""
    iv = {**NOREPI_TO_MIDNIGHT, "end_datetime": "2024-01-04"}
    st = study(tmp_path, [T(2, 38.5), B(2, 85), T(3, 38.5), B(3, 120)], [iv])
    assert grades(derive_crs_daily(st)) == {2: 3, 3: 3}


# ---------------------------------------------------------------------------------------------- B5
def _vaso(day, dose=None, agent="norepinephrine"):
    return {"subject_id": "S1", "start_day": day, "end_day": day, "category": "vasopressor", "agent": agent,
            "dose": dose, "dose_unit": "ug/kg/min" if dose is not None else None, "indication": "CRS"}


def test_zero_dose_vasopressor_is_not_a_vasopressor_given(tmp_path):
    """Fever + SBP 85 every day. Day 1 norepinephrine dose 0 -> SBP < 90 without a vasopressor = 2,
    the row named "dose 0: not counted"; day 2 dose 0.05 -> 3; day 3 no dose recorded -> 3 (counted).
    Day 4: norepinephrine 0.1 + phenylephrine dose 0 -> one vasopressor = 3, not 4."""
    o = [x for d in (1, 2, 3, 4) for x in (T(d, 38.5), B(d, 85))]
    st = study(tmp_path, o, [_vaso(1, 0), _vaso(2, 0.05), _vaso(3), _vaso(4, 0.1), _vaso(4, 0, "phenylephrine")])
    daily = derive_crs_daily(st)
    assert grades(daily) == {1: 2, 2: 3, 3: 3, 4: 3}
    d1 = day_row(daily, 1)
    assert "vasopressor norepinephrine (interventions.csv:1) dose 0: not counted" in d1["reason"]
    assert "interventions.csv:1" in d1["evidence"]
    assert "phenylephrine (interventions.csv:5) dose 0: not counted" in day_row(daily, 4)["reason"]


# ---------------------------------------------------------------------------------------------- B4
def _fever_then_death(tmp_path, death_day=10):
    o = [x for d in (1, 2, 3) for x in (T(d, 38.6), B(d, 120))]
    return study(tmp_path, o, [], [{"subject_id": "S1", "day": death_day, "event": "death", "attribution": "CRS"}])


def test_crs_death_after_a_gap_joins_the_episode(tmp_path):
    """Fever days 1-3 (grade 1), death attributed to CRS on day 10 (grade 5, the fatal outcome of that
    CRS): one episode days 1-10, grade 5; crs_n_episodes 1 (review 38 p4: 2 episodes)."""
    st = _fever_then_death(tmp_path)
    s = derive_crs_summary(st).row(0, named=True)
    assert (s["crs_grade_astct"], s["crs_n_episodes"], s["crs_episode"], s["crs_resolution_day"]) == (5, 1, "1", 10.0)
    ep = derive_crs_episodes(st)
    assert ep.select("ASTDY", "AENDY", "ADURN", "ATOXGR").rows() == [(1, 10, 10, 5)]


def test_death_joins_episode_false_keeps_the_old_split(tmp_path):
    """death_joins_episode=False: the gap (days 4-9 > episode_join_gap_days 1) splits: 2 episodes."""
    st = _fever_then_death(tmp_path)
    s = derive_crs_summary(st, CrsOptions(death_joins_episode=False)).row(0, named=True)
    assert (s["crs_n_episodes"], s["crs_episode"]) == (2, "1-2")


# ---------------------------------------------------------------------------------------------- B3
def test_resolution_left_open_by_days_without_temperature(tmp_path):
    """Fever days 1-3; days 4-5 SBP only (no TEMP: each could be a fever day, grade 0-1); day 6
    T 37.0. crs_resolution_day stays 3 (spec: last day with grade >= 1); the last CRS day could be 5."""
    o = [T(1, 38.5), B(1, 120), T(2, 38.5), B(2, 120), T(3, 38.5), B(3, 120), B(4, 120), B(5, 120), T(6, 37.0), B(6, 120)]
    s = derive_crs_summary(study(tmp_path, o)).row(0, named=True)
    assert s["crs_resolution_day"] == 3.0
    assert s["crs_resolution_day_latest"] == 5.0
    assert s["crs_resolution_open"] == "day(s) 4, 5: TEMP not recorded"


def test_settled_resolution_has_no_latest(tmp_path):
    """Fever day 1, day 2 T 37.0: nothing after day 1 could be CRS -> latest null."""
    s = derive_crs_summary(study(tmp_path, [T(1, 38.5), B(1, 120), T(2, 37.0), B(2, 120)])).row(0, named=True)
    assert (s["crs_resolution_day"], s["crs_resolution_day_latest"], s["crs_resolution_open"]) == (1.0, None, None)


# ---------------------------------------------------------------------------------------------- B2
def _steroid_for_icans(tmp_path):
    """Fever days 1-2 (SBP 120); dexamethasone day 3 for ICANS; day 4 T 37.0, SBP 85."""
    o = [T(1, 38.5), B(1, 120), T(2, 38.5), B(2, 120), T(4, 37.0), B(4, 85)]
    dex = {"subject_id": "S1", "start_day": 3, "end_day": 3, "category": "corticosteroid", "agent": "dexamethasone",
           "indication": "ICANS"}
    return study(tmp_path, o, [dex])


def test_steroid_for_icans_named_on_its_day_and_on_the_afebrile_day(tmp_path):
    """Spec default (given for CRS): day 4 is afebrile hypotension without the waiver = 0, and its
    reason names the dexamethasone row and why it does not waive; day 3 (the row's own day, no vital
    signs) is not graded under observed_days=vitals: a row CRS does not count adds no day (review 38
    diff1 F2; observed_days=any_row grades it)."""
    daily = derive_crs_daily(_steroid_for_icans(tmp_path))
    assert grades(daily) == {1: 1, 2: 1, 4: 0}
    d4 = day_row(daily, 4)
    assert d4["rule"] == "crs.no_fever"
    assert "dexamethasone (interventions.csv:1) on day 3 not counted: indication ICANS" in d4["reason"]
    assert "does not waive the fever" in d4["reason"]
    assert "interventions.csv:1" in d4["evidence"]


def test_waiver_indications_icans_waives_the_fever(tmp_path):
    """waiver_indications [CRS, ICANS] (ASTCT footnote: "tocilizumab or steroids", no indication):
    the waiver runs from day 3, so day 4 SBP 85 < 90 without a vasopressor = 2."""
    daily = derive_crs_daily(_steroid_for_icans(tmp_path), CrsOptions(waiver_indications=("CRS", "ICANS")))
    assert grades(daily)[4] == 2


def test_waiver_indications_does_not_count_oxygen_for_icans(tmp_path):
    """waiver_indications widens the waiver only: oxygen given for ICANS on a fever day stays excluded
    (counted_indications [CRS]): fever + SBP 120 = 1."""
    o2 = {"subject_id": "S1", "start_day": 1, "end_day": 1, "category": "oxygen", "o2_device": "face_mask",
          "indication": "ICANS"}
    st = study(tmp_path, [T(1, 38.5), B(1, 120)], [o2])
    assert grades(derive_crs_daily(st, CrsOptions(waiver_indications=("CRS", "ICANS")))) == {1: 1}


# ---------------------------------------------------------------------------------------------- B1
def _labs_between(tmp_path):
    """Fever day 1 (SBP 120), creatinine only on days 2 and 3, T 37.0 + SBP 118 day 4; an empty
    interventions.csv (no vasopressor given)."""
    o = [T(1, 38.5), B(1, 120), {**obs(2, "CREAT", 80, "umol/L"), "uln": 100, "lln": 50},
         {**obs(3, "CREAT", 85, "umol/L"), "uln": 100, "lln": 50}, T(4, 37.0), B(4, 118)]
    return study(tmp_path, o)


def test_observed_days_any_row_grades_days_with_other_rows(tmp_path):
    """any_row: days 2 and 3 have no temperature and no SBP: a fever (1) and with it SBP < 90 without
    a vasopressor (2) were possible -> 0 up to 2 naming TEMP and SYSBP; crs_grade_astct_max 2 and
    the resolution could be day 3."""
    st = _labs_between(tmp_path)
    opts = CrsOptions(observed_days="any_row")
    daily = derive_crs_daily(st, opts)
    for d in (2, 3):
        r = day_row(daily, d)
        assert (r["grade"], r["grade_max"], sorted(r["missing_inputs"])) == (0, 2, ["SYSBP", "TEMP"])
        assert "option observed_days=any_row" in r["reason"]
    s = derive_crs_summary(st, opts, daily).row(0, named=True)
    assert (s["crs_grade_astct"], s["crs_grade_astct_max"], s["crs_resolution_day_latest"]) == (1, 2, 3.0)


def test_observed_days_default_vitals_unchanged(tmp_path):
    """Default vitals: only days 1 and 4 are graded (cartlab before session 38): max 1."""
    st = _labs_between(tmp_path)
    daily = derive_crs_daily(st)
    assert sorted(grades(daily)) == [1, 4]
    assert derive_crs_summary(st, daily=daily)["crs_grade_astct_max"].to_list() == [1]


# ---------------------------------------------------------------------------------------------- C1
def test_vasopressor_row_without_agent_wording(tmp_path):
    """A vasopressor row with no agent is named as such, not as a name missing from the vocabulary."""
    st = study(tmp_path, [T(1, 38.5), B(1, 85)], [_vaso(1, None, None)])
    r = day_row(derive_crs_daily(st), 1)
    assert r["grade"] == 3  # fever + a vasopressor
    assert "a vasopressor row without an agent: counted as one unspecified vasopressor" in r["reason"]
    assert "not in the vasopressor vocabulary" not in r["reason"]


@pytest.mark.parametrize("field", ["observed_days", "death_joins_episode", "waiver_indications"])
def test_new_options_are_documented(field):
    """Each new option is a criteria-table default with a conventions row (rules are data)."""
    from cartlab.grading.common import load_criteria

    t = load_criteria("astct_crs_2019")
    assert field in t["defaults"]
    assert any(field in c["options"] for c in t["conventions"])
