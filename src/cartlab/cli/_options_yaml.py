"""Reading an ``--options`` YAML file: one line naming the file, line and column for every problem
(review 40 B9, C5). A key given twice in one mapping is an error (YAML 1.2 §3.2.1.1: the keys of a mapping
are unique; PyYAML would silently keep the last value, so a threshold edited by two people could be
overridden unseen)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["OptionsFileError", "duplicate_key", "load_options_file"]


class OptionsFileError(ValueError):
    """The options file cannot be read: ``str()`` is the one-line message."""


def duplicate_key(node, path: tuple = ()) -> tuple[str, int, int] | None:
    """The first key given twice in a mapping of the composed ``node`` tree: (dotted key, first line, second
    line), 1-based; None when every mapping's keys are unique."""
    if isinstance(node, yaml.MappingNode):
        seen: dict = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else None
            if key is not None:
                if key in seen:
                    return ".".join((*path, str(key))), seen[key] + 1, k.start_mark.line + 1
                seen[key] = k.start_mark.line
            found = duplicate_key(v, (*path, str(key)))
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            found = duplicate_key(v, (*path, f"[{i}]"))
            if found:
                return found
    return None


def _mark(exc: yaml.YAMLError) -> str:
    """PyYAML's error as "line L, column C: problem (context on line a, column b)" (1-based)."""
    pm, cm = getattr(exc, "problem_mark", None), getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f", line {pm.line + 1}, column {pm.column + 1}" if pm is not None else ""
    context = getattr(exc, "context", None)
    if context and cm is not None:
        problem += f" ({context.rstrip(':')} on line {cm.line + 1}, column {cm.column + 1})"
    return f"{where}: {problem}"


def load_options_file(path: Path, flag: str = "--options") -> Any:
    """The parsed YAML of ``path``; :class:`OptionsFileError` naming ``flag``, the file and the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OptionsFileError(f"{flag} {path}: no such file") from None
    except IsADirectoryError:
        raise OptionsFileError(f"{flag} {path}: a folder, not a YAML file") from None
    except UnicodeDecodeError as exc:
        raise OptionsFileError(f"{flag} {path}: not UTF-8 text (byte {exc.start + 1})") from None
    except OSError as exc:
        raise OptionsFileError(f"{flag} {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        dup = duplicate_key(node)
        if dup:
            key, first, second = dup
            raise OptionsFileError(f"{flag} {path}, line {second}: {key} given twice (lines {first} and {second}); "
                                   "keep one")
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise OptionsFileError(f"{flag} {path}{_mark(exc)}") from None
