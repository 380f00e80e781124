"""Older CRS scales: a death attributed to another cause adds no day of its own (report audit s27,
finding 7). Spec study-format "Attribution": events whose attribution is empty or CRS count; any other
value does not. A day with nothing else recorded is not assessed (as a day without any row)."""

from __future__ import annotations

import csv

import pytest

import test_crs_legacy_audit_s26 as s26
from cartlab.io import read_study


def _with_death(tmp_path, attribution):
    s26.folder(tmp_path, s26.subject("P1"))
    with open(tmp_path / "events.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["subject_id", "day", "event", "attribution"])
        w.writerow(["P1", 180, "death", attribution])
    return read_study(tmp_path)


@pytest.mark.parametrize("scale", ["lee2014", "cartox", "mskcc"])
def test_a_death_from_another_cause_does_not_open_the_grade(tmp_path, scale):
    """Fever 38.6 on days 1-2, normal SBP 115 and labs, death on day 180 from progressive disease:
    grade 1 (fever alone) on every scale, by hand; the day-180 death is not CRS and has no vitals."""
    table = s26.graded(_with_death(tmp_path, "other"))[0]["subjects"]
    row = s26.by_id(table)["P1"]
    assert s26.grades(row, scale) == (1, 1)
    assert "180" not in (row[f"crs_{scale}_reason"] or "")


def test_a_death_without_attribution_still_leaves_the_grade_open(tmp_path):
    """Empty attribution: the death could be CRS, so day 180 cannot be read as no CRS (Lee 2014:
    death is grade 5; at least the maximum is above the fever grade)."""
    table = s26.graded(_with_death(tmp_path, ""))[0]["subjects"]
    lo, hi = s26.grades(s26.by_id(table)["P1"], "lee2014")
    assert lo == 1 and hi is not None and hi > 1
