"""Legacy CRS scales (Lee 2014, Penn, CARTOX/MDACC, MSKCC): boundaries, ranges, worked examples."""

from __future__ import annotations

import math
from dataclasses import replace

import polars as pl
import pytest

from cartlab.datasets import seed_case
from cartlab.grading.common import load_criteria
from cartlab.grading.crs_legacy import (
    SCALES,
    CrsLegacyOptions,
    derive_crs_cross_scale,
    derive_crs_cross_scale_cohort,
    derive_crs_daily_inputs,
    derive_crs_legacy_daily,
    derive_crs_legacy_subject,
    grade_crs_scale,
    scale_table,
)
from cartlab.model import INTERVENTIONS, Study, conform

# --------------------------------------------------------------------------------------------------
# builders of small canonical studies

ORGAN_SCHEMA = {"subject_id": pl.String, "day": pl.Float64, "organ": pl.String, "grade": pl.Int64,
                "is_transaminase": pl.Boolean}
NO_ORGAN_TOX = pl.DataFrame(schema=ORGAN_SCHEMA)  # organ grades supplied: none
# These studies have no lab measurements: their organ_grades frames list toxicities, a day without a
# row meaning none, which is organ_labs="absent_is_normal" (the default "same_day" reads a day without
# organ labs as unknown: tests/test_crs_legacy_audit_s26.py).
ABSENT = CrsLegacyOptions(organ_labs="absent_is_normal")


def absent(options=None):
    return replace(options or CrsLegacyOptions(), organ_labs="absent_is_normal")


def iv(start, end=None, category="vasopressor", agent="norepinephrine", dose=None, dose_unit="ug/min",
       indication="CRS", subject="S1", **kw):
    row = {k: None for k in INTERVENTIONS}
    row.update(subject_id=subject, start_day=start, end_day=end, category=category, agent=agent,
               dose=dose, dose_unit=dose_unit if dose is not None else None, indication=indication, **kw)
    return row


def organ(day, name, grade, transaminase=False, subject="S1"):
    return {"subject_id": subject, "day": float(day), "organ": name, "grade": grade,
            "is_transaminase": transaminase}


def make_study(ivs=(), *, subjects=("S1",), days=range(15), fever_days=range(3, 15), tmax=39.4,
               low_sbp=None, weight=52.0, events=(), temp_days=None):
    """Canonical study: daily TEMP (fever on fever_days) and SYSBP (low_sbp: {day: value})."""
    low_sbp = low_sbp or {}
    obs, n = [], 0
    for sid in subjects:
        for d in days:
            if temp_days is None or d in temp_days:
                n += 1
                obs.append({"subject_id": sid, "day": float(d), "param": "TEMP", "unit": "degC",
                            "value": tmax if d in fever_days else 36.8, "src_file": "observations.csv",
                            "src_row": n})
            n += 1
            obs.append({"subject_id": sid, "day": float(d), "param": "SYSBP", "unit": "mmHg",
                        "value": float(low_sbp.get(d, 112.0)), "src_file": "observations.csv", "src_row": n})
    ivs = [dict(r, src_file="interventions.csv", src_row=i + 1) for i, r in enumerate(ivs)]
    subj = conform(pl.DataFrame({"subject_id": list(subjects), "weight_kg": [weight] * len(subjects),
                                 "src_file": "subjects.csv", "src_row": list(range(1, len(subjects) + 1))}),
                   "subjects")
    inter = conform(pl.DataFrame(ivs, schema=INTERVENTIONS), "interventions") if ivs else \
        conform(pl.DataFrame(schema=INTERVENTIONS), "interventions")
    ev = conform(pl.DataFrame([dict(e, src_file="events.csv", src_row=i + 1) for i, e in enumerate(events)]),
                 "events") if events else conform(pl.DataFrame({"subject_id": []}, schema={"subject_id": pl.String}),
                                                  "events")
    return Study("test", subjects=subj, observations=conform(pl.DataFrame(obs), "observations"),
                 interventions=inter, events=ev)


#: MSKCC read as before session 33 (no G4 range for unrecorded refractoriness), for tests whose
#: point is another rule; the default range is asserted beside them
NOT_REFRACTORY = CrsLegacyOptions(assume_refractory_hypotension=False, assume_life_threatening_hypotension=False)


def subject_grades(study, organ_grades=NO_ORGAN_TOX, options=None, subject="S1"):
    """{scale: (grade, grade_min, grade_max)} for one subject."""
    x = derive_crs_cross_scale(study, organ_grades=organ_grades, options=absent(options)).filter(
        pl.col("subject_id") == subject)
    r = x.row(0, named=True)
    return {s: (r[f"crs_grade_{s}"], r[f"crs_grade_{s}_min"], r[f"crs_grade_{s}_max"]) for s in SCALES}


def exact(study, **kw):
    g = subject_grades(study, **kw)
    for s, (grade, lo, hi) in g.items():
        assert grade is not None and lo == hi == grade, (s, g[s])
    return {s: v[0] for s, v in g.items()}


