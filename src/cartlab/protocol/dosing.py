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
from cartlab.protocol.renal import (
    MEASURES,
    SAME_AS_ADULTS,
    crcl_weight,
    paediatric_setting,
    renal_adjustment,
    renal_for_agent,
    renal_rules,
    renal_value_text,
)

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
    "bsa_text",
    "DOSE_PLAN_SCHEMA",
]


class DosingError(InputError):
    """An input cartlab refuses to dose from (implausible, missing, outside the protocol)."""


def _table(name: str) -> dict[str, Any]:
    path = resources.files("cartlab.protocol").joinpath("criteria", f"{name}.yaml")
    return load_yaml(path.read_text(encoding="utf-8"))


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
    # review 39 (cartlab.protocol.dose_inputs): every value the screening creatinine may be, as
    # (value, unit, row, label) - a censored result's bound and the far end of its range, or several
    # untimed values of one day; the renal rules must agree over them. Empty: the one value above.
    creatinine_candidates: tuple = ()
    creatinine_reason: str | None = None
    creatinine_censor: str | None = None  # "<" / ">" when the creatinine is a censored bound
    weight_source: str | None = None  # where weight / height come from (subjects.csv, or an observation)
    height_source: str | None = None
    input_warnings: tuple = ()  # e.g. subjects.csv and the latest WEIGHT observation differ by > 5 %


@dataclass(frozen=True)
class DoseOptions:
    """Choices behind a dose plan (defaults follow the protocol).

    * ``bsa_method``: ``mosteller`` | ``dubois`` | ``haycock``; ``None`` = the protocol's (Mosteller
      unless it says otherwise).
    * ``bsa_decimals``: BSA is rounded to this many decimals before dosing, as printed on the sheet
      (2 by default, 2-4 allowed: ``bsa_rounding`` in formulas.yaml; ``None`` = unrounded). Ties
      round half up on the decimal value (1.845 -> 1.85; :func:`round_half_up`).
    * ``renal_function``: ``crcl_cockcroft_gault`` (absolute mL/min) | ``crcl_cockcroft_gault_bsa``
      (CrCl x 1.73 / BSA, mL/min/1.73 m2, the unit of the generic fludarabine label's bands; the
      unrounded, uncapped BSA of ``bsa_method``) | ``egfr_ckd_epi_2021`` | ``egfr_bedside_schwartz``;
      used at every age when given. ``None`` = under 18 years the paediatric measure, else the
      protocol's, else each rule's own (``crcl_cockcroft_gault`` for both fludarabine rules).
    * ``paediatric_renal_function``: the measure of renal rules under 18 years when
      ``renal_function`` is not given; ``None`` = the protocol's, else ``egfr_bedside_schwartz``
      (renal_adjustment.yaml ``paediatric_measure``, convention); ``same_as_adults`` = the adult
      measure (cartlab before 2026-12). Unknown age: the renal rule is not evaluable (needs age).
    * ``crcl_weight``: the weight in Cockcroft-Gault: ``actual`` | ``ideal`` (the lesser of actual and
      Devine IBW) | ``adjusted`` (IBW + 0.4 x (actual - IBW) above 1.3 x IBW, else the lesser of
      actual and IBW; formulas.yaml); ``None`` = the protocol's (``actual`` by default, as in the
      1976 paper). Devine is defined from 152.4 cm (60 in); below it the actual weight is used.
      ``ideal``/``adjusted`` with ``crcl_cockcroft_gault_bsa`` is refused (mixed normalisation).
    * ``apply_renal_adjustment``: apply the protocol's renal rules (default True).
    * ``car_dose``: the CAR-T total dose in the band's unit (cells/kg or cells), overriding the
      protocol's target; must lie within the band's range.
    * ``product_concentration``: total nucleated cells per mL of the product bag; with
      ``viability`` (viable fraction of those cells) and ``car_positive`` (CAR-positive fraction of
      the viable nucleated cells, not of the T cells) it gives the infusion volume:
      dose / (concentration x viability x car_positive).
    * ``plausibility``: overrides of the input limits, e.g. ``{"weight_kg": {"low": 1, "high": 350}}``.
    """

    bsa_method: str | None = None
    bsa_decimals: int | None = 2
    renal_function: str | None = None
    paediatric_renal_function: str | None = None
    crcl_weight: str | None = None
    apply_renal_adjustment: bool = True
    car_dose: float | None = None
    product_concentration: float | None = None
    viability: float = 1.0
    car_positive: float = 1.0
    plausibility: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from cartlab.protocol.formulas import bsa_rounding

        d, r = self.bsa_decimals, bsa_rounding()
        if d is not None and (isinstance(d, bool) or not isinstance(d, int)
                              or not r["min_decimals"] <= d <= r["max_decimals"]):
            raise DosingError(f"bsa_decimals (--bsa-decimals) must be an integer from {r['min_decimals']} to "
                              f"{r['max_decimals']} (got {d!r}): BSA 1.51 m2 to 0 decimals is 2 m2, +32% on "
                              "every per-m2 dose; use --bsa-unrounded (bsa_decimals=None) for no rounding")
        # checked here, before any body-size arithmetic reads them (a child's dose used to fail with a KeyError)
        if self.renal_function is not None and self.renal_function not in MEASURES:
            raise DosingError(f"unknown renal function measure {self.renal_function!r} (--renal-function); "
                              f"choose one of {', '.join(MEASURES)}")
        p = self.paediatric_renal_function
        if p is not None and p not in MEASURES and p != SAME_AS_ADULTS:
            raise DosingError(f"unknown paediatric renal function {p!r} (--paediatric-renal-function); choose one "
                              f"of {', '.join(MEASURES)} or {SAME_AS_ADULTS}")


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
    # the inputs the dose used (review 39 B4): body size, and for a renal rule the measure, its value,
    # the band text (also at full dose) and the creatinine (mg/dL) with its study day
    "weight_kg": pl.Float64,
    "height_cm": pl.Float64,
    "bsa_m2": pl.Float64,  # as dosed (rounded half up, or capped)
    "bsa_raw_m2": pl.Float64,
    "bsa_method": pl.String,
    "renal_measure": pl.String,
    "renal_value": pl.Float64,
    "renal_basis": pl.String,
    "creatinine_mg_dl": pl.Float64,
    "creatinine_day": pl.Float64,
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


