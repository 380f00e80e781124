"""Censored results ("<50", ">39") as intervals, one module for every engine that reads them.

Two forms, for two jobs:

* :func:`bounds` / :func:`interval_cmp` / :func:`point`: expressions for a result as an interval with
  infinite ends (``"<50"`` is (-inf, 50)) and a three-valued comparison of two intervals (True, False,
  or null when the bounds do not settle it) -- the haematotoxicity engines (ICAHT, CAR-HEMATOTOX,
  IEC-HS, count recovery).
* :func:`row_intervals` / :func:`day_extreme`: a frame of rows with ``lo``/``hi`` (null = unbounded)
  and the interval of a day's maximum or minimum, with the row that sets it -- the ASTCT CRS engine,
  the older CRS scales and the report's timeline read a day's Tmax and lowest SBP this way.

Missing is not negative: a censored result is a measurement whose number is unknown, never a missing
one; a comparison it cannot settle is null, not False.
"""

from __future__ import annotations

import polars as pl

__all__ = ["bounds", "interval_cmp", "point", "censored_text", "row_intervals", "day_extreme", "interval_text",
           "num_text", "just_inside"]


def bounds(value: pl.Expr, censor: pl.Expr, limit: pl.Expr) -> tuple[pl.Expr, pl.Expr, pl.Expr, pl.Expr]:
    """(lo, lo_open, hi, hi_open): the interval a result lies in - a number is [x, x], "<50" is
    (-inf, 50), "<=50" (-inf, 50], ">50" (50, inf), ">=50" [50, inf); all null when neither is known."""
    num = value.is_not_null()
    up = censor.is_in(["<", "<="])
    lo = pl.when(num).then(value).when(up).then(float("-inf")).otherwise(limit)
    hi = pl.when(num).then(value).when(up).then(limit).when(censor.is_not_null()).then(float("inf"))
    lo_open = pl.when(num).then(False).when(censor.is_not_null()).then(up | (censor == ">"))
    hi_open = pl.when(num).then(False).when(censor.is_not_null()).then(~up | (censor == "<"))
    return (pl.when(censor.is_not_null() | num).then(lo), lo_open, hi, hi_open)


def interval_cmp(op: str, a: tuple[pl.Expr, ...], b: tuple[pl.Expr, ...]) -> pl.Expr:
    """``x op y`` for every x in interval ``a`` and y in interval ``b`` (:func:`bounds`): True when
    it holds for all, False when for none, null when the bounds do not settle it (or an interval is
    unknown). A number is the interval [x, x], so two numbers compare as usual."""
    alo, alo_o, ahi, ahi_o = a
    blo, blo_o, bhi, bhi_o = b

    def lt(hi, hi_o, lo, lo_o):  # every x < every y: hi < lo, or equal with an open end
        return (hi < lo) | ((hi == lo) & (hi_o | lo_o))

    if op == "<":
        yes, no = lt(ahi, ahi_o, blo, blo_o), alo >= bhi
    elif op == "<=":
        yes, no = ahi <= blo, lt(bhi, bhi_o, alo, alo_o)
    elif op == ">":
        yes, no = lt(bhi, bhi_o, alo, alo_o), ahi <= blo
    elif op == ">=":
        yes, no = alo >= bhi, lt(ahi, ahi_o, blo, blo_o)
    else:
        raise ValueError(f"unknown comparison {op!r}")
    return pl.when(yes).then(True).when(no).then(False).otherwise(None)


def point(x: pl.Expr | float) -> tuple[pl.Expr, pl.Expr, pl.Expr, pl.Expr]:
    """A number as the closed interval [x, x] of :func:`interval_cmp`."""
    e = x if isinstance(x, pl.Expr) else pl.lit(float(x))
    return e, pl.lit(False), e, pl.lit(False)


def just_inside(censor: pl.Expr, limit: pl.Expr, digits: int | None = None) -> pl.Expr:
    """The number a grader comparing at ``digits`` significant digits reads for a strict censored bound
    ("<0.5": just below 0.5; ">200": just above 200; "<=x"/">=x": x itself; null elsewhere): the bound
    moved by one unit of its last compared digit, or by a relative 1e-9 when that is larger (at 10 or more
    digits: what every engine used before review 41 F4). A relative 1e-9 alone is lost when the comparison
    rounds to 9 digits or fewer (0.5 x (1 - 1e-9) is 0.50000000 at 8 digits, not below 0.5)."""
    step = limit.abs() * 1e-9
    if digits is not None:
        unit = pl.lit(10.0).pow(limit.abs().log10().floor() - (int(digits) - 1))
        step = pl.max_horizontal(step, pl.when(limit != 0).then(unit).otherwise(0.0))
    return (pl.when(censor == "<").then(limit - step).when(censor == ">").then(limit + step)
            .when(censor.is_not_null()).then(limit))


