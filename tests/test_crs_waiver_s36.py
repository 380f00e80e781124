"""Session 36: the older CRS scales read the ASTCT fever waiver, with the analysis's options
(/work/notes/fix36_crs/REPORT.md; review36 "Outside the target": SYN-0042 got Lee 2014 3-4 from a
hypokalemia on day 57, afebrile, because tocilizumab on day 5 waived the fever for the whole course).

Expected grades are derived by hand from the tables, never from cartlab's output:
- Lee 2014 (criteria/crs_lee2014.yaml, Lee DW et al., Blood 2014;124:188, reproduced in PMC7006459
  Table 2): lee2014.g2.hypotension_fluids "hypotension responsive to fluids" (SBP < 90 without a
  vasopressor) = 2; lee2014.g3.organ_g3 "grade 3 organ toxicity" = 3; every row but death needs
  ``crs_gate`` (a fever >= 38 C that day, or the fever requirement waived: defaults.gate
  fever_or_waiver); no row holding = 0.
- ASTCT 2019 Table 1 footnote: "In patients who have CRS then receive tocilizumab or steroids,
  fever is no longer required to grade subsequent CRS severity"; cartlab options
  fever_waiver_scope (course: to the end of follow-up, spec; episode: within the CRS episode in
  which it was given) and fever_waiver_requires_crs (astct_crs_2019.yaml conventions
  crs.conv.fever_waiver*). ASTCT episodes: CRS days (grade >= 1) at most episode_join_gap_days (1)
  apart.
- CTCAE v5 hypokalemia: grade 3 "< 3.0 - 2.5 mmol/L" (K 2.9 mmol/L, LLN 3.5).
"""

from __future__ import annotations

import json
import warnings

import pytest

from cartlab.analyze import Analysis, AnalysisOptions
from cartlab.grading.crs import CrsOptions, derive_crs_waiver
from cartlab.grading.crs_legacy import CrsLegacyOptions
from test_crs_legacy_review_s33 import lab, labs, rng, sbp, study, temp, vp

warnings.simplefilter("ignore")


def toci(d):
    return {"subject_id": "S1", "start_day": d, "end_day": d, "category": "tocilizumab", "agent": "tocilizumab",
            "indication": "CRS"}


def steroid(d):
    return {"subject_id": "S1", "start_day": d, "end_day": d, "category": "corticosteroid",
            "agent": "dexamethasone", "indication": "CRS"}


# Days 5-6: fever and SBP < 90 without a vasopressor (ASTCT grade 2, Lee 2014 lee2014.g2.hypotension_fluids
# = 2), tocilizumab on day 5; day 7 afebrile, SBP 110; day 40: afebrile (36.5 C), SBP 120, K 2.9 mmol/L
# (CTCAE grade 3) beside a normal creatinine and ALT. Organ labs normal on days 5-7.
LATE_ORGAN = [temp(5, 39.0), sbp(5, 82), *labs(5), temp(6, 38.5), sbp(6, 85), *labs(6),
              temp(7, 37.0), sbp(7, 110), *labs(7),
              temp(40, 36.5), sbp(40, 120), *labs(40), lab(40, "K", 2.9, "mmol/L", uln=5.1, lln=3.5)]


def _analysis(st_, crs=None, legacy=None):
    return Analysis(st_, options=AnalysisOptions(crs=crs, crs_legacy=legacy))


def _lee_days(a):
    """Lee 2014 daily grades of S1 as the analysis derives them: {day: (grade_min, grade_max)}."""
    from cartlab.grading.crs_legacy import derive_crs_legacy_daily, organ_grades_from_adlb

    lee = derive_crs_legacy_daily(a.study, ["lee2014"], options=a.options.crs_legacy,
                                  organ_grades=organ_grades_from_adlb(a.table("adlb")))
    return {r["day"]: (r["grade_min"], r["grade_max"]) for r in lee.iter_rows(named=True)}


