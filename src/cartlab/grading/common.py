"""Conventions shared by the grading engines (CTCAE, CRS, ICANS, haematotoxicity).

* Criteria are data: YAML tables in ``cartlab/grading/criteria/`` with a ``version`` and a
  ``citation`` for every rule row; the rule language, its schema and its compiler are
  :mod:`cartlab.criteria` (:func:`load_criteria` gives a table as parsed YAML,
  :func:`cartlab.criteria.load_table` validated).
* Engines are pure functions ``derive_*(study_or_frames, options) -> polars.DataFrame``.
* Every derived grade is traceable: the output carries ``rule`` (the id of the criteria row that
  fired), ``reason`` (a human sentence) and ``evidence`` (a list of ``"<file>:<row>"`` references to
  the source rows that produced it, built with :func:`evidence_ref`).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from cartlab.criteria import load_raw as _load_raw
from cartlab.io.clock import has_clock_time, is_timed, wall_clock
from cartlab.provenance import EVIDENCE, evidence_ref, unique_refs  # noqa: F401  (one definition, re-exported)


def load_criteria(name: str, package: str = "cartlab.grading") -> dict[str, Any]:
    """A criteria table shipped in ``<package>/criteria/<name>.yaml`` (parsed YAML), by default
    ``cartlab/grading/criteria``; ``cartlab.response`` keeps its tables the same way."""
    return _load_raw(name, package)


def last_covered_day(frame: pl.DataFrame, start: str = "start_day", end: str = "end_day") -> pl.Expr:
    """The last calendar day an interval covers (Int64; no end = the start's day).

    Spec "Derivation conventions": an intervention covers every day from its start day to its end
    day inclusive (a whole-number or date-only end is "some time that day"). An end written as a
    date-time at exactly 00:00 (``end_datetime`` with the clock time 00:00, after the start) ended at the
    start of that day: it covers up to the day before (review 38 A1; a vasopressor stopped at
    midnight did not run on the next day). A start at 24:00 cannot occur (the reader rejects it)."""
    e = pl.col(end)
    dt = f"{end.removesuffix('_day')}_datetime" if end.endswith("_day") else None
    midnight = pl.lit(False)
    if dt is not None and dt in frame.columns:
        clock = wall_clock(pl.col(dt).cast(pl.String))
        midnight = (e.is_not_null() & (e == e.floor()) & (e > pl.col(start)) & has_clock_time(pl.col(dt))
                    & (clock.dt.hour() == 0) & (clock.dt.minute() == 0) & (clock.dt.second() == 0)).fill_null(False)
    return pl.when(midnight).then(e - 1).otherwise(pl.coalesce(e, pl.col(start))).floor().cast(pl.Int64)


def expand_days(frame: pl.DataFrame, start: str = "start_day", end: str = "end_day") -> pl.DataFrame:
    """One row per calendar day an interval covers (start..:func:`last_covered_day` inclusive)."""
    lo = pl.col(start).floor().cast(pl.Int64)
    hi = last_covered_day(frame, start, end)
    return (
        frame.filter(pl.col(start).is_not_null())
        .with_columns(pl.int_ranges(lo, pl.max_horizontal(lo, hi) + 1).alias("d"))
        .explode("d")
    )


#: values of the ``first_day`` option of the ASTCT CRS/ICANS engines besides a study day
FIRST_DAY_MODES = ("infusion", "all")


def assessment_start(study: Any, first_day: Any) -> pl.DataFrame | None:
    """Per subject (``subject_id``, ``_start``) the moment on the day axis from which CRS/ICANS are
    graded, or None (``first_day="all"``: every recorded day).

    ``"infusion"``: the first CAR-T infusion (ASTCT 2019 grades toxicities "associated with immune
    effector cells"): its dose row (an agent :func:`~cartlab.kinetics.agents.is_car_t_agent`
    recognises), timed by ``infusion_datetime`` when the row has no time; day 0 (the spec's infusion
    day) when no CAR-T dose is recorded. A number: that study day.
    """
    if first_day == "all" or first_day is None:
        return None
    ids = pl.DataFrame({"subject_id": study.subject_ids}, schema={"subject_id": pl.String})
    if first_day == "infusion":
        from cartlab.kinetics.agents import car_t_infusions

        inf = car_t_infusions(study)
        inf = (inf.group_by("subject_id").agg(pl.col("day").cast(pl.Float64).min().alias("_start"))
               if inf.height else pl.DataFrame(schema={"subject_id": pl.String, "_start": pl.Float64}))
        return ids.join(inf, on="subject_id", how="left").with_columns(pl.col("_start").fill_null(0.0))
    return ids.with_columns(pl.lit(float(first_day)).alias("_start"))


def from_start(day: pl.Expr, timed: pl.Expr) -> pl.Expr:
    """Rows at or after ``_start`` (a column, see :func:`assessment_start`): a timed row by its time,
    a row known to the day only by its day (a whole-number day 0 is on the infusion day, not before
    the infusion); no ``_start`` keeps the row."""
    start = pl.col("_start")
    return (start.is_null() | pl.when(timed).then(day >= start).otherwise(day.floor() >= start.floor())).fill_null(True)


def rows_from_start(frame: pl.DataFrame, start: pl.DataFrame | None, day: str = "day",
                    datetime: str | None = "datetime") -> pl.DataFrame:
    """The rows of ``frame`` (observations, events) at or after the subject's assessment start."""
    if start is None or frame.height == 0:
        return frame
    dt = datetime if datetime is not None and datetime in frame.columns else None
    return (frame.join(start, on="subject_id", how="left")
            .filter(from_start(pl.col(day), is_timed(day, dt))).drop("_start"))


def interventions_from_start(frame: pl.DataFrame, start: pl.DataFrame | None) -> pl.DataFrame:
    """Interventions at or after the assessment start: a row that ended before it is not read; one
    running across it counts from it (its ``start_day`` moved to the start, so a corticosteroid
    course from day -2 to 3 counts on days 0-3; ASTCT 2019 footnote: the fever waiver follows
    tocilizumab or steroids given to a patient who has CRS)."""
    if start is None or frame.height == 0:
        return frame
    def col(name: str) -> str | None:
        return name if name in frame.columns else None

    has_end = pl.col("end_day").is_not_null()
    end = pl.coalesce("end_day", "start_day")
    end_timed = (pl.when(has_end).then(is_timed("end_day", col("end_datetime")))
                 .otherwise(is_timed("start_day", col("start_datetime"))))
    return (frame.join(start, on="subject_id", how="left")
            .filter(pl.col("start_day").is_null() | from_start(end, end_timed))
            .with_columns(pl.when(pl.col("_start").is_not_null() & (pl.col("start_day") < pl.col("_start")))
                          .then(pl.col("_start")).otherwise(pl.col("start_day")).alias("start_day"))
            .drop("_start"))
