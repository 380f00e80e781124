"""Commands on study folders and the store: validate, import, list, show, export, synthetic, demo."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from cartlab.cli.base import (
    DEFAULT_STORE_PATH,
    CsvDialectOpt,
    OptionsFileOpt,
    SetOpt,
    StoreOpt,
    _open_store,
    _print_issues,
    _print_skipped,
    _print_warnings,
    _progress,
    _subject_data,
    _usage,
    analysis_options,
    app,
    console,
    err,
)
from cartlab.cli.grammar import STUDY_HELP, StudyOpt, SubjectArg, aliased, deprecated, spelled, study_argument
from cartlab.cli.interop import (
    MappingOpt,
    PartialDatesOpt,
    PartialDeathDatesOpt,
    PartialEventDatesOpt,
    SdtmOpt,
    SourceOptions,
    StudyDayFallbackOpt,
    load_source,
    reader_options,
)

#: validate's STUDY: a folder is checked file by file; a stored study lists the warnings of its import
ValidateStudyArg = study_argument("Study folder (format v1), or the id of a study in the store: the warnings "
                                  "recorded when it was imported. The same as --study STUDY.")
#: export's STUDY (none: --sdtm, or the store's only study)
ExportStudyArg = study_argument(STUDY_HELP + " None: --sdtm, or the store's only study. The same as --study STUDY.")


@app.command("validate")
def validate_cmd(
    study_dir: ValidateStudyArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print every issue as JSON.")] = False,
    csv_dialect: CsvDialectOpt = "standard",
    store: StoreOpt = DEFAULT_STORE_PATH,
) -> None:
    """Validate a study folder; list every problem (file, row, column) of every file, and warn about
    every file that is not read and every duplicate row.

    A stored study (its id, no folder of that name here) was validated when it was imported: its
    warnings recorded then are listed (the other commands on a stored study only count them).

    Exit code 0 when valid (warnings allowed), 1 when not, 2 when the path is not a study folder.
    Nothing is written.

    [bold]Example[/]: cartlab validate out/seed_case   (a stored study: cartlab validate seed_case)
    """
    from cartlab.io import validate_study
    from cartlab.io.study_folder import check_study_path

    study_dir = Path(study_dir)
    if not study_dir.exists() and len(study_dir.parts) == 1 and _validate_stored(str(study_dir), store, as_json):
        return
    if as_json and not study_dir.is_dir():  # --json: JSON on stdout even when the path is no study folder
        from cartlab.io import StudyValidationError

        try:
            check_study_path(study_dir)
        except StudyValidationError as exc:
            console.print_json(json.dumps([i.to_dict() for i in exc.issues]))
            raise typer.Exit(exc.exit_code) from None
    if not study_dir.is_dir():  # validate writes nothing: no "Nothing was written."
        from cartlab.io.study_folder import describe_path

        raise _usage(f"{study_dir}: {describe_path(study_dir)}; validate takes a study folder, or the id of a "
                     "study in the store (cartlab list shows them)")
    with _progress(f"validating {study_dir.name}") as _:
        issues = validate_study(study_dir, csv_dialect)
    errors = [i for i in issues if i.severity == "error"]
    if as_json:
        console.print_json(json.dumps([i.to_dict() for i in issues]))
    elif errors:
        from cartlab.io import StudyValidationError

        _print_issues(StudyValidationError(issues, str(study_dir)), wrote_nothing=False)  # validate writes nothing
    else:
        console.print(f"[green]{study_dir}: valid[/] (study folder format v1)")
        _print_warnings([i for i in issues if i.severity != "error"], limit=500)
    raise typer.Exit(1 if errors else 0)


def _validate_stored(study_id: str, store: Path, as_json: bool) -> bool:
    """``cartlab validate STUDY_ID``: a stored study, validated when it was imported; list the warnings
    recorded then (True), or False when the store holds no study of that id."""
    from cartlab.store import Store

    if not store.exists():
        return False
    with Store(store, read_only=True) as s:
        studies = s.studies()
        if study_id not in studies["study_id"].to_list():
            return False
        row = studies.filter(studies["study_id"] == study_id).row(0, named=True)
        warned = s.study_warnings(study_id)
    if as_json:
        console.print_json(json.dumps([w.to_dict() for w in warned]))
        return True
    folder = f" from {row['folder']}" if row.get("folder") else ""
    console.print(f"[green]{study_id}: a study in the store {store}[/], validated when it was imported{folder}; "
                  f"{sum(getattr(w, 'severity', None) != 'note' for w in warned)} warning(s) recorded then"
                  + (":" if warned else ""), soft_wrap=True)
    _print_warnings(warned, limit=500)
    if row.get("folder"):
        console.print(f"[dim]to validate the folder's files as they are now: cartlab validate {row['folder']}[/]",
                      soft_wrap=True, highlight=False)
    return True


def check_study_id(study_id: str, where: str) -> None:
    """A stored study id is named on the command line and becomes part of file names (the mapping report):
    one that a path would take (a / or \\, a leading dot, a control character) is a usage error naming
    it (review 40 B10: a Bundle's identifier "../../X" wrote the report two folders up)."""
    bad = (not study_id.strip() or any(c in study_id for c in "/\\") or study_id.startswith(".")
           or any(ord(c) < 32 for c in study_id))
    if bad:
        raise _usage(f"study id {study_id!r} (from {where}) cannot name a stored study: an id may not contain / "
                     "or \\, start with a dot, or hold control characters",
                     hint="give another id with --study-id (letters, digits, . _ -). Nothing was written.")


def safe_file_stem(study_id: str) -> str:
    """``study_id`` as a file name part: letters, digits, . _ - kept; otherwise sanitised and a hash of the
    id added (as the report's subject_filename does), so two ids never share a file."""
    import hashlib
    import re

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", study_id).strip("._-")
    if safe != study_id or not safe:
        safe = (safe[:40] + "-" if safe else "") + hashlib.sha1(study_id.encode()).hexdigest()[:8]
    return safe


@app.command("import", cls=aliased({"--study": "--study-id"}))
@reader_options
def import_cmd(
    ctx: typer.Context,
    study_dir: Annotated[Optional[Path], typer.Argument(
        metavar="DIR", help="Study folder (format v1); or --sdtm / --fhir.")] = None,
    store: StoreOpt = DEFAULT_STORE_PATH,
    study_id: Annotated[
        Optional[str], typer.Option("--study-id", metavar="ID", help="Id to store the study under (default: the "
                                    "study folder's name; --sdtm: DM.STUDYID when it is unique, else the folder "
                                    "name; --fhir: the Bundle's identifier or collection id, else the file name).")
    ] = None,
    reader: SourceOptions = None,
    csv_dialect: CsvDialectOpt = "standard",
    replace: Annotated[bool, typer.Option(
        "--replace", help="Replace a study of the same id imported from another folder (without it that is "
                          "refused; a re-import from the same folder replaces its earlier import).")] = False,
) -> None:
    """Validate a study (a study folder, CDISC SDTM domains or FHIR R4 resources) and import it into the store (one transaction).

    Re-importing identical files (same --csv-dialect, same cartlab version) changes nothing; changed files
    replace the study atomically (an SDTM or FHIR source read with other reader options, e.g.
    --partial-death-dates drop, is changed too). Another folder under an existing study id is refused unless --replace.
    Invalid input is rejected whole and the store is left untouched. An SDTM or FHIR import writes
    its mapping report (every input record: mapped, or why not) beside the store.

    [bold]Example[/]: cartlab import out/seed_case --store trial.duckdb
    [bold]Example[/]: cartlab import --sdtm sdtm/ --study-id TRIAL-01
    """
    from cartlab.io import read_study
    from cartlab.io.study_folder import check_study_path, sha256_file
    from cartlab.store import Store
    from cartlab.store.duckdb_store import check_store_path, fingerprint_files, study_files

    check_store_path(store)  # a folder or a file that is not a store: refused before the study is read
    if study_id is not None:
        check_study_id(study_id, "--study-id")
    sdtm, fhir, mapping = reader.sdtm, reader.fhir, reader.mapping
    if sdtm is not None or fhir is not None:
        if study_dir is not None:
            raise _usage("give a study folder, --sdtm or --fhir, not two of them")
        source = sdtm if sdtm is not None else fhir
        kind = "sdtm" if sdtm is not None else "fhir"

        def report_to(st) -> Path:  # named after the id the study got (an explicit --study-id wins)
            check_study_id(st.study_id, "--study-id" if study_id else
                           ("DM.STUDYID" if kind == "sdtm" else "the Bundle's identifier"))
            return store.resolve().parent / f"{safe_file_stem(st.study_id)}_{kind}_mapping_report.csv"

        # no --study-id: the reader's default id (SDTM: DM.STUDYID when unique; FHIR: what the Bundle states)
        study, _ = load_source(None, store, **reader.load_kwargs(), study_id=study_id, report_to=report_to,
                               csv_dialect=csv_dialect, ctx=ctx)
        sid = study.study_id
        with _progress(f"importing {sid}") as step, Store(store) as s:
            before = s.reader_options(sid) if s.fingerprint_of(sid) else None
            result = s.import_study(study, sid, folder=source, progress=step, replace=replace)
        if result.action == "replaced" and before is not None:  # review 40 A2: say what changed
            changed = sorted(k for k in set(before) | set(study.reader_options or {})
                             if before.get(k) != (study.reader_options or {}).get(k))
            if changed:
                console.print(f"{sid}: read with other reader options than its earlier import: "
                              f"{', '.join('the --mapping file' if k == 'mapping' else k for k in changed)}",
                              soft_wrap=True, highlight=False)
        # load_source has printed the reader's warnings already (review36 C5: each was printed twice)
        console.print(f"[green]{result}[/] -> {store}")
        return
    if study_dir is None:
        if spelled(ctx, "--study-id") == "--study":  # the grammar's spelling, read here as the id (review 41 diff2 8)
            raise _usage(f"import's --study is the old name of --study-id (the id to store under); give the folder "
                         f"as the argument: cartlab import {study_id}")
        raise _usage("name a study folder, or --sdtm DIR / --fhir PATH")
    if mapping is not None:
        raise _usage("--mapping applies to --sdtm or --fhir")
    # the SDTM / FHIR reader options on a study folder: refused as analyze refuses them (no source read)
    reader.refuse()
    check_study_path(study_dir)
    sid = study_id or study_dir.resolve().name
    check_study_id(sid, "--study-id" if study_id else "the folder's name")
    with _progress(f"importing {sid}") as step:
        # validate before the store is even opened: a bad folder never touches it
        if store.exists():
            files = [(p.name, sha256_file(p)) for p in study_files(study_dir)]
            with Store(store) as s:
                if s.fingerprint_of(sid) == fingerprint_files(sid, files, csv_dialect):
                    console.print(f"{sid}: unchanged (already imported: same files, --csv-dialect and cartlab "
                                  "version)")
                    return
                s.check_replace(sid, study_dir, replace)  # another folder under this id: refused before reading
        study = read_study(study_dir, sid, progress=lambda n: step(f"validating {n}"), csv_dialect=csv_dialect)
        with Store(store) as s:
            step("writing")
            result = s.import_study(study, sid, folder=study_dir, progress=step, csv_dialect=csv_dialect,
                                    replace=replace)
    _print_warnings(study.warnings)
    console.print(f"[green]{result}[/] -> {store}")


@app.command("list")
def list_cmd(
    store: StoreOpt = DEFAULT_STORE_PATH,
    subjects: Annotated[bool, typer.Option("--subjects", help="Also list every subject.")] = False,
) -> None:
    """List the studies (and optionally subjects) in the store.

    [bold]Example[/]: cartlab list --subjects
    """
    s = _open_store(store, read_only=True)
    with s:
        studies = s.studies()
        if studies.height == 0:
            console.print(f"{store}: no studies yet (cartlab import STUDY_DIR)")
            return
        t = Table(title=f"studies in {store}")
        for c in ("study", "subjects", "observations", "imported (UTC)", "folder"):
            t.add_column(c)
        for r in studies.iter_rows(named=True):
            t.add_row(
                r["study_id"], f"{r['n_subjects']:,}", f"{r['n_observations']:,}",
                str(r["imported_at"])[:19], r["folder"] or "",
            )
        console.print(t)
        if subjects:
            subj = s.table("subjects")
            t = Table(title="subjects")
            for c in ("study", "subject", "sex", "age", "disease", "target"):
                t.add_column(c)
            for r in subj.iter_rows(named=True):
                age = "" if r["age_years"] is None else f"{r['age_years']:g}"
                t.add_row(r["study_id"], r["subject_id"], r["sex"] or "", age, r["disease"] or "", r["target"] or "")
            console.print(t)


@app.command("show")
def show_cmd(
    subject: SubjectArg,
    store: StoreOpt = DEFAULT_STORE_PATH,
    study: StudyOpt = None,
    start: Annotated[Optional[float], typer.Option("--from", metavar="DAY", help="First day to show.")] = None,
    end: Annotated[Optional[float], typer.Option("--to", metavar="DAY", help="Last day to show.")] = None,
    csv_dialect: CsvDialectOpt = "standard",
    as_csv: Annotated[bool, typer.Option("--csv", help="Print the timeline as CSV (the table's columns and "
                                         "cells, * marks kept) instead of a table.")] = False,
) -> None:
    """Show one subject's course as a day-by-day timeline.

    Values marked * are reconstructed or synthetic (not measured). The subject is read from --study (a
    study folder or stored id), else from the store (--study is needed there when the subject id is in
    several studies). On a narrow terminal the numbers are never cut: the text columns wrap.

    [bold]Example[/]: cartlab show CD7-AML-001 --from -7 --to 30
    [bold]Example[/]: cartlab show CD7-AML-001 --csv > timeline.csv
    """
    from cartlab.report.timeline import subject_timeline

    if start is not None and end is not None and start > end:  # review 38 C7: not an empty table
        raise _usage(f"--from {start:g} is after --to {end:g}: give the first day to show, then the last")
    data = _subject_data(subject, store, study, csv_dialect)
    header, table, flagged = subject_timeline(data, subject, start=start, end=end)
    if as_csv:
        _print_table_csv(table)
        return
    console.print(header)
    for part in _fit_timeline(table, console.width):
        console.print(part)
    if flagged:
        console.print("[dim]* reconstructed or synthetic value (not measured); see the source_note column[/]")


def _fit_timeline(table: Table, width: int) -> list[Table]:
    """A timeline as tables that fit ``width`` columns with no number cut (review 47 F4: at 80 columns
    Tmax read '39.…'): the table itself when it fits; else the number columns by day, in as few tables
    as fit (each number column as wide as its widest cell and its header's longest word; headers wrap at
    words), then the text columns (doses, interventions, events / marrow) by day for the days that have
    any, wrapping at words. cartlab convention."""
    from rich.cells import cell_len
    from rich.measure import Measurement

    def need(col) -> int:  # the width a column needs: its widest cell, its header's longest word
        return max([cell_len(str(c)) for c in col._cells] + [cell_len(w) for w in str(col.header).split()] + [1])

    def natural(col) -> int:  # its width unwrapped: a table of natural widths is never collapsed (cut)
        return max(need(col), cell_len(str(col.header)))

    if Measurement.get(console, console.options.update(width=10_000), table).maximum <= width:
        return [table]
    day, *rest = table.columns
    numbers, texts = [c for c in rest if c.justify == "right"], [c for c in rest if c.justify != "right"]
    groups: list[list] = []
    for col in numbers:  # a column takes its width + 3 (padding and border); a table 2 more (edges, day)
        if groups and 2 + sum(natural(c) + 3 for c in (day, *groups[-1], col)) <= width:
            groups[-1].append(col)
        else:
            groups.append([col])
    parts = []
    for keep in (*groups, texts):
        rows = [i for i in range(table.row_count) if any(str(c._cells[i]) for c in keep)]
        t = Table(show_lines=False, header_style="bold", pad_edge=False)
        for col in (day, *keep):
            right = col.justify == "right" or col is day
            t.add_column(str(col.header), justify=col.justify, min_width=need(col) if right else None,
                         overflow="fold" if not right else "ellipsis")
        for i in rows:
            t.add_row(*(str(col._cells[i]) for col in (day, *keep)))
        parts.append(t)
    return parts


def _print_table_csv(table: Table) -> None:
    """A rich table's header and cells as CSV on stdout (review 47 F4: ``show --csv``)."""
    import csv

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow([str(c.header) for c in table.columns])
    for row in zip(*(c._cells for c in table.columns)):
        writer.writerow([str(x) for x in row])


@app.command("export")
def export_cmd(
    ctx: typer.Context,
    study: ExportStudyArg = None,
    out_arg: Annotated[Optional[Path], typer.Argument(
        metavar="OUT", hidden=True, help="Old form of --out DIR (deprecated).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", metavar="DIR",
                                                help="Folder to write the study folder into.")] = None,
    adam: Annotated[Optional[Path], typer.Option(
        "--adam", metavar="DIR", help="Write the analysis as ADaM datasets (ADSL, ADLB, ADVS, ADAE, ADRS, ADTTE, ADPC, ADPP, ADEX) "
        "with define.csv and a Define-XML skeleton into this folder.")] = None,
    fhir_out: Annotated[Optional[Path], typer.Option(
        "--fhir", metavar="FILE", help="Write the study as a FHIR R4 collection Bundle (JSON) to this file.")] = None,
    sdtm: SdtmOpt = None,
    mapping: MappingOpt = None,
    partial_dates: PartialDatesOpt = "skip",
    partial_death_dates: PartialDeathDatesOpt = "impute",
    partial_event_dates: PartialEventDatesOpt = "impute",
    study_day_fallback: StudyDayFallbackOpt = False,
    store: StoreOpt = DEFAULT_STORE_PATH,
    fmt: Annotated[Optional[str], typer.Option(
        "--format", metavar="csv|parquet", help="The study folder's files (--out): csv or parquet (default csv). "
        "Not for ADaM: use --adam-format (the ADaM formats given here still work, with a deprecation "
        "warning).")] = None,
    adam_format: Annotated[Optional[str], typer.Option(
        "--adam-format", metavar="xpt,csv,parquet", help="The ADaM datasets' files (--adam): xpt, csv and/or "
        "parquet, comma-separated (default xpt,csv).")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Write into a folder that is not empty and not an earlier export of the same kind, replacing "
        "its study tables (--out) or ADaM files (--adam); other files are kept.")] = False,
    strict: Annotated[bool, typer.Option(
        "--strict", help="ADaM: stop with an error when an engine cannot analyse a subject or a dataset cannot be "
        "derived, instead of writing the other datasets and naming what was left out.")] = False,
    options_file: OptionsFileOpt = None,
    set_options: SetOpt = None,
    csv_dialect: CsvDialectOpt = "standard",
) -> None:
    """Write a study out: as a study folder (values and units as given), as ADaM (--adam) or as a FHIR Bundle (--fhir).

    The folder must be new, empty or an earlier export of the same kind, which is then replaced as a whole
    (a file the new export does not write is deleted); anything else is refused unless --force (--fhir: an
    existing file that is not an earlier FHIR export of cartlab is refused unless --force). The export
    is written beside the folder and swapped in when complete: if anything fails, nothing in it changes.
    ADaM: a dataset that cannot be derived (e.g. ADTTE without follow-up) is left out and named; the
    others are written; the analysis behind it takes --set, --options and --strict as cartlab analyze.
    SDTM is read, not written: --sdtm gives the input (as in cartlab import --sdtm and analyze --sdtm);
    there is no SDTM output (ADaM, a study folder or FHIR are).
    In the examples, out/seed_case is the study folder cartlab demo writes.

    [bold]Example[/]: cartlab export out/seed_case --out exported/ --format parquet
    [bold]Example[/]: cartlab export out/seed_case --adam adam/ --set crs.fever_threshold_c=38.3
    [bold]Example[/]: cartlab export --adam adam/ --sdtm sdtm/ --adam-format xpt
    [bold]Example[/]: cartlab export out/seed_case --fhir seed_bundle.json
    """
    targets = [t for t in (out or out_arg, adam, fhir_out) if t is not None]
    if len(targets) != 1:
        raise _usage("give one output: --out FOLDER (study folder), --adam FOLDER or --fhir FILE"
                     if not targets else "give one output at a time (--out, --adam or --fhir)")
    if strict and adam is None:
        raise _usage("--strict applies to --adam")
    if (options_file is not None or set_options) and adam is None:
        raise _usage("--set and --options apply to --adam (the analysis behind the ADaM datasets)")
    # review 46 SDTM F8: the SDTM reader's options as analyze, report and import take them
    source = SourceOptions(sdtm=sdtm, mapping=mapping, partial_dates=partial_dates,
                           partial_death_dates=partial_death_dates, partial_event_dates=partial_event_dates,
                           study_day_fallback=study_day_fallback)
    options = (analysis_options(options_file, set_options, strict, protocol="none", command="export")
               if adam is not None else None)
    if adam_format is not None and adam is None:
        raise _usage("--adam-format applies to --adam (a study folder's files: --format csv|parquet)")
    if adam is not None and fmt is not None:  # the old spelling of --adam-format (one option, two meanings)
        if adam_format is not None:
            raise _usage("give the ADaM formats once: --adam-format (--format is the study folder's)")
        deprecated("export --adam ... --format", "--adam-format (--format is the study folder's csv|parquet)")
        adam_format, fmt = fmt, None
    if fhir_out is not None:
        if fmt is not None:
            raise _usage("--format applies to a study folder (--out), not --fhir")
        return _export_fhir(study, store, source, fhir_out, force, csv_dialect, ctx)
    if adam is None and fmt not in (None, "csv", "parquet"):
        raise _usage("--format must be csv or parquet for a study folder")
    formats = ()
    if adam is not None:
        from cartlab.io.adam import FORMATS

        formats = tuple(f.strip() for f in (adam_format or "xpt,csv").split(",") if f.strip())
        if not formats or any(f not in FORMATS for f in formats):
            raise _usage(f"--adam-format {adam_format!r}; choose from {', '.join(FORMATS)} (comma-separated)")
    target = adam if adam is not None else _out(out, out_arg)
    _export_folder(study, store, source, target, formats, fmt, force, strict, csv_dialect,
                   options, ctx)


