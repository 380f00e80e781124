"""The subject's lymphodepletion course: which recorded doses of a lymphodepletion agent are the course.

One reading for eligibility (where the screening window ends), the dose plan (its screening
creatinine and body size) and the deviations (the block shift inside a ``lymphodepletion_window``)
(review 40 A2/B1). Study-format "Time": day 0 is the first CAR-T infusion, so the course is given
before it. cartlab convention (rule ``<id>.screening_window``; docs/protocol.md "Lymphodepletion
course"):

* only doses on calendar days before day 0 count (a dose of a lymphodepletion agent on or after day
  0 is not the course: it never moves the screening window past the infusion);
* the course is the CONTIGUOUS run of those doses nearest before day 0: going back from the latest
  calendar day, a day belongs to the course while (a) the course from it to its last day spans at
  most the protocol's planned course span (last planned minus first planned lymphodepletion day, at
  least 1 day; NCT04762485 days -6..-3: 3 days) plus ``tolerance_days`` (option
  ``ld_course_tolerance_days``, default :data:`COURSE_TOLERANCE_DAYS` = 2 days: a dose postponed by up
  to 2 days), and (b) one of its agents has had fewer course days than the protocol plans for it
  (NCT04762485: decitabine 4, fludarabine and cyclophosphamide 3), so a day with a dose still missing
  from the course joins it (review 47 F1; before, a day joined while it was at most the planned span
  before the next course day, which merged a bridging course ending 2-3 days before). An earlier dose
  of the same agents is bridging (e.g. decitabine for AML on days -20, -19, or on days -10..-8 before
  a complete course of days -6..-3) and does not move the window; the reason names it. A course
  longer than allowed keeps its latest days (the course ends next to the infusion).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

__all__ = ["COURSE_TOLERANCE_DAYS", "Course", "course_gap", "lymphodepletion_courses", "course_note",
           "not_counted_why"]

#: days a recorded course may span beyond the planned span (last minus first planned lymphodepletion
#: day): a dose postponed by up to 2 days (cartlab convention, rule ``<id>.screening_window``; option
#: ``ld_course_tolerance_days``)
COURSE_TOLERANCE_DAYS = 2.0


@dataclass(frozen=True)
class Course:
    """A subject's lymphodepletion course: its first and last calendar day, and the doses of a
    lymphodepletion agent not taken as the course ((agent, day) pairs: bridging, or after day 0)."""

    first: float | None
    last: float | None
    days: tuple[float, ...] = ()
    not_counted: tuple[tuple[str, float], ...] = field(default_factory=tuple)
    gap: float = 1.0
    #: the planned course span (days, :func:`course_gap`) and how much longer a recorded course may be
    planned_span: float = 1.0
    tolerance: float = COURSE_TOLERANCE_DAYS
    #: why the dose day just before the course is not counted: "span" (the course would span more than
    #: ``planned_span + tolerance`` days) or "count" (every agent of that day already has its planned
    #: number of course days)
    broken_by: str = "span"
    #: the first dose's time (a fractional day) when every dose of the course's first day has a time of
    #: day (study-format "Time": a fractional day or a datetime with a clock time); else None
    first_time: float | None = None


def course_gap(protocol) -> float:
    """The protocol's planned course span (last minus first planned lymphodepletion day, calendar days),
    at least 1; a recorded course may span it plus the tolerance."""
    days = [float(d) for a in protocol.lymphodepletion for d in (getattr(a, "days", None) or ())]
    return max(1.0, max(days) - min(days)) if days else 1.0


def course_tolerance(tolerance_days: float | None) -> float:
    """``tolerance_days`` checked (None: :data:`COURSE_TOLERANCE_DAYS`)."""
    if tolerance_days is None:
        return COURSE_TOLERANCE_DAYS
    if isinstance(tolerance_days, bool) or not isinstance(tolerance_days, (int, float)) or not tolerance_days >= 0:
        raise ValueError(f"ld_course_tolerance_days must be a number of days >= 0, not {tolerance_days!r}")
    return float(tolerance_days)


def lymphodepletion_courses(doses: pl.DataFrame, protocol, tolerance_days: float | None = None
                            ) -> dict[str, Course] | None:
    """Per subject with a dose of one of the protocol's lymphodepletion agents (read through the
    alias table), its :class:`Course` (``first`` None when no such dose is before day 0); None when
    the protocol has no lymphodepletion. ``tolerance_days``: how many days the course may span beyond
    the planned span (None: :data:`COURSE_TOLERANCE_DAYS`; see the module docstring)."""
    from cartlab.protocol.eligibility import protocol_ld_agent

    agents = [a.agent for a in protocol.lymphodepletion]
    if not agents:
        return None
    if doses.height == 0:
        return {}
    gap = course_gap(protocol)
    planned_span, tol = gap, course_tolerance(tolerance_days)
    span = planned_span + tol
    from cartlab.io.clock import is_timed

    ld = doses.filter(protocol_ld_agent(pl.col("agent"), agents).is_not_null() & pl.col("day").is_not_null()
                      ).with_columns(_cal=(pl.col("day") + 1e-9).floor(),
                                     _agent=protocol_ld_agent(pl.col("agent"), agents),
                                     _timed=is_timed("day", "datetime" if "datetime" in doses.columns else None))
    # (c) a day is wanted while one of its agents has had fewer course days than planned, counting back
    # from the latest (a bridging decitabine beyond the planned 4 days is not the course)
    # (an agent without planned days has no such limit)
    n_planned = {a.agent: len(set(getattr(a, "days", None) or ())) or None for a in protocol.lymphodepletion}
    wanted = (ld.filter(pl.col("_cal") < 0).select("subject_id", "_agent", "_cal").unique()
              .sort(["subject_id", "_agent", "_cal"], descending=[False, False, True])
              .with_columns(_n=pl.col("_cal").cum_count().over("subject_id", "_agent"))
              .group_by("subject_id", "_cal")
              .agg(_wanted=(pl.col("_n") <= pl.col("_agent").replace_strict(n_planned, default=None,
                                                                            return_dtype=pl.Int64)).fill_null(True).any()))
    days = (ld.filter(pl.col("_cal") < 0).select("subject_id", "_cal").unique()
            .join(wanted, on=["subject_id", "_cal"])
            .sort(["subject_id", "_cal"], descending=[False, True])
            .with_columns(_span=pl.col("_cal").max().over("subject_id") - pl.col("_cal"))
            .with_columns(_long=pl.col("_span") > span + 1e-9)
            .with_columns(_brk=(pl.col("_long") | ~pl.col("_wanted")).cast(pl.Int32).cum_max().over("subject_id")))
    # why the first day before the course is not counted: "span" (the course would be too long) or
    # "count" (its agents' planned days are all in the course)
    first_out = {r[0]: r[1] for r in days.filter(pl.col("_brk") == 1).group_by("subject_id").agg(
        pl.when(pl.col("_long").first()).then(pl.lit("span")).otherwise(pl.lit("count"))).iter_rows()}
    course = days.filter(pl.col("_brk") == 0).group_by("subject_id").agg(pl.col("_cal").sort().alias("days"))
    in_course = {r["subject_id"]: r["days"] for r in course.iter_rows(named=True)}
    # the time of the course's first dose, when every dose of that day has one (review 47 F6)
    firsts = course.select("subject_id", pl.col("days").list.first().alias("_cal"))
    timed = {r[0]: r[1] for r in ld.join(firsts, on=["subject_id", "_cal"]).group_by("subject_id").agg(
        pl.when(pl.col("_timed").all()).then(pl.col("day").min())).iter_rows()}
    out_rows = (ld.join(days.filter(pl.col("_brk") == 0).select("subject_id", "_cal"), on=["subject_id", "_cal"],
                        how="anti").sort("subject_id", "day"))
    left: dict[str, list[tuple[str, float]]] = {}
    for r in out_rows.select("subject_id", "_agent", "day").iter_rows():
        left.setdefault(r[0], []).append((r[1], float(r[2])))
    out = {}
    for sid in dict.fromkeys([*in_course, *left]):
        d = tuple(float(x) for x in in_course.get(sid, []))
        out[sid] = Course(d[0] if d else None, d[-1] if d else None, d, tuple(left.get(sid, ())), gap, planned_span,
                          tol, first_out.get(sid, "span"), timed.get(sid))
    return out


def not_counted_why(c: Course, day: float) -> str:
    """Why a dose of a lymphodepletion agent on ``day`` is not the course: after the infusion, no course
    before day 0, the course would be too long with it, or the course already has its agents' planned
    number of days."""
    if day >= 0:
        return "after the infusion"
    if c.first is None:
        return "not a course"
    if c.broken_by == "count":
        return (f"before the course of days {c.first:g} to {c.last:g}, which has the planned number of days of "
                "each agent given then")
    return (f"before the course of days {c.first:g} to {c.last:g}, which would then span more than "
            f"{c.planned_span + c.tolerance:g} days: planned {c.planned_span:g} + ld_course_tolerance_days "
            f"{c.tolerance:g}")


def course_note(c: Course | None) -> str:
    """Words naming the doses of a lymphodepletion agent not taken as the course ("" when none)."""
    if c is None or not c.not_counted:
        return ""
    by: dict[tuple[str, str], list[float]] = {}
    for agent, day in c.not_counted:
        by.setdefault((agent, not_counted_why(c, day)), []).append(day)
    words = "; ".join(f"{a} on day(s) {', '.join(f'{d:g}' for d in ds)} ({why})" for (a, why), ds in by.items())
    return f"not counted as the lymphodepletion course: {words}"
