"""The ADaM export specification (``adam_spec.yaml``): variable metadata as data, checked on load.

Names, labels, types, order, SAS formats, origins and derivation texts of every exported variable
come from the YAML, so a user can pass an edited copy. Loading refuses (one
:class:`~cartlab.errors.InputError` naming the file, dataset and variable) anything SAS transport
v5 cannot hold: a name that is not 1-8 upper-case letters/digits/underscores starting with a letter,
a label over 40 characters or not ASCII (refused, never truncated), an unknown type or origin, a
format that is not DATE9./DATETIME20. (limits: xportr issue #189 quoting the SAS documentation).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from cartlab._yaml import load_yaml
from cartlab.errors import InputError

__all__ = ["MAX_LABEL", "MAX_NAME", "MAX_TEXT", "AdamDataset", "AdamSpec", "AdamVariable", "load_spec"]

MAX_NAME = 8  #: XPT v5 dataset and variable names
MAX_LABEL = 40  #: XPT v5 variable labels (dataset labels too)
MAX_TEXT = 200  #: XPT v5 character values (bytes; values are ASCII, so characters)

TYPES = {"text": "Char", "integer": "Num", "float": "Num"}
ORIGINS = ("Derived", "Assigned", "Collected", "Predecessor", "Protocol")
FORMATS = ("DATE9.", "DATETIME20.")
_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,7}$")


@dataclass(frozen=True)
class AdamVariable:
    name: str
    label: str
    type: str  # text | integer | float
    origin: str
    derivation: str
    cite: str
    status: str
    format: str | None = None

    @property
    def sas_type(self) -> str:
        return TYPES[self.type]


@dataclass(frozen=True)
class AdamDataset:
    name: str
    label: str
    klass: str
    structure: str
    keys: tuple[str, ...]
    variables: tuple[AdamVariable, ...]

    def names(self) -> list[str]:
        return [v.name for v in self.variables]

    def variable(self, name: str) -> AdamVariable:
        return next(v for v in self.variables if v.name == name)


@dataclass(frozen=True)
class AdamSpec:
    version: int
    path: str
    citations: dict
    datasets: dict[str, AdamDataset]


def _check_text(where: str, what: str, text: object, limit: int) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{where}: {what} is missing")
    if not text.isascii():  # before the strip: str.strip() also drops non-ASCII spaces (NEL, U+3000 ...)
        raise InputError(f"{where}: {what} {text!r} is not ASCII (SAS transport v5 has no encoding)")
    text = text.strip()  # XPT pads labels with blanks: outer blanks would not survive a round trip
    if len(text) > limit:
        raise InputError(f"{where}: {what} {text!r} has {len(text)} characters; SAS transport v5 allows {limit}")
    return text


def _check_name(where: str, name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(f"{where}: name {name!r} is not a SAS transport v5 name (1-{MAX_NAME} upper-case "
                         "letters, digits or _, starting with a letter)")
    return name


def _variable(where: str, raw: dict, common: dict, citations: dict) -> AdamVariable:
    if not isinstance(raw, dict):
        raise InputError(f"{where}: a variable must be a mapping, got {raw!r}")
    if "use" in raw:
        name = raw["use"]
        if not isinstance(name, str) or name not in common:
            raise InputError(f"{where}: use: {name!r} is not in the common block")
        raw = {"name": name, **common[name], **{k: v for k, v in raw.items() if k != "use"}}
    name = _check_name(where, raw.get("name"))
    where = f"{where} {name}"
    label = _check_text(where, "label", raw.get("label"), MAX_LABEL)
    vtype = raw.get("type")
    if not isinstance(vtype, str) or vtype not in TYPES:
        raise InputError(f"{where}: type {vtype!r} is not one of {', '.join(TYPES)}")
    origin = raw.get("origin")
    if not isinstance(origin, str) or origin not in ORIGINS:
        raise InputError(f"{where}: origin {origin!r} is not one of {', '.join(ORIGINS)}")
    fmt = raw.get("format")
    if fmt is not None and (not isinstance(fmt, str) or fmt not in FORMATS or vtype == "text"):
        raise InputError(f"{where}: format {fmt!r} must be one of {', '.join(FORMATS)} on a numeric variable")
    cite = raw.get("cite")
    if not isinstance(cite, str) or cite not in citations:
        raise InputError(f"{where}: cite {cite!r} is not a key of citations")
    status = raw.get("status")
    if not isinstance(status, str) or status not in ("verified", "unverified"):
        raise InputError(f"{where}: status {status!r} must be verified or unverified")
    derivation = raw.get("derivation")
    if not isinstance(derivation, str) or not derivation.strip():
        raise InputError(f"{where}: derivation is missing")
    return AdamVariable(name, label, vtype, origin, derivation, cite, status, fmt)


def load_spec(path: str | Path | None = None) -> AdamSpec:
    """The shipped spec (``path=None``) or a user's copy, checked against the XPT v5 limits."""
    if path is None:
        text = resources.files("cartlab.io.adam").joinpath("adam_spec.yaml").read_text(encoding="utf-8")
        where = "adam_spec.yaml"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read the ADaM spec: {exc}") from None
        where = str(path)
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{where}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("datasets"), dict):
        raise InputError(f"{where}: an ADaM spec needs a 'datasets' mapping")
    citations = raw.get("citations") or {}
    common = raw.get("common") or {}
    if not isinstance(citations, dict) or not isinstance(common, dict) or not all(
            isinstance(v, dict) for v in common.values()):
        raise InputError(f"{where}: 'citations' and 'common' must be mappings (common: name -> mapping)")
    version = raw.get("version", 1)
    if not isinstance(version, int):
        raise InputError(f"{where}: version {version!r} is not an integer")
    datasets = {}
    for ds_name, ds in raw["datasets"].items():
        w = f"{where}: dataset {ds_name}"
        _check_name(w, ds_name)
        if not isinstance(ds, dict) or not isinstance(ds.get("variables"), list) or not ds["variables"]:
            raise InputError(f"{w}: needs a non-empty 'variables' list")
        label = _check_text(w, "label", ds.get("label"), MAX_LABEL)
        variables = tuple(_variable(f"{w} variable", v, common, citations) for v in ds["variables"])
        names = [v.name for v in variables]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise InputError(f"{w}: variables listed twice: {', '.join(dup)}")
        keys = ds.get("keys") or []
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise InputError(f"{w}: keys must be a list of variable names, got {keys!r}")
        keys = tuple(keys)
        missing = [k for k in keys if k not in names]
        if missing:
            raise InputError(f"{w}: keys not among its variables: {', '.join(missing)}")
        datasets[ds_name] = AdamDataset(ds_name, label, str(ds.get("class", "")), str(ds.get("structure", "")),
                                        keys, variables)
    return AdamSpec(version, where, citations, datasets)
