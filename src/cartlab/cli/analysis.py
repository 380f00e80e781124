"""Commands that analyse a study: analyze, report, explain."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from cartlab.cli.base import (  # OptionsFileOpt, SetOpt, StrictOpt, analysis_options: also imported from here
    DEFAULT_STORE_PATH,
    CsvDialectOpt,
    OptionsFileOpt,
    SetOpt,
    StoreOpt,
    StrictOpt,
    _debug,
    _print_skipped,
    _progress,
    _protocol_or_exit,
    _subject_data,
    _usage,
    analysis_options,
    app,
    console,
)
from cartlab.cli.grammar import STUDY_HELP, StudyOpt, SubjectArg, SubjectOpt, bundled, study_argument
from cartlab.cli.interop import SourceOptions, load_source, reader_options

SourceArg = study_argument(STUDY_HELP + " None: --sdtm, --fhir, or the store's only study. The same as --study "
                                        "STUDY.")
#: a second argument: the output folder is --out DIR everywhere (a clear message, not "unexpected extra argument")
OutArgRefused = Annotated[Optional[str], typer.Argument(metavar="OUT", hidden=True, help="Not accepted: use --out.")]


def _refuse_out_arg(command: str, study: str | None, out_arg: str | None) -> None:
    if out_arg is not None:
        raise _usage(f"unexpected argument {out_arg!r}: the output folder is given with --out",
                     hint=f"cartlab {command} {study or 'STUDY'} --out {out_arg}")


@dataclass(frozen=True)
class AnalysisSettings:
    """--strict, --options FILE and --set ENGINE.OPTION=VALUE of a command that runs an analysis
    (analyze, report): one place turns them into the analysis's options."""

    strict: bool = False
    options_file: Path | None = None
    set_options: list[str] | None = None

    def options(self, protocol: str | None):
        """The AnalysisOptions; a bad option stops here, before any reading. ``protocol``: "given" or
        "missing" (a protocol.* option without --protocol is refused)."""
        return analysis_options(self.options_file, self.set_options, self.strict, protocol=protocol)


#: the parameters of :class:`AnalysisSettings`, each its own option in --help
analysis_settings = bundled(AnalysisSettings, (("strict", StrictOpt, False), ("options_file", OptionsFileOpt, None),
                                               ("set_options", SetOpt, None)))


#: the kind of output ``analyze`` writes (its marker, .cartlab-export.json, names it)
ANALYSIS_KIND = "analysis"
_ANALYSIS_FIXED = {"analysis.json", "subject_summary.csv", "sdtm_mapping_report.csv", "sdtm_mapping_report.md",
                   "fhir_mapping_report.csv"}