def _lee(a):
    """(grade_min, grade_max, day) of Lee 2014 for S1 in crs_cross_scale."""
    r = a.table("crs_cross_scale").row(0, named=True)
    return (*rng(r, "lee2014"), r["crs_lee2014_day"])


@pytest.fixture
def late(tmp_path):
    return study(tmp_path, LATE_ORGAN, [toci(5)])


def test_default_course_waiver_grades_the_late_afebrile_organ_toxicity(late):
    """Course scope (spec default): the waiver from day 5 lasts to the end of follow-up, so day 40 is a
    CRS day and its grade 3 hypokalemia is lee2014.g3.organ_g3 = 3 (unchanged behaviour)."""
    a = _analysis(late)
    assert _lee(a)[:2] == (3, 3)
    assert a.table("crs_cross_scale")["crs_lee2014_day"][0] == 40
    assert a.table("crs_summary")["crs_grade_astct"][0] == 2


def test_astct_episode_scope_reaches_the_older_scales(late):
    """--set crs.fever_waiver_scope=episode: the waiver ends with the ASTCT episode (days 5-6; day 7
    is no CRS day even with the waiver: afebrile, SBP 110), so day 40 has no fever and no waiver:
    no Lee row holds (0). The maximum is days 5-6, lee2014.g2.hypotension_fluids = 2."""
    a = _analysis(late, crs=CrsOptions(fever_waiver_scope="episode"))
    lo, hi, day = _lee(a)
    assert (lo, hi, day) == (2, 2, 5)
    assert a.table("crs_cross_scale")["crs_lee2014_rule"][0] == "lee2014.g2.hypotension_fluids"
    assert a.table("crs_summary")["crs_grade_astct"][0] == 2
    # the options record says what the older scales applied
    rec = json.loads(json.dumps(a.options.to_dict()))["crs_legacy"]
    assert rec["fever_waiver_scope"] == "episode"


def test_legacy_option_set_alone_applies_to_the_older_scales_only(late):
    """crs_legacy.fever_waiver_scope set: it wins over the ASTCT option for the older scales."""
    assert _lee(_analysis(late, legacy=CrsLegacyOptions(fever_waiver_scope="episode")))[:2] == (2, 2)
    a = _analysis(late, crs=CrsOptions(fever_waiver_scope="episode"),
                  legacy=CrsLegacyOptions(fever_waiver_scope="course"))
    assert _lee(a)[:2] == (3, 3)


def test_waiver_spans_are_the_astct_engines(late):
    """derive_crs_waiver: course: from day 5 to the end (no last day); episode: days 5-6."""
    course = derive_crs_waiver(late).row(0, named=True)
    assert (course["waiver_from_day"], course["waiver_to_day"]) == (5, None)
    ep = derive_crs_waiver(late, CrsOptions(fever_waiver_scope="episode")).row(0, named=True)
    assert (ep["waiver_from_day"], ep["waiver_to_day"], ep["waiver_category"]) == (5, 6, "tocilizumab")


def test_episode_scope_a_new_agent_in_a_new_episode_waives_again(tmp_path):
    """Episode scope: a second episode (fever day 40, dexamethasone day 40) starts a new waiver; on
    day 41 (afebrile, SBP 80, no vasopressor) the fever is waived within it: lee2014.g2.hypotension_fluids
    = 2 (day 40 itself: fever, SBP 120, no organ toxicity -> lee2014.g1.fever = 1)."""
    obs = [temp(5, 39.0), sbp(5, 82), *labs(5), temp(40, 38.8), sbp(40, 120), *labs(40),
           temp(41, 37.0), sbp(41, 80), *labs(41)]
    a = _analysis(study(tmp_path, obs, [toci(5), steroid(40)]), crs=CrsOptions(fever_waiver_scope="episode"))
    daily = a.table("crs_daily")
    assert daily.filter(daily["day"] == 41)["grade"][0] == 2  # ASTCT: hypotension after the waiver
    by_day = _lee_days(a)
    assert by_day[40] == (1, 1) and by_day[41] == (2, 2)


