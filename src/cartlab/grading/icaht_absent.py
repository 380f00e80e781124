"""Late ICAHT / T-ICAHT when events.csv was not given at all (``Study.absent``; review 40 A2).

The late window runs from day 31 to the earliest of day 100, relapse, new therapy, allo-HSCT, death
or last follow-up (Rejeski K et al., Blood 2023;142:865; Rejeski 2025 for T-ICAHT). An events.csv not
given at all (not a header-only file, which is "none recorded") does not say that none of those
events happened: the window could have ended on any day from its first. A longer window can only
add measurements, so the late grade is a range (option ``absent_events="unknown"``, default;
conventions ``icaht.conv.absent_events`` / ``t_icaht.conv.absent_events``):

* ``<p>_late_grade``: the grade of the window to day 100 / last follow-up, as a header-only file gives it
  (since session 48, review 48 oracle #7: the study format requires only subjects.csv, and its late window
  runs to "the earliest of day 100, relapse, new therapy, HSCT or last follow-up"; the CRS engine reads an
  absent events.csv the same way, with its lower bound apart); the reason names what the shortest possible
  window (an event on or before day 30, or on ``late_end_events_from_day`` when later) gives, the lower end.
  ``"shortest_window"`` (sessions 40-47): the grade of that shortest window (not evaluable by default);
* ``<p>_late_grade_max``: the grade of the window to day 100 / last follow-up (or higher when that
  grade's own upper bound already is).

The early window is not changed: only a death ends it early, a death cannot come before the
subject's last recorded row, and the days after that row are already open (``early_unknown_days``).
``"none_happened"`` reads the absent file as a header-only one (cartlab before session 40; the
window's end reason says so).
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any, Callable

import polars as pl

from cartlab.io.absent_files import table_absent

__all__ = ["ABSENT_EVENTS", "MISSING", "late_end_unknown", "late_range"]

#: values of IcahtOptions.absent_events / TIcahtOptions.absent_events
ABSENT_EVENTS = ("unknown", "shortest_window", "none_happened")
#: what the late reason names
MISSING = "events.csv (not given)"


def late_end_unknown(study, opts: dict[str, Any]) -> bool:
    """True when events.csv was not given, option ``absent_events`` is "unknown" and an event can end
    the late window (``late_end_events`` not empty)."""
    mode = opts.get("absent_events") or "unknown"
    if mode not in ABSENT_EVENTS:
        raise ValueError(f"absent_events must be one of {ABSENT_EVENTS}, not {mode!r}")
    return mode != "none_happened" and bool(opts.get("late_end_events")) and table_absent(study, "events")


def _shortest_end(opts: dict[str, Any]) -> int:
    """The earliest day an event could end the late window: the day before its first (an event on or
    before day 30 leaves no late window; default ``late_end_events_from_day`` 0: any event from day 0
    counts, as a new therapy on day 30 does with events.csv given), or ``late_end_events_from_day``
    when that is on or after the window's first day."""
    start = int(opts["late_start_day"])
    from_day = opts.get("late_end_events_from_day")
    return int(from_day) if from_day is not None and from_day >= start else start - 1


def late_range(study, options, derive: Callable[..., pl.DataFrame], prefix: str,
               daily: pl.DataFrame | None = None, **kw: Any) -> pl.DataFrame:
    """``derive(study, options, daily)`` (``derive_icaht`` / ``derive_t_icaht``) with the late grade a
    range over the possible window ends (module docstring). ``prefix``: ``icaht`` / ``t_icaht``."""
    opts = options.resolved()
    shortest = opts.get("absent_events") == "shortest_window"  # sessions 40-47: the grade of the shortest window
    full = derive(study, replace(options, absent_events="none_happened"), daily, **kw)
    end = _shortest_end(opts)
    with warnings.catch_warnings():  # the full run above has said them (early window, data)
        warnings.simplefilter("ignore")
        short = derive(study, replace(options, absent_events="none_happened", late_end_day=end), **kw)
    g, gmax = f"{prefix}_late_grade", f"{prefix}_late_grade_max"
    out = full.join(short.select("subject_id", pl.col(g).alias("_lo"), pl.col("late_rule").alias("_lo_rule"),
                                 pl.col("late_reason").alias("_lo_reason")),
                    on="subject_id", how="left", maintain_order="left")
    up = pl.max_horizontal(g, gmax, "_lo")
    # only where the full window was evaluable or had an upper grade (an empty window stays empty)
    ranged = pl.col(gmax).is_not_null() | pl.col(g).is_not_null()
    short_why = pl.col("_lo_reason").str.strip_chars_end(".")
    lo_text = pl.when(pl.col("_lo").is_null()).then(short_why).otherwise(pl.format("grade {} ({})", "_lo", short_why))
    if shortest:
        note = pl.format(
            " Window end unknown: {} - a relapse, new therapy or allo-HSCT could end the late window on any day "
            "(option {}.absent_events=shortest_window, convention {}.conv.absent_events); over the shortest window (an "
            "event on day {}) the late grade is {}, so {} is that, up to {} over the window above.",
            pl.lit(MISSING), pl.lit(prefix), pl.lit(prefix), pl.lit(end), lo_text, pl.lit(g), up)
    else:  # session 48: the grade of the window as a header-only file gives it (the study format's late window)
        note = pl.format(
            " Window end unknown: {} - a relapse, new therapy or allo-HSCT could have ended the late window earlier "
            "(option {}.absent_events=unknown, convention {}.conv.absent_events): {} is the grade of the window above, "
            "as with no such event; over the shortest window (an event on day {}) it would be {}.",
            pl.lit(MISSING), pl.lit(prefix), pl.lit(prefix), pl.lit(g), pl.lit(end), lo_text)
    rule = pl.concat_str(pl.col("_lo_rule").fill_null(f"{prefix}.late.not_evaluable"),
                         pl.lit(f"; {prefix}.conv.absent_events"))
    return out.with_columns(
        (pl.when(ranged).then(pl.col("_lo")).otherwise(pl.col(g)) if shortest else pl.col(g)).cast(pl.Int64).alias(g),
        pl.when(ranged).then(up).otherwise(pl.col(gmax)).cast(pl.Int64).alias(gmax),
        pl.when(ranged).then(rule).otherwise(pl.col("late_rule")).alias("late_rule"),
        pl.when(ranged).then(pl.concat_str(pl.col("rule").str.replace(r"; late: .*$", ""), pl.lit("; late: "), rule))
        .otherwise(pl.col("rule")).alias("rule"),
        pl.when(ranged).then(pl.concat_str("late_reason", note)).otherwise(pl.col("late_reason")).alias("late_reason"),
        pl.when(ranged).then(pl.concat_str("reason", note)).otherwise(pl.col("reason")).alias("reason"),
    ).drop("_lo", "_lo_rule", "_lo_reason")
