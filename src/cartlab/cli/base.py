"""The ``cartlab`` application: the command group, shared options and helpers, and error handling."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
import typer.core
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from cartlab import __version__
from cartlab.cli.grammar import App

# typer (0.2x) shows a flag's type as "<bool>", as if the flag took a value: show nothing for flags;
# and a value's Python type ("<str>", "<list[str]>", "<int range>") as a word a user reads (TEXT, N ...),
# as the metavars DIR, FILE, STUDY of the other options (review 36 B5).
_display_type = typer.core.TyperOption.display_type_rich
_display_arg_type = typer.core.TyperArgument.display_type_rich
_READABLE = {"str": "TEXT", "list[str]": "TEXT", "int": "N", "int range": "N", "list[int]": "N",
             "float": "NUMBER", "float range": "NUMBER", "list[float]": "NUMBER", "path": "PATH",
             "list[path]": "PATH", "float,str": "NUMBER UNIT", "float,float": "NUMBER NUMBER"}


def _readable(shown):
    if shown is None:
        return None
    text = str(shown)
    more = text.endswith("...")
    key = text.removesuffix("...").strip("<>").lower()
    if not text.startswith("<"):
        return text
    more = more and "," not in key  # a pair (VALUE UNIT) is named whole, not "...": two values, not many
    return _READABLE.get(key, text.removesuffix("...")) + ("..." if more else "")


def _flag_without_type(self, ctx):
    return None if getattr(self, "is_flag", False) else _readable(_display_type(self, ctx))


def _argument_type(self, ctx):
    return _readable(_display_arg_type(self, ctx))


typer.core.TyperOption.display_type_rich = _flag_without_type
typer.core.TyperArgument.display_type_rich = _argument_type


# typer (0.2x) writes a required argument as "{name}" in the usage line, and an argument without a
# metavar in lower case: write STUDY (required, or needed unless its long form --study is given),
# [STUDY] (optional), in capitals, and leave hidden arguments (old spellings) out of the usage line.
def _usage_display_name(self) -> str:
    name = self.metavar if self.metavar is not None else self.name.upper()
    name = name if self.required or getattr(self, "cartlab_needed", False) else f"[{name}]"
    return name + ("..." if self.nargs != 1 else "")


def _usage_pieces(self, ctx) -> list[str]:
    return [] if self.hidden else [self._usage_display_name()]


typer.core.TyperArgument._usage_display_name = _usage_display_name
typer.core.TyperArgument.get_usage_pieces = _usage_pieces

#: click's base of usage errors (typer may vendor click, so found through a public typer class)
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class _Group(typer.core.TyperGroup):
    """The ``cartlab`` group: expected errors become one message and an exit code, never a traceback."""

    def get_command(self, ctx, cmd_name):
        cmd = super().get_command(ctx, cmd_name)
        needed = getattr(getattr(cmd, "callback", None), "cartlab_needed", ())  # grammar.with_grammar
        for p in getattr(cmd, "params", ()) if needed else ():
            p.cartlab_needed = p.name in needed
        if cmd is not None and cmd.help and not getattr(cmd, "_cartlab_unwrapped", False):
            cmd.help = _unwrap_help(cmd.help)  # --help fills the terminal's width (review 38 C1)
            cmd._cartlab_unwrapped = True
        return cmd

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except _ClickException as exc:  # `cartlab --bogus`: the group's own options
            raise typer.Exit(_click_error(exc)) from None

    def invoke(self, ctx):
        try:
            with _warnings_as_messages(ctx):
                return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:  # Ctrl-C (review 40 B3): one line, exit 130 (typer would say nothing)
            err.print(f"[red]{interrupted_message(ctx.invoked_subcommand)}[/]", soft_wrap=True, highlight=False)
            raise typer.Exit(130) from None
        except _ClickException as exc:  # a usage error of click/typer: cartlab's one error style
            raise typer.Exit(_click_error(exc)) from None
        except Exception as exc:  # noqa: BLE001 - the one place where every error is turned into a message
            if _debug(ctx):  # the traceback as well as the message; the exit code stays the same (2 stays 2)
                import traceback

                sys.stderr.write("".join(traceback.format_exception(exc)))
                sys.stderr.flush()
            raise typer.Exit(_report_error(exc)) from None


#: the commands that write through a staging folder / one transaction: Ctrl-C leaves nothing partial
_NOTHING_WRITTEN = {"import": "the store is unchanged",
                    **{c: "an earlier --out is unchanged" for c in ("analyze", "report", "export", "synthetic",
                                                                   "stein")}}


def interrupted_message(command: str | None) -> str:
    """What Ctrl-C during ``command`` left: "nothing was written" only where every write is staged or
    transactional (analyze, report, export, synthetic, stein, import), else just "interrupted"."""
    said = _NOTHING_WRITTEN.get(command or "")
    return f"interrupted: nothing was written ({said})" if said else "interrupted"


def _unwrap_help(text: str) -> str:
    """A docstring hard-wrapped at ~100 characters as one line per paragraph, so that Typer's rich
    help (which keeps every newline) wraps it once, at the terminal's width. Blank lines, and lines
    that start a list item ("* ", "- "), an example ("[bold]Example") or an indented block, stay breaks."""
    out: list[str] = []
    for line in text.split("\n"):
        keep = (not out or not out[-1].strip() or not line.strip() or line[:1].isspace()
                or line.startswith(("* ", "- ", "[bold]Example")) or out[-1].startswith("[bold]Example"))
        if keep:
            out.append(line.rstrip())
        else:
            out[-1] = f"{out[-1].rstrip()} {line.strip()}"
    return "\n".join(out)


def _click_error(exc) -> int:
    """A click/typer usage error (unknown option, a value out of range, a missing option) printed as
    every other cartlab error, "error: ..." and a hint on stderr, with click's exit code (2 for usage;
    review 38 B6), not typer's box. "No arguments: show the help" is re-raised (it prints the help)."""
    from rich.markup import escape

    if type(exc).__name__ == "NoArgsIsHelpError":
        raise exc
    err.print(f"[red]error:[/] {escape(exc.format_message())}", soft_wrap=True, highlight=False)
    sub = getattr(exc, "ctx", None)
    if sub is not None:
        err.print(f"[dim]{escape(sub.get_usage())}\nTry '{escape(sub.command_path)} -h' for help.[/]",
                  soft_wrap=True, highlight=False)
    return exc.exit_code


