"""The criteria language evaluated directly, one row (a dict) at a time, in pure Python.

This is the reference the compiled polars expressions (:mod:`cartlab.criteria.compile`) are
property-tested against; engines use the compiled form. It is written from the definitions, not
from the compiled formulas: a feature known only as a range is compared by intersecting that
range with the set of values that satisfy the comparison.

A row maps a feature (or column) to its value: a number, string, boolean, None / NaN (missing),
or an :class:`Interval` (a value known only as a range).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cartlab.criteria import model as m

INF = math.inf


@dataclass(frozen=True)
class Interval:
    """Values from ``lo`` to ``hi`` (None = unbounded), each end open or closed."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    @property
    def bounds(self) -> tuple[float, float]:
        return (-INF if self.lo is None else self.lo, INF if self.hi is None else self.hi)

    @property
    def point(self) -> bool:
        lo, hi = self.bounds
        return lo == hi and not self.lo_open and not self.hi_open and math.isfinite(lo)


def is_missing(v: Any) -> bool:
    """None, NaN, or a range that is not a single value."""
    if isinstance(v, Interval):
        return not v.point
    return v is None or (isinstance(v, float) and math.isnan(v))


def signif(x: float | None, digits: int) -> float | None:
    """R's ``signif`` (delegates to :func:`cartlab.criteria.compile.signif_scalar`)."""
    from cartlab.criteria.compile import signif_scalar

    return signif_scalar(x, digits)


def _operand(v: Any, row: dict, options: dict) -> Any:
    name = m.option_name(v)
    if name is not None:
        return options[name]
    if isinstance(v, m.Column):
        x = row.get(v.column)
        if is_missing(x):
            return None
        return x if v.plain else v.factor * x + v.offset
    return v


def _and(values: list[bool | None]) -> bool | None:
    return False if False in values else (None if None in values else True)


def _or(values: list[bool | None]) -> bool | None:
    return True if True in values else (None if None in values else False)


def _not(v: bool | None) -> bool | None:
    return None if v is None else not v


# a comparison's solution set as intervals: (lo, hi, lo_open, hi_open)
def _solutions(op: str, t: float) -> list[tuple[float, float, bool, bool]]:
    return {
        "<": [(-INF, t, True, True)], "<=": [(-INF, t, True, False)],
        ">": [(t, INF, True, True)], ">=": [(t, INF, False, True)],
        "==": [(t, t, False, False)], "!=": [(-INF, t, True, True), (t, INF, True, True)],
    }[op]


def _contains(outer: tuple, inner: tuple) -> bool:
    (a, b, ao, bo), (c, d, co, do) = outer, inner
    left = a < c or (a == c and (not ao or co))
    right = d < b or (d == b and (not bo or do))
    return left and right


def _meets(x: tuple, y: tuple) -> bool:
    lo = max(x[0], y[0])
    hi = min(x[1], y[1])
    if lo < hi:
        return True
    if lo > hi:
        return False
    # one shared point: it belongs to both when each interval is closed there
    def closed_at(iv: tuple, p: float) -> bool:
        return (iv[0] < p or (iv[0] == p and not iv[2])) and (p < iv[1] or (iv[1] == p and not iv[3]))
    return closed_at(x, lo) and closed_at(y, lo)


def _range_test(r: Interval, sets: list[tuple]) -> bool | None:
    """TRUE when every value of ``r`` lies in the union ``sets``, FALSE when none does."""
    lo, hi = r.bounds
    iv = (lo, hi, r.lo_open or lo == -INF, r.hi_open or hi == INF)
    if any(_contains(s, iv) for s in sets):
        return True
    if not any(_meets(s, iv) for s in sets):
        return False
    return None


def _between_set(lo: float, hi: float, closed: str) -> tuple:
    return (lo, hi, closed in ("right", "neither"), closed in ("left", "neither"))


def _leaf(c: m.Leaf, row: dict, options: dict) -> bool | None:
    x = row.get(c.feature)
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    digits = c.signif
    rnd = (lambda v: signif(v, digits)) if digits else (lambda v: v)
    if c.op == "between":
        lo, hi = (_operand(b, row, options) for b in c.value)
        if isinstance(x, Interval):
            x = Interval(rnd(x.lo), rnd(x.hi)) if digits else x  # rounded values: closed ends
            if lo is None or hi is None:  # one bound unknown: FALSE only when the known side fails
                known = [_range_test(x, _solutions(">=" if c.closed in ("both", "left") else ">", rnd(lo)))
                         if lo is not None else None,
                         _range_test(x, _solutions("<=" if c.closed in ("both", "right") else "<", rnd(hi)))
                         if hi is not None else None]
                return False if False in known else None
            return _range_test(x, [_between_set(rnd(lo), rnd(hi), c.closed)])
        ge = None if lo is None else (rnd(x) >= rnd(lo) if c.closed in ("both", "left") else rnd(x) > rnd(lo))
        le = None if hi is None else (rnd(x) <= rnd(hi) if c.closed in ("both", "right") else rnd(x) < rnd(hi))
        return _and([ge, le])
    if c.op in ("in", "not_in"):
        members = c.value if isinstance(c.value, tuple) else _operand(c.value, row, options)
        if members is None:
            return None
        members = [_operand(m, row, options) for m in members] if isinstance(c.value, tuple) else list(members)
        if isinstance(x, Interval):
            found = _or([_range_test(x, _solutions("==", m)) for m in members])
        else:
            found = x in members
        return found if c.op == "in" else _not(found)
    t = _operand(c.value, row, options)
    if t is None or (isinstance(t, float) and math.isnan(t)):
        return None
    if isinstance(x, Interval):
        if digits:
            x = Interval(rnd(x.lo), rnd(x.hi))  # an open end's values may round onto it
        return _range_test(x, _solutions(c.op, rnd(t)))
    return bool(m.COMPARE[c.op](rnd(x), rnd(t)))


