"""Session 32 review of the ASTCT CRS/ICANS engines (cases in notes/review32_tox).

Every expected value below is derived by hand from the standard's text quoted in the test, never
copied from cartlab's output: ASTCT 2019 (Lee et al., Biol Blood Marrow Transplant 2019;25:625),
Table 1 (CRS: fever >= 38.0 C; hypotension not requiring vasopressors = grade 2; the footnote "In
patients who have CRS then receive tocilizumab or steroids, fever is no longer required"), Table 4
(ICANS: ICE 0-2 = grade 3, ICE 0 and unarousable = 4), the study format ("day 0 is the first CAR-T
infusion"; "missing is not negative") and the PALS table (SBP < 70 + 2 x age, children 1-10 y).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from cartlab.grading.crs import CrsOptions, derive_crs_daily, derive_crs_summary
from cartlab.grading.icans import IcansOptions, derive_icans_daily, derive_icans_summary
from cartlab.io import read_study


def _study(tmp_path: Path, **tables: str):
    for name, text in tables.items():
        (tmp_path / f"{name}.csv").write_text(text.strip() + "\n")
    return read_study(tmp_path)


def _day(daily: pl.DataFrame, subject: str, day: int) -> dict:
    rows = daily.filter((pl.col("subject_id") == subject) & (pl.col("day") == day))
    assert rows.height == 1, rows
    return rows.row(0, named=True)


def test_fever_before_the_infusion_is_not_crs(tmp_path):
    """c02 P1/P2, c07 M3. Hand: ASTCT grades CRS "associated with immune effector cells", so a fever
    before the first CAR-T infusion is not CRS. P1: 38.5 C on day -3, afebrile days 0-1 -> grade 0,
    no onset. P2: infusion 14:00, 38.6 C at 09:00 the same day (before the cells), 37.0 later ->
    grade 0. M3: CAR-T dose on day 3, fever on day 1 -> day 1 not graded, day 5 37.0 C -> grade 0.
    The old reading (option first_day='all') gives P1 grade 1 (38.5 >= 38.0), onset day -3."""
    s = _study(tmp_path, subjects="""
subject_id,sex,age_years,infusion_datetime
P1,M,50,
P2,F,50,2024-03-01T14:00
M3,F,50,
""", observations="""
subject_id,day,datetime,param,value,unit
P1,-3,,TEMP,38.5,C
P1,0,,TEMP,37.0,C
P1,1,,TEMP,37.0,C
P2,,2024-03-01T09:00,TEMP,38.6,C
P2,,2024-03-01T20:00,TEMP,37.0,C
P2,,2024-03-02T08:00,TEMP,37.0,C
M3,1,,TEMP,38.6,C
M3,5,,TEMP,37.0,C
""", doses="""
subject_id,day,agent,dose,unit
M3,3,CAR-T,1e6,cells/kg
""")
    summ = {r["subject_id"]: r for r in derive_crs_summary(s).iter_rows(named=True)}
    for sid in ("P1", "P2", "M3"):
        assert summ[sid]["crs_grade_astct"] == 0 and summ[sid]["crs_onset_day"] is None, summ[sid]
    daily = derive_crs_daily(s)
    assert daily.filter(pl.col("subject_id") == "P1")["day"].to_list() == [0, 1]
    assert daily.filter(pl.col("subject_id") == "M3")["day"].to_list() == [5]
    old = {r["subject_id"]: r for r in derive_crs_summary(s, CrsOptions(first_day="all")).iter_rows(named=True)}
    assert old["P1"]["crs_grade_astct"] == 1 and old["P1"]["crs_onset_day"] == -3.0
    assert old["P2"]["crs_grade_astct"] == 1  # 38.6 at 09:00 on day 0 read again


def test_untimed_day_zero_fever_stays_on_the_infusion_day(tmp_path):
    """Hand: a whole-number day 0 says only "the infusion day" (spec "Time"); it is not before the
    infusion, so 38.2 C on day 0 after an infusion at 14:00 is a fever -> grade 1, onset day 0."""
    s = _study(tmp_path, subjects="""
subject_id,sex,age_years,infusion_datetime
U1,M,50,2024-03-01T14:00
""", observations="""
subject_id,day,param,value,unit
U1,0,TEMP,38.2,C
""")
    r = derive_crs_summary(s).row(0, named=True)
    assert r["crs_grade_astct"] == 1 and r["crs_onset_day"] == 0.0


def test_steroid_before_the_infusion_does_not_waive_fever(tmp_path):
    """c02 P3. Hand: the footnote waives fever "in patients who have CRS then receive tocilizumab or
    steroids"; dexamethasone on day -6 (before the cells) is not such a treatment, so on day 10
    (37.0 C, SBP 85 < 90, no fever) fever is still required -> grade 0. With first_day='all' (old
    reading) the waiver ran from day -6 and day 10 was grade 2 (SBP 85 < 90 without vasopressor)."""
    s = _study(tmp_path, subjects="""
