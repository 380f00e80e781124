"""CTCAE laboratory toxicity grading: a small generic engine over versioned criteria tables.

The criteria are data (``criteria/ctcae_v5.yaml`` in SI units, ``criteria/ctcae_v5_uscv.yaml`` in US
conventional units; see the comment at the top of either file for the schema and its semantics).
Each term/direction entry holds an ordered list of rules; the first rule whose conditions hold
decides the grade (0-4, or null = cannot be graded) and no rule holding means grade 0. This is the
semantics of the machine-readable CTCAE v5.0 criteria of pharmaverse/admiral, from which the
thresholds were transcribed (with attribution); this module holds no term-specific logic, so CTCAE
v4.03 or v6.0 is a new YAML file with the same schema (tables are discovered by their ``standard``,
``version`` and ``units`` keys).

Public API
----------
* :class:`CtcaeOptions` — version, unit system and every ambiguous choice of the standard, each
  defaulting to admiral's (worst-case) reading; see :data:`OPTION_DOCS`.
* :func:`grade_labs` — grade a frame of lab results (term or param, direction, aval, anrlo, anrhi,
  base, bnrind, pchg, unit) adding ``grade``, ``grade_reason`` and ``rule``. Vectorised: rows are
  partitioned by (term, direction, unit, ...) and each partition is graded by one polars
  expression built from its rule list; there is no per-row Python.
* :func:`derive_ctcae` — an ADLB-like frame (ATOXGRL/ATOXGRH/ATOXGR/BTOXGR, ...) from canonical
  observations.
* :func:`ctcae_terms` — every term the criteria grade (direction, cartlab params, unit); the
  command line's ``cartlab ctcae`` (``cartlab.cli.grading_io``) grades a plain CSV table with them
  as ``../shared/conformance/README.md`` describes.

Comparisons follow admiral: ``signif(x, 15) <op> signif(threshold, 15)`` where ``signif`` is R's
(round to 15 significant digits, half to even) and a threshold is ``factor * REF + offset`` or an
absolute value; a comparison with a missing operand is false.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import polars as pl

from cartlab.grading.common import EVIDENCE, evidence_ref, load_criteria

__all__ = [
    "OPTION_DOCS",
    "CtcaeOptions",
    "available_criteria",
    "combine_atoxgr",
    "compile_criteria",
    "criteria_names",
    "ctcae_terms",
    "derive_ctcae",
    "grade_labs",
    "metadata_units",
    "signif",
    "signif_scalar",
]

# ---------------------------------------------------------------------------------------------
# options


@dataclass(frozen=True)
class CtcaeOptions:
    """How to grade. Every default is admiral's choice (see ``OPTION_DOCS`` and the YAML tables).

    Rule-level options (``inr_on_anticoagulation`` ... ``fibrinogen_pchg_condition``) are declared
    in the criteria tables (``options:``), which document them and give the same defaults; a table
    for another CTCAE version may declare new ones, set through ``extra={"name": value}``.
    """

    #: CTCAE version: selects the criteria tables whose ``version`` is this ("5.0" ships)
    version: str = "5.0"
    #: "SI", "US" (conventional units) or "auto": per row, the SI table when the row's unit fits
    #: it (or the term has no unit check), else the US table. Terms without a unit check have the
    #: same rules in both tables.
    units: str = "auto"
    #: BNRIND values meaning "baseline abnormal high" (admiral's high_indicator); a row's own
    #: ``high_indicator`` column (values separated by "|" or ",") takes precedence
    high_indicator: tuple[str, ...] = ("HIGH",)
    #: BNRIND values meaning "baseline abnormal low" (admiral's low_indicator)
    low_indicator: tuple[str, ...] = ("LOW",)
    #: significant digits of the comparisons (admiral's signif_dig option, default 15)
    signif_digits: int = 15
    # --- ambiguous criteria: admiral's worst-case assumptions are the defaults -----------------
    inr_on_anticoagulation: bool = True
    pancreatic_enzymes_symptomatic: bool = True
    hyperuricemia_physiologic_consequences: bool = True
    hypokalemia_symptomatic: bool = True
    hyponatremia_symptomatic: bool = True
    ggt_baseline_grade1_inclusive: bool = False
    fibrinogen_pchg_condition: str = "value_below_lln"
    # --- derive_ctcae only --------------------------------------------------------------------
    #: baseline = the last non-missing value with day <= baseline_day (< when not inclusive)
    baseline_day: float = 0.0
    baseline_inclusive: bool = True
    #: values for rule-level options declared by a criteria table but not fields of this class
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.units not in _UNITS:
            raise ValueError(f"units must be one of {_UNITS}, not {self.units!r}")
        if not isinstance(self.signif_digits, int) or not 1 <= self.signif_digits <= 22:
            raise ValueError("signif_digits must be an integer from 1 to 22")

    def value(self, name: str, default: Any) -> Any:
        """The value of a rule-level option: ``extra`` first, then a field, then ``default``."""
        if name in self.extra:
            return self.extra[name]
        if name in _FIELD_NAMES:
            return getattr(self, name)
        return default


_FIELD_NAMES = frozenset(f.name for f in fields(CtcaeOptions))

#: one line per option; the rule-level ones are documented at length in the YAML tables
OPTION_DOCS: dict[str, str] = {
    "version": "CTCAE version of the criteria tables (default '5.0')",
    "units": "'SI', 'US' or 'auto' (default): which unit system's table grades a row",
    "high_indicator": "BNRIND values that mean an abnormal-high baseline (default ('HIGH',))",
    "low_indicator": "BNRIND values that mean an abnormal-low baseline (default ('LOW',))",
    "signif_digits": "significant digits used in every comparison (default 15, as admiral)",
    "inr_on_anticoagulation": "INR: also grade against x BASE (admiral: assume on anticoagulation)",
    "pancreatic_enzymes_symptomatic": "lipase/amylase: >2x ULN = G3, >5x = G4 (admiral: assume symptoms)",
    "hyperuricemia_physiologic_consequences": ">ULN urate = G3 (admiral) instead of G1",
    "hypokalemia_symptomatic": "<LLN potassium = G2 (admiral) instead of G1",
    "hyponatremia_symptomatic": "sodium <=129 = G3 (admiral) instead of G2 for 125-129",
    "ggt_baseline_grade1_inclusive": "GGT, abnormal baseline: G1 from >= 2x BASE instead of admiral's > 2x",
    "fibrinogen_pchg_condition": "fibrinogen % decrease counts when value <LLN (admiral), baseline low, or never",
    "baseline_day": "derive_ctcae: baseline = last value on or before this day (default 0)",
    "baseline_inclusive": "derive_ctcae: the baseline day itself counts (default True)",
}

_UNITS = ("SI", "US", "auto")
_REFS = {"ANRLO": "anrlo", "ANRHI": "anrhi", "BASE": "base"}
_XS = {"AVAL": "aval", "PCHG": "pchg"}
_VARS = {"AVAL": "aval", "ANRLO": "anrlo", "ANRHI": "anrhi", "BASE": "base", "PCHG": "pchg", "BNRIND": "bnrind"}
_OPS = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge"}


# ---------------------------------------------------------------------------------------------
# R's signif()


def signif(x: pl.Expr, digits: int = 15) -> pl.Expr:
    """R's ``signif(x, digits)`` as a polars expression (round half to even at the last digit).

    As R: with ``e = floor(log10(|x|))`` and ``k = digits - 1 - e``, ``round(|x| * 10^k) / 10^k``
    for k > 0, else ``round(|x| / 10^-k) * 10^-k``; the sign is restored; 0, NaN, inf and null are
    returned unchanged. ``e`` is the exact decimal exponent (the floor of polars' log10, which is not
    correctly rounded, is corrected by checking the digit count of the scaled value). R takes
    ``e`` from C's correctly rounded log10 instead, which only differs for values with 15 or more
    significant digits within ~2e-15 (relative) below a power of ten, where R keeps one digit less.
    """
    return _signif(x, digits, general=True)


def _signif(x: pl.Expr, digits: int, general: bool) -> pl.Expr:
    a = x.abs()
    k = (float(digits - 1) - a.log10().floor()).clip(-300.0, 300.0)
    if not general:  # every finite |x| < 10^(digits-1): k >= 1 always
        k = k.clip(1.0, 300.0)
    p = pl.lit(10.0).pow(k.abs())
    up = k > 0
    scaled = pl.when(up).then(a * p).otherwise(a / p) if general else a * p
    # fix an off-by-one exponent: the scaled value must have exactly `digits` integer digits
    lo, hi = 10.0 ** (digits - 1), 10.0**digits
    low = (scaled < lo) & (a > 0)
    high = scaled >= hi
    if general:
        # k -> k+1 when too few digits, k-1 when too many; p = 10^|k| follows
        k = k + low.cast(pl.Float64) - high.cast(pl.Float64)
        p = pl.lit(10.0).pow(k.abs())
        r = pl.when(k > 0).then((a * p).round(0) / p).otherwise((a / p).round(0) * p)
        out = r * x.sign()
        return pl.when(a.is_finite() & (a > 0)).then(out).otherwise(x)
    p = p * (1.0 + 9.0 * low.cast(pl.Float64)) / (1.0 + 9.0 * high.cast(pl.Float64))
    return (a * p).round(0) / p * x.sign()


def signif_scalar(x: float | None, digits: int = 15) -> float | None:
    """R's ``signif`` for one number (the algorithm of :func:`signif`)."""
    if x is None or x == 0 or not math.isfinite(x):
        return x
    a = abs(x)
    e = math.floor(math.log10(a))
    k = max(-300, min(300, digits - 1 - e))
    scaled = a * 10.0**k if k > 0 else a / 10.0 ** (-k)
    if scaled < 10.0 ** (digits - 1):
        k += 1
    elif scaled >= 10.0**digits:
        k -= 1
    if k > 0:
        p = 10.0**k
        r = round(a * p) / p
    else:
        p = 10.0 ** (-k)
        r = round(a / p) * p
    return -r if x < 0 else r


