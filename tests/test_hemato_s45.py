"""Session 45: review 45 (haematotoxicity) findings 2 and 1.

F2: a CAR-T re-infusion or a further lymphodepletion course in doses.csv ends the late ICAHT window,
T-ICAHT's windows and count recovery's window, as a ``new_therapy`` event does (options
``icaht.late_end_doses``, ``t_icaht.censor_doses``, ``count_recovery.censor_doses``; default
``reinfusion_or_lymphodepletion``, ``none`` = cartlab before session 45).

F1: the early N-ICAHT window stays days 0-30, cut only by death (the spec fixes it); option
``early_censor_events`` (default ``[death]``) censors it at the T-ICAHT footnote's events instead, and
the early reason names a relapse / new therapy / allo-HSCT / re-infusion inside days 0-30 that the
default does not censor at.

Every expected value below is counted by hand from the synthetic course written in the test.
"""

from __future__ import annotations

import pytest

from cartlab.grading.count_recovery import RecoveryOptions, derive_count_recovery
from cartlab.grading.icaht import IcahtOptions, derive_icaht
from cartlab.grading.t_icaht import TIcahtOptions, derive_t_icaht
from test_hematotox import make_study


def _dose(day, agent):
    return {"day": float(day), "agent": agent, "dose": 1.0, "unit": "mg/m2"}


# review 45 t7_reinf.py: lymphodepletion days -5/-4, CAR-T day 0; fludarabine day 55,
# cyclophosphamide day 56, CAR-T again on day 60 (doses.csv rows 1-6, in this order)
REINF_DOSES = [_dose(-5, "fludarabine"), _dose(-4, "fludarabine"), _dose(0, "CAR-T"),
               _dose(55, "fludarabine"), _dose(56, "cyclophosphamide"), _dose(60, "CAR-T")]


def _reinf_anc():
    # ANC 0.3 on days 0-9, 2.0 every other day 10-56, 0.05 on days 58-74, 2.0 every 5 days 75-95
    return ([(d, "NEUT", 0.3) for d in range(0, 10)] + [(d, "NEUT", 2.0) for d in range(10, 58, 2)]
            + [(d, "NEUT", 0.05) for d in range(58, 75)] + [(d, "NEUT", 2.0) for d in range(75, 100, 5)])


def test_second_lymphodepletion_ends_the_late_icaht_window():
    s = make_study(_reinf_anc(), doses=REINF_DOSES, last_followup=100)
    r = derive_icaht(s).row(0, named=True)
    # by hand: the late window is day 31 to the fludarabine dose of day 55 (doses.csv row 4; the
    # lymphodepletion of days -5/-4 is before day 1 and ends nothing). Its measured ANCs are days
    # 32, 34, ..., 54 (12 tests), all 2.0 > 1.5, and day 55 is interpolated between 2.0 and 2.0:
    # late grade 0 (the aplasia of days 58-74 belongs to the second course).
    assert r["late_window_end"] == 55.0
    assert r["late_n_measurements"] == 12
    assert r["icaht_late_grade"] == 0
    assert "doses.csv:4" in r["late_window_end_reason"] and "lymphodepletion" in r["late_window_end_reason"]
    assert "doses.csv:4" in r["late_evidence"]
    assert "doses.csv:4" in r["late_reason"]


def test_late_end_doses_none_keeps_the_previous_window():
    s = make_study(_reinf_anc(), doses=REINF_DOSES, last_followup=100)
    r = derive_icaht(s, IcahtOptions(late_end_doses="none")).row(0, named=True)
    # by hand: window days 31-100 (last follow-up); ANC 0.05 <= 0.1 on the 17 measured days 58-74 -> 4
    assert r["late_window_end"] == 100.0
    assert r["icaht_late_grade"] == 4


def test_reinfusion_alone_ends_the_late_window_and_a_split_dose_does_not():
    anc = ([(d, "NEUT", 2.0) for d in range(0, 31)] + [(d, "NEUT", 2.0) for d in range(32, 58, 2)]
           + [(d, "NEUT", 0.05) for d in range(58, 75)])
    # CAR-T on day 0 and again on day 57 (57 > 7 days after day 0: a re-infusion, doses.csv row 2)
    r = derive_icaht(make_study(anc, doses=[_dose(0, "CAR-T"), _dose(57, "CAR-T")], last_followup=100)).row(0, named=True)
    # by hand: window days 31-57; measured days 32..56 (13 tests) at 2.0; day 57 lies between 2.0 (day
    # 56) and 0.05 (day 58, after the window): no test, not counted -> grade 0
    assert (r["late_window_end"], r["icaht_late_grade"]) == (57.0, 0)
    assert "re-infusion" in r["late_window_end_reason"] and "doses.csv:2" in r["late_window_end_reason"]
    # CAR-T on days 0 and 5: fractions of one split dose (gap 5 <= kinetics.split_dose_gap_days 7)
    r = derive_icaht(make_study(anc, doses=[_dose(0, "CAR-T"), _dose(5, "CAR-T")], last_followup=100)).row(0, named=True)
    # by hand: the window runs to day 100; ANC 0.05 on the 17 measured days 58-74 -> 4
    assert (r["late_window_end"], r["icaht_late_grade"]) == (100.0, 4)