def day_inputs(study, day, **kw):
    inp = derive_crs_daily_inputs(study, kw.pop("options", None), **kw)
    return inp.filter(pl.col("day") == day).row(0, named=True)


# the seed-case CRS course (research §6): fever days 3-14 up to 39.4 C, SBP 84/78/86 on days 8-10,
# dexamethasone for CRS days 8-12, weight 52 kg
SEED_SBP = {8: 84, 9: 78, 10: 86}
DEXA = iv(8, 12, category="corticosteroid", agent="dexamethasone", dose=5, dose_unit="mg")


def seed_like(vaso_rows):
    return make_study([*vaso_rows, DEXA], low_sbp=SEED_SBP)


# --------------------------------------------------------------------------------------------------
# criteria tables


@pytest.mark.parametrize("scale", SCALES)
def test_tables_load_with_citations_and_known_features(scale):
    t = scale_table(scale)
    assert t["rules"] and t["citation"] and t["version"]
    raw = load_criteria(f"crs_{scale}")
    assert raw["status"] == "verified_secondary"
    for r in raw["rule_sets"]["grade"]:
        assert r["citation"] and r["text"] and r["status"], r["id"]
    assert {r["grade"] for r in t["rules"]} >= {1, 2, 3}


def test_vasopressor_table_is_marked_unverified():
    t = load_criteria("vasopressor_equivalents")
    assert t["status"] == "unverified"
    assert all(r["status"] == "unverified" for r in t["high_dose"]["rows"])
    assert t["high_dose"]["min_duration_hours"] == 3


def test_bad_scale_param_and_unknown_scale_are_rejected():
    with pytest.raises(ValueError):
        CrsLegacyOptions(scale_params={"astct": {}})
    with pytest.raises(ValueError):
        scale_table("lee2014", CrsLegacyOptions(scale_params={"lee2014": {"multiple_count_feature": "nope"}}))
    with pytest.raises(ValueError):
        scale_table("ctcae")


# --------------------------------------------------------------------------------------------------
# high-dose table: NE-equivalent exactly at each cut-off (6-hour infusions on day 8)

SIX_H = {"start": 8.25, "end": 8.5}


def hd_case(*agents, weight=52.0):
    rows = [iv(SIX_H["start"], SIX_H["end"], agent=a, dose=d, dose_unit=u) for a, d, u in agents]
    return day_inputs(make_study(rows, weight=weight), 8)


@pytest.mark.parametrize("agents, expected", [
    ([("norepinephrine", 20, "ug/min")], True),
    ([("norepinephrine", 19.99, "ug/min")], False),
    ([("noradrenaline", 20, "mcg/min")], True),                       # synonym + mcg spelling
    ([("dopamine", 10, "ug/kg/min")], True),
    ([("dopamine", 9.99, "ug/kg/min")], False),
    ([("phenylephrine", 200, "ug/min")], True),
    ([("phenylephrine", 199.9, "ug/min")], False),
    ([("epinephrine", 10, "ug/min")], True),
    ([("epinephrine", 9.99, "ug/min")], False),
    ([("vasopressin", 0.04, "U/min"), ("norepinephrine", 10, "ug/min")], True),
    ([("vasopressin", 0.04, "U/min"), ("norepinephrine", 9.99, "ug/min")], False),
    ([("vasopressin", 0.04, "U/min")], False),                          # vasopressin alone: NE-eq 0
    ([("norepinephrine", 10, "ug/min"), ("epinephrine", 10, "ug/min")], True),
    ([("norepinephrine", 10, "ug/min"), ("epinephrine", 9.99, "ug/min")], False),
    ([("norepinephrine", 10, "ug/min"), ("phenylephrine", 100, "ug/min")], True),   # 10 + 100/10
    ([("norepinephrine", 15, "ug/min"), ("dopamine", 10, "ug/kg/min")], True),      # 15 + 10/2
    ([("norepinephrine", 15, "ug/min"), ("dopamine", 9.98, "ug/kg/min")], False),
])
def test_high_dose_cutoffs(agents, expected):
    r = hd_case(*agents)
    assert r["high_dose"] is expected


def test_weight_based_doses_use_subject_weight():
    # 0.4 ug/kg/min x 50 kg = 20 ug/min (cut-off), 0.39 -> 19.5
    assert hd_case(("norepinephrine", 0.4, "ug/kg/min"), weight=50.0)["high_dose"] is True
    r = hd_case(("norepinephrine", 0.39, "ug/kg/min"), weight=50.0)
    assert r["high_dose"] is False and r["ne_equiv_max_ug_min"] == pytest.approx(19.5)
    # dopamine given per minute is divided by the weight: 500 ug/min / 50 kg = 10 ug/kg/min
    assert hd_case(("dopamine", 500, "ug/min"), weight=50.0)["high_dose"] is True
    # combination NE-eq: 10 + 100/10 + 10/2 = 25
    r = hd_case(("norepinephrine", 10, "ug/min"), ("phenylephrine", 100, "ug/min"), ("dopamine", 10, "ug/kg/min"))
    assert r["ne_equiv_max_ug_min"] == pytest.approx(25.0) and r["ne_equiv_complete"] is True


