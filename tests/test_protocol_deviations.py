"""Protocol deviations (cartlab.protocol.deviations) category by category.

Each test builds a small in-memory study (``conform`` frames with ``src_file``/``src_row`` so that
the evidence is checked) that follows a small protocol parsed from YAML text, then breaks one thing:
a missing, late, extra or mis-dosed administration, an agent the protocol does not list, a missing
weight, a low screening creatinine clearance, a missed monitoring day. The last part runs the seed
case against the shipped protocol NCT04762485.
"""

from __future__ import annotations

import math

import polars as pl
import pytest

from cartlab.model import Study
from protocol_helpers import frame
from cartlab.protocol import DEVIATION_SCHEMA, DoseOptions, load_protocol, parse_protocol, planned_doses, derive_deviations
from cartlab.protocol.dosing import Patient, body_size

# -------------------------------------------------------------------------------------------------
# builders

LD = """\
lymphodepletion:
  - {agent: fludarabine, dose: 30, unit: mg/m2, days: [-5, -4, -3], renal_adjustment: fludarabine_label, citation: test}
  - {agent: cyclophosphamide, dose: 300, unit: mg/m2, days: [-5, -4, -3], citation: test}
"""

CAR_PER_KG = """\
car_t:
  product: test CAR-T
  bands:
    - {unit: cells/kg, target: 1.0e6, min: 0.5e6, max: 2.0e6, citation: test}
  infusions:
    - {day: 0, fraction: 1}
  citation: test
"""


def proto(ld: str = LD, car: str = CAR_PER_KG, monitoring: str = "", dose_pct: float = 10, car_pct: float = 20,
          day: float = 0):
    text = f"""\
schema: cartlab-protocol/1
id: dev-test
title: Deviation test protocol
version: "1"
citation: unit test
source: reconstructed
dosing:
  bsa_method: mosteller
  renal_function: crcl_cockcroft_gault
{ld}{car}{monitoring}tolerances:
  dose_pct: {dose_pct}
  car_t_dose_pct: {car_pct}
  day: {day}
"""
    return parse_protocol(text, "dev-test.yaml")


# 70 kg, 175 cm: Mosteller sqrt(70 x 175 / 3600) = 1.8447 -> 1.84 m2
SUBJECT = dict(subject_id="S1", sex="M", age_years=40.0, weight_kg=70.0, height_cm=175.0, disease="AML",
               target="CD7", last_followup_day=60.0, source="observed")
BSA = 1.84


def subjects(*rows: dict) -> pl.DataFrame:
    return frame("subjects", rows or ({},), **SUBJECT)


def compliant_doses(subject_id: str = "S1") -> list[dict]:
    """Exactly the protocol: fludarabine 30 mg/m2 and cyclophosphamide 300 mg/m2 on days -5..-3,
    CAR-T 1e6 cells/kg on day 0."""
    rows = []
    for d in (-5, -4, -3):
        rows.append({"subject_id": subject_id, "day": d, "agent": "fludarabine", "dose": 30.0, "unit": "mg/m2"})
        rows.append({"subject_id": subject_id, "day": d, "agent": "cyclophosphamide", "dose": 300.0, "unit": "mg/m2"})
    rows.append({"subject_id": subject_id, "day": 0, "agent": "CAR-T", "dose": 1e6, "unit": "cells/kg"})
    return rows


def doses_frame(rows: list[dict]) -> pl.DataFrame:
    return frame("doses", rows, subject_id="S1", source="observed")


def normal_creatinine(subject_id: str = "S1") -> dict:
    # 80 umol/L (0.905 mg/dL) at 40 y, 70 kg, male: CrCl ~107 mL/min -> full fludarabine dose
    return {"subject_id": subject_id, "day": -7.0, "param": "CREAT", "value": 80.0, "unit": "umol/L"}


def observations(rows: list[dict]) -> pl.DataFrame:
    return frame("observations", rows, subject_id="S1", unit=None, source="observed")


def events(rows: list[dict]) -> pl.DataFrame:
    return frame("events", rows, subject_id="S1")


def study(doses: list[dict] | None = None, obs: list[dict] | None = None, subj: pl.DataFrame | None = None,
          ev: list[dict] | None = None) -> Study:
    return Study(study_id="T", subjects=subj if subj is not None else subjects(),
                 doses=doses_frame(compliant_doses() if doses is None else doses),
                 observations=observations([normal_creatinine()] if obs is None else obs),
                 events=events(ev or []))


def devs(s: Study, p=None, options=None) -> pl.DataFrame:
    res = derive_deviations(s, p if p is not None else proto(), options)
    assert res.schema == pl.Schema(DEVIATION_SCHEMA)
    return res


def without(rows: list[dict], agent: str, day: float) -> list[dict]:
    return [r for r in rows if not (r["agent"] == agent and r["day"] == day)]


