"""Days as the kinetics messages print them: a whole day without decimals ("day 42", not "day 42.0"),
a fractional day to at most 2 decimals ("day 13.42", "day 14.5"), the way the report prints study days
(:func:`cartlab.report.cells._day`, :func:`cartlab.app.figures._day_text`). Rounded first, so that
13.999999999999998 reads "14"."""

from __future__ import annotations

import math

import polars as pl

__all__ = ["day_expr", "day_text"]


def day_text(x: float | None) -> str:
    """``42.0`` -> "42", ``13.41666`` -> "13.42", ``14.5`` -> "14.5", ``-0.001`` -> "0"; None/NaN -> "?"."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "?"
    r = round(float(x), 2)
    if r.is_integer():
        return str(int(r))
    return f"{r:.2f}".rstrip("0")


def day_expr(expr: pl.Expr) -> pl.Expr:
    """:func:`day_text` as a polars expression (null stays null)."""
    r = expr.cast(pl.Float64).round(2)
    return (pl.when(r == r.floor()).then(r.cast(pl.Int64).cast(pl.String))
            .otherwise(r.cast(pl.String).str.replace(r"0+$", "")))