@contextmanager
def _warnings_as_messages(ctx):
    """cartlab's own warnings (``CartlabWarning``) raised while a command runs are printed as the
    commands' other warnings are ("  ! message"), not as Python's "file:line: Warning" with a source
    line; with ``--debug`` (or any other warning category) Python's format is kept."""
    import warnings

    from cartlab.errors import CartlabWarning

    python_show = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, CartlabWarning) and not _debug(ctx):
            _print_warnings([message])
        else:
            python_show(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = python_show


app = App(
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
        metavar="FILE",
        help="DuckDB store file (env CARTLAB_STORE).",
        show_default=True,
    ),
]
DEFAULT_STORE_PATH = Path("cartlab.duckdb")
#: --csv-dialect of the plain-table commands (nca, ctcae): the study commands' dialects (review 47 F5)
CsvTableDialectOpt = Annotated[
    str,
    typer.Option(
        "--csv-dialect",
        envvar="CARTLAB_CSV_DIALECT",
        metavar="standard|european|semicolon|tab",
        help="The format of the input CSV table, to read it: standard (comma-separated, decimal points), "
        "european (semicolons, decimal commas), semicolon or tab. What cartlab writes is always standard CSV.",
    ),
]
#: --csv-dialect of stein, whose input is a study or a plain table (and its --doses table)
CsvAnyDialectOpt = Annotated[
    str,
    typer.Option(
        "--csv-dialect",
        envvar="CARTLAB_CSV_DIALECT",
        metavar="standard|european|semicolon|tab",
        help="The format of the input's CSV files (a study's, or the plain table and its --doses table), to read "
        "them: standard (comma-separated, decimal points), european (semicolons, decimal commas), semicolon or "
        "tab. What cartlab writes is always standard CSV.",
    ),
]
CsvDialectOpt = Annotated[
    str,
    typer.Option(
        "--csv-dialect",
        envvar="CARTLAB_CSV_DIALECT",
        metavar="standard|european|semicolon|tab",
        help="The format of the input study's CSV files, to read them: standard (comma-separated, decimal "
        "points), european (semicolons, decimal commas), semicolon or tab. What cartlab writes is always "
        "standard CSV.",
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
        "--debug", envvar="CARTLAB_DEBUG", help="Show the full traceback of an error; also lets cartlab report's "
        "warnings name the subjects they count (env CARTLAB_DEBUG=1).")] = False,
) -> None:
    """cartlab: CAR-T cell therapy data toolkit."""
    ctx.meta["cartlab_debug"] = debug


