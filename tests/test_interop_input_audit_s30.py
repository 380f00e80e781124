"""Session 30: the FHIR differential audit (/work/notes/audit_difffhir: an independent study-folder ->
FHIR converter) and the bad-input fuzz audit (/work/notes/audit_fuzz). Each case is a minimised
finding; expected values by hand from the FHIR R4 / UCUM / ASTCT text or the study-format contract."""

from __future__ import annotations

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from cartlab.cli import app
from cartlab.errors import InputError
from cartlab.grading.crs import derive_crs_summary
from cartlab.grading.icans import derive_icans_daily, derive_icans_summary
from cartlab.io import read_study
from cartlab.io.errors import StudyValidationError
from cartlab.io.fhir import read_fhir
from cartlab.io.fhir.reader import read_fhir_with_report

PAT = {"resourceType": "Patient", "id": "P1", "gender": "female", "birthDate": "1980-06-15"}
CART = {"resourceType": "MedicationAdministration", "id": "cart", "status": "completed",
        "medicationCodeableConcept": {"text": "tisagenlecleucel"}, "subject": {"reference": "Patient/P1"},
        "effectiveDateTime": "2024-03-01", "dosage": {"dose": {"value": 1e6, "system": "http://unitsofmeasure.org",
                                                               "code": "{cells}/kg"}}}


def _obs(i, loinc, day, value=None, code=None, **kw):
    r = {"resourceType": "Observation", "id": f"o{i}", "status": "final",
         "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]}, "subject": {"reference": "Patient/P1"},
         "effectiveDateTime": f"2024-03-{1 + day:02d}T10:00:00Z"}
    if value is not None:
        r["valueQuantity"] = {"value": value, "system": "http://unitsofmeasure.org", "code": code}
    r.update(kw)
    return r


def _cond(i, text, day):
    return {"resourceType": "Condition", "id": f"c{i}", "code": {"text": text}, "subject": {"reference": "Patient/P1"},
            "onsetDateTime": f"2024-03-{1 + day:02d}"}


def _bundle(tmp_path, *resources, extra_entries=(), patient=PAT, name="b.json"):
    entries = [{"resource": r} for r in (patient, CART, *resources)] + list(extra_entries)
    p = tmp_path / name
    p.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}), encoding="utf-8")
    return p


# ------------------------------------------------------------------------------------------------
# FHIR


def test_ucum_international_unit_is_read(tmp_path):
    """UCUM: [IU] (and [iU]) is the international unit; ALT 40 [IU]/L is 40 U/L (was an error)."""
    s = read_fhir(_bundle(tmp_path, _obs(1, "1742-6", 2, 40, "[IU]/L")))
    assert s.observations.filter(pl.col("param") == "ALT")["value"].to_list() == [40.0]


@pytest.mark.parametrize("text, grade", [("Focal cerebral edema", 3), ("Cerebral edema, focal", 3),
                                         ("Diffuse cerebral edema", 4), ("Status epilepticus", 4),
                                         ("Seizure", 3)])
def test_condition_texts_grade_icans_as_astct_does(tmp_path, text, grade):
    """ASTCT 2019 Table 4: focal/local edema grade 3, diffuse cerebral edema grade 4; a life-threatening
    prolonged seizure (> 5 min, status epilepticus) grade 4, a seizure resolving with intervention 3."""
    s = read_fhir(_bundle(tmp_path, _cond(1, text, 3)))
    assert derive_icans_summary(s)["icans_grade_astct"].to_list() == [grade]


def test_a_number_sent_as_valuestring_is_read_in_the_canonical_unit(tmp_path):
    """38.5 as text on day 1 (the canonical unit of TEMP is C, as for censored texts): fever, CRS >= 1;
    SBP not recorded that day, so up to 2."""
    temp = _obs(1, "8310-5", 1, valueString="38.5")
    s, report = read_fhir_with_report(_bundle(tmp_path, temp, _obs(2, "8310-5", 2, 36.8, "Cel")),
                                      numeric_valuestring="canonical")  # session 34: opt-in, default skip
    assert sorted(s.observations.filter(pl.col("param") == "TEMP")["value"].to_list()) == [36.8, 38.5]
    r = derive_crs_summary(s).row(0, named=True)
    assert (r["crs_grade_astct"], r["crs_grade_astct_max"]) == (1, 2)