def _count(c: m.Count, row: dict, options: dict) -> bool | None:
    results = [truth(x, row, options) for x in c.count]
    n_true, n_unknown = results.count(True), results.count(None)
    target = _operand(c.value, row, options)
    outcomes = {m.COMPARE[c.op](k, target) for k in range(n_true, n_true + n_unknown + 1)}
    return outcomes.pop() if len(outcomes) == 1 else None


def truth(cond: Any, row: dict, options: dict | None = None) -> bool | None:
    """TRUE / FALSE / None (unknown) of one condition on one row."""
    options = options or {}
    if isinstance(cond, m.Leaf):
        return _leaf(cond, row, options)
    if isinstance(cond, m.Missing):
        return any(is_missing(row.get(f)) for f in cond.features)
    if isinstance(cond, m.AllOf):
        return _and([truth(c, row, options) for c in cond.all])
    if isinstance(cond, m.AnyOf):
        return _or([truth(c, row, options) for c in cond.any])
    if isinstance(cond, m.Not):
        return _not(truth(cond.not_, row, options))
    if isinstance(cond, m.Count):
        return _count(cond, row, options)
    raise TypeError(f"not a condition: {cond!r}")


def missing_inputs(cond: Any, row: dict) -> set[str]:
    """The inputs a condition names (features, referenced columns) whose value is missing."""
    out = set()
    for leaf in m.leaves(cond):
        names = leaf.features if isinstance(leaf, m.Missing) else (leaf.feature,)
        if isinstance(leaf, m.Leaf):
            vals = leaf.value if isinstance(leaf.value, tuple) else (leaf.value,)
            names += tuple(v.column for v in vals if isinstance(v, m.Column))
        out |= {n for n in names if is_missing(row.get(n))}
    return out


def decide(rules: list[m.Rule], row: dict, options: dict | None = None, otherwise_grade: int | None = None,
           unmet: str = "{label} ({conds} not met)", texts: dict | None = None) -> dict[str, Any]:
    """The outcome of an ordered rule set on one row (rules already filtered by their ``option``).

    ``rule``: the first rule whose conditions are TRUE; ``grade`` its grade (``otherwise_grade``
    when none holds); ``possible``: the labels of the rules above it left UNKNOWN; ``grade_max``:
    the highest grade among the established and the possible ones; ``missing``: the missing inputs
    of the UNKNOWN conditions of the rules above it; ``unmet``: per rule above it with a FALSE
    condition, ``unmet`` formatted with its label and the FALSE conditions' texts (``texts[(rule
    index, condition index)]``). ``points`` / ``points_max``: the sum of the points of the TRUE
    rules, and with the UNKNOWN rules' positive points.
    """
    options = options or {}
    established = None
    possible, missing, failed, grades = [], set(), [], []
    points = points_max = 0.0
    for i, r in enumerate(rules):
        parts = [truth(c, row, options) for c in r.when]
        t = _and(parts)
        if r.points is not None:
            points += r.points if t is True else 0.0
            points_max += r.points if t is True or (t is None and r.points > 0) else 0.0
        if established is not None:
            continue
        if t is True:
            established = r
            continue
        if t is None:
            possible.append(r.label)
            if r.grade is not None:
                grades.append(r.grade)
        for j, (c, p) in enumerate(zip(r.when, parts)):
            if p is None:
                missing |= missing_inputs(c, row)
        false = [(texts or {}).get((i, j)) or m.describe(r.when[j], options) for j, p in enumerate(parts) if p is False]
        if false:
            failed.append(unmet.format(label=r.label, conds="; ".join(false)))
    grade = established.grade if established is not None else otherwise_grade
    top = [g for g in [grade, *grades] if g is not None]
    return {"rule": None if established is None else established.id, "grade": grade,
            "grade_max": max(top) if top else None, "possible": possible, "missing": sorted(missing),
            "unmet": failed, "points": points, "points_max": points_max}