def bsa_text(size: dict[str, Any]) -> str:
    """The BSA dosed, printed with the digits it was dosed with: ``bsa_decimals`` decimals (the
    value is already rounded half up to them, or is the cap), 4 when unrounded ("1.845" for
    ``--bsa-decimals 3``, so that dose / BSA = the dose per m2 on the sheet)."""
    d = size.get("bsa_decimals", 2)
    return f"{size['bsa_m2']:.{4 if d is None else d}f}"


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
        "bsa_decimals": options.bsa_decimals,
        "bsa_capped": capped, "bsa_cap_m2": cap, "bsa_formula": info["expression"],
        "bsa_citation": info["citation"], "bsa_missing": bsa_missing,
        "bsa_note": _needs(bsa_missing) if bsa_missing else None,
        "bmi_kg_m2": None if bsa_missing else w / (h / 100.0) ** 2,
    }
    creat = "creatinine" + (f" ({patient.creatinine_note})" if patient.creatinine_note else "")
    have = {"age": patient.age_years, "sex": patient.sex, "creatinine": scr, "weight": w}
    crcl_missing = [n for n in ("age", "sex", "creatinine", "weight") if have[n] is None]
    egfr_missing = [n for n in ("age", "sex", "creatinine") if have[n] is None]
    schwartz_missing = [n for n, v in (("creatinine", scr), ("height", h)) if v is None]

    def note(missing: list[str]) -> str | None:
        return _needs([creat if n == "creatinine" else n for n in missing]) if missing else None

    age, sex = patient.age_years, patient.sex
    basis = options.crcl_weight or (protocol.dosing.crcl_weight if protocol is not None else "actual")
    if basis not in ("actual", "ideal", "adjusted"):
        raise DosingError(f"unknown Cockcroft-Gault weight {basis!r}; choose actual, ideal or adjusted")
    if basis != "actual":
        crcl_missing += [n for n in ("height",) if h is None]
    cw, cw_note = crcl_weight(basis, w, h, sex) if not crcl_missing else (None, None)
    crcl = None if crcl_missing else round_sig(float(fx.crcl_cockcroft_gault(age, cw, scr, sex)))
    bsa_crcl_missing = crcl_missing + [n for n in bsa_missing if n not in crcl_missing]
    out.update(
        crcl_ml_min=crcl,
        crcl_weight=basis, crcl_weight_kg=cw, crcl_weight_note=cw_note,
        # CrCl normalised to 1.73 m2 by the unrounded, uncapped BSA (the renal rule's unit)
        crcl_ml_min_173=None if bsa_crcl_missing else round_sig(crcl * 1.73 / raw),
        egfr_ml_min_173=None if egfr_missing else round_sig(float(fx.egfr_ckd_epi_2021(scr, age, sex))),
        # bedside Schwartz (children): height and creatinine, no age or sex term
        egfr_schwartz_ml_min_173=None if schwartz_missing else round_sig(float(fx.egfr_bedside_schwartz(h, scr))),
        crcl_missing=crcl_missing, egfr_missing=egfr_missing, crcl_173_missing=bsa_crcl_missing,
        egfr_schwartz_missing=schwartz_missing, egfr_schwartz_note=note(schwartz_missing),
        renal_note=note(crcl_missing), egfr_note=note(egfr_missing), crcl_173_note=note(bsa_crcl_missing))
    out["renal_caveat"] = _renal_caveat(age, paediatric_setting(protocol, options), options)
    cg, ckd, sz = (fx.formula_info(n) for n in ("cockcroft_gault", "ckd_epi_2021", "bedside_schwartz"))
    out.update(crcl_formula=cg["expression"], crcl_citation=cg["citation"],
               egfr_formula=ckd["expression"], egfr_citation=ckd["citation"],
               egfr_schwartz_formula=sz["expression"], egfr_schwartz_citation=sz["citation"])
    return out


