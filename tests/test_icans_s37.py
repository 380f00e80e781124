"""Review 37 (ICANS second pass) fixes B1-B7, C1. Expected values are worked by hand from ASTCT 2019
(Lee et al.) Table 4 as reproduced in PMC8403007 Table 4 (ICE 7-9 = 1, 3-6 = 2, 0-2 = 3; LOC awakens to
voice = 2, to tactile = 3, unarousable = 4; seizure = 3) and from the lead's decisions in the brief;
none is copied from cartlab output."""

from __future__ import annotations

import polars as pl
import pytest

from cartlab.criteria import load_raw
from cartlab.explain import explain
from cartlab.grading.icans import IcansOptions, derive_icans_daily, derive_icans_episodes, derive_icans_summary
from grading_helpers import oxygen, study


def day(s, d, options=None):
    return derive_icans_daily(s, options).filter(pl.col("day") == d).row(0, named=True)


def death(d, attribution=None):
    return {"subject_id": "A", "day": float(d), "event": "death", "attribution": attribution}


# --- B6: a day kept only to name an event of another cause opens no range -------------------------

def test_b6_excluded_seizure_day_is_zero_and_does_not_raise_the_maximum():
    # ICE 6 on day 1 = grade 2 (Table 4, ICE 3-6); day 20: only a seizure attributed to 'other', which
    # ASTCT excludes ("not attributable to any other cause"): grade 0, and (lead's decision) grade_max 0
    s = study(obs=[("A", 1, "ICE", 6.0)],
              events=[{"subject_id": "A", "day": 20.0, "event": "seizure", "attribution": "other"}])
    r = day(s, 20)
    assert (r["grade"], r["grade_max"], r["missing_inputs"]) == (0, 0, [])  # old: 0 up to 4
    assert "seizure attributed to other" in r["reason"] and r["evidence"] == ["events.csv:1"]
    summ = derive_icans_summary(s).row(0, named=True)
    assert (summ["icans_grade_astct"], summ["icans_grade_astct_max"]) == (2, 2)  # old max: 4


def test_b6_a_counted_seizure_without_score_still_opens_to_4():
    # seizure (ICANS) alone = 3; no ICE and no LOC: unarousable (4) not ruled out (unchanged)
    r = day(study(events=[{"subject_id": "A", "day": 1.0, "event": "seizure", "attribution": "ICANS"}]), 1)
    assert (r["grade"], r["grade_max"]) == (3, 4) and r["missing_inputs"] == ["ICE", "LOC"]  # review 39 C1: an adult's ICE


# --- B1: the explain headline names what opens the range --------------------------------------------

def test_b1_explain_headline_names_the_death_attribution():
    # ICE 5 day 3 = grade 2; death with no attribution on day 4 (within 2 days of an ICANS day): up to 5
    s = study(obs=[("A", 3, "ICE", 5.0)], events=[death(4)])
    head = explain(s, "icans").headline
    assert "grade 2 (up to 5: death attribution not recorded on day 4)" in head
    assert "no ICE/CAPD score" not in head  # old: "(up to 5: some days have no ICE/CAPD score)"


def test_b1_explain_headline_names_the_missing_loc():
    # ICE 0 on day 2 = grade 3 (ICE 0-2); without a LOC row "ICE 0 and unarousable" (4) is open
    head = explain(study(obs=[("A", 2, "ICE", 0.0)]), "icans").headline
    assert "grade 3 (up to 4: LOC not recorded on day 2)" in head


# --- B7: the unattributed-death window follows episode_join_gap_days ----------------------------------

def test_b7_death_window_is_the_episode_gap_plus_one():
    # ICE 5 day 3 (grade 2), death without attribution day 6: 6 - 3 = 3 days; gap 3 -> window 4 (inside),
    # gap 1 (default) -> window 2 (outside), as crs.conv.unattributed_death
    s = study(obs=[("A", 3, "ICE", 5.0)], events=[death(6)])
    r = day(s, 6, IcansOptions(episode_join_gap_days=3))
    assert (r["grade"], r["grade_max"], r["missing_inputs"]) == (0, 5, ["death attribution"])
    assert derive_icans_daily(s).filter(pl.col("day") == 6).height == 0


# --- B4: mechanical ventilation named; option ventilated_loc -----------------------------------------

def vent_study(*events):
    iv = [{**oxygen("mechanical_ventilation", 1), "end_day": 3.0}]
    return study(obs=[("A", 2, "LOC", None, "unarousable")], iv=iv, events=list(events))


def test_b4_ventilation_is_named_in_reason_and_evidence_by_default():
    r = day(vent_study(), 2)
    assert r["grade"] == 4 and r["rule"] == "icans.loc"  # default 'grade': unarousable = 4 as recorded
    assert "on mechanical ventilation (interventions.csv:1)" in r["reason"]
    assert "interventions.csv:1" in r["evidence"] and "observations.csv:1" in r["evidence"]


