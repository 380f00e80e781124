"""Which dosing rows are CAR-T infusions: one definition for the kinetics engines and the figures."""

from __future__ import annotations

import functools
import re
from importlib import resources

import polars as pl
import yaml

__all__ = ["car_t_agent_expr", "is_car_t_agent"]


@functools.cache
def product_names() -> frozenset[str]:
    """Brand, INN and short names of the marketed CAR-T products (``car_t_products.yaml``), normalised."""
    data = yaml.safe_load(resources.files("cartlab.kinetics").joinpath("car_t_products.yaml").read_text("utf-8"))
    return frozenset(_norm(p[k]) for p in data["products"] for k in ("brand", "inn", "short") if p.get(k))


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name.lower())


def is_car_t_agent(agent: str | None) -> bool:
    """``CAR-T``, ``CD7 CAR-T``, ``car_t``, ``tisagenlecleucel``, ``axicabtagene ciloleucel``, and the
    marketed products by brand or short name (``Kymriah``, ``axi-cel``; ``car_t_products.yaml``).

    >>> [is_car_t_agent(a) for a in ("CD7 CAR-T", "tisagenlecleucel", "Kymriah", "axi-cel", "fludarabine", None)]
    [True, True, True, True, False, False]
    """
    a = _norm(agent or "")
    return "cart" in a or a.endswith("leucel") or "cabtagene" in a or a in product_names()


def car_t_agent_expr(agent: pl.Expr) -> pl.Expr:
    """:func:`is_car_t_agent` as a polars expression (null agent -> False), for whole columns."""
    a = agent.fill_null("").str.to_lowercase().str.replace_all(r"[\s_\-]", "")
    return (a.str.contains("cart", literal=True) | a.str.ends_with("leucel") | a.str.contains("cabtagene", literal=True)
            | a.is_in(sorted(product_names())))
