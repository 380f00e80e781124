"""Shared helpers of the FHIR reader and writer: the cartlab row extension and FHIR times."""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timedelta, timezone

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
    """A FHIR date/dateTime/instant as an aware UTC datetime; None for a partial date (YYYY, YYYY-MM).

    A dateTime without a time zone (allowed only without a time of day) is midnight UTC; naive
    ``cartlab`` datetimes are written as UTC (the study-folder reader reads them the same way).
    Raises ValueError for text that is not a FHIR date.
    """
    s = str(text).strip()
    if re.fullmatch(r"\d{4}(-\d{2})?", s):
        return None
    if not _FULL.match(s):
        raise ValueError(f"not a FHIR dateTime: {s!r}")
    dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def canonical_to_aware(text: str) -> datetime:
    """A canonical (study folder) datetime or date text as an aware UTC datetime."""
    s = str(text).strip().replace(" ", "T").replace("Z", "+00:00")
    dt = datetime.fromisoformat(s) if "T" in s else datetime.combine(date.fromisoformat(s), datetime.min.time())
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def fhir_time(dt: datetime) -> str:
    """An aware datetime as FHIR dateTime text (UTC, microseconds only when needed)."""
    dt = dt.astimezone(timezone.utc)
    spec = "microseconds" if dt.microsecond else "seconds"
    return dt.isoformat(timespec=spec).replace("+00:00", "Z")


def add_days(anchor: datetime, day: float) -> datetime:
    return anchor + timedelta(microseconds=round(day * 86_400e6))


def days_between(anchor: datetime, dt: datetime) -> float:
    return (dt - anchor) / timedelta(microseconds=1) / 86_400e6
