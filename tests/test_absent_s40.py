"""Review 40 (fix40_absent): an ABSENT events.csv / interventions.csv is unknown, not "none happened".

Project rule (docs/derivation-conventions.md "Missing is not negative"): a file not given at all
(``Study.absent``) leaves what it would have recorded unknown, a header-only file says "none recorded".
Expected values are worked by hand from the standards' text (each test says how), never copied from
cartlab output.
"""

from __future__ import annotations

import polars as pl
import pytest

from cartlab.grading.count_recovery import derive_count_recovery
from cartlab.grading.crs import CrsOptions, derive_crs_daily, derive_crs_summary
from cartlab.grading.icaht import IcahtOptions, derive_icaht
from cartlab.grading.t_icaht import TIcahtOptions, derive_t_icaht

INFECTION_UNKNOWN = "events.csv (not given): infection unknown"


# one subject S1, CAR-T on day 0 (_study), its vitals (_vitals) and the fever course of day 1 (CRS_DAYS):
# the session-37 absent-file tests' builders, shared
from test_absent_files_s37 import CRS_DAYS, _study, _vitals  # noqa: E402


def _day(frame: pl.DataFrame, day: int) -> dict:
    return frame.filter(pl.col("day") == day).row(0, named=True)


# --- A1: CRS fever attribution with events.csv not given ------------------------------------------

def test_a1_fever_day_lower_bound_is_0_without_events():
    # ASTCT 2019 Table 1 footnote: fever "not attributable to any other cause". Day 1 (38.5 C, SBP 110,
    # no hypoxia) is grade 1 with the fever counted. Without events.csv an infection on day 1 (window
    # [0, 3] days) is unknown; attributed, the day is not a CRS day (other_cause_scope "day"): 0.
    d = derive_crs_daily(_study(_vitals(CRS_DAYS), absent=("events",)))
    r = _day(d, 1)
    assert (r["grade_min"], r["grade"]) == (0, 1)
    assert INFECTION_UNKNOWN in r["missing_inputs"]
    assert "crs.conv.absent_events" in r["reason"]
    assert _day(d, 0)["grade_min"] == 0 and _day(d, 2)["grade_min"] == 0  # afebrile days: as the grade
    s = derive_crs_summary(_study(_vitals(CRS_DAYS), absent=("events",))).row(0, named=True)
    assert (s["crs_grade_astct_min"], s["crs_grade_astct"]) == (0, 1)


def test_a1_events_given_or_none_happened_keeps_the_fever():
    # a header-only events file (Study.absent empty) says no infection was recorded: grade_min = grade 1
    given = derive_crs_summary(_study(_vitals(CRS_DAYS))).row(0, named=True)
    assert (given["crs_grade_astct_min"], given["crs_grade_astct"]) == (1, 1)
    old = derive_crs_daily(_study(_vitals(CRS_DAYS), absent=("events",)), CrsOptions(absent_events="none_happened"))
    assert _day(old, 1)["grade_min"] == 1 and INFECTION_UNKNOWN not in _day(old, 1)["missing_inputs"]
    # the attribution switched off: events are not read, so their absence changes nothing
    off = derive_crs_daily(_study(_vitals(CRS_DAYS), absent=("events",)), CrsOptions(other_cause_attribution=False))
    assert _day(off, 1)["grade_min"] == 1
    with pytest.raises(Exception):
        CrsOptions(absent_events="maybe")


def test_a1_cross_scale_astct_min_follows():
    from cartlab.grading.crs_legacy import derive_crs_cross_scale

    st = _study(_vitals(CRS_DAYS), absent=("events",))
    x = derive_crs_cross_scale(st, derive_crs_summary(st), scales=("lee2014",)).row(0, named=True)
    assert (x["crs_grade_astct_min"], x["crs_grade_astct"]) == (0, 1)  # as crs_summary (hand: see above)


# --- A2: late ICAHT / T-ICAHT window end with events.csv not given -------------------------------

def _anc():
    # one ANC a day: days 0-30 2.0 (no neutropenia), days 31-60 0.8 x10^9/L (<= 1000/uL, > 500/uL)
    return [(d, "NEUT", 2.0 if d <= 30 else 0.8, "10^9/L") for d in range(0, 61)]


def test_a2_late_icaht_is_a_range_without_events():
    # Rejeski 2023: late ICAHT = worst level reached by >= 2 ANC measurements after day 30, to relapse /
    # new therapy / HSCT / death / day 100. With every day to 60 at 0.8: grade 2 (ANC <= 1000/uL), the
    # same over any window reaching 2 measurements. Without events.csv a new therapy on day 30 (as
    # events.csv could record) leaves no late window: not evaluable. Since session 48 (review 48 oracle #7,
    # absent_events=unknown) the grade is the full window's, 2, and the reason names the lower end; the
    # sessions 40-47 reading (absent_events=shortest_window) gives "not evaluable-2".
    r = derive_icaht(_study(_anc(), absent=("events",))).row(0, named=True)
    assert (r["icaht_late_grade"], r["icaht_late_grade_max"]) == (2, 2)
    assert r["late_rule"].endswith("icaht.conv.absent_events")
    assert "events.csv (not given)" in r["late_reason"] and "not evaluable" in r["late_reason"]
    assert "icaht_late_grade is the grade of the window above, as with no such event" in r["late_reason"]
    short = derive_icaht(_study(_anc(), absent=("events",)), IcahtOptions(absent_events="shortest_window")).row(
        0, named=True)
    assert (short["icaht_late_grade"], short["icaht_late_grade_max"]) == (None, 2)
    assert r["icaht_early_grade"] == 0  # early window unchanged (ANC 2.0 on days 0-30)
    given = derive_icaht(_study(_anc())).row(0, named=True)
    assert (given["icaht_late_grade"], given["icaht_late_grade_max"]) == (2, 2)
    old = derive_icaht(_study(_anc(), absent=("events",)), IcahtOptions(absent_events="none_happened")).row(0, named=True)
    assert (old["icaht_late_grade"], old["icaht_late_grade_max"]) == (2, 2)