def _debug(ctx) -> bool:
    from cartlab.errors import debug_from_env

    return bool(ctx.meta.get("cartlab_debug")) or debug_from_env()


def _report_error(exc: BaseException) -> int:
    """Print one clear message for ``exc`` on stderr; return the exit code (2 bad input, 1 otherwise)."""
    from rich.markup import escape

    from cartlab.errors import CartlabError
    from cartlab.io import StudyValidationError
    from cartlab.protocol import ProtocolError

    if isinstance(exc, KeyboardInterrupt):
        err.print("[red]interrupted[/]")
        return 130
    if isinstance(exc, BrokenPipeError):  # the reader went away (cartlab ... | head): stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if isinstance(exc, StudyValidationError):
        _print_issues(exc)
    elif isinstance(exc, ProtocolError):
        err.print(f"[bold red]{escape(exc.source)}: {len(exc.problems)} problem(s) in the protocol[/]", soft_wrap=True)
        for where, msg in exc.problems:
            err.print(f"  [red]✗[/] [bold]{escape(where)}[/]{': ' if where else ''}{escape(msg)}", soft_wrap=True,
                      highlight=False)
    elif isinstance(exc, CartlabError):
        err.print(f"[red]error:[/] {escape(_plain_message(exc))}", soft_wrap=True, highlight=False)
        if exc.hint:
            err.print(f"[dim]{escape(_csv_column(exc.hint))}[/]", soft_wrap=True, highlight=False)
    elif isinstance(exc, OSError) and exc.filename is not None:
        # the file system refused (a file where a folder is needed, no permission, a full disk): the
        # path and what is wrong with it, not "a bug in cartlab"
        where = str(exc.filename) + (f" -> {exc.filename2}" if exc.filename2 else "")
        err.print(f"[red]error:[/] {escape(where)}: {escape(exc.strerror or type(exc).__name__)}", soft_wrap=True,
                  highlight=False)
        usage = (FileExistsError, NotADirectoryError, IsADirectoryError, FileNotFoundError)
        return 2 if isinstance(exc, usage) else 1
    else:
        err.print(f"[red]internal error:[/] {escape(type(exc).__name__)}: {escape(str(exc))}", soft_wrap=True,
                  highlight=False)
        err.print("[dim]This is a bug in cartlab, not in your data as far as cartlab can tell. Run the same command "
                  "as `cartlab --debug COMMAND ...` (or with CARTLAB_DEBUG=1) to see the traceback, and report it.[/]",
                  soft_wrap=True)
        return 1
    return getattr(exc, "exit_code", 1)


_STUDY_FILES = "subjects|doses|observations|interventions|events"


