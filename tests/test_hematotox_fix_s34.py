"""Session 34 fixes of CAR-HEMATOTOX and EASIX (review /work/notes/review34_scores/REPORT.md, B1-B3, C5).

Expected values are worked out by hand from the cut-offs in criteria/car_hematotox_2021.yaml
(PLT < 75 -> 2, 75-175 -> 1, > 175 -> 0 x10^9/L; ANC < 1200/uL -> 1; Hb < 9.0 g/dL -> 1; CRP > 3.0
mg/dL -> 1; ferritin 650-2000 -> 1, > 2000 -> 2 ng/mL; low 0-1, high >= 2) and the EASIX formulas
of easix.yaml (LDH x creatinine / platelets). Each test fails on the code before session 34.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cartlab.grading.hematotox import CarHematotoxOptions, EasixOptions, derive_car_hematotox, derive_easix
from cartlab.io import read_study
from test_hematotox import LD, make_study

# neutral items (0 points each): ANC 3.0 x10^9/L, Hb 120 g/L = 12 g/dL, CRP 5 mg/L = 0.5 mg/dL, ferritin 100
NEUTRAL = [(-6, "NEUT", 3.0), (-6, "HGB", 120.0), (-6, "CRP", 5.0), (-6, "FERRITIN", 100.0)]


def _ht(obs, **opt) -> dict:
    return derive_car_hematotox(make_study(obs, doses=LD), CarHematotoxOptions(**opt)).row(0, named=True)


def test_two_untimed_platelet_values_of_the_baseline_day_give_a_range_not_the_higher():
    # rows 1 and 2: PLT 100 (1 point) and 50 (2 points) on day -6, no time -> score 1-2, which spans
    # low (0-1) and high (>= 2): risk undetermined. Before: the higher (100) was taken -> 1, low.
    r = _ht([(-6, "PLAT", 100.0), (-6, "PLAT", 50.0), *NEUTRAL])
    assert (r["hematotox_score"], r["hematotox_score_min"], r["hematotox_score_max"]) == (None, 1, 2)
    assert r["hematotox_risk"] is None and r["plat_points"] is None and r["plat_value"] is None
    assert r["plat_day"] == -6.0 and r["hematotox_missing"] == []
    assert "platelet count 50 or 100" in r["reason"]
    assert "50 (observations.csv:2) -> 2" in r["reason"] and "100 (observations.csv:1) -> 1" in r["reason"]
    assert "PLAT 2 results of day -6 with no time to order them" in r["reason"]
    assert {"observations.csv:1", "observations.csv:2"} <= set(r["evidence"])
    # a CRP pair is scored the same way: 20 mg/L (2 mg/dL, 0) and 40 mg/L (4 mg/dL, 1); PLT 200 -> 0
    r = _ht([(-6, "PLAT", 200.0), (-6, "NEUT", 3.0), (-6, "HGB", 120.0), (-6, "CRP", 40.0), (-6, "CRP", 20.0),
             (-6, "FERRITIN", 100.0)])
    assert (r["hematotox_score_min"], r["hematotox_score_max"], r["hematotox_risk"]) == (0, 1, "low")


def test_two_untimed_values_with_the_same_points_settle_the_item_and_a_time_orders_them():
    # PLT 200 and 250 on day -6: both > 175 -> 0 points; score 0, low (value empty: two results)
    r = _ht([(-6, "PLAT", 250.0), (-6, "PLAT", 200.0), *NEUTRAL])
    assert (r["hematotox_score"], r["hematotox_risk"], r["plat_points"], r["plat_value"]) == (0, "low", 0, None)
    # with a time (day -5.75, calendar day -6, is later than -6.0) the later one is the baseline: PLT 50 -> 2
    # (guard: unchanged; the test fails on the old code through the first case above's column)
    r = _ht([(-5.75, "PLAT", 50.0), (-6, "PLAT", 100.0), *NEUTRAL])
    assert (r["hematotox_score"], r["hematotox_risk"], r["plat_value"]) == (2, "high", 50.0)


def _easix_study():
    # day -6: LDH 400 (row 1) and 200 (row 2) without a time, creatinine 1 mg/dL = 88.4 umol/L, PLT 100
    return make_study([(-6, "LDH", 400.0), (-6, "LDH", 200.0), (-6, "CREAT", 88.4), (-6, "PLAT", 100.0)], doses=LD)


@pytest.mark.parametrize("how, ldh, easix", [("min", 200.0, 2.0), ("max", 400.0, 4.0), ("mean", 300.0, 3.0)])
def test_easix_pre_ld_applies_daily_value(how, ldh, easix):
    # easix = LDH x 1 / 100. Before: pre_ld took the higher LDH (400 -> 4) whatever daily_value
    for day in ("pre_ld", -6):
        r = derive_easix(_easix_study(), day, EasixOptions(daily_value=how)).row(0, named=True)
        assert r["ldh_u_l"] == pytest.approx(ldh) and r["easix"] == pytest.approx(easix), (day, how)


@pytest.mark.parametrize("day", ["pre_ld", -6, "each"])
def test_easix_last_of_two_untimed_values_is_their_range_on_every_path(day):
    # default daily_value last: no time orders LDH 400 and 200 -> easix between 200x1/100 = 2 and
    # 400x1/100 = 4, the value empty. Before: pre_ld gave 4 (higher), day -6 gave 2 (file's last row)
    r = derive_easix(_easix_study(), day).row(0, named=True)
    assert r["easix"] is None and r["ldh_u_l"] is None and r["missing"] == ["CRP"]
    assert "easix between 2 and 4" in r["reason"]
    assert "LDH 200 to 400 U/L (2 different results of day -6" in r["reason"]
    assert {"observations.csv:1", "observations.csv:2"} <= set(r["evidence"])


def test_risk_group_that_depends_on_an_undefined_cut_off_is_flagged():
    # PLT 150 (1) + ANC exactly 1200/uL: worst -> 1 point, score 2 high; best -> 0, score 1 low
    obs = [(-6, "PLAT", 150.0), (-6, "NEUT", 1.2), (-6, "HGB", 120.0), (-6, "CRP", 5.0), (-6, "FERRITIN", 100.0)]
    r = _ht(obs)
    assert (r["hematotox_score"], r["hematotox_risk"], r["hematotox_risk_depends_on_boundary"]) == (2, "high", True)
    assert "with undefined_boundary best" in r["reason"] and "would be low (score 1)" in r["reason"]
    r = _ht(obs, undefined_boundary="best")
    assert (r["hematotox_score"], r["hematotox_risk"], r["hematotox_risk_depends_on_boundary"]) == (1, "low", True)
    assert "would be high (score 2)" in r["reason"]
    # ANC 1200 with PLT 200 (0): 1 or 0 points, low either way -> not flagged
    r = _ht([(-6, "PLAT", 200.0), *obs[1:]])
    assert (r["hematotox_risk"], r["hematotox_risk_depends_on_boundary"]) == ("low", False)
    assert "would be" not in r["reason"]


def test_a_one_day_lymphodepletion_course_is_named_course_day():
    r = _ht([(-6, "PLAT", 200.0), *NEUTRAL])  # one fludarabine dose on day -5
    assert "first lymphodepletion dose: course day -5," in r["reason"] and "course days" not in r["reason"]
    ld3 = [{"day": float(d), "agent": "fludarabine"} for d in (-5, -4, -3)]
    r = derive_car_hematotox(make_study([(-6, "PLAT", 200.0), *NEUTRAL], doses=ld3)).row(0, named=True)
    assert "course days -5 to -3" in r["reason"]


def test_reader_warning_says_the_last_value_scores_are_a_range(tmp_path: Path):
    f = tmp_path / "s"
    f.mkdir()
    (f / "subjects.csv").write_text("subject_id\nA\n")
    (f / "observations.csv").write_text("subject_id,day,param,value,unit\nA,-6,PLAT,100,10^9/L\nA,-6,PLAT,50,10^9/L\n")
    [w] = [w for w in read_study(f).warnings if w.file == "observations.csv"]
    assert "CAR-HEMATOTOX, EASIX with daily_value last" in w.message and "range they leave" in w.message


def test_explain_names_two_untimed_values_as_measured_not_missing(tmp_path):
    """Lead, session 34: platelets 100 and 50 on day -6 without a time are a measured item scored as
    the range 1-2 (75-175: 1 point; < 75: 2 points), not "not measured" with "?" points, and the
    headline does not call the range a missing item."""
    from cartlab.analyze import Analysis
    from cartlab.explain import explain

    d = tmp_path / "hx"
    d.mkdir()
    (d / "subjects.csv").write_text("subject_id,last_followup_day\nS1,30\n")
    (d / "doses.csv").write_text("subject_id,day,agent,dose,unit\nS1,-5,fludarabine,30,mg/m2\nS1,0,CAR-T,1,10^6 cells/kg\n")
    (d / "observations.csv").write_text(
        "subject_id,day,param,value,unit\nS1,-6,PLAT,100,10^9/L\nS1,-6,PLAT,50,10^9/L\nS1,-6,NEUT,2,10^9/L\n"
        "S1,-6,HGB,10,g/dL\nS1,-6,CRP,1,mg/L\nS1,-6,FERRITIN,100,ug/L\n")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = explain(Analysis(read_study(d)), "hematotox", "S1")
    assert "score 1-2 (a range: see the items)" in e.headline and "an item missing" not in e.headline
    plat = [t for t in e.days["reason"].to_list() if t.startswith("platelet count")][0]
    assert "measured on day -6" in plat and "a range (see the reason)" in plat and "not measured" not in plat
