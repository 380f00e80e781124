"""Session 37 (review s37): count recovery with transfusion-supported platelets (A1), censoring at
allo-HSCT / new therapy (B1) and death (B2); CAR-HEMATOTOX item units (B3); EASIX conversion notes (C1).

Every expected value is worked by hand from the standard's text quoted in each test (never copied
from cartlab's output). The studies are small CSV folders read by the ordinary reader."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from cartlab.grading.count_recovery import RecoveryOptions, derive_count_recovery
from cartlab.grading.hematotox import derive_car_hematotox, derive_easix
from cartlab.grading.t_icaht import derive_t_icaht
from cartlab.io import read_study

_SUBJ = ["subject_id", "sex", "age_years", "weight_kg", "height_cm", "disease", "target", "last_followup_day",
         "source", "source_note"]
_DOSE = ["subject_id", "day", "agent", "dose", "unit", "source", "source_note"]
_OBS = ["subject_id", "day", "param", "analyte", "value", "value_text", "unit", "lln", "uln", "lloq", "specimen",
        "source", "source_note"]
_IV = ["subject_id", "start_day", "end_day", "category", "agent", "dose", "dose_unit", "indication", "source",
       "source_note"]
_EV = ["subject_id", "day", "event", "detail", "attribution", "source", "source_note"]


def study(tmp_path: Path, fu, obs, iv=(), ev=(), sid="S"):
    """One subject: ``obs`` (day, param, value, unit), ``iv`` (start_day, category), ``ev`` (day, event)."""
    rows = {
        "subjects": (_SUBJ, [dict(subject_id=sid, sex="F", age_years=50, weight_kg=70, height_cm=170, disease="LBCL",
                                  target="CD19", last_followup_day="" if fu is None else fu, source="paper",
                                  source_note="")]),
        "doses": (_DOSE, [dict(subject_id=sid, day=d, agent=a, dose=x, unit=u, source="paper", source_note="")
                          for d, a, x, u in [(0, "CAR-T", 1e8, "cells")]
                          + [(d, "fludarabine", 30, "mg/m2") for d in (-5, -4, -3)]]),
        "observations": (_OBS, [dict(subject_id=sid, day=d, param=p, analyte="", value=v, value_text="", unit=u,
                                     lln="", uln="", lloq="", specimen="PB", source="paper", source_note="")
                                for d, p, v, u in obs]),
        "interventions": (_IV, [dict(subject_id=sid, start_day=d, end_day="", category=c, agent="", dose="",
                                     dose_unit="", indication="", source="paper", source_note="") for d, c in iv]),
        "events": (_EV, [dict(subject_id=sid, day=d, event=e, detail="", attribution="", source="paper",
                              source_note="") for d, e in ev]),
    }
    for name, (cols, data) in rows.items():
        with open(tmp_path / f"{name}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(data)
    return read_study(tmp_path)


def rec(s, **opt) -> dict:
    return derive_count_recovery(s, RecoveryOptions(**opt) if opt else None).row(0, named=True)


# ---------------------------------------------------------------------------------------------
# A1: platelets at the level only with transfusions are not "never below"

TX = [(d, "platelet_transfusion") for d in (-1, 2, 5, 8, 11)]


def test_transfusion_supported_platelets_recover_on_the_first_transfusion_free_run(tmp_path):
    """ASTCT (PMC11161398 Table 1): "the first of 3 consecutive days with a platelet count of
    20,000/uL or higher in the absence of platelet transfusion for 7 consecutive days". PLT 25 x10^9/L
    on days 0-30, platelet transfusions on days -1, 2, 5, 8, 11: a day d qualifies when d, d+1, d+2
    are >= 20 and no transfusion falls in d-7..d+2; the last transfusion (day 11) needs d - 7 > 11,
    so d = 19 (19-7 = 12 > 11). The old code said "not applicable: never below 20"."""
    s = study(tmp_path, 30, [(-2, "PLAT", 15, "10^9/L")] + [(d, "PLAT", 25, "10^9/L") for d in range(31)], TX)
    r = rec(s)
    assert (r["platelet_recovery_status"], r["platelet_recovery_day"]) == ("recovered", 19.0)
    assert "recovery.platelet_transfusion_supported" in r["platelet_recovery_rule"]
    assert "-1, 2, 5, 8, 11" in r["platelet_recovery_reason"]
    assert any(e.startswith("interventions.csv:") for e in r["platelet_recovery_evidence"])
    # T-ICAHT of the same subject counts PLT < 20 on days 0-18 (transfused days below 20): the last
    # such day + 1 is the recovery day, the two engines agree
    t = derive_t_icaht(s).row(0, named=True)
    assert (t["plt_lt_20_start"], t["plt_lt_20_end"]) == (0, 18)
    # the option's other reading: the count as measured (cartlab before 0.37)
    assert rec(s, transfusion_supported="as_measured")["platelet_recovery_status"] == "not_applicable"


def test_transfusion_supported_platelets_whose_data_end_before_the_run_are_not_reached(tmp_path):
    """As above, data to day 20 (last_followup_day 20): the first transfusion-free run is days
    19, 20, 21, and day 21 is after the data -> not reached, censored at day 20 (last_followup_day)."""
    s = study(tmp_path, 20, [(d, "PLAT", 25, "10^9/L") for d in range(21)], TX)
    r = rec(s)
    assert (r["platelet_recovery_status"], r["platelet_recovery_day"]) == ("not_reached", None)
    assert (r["platelet_recovery_censor_day"], r["platelet_recovery_censor_reason"]) == (20.0, "last_followup_day")


def test_a_transfusion_after_the_first_run_leaves_never_below(tmp_path):
    """PLT 25 on days 0-20, one transfusion on day 10: the run from day 0 (days 0-2, no transfusion in
    days -7..2) meets the ASTCT rule, so the own count was never below 20: not applicable."""
    s = study(tmp_path, 20, [(d, "PLAT", 25, "10^9/L") for d in range(21)], [(10, "platelet_transfusion")])
    assert rec(s)["platelet_recovery_status"] == "not_applicable"


# ---------------------------------------------------------------------------------------------
# B1 / B2: the recovery window ends at allo-HSCT, new therapy, death

ALLO_OBS = [(d, "NEUT", 0.1, "10^9/L") for d in range(31)] + [(d, "NEUT", 1.0, "10^9/L") for d in range(45, 51)]


@pytest.mark.parametrize("event", ["allo_hsct", "new_therapy"])
def test_recovery_after_a_transplant_or_new_therapy_is_not_credited(tmp_path, event):
    """T-ICAHT (Rejeski 2025) Table 1 footnote: "censoring at the time of disease progression,
    subsequent line of therapy, or death"; Jain et al. Blood Adv 2020 assess recovery in patients who
    had not received additional therapy. ANC 0.1 on days 0-30, the event on day 31, ANC 1.0 on days
    45-50: no run of 3 days >= 0.5 before day 31 -> not reached, censored at day 31 (the event)."""
    s = study(tmp_path, 60, ALLO_OBS, ev=[(31, event)])
    r = rec(s)
    assert (r["neutrophil_recovery_status"], r["neutrophil_recovery_day"]) == ("not_reached", None)
    assert (r["neutrophil_recovery_censor_day"], r["neutrophil_recovery_censor_reason"]) == (31.0, event)
    assert f"censored at day 31 ({event} on day 31" in r["neutrophil_recovery_reason"]
    assert "recovery.censor_event" in r["neutrophil_recovery_rule"]
    assert "events.csv:1" in r["neutrophil_recovery_evidence"]
    # option censor_events=(): every value counts (days 31-44 unmeasured, the run 45-47 complete)
    r = rec(s, censor_events=())
    assert (r["neutrophil_recovery_status"], r["neutrophil_recovery_day_min"], r["neutrophil_recovery_day_max"]) == (
        "not_evaluable", 31.0, 45.0)


def test_a_recovery_before_the_event_stands_and_a_bridging_therapy_ends_nothing(tmp_path):
    """ANC 0.1 on days 0-10, 1.0 on days 11-30, allo-HSCT on day 31: ANC >= 0.5 on days 11, 12, 13 ->
    recovered on day 11. A new_therapy on day -10 (bridging, before the infusion) ends nothing."""
    obs = [(d, "NEUT", 0.1 if d <= 10 else 1.0, "10^9/L") for d in range(31)]
    r = rec(study(tmp_path, 60, obs, ev=[(-10, "new_therapy"), (31, "allo_hsct")]))
    assert (r["neutrophil_recovery_status"], r["neutrophil_recovery_day"], r["neutrophil_recovery_censor_reason"]) == (
        "recovered", 11.0, None)


def test_death_is_named_as_the_censoring_reason(tmp_path):
    """ANC 0.1 on days 0-15, death on day 15, no last_followup_day: not reached, censored at day 15,
    and the reason is death (study-format spec: "the censoring reason says so"), not the latest row."""
    s = study(tmp_path, None, [(d, "NEUT", 0.1, "10^9/L") for d in range(16)], ev=[(15, "death")])
    r = rec(s)
    assert (r["neutrophil_recovery_censor_day"], r["neutrophil_recovery_censor_reason"]) == (15.0, "death")
    assert r["neutrophil_recovery_reason"].endswith("censored at day 15 (death).")


def test_without_follow_up_or_event_the_latest_row_is_the_censoring_reason(tmp_path):
    """ANC 0.1 on days 0-15, nothing else: censored at the latest row, day 15 (spec 'Follow-up for
    time-to-event endpoints')."""
    r = rec(study(tmp_path, None, [(d, "NEUT", 0.1, "10^9/L") for d in range(16)]))
    assert (r["neutrophil_recovery_censor_day"], r["neutrophil_recovery_censor_reason"]) == (15.0, "latest_row")


# ---------------------------------------------------------------------------------------------
# B3: CAR-HEMATOTOX values in named units; C1: EASIX conversion notes


def test_car_hematotox_values_are_written_with_their_units(tmp_path):
    """Hb 10 g/dL = 100 g/L (x10), CRP 50 mg/L = 5 mg/dL (/10), ANC 1.0 x10^9/L = 1000 /uL (x1000),
    ferritin 700 ug/L = 700 ng/mL, platelets 150 x10^9/L: <param>_value stays in the canonical unit,
    which <param>_value_unit names; the item's unit column holds the value in the table's unit."""
    obs = [(-6, p, v, u) for p, v, u in (("PLAT", 150, "10^9/L"), ("NEUT", 1.0, "10^9/L"), ("HGB", 10, "g/dL"),
                                         ("CRP", 50, "mg/L"), ("FERRITIN", 700, "ug/L"))]
    r = derive_car_hematotox(study(tmp_path, 60, obs)).row(0, named=True)
    assert (r["hgb_value"], r["hgb_value_unit"], r["hgb_g_dl"]) == (100.0, "g/L", 10.0)
    assert (r["crp_value"], r["crp_value_unit"], r["crp_mg_dl"]) == (50.0, "mg/L", 5.0)
    assert (r["neut_per_ul"], r["plat_1e9_l"], r["ferritin_ng_ml"]) == (1000.0, 150.0, 700.0)


def test_easix_reason_lists_the_readers_ldh_and_platelet_conversions(tmp_path):
    """LDH 5 ukat/L = 300 U/L (1 ukat/L = 60 U/L), platelets 100000 /uL = 100 x10^9/L: the reason's
    "[converted: ...]" names both; a G/L platelet count is the same number (no note)."""
    s = study(tmp_path, 60, [(-6, "LDH", 5, "ukat/L"), (-6, "CREAT", 1, "mg/dL"), (-6, "PLAT", 100000, "/uL")])
    r = derive_easix(s).row(0, named=True)
    assert r["easix"] == pytest.approx(3.0)  # 300 x 1 / 100
    assert "LDH 5 ukat/L -> 300 U/L" in r["reason"] and "PLAT 100000 /uL -> 100 10^9/L" in r["reason"]
    s = study(tmp_path, 60, [(-6, "LDH", 300, "U/L"), (-6, "CREAT", 1, "mg/dL"), (-6, "PLAT", 100, "G/L")])
    assert "[converted" not in derive_easix(s).row(0, named=True)["reason"]


def test_censor_events_must_be_events_of_the_study_format():
    # a misspelt event ("allo-hsct") would end nothing, silently: an error naming it (session 37)
    from cartlab.errors import InputError
    from cartlab.grading.count_recovery import RecoveryOptions

    assert RecoveryOptions(censor_events=("allo_hsct", "relapse")).censor_events == ("allo_hsct", "relapse")
    for bad in ("allo-hsct", "death"):
        with pytest.raises(InputError, match=f"censor_events: '{bad}'"):
            RecoveryOptions(censor_events=(bad,))


def test_a_death_after_the_end_of_follow_up_does_not_move_the_censoring(tmp_path):
    """ANC 0.1 on days 0-20, last_followup_day 20, death (or new therapy) recorded on day 200: the
    counts were followed to day 20, so the count is censored there (last_followup_day), not at day 200
    (session 37 diff review B2)."""
    obs = [(d, "NEUT", 0.1, "10^9/L") for d in range(21)]
    for event in ("death", "new_therapy"):
        (tmp_path / event).mkdir()
        r = rec(study(tmp_path / event, 20, obs, ev=[(200, event)]))
        assert (r["neutrophil_recovery_censor_day"], r["neutrophil_recovery_censor_reason"]) == (
            20.0, "last_followup_day"), event
