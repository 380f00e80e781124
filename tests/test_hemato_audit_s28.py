"""Session 28 audit of the haematotoxicity engines (/work/notes/audit_hemmol/REPORT.md, findings 6, 7, 9,
10). Every expected value is derived by hand in the comment above it from the rule text:

* T-ICAHT (criteria/t_icaht_2025.yaml, Rejeski 2025 Table 1): early (days 0-30) "PLT count <50 x 10^9/L
  | 1-6 | >=7" (grades 1, 2), "PLT count <20 x 10^9/L | - | - | 1-13 | >=14" (grades 3, 4); the
  footnote: "the cumulative length beneath the respective threshold is calculated, censoring at the
  time of disease progression, subsequent line of therapy, or death". Late (days 31-100) "<20 ... 1-13"
  = 3 on "Two or more laboratory tests". Days between measurements are interpolated (N-ICAHT contract).
* N-ICAHT (criteria/icaht_2023.yaml): early "ANC <= 500/uL for 7-13 days" = 2, "ANC <= 500/uL for >= 14
  days" = 3, "ANC <= 100/uL for >= 7 days" = 3, "ANC <= 100/uL for >= 14 days" = 4.
* Project rule: "Missing is not negative: an absent input never silently reads as false or normal:
  the result is not evaluable, or a range, with the missing input named."
* CAR-HEMATOTOX baseline (car_hematotox_2021.yaml conventions): "the last value on or before the first
  lymphodepletion dose day"; cut-offs in 10^9/L, /uL, g/dL, mg/dL, ng/mL.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from cartlab.analyze import Analysis, AnalysisOptions
from cartlab.explain import explain
from cartlab.grading.t_icaht import derive_t_icaht, derive_t_icaht_daily
from cartlab.io.study_folder import read_study
from cartlab.steps import SUMMARY_SOURCES

FIX = Path(__file__).parent / "fixtures" / "hemato_s28"


def _row(frame: pl.DataFrame, sid: str) -> dict:
    return frame.filter(pl.col("subject_id") == sid).row(0, named=True)


@pytest.fixture(scope="module")
def censored():
    return read_study(FIX / "censored")


def test_t_icaht_early_window_ends_at_relapse_without_later_counts(censored):
    """P1: PLT 15 on days 0 and 12, relapse on day 14, PLT 15 on day 20. The early window is days 0-14
    (censored at progression, the censoring day counted). Days 0-12 are < 20 (measured or interpolated
    between two in-window counts): 13 days -> grade 3 ("1-13"). Days 13-14 have no count up to the
    window's end (the day-20 count is after the censoring and is not used): unknown, 2 days; had they
    been < 20, 15 days -> grade 4 (">=14"). P3 is the same series without a relapse: days 0-20 < 20
    (21 days, interpolated between days 12 and 20 as in an uncensored window) -> grade 4; days 21-30
    have no count after the last one: 10 unknown days."""
    t = derive_t_icaht(censored)
    p1 = _row(t, "P1")
    assert p1["early_window_end"] == 14
    assert p1["plt_lt_20_days"] == 13
    assert p1["t_icaht_early_grade"] == 3
    # session 48 (review 48 F1): days 1-11 lie in an 11-day gap between days 0 and 12 (more than
    # range_interpolation_gap_days, 7): counted < 20 for the grade, unknown for the range -> 2 + 11 days
    assert p1["early_unknown_days"] == 13
    assert p1["t_icaht_early_grade_max"] == 4
    assert "day 20" not in p1["early_reason"].split("Could be")[0]
    p3 = _row(t, "P3")
    # session 48: P3's days 1-11 (the 11-day gap between days 0 and 12) too; days 13-19 (7 days) are not more than 7
    assert (p3["plt_lt_20_days"], p3["t_icaht_early_grade"], p3["early_unknown_days"]) == (21, 4, 10 + 11)


def test_t_icaht_late_window_ends_at_relapse_without_later_counts(censored):
    """P2: PLT 150 on days 0 and 30, 15 on days 38 and 50, relapse on day 55, 15 on day 60. The late
    window is days 31-55. Days 31-37 interpolate from 150 (day 30) to 15 (day 38): day 37 is
    150 - 135 * 7/8 = 31.9, not < 20. Days 38-50 are < 20: 13 days, on 2 measurements -> late grade 3
    ("1-13"). Days 51-55 lie before the relapse but their only later count (day 60) is after it: not
    counted (before the fix they were interpolated toward day 60: 18 days -> 4)."""
    p2 = _row(derive_t_icaht(censored), "P2")
    assert p2["late_window_end"] == 55
    assert p2["late_plt_lt_20_days"] == 13
    assert p2["late_plt_lt_20_end"] == 50
    assert p2["t_icaht_late_grade"] == 3


def test_t_icaht_daily_marks_censored_days_without_count(censored):
    """The daily series says why: P1 days 13-14 (early window, censored at day 14) and P2 days 51-55
    (late window, censored at day 55) have no platelet value; day 12 and day 50 stay measured."""
    d = derive_t_icaht_daily(censored)

    def day(sid, n):
        return d.filter((pl.col("subject_id") == sid) & (pl.col("day") == n)).row(0, named=True)

    for sid, days in (("P1", (13, 14)), ("P2", (51, 52, 53, 54, 55))):
        for n in days:
            r = day(sid, n)
            assert r["plt"] is None and r["source"] == "missing" and r["plt_lt_20"] is None, (sid, n)
            assert "relapse" in r["reason"] and r["evidence"] == []
    assert day("P1", 12)["source"] == "measured" and day("P2", 50)["source"] == "measured"


def test_subject_summary_carries_the_icaht_early_range():
    """S1: ANC 0.3 on days 0 and 10, 1.5 on days 11 and 20, nothing on days 21-30. ANC <= 0.5 on days
    0-10 = 11 days -> grade 2 ("7-13"). Days 21-30 (10 days) have no ANC; had they been below every
    level: <= 500 on 21 days (>= 14 -> 3), <= 100 on 10 days (>= 7 -> 3, not >= 14) -> max 3.
    S2: ANC 1.5 on days 0 and 30 (every day of the window known, none <= 0.5) -> 0, max 0."""
    a = Analysis(read_study(FIX / "summary"), AnalysisOptions())
    s = a.subject_summary()
    assert "icaht_early_grade_max" in s.columns
    s1, s2 = _row(s, "S1"), _row(s, "S2")
    # session 48 (review 48 F1, range_interpolation_gap_days 7): S1's days 1-9 (a 9-day gap) are unknown for
    # the range too: <= 0.1 on 9 + 10 = 19 days (>= 14) -> max 4; S2's days 1-29 likewise -> 0 up to 4
    assert (s1["icaht_early_grade"], s1["icaht_early_grade_max"]) == (2, 4)
    assert (s2["icaht_early_grade"], s2["icaht_early_grade_max"]) == (0, 4)
    cols = {c for name, _cite, cs in SUMMARY_SOURCES if name == "icaht_summary" for c in cs}
    assert "icaht_early_grade_max" in cols  # analysis.json's summary_columns name it with its citation


@pytest.fixture(scope="module")
def hemato():
    return Analysis(read_study(FIX / "hematotox"), AnalysisOptions())


def test_explain_easix_cites_the_criteria_table(hemato):
    """easix.yaml: 'citation: "Pennisi M et al., Blood Adv 2021;5(17):3397-3406 ..."'; its comment says
    Luft 2017 (allo-HCT) is "not re-verified here", so explain must not cite it as the source."""
    e = explain(hemato, "easix", "X1")
    assert "Pennisi M et al., Blood Adv 2021" in e.criteria
    assert "Luft" not in e.criteria


def test_explain_hematotox_items_in_cut_off_units_with_rows(hemato):
    """X1, fludarabine on day -5, values on day -6 (observations.csv rows 1-4): PLT 176 10^9/L; ANC
    1500 /uL (the cut-off unit /uL); Hb 120 g/L = 12 g/dL (cut-off 9.0 g/dL); ferritin 649 ug/L =
    649 ng/mL (1 ug/L = 1 ng/mL); no CRP on or before day -5 -> score 0-1. Each item row names its
    source row; the header lists the missing item as text, not a Python list."""
    e = explain(hemato, "hematotox", "X1")
    rows = {r["rule"]: r for r in e.days.iter_rows(named=True) if r["rule"].startswith("car_hematotox.item.")}
    assert "176 10^9/L" in rows["car_hematotox.item.plat"]["reason"]
    assert "1500 /uL" in rows["car_hematotox.item.neut"]["reason"]
    assert "12 g/dL" in rows["car_hematotox.item.hgb"]["reason"]
    assert "649 ng/mL" in rows["car_hematotox.item.ferritin"]["reason"]
    assert rows["car_hematotox.item.plat"]["evidence"] == ["observations.csv:1"]
    assert rows["car_hematotox.item.neut"]["evidence"] == ["observations.csv:2"]
    assert rows["car_hematotox.item.hgb"]["evidence"] == ["observations.csv:3"]
    assert rows["car_hematotox.item.ferritin"]["evidence"] == ["observations.csv:4"]
    crp = rows["car_hematotox.item.crp"]
    assert "not measured on or before the baseline day" in crp["reason"] and crp["grade"] is None
    assert "an item missing: CRP)" in e.headline and "['CRP']" not in e.headline