def test_requires_crs_prophylactic_steroid_does_not_waive_for_the_older_scales(tmp_path):
    """A corticosteroid on day 1 before any fever; day 3 afebrile with SBP 80 (no vasopressor); day 5
    fever. Default: the waiver runs from day 1, so day 3 is lee2014.g2.hypotension_fluids = 2. With
    crs.fever_waiver_requires_crs the day-1 dose starts no waiver (no CRS day before it): day 3 has no
    fever and no waiver, 0."""
    obs = [temp(1, 37.0), sbp(1, 120), *labs(1), temp(3, 37.1), sbp(3, 80), *labs(3),
           temp(5, 38.6), sbp(5, 120), *labs(5)]
    st_ = study(tmp_path, obs, [steroid(1)])
    assert _lee_days(_analysis(st_))[3] == (2, 2)
    assert _lee_days(_analysis(st_, crs=CrsOptions(fever_waiver_requires_crs=True)))[3] == (0, 0)


def test_multiple_vasopressors_follows_the_astct_option(tmp_path):
    """Norepinephrine 08-10 h then epinephrine 14-16 h on day 1, low dose, fever and SBP 82. Default
    same_day: two drugs that day are "multiple vasopressors" (CARTOX G3, G4 possible: 3-4). With
    crs.multiple_vasopressors=concurrent the older scales count them one at a time too: CARTOX G2
    "low-dose vasopressor" (as test_crs_legacy_fix_s34 derives)."""
    seq = [vp(1 + 8 / 24, 1 + 10 / 24, "norepinephrine", 5), vp(1 + 14 / 24, 1 + 16 / 24, "epinephrine", 3)]
    st_ = study(tmp_path, [temp(1, 38.6), sbp(1, 82), *labs(1)], seq)
    row = lambda a: a.table("crs_cross_scale").row(0, named=True)  # noqa: E731
    assert rng(row(_analysis(st_)), "cartox") == (3, 4)
    assert rng(row(_analysis(st_, crs=CrsOptions(multiple_vasopressors="concurrent"))), "cartox") == (2, 2)
    # set for the older scales alone, it still wins
    assert rng(row(_analysis(st_, crs=CrsOptions(multiple_vasopressors="concurrent"),
                             legacy=CrsLegacyOptions(multiple_vasopressors="same_day"))), "cartox") == (3, 4)


def test_legacy_waiver_categories_set_is_the_whole_list(late):
    """crs_legacy.waiver_categories=[corticosteroid]: tocilizumab no longer waives for the older
    scales (day 40 afebrile, no waiver: the late hypokalemia is no CRS; max days 5-6 = 2); the
    ASTCT grade is unchanged (2)."""
    a = _analysis(late, legacy=CrsLegacyOptions(waiver_categories=("corticosteroid",)))
    assert _lee(a)[:2] == (2, 2)
    assert a.table("crs_summary")["crs_grade_astct"][0] == 2


def test_option_values_are_checked():
    with pytest.raises(ValueError, match="fever_waiver_scope"):
        CrsLegacyOptions(fever_waiver_scope="whole")
    with pytest.raises(ValueError, match="fever_waiver_requires_crs"):
        CrsLegacyOptions(fever_waiver_requires_crs="yes")
    with pytest.raises(ValueError, match="waiver_categories"):
        CrsLegacyOptions(waiver_categories="tocilizumab")


def test_defaults_record_the_applied_values():
    """analysis.json records what was applied, never the unset None."""
    rec = AnalysisOptions().to_dict()["crs_legacy"]
    assert rec["fever_waiver_scope"] == "course" and rec["fever_waiver_requires_crs"] is False
    assert rec["waiver_categories"] == ["tocilizumab", "corticosteroid"]
    assert rec["multiple_vasopressors"] == "same_day"
    assert AnalysisOptions().settings_record() == {}
