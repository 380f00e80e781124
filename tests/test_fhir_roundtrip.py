"""FHIR R4 out and back in: the seed case survives write_fhir_bundle -> read_fhir unchanged."""

from __future__ import annotations

import json

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cartlab.datasets import seed_case
from cartlab.io.fhir import read_fhir, write_fhir_bundle
from cartlab.model import PROVENANCE_COLUMNS, TABLES

pytest.importorskip("fhir.resources")


def _strip(df: pl.DataFrame) -> pl.DataFrame:
    return df.drop(list(PROVENANCE_COLUMNS))


@pytest.fixture(scope="module")
def seed_round_trip(tmp_path_factory):
    seed = seed_case()
    path = write_fhir_bundle(seed, tmp_path_factory.mktemp("fhir") / "seed.json")
    return seed, read_fhir(path), path


@pytest.mark.parametrize("table", list(TABLES))
def test_seed_round_trip_every_canonical_row(seed_round_trip, table):
    seed, back, _ = seed_round_trip
    assert back.table(table).height == seed.table(table).height
    assert_frame_equal(_strip(back.table(table)), _strip(seed.table(table)))


def test_seed_round_trip_provenance_names_bundle_and_entry(seed_round_trip):
    _, back, path = seed_round_trip
    bundle = json.loads(path.read_text())
    obs = back.observations
    assert set(obs["src_file"]) == {"seed.json"}
    # every src_row is the 1-based index of an Observation entry of the bundle
    for row in obs.head(20).iter_rows(named=True):
        assert bundle["entry"][row["src_row"] - 1]["resource"]["resourceType"] == "Observation"
    assert back.sources.row(0, named=True)["format"] == "fhir-json"
    assert back.sources["file"].to_list() == ["seed.json"]


def test_seed_bundle_uses_loinc_and_canonical_ucum(seed_round_trip):
    _, _, path = seed_round_trip
    bundle = json.loads(path.read_text())
    temps = [e["resource"] for e in bundle["entry"]
             if e["resource"]["resourceType"] == "Observation" and e["resource"]["code"]["text"] == "TEMP"]
    # LOINC 8310-5 body temperature, UCUM Cel (loinc_map.yaml), value in the canonical unit
    assert temps and all(t["code"]["coding"][0] == {"system": "http://loinc.org", "code": "8310-5",
                                                    "display": "Body temperature"} for t in temps)
    assert all(t["valueQuantity"]["code"] == "Cel" for t in temps)


def test_days_only_study_uses_documented_anchor(seed_round_trip):
    """A study without calendar dates: day 0 is 2000-01-01T00:00:00Z, so day -7 is 1999-12-25 (a whole
    day: written as a FHIR date, session 36)."""
    _, back, path = seed_round_trip
    bundle = json.loads(path.read_text())
    first = next(e["resource"] for e in bundle["entry"] if e["resource"]["id"] == "obs-1")
    assert first["effectiveDateTime"] == "1999-12-25"  # day -7 (seed row 1), by hand
    assert back.observations["datetime"].null_count() == back.observations.height  # none invented


def test_dated_study_round_trip(tmp_path):
    """With an infusion date the datetimes written are real; rows that gave only a day keep only a day."""
    seed = seed_case()
    subjects = seed.subjects.with_columns(pl.lit("2024-03-01").alias("infusion_date"))
    obs = seed.observations.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("2024-02-23T08:30:00")).otherwise(None).alias("datetime"),
        pl.when(pl.int_range(pl.len()) == 0).then(-7 + 8.5 / 24).otherwise(pl.col("day")).alias("day"),
    )
    dated = type(seed)(study_id="dated", subjects=subjects, doses=seed.doses, observations=obs,
                       interventions=seed.interventions, events=seed.events)
    path = write_fhir_bundle(dated, tmp_path / "dated.json")
    back = read_fhir(path)
    bundle = json.loads(path.read_text())
    assert bundle["entry"][0]["resource"]["extension"][0]["valueDateTime"] == "2024-03-01"  # the date as given
    assert bundle["entry"][3]["resource"]["effectiveDateTime"] == "2024-02-23T08:30:00Z"
    for t in TABLES:
        assert_frame_equal(_strip(back.table(t)), _strip(dated.table(t)))


def test_an_intervention_without_an_agent_keeps_none(tmp_path):
    """The writer must name a medication (FHIR medication[x] is 1..1): an intervention without an
    agent is written with its category as the text; reading it back gives no agent again, not an
    agent called "vasopressor" (which the CRS engines would read as an unknown drug name)."""
    seed = seed_case()
    itv = seed.interventions.with_columns(
        pl.when(pl.col("category") == "vasopressor").then(None).otherwise(pl.col("agent")).alias("agent"))
    assert itv.filter(pl.col("category") == "vasopressor").height > 0
    study = type(seed)(study_id="noagent", subjects=seed.subjects, doses=seed.doses, observations=seed.observations,
                       interventions=itv, events=seed.events)
    back = read_fhir(write_fhir_bundle(study, tmp_path / "noagent.json"))
    assert_frame_equal(_strip(back.interventions), _strip(study.interventions))
