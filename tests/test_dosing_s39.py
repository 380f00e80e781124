"""Review 39 (dosing and lymphodepletion, third pass): censored and same-day screening creatinines,
the sheet's renal measure, reconstructed CAR-T labels, traceable plan inputs, dose options on
analyze, body size from observations, units on --weight/--height, half-up printed doses.

Expected values are derived by hand from the formulas' published text (Mosteller BSA =
sqrt(height_cm x weight_kg / 3600); bedside Schwartz eGFR = 0.413 x height_cm / Scr mg/dL; creatinine
umol/L / 88.4 = mg/dL; the generic fludarabine label: > 70 full dose, 30-70 x 0.8, < 30 withhold) and
the seed case (F, 17 y, 52 kg, 160 cm, creatinine 54 umol/L on day -6, observations.csv row 25).
"""

from __future__ import annotations

import csv
import shutil
from importlib import resources

import pytest

from cartlab.io.study_folder import read_study
from cartlab.protocol import DoseOptions, body_size, dose_plan, load_protocol, planned_doses, subject_patient
from cartlab.protocol.dose_inputs import parse_quantity
from cartlab.protocol.options import ProtocolOptions
from cartlab.protocol.sheet import format_dose, sheet_context

SID = "CD7-AML-001"


def _seed(tmp_path, *, add=(), censor_day6=None, blank_size=False):
    """A copy of the seed case with hand edits; returns (folder, the 1-based data row numbers of the
    added observation rows, counted from the file as written: header = line 1, first data row = 1)."""
    src = resources.files("cartlab.datasets").joinpath("seed_case")
    folder = tmp_path / "study"
    shutil.copytree(str(src), folder)
    if blank_size:
        p = folder / "subjects.csv"
        rows = list(csv.DictReader(p.open()))
        rows[0]["weight_kg"] = rows[0]["height_cm"] = ""
        with p.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    p = folder / "observations.csv"
    rows = list(csv.DictReader(p.open()))
    fields = list(rows[0])
    if censor_day6 is not None:
        for r in rows:
            if r["param"] == "CREAT" and r["day"] == "-6.0":
                r["value"], r["value_text"] = "", censor_day6
    added = []
    for day, param, value, unit in add:
        rows.append({**{k: "" for k in fields}, "subject_id": SID, "day": day, "param": param, "value": value,
                     "unit": unit, "source": "paper"})
        added.append(len(rows))
    with p.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return folder, added


def _plan(folder, options=None):
    study = read_study(folder)
    plan, why = planned_doses(study, load_protocol("nct04762485"), SID, options)
    assert plan is not None, why
    return plan


def _flu(plan):
    return plan.filter(plan["agent"] == "fludarabine").row(0, named=True)


# ---- A1: a censored screening creatinine is a bound, never skipped for an older value ----------

def test_a1_censored_creatinine_below_decides_full_dose_not_the_older_value(tmp_path):
    # day -6 "<20" umol/L (the latest), day -10 150 umol/L (older). By hand: < 20/88.4 = 0.2262 mg/dL,
    # Schwartz > 0.413*160/0.2262 = 292 -> above 70 whatever the value: full dose 30 x 1.52 = 45.6 mg.
    # (The old code skipped the censored row and used day -10: 0.413*160/(150/88.4) = 38.9 -> 36.48 mg.)
    folder, _ = _seed(tmp_path, add=[("-10.0", "CREAT", "150", "umol/L")], censor_day6="<20")
    flu = _flu(_plan(folder))
    assert flu["status"] == "computed" and flu["dose"] == pytest.approx(45.6)
    assert "observations.csv:25" in flu["evidence"]  # the day -6 row, not the day -10 one
    assert "censored" in flu["renal_basis"] and "<20" in flu["renal_basis"] and "> 292" in flu["renal_basis"]


def test_a1_censored_creatinine_spanning_two_bands_is_not_evaluable_naming_the_row(tmp_path):
    # "<150" umol/L: at 150 Schwartz = 38.9 (30-70 band), below it up to any value (> 70 band):
    # the band is not decided -> not evaluable, naming the censored row.
    folder, _ = _seed(tmp_path, censor_day6="<150")
    flu = _flu(_plan(folder))
    assert flu["status"] == "not_evaluable" and flu["dose"] is None
    assert "<150" in flu["adjustment"] and "observations.csv:25" in flu["adjustment"]


# ---- B9: two untimed creatinines of one day ----------------------------------------------------

