"""The criteria language: the schema of a criteria table, validated on load (pydantic v2).

A criteria table (``cartlab/<package>/criteria/<name>.yaml``) has a header — ``version``,
``citation``, ``status`` (vocabulary: :data:`cartlab.criteria.status.STATUS_ORDER`), optional
``standard`` —, ``defaults`` (the documented options, see :mod:`cartlab.criteria.options`) and
``rule_sets``: named rule sets, each an ordered list of rules (tried in the order written). Any
other top-level key is data the engine reads as it is (device levels, PALS cut-offs ...).

A **rule** is ``{id, grade | category | points, when: [condition, ...], text, citation, status}``:
its conditions must all hold; ``option: {name: value}`` keeps the rule only when the options have
these values; ``status`` defaults to the table's. A **condition** is one of

* ``{feature, op, value}`` — a leaf. ``op``: ``< <= > >= == !=``, ``in`` / ``not_in`` (a list),
  ``between`` (``value: [low, high]`` with ``closed: both|left|right|neither``, required). A value
  is a number, a string, a boolean, a list, an option (``"$name"``, from ``defaults``) or a per-row
  column ``{column: name, factor: f, offset: o}`` (``f * column + o``); ``signif: n`` compares
  both sides rounded to n significant digits (R's ``signif``; a rounded range has closed ends);
* ``{all: [...]}``, ``{any: [...]}``, ``{not: condition}``;
* ``{count: [...], op, value}`` — how many of the conditions hold, compared with ``value``;
* ``{missing: feature}`` (or a list) — the feature (any of them) is missing. Never unknown.

Three-valued logic: a condition on a missing input is UNKNOWN (None), not false; ``all`` / ``any``
/ ``not`` combine Kleene-style and ``count`` is TRUE (FALSE) when every (no) number of holding
conditions the unknowns allow satisfies it. The evaluation is :mod:`cartlab.criteria.compile`
(polars) and :mod:`cartlab.criteria.direct` (pure Python, the reference of the property tests).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from cartlab._yaml import load_yaml
from cartlab.criteria.status import STATUS_ORDER
from cartlab.errors import InputError

COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")
OPS = (*COMPARISONS, "in", "not_in", "between")
CLOSED = ("both", "left", "right", "neither")
Status = Literal["verified", "verified_secondary", "convention", "partially_verified", "proxy", "unverified"]
assert set(Status.__args__) == set(STATUS_ORDER)  # one vocabulary (status.py)

Scalar = StrictBool | StrictInt | StrictFloat | StrictStr
Number = StrictInt | StrictFloat


class SchemaError(InputError):
    """A YAML file breaks its schema: ``problems`` lists (where, message) for every problem."""

    #: what the file is, in the message ("3 problems in the criteria table")
    what = "file"

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        n = len(problems)
        lines = [f"{source}: {n} problem{'s' if n != 1 else ''} in the {self.what}"]
        lines += [f"  - {where}: {msg}" if where else f"  - {msg}" for where, msg in problems]
        super().__init__("\n".join(lines))


class CriteriaError(SchemaError):
    """A criteria table breaks the schema; where = key path and rule id
    (``rule_sets.hypoxia[1] (crs.hypoxia.high_flow) when[0].op``)."""

    what = "criteria table"


#: the comparison operators
COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
           "!=": operator.ne}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(_Model):
    """A per-row reference: ``factor * <column> + offset`` (a list column for ``in``)."""

    column: str = Field(min_length=1)
    factor: Number = 1
    offset: Number = 0

    @property
    def plain(self) -> bool:
        return self.factor == 1 and self.offset == 0


Operand = Scalar | Column


def option_name(v: Any) -> str | None:
    """``"$name"`` -> ``"name"`` (an option reference), else None."""
    return v[1:] if isinstance(v, str) and v.startswith("$") and len(v) > 1 else None


class Leaf(_Model):
    """``{feature, op, value}``: the feature compared with a value (see the module docstring)."""

    feature: str = Field(min_length=1)
    op: Literal["<", "<=", ">", ">=", "==", "!=", "in", "not_in", "between"]
    value: Operand | tuple[Operand, ...]
    closed: Literal["both", "left", "right", "neither"] | None = None
    signif: int | None = Field(default=None, ge=1, le=22)

    @model_validator(mode="after")
    def _shape(self) -> Leaf:
        listed = isinstance(self.value, tuple)
        if self.op == "between":
            if not listed or len(self.value) != 2:
                raise ValueError("op 'between' needs value [low, high]")
            if self.closed is None:
                raise ValueError("op 'between' needs closed: both | left | right | neither (which ends are inclusive)")
            if any(isinstance(b, (bool, str)) and option_name(b) is None for b in self.value):
                raise ValueError("the bounds of 'between' are numbers, options ($name) or columns")
        elif self.closed is not None:
            raise ValueError("closed only applies to op 'between'")
        if self.op in ("in", "not_in"):
            if self.signif is not None:
                raise ValueError(f"signif applies to comparisons, not to op {self.op!r}")
            if listed and not self.value:
                raise ValueError(f"op {self.op!r} needs a non-empty list")
            if not listed and option_name(self.value) is None and not isinstance(self.value, Column):
                raise ValueError(f"op {self.op!r} needs a list, an option ($name) or a list column")
            if isinstance(self.value, Column) and not self.value.plain:
                raise ValueError("a list column takes no factor or offset")
        elif self.op != "between" and listed:
            raise ValueError(f"op {self.op!r} compares with one value, not a list")
        return self


class AllOf(_Model):
    all: tuple[Condition, ...]


class AnyOf(_Model):
    any: tuple[Condition, ...]


class Not(_Model):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    not_: Condition = Field(alias="not")


class Count(_Model):
    """How many of ``count`` hold, compared with ``value`` (a number or an option)."""

    count: tuple[Condition, ...]
    op: Literal["<", "<=", ">", ">=", "==", "!="]
    value: Number | StrictStr

    @model_validator(mode="after")
    def _value(self) -> Count:
        if isinstance(self.value, str) and option_name(self.value) is None:
            raise ValueError("count value must be a number or an option ($name)")
        return self


class Missing(_Model):
    """TRUE when the feature (any of the features) is missing; never unknown."""

    missing: StrictStr | tuple[StrictStr, ...]

    @property
    def features(self) -> tuple[str, ...]:
        return self.missing if isinstance(self.missing, tuple) else (self.missing,)


_KINDS = {"all": "<all>", "any": "<any>", "not": "<not>", "count": "<count>", "missing": "<missing>"}


def _kind(v: Any) -> str:
    if isinstance(v, dict):
        return next((tag for key, tag in _KINDS.items() if key in v), "<leaf>")
    return f"<{type(v).__name__.lower()}>".replace("<allof>", "<all>").replace("<anyof>", "<any>")


Condition = Annotated[
    Annotated[Leaf, Tag("<leaf>")] | Annotated[AllOf, Tag("<all>")] | Annotated[AnyOf, Tag("<any>")] | Annotated[Not, Tag("<not>")] | Annotated[Count, Tag("<count>")] | Annotated[Missing, Tag("<missing>")],
    Discriminator(_kind),
]
for _m in (AllOf, AnyOf, Not, Count):
    _m.model_rebuild()


class Rule(_Model):
    """One row of a rule set: an outcome (grade, category or points) and its conditions."""

    id: str = Field(min_length=1)
    grade: StrictInt | None = None
    category: str | None = None
    points: Number | None = None
    when: tuple[Condition, ...] = ()
    option: dict[str, Scalar] = Field(default_factory=dict)
    text: str | None = None
    citation: str = Field(min_length=1)
    status: Status | None = None
    note: str | None = None
    src: str | None = None

    @property
    def label(self) -> str:
        return self.category if self.category is not None else self.id


RULES = TypeAdapter(tuple[Rule, ...])


def render(rule: Rule, options: Mapping[str, Any]) -> str:
    """The rule's text with ``{option}`` placeholders filled in (the id when it has no text)."""
    return (rule.text or rule.id).format(**options)


