"""FHIR interop audit 2 (s28): findings 1, 2, 6, 7 and 10, on small hand-made inputs.

Every expected value is derived by hand from the FHIR R4 / UCUM specification, the study-folder
format (shared/spec/study-format.md) or docs/interop/fhir.md; the sentence relied on is quoted.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from cartlab.errors import InputError
from cartlab.io.fhir import read_fhir, read_fhir_with_report
from cartlab.io.fhir.writer import build_bundle
from cartlab.io.study_folder import read_study

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
FLAG = "https://cartlab.invalid/fhir/CodeSystem/flag"
NOMINAL = {"meta": {"tag": [{"system": FLAG, "code": "nominal-time"}]}}
DOCS = Path(__file__).resolve().parents[1] / "docs" / "interop" / "fhir.md"


def _write(tmp_path: Path, resources, name: str = "b.json") -> Path:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    p = tmp_path / name
    p.write_text(json.dumps(bundle), encoding="utf-8")
    return p


def _patient(pid: str, **extra) -> dict:
    return {"resourceType": "Patient", "id": pid, "gender": "male", **extra}


def _cart(rid: str, pid: str, when: str, **extra) -> dict:
    return {"resourceType": "MedicationAdministration", "id": rid, "status": "completed",
            "medicationCodeableConcept": {"text": "tisagenlecleucel"}, "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": when,
            "dosage": {"dose": {"value": 1e6, "unit": "cells/kg", "system": UCUM, "code": "{cells}/kg"}}, **extra}


def _neut(rid: str, pid: str, when: str, value: float, code: str, rng: str | None = None, **extra) -> dict:
    res = {"resourceType": "Observation", "id": rid, "status": "final",
           "code": {"coding": [{"system": LOINC, "code": "751-8"}]}, "subject": {"reference": f"Patient/{pid}"},
           "effectiveDateTime": when, "valueQuantity": {"value": value, "system": UCUM, "code": code}, **extra}
    if rng:
        res["referenceRange"] = [{"low": {"value": 1.8, "system": UCUM, "code": rng},
                                  "high": {"value": 7.5, "system": UCUM, "code": rng}}]
    return res


# -- finding 1: the nominal-time meta.tag ---------------------------------------------------------------

def test_nominal_time_subject_gets_no_calendar_anchor(tmp_path):
    """A partner server returned cartlab's export without the extensions: P2 is days-only, P1 is dated.

    fhir.md, "Days-only studies": "day 0 is anchored at 2000-01-01T00:00:00Z ...; every resource time is
    anchor + day. Every resource of such a subject carries meta.tag ...#nominal-time so that no receiving
    system reads these times as calendar dates." So P2 has no infusion_date/datetime, NEUT on 2000-01-04
    is day 3 (Jan 4 - Jan 1), TEMP at 2000-01-02T12:00 is day 1.5, the death on 2000-01-21 is day 20,
    and none of these rows has a datetime. P1 (no tag) keeps its calendar day 0: "Day 0 is the first CAR-T
    MedicationAdministration ...; its effective time is also written to subjects.infusion_datetime".
    """
    temp = {"resourceType": "Observation", "id": "t2", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "8310-5"}]}, "subject": {"reference": "Patient/P2"},
            "effectiveDateTime": "2000-01-02T12:00:00Z", "valueQuantity": {"value": 38.4, "system": UCUM, "code": "Cel"},
            **NOMINAL}
    death = {"resourceType": "Condition", "id": "d2", "subject": {"reference": "Patient/P2"},
             "code": {"coding": [{"system": "https://cartlab.invalid/fhir/CodeSystem/event", "code": "death"}]},
             "onsetDateTime": "2000-01-21T00:00:00Z", **NOMINAL}
    p = _write(tmp_path, [
        _patient("P1"), _cart("c1", "P1", "2021-05-10T14:00:00Z"),
        _neut("n1", "P1", "2021-05-12", 0.3, "10*9/L"),
        _patient("P2", deceasedBoolean=True, **NOMINAL), _cart("c2", "P2", "2000-01-01T00:00:00Z", **NOMINAL),
        _neut("n2", "P2", "2000-01-04T00:00:00Z", 0.1, "10*9/L", **NOMINAL), temp, death,
    ])
    s = read_fhir(p)
    subj = {r["subject_id"]: r for r in s.subjects.iter_rows(named=True)}
    assert subj["P2"]["infusion_date"] is None and subj["P2"]["infusion_datetime"] is None
    assert subj["P1"]["infusion_datetime"] == "2021-05-10T14:00:00Z"
    obs = s.observations.filter(pl.col("subject_id") == "P2").sort("day")
    assert obs.select("param", "day", "datetime").rows() == [("TEMP", 1.5, None), ("NEUT", 3.0, None)]
    ev = s.events.filter(pl.col("subject_id") == "P2")
    assert ev.select("event", "day", "datetime").rows() == [("death", 20.0, None)]
    dose = s.doses.filter(pl.col("subject_id") == "P2")
    assert dose.select("day", "datetime").rows() == [(0.0, None)]
    # P1: 2021-05-12 is two calendar days after the 2021-05-10 infusion ("days are calendar days")
    assert s.observations.filter(pl.col("subject_id") == "P1")["day"].to_list() == [2.0]


def test_nominal_tag_on_the_resources_only_also_counts(tmp_path):
    """The tag on the subject's other resources (not on the Patient): "Every resource of such a subject
    carries meta.tag" - any of them says the subject's times are nominal. The CAR-T at the nominal anchor
    2000-01-01 is day 0, a NEUT at 2000-01-08 is day 7, and the birthDate is not turned into an age on a
    nominal date (age_years is "age at infusion", and the infusion has no calendar date)."""
    p = _write(tmp_path, [
        _patient("P3", birthDate="1990-06-01"), _cart("c3", "P3", "2000-01-01T00:00:00Z", **NOMINAL),
        _neut("n3", "P3", "2000-01-08T00:00:00Z", 0.7, "10*9/L", **NOMINAL),
    ])
    s, report = read_fhir_with_report(p)
    row = s.subjects.row(0, named=True)
    assert (row["infusion_date"], row["infusion_datetime"], row["age_years"]) == (None, None, None)
    assert s.observations.select("day", "datetime").rows() == [(7.0, None)]
    assert report.filter(pl.col("code") == "birthDate").height == 1


# -- finding 2: the CAR-T MedicationAdministration carries subjects.infusion_datetime's clock time -------

def _timed_study(tmp_path: Path):
    d = tmp_path / "study"
    d.mkdir()
    (d / "subjects.csv").write_text("subject_id,sex,infusion_date,infusion_datetime\nP01,F,2021-05-10,2021-05-10T14:00\n")
    (d / "doses.csv").write_text("subject_id,day,agent,dose,unit\nP01,-5,fludarabine,30,mg/m2\nP01,0,CAR-T,2000000,cells/kg\n")
    return read_study(d, study_id="s28")


def test_export_writes_the_infusion_clock_time_on_the_cart_administration(tmp_path):
    """fhir.md: "Day 0 is the first CAR-T MedicationAdministration ...; its effective time is also
    written to subjects.infusion_datetime", and "a datetime is written with its date, clock time and
    offset as given (FHIR needs an offset with a time of day: `Z` is added to one written without)".
    infusion_datetime 2021-05-10T14:00 -> the day-0 CAR-T MA reads 2021-05-10T14:00:00Z. The day-only
    fludarabine is a FHIR date (R4 dateTime: "A date, date-time or partial date"; session 36, review36
    B5: no invented midnight UTC): day -5 = 2021-05-05."""
    study = _timed_study(tmp_path)
    ma = {e["resource"]["medicationCodeableConcept"]["text"]: e["resource"]["effectiveDateTime"]
          for e in build_bundle(study)["entry"] if e["resource"]["resourceType"] == "MedicationAdministration"}
    assert ma == {"fludarabine": "2021-05-05", "CAR-T": "2021-05-10T14:00:00Z"}


def test_infusion_clock_time_survives_for_a_receiver_without_extensions(tmp_path):
    """Standard fields only: infusion_datetime is the CAR-T MA's time (2021-05-10T14:00:00Z) and that
    dose's day is 14 h / 24 h = 0.583333 ("day 14.5 is noon of day 14"). With cartlab's extensions the
    study folder comes back unchanged: the CAR-T dose on day 0 with no datetime of its own."""
    study = _timed_study(tmp_path)
    bundle = build_bundle(study)
    p = tmp_path / "with_ext.json"
    p.write_text(json.dumps(bundle), encoding="utf-8")
    back = read_fhir(p)
    assert back.doses.sort("day").select("agent", "day", "datetime").rows() == [
        ("fludarabine", -5.0, None), ("CAR-T", 0.0, None)]
    assert back.subjects["infusion_datetime"].to_list() == ["2021-05-10T14:00"]
    for e in bundle["entry"]:
        e["resource"].pop("extension", None)
    q = tmp_path / "no_ext.json"
    q.write_text(json.dumps(bundle), encoding="utf-8")
    bare = read_fhir(q)
    assert bare.subjects["infusion_datetime"].to_list() == ["2021-05-10T14:00:00Z"]
    cart = bare.doses.filter(pl.col("agent") == "CAR-T")
    assert cart["day"].to_list() == [pytest.approx(14 / 24)]


# -- finding 6: UCUM annotations -------------------------------------------------------------------------

def test_ucum_annotations_do_not_change_the_unit(tmp_path):
    """UCUM §6 "curly braces": "Annotations do not contribute to the semantics of the unit but are
    meaningless by definition" and "An annotation without a leading symbol implies the default unit 1
    (the unity)". So 0.8 10*9{cells}/L = 0.8 10*9/L = 0.8 x10^9/L (range 1.8-7.5 in the same unit), and
    8e8 {cells}/L = 8e8 1/L = 0.8 x10^9/L."""
    p = _write(tmp_path, [
        _patient("P1"), _cart("c1", "P1", "2021-05-10T14:00:00Z"),
        _neut("a", "P1", "2021-05-11", 0.8, "10*9{cells}/L", rng="10*9{cells}/L"),
        _neut("b", "P1", "2021-05-12", 8e8, "{cells}/L"),
    ])
    o = read_fhir(p).observations.sort("day")
    assert o["value"].to_list() == [pytest.approx(0.8), pytest.approx(0.8)]
    assert o["unit"].to_list() == ["10^9/L", "10^9/L"]
    assert (o["lln"][0], o["uln"][0]) == (pytest.approx(1.8), pytest.approx(7.5))


def test_score_annotation_stays_the_unitless_score(tmp_path):
    """`{score}` alone is a score (fhir.md: "scores such as ICE, CAPD and ECOG: `{score}`"), read as
    cartlab's unitless unit: ICE 6 {score} = 6 with unit ""; and 0.8 10*9{cells}/L still reads in the same
    Bundle (the annotation rule must not break the listed codes)."""
    ice = {"resourceType": "Observation", "id": "ice", "status": "final",
           "code": {"coding": [{"system": "https://cartlab.invalid/fhir/CodeSystem/param", "code": "ICE"}]},
           "subject": {"reference": "Patient/P1"}, "effectiveDateTime": "2021-05-12",
           "valueQuantity": {"value": 6, "system": UCUM, "code": "{score}"}}
    p = _write(tmp_path, [_patient("P1"), _cart("c1", "P1", "2021-05-10T14:00:00Z"), ice,
                          _neut("a", "P1", "2021-05-11", 0.8, "10*9{cells}/L")])
    o = read_fhir(p).observations.sort("param")
    assert o.select("param", "value", "unit").rows() == [("ICE", 6.0, ""), ("NEUT", pytest.approx(0.8), "10^9/L")]


# -- finding 7: a value in a unit of another dimension is the value's problem ------------------------------

def test_value_unit_of_wrong_dimension_names_the_value_field(tmp_path):
    """NEUT (canonical 10^9/L, a count per volume; study-format: "WBC, NEUT, LYM, MONO ... 10^9/L | /uL,
    cells/uL, /mm3, 10^3/uL") reported in mg/dL (mass per volume) cannot be converted; the range is in
    10*9/L and is fine. FHIR Quantity.code is the "Coded form of the unit": the error must name the
    entry, the field valueQuantity.unit/code, the unit mg/dL and the param NEUT, not the referenceRange."""
    p = _write(tmp_path, [_patient("P1"), _neut("o1", "P1", "2021-05-10", 0.8, "mg/dL", rng="10*9/L"),
                          _cart("c1", "P1", "2021-05-10T14:00:00Z")])
    with pytest.raises(InputError) as err:
        read_fhir(p)
    msg = str(err.value)
    assert "b.json, entry 2 (Observation/o1)" in msg
    assert "valueQuantity.code 'mg/dL' is not a unit of NEUT" in msg  # session 34: the element's path
    assert "referenceRange" not in msg


# -- finding 10: fhir.md lists what travels only in the cartlab extension ---------------------------------

def test_docs_list_every_field_lost_without_the_cartlab_extension(tmp_path):
    """A receiver that drops extensions keeps only the standard fields. Written by hand from the writer:
    subjects age_years, disease, target, last_followup_day (Patient row extension; no birthDate is written),
    events attribution, interventions o2_flow_lpm and fio2, observations analyte (each a row-extension
    sub-extension only). Reading the Bundle back without extensions loses them; fhir.md must name each."""
    d = tmp_path / "study"
    d.mkdir()
    (d / "subjects.csv").write_text("subject_id,sex,age_years,disease,target,infusion_date,last_followup_day\n"
                                    "P01,F,45,AML,CD7,2021-05-10,60\n")
    (d / "doses.csv").write_text("subject_id,day,agent,dose,unit\nP01,0,CAR-T,2000000,cells/kg\n")
    (d / "interventions.csv").write_text("subject_id,start_day,end_day,category,agent,o2_device,o2_flow_lpm,fio2,indication\n"
                                         "P01,2,3,oxygen,oxygen,nasal_cannula,4,0.3,CRS\n")
    (d / "events.csv").write_text("subject_id,day,event,detail,attribution\nP01,45,death,progression,other\n")
    bundle = build_bundle(read_study(d, study_id="s28"))
    for e in bundle["entry"]:
        e["resource"].pop("extension", None)
    p = tmp_path / "no_ext.json"
    p.write_text(json.dumps(bundle), encoding="utf-8")
    back = read_fhir(p)
    subj = back.subjects.row(0, named=True)
    assert [subj[c] for c in ("age_years", "disease", "target", "last_followup_day")] == [None] * 4
    assert back.events["attribution"].to_list() == [None]
    assert back.interventions.select("o2_flow_lpm", "fio2").rows() == [(None, None)]
    text = DOCS.read_text(encoding="utf-8")
    section = re.search(r"### Only in the cartlab extension(.*?)(\n## |\n### )", text, re.DOTALL)
    assert section, "fhir.md needs a section 'Only in the cartlab extension'"
    for field in ("age_years", "disease", "target", "last_followup_day", "attribution", "o2_flow_lpm", "fio2",
                  "analyte", "source", "orig_value"):
        assert f"`{field}`" in section.group(1) or re.search(rf"\b{field}\b", section.group(1)), field
