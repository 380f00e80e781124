"""Session 38 fixes of the haematological scores (review /work/notes/review38_hemato/REPORT.md: A1, B1-B5).

Expected values are worked out by hand from the criteria tables: CAR-HEMATOTOX (car_hematotox_2021.yaml)
PLT < 75 -> 2, 75-175 -> 1, > 175 -> 0 x10^9/L, every other item neutral here (0), low 0-1 / high >= 2,
baseline = last value on or before the first lymphodepletion dose ("determined prior to lymphodepleting
chemotherapy (e.g. day -5)", EMCL score page); EASIX = LDH x creatinine (mg/dL) / PLT (Pennisi 2021);
IEC-HS (iec_hs_2023.yaml) ferritin > 2 x ULN or > 2 x baseline, ALT > 5 x ULN (normal baseline) or
> 5 x baseline (abnormal baseline); ICAHT/T-ICAHT: a day without a count may be below every level, so
an early window with no count can be up to grade 4 (as the late window).
"""

from __future__ import annotations

import pytest

from cartlab.grading.hematotox import EasixOptions, derive_car_hematotox, derive_easix
from cartlab.grading.icaht import derive_icaht
from cartlab.grading.iec_hs import IecHsOptions, derive_iec_hs_flags
from cartlab.grading.ld_agents import canonical_agent, unknown_dose_agents
from cartlab.grading.t_icaht import derive_t_icaht
from test_hematotox import make_study

# neutral on day -6 (0 points each): PLT 200, ANC 3.0 x10^9/L, Hb 120 g/L, CRP 5 mg/L, ferritin 100 ug/L;
# PLT 50 on day -4 (after lymphodepletion started): 2 points if it were (wrongly) the baseline
NEUTRAL = [(-6, "PLAT", 200.0), (-6, "NEUT", 3.0), (-6, "HGB", 120.0), (-6, "CRP", 5.0), (-6, "FERRITIN", 100.0)]


def _course(agent, days=(-5, -4, -3)):
    return [{"day": float(d), "agent": agent} for d in days]


@pytest.mark.parametrize("agent", ["fludarabine phosphate", "Flu", "FLUDARA", "Cytoxan", "endoxan", "CTX",
                                   "Treanda", "Fludarabine  Phosphate"])
def test_lymphodepletion_aliases_anchor_the_baseline_before_the_course(agent):
    # baseline day -6 (before the first dose on day -5): PLT 200 -> 0, score 0, low.
    # Before: the agent was not lymphodepletion, the baseline was the last value before day 0 (PLT 50) -> 2, high.
    r = derive_car_hematotox(make_study([*NEUTRAL, (-4, "PLAT", 50.0)], doses=_course(agent))).row(0, named=True)
    assert (r["hematotox_score"], r["hematotox_risk"], r["baseline_day"], r["plat_day"]) == (0, "low", -5.0, -6.0)


def test_easix_pre_ld_reads_an_alias_as_lymphodepletion():
    # LDH 250 U/L, creatinine 88.42 umol/L (= 1.0 mg/dL), PLT 200 on day -6: 250 x 1 / 200 = 1.25
    # (before: PLT 50 of day -4 -> 5.0, across the 4.67 cut-off)
    obs = [*NEUTRAL, (-6, "LDH", 250.0), (-6, "CREAT", 88.42), (-4, "PLAT", 50.0)]
    r = derive_easix(make_study(obs, doses=_course("fludarabine phosphate")), options=EasixOptions()).row(0, named=True)
    assert r["easix"] == pytest.approx(1.25, rel=1e-3)


def test_an_unknown_pre_infusion_agent_is_named_in_the_baseline_reason():
    r = derive_car_hematotox(make_study(NEUTRAL, doses=_course("flud-x", days=(-4,)))).row(0, named=True)
    assert "not read as lymphodepletion: flud-x on day -4" in r["reason"]
    assert r["baseline_day"] == 0.0


