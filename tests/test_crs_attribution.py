"""CRS is CRS: a fever attributed to another cause is not a CRS day (ASTCT 2019 Table 1 footnote:
fever "not attributable to any other cause").

Expected values are worked out by hand from the conventions in criteria/astct_crs_2019.yaml
(``other_cause_*``): an ``infection`` event covers its day and the 3 following days; an antipyretic
given for ``infection`` covers its days; an intervention given explicitly for CRS that day keeps the
day a CRS day; with no attribution data the fever counts (missing is not negative).
"""

from __future__ import annotations

import polars as pl
import pytest

from cartlab.grading.crs import CrsOptions, derive_crs_daily, derive_crs_summary
from cartlab.grading.crs_legacy import CrsLegacyOptions, derive_crs_cross_scale, derive_crs_daily_inputs
from cartlab.grading.crs_features import FeverAttribution

from grading_helpers import drug, study, vaso


def fevers(days, t=38.8, subject="A"):
    return [(subject, d, "TEMP", t) for d in days]


def infection(day, subject="A", attribution="other", event="infection"):
    return {"subject_id": subject, "day": float(day), "event": event, "detail": "bacteraemia",
            "attribution": attribution}


def grades(s, options=None):
    return dict(derive_crs_daily(s, options).select("day", "grade").iter_rows())


def test_infection_event_fever_is_not_crs():
    # CRS fever days 2-4; afebrile 5-29; a fever on days 30-31 with an infection event on day 30
    obs = fevers(range(2, 5)) + [("A", d, "TEMP", 37.0) for d in range(5, 30)] + fevers([30, 31])
    s = study(obs=obs, events=[infection(30)])
    g = grades(s)
    assert (g[2], g[4], g[30], g[31]) == (1, 1, 0, 0)
    d30 = derive_crs_daily(s).filter(pl.col("day") == 30).row(0, named=True)
    assert d30["rule"] == "crs.other_cause" and "events.csv:1" in d30["evidence"]
    assert "infection" in d30["reason"] and d30["fever"] is True
    out = derive_crs_summary(s).row(0, named=True)
    assert (out["crs_grade_astct"], out["crs_onset_day"], out["crs_resolution_day"]) == (1, 2.0, 4.0)
    # the attribution can be switched off (the v1 reading: every fever counts)
    assert grades(s, CrsOptions(other_cause_attribution=False))[30] == 1


def test_infection_event_window():
    s = study(obs=fevers([29, 30, 33, 34]), events=[infection(30)])
    g = grades(s)
    # window [day, day + 3]: day 29 (before) and 34 (after) stay CRS, 30 and 33 do not
    assert (g[29], g[30], g[33], g[34]) == (1, 0, 0, 1)
    g = grades(s, CrsOptions(other_cause_event_window_days=(1, 4)))
    assert (g[29], g[30], g[33], g[34]) == (0, 0, 0, 0)


def test_antipyretic_for_infection_attributes_the_fever():
    s = study(obs=fevers([10, 11]), iv=[drug("antipyretic", 10, "paracetamol", indication="infection")])
    assert grades(s) == {10: 0, 11: 1}  # the antipyretic covers day 10 only


def test_premedication_indication_other_is_not_an_attribution_by_default():
    s = study(obs=fevers([0]), iv=[drug("antipyretic", 0, "acetaminophen", indication="other")])
    assert grades(s)[0] == 1
    assert grades(s, CrsOptions(other_cause_indications=("infection", "other")))[0] == 0


def test_event_attributed_to_crs_does_not_attribute_elsewhere():
    s = study(obs=fevers([5]), events=[infection(5, attribution="CRS")])
    assert grades(s)[5] == 1


def test_explicit_crs_treatment_keeps_the_day_crs():
    # infection documented on day 5, but tocilizumab is given for CRS that day
    s = study(obs=fevers([5, 6]), iv=[drug("tocilizumab", 5, "tocilizumab")], events=[infection(5)])
    g = grades(s)
    assert g[5] == 1 and g[6] == 0  # day 6: infection window, no CRS treatment that day
    assert grades(s, CrsOptions(crs_indication_overrides_other_cause=False))[5] == 0