def test_b4_range_grades_by_events_up_to_the_consciousness_grade():
    r = day(vent_study(), 2, IcansOptions(ventilated_loc="range"))
    assert (r["grade"], r["grade_max"], r["missing_inputs"]) == (0, 4, ["LOC attribution"])
    # with a seizure (ICANS) that day the events give 3 (Table 4), still up to 4
    r = day(vent_study({"subject_id": "A", "day": 2.0, "event": "seizure", "attribution": "ICANS"}), 2,
            IcansOptions(ventilated_loc="range"))
    assert (r["grade"], r["grade_max"], r["rule"]) == (3, 4, "icans.seizure")


def test_b4_no_ventilation_outside_its_days():
    # ventilation days 1-3; the LOC on day 5 is not covered
    iv = [{**oxygen("mechanical_ventilation", 1), "end_day": 3.0}]
    r = day(study(obs=[("A", 5, "LOC", None, "unarousable")], iv=iv), 5, IcansOptions(ventilated_loc="range"))
    assert r["grade"] == 4 and "mechanical ventilation" not in r["reason"]


# --- B3: episodes across unassessed days ------------------------------------------------------------

def b3_study():
    # ICE 8 (1), 10 (0), 8 (1) on days 1-3; nothing days 4-5; ICE 6 (2) day 6; nothing 7-9; ICE 6 (2) day 10
    return study(obs=[("A", d, "ICE", v) for d, v in [(1, 8.0), (2, 10.0), (3, 8.0), (6, 6.0), (10, 6.0)]])


def test_b3_default_splits_and_names_the_unassessed_days():
    eps = derive_icans_episodes(b3_study())
    # gap 1: day 2 (assessed, ICE 10) joins days 1-3; days 4-5 (2 days) and 7-9 (3 days) split
    assert eps.select("ASTDY", "AENDY", "ATOXGR").rows() == [(1, 3, 1), (6, 6, 2), (10, 10, 2)]
    reasons = eps["reason"].to_list()
    assert "no ICANS assessment" not in reasons[0]
    assert "new episode after ICANS day 3: 2 of the 2 day(s) between have no ICANS assessment" in reasons[1]
    assert "new episode after ICANS day 6: 3 of the 3 day(s) between have no ICANS assessment" in reasons[2]
    assert derive_icans_daily(b3_study())["episode"].to_list() == [1, None, 1, 2, 3]


def test_b3_assessed_free_counts_only_recorded_free_days():
    eps = derive_icans_episodes(b3_study(), IcansOptions(episode_gap_days_count="assessed_free"))
    assert eps.select("ASTDY", "AENDY", "ATOXGR").rows() == [(1, 10, 2)]  # no assessed free day > 1 in a gap
    # two recorded ICE 10 days (grade_max 0) between: 2 > 1 splits in both modes, and no note
    s = study(obs=[("A", d, "ICE", v) for d, v in [(1, 8.0), (2, 10.0), (3, 10.0), (4, 8.0)]])
    for mode in ("any", "assessed_free"):
        eps = derive_icans_episodes(s, IcansOptions(episode_gap_days_count=mode))
        assert eps.select("ASTDY", "AENDY").rows() == [(1, 1), (4, 4)]
        assert not eps["reason"].str.contains("no ICANS assessment").any()


# --- B2: option loc_missing_with_score --------------------------------------------------------------

@pytest.mark.parametrize("obs, subjects, expected", [
    ([("A", 1, "ICE", 8.0)], None, (1, 3, ["LOC"])),  # ICE 7-9 = 1; tactile (3) not ruled out
    ([("A", 1, "ICE", 8.0), ("A", 1, "LOC", None, "alert")], None, (1, 1, [])),  # LOC recorded
    ([("A", 1, "ICE", 5.0)], None, (2, 3, ["LOC"])),  # ICE 3-6 = 2
    ([("A", 1, "CAPD", 5.0)], [{"subject_id": "A", "age_years": 8.0}], (1, 3, ["LOC"])),  # CAPD < 9 = 1
])
def test_b2_rousable_leaves_a_scored_day_up_to_3(obs, subjects, expected):
    s = study(subjects=subjects, obs=obs)
    r = day(s, 1, IcansOptions(loc_missing_with_score="rousable"))
    assert (r["grade"], r["grade_max"], r["missing_inputs"]) == expected
    d = day(s, 1)  # default 'not_depressed': the grade as recorded, no range
    assert (d["grade"], d["grade_max"]) == (expected[0], expected[0])


# --- C1 / conventions rows --------------------------------------------------------------------------

def test_conventions_rows_for_the_new_options():
    table = load_raw("astct_icans_2019")
    rows = {c["id"]: c for c in table["conventions"]}
    assert rows["icans.conv.episodes"]["options"] == ["episode_join_gap_days", "episode_gap_days_count"]
    assert rows["icans.conv.episodes"]["status"] == "convention"
    assert rows["icans.conv.age"]["options"] == ["ice_min_age_years"] and "NCIt" in rows["icans.conv.age"]["text"]
    assert rows["icans.conv.loc_missing"]["options"] == ["loc_missing_with_score"]
    assert rows["icans.conv.loc_attribution"]["options"] == ["ventilated_loc"]
    assert "episode_join_gap_days + 1" in rows["icans.conv.unattributed_death"]["text"]
    assert table["defaults"]["loc_missing_with_score"] == "not_depressed"
    assert table["defaults"]["ventilated_loc"] == "grade" and table["defaults"]["episode_gap_days_count"] == "any"
