"""Session 35 fixes to ASTCT 2019 CRS and ICANS grading (review35_icans_crs findings A1, B1-B7, C1).

Expected values are worked by hand from the quoted sources:
- [S1] ASTCT Table 1 footnote as reproduced by SITC (JITC): "In patients who have CRS then receive
  tocilizumab or steroids, fever is no longer required to grade subsequent CRS severity."
- [S2] PMC8021214 Table 1: "high flow refers to delivery at >6 L/min"; grade 4 hypotension
  "Multiple vasopressors (excluding vasopressin)"; grade 2 low-flow nasal cannula.
- [S5] PMC8403007 Table 4 (ICANS): LOC "unarousable" = 4; "ICE score ... 0 (patient is unarousable
  and unable to perform ICE)"; events "not attributable to any other cause".
- study-format.md "Derivation conventions" (the defaults): fever waiver from the first
  tocilizumab/corticosteroid for the whole course; high_flow_nasal_cannula = 3 by device; two or
  more vasopressors other than vasopressin on the same day = 4.
"""

from __future__ import annotations

import warnings

import polars as pl
import pytest

from cartlab.criteria import load_table
from cartlab.grading.crs import CrsOptions, derive_crs_daily, derive_crs_summary
from cartlab.grading.icans import IcansOptions, derive_icans_daily
from grading_helpers import drug, oxygen, study, vaso


def day(frame: pl.DataFrame, d: int, subject: str = "A") -> dict:
    rows = frame.filter((pl.col("subject_id") == subject) & (pl.col("day") == d))
    assert rows.height == 1, f"day {d}: {rows.height} rows"
    return rows.row(0, named=True)


def icans(s, **opts) -> pl.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return derive_icans_daily(s, IcansOptions(**opts) if opts else None)


def crs(s, **opts) -> pl.DataFrame:
    return derive_crs_daily(s, CrsOptions(**opts) if opts else None)


def vitals(subject: str, d: int, temp: float, sbp: float) -> list[tuple]:
    return [(subject, d, "TEMP", temp), (subject, d, "SYSBP", sbp)]


# --- B2: a day with no ICE/CAPD and no LOC could be unarousable ([S5]: LOC unarousable = 4) ---------

@pytest.mark.parametrize("event, grade", [("seizure", 3), ("cerebral_edema_focal", 3)])
def test_event_day_without_score_or_loc_is_open_to_4(event, grade):
    # Table 4: seizure / focal edema = 3; no ICE and no LOC recorded: an unarousable patient (LOC = 4)
    # is not ruled out -> grade 3 up to 4, both inputs named (old code: grade_max 3, nothing named)
    s = study(events=[{"subject_id": "A", "day": 2.0, "event": event}])
    r = day(icans(s), 2)
    assert (r["grade"], r["grade_max"]) == (grade, 4)
    assert sorted(r["missing_inputs"]) == ["ICE", "LOC"]  # review 39 C1: an adult's ICE
    assert "no ICE score and no level of consciousness" in r["reason"]


def test_missing_loc_with_ice_at_least_1_reads_rousable_and_is_a_convention_row():
    # ICE 5 = grade 2 (Table 4 3-6); a patient who performs the ICE is rousable: no range (convention)
    r = day(icans(study(obs=[("A", 1, "ICE", 5.0)])), 1)
    assert (r["grade"], r["grade_max"], r["missing_inputs"]) == (2, 2, [])
    conv = {c["id"]: c for c in load_table("astct_icans_2019").extra("conventions")}
    assert conv["icans.conv.loc_missing"]["status"] == "convention"


# --- B3: a child's ICE-only day keeps a row (grade 0 up to 3, ICE/CAPD named) ----------------------

def test_child_ice_only_day_is_a_range_not_dropped():
    # age 8: CAPD 3 on day 1 = grade 1 (Table 5 CAPD 1-8); day 2 has ICE 1 only, which ASTCT does not
    # use under 12: no CAPD that day -> 0 up to 3 (CAPD >= 9 is grade 3), the ICE row in evidence
    s = study(subjects=[{"subject_id": "A", "age_years": 8.0}],
              obs=[("A", 1, "CAPD", 3.0), ("A", 2, "ICE", 1.0)])
    d = icans(s)
    assert day(d, 1)["grade"] == 1
    r = day(d, 2)
    assert (r["grade"], r["grade_max"], r["missing_inputs"]) == (0, 3, ["CAPD"])  # review 39 C1: a child's CAPD
    assert "ICE 1 not graded" in r["reason"] and "CAPD" in r["reason"]
    assert "observations.csv:2" in r["evidence"]


# --- B6: a LOC text outside the vocabulary does not hide 'unarousable' the same day ---------------

def test_unmapped_loc_text_does_not_hide_unarousable():
    # Study built in Python (the folder reader refuses unknown LOC texts): "Somnolent" and
    # "unarousable" on day 3 -> LOC unarousable = 4 ([S5]); the unknown text is named, not graded
    s = study(obs=[("A", 3, "LOC", None, "Somnolent"), ("A", 3, "LOC", None, "unarousable")])
    r = day(icans(s), 3)
    assert (r["grade"], r["rule"]) == (4, "icans.loc")
    assert "Somnolent" in r["reason"] and "observations.csv:1" in r["evidence"]


