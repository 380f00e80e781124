"""Session 46 FHIR reader fixes (review46_fhir findings 1-7, 9, 11).

Day 0 in every Bundle is a tisagenlecleucel MedicationAdministration on 2024-03-01T10:00:00Z; a day is the
calendar days from the midnight of day 0 (docs/interop/fhir.md), so 2024-03-03T08:00Z is day 2.333, counted
by hand in each comment. Expected events/grades are hand-assigned from the study-format vocabulary and the
ASTCT 2019 CRS table (Lee et al., BBMT 25:625): fever (>= 38.0 C) + hypotension needing a vasopressor =
grade 3; fever + hypotension not needing one = grade 2; fever alone = grade 1.
"""

from __future__ import annotations

import json

import pytest

from cartlab.errors import InputError
from cartlab.grading.crs import derive_crs_daily
from cartlab.io.fhir import read_fhir, read_fhir_with_report

P = {"reference": "Patient/P1"}
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"


def _pat():
    return {"resourceType": "Patient", "id": "P1", "gender": "female"}


def _cart(med=None, **kw):
    r = {"resourceType": "MedicationAdministration", "id": "c1", "status": "completed", "subject": P,
         "effectiveDateTime": "2024-03-01T10:00:00Z",
         "dosage": {"dose": {"value": 2, "unit": "10^6 cells/kg", "system": UCUM, "code": "10*6{cells}/kg"}}}
    r.update(kw)
    if "medicationReference" not in kw:
        r["medicationCodeableConcept"] = med or {"text": "tisagenlecleucel"}
    return r


def _obs(i, loinc, t, value, ucum, status="final", **kw):
    return {"resourceType": "Observation", "id": i, "status": status, "subject": P,
            "code": {"coding": [{"system": LOINC, "code": loinc}]}, "effectiveDateTime": t,
            "valueQuantity": {"value": value, "unit": ucum, "system": UCUM, "code": ucum}, **kw}


def _temp(d, v=39.0):  # 08:00 on day d (2024-03-01 is day 0)
    return _obs(f"t{d}", "8310-5", f"2024-03-{1 + d:02d}T08:00:00Z", v, "Cel")


def _sbp(d, v=82):
    return _obs(f"bp{d}", "8480-6", f"2024-03-{1 + d:02d}T09:00:00Z", v, "mm[Hg]")


def _vaso(reason="Hypotension"):  # norepinephrine from day 2 10:00 to day 3 18:00
    return {"resourceType": "MedicationAdministration", "id": "ne", "status": "completed", "subject": P,
            "medicationCodeableConcept": {"text": "norepinephrine"}, "reasonCode": [{"text": reason}],
            "effectivePeriod": {"start": "2024-03-03T10:00:00Z", "end": "2024-03-04T18:00:00Z"},
            "dosage": {"rateQuantity": {"value": 0.1, "system": UCUM, "code": "ug/kg/min", "unit": "ug/kg/min"}}}


def _cond(i, text, t="2024-03-05"):
    return {"resourceType": "Condition", "id": i, "code": {"text": text}, "subject": P, "onsetDateTime": t}


def _proc(i, text, status="completed", **kw):
    return {"resourceType": "Procedure", "id": i, "status": status, "code": {"text": text}, "subject": P, **kw}


def _write(tmp_path, *res, name="b.json", btype="collection", entries=None):
    f = tmp_path / name
    f.write_text(json.dumps({"resourceType": "Bundle", "type": btype,
                             "entry": entries if entries is not None else [{"resource": r} for r in res]}))
    return f


def _ws(s):
    return [w.message for w in s.warnings]


def _grades(s):
    d = derive_crs_daily(s)
    return {int(r["day"]): (r["grade"], r["grade_min"], r["grade_max"]) for r in d.iter_rows(named=True)}


# -- finding 1: a reasonCode text not in the indication table ----------------------------------------------

def _hypo(tmp_path):
    return _write(tmp_path, _pat(), _cart(), _vaso(), *[_temp(d) for d in (1, 2, 3, 4)], _sbp(2), _sbp(3))


