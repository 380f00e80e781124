"""Review 33 of the FHIR R4 reader: the fixes of A1, B1, B2, B3, B4, B6, B9, A3.

Every expectation is derived by hand from the FHIR R4 text quoted in each test and cartlab's documented
day rule (calendar days from the midnight of day 0, the time's clock as written). Day 0 is a
tisagenlecleucel administration on 2024-03-03T10:00:00Z unless a test says otherwise, so a time on
2024-03-04T10:00:00Z is day 1 + 10/24 = 1.41667.
"""

from __future__ import annotations

import json

import polars as pl
import pytest

from cartlab.errors import InputError
from cartlab.io.fhir import read_fhir, read_fhir_with_report

UCUM = "http://unitsofmeasure.org"
DAR = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
CART_TIME = "2024-03-03T10:00:00Z"


def patient():
    return {"resourceType": "Patient", "id": "P1", "gender": "female"}


def ma(rid, drug, when, status="completed", **extra):
    return {"resourceType": "MedicationAdministration", "id": rid, "status": status,
            "medicationCodeableConcept": {"text": drug}, "subject": {"reference": "Patient/P1"},
            "effectiveDateTime": when, **extra}


def cart(when=CART_TIME, rid="cart", status="completed", dose=None):
    dose = dose or {"value": 2e6, "unit": "cells/kg", "system": UCUM, "code": "{cells}/kg"}
    return ma(rid, "tisagenlecleucel", when, status, dosage={"dose": dose})


def neut(rid, value=0.3, when="2024-03-04T10:00:00Z", status="final", **kw):
    r = {"resourceType": "Observation", "id": rid, "status": status,
         "code": {"coding": [{"system": "http://loinc.org", "code": "751-8"}]},
         "subject": {"reference": "Patient/P1"}, "effectiveDateTime": when, **kw}
    if value is not None:
        r["valueQuantity"] = {"value": value, "system": UCUM, "code": "10*9/L"}
    return r


def bundle(tmp_path, *resources, name="b.json"):
    p = tmp_path / name
    p.write_text(json.dumps({"resourceType": "Bundle", "type": "collection",
                             "entry": [{"resource": r} for r in resources]}))
    return p


def reasons(report: pl.DataFrame) -> list[str]:
    return report.filter(pl.col("reason") != "mapped")["reason"].to_list()


# -- A1: Quantity.comparator "<": "The actual value is less than the given value" (R4 quantity-comparator)
def test_cart_dose_with_comparator_is_not_read_but_still_sets_day0(tmp_path):
    dose = {"value": 2, "comparator": "<", "system": UCUM, "code": "10*6{cells}/kg"}
    st, rep = read_fhir_with_report(bundle(tmp_path, patient(), cart(dose=dose), neut("o1")))
    assert st.doses.height == 0  # never read as exactly 2 x10^6 cells/kg
    assert st.subjects["infusion_datetime"].to_list() == [CART_TIME]  # day 0 from this administration
    assert st.observations["day"].to_list() == pytest.approx([1 + 10 / 24])
    why = [r for r in reasons(rep) if "comparator" in r]
    assert len(why) == 1
    assert "MedicationAdministration/cart" in why[0] and "dosage.dose.comparator '<'" in why[0]


def test_intervention_dose_with_comparator_keeps_the_row_without_a_dose(tmp_path):
    toci = ma("t1", "tocilizumab", "2024-03-04T10:00:00Z",
              dosage={"dose": {"value": 8, "comparator": ">", "system": UCUM, "code": "mg/kg"}})
    st, rep = read_fhir_with_report(bundle(tmp_path, patient(), cart(), toci))
    iv = st.interventions
    assert iv.height == 1 and iv["dose"].to_list() == [None]
    assert iv["start_day"].to_list() == pytest.approx([1 + 10 / 24])
    assert any("MedicationAdministration/t1" in r and "dosage.dose.comparator '>'" in r for r in reasons(rep))


# -- B2: obs-6 "dataAbsentReason SHALL only be present if Observation.value[x] is not present"
def test_data_absent_reason_with_a_value_is_not_read(tmp_path):
    o = neut("o1", value=0, dataAbsentReason={"coding": [{"system": DAR, "code": "error"}]})
    st, rep = read_fhir_with_report(bundle(tmp_path, patient(), cart(), o, neut("o2", 1.2, "2024-03-05T10:00:00Z")))
    assert st.observations["value"].to_list() == [1.2]  # the 0 (profound neutropenia) is not read
    why = [r for r in reasons(rep) if "dataAbsentReason" in r]
    assert len(why) == 1 and "Observation/o1" in why[0] and "'error'" in why[0] and "obs-6" in why[0]


