"""Dosing from protocols: the seed patient's exact schedule, renal rules at their bounds, CAR-T
bands, caps and volumes, and the refusal of implausible inputs."""

from __future__ import annotations

import math

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartlab.datasets import seed_case_path
from cartlab.io import read_study
from cartlab.protocol import DoseOptions, DosingError, Patient, body_size, creatinine_mg_dl, dose_plan, load_protocol
from cartlab.protocol.dosing import renal_adjustment

NCT = load_protocol("nct04762485")
KYMRIAH = load_protocol("tisagenlecleucel_ball")
YESCARTA = load_protocol("axicabtagene_lbcl")

# The seed patient: 17-year-old female (paper); 52 kg and 160 cm are the seed case's documented,
# reconstructed weight and height (subjects.csv source_note).
SEED = Patient(weight_kg=52, height_cm=160, age_years=17, sex="F", creatinine=54, creatinine_unit="umol/L",
               subject_id="CD7-AML-001")


def test_seed_patient_gets_exactly_the_papers_schedule_and_doses():
    plan = dose_plan(NCT, SEED)
    rows = [(r["day"], r["agent"], r["protocol_dose"], r["protocol_unit"]) for r in plan.iter_rows(named=True)]
    # Cao et al. 2022: decitabine 50 mg/day d-6..-3; fludarabine 30 mg/m2/day and cyclophosphamide
    # 300 mg/m2/day d-5..-3; CAR-T 1e6/kg on day 0 and 4e6/kg on day 2 (total 5e6/kg)
    expected = [(-6.0, "decitabine", 50.0, "mg")]
    for d in (-5.0, -4.0, -3.0):
        expected += [(d, "cyclophosphamide", 300.0, "mg/m2"), (d, "decitabine", 50.0, "mg"),
                     (d, "fludarabine", 30.0, "mg/m2")]
    expected += [(0.0, "CAR-T", 1e6, "cells/kg"), (2.0, "CAR-T", 4e6, "cells/kg")]
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected):
        assert got[:2] == want[:2] and got[3] == want[3]
        assert got[2] == pytest.approx(want[2], rel=1e-12)
    car = plan.filter(pl.col("kind") == "car_t")
    assert car["protocol_dose"].sum() == pytest.approx(5e6, rel=1e-12)


def test_seed_patient_absolute_doses():
    plan = dose_plan(NCT, SEED)
    # Mosteller: sqrt(160 x 52 / 3600) = 1.52023 m2 -> 1.52 m2 (2 decimals, as printed)
    size = body_size(SEED, NCT)
    assert size["bsa_raw_m2"] == pytest.approx(math.sqrt(160 * 52 / 3600), rel=1e-12)
    assert size["bsa_m2"] == 1.52
    by = {(r["day"], r["agent"]): r for r in plan.iter_rows(named=True)}
    assert by[(-5.0, "fludarabine")]["dose"] == pytest.approx(45.6)
    assert by[(-5.0, "fludarabine")]["basis"] == "30 mg/m2 x BSA 1.52 m2 (Mosteller)"
    assert by[(-5.0, "cyclophosphamide")]["dose"] == pytest.approx(456.0)
    assert by[(-6.0, "decitabine")]["dose"] == 50.0 and by[(-6.0, "decitabine")]["basis"] == "50 mg flat"
    assert by[(0.0, "CAR-T")]["dose"] == pytest.approx(5.2e7)
    assert by[(2.0, "CAR-T")]["dose"] == pytest.approx(2.08e8)
    assert by[(0.0, "CAR-T")]["unit"] == "cells"


