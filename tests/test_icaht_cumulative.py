"""Early N-ICAHT durations are cumulative (project contract, study-format.md "ICAHT (EHA/EBMT 2023)").

Source of the rule: Rejeski et al., Blood 2025 (T-ICAHT), Table 1 footnote, which restates "the
principal logic of the existing N-ICAHT grading": "For early T-ICAHT, the cumulative length beneath
the respective threshold is calculated" and "Days of nonstable count recovery (<3 days) are counted
to the cumulative total of days" (http://www.ash-sap.org/view-large/12809257).

Every expected value below is derived by hand from the contract's grade table (grade 1: 1-6 days
ANC <= 0.5; grade 2: 7-13 days; grade 3: >= 14 days <= 0.5 or >= 7 days <= 0.1; grade 4: never above
0.5 in days 0-30 or >= 14 days <= 0.1), never copied from the program's output.
"""

from __future__ import annotations

import polars as pl
import pytest
from test_hematotox import make_study

from cartlab.grading.hematotox import IcahtOptions, derive_icaht, derive_icaht_daily, derive_icaht_episodes

HIGH = 1.0  # ANC above every early level (a recovered day)


def course(values: dict[int, float], days=range(31)):
    """Daily NEUT on ``days``: ``values[d]`` where given, HIGH otherwise."""
    return [(d, "NEUT", values.get(d, HIGH)) for d in days]


def spans(*parts: tuple[int, int, float]) -> dict[int, float]:
    """{day: value} from (first day, last day, value) spans."""
    return {d: v for lo, hi, v in parts for d in range(lo, hi + 1)}


def early(obs, **opt) -> dict:
    return derive_icaht(make_study(obs), IcahtOptions(**opt)).row(0, named=True)


# ---------------------------------------------------------------------------------------------
# ANC <= 0.5: episodes separated by a stable (3-day) recovery add up


@pytest.mark.parametrize("a, b, total, grade", [
    (3, 3, 6, 1),    # 3 + 3 = 6 days -> grade 1 (1-6 days)
    (3, 4, 7, 2),    # 3 + 4 = 7 days -> grade 2 (the longest single run, 4 days, would be grade 1)
    (6, 7, 13, 2),   # 6 + 7 = 13 days -> grade 2
    (7, 7, 14, 3),   # 7 + 7 = 14 days -> grade 3 (the longest run, 7 days, would be grade 2)
])
def test_anc500_days_are_cumulative_across_a_stable_recovery(a, b, total, grade):
    # ANC 0.3 on days 1..a, recovery (1.0) on the 3 days a+1..a+3 (stable: not counted), 0.3 on the b days after
    low = spans((1, a, 0.3), (a + 4, a + 3 + b, 0.3))
    r = early(course(low))
    assert r["anc_le_500_days"] == total
    assert (r["anc_le_500_start"], r["anc_le_500_end"]) == (1, a + 3 + b)
    assert r["icaht_early_grade"] == grade


@pytest.mark.parametrize("a, b, grade", [
    (3, 3, 2),  # <= 0.1 for 6 days; <= 0.5 on days 1-9 (9 days) -> grade 2
    (3, 4, 3),  # <= 0.1 for 7 days -> grade 3 (longest single run 4 days -> grade 2)
    (7, 6, 3),  # <= 0.1 for 13 days -> grade 3 (and <= 0.5 for 16 days)
    (7, 7, 4),  # <= 0.1 for 14 days -> grade 4 (longest single run 7 days -> grade 3)
])
def test_anc100_days_are_cumulative(a, b, grade):
    # ANC 0.05 on days 1..a, 0.3 (above 0.1, still <= 0.5) on the 3 days after, 0.05 on the next b days
    low = spans((1, a, 0.05), (a + 1, a + 3, 0.3), (a + 4, a + 3 + b, 0.05))
    r = early(course(low))
    assert r["anc_le_100_days"] == a + b
    assert r["anc_le_500_days"] == a + 3 + b
    assert r["icaht_early_grade"] == grade


# ---------------------------------------------------------------------------------------------
# cumulative (default) versus the longest-run option on one hand-built course

# days 1-4 ANC 0.3 | days 5-6 ANC 0.8 (2-day, non-stable recovery) | days 7-8 ANC 0.3 |
# days 9-11 ANC 0.8 (3-day, stable recovery) | days 12-17 ANC 0.3 | days 0, 18-30 ANC 1.0
MIXED = course(spans((1, 4, 0.3), (5, 6, 0.8), (7, 8, 0.3), (9, 11, 0.8), (12, 17, 0.3)))


