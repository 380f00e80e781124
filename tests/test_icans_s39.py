"""Review 39 (ASTCT 2019 ICANS): impossible censored scores (B3), an absent events.csv (B1), how an
episode ends (B2), explain wording (C1).

Expected values are worked by hand from ASTCT 2019 Table 4 (Lee DW et al., BBMT 2019;25:625, as
reproduced in PMC8403007 Table 4: ICE 7-9 = 1, 3-6 = 2, 0-2 = 3, "0 (patient is unarousable and
unable to perform ICE)" = 4; seizure / focal oedema 3, life-threatening seizure / deep focal motor
weakness / diffuse oedema 4; "ICANS grade is determined by the most severe event"), ICE 0-10 and
CAPD 0-32 (Tables 3, 5), the study-format spec (value_text, "Only subjects.csv is required") and the
lead's decisions (absent_events default unknown; episode end resolved / not_assessed / death).
"""

from __future__ import annotations

import csv

import polars as pl
import pytest

from cartlab.errors import InputError
from cartlab.grading.icans import (
    IcansOptions,
    derive_icans_daily,
    derive_icans_episodes,
    derive_icans_summary,
)
from cartlab.io import read_study
from grading_helpers import study as mem_study


def _folder(root, obs, events=None, ages=None):
    """A study folder: subjects (age 30 unless ``ages``), observations (subject, day, param, value,
    value_text), doses (CAR-T day 0) and events.csv only when ``events`` is not None ([] = header)."""
    sids = sorted({r[0] for r in obs})
    ages = ages or {}
    with open(root / "subjects.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["subject_id", "age_years"])
        w.writerows([s, ages.get(s, 30)] for s in sids)
    with open(root / "observations.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["subject_id", "day", "param", "value", "value_text", "unit"])
        w.writerows([*r, ""] for r in obs)
    with open(root / "doses.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["subject_id", "day", "agent", "dose", "unit"])
        w.writerows([s, 0, "CAR-T", 1e6, "cells/kg"] for s in sids)
    if events is not None:
        with open(root / "events.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["subject_id", "day", "event", "detail", "attribution"])
            w.writerows(events)
    return root


def _day(frame, sid, day):
    return frame.filter((pl.col("subject_id") == sid) & (pl.col("day") == day)).row(0, named=True)


# --- B3: a censored bound no score satisfies is an input error -------------------------------------
@pytest.mark.parametrize("param, text", [("ICE", "<0"), ("ICE", "<=-1"), ("ICE", ">10"), ("CAPD", ">40"),
                                         ("CAPD", ">=33")])
def test_b3_impossible_censored_score_is_an_input_error(tmp_path, param, text):
    # ICE is 0-10, CAPD 0-32 (Tables 3, 5): "<0" / "<=-1" leave no ICE below 0, ">10" none above 10,
    # ">40" / ">=33" no CAPD above 32 -> refused like the number 33 is (old: clipped to ICE 0 / 10 / CAPD 32)
    root = _folder(tmp_path, [("A", 1, param, "", text)], events=[])
    with pytest.raises(InputError) as exc:
        read_study(root)
    msg = str(exc.value)
    assert "observations.csv" in msg and "value_text" in msg and repr(text) in msg and "leaves no score" in msg


@pytest.mark.parametrize("text", ["<2.5", "<=0", ">=10", "<1"])
def test_b3_possible_censored_bounds_are_read(tmp_path, text):
    # "<2.5" allows 0-2, "<=0" and "<1" allow 0, ">=10" allows 10: valid (a fractional bound is accepted)
    read_study(_folder(tmp_path, [("A", 1, "ICE", "", text)], events=[]))


def test_b3_a_censored_score_clipped_to_one_value_still_says_censored(tmp_path):
    # "<1" is ICE 0 -> grade 3 (ICE 0-2), up to 4 without LOC; it was never a measured "ICE 0"
    s = read_study(_folder(tmp_path, [("A", 1, "ICE", "", "<1"), ("B", 1, "ICE", 0, "")], events=[]))
    d = derive_icans_daily(s)
    a, b = _day(d, "A", 1), _day(d, "B", 1)
    assert (a["grade"], a["grade_max"]) == (3, 4) and a["reason"].startswith("ICE 0 (censored result)")
    assert b["reason"].startswith("ICE 0 ->") or b["reason"].startswith("ICE 0;")  # a measured 0 stays plain


# --- B1: events.csv not given: seizure / motor weakness / cerebral oedema unknown --------------------
@pytest.fixture
def noev(tmp_path):
    # A: ICE 10 day 1 (grade 0); B: ICE 8 day 1 (grade 1). No events.csv at all.
    return read_study(_folder(tmp_path, [("A", 1, "ICE", 10, ""), ("A", 1, "LOC", "", "alert"),
                                         ("B", 1, "ICE", 8, ""), ("B", 1, "LOC", "", "alert")]))


def test_b1_absent_events_open_each_graded_day_up_to_4(noev):
    # Table 4: a life-threatening seizure, deep motor weakness or diffuse oedema is 4 -> the observed
    # grade (0 / 1) is a lower bound up to 4, events.csv named; icans_grade_astct unchanged, max 4
    d = derive_icans_daily(noev)
    for sid, g in (("A", 0), ("B", 1)):
        r = _day(d, sid, 1)
        assert (r["grade"], r["grade_max"]) == (g, 4)
        assert r["missing_inputs"] == ["events.csv (not given)"]
        assert "events.csv (not given)" in r["reason"] and "icans.conv.absent_events" in r["rule"]
    summ = derive_icans_summary(noev)
    assert summ["icans_grade_astct"].to_list() == [0, 1] and summ["icans_grade_astct_max"].to_list() == [4, 4]


def test_b1_none_happened_is_the_old_reading_and_says_so(noev):
    d = derive_icans_daily(noev, IcansOptions(absent_events="none_happened"))
    r = _day(d, "B", 1)
    assert (r["grade"], r["grade_max"], r["missing_inputs"]) == (1, 1, [])
    assert "events.csv not given" in r["reason"]


def test_b1_header_only_events_is_none_recorded(tmp_path):
    s = read_study(_folder(tmp_path, [("A", 1, "ICE", 8, ""), ("A", 1, "LOC", "", "alert")], events=[]))
    r = _day(derive_icans_daily(s), "A", 1)
    assert (r["grade"], r["grade_max"], r["missing_inputs"]) == (1, 1, [])


# --- B2: how an episode ends ------------------------------------------------------------------------
def test_b2_unassessed_days_after_the_episode_make_its_end_a_range():
    # ICE 0 + unarousable day 5 (grade 4), no row days 6-7, ICE 10 + alert day 8 (grade 0, settled):
    # the episode resolved on day 6 at the earliest, day 8 at the latest -> lasted to day 7 at most,
    # ADURN 1 (5-5) up to 3 (5-7)
    s = mem_study(obs=[("A", 5, "ICE", 0.0), ("A", 5, "LOC", None, "unarousable"),
                       ("A", 8, "ICE", 10.0), ("A", 8, "LOC", None, "alert")])
    e = derive_icans_episodes(s).row(0, named=True)
    assert (e["ASTDY"], e["AENDY"], e["ADURN"], e["ATOXGR"]) == (5, 5, 1, 4)
    assert (e["end_reason"], e["resolution_day_latest"], e["ADURN_max"]) == ("not_assessed", 7, 3)
    assert "resolution between day 6 and day 8" in e["reason"]
    summ = derive_icans_summary(s).row(0, named=True)
    assert summ["icans_resolution_day_latest"] == 7.0 and "days 6-7" in summ["icans_resolution_open"]


def test_b2_next_day_assessed_free_is_resolved():
    # grade 2 on day 3 (ICE 5), ICE 10 + alert on day 4: resolved, the end settled (ADURN 1 = ADURN_max)
    s = mem_study(obs=[("A", 3, "ICE", 5.0), ("A", 3, "LOC", None, "alert"),
                       ("A", 4, "ICE", 10.0), ("A", 4, "LOC", None, "alert")])
    e = derive_icans_episodes(s).row(0, named=True)
    assert (e["end_reason"], e["resolution_day_latest"], e["ADURN"], e["ADURN_max"]) == ("resolved", None, 1, 1)
    assert derive_icans_summary(s)["icans_resolution_open"].to_list() == [None]


def test_b2_death_of_another_cause_ends_the_episode_unresolved():
    # ICE 2 + awakens to voice day 3 (grade 3), death attributed to CRS day 4: not ICANS grade 5 (Table 4
    # grade 5 is death due to ICANS) but the episode never resolved: ended at death, day 4 at the latest
    s = mem_study(obs=[("A", 3, "ICE", 2.0), ("A", 3, "LOC", None, "awakens_to_voice")],
                  events=[{"subject_id": "A", "day": 4.0, "event": "death", "attribution": "CRS"}])
    e = derive_icans_episodes(s).row(0, named=True)
    assert (e["ATOXGR"], e["AENDY"], e["end_reason"], e["resolution_day_latest"], e["ADURN_max"]) == (3, 3, "death", 4, 2)
    assert "death on day 4 (events.csv:1, attributed to CRS)" in e["reason"]


def test_b2_no_assessment_after_the_episode_is_open():
    s = mem_study(obs=[("A", 2, "ICE", 8.0), ("A", 2, "LOC", None, "alert")])
    e = derive_icans_episodes(s).row(0, named=True)
    assert (e["end_reason"], e["resolution_day_latest"], e["ADURN_max"]) == ("not_assessed", None, None)
    assert "no ICANS-free assessment after day 2" in e["reason"]


# --- C1: the score named by the age; the age-unknown convention ----------------------------------
def test_c1_a_teen_without_ice_is_missing_ice_not_ice_capd():
    # age 12 (ICE from 12, spec): CAPD 10 not graded; no ICE -> 0 up to 3 (ICE 0-2 = 3), "ICE" missing
    s = mem_study(subjects=[{"subject_id": "A", "age_years": 12.0}], obs=[("A", 2, "CAPD", 10.0)])
    with pytest.warns(Warning):
        r = _day(derive_icans_daily(s), "A", 2)
    assert (r["grade"], r["grade_max"], r["missing_inputs"]) == (0, 3, ["ICE"])
    assert "no ICE score that day" in r["reason"] and "ICE/CAPD" not in r["reason"]


def test_c1_age_unknown_names_the_convention():
    # age empty, CAPD 10 only -> graded by CAPD >= 9 = 3 (spec: whichever is recorded), convention named
    s = mem_study(subjects=[{"subject_id": "A", "age_years": None}], obs=[("A", 2, "CAPD", 10.0)])
    r = _day(derive_icans_daily(s), "A", 2)
    assert r["grade"] == 3 and "icans.conv.age" in r["rule"] and "age unknown" in r["reason"]


def test_c1_explain_all_days_without_any_day_does_not_suggest_all_days(tmp_path):
    from typer.testing import CliRunner

    from cartlab.cli import app
    root = _folder(tmp_path, [("A", 1, "TEMP", 37.0, "")], events=[])
    with open(root / "observations.csv", "w", newline="") as fh:  # a temperature needs its unit
        csv.writer(fh).writerows([["subject_id", "day", "param", "value", "value_text", "unit"],
                                  ["A", 1, "TEMP", 37.0, "", "C"]])
    out = CliRunner().invoke(app, ["explain", "A", "--study", str(root), "--what", "icans", "--all-days"])
    assert out.exit_code == 0, out.output
    assert "use --all-days" not in out.output and "no assessed day recorded" in out.output