def _is_fhir_export(path: Path) -> bool:
    """``path`` holds a FHIR Bundle that cartlab wrote (export --fhir): a collection Bundle whose
    resources carry cartlab's row extension (or none at all)."""
    from cartlab.io.fhir.mapping import EXT_ROW

    try:
        text = path.read_text(encoding="utf-8")
        obj = json.loads(text)
    except (OSError, ValueError):
        return False
    return (isinstance(obj, dict) and obj.get("resourceType") == "Bundle" and obj.get("type") == "collection"
            and (EXT_ROW in text or not obj.get("entry")))


def _export_fhir(study, store, source: SourceOptions, fhir_out: Path, force: bool = False,
                 csv_dialect: str = "standard", ctx=None) -> None:
    from cartlab.io.atomic import check_output_path, write_error
    from cartlab.io.fhir import write_fhir_bundle

    check_output_path(fhir_out, "file", "the FHIR Bundle")
    if fhir_out.exists() and not force and not _is_fhir_export(fhir_out):
        raise _usage(f"{fhir_out} exists and it is not an earlier cartlab FHIR export: cartlab will not write "
                     "over it", hint="choose a new file name, or pass --force to replace it")
    data, _ = load_source(study, store, **source.load_kwargs(), report_to=fhir_out.parent,
                          csv_dialect=csv_dialect, ctx=ctx)
    try:
        path = write_fhir_bundle(data, fhir_out)
    except OSError as exc:
        raise write_error(fhir_out, exc, "the FHIR Bundle") from exc
    console.print(f"[green]wrote[/] {path} (FHIR R4 Bundle, {data.subjects.height} subjects)")


