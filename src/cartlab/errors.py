"""One error hierarchy for cartlab.

Every expected failure is a :class:`CartlabError`: its message says what went wrong, where (file,
row, column, subject) and, in ``hint``, what to do. The command line turns it into one message and
an exit code (``exit_code``: 2 for bad input or usage, 1 otherwise) without a traceback;
``cartlab --debug`` (or ``CARTLAB_DEBUG=1``) shows the traceback too; its second role: the warnings of
``cartlab report`` name the subjects they count (see :func:`subject_ids_in_warnings`).

* :class:`InputError` — the user's input cannot be used (an invalid study folder, a file that does
  not exist, a bad option value, an unknown subject). Exit code 2.
* :class:`StoreError` (``cartlab.store``) — the DuckDB store cannot be opened or changed. Exit 1.
* :class:`EngineError` — an analysis engine could not run on some subjects; the analysis records it
  under ``skipped`` and goes on with the others.

Warnings that a user should see (an unknown vasopressor name, subjects censored at their last
recorded row) are :class:`CartlabWarning`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar


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


def failing_subjects(exc: BaseException, subjects, alone) -> BaseException:
    """Mark ``exc``, an engine's failure, as caused by ``subjects`` only, each of which fails alone
    with the exception ``alone(subject_id)`` returns. ``Analysis`` then leaves out just these subjects
    and runs the others at once, instead of bisecting the cohort to find them (session 43). Returns
    ``exc``, to raise."""
    exc.failing_subjects = list(subjects)  # type: ignore[attr-defined]
    exc.alone = alone  # type: ignore[attr-defined]
    return exc


class CartlabWarning(UserWarning):
    """Something a user should know about a result that was still produced."""


def debug_from_env() -> bool:
    """``CARTLAB_DEBUG`` set to 1/true/yes (as ``cartlab --debug``): full tracebacks, and warnings
    may name subjects."""
    import os

    return os.environ.get("CARTLAB_DEBUG", "").lower() in ("1", "true", "yes")


# ------------------------------------------------------------------------------------------------
# warnings that name subjects: named for ``cartlab analyze`` and the API, counted on a log


#: whether warnings printed now may name subjects (see :func:`subject_ids_in_warnings`)
_NAME_SUBJECTS: ContextVar[bool] = ContextVar("cartlab_name_subjects", default=True)


def names_subjects() -> bool:
    """Whether warnings shown now may name subjects (False inside ``subject_ids_in_warnings(False)``:
    ``cartlab report`` without ``--debug``, whose terminal output is a log)."""
    return _NAME_SUBJECTS.get()


@contextmanager
def subject_ids_in_warnings(named: bool) -> Iterator[None]:
    """While active (this thread / task), warnings name subjects (``named``) or give the words of
    :attr:`SubjectsWarning.unnamed` (a pointer to the table naming them): both on the terminal and as
    recorded in an ``Analysis`` made inside it (``Analysis.warnings``, so the report's
    ``tables/analysis.json``). ``cartlab analyze`` and the API (the default) name them. The study
    reader's input checks (file, row, column) are not affected."""
    token = _NAME_SUBJECTS.set(bool(named))
    try:
        yield
    finally:
        _NAME_SUBJECTS.reset(token)


#: how to see the subjects a warning of ``cartlab report`` counts (``--debug``'s second role)
DEBUG_NAMES = "cartlab --debug before the command (cartlab --debug analyze ...) names them here"


class SubjectsWarning(CartlabWarning):
    """A :class:`CartlabWarning` that names subjects. ``template`` holds ``{subjects}``: ``str()`` puts
    the ids there (``labels`` when given, e.g. "S1 (22 d)"; at most ``limit``, then "(+N more)");
    :attr:`unnamed` puts "named in ``where``" there instead (or is given), for output that is a log
    (``cartlab report``). ``subject_ids``: every id, in order, without repeats. Use :func:`warning_text`
    for the text to record or show now."""

    def __init__(self, template: str, ids, where: str, labels=None, limit: int = 20, unnamed: str | None = None):
        self.subject_ids = list(dict.fromkeys(ids))
        shown = list(labels) if labels is not None else self.subject_ids
        named = ", ".join(str(s) for s in shown[:limit]) + (
            f" (+{len(shown) - limit} more)" if len(shown) > limit else "")
        self.template, self.where = template, where
        self.labels = [str(s) for s in shown]  # what {subjects} shows, one per id (labels may hold ", ")
        self.unnamed = unnamed if unnamed is not None else template.replace(
            "{subjects}", f"named in {where}, which cartlab analyze writes ({DEBUG_NAMES})")
        super().__init__(template.replace("{subjects}", named))

    def __reduce__(self):  # a plain CartlabWarning with the named text (e.g. across processes)
        return CartlabWarning, (str(self),)


def warning_text(message) -> str:
    """The text of a warning (its message) to record or show now: a :class:`SubjectsWarning` names
    its subjects unless :func:`names_subjects` is False (then its :attr:`~SubjectsWarning.unnamed`)."""
    if isinstance(message, SubjectsWarning) and not names_subjects():
        return message.unnamed
    return str(message)
