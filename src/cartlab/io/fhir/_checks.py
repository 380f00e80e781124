"""The standard FHIR fields of a cartlab-written resource against its cartlab row extension.

The writer repeats in the row extension what a standard field already says (the agent, dose, unit,
rate, indication, category, oxygen device, event, detail). A reader that let the extension win would
silently ignore a hand edit of the standard field (review36 A1), so a disagreement is an error naming
the resource and the field, with the way to make the edit stick (docs/interop/fhir.md, "Round trip").
"""

from __future__ import annotations

import math

from cartlab.units import UnitError, conversion

#: what to do when a standard field was edited on purpose (C3)
HINT = ("delete the cartlab row extension (https://cartlab.invalid/fhir/StructureDefinition/row) of this "
        "resource to use the edited value")

#: table -> (canonical column, FHIR element) the writer puts in both places (writer.py)
_TEXT_FIELDS = {
    "interventions": (("agent", "medicationCodeableConcept"), ("category", "category / code"),
                      ("indication", "reasonCode"), ("o2_device", "usedCode")),
    "events": (("event", "code"), ("detail", "note")),
    "doses": (),
}
#: table -> (value column, unit column, FHIR element) of a duplicated quantity
_QUANTITY = {"interventions": ("dose", "dose_unit", "dosage.dose / dosage.rateQuantity"),
             "doses": ("orig_dose", "orig_unit", "dosage.dose")}


def _norm(v) -> str | None:
    return None if v is None or str(v).strip() == "" else str(v).strip().lower()


def _same_quantity(v1, u1, v2, u2) -> bool:
    """The two quantities are equal (after a pint conversion when the units differ)."""
    if v1 is None or v2 is None:
        return v1 is None and v2 is None
    if (u1 or "") != (u2 or ""):
        try:
            c = conversion(str(u1 or ""), str(u2 or ""))
        except UnitError:
            return False
        v1 = c.scale * float(v1) + c.offset
    return math.isclose(float(v1), float(v2), rel_tol=1e-9, abs_tol=1e-12)


def check_extension(e, table: str, std: dict, ext: dict | None, *, raw: dict | None = None,
                    has_end: bool | None = None) -> None:
    """Raise ``e.error`` when a standard field of a cartlab-written resource (``std``: the canonical
    values read from the standard elements; ``raw``: {column: the element's own text} also accepted)
    disagrees with the cartlab row extension ``ext``. A field the extension does not carry is read
    from the standard element; a standard element deleted while the extension keeps it is an edit too."""
    if not ext:
        return
    raw = raw or {}
    for col, element in _TEXT_FIELDS.get(table, ()):
        if col not in ext or (col not in std and col not in raw):
            continue  # no cartlab value (the standard one is read), or no such element (a Procedure has no medication)
        a, b = _norm(std.get(col)), _norm(ext.get(col))
        if a != b and not (b is not None and b == _norm(raw.get(col))):
            said = raw.get(col) if raw.get(col) is not None else std.get(col)
            raise e.error(f"{element} {said!r} disagrees with the cartlab {col} {ext.get(col)!r}; {HINT}")
    if table in _QUANTITY:
        vcol, ucol, element = _QUANTITY[table]
        if ext.get(vcol) is None:
            return  # no cartlab dose: the standard one is read
        element = std.get("dose_element") or element
        if not _same_quantity(std.get(vcol), std.get(ucol), ext.get(vcol), ext.get(ucol)):
            said = "absent" if std.get(vcol) is None else f"{std.get(vcol):g} {std.get(ucol) or ''}".strip()
            orig = "none" if ext.get(vcol) is None else f"{ext.get(vcol):g} {ext.get(ucol) or ''}".strip()
            raise e.error(f"{element} {said} disagrees with the cartlab {vcol} {orig}; {HINT}")
    if has_end is False and "end_day" in ext:  # the end was deleted: the extension would put it back
        raise e.error(f"the period has no end, the cartlab row has end_day {ext['end_day']:g}; {HINT}")


#: interventions categories whose canonical dose is a rate (study-format.md: dose_unit e.g. ug/kg/min)
RATE_CATEGORIES = ("vasopressor",)


def dose_element(dosage: dict, category: str | None) -> str | None:
    """The dosage element read as the dose: for a rate-dosed category (vasopressor) the rateQuantity
    when given, otherwise dosage.dose (R4: "the amount ... given at one administration event") and
    the rateQuantity when there is no dose."""
    if category in RATE_CATEGORIES and dosage.get("rateQuantity"):
        return "dosage.rateQuantity"
    if dosage.get("dose"):
        return "dosage.dose"
    return "dosage.rateQuantity" if dosage.get("rateQuantity") else None


