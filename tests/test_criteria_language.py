"""The criteria language: compiled polars expressions equal the direct (pure Python) evaluation.

Random rule tables (leaves on point and range features, per-row column references, options,
``between`` with random inclusivity, nested all/any/not/count, random nulls and NaN) are evaluated
by :class:`cartlab.criteria.Decision` and by :func:`cartlab.criteria.direct.decide`, which is
written from the definitions (ranges are intersected with the comparison's solution set), not from
the compiled formulas. Hand-worked cases pin the three-valued semantics themselves.
"""

from __future__ import annotations

import math

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cartlab.criteria import Decision, Range
from cartlab.criteria.direct import Interval, decide, missing_inputs, truth
from cartlab.criteria.model import RULES, Column, Leaf

NUMS = [0.0, 1.0, 2.0, 2.5, 3.0, 5.0]
OPTIONS = {"k": 2, "t": 2.5, "S": ("a", "c"), "N": (1.0, 3.0), "flag": True}
POINT = ["n0", "n1", "n2"]
RANGES = ["r0", "r1"]
BINDINGS = {r: Range(f"{r}_lo", f"{r}_hi", f"{r}_lo_open", f"{r}_hi_open") for r in RANGES}

num = st.sampled_from(NUMS)
num_operand = st.one_of(num, st.just("$t"), st.just("$k"),
                        st.builds(lambda f, o: {"column": "ref", "factor": f, "offset": o},
                                  st.sampled_from([1, 0.5, 2]), st.sampled_from([0, 1, -0.5])))


@st.composite
def numeric_leaf(draw):
    feature = draw(st.sampled_from(POINT + RANGES))
    op = draw(st.sampled_from(["<", "<=", ">", ">=", "==", "!=", "between", "in", "not_in"]))
    leaf = {"feature": feature, "op": op}
    if op == "between":
        leaf["value"] = [draw(num_operand), draw(num_operand)]
        leaf["closed"] = draw(st.sampled_from(["both", "left", "right", "neither"]))
    elif op in ("in", "not_in"):
        leaf["value"] = draw(st.one_of(st.lists(num, min_size=1, max_size=3), st.just("$N")))
    else:
        leaf["value"] = draw(num_operand)
    if op not in ("in", "not_in") and draw(st.booleans()) and draw(st.booleans()):
        leaf["signif"] = draw(st.integers(1, 3))
    return leaf


text_leaf = st.one_of(
    st.builds(lambda op, v: {"feature": "s0", "op": op, "value": v}, st.sampled_from(["==", "!="]),
              st.sampled_from(["a", "b", "c"])),
    st.builds(lambda op, v: {"feature": "s0", "op": op, "value": v}, st.sampled_from(["in", "not_in"]),
              st.one_of(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=2), st.just("$S"),
                        st.just({"column": "lst"}))),
    st.builds(lambda op, v: {"feature": "b0", "op": op, "value": v}, st.sampled_from(["==", "!="]),
              st.one_of(st.booleans(), st.just("$flag"))),
    st.builds(lambda f: {"missing": f}, st.one_of(st.sampled_from(POINT + RANGES + ["s0"]),
                                                   st.lists(st.sampled_from(POINT + ["ref"]), min_size=1, max_size=2))),
)
leaf = st.one_of(numeric_leaf(), text_leaf)
condition = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(inner, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(inner, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
        st.builds(lambda xs, op, v: {"count": xs, "op": op, "value": v}, st.lists(inner, max_size=3),
                  st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), st.sampled_from([0, 1, 2, 1.5, "$k"])),
    ),
    max_leaves=6,
)


@st.composite
def rule_sets(draw):
    n = draw(st.integers(1, 5))
    rules = []
    for i in range(n):
        r = {"id": f"r{i}", "citation": "test", "when": draw(st.lists(condition, max_size=3)),
             "grade": draw(st.sampled_from([None, 0, 1, 2, 3, 4])), "category": draw(st.sampled_from([None, "A", "B"])),
             "points": draw(st.sampled_from([None, 1, 2, -1, 0.5]))}
        if draw(st.integers(0, 4)) == 0:
            r["option"] = {"flag": draw(st.booleans())}
        rules.append({k: v for k, v in r.items() if v is not None})
    return RULES.validate_python(rules)