def _export_folder(study, store, source: SourceOptions, target: Path, formats: tuple[str, ...],
                   fmt: str | None, force: bool, strict: bool, csv_dialect: str = "standard",
                   options=None, ctx=None) -> None:
    """A study folder (no formats) or ADaM export, staged beside ``target`` and swapped in whole."""
    from rich.markup import escape

    from cartlab.io.atomic import export_folder, write_error

    if formats:
        from cartlab.io.adam import is_adam_file as owned
    else:
        from cartlab.io.study_writer import is_study_file as owned
    kind = "ADaM" if formats else "study folder"
    reading = False
    try:
        with export_folder(target, kind, owned=owned, force=force) as t:
            reading = True  # an OSError while reading the input is not a write error
            # the mapping report goes into the staging folder; the path printed is where it ends up
            data, _ = load_source(study, store, **source.load_kwargs(),
                                  report_to=t.staging / "sdtm_mapping_report.csv" if source.sdtm is not None else None,
                                  report_shown=target, csv_dialect=csv_dialect, ctx=ctx)
            reading = False
            t.meta["study_id"] = data.study_id
            if formats:
                result, analysis = _write_adam(data, t.staging, formats, strict, options)
                t.meta.update(not_written=result["not_written"], notes=result["notes"])
            else:
                from cartlab.io.study_writer import write_study_tables

                write_study_tables(data, t.staging, fmt=fmt or "csv")
    except OSError as exc:
        if reading:
            raise
        raise write_error(target, exc, f"the {kind} export") from exc
    if formats:
        _print_skipped(analysis)
        rows = ", ".join(f"{k} {v:,}" for k, v in result["datasets"].items())
        console.print(f"[green]wrote[/] ADaM ({', '.join(formats)}) to {target}: {rows}", soft_wrap=True)
        for name, why in result["not_written"].items():
            err.print(f"  [yellow]![/] {name} not written: {escape(why)}", soft_wrap=True, highlight=False)
        for note in result["notes"]:
            err.print(f"  [yellow]![/] {escape(note)}", soft_wrap=True, highlight=False)
    else:
        console.print(f"[green]wrote[/] {target} ({data.subjects.height} subjects)")
    if t.replaced:  # an earlier export (or, with --force, the files of this kind) replaced as a whole
        what = f"the earlier {t.previous} export" if t.previous else f"the {kind} files (--force)"
        gone = f"; removed {', '.join(t.removed)} (not in this export)" if t.removed else ""
        console.print(f"replaced {what} in {target}{gone}", soft_wrap=True, highlight=False)


