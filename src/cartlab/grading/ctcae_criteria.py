"""The CTCAE criteria tables compiled once per options: terms, their rule sets (criteria language,
:mod:`cartlab.criteria`), the reasons in words and the dispatch of a (term, direction, unit, unit
system) to the entry that grades it.

A table (``criteria/ctcae_v5.yaml``; see the comment at its top) lists ``terms`` (term, direction,
unit check, cartlab params) and, under each term's id, a rule set: the first rule whose conditions
hold decides the grade, none holding is grade 0 (:class:`cartlab.criteria.Decision` with
``otherwise_grade=0``; a comparison with a missing operand is unknown, so its rule does not fire).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from cartlab.criteria import CriteriaTable, Decision, decision, describe, gated, load_table, parse_table
from cartlab.criteria.model import AllOf, AnyOf, Column, Leaf, Missing, Not, Rule
from cartlab.grading.ctcae_options import CtcaeOptions
from cartlab.grading.ctcae_units import criteria_names

__all__ = ["CompiledTable", "Entry", "clinical_clauses", "compile_criteria", "ctcae_terms", "derived_params", "dispatch", "indicators",
           "intervention_terms", "key", "missing_mask", "param_terms", "precise_missing", "tables"]

#: the columns the rules read (the working frame of grade_labs)
SCHEMA = {"aval": pl.Float64, "anrlo": pl.Float64, "anrhi": pl.Float64, "base": pl.Float64, "pchg": pl.Float64,
          "bnrind": pl.String}
#: (grade, rule id, reason) of an outcome
Label = tuple[int | None, str | None, str]


def key(s: Any) -> str | None:
    """Upper case without surrounding blanks; None when empty."""
    if s is None:
        return None
    s = str(s).strip().upper()
    return s or None


@dataclass(frozen=True)
class Entry:
    """One term and direction of a table, its rules (as the options keep them) and their labels."""

    table: str
    entry_id: str
    term: str
    term_key: str
    direction: str
    unit: str | None
    unit_key: str | None
    params: tuple[str, ...]
    #: per rule kept by the options, in order: (grade, "<table>:<entry>:<rule>", reason)
    labels: tuple[Label, ...]
    #: the outcome when no rule holds (grade 0)
    zero: Label


@dataclass(frozen=True)
class CompiledTable:
    name: str
    version: str
    units: str
    entries: tuple[Entry, ...]
    #: (TERM, DIR) -> entries (unit-specific and unit-free)
    index: Mapping[tuple[str, str], tuple[Entry, ...]]
    #: the table in the criteria language (comparisons rounded to the options' signif_digits)
    model: CriteriaTable
    #: the resolved values of the table's options (``defaults``)
    options: Mapping[str, Any]
    #: (TERM, DIR) -> ``terms_graded_by_intervention`` entry (terms without lab criteria)
    by_intervention: Mapping[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    #: ``derived_params`` entries (derive_ctcae; the engine option ``calcium`` picks by ``option``)
    derived: tuple[Mapping[str, Any], ...] = ()

    def decision(self, entry: Entry, high: Sequence[str], low: Sequence[str]) -> Decision:
        """The entry's rule set compiled for these BNRIND indicators (compiled once, cached)."""
        opts = {**self.options, "high_indicator": tuple(high), "low_indicator": tuple(low)}
        return decision(self.model, entry.entry_id, opts, otherwise_grade=0, schema=SCHEMA)


# ---------------------------------------------------------------------------------------------
# the reasons: a rule's conditions in words ("grade 3: AVAL < 1 10^9/L")


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) < 1e6 else f"{v:.6g}"


def _indicator(value: Any) -> str | None:
    return {"$high_indicator": "high", "$low_indicator": "low"}.get(value) if isinstance(value, str) else None


