"""`explain --what ctcae` when lab values cannot be graded: the headline says so (it said "every
graded lab value is grade 0 (0 values)"), and the ungradable rows are listed with why."""

from __future__ import annotations

import polars as pl

from cartlab.explain import explain
from cartlab.model import Study, conform


def _study(uln):
    subjects = conform(pl.DataFrame({"subject_id": ["S1"], "disease": ["AML"]}), "subjects")
    obs = conform(pl.DataFrame({"subject_id": ["S1", "S1"], "day": [1.0, 2.0], "param": ["ALT", "ALT"],
                                "value": [100.0, 30.0], "unit": ["U/L", "U/L"], "uln": [uln, uln]}),
                  "observations")
    return Study(study_id="t", subjects=subjects, observations=obs)


def test_no_gradable_value_is_not_evaluable_not_grade_0():
    ex = explain(_study(None), "ctcae")
    assert "not evaluable" in ex.headline and "none of the 2 lab value(s)" in ex.headline
    assert "grade 0" not in ex.headline
    shown = ex.days.filter(pl.col("shown"))
    assert shown.height == 2 and all("ANRHI missing" in r for r in shown["reason"].to_list())


def test_graded_and_grade_0_headline_counts_only_graded_values():
    # ULN 40: 100 U/L = 2.5 x ULN -> grade 1 (> ULN - 3.0 x ULN); 30 U/L -> 0
    ex = explain(_study(40.0), "ctcae")
    assert ex.headline.startswith("CTCAE v5.0 worst lab grades: Alanine aminotransferase increased 1 (day 1)")
    assert "not gradable" not in ex.headline


def test_crs_scales_headline_shows_the_astct_range(tmp_path):
    """A nasal cannula without a flow on a fever day: ASTCT 2-3 (<= 6 L/min low flow 2, > 6 high flow 3);
    the headline shows the range, as it does for the other scales."""
    subjects = conform(pl.DataFrame({"subject_id": ["S1"], "disease": ["AML"], "weight_kg": [70.0]}), "subjects")
    doses = conform(pl.DataFrame({"subject_id": ["S1"], "day": [0.0], "agent": ["CD7 CAR-T"], "dose": [1e6],
                                  "unit": ["cells/kg"]}), "doses")
    obs = conform(pl.DataFrame({"subject_id": ["S1"], "day": [1.0], "param": ["TEMP"], "value": [39.0],
                                "unit": ["C"]}), "observations")
    itv = conform(pl.DataFrame({"subject_id": ["S1"], "start_day": [1.0], "end_day": [1.0], "category": ["oxygen"],
                                "o2_device": ["nasal_cannula"]}), "interventions")
    ex = explain(Study(study_id="t", subjects=subjects, doses=doses, observations=obs, interventions=itv),
                 "crs-scales")
    assert ex.headline.startswith("CRS by scale: ASTCT 2-3;")