def _plain_message(exc: BaseException) -> str:
    """The message of a cartlab error in the words of the command line. An engine's failure under
    ``--strict`` (EngineError "ENGINE could not run for subject(s) ...: REASON") gives its cause's own
    text: no exception class name ("ValueError: "), no "[…]" placeholder for the subjects (the full
    list, without Python's brackets and quotes), no API option spelling ("(EndpointOptions(...))"),
    and a study file's column as "subjects.csv, column last_followup_day"."""
    import re

    from cartlab.errors import CartlabError, EngineError

    text = str(exc)
    cause = exc.__cause__
    if not isinstance(exc, EngineError) or cause is None or " could not run for " not in text:
        return text
    head = text.split(": ", 1)[0]
    reason = str(cause).strip()
    if not isinstance(cause, CartlabError):
        reason = re.sub(r"\[((?:'[^']*'(?:, )?)+)\]", lambda m: m.group(1).replace("'", ""), reason)
        reason = re.sub(r"\s*\(\w+Options\([^()]*\)\)", "", reason)
        reason = _csv_column(reason)
        if " subject(s) " in head:  # the head names them already
            reason = re.sub(r"^subjects?(?:\(s\))? [^:]*: ", "", reason)
    return f"{head}: {reason}"


def _csv_column(text: str) -> str:
    """"subjects.last_followup_day" (a study file's column, as the engines write it) as
    "subjects.csv, column last_followup_day"."""
    import re

    return re.sub(rf"\b({_STUDY_FILES})\.(?!csv\b)(\w+)", r"\1.csv, column \2", text)


@contextmanager
def _progress(description: str, total: int | None = None):
    """A rich progress display on stderr; yields a callback taking a step description."""
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn() if total else TextColumn(""),
        MofNCompleteColumn() if total else TextColumn(""),
        TimeElapsedColumn(),
        TimeRemainingColumn() if total else TextColumn(""),
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


def _print_issues(exc, wrote_nothing: bool = True) -> None:
    """Every problem on its own line: file, row(s) (with the CSV line), column, message; ends with
    "Nothing was written." for a command that writes (``wrote_nothing``; not ``validate``)."""
    from rich.markup import escape

    n = len(exc.issues)
    err.print(f"[bold red]{escape(exc.folder)}: {n} problem{'s' if n != 1 else ''} found[/]", soft_wrap=True)
    for i in exc.issues[:500]:
        err.print(f"  [red]✗[/] [bold]{escape(i.where())}[/]: {escape(i.message)}", soft_wrap=True, highlight=False)
    if n > 500:
        err.print(f"  ... and {n - 500} more (cartlab validate --json lists them all)")
    for w in exc.warnings[:50]:
        err.print(f"  [yellow]![/] {escape(str(w))}", soft_wrap=True, highlight=False)
    if wrote_nothing:
        err.print("[red]Nothing was written.[/]")


def _read_or_exit(folder: Path, study_id: str | None = None, csv_dialect: str = "standard",
                  imported_as: str | None = None):
    """Read and validate a study folder (an invalid one raises StudyValidationError: exit 2); print
    what reading it warned about (files not read, duplicate rows dropped). ``imported_as``: the folder
    holds the very files of this stored study, whose import printed the warnings: only count them."""
    from cartlab.io import read_study
    from cartlab.io.study_folder import check_study_path

    check_study_path(folder)
    with _progress(f"reading {folder.name}") as step:
        study = read_study(folder, study_id, progress=step, csv_dialect=csv_dialect)
    if imported_as is not None:
        _count_warnings(study.warnings, imported_as)
    else:
        _print_warnings(study.warnings)
    return study


def _count_warnings(warnings, study_id: str) -> None:
    """A stored study's read-time warnings, printed in full when it was imported: one line counting
    them, and the command that lists them (review 36 C11: not the whole list on every command)."""
    from rich.markup import escape

    from cartlab.errors import warning_text

    notes = [w for w in warnings if getattr(w, "severity", None) == "note"]
    for w in notes:  # e.g. "imported by an earlier cartlab ... import the study again": in full (review 38 C3)
        err.print(f"  [yellow]![/] {escape(warning_text(w))}", soft_wrap=True, highlight=False)
    warnings = [w for w in warnings if getattr(w, "severity", None) != "note"]
    if warnings:
        n = len(warnings)
        err.print(f"  [yellow]![/] {n} input warning{'s' if n != 1 else ''} recorded when {study_id} was imported "
                  f"(cartlab validate {study_id} lists them)", soft_wrap=True, highlight=False)