# --- B7a: an ICANS event excluded by its attribution leaves a trace --------------------------------

def test_excluded_event_keeps_its_day_with_the_reason_and_row():
    # motor weakness attributed to 'other' (stroke) is not ICANS ([S5] "not attributable to any other
    # cause"): grade 0 that day, the event, its attribution and the option named, the row in evidence
    s = study(obs=[("A", 1, "ICE", 5.0)],
              events=[{"subject_id": "A", "day": 2.0, "event": "motor_weakness", "detail": "stroke",
                       "attribution": "other"}])
    r = day(icans(s), 2)
    assert r["grade"] == 0
    assert "motor_weakness attributed to other: not ICANS (option excluded_attributions)" in r["reason"]
    assert "events.csv:1" in r["evidence"]


# --- B7b / B7c / C1: the CRS criteria rows ----------------------------------------------------------

def test_no_fever_rule_and_new_options_have_criteria_rows():
    t = load_table("astct_crs_2019")
    rules = {r["id"]: r for r in t.extra("day_rules")}
    assert rules["crs.no_fever"]["status"] and "tocilizumab" in rules["crs.no_fever"]["citation"]
    conv = {c["id"]: c for c in t.extra("conventions")}
    for cid, opt in (("crs.conv.fever_waiver_scope", "fever_waiver_scope"),
                     ("crs.conv.fever_waiver_requires_crs", "fever_waiver_requires_crs"),
                     ("crs.conv.antipyretics", "antipyretics_waive_fever"),
                     ("crs.conv.hfnc_by_flow", "hfnc_by_flow"),
                     ("crs.conv.multiple_vasopressors", "multiple_vasopressors")):
        assert opt in conv[cid]["options"] and conv[cid]["status"] == "verified_secondary"


def test_afebrile_day_after_antipyretic_names_it_and_the_option():
    # fever d1 with paracetamol for CRS; d2 SBP 80 without fever: no tocilizumab/steroid -> 0
    # (spec: antipyretics do not waive), the antipyretic row and option named
    s = study(obs=[*vitals("A", 1, 38.7, 110), *vitals("A", 2, 37.1, 80)],
              iv=[drug("antipyretic", 1, "paracetamol")])
    r = day(crs(s), 2)
    assert (r["grade"], r["rule"]) == (0, "crs.no_fever")
    assert "antipyretic on day 1 does not waive the fever (option antipyretics_waive_fever=false)" in r["reason"]
    assert "interventions.csv:1" in r["evidence"]


# --- A1: fever_waiver_scope ------------------------------------------------------------------------

def _late_hypotension():
    # fever d1-2, tocilizumab d2, SBP 85 d3 afebrile, normal d4-9, SBP 80 afebrile on d40
    obs = [*vitals("A", 1, 38.6, 110), *vitals("A", 2, 38.2, 110), *vitals("A", 3, 37.0, 85)]
    obs += [o for d in range(4, 10) for o in vitals("A", d, 36.8, 115)] + vitals("A", 40, 37.0, 80)
    return study(obs=obs, iv=[drug("tocilizumab", 2, "tocilizumab")])


def test_waiver_scope_course_is_the_default_and_named():
    # spec: fever not required from day 2 for the whole course -> d3 2, d40 2; the reason names the scope
    d = crs(_late_hypotension())
    assert day(d, 3)["grade"] == 2
    r = day(d, 40)
    assert r["grade"] == 2 and "option fever_waiver_scope=course" in r["reason"]


def test_waiver_scope_episode_ends_with_the_episode():
    # [S1] "subsequent CRS severity": the episode d1-3 ends (d4-9 CRS-free); d40 has no fever -> 0;
    # resolution day 3, one episode
    s = _late_hypotension()
    d = crs(s, fever_waiver_scope="episode")
    assert day(d, 3)["grade"] == 2
    r = day(d, 40)
    assert (r["grade"], r["rule"]) == (0, "crs.no_fever")
    assert "ended with its CRS episode on day 3" in r["reason"]
    summ = derive_crs_summary(s, CrsOptions(fever_waiver_scope="episode")).row(0, named=True)
    assert (summ["crs_grade_astct"], summ["crs_resolution_day"], summ["crs_n_episodes"]) == (2, 3.0, 1)


def test_waiver_scope_episode_restarts_with_a_new_treated_episode():
    # episode 1: fever + tocilizumab d1, SBP 85 d2 (waived, 2); CRS-free d3-9; episode 2: fever +
    # dexamethasone d10, SBP 80 afebrile d11 -> waived again by d10's corticosteroid: 2
    obs = [*vitals("A", 1, 38.5, 110), *vitals("A", 2, 37.0, 85)]
    obs += [o for d in range(3, 10) for o in vitals("A", d, 36.8, 115)]
    obs += [*vitals("A", 10, 38.4, 110), *vitals("A", 11, 37.0, 80)]
    s = study(obs=obs, iv=[drug("tocilizumab", 1, "tocilizumab"), drug("corticosteroid", 10, "dexamethasone")])
    d = crs(s, fever_waiver_scope="episode")
    assert day(d, 2)["grade"] == 2 and day(d, 11)["grade"] == 2
    assert day(d, 11)["waiver_from_day"] == 10