def replace(rows: list[dict], agent: str, on_day: float, **kw) -> list[dict]:
    return [{**r, **kw} if (r["agent"] == agent and r["day"] == on_day) else r for r in rows]


# -------------------------------------------------------------------------------------------------
# the baseline


def test_bsa_of_the_test_subject_is_mosteller_rounded():
    size = body_size(Patient(70.0, 175.0), proto(), DoseOptions())
    assert size["bsa_raw_m2"] == pytest.approx(math.sqrt(70 * 175 / 3600))
    assert size["bsa_m2"] == BSA


def test_compliant_study_has_no_deviation():
    res = devs(study())
    assert res.height == 0


def test_doses_in_absolute_mg_on_plan_are_compliant():
    rows = compliant_doses()
    for d in (-5, -4, -3):
        rows = replace(rows, "fludarabine", d, dose=30 * BSA, unit="mg")
        rows = replace(rows, "cyclophosphamide", d, dose=300 * BSA, unit="mg")
    assert devs(study(rows)).height == 0


def test_agent_names_are_matched_case_insensitively():
    rows = [{**r, "agent": r["agent"].upper()} for r in compliant_doses()]
    assert devs(study(rows)).height == 0


# -------------------------------------------------------------------------------------------------
# missed / wrong day / extra


def test_missing_fludarabine_dose_is_missed_dose():
    res = devs(study(without(compliant_doses(), "fludarabine", -4)))
    assert res.height == 1
    r = res.row(0, named=True)
    assert r["category"] == "missed_dose"
    assert r["item"] == "fludarabine"
    assert r["planned_day"] == -4.0
    assert r["actual_day"] is None
    assert r["rule"] == "dev-test.lymphodepletion.fludarabine"
    assert r["evidence"] == []
    assert "planned on day -4: no dose recorded" in r["detail"]


def test_all_car_t_missing_is_not_checkable():
    # review 40 A1: doses.csv with no CAR-T row for any subject: day 0 is the (unrecorded) infusion
    # (study-format "Time"; cartlab.response.infusion_evidence.infused_subjects): not checked, not missed
    rows = [r for r in compliant_doses() if r["agent"] != "CAR-T"]
    res = devs(study(rows))
    assert res.select("category", "item", "planned_day").rows() == [("not_checkable", "CAR-T", None)]
    assert res["rule"].to_list() == ["dev-test.car_t"]


def test_one_day_late_with_tolerance_zero_is_wrong_day():
    rows = replace(compliant_doses(), "fludarabine", -3, day=-2)
    res = devs(study(rows))
    assert res.height == 1
    r = res.row(0, named=True)
    assert r["category"] == "wrong_day"
    assert r["item"] == "fludarabine"
    assert (r["planned_day"], r["actual_day"]) == (-3.0, -2.0)
    fluda_row = next(i + 1 for i, x in enumerate(rows) if x["agent"] == "fludarabine" and x["day"] == -2)
    assert r["evidence"] == [f"doses.csv:{fluda_row}"]
    assert "tolerance 0 days" in r["detail"]


def test_one_day_late_within_a_day_tolerance_is_no_deviation():
    rows = replace(compliant_doses(), "fludarabine", -3, day=-2)
    assert devs(study(rows), proto(day=1)).height == 0


def test_two_days_late_beyond_a_one_day_tolerance():
    rows = replace(compliant_doses(), "cyclophosphamide", -3, day=-1)
    res = devs(study(rows), proto(day=1))
    assert res.select("category", "item", "planned_day", "actual_day").rows() == [
        ("wrong_day", "cyclophosphamide", -3.0, -1.0)]


def test_on_time_dose_is_not_taken_by_a_neighbouring_planned_day():
    # with a 1-day tolerance, the on-time day -4 dose belongs to day -4: the missed one is day -5
    rows = without(compliant_doses(), "cyclophosphamide", -5)
    res = devs(study(rows), proto(day=1))
    assert res.select("category", "item", "planned_day").rows() == [("missed_dose", "cyclophosphamide", -5.0)]


def test_late_car_t_infusion_is_wrong_day():
    rows = replace(compliant_doses(), "CAR-T", 0, day=1)
    res = devs(study(rows))
    assert res.select("category", "item", "planned_day", "actual_day").rows() == [("wrong_day", "CAR-T", 0.0, 1.0)]


def test_extra_dose():
    rows = compliant_doses() + [{"day": -2, "agent": "fludarabine", "dose": 30.0, "unit": "mg/m2"}]
    res = devs(study(rows))
    assert res.height == 1
    r = res.row(0, named=True)
    assert r["category"] == "extra_dose"
    assert r["item"] == "fludarabine"
    assert r["planned_day"] is None
    assert (r["actual_day"], r["given_dose"], r["unit"]) == (-2.0, 30.0, "mg/m2")
    assert r["evidence"] == [f"doses.csv:{len(rows)}"]
    assert "not in the protocol's schedule" in r["detail"]