def test_unknown_reason_is_read_with_empty_indication_and_counts_for_crs(tmp_path):
    s = read_fhir(_hypo(tmp_path))
    iv = s.interventions
    assert iv.height == 1 and iv["category"][0] == "vasopressor" and iv["indication"][0] is None
    assert "'Hypotension'" in iv["source_note"][0] and "indication left empty" in iv["source_note"][0]
    # by hand: days 2 and 3 have Tmax 39.0 (fever), SBP 82 < 90 and the norepinephrine -> ASTCT grade 3
    g = _grades(s)
    assert g[2][0] == 3 and g[3][0] == 3
    w = [m for m in _ws(s) if "not in the indication table" in m]
    assert len(w) == 1 and "'Hypotension' x1" in w[0] and "unknown_indication = count" in w[0]
    assert not any("none is taken as given" in m for m in _ws(s))


def test_unknown_reason_drop_is_counted_not_none_given(tmp_path):
    s = read_fhir(_hypo(tmp_path), unknown_indication="drop")
    assert s.interventions.height == 0
    ws = _ws(s)
    assert not any("none is taken as given" in m for m in ws), ws
    absent = next(m for m in ws if "(table interventions)" in m)
    assert "1 intervention(s) were given and not read" in absent
    assert any("vasopressor" in m and "may be higher" in m and "entry 3" in m for m in ws)
    # by hand: without the vasopressor, days 2 and 3 are fever + hypotension not needing one: grade 2
    assert _grades(s)[2][0] == 2
    assert s.reader_options["unknown_indication"] == "drop"


def test_unknown_indication_option_is_checked(tmp_path):
    with pytest.raises(InputError, match="unknown_indication"):
        read_fhir(_hypo(tmp_path), unknown_indication="other")


# -- finding 3: condition/procedure text rules -----------------------------------------------------------

def test_recurrent_is_not_relapse_and_autologous_is_not_allo_hsct(tmp_path):
    f = _write(tmp_path, _pat(), _cart(),
               _cond("k1", "Recurrent seizures", "2024-03-05"),          # day 4: seizure (ICANS), not relapse
               _cond("k2", "Recurrent urinary tract infection", "2024-03-10"),  # day 9: infection
               _cond("k3", "Relapse of AML", "2024-05-01"),              # day 61: relapse (31 + 30)
               _cond("k4", "Relapsing fever", "2024-03-12"),             # not mapped
               _cond("k5", "Recurrence of lymphoma", "2024-05-02"),      # day 62: relapse
               _proc("h1", "Autologous stem cell transplant", performedDateTime="2024-04-20"),
               _proc("h2", "Transfusion of allogeneic red blood cells", performedDateTime="2024-03-06"),
               _proc("h3", "Stem cell transplant", performedDateTime="2024-04-21"),
               _proc("h4", "Allogeneic hematopoietic stem cell transplantation", performedDateTime="2024-06-01"),
               _proc("h5", "Allo-HSCT", performedDateTime="2024-06-02"))
    s, rep = read_fhir_with_report(f)
    ev = sorted(s.events.select("day", "event").rows())
    # 2024-06-01 is day 92 (March 31 + April 30 + May 31 = 92 days after 2024-03-01)
    assert ev == [(4.0, "seizure"), (9.0, "infection"), (61.0, "relapse"), (62.0, "relapse"),
                  (92.0, "allo_hsct"), (93.0, "allo_hsct")]
    reasons = dict(zip(rep["code"], rep["reason"]))
    assert "autologous" in reasons["Autologous stem cell transplant"]
    assert "transplant type not given" in reasons["Stem cell transplant"]
    assert reasons["Transfusion of allogeneic red blood cells"] == "procedure not in the procedure map"
    assert reasons["Relapsing fever"] == "condition not in the condition map"


# -- findings 4 and 5: Procedure in-progress / on-hold / unknown -------------------------------------------

def test_oxygen_procedure_in_progress_follows_ongoing_interventions(tmp_path):
    o2 = _proc("o1", "Oxygen therapy", status="in-progress", performedPeriod={"start": "2024-03-03T09:00:00Z"},
               usedCode=[{"text": "Nasal cannula"}])
    f = _write(tmp_path, _pat(), _cart(), o2, *[_temp(d) for d in range(1, 7)])
    s = read_fhir(f)
    iv = s.interventions
    # start 2024-03-03T09:00 = day 2.375; the last record is the TEMP on day 6.333 -> end_day floor = 6
    assert iv["start_day"][0] == pytest.approx(2.375) and iv["end_day"][0] == 6.0
    assert "Procedure status in-progress" in iv["source_note"][0]
    assert any("in progress" in m for m in _ws(s))
    assert read_fhir(f, ongoing_interventions="start_only").interventions["end_day"][0] is None


