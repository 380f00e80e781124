"""``cartlab serve``: the browser dashboard (Shiny for Python; cartlab.app)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

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


@app.command("serve")
def serve_cmd(
    ctx: typer.Context,
    study: Annotated[str | None, typer.Argument(
        metavar="[STUDY]", help="A study folder or the id of a stored study (none: every study of the store).")] = None,
    store: StoreOpt = DEFAULT_STORE_PATH,
    host: Annotated[str, typer.Option("--host", help="Address to listen on. Anything but loopback needs a "
                                      "token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 8050,
    token: Annotated[str | None, typer.Option(
        "--token", envvar="CARTLAB_TOKEN", show_envvar=False,
        help="Require this token on every request (Authorization: Bearer T, or ?token=T once, which sets a "
        "cookie). Env CARTLAB_TOKEN.")] = None,
    csv_dialect: CsvDialectOpt = "standard",
) -> None:
    """Open the dashboard in a browser: studies, cohort (views, filters), patient (linked course, grade per day
    and its evidence, kinetics), twin forecast; CSV download of every table. Read-only.

    Listens on 127.0.0.1 unless --host says otherwise; a non-loopback host is refused without a token.
    The access log is off (URLs never reach a log); an error inside the dashboard is logged as its type and
    code location only, never its message (cartlab --debug serve logs the full traceback).

    [bold]Example[/]: cartlab serve studies/seed_case   (then open http://127.0.0.1:8050/)
    [bold]Example[/]: cartlab serve --store cartlab.duckdb --host 0.0.0.0 --token "$(openssl rand -hex 16)"
    """
    from cartlab.app.security import check_bind

    token = token or os.environ.get("CARTLAB_TOKEN") or None
    check_bind(host, token)
    catalog = _catalog(study, store, csv_dialect)
    if not catalog.ids():
        raise _usage(f"no study in {store}", hint="import one first (cartlab import FOLDER) or name a study folder")
    from cartlab.app.server import create_app

    asgi = create_app(catalog, token=token)
    shown = f"[{host}]" if ":" in host else host
    console.print(f"[green]cartlab dashboard[/] on http://{shown}:{port}/ ({len(catalog.ids())} "
                  f"stud{'y' if len(catalog.ids()) == 1 else 'ies'}"
                  f"{'; token required' if token else ''}). Ctrl+C stops it.", soft_wrap=True)
    from cartlab.app.logs import redacted_errors

    with redacted_errors(enabled=not _debug(ctx)):
        run_server(asgi, host, port)


def _catalog(study: str | None, store: Path, csv_dialect: str):
    from cartlab.app.data import Catalog

    if study is not None:
        data = _load_study(study, store, csv_dialect)
        return Catalog.from_study(data, f"folder {study}" if Path(study).exists() else f"store {store}")
    if not store.exists():
        raise _usage(f"no store at {store} and no study folder given",
                     hint="cartlab serve STUDY_FOLDER, or import a study first (cartlab import FOLDER)")
    return Catalog.from_store(store)


def run_server(asgi, host: str, port: int) -> None:
    """uvicorn with its access log off (request lines could carry identifiers) and warnings only."""
    import uvicorn

    try:
        uvicorn.run(asgi, host=host, port=port, access_log=False, log_level="warning", lifespan="on",
                    server_header=False)
    except OSError as exc:  # pragma: no cover - port in use, permission
        err.print(f"[red]error:[/] cannot listen on {host}:{port}: {exc}")
        raise typer.Exit(1) from None