def _reinf_plt():
    # PLT 150 on days 0-30, every other day 32-56; 10 on days 58-74; 150 on day 80
    return ([(d, "PLAT", 150.0) for d in range(0, 31)] + [(d, "PLAT", 150.0) for d in range(32, 58, 2)]
            + [(d, "PLAT", 10.0) for d in range(58, 75)] + [(80, "PLAT", 150.0)])


def test_second_lymphodepletion_ends_the_t_icaht_late_window():
    s = make_study(_reinf_plt(), doses=REINF_DOSES, last_followup=100, events=())
    r = derive_t_icaht(s, TIcahtOptions(absent_interventions="none_given")).row(0, named=True)
    # by hand: late window days 31-55 (fludarabine, doses.csv row 4): measured 150 on days 32..54
    # (12 tests), none < 100 -> late grade 0
    assert (r["late_window_end"], r["t_icaht_late_grade"]) == (55.0, 0)
    assert "doses.csv:4" in r["late_window_end_reason"]
    old = derive_t_icaht(s, TIcahtOptions(absent_interventions="none_given", censor_doses="none")).row(0, named=True)
    # by hand, window to day 100: PLT 10 < 20 on the 17 measured days 58-74 (days 57 and 75-79 are
    # interpolated at 80 and >= 33.3, not below 20): 17 >= 14 days, >= 2 tests -> grade 4
    assert (old["late_window_end"], old["t_icaht_late_grade"]) == (100.0, 4)


def test_reinfusion_censors_count_recovery():
    # ANC 0.05 on days 0-19, 1.0 on days 20-30; CAR-T on day 0 and again on day 20 (doses.csv row 2)
    anc = [(d, "NEUT", 0.05) for d in range(0, 20)] + [(d, "NEUT", 1.0) for d in range(20, 31)]
    s = make_study(anc, doses=[_dose(0, "CAR-T"), _dose(20, "CAR-T")], last_followup=60)
    r = derive_count_recovery(s).row(0, named=True)
    # by hand: values from day 20 on are not counted; days 0-19 all < 0.5 -> not reached, censored at 20
    assert r["neutrophil_recovery_status"] == "not_reached"
    assert r["neutrophil_recovery_censor_day"] == 20.0
    assert r["neutrophil_recovery_censor_reason"] == "reinfusion"
    assert "recovery.censor_dose" in r["neutrophil_recovery_rule"]
    assert "doses.csv:2" in r["neutrophil_recovery_reason"] and "censor_doses" in r["neutrophil_recovery_reason"]
    assert "doses.csv:2" in r["neutrophil_recovery_evidence"]
    # censor_doses=none: the first of 3 consecutive days >= 0.5 after the nadir is day 20
    old = derive_count_recovery(s, RecoveryOptions(censor_doses="none")).row(0, named=True)
    assert (old["neutrophil_recovery_status"], old["neutrophil_recovery_day"]) == ("recovered", 20.0)


@pytest.mark.parametrize("cls, name", [(IcahtOptions, "late_end_doses"), (TIcahtOptions, "censor_doses"),
                                       (RecoveryOptions, "censor_doses")])
def test_dose_option_default_and_bad_value(cls, name):
    assert cls().resolved()[name] == "reinfusion_or_lymphodepletion"
    with pytest.raises(Exception, match=name):
        cls(**{name: "reinfusion"}).resolved()


# ---------------------------------------------------------------------------------------------
# F1: the early window, days 0-30 cut only by death (the spec); option early_censor_events

FOOTNOTE = ("relapse", "new_therapy", "allo_hsct", "death")


def _subject_a():
    # review 45 t3_icaht.py subject A: ANC 2.0 on days 0-11, new_therapy on day 12, 0.05 on days 14-30
    anc = [(d, "NEUT", 2.0) for d in range(0, 12)] + [(d, "NEUT", 0.05) for d in range(14, 31)]
    return make_study(anc, events=[{"day": 12.0, "event": "new_therapy"}], last_followup=100)


def test_default_early_window_is_not_censored_but_names_the_new_therapy():
    r = derive_icaht(_subject_a()).row(0, named=True)
    # by hand (the spec's days 0-30): ANC <= 0.1 on the 17 measured days 14-30 -> grade 4, as before
    assert (r["icaht_early_grade"], r["early_window_end"]) == (4, 30.0)
    assert "Not censored at (option early_censor_events=[death]" in r["early_reason"]
    assert "new_therapy on day 12 (events.csv:1)" in r["early_reason"]
    assert "events.csv:1" in r["early_evidence"]


