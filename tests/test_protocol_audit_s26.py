"""Fixes of the protocol-engine audit (notes/audit_protocol): every expected value is derived by hand
in the comment above it, from the formula or label text quoted, never from cartlab's output.

Sources quoted:
* Mosteller (formulas.yaml): "BSA (m2) = SQRT([Height(cm) x Weight(kg)]/ 3600)"; cartlab rounds BSA to
  2 decimals before dosing (README: "rounded to 2 decimals as printed").
* Cockcroft-Gault (formulas.yaml): "Ccr = (140 - age)(wt kg) / (72 x Scr (mg/100 ml)) (15% less in females)".
* Fludarabine injection USPI (renal_adjustment.yaml): "creatinine clearance 30 to 70 mL/min/1.73 m2
  should have a 20% dose reduction ... should not be administered to patients with severely impaired
  renal function" (CrCl < 30): 70 and 30 are inside the 20%-reduction band.
* nct04762485.yaml: "screening values: the last one from day -42 up to the first lymphodepletion day",
  screening_window [-42, -6]; fludarabine 30 mg/m2 and cyclophosphamide 300 mg/m2 days -5..-3,
  decitabine 50 mg flat days -6..-3, CAR-T 1e6/kg day 0 + 4e6/kg day 2; NCT04762485 inclusion 6
  "bilirubin <= 2.0 mg/dL" (read as <=).
* Parameter dictionary: creatinine 113.12 g/mol, bilirubin 584.66 g/mol; the study reader rounds
  converted values to 12 significant digits (cartlab.io.study_folder.SIG_DIGITS).
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from cartlab.io import read_study
from cartlab.protocol import (
    DoseOptions,
    DosingError,
    Patient,
    body_size,
    creatinine_mg_dl,
    derive_deviations,
    derive_eligibility,
    dose_plan,
    load_protocol,
    planned_doses,
    subject_patient,
)
from cartlab.protocol.formulas import crcl_cockcroft_gault

NCT = load_protocol("nct04762485")
YESCARTA = load_protocol("axicabtagene_lbcl")


def _cli(*args):
    env = {**os.environ, "COLUMNS": "220"}
    return subprocess.run([sys.executable, "-m", "cartlab", *map(str, args)], capture_output=True, text=True, env=env)


def _rows(plan: pl.DataFrame, agent: str) -> list[dict]:
    return plan.filter(pl.col("agent") == agent).to_dicts()


def _study(tmp_path: Path, subjects: list[dict], observations: list[dict] = (), doses: list[dict] = ()) -> Path:
    """A study folder written as CSV (read back by the real reader, with its unit conversion and
    12-significant-digit rounding)."""
    def write(name: str, header: list[str], rows) -> None:
        with open(tmp_path / name, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=header)
            w.writeheader()
            w.writerows(rows)

    write("subjects.csv", ["subject_id", "sex", "age_years", "weight_kg", "height_cm", "disease", "target",
                           "last_followup_day"], subjects)
    write("observations.csv", ["subject_id", "day", "param", "analyte", "value", "unit", "uln"], observations)
    write("doses.csv", ["subject_id", "day", "agent", "dose", "unit"], doses)
    write("events.csv", ["subject_id", "day", "event", "detail"], [])
    return tmp_path


def _given(sid: str, flu: float = 30.0) -> list[dict]:
    """The nct04762485 schedule as given: decitabine 50 mg d-6..-3, fludarabine ``flu`` mg/m2 and
    cyclophosphamide 300 mg/m2 d-5..-3, CAR-T 1e6/kg d0 and 4e6/kg d2."""
    rows = [dict(subject_id=sid, day=d, agent="decitabine", dose=50, unit="mg") for d in (-6, -5, -4, -3)]
    rows += [dict(subject_id=sid, day=d, agent="fludarabine", dose=flu, unit="mg/m2") for d in (-5, -4, -3)]
    rows += [dict(subject_id=sid, day=d, agent="cyclophosphamide", dose=300, unit="mg/m2") for d in (-5, -4, -3)]
    rows += [dict(subject_id=sid, day=0, agent="CAR-T", dose=1e6, unit="cells/kg"),
             dict(subject_id=sid, day=2, agent="CAR-T", dose=4e6, unit="cells/kg")]
    return rows


SUBJ = dict(disease="AML", target="CD7", last_followup_day=28)

# -------------------------------------------------------------------------------------------------
# 1. CrCl exactly at a band bound; derived quantities rounded to 12 significant digits


def test_crcl_exactly_70_gets_the_20_percent_reduction():
    # 70 y male, 72 kg, Scr 1.0 mg/dL: CrCl = (140 - 70) x 72 / (72 x 1.0) = 70 mL/min exactly, inside
    # "30 to 70" -> factor 0.8. BSA = sqrt(170 x 72 / 3600) = sqrt(3.4) = 1.8439 -> 1.84 m2;
    # fludarabine 30 x 1.84 x 0.8 = 44.16 mg; cyclophosphamide 300 x 1.84 = 552 mg.
    assert creatinine_mg_dl(1.0, "mg/dL") == 1.0  # was 0.9999999999999999 after the umol/L round trip
    p = Patient(72, 170, 70, "M", 1.0, "mg/dL")
    assert body_size(p, NCT)["crcl_ml_min"] == 70.0
    plan = dose_plan(NCT, p)
    for r in _rows(plan, "fludarabine"):
        # s33: the rule cell also names the protocol's rule and its .renal rule (convention)
        assert (r["factor"], r["rule"].split("; ")[-1], r["status"]) == (0.8, "fludarabine_label.moderate", "computed")
        assert r["dose"] == pytest.approx(44.16, rel=1e-12)
    assert [r["dose"] for r in _rows(plan, "cyclophosphamide")] == pytest.approx([552.0] * 3, rel=1e-12)


@pytest.mark.parametrize("age, factor, band", [
    (69, 1.0, "normal"),     # (140-69) x 72 / 72 = 71 > 70: full dose
    (110, 0.8, "moderate"),  # (140-110) x 72 / 72 = 30: inside "30 to 70"
    (111, None, "severe"),   # (140-111) x 72 / 72 = 29 < 30: do not administer
])
def test_crcl_band_bounds(age, factor, band):
    flu = _rows(dose_plan(NCT, Patient(72, 170, age, "M", 1.0, "mg/dL")), "fludarabine")[0]
    assert (flu["factor"], flu["rule"].split("; ")[-1]) == (factor, f"fludarabine_label.{band}")  # s33: last of the rules


def test_creatinine_round_trip_through_the_study_reader():
    # 3.0 mg/dL = 3.0 x 88.4 = 265.2 umol/L (the conventional factor, params_v1.yaml; 113.12 g/mol
    # gave 265.205091938); back: 265.2 / 88.4 = 3.0 (float noise removed by 12 significant digits);
    # 88.4 umol/L is exactly 1.0 mg/dL
    assert creatinine_mg_dl(265.2, "umol/L") == 3.0
    assert creatinine_mg_dl(88.4, "umol/L") == 1.0


def test_crcl_70_from_a_study_folder(tmp_path):
    # the same patient as above with the creatinine (1.0 mg/dL, day -10) read from a study folder:
    # stored as 88.4 umol/L (1.0 x 88.4), back to 1.0 mg/dL ->
    # CrCl 70 -> fludarabine x 0.8, 44.16 mg
    folder = _study(tmp_path, [dict(subject_id="P1", sex="M", age_years=70, weight_kg=72, height_cm=170, **SUBJ)],
                    [dict(subject_id="P1", day=-10, param="CREAT", value=1.0, unit="mg/dL")])
    plan, why = planned_doses(read_study(folder), NCT, "P1")
    assert why is None
    flu = _rows(plan, "fludarabine")
    assert [r["factor"] for r in flu] == [0.8] * 3
    assert [r["dose"] for r in flu] == pytest.approx([44.16] * 3, rel=1e-12)


def test_cli_csv_gives_44_16_without_float_noise():
    # 30 x 1.84 x 0.8 = 44.16 (the float product is 44.160000000000004): the CSV prints 44.16
    out = _cli("dose", "-p", "nct04762485", "--weight", 72, "--height", 170, "--age", 70, "--sex", "M",
               "--creatinine", "1.0", "mg/dL", "--csv")
    assert out.returncode == 0, out.stderr
    flu = [r for r in csv.DictReader(io.StringIO(out.stdout)) if r["agent"] == "fludarabine"]
    assert [r["dose"] for r in flu] == ["44.16"] * 3
    assert {r["status"] for r in flu} == {"computed"}


# -------------------------------------------------------------------------------------------------
# 2. a threshold converted into the value's unit is rounded like the value


def _bili_study(tmp_path: Path, value: float, unit: str) -> Path:
    return _study(tmp_path, [dict(subject_id="E1", sex="F", age_years=30, weight_kg=60, height_cm=165, **SUBJ)],
                  [dict(subject_id="E1", day=-10, param="BILI", value=value, unit=unit)])


@pytest.mark.parametrize("value, unit, status", [
    (2.0, "mg/dL", "pass"),    # 2.0 mg/dL <= 2.0 mg/dL: both sides 20 / 584.66 x 1000 = 34.2079157117 umol/L
    (2.01, "mg/dL", "fail"),   # 2.01 > 2.0
    (34.2, "umol/L", "pass"),  # 34.2 < 34.2079
    (34.3, "umol/L", "fail"),  # 34.3 > 34.2079
])
def test_bilirubin_at_the_threshold(tmp_path, value, unit, status):
    res = derive_eligibility(read_study(_bili_study(tmp_path, value, unit)), NCT, "E1")
    r = res.filter(pl.col("criterion_id") == "bilirubin").row(0, named=True)
    assert r["status"] == status, r["reason"]
    assert "<= 2 mg/dL (= 34.21 umol/L)" in r["reason"]


# -------------------------------------------------------------------------------------------------
# 3. a missing renal input is not normal renal function


@pytest.mark.parametrize("patient, missing", [
    (Patient(72, 170, 70, "M"), "creatinine"),                    # no creatinine
    (Patient(72, 170, 70, None, 1.0, "mg/dL"), "sex"),            # Cockcroft-Gault has a sex factor
    (Patient(72, 170, None, "M", 1.0, "mg/dL"), "age"),           # (140 - age) needs the age
])
def test_fludarabine_not_evaluable_without_a_renal_input(patient, missing):
    # CrCl cannot be computed, so the label's band (full / x0.8 / withhold) is unknown: no dose
    plan = dose_plan(NCT, patient)
    for r in _rows(plan, "fludarabine"):
        assert r["dose"] is None and r["factor"] is None
        assert r["status"] == "not_evaluable" and r["needs"] == missing
        assert r["adjustment"].startswith("NOT EVALUABLE: fludarabine_label needs CrCl")
    # agents without a renal rule are still dosed: cyclophosphamide 300 x 1.84 = 552 mg
    assert [r["dose"] for r in _rows(plan, "cyclophosphamide")] == pytest.approx([552.0] * 3)


def test_cli_names_the_missing_input_in_the_dose_column():
    out = _cli("dose", "-p", "nct04762485", "--weight", 72, "--height", 170, "--age", 70, "--sex", "M")
    assert out.returncode == 0, out.stderr
    assert "not evaluable (needs creatinine)" in " ".join(out.stdout.split())
    assert "55.2" not in out.stdout  # the full dose 30 x 1.84 is not offered as the dose


def test_deviations_without_creatinine_are_not_checkable(tmp_path):
    # fludarabine given at 24 mg/m2 (30 x 0.8) without a creatinine: it is right if CrCl is 30-70,
    # 20% low if CrCl > 70, given although withheld if CrCl < 30 -> not checkable, naming creatinine
    folder = _study(tmp_path, [dict(subject_id="D2", sex="M", age_years=50, weight_kg=80, height_cm=180, **SUBJ)],
                    doses=_given("D2", flu=24))
    res = derive_deviations(read_study(folder), NCT)
    doses = res.filter(pl.col("category") != "missed_monitoring")
    assert doses.select("category", "item").rows() == [("not_checkable", "fludarabine")]
    r = doses.row(0, named=True)
    assert "needs creatinine" in r["detail"] and "days -42 to -6" in r["detail"]
    assert len(r["evidence"]) == 3


# -------------------------------------------------------------------------------------------------
# 4. the screening creatinine lies in the screening window


def _creat_study(tmp_path: Path, days: list[float]) -> Path:
    # 60 y male, 70 kg, 175 cm; creatinine 3.0 mg/dL (CrCl (140-60) x 70 / (72 x 3) = 25.9: withhold)
    # and 1.0 mg/dL (CrCl 80 x 70 / 72 = 77.8: full dose) on the given days, in that order
    obs = [dict(subject_id="D4", day=d, param="CREAT", value=v, unit="mg/dL") for d, v in zip(days, (3.0, 1.0))]
    return _study(tmp_path, [dict(subject_id="D4", sex="M", age_years=60, weight_kg=70, height_cm=175, **SUBJ)],
                  obs, _given("D4"))


def test_stale_creatinine_is_not_used(tmp_path):
    # only a day -60 value: before the window [-42, -6] -> renal function not assessable
    study = read_study(_creat_study(tmp_path, [-60]))
    patient, _ = subject_patient(study, NCT, "D4")
    assert patient.creatinine is None and "day -60" in patient.creatinine_note
    plan, _ = planned_doses(study, NCT, "D4")
    assert {r["status"] for r in _rows(plan, "fludarabine")} == {"not_evaluable"}
    # deviations: not checkable, not three "given although the plan withholds it"
    res = derive_deviations(study, NCT).filter(pl.col("category") != "missed_monitoring")
    assert res.select("category", "item").rows() == [("not_checkable", "fludarabine")]


@pytest.mark.parametrize("days, used_day, factor", [
    ([-43, -42], -42, 1.0),   # day -42 is the window's first day (inclusive): 1.0 mg/dL -> CrCl 77.8, full
    ([-42, -43], -42, None),  # the day -42 value (3.0 mg/dL) is used, not the older day -43 one: withhold
    ([-7, -6], -6, 1.0),      # day -6 = first lymphodepletion day (inclusive): the latest, 1.0 mg/dL
    ([-6, -5], -6, None),     # day -5 is after the first lymphodepletion day: day -6 (3.0 mg/dL) used
])
def test_screening_creatinine_window_bounds(tmp_path, days, used_day, factor):
    study = read_study(_creat_study(tmp_path, days))
    patient, _ = subject_patient(study, NCT, "D4")
    assert patient.creatinine_day == used_day
    plan, _ = planned_doses(study, NCT, "D4")
    assert _rows(plan, "fludarabine")[0]["factor"] == factor


def test_dose_header_names_the_creatinine_day(tmp_path):
    folder = _creat_study(tmp_path, [-60, -10])  # 1.0 mg/dL on day -10
    out = _cli("dose", "-p", "nct04762485", "--subject", "D4", "--study", folder)
    assert out.returncode == 0, out.stderr
    assert "on day -10" in out.stderr and "(creatinine of day -10)" in " ".join(out.stdout.split())


# -------------------------------------------------------------------------------------------------
# 5. a missing height or weight makes only the doses that need it not evaluable


def test_no_height_only_bsa_doses_are_not_evaluable():
    # 72 kg, no height: decitabine 50 mg flat; CAR-T 1e6 x 72 = 7.2e7 (day 0) and 4e6 x 72 = 2.88e8
    # (day 2) cells; fludarabine and cyclophosphamide (mg/m2) need the BSA, hence the height
    plan = dose_plan(NCT, Patient(72, None, 70, "M", 1.0, "mg/dL"))
    assert [r["dose"] for r in _rows(plan, "decitabine")] == [50.0] * 4
    assert [r["dose"] for r in _rows(plan, "CAR-T")] == pytest.approx([7.2e7, 2.88e8])
    for agent in ("fludarabine", "cyclophosphamide"):
        assert {(r["status"], r["needs"], r["dose"]) for r in _rows(plan, agent)} == {("not_evaluable", "height", None)}


def test_no_weight_leaves_the_flat_doses():
    # no weight: BSA, CrCl and cells/kg all need it; only decitabine 50 mg flat is computed
    plan = dose_plan(NCT, Patient(None, 170, 70, "M", 1.0, "mg/dL"))
    assert [r["dose"] for r in _rows(plan, "decitabine")] == [50.0] * 4
    car = _rows(plan, "CAR-T")
    assert [(r["status"], r["needs"]) for r in car] == [("not_evaluable", "weight")] * 2
    assert {r["status"] for r in _rows(plan, "cyclophosphamide")} == {"not_evaluable"}


def test_nothing_to_dose_is_a_clear_error():
    # YESCARTA: cy/flu per m2 and CAR-T per kg: without a weight nothing can be dosed
    with pytest.raises(DosingError, match="no dose of axicabtagene_lbcl can be computed: .*CAR-T needs weight"):
        dose_plan(YESCARTA, Patient(None, 170, 50, "M", 1.0, "mg/dL"))


def test_deviations_without_height_check_what_they_can(tmp_path):
    # decitabine (flat) and the CAR-T (cells/kg with the weight) are checked and compliant;
    # fludarabine and cyclophosphamide (per m2) are not checkable
    folder = _study(tmp_path, [dict(subject_id="D3", sex="F", age_years=30, weight_kg=60, height_cm="", **SUBJ)],
                    [dict(subject_id="D3", day=-10, param="CREAT", value=70, unit="umol/L")], _given("D3"))
    res = derive_deviations(read_study(folder), NCT).filter(pl.col("category") != "missed_monitoring")
    assert sorted(res.select("category", "item").rows()) == [("not_checkable", "cyclophosphamide"),
                                                             ("not_checkable", "fludarabine")]
    assert all("needs height" in d for d in res["detail"])


# -------------------------------------------------------------------------------------------------
# 6. messages


def test_unitless_eligibility_reason_has_no_dangling_unit(tmp_path):
    folder = _study(tmp_path, [dict(subject_id="E1", sex="F", age_years=30, weight_kg=60, height_cm=165, **SUBJ)],
                    [dict(subject_id="E1", day=-10, param="ECOG", value=2, unit=""),
                     dict(subject_id="E1", day=-10, param="TGTBLAST", analyte="CD7", value=30, unit="%")])
    res = derive_eligibility(read_study(folder), NCT, "E1")
    by = {r["criterion_id"]: r["reason"] for r in res.iter_rows(named=True)}
    # E1 has no lymphodepletion dose: the window keeps its nominal end, and the reason says so
    nominal = "last in days -42 to -6; no lymphodepletion dose recorded: the window's nominal end"
    assert by["ecog"] == f"ECOG 2 on day -10 ({nominal}), meets <= 2"
    # same unit on both sides: no "(= 30 %)" restating the threshold
    assert by["cd7_on_blasts"] == f"TGTBLAST (CD7) 30 % on day -10 ({nominal}), does not meet > 30 %"


def test_age_zero_is_a_valid_age():
    # Cockcroft-Gault at age 0: (140 - 0) x 10 / (72 x 0.3) = 1400 / 21.6 = 64.81 mL/min
    assert crcl_cockcroft_gault(0, 10, 0.3, "M") == pytest.approx(1400 / 21.6, rel=1e-12)
    with pytest.raises(ValueError, match="age_years must be a non-negative finite number"):
        crcl_cockcroft_gault(-1, 10, 0.3, "M")
    # 10 kg, 75 cm: BSA sqrt(750 / 3600) = 0.4564 -> 0.46 m2. Review 35 A1 (deliberate change): under
    # 18 years the renal rule uses the bedside Schwartz eGFR 0.413 x 75 / 0.3 = 103.25 mL/min/1.73 m2
    # > 70 -> full dose 30 x 0.46 = 13.8 mg; the old adult reading (CrCl 64.8 -> x 0.8 = 11.04 mg) is
    # paediatric_renal_function="same_as_adults". The adult-formula caveat is given, and that the
    # Schwartz equation is validated from 1 year.
    p = Patient(10, 75, 0, "M", 0.3, "mg/dL")
    size = body_size(p, NCT)
    assert size["bsa_m2"] == 0.46 and "adults" in size["renal_caveat"] and "from 1 year" in size["renal_caveat"]
    assert _rows(dose_plan(NCT, p), "fludarabine")[0]["dose"] == pytest.approx(13.8, rel=1e-12)
    old = DoseOptions(paediatric_renal_function="same_as_adults")
    assert _rows(dose_plan(NCT, p, old), "fludarabine")[0]["dose"] == pytest.approx(11.04, rel=1e-12)
    with pytest.raises(DosingError, match="age -1 years is implausible"):
        dose_plan(NCT, Patient(10, 75, -1, "M", 0.3, "mg/dL"))


def test_an_infinite_car_t_dose_is_refused_clearly():
    import pytest

    from cartlab.protocol import load_protocol
    from cartlab.protocol.dosing import DoseOptions, DosingError, Patient, dose_plan

    with pytest.raises(DosingError, match="positive finite number of cells/kg"):
        dose_plan(load_protocol("nct04762485"), Patient(70, 170, 40, "M", 1.0, "mg/dL"),
                  DoseOptions(car_dose=float("inf")))