# ---------------------------------------------------------------------------------------------
# criteria tables


_HEADER = re.compile(r'^(standard|version|units):[ \t]*["\']?([^"\'#\n]*?)["\']?[ \t]*(?:#.*)?$', re.MULTILINE)


@cache
def _table_headers() -> tuple[tuple[str, str, str, str], ...]:
    """(name, standard, version, units) of every criteria table with top-level ``standard`` and
    ``terms`` keys (read from the top-level lines only; the tables are parsed when used)."""
    out = []
    folder = resources.files("cartlab.grading").joinpath("criteria")
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".yaml"):
            continue
        text = entry.read_text(encoding="utf-8")
        head = {k: v.strip() for k, v in _HEADER.findall(text)}
        if head.get("standard") and head.get("version") and re.search(r"^terms:", text, re.MULTILINE):
            out.append((entry.name[:-5], head["standard"], head["version"], head.get("units") or "SI"))
    return tuple(out)


def available_criteria(standard: str = "CTCAE") -> list[dict[str, str]]:
    """The shipped criteria tables of ``standard``: name, version and units of each."""
    return [
        {"name": n, "version": v, "units": u} for n, s, v, u in _table_headers() if s.upper() == standard.upper()
    ]


def ctcae_terms(version: str = "5.0", units: str = "auto", options: CtcaeOptions | None = None) -> pl.DataFrame:
    """Every term the criteria grade: ``term``, ``direction`` (L/H), ``params`` (cartlab parameter
    codes that map to it), ``unit`` (the unit the entry requires, if any) and ``table``."""
    opts = options or CtcaeOptions(version=version, units=units)
    rows = [(e.term, e.direction, ", ".join(e.params), e.unit, tb.name)
            for tb in _tables(None, opts) for e in tb.entries]
    return pl.DataFrame(rows, schema={"term": pl.String, "direction": pl.String, "params": pl.String,
                                      "unit": pl.String, "table": pl.String}, orient="row").unique(maintain_order=True)