def test_the_blood_pressure_panel_components_are_read(tmp_path):
    """FHIR R4 vital-signs blood pressure: panel 85354-9 with systolic 8480-6 as a component. Fever
    39 C and SBP 80 without vasopressor on day 2: CRS grade 2 (was 1, the panel not read)."""
    bp = _obs(2, "85354-9", 2, component=[
        {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
         "valueQuantity": {"value": 80, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
        {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
         "valueQuantity": {"value": 50, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}])
    s = read_fhir(_bundle(tmp_path, _obs(1, "8310-5", 2, 39.0, "Cel"), bp))
    assert s.observations.filter(pl.col("param") == "SYSBP")["value"].to_list() == [80.0]
    assert derive_crs_summary(s)["crs_grade_astct"].to_list() == [2]


def test_a_delete_entry_without_a_resource_is_skipped(tmp_path):
    """FHIR R4 bdl-5: an entry 'must be a resource unless there's a request or response'."""
    p = _bundle(tmp_path, _obs(1, "8310-5", 2, 39.0, "Cel"),
                extra_entries=[{"request": {"method": "DELETE", "url": "Observation/old"}}])
    s = read_fhir(p)
    assert s.observations.height == 1


def test_a_year_only_birthdate_gives_no_age_and_says_so(tmp_path):
    s, report = read_fhir_with_report(_bundle(tmp_path, _obs(1, "8310-5", 2, 37.0, "Cel"),
                                              patient={**PAT, "birthDate": "1980"}))
    assert s.subjects["age_years"].to_list() == [None]
    assert any("birthDate '1980' has no day" in r for r in report["reason"].to_list())


def test_an_unattributed_death_during_icans_leaves_icans_open_up_to_5(tmp_path):
    """ICE 2 on day 5 (ICANS 3), death on day 6 with no cause (FHIR carries none): ICANS 3, up to 5;
    the option 'never' gives the old reading (3, up to 3)."""
    from cartlab.grading.icans import IcansOptions
    from cartlab.io.fhir.mapping import CS_PARAM

    ice = {**_obs(2, "ICE", 5), "code": {"coding": [{"system": CS_PARAM, "code": "ICE"}]}, "valueInteger": 2}
    s = read_fhir(_bundle(tmp_path, _obs(1, "8310-5", 5, 37.0, "Cel"), ice,
                          patient={**PAT, "deceasedDateTime": "2024-03-07T08:00:00Z"}))
    assert s.observations.filter(pl.col("param") == "ICE")["value"].to_list() == [2.0]
    r = derive_icans_summary(s).row(0, named=True)
    assert (r["icans_grade_astct"], r["icans_grade_astct_max"]) == (3, 5)
    d = derive_icans_daily(s).filter(pl.col("day") == 6).row(0, named=True)
    assert d["missing_inputs"] == ["death attribution"] and "icans.conv.unattributed_death" in d["rule"]
    r = derive_icans_summary(s, IcansOptions(unattributed_death="never")).row(0, named=True)
    assert (r["icans_grade_astct"], r["icans_grade_astct_max"]) == (3, 3)


def test_fhir_input_is_not_told_about_empty_csv_files(tmp_path):
    s = read_fhir(_bundle(tmp_path, _obs(1, "8310-5", 2, 37.0, "Cel")))
    texts = [w.message for w in s.warnings]
    assert not any("empty file with its header" in t for t in texts)
    assert any(t.startswith("no Condition, Procedure or Patient.deceased[x] of an event was read") for t in texts)


# ------------------------------------------------------------------------------------------------
# study folder: implausible days and limits


def _folder(tmp_path, obs_rows, subjects=None):
    d = tmp_path / "study"
    d.mkdir()
    pl.DataFrame(subjects or [{"subject_id": "A", "age_years": 36, "infusion_date": "2024-03-01"}]).write_csv(
        d / "subjects.csv")
    pl.DataFrame(obs_rows).write_csv(d / "observations.csv")
    return d


@pytest.mark.parametrize("day", [20240330, 45382, 99999999999])
def test_a_date_typed_into_day_is_refused(tmp_path, day):
    """A date without dashes (20240330), an Excel serial (45382): more than 100 years from day 0. Before,
    validate said valid and analyze tried to build a daily grid of 20 million days (out of memory)."""
    d = _folder(tmp_path, [{"subject_id": "A", "day": 30.0, "param": "NEUT", "value": 1.0, "unit": "10^9/L"},
                           {"subject_id": "A", "day": float(day), "param": "NEUT", "value": 1.2, "unit": "10^9/L"}])
    with pytest.raises(StudyValidationError) as exc:
        read_study(d)
    (issue,) = exc.value.issues
    assert (issue.file, issue.column, issue.rows) == ("observations.csv", "day", [2])
    res = CliRunner().invoke(app, ["analyze", str(d), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and not (tmp_path / "out").exists() and "Traceback" not in res.output


def test_a_wrong_infusion_date_putting_rows_before_birth_is_refused(tmp_path):
    """infusion_date 2099-06-01 for rows dated 2024 (age 36): the rows' days (about -27,400) fall before
    the subject's birth (earlier than -(36 + 1) x 365.25 = -13,514); was accepted (CRS onset day -27451)."""
    d = _folder(tmp_path, [{"subject_id": "A", "datetime": "2024-03-05T10:00", "param": "TEMP", "value": 39.0,
                            "unit": "C"}],
                subjects=[{"subject_id": "A", "age_years": 36, "infusion_date": "2099-06-01"}])
    with pytest.raises(StudyValidationError, match="falls before the subject's birth") as exc:
        read_study(d)
    assert exc.value.issues[0].column == "datetime"


def test_a_reference_limit_no_value_can_reach_is_refused(tmp_path):
    d = _folder(tmp_path, [{"subject_id": "A", "day": 3.0, "param": "FERRITIN", "value": 300.0, "unit": "ug/L",
                            "uln": 1e300}])
    # session 47 (review 47 F3): the limit with its unit and converted, and "is the unit right?"
    with pytest.raises(StudyValidationError, match=r"uln 1e\+300 ug/L of FERRITIN \(= 1e\+300 ug/L\) is outside the "
                       r"plausible range of its values \[0, 1e\+06\] ug/L: is the unit right\?"):
        read_study(d)


def test_last_followup_before_the_clock_start_is_named_without_a_type(tmp_path):
    from cartlab.response.adtte import derive_adtte  # noqa: F401  (the engine raising it)

    d = _folder(tmp_path, [{"subject_id": "A", "day": 3.0, "param": "TEMP", "value": 37.0, "unit": "C"}],
                subjects=[{"subject_id": "A", "age_years": 36, "infusion_date": "2024-03-01", "disease": "AML",
                           "last_followup_day": -10}])
    # session 37: the TEMP row of day 3 shows the subject alive on day 3 (endpoints.last_alive_sources
    # "all_tables"): nothing is skipped; reading last_followup_day only, the error names its row
    res = CliRunner().invoke(app, ["analyze", str(d), "--out", str(tmp_path / "out")], env={"COLUMNS": "300"})
    text = " ".join(res.output.split())
    assert res.exit_code == 0, text
    meta = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert not [s for s in meta["skipped"] if "last known alive" in s["reason"]]
    res = CliRunner().invoke(app, ["analyze", str(d), "--out", str(tmp_path / "out2"), "--set",
                                   "endpoints.last_alive_sources=followup_day"], env={"COLUMNS": "300"})
    assert res.exit_code == 0, " ".join(res.output.split())
    meta = json.loads((tmp_path / "out2" / "analysis.json").read_text())
    reasons = [s["reason"] for s in meta["skipped"]]
    assert any("last known alive on day -10 from last_followup_day -10 (subjects.csv:1)" in r for r in reasons), reasons
    assert not any(r.startswith("ValueError") for r in reasons)


def test_input_error_is_the_cartlab_error():
    assert issubclass(InputError, ValueError)


@pytest.mark.parametrize("dose, unit, agent", [(1e300, "mg/m2", "fludarabine"), (1e300, "cells/kg", "CAR-T"),
                                               (2e10, "cells/kg", "CAR-T")])
def test_a_dose_no_patient_can_get_is_refused(tmp_path, dose, unit, agent):
    """Fuzz audit: fludarabine 1e300 mg/m2 was accepted; the ceiling per unit (schema.DOSE_MAX) is far
    above any CAR-T (1e5-1e8 cells/kg) or lymphodepletion dose."""
    d = _folder(tmp_path, [{"subject_id": "A", "day": 3.0, "param": "TEMP", "value": 37.0, "unit": "C"}])
    pl.DataFrame([{"subject_id": "A", "day": 0.0, "agent": agent, "dose": dose, "unit": unit}]).write_csv(d / "doses.csv")
    with pytest.raises(StudyValidationError, match="is above the plausible maximum") as exc:
        read_study(d)
    assert (exc.value.issues[0].file, exc.value.issues[0].column) == ("doses.csv", "dose")


def test_a_usual_dose_is_accepted(tmp_path):
    d = _folder(tmp_path, [{"subject_id": "A", "day": 3.0, "param": "TEMP", "value": 37.0, "unit": "C"}])
    pl.DataFrame([{"subject_id": "A", "day": 0.0, "agent": "CAR-T", "dose": 1e6, "unit": "cells/kg"},
                  {"subject_id": "A", "day": -5.0, "agent": "cyclophosphamide", "dose": 500.0, "unit": "mg/m2"}]
                 ).write_csv(d / "doses.csv")
    assert read_study(d).doses.height == 2


def test_a_zero_dose_is_read_with_a_warning(tmp_path):
    """Fuzz audit: a CAR-T dose of 0 was accepted silently; it is read (it may be a deliberate record)
    but warned about, since every engine reads the row as an administration."""
    d = _folder(tmp_path, [{"subject_id": "A", "day": 3.0, "param": "TEMP", "value": 37.0, "unit": "C"}])
    pl.DataFrame([{"subject_id": "A", "day": 0.0, "agent": "CAR-T", "dose": 0.0, "unit": "cells/kg"}]
                 ).write_csv(d / "doses.csv")
    s = read_study(d)
    (w,) = [w for w in s.warnings if "a dose of 0" in w.message]
    assert (w.file, w.column, w.rows, w.severity) == ("doses.csv", "dose", [1], "warning")