def _not_abnormal(c: Any) -> str | None:
    """"high"/"low" when ``c`` is {any: [{missing: bnrind}, {feature: bnrind, op: not_in, value:
    $<which>_indicator}]} (baseline not abnormal; a missing BNRIND counts as not abnormal)."""
    if isinstance(c, AnyOf) and len(c.any) == 2 and isinstance(c.any[0], Missing) and c.any[0].features == ("bnrind",):
        leaf = c.any[1]
        if isinstance(leaf, Leaf) and leaf.feature == "bnrind" and leaf.op == "not_in":
            return _indicator(leaf.value)
    return None


def _words(c: Any, unit: str | None) -> str:
    """CTCAE wording of a condition; shapes other than the CTCAE ones fall back to the language's."""
    if isinstance(c, Missing):
        return " or ".join(f.upper() for f in c.features) + " missing"
    if isinstance(c, Leaf) and c.feature == "bnrind" and c.op == "in" and _indicator(c.value):
        which = _indicator(c.value)
        return f"baseline abnormal {which} (BNRIND in {which}_indicator)"
    which = _not_abnormal(c)
    if which:
        return f"baseline not abnormal {which} (BNRIND not in {which}_indicator)"
    if isinstance(c, Not) and _not_abnormal(c.not_):  # the exact complement: FALSE when BNRIND is missing
        which = _not_abnormal(c.not_)
        return f"baseline abnormal {which} (BNRIND in {which}_indicator)"
    if isinstance(c, Leaf) and c.feature in ("aval", "pchg") and c.op in ("<", "<=", ">", ">="):
        u = f" {unit}" if unit and c.feature == "aval" else ("%" if c.feature == "pchg" else "")
        if isinstance(c.value, Column):
            ref = c.value.column.upper()
            rhs = ref if c.value.factor == 1 else f"{_fmt(float(c.value.factor))} x {ref}"
            if c.value.offset:
                rhs += f" {'+' if c.value.offset > 0 else '-'} {_fmt(abs(float(c.value.offset)))}{u}"
        elif isinstance(c.value, (int, float)) and not isinstance(c.value, bool):
            rhs = f"{_fmt(float(c.value))}{u}"
        else:
            return describe(c)
        return f"{c.feature.upper()} {c.op} {rhs}"
    return describe(c)


#: bits of the "which inputs are missing on this row" mask read by :func:`precise_missing`
MISSING_BITS = (("AVAL", 1), ("ANRLO", 2), ("ANRHI", 4))
_EITHER_MISSING = re.compile(r"\b([A-Z]+(?: or [A-Z]+)+) missing\b")


def missing_mask(aval: pl.Expr, anrlo: pl.Expr, anrhi: pl.Expr) -> pl.Expr:
    """Per row, which of AVAL, ANRLO, ANRHI are missing, as the bit mask :func:`precise_missing` reads."""
    return (aval.is_null().cast(pl.Int64) + 2 * anrlo.is_null().cast(pl.Int64)
            + 4 * anrhi.is_null().cast(pl.Int64))


def precise_missing(reason: str, mask: int) -> str:
    """A rule's reason "AVAL or ANRHI missing" (the rule fires when either is) said for one row: the
    input(s) that row actually lacks ("ANRHI missing"); other reasons unchanged."""
    def name(m: re.Match) -> str:
        here = [f for f in m.group(1).split(" or ") if any(f == n and mask & b for n, b in MISSING_BITS)]
        return (" and ".join(here) if here else m.group(1)) + " missing"

    return _EITHER_MISSING.sub(name, reason)