def criteria_names(version: str = "5.0", units: str = "auto") -> list[str]:
    """Names of the tables for ``version``, in precedence order (SI before US for ``auto``)."""
    if units not in _UNITS:
        raise ValueError(f"units must be one of {_UNITS}, not {units!r}")
    tables = [t for t in available_criteria() if t["version"] == str(version)]
    if not tables:
        versions = sorted({t["version"] for t in available_criteria()})
        raise ValueError(f"no CTCAE criteria for version {version!r}; available: {', '.join(versions)}")
    order = {"SI": 0, "US": 1}
    tables.sort(key=lambda t: (order.get(t["units"], 2), t["name"]))
    if units != "auto":
        tables = [t for t in tables if t["units"] == units]
        if not tables:
            raise ValueError(f"no CTCAE {version} criteria in {units} units")
    return [t["name"] for t in tables]


@dataclass(frozen=True)
class _Cond:
    kind: str  # "cmp" | "missing" | "bnrind_in" | "bnrind_not_in"
    x: str = ""  # cmp: AVAL | PCHG
    op: str = ""
    ref: str | None = None  # cmp: ANRLO | ANRHI | BASE | None (absolute)
    factor: float = 1.0
    offset: float = 0.0
    value: float | None = None
    names: tuple[str, ...] = ()  # missing
    which: str = ""  # bnrind: high | low


@dataclass(frozen=True)
class _Rule:
    rule_id: str  # "<table>:<entry>:<rule>"
    grade: int | None
    conds: tuple[_Cond, ...]
    reason: str
    src: str


@dataclass(frozen=True)
class _Entry:
    table: str
    entry_id: str
    term: str
    term_key: str
    direction: str
    unit: str | None
    unit_key: str | None
    params: tuple[str, ...]
    rules: tuple[_Rule, ...]
    zero_rule: _Rule


@dataclass(frozen=True)
class _Table:
    name: str
    version: str
    units: str
    entries: tuple[_Entry, ...]
    #: (TERM, DIR) -> entries (unit-specific and unit-free)
    index: Mapping[tuple[str, str], tuple[_Entry, ...]]


def _num(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{where}: expected a number, got {v!r}")  # noqa: TRY004 (bad table data)
    return float(v)


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) < 1e6 else f"{v:.6g}"


def _parse_cond(c: Mapping[str, Any], where: str) -> _Cond:
    if "missing" in c:
        names = c["missing"] if isinstance(c["missing"], list) else [c["missing"]]
        bad = [n for n in names if n not in _VARS]
        if bad:
            raise ValueError(f"{where}: unknown variable(s) {bad} in 'missing'")
        return _Cond("missing", names=tuple(names))
    for kind in ("bnrind_in", "bnrind_not_in"):
        if kind in c:
            if c[kind] not in ("high", "low"):
                raise ValueError(f"{where}: {kind} must be 'high' or 'low'")
            return _Cond(kind, which=c[kind])
    if "x" in c:
        if c["x"] not in _XS or c.get("op") not in _OPS:
            raise ValueError(f"{where}: bad comparison {dict(c)!r}")
        if "value" in c:
            return _Cond("cmp", x=c["x"], op=c["op"], value=_num(c["value"], where))
        if c.get("ref") not in _REFS:
            raise ValueError(f"{where}: comparison needs 'value' or ref ANRLO|ANRHI|BASE: {dict(c)!r}")
        return _Cond(
            "cmp", x=c["x"], op=c["op"], ref=c["ref"],
            factor=_num(c.get("factor", 1), where), offset=_num(c.get("offset", 0), where),
        )
    raise ValueError(f"{where}: unknown condition {dict(c)!r}")


def _describe(c: _Cond, unit: str | None) -> str:
    if c.kind == "missing":
        return " or ".join(c.names) + " missing"
    if c.kind == "bnrind_in":
        return f"baseline abnormal {c.which} (BNRIND in {c.which}_indicator)"
    if c.kind == "bnrind_not_in":
        return f"baseline not abnormal {c.which} (BNRIND not in {c.which}_indicator)"
    u = f" {unit}" if unit and c.x == "AVAL" else ("%" if c.x == "PCHG" else "")
    if c.ref is None:
        rhs = f"{_fmt(c.value)}{u}"
    else:
        rhs = c.ref if c.factor == 1 else f"{_fmt(c.factor)} x {c.ref}"
        if c.offset:
            rhs += f" {'+' if c.offset > 0 else '-'} {_fmt(abs(c.offset))}{u}"
    return f"{c.x} {c.op} {rhs}"


def _reason(grade: int | None, conds: Sequence[_Cond], unit: str | None) -> str:
    text = " and ".join(_describe(c, unit) for c in conds)
    return f"not gradable: {text}" if grade is None else f"grade {grade}: {text}"


def _resolve_option(name: str, spec: Mapping[str, Any], options: CtcaeOptions, table: str) -> Any:
    value = options.value(name, spec.get("default"))
    allowed = spec.get("values")
    if allowed is not None and value not in allowed:
        raise ValueError(f"option {name}={value!r} not allowed by {table} (allowed: {allowed})")
    return value