def _print_warnings(warnings, limit: int = 50) -> None:
    from rich.markup import escape

    from cartlab.errors import warning_text

    for w in warnings[:limit]:
        err.print(f"  [yellow]![/] {escape(warning_text(w))}", soft_wrap=True, highlight=False)
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


def _protocol_or_exit(id_or_path: str):
    """A shipped protocol id or YAML file (an invalid one raises ProtocolError: exit 2)."""
    from cartlab.protocol import load_protocol

    return load_protocol(id_or_path)


def _print_skipped(analysis) -> None:
    """A short table of what could not be analysed (the details are in analysis.json)."""
    from rich.markup import escape

    from cartlab.errors import names_subjects

    named = names_subjects()  # False: cartlab report without --debug (its terminal output is a log)
    if analysis.skipped:
        t = Table(title="not analysed (see analysis.json, 'skipped')", header_style="bold", title_justify="left")
        for c in ("engine", "subjects", "reason", "how to fix"):
            t.add_column(c, overflow="fold")
        for sk in analysis.skipped[:30]:
            who = "all" if sk.subjects is None else (", ".join(sk.subjects[:6]) + (
                f" (+{len(sk.subjects) - 6})" if len(sk.subjects) > 6 else "")) if named else (
                f"{len(sk.subjects)} (named in analysis.json)")
            reason = sk.reason
            if not named:  # an engine's error may name the subject it failed on (whole tokens only:
                # an id "4" must not blank the 4 of "day 24")
                import re

                for sid in sorted(sk.subjects or (), key=len, reverse=True):
                    reason = re.sub(rf"(?<![\w.-]){re.escape(sid)}(?![\w-]|\.\d)", "[subject]", reason)
            t.add_row(escape(sk.engine), escape(who), escape(reason), escape(sk.fix))
        err.print(t)
        if len(analysis.skipped) > 30:
            err.print(f"... and {len(analysis.skipped) - 30} more")
    shown: set[str] = set()
    for w in analysis.warnings:  # a message two engines gave (e.g. the protocol's own best response) once
        if w["message"] in shown:
            continue
        if len(shown) == 30:
            err.print("  ... more warnings in analysis.json ('warnings')")
            break
        shown.add(w["message"])
        err.print(f"  [yellow]![/] {escape(w['engine'])}: {escape(w['message'])}", soft_wrap=True, highlight=False)


# ------------------------------------------------------------------------------------------------
# engine options: the same --set / --options / --strict wherever an analysis runs

OptionsFileOpt = Annotated[Optional[Path], typer.Option(
    "--options", metavar="FILE", help="A YAML file of engine options, e.g. 'icaht: {never_above_requires_full_window: true}' "
    "(engines: crs, icans, ctcae, icaht, t_icaht, count_recovery, car_hematotox, easix, iec_hs, crs_legacy, "
    "response, best_response, endpoints, molecular, kinetics, exposure, adam; every option and the "
    "value applied is listed in analysis.json, 'options'; docs/derivation-conventions.md). An analysis.json "
    "replays the options that analysis was given ('options_set').")]
SetOpt = Annotated[Optional[list[str]], typer.Option(
    "--set", metavar="ENGINE.OPTION=VALUE", help="One engine option, ENGINE.OPTION=VALUE (a YAML value), e.g. --set crs.fever_threshold_c=38.3; "
    "repeatable; applied after --options.")]
StrictOpt = Annotated[bool, typer.Option(
    "--strict", help="Stop with an error when an engine cannot analyse a subject, or a subject needing censoring "
    "has no last_followup_day, instead of recording it and going on.")]


