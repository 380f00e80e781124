"""EASIX at a chosen day and per day reads a censored input as a bound (session 33).

Expected values by hand from the formula EASIX = LDH (U/L) x creatinine (mg/dL) / platelets
(10^9/L) (Pennisi et al., Blood Adv 2021; criteria/easix.yaml); creatinine 88.4 umol/L = 1 mg/dL.
"""

from __future__ import annotations

import pytest
from tests.test_review_hemato_s32 import study

from cartlab.grading.hematotox import derive_easix

ROWS = [("4", "LDH", "300", "", "U/L"), ("4", "CREAT", "88.4", "", "umol/L"), ("4", "PLAT", "100", "", "10^9/L"),
        ("5", "LDH", "300", "", "U/L"), ("5", "CREAT", "88.4", "", "umol/L"), ("5", "PLAT", "", "<10", "10^9/L")]


def test_chosen_day_takes_the_censored_result_of_that_day(tmp_path):
    """Day 5: PLAT "<10" is that day's result -> 300 x 1 / (<10) > 30, a bound; never PLAT 100 of
    day 4 (which would give 3.0 and was taken before session 33)."""
    r = derive_easix(study(tmp_path, "a", ROWS), day=5).row(0, named=True)
    assert r["easix"] is None
    assert "easix > 30" in r["reason"] and "PLAT" not in r["missing"]
    assert r["plat_1e9_l_day"] == 5.0


def test_chosen_day_with_a_number_is_unchanged(tmp_path):
    """Day 4: 300 x 1 / 100 = 3.0."""
    r = derive_easix(study(tmp_path, "b", ROWS), day=4).row(0, named=True)
    assert r["easix"] == pytest.approx(3.0)


def test_each_day_lists_the_censored_day_as_a_bound(tmp_path):
    """"each": day 4 = 3.0; day 5 = a bound (> 30), not "missing PLAT" (CRP, for m-EASIX, is missing)."""
    f = derive_easix(study(tmp_path, "c", ROWS), day="each").sort("day")
    assert f["day"].to_list() == [4.0, 5.0]
    d4, d5 = f.row(0, named=True), f.row(1, named=True)
    assert d4["easix"] == pytest.approx(3.0)
    assert d5["easix"] is None and "easix > 30" in d5["reason"] and d5["missing"] == ["CRP"]  # m-EASIX needs CRP


def test_censored_only_day_is_a_day_of_each(tmp_path):
    """A day whose only platelet result is "<10" (LDH, creatinine measured) is a row of "each"."""
    rows = [("5", "LDH", "300", "", "U/L"), ("5", "CREAT", "88.4", "", "umol/L"), ("5", "PLAT", "", "<10", "10^9/L")]
    f = derive_easix(study(tmp_path, "d", rows), day="each")
    assert f.height == 1 and "easix > 30" in f["reason"][0]