def _compile_table(name: str, data: Mapping[str, Any], options: CtcaeOptions) -> _Table:
    declared: Mapping[str, Any] = data.get("options") or {}
    values = {k: _resolve_option(k, spec or {}, options, name) for k, spec in declared.items()}
    entries = []
    seen_ids: set[str] = set()
    for e in data["terms"]:
        eid = str(e["id"])
        if eid in seen_ids:
            raise ValueError(f"{name}: duplicate entry id {eid!r}")
        seen_ids.add(eid)
        direction = str(e["direction"]).upper()
        if direction not in ("L", "H"):
            raise ValueError(f"{name}:{eid}: direction must be L or H")
        unit = e.get("unit")
        rules = []
        rule_ids: set[str] = set()
        for r in e["rules"]:
            where = f"{name}:{eid}:{r.get('id')}"
            if r.get("id") in rule_ids:
                raise ValueError(f"{where}: duplicate rule id")
            rule_ids.add(r.get("id"))
            gate = r.get("option") or {}
            for opt in gate:
                if opt not in declared:
                    raise ValueError(f"{where}: option {opt!r} is not declared in the table's options")
            if any(values[opt] != wanted for opt, wanted in gate.items()):
                continue
            grade = r.get("grade")
            if grade is not None and (not isinstance(grade, int) or not 0 <= grade <= 4):
                raise ValueError(f"{where}: grade must be 0-4 or null")
            conds = tuple(_parse_cond(c, where) for c in r["if"])
            rules.append(_Rule(f"{name}:{eid}:{r['id']}", grade, conds, _reason(grade, conds, unit), str(r.get("src", ""))))
        zero = _Rule(f"{name}:{eid}:g0", 0, (), "grade 0: no criterion for grade 1-4 met", "default")
        entries.append(
            _Entry(
                table=name, entry_id=eid, term=str(e["term"]), term_key=_key(e["term"]), direction=direction,
                unit=unit, unit_key=_key(unit) if unit else None,
                params=tuple(str(p).upper() for p in e.get("params") or ()),
                rules=tuple(rules), zero_rule=zero,
            )
        )
    index: dict[tuple[str, str], list[_Entry]] = {}
    for ent in entries:
        index.setdefault((ent.term_key, ent.direction), []).append(ent)
    for (term, d), ents in index.items():
        units = [x.unit_key for x in ents]
        if len(set(units)) != len(units):
            raise ValueError(f"{name}: term {term!r} ({d}) has two entries for the same unit")
    return _Table(name, str(data["version"]), str(data.get("units", "SI")), tuple(entries),
                  {k: tuple(v) for k, v in index.items()})


def _option_key(options: CtcaeOptions) -> tuple:
    vals = {f: getattr(options, f) for f in _FIELD_NAMES if f != "extra"}
    vals.update(options.extra)
    return tuple(sorted((k, repr(v)) for k, v in vals.items()))


_COMPILED: dict[tuple, _Table] = {}


def compile_criteria(criteria: str | Mapping[str, Any], options: CtcaeOptions | None = None) -> _Table:
    """Parse and validate one criteria table (a shipped name or an already loaded mapping)."""
    options = options or CtcaeOptions()
    if isinstance(criteria, str):
        key = (criteria, _option_key(options))
        if key not in _COMPILED:
            _COMPILED[key] = _compile_table(criteria, load_criteria(criteria), options)
        return _COMPILED[key]
    name = str(criteria.get("name", f"ctcae_v{criteria.get('version', '')}"))
    return _compile_table(name, criteria, options)


def _key(s: Any) -> str | None:
    if s is None:
        return None
    s = str(s).strip().upper()
    return s or None


def _tables(criteria: Any, options: CtcaeOptions) -> list[_Table]:
    if criteria is None:
        items: list[Any] = criteria_names(options.version, options.units)
    elif isinstance(criteria, (str, Mapping, _Table)):
        items = [criteria]
    else:
        items = list(criteria)
    if options.extra:
        declared: set[str] = set()
        for c in items:
            if isinstance(c, _Table):
                declared |= set(options.extra)  # compiled already: nothing to check
            else:
                data = load_criteria(c) if isinstance(c, str) else c
                declared |= set((data.get("options") or {}).keys())
        unknown = set(options.extra) - declared
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)}: not declared by the criteria tables")
    return [c if isinstance(c, _Table) else compile_criteria(c, options) for c in items]


# ---------------------------------------------------------------------------------------------
# dispatch: which entry grades a (term, direction, unit, units-system) combination


@dataclass(frozen=True)
class _Dispatch:
    entry: _Entry | None
    rule_id: str | None  # when entry is None
    reason: str  # when entry is None


def _dispatch(tables: Sequence[_Table], term: str | None, direction: str | None, unit: str | None,
              system: str | None, version: str) -> _Dispatch:
    t, d, u = _key(term), _key(direction), _key(unit)
    if t is None:
        return _Dispatch(None, None, "not gradable: no CTCAE term")
    if d not in ("L", "H"):
        return _Dispatch(None, None, f"not gradable: direction {direction!r} is not L or H")
    usable = [tb for tb in tables if system is None or tb.units == system]
    if not usable:
        return _Dispatch(None, None, f"not gradable: no {system} criteria table selected")
    known: list[_Entry] = []
    for tb in usable:
        cands = tb.index.get((t, d), ())
        known.extend(cands)
        for ent in cands:
            if ent.unit_key is not None and ent.unit_key == u:
                return _Dispatch(ent, None, "")
        for ent in cands:
            if ent.unit_key is None:
                return _Dispatch(ent, None, "")
    if not known:
        names = "/".join(tb.name for tb in usable)
        return _Dispatch(None, None, f"not gradable: {term.strip()!r} is not a CTCAE {version} term with direction {d} ({names})")
    expected = "; ".join(f"{e.unit} ({e.table})" for e in known)
    first = known[0]
    rid = f"{first.table}:{first.entry_id}:unit_check"
    if u is None:
        return _Dispatch(None, rid, f"not gradable: unit missing, the criteria need {expected}")
    return _Dispatch(None, rid, f"not gradable: unit {unit.strip()!r} does not match the criteria unit {expected}")


# ---------------------------------------------------------------------------------------------
# expressions


def _indicators(raw: Any, default: Sequence[str]) -> list[str]:
    if raw is None or str(raw).strip() == "":
        return list(default)
    return [p.strip() for p in re.split(r"[|,]", str(raw)) if p.strip()]


