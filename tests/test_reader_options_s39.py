"""Session 39: the SDTM / FHIR reader options travel with the study (import, store, batches, analysis.json).

A one-patient FHIR Bundle: a tisagenlecleucel MedicationAdministration on 2024-03-03 (day 0), a
neutrophil count on day 1 and a death stated only to the month (``deceasedDateTime`` 2024-03).
``--partial-death-dates drop`` leaves that death out; the default ``impute`` keeps it (docs/interop/fhir.md).
"""

from __future__ import annotations

import json

import polars as pl
from typer.testing import CliRunner

from cartlab.cli import app
from cartlab.model import Study
from cartlab.store import Store

runner = CliRunner()
UCUM = "http://unitsofmeasure.org"


def _resources(pid):
    p = {"reference": f"Patient/{pid}"}
    return [
        {"resourceType": "Patient", "id": pid, "gender": "female", "deceasedDateTime": "2024-03"},
        {"resourceType": "MedicationAdministration", "id": f"c{pid}", "status": "completed", "subject": p,
         "medicationCodeableConcept": {"text": "tisagenlecleucel"}, "effectiveDateTime": "2024-03-03T10:00:00Z",
         "dosage": {"dose": {"value": 2, "unit": "10^6 cells/kg", "system": UCUM, "code": "10*6{cells}/kg"}}},
        {"resourceType": "Observation", "id": f"n{pid}", "status": "final", "subject": p,
         "code": {"coding": [{"system": "http://loinc.org", "code": "751-8"}]},
         "effectiveDateTime": "2024-03-04T08:00:00Z",
         "valueQuantity": {"value": 1.0, "unit": "10*9/L", "system": UCUM, "code": "10*9/L"}},
    ]


def _bundle(folder, name="trial.json", patients=("P1",)):
    f = folder / name
    f.write_text(json.dumps({"resourceType": "Bundle", "type": "collection",
                             "entry": [{"resource": r} for pid in patients for r in _resources(pid)]}))
    return f


def _deaths(study: Study) -> int:
    return study.events.filter(pl.col("event") == "death").height


def test_import_takes_the_reader_options_and_the_store_keeps_them(tmp_path):
    f, store = _bundle(tmp_path), tmp_path / "s.duckdb"
    r = runner.invoke(app, ["import", "--fhir", str(f), "--store", str(store), "--study-id", "T1"])
    assert r.exit_code == 0, r.output
    with Store(store, read_only=True) as s:
        st = s.load_study("T1")
    assert _deaths(st) == 1 and st.reader_options["partial_death_dates"] == "impute"
    # the same file read with another option is another study: replaced, not "unchanged"
    r = runner.invoke(app, ["import", "--fhir", str(f), "--store", str(store), "--study-id", "T1",
                            "--partial-death-dates", "drop"])
    assert r.exit_code == 0, r.output
    assert "T1: replaced" in " ".join(r.output.split())
    with Store(store, read_only=True) as s:
        st, one = s.load_study("T1"), s.subject("P1", "T1")
    assert _deaths(st) == 0
    assert st.reader_options["partial_death_dates"] == "drop" == one.reader_options["partial_death_dates"]
    # ... and unchanged when read again with the same option
    r = runner.invoke(app, ["import", "--fhir", str(f), "--store", str(store), "--study-id", "T1",
                            "--partial-death-dates", "drop"])
    assert "T1: unchanged" in " ".join(r.output.split()), r.output


def test_an_analysis_of_the_stored_study_records_its_reader_options(tmp_path):
    f, store = _bundle(tmp_path, patients=("P1", "P2")), tmp_path / "s.duckdb"  # two: --batch-size 1 batches
    assert runner.invoke(app, ["import", "--fhir", str(f), "--store", str(store), "--study-id", "T1",
                               "--partial-death-dates", "drop"]).exit_code == 0
    for extra, out in (([], "a"), (["--batch-size", "1"], "b")):
        r = runner.invoke(app, ["analyze", "T1", "--store", str(store), "--out", str(tmp_path / out), *extra])
        assert r.exit_code == 0, r.output
        meta = json.loads((tmp_path / out / "analysis.json").read_text())
        assert meta["reader_options"]["partial_death_dates"] == "drop", extra


def test_a_batched_analysis_of_a_fhir_source_records_its_reader_options(tmp_path):
    f = _bundle(tmp_path, patients=("P1", "P2"))
    r = runner.invoke(app, ["analyze", "--fhir", str(f), "--out", str(tmp_path / "o"), "--batch-size", "1",
                            "--partial-death-dates", "drop"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "o" / "analysis.json").read_text())["reader_options"]["partial_death_dates"] == "drop"


def test_subset_and_subject_keep_the_reader_options():
    subjects = pl.DataFrame({"subject_id": ["A", "B"]})
    st = Study(study_id="S", subjects=subjects, reader_options={"partial_dates": "impute"})
    assert st.subset(["A"]).reader_options == {"partial_dates": "impute"}
    assert st.subject("B").reader_options == {"partial_dates": "impute"}


def test_reader_options_on_a_study_folder_import_are_refused(tmp_path):
    store = tmp_path / "s.duckdb"
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "subjects.csv").write_text("subject_id\nA\n")
    for opt in (["--partial-death-dates", "drop"], ["--observation-status", "final"], ["--study-day-fallback"]):
        r = runner.invoke(app, ["import", str(folder), "--store", str(store), *opt])
        assert r.exit_code == 2, (opt, r.output)
        assert opt[0] in r.output and not store.exists()


def test_a_bare_file_name_that_is_the_stored_id_names_the_stored_study(tmp_path, monkeypatch):
    """A FHIR file without an extension gets its own name as the study id; run where that file is, the
    bare id names the stored study (a file is never a study folder)."""
    monkeypatch.chdir(tmp_path)
    f = _bundle(tmp_path, name="trial")
    assert runner.invoke(app, ["import", "--fhir", str(f), "--store", "s.duckdb"]).exit_code == 0
    r = runner.invoke(app, ["analyze", "trial", "--store", "s.duckdb", "--out", "o"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["analyze", "--store", "s.duckdb", "--out", "o2"])  # the store's only study
    assert r.exit_code == 0, r.output
