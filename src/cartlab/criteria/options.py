"""One base class for the engines' options: frozen, validated, backed by a criteria table's defaults.

A subclass declares its options as annotated fields (a pydantic dataclass is made of it, so
``dataclasses.fields`` / ``asdict`` / ``replace`` work)::

    class CrsOptions(CriteriaOptions):
        fever_threshold_c: float | None = None     # None = the table's default
        episode_join_gap_days: int = 1              # an engine option (not in the table)
        criteria: str = "astct_crs_2019"

* A field whose default is ``None`` takes the criteria table's default (``defaults:``);
  :meth:`CriteriaOptions.resolved` overlays the fields that are set on those defaults, validates
  every value with the field's type (a YAML list becomes the tuple the field declares) and adds the
  engine options (fields with another default). A field set for a table that lacks it is refused.
* Unknown options and invalid values are refused when the options are made, with the class, the
  option and what is allowed (:class:`~cartlab.errors.InputError`).
* The documentation is generated from the table: :func:`options_markdown` renders every option
  with its default and the YAML comment above / beside it in ``defaults:`` (engine options: the
  field's ``description``); the class docstring ends with that table, so it cannot drift.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
from importlib import resources
from typing import Any, ClassVar

from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as _pydantic_dataclass

from cartlab.criteria.model import load_raw
from cartlab.errors import InputError

__all__ = ["CriteriaOptions", "option_docs", "options_markdown"]

_KEY = re.compile(r"^(?P<indent>[ \t]+)(?P<key>[A-Za-z_][A-Za-z0-9_]*):(?P<rest>.*)$")


def _split_comment(rest: str) -> tuple[str, str]:
    """``' [0, 3]   # days'`` -> (``'[0, 3]'``, ``'days'``): the first ``#`` outside quotes."""
    quote = None
    for i, ch in enumerate(rest):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or rest[i - 1] in " \t"):
            return rest[:i].strip(), rest[i + 1:].strip()
    return rest.strip(), ""


@functools.cache
def option_docs(table: str, package: str = "cartlab.grading") -> dict[str, tuple[str, str]]:
    """``defaults:`` of a criteria table as written: option -> (value text, comment). The comment is
    the full-line comments just above the option (not a ``##`` group heading) and the comment on
    its line."""
    text = resources.files(package).joinpath("criteria", f"{table}.yaml").read_text(encoding="utf-8")
    out: dict[str, tuple[str, str]] = {}
    inside, indent, pending = False, None, []
    for line in text.splitlines():
        if not inside:
            inside = line.rstrip() == "defaults:"
            continue
        if line.strip() == "":
            pending = []
            continue
        if not line[0].isspace():
            if line.startswith("#"):
                pending = []
                continue
            break
        stripped = line.strip()
        if stripped.startswith("##"):  # a group heading, not an option's documentation
            pending = []
            continue
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        m = _KEY.match(line)
        if m and (indent is None or len(m["indent"]) == indent):
            indent = len(m["indent"])
            value, comment = _split_comment(m["rest"])
            out[m["key"]] = (value, " ".join([*pending, comment]).strip())
            pending = []
    return out


def _fields(cls: type) -> list[dataclasses.Field]:
    return list(dataclasses.fields(cls))


def _default(cls: type, name: str) -> Any:
    """A field's default (a ``default_factory`` is called: ``field(default_factory=dict)`` is ``{}``)."""
    info = cls.__pydantic_fields__[name]
    return info.default_factory() if info.default_factory is not None else info.default


def _table_backed(cls: type, f: dataclasses.Field) -> bool:
    """A field whose default is None takes the criteria table's default."""
    return _default(cls, f.name) is None and f.name != "criteria"


def _describe(cls: type, f: dataclasses.Field) -> str:
    found = cls.__pydantic_fields__[f.name].description
    if not found and f.name == "criteria":
        return f"the criteria table ({cls.criteria_package.replace('.', '/')}/criteria/<name>.yaml)"
    return found or ""


def options_markdown(cls: type, tables: tuple[str, ...] | None = None) -> str:
    """The options of ``cls`` as a Markdown table: option, default (per criteria table) and what it
    means, read from the tables' ``defaults:`` (values and comments) and the engine fields."""
    tables = tables or cls.criteria_tables()
    docs = {t: option_docs(t, cls.criteria_package) for t in tables}
    head = "| option | " + " | ".join(f"default ({t})" for t in tables) + " | meaning |"
    rows = [head, "|" + " --- |" * (len(tables) + 2)]
    for f in _fields(cls):
        if _table_backed(cls, f):
            found = [docs[t].get(f.name) for t in tables]
            values = [f"`{d[0]}`" if d else "(not in the table)" for d in found]
            meaning = next((d[1] for d in found if d and d[1]), "")
        else:
            values = [f"`{_default(cls, f.name)!r}`" for _ in tables]
            meaning = _describe(cls, f)
        rows.append(f"| `{f.name}` | " + " | ".join(values) + f" | {meaning.replace('|', '/')} |")
    return "\n".join(rows)