def test_cumulative_and_longest_run_differ_on_a_mixed_course():
    # cumulative: 4 + 2 (non-stable recovery counted) + 2 + 6 = 14 days <= 0.5 -> grade 3
    r = early(MIXED)
    assert (r["anc_le_500_days"], r["anc_le_500_start"], r["anc_le_500_end"]) == (14, 1, 17)
    assert r["icaht_early_grade"] == 3 and r["early_rule"] == "icaht.early.g3_anc500_ge14"
    assert "14 days in total" in r["early_reason"] and "2 episodes" in r["early_reason"]
    assert "2 days of non-stable recovery" in r["early_reason"]
    # longest run: episode 1 = days 1-8 joined across the 2-day recovery = 8 days -> grade 2
    lr = early(MIXED, duration="longest_run")
    assert (lr["anc_le_500_days"], lr["anc_le_500_start"], lr["anc_le_500_end"]) == (8, 1, 8)
    assert lr["icaht_early_grade"] == 2
    # recovery days not counted: 4 + 2 + 6 = 12 days -> grade 2
    nc = early(MIXED, count_recovery_days_in_run=False)
    assert (nc["anc_le_500_days"], nc["icaht_early_grade"]) == (12, 2)


def test_non_stable_recovery_counted_stable_recovery_not():
    # two 5-day episodes (days 1-5 and the 5 days after the recovery)
    two = early(course(spans((1, 5, 0.3), (8, 12, 0.3))))      # recovery days 6-7 (2 days): 5 + 2 + 5
    three = early(course(spans((1, 5, 0.3), (9, 13, 0.3))))    # recovery days 6-8 (3 days): 5 + 5
    assert (two["anc_le_500_days"], two["icaht_early_grade"]) == (12, 2)
    assert (three["anc_le_500_days"], three["icaht_early_grade"]) == (10, 2)
    assert (three["anc_le_500_start"], three["anc_le_500_end"]) == (1, 13)
    # a stable recovery of 5 days between a 4-day and a 3-day episode: 4 + 3 = 7 -> grade 2
    r = early(course(spans((1, 4, 0.3), (10, 12, 0.3))))
    assert (r["anc_le_500_days"], r["icaht_early_grade"]) == (7, 2)


def test_recovery_at_the_window_edge_is_judged_inside_days_0_30():
    # <= 0.5 on days 20-28, above on days 29-30, low again on day 31 (outside the window):
    # the 2 days 29-30 are not followed by a drop inside days 0-30, so they are not counted: 9 days
    obs = [(d, "NEUT", 0.3 if 20 <= d <= 28 or d >= 31 else 1.0) for d in range(40)]
    r = early(obs)
    assert (r["anc_le_500_days"], r["anc_le_500_end"], r["icaht_early_grade"]) == (9, 28, 2)


def test_interpolated_days_between_sparse_measurements_add_up():
    # measured: day 0 1.0, day 5 0.0, day 10 1.0, day 15 0.0, day 20 1.0, day 30 1.0.
    # Linear interpolation (0.2 per day): days 3-7 = 0.4, 0.2, 0.0, 0.2, 0.4 <= 0.5 and days 13-17
    # likewise; days 8-12 are >= 0.6 (a stable recovery) -> 5 + 5 = 10 days -> grade 2.
    # <= 0.1 only on the measured days 5 and 15 (days 4, 6, 14, 16 are 0.2): 2 days.
    obs = [(0, "NEUT", 1.0), (5, "NEUT", 0.0), (10, "NEUT", 1.0), (15, "NEUT", 0.0), (20, "NEUT", 1.0),
           (30, "NEUT", 1.0)]
    r = early(obs)
    assert (r["anc_le_500_days"], r["anc_le_500_start"], r["anc_le_500_end"]) == (10, 3, 17)
    assert r["anc_le_100_days"] == 2
    assert r["icaht_early_grade"] == 2
    assert r["early_evidence"] == [f"observations.csv:{i}" for i in range(1, 7)]
    d3 = derive_icaht_daily(make_study(obs)).filter(pl.col("day") == 3).row(0, named=True)
    assert d3["source"] == "interpolated" and d3["anc"] == pytest.approx(0.4)
    # longest run: one 5-day episode -> grade 1; no interpolation: the 2 measured days -> grade 1
    assert early(obs, duration="longest_run")["anc_le_500_days"] == 5
    r = early(obs, interpolate=False)
    assert (r["anc_le_500_days"], r["icaht_early_grade"]) == (2, 1)


