"""Session 38 FHIR fixes (review38_fhir A1, A2, B1-B4, C1): partial/absent dates that still state a fact.

Day 0 in every Bundle is a tisagenlecleucel MedicationAdministration on 2024-03-03T10:00:00Z; a day is the
calendar days from the midnight of day 0 (docs/interop/fhir.md), counted by hand in each comment.
"""

from __future__ import annotations

import json

import polars as pl
import pytest

from cartlab.errors import InputError
from cartlab.io.fhir import read_fhir, read_fhir_with_report

P = {"reference": "Patient/P1"}
UCUM = "http://unitsofmeasure.org"


def _pat(**kw):
    return {"resourceType": "Patient", "id": "P1", "gender": "female", **kw}


def _cart(**time):
    time = time or {"effectiveDateTime": "2024-03-03T10:00:00Z"}
    return {"resourceType": "MedicationAdministration", "id": "c1", "status": "completed", "subject": P,
            "medicationCodeableConcept": {"text": "tisagenlecleucel"},
            "dosage": {"dose": {"value": 2, "unit": "10^6 cells/kg", "system": UCUM, "code": "10*6{cells}/kg"}},
            **time}


def _neut(i, t, v=1.0):
    return {"resourceType": "Observation", "id": f"n{i}", "status": "final", "subject": P,
            "code": {"coding": [{"system": "http://loinc.org", "code": "751-8"}]}, "effectiveDateTime": t,
            "valueQuantity": {"value": v, "unit": "10*9/L", "system": UCUM, "code": "10*9/L"}}


def _relapse(onset):
    return {"resourceType": "Condition", "id": "rel", "subject": P, "code": {"text": "Relapse"}, "onsetDateTime": onset}


def _vaso(status, period):
    return {"resourceType": "MedicationAdministration", "id": "ne", "status": status, "subject": P,
            "medicationCodeableConcept": {"text": "norepinephrine"}, "effectivePeriod": period,
            "dosage": {"rateQuantity": {"value": 0.1, "unit": "ug/kg/min", "system": UCUM, "code": "ug/kg/min"}},
            "reasonCode": [{"text": "CRS"}]}


def _write(tmp_path, *res, name="b.json"):
    f = tmp_path / name
    f.write_text(json.dumps({"resourceType": "Bundle", "type": "collection",
                             "entry": [{"resource": r} for r in res]}))
    return f


def _warnings(s):
    return [w.message for w in s.warnings]


def _deaths(s):
    return s.events.filter(pl.col("event") == "death")


# -- A1: a partial Patient.deceasedDateTime ---------------------------------------------------------------

def test_partial_death_date_is_imputed_to_the_first_day_of_the_month(tmp_path):
    # 2024-03-03 -> 2024-07-01 = 28 (rest of March after the 3rd) + 30 + 31 + 30 + 1 = 120 days; the last
    # record (NEUT 2024-03-10, day 7) is before July, so the period's first day stands
    s = read_fhir(_write(tmp_path, _pat(deceasedDateTime="2024-07"), _cart(), _neut(1, "2024-03-10T08:00:00Z")))
    d = _deaths(s)
    assert d["day"].to_list() == [120.0]
    assert "imputed" in d["source_note"][0] and "deceasedDateTime" in d["source_note"][0]
    assert any("P1" in w and "partial" in w and "day 120" in w for w in _warnings(s))
    assert s.reader_options["partial_death_dates"] == "impute"


def test_partial_death_date_not_before_the_last_record_in_the_period(tmp_path):
    # a NEUT on 2024-07-10 = day 129 (120 for 07-01, + 9): alive then, so the death is not before day 129
    s = read_fhir(_write(tmp_path, _pat(deceasedDateTime="2024-07"), _cart(), _neut(1, "2024-07-10T08:00:00Z")))
    assert _deaths(s)["day"].to_list() == [129.0]


def test_partial_death_date_drop_warns_that_the_subject_died(tmp_path):
    s, rep = read_fhir_with_report(_write(tmp_path, _pat(deceasedDateTime="2024-07"), _cart(),
                                          _neut(1, "2024-03-10T08:00:00Z")), partial_death_dates="drop")
    assert _deaths(s).height == 0
    assert any("P1" in w and "although the subject died" in w for w in _warnings(s))
    opt = rep.filter(pl.col("resource_type") == "(reader option)")
    assert "option partial_death_dates=drop" in opt["reason"].to_list()


# -- B1: deceasedBoolean true, no date -----------------------------------------------------------------------

def test_deceased_boolean_without_date_is_warned_and_no_day_invented(tmp_path):
    s = read_fhir(_write(tmp_path, _pat(deceasedBoolean=True), _cart(), _neut(1, "2024-03-10T08:00:00Z")))
    assert _deaths(s).height == 0
    ws = _warnings(s)
    assert any(w.startswith("subject P1: Patient.deceasedBoolean is true but no date is given") for w in ws)
    # the events warning no longer says no Patient.deceased[x] was read (one was)
    assert not any("Procedure or Patient.deceased[x] of an event was read" in w for w in ws)


# -- B2: a Condition event with a partial onset ---------------------------------------------------------------

