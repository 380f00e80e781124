"""Exposure-response: a CRS grade range (ASTCT grade .. grade_max, an input missing) that straddles the
threshold leaves the outcome unknown (excluded, named), never "no" (missing is not negative)."""

from __future__ import annotations

import polars as pl
import pytest

from cartlab.errors import CartlabWarning
from cartlab.kinetics.exposure import derive_exposure_response

SUMMARY = pl.DataFrame({
    "subject_id": ["A", "B", "C", "D", "E"],
    "car_cmax": [1e5, 2e5, 3e4, 5e4, 8e4],
    "car_auc_0_28": [1e6, 2e6, 3e5, 5e5, 8e5],
    "best_response": ["CR", "CR", "NR", "CR", "CR"],
    "crs_grade_astct": [3, 2, 1, 0, None],
    "crs_grade_astct_max": [3, 3, 1, 1, None],
})


def _row(frame, exposure, outcome):
    return frame.filter((pl.col("exposure") == exposure) & (pl.col("outcome") == outcome)).row(0, named=True)


def test_grade_ge3_is_unknown_for_a_2_to_3_range():
    """By hand: A 3 -> yes; B 2-3 -> unknown; C 1 -> no; D 0-1 -> no (cannot reach 3); E none -> unknown.
    n = 3 (A, C, D), 1 event; medians: event 1e5, no event median(3e4, 5e4) = 4e4."""
    with pytest.warns(CartlabWarning):
        out = derive_exposure_response(SUMMARY, outcomes=("crs_grade_ge3",))
    r = _row(out, "car_cmax", "crs_grade_ge3")
    assert (r["n"], r["n_event"], r["n_excluded"]) == (3, 1, 2)
    assert r["median_event"] == 1e5 and r["median_no_event"] == 4e4
    assert "CRS grade 2-3 (an input missing): grade >= 3 undetermined: B" in r["excluded"]
    assert "crs_grade_astct empty (no CRS grade): E" in r["excluded"]


def test_any_crs_is_unknown_for_a_0_to_1_range():
    """By hand: A, B, C have grade >= 1 whatever is missing; D 0-1 unknown; E unknown -> n 3, 3 events."""
    with pytest.warns(CartlabWarning):
        out = derive_exposure_response(SUMMARY, outcomes=("crs_any",))
    r = _row(out, "car_auc_0_28", "crs_any")
    assert (r["n"], r["n_event"], r["n_excluded"]) == (3, 3, 2)
    assert "grade >= 1 undetermined: D" in r["excluded"]


def test_without_a_maximum_column_the_grade_is_taken_as_settled():
    """A frame with only crs_grade_astct (earlier callers): B's 2 reads as settled, so 4 known."""
    with pytest.warns(CartlabWarning):
        out = derive_exposure_response(SUMMARY.drop("crs_grade_astct_max"), outcomes=("crs_grade_ge3",))
    assert _row(out, "car_cmax", "crs_grade_ge3")["n"] == 4