def qtext(q: dict) -> str:
    return f"{q.get('comparator') or ''}{q.get('value')} {q.get('code') or q.get('unit') or ''}".strip()


def same_dosage(dosage: dict) -> bool:
    """dosage.dose and dosage.rateQuantity say the same quantity (then neither is reported dropped)."""
    d, r = dosage["dose"], dosage["rateQuantity"]
    return _same_quantity(d.get("value"), d.get("code") or d.get("unit"), r.get("value"), r.get("code") or r.get("unit"))


def check_observation(e, param: str, row: dict, ext: dict | None) -> None:
    """An Observation's censored valueQuantity (comparator + value) and referenceRange against the
    cartlab row extension's value_text / orig_lln / orig_uln (each compared in the param's canonical
    unit); the valueQuantity of an exact value is checked by the reader (``_check_value``)."""
    from cartlab.io.dictionary import load_dictionary
    from cartlab.io.value_text import CENSORED

    if not ext:
        return
    p = load_dictionary()[param]

    def canon(v, unit):
        try:
            return p.conversion_from(unit)(float(v))
        except (UnitError, TypeError, ValueError):
            return None

    for col, element in (("orig_lln", "referenceRange[0].low"), ("orig_uln", "referenceRange[0].high")):
        if ext.get(col) is None:
            continue
        a = canon(row[col], row.get("orig_unit")) if row.get(col) is not None else None
        b = canon(ext[col], ext.get("orig_unit"))
        if a is None or b is None or not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
            said = "absent" if row.get(col) is None else f"{row[col]:g} {row.get('orig_unit') or ''}".strip()
            raise e.error(f"{element} {said} disagrees with the cartlab {col} {ext[col]:g} "
                          f"{ext.get('orig_unit') or ''}; {HINT}".replace(" ;", ";"))
    ours = CENSORED.match(str(ext.get("value_text") or ""))
    theirs = CENSORED.match(str(row.get("value_text") or ""))
    if ours and theirs:
        sign = {"≤": "<=", "≥": ">="}
        a, b = canon(theirs.group(2), row.get("orig_unit")), canon(ours.group(2), ext.get("orig_unit"))
        if (sign.get(theirs.group(1), theirs.group(1)) != sign.get(ours.group(1), ours.group(1))
                or a is None or b is None or not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)):
            raise e.error(f"valueQuantity {row['value_text']} {row.get('orig_unit') or ''} disagrees with the "
                          f"cartlab value_text {ext['value_text']} {ext.get('orig_unit') or ''}; {HINT}")


def unmapped_codes(report) -> list[str]:
    """One warning naming the Observation codes not in the code map and how often each was seen (an
    unmapped ANC or platelet code leaves ICAHT and count recovery not evaluable: say so, not only in
    the mapping report)."""
    from collections import Counter

    seen = Counter()
    for (_f, t, c, _tg, rs), n in report.items():
        if t == "Observation" and rs.startswith(("code not in the FHIR code map", "panel code not in")):
            seen[c] += n
    if not seen:
        return []
    codes = ", ".join(f"{c} ({n})" for c, n in seen.most_common(10)) + (" ..." if len(seen) > 10 else "")
    return [f"{sum(seen.values())} Observation(s) with a code not in the FHIR code map (loinc_map.yaml) "
            f"were not read: {codes}; add the code to a mapping file (mapping=) if it is a cartlab param"]


def check_death(e, patient: dict, patient_day: float | None, death: dict, where) -> None:
    """A Patient's ``deceased[x]`` against the death event read from another resource (a Condition
    or Procedure; the writer puts the day there and the date on the Patient): an edit of one that
    the other contradicts is an error naming both, not a silently ignored field."""
    other = getattr(where, "where", str(where))
    if patient.get("deceasedBoolean") is False:
        raise e.error(f"deceasedBoolean is false, but {other} records a death on day {death['day']:g}; "
                      "correct one of the two")
    if patient_day is not None and death.get("day") is not None and \
            math.floor(patient_day + 1e-9) != math.floor(float(death["day"]) + 1e-9):
        raise e.error(f"deceasedDateTime {patient['deceasedDateTime']} (day {math.floor(patient_day + 1e-9):g}) "
                      f"disagrees with the death on day {death['day']:g} of {other}; correct one of the two")