subject_id,sex,age_years
P3,M,50
""", observations="""
subject_id,day,param,value,unit
P3,0,TEMP,37.0,C
P3,10,TEMP,37.0,C
P3,10,SYSBP,85,mmHg
""", interventions="""
subject_id,start_day,end_day,category,agent,indication
P3,-6,-6,corticosteroid,dexamethasone,
""")
    d10 = _day(derive_crs_daily(s), "P3", 10)
    assert d10["grade"] == 0 and not d10["fever_waived"]
    assert _day(derive_crs_daily(s, CrsOptions(first_day="all")), "P3", 10)["grade"] == 2


def test_tocilizumab_day_without_vitals_is_a_range(tmp_path):
    """c03 T1. Hand ("missing is not negative"): day 2 has tocilizumab for CRS and no temperature or
    SBP. With a fever it would be >= 1; the waiver starts that day, so an unmeasured SBP below 90 would
    make it 2 (hypotension without vasopressor). Expected: day 2 grade 0, grade_max 2, missing TEMP
    and SYSBP, the tocilizumab row cited; summary crs_grade_astct 0, crs_grade_astct_max 2."""
    s = _study(tmp_path, subjects="""
subject_id,sex,age_years
T1,F,50
""", observations="""
subject_id,day,param,value,unit
T1,0,TEMP,37.0,C
T1,1,TEMP,37.2,C
T1,3,TEMP,37.0,C
T1,3,SYSBP,120,mmHg
""", interventions="""
subject_id,start_day,end_day,category,agent,indication
T1,2,2,tocilizumab,tocilizumab,CRS
""")
    d2 = _day(derive_crs_daily(s), "T1", 2)
    assert (d2["grade"], d2["grade_max"]) == (0, 2)
    assert set(d2["missing_inputs"]) == {"TEMP", "SYSBP"}
    assert "interventions.csv:1" in d2["evidence"]
    r = derive_crs_summary(s).row(0, named=True)
    assert (r["crs_grade_astct"], r["crs_grade_astct_max"]) == (0, 2)


def test_censored_vitals_are_bounds(tmp_path):
    """c08 C1 and variants. Hand: ">39" C is above 38.0 -> fever; "<70" mmHg is below 90 -> grade 2
    hypotension without vasopressor: C1 grade 2 (definite). C3: "<37" C is not a fever and ">100"
    mmHg is not hypotension -> grade 0, definite. C4: ">37.9" C may or may not reach 38.0 and SBP
    ">100" rules hypotension out (>= 90), no oxygen: grade 0 without a fever, 1 with one -> grade 0
    up to 1, missing TEMP; the day is present, not dropped."""
    s = _study(tmp_path, subjects="""
subject_id,sex,age_years
C1,F,50
C3,F,50
C4,F,50
""", observations="""
subject_id,day,param,value,value_text,unit
C1,1,TEMP,,>39,C
C1,1,SYSBP,,<70,mmHg
C3,1,TEMP,,<37,C
C3,1,SYSBP,,>100,mmHg
C4,1,TEMP,,>37.9,C
C4,1,SYSBP,,>100,mmHg
""", interventions="subject_id,start_day,end_day,category")  # none given (session 37: absent = unknown)
    daily = derive_crs_daily(s)
    c1, c3, c4 = (_day(daily, sid, 1) for sid in ("C1", "C3", "C4"))
    assert (c1["grade"], c1["grade_max"]) == (2, 2) and c1["fever"]
    assert (c3["grade"], c3["grade_max"], c3["missing_inputs"]) == (0, 0, [])
    # C4: SBP > 100 rules hypotension out, so only the fever is open: 0 up to 1
    assert (c4["grade"], c4["grade_max"]) == (0, 1) and c4["missing_inputs"] == ["TEMP"]
    assert ">37.9" in c4["reason"]


def test_censored_ice_is_a_score_range(tmp_path):
    """c07 M2. Hand: ICE "<3" is an ICE of 0, 1 or 2 (a whole score): "ICE 0-2 = grade 3" (Table 4);
    ICE 0 with the patient unarousable is 4 and no level of consciousness is recorded -> grade 3 up
    to 4, missing LOC. ICE ">=7" with CAPD not used (adult) is 7-10: grade 0 (ICE 10) up to 1 (7-9)."""
    s = _study(tmp_path, subjects="""