def test_procedure_on_hold_or_unknown_is_not_read(tmp_path):
    f = _write(tmp_path, _pat(), _cart(), *[_temp(d) for d in range(1, 5)],
               _proc("o1", "Oxygen therapy", status="on-hold", performedDateTime="2024-03-03",
                     usedCode=[{"text": "Nasal cannula"}]),
               _proc("o2", "Oxygen therapy", status="unknown", performedDateTime="2024-03-04",
                     usedCode=[{"text": "Non-rebreather mask"}]))
    s, rep = read_fhir_with_report(f)
    assert s.interventions.height == 0
    assert {r for r in rep["reason"] if r.startswith("status")} == {
        "status on-hold: not known to be done (not read)", "status unknown: not known to be done (not read)"}
    ws = _ws(s)
    assert sum("Procedure with status" in m and "may be higher" in m for m in ws) == 2
    assert not any("none is taken as given" in m for m in ws)
    # by hand: day 3 has fever only (the non-rebreather is not read): grade 1, not the old certain 3
    assert _grades(s)[3][0] == 1


# -- findings 2 and 9: only the current version is read -----------------------------------------------------

def _t1(version, status, updated):
    return _obs("t1", "8310-5", "2024-03-02T08:00:00Z", 40.1, "Cel", status=status,
                meta={"versionId": version, "lastUpdated": updated})


def test_history_bundle_reads_the_current_version_only(tmp_path):
    entries = [{"fullUrl": "http://ex.org/fhir/Observation/t1", "resource": _t1("2", "entered-in-error",
                                                                             "2024-03-02T09:00:00Z"),
                "request": {"method": "PUT", "url": "Observation/t1"}},
               {"fullUrl": "http://ex.org/fhir/Observation/t1", "resource": _t1("1", "final", "2024-03-02T08:05:00Z"),
                "request": {"method": "POST", "url": "Observation"}},
               {"resource": _pat()}, {"resource": _cart()}]
    s, rep = read_fhir_with_report(_write(tmp_path, btype="history", entries=entries))
    assert s.observations.height == 0  # version 2 is entered-in-error: no TEMP, no fever on day 1
    assert any("superseded" in r and "version 1" in r for r in rep["reason"])


def test_deleted_resource_is_not_read(tmp_path):
    entries = [{"request": {"method": "DELETE", "url": "Observation/t1"}, "response": {"status": "204"}},
               {"fullUrl": "http://ex.org/fhir/Observation/t1", "resource": _t1("1", "final", "2024-03-02T08:05:00Z"),
                "request": {"method": "POST", "url": "Observation"}},
               {"resource": _pat()}, {"resource": _cart()}]
    s, rep = read_fhir_with_report(_write(tmp_path, btype="history", entries=entries))
    assert s.observations.height == 0
    assert any("deleted" in r for r in rep["reason"])


def test_two_versions_in_a_collection_read_the_newest(tmp_path):
    v1 = _obs("n1", "751-8", "2024-03-02T08:00:00Z", 5.0, "10*9/L", meta={"versionId": "1"})
    v2 = _obs("n1", "751-8", "2024-03-02T08:00:00Z", 0.5, "10*9/L", status="amended", meta={"versionId": "2"})
    s = read_fhir(_write(tmp_path, _pat(), _cart(), v2, v1))  # order does not matter: versionId 2 > 1
    assert s.observations["value"].to_list() == [0.5]


def test_same_id_without_version_order_is_read_as_two_resources(tmp_path):
    """Nothing says two unversioned resources sharing Type/id are versions of one: each is read (the reader's
    behaviour before session 46); one parameter at one time with two values is then the study reader's
    "conflicting values" error, naming both, as it was."""
    a = _obs("n1", "751-8", "2024-03-02T08:00:00Z", 5.0, "10*9/L")
    b = _obs("n1", "751-8", "2024-03-02T08:00:00Z", 0.5, "10*9/L")
    with pytest.raises(InputError, match="conflicting values"):
        read_fhir(_write(tmp_path, _pat(), _cart(), a, b))