def test_seed_doses_csv_agrees_with_the_protocol():
    """The seed's doses.csv (the paper's values) is what the shipped protocol plans."""
    study = read_study(seed_case_path())
    r = study.subjects.row(0, named=True)
    plan = dose_plan(NCT, Patient(r["weight_kg"], r["height_cm"], r["age_years"], r["sex"]))
    planned = sorted((p["day"], p["agent"].lower(), p["protocol_dose"], p["protocol_unit"])
                     for p in plan.iter_rows(named=True))
    given = sorted((g["day"], g["agent"].lower(), g["dose"], g["unit"]) for g in study.doses.iter_rows(named=True))
    assert len(planned) == len(given)
    for p, g in zip(planned, given):
        assert p[:2] == g[:2] and p[3] == g[3] and p[2] == pytest.approx(g[2], rel=1e-12)


def test_unrounded_bsa_option_and_other_formulas():
    raw = dose_plan(NCT, SEED, DoseOptions(bsa_decimals=None))
    flu = raw.filter(pl.col("agent") == "fludarabine")["dose"][0]
    assert flu == pytest.approx(30 * math.sqrt(160 * 52 / 3600), rel=1e-12)
    dubois = dose_plan(NCT, SEED, DoseOptions(bsa_method="dubois"))
    b = dubois.filter(pl.col("agent") == "fludarabine")["basis"][0]
    assert "(Dubois)" in b
    with pytest.raises(DosingError, match="unknown BSA method"):
        dose_plan(NCT, SEED, DoseOptions(bsa_method="boyd"))


# ---- renal adjustment ---------------------------------------------------------------------------

@pytest.mark.parametrize("crcl, factor, band", [
    (120.0, 1.0, "normal"),
    (70.0001, 1.0, "normal"),
    (70.0, 0.8, "moderate"),  # "30 to 70": both ends inclusive
    (50.0, 0.8, "moderate"),
    (30.0, 0.8, "moderate"),
    (29.999, None, "severe"),
    (0.0, None, "severe"),
])
def test_fludarabine_label_bands(crcl, factor, band):
    f, b, _ = renal_adjustment("fludarabine_label", crcl)
    assert (f, b) == (factor, band)


@pytest.mark.parametrize("crcl, factor, band", [
    (80.0, 1.0, "normal"), (79.999, 0.8, "mild"), (50.0, 0.8, "mild"), (49.999, 0.6, "moderate"),
    (30.0, 0.6, "moderate"), (29.999, None, "severe"),
])
def test_fludara_brand_label_bands(crcl, factor, band):
    f, b, _ = renal_adjustment("fludara_brand_label", crcl)
    assert (f, b) == (factor, band)


def test_renal_rule_errors():
    with pytest.raises(DosingError, match="unknown renal rule"):
        renal_adjustment("nope", 50)
    with pytest.raises(DosingError, match="non-negative"):
        renal_adjustment("fludarabine_label", -1)


def test_renal_reduction_applied_from_creatinine():
    # 70 y male, 70 kg, Scr 1.6 mg/dL: CrCl = (140-70) x 70 / (72 x 1.6) = 42.5 mL/min -> 20% reduction
    p = Patient(70, 170, 70, "M", 1.6, "mg/dL")
    size = body_size(p, NCT)
    assert size["crcl_ml_min"] == pytest.approx(70 * 70 / (72 * 1.6))
    plan = dose_plan(NCT, p)
    flu = plan.filter(pl.col("agent") == "fludarabine").row(0, named=True)
    bsa = round(math.sqrt(170 * 70 / 3600), 2)
    assert flu["dose"] == pytest.approx(30 * bsa * 0.8)
    assert flu["factor"] == 0.8 and "20% dose reduction" in flu["adjustment"]
    # s33: the row names the protocol's rule, its .renal rule (convention) and the label's band
    assert flu["rule"] == ("nct04762485.lymphodepletion.fludarabine; nct04762485.lymphodepletion.fludarabine.renal; "
                           "fludarabine_label.moderate")
    cy = plan.filter(pl.col("agent") == "cyclophosphamide").row(0, named=True)
    assert cy["factor"] == 1.0 and cy["adjustment"] is None  # no renal rule for cyclophosphamide
    # switched off
    off = dose_plan(NCT, p, DoseOptions(apply_renal_adjustment=False))
    assert off.filter(pl.col("agent") == "fludarabine")["dose"][0] == pytest.approx(30 * bsa)


