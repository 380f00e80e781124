"""Loading FHIR R4 JSON for the reader: files, Bundle entries (validated with ``fhir.resources.R4B``),
references without their version, and a resource's effective/onset/performed time."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from fhir.resources.R4B import get_fhir_model_class

from cartlab.errors import InputError


def _unversioned(ref: str | None) -> str | None:
    """A reference without its version ("Patient/P1/_history/2" -> "Patient/P1"): a version-specific
    reference points at the same resource (FHIR R4 References, "Resolving references in Bundles")."""
    return ref.split("/_history/", 1)[0] if ref and "/_history/" in ref else ref


class _Entry:
    __slots__ = ("file", "index", "res", "full", "req")

    def __init__(self, file: str, index: int, res: dict, full: str | None = None, req: dict | None = None):
        self.file, self.index, self.res, self.full, self.req = file, index, res, full, req or {}

    @property
    def where(self) -> str:
        rid = self.res.get("id") if isinstance(self.res, dict) else None
        rtype = self.res.get("resourceType") if isinstance(self.res, dict) else None
        # a resource without an id (a transaction's POST) is named by its type only
        return f"{self.file}, entry {self.index}" + (f" ({rtype}/{rid})" if rtype and rid else
                                                     f" ({rtype})" if rtype else "")

    def error(self, msg: str) -> InputError:
        return InputError(f"{self.where}: {msg}")


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".json", ".ndjson") and p.is_file())
        if not files:
            raise InputError(f"{path}: no .json or .ndjson files in the folder")
        return files
    if not path.is_file():
        raise InputError(f"{path}: no such file or folder")
    return [path]


def _delete(name: str, i: int, entry: dict) -> _Entry | None:
    """A Bundle entry ``request.method`` DELETE of ``Type/id`` (its url without a version or search) as an
    entry whose resource names only the type and id (``cartlab.io.fhir._versions``); None otherwise."""
    req = entry.get("request") or {}
    if str(req.get("method", "")).upper() != "DELETE":
        return None
    url = _unversioned(str(req.get("url") or "")).split("?", 1)[0].rstrip("/")
    parts = url.split("/")
    if len(parts) < 2 or not parts[-1] or "?" in str(req.get("url")):
        return None
    last = (entry.get("response") or {}).get("lastModified")
    return _Entry(name, i, {"resourceType": parts[-2], "id": parts[-1]}, entry.get("fullUrl"),
                  {"url": req.get("url"), "lastModified": last})


def _load(path: Path, deletes: list | None = None, history: set | None = None) -> tuple[list[_Entry], tuple]:
    """The entries of one file (validated) and (name, format, sha256, n). A DELETE entry is appended to
    ``deletes``; the file's name is added to ``history`` when it is a history Bundle (newest first)."""
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    name = path.name
    without_resource: dict[int, dict] = {}
    try:
        text = data.decode("utf-8")
        if path.suffix.lower() == ".ndjson":
            raws = [(i, json.loads(line), None) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
            fmt = "fhir-ndjson"
        else:
            obj = json.loads(text)
            fmt = "fhir-json"
            if isinstance(obj, dict) and obj.get("resourceType") == "Bundle":
                entries = obj.get("entry") or []
                if not isinstance(entries, list):
                    raise InputError(f"{name}: Bundle.entry is not a list")
                raws = [
                    (i, e.get("resource") if isinstance(e, dict) else e, e.get("fullUrl") if isinstance(e, dict) else None)
                    for i, e in enumerate(entries, 1)
                ]
                # FHIR R4 bdl-5: "must be a resource unless there's a request or response" (a transaction's
                # or a history's DELETE): nothing to read; named in the result (not an error)
                without_resource = {i: (e.get("request") or e.get("response") or {})
                                    for i, e in enumerate(entries, 1)
                                    if isinstance(e, dict) and e.get("resource") is None
                                    and (e.get("request") or e.get("response"))}
                for i in without_resource:
                    d = _delete(name, i, entries[i - 1])
                    if d is not None and deletes is not None:
                        deletes.append(d)
                if obj.get("type") == "history" and history is not None:
                    history.add(name)
            else:
                raws = [(1, obj, None)]
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{name}: not FHIR JSON ({exc})") from exc
    out = []
    for i, res, full in raws:
        e = _Entry(name, i, res, full)
        if res is None and i in without_resource:  # bdl-5: a request/response entry (DELETE) has none
            continue
        if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
            raise e.error("not a FHIR resource (no resourceType)")
        try:
            cls = get_fhir_model_class(res["resourceType"])
        except Exception as exc:
            raise e.error(f"unknown FHIR R4 resourceType {res['resourceType']!r}") from exc
        try:
            cls.model_validate(res)
        except Exception as exc:  # pydantic ValidationError and friends: first line is enough
            lines = str(exc).splitlines()
            detail = "; ".join(x.strip() for x in lines[1:3]) or lines[0]
            from cartlab.io.fhir._notices import r5_hint

            raise e.error(f"invalid {res['resourceType']}: {detail}{r5_hint(res, str(exc))}") from exc
        out.append(e)
    return out, (name, fmt, sha, len(out))


def _effective(res: dict, prefix: str) -> tuple[str | None, str | None]:
    if res.get(f"{prefix}DateTime"):
        return res[f"{prefix}DateTime"], None
    if res.get(f"{prefix}Instant"):
        return res[f"{prefix}Instant"], None
    per = res.get(f"{prefix}Period") or {}
    return per.get("start"), per.get("end")
