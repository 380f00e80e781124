"""Explicit unit handling with pint.

Unit spellings seen in clinical data ("10^9/L", "cells/uL", "/mm3", "copies/ug gDNA", "mEq/L",
"µmol/L", "°F") are normalised to pint expressions, then converted to a parameter's canonical unit.
A spelling pint does not know, or one of the wrong dimension, raises :class:`UnitError`: cartlab
never guesses a unit.

Conversions are computed once per (param, unit) pair as an affine map ``canonical = scale*x + offset``
(the offset is non-zero only for temperatures), so whole columns convert with one vectorised
multiply-add.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

import pint

from cartlab.errors import InputError

__all__ = ["UnitError", "Conversion", "ureg", "normalise_spelling", "conversion", "parse_unit", "casefold_spelling"]


class UnitError(InputError):
    """An unknown unit, or a unit of the wrong dimension for the parameter."""


def _registry() -> pint.UnitRegistry:
    reg = pint.UnitRegistry(autoconvert_offset_to_baseunit=True, on_redefinition="raise")
    for line in (
        "copy = 1 = copies",
        "cell = 1 = cells",
        "beat = 1 = beats",
        "breath = 1 = breaths",
        "fraction = 1",
        "ratio = 1",
        # WHO international unit of enzyme activity as used on lab reports: 1 IU/L = 1 U/L
        "international_enzyme_unit = enzyme_unit = IU",
    ):
        reg.define(line)
    return reg


ureg = _registry()

# Exact spellings (after whitespace folding) mapped to pint expressions. Everything here is a
# documented synonym, not a guess; anything else goes to pint as written after the generic rewrites.
_SPELLINGS = {
    "%": "percent",
    "C": "degC",
    "°C": "degC",
    "degC": "degC",
    "F": "degF",
    "°F": "degF",
    "degF": "degF",
    # the degree sign as users type it: lower case, the masculine ordinal (º), the one-glyph signs
    "°c": "degC", "ºC": "degC", "℃": "degC", "Celsius": "degC", "deg C": "degC",
    "°f": "degF", "ºF": "degF", "℉": "degF", "Fahrenheit": "degF", "deg F": "degF",
    "GI/L": "1e9/L",  # CDISC controlled terminology: giga-units per litre
    "G/L": "1e9/L",   # giga per litre, as French and other European lab reports write cell counts
    "T/L": "1e12/L",  # tera per litre (red cells), the same convention
    "G/l": "1e9/L", "GI/l": "1e9/L", "T/l": "1e12/L",  # the same with a lower-case litre (pint: gauss)
    "K/uL": "1e3/uL",  # thousands per microlitre, as US lab reports write cell counts ("K/µL")
    "thou/uL": "1e3/uL",  # the same, as some US lab systems print it ("thou/µL")
    "mm Hg": "mmHg",  # AMA Manual of Style spelling of millimetres of mercury (with a space)
    # UCUM (the unit codes of lab and FHIR exports): Cel is degree Celsius, mm[Hg] millimetre of mercury
    "Cel": "degC",
    "mm[Hg]": "mmHg",
    # thousands per cubic millimetre, as "K/uL" above (1 mm3 = 1 uL)
    "K/mm3": "1e3/mm**3", "K/mm^3": "1e3/mm**3", "K/mm³": "1e3/mm**3",
    # French "unités internationales" per litre: IU/L
    "UI/L": "IU/L", "UI/l": "IU/L",
    # per minute written with a negative exponent (UCUM "min-1", heart and breathing rates)
    "min-1": "1/min", "min^-1": "1/min", "/min": "1/min",
    "bpm": "beats/min",
    # per 100 mL is per decilitre (review 39 C2: pint would drop the 100 and read "gram * milliliter")
    "g/100mL": "g/dL", "g/100 mL": "g/dL", "g/100ml": "g/dL", "mg/100mL": "mg/dL", "mg/100 mL": "mg/dL",
    "mg/100ml": "mg/dL",
    "sec": "s",
    "fraction": "fraction",
    "": "dimensionless",
}

# "copies/ug gDNA", "copies/ug DNA", "copies/µg genomic DNA": the qualifier after the mass names the
# matrix, not a unit (read as units, "DNA" would be debye x Avogadro's number)
_GDNA = re.compile(r"(?<=g)\s*(of\s+)?(g\s*DNA|gDNA|genomic\s+DNA|DNA)\s*$", re.IGNORECASE)
# a bare number left in a unit once the powers of ten are read ("109/L" where "10^9/L" lost its superscript)
_ANGLES = frozenset({"degree", "radian", "arcminute", "arcsecond", "turn", "gradian", "milliradian"})
_FACTOR = re.compile(r"(?<![\w.*])(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?(?![\w.])")


def normalise_spelling(unit: str) -> str:
    """Rewrite a clinical unit spelling into a pint expression (no conversion, no guessing)."""
    s = " ".join(unit.replace("µ", "u").replace("μ", "u").split())
    if s in _SPELLINGS:
        return _SPELLINGS[s]
    # "copies/ug gDNA" -> "copies/ug": the qualifier names the matrix, not a unit
    s = _GDNA.sub("", s)
    # "x10^9/L", "X10^9/L", "×10^9/L" -> "10^9/L"
    s = re.sub(r"^[xX×]\s*(?=10)", "", s)
    # enzyme activity: "units/L", "Units/L" -> "U/L" (pint reads "units" as micro-nit); "iu/L" -> "IU/L"
    s = re.sub(r"\b[Uu]nits?\b", "U", s)
    s = re.sub(r"\b[iI][uU]\b", "IU", s)
    # 10^9 / 10E9 / 10e9 / UCUM 10*9 (also 10**9) -> 1e9 (read literally, "10*9" would be 90)
    s = re.sub(r"\b10\s*\^\s*\+?(-?\d+)", r"1e\1", s)
    s = re.sub(r"\b10\s*\*{1,2}\s*\+?(-?\d+)", r"1e\1", s)
    s = re.sub(r"\b10[Ee]\+?(-?\d+)", r"1e\1", s)
    # leading "/" means per: "/uL" -> "1/uL"
    if s.startswith("/"):
        s = "1" + s
    # mm3 / m2 / dm3 style powers -> mm**3
    # (after a number too: "1.73m2" is 1.73 m**2, review 40 diff2 B4)
    # (not the "e" of 1e3: a power of ten, converted above)
    s = re.sub(r"(?:(?<=\d)(?![eE]\d)|(?<!\w))([A-Za-z]+)([23])\b", r"\1**\2", s)
    s = s.replace("^", "**")
    # a denominator that starts with a number is one quantity: "copies/100 ng" is per (100 ng), 10 copies/ug
    # (pint reads "a/100 b" as a/100 * b, a different dimension: review40 B2); also "/1.73 m**2", "/24 h"
    s = re.sub(r"/\s*((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z][A-Za-z_]*(?:\*\*\d+)?)", r"/(\1 \2)", s)
    return s


def casefold_spelling(unit: str, spellings: tuple[str, ...]) -> str | None:
    """The one spelling of ``spellings`` that ``unit`` equals apart from letter case (``MG/DL`` ->
    ``mg/dL``), else ``None`` (none, or several that differ). Lab systems print units in capitals;
    the unit as written is never case-folded into pint (``MG/L`` there is megagauss per litre): only
    a parameter's own accepted spellings are matched (session 34)."""
    key = " ".join(unit.split()).casefold()
    found = {s for s in spellings if " ".join(s.split()).casefold() == key}
    return found.pop() if len(found) == 1 else None


