"""Where a study comes from and where it goes besides the study folder: CDISC SDTM and HL7 FHIR R4 in,
ADaM and FHIR out. Shared by ``import``, ``analyze``, ``report`` and ``export``.

A command names its source one way: a study folder or a stored id (``STUDY``), an SDTM folder
(``--sdtm DIR``) or FHIR resources (``--fhir PATH``), with ``--mapping FILE`` extending the shipped
code maps. With no source at all, the store's only study is used (several: an error listing them).
The mapping report of an SDTM or FHIR import (every input record: mapped, or skipped and why) is
written beside the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from cartlab.cli.base import _load_study, _print_warnings, _usage, console
from cartlab.cli.grammar import bundled

SdtmOpt = Annotated[Optional[Path], typer.Option(
    "--sdtm", help="Read the study from CDISC SDTM domains in this folder (XPT, SAS7BDAT or CSV).")]
FhirInOpt = Annotated[Optional[Path], typer.Option(
    "--fhir", help="Read the study from FHIR R4 resources: a Bundle JSON, NDJSON, or a folder of them.")]
PartialDatesOpt = Annotated[str, typer.Option(
    "--partial-dates", metavar="skip|impute", help="SDTM dates without a day (2021-05): skip (count them as not mapped) or impute (first "
    "of the month/year for a start, last for an end, said in source_note).")]
PartialDeathDatesOpt = Annotated[str, typer.Option(
    "--partial-death-dates", metavar="impute|drop", help="SDTM and FHIR: a death with a partial date (DTHDTC/"
    "DSSTDTC, Patient.deceasedDateTime 2021-07): impute (default; the first day of the period, not before the last record, with a warning) or drop "
    "(no death event; a warning says OS is censored although the subject died).")]
PartialEventDatesOpt = Annotated[str, typer.Option(
    "--partial-event-dates", metavar="impute|drop", help="SDTM and FHIR: an event (AE/CE seizure ..., FHIR "
    "Condition/Procedure) with a partial start date: impute (default; the first day of the period, not before day 0 unless the period lies before it) or "
    "drop (not mapped, with a warning).")]
StudyDayFallbackOpt = Annotated[bool, typer.Option(
    "--study-day-fallback", help="SDTM: place a record with --DY and no --DTC date from --DY (RFSTDTC taken as "
    "the infusion day; SDTMIG: no study day 0). Off: such records are counted in a warning.")]
OngoingInterventionsOpt = Annotated[str, typer.Option(
    "--ongoing-interventions", metavar="last_record|start_only", help="FHIR: a MedicationAdministration in-progress "
    "without an effectivePeriod.end: last_record (default; runs to the subject's last dated record, said in "
    "source_note) or start_only (a single administration at its start).")]
UnknownIndicationOpt = Annotated[Optional[str], typer.Option(
    "--unknown-indication", metavar="count|other|drop", help="SDTM and FHIR: an intervention whose indication "
    "(CMINDC, reasonCode text) is in no indications table: count (default; read with the indication empty, which "
    "the study format counts toward CRS/ICANS, warned), other (SDTM: read as other, not counted) or drop (FHIR: "
    "not read, warned).")]
MappingOpt = Annotated[Optional[Path], typer.Option(
    "--mapping", help="A YAML file extending/overriding the shipped SDTM or FHIR code map (docs/interop/).")]
#: FHIR R4 ObservationStatus (http://hl7.org/fhir/R4/valueset-observation-status.html), all eight codes
OBSERVATION_STATUS_CODES = ("registered", "preliminary", "final", "amended", "corrected", "cancelled",
                            "entered-in-error", "unknown")
ObservationStatusOpt = Annotated[Optional[list[str]], typer.Option(
    "--observation-status", metavar="CODE", help="FHIR: an Observation.status read as a result; repeat it for "
    "several (the list replaces the default final, amended, corrected; preliminary and unknown may be added). "
    "Other Observations are counted in the mapping report.")]
NumericValueStringOpt = Annotated[str, typer.Option(
    "--numeric-valuestring", metavar="skip|canonical", help="FHIR: a number or censored text sent as "
    "valueString (\"9.5\", \"<50\") has no unit: skip (default; counted in the mapping report) or canonical "
    "(read in the parameter's canonical unit, e.g. g/L for haemoglobin; only when the sender used it).")]


#: the SDTM / FHIR readers' options, declared once for the commands that read a source (import, analyze,
#: report): parameter name, its declaration, its default
_READER_PARAMS = (("sdtm", SdtmOpt, None), ("fhir", FhirInOpt, None), ("mapping", MappingOpt, None),
                  ("partial_dates", PartialDatesOpt, "skip"), ("partial_death_dates", PartialDeathDatesOpt, "impute"),
                  ("partial_event_dates", PartialEventDatesOpt, "impute"),
                  ("study_day_fallback", StudyDayFallbackOpt, False), ("observation_status", ObservationStatusOpt, None),
                  ("numeric_valuestring", NumericValueStringOpt, "skip"),
                  ("ongoing_interventions", OngoingInterventionsOpt, "last_record"),
                  ("unknown_indication", UnknownIndicationOpt, None))


@dataclass(frozen=True)
class SourceOptions:
    """The reader options a command was given (--sdtm, --fhir, --mapping, --partial-dates ...)."""

    sdtm: Path | None = None
    fhir: Path | None = None
    mapping: Path | None = None
    partial_dates: str = "skip"
    partial_death_dates: str = "impute"
    partial_event_dates: str = "impute"
    study_day_fallback: bool = False
    observation_status: list[str] | None = None
    numeric_valuestring: str = "skip"
    ongoing_interventions: str = "last_record"
    unknown_indication: str | None = None

    def sdtm_opts(self) -> dict:
        return {"partial_death_dates": self.partial_death_dates, "partial_event_dates": self.partial_event_dates,
                "study_day_fallback": self.study_day_fallback, "unknown_indication": self.unknown_indication}

    def load_kwargs(self) -> dict:
        """The keyword arguments of :func:`load_source` these options give."""
        return {"sdtm": self.sdtm, "fhir": self.fhir, "mapping": self.mapping, "partial_dates": self.partial_dates,
                "observation_statuses": self.observation_status, "numeric_valuestring": self.numeric_valuestring,
                "sdtm_opts": self.sdtm_opts(), "ongoing_interventions": self.ongoing_interventions}

    def refuse(self) -> None:
        """A study folder is read as it is: any reader option given is refused (:func:`refuse_reader_options`)."""
        refuse_reader_options(self.partial_dates, self.sdtm_opts(), self.observation_status, self.numeric_valuestring,
                              self.ongoing_interventions)


#: the command ``func``, which declares one parameter annotated :class:`SourceOptions`, with the readers'
#: options in its place (each its own option in --help, in that place); ``func`` gets them as one
#: :class:`SourceOptions`
reader_options = bundled(SourceOptions, _READER_PARAMS)


def _study_spelling(ctx) -> str:
    """How the study was given, for messages: "--study" when the command's --study option holds it
    (review 41 diff2 9), else the positional STUDY."""
    if ctx is None:
        return "STUDY"
    typed = any(p.param_type_name == "option" and "--study" in p.opts and ctx.params.get(p.name) is not None
                for p in ctx.command.params)
    return "--study" if typed else "STUDY"


def load_source(study: str | None, store: Path, *, sdtm: Path | None = None, fhir: Path | None = None,
                mapping: Path | None = None, csv_dialect: str = "standard", study_id: str | None = None,
                report_to=None, partial_dates: str = "skip", report_shown: Path | None = None,
                observation_statuses: list[str] | None = None, numeric_valuestring: str = "skip",
                sdtm_opts: dict | None = None, ongoing_interventions: str = "last_record", ctx=None):
    """The study a command names (exactly one source), and where its mapping report went (or None).

    ``study_id``: an explicit id (``--study``); None leaves the reader's default (SDTM: DM.STUDYID when
    it is unique, else the folder name; FHIR: :func:`fhir_study_id`, else the file name).
    ``report_to``: a folder or file for the mapping report, or a callable giving it from the study read.
    ``report_shown``: the folder the report will be in when the output is complete, printed instead of
    ``report_to`` when that is a staging folder swapped into place afterwards.
    ``observation_statuses`` / ``numeric_valuestring``: the FHIR reader's options (``--observation-status``,
    ``--numeric-valuestring``; None / "skip": the reader's defaults).
    ``sdtm_opts``: read_sdtm's ``partial_death_dates``, ``partial_event_dates``, ``study_day_fallback``
    (None: the reader's defaults); the two ``partial_*`` also go to the FHIR reader, with
    ``ongoing_interventions`` (``--ongoing-interventions``, FHIR only).
    ``ctx``: the command's click context, which tells an option typed with its default value from one
    not given (None, outside a command: only values other than the default count as given).
    """
    given = [name for name, v in ((_study_spelling(ctx), study), ("--sdtm", sdtm), ("--fhir", fhir)) if v is not None]
    if len(given) > 1:
        raise _usage(f"give one source, not {' and '.join(given)}")
    if mapping is not None and sdtm is None and fhir is None:
        raise _usage("--mapping applies to --sdtm or --fhir")
    if partial_dates not in ("skip", "impute"):  # review 40 C1: the flag, not the reader's Python name
        raise _usage(f"--partial-dates {partial_dates!r}: choose skip or impute")
    for key, flag in (("partial_death_dates", "--partial-death-dates"), ("partial_event_dates", "--partial-event-dates")):
        if (sdtm_opts or {}).get(key) not in (None, "impute", "drop"):
            raise _usage(f"{flag} {sdtm_opts[key]!r}: choose impute or drop")
    _check_unknown_indication((sdtm_opts or {}).get("unknown_indication"), sdtm, fhir)
    given = _given_reader_options(partial_dates, sdtm_opts, observation_statuses, numeric_valuestring,
                                  ongoing_interventions, ctx)
    if sdtm is None and fhir is None and given and study is not None and Path(str(study)).exists():
        refuse_reader_options(partial_dates, sdtm_opts, observation_statuses, numeric_valuestring,
                              ongoing_interventions)  # a study folder: read as it is (the FHIR options too)
    fhir_opts = _fhir_options(fhir, observation_statuses, numeric_valuestring, ongoing_interventions) \
        if fhir is not None or not given else {}
    if fhir is not None:  # partial death / event dates: the same options, and defaults, as read_sdtm
        shared = lambda k: k.startswith("partial_") or k == "unknown_indication"  # noqa: E731
        fhir_opts.update({k: v for k, v in (sdtm_opts or {}).items() if shared(k) and v is not None})
        sdtm_opts = {k: v for k, v in (sdtm_opts or {}).items() if not shared(k)}
    elif sdtm_opts and sdtm_opts.get("unknown_indication") is None:  # not given: the mapping's value
        sdtm_opts = {k: v for k, v in sdtm_opts.items() if k != "unknown_indication"}
    if sdtm is not None or fhir is not None:
        if sdtm is not None and csv_dialect != "standard":  # review40 B5: never silently ignored
            raise _usage("--csv-dialect applies to study folders: SDTM CSV files are read comma-separated with "
                         "decimal points (the CDISC SDTM CSV convention); convert the files, or give XPT")
        if fhir is not None and partial_dates != "skip":
            raise _usage("--partial-dates applies to --sdtm")
        if fhir is not None and sdtm_opts and any(v not in (None, False, "impute") for v in sdtm_opts.values()):
            raise _usage("--study-day-fallback applies to --sdtm")
        data, report = _read_interop(sdtm, fhir, mapping, study_id, partial_dates, fhir_opts, sdtm_opts)
        if mapping is not None:  # review 40 A2: the mapping decides what is read: in the fingerprint too
            from cartlab.io.study_folder import sha256_file

            data.reader_options = {**(getattr(data, "reader_options", None) or {}),
                                   "mapping": {"file": mapping.name, "sha256": sha256_file(mapping)}}
        where = report_to(data) if callable(report_to) else report_to  # a callable: named after the study
        written = _write_report(report, where, "sdtm" if sdtm is not None else "fhir") if where else None
        if written is not None and report_shown is not None:
            written = Path(report_shown) / written.name
        _say_report(report, written)
        if fhir is not None:
            _say_fhir_options(getattr(data, "reader_options", fhir_opts))
        _print_warnings(getattr(data, "warnings", []))  # e.g. duplicate records dropped
        return data, written
    if study is None:
        study = _only_stored_study(store)
    data = _load_study(study, store, csv_dialect)
    if given:
        check_stored_options(data, given, store)
    return data, None


#: reader option -> (its flag, the key of Study.reader_options it sets, its default)
_READER_FLAGS = {"partial_dates": ("--partial-dates", "partial_dates", "skip"),
                 "partial_death_dates": ("--partial-death-dates", "partial_death_dates", "impute"),
                 "partial_event_dates": ("--partial-event-dates", "partial_event_dates", "impute"),
                 "study_day_fallback": ("--study-day-fallback", "study_day_fallback", False),
                 "observation_status": ("--observation-status", "observation_statuses", None),
                 "numeric_valuestring": ("--numeric-valuestring", "numeric_valuestring", "skip"),
                 "ongoing_interventions": ("--ongoing-interventions", "ongoing_interventions", "last_record"),
                 "unknown_indication": ("--unknown-indication", "unknown_indication", None)}


def _given_reader_options(partial_dates, sdtm_opts, statuses, numeric_valuestring, ongoing, ctx=None) -> dict:
    """The SDTM / FHIR reader options given on the command line: {flag: (key, value)}. A value equal to
    the default counts when it was typed (the parameter source of the command's context ``ctx``, review
    40 B5); without a context, a value other than the default."""
    values = {"partial_dates": partial_dates, **{k: v for k, v in (sdtm_opts or {}).items()},
              "observation_status": list(dict.fromkeys(statuses)) if statuses else None,
              "numeric_valuestring": numeric_valuestring, "ongoing_interventions": ongoing}
    out = {}
    for name, value in values.items():
        if name not in _READER_FLAGS:
            continue
        flag, key, default = _READER_FLAGS[name]
        source = ctx.get_parameter_source(name) if ctx is not None and name in ctx.params else None
        typed = source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")
        if typed or (source is None and value not in (default, None)):
            out[flag] = (key, value)
    return out


def check_stored_options(data, given: dict, store: Path) -> None:
    """A stored study's reader options are fixed at import (review 40 B5): an option given with another
    value than the stored one is a usage error naming both and the re-import; the same value is fine."""
    stored = getattr(data, "reader_options", None) or {}
    kind = "SDTM" if "partial_dates" in stored else "FHIR" if "observation_statuses" in stored else None
    sid = data.study_id
    import polars as pl

    from cartlab.store import Store

    with Store(store, read_only=True) as s:
        rows = s.studies().filter(pl.col("study_id") == sid)
    folder = rows["folder"][0] if rows.height else ""
    src = f"--{kind.lower()} {folder or 'SOURCE'}" if kind else f"{folder or 'SOURCE'}"
    bad = []
    for flag, (key, value) in given.items():
        if kind is None or key not in stored:
            applies = {"--partial-dates": "--sdtm", "--study-day-fallback": "--sdtm", "--observation-status":
                       "--fhir", "--numeric-valuestring": "--fhir", "--ongoing-interventions": "--fhir"}
            what = f"{sid} is a stored {kind} study" if kind else (f"{sid} is a stored study with no reader options recorded (a study folder, read as it is, "
                                 "or an SDTM / FHIR import by an earlier cartlab)")
            raise _usage(f"{flag} does not apply: {what} ({flag} applies to {applies.get(flag, '--sdtm or --fhir')} "
                         "when the source is read)", hint="drop it. Nothing was written.")
        if stored[key] != value:
            bad.append((flag, stored[key], value))
    if bad:
        def show(v):
            return " ".join(v) if isinstance(v, list) else ("on" if v is True else "off" if v is False else str(v))

        was = "; ".join(f"{f} {show(old)}" for f, old, _ in bad)
        new = " ".join(f"{f} {show(v)}" if not isinstance(v, bool) else (f if v else "") for f, _, v in bad)
        kept = " ".join(_stored_flags(stored, {given[f][0] for f, _, _ in bad}))  # review 40 diff2 B2: all of them
        raise _usage(f"{sid} was imported from {kind} ({folder}) with {was}; you gave "
                     + "; ".join(f"{f} {show(v)}" for f, _, v in bad)
                     + ": a stored study's reader options are fixed when it is imported",
                     hint=f"re-import it with: cartlab import {src} --study-id {sid} {new.strip()}"
                          f"{' ' + kept if kept else ''} (or drop the option to use the stored one). Nothing was written.")


def _stored_flags(stored: dict, skip: set) -> list[str]:
    """The flags that re-import a stored study with its other reader options as they were (those not at
    their default, and its --mapping file), so following the re-import hint loses none of them."""
    from cartlab.io.fhir import READER_DEFAULTS

    out: list[str] = []
    for flag, key, default in _READER_FLAGS.values():
        if key in skip or key not in stored or stored[key] is None:
            continue
        value = stored[key]
        if value == READER_DEFAULTS.get(key, default) or value == default:
            continue
        if isinstance(value, bool):
            out += [flag] if value else []
        elif isinstance(value, list):
            out += [f"{flag} {v}" for v in value]  # given once per value
        else:
            out.append(f"{flag} {value}")
    mapping = stored.get("mapping")
    if isinstance(mapping, dict) and mapping.get("file"):
        out.append(f"--mapping {mapping['file']}")
    return out


def refuse_reader_options(partial_dates: str = "skip", sdtm_opts: dict | None = None,
                          observation_statuses: list[str] | None = None, numeric_valuestring: str = "skip",
                          ongoing_interventions: str = "last_record") -> None:
    """A study folder is read as it is (its dates are complete, review38 diff2 B2): an SDTM or FHIR reader
    option other than its default is a usage error naming the option, before anything is read."""
    _fhir_options(None, observation_statuses, numeric_valuestring, ongoing_interventions)
    flags = {"partial_death_dates": "--partial-death-dates", "partial_event_dates": "--partial-event-dates",
             "study_day_fallback": "--study-day-fallback", "unknown_indication": "--unknown-indication"}
    chosen = ["--partial-dates"] if partial_dates != "skip" else []
    chosen += [flags.get(k, k) for k, v in (sdtm_opts or {}).items() if v not in (None, False, "impute")]
    if chosen:
        said = "; ".join(f"{c} applies to "
                         f"{'--sdtm' if c in ('--partial-dates', '--study-day-fallback') else '--sdtm or --fhir'}"
                         for c in chosen)
        raise _usage(f"{said} (a study folder is read as it is)",
                     hint=f"drop {'them' if len(chosen) > 1 else 'it'}, or read the SDTM / FHIR source with "
                          "--sdtm / --fhir. Nothing was written.")


def _check_unknown_indication(value: str | None, sdtm: Path | None, fhir: Path | None) -> None:
    """--unknown-indication: count (both readers), other (SDTM only) or drop (FHIR only)."""
    if value is None:
        return
    if value not in ("count", "other", "drop"):
        raise _usage(f"--unknown-indication {value!r}: choose count, other (SDTM) or drop (FHIR)")
    if sdtm is not None and value == "drop":
        raise _usage("--unknown-indication drop applies to --fhir (SDTM: count or other)")
    if fhir is not None and value == "other":
        raise _usage("--unknown-indication other applies to --sdtm (FHIR: count or drop)")


def _fhir_options(fhir: Path | None, statuses: list[str] | None, numeric_valuestring: str,
                  ongoing: str = "last_record") -> dict:
    """The FHIR reader's options from ``--observation-status`` / ``--numeric-valuestring``, checked: an
    unknown code, a status that carries no result, or either option without ``--fhir`` is a usage error."""
    given = [o for o, v in (("--observation-status", statuses), ("--numeric-valuestring",
                                                                 numeric_valuestring != "skip"),
                                    ("--ongoing-interventions", ongoing != "last_record")) if v]
    if given and fhir is None:
        raise _usage(f"{' and '.join(given)} {'apply' if len(given) > 1 else 'applies'} to --fhir")
    if fhir is None:
        return {}
    from cartlab.io.fhir.reader import NUMERIC_VALUESTRING, READ_STATUSES

    for code in statuses or ():
        if code not in OBSERVATION_STATUS_CODES:
            raise _usage(f"--observation-status {code!r} is not a FHIR R4 ObservationStatus code",
                         hint="one of " + ", ".join(OBSERVATION_STATUS_CODES))
        if code in ("registered", "cancelled", "entered-in-error"):
            raise _usage(f"--observation-status {code!r}: an Observation with status {code} carries no result",
                         hint="results are read from final, amended, corrected, preliminary or unknown")
    if numeric_valuestring not in NUMERIC_VALUESTRING:
        raise _usage(f"--numeric-valuestring {numeric_valuestring!r}: choose {' or '.join(NUMERIC_VALUESTRING)}")
    from cartlab.io.fhir._partial import ONGOING_OPTIONS

    if ongoing not in ONGOING_OPTIONS:
        raise _usage(f"--ongoing-interventions {ongoing!r}: choose {' or '.join(ONGOING_OPTIONS)}")
    chosen = list(dict.fromkeys(statuses)) if statuses else list(READ_STATUSES)
    return {"observation_statuses": chosen, "numeric_valuestring": numeric_valuestring,
            "ongoing_interventions": ongoing}


def _say_fhir_options(opts: dict) -> None:
    """The FHIR reader options used (recorded on the study as ``reader_options``)."""
    console.print(f"FHIR reader options: observation statuses read {', '.join(opts['observation_statuses'])}; "
                  f"numeric valueString {opts['numeric_valuestring']}; partial death dates "
                  f"{opts.get('partial_death_dates', 'impute')}; partial event dates "
                  f"{opts.get('partial_event_dates', 'impute')}; ongoing interventions "
                  f"{opts.get('ongoing_interventions', 'last_record')}; unknown indications "
                  f"{opts.get('unknown_indication', 'count')}", soft_wrap=True)


def _read_interop(sdtm: Path | None, fhir: Path | None, mapping: Path | None, study_id: str | None,
                  partial_dates: str = "skip", fhir_opts: dict | None = None, sdtm_opts: dict | None = None):
    from cartlab.cli.base import _progress

    path = sdtm if sdtm is not None else fhir
    if not path.exists():
        from cartlab.io.study_folder import describe_path

        raise _usage(f"{path}: {describe_path(path)}")
    if mapping is not None and not mapping.is_file():
        raise _usage(f"{mapping}: no such mapping file")
    with _progress(f"reading {path.name}"):
        if sdtm is not None:
            from cartlab.io.sdtm import read_sdtm

            # no explicit id: the reader's default (DM.STUDYID when it is unique, else the folder name)
            got = read_sdtm(sdtm, mapping, report=True, partial_dates=partial_dates, study_id=study_id,
                            **(sdtm_opts or {}))
            return got.study, got.report
        from cartlab.io.fhir import read_fhir_with_report

        return read_fhir_with_report(fhir, mapping=mapping, study_id=study_id or fhir_study_id(fhir),
                                     **(fhir_opts or {}))


def fhir_study_id(path: Path) -> str | None:
    """The study id a single FHIR Bundle file states: its ``identifier.value``, else the ``id`` of a
    collection or document Bundle (what ``export --fhir`` writes: the study id, made a FHIR id). None
    when it states none (a folder, NDJSON, a transaction/searchset Bundle whose id is the server's):
    then the reader's default applies (the file name without its extension)."""
    import json

    if not path.is_file() or path.suffix.lower() != ".json":
        return None
    try:
        obj = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None  # the reader reports the file
    if not isinstance(obj, dict) or obj.get("resourceType") != "Bundle":
        return None
    ident = obj.get("identifier")
    if isinstance(ident, dict) and isinstance(ident.get("value"), str) and ident["value"].strip():
        return ident["value"].strip()
    rid = obj.get("id")
    if obj.get("type") in ("collection", "document") and isinstance(rid, str) and rid.strip():
        return rid.strip()
    return None


def _write_report(report, where: Path, kind: str) -> Path:
    """The mapping report as CSV (SDTM: with a markdown summary beside it)."""
    from cartlab.io.atomic import atomic_file

    path = where / f"{kind}_mapping_report.csv" if where.suffix == "" else where
    if kind == "sdtm":
        from cartlab.io.sdtm import write_mapping_report

        return write_mapping_report(report, path)[0]
    flat = report.with_columns([report[c].list.join("; ").alias(c) for c in report.columns
                                if str(report.schema[c]).startswith("List")])
    with atomic_file(path) as tmp:
        flat.write_csv(tmp)
    return path


def _say_report(report, written: Path | None) -> None:
    import polars as pl

    n_col = "n_rows" if "n_rows" in report.columns else "n"
    total = int(report[n_col].sum()) if report.height else 0
    if "n_skipped" in report.columns:
        skipped = int(report["n_skipped"].sum())
    else:
        skipped = int(report.filter(~pl.col("reason").str.starts_with("mapped"))[n_col].sum()) if report.height else 0
    where = f" (mapping report: {written})" if written else ""
    console.print(f"read {total:,} records: {total - skipped:,} mapped, {skipped:,} not mapped{where}")


def _only_stored_study(store: Path) -> str:
    """With no source named: the store's only study, else an error listing the choices."""
    from cartlab.store import Store

    if not store.exists():
        raise _usage(f"no study named and no store at {store}",
                     hint="name a study folder or stored id, or --sdtm DIR / --fhir PATH")
    with Store(store, read_only=True) as s:
        ids = s.studies()["study_id"].to_list()
    if len(ids) == 1:
        return ids[0]
    raise _usage(f"the store {store} holds {'no study' if not ids else 'several studies: ' + ', '.join(ids)}; "
                 "name one as the STUDY argument (a stored id or a study folder), or give --sdtm DIR / --fhir PATH")
