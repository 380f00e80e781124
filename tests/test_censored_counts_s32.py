"""Session 32: censored blood counts ("<0.1" ANC, "<5" platelets) in ICAHT and T-ICAHT.

Before, a count given as a censored result (observations.csv ``value_text`` "<0.1") was dropped by
the haematotoxicity engines, and ICAHT interpolated across the dropped days from the counts around
them: 20 days of ANC "<0.1" between two ANCs of 1.6 read as 20 days of ANC 1.6, early ICAHT grade 0
(definite). Now a censored result is a measured day whose level flags its bound settles ("<0.1" is
at or below 0.1 and 0.5), unknown where it does not ("<0.5" against 0.1), and no interpolation runs
from or to it.

Expected grades by hand from the ICAHT table (Rejeski et al., Blood 2023, early ICAHT: grade 4
"ANC <= 100/uL for >= 14 days"; grade 3 "ANC <= 500/uL for >= 14 days"; grade 2 "ANC <= 500/uL for
7-13 days"; grade 1 "1-6 days") and the T-ICAHT table (Rejeski 2025 as in t_icaht_2025.yaml: early
grade 3 "PLT < 20 x10^9/L for 1-13 days").
"""

from __future__ import annotations

import csv

import pytest

from cartlab.analyze import Analysis
from cartlab.io import read_study

DAYS = range(-7, 31)


def _write(root, rows):
    with open(root / "subjects.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["subject_id", "sex", "age_years", "weight_kg", "height_cm", "disease", "target", "last_followup_day"])
        w.writerows([sid, "F", 55, 60, 165, "AML", "CD7", 60] for sid in sorted({r[0] for r in rows}))
    with open(root / "observations.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["subject_id", "day", "param", "value", "value_text", "unit"])
        w.writerows(rows)
    with open(root / "doses.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["subject_id", "day", "agent", "dose", "unit"])
        w.writerows([sid, 0, "CAR-T", 1e6, "cells/kg"] for sid in sorted({r[0] for r in rows}))
    # no transfusion given (an empty file with its header): an ABSENT interventions.csv leaves the
    # platelet counts open to transfusions since session 37 (option t_icaht.absent_interventions)
    (root / "interventions.csv").write_text("subject_id,start_day,end_day,category\n")
    return read_study(root)


def anc(sid, low_days, text, value=1.6):
    return [[sid, d, "NEUT", "", text, "10^9/L"] if d in low_days else [sid, d, "NEUT", value, "", "10^9/L"]
            for d in DAYS]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    rows = (anc("LT01_20D", range(1, 21), "<0.1")       # <0.1 on days 1-20: <= 100/uL for 20 days -> 4
            + anc("LT05_10D", range(1, 11), "<0.5")     # <0.5 on days 1-10: <= 500/uL for 10 days -> 2; <=100 open
            + anc("LT05_20D", range(1, 21), "<0.5")     # 20 days <= 500 -> 3 for sure; <= 100 open -> up to 4
            + [["PLT", d, "PLAT", "", "<5", "10^9/L"] if 5 <= d <= 10 else ["PLT", d, "PLAT", 150, "", "10^9/L"]
               for d in DAYS]
            + [["SPARSE", d, "NEUT", v, t, "10^9/L"] for d, v, t in ((-7, 2.0, ""), (0, 1.6, ""), (10, "", "<0.1"),
                                                                  (20, 1.6, ""))])
    return _write(tmp_path_factory.mktemp("censored_counts"), rows)


@pytest.fixture(scope="module")
def icaht(study):
    a = Analysis(study)
    return ({r["subject_id"]: r for r in a.table("icaht").iter_rows(named=True)},
            {r["subject_id"]: r for r in a.table("t_icaht").iter_rows(named=True)}, a.table("icaht_daily"))


def test_twenty_days_below_0_1_is_grade_4(icaht):
    r = icaht[0]["LT01_20D"]
    assert (r["icaht_early_grade"], r["icaht_early_grade_max"]) == (4, 4)
    assert (r["anc_le_100_days"], r["anc_le_500_days"]) == (20, 20)
    assert r["early_unknown_days"] == 0


def test_a_bound_above_a_level_leaves_that_level_open(icaht):
    # "<0.5" is <= 500/uL for sure; <= 100/uL is unknown: 10 days -> grade 2, up to 3 (<=100 for >= 7 days)
    r = icaht[0]["LT05_10D"]
    assert (r["icaht_early_grade"], r["icaht_early_grade_max"]) == (2, 3)
    r = icaht[0]["LT05_20D"]  # 20 days: 3 for sure, up to 4 (<= 100 for >= 14 days)
    assert (r["icaht_early_grade"], r["icaht_early_grade_max"]) == (3, 4)


def test_no_interpolation_runs_from_a_censored_result(icaht):
    daily = icaht[2].filter(icaht[2]["subject_id"] == "SPARSE")
    by_day = {r["day"]: r for r in daily.iter_rows(named=True)}
    assert by_day[10]["anc_censored"] == "<0.1" and by_day[10]["anc"] is None
    assert by_day[10]["anc_le_100"] is True
    # days 1-9 and 11-19 lie between a number and a censored result: no number is made up for them
    assert all(by_day[d]["anc"] is None and by_day[d]["source"] == "missing" for d in (*range(1, 10), *range(11, 20)))
    r = icaht[0]["SPARSE"]
    # one day <= 100 known (grade 1); 18 unknown days could all be <= 100: 19 days -> up to 4
    assert (r["icaht_early_grade"], r["icaht_early_grade_max"]) == (1, 4)


def test_censored_platelets_count_below_the_levels_they_settle(icaht):
    r = icaht[1]["PLT"]
    # "<5" on days 5-10: PLT < 20 on 6 days -> early grade 3 ("PLT < 20 for 1-13 days")
    assert (r["t_icaht_early_grade"], r["t_icaht_early_grade_max"]) == (3, 3)
