"""read_fhir on a small hand-written Bundle (tests/fixtures/fhir/small_bundle.json).

Every expected number below is converted by hand from the fixture, not taken from the program:
day 0 = the date of the CAR-T administration 2024-03-01T11:00+01:00, i.e. 1 March; a time's day is
counted from that date's midnight on the clock as written (offsets not applied: study format v1,
"day 14.5 is noon of day 14"; cartlab.io.clock).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from cartlab.io.fhir import read_fhir, read_fhir_with_report

FIXTURE = Path(__file__).parent / "fixtures" / "fhir" / "small_bundle.json"


@pytest.fixture(scope="module")
def small():
    return read_fhir_with_report(FIXTURE)


def _obs(study, param):
    return study.observations.filter(pl.col("param") == param).row(0, named=True)


def test_temperature_degF_to_celsius(small):
    t = _obs(small[0], "TEMP")
    assert t["value"] == pytest.approx(38.5)  # (101.3 - 32) * 5/9 = 38.5
    assert t["unit"] == "degC"
    assert t["orig_value"] == 101.3 and t["orig_unit"] == "degF"
    assert t["day"] == pytest.approx(1 + 22 / 24)  # 2024-03-02T22:00: 22:00 on day 1


def test_anc_per_uL_to_1e9_per_L_with_reference_range(small):
    a = _obs(small[0], "NEUT")
    assert a["value"] == pytest.approx(1.5)  # 1500 /uL = 1.5e9/L
    assert a["lln"] == pytest.approx(1.8)  # 1800 /uL
    assert a["uln"] == pytest.approx(7.7)  # 7.7 10*3/uL, first converted to /uL (7700), then 7.7
    assert a["day"] == pytest.approx(2 + 10 / 24)  # 2024-03-03T10:00Z: 10:00 on day 2


def test_crp_mg_dL_and_date_only_time(small):
    c = _obs(small[0], "CRP")
    assert c["value"] == pytest.approx(52.0)  # 5.2 mg/dL = 52 mg/L
    assert c["day"] == pytest.approx(1.0)  # 2024-03-02 (a date alone): day 1, not 14 h after the infusion


def test_subject_from_patient_and_weight_observation(small):
    s = small[0].subjects.row(0, named=True)
    assert s["subject_id"] == "P1" and s["sex"] == "F"
    assert s["age_years"] == 43.0  # born 1980-06-15, day 0 2024-03-01: 43 completed years
    assert s["weight_kg"] == pytest.approx(154 * 0.45359237)  # 154 lb, the last weight before day 0
    assert s["infusion_datetime"] == "2024-03-01T11:00:00+01:00"


def test_doses_and_interventions(small):
    study = small[0]
    d = study.doses.sort("day")
    assert d["agent"].to_list() == ["fludarabine", "tisagenlecleucel"]
    # 2024-02-26T10:00Z: 2024 is a leap year, 26 Feb is 4 days before 1 March -> -4 + 10/24;
    # the CAR-T at 11:00+01:00 on 1 March -> 11/24 (kinetics measure time from it)
    assert d["day"].to_list() == pytest.approx([-4 + 10 / 24, 11 / 24])
    assert d.row(1, named=True)["unit"] == "cells/kg" and d.row(1, named=True)["dose"] == 2e6
    iv = {r["category"]: r for r in study.interventions.iter_rows(named=True)}
    assert iv["tocilizumab"]["dose"] == 8 and iv["tocilizumab"]["dose_unit"] == "mg/kg"
    assert iv["tocilizumab"]["indication"] == "CRS"
    assert iv["vasopressor"]["agent"] == "norepinephrine" and iv["vasopressor"]["dose_unit"] == "ug/kg/min"
    assert (iv["vasopressor"]["start_day"], iv["vasopressor"]["end_day"]) == pytest.approx((2 + 10 / 24, 3 + 10 / 24))
    assert iv["oxygen"]["o2_device"] == "nasal_cannula"


def test_events_relapse_and_death(small):
    ev = {r["event"]: r for r in small[0].events.iter_rows(named=True)}
    assert ev["relapse"]["day"] == pytest.approx(60.0)  # 2024-04-30: 31 days of March + 29 of April
    assert ev["death"]["day"] == pytest.approx(92.0)  # 2024-06-01T00:00Z: 31 + 30 + 31 days


def test_provenance_and_sources(small):
    study = small[0]
    t = _obs(study, "TEMP")
    assert (t["src_file"], t["src_row"]) == ("small_bundle.json", 4)
    assert study.sources.row(0, named=True)["format"] == "fhir-json"


def test_mapping_report_accounts_for_every_entry(small):
    _, report = small
    # 14 entries: 13 mapped or reported + the specimen-less rows; every entry index appears
    seen = {int(i) for e in report["entries"] for i in e.split(",") if i}
    assert seen == set(range(1, 15))
    skipped = report.filter(pl.col("reason") != "mapped")
    reasons = " | ".join(skipped["reason"])
    assert "code not in the FHIR code map" in reasons  # 99999-9
    assert "recorded CRS/ICANS diagnosis" in reasons  # the CRS Condition
    assert "resource type Encounter is not read" in reasons


def test_folder_and_ndjson(tmp_path):
    shutil.copy(FIXTURE, tmp_path / "a.json")
    assert read_fhir(tmp_path).observations.height == 4  # TEMP, NEUT, CRP, WEIGHT
    import json

    entries = json.loads(FIXTURE.read_text())["entry"]
    nd = tmp_path / "b" / "x.ndjson"
    nd.parent.mkdir()
    nd.write_text("\n".join(json.dumps(e["resource"]) for e in entries[:1] + entries[1:]))
    # the Patient is referenced as Patient/P1 except by the CAR-T entry's urn:uuid (needs a Bundle)
    with pytest.raises(Exception, match="x.ndjson, entry 3"):
        read_fhir(nd)


def test_mass_concentration_loinc_read_with_molar_mass(tmp_path):
    """Creatinine 1 mg/dL under LOINC 2160-0 (mass/volume) = 88.4 umol/L (the conventional factor of
    params_v1.yaml; 113.12 g/mol would give 88.4017); the writer then uses the cartlab code, not 2160-0."""
    import json

    from cartlab.io.fhir import build_bundle

    b = json.loads(FIXTURE.read_text())
    b["entry"].append({"resource": {
        "resourceType": "Observation", "id": "cr", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0"}]},
        "subject": {"reference": "Patient/P1"}, "effectiveDateTime": "2024-03-03T10:00:00Z",
        "valueQuantity": {"value": 1.0, "system": "http://unitsofmeasure.org", "code": "mg/dL"}}})
    p = tmp_path / "cr.json"
    p.write_text(json.dumps(b))
    study = read_fhir(p)
    assert _obs(study, "CREAT")["value"] == pytest.approx(88.4, rel=1e-12)
    out = build_bundle(study)
    cr = [e["resource"] for e in out["entry"] if e["resource"].get("code", {}).get("text") == "CREAT"]
    assert cr[0]["code"]["coding"][0]["code"] == "CREAT"
