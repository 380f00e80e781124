"""Keeping patient data out of the dashboard's logs (issue 17: "no patient data in logs").

Shiny prints the traceback of an error inside a page's computation (``traceback.print_exc``), warns
with the error's text, and uvicorn logs an application error with its traceback (``logging`` formats
it with ``traceback.print_exception``). An error's text and a traceback's source lines can carry a
subject id or a value. :func:`redacted_errors` replaces those channels, for the server process, with
one line naming the error's type and the code location only::

    cartlab dashboard: ValueError at cartlab/app/server.py:229 (course_plot); message withheld ...

``cartlab --debug serve`` (or ``CARTLAB_DEBUG=1``) keeps the full tracebacks.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path, PurePath

__all__ = ["WITHHELD", "error_line", "redacted_errors"]

WITHHELD = "message withheld (it may contain patient data); `cartlab --debug serve` prints it"
_IMPLICIT = object()


_PACKAGE = Path(__file__).resolve().parents[1]  # .../cartlab


def _where(tb) -> str:
    """The innermost frame in cartlab's code (else the innermost frame): ``path:line (function)``, the
    path from the package folder on (else the file's name): a code location only, no source line."""
    frames = traceback.extract_tb(tb) if tb is not None else []
    if not frames:
        return "unknown location"

    def in_package(filename: str) -> bool:
        return Path(filename).resolve().is_relative_to(_PACKAGE)

    ours = [f for f in frames if in_package(f.filename)]
    f = (ours or frames)[-1]
    path = Path(f.filename).resolve().relative_to(_PACKAGE.parent).as_posix() if ours else Path(f.filename).name
    return f"{path}:{f.lineno} ({f.name})"


def error_line(exc_type: type | None, tb) -> str:
    """One log line for an error: its type and where it was raised, never its message."""
    name = getattr(exc_type, "__name__", "error")
    return f"cartlab dashboard: {name} at {_where(tb)}; {WITHHELD}"


def _print_exception(exc, /, value=_IMPLICIT, tb=_IMPLICIT, limit=None, file=None, chain=True) -> None:
    if value is _IMPLICIT:  # print_exception(exc): the exception object alone (Python >= 3.10)
        exc_type, tb = (type(exc), exc.__traceback__) if isinstance(exc, BaseException) else (exc, None)
    else:
        exc_type = exc if isinstance(exc, type) else type(value)
        tb = getattr(value, "__traceback__", None) if tb is _IMPLICIT else tb
    print(error_line(exc_type, tb), file=file if file is not None else sys.stderr)


def _print_exc(limit=None, file=None, chain=True) -> None:
    exc_type, _, tb = sys.exc_info()
    print(error_line(exc_type, tb), file=file if file is not None else sys.stderr)


def _showwarning(message, category, filename, lineno, file=None, line=None) -> None:
    where = "/".join(PurePath(filename).parts[-2:])
    print(f"cartlab dashboard: {category.__name__} at {where}:{lineno}; {WITHHELD}",
          file=file if file is not None else sys.stderr)


@contextlib.contextmanager
def redacted_errors(enabled: bool = True) -> Iterator[None]:
    """While active (process-wide), tracebacks printed or logged and warnings shown name the error's
    type and code location only. ``enabled=False`` (``cartlab --debug``) changes nothing."""
    if not enabled:
        yield
        return
    saved = traceback.print_exception, traceback.print_exc, warnings.showwarning
    traceback.print_exception, traceback.print_exc, warnings.showwarning = _print_exception, _print_exc, _showwarning
    try:
        yield
    finally:
        traceback.print_exception, traceback.print_exc, warnings.showwarning = saved
