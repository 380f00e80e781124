"""The other-cause rule attributes a *fever*: a day without fever is not removed (session 29
differential audit, /work/notes/audit_diffgrade/cases/crs_waiver_o2_infection_other).

Hand derivation (spec "Derivation conventions", CRS; docs/derivation-conventions.md "a day whose
fever is attributed to another cause is not a CRS day"): tocilizumab for CRS on day 2 waives the
fever from day 2 ("fever is no longer required for grades 2-4"); days 4-5 have a face mask (grade 3
hypoxia) and SBP 85 without vasopressor (grade 2), no fever (37.0 C); an infection event attributed
`other` on day 4 covers days 4-7, but there is no fever on those days to attribute, so days 4-5 are
grade 3. Day 2: 39.0 C, grade 1. Summary: grade 3, onset 2, resolution 5.
"""

from __future__ import annotations

import pytest

from cartlab.grading.crs import CrsOptions, derive_crs_daily, derive_crs_summary
from grading_helpers import drug, oxygen, study


def _case(day4_fever: bool = False):
    """The audit's case; ``day4_fever``: also 39.0 C on day 4 (in the infection window)."""
    obs = [("A", d + 0.3, "TEMP", 37.0) for d in range(0, 10)] + [("A", 2.5, "TEMP", 39.0),
                                                                   ("A", 4.5, "SYSBP", 85.0), ("A", 5.5, "SYSBP", 85.0)]
    obs += [("A", 4.6, "TEMP", 39.0)] if day4_fever else []
    iv = [drug("tocilizumab", 2), {**oxygen("face_mask", 4, flow=8.0), "end_day": 5.0}]
    ev = [{"subject_id": "A", "day": 4.0, "event": "infection", "attribution": "other"}]
    return study(obs=obs, iv=iv, events=ev)


def test_a_day_without_fever_keeps_its_grade_in_an_infection_window():
    d = derive_crs_daily(_case())
    g = dict(d.select("day", "grade").iter_rows())
    assert (g[2], g[3], g[4], g[5], g[6]) == (1, 0, 3, 3, 0)
    day4 = d.filter(d["day"] == 4).row(0, named=True)
    assert day4["rule"] == "crs.hypoxia.high_flow"
    assert "attributed to another cause" not in day4["reason"]
    s = derive_crs_summary(_case()).row(0, named=True)
    assert (s["crs_grade_astct"], s["crs_onset_day"], s["crs_resolution_day"]) == (3, 2, 5)


def test_a_fever_in_the_window_still_removes_the_day():
    """Day 4 with 39 C as well: its fever is attributed to the infection, so day 4 is not a CRS day
    (scope 'day', the documented default); day 5 (no fever) stays grade 3."""
    s2 = _case(day4_fever=True)
    g = dict(derive_crs_daily(s2).select("day", "grade").iter_rows())
    assert (g[4], g[5]) == (0, 3)
    # scope 'fever' discounts only the fever: day 4 keeps its grade 3 (waiver)
    g = dict(derive_crs_daily(s2, CrsOptions(other_cause_scope="fever")).select("day", "grade").iter_rows())
    assert (g[4], g[5]) == (3, 3)


@pytest.mark.parametrize("temp", [None, 37.0])
def test_missing_temperature_on_an_attributed_day_opens_no_range(temp):
    """Day 6 (in the infection window, no waiver needed): had there been a fever it would be
    attributed, so a missing temperature does not make the day 'up to grade 1'."""
    obs = [("A", 6.2, "SYSBP", 120.0)] + ([] if temp is None else [("A", 6.3, "TEMP", temp)])
    s = study(obs=obs, events=[{"subject_id": "A", "day": 5.0, "event": "infection", "attribution": "other"}])
    d = derive_crs_daily(s).filter(derive_crs_daily(s)["day"] == 6).row(0, named=True)
    assert (d["grade"], d["grade_max"]) == (0, 0)


def test_older_scales_share_the_rule():
    """The older scales' CRS gate (fever, or the waiver) follows the same reading: day 4 of the case
    (no fever, waiver since day 2, infection window) is open; with a 39 C fever that day it is not."""
    from cartlab.grading.crs_legacy import derive_crs_daily_inputs

    x = derive_crs_daily_inputs(_case())
    gate = dict(x.select("day", "crs_gate").iter_rows())
    assert gate[4] is True and gate[5] is True
    gate = dict(derive_crs_daily_inputs(_case(day4_fever=True)).select("day", "crs_gate").iter_rows())
    assert gate[4] is False and gate[5] is True
