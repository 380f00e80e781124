"""Protocols, dosing, eligibility and deviations: protocols, dose, eligibility, deviations."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from cartlab.cli.base import (
    DEFAULT_STORE_PATH,
    CsvDialectOpt,
    StoreOpt,
    _load_study,
    _protocol_or_exit,
    _subject_data,
    _usage,
    app,
    console,
    err,
)
from cartlab.cli.grammar import SUBJECT_HELP, StudyDirAlias, StudyOpt, bundled, deprecated, subject_argument

ProtoSetOpt = Annotated[Optional[list[str]], typer.Option(
    "--set", metavar="protocol.OPTION=VALUE", help="A protocol option as cartlab analyze --protocol takes it, "
    "e.g. --set protocol.max_shift_days=3; repeatable; applied after --options. The command's own flags are "
    "the same options (see below); a flag and a --set that disagree are an error.")]
#: the subject commands' shared parameters (eligibility, deviations)
ProtocolIdOpt = Annotated[str, typer.Option("--protocol", "-p", help="Shipped protocol id or YAML file.")]
EverySubjectArg = subject_argument(SUBJECT_HELP + " None: every subject of --study. The same as --subject SUBJECT.")
CsvOutOpt = Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")]
JsonOutOpt = Annotated[bool, typer.Option(
    "--json", help="Print every row as JSON records (lists such as evidence kept as lists).")]
FormatAlias = Annotated[Optional[str], typer.Option("--format", hidden=True, help="Old name: --format csv = --csv.")]
ProtoOptionsOpt = Annotated[Optional[Path], typer.Option(
    "--options", metavar="FILE", help="A YAML options file as cartlab analyze takes (or an analysis.json, whose "
    "options are replayed): its protocol section is used; protocol options this command has no use for, and "
    "other engines' sections, are ignored.")]



@dataclass(frozen=True)
class Subjects:
    """Which subjects a protocol command reads and how it prints its rows (eligibility, deviations):
    one SUBJECT (from --study or the store) or every subject of --study; a table, --csv or --json."""

    subject: str | None = None
    store: Path = DEFAULT_STORE_PATH
    study: str | None = None
    study_dir: Path | None = None
    as_csv: bool = False
    as_json: bool = False
    fmt: str | None = None
    csv_dialect: str = "standard"

    def data(self):
        """The study data of the SUBJECT, or of every subject of --study."""
        return _one_or_all(self.subject, _study_alias(self.study, self.study_dir), self.store, self.csv_dialect)

    def printed(self, res) -> bool:
        """``res`` printed as JSON records (review 40 B7) or CSV when asked for: True; else False (a table)."""
        if self.as_json:
            _print_json(res)
            return True
        if _as_csv(self.as_csv, self.fmt):
            from cartlab.grading.adam import to_csv_frame

            sys.stdout.write(to_csv_frame(res).write_csv())
            return True
        return False


#: the command's SUBJECT, --study, --store, --csv, --json and --csv-dialect, declared once
subjects_options = bundled(Subjects, (
    ("subject", EverySubjectArg, None), ("store", StoreOpt, DEFAULT_STORE_PATH), ("study", StudyOpt, None),
    ("study_dir", StudyDirAlias, None), ("as_csv", CsvOutOpt, False), ("as_json", JsonOutOpt, False),
    ("fmt", FormatAlias, None), ("csv_dialect", CsvDialectOpt, "standard")))

@app.command("protocols")
def protocols_cmd(
    protocol: Annotated[Optional[str], typer.Argument(
        metavar="PROTOCOL", help="A shipped id or a protocol YAML file to check and show.")] = None,
    json_schema: Annotated[bool, typer.Option("--json-schema", help="Print the protocol file's JSON Schema (for editors).")] = False,
) -> None:
    """List the shipped protocols, or validate one protocol (id or file) and show its schedule.

    [bold]Example[/]: cartlab protocols nct04762485
    """
    from rich.markup import escape

    from cartlab.protocol import shipped_protocols

    if json_schema:
        from cartlab.protocol.schema import Protocol

        sys.stdout.write(json.dumps(Protocol.model_json_schema(by_alias=True), indent=2) + "\n")
        return

    if protocol is None:
        t = Table(header_style="bold")
        t.add_column("id")
        t.add_column("title", overflow="fold")
        for pid, title in shipped_protocols().items():
            t.add_row(pid, escape(title))
        console.print(t)
        console.print("[dim]use an id or a YAML path with --protocol; cartlab protocols ID shows one[/]")
        return
    p = _protocol_or_exit(protocol)
    console.print(f"[green]valid[/] {escape(p.id)} · {escape(p.title)} · version {escape(p.version)} · source {p.source}",
                  soft_wrap=True)
    t = Table(header_style="bold", title="schedule (day 0 = first CAR-T infusion)")
    for c in ("day", "agent", "dose", "basis"):
        t.add_column(c, overflow="fold")
    for r in p.schedule():
        if r["kind"] == "car_t":
            band = "; ".join(
                f"{b.describe()}: " + (f"target {b.target:.3g} " if b.target else "")
                + f"range {'' if b.min is None else f'{b.min:.3g}-'}{b.max:.3g} {b.unit}" for b in p.car_t.bands)
            t.add_row(f"{r['day']:g}", r["agent"], f"{r['fraction']:.0%} of the total", escape(band))
        else:
            t.add_row(f"{r['day']:g}", r["agent"], f"{r['dose']:g}", r["unit"])
    console.print(t)
    console.print(f"eligibility: {len(p.eligibility)} criteria · monitoring: {len(p.monitoring)} schedules"
                  + (f" · ORR = {' + '.join(p.response.orr_categories)}" if p.response else ""))


#: dose's SUBJECT: optional (the patient may be given by --weight, --height ... alone)
DoseSubjectArg = subject_argument(SUBJECT_HELP + " Printed on the sheet; without --weight or --height "
                                  "the patient is read from its data. The same as --subject SUBJECT.")


def _refuse_quantity_subject(positional: str | None, weight: str | None, height: str | None) -> None:
    """dose's positional SUBJECT that is a number, or a pint unit of mass, length or time (the units of
    --weight, --height, --age), is refused (review 41 diff2 1): ``--weight 115 lb`` read "lb" as the
    subject and 115 as kg. Other units ("A", ampere) are left alone: a subject may be called so. A subject
    id that looks like a number or unit is given as --subject."""
    if positional is None or not positional.strip():
        return
    from cartlab.units import ureg

    text, kind, dim = positional.strip(), None, None
    try:
        float(text)
        kind = "a number"
    except ValueError:
        try:
            dim = ureg.parse_units(text).dimensionality
        except Exception:  # noqa: BLE001 - pint: not a unit (any of its parse errors)
            return
        if dim not in (ureg.kilogram.dimensionality, ureg.meter.dimensionality, ureg.second.dimensionality):
            return
        kind = "a unit"
    if dim == ureg.kilogram.dimensionality:
        fix = f"--weight '{weight or 'VALUE'} {text}' (or {weight or 'VALUE'}{text})"
    elif dim == ureg.meter.dimensionality:
        fix = f"--height '{height or 'VALUE'} {text}' (or {height or 'VALUE'}{text})"
    elif kind == "a unit":
        fix = "--age as a number of years, e.g. --age 17"
    else:
        fix = "a value and its unit as one argument: --weight '115 lb', --height '160 cm'"
    raise _usage(f"dose: {text!r} is {kind}, not a subject id: write {fix}",
                 hint=f"a subject whose id is {text!r}: --subject {text}")


def _check_creatinine(creatinine: tuple[float, str] | None) -> None:
    """``--creatinine VALUE UNIT`` whose UNIT is the next flag (``--creatinine 54 --csv``) or a number
    (``--creatinine 54 17``): the unit was left out. One usage error, not a pint lookup of "--csv"
    (review 47 F1); creatinine units differ by a factor of 88.4, so there is no default unit."""
    if creatinine is None:
        return
    value, unit = creatinine
    try:
        float(unit)
        number = True
    except ValueError:
        number = False
    if unit.startswith("-") or number:
        raise _usage(f"--creatinine needs a value and its unit, e.g. --creatinine 54 umol/L (or mg/dL): got "
                     f"'{value:g} {unit}'", hint="umol/L and mg/dL differ by a factor of 88.4: there is no default unit")


def _sex_code(sex: str | None) -> str | None:
    """``--sex`` as the study reader reads subjects.csv's sex (cartlab.io.schema.SEX_SYNONYMS, any letter
    case): female -> F, male -> M (review 47 F10); anything else upper-cased, for dosing's own check."""
    if sex is None:
        return None
    from cartlab.io.schema import SEX_SYNONYMS

    return dict(SEX_SYNONYMS).get(sex.strip().lower(), sex.strip().upper())


