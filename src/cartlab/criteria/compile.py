"""The criteria language compiled to polars expressions: one expression per condition and rule
set, evaluated on whole frames (no row loops). Semantics: :mod:`cartlab.criteria.model`; the pure
Python reference is :mod:`cartlab.criteria.direct`.

A condition compiles to a nullable Boolean expression: null is UNKNOWN. polars' ``&``, ``|``,
``~``, ``all_horizontal`` and ``any_horizontal`` are Kleene operators, so ``all`` / ``any`` /
``not`` are those. A feature is the column of its name unless ``bindings`` maps it to another
column or to a :class:`Range` (a value known only as an interval: censored results, features
derived from incomplete inputs); a comparison on a range is TRUE when it holds for every value of
the range, FALSE when for none, else UNKNOWN. NaN in a float column is missing.

:class:`Decision` evaluates an ordered rule set: the first TRUE rule is established; the rules
above it left UNKNOWN are still possible (``possible``, ``grade_max``), with the ``missing`` inputs
that leave them open.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from cartlab.criteria.model import (
    COMPARE,
    AllOf,
    AnyOf,
    Column,
    Count,
    Leaf,
    Missing,
    Not,
    Rule,
    describe,
    leaves,
    option_name,
)
from cartlab.criteria.signif import signif, signif_scalar

__all__ = ["Compiler", "Decision", "Range", "decision", "describe", "gated", "signif", "signif_scalar"]

_FLOATS = (pl.Float32, pl.Float64)
_EMPTY = pl.List(pl.String)
_SEP = "\x1f"  # joins the names of a list while it is built (never in a name)




@dataclass(frozen=True)
class Range:
    """A feature known only as an interval: the columns of its bounds (null = unbounded) and whether
    each end is open (a boolean, or the name of a Boolean column)."""

    lo: str
    hi: str
    lo_open: bool | str = False
    hi_open: bool | str = False


def gated(rules: Sequence[Rule], options: Mapping[str, Any]) -> tuple[Rule, ...]:
    """The rules whose ``option`` gate the options meet (``option: {use_crh: true}``)."""
    return tuple(r for r in rules if all(options.get(k) == v for k, v in r.option.items()))


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _cmp(op: str, x: Any, t: Any) -> pl.Expr:
    return COMPARE[op](x, t)


class Compiler:
    """Compiles conditions to polars expressions against resolved ``options`` (``$name``) and feature
    ``bindings``; with the frame's ``schema``, NaN in float columns reads as missing."""

    def __init__(self, options: Mapping[str, Any] | None = None,
                 bindings: Mapping[str, str | Range] | None = None, schema: Mapping[str, Any] | None = None,
                 stage: str | None = None):
        self.options = dict(options or {})
        self.bindings = dict(bindings or {})
        self.schema = dict(schema) if schema is not None else None
        #: with ``stage`` (a column prefix), rounded operands (signif) become columns computed once,
        #: before the conditions: ``derived`` holds them (name -> expression)
        self.stage = stage
        self.derived: dict[str, pl.Expr] = {}
        self._derived_keys: dict[tuple, str] = {}

    # -- operands -------------------------------------------------------------------------------
    def _col(self, name: str, numeric: bool = False) -> pl.Expr:
        e = pl.col(name)
        if self.schema is not None:
            return e.fill_nan(None) if self.schema.get(name) in _FLOATS else e
        return e.fill_nan(None) if numeric else e

    def _operand(self, v: Any) -> Any:
        """A literal (options resolved) or an expression (a column)."""
        name = option_name(v)
        if name is not None:
            if name not in self.options:
                raise KeyError(f"a rule refers to the unknown option {name!r}")
            return self.options[name]
        if isinstance(v, Column):
            if v.plain:
                return self._col(v.column)
            return self._col(v.column, numeric=True) * float(v.factor) + float(v.offset)
        return v

    def _is_missing(self, name: str) -> pl.Expr:
        b = self.bindings.get(name, name)
        if isinstance(b, Range):
            lo, hi = self._col(b.lo, True), self._col(b.hi, True)
            point = (lo == hi) & ~self._flag(b.lo_open) & ~self._flag(b.hi_open) & lo.is_finite()
            return ~point.fill_null(False)
        e = pl.col(b).is_null()
        if self.schema is not None and self.schema.get(b) in _FLOATS:
            e = e | pl.col(b).is_nan().fill_null(False)
        return e

    @staticmethod
    def _flag(v: bool | str) -> pl.Expr:
        return pl.col(v).fill_null(False) if isinstance(v, str) else pl.lit(bool(v))

    # -- conditions -----------------------------------------------------------------------------
    def truth(self, cond: Any) -> pl.Expr:
        """The Kleene truth (nullable Boolean) of a condition."""
        if isinstance(cond, Leaf):
            b = self.bindings.get(cond.feature, cond.feature)
            return self._range_leaf(cond, b) if isinstance(b, Range) else self._leaf(cond, b)
        if isinstance(cond, Missing):
            return pl.any_horizontal([self._is_missing(f) for f in cond.features])
        if isinstance(cond, AllOf):
            return pl.all_horizontal([self.truth(c) for c in cond.all]) if cond.all else pl.lit(True)
        if isinstance(cond, AnyOf):
            return pl.any_horizontal([self.truth(c) for c in cond.any]) if cond.any else pl.lit(False)
        if isinstance(cond, Not):
            return ~self.truth(cond.not_)
        if isinstance(cond, Count):
            return self._count(cond)
        raise TypeError(f"not a condition: {cond!r}")

    def _round(self, digits: int | None, *xs: Any) -> list[Any]:
        if not digits:
            return list(xs)
        return [self._signif(x, digits) if isinstance(x, pl.Expr) else signif_scalar(float(x), digits) for x in xs]

    def _signif(self, x: pl.Expr, digits: int) -> pl.Expr:
        if self.stage is None:
            return signif(x, digits)
        key = (digits, str(x))
        if key not in self._derived_keys:
            name = self._derived_keys[key] = f"{self.stage}s{len(self._derived_keys)}"
            self.derived[name] = signif(x, digits)
        return pl.col(self._derived_keys[key])

    def _leaf(self, c: Leaf, col: str) -> pl.Expr:
        if c.op == "between":
            lo, hi = (self._operand(v) for v in c.value)
            x, lo, hi = self._round(c.signif, self._col(col, True), lo, hi)
            ge = x >= lo if c.closed in ("both", "left") else x > lo
            le = x <= hi if c.closed in ("both", "right") else x < hi
            return ge & le
        if c.op in ("in", "not_in"):
            found = self._member(c, col)
            return found if c.op == "in" else ~found
        t = self._operand(c.value)
        if t is None:
            return pl.lit(None, dtype=pl.Boolean)
        x = self._col(col, numeric=_numeric(t) or (isinstance(c.value, Column) and not c.value.plain))
        x, t = self._round(c.signif, x, t)
        return _cmp(c.op, x, t)

    def _member(self, c: Leaf, col: str) -> pl.Expr:
        if isinstance(c.value, Column):  # a per-row list
            x, members = pl.col(col), pl.col(c.value.column)
            return pl.when(x.is_null() | members.is_null()).then(None).otherwise(members.list.contains(x))
        values = c.value if isinstance(c.value, tuple) else self._operand(c.value)
        values = [self._operand(v) for v in values]
        if any(isinstance(v, pl.Expr) for v in values):
            return pl.any_horizontal([pl.col(col) == v for v in values])
        if values and all(_numeric(v) for v in values):  # numbers compare as floats (1 == 1.0)
            x, values = self._col(col, numeric=True).cast(pl.Float64), [float(v) for v in values]
        else:
            x = self._col(col)
        return pl.when(x.is_null()).then(None).otherwise(x.is_in(list(values)))

    def _range_leaf(self, c: Leaf, b: Range) -> pl.Expr:
        inf = math.inf
        lo = self._col(b.lo, True).cast(pl.Float64).fill_null(-inf)
        hi = self._col(b.hi, True).cast(pl.Float64).fill_null(inf)
        lo_open, hi_open = self._flag(b.lo_open), self._flag(b.hi_open)
        if c.signif:  # the values of an open end may round onto it: rounded ranges are closed
            lo_open = hi_open = pl.lit(False)
        if c.op in ("in", "not_in"):
            if isinstance(c.value, Column):
                raise ValueError(f"{c.feature}: a range feature takes a list of values with {c.op!r}, not a list column")
            values = c.value if isinstance(c.value, tuple) else self._operand(c.value)
            parts = [self._range_cmp("==", lo, hi, lo_open, hi_open, self._operand(v), c.signif) for v in values]
            found = pl.any_horizontal(parts) if parts else pl.lit(False)
            return found if c.op == "in" else ~found
        if c.op == "between":
            a, z = (self._operand(v) for v in c.value)
            lo, hi, a, z = self._round(c.signif, lo, hi, a, z)
            ai, zi = c.closed in ("both", "left"), c.closed in ("both", "right")
            every = (((lo > a) | ((lo == a) & (ai | lo_open))) & ((hi < z) | ((hi == z) & (zi | hi_open))))
            none = ((hi < a) | ((hi == a) & (hi_open | (not ai))) | (lo > z) | ((lo == z) & (lo_open | (not zi)))
                    | (a > z) | ((a == z) & (not (ai and zi))))
            return self._three(every, none)
        return self._range_cmp(c.op, lo, hi, lo_open, hi_open, self._operand(c.value), c.signif)

    def _range_cmp(self, op: str, lo: pl.Expr, hi: pl.Expr, lo_open: pl.Expr, hi_open: pl.Expr, t: Any,
                   digits: int | None) -> pl.Expr:
        if t is None:
            return pl.lit(None, dtype=pl.Boolean)
        lo, hi, t = self._round(digits, lo, hi, t)
        if op in ("==", "!="):
            point = (lo == t) & (hi == t) & ~lo_open & ~hi_open
            outside = (t < lo) | (t > hi) | ((t == lo) & lo_open) | ((t == hi) & hi_open)
            return self._three(point, outside) if op == "==" else self._three(outside, point)
        every, none = {
            "<": ((hi < t) | ((hi == t) & hi_open), lo >= t),
            "<=": (hi <= t, (lo > t) | ((lo == t) & lo_open)),
            ">": ((lo > t) | ((lo == t) & lo_open), hi <= t),
            ">=": (lo >= t, (hi < t) | ((hi == t) & hi_open)),
        }[op]
        return self._three(every, none)

    @staticmethod
    def _three(every: pl.Expr, none: pl.Expr) -> pl.Expr:
        return pl.when(every).then(pl.lit(True)).when(none).then(pl.lit(False)).otherwise(pl.lit(None, dtype=pl.Boolean))

    def _count(self, c: Count) -> pl.Expr:
        ts = [self.truth(x) for x in c.count]
        a = pl.sum_horizontal([t.fill_null(False).cast(pl.Int64) for t in ts]) if ts else pl.lit(0)
        b = a + (pl.sum_horizontal([t.is_null().cast(pl.Int64) for t in ts]) if ts else pl.lit(0))
        v = float(self._operand(c.value))
        whole = v == math.floor(v)
        every, none = {
            ">=": (a >= v, b < v), ">": (a > v, b <= v), "<=": (b <= v, a > v), "<": (b < v, a >= v),
            "==": ((a == v) & (b == v) & whole, (a > v) | (b < v) | (not whole)),
            "!=": ((a > v) | (b < v) | (not whole), (a == v) & (b == v) & whole),
        }[c.op]
        return self._three(pl.lit(True) & every, pl.lit(True) & none)

    def inputs(self, cond: Any) -> list[str]:
        """The inputs a condition names: its features and referenced columns, in order."""
        names: list[str] = []
        for leaf in leaves(cond):
            found = list(leaf.features) if isinstance(leaf, Missing) else [leaf.feature]
            if isinstance(leaf, Leaf):
                vals = leaf.value if isinstance(leaf.value, tuple) else (leaf.value,)
                found += [v.column for v in vals if isinstance(v, Column)]
            names += [n for n in dict.fromkeys(found) if n not in names]
        return names

    def missing_inputs(self, cond: Any) -> pl.Expr:
        """List of the inputs of a condition whose value is missing (sorted)."""
        return self.listed([(n, self._is_missing(n)) for n in sorted(self.inputs(cond))])

    @staticmethod
    def listed(items: Sequence[tuple[str, pl.Expr]]) -> pl.Expr:
        """The names whose flag holds, in the given order (one string split per row: polars builds
        lists from strings faster than from ``concat_list``)."""
        if not items:
            return pl.lit([], dtype=_EMPTY)
        joined = pl.concat_str([pl.when(flag).then(pl.lit(name)) for name, flag in items], separator=_SEP,
                               ignore_nulls=True)
        return pl.when(joined == "").then(pl.lit([], dtype=_EMPTY)).otherwise(joined.str.split(_SEP))


