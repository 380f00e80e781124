"""T-ICAHT (Rejeski et al., Blood 2025, Table 1, http://www.ash-sap.org/view-large/12809257).

Expected grades are derived by hand from the table as quoted in criteria/t_icaht_2025.yaml:
early (days 0-30): PLT < 50 x10^9/L for 1-6 days = 1, >= 7 days = 2; PLT < 20 for 1-13 days = 3,
>= 14 days = 4 (cumulative days, non-stable recoveries < 3 days counted, censored at progression,
next therapy or death); late (days 31-100, two or more measurements): PLT < 100 = 1, < 50 = 2,
< 20 for 1-13 days = 3, >= 14 days = 4. Platelet recovery: first of 3 consecutive days >= 20 without
platelet transfusion for 7 days (a transfused count is not a recovery).
"""

from __future__ import annotations

import polars as pl
import pytest
from test_hematotox import make_study

from cartlab.datasets import seed_case
from cartlab.grading.common import load_criteria
from cartlab.grading.hematotox import (
    RecoveryOptions,
    TIcahtOptions,
    derive_count_recovery,
    derive_t_icaht,
    derive_t_icaht_daily,
)

HIGH = 150.0  # above every T-ICAHT level


def plt(values: dict[int, float], days=range(31)):
    """Daily PLAT on ``days``: ``values[d]`` where given, HIGH otherwise."""
    return [(d, "PLAT", values.get(d, HIGH)) for d in days]


def spans(*parts: tuple[int, int, float]) -> dict[int, float]:
    return {d: v for lo, hi, v in parts for d in range(lo, hi + 1)}


def grade(obs, iv=(), events=(), lfu=None, **opt) -> dict:
    return derive_t_icaht(make_study(obs, iv=iv, events=events, last_followup=lfu), TIcahtOptions(**opt)).row(0, named=True)


def ptx(day, category="platelet_transfusion"):
    return {"start_day": float(day), "category": category}


# ---------------------------------------------------------------------------------------------
# early T-ICAHT: duration boundaries


@pytest.mark.parametrize("n, g", [(0, 0), (1, 1), (6, 1), (7, 2), (30, 2)])
def test_early_plt50_days(n, g):
    r = grade(plt(spans((1, n, 40.0))))  # PLT 40 (< 50, >= 20) on n days
    assert r["plt_lt_50_days"] == n and r["plt_lt_20_days"] == 0
    assert r["t_icaht_early_grade"] == g


@pytest.mark.parametrize("n, g", [(1, 3), (13, 3), (14, 4)])
def test_early_plt20_days(n, g):
    # PLT 40 on days 1-20 and 10 (< 20) on the first n of them
    r = grade(plt({**spans((1, 20, 40.0)), **spans((1, n, 10.0))}))
    assert (r["plt_lt_20_days"], r["plt_lt_50_days"]) == (n, 20)
    assert r["t_icaht_early_grade"] == g


@pytest.mark.parametrize("a, b, g", [(3, 3, 1), (3, 4, 2)])
def test_early_plt50_days_are_cumulative(a, b, g):
    # PLT 40 on days 1..a and a+4..a+3+b, a 3-day stable recovery (150) between: a + b days
    r = grade(plt(spans((1, a, 40.0), (a + 4, a + 3 + b, 40.0))))
    assert (r["plt_lt_50_days"], r["plt_lt_50_episodes"]) == (a + b, 2)
    assert r["t_icaht_early_grade"] == g


def test_early_plt20_cumulative_across_stable_and_non_stable_recoveries():
    # PLT 10 on days 1-6, 25 (>= 20, no transfusion) on days 7-8 (2 days: non-stable), 10 on days
    # 9-14 -> 6 + 2 + 6 = 14 days < 20 -> grade 4
    r = grade(plt(spans((1, 6, 10.0), (7, 8, 25.0), (9, 14, 10.0))))
    assert (r["plt_lt_20_days"], r["plt_lt_20_recovery_days"], r["t_icaht_early_grade"]) == (14, 2, 4)
    # a 3-day recovery (days 7-9) is stable and not counted: 6 + 6 = 12 days -> grade 3
    r = grade(plt(spans((1, 6, 10.0), (7, 9, 25.0), (10, 15, 10.0))))
    assert (r["plt_lt_20_days"], r["t_icaht_early_grade"]) == (12, 3)
    # the longest-run option: one 6-day run -> grade 3
    r = grade(plt(spans((1, 6, 10.0), (7, 9, 25.0), (10, 15, 10.0))), duration="longest_run")
    assert (r["plt_lt_20_days"], r["t_icaht_early_grade"]) == (6, 3)