@app.command("dose")
def dose_cmd(
    ctx: typer.Context,
    protocol: Annotated[str, typer.Option("--protocol", "-p", help="Shipped protocol id (e.g. nct04762485) or YAML file.")],
    weight: Annotated[Optional[str], typer.Option(
        "--weight", help="Body weight with its unit: 70kg, '154 lb', 70000g (pint); a bare number is kg.")] = None,
    height: Annotated[Optional[str], typer.Option(
        "--height", help="Height with its unit: 168cm, 1.68m, '5 ft 6 in' (pint); a bare number is cm.")] = None,
    age: Annotated[Optional[float], typer.Option("--age", help="Age in years (renal formulas).")] = None,
    sex: Annotated[Optional[str], typer.Option("--sex", metavar="F|M", help="F or M (renal formulas).")] = None,
    creatinine: Annotated[Optional[tuple[float, str]], typer.Option(
        "--creatinine", help="Serum creatinine VALUE UNIT, e.g. --creatinine 0.8 mg/dL or 70 umol/L.")] = None,
    as_csv: CsvOutOpt = False,
    fmt: FormatAlias = None,
    bsa_method: Annotated[Optional[str], typer.Option("--bsa-method", metavar="mosteller|dubois|haycock", help="mosteller (default), dubois or haycock.")] = None,
    renal_function: Annotated[Optional[str], typer.Option(
        "--renal-function", help="crcl_cockcroft_gault (absolute mL/min), crcl_cockcroft_gault_bsa (CrCl x 1.73 / BSA, "
        "mL/min/1.73 m2), egfr_ckd_epi_2021 or egfr_bedside_schwartz, used at every age (default: under 18 years "
        "--paediatric-renal-function, else the protocol's, else the rule's).")] = None,
    paediatric_renal: Annotated[Optional[str], typer.Option(
        "--paediatric-renal-function", help="Measure of renal rules under 18 years when --renal-function is not "
        "given: egfr_bedside_schwartz (0.413 x height / creatinine, mL/min/1.73 m2; default), another measure, or "
        "same_as_adults (the adult measure at every age, cartlab before 2026-12). Unknown age: not evaluable.")] = None,
    crcl_weight: Annotated[Optional[str], typer.Option(
        "--crcl-weight", help="Weight in Cockcroft-Gault: actual, ideal (the lesser of actual and Devine IBW) or "
        "adjusted (IBW + 0.4 x (actual - IBW) above 1.3 x IBW, else the lesser of actual and IBW); default: the "
        "protocol's (actual). Not with --renal-function crcl_cockcroft_gault_bsa.")] = None,
    bsa_decimals: Annotated[Optional[int], typer.Option(
        "--bsa-decimals", min=2, max=4, help="Decimals BSA is rounded to before dosing, 2-4, ties half up (default 2).")] = 2,
    bsa_unrounded: Annotated[bool, typer.Option("--bsa-unrounded", help="Dose from the unrounded BSA.")] = False,
    no_renal: Annotated[bool, typer.Option("--no-renal-adjustment", help="Do not apply renal dose rules.")] = False,
    car_dose: Annotated[Optional[float], typer.Option(
        "--car-dose", help="CAR-T total dose in the protocol's unit (cells/kg or cells); default: the protocol's target.")] = None,
    product_conc: Annotated[Optional[float], typer.Option(
        "--product-conc", help="Product bag concentration, total cells/mL (gives the infusion volume).")] = None,
    viability: Annotated[float, typer.Option("--viability", help="Viable fraction of the product (0-1).")] = 1.0,
    car_positive: Annotated[float, typer.Option(
        "--car-positive", help="CAR-positive fraction of the viable nucleated cells of --product-conc (0-1; not a "
        "fraction of T cells: multiply by the T-cell fraction first).")] = 1.0,
    sheet: Annotated[Optional[Path], typer.Option("--sheet", help="Also write a printable dosing sheet (.html or .pdf).")] = None,
    subject: DoseSubjectArg = None,
    study: StudyOpt = None,
    study_dir: StudyDirAlias = None,
    store: StoreOpt = DEFAULT_STORE_PATH,
    csv_dialect: CsvDialectOpt = "standard",
    set_options: ProtoSetOpt = None,
    options_file: ProtoOptionsOpt = None,
) -> None:
    """Doses of every administration of a protocol for one patient: day, agent, dose, unit, basis.

    The patient is given by --weight/--height (+ --age, --sex, --creatinine), or read from a
    subject's data (SUBJECT or --subject SUBJECT, printed on the sheet: without --weight or --height,
    its weight, height, age, sex and screening creatinine are read in --study or else the store; given
    flags override the data; the
    screening creatinine is the last one from the start of the protocol's screening window up to
    the first lymphodepletion day).

    BSA by Mosteller unless chosen otherwise; fludarabine (or any agent with a renal rule) adjusted
    for creatinine clearance from age, sex, creatinine and weight; CAR-T cells per infusion from
    the weight, and the infusion volume from the product's concentration and viability. Under 18
    years renal rules use the bedside Schwartz eGFR (--paediatric-renal-function). A dose
    whose inputs are missing (a renal rule without creatinine, per-m2 without height, per-kg
    without weight) is "not evaluable", naming them; the others are computed. Implausible inputs
    and doses outside the protocol are refused.

    Protocol options (as analyze's --set protocol.OPTION): --car-dose = protocol.car_dose, --bsa-method =
    protocol.bsa_method, --bsa-decimals = protocol.bsa_decimals, --bsa-unrounded = protocol.bsa_unrounded,
    --renal-function = protocol.renal_function, --paediatric-renal-function =
    protocol.paediatric_renal_function, --crcl-weight = protocol.crcl_weight, --no-renal-adjustment =
    protocol.apply_renal_adjustment=false.

    Printed doses (table, sheet) are rounded half up to 0.1 mg (cells to 3 significant digits); the CSV
    keeps the unrounded dose.

    [bold]Example[/]: cartlab dose --protocol nct04762485 --weight 52kg --height 160cm --age 17 --sex F --creatinine 54 umol/L
    [bold]Example[/]: cartlab dose CD7-AML-001 --protocol nct04762485 --study out/seed_case
    """
    from rich.markup import escape

    from cartlab.protocol import DoseOptions, DosingError, Patient, body_size, dose_plan
    from cartlab.protocol.sheet import dose_text, sheet_context, write_dosing_sheet

    as_csv = _as_csv(as_csv, fmt)
    study = _study_alias(study, study_dir)
    _check_creatinine(creatinine)
    sex = _sex_code(sex)
    _refuse_quantity_subject(ctx.params.get("subject"), weight, height)
    chosen = _protocol_settings(ctx, "dose", set_options, options_file, {
        "car_dose": ("car_dose", f"--car-dose {car_dose}", car_dose),
        **_plan_flags(bsa_method, bsa_decimals, bsa_unrounded, renal_function, paediatric_renal, crcl_weight,
                      no_renal)})
    car_dose, bsa_method, bsa_decimals, bsa_unrounded = (chosen[k] for k in ("car_dose", "bsa_method", "bsa_decimals",
                                                                           "bsa_unrounded"))
    renal_function, paediatric_renal, crcl_weight = (chosen[k] for k in ("renal_function", "paediatric_renal_function",
                                                                          "crcl_weight"))
    no_renal = not chosen["apply_renal_adjustment"]
    from cartlab.protocol.dose_inputs import parse_quantity

    try:  # review 39 B7: a unit with the number (pint); a bare number is kg / cm, said so
        weight, weight_note = parse_quantity(weight, "kg", "weight")
        height, height_note = parse_quantity(height, "cm", "height")
    except ValueError as exc:
        raise _usage(str(exc)) from None
    p = _protocol_or_exit(protocol)
    # the subject's data: in --study, or in the store (an explicit --store or CARTLAB_STORE, or the default
    # store when it exists; without any, --subject only labels the sheet, as before)
    from_store = study is None and (store.exists() or not _is_default(ctx, "store"))
    if (weight is None or height is None) and subject and (study is not None or from_store):
        from dataclasses import replace

        from cartlab.protocol import subject_patient

        data = _subject_data(subject, store, study, csv_dialect)
        patient, why = subject_patient(data, p, subject)
        if patient is None:
            raise _usage(f"cannot dose {subject}: {why}")
        given = {k: v for k, v in (("weight_kg", weight), ("height_cm", height), ("age_years", age),
                                   ("sex", sex.upper() if sex else None)) if v is not None}
        if creatinine:
            given.update(creatinine=creatinine[0], creatinine_unit=creatinine[1])
        if creatinine:
            given.update(creatinine_day=None, creatinine_note=None)
        patient = replace(patient, **given)
        if creatinine:
            given.update(creatinine_candidates=(), creatinine_reason=None, creatinine_censor=None,
                         creatinine_ref=None)
            patient = replace(patient, **given)
            creat = f"{patient.creatinine:g} {patient.creatinine_unit} (given)"
        elif patient.creatinine_reason:
            creat = (f"{patient.creatinine_censor or ''}{patient.creatinine:.4g} {patient.creatinine_unit} on day "
                     f"{patient.creatinine_day:g} ({patient.creatinine_reason})")
        elif patient.creatinine is not None:
            creat = f"{patient.creatinine:.4g} {patient.creatinine_unit} on day {patient.creatinine_day:g}"  # converted on reading: 4 digits
        else:
            creat = f"none ({patient.creatinine_note})"
        err.print(f"[dim]{escape(subject)}: {_num(patient.weight_kg, 'kg')}, {_num(patient.height_cm, 'cm')}, age "
                  f"{_num(patient.age_years, 'years')}, sex {patient.sex or '?'}, creatinine {escape(creat)} "
                  "(from the study data)[/]", soft_wrap=True)
    elif weight is None and height is None:
        if subject and not store.exists():  # session 48: say where the subject was looked for and how to give it
            raise _usage(f"subject {subject!r}: its weight, height and creatinine are read from a study, and none "
                         f"was given: pass --study DIR (a study folder), or --store FILE (there is no store at "
                         f"{store}; cartlab import STUDY makes one); or give --weight and --height")
        raise _usage("give --weight and --height (a missing one makes only the doses that need it not "
                     "evaluable), or --subject with --study/--store")
    else:
        # a missing weight or height makes only the doses that need it not evaluable
        patient = Patient(weight_kg=weight, height_cm=height, age_years=age, sex=sex.upper() if sex else None,
                          creatinine=creatinine[0] if creatinine else None,
                          creatinine_unit=creatinine[1] if creatinine else None, subject_id=subject)
    try:
        opts = DoseOptions(bsa_method=bsa_method, renal_function=renal_function, apply_renal_adjustment=not no_renal,
                           car_dose=car_dose, product_concentration=product_conc, viability=viability,
                           car_positive=car_positive, crcl_weight=crcl_weight,
                           paediatric_renal_function=paediatric_renal,
                           bsa_decimals=None if bsa_unrounded else bsa_decimals)
        size = body_size(patient, p, opts)
        plan = dose_plan(p, patient, opts, size=size)
        if sheet is not None:
            from cartlab.io.atomic import write_error

            try:
                path = write_dosing_sheet(sheet_context(p, plan, size, opts, patient), sheet)
            except OSError as exc:  # e.g. --sheet /proc/x.html: the user's path, never a temporary name
                raise write_error(sheet, exc) from None
        else:
            path = None
    except (DosingError, ValueError) as exc:
        raise _usage(f"cannot dose: {exc}") from None
    for what, note, given_value in (("weight", weight_note, weight), ("height", height_note, height)):
        if given_value is not None and note:  # the unit the command-line value was read in
            err.print(f"[dim]{what}: {given_value:.6g} {escape(note)}[/]", soft_wrap=True, highlight=False)
    if as_csv:
        from cartlab.criteria import with_rule_status
        from cartlab.grading.adam import to_csv_frame

        # rule_status: the status of each row's rule in its table (the protocol file, renal_adjustment.yaml)
        sys.stdout.write(to_csv_frame(_round_floats(with_rule_status(plan))).write_csv())
        if size.get("renal_caveat") and (size["crcl_ml_min"] is not None or size["egfr_ml_min_173"] is not None):
            err.print(f"[yellow]![/] {escape(size['renal_caveat'])}", soft_wrap=True)  # stdout stays CSV
    else:
        from cartlab.protocol.dosing import bsa_text, renal_value_text

        crcl, egfr = size["crcl_ml_min"], size["egfr_ml_min_173"]
        rules = [a.renal_adjustment for a in p.lymphodepletion if a.renal_adjustment]  # digits enough for their bounds
        if crcl is None and egfr is None and size["renal_note"] == size["egfr_note"]:
            renal = f"renal function (CrCl, eGFR) {size['renal_note']}"
        else:
            weight_used = f", {size['crcl_weight']} weight" if size.get("crcl_weight", "actual") != "actual" else ""
            renal = (f"CrCl {renal_value_text(crcl, rules)} mL/min (Cockcroft-Gault{weight_used})" if crcl is not None
                     else f"CrCl {size['renal_note']}") + ", " + (
                f"eGFR {renal_value_text(egfr, rules)} mL/min/1.73 m2 (CKD-EPI 2021)" if egfr is not None
                else f"eGFR {size['egfr_note']}")
            if patient.creatinine_day is not None:
                renal += f" (creatinine of day {patient.creatinine_day:g})"
        renal += _measure_used(p, size, opts, rules)
        if getattr(patient, "creatinine_censor", None):  # review 39 A1: computed at a censored result's bound
            bound = "lower" if patient.creatinine_censor.startswith("<") else "upper"
            renal += (f" [computed at the bound of creatinine {patient.creatinine_censor}{patient.creatinine:g} "
                      f"{patient.creatinine_unit}: each is a {bound} bound]")
        bsa = (f"BSA {bsa_text(size)} m2 ({size['bsa_method'].capitalize()})" if size["bsa_m2"] is not None
               else f"BSA {size['bsa_note']}")
        console.print(f"[bold]{escape(p.id)}[/] · {_num(patient.weight_kg, 'kg')}, {_num(patient.height_cm, 'cm')} · "
                      f"{bsa} · {escape(renal)}", soft_wrap=True)
        t = Table(header_style="bold")
        for c in ("day", "agent", "dose", "unit", "basis"):
            t.add_column(c, overflow="fold", justify="right" if c in ("day", "dose") else "left")
        for r in plan.iter_rows(named=True):
            t.add_row(f"{r['day']:g}", r["agent"], escape(dose_text(r)), r["unit"], escape(r["basis"]))
        console.print(t)
        for a in dict.fromkeys(x for x in plan["adjustment"].to_list() if x):
            console.print(f"[yellow]![/] {escape(a)}", soft_wrap=True)
        if size.get("renal_caveat") and (size["crcl_ml_min"] is not None or size["egfr_ml_min_173"] is not None):
            console.print(f"[yellow]![/] {escape(size['renal_caveat'])}", soft_wrap=True)
        if (p.car_t.source == "reconstructed" or any(a.source == "reconstructed" for a in p.lymphodepletion)
                or "reconstructed" in plan["source"].to_list()):
            console.print("[yellow]some protocol items are reconstructed (not stated by the source)[/]")
    if path:
        err.print(f"[green]dosing sheet:[/] {path}")