@pytest.mark.parametrize("hours, expected, penn", [(2.9, False, 3), (3.0, True, 4)])
def test_high_dose_needs_three_hours(hours, expected, penn):
    s = make_study([iv(8.5, 8.5 + hours / 24, dose=30)])
    assert day_inputs(s, 8)["high_dose"] is expected
    assert subject_grades(s)["penn"] == (penn, penn, penn)


def test_high_dose_run_across_midnight_counts_once_for_both_days():
    # 2 h before and 2 h after midnight: one 4-h run of >= 20 ug/min
    s = make_study([iv(8 + 22 / 24, 9 + 2 / 24, dose=25)])
    inp = derive_crs_daily_inputs(s)
    assert inp.filter(pl.col("day").is_in([8, 9]))["high_dose"].to_list() == [True, True]
    # two separate 2-h spells are not a >= 3 h requirement
    s = make_study([iv(8.25, 8.25 + 2 / 24, dose=25), iv(8.75, 8.75 + 2 / 24, dose=25)])
    assert day_inputs(s, 8)["high_dose"] is False


# --------------------------------------------------------------------------------------------------
# oxygen: FiO2 0.39 / 0.40, device without FiO2, ventilation


@pytest.mark.parametrize("fio2, lee, penn, mskcc", [(0.39, 2, 3, 2), (0.40, 3, 3, 3)])
def test_fio2_cutoff(fio2, lee, penn, mskcc):
    s = make_study([iv(8, 8, category="oxygen", agent=None, o2_device="face_mask", fio2=fio2)])
    g = exact(s)
    assert (g["lee2014"], g["cartox"], g["penn"], g["mskcc"]) == (lee, lee, penn, mskcc)


def test_oxygen_without_fio2_is_a_range():
    s = make_study([iv(8, 8, category="oxygen", agent=None, o2_device="nasal_cannula", o2_flow_lpm=2)])
    g = subject_grades(s)
    assert g["lee2014"] == (None, 2, 3) and g["cartox"] == (None, 2, 3) and g["mskcc"] == (None, 2, 3)
    assert g["penn"] == (3, 3, 3)  # Penn: any supplemental oxygen, FiO2 not needed
    x = derive_crs_cross_scale(s, organ_grades=NO_ORGAN_TOX, options=ABSENT)
    assert any("FiO2" in m for m in x["crs_lee2014_missing"][0])


def test_ventilator_support_levels():
    s = make_study([iv(8, 8, category="oxygen", agent=None, o2_device="mechanical_ventilation", fio2=0.5)])
    assert exact(s) == {"lee2014": 4, "penn": 4, "cartox": 4, "mskcc": 4}
    cpap = make_study([iv(8, 8, category="oxygen", agent=None, o2_device="cpap", fio2=0.3)])
    assert exact(cpap) == {"lee2014": 2, "penn": 3, "cartox": 2, "mskcc": 2}
    opt = CrsLegacyOptions(scale_params={"lee2014": {"ventilation_min_level": 1}})
    assert subject_grades(cpap, options=opt)["lee2014"] == (4, 4, 4)


# --------------------------------------------------------------------------------------------------
# vasopressor duration (MSKCC), number of agents, vasopressin


@pytest.mark.parametrize("hours, mskcc", [(23.9, 2), (24.0, 3)])
def test_mskcc_24_hours(hours, mskcc):
    s = make_study([iv(8.25, 8.25 + hours / 24, dose=4)])
    assert exact(s)["mskcc"] == mskcc
    inp = derive_crs_daily_inputs(s)
    assert inp["vaso_episode_hours_max"].max() == pytest.approx(hours)


def test_mskcc_episode_is_cumulative_across_agents_and_days():
    # norepinephrine 20 h then epinephrine 6 h without a gap: one 26-h episode
    s = make_study([iv(8.5, 8.5 + 20 / 24, dose=4), iv(8.5 + 20 / 24, 8.5 + 26 / 24, agent="epinephrine", dose=2)])
    assert exact(s, options=NOT_REFRACTORY)["mskcc"] == 3
    # with a 1-h gap the episodes are separate (20 h and 6 h) unless episode_gap_hours allows it
    s = make_study([iv(8.5, 8.5 + 20 / 24, dose=4), iv(8.5 + 21 / 24, 8.5 + 27 / 24, agent="epinephrine", dose=2)])
    assert exact(s, options=NOT_REFRACTORY)["mskcc"] == 2
    assert exact(s, options=CrsLegacyOptions(episode_gap_hours=1.0, assume_life_threatening_hypotension=False))["mskcc"] == 3


def test_single_versus_multiple_low_dose_vasopressors():
    single = make_study([iv(8, 10, dose=4)])
    assert exact(single) == {"lee2014": 2, "penn": 3, "cartox": 2, "mskcc": 3}
    multiple = make_study([iv(8, 10, dose=4), iv(9, 9, agent="epinephrine", dose=2)])
    assert exact(multiple, options=NOT_REFRACTORY) == {"lee2014": 3, "penn": 3, "cartox": 3, "mskcc": 3}  # NE-eq 6: not high dose
    assert subject_grades(multiple)["cartox"] == (None, 3, 4)  # life-threatening hypotension not recorded (s34)