def test_data_absent_reason_alone_is_reported_by_its_reason(tmp_path):  # C2
    o = neut("o1", value=None, dataAbsentReason={"coding": [{"system": DAR, "code": "not-performed"}]})
    st, rep = read_fhir_with_report(bundle(tmp_path, patient(), cart(), o))
    assert st.observations.height == 0
    assert "dataAbsentReason 'not-performed': no result" in reasons(rep)


# -- B1: ObservationStatus preliminary: "data may be incomplete or unverified"
def test_preliminary_and_unknown_observations_are_not_read_by_default(tmp_path):
    def at(h):  # each result at its own hour (one NEUT per time)
        return f"2024-03-04T{h:02d}:00:00Z"
    p = bundle(tmp_path, patient(), cart(), neut("f", 1.1, at(8)), neut("a", 1.2, at(9), status="amended"),
               neut("c", 1.3, at(10), status="corrected"), neut("p", 0.3, at(11), status="preliminary"),
               neut("u", 0.4, at(12), status="unknown"), neut("r", None, at(13), status="registered"))
    st, rep = read_fhir_with_report(p)
    assert sorted(st.observations["value"].to_list()) == [1.1, 1.2, 1.3]
    rs = reasons(rep)
    assert any(r.startswith("status preliminary: not a final result") for r in rs)
    assert any(r.startswith("status unknown: not a final result") for r in rs)
    assert "status registered: not a result" in rs


def test_preliminary_read_when_asked_and_named_in_the_report(tmp_path):
    p = bundle(tmp_path, patient(), cart(), neut("f", 1.1), neut("p", 0.3, "2024-03-05T10:00:00Z", status="preliminary"))
    st = read_fhir(p, observation_statuses=("final", "amended", "corrected", "preliminary"))
    assert sorted(st.observations["value"].to_list()) == [0.3, 1.1]
    assert "mapped (status preliminary)" in st.mapping_report["reason"].to_list()


def test_observation_statuses_refuses_a_status_without_a_result(tmp_path):
    p = bundle(tmp_path, patient(), cart())
    with pytest.raises(InputError, match="observation_statuses: 'registered'"):
        read_fhir(p, observation_statuses=("final", "registered"))


# -- B6: medication-admin-status on-hold "temporarily halted", unknown "does not know which ... applies"
@pytest.mark.parametrize("status", ["on-hold", "unknown"])
def test_cart_on_hold_or_unknown_is_not_day0(tmp_path, status):
    early = cart("2024-03-01T10:00:00Z", rid="early", status=status)
    st, rep = read_fhir_with_report(bundle(tmp_path, patient(), early, cart(), neut("o1")))
    assert st.subjects["infusion_datetime"].to_list() == [CART_TIME]  # the completed one on 03-03
    assert st.observations["day"].to_list() == pytest.approx([1 + 10 / 24])  # not 3.41667 from 03-01
    assert st.doses["day"].to_list() == pytest.approx([10 / 24])
    assert any(r.startswith(f"status {status}: not known to be given") for r in reasons(rep))


# -- B9: a valueQuantity without its value must not abort the read
@pytest.mark.parametrize("q", [{"system": UCUM, "code": "10*9/L"},
                               {"comparator": "<", "system": UCUM, "code": "10*9/L"}])
def test_value_quantity_without_value_is_left_out_and_reported(tmp_path, q):
    o = neut("o1", value=None, valueQuantity=q)
    st, rep = read_fhir_with_report(bundle(tmp_path, patient(), cart(), o, neut("o2", 1.2, "2024-03-05T10:00:00Z")))
    assert st.observations["value"].to_list() == [1.2]
    assert "Observation/o1: valueQuantity.value missing: no result" in reasons(rep)


# -- B4: "a partial date (YYYY or YYYY-MM) is reported, not placed" (docs/interop/fhir.md)
def test_partial_period_end_keeps_the_start(tmp_path):
    toci = ma("t1", "tocilizumab", None, dosage={"dose": {"value": 8, "system": UCUM, "code": "mg/kg"}})
    del toci["effectiveDateTime"]
    toci["effectivePeriod"] = {"start": "2024-03-04T10:00:00Z", "end": "2024-03"}
    st, rep = read_fhir_with_report(bundle(tmp_path, patient(), cart(), toci))
    iv = st.interventions
    assert iv["start_day"].to_list() == pytest.approx([1 + 10 / 24])
    assert iv["end_day"].to_list() == [None] and iv["dose"].to_list() == [8.0]
    assert any("MedicationAdministration/t1" in r and "effectivePeriod.end '2024-03'" in r and "end not placed" in r
               for r in reasons(rep))