def _measure_used(p, size: dict, opts, rules: list[str]) -> str:
    """"; renal rule: <measure> <value> <unit>" for the header: the value that decided the renal
    rules when it is not the CrCl/eGFR printed before it (per 1.73 m2, bedside Schwartz)."""
    from cartlab.protocol.dosing import renal_value_text
    from cartlab.protocol.renal import MEASURES, paediatric_setting, renal_measure

    if not rules or not opts.apply_renal_adjustment:
        return ""
    used = {renal_measure(r, size["age_years"], p.dosing.renal_function, opts, paediatric_setting(p, opts))[0]
            for r in rules}
    out = []
    for m in sorted(x for x in used if x not in (None, "crcl_cockcroft_gault", "egfr_ckd_epi_2021")):
        key, note, _, name, unit = MEASURES[m]
        v = size.get(key)
        out.append(f"{name} {renal_value_text(v, rules)} {unit}" if v is not None else f"{name} {size.get(note)}")
    return f"; renal rule uses {', '.join(out)}" if out else ""


@app.command("eligibility")
@subjects_options
def eligibility_cmd(
    ctx: typer.Context,
    protocol: ProtocolIdOpt,
    target: Subjects = None,
    age_exact: Annotated[bool, typer.Option(
        "--age-exact", help="Compare age limits with the exact age (default: completed years, floor(age), as "
        "'up to 25 years of age' is read).")] = False,
    screening_end: Annotated[str, typer.Option(
        "--screening-end", metavar="lymphodepletion|day_before_lymphodepletion|fixed", help="Where the screening window ends: lymphodepletion (default: the day of the "
        "subject's first lymphodepletion dose, else the protocol's nominal end), day_before_lymphodepletion, "
        "or fixed (the protocol's nominal end).")] = "lymphodepletion",
    set_options: ProtoSetOpt = None,
    options_file: ProtoOptionsOpt = None,
) -> None:
    """Screen a subject (or every subject of --study) against a protocol's eligibility criteria:
    value, day, pass/fail/unknown and the reason for each criterion.

    A lab criterion reads the last value in the protocol's screening window (`cartlab protocols ID`
    shows it), which ends at the subject's first lymphodepletion dose; a value or event not recorded
    is unknown, never a pass (docs/protocol.md).

    Without a SUBJECT, every subject of --study (a folder or stored id) is screened: a verdict per
    subject (--csv: every criterion of every subject), as cartlab deviations does.

    Protocol options (as analyze's --set protocol.OPTION): --age-exact = protocol.age_whole_years=false,
    --screening-end X = protocol.screening_end=X.

    [bold]Example[/]: cartlab eligibility CD7-AML-001 --protocol nct04762485
    [bold]Example[/]: cartlab eligibility --study out/seed_case --protocol nct04762485
    """
    from rich.markup import escape

    from cartlab.model import NOT_MEASURED_SOURCES
    from cartlab.protocol import derive_eligibility, eligibility_verdict

    chosen = _protocol_settings(ctx, "eligibility", set_options, options_file, {
        "age_whole_years": ("age_exact", "--age-exact", False if age_exact else None),
        "screening_end": ("screening_end", f"--screening-end {screening_end}", screening_end),
        "ld_course_tolerance_days": ("ld_course_tolerance_days", "--set protocol.ld_course_tolerance_days", None)})
    screening_end = chosen["screening_end"]
    p = _protocol_or_exit(protocol)
    data, subject = target.data(), target.subject
    from cartlab.protocol.eligibility import SCREENING_ENDS

    if screening_end not in SCREENING_ENDS:
        raise _usage(f"--screening-end must be one of {', '.join(SCREENING_ENDS)} (got {screening_end!r})")
    res = derive_eligibility(data, p, subject, age_whole_years=chosen["age_whole_years"],
                             screening_end=screening_end, ld_course_tolerance_days=chosen["ld_course_tolerance_days"])
    if target.printed(res):
        return
    if subject is None:
        _print_verdicts(eligibility_verdict(res), p)
        return
    v = eligibility_verdict(res).row(0, named=True)
    colour = {"eligible": "green", "not eligible": "red"}.get(v["verdict"], "yellow")
    console.print(f"[bold]{escape(subject)}[/] · {escape(p.id)} · [{colour}]{v['verdict']}[/] "
                  f"({v['n_pass']} pass, {v['n_fail']} fail, {v['n_unknown']} unknown)")
    t = Table(header_style="bold")
    for c in ("criterion", "status", "value", "day", "reason"):
        t.add_column(c, overflow="fold")
    flagged = False
    for r in res.iter_rows(named=True):
        st = {"pass": "[green]pass[/]", "fail": "[red]fail[/]"}.get(r["status"], "[yellow]unknown[/]")
        recon = r["source"] in NOT_MEASURED_SOURCES
        flagged |= recon
        val = "" if r["value"] is None else f"{r['value']}{' ' + r['unit'] if r['unit'] else ''}{'*' if recon else ''}"
        t.add_row(f"{r['criterion_id']}{' (excl.)' if r['kind'] == 'exclusion' else ''}", st, escape(val),
                  "" if r["day"] is None else f"{r['day']:g}" + (f" ({r['date']})" if r["date"] else ""),
                  escape(r["reason"]))
    console.print(t)
    if flagged:
        console.print("[dim]* reconstructed or synthetic value (not measured)[/]")


