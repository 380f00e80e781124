"""Every graded day names its rule (docs audit, session 28: grade-0 days of crs_daily and icans_daily
had an empty rule and rule_status although docs/derivation-conventions.md says every derived row
carries them)."""

from __future__ import annotations

import polars as pl

from cartlab.analyze import Analysis
from cartlab.datasets import seed_case


def test_grade_zero_days_name_their_rule_and_status():
    a = Analysis(seed_case())
    crs, icans = a.table("crs_daily"), a.table("icans_daily")
    # session 32: days before the first CAR-T infusion (day 0) are no longer graded (option first_day),
    # so the grade-0 day is day 1: Tmax 36.9 C (< 38, ASTCT 2019 Table 1 fever), SBP min 106 (>= 90),
    # no oxygen -> grade 0 by no criterion: the convention row crs.g0
    assert crs.filter(pl.col("day") < 0).height == 0
    d = crs.filter(pl.col("day") == 1).row(0, named=True)
    assert (d["grade"], d["grade_max"], d["rule"], d["rule_status"]) == (0, 0, "crs.g0", "convention")
    # day 0: ICE 10 and alert -> ICANS grade 0 (ASTCT 2019 Table 4: ICE 7-9 is grade 1)
    d = icans.filter(pl.col("day") == 0).row(0, named=True)
    assert (d["grade"], d["rule"], d["rule_status"]) == (0, "icans.g0", "convention")
    for t in (crs, icans):
        graded = t.filter(pl.col("grade").is_not_null())
        assert graded["rule"].null_count() == 0 and graded["rule_status"].null_count() == 0
    # a grade-0 day's reason is unchanged: it states the data, not the rule text
    assert crs.filter(pl.col("day") == 1)["reason"][0] == "Tmax 36.9 C; SBP min 106 mmHg -> grade 0"