#: what an option-gated rule assumes, said in its reason (entry:rule id -> words); the option and its
#: value follow. A gated rule not listed here names only the option.
ASSUMPTIONS = {
    "hyponatremia:g3.symptomatic": "125-129 mmol/L graded 3 assuming symptoms",
    "hyponatremia:g2.asymptomatic": "125-129 mmol/L graded 2 assuming no symptoms",
    "hypokalemia:g2.symptomatic": "<LLN - 3.0 mmol/L graded 2 assuming symptoms",
    "hypokalemia:g1.asymptomatic": "<LLN - 3.0 mmol/L graded 1 assuming no symptoms",
    "hyperuricemia:g3.consequences": ">ULN graded 3 assuming physiologic consequences",
    "hyperuricemia:g1.no_consequences": ">ULN graded 1 assuming no physiologic consequences",
    "lipase_increased:g4.symptomatic": "graded assuming signs or symptoms",
    "lipase_increased:g3.symptomatic": "graded assuming signs or symptoms",
    "lipase_increased:g3.asymptomatic": "graded assuming no signs or symptoms",
    "amylase_increased:g4.symptomatic": "graded assuming signs or symptoms",
    "amylase_increased:g3.symptomatic": "graded assuming signs or symptoms",
    "amylase_increased:g3.asymptomatic": "graded assuming no signs or symptoms",
    "inr_increased:g3.xbase": "graded against baseline assuming anticoagulation",
    "inr_increased:g2.xbase": "graded against baseline assuming anticoagulation",
    "inr_increased:g1.xbase": "graded against baseline assuming anticoagulation",
}


