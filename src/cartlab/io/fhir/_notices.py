"""FHIR records the reader cannot place or read, said on screen (review40_interop A2, B3, B9, C3;
review40_crs A1): kept in ``study.warnings`` so a stored study carries them.

* a finding, dose or intervention whose time is a partial date (R4 dateTime "a date, date-time or
  partial date": ``2024-03``) is on no day: cartlab has no imputation rule for them (``--partial-dates``
  is the SDTM reader's), so each is named (file, entry, resource, element, value); a CRS-relevant
  intervention (vasopressor, oxygen, tocilizumab, corticosteroid) says the CRS grade of that period may be
  higher (ASTCT 2019: a vasopressor makes hypotension grade >= 3, any oxygen support hypoxia grade >= 2);
* an oxygen support whose device is missing or not in the ``o2_devices`` table: the study format needs
  ``o2_device`` for oxygen, so it is not read, and named the same way (CRS may be higher);
* a Quantity whose ``system`` is not UCUM: its ``code`` is not a UCUM code (R4 Quantity: ``system``
  "System that defines coded unit form"), so the human ``unit`` text is read, or an error names the system;
* an R5-only element: the error says cartlab reads FHIR R4.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from cartlab.units import UnitError, parse_unit

__all__ = ["CRS_CATEGORIES", "PARTIAL_REASON", "absent_note", "dose_unit", "note_oxygen", "note_partial", "note_reason",
           "note_status", "no_day0_warnings", "events_note", "partial_warnings", "reason_warnings", "status_warnings",
           "quantity_unit", "r5_hint"]

#: the reason ``_Reader.day`` gives for a partial date (YYYY or YYYY-MM)
PARTIAL_REASON = "partial date (year or month only) cannot be placed on a day"
#: intervention categories the CRS grade reads (ASTCT 2019 Lee et al.: vasopressor, oxygen; tocilizumab and
#: corticosteroids waive the fever)
CRS_CATEGORIES = ("vasopressor", "oxygen", "tocilizumab", "corticosteroid")
UCUM = "http://unitsofmeasure.org"
_NO_FLAG = ("no reader option places it (FHIR findings, doses and interventions need a full date; "
            "--partial-dates applies to --sdtm only; --partial-event-dates to Condition/Procedure events): "
            "give the full date")
_TABLE_WORD = {"observations": "finding(s)", "doses": "dose(s)", "interventions": "intervention(s)"}

#: elements of the resources cartlab reads that FHIR R5 has and R4 has not (R5 renamed or added them:
#: MedicationAdministration.medication is a CodeableReference, occurence[x] replaces effective[x], ...)
R5_ONLY = {
    "MedicationAdministration": ("medication", "occurenceDateTime", "occurencePeriod", "occurenceTiming",
                                 "encounter", "basedOn", "isSubPotent", "subPotentReason", "recorded"),
    "Observation": ("instantiatesCanonical", "instantiatesReference", "triggeredBy", "bodyStructure"),
    "Procedure": ("occurrenceDateTime", "occurrencePeriod", "occurrenceString", "occurrenceAge",
                  "occurrenceRange", "occurrenceTiming", "recorded", "reportedBoolean", "reportedReference",
                  "used", "reason"),
    "Condition": ("participant",),
    "Medication": ("doseForm", "totalVolume", "marketingAuthorizationHolder", "definition"),
}


def r5_hint(res: dict, error: str = "") -> str:
    """'' or the hint naming the R5-only element of ``res`` that R4 validation rejected (C3): an element
    of :data:`R5_ONLY` present in ``res`` and named as a location line of the validation ``error``."""
    named = {line.strip() for line in error.splitlines()}
    els = [k for k in R5_ONLY.get(res.get("resourceType"), ()) if k in res and k in named]
    if not els:
        return ""
    return (f" (the element {res['resourceType']}.{els[0]} is FHIR R5: cartlab reads FHIR R4 (R4/R4B JSON), "
            "see docs/interop/fhir.md)")


def quantity_unit(m, e, q: dict, path: str) -> tuple[str, str | None]:
    """(cartlab unit, note) of a Quantity (B3). ``code`` is read as UCUM when ``system`` is UCUM or
    absent (R4 qty-3: a code needs a system; an absent one is taken as UCUM, cartlab's default);
    with another system the ``unit`` text is read through cartlab's unit parser, else an InputError names
    the entry, element and system. The note says when the unit text was read."""
    code, system, display = q.get("code"), q.get("system"), q.get("unit")
    if code is not None and system in (None, UCUM):
        try:
            return m.unit_from_ucum(str(code)), None
        except UnitError as exc:
            raise e.error(f"{path}.code {code!r}: {exc}") from exc
    if code is None:
        return str(display or ""), None
    if display:
        try:
            parse_unit(str(display))
            return str(display), (f"{path}.system {system!r} is not UCUM: the unit text {display!r} is read, "
                                  f"not the code {code!r}")
        except UnitError:
            pass
    what = f"unit {display!r} is not a unit cartlab reads" if display else "no unit text is given"
    raise e.error(f"{path}.system {system!r} is not UCUM ({UCUM}), so code {code!r} is not read as a unit, "
                  f"and {what}: send the UCUM code (system {UCUM})")


def note_partial(rd, e, table: str, element: str, text: str, sid: str, what: str,
                 category: str | None = None) -> None:
    """Remember a record not placed on a day for its partial date (A2, B9)."""
    rd.partial_dropped.append((e, table, element, text, sid, what, category))


def note_oxygen(rd, e, sid: str, why: str, when: str | None) -> None:
    """Remember an oxygen support (given at ``when``) not read for its device (review40_crs A1)."""
    rd.oxygen_dropped.append((e, sid, why, when))


def note_reason(rd, e, sid: str, text: str, category: str | None, when: str | None) -> None:
    """Remember an intervention whose reasonCode text is not in the indication table (review 46 A1):
    read with the indication empty (``category`` None) or not read (option unknown_indication = drop)."""
    rd.unknown_reasons.append((e, sid, text, category, when))


def note_status(rd, e, sid: str, status: str, category: str | None, when: str | None) -> None:
    """Remember a Procedure of an intervention with status on-hold/unknown, not read (review 46 A5)."""
    rd.status_dropped.append((e, sid, status, category, when))


def reason_warnings(rd) -> list[str]:
    """One warning per file naming the reasonCode texts not in the indication table (and how often), and,
    with ``unknown_indication = drop``, one per CRS-relevant intervention so set aside (review 46 A1)."""
    out: list[str] = []
    drop = rd.options["unknown_indication"] == "drop"
    files: dict[str, Counter] = defaultdict(Counter)
    for e, _, text, _, _ in rd.unknown_reasons:
        files[e.file][text] += 1
    for file, texts in files.items():
        n = sum(texts.values())
        named = ", ".join(f"{t!r} x{k}" for t, k in texts.most_common(10)) + (" ..." if len(texts) > 10 else "")
        what = ("not read (option unknown_indication = drop; count, the default, reads them with the indication "
                "empty)" if drop else
                "read with the indication empty: they count toward CRS/ICANS, as the study format counts an "
                "intervention whose indication is empty (option unknown_indication = count; drop leaves them out)")
        out.append(f"{file}: {n} intervention(s) with a reasonCode not in the indication table (indications) {what}: "
                   f"{named}; add the texts to `indications` in a --mapping file to attribute them")
    for e, sid, status, cat, when in rd.status_dropped:
        crs = (f": the CRS grade of that day ({when or 'time not given'}) may be higher than graded (ASTCT 2019 reads "
               f"{cat})" if cat in CRS_CATEGORIES else "")
        out.append(f"subject {sid}: {e.where}: the {cat or 'intervention'} Procedure with status {status} is not read "
                   f"(not known to be done, as a MedicationAdministration {status}){crs}")
    for e, sid, text, cat, when in rd.unknown_reasons:
        if drop and cat in CRS_CATEGORIES:
            out.append(f"subject {sid}: {e.where}: the {cat} with reasonCode {text!r} is not read (option "
                       f"unknown_indication = drop): the CRS grade of that day ({when or 'time not given'}) may be "
                       f"higher than graded (ASTCT 2019 reads {cat})")
    return out


def no_day0_warnings(rd) -> list[str]:
    """One warning per subject whose records could not be placed for want of day 0 because no CAR-T
    MedicationAdministration was recognised (review 46 B6; a partial CAR-T date has its own warning)."""
    out = []
    for sid, n in rd.unplaced.items():
        if sid in rd.no_anchor:
            continue
        seen = rd.drugs_unknown.get(sid) or {}
        named = (", ".join(f"{t} x{k}" for t, k in sorted(seen.items())[:10]) if seen else "none")
        out.append(f"subject {sid}: no CAR-T MedicationAdministration recognised (medications not in the medication "
                   f"map: {named}), so the subject has no day 0: {n} record(s) not placed on a day (counted as not "
                   "mapped in the mapping report); name the CAR-T product in medicationCodeableConcept (text, a "
                   "display or a code) or in the referenced Medication")
    return out


def status_warnings(rd) -> list[str]:
    """One warning per Observation status not read (preliminary, unknown; counts per param) and one naming
    the events not placed for want of a time (review 46 B7: on screen, not only in the mapping report)."""
    out = []
    for status, params in rd.status_skipped.items():
        n = sum(params.values())
        named = ", ".join(f"{p} x{k}" for p, k in params.most_common(10))
        hint = (f"; option observation_statuses (--observation-status {status}) reads them"
                if status in ("preliminary", "unknown") else "")
        out.append(f"{n} Observation(s) with status {status} not read as results ({named}){hint}")
    if rd.events_unplaced:
        named = "; ".join(f"{e.where} ({ev}, subject {sid}): {why}" for e, sid, ev, why, _ in rd.events_unplaced[:10])
        more = f" and {len(rd.events_unplaced) - 10} more" if len(rd.events_unplaced) > 10 else ""
        out.append(f"{len(rd.events_unplaced)} event(s) recorded but not placed on a day and not read (table events): "
                   f"{named}{more}; give Condition.onset[x] / Procedure.performed[x]")
    return out


def events_note(w, rd):
    """The "no ... event was read: none is recorded" warning, when events were set aside for want of a time:
    it must not say none happened (review 46 B7)."""
    if not rd.events_unplaced or "(table events)" not in w.message:
        return w
    from dataclasses import replace

    kinds = Counter(str(x[2]) for x in rd.events_unplaced)
    named = ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items()))
    head = w.message.split("(table events)")[0] + "(table events)"
    return replace(w, message=f"{head}: {len(rd.events_unplaced)} event(s) were recorded but not placed on a day "
                              f"({named}: see their warning); no other event is recorded")


def _period_days(rd, sid: str, text: str) -> str:
    from cartlab.io.fhir._partial import bounds

    if sid not in rd.anchor:
        return ""
    first, last = bounds(text)
    d0 = rd.anchor[sid].date()
    return f": days {(first - d0).days} to {(last - d0).days}"


def partial_warnings(rd) -> list[str]:
    """One warning per file and table naming the records not placed for a partial date, one per
    CRS-relevant intervention, and one per oxygen support not read for its device."""
    out: list[str] = []
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for item in rd.partial_dropped:
        groups[(item[0].file, item[1])].append(item)
    for (file, table), items in groups.items():
        named = "; ".join(f"{file}, entry {e.index} ({e.res['resourceType']}/{e.res.get('id')}, subject {sid}, "
                          f"{what}) {el} '{text}'" for e, _, el, text, sid, what, _ in items[:10])
        more = f" and {len(items) - 10} more" if len(items) > 10 else ""
        out.append(f"{len(items)} {_TABLE_WORD[table]} with a partial date (year or month only) not placed "
                   f"on a day and not read (table {table}): {named}{more}; {_NO_FLAG}")
        for e, _, el, text, sid, what, cat in items:
            if cat in CRS_CATEGORIES:
                out.append(f"subject {sid}: {e.where}: the {cat} {what} has a partial {el} '{text}' and is on no "
                           f"day: the CRS grade of that period ({text}{_period_days(rd, sid, text)}) may be higher "
                           f"than graded (ASTCT 2019 reads {cat}); {_NO_FLAG}")
    for e, sid, why, when in rd.oxygen_dropped:
        out.append(f"subject {sid}: {e.where}: oxygen support {why}: not read (the study format needs o2_device for "
                   f"oxygen): the CRS grade of that day ({when or 'time not given'}) may be higher than graded (ASTCT 2019: any oxygen support "
                   "makes hypoxia grade 2 or more); add the device text to o2_devices in a --mapping file, or give "
                   "Procedure.usedCode")
    return out


def interventions_dropped(rd) -> int:
    """How many interventions were not read for a partial date, an oxygen device or (option
    unknown_indication = drop) a reasonCode not in the indication table."""
    return (sum(1 for x in rd.partial_dropped if x[1] == "interventions")
            + len(rd.oxygen_dropped)
            + (len(rd.unknown_reasons) if rd.options["unknown_indication"] == "drop" else 0))


def dose_unit(m, e, q: dict, path: str) -> str | None:
    """A dosage Quantity's unit: the UCUM ``code`` first (system UCUM or none), as for observations;
    another system's code is not UCUM: the ``unit`` text, or an error naming the system (B3); the
    display ``unit`` when there is no code, or when cartlab cannot read the UCUM code but can read
    the display."""
    code, display = q.get("code"), q.get("unit")
    if code is None:
        return display
    if q.get("system") not in (None, UCUM):
        return quantity_unit(m, e, q, path)[0]
    try:
        return m.unit_from_ucum(str(code))
    except UnitError as exc:
        try:
            if display:
                parse_unit(str(display))
                return str(display)
        except UnitError:
            pass
        also = f" (nor its unit text {display!r})" if display else ""
        raise e.error(f"{path}.code {code!r}: {exc}{also}") from exc


def absent_note(w, rd):
    """The "no ... intervention was read: none is taken as given" warning, when interventions were set
    aside for a partial date, an oxygen device or an unknown reasonCode (unknown_indication = drop): says so
    instead (they are not "none given")."""
    n, held = interventions_dropped(rd), len(rd.status_dropped)
    if not (n or held) or "(table interventions)" not in w.message:
        return w
    from dataclasses import replace

    # never "none is taken as given" while some were set aside (review 46 A1): the table is empty, not "none given"
    said = ([f"{n} intervention(s) were given and not read (a partial date, an oxygen device or a reasonCode not "
             "known: see their warnings)"] if n else []) + (
        [f"{held} Procedure(s) of an intervention with status on-hold/unknown were not read (see their warnings)"]
        if held else [])
    head = w.message.split("(table interventions)")[0] + "(table interventions)"
    return replace(w, message=f"{head}: {'; '.join(said)}; no other intervention is recorded")