def test_thresholds_are_strict_as_printed():
    assert grade(plt(spans((1, 7, 50.0))))["t_icaht_early_grade"] == 0     # 50 is not < 50
    assert grade(plt(spans((1, 7, 49.9))))["t_icaht_early_grade"] == 2     # 7 days < 50
    r = grade(plt(spans((1, 14, 20.0))))                                     # 20 is not < 20
    assert (r["plt_lt_20_days"], r["t_icaht_early_grade"]) == (0, 2)
    assert grade(plt(spans((1, 14, 19.9))))["t_icaht_early_grade"] == 4
    # inclusive option: "<=" the level
    assert grade(plt(spans((1, 7, 50.0))), inclusive=True)["t_icaht_early_grade"] == 2
    assert grade(plt(spans((1, 14, 20.0))), inclusive=True)["t_icaht_early_grade"] == 4


def test_interpolation_between_sparse_platelet_counts():
    # measured: day 0 150, day 10 10, day 20 150, day 30 150. Interpolated 14 per day:
    # day 8 38, day 9 24, day 10 10, day 11 24, day 12 38 -> < 20 on day 10 only (1 day -> grade 3);
    # < 50 where 150 - 14 k < 50, k >= 8: days 8-12 (38, 24, 10, 24, 38) = 5 days
    obs = [(0, "PLAT", 150.0), (10, "PLAT", 10.0), (20, "PLAT", 150.0), (30, "PLAT", 150.0)]
    r = grade(obs)
    assert (r["plt_lt_50_days"], r["plt_lt_50_start"], r["plt_lt_50_end"]) == (5, 8, 12)
    assert (r["plt_lt_20_days"], r["t_icaht_early_grade"]) == (1, 3)
    d9 = derive_t_icaht_daily(make_study(obs)).filter(pl.col("day") == 9).row(0, named=True)
    assert d9["source"] == "interpolated" and d9["plt"] == pytest.approx(24.0)
    assert d9["evidence"] == ["observations.csv:1", "observations.csv:2"]


def test_an_interpolated_count_exactly_at_the_level_is_not_below_it():
    # measured: day 0 150, day 1 2.0, day 12 54.8, day 30 150. By hand, 4.8 per day from day 1:
    # day k = 2.0 + 4.8 (k - 1); day 11 = 50.0 exactly, not "< 50" -> < 50 on days 1-10 (10 days);
    # < 20 while 4.8 (k - 1) < 18, days 1-4 (4 days). In binary floating point 2.0 + 52.8 * (10/11)
    # is 49.99999999999999, which counted day 11 as below 50 before interpolated values were rounded.
    obs = [(0, "PLAT", 150.0), (1, "PLAT", 2.0), (12, "PLAT", 54.8), (30, "PLAT", 150.0)]
    r = grade(obs)
    assert (r["plt_lt_50_days"], r["plt_lt_50_start"], r["plt_lt_50_end"]) == (10, 1, 10)
    assert r["plt_lt_20_days"] == 4
    d11 = derive_t_icaht_daily(make_study(obs)).filter(pl.col("day") == 11).row(0, named=True)
    assert (d11["source"], d11["plt"]) == ("interpolated", 50.0)


# ---------------------------------------------------------------------------------------------
# platelet transfusion: a transfused count is not a recovery