def censored_text(censor: pl.Expr, limit: pl.Expr) -> pl.Expr:
    """A censored result as text ("<10"; null on a numeric row)."""
    return pl.concat_str(censor, limit.round_sig_figs(6).cast(pl.String))


def row_intervals(obs: pl.DataFrame) -> pl.DataFrame:
    """Each row's value as an interval (``lo``, ``hi``, open ends): a number is a point; a censored
    result (``censor`` > >= < <=, ``censor_limit``) bounds one side; a row with neither is dropped."""
    c = pl.col("censor").fill_null("")
    num = pl.col("value").is_not_null()
    return obs.with_columns(
        pl.when(num).then(pl.col("value")).when(c.is_in([">", ">="])).then(pl.col("censor_limit")).alias("lo"),
        pl.when(num).then(pl.col("value")).when(c.is_in(["<", "<="])).then(pl.col("censor_limit")).alias("hi"),
        (~num & (c == ">")).alias("lo_open"), (~num & (c == "<")).alias("hi_open"),
    ).filter(pl.col("lo").is_not_null() | pl.col("hi").is_not_null())


def day_extreme(rows: pl.DataFrame, name: str, highest: bool) -> pl.DataFrame:
    """Per subject and day the interval of the day's maximum (``highest``) or minimum of ``rows``
    (from :func:`row_intervals`): ``<name>_lo/_hi`` (null: unbounded), their open ends, the point value
    ``<name>`` when the interval is one number, and the row that sets it (``<name>_ref``)."""
    # the extreme bound of the side that can be unbounded is unbounded as soon as one row is
    free, kept = ("hi", "lo") if highest else ("lo", "hi")
    pick = pl.col(kept).max() if highest else pl.col(kept).min()
    other = pl.when(pl.col(free).is_null().any()).then(None).otherwise(
        pl.col(free).max() if highest else pl.col(free).min())
    # ties: an open (censored) bound first, so that ``<name>_ref`` names the censored row; then file order
    order = rows.sort([kept, f"{kept}_open", free], descending=[highest, True, highest], nulls_last=True,
                      maintain_order=True)
    agg = order.group_by("subject_id", "d").agg(
        pick.alias(f"_{kept}"), other.alias(f"_{free}"),
        # session 35: at the same value an open bound is the tighter one ({90, "<90"}: the minimum is <90)
        pl.when(pick.is_null()).then(True).otherwise(pl.col(f"{kept}_open").filter(pl.col(kept) == pick).any())
        .alias(f"_{kept}_open"),
        pl.col(f"{free}_open").filter(pl.col(free) == (pl.col(free).max() if highest else pl.col(free).min()))
        .all().alias(f"_{free}_open"),
        pl.col("ref").first().alias(f"{name}_ref"))
    lo, hi = pl.col("_lo"), pl.col("_hi")
    is_point = (lo == hi) & ~pl.col("_lo_open") & ~pl.col("_hi_open")
    return agg.select(
        "subject_id", "d", pl.when(is_point).then(lo).alias(name),
        lo.alias(f"{name}_lo"), hi.alias(f"{name}_hi"),
        pl.col("_lo_open").fill_null(False).alias(f"{name}_lo_open"),
        pl.col("_hi_open").fill_null(False).alias(f"{name}_hi_open"), f"{name}_ref")


def num_text(x: pl.Expr) -> pl.Expr:
    """A number as text: whole numbers without decimals (90, 6.5, 38.25)."""
    return (pl.when(x == x.round(0)).then(x.round(0).cast(pl.Int64).cast(pl.String))
            .otherwise(x.round(3).cast(pl.String)))


def interval_text(lo: str, hi: str, lo_open: str, hi_open: str) -> pl.Expr:
    """An interval of :func:`day_extreme` as text: ">39", "<70", ">=37.5 and <38"."""
    low = pl.format("{}{}", pl.when(pl.col(lo_open)).then(pl.lit(">")).otherwise(pl.lit(">=")), num_text(pl.col(lo)))
    high = pl.format("{}{}", pl.when(pl.col(hi_open)).then(pl.lit("<")).otherwise(pl.lit("<=")), num_text(pl.col(hi)))
    return pl.concat_str([pl.when(pl.col(lo).is_not_null()).then(low), pl.when(pl.col(hi).is_not_null()).then(high)],
                         separator=" and ", ignore_nulls=True)