def test_renal_withhold_below_30():
    p = Patient(60, 165, 80, "F", 3.0, "mg/dL")  # CrCl = 60 x 60 / 216 x 0.85 = 14.2
    plan = dose_plan(NCT, p)
    flu = plan.filter(pl.col("agent") == "fludarabine")
    assert flu["dose"].is_null().all() and flu["factor"].is_null().all()
    assert "do not administer" in flu["adjustment"][0] and "WITHHOLD" in flu["basis"][0]


def test_renal_measure_can_be_egfr():
    p = Patient(70, 170, 70, "M", 1.6, "mg/dL")
    size = body_size(p, NCT)
    plan = dose_plan(NCT, p, DoseOptions(renal_function="egfr_ckd_epi_2021"))
    flu = plan.filter(pl.col("agent") == "fludarabine").row(0, named=True)
    assert f"eGFR (CKD-EPI 2021) {size['egfr_ml_min_173']:.1f}" in flu["adjustment"]


def test_renal_not_assessed_without_creatinine():
    from dataclasses import replace

    plan = dose_plan(NCT, replace(SEED, creatinine=None, creatinine_unit=None))
    flu = plan.filter(pl.col("agent") == "fludarabine").row(0, named=True)
    assert flu["factor"] is None and flu["dose"] is None and flu["status"] == "not_evaluable"
    assert flu["needs"] == "creatinine" and flu["adjustment"].startswith("NOT EVALUABLE")


def test_creatinine_unit_conversion():
    # creatinine 113.12 g/mol: 1 mg/dL = 88.4 umol/L
    assert creatinine_mg_dl(88.4, "umol/L") == pytest.approx(1.0, rel=2e-3)
    assert creatinine_mg_dl(1.0, "mg/dL") == pytest.approx(1.0)
    assert creatinine_mg_dl(10, "mg/L") == pytest.approx(1.0)
    a = body_size(Patient(70, 170, 60, "M", 1.0, "mg/dL"), NCT)["crcl_ml_min"]
    b = body_size(Patient(70, 170, 60, "M", 88.42, "µmol/L"), NCT)["crcl_ml_min"]
    assert a == pytest.approx(b, rel=2e-3)


# ---- CAR-T bands, caps, volume ------------------------------------------------------------------

def test_kymriah_weight_bands_and_range():
    at50 = dose_plan(KYMRIAH, Patient(50, 160, 20, "F"))
    car = at50.filter(pl.col("kind") == "car_t").row(0, named=True)
    # "50 kg or less": 0.2-5.0e6/kg x 50 kg
    assert car["protocol_unit"] == "cells/kg" and car["dose"] is None
    assert car["dose_min"] == pytest.approx(0.2e6 * 50) and car["dose_max"] == pytest.approx(5.0e6 * 50)
    above = dose_plan(KYMRIAH, Patient(50.1, 160, 20, "F")).filter(pl.col("kind") == "car_t").row(0, named=True)
    # "more than 50 kg": 0.1-2.5e8 flat
    assert above["protocol_unit"] == "cells"
    assert (above["dose_min"], above["dose_max"]) == pytest.approx((0.1e8, 2.5e8))
    chosen = dose_plan(KYMRIAH, Patient(30, 130, 10, "F"), DoseOptions(car_dose=3e6))
    assert chosen.filter(pl.col("kind") == "car_t")["dose"][0] == pytest.approx(9e7)
    ld = {r["agent"]: r for r in chosen.filter(pl.col("kind") == "lymphodepletion").iter_rows(named=True)}
    assert ld["fludarabine"]["protocol_dose"] == 30 and ld["cyclophosphamide"]["protocol_dose"] == 500


