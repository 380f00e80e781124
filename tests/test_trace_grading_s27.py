"""Traceability audit s27 (notes/audit_trace/REPORT.md), findings 4-6, 8-10, 12b-c: what the CRS,
CTCAE, ICAHT, kinetics, EASIX and CAR-HEMATOTOX reasons and evidence say.

Every expected value below is derived by hand from the rows written in the test (the comment above
each assertion says how); row references are 1-based data rows (observations.csv:1 = line 2).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from cartlab.analyze import Analysis, AnalysisOptions
from cartlab.datasets import seed_case
from cartlab.explain import explain
from cartlab.grading.crs import CrsOptions, derive_crs_daily
from cartlab.io import read_study

SUBJECTS = """subject_id,sex,age_years,weight_kg,height_cm,disease,target,last_followup_day
S1,M,45,70,175,AML,CD7,60
"""
DOSES = """subject_id,day,agent,dose,unit
S1,-5,fludarabine,30,mg/m2
S1,0,CAR-T,1000000,cells/kg
"""
OBS_HEADER = "subject_id,day,param,analyte,value,value_text,unit,lln,uln,lloq,specimen\n"
# data rows (row N = line N+1):
#  1 day 1 TEMP 38.5 | 2 day 2 TEMP 38.6 | 3 day 2 SYSBP 110 | 4 day 2 SYSBP 120 | 5 day 3 TEMP 37.0
#  6 day 4 TEMP 36.9 | 7 day 4 SYSBP 115 | 8 day 20 SODIUM 125 (LLN 135) | 9-13 pre-LD labs day -5
OBS = OBS_HEADER + """S1,1,TEMP,,38.5,,C,,,,
S1,2,TEMP,,38.6,,C,,,,
S1,2,SYSBP,,110,,mmHg,,,,
S1,2,SYSBP,,120,,mmHg,,,,
S1,3,TEMP,,37.0,,C,,,,
S1,4,TEMP,,36.9,,C,,,,
S1,4,SYSBP,,115,,mmHg,,,,
S1,20,SODIUM,,125,,mmol/L,135,145,,
S1,-5,NEUT,,1.2,,10^9/L,,,,
S1,-5,PLAT,,60,,10^9/L,,,,
S1,-5,LDH,,300,,U/L,,,,
S1,-5,CREAT,,1.0,,mg/dL,,,,
S1,-5,CRP,,40,,mg/L,,,,
"""
# interventions row 1: oxygen on day 4 for infection (not counted by default)
IV = """subject_id,start_day,end_day,category,agent,dose,dose_unit,o2_device,o2_flow_lpm,fio2,indication
S1,4,4,oxygen,,,,nasal_cannula,3,,infection
"""
EVENTS = "subject_id,day,event,detail,attribution\n"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    d: Path = tmp_path_factory.mktemp("s27")
    for name, text in (("subjects", SUBJECTS), ("doses", DOSES), ("observations", OBS),
                       ("interventions", IV), ("events", EVENTS)):
        (d / f"{name}.csv").write_text(text)
    return read_study(d)


def _day(daily: pl.DataFrame, day: int) -> dict:
    return daily.filter(pl.col("day") == day).row(0, named=True)


def test_crs_fever_without_a_blood_pressure_is_a_range_naming_sysbp(study):
    """Finding 6. The contract (shared/spec/study-format.md, "CRS (ASTCT 2019)") reads:
    "Hypotension: SYSBP < 90 mmHg that day (adults; an age-adjusted cut-off for children is an
    option). With no vasopressor that day it gives grade 2." It defines hypotension by a recorded
    SBP below the cut-off; it does not say that a day without an SBP row has a normal blood pressure
    (ASTCT 2019 Table 1 grades "hypotension" clinically and says nothing about unrecorded pressure).
    The project rule "Missing is not negative" therefore applies: a fever day with no SYSBP row and
    no vasopressor is grade 1 as measured, up to 2 (hypotension not requiring vasopressors)."""
    daily = derive_crs_daily(study)
    d1 = _day(daily, 1)
    # day 1: Tmax 38.5 >= 38.0 (fever, grade 1); no SYSBP row, no vasopressor -> could be 2
    assert (d1["grade"], d1["grade_max"], d1["missing_inputs"]) == (1, 2, ["SYSBP"])
    assert "up to 2 if hypotensive (SBP < 90 mmHg): no systolic blood pressure recorded that day" in d1["reason"]
    d2 = _day(daily, 2)
    # day 2: fever 38.6 with SBP min 110 >= 90 -> grade 1, not a range
    assert (d2["grade"], d2["grade_max"], d2["missing_inputs"]) == (1, 1, [])
    d3 = _day(daily, 3)
    # day 3: 37.0, no fever, no waiver (no tocilizumab/steroid): the SBP does not matter -> 0, no range
    assert (d3["grade"], d3["grade_max"], d3["missing_inputs"]) == (0, 0, [])


def test_crs_seed_unchanged_by_the_sbp_range():
    """The seed records an SBP on every graded day (crs_daily, days -7..60): no day becomes a range;
    grade 3 (fever days 3-14, norepinephrine days 8-10), as the seed's README derives."""
    daily = derive_crs_daily(seed_case())
    assert daily["grade"].max() == 3
    assert (daily["grade_max"] == daily["grade"]).all()
    assert daily["missing_inputs"].list.len().sum() == 0
    # hand: fever (Tmax >= 38.0) on days 3-14; grade 3 on days 8-10 (norepinephrine)
    assert daily.filter(pl.col("grade") >= 1)["day"].to_list() == list(range(3, 15))
    assert daily.filter(pl.col("grade") == 3)["day"].to_list() == [8, 9, 10]


