"""The ``cartlab`` command line (typer + rich): one module per command group.

``cartlab.cli.base`` holds the application, the shared options (``--store``, ``--csv-dialect``) and
the error handling; importing this package registers every command on :data:`app`.
"""

import importlib

from cartlab.cli.base import app, console, err

#: the command groups, in the order ``cartlab --help`` lists them (importing one registers its commands)
GROUPS = ("study", "analysis", "grading", "kinetics", "protocol", "simulate", "twin", "serve")
for _group in GROUPS:
    importlib.import_module(f"cartlab.cli.{_group}")


def _one_line_summaries(typer_app) -> None:
    """Give every command a one-line summary for ``--help``'s command list: the first paragraph of
    its docstring with the docstring's line breaks removed (rich help keeps them, which breaks the
    list's lines in mid-sentence)."""
    import inspect

    for info in typer_app.registered_commands:
        if info.short_help is None:
            doc = info.help or inspect.getdoc(info.callback) or ""
            info.short_help = " ".join(doc.split("\n\n")[0].split()) or None
    for group in typer_app.registered_groups:
        _one_line_summaries(group.typer_instance)


_one_line_summaries(app)

__all__ = ["app", "console", "err", "run"]


def run() -> None:  # pragma: no cover - console entry point
    app()