def parse_unit(unit: str) -> pint.Unit | pint.Quantity:
    """Parse a unit spelling; raise :class:`UnitError` if pint cannot.

    A number leading a unit must be a power of ten (``10^9/L``, ``10*9/L``, ``1e9/L``, ``1e+09/L``,
    ``1000/uL``, ``0.1 mg/dL``; ``mL/min/1.73 m2`` has none in front; a number after "/" starts
    the denominator: ``copies/100 ng`` is copies per 100 ng, ``mg/24 h`` mg per 24 h): a
    superscript lost in copying turns ``10⁹/L`` into ``109/L`` (or ``10 9/L``, ``10.9/L``), which pint
    would read as 109 per litre; such a unit is an error, not a guess."""
    expr = normalise_spelling(unit)
    bare = re.sub(r"\*\*\s*[-+]?\d+", "", expr)  # the exponents of units (mm**3) are no factors
    for m in _FACTOR.finditer(bare):
        if re.search(r"[^\d\s.eE+*-]", bare[:m.start()]):  # only the leading multiplier: "mL/min/1.73 m2"
            continue                                          # and "mg/24 h" are units of their own
        v = float(m.group(0))
        if not (v > 0 and abs(math.log10(v) - round(math.log10(v))) < 1e-12):  # 1, 1000, 1e9, 0.1
            raise UnitError(f"unit {unit!r} holds the factor {m.group(0)}: write a power of ten with a caret (10^9/L, 10^3/uL) "
                            "(a lost superscript makes 10⁹ read as 109)")
    try:
        parsed = ureg.parse_expression(expr)
    except Exception as exc:  # pint raises several error types (UndefinedUnitError, tokenizer errors)
        raise UnitError(f"unknown unit {unit!r}") from exc
    units = parsed.units if isinstance(parsed, ureg.Quantity) else parsed
    if any(name in _ANGLES for name in getattr(units, "_units", {})):  # pint: an angle is a pure number
        raise UnitError(f"unknown unit {unit!r} (read as {str(units)!r}, an angle)")
    return parsed


