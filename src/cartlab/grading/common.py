"""Conventions shared by the grading engines (CTCAE, CRS, ICANS, haematotoxicity).

* Criteria are data: YAML tables in ``cartlab/grading/criteria/`` with a ``version`` and a
  ``citation`` for every rule row; :func:`load_criteria` reads them.
* Engines are pure functions ``derive_*(study_or_frames, options) -> polars.DataFrame``.
* Every derived grade is traceable: the output carries ``rule`` (the id of the criteria row that
  fired), ``reason`` (a human sentence) and ``evidence`` (a list of ``"<file>:<row>"`` references to
  the source rows that produced it, built with :func:`evidence_ref`).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

import polars as pl
import yaml

from cartlab.provenance import EVIDENCE, evidence_ref, unique_refs  # noqa: F401  (one definition, re-exported)


@lru_cache(maxsize=None)
def load_criteria(name: str, package: str = "cartlab.grading") -> dict[str, Any]:
    """A criteria table shipped in ``<package>/criteria/<name>.yaml`` (parsed YAML), by default
    ``cartlab/grading/criteria``; ``cartlab.response`` keeps its tables the same way."""
    path = resources.files(package).joinpath("criteria", f"{name}.yaml")
    if not path.is_file():
        raise FileNotFoundError(f"no criteria table {name!r} (looked for {path})")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key in ("version", "citation"):
        if key not in data:
            raise ValueError(f"criteria table {name!r} lacks {key!r}")
    return data


# ---------------------------------------------------------------------------------------------
# A tiny rule language shared by the tables: a rule is
#   {id, grade, when: [{feature, op, value}, ...], text, citation}
# ``value`` may name an option with a leading "$" (``$sbp_cutoff``). All conditions must hold.

_OPS = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def _value(v: Any, options: dict[str, Any]) -> Any:
    if isinstance(v, str) and v.startswith("$"):
        key = v[1:]
        if key not in options:
            raise KeyError(f"rule refers to unknown option {key!r}")
        val = options[key]
        return pl.col(val[1:]) if isinstance(val, str) and val.startswith("@") else val
    return v


def condition(cond: dict[str, Any], options: dict[str, Any]) -> pl.Expr:
    """A polars boolean expression for one ``{feature, op, value}`` condition (null -> False)."""
    op = _OPS.get(cond["op"])
    if op is None:
        raise ValueError(f"unknown operator {cond['op']!r} in {cond}")
    return op(pl.col(cond["feature"]), _value(cond["value"], options)).fill_null(False)


def rule_text(rule: dict[str, Any], options: dict[str, Any]) -> str:
    """The rule's text with ``{option}`` placeholders filled in."""
    return rule.get("text", rule["id"]).format(**{k: v for k, v in options.items()})


def domain_grade(rules: list[dict[str, Any]], options: dict[str, Any], name: str) -> list[pl.Expr]:
    """Expressions ``<name>_grade`` (Int64, 0 when no rule holds) and ``<name>_rule`` (rule id).

    Rules are tried from the highest grade down; the first whose conditions all hold wins.
    """
    ordered = sorted(rules, key=lambda r: -int(r["grade"]))
    grade: pl.Expr = pl.lit(0, dtype=pl.Int64)
    rid: pl.Expr = pl.lit(None, dtype=pl.String)
    for r in reversed(ordered):  # build so that the highest grade is checked first
        cond = pl.all_horizontal([condition(c, options) for c in r["when"]])
        grade = pl.when(cond).then(pl.lit(int(r["grade"]), dtype=pl.Int64)).otherwise(grade)
        rid = pl.when(cond).then(pl.lit(r["id"])).otherwise(rid)
    return [grade.alias(f"{name}_grade"), rid.alias(f"{name}_rule")]


def rule_texts(table: dict[str, Any], domains: tuple[str, ...], options: dict[str, Any]) -> dict[str, str]:
    """Map rule id -> rendered text, for every rule of the given domains of a table."""
    return {r["id"]: rule_text(r, options) for d in domains for r in table.get(d, [])}


def expand_days(frame: pl.DataFrame, start: str = "start_day", end: str = "end_day") -> pl.DataFrame:
    """One row per calendar day an interval covers (start..end inclusive; no end = start only)."""
    lo = pl.col(start).floor().cast(pl.Int64)
    hi = pl.coalesce(pl.col(end), pl.col(start)).floor().cast(pl.Int64)
    return (
        frame.filter(pl.col(start).is_not_null())
        .with_columns(pl.int_ranges(lo, pl.max_horizontal(lo, hi) + 1).alias("d"))
        .explode("d")
    )