def test_b9_same_day_creatinines_in_different_bands_are_not_evaluable_naming_both_rows(tmp_path):
    # 54 umol/L -> Schwartz 108.2 (full dose, 45.6 mg); 150 umol/L -> 38.9 (x 0.8 = 36.48 mg): no order
    folder, added = _seed(tmp_path, add=[("-6.0", "CREAT", "150", "umol/L")])
    flu = _flu(_plan(folder))
    assert flu["status"] == "not_evaluable" and flu["dose"] is None
    assert "observations.csv:25" in flu["adjustment"] and f"observations.csv:{added[0]}" in flu["adjustment"]
    assert "45.6 mg" in flu["adjustment"] and "36.48 mg" in flu["adjustment"]


def test_b9_same_day_creatinines_in_one_band_give_that_band_naming_both_rows(tmp_path):
    # 54 and 60 umol/L: Schwartz 108.2 and 0.413*160/(60/88.4) = 97.4, both > 70: full dose 45.6 mg
    folder, added = _seed(tmp_path, add=[("-6.0", "CREAT", "60", "umol/L")])
    flu = _flu(_plan(folder))
    assert flu["status"] == "computed" and flu["dose"] == pytest.approx(45.6)
    assert {"observations.csv:25", f"observations.csv:{added[0]}"} <= set(flu["evidence"])


# ---- B8: the sheet names the measure used -----------------------------------------------------

def _seed_patient_plan(options=DoseOptions()):
    from cartlab.protocol import Patient

    p = load_protocol("nct04762485")
    pt = Patient(weight_kg=52, height_cm=160, age_years=17, sex="F", creatinine=54, creatinine_unit="umol/L")
    size = body_size(pt, p, options)
    return p, pt, size, dose_plan(p, pt, options, size=size)


def test_b8_sheet_renal_measure_is_the_paediatric_one_for_a_17_year_old():
    p, pt, size, plan = _seed_patient_plan()
    measure = sheet_context(p, plan, size, DoseOptions(), pt)["options"]["Renal measure"]
    # age 17 < 18: bedside Schwartz 0.413*160/(54/88.4) = 108.2 decided, not Cockcroft-Gault
    assert "bedside Schwartz" in measure and "108.2" in measure and "Cockcroft" not in measure


# ---- B3: reconstructed CAR-T target/split -------------------------------------------------------

def test_b3_car_t_rows_of_a_reconstructed_target_say_so():
    _, _, _, plan = _seed_patient_plan()
    car = plan.filter(plan["kind"] == "car_t")
    assert set(car["source"]) == {"reconstructed"}
    assert all("nct04762485.car_t.range" in r and "nct04762485.car_t.split" in r for r in car["rule"])
    assert all("reconstructed" in b for b in car["basis"])
    # 5e6/kg x 52 kg = 2.6e8: 20% = 5.2e7, 80% = 2.08e8 (the numbers are unchanged)
    assert car["dose"].to_list() == pytest.approx([5.2e7, 2.08e8])


def test_b3_a_chosen_car_dose_is_not_the_reconstructed_target():
    _, _, _, plan = _seed_patient_plan(DoseOptions(car_dose=2e6))
    car = plan.filter(plan["kind"] == "car_t")
    assert all("car_t.range" not in r for r in car["rule"])  # the target is the user's, the split still not
    assert all("car_t.split" in r for r in car["rule"])


# ---- B4: the inputs of each dose ----------------------------------------------------------------

def test_b4_full_dose_row_carries_the_renal_value_measure_and_creatinine():
    _, _, _, plan = _seed_patient_plan()
    flu = _flu(plan)
    # by hand: 54/88.4 = 0.61086 mg/dL; Schwartz 0.413*160/0.61086 = 108.17; BSA sqrt(160*52/3600) = 1.52023
    assert flu["renal_measure"] == "egfr_bedside_schwartz"
    assert flu["renal_value"] == pytest.approx(108.17, abs=0.01)
    assert flu["creatinine_mg_dl"] == pytest.approx(0.61086, abs=1e-4)
    assert flu["bsa_m2"] == 1.52 and flu["bsa_raw_m2"] == pytest.approx(1.52023, abs=1e-5)
    assert flu["weight_kg"] == 52 and flu["height_cm"] == 160 and flu["bsa_method"] == "mosteller"
    assert "full dose" in flu["renal_basis"]


# ---- B5: the dose options on analyze ------------------------------------------------------------

def test_b5_protocol_options_carry_the_dose_choices():
    o = ProtocolOptions(bsa_method="dubois", crcl_weight="ideal", bsa_decimals=3,
                        paediatric_renal_function="same_as_adults", apply_renal_adjustment=False)
    d = o.dose_options()
    assert (d.bsa_method, d.crcl_weight, d.bsa_decimals, d.paediatric_renal_function,
            d.apply_renal_adjustment) == ("dubois", "ideal", 3, "same_as_adults", False)
    assert ProtocolOptions(bsa_unrounded=True).dose_options().bsa_decimals is None
    with pytest.raises(Exception, match="bsa_method"):
        ProtocolOptions(bsa_method="boyd")