def test_a_second_dose_on_the_same_day_is_extra():
    rows = compliant_doses() + [{"day": -4, "agent": "cyclophosphamide", "dose": 300.0, "unit": "mg/m2"}]
    res = devs(study(rows))
    assert res.select("category", "item", "actual_day").rows() == [("extra_dose", "cyclophosphamide", -4.0)]


def test_unplanned_agent():
    rows = compliant_doses() + [{"day": -10, "agent": "Venetoclax", "dose": 400.0, "unit": "mg"}]
    res = devs(study(rows))
    assert res.height == 1
    r = res.row(0, named=True)
    assert r["category"] == "unplanned_agent"
    assert r["item"] == "Venetoclax"
    assert (r["actual_day"], r["given_dose"], r["unit"]) == (-10.0, 400.0, "mg")
    assert r["rule"] == "dev-test.lymphodepletion"
    assert r["evidence"] == [f"doses.csv:{len(rows)}"]
    assert "not an agent of the protocol" in r["detail"]


# -------------------------------------------------------------------------------------------------
# dose within tolerance


@pytest.mark.parametrize("factor, flagged", [
    (1.15, True), (0.85, True), (1.09, False), (0.91, False), (1.10, False), (0.90, False), (1.1001, True),
])
def test_lymphodepletion_dose_tolerance(factor, flagged):
    rows = replace(compliant_doses(), "cyclophosphamide", -4, dose=300.0 * factor)
    res = devs(study(rows))
    if not flagged:
        assert res.height == 0
        return
    assert res.height == 1
    r = res.row(0, named=True)
    assert r["category"] == "dose_out_of_tolerance"
    assert r["item"] == "cyclophosphamide"
    assert (r["planned_day"], r["actual_day"]) == (-4.0, -4.0)
    assert r["planned_dose"] == pytest.approx(300.0)
    assert r["given_dose"] == pytest.approx(300.0 * factor)
    assert r["unit"] == "mg/m2"
    assert r["difference_pct"] == pytest.approx(100.0 * (factor - 1))
    assert r["rule"] == "dev-test.lymphodepletion.cyclophosphamide; dev-test.tolerances"  # s33: + the tolerance rule
    row = next(i + 1 for i, x in enumerate(rows) if x["agent"] == "cyclophosphamide" and x["day"] == -4)
    assert r["evidence"] == [f"doses.csv:{row}"]
    assert "tolerance ±10%" in r["detail"]


def test_dose_15_pct_high_with_10_pct_tolerance():
    rows = replace(compliant_doses(), "fludarabine", -5, dose=34.5)
    r = devs(study(rows)).row(0, named=True)
    assert r["category"] == "dose_out_of_tolerance"
    assert r["difference_pct"] == pytest.approx(15.0)
    assert "+15.0%" in r["detail"]
    # the protocol's tolerance is what decides
    assert devs(study(rows), proto(dose_pct=20)).height == 0


def test_dose_in_mg_compared_through_the_rounded_mosteller_bsa():
    # 52.32 kg, 160 cm: raw Mosteller BSA 1.5249, rounded 1.52 m2. 502.1 mg cyclophosphamide is
    # 330.3 mg/m2 on the rounded BSA (+10.1%, flagged) but would be 329.3 mg/m2 (+9.8%) unrounded.
    w, h = 52.32, 160.0
    raw = math.sqrt(w * h / 3600)
    assert round(raw, 2) == 1.52 and raw > 1.524
    subj = subjects({"weight_kg": w, "height_cm": h, "age_years": 30.0})
    rows = replace(compliant_doses(), "cyclophosphamide", -3, dose=502.1, unit="mg")
    res = devs(study(rows, subj=subj))
    assert res.height == 1
    r = res.row(0, named=True)
    assert r["category"] == "dose_out_of_tolerance"
    assert r["unit"] == "mg/m2"
    assert r["given_dose"] == pytest.approx(502.1 / 1.52)
    assert r["planned_dose"] == pytest.approx(300.0)
    assert r["difference_pct"] == pytest.approx(100 * (502.1 / 1.52 - 300) / 300)
    assert 100 * (502.1 / raw - 300) / 300 < 10  # unrounded it would not be flagged
    # 456 mg = 300 mg/m2 x 1.52 exactly: compliant
    ok = replace(compliant_doses(), "cyclophosphamide", -3, dose=456.0, unit="mg")
    assert devs(study(ok, subj=subj)).height == 0


