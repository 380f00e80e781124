"""Session 37: the end of monitoring without ``last_followup_day`` reads every table.

study-format.md ("Follow-up for time-to-event endpoints"): "a subject without `last_followup_day`,
death or event is censored at its last recorded row in any table". Interventions are a table of the
study; the expected days below are worked out by hand from the tiny study built here.
"""

from __future__ import annotations

import polars as pl

from cartlab.model import Study
from cartlab.protocol import derive_deviations, parse_protocol
from protocol_helpers import frame
from test_protocol_s36 import MON, SUBJECT, flu


def _study(interventions=()) -> Study:
    subj = frame("subjects", [{}], **{**SUBJECT, "last_followup_day": None})
    obs = [{"day": 5.0, "param": "CRP", "value": 10.0, "unit": "mg/L"}]
    return Study(study_id="T", subjects=subj,
                 doses=frame("doses", flu(-5, -4, -3), subject_id="S1", source="observed"),
                 observations=frame("observations", obs, subject_id="S1", unit=None, source="observed"),
                 events=frame("events", [], subject_id="S1"),
                 interventions=frame("interventions", list(interventions), subject_id="S1"))


def _missed(res: pl.DataFrame):
    return res.filter(pl.col("category") == "missed_monitoring").select("item", "days").rows()


def test_an_intervention_is_a_recorded_row_that_extends_monitoring():
    p = parse_protocol(MON, "s36.yaml")  # BMBLAST scheduled on days 14 and 28, +-3 days
    # without interventions the last row is the day-5 CRP: neither marrow day is due yet
    assert _missed(derive_deviations(_study(), p)) == []
    # tocilizumab started on day 12 and ended on day 30: the last recorded row is day 30, so both
    # marrow days (14 and 28) fall inside monitoring and neither was measured
    toci = {"start_day": 12.0, "end_day": 30.0, "category": "tocilizumab", "agent": "tocilizumab"}
    res = derive_deviations(_study([toci]), p)
    assert _missed(res) == [("BMBLAST", [14.0, 28.0])]
    detail = res.filter(pl.col("category") == "missed_monitoring")["detail"][0]
    assert "checked to day 30 (last recorded row, interventions" in detail
    # an intervention that only started (no end day) on day 16: day 14 is due, day 28 is not
    res = derive_deviations(_study([{**toci, "start_day": 16.0, "end_day": None}]), p)
    assert _missed(res) == [("BMBLAST", [14.0])]


# -------------------------------------------------------------------------------------------------
# the analysis passes its protocol options to the protocol views (they were the defaults always)


def test_analysis_protocol_options_reach_the_deviations_and_eligibility():
    from cartlab.analyze import Analysis, AnalysisOptions
    from cartlab.protocol.options import ProtocolOptions

    p = parse_protocol(MON, "s36.yaml")
    subj = frame("subjects", [{}], **SUBJECT)  # last_followup_day 60
    s = Study(study_id="T", subjects=subj,
              doses=frame("doses", flu(-5, -4, -3), subject_id="S1", source="observed"),
              observations=frame("observations", [], subject_id="S1", unit=None, source="observed"),
              events=frame("events", [{"day": 10.0, "event": "allo_hsct"}], subject_id="S1"))
    # by default allo-HSCT on day 10 ends monitoring: neither marrow day (14, 28) is due
    dflt = Analysis(s, protocol=p).table("protocol_deviations")
    assert _missed(dflt) == []
    # off_study_ends_monitoring=False checks to last_followup_day 60: both days missed
    o = AnalysisOptions.from_settings({"protocol": {"off_study_ends_monitoring": False}})
    assert isinstance(o.protocol, ProtocolOptions)
    assert _missed(Analysis(s, o, protocol=p).table("protocol_deviations")) == [("BMBLAST", [14.0, 28.0])]


def test_protocol_options_refuse_bad_values():
    import pytest

    from cartlab.analyze import AnalysisOptions
    from cartlab.errors import InputError

    for bad in ({"screening_end": "day_0"}, {"max_shift_days": -1}, {"car_dose": 0},
                {"off_study_ends_monitoring": "maybe"}, {"screening": "fixed"}):
        with pytest.raises(InputError, match="ProtocolOptions"):
            AnalysisOptions.from_settings({"protocol": bad})


def test_analysis_age_option_reaches_the_eligibility():
    from cartlab.analyze import Analysis, AnalysisOptions
    from cartlab.protocol import load_protocol

    nct = load_protocol("nct04762485")  # "Age 12-65 years" (NCT04762485 inclusion 2)
    s = Study(study_id="T", subjects=frame("subjects", [{}], **{**SUBJECT, "age_years": 65.5}))

    def age(o=None) -> str:
        e = Analysis(s, o, protocol=nct).table("eligibility")
        return e.filter(pl.col("criterion_id").str.ends_with("age"))["status"][0]

    # by hand: 65.5 years is 65 completed years (inside 12-65); as a fraction it is above 65
    assert age() == "pass"
    assert age(AnalysisOptions.from_settings({"protocol": {"age_whole_years": False}})) == "fail"


# -------------------------------------------------------------------------------------------------
# a dose-escalation CAR-T total is checked against the band's maximum total too