def test_vasopressin_handling():
    s = make_study([iv(8, 10, dose=5), iv(9, 9, agent="vasopressin", dose=0.03, dose_unit="U/min")])
    r = day_inputs(s, 9)
    assert (r["n_vasopressors"], r["n_vasopressors_excl_vasopressin"]) == (2, 1)
    assert r["high_dose"] is False  # vasopressin + NE-eq 5 < 10
    # Lee 2014 / CARTOX text: "multiple vasopressors" (no vasopressin exclusion) by default
    assert exact(s, options=NOT_REFRACTORY)["lee2014"] == 3 and exact(s, options=NOT_REFRACTORY)["penn"] == 3
    opt = CrsLegacyOptions(scale_params={s_: {"multiple_count_feature": "n_vasopressors_excl_vasopressin"}
                                         for s_ in ("lee2014", "cartox")})
    g = exact(s, options=opt)
    assert g["lee2014"] == 2 and g["cartox"] == 2
    # vasopressin + NE 10 ug/min is high dose -> Penn 4; MSKCC 2-4 since session 33 (MSKCC G4
    # "hypotension refractory to high-dose vasopressors": refractoriness is not recorded)
    s = make_study([iv(8, 10, dose=10), iv(8, 10, agent="vasopressin", dose=0.03, dose_unit="U/min")])
    assert exact(s, options=NOT_REFRACTORY)["penn"] == 4
    assert subject_grades(s)["mskcc"][2] == 4


# --------------------------------------------------------------------------------------------------
# missing inputs give ranges, never a guess


def test_missing_dose_gives_range():
    s = make_study([iv(8, 10)])  # dose not recorded
    g = subject_grades(s)
    assert g["lee2014"] == (None, 2, 3) and g["cartox"] == (None, 2, 4)
    # MSKCC: 3 days of vasopressors (>= 24 h) is 3 whatever the dose; high dose is possible and
    # refractoriness unknown, so 4 is possible (session 33; (3, 3, 3) before)
    assert g["penn"] == (None, 3, 4) and g["mskcc"] == (None, 3, 4)
    assert subject_grades(s, options=NOT_REFRACTORY)["mskcc"] == (3, 3, 3)
    x = derive_crs_cross_scale(s, organ_grades=NO_ORGAN_TOX, options=ABSENT).row(0, named=True)
    assert "vasopressor dose" in x["crs_penn_missing"]
    assert x["crs_grade_penn"] is None


def test_missing_weight_gives_range():
    s = make_study([iv(8, 10, dose=0.5, dose_unit="ug/kg/min")], weight=None)
    g = subject_grades(s)
    assert g["penn"] == (None, 3, 4)
    x = derive_crs_cross_scale(s, organ_grades=NO_ORGAN_TOX, options=ABSENT).row(0, named=True)
    assert any("weight" in m for m in x["crs_penn_missing"])


def test_missing_end_day_gives_duration_range():
    s = make_study([iv(8, None, dose=4)])
    g = subject_grades(s)
    assert g["mskcc"] == (None, 2, 3)
    missing = derive_crs_cross_scale(s, organ_grades=NO_ORGAN_TOX, options=ABSENT)["crs_mskcc_missing"][0]
    assert any("duration" in m for m in missing)
    # whole-day records: one calendar day may be anything up to 24 h unless read as full days
    s = make_study([iv(8, 8, dose=4)])
    assert subject_grades(s)["mskcc"] == (None, 2, 3)
    assert subject_grades(s, options=CrsLegacyOptions(day_precision="full_days"))["mskcc"] == (3, 3, 3)


def test_missing_organ_grades_give_range_and_supplied_grades_settle_it():
    s = make_study([iv(8, 10, dose=4)])
    g = subject_grades(s, organ_grades=None)
    assert g["lee2014"] == (None, 2, 4) and g["cartox"] == (None, 2, 4)
    assert g["mskcc"] == (3, 3, 3)  # MSKCC does not use organ toxicity
    x = derive_crs_cross_scale(s).row(0, named=True)
    assert "organ toxicity grades (organ_grades not supplied)" in x["crs_lee2014_missing"]


def test_missing_temperature_leaves_crs_presence_unknown():
    s = make_study([iv(8, 10, dose=4)], temp_days=set())
    g = subject_grades(s)
    assert g["lee2014"] == (None, 0, 2) and g["mskcc"] == (None, 0, 3)


def test_hospitalization_unknown_unless_given():
    s = make_study([])  # fever only
    g = subject_grades(s)
    assert g["penn"] == (None, 1, 2) and g["lee2014"] == (1, 1, 1)
    hosp = pl.DataFrame({"subject_id": ["S1"] * 15, "day": [float(d) for d in range(15)], "hospitalized": [True] * 15})
    x = derive_crs_cross_scale(s, organ_grades=NO_ORGAN_TOX, hospitalization=hosp, options=ABSENT).row(0, named=True)
    assert x["crs_grade_penn"] == 2
    assert subject_grades(s, options=CrsLegacyOptions(assume_hospitalized=False))["penn"] == (1, 1, 1)


