"""Dosing from a protocol: lymphodepletion from BSA / weight / renal function, and the CAR-T dose
per infusion (cells, and infusion volume from the product's concentration and viability).

:func:`dose_plan` is a pure function ``(protocol, patient, options) -> polars.DataFrame`` with one
row per administration: ``day, agent, dose, unit, status, basis`` plus the protocol dose, the
adjustment that was applied and the rule and citation behind it. :func:`body_size` gives the inputs
it used (BSA, creatinine clearance, eGFR) with their formulas.

Missing is not normal: a dose whose inputs are unknown (a renal rule without age, sex or creatinine,
a per-m2 dose without height or weight, a per-kg dose without weight) has ``status``
``not_evaluable``, no dose, and ``needs`` naming what is missing; flat doses need nothing.

Rules are data: BSA and renal formulas in ``criteria/formulas.yaml`` (see
:mod:`cartlab.protocol.formulas`), renal dose adjustments in ``criteria/renal_adjustment.yaml``,
input plausibility limits in ``criteria/plausibility.yaml``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from importlib import resources
from typing import Any

import polars as pl

from cartlab._yaml import load_yaml
from cartlab.errors import InputError
from cartlab.io.study_folder import SIG_DIGITS

__all__ = [
    "DosingError",
    "Patient",
    "DoseOptions",
    "body_size",
    "dose_plan",
    "renal_rules",
    "renal_adjustment",
    "plausibility_limits",
    "creatinine_mg_dl",
    "plan_to_doses",
    "round_sig",
    "round_half_up",
    "renal_value_text",
    "DOSE_PLAN_SCHEMA",
]


class DosingError(InputError):
    """An input cartlab refuses to dose from (implausible, missing, outside the protocol)."""


def _table(name: str) -> dict[str, Any]:
    path = resources.files("cartlab.protocol").joinpath("criteria", f"{name}.yaml")
    return load_yaml(path.read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def renal_rules() -> dict[str, dict[str, Any]]:
    """Renal dose-adjustment rules by id (``criteria/renal_adjustment.yaml``)."""
    return dict(_table("renal_adjustment")["rules"])


@lru_cache(maxsize=None)
def plausibility_limits() -> dict[str, dict[str, Any]]:
    return dict(_table("plausibility")["limits"])


def round_sig(x: float | None) -> float | None:
    """``x`` rounded to :data:`cartlab.io.study_folder.SIG_DIGITS` (12) significant digits, the
    rounding the study reader applies to every converted value (polars ``round_sig_figs``).

    Derived quantities that are compared with a threshold (a converted creatinine, CrCl, eGFR, BSA
    before its documented rounding, a threshold converted into a value's unit) are rounded so:
    float artefacts of a unit round trip (1.0 mg/dL -> umol/L -> 0.9999999999999999 mg/dL) must
    not move a value across a bound it sits on. ``None``, 0, NaN and inf are returned unchanged."""
    if x is None or isinstance(x, bool) or not math.isfinite(x) or x == 0:
        return x
    return pl.Series([float(x)], dtype=pl.Float64).round_sig_figs(SIG_DIGITS).item()


def round_half_up(x: float, decimals: int) -> float:
    """``x`` rounded to ``decimals`` decimals with ties away from zero (half up), on the decimal value
    printed to 12 significant digits (:func:`round_sig`): 1.845 -> 1.85 and 1.625 -> 1.63, where
    Python's binary ``round`` gives 1.84 and 1.62 (half to even on the nearest binary double)."""
    r = round_sig(x)
    if r is None or not math.isfinite(r):
        return r
    return float(Decimal(repr(r)).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP))


def creatinine_mg_dl(value: float, unit: str) -> float:
    """Serum creatinine converted to mg/dL with pint (umol/L via creatinine's molar mass, as in the
    parameter dictionary), rounded to 12 significant digits (:func:`round_sig`). An unknown unit
    raises :class:`~cartlab.units.UnitError`."""
    from cartlab.io.dictionary import load_dictionary
    from cartlab.units import conversion

    p = load_dictionary()["CREAT"]
    to_canon = p.conversion_from(unit)
    canon = to_canon.scale * float(value) + to_canon.offset
    back = conversion(p.unit, "mg/dL", molar_mass_g_mol=p.molar_mass_g_mol)
    return round_sig(back.scale * canon + back.offset)