def _earlier_manifest(out: Path) -> dict | None:
    """The analysis.json of an analysis an earlier cartlab wrote in ``out`` (None: there is none)."""
    import json

    try:
        meta = json.loads((Path(out) / "analysis.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(meta, dict) and "cartlab_version" in meta and isinstance(meta.get("engines"), list)
    return meta if ok else None


def _earlier_tables(out: Path) -> set[str]:
    """The table files an earlier analysis in ``out`` wrote, from its analysis.json (engines, tables)."""
    meta = _earlier_manifest(out) or {"engines": []}
    return {f"{t}.csv" for e in meta["engines"] if isinstance(e, dict) for t in e.get("tables") or []
            if isinstance(t, str)}


def is_analysis_output(out: Path) -> bool:
    """``out`` holds an analysis that an earlier cartlab wrote (its analysis.json, before the marker)."""
    return _earlier_manifest(out) is not None


def is_analysis_file(name: str) -> bool:
    """A file every analysis writes (the tables of an earlier one are listed in its marker)."""
    return name in _ANALYSIS_FIXED


@app.command("analyze")
@reader_options
@analysis_settings
def analyze_cmd(
    ctx: typer.Context,
    study: SourceArg = None,
    out_arg: OutArgRefused = None,
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="Output folder.")] = Path("out/analysis"),
    protocol: Annotated[Optional[str], typer.Option(
        "--protocol", "-p", help="Also check the study against a protocol (shipped id or YAML): dose_plan, "
        "eligibility, eligibility_verdict and protocol_deviations tables.")] = None,
    settings: AnalysisSettings = None,
    source: SourceOptions = None,
    store: StoreOpt = DEFAULT_STORE_PATH,
    csv_dialect: CsvDialectOpt = "standard",
    workers: Annotated[int, typer.Option(
        "--workers", min=1, help="Analyse in this many worker processes, --batch-size subjects at a time (for "
        "large studies; the files written are the same).")] = 1,
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", min=1, help="Subjects per batch (default: 500 with --workers > 1 or more than 2000 "
        "subjects; otherwise the whole study at once). Lower it to use less memory.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Write into a folder that holds other files (not an earlier analysis): its analysis "
                        "files are replaced, the other files kept.")] = False,
) -> None:
    """Run every engine on a study (a folder, a stored study, --sdtm DIR or --fhir PATH); write DIR/subject_summary.csv, every table and DIR/analysis.json.

    An engine (or a subject in it) that cannot run is left out, listed on the screen and in
    analysis.json under "skipped" (engine, subjects, reason, how to fix); everything else is written.

    An SDTM or FHIR source writes its mapping report (every input record: mapped, or why not) into
    the output folder too.

    An earlier analysis in --out is replaced as a whole (a table it wrote and this one does not is
    deleted); a folder holding other files is refused unless --force.

    [bold]Example[/]: cartlab analyze out/seed_case --out results/
    [bold]Example[/]: cartlab analyze --sdtm sdtm/ --out results/
    [bold]Example[/]: cartlab analyze big_study/ --workers 2 --out results/
    """
    from cartlab.analyze import Analysis, write_analysis
    from cartlab.analyze_batched import AUTO_BATCH_ABOVE, DEFAULT_BATCH_SIZE, InMemorySource, write_analysis_batched
    from cartlab.io.atomic import export_folder, write_error

    _refuse_out_arg("analyze", study, out_arg)
    _refuse_out_in_study(study, out)
    options = settings.options("given" if protocol else "missing")  # a bad option stops before any reading
    proto = _protocol_or_exit(protocol) if protocol else None

    def owned(name: str) -> bool:  # the files of an earlier analysis: replaced as a whole
        return is_analysis_file(name) or name in earlier

    earlier = _earlier_tables(out) if out.is_dir() else set()
    reading = False
    from cartlab.errors import subject_ids_in_warnings

    # review 40 B2: the terminal output is a log (issue 17): warnings count subjects and point to the
    # tables naming them, as `report` does; --debug names them
    with subject_ids_in_warnings(_debug(ctx)):
        try:
            # --out is checked first (a file, a folder of other files: one message, before any work); the
            # analysis is written beside it and swapped in when complete
            with export_folder(out, ANALYSIS_KIND, owned=owned, force=force, what="the analysis", noun="output",
                               earlier=is_analysis_output) as t:
                reading = True  # an OSError while reading the input is not a write error
                data, _ = load_source(study, store, **source.load_kwargs(), csv_dialect=csv_dialect,
                                      report_to=t.staging, report_shown=out, ctx=ctx)
                reading = False
                t.meta["study_id"] = data.study_id
                if batch_size is None and (workers > 1 or data.subjects.height > AUTO_BATCH_ABOVE):
                    batch_size = DEFAULT_BATCH_SIZE
                if batch_size is not None and batch_size < data.subjects.height:
                    with _progress("analysing", total=1) as step:
                        def done(k: int, n: int) -> None:
                            step(f"batch {k}/{n} ({batch_size} subjects each, {workers} worker(s))", completed=k,
                                 total=n)

                        step("starting the workers" if workers > 1 else "batch 1")
                        path, analysis, tables = write_analysis_batched(
                            InMemorySource(data), t.staging, options, proto, batch_size=batch_size, workers=workers,
                            progress=done)
                else:
                    with _progress("analysing") as step:
                        analysis = Analysis(data, options, protocol=proto, progress=step)
                        analysis.tables()
                        step("writing")
                        path, tables = write_analysis(analysis, t.staging)
        except OSError as exc:
            if reading:
                raise
            raise write_error(out, exc, "the analysis") from exc
    path = out / Path(path).relative_to(t.staging)  # where it is now, not the staging folder
    with subject_ids_in_warnings(_debug(ctx)):
        _print_skipped(analysis)
    console.print(f"[green]wrote[/] {path} ({data.subjects.height} subjects) and {len(tables)} tables: "
                  f"{', '.join(t + '.csv' for t in tables)}", soft_wrap=True)
    _print_not_measured(analysis)


