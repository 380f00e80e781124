"""SDTM --DTC (ISO 8601, partial dates allowed) -> datetime, and the day relative to day 0.

The rule (docs/interop/sdtm.md, "Partial dates"):

* ``YYYY-MM-DD`` -> that calendar date (day = whole days from the day-0 date);
  ``YYYY-MM-DDThh[:mm[:ss[.f]]]`` -> that time (day with a fraction; fractional seconds beyond
  microseconds are truncated); a complete date with an
  incomplete time (``2021-05-03T-:30``) -> the date.
* a partial date (``YYYY``, ``YYYY-MM``, ``YYYY---DD``) cannot be placed on a day: by default
  (``partial_dates="skip"``) the record is not mapped and is counted in the mapping report with
  the reason ``partial date``. With ``partial_dates="impute"`` a ``YYYY-MM`` / ``YYYY`` start is
  put on the first day of the month / year and an end on the last; the row's ``source_note``
  says so. Forms with a missing month cannot be imputed and stay unmapped.
* a UTC offset (``2021-05-03T01:00+08:00``) is not applied: the date and clock time as written
  place the record (one rule for every reader, ``cartlab.io.clock``);
* anything else (``03/05/2021``, ``2021-02-30``, a partial ``2021-13`` or ``2021---32``, a second
  ``:60``: ISO 8601's leap second, which cannot be told from a clock without its UTC offset) is an
  error naming the file and the record.
"""

from __future__ import annotations

import polars as pl

from cartlab.io.clock import OFFSET

PARTIAL_DATES = ("skip", "impute")

_DATE = r"^\d{4}-\d{2}-\d{2}(T[0-9:.\-]*)?$"
# any number of fractional-second digits: the clock keeps microseconds (more digits are truncated)
_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?$"
_PARTIAL = r"^(\d{4}|-)(-(\d{2}|-)?){0,2}(T[0-9:.\-]*)?$"
_YM = r"^\d{4}(-\d{2})?$"
US_PER_DAY = 86_400_000_000


def parse_dtc(text: pl.Expr, partial_dates: str = "skip", end: bool = False) -> pl.Expr:
    """A struct of ``status`` (ok / imputed / partial / missing / invalid), ``dt`` (Datetime us) and
    ``has_time`` for an ISO 8601 --DTC text column (see the module docstring)."""
    t = text.cast(pl.String).str.replace(OFFSET, "${1}")  # the clock as written (cartlab.io.clock)
    date_part = t.str.slice(0, 10)
    is_time = t.str.contains(_TIME)
    is_date = t.str.contains(_DATE)
    hm = pl.when(t.str.contains(r"T\d{2}$")).then(t + ":00").otherwise(t)
    # second 60 is ISO 8601's leap second (23:59:60 UTC on a leap-second day only); with the offset not
    # applied cartlab cannot tell one, and the study-folder reader rejects it too: invalid, never 14:31
    leap = t.str.contains(r"T\d{2}:\d{2}:60")
    dt_time = pl.when(~leap).then(pl.coalesce(
        hm.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="us"),
        hm.str.to_datetime("%Y-%m-%dT%H:%M:%S", strict=False, time_unit="us"),
        hm.str.to_datetime("%Y-%m-%dT%H:%M", strict=False, time_unit="us"),
    ))
    dt_date = date_part.str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("us"))
    # a partial date names a month or a day only if it can exist: 2021-13 is no partial date but an error
    month_n = t.str.extract(r"^(?:\d{4}|-)-(\d{2})", 1).cast(pl.Int32, strict=False)
    day_n = t.str.extract(r"^(?:\d{4}|-)-(?:\d{2}|-)-(\d{2})", 1).cast(pl.Int32, strict=False)
    impossible = month_n.is_between(1, 12).not_() | day_n.is_between(1, 31).not_()
    is_partial = ~is_date & t.str.contains(_PARTIAL) & ~impossible.fill_null(False)
    imputable = is_partial & t.str.contains(_YM) & pl.lit(partial_dates == "impute")
    year = t.str.slice(0, 4)
    month = pl.when(t.str.len_chars() >= 7).then(t.str.slice(5, 2)).otherwise(pl.lit("12" if end else "01"))
    first = pl.concat_str(year, pl.lit("-"), month, pl.lit("-01")).str.to_date("%Y-%m-%d", strict=False)
    imputed = (first.dt.month_end() if end else first).cast(pl.Datetime("us"))
    dt = (
        pl.when(is_time).then(dt_time)
        .when(is_date).then(dt_date)
        .when(imputable).then(imputed)
        .otherwise(None)
    )
    status = (
        pl.when(t.is_null()).then(pl.lit("missing"))
        .when((is_time | is_date) & dt.is_not_null()).then(pl.lit("ok"))
        .when(imputable & dt.is_not_null()).then(pl.lit("imputed"))
        .when(is_partial).then(pl.lit("partial"))
        .otherwise(pl.lit("invalid"))
    )
    return pl.struct(status.alias("status"), dt.alias("dt"), (is_time & dt_time.is_not_null()).alias("has_time"))


def period_bounds(text: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(first, last) calendar day (Datetime at midnight) of the period a partial --DTC names: ``2021-07``
    -> 2021-07-01 .. 07-31; ``2021`` (or ``2021---15``, no month) -> 2021-01-01 .. 12-31 (ISO 8601 /
    SDTMIG 4.4.4: a date with "missing components" is the whole period). Null without a year."""
    t = text.cast(pl.String).str.strip_chars()
    year = t.str.extract(r"^(\d{4})", 1).cast(pl.Int32, strict=False)
    month = t.str.extract(r"^\d{4}-(\d{2})", 1).cast(pl.Int32, strict=False)
    first = pl.date(year, month.fill_null(1), 1)
    last = pl.date(year, month.fill_null(12), 1).dt.month_end()
    return first.cast(pl.Datetime("us")), last.cast(pl.Datetime("us"))