def _write_adam(data, folder: Path, formats: tuple[str, ...], strict: bool, options=None):
    """ADaM datasets of the analysis of ``data`` with ``options`` (AnalysisOptions; default: the defaults)."""
    from cartlab.analyze import Analysis, AnalysisOptions
    from cartlab.io.adam import write_adam

    with _progress("analysing for ADaM") as step:
        analysis = Analysis(data, options if options is not None else AnalysisOptions(strict=strict), progress=step)
        return write_adam(analysis, folder, formats, strict=strict), analysis


#: the largest --n of `cartlab synthetic`: the generator holds the whole cohort in memory (about 0.5 GB
#: per 1000 subjects at its peak and 1,500 observation rows, 76 MB of CSV, per subject; review 38 B1)
SYNTHETIC_MAX_N = 10_000


@app.command("synthetic")
def synthetic_cmd(
    out_arg: Annotated[Optional[Path], typer.Argument(
        metavar="OUT", hidden=True, help="Old form of --out DIR (deprecated).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", metavar="DIR", help="Folder to write the study into.")]
    = None,
    n: Annotated[int, typer.Option("--n", min=1, max=SYNTHETIC_MAX_N,
                                   help=f"Number of subjects (1 to {SYNTHETIC_MAX_N:,}: the cohort is built in "
                                        "memory, about 0.5 GB per 1,000 subjects).")] = 100,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed (same seed, same files).")] = 0,
    fmt: Annotated[str, typer.Option("--format", metavar="csv|parquet", help="csv or parquet.")] = "csv",
    force: Annotated[bool, typer.Option(
        "--force", help="Write into a folder that is not empty: its study tables (subjects, doses, observations, "
        "interventions, events; .csv or .parquet) are replaced once the new ones are written; other files "
        "(a README.md ...) are kept.")] = False,
) -> None:
    """Write a seeded synthetic CAR-T cohort (CD7 and CD19 programmes) as a study folder.

    Every row carries source=synthetic. Useful for trying cartlab, tests and benchmarks. The diseases
    are AML, B-ALL and LBCL; cartlab has no response criteria for LBCL yet, so their best response is
    not evaluable. A folder that is not empty is refused unless --force is given. The study is written
    into a temporary folder beside --out and moved in only when complete: a failed run leaves the
    earlier study as it was.

    [bold]Example[/]: cartlab synthetic --out cohort/ --n 200 --seed 7
    """
    import shutil
    import tempfile

    from cartlab.datasets import synthetic_cohort

    if fmt not in ("csv", "parquet"):
        raise _usage("--format must be csv or parquet")
    out = _out(out, out_arg)
    if out.exists() and not out.is_dir():
        raise _usage(f"{out}: a file, not a folder to write the study into")
    if out.is_dir() and any(out.iterdir()) and not force:
        n_files = sum(1 for _ in out.iterdir())
        raise _usage(f"{out} is not empty ({n_files} entries): cartlab will not overwrite it",
                     hint="choose a new folder, or pass --force to replace its study tables (other files are kept)")
    from cartlab.io.atomic import write_error

    stage = None
    try:
        parent = out.absolute().parent
        parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.synthetic-", dir=parent))
        try:
            synthetic_cohort(n, seed=seed, out_dir=stage, fmt=fmt, progress=err.is_terminal)
        except MemoryError:
            from cartlab.errors import CartlabError

            raise CartlabError(f"not enough memory to build {n:,} synthetic subjects (about {n * 1500:,} "
                               "observation rows, held in memory)",
                               hint=f"use a smaller --n; {out} was left as it was") from None
        _move_study_in(stage, out)
    except OSError as exc:  # e.g. --out /proc/x: the path given, never the staging folder's name
        raise write_error(out, exc, "the synthetic study") from None
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
    console.print(f"[green]wrote[/] {out} ({n} synthetic subjects, seed {seed})")