def test_b5_dubois_from_the_options_changes_the_plan(tmp_path):
    # Du Bois: 0.007184 x 52^0.425 x 160^0.725 = 1.5264 -> 1.53 m2; cyclophosphamide 300 x 1.53 = 459 mg
    folder, _ = _seed(tmp_path)
    plan = _plan(folder, ProtocolOptions(bsa_method="dubois").dose_options())
    cy = plan.filter(plan["agent"] == "cyclophosphamide").row(0, named=True)
    assert cy["dose"] == pytest.approx(459.0) and cy["bsa_method"] == "dubois"


# ---- B1: weight and height recorded as observations ----------------------------------------------

def test_b1_blank_subjects_size_is_taken_from_observations_in_lb_and_in(tmp_path):
    # 114.64 lb x 0.45359237 = 52.000 kg; 63 in x 2.54 = 160.02 cm; BSA sqrt(160.02*52/3600) = 1.5203 -> 1.52
    folder, added = _seed(tmp_path, add=[("-7.0", "WEIGHT", "114.64", "lb"), ("-7.0", "HEIGHT", "63", "in")],
                          blank_size=True)
    plan = _plan(folder)
    flu = _flu(plan)
    assert flu["dose"] == pytest.approx(45.6) and flu["bsa_m2"] == 1.52
    assert flu["weight_kg"] == pytest.approx(52.0, abs=1e-3) and flu["height_cm"] == pytest.approx(160.02)
    assert f"observations.csv:{added[0]}" in flu["evidence"] and "WEIGHT" in flu["adjustment"]
    car = plan.filter(plan["kind"] == "car_t")["dose"].to_list()
    assert car == pytest.approx([5.2e7, 2.08e8], rel=1e-4)  # 5e6/kg x 52 kg, 20% / 80%


def test_b1_subjects_weight_stays_but_a_discrepant_observation_is_a_warning(tmp_path):
    # subjects.csv 52 kg is the dosing weight; a day -6 WEIGHT of 45 kg differs by 13.5% (> 5%)
    folder, added = _seed(tmp_path, add=[("-6.0", "WEIGHT", "45", "kg")])
    study = read_study(folder)
    pt, _ = subject_patient(study, load_protocol("nct04762485"), SID)
    assert pt.weight_kg == 52
    assert pt.input_warnings and "45 kg" in pt.input_warnings[0] and f"observations.csv:{added[0]}" in pt.input_warnings[0]
    cy = _plan(folder).filter(lambda_agent("cyclophosphamide")).row(0, named=True)
    assert cy["dose"] == pytest.approx(456.0) and "WARNING" in cy["adjustment"]


def lambda_agent(name):
    import polars as pl

    return pl.col("agent") == name


# ---- B7: units on --weight / --height -----------------------------------------------------------

def test_b7_weight_and_height_take_a_unit():
    # 154 lb x 0.45359237 = 69.853 kg; 5 ft 6 in = 66 in x 2.54 = 167.64 cm; 1.68 m = 168 cm
    assert parse_quantity("154 lb", "kg", "weight")[0] == pytest.approx(69.8532, abs=1e-3)
    assert parse_quantity("5 ft 6 in", "cm", "height")[0] == pytest.approx(167.64)
    assert parse_quantity("1.68m", "cm", "height")[0] == pytest.approx(168.0)
    v, note = parse_quantity("70", "kg", "weight")
    assert v == 70 and note == "kg (assumed: no unit given)"
    with pytest.raises(ValueError):
        parse_quantity("70 mmol", "kg", "weight")


# ---- B2: printed doses round half up ---------------------------------------------------------------

@pytest.mark.parametrize("dose, text", [(20.25, "20.3"), (55.35, "55.4"), (130.25, "130.3"), (45.6, "45.6")])
def test_b2_printed_doses_round_half_up(dose, text):
    # decimal half up: 20.25 -> 20.3 (binary f"{20.25:.1f}" gives "20.2"), 130.25 -> 130.3
    assert format_dose(dose, "mg") == text


def test_b7_dose_command_reads_pounds_and_says_when_it_assumed_kg():
    import subprocess
    import sys

    base = [sys.executable, "-m", "cartlab", "dose", "-p", "nct04762485", "--age", "17", "--sex", "F",
            "--creatinine", "54", "umol/L", "--csv"]
    out = subprocess.run(base + ["--weight", "114.64 lb", "--height", "160"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # 114.64 lb = 52.000 kg -> BSA sqrt(160*52/3600) = 1.52 -> fludarabine 30 x 1.52 = 45.6 mg
    flu = [r for r in csv.DictReader(out.stdout.splitlines()) if r["agent"] == "fludarabine"][0]
    assert float(flu["dose"]) == pytest.approx(45.6)
    assert "114.64 lb" in out.stderr and "cm (assumed: no unit given)" in out.stderr
