"""Lymphodepletion agents: their other names and the lymphodepletion course of a subject.

One alias table (``ld_agents.yaml`` beside this module; a citation and status per row) names the
lymphodepletion agents and the spellings a ``doses.csv`` agent may use for them ("fludarabine
phosphate", "Fludara", "Flu", "Cytoxan", "Treanda", ...); matching is case- and space-blind. Every
engine that looks for lymphodepletion (CAR-HEMATOTOX, EASIX ``pre_ld``) reads doses through it, and
``cartlab validate`` warns about a dose agent it does not know within days -14 to -1 (review s38
A1: "fludarabine phosphate" was not lymphodepletion and the baseline became a post-lymphodepletion
value). The scores are "determined prior to lymphodepleting chemotherapy (e.g. day -5)" (EMCL
CAR-HEMATOTOX score page).

>>> canonical_agent("Fludarabine  Phosphate"), canonical_agent("CTX"), canonical_agent("R-GemOx")
('fludarabine', 'cyclophosphamide', 'r-gemox')
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path

import polars as pl
import yaml

from cartlab.grading.hemato_common import fmt_expr
from cartlab.kinetics.agents import car_t_agent_expr
from cartlab.model import Study
from cartlab.provenance import evidence_ref

__all__ = ["agent_key", "aliases", "canonical_agent", "canonical_agent_expr", "known_agents", "lymphodepletion_days",
           "unknown_dose_agents"]

_SID = "subject_id"
_TABLE = Path(__file__).with_name("ld_agents.yaml")


def agent_key(name: str) -> str:
    """The matching key of an agent name: lower case, no white space."""
    return "".join(str(name).lower().split())


@functools.cache
def _table() -> dict:
    return yaml.safe_load(_TABLE.read_text(encoding="utf-8"))


@functools.cache
def aliases() -> dict[str, str]:
    """Matching key -> agent, for every agent of the table and each of its aliases."""
    out: dict[str, str] = {}
    for row in _table()["agents"]:
        out[agent_key(row["agent"])] = row["agent"]
        for a in row.get("aliases") or []:
            out[agent_key(a["name"])] = row["agent"]
    return out


def known_agents() -> tuple[str, ...]:
    """The lymphodepletion agents of the table (canonical names)."""
    return tuple(row["agent"] for row in _table()["agents"])


def canonical_agent(name: str) -> str:
    """The table's agent for ``name`` (an alias, any case or spacing), else ``name`` in lower case, trimmed."""
    return aliases().get(agent_key(name), " ".join(str(name).lower().split()))


def canonical_agent_expr(agent: pl.Expr) -> pl.Expr:
    """:func:`canonical_agent` over a column (null stays null)."""
    low = agent.cast(pl.String).str.to_lowercase().str.strip_chars().str.replace_all(r"\s+", " ")
    table = aliases()
    return low.str.replace_all(r"\s+", "").replace_strict(list(table), list(table.values()), default=low,
                                                          return_dtype=pl.String)


def _span(lo: pl.Expr, hi: pl.Expr) -> pl.Expr:
    return (pl.when(lo == hi).then(pl.format("day {}", fmt_expr(lo, 6)))
            .otherwise(pl.format("days {} to {}", fmt_expr(lo, 6), fmt_expr(hi, 6))))


def lymphodepletion_days(study: Study, agents: Iterable[str], window: tuple[float, float],
                         max_gap: float) -> pl.DataFrame:
    """Per subject (with any dose row): ``ld_day`` (the first dose day of the lymphodepletion course),
    ``ld_last`` (its last dose day), ``ld_refs`` (the first day's dose rows) and ``ld_other`` (the doses
    within ``window`` not read as lymphodepletion - agent neither of ``agents`` nor CAR-T -, as text:
    "R-GemOx on day -4", null when none).

    The course: the doses of ``agents`` (by :func:`canonical_agent`) on days up to ``window``'s end,
    split where a gap is longer than ``max_gap`` days; of the runs with a dose within ``window`` (days
    relative to the CAR-T infusion, day 0) the last, taken whole - a run that starts before the
    window's edge is not cut there (review s38 B4) - and a bridging cyclophosphamide weeks earlier is
    not lymphodepletion (EMCL score page: "determined prior to lymphodepleting chemotherapy (e.g. day -5)")."""
    names = sorted({canonical_agent(a) for a in agents})
    lo, hi = (float(x) for x in window)
    d = study.doses.filter(pl.col("day").is_not_null() & (pl.col("day") <= hi)).with_columns(
        canonical_agent_expr(pl.col("agent")).alias("_agent"))
    doses = (d.filter(pl.col("_agent").is_in(names)).with_columns(evidence_ref().alias("ref")).sort(_SID, "day"))
    # a new course starts after a gap longer than max_gap days; the last with a dose in the window counts
    doses = doses.with_columns(((pl.col("day") - pl.col("day").shift(1).over(_SID)) > float(max_gap))
                               .fill_null(False).cast(pl.Int64).cum_sum().over(_SID).alias("_course"))
    doses = doses.with_columns(pl.col("day").is_between(lo, hi).any().over(_SID, "_course").alias("_in"))
    doses = doses.filter(pl.col("_in") & (pl.col("_course") == pl.col("_course").filter(pl.col("_in")).max().over(_SID)))
    first = pl.col("day").min()
    ld = doses.group_by(_SID, maintain_order=True).agg(
        first.cast(pl.Float64).alias("ld_day"), pl.col("day").max().cast(pl.Float64).alias("ld_last"),
        pl.col("ref").filter(pl.col("day") == first).drop_nulls().unique(maintain_order=True).alias("ld_refs"),
    )
    other = (d.filter(pl.col("day").is_between(lo, hi) & ~pl.col("_agent").is_in(names)
                      & ~car_t_agent_expr(pl.col("agent")))
             .group_by(_SID, pl.col("agent").cast(pl.String).str.strip_chars().alias("_a"))
             .agg(pl.col("day").min().alias("_lo"), pl.col("day").max().alias("_hi"))
             .sort(_SID, "_lo", "_a")
             .group_by(_SID, maintain_order=True)
             .agg(pl.format("{} on {}", pl.col("_a"), _span(pl.col("_lo"), pl.col("_hi"))).str.join(", ").alias("ld_other")))
    subjects = pl.concat([ld.select(_SID), other.select(_SID)]).unique(maintain_order=True)
    return subjects.join(ld, on=_SID, how="left").join(other, on=_SID, how="left")


def unknown_dose_agents(doses: pl.DataFrame, window: tuple[float, float] = (-14.0, -1.0)) -> pl.DataFrame:
    """Dose rows within ``window`` whose agent is neither an agent of the alias table nor CAR-T:
    ``subject_id``, ``agent``, ``day`` and the other columns of ``doses`` (for ``cartlab validate``)."""
    if doses.is_empty() or not {"agent", "day"} <= set(doses.columns):
        return doses.clear()
    day = pl.col("day").cast(pl.Float64, strict=False)
    return doses.filter(day.is_between(*window) & pl.col("agent").is_not_null()
                        & ~canonical_agent_expr(pl.col("agent")).is_in(list(known_agents()))
                        & ~car_t_agent_expr(pl.col("agent").cast(pl.String)))