def test_alias_table_and_unknown_agent_listing():
    assert canonical_agent(" Fludara ") == "fludarabine" and canonical_agent("Levact") == "bendamustine"
    s = make_study(doses=[{"day": -4.0, "agent": "flud-x"}, {"day": -20.0, "agent": "R-GemOx"},
                          {"day": -5.0, "agent": "Flu"}, {"day": 0.0, "agent": "CAR-T"}])
    assert unknown_dose_agents(s.doses)["agent"].to_list() == ["flud-x"]


def test_a_course_starting_before_the_window_edge_is_not_cut():
    # fludarabine days -15, -14, -13 (window -14..-1): the course starts on day -15, baseline day -16
    # PLT 200 -> 0, low. Before: course "-14 to -13", PLT 50 of day -14 -> 2, high.
    obs = [(d - 10, p, v) for d, p, v in NEUTRAL] + [(-14, "PLAT", 50.0)]
    r = derive_car_hematotox(make_study(obs, doses=_course("fludarabine", (-15, -14, -13)))).row(0, named=True)
    assert (r["hematotox_score"], r["hematotox_risk"], r["baseline_day"]) == (0, "low", -15.0)
    assert "course days -15 to -13" in r["reason"]


def _iec(obs, **opt):
    return derive_iec_hs_flags(make_study(obs), IecHsOptions(**opt)).filter(day=10).row(0, named=True)


def test_a_censored_baseline_names_why_2x_baseline_is_undecided():
    # FERRITIN >2000 on day -6: 2 x baseline > 4000; 4500 may or may not exceed it -> undecided
    obs = [(-6, "FERRITIN", 0.0, {"value": None, "censor": ">", "censor_limit": 2000.0}),
           (10, "FERRITIN", 4500.0), (10, "ALT", 300.0, {"uln": 40.0})]
    r = _iec(obs)
    assert "()" not in r["reason"]
    assert "censored baseline FERRITIN" in r["reason"] and "4500 undecided" in r["reason"]


def test_baseline_lookback_option_leaves_an_old_baseline_out_and_the_reason_names_its_age():
    # ferritin 200 on day -60 (ULN 300), 450 on day 10: 1.5 x ULN (key by ULN not met); 450 > 2 x 200
    obs = [(-60, "FERRITIN", 200.0, {"uln": 300.0}), (-60, "ALT", 30.0, {"uln": 40.0}),
           (10, "FERRITIN", 450.0, {"uln": 300.0}), (10, "ALT", 300.0, {"uln": 40.0})]
    r = _iec(obs)  # default (no limit): flagged, the baseline's age named
    assert r["iec_hs_flag"] is True and "200 on day -60, 60 day(s) before day 0" in r["reason"]
    r = _iec(obs, baseline_max_lookback_days=14)  # no baseline within 14 days -> undecided, flag unknown
    assert r["iec_hs_flag"] is None
    assert "no baseline FERRITIN within 14 days before day 0" in r["reason"]


def test_transaminase_baseline_uln_same_as_day_decides_both_readings_fail():
    # ALT 150 (ULN 40), no baseline ALT: normal reading 150 > 200? no; abnormal baseline > 40 -> 5 x baseline
    # > 200 > 150: no. Every other supporting criterion measured and not met (AST 30, FIBRINO 3.0 g/L with
    # LLN 2.0, counts unchanged) -> with same_as_day not flagged; default none: not evaluable (unchanged).
    obs = [(10, "FERRITIN", 5000.0, {"uln": 300.0}), (10, "ALT", 150.0, {"uln": 40.0}),
           (-6, "AST", 30.0, {"uln": 40.0}), (10, "AST", 30.0, {"uln": 40.0})]
    for d in (-6, 10):
        obs += [(d, "NEUT", 3.0), (d, "PLAT", 200.0), (d, "HGB", 120.0), (d, "FIBRINO", 3.0, {"lln": 2.0})]
    assert _iec(obs)["iec_hs_flag"] is None
    assert _iec(obs, transaminase_baseline_uln="same_as_day")["iec_hs_flag"] is False


