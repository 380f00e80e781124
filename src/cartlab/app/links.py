"""Deep links to a patient: ``http://HOST:PORT/?subject=ID`` (or ``#subject=ID``) opens the Patient
tab on that subject (docs/dashboard.md "Links to a patient").

A subject id the study does not have is never replaced by another subject: no subject is selected
and the page names the id it could not find (review 37 B5: a shared link must not show the wrong
patient without a word).
"""

from __future__ import annotations

from urllib.parse import parse_qs, unquote

#: the query / hash key naming a subject
SUBJECT_KEY = "subject"


def url_subject(search: str | None, hash_: str | None = None) -> str | None:
    """The subject id a page address names: ``?subject=ID`` first, else ``#subject=ID`` or
    ``#patient/ID``; None when it names none (an empty value names none either)."""
    q = parse_qs((search or "").lstrip("?"), keep_blank_values=False)
    if q.get(SUBJECT_KEY):
        return q[SUBJECT_KEY][0].strip() or None
    h = (hash_ or "").lstrip("#")
    if h.startswith("patient/"):
        return unquote(h.removeprefix("patient/")).strip() or None
    hq = parse_qs(h, keep_blank_values=False)
    if hq.get(SUBJECT_KEY):
        return hq[SUBJECT_KEY][0].strip() or None
    return None


def resolve_subject(requested: str | None, subject_ids: list[str], study_id: str) -> tuple[str | None, str | None]:
    """(subject to select, message): the requested subject when the study has it; the first subject
    when none is requested; no subject and a message naming the id when the study does not have it."""
    if requested is None:
        return (subject_ids[0] if subject_ids else None), None
    if requested in subject_ids:
        return requested, None
    n = len(subject_ids)
    return None, (f"The address names subject {requested!r}, which is not in study {study_id} "
                  f"({n} subject{'' if n == 1 else 's'}): no subject is shown. Choose one in the list.")
