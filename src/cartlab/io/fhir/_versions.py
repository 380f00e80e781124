"""Only the current version of each FHIR resource is read (review 46 A2, C9).

A history Bundle carries "the versions of the resources in question, sorted with newest versions first, and
including versions of resource deletions" (R4 http ``_history``); a collection may carry two versions of one
resource (R4 Bundle bdl-7: entries with the same fullUrl must have different meta.versionId), and searchset
pages or several files may repeat the same resource. Before any resource is read, the entries are grouped by
resource identity (``Type/id``, else the entry's fullUrl; an entry with neither is its own resource):

* exact repeats of one resource (the same JSON) are one resource, the first entry is read;
* of several versions, the current one is read: the highest ``meta.versionId`` when every version has a
  numeric one, else the latest ``meta.lastUpdated`` when every version has one, else the first listed in a
  ``history`` Bundle (newest first); otherwise nothing says they are versions of one resource rather than
  different resources that share an id (per-patient Bundles of one exporter, each with its ``Observation/obs-1``):
  every one is read, as any other resource (two results of one parameter at one time are then the study
  reader's "conflicting values" error, naming both);
* a DELETE entry (``request.method`` DELETE, ``request.url`` ``Type/id``) newer than the current version
  removes the resource (newer: its ``response.lastModified`` is not before the version's ``meta.lastUpdated``,
  else it is listed before the version in the same history Bundle; a DELETE in another kind of Bundle
  removes the versions of other files, not those of its own Bundle, which a transaction applies after it).

Every version not read is a mapping-report row (``superseded``, ``deleted``, ``exact repeat``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime

__all__ = ["current_versions"]


def _stamp(text) -> datetime | None:
    """A FHIR instant (meta.lastUpdated, response.lastModified) as an aware datetime, None if not one."""
    if not isinstance(text, str):
        return None
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else None


def _key(e) -> str | None:
    r = e.res
    if r.get("id"):
        return f"{r['resourceType']}/{r['id']}"
    return e.full or None


def _version(e) -> str | None:
    return (e.res.get("meta") or {}).get("versionId")


def _newest(versions: list, history: set) -> tuple[object | None, str]:
    """(the current version, the rule that chose it) of several versions of one resource; (None, "") when
    nothing orders them (no numeric meta.versionId, meta.lastUpdated or history Bundle order)."""
    ids = [_version(e) for e in versions]
    if all(isinstance(v, str) and v.strip().isdigit() for v in ids):
        if len({int(v) for v in ids}) == len(ids):
            return max(versions, key=lambda e: int(_version(e))), "highest meta.versionId"
    stamps = [_stamp((e.res.get("meta") or {}).get("lastUpdated")) for e in versions]
    if all(s is not None for s in stamps) and len(set(stamps)) == len(stamps):
        return versions[stamps.index(max(stamps))], "latest meta.lastUpdated"
    if all(e.file in history for e in versions) and len({e.file for e in versions}) == 1:
        return versions[0], "first listed in the history Bundle (newest first)"
    return None, ""


def _deleted_after(d, cur, history: set) -> bool:
    """Whether the DELETE entry ``d`` is newer than the current version ``cur``."""
    when, upd = _stamp(d.req.get("lastModified")), _stamp((cur.res.get("meta") or {}).get("lastUpdated"))
    if when is not None and upd is not None:
        return when >= upd
    if d.file == cur.file:
        return d.file in history and d.index < cur.index  # history Bundle: newest first
    return True


def current_versions(entries: list, deletes: list, history: set) -> tuple[list, list[tuple[object, str]]]:
    """(the entries to read, [(entry not read, reason)]). ``deletes``: DELETE entries (``.res`` holds
    resourceType and id, ``.req`` the request url and response lastModified); ``history``: the files that are
    history Bundles."""
    groups: dict[str, list] = defaultdict(list)
    for e in entries:
        k = _key(e)
        if k is not None:
            groups[k].append(e)
    gone: dict[str, list] = defaultdict(list)
    for d in deletes:
        gone[f"{d.res['resourceType']}/{d.res.get('id')}"].append(d)
    drop: dict[int, str] = {}
    notes: list[tuple[object, str]] = []
    for k, group in groups.items():
        if len(group) == 1 and k not in gone:
            continue
        seen: dict[str, object] = {}
        versions = []
        for e in group:
            text = json.dumps(e.res, sort_keys=True)
            if text in seen:
                drop[id(e)] = f"exact repeat of {seen[text].where}: read once"
                continue
            seen[text] = e
            versions.append(e)
        cur, rule = (versions[0], "") if len(versions) == 1 else _newest(versions, history)
        if cur is None:  # not known to be versions of one resource: each is read (a DELETE removes those it follows)
            for e in versions:
                dels = [d for d in gone.get(k, []) if _deleted_after(d, e, history)]
                if dels:
                    drop[id(e)] = f"{k}: deleted ({dels[0].where}, request DELETE): not read"
            continue
        for e in versions:
            if e is not cur:
                new = f" version {_version(cur)}" if _version(cur) else ""
                drop[id(e)] = (f"{k}{' version ' + _version(e) if _version(e) else ''}: superseded by {cur.where}"
                               f"{new} ({rule}): not read")
        dels = [d for d in gone.get(k, []) if _deleted_after(d, cur, history)]
        if dels:  # the superseded versions keep their reason; the current one is deleted
            drop[id(cur)] = f"{k}: deleted ({dels[0].where}, request DELETE): not read"
            notes.append((dels[0], f"DELETE {k}: the resource is deleted, none of its versions is read"))
    for k, ds in gone.items():
        if k not in groups:
            notes.append((ds[0], f"DELETE {k}: no version of it in the input"))
    kept = [e for e in entries if id(e) not in drop]
    notes = [(e, drop[id(e)]) for e in entries if id(e) in drop] + notes
    return kept, notes
