"""Table cells of the report pages: values, study days ("28.42", "d1–3"), rule ids marked when their
criteria row is not verified, and tables as the templates take them."""

from __future__ import annotations

import math
import re
from typing import Any

import polars as pl

from cartlab._days import day_text
from cartlab.report.figures import provenance_kind

EMPTY = "—"

# --------------------------------------------------------------------------------------------
# formatting helpers


def _cell(v: Any) -> str:
    """One table cell as text; missing → "—"."""
    if v is None:
        return EMPTY
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return EMPTY
        if v.is_integer() and abs(v) < 1e15:
            return f"{int(v):,}" if abs(v) >= 1000 else str(int(v))
        return f"{v:,.6g}" if abs(v) < 1e6 else f"{v:.6g}"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 1000 else str(v)
    s = str(v)
    return s if s.strip() else EMPTY


def _day(v: Any) -> str:
    """A study day: whole days as integers, a day computed from a datetime to 2 decimals (-0.67, not
    -0.666667; the date/time column beside it is exact), as :func:`cartlab._days.day_text`."""
    if isinstance(v, float) and not math.isnan(v) and not v.is_integer():
        return day_text(v)
    return _cell(v)


def _is_day(col: str) -> bool:
    return col == "day" or col.endswith("_day") or col in ("ASTDY", "AENDY", "ADY")


_LONG_DAY = re.compile(r"\b(days?(?:\(s\))?\s+|d)(-?\d+\.\d{3,})\b")


def _round_days(text: str) -> str:
    """Days in a reason text to 2 decimals, as the tables print them ("day 28.4167" -> "day 28.42")."""
    return _LONG_DAY.sub(lambda m: m.group(1) + _day(float(m.group(2))), text) if "." in text else text


def grade_span(lo: Any, hi: Any) -> str:
    """A worst grade (``lo`` given) with its upper bound: "2", or "0–1" when an input was missing."""
    return _cell(lo) if hi is None or _num(hi) == _num(lo) else f"{_cell(lo)}–{_cell(hi)}"


def grade_range(lo: Any, hi: Any, why: str | None = None) -> str:
    """A worst grade that may be a range, as the study table shows the early ICAHT grade: "2", "0–4"
    when days lacked a count (``hi`` = the grade had they been below every level), "NE (≤4)" when
    only the upper bound is known (not evaluable, as the ICAHT view and the toxicity summary count
    it, with its bound: one wording on the study table, the subject page and the dashboard, review 41
    F4), "—" when neither; ``why`` (e.g. "no ANC on 30 day(s)") is added to a range as "0–4 (range:
    no ANC on 30 day(s))"."""
    if lo is None and hi is None:
        return EMPTY
    if lo is None:
        return f"NE (≤{_cell(hi)})"
    text = grade_span(lo, hi)
    return f"{text} (range: {why})" if why and "–" in text else text


def _num(v: Any) -> float | None:
    """A number, or None (missing, a flag, text, NaN)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def day_span(start: Any, end: Any) -> str:
    """An episode's days: "d1–3", "d1" for a one-day episode, "d1–?" when it has no end."""
    if end is None:
        return f"d{_day(start)}–?"
    return f"d{_day(start)}" if _day(start) == _day(end) else f"d{_day(start)}–{_day(end)}"


def _table(df: pl.DataFrame, columns: list[tuple[str, str]], *, always: tuple[str, ...] = ()) -> dict:
    """``{"headers": [...], "rows": [{"cells": [...], "prov": ...}]}`` for the template.

    Columns entirely empty in ``df`` are dropped unless listed in ``always``.
    """
    keep = [
        (col, header)
        for col, header in columns
        if col in df.columns and (col in always or any(_cell(x) != EMPTY for x in df[col].to_list()))
    ]
    rows = []
    for r in df.iter_rows(named=True):
        rows.append(
            {
                "cells": [_rule_cell(r[c]) if _is_rule(c) else _day(r[c]) if _is_day(c) else _round_days(_cell(r[c]))
                          for c, _ in keep],
                "prov": provenance_kind(r.get("source")),
            }
        )
    num = [df[c].dtype.is_numeric() for c, _ in keep]
    return {"headers": [h for _, h in keep], "rows": rows, "num": num}


UNSETTLED_MARK = "⚠"


def _is_rule(col: str) -> bool:
    return col.lower() == "rule" or col.lower().endswith("_rule")


def _rule_cell(value: Any) -> str:
    """A rule id, marked when its criteria row is not (fully) verified against its source."""
    from cartlab.criteria import UNSETTLED, rule_status

    text = _cell(value)
    status = rule_status(value) if isinstance(value, str) else None
    return f"{text} {UNSETTLED_MARK} {status.replace('_', ' ')}" if status in UNSETTLED else text


def zero_exposure(v: Any, what: str = "Cmax") -> str | None:
    """A Cmax or AUC of exactly 0 in words: the NCA (PKNCA's convention) sets a sample below the LLOQ
    to 0, so 0 means no quantifiable sample, not a measured zero nor a missing value: "0 (all samples
    below LLOQ)" (the AUC: "in the window"); None for any other value."""
    if _num(v) != 0:
        return None
    return "0 (all samples below LLOQ)" if what == "Cmax" else "0 (all samples in the window below LLOQ)"