def test_a2_late_t_icaht_is_a_range_without_events():
    # Rejeski 2025 Table 1, late T-ICAHT grade 2: PLT < 50 x10^9/L on >= 2 measurements. Days 0-30
    # 150, days 31-60 40: grade 2 over the full window, not evaluable over an empty one (as above)
    plt = [(d, "PLAT", 150.0 if d <= 30 else 40.0, "10^9/L") for d in range(0, 61)]
    r = derive_t_icaht(_study(plt, absent=("events",))).row(0, named=True)
    assert (r["t_icaht_late_grade"], r["t_icaht_late_grade_max"]) == (2, 2)  # session 48: the full window
    assert r["late_rule"].endswith("t_icaht.conv.absent_events")
    short = derive_t_icaht(_study(plt, absent=("events",)), TIcahtOptions(absent_events="shortest_window")).row(
        0, named=True)
    assert (short["t_icaht_late_grade"], short["t_icaht_late_grade_max"]) == (None, 2)
    old = derive_t_icaht(_study(plt, absent=("events",)), TIcahtOptions(absent_events="none_happened")).row(0, named=True)
    assert (old["t_icaht_late_grade"], old["t_icaht_late_grade_max"]) == (2, 2)


# --- B1: an episode end opened by an absent interventions.csv is not "resolved" ---------------------

def test_b1_resolution_not_settled_without_interventions():
    # day 1 is CRS (fever); day 2 is afebrile, grade 0 as recorded, but with interventions.csv not given a
    # tocilizumab/corticosteroid could have waived its fever and a vasopressor/oxygen made it CRS (ASTCT
    # footnote): the end is not seen, so the episode is not "resolved"
    s = derive_crs_summary(_study(_vitals(CRS_DAYS), absent=("interventions",))).row(0, named=True)
    assert s["crs_resolution_status"] == "not_settled"
    d = derive_crs_daily(_study(_vitals(CRS_DAYS), absent=("interventions",)))
    assert "interventions.csv (not given)" in _day(d, 1)["episode_resolution_note"]
    # given (header-only): day 2 is a settled CRS-free day -> resolved
    assert derive_crs_summary(_study(_vitals(CRS_DAYS)))["crs_resolution_status"][0] == "resolved"


# --- B4: platelet recovery text with interventions.csv not given -----------------------------------

def test_b4_platelet_reason_says_the_range_is_open():
    # ASTCT/CIBMTR: platelet recovery = first of 3 consecutive days >= 20 x10^9/L without a transfusion
    # in the 7 days before. Nadir 9 on day 0, 30 on days 1-10: day 1 as measured. With transfusions
    # unknown no later day is excluded: "day 1 or later", not a closed "between day X and day Y"
    obs = [(0, "PLAT", 9.0, "10^9/L")] + [(d, "PLAT", 30.0, "10^9/L") for d in range(1, 11)]
    r = derive_count_recovery(_study(obs, absent=("interventions",))).row(0, named=True)
    assert r["platelet_recovery_day_min"] == 1 and r["platelet_recovery_day_max"] is None
    assert r["platelet_recovery_reason"].startswith("not evaluable: the recovery day is day 1 or later")
    assert "count_recovery.absent_interventions=unknown" in r["platelet_recovery_reason"]


# --- B5: the untimed-infusion note is in car_kinetics.csv's reason ----------------------------------

def test_b5_untimed_infusion_note_in_the_reason():
    from cartlab.kinetics.car_profile import reinfusion_note

    inf = pl.DataFrame({"subject_id": ["S1", "S2"], "day": [0.0, 0.0]})
    note = reinfusion_note(pl.DataFrame(), inf, "next_infusion", "first", 7.0, ["S1"], "midnight")
    assert note["subject_id"].to_list() == ["S1"]
    assert "kinetics.untimed_infusion=midnight" in note["_reinf_note"][0]


# --- C2 / C4: wording ---------------------------------------------------------------------------------

def test_c2_a_file_not_given_is_not_called_not_recorded():
    from cartlab.grading.crs_attribution import explain_days, explain_range

    st = _study(_vitals(CRS_DAYS), absent=("interventions",))
    s = derive_crs_summary(st).row(0, named=True)
    assert "interventions.csv not given" in s["crs_resolution_open"]
    assert "interventions.csv not recorded" not in s["crs_resolution_open"]
    d = derive_crs_daily(st)
    head = explain_range(d, s)
    assert head.count("interventions.csv not given") == 1 and "not recorded (interventions" not in head
    short = explain_days(d)
    assert all("tocilizumab" not in r for r in short["reason"].to_list())  # said once, in the header


def test_c4_no_kinetics_names_not_infused():
    from cartlab.kinetics.exposure import _missing_reason

    f = pl.DataFrame({"car_cmax": [None], "car_auc_0_28": [None]}, schema={"car_cmax": pl.Float64,
                                                                           "car_auc_0_28": pl.Float64})
    assert "not infused" in f.select(_missing_reason(f, "car_cmax")).item()