def test_transfusion_supported_counts_stay_below_20():
    # PLT 10 on days 1-10, a platelet transfusion on day 10, PLT 30 from day 11. The transfusion
    # covers days 10-17 (the day itself and the 7 days after), so days 11-17 are not a recovery:
    # < 20 on days 1-17 = 17 days -> grade 4 (without the transfusion: 10 days -> grade 3).
    obs = plt({**spans((1, 10, 10.0)), **spans((11, 30, 30.0))})
    r = grade(obs, iv=[ptx(10)])
    assert (r["plt_lt_20_days"], r["plt_lt_20_end"], r["t_icaht_early_grade"]) == (17, 17, 4)
    assert r["early_transfusion_supported_days"] == 7  # days 11-17: counts of 30 counted below 20
    assert "interventions.csv:1" in r["early_evidence"]
    assert "7 day(s) counted below 20" in r["early_reason"] and "not a recovery" in r["early_reason"]
    assert grade(obs)["t_icaht_early_grade"] == 3
    # the counts stay < 50 throughout, so the < 50 duration does not depend on the transfusion
    assert grade(obs, iv=[ptx(10)])["plt_lt_50_days"] == 30
    # the recovery day of the ASTCT/CIBMTR definition is the first day after the covered ones
    rec = derive_count_recovery(make_study(obs, iv=[ptx(10)])).row(0, named=True)
    assert rec["platelet_recovery_day"] == 18.0
    # other transfusion categories do not count; the option can switch the rule off
    assert grade(obs, iv=[ptx(10, "rbc_transfusion")])["plt_lt_20_days"] == 10
    assert grade(obs, iv=[ptx(10)], transfusion_supported_levels=())["plt_lt_20_days"] == 10
    assert grade(obs, iv=[ptx(10)], platelet_transfusion_free_days=3)["plt_lt_20_days"] == 13
    d = derive_t_icaht_daily(make_study(obs, iv=[ptx(10)])).filter(pl.col("day") == 17).row(0, named=True)
    assert d["transfusion_supported"] is True and d["plt_lt_20"] is True and d["plt_lt_50"] is True
    assert d["below_by_transfusion"] is True
    assert d["evidence"] == ["observations.csv:18", "interventions.csv:1"]
    # day 10: PLT 10 is below 20 by itself; the transfusion that day is not cited as the cause
    d = derive_t_icaht_daily(make_study(obs, iv=[ptx(10)])).filter(pl.col("day") == 10).row(0, named=True)
    assert d["transfusion_supported"] is True and d["below_by_transfusion"] is False
    assert d["evidence"] == ["observations.csv:11"]
    d = derive_t_icaht_daily(make_study(obs, iv=[ptx(10)])).filter(pl.col("day") == 18).row(0, named=True)
    assert d["transfusion_supported"] is False and d["plt_lt_20"] is False


def test_recovery_option_values_agree_with_the_recovery_table():
    # the criteria row and the ASTCT recovery default share 20 x10^9/L, 3 days, 7 transfusion-free days
    t = load_criteria("t_icaht_2025")
    assert (t["recovery"]["value"], t["defaults"]["stable_recovery_days"],
            t["defaults"]["platelet_transfusion_free_days"]) == (20, 3, 7)
    r = RecoveryOptions().resolved()
    assert (r["consecutive"], r["platelet_transfusion_free_days"]) == (3, 7)


# ---------------------------------------------------------------------------------------------
# censoring of the early window


@pytest.mark.parametrize("event, day, g, last", [
    ("death", 10.0, 3, 10),       # days 0-10: PLT 10 on days 1-10 = 10 days -> grade 3
    ("relapse", 12.0, 3, 12),     # 12 days -> grade 3
    ("new_therapy", 14.0, 4, 14),  # the censoring day still counts: 14 days -> grade 4
    ("allo_hsct", 13.0, 3, 13),
    ("seizure", 10.0, 4, 30),     # not a censoring event: 20 days -> grade 4
])
def test_early_window_is_censored(event, day, g, last):
    obs = plt(spans((1, 20, 10.0)))
    r = grade(obs, events=[{"day": day, "event": event}])
    assert (r["t_icaht_early_grade"], r["early_window_end"]) == (g, float(last))
    if last < 30:
        assert r["early_window_end_reason"] == event and "events.csv:1" in r["early_evidence"]
        assert f"censored: {event}" in r["early_reason"]