def _renal_caveat(age: float | None, paediatric: str, options: DoseOptions) -> str | None:
    """What the plan should say about renal estimates for a child (None for an adult)."""
    from cartlab.protocol import formulas as fx
    from cartlab.protocol.renal import paediatric_measure_rule

    below = paediatric_measure_rule()["age_below_years"]
    if age is None or age >= below:
        return None
    text = f"Cockcroft-Gault and CKD-EPI 2021 were derived in adults; under {below:g} years "
    if options.renal_function is not None:
        text += f"the renal rules use {MEASURES[options.renal_function][3]} (--renal-function)"
    elif paediatric == SAME_AS_ADULTS:
        text += "the renal rules use the adult measure (--paediatric-renal-function same_as_adults)"
    else:
        text += f"the renal rules use {MEASURES[paediatric][3]} by default (--paediatric-renal-function)"
    low = fx.formula_entry("bedside_schwartz").get("population", {}).get("age_from_years")
    if low is not None and age < low:
        text += f"; bedside Schwartz is validated from {low:g} year (NKF: children 1-18 years)"
    return text


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
    if patient.creatinine_candidates:  # censored or several untimed values (review 39 A1, B9)
        from cartlab.protocol.dose_inputs import plan_over_candidates

        return plan_over_candidates(protocol, patient, options, lambda p, o: dose_plan(protocol, p, o))
    size = size if size is not None else body_size(patient, protocol, options)
    rows: list[dict[str, Any]] = []
    bsa_txt = (f"BSA ({size['bsa_note']})" if size["bsa_m2"] is None else
               f"BSA {bsa_text(size)} m2 ({size['bsa_method'].capitalize()}" + (
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
        renal = renal_for_agent(a, size, protocol, options)
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
        evidence = [e for x in evidence for e in x.split(", ") for e in e.split("; ")]
        if uses_size:  # body size from an observation, or subjects.csv and an observation disagreeing (review 39 B1)
            notes = [f"{n} from {src}" for n, src in (("weight", patient.weight_source), ("height", patient.height_source))
                     if src and not src.startswith("subjects.csv") and (n == "weight" or a.unit == "mg/m2")]
            adj = "; ".join(x for x in (adj, *notes, *patient.input_warnings) if x)
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
                "evidence": evidence, **_inputs(a, size, renal, patient),
            })
    rows += _car_rows(protocol, patient, options)
    if rows and all(r["status"] == "not_evaluable" for r in rows):
        raise DosingError(f"no dose of {protocol.id} can be computed: "
                          + "; ".join(dict.fromkeys(f"{r['agent']} needs {r['needs']}" for r in rows)))
    df = pl.DataFrame(rows, schema=DOSE_PLAN_SCHEMA, orient="row") if rows else pl.DataFrame(schema=DOSE_PLAN_SCHEMA)
    # float artefacts of the products (30 x 1.84 x 0.8 = 44.160000000000004) off, as the study reader does
    df = df.with_columns(pl.col(c).round_sig_figs(SIG_DIGITS) for c, t in df.schema.items() if t == pl.Float64)
    return df.sort(["day", pl.col("kind") != "lymphodepletion", "agent"], maintain_order=True)