def test_per_patient_bundles_sharing_resource_ids(tmp_path):
    """Per-patient Bundles of one exporter, each with Patient-local ids (Observation/obs-1, the CAR-T c1):
    different resources, all read (session 46 lead: an unordered id clash is not an error)."""
    d = tmp_path / "patients"
    d.mkdir()
    for pid, anc in (("P1", 0.3), ("P2", 1.2)):
        ref = {"reference": f"Patient/{pid}"}
        _write(d, {**_pat(), "id": pid}, {**_cart(), "subject": ref},
               {**_obs("obs-1", "751-8", "2024-03-02T08:00:00Z", anc, "10*9/L"), "subject": ref}, name=f"{pid}.json")
    s = read_fhir(d)
    assert sorted(s.subjects["subject_id"].to_list()) == ["P1", "P2"]
    assert sorted(zip(s.observations["subject_id"], s.observations["value"])) == [("P1", 0.3), ("P2", 1.2)]


def test_patient_repeated_across_searchset_pages_is_one_subject(tmp_path):
    d = tmp_path / "pages"
    d.mkdir()

    def page(rs):
        return [{"fullUrl": f"http://ex.org/fhir/{r['resourceType']}/{r['id']}", "resource": r,
                 "search": {"mode": "include" if r["resourceType"] == "Patient" else "match"}} for r in rs]

    _write(d, name="page1.json", btype="searchset",
           entries=page([_cart(), _obs("n1", "751-8", "2024-03-02T08:00:00Z", 0.3, "10*9/L"), _pat()]))
    _write(d, name="page2.json", btype="searchset",
           entries=page([_obs("n2", "751-8", "2024-03-03T08:00:00Z", 0.2, "10*9/L"), _pat()]))
    s, rep = read_fhir_with_report(d)
    assert s.subjects.height == 1 and s.observations.height == 2
    assert any(r.startswith("exact repeat of page1.json, entry 3") for r in rep["reason"])


# -- finding 6: every coding, contained Medications, no-day-0 warning ----------------------------------------

def test_car_t_named_by_a_later_coding(tmp_path):
    med = {"coding": [{"system": "urn:hospital", "code": "KYM01"},
                      {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1999573",
                       "display": "tisagenlecleucel"}]}
    s = read_fhir(_write(tmp_path, _pat(), _cart(med), _obs("n1", "751-8", "2024-03-02T08:00:00Z", 0.3, "10*9/L")))
    assert s.doses["agent"].to_list() == ["tisagenlecleucel"]
    assert s.observations["day"][0] == pytest.approx(1 + 8 / 24)  # 2024-03-02T08:00 from day 0's midnight


def test_contained_medication_is_resolved(tmp_path):
    contained = [{"resourceType": "Medication", "id": "m1", "code": {"text": "axicabtagene ciloleucel"}}]
    cart = _cart(medicationReference={"reference": "#m1"}, contained=contained)
    s = read_fhir(_write(tmp_path, _pat(), cart, _temp(1)))
    assert s.doses["agent"].to_list() == ["axicabtagene ciloleucel"] and s.observations.height == 1


def test_subject_without_recognised_car_t_is_warned(tmp_path):
    s = read_fhir(_write(tmp_path, _pat(), _cart({"coding": [{"system": "urn:hospital", "code": "KYM01"}]}),
                         _temp(1), _temp(2)))
    w = [m for m in _ws(s) if m.startswith("subject P1: no CAR-T MedicationAdministration recognised")]
    assert len(w) == 1 and "KYM01 x1" in w[0] and "2 record(s) not placed" in w[0]


# -- finding 7: events without a time, Observations skipped for status --------------------------------------

def test_event_without_time_is_said_and_not_none(tmp_path):
    rel = {"resourceType": "Condition", "id": "rel", "code": {"text": "Relapse of AML"}, "subject": P,
           "recordedDate": "2024-05-01"}
    s = read_fhir(_write(tmp_path, _pat(), _cart(), rel, _temp(1)))
    ws = _ws(s)
    absent = next(m for m in ws if "(table events)" in m and m.startswith("no Condition"))
    assert "no relapse" not in absent and "1 event(s) were recorded but not placed" in absent
    assert any("Condition/rel" in m and "not placed on a day" in m for m in ws)


def test_preliminary_observations_are_warned_per_param(tmp_path):
    obs = [_obs(f"n{d}", "751-8", f"2024-03-{1 + d:02d}T08:00:00Z", 0.3, "10*9/L", status="preliminary")
           for d in (1, 2, 3)]
    s = read_fhir(_write(tmp_path, _pat(), _cart(), *obs))
    w = [m for m in _ws(s) if "status preliminary" in m]
    assert w == ["3 Observation(s) with status preliminary not read as results (NEUT x3); option "
                 "observation_statuses (--observation-status preliminary) reads them"]