maybe_num = st.one_of(st.none(), num, st.just(float("nan")))


@st.composite
def rows(draw):
    row = {f: draw(maybe_num) for f in POINT}
    row["ref"] = draw(st.one_of(st.none(), num))
    row["s0"] = draw(st.sampled_from([None, "a", "b", "c"]))
    row["b0"] = draw(st.sampled_from([None, True, False]))
    row["lst"] = draw(st.sampled_from([None, ["a"], ["b", "c"], []]))
    for r in RANGES:
        lo, hi = draw(st.one_of(st.none(), num)), draw(st.one_of(st.none(), num))
        if lo is not None and hi is not None and lo > hi:
            lo, hi = hi, lo
        point = lo is not None and lo == hi  # an empty range ([2, 2)) is not a value
        row[r] = Interval(lo, hi, not point and draw(st.booleans()), not point and draw(st.booleans()))
    return row


def frame(items: list[dict]) -> pl.DataFrame:
    cols: dict[str, list] = {f: [r[f] for r in items] for f in POINT + ["ref", "s0", "b0", "lst"]}
    for r in RANGES:
        cols[f"{r}_lo"] = [x[r].lo for x in items]
        cols[f"{r}_hi"] = [x[r].hi for x in items]
        cols[f"{r}_lo_open"] = [x[r].lo_open for x in items]
        cols[f"{r}_hi_open"] = [x[r].hi_open for x in items]
    schema = {**{f: pl.Float64 for f in POINT + ["ref"]}, "s0": pl.String, "b0": pl.Boolean, "lst": pl.List(pl.String),
              **{f"{r}_{e}": pl.Float64 for r in RANGES for e in ("lo", "hi")},
              **{f"{r}_{e}_open": pl.Boolean for r in RANGES for e in ("lo", "hi")}}
    return pl.DataFrame(cols, schema=schema)


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, abs_tol=1e-9)
    return a == b


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=rule_sets(), items=st.lists(rows(), min_size=1, max_size=8), otherwise=st.sampled_from([None, 0]))
def test_compiled_equals_direct(rules, items, otherwise):
    f = frame(items)
    d = Decision(rules, OPTIONS, BINDINGS, otherwise_grade=otherwise, schema=f.schema)
    what = ("rule", "grade", "grade_max", "possible", "missing", "unmet", "points", "points_max")
    got = d.apply(f, "o", *what).with_columns(
        *[p.alias(f"p{i}_{j}") for i, ps in enumerate(d.parts) for j, p in enumerate(ps)]).to_dicts()
    for row, out in zip(items, got):
        want = decide(list(d.rules), row, OPTIONS, otherwise_grade=otherwise)
        for w in what:
            assert _same(out[f"o_{w}"], want[w]), (w, out[f"o_{w}"], want[w], row)
        for i, r in enumerate(d.rules):
            for j, c in enumerate(r.when):
                assert out[f"p{i}_{j}"] == truth(c, row, OPTIONS), (r.when[j], row)


