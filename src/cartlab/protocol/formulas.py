"""Body-size and renal-function formulas for CAR-T lymphodepletion dosing.

The formulas are data: ``cartlab/protocol/criteria/formulas.yaml`` holds every coefficient with
its citation and the pages where it was checked. This module is a small engine that reads that
table once (cached) and evaluates an entry by its ``kind``:

* ``power_bsa`` - ``c * weight_kg**a * height_cm**b`` (Mosteller, Du Bois, Haycock);
* ``cockcroft_gault`` - ``(age_offset - age) * weight / (divisor * Scr) * sex_factor``;
* ``ckd_epi_creatinine`` - ``scale * min(Scr/kappa, 1)**alpha * max(Scr/kappa, 1)**beta *
  age_base**age * sex_factor``;
* ``bedside_schwartz`` - paediatric eGFR ``k * height_cm / Scr`` (mL/min/1.73 m2; Schwartz 2009);
* ``devine_ibw`` - ideal body weight ``base_kg[sex] + kg_per_inch * (height_cm / cm_per_inch -
  from_inches)`` (Devine 1974) and the adjusted weight ``IBW + adjusted_fraction * (actual - IBW)``.

All functions are numpy-vectorised: arguments may be floats or array-likes (broadcast together);
the result is a ``float`` when every argument is a scalar, an ``ndarray`` otherwise. Inputs are
checked, never guessed: a non-numeric, non-finite (NaN, inf) or non-positive value (for age: a
negative one; 0 years is a valid age) raises :class:`ValueError` naming the argument. Units are
fixed (kg, cm, years, creatinine in mg/dL); callers convert with pint (:mod:`cartlab.units`) first.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from typing import Any

import numpy as np

from cartlab.criteria import load_raw as load_criteria

__all__ = [
    "BSA_METHODS",
    "bsa",
    "crcl_cockcroft_gault",
    "egfr_ckd_epi_2021",
    "egfr_bedside_schwartz",
    "formula_info",
    "formula_entry",
    "bsa_rounding",
    "ideal_body_weight",
    "adjusted_body_weight",
]

_TABLE = "formulas"
_PACKAGE = "cartlab.protocol"
_SEXES = ("F", "M")


def _number(value: Any, where: str) -> float:
    """A coefficient from the table: a number, or an exact fraction written ``"p/q"``."""
    if isinstance(value, bool):
        raise ValueError(f"formulas.yaml: {where} is a boolean, not a number")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(Fraction(value.replace(" ", "")))
        except (ValueError, ZeroDivisionError):
            pass
    raise ValueError(f"formulas.yaml: {where} = {value!r} is not a number or 'p/q' fraction")


def _coefficients(raw: Any, where: str) -> Any:
    if isinstance(raw, dict):
        return {k: _coefficients(v, f"{where}.{k}") for k, v in raw.items()}
    return _number(raw, where)


@lru_cache(maxsize=1)
def _formulas() -> dict[str, dict[str, Any]]:
    """The parsed table (read once): name -> entry with numeric ``coefficients``."""
    table = load_criteria(_TABLE, package=_PACKAGE)
    out: dict[str, dict[str, Any]] = {}
    for name, entry in table["formulas"].items():
        for key in ("group", "kind", "expression", "coefficients", "citation", "verified_at"):
            if key not in entry:
                raise ValueError(f"formulas.yaml: formula {name!r} lacks {key!r}")
        parsed = dict(entry)
        parsed["coefficients"] = _coefficients(entry["coefficients"], f"{name}.coefficients")
        out[name] = parsed
    return out


def _entry(name: str, group: str | None = None) -> dict[str, Any]:
    formulas = _formulas()
    if name not in formulas or (group is not None and formulas[name]["group"] != group):
        valid = [n for n, e in formulas.items() if group is None or e["group"] == group]
        raise ValueError(f"unknown formula {name!r}; valid: {', '.join(valid)}")
    return formulas[name]


def formula_entry(name: str) -> dict[str, Any]:
    """The whole parsed entry of a formula (coefficients, ``population``, ...), a shallow copy."""
    return dict(_entry(name))


@lru_cache(maxsize=1)
def bsa_rounding() -> dict[str, Any]:
    """The BSA rounding convention (``bsa_rounding`` in formulas.yaml): default, min and max
    decimals, status and citation."""
    return dict(load_criteria(_TABLE, package=_PACKAGE)["bsa_rounding"])


def formula_info(name: str) -> dict[str, Any]:
    """``{name, expression, citation, verified_at}`` of a formula in the table (a copy)."""
    e = _entry(name)
    return {
        "name": name,
        "expression": e["expression"],
        "citation": e["citation"],
        "verified_at": list(e["verified_at"]),
    }


#: The BSA methods :func:`bsa` accepts, in table order.
BSA_METHODS: tuple[str, ...] = tuple(n for n, e in _formulas().items() if e["group"] == "bsa")


# ---------------------------------------------------------------------------------------------
# Input checking


def _positive(value: Any, name: str, zero_ok: bool = False) -> np.ndarray:
    """``value`` as a float array whose every element is finite and > 0 (>= 0 with ``zero_ok``),
    else ValueError."""
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or an array of numbers; got {value!r}") from None
    bad = ~(np.isfinite(arr) & ((arr >= 0) if zero_ok else (arr > 0)))
    what = "non-negative" if zero_ok else "positive"
    if bad.any():
        if arr.ndim == 0:
            raise ValueError(f"{name} must be a {what} finite number; got {arr.item()!r}")
        idx = np.flatnonzero(bad)
        raise ValueError(
            f"{name} must be {what} and finite; {idx.size} invalid value(s), "
            f"first at index {int(idx[0])}: {float(arr.ravel()[idx[0]])!r}"
        )
    return arr


def _sex(value: Any) -> np.ndarray:
    """``value`` as an array of "F"/"M" strings, else ValueError."""
    arr = np.asarray(value, dtype=object)
    ok = np.vectorize(lambda s: isinstance(s, str) and s in _SEXES, otypes=[bool])(arr)
    if not np.all(ok):
        first = arr.item() if arr.ndim == 0 else arr.ravel()[np.flatnonzero(~ok)[0]]
        raise ValueError(f"sex must be 'F' (female) or 'M' (male); got {first!r}")
    return arr


def _by_sex(sex: np.ndarray, values: dict[str, float]) -> np.ndarray:
    """The per-sex coefficient for each element of ``sex``."""
    return np.where(sex == "F", values["F"], values["M"]).astype(float)


def _result(out: np.ndarray, *inputs: np.ndarray) -> float | np.ndarray:
    if all(np.ndim(x) == 0 for x in inputs):
        return float(out)
    return out


# ---------------------------------------------------------------------------------------------
# Public formulas


def bsa(weight_kg, height_cm, method: str = "mosteller") -> float | np.ndarray:
    """Body surface area in m2 from weight (kg) and height (cm).

    ``method`` is one of :data:`BSA_METHODS`: ``"mosteller"`` (Mosteller RD, N Engl J Med
    1987;317:1098: sqrt(H x W / 3600)), ``"dubois"`` (Du Bois D, Du Bois EF, Arch Intern Med
    1916;17:863) or ``"haycock"`` (Haycock GB et al., J Pediatr 1978;93:62).
    """
    key = method.strip().lower() if isinstance(method, str) else method
    if key not in BSA_METHODS:
        raise ValueError(f"unknown BSA method {method!r}; valid: {', '.join(BSA_METHODS)}")
    k = _entry(key, "bsa")["coefficients"]
    w = _positive(weight_kg, "weight_kg")
    h = _positive(height_cm, "height_cm")
    w, h = np.broadcast_arrays(w, h)
    return _result(k["c"] * w ** k["a"] * h ** k["b"], w, h)


def crcl_cockcroft_gault(age_years, weight_kg, creatinine_mg_dl, sex) -> float | np.ndarray:
    """Creatinine clearance in mL/min (absolute, not per 1.73 m2) by Cockcroft-Gault.

    CrCl = (140 - age) x weight_kg / (72 x Scr) x 0.85 if female (Cockcroft DW, Gault MH, Nephron
    1976;16:31-41). ``creatinine_mg_dl`` must be in mg/dL: convert umol/L with pint
    (:mod:`cartlab.units`) before calling. ``sex`` is "F" or "M". ``age_years`` must be below 140
    (the equation gives a non-positive clearance otherwise). Which weight to pass (actual, ideal,
    adjusted) is the protocol's choice. Age 0 is accepted (the equation was derived in adults; the
    caller says so for children).
    """
    k = _entry("cockcroft_gault", "renal")["coefficients"]
    age = _positive(age_years, "age_years", zero_ok=True)
    if np.any(age >= k["age_offset"]):
        raise ValueError(
            f"age_years must be below {k['age_offset']:g} for Cockcroft-Gault; "
            f"got {float(age.max())!r}"
        )
    w = _positive(weight_kg, "weight_kg")
    scr = _positive(creatinine_mg_dl, "creatinine_mg_dl")
    s = _sex(sex)
    age, w, scr, s = np.broadcast_arrays(age, w, scr, s)
    out = (k["age_offset"] - age) * w / (k["divisor"] * scr) * _by_sex(s, k["sex_factor"])
    return _result(out, age, w, scr, s)


def egfr_ckd_epi_2021(creatinine_mg_dl, age_years, sex) -> float | np.ndarray:
    """eGFR in mL/min/1.73 m2 by the race-free CKD-EPI 2021 creatinine equation.

    eGFR = 142 x min(Scr/k, 1)^a x max(Scr/k, 1)^-1.200 x 0.9938^age x 1.012 [if female], with
    k = 0.7 (F) / 0.9 (M) and a = -0.241 (F) / -0.302 (M) (Inker LA et al., N Engl J Med
    2021;385:1737-49). ``creatinine_mg_dl`` must be IDMS-traceable serum creatinine in mg/dL:
    convert umol/L with pint (:mod:`cartlab.units`) before calling. ``sex`` is "F" or "M". The
    equation is validated for adults (>= 18 years); younger ages are computed, not refused.
    """
    k = _entry("ckd_epi_2021", "renal")["coefficients"]
    scr = _positive(creatinine_mg_dl, "creatinine_mg_dl")
    age = _positive(age_years, "age_years", zero_ok=True)
    s = _sex(sex)
    scr, age, s = np.broadcast_arrays(scr, age, s)
    ratio = scr / _by_sex(s, k["kappa"])
    out = (
        k["scale"]
        * np.minimum(ratio, 1.0) ** _by_sex(s, k["alpha"])
        * np.maximum(ratio, 1.0) ** k["beta"]
        * k["age_base"] ** age
        * _by_sex(s, k["sex_factor"])
    )
    return _result(out, scr, age, s)


def egfr_bedside_schwartz(height_cm, creatinine_mg_dl) -> float | np.ndarray:
    """Paediatric eGFR in mL/min/1.73 m2 by the bedside Schwartz equation: 0.413 x height_cm / Scr
    (Schwartz GJ et al., J Am Soc Nephrol 2009;20:629; NKF: "for use in children 1-18 years old").
    ``creatinine_mg_dl`` is IDMS-traceable serum creatinine in mg/dL (convert with pint first).
    The age range is the caller's concern (the equation has no age term)."""
    k = _entry("bedside_schwartz", "renal")["coefficients"]
    h = _positive(height_cm, "height_cm")
    scr = _positive(creatinine_mg_dl, "creatinine_mg_dl")
    h, scr = np.broadcast_arrays(h, scr)
    return _result(k["k"] * h / scr, h, scr)