def test_footnote_censoring_ends_the_early_window_at_the_new_therapy():
    r = derive_icaht(_subject_a(), IcahtOptions(early_censor_events=FOOTNOTE)).row(0, named=True)
    # by hand: window days 0-12; days 0-11 measured 2.0; day 12 would be interpolated toward day 14
    # (after the censoring): no value. 0 days <= 0.5 -> grade 0, up to 1 had day 12 been low.
    assert (r["early_window_end"], r["early_window_end_reason"]) == (12.0, "new_therapy")
    assert (r["icaht_early_grade"], r["icaht_early_grade_max"], r["early_unknown_days"]) == (0, 1, 1)
    assert r["anc_le_500_days"] == 0
    assert "censored: new_therapy on day 12" in r["early_reason"] and "events.csv:1" in r["early_evidence"]


def test_censored_window_is_graded_by_duration_not_never_above():
    anc = [(d, "NEUT", 0.3) for d in range(0, 31)]
    s = make_study(anc, events=[{"day": 10.0, "event": "relapse"}], last_followup=100)
    # by hand, default: ANC 0.3 on every day 0-30 -> never above 0.5 -> grade 4 (relapse named)
    r = derive_icaht(s).row(0, named=True)
    assert r["icaht_early_grade"] == 4 and "relapse on day 10" in r["early_reason"]
    # censored at day 10: days 0-10, 11 days <= 0.5 (none <= 0.1) -> grade 2 (7-13 days); 'never above
    # 0.5 in days 0-30' cannot be shown from days 0-10
    r = derive_icaht(s, IcahtOptions(early_censor_events=FOOTNOTE)).row(0, named=True)
    assert (r["icaht_early_grade"], r["anc_le_500_days"], r["early_window_end"]) == (2, 11, 10.0)
    assert r["never_above_500"] is False


def test_reinfusion_inside_the_early_window_is_named_or_censors_with_new_therapy():
    anc = [(d, "NEUT", 2.0) for d in range(0, 31)]
    s = make_study(anc, doses=[_dose(0, "CAR-T"), _dose(20, "CAR-T")], last_followup=100)
    r = derive_icaht(s).row(0, named=True)
    assert r["early_window_end"] == 30.0
    assert "new CAR-T course (re-infusion, doses.csv:2) on day 20" in r["early_reason"]
    r = derive_icaht(s, IcahtOptions(early_censor_events=FOOTNOTE)).row(0, named=True)
    # by hand: with new_therapy censored, the re-infusion on day 20 ends the window (days 0-20)
    assert r["early_window_end"] == 20.0 and "doses.csv:2" in r["early_window_end_reason"]
    assert "Not censored" not in r["early_reason"]


def test_early_censor_events_must_keep_death():
    with pytest.raises(Exception, match="early_censor_events"):
        IcahtOptions(early_censor_events=("relapse",)).resolved()
    with pytest.raises(Exception, match="early_censor_events"):
        IcahtOptions(early_censor_events=("relapse", "deaht")).resolved()


def test_the_analysis_split_dose_gap_decides_what_is_a_reinfusion():
    anc = ([(d, "NEUT", 2.0) for d in range(0, 31)] + [(d, "NEUT", 2.0) for d in range(32, 58, 2)]
           + [(d, "NEUT", 0.05) for d in range(58, 75)])
    s = make_study(anc, doses=[_dose(0, "CAR-T"), _dose(5, "CAR-T")], last_followup=100)
    # by hand: with kinetics.split_dose_gap_days 3, the dose of day 5 (5 > 3 days after day 0) is a
    # re-infusion: the late window (day 31 on) ends on day 5, so it is empty -> not evaluable
    r = derive_icaht(s, split_dose_gap_days=3).row(0, named=True)
    assert (r["late_window_end"], r["icaht_late_grade"]) == (5.0, None)
    assert derive_t_icaht(s, split_dose_gap_days=3)["late_window_end"].to_list() == [5.0]
    # count recovery: ANC 0.05 on days 0-4, 1.0 on days 5-19
    low = make_study([(d, "NEUT", 0.05) for d in range(0, 5)] + [(d, "NEUT", 1.0) for d in range(5, 20)],
                     doses=[_dose(0, "CAR-T"), _dose(5, "CAR-T")], last_followup=60)
    rec = derive_count_recovery(low, split_dose_gap_days=3).row(0, named=True)
    # by hand: values from day 5 on are not counted; days 0-4 all < 0.5 -> not reached, censored at 5
    assert (rec["neutrophil_recovery_status"], rec["neutrophil_recovery_censor_day"]) == ("not_reached", 5.0)
    # default gap 7: one split dose; the first 3 consecutive days >= 0.5 after the nadir start on day 5
    assert derive_count_recovery(low).row(0, named=True)["neutrophil_recovery_day"] == 5.0