def _print_not_measured(analysis) -> None:
    """Say when the results rest on rows that were not measured (reconstructed / synthetic / simulated):
    the tables carry it per subject (subject_summary.csv ``data_source``), the screen says it once."""
    from cartlab.model import NOT_MEASURED_SOURCES
    from cartlab.provenance import data_source_totals

    if not analysis.has("data_sources"):
        return
    c = data_source_totals(analysis.table("data_sources"))
    if c["not_measured"]:
        kinds = ", ".join(k for k in NOT_MEASURED_SOURCES if c[k])
        console.print(f"[yellow]note:[/] {c['not_measured']:,} of {c['total']:,} input rows are {kinds} (not "
                      "measured): subject_summary.csv column data_source says which subjects, analysis.json "
                      "data_sources counts them", soft_wrap=True)


@app.command("report")
@reader_options
@analysis_settings
def report_cmd(
    ctx: typer.Context,
    study: SourceArg = None,
    out_arg: OutArgRefused = None,
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="Output folder.")] = Path("out/report"),
    subject: SubjectOpt = None,
    protocol: Annotated[Optional[str], typer.Option(
        "--protocol", "-p", help="Add the protocol section (planned doses, eligibility, deviations).")] = None,
    settings: AnalysisSettings = None,
    source: SourceOptions = None,
    store: StoreOpt = DEFAULT_STORE_PATH,
    csv_dialect: CsvDialectOpt = "standard",
    workers: Annotated[Optional[int], typer.Option(
        "--workers", min=1, help="Processes drawing the figures (default: the usable cores).")] = None,
    pdf: Annotated[bool, typer.Option("--pdf/--no-pdf", help="Also write the study page as study.pdf.")] = True,
    png: Annotated[bool, typer.Option("--png", help="Also write each subject's course figure as PNG (the pages "
                                      "show the SVG; a PNG adds about 0.2 s of drawing per subject).")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Write into a folder that holds other files (not an earlier report): its report "
                        "files are replaced, the other files kept.")] = False,
    csv_formula_guard: Annotated[str, typer.Option(
        "--csv-formula-guard", metavar="quote|off", help="tables/subject_summary.csv: 'quote' prefixes ' to a text cell starting "
        "with = + - @ (a spreadsheet formula; OWASP CSV Injection), 'off' writes cells unchanged.")] = "quote",
) -> None:
    """Write the study report: a study page with the cohort views (swimmer plot, grade distributions,
    Kaplan–Meier, expansion curves, toxicity and response tables) and a page per subject with its
    course figure (the style of the paper's Figure 1); every figure also as PNG and SVG in figures/,
    the study page also as study.pdf.

    An earlier report in --out is replaced as a whole; a folder holding other files is refused
    unless --force. --subject into a folder holding a study report is refused (the study page and
    tables would stay beside a page from another run) unless --force, which removes that report
    (index.html, study.pdf, tables/, figures/, subject pages) before writing the subject's page.

    --subject SUBJECT: only this subject's page (a stored study's subject: --study, or the STUDY argument).

    [bold]Example[/]: cartlab report out/seed_case --out report/   (one subject: --subject ID)
    """
    from cartlab.analyze import Analysis
    from cartlab.io.atomic import check_output_path, write_error
    from cartlab.report import write_study_report, write_subject_report
    from cartlab.report.study import check_report_folder

    _refuse_out_arg("report", study, out_arg)
    from cartlab.io.csv_safe import check_guard

    check_guard(csv_formula_guard)  # a bad value is one message before any work (not after the analysis)
    # the output folder first: a bad --out is one message naming it, before any work
    if subject:
        check_output_path(out, "folder", "the report")
        stale = _study_report_in(out, force)
    else:
        check_report_folder(out, force)
    options = settings.options("given" if protocol else "missing")
    proto = _protocol_or_exit(protocol) if protocol else None
    data, _ = load_source(study, store, **source.load_kwargs(), csv_dialect=csv_dialect, report_to=out, ctx=ctx)
    if subject and subject not in data.subject_ids:
        raise _usage(f"no subject {subject!r} in {data.study_id}")  # study None: the store's only study
    if subject:  # engines are per subject (batched runs agree): analyse this one, report only its problems
        data = data.subset([subject])
    from cartlab.errors import subject_ids_in_warnings

    # the terminal output of a report is a log: warnings and the "not analysed" table give counts and
    # point to the tables naming the subjects (--debug names them), issue 17
    with subject_ids_in_warnings(_debug(ctx)), \
            _progress("writing report", total=1 if subject else len(data.subject_ids)) as step:
        analysis = Analysis(data, options, protocol=proto, progress=step)
        summary = analysis.subject_summary()
        try:
            if subject:
                _remove_report_files(out, stale)  # --force: the earlier study report goes, not kept beside
                path = write_subject_report(data, subject, out, summary=summary, protocol=proto, analysis=analysis,
                                            png=png)
            else:
                # force: the folder was checked above (a mapping report --sdtm/--fhir wrote there is kept)
                path = write_study_report(data, out, summary=summary, protocol=proto, analysis=analysis,
                                          progress=lambda k, n: step("subject pages", completed=k, total=n),
                                          workers=workers, pdf=pdf, force=True, csv_formula_guard=csv_formula_guard,
                                          name_subjects_in_warnings=_debug(ctx), png=png)
        except OSError as exc:  # e.g. --out /proc/x: the user's path, never an internal temporary folder
            raise write_error(out, exc, "the report folder") from exc
        _print_skipped(analysis)
    console.print(f"[green]report:[/] {path}")



