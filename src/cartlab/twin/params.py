"""Parameter tables of the CD7 CAR-T digital twin (``twin/params/*.yaml``; design §1.1, §2.1).

Rules are data: every parameter is one YAML row with value, unit, log-normal IIV SD, plausible
bounds, status (verified / unverified / assumed / computed / fitted) and citation.  ``theta``
vectors are on the natural scale in :attr:`ParamTable.names` order; IIV is log-normal,
``theta_i = value * exp(iiv_sd * z)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import polars as pl

from cartlab._yaml import load_yaml
from cartlab.errors import InputError

__all__ = ["STATUSES", "Param", "ParamTable", "load_params"]

STATUSES = ("verified", "unverified", "assumed", "computed", "fitted")
_FIELDS = ("name", "value", "unit", "iiv_sd", "lower", "upper", "status", "citation", "description")


@dataclass(frozen=True)
class Param:
    """One YAML row."""

    name: str
    value: float
    unit: str
    iiv_sd: float  # log-normal IIV SD (0 = fixed)
    lower: float  # plausible bounds (for fitting), natural scale
    upper: float
    status: str
    citation: str
    description: str


class ParamTable:
    """The ordered parameter rows; ``names`` is the column order of ``theta``.

    ``constants`` holds event-building constants (lymphodepletion reference doses) that are
    rows of the same file but not columns of ``theta``."""

    def __init__(self, name: str, version: str, params: list[Param], constants: list[Param]):
        self.name = name
        self.version = version
        self.params = tuple(params)
        self.constants = {c.name: c for c in constants}
        self.names = tuple(p.name for p in params)
        self._index = {n: i for i, n in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.params)

    def vector(self) -> np.ndarray:
        return np.array([p.value for p in self.params], dtype=np.float64)

    def index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise InputError(f"unknown twin parameter {name!r}; known: {', '.join(self.names)}") from None

    def iiv_sd(self) -> np.ndarray:
        return np.array([p.iiv_sd for p in self.params], dtype=np.float64)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return (np.array([p.lower for p in self.params]), np.array([p.upper for p in self.params]))

    def __getitem__(self, name: str) -> Param:
        return self.params[self.index(name)]

    def table(self) -> pl.DataFrame:
        """For docs: name, value, unit, iiv_sd, lower, upper, status, citation, description."""
        rows = [{f: getattr(p, f) for f in _FIELDS} for p in (*self.params, *self.constants.values())]
        return pl.DataFrame(rows, schema={"name": pl.String, "value": pl.Float64, "unit": pl.String,
                                          "iiv_sd": pl.Float64, "lower": pl.Float64, "upper": pl.Float64,
                                          "status": pl.String, "citation": pl.String, "description": pl.String})

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, P) log-normal IIV draws around the population values."""
        z = rng.standard_normal((n, len(self)))
        return self.vector()[None, :] * np.exp(self.iiv_sd()[None, :] * z)


def _row(d: dict, where: str) -> Param:
    missing = [f for f in _FIELDS if f not in d]
    if missing:
        raise InputError(f"{where}: row {d.get('name')!r} lacks {', '.join(missing)}")
    p = Param(name=str(d["name"]), value=float(d["value"]), unit=str(d["unit"]), iiv_sd=float(d["iiv_sd"]),
              lower=float(d["lower"]), upper=float(d["upper"]), status=str(d["status"]),
              citation=str(d["citation"]).strip(), description=str(d["description"]).strip())
    if p.status not in STATUSES:
        raise InputError(f"{where}: {p.name}: status {p.status!r} not in {STATUSES}")
    if not (p.lower <= p.value <= p.upper):
        raise InputError(f"{where}: {p.name}: value {p.value} outside [{p.lower}, {p.upper}]")
    if p.iiv_sd < 0:
        raise InputError(f"{where}: {p.name}: negative iiv_sd")
    return p


@cache
def load_params(name: str = "cd7_twin_v1") -> ParamTable:
    """The parameter table ``twin/params/<name>.yaml``."""
    path = resources.files("cartlab.twin").joinpath("params", f"{name}.yaml")
    if not path.is_file():
        raise InputError(f"no twin parameter table {name!r}")
    doc = load_yaml(path.read_text(encoding="utf-8"))
    where = f"twin/params/{name}.yaml"
    params = [_row(d, where) for d in doc["parameters"]]
    consts = [_row(d, where) for d in doc.get("constants", [])]
    seen = set()
    for p in (*params, *consts):
        if p.name in seen:
            raise InputError(f"{where}: duplicate parameter {p.name}")
        seen.add(p.name)
    return ParamTable(name, str(doc.get("version", "")), params, consts)
