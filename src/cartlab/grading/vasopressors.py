"""One vocabulary of vasopressor names, shared by every CRS engine.

ASTCT 2019 counts vasopressors as *drugs* ("multiple vasopressors (excluding vasopressin)", Lee DW
et al., Biol Blood Marrow Transplant 2019;25:625, Table 1), so "norepinephrine" and "Noradrenaline "
are one drug and "argipressin" is vasopressin. :func:`resolve_agents` maps a recorded ``agent`` to its
canonical drug through ``criteria/vasopressor_equivalents.yaml`` (name, synonyms, brand names), after
:func:`normalize_agent` (case, surrounding/inner whitespace, ``_``/``-``, trade-mark signs).

A name the table does not know is counted as its own drug (never merged with another, never dropped)
and reported with an :class:`UnknownVasopressorWarning`; a vasopressor row without an agent counts as
one "unspecified vasopressor" and is reported too.

>>> import polars as pl
>>> resolve_agents(pl.DataFrame({"agent": ["Noradrenaline ", "LEVOPHED", "argipressin"]}))["vaso_agent"].to_list()
['norepinephrine', 'norepinephrine', 'vasopressin']
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from functools import cache
from typing import Any

import polars as pl

from cartlab.errors import CartlabWarning
from cartlab.grading.common import load_criteria

TABLE = "vasopressor_equivalents"
UNSPECIFIED = "unspecified vasopressor"

_DROP = re.compile(r"[®™]")
_SEP = re.compile(r"[\s_\-]+")


class UnknownVasopressorWarning(CartlabWarning):
    """A vasopressor name not in the vocabulary (counted as its own drug), or a row without a name.

    A :class:`~cartlab.errors.CartlabWarning`: an analysis lists it in ``analysis.json``."""


def normalize_agent(name: Any) -> str:
    """Lower case, trade-mark signs dropped, runs of space/``_``/``-`` as one space, trimmed."""
    if name is None:
        return ""
    return _SEP.sub(" ", _DROP.sub("", str(name)).lower()).strip()


def _normalize_expr(col: str) -> pl.Expr:
    return (pl.col(col).cast(pl.String).str.replace_all(r"[®™]", "").str.to_lowercase()
            .str.replace_all(r"[\s_\-]+", " ").str.strip_chars())


@dataclass(frozen=True)
class Vocabulary:
    """``lookup``: normalised name -> canonical drug; ``agents``: canonical drug -> its table row."""

    lookup: dict[str, str]
    agents: dict[str, dict[str, Any]]

    def is_vasopressin(self, agent: str) -> bool:
        return bool(self.agents.get(agent, {}).get("vasopressin"))


@cache
def vocabulary() -> Vocabulary:
    """The vocabulary of ``criteria/vasopressor_equivalents.yaml`` (names must not collide)."""
    lookup: dict[str, str] = {}
    agents: dict[str, dict[str, Any]] = {}
    for row in load_criteria(TABLE)["agents"]:
        canon = normalize_agent(row["name"])
        agents[canon] = row
        for name in [row["name"], *row.get("synonyms", []), *row.get("brand_names", [])]:
            key = normalize_agent(name)
            if lookup.get(key, canon) != canon:
                raise ValueError(f"{TABLE}.yaml: {name!r} names both {lookup[key]!r} and {canon!r}")
            lookup[key] = canon
    return Vocabulary(lookup, agents)


def resolve_agents(frame: pl.DataFrame, column: str = "agent", *, warn: bool = True) -> pl.DataFrame:
    """``frame`` with ``vaso_agent`` (canonical drug, else the normalised name, else
    ``"unspecified vasopressor"``), ``vaso_known`` and ``vaso_is_vasopressin`` added.

    Unknown or missing names are reported once per call with :class:`UnknownVasopressorWarning`.
    """
    from cartlab.io.value_text import MISSING_WORDS

    voc = vocabulary()
    norm = _normalize_expr(column)
    # a missing-value word (NA, N/A, unknown, none, #N/A) names no drug: an unspecified vasopressor, never a
    # second drug that would make grade 4 certain (review 45 folder F1)
    norm = pl.when(norm.is_in(sorted(MISSING_WORDS))).then(pl.lit("")).otherwise(norm)
    known = norm.replace_strict(voc.lookup, default=None, return_dtype=pl.String)
    vasopressin = [a for a in voc.agents if voc.is_vasopressin(a)]
    out = frame.with_columns(
        pl.coalesce(known, pl.when(norm != "").then(norm), pl.lit(UNSPECIFIED)).alias("vaso_agent"),
        known.is_not_null().alias("vaso_known"),
    ).with_columns(pl.col("vaso_agent").is_in(vasopressin).alias("vaso_is_vasopressin"))
    if warn:
        unknown = out.filter(~pl.col("vaso_known"))["vaso_agent"].unique().sort().to_list()
        names = [u for u in unknown if u != UNSPECIFIED]
        if names:
            warnings.warn(
                f"vasopressor name(s) not in the vocabulary ({TABLE}.yaml), each counted as a vasopressor of its "
                f"own toward 'multiple vasopressors' (CRS grade 4; an inotrope such as dobutamine recorded as "
                f"category vasopressor counts too): {', '.join(names)}", UnknownVasopressorWarning, stacklevel=2)
        if UNSPECIFIED in unknown:
            warnings.warn("vasopressor row(s) without an agent name (empty, or a missing-value word such as NA or "
                          f"unknown): counted together as one {UNSPECIFIED!r}", UnknownVasopressorWarning, stacklevel=2)
    return out