def _option_value(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def _assumption(rule: Rule) -> str:
    """``"; <what it assumes> (option ctcae.<name>=<value>)"`` for a rule kept only under an option
    (audit s27 item 8: the reason names the assumption that set the grade), else ``""``."""
    if not rule.option:
        return ""
    opts = ", ".join(f"ctcae.{k}={_option_value(v)}" for k, v in rule.option.items())
    what = ASSUMPTIONS.get(rule.id)
    return f"; {what} (option {opts})" if what else f" (option {opts})"


def _reason(rule: Rule, unit: str | None) -> str:
    text = " and ".join(_words(c, unit) for c in rule.when) + _assumption(rule)
    return f"not gradable: {text}" if rule.grade is None else f"grade {rule.grade}: {text}"


# ---------------------------------------------------------------------------------------------
# compiling a table


def _digits(c: Any, n: int) -> Any:
    """A condition with its comparisons rounded to ``n`` significant digits (those that round)."""
    if isinstance(c, Leaf):
        return c if c.signif is None else c.model_copy(update={"signif": n})
    if isinstance(c, (AllOf, AnyOf)):
        k = "all" if isinstance(c, AllOf) else "any"
        return c.model_copy(update={k: tuple(_digits(x, n) for x in getattr(c, k))})
    if isinstance(c, Not):
        return c.model_copy(update={"not_": _digits(c.not_, n)})
    return c


def _lab_max(rules: Sequence[Rule]) -> int | None:
    """The highest grade an entry's rules (as the options keep them) give from lab values."""
    return max((r.grade for r in rules if r.grade is not None), default=None)


def _clinical_only(text: Any, rules: Sequence[Rule]) -> str:
    """The reason's note on the grades of a term that no rule gives (session 34, review 34 F6): the
    CTCAE text of every grade 1-4 above the highest lab-derived grade that CTCAE defines (its text is
    not "-"), e.g. Anemia "; grade 4 (Life-threatening consequences; urgent intervention indicated)
    needs clinical findings: not derived from labs". Said on the rules of the highest lab grade only;
    grade 5 (death) is in the documentation, not in every reason."""
    top = _lab_max(rules)
    if not isinstance(text, Mapping) or top is None:
        return ""
    above = [(g, str(text.get(f"grade_{g}", "-")).strip()) for g in range(top + 1, 5)]
    above = [(g, t) for g, t in above if t and t != "-"]
    if not above:
        return ""
    words = ", ".join(f"{g} ({t})" for g, t in above)
    return f"; grade{'s' if len(above) > 1 else ''} {words} need{'' if len(above) > 1 else 's'} clinical findings: " \
        "not derived from labs"


#: a clause of a grade's CTCAE text that is clinical (no number, comparison, LLN/ULN or baseline):
#: "transfusion indicated", "intervention initiated", "hospitalization indicated"
_LAB_CLAUSE = re.compile(r"\d|[<>]|\bULN\b|\bLLN\b|baseline", re.IGNORECASE)


def clinical_clauses(text: Any) -> dict[int, list[str]]:
    """Per grade 1-4 the clinical clauses of its CTCAE text: the ";"-separated alternatives that are
    not lab bounds (CTCAE v5.0: ";" separates alternatives, each a sufficient route to the grade;
    review 39 R39-2). E.g. Anemia {3: ["transfusion indicated"], 4: ["Life-threatening consequences",
    "urgent intervention indicated"]}."""
    if not isinstance(text, Mapping):
        return {}
    out: dict[int, list[str]] = {}
    for g in range(1, 5):
        parts = [c.strip() for c in str(text.get(f"grade_{g}", "-")).split(";")]
        clin = [c for c in parts if c and c != "-" and not _LAB_CLAUSE.search(c)]
        if clin:
            out[g] = clin
    return out


def _clinical_raise(text: Any, grade: int | None, rules: Sequence[Rule]) -> str:
    """The reason's note on a lab grade below the term's highest lab-derived grade whose higher
    grades have a clinical clause (session 39, review 39 R39-2): the lab value gives at least this
    grade and CTCAE's clinical alternative would raise it, e.g. Anemia grade 2 "; a clinical clause
    can raise this (not derived from labs): to grade 3 if transfusion indicated, to grade 4 if
    Life-threatening consequences or urgent intervention indicated". The grade is not changed. The
    highest lab grade keeps :func:`_clinical_only`; grade 0 and not-gradable outcomes get no note."""
    top = _lab_max(rules)
    if grade is None or grade < 1 or top is None or grade >= top:
        return ""
    clauses = clinical_clauses(text)
    above = [f"to grade {g} if {' or '.join(clauses[g])}" for g in range(grade + 1, 5) if g in clauses]
    return f"; a clinical clause can raise this (not derived from labs): {', '.join(above)}" if above else ""


_ROUNDED: dict[tuple[int, int], tuple[CriteriaTable, CriteriaTable]] = {}


def _rounded(model: CriteriaTable, n: int) -> CriteriaTable:
    """The table with every rounded comparison at ``n`` digits (the option ``signif_digits``).

    Workaround, local to CTCAE: a leaf's ``signif`` is a number in the criteria language, not an
    option (``$signif_digits``), so a non-default precision is a copy of the rules."""
    if n == model.defaults.get("signif_digits"):
        return model
    hit = _ROUNDED.get((id(model), n))
    if hit is None or hit[0] is not model:
        sets = {name: tuple(r.model_copy(update={"when": tuple(_digits(c, n) for c in r.when)}) for r in rules)
                for name, rules in model.rule_sets.items()}
        hit = _ROUNDED[(id(model), n)] = (model, model.model_copy(update={"rule_sets": sets}))
    return hit[1]


def _compile(model: CriteriaTable, options: Mapping[str, Any]) -> CompiledTable:
    name = model.name
    terms = model.extra("terms")
    ids = [str(e["id"]) for e in terms]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"{name}: duplicate entry id(s) {dupes}")
    if set(ids) != set(model.rule_sets):
        raise ValueError(f"{name}: terms without rules {sorted(set(ids) - set(model.rule_sets))}, rules without "
                         f"a term {sorted(set(model.rule_sets) - set(ids))}")
    model = _rounded(model, int(options["signif_digits"]))
    entries = []
    for e, eid in zip(terms, ids):
        direction = str(e["direction"]).upper()
        if direction not in ("L", "H"):
            raise ValueError(f"{name}:{eid}: direction must be L or H")
        unit = e.get("unit")
        labels = []
        kept = gated(model.rule_set(eid), options)
        top = _clinical_only(e.get("ctcae"), kept)
        for r in kept:
            if r.grade is not None and not 0 <= r.grade <= 4:
                raise ValueError(f"{name}:{r.id}: grade must be 0-4 or null")
            note = top if r.grade == _lab_max(kept) else _clinical_raise(e.get("ctcae"), r.grade, kept)
            labels.append((r.grade, f"{name}:{r.id}", _reason(r, unit) + note))
        entries.append(Entry(
            table=name, entry_id=eid, term=str(e["term"]), term_key=key(e["term"]), direction=direction,
            unit=unit, unit_key=key(unit) if unit else None, params=tuple(str(p).upper() for p in e.get("params") or ()),
            labels=tuple(labels), zero=(0, f"{name}:{eid}:g0", "grade 0: no criterion for grade 1-4 met"),
        ))
    index: dict[tuple[str, str], list[Entry]] = {}
    for ent in entries:
        index.setdefault((ent.term_key, ent.direction), []).append(ent)
    for (term, d), ents in index.items():
        units = [x.unit_key for x in ents]
        if len(set(units)) != len(units):
            raise ValueError(f"{name}: term {term!r} ({d}) has two entries for the same unit")
    extra = model.model_extra or {}
    by_intervention = {(key(e["term"]), str(e["direction"]).upper()): e
                       for e in extra.get("terms_graded_by_intervention") or ()}
    return CompiledTable(name, str(model.version), str(model.extra("units")), tuple(entries),
                         {k: tuple(v) for k, v in index.items()}, model,
                         {k: options[k] for k in model.defaults}, by_intervention,
                         tuple(extra.get("derived_params") or ()))


