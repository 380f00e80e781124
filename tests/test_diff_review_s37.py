"""Session 37 whole-diff review fixes (engines): worst CTCAE grades keep open ranges of grade-0 rows.

Expected values by hand from the rows built here (CTCAE v5 grades as ADLB carries them).
"""

from __future__ import annotations

import polars as pl

from cartlab.grading.lab_worst import worst_labs


def test_a_grade_0_row_whose_range_reaches_4_is_kept_as_0_to_4():
    # ALT ">30" U/L with no ULN known: grade 0 up to 4 (ATOXGRH_MAX 4); it must not vanish from the
    # worst grades because its lower grade is 0 ("missing is not negative")
    adlb = pl.DataFrame({
        "term": ["Alanine aminotransferase increased"] * 2 + ["Anemia"], "direction": ["H", "H", "L"],
        "ATOXGR": [0, 0, -2], "ATOXGRL_MAX": [None, None, 2], "ATOXGRH_MAX": [0, 4, None], "day": [2.0, 4.0, 5.0],
        "post_baseline": [True, True, True],
        "grade_reason": ["grade 0", "censored result >30 leaves grade 0-4 open", "grade 2"]})
    w = {r["term"]: r for r in worst_labs(adlb).iter_rows(named=True)}
    alt = w["Alanine aminotransferase increased"]
    assert (alt["grade"], alt["grade_max"], alt["day"]) == (0, 4, 4.0) and alt["why"] == "censored result >30"
    assert (w["Anemia"]["grade"], w["Anemia"]["grade_max"]) == (2, 2)
    # a settled grade 0 (no range) is not a toxicity: not listed
    settled = adlb.with_columns(pl.lit(0).alias("ATOXGRH_MAX"))
    assert "Alanine aminotransferase increased" not in worst_labs(settled)["term"].to_list()
