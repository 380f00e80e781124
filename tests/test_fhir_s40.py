"""Session 40 FHIR fixes (review40_interop A2, B3, B9, C3; review40_crs A1): records the reader cannot place
or read are said on screen (study.warnings), Quantity.system is honoured, an R5 element says "R4".

Day 0 in every Bundle is a tisagenlecleucel MedicationAdministration on 2024-03-03T10:00:00Z; a day is the
calendar days from the midnight of day 0 (docs/interop/fhir.md), counted by hand in each comment.
"""

from __future__ import annotations

import json

import pytest

from cartlab.errors import InputError
from cartlab.io.fhir import read_fhir

P = {"reference": "Patient/P1"}
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"


def _pat():
    return {"resourceType": "Patient", "id": "P1", "gender": "female"}


def _cart():
    return {"resourceType": "MedicationAdministration", "id": "c1", "status": "completed", "subject": P,
            "medicationCodeableConcept": {"text": "tisagenlecleucel"}, "effectiveDateTime": "2024-03-03T10:00:00Z",
            "dosage": {"dose": {"value": 2, "unit": "10^6 cells/kg", "system": UCUM, "code": "10*6{cells}/kg"}}}


def _obs(i, loinc, t, q):
    return {"resourceType": "Observation", "id": i, "status": "final", "subject": P,
            "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]}, "effectiveDateTime": t,
            "valueQuantity": q}


def _temp(d, v=39.2):  # d: the day; 2024-03-03 is day 0
    return _obs(f"t{d}", "8310-5", f"2024-03-{3 + d:02d}T12:00:00Z",
                {"value": v, "unit": "Cel", "system": UCUM, "code": "Cel"})


def _vaso(when):
    return {"resourceType": "MedicationAdministration", "id": "ne", "status": "completed", "subject": P,
            "medicationCodeableConcept": {"text": "norepinephrine"}, "effectiveDateTime": when,
            "dosage": {"rateQuantity": {"value": 0.1, "unit": "ug/kg/min", "system": UCUM, "code": "ug/kg/min"}},
            "reasonCode": [{"text": "CRS"}]}


def _oxygen(used=None):
    r = {"resourceType": "Procedure", "id": "o2", "status": "completed", "subject": P,
         "code": {"text": "Oxygen therapy"}, "performedDateTime": "2024-03-05T12:00:00Z"}
    if used:
        r["usedCode"] = [{"text": used}]
    return r


def _write(tmp_path, *res, name="b.json"):
    f = tmp_path / name
    f.write_text(json.dumps({"resourceType": "Bundle", "type": "collection",
                             "entry": [{"resource": r} for r in res]}))
    return f


def _warnings(s):
    return [w.message for w in s.warnings]


# -- A2: a vasopressor with a partial date is named on screen, with the CRS consequence -------------------

def test_partial_vasopressor_is_warned_with_crs_may_be_higher(tmp_path):
    # entries: 1 Patient, 2 CAR-T, 3 norepinephrine '2024-03'. March 2024 = 2024-03-01..31: day 0 is
    # 2024-03-03, so the period is days -2 to 28 (by hand). ASTCT 2019: a vasopressor makes CRS grade >= 3.
    s = read_fhir(_write(tmp_path, _pat(), _cart(), _vaso("2024-03"), *[_temp(d) for d in range(1, 4)]))
    ws = _warnings(s)
    named = [w for w in ws if "entry 3" in w and "effectiveDateTime '2024-03'" in w and "norepinephrine" in w]
    assert named, ws
    crs = [w for w in ws if "subject P1" in w and "vasopressor" in w and "CRS grade" in w]
    assert crs and "days -2 to 28" in crs[0] and "may be higher" in crs[0]
    # the interventions table is empty, but not "none given": the warning says one was set aside
    absent = next(w for w in ws if "(table interventions)" in w and "no MedicationAdministration" in w)
    assert "1 intervention(s) were given and not read" in absent
    assert s.interventions.height == 0  # no imputation rule: the row is still on no day


def test_full_date_vasopressor_has_no_partial_warning(tmp_path):
    s = read_fhir(_write(tmp_path, _pat(), _cart(), _vaso("2024-03-05T12:00:00Z"), _temp(2)))
    assert not [w for w in _warnings(s) if "partial" in w]
    assert s.interventions.height == 1


# -- B9: a finding / a dose with a partial date is named on screen ----------------------------------------

def test_partial_finding_is_named_with_file_entry_element_and_value(tmp_path):
    neut = _obs("np", "751-8", "2024-03", {"value": 0.05, "unit": "10*9/L", "system": UCUM, "code": "10*9/L"})
    s = read_fhir(_write(tmp_path, _pat(), _cart(), neut))
    w = [w for w in _warnings(s) if "partial date" in w and "table observations" in w]
    assert w and "b.json" in w[0] and "entry 3 (Observation/np" in w[0] and "NEUT" in w[0]
    assert "effectiveDateTime '2024-03'" in w[0] and "--partial-dates" in w[0]