@app.command("deviations")
@subjects_options
def deviations_cmd(
    ctx: typer.Context,
    protocol: ProtocolIdOpt,
    target: Subjects = None,
    car_dose: Annotated[Optional[float], typer.Option(
        "--car-dose", help="The intended CAR-T total dose in the protocol's unit (cells/kg or cells), as in cartlab "
        "dose; default: the protocol's target, or for a dose-escalation protocol (NCT04762485) its range.")] = None,
    max_shift_days: Annotated[Optional[float], typer.Option(
        "--max-shift-days", min=0, help="Farthest a given dose is paired with a planned one (default: the "
        "protocol's tolerances.max_shift_days, 7); beyond it: missed_dose + extra_dose.")] = None,
    monitoring_to_followup: Annotated[bool, typer.Option(
        "--monitoring-to-followup", help="Check monitoring up to the end of follow-up even after allo-HSCT or new "
        "therapy (default: those events end the schedule).")] = False,
    dose_pct: Annotated[Optional[float], typer.Option(
        "--dose-pct", min=0, help="Tolerance of a chemotherapy dose, percent (default: the protocol's "
        "tolerances.dose_pct; cartlab convention 10).")] = None,
    car_t_dose_pct: Annotated[Optional[float], typer.Option(
        "--car-t-dose-pct", min=0, help="Tolerance of a CAR-T dose, percent (default: the protocol's "
        "tolerances.car_t_dose_pct; cartlab convention 20).")] = None,
    day_tolerance: Annotated[Optional[float], typer.Option(
        "--day-tolerance", min=0, help="Days a dose may be from its planned day (default: the protocol's "
        "tolerances.day; cartlab convention 0).")] = None,
    bsa_method: Annotated[Optional[str], typer.Option(
        "--bsa-method", metavar="mosteller|dubois|haycock", help="Dose plan: mosteller (default), dubois or haycock (as cartlab dose).")] = None,
    bsa_decimals: Annotated[Optional[int], typer.Option(
        "--bsa-decimals", min=2, max=4, help="Dose plan: decimals BSA is rounded to, 2-4 (default 2).")] = 2,
    bsa_unrounded: Annotated[bool, typer.Option("--bsa-unrounded", help="Dose plan: the unrounded BSA.")] = False,
    renal_function: Annotated[Optional[str], typer.Option(
        "--renal-function", help="Dose plan: the renal measure at every age (as cartlab dose).")] = None,
    paediatric_renal: Annotated[Optional[str], typer.Option(
        "--paediatric-renal-function", help="Dose plan: the renal measure under 18 years (as cartlab dose).")] = None,
    crcl_weight: Annotated[Optional[str], typer.Option(
        "--crcl-weight", help="Dose plan: Cockcroft-Gault weight, actual, ideal or adjusted (as cartlab dose).")] = None,
    no_renal: Annotated[bool, typer.Option(
        "--no-renal-adjustment", help="Dose plan: do not apply renal dose rules.")] = False,
    set_options: ProtoSetOpt = None,
    options_file: ProtoOptionsOpt = None,
) -> None:
    """Protocol deviations: missed or extra doses, wrong days, doses outside tolerance, missed
    monitoring days — compared with what the protocol plans for the subject's own weight and BSA.

    Tolerances are the protocol's (`cartlab protocols ID`; cartlab defaults ±10% chemotherapy, ±20%
    CAR-T, same day); monitoring ends at death, last_followup_day (blank: the last recorded row),
    allo-HSCT or new therapy (docs/protocol.md).

    Protocol options (as analyze's --set protocol.OPTION): --car-dose X = protocol.car_dose=X,
    --max-shift-days N = protocol.max_shift_days=N, --monitoring-to-followup =
    protocol.off_study_ends_monitoring=false, --dose-pct / --car-t-dose-pct / --day-tolerance =
    protocol.dose_pct / car_t_dose_pct / day_tolerance, and the dose-plan choices of cartlab dose
    (--bsa-method = protocol.bsa_method, ...): the plan the doses are compared with.

    A subject with dose rows but no CAR-T dose gets one not_infused row and no post-infusion
    checks (docs/protocol.md).

    [bold]Example[/]: cartlab deviations CD7-AML-001 --protocol nct04762485
    """
    from rich.markup import escape

    from cartlab.protocol import derive_deviations

    # who is infused: the analysis's one option best_response.infusion_evidence, from --set or --options
    # (an analysis.json replays it), as analyze passes it (review 40 diff1 F2)
    # and what makes a later CAR-T dose a re-infusion: kinetics.split_dose_gap_days (session 47)
    evidence_keys = ("best_response.infusion_evidence", "kinetics.split_dose_gap_days")
    evidence_sets = [i for i in set_options or [] if i.partition("=")[0].strip() in evidence_keys]
    set_options = [i for i in set_options or [] if i not in evidence_sets]
    from cartlab.cli.base import analysis_options

    given = analysis_options(options_file, evidence_sets) if (evidence_sets or options_file is not None) else None
    evidence = (getattr(given.best_response_options(), "infusion_evidence", None) if given is not None
                else None) or "dose_or_kinetics"
    gap = getattr(given.kinetics, "split_dose_gap_days", None) if given is not None and given.kinetics else None
    # review 40 B9/B10: every protocol option the deviations depend on (the plan's too), as analyze
    chosen = _protocol_settings(ctx, "deviations", set_options, options_file, {
        "car_dose": ("car_dose", f"--car-dose {car_dose}", car_dose),
        "max_shift_days": ("max_shift_days", f"--max-shift-days {max_shift_days}", max_shift_days),
        "off_study_ends_monitoring": ("monitoring_to_followup", "--monitoring-to-followup",
                                      False if monitoring_to_followup else True),
        "dose_pct": ("dose_pct", f"--dose-pct {dose_pct}", dose_pct),
        "car_t_dose_pct": ("car_t_dose_pct", f"--car-t-dose-pct {car_t_dose_pct}", car_t_dose_pct),
        "day_tolerance": ("day_tolerance", f"--day-tolerance {day_tolerance}", day_tolerance),
        "ld_course_tolerance_days": ("ld_course_tolerance_days", "--set protocol.ld_course_tolerance_days", None),
        **_plan_flags(bsa_method, bsa_decimals, bsa_unrounded, renal_function, paediatric_renal, crcl_weight,
                      no_renal)})
    from cartlab.errors import InputError
    from cartlab.protocol.options import ProtocolOptions

    try:
        po = ProtocolOptions(**chosen)
    except (ValueError, InputError) as exc:
        raise _usage(str(exc)) from None
    p = _protocol_or_exit(protocol)
    data = target.data()
    from cartlab.protocol.deviations import deviation_summary

    res = derive_deviations(data, p, po, infusion_evidence=evidence, split_dose_gap_days=gap)
    if target.printed(_round_floats(res)):
        return
    if res.height == 0:
        console.print(f"[green]no deviations[/] from {escape(p.id)} ({data.subjects.height} subject(s))")
        return
    summ = deviation_summary(res)
    cats = [c for c in summ.columns[1:] if summ[c].sum() > 0]
    s = Table(header_style="bold", title=f"rows per subject ({summ.height} subject(s) with a row; not_checkable "
              "rows are not deviations; missed_monitoring_days: scheduled days missed)")
    for c in ("subject", *cats):
        s.add_column(c, justify="left" if c == "subject" else "right")
    for r in summ.iter_rows(named=True):
        s.add_row(escape(r["subject_id"]), *(str(r[c]) for c in cats))
    console.print(s)
    t = Table(header_style="bold", title=f"{res.height} row(s) from {p.id}")
    for c in ("subject", "category", "item", "detail", "source rows"):
        t.add_column(c, overflow="fold")
    for r in res.iter_rows(named=True):
        t.add_row(r["subject_id"], r["category"], escape(r["item"]), escape(r["detail"]),
                  escape(", ".join(r["evidence"] or [])))
    console.print(t)