def test_dose_in_mg_per_kg_compared_through_weight_and_bsa():
    # 0.8 mg/kg x 70 kg = 56 mg = 30.4 mg/m2: within 10% of 30 mg/m2; 1.0 mg/kg = 38 mg/m2: not
    ok = replace(compliant_doses(), "fludarabine", -5, dose=0.8, unit="mg/kg")
    assert devs(study(ok)).height == 0
    bad = replace(compliant_doses(), "fludarabine", -5, dose=1.0, unit="mg/kg")
    r = devs(study(bad)).row(0, named=True)
    assert r["category"] == "dose_out_of_tolerance"
    assert r["given_dose"] == pytest.approx(70.0 / BSA)
    assert r["difference_pct"] == pytest.approx(100 * (70.0 / BSA - 30) / 30)


def test_flat_mg_protocol_dose():
    ld = """\
lymphodepletion:
  - {agent: decitabine, dose: 50, unit: mg, days: [-6], citation: test}
"""
    base = [{"day": -6, "agent": "decitabine", "dose": 50.0, "unit": "mg"},
            {"day": 0, "agent": "CAR-T", "dose": 1e6, "unit": "cells/kg"}]
    assert devs(study(base), proto(ld=ld)).height == 0
    high = replace(base, "decitabine", -6, dose=60.0)
    r = devs(study(high), proto(ld=ld)).row(0, named=True)
    assert (r["category"], r["unit"], r["difference_pct"]) == ("dose_out_of_tolerance", "mg", pytest.approx(20.0))
    # a flat dose given per m2 is converted with the BSA: 27.17 mg/m2 x 1.84 = 50 mg
    per_m2 = replace(base, "decitabine", -6, dose=50.0 / BSA, unit="mg/m2")
    assert devs(study(per_m2), proto(ld=ld)).height == 0


def test_dose_in_a_unit_that_cannot_be_compared_is_not_checkable():
    rows = replace(compliant_doses(), "fludarabine", -4, dose=1e6, unit="cells/kg")
    res = devs(study(rows))
    assert res.height == 1
    r = res.row(0, named=True)
    assert r["category"] == "not_checkable"
    assert r["item"] == "fludarabine"
    assert r["actual_day"] == -4.0
    assert "cannot be compared" in r["detail"]
    assert r["evidence"] == ["doses.csv:3"]


def test_wrong_day_dose_is_also_checked_for_amount():
    rows = replace(compliant_doses(), "fludarabine", -3, day=-2, dose=40.0)
    res = devs(study(rows))
    assert sorted(res["category"].to_list()) == ["dose_out_of_tolerance", "wrong_day"]
    r = res.filter(pl.col("category") == "dose_out_of_tolerance").row(0, named=True)
    assert (r["planned_day"], r["actual_day"]) == (-3.0, -2.0)


# -------------------------------------------------------------------------------------------------
# CAR-T doses


@pytest.mark.parametrize("cells, flagged", [(7e7, False), (7e7 * 1.15, False), (7e7 * 1.25, True), (7e7 * 0.75, True)])
def test_car_t_in_cells_against_a_cells_per_kg_protocol(cells, flagged):
    rows = replace(compliant_doses(), "CAR-T", 0, dose=cells, unit="cells")
    res = devs(study(rows))
    if not flagged:
        assert res.height == 0
        return
    r = res.row(0, named=True)
    assert r["category"] == "dose_out_of_tolerance"
    assert r["item"] == "CAR-T"
    assert r["unit"] == "cells/kg"
    assert r["planned_dose"] == pytest.approx(1e6)
    assert r["given_dose"] == pytest.approx(cells / 70.0)
    assert r["difference_pct"] == pytest.approx(100 * (cells / 7e7 - 1))
    assert r["rule"] == "dev-test.car_t; dev-test.tolerances"  # s33: + the tolerance rule
    assert r["evidence"] == [f"doses.csv:{len(rows)}"]
    assert "tolerance ±20%" in r["detail"]


def test_car_t_in_cells_per_kg_against_a_flat_cells_protocol():
    car = """\
car_t:
  product: test CAR-T
  bands:
    - {unit: cells, target: 1.0e8, max: 2.0e8, citation: test}
  infusions:
    - {day: 0, fraction: 1}
  citation: test
"""
    p = proto(car=car)
    ok = replace(compliant_doses(), "CAR-T", 0, dose=1.5e6, unit="cells/kg")  # 1.05e8 cells: +5%
    assert devs(study(ok), p).height == 0
    high = replace(compliant_doses(), "CAR-T", 0, dose=2e6, unit="cells/kg")  # 1.4e8 cells: +40%
    r = devs(study(high), p).row(0, named=True)
    assert (r["category"], r["item"], r["unit"]) == ("dose_out_of_tolerance", "CAR-T", "cells")
    assert r["given_dose"] == pytest.approx(1.4e8)
    assert r["difference_pct"] == pytest.approx(40.0)


