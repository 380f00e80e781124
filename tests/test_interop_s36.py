"""Session 36 fixes of the SDTM and FHIR round trip (review36: A1, B1-B7, C1-C4).

Expected values are derived by hand, never copied from cartlab's output:
* the study below has day 0 = 2021-03-05 (subjects.infusion_date); day 2 is 2021-03-07, day -5 is
  2021-02-28, day 2.25 is 2021-03-07T06:00 (0.25 day = 6 h);
* units: 10^3/uL = 10^9/L (1 uL = 1e-6 L), so 0.3 10^3/uL = 0.3 10^9/L; 1 dL = 0.1 L, so 0.5 mg/dL = 5 mg/L;
* FHIR R4 dateTime: "A date, date-time or partial date ... If hours and minutes are specified, a time
  zone SHALL be populated" (https://hl7.org/fhir/R4/datatypes.html#dateTime): a date-only row is a date;
* LOINC 26499-4 "Neutrophils [#/volume] in Blood" (HL7 mCODE example
  Observation-us-core-observation-lab-neutrophils-jenny-m) and 26515-7 "Platelets (Bld) [#/Vol]"
  (https://loinc.org/26515-7/);
* SDTMIG DM: RFXSTDTC is the first exposure to any protocol-specified treatment, the earliest EXSTDTC;
  RFSTDTC is the sponsor-defined reference start (cartlab: day 0);
* SDTMIG CM: CMTRT is the "Reported Name of Drug, Med, or Therapy" (Req);
* ISO 8601: second 60 exists only as a leap second.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import polars as pl
import pytest

from cartlab.errors import InputError
from cartlab.io import read_study
from cartlab.io.fhir import build_bundle, read_fhir, read_fhir_with_report
from cartlab.io.sdtm import read_sdtm, write_sdtm

UCUM = "http://unitsofmeasure.org"


def study_folder(tmp_path: Path, **extra: str) -> Path:
    """One subject, day 0 = 2021-03-05: fludarabine on day -5, CAR-T on day 0, a vasopressor (rate) for
    CRS from day 2.25 to 3.75, paracetamol (antipyretic) and a platelet transfusion without agent, a
    CRP <0.5 mg/dL on day 1, an ALT in IU/L on day 1, a fever on day 1."""
    d = tmp_path / "study"
    d.mkdir()
    files = {
        "subjects": "subject_id,sex,age_years,infusion_date\nP1,F,40,2021-03-05\n",
        "doses": "subject_id,day,agent,dose,unit\nP1,-5,fludarabine,30,mg/m2\nP1,0,CAR-T,2000000,cells/kg\n",
        "interventions": ("subject_id,start_day,end_day,category,agent,dose,dose_unit,indication\n"
                          "P1,2.25,3.75,vasopressor,norepinephrine,0.05,ug/kg/min,CRS\n"
                          "P1,1,,antipyretic,paracetamol,1,g,infection\n"
                          "P1,4,,platelet_transfusion,,,,\n"),
        "observations": ("subject_id,day,param,value,value_text,unit\n"
                         "P1,1,CRP,,<0.5,mg/dL\n"
                         "P1,1,ALT,40,,IU/L\n"
                         "P1,1,TEMP,39.2,,C\n"),
        "events": "subject_id,day,event,detail\nP1,6,infection,fievre\n",
    }
    files.update(extra)
    for k, v in files.items():
        (d / f"{k}.csv").write_text(v, encoding="utf-8")
    return d


def bundle_of(tmp_path: Path) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_bundle(read_study(study_folder(tmp_path)))


def write(tmp_path: Path, b: dict, name: str = "b.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(b), encoding="utf-8")
    return p


def entry(b: dict, rid: str) -> tuple[int, dict]:
    """(1-based entry index, resource) of the resource with id ``rid``."""
    for i, e in enumerate(b["entry"], 1):
        if e["resource"].get("id") == rid:
            return i, e["resource"]
    raise KeyError(rid)


def by_agent(b: dict, agent: str) -> tuple[int, dict]:
    for i, e in enumerate(b["entry"], 1):
        r = e["resource"]
        if (r.get("medicationCodeableConcept") or {}).get("text") == agent:
            return i, r
    raise KeyError(agent)


def drop_row_extension(r: dict) -> None:
    r["extension"] = [x for x in r.get("extension", []) if not x["url"].endswith("/row")]


# -- A1 / C3: an edited standard field of a cartlab-written resource is an error, never overridden ---

def test_edited_vasopressor_rate_is_an_error_naming_resource_entry_and_field(tmp_path):
    b = bundle_of(tmp_path)
    i, r = by_agent(b, "norepinephrine")
    r["dosage"]["rateQuantity"]["value"] = 0.5  # was 0.05
    with pytest.raises(InputError) as exc:
        read_fhir(write(tmp_path, b))
    msg = str(exc.value)
    assert f"entry {i} (MedicationAdministration/{r['id']})" in msg
    assert "dosage.rateQuantity 0.5 ug/kg/min" in msg and "cartlab dose 0.05" in msg
    assert "delete the cartlab row extension" in msg


@pytest.mark.parametrize("field,edit,said", [
    ("reasonCode", lambda r: r.update(reasonCode=[{"text": "infection"}]), "reasonCode 'infection'"),
    ("medication", lambda r: r.update(medicationCodeableConcept={"text": "vasopressin"}),
     "medicationCodeableConcept 'vasopressin'"),
    ("category", lambda r: r["category"]["coding"][0].update(code="other"), "category / code 'other'"),
])
def test_edited_intervention_field_is_an_error(tmp_path, field, edit, said):
    b = bundle_of(tmp_path)
    _, r = by_agent(b, "norepinephrine")
    edit(r)
    with pytest.raises(InputError, match="delete the cartlab row extension") as exc:
        read_fhir(write(tmp_path, b))
    assert said in str(exc.value)


def test_edited_cart_dose_is_an_error(tmp_path):
    b = bundle_of(tmp_path)
    i, r = by_agent(b, "CAR-T")
    r["dosage"]["dose"]["value"] = 4e6  # was 2e6 cells/kg
    with pytest.raises(InputError, match=rf"entry {i} .*dosage.dose 4e\+06 cells/kg disagrees with the cartlab "
                                         r"orig_dose 2e\+06 cells/kg"):
        read_fhir(write(tmp_path, b))


def test_deleting_the_row_extension_reads_the_edited_values(tmp_path):
    b = bundle_of(tmp_path)
    _, r = by_agent(b, "norepinephrine")
    r["dosage"]["rateQuantity"]["value"] = 0.5
    r["reasonCode"] = [{"text": "infection"}]
    drop_row_extension(r)
    iv = read_fhir(write(tmp_path, b)).interventions.filter(pl.col("category") == "vasopressor")
    assert iv["dose"].to_list() == [0.5] and iv["indication"].to_list() == ["infection"]
    assert iv["start_day"].to_list() == [2.25]  # 2021-03-07T06:00 from the standard time: day 2 + 6/24


def test_edited_censored_value_is_an_error(tmp_path):
    b = bundle_of(tmp_path)
    for e in b["entry"]:
        r = e["resource"]
        if r["resourceType"] == "Observation" and r["code"]["text"] == "CRP":
            r["valueQuantity"]["value"] = 10  # "<5 mg/L" edited to "<10 mg/L"; the row says <0.5 mg/dL
    with pytest.raises(InputError, match=r"valueQuantity <10 mg/L disagrees with the cartlab value_text <0.5 mg/dL"):
        read_fhir(write(tmp_path, b))


def test_unedited_bundle_reads_back(tmp_path):
    st = read_fhir(write(tmp_path, bundle_of(tmp_path)))
    assert sorted(st.interventions["agent"].fill_null("").to_list()) == ["", "norepinephrine", "paracetamol"]


def test_time_disagreement_says_how_to_make_the_edit_stick(tmp_path):
    b = bundle_of(tmp_path)
    _, r = by_agent(b, "norepinephrine")
    r["effectivePeriod"]["start"] = "2021-03-07T09:00:00Z"  # was 06:00 (day 2.25)
    with pytest.raises(InputError, match="disagrees with the cartlab start_day 2.25; delete the cartlab row"):
        read_fhir(write(tmp_path, b))


# -- B5: date-only rows are FHIR dates -------------------------------------------------------------

def test_date_only_rows_are_written_as_dates_and_read_back(tmp_path):
    b = bundle_of(tmp_path)
    _, flu = by_agent(b, "fludarabine")
    assert flu["effectiveDateTime"] == "2021-02-28"  # day -5 of 2021-03-05, no time: no invented 00:00Z
    _, vaso = by_agent(b, "norepinephrine")
    assert vaso["effectivePeriod"] == {"start": "2021-03-07T06:00:00Z", "end": "2021-03-08T18:00:00Z"}
    st = read_fhir(write(tmp_path, b))
    assert sorted(st.doses["day"].to_list()) == [-5.0, 0.0]


# -- B6: dose and rate both given ----------------------------------------------------------------------

def _ma(rid, agent, dosage, category=None):
    r = {"resourceType": "MedicationAdministration", "id": rid, "status": "completed",
         "medicationCodeableConcept": {"text": agent}, "subject": {"reference": "Patient/P1"},
         "effectiveDateTime": "2024-03-05T10:00:00Z", "dosage": dosage}
    return r


def test_vasopressor_with_dose_and_rate_reads_the_rate_and_reports_the_dose(tmp_path):
    cart = _ma("cart", "tisagenlecleucel", {"dose": {"value": 2e6, "system": UCUM, "code": "{cells}/kg"}})
    cart["effectiveDateTime"] = "2024-03-03T10:00:00Z"
    ne = _ma("ne", "norepinephrine", {"dose": {"value": 4, "unit": "mg", "system": UCUM, "code": "mg"},
                                      "rateQuantity": {"value": 0.2, "unit": "ug/kg/min"}})
    p = write(tmp_path, {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "P1"}}, {"resource": cart}, {"resource": ne}]})
    st, rep = read_fhir_with_report(p)
    assert st.interventions.select("dose", "dose_unit").rows() == [(0.2, "ug/kg/min")]
    why = rep.filter(pl.col("reason").str.contains("both dosage.dose and dosage.rateQuantity"))["reason"].to_list()
    assert len(why) == 1 and "dosage.dose 4 mg not read" in why[0]


# -- B7: common ANC / platelet LOINC codes; unmapped codes warned -------------------------------------

def test_loinc_26499_4_and_26515_7_are_read_and_unmapped_codes_warned(tmp_path):
    def o(rid, code, value):
        return {"resourceType": "Observation", "id": rid, "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "subject": {"reference": "Patient/P1"}, "effectiveDateTime": "2024-03-04T10:00:00Z",
                "valueQuantity": {"value": value, "system": UCUM, "code": "10*3/uL"}}
    cart = _ma("cart", "tisagenlecleucel", {"dose": {"value": 2e6, "system": UCUM, "code": "{cells}/kg"}})
    cart["effectiveDateTime"] = "2024-03-03T10:00:00Z"
    p = write(tmp_path, {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "P1"}}, {"resource": cart},
        {"resource": o("n", "26499-4", 0.3)}, {"resource": o("p", "26515-7", 20)},
        {"resource": o("x", "99999-9", 1)}, {"resource": o("y", "99999-9", 2)}]})
    st = read_fhir(p)
    got = dict(zip(st.observations["param"], st.observations["value"], strict=True))
    assert got == {"NEUT": 0.3, "PLAT": 20.0}  # 10^3/uL = 10^9/L
    msgs = [w.message for w in st.warnings]
    assert any("2 Observation(s) with a code not in the FHIR code map" in m and "99999-9 (2)" in m for m in msgs)


# -- B1: an SDTM result only in --ORRES/--ORRESU --------------------------------------------------------

DM = "STUDYID,DOMAIN,USUBJID,RFXSTDTC\nS,DM,P1,2021-05-05\n"
EX = "STUDYID,DOMAIN,USUBJID,EXSEQ,EXTRT,EXDOSE,EXDOSU,EXSTDTC\nS,EX,P1,1,CAR-T,1000000,CELLS/KG,2021-05-05\n"
LBH = "STUDYID,DOMAIN,USUBJID,LBSEQ,LBTESTCD,LBORRES,LBORRESU,LBSTRESC,LBSTRESN,LBSTRESU,LBSPEC,LBDTC\n"


def sdtm(tmp_path: Path, **files: str) -> Path:
    d = tmp_path / "sdtm"
    d.mkdir()
    files = {"dm": DM, "ex": EX, **files}
    for k, v in files.items():
        (d / f"{k}.csv").write_text(v, encoding="utf-8")
    return d


def test_orres_only_result_is_read_converted_and_traced(tmp_path):
    lb = LBH + "S,LB,P1,1,NEUT,0.3,10^3/uL,,,,BLOOD,2021-05-07\nS,LB,P1,2,NEUT,1.1,10^9/L,1.1,1.1,10^9/L,BLOOD,2021-05-08\n"
    got = read_sdtm(sdtm(tmp_path, lb=lb), report=True)
    o = got.study.observations.sort("day")
    assert o["value"].to_list() == [0.3, 1.1] and o["day"].to_list() == [2.0, 3.0]
    assert o["orig_unit"].to_list()[0] == "10^3/uL"
    assert "result read from LBORRES/LBORRESU" in o["source_note"][0] and o["source_note"][1] is None
    rep = got.report.filter(pl.col("reason").str.contains("LBORRES"))
    assert rep["n_mapped"].to_list() == [1] and rep["n_skipped"].to_list() == [0]
    assert any("1 LB record(s) with LBSTRESN and LBSTRESC empty read from LBORRES" in w.message
               for w in got.study.warnings)


def test_orres_only_with_unknown_unit_names_the_record_and_orresu(tmp_path):
    lb = LBH + "S,LB,P1,1,NEUT,0.3,gizmos/uL,,,,BLOOD,2021-05-07\n"
    with pytest.raises(InputError, match=r"lb.csv, record 1, variable LBORRESU: .*gizmos/uL"):
        read_sdtm(sdtm(tmp_path, lb=lb))


# -- B2 / B3 / B4 / C1 / C2: write_sdtm round trip ---------------------------------------------------

def _written(tmp_path: Path, fmt: str = "csv") -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return write_sdtm(read_study(study_folder(tmp_path)), tmp_path / f"sdtm_{fmt}", fmt)


@pytest.mark.parametrize("fmt", ["csv", "xpt"])
def test_round_trip_keeps_agent_censored_text_and_unit_as_given(tmp_path, fmt):
    back = read_sdtm(_written(tmp_path, fmt))
    iv = back.interventions.sort("start_day")
    assert iv["agent"].to_list() == ["paracetamol", "norepinephrine", None]  # not acetaminophen, not the category
    o = {r["param"]: r for r in back.observations.iter_rows(named=True)}
    assert (o["CRP"]["value_text"], o["CRP"]["orig_unit"]) == ("<0.5", "mg/dL")
    assert (o["CRP"]["censor"], o["CRP"]["censor_limit"]) == ("<", 5.0)  # 0.5 mg/dL = 5 mg/L
    assert o["ALT"]["orig_unit"] == "IU/L"


def test_dm_rfstdtc_is_day0_and_rfxstdtc_the_first_exposure(tmp_path):
    folder = _written(tmp_path)
    dm = pl.read_csv(folder / "dm.csv", infer_schema=False)
    assert dm.select("RFSTDTC", "RFXSTDTC").rows() == [("2021-03-05", "2021-02-28")]  # fludarabine day -5
    supp = pl.read_csv(folder / "suppdm.csv", infer_schema=False)
    assert supp.filter(pl.col("QNAM") == "DAY0DTC")["QVAL"].to_list() == ["2021-03-05"]
    assert pl.read_csv(folder / "lb.csv", infer_schema=False)["LBSEQ"].to_list() == ["1", "2"]  # C1: not 1.0


def test_day0_without_cart_in_ex_is_day0dtc_not_rfxstdtc(tmp_path):
    folder = _written(tmp_path)
    ex = pl.read_csv(folder / "ex.csv", infer_schema=False)
    ex.filter(pl.col("EXTRT") != "CAR-T").write_csv(folder / "ex.csv")  # the CAR-T record removed
    back = read_sdtm(folder)
    assert back.observations.filter(pl.col("param") == "CRP")["day"].to_list() == [1.0]  # not 6 (from 02-28)


def test_external_dm_without_cart_still_anchors_on_rfxstdtc(tmp_path):
    # no DAY0DTC and no CAR-T exposure: day 0 = RFXSTDTC 2021-05-05, as before session 36
    ex = "STUDYID,DOMAIN,USUBJID,EXSEQ,EXTRT,EXDOSE,EXDOSU,EXSTDTC\nS,EX,P1,1,FLUDARABINE,30,MG/M2,2021-05-05\n"
    lb = LBH + "S,LB,P1,1,NEUT,1.1,10^9/L,1.1,1.1,10^9/L,BLOOD,2021-05-08\n"
    back = read_sdtm(sdtm(tmp_path, ex=ex, lb=lb))
    assert back.observations["day"].to_list() == [3.0]


def test_xpt_text_is_ascii_and_unspellable_text_is_an_error(tmp_path):
    import pyreadstat

    extra = {"observations": "subject_id,day,param,value,unit\nP1,1,TEMP,39.2,°C\n",
             "events": "subject_id,day,event,detail\nP1,6,infection,fièvre — Müller ≥ 3\n"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        folder = write_sdtm(read_study(study_folder(tmp_path, **extra)), tmp_path / "x", "xpt")
    assert any("text spelled in ASCII" in str(w.message) for w in caught)
    raw = (folder / "ce.xpt").read_bytes()
    assert b"fievre - Muller >= 3" in raw and "Müller".encode() not in raw  # ASCII bytes, no UTF-8
    ce, _ = pyreadstat.read_xport(str(folder / "ce.xpt"))
    assert ce["CETERM"].tolist() == ["fievre - Muller >= 3"]
    vs, _ = pyreadstat.read_xport(str(folder / "vs.xpt"))
    assert set(vs["VSORRESU"]) == {"C"}
    (tmp_path / "b").mkdir()
    bad = read_study(study_folder(tmp_path / "b", events="subject_id,day,event,detail\nP1,6,infection,发热\n"))
    with pytest.raises(InputError, match=r"events row 1, column detail: .*U\+53D1"):
        write_sdtm(bad, tmp_path / "y", "xpt")


# -- C4: second 60 ---------------------------------------------------------------------------------

def test_second_60_is_an_invalid_dtc(tmp_path):
    lb = LBH + "S,LB,P1,1,NEUT,1.1,10^9/L,1.1,1.1,10^9/L,BLOOD,2021-05-08T14:30:60\n"
    with pytest.raises(InputError, match=r"lb.csv, record 1, variable LBDTC"):
        read_sdtm(sdtm(tmp_path, lb=lb))


def test_edited_condition_note_is_an_error(tmp_path):
    b = bundle_of(tmp_path)
    for e in b["entry"]:
        if e["resource"]["resourceType"] == "Condition":
            e["resource"]["note"] = [{"text": "pneumonia"}]  # the row says "fievre"
    with pytest.raises(InputError, match="note 'pneumonia' disagrees with the cartlab detail 'fievre'"):
        read_fhir(write(tmp_path, b))


def test_cli_import_fhir_prints_each_reader_warning_once(tmp_path):
    """review36 C5: `cartlab import --fhir` printed every reader warning twice (once when the Bundle was
    read, once after the import). A Bundle without any MedicationAdministration/Procedure gives the
    reader's "no ... intervention was read" warning: it must appear exactly once."""
    from typer.testing import CliRunner

    from cartlab.cli import app

    bundle = build_bundle(read_study(study_folder(tmp_path)))
    bundle["entry"] = [e for e in bundle["entry"]
                       if e["resource"]["resourceType"] not in ("MedicationAdministration", "Procedure")]
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    res = CliRunner().invoke(app, ["import", "--fhir", str(path), "--store", str(tmp_path / "st.db")],
                             env={"COLUMNS": "400", "CARTLAB_DEBUG": ""})
    assert res.exit_code == 0, res.output
    assert res.output.count("intervention was read") == 1, res.output