def _refuse_out_in_study(study, out: Path) -> None:
    """--out is the study folder itself: refused even with --force (its result tables would then be
    read as unknown files of the study by every later command; review 38 C7)."""
    if study is None or not Path(str(study)).is_dir() or not out.exists():
        return
    try:
        same = os.path.samefile(str(study), out)
    except OSError:
        return
    if same:
        raise _usage(f"--out {out} is the study folder itself: cartlab will not write results into a study",
                     hint="give another --out, e.g. --out results/. Nothing was written.")


def _study_report_in(out: Path, force: bool) -> list[str]:
    """The report files of an earlier study report in ``out`` (index.html, study.pdf, tables/ ...):
    refused for ``report --subject`` unless ``force``, then returned to be removed (review 38 B4)."""
    from cartlab.report.study import is_report_entry

    if not out.is_dir() or not any((out / n).exists() for n in ("index.html", "study.pdf", "tables")):
        return []
    # the export marker (.cartlab-export.json) is kept: the folder stays a cartlab report folder, so a later full report
    # replaces it (review38 diff2 B8)
    entries = sorted(n for n in os.listdir(out) if is_report_entry(n))
    if not force:
        raise _usage(f"{out} holds a study report (index.html, tables/): a --subject page written there would "
                     "sit beside a study page and tables from another run",
                     hint="use another --out for the subject's page, or drop --subject to rewrite the whole "
                          "report, or pass --force to remove that report (index.html, study.pdf, tables/, "
                          "figures/, subject pages). Nothing was written.")
    return entries


def _remove_report_files(out: Path, entries: list[str]) -> None:
    import shutil

    for name in entries:
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