# --------------------------------------------------------------------------------------------------
# indication filtering, gate, organ toxicity, coagulopathy, death


def test_indication_filtering():
    s = make_study([iv(8, 10, dose=4, indication="infection")])
    assert day_inputs(s, 9)["n_vasopressors"] == 0
    assert subject_grades(s)["lee2014"] == (1, 1, 1)
    opt = CrsLegacyOptions(counted_indications=("CRS", "infection"))
    assert exact(s, options=opt)["lee2014"] == 2
    # empty indication counts by default, not when switched off
    s = make_study([iv(8, 10, dose=4, indication=None)])
    assert day_inputs(s, 9)["n_vasopressors"] == 1
    assert day_inputs(s, 9, options=CrsLegacyOptions(count_empty_indication=False))["n_vasopressors"] == 0


def test_fever_gate_and_waiver():
    # vasopressor on afebrile days without anti-cytokine therapy: no CRS on those days
    s = make_study([iv(20, 22, dose=4)], days=range(25), fever_days=range(3, 6))
    g = subject_grades(s)
    assert g["lee2014"] == g["cartox"] == g["mskcc"] == (1, 1, 1)
    assert g["penn"] == (None, 1, 2)  # fever day: hospitalization for CRS unknown
    # after tocilizumab for CRS fever is no longer required
    toci = iv(4, 4, category="tocilizumab", agent="tocilizumab", dose=8, dose_unit="mg/kg")
    s = make_study([iv(20, 22, dose=4), toci], days=range(25), fever_days=range(3, 6))
    assert exact(s) == {"lee2014": 2, "penn": 3, "cartox": 2, "mskcc": 3}
    # tocilizumab given for another indication does not waive fever
    toci_inf = dict(toci, indication="infection")
    s = make_study([iv(20, 22, dose=4), toci_inf], days=range(25), fever_days=range(3, 6))
    assert subject_grades(s)["lee2014"] == (1, 1, 1)
    # the gate can be switched off per scale
    s = make_study([iv(20, 22, dose=4)], days=range(25), fever_days=range(3, 6))
    opt = CrsLegacyOptions(scale_params={"mskcc": {"gate": "none"}})
    g = subject_grades(s, options=opt)
    assert g["mskcc"] == (3, 3, 3) and g["lee2014"] == (1, 1, 1)


@pytest.mark.parametrize("rows, lee, cartox, penn", [
    ([organ(9, "ALT", 3, True)], 2, 2, 2),            # grade 3 transaminitis: "grade 2" level
    ([organ(9, "AST", 4, True)], 3, 3, 3),            # grade 4 transaminitis; Penn: grade 4 LFTs
    ([organ(9, "creatinine", 2)], 2, 2, 2),
    ([organ(9, "creatinine", 3)], 3, 3, 3),
    ([organ(9, "creatinine", 4)], 4, 4, 3),
    ([organ(9, "BILI", 1)], 1, 1, 1),
    ([organ(9, "NEUT", 4)], 1, 1, 1),                 # cytopenias are not CRS organ toxicity
])
def test_organ_toxicity_rules(rows, lee, cartox, penn):
    s = make_study([])
    og = pl.DataFrame(rows, schema=ORGAN_SCHEMA)
    g = subject_grades(s, organ_grades=og)
    assert g["lee2014"][0] == lee and g["cartox"][0] == cartox
    assert g["penn"][1] == penn
    assert g["mskcc"] == (1, 1, 1)


def test_penn_coagulopathy_products():
    s = make_study([iv(9, 9, category="other", agent="Cryoprecipitate", dose=10, dose_unit="units")])
    assert subject_grades(s)["penn"][1] == 3
    s = make_study([iv(9, 9, category="other", agent="FFP", dose=2, dose_unit="units", indication="other")])
    assert subject_grades(s)["penn"][1] == 1


def test_death_from_crs_is_grade_5_and_unattributed_death_is_a_range():
    ev = [{"subject_id": "S1", "day": 12.0, "event": "death", "attribution": "CRS"}]
    s = make_study([iv(8, 10, dose=4)], events=ev)
    assert exact(s) == {s_: 5 for s_ in SCALES}
    ev = [{"subject_id": "S1", "day": 12.0, "event": "death", "attribution": None}]
    g = subject_grades(make_study([iv(8, 10, dose=4)], events=ev))
    assert g["lee2014"] == (None, 2, 5)


# --------------------------------------------------------------------------------------------------
# research §6 worked examples on the seed course


ASTCT_SEED = pl.DataFrame({"subject_id": ["S1"], "crs_grade_astct": [3]})


