"""One error hierarchy for cartlab.

Every expected failure is a :class:`CartlabError`: its message says what went wrong, where (file,
row, column, subject) and, in ``hint``, what to do. The command line turns it into one message and
an exit code (``exit_code``: 2 for bad input or usage, 1 otherwise) without a traceback;
``cartlab --debug`` (or ``CARTLAB_DEBUG=1``) shows the traceback too.

* :class:`InputError` — the user's input cannot be used (an invalid study folder, a file that does
  not exist, a bad option value, an unknown subject). Exit code 2.
* :class:`StoreError` (``cartlab.store``) — the DuckDB store cannot be opened or changed. Exit 1.
* :class:`EngineError` — an analysis engine could not run on some subjects; the analysis records it
  under ``skipped`` and goes on with the others.

Warnings that a user should see (an unknown vasopressor name, subjects censored at their last
recorded row) are :class:`CartlabWarning`.
"""

from __future__ import annotations


class CartlabError(Exception):
    """Base class of every expected cartlab error (exit code 1 unless a subclass says otherwise)."""

    exit_code = 1

    def __init__(self, message: str = "", *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class InputError(CartlabError, ValueError):
    """The input cannot be used as given: names the file/row/column or option, and what to do."""

    exit_code = 2


class EngineError(CartlabError):
    """An engine could not derive its table for some subjects (recorded, the analysis goes on)."""


class CartlabWarning(UserWarning):
    """Something a user should know about a result that was still produced."""


def debug_from_env() -> bool:
    """``CARTLAB_DEBUG`` set to 1/true/yes (as ``cartlab --debug``): full tracebacks, and warnings
    may name subjects."""
    import os

    return os.environ.get("CARTLAB_DEBUG", "").lower() in ("1", "true", "yes")
