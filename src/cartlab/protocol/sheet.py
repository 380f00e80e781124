"""A printable dosing sheet (HTML or PDF) with every input, formula, rule and citation shown.

:func:`sheet_context` gathers what the sheet shows (pure); :func:`dosing_sheet_html` renders the
self-contained HTML page (jinja2, autoescaped, inline CSS, print-friendly) and
:func:`dosing_sheet_pdf` the same content as a PDF (fpdf2, no system libraries).
:func:`write_dosing_sheet` picks the format from the file extension.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from pathlib import Path
from typing import Any

import polars as pl
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from cartlab import __version__

__all__ = ["sheet_context", "dosing_sheet_html", "dosing_sheet_pdf", "write_dosing_sheet", "format_dose", "dose_text"]


#: printed precision of a mg dose (decimals); ties round half up on the decimal value (review 39 B2)
DOSE_DECIMALS = 1
DOSE_ROUNDING = "doses printed to 0.1 mg, ties half up (decimal arithmetic, as the BSA); the CSV keeps the unrounded dose"


def format_dose(dose: float | None, unit: str) -> str:
    """A dose as printed: mg to :data:`DOSE_DECIMALS` decimal, ties half up on the decimal value
    (:func:`~cartlab.protocol.dosing.round_half_up`: 20.25 -> 20.3, where binary ``f"{:.1f}"`` gives
    20.2), cells as a.bc x10^n."""
    from cartlab.protocol.dosing import round_half_up

    if dose is None or (isinstance(dose, float) and math.isnan(dose)):
        return "—"
    if unit == "cells":
        if dose == 0:
            return "0"
        e = int(math.floor(math.log10(abs(dose))))
        return f"{dose / 10 ** e:.2f} x10^{e}"
    return f"{round_half_up(dose, DOSE_DECIMALS):.{DOSE_DECIMALS}f}"


def dose_text(row: dict[str, Any]) -> str:
    """A dose-plan row's dose as printed: the dose (:func:`format_dose`), or what stands in its
    place: ``WITHHOLD``, ``not evaluable (needs ...)`` naming the missing inputs, ``choose``."""
    status = row.get("status")
    if status == "withhold":
        return "WITHHOLD"
    if status == "not_evaluable":
        return f"not evaluable (needs {row.get('needs') or 'inputs'})"
    if status == "to_choose":
        return "choose"
    return format_dose(row["dose"], row["unit"])


def sheet_context(protocol, plan: pl.DataFrame, size: dict[str, Any], options, patient,
                  input_note: str | None = None) -> dict[str, Any]:
    """Everything the sheet prints: patient inputs, derived body size with formulas substituted,
    the renal rule used, the administrations, warnings and citations. ``input_note`` is printed
    with the inputs (e.g. that a demo patient's weight and height are reconstructed)."""
    from cartlab.protocol.dosing import bsa_text, renal_value_text

    w, h = size["weight_kg"], size["height_cm"]
    if size["bsa_m2"] is not None:
        bsa_sub = _substitute(size["bsa_formula"], weight_kg=f"{w:g}", height_cm=f"{h:g}")
        derived = [{
            "name": f"Body-surface area ({size['bsa_method'].capitalize()})",
            "formula": size["bsa_formula"],
            "substituted": f"{bsa_sub} = {size['bsa_raw_m2']:.4f} m2"
                           + (f", rounded half up to {size['bsa_m2']:.{options.bsa_decimals}f} m2"
                              if options.bsa_decimals is not None and not size["bsa_capped"] else "")
                           + (", unrounded" if options.bsa_decimals is None else "")
                           + (f", capped at {size['bsa_cap_m2']:g} m2" if size["bsa_capped"] else ""),
            "value": f"{bsa_text(size)} m2",
            "citation": size["bsa_citation"],
        }, {
            "name": "Body-mass index", "formula": "weight_kg / (height_cm / 100)^2",
            "substituted": f"{w:g} / ({h:g}/100)^2", "value": f"{size['bmi_kg_m2']:.1f} kg/m2", "citation": "",
        }]
    else:
        derived = [{"name": f"Body-surface area ({size['bsa_method'].capitalize()})", "formula": size["bsa_formula"],
                    "substituted": size["bsa_note"], "value": "not computed", "citation": size["bsa_citation"]}]
    scr = size["creatinine_mg_dl"]
    rules = [a.renal_adjustment for a in protocol.lymphodepletion if a.renal_adjustment]
    if size.get("crcl_ml_min") is not None:
        cw = size.get("crcl_weight_kg", w)
        derived.append({
            "name": f"Creatinine clearance (Cockcroft-Gault, {size.get('crcl_weight', 'actual')} weight)",
            "formula": size["crcl_formula"],
            "substituted": _substitute(size["crcl_formula"], age_years=f"{size['age_years']:g}", weight_kg=f"{cw:.4g}",
                                       creatinine_mg_dl=f"{scr:.3f}") + f"; sex {size['sex']}"
                           + (f"; {size['crcl_weight_note']}" if size.get("crcl_weight_note") else ""),
            "value": f"{renal_value_text(size['crcl_ml_min'], rules)} mL/min", "citation": size["crcl_citation"],
        })
        if size.get("crcl_ml_min_173") is not None:
            derived.append({
                "name": "Creatinine clearance per 1.73 m2", "formula": "CrCl x 1.73 / BSA (unrounded)",
                "substituted": f"{size['crcl_ml_min']:.4g} x 1.73 / {size['bsa_raw_m2']:.4f}",
                "value": f"{renal_value_text(size['crcl_ml_min_173'], rules)} mL/min/1.73 m2", "citation": "",
            })
    else:
        derived.append({"name": "Creatinine clearance (Cockcroft-Gault)", "formula": size["crcl_formula"],
                        "substituted": size.get("renal_note") or "", "value": "not computed", "citation": ""})
    if size.get("egfr_ml_min_173") is not None:
        derived.append({
            "name": "eGFR (CKD-EPI 2021)", "formula": size["egfr_formula"],
            "substituted": f"Scr {scr:.3f} mg/dL, age {size['age_years']:g}, sex {size['sex']}",
            # with enough decimals to show its band (review 41 F4: 70.03 is not "70.0")
            "value": f"{renal_value_text(size['egfr_ml_min_173'], rules)} mL/min/1.73 m2",
            "citation": size["egfr_citation"],
        })
    else:
        derived.append({"name": "eGFR (CKD-EPI 2021)", "formula": size["egfr_formula"],
                        "substituted": size.get("egfr_note") or "", "value": "not computed", "citation": ""})
    paed = size.get("renal_caveat") is not None or options.renal_function == "egfr_bedside_schwartz"
    if paed and size.get("egfr_schwartz_ml_min_173") is not None:
        derived.append({
            "name": "eGFR (bedside Schwartz)", "formula": size["egfr_schwartz_formula"],
            "substituted": _substitute(size["egfr_schwartz_formula"], height_cm=f"{h:g}", creatinine_mg_dl=f"{scr:.3f}"),
            "value": renal_value_text(size["egfr_schwartz_ml_min_173"],
                                      [a.renal_adjustment for a in protocol.lymphodepletion if a.renal_adjustment])
                     + " mL/min/1.73 m2", "citation": size["egfr_schwartz_citation"],
        })
    inputs = [("Weight", "—" if w is None else f"{w:g} kg"), ("Height", "—" if h is None else f"{h:g} cm"),
              ("Age", "—" if size["age_years"] is None else f"{size['age_years']:g} years"),
              ("Sex", size["sex"] or "—")]
    if size.get("creatinine") is not None:
        conv = (f" (= {size['creatinine_mg_dl']:.3f} mg/dL)" if size["creatinine_unit"] != "mg/dL" else "")
        day = f", day {size['creatinine_day']:g}" if size.get("creatinine_day") is not None else ""
        censor = getattr(patient, "creatinine_censor", None) or ""  # a censored result's bound ("<20")
        reason = f" ({patient.creatinine_reason})" if getattr(patient, "creatinine_reason", None) else ""
        inputs.append(("Serum creatinine",
                       f"{censor}{size['creatinine']:g} {size['creatinine_unit']}{conv}{day}{reason}"))
    else:
        inputs.append(("Serum creatinine", "not given"))
    for what in ("weight", "height"):  # body size from an observation (review 39 B1)
        src = getattr(patient, f"{what}_source", None)
        if src and not src.startswith("subjects.csv"):
            inputs.append((f"{what.capitalize()} source", src))
    warnings_in = list(getattr(patient, "input_warnings", ()) or ())
    if options.product_concentration is not None:
        inputs.append(("Product concentration", f"{options.product_concentration:.4g} cells/mL"))
        inputs.append(("Viability", f"{options.viability:g}"))
        inputs.append(("CAR-positive fraction", f"{options.car_positive:g}"))
    if options.car_dose is not None:
        inputs.append(("Chosen CAR-T dose", f"{options.car_dose:.4g} (band unit)"))
    rows = []
    warnings = warnings_in
    for r in plan.iter_rows(named=True):
        rows.append({**r, "dose_text": dose_text(r),
                     "volume_text": "" if r["volume_ml"] is None else f"{r['volume_ml']:.1f} mL",
                     "reconstructed": r["source"] == "reconstructed"})
        if r["adjustment"] and r["adjustment"] not in warnings:
            warnings.append(r["adjustment"])
        msg = None
        if r["status"] == "withhold":
            msg = f"WITHHOLD {r['agent']}: {r['adjustment']}"
        elif r["status"] == "not_evaluable":
            msg = f"{r['agent']}: dose not evaluable, needs {r['needs']}"
        elif r["status"] == "to_choose":
            msg = "CAR-T dose: the protocol gives a range without a target; choose the dose within the range"
        if msg and msg not in warnings:
            warnings.append(msg)
    if size.get("renal_caveat") and (size.get("crcl_ml_min") is not None or size.get("egfr_ml_min_173") is not None):
        warnings.append(size["renal_caveat"])
    citations = sorted({c for c in plan["citation"].to_list() if c})
    return {
        "protocol": protocol, "inputs": inputs, "derived": derived, "rows": rows, "warnings": warnings,
        "citations": citations, "subject_id": patient.subject_id, "input_note": input_note, "version": __version__,
        "generated": _dt.date.today().isoformat(),
        "reconstructed": any(r["reconstructed"] for r in rows) or protocol.source == "reconstructed",
        "options": {
            "BSA method": size["bsa_method"],
            "BSA rounding": "none" if options.bsa_decimals is None else f"{options.bsa_decimals} decimals, ties half up",
            "Cockcroft-Gault weight": size.get("crcl_weight", "actual"),
            "Renal adjustment": "applied" if options.apply_renal_adjustment else "switched off",
            "Renal measure": _measure_row(plan, size, options, protocol),
            "Dose rounding": DOSE_ROUNDING,
        },
    }


def _measure_row(plan: pl.DataFrame, size: dict[str, Any], options, protocol) -> str:
    """The renal measure the plan's renal rules used for this patient, with its value (review 39 B8):
    under 18 years the paediatric one, named with its rule, not the adult setting."""
    from cartlab.protocol.renal import MEASURES, paediatric_measure_rule, renal_value_text

    if not options.apply_renal_adjustment:
        return "renal adjustment switched off"
    used = (plan.filter(pl.col("renal_measure").is_not_null())
            .select("renal_measure", "renal_value", "rule").unique(subset="renal_measure", maintain_order=True))
    if used.height == 0:
        adult = options.renal_function or protocol.dosing.renal_function or "each rule's own (Cockcroft-Gault CrCl, mL/min)"
        return f"none decided a dose (adults: {adult})"
    out = []
    p_rule = paediatric_measure_rule()
    for r in used.iter_rows(named=True):
        name, unit = MEASURES[r["renal_measure"]][3], MEASURES[r["renal_measure"]][4]
        # with enough decimals to show its band (review 41 F4: CrCl 70.03 is not "70.0")
        rules = [a.renal_adjustment for a in protocol.lymphodepletion if a.renal_adjustment]
        v = "" if r["renal_value"] is None else f" {renal_value_text(r['renal_value'], rules)} {unit}"
        why = (f", age {size['age_years']:g} < {p_rule['age_below_years']:g} years ({p_rule['id']}, convention; "
               "--paediatric-renal-function)" if p_rule["id"] in (r["rule"] or "") else
               (" (--renal-function)" if options.renal_function else " (adults)"))
        out.append(f"{name}{v}{why}")
    return "; ".join(out)


def _substitute(expression: str, **values: str) -> str:
    """The formula text of the criteria table with the patient's numbers in place of its variable
    names (``sqrt(height_cm x weight_kg / 3600)`` -> ``sqrt(160 x 52 / 3600)``)."""
    for name, v in values.items():
        expression = re.sub(rf"\b{re.escape(name)}\b", v, expression)
    return expression


def _env() -> Environment:
    return Environment(loader=PackageLoader("cartlab.protocol", "templates"),
                       autoescape=select_autoescape(["html", "j2"]), undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True)


def dosing_sheet_html(ctx: dict[str, Any]) -> str:
    return _env().get_template("dosing_sheet.html.j2").render(**ctx)


def _latin(text: str) -> str:
    """fpdf2's core fonts are Latin-1: replace the few typographic characters cartlab uses."""
    table = {"—": "-", "–": "-", "×": "x", "≤": "<=", "≥": ">=", "±": "+/-", "µ": "u", "’": "'", "“": '"', "”": '"'}
    for a, b in table.items():
        text = text.replace(a, b)
    return text.encode("latin-1", "replace").decode("latin-1")


def dosing_sheet_pdf(ctx: dict[str, Any]) -> bytes:
    from fpdf import FPDF

    p = ctx["protocol"]
    pdf = FPDF(orientation="L", unit="mm", format="A4")
    pdf.set_auto_page_break(True, margin=12)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 14)
    pdf.multi_cell(0, 7, _latin(f"Dosing sheet - {p.title}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    sub = f"Subject {ctx['subject_id']} - " if ctx["subject_id"] else ""
    pdf.multi_cell(0, 5, _latin(f"{sub}protocol {p.id} version {p.version} ({p.source}); cartlab {ctx['version']}, "
                                f"{ctx['generated']}. Day 0 = first CAR-T infusion."), new_x="LMARGIN", new_y="NEXT")
    if ctx["reconstructed"]:
        pdf.set_text_color(150, 80, 0)
        pdf.multi_cell(0, 5, _latin("Items marked * are reconstructed (not stated by the source)."),
                       new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(0, 0, 0)
    for wmsg in ctx["warnings"]:
        pdf.set_text_color(180, 0, 0)
        pdf.multi_cell(0, 5, _latin(f"! {wmsg}"), new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(0, 0, 0)

    def section(title: str) -> None:
        pdf.ln(2)
        pdf.set_font("Helvetica", "B", 11)
        pdf.cell(0, 6, _latin(title), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 8)

    def table(header: list[str], body: list[list[str]], widths: list[float]) -> None:
        with pdf.table(col_widths=widths, text_align="LEFT", line_height=4.2, first_row_as_headings=True) as t:
            r = t.row()
            for hcell in header:
                r.cell(_latin(hcell))
            for row in body:
                r = t.row()
                for cell in row:
                    r.cell(_latin(str(cell)))

    section("Inputs")
    if ctx["input_note"]:
        pdf.set_text_color(150, 80, 0)
        pdf.multi_cell(0, 5, _latin(ctx["input_note"]), new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(0, 0, 0)
    table(["Input", "Value"], [[a, b] for a, b in ctx["inputs"]], [60, 120])
    section("Derived values and formulas")
    table(["Quantity", "Formula", "With the inputs", "Value", "Source"],
          [[d["name"], d["formula"], d["substituted"], d["value"], d["citation"]] for d in ctx["derived"]],
          [40, 60, 60, 30, 87])
    section("Administrations")
    table(["Day", "Agent", "Dose", "Unit", "Volume", "Basis", "Adjustment", "Rule"],
          [[f"{r['day']:g}", r["agent"] + ("*" if r["reconstructed"] else ""), r["dose_text"], r["unit"],
            r["volume_text"], r["basis"], r["adjustment"] or "", r["rule"]] for r in ctx["rows"]],
          [12, 28, 24, 12, 16, 95, 50, 40])
    section("Options")
    table(["Option", "Value"], [[k, v] for k, v in ctx["options"].items()], [60, 120])
    section("Citations")
    for c in ctx["citations"]:
        pdf.multi_cell(0, 4, _latin(f"- {c}"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    pdf.set_font("Helvetica", "", 9)
    pdf.cell(0, 6, "Calculated by: ______________________   Checked by: ______________________   "
                   "Date: ____________", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def write_dosing_sheet(ctx: dict[str, Any], path: str | Path) -> Path:
    """Write the sheet as HTML (``.html``/``.htm``) or PDF (``.pdf``); atomically (temp + rename)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        data = dosing_sheet_html(ctx).encode("utf-8")
    elif suffix == ".pdf":
        data = dosing_sheet_pdf(ctx)
    else:
        raise ValueError(f"{path}: the dosing sheet is written as .html or .pdf (got {suffix or 'no extension'})")
    from cartlab.io.atomic import atomic_file

    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return path
