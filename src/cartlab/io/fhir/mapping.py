"""The FHIR code map (``loinc_map.yaml``) as data: LOINC/cartlab codes <-> params, UCUM <-> units,
medication/procedure/condition text rules, reasonCode/usedCode text -> indication/o2_device (the SDTM
reader's ``indications`` and ``o2_devices`` tables, shared, plus FHIR spellings). A user file of the
same shape extends or overrides it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from cartlab._yaml import load_yaml
from cartlab.errors import InputError
from cartlab.io.dictionary import load_dictionary
from cartlab.io.schema import INDICATIONS, O2_DEVICES, vocab_key
from cartlab.units import UnitError, parse_unit

#: cartlab's own FHIR URIs (the ``.invalid`` top-level domain is reserved, RFC 2606: never resolvable)
BASE = "https://cartlab.invalid/fhir"
EXT_ROW = f"{BASE}/StructureDefinition/row"
EXT_ANCHOR = f"{BASE}/StructureDefinition/day0-anchor"
CS_PARAM = f"{BASE}/CodeSystem/param"
CS_CATEGORY = f"{BASE}/CodeSystem/category"
CS_EVENT = f"{BASE}/CodeSystem/event"
CS_FLAG = f"{BASE}/CodeSystem/flag"
UCUM = "http://unitsofmeasure.org"
#: a UCUM annotation with no unit symbol before it (at the start, or after "." "/" "("): the unity 1
_ANNOTATION_ALONE = re.compile(r"(^|[./(])\{[^{}]*\}")
#: any other UCUM annotation: it follows a symbol and is discarded
_ANNOTATION = re.compile(r"\{[^{}]*\}")
#: the documented day-0 anchor of a study without calendar dates (days only)
DAYS_ONLY_ANCHOR = "2000-01-01T00:00:00+00:00"


@dataclass
class FhirMapping:
    """Code tables for read_fhir / write_fhir_bundle."""

    loinc: str
    code_to_param: dict[tuple[str, str], str] = field(default_factory=dict)
    param_code: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # system, code, display
    param_ucum: dict[str, str] = field(default_factory=dict)
    ucum: dict[str, str] = field(default_factory=dict)
    specimens: dict[str, str] = field(default_factory=dict)
    medications: list[dict] = field(default_factory=list)
    procedures: list[dict] = field(default_factory=list)
    conditions: list[dict] = field(default_factory=list)
    indications: dict[str, str] = field(default_factory=dict)  # vocab_key(text) -> indication
    o2_devices: dict[str, str] = field(default_factory=dict)  # vocab_key(text) -> o2_device

    def param_of(self, codings: list[dict]) -> str | None:
        for c in codings:
            key = (str(c.get("system") or ""), str(c.get("code") or ""))
            if key in self.code_to_param:
                return self.code_to_param[key]
        return None

    def unit_from_ucum(self, code: str) -> str:
        """A UCUM code as a cartlab unit spelling; UnitError if pint cannot read it."""
        if code in self.ucum:
            return self.ucum[code]
        # "10*6{cells}/kg": a power of ten times a listed annotated code (otherwise unreadable below)
        power = re.fullmatch(r"10\*(-?\d+)\.?([\[{].*)", code)
        if power and power.group(2) in self.ucum:
            return f"10^{power.group(1)} {self.ucum[power.group(2)]}"
        if "{" in code:
            # UCUM §6 "curly braces": "Annotations do not contribute to the semantics of the unit ...
            # any fully conformant parser must discard all annotations"; "An annotation without a
            # leading symbol implies the default unit 1 (the unity)". 10*9{cells}/L is 10*9/L and
            # {cells}/L is 1/L. An annotation alone is read only when the ucum table lists it ({score}:
            # unitless, {cells}: cells): the unity alone does not say whether it is a score, a fraction
            # or a count, which cartlab's units tell apart
            if re.fullmatch(r"(\{[^{}]*\})+", code):
                raise UnitError(f"unknown UCUM unit {code!r}")
            bare = _ANNOTATION_ALONE.sub(r"\g<1>1", code)
            bare = _ANNOTATION.sub("", bare)
            if "{" in bare or "}" in bare:
                raise UnitError(f"unknown UCUM unit {code!r} (unbalanced or nested curly braces)")
            try:
                return self.unit_from_ucum(bare)
            except UnitError:
                raise UnitError(f"unknown UCUM unit {code!r} (read without its annotations as {bare!r})") from None
        if "[iU]" in code or "[IU]" in code:  # UCUM: [iU] international unit, [IU] the same unit
            return self.unit_from_ucum(code.replace("[iU]", "IU").replace("[IU]", "IU"))
        if "[USP'U]" in code:  # UCUM [USP'U] "United States Pharmacopeia unit" (vasopressin): cartlab's "U"
            return self.unit_from_ucum(code.replace("[USP'U]", "U"))  # as the ucum table's [USP'U] -> units
        if "[" in code or "}" in code:
            raise UnitError(f"unknown UCUM unit {code!r}")
        unit = re.sub(r"10\*(-?\d+)", r"10^\1", code)
        if "." in unit and not re.search(r"\d\.\d", unit):
            # UCUM §2.2: "." multiplies and a trailing "-1" is a reciprocal: "mmol.L-1" is mmol/L,
            # "ug.kg-1.min-1" ug/kg/min (session 33: such valid codes were refused as unknown)
            parts = unit.split(".")
            num = [x for x in parts if not re.fullmatch(r".+-1", x)]
            den = [x[:-2] for x in parts if re.fullmatch(r".+-1", x)]
            unit = ("*".join(num) or "1") + "".join(f"/{d}" for d in den)
        parse_unit(unit)
        return unit

    def vocabulary(self, kind: str, texts) -> str | None:
        """The first of ``texts`` that the ``indications`` / ``o2_devices`` table knows, as the canonical
        word (matched ignoring case, spaces, hyphens and underscores); None when none is known."""
        table = getattr(self, kind)
        return next((table[vocab_key(t)] for t in texts if t and vocab_key(t) in table), None)

    def rule(self, kind: str, text: str) -> dict | None:
        for r in getattr(self, kind):
            if re.search(r["match"], text or "", re.IGNORECASE):
                return r
        return None


def _vocabulary(kind: str, allowed: tuple[str, ...], *tables: dict) -> dict[str, str]:
    """{vocab_key(text): canonical word}: the canonical words themselves, then ``tables`` in order (later
    ones win). A target outside the vocabulary is an error; it is written in the vocabulary's spelling."""
    canon = {vocab_key(v): v for v in allowed}
    out = dict(canon)
    for table in tables:
        for text, target in (table or {}).items():
            if vocab_key(target) not in canon:
                raise InputError(f"FHIR mapping: {kind} {text!r}: {target!r} is not a valid "
                                 f"{kind[:-1]}; allowed: {', '.join(allowed)}")
            out[vocab_key(text)] = canon[vocab_key(target)]
    return out