def _print_verdicts(verdicts, p) -> None:
    """One row per subject: the verdict, the counts and the criteria that failed or are unknown."""
    from rich.markup import escape

    n = verdicts["verdict"].value_counts()
    counts = ", ".join(f"{c} {v}" for v, c in sorted(n.iter_rows()))
    t = Table(header_style="bold", title=f"{verdicts.height} subject(s) screened against {p.id}: {counts}")
    for c in ("subject", "verdict", "pass", "fail", "unknown", "failed criteria"):
        t.add_column(c, overflow="fold")
    for r in verdicts.iter_rows(named=True):
        colour = {"eligible": "green", "not eligible": "red"}.get(r["verdict"], "yellow")
        t.add_row(escape(r["subject_id"]), f"[{colour}]{r['verdict']}[/]", str(r["n_pass"]), str(r["n_fail"]),
                  str(r["n_unknown"]), escape(r["failed"]))
    console.print(t)
    console.print("[dim]one subject's criteria: cartlab eligibility SUBJECT ...; every criterion: --csv[/]")


def _plan_flags(bsa_method, bsa_decimals, bsa_unrounded, renal_function, paediatric_renal, crcl_weight,
                no_renal) -> dict[str, tuple[str, str, object]]:
    """The dose plan's flags (``dose`` and ``deviations`` take the same), for :func:`_protocol_settings`."""
    return {
        "bsa_method": ("bsa_method", f"--bsa-method {bsa_method}", bsa_method),
        "bsa_decimals": ("bsa_decimals", f"--bsa-decimals {bsa_decimals}", bsa_decimals),
        "bsa_unrounded": ("bsa_unrounded", "--bsa-unrounded", bsa_unrounded),
        "renal_function": ("renal_function", f"--renal-function {renal_function}", renal_function),
        "paediatric_renal_function": ("paediatric_renal", f"--paediatric-renal-function {paediatric_renal}",
                                      paediatric_renal),
        "crcl_weight": ("crcl_weight", f"--crcl-weight {crcl_weight}", crcl_weight),
        "apply_renal_adjustment": ("no_renal", "--no-renal-adjustment", not no_renal)}