def analysis_options(options_file: Path | None, set_options: list[str] | None, strict: bool = False, *,
                     protocol: str | None = None, command: str | None = None):
    """AnalysisOptions from an --options YAML file and --set ENGINE.OPTION=VALUE pairs (later wins).

    ``protocol``: "given" or "missing" on a command that has --protocol, "none" on one that has none
    (``command`` names it), None: not checked. A protocol.* option with no protocol to apply it to is
    refused (exit 2) rather than recorded as in force (review 38 B2)."""
    import yaml

    from cartlab.analyze import AnalysisOptions
    from cartlab.errors import InputError

    settings: dict = {}
    given: dict[tuple[str, str], str] = {}  # (engine, option) -> "--set engine.option"
    if options_file is not None:
        from cartlab.cli._options_yaml import OptionsFileError, load_options_file

        try:  # one line naming file and line; a key given twice is an error (review 40 B9, C5)
            loaded = load_options_file(options_file) or {}
        except OptionsFileError as exc:
            raise _usage(str(exc)) from None
        if not isinstance(loaded, dict):
            raise _usage(f"--options {options_file}: expected a mapping of engine: {{option: value}}")
        if "cartlab_version" in loaded:  # an analysis.json: replay the options that analysis was given
            if not isinstance(loaded.get("options_set"), dict):
                raise _usage(f"--options {options_file}: this analysis.json (cartlab {loaded['cartlab_version']}) has no "
                             "'options_set' (written before it was recorded); write the options as a YAML file "
                             "(its 'options' lists every value applied)")
            if loaded["cartlab_version"] != __version__:
                err.print(f"  [yellow]![/] --options {options_file}: written by cartlab {loaded['cartlab_version']}, "
                          f"this is {__version__}: the options set are replayed, the defaults are this version's "
                          "(CHANGELOG.md)", highlight=False, soft_wrap=True)
            loaded = loaded["options_set"]
            if protocol == "none" and loaded.get("protocol"):
                # a recorded analysis cannot "drop" its protocol options: replayed without them, said so
                # (review38 diff2 B6); --set protocol.* below is still refused
                names = ", ".join(f"protocol.{n}" for n in loaded["protocol"]) if isinstance(
                    loaded["protocol"], dict) else "protocol"
                err.print(f"  [dim]note: protocol options in {options_file} not used ({names}): cartlab "
                          f"{command or 'this command'} has no protocol[/]", highlight=False, soft_wrap=True)
                loaded = {k: v for k, v in loaded.items() if k != "protocol"}
        settings = {k: dict(v) if isinstance(v, dict) else v for k, v in loaded.items()}
    for item in set_options or []:
        key, sep, text = item.partition("=")
        engine, dot, name = key.strip().partition(".")
        if not sep or not dot or not engine or not name:
            raise _usage(f"--set {item!r}: write ENGINE.OPTION=VALUE, e.g. --set icaht.duration=longest_run")
        engine = engine.strip().lower()  # the engines are lower case: --set ICAHT.duration is icaht (review 47 F10)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise _usage(f"--set {item!r}: the value is not YAML: {exc}") from None
        current = settings.setdefault(engine, {})
        if not isinstance(current, dict):
            raise _usage(f"--set {item!r}: {engine!r} is not an engine")
        current[name] = value
        given[(engine, name.strip())] = f"--set {key.strip()}"
    _check_protocol_options(settings, given, options_file, protocol, command)
    try:
        return AnalysisOptions.from_settings(settings, strict=strict)
    except InputError as exc:
        plain = _option_value_error(exc, settings, given, options_file)
        if plain is None:
            raise
        raise _usage(plain) from exc


