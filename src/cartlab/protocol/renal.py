"""Renal dose adjustment of lymphodepleting agents: which renal-function measure a rule uses for a
patient, the weight Cockcroft-Gault uses, and the band of the rule (``criteria/renal_adjustment.yaml``).

Split out of :mod:`cartlab.protocol.dosing` (which re-exports the public names). The measure of an
agent's renal rule is, in order: the caller's ``DoseOptions.renal_function`` (``--renal-function``);
for a patient under 18 years the paediatric measure (bedside Schwartz eGFR by default, the
``paediatric_measure`` row of renal_adjustment.yaml, status convention; option
``paediatric_renal_function``, ``same_as_adults`` = the adult measure); the protocol's
``dosing.renal_function``; the rule's own measure. A patient of unknown age cannot be assigned one:
the rule is not evaluable (needs age).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from cartlab._yaml import load_yaml

__all__ = [
    "MEASURES",
    "SAME_AS_ADULTS",
    "renal_rules",
    "paediatric_measure_rule",
    "renal_adjustment",
    "renal_value_text",
    "crcl_weight",
    "renal_measure",
]

#: ``paediatric_renal_function`` value that gives children the adult measure (the old reading)
SAME_AS_ADULTS = "same_as_adults"


@lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    path = resources.files("cartlab.protocol").joinpath("criteria", "renal_adjustment.yaml")
    return load_yaml(path.read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def renal_rules() -> dict[str, dict[str, Any]]:
    """Renal dose-adjustment rules by id (``criteria/renal_adjustment.yaml``)."""
    return dict(_table()["rules"])


def paediatric_measure_rule() -> dict[str, Any]:
    """The ``paediatric_measure`` row of renal_adjustment.yaml: ``id``, ``measure``,
    ``age_below_years``, ``status``, ``citation``."""
    return dict(_table()["paediatric_measure"])


def _error(msg: str):
    from cartlab.protocol.dosing import DosingError

    return DosingError(msg)


def crcl_weight(basis: str, w: float, h: float | None, sex: str) -> tuple[float, str | None]:
    """The weight Cockcroft-Gault uses (kg) and a note when it is not the actual weight.

    ``ideal``: the lesser of the actual weight and the Devine IBW; ``adjusted``: IBW + 0.4 x
    (actual - IBW) when actual > ``adjusted_above_ibw_ratio`` x IBW (1.3, formulas.yaml, status
    convention), else the lesser of actual and IBW. Below 152.4 cm (60 in) the actual weight."""
    from cartlab.protocol import formulas as fx
    from cartlab.protocol.dosing import round_sig

    if basis == "actual":
        return w, None
    try:
        ibw = round_sig(float(fx.ideal_body_weight(h, sex)))
    except ValueError:
        return w, (f"{basis} weight not defined below 152.4 cm (Devine IBW starts at 60 in; height {h:.12g} cm): "
                   f"actual weight {w:g} kg used")
    lesser = (f"actual weight {w:g} kg used: not above the ideal body weight (Devine) {ibw:.1f} kg"
              if w <= ibw else f"ideal body weight (Devine) {ibw:.1f} kg used (actual {w:g} kg)")
    if basis == "ideal":
        return min(w, ibw), lesser
    ratio = fx.formula_entry("devine_ibw")["coefficients"]["adjusted_above_ibw_ratio"]
    if w > ratio * ibw:
        adj = round_sig(float(fx.adjusted_body_weight(w, h, sex)))
        return adj, (f"adjusted body weight {adj:.1f} kg = IBW {ibw:.1f} + 0.4 x ({w:g} - {ibw:.1f}) "
                     f"used (actual {w:g} kg > {ratio:g} x IBW)")
    return min(w, ibw), f"{lesser}; adjusted weight only above {ratio:g} x IBW ({ratio * ibw:.1f} kg)"


def _in_band(x: float, band: dict[str, Any]) -> bool:
    lo, hi = band.get("low"), band.get("high")
    if lo is not None and (x < lo or (x == lo and not band.get("low_inclusive", True))):
        return False
    if hi is not None and (x > hi or (x == hi and not band.get("high_inclusive", False))):
        return False
    return True


def renal_adjustment(rule_id: str, value: float) -> tuple[float | None, str, str]:
    """``(factor, band id, band text)`` of renal rule ``rule_id`` for a renal-function value
    (factor ``None`` = do not give). Bounds as written in ``renal_adjustment.yaml``."""
    rules = renal_rules()
    if rule_id not in rules:
        raise _error(f"unknown renal rule {rule_id!r}; known: {', '.join(sorted(rules))}")
    if value is None or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        raise _error(f"renal function must be a non-negative number (got {value!r})")
    for band in rules[rule_id]["bands"]:
        if _in_band(value, band):
            f = band.get("factor")
            return (None if f is None else float(f)), band["id"], band["text"]
    raise _error(f"renal rule {rule_id}: no band covers {value:g}")


@dataclass(frozen=True)
class _Renal:
    """What an agent's renal rule says: ``status`` computed (``factor`` applies; ``text`` is the
    band when it changes the dose), withhold (do not give), or not_evaluable (the renal function
    is not known: ``needs`` names the missing inputs; ``factor`` is None). ``rule``: the rule (and
    band) ids, with ``renal_measure_under_18`` before them when the paediatric measure was chosen."""

    factor: float | None
    status: str
    text: str = ""
    rule: str = ""
    citation: str = ""
    needs: tuple[str, ...] = ()
    measure: str | None = None  # the measure that decided (MEASURES key), None when none did
    value: float | None = None  # its value
    basis: str = ""  # the band text even at full dose (dose plan ``renal_basis``, review 39 B4)


MEASURES = {  # measure -> (body_size key, its note, its missing inputs, name, unit)
    "crcl_cockcroft_gault": ("crcl_ml_min", "renal_note", "crcl_missing", "CrCl (Cockcroft-Gault)", "mL/min"),
    "crcl_cockcroft_gault_bsa": ("crcl_ml_min_173", "crcl_173_note", "crcl_173_missing",
                                 "CrCl (Cockcroft-Gault) per 1.73 m2", "mL/min/1.73 m2"),
    "egfr_ckd_epi_2021": ("egfr_ml_min_173", "egfr_note", "egfr_missing", "eGFR (CKD-EPI 2021)", "mL/min/1.73 m2"),
    "egfr_bedside_schwartz": ("egfr_schwartz_ml_min_173", "egfr_schwartz_note", "egfr_schwartz_missing",
                              "eGFR (bedside Schwartz)", "mL/min/1.73 m2"),
}


def renal_value_text(value: float, rule_ids) -> str:
    """A renal-function value printed with enough decimals (1 at least, up to 6) to show on which
    side of every band bound of ``rule_ids`` it lies: CrCl 29.96 prints "29.96", not "30.0" (which
    would read as the 30-70 band while the dose is withheld for < 30)."""
    rules = renal_rules()
    bands = [b for r in rule_ids if r in rules for b in rules[r]["bands"]]

    def where(x: float) -> tuple:
        return tuple(_in_band(x, b) for b in bands)

    bounds = {b.get(k) for b in bands for k in ("low", "high") if b.get(k) is not None}
    for d in range(1, 7):
        text = f"{value:.{d}f}"
        x = float(text)
        if where(x) == where(value) and (x == value or x not in bounds):
            return text
    return repr(value)


def paediatric_setting(protocol, options) -> str:
    """The paediatric measure in force: the option, else the protocol's, else the table's."""
    dosing = getattr(protocol, "dosing", None)
    return (options.paediatric_renal_function or getattr(dosing, "paediatric_renal_function", None)
            or paediatric_measure_rule()["measure"])


def renal_measure(rule_id: str, age: float | None, protocol_measure: str | None, options,
                  paediatric: str) -> tuple[str | None, bool]:
    """``(measure, paediatric?)`` of renal rule ``rule_id`` for a patient of ``age`` years (see the
    module docstring for the order); ``(None, False)`` when the age decides and is unknown."""
    own = renal_rules()[rule_id].get("measure") or "crcl_cockcroft_gault"
    adult = protocol_measure or own
    if options.renal_function is not None:
        return options.renal_function, False
    if paediatric == SAME_AS_ADULTS:
        return adult, False
    if age is None:
        return None, False
    if age < paediatric_measure_rule()["age_below_years"]:
        return paediatric, True
    return adult, False


def renal_for_agent(agent, size: dict[str, Any], protocol, options) -> _Renal:
    """The renal rule of one agent for this patient. A renal function that cannot be computed is
    not taken as normal: the dose is not evaluable, naming what is missing."""
    rule_id = agent.renal_adjustment
    if rule_id is None or not options.apply_renal_adjustment:
        return _Renal(1.0, "computed", "" if rule_id is None else f"renal adjustment {rule_id} switched off")
    rule = renal_rules()[rule_id]
    own = rule.get("measure") or "crcl_cockcroft_gault"
    paed = paediatric_setting(protocol, options)
    for what, m in (("renal function measure", options.renal_function), ("paediatric renal function", paed)):
        if m is not None and m not in MEASURES and not (m == SAME_AS_ADULTS and what.startswith("paed")):
            raise _error(f"unknown {what} {m!r}; choose one of {', '.join(MEASURES)}"
                         + (f" or {SAME_AS_ADULTS}" if what.startswith("paed") else ""))
    measure, child = renal_measure(rule_id, size.get("age_years"), protocol.dosing.renal_function, options, paed)
    p_rule = paediatric_measure_rule()
    if measure is None:  # the age decides between the adult and the paediatric measure
        a_key, a_note, a_missing, a_name, _ = MEASURES[protocol.dosing.renal_function or own]
        head = (f"NOT EVALUABLE: {rule_id} needs {a_name}, {size.get(a_note)}" if size.get(a_key) is None
                else f"NOT EVALUABLE: {rule_id} needs the age")
        text = (f"{head} (the measure depends on the age: under {p_rule['age_below_years']:g} years "
                f"{MEASURES[paed][3]}, {p_rule['id']})")
        needs = tuple(size.get(a_missing) or ()) if size.get(a_key) is None else ()
        return _Renal(None, "not_evaluable", text, rule_id, rule["citation"],
                      needs + (() if "age" in needs else ("age",)))
    if measure == "crcl_cockcroft_gault_bsa" and size.get("crcl_weight", "actual") != "actual":
        raise _error(f"renal function crcl_cockcroft_gault_bsa (CrCl x 1.73 / BSA of the actual weight) cannot be "
                     f"combined with the {size['crcl_weight']} weight in Cockcroft-Gault (crcl_weight / "
                     "--crcl-weight): no source defines that mixed normalisation; choose one")
    key, note, missing, name, unit = MEASURES[measure]
    rule_ids = (f"{p_rule['id']}; " if child else "") + rule_id  # the band rule stays last
    # a rule whose text names its equation (FLUDARA: "as estimated by the Cockroft-Gault equations")
    warn = (f"WARNING: {rule_id} is written for {MEASURES[own][3]}; {name} is used instead "
            + ("(paediatric measure)" if child else "(option)")
            if rule.get("measure_fixed") and measure != own else "")
    why = (f"age {size['age_years']:g} < {p_rule['age_below_years']:g} years: {name} ({p_rule['id']}, convention; "
           f"--paediatric-renal-function {SAME_AS_ADULTS} for the adult measure)" if child else "")
    value = size.get(key)
    if value is None:
        text = "; ".join(x for x in (f"NOT EVALUABLE: {rule_id} needs {name}, {size.get(note)}", why, warn) if x)
        return _Renal(None, "not_evaluable", text, rule_ids, rule["citation"], tuple(size.get(missing) or ()),
                      measure=measure, basis=text)
    f, band_id, band_text = renal_adjustment(rule_id, value)
    r_unit = rule.get("unit", unit)
    text = f"{name} {renal_value_text(value, [rule_id])} {unit}: {band_text} ({rule_id}, bands in {r_unit}"
    text += (f"; applied to the {unit} value: cartlab's convention)" if r_unit != unit else ")")
    if measure == "crcl_cockcroft_gault" and size.get("crcl_weight_note"):
        text += f" [{size['crcl_weight_note']}]"
    basis = "; ".join(x for x in (text, warn) if x)  # the rule column names renal_measure_under_18
    text = "; ".join(x for x in (text, why, warn) if x)
    band_rule = (f"{p_rule['id']}; " if child else "") + f"{rule_id}.{band_id}"
    if f is None:
        return _Renal(None, "withhold", text, band_rule, rule["citation"], measure=measure, value=value, basis=basis)
    return _Renal(f, "computed", text if (f != 1 or warn) else "", band_rule, rule["citation"],
                  measure=measure, value=value, basis=basis)