def test_car_dose_outside_the_protocol_is_refused():
    with pytest.raises(DosingError, match="above the protocol's maximum"):
        dose_plan(NCT, SEED, DoseOptions(car_dose=10.5e6))
    with pytest.raises(DosingError, match="below the protocol's minimum"):
        dose_plan(NCT, SEED, DoseOptions(car_dose=0.4e6))
    with pytest.raises(DosingError, match="positive"):
        dose_plan(NCT, SEED, DoseOptions(car_dose=-1e6))
    # the bounds themselves are allowed
    assert dose_plan(NCT, SEED, DoseOptions(car_dose=10e6)).filter(pl.col("kind") == "car_t")["dose"].sum() == \
        pytest.approx(10e6 * 52)
    assert dose_plan(NCT, SEED, DoseOptions(car_dose=0.5e6)).filter(pl.col("kind") == "car_t")["dose"].sum() == \
        pytest.approx(0.5e6 * 52)


def test_yescarta_total_cap():
    at90 = dose_plan(YESCARTA, Patient(90, 180, 50, "M")).filter(pl.col("kind") == "car_t").row(0, named=True)
    assert at90["dose"] == pytest.approx(1.8e8) and at90["adjustment"] is None
    at100 = dose_plan(YESCARTA, Patient(100, 180, 50, "M")).filter(pl.col("kind") == "car_t").row(0, named=True)
    assert at100["dose"] == pytest.approx(2.0e8) and at100["adjustment"] is None
    at120 = dose_plan(YESCARTA, Patient(120, 180, 50, "M")).filter(pl.col("kind") == "car_t").row(0, named=True)
    assert at120["dose"] == pytest.approx(2.0e8)
    assert "capped at the maximum total dose" in at120["adjustment"]


def test_infusion_volume_from_concentration_and_viability():
    opts = DoseOptions(car_dose=3e6, product_concentration=5e6, viability=0.9, car_positive=0.2)
    car = dose_plan(KYMRIAH, Patient(30, 130, 10, "F"), opts).filter(pl.col("kind") == "car_t").row(0, named=True)
    # 9e7 CAR+ viable cells / (5e6 cells/mL x 0.9 x 0.2) = 100 mL
    assert car["volume_ml"] == pytest.approx(100.0)
    assert "= 100.0 mL" in car["basis"]
    split = dose_plan(NCT, SEED, DoseOptions(product_concentration=1e7)).filter(pl.col("kind") == "car_t")
    assert split["volume_ml"].to_list() == pytest.approx([5.2, 20.8])


@pytest.mark.parametrize("kw, msg", [
    ({"viability": 92}, "fraction between 0 and 1"),
    ({"viability": 0}, "positive"),
    ({"car_positive": 1.5}, "fraction between 0 and 1"),
    ({"product_concentration": -5.0}, "positive"),
])
def test_bad_product_inputs(kw, msg):
    with pytest.raises(DosingError, match=msg):
        dose_plan(NCT, SEED, DoseOptions(**kw))


def test_bsa_cap_and_max_dose_cap():
    import yaml

    from cartlab.protocol import parse_protocol

    data = yaml.safe_load(open(NCT.path, encoding="utf-8"))
    data["dosing"]["bsa_cap_m2"] = 2.0
    data["lymphodepletion"][2]["max_dose_mg"] = 500  # cyclophosphamide
    p = parse_protocol(yaml.safe_dump(data))
    big = Patient(120, 190, 40, "M", 1.0, "mg/dL")  # CrCl 100 x 120 / 72 = 167: full dose
    size = body_size(big, p)
    assert size["bsa_raw_m2"] > 2.0 and size["bsa_m2"] == 2.0 and size["bsa_capped"]
    plan = dose_plan(p, big)
    flu = plan.filter(pl.col("agent") == "fludarabine").row(0, named=True)
    assert flu["dose"] == pytest.approx(60.0) and "capped at 2 m2" in flu["basis"]
    cy = plan.filter(pl.col("agent") == "cyclophosphamide").row(0, named=True)
    assert cy["dose"] == 500 and "capped at the protocol maximum 500 mg" in cy["adjustment"]


# ---- implausible inputs -------------------------------------------------------------------------

