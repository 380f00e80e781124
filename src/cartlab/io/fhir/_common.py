"""Shared helpers of the FHIR reader and writer: the cartlab row extension and FHIR times."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta

from cartlab.io.clock import OFFSET, parse_wall_clock
from cartlab.io.fhir.mapping import EXT_ROW

_FULL = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:\d{2})?$")


def row_extension(values: dict) -> dict:
    """A complex extension carrying canonical columns FHIR has no field for (null values left out)."""
    subs = []
    for key, v in values.items():
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        if isinstance(v, bool):
            subs.append({"url": key, "valueBoolean": v})
        elif isinstance(v, (int, float)):
            subs.append({"url": key, "valueDecimal": float(v)})
        else:
            subs.append({"url": key, "valueString": str(v)})
    return {"url": EXT_ROW, "extension": subs}


def read_row_extension(resource: dict) -> dict | None:
    """The cartlab row extension of ``resource`` as {column: value}, or None when absent."""
    for ext in resource.get("extension") or []:
        if ext.get("url") == EXT_ROW:
            out = {}
            for sub in ext.get("extension") or []:
                for k in ("valueString", "valueDecimal", "valueBoolean", "valueInteger"):
                    if k in sub:
                        v = sub[k]
                        out[sub["url"]] = float(v) if k in ("valueDecimal", "valueInteger") else v
            return out
    return None


def parse_fhir_time(text: str) -> datetime | None:
    """A FHIR date/dateTime/instant as its date and clock time as written (naive; the UTC offset is
    not applied: ``cartlab.io.clock``); a date alone is its midnight; None for a partial date
    (YYYY, YYYY-MM). Raises ValueError for text that is not a FHIR date."""
    s = str(text).strip()
    if re.fullmatch(r"\d{4}(-\d{2})?", s):
        return None
    if not _FULL.match(s):
        raise ValueError(f"not a FHIR dateTime: {s!r}")
    return parse_wall_clock(s)


def utc_offset(text: str) -> str | None:
    """The UTC offset written on a FHIR dateTime/instant with a time of day (``Z``, ``-05:00``; ``+00:00``
    is ``Z``), None for a date alone."""
    m = re.search(OFFSET, str(text).strip())
    if m is None:
        return None
    off = m.group(2)
    return "Z" if off in ("+00:00", "-00:00") else off


def fhir_text(text: str) -> str:
    """A canonical (study folder) date or date-time text as FHIR dateTime text: the same date and
    clock time, the offset kept (``Z`` when none is given: FHIR needs one with a time of day)."""
    s = str(text).strip().replace(" ", "T")
    dt = parse_wall_clock(s)
    if "T" not in s:
        return dt.date().isoformat()
    m = re.search(OFFSET, s)
    off = m.group(2) if m else "Z"
    if off != "Z":
        digits = off[1:].replace(":", "").ljust(4, "0")
        off = f"{off[0]}{digits[:2]}:{digits[2:]}"
    return _clock(dt) + off


def fhir_time(dt: datetime, offset: str = "Z") -> str:
    """A naive wall-clock datetime as FHIR dateTime text (written with ``offset``, ``Z`` unless given:
    the clock's UTC offset, ``+08:00``; microseconds only when needed)."""
    return _clock(dt) + offset


def _clock(dt: datetime) -> str:
    return dt.replace(tzinfo=None).isoformat(timespec="microseconds" if dt.microsecond else "seconds")


def add_days(origin: datetime, day: float) -> datetime:
    return origin + timedelta(microseconds=round(day * 86_400e6))


def period_start(text: str):
    """The first day of a partial FHIR date's period ("2024-03" -> 2024-03-01, "2024" -> 2024-01-01)."""
    from datetime import date

    y, _, mo = str(text).strip().partition("-")
    return date(int(y), int(mo or 1), 1)


def time_element(r: dict) -> str:
    """The element holding a MedicationAdministration's time (effectiveDateTime or effectivePeriod.start)."""
    return "effectivePeriod.start" if r.get("effectivePeriod") else "effectiveDateTime"
