"""The SDTM mapping tables (``sdtm_map.yaml``) and a user's mapping file merged over them.

The tables say which test code is which cartlab param, which CM term is which intervention
category, which term is which event and how SDTM unit spellings read; see docs/interop/sdtm.md.
A user file has the same keys: dictionaries are merged key by key (the user's entries win), lists
(``cm_terms``, ``events``) are put before the shipped ones (the first match wins).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import polars as pl
import yaml

from cartlab._yaml import load_yaml
from cartlab.errors import InputError

_LIST_KEYS = ("cm_terms", "events")
_KNOWN_KEYS = {
    "version", "tests", "units", "specimens", "sex", "age_units", "ex_agents", "cm_categories",
    "cm_terms", "o2_devices", "indications", "events", "attributions", "unmapped_domains", "supp",
    "dose_frequencies", "indication_prefixes", "unknown_indication", "salient_words",
}
#: keys whose value is one word, not a table
_SCALAR_KEYS = ("version", "unknown_indication")
#: the values of ``unknown_indication`` (the first is the default; cartlab.io.sdtm.terms)
UNKNOWN_INDICATION = ("count", "other")


def norm(text: str | None) -> str:
    """Upper case with white space folded: how codes and terms are matched."""
    return " ".join(str(text or "").upper().split())


@dataclass(frozen=True)
class SdtmMapping:
    """The merged mapping tables (all keys upper-cased/normalised for matching)."""

    tests: dict[str, dict[str, dict]]
    units: dict[str, str]
    specimens: dict[str, str]  # SDTM spelling -> canonical
    specimen_out: dict[str, str]  # canonical -> the spelling write_sdtm writes
    sex: dict[str, str]
    age_units: dict[str, float]
    ex_agents: dict[str, str]
    cm_categories: dict[str, str]
    cm_terms: list[dict]
    o2_devices: dict[str, str]
    indications: dict[str, str]
    events: list[dict]
    attributions: dict[str, str]
    unmapped_domains: dict[str, str]
    supp: dict[str, str]
    files: tuple[str, ...] = field(default=())
    #: EXDOSFRQ term -> {per_day, every_days} (review40 A4: a constant-dosing EX record is expanded)
    dose_frequencies: dict[str, dict] = field(default_factory=dict)
    #: CMINDC prefix -> indication (CYTOKINE RELEASE SYNDROME GRADE 3 -> CRS; review46 #2)
    indication_prefixes: dict[str, str] = field(default_factory=dict)
    #: a CMINDC in neither indications table: "count" (indication left empty) or "other" (review46 #2)
    unknown_indication: str = "count"
    #: word of an unmapped term or its SOC -> the event it may be: named first in the "not read" warning
    salient_words: dict[str, str] = field(default_factory=dict)

    def test(self, domain: str, code: str) -> dict | None:
        return self.tests.get(domain, {}).get(norm(code))

    def unit(self, unit: str | None) -> str | None:
        """A unit as written -> the spelling cartlab.units reads (the ``units`` table, matched like
        every code: upper case, white space folded; a unit not in the table is kept as written)."""
        if unit is None:
            return None
        return self.units.get(norm(unit), unit)

    def unit_expr(self, unit: pl.Expr) -> pl.Expr:
        """:meth:`unit` for a text column (--STRESU, --ORRESU, EXDOSU, CMDOSU all go through it)."""
        key = unit.str.to_uppercase().str.replace_all(r"\s+", " ").str.strip_chars()
        return key.replace_strict(self.units, default=unit, return_dtype=pl.String)


def _read_yaml(path: Path) -> dict:
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read the mapping file ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InputError(f"{path}: a mapping file is a YAML mapping of tables (tests, units, cm_terms, ...)")
    unknown = set(raw) - _KNOWN_KEYS
    if unknown:
        raise InputError(
            f"{path}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_KNOWN_KEYS))}"
        )
    for key in _LIST_KEYS:
        if key in raw and not isinstance(raw[key], list):
            raise InputError(f"{path}: {key} must be a list")
    for key in set(raw) - set(_LIST_KEYS) - set(_SCALAR_KEYS):
        if raw[key] is not None and not isinstance(raw[key], dict):
            raise InputError(f"{path}: {key} must be a mapping")
    return raw


def _merge(base: dict, user: dict) -> dict:
    out = dict(base)
    for key, val in user.items():
        if val is None:
            continue
        if key in _LIST_KEYS:
            out[key] = list(val) + list(base.get(key) or [])
        elif key == "tests":
            tests = {d: dict(t) for d, t in (base.get("tests") or {}).items()}
            for dom, table in val.items():
                tests.setdefault(str(dom).upper(), {}).update(table or {})
            out[key] = tests
        elif isinstance(val, dict):
            out[key] = {**(base.get(key) or {}), **val}
        else:
            out[key] = val
    return out


def load_mapping(user: str | Path | None = None) -> SdtmMapping:
    """The shipped tables, with ``user`` (a YAML file of the same keys) merged over them."""
    text = resources.files("cartlab.io.sdtm").joinpath("sdtm_map.yaml").read_text(encoding="utf-8")
    raw = load_yaml(text)
    files = ["sdtm_map.yaml"]
    if user is not None:
        raw = _merge(raw, _read_yaml(Path(user)))
        files.append(str(user))
    tests: dict[str, dict[str, dict]] = {}
    for dom, table in (raw.get("tests") or {}).items():
        for code, entry in (table or {}).items():
            if not isinstance(entry, dict):
                entry = {"param": entry}
            tests.setdefault(norm(dom), {})[norm(code)] = entry
    specimens: dict[str, str] = {}
    specimen_out: dict[str, str] = {}
    for canon, spellings in (raw.get("specimens") or {}).items():
        spellings = [spellings] if isinstance(spellings, str) else list(spellings)
        specimen_out[canon] = spellings[0]
        for s in spellings:
            specimens[norm(s)] = canon
    for entry in raw.get("cm_terms") or []:
        if not isinstance(entry, dict) or "term" not in entry or "category" not in entry:
            raise InputError(f"cm_terms entry {entry!r}: needs term and category")
    for entry in raw.get("events") or []:
        if not isinstance(entry, dict) or not {"term", "event", "field"} <= set(entry):
            raise InputError(f"events entry {entry!r}: needs term, field and event")

    unknown_indication = str(raw.get("unknown_indication") or UNKNOWN_INDICATION[0]).strip().lower()
    if unknown_indication not in UNKNOWN_INDICATION:
        raise InputError(f"{files[-1]}: unknown_indication must be one of {', '.join(UNKNOWN_INDICATION)}, "
                         f"not {raw.get('unknown_indication')!r}")

    def upper_keys(d: dict | None) -> dict:
        return {norm(k): v for k, v in (d or {}).items()}

    return SdtmMapping(
        tests=tests,
        units={norm(k): str(v) for k, v in (raw.get("units") or {}).items()},
        specimens=specimens,
        specimen_out=specimen_out,
        sex=upper_keys(raw.get("sex")),
        age_units={norm(k): float(v) for k, v in (raw.get("age_units") or {}).items()},
        ex_agents=upper_keys(raw.get("ex_agents")),
        cm_categories=upper_keys(raw.get("cm_categories")),
        cm_terms=[{**e, "term": norm(e["term"]), "exclude_routes": [norm(r) for r in e.get("exclude_routes", [])]}
                  for e in raw.get("cm_terms") or []],
        o2_devices=upper_keys(raw.get("o2_devices")),
        indications=upper_keys(raw.get("indications")),
        events=[{**e, "term": norm(e["term"]), "field": norm(e["field"]),
                 "domains": [norm(d) for d in e.get("domains", [])]} for e in raw.get("events") or []],
        attributions=upper_keys(raw.get("attributions")),
        unmapped_domains=upper_keys(raw.get("unmapped_domains")),
        supp=upper_keys(raw.get("supp")),
        files=tuple(files),
        dose_frequencies=upper_keys(raw.get("dose_frequencies")),
        indication_prefixes=upper_keys(raw.get("indication_prefixes")),
        unknown_indication=unknown_indication,
        salient_words={norm(k): str(v) for k, v in (raw.get("salient_words") or {}).items()},
    )