def _check_protocol_options(settings: dict, given: dict, options_file: Path | None, protocol: str | None,
                            command: str | None) -> None:
    """Refuse protocol.* options when no protocol is checked (see :func:`analysis_options`)."""
    names = list(settings.get("protocol") or {}) if isinstance(settings.get("protocol"), dict) else []
    if protocol in (None, "given") or not names:
        return
    name = names[0]
    where = given.get(("protocol", name)) or f"--options {options_file}: protocol.{name}"
    if protocol == "missing":
        raise _usage(f"{where} needs --protocol (no protocol is checked without it): add --protocol ID, or drop "
                     f"the protocol option{'s' if len(names) > 1 else ''}",
                     hint="Nothing was written." if len(names) == 1 else
                     f"protocol options given: {', '.join(names)}. Nothing was written.")
    raise _usage(f"{where}: cartlab {command or 'this command'} has no protocol (it takes no --protocol), so the "
                 "option would change nothing: drop it",
                 hint="protocol options apply in analyze, report and serve with --protocol, and in eligibility, "
                      "deviations and dose")


#: what a pydantic error type says the value should be, in a user's words
_EXPECTED = {"int_parsing": "a whole number", "int_type": "a whole number", "int_from_float": "a whole number",
             "float_parsing": "a number", "float_type": "a number", "bool_parsing": "true or false",
             "bool_type": "true or false", "string_type": "text", "list_type": "a list, e.g. [a, b]",
             "tuple_type": "a list, e.g. [a, b]", "dict_type": "a mapping, e.g. {key: value}"}


def _option_value_error(exc: BaseException, settings: dict, given: dict, options_file: Path | None) -> str | None:
    """One line for an option value of the wrong type or not among the allowed ones (the option as
    the user gave it, the value, what is expected) from the options classes' validation error; None
    when ``exc`` was not such an error (an unknown engine or option keeps its own message)."""
    import re

    cause = exc.__cause__ or exc.__context__
    errors = getattr(cause, "errors", None)
    if not callable(errors):  # a range or value check of the options class: "XOptions: name=..."
        m = re.match(r"\w+Options: (\w+)(?=[=:])[=:]? ?(.*)", str(exc), re.S)
        eng = next((e for e, v in settings.items() if m and isinstance(v, dict) and m.group(1) in v), None)
        if m is None or eng is None:
            return None
        where = given.get((eng, m.group(1))) or f"--options {options_file}: {eng}.{m.group(1)}"
        sep = str(exc)[m.end(1)]  # "name=value is not ..." keeps its "="; "name: ..." its ": "
        return f"{where}={m.group(2)}" if sep == "=" else f"{where}: {m.group(2)}"
    lines = []
    by_option: dict[str, list[dict]] = {}
    for e in errors():
        by_option.setdefault(str(e["loc"][0]) if e.get("loc") else "", []).append(e)
    for name, errs in by_option.items():
        engine = next((eng for eng, v in settings.items() if isinstance(v, dict) and name in v), None)
        if engine is None:
            return None
        where = given.get((engine, name)) or f"--options {options_file}: {engine}.{name}"
        expected: list[str] = []
        for e in errs:
            if e["type"] == "literal_error":
                what = str((e.get("ctx") or {}).get("expected", ""))
            elif e["type"] in _EXPECTED:
                what = _EXPECTED[e["type"]]
            else:
                what = str(e.get("msg", "")).removeprefix("Input should be ").removeprefix("Value error, ")
            if len(e["loc"]) > 1 and isinstance(e["loc"][1], int):  # an element of a list
                what = f"a list of {what}" if e["type"] in _EXPECTED else f"a list of values, each {what}"
            if what not in expected:
                expected.append(what)
        if "a number" in expected and "a whole number" in expected:
            expected.remove("a whole number")
        value = settings[engine][name]
        lines.append(f"{where}: {value!r} is not valid; expected {' or '.join(expected)}")
    return "; ".join(lines) or None



# ------------------------------------------------------------------------------------------------
# one way to name a study: a study folder, or the id of a study in the store (the options: cli/grammar.py)