def test_car_total_above_the_bands_maximum_total_cells():
    from cartlab.protocol import DoseOptions
    from test_protocol_s36 import CREAT, NCT, dose, make, nct_ld

    text = open(NCT.path, encoding="utf-8").read().replace(
        "      max: 10.0e6\n", "      max: 10.0e6\n      max_total_cells: 2.0e8\n", 1)
    p = parse_protocol(text, "capped.yaml")
    car = [dose(0, "CAR-T", 1e6, "cells/kg"), dose(2, "CAR-T", 4e6, "cells/kg")]  # 5e6/kg in total

    def car_rows(weight):
        res = derive_deviations(make(nct_ld() + car, [CREAT], weight_kg=weight), p)
        return res.filter(pl.col("item") == "CAR-T").select("category", "rule", "given_dose").rows()

    # 50 kg x 5e6/kg = 2.5e8 cells: inside the per-kg range 0.5-10e6/kg, above the 2e8 cells maximum
    assert car_rows(50.0) == [("dose_out_of_tolerance", "nct04762485.car_t.range", 2.5e8)]  # the id is the text's
    # 30 kg x 5e6/kg = 1.5e8 cells: below the maximum total
    assert car_rows(30.0) == []
    # the maximum total holds with an intended dose too (it was skipped: diff review B4): 5e6/kg intended
    # is the given dose, within tolerance, but 2.5e8 cells is above the 2e8 maximum
    res = derive_deviations(make(nct_ld() + car, [CREAT], weight_kg=50.0), p, DoseOptions(car_dose=5e6))
    assert res.filter(pl.col("item") == "CAR-T").select("category", "given_dose").rows() == [
        ("dose_out_of_tolerance", 2.5e8)]
    # the shipped protocol has no maximum total: 50 kg is fine there
    res = derive_deviations(make(nct_ld() + car, [CREAT], weight_kg=50.0), NCT)
    assert res.filter(pl.col("item") == "CAR-T").height == 0


# -------------------------------------------------------------------------------------------------
# the dose plan's screening creatinine: calendar days, up to the subject's own first lymphodepletion


def _creat_day(ld_shift: int, creat_days: list[float]):
    from cartlab.protocol import subject_patient
    from test_protocol_s36 import NCT, make, nct_ld

    obs = [{"day": d, "param": "CREAT", "value": 70.0 + i, "unit": "umol/L"} for i, d in enumerate(creat_days)]
    pt, _ = subject_patient(make(nct_ld(ld_shift), obs), NCT, "S1")
    return pt.creatinine_day, pt.creatinine_note


def test_screening_creatinine_reads_calendar_days_of_the_first_lymphodepletion_day():
    # NCT04762485: decitabine from day -6 (screening window -42..-6). A creatinine at 16:48 on day -6
    # is day -5.3 - calendar day -6, the first LD day, inside the window as eligibility reads it; it
    # is the last one, so it is the screening value (the old day-number compare, -5.3 > -6, dropped it)
    assert _creat_day(0, [-10.0, -5.3]) == (-5.3, None)


def test_screening_creatinine_ends_at_the_subjects_own_first_lymphodepletion_dose():
    # the course given one day early: decitabine from day -7. The creatinine of day -6 was drawn
    # after lymphodepletion began, so the day -10 value is the screening one (the old window ended at
    # the planned day -6 whatever was given)
    assert _creat_day(-1, [-10.0, -6.0])[0] == -10.0
    # with only the day -6 value there is no screening creatinine, and the note says which day ended it
    day, note = _creat_day(-1, [-6.0])
    assert day is None and "none recorded on days -42 to -7 (the first lymphodepletion dose given)" in note


def test_eligibility_reason_shows_a_converted_value_as_recorded():
    # bilirubin recorded as 0.3 mg/dL is 0.3 x 17.1 = 5.13 umol/L canonical; the reason gave the float
    # "5.13119 umol/L" - it now shows the value as recorded and the converted one to 4 digits
    import dataclasses

    from cartlab.datasets import seed_case
    from cartlab.protocol import derive_eligibility, load_protocol

    s = seed_case()
    bili = pl.col("param") == "BILI"
    o = s.observations.with_columns(pl.when(bili).then(0.3).otherwise(pl.col("orig_value")).alias("orig_value"),
                                    pl.when(bili).then(pl.lit("mg/dL")).otherwise(pl.col("orig_unit")).alias("orig_unit"),
                                    pl.when(bili).then(0.3 * 17.1038).otherwise(pl.col("value")).alias("value"))
    e = derive_eligibility(dataclasses.replace(s, observations=o), load_protocol("nct04762485"))
    reason = e.filter(pl.col("criterion_id").str.ends_with("bilirubin"))["reason"][0]
    assert reason.startswith("BILI 0.3 mg/dL (= 5.131 umol/L) on day -6")


def test_an_unknown_analysis_option_is_named_as_written_with_the_closest():
    import pytest

    from cartlab.analyze import AnalysisOptions
    from cartlab.errors import InputError

    with pytest.raises(InputError, match=r"unknown option crs\.fevr_threshold_c \(did you mean "
                                         r"crs\.fever_threshold_c\?\); the crs options \(CrsOptions\) are"):
        AnalysisOptions.from_settings({"crs": {"fevr_threshold_c": 38}})