def test_split_car_t_dose_each_infusion_against_its_fraction():
    car = """\
car_t:
  product: test CAR-T
  bands:
    - {unit: cells/kg, target: 5.0e6, min: 0.5e6, max: 10.0e6, citation: test}
  infusions:
    - {day: 0, fraction: 0.2}
    - {day: 2, fraction: 0.8}
  citation: test
"""
    p = proto(car=car)
    rows = [r for r in compliant_doses() if r["agent"] != "CAR-T"]
    ok = rows + [{"day": 0, "agent": "CAR-T", "dose": 1e6, "unit": "cells/kg"},
                 {"day": 2, "agent": "CAR-T", "dose": 4e6 * 70, "unit": "cells"}]
    assert devs(study(ok), p).height == 0
    swapped = rows + [{"day": 0, "agent": "CAR-T", "dose": 4e6, "unit": "cells/kg"},
                      {"day": 2, "agent": "CAR-T", "dose": 1e6, "unit": "cells/kg"}]
    res = devs(study(swapped), p)
    assert res["category"].to_list() == ["dose_out_of_tolerance"] * 2
    assert res["planned_day"].to_list() == [0.0, 2.0]
    assert res["difference_pct"].to_list() == pytest.approx([300.0, -75.0])


def test_car_t_without_a_target_is_checked_against_the_range():
    car = """\
car_t:
  product: test CAR-T
  bands:
    - {unit: cells/kg, min: 0.5e6, max: 2.0e6, citation: test}
  infusions:
    - {day: 0, fraction: 1}
  citation: test
"""
    p = proto(car=car)
    assert devs(study(), p).height == 0  # 1e6 cells/kg is in range
    high = replace(compliant_doses(), "CAR-T", 0, dose=3e6)
    r = devs(study(high), p).row(0, named=True)
    assert (r["category"], r["item"], r["unit"]) == ("dose_out_of_tolerance", "CAR-T", "cells")
    assert r["given_dose"] == pytest.approx(3e6 * 70)
    assert "outside the protocol range" in r["detail"]
    low = replace(compliant_doses(), "CAR-T", 0, dose=0.4e6)
    assert devs(study(low), p)["category"].to_list() == ["dose_out_of_tolerance"]


def test_car_t_in_mg_is_not_checkable():
    rows = replace(compliant_doses(), "CAR-T", 0, dose=5.0, unit="mg")
    res = devs(study(rows))
    assert res.select("category", "item").rows() == [("not_checkable", "CAR-T")]


# -------------------------------------------------------------------------------------------------
# not checkable


def test_missing_weight_is_not_checkable():
    # flu/cy per m2 and CAR-T per kg all need the weight: no plan at all
    subj = subjects({"weight_kg": None})
    rows = replace(compliant_doses(), "fludarabine", -5, dose=60.0)  # double: cannot be seen without a plan
    res = devs(study(rows, subj=subj))
    assert res.select("category", "item").rows() == [("not_checkable", "doses")]
    r = res.row(0, named=True)
    assert "no dose of dev-test can be computed" in r["detail"] and "needs weight" in r["detail"]
    assert r["rule"] == "dev-test.dosing"


def test_missing_height_is_not_checkable_for_the_per_m2_doses():
    subj = subjects({"height_cm": None})
    rows = replace(compliant_doses(), "fludarabine", -5, dose=60.0)  # double: cannot be seen without BSA
    res = devs(study(rows, subj=subj))
    assert res.select("category", "item").rows() == [("not_checkable", "fludarabine"),
                                                     ("not_checkable", "cyclophosphamide")]
    assert all("needs height" in d for d in res["detail"])


def test_missing_weight_still_checks_the_schedule():
    subj = subjects({"weight_kg": None})
    rows = without(compliant_doses(), "fludarabine", -4) + [{"day": -9, "agent": "etoposide", "dose": 100.0, "unit": "mg"}]
    rows = replace(rows, "CAR-T", 0, day=1)
    res = devs(study(rows, subj=subj))
    got = sorted(res.select("category", "item").rows())
    assert got == [("missed_dose", "fludarabine"), ("not_checkable", "doses"), ("unplanned_agent", "etoposide"),
                   ("wrong_day", "CAR-T")]


def test_implausible_weight_is_not_checkable_with_the_reason():
    subj = subjects({"weight_kg": 700.0})
    res = devs(study(subj=subj))
    assert res.select("category", "item").rows() == [("not_checkable", "doses")]
    assert "implausible" in res["detail"][0]


# -------------------------------------------------------------------------------------------------
# renal adjustment

# 132.6 umol/L = 1.5 mg/dL; 60 y, 70 kg, male: CrCl = 80 x 70 / (72 x 1.5) = 51.9 mL/min -> 30-70:
# the fludarabine label reduces the dose by 20% (24 mg/m2)
LOW_CRCL = {"subject_id": "S1", "day": -7.0, "param": "CREAT", "value": 132.6, "unit": "umol/L"}