def test_scope_day_versus_fever_after_the_waiver():
    # tocilizumab for CRS on day 3 waives the fever requirement; day 20: infection, SBP 80.
    # Without fever there is no fever to attribute (session 29: the rule attributes a fever), so the
    # waived hypotension is grade 2 in both scopes; with a fever (38.8 C) the default scope removes the
    # day, while scope 'fever' discounts only the fever (the waived hypotension stays grade 2)
    obs = fevers([3]) + [("A", 20, "TEMP", 37.2), ("A", 20, "SYSBP", 80.0)]
    s = study(obs=obs, iv=[drug("tocilizumab", 3, "tocilizumab")], events=[infection(20)])
    assert grades(s)[20] == 2
    assert grades(s, CrsOptions(other_cause_scope="fever"))[20] == 2
    s = study(obs=fevers([3]) + [("A", 20, "TEMP", 38.8), ("A", 20, "SYSBP", 80.0)],
              iv=[drug("tocilizumab", 3, "tocilizumab")], events=[infection(20)])
    assert grades(s)[20] == 0                                      # default: the fever day is not CRS
    assert grades(s, CrsOptions(other_cause_scope="fever"))[20] == 2  # only the fever is discounted


def test_no_attribution_data_means_the_fever_counts():
    s = study(obs=fevers([40]), iv=[vaso("norepinephrine", 40, indication=None)])
    assert grades(s)[40] == 3


def test_late_fever_after_hsct_attributed_to_infection():
    """SYN-0043-like course: CRS days 2-7 (tocilizumab day 3), allo-HSCT day 32, fever days 49-50
    with an infection event (attribution other) and an antipyretic given for infection."""
    obs = fevers([2, 3]) + [("A", d, "TEMP", 37.0) for d in range(4, 49)] + fevers([49, 50], 40.1)
    obs += [("A", d, "SYSBP", 85.0) for d in range(4, 8)]
    s = study(obs=obs,
              iv=[drug("tocilizumab", 3, "tocilizumab"), vaso("norepinephrine", 4, indication="CRS"),
                  {**drug("antipyretic", 49, "paracetamol", indication="infection"), "end_day": 50.0}],
              events=[{"subject_id": "A", "day": 32.0, "event": "allo_hsct", "attribution": None},
                      infection(49)])
    out = derive_crs_summary(s).row(0, named=True)
    assert (out["crs_grade_astct"], out["crs_onset_day"], out["crs_resolution_day"]) == (3, 2.0, 7.0)
    assert out["crs_n_episodes"] == 1


def test_assessment_end_event_option():
    # without an infection record the late fever counts, unless the course ends at a new therapy
    obs = fevers([2, 3]) + fevers([44])
    s = study(obs=obs, events=[{"subject_id": "A", "day": 33.0, "event": "new_therapy", "attribution": None}])
    assert derive_crs_summary(s)["crs_resolution_day"].to_list() == [44.0]
    opt = CrsOptions(assessment_end_events=("new_therapy", "allo_hsct"))
    assert derive_crs_summary(s, opt)["crs_resolution_day"].to_list() == [3.0]
    assert 44 not in grades(s, opt)


def test_legacy_scales_share_the_attribution():
    from test_crs_legacy import make_study

    s = make_study([], days=range(40), fever_days=[*range(3, 6), 30, 31], events=[infection(30, subject="S1")])
    r = derive_crs_daily_inputs(s).filter(pl.col("day") == 30).row(0, named=True)
    assert r["fever"] is False and r["crs_gate"] is False and r["fever_other_cause"] is True
    x = derive_crs_cross_scale(s, pl.DataFrame({"subject_id": ["S1"], "crs_grade_astct": [1]})).row(0, named=True)
    assert x["crs_lee2014_day"] == 3  # the maximum comes from the CRS days, not the infection
    off = CrsLegacyOptions(fever_attribution=FeverAttribution.from_table(enabled=False))
    assert derive_crs_daily_inputs(s, off).filter(pl.col("day") == 30)["fever"].to_list() == [True]


@pytest.mark.parametrize("window", [(0, -1), (-1, 2)])
def test_bad_window_is_rejected(window):
    with pytest.raises(ValueError):
        derive_crs_daily(study(obs=fevers([1])), CrsOptions(other_cause_event_window_days=window))