def _grid() -> list[dict]:
    """Rows crossing every boundary: range bounds on the value grid (or unbounded), open or closed
    ends, point values (missing and NaN included), references, strings and booleans."""
    bounds = [None, 1.0, 2.0, 2.5, 3.0]
    out = []
    for lo in bounds:
        for hi in bounds:
            if lo is not None and hi is not None and lo > hi:
                continue
            for lo_open in (False, True):
                for hi_open in (False, True):
                    if lo is not None and lo == hi and (lo_open or hi_open):
                        continue  # an empty range is not a value
                    i = len(out)
                    pts = [None, float("nan"), *NUMS]
                    out.append({"n0": pts[i % len(pts)], "n1": pts[(i // 3) % len(pts)], "n2": pts[(i // 7) % len(pts)],
                                "ref": [None, *NUMS][i % 7], "s0": [None, "a", "b", "c"][i % 4],
                                "b0": [None, True, False][i % 3], "lst": [None, ["a"], ["b", "c"], []][(i // 2) % 4],
                                "r0": Interval(lo, hi, lo_open, hi_open),
                                "r1": Interval(hi, hi) if hi is not None else Interval(lo, None, hi_open)})
    return out


GRID = _grid()
GRID_FRAME = frame(GRID)


@settings(max_examples=300, deadline=None)
@given(cond=condition)
def test_every_condition_equals_direct_on_every_boundary(cond):
    """One random condition over a grid of rows that crosses every boundary (a sharper check of the
    leaves than random rows)."""
    rules = RULES.validate_python([{"id": "r", "citation": "test", "when": [cond]}])
    d = Decision(rules, OPTIONS, BINDINGS, schema=GRID_FRAME.schema)
    got = GRID_FRAME.select(d.parts[0][0].alias("t"), d.compiler.missing_inputs(rules[0].when[0]).alias("m"))
    for row, (t, m) in zip(GRID, got.iter_rows()):
        assert t == truth(rules[0].when[0], row, OPTIONS), (cond, row)
        assert m == sorted(missing_inputs(rules[0].when[0], row)), (cond, row)


# ------------------------------------------------------------------------------------------------
# the semantics, worked by hand


def leaf_truth(cond: dict, value, **cols):
    c = Leaf.model_validate(cond)
    row = {"x": value, **cols}
    direct = truth(c, row, OPTIONS)
    if isinstance(value, Interval):
        f = pl.DataFrame({"lo": [value.lo], "hi": [value.hi], "lo_open": [value.lo_open], "hi_open": [value.hi_open],
                          **{k: [v] for k, v in cols.items()}}, schema_overrides={"lo": pl.Float64, "hi": pl.Float64})
        bindings = {"x": Range("lo", "hi", "lo_open", "hi_open")}
    else:
        f = pl.DataFrame({"x": [value], **{k: [v] for k, v in cols.items()}})
        bindings = {}
    compiled = f.select(Decision(RULES.validate_python([{"id": "r", "citation": "c", "when": [cond]}]), OPTIONS,
                                 bindings, schema=f.schema).truths[0]).item()
    assert compiled == direct
    return direct


@pytest.mark.parametrize("cond, value, expected", [
    ({"feature": "x", "op": ">=", "value": 2}, None, None),            # missing is unknown, not false
    ({"feature": "x", "op": ">=", "value": 2}, float("nan"), None),
    ({"feature": "x", "op": "between", "value": [1, 2], "closed": "both"}, 2.0, True),
    ({"feature": "x", "op": "between", "value": [1, 2], "closed": "left"}, 2.0, False),
    ({"feature": "x", "op": "between", "value": [1, 2], "closed": "right"}, 1.0, False),
    ({"feature": "x", "op": "between", "value": [1, 2], "closed": "neither"}, 1.5, True),
    # "<5" (open at 5): every value is < 5, none is >= 5; "<=5" might be 5
    ({"feature": "x", "op": "<", "value": 5}, Interval(None, 5.0, False, True), True),
    ({"feature": "x", "op": ">=", "value": 5}, Interval(None, 5.0, False, True), False),
    ({"feature": "x", "op": "<", "value": 5}, Interval(None, 5.0, False, False), None),
    ({"feature": "x", "op": "<=", "value": 3}, Interval(None, 5.0, False, True), None),
    ({"feature": "x", "op": "between", "value": [10, 20], "closed": "both"}, Interval(None, 10.0, False, True), False),
    ({"feature": "x", "op": "between", "value": [10, 20], "closed": "both"}, Interval(None, 10.0, False, False), None),
    ({"feature": "x", "op": "==", "value": 7}, Interval(None, 5.0, False, True), False),
    ({"feature": "x", "op": "in", "value": [1, 7]}, Interval(0.0, 5.0), None),
    ({"feature": "x", "op": "not_in", "value": [6, 7]}, Interval(0.0, 5.0), True),
    # a per-row reference: 3 x ULN
    ({"feature": "x", "op": "<=", "value": {"column": "uln", "factor": 3}}, 120.0, True),
])
def test_leaf_semantics(cond, value, expected):
    assert leaf_truth(cond, value, uln=40.0) is expected


def test_reference_missing_is_unknown():
    assert leaf_truth({"feature": "x", "op": "<=", "value": {"column": "uln", "factor": 3}}, 120.0, uln=None) is None


@pytest.mark.parametrize("a, b, op, value, expected", [
    (2.0, None, ">=", 1, True),     # one known true: at least 1 whatever b is
    (0.0, None, ">=", 1, None),     # depends on b
    (0.0, 0.0, ">=", 1, False),
    (2.0, 2.0, "<=", 1, False),
    (None, None, "==", 0, None),
    (None, None, "==", 1.5, False),  # no whole number of conditions is 1.5
])
def test_count_is_three_valued(a, b, op, value, expected):
    c = {"count": [{"feature": "a", "op": ">=", "value": 1}, {"feature": "b", "op": ">=", "value": 1}],
         "op": op, "value": value}
    rules = RULES.validate_python([{"id": "r", "citation": "c", "when": [c]}])
    f = pl.DataFrame({"a": [a], "b": [b]}, schema={"a": pl.Float64, "b": pl.Float64})
    assert truth(rules[0].when[0], {"a": a, "b": b}) is expected
    assert f.select(Decision(rules).truths[0]).item() is expected


def test_kleene_all_any_not():
    t = {"feature": "a", "op": "==", "value": 1}
    u = {"feature": "b", "op": "==", "value": 1}
    row = {"a": 1, "b": None}
    rules = RULES.validate_python([{"id": "r", "citation": "c", "when": [
        {"all": [t, u]}, {"any": [t, u]}, {"not": u}, {"any": [{"not": t}, u]}, {"all": []}, {"any": []}]}])
    want = [None, True, None, None, True, False]
    assert [truth(c, row) for c in rules[0].when] == want
    f = pl.DataFrame({"a": [1], "b": [None]}, schema={"a": pl.Int64, "b": pl.Int64})
    assert list(f.select(p.alias(f"c{i}") for i, p in enumerate(Decision(rules).parts[0])).row(0)) == want


def test_decision_is_a_range_of_grades_with_the_missing_inputs():
    # grade 3 needs x >= 3 (x missing), grade 2 needs y >= 2 (true): established 2, possibly 3
    rules = RULES.validate_python([
        {"id": "g3", "grade": 3, "citation": "c", "when": [{"feature": "x", "op": ">=", "value": 3}]},
        {"id": "g2", "grade": 2, "citation": "c", "when": [{"feature": "y", "op": ">=", "value": 2}]},
        {"id": "g1", "grade": 1, "citation": "c", "when": [{"feature": "x", "op": ">=", "value": 1}]},
    ])
    f = pl.DataFrame({"x": [None, 0.0, None], "y": [2.0, 2.0, 0.0]}, schema={"x": pl.Float64, "y": pl.Float64})
    out = f.select(Decision(rules, otherwise_grade=0).outcome("o", "rule", "grade", "grade_max", "possible", "missing"))
    assert out.rows() == [("g2", 2, 3, ["g3"], ["x"]), ("g2", 2, 2, [], []), (None, 0, 3, ["g3", "g1"], ["x"])]


def test_option_gate_keeps_a_rule_only_for_its_option_value():
    rules = RULES.validate_python([
        {"id": "a", "category": "A", "citation": "c", "option": {"flag": True}, "when": []},
        {"id": "b", "category": "B", "citation": "c", "when": []}])
    f = pl.DataFrame({"x": [1]})
    assert f.select(Decision(rules, {"flag": True}).rule()).item() == "a"
    assert f.select(Decision(rules, {"flag": False}).rule()).item() == "b"


def test_unknown_option_reference_is_an_error():
    rules = RULES.validate_python([{"id": "a", "citation": "c", "when": [{"feature": "x", "op": ">", "value": "$nope"}]}])
    with pytest.raises(KeyError, match="nope"):
        Decision(rules, {})


def test_column_reference_text():
    c = Leaf.model_validate({"feature": "AVAL", "op": ">", "value": {"column": "ANRHI", "factor": 3, "offset": -1}})
    from cartlab.criteria import describe

    assert describe(c) == "AVAL > 3 x ANRHI - 1"
    assert Column(column="x").plain
