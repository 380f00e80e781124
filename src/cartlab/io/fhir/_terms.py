"""CodeableConcept texts and the negation cues of the FHIR reader's text matching."""

from __future__ import annotations

import re

#: negation and uncertainty cues in a Condition's free text (NegEx's commonest triggers, Chapman et al.,
#: J Biomed Inform 2001): a text rule must not turn "No seizure activity" into a seizure. Pre-cues
#: negate a term after them ("no seizure"), post-cues one before them ("infection ruled out");
#: "seizure without loss of consciousness" stays a seizure.
_NEGATION_BEFORE = re.compile(r"\b(no|denies|denied|negative for|rule out|r/o|absence of|free of|possible|"
                              r"probable|suspected|suspicion of|history of)\b", re.IGNORECASE)
_NEGATION_AFTER = re.compile(r"\b(ruled out|unlikely|excluded|not (present|confirmed|seen))\b", re.IGNORECASE)


def _codings(cc: dict | None) -> list[dict]:
    return list((cc or {}).get("coding") or [])


def _text(cc: dict | None) -> str:
    cc = cc or {}
    return cc.get("text") or next((c.get("display") or c.get("code") or "" for c in _codings(cc)), "")


def _texts(cc: dict | None) -> list[str]:
    """Every text of a CodeableConcept, in the order it is matched: text, each coding's display, code."""
    cs = _codings(cc)
    return [t for t in [(cc or {}).get("text"), *(c.get("display") for c in cs), *(c.get("code") for c in cs)] if t]


def _negated(text: str, term: str) -> str | None:
    """The negation or uncertainty cue that applies to the first match of ``term`` in ``text``, if any."""
    m = re.search(term, text, re.IGNORECASE)
    if m is None:
        return None
    before = _NEGATION_BEFORE.search(text[:m.start()])
    after = _NEGATION_AFTER.search(text[m.end():])
    cue = before or after
    return cue.group(0) if cue else None


def _code_label(cc: dict | None) -> str:
    cs = _codings(cc)
    return f"{cs[0].get('system', '')}|{cs[0].get('code', '')}" if cs else _text(cc)


def agent_texts(r: dict, medications: dict[str, list[str]]) -> list[str]:
    """Every text naming the drug of a MedicationAdministration ``r``, in the order they are tried: its
    medicationCodeableConcept's texts, else medicationReference.display and the texts of the Medication it
    references: ``#id`` is one of ``r``'s ``contained`` resources (R4 References: "a reference to a contained
    resource"), else a Medication of the input (``medications``: reference -> texts)."""
    if r.get("medicationCodeableConcept"):
        return _texts(r["medicationCodeableConcept"])
    ref = r.get("medicationReference") or {}
    target = str(ref.get("reference") or "")
    if target.startswith("#"):
        found = next((c for c in r.get("contained") or [] if isinstance(c, dict) and c.get("id") == target[1:]
                      and c.get("resourceType") == "Medication"), None)
        named = _texts(found.get("code")) if found else []
    else:
        named = medications.get(target, [])
    return [t for t in [ref.get("display"), *named] if t]