@dataclass(frozen=True)
class Patient:
    """What dosing needs to know about a patient (at lymphodepletion). ``None`` = not known: the
    doses that need the value are not evaluable (per-m2 doses need weight and height, per-kg doses
    weight, renal rules age, sex, creatinine and, for Cockcroft-Gault, weight); flat doses need
    nothing. ``creatinine_day`` is the study day the creatinine was measured on (from a study),
    ``creatinine_note`` why there is none (e.g. none in the screening window). ``subject_ref`` /
    ``creatinine_ref``: the source rows of the subject's weight, height, age and sex and of the
    creatinine (``subjects.csv:3``, ``observations.csv:41``; from a study), cited in the dose plan's
    ``evidence``."""

    weight_kg: float | None
    height_cm: float | None
    age_years: float | None = None
    sex: str | None = None  # "F" or "M"
    creatinine: float | None = None
    creatinine_unit: str | None = None
    subject_id: str | None = None
    creatinine_day: float | None = None
    creatinine_note: str | None = None
    subject_ref: str | None = None
    creatinine_ref: str | None = None


@dataclass(frozen=True)
class DoseOptions:
    """Choices behind a dose plan (defaults follow the protocol).

    * ``bsa_method``: ``mosteller`` | ``dubois`` | ``haycock``; ``None`` = the protocol's (Mosteller
      unless it says otherwise).
    * ``bsa_decimals``: BSA is rounded to this many decimals before dosing, as printed on the sheet
      (2 by default; ``None`` = unrounded). Ties round half up on the decimal value (1.845 -> 1.85;
      :func:`round_half_up`), not by binary half-to-even.
    * ``renal_function``: ``crcl_cockcroft_gault`` (absolute mL/min) | ``crcl_cockcroft_gault_bsa``
      (CrCl x 1.73 / BSA, mL/min/1.73 m2, the unit of the generic fludarabine label's bands; the
      unrounded, uncapped BSA of ``bsa_method``) | ``egfr_ckd_epi_2021``; ``None`` = the protocol's,
      else each rule's own (``crcl_cockcroft_gault`` for both fludarabine rules).
    * ``crcl_weight``: the weight in Cockcroft-Gault: ``actual`` | ``ideal`` (Devine) | ``adjusted``
      (IBW + 0.4 x (actual - IBW)); ``None`` = the protocol's (``actual`` by default, as in the
      1976 paper). Devine is defined from 152.4 cm (60 in); below it the actual weight is used.
    * ``apply_renal_adjustment``: apply the protocol's renal rules (default True).
    * ``car_dose``: the CAR-T total dose in the band's unit (cells/kg or cells), overriding the
      protocol's target; must lie within the band's range.
    * ``product_concentration``: total nucleated cells per mL of the product bag; with
      ``viability`` and ``car_positive`` (fractions) it gives the infusion volume.
    * ``plausibility``: overrides of the input limits, e.g. ``{"weight_kg": {"low": 1, "high": 350}}``.
    """

    bsa_method: str | None = None
    bsa_decimals: int | None = 2
    renal_function: str | None = None
    crcl_weight: str | None = None
    apply_renal_adjustment: bool = True
    car_dose: float | None = None
    product_concentration: float | None = None
    viability: float = 1.0
    car_positive: float = 1.0
    plausibility: dict[str, dict[str, float]] = field(default_factory=dict)


DOSE_PLAN_SCHEMA = {
    "day": pl.Float64,
    "agent": pl.String,
    "kind": pl.String,  # lymphodepletion | car_t
    "dose": pl.Float64,  # what to give (absolute: mg or cells); null = not to be given / to choose
    "unit": pl.String,
    # computed | withhold (the renal rule says do not give) | not_evaluable (an input is missing:
    # `needs`) | to_choose (CAR-T range without a protocol target)
    "status": pl.String,
    "needs": pl.String,  # the missing inputs of a not_evaluable dose, e.g. "creatinine" or "height"
    "basis": pl.String,  # how the dose was computed, in words and numbers
    "protocol_dose": pl.Float64,  # the protocol's dose on its basis (per m2 / per kg / flat)
    "protocol_unit": pl.String,
    "adjustment": pl.String,  # renal or cap adjustment applied (empty = none)
    "factor": pl.Float64,  # multiplier applied to the protocol dose (1 = none)
    "dose_min": pl.Float64,  # CAR-T: the band's range in absolute cells
    "dose_max": pl.Float64,
    "volume_ml": pl.Float64,  # CAR-T: infusion volume from the product concentration
    "route": pl.String,
    "rule": pl.String,
    "citation": pl.String,
    "source": pl.String,
    # the source rows behind the dose: the subject's row (weight, height; age and sex for a renal
    # rule) and the screening creatinine's row; empty for a flat dose or a patient not from a study
    "evidence": pl.List(pl.String),
}