# --- B1: fever_waiver_requires_crs ----------------------------------------------------------------

def _prophylaxis(extra_iv=()):
    # dexamethasone d1 (indication empty: counts, spec 'Attribution'), no fever; d2 SBP 85 afebrile;
    # fever d3; d4 SBP 85 afebrile
    obs = [*vitals("A", 1, 36.9, 115), *vitals("A", 2, 37.0, 85), *vitals("A", 3, 38.3, 110),
           *vitals("A", 4, 37.0, 85)]
    return study(obs=obs, iv=[drug("corticosteroid", 1, "dexamethasone", indication=None), *extra_iv])


def test_waiver_requires_crs_option():
    # default (spec): any counted corticosteroid waives from its day -> d2 and d4 are 2
    d = crs(_prophylaxis())
    assert day(d, 2)["grade"] == 2 and day(d, 4)["grade"] == 2
    # [S1] "have CRS then receive": the d1 steroid precedes any CRS -> d2 and d4 not waived (0);
    # a second steroid on d3 (a CRS day) waives d4 -> 2
    d = crs(_prophylaxis(), fever_waiver_requires_crs=True)
    r = day(d, 2)
    assert (r["grade"], r["rule"]) == (0, "crs.no_fever")
    assert "given before any CRS: does not waive the fever (option fever_waiver_requires_crs)" in r["reason"]
    assert day(d, 4)["grade"] == 0
    d2 = crs(_prophylaxis([drug("corticosteroid", 3, "dexamethasone")]), fever_waiver_requires_crs=True)
    assert day(d2, 2)["grade"] == 0 and day(d2, 4)["grade"] == 2


# --- B4: hfnc_by_flow -----------------------------------------------------------------------------

def _hfnc(flow):
    return study(obs=vitals("A", 1, 38.5, 100), iv=[oxygen("high_flow_nasal_cannula", 1, flow)])


def test_hfnc_by_device_default_reason_does_not_claim_above_6():
    # spec: high_flow_nasal_cannula = 3 by device; the reason must not print "> 6 L/min" next to 5
    r = day(crs(_hfnc(5.0)), 1)
    assert r["grade"] == 3
    assert "> 6 L/min" not in r["reason"] and "by device (option hfnc_by_flow)" in r["reason"]


@pytest.mark.parametrize("flow, grade", [(5.0, 2), (6.0, 2), (8.0, 3), (None, 3)])
def test_hfnc_by_flow_option(flow, grade):
    # [S2]: high flow is > 6 L/min: 5 and 6 L/min are low flow (2), 8 high (3); no flow: device (3)
    assert day(crs(_hfnc(flow), hfnc_by_flow=True), 1)["grade"] == grade


# --- B5: multiple_vasopressors ------------------------------------------------------------------

def _two_pressors(a, b):
    return study(obs=vitals("A", 5, 38.6, 85), iv=[vaso("norepinephrine", *a), vaso("phenylephrine", *b)])


def test_concurrent_option_switch_is_3_overlap_is_4():
    # default (spec, same_day): two drugs other than vasopressin on day 5 -> 4, even in sequence
    assert day(crs(_two_pressors((5.0, 5.25), (5.5, 5.9))), 5)["grade"] == 4
    # [S2] "Multiple vasopressors": norepinephrine 5.00-5.25 then phenylephrine 5.50-5.90 never
    # together -> one vasopressor at a time: 3; 5.0-5.6 and 5.5-5.9 overlap -> 4
    # (starts at 5.01, 00:14: a whole-number start 5.0 is "day 5" without a time of day, so the rows
    # would not be timed: diff review s35 B1, test_lead_mends_s35)
    r = day(crs(_two_pressors((5.01, 5.25), (5.5, 5.9)), multiple_vasopressors="concurrent"), 5)
    assert (r["grade"], r["grade_max"]) == (3, 3)
    assert day(crs(_two_pressors((5.01, 5.6), (5.5, 5.9)), multiple_vasopressors="concurrent"), 5)["grade"] == 4
    r = day(crs(_two_pressors((5.0, 5.25), (5.5, 5.9)), multiple_vasopressors="concurrent"), 5)
    assert (r["grade"], r["grade_max"]) == (3, 4)  # a start known to the day only: together or not, unknown


def test_concurrent_option_whole_day_rows_are_a_range():
    # both recorded on day 5 without times: together or not is unknown -> 3 up to 4, times named
    s = study(obs=vitals("A", 5, 38.6, 85), iv=[vaso("norepinephrine", 5), vaso("phenylephrine", 5)])
    r = day(crs(s, multiple_vasopressors="concurrent"), 5)
    assert (r["grade"], r["grade_max"], r["missing_inputs"]) == (3, 4, ["vasopressor times"])