def test_planned_doses_apply_the_renal_reduction():
    s = study(obs=[LOW_CRCL], subj=subjects({"age_years": 60.0}))
    plan, why = planned_doses(s, proto(), "S1")
    assert why is None
    fl = plan.filter(pl.col("agent") == "fludarabine")
    assert fl["factor"].to_list() == [0.8] * 3
    assert fl["dose"].to_list() == pytest.approx([30 * BSA * 0.8] * 3)
    # s33: + the protocol's rule and its .renal rule (convention)
    assert fl["rule"].to_list() == ["dev-test.lymphodepletion.fludarabine; dev-test.lymphodepletion.fludarabine.renal; "
                                    "fludarabine_label.moderate"] * 3
    assert "51.9 mL/min" in fl["adjustment"][0]
    cy = plan.filter(pl.col("agent") == "cyclophosphamide")
    assert cy["factor"].to_list() == [1.0] * 3


def test_full_fludarabine_dose_at_low_crcl_is_out_of_tolerance():
    s = study(obs=[LOW_CRCL], subj=subjects({"age_years": 60.0}))
    res = devs(s)
    assert res.height == 3
    assert res["category"].to_list() == ["dose_out_of_tolerance"] * 3
    assert res["item"].to_list() == ["fludarabine"] * 3
    assert res["planned_day"].to_list() == [-5.0, -4.0, -3.0]
    assert res["planned_dose"].to_list() == pytest.approx([24.0] * 3)
    assert res["given_dose"].to_list() == pytest.approx([30.0] * 3)
    assert res["difference_pct"].to_list() == pytest.approx([25.0] * 3)
    # s33: + the protocol's rule, its .renal rule (convention) and the tolerance rule
    assert res["rule"].to_list() == ["dev-test.lymphodepletion.fludarabine; dev-test.lymphodepletion.fludarabine.renal; "
                                     "fludarabine_label.moderate; dev-test.tolerances"] * 3
    assert res["evidence"].to_list() == [["doses.csv:1"], ["doses.csv:3"], ["doses.csv:5"]]
    assert "x 0.8 (renal)" in res["detail"][0]


def test_reduced_fludarabine_dose_at_low_crcl_is_compliant():
    rows = compliant_doses()
    for d in (-5, -4, -3):
        rows = replace(rows, "fludarabine", d, dose=24.0)
    s = study(rows, obs=[LOW_CRCL], subj=subjects({"age_years": 60.0}))
    assert devs(s).height == 0
    # ... and the same reduced dose is a deviation for a subject with normal renal function
    assert devs(study(rows))["category"].to_list() == ["dose_out_of_tolerance"] * 3


def test_renal_adjustment_can_be_switched_off():
    s = study(obs=[LOW_CRCL], subj=subjects({"age_years": 60.0}))
    assert devs(s, options=DoseOptions(apply_renal_adjustment=False)).height == 0


def test_screening_creatinine_is_the_last_before_lymphodepletion():
    # normal on day -7, then a low value on day -4 (during lymphodepletion): the plan uses day -7
    obs = [normal_creatinine(), {**LOW_CRCL, "day": -4.0}]
    s = study(obs=obs, subj=subjects({"age_years": 60.0}))
    assert devs(s).height == 0
    # low on day -10, then normal on day -7: the latest screening value (normal) decides
    obs = [{**LOW_CRCL, "day": -10.0}, normal_creatinine()]
    assert devs(study(obs=obs, subj=subjects({"age_years": 60.0}))).height == 0
    # normal on day -10, low on day -7: reduced
    obs = [{**normal_creatinine(), "day": -10.0}, LOW_CRCL]
    assert devs(study(obs=obs, subj=subjects({"age_years": 60.0})))["category"].to_list() == ["dose_out_of_tolerance"] * 3


def test_fludarabine_given_although_withheld():
    # 300 umol/L = 3.39 mg/dL: CrCl = 80 x 70 / (72 x 3.39) = 22.9 mL/min -> do not administer
    s = study(obs=[{**LOW_CRCL, "value": 300.0}], subj=subjects({"age_years": 60.0}))
    res = devs(s)
    assert res.height == 3
    assert res["category"].to_list() == ["dose_out_of_tolerance"] * 3
    assert res["item"].to_list() == ["fludarabine"] * 3
    assert res["planned_dose"].to_list() == [None] * 3
    # s33: + the protocol's rule and its .renal rule (convention); a withheld dose is not a tolerance question
    assert res["rule"].to_list() == ["dev-test.lymphodepletion.fludarabine; dev-test.lymphodepletion.fludarabine.renal; "
                                     "fludarabine_label.severe"] * 3
    assert all("withholds" in d for d in res["detail"].to_list())