def _check_values(cls: type, obj: Any) -> None:
    """Values of the right type that cannot be meant: a reversed window (``*_window``,
    ``*_window_days``: [start, end] with start > end), a value outside the class's ``limits``
    (``{option: (low, high, what it is)}``, e.g. a fever threshold given in Fahrenheit), an entry
    outside the class's ``allowed`` values (``{option: (values...)}``)."""
    for f in _fields(obj):
        v = getattr(obj, f.name)
        if (f.name.endswith(("_window", "_window_days")) and isinstance(v, tuple) and len(v) == 2
                and all(isinstance(x, (int, float)) for x in v) and v[0] > v[1]):
            raise InputError(f"{cls.__name__}: {f.name}={list(v)} is reversed; write [start, end] with start <= end")
    for name, (low, high, what) in getattr(cls, "limits", {}).items():
        v = getattr(obj, name, None)
        if isinstance(v, (int, float)) and not low <= v <= high:
            raise InputError(f"{cls.__name__}: {name}={v!r} is not {what} (expected {low} to {high})")
    for name, values in getattr(cls, "allowed", {}).items():
        v = getattr(obj, name, None)
        bad = [x for x in (v if isinstance(v, tuple) else ()) if x not in values]
        if bad:
            raise InputError(f"{cls.__name__}: {name}: unknown value(s) {', '.join(map(repr, bad))}; "
                             f"the values are {', '.join(values)}")


def _message(cls: type, exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        msg = e["msg"].removeprefix("Value error, ")
        if not e["loc"]:  # raised by __post_init__ (the whole options): the message says it all
            parts.append(msg)
            continue
        parts.append(f"{'.'.join(str(x) for x in e['loc'])}: {msg} (got {e.get('input')!r})")
    return f"{cls.__name__}: " + "; ".join(parts)


class CriteriaOptions:
    """Base class of options backed by a criteria table (see the module docstring)."""

    #: the package whose ``criteria/`` folder holds the tables
    criteria_package: ClassVar[str] = "cartlab.grading"
    #: the tables the options apply to when the ``criteria`` field does not name one
    tables: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _pydantic_dataclass(cls, frozen=True, config=ConfigDict(extra="forbid"))
        names = [f.name for f in _fields(cls)]
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self, *args: Any, **kw: Any) -> None:
            unknown = [k for k in kw if k not in names]
            if unknown:
                hints = [f"{k!r}" + (f" (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, names, 1)) else "")
                         for k in unknown]
                raise InputError(f"{cls.__name__}: unknown option {', '.join(hints)}; the options are "
                                 f"{', '.join(names)}")
            try:
                init(self, *args, **kw)
            except ValidationError as exc:
                raise InputError(_message(cls, exc)) from None
            _check_values(cls, self)

        cls.__init__ = __init__
        if cls.criteria_tables():
            cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n\n    Options (generated from the criteria table):\n\n" + \
                "\n".join("    " + line for line in options_markdown(cls).splitlines()) + "\n"

    @classmethod
    def criteria_tables(cls) -> tuple[str, ...]:
        default = _default(cls, "criteria") if "criteria" in cls.__pydantic_fields__ else None
        return (default,) if isinstance(default, str) else tuple(cls.tables)

    def _table_name(self) -> str:
        name = getattr(self, "criteria", None)
        if not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}.resolved needs the criteria table (its tables: {self.tables})")
        return name

    def resolved(self, table: str | dict[str, Any] | None = None) -> dict[str, Any]:
        """The table's ``defaults`` overlaid with the options set here (validated with the fields'
        types), then the engine options; an option set for a table that lacks it is refused."""
        data = table if isinstance(table, dict) else load_raw(table or self._table_name(), self.criteria_package)
        defaults = data.get("defaults") or {}
        by_name = {f.name: f for f in _fields(self)}
        out: dict[str, Any] = {}
        for key, value in defaults.items():
            f = by_name.get(key)
            mine = None if f is None else getattr(self, key)
            value = mine if mine is not None else value
            out[key] = value if f is None else _validate(type(self), f, value, data)
        for f in _fields(self):
            if f.name in defaults:
                continue
            value = getattr(self, f.name)
            if _table_backed(type(self), f):
                if value is not None:
                    what = data.get("standard") or data.get("version")
                    raise InputError(f"option {f.name} does not apply to {what} ({type(self).__name__})")
                continue
            out[f.name] = value
        return out


def _validate(cls: type, f: dataclasses.Field, value: Any, data: dict) -> Any:
    try:
        return _adapter(cls, f.name).validate_python(value)
    except ValidationError as exc:
        raise InputError(f"{cls.__name__}.{f.name} = {value!r} (criteria table {data.get('version')!r}): "
                         + "; ".join(e["msg"] for e in exc.errors())) from None


@functools.cache
def _adapter(cls: type, name: str) -> TypeAdapter:
    return TypeAdapter(cls.__pydantic_fields__[name].annotation)
