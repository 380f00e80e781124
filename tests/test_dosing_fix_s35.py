"""Review 35 (dosing) fixes: paediatric renal measure (A1), BSA decimals (B1, B2), ideal/adjusted
weight (B3), mixed normalisation (B5), CLI header and help (C2, C3).

Every expected value is worked by hand in the comments (formulas: Mosteller BSA = sqrt(H x W /
3600); Cockcroft-Gault = (140 - age) x W / (72 x Scr) x 0.85 if F; bedside Schwartz = 0.413 x H /
Scr, NKF page; Devine IBW = 45.5 (F) / 50 (M) + 2.3 x (H / 2.54 - 60); generic fludarabine label:
> 70 full dose, 30-70 x 0.8, < 30 withhold, per 1.73 m2). Each test fails on the code before the fix.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cartlab.protocol import DoseOptions, DosingError, Patient, body_size, dose_plan, load_protocol
from cartlab.protocol.sheet import sheet_context

KYM = load_protocol("tisagenlecleucel_ball")
AXI = load_protocol("axicabtagene_lbcl")
NCT = load_protocol("nct04762485")
ENV = {**os.environ, "COLUMNS": "250"}


def _flu(plan):
    return [r for r in plan.iter_rows(named=True) if r["agent"] == "fludarabine"]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "cartlab", "dose", *map(str, args)],
                          capture_output=True, text=True, env=ENV)


# ------------------------------------------------------------------------------- A1 paediatric
def test_a1_child_with_normal_kidneys_gets_the_full_fludarabine_dose():
    # F 4 y, 16 kg, 102 cm, Scr 0.45 mg/dL. BSA sqrt(102 x 16 / 3600) = sqrt(0.45333) = 0.6733 -> 0.67.
    # Schwartz 0.413 x 102 / 0.45 = 42.126 / 0.45 = 93.61 > 70 -> full dose 30 x 0.67 = 20.1 mg x 4 days
    # (the old default used the absolute CG (136 x 16 / 32.4) x 0.85 = 57.09 -> x 0.8 = 16.08 mg).
    p = Patient(16, 102, 4, "F", 0.45, "mg/dL")
    size = body_size(p, KYM)
    assert size["egfr_schwartz_ml_min_173"] == pytest.approx(0.413 * 102 / 0.45, rel=1e-9)
    flu = _flu(dose_plan(KYM, p))
    assert len(flu) == 4
    for r in flu:
        assert r["dose"] == pytest.approx(20.1) and r["factor"] == 1.0 and r["status"] == "computed"
        assert "renal_measure_under_18" in r["rule"] and r["rule"].endswith("fludarabine_label.normal")


def test_a1_child_with_moderate_impairment_gets_20_percent_cut_not_withheld():
    # Same child, Scr 0.9: Schwartz 42.126 / 0.9 = 46.81 (30-70) -> 0.8 x 20.1 = 16.08 mg
    # (old: CG 2176 / 64.8 x 0.85 = 28.54 < 30 -> WITHHOLD).
    flu = _flu(dose_plan(KYM, Patient(16, 102, 4, "F", 0.9, "mg/dL")))
    for r in flu:
        assert r["status"] == "computed" and r["dose"] == pytest.approx(16.08) and r["factor"] == 0.8
        assert "bedside Schwartz" in r["adjustment"] and "46.8" in r["adjustment"]
        assert r["rule"].endswith("fludarabine_label.moderate")


def test_a1_one_year_old():
    # M 1 y, 10 kg, 75 cm, Scr 0.3: BSA sqrt(750 / 3600) = 0.4564 -> 0.46; Schwartz 0.413 x 75 / 0.3 =
    # 103.25 -> full dose 30 x 0.46 = 13.8 mg (old: CG 139 x 10 / 21.6 = 64.35 -> x 0.8 = 11.04 mg).
    for r in _flu(dose_plan(KYM, Patient(10, 75, 1, "M", 0.3, "mg/dL"))):
        assert r["dose"] == pytest.approx(13.8)


def test_a1_same_as_adults_restores_the_old_reading_and_an_explicit_measure_wins():
    child = Patient(16, 102, 4, "F", 0.45, "mg/dL")
    # same_as_adults: CG 57.09 (30-70) -> 16.08 mg, as before the fix
    old = _flu(dose_plan(KYM, child, DoseOptions(paediatric_renal_function="same_as_adults")))
    assert all(r["dose"] == pytest.approx(16.08) for r in old)
    # an explicit --renal-function wins at every age: Scr 0.9, CG 28.54 < 30 -> withhold
    explicit = _flu(dose_plan(KYM, Patient(16, 102, 4, "F", 0.9, "mg/dL"),
                              DoseOptions(renal_function="crcl_cockcroft_gault")))
    assert all(r["status"] == "withhold" for r in explicit)
    # and the paediatric option can name another measure: CG per 1.73 m2 = 57.09 x 1.73 / 0.6733 = 146.7 -> full
    bsa173 = _flu(dose_plan(KYM, child, DoseOptions(paediatric_renal_function="crcl_cockcroft_gault_bsa")))
    assert all(r["dose"] == pytest.approx(20.1) for r in bsa173)


def test_a1_switch_is_at_18_years():
    # F 160 cm, 50 kg, Scr 1.0: BSA sqrt(8000 / 3600) = 1.4907 -> 1.49; full dose 30 x 1.49 = 44.7 mg.
    # 18 y: adult CG (122 x 50 / 72) x 0.85 = 72.01 > 70 -> 44.7 mg.
    # 17.99 y: Schwartz 0.413 x 160 / 1.0 = 66.08 (30-70) -> 44.7 x 0.8 = 35.76 mg.
    adult = _flu(dose_plan(KYM, Patient(50, 160, 18, "F", 1.0, "mg/dL")))
    child = _flu(dose_plan(KYM, Patient(50, 160, 17.99, "F", 1.0, "mg/dL")))
    assert adult[0]["dose"] == pytest.approx(44.7) and "renal_measure_under_18" not in adult[0]["rule"]
    assert child[0]["dose"] == pytest.approx(35.76)


def test_a1_unknown_age_is_not_evaluable_naming_the_age():
    # without the age neither the measure (child or adult) nor CG is known: not evaluable, needs age
    flu = _flu(dose_plan(KYM, Patient(16, 102, None, "F", 0.45, "mg/dL")))
    for r in flu:
        assert r["status"] == "not_evaluable" and r["dose"] is None and "age" in r["needs"].split(", ")
        assert "depends on the age" in r["adjustment"] and "under 18 years" in r["adjustment"]


def test_a1_rule_is_data_with_status_convention_and_the_formula_is_cited():
    from cartlab.criteria import rule_status
    from cartlab.protocol.formulas import egfr_bedside_schwartz, formula_info

    assert rule_status("renal_measure_under_18") == "convention"
    assert "J Am Soc Nephrol 2009" in formula_info("bedside_schwartz")["citation"]
    # NKF worked example style: 100 cm, Scr 0.5 -> 0.413 x 100 / 0.5 = 82.6
    assert egfr_bedside_schwartz(100, 0.5) == pytest.approx(82.6, rel=1e-12)


def test_a1_seed_plan_does_not_change():
    # Seed: F 17 y, 52 kg, 160 cm, Scr 54 umol/L = 0.61086 mg/dL. BSA sqrt(160 x 52 / 3600) = 1.5202 ->
    # 1.52; Schwartz 0.413 x 160 / 0.61086 = 108.2 > 70 (as CG 123.6 was) -> fludarabine 30 x 1.52 =
    # 45.6 mg, cyclophosphamide 300 x 1.52 = 456 mg; CAR-T 5e6 x 52 = 2.6e8 split 0.2 / 0.8.
    plan = dose_plan(NCT, Patient(52, 160, 17, "F", 54, "umol/L"))
    by = {(r["agent"], r["day"]): r for r in plan.iter_rows(named=True)}
    assert by[("fludarabine", -5.0)]["dose"] == pytest.approx(45.6)
    assert by[("cyclophosphamide", -5.0)]["dose"] == pytest.approx(456.0)
    assert by[("CAR-T", 0.0)]["dose"] == pytest.approx(5.2e7) and by[("CAR-T", 2.0)]["dose"] == pytest.approx(2.08e8)
    assert "renal_measure_under_18" in by[("fludarabine", -5.0)]["rule"]  # the measure that decided


# ---------------------------------------------------------------------------------- B1, B2 BSA
def test_b2_bsa_decimals_outside_2_to_4_are_refused():
    # 55 kg, 150 cm: BSA 1.5138; 0 decimals would dose 2 m2 (+32%)
    for d in (0, 1, 5):
        with pytest.raises(DosingError, match="bsa_decimals"):
            DoseOptions(bsa_decimals=d)
    for d in (2, 3, 4, None):
        DoseOptions(bsa_decimals=d)
    out = _cli("-p", "axicabtagene_lbcl", "--weight", 55, "--height", 150, "--bsa-decimals", 0)
    assert out.returncode == 2 and "--bsa-decimals" in out.stderr and "1000" not in out.stdout


def test_b1_basis_header_and_sheet_print_the_bsa_dosed():
    # 72.9 kg, 168.1 cm: BSA sqrt(168.1 x 72.9 / 3600) = sqrt(3.404025) = 1.845 (3 decimals);
    # fludarabine 30 x 1.845 = 55.35 mg: the basis says 1.845 so 30 x 1.845 = the dose
    p = Patient(72.9, 168.1, 50, "M", 1.0, "mg/dL")
    opts = DoseOptions(bsa_decimals=3)
    size = body_size(p, AXI, opts)
    plan = dose_plan(AXI, p, opts, size=size)
    flu = _flu(plan)[0]
    assert flu["dose"] == pytest.approx(55.35) and "BSA 1.845 m2" in flu["basis"]
    assert 30 * 1.845 == pytest.approx(flu["dose"])
    ctx = sheet_context(AXI, plan, size, opts, p)
    text = repr(ctx)
    assert "1.845 m2" in text and "1.84 m2" not in text
    out = _cli("-p", "axicabtagene_lbcl", "--weight", 72.9, "--height", 168.1, "--bsa-decimals", 3)
    assert out.returncode == 0, out.stderr
    assert "BSA 1.845 m2" in out.stdout and "BSA 1.84 m2" not in out.stdout
    # unrounded: 4 decimals, not the 2-decimal "1.85"
    un = dose_plan(AXI, p, DoseOptions(bsa_decimals=None))
    assert "BSA 1.8450 m2" in _flu(un)[0]["basis"]


# ------------------------------------------------------------------------------- B3, B5 weight
def test_b3_ideal_and_adjusted_weight_never_exceed_the_actual_weight_below_obesity():
    # F 170 cm: IBW 45.5 + 2.3 x (170/2.54 - 60) = 45.5 + 2.3 x 6.9291 = 61.437 kg; 1.3 x IBW = 79.87 kg.
    # 45 kg (< IBW): ideal and adjusted both use 45 kg -> CG 80 x 45 / 72 x 0.85 = 42.5 (old: 58.0 / 51.8)
    for basis in ("ideal", "adjusted"):
        s = body_size(Patient(45, 170, 60, "F", 1.0, "mg/dL"), AXI, DoseOptions(crcl_weight=basis))
        assert s["crcl_weight_kg"] == 45 and s["crcl_ml_min"] == pytest.approx(42.5)
    # 70 kg (IBW < 70 <= 1.3 x IBW): adjusted uses IBW 61.437 (old: 61.437 + 0.4 x 8.563 = 64.86)
    s = body_size(Patient(70, 170, 60, "F", 1.0, "mg/dL"), AXI, DoseOptions(crcl_weight="adjusted"))
    assert s["crcl_weight_kg"] == pytest.approx(61.437, abs=1e-3)
    # 100 kg (> 79.87): adjusted 61.437 + 0.4 x 38.563 = 76.862 kg -> CG 80 x 76.862 / 72 x 0.85 = 72.59
    s = body_size(Patient(100, 170, 60, "F", 1.0, "mg/dL"), AXI, DoseOptions(crcl_weight="adjusted"))
    assert s["crcl_weight_kg"] == pytest.approx(76.862, abs=1e-3) and s["crcl_ml_min"] == pytest.approx(72.59, abs=0.01)


def test_b5_per_173_crcl_with_ideal_weight_is_refused():
    from pydantic import ValidationError

    from cartlab.protocol.schema import DosingRules

    p = Patient(45, 170, 60, "F", 1.0, "mg/dL")
    with pytest.raises(DosingError, match="crcl_cockcroft_gault_bsa.*ideal"):
        dose_plan(AXI, p, DoseOptions(renal_function="crcl_cockcroft_gault_bsa", crcl_weight="ideal"))
    with pytest.raises(ValidationError, match="mixed normalisation"):
        DosingRules(renal_function="crcl_cockcroft_gault_bsa", crcl_weight="adjusted")


# ------------------------------------------------------------------------------------ C2, C3
def test_c2_header_names_the_measure_that_decided_and_c3_help():
    # child Scr 0.9: Schwartz 46.81 decides (the header used to show only CG 28.5 and CKD-EPI)
    out = _cli("-p", "tisagenlecleucel_ball", "--weight", 16, "--height", 102, "--age", 4, "--sex", "F",
               "--creatinine", 0.9, "mg/dL")
    assert out.returncode == 0, out.stderr
    assert "renal rule uses eGFR (bedside Schwartz) 46.8 mL/min/1.73 m2" in out.stdout
    helptext = _cli("--help").stdout
    assert "--paediatric-renal-function" in helptext and "nucleated" in helptext


# ------------------------------------------------------------------------------------- B4 cap
CAPPED_BSA = """\
schema: cartlab-protocol/1
id: bsa-cap-test
title: BSA cap test
version: "1"
citation: unit test
source: reconstructed
dosing: {bsa_cap_m2: 2.0}
lymphodepletion:
  - {agent: fludarabine, dose: 30, unit: mg/m2, days: [-3], citation: test}