def ideal_body_weight(height_cm, sex) -> float | np.ndarray:
    """Ideal body weight in kg by Devine (Drug Intell Clin Pharm 1974;8:650): 50 kg (M) / 45.5 kg
    (F) + 2.3 kg per inch of height over 60 inches. Defined from 60 inches (152.4 cm): a shorter
    height raises ValueError (the caller decides what to use instead); the height in inches is
    compared at 12 significant digits (:func:`~cartlab.protocol.dosing.round_sig`)."""
    k = _entry("devine_ibw", "weight")["coefficients"]
    h = _positive(height_cm, "height_cm")
    s = _sex(sex)
    h, s = np.broadcast_arrays(h, s)
    # rounded to 12 significant digits (round_sig) before the comparison: 5 ft from pint is
    # 152.39999999999998 cm, exactly 60 in, inside Devine's range (review 41 F1)
    from cartlab.protocol.dosing import round_sig

    inches = np.vectorize(round_sig, otypes=[float])(h / k["cm_per_inch"])
    if np.any(inches < k["from_inches"]):
        raise ValueError(f"Devine ideal body weight is defined from {k['from_inches']:g} inches "
                         f"({k['from_inches'] * k['cm_per_inch']:g} cm); got {float(h.min())!r} cm")
    return _result(_by_sex(s, k["base_kg"]) + k["kg_per_inch"] * (inches - k["from_inches"]), h, s)


def adjusted_body_weight(weight_kg, height_cm, sex) -> float | np.ndarray:
    """Adjusted body weight in kg: IBW + 0.4 x (actual - IBW), IBW by :func:`ideal_body_weight`."""
    k = _entry("devine_ibw", "weight")["coefficients"]
    w = _positive(weight_kg, "weight_kg")
    ibw = ideal_body_weight(height_cm, sex)
    return _result(ibw + k["adjusted_fraction"] * (w - ibw), w, np.asarray(ibw))