_COMPILED: dict[tuple, CompiledTable] = {}


def compile_criteria(criteria: str | Mapping[str, Any], options: CtcaeOptions | None = None) -> CompiledTable:
    """One criteria table (a shipped name or a loaded mapping), validated and compiled for the
    options (cached for shipped tables)."""
    options = options or CtcaeOptions()
    if isinstance(criteria, str):
        opts = options.resolved(criteria)
        k = (criteria, repr(sorted(opts.items())))
        if k not in _COMPILED:
            _COMPILED[k] = _compile(load_table(criteria), opts)
        return _COMPILED[k]
    data = dict(criteria)
    name = str(data.pop("name", f"ctcae_v{data.get('version', '')}"))
    return _compile(parse_table(data, f"{name}.yaml", name), options.resolved({**data, "name": name}))


def tables(criteria: Any, options: CtcaeOptions) -> list[CompiledTable]:
    """The compiled tables a grading uses: ``criteria`` None (the tables of ``options.version`` and
    ``options.units``), a name, a mapping, a compiled table or a sequence of them."""
    if criteria is None:
        items: list[Any] = criteria_names(options.version, options.units)
    elif isinstance(criteria, (str, Mapping, CompiledTable)):
        items = [criteria]
    else:
        items = list(criteria)
    return [c if isinstance(c, CompiledTable) else compile_criteria(c, options) for c in items]


# ---------------------------------------------------------------------------------------------
# dispatch: which entry grades a (term, direction, unit, units-system) combination


@dataclass(frozen=True)
class Dispatch:
    entry: Entry | None
    table: CompiledTable | None
    rule_id: str | None  # when entry is None
    reason: str  # when entry is None


