"""Session 34 fixes of the FHIR R4 reader (review 33: A2, B5, C4 "unit-error element paths") and the CLI
options --observation-status / --numeric-valuestring.

Expected values are derived by hand, never copied from cartlab's output:
* days: calendar days from the midnight of day 0 (cartlab.io.clock, docs/derivation-conventions.md);
  day 0 = the first CAR-T on 2024-03-03T10:00:00Z unless a test says otherwise, so
  2024-03-04T10:00:00Z is day 1 + 10/24;
* units: 1 dL = 0.1 L, so 5 mg/dL = 50 mg/L; the canonical units are those of the data dictionary
  (HGB g/L, CRP mg/L, IL6 pg/mL, NEUT 10^9/L, ICE none);
* R4 Observation.value[x]: a measured amount is a valueQuantity with its unit, and a string has none.
  R4 ObservationStatus has eight codes: registered, preliminary, final, amended, corrected, cancelled,
  entered-in-error, unknown (http://hl7.org/fhir/R4/valueset-observation-status.html);
* a partial date "2024-03" is the period 2024-03-01 .. 2024-03-31, and "2023" is 2023-01-01 .. 2023-12-31.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from cartlab.errors import InputError
from cartlab.io import read_study
from cartlab.io.fhir import build_bundle, read_fhir, read_fhir_with_report, write_fhir_bundle
from cartlab.io.fhir.mapping import CS_PARAM

UCUM = "http://unitsofmeasure.org"
CART_TIME = "2024-03-03T10:00:00Z"
CART_DOSE = {"dose": {"value": 2e6, "unit": "cells/kg", "system": UCUM, "code": "{cells}/kg"}}


def patient(pid: str = "P1") -> dict:
    return {"resourceType": "Patient", "id": pid, "gender": "female"}


def cart(when: str | None = CART_TIME, rid: str = "cart", status: str = "completed", **extra) -> dict:
    r = {"resourceType": "MedicationAdministration", "id": rid, "status": status,
         "medicationCodeableConcept": {"text": "tisagenlecleucel"}, "subject": {"reference": "Patient/P1"},
         "dosage": CART_DOSE, **extra}
    if when is not None:
        r["effectiveDateTime"] = when
    return r


def obs(rid: str, loinc: str, when: str = "2024-03-04T10:00:00Z", status: str = "final", **value) -> dict:
    return {"resourceType": "Observation", "id": rid, "status": status,
            "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
            "subject": {"reference": "Patient/P1"}, "effectiveDateTime": when, **value}


def neut(rid: str, when: str = "2024-03-04T10:00:00Z", value: float = 1.5, **kw) -> dict:
    return obs(rid, "751-8", when, valueQuantity={"value": value, "system": UCUM, "code": "10*9/L"}, **kw)


def bundle(tmp_path: Path, *resources, name: str = "b.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps({"resourceType": "Bundle", "type": "collection",
                             "entry": [{"resource": r} for r in resources]}), encoding="utf-8")
    return p


def not_mapped(report: pl.DataFrame) -> dict[str, str]:
    """reason -> entries (1-based) of the report rows that were not mapped."""
    rows = report.filter(~pl.col("reason").str.starts_with("mapped"))
    return dict(zip(rows["reason"], rows["entries"], strict=True))


# -- A2: a number or censored text as valueString has no unit ---------------------------------------

def test_numeric_valuestring_is_not_read_by_default(tmp_path):
    # entries: 1 Patient, 2 CAR-T, 3 HGB "9.5" (a US lab's g/dL?), 4 CRP "5.2", 5 NEUT valueQuantity
    p = bundle(tmp_path, patient(), cart(), obs("hgb", "718-7", valueString="9.5"),
               obs("crp", "1988-5", valueString="5.2"), neut("n"))
    st, rep = read_fhir_with_report(p)
    assert st.observations["param"].to_list() == ["NEUT"]  # the valueQuantity is read, the strings are not
    reasons = not_mapped(rep)
    hgb = [r for r in reasons if "reads it in g/L" in r]
    crp = [r for r in reasons if "reads it in mg/L" in r]
    assert len(hgb) == len(crp) == 1
    assert hgb[0].startswith("numeric valueString without a unit: not read")
    assert (reasons[hgb[0]], reasons[crp[0]]) == ("3", "4")
    assert st.reader_options == {"observation_statuses": ["final", "amended", "corrected"],
                                 "numeric_valuestring": "skip", "partial_death_dates": "impute",
                                 "partial_event_dates": "impute", "ongoing_interventions": "last_record",
                                 "unknown_indication": "count"}
    assert not rep.filter(pl.col("resource_type") == "(reader option)").height  # defaults: no option row


def test_censored_valuestring_without_unit_is_not_read_by_default(tmp_path):
    p = bundle(tmp_path, patient(), cart(), obs("il6", "26881-3", valueString="<50"),
               obs("crp", "1988-5", valueString=">= 300"), neut("n"))
    st, rep = read_fhir_with_report(p)
    assert st.observations["param"].to_list() == ["NEUT"]
    reasons = [r for r in not_mapped(rep) if r.startswith("censored valueString without a unit: not read")]
    assert len(reasons) == 2  # IL6 (pg/mL) and CRP (mg/L)


def test_canonical_option_reads_numbers_and_censored_texts_in_the_canonical_unit(tmp_path):
    p = bundle(tmp_path, patient(), cart(), obs("hgb", "718-7", valueString="9.5"),
               obs("il6", "26881-3", "2024-03-05", valueString="<50"), neut("n"))
    st, rep = read_fhir_with_report(p, numeric_valuestring="canonical")
    o = st.observations.sort("param")
    # HGB 9.5 in the canonical g/L; IL6 below 50 pg/mL on 2024-03-05 (day 2, midnight)
    assert o.select("param", "value", "unit").rows() == [("HGB", 9.5, "g/L"), ("IL6", None, "pg/mL"),
                                                         ("NEUT", 1.5, "10^9/L")]
    il6 = o.filter(pl.col("param") == "IL6").row(0, named=True)
    assert (il6["censor"], il6["censor_limit"], il6["day"]) == ("<", 50.0, 2.0)
    notes = set(rep["reason"])
    assert "mapped (numeric valueString read in the canonical unit g/L: option numeric_valuestring='canonical')" in notes
    assert "mapped (censored valueString read in the canonical unit pg/mL: option numeric_valuestring='canonical')" in notes
    opt = rep.filter(pl.col("resource_type") == "(reader option)")
    assert opt.select("code", "n", "reason").rows() == [
        ("numeric_valuestring", 0, "option numeric_valuestring=canonical")]
    assert st.reader_options["numeric_valuestring"] == "canonical"


@pytest.mark.parametrize("option", ["skip", "canonical"])
def test_a_score_without_a_unit_reads_its_number_either_way(tmp_path, option):
    # ICE (0-10, no unit; read by its cartlab code): "8" guesses no unit
    ice = obs("ice", "ICE", valueString="8")
    ice["code"] = {"coding": [{"system": CS_PARAM, "code": "ICE"}]}
    st, rep = read_fhir_with_report(bundle(tmp_path, patient(), cart(), ice), numeric_valuestring=option)
    assert st.observations.select("param", "value", "day").rows() == [("ICE", 8.0, pytest.approx(1 + 10 / 24))]
    assert not [r for r in rep["reason"] if "valueString" in r]  # nothing to say: no unit involved


def test_numeric_valuestring_option_is_checked(tmp_path):
    p = bundle(tmp_path, patient(), cart())
    with pytest.raises(InputError, match="numeric_valuestring must be one of skip, canonical, not 'guess'"):
        read_fhir(p, numeric_valuestring="guess")


CENSORED_FOLDER = {
    "subjects.csv": "subject_id,disease,infusion_date\nP1,AML,2024-03-01\n",
    "doses.csv": "subject_id,day,agent,dose,unit\nP1,0,CAR-T,1000000,cells/kg\n",
    "observations.csv": "subject_id,day,param,value,value_text,unit\nP1,1,NEUT,,<0.1,10^9/L\n"
                        "P1,2,IL6,,>5000,pg/mL\nP1,5,CRP,,<=5,mg/dL\n",
}


def _folder(tmp_path: Path) -> Path:
    d = tmp_path / "s"
    d.mkdir()
    for name, text in CENSORED_FOLDER.items():
        (d / name).write_text(text, encoding="utf-8")
    return d


def _values(b: dict) -> list[dict]:
    return [{k: v for k, v in e["resource"].items() if k.startswith("value")} for e in b["entry"]
            if e["resource"]["resourceType"] == "Observation"]


def test_writer_sends_censored_results_as_quantities_read_back_under_the_default(tmp_path):
    study = read_study(_folder(tmp_path))
    vals = _values(build_bundle(study))
    assert all("valueString" not in v for v in vals)
    assert [v["valueQuantity"]["comparator"] for v in vals] == ["<", ">", "<="]
    back = read_fhir(write_fhir_bundle(study, tmp_path / "b.json"))  # default numeric_valuestring="skip"
    # CRP <=5 mg/dL = <=50 mg/L (1 dL = 0.1 L)
    assert back.observations.select("param", "censor", "censor_limit", "unit").rows() == [
        ("NEUT", "<", 0.1, "10^9/L"), ("IL6", ">", 5000.0, "pg/mL"), ("CRP", "<=", 50.0, "mg/L")]


def test_writer_censored_text_without_censor_columns_is_a_quantity_too(tmp_path):
    """A Study built in code with value_text "<=5" (mg/dL) but no censor/censor_limit: no valueString."""
    study = read_study(_folder(tmp_path))
    study.observations = study.observations.with_columns(pl.lit(None, pl.String).alias("censor"),
                                                         pl.lit(None, pl.Float64).alias("censor_limit"))
    vals = _values(build_bundle(study))
    assert all("valueString" not in v for v in vals)
    assert vals[2]["valueQuantity"]["value"] == 5.0 and vals[2]["valueQuantity"]["unit"] == "mg/dL"
    back = read_fhir(write_fhir_bundle(study, tmp_path / "b.json"))
    crp = back.observations.filter(pl.col("param") == "CRP").row(0, named=True)
    assert (crp["censor"], crp["censor_limit"], crp["unit"]) == ("<=", 50.0, "mg/L")


# -- B5: a CAR-T dated only to a month or year ------------------------------------------------------

def test_partial_cart_before_a_dated_one_leaves_no_day0(tmp_path):
    # entries: 1 Patient, 2 CAR-T "2024-03", 3 CAR-T 2024-03-10T10:00Z, 4 NEUT 2024-03-11
    p = bundle(tmp_path, patient(), cart("2024-03", rid="c0"), cart("2024-03-10T10:00:00Z", rid="c1"),
               neut("n", "2024-03-11T10:00:00Z"))
    st, rep = read_fhir_with_report(p)
    assert st.subjects["infusion_datetime"].to_list() == [None]  # not 2024-03-10
    assert st.observations.height == 0 and st.doses.height == 0
    (w,) = [w.message for w in st.warnings if "no day 0" in w.message]
    assert "MedicationAdministration/c0" in w and "effectiveDateTime is partial (2024-03)" in w
    assert "MedicationAdministration/c1" in w and "give the complete date of the CAR-T infusion" in w
    day0 = rep.filter(pl.col("reason").str.starts_with("no day 0: the CAR-T MedicationAdministration/c0"))
    assert sorted(day0["entries"]) == ["3", "4"]  # the dated CAR-T and the NEUT: not placed
    assert day0["reason"].n_unique() == 1
    assert rep.filter(pl.col("code") == "day 0")["resource_type"].to_list() == ["Patient"]


def test_partial_cart_wholly_after_the_dated_one_leaves_day0(tmp_path):
    # boundary: "2024-04" starts 2024-04-01, after 2024-03-31: day 0 stays 2024-03-31
    p = bundle(tmp_path, patient(), cart("2024-04", rid="c0"), cart("2024-03-31T10:00:00Z", rid="c1"),
               neut("n", "2024-04-01T10:00:00Z"))
    st = read_fhir(p)
    assert st.subjects["infusion_datetime"].to_list() == ["2024-03-31T10:00:00Z"]
    assert st.observations["day"].to_list() == pytest.approx([1 + 10 / 24])
    assert not [w for w in st.warnings if "no day 0" in w.message]


def test_partial_cart_including_the_dated_day_leaves_no_day0(tmp_path):
    # boundary: "2024-04" includes 2024-04-01, the dated CAR-T's day (perhaps earlier that day)
    p = bundle(tmp_path, patient(), cart("2024-04", rid="c0"), cart("2024-04-01T10:00:00Z", rid="c1"),
               neut("n", "2024-04-02T10:00:00Z"))
    st = read_fhir(p)
    assert st.subjects["infusion_datetime"].to_list() == [None]
    assert st.observations.height == 0


def test_partial_year_before_the_dated_cart_leaves_no_day0(tmp_path):
    p = bundle(tmp_path, patient(), cart("2023", rid="c0"), cart(), neut("n"))
    st = read_fhir(p)
    assert st.subjects["infusion_datetime"].to_list() == [None]
    (w,) = [w.message for w in st.warnings if "no day 0" in w.message]
    assert "is partial (2023)" in w


def test_only_a_partial_cart_says_why_there_is_no_day0(tmp_path):
    p = bundle(tmp_path, patient(), cart("2024-03", rid="c0"), neut("n"))
    st, rep = read_fhir_with_report(p)
    assert st.subjects["infusion_datetime"].to_list() == [None]
    reasons = not_mapped(rep)
    assert "no day 0: the subject has no CAR-T MedicationAdministration" not in reasons  # it has one
    assert reasons["no day 0: the CAR-T MedicationAdministration/c0's effectiveDateTime is partial (2024-03): "
                   "day 0 cannot be placed"] == "3"
    assert [w.message for w in st.warnings if "no day 0" in w.message][0].startswith(
        "subject P1: the CAR-T MedicationAdministration/c0's effectiveDateTime is partial (2024-03), so the "
        "subject has no day 0")


@pytest.mark.parametrize("status", ["not-done", "entered-in-error", "on-hold", "unknown"])
def test_partial_cart_that_was_not_given_does_not_matter(tmp_path, status):
    p = bundle(tmp_path, patient(), cart("2024-03", rid="c0", status=status), cart(), neut("n"))
    st = read_fhir(p)
    assert st.subjects["infusion_datetime"].to_list() == [CART_TIME]
    assert st.observations["day"].to_list() == pytest.approx([1 + 10 / 24])


def test_partial_period_start_is_named(tmp_path):
    c0 = cart(None, rid="c0", effectivePeriod={"start": "2024-03"})
    st = read_fhir(bundle(tmp_path, patient(), c0, cart(), neut("n")))
    assert st.subjects["infusion_datetime"].to_list() == [None]
    (w,) = [w.message for w in st.warnings if "no day 0" in w.message]
    assert "effectivePeriod.start is partial (2024-03)" in w and w.endswith("in effectivePeriod.start")


# -- C4: unit errors name their element -------------------------------------------------------------

def _error(tmp_path, *resources) -> str:
    with pytest.raises(InputError) as err:
        read_fhir(bundle(tmp_path, patient(), cart(), *resources))
    return str(err.value)


def test_reference_range_unit_error_names_its_element(tmp_path):
    o = obs("o1", "718-7", valueQuantity={"value": 9.5, "system": UCUM, "code": "g/dL"},
            referenceRange=[{"low": {"value": 12, "system": UCUM, "code": "g/dQ"}}])
    msg = _error(tmp_path, o)
    assert "entry 3 (Observation/o1): referenceRange[0].low.code 'g/dQ'" in msg
    assert "in valueQuantity" not in msg


def test_component_unit_error_names_the_component(tmp_path):
    bp = obs("bp", "85354-9", component=[
        {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
         "valueQuantity": {"value": 85, "system": UCUM, "code": "mm[Hg]"}},
        {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
         "valueQuantity": {"value": 50, "system": UCUM, "code": "mm[Hg"}}])  # the second one: index 1
    assert "(Observation/bp): component[1].valueQuantity.code 'mm[Hg'" in _error(tmp_path, bp)


def test_value_unit_of_the_wrong_dimension_names_valuequantity_code(tmp_path):
    o = obs("o1", "751-8", valueQuantity={"value": 0.8, "system": UCUM, "code": "mg/dL"})
    msg = _error(tmp_path, o)
    assert "(Observation/o1): valueQuantity.code 'mg/dL' is not a unit of NEUT" in msg


def test_value_unit_text_of_the_wrong_dimension_names_valuequantity_unit(tmp_path):
    o = obs("o1", "751-8", valueQuantity={"value": 0.8, "unit": "mg/dL"})
    assert "(Observation/o1): valueQuantity.unit 'mg/dL' is not a unit of NEUT" in _error(tmp_path, o)


def test_dose_unit_error_names_dosage_dose_code(tmp_path):
    bad = {"value": 2, "unit": "lots", "system": UCUM, "code": "{lots}"}
    with pytest.raises(InputError) as err:
        read_fhir(bundle(tmp_path, patient(), cart(dosage={"dose": bad})))
    assert "(MedicationAdministration/cart): dosage.dose.code '{lots}'" in str(err.value)
    assert "(nor its unit text 'lots')" in str(err.value)


def test_rate_unit_error_names_dosage_ratequantity_code(tmp_path):
    rate = {"resourceType": "MedicationAdministration", "id": "nor", "status": "completed",
            "medicationCodeableConcept": {"text": "norepinephrine"}, "subject": {"reference": "Patient/P1"},
            "effectiveDateTime": "2024-03-04T10:00:00Z",
            "dosage": {"rateQuantity": {"value": 0.1, "system": UCUM, "code": "qq/min", "unit": "zz/min"}}}
    assert "(MedicationAdministration/nor): dosage.rateQuantity.code 'qq/min'" in _error(tmp_path, rate)


def test_value_integer_of_a_param_with_a_unit_names_valueinteger(tmp_path):
    msg = _error(tmp_path, obs("o1", "751-8", valueInteger=2))
    assert "(Observation/o1): valueInteger 2: NEUT is measured in a unit" in msg
    assert "'unit' column" not in msg  # no study-folder advice for a Bundle


# -- CLI: --observation-status, --numeric-valuestring -----------------------------------------------

from test_cli_interop import run  # noqa: E402  (one CLI runner for the interop tests)


def _cli_bundle(tmp_path: Path) -> Path:
    # NEUT final 1.5 (day 1), NEUT preliminary 0.3 (day 2), HGB "9.5" as valueString (day 3)
    return bundle(tmp_path, patient(), cart(), neut("n1"), neut("n2", "2024-03-05T10:00:00Z", 0.3, status="preliminary"),
                  obs("hgb", "718-7", "2024-03-06T10:00:00Z", valueString="9.5"), name="lab.json")


def test_cli_import_with_reader_options(tmp_path):
    store = tmp_path / "s.duckdb"
    out = run("import", "--fhir", _cli_bundle(tmp_path), "--study-id", "LAB", "--store", store,
              "--observation-status", "final", "--observation-status", "preliminary",
              "--numeric-valuestring", "canonical")
    assert "FHIR reader options: observation statuses read final, preliminary; numeric valueString canonical" in out
    report = pl.read_csv(tmp_path / "LAB_fhir_mapping_report.csv")
    reasons = set(report["reason"])
    assert "mapped (status preliminary)" in reasons
    assert "mapped (numeric valueString read in the canonical unit g/L: option numeric_valuestring='canonical')" in reasons
    assert set(report.filter(pl.col("resource_type") == "(reader option)")["reason"]) == {
        "option observation_statuses=final, preliminary", "option numeric_valuestring=canonical"}
    from cartlab.store import Store

    with Store(store, read_only=True) as s:
        o = s.load_study("LAB").observations.sort("day")
    assert o.select("param", "value").rows() == [("NEUT", 1.5), ("NEUT", 0.3), ("HGB", 9.5)]


def test_cli_defaults_skip_preliminary_and_numeric_valuestring(tmp_path):
    store = tmp_path / "s.duckdb"
    out = run("import", "--fhir", _cli_bundle(tmp_path), "--study-id", "LAB", "--store", store)
    assert "FHIR reader options: observation statuses read final, amended, corrected; numeric valueString skip" in out
    from cartlab.store import Store

    with Store(store, read_only=True) as s:
        assert s.load_study("LAB").observations.select("param", "value").rows() == [("NEUT", 1.5)]


def test_cli_unknown_observation_status_is_one_clear_error(tmp_path):
    out = run("analyze", "--fhir", _cli_bundle(tmp_path), "--observation-status", "draft",
              "--out", tmp_path / "a", code=2)
    assert "--observation-status 'draft' is not a FHIR R4 ObservationStatus code" in out
    assert "registered, preliminary, final, amended, corrected, cancelled, entered-in-error, unknown" in out
    assert not (tmp_path / "a").exists()


def test_cli_status_without_a_result_is_refused(tmp_path):
    out = run("import", "--fhir", _cli_bundle(tmp_path), "--store", tmp_path / "s.duckdb",
              "--observation-status", "cancelled", code=2)
    assert "--observation-status 'cancelled': an Observation with status cancelled carries no result" in out
    assert not (tmp_path / "s.duckdb").exists()


def test_cli_bad_numeric_valuestring_and_options_without_fhir(tmp_path):
    assert "--numeric-valuestring 'guess': choose skip or canonical" in run(
        "import", "--fhir", _cli_bundle(tmp_path), "--store", tmp_path / "s.duckdb",
        "--numeric-valuestring", "guess", code=2)
    folder = _folder(tmp_path)
    assert "--observation-status applies to --fhir" in run(
        "analyze", folder, "--observation-status", "final", "--out", tmp_path / "a", code=2)
    assert "--observation-status and --numeric-valuestring apply to --fhir" in run(
        "report", folder, "--observation-status", "final", "--numeric-valuestring", "canonical",
        "--out", tmp_path / "r", code=2)


def test_cli_analyze_records_the_reader_options_in_analysis_json(tmp_path):
    """The options the FHIR reader ran with are part of the analysis record (lead, session 34)."""
    import json

    run("analyze", "--fhir", _cli_bundle(tmp_path), "--observation-status", "final", "--observation-status",
        "preliminary", "--out", tmp_path / "a")
    meta = json.loads((tmp_path / "a" / "analysis.json").read_text(encoding="utf-8"))
    assert meta["reader_options"] == {"observation_statuses": ["final", "preliminary"], "numeric_valuestring": "skip",
                                      "partial_death_dates": "impute", "partial_event_dates": "impute",
                                      "ongoing_interventions": "last_record", "unknown_indication": "count"}