def _check_range(name: str, value: float | None, options: DoseOptions, label: str) -> None:
    if value is None:
        return
    lim = {**plausibility_limits()[name], **options.plausibility.get(name, {})}
    if not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value):
        raise DosingError(f"{label} must be a number (got {value!r})")
    if value < lim["low"] or value > lim["high"]:
        raise DosingError(
            f"{label} {value:g} {lim['unit']} is implausible: cartlab accepts {lim['low']:g}-{lim['high']:g} "
            f"{lim['unit']} ({lim['why']}). Check the value and its unit; a real patient outside the "
            f"limits needs an explicit override (DoseOptions.plausibility).")


def _validate_patient(patient: Patient, options: DoseOptions) -> float | None:
    """Refuse implausible inputs; return creatinine in mg/dL (or None)."""
    from cartlab.units import UnitError

    _check_range("weight_kg", patient.weight_kg, options, "weight")
    _check_range("height_cm", patient.height_cm, options, "height")
    _check_range("age_years", patient.age_years, options, "age")
    if patient.age_years is not None and patient.age_years >= 140:
        raise DosingError(f"age {patient.age_years:g} years: Cockcroft-Gault ((140 - age) x weight ...) needs an "
                          "age below 140 years; check the value")
    if patient.weight_kg is not None and patient.height_cm is not None:
        bmi = patient.weight_kg / (patient.height_cm / 100.0) ** 2
        _check_range("bmi_kg_m2", round(round_sig(bmi), 1), options,
                     f"BMI from {patient.weight_kg:g} kg and {patient.height_cm:g} cm:")
    if patient.sex is not None and patient.sex not in ("F", "M"):
        raise DosingError(f"sex must be F or M (got {patient.sex!r}); renal formulas are sex-specific")
    scr = None
    if patient.creatinine is not None:
        if patient.creatinine_unit is None or not str(patient.creatinine_unit).strip():
            raise DosingError("creatinine needs a unit (mg/dL or umol/L); cartlab never guesses a unit")
        if patient.creatinine <= 0:
            raise DosingError(f"creatinine must be positive (got {patient.creatinine:g})")
        try:
            scr = creatinine_mg_dl(patient.creatinine, patient.creatinine_unit)
        except UnitError as exc:
            raise DosingError(f"creatinine unit {patient.creatinine_unit!r}: {exc}") from None
        _check_range("creatinine_mg_dl", round(scr, 4), options,
                     f"creatinine {patient.creatinine:g} {patient.creatinine_unit} =")
    return scr


def _needs(names: list[str]) -> str:
    return "not computed: needs " + ", ".join(names)


