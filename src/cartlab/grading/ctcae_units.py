"""CTCAE helpers without the engine: R's ``signif``, the shipped tables' metadata (standard,
version, unit system) and admiral metadata names.

``signif`` / ``signif_scalar`` (R's ``signif()``) live in :mod:`cartlab.criteria.signif`; they are
re-exported here and from :mod:`cartlab.grading.ctcae`.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from cartlab.criteria.signif import signif, signif_scalar

__all__ = ["UNITS", "available_criteria", "criteria_names", "metadata_units", "signif", "signif_scalar"]

#: the unit systems of the criteria tables ("auto": per row, the table whose unit fits)
UNITS = ("SI", "US", "auto")


# ---------------------------------------------------------------------------------------------
# the shipped tables


_HEADER = re.compile(r'^(standard|version|units):[ \t]*["\']?([^"\'#\n]*?)["\']?[ \t]*(?:#.*)?$', re.MULTILINE)


@cache
def _table_headers() -> tuple[tuple[str, str, str, str], ...]:
    """(name, standard, version, units) of every criteria table with top-level ``standard`` and
    ``terms`` keys (read from the top-level lines only; the tables are parsed when used)."""
    out = []
    folder = resources.files("cartlab.grading").joinpath("criteria")
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".yaml"):
            continue
        text = entry.read_text(encoding="utf-8")
        head = {k: v.strip() for k, v in _HEADER.findall(text)}
        if head.get("standard") and head.get("version") and re.search(r"^terms:", text, re.MULTILINE):
            out.append((entry.name[:-5], head["standard"], head["version"], head.get("units") or "SI"))
    return tuple(out)


def available_criteria(standard: str = "CTCAE") -> list[dict[str, str]]:
    """The shipped criteria tables of ``standard``: name, version and units of each."""
    return [
        {"name": n, "version": v, "units": u} for n, s, v, u in _table_headers() if s.upper() == standard.upper()
    ]


def criteria_names(version: str = "5.0", units: str = "auto") -> list[str]:
    """Names of the tables for ``version``, in precedence order (SI before US for ``auto``)."""
    if units not in UNITS:
        raise ValueError(f"units must be one of {UNITS}, not {units!r}")
    tables = [t for t in available_criteria() if t["version"] == str(version)]
    if not tables:
        versions = sorted({t["version"] for t in available_criteria()})
        raise ValueError(f"no CTCAE criteria for version {version!r}; available: {', '.join(versions)}")
    order = {"SI": 0, "US": 1}
    tables.sort(key=lambda t: (order.get(t["units"], 2), t["name"]))
    if units != "auto":
        tables = [t for t in tables if t["units"] == units]
        if not tables:
            raise ValueError(f"no CTCAE {version} criteria in {units} units")
    return [t["name"] for t in tables]


def metadata_units(value: str | None, version: str) -> str | None:
    """SI/US from an admiral metadata name (atoxgr_criteria_ctcv5[_uscv]); checks the version."""
    if value is None or not value.strip():
        return None
    v = value.strip().lower()
    m = re.search(r"ctcv(\d+)", v)
    if m is None:
        if v in ("si", "us"):
            return v.upper()
        raise ValueError(f"metadata {value!r} does not name CTCAE criteria (e.g. atoxgr_criteria_ctcv5_uscv)")
    if m.group(1) != str(version).split(".")[0]:
        raise ValueError(f"metadata {value!r} is for another CTCAE version than {version}")
    return "US" if "uscv" in v else "SI"