def test_an_interpolated_count_exactly_at_the_level_is_at_or_below_it():
    # measured: day 0 1.3, days 3 and 7 0.1, day 10 1.3, day 30 1.3. By hand, 0.4 per day: day 2 =
    # 1.3 - 0.4 * 2 = 0.5 and day 8 = 0.1 + 0.4 = 0.5, both "at or below" 0.5 -> days 2-8 = 7 days
    # (grade 2). In binary floating point 1.3 + (0.1 - 1.3) * (2/3) is 0.5000000000000001, which
    # counted day 2 as above the level (6 days, grade 1) before interpolated values were rounded.
    # <= 0.1 on days 3-7 (5 days).
    obs = [(0, "NEUT", 1.3), (3, "NEUT", 0.1), (7, "NEUT", 0.1), (10, "NEUT", 1.3), (30, "NEUT", 1.3)]
    r = early(obs)
    assert (r["anc_le_500_days"], r["anc_le_500_start"], r["anc_le_500_end"]) == (7, 2, 8)
    assert r["anc_le_100_days"] == 5
    assert r["icaht_early_grade"] == 2
    d2 = derive_icaht_daily(make_study(obs)).filter(pl.col("day") == 2).row(0, named=True)
    assert (d2["source"], d2["anc"], d2["anc_le_500"]) == ("interpolated", 0.5, True)


def test_unknown_days_are_not_counted_and_do_not_bridge():
    # daily ANC 0.3 on days 1-4 and 9-12, nothing measured on days 5-8 and interpolation limited
    # to 3 missing days: days 5-8 are unknown -> 4 + 4 = 8 days (grade 2), not 12
    obs = [(d, "NEUT", 0.3 if 1 <= d <= 12 else 1.0) for d in range(31) if not 5 <= d <= 8]
    r = early(obs, max_interpolation_gap_days=3)
    assert (r["anc_le_500_days"], r["icaht_early_grade"]) == (8, 2)
    # interpolated (0.3 between two 0.3 values) the 4 days count: 12 days
    assert early(obs)["anc_le_500_days"] == 12


def test_duration_option_is_validated():
    with pytest.raises(ValueError, match="duration"):
        early(MIXED, duration="longest")


def test_episodes_row_uses_the_cumulative_duration():
    s = make_study(MIXED)
    ep = derive_icaht_episodes(s).row(0, named=True)
    # ASTDY/AENDY: first and last day counted; ADURN: cumulative days (4 + 2 + 2 + 6)
    assert (ep["ATOXGR"], ep["ASTDY"], ep["AENDY"], ep["ADURN"]) == (3, 1, 17, 14)


# ---------------------------------------------------------------------------------------------
# late ICAHT: sentences of the contract


def late(obs, events=(), **opt) -> dict:
    return derive_icaht(make_study(obs, events=events), IcahtOptions(**opt)).row(0, named=True)


def test_late_includes_neutropenia_continuing_from_the_early_window():
    # ANC 0.3 every day from day 1 to day 45, 2.0 afterwards: the late measurements on days 31-45
    # (15 of them) are <= 0.5 -> late grade 3, although the neutropenia began in the early window
    obs = [(d, "NEUT", 0.3 if 1 <= d <= 45 else 2.0) for d in range(0, 61)]
    r = late(obs)
    assert (r["icaht_early_grade"], r["icaht_late_grade"]) == (3, 3)
    assert r["late_n_measurements"] == 30  # days 31-60


@pytest.mark.parametrize("event", ["new_therapy", "relapse", "allo_hsct"])
def test_events_before_infusion_do_not_end_the_late_window(event):
    # a bridging therapy (new_therapy) or the pre-infusion disease status (relapse) recorded before
    # day 0 is not the "new therapy" or "relapse" that ends the late window (day 31 to the earliest
    # of day 100, relapse, new therapy, HSCT or last follow-up); late grade 3 from days 40 and 50
    obs = [(d, "NEUT", 2.0) for d in range(31)] + [(40, "NEUT", 0.3), (50, "NEUT", 0.3)]
    r = late(obs, events=[{"day": -10.0, "event": event}])
    assert (r["icaht_late_grade"], r["late_window_end"]) == (3, 100.0)
    # after infusion the same event still ends it (day 20: the late window is empty)
    r = late(obs, events=[{"day": 20.0, "event": event}])
    assert r["icaht_late_grade"] is None and "late window is empty" in r["late_reason"]