@dataclass(frozen=True)
class Conversion:
    """``canonical = scale * value + offset``."""

    scale: float
    offset: float = 0.0

    def __call__(self, x: float) -> float:
        return self.scale * x + self.offset


def _quantity(value: float, unit: str) -> pint.Quantity:
    parsed = parse_unit(unit)
    if isinstance(parsed, ureg.Quantity):
        # e.g. "1e9/L" parses to a Quantity with magnitude 1e9
        return ureg.Quantity(value * parsed.magnitude, parsed.units)
    return ureg.Quantity(value, parsed)


@lru_cache(maxsize=4096)
def conversion(
    unit: str,
    canonical: str,
    molar_mass_g_mol: float | None = None,
    equivalents_per_mol: float | None = None,
) -> Conversion:
    """The affine map from ``unit`` to ``canonical``.

    ``molar_mass_g_mol`` enables mass <-> amount-of-substance conversion (mg/dL <-> umol/L);
    ``equivalents_per_mol`` enables mEq <-> mmol for an ion of that charge.
    Raises :class:`UnitError` for unknown units and for dimension mismatches.
    """
    eq_factor = 1.0
    src = unit
    if equivalents_per_mol and re.search(r"\b[mu]?[Ee]q\b", unit):
        # 1 mEq of an ion of charge z is 1/z mmol; pint has no equivalents, so rewrite explicitly.
        src = re.sub(r"\b([mu]?)[Ee]q\b", r"\1mol", unit)
        eq_factor = 1.0 / equivalents_per_mol

    def to_canonical(v: float) -> float:
        q = _quantity(v * eq_factor, src)
        target = parse_unit(canonical)
        target_units = target.units if isinstance(target, ureg.Quantity) else target
        target_mag = target.magnitude if isinstance(target, ureg.Quantity) else 1.0
        try:
            if molar_mass_g_mol:
                with ureg.context("chemistry", mw=molar_mass_g_mol * ureg("g/mol")):
                    out = q.to(target_units)
            else:
                out = q.to(target_units)
        except pint.DimensionalityError as exc:
            raise UnitError(
                f"unit {unit!r} (read as {str(q.units)!r}) cannot be converted to {canonical!r} (different dimension)"
            ) from exc
        return float(out.magnitude) / target_mag

    try:
        zero = to_canonical(0.0)
        one = to_canonical(1.0)
        if zero != 0.0:
            # an offset scale (temperature): take the slope from pint's delta units, exactly
            src_u = _quantity(1.0, unit).units
            tgt = parse_unit(canonical)
            tgt_u = tgt.units if isinstance(tgt, ureg.Quantity) else tgt
            try:
                scale = float(ureg.Quantity(1.0, f"delta_{src_u}").to(f"delta_{tgt_u}").magnitude)
            except pint.UndefinedUnitError:  # an absolute scale (kelvin) has no delta unit: the slope
                scale = one - zero
        else:
            scale = one
    except UnitError:
        raise
    except Exception as exc:  # a unit pint reads but cannot convert (e.g. % to umol/L in a molar context)
        try:
            read = parse_unit(unit)
        except UnitError:
            raise UnitError(f"unknown unit {unit!r}") from exc
        read_units = read.units if isinstance(read, ureg.Quantity) else read
        raise UnitError(f"unit {unit!r} (read as {str(read_units)!r}) cannot be converted to {canonical!r} "
                        "(different dimension)") from exc
    return Conversion(scale=_tidy(scale), offset=_tidy(zero))


def _tidy(x: float) -> float:
    """The shortest decimal within 4 ulp of ``x`` (0.0010000000000000002 -> 0.001)."""
    if x == 0.0:
        return 0.0
    for digits in range(1, 18):
        y = float(f"{x:.{digits}g}")
        if abs(y - x) <= 4 * abs(x) * 2.220446049250313e-16:
            return y
    return x