# -- finding 11: UCUM [USP'U] ------------------------------------------------------------------------------

def test_usp_units_rate_is_read(tmp_path):
    vp = {"resourceType": "MedicationAdministration", "id": "vp", "status": "completed", "subject": P,
          "medicationCodeableConcept": {"text": "vasopressin"}, "reasonCode": [{"text": "CRS"}],
          "effectivePeriod": {"start": "2024-03-03T10:00:00Z", "end": "2024-03-03T18:00:00Z"},
          "dosage": {"rateQuantity": {"value": 0.03, "system": UCUM, "code": "[USP'U]/min"}}}
    s = read_fhir(_write(tmp_path, _pat(), _cart(), vp))
    # UCUM [USP'U] (US Pharmacopeia unit) is read as cartlab's vasopressin unit U: 0.03 U/min
    assert s.interventions.select("dose", "dose_unit").rows() == [(0.03, "U/min")]


# -- finding 12: export of fractional days on a non-Z clock ---------------------------------------------------

def test_export_time_from_a_fractional_day_carries_the_infusion_offset(tmp_path):
    import polars as pl

    from cartlab.io.fhir import build_bundle

    cart = _cart(effectiveDateTime="2024-03-01T10:00:00+08:00")
    s = read_fhir(_write(tmp_path, _pat(), cart, _obs("t1", "8310-5", "2024-03-02T12:00:00+08:00", 38.5, "Cel")))
    assert s.observations["day"][0] == pytest.approx(1.5)
    s.observations = s.observations.with_columns(pl.lit(None, dtype=pl.String).alias("datetime"))
    b = build_bundle(s)
    t = [e["resource"]["effectiveDateTime"] for e in b["entry"] if e["resource"]["resourceType"] == "Observation"]
    # by hand: day 1.5 from day 0's midnight (2024-03-01 on the +08:00 clock) = 2024-03-02 12:00 at +08:00
    assert t == ["2024-03-02T12:00:00+08:00"]
    back = read_fhir(_write(tmp_path, name="back.json", entries=b["entry"]))
    assert not [w for w in _ws(back) if "different UTC offsets" in w]


# -- finding 8: a transaction Bundle whose resources have no id --------------------------------------------

def test_transaction_bundle_without_ids_is_read(tmp_path):
    pid = "urn:uuid:11111111-0000-4000-8000-000000000000"
    pat, cart = _pat(), _cart()
    obs = _obs("x", "751-8", "2024-03-02T08:00:00Z", 0.3, "10*9/L")
    for r in (pat, cart, obs):
        r.pop("id")
    cart["subject"] = obs["subject"] = {"reference": pid}
    entries = [{"fullUrl": pid, "resource": pat, "request": {"method": "POST", "url": "Patient"}},
               {"fullUrl": "urn:uuid:22222222-0000-4000-8000-000000000000", "resource": cart,
                "request": {"method": "POST", "url": "MedicationAdministration"}},
               {"fullUrl": "urn:uuid:33333333-0000-4000-8000-000000000000", "resource": obs,
                "request": {"method": "POST", "url": "Observation"}}]
    s, rep = read_fhir_with_report(_write(tmp_path, btype="transaction", entries=entries))
    # the subject is named by the uuid of the Patient's fullUrl (no id, no identifier)
    assert s.subjects["subject_id"].to_list() == ["11111111-0000-4000-8000-000000000000"]
    assert s.observations["day"].to_list() == [pytest.approx(1 + 8 / 24)]
    assert any("taken from its fullUrl" in r for r in rep["reason"])


# -- finding 10: warnings name the Bundle entry, not the temporary parquet file -----------------------------

def test_duplicate_warning_names_the_bundle_entries(tmp_path):
    a = _obs("n1", "751-8", "2024-03-02T08:00:00Z", 0.3, "10*9/L")
    b = _obs("n1b", "751-8", "2024-03-02T08:00:00Z", 0.3, "10*9/L")
    s = read_fhir(_write(tmp_path, _pat(), _cart(), a, b))
    assert not [w for w in s.warnings if ".parquet" in w.file or ".parquet" in w.message]
    dup = [w.message for w in s.warnings if "duplicate" in w.message]
    assert dup and "b.json, entry 4 (Observation/n1b) repeats b.json, entry 3 (Observation/n1)" in dup[0]
