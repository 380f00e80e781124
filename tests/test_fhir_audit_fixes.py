"""FHIR reader fixes from the interop audit (H3, H4, H5, M6, M8, M9), on small hand-made bundles.

Every bundle has one subject P1 whose CAR-T (tisagenlecleucel) is given on 2024-03-03T10:00:00Z,
so day 0 is 2024-03-03 and a time's day is (its date - 2024-03-03) + its clock time / 24 h
(calendar days, cartlab.io.clock): 2024-03-04T10:00Z is day 1 + 10/24 = 1.416667.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from cartlab.errors import InputError
from cartlab.io.fhir import read_fhir_with_report

UCUM = "http://unitsofmeasure.org"
CART_TIME = "2024-03-03T10:00:00Z"


def _patient(pid: str = "P1") -> dict:
    return {"resourceType": "Patient", "id": pid, "gender": "female"}


def _ma(rid: str, drug: str, when: str, status: str = "completed", pid: str = "P1", **extra) -> dict:
    return {"resourceType": "MedicationAdministration", "id": rid, "status": status,
            "medicationCodeableConcept": {"text": drug}, "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": when, **extra}


CART_DOSE = {"dose": {"value": 2e6, "unit": "cells/kg", "system": UCUM, "code": "{cells}/kg"}}


def _cart(**extra) -> dict:
    return _ma("cart", "tisagenlecleucel", CART_TIME, **{"dosage": CART_DOSE, **extra})


def _obs(rid: str, loinc: str, when: str, pid: str = "P1", **value) -> dict:
    return {"resourceType": "Observation", "id": rid, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when, **value}


def _temp(rid: str, when: str, pid: str = "P1") -> dict:
    return _obs(rid, "8310-5", when, pid, valueQuantity={"value": 38.6, "system": UCUM, "code": "Cel"})


def _oxygen(rid: str, when: str, used: list | None = None) -> dict:
    res = {"resourceType": "Procedure", "id": rid, "status": "completed", "code": {"text": "Oxygen therapy"},
           "subject": {"reference": "Patient/P1"}, "performedDateTime": when}
    if used is not None:
        res["usedCode"] = used
    return res


def _condition(rid: str, text: str, when: str, verification: str | None = None) -> dict:
    res = {"resourceType": "Condition", "id": rid, "code": {"text": text},
           "subject": {"reference": "Patient/P1"}, "onsetDateTime": when}
    if verification:
        res["verificationStatus"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": verification}]}
    return res


def _read(tmp_path: Path, *resources, mapping=None, **options):
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    p = tmp_path / "b.json"
    p.write_text(json.dumps(bundle), encoding="utf-8")
    return read_fhir_with_report(p, mapping=mapping, **options)


def _reasons(report: pl.DataFrame) -> dict[str, str]:
    """reason -> entries (1-based indexes) of the rows that were not mapped."""
    rows = report.filter(~pl.col("reason").str.starts_with("mapped"))
    return dict(zip(rows["reason"], rows["entries"], strict=True))


# -- H3: a CAR-T that was not given is no day 0 -----------------------------------------------------

@pytest.mark.parametrize("status", ["not-done", "entered-in-error"])
def test_cart_not_given_does_not_set_day0(tmp_path, status):
    # entry 2: a CAR-T not given two days before the real one (entry 3)
    not_given = _ma("cart0", "tisagenlecleucel", "2024-03-01T08:00:00Z", status, dosage=CART_DOSE)
    study, report = _read(tmp_path, _patient(), not_given, _cart(), _temp("t", "2024-03-04T10:00:00Z"))
    assert study.subjects["infusion_datetime"].to_list() == [CART_TIME]
    assert study.doses["day"].to_list() == pytest.approx([10 / 24])  # 0.416667, not 2.416667
    assert study.observations["day"].to_list() == pytest.approx([1 + 10 / 24])  # 1.416667, not 3.416667
    assert _reasons(report) == {f"status {status}: not given": "2"}


def test_only_cart_not_given_leaves_subject_without_day0(tmp_path):
    not_given = _ma("cart0", "tisagenlecleucel", CART_TIME, "not-done", dosage=CART_DOSE)
    study, report = _read(tmp_path, _patient(), not_given, _temp("t", "2024-03-04T10:00:00Z"))
    assert study.subjects["infusion_datetime"].to_list() == [None]
    assert study.observations.height == 0  # reported, not placed on a guessed day
    assert _reasons(report) == {"status not-done: not given": "2",
                                "no day 0: the subject has no CAR-T MedicationAdministration": "3"}


# -- H5: a censored valueString is read in the param's canonical unit ---------------------------------

def test_censored_value_string_in_canonical_unit(tmp_path):
    study, report = _read(
        tmp_path, _patient(), _cart(),
        _obs("il6", "26881-3", "2024-03-05", valueString="<50"),        # IL-6, canonical pg/mL
        _obs("crp", "1988-5", "2024-03-06", valueString=">= 300"),      # CRP, canonical mg/L
        _obs("il6b", "26881-3", "2024-03-07", valueString="hemolysed"),  # no result: skipped (session 31)
        numeric_valuestring="canonical",  # session 34: opt-in (default skip: a string has no unit)
    )
    o = study.observations.sort("day")
    assert o["day"].to_list() == [2.0, 3.0]  # dates without a time: their midnight
    assert o["param"].to_list() == ["IL6", "CRP"]
    assert o["value"].to_list() == [None, None]
    assert o["value_text"].to_list() == ["<50", ">= 300"]
    assert o["censor"].to_list() == ["<", ">="]
    assert o["censor_limit"].to_list() == [50.0, 300.0]
    assert o["unit"].to_list() == ["pg/mL", "mg/L"]
    assert o["orig_unit"].to_list() == ["pg/mL", "mg/L"]
    notes = report.filter(pl.col("reason").str.contains("censored valueString"))
    assert sorted(notes["reason"]) == [
        "mapped (censored valueString read in the canonical unit mg/L: option numeric_valuestring='canonical')",
        "mapped (censored valueString read in the canonical unit pg/mL: option numeric_valuestring='canonical')"]
    # session 31: a word for a numeric param is no result (before: kept as a value_text every engine
    # dropped); reported as skipped, like SDTM's non-numeric --STRESC
    assert _reasons(report) == {"valueString is neither a number nor a censored value (<x): not numeric": "5",  # entry 5
                                "option numeric_valuestring=canonical": ""}  # session 34: the option is reported


# -- H4: reasonCode -> indication, usedCode -> o2_device through the shared vocabulary --------------

def _toci(rid: str, when: str, reason: dict) -> dict:
    return _ma(rid, "Tocilizumab", when, reasonCode=[reason],
               dosage={"dose": {"value": 8, "unit": "mg/kg", "system": UCUM, "code": "mg/kg"}})


def test_reason_code_text_translated_and_unknown_skipped(tmp_path):
    study, report = _read(
        tmp_path, _patient(), _cart(),
        _toci("t1", "2024-03-04T12:00:00Z", {"coding": [{"system": "http://snomed.info/sct", "code": "x",
                                                         "display": "Cytokine release syndrome"}]}),
        _toci("t2", "2024-03-05T12:00:00Z", {"text": "immune effector cell-associated neurotoxicity syndrome"}),
        _toci("t3", "2024-03-06T12:00:00Z", {"text": "Pneumonia"}),  # not in the table: not mapped
        _toci("t4", "2024-03-07T12:00:00Z", {"text": "crs"}),
        unknown_indication="drop",  # session 46: the default (count) reads t3 with the indication empty
    )
    iv = study.interventions.sort("start_day")
    assert iv["start_day"].to_list() == pytest.approx([1.5, 2.5, 4.5])
    assert iv["indication"].to_list() == ["CRS", "ICANS", "CRS"]  # the vocabulary's spelling
    assert _reasons(report) == {"reasonCode 'Pneumonia' not in the indication table (indications): not mapped "
                                "(option unknown_indication = drop)": "5",
                                "option unknown_indication=drop": ""}  # the (reader option) row, n 0


def test_used_code_text_translated_and_unknown_skipped(tmp_path):
    study, report = _read(
        tmp_path, _patient(), _cart(),
        _oxygen("o1", "2024-03-04T06:00:00Z", [{"coding": [{"system": "http://snomed.info/sct", "code": "336623009",
                                                            "display": "Oxygen nasal cannula"}]}]),
        _oxygen("o2", "2024-03-05T06:00:00Z", [{"text": "High-flow nasal cannula"}]),
        _oxygen("o3", "2024-03-06T06:00:00Z", [{"text": "Oxygen tent"}]),  # not in the table: not mapped
        _oxygen("o4", "2024-03-07T06:00:00Z", [{"text": "NON-REBREATHER MASK"}]),
    )
    iv = study.interventions.sort("start_day")
    assert iv["start_day"].to_list() == pytest.approx([1.25, 2.25, 4.25])
    assert iv["category"].to_list() == ["oxygen"] * 3
    assert iv["o2_device"].to_list() == ["nasal_cannula", "high_flow_nasal_cannula", "non_rebreather"]
    assert _reasons(report) == {"usedCode 'Oxygen tent' not in the oxygen device table (o2_devices): not mapped": "5"}


def test_user_mapping_adds_vocabulary_rows_in_the_vocabulary_spelling(tmp_path):
    mapping = {"indications": {"Pneumonia": "Infection"}, "o2_devices": {"oxygen tent": "face-mask"}}
    study, report = _read(tmp_path, _patient(), _cart(), _toci("t", "2024-03-04T12:00:00Z", {"text": "pneumonia"}),
                          _oxygen("o", "2024-03-04T06:00:00Z", [{"text": "Oxygen Tent"}]), mapping=mapping)
    iv = study.interventions.sort("start_day")
    assert iv["o2_device"].to_list() == ["face_mask", None]
    assert iv["indication"].to_list() == [None, "infection"]
    with pytest.raises(InputError, match="o2_devices 'oxygen tent': 'tent' is not a valid o2_device"):
        _read(tmp_path, _patient(), _cart(), mapping={"o2_devices": {"oxygen tent": "tent"}})


# -- M6: dosage units from Quantity.code (UCUM) before Quantity.unit (display) ----------------------

def test_dose_units_from_ucum_code_before_display(tmp_path):
    dose = {"value": 2, "unit": "million cells per kg", "system": UCUM, "code": "10*6{cells}/kg"}
    toci = {"value": 8, "unit": "milligrams per kilogram", "system": UCUM, "code": "mg/kg"}
    vaso = {"value": 0.04, "unit": "IU/min", "system": UCUM, "code": "[iU]/min"}  # code not in the ucum table: display
    study, report = _read(
        tmp_path, _patient(), _cart(dosage={"dose": dose}),
        _ma("toci", "Tocilizumab", "2024-03-04T12:00:00Z", dosage={"dose": toci}),
        _ma("vaso", "Vasopressin", "2024-03-05T12:00:00Z", dosage={"rateQuantity": vaso}),
    )
    d = study.doses.row(0, named=True)
    assert (d["orig_dose"], d["orig_unit"]) == (2.0, "10^6 cells/kg")
    assert (d["dose"], d["unit"]) == (2e6, "cells/kg")  # 2 x 10^6 cells/kg
    iv = study.interventions.sort("start_day")
    assert iv["dose_unit"].to_list() == ["mg/kg", "IU/min"]
    assert iv["dose"].to_list() == [8.0, 0.04]


def test_unreadable_dose_unit_is_one_clear_error(tmp_path):
    bad = {"value": 2, "unit": "lots", "system": UCUM, "code": "{lots}"}
    with pytest.raises(InputError, match=r"b\.json, entry 2 \(MedicationAdministration/cart\): dosage\.dose\.code "
                                         r"'\{lots\}': unknown UCUM unit '\{lots\}' \(nor its unit text 'lots'\)"):
        _read(tmp_path, _patient(), _cart(dosage={"dose": bad}))


# -- M8: oxygen without a device is not mapped, the rest is read -----------------------------------

def test_oxygen_without_device_skipped_not_rejected(tmp_path):
    study, report = _read(tmp_path, _patient(), _cart(), _oxygen("o", "2024-03-04T06:00:00Z"),
                          _temp("t", "2024-03-04T10:00:00Z"))
    assert study.interventions.height == 0
    assert study.observations["day"].to_list() == pytest.approx([1 + 10 / 24])
    assert _reasons(report) == {"oxygen without a device (o2_device is required)": "3"}


# -- M9: a diagnosis that is not confirmed is not an event -----------------------------------------

@pytest.mark.parametrize("status", ["provisional", "differential", "unconfirmed"])
def test_unconfirmed_condition_not_mapped(tmp_path, status):
    study, report = _read(tmp_path, _patient(), _cart(),
                          _condition("c1", "Seizure", "2024-03-05T06:00:00Z", status),
                          _condition("c2", "Seizure", "2024-03-06T06:00:00Z", "confirmed"),
                          _condition("c3", "Infection", "2024-03-07T06:00:00Z"))  # no status: not read as negative
    ev = study.events.sort("day")
    assert ev["event"].to_list() == ["seizure", "infection"]
    assert ev["day"].to_list() == pytest.approx([3.25, 4.25])
    assert _reasons(report) == {f"verificationStatus {status}: not a confirmed diagnosis": "3"}


# -- M9: a negated or uncertain condition text is not an event --------------------------------------

def test_negated_condition_text_is_not_an_event(tmp_path):
    # "No seizure activity" (pre-negation) and "Infection ruled out" (post-negation) are not events;
    # "Seizure without loss of consciousness" is a seizure: its "without" follows the term
    study, report = _read(tmp_path, _patient(), _cart(),
                          _condition("c1", "No seizure activity", "2024-03-05T06:00:00Z"),
                          _condition("c2", "Infection ruled out", "2024-03-06T06:00:00Z"),
                          _condition("c3", "Seizure without loss of consciousness", "2024-03-07T06:00:00Z"),
                          _condition("c4", "Suspected sepsis", "2024-03-08T06:00:00Z"))
    assert study.events["event"].to_list() == ["seizure"]
    assert study.events["day"].to_list() == pytest.approx([4.25])  # 2024-03-07T06:00, day 0 = 2024-03-03
    assert _reasons(report) == {
        "condition text is negated or uncertain ('No'): not an event": "3",
        "condition text is negated or uncertain ('ruled out'): not an event": "4",
        "condition text is negated or uncertain ('Suspected'): not an event": "6"}


# -- M7: a drug named through medicationReference ----------------------------------------------------

def test_medication_reference_names_the_drug_and_sets_day_0(tmp_path):
    # the CAR-T given as a reference to a Medication in the bundle (the usual EHR shape): it is the
    # subject's day 0 (2024-03-03), so the temperature on 2024-03-04T10:00Z is day 1 + 10/24
    med = {"resourceType": "Medication", "id": "m1", "code": {"text": "tisagenlecleucel"}}
    ma = {"resourceType": "MedicationAdministration", "id": "a1", "status": "completed",
          "medicationReference": {"reference": "Medication/m1"}, "subject": {"reference": "Patient/P1"},
          "effectiveDateTime": "2024-03-03T10:00:00Z", "dosage": CART_DOSE}
    study, report = _read(tmp_path, _patient(), med, ma, _temp("t", "2024-03-04T10:00:00Z"))
    assert study.doses["agent"].to_list() == ["tisagenlecleucel"]
    assert study.observations["day"].to_list() == pytest.approx([1 + 10 / 24])
    assert "Medication: read to name the administrations that reference it" in _reasons(report)