def test_censoring_day_exclusive_option_and_events_before_day_0():
    obs = plt(spans((1, 20, 10.0)))
    r = grade(obs, events=[{"day": 14.0, "event": "death"}], censor_day_inclusive=False)
    assert (r["plt_lt_20_days"], r["t_icaht_early_grade"]) == (13, 3)
    # a progression before infusion does not censor the post-infusion windows
    r = grade(obs, events=[{"day": -20.0, "event": "relapse"}])
    assert (r["t_icaht_early_grade"], r["early_window_end"]) == (4, 30.0)


# ---------------------------------------------------------------------------------------------
# late T-ICAHT


BASE = [(d, "PLAT", HIGH) for d in range(31)]


def late(extra, **kw) -> dict:
    return grade(BASE + list(extra), **kw)


def test_late_levels_need_two_measurements():
    one = late([(40, "PLAT", 10.0)])
    assert one["t_icaht_late_grade"] is None and one["late_rule"] is None
    assert "1 platelet measurement(s)" in one["late_reason"] and "2 needed" in one["late_reason"]
    assert late([(40, "PLAT", 99.0), (50, "PLAT", 99.0)])["t_icaht_late_grade"] == 1
    assert late([(40, "PLAT", 100.0), (50, "PLAT", 99.0)])["t_icaht_late_grade"] == 0  # 100 is not < 100
    assert late([(40, "PLAT", 49.0), (50, "PLAT", 49.0)])["t_icaht_late_grade"] == 2
    assert late([(40, "PLAT", 49.0), (50, "PLAT", 60.0)])["t_icaht_late_grade"] == 1  # < 50 only once
    assert late([(40, "PLAT", 49.0), (50, "PLAT", 60.0)], late_min_measurements=1)["t_icaht_late_grade"] == 2


def test_late_plt20_durations():
    # measured: day 30 150, day 40 10, day 50 10, day 60 100 (and 150 on days 0-29).
    # Days 31-39: 150 - 14 k (k = 1..9) -> day 39 = 24 (not < 20); days 40-50 = 10; days 51-59:
    # 10 + 9 k -> day 51 = 19 (< 20), day 52 = 28. < 20 on days 40-51 = 12 days -> grade 3.
    r = late([(40, "PLAT", 10.0), (50, "PLAT", 10.0), (60, "PLAT", 100.0)])
    assert (r["late_plt_lt_20_days"], r["late_plt_lt_20_start"], r["late_plt_lt_20_end"]) == (12, 40, 51)
    assert r["t_icaht_late_grade"] == 3 and r["late_rule"] == "t_icaht.late.g3_plt20_1_13"
    assert (r["late_n_measurements"], r["late_n_plt_20"], r["late_n_plt_50"]) == (3, 2, 2)
    assert (r["late_plt_nadir"], r["late_plt_confirmed"]) == (10.0, 10.0)
    # day 53 instead of day 50: days 40-53 = 10, day 54 = 19, day 55 = 28 -> 15 days -> grade 4
    r = late([(40, "PLAT", 10.0), (53, "PLAT", 10.0), (63, "PLAT", 100.0)])
    assert (r["late_plt_lt_20_days"], r["t_icaht_late_grade"]) == (15, 4)


def test_late_window_ends_at_day_100_events_and_last_followup():
    obs = [(40, "PLAT", 40.0), (50, "PLAT", 40.0), (101, "PLAT", 10.0), (102, "PLAT", 10.0)]
    r = late(obs)
    assert (r["t_icaht_late_grade"], r["late_window_end"], r["late_n_measurements"]) == (2, 100.0, 2)
    assert late(obs, late_end_day=120)["t_icaht_late_grade"] == 4  # days 101-102 < 20 plus the slope
    r = late(obs, events=[{"day": 45.0, "event": "death"}])
    assert (r["t_icaht_late_grade"], r["late_window_end_reason"]) == (None, "death")
    assert late(obs, lfu=45.0)["t_icaht_late_grade"] is None
    # an early death leaves the late window empty
    r = late(obs, events=[{"day": 20.0, "event": "death"}])
    assert r["t_icaht_late_grade"] is None and "late window is empty" in r["late_reason"]


# ---------------------------------------------------------------------------------------------
# missing is not negative


