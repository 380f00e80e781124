"""The ``cartlab`` command line (typer + rich)."""

from __future__ import annotations

import json
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
import typer.core
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from cartlab import __version__
from cartlab.errors import CartlabError

#: click's base of usage errors (typer may vendor click, so found through a public typer class)
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class _Group(typer.core.TyperGroup):
    """The ``cartlab`` group: expected errors become one message and an exit code, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, _ClickException):
            raise
        except Exception as exc:  # noqa: BLE001 - the one place where every error is turned into a message
            if _debug(ctx):
                raise
            raise typer.Exit(_report_error(exc)) from None


app = typer.Typer(
    cls=_Group,
    name="cartlab",
    help="cartlab: CAR-T cell therapy data toolkit — ingest, validate, store, analyse, report.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console()
err = Console(stderr=True)

StoreOpt = Annotated[
    Path,
    typer.Option(
        "--store",
        envvar="CARTLAB_STORE",
        help="DuckDB store file (env CARTLAB_STORE).",
        show_default=True,
    ),
]
DEFAULT_STORE_PATH = Path("cartlab.duckdb")
CsvDialectOpt = Annotated[
    str,
    typer.Option(
        "--csv-dialect",
        envvar="CARTLAB_CSV_DIALECT",
        help="How the study's CSV files are written: standard (comma-separated, decimal points), european "
        "(semicolons, decimal commas), semicolon or tab.",
    ),
]


def _version(value: bool) -> None:
    if value:
        console.print(f"cartlab {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = None,
    debug: Annotated[bool, typer.Option(
        "--debug", envvar="CARTLAB_DEBUG", help="Show the full traceback of an error (env CARTLAB_DEBUG=1).")] = False,
) -> None:
    """cartlab: CAR-T cell therapy data toolkit."""
    ctx.meta["cartlab_debug"] = debug


def _debug(ctx) -> bool:
    import os

    return bool(ctx.meta.get("cartlab_debug")) or os.environ.get("CARTLAB_DEBUG", "").lower() in ("1", "true", "yes")


def _report_error(exc: BaseException) -> int:
    """Print one clear message for ``exc`` on stderr; return the exit code (2 bad input, 1 otherwise)."""
    from rich.markup import escape

    from cartlab.errors import CartlabError
    from cartlab.io import StudyValidationError
    from cartlab.protocol import ProtocolError

    if isinstance(exc, KeyboardInterrupt):
        err.print("[red]interrupted[/]")
        return 130
    if isinstance(exc, StudyValidationError):
        _print_issues(exc)
    elif isinstance(exc, ProtocolError):
        err.print(f"[bold red]{escape(exc.source)}: {len(exc.problems)} problem(s) in the protocol[/]", soft_wrap=True)
        for where, msg in exc.problems:
            err.print(f"  [red]✗[/] [bold]{escape(where)}[/]{': ' if where else ''}{escape(msg)}", soft_wrap=True,
                      highlight=False)
    elif isinstance(exc, CartlabError):
        err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
        if exc.hint:
            err.print(f"[dim]{escape(exc.hint)}[/]", soft_wrap=True, highlight=False)
    else:
        err.print(f"[red]internal error:[/] {escape(type(exc).__name__)}: {escape(str(exc))}", soft_wrap=True,
                  highlight=False)
        err.print("[dim]This is a bug in cartlab, not in your data as far as cartlab can tell. Run the same command "
                  "with --debug (or CARTLAB_DEBUG=1) to see the traceback, and report it.[/]", soft_wrap=True)
        return 1
    return getattr(exc, "exit_code", 1)


@contextmanager
def _progress(description: str, total: int | None = None):
    """A rich progress display on stderr; yields a callback taking a step description."""
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn() if total else TextColumn(""),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal and not _force_progress(),
    ) as prog:
        task = prog.add_task(description, total=total)

        def step(msg: str, advance: int = 0, *, completed: int | None = None, total: int | None = None) -> None:
            prog.update(task, description=f"{description}: {msg}", advance=advance, completed=completed,
                        total=total)

        yield step


def _force_progress() -> bool:
    import os

    return os.environ.get("CARTLAB_PROGRESS") == "1"


def _print_issues(exc) -> None:
    """Every problem on its own line: file, row(s) (with the CSV line), column, message."""
    from rich.markup import escape

    n = len(exc.issues)
    err.print(f"[bold red]{escape(exc.folder)}: {n} problem{'s' if n != 1 else ''} found[/]", soft_wrap=True)
    for i in exc.issues[:500]:
        err.print(f"  [red]✗[/] [bold]{escape(i.where())}[/]: {escape(i.message)}", soft_wrap=True, highlight=False)
    if n > 500:
        err.print(f"  ... and {n - 500} more (cartlab validate --json lists them all)")
    for w in exc.warnings[:50]:
        err.print(f"  [yellow]![/] {escape(str(w))}", soft_wrap=True, highlight=False)
    err.print("[red]Nothing was written.[/]")


def _read_or_exit(folder: Path, study_id: str | None = None, csv_dialect: str = "standard"):
    """Read and validate a study folder (an invalid one raises StudyValidationError: exit 2); print
    what reading it warned about (files not read, duplicate rows dropped)."""
    from cartlab.io import read_study
    from cartlab.io.study_folder import check_study_path

    check_study_path(folder)
    with _progress(f"reading {folder.name}") as step:
        study = read_study(folder, study_id, progress=step, csv_dialect=csv_dialect)
    _print_warnings(study.warnings)
    return study


def _print_warnings(warnings, limit: int = 50) -> None:
    from rich.markup import escape

    for w in warnings[:limit]:
        err.print(f"  [yellow]![/] {escape(str(w))}", soft_wrap=True, highlight=False)
    if len(warnings) > limit:
        err.print(f"  ... and {len(warnings) - limit} more warnings (cartlab validate --json lists them all)")


def _open_store(path: Path, read_only: bool = False):
    from cartlab.store import Store

    return Store(path, read_only=read_only)


def _check_file(path: Path) -> None:
    """An input file that must exist (bad input: exit 2, saying what the path is instead)."""
    from cartlab.io.study_folder import describe_path

    if not path.is_file():
        raise _usage(f"{path}: {describe_path(path)}; expected a file")


def _usage(message: str, hint: str | None = None):
    """Bad input or usage: one message, exit code 2."""
    from cartlab.errors import InputError

    return InputError(message, hint=hint)


# ------------------------------------------------------------------------------------------------


@app.command("validate")
def validate_cmd(
    study_dir: Annotated[Path, typer.Argument(help="Study folder (format v1).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print every issue as JSON.")] = False,
    csv_dialect: CsvDialectOpt = "standard",
) -> None:
    """Validate a study folder; list every problem (file, row, column) of every file, and warn about
    every file that is not read and every duplicate row.

    Exit code 0 when valid (warnings allowed), 1 when not, 2 when the path is not a study folder.
    Nothing is written.

    [bold]Example[/]: cartlab validate studies/NCT04762485
    """
    from cartlab.io import validate_study
    from cartlab.io.study_folder import check_study_path

    check_study_path(study_dir)
    with _progress(f"validating {study_dir.name}") as _:
        issues = validate_study(study_dir, csv_dialect)
    errors = [i for i in issues if i.severity == "error"]
    if as_json:
        console.print_json(json.dumps([i.to_dict() for i in issues]))
    elif errors:
        from cartlab.io import StudyValidationError

        _print_issues(StudyValidationError(issues, str(study_dir)))
    else:
        console.print(f"[green]{study_dir}: valid[/] (study folder format v1)")
        _print_warnings([i for i in issues if i.severity != "error"], limit=500)
    raise typer.Exit(1 if errors else 0)


@app.command("import")
def import_cmd(
    study_dir: Annotated[Path, typer.Argument(help="Study folder (format v1).")],
    store: StoreOpt = DEFAULT_STORE_PATH,
    study_id: Annotated[
        Optional[str], typer.Option("--study-id", help="Study id (default: the folder's name).")
    ] = None,
    csv_dialect: CsvDialectOpt = "standard",
) -> None:
    """Validate a study folder and import it into the store (one transaction).

    Re-importing identical files changes nothing; changed files replace the study atomically.
    An invalid folder is rejected whole and the store is left untouched.

    [bold]Example[/]: cartlab import studies/NCT04762485 --store trial.duckdb
    """
    from cartlab.io import read_study
    from cartlab.io.study_folder import _sha256, check_study_path
    from cartlab.store import Store
    from cartlab.store.duckdb_store import fingerprint_files, study_files

    check_study_path(study_dir)
    sid = study_id or study_dir.resolve().name
    with _progress(f"importing {sid}") as step:
        # validate before the store is even opened: a bad folder never touches it
        if store.exists():
            files = [(p.name, _sha256(p)) for p in study_files(study_dir)]
            with Store(store) as s:
                if s.fingerprint_of(sid) == fingerprint_files(sid, files):
                    console.print(f"{sid}: unchanged (already imported, same files)")
                    return
        study = read_study(study_dir, sid, progress=lambda n: step(f"validating {n}"), csv_dialect=csv_dialect)
        with Store(store) as s:
            step("writing")
            result = s.import_study(study, sid, folder=study_dir, progress=step)
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
    subject: Annotated[str, typer.Argument(help="Subject id.")],
    store: StoreOpt = DEFAULT_STORE_PATH,
    study: Annotated[Optional[str], typer.Option("--study", help="Study id, when the subject id is in several studies.")] = None,
    start: Annotated[Optional[float], typer.Option("--from", help="First day to show.")] = None,
    end: Annotated[Optional[float], typer.Option("--to", help="Last day to show.")] = None,
) -> None:
    """Show one subject's course as a day-by-day timeline.

    Values marked * are reconstructed or synthetic (not measured).

    [bold]Example[/]: cartlab show CD7-AML-001 --from -7 --to 30
    """
    from cartlab.report.timeline import subject_timeline

    s = _open_store(store, read_only=True)
    with s:
        data = s.subject(subject, study)
    header, table, flagged = subject_timeline(data, subject, start=start, end=end)
    console.print(header)
    console.print(table)
    if flagged:
        console.print("[dim]* reconstructed or synthetic value (not measured); see the source_note column[/]")


@app.command("export")
def export_cmd(
    study_id: Annotated[str, typer.Argument(help="Study id in the store (see cartlab list).")],
    out: Annotated[Path, typer.Argument(help="Folder to write the study folder into.")],
    store: StoreOpt = DEFAULT_STORE_PATH,
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
) -> None:
    """Write a stored study back out as a study folder (values and units as they were given).

    [bold]Example[/]: cartlab export seed_case exported/ --format parquet
    """
    from cartlab.io import write_study

    if fmt not in ("csv", "parquet"):
        raise _usage("--format must be csv or parquet")
    with _open_store(store, read_only=True) as s:
        study = s.load_study(study_id)
    path = write_study(study, out, fmt=fmt)
    console.print(f"[green]wrote[/] {path} ({study.subjects.height} subjects)")


@app.command("explain")
def explain_cmd(
    subject: Annotated[str, typer.Argument(help="Subject id.")],
    what: Annotated[str, typer.Option("--what", help="What to explain: crs, icans, crs-scales, ctcae, icaht, response, kinetics.")] = "crs",
    store: StoreOpt = DEFAULT_STORE_PATH,
    study: Annotated[Optional[str], typer.Option("--study", help="Study id, when the subject id is in several studies.")] = None,
    all_days: Annotated[bool, typer.Option("--all-days", help="Also list days that scored 0.")] = False,
) -> None:
    """Explain a derived grade day by day: the data, the rule that fired, and the source rows.

    [bold]Example[/]: cartlab explain CD7-AML-001 --what crs
    """
    import polars as pl
    from rich.markup import escape

    from cartlab.grading.explain import EXPLAINERS, explain

    if what not in EXPLAINERS:
        raise _usage(f"cannot explain {what!r}; choose one of: {', '.join(EXPLAINERS)}")
    with _open_store(store, read_only=True) as s:
        data = s.subject(subject, study)
    ex = explain(data, what)
    console.print(f"[bold]{escape(subject)}[/] · {escape(ex.headline)}")
    console.print(f"[dim]{escape(ex.criteria)}[/]", soft_wrap=True)
    if all_days:
        days = ex.days
    elif "shown" in ex.days.columns:
        days = ex.days.filter(pl.col("shown"))
    else:
        days = ex.days.filter((pl.col("grade") > 0) | pl.col("rule").is_not_null())
    from cartlab.criteria import UNSETTLED, rule_status, rules_in

    if days.height == 0:
        console.print("no day scored above 0 (use --all-days to see every assessed day)")

    t = Table(header_style="bold", show_lines=False)
    for c in ("day", "grade", "rule", "why", "source rows"):
        t.add_column(c, overflow="fold")
    unsettled: dict[str, object] = {i.id: i for text in ex.rules for i in rules_in(text) if i.status in UNSETTLED}
    for r in days.iter_rows(named=True):
        grade = "" if r["grade"] is None else str(r["grade"])
        rule = r["rule"] or ""
        status = rule_status(rule) if rule else None
        if status in UNSETTLED:
            unsettled.update({i.id: i for i in rules_in(rule) if i.status in UNSETTLED})
            rule = f"{rule} ⚠ {status.replace('_', ' ')}"
        t.add_row(f"{r['day']:g}", grade, escape(rule), escape(r["reason"] or ""),
                  escape(", ".join(r["evidence"] or [])))
    if days.height:
        console.print(t)
    if unsettled:
        console.print("[yellow]⚠ these results rest on criteria rows not (fully) verified against their source; "
                      "read them as provisional:[/]", soft_wrap=True)
        for info in unsettled.values():
            console.print(f"  {escape(info.id)} ({info.status.replace('_', ' ')}; {escape(info.table)}.yaml): "
                          f"{escape(info.citation or '')}", soft_wrap=True, highlight=False)


def _parse_option_value(text: str):
    low = text.strip().lower()
    if low in ("true", "yes", "1"):
        return True
    if low in ("false", "no", "0"):
        return False
    return text.strip()


@app.command("ctcae")
def ctcae_cmd(
    input_csv: Annotated[Path, typer.Argument(help="CSV with term, direction, aval (+ anrlo, anrhi, base, unit, bnrind, pchg).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output CSV: the input rows plus grade and grade_reason.")],
    units: Annotated[str, typer.Option("--units", help="Criteria unit system: SI, US or auto (by each row's unit).")] = "auto",
    version: Annotated[str, typer.Option("--version", help="CTCAE version of the criteria tables.")] = "5.0",
    option: Annotated[Optional[list[str]], typer.Option(
        "--option", help="An ambiguous-criterion option as NAME=VALUE (repeatable), e.g. "
        "hypokalemia_symptomatic=false; see cartlab.grading.ctcae.OPTION_DOCS.")] = None,
) -> None:
    """Grade a plain lab table with CTCAE (v5.0 default; SI and US conventional units).

    Every input column is kept, in the same row order; [bold]grade[/] (0-4, empty = cannot be graded)
    and [bold]grade_reason[/] (the rule in words and its criteria id) are added. Ambiguous criteria
    follow admiral's (worst-case) reading by default; change them with --option.

    [bold]Example[/]: cartlab ctcae labs.csv --out labs_graded.csv --option hypokalemia_symptomatic=false
    """
    from dataclasses import fields

    from cartlab.grading.ctcae import OPTION_DOCS, CtcaeOptions, ctcae_command

    _check_file(input_csv)
    known = {f.name for f in fields(CtcaeOptions)} - {"extra", "version", "units"}
    kwargs: dict = {"version": version, "units": units}
    extra: dict = {}
    for item in option or []:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise _usage(f"--option {item!r}: write NAME=VALUE")
        if name in ("high_indicator", "low_indicator"):
            kwargs[name] = tuple(v.strip() for v in value.split("|") if v.strip())
        elif name in known:
            kwargs[name] = _parse_option_value(value)
        else:
            extra[name] = _parse_option_value(value)
    try:
        opts = CtcaeOptions(**kwargs, extra=extra)
        with _progress(f"grading {input_csv.name}") as step:
            step("CTCAE")
            summary = ctcae_command(input_csv, out, options=opts)
    except (ValueError, KeyError) as exc:
        if isinstance(exc, CartlabError):
            raise
        raise _usage(f"{input_csv}: {exc}", hint=f"known options: {', '.join(sorted(OPTION_DOCS))}"
                     if extra else None) from None
    by = ", ".join(f"grade {g}: {n}" for g, n in sorted(summary["by_grade"].items()))
    console.print(f"[green]wrote[/] {out}: {summary['rows']} rows, {summary['graded']} graded ({by}), "
                  f"{summary['not_gradable']} not gradable; criteria {', '.join(summary['criteria'])}")
    if "expected_agree" in summary:
        console.print(f"expected_grade column: {summary['expected_agree']} agree, "
                      f"{summary['expected_mismatch']} differ")


@app.command("nca")
def nca_cmd(
    table: Annotated[Path, typer.Argument(help="CSV: one row per sample (any concentration-time data, not only CAR-T).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output CSV: one row per subject and interval.")],
    subject: Annotated[str, typer.Option("--subject", help="Subject column.")],
    time: Annotated[str, typer.Option("--time", help="Time column (numbers).")],
    conc: Annotated[str, typer.Option("--conc", help="Concentration column (numbers; '<x' = below x).")],
    lloq: Annotated[Optional[str], typer.Option("--lloq", help="LLOQ column: conc below it is BLQ.")] = None,
    method: Annotated[str, typer.Option(
        "--method", help="AUC interpolation: lin-up/log-down (default, PKNCA), linear, lin-log, log-up/log-down.")]
    = "lin-up/log-down",
    interval: Annotated[Optional[list[str]], typer.Option(
        "--interval", help="START,END (repeatable; END may be inf). Default: 0,inf. As in PKNCA's pk.nca, the "
        "PKNCA-named columns use only the samples inside the interval, with times from START; aucint and "
        "aucint.last interpolate at the edges.")] = None,
) -> None:
    """Non-compartmental analysis with PKNCA's rules and column names (cmax, tmax, tlast, clast.obs,
    auclast, aucall, aucinf.obs, lambda.z, half.life, r.squared, adj.r.squared, lambda.z.n.points ...).

    BLQ: 0 before the first quantifiable value, dropped between, 0 after the last (PKNCA defaults);
    lambda.z by PKNCA's best-fit selection (adjusted R², >= 3 points, Tmax excluded).

    [bold]Example[/]: cartlab nca theoph.csv --subject Subject --time Time --conc conc --out nca.csv
    """
    from cartlab.kinetics.nca import nca_command

    try:
        with _progress(f"NCA of {table.name}") as step:
            step("profiles")
            summary = nca_command(table, out, subject=subject, time=time, conc=conc, lloq=lloq, method=method,
                                  intervals=interval or None)
    except ValueError as exc:
        if isinstance(exc, CartlabError):
            raise
        raise _usage(str(exc)) from None
    console.print(f"[green]wrote[/] {out}: " + ", ".join(f"{k} {v}" for k, v in summary.items()
                                                       if not isinstance(v, (list, dict))), soft_wrap=True)


@app.command("stein")
def stein_cmd(
    source: Annotated[Path, typer.Argument(help="Study folder, or a CSV table with one row per sample.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("out/stein"),
    population: Annotated[bool, typer.Option(
        "--population", help="Population fit (SAEM: typical values, omega², covariates, VPC) instead of "
        "per-subject fits.")] = False,
    subject: Annotated[Optional[str], typer.Option("--subject", help="Table: subject column.")] = None,
    time: Annotated[Optional[str], typer.Option(
        "--time", help="Table: time column (days from the first infusion, or give --doses).")] = None,
    conc: Annotated[Optional[str], typer.Option("--conc", help="Table: concentration column ('<x' = below x).")] = None,
    lloq: Annotated[Optional[str], typer.Option("--lloq", help="Table: LLOQ column.")] = None,
    doses: Annotated[Optional[Path], typer.Option(
        "--doses", help="Table: CSV of infusions (subject and time columns as in the table, optional dose).")] = None,
    param: Annotated[str, typer.Option("--param", help="Study: observation parameter.")] = "CARCOPY",
    blq: Annotated[str, typer.Option("--blq", help="BLQ handling: m3 (Beal M3, default), drop, half.")] = "m3",
    dose_handling: Annotated[str, typer.Option(
        "--dose-handling", help="Split infusions: first (time from the first, default) or superpose.")] = "first",
    covariate: Annotated[Optional[list[str]], typer.Option(
        "--covariate", help="PARAMETER=COVARIATE log-linear effect, repeatable (with --population), "
        "e.g. cmax=log_dose.")] = None,
    fix: Annotated[Optional[list[str]], typer.Option(
        "--fix", help="PARAMETER=VALUE held fixed, repeatable, e.g. beta=0.0032.")] = None,
    prior: Annotated[Optional[str], typer.Option(
        "--prior", help="Per-subject MAP fits with a population prior: stein2019 (Stein 2019 Table 1).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Population: random seed (same seed, same result).")] = 0,
    n_burn: Annotated[int, typer.Option("--n-burn", min=1, help="Population: SAEM iterations with step 1.")] = 300,
    n_smooth: Annotated[int, typer.Option("--n-smooth", min=1, help="Population: SAEM iterations with decreasing step.")] = 200,
    n_post: Annotated[int, typer.Option("--n-post", min=1, help="Population: MCMC iterations for SEs.")] = 150,
    n_chains: Annotated[Optional[int], typer.Option("--n-chains", min=1, help="Population: chains per subject.")] = None,
    csv_dialect: CsvDialectOpt = "standard",
) -> None:
    """Fit the Stein 2019 CAR-T kinetic model (expansion to Tmax, biphasic contraction), per subject
    by maximum likelihood or as a population by SAEM, with the Beal M3 likelihood for BLQ samples.

    Writes stein_estimates.csv or stein_population.csv, stein_subjects.csv (parameters, Cmax, Tmax,
    AUC0-28, half-lives), stein_observations.csv (observed vs fitted, with source rows),
    stein_fits.png, stein_vpc.png (population) and stein_fit.json (inputs, options, fit statistics).

    [bold]Example[/]: cartlab stein cohort/ --population --covariate cmax=log_dose --out stein/
    """
    from cartlab.kinetics.stein_command import stein_command

    if not source.exists():
        raise _usage(f"{source}: no such file or folder")
    study = _read_or_exit(source, csv_dialect=csv_dialect) if source.is_dir() else source
    try:
        with _progress("Stein fit", total=1) as step:
            def report(stage: str, done: int, total: int) -> None:
                step(stage, completed=done if total else None, total=total or None)

            meta = stein_command(
                study, out, population=population, subject=subject, time=time, conc=conc, lloq=lloq,
                doses=doses, param=param, blq=blq, dose_handling=dose_handling, covariates=covariate or (),
                fixed=fix or (), prior=prior, seed=seed, n_burn=n_burn, n_smooth=n_smooth, n_post=n_post, n_chains=n_chains,
                progress=report)
    except ValueError as exc:
        if isinstance(exc, CartlabError):
            raise
        raise _usage(str(exc), hint="Nothing was written.") from None
    what = "population (SAEM)" if population else "per-subject"
    console.print(f"[green]wrote[/] {out}: {what} fit of {meta['n_subjects']} subject(s), {meta['n_observations']} "
                  f"observations ({meta['n_blq']} BLQ, {meta['n_dropped']} dropped)", soft_wrap=True)
    if not population and meta["not_converged"]:
        console.print(f"[yellow]not converged:[/] {', '.join(meta['not_converged'])} (see stein_subjects.csv, "
                      "column message)", soft_wrap=True)
    if meta.get("warning"):
        console.print(f"[yellow]Note:[/] {meta['warning']}", soft_wrap=True)


# ------------------------------------------------------------------------------------------------
# protocols, dosing, eligibility, deviations


StudyDirOpt = Annotated[Optional[Path], typer.Option("--study-dir", help="Read the subject from a study folder instead of the store.")]


def _protocol_or_exit(id_or_path: str):
    """A shipped protocol id or YAML file (an invalid one raises ProtocolError: exit 2)."""
    from cartlab.protocol import load_protocol

    return load_protocol(id_or_path)


@app.command("protocols")
def protocols_cmd(
    protocol: Annotated[Optional[str], typer.Argument(help="A shipped id or a protocol YAML file to check and show.")] = None,
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


@app.command("dose")
def dose_cmd(
    protocol: Annotated[str, typer.Option("--protocol", "-p", help="Shipped protocol id (e.g. nct04762485) or YAML file.")],
    weight: Annotated[Optional[float], typer.Option("--weight", help="Body weight in kg.")] = None,
    height: Annotated[Optional[float], typer.Option("--height", help="Height in cm.")] = None,
    age: Annotated[Optional[float], typer.Option("--age", help="Age in years (renal formulas).")] = None,
    sex: Annotated[Optional[str], typer.Option("--sex", help="F or M (renal formulas).")] = None,
    creatinine: Annotated[Optional[tuple[float, str]], typer.Option(
        "--creatinine", help="Serum creatinine VALUE UNIT, e.g. --creatinine 0.8 mg/dL or 70 umol/L.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or csv.")] = "table",
    bsa_method: Annotated[Optional[str], typer.Option("--bsa-method", help="mosteller (default), dubois or haycock.")] = None,
    renal_function: Annotated[Optional[str], typer.Option(
        "--renal-function", help="crcl_cockcroft_gault or egfr_ckd_epi_2021 (default: the protocol's/rule's).")] = None,
    no_renal: Annotated[bool, typer.Option("--no-renal-adjustment", help="Do not apply renal dose rules.")] = False,
    car_dose: Annotated[Optional[float], typer.Option(
        "--car-dose", help="CAR-T total dose in the protocol's unit (cells/kg or cells); default: the protocol's target.")] = None,
    product_conc: Annotated[Optional[float], typer.Option(
        "--product-conc", help="Product bag concentration, total cells/mL (gives the infusion volume).")] = None,
    viability: Annotated[float, typer.Option("--viability", help="Viable fraction of the product (0-1).")] = 1.0,
    car_positive: Annotated[float, typer.Option("--car-positive", help="CAR-positive fraction of viable cells (0-1).")] = 1.0,
    sheet: Annotated[Optional[Path], typer.Option("--sheet", help="Also write a printable dosing sheet (.html or .pdf).")] = None,
    subject: Annotated[Optional[str], typer.Option(
        "--subject", help="Subject id (printed on the sheet); with --study-dir or --store, and no --weight, "
        "weight, height, age, sex and the screening creatinine are read from the subject's data.")] = None,
    study_dir: StudyDirOpt = None,
    store: Annotated[Optional[Path], typer.Option("--store", envvar="CARTLAB_STORE",
                                                 help="DuckDB store to read --subject from.")] = None,
) -> None:
    """Doses of every administration of a protocol for one patient: day, agent, dose, unit, basis.

    The patient is given by --weight/--height (+ --age, --sex, --creatinine), or read from a
    subject's data (--subject with --study-dir or --store; given flags override the data).

    BSA by Mosteller unless chosen otherwise; fludarabine (or any agent with a renal rule) adjusted
    for creatinine clearance when age, sex and creatinine are given; CAR-T cells per infusion from
    the weight, and the infusion volume from the product's concentration and viability.
    Implausible inputs and doses outside the protocol are refused.

    [bold]Example[/]: cartlab dose --protocol nct04762485 --weight 52 --height 160 --age 17 --sex F --creatinine 54 umol/L
    """
    from rich.markup import escape

    from cartlab.protocol import DoseOptions, DosingError, Patient, body_size, dose_plan
    from cartlab.protocol.sheet import format_dose, sheet_context, write_dosing_sheet

    if fmt not in ("table", "csv"):
        raise _usage("--format must be table or csv")
    p = _protocol_or_exit(protocol)
    if (weight is None or height is None) and subject and (study_dir is not None or store is not None):
        from dataclasses import replace

        from cartlab.protocol import subject_patient

        data = _subject_data(subject, store or DEFAULT_STORE_PATH, None, study_dir)
        patient, why = subject_patient(data, p, subject)
        if patient is None:
            raise _usage(f"cannot dose {subject}: {why}")
        given = {k: v for k, v in (("weight_kg", weight), ("height_cm", height), ("age_years", age),
                                   ("sex", sex.upper() if sex else None)) if v is not None}
        if creatinine:
            given.update(creatinine=creatinine[0], creatinine_unit=creatinine[1])
        patient = replace(patient, **given)
        err.print(f"[dim]{escape(subject)}: {patient.weight_kg:g} kg, {patient.height_cm:g} cm, age "
                  f"{patient.age_years if patient.age_years is not None else '?'}, sex {patient.sex or '?'}, "
                  f"creatinine {patient.creatinine if patient.creatinine is not None else 'none'} "
                  f"{patient.creatinine_unit or ''} (from the study data)[/]")
    elif weight is None or height is None:
        raise _usage("give --weight and --height, or --subject with --study-dir/--store")
    else:
        patient = Patient(weight_kg=weight, height_cm=height, age_years=age, sex=sex.upper() if sex else None,
                          creatinine=creatinine[0] if creatinine else None,
                          creatinine_unit=creatinine[1] if creatinine else None, subject_id=subject)
    try:
        opts = DoseOptions(bsa_method=bsa_method, renal_function=renal_function, apply_renal_adjustment=not no_renal,
                           car_dose=car_dose, product_concentration=product_conc, viability=viability,
                           car_positive=car_positive)
        size = body_size(patient, p, opts)
        plan = dose_plan(p, patient, opts)
        path = write_dosing_sheet(sheet_context(p, plan, size, opts, patient), sheet) if sheet else None
    except (DosingError, ValueError) as exc:
        raise _usage(f"cannot dose: {exc}") from None
    if fmt == "csv":
        sys.stdout.write(plan.write_csv())
    else:
        renal = (f"CrCl {size['crcl_ml_min']:.0f} mL/min (Cockcroft-Gault), eGFR {size['egfr_ml_min_173']:.0f} "
                 "mL/min/1.73 m2 (CKD-EPI 2021)" if size["crcl_ml_min"] is not None else f"renal function {size['renal_note']}")
        console.print(f"[bold]{escape(p.id)}[/] · {patient.weight_kg:g} kg, {patient.height_cm:g} cm · BSA {size['bsa_m2']:.2f} m2 "
                      f"({size['bsa_method'].capitalize()}) · {renal}", soft_wrap=True)
        t = Table(header_style="bold")
        for c in ("day", "agent", "dose", "unit", "basis"):
            t.add_column(c, overflow="fold", justify="right" if c in ("day", "dose") else "left")
        for r in plan.iter_rows(named=True):
            t.add_row(f"{r['day']:g}", r["agent"], format_dose(r["dose"], r["unit"]), r["unit"], escape(r["basis"]))
        console.print(t)
        for a in dict.fromkeys(x for x in plan["adjustment"].to_list() if x):
            console.print(f"[yellow]![/] {escape(a)}", soft_wrap=True)
        if size.get("renal_caveat") and size["crcl_ml_min"] is not None:
            console.print(f"[yellow]![/] {escape(size['renal_caveat'])}", soft_wrap=True)
        if p.car_t.source == "reconstructed" or any(a.source == "reconstructed" for a in p.lymphodepletion):
            console.print("[yellow]some protocol items are reconstructed (not stated by the source)[/]")
    if path:
        err.print(f"[green]dosing sheet:[/] {path}")


def _subject_data(subject: str, store: Path, study: str | None, study_dir: Path | None):

    if study_dir is not None:
        data = _read_or_exit(study_dir)
        if subject not in data.subject_ids:
            raise _usage(f"no subject {subject!r} in {study_dir}")
        return data.subject(subject)
    with _open_store(store, read_only=True) as s:
        return s.subject(subject, study)


@app.command("eligibility")
def eligibility_cmd(
    subject: Annotated[str, typer.Argument(help="Subject id.")],
    protocol: Annotated[str, typer.Option("--protocol", "-p", help="Shipped protocol id or YAML file.")],
    store: StoreOpt = DEFAULT_STORE_PATH,
    study: Annotated[Optional[str], typer.Option("--study", help="Study id, when the subject id is in several studies.")] = None,
    study_dir: StudyDirOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="table or csv.")] = "table",
) -> None:
    """Screen one subject against a protocol's eligibility criteria: value, day, pass/fail/unknown
    and the reason for each criterion.

    [bold]Example[/]: cartlab eligibility CD7-AML-001 --protocol nct04762485
    """
    from rich.markup import escape

    from cartlab.grading.adam import to_csv_frame
    from cartlab.model import NOT_MEASURED_SOURCES
    from cartlab.protocol import eligibility_verdict, screen_eligibility

    p = _protocol_or_exit(protocol)
    data = _subject_data(subject, store, study, study_dir)
    res = screen_eligibility(data, p, subject)
    if fmt == "csv":
        sys.stdout.write(to_csv_frame(res).write_csv())
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
def deviations_cmd(
    subject: Annotated[Optional[str], typer.Argument(help="Subject id (default: every subject of --study-dir).")] = None,
    protocol: Annotated[str, typer.Option("--protocol", "-p", help="Shipped protocol id or YAML file.")] = "",
    store: StoreOpt = DEFAULT_STORE_PATH,
    study: Annotated[Optional[str], typer.Option("--study", help="Study id, when the subject id is in several studies.")] = None,
    study_dir: StudyDirOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="table or csv.")] = "table",
) -> None:
    """Protocol deviations: missed or extra doses, wrong days, doses outside tolerance, missed
    monitoring days — compared with what the protocol plans for the subject's own weight and BSA.

    [bold]Example[/]: cartlab deviations CD7-AML-001 --protocol nct04762485
    """
    from rich.markup import escape

    from cartlab.grading.adam import to_csv_frame
    from cartlab.protocol import protocol_deviations

    if not protocol:
        raise _usage("--protocol is required")
    p = _protocol_or_exit(protocol)
    if subject is None:
        if study_dir is None:
            raise _usage("give a SUBJECT, or --study-dir for every subject of a study folder")
        data = _read_or_exit(study_dir)
    else:
        data = _subject_data(subject, store, study, study_dir)
    res = protocol_deviations(data, p)
    if fmt == "csv":
        sys.stdout.write(to_csv_frame(res).write_csv())
        return
    if res.height == 0:
        console.print(f"[green]no deviations[/] from {escape(p.id)} ({data.subjects.height} subject(s))")
        return
    t = Table(header_style="bold", title=f"{res.height} deviation(s) from {p.id}")
    for c in ("subject", "category", "item", "detail", "source rows"):
        t.add_column(c, overflow="fold")
    for r in res.iter_rows(named=True):
        t.add_row(r["subject_id"], r["category"], escape(r["item"]), escape(r["detail"]),
                  escape(", ".join(r["evidence"] or [])))
    console.print(t)


def _print_skipped(analysis) -> None:
    """A short table of what could not be analysed (the details are in analysis.json)."""
    from rich.markup import escape

    if analysis.skipped:
        t = Table(title="not analysed (see analysis.json, 'skipped')", header_style="bold", title_justify="left")
        for c in ("engine", "subjects", "reason", "how to fix"):
            t.add_column(c, overflow="fold")
        for sk in analysis.skipped[:30]:
            who = "all" if sk.subjects is None else (", ".join(sk.subjects[:6]) + (
                f" (+{len(sk.subjects) - 6})" if len(sk.subjects) > 6 else ""))
            t.add_row(escape(sk.engine), escape(who), escape(sk.reason), escape(sk.fix))
        err.print(t)
        if len(analysis.skipped) > 30:
            err.print(f"... and {len(analysis.skipped) - 30} more")
    for w in analysis.warnings[:30]:
        err.print(f"  [yellow]![/] {escape(w['engine'])}: {escape(w['message'])}", soft_wrap=True, highlight=False)


StrictOpt = Annotated[bool, typer.Option(
    "--strict", help="Stop with an error when an engine cannot analyse a subject, or a subject needing censoring "
    "has no last_followup_day, instead of recording it and going on.")]


@app.command("analyze")
def analyze_cmd(
    study_dir: Annotated[Path, typer.Argument(help="Study folder (format v1).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("out/analysis"),
    protocol: Annotated[Optional[str], typer.Option(
        "--protocol", "-p", help="Also check the study against a protocol (shipped id or YAML): dose_plan, "
        "eligibility, eligibility_verdict and protocol_deviations tables.")] = None,
    strict: StrictOpt = False,
    csv_dialect: CsvDialectOpt = "standard",
) -> None:
    """Run every engine on a study folder; write DIR/subject_summary.csv, every table and DIR/analysis.json.

    An engine (or a subject in it) that cannot run is left out, listed on the screen and in
    analysis.json under "skipped" (engine, subjects, reason, how to fix); everything else is written.

    [bold]Example[/]: cartlab analyze studies/NCT04762485 --out results/
    """
    from cartlab.analyze import Analysis, AnalysisOptions, write_analysis

    proto = _protocol_or_exit(protocol) if protocol else None
    study = _read_or_exit(study_dir, csv_dialect=csv_dialect)
    with _progress("analysing") as step:
        analysis = Analysis(study, AnalysisOptions(strict=strict), protocol=proto, progress=step)
        analysis.tables()
        step("writing")
        path, tables = write_analysis(analysis, out)
    _print_skipped(analysis)
    console.print(f"[green]wrote[/] {path} ({study.subjects.height} subjects) and {len(tables)} tables: "
                  f"{', '.join(t + '.csv' for t in tables)}", soft_wrap=True)


@app.command("report")
def report_cmd(
    study_dir: Annotated[Path, typer.Argument(help="Study folder (format v1).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("out/report"),
    subject: Annotated[Optional[str], typer.Option("--subject", help="Only this subject.")] = None,
    protocol: Annotated[Optional[str], typer.Option(
        "--protocol", "-p", help="Add the protocol section (planned doses, eligibility, deviations).")] = None,
    csv_dialect: CsvDialectOpt = "standard",
) -> None:
    """Write an HTML report (course figure in the style of the paper's Figure 1) per subject.

    [bold]Example[/]: cartlab report studies/NCT04762485 --subject CD7-AML-001 --out report/
    """
    from cartlab.analyze import Analysis
    from cartlab.report import write_study_report, write_subject_report

    proto = _protocol_or_exit(protocol) if protocol else None
    study = _read_or_exit(study_dir, csv_dialect=csv_dialect)
    if subject and subject not in study.subject_ids:
        raise _usage(f"no subject {subject!r} in {study_dir}")
    with _progress("writing report") as step:
        analysis = Analysis(study, protocol=proto, progress=step)
        summary = analysis.subject_summary()
        if subject:
            path = write_subject_report(study, subject, out, summary=summary, protocol=proto)
        else:
            path = write_study_report(study, out, summary=summary, protocol=proto)
    _print_skipped(analysis)
    console.print(f"[green]report:[/] {path}")


@app.command("synthetic")
def synthetic_cmd(
    out: Annotated[Path, typer.Argument(help="Folder to write the study into.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of subjects.")] = 100,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same files).")] = 0,
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    force: Annotated[bool, typer.Option(
        "--force", help="Write into a folder that is not empty, replacing its study tables and README.")] = False,
) -> None:
    """Write a seeded synthetic CAR-T cohort (CD7 and CD19 programmes) as a study folder.

    Every row carries source=synthetic. Useful for trying cartlab, tests and benchmarks. A folder that
    is not empty is refused unless --force is given.

    [bold]Example[/]: cartlab synthetic cohort/ --n 200 --seed 7
    """
    from cartlab.datasets import synthetic_cohort

    if fmt not in ("csv", "parquet"):
        raise _usage("--format must be csv or parquet")
    if out.exists() and not out.is_dir():
        raise _usage(f"{out}: a file, not a folder to write the study into")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            n_files = sum(1 for _ in out.iterdir())
            raise _usage(f"{out} is not empty ({n_files} entries): cartlab will not overwrite it",
                         hint="choose a new folder, or pass --force to replace its study tables and README")
        from cartlab.io.folder import TABLE_FORMATS, TABLE_NAMES

        for p in out.iterdir():
            stem, _, ext = p.name.rpartition(".")
            if p.is_file() and ((stem.lower() in TABLE_NAMES and ext.lower() in TABLE_FORMATS)
                                or p.name.lower() == "readme.md"):
                p.unlink()
    path = synthetic_cohort(n, seed=seed, out_dir=out, fmt=fmt, progress=err.is_terminal)
    console.print(f"[green]wrote[/] {path} ({n} synthetic subjects, seed {seed})")


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("out"),
) -> None:
    """Run the built-in seed case end to end: import, analyse, report.

    The seed case is the CD7 CAR-T AML patient of Cao et al. 2022 (NCT04762485): the paper's
    stated values are kept exactly; the daily course around them is reconstructed (synthetic) and
    labelled as such everywhere.

    [bold]Example[/]: cartlab demo --out out/
    """
    from cartlab.analyze import Analysis, write_analysis
    from cartlab.datasets import seed_case_path
    from cartlab.protocol import DoseOptions, body_size, dose_plan, load_protocol, subject_patient
    from cartlab.protocol.sheet import sheet_context, write_dosing_sheet
    from cartlab.report import write_study_report
    from cartlab.store import Store

    if out.exists() and not out.is_dir():
        raise _usage(f"{out}: a file, not a folder to write the demo into")
    out.mkdir(parents=True, exist_ok=True)
    folder = out / "seed_case"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(seed_case_path(), folder)
    console.print(f"1. seed case study folder: {folder}")
    store_path = out / "cartlab.duckdb"
    with Store(store_path) as s:
        result = s.import_study(folder, "seed_case")
    console.print(f"2. imported into {store_path}: {result}")
    with Store(store_path, read_only=True) as s:
        study = s.load_study("seed_case")

    proto = load_protocol("nct04762485")
    analysis = Analysis(study, protocol=proto)
    path, _tables = write_analysis(analysis, out / "analysis")
    _print_skipped(analysis)
    summary = analysis.subject_summary()
    console.print(f"3. analysis: {path} (protocol {proto.id}: dose_plan, eligibility, protocol_deviations)")
    report = write_study_report(study, out / "report", summary=summary, protocol=proto)
    console.print(f"4. report: [bold green]{report.resolve()}[/]")
    patient, _ = subject_patient(study, proto, study.subject_ids[0])
    opts = DoseOptions()
    sheet = write_dosing_sheet(sheet_context(proto, dose_plan(proto, patient, opts), body_size(patient, proto, opts),
                                             opts, patient, input_note=(
        "Demo: age and sex are stated by the paper; weight, height and the screening creatinine (day -6) are "
        "reconstructed (synthetic), not stated by the paper.")), out / "report" / "dosing_sheet.html")
    console.print(f"5. dosing sheet ({proto.id}; weight and height reconstructed): {sheet}")
    from cartlab.kinetics.stein_command import stein_command

    meta = stein_command(study, out / "stein")
    console.print(f"6. Stein 2019 kinetic fit of CARCOPY: {out / 'stein'} ({meta['n_observations']} samples, "
                  f"{meta['n_not_measured']} of them reconstructed); the model's peak is the corner of its "
                  "expansion and contraction lines, above the observed 183,945 on day 14: see "
                  "docs/kinetics/stein_seed_peak.md", soft_wrap=True)
    console.print(
        "[yellow]Note:[/] rows with source=reconstructed are synthetic, reconstructed around the "
        "paper's stated values."
    )


def run() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