def leaves(cond: Any) -> list[Leaf | Missing]:
    """The leaves of a condition (``{feature, op, value}`` and ``{missing}``), in order."""
    if isinstance(cond, (Leaf, Missing)):
        return [cond]
    if isinstance(cond, Not):
        return leaves(cond.not_)
    subs = cond.all if isinstance(cond, AllOf) else cond.any if isinstance(cond, AnyOf) else cond.count
    return [x for c in subs for x in leaves(c)]


def option_refs(cond: Any) -> set[str]:
    """Every option a condition names (``$name``)."""
    out: set[str] = set()
    for leaf in leaves(cond):
        if isinstance(leaf, Leaf):
            vals = leaf.value if isinstance(leaf.value, tuple) else (leaf.value,)
            out |= {n for v in vals if (n := option_name(v))}
    stack = [cond]
    while stack:
        c = stack.pop()
        if isinstance(c, Count) and option_name(c.value):
            out.add(option_name(c.value))
        stack += list(getattr(c, "all", ()) or getattr(c, "any", ()) or getattr(c, "count", ()) or ())
        if isinstance(c, Not):
            stack.append(c.not_)
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, Column):
        out = v.column if v.factor == 1 else f"{v.factor} x {v.column}"
        return out + (f" {'+' if v.offset > 0 else '-'} {abs(v.offset)}" if v.offset else "")
    return str(v)


