"""The parameter dictionary (``params_v1.yaml``): codes, canonical units, conversions, ranges."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from cartlab._yaml import load_yaml
from cartlab.units import Conversion, UnitError, casefold_spelling, conversion


@dataclass(frozen=True)
class Param:
    code: str
    label: str
    group: str
    unit: str  # canonical unit; "" = unitless score
    accepts: tuple[str, ...] = ()
    empty_unit: str | None = None
    molar_mass_g_mol: float | None = None
    equivalents_per_mol: float | None = None
    plausible: tuple[float, float] | None = None
    #: (low, high) in the canonical unit, either None: outside is read with a warning (session 45)
    suspicious: tuple[float | None, float | None] | None = None
    suspicious_why: str = ""
    #: a blood count reported as whole cells per uL (a fraction there is warned about, session 45)
    whole_per_ul: bool = False
    text_values: tuple[str, ...] = ()
    integer: bool = False
    origin: str = "spec"
    #: other names users write for it (ANC for NEUT): read by `cartlab ctcae`
    aliases: tuple[str, ...] = ()

    @property
    def unitless(self) -> bool:
        return self.unit == ""

    def conversion_from(self, unit: str | None) -> Conversion:
        """Affine map from ``unit`` (as written in a file) to the canonical unit.

        Raises :class:`~cartlab.units.UnitError` (unknown unit, wrong dimension, or a missing unit
        where the dictionary gives no meaning to an empty one).
        """
        unit = (unit or "").strip()
        if self.unitless:
            if unit in ("", "score", "points"):
                return Conversion(1.0)
            raise UnitError(f"{self.code} is a unitless score; unit {unit!r} is not allowed")
        spellings = tuple(dict.fromkeys((self.unit,) + self.accepts))
        if unit == "":
            if self.empty_unit is None:
                # a % parameter: 0.5 can be 50 % written as a fraction, or 0.5 % (spec: only MRDFCM's
                # empty unit has a meaning, fraction; see params_v1.yaml "empty_unit")
                pct = "; a percentage is written with unit %, a fraction (0.5 = 50 %) with unit fraction" \
                    if self.unit == "%" else ""
                raise UnitError(
                    f"unit missing: {self.code} needs a unit (canonical {self.unit!r}; "
                    f"accepted {', '.join(spellings)}){pct}"
                )
            unit = self.empty_unit
        try:
            return conversion(unit, self.unit, self.molar_mass_g_mol, self.equivalents_per_mol)
        except UnitError as exc:
            # an all-caps lab spelling (MG/DL, MMOL/L, /UL, MMHG): accepted when it is one of this
            # parameter's own spellings apart from letter case, never case-folded into pint
            same = casefold_spelling(unit, spellings)
            if same is not None and same != unit:
                return conversion(same, self.unit, self.molar_mass_g_mol, self.equivalents_per_mol)
            raise UnitError(f"{exc}; {self.code} accepts {', '.join(spellings)}") from None


@dataclass(frozen=True)
class Dictionary:
    version: int
    params: dict[str, Param] = field(default_factory=dict)

    def __contains__(self, code: str) -> bool:
        return code in self.params

    def __getitem__(self, code: str) -> Param:
        return self.params[code]

    def codes(self) -> list[str]:
        return list(self.params)


def _molar_mass(p: dict) -> float | None:
    """The molar mass the mg/dL <-> umol/L conversion uses: ``umol_l_per_mg_dl`` (the conventional
    clinical factor, e.g. 88.4 for creatinine) when given, so that 1 mg/dL is exactly that many
    umol/L (molar mass = 10,000 / factor), else ``molar_mass_g_mol``."""
    if p.get("umol_l_per_mg_dl") is not None:
        return 10_000.0 / float(p["umol_l_per_mg_dl"])
    return p.get("molar_mass_g_mol")


@lru_cache(maxsize=1)
def load_dictionary() -> Dictionary:
    """The shipped parameter dictionary (format v1)."""
    text = resources.files("cartlab.io").joinpath("params_v1.yaml").read_text(encoding="utf-8")
    raw = load_yaml(text)
    params = {}
    for code, p in raw["params"].items():
        params[code] = Param(
            code=code,
            label=p["label"],
            group=p["group"],
            unit=str(p["unit"]),
            accepts=tuple(str(u) for u in p.get("accepts", ())),
            empty_unit=p.get("empty_unit"),
            molar_mass_g_mol=_molar_mass(p),
            equivalents_per_mol=p.get("equivalents_per_mol"),
            plausible=tuple(float(x) for x in p["plausible"]) if "plausible" in p else None,
            suspicious=(tuple(None if x is None else float(x) for x in p["suspicious"])
                        if p.get("suspicious") else None),
            suspicious_why=str(p.get("suspicious_why", "")),
            whole_per_ul=bool(p.get("whole_per_ul", False)),
            text_values=tuple(p.get("text_values", ())),
            integer=bool(p.get("integer", False)),
            origin=p.get("origin", "spec"),
            aliases=tuple(str(a) for a in p.get("aliases", ())),
        )
    return Dictionary(version=int(raw["version"]), params=params)