def test_crs_evidence_cites_the_temperature_and_the_lowest_sbp(study):
    """Finding 4: the SBP row at or above the cut-off rules grade 2 out and is cited."""
    daily = derive_crs_daily(study)
    # day 2: Tmax 38.6 is row 2; the lowest SBP (110) is row 3, not row 4 (120)
    assert _day(daily, 2)["evidence"] == ["observations.csv:2", "observations.csv:3"]
    # day 1: only the temperature exists (row 1)
    assert _day(daily, 1)["evidence"] == ["observations.csv:1"]


def test_crs_oxygen_for_infection_is_named_with_its_row_and_option(study):
    """Finding 5: day 4 has nasal-cannula oxygen with indication infection (interventions.csv:1)."""
    d4 = _day(derive_crs_daily(study), 4)
    # not counted (counted_indications = [CRS]): grade 0 (Tmax 36.9, SBP 115), but said and cited
    assert d4["grade"] == 0
    assert ("oxygen nasal_cannula (interventions.csv:1) not counted: indication infection "
            "(option crs.counted_indications)") in d4["reason"]
    assert d4["evidence"] == ["observations.csv:6", "observations.csv:7", "interventions.csv:1"]
    # counting infection too: low-flow oxygen = hypoxia grade 2; no fever, no waiver -> still 0 (ASTCT:
    # hypoxia without fever is not CRS); and the row is no longer "not counted"
    d4b = _day(derive_crs_daily(study, CrsOptions(counted_indications=("CRS", "infection"))), 4)
    assert "not counted" not in d4b["reason"]


def test_ctcae_hyponatremia_reason_names_the_symptom_assumption(study):
    """Finding 8: sodium 125 mmol/L: CTCAE v5 "125-129 mmol/L and asymptomatic" = 2, "symptomatic" = 3;
    the default option hyponatremia_symptomatic=true grades 3 and the reason says so."""
    adlb = Analysis(study).table("adlb").filter(pl.col("param") == "SODIUM").row(0, named=True)
    assert adlb["ATOXGR"] == -3
    assert ("125-129 mmol/L graded 3 assuming symptoms (option ctcae.hyponatremia_symptomatic=true)"
            in adlb["grade_reason"])
    a2 = Analysis(study, AnalysisOptions.from_settings({"ctcae": {"hyponatremia_symptomatic": False}}))
    r2 = a2.table("adlb").filter(pl.col("param") == "SODIUM").row(0, named=True)
    assert r2["ATOXGR"] == -2
    assert "125-129 mmol/L graded 2 assuming no symptoms (option ctcae.hyponatremia_symptomatic=false)" in r2["grade_reason"]


def test_explain_icaht_never_prints_an_empty_threshold_list():
    """Finding 9: a day above 1.5 x10^9/L shows its ANC and "> 1500 /uL"."""
    e = explain(seed_case(), "icaht")
    assert not e.days["reason"].str.contains(r"ANC\s+/uL").any()
    above = e.days.filter(pl.col("reason").str.contains("above every ICAHT threshold"))
    # session 38 (review s38 C2): an early day is compared with the early window's levels only (100, 500/uL;
    # ANC 700 is above both), a late day with every level (1500 the highest)
    early = above.filter(pl.col("reason").str.starts_with("early:"))
    late = above.filter(pl.col("reason").str.starts_with("late:"))
    assert early.height > 0 and early["reason"].str.contains(r"-> ANC \d+/uL: > 500 /uL").all()
    assert late.height > 0 and late["reason"].str.contains(r"-> ANC \d+/uL: > 1500 /uL").all()


def test_kinetics_auc_printed_as_in_the_csv():
    """Finding 10: the seed's AUC0-28 is 1646461.507 (test_report_subject_s26): to 0.1, 1,646,461.5
    (3 significant digits gave 1,650,000, 0.2% off); the CSV reason has no rounded-with-".0" number.
    Review 37 C3: explain prints it as the report does, a whole number (1,646,462: within 0.1%)."""
    e = explain(seed_case(), "kinetics")
    assert "AUC0-28 1,646,462 " in e.headline
    reason = Analysis(seed_case()).table("car_kinetics")["reason"][0]
    assert "AUC0-28 1646461.5 " in reason and "Cmax 183945 at day 14," in reason


def test_easix_says_converted_only_for_a_converted_row(study):
    """Finding 12b: CREAT recorded as 1.0 mg/dL is not converted; CRP 40 mg/L -> 4 mg/dL is."""
    r = Analysis(study).table("easix").row(0, named=True)
    # EASIX = LDH 300 x CREAT 1 / PLT 60 = 5
    assert r["easix"] == pytest.approx(5.0)
    assert "[converted: CRP 40 mg/L -> 4 mg/dL]" in r["reason"]
    assert "CREAT" not in r["reason"].split("[converted")[1]


@pytest.mark.parametrize("boundary,points", [("worst", 1), ("best", 0)])
def test_hematotox_anc_at_the_cutoff_prints_the_comparison_that_holds(study, boundary, points):
    """Finding 12c: ANC 1.2 x10^9/L = 1200/uL sits on the undefined "< 1200 / > 1200" cut-off."""
    a = Analysis(study, AnalysisOptions.from_settings({"car_hematotox": {"undefined_boundary": boundary}}))
    r = a.table("car_hematotox").row(0, named=True)
    assert r["neut_points"] == points
    assert (f"ANC 1200 /uL (day -5) -> {points} [= 1200 /uL; exactly 1200 /uL, a cut-off the source leaves "
            f"undefined: scored {boundary} (option undefined_boundary)]") in r["reason"]
    assert "> 1200/uL" not in r["reason"] and "< 1200/uL" not in r["reason"]