def _same_as_stored(study: str, store: Path) -> bool | None:
    """For a bare name that is also a folder here: None when the store holds no study of that id,
    True when it does and holds exactly the folder's files (sha256), False when they differ."""
    import os

    from cartlab.io.study_folder import sha256_file
    from cartlab.store import Store
    from cartlab.store.duckdb_store import study_files

    if "/" in study or os.sep in study or not store.exists():  # written as a path: the folder
        return None
    with Store(store, read_only=True) as s:
        if study not in s.studies()["study_id"].to_list():
            return None
        stored = {(r["file"], r["sha256"]) for r in s.load_study(study).sources.iter_rows(named=True)}
    return stored == {(p.name, sha256_file(p)) for p in study_files(Path(study))}


def _ambiguous(study: str, store: Path) -> Exception:
    return _usage(f"{study!r} names both a folder here and a different study in the store {store} (their files "
                  "differ)", hint=f"give ./{study} for the folder, or run where no folder has that name for the "
                                  "stored study (cartlab list shows the store's studies)")


def _load_study(study: str, store: Path, csv_dialect: str = "standard"):
    """The study named by ``study``: a folder (read and validated) or a stored study id; a bare name
    that is both, with different files, is refused (it was silently read as the folder)."""
    from cartlab.store import Store

    path = Path(study)
    if len(path.parts) == 1 and path.is_file() and study in _stored_ids(store):
        path = None  # a file is never a study folder: the bare name is the stored id (e.g. a FHIR file's name)
    if path is not None and (path.exists() or len(path.parts) > 1):  # a path: read it, or say what it is
        same = _same_as_stored(study, store) if path.is_dir() else None
        if same is False:
            raise _ambiguous(study, store)
        return _read_or_exit(path, csv_dialect=csv_dialect, imported_as=study if same else None)
    if not store.exists():
        raise _usage(f"{study}: no such study folder, and no store at {store} to look the id up in",
                     hint="give a study folder, or import it first (cartlab import FOLDER) and name it by its id")
    with Store(store, read_only=True) as s:
        ids = s.studies()["study_id"].to_list()
        if study in ids:
            data = s.load_study(study)
            _count_warnings(data.warnings, study)
            return data
    raise _usage(f"{study}: no such study folder, and no study with this id in {store} "
                 f"(studies: {', '.join(ids) or 'none'})")


def _stored_ids(store: Path) -> list[str]:
    """The study ids in the store (none when there is no store)."""
    from cartlab.store import Store
    from cartlab.store.duckdb_store import is_duckdb_file

    if not is_duckdb_file(store):
        return []
    with Store(store, read_only=True) as s:
        return s.studies()["study_id"].to_list()


def _subject_data(subject: str, store: Path, study: str | None, csv_dialect: str = "standard"):
    """One subject's data, from a study folder or stored study (``--study``), else from the store."""
    from cartlab.store import Store

    if study is not None and (Path(study).exists() or len(Path(study).parts) > 1):
        same = _same_as_stored(study, store) if Path(study).is_dir() else None
        if same is False:
            raise _ambiguous(study, store)
        data = _read_or_exit(Path(study), csv_dialect=csv_dialect, imported_as=study if same else None)
        if subject not in data.subject_ids:
            raise _usage(f"no subject {subject!r} in {study}")
        return data.subject(subject)
    if study is not None and not store.exists():  # --study names neither a folder nor a stored study
        raise _usage(f"{study}: no such study folder, and no store at {store} to look the id up in",
                     hint="give --study a study folder, or import it first (cartlab import FOLDER) and name it "
                          "by its id")
    with Store(store, read_only=True) as s:
        if study is not None:
            ids = s.studies()["study_id"].to_list()
            if study not in ids:
                raise _usage(f"{study}: no such study folder, and no study with this id in {store} "
                             f"(studies: {', '.join(ids) or 'none'})")
        data = s.subject(subject, study)
        _count_warnings(getattr(data, "warnings", []), data.study_id)
        return data