@pytest.mark.parametrize("patient, msg", [
    (Patient(500, 160), "weight 500 kg is implausible"),
    (Patient(-52, 160), "weight -52 kg is implausible"),
    (Patient(1.9, 50), "weight 1.9 kg is implausible"),
    (Patient(50, 20), "height 20 cm is implausible"),
    (Patient(50, 251), "height 251 cm is implausible"),
    (Patient(52, 160, age_years=130), "age 130 years is implausible"),
    (Patient(200, 120), "BMI"),
    (Patient(52, 160, 17, "X"), "sex must be F or M"),
    (Patient(52, 160, 17, "F", 54, None), "creatinine needs a unit"),
    (Patient(52, 160, 17, "F", 54, "furlongs"), "creatinine unit 'furlongs'"),
    (Patient(52, 160, 17, "F", -1, "mg/dL"), "creatinine must be positive"),
    (Patient(52, 160, 17, "F", 54, "mg/dL"), "creatinine 54 mg/dL = 54 mg/dL is implausible"),
    (Patient(float("nan"), 160), "weight must be a number"),
])
def test_implausible_inputs_are_refused(patient, msg):
    with pytest.raises(DosingError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        dose_plan(NCT, patient)


def test_plausibility_can_be_overridden_explicitly():
    with pytest.raises(DosingError):
        dose_plan(NCT, Patient(320, 200))
    plan = dose_plan(NCT, Patient(320, 200), DoseOptions(plausibility={"weight_kg": {"high": 350}}))
    assert plan.height == 12


def test_child_renal_formula_caveat():
    size = body_size(Patient(30, 130, 10, "F", 0.5, "mg/dL"), NCT)
    assert size["renal_caveat"] and "adults" in size["renal_caveat"]
    assert body_size(Patient(70, 170, 40, "F", 0.8, "mg/dL"), NCT)["renal_caveat"] is None


# ---- properties ---------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(weight=st.floats(20, 150), height=st.floats(120, 205))
def test_property_doses_scale_with_body_size(weight, height):
    bmi = weight / (height / 100) ** 2
    if not 8 <= bmi <= 80:
        return
    p = Patient(weight, height)
    plan = dose_plan(NCT, p, DoseOptions(apply_renal_adjustment=False))  # no creatinine: renal rule off
    bsa = round(math.sqrt(weight * height / 3600), 2)
    for r in plan.iter_rows(named=True):
        if r["protocol_unit"] == "mg/m2":
            assert r["dose"] == pytest.approx(r["protocol_dose"] * bsa, rel=1e-12)
        elif r["protocol_unit"] == "mg":
            assert r["dose"] == r["protocol_dose"]
    car = plan.filter(pl.col("kind") == "car_t")
    # each fraction's dose is stored at 12 significant digits (session 29: no float noise in
    # dose_plan.csv), at most 5e-12 relative apart from the exact product; the sum of two likewise
    assert car["dose"].sum() == pytest.approx(5e6 * weight, rel=1e-11)


def test_plan_to_doses_gives_canonical_rows_for_a_simulated_patient():
    from cartlab.model import DOSES
    from cartlab.protocol import plan_to_doses

    plan = dose_plan(NCT, Patient(70, 170, 70, "M", 1.6, "mg/dL"))
    doses = plan_to_doses(plan, "SIM-1")
    assert list(doses.columns) == list(DOSES)
    assert doses.height == 12 and set(doses["source"]) == {"synthetic"}
    flu = doses.filter(pl.col("agent") == "fludarabine")
    assert flu["dose"].to_list() == pytest.approx([24.0] * 3) and set(flu["unit"]) == {"mg/m2"}  # 30 x 0.8
    car = doses.filter(pl.col("agent") == "CAR-T")
    assert car["dose"].to_list() == pytest.approx([1e6, 4e6]) and set(car["unit"]) == {"cells/kg"}
    withheld = plan_to_doses(dose_plan(NCT, Patient(60, 165, 80, "F", 3.0, "mg/dL")), "SIM-2")
    assert "fludarabine" not in withheld["agent"].to_list()