def _cond_expr(c: _Cond, thresholds: dict, hi: list[str], lo: list[str]) -> pl.Expr:
    if c.kind == "missing":
        return pl.any_horizontal([pl.col(_VARS[n]).is_null() for n in c.names])
    if c.kind in ("bnrind_in", "bnrind_not_in"):
        inside = pl.col("bnrind").is_in(hi if c.which == "high" else lo).fill_null(False)
        return inside if c.kind == "bnrind_in" else ~inside
    lhs = pl.col("_sx") if c.x == "AVAL" else pl.col("_spchg")
    if c.ref is None:
        rhs = pl.lit(thresholds[("abs", c.value)])
    else:
        rhs = pl.col(thresholds[(c.ref, c.factor, c.offset)])
    return getattr(lhs, _OPS[c.op])(rhs)


def _grade_partition(part: pl.DataFrame, entry: _Entry, gids: Mapping[str, int], hi: list[str], lo: list[str],
                     digits: int, top: Mapping[str, float | None]) -> pl.LazyFrame:
    """One entry's rule list on its partition: a plan giving _row and the global rule id."""
    thresholds: dict = {}
    specs: list[tuple[str, str, float, float]] = []
    uses_pchg = False
    for r in entry.rules:
        for c in r.conds:
            if c.kind != "cmp":
                continue
            uses_pchg |= c.x == "PCHG"
            if c.ref is None:
                thresholds[("abs", c.value)] = signif_scalar(c.value, digits)
            elif (c.ref, c.factor, c.offset) not in thresholds:
                name = f"_t{len(thresholds)}"
                thresholds[(c.ref, c.factor, c.offset)] = name
                specs.append((name, _REFS[c.ref], c.factor, c.offset))
    # the fast signif needs every finite magnitude below 10^(digits-1)
    bound = max([top["aval"] or 0.0, (top["pchg"] or 0.0) if uses_pchg else 0.0]
                + [abs(f) * (top[ref] or 0.0) + abs(o) for _, ref, f, o in specs])
    general = not (math.isfinite(bound) and bound < 10.0 ** (digits - 2))
    lf = part.lazy()
    # thresholds depend on one reference column each, which takes few distinct values (a lab's
    # ULN, a subject's baseline): compute them once per distinct value and join them back
    for ref in sorted({r for _, r, _, _ in specs}):
        mine = [(n, f, o) for n, r, f, o in specs if r == ref]
        exprs = []
        for name, f, o in mine:
            t = pl.col(ref) * f if f != 1 else pl.col(ref)
            exprs.append(_signif(t + o if o else t, digits, general).alias(name))
        table = part.lazy().select(pl.col(ref).unique()).drop_nulls().with_columns(exprs)
        lf = lf.join(table, on=ref, how="left")
    temp: list[pl.Expr] = []
    temp.append(_signif(pl.col("aval"), digits, general).alias("_sx"))
    if uses_pchg:
        temp.append(_signif(pl.col("pchg"), digits, general).alias("_spchg"))
    chain = None
    for r in entry.rules:
        cond = pl.all_horizontal([_cond_expr(c, thresholds, hi, lo) for c in r.conds]) if len(r.conds) > 1 \
            else _cond_expr(r.conds[0], thresholds, hi, lo)
        val = pl.lit(gids[r.rule_id], dtype=pl.Int32)
        chain = pl.when(cond).then(val) if chain is None else chain.when(cond).then(val)
    zero = pl.lit(gids[entry.zero_rule.rule_id], dtype=pl.Int32)
    fired = zero if chain is None else chain.otherwise(zero)
    return lf.with_columns(temp).select(pl.col("_row"), fired.alias("_gid"))


# ---------------------------------------------------------------------------------------------
# grade_labs


INPUTS = ("term", "param", "direction", "aval", "anrlo", "anrhi", "base", "bnrind", "pchg", "unit",
           "high_indicator", "low_indicator", "criteria_units")
_NUMERIC = ("aval", "anrlo", "anrhi", "base", "pchg")


def _as_float(frame: pl.DataFrame, col: str) -> pl.Expr:
    if col not in frame.columns:
        return pl.lit(None, dtype=pl.Float64).alias(col)
    dtype = frame.schema[col]
    e = pl.col(col)
    if dtype == pl.String:
        e = e.str.strip_chars().cast(pl.Float64, strict=False)
    elif dtype != pl.Float64:
        e = e.cast(pl.Float64, strict=False)
    return e.fill_nan(None).alias(col)  # NaN is missing, as R's is.na(NaN)


def _param_terms(tables: Sequence[_Table]) -> dict[tuple[str, str], _Entry]:
    """(PARAM, DIR) -> the entry grading that param in that direction (first table wins)."""
    out: dict[tuple[str, str], _Entry] = {}
    for tb in tables:
        local: dict[tuple[str, str], str] = {}
        for ent in tb.entries:
            for p in ent.params:
                key = (p, ent.direction)
                if key in local and local[key] != ent.term_key:
                    raise ValueError(f"{tb.name}: param {p} maps to two terms in direction {ent.direction}")
                local[key] = ent.term_key
                out.setdefault(key, ent)
    return out


def grade_labs(frame: pl.DataFrame, criteria: Any = None, options: CtcaeOptions | None = None) -> pl.DataFrame:
    """Grade lab results by CTCAE; returns ``frame`` plus ``grade``, ``grade_reason`` and ``rule``.

    Input columns (lower case; all but ``direction`` and ``aval`` optional):
    ``term`` (CTCAE term, case-insensitive) or ``param`` (cartlab code, used when ``term`` is absent
    or null), ``direction`` (L/H), ``aval``, ``anrlo``, ``anrhi``, ``base``, ``bnrind``, ``pchg``,
    ``unit``; optionally ``high_indicator`` / ``low_indicator`` (per-row BNRIND indicator values,
    "|"- or ","-separated) and ``criteria_units`` ("SI"/"US", overriding ``options.units`` for that
    row). Numeric columns may be strings (unparsable = missing).

    Output: ``grade`` (Int64 0-4, null when the row cannot be graded), ``rule`` (the id of the rule
    that decided, ``<table>:<entry>:<rule>``; ``...:g0`` when no grade 1-4 rule held) and
    ``grade_reason`` (the rule in words, e.g. ``grade 3: AVAL < 1 10^9/L``).

    ``criteria``: None (the tables of ``options.version``/``options.units``), a table name, a
    loaded table mapping, or a sequence of them in precedence order.
    """
    gid, labels = _grade_codes(frame, criteria, options)
    grades = {i: g for i, (g, _, _) in enumerate(labels)}
    rules = {i: r for i, (_, r, _) in enumerate(labels)}
    reasons = {i: s for i, (_, _, s) in enumerate(labels)}
    out = pl.DataFrame({"_gid": gid}).select(
        pl.col("_gid").replace_strict(grades, return_dtype=pl.Int64).alias("grade"),
        pl.col("_gid").replace_strict(reasons, return_dtype=pl.String).alias("grade_reason"),
        pl.col("_gid").replace_strict(rules, return_dtype=pl.String).alias("rule"),
    )
    return frame.with_columns(out.get_columns())


