"""Read FHIR R4 JSON (a Bundle, a folder of resources/Bundles, or NDJSON) into a canonical Study.

Every resource is validated with ``fhir.resources.R4B``; mapped resources become study-folder rows
which go through the study-folder reader (same units, checks and conversions), then get the FHIR
provenance (src_file = the JSON file, src_row = the entry, 1-based). Resources that cannot be mapped
are counted in the mapping report (resource type, code, n, reason), never dropped silently.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

import polars as pl

from cartlab.errors import InputError
from cartlab.io.clock import days_from, midnight
from cartlab.io.course_checks import MIXED_OFFSETS
from cartlab.io.dictionary import load_dictionary
from cartlab.io.errors import Issue, StudyValidationError
from cartlab.io.fhir._absent import absent_tagged, tagged_warnings
from cartlab.io.fhir._assemble import _day0_warnings, _frame, _subjects_from_fhir, _translate, translate_warning
from cartlab.io.fhir._bundle import _effective, _Entry, _files, _load, _unversioned
from cartlab.io.fhir._checks import (
    HINT,
    check_extension,
    check_observation,
    dose_element,
    qtext,
    same_dosage,
    unmapped_codes,
)
from cartlab.io.fhir._common import parse_fhir_time, period_start, read_row_extension, time_element, utc_offset
from cartlab.io.fhir._notices import (
    PARTIAL_REASON,
    absent_note,
    dose_unit,
    events_note,
    no_day0_warnings,
    note_oxygen,
    note_partial,
    note_reason,
    note_status,
    partial_warnings,
    quantity_unit,
    reason_warnings,
    status_warnings,
)
from cartlab.io.fhir._partial import (
    DEFAULTS,
    _element,
    absent_in_fhir,
    check_options,
    deaths,
    is_partial,
    mixed_offsets,
    offset_stamp,
    ongoing_ends,
    partial_event,
    warn_partial_events,
)
from cartlab.io.fhir._terms import _code_label, _codings, _negated, _text, _texts, agent_texts
from cartlab.io.fhir._versions import current_versions
from cartlab.io.fhir.mapping import (
    CS_CATEGORY,
    CS_EVENT,
    CS_FLAG,
    DAYS_ONLY_ANCHOR,
    EXT_ANCHOR,
    UCUM,
    FhirMapping,
    load_mapping,
)
from cartlab.io.study_folder import read_study
from cartlab.io.study_writer import write_study
from cartlab.io.value_text import CENSORED
from cartlab.kinetics.agents import is_car_t_agent
from cartlab.model import TABLES, Study
from cartlab.units import UnitError

_SEX = {"female": "F", "male": "M", "other": "U", "unknown": "U"}
#: MedicationAdministration statuses of a dose that was not given: never a dose, never day 0
_NOT_GIVEN = ("not-done", "entered-in-error")
#: MedicationAdministration statuses (R4 medication-admin-status) that do not say the dose was given:
#: "on-hold" (temporarily halted) and "unknown" (the system does not know): not read, never day 0
_NOT_KNOWN_GIVEN = ("on-hold", "unknown")
#: Observation statuses (R4 observation-status) read as results by default: final, amended, corrected.
#: preliminary/unknown are reported ("not a final result") unless ``observation_statuses`` adds them;
#: registered/cancelled/entered-in-error carry no result and are never read
READ_STATUSES = ("final", "amended", "corrected")
_OPTIONAL_STATUSES = ("preliminary", "unknown")
_NO_RESULT = ("entered-in-error", "cancelled", "registered")
_COMPONENT_OWN = ("code", "dataAbsentReason", "interpretation", "referenceRange")
#: Condition.verificationStatus codes of a diagnosis that is not confirmed (refuted/entered-in-error: not one)
_NOT_CONFIRMED = ("unconfirmed", "provisional", "differential")
#: a censored result written as text ("<50", ">= 1e3"): the study folder's censor rule decides the rest
_CENSORED_TEXT = CENSORED  # the whole text: "<0.5 x10^9/L" (a unit inside) is no censored result
_NUMBER_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")  # a plain number sent as valueString
#: ``numeric_valuestring``: a number or censored text ("9.5", "<50") sent as valueString carries no unit
#: (R4: a measured amount is a valueQuantity with its unit). "skip" (default): not read, reported;
#: "canonical": read in the param's canonical unit (cartlab's data dictionary), said in the report
NUMERIC_VALUESTRING = ("skip", "canonical")
#: the row-extension mark of a CAR-T administration whose clock time is subjects.infusion_datetime's
#: (the study row itself gives day 0 only): its cartlab day is checked against the date, not the time
TIME_FROM_INFUSION = ("time_from", "infusion_datetime")
REPORT_SCHEMA = {"file": pl.String, "resource_type": pl.String, "code": pl.String, "target": pl.String,
                 "n": pl.Int64, "reason": pl.String, "entries": pl.String}



class _Reader:
    def __init__(self, m: FhirMapping, statuses: tuple[str, ...] = READ_STATUSES, valuestring: str = "skip",
                 options: dict | None = None):
        self.m = m
        self.options = {**DEFAULTS, **(options or {})}  # partial dates, ongoing administrations (_partial)
        self.partial_death_events: list = []  # (entry, subject, text, element, code, row) of a partial death
        self.partial_events: dict[str, list[str]] = defaultdict(list)  # subject -> partial-dated events
        self.ongoing: list[tuple[dict, str]] = []  # (intervention row, status) in progress without an end
        self.undated_deaths: set[str] = set()  # subjects who died on no day (deceasedBoolean, partial + drop)
        self.statuses = statuses
        self.valuestring = valuestring
        self.no_anchor: dict[str, str] = {}  # subject -> why it has no day 0 (a partial CAR-T date)
        self.day0_warnings: list[tuple[str, str]] = []  # (subject, warning) about day 0
        self.rows: dict[str, list[dict]] = defaultdict(list)
        self.where: dict[str, list[_Entry]] = defaultdict(list)
        self.report: Counter = Counter()
        self.report_entries: dict = defaultdict(list)
        self.patients: dict[str, tuple[str, _Entry]] = {}  # reference -> (subject_id, entry)
        self.anchor: dict[str, datetime] = {}
        self.anchor_text: dict[str, str] = {}
        self.anchor_entry: dict[str, _Entry] = {}  # the CAR-T administration that gave day 0
        self.baseline: dict[str, dict] = defaultdict(dict)
        self.medications: dict[str, list[str]] = {}  # Medication reference -> its code's texts
        self.nominal: set[str] = set()  # subjects whose resources carry the nominal-time meta.tag
        self.offsets: dict[str, set] = defaultdict(set)  # subject -> (UTC offset, local time) of the times placed
        self.partial_dropped: list = []  # records on no day for a partial date (_notices, said on screen)
        self.oxygen_dropped: list = []  # oxygen supports not read for their device (_notices)
        self.unplaced: Counter = Counter()  # subject -> records on no day for want of day 0
        self.drugs_unknown: dict[str, Counter] = defaultdict(Counter)  # subject -> medication texts not mapped
        self.status_dropped: list = []  # Procedures of an intervention on-hold/unknown (_notices)
        self.status_skipped: dict[str, Counter] = defaultdict(Counter)  # Observation status -> param -> n
        self.events_unplaced: list = []  # (entry, subject, event, why, element prefix): events on no day
        self.unknown_reasons: list = []  # (entry, subject, reasonCode text, category or None, time) (_notices)

    def skip(self, e: _Entry, code: str, reason: str, target: str = "") -> None:
        key = (e.file, e.res["resourceType"], code, target, reason)
        self.report[key] += 1
        self.report_entries[key].append(e.index)

    def add(self, table: str, e: _Entry, row: dict, code: str, note: str | None = None) -> None:
        self.rows[table].append(row)
        self.where[table].append(e)
        self.skip(e, code, f"mapped ({note})" if note else "mapped", table)

    def subject(self, e: _Entry) -> str:
        ref = _unversioned((e.res.get("subject") or e.res.get("patient") or {}).get("reference"))
        if not ref:
            raise e.error("no subject reference (Patient)")
        if ref not in self.patients:
            raise e.error(f"subject {ref!r} is not a Patient in the input")
        return self.patients[ref][0]

    # -- time: day relative to day 0 (the first CAR-T administration, or the cartlab anchor)
    def day(self, e: _Entry, sid: str, text: str | None, ext: dict | None, key: str = "day"):
        """(day, datetime text) of ``text``; (None, reason) when it cannot be placed."""
        if not text:
            return None, "no effective/onset/performed time"
        try:
            dt = parse_fhir_time(text)
        except ValueError as exc:
            raise e.error(str(exc)) from exc
        if dt is None:
            return None, "partial date (year or month only) cannot be placed on a day"
        if sid not in self.anchor:
            self.unplaced[sid] += 1  # said on screen per subject (_notices.no_day0_warnings)
            return None, self.no_anchor.get(sid, "no day 0: the subject has no CAR-T MedicationAdministration")
        day = days_from(midnight(self.anchor[sid]), dt)  # calendar days from day 0 (cartlab.io.clock)
        if (off := utc_offset(text)) is not None:
            self.offsets[sid].add(offset_stamp(off, dt))
        if ext is not None and key in ext:
            if key == "day" and ext.get(TIME_FROM_INFUSION[0]) == TIME_FROM_INFUSION[1]:
                off = math.floor(day) != math.floor(ext[key])  # a day-only row at the infusion's clock time
            else:
                off = abs(ext[key] - day) > 1 / 1440
            if off:
                raise e.error(f"the time {text} disagrees with the cartlab {key} {ext[key]:g}; {HINT}")
            day = ext[key]
        # a nominal-time subject's times are day 0 + days, not calendar dates: no datetime is kept
        return day, (None if sid in self.nominal else text)

    def patients_pass(self, entries: list[_Entry]) -> None:
        for e in entries:  # Medications first: an administration may name its drug by reference
            r = e.res
            if r["resourceType"] == "Medication" and _texts(r.get("code")):
                for ref in (f"Medication/{r.get('id')}" if r.get("id") else None, e.full):
                    if ref:
                        self.medications[ref] = _texts(r.get("code"))
        for e in entries:
            r = e.res
            if r["resourceType"] != "Patient":
                continue
            ext = read_row_extension(r) or {}
            sid = next((i["value"] for i in r.get("identifier") or [] if i.get("system") == f"{CS_CATEGORY}/subject-id"), None)
            sid = sid or r.get("id")
            if not sid:  # a transaction's POST has no id (R4 http create): identifier, else the urn:uuid fullUrl
                sid = next((i["value"] for i in r.get("identifier") or [] if i.get("value")), None)
                src = "its first identifier.value" if sid else "its fullUrl"
                sid = sid or (e.full or "").rsplit(":", 1)[-1].rsplit("/", 1)[-1] or None
                if not sid:
                    raise e.error("a Patient needs an id, an identifier or a fullUrl to name the subject")
                self.skip(e, "subject_id", f"Patient without id: subject_id {sid!r} taken from {src}", "subjects")
            for ref in (f"Patient/{r.get('id')}" if r.get("id") else None, e.full):
                if ref:
                    self.patients[ref] = (sid, e)
            for x in r.get("extension") or []:
                if x.get("url") == EXT_ANCHOR:
                    self.anchor[sid] = parse_fhir_time(x["valueDateTime"])
            row = {"subject_id": sid, "sex": _SEX.get(r.get("gender") or "", None), **ext}
            self.add("subjects", e, row, "Patient")
        self._nominal_pass(entries)
        # day 0 of subjects without a cartlab anchor: the first CAR-T MedicationAdministration
        partial: dict[str, list[tuple[_Entry, str]]] = defaultdict(list)
        for e in entries:
            r = e.res
            if (r["resourceType"] == "MedicationAdministration" and is_car_t_agent(self._agent(r))
                    and r.get("status") not in _NOT_GIVEN + _NOT_KNOWN_GIVEN):  # not (known) given: no day 0
                sid = self.subject(e)
                if sid in self.nominal:  # day 0 is the nominal anchor, not this administration's time
                    continue
                start, end = _effective(r, "effective")
                dt = parse_fhir_time(start) if start else None
                if dt is None and start:  # "2024-03": a period of days, not a day
                    partial[sid].append((e, start))
                elif not start and end:  # FHIR Period: "If the start element is missing, the start ... is not known"
                    partial[sid].append((e, f"(no start; end {end})"))
                first = (sid not in self.anchor_text) and sid not in self._cartlab_anchored()
                if dt is not None and (first or (sid in self.anchor_text and dt < self.anchor[sid])):
                    self.anchor_text[sid], self.anchor[sid], self.anchor_entry[sid] = start, dt, e
        self._partial_cart(partial)

    def _partial_cart(self, partial: dict[str, list[tuple[_Entry, str]]]) -> None:
        """No day 0 for a subject with a given CAR-T administration dated only to a month or year
        ("2024-03") whose period can include or precede the first fully dated CAR-T: the first infusion
        may be that one, so day 0 is unknown (as the SDTM reader does for a partial --STDTC); a
        partial period wholly after the first dated CAR-T leaves day 0 as it is. Day 0 from cartlab's
        day0-anchor extension is not affected."""
        for sid, items in partial.items():
            if sid in self._cartlab_anchored():
                continue
            first = self.anchor.get(sid) if sid in self.anchor_text else None
            # a start not given (only an end) may fall on or before any dated CAR-T
            hit = [(e, t) for e, t in items if first is None or t.startswith("(") or period_start(t) <= first.date()]
            if not hit:
                continue
            what = "; ".join(f"{_rid(e.res)}'s effectivePeriod.start is not given ({t[11:-1]})"
                             if t.startswith("(") else f"{_rid(e.res)}'s {time_element(e.res)} is partial ({t})"
                             for e, t in hit)
            if first is not None:
                what += (f", and may fall on or before the first fully dated CAR-T ({_rid(self.anchor_entry[sid].res)}, "
                         f"{self.anchor_text[sid]})")
                for d in (self.anchor, self.anchor_text, self.anchor_entry):
                    d.pop(sid, None)
            el = time_element(hit[0][0].res)
            self.no_anchor[sid] = f"no day 0: the CAR-T {what}: day 0 cannot be placed"
            self.day0_warnings.append((sid, (
                f"subject {sid}: the CAR-T {what}, so the subject has no day 0: none of the subject's dated "
                f"records can be placed on a day (counted as not mapped in the mapping report); give the "
                f"complete date of the CAR-T infusion in {el}")))

    def _nominal_pass(self, entries: list[_Entry]) -> None:
        """Subjects of which a resource carries cartlab's ``nominal-time`` meta.tag (the writer tags every
        resource of a subject without an infusion date): their times are day 0 + days on the nominal
        anchor (the Patient's day0-anchor, else the documented 2000-01-01), never calendar dates, so the
        subject gets no infusion date/datetime and its rows no datetime."""
        for e in entries:
            r = e.res
            tags = (r.get("meta") or {}).get("tag") or []
            if not any(t.get("system") == CS_FLAG and t.get("code") == "nominal-time" for t in tags):
                continue
            if r["resourceType"] == "Patient":
                ref = f"Patient/{r.get('id')}" if r.get("id") else e.full
            else:
                ref = _unversioned((r.get("subject") or r.get("patient") or {}).get("reference"))
            if ref in self.patients:
                self.nominal.add(self.patients[ref][0])
        for sid in self.nominal:
            self.anchor.setdefault(sid, parse_fhir_time(DAYS_ONLY_ANCHOR))

    def _cartlab_anchored(self) -> set:
        return set(self.anchor) - set(self.anchor_text)

    def _agent(self, r: dict) -> str:
        """The drug of a MedicationAdministration (review 46 B6: every coding, and contained Medications):
        of its medicationCodeableConcept's texts (text, each display, each code), else the reference's display
        and the texts of the Medication it references (``#id``: one of the resource's ``contained``; else in
        the same bundle or files), the first that names a CAR-T product, else the first the medication map
        knows, else the first given."""
        texts = agent_texts(r, self.medications)
        return (next((t for t in texts if is_car_t_agent(t)), None)
                or next((t for t in texts if self.m.rule("medications", t)), None)
                or (texts[0] if texts else ""))

    def _rule(self, kind: str, cc: dict | None) -> tuple[dict | None, str]:
        """(the first rule of ``kind`` matching a text of ``cc``: text, each display, each code; that text)."""
        for t in _texts(cc):
            if (rule := self.m.rule(kind, t)) is not None:
                return rule, t
        return None, _text(cc)

    # -- resources
    def observation(self, e: _Entry, at: str = "") -> None:
        """One Observation (``at``: the element path prefix of a panel's component, ``component[2].``)."""
        r = e.res
        code = _code_label(r.get("code"))
        if r.get("status") in _NO_RESULT:
            return self.skip(e, code, f"status {r['status']}: not a result")
        if r.get("status") not in self.statuses:  # R4: preliminary "data may be incomplete or unverified"
            param = self.m.param_of(_codings(r.get("code"))) or "(panel or code not mapped)"
            self.status_skipped[str(r.get("status"))][param] += 1  # said on screen (_notices.status_warnings)
            return self.skip(e, code, f"status {r.get('status')}: not a final result (read only with "
                                      f"observation_statuses including {r.get('status')!r})")
        param = self.m.param_of(_codings(r.get("code")))
        if param is None and r.get("component"):
            # a panel (blood pressure 85354-9: systolic 8480-6 and diastolic 8462-4 as components,
            # the FHIR R4 vital-signs profile's shape): each mapped component is an observation
            return self._components(e, code)
        if param is None:
            return self.skip(e, code, "code not in the FHIR code map (loinc_map.yaml)")
        sid = self.subject(e)
        ext = read_row_extension(r)
        if ext and ext.get("role") == "subject":  # cartlab baseline weight/height: a subjects column
            return self._baseline(e, sid, param, code)
        row = {"subject_id": sid, "param": param}
        note = None
        values = [k for k in r if k.startswith("value")]
        if r.get("dataAbsentReason"):  # missing is not negative, and not a number either
            why = next((c.get("code") for c in _codings(r["dataAbsentReason"]) if c.get("code")),
                       _text(r["dataAbsentReason"]))
            if values:  # R4 obs-6: "dataAbsentReason SHALL only be present if Observation.value[x] is not present"
                return self.skip(e, code, f"{_rid(r)}: {at}dataAbsentReason {why!r} next to {at}{values[0]} "
                                          "(against FHIR R4 obs-6): the value is not read")
            return self.skip(e, code, f"{at}dataAbsentReason {why!r}: no result")
        q = r.get("valueQuantity")
        if q is not None and q.get("value") is None:
            return self.skip(e, code, f"{_rid(r)}: {at}valueQuantity.value missing: no result")
        if q is not None:
            unit, note = quantity_unit(self.m, e, q, f"{at}valueQuantity")  # note: the unit text read (B3)
            if note:
                row["source_note"] = note
            self._unit_of_param(e, q, unit, param, f"{at}valueQuantity")
            if q.get("comparator"):
                row["value_text"] = f"{q['comparator']}{q.get('value')}"
            else:
                row["orig_value"] = _num(q.get("value"))
            row["orig_unit"] = unit
            rng = (r.get("referenceRange") or [{}])[0]
            for side, col in (("low", "orig_lln"), ("high", "orig_uln")):
                if rng.get(side) and rng[side].get("value") is not None:
                    row[col] = self._in_unit(e, rng[side], unit, f"{at}referenceRange[0].{side}")
        elif "valueInteger" in r:
            if load_dictionary()[param].unit:  # an integer has no unit field: not the study folder's 'unit' column
                raise e.error(f"{at}valueInteger {r['valueInteger']}: {param} is measured in a unit (e.g. "
                              f"{load_dictionary()[param].unit}) and valueInteger carries none: send a "
                              "valueQuantity with its UCUM code")
            row["orig_value"] = float(r["valueInteger"])
        elif "valueString" in r:
            unit = load_dictionary()[param].unit
            number = _NUMBER_TEXT.match(str(r["valueString"]).strip())
            censored = not number and _CENSORED_TEXT.match(str(r["valueString"]))
            kind = "numeric" if number else "censored"
            if (number or censored) and unit and self.valuestring == "skip":  # "9.5": g/dL or g/L?
                return self.skip(e, code, f"{kind} valueString without a unit: not read (a valueQuantity carries "
                                          f"the unit; option numeric_valuestring='canonical' reads it in {unit})")
            if number:  # "38.5": a number sent as text (a score, or numeric_valuestring='canonical')
                row["orig_value"] = float(number.group(0))
            elif not load_dictionary()[param].text_values and not censored:
                # as SDTM's --STRESC: a word for a numeric param is no result (the record is reported)
                return self.skip(e, code, "valueString is neither a number nor a censored value (<x): not numeric")
            else:
                row["value_text"] = r["valueString"]
            if unit and (number or censored):  # no unit field: the canonical unit, as the option asks
                row["orig_unit"] = unit
                note = f"{kind} valueString read in the canonical unit {unit}: option numeric_valuestring='canonical'"
        elif "valueCodeableConcept" in r:
            if not load_dictionary()[param].text_values:  # a coded word ("negative") for a numeric param
                return self.skip(e, code, "valueCodeableConcept for a numeric parameter: not numeric")
            row["value_text"] = _text(r["valueCodeableConcept"])
        else:
            return self.skip(e, code, "no value of a supported type (Quantity, integer, string, CodeableConcept)")
        spec = (r.get("specimen") or {}).get("display")
        if spec:
            row["specimen"] = self.m.specimens.get(spec.lower())
            if row["specimen"] is None:
                self.skip(e, code, f"specimen {spec!r} not in the specimen map: left empty", "observations")
        if ext:
            self._check_value(e, param, row, ext)
            check_observation(e, param, row, ext)
            row.update({k: v for k, v in ext.items() if k not in ("day",)})
        day, dt = self.day(e, sid, _effective(r, "effective")[0], ext)
        if day is None:
            if dt == PARTIAL_REASON:
                note_partial(self, e, "observations", time_element(r), _effective(r, "effective")[0], sid, param)
            return self.skip(e, code, dt)
        row["day"] = day
        row["datetime"] = ext.get("datetime") if ext is not None else dt
        note = None if "orig_unit" in (ext or {}) else note  # a cartlab row: its unit is in the extension
        if r.get("status") not in READ_STATUSES:  # read because the user asked for it: say so
            note = "; ".join(x for x in (note, f"status {r.get('status')}") if x)
        self.add("observations", e, row, code, note)

    def _components(self, e: _Entry, code: str) -> None:
        """The mapped components of a panel Observation, each as an Observation of its own (the
        panel's subject, effective time, status and specimen); unmapped components are reported."""
        r = e.res
        used = 0
        for k, comp in enumerate(r.get("component") or [], 1):
            if not isinstance(comp, dict) or self.m.param_of(_codings(comp.get("code"))) is None:
                self.skip(e, f"{code} component {k} {_code_label((comp or {}).get('code'))}",
                          "component code not in the FHIR code map (loinc_map.yaml)")
                continue
            # R4 component has its own value[x], dataAbsentReason, interpretation and referenceRange; the
            # panel's belong to the panel's own value[x]
            part = {k2: v for k2, v in r.items() if k2 not in ("component", *_COMPONENT_OWN)
                    and not k2.startswith("value")}
            part.update({k2: v for k2, v in comp.items() if k2 in _COMPONENT_OWN or k2.startswith("value")})
            self.observation(_Entry(e.file, e.index, part, e.full), f"component[{k - 1}].")
            used += 1
        if not used:
            self.skip(e, code, "panel code not in the FHIR code map, and none of its components is")

    def _unit(self, e: _Entry, q: dict, path: str) -> str:
        """A Quantity's unit: its ``code`` when ``system`` is UCUM (or absent), else its ``unit`` text
        (``_notices.quantity_unit``); an error names the element (and the system)."""
        return quantity_unit(self.m, e, q, path)[0]

    def _unit_of_param(self, e: _Entry, q: dict, unit: str, param: str, path: str) -> None:
        """The value's own unit must convert to the param's unit: otherwise the error names the value's
        unit (checked before the referenceRange, which is converted to the value's unit)."""
        if not unit:
            return  # no unit: the study-folder reader says whether the param accepts none
        try:
            load_dictionary()[param].conversion_from(unit)
        except UnitError as exc:
            el = "code" if q.get("code") is not None and q.get("system") in (None, UCUM) else "unit"
            raise e.error(f"{path}.{el} {q.get(el)!r} is not a unit of {param} ({exc})") from exc

    def _in_unit(self, e, q: dict, unit: str, path: str) -> float:
        """A referenceRange bound (at ``path``) in the value's unit."""
        from cartlab.units import conversion

        u = self._unit(e, q, path)
        if u == unit:
            return _num(q["value"])
        try:
            return conversion(u, unit).scale * _num(q["value"]) + conversion(u, unit).offset
        except UnitError as exc:
            el = "code" if q.get("code") is not None and q.get("system") in (None, UCUM) else "unit"
            raise e.error(f"{path}.{el} {q.get(el)!r}: {exc}") from exc

    def _check_value(self, e: _Entry, param: str, row: dict, ext: dict) -> None:
        """The standard valueQuantity must agree with the cartlab original value it travels with."""
        if row.get("orig_value") is None or ext.get("orig_value") is None:
            return
        p = load_dictionary()[param]
        try:
            std = p.conversion_from(row.get("orig_unit"))(row["orig_value"])
            orig = p.conversion_from(ext.get("orig_unit"))(ext["orig_value"])
        except UnitError as exc:
            raise e.error(str(exc)) from exc
        if not math.isclose(std, orig, rel_tol=1e-9, abs_tol=1e-12):
            raise e.error(f"valueQuantity {row['orig_value']} {row.get('orig_unit')} disagrees with the "
                          f"cartlab original value {ext['orig_value']} {ext.get('orig_unit')}; {HINT}")

    def _baseline(self, e: _Entry, sid: str, param: str, code: str) -> None:
        q = e.res.get("valueQuantity") or {}
        col, unit = ("weight_kg", "kg") if param == "WEIGHT" else ("height_cm", "cm")
        if q.get("comparator") or q.get("value") is None:  # not an exact weight/height: not read
            what = f"comparator {q['comparator']!r}" if q.get("comparator") else "value missing"
            return self.skip(e, code, f"{_rid(e.res)}: valueQuantity.{what}: subjects.{col} not read")
        try:
            v = load_dictionary()[param].conversion_from(self._unit(e, q, "valueQuantity"))(_num(q.get("value")))
        except UnitError as exc:
            raise e.error(f"valueQuantity: {exc}") from exc
        self.baseline[sid][col] = v
        self.skip(e, code, f"mapped to subjects.{col}", "subjects")

    def medication(self, e: _Entry) -> None:
        r = e.res
        agent = self._agent(r)
        if r.get("status") in _NOT_GIVEN:
            return self.skip(e, agent, f"status {r['status']}: not given")
        if r.get("status") in _NOT_KNOWN_GIVEN:  # R4: on-hold "temporarily halted", unknown "does not know"
            return self.skip(e, agent, f"status {r['status']}: not known to be given (not read, never day 0)")
        cat = next((c["code"] for c in _codings(r.get("category")) if c.get("system") == CS_CATEGORY), None)
        if cat == "dose" or (cat is None and is_car_t_agent(agent)):
            table, category = "doses", None
        elif cat is not None:
            table, category = "interventions", cat
        else:
            rule = self.m.rule("medications", agent)
            if rule is None:
                ref = _unversioned((r.get("subject") or {}).get("reference"))
                if ref in self.patients:
                    self.drugs_unknown[self.patients[ref][0]][agent or "(no name)"] += 1
                return self.skip(e, agent, "medication not in the medication map")
            table, category = rule["table"], rule.get("category")
        # the medication text names only the category (cartlab's writer does so when no agent was recorded,
        # as medication[x] is required): no agent, not an agent called e.g. "vasopressor"
        named = None if category is not None and agent.strip().lower() == category else agent
        self._timed(e, table, agent, {"agent": named, "category": category}, "effective")

    def _timed(self, e: _Entry, table: str, code: str, base: dict, prefix: str) -> None:
        r = e.res
        sid = self.subject(e)
        ext = read_row_extension(r)
        start, end = _effective(r, prefix)
        row = {"subject_id": sid, **{k: v for k, v in base.items() if v is not None}}
        mapped_note = None  # said in the mapping report's reason of the row read
        dosage = r.get("dosage") or {}
        el = dose_element(dosage, base.get("category") if table == "interventions" else None)
        q = dosage.get(el.split(".")[1]) if el else None
        if el and dosage.get("dose") and dosage.get("rateQuantity") and not same_dosage(dosage):
            other = "dosage.rateQuantity" if el == "dosage.dose" else "dosage.dose"
            self.skip(e, code, f"{_rid(r)}: both dosage.dose and dosage.rateQuantity: {el} read ("
                               f"{'a rate, as the category vasopressor is dosed' if 'rate' in el else 'the dose'}); "
                               f"{other} {qtext(dosage[other.split('.')[1]])} not read", table)
        if q and (q.get("comparator") or q.get("value") is None):  # "<2": not an exact dose, never read as 2
            why = (f"{el}.comparator {q['comparator']!r}: not an exact dose" if q.get("comparator")
                   else f"{el}.value missing")
            if table == "doses":  # a dose row needs its dose; day 0 was already set from this administration
                return self.skip(e, code, f"{_rid(r)}: {why}: the dose is not read")
            self.skip(e, code, f"{_rid(r)}: {why}: dose left empty", table)
            q = None
        if not q and dosage.get("rateRatio"):  # a rate as a ratio (5 mg / 1 h): not read, said so (session 33)
            if table == "doses":
                return self.skip(e, code, f"{_rid(r)}: dosage.rateRatio not read: the dose is not read")
            self.skip(e, code, f"{_rid(r)}: dosage.rateRatio not read: dose left empty", table)
        if table == "doses":
            row.pop("category", None)
            if q:
                row["orig_dose"], row["orig_unit"] = _num(q.get("value")), dose_unit(self.m, e, q, el)
        elif q:
            row["dose"], row["dose_unit"] = _num(q.get("value")), dose_unit(self.m, e, q, el)
        if r.get("reasonCode") and table == "interventions":
            row["indication"] = self.m.vocabulary("indications", [t for cc in r["reasonCode"] for t in _texts(cc)])
            if row["indication"] is None and not (ext or {}).get("indication"):
                said = _text(r["reasonCode"][0])
                if self.options["unknown_indication"] == "drop":  # the old rule: not read, warned (_notices)
                    note_reason(self, e, sid, said, base.get("category"), start)
                    return self.skip(e, code, f"reasonCode {said!r} not in the indication table (indications): "
                                              "not mapped (option unknown_indication = drop)")
                note_reason(self, e, sid, said, None, None)
                mapped_note = f"reasonCode {said!r} not in the indication table: indication left empty"
                row["source_note"] = (f"reasonCode {said!r} is not in the indication table: indication left empty "
                                      "(counts toward CRS/ICANS; option unknown_indication = count)")
        if ext:  # a standard field edited by hand: an error, never silently overridden (review36 A1)
            std = {**base, **{k: row.get(k) for k in ("dose", "dose_unit", "orig_dose", "orig_unit", "indication")}}
            std["dose_element"] = el
            if r.get("reasonCode") is None:
                std["indication"] = None
            raw = {"indication": _text(r["reasonCode"][0]) if r.get("reasonCode") else None,
                   "o2_device": _text(r["usedCode"][0]) if r.get("usedCode") else None,
                   "agent": self._agent(r) if r["resourceType"] == "MedicationAdministration" else None}
            check_extension(e, table, std, ext, raw=raw, has_end=bool(end) if table == "interventions" else None)
            row.update({k: v for k, v in ext.items() if not k.endswith("day") and k != TIME_FROM_INFUSION[0]})
        if table == "interventions" and row.get("category") == "oxygen" and not row.get("o2_device"):
            note_oxygen(self, e, sid, f"'{code}' without a device (no usedCode)", start)
            return self.skip(e, code, "oxygen without a device (o2_device is required)")
        if table == "events" and is_partial(start) and ext is None:  # "2024-06": partial_event_dates
            return partial_event(self, e, sid, code, row, start, prefix)
        if not start and end:  # FHIR Period: "If the start element is missing, the start ... is not known"
            return self.skip(e, code, f"{_rid(r)}: {prefix}Period.start is not given (end {end}): not placed on a day")
        what = f"{row.get('agent') or code}" + (f" (reason {row['indication']})" if row.get("indication") else "")
        if table in ("doses", "events"):
            day, dt = self.day(e, sid, start, ext)
            if day is None and table == "events" and dt != PARTIAL_REASON:  # said on screen (review 46 B7)
                self.events_unplaced.append((e, sid, row.get("event"), dt, prefix))
            if day is None:
                if dt == PARTIAL_REASON and table == "doses" and sid not in self.no_anchor:  # CAR-T: day-0 warning
                    note_partial(self, e, table, _element(r, prefix), start, sid, what)
                return self.skip(e, code, dt)
            row["day"], row["datetime"] = day, (ext.get("datetime") if ext is not None else dt)
        else:
            day, dt = self.day(e, sid, start, ext, "start_day")
            if day is None:
                if dt == PARTIAL_REASON:
                    note_partial(self, e, table, _element(r, prefix), start, sid, what,
                                 row.get("category"))
                return self.skip(e, code, dt)
            row["start_day"], row["start_datetime"] = day, (ext.get("start_datetime") if ext is not None else dt)
            if end:
                eday, edt = self.day(e, sid, end, ext, "end_day")
                if eday is None:  # a partial end ("2024-03"): the start is kept, the end not placed
                    self.skip(e, code, f"{_rid(r)}: {prefix}Period.end {end!r}: {edt}: end not placed", table)
                else:
                    row["end_day"], row["end_datetime"] = eday, (ext.get("end_datetime") if ext is not None else edt)
            elif r.get("status") == "in-progress" and ext is None:  # R4: "started but has not yet completed"
                # a MedicationAdministration or (review 46 A4) a Procedure of an intervention (oxygen)
                self.ongoing.append((row, f"{r['resourceType']} status in-progress, no {prefix}Period.end"))
        self.add(table, e, row, code, mapped_note)

    def procedure(self, e: _Entry) -> None:
        r = e.res
        code, text = _code_label(r.get("code")), _text(r.get("code"))
        cs = {c.get("system"): c.get("code") for c in _codings(r.get("code"))}
        if r.get("status") in ("not-done", "entered-in-error", "preparation"):
            return self.skip(e, code, f"status {r['status']}: not done")
        if cs.get(CS_EVENT):
            rule = {"table": "events", "event": cs[CS_EVENT]}
        elif cs.get(CS_CATEGORY):
            rule = {"table": "interventions", "category": cs[CS_CATEGORY]}
        else:
            rule, text = self._rule("procedures", r.get("code"))
        if rule is None:
            return self.skip(e, code, "procedure not in the procedure map")
        if rule.get("report"):  # e.g. an autologous or unspecified transplant: never read as allo_hsct
            return self.skip(e, code, rule["report"])
        if r.get("status") in _NOT_KNOWN_GIVEN:  # R4 EventStatus on-hold "temporarily stopped", unknown
            if rule["table"] == "interventions":  # "does not know": as a MedicationAdministration (review 46 A5)
                note_status(self, e, self.subject(e), r["status"], rule.get("category"), _effective(r, "performed")[0])
            return self.skip(e, code, f"status {r['status']}: not known to be done (not read)")
        base = {k: rule.get(k) for k in ("category", "o2_device", "event")}
        if r.get("usedCode") and base.get("category") == "oxygen" and not base.get("o2_device"):
            base["o2_device"] = self.m.vocabulary("o2_devices", [t for cc in r["usedCode"] for t in _texts(cc)])
            if base["o2_device"] is None and not (read_row_extension(r) or {}).get("o2_device"):
                note_oxygen(self, e, self.subject(e), f"with usedCode {_text(r['usedCode'][0])!r}, not in the "
                            "oxygen device table (o2_devices)", _effective(r, "performed")[0])
                return self.skip(e, code, f"usedCode {_text(r['usedCode'][0])!r} not in the oxygen device table "
                                          "(o2_devices): not mapped")
        base["detail"] = r["note"][0].get("text") if r.get("note") else None
        self._timed(e, rule["table"], code, base, "performed")

    def condition(self, e: _Entry) -> None:
        r = e.res
        code, text = _code_label(r.get("code")), _text(r.get("code"))
        cs = {c.get("system"): c.get("code") for c in _codings(r.get("code"))}
        if (r.get("verificationStatus") and any(c.get("code") in ("refuted", "entered-in-error")
                                               for c in _codings(r["verificationStatus"]))):
            return self.skip(e, code, "verificationStatus refuted/entered-in-error")
        unsure = next((c["code"] for c in _codings(r.get("verificationStatus"))
                       if c.get("code") in _NOT_CONFIRMED), None)
        if unsure:
            return self.skip(e, code, f"verificationStatus {unsure}: not a confirmed diagnosis")
        rule = {"table": "events", "event": cs[CS_EVENT]} if cs.get(CS_EVENT) else None
        if rule is None:
            rule, text = self._rule("conditions", r.get("code"))
        if rule is None:
            return self.skip(e, code, "condition not in the condition map")
        if not cs.get(CS_EVENT) and (cue := _negated(text or "", rule["match"])):  # "No seizure activity"
            return self.skip(e, code, f"condition text is negated or uncertain ({cue!r}): not an event")
        if rule.get("report"):
            return self.skip(e, code, rule["report"])
        base = {"event": rule["event"], "detail": (r.get("note") or [{}])[0].get("text")}
        self._timed(e, "events", code, base, "onset")

    def deaths(self) -> list[str]:
        """Patient.deceased[x] and partial death dates (cartlab.io.fhir._partial.deaths); the warnings."""
        return deaths(self)


def _rid(r: dict) -> str:
    """``Type/id`` of a resource, named in a mapping-report reason about that one resource."""
    return f"{r.get('resourceType')}/{r.get('id')}" if r.get("id") else f"{r.get('resourceType')} (no id)"


def _num(v) -> float | None:
    return None if v is None else float(v)


def _dispatch(rd: _Reader, e: _Entry) -> None:
    t = e.res["resourceType"]
    if t == "Patient":
        return
    if t == "Medication":
        return rd.skip(e, _code_label(e.res.get("code")), "Medication: read to name the administrations that reference it")
    handler = {"Observation": rd.observation, "MedicationAdministration": rd.medication,
               "Procedure": rd.procedure, "Condition": rd.condition}.get(t)
    if handler is None:
        return rd.skip(e, "", f"resource type {t} is not read by cartlab")
    handler(e)


def _statuses(given) -> tuple[str, ...]:
    given = (given,) if isinstance(given, str) else tuple(given)
    bad = [s for s in given if s not in READ_STATUSES + _OPTIONAL_STATUSES]
    if bad:
        raise InputError(f"observation_statuses: {bad[0]!r} cannot be read as a result (choose from "
                         f"{', '.join(READ_STATUSES + _OPTIONAL_STATUSES)}; {', '.join(_NO_RESULT)} carry none)")
    return given


def read_fhir_with_report(path: str | Path, mapping=None, study_id: str | None = None,
                          observation_statuses=READ_STATUSES,
                          numeric_valuestring: str = "skip", partial_death_dates: str = "impute",
                          partial_event_dates: str = "impute",
                          ongoing_interventions: str = "last_record",
                          unknown_indication: str = "count") -> tuple[Study, pl.DataFrame]:
    """:func:`read_fhir` and its mapping report (file, resource_type, code, target, n, reason, entries)."""
    path = Path(path)
    opts = {"partial_death_dates": partial_death_dates, "partial_event_dates": partial_event_dates,
            "ongoing_interventions": ongoing_interventions, "unknown_indication": unknown_indication}
    check_options(opts)
    statuses = _statuses(observation_statuses)
    if numeric_valuestring not in NUMERIC_VALUESTRING:
        raise InputError(f"numeric_valuestring must be one of {', '.join(NUMERIC_VALUESTRING)}, "
                         f"not {numeric_valuestring!r}")
    m = load_mapping(mapping)
    entries, sources, deletes, history = [], [], [], set()
    for f in _files(path):
        got, src = _load(f, deletes, history)
        entries += got
        sources.append(src)
    # only the current version of a resource is read; the others are reported (review 46 A2, C9)
    entries, not_current = current_versions(entries, deletes, history)
    rd = _Reader(m, statuses, numeric_valuestring, opts)
    for e, why in not_current:
        rd.skip(e, "", why)
    rd.patients_pass(entries)
    for e in entries:
        _dispatch(rd, e)
    mixed = (_day0_warnings(rd) + rd.deaths() + warn_partial_events(rd) + ongoing_ends(rd) + mixed_offsets(rd)
             + partial_warnings(rd) + reason_warnings(rd) + no_day0_warnings(rd)
             + status_warnings(rd))
    _subjects_from_fhir(rd)
    if not rd.rows["subjects"]:
        raise InputError(f"{path}: no Patient resource: a study needs at least one subject")
    frames = {t: _frame(rd.rows[t], t) for t in TABLES}
    with tempfile.TemporaryDirectory(prefix="cartlab-fhir-") as tmp:
        # tables without a resource are left out of the folder (its "not given" warnings say which)
        empty = frozenset(t for t, f in frames.items() if t != "subjects" and f.height == 0)
        write_study(Study(study_id="fhir", absent=empty, **frames), tmp, fmt="parquet")
        try:
            study = read_study(tmp, study_id=study_id or path.stem)
        except StudyValidationError as exc:
            raise _translate(exc, rd) from exc
    # a Bundle without a table's resources reads as none given, unless cartlab's export tagged the table
    # as not given in the exported study (Bundle.meta.tag, review 40 store/cli A1: then unknown, as there)
    tagged = absent_tagged(_files(path))
    study.absent, tag_notes = tagged_warnings(tagged, {t: frames[t].height for t in TABLES}, path.name)
    # the study folder's mixed-offsets warning names rows of the temporary folder: the Bundle's own
    # warning (_mixed_offsets, naming the subject and offsets) says it in FHIR's words
    dropped = set(rd.partial_events) if opts["partial_event_dates"] == "drop" else set()
    study.warnings = [translate_warning(events_note(absent_note(absent_in_fhir(w, path.name, rd.undated_deaths,
                                                                              dropped), rd), rd), rd)
                      for w in getattr(study, "warnings", [])
                      if MIXED_OFFSETS not in w.message
                      and not (w.file.rsplit(".", 1)[0] in study.absent and w.message.startswith("not given:"))]
    study.warnings += tag_notes
    study.warnings += [Issue(path.name, None, msg, [], "warning") for msg in mixed + unmapped_codes(rd.report)]
    sha = {name: s for name, _, s, _ in sources}
    for t in TABLES:
        df = study.table(t)
        if df.height:
            where = rd.where[t]
            files = [where[r - 1].file for r in df["src_row"].to_list()]
            idx = [where[r - 1].index for r in df["src_row"].to_list()]
            setattr(study, t, df.with_columns(
                pl.Series("src_file", files, dtype=pl.String),
                pl.Series("src_sha256", [sha[f] for f in files], dtype=pl.String),
                pl.Series("src_row", idx, dtype=pl.Int64),
            ))
    #: the reader options this study was read with (the CLI prints them; docs/interop/fhir.md)
    study.reader_options = {"observation_statuses": list(statuses), "numeric_valuestring": numeric_valuestring, **opts}
    study.sources = pl.DataFrame(sources, schema={"file": pl.String, "format": pl.String, "sha256": pl.String,
                                                  "n_rows": pl.Int64}, orient="row")
    # an option other than the default is named in the report (n 0: no record); always in reader_options
    chosen = [(k, ", ".join(v) if isinstance(v, list) else v) for k, v in study.reader_options.items()
              if v != {"observation_statuses": list(READ_STATUSES), "numeric_valuestring": "skip", **DEFAULTS}[k]]
    report = pl.DataFrame(
        [(f, t, c, tg, n, rs, ",".join(map(str, rd.report_entries[(f, t, c, tg, rs)][:20])))
         for (f, t, c, tg, rs), n in sorted(rd.report.items())]
        + [(path.name, "(reader option)", k, "", 0, f"option {k}={v}", "") for k, v in chosen],
        schema=REPORT_SCHEMA, orient="row",
    )
    return study, report


def read_fhir(path: str | Path, mapping=None, study_id: str | None = None,
              observation_statuses=READ_STATUSES, numeric_valuestring: str = "skip", **options) -> Study:
    """Read a FHIR R4 Bundle JSON file, NDJSON file or folder of them into a canonical Study.

    ``mapping``: a YAML file (or dict) extending ``loinc_map.yaml``. ``observation_statuses``: the
    Observation.status codes read as results (default final, amended, corrected; ``preliminary`` and
    ``unknown`` may be added). ``numeric_valuestring``: a number or censored text sent as valueString
    for a param with a unit: ``skip`` (default, reported) or ``canonical`` (read in the param's
    canonical unit). ``options``: ``partial_death_dates`` / ``partial_event_dates`` (impute, default, or
    drop), ``ongoing_interventions`` (last_record, default, or start_only) and ``unknown_indication``
    (empty, default, or drop): docs/interop/fhir.md. Raises :class:`InputError` naming the file and entry of the first problem. The
    mapping report is ``study.mapping_report``; the options used are ``study.reader_options``.
    """
    study, report = read_fhir_with_report(path, mapping, study_id, observation_statuses, numeric_valuestring, **options)
    study.mapping_report = report
    return study