def test_worked_example_a_low_dose_norepinephrine_three_days():
    s = seed_like([iv(8, 10, dose=0.08, dose_unit="ug/kg/min")])  # 4.16 ug/min
    assert exact(s) == {"lee2014": 2, "cartox": 2, "penn": 3, "mskcc": 3}
    x = derive_crs_cross_scale(s, ASTCT_SEED, NO_ORGAN_TOX, options=ABSENT).row(0, named=True)
    assert x["crs_grade_astct"] == 3
    assert x["same_grade_all_scales"] is False


def test_worked_example_b_high_dose():
    s = seed_like([iv(8, 10, dose=0.5, dose_unit="ug/kg/min")])  # 26 ug/min
    assert exact(s, options=NOT_REFRACTORY) == {"lee2014": 3, "cartox": 3, "penn": 4, "mskcc": 3}
    assert subject_grades(s)["mskcc"] == (None, 3, 4)  # refractoriness not recorded (session 33)
    r = derive_crs_cross_scale(s, organ_grades=NO_ORGAN_TOX, options=ABSENT).row(0, named=True)
    assert r["crs_penn_rule"] == "penn.g4.high_dose_vasopressor" and r["crs_penn_day"] == 9
    # the dose per kg was converted with the subject's weight: that row is evidence too
    assert {"interventions.csv:1", "subjects.csv:1"} <= set(r["crs_penn_evidence"])


def test_worked_example_c_less_than_24_hours():
    s = seed_like([iv(8.25, 8.25 + 20 / 24, dose=0.08, dose_unit="ug/kg/min")])
    assert exact(s) == {"lee2014": 2, "cartox": 2, "penn": 3, "mskcc": 2}
    s = seed_like([iv(8.25, 8.25 + 20 / 24, dose=0.5, dose_unit="ug/kg/min")])
    assert exact(s, options=NOT_REFRACTORY) == {"lee2014": 3, "cartox": 3, "penn": 4, "mskcc": 2}
    assert subject_grades(s)["mskcc"] == (None, 2, 4)  # < 24 h: 2; refractory would be 4 (session 33)


def test_worked_example_dose_missing_range_covers_both():
    s = seed_like([iv(8, 10)])
    g = subject_grades(s, options=NOT_REFRACTORY)  # the dose range alone (MSKCC's G4 range: above)
    low = exact(seed_like([iv(8, 10, dose=0.08, dose_unit="ug/kg/min")]), options=NOT_REFRACTORY)
    high = exact(seed_like([iv(8, 10, dose=0.5, dose_unit="ug/kg/min")]), options=NOT_REFRACTORY)
    for scale in SCALES:
        _, lo, hi = g[scale]
        assert lo == min(low[scale], high[scale]) and hi == max(low[scale], high[scale]), scale
    assert g["lee2014"] == (None, 2, 3) and g["penn"] == (None, 3, 4)


# --------------------------------------------------------------------------------------------------
# the built-in seed case


def _seed_organ_grades(study):
    """CTCAE v5 grades of ALT/AST/BILI/CREAT (test stand-in for the CTCAE engine; baseline normal)."""
    labs = study.observations.filter(pl.col("param").is_in(["ALT", "AST", "BILI", "CREAT"]))
    rows = []
    for r in labs.to_dicts():
        x = r["value"] / r["uln"]
        if r["param"] in ("ALT", "AST"):
            g = 4 if x > 20 else 3 if x > 5 else 2 if x > 3 else 1 if x > 1 else 0
        elif r["param"] == "BILI":
            g = 4 if x > 10 else 3 if x > 3 else 2 if x > 1.5 else 1 if x > 1 else 0
        else:
            g = 4 if x > 6 else 3 if x > 3 else 2 if x > 1.5 else 1 if x > 1 else 0
        rows.append({"subject_id": r["subject_id"], "day": r["day"], "organ": r["param"], "grade": g,
                     "is_transaminase": r["param"] in ("ALT", "AST"),
                     "evidence": [f"{r['src_file']}:{r['src_row']}"]})
    return pl.DataFrame(rows, schema={**ORGAN_SCHEMA, "evidence": pl.List(pl.String)})


@pytest.fixture(scope="module")
def seed():
    return seed_case()


def test_seed_case_inputs(seed):
    inp = derive_crs_daily_inputs(seed)
    r9 = inp.filter(pl.col("day") == 9).row(0, named=True)
    # norepinephrine 0.08 ug/kg/min x 52 kg = 4.16 ug/min: far below every high-dose cut-off
    assert r9["ne_equiv_max_ug_min"] == pytest.approx(4.16)
    assert r9["high_dose"] is False
    assert r9["vasopressor_agents"] == ["norepinephrine"] and r9["fever"] is True
    # days 8-10 recorded to the day: the infusion lasted >= 24 h (all of day 9) and <= 72 h
    r10 = inp.filter(pl.col("day") == 10).row(0, named=True)
    assert (r10["vaso_episode_hours_min"], r10["vaso_episode_hours_max"]) == (24.0, 72.0)