def _grade_codes(frame: pl.DataFrame, criteria: Any = None, options: CtcaeOptions | None = None
                 ) -> tuple[pl.Series, list[tuple[int | None, str | None, str]]]:
    """The engine behind :func:`grade_labs`: per row the id of the outcome (Int32), and the outcomes
    (grade, rule id, reason) indexed by that id. Rows are graded per dispatch partition."""
    options = options or CtcaeOptions()
    cols = frame.columns
    if criteria is None and "criteria_units" in cols and options.units != "auto":
        # a per-row choice of unit system needs both tables; rows without one use options.units
        criteria = criteria_names(options.version, "auto")
    tables = _tables(criteria, options)
    if "direction" not in cols or "aval" not in cols or ("term" not in cols and "param" not in cols):
        raise ValueError("grade_labs needs columns direction, aval and term or param")
    version = tables[0].version if tables else options.version

    # narrow working frame: row id, raw dispatch keys, numbers
    keys = [c for c in ("term", "param", "direction", "unit", "high_indicator", "low_indicator", "criteria_units")
            if c in cols]
    use_param = "param" in cols and ("term" not in cols or frame["term"].null_count() > 0)
    if not use_param and "param" in keys:
        keys.remove("param")
    work = frame.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"),
        *[pl.col(k).cast(pl.String) for k in keys],
        *[_as_float(frame, c) for c in _NUMERIC],
        (pl.col("bnrind").cast(pl.String) if "bnrind" in cols else pl.lit(None, dtype=pl.String)).alias("bnrind"),
    )
    param_map = _param_terms(tables) if use_param else {}
    # largest magnitudes (non-finite ignored): decides whether the fast signif path is exact
    top = work.select(
        pl.col(c).abs().filter(pl.col(c).is_finite()).max().alias(c) for c in _NUMERIC
    ).row(0, named=True)

    # global rule ids: every compiled rule + dispatch outcomes met in this call
    labels: list[tuple[int | None, str | None, str]] = []  # gid -> (grade, rule id, reason)
    gids: dict[str, int] = {}
    for tb in tables:
        for ent in tb.entries:
            for r in (*ent.rules, ent.zero_rule):
                gids[r.rule_id] = len(labels)
                labels.append((r.grade, r.rule_id, r.reason))
    extra_gid: dict[tuple[str | None, str], int] = {}

    pieces = []
    parts = work.partition_by(keys, as_dict=True, include_key=False) if work.height else {}
    for key, part in parts.items():
        kv = dict(zip(keys, key))
        term = kv.get("term")
        if term is None and use_param and kv.get("param") is not None:
            ent = param_map.get((str(kv["param"]).strip().upper(), _key(kv.get("direction")) or ""))
            term = ent.term if ent is not None else None
        system = _key(kv.get("criteria_units"))
        if system is not None and system not in ("SI", "US"):
            raise ValueError(f"criteria_units must be SI or US, not {kv.get('criteria_units')!r}")
        if system is None and options.units != "auto":
            system = options.units
        d = _dispatch(tables, term, kv.get("direction"), kv.get("unit"), system, version)
        if d.entry is None:
            k2 = (d.rule_id, d.reason)
            if k2 not in extra_gid:
                extra_gid[k2] = len(labels)
                labels.append((None, d.rule_id, d.reason))
            pieces.append(part.lazy().select(pl.col("_row"), pl.lit(extra_gid[k2], dtype=pl.Int32).alias("_gid")))
            continue
        hi = _indicators(kv.get("high_indicator"), options.high_indicator)
        lo = _indicators(kv.get("low_indicator"), options.low_indicator)
        pieces.append(_grade_partition(part, d.entry, gids, hi, lo, options.signif_digits, top))

    gid = np.zeros(work.height, dtype=np.int32)
    for piece in (pl.collect_all(pieces) if pieces else []):
        gid[piece["_row"].to_numpy()] = piece["_gid"].to_numpy()  # scatter back to input order
    return pl.Series("_gid", gid, dtype=pl.Int32), labels


# ---------------------------------------------------------------------------------------------
# ADLB-like derivation on canonical observations


def combine_atoxgr(low: str = "ATOXGRL", high: str = "ATOXGRH", low_term: str = "ATOXDSCL",
                   high_term: str = "ATOXDSCH") -> pl.Expr:
    """admiral's derive_var_atoxgr as an expression: signed grade, negative for the low direction.

    Both missing -> null; low >= 1 -> -low; high >= 1 -> high; 0 when the other direction is 0 or
    has no term; otherwise (one direction 0 and the other not gradable) null.
    """
    lo, hi = pl.col(low), pl.col(high)
    return (
        pl.when(lo.is_null() & hi.is_null()).then(None)
        .when(lo >= 1).then(-lo)
        .when(hi >= 1).then(hi)
        .when(((lo == 0) | pl.col(low_term).is_null()).fill_null(False) & (hi == 0).fill_null(False)).then(0)
        .when(((hi == 0) | pl.col(high_term).is_null()).fill_null(False) & (lo == 0).fill_null(False)).then(0)
        .otherwise(None)
        .cast(pl.Int64)
    )


