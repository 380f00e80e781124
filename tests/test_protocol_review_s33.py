"""Fixes of review 33 (protocol and dosing engine, /work/notes/review33_protocol/REPORT.md).

Every expected value is derived by hand in the comment beside it (sources: the Yescarta USPI §2 cap,
the fludarabine labels' CrCl bands, Devine IBW as given by clincalc.com / PMC4411565, the Kymriah
USPI 2-14 day window, the Kymriah USPI / EU SmPC age wording); none is copied from cartlab's output.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from cartlab.criteria.status import rule_status
from cartlab.model import Study
from cartlab.protocol import derive_deviations, derive_eligibility, load_protocol, parse_protocol
from cartlab.protocol import dosing as D
from cartlab.protocol.dosing import DoseOptions, DosingError, Patient, body_size, dose_plan, plan_to_doses
from protocol_helpers import frame

YE = load_protocol("axicabtagene_lbcl")
KY = load_protocol("tisagenlecleucel_ball")
NCT = load_protocol("nct04762485")


def _study(subjects, doses=(), obs=(), doses_source="observed"):
    return Study(study_id="T", subjects=frame("subjects", subjects),
                 doses=frame("doses", list(doses), source=doses_source) if doses else frame("doses", []),
                 observations=frame("observations", list(obs)), events=frame("events", []))


def _agent(plan, agent):
    return plan.filter(pl.col("agent") == agent).to_dicts()


# ---------------------------------------------------------------------------------------------- A1
def test_a1_capped_car_t_dose_is_recorded_as_planned():
    # Yescarta USPI §2: 2e6 cells/kg, maximum 2e8 cells. 130 kg: 2e6 x 130 = 2.6e8 > 2e8 -> 2e8 cells,
    # i.e. factor 2e8 / 2.6e8 = 10/13 and 2e8 / 130 = 1.5384615e6 cells/kg
    pt = Patient(weight_kg=130, height_cm=185, age_years=50, sex="M", creatinine=80, creatinine_unit="umol/L")
    plan = dose_plan(YE, pt)
    car = _agent(plan, "CAR-T")[0]
    assert car["dose"] == pytest.approx(2e8, rel=1e-12)
    assert car["factor"] == pytest.approx(10 / 13, rel=1e-11)
    doses = plan_to_doses(plan, "S1")
    row = doses.filter(pl.col("agent") == "CAR-T").row(0, named=True)
    assert row["unit"] == "cells/kg"
    assert row["dose"] == pytest.approx(2e8 / 130, rel=1e-11)
    assert row["dose"] * 130 == pytest.approx(2e8, rel=1e-11)


def test_a1_twin_of_a_capped_plan_shows_no_deviation():
    pt = Patient(weight_kg=130, height_cm=185, age_years=50, sex="M", creatinine=80, creatinine_unit="umol/L")
    subj = [dict(subject_id="S1", sex="M", age_years=50.0, weight_kg=130.0, height_cm=185.0, disease="LBCL",
                 target="CD19", last_followup_day=60.0, source="synthetic")]
    obs = [dict(subject_id="S1", day=-7.0, param="CREAT", value=80.0, unit="umol/L", source="synthetic")]
    st = Study(study_id="T", subjects=frame("subjects", subj), doses=plan_to_doses(dose_plan(YE, pt), "S1"),
               observations=frame("observations", obs), events=frame("events", []))
    dv = derive_deviations(st, YE)
    assert dv.filter(pl.col("category").is_in(["dose_out_of_tolerance", "wrong_day", "missed_dose"])).height == 0


def _one_agent_protocol(pid: str, title: str, ld_agent: str) -> str:
    """A minimal protocol: one lymphodepletion agent line (``ld_agent``) and a flat CAR-T band."""
    return f"""\
schema: cartlab-protocol/1
id: {pid}
title: {title}
version: "1"
citation: unit test
source: reconstructed
lymphodepletion:
  - {ld_agent}
car_t:
  product: test
  bands:
    - {{unit: cells, target: 1.0e8, max: 2.0e8, citation: test}}
  infusions:
    - {{day: 0, fraction: 1}}
  citation: test