def _inputs(agent, size: dict[str, Any], renal, patient: Patient) -> dict[str, Any]:
    """The dose-plan input columns of a lymphodepletion row (review 39 B4)."""
    out: dict[str, Any] = {}
    if agent.unit in ("mg/m2", "mg/kg") or renal.measure == "crcl_cockcroft_gault":
        out.update(weight_kg=size["weight_kg"])
    if agent.unit == "mg/m2":
        out.update(height_cm=size["height_cm"], bsa_m2=size["bsa_m2"], bsa_raw_m2=size["bsa_raw_m2"],
                   bsa_method=size["bsa_method"])
    if renal.rule:
        out.update(renal_measure=renal.measure, renal_value=renal.value, renal_basis=renal.basis or renal.text or None,
                   creatinine_mg_dl=size.get("creatinine_mg_dl"), creatinine_day=size.get("creatinine_day"))
        if patient.creatinine_censor and renal.value is not None:  # a bound: the measure is beyond it
            op = ">" if patient.creatinine_censor.startswith("<") else "<"
            out["renal_basis"] = (f"creatinine {patient.creatinine_censor}{patient.creatinine:g} "
                                  f"{patient.creatinine_unit}: {out['renal_basis']}").replace(
                f" {renal_value_text(renal.value, [agent.renal_adjustment])} ",
                f" {op} {renal_value_text(renal.value, [agent.renal_adjustment])} ", 1)
    return out


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
    rule, source = _car_rule(protocol, options)
    common = {"agent": car.agent, "kind": "car_t", "unit": "cells", "route": "IV", "rule": rule, "source": source,
              "evidence": (patient.subject_ref.split("; ") if by_weight and patient.subject_ref and w is not None
                           else []),
              "weight_kg": w if by_weight else None}
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
            if source == "reconstructed" and options.car_dose is None:
                basis += _RECONSTRUCTED_CAR if car.target_source == "reconstructed" else ""
        if n > 1 and car.split_source == "reconstructed":
            basis += " (split: reconstructed, the index patient's)"
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


_RECONSTRUCTED_CAR = " (target: reconstructed, the index patient's dose level, not a protocol dose; --car-dose)"


def _car_rule(protocol, options: DoseOptions) -> tuple[str, str]:
    """``(rule, source)`` of the CAR-T rows: a target or split the protocol does not state
    (``target_source`` / ``split_source: reconstructed``, e.g. NCT04762485's index patient's level)
    adds ``<id>.car_t.range`` / ``<id>.car_t.split`` and makes the source ``reconstructed`` (review
    39 B3); a chosen ``car_dose`` replaces a reconstructed target."""
    car = protocol.car_t
    rules = [f"{protocol.id}.car_t"]
    recon = car.source == "reconstructed"
    if car.target_source == "reconstructed" and options.car_dose is None:
        rules.append(f"{protocol.id}.car_t.range")
        recon = True
    if car.split_source == "reconstructed" and len(car.infusions) > 1:
        rules.append(f"{protocol.id}.car_t.split")
        recon = True
    return "; ".join(rules), ("reconstructed" if recon else car.source)


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
    (``synthetic`` by default).

    A per-m2 dose on a capped BSA (protocol ``bsa_cap_m2``; the basis reads "BSA 2.00 m2
    (Mosteller, capped at 2 m2)") is written in absolute ``mg``: per m2 it is per *capped* m2, and a
    reader converting with the subject's own BSA would give more than was planned (review 35 B4)."""
    from cartlab.model import conform

    given = plan.filter(pl.col("dose").is_not_null() & pl.col("protocol_dose").is_not_null())
    bsa_capped = (pl.col("protocol_unit") == "mg/m2") & pl.col("basis").str.contains(r"BSA [0-9.]+ m2 \([^)]*, capped at ")
    df = given.select(
        pl.lit(subject_id).alias("subject_id"),
        pl.col("day"),
        pl.col("agent"),
        pl.when(bsa_capped).then(pl.col("dose"))
        .otherwise(pl.col("protocol_dose") * pl.col("factor").fill_null(1.0)).alias("dose"),
        pl.when(bsa_capped).then(pl.lit("mg")).otherwise(pl.col("protocol_unit")).alias("unit"),
        pl.lit(source).alias("source"),
        pl.concat_str(pl.lit("planned by "), pl.col("rule"), pl.lit(": "), pl.col("basis")).alias("source_note"),
    ).with_columns(pl.col("dose").alias("orig_dose"), pl.col("unit").alias("orig_unit"))
    return conform(df, "doses")