ADLB_COLUMNS = (
    "subject_id", "day", "datetime", "param", "term", "direction", "AVAL", "AVALU", "ANRLO", "ANRHI",
    "BASE", "ABLFL", "BNRIND", "PCHG", "ATOXDSCL", "ATOXGRL", "ATOXDSCH", "ATOXGRH", "ATOXGR", "BTOXGR",
    "rule", "grade_reason", "evidence",
)


def derive_ctcae(study: Any, options: CtcaeOptions | None = None) -> pl.DataFrame:
    """CTCAE grades of canonical observations as an ADLB-like frame (one row per observation).

    ``study`` is a :class:`cartlab.model.Study` or its observations frame. Rows are the
    observations whose ``param`` is listed by a term of the criteria (``params`` in the YAML).

    * AVAL/ANRLO/ANRHI/AVALU = value/lln/uln/unit (canonical SI units, so the SI table applies;
      ``options.units="US"`` is refused).
    * BASE: per subject and param, the last non-missing value with ``day <= options.baseline_day``
      (``<`` when ``baseline_inclusive`` is False; ties on the same day: the later source row);
      ABLFL = "Y" on that row. BASE is filled on every row of the subject/param.
    * BNRIND from the baseline row's own limits: HIGH (> ULN), LOW (< LLN), NORMAL (limits known,
      within), null (no baseline or no limits). PCHG = 100 * (AVAL - BASE) / BASE.
    * ATOXDSCL/ATOXDSCH: the low/high term of the param (null when none); ATOXGRL/ATOXGRH their
      grades; ATOXGR the signed combination (:func:`combine_atoxgr`); BTOXGR = ATOXGR of the baseline
      row.
    * term/direction/rule/grade_reason: those of the direction that decides ATOXGR (the non-zero
      one, or the only direction the param has); when both directions exist and ATOXGR is 0 or
      null, direction/term are null and rule/grade_reason list both ("L: ...; H: ...").
    * evidence: ``src_file:src_row`` of the observation and, when BASE comes from another row, of
      the baseline observation.
    """
    options = options or CtcaeOptions()
    if options.units == "US":
        raise ValueError("derive_ctcae grades canonical observations, which are in SI units; use units='SI' or 'auto'")
    obs = study.observations if hasattr(study, "observations") else study
    tables = _tables(None, CtcaeOptions(**{**_opts_dict(options), "units": "SI"}))
    pmap = _param_terms(tables)
    params = sorted({p for p, _ in pmap})

    for col in ("src_file", "src_row", "datetime", "lln", "uln", "unit"):
        if col not in obs.columns:
            obs = obs.with_columns(pl.lit(None).alias(col))
    # only the columns the derivation needs travel through it; one sort, then order-keeping joins
    f = (
        obs.select("subject_id", "day", "datetime", "param", "value", "unit", "lln", "uln", "src_file", "src_row")
        .with_row_index("_obs")
        .filter(pl.col("param").is_in(params))
        .sort(["subject_id", "param", "day", "_obs"], nulls_last=True)
    )
    # baselines are per subject, so large inputs are derived in subject chunks (bounded memory)
    if f.height <= _CHUNK_ROWS:
        return _derive_chunk(f, tables, pmap, options)
    counts = f.group_by("subject_id", maintain_order=True).len()
    chunk = (counts["len"].cum_sum() // _CHUNK_ROWS).to_list()
    bounds = [0]
    for k in range(1, len(chunk)):
        if chunk[k] != chunk[k - 1]:
            bounds.append(k)
    bounds.append(len(chunk))
    starts = [0, *counts["len"].cum_sum().to_list()]
    parts = [_derive_chunk(f.slice(starts[a], starts[b] - starts[a]), tables, pmap, options)
             for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    return pl.concat(parts)


#: rows of graded params per derivation chunk (see derive_ctcae)
_CHUNK_ROWS = 1_000_000


def _derive_chunk(f: pl.DataFrame, tables: list[_Table], pmap: dict, options: CtcaeOptions) -> pl.DataFrame:
    """derive_ctcae on observations of whole subjects, already filtered and sorted."""
    low_terms = {p: e.term for (p, d), e in pmap.items() if d == "L"}
    high_terms = {p: e.term for (p, d), e in pmap.items() if d == "H"}
    before = pl.col("day") <= options.baseline_day if options.baseline_inclusive else pl.col("day") < options.baseline_day
    base = (
        f.filter(before & pl.col("value").is_not_null())
        .group_by(["subject_id", "param"], maintain_order=True)
        .last()
        .select(
            "subject_id", "param",
            pl.col("value").alias("BASE"), pl.col("lln").alias("_blln"), pl.col("uln").alias("_buln"),
            pl.col("_obs").alias("_bobs"), pl.col("src_file").alias("_bfile"), pl.col("src_row").alias("_brow"),
        )
    )
    f = f.join(base, on=["subject_id", "param"], how="left", nulls_equal=True, maintain_order="left").with_columns(
        pl.when(pl.col("_obs") == pl.col("_bobs")).then(pl.lit("Y")).otherwise(None).alias("ABLFL"),
        pl.when(pl.col("BASE").is_null()).then(None)
        .when(pl.col("_buln").is_not_null() & (pl.col("BASE") > pl.col("_buln"))).then(pl.lit("HIGH"))
        .when(pl.col("_blln").is_not_null() & (pl.col("BASE") < pl.col("_blln"))).then(pl.lit("LOW"))
        .when(pl.col("_blln").is_not_null() | pl.col("_buln").is_not_null()).then(pl.lit("NORMAL"))
        .otherwise(None).alias("BNRIND"),
        pl.when(pl.col("BASE").is_not_null() & (pl.col("BASE") != 0))
        .then((pl.col("value") - pl.col("BASE")) / pl.col("BASE") * 100).otherwise(None).alias("PCHG"),
        pl.col("param").replace_strict(low_terms, default=None, return_dtype=pl.String).alias("ATOXDSCL"),
        pl.col("param").replace_strict(high_terms, default=None, return_dtype=pl.String).alias("ATOXDSCH"),
    ).drop("_blln", "_buln")

    # both directions graded in one engine call; outcomes come back as small integer codes
    inputs = []
    for direction, term_col in (("L", "ATOXDSCL"), ("H", "ATOXDSCH")):
        inputs.append(
            f.with_row_index("_i").filter(pl.col(term_col).is_not_null()).select(
                "_i", pl.col(term_col).alias("term"), pl.lit(direction).alias("direction"),
                pl.col("value").alias("aval"), pl.col("lln").alias("anrlo"), pl.col("uln").alias("anrhi"),
                pl.col("BASE").alias("base"), pl.col("BNRIND").alias("bnrind"), pl.col("PCHG").alias("pchg"),
                pl.col("unit").alias("unit"),
            )
        )
    graded_in = pl.concat(inputs)
    codes, labels = _grade_codes(graded_in.drop("_i"), tables, options)
    n_low = inputs[0].height
    grade_of = np.array([-1 if g is None else g for g, _, _ in labels], dtype=np.int64)
    gid = {"L": np.full(f.height, -1, dtype=np.int64), "H": np.full(f.height, -1, dtype=np.int64)}
    idx = graded_in["_i"].to_numpy()
    code = codes.to_numpy()
    gid["L"][idx[:n_low]] = code[:n_low]
    gid["H"][idx[n_low:]] = code[n_low:]

    def grades(g: np.ndarray) -> pl.Series:
        out = np.where(g >= 0, grade_of[np.maximum(g, 0)], -1)
        return pl.Series(out, dtype=pl.Int64)

    f = f.with_columns(
        grades(gid["L"]).alias("ATOXGRL"), grades(gid["H"]).alias("ATOXGRH"),
        pl.Series("_gL", gid["L"], dtype=pl.Int64), pl.Series("_gH", gid["H"], dtype=pl.Int64),
    ).with_columns(
        # -1 marks "no term in this direction" (no code) or "not gradable" (grade None)
        pl.when(pl.col("ATOXGRL") >= 0).then(pl.col("ATOXGRL")).otherwise(None).alias("ATOXGRL"),
        pl.when(pl.col("ATOXGRH") >= 0).then(pl.col("ATOXGRH")).otherwise(None).alias("ATOXGRH"),
    )
    f = f.with_columns(combine_atoxgr().alias("ATOXGR"))
    dec = (
        pl.when(pl.col("ATOXGR") < 0).then(pl.lit("L"))
        .when(pl.col("ATOXGR") > 0).then(pl.lit("H"))
        .when(pl.col("ATOXDSCH").is_null()).then(pl.lit("L"))
        .when(pl.col("ATOXDSCL").is_null()).then(pl.lit("H"))
        .otherwise(None)
    )
    f = f.with_columns(dec.alias("direction"))
    # the deciding outcome (one code) or both ("L: ...; H: ..."): one string lookup per distinct key
    nlab = len(labels)
    key = (
        pl.when(pl.col("direction") == "L").then(pl.col("_gL"))
        .when(pl.col("direction") == "H").then(pl.col("_gH"))
        .otherwise(nlab + pl.col("_gL") * nlab + pl.col("_gH"))
    )
    f = f.with_columns(key.alias("_key"))
    rule_map: dict[int, str] = {}
    why_map: dict[int, str] = {}
    for k in f["_key"].unique().to_list():
        if k is None:
            continue
        if k < nlab:
            rule_map[k], why_map[k] = labels[k][1] or "", labels[k][2]
        else:
            a, b = divmod(k - nlab, nlab)
            rule_map[k] = f"L: {labels[a][1]}; H: {labels[b][1]}"
            why_map[k] = f"L: {labels[a][2]}; H: {labels[b][2]}"
    f = f.with_columns(
        pl.when(pl.col("direction") == "L").then(pl.col("ATOXDSCL"))
        .when(pl.col("direction") == "H").then(pl.col("ATOXDSCH")).otherwise(None).alias("term"),
        # few distinct texts over millions of rows: categorical (compares and prints as text)
        pl.col("_key").replace_strict(rule_map, default=None, return_dtype=pl.String).cast(pl.Categorical).alias("rule"),
        pl.col("_key").replace_strict(why_map, default=None, return_dtype=pl.String).cast(pl.Categorical)
        .alias("grade_reason"),
    )
    btox = f.filter(pl.col("ABLFL") == "Y").select("subject_id", "param", pl.col("ATOXGR").alias("BTOXGR"))
    f = f.join(btox, on=["subject_id", "param"], how="left", nulls_equal=True, maintain_order="left")
    sep = "\x1f"
    own = evidence_ref()
    other = pl.when(pl.col("BASE").is_not_null() & (pl.col("_bobs") != pl.col("_obs"))).then(
        evidence_ref("_bfile", "_brow"))
    joined = pl.concat_str([own, other], separator=sep, ignore_nulls=True)
    f = f.with_columns(
        pl.when(joined == "").then(pl.lit([], dtype=EVIDENCE)).otherwise(joined.str.split(sep)).alias("evidence"),
    )
    f = f.rename({"value": "AVAL", "unit": "AVALU", "lln": "ANRLO", "uln": "ANRHI"})
    return f.select(ADLB_COLUMNS)


def _opts_dict(options: CtcaeOptions) -> dict[str, Any]:
    return {f.name: getattr(options, f.name) for f in fields(options)}


def metadata_units(value: str | None, version: str) -> str | None:
    """SI/US from an admiral metadata name (atoxgr_criteria_ctcv5[_uscv]); checks the version."""
    if value is None or not value.strip():
        return None
    v = value.strip().lower()
    m = re.search(r"ctcv(\d+)", v)
    if m is None:
        if v in ("si", "us"):
            return v.upper()
        raise ValueError(f"metadata {value!r} does not name CTCAE criteria (e.g. atoxgr_criteria_ctcv5_uscv)")
    if m.group(1) != str(version).split(".")[0]:
        raise ValueError(f"metadata {value!r} is for another CTCAE version than {version}")
    return "US" if "uscv" in v else "SI"