car_t:
  product: test
  bands:
    - {unit: cells, target: 1.0e8, max: 2.0e8, citation: test}
  infusions:
    - {day: 0, fraction: 1}
  citation: test
"""


def test_b4_plan_to_doses_keeps_a_capped_bsa_as_absolute_mg():
    import polars as pl

    from cartlab.model import Study
    from cartlab.protocol import derive_deviations, parse_protocol
    from cartlab.protocol.dosing import plan_to_doses
    from protocol_helpers import frame

    # 130 kg, 190 cm: BSA sqrt(190 x 130 / 3600) = sqrt(6.8611) = 2.6194 -> 2.62, capped at 2.0 m2:
    # fludarabine 30 x 2.0 = 60 mg. Written as 60 mg (not "30 mg/m2", which read with the subject's own
    # BSA would be 30 x 2.62 = 78.6 mg); an uncapped 70 kg, 170 cm patient keeps mg/m2 (30).
    p = parse_protocol(CAPPED_BSA, "cap.yaml")
    big = plan_to_doses(dose_plan(p, Patient(130, 190)), "S1").filter(pl.col("agent") == "fludarabine").row(0, named=True)
    assert (big["dose"], big["unit"]) == (pytest.approx(60.0), "mg")
    small = plan_to_doses(dose_plan(p, Patient(70, 170)), "S2").filter(pl.col("agent") == "fludarabine").row(0, named=True)
    assert (small["dose"], small["unit"]) == (pytest.approx(30.0), "mg/m2")
    # the twin of the capped plan shows no dose deviation
    subj = [dict(subject_id="S1", sex="M", age_years=50.0, weight_kg=130.0, height_cm=190.0, disease="LBCL",
                 target="CD19", last_followup_day=60.0, source="synthetic")]
    st = Study(study_id="T", subjects=frame("subjects", subj), doses=plan_to_doses(dose_plan(p, Patient(130, 190)), "S1"),
               observations=frame("observations", []), events=frame("events", []))
    dv = derive_deviations(st, p)
    assert dv.filter(pl.col("category").is_in(["dose_out_of_tolerance", "wrong_day", "missed_dose"])).height == 0
