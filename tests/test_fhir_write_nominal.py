"""FHIR export: references by fullUrl, scores with a UCUM unit, days-only subjects' times marked nominal
(export audit, session 26, findings 8-10)."""

from __future__ import annotations

import json

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cartlab.datasets import seed_case
from cartlab.io.fhir import read_fhir, write_fhir_bundle
from cartlab.model import PROVENANCE_COLUMNS, TABLES

pytest.importorskip("fhir.resources")


def _study(dated: bool, death_day: float | None = None):
    seed = seed_case()
    subjects = seed.subjects
    if dated:
        subjects = subjects.with_columns(pl.lit("2024-03-01").alias("infusion_date"))
    events = seed.events
    if death_day is not None:
        row = {c: None for c in events.columns} | {"subject_id": seed.subject_ids[0], "day": death_day,
                                                      "event": "death"}
        events = pl.concat([events, pl.DataFrame([row], schema=events.schema)])
    return type(seed)(study_id="s", subjects=subjects, doses=seed.doses, observations=seed.observations,
                      interventions=seed.interventions, events=events)


def _bundle(study, tmp_path):
    path = write_fhir_bundle(study, tmp_path / "b.json")
    return path, json.loads(path.read_text())


def test_subject_references_are_the_patient_full_url(tmp_path):
    """FHIR R4 Bundle: a relative reference resolves only against a RESTful fullUrl; these are urn:uuid."""
    _, b = _bundle(_study(dated=True), tmp_path)
    patients = [e for e in b["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert len(patients) == 1 and patients[0]["fullUrl"].startswith("urn:uuid:")
    refs = {e["resource"]["subject"]["reference"] for e in b["entry"] if "subject" in e["resource"]}
    assert refs == {patients[0]["fullUrl"]}


def test_scores_carry_ucum_score_annotation(tmp_path):
    """ICE (0-10) is a score: UCUM annotation {score} (dimensionless), system unitsofmeasure.org."""
    path, b = _bundle(_study(dated=True), tmp_path)
    ice = [e["resource"] for e in b["entry"]
           if e["resource"]["resourceType"] == "Observation" and e["resource"]["code"]["text"] == "ICE"]
    assert ice, "the seed case has ICE rows"
    for r in ice:
        assert r["valueQuantity"]["system"] == "http://unitsofmeasure.org"
        assert r["valueQuantity"]["code"] == "{score}"
    back = read_fhir(path)
    seed_ice = seed_case().observations.filter(pl.col("param") == "ICE")["value"].to_list()
    assert back.observations.filter(pl.col("param") == "ICE")["value"].to_list() == seed_ice


def test_days_only_subject_times_are_tagged_nominal(tmp_path):
    """No infusion date: every resource of the subject says its times are on the nominal anchor, and
    the death is not given a calendar date (deceasedBoolean; the day travels on the death Condition)."""
    study = _study(dated=False, death_day=40.0)
    path, b = _bundle(study, tmp_path)
    for e in b["entry"]:
        tags = (e["resource"].get("meta") or {}).get("tag") or []
        assert [t["code"] for t in tags] == ["nominal-time"], e["resource"]["id"]
    patient = next(e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == "Patient")
    assert patient.get("deceasedBoolean") is True and "deceasedDateTime" not in patient
    back = read_fhir(path)
    for t in TABLES:  # the round trip still gives every row back, the death on day 40
        assert_frame_equal(back.table(t).drop(list(PROVENANCE_COLUMNS)),
                           study.table(t).drop(list(PROVENANCE_COLUMNS)))


def test_dated_subject_is_not_tagged_and_keeps_its_death_date(tmp_path):
    _, b = _bundle(_study(dated=True, death_day=40.0), tmp_path)
    assert not any((e["resource"].get("meta") or {}).get("tag") for e in b["entry"])
    patient = next(e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == "Patient")
    assert patient["deceasedDateTime"].startswith("2024-04-10")  # 2024-03-01 + 40 days, by hand