def test_seed_case_cross_scale_without_organ_grades(seed):
    """What the tables imply for the seed: NE low dose (4.16 ug/min), 3 calendar days (>= 24 h), one
    agent, no oxygen, fever, SBP < 90 on days 8-10.
    Lee 2014 / CARTOX: low dose of one vasopressor = grade 2, but without organ-toxicity grades a
    grade 3/4 organ toxicity cannot be excluded -> range 2-4. Penn: low-dose vasopressor = grade 3,
    not high dose so not 4, organ toxicity cannot exceed 3 on Penn -> exactly 3. MSKCC: any
    vasopressor >= 24 h = grade 3 (organ toxicity not used) -> exactly 3."""
    x = derive_crs_cross_scale(seed, pl.DataFrame({"subject_id": ["CD7-AML-001"], "crs_grade_astct": [3]}))
    r = x.row(0, named=True)
    assert (r["crs_grade_lee2014"], r["crs_grade_lee2014_min"], r["crs_grade_lee2014_max"]) == (None, 2, 4)
    assert (r["crs_grade_cartox"], r["crs_grade_cartox_min"], r["crs_grade_cartox_max"]) == (None, 2, 4)
    assert r["crs_grade_penn"] == 3 and r["crs_grade_mskcc"] == 3
    assert r["crs_penn_rule"] == "penn.g3.low_dose_vasopressor"
    assert r["crs_mskcc_rule"] == "mskcc.g3.vasopressor_ge24h"
    assert "interventions.csv:2" in r["crs_penn_evidence"]  # the norepinephrine row
    assert r["crs_lee2014_missing"] == ["organ toxicity grades (organ_grades not supplied)"]
    assert r["same_grade_all_scales"] is None  # Lee could be 3


def test_seed_case_cross_scale_with_organ_grades(seed):
    """With CTCAE grades the seed's liver toxicity is a grade-3 transaminitis (ALT ~7x ULN), which Lee
    2014 and CARTOX place at grade 2 (grade 3 needs grade 4 transaminitis), so both settle at 2 -
    research §6 'Lee/CARTOX G2 with low-dose single pressor'. ASTCT 3 vs Lee 2 -> not concordant."""
    og = _seed_organ_grades(seed)
    assert og.filter(pl.col("is_transaminase"))["grade"].max() == 3
    astct = pl.DataFrame({"subject_id": ["CD7-AML-001"], "crs_grade_astct": [3]})
    # default (last_known_within_days, 1 day): labs every day to day 14, then every second day: the day
    # before stands in for a day without labs, so every day is settled
    x = derive_crs_cross_scale(seed, astct, og)
    r = x.row(0, named=True)
    assert [r[f"crs_grade_{s}"] for s in SCALES] == [2, 3, 2, 3]
    assert r["same_grade_all_scales"] is False
    # organ_labs="same_day": the days without labs (15, 17, ...) have no CRS sign (afebrile, normal blood
    # pressure, no oxygen or vasopressor): with organ_labs_open="crs_signs" (default) they stay settled;
    # "every_crs_day" opens them too - dexamethasone for CRS from day 8 waives the fever requirement on
    # every later day, so they are CRS days whose organ toxicity is unknown: Lee/CARTOX 2-4
    strict = CrsLegacyOptions(organ_labs="same_day")
    r = derive_crs_cross_scale(seed, astct, og, options=strict).row(0, named=True)
    assert (r["crs_grade_lee2014_min"], r["crs_grade_lee2014_max"]) == (2, 2)
    every = CrsLegacyOptions(organ_labs="same_day", organ_labs_open="every_crs_day")
    r = derive_crs_cross_scale(seed, astct, og, options=every).row(0, named=True)
    assert (r["crs_grade_lee2014_min"], r["crs_grade_lee2014_max"]) == (2, 4)
    assert r["crs_lee2014_missing"] == ["no organ labs that day"]
    daily = derive_crs_legacy_daily(seed, organ_grades=og)
    d12 = daily.filter((pl.col("scale") == "lee2014") & (pl.col("day") == 12)).row(0, named=True)
    assert d12["rule"] == "lee2014.g2.organ_g2" and any(e.startswith("observations.csv:") for e in d12["evidence"])


# --------------------------------------------------------------------------------------------------
# traceability and cohort concordance


def test_daily_rows_are_traceable():
    s = make_study([iv(8, 10, dose=30)])
    d = derive_crs_legacy_daily(s, organ_grades=NO_ORGAN_TOX, options=ABSENT)
    r = d.filter((pl.col("scale") == "penn") & (pl.col("day") == 9)).row(0, named=True)
    assert r["grade"] == 4 and r["rule"] == "penn.g4.high_dose_vasopressor"
    assert "interventions.csv:1" in r["evidence"] and "subjects.csv:1" not in r["evidence"]
    assert "Penn grade 4" in r["reason"]
    assert any("refractory" in n for n in
               d.filter(pl.col("scale") == "mskcc")["not_assessed"][0])
    # afebrile day without a waiver: grade 0 with a reason
    r0 = d.filter((pl.col("scale") == "lee2014") & (pl.col("day") == 1)).row(0, named=True)
    assert r0["grade"] == 0 and "no CRS that day" in r0["reason"]