def _protocol_settings(ctx, command: str, set_options: list[str] | None, options_file: Path | None,
                       flags: dict[str, tuple[str, str, object]]) -> dict[str, object]:
    """The protocol options of ``command`` from its flags and ``--set protocol.X`` / ``--options``
    (review 38 B5): ``flags`` maps each option the command uses to (parameter name, the flag as
    written, its value as a ProtocolOptions value). A flag given on the command line wins over its
    default; a flag and a --set/--options value that disagree are an error (exit 2); a --set of
    another engine, or of a protocol option the command does not use, is refused."""

    from cartlab.cli.base import analysis_options

    applies = ", ".join(f"protocol.{k}" for k in flags)
    named: dict[str, str] = {}
    for item in set_options or []:
        key = item.partition("=")[0].strip()
        engine, _, name = key.partition(".")
        if engine.strip() != "protocol":
            also = (" and best_response.infusion_evidence, kinetics.split_dose_gap_days" if command == "deviations"
                    else "")
            raise _usage(f"--set {item!r}: cartlab {command} takes protocol options only ({applies}){also}")
        named[name.strip()] = f"--set {key}"
    if options_file is not None:
        from cartlab.cli._options_yaml import OptionsFileError, load_options_file

        try:  # one line naming the file and line; a key given twice is an error (review 40 diff2 B1)
            loaded = load_options_file(options_file) or {}
        except OptionsFileError as exc:
            raise _usage(str(exc)) from None
        if isinstance(loaded, dict) and "cartlab_version" in loaded:
            loaded = loaded.get("options_set") or {}
        section = loaded.get("protocol") if isinstance(loaded, dict) else None
        for name in section if isinstance(section, dict) else {}:
            named.setdefault(str(name), f"--options {options_file}: protocol.{name}")
    chosen = {key: value for key, (_, _, value) in flags.items()}
    if not named:
        return chosen
    po = analysis_options(options_file, set_options, protocol="given").protocol  # checks names and values
    for name, where in named.items():
        if name not in flags and where.startswith("--set"):
            raise _usage(f"{where}: cartlab {command} has no use for it; it takes {applies}")
    for key, (param, flag, value) in flags.items():
        if key not in named:
            continue
        wanted = getattr(po, key)
        if not _is_default(ctx, param) and wanted != value:
            raise _usage(f"{flag} and {named[key]}={wanted} disagree: give the option once")
        chosen[key] = wanted
    shown = ", ".join(f"protocol.{k} = {v}" for k, v in chosen.items() if k in named)
    err.print(f"[dim]protocol options set: {shown}[/]", soft_wrap=True, highlight=False)
    return chosen