# -- B3: Observation.component has its own referenceRange and dataAbsentReason (R4 Observation)
def test_component_reference_range_and_data_absent_reason(tmp_path):
    sys_, dia = "8480-6", "8462-4"
    panel = {"resourceType": "Observation", "id": "bp", "status": "final",
             "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
             "subject": {"reference": "Patient/P1"}, "effectiveDateTime": "2024-03-04T10:00:00Z",
             "component": [
                 {"code": {"coding": [{"system": "http://loinc.org", "code": sys_}]},
                  "valueQuantity": {"value": 85, "system": UCUM, "code": "mm[Hg]"},
                  "referenceRange": [{"low": {"value": 90, "system": UCUM, "code": "mm[Hg]"},
                                      "high": {"value": 140, "system": UCUM, "code": "mm[Hg]"}}]},
                 {"code": {"coding": [{"system": "http://loinc.org", "code": dia}]},
                  "dataAbsentReason": {"coding": [{"system": DAR, "code": "unknown"}]}}]}
    st, rep = read_fhir_with_report(bundle(tmp_path, patient(), cart(), panel))
    o = st.observations
    assert o["param"].to_list() == ["SYSBP"]
    assert o["lln"].to_list() == [90.0] and o["uln"].to_list() == [140.0]
    assert "component[1].dataAbsentReason 'unknown': no result" in reasons(rep)


# -- A3: offsets differ within a subject: warned, naming the subject and the offsets
def test_mixed_utc_offsets_are_warned(tmp_path):
    # infusion 23:30 at -05:00, NEUT 04:40Z (10 min later): the days follow each clock as written
    p = bundle(tmp_path, patient(), cart("2024-03-03T23:30:00-05:00"), neut("o1", when="2024-03-04T04:40:00Z"))
    st, rep = read_fhir_with_report(p)
    assert st.observations["day"].to_list() == pytest.approx([1 + (4 + 40 / 60) / 24])  # documented rule
    msg = [w.message for w in st.warnings if "UTC offsets" in w.message]
    assert len(msg) == 1 and "subject P1" in msg[0] and "(-05:00, Z)" in msg[0]
    assert any("subject P1" in r and "UTC offsets" in r for r in reasons(rep))


def test_same_offset_is_not_warned(tmp_path):
    # +00:00 is the same offset as Z
    p = bundle(tmp_path, patient(), cart(), neut("o1", when="2024-03-04T10:00:00+00:00"))
    st, rep = read_fhir_with_report(p)
    assert not [w for w in st.warnings if "UTC offsets" in w.message]
    assert not [r for r in reasons(rep) if "UTC offsets" in r]


def test_a_version_specific_subject_reference_is_the_patient(tmp_path):
    """B7: "Patient/P1/_history/1" refers to version 1 of Patient P1 (R4 References: a reference
    may be version-specific); the NEUT 0.4 on 2024-03-05T10:00Z is P1's, day 2 + 10/24 (days count from
    midnight of the day-0 date, docs/interop/fhir.md)."""
    o = neut("o2", value=0.4, when="2024-03-05T10:00:00Z")
    o["subject"] = {"reference": "Patient/P1/_history/1"}
    s = read_fhir(bundle(tmp_path, patient(), cart(), o))
    r = s.observations.filter(pl.col("param") == "NEUT").row(0, named=True)
    assert (r["subject_id"], r["value"]) == ("P1", 0.4) and r["day"] == pytest.approx(2 + 10 / 24)


def test_a_rate_ratio_is_reported_not_silently_dropped(tmp_path):
    """B8: dosage.rateRatio (5 mg / 1 h; R4 Dosage.rate[x] = Ratio | Range | Quantity) is not read:
    the intervention keeps its row with the dose empty and the report says so (session 33)."""
    toci = ma("t2", "tocilizumab", "2024-03-04T11:00:00Z", dosage={"rateRatio": {
        "numerator": {"value": 5, "system": UCUM, "code": "mg"}, "denominator": {"value": 1, "system": UCUM, "code": "h"}}})
    st, rep = read_fhir_with_report(bundle(tmp_path, patient(), cart(), toci))
    assert st.interventions.height == 1 and st.interventions["dose"].to_list() == [None]
    assert any("MedicationAdministration/t2" in r and "dosage.rateRatio not read" in r for r in reasons(rep))


def test_ucum_products_and_reciprocals_are_read(tmp_path):
    """C7: UCUM §2.2 "." is multiplication and "-1" an exponent: "10*9.L-1" is 10^9/L (a NEUT of 0.3
    in it is 0.3 x10^9/L) and "mmol.L-1" mmol/L; they were refused as unknown units (session 33)."""
    from cartlab.io.fhir.mapping import load_mapping

    m = load_mapping()
    assert (m.unit_from_ucum("mmol.L-1"), m.unit_from_ucum("ug.kg-1.min-1")) == ("mmol/L", "ug/kg/min")
    o = neut("o3")
    o["valueQuantity"] = {"value": 0.3, "system": UCUM, "code": "10*9.L-1"}
    st = read_fhir(bundle(tmp_path, patient(), cart(), o))
    assert st.observations.filter(pl.col("param") == "NEUT")["value"].to_list() == [0.3]
