"""A CTCAE row that cannot be graded names the input it lacks (missing is not negative, and the
missing input is named): the rule "AVAL or ANRHI missing" (admiral's MISSING(AVAL, ANRHI)) is said
for the row as "ANRHI missing", "AVAL missing" or "AVAL and ANRHI missing". Expected texts by hand."""

from __future__ import annotations

import polars as pl

from cartlab.grading.ctcae import derive_ctcae, grade_labs
from cartlab.grading.ctcae_criteria import precise_missing
from cartlab.model import conform

ALT = "Alanine aminotransferase increased"


def test_grade_labs_names_the_missing_input():
    f = pl.DataFrame({"term": [ALT] * 4, "direction": ["H"] * 4, "aval": [100.0, None, None, 50.0],
                      "anrhi": [None, 40.0, None, 40.0], "unit": ["U/L"] * 4})
    out = grade_labs(f)
    assert out["grade"].to_list() == [None, None, None, 1]  # 50 > ULN 40, <= 3 x ULN: grade 1
    assert out["grade_reason"].to_list()[:3] == [
        "not gradable: ANRHI missing", "not gradable: AVAL missing", "not gradable: AVAL and ANRHI missing"]
    assert set(out["rule"].to_list()[:3]) == {"ctcae_v5:alt_increased:na.aval_anrhi"}  # the rule id is unchanged


def test_adlb_names_the_missing_limit():
    import pytest

    from cartlab.errors import CartlabWarning

    obs = conform(pl.DataFrame({"subject_id": ["S1", "S1"], "day": [1.0, 2.0], "param": ["ALT", "ALT"],
                                "value": [100.0, 100.0], "unit": ["U/L", "U/L"], "uln": [None, 40.0]}),
                  "observations")
    with pytest.warns(CartlabWarning, match="reference limit their criteria need"):
        adlb = derive_ctcae(obs).sort("day")
    day1, day2 = adlb.row(0, named=True), adlb.row(1, named=True)
    assert day1["ATOXGRH"] is None and "ANRHI missing" in day1["grade_reason"]
    assert "AVAL or ANRHI" not in day1["grade_reason"] and "AVAL missing" not in day1["grade_reason"]
    # 100 U/L with ULN 40 is 2.5 x ULN, no baseline (days > 0): "> ULN - 3.0 x ULN" -> grade 1
    assert day2["ATOXGRH"] == 1 and "missing" not in day2["grade_reason"]


def test_precise_missing_leaves_other_reasons():
    assert precise_missing("grade 3: AVAL > 5 x ANRHI", 4) == "grade 3: AVAL > 5 x ANRHI"
    assert precise_missing("L: not gradable: AVAL or ANRLO missing", 2) == "L: not gradable: ANRLO missing"


def test_unit_mismatch_names_the_parameter_that_would_be_converted():
    f = pl.DataFrame({"term": ["Neutrophil count decreased"], "direction": ["L"], "aval": [1200.0],
                      "anrlo": [1800.0], "unit": ["/mm3"]})
    r = grade_labs(f).row(0, named=True)
    assert r["grade"] is None and "does not match the criteria unit 10^9/L" in r["grade_reason"]
    assert "names the parameter (NEUT)" in r["grade_reason"]


def test_no_missing_limit_no_warning():
    import warnings

    obs = conform(pl.DataFrame({"subject_id": ["S1"], "day": [1.0], "param": ["ALT"], "value": [100.0],
                                "unit": ["U/L"], "uln": [40.0]}), "observations")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert derive_ctcae(obs)["ATOXGRH"].to_list() == [1]
