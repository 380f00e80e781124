"""The subject's lymphodepletion course: which recorded doses of a lymphodepletion agent are the course.

One reading for eligibility (where the screening window ends), the dose plan (its screening
creatinine and body size) and the deviations (the block shift inside a ``lymphodepletion_window``)
(review 40 A2/B1). Study-format "Time": day 0 is the first CAR-T infusion, so the course is given
before it. cartlab convention (rule ``<id>.screening_window``; docs/protocol.md "Lymphodepletion
course"):

* only doses on calendar days before day 0 count (a dose of a lymphodepletion agent on or after day
  0 is not the course: it never moves the screening window past the infusion);
* the course is the CONTIGUOUS run of those doses nearest before day 0: going back from the latest
  calendar day, a day belongs to the course while it is at most the protocol's course span (last
  planned minus first planned lymphodepletion day, at least 1 day; NCT04762485 days -6..-3: 3 days)
  before the next course day. An earlier dose of the same agents farther back is bridging (e.g.
  decitabine for AML on days -20, -19) and does not move the window; the reason names it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

__all__ = ["Course", "course_gap", "lymphodepletion_courses", "course_note"]


@dataclass(frozen=True)
class Course:
    """A subject's lymphodepletion course: its first and last calendar day, and the doses of a
    lymphodepletion agent not taken as the course ((agent, day) pairs: bridging, or after day 0)."""

    first: float | None
    last: float | None
    days: tuple[float, ...] = ()
    not_counted: tuple[tuple[str, float], ...] = field(default_factory=tuple)
    gap: float = 1.0


def course_gap(protocol) -> float:
    """The largest distance (calendar days) between two days of one course: the protocol's planned
    course span (last minus first planned lymphodepletion day), at least 1."""
    days = [float(d) for a in protocol.lymphodepletion for d in (getattr(a, "days", None) or ())]
    return max(1.0, max(days) - min(days)) if days else 1.0


def lymphodepletion_courses(doses: pl.DataFrame, protocol) -> dict[str, Course] | None:
    """Per subject with a dose of one of the protocol's lymphodepletion agents (read through the
    alias table), its :class:`Course` (``first`` None when no such dose is before day 0); None when
    the protocol has no lymphodepletion."""
    from cartlab.protocol.eligibility import protocol_ld_agent

    agents = [a.agent for a in protocol.lymphodepletion]
    if not agents:
        return None
    if doses.height == 0:
        return {}
    gap = course_gap(protocol)
    ld = doses.filter(protocol_ld_agent(pl.col("agent"), agents).is_not_null() & pl.col("day").is_not_null()
                      ).with_columns(_cal=(pl.col("day") + 1e-9).floor(),
                                     _agent=protocol_ld_agent(pl.col("agent"), agents))
    days = (ld.filter(pl.col("_cal") < 0).select("subject_id", "_cal").unique()
            .sort(["subject_id", "_cal"], descending=[False, True])
            .with_columns(_gap=(pl.col("_cal").shift(1) - pl.col("_cal")).over("subject_id").fill_null(0.0))
            .with_columns(_brk=(pl.col("_gap") > gap + 1e-9).cast(pl.Int32).cum_max().over("subject_id")))
    course = days.filter(pl.col("_brk") == 0).group_by("subject_id").agg(pl.col("_cal").sort().alias("days"))
    in_course = {r["subject_id"]: r["days"] for r in course.iter_rows(named=True)}
    out_rows = (ld.join(days.filter(pl.col("_brk") == 0).select("subject_id", "_cal"), on=["subject_id", "_cal"],
                        how="anti").sort("subject_id", "day"))
    left: dict[str, list[tuple[str, float]]] = {}
    for r in out_rows.select("subject_id", "_agent", "day").iter_rows():
        left.setdefault(r[0], []).append((r[1], float(r[2])))
    out = {}
    for sid in dict.fromkeys([*in_course, *left]):
        d = tuple(float(x) for x in in_course.get(sid, []))
        out[sid] = Course(d[0] if d else None, d[-1] if d else None, d, tuple(left.get(sid, ())), gap)
    return out


def course_note(c: Course | None) -> str:
    """Words naming the doses of a lymphodepletion agent not taken as the course ("" when none)."""
    if c is None or not c.not_counted:
        return ""
    by: dict[tuple[str, str], list[float]] = {}
    for agent, day in c.not_counted:
        why = ("after the infusion" if day >= 0 else
               f"more than {c.gap:g} days before the course" if c.first is not None else "not a course")
        by.setdefault((agent, why), []).append(day)
    words = "; ".join(f"{a} on day(s) {', '.join(f'{d:g}' for d in ds)} ({why})" for (a, why), ds in by.items())
    return f"not counted as the lymphodepletion course: {words}"