def _load_yaml(path) -> dict:
    try:
        data = load_yaml(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read the FHIR mapping file ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: a FHIR mapping file is a YAML mapping (see loinc_map.yaml)")
    return data


def load_mapping(extra: str | Path | dict | None = None) -> FhirMapping:
    """The shipped map, updated by ``extra`` (a YAML file or dict of the same shape)."""
    text = resources.files("cartlab.io.fhir").joinpath("loinc_map.yaml").read_text(encoding="utf-8")
    raw = load_yaml(text)
    user: dict = {}
    if extra is not None:
        user = extra if isinstance(extra, dict) else _load_yaml(extra)
        for key in ("observations", "cartlab_params", "ucum", "specimens"):
            raw.setdefault(key, {}).update(user.get(key) or {})
        for key in ("medications", "procedures", "conditions"):
            raw[key] = list(user.get(key) or []) + list(raw.get(key) or [])
    known = load_dictionary()
    m = FhirMapping(loinc=raw["loinc"])
    for param in known.codes():  # the cartlab code of every param is always read
        m.code_to_param[(CS_PARAM, param)] = param
    for param, row in (raw.get("observations") or {}).items():
        if param not in known:
            raise InputError(f"FHIR mapping: {param!r} is not a param of the parameter dictionary")
        system = row.get("system", m.loinc)
        if row.get("write") == "cartlab":  # LOINC property differs from the canonical unit: read only
            m.param_code[param] = (CS_PARAM, param, known[param].label)
        else:
            m.param_code[param] = (system, str(row["code"]), row.get("display", param))
        m.param_ucum[param] = str(row.get("ucum", ""))
        for code in [row["code"], *row.get("also", [])]:
            m.code_to_param[(system, str(code))] = param
    for param, ucum in (raw.get("cartlab_params") or {}).items():
        if param not in known:
            raise InputError(f"FHIR mapping: {param!r} is not a param of the parameter dictionary")
        m.param_code.setdefault(param, (CS_PARAM, param, known[param].label))
        m.param_ucum.setdefault(param, str(ucum))
    m.ucum = {str(k): str(v) for k, v in (raw.get("ucum") or {}).items()}
    m.specimens = {str(k).lower(): str(v) for k, v in (raw.get("specimens") or {}).items()}
    m.medications = list(raw.get("medications") or [])
    m.procedures = list(raw.get("procedures") or [])
    m.conditions = list(raw.get("conditions") or [])
    # reasonCode -> indication, usedCode -> o2_device: the SDTM reader's shipped tables (one vocabulary for
    # both readers), then this map's FHIR spellings, then the user's
    from cartlab.io.sdtm.mapping import load_mapping as load_sdtm_mapping

    sdtm = load_sdtm_mapping()
    shared = (("indications", INDICATIONS, sdtm.indications), ("o2_devices", O2_DEVICES, sdtm.o2_devices))
    for kind, allowed, table_sdtm in shared:
        for table in (raw.get(kind), user.get(kind)):
            if table is not None and not isinstance(table, dict):
                raise InputError(f"FHIR mapping: {kind} must be a mapping of text -> {kind[:-1]}")
        setattr(m, kind, _vocabulary(kind, allowed, table_sdtm, raw.get(kind), user.get(kind)))
    return m
