"""``cartlab serve``: the browser dashboard (Shiny for Python; cartlab.app)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from cartlab.cli.analysis import OptionsFileOpt, SetOpt, analysis_options
from cartlab.cli.base import (
    DEFAULT_STORE_PATH,
    CsvDialectOpt,
    StoreOpt,
    _debug,
    _load_study,
    _usage,
    app,
    console,
    err,
)
from cartlab.cli.grammar import STUDY_HELP, study_argument

#: serve's STUDY (none: every study of the store)
ServeStudyArg = study_argument(STUDY_HELP + " None: every study of the store. The same as --study STUDY.")


@app.command("serve")
def serve_cmd(
    ctx: typer.Context,
    study: ServeStudyArg = None,
    store: StoreOpt = DEFAULT_STORE_PATH,
    host: Annotated[str, typer.Option("--host", help="Address to listen on. Anything but loopback needs a "
                                      "token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 8050,
    token: Annotated[str | None, typer.Option(
        "--token", envvar="CARTLAB_TOKEN", show_envvar=False,
        help="Require this token on every request (Authorization: Bearer T, or ?token=T once, which sets a "
        "cookie). Prefer the environment variable CARTLAB_TOKEN: a --token value is visible in the process "
        "list. Use 16+ random characters off loopback.")] = None,
    allowed_origins: Annotated[list[str] | None, typer.Option(
        "--allowed-origin", help="Also accept requests from this origin (scheme://host[:port], e.g. a reverse "
        "proxy's https://dash.example.org); repeatable. Env CARTLAB_ALLOWED_ORIGINS (comma-separated). Without "
        "it only the dashboard's own origin (the --host:--port address, 127.0.0.1, localhost, [::1]) is "
        "accepted.")] = None,
    protocol: Annotated[str | None, typer.Option(
        "--protocol", "-p", help="Also check every study against a protocol (shipped id or YAML), as cartlab "
        "analyze --protocol.")] = None,
    options_file: OptionsFileOpt = None,
    set_options: SetOpt = None,
    csv_dialect: CsvDialectOpt = "standard",
    csv_formula_guard: Annotated[str, typer.Option(
        "--csv-formula-guard", metavar="quote|off", help="CSV downloads: 'quote' prefixes ' to a text cell starting with = + - @ "
        "(a spreadsheet formula; OWASP CSV Injection), 'off' writes cells unchanged.")] = "quote",
) -> None:
    """Open the dashboard in a browser: studies, cohort (views, filters), patient (linked course, grade per day
    and its evidence, kinetics), twin forecast; CSV download of every table. Read-only.

    Listens on 127.0.0.1 unless --host says otherwise; a non-loopback host is refused without a token.
    The access log is off (URLs never reach a log); an error inside the dashboard is logged as its type and
    code location only, never its message (cartlab --debug serve logs the full traceback).

    Requests whose Host or Origin is not the dashboard's own are refused (403): another web page cannot
    read it. Behind a reverse proxy, name the proxy's public origin with --allowed-origin.

    The analysis uses the default options unless --set / --options say otherwise (as cartlab analyze);
    the page says "options: all defaults" or lists those that differ.

    [bold]Example[/]: cartlab serve out/seed_case   (then open http://127.0.0.1:8050/)
    [bold]Example[/]: cartlab serve out/seed_case --set crs.fever_threshold_c=38.3
    [bold]Example[/]: CARTLAB_TOKEN="$(openssl rand -hex 16)" cartlab serve --store cartlab.duckdb --host 0.0.0.0
    """
    from cartlab.app.security import (
        allowed_origins_from_env,
        bind_host,
        check_bind,
        check_token,
        parse_origin,
    )
    from cartlab.cli.base import _protocol_or_exit

    host = bind_host(host)  # "[::1]" -> "::1": uvicorn binds the bare address
    token = token or os.environ.get("CARTLAB_TOKEN") or None
    check_bind(host, token)
    for warning in check_token(token, host):
        err.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)
    origins = [parse_origin(o) for o in [*(allowed_origins or []), *allowed_origins_from_env()]]
    options = analysis_options(options_file, set_options,  # a bad option stops before any reading
                               protocol="given" if protocol else "missing")
    proto = _protocol_or_exit(protocol) if protocol else None
    catalog = _catalog_or_exit(study, store, csv_dialect)
    catalog.options, catalog.protocol = options, proto
    if not catalog.ids():
        raise _usage(f"no study in {store}", hint="import one first (cartlab import FOLDER) or name a study folder")
    from cartlab.app.server import create_app

    asgi = create_app(catalog, token=token, host=host, port=port or None, allowed_origins=origins,
                      csv_formula_guard=csv_formula_guard)
    shown = f"[{host}]" if ":" in host else host
    from cartlab.app.data import describe_options, option_overrides

    opts = describe_options(option_overrides(options.to_dict()), f"{proto.id} {proto.version}" if proto else None)
    console.print(f"[green]cartlab dashboard[/] on http://{shown}:{port}/ ({len(catalog.ids())} "
                  f"stud{'y' if len(catalog.ids()) == 1 else 'ies'}"
                  f"{'; token required' if token else ''}; {opts}). Ctrl+C stops it.", soft_wrap=True)
    from cartlab.app.logs import redacted_errors

    with redacted_errors(enabled=not _debug(ctx)):
        run_server(asgi, host, port)


def _catalog_or_exit(study: str | None, store: Path, csv_dialect: str):
    """:func:`_catalog`; an invalid study folder (or a path that is none) prints its problems as
    ``cartlab analyze`` does but ends "The dashboard was not started." (serve writes nothing, so not
    analyze's "Nothing was written."; review 39 C1) and exits 2."""
    from cartlab.cli.base import _print_issues
    from cartlab.io import StudyValidationError

    try:
        return _catalog(study, store, csv_dialect)
    except StudyValidationError as exc:
        _print_issues(exc, wrote_nothing=False)
        err.print("[red]The dashboard was not started.[/]")
        raise typer.Exit(2) from None


def _catalog(study: str | None, store: Path, csv_dialect: str):
    from cartlab.app.data import Catalog

    if study is not None:
        data = _load_study_quiet(study, store, csv_dialect)
        return Catalog.from_study(data, f"folder {study}" if Path(study).exists() else f"store {store}")
    if not store.exists():
        raise _usage(f"no store at {store} and no study folder given",
                     hint="cartlab serve STUDY_FOLDER, or import a study first (cartlab import FOLDER)")
    return Catalog.from_store(store)


def _load_study_quiet(study: str, store: Path, csv_dialect: str):
    """The study as ``cartlab analyze`` loads it (:func:`cartlab.cli.base._load_study`), but a folder's
    reading warnings are only counted: they name subjects and values ("HGB of subject 'X' on day -7"),
    and a dashboard's output goes to a service log (docs/dashboard.md "No patient data in the logs";
    review 37 B4). A refusal (invalid study) still says what is wrong and stops."""
    from cartlab.cli.base import _ambiguous, _progress, _same_as_stored
    from cartlab.io import read_study
    from cartlab.io.study_folder import check_study_path

    path = Path(study)
    if not (path.exists() or len(path.parts) > 1):
        return _load_study(study, store, csv_dialect)  # a stored study: its warnings are counted only
    same = _same_as_stored(study, store) if path.is_dir() else None
    if same is False:
        raise _ambiguous(study, store)
    check_study_path(path)
    with _progress(f"reading {path.name}") as step:
        data = read_study(path, None, progress=step, csv_dialect=csv_dialect)
    line = warning_count_line(len(data.warnings), study)
    if line:
        from rich.markup import escape

        err.print(f"  [yellow]![/] {escape(line)}", soft_wrap=True, highlight=False)
    return data


def warning_count_line(n: int, study: str) -> str | None:
    """The one line ``cartlab serve`` prints about a study's reading warnings: how many, and where to
    read them (no subject id or value); None when there are none."""
    if not n:
        return None
    return (f"{n} input warning{'s' if n != 1 else ''} while reading the study; not printed here (they can "
            f"name subjects and values): `cartlab validate {study}` lists them")


def run_server(asgi, host: str, port: int) -> None:
    """uvicorn with its access log off (request lines could carry identifiers) and warnings only."""
    import uvicorn

    try:
        uvicorn.run(asgi, host=host, port=port, access_log=False, log_level="warning", lifespan="on",
                    server_header=False)
    except OSError as exc:  # pragma: no cover - port in use, permission
        err.print(f"[red]error:[/] cannot listen on {host}:{port}: {exc}")
        raise typer.Exit(1) from None