def test_an_early_window_without_any_count_can_be_up_to_grade_4():
    # no NEUT/PLAT at all, follow-up 100: days 0-30 unknown -> early not evaluable, maximum 4 (as the late window)
    s = make_study([(-6, "CRP", 5.0)], last_followup=100)
    r = derive_icaht(s).row(0, named=True)
    assert (r["icaht_early_grade"], r["icaht_early_grade_max"]) == (None, 4)
    assert "Could be up to grade 4" in r["early_reason"]
    r = derive_t_icaht(s).row(0, named=True)
    assert (r["t_icaht_early_grade"], r["t_icaht_early_grade_max"]) == (None, 4)


def test_icaht_reason_names_gcsf_days_graded_as_measured():
    # ANC 0.8 on days 5-10 under filgrastim: graded as measured (no G-CSF rule verified), the days named
    obs = [(d, "NEUT", 0.3 if d < 5 or 10 < d <= 20 else (0.8 if d <= 10 else 2.0)) for d in range(0, 40)]
    iv = [{"start_day": 5.0, "end_day": 10.0, "category": "gcsf", "agent": "filgrastim"}]
    r = derive_icaht(make_study(obs, iv=iv, last_followup=100)).row(0, named=True)
    # hand: days 0-4 and 11-20 <= 0.5 -> 15 days -> grade 3 (>= 14 days)
    assert r["icaht_early_grade"] == 3
    assert "G-CSF (filgrastim) on days 5-10 (interventions.csv:1): counts graded as measured" in r["reason"]


def _explain_patched(name: str) -> bool:
    import inspect

    import cartlab.explain as ex
    return name in inspect.getsource(ex)


def test_explain_icaht_lists_only_the_early_levels_on_early_days():
    if not _explain_patched("early_level_columns"):
        pytest.skip("other.diff (explain.py) not applied")
    from cartlab.explain import explain
    # ANC 0.8 (800/uL) on day 5: the early grade reads 500 and 100/uL only -> "above every threshold of the
    # early window" (before: "<= 1000, <= 1500 /uL", the late levels)
    obs = [(d, "NEUT", 0.8) for d in range(0, 31)]
    r = explain(make_study(obs, last_followup=100), "icaht", "A").days.filter(day=5.0).row(0, named=True)
    assert "1000" not in r["reason"] and "> 500 /uL" in r["reason"]


def test_explain_iec_hs_lists_each_criterion_per_day():
    if not _explain_patched("_iec_hs"):
        pytest.skip("other.diff (explain.py) not applied")
    from cartlab.explain import explain
    # ferritin 1100 (ULN 300) > 2 x ULN, ALT 250 (ULN 40, baseline 30 normal) > 5 x ULN -> flagged on day 10
    obs = [(-1, "FERRITIN", 500.0, {"uln": 300.0}), (-1, "ALT", 30.0, {"uln": 40.0}),
           (10, "FERRITIN", 1100.0, {"uln": 300.0}), (10, "ALT", 250.0, {"uln": 40.0})]
    ex = explain(make_study(obs), "iec-hs", "A")
    r = ex.days.filter(day=10.0).row(0, named=True)
    assert r["reason"].startswith("flagged (met: iec_hs.ferritin_gt_2x_uln")
    assert "iec_hs.transaminases_gt_5x" in r["reason"] and "observations.csv:4" in r["evidence"]


def test_validate_warns_about_an_unknown_agent_in_the_lymphodepletion_window():
    from cartlab.io import course_checks
    if not hasattr(course_checks, "unknown_dose_agents"):
        pytest.skip("other.diff (course_checks.py) not applied")
    s = make_study(doses=[{"day": -4.0, "agent": "flud-x"}, {"day": -5.0, "agent": "Fludara"}])
    issues = course_checks.unknown_dose_agents({"doses": s.doses}, "src_row")
    assert [(i.file, i.column, i.rows) for i in issues] == [("doses.csv", "agent", [1])]
    assert "'flud-x' on day -4" in issues[0].message