def _move_study_in(stage: Path, out: Path) -> None:
    """The finished study in ``stage`` becomes ``out``: a new folder is renamed into place; an
    existing one (--force) loses its old study tables (either format) and gets the new ones, each by
    an atomic rename; its other files stay (review 38 B8)."""
    import os

    from cartlab.io.folder import TABLE_FORMATS, TABLE_NAMES

    if not out.exists():
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(stage, 0o777 & ~umask)  # mkdtemp's folder is private (0700); a study folder is not
        os.replace(stage, out)
        return
    new = {p.name for p in stage.iterdir()}
    for p in out.iterdir():
        stem, _, ext = p.name.rpartition(".")
        if (p.is_file() and p.name not in new and stem.lower() in TABLE_NAMES
                and ext.lower() in TABLE_FORMATS):
            p.unlink()
    for name in sorted(new):
        os.replace(stage / name, out / name)


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="Output folder.")] = Path("out"),
    store: StoreOpt = DEFAULT_STORE_PATH,
) -> None:
    """Run the built-in seed case end to end: import, analyse, report.

    The seed case is the CD7 CAR-T AML patient of Cao et al. 2022 (NCT04762485): the paper's
    stated values are kept exactly; the daily course around them is reconstructed (synthetic) and
    labelled as such everywhere.

    [bold]Example[/]: cartlab demo --out out/
    """
    from cartlab.analyze import Analysis, write_analysis
    from cartlab.cli.analysis import ANALYSIS_KIND, is_analysis_file, is_analysis_output
    from cartlab.datasets import seed_case_path
    from cartlab.io import read_study
    from cartlab.io.atomic import atomic_replace_folder, check_output_path, export_folder, write_error
    from cartlab.protocol import (
        DoseOptions,
        body_size,
        dose_plan,
        load_protocol,
        subject_patient,
    )
    from cartlab.protocol.sheet import sheet_context, write_dosing_sheet
    from cartlab.report import write_study_report
    from cartlab.store import Store
    from cartlab.store.duckdb_store import check_store_path

    # both destinations are checked before anything is written: a bad --out or --store stops here
    check_output_path(out, "folder", "the demo")
    check_store_path(store)
    proto = load_protocol("nct04762485")
    store_path = store  # the default store, so that cartlab list / show / explain work next
    folder = out / "seed_case"
    try:
        # everything is written in a folder beside --out and moved in when complete: a failure (a store
        # that cannot be created, a full disk) leaves --out as it was; the demo's own folders are replaced
        with atomic_replace_folder(out, replace=DEMO_FOLDERS) as stage:
            shutil.copytree(seed_case_path(), stage / "seed_case")
            seed = read_study(stage / "seed_case", "seed_case")
            with Store(store_path) as s:  # opened (created) before the demo writes anything it keeps
                result = s.import_study(seed, "seed_case", folder=folder)
            console.print(f"1. seed case study folder: {folder}")
            console.print(f"2. imported into {store_path}: {result}")
            with Store(store_path, read_only=True) as s:
                study = s.load_study("seed_case")

            analysis = Analysis(study, protocol=proto)
            with export_folder(stage / "analysis", ANALYSIS_KIND, owned=is_analysis_file, noun="output",
                               earlier=is_analysis_output) as t:
                write_analysis(analysis, t.staging)
            _print_skipped(analysis)
            summary = analysis.subject_summary()
            console.print(f"3. analysis: {out / 'analysis' / 'subject_summary.csv'} (protocol {proto.id}: "
                          "dose_plan, eligibility, protocol_deviations)")
            figures = _seed_twin_figures(stage / "twin", study.subject_ids[0], shown=out / "twin")
            staged_report = write_study_report(study, stage / "report", summary=summary, protocol=proto,
                                               analysis=analysis, figures=figures)
            report = out / staged_report.relative_to(stage)
            console.print(f"4. report: [bold green]{report.resolve()}[/]")
            patient, _ = subject_patient(study, proto, study.subject_ids[0])
            opts = DoseOptions()
            sheet = write_dosing_sheet(sheet_context(
                proto, dose_plan(proto, patient, opts), body_size(patient, proto, opts), opts, patient,
                input_note=("Demo: age and sex are stated by the paper; weight, height and the screening "
                            "creatinine (day -6) are reconstructed (synthetic), not stated by the paper.")),
                stage / "report" / "dosing_sheet.html")
            console.print(f"5. dosing sheet ({proto.id}; weight and height reconstructed): "
                          f"{out / sheet.relative_to(stage)}")
            from cartlab.cli.kinetics_io import stein_command

            meta = stein_command(study, stage / "stein")
            console.print(f"6. Stein 2019 kinetic fit of CARCOPY: {out / 'stein'} ({meta['n_observations']} "
                          f"samples, {meta['n_not_measured']} of them reconstructed); the model's peak is the "
                          "corner of its expansion and contraction lines, above the observed 183,945 on day "
                          "14: see docs/kinetics/stein_seed_peak.md", soft_wrap=True)
    except OSError as exc:  # writing the demo's folder: named by the path given, never the staging folder
        raise write_error(out, exc, "the demo") from exc
    console.print(
        "[yellow]Note:[/] rows with source=reconstructed are synthetic, reconstructed around the "
        "paper's stated values."
    )
    console.print(f"report: [bold green]{report.resolve()}[/]", soft_wrap=True)
    console.print(f"dashboard: [bold]{_this_command()} serve --store {shlex.quote(str(store_path))}[/]", soft_wrap=True)