def test_no_creatinine_means_fludarabine_is_not_checkable():
    s = study(obs=[], subj=subjects({"age_years": 60.0}))
    res = devs(s)
    assert res.select("category", "item").rows() == [("not_checkable", "fludarabine")]
    plan, _ = planned_doses(s, proto(), "S1")
    fl = plan.filter(pl.col("agent") == "fludarabine")
    assert fl["status"].to_list() == ["not_evaluable"] * 3 and fl["needs"].to_list() == ["creatinine"] * 3


def test_planned_doses_reasons():
    s = study(subj=subjects({"weight_kg": None}))
    plan, why = planned_doses(s, proto(), "S1")
    assert plan is None and "needs weight" in why
    with pytest.raises(ValueError, match="no subject"):
        planned_doses(s, proto(), "S9")


# -------------------------------------------------------------------------------------------------
# monitoring

MONITORING = """\
monitoring:
  - id: marrow
    params: [BMBLAST]
    days: [14, 28]
    tolerance_days: 3
    citation: test
    source: reconstructed
  - id: labs
    params: [CRP]
    daily_from: 0
    daily_to: 5
    citation: test
"""


def _mon_obs(bm_days=(14, 28), crp_days=range(0, 6)) -> list[dict]:
    rows = [normal_creatinine()]
    rows += [{"day": float(d), "param": "BMBLAST", "value": 3.0, "unit": "%"} for d in bm_days]
    rows += [{"day": float(d), "param": "CRP", "value": 10.0, "unit": "mg/L"} for d in crp_days]
    return rows


def _mon(res: pl.DataFrame) -> pl.DataFrame:
    return res.filter(pl.col("category") == "missed_monitoring")


def test_monitoring_complete():
    assert devs(study(obs=_mon_obs()), proto(monitoring=MONITORING)).height == 0


def test_monitoring_within_tolerance_days():
    assert devs(study(obs=_mon_obs(bm_days=(11, 31))), proto(monitoring=MONITORING)).height == 0


def test_missed_monitoring_beyond_tolerance():
    res = devs(study(obs=_mon_obs(bm_days=(14, 32))), proto(monitoring=MONITORING))
    assert res.height == 1
    r = res.row(0, named=True)
    assert r["category"] == "missed_monitoring"
    assert r["item"] == "BMBLAST"
    assert r["days"] == [28.0]
    assert r["planned_day"] == 28.0
    assert r["rule"] == "dev-test.monitoring.marrow"
    assert "(±3 d)" in r["detail"] and "[schedule reconstructed]" in r["detail"]


def test_missed_daily_monitoring_lists_the_days():
    res = devs(study(obs=_mon_obs(crp_days=(0, 1, 4))), proto(monitoring=MONITORING))
    r = res.row(0, named=True)
    assert (r["item"], r["days"], r["planned_day"]) == ("CRP", [2.0, 3.0, 5.0], 2.0)
    assert r["rule"] == "dev-test.monitoring.labs"
    assert "±" not in r["detail"]


def test_monitoring_of_a_param_never_measured():
    res = devs(study(obs=_mon_obs(bm_days=())), proto(monitoring=MONITORING))
    assert res.select("item", "days").rows() == [("BMBLAST", [14.0, 28.0])]


def test_monitoring_beyond_last_followup_is_not_flagged():
    subj = subjects({"last_followup_day": 20.0})
    res = devs(study(obs=_mon_obs(bm_days=(14,)), subj=subj), proto(monitoring=MONITORING))
    assert res.height == 0
    # a scheduled day on the last follow-up day itself is still due
    subj = subjects({"last_followup_day": 28.0})
    res = devs(study(obs=_mon_obs(bm_days=(14,)), subj=subj), proto(monitoring=MONITORING))
    assert res.select("item", "days").rows() == [("BMBLAST", [28.0])]
    # follow-up ending on day 3: CRP on days 4 and 5 is not due either
    subj = subjects({"last_followup_day": 3.0})
    res = devs(study(obs=_mon_obs(bm_days=(), crp_days=(0, 1)), subj=subj), proto(monitoring=MONITORING))
    assert res.select("item", "days").rows() == [("CRP", [2.0, 3.0])]


def test_monitoring_after_death_is_not_flagged():
    p = proto(monitoring=MONITORING)
    ev = [{"day": 20.0, "event": "death", "detail": "progression"}]
    res = devs(study(obs=_mon_obs(bm_days=(14,)), ev=ev), p)
    assert res.height == 0
    # an earlier death than the last follow-up wins; a non-death event does not end follow-up
    ev = [{"day": 20.0, "event": "relapse"}]
    res = devs(study(obs=_mon_obs(bm_days=(14,)), ev=ev), p)
    assert res.select("item", "days").rows() == [("BMBLAST", [28.0])]


