"""Malformed FHIR input: always one InputError naming the file (and the entry), never another
exception; the writer leaves nothing behind on an error."""

from __future__ import annotations

import copy
import json
import string
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cartlab.datasets import seed_case
from cartlab.errors import InputError
from cartlab.io.fhir import read_fhir, write_fhir_bundle

FIXTURE = Path(__file__).parent / "fixtures" / "fhir" / "small_bundle.json"
BASE = json.loads(FIXTURE.read_text())
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TEMP_ENTRY = 4  # 1-based index of the temperature Observation in the fixture


def _write(tmp_path: Path, obj, name="b.json") -> Path:
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return p


def _with_temp(change) -> dict:
    b = copy.deepcopy(BASE)
    change(b["entry"][TEMP_ENTRY - 1]["resource"])
    return b


@SETTINGS
@given(data=st.binary(min_size=0, max_size=200))
def test_random_bytes(tmp_path, data):
    p = tmp_path / "junk.json"
    p.write_bytes(data)
    try:
        json.loads(data.decode("utf-8"))
        return  # valid JSON by chance: other tests cover structure
    except (UnicodeDecodeError, json.JSONDecodeError):
        pass
    with pytest.raises(InputError, match="junk.json"):
        read_fhir(p)


@SETTINGS
@given(rtype=st.text(alphabet=string.ascii_letters, min_size=1, max_size=12))
def test_wrong_resource_type(tmp_path, rtype):
    if rtype in ("Observation",):
        return
    b = _with_temp(lambda r: r.update(resourceType=rtype))
    with pytest.raises(InputError, match=f"b.json, entry {TEMP_ENTRY}"):
        read_fhir(_write(tmp_path, b))


def test_missing_subject_reference(tmp_path):
    b = _with_temp(lambda r: r.pop("subject"))
    with pytest.raises(InputError, match=f"b.json, entry {TEMP_ENTRY} \\(Observation/temp\\): no subject reference"):
        read_fhir(_write(tmp_path, b))


def test_subject_not_a_patient_of_the_input(tmp_path):
    b = _with_temp(lambda r: r.update(subject={"reference": "Patient/nobody"}))
    with pytest.raises(InputError, match=f"entry {TEMP_ENTRY}.*Patient/nobody"):
        read_fhir(_write(tmp_path, b))


@SETTINGS
@given(text=st.text(min_size=1, max_size=25))
def test_bad_dates(tmp_path, text):
    import re

    if re.fullmatch(r"\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?)?)?", text):
        return  # a valid FHIR dateTime
    b = _with_temp(lambda r: r.update(effectiveDateTime=text))
    with pytest.raises(InputError, match=f"b.json, entry {TEMP_ENTRY}"):
        read_fhir(_write(tmp_path, b))


@SETTINGS
@given(code=st.sampled_from(["{bogus}", "[foo]", "furlong/fortnight", "10*9/parsec", "xyz", "mg/dLL"]))
def test_unknown_ucum(tmp_path, code):
    b = _with_temp(lambda r: r["valueQuantity"].update(code=code))
    with pytest.raises(InputError, match=f"b.json, entry {TEMP_ENTRY} \\(Observation/temp\\).*unit"):
        read_fhir(_write(tmp_path, b))


def test_wrong_dimension_names_the_entry(tmp_path):
    b = _with_temp(lambda r: r["valueQuantity"].update(code="mg/L"))  # a temperature in mg/L
    with pytest.raises(InputError, match=f"b.json, entry {TEMP_ENTRY} \\(Observation/temp\\)"):
        read_fhir(_write(tmp_path, b))


@SETTINGS
@given(value=st.one_of(st.text(max_size=5), st.lists(st.integers(), max_size=2), st.booleans()))
def test_wrong_value_type(tmp_path, value):
    b = _with_temp(lambda r: r["valueQuantity"].update(value=value))
    with pytest.raises(InputError, match=f"b.json, entry {TEMP_ENTRY}"):
        read_fhir(_write(tmp_path, b))


def test_not_a_bundle_or_resource(tmp_path):
    with pytest.raises(InputError, match="b.json, entry 1: not a FHIR resource"):
        read_fhir(_write(tmp_path, [1, 2, 3]))


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_fhir(tmp_path / "nope.json")


def test_cartlab_value_disagreeing_with_quantity(tmp_path):
    """The standard valueQuantity and the cartlab original value must agree (seed bundle, edited)."""
    path = write_fhir_bundle(seed_case(), tmp_path / "seed.json")
    b = json.loads(path.read_text())
    temp = next(e["resource"] for e in b["entry"]
                if e["resource"]["resourceType"] == "Observation" and e["resource"]["code"]["text"] == "TEMP")
    temp["valueQuantity"]["value"] += 1.0
    with pytest.raises(InputError, match=f"Observation/{temp['id']}\\): valueQuantity .* disagrees"):
        read_fhir(_write(tmp_path, b, "edited.json"))


def test_writer_writes_nothing_on_error(tmp_path):
    seed = seed_case()
    bad = type(seed)(study_id="bad", subjects=seed.subjects,
                     observations=seed.observations.with_columns(pl.lit("NOPE").alias("param")))
    target = tmp_path / "out.json"
    with pytest.raises(InputError, match="NOPE"):
        write_fhir_bundle(bad, target)
    assert list(tmp_path.iterdir()) == []
    target.write_text("old")
    with pytest.raises(InputError):
        write_fhir_bundle(bad, target)
    assert target.read_text() == "old"
