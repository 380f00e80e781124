"""Days as cartlab prints them, in every message, report table and dashboard label: a whole day
without decimals ("day 42", not "day 42.0"), a fractional day (from a date-time) to at most 2
decimals ("day 13.42", "day 14.5", "-0.67"). Rounded first, so that 13.999999999999998 and 14.001
read "14" and -0.004 reads "0" (one implementation since session 34: the report printed "14." and
the dashboard "14.0" / "-0.0")."""

from __future__ import annotations

import math

import polars as pl

__all__ = ["day_expr", "day_text", "days_text"]


def _hundredths(x: float) -> int:
    """|x| in whole hundredths, half away from zero (the same float operations as :func:`day_expr`)."""
    return int(math.floor(abs(x) * 100.0 + 0.5))


def day_text(x: float | None) -> str:
    """``42.0`` -> "42", ``13.41666`` -> "13.42", ``14.5`` -> "14.5", ``-0.001`` -> "0"; None/NaN -> "?".
    Hundredths are rounded half away from zero."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "?"
    n = _hundredths(float(x))
    sign = "-" if x < 0 and n > 0 else ""
    whole, frac = divmod(n, 100)
    return f"{sign}{whole}" + (("." + f"{frac:02d}".rstrip("0")) if frac else "")


def days_text(days) -> str:
    """Days as a short list: runs of consecutive whole days as ``a-b`` (``[0, 1, 2, 5, 7, 8]`` ->
    "0-2, 5, 7-8"; a run from a negative day "-2 to 0"), other days with :func:`day_text`; sorted,
    duplicates once."""
    vals = sorted({float(d) for d in days if d is not None and not (isinstance(d, float) and math.isnan(d))})
    parts: list[str] = []
    run: list[float] = []

    def flush() -> None:
        if run:
            sep = " to " if run[0] < 0 else "-"  # "-2 to 0", not "-2-0"
            parts.append(day_text(run[0]) if len(run) == 1 else f"{day_text(run[0])}{sep}{day_text(run[-1])}")
            run.clear()

    for d in vals:
        if d.is_integer() and run and d == run[-1] + 1:
            run.append(d)
            continue
        flush()
        if d.is_integer():
            run.append(d)
        else:
            parts.append(day_text(d))
    flush()
    return ", ".join(parts)


def day_expr(expr: pl.Expr) -> pl.Expr:
    """:func:`day_text` as a polars expression (null stays null; the same float operations)."""
    x = expr.cast(pl.Float64)
    x = pl.when(x.is_finite()).then(x)  # NaN / inf: null (day_text gives "?"), never a failed cast
    n = (x.abs() * 100.0 + 0.5).floor().cast(pl.Int64)
    whole, frac = n // 100, n % 100
    sign = pl.when((x < 0) & (n > 0)).then(pl.lit("-")).otherwise(pl.lit(""))
    dec = pl.when(frac > 0).then(pl.concat_str(pl.lit("."), frac.cast(pl.String).str.zfill(2).str.replace(r"0+$", "")))
    out = pl.concat_str(sign, whole.cast(pl.String), dec.fill_null(pl.lit("")))
    name = expr.meta.output_name(raise_if_undetermined=False)
    return out.alias(name) if name else out
