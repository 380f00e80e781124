"""The tables a study did not give, carried through a FHIR Bundle (review 40 store/cli A1).

A study folder without interventions.csv or events.csv says nothing about them ("missing is not negative",
docs/derivation-conventions.md "Absent files"), while a Bundle without their resources reads as none given.
:func:`cartlab.io.fhir.writer.write_fhir_bundle` therefore records ``Study.absent`` as ``Bundle.meta.tag``
entries (system :data:`CS_ABSENT`, code = the table name) and the reader turns them back into
``Study.absent`` with the study folder's "not given" warning, so export + import keeps them unknown
(docs/interop/fhir.md, "Round trip").
"""

from __future__ import annotations

import json
from pathlib import Path

from cartlab.io.absent_files import OPTIONAL_TABLES, absent_file_means
from cartlab.io.errors import Issue
from cartlab.io.fhir.mapping import BASE

__all__ = ["CS_ABSENT", "absent_meta", "absent_tagged", "tagged_warnings"]

#: the CodeSystem of the Bundle.meta.tag that names a table not given in the exported study
CS_ABSENT = f"{BASE}/CodeSystem/absent-table"


def absent_meta(study) -> dict | None:
    """The Bundle ``meta`` naming ``study``'s absent tables (None when every table was given)."""
    absent = sorted(t for t in getattr(study, "absent", frozenset()) if t in OPTIONAL_TABLES)
    if not absent:
        return None
    return {"tag": [{"system": CS_ABSENT, "code": t,
                     "display": f"{t}: not given in the exported study (unknown, not none)"} for t in absent]}


def absent_tagged(files: list[Path]) -> frozenset[str]:
    """The tables every Bundle of ``files`` tags as not given (an NDJSON file or a resource that is not a
    Bundle carries no tag: a table counts as absent only when each file says so)."""
    tagged = None
    for f in files:
        found: set[str] = set()
        if f.suffix.lower() == ".json":
            try:
                obj = json.loads(f.read_bytes().decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                obj = None  # the reader has already refused such a file
            if isinstance(obj, dict) and obj.get("resourceType") == "Bundle":
                for t in ((obj.get("meta") or {}).get("tag") or []):
                    if isinstance(t, dict) and t.get("system") == CS_ABSENT and t.get("code") in OPTIONAL_TABLES:
                        found.add(t["code"])
        tagged = found if tagged is None else tagged & found
    return frozenset(tagged or ())


def tagged_warnings(tagged: frozenset[str], heights: dict[str, int], name: str) -> tuple[frozenset[str], list]:
    """``Study.absent`` from the tags (a tagged table of which resources were read anyway is given) and the
    study folder's "<table>.csv, not given" warnings for them (the form a stored study keeps its absent
    tables in, cartlab.io.absent_files.absent_from_warnings), plus one warning per contradicted tag."""
    absent = frozenset(t for t in tagged if heights.get(t, 0) == 0)
    out = []
    for t in sorted(absent):
        if t == "observations":
            continue
        out.append(Issue(f"{t}.csv", None, f"not given: in the study {name} was exported from (Bundle.meta.tag "
                                           f"{CS_ABSENT}#{t}), so {absent_file_means(t)}", [], "warning"))
    for t in sorted(tagged - absent):
        out.append(Issue(name, None, f"Bundle.meta.tag {CS_ABSENT}#{t} says table {t} was not given, but "
                                     f"{heights[t]} row(s) of it were read: it is read as given", [], "warning"))
    return absent, out