#: the folders ``cartlab demo`` writes into --out (an earlier demo's are replaced as a whole)
DEMO_FOLDERS = ("seed_case", "analysis", "twin", "report", "stein")


def _this_command() -> str:
    """How the user ran cartlab (``.venv/bin/cartlab`` after ``make demo``), to print a command that works."""
    prog = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("cartlab")
    if prog.name != "cartlab":
        return "cartlab"
    try:
        return shlex.quote(str(prog.resolve().relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(prog))


def _seed_twin_figures(folder: Path, subject_id: str, shown: Path | None = None) -> dict:
    """The seed's digital twin (fitted to the paper's values and anchors) as a report section; a
    failure is reported and the demo goes on without it. ``shown``: the folder printed (where
    ``folder`` ends up once the demo is moved into place)."""
    from cartlab.report.html import ReportFigure

    try:
        from cartlab.twin.plots import seed_twin_figure

        folder.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            png, table = seed_twin_figure(folder / "seed_twin.png", with_table=True)
        table.write_csv(folder / "seed_twin_anchors.csv")
    except Exception as exc:  # noqa: BLE001 - one engine failing never sinks the demo
        err.print(f"[yellow]digital twin skipped:[/] {exc}")
        return {}
    notes = "; ".join(dict.fromkeys(str(w.message) for w in caught))
    console.print(f"   digital twin of the seed case (fitted to the paper's values and anchors): "
                  f"{(shown / png.name) if shown is not None else png}"
                  + (f" [yellow]({notes})[/]" if notes else ""), soft_wrap=True)
    caption = ("Digital twin of this patient (cartlab.twin, docs/twin.md): the model is fitted to the values the "
               "paper states (filled markers) and to its qualitative anchors only; lines and bands are SIMULATED, "
               "not measured; hollow markers are the reconstructed course, shown for comparison and not fitted. "
               "The table compares the paper with the twin's simulated course." + (f" Note: {notes}." if notes else ""))
    svg = png.with_suffix(".svg")
    return {subject_id: [ReportFigure(title="Digital twin (simulated)", png=png.read_bytes(), caption=caption,
                                      svg=svg.read_bytes() if svg.exists() else None,
                                      anchor="twin", nav="Twin", table=table,
                                      alt="Digital twin of the seed patient: simulated course against the paper")]}


def _out(option: Path | None, argument: Path | None) -> Path:
    """The output folder: --out, or the positional OUT of earlier versions (deprecated, with a warning)."""
    if option is not None and argument is not None and option != argument:
        raise _usage(f"two output folders given ({argument} and --out {option}): give one")
    if option is None and argument is None:
        raise _usage("give the output folder with --out DIR")
    if option is None:
        deprecated(f"the output folder as an argument ({argument})", f"--out {argument}")
    return option if option is not None else argument


from cartlab.cli import store_delete  # noqa: E402,F401 - registers `cartlab delete` after `list`