def describe(cond: Any, options: Mapping[str, Any] | None = None) -> str:
    """A condition in words (``anc >= 1.0``, ``>= 1 of (anc >= 1.0; plt >= 100)``), options filled in."""
    options = options or {}

    def val(v: Any) -> str:
        name = option_name(v)
        return _fmt(options[name] if name is not None else v)

    if isinstance(cond, (AllOf, AnyOf)):
        key = "all" if isinstance(cond, AllOf) else "any"
        return f"{key} of (" + "; ".join(describe(c, options) for c in getattr(cond, key)) + ")"
    if isinstance(cond, Count):
        return f"{cond.op} {val(cond.value)} of (" + "; ".join(describe(c, options) for c in cond.count) + ")"
    if isinstance(cond, Not):
        return f"not ({describe(cond.not_, options)})"
    if isinstance(cond, Missing):
        return " or ".join(cond.features) + " missing"
    if cond.op == "between":
        lo, hi = cond.value
        left, right = ("[" if cond.closed in ("both", "left") else "("), ("]" if cond.closed in ("both", "right") else ")")
        return f"{cond.feature} in {left}{val(lo)}, {val(hi)}{right}"
    if isinstance(cond.value, tuple):
        return f"{cond.feature} {cond.op.replace('_', ' ')} {{{', '.join(val(v) for v in cond.value)}}}"
    return f"{cond.feature} {cond.op} {val(cond.value)}"



class CriteriaTable(BaseModel):
    """A criteria table: header, ``defaults`` (options) and ``rule_sets`` (named rule sets). Other
    top-level keys are kept as they are (``table.extra("devices")``)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    version: str
    citation: str = Field(min_length=1)
    status: Status
    standard: str | None = None
    defaults: dict[str, Any] = Field(default_factory=dict)
    rule_sets: dict[str, tuple[Rule, ...]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _references(self) -> CriteriaTable:
        seen: set[str] = set()
        for set_name, rules in self.rule_sets.items():
            for i, r in enumerate(rules):
                where = f"rule_sets.{set_name}[{i}] ({r.id})"
                if r.id in seen:
                    raise ValueError(f"{where}: rule id used twice")
                seen.add(r.id)
                unknown = sorted({n for c in r.when for n in option_refs(c)} - set(self.defaults))
                unknown += sorted(set(r.option) - set(self.defaults))
                if unknown:
                    raise ValueError(f"{where}: unknown option(s) {unknown}: not in the table's defaults")
        return self

    def rule_set(self, name: str) -> tuple[Rule, ...]:
        if name not in self.rule_sets:
            raise KeyError(f"criteria table {self.name!r} has no rule set {name!r} (has {sorted(self.rule_sets)})")
        return self.rule_sets[name]

    def extra(self, key: str) -> Any:
        """A top-level key that is not part of the schema (read as it is)."""
        return (self.model_extra or {})[key]

    def status_of(self, rule: Rule) -> str:
        return rule.status or self.status

    def texts(self, sets: tuple[str, ...], options: Mapping[str, Any]) -> dict[str, str]:
        """Rule id -> text (options filled in) for every rule of the given rule sets."""
        return {r.id: render(r, options) for s in sets for r in self.rule_set(s)}


def _where(loc: tuple, data: dict) -> str:
    """``rule_sets.hypoxia[1] (crs.hypoxia.high_flow) when[0].op`` from a pydantic error location."""
    out, node, named = "", data, False
    for i, key in enumerate(loc):
        if isinstance(key, str) and key.startswith("<") and key.endswith(">"):
            continue  # a condition kind tag
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            out += ("" if not out else " " if out.endswith(")") else ".") + str(key)
        node = node[key] if isinstance(node, (dict, list)) and _has(node, key) else None
        if not named and i >= 2 and loc[0] == "rule_sets" and isinstance(node, dict) and "id" in node:
            out += f" ({node['id']})"
            named = True
    return out


def _has(node: Any, key: Any) -> bool:
    return key in node if isinstance(node, dict) else isinstance(key, int) and 0 <= key < len(node)


def parse_table(data: Any, source: str, name: str | None = None) -> CriteriaTable:
    """Validate a parsed criteria table; :class:`CriteriaError` names the file, rule and key path."""
    if not isinstance(data, dict):
        raise CriteriaError(source, [("", "a criteria table is a mapping")])
    name = name or source.rsplit("/", 1)[-1].removesuffix(".yaml")
    try:
        return CriteriaTable.model_validate({**data, "name": name})
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            msg = e["msg"].removeprefix("Value error, ")
            where = _where(tuple(e["loc"]), data)
            if not where and msg.startswith("rule_sets."):  # raised by the table-level check
                where, msg = msg.split(": ", 1)
            problems.append((where, msg))
        raise CriteriaError(source, problems) from None


def _path(name: str, package: str):
    return resources.files(package).joinpath("criteria", f"{name}.yaml")


@cache
def load_raw(name: str, package: str = "cartlab.grading") -> dict[str, Any]:
    """A criteria table as parsed YAML (``<package>/criteria/<name>.yaml``)."""
    path = _path(name, package)
    if not path.is_file():
        raise FileNotFoundError(f"no criteria table {name!r} (looked for {path})")
    data = load_yaml(path.read_text(encoding="utf-8"))
    for key in ("version", "citation"):
        if key not in data:
            raise ValueError(f"criteria table {name!r} lacks {key!r}")
    return data


@cache
def load_table(name: str, package: str = "cartlab.grading") -> CriteriaTable:
    """A shipped criteria table, validated (cached)."""
    return parse_table(load_raw(name, package), f"{package.replace('.', '/')}/criteria/{name}.yaml", name)
