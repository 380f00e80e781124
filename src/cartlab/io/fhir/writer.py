"""Write a :class:`~cartlab.model.Study` as a FHIR R4 collection Bundle (validated with
``fhir.resources.R4B``), carrying what FHIR has no field for in a cartlab row extension so that
:func:`~cartlab.io.fhir.reader.read_fhir` gives the same canonical study back."""

from __future__ import annotations

import json
import math
import re
import uuid
from pathlib import Path

from fhir.resources.R4B import get_fhir_model_class

from cartlab.errors import CartlabError, InputError
from cartlab.io.atomic import atomic_file
from cartlab.io.clock import midnight, parse_wall_clock
from cartlab.io.dictionary import load_dictionary
from cartlab.io.fhir import mapping as fm
from cartlab.io.fhir._absent import absent_meta
from cartlab.io.fhir._common import add_days, fhir_text, fhir_time, row_extension, utc_offset
from cartlab.io.value_text import CENSORED
from cartlab.kinetics.agents import is_car_t_agent
from cartlab.model import PROVENANCE_COLUMNS, Study

_NS = uuid.UUID("5b0c1d1e-7a57-4c1a-9c2e-ca27ab000001")
_GENDER = {"F": "female", "M": "male", "U": "unknown"}
_DOSE_UCUM = {"cells/kg": "{cells}/kg", "cells": "{cells}", "mg/m2": "mg/m2", "mg": "mg", "mg/kg": "mg/kg"}
_SKIP = set(PROVENANCE_COLUMNS) | {"subject_id"}


def _pid(subject_id: str) -> str:
    """A FHIR id ([A-Za-z0-9-.]{1,64}) for a subject id; the exact id goes in the identifier."""
    s = re.sub(r"[^A-Za-z0-9.\-]", "-", subject_id)[:55]
    return s if s == subject_id else f"{s}-{uuid.uuid5(_NS, subject_id).hex[:8]}"


def _full_url(rtype: str, rid: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NS, rtype + '/' + rid)}"


def _ref(subject_id: str) -> dict:
    """A reference to the subject's Patient by its fullUrl (a bundle of urn:uuid fullUrls has no base
    a relative ``Patient/id`` could resolve against: FHIR R4 Bundle, "Resolving references in Bundles")."""
    return {"reference": _full_url("Patient", _pid(subject_id))}


#: meta.tag of every resource of a days-only subject: its times sit on the nominal 2000-01-01 anchor
NOMINAL_TAG = {"system": fm.CS_FLAG, "code": "nominal-time",
               "display": "days since the CAR-T infusion placed on a nominal 2000-01-01 day 0: not calendar dates"}