def body_size(patient: Patient, protocol=None, options: DoseOptions = DoseOptions()) -> dict[str, Any]:
    """BSA, creatinine clearance and eGFR for a patient, each with its formula and citation.

    BSA by the chosen method (Mosteller default) when weight and height are known; CrCl by
    Cockcroft–Gault when age, sex, creatinine and weight are known, eGFR by CKD-EPI 2021 when age,
    sex and creatinine are. A value that cannot be computed is ``None``; ``bsa_missing`` /
    ``crcl_missing`` / ``egfr_missing`` name the inputs it needs and ``bsa_note`` / ``renal_note``
    (CrCl) / ``egfr_note`` say so in words. Derived values are rounded to 12 significant digits
    (:func:`round_sig`) before they meet a threshold; BSA is then rounded to ``bsa_decimals``.
    """
    from cartlab.protocol import formulas as fx

    scr = _validate_patient(patient, options)
    method = options.bsa_method or (protocol.dosing.bsa_method if protocol is not None else "mosteller")
    if method not in fx.BSA_METHODS:
        raise DosingError(f"unknown BSA method {method!r}; choose one of {', '.join(fx.BSA_METHODS)}")
    w, h = patient.weight_kg, patient.height_cm
    bsa_missing = [n for n, v in (("weight", w), ("height", h)) if v is None]
    raw = bsa = None
    cap = protocol.dosing.bsa_cap_m2 if protocol is not None else None
    capped = False
    if not bsa_missing:
        raw = float(fx.bsa(w, h, method=method))
        bsa = round_half_up(raw, options.bsa_decimals) if options.bsa_decimals is not None else raw
        capped = cap is not None and round_sig(bsa) > cap
    info = fx.formula_info(method)
    out: dict[str, Any] = {
        "weight_kg": w, "height_cm": h, "age_years": patient.age_years,
        "sex": patient.sex, "creatinine": patient.creatinine, "creatinine_unit": patient.creatinine_unit,
        "creatinine_mg_dl": scr, "creatinine_day": patient.creatinine_day,
        "bsa_method": method, "bsa_raw_m2": raw, "bsa_m2": min(bsa, cap) if capped else bsa,
        "bsa_capped": capped, "bsa_cap_m2": cap, "bsa_formula": info["expression"],
        "bsa_citation": info["citation"], "bsa_missing": bsa_missing,
        "bsa_note": _needs(bsa_missing) if bsa_missing else None,
        "bmi_kg_m2": None if bsa_missing else w / (h / 100.0) ** 2,
    }
    creat = "creatinine" + (f" ({patient.creatinine_note})" if patient.creatinine_note else "")
    have = {"age": patient.age_years, "sex": patient.sex, "creatinine": scr, "weight": w}
    crcl_missing = [n for n in ("age", "sex", "creatinine", "weight") if have[n] is None]
    egfr_missing = [n for n in ("age", "sex", "creatinine") if have[n] is None]

    def note(missing: list[str]) -> str | None:
        return _needs([creat if n == "creatinine" else n for n in missing]) if missing else None

    age, sex = patient.age_years, patient.sex
    basis = options.crcl_weight or (protocol.dosing.crcl_weight if protocol is not None else "actual")
    if basis not in ("actual", "ideal", "adjusted"):
        raise DosingError(f"unknown Cockcroft-Gault weight {basis!r}; choose actual, ideal or adjusted")
    if basis != "actual":
        crcl_missing += [n for n in ("height",) if h is None]
    cw, cw_note = _crcl_weight(basis, w, h, sex) if not crcl_missing else (None, None)
    crcl = None if crcl_missing else round_sig(float(fx.crcl_cockcroft_gault(age, cw, scr, sex)))
    bsa_crcl_missing = crcl_missing + [n for n in bsa_missing if n not in crcl_missing]
    out.update(
        crcl_ml_min=crcl,
        crcl_weight=basis, crcl_weight_kg=cw, crcl_weight_note=cw_note,
        # CrCl normalised to 1.73 m2 by the unrounded, uncapped BSA (the renal rule's unit)
        crcl_ml_min_173=None if bsa_crcl_missing else round_sig(crcl * 1.73 / raw),
        egfr_ml_min_173=None if egfr_missing else round_sig(float(fx.egfr_ckd_epi_2021(scr, age, sex))),
        crcl_missing=crcl_missing, egfr_missing=egfr_missing, crcl_173_missing=bsa_crcl_missing,
        renal_note=note(crcl_missing), egfr_note=note(egfr_missing), crcl_173_note=note(bsa_crcl_missing))
    out["renal_caveat"] = (
        "Cockcroft-Gault and CKD-EPI 2021 were derived in adults; below 18 years a paediatric estimate "
        "(e.g. bedside Schwartz) is usual" if patient.age_years is not None and patient.age_years < 18 else None)
    cg, ckd = fx.formula_info("cockcroft_gault"), fx.formula_info("ckd_epi_2021")
    out.update(crcl_formula=cg["expression"], crcl_citation=cg["citation"],
               egfr_formula=ckd["expression"], egfr_citation=ckd["citation"])
    return out


def _crcl_weight(basis: str, w: float, h: float | None, sex: str) -> tuple[float, str | None]:
    """The weight Cockcroft-Gault uses (kg) and a note when it is not the actual weight."""
    from cartlab.protocol import formulas as fx

    if basis == "actual":
        return w, None
    try:
        ibw = float(fx.ideal_body_weight(h, sex))
    except ValueError:
        return w, (f"{basis} weight not defined below 152.4 cm (Devine IBW starts at 60 in; height {h:g} cm): "
                   f"actual weight {w:g} kg used")
    if basis == "ideal":
        return round_sig(ibw), f"ideal body weight (Devine) {ibw:.1f} kg used (actual {w:g} kg)"
    adj = float(fx.adjusted_body_weight(w, h, sex))
    return round_sig(adj), (f"adjusted body weight {adj:.1f} kg = IBW {ibw:.1f} + 0.4 x ({w:g} - {ibw:.1f}) "
                            f"used (actual {w:g} kg)")


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
        raise DosingError(f"unknown renal rule {rule_id!r}; known: {', '.join(sorted(rules))}")
    if value is None or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        raise DosingError(f"renal function must be a non-negative number (got {value!r})")
    for band in rules[rule_id]["bands"]:
        if _in_band(value, band):
            f = band.get("factor")
            return (None if f is None else float(f)), band["id"], band["text"]
    raise DosingError(f"renal rule {rule_id}: no band covers {value:g}")