def test_partial_lymphodepletion_dose_is_named(tmp_path):
    flu = {"resourceType": "MedicationAdministration", "id": "flu", "status": "completed", "subject": P,
           "medicationCodeableConcept": {"text": "fludarabine"}, "effectiveDateTime": "2024-02",
           "dosage": {"dose": {"value": 30, "unit": "mg/m2", "system": UCUM, "code": "mg/m2"}}}
    s = read_fhir(_write(tmp_path, _pat(), _cart(), flu))
    w = [w for w in _warnings(s) if "table doses" in w]
    assert w and "entry 3 (MedicationAdministration/flu" in w[0] and "'2024-02'" in w[0]


# -- review40_crs A1: oxygen without a known device is named (the study format needs o2_device) -----------

@pytest.mark.parametrize("used, said", [("oxymizer", "usedCode 'oxymizer'"), (None, "without a device")])
def test_oxygen_without_known_device_is_warned(tmp_path, used, said):
    # ASTCT 2019 Table 1: any oxygen support grades hypoxia >= 2, so an unread one may hide a higher grade
    s = read_fhir(_write(tmp_path, _pat(), _cart(), _oxygen(used), _temp(2)))
    w = [w for w in _warnings(s) if "oxygen support" in w]
    assert w and said in w[0] and "entry 3 (Procedure/o2)" in w[0] and "may be higher" in w[0]
    assert "2024-03-05T12:00:00Z" in w[0]  # the time of the oxygen support: the day whose grade may be higher
    assert s.interventions.height == 0  # the format cannot hold oxygen without a device


def test_oxygen_with_mapped_device_is_read_without_warning(tmp_path):
    s = read_fhir(_write(tmp_path, _pat(), _cart(), _oxygen("Nasal cannula"), _temp(2)))
    assert s.interventions["o2_device"].to_list() == ["nasal_cannula"]
    assert not [w for w in _warnings(s) if "oxygen support" in w]


# -- B3: Quantity.system other than UCUM ------------------------------------------------------------------

def test_snomed_unit_reads_the_unit_text(tmp_path):
    # R4 Quantity.system "System that defines coded unit form": SNOMED CT 258672001 is not a UCUM code; the
    # unit text "cm" is: height 165 cm -> height_cm 165 (by hand)
    h = _obs("h", "8302-2", "2024-03-01T08:00:00Z",
             {"value": 165, "unit": "cm", "system": SNOMED, "code": "258672001"})
    s = read_fhir(_write(tmp_path, _pat(), _cart(), h))
    assert s.subjects["height_cm"].to_list() == [165.0]


def test_non_ucum_system_on_a_finding_reads_unit_text_and_says_so(tmp_path):
    # 0.4 x10^9/L given as unit text "10^9/L" with a local code: 0.4 in 10^9/L (the canonical ANC unit)
    n = _obs("n", "751-8", "2024-03-04T08:00:00Z",
             {"value": 0.4, "unit": "10^9/L", "system": "http://example.org/units", "code": "GPL"})
    s = read_fhir(_write(tmp_path, _pat(), _cart(), n))
    row = s.observations.row(0, named=True)
    # 2024-03-04T08:00 is day 1 + 8 h = 1 + 8/24 (by hand)
    assert row["value"] == pytest.approx(0.4) and row["day"] == pytest.approx(1 + 8 / 24)
    assert "not UCUM" in (row["source_note"] or "") and "'10^9/L'" in row["source_note"]


def test_non_ucum_system_with_unreadable_unit_names_the_system(tmp_path):
    n = _obs("n", "751-8", "2024-03-04T08:00:00Z",
             {"value": 0.4, "unit": "widgets", "system": SNOMED, "code": "258672001"})
    with pytest.raises(InputError) as exc:
        read_fhir(_write(tmp_path, _pat(), _cart(), n))
    msg = str(exc.value)
    assert "entry 3" in msg and "valueQuantity.system" in msg and SNOMED in msg
    assert "caret" not in msg  # the old, misleading "write a power of ten with a caret"


def test_non_ucum_dose_unit_with_unreadable_text_names_the_system(tmp_path):
    v = _vaso("2024-03-05T12:00:00Z")
    v["dosage"]["rateQuantity"] = {"value": 0.1, "unit": "mcg per kilo", "system": SNOMED, "code": "123"}
    with pytest.raises(InputError) as exc:
        read_fhir(_write(tmp_path, _pat(), _cart(), v))
    assert "dosage.rateQuantity.system" in str(exc.value) and SNOMED in str(exc.value)


# -- C3: an R5 element says cartlab reads R4 ---------------------------------------------------------------

def test_r5_medication_administration_says_r4(tmp_path):
    r5 = {"resourceType": "MedicationAdministration", "id": "c1", "status": "completed", "subject": P,
          "medication": {"concept": {"text": "tisagenlecleucel"}}, "occurenceDateTime": "2024-03-03T10:00:00Z"}
    with pytest.raises(InputError) as exc:
        read_fhir(_write(tmp_path, _pat(), r5))
    msg = str(exc.value)
    assert "entry 2" in msg and "MedicationAdministration.medication is FHIR R5" in msg and "FHIR R4" in msg