def test_no_platelet_counts_is_not_evaluable_never_grade_0():
    neut_only = make_study([(d, "NEUT", 0.3) for d in range(60)])
    r = derive_t_icaht(neut_only).row(0, named=True)
    assert r["t_icaht_early_grade"] is None and r["t_icaht_late_grade"] is None
    assert r["early_rule"] is None and r["late_rule"] is None
    assert r["early_reason"].startswith("not evaluable: no platelet count in days 0-30")
    assert r["late_reason"].startswith("not evaluable: 0 platelet measurement(s)")
    assert r["evidence"] == []
    # counts only after day 30: early not evaluable, late graded
    r = grade([(40, "PLAT", 150.0), (50, "PLAT", 150.0)])
    assert (r["t_icaht_early_grade"], r["t_icaht_late_grade"]) == (None, 0)
    # counts around the window (day -1 and day 31) interpolate into it: evaluable
    r = grade([(-1, "PLAT", 150.0), (31, "PLAT", 150.0)])
    assert r["t_icaht_early_grade"] == 0


def test_several_subjects_independently():
    rows = [{"subject_id": sid, "day": float(d), "param": "PLAT", "value": v, "unit": "10^9/L",
             "src_file": "observations.csv", "src_row": i * 100 + d + 1}
            for i, (sid, v) in enumerate((("A", 10.0), ("B", 40.0))) for d in range(31)]
    from cartlab.model import Study, conform
    s = Study(study_id="t", subjects=conform(pl.DataFrame({"subject_id": ["A", "B", "C"]}), "subjects"),
              observations=conform(pl.DataFrame(rows), "observations"))
    r = derive_t_icaht(s)
    assert r["subject_id"].to_list() == ["A", "B", "C"]
    assert r["t_icaht_early_grade"].to_list() == [4, 2, None]


# ---------------------------------------------------------------------------------------------
# the criteria table and the seed case


def test_criteria_table_rows_are_cited_and_match_the_paper():
    t = load_criteria("t_icaht_2025")
    assert {k: v["value"] for k, v in t["levels"].items()} == {"plt_100": 100, "plt_50": 50, "plt_20": 20}
    rows = t["rule_sets"]["early"] + t["rule_sets"]["late"]
    assert all(r.get("citation") and r.get("status") for r in rows)
    by_id = {r["id"]: r for r in rows}
    assert by_id["t_icaht.late.g2_plt50"]["grade"] == 2 and "≥1" in by_id["t_icaht.late.g2_plt50"]["citation"]
    assert (t["defaults"]["early_window"], t["defaults"]["late_start_day"], t["defaults"]["late_end_day"]) == (
        [0, 30], 31, 100)
    assert t["defaults"]["inclusive"] is False and t["defaults"]["duration"] == "cumulative"


def test_seed_case_t_icaht():
    # Seed PLAT: 34, 33, 32 on days 0-2 (no transfusion before day 4), then 12-18 on days 3-44,
    # 20-32 on days 45-60; platelet transfusions every 3 days from day 4 to day 58.
    # Early: < 50 on days 0-30 (31 days), < 20 on days 3-30 (28 days) -> grade 4.
    # Late (days 31-60: allo-HSCT and last follow-up on day 60): < 20 measured on days 31-44, and
    # days 45-60 (>= 20) are each within 7 days of a transfusion -> 30 days -> grade 4.
    r = derive_t_icaht(seed_case()).row(0, named=True)
    assert (r["plt_lt_50_days"], r["plt_lt_20_days"], r["plt_lt_20_start"]) == (31, 28, 3)
    assert r["t_icaht_early_grade"] == 4 and r["early_rule"] == "t_icaht.early.g4_plt20_ge14"
    assert (r["late_window_end"], r["late_plt_lt_20_days"], r["late_n_measurements"]) == (60.0, 30, 30)
    assert r["t_icaht_late_grade"] == 4
    assert (r["early_transfusion_supported_days"], r["late_transfusion_supported_days"]) == (0, 16)  # days 45-60
    assert any(e.startswith("interventions.csv:") for e in r["late_evidence"])
    assert not any(e.startswith("interventions.csv:") for e in r["early_evidence"])