def test_grade_crs_scale_matches_daily_and_subject_summary():
    s = make_study([iv(8, 10, dose=4)])
    inp = derive_crs_daily_inputs(s, organ_grades=NO_ORGAN_TOX, options=ABSENT)
    one = grade_crs_scale(inp, "mskcc", ABSENT)
    assert one["grade"].max() == 3 and set(one["scale"]) == {"mskcc"}
    subj = derive_crs_legacy_subject(one, ["S1", "S2"])
    assert subj.filter(pl.col("subject_id") == "S1")["grade"][0] == 3
    s2 = subj.filter(pl.col("subject_id") == "S2").row(0, named=True)
    assert s2["grade"] is None and s2["grade_max"] is None and s2["missing_inputs"] == ["daily data"]


def test_cohort_concordance():
    rows = [iv(8, 10, dose=4, subject="A"), iv(8, 10, dose=30, subject="B")]
    s = make_study(rows, subjects=("A", "B", "C"), fever_days=range(0))
    s = Study("cohort", subjects=s.subjects, interventions=s.interventions,
              observations=s.observations.with_columns(
                  pl.when((pl.col("param") == "TEMP") & pl.col("subject_id").is_in(["A", "B"])
                          & pl.col("day").is_between(3, 14)).then(39.0).otherwise(pl.col("value")).alias("value")))
    astct = pl.DataFrame({"subject_id": ["A", "B", "C"], "crs_grade_astct": [3, 3, 0]})
    res = derive_crs_cross_scale_cohort(s, astct, NO_ORGAN_TOX, options=absent(NOT_REFRACTORY))
    subj = res["subjects"].sort("subject_id")
    assert subj.select([f"crs_grade_{x}" for x in SCALES]).rows() == [(2, 3, 2, 3), (3, 4, 3, 3), (0, 0, 0, 0)]
    pw = {(r["scale_a"], r["scale_b"]): r for r in res["pairwise"].to_dicts()}
    lp = pw[("lee2014", "penn")]
    assert (lp["n_evaluable"], lp["n_same"], lp["n_a_lower"], lp["n_a_higher"]) == (3, 1, 2, 0)
    assert pw[("penn", "astct")]["n_a_higher"] == 1 and pw[("mskcc", "astct")]["n_same"] == 3
    summ = dict(zip(res["summary"]["metric"], res["summary"]["value"]))
    assert summ["n_subjects"] == 3
    assert summ["prop_same_grade_all_scales"] == pytest.approx(1 / 3)       # only C (no CRS)
    assert summ["prop_presence_agree_all_scales"] == pytest.approx(1.0)
    assert not math.isnan(summ["n_presence_settled"])


def test_grading_in_subject_batches_gives_the_same_table(tmp_path):
    """derive_crs_cross_scale grades a large study batch_size subjects at a time: the result must not
    depend on it (every subject is graded on its own rows)."""
    from cartlab.datasets.synthetic import synthetic_cohort
    from cartlab.grading.crs import derive_crs_summary
    from cartlab.grading.crs_legacy import derive_crs_cross_scale, organ_grades_from_adlb
    from cartlab.grading.ctcae import derive_ctcae
    from cartlab.io import read_study

    study = read_study(synthetic_cohort(23, seed=5, out_dir=tmp_path / "c"))
    astct, organ = derive_crs_summary(study), organ_grades_from_adlb(derive_ctcae(study))
    whole = derive_crs_cross_scale(study, astct, organ, batch_size=None)
    assert whole.height == 23
    for size in (1, 5, 22):
        batched = derive_crs_cross_scale(study, astct, organ, batch_size=size)
        assert batched.equals(whole), size


def test_an_ungradable_lab_value_is_an_unknown_organ_grade_not_zero():
    """Missing is not negative: an ALT that CTCAE could not grade (no ULN; grade null in organ_grades)
    on a fever day leaves the organ-toxicity criteria open. Lee 2014 by hand (criteria/crs_lee2014.yaml):
    fever alone = grade 1; a grade 4 transaminitis or grade 3 organ toxicity would be grade 3; grade 4
    needs grade 4 toxicity other than transaminitis, which ALT cannot be -> range 1-3, ALT named.
    Graded 0 instead (before), the day was a definite grade 1."""
    s = make_study(fever_days=[5], days=range(3, 8))
    og = pl.DataFrame([organ(5, "ALT", None, transaminase=True)], schema=ORGAN_SCHEMA)
    g = subject_grades(s, organ_grades=og)
    assert g["lee2014"] == (None, 1, 3)
    inp = day_inputs(s, 5, organ_grades=og, options=ABSENT)
    assert inp["organ_grade_max_transaminase"] is None and inp["organ_grade_max_non_transaminase"] == 0
    assert any("CTCAE grade of ALT (not gradable" in r for r in inp["unknown_reasons"])
    # a known grade 4 cannot be raised: the same day with a graded grade-4 creatinine is definite (Lee 4)
    og4 = pl.DataFrame([organ(5, "ALT", None, transaminase=True), organ(5, "CREAT", 4)], schema=ORGAN_SCHEMA)
    assert subject_grades(s, organ_grades=og4)["lee2014"] == (4, 4, 4)