"""


CAPPED = _one_agent_protocol("cap-test", "cap test", "{agent: cyclophosphamide, dose: 500, unit: mg/m2, days: [-3], "
                                                  "max_dose_mg: 800, citation: test}")


def test_a1_ld_max_dose_cap_sets_the_factor():
    # BSA sqrt(180 x 90 / 3600) = sqrt(4.5) = 2.1213 -> 2.12 m2; 500 x 2.12 = 1060 mg > cap 800 mg:
    # factor 800/1060, and the canonical dose is 500 x 800/1060 = 377.358 mg/m2 (x 2.12 = 800 mg)
    p = parse_protocol(CAPPED, "cap.yaml")
    plan = dose_plan(p, Patient(weight_kg=90, height_cm=180))
    cy = _agent(plan, "cyclophosphamide")[0]
    assert cy["dose"] == 800 and cy["factor"] == pytest.approx(800 / 1060, rel=1e-11)
    d = plan_to_doses(plan, "X").filter(pl.col("agent") == "cyclophosphamide")["dose"][0]
    assert d == pytest.approx(500 * 800 / 1060, rel=1e-11)


# ---------------------------------------------------------------------------------------------- C1
def test_c1_crcl_near_a_bound_prints_enough_digits():
    # M 50 y 72 kg Scr 3.004 mg/dL: CrCl = 90 x 72 / (72 x 3.004) = 29.9600 < 30 -> withhold;
    # "30.0" would contradict "below 30"
    plan = dose_plan(YE, Patient(72, 175, 50, "M", 3.004, "mg/dL"))
    flu = _agent(plan, "fludarabine")[0]
    assert flu["status"] == "withhold"
    assert "29.96 mL/min" in flu["adjustment"] and "30.0 mL/min" not in flu["adjustment"]


@pytest.mark.parametrize("value, text", [
    (29.96, "29.96"),    # 1 decimal "30.0" lies in the 30-70 band, the value below it
    (30.0, "30.0"),      # on the bound: 1 decimal is exact
    (70.04, "70.04"),    # "70.0" is in 30-70 (inclusive), the value above it
    (69.96, "69.96"),    # "70.0" would print the bound itself
    (55.55, "55.5"),     # far from a bound: 1 decimal (binary 55.55 is below ...55, so .5)
])
def test_c1_renal_value_text(value, text):
    assert D.renal_value_text(value, ["fludarabine_label"]) == text


# ---------------------------------------------------------------------------------------------- C6
def test_c6_age_over_139_is_a_dosing_error():
    with pytest.raises(DosingError, match="below 140"):
        body_size(Patient(72, 175, 150, "M", 1.0, "mg/dL"), YE, DoseOptions(plausibility={"age_years": {"high": 160}}))


# ---------------------------------------------------------------------------------------------- C2-C5
def test_c2_renal_rule_application_is_a_convention_on_the_row():
    # M 70 y 70 kg Scr 1.6: CrCl 70 x 70 / (72 x 1.6) = 42.5 -> fludarabine_label.moderate
    flu = _agent(dose_plan(NCT, Patient(70, 170, 70, "M", 1.6, "mg/dL")), "fludarabine")[0]
    rules = flu["rule"].split("; ")
    assert rules == ["nct04762485.lymphodepletion.fludarabine", "nct04762485.lymphodepletion.fludarabine.renal",
                     "fludarabine_label.moderate"]
    assert rule_status("nct04762485.lymphodepletion.fludarabine.renal") == "convention"
    assert rule_status("fludarabine_label.moderate") == "verified_secondary"  # the label's own status
    for p in (YE, KY):
        assert rule_status(f"{p.id}.lymphodepletion.fludarabine.renal") == "convention"


def test_c3_kymriah_days_are_a_placement():
    assert rule_status("tisagenlecleucel_ball.lymphodepletion.fludarabine.days") == "convention"
    assert rule_status("tisagenlecleucel_ball.lymphodepletion.cyclophosphamide.days") == "convention"
    # last dose day -3 -> infusion (day 0) 3 days after completion
    assert max(d for a in KY.lymphodepletion for d in a.days) == -3
    assert "3 days after completion" in KY.note and "2 days after its completion" not in KY.note


def test_c4_tolerance_rows_name_the_tolerance_rule():
    # Yescarta, 70 kg: planned 2e6/kg; given 1.5e6/kg = -25% beyond the default +/-20%
    subj = [dict(subject_id="S1", sex="M", age_years=50.0, weight_kg=70.0, height_cm=175.0, disease="LBCL",
                 target="CD19", last_followup_day=30.0, source="synthetic")]
    doses = [dict(subject_id="S1", day=0.0, agent="CAR-T", dose=1.5e6, unit="cells/kg")]
    dv = derive_deviations(_study(subj, doses), YE)
    r = dv.filter(pl.col("category") == "dose_out_of_tolerance").row(0, named=True)
    assert r["difference_pct"] == pytest.approx(-25.0)
    assert r["rule"] == "axicabtagene_lbcl.car_t; axicabtagene_lbcl.tolerances"
    assert rule_status("axicabtagene_lbcl.tolerances") == "convention"
    assert rule_status("nct04762485.tolerances") == "convention"


BRAND = _one_agent_protocol("brand-test", "brand rule test", "{agent: fludarabine, dose: 25, unit: mg/m2, days: [-3], "
                                                       "renal_adjustment: fludara_brand_label, citation: test}")


def test_c5_measure_override_of_a_cockcroft_gault_rule_warns():
    p = parse_protocol(BRAND, "brand.yaml")
    pt = Patient(70, 170, 40, "F", 0.7, "mg/dL")  # CrCl 100 x 70 x 0.85 / (72 x 0.7) = 118 -> full dose
    assert _agent(dose_plan(p, pt), "fludarabine")[0]["adjustment"] is None
    flu = _agent(dose_plan(p, pt, DoseOptions(renal_function="egfr_ckd_epi_2021")), "fludarabine")[0]
    assert flu["adjustment"].startswith("WARNING") or "WARNING: fludara_brand_label" in flu["adjustment"]


# ---------------------------------------------------------------------------------------------- B1
def test_b1_crcl_normalised_to_1_73_m2():
    # M 60 y 110 kg 185 cm Scr 1.6: CrCl 80 x 110 / (72 x 1.6) = 76.389 mL/min (full dose by default);
    # BSA sqrt(185 x 110 / 3600) = 2.37756 (2.38 rounded); 76.389 x 1.73 / 2.37756 = 55.58 -> 30-70: x 0.8
    pt = Patient(110, 185, 60, "M", 1.6, "mg/dL")
    size = body_size(pt, YE)
    assert size["crcl_ml_min_173"] == pytest.approx(80 * 110 / (72 * 1.6) * 1.73 / math.sqrt(185 * 110 / 3600),
                                                    rel=1e-10)
    default = _agent(dose_plan(YE, pt), "fludarabine")[0]
    assert default["dose"] == pytest.approx(30 * 2.38)  # 71.4: the documented default (absolute CrCl)
    norm = _agent(dose_plan(YE, pt, DoseOptions(renal_function="crcl_cockcroft_gault_bsa")), "fludarabine")[0]
    assert norm["factor"] == 0.8 and norm["dose"] == pytest.approx(30 * 2.38 * 0.8)  # 57.12 mg


# ---------------------------------------------------------------------------------------------- B2
@pytest.mark.parametrize("basis, weight, factor", [
    # M 40 y 120 kg 175 cm Scr 1.6. Devine IBW = 50 + 2.3 x (175/2.54 - 60) = 70.4646 kg;
    # adjusted = 70.4646 + 0.4 x (120 - 70.4646) = 90.2787 kg. CrCl = 100 x W / (72 x 1.6)
    ("actual", 120.0, 1.0),       # 104.2 -> full
    ("ideal", 70.46456693, 0.8),  # 61.2 -> x 0.8
    ("adjusted", 90.27874016, 1.0),  # 78.4 -> full
])
def test_b2_cockcroft_gault_weight(basis, weight, factor):
    pt = Patient(120, 175, 40, "M", 1.6, "mg/dL")
    opts = DoseOptions(crcl_weight=basis)
    size = body_size(pt, YE, opts)
    assert size["crcl_weight_kg"] == pytest.approx(weight, rel=1e-9)
    assert size["crcl_ml_min"] == pytest.approx(100 * weight / (72 * 1.6), rel=1e-9)
    assert _agent(dose_plan(YE, pt, opts), "fludarabine")[0]["factor"] == factor


def test_b2_ideal_weight_below_60_inches_uses_actual_weight():
    size = body_size(Patient(50, 150, 40, "F", 1.0, "mg/dL"), YE, DoseOptions(crcl_weight="ideal"))
    assert size["crcl_weight_kg"] == 50 and "not defined below 152.4 cm" in size["crcl_weight_note"]


# ---------------------------------------------------------------------------------------------- B3
@pytest.mark.parametrize("h, w, bsa", [
    (162.5, 58.5, 1.63),  # sqrt(162.5 x 58.5 / 3600) = sqrt(2.640625) = 1.625 exactly -> half up 1.63
    (168.1, 72.9, 1.85),  # sqrt(168.1 x 72.9 / 3600) = sqrt(3.404025) = 1.845 exactly -> 1.85
])
def test_b3_bsa_ties_round_half_up(h, w, bsa):
    assert body_size(Patient(w, h), YE)["bsa_m2"] == bsa
    flu = _agent(dose_plan(YE, Patient(w, h), DoseOptions(apply_renal_adjustment=False)), "fludarabine")[0]
    assert flu["dose"] == pytest.approx(30 * bsa, rel=1e-12)


def test_b3_round_half_up():
    assert D.round_half_up(1.845, 2) == 1.85 and D.round_half_up(1.8449, 2) == 1.84 and D.round_half_up(2.5, 0) == 3.0


# ---------------------------------------------------------------------------------------------- B4
def _ages(ages, disease):
    return _study([dict(subject_id=f"S{i}", sex="F", age_years=a, disease=disease, target="CD19", weight_kg=40.0,
                        height_cm=150.0) for i, a in enumerate(ages)])


def test_b4_age_limits_in_completed_years():
    # Kymriah "up to 25 years of age": 25.4 is 25 completed years -> pass; 26.0 -> fail
    e = derive_eligibility(_ages([25.4, 26.0], "B-ALL"), KY).filter(pl.col("criterion_id") == "age")
    assert e["status"].to_list() == ["pass", "fail"]
    # NCT04762485 12-65 years: 65.5 -> 65 -> pass; 11.9 -> 11 -> fail
    e = derive_eligibility(_ages([65.5, 11.9], "AML"), NCT).filter(pl.col("criterion_id") == "age")
    assert e["status"].to_list() == ["pass", "fail"]
    # the exact-age option: 25.4 > 25 -> fail
    e = derive_eligibility(_ages([25.4], "B-ALL"), KY, age_whole_years=False).filter(pl.col("criterion_id") == "age")
    assert e["status"].to_list() == ["fail"]


# ---------------------------------------------------------------------------------------------- B5
def _ky_course(flu_days, cy_days):
    subj = [dict(subject_id="S1", sex="F", age_years=12.0, weight_kg=40.0, height_cm=150.0, disease="B-ALL",
                 target="CD19", last_followup_day=60.0, source="synthetic")]
    rows = [dict(subject_id="S1", day=float(d), agent="fludarabine", dose=30.0, unit="mg/m2") for d in flu_days]
    rows += [dict(subject_id="S1", day=float(d), agent="cyclophosphamide", dose=500.0, unit="mg/m2") for d in cy_days]
    rows += [dict(subject_id="S1", day=0.0, agent="CAR-T", dose=1e6, unit="cells/kg")]
    obs = [dict(subject_id="S1", day=-10.0, param="CREAT", value=50.0, unit="umol/L", source="synthetic")]
    dv = derive_deviations(_study(subj, rows, obs), KY)
    return dv.filter(pl.col("category") != "missed_monitoring")


def test_b5_kymriah_course_inside_the_window_is_not_a_deviation():
    # completed on day -5 (5 days before the infusion): inside 2-14 days
    assert _ky_course([-8, -7, -6, -5], [-8, -7]).height == 0
    # completed on day -2, the latest the label allows
    assert _ky_course([-5, -4, -3, -2], [-5, -4]).height == 0


def test_b5_kymriah_course_outside_the_window():
    # completed on day -1: 1 day before the infusion, outside 2-14 days
    dv = _ky_course([-4, -3, -2, -1], [-4, -3])
    win = dv.filter(pl.col("rule") == "tisagenlecleucel_ball.lymphodepletion_window")
    assert win.height == 1 and win["actual_day"][0] == -1.0
    assert rule_status("tisagenlecleucel_ball.lymphodepletion_window") == "verified_secondary"


def test_b5_window_must_hold_the_listed_days():
    text = KY.model_dump_json(by_alias=True)
    import json

    data = json.loads(text)
    data["lymphodepletion_window"]["completed_days"] = [-14, -4]  # the listed days end on day -3
    import yaml

    with pytest.raises(Exception, match="outside completed_days"):
        parse_protocol(yaml.safe_dump(data), "ky.yaml")


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_dose_prints_the_crcl_digits_and_takes_the_new_options():
    env = {**os.environ, "COLUMNS": "220"}
    out = subprocess.run([sys.executable, "-m", "cartlab", "dose", "-p", "axicabtagene_lbcl", "--weight", "72",
                          "--height", "175", "--age", "50", "--sex", "M", "--creatinine", "3.004", "mg/dL"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "CrCl 29.96 mL/min" in out.stdout and "CrCl 30 mL/min" not in out.stdout
    # 168.1 cm / 72.9 kg: BSA 1.845 -> 1.85 with 2 decimals; --bsa-decimals 3 -> 1.845. Review 35 B2
    # (deliberate change): --bsa-decimals 1 is refused (allowed 2-4), so the option is exercised with 3.
    # M 50 y Scr 1.0, ideal weight: Devine 50 + 2.3 x (168.1/2.54 - 60) = 64.22 kg (< 72.9 actual, so
    # the lesser is IBW); CrCl 90 x 64.22 / 72 = 80.3 -> full dose: fludarabine 30 x 1.845 = 55.35 mg,
    # cyclophosphamide 500 x 1.845 = 922.5 mg
    refused = subprocess.run([sys.executable, "-m", "cartlab", "dose", "-p", "axicabtagene_lbcl", "--weight", "72.9",
                              "--height", "168.1", "--bsa-decimals", "1"], capture_output=True, text=True, env=env)
    assert refused.returncode != 0 and "--bsa-decimals" in refused.stderr
    out = subprocess.run([sys.executable, "-m", "cartlab", "dose", "-p", "axicabtagene_lbcl", "--weight", "72.9",
                          "--height", "168.1", "--age", "50", "--sex", "M", "--creatinine", "1.0", "mg/dL",
                          "--bsa-decimals", "3", "--crcl-weight", "ideal", "--csv"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    doses = {r["agent"]: float(r["dose"]) for r in rows if r["day"] == "-5.0"}
    assert doses == {"fludarabine": pytest.approx(55.35), "cyclophosphamide": pytest.approx(922.5)}


def test_a1_twin_events_of_a_capped_plan_use_the_capped_dose():
    """Yescarta 2e6 CAR+ cells/kg, max 2e8 (USPI): at 130 kg the twin infuses 2e8 cells (2e6 x 130 =
    2.6e8 is over the cap), at 70 kg 1.4e8 (under it). Hand-derived from the label."""
    from cartlab.twin.model import Events

    ev = Events.from_protocol(load_protocol("axicabtagene_lbcl"), [130.0, 70.0])
    total = np.nansum(ev.car_t_cells, axis=1)
    assert total[0] == pytest.approx(2e8) and total[1] == pytest.approx(1.4e8)


def test_twin_of_a_protocol_without_a_target_dose_is_a_clear_error():
    """Kymriah B-ALL gives a dose range, no target (label: 0.1-2.5e8 cells above 50 kg): the twin
    cannot pick a dose and says so (it raised TypeError: NoneType * float)."""
    from cartlab.errors import InputError
    from cartlab.twin.model import Events

    with pytest.raises(InputError, match="no CAR-T target dose.*--dose-levels"):
        Events.from_protocol(load_protocol("tisagenlecleucel_ball"), [60.0])


def test_twin_dose_level_per_kg_on_a_flat_cells_band():
    """--dose-levels is per kg: Kymriah B-ALL at 60 kg (flat-cells band above 50 kg) with 2e6/kg is
    2e6 x 60 = 1.2e8 cells; at 40 kg (per-kg band) 2e6 x 40 = 8e7 (it refused 2e6 as "cells")."""
    from cartlab.twin.model import Events

    ev = Events.from_protocol(load_protocol("tisagenlecleucel_ball"), [60.0, 40.0], car_dose_per_kg=2e6)
    total = np.nansum(ev.car_t_cells, axis=1)
    assert total[0] == pytest.approx(1.2e8) and total[1] == pytest.approx(8e7)