def test_partial_event_date_is_imputed(tmp_path):
    # 2024-03-03 -> 2024-06-01: 28 + 30 + 31 + 1 = 90 days
    s = read_fhir(_write(tmp_path, _pat(), _cart(), _relapse("2024-06")))
    ev = s.events.filter(pl.col("event") == "relapse")
    assert ev["day"].to_list() == [90.0]
    assert "imputed" in ev["source_note"][0] and "onsetDateTime" in ev["source_note"][0]
    assert any("P1" in w and "partial date" in w for w in _warnings(s))


def test_partial_event_in_the_infusion_month_is_not_before_day_0(tmp_path):
    # "2024-03" contains day 0 (2024-03-03): SDTM rule, not before day 0 -> day 0 (not 03-01 = day -2)
    s = read_fhir(_write(tmp_path, _pat(), _cart(), _relapse("2024-03")))
    assert s.events.filter(pl.col("event") == "relapse")["day"].to_list() == [0.0]


def test_partial_event_date_drop(tmp_path):
    # a NEUT: the "not given" warnings are given only with a course (study-folder rule)
    s, rep = read_fhir_with_report(_write(tmp_path, _pat(), _cart(), _relapse("2024-06"), _neut(1, "2024-03-10T08:00:00Z")),
                                   partial_event_dates="drop")
    assert s.events.filter(pl.col("event") == "relapse").height == 0
    assert rep.filter(pl.col("reason").str.contains("partial_event_dates = drop")).height == 1
    assert any(w.startswith("subject P1: 1 event(s) with a partial date") and "drop" in w for w in _warnings(s))
    # the events "not given" warning names the subject whose event was left out
    assert any("(table events)" in w and "P1 have event(s) with a partial date on no day" in w for w in _warnings(s))


# -- A2: an in-progress administration without an end ----------------------------------------------------------

def test_in_progress_administration_runs_to_the_last_record(tmp_path):
    # start 2024-03-05T08:00 = day 2 + 8/24 = 2.333; last record NEUT 2024-03-09T12:00 = day 6.5, floored to
    # its day as the SDTM reader's ongoing rule does -> end_day 6
    f = _write(tmp_path, _pat(), _cart(), _neut(1, "2024-03-09T12:00:00Z"),
               _vaso("in-progress", {"start": "2024-03-05T08:00:00Z"}))
    s = read_fhir(f)
    iv = s.interventions
    assert iv["start_day"].to_list() == [pytest.approx(2 + 8 / 24)]
    assert iv["end_day"].to_list() == [6.0]
    assert "in-progress" in iv["source_note"][0] and "last record" in iv["source_note"][0]
    assert any(w.startswith("1 MedicationAdministration(s) in progress") for w in _warnings(s))
    old = read_fhir(f, ongoing_interventions="start_only").interventions
    assert old["end_day"].to_list() == [None]


def test_completed_administration_without_end_is_unchanged(tmp_path):
    s = read_fhir(_write(tmp_path, _pat(), _cart(), _neut(1, "2024-03-09T12:00:00Z"),
                         _vaso("completed", {"start": "2024-03-05T08:00:00Z"})))
    assert s.interventions["end_day"].to_list() == [None]


# -- B3: daylight-saving changes are not mixed offsets ----------------------------------------------------------

def test_dst_change_is_not_warned_but_a_real_mix_is(tmp_path):
    # Europe/Berlin: +01:00 until 2024-03-31, +02:00 after (one change, one hour)
    dst = _write(tmp_path, _pat(), _cart(effectiveDateTime="2024-03-03T10:00:00+01:00"),
                 _neut(1, "2024-03-10T08:00:00+01:00"), _neut(2, "2024-04-10T08:00:00+02:00"),
                 _neut(3, "2024-06-10T08:00:00+02:00"))
    assert not any("different UTC offsets" in w for w in _warnings(read_fhir(dst)))
    mix = _write(tmp_path, _pat(), _cart(), _neut(1, "2024-03-10T08:00:00-05:00"), name="mix.json")
    assert any("subject P1: times carry different UTC offsets" in w for w in _warnings(read_fhir(mix)))


# -- B4: a CAR-T administration with only an end ------------------------------------------------------------

def test_cart_with_only_an_end_names_the_missing_start(tmp_path):
    s, rep = read_fhir_with_report(_write(tmp_path, _pat(), _cart(effectivePeriod={"end": "2024-03-03T12:00:00Z"}),
                                          _neut(1, "2024-03-10T08:00:00Z")))
    obs = rep.filter(pl.col("resource_type") == "Observation")["reason"][0]
    assert "effectivePeriod.start is not given" in obs and "has no CAR-T" not in obs
    assert any(w.startswith("subject P1: the CAR-T MedicationAdministration/c1's effectivePeriod.start is not given")
               for w in _warnings(s))


# -- C1: the events "not given" warning ------------------------------------------------------------------------

def test_events_warning_does_not_promise_events_csv_reasons(tmp_path):
    s = read_fhir(_write(tmp_path, _pat(), _cart(), _neut(1, "2024-03-10T08:00:00Z")))
    ev = [w for w in _warnings(s) if "(table events)" in w]
    assert len(ev) == 1 and "events.csv not given" not in ev[0] and "reads as none given" in ev[0]


def test_bad_option_value_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="ongoing_interventions"):
        read_fhir(_write(tmp_path, _pat(), _cart()), ongoing_interventions="single")