class Decision:
    """An ordered rule set compiled once against options: per row the first TRUE rule (``rule``,
    ``grade``; ``otherwise_grade`` when none holds), the rules above it left UNKNOWN (``possible``,
    ``grade_max``), the ``missing`` inputs of their UNKNOWN conditions, ``unmet`` (the FALSE
    conditions of the rules above it, in words) and ``points`` / ``points_max`` (scores).

    The established outcome of a table whose rules are tried in order with missing comparisons read
    as false (admiral's ``case_when``, cartlab's former interpreters) is ``rule`` / ``grade``.
    :meth:`apply` evaluates every condition once into temporary columns and derives the outcomes
    from them; the outcome methods give self-contained expressions (for small rule sets).
    """

    def __init__(self, rules: Sequence[Rule], options: Mapping[str, Any] | None = None,
                 bindings: Mapping[str, str | Range] | None = None, *, otherwise_grade: int | None = None,
                 schema: Mapping[str, Any] | None = None):
        self.options = dict(options or {})
        self.rules = gated(rules, self.options)
        self.compiler = Compiler(self.options, bindings, schema)
        self.otherwise_grade = otherwise_grade
        self.parts = [[self.compiler.truth(c) for c in r.when] for r in self.rules]
        self.truths = [pl.all_horizontal(p) if p else pl.lit(True) for p in self.parts]
        self._tmp: str | None = None  # set while apply() builds on temporary columns
        self._plans: dict[tuple, tuple[list, list[str]]] = {}

    def _t(self, i: int) -> pl.Expr:
        return pl.col(f"{self._tmp}t{i}") if self._tmp else self.truths[i]

    def _p(self, i: int, j: int) -> pl.Expr:
        return pl.col(f"{self._tmp}p{i}_{j}") if self._tmp else self.parts[i][j]

    def truth(self, rule_id: str) -> pl.Expr:
        """The Kleene truth of one rule's conditions."""
        for i, r in enumerate(self.rules):
            if r.id == rule_id:
                return self._t(i)
        raise KeyError(f"no rule {rule_id!r} (options may have removed it)")

    def _above(self, i: int) -> pl.Expr:
        """No rule before ``i`` is TRUE (rule i is tried)."""
        if self._tmp and i:
            return pl.col(f"{self._tmp}u{i}")
        before = [self._t(k).fill_null(False) for k in range(i)]
        return ~pl.any_horizontal(before) if before else pl.lit(True)

    def _chain(self, values: list[Any], otherwise: Any, dtype: Any) -> pl.Expr:
        expr = None
        for i, v in enumerate(values):
            cond = self._t(i).fill_null(False)
            lit = pl.lit(v, dtype=dtype)
            expr = pl.when(cond).then(lit) if expr is None else expr.when(cond).then(lit)
        other = pl.lit(otherwise, dtype=dtype)
        return other if expr is None else expr.otherwise(other)

    def rule(self) -> pl.Expr:
        return self._chain([r.id for r in self.rules], None, pl.String)

    def grade(self) -> pl.Expr:
        return self._chain([r.grade for r in self.rules], self.otherwise_grade, pl.Int64)

    def category(self) -> pl.Expr:
        return self._chain([r.label for r in self.rules], None, pl.String)

    def _possible(self, i: int) -> pl.Expr:
        return self._above(i) & self._t(i).is_null()

    def grade_max(self) -> pl.Expr:
        # from the last rule up: a TRUE rule ends the range; an UNKNOWN one may raise it
        expr = pl.lit(self.otherwise_grade, dtype=pl.Int64)
        for i in reversed(range(len(self.rules))):
            g = pl.lit(self.rules[i].grade, dtype=pl.Int64)
            t = self._t(i)
            expr = pl.when(t.fill_null(False)).then(g).otherwise(pl.max_horizontal(pl.when(t.is_null()).then(g), expr))
        return expr

    def possible(self) -> pl.Expr:
        return self.compiler.listed([(r.label, self._possible(i)) for i, r in enumerate(self.rules)])

    def missing(self, labels: Mapping[str, str] | None = None) -> pl.Expr:
        """The missing inputs of the UNKNOWN conditions of the rules above the established one
        (sorted; ``labels`` shows an input under another name, several inputs may share one)."""
        shown: dict[str, dict[int, list[pl.Expr]]] = {}
        for i, r in enumerate(self.rules):
            for j, c in enumerate(r.when):
                for name in self.compiler.inputs(c):
                    label = (labels or {}).get(name, name)
                    shown.setdefault(label, {}).setdefault(i, []).append(
                        self._p(i, j).is_null() & self.compiler._is_missing(name))
        flags = {}
        for label, by_rule in shown.items():  # from the last rule up: a TRUE rule ends the search
            expr = pl.lit(False)
            for i in reversed(range(len(self.rules))):
                here = pl.any_horizontal(by_rule[i]) if i in by_rule else pl.lit(False)
                expr = pl.when(self._t(i).fill_null(False)).then(pl.lit(False)).otherwise(here | expr)
            flags[label] = expr
        return self.compiler.listed(sorted(flags.items()))

    def unmet(self, template: str = "{label} ({conds} not met)", texts: Mapping[tuple[int, int], str] | None = None
              ) -> pl.Expr:
        """Per rule above the established one with a FALSE condition: ``template`` with its label and
        the FALSE conditions (``texts[(rule index, condition index)]``, default :func:`describe`)."""
        head, tail = template.split("{conds}")
        out = []
        for i, r in enumerate(self.rules):
            if not r.when:
                continue
            false = [self._p(i, j).not_().fill_null(False) for j in range(len(r.when))]
            words = [(texts or {}).get((i, j)) or describe(c, self.options) for j, c in enumerate(r.when)]
            listed = pl.concat_str([pl.when(x).then(pl.lit(w)) for x, w in zip(false, words)], separator="; ",
                                   ignore_nulls=True)
            out.append(pl.when(self._above(i) & pl.any_horizontal(false)).then(
                pl.concat_str([pl.lit(head.format(label=r.label)), listed, pl.lit(tail.format(label=r.label))])))
        if not out:
            return pl.lit([], dtype=_EMPTY)
        joined = pl.concat_str(out, separator=_SEP, ignore_nulls=True)
        return pl.when(joined == "").then(pl.lit([], dtype=_EMPTY)).otherwise(joined.str.split(_SEP))

    def points(self) -> pl.Expr:
        return pl.sum_horizontal([pl.when(self._t(i).fill_null(False)).then(pl.lit(float(r.points))).otherwise(pl.lit(0.0))
                                  for i, r in enumerate(self.rules) if r.points is not None] or [pl.lit(0.0)])

    def points_max(self) -> pl.Expr:
        return pl.sum_horizontal([
            pl.when(self._t(i).fill_null(False) | (self._t(i).is_null() & pl.lit(r.points > 0)))
            .then(pl.lit(float(r.points))).otherwise(pl.lit(0.0))
            for i, r in enumerate(self.rules) if r.points is not None] or [pl.lit(0.0)])

    def outcome(self, prefix: str, *what: str, labels: Mapping[str, str] | None = None, **kwargs: Any) -> list[pl.Expr]:
        """``<prefix>_<what>`` expressions (what: rule, grade, grade_max, category, possible, missing,
        unmet, points, points_max); ``labels`` go to :meth:`missing`, ``kwargs`` to :meth:`unmet`."""
        special = {"unmet": lambda: self.unmet(**kwargs), "missing": lambda: self.missing(labels)}
        return [special.get(w, getattr(self, w))().alias(f"{prefix}_{w}") for w in what]

    def apply(self, frame: pl.DataFrame | pl.LazyFrame, prefix: str, *what: str, truths: bool = False,
              labels: Mapping[str, str] | None = None, **kwargs: Any) -> pl.DataFrame | pl.LazyFrame:
        """``frame`` with the ``<prefix>_<what>`` columns (and ``<prefix>_truth_<rule id>`` with
        ``truths``): every condition is evaluated once, in temporary columns (one query)."""
        tmp = f"__{prefix}_"
        key = (tmp, what, truths, tuple(sorted((labels or {}).items())), tuple(sorted(kwargs.items())))
        if key not in self._plans:
            self._plans[key] = self._plan(tmp, prefix, what, truths, labels, kwargs)
        stages, temps = self._plans[key]
        lazy = frame.lazy()
        for stage in stages:
            lazy = lazy.with_columns(stage)
        lazy = lazy.drop(temps)
        return lazy if isinstance(frame, pl.LazyFrame) else lazy.collect()

    def _plan(self, tmp: str, prefix: str, what: tuple, truths: bool, labels, kwargs) -> tuple[list, list[str]]:
        """The stages of :meth:`apply`: rounded operands, conditions, rule truths, "no rule above is
        TRUE", outcomes."""
        staged = Compiler(self.options, self.compiler.bindings, self.compiler.schema, stage=tmp)
        parts = [staged.truth(c).alias(f"{tmp}p{i}_{j}") for i, r in enumerate(self.rules) for j, c in enumerate(r.when)]
        derived = [e.alias(name) for name, e in staged.derived.items()]
        truths_ = [(pl.all_horizontal([pl.col(f"{tmp}p{i}_{j}") for j in range(len(ps))]) if ps else pl.lit(True))
                   .alias(f"{tmp}t{i}") for i, ps in enumerate(self.parts)]
        above = [(~pl.any_horizontal([pl.col(f"{tmp}t{k}").fill_null(False) for k in range(i)])).alias(f"{tmp}u{i}")
                 for i in range(1, len(self.rules))]
        self._tmp = tmp
        try:
            outs = self.outcome(prefix, *what, labels=labels, **kwargs)
            if truths:
                outs += [self._t(i).alias(f"{prefix}_truth_{r.id}") for i, r in enumerate(self.rules)]
        finally:
            self._tmp = None
        stages = [x for x in (derived, parts, truths_, above, outs) if x]
        return stages, [e.meta.output_name() for e in derived + parts + truths_ + above]


_DECISIONS: dict[tuple, tuple[Any, Decision]] = {}


def decision(table: Any, name: str, options: Mapping[str, Any] | None = None, *,
             bindings: Mapping[str, str | Range] | None = None, otherwise_grade: int | None = None,
             schema: Mapping[str, Any] | None = None) -> Decision:
    """The :class:`Decision` of rule set ``name`` of a :class:`~cartlab.criteria.CriteriaTable`,
    compiled once per options, bindings and schema (engines call it on every run)."""
    options = dict(options or {})
    key = (id(table), name, repr(sorted(options.items())), repr(sorted((bindings or {}).items())), otherwise_grade,
           repr(sorted((schema or {}).items())) if schema is not None else None)
    hit = _DECISIONS.get(key)
    if hit is None or hit[0] is not table:
        if len(_DECISIONS) > 512:
            _DECISIONS.clear()
        hit = _DECISIONS[key] = (table, Decision(table.rule_set(name), options, bindings,
                                                 otherwise_grade=otherwise_grade, schema=schema))
    return hit[1]
