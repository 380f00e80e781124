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

__all__ = ["app", "console", "err", "run"]


def run() -> None:  # pragma: no cover - console entry point
    app()