def test_monitoring_without_last_followup_ends_at_the_last_recorded_row():
    # study-format.md: "a subject without `last_followup_day`, death or event is censored at its last
    # recorded row in any table": the data end on day 5 (CRP), so the marrow days 14 and 28 are not
    # checked (they used to be reported missed: review 36 A5)
    subj = subjects({"last_followup_day": None})
    res = devs(study(obs=_mon_obs(bm_days=()), subj=subj), proto(monitoring=MONITORING))
    assert res.select("item", "days").rows() == []


# -------------------------------------------------------------------------------------------------
# several subjects


def test_deviations_are_per_subject():
    subj = subjects({"subject_id": "S1"}, {"subject_id": "S2"})
    rows = compliant_doses("S1") + without(compliant_doses("S2"), "cyclophosphamide", -3)
    obs = [normal_creatinine("S1"), normal_creatinine("S2")]
    res = devs(study(rows, obs=obs, subj=subj))
    assert res.select("subject_id", "category", "item", "planned_day").rows() == [
        ("S2", "missed_dose", "cyclophosphamide", -3.0)]


# -------------------------------------------------------------------------------------------------
# the seed case against NCT04762485


@pytest.fixture(scope="module")
def seed():
    from cartlab.datasets import seed_case_path
    from cartlab.io import read_study

    return read_study(seed_case_path()), load_protocol("nct04762485")


def test_seed_has_exactly_the_two_missed_marrow_rows(seed):
    s, p = seed
    res = devs(s, p)
    assert res.height == 2
    assert res["category"].to_list() == ["missed_monitoring"] * 2
    assert sorted(res["item"].to_list()) == ["BMBLAST", "MRDFCM"]
    assert res["days"].to_list() == [[28.0], [28.0]]
    assert res["planned_day"].to_list() == [28.0, 28.0]
    assert res["rule"].to_list() == ["nct04762485.monitoring.marrow"] * 2
    assert res["subject_id"].unique().to_list() == ["CD7-AML-001"]


def test_seed_has_no_dose_deviation(seed):
    s, p = seed
    res = devs(s, p)
    dose_categories = {"missed_dose", "wrong_day", "extra_dose", "unplanned_agent", "dose_out_of_tolerance",
                       "not_checkable"}
    assert not (set(res["category"].to_list()) & dose_categories)


def test_seed_plan(seed):
    s, p = seed
    plan, why = planned_doses(s, p, "CD7-AML-001")
    assert why is None
    # 52 kg, 160 cm: BSA 1.52 m2; CrCl from creatinine 54 umol/L on day -6 is normal: full doses
    fl = plan.filter(pl.col("agent") == "fludarabine")
    assert fl["dose"].to_list() == pytest.approx([30 * 1.52] * 3)
    assert fl["factor"].to_list() == [1.0] * 3
    car = plan.filter(pl.col("kind") == "car_t")
    assert car["dose"].to_list() == pytest.approx([1e6 * 52, 4e6 * 52])


def test_seed_with_one_fludarabine_dose_removed(seed):
    s, p = seed
    doses = s.doses.filter(~((pl.col("agent") == "fludarabine") & (pl.col("day") == -4)))
    res = devs(Study(study_id=s.study_id, subjects=s.subjects, doses=doses, observations=s.observations,
                     interventions=s.interventions, events=s.events), p)
    miss = res.filter(pl.col("category") == "missed_dose")
    assert miss.select("item", "planned_day").rows() == [("fludarabine", -4.0)]
    assert res.height == 3


# -------------------------------------------------------------------------------------------------
# timed administrations and samples: protocol days are calendar days


def test_doses_given_at_a_time_of_day_are_on_their_calendar_day():
    """Fludarabine/cyclophosphamide at 10:00 on days -5..-3 (day -4.583 ...) and the CAR-T at 14:00
    on day 0 (0.583), as a study with date-times gives them, follow a same-day protocol exactly."""
    rows = [{**r, "day": r["day"] + (14 if r["agent"] == "CAR-T" else 10) / 24} for r in compliant_doses()]
    assert devs(study(rows)).height == 0


def test_a_timed_dose_on_the_next_calendar_day_is_still_late():
    rows = replace(compliant_doses(), "fludarabine", -3, day=-2 + 1 / 24)  # 01:00 on day -2
    res = devs(study(rows))
    assert res.select("category", "item", "planned_day").rows() == [("wrong_day", "fludarabine", -3.0)]


def test_monitoring_sample_at_a_time_of_day_counts_for_its_day():
    obs = _mon_obs(crp_days=())
    obs += [{"day": d + 0.75, "param": "CRP", "value": 10.0, "unit": "mg/L"} for d in range(0, 6)]  # 18:00 daily
    assert devs(study(obs=obs), proto(monitoring=MONITORING)).height == 0
