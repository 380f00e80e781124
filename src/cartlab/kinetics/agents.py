"""Which dosing rows are CAR-T infusions: one definition for the kinetics engines and the figures."""

from __future__ import annotations

import re

import polars as pl

__all__ = ["car_t_agent_expr", "is_car_t_agent"]


def is_car_t_agent(agent: str | None) -> bool:
    """``CAR-T``, ``CD7 CAR-T``, ``car_t``, ``tisagenlecleucel``, ``axicabtagene ciloleucel`` ...

    >>> [is_car_t_agent(a) for a in ("CD7 CAR-T", "tisagenlecleucel", "fludarabine", None)]
    [True, True, False, False]
    """
    a = re.sub(r"[\s_\-]", "", (agent or "").lower())
    return "cart" in a or a.endswith("leucel") or "cabtagene" in a


def car_t_agent_expr(agent: pl.Expr) -> pl.Expr:
    """:func:`is_car_t_agent` as a polars expression (null agent -> False), for whole columns."""
    a = agent.fill_null("").str.to_lowercase().str.replace_all(r"[\s_\-]", "")
    return a.str.contains("cart", literal=True) | a.str.ends_with("leucel") | a.str.contains("cabtagene", literal=True)