@dataclass(frozen=True)
class _Renal:
    """What an agent's renal rule says: ``status`` computed (``factor`` applies; ``text`` is the
    band when it changes the dose), withhold (do not give), or not_evaluable (the renal function
    is not known: ``needs`` names the missing inputs; ``factor`` is None)."""

    factor: float | None
    status: str
    text: str = ""
    rule: str = ""
    citation: str = ""
    needs: tuple[str, ...] = ()


_MEASURES = {  # measure -> (body_size key, its note, its missing inputs, name, unit)
    "crcl_cockcroft_gault": ("crcl_ml_min", "renal_note", "crcl_missing", "CrCl (Cockcroft-Gault)", "mL/min"),
    "crcl_cockcroft_gault_bsa": ("crcl_ml_min_173", "crcl_173_note", "crcl_173_missing",
                                 "CrCl (Cockcroft-Gault) per 1.73 m2", "mL/min/1.73 m2"),
    "egfr_ckd_epi_2021": ("egfr_ml_min_173", "egfr_note", "egfr_missing", "eGFR (CKD-EPI 2021)", "mL/min/1.73 m2"),
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


def _renal(agent, size: dict[str, Any], measure_default: str, options: DoseOptions) -> _Renal:
    """The renal rule of one agent for this patient. A renal function that cannot be computed is
    not taken as normal: the dose is not evaluable, naming what is missing."""
    rule_id = agent.renal_adjustment
    if rule_id is None or not options.apply_renal_adjustment:
        return _Renal(1.0, "computed", "" if rule_id is None else f"renal adjustment {rule_id} switched off")
    rule = renal_rules()[rule_id]
    own = rule.get("measure") or "crcl_cockcroft_gault"
    measure = options.renal_function or measure_default or own
    if measure not in _MEASURES:
        raise DosingError(f"unknown renal function measure {measure!r}; choose one of {', '.join(_MEASURES)}")
    key, note, missing, name, unit = _MEASURES[measure]
    # a rule whose text names its equation (FLUDARA: "as estimated by the Cockroft-Gault equations")
    warn = (f"WARNING: {rule_id} is written for {_MEASURES[own][3]}; {name} is used instead (option)"
            if rule.get("measure_fixed") and measure != own else "")
    value = size.get(key)
    if value is None:
        text = "; ".join(x for x in (f"NOT EVALUABLE: {rule_id} needs {name}, {size.get(note)}", warn) if x)
        return _Renal(None, "not_evaluable", text, rule_id, rule["citation"], tuple(size.get(missing) or ()))
    f, band_id, band_text = renal_adjustment(rule_id, value)
    r_unit = rule.get("unit", unit)
    text = f"{name} {renal_value_text(value, [rule_id])} {unit}: {band_text} ({rule_id}, bands in {r_unit}"
    text += (f"; applied to the {unit} value: cartlab's convention)" if r_unit != unit else ")")
    if measure == "crcl_cockcroft_gault" and size.get("crcl_weight_note"):
        text += f" [{size['crcl_weight_note']}]"
    text = "; ".join(x for x in (text, warn) if x)
    if f is None:
        return _Renal(None, "withhold", text, f"{rule_id}.{band_id}", rule["citation"])
    return _Renal(f, "computed", text if (f != 1 or warn) else "", f"{rule_id}.{band_id}", rule["citation"])


def _fmt(x: float) -> str:
    if x == 0:
        return "0"
    if not math.isfinite(x):
        return str(x)
    if abs(x) >= 1e5:
        m, e = f"{x:.3e}".split("e")
        m = m.rstrip("0").rstrip(".")
        return f"{m}e{int(e)}"
    return f"{x:.4g}"


def dose_plan(protocol, patient: Patient, options: DoseOptions = DoseOptions(),
              size: dict[str, Any] | None = None) -> pl.DataFrame:
    """One row per administration of ``protocol`` for ``patient`` (see :data:`DOSE_PLAN_SCHEMA`).

    Lymphodepletion: ``mg/m2`` x BSA, ``mg/kg`` x weight, ``mg`` flat; then the agent's renal rule
    (e.g. fludarabine 20% reduction at CrCl 30-70 mL/min) and any per-dose cap. CAR-T: the weight
    band's dose (the protocol's target, or ``options.car_dose``) x weight for ``cells/kg``, capped at
    the band's maximum total cells, split over the infusions by their fractions. ``size`` is
    :func:`body_size` of the same patient, protocol and options when the caller has it already.

    A dose whose inputs are missing (BSA without height, a renal rule without creatinine, ...) is
    ``not_evaluable`` with ``dose`` null and the missing inputs in ``needs``; the other doses are
    computed. :class:`DosingError` when no dose at all can be computed.
    """
    size = size if size is not None else body_size(patient, protocol, options)
    rows: list[dict[str, Any]] = []
    bsa_txt = (f"BSA ({size['bsa_note']})" if size["bsa_m2"] is None else
               f"BSA {size['bsa_m2']:.2f} m2 ({size['bsa_method'].capitalize()}" + (
                   f", capped at {size['bsa_cap_m2']:g} m2" if size["bsa_capped"] else "") + ")")
    for a in protocol.lymphodepletion:
        needs: list[str] = []
        lacking = ""
        if a.unit == "mg/m2":
            base, basis = (None if size["bsa_m2"] is None else a.dose * size["bsa_m2"]), f"{a.dose:g} mg/m2 x {bsa_txt}"
            if base is None:
                needs, lacking = list(size["bsa_missing"]), f"{a.dose:g} mg/m2 needs BSA, {size['bsa_note']}"
        elif a.unit == "mg/kg":
            w = patient.weight_kg
            base = None if w is None else a.dose * w
            basis = f"{a.dose:g} mg/kg x " + ("weight (not given)" if w is None else f"{w:g} kg")
            if base is None:
                needs, lacking = ["weight"], f"{a.dose:g} mg/kg needs the weight"
        else:
            base, basis = a.dose, f"{a.dose:g} mg flat"
        renal = _renal(a, size, protocol.dosing.renal_function, options)
        factor, adj = renal.factor, renal.text
        if renal.status == "withhold":
            status, dose = "withhold", None
            basis += " — WITHHOLD (renal)"
        else:
            needs += [n for n in renal.needs if n not in needs]
            if factor is not None and factor != 1:
                basis += f" x {factor:g} (renal)"
            if needs:
                status, dose = "not_evaluable", None
                adj = "; ".join(x for x in (adj, f"NOT EVALUABLE: {lacking}" if lacking else "") if x)
                basis += f" — NOT EVALUABLE (needs {', '.join(needs)})"
            else:
                status, dose = "computed", base * factor
                if a.max_dose_mg is not None and dose > a.max_dose_mg:
                    adj = "; ".join(x for x in (adj, f"capped at the protocol maximum {a.max_dose_mg:g} mg") if x)
                    basis += f", capped at {a.max_dose_mg:g} mg"
                    dose = a.max_dose_mg
                    factor = dose / base  # the factor of the dose actually planned (renal x cap)
        uses_size = a.unit in ("mg/m2", "mg/kg") or renal.rule != ""
        evidence = [x for x in ((patient.subject_ref if uses_size else None),
                                (patient.creatinine_ref if renal.rule else None)) if x]
        for d in a.days:
            rows.append({
                "day": d, "agent": a.agent, "kind": "lymphodepletion", "dose": dose, "unit": "mg",
                "status": status, "needs": ", ".join(needs) or None,
                "basis": basis, "protocol_dose": a.dose, "protocol_unit": a.unit, "adjustment": adj or None,
                "factor": factor, "route": a.route, "rule": "; ".join(
                    [f"{protocol.id}.lymphodepletion.{a.agent}"]
                    + ([f"{protocol.id}.lymphodepletion.{a.agent}.renal", renal.rule] if renal.rule else [])),
                "citation": "; ".join(x for x in (a.citation, a.renal_adjustment_citation if renal.rule else "",
                                                  renal.citation) if x), "source": a.source,
                "evidence": evidence,
            })
    rows += _car_rows(protocol, patient, options)
    if rows and all(r["status"] == "not_evaluable" for r in rows):
        raise DosingError(f"no dose of {protocol.id} can be computed: "
                          + "; ".join(dict.fromkeys(f"{r['agent']} needs {r['needs']}" for r in rows)))
    df = pl.DataFrame(rows, schema=DOSE_PLAN_SCHEMA, orient="row") if rows else pl.DataFrame(schema=DOSE_PLAN_SCHEMA)
    # float artefacts of the products (30 x 1.84 x 0.8 = 44.160000000000004) off, as the study reader does
    df = df.with_columns(pl.col(c).round_sig_figs(SIG_DIGITS) for c, t in df.schema.items() if t == pl.Float64)
    return df.sort(["day", pl.col("kind") != "lymphodepletion", "agent"], maintain_order=True)


def _car_band(protocol, w: float | None):
    """The CAR-T dose band for weight ``w``; without a weight, the protocol's only band when it
    holds for any weight (else None: the band depends on the weight)."""
    car = protocol.car_t
    if w is None:
        only = car.bands[0] if len(car.bands) == 1 else None
        return only if only is not None and only.above_kg is None and only.up_to_kg is None else None
    band = car.band_for(w)
    if band is None:
        raise DosingError(f"{protocol.id}: no CAR-T dose band covers a weight of {w:g} kg "
                          f"(bands: {'; '.join(b.describe() for b in car.bands)})")
    return band


def _car_rows(protocol, patient: Patient, options: DoseOptions) -> list[dict[str, Any]]:
    car = protocol.car_t
    w = patient.weight_kg
    band = _car_band(protocol, w)
    _check_car_options(protocol, band, options)
    n = len(car.infusions)
    # the weight (per-kg dose, or the band chosen by weight) comes from the subject's row
    by_weight = any(b.unit == "cells/kg" or b.above_kg is not None or b.up_to_kg is not None for b in car.bands)
    common = {"agent": car.agent, "kind": "car_t", "unit": "cells", "route": "IV", "rule": f"{protocol.id}.car_t",
              "source": car.source,
              "evidence": [patient.subject_ref] if by_weight and patient.subject_ref and w is not None else []}
    if band is None or (band.unit == "cells/kg" and w is None):
        return _car_rows_without_weight(car, band, options, common)
    per = band.unit
    chosen = options.car_dose if options.car_dose is not None else band.target
    live = (options.product_concentration * options.viability * options.car_positive
            if options.product_concentration is not None else None)

    def absolute(x: float) -> float:
        return x * w if per == "cells/kg" else x

    cap = band.max_total_cells
    lo, hi = (None if band.min is None else absolute(band.min)), absolute(band.max)
    if cap is not None:
        lo, hi = (None if lo is None else min(lo, cap)), min(hi, cap)
    total = None if chosen is None else absolute(chosen)
    adj, factor = None, 1.0
    if total is not None and cap is not None and total > cap:
        adj = (f"capped at the maximum total dose {_fmt(cap)} cells (= {_fmt(cap / w) if per == 'cells/kg' else _fmt(cap)}"
               f" {per}; factor {cap / total:.4g} of the protocol dose)")
        factor = cap / total  # the planned dose is protocol_dose x factor (plan_to_doses, deviations)
        total = cap
    rows = []
    for inf in sorted(car.infusions, key=lambda i: i.day):
        split = f" ({inf.fraction:.0%} of the total)" if n > 1 else ""
        if total is None:
            dose = None
            basis = (f"range {'up to ' if band.min is None else _fmt(band.min) + '-'}{_fmt(band.max)} {per}" + (f" x {w:g} kg" if per == "cells/kg" else "")
                     + f"{split}; no protocol target: choose the dose (--car-dose)")
        else:
            dose = total * inf.fraction
            if per == "cells/kg":
                basis = f"{_fmt(chosen * inf.fraction)} cells/kg{split} x {w:g} kg"
            else:
                basis = f"{_fmt(chosen * inf.fraction)} cells flat{split}"
            if adj:
                basis += f"; {adj}"
        vol = None if (dose is None or live is None) else dose / live
        if vol is not None:
            basis += (f"; volume = {_fmt(dose)} / ({_fmt(options.product_concentration)} cells/mL"
                      f" x viability {options.viability:g} x CAR+ {options.car_positive:g}) = {vol:.1f} mL")
        rows.append({
            **common, "day": inf.day, "dose": dose, "status": "to_choose" if dose is None else "computed", "needs": None,
            "basis": basis, "protocol_dose": None if chosen is None else chosen * inf.fraction,
            "protocol_unit": per, "adjustment": adj, "factor": factor,
            "dose_min": None if lo is None else lo * inf.fraction, "dose_max": hi * inf.fraction, "volume_ml": vol,
            "citation": band.citation,
        })
    return rows


def _car_rows_without_weight(car, band, options: DoseOptions, common: dict[str, Any]) -> list[dict[str, Any]]:
    """The CAR-T rows when the weight is missing and needed (a per-kg dose, or a band chosen by
    weight): not evaluable, with the per-kg dose of the protocol when the band is known."""
    why = "the dose band depends on the weight" if band is None else "a dose in cells/kg needs the weight"
    chosen = None if band is None else (options.car_dose if options.car_dose is not None else band.target)
    n = len(car.infusions)
    rows = []
    for inf in sorted(car.infusions, key=lambda i: i.day):
        split = f" ({inf.fraction:.0%} of the total)" if n > 1 else ""
        per_inf = None if chosen is None else chosen * inf.fraction
        basis = f"{_fmt(per_inf)} {band.unit}{split} x weight" if per_inf is not None else "CAR-T dose"
        rows.append({**common, "day": inf.day, "dose": None, "status": "not_evaluable", "needs": "weight",
                     "basis": basis + " — NOT EVALUABLE (needs weight)", "protocol_dose": per_inf,
                     "protocol_unit": None if band is None else band.unit,
                     "adjustment": f"NOT EVALUABLE: {why} (not given)", "factor": None,
                     "citation": "; ".join(dict.fromkeys(b.citation for b in ([band] if band else car.bands)))})
    return rows


def _check_car_options(protocol, band, options: DoseOptions) -> None:
    """Refuse a chosen CAR-T dose outside the band (when the band is known) and product inputs that
    are not positive numbers or fractions."""
    if band is not None and options.car_dose is not None:
        per = band.unit
        v = options.car_dose
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise DosingError(f"CAR-T dose must be a positive finite number of {per} (got {v!r})")
        if v > band.max:
            raise DosingError(f"CAR-T dose {_fmt(v)} {per} is above the protocol's maximum {_fmt(band.max)} {per} "
                              f"({protocol.id}, weight band {band.describe()}; {band.citation})")
        if band.min is not None and v < band.min:
            raise DosingError(f"CAR-T dose {_fmt(v)} {per} is below the protocol's minimum {_fmt(band.min)} {per} "
                              f"({protocol.id}, weight band {band.describe()}; {band.citation})")
    for name, v in (("product concentration", options.product_concentration),
                    ("viability", options.viability), ("CAR-positive fraction", options.car_positive)):
        if v is not None and (not isinstance(v, (int, float)) or math.isnan(v) or v <= 0):
            raise DosingError(f"{name} must be a positive number (got {v!r})")
    for name, v in (("viability", options.viability), ("CAR-positive fraction", options.car_positive)):
        if v > 1:
            raise DosingError(f"{name} is a fraction between 0 and 1 (got {v:g}; write 0.92 for 92%)")


def plan_to_doses(plan: pl.DataFrame, subject_id: str, source: str = "synthetic") -> pl.DataFrame:
    """A dose plan as canonical ``doses`` rows (:data:`cartlab.model.DOSES`) on the protocol's
    basis (mg/m2, mg/kg, mg, cells/kg, cells), so a simulated (digital-twin) patient carries the
    protocol's administrations like a real one: the dose planned, ``protocol_dose x factor`` (the
    factor holds the renal adjustment and any cap: Yescarta 2e6/kg at 130 kg is capped to 2e8 cells
    = 1.538e6 cells/kg). Withheld and not-evaluable doses are left out; ``source`` labels the rows
    (``synthetic`` by default)."""
    from cartlab.model import conform

    given = plan.filter(pl.col("dose").is_not_null() & pl.col("protocol_dose").is_not_null())
    df = given.select(
        pl.lit(subject_id).alias("subject_id"),
        pl.col("day"),
        pl.col("agent"),
        (pl.col("protocol_dose") * pl.col("factor").fill_null(1.0)).alias("dose"),
        pl.col("protocol_unit").alias("unit"),
        pl.lit(source).alias("source"),
        pl.concat_str(pl.lit("planned by "), pl.col("rule"), pl.lit(": "), pl.col("basis")).alias("source_note"),
    ).with_columns(pl.col("dose").alias("orig_dose"), pl.col("unit").alias("orig_unit"))
    return conform(df, "doses")