subject_id,sex,age_years
M2,M,50
""", observations="""
subject_id,day,param,value,value_text,unit
M2,1,ICE,10,,
M2,3,ICE,,<3,
M2,5,ICE,,>=7,
""", events="subject_id,day,event")  # header only: no events recorded (an absent file is unknown, s39)
    daily = derive_icans_daily(s)
    d3, d5 = _day(daily, "M2", 3), _day(daily, "M2", 5)
    assert (d3["grade"], d3["grade_max"], d3["missing_inputs"]) == (3, 4, ["LOC"])
    assert (d5["grade"], d5["grade_max"]) == (0, 1)
    assert derive_icans_summary(s).row(0, named=True)["icans_grade_astct"] == 3


def test_icans_before_the_infusion_is_not_graded(tmp_path):
    """Hand: ICANS is neurotoxicity "associated with immune effector cells": ICE 5 on day -2 (grade 2
    by ICE 3-6) is before the cells; day 1 ICE 10 -> grade 0. first_day='all' reads day -2 again (2)."""
    s = _study(tmp_path, subjects="""
subject_id,sex,age_years
N1,M,50
""", observations="""
subject_id,day,param,value,unit
N1,-2,ICE,5,
N1,1,ICE,10,
""")
    assert derive_icans_summary(s).row(0, named=True)["icans_grade_astct"] == 0
    assert derive_icans_summary(s, IcansOptions(first_day="all")).row(0, named=True)["icans_grade_astct"] == 2


def test_pals_cutoff_with_missing_age_is_a_range(tmp_path):
    """c06 K3/K4 with age_adjusted_sbp. Hand (PALS): K3, age unknown, SBP 85 with fever: hypotension
    if the cut-off is above 85 (age > 7 y: 70 + 2 x 8 = 86, or > 10 y: 90), not for a younger child
    -> grade 1 (fever) up to 2, missing age_years. K4, age 5: cut-off 70 + 2 x 5 = 80, SBP 79 < 80
    -> grade 2, and the reason prints the cut-off 80, not the adult 90."""
    s = _study(tmp_path, subjects="""
subject_id,sex,age_years
K3,M,
K4,F,5
""", observations="""
subject_id,day,param,value,unit
K3,1,TEMP,38.5,C
K3,1,SYSBP,85,mmHg
K4,1,TEMP,38.5,C
K4,1,SYSBP,79,mmHg
""", interventions="subject_id,start_day,end_day,category")  # none given (session 37: absent = unknown)
    daily = derive_crs_daily(s, CrsOptions(age_adjusted_sbp=True))
    k3, k4 = _day(daily, "K3", 1), _day(daily, "K4", 1)
    assert (k3["grade"], k3["grade_max"]) == (1, 2) and "age_years" in k3["missing_inputs"]
    assert k4["grade"] == 2 and "SBP < 80 mmHg" in k4["reason"] and "90" not in k4["reason"]


def test_messages_show_the_values_that_decide(tmp_path):
    """c01 days 3/5, c04 E2. Hand: SBP 89.6 < 90 is hypotension, so the reason must not print "90
    (< 90)"; a nasal cannula at 6.5 L/min (> 6) is high flow, so its flow is shown; an unattributed
    death counted inside a CRS episode (fever day 5, death day 7) is grade 5 but was not "attributed
    to CRS" in the record."""
    s = _study(tmp_path, subjects="""
subject_id,sex,age_years
B1,M,50
""", observations="""
subject_id,day,param,value,unit
B1,3,TEMP,38.5,C
B1,3,SYSBP,89.6,mmHg
B1,5,TEMP,38.2,C
B1,5,SYSBP,110,mmHg
""", interventions="""
subject_id,start_day,end_day,category,o2_device,o2_flow_lpm,indication
B1,5,5,oxygen,nasal_cannula,6.5,CRS
""", events="""
subject_id,day,event,attribution
B1,7,death,
""")
    daily = derive_crs_daily(s)
    d3, d5, d7 = (_day(daily, "B1", d) for d in (3, 5, 7))
    assert "SBP min 89.6 mmHg (< 90)" in d3["reason"] and d3["grade"] == 2
    assert "6.5 L/min" in d5["reason"] and d5["grade"] == 3
    assert d7["grade"] == 5 and "attributed to CRS" not in d7["reason"]