def _is_default(ctx, name: str) -> bool:
    """The parameter ``name`` has its default value (not given on the command line nor by env)."""
    source = ctx.get_parameter_source(name) if ctx is not None else None
    return source is None or source.name in ("DEFAULT", "DEFAULT_MAP")


def _print_json(df) -> None:
    """Rows as a JSON list of records on stdout (lists kept, nulls as null)."""
    sys.stdout.write(json.dumps(df.to_dicts(), ensure_ascii=False, default=str) + "\n")


def _num(x: float | None, unit: str) -> str:
    return f"? {unit}" if x is None else f"{x:g} {unit}"


def _round_floats(df):
    """Float columns rounded to 12 significant digits (the study reader's SIG_DIGITS) for output, so
    a CSV shows 44.16, not the float artefact 44.160000000000004."""
    import polars as pl

    from cartlab.io.study_folder import SIG_DIGITS

    return df.with_columns(pl.col(c).round_sig_figs(SIG_DIGITS) for c, t in df.schema.items() if t == pl.Float64)


def _one_or_all(subject, study, store, csv_dialect):
    """The study data of one SUBJECT (from --study or the store), or of every subject of --study."""
    if subject is not None:
        return _subject_data(subject, store, study, csv_dialect)
    if study is None:
        raise _usage("give a SUBJECT, or --study (a folder or stored id) for every subject of a study")
    return _load_study(study, store, csv_dialect)


def _study_alias(study: str | None, study_dir: Path | None) -> str | None:
    """--study, or the old --study-dir."""
    if study is not None and study_dir is not None:
        raise _usage("give --study (a folder or a stored id), not both --study and --study-dir")
    if study_dir is not None:
        deprecated("--study-dir", "--study")
    return study if study is not None else (str(study_dir) if study_dir is not None else None)


def _as_csv(as_csv: bool, fmt: str | None) -> bool:
    """--csv, or the old --format table|csv."""
    if fmt is None:
        return as_csv
    if fmt not in ("table", "csv"):
        raise _usage("--format must be table or csv (use --csv)")
    deprecated(f"--format {fmt}", "--csv" if fmt == "csv" else "no --format (a table is the default)")
    return as_csv or fmt == "csv"