def _clean(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def _quantity(value, unit: str | None, ucum: str | None) -> dict:
    q = {"value": value}
    if unit:
        q["unit"] = unit
    if ucum:
        q["system"], q["code"] = fm.UCUM, ucum
    return q


class _Writer:
    def __init__(self, study: Study, m: fm.FhirMapping):
        self.study, self.m = study, m
        self.entries: list[dict] = []
        self.anchor = {}  # subject -> midnight of day 0 (naive wall clock)
        self.anchor_text = {}  # subject -> its infusion date(-time) as FHIR text
        self.offset = {}  # subject -> the UTC offset of its infusion_datetime (times computed from days carry it)
        self.deceased: dict[str, str] = {}
        self.nominal: set[str] = set()  # days-only subjects (no infusion date): their times are nominal
        self.ref_sid = {_ref(sid)["reference"]: sid for sid in study.subject_ids}

    def add(self, resource: dict) -> None:
        rtype = resource["resourceType"]
        sid = self.ref_sid.get((resource.get("subject") or {}).get("reference", ""))
        if rtype == "Patient":
            sid = resource["identifier"][0]["value"]
        if sid in self.nominal:
            resource["meta"] = {"tag": [dict(NOMINAL_TAG)]}
        try:
            get_fhir_model_class(rtype).model_validate(resource)
        except Exception as exc:  # a bug in the writer, not bad input
            raise CartlabError(f"write_fhir_bundle built an invalid {rtype} {resource.get('id')}: {exc}") from exc
        self.entries.append({"fullUrl": _full_url(rtype, resource["id"]), "resource": resource})

    def when(self, sid: str, day, text) -> str:
        if _clean(text) is not None:
            return fhir_text(text)
        at = add_days(self.anchor[sid], float(day))
        if float(day).is_integer():  # a day without a clock time: a FHIR date, never an invented midnight UTC
            return at.date().isoformat()
        # a time computed from a fractional day is on the clock of day 0: the offset of the subject's
        # infusion_datetime when it has one (review 46 C12: never Z on a +08:00 clock), else Z
        return fhir_time(at, self.offset.get(sid, "Z"))

    def ext(self, row: dict, *, drop=()) -> dict:
        return row_extension({k: _clean(v) for k, v in row.items() if k not in _SKIP and k not in drop})

    def subjects(self) -> None:
        for row in self.study.subjects.iter_rows(named=True):
            sid = row["subject_id"]
            anchor = row["infusion_datetime"] or row["infusion_date"] or fm.DAYS_ONLY_ANCHOR
            self.anchor[sid] = midnight(parse_wall_clock(anchor))  # day 0's midnight (cartlab.io.clock)
            self.anchor_text[sid] = fhir_text(anchor)
            if row["infusion_datetime"] and (off := utc_offset(self.anchor_text[sid])) is not None:
                self.offset[sid] = off
        for sid in self.study.subject_ids:  # subjects found only in other tables: days-only anchor
            self.anchor.setdefault(sid, midnight(parse_wall_clock(fm.DAYS_ONLY_ANCHOR)))
            self.anchor_text.setdefault(sid, fhir_text(fm.DAYS_ONLY_ANCHOR))
        dated = {r["subject_id"] for r in self.study.subjects.iter_rows(named=True)
                 if r["infusion_datetime"] or r["infusion_date"]}
        self.nominal = set(self.study.subject_ids) - dated
        ev = self.study.events
        for row in ev.filter(ev["event"] == "death").iter_rows(named=True):
            self.deceased.setdefault(row["subject_id"], self.when(row["subject_id"], row["day"], row["datetime"]))
        for i, row in enumerate(self.study.subjects.iter_rows(named=True), 1):
            sid = row["subject_id"]
            res = {
                "resourceType": "Patient",
                "id": _pid(sid),
                "identifier": [{"system": f"{fm.CS_CATEGORY}/subject-id", "value": sid}],
                "extension": [
                    {"url": fm.EXT_ANCHOR, "valueDateTime": self.anchor_text[sid]},
                    self.ext(row, drop=("sex", "weight_kg", "height_cm")),
                ],
            }
            if row["sex"]:
                res["gender"] = _GENDER.get(row["sex"], "unknown")
            if sid in self.deceased and sid in self.nominal:
                res["deceasedBoolean"] = True  # no calendar date is known (the day is on the death Condition)
            elif sid in self.deceased:
                res["deceasedDateTime"] = self.deceased[sid]
            self.add(res)
            for col, param in (("weight_kg", "WEIGHT"), ("height_cm", "HEIGHT")):
                if _clean(row[col]) is not None:
                    self._baseline(sid, param, row[col], i)

    def _baseline(self, sid, param, value, i) -> None:
        system, code, display = self.m.param_code[param]
        unit = "kg" if param == "WEIGHT" else "cm"
        self.add({
            "resourceType": "Observation",
            "id": f"subj-{i}-{param.lower()}",
            "status": "final",
            "code": {"coding": [{"system": system, "code": code, "display": display}], "text": param},
            "subject": _ref(sid),
            "effectiveDateTime": self.anchor[sid].date().isoformat(),
            "valueQuantity": _quantity(value, unit, unit),
            "extension": [row_extension({"role": "subject"})],
        })

    def observations(self) -> None:
        for i, r in enumerate(self.study.observations.iter_rows(named=True), 1):
            sid, param = r["subject_id"], r["param"]
            if param not in self.m.param_code:
                raise InputError(f"observations row {i}: param {param!r} has no FHIR code in the code map "
                                 "(loinc_map.yaml, or a mapping file passed as mapping=)")
            system, code, display = self.m.param_code[param]
            ucum = self.m.param_ucum.get(param) or None
            res = {
                "resourceType": "Observation",
                "id": f"obs-{i}",
                "status": "final",
                "code": {"coding": [{"system": system, "code": code, "display": display}], "text": param},
                "subject": _ref(sid),
                "effectiveDateTime": self.when(sid, r["day"], r["datetime"]),
            }
            if _clean(r["value"]) is not None:
                res["valueQuantity"] = _quantity(r["value"], r["unit"], ucum)
            elif r["censor"] and _clean(r["censor_limit"]) is not None:
                res["valueQuantity"] = {**_quantity(r["censor_limit"], r["unit"], ucum), "comparator": r["censor"]}
            elif r["value_text"] is not None and (unit := r["orig_unit"] or r["unit"]) and (
                    c := CENSORED.match(r["value_text"])):
                # a censored text without censor/censor_limit (a Study built in code; the text is in the
                # original unit): a Quantity with its comparator and unit, never a valueString, whose unit
                # read_fhir does not guess (numeric_valuestring)
                code = ucum if unit == load_dictionary()[param].unit else None
                res["valueQuantity"] = {**_quantity(float(c.group(2)), unit, code),
                                        "comparator": {"≤": "<=", "≥": ">="}.get(c.group(1), c.group(1))}
            elif r["value_text"] is not None:
                res["valueString"] = r["value_text"]
            rng = {}
            for side, col in (("low", "lln"), ("high", "uln")):
                if _clean(r[col]) is not None:
                    rng[side] = _quantity(r[col], r["unit"], ucum)
            if rng:
                res["referenceRange"] = [rng]
            if r["specimen"]:
                res["specimen"] = {"display": r["specimen"]}
            keep = ("orig_value", "orig_unit", "orig_lln", "orig_uln", "orig_lloq", "value_text", "analyte",
                    "day", "datetime", "source", "source_note", "extra")
            res["extension"] = [self.ext({k: r[k] for k in keep})]
            self.add(res)

    def doses(self) -> None:
        infusion = {row["subject_id"]: row["infusion_datetime"] for row in self.study.subjects.iter_rows(named=True)
                    if row["infusion_datetime"]}
        for i, r in enumerate(self.study.doses.iter_rows(named=True), 1):
            sid = r["subject_id"]
            when = self.when(sid, r["day"], r["datetime"])
            mark = {}
            if (sid in infusion and _clean(r["datetime"]) is None and r["day"] == 0
                    and is_car_t_agent(r["agent"] or "")):
                # the day-0 CAR-T without a time of its own was given at subjects.infusion_datetime (the
                # Patient's day0-anchor): the MedicationAdministration says so, as readers take day 0
                # and infusion_datetime from it; the mark keeps the row's own day 0 on reading back
                when, mark = fhir_text(infusion[sid]), {"time_from": "infusion_datetime"}
            res = {
                "resourceType": "MedicationAdministration",
                "id": f"dose-{i}",
                "status": "completed",
                "category": {"coding": [{"system": fm.CS_CATEGORY, "code": "dose"}]},
                "medicationCodeableConcept": {"text": r["agent"]},
                "subject": _ref(sid),
                "effectiveDateTime": when,
                "extension": [self.ext({**{k: r[k] for k in ("orig_dose", "orig_unit", "day", "datetime", "source",
                                                              "source_note", "extra")}, **mark})],
            }
            if _clean(r["dose"]) is not None:
                res["dosage"] = {"dose": _quantity(r["dose"], r["unit"], _DOSE_UCUM.get(r["unit"] or ""))}
            self.add(res)

    def interventions(self) -> None:
        for i, r in enumerate(self.study.interventions.iter_rows(named=True), 1):
            sid = r["subject_id"]
            start = self.when(sid, r["start_day"], r["start_datetime"])
            has_end = _clean(r["end_day"]) is not None or r["end_datetime"] is not None
            end = self.when(sid, r["end_day"], r["end_datetime"]) if has_end else None
            res = {"id": f"int-{i}", "subject": _ref(sid),
                   "extension": [self.ext(r)]}
            if r["indication"]:
                res["reasonCode"] = [{"text": r["indication"]}]
            if r["category"] == "oxygen":
                res.update(resourceType="Procedure", status="completed",
                           code={"coding": [{"system": fm.CS_CATEGORY, "code": "oxygen"}], "text": "oxygen therapy"})
                res["performedPeriod" if end else "performedDateTime"] = {"start": start, "end": end} if end else start
                if r["o2_device"]:
                    res["usedCode"] = [{"text": r["o2_device"]}]
            else:
                res.update(resourceType="MedicationAdministration", status="completed",
                           category={"coding": [{"system": fm.CS_CATEGORY, "code": r["category"]}]},
                           medicationCodeableConcept={"text": r["agent"] or r["category"]})
                res["effectivePeriod" if end else "effectiveDateTime"] = {"start": start, "end": end} if end else start
                if _clean(r["dose"]) is not None:
                    rate = bool(re.search(r"/(min|h|hr|hour)\b", r["dose_unit"] or ""))
                    res["dosage"] = {"rateQuantity" if rate else "dose": _quantity(r["dose"], r["dose_unit"], None)}
            self.add(res)

    def events(self) -> None:
        for i, r in enumerate(self.study.events.iter_rows(named=True), 1):
            sid = r["subject_id"]
            t = self.when(sid, r["day"], r["datetime"])
            code = {"coding": [{"system": fm.CS_EVENT, "code": r["event"]}], "text": r["event"]}
            res = {"id": f"evt-{i}", "subject": _ref(sid), "code": code,
                   "extension": [self.ext(r)]}
            if r["event"] == "allo_hsct":
                res.update(resourceType="Procedure", status="completed", performedDateTime=t)
            else:
                res.update(resourceType="Condition", onsetDateTime=t)
            if r["detail"]:
                res["note"] = [{"text": r["detail"]}]
            self.add(res)


def build_bundle(study: Study, mapping=None) -> dict:
    """The Bundle (a JSON-ready dict) of ``study``; every resource validated with fhir.resources R4B."""
    w = _Writer(study, fm.load_mapping(mapping))
    w.subjects()
    w.observations()
    w.doses()
    w.interventions()
    w.events()
    bundle = {"resourceType": "Bundle", "id": _pid(study.study_id), "type": "collection", "entry": w.entries}
    if meta := absent_meta(study):  # the tables not given: unknown on reading back (io/fhir/_absent.py)
        bundle = {"resourceType": "Bundle", "id": bundle["id"], "meta": meta, "type": "collection", "entry": w.entries}
    return bundle


def write_fhir_bundle(study: Study, path: str | Path, mapping=None) -> Path:
    """Write ``study`` as a FHIR R4 collection Bundle JSON file at ``path`` (atomically)."""
    bundle = build_bundle(study, mapping)
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(bundle, indent=1, ensure_ascii=False), encoding="utf-8")
    return path
