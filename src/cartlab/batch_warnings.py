"""Subject-counting warnings of a batched analysis, merged across batches (review 38 B1).

An engine run on one batch warns about that batch's subjects ("3 subject(s) have CAR-T samples but no
CAR-T infusion in doses.csv ...: SYN-0001, SYN-0002, SYN-0003"). A whole-study run gives ONE such
warning for every subject, so :func:`cartlab.analyze_batched.write_analysis_batched` merges the batches'
fragments of a warning into one: the counts summed, the subjects named in batch order (at most 20,
then "(+N more)", as :class:`cartlab.errors.SubjectsWarning` names them).

A count is a number followed (within three words) by a noun in the project's "(s)" form: "3
subject(s)", "5 CARCOPY/CARCELL row(s)". Other numbers (days, thresholds) must be the same in every
fragment for them to merge.

    >>> parts = [[{"engine": "e", "message": "2 subject(s) lack X: A, B"}],
    ...          [{"engine": "e", "message": "1 subject(s) lack X: C"}]]
    >>> shapes = {("e", "2 subject(s) lack X: A, B"): ("2 subject(s) lack X: {subjects}", ["A", "B"]),
    ...           ("e", "1 subject(s) lack X: C"): ("1 subject(s) lack X: {subjects}", ["C"])}
    >>> merge_warnings(parts, shapes)
    [{'engine': 'e', 'message': '3 subject(s) lack X: A, B, C'}]
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["merge_warnings", "warning_shape"]

#: a count: digits followed by up to three words and a noun ending in "(s)"
_COUNT = re.compile(r"(?<![\w.])(\d+)(?=((?: [\w/.\-]+){0,3})\(s\))")
_PLACE = "{subjects}"
_LIMIT = 20  # SubjectsWarning's default: every caller uses it
_MORE = re.compile(r" \(\+\d+ more\)$")


def warning_shape(message) -> tuple[str, list[str], str | None, list[str]] | None:
    """(template, subject ids, the words that stand for the ids when warnings do not name subjects, the
    labels shown for the ids) of a :class:`cartlab.errors.SubjectsWarning` (None for another warning; the
    words None when the warning has its own unnamed text)."""
    from cartlab.errors import SubjectsWarning

    if isinstance(message, SubjectsWarning) and _PLACE in message.template:
        head, _, tail = message.template.partition(_PLACE)
        unnamed = message.unnamed
        words = (unnamed[len(head):len(unnamed) - len(tail)] if unnamed.startswith(head) and unnamed.endswith(tail)
                 and len(unnamed) >= len(head) + len(tail) else None)
        return message.template, list(message.subject_ids), words, list(message.labels)
    return None


def _shown(template: str, text: str, ids: list[str], labels: list[str] | None = None) -> list[str] | None:
    """The labels a rendered warning shows at ``{subjects}`` (None when the text is not the template's).
    ``labels``: the warning's own labels (a label may hold ", ", e.g. "S1 (day 46, events.csv:9)")."""
    head, _, tail = template.partition(_PLACE)
    if not (text.startswith(head) and text.endswith(tail)) or len(text) < len(head) + len(tail):
        return None
    named = _MORE.sub("", text[len(head):len(text) - len(tail)])
    if labels is not None:
        shown = list(labels[:_LIMIT])
        return shown if named == ", ".join(shown) and len(shown) == min(len(ids), _LIMIT) else None
    shown = named.split(", ") if named else []
    return shown if len(shown) == min(len(ids), _LIMIT) else None


def merge_warnings(batches: list[list[dict[str, str]]], shapes: dict[tuple[str, str], tuple],
                   engine_rank: dict[str, int] | None = None, merged_shapes: dict | None = None,
                   named: bool = True) -> list[dict[str, str]]:
    """The batches' warnings (each batch's ``{"engine", "message"}`` list, batches in order) as a
    whole-study run lists them: each subject-counting warning's fragments merged into one, other
    warnings once; engines in ``engine_rank`` order, and within an engine in the order every batch
    agrees on (a warning before another in some batch stays before it; else first seen first).
    ``shapes`` maps (engine, message) to the fragment's (template, ids) (:func:`warning_shape`); a
    warning without one, or whose text is not its template's (e.g. the unnamed form of ``cartlab
    report``), is kept as it is. ``merged_shapes``, when given, receives the (template, ids, words) of each
    merged warning, so it can be merged again (a whole run's bisected parts, then the batches). ``named``
    False (``cartlab analyze`` without ``--debug``: its terminal output is a log): a merged warning gives
    the words pointing to the table that names its subjects instead of the ids, as a whole run does."""
    rank = engine_rank or {}
    entries: dict[tuple, dict[str, Any]] = {}
    groups: dict[tuple, dict[str, Any]] = {}
    after: dict[tuple, set[tuple]] = {}
    for batch in batches:
        prev: dict[str, tuple] = {}
        for w in batch:
            shape = shapes.get((w["engine"], w["message"]))
            shown = None if shape is None else _shown(shape[0], w["message"], shape[1],
                                                      shape[3] if len(shape) > 3 else None)
            if shape is None or shown is None:
                key: tuple = ("text", w["engine"], w["message"])
                entries.setdefault(key, dict(w))
            else:
                template, ids = shape[0], shape[1]
                key = ("merged", w["engine"], _COUNT.sub("#", template))
                g = groups.get(key)
                if g is None:
                    g = groups[key] = {"template": template, "ids": [], "shown": [],
                                       "counts": [0] * len(_COUNT.findall(template)),
                                       "words": shape[2] if len(shape) > 2 else None}
                    entries[key] = dict(w)
                known = set(g["ids"])
                if any(i not in known for i in ids):  # an exact repeat adds nothing
                    g["ids"].extend(i for i in ids if i not in known)
                    g["shown"].extend(shown)
                    for k, m in enumerate(_COUNT.finditer(template)):
                        g["counts"][k] += int(m.group(1))
                    entries[key]["message"] = _render(g, named)
            after.setdefault(key, set())
            p = prev.get(w["engine"])
            if p is not None and p != key:
                after[key].add(p)
            prev[w["engine"]] = key
    if merged_shapes is not None:
        for key, g in groups.items():
            counts = iter(g["counts"])
            merged_shapes[(key[1], entries[key]["message"])] = (
                _COUNT.sub(lambda _m: str(next(counts)), g["template"]), list(g["ids"]), g["words"], list(g["shown"]))
    first = {k: i for i, k in enumerate(entries)}
    order = sorted(entries, key=lambda k: (rank.get(k[1], len(rank)), first[k]))
    out: list[dict[str, str]] = []
    for engine in dict.fromkeys(k[1] for k in order):
        todo = [k for k in order if k[1] == engine]
        while todo:  # the first-seen warning whose every predecessor is placed (a cycle: first seen)
            ready = [k for k in todo if not (after[k] & set(todo))] or todo
            out.append(entries[ready[0]])
            todo.remove(ready[0])
    return out


def _render(g: dict[str, Any], named: bool = True) -> str:
    counts = iter(g["counts"])
    template = _COUNT.sub(lambda _m: str(next(counts)), g["template"])
    if not named and g.get("words") is not None:
        return template.replace(_PLACE, g["words"])
    n = len(g["ids"])
    named = ", ".join(g["shown"][:_LIMIT]) + (f" (+{n - _LIMIT} more)" if n > _LIMIT else "")
    return template.replace(_PLACE, named)