def dispatch(tabs: Sequence[CompiledTable], term: str | None, direction: str | None, unit: str | None,
             system: str | None, version: str) -> Dispatch:
    t, d, u = key(term), key(direction), key(unit)
    if t is None:
        return Dispatch(None, None, None, "not gradable: no CTCAE term")
    if d not in ("L", "H"):
        return Dispatch(None, None, None, f"not gradable: direction {direction!r} is not L or H")
    usable = [tb for tb in tabs if system is None or tb.units == system]
    if not usable:
        return Dispatch(None, None, None, f"not gradable: no {system} criteria table selected")
    known: list[Entry] = []
    for tb in usable:
        cands = tb.index.get((t, d), ())
        known.extend(cands)
        for ent in cands:
            if ent.unit_key is not None and ent.unit_key == u:
                return Dispatch(ent, tb, None, "")
        for ent in cands:
            if ent.unit_key is None:
                return Dispatch(ent, tb, None, "")
    if not known:
        for tb in usable:
            spec = tb.by_intervention.get((t, d))
            if spec is not None:
                return Dispatch(None, None, f"{tb.name}:{spec['id']}:by_intervention",
                                f"not gradable: CTCAE {version} grades {spec['term']} by intervention, not by a lab "
                                "value: not gradable from labs")
        names = "/".join(tb.name for tb in usable)
        return Dispatch(None, None, None,
                        f"not gradable: {term.strip()!r} is not a CTCAE {version} term with direction {d} ({names})")
    expected = "; ".join(f"{e.unit} ({e.table})" for e in known)
    first = known[0]
    rid = f"{first.table}:{first.entry_id}:unit_check"
    if u is None:
        return Dispatch(None, None, rid, f"not gradable: unit missing, the criteria need {expected}")
    params = sorted({p for e in known for p in e.params})
    hint = (f" (convert the value to that unit; `cartlab ctcae` converts it when the row names the parameter "
            f"({'/'.join(params)}) instead of the term)") if params else ""
    return Dispatch(None, None, rid,
                    f"not gradable: unit {unit.strip()!r} does not match the criteria unit {expected}{hint}")


def indicators(raw: Any, default: Sequence[str]) -> list[str]:
    """A row's own indicator values ("|"- or ","-separated), else the option's."""
    if raw is None or str(raw).strip() == "":
        return list(default)
    return [p.strip() for p in re.split(r"[|,]", str(raw)) if p.strip()]


def param_terms(tabs: Sequence[CompiledTable]) -> dict[tuple[str, str], Entry]:
    """(PARAM, DIR) -> the entry grading that param in that direction (first table wins)."""
    out: dict[tuple[str, str], Entry] = {}
    for tb in tabs:
        local: dict[tuple[str, str], str] = {}
        for ent in tb.entries:
            for p in ent.params:
                k = (p, ent.direction)
                if k in local and local[k] != ent.term_key:
                    raise ValueError(f"{tb.name}: param {p} maps to two terms in direction {ent.direction}")
                local[k] = ent.term_key
                out.setdefault(k, ent)
    return out


def intervention_terms(tabs: Sequence[CompiledTable]) -> dict[tuple[str, str], str]:
    """(PARAM, DIR) -> the term graded by intervention that the param would map to (first table wins)."""
    out: dict[tuple[str, str], str] = {}
    for tb in tabs:
        for (_, d), spec in tb.by_intervention.items():
            for p in spec.get("params") or ():
                out.setdefault((str(p).upper(), d), str(spec["term"]))
    return out


def derived_params(tabs: Sequence[CompiledTable], options: CtcaeOptions) -> list[Mapping[str, Any]]:
    """The tables' ``derived_params`` entries whose ``option`` the (engine) options meet."""
    extra = dict(options.extra)
    out = []
    for tb in tabs:
        for spec in tb.derived:
            if all(getattr(options, k, extra.get(k)) == v for k, v in (spec.get("option") or {}).items()):
                out.append(spec)
    return out


def ctcae_terms(version: str = "5.0", units: str = "auto", options: CtcaeOptions | None = None) -> pl.DataFrame:
    """Every term the criteria grade: ``term``, ``direction`` (L/H), ``params`` (cartlab parameter
    codes that map to it), ``unit`` (the unit the entry requires, if any) and ``table``."""
    opts = options or CtcaeOptions(version=version, units=units)
    rows = [(e.term, e.direction, ", ".join(e.params), e.unit, tb.name)
            for tb in tables(None, opts) for e in tb.entries]
    return pl.DataFrame(rows, schema={"term": pl.String, "direction": pl.String, "params": pl.String,
                                      "unit": pl.String, "table": pl.String}, orient="row").unique(maintain_order=True)
