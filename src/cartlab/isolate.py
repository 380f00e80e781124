"""How an analysis finds the subjects a per-subject engine fails for (``Analysis._run_isolated``): the
subjects an error names as its cause (:func:`cartlab.errors.failing_subjects`) at once, else by
bisecting the cohort down to single subjects. ``call(ids)`` runs the engine on ``ids`` and returns its
tables; ``parts`` collects the tables of the calls that succeed, ``failed`` each failing subject's
reason (the error it gives alone)."""

from __future__ import annotations

from collections.abc import Callable

from cartlab.errors import CartlabError

__all__ = ["bisect", "describe", "leave_out_named"]


def describe(exc: BaseException) -> str:
    """The one-line reason an error gives: a cartlab error's text, else "Type: text"."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, CartlabError) else text


def leave_out_named(call: Callable, ids: list[str], exc: BaseException, parts: list,
                    failed: dict[str, str]) -> list[str]:
    """The subjects ``exc`` names as its only cause left out, each with the error it gives alone, and the
    others run at once, again while the error names its subjects (session 43: a cohort with 52 such
    subjects took 345 ADTTE runs to bisect). Returns the ids still to bisect ([] when done)."""
    while (named := getattr(exc, "failing_subjects", None)) and set(named) <= set(ids):
        for sid in named:
            failed[sid] = describe(exc.alone(sid))  # type: ignore[attr-defined]
        out = set(named)
        ids = [sid for sid in ids if sid not in out]
        if not ids:
            return []
        try:
            parts.append(call(ids))
            return []
        except Exception as again:  # noqa: BLE001 - an engine's failure is recorded, not fatal
            exc = again
    return ids


def bisect(call: Callable, ids: list[str], parts: list, failed: dict[str, str]) -> None:
    """Each half of ``ids`` run, a failing half split again, down to single subjects."""
    if len(ids) == 1:
        try:
            parts.append(call(ids))
        except Exception as exc:  # noqa: BLE001
            failed[ids[0]] = describe(exc)
        return
    half = len(ids) // 2
    for chunk in (ids[:half], ids[half:]):
        try:
            parts.append(call(chunk))
        except Exception:  # noqa: BLE001
            bisect(call, chunk, parts, failed)