@app.command("explain")
def explain_cmd(
    subject: SubjectArg,
    what: Annotated[str, typer.Option("--what", metavar="TOPIC", help="What to explain: crs, icans, crs-scales, ctcae, icaht, t-icaht, iec-hs, hematotox, easix, recovery, response, kinetics, endpoints.")] = "crs",
    store: StoreOpt = DEFAULT_STORE_PATH,
    study: StudyOpt = None,
    all_days: Annotated[bool, typer.Option("--all-days", help="Also list days that scored 0.")] = False,
    csv_dialect: CsvDialectOpt = "standard",
    options_file: OptionsFileOpt = None,
    set_options: SetOpt = None,
) -> None:
    """Explain a derived grade day by day: the data, the rule that fired, and the source rows.

    The subject is read from --study (a study folder or stored id), else from the store (--study is
    needed there when the subject id is in several studies).

    [bold]Example[/]: cartlab explain CD7-AML-001 --what crs   (or --study FOLDER to read a study folder)
    """
    import polars as pl
    from rich.markup import escape

    from cartlab._days import day_text
    from cartlab.explain import EXPLAINERS, explain

    GRADED = ("crs", "icans", "crs-scales", "ctcae", "icaht", "t-icaht")  # explainers whose days carry a grade

    if what not in EXPLAINERS:
        raise _usage(f"cannot explain {what!r}; choose one of: {', '.join(EXPLAINERS)}")
    options = analysis_options(options_file, set_options, protocol="none", command="explain")
    data = _subject_data(subject, store, study, csv_dialect)
    ex = explain(data, what, options=options)
    from cartlab.analyze import describe_options, option_overrides

    console.print(f"[bold]{escape(subject)}[/] · {escape(ex.headline)}")
    console.print(f"[dim]{escape(ex.criteria)}[/]", soft_wrap=True)
    # every explanation says which options it was derived with (the analysis's, given by --options/--set)
    console.print(f"[dim]{escape(describe_options(option_overrides(options.to_dict())))}[/]", soft_wrap=True)
    if all_days:
        days = ex.days
    elif "shown" in ex.days.columns:
        days = ex.days.filter(pl.col("shown"))
    else:
        days = ex.days.filter((pl.col("grade") > 0) | pl.col("rule").is_not_null())
    from cartlab.criteria import UNSETTLED, rule_status, rules_in

    if ex.rules:  # every rule behind the headline with its verification status, whatever it is (review 37 C2)
        # a row's own status where it differs from its rule's (ADTTE: review 41 diff1 F4)
        row_st = getattr(ex, "row_statuses", {}) or {}
        console.print("[dim]rules: " + escape("; ".join(
            f"{i.id} ({i.status.replace('_', ' ')}"
            + (f"; {row_st[i.id].replace('_', ' ')} on some rows" if row_st.get(i.id) not in (None, i.status) else "")
            + ")" for text in ex.rules for i in rules_in(text))) + "[/]",
                      soft_wrap=True, highlight=False)
    if days.height == 0:
        # review 39 C1: no hint to use --all-days when it was given or no day was assessed at all
        console.print(("no assessed day recorded" if all_days or ex.days.height == 0 else
                       "no day scored above 0 (use --all-days to see every assessed day)") if what in GRADED else
                      "no assessment to show (use --all-days to see every row)")

    t = Table(header_style="bold", show_lines=False)
    # a grade column only where the engine grades days (ICAHT, kinetics ... grade a window, not a day)
    graded = days.height > 0 and days["grade"].is_not_null().any()
    for c in ("day", *(["grade"] if graded else []), "rule", "why", "source rows"):
        t.add_column(c, overflow="fold")
    unsettled: dict[str, object] = {i.id: i for text in ex.rules for i in rules_in(text) if i.status in UNSETTLED}
    for r in days.iter_rows(named=True):
        grade = "" if r["grade"] is None else str(r["grade"])
        rule = r["rule"] or ""
        # the row's own status when the explanation gives one (ADTTE rule_status: review 41 diff1 F4)
        status = r.get("rule_status") or (rule_status(rule) if rule else None)
        if status in UNSETTLED:
            unsettled.update({i.id: i for i in rules_in(rule)})
            rule = f"{rule} ⚠ {status.replace('_', ' ')}"
        t.add_row(day_text(r["day"]), *([grade] if graded else []), escape(rule), escape(r["reason"] or ""),
                  escape(", ".join(r["evidence"] or [])))
    if days.height:
        console.print(t)
        console.print("[dim]source rows: file:row, where row 1 is the first data row (line 2 of a CSV file, "
                      "under its header)[/]", soft_wrap=True)
    if unsettled:
        console.print("[yellow]⚠ these results rest on criteria rows not (fully) verified against their source; "
                      "read them as provisional:[/]", soft_wrap=True)
        for info in unsettled.values():
            console.print(f"  {escape(info.id)} ({info.status.replace('_', ' ')}; {escape(info.table)}.yaml): "
                          f"{escape(info.citation or '')}", soft_wrap=True, highlight=False)
