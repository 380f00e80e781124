"""Where a date-time falls on the study's day axis: one rule for every reader (study folder, SDTM, FHIR).

Study format v1, "Time": day 0 is the infusion day and "day 14.5 is noon of day 14"; "Derivation
conventions": "days are calendar days relative to day 0". So:

* day 0 is the calendar date of the first CAR-T infusion (``infusion_date``, or the date of
  ``infusion_datetime`` as written); its midnight is the origin of the day axis;
* a date-time's day is the time from that midnight to the date and clock time *as written*: a
  reading at ``2024-03-03T01:00`` after an infusion on 1 March is day 2.0417 (01:00 of day 2),
  whatever hour the infusion itself was given; a date alone is its midnight (a whole day);
* a UTC offset (``Z``, ``+08:00``, ``-0500``) is not applied: the site's clock on the day of the
  reading decides its day, across daylight-saving changes too. ``2024-03-03T01:00+08:00`` is 01:00
  on 3 March, not 17:00 UTC on 2 March.

Giving ``infusion_datetime`` therefore adds precision without moving any day: the same study with
only ``infusion_date`` has the same days. Kinetics measure time from the infusion itself (the CAR-T
dose's own day, e.g. 0.4583 for an infusion at 11:00).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

import polars as pl

__all__ = ["ISO_SHAPE", "OFFSET", "day_number", "day_zero", "days_from", "iso_date", "midnight", "parse_wall_clock", "wall_clock"]

#: A UTC offset at the end of a date-time with a time part: Z, +hh:mm, +hhmm or +hh.
OFFSET = r"(T[0-9:.,]+)(Z|[+-]\d{2}(:?\d{2})?)$"
_OFFSET_RE = re.compile(OFFSET)
#: An ISO 8601 date or date-time without its offset: YYYY-MM-DD[Thh:mm[:ss[.f]]].
ISO_SHAPE = r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}([.,]\d+)?)?)?$"
_ISO_SHAPE_RE = re.compile(ISO_SHAPE)
_NAIVE = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M")
US_PER_DAY = 86_400e6


def has_clock_time(dt: pl.Expr) -> pl.Expr:
    """A date-time text with a clock time (``2024-03-15T12:00``, ``2024-03-15 12:00``); a date alone or
    a null is False. The one "has a clock time" test of cartlab (reader checks and engines)."""
    return dt.cast(pl.String).str.contains(r"\d[T ]\d").fill_null(False)


def is_timed(day: str, datetime: str | None = None) -> pl.Expr:
    """A row whose time of day is known: a fractional ``day`` (14.5 is noon of day 14) or a
    ``datetime`` with a clock time; a whole-number day or a date alone says only which day."""
    out = (pl.col(day) != pl.col(day).floor()).fill_null(False)
    if datetime is not None:
        out = out | has_clock_time(pl.col(datetime))
    return out


def wall_clock(expr: pl.Expr) -> pl.Expr:
    """ISO 8601 text -> the date and clock time as written (naive Datetime, any UTC offset left
    unapplied); a date alone is its midnight; null where the text is not an ISO 8601 date-time."""
    e = expr.str.strip_chars().str.replace(" ", "T").str.replace(r"(T[0-9:.]+),(\d)", "${1}.${2}")
    offset = e.str.extract(OFFSET, 2)
    bad_offset = offset.is_not_null() & (
        (offset != "Z") & ((offset.str.slice(1, 2).cast(pl.Int32, strict=False) > 14)
                           | (offset.str.replace(":", "").str.slice(3, 2).cast(pl.Int32, strict=False) > 59)))
    e = e.str.replace(OFFSET, "${1}")
    parsed = pl.coalesce([
        *(e.str.to_datetime(f, strict=False, time_unit="us") for f in _NAIVE),
        e.str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("us")),
    ])
    # ISO 8601's shape (two-digit hours ...): the parser alone would also take 'T9:30'
    return pl.when(bad_offset | ~e.str.contains(ISO_SHAPE)).then(None).otherwise(parsed)


def iso_date(expr: pl.Expr) -> pl.Expr:
    """ISO 8601 calendar date text (``YYYY-MM-DD``, two-digit month and day) -> Date; null for
    anything else (``2024-3-1``, a date-time). The one date rule of the study folder: the ``date``
    columns and the day anchor (:func:`day_zero`) read the same texts."""
    e = expr.str.strip_chars()
    return pl.when(e.str.contains(r"^\d{4}-\d{2}-\d{2}$")).then(e.str.to_date("%Y-%m-%d", strict=False))


def day_zero(infusion_datetime: pl.Expr, infusion_date: pl.Expr) -> pl.Expr:
    """Midnight of the infusion's calendar date (from ``infusion_datetime`` as written, else
    ``infusion_date``): the origin of the day axis."""
    return pl.coalesce(wall_clock(infusion_datetime), wall_clock(infusion_date)).dt.truncate("1d")


def day_number(dt: pl.Expr, origin: pl.Expr) -> pl.Expr:
    """Days from ``origin`` (a day-0 midnight) to ``dt`` (both wall clock): 14.5 is noon of day 14."""
    return (dt - origin).dt.total_microseconds().cast(pl.Float64) / US_PER_DAY


def parse_wall_clock(text: str) -> datetime:
    """One ISO 8601 date or date-time as its date and clock time as written (naive; an offset is
    not applied). Raises ValueError for anything else."""
    s = str(text).strip().replace(" ", "T")
    m = _OFFSET_RE.search(s)
    if m:
        off = m.group(2)
        if off != "Z" and (int(off[1:3]) > 14 or int(off[3:].replace(":", "") or "0") > 59):
            raise ValueError(f"not a UTC offset: {off!r} in {text!r}")
        s = s[: m.start(2)]
    if not _ISO_SHAPE_RE.match(s):
        raise ValueError(f"not an ISO 8601 date or date-time (YYYY-MM-DDThh:mm[:ss]): {text!r}")
    if "T" not in s:
        return datetime.combine(date.fromisoformat(s), datetime.min.time())
    return datetime.fromisoformat(s.replace(",", "."))


def midnight(dt: datetime) -> datetime:
    """The start of ``dt``'s calendar day (naive)."""
    return datetime.combine(dt.date(), datetime.min.time())


def days_from(origin: datetime, dt: datetime) -> float:
    """Days from a day-0 midnight to ``dt`` (both naive wall clock)."""
    return (dt - origin) / timedelta(microseconds=1) / US_PER_DAY
