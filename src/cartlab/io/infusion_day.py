"""The first CAR-T dose and day 0: the study format's definition of the day axis.

Study format v1, "Time": "`day`: days relative to the first CAR-T infusion. Day 0 is the infusion
day"; "subjects.csv": `infusion_date` / `infusion_datetime` is the "calendar anchor of day 0".

* A CAR-T dose **before** day 0 (calendar day < 0, or a date-time before the infusion date) cannot
  be: no CAR-T infusion precedes the first one. It is an error naming the subject and the row (the
  days, the infusion date or the row are wrong; a CAR-T of an earlier line of therapy is no dose of
  this course).
* A first recorded CAR-T dose **after** day 0 with none on day 0 can be valid: doses.csv need not be
  complete, so it may be a later dose (a split dose, a second infusion) after a day-0 infusion that
  was not recorded. It is read, with a warning naming the subject and the row and saying how the
  engines then differ: ICAHT and the response assessments count from day 0, while CRS/ICANS
  (``first_day = infusion``) and the kinetics start at the first CAR-T dose row.

CAR-T agents are recognised as everywhere else (:func:`cartlab.kinetics.agents.car_t_agent_expr`).
"""

from __future__ import annotations

import polars as pl

from cartlab.io.clock import day_number, day_zero, has_clock_time, is_timed, wall_clock
from cartlab.io.errors import Issue

__all__ = ["first_car_t_not_on_day0", "infusion_time_differs"]

#: subjects named one by one; the rest in one issue
MAX_SUBJECTS = 25


def _num(x: float) -> str:
    return f"{round(float(x), 4):g}"


def first_car_t_not_on_day0(doses: pl.DataFrame, subjects: pl.DataFrame, fname: str, row: str) -> list[Issue]:
    """An error (before day 0) or a warning (after it) for each subject whose first CAR-T dose row, by
    its day on the study's axis, is not on calendar day 0 (0 <= day < 1).

    ``doses`` is the read doses table (``day`` resolved from ``datetime`` where needed, ``row`` the
    1-based data-row number); ``subjects`` the read subjects table. Rows of unknown subjects, and rows
    without a readable day, have their own errors and are skipped here.
    """
    from cartlab.kinetics.agents import car_t_agent_expr  # lazily: cartlab.kinetics imports the readers

    if doses.height == 0 or "agent" not in doses.columns:
        return []
    known = subjects["subject_id"].drop_nulls().implode()
    car = doses.filter(pl.col("subject_id").is_in(known) & pl.col("day").is_not_null()
                       & pl.col("day").is_finite() & car_t_agent_expr(pl.col("agent")))
    if car.height == 0:
        return []
    dt = pl.col("datetime") if "datetime" in car.columns else pl.lit(None, dtype=pl.String)
    first = (car.with_columns(dt.alias("__dt"))
             .filter(pl.col("day") == pl.col("day").min().over("subject_id"))
             .group_by("subject_id", maintain_order=True)
             .agg(pl.col("day").first(), pl.col(row).sort(), pl.col("agent").first(), pl.col("__dt").first()))
    bad = first.filter(pl.col("day").floor() != 0).sort(pl.col(row).list.first())
    if bad.height == 0:
        return []
    anchor = {}
    if "infusion_date" in subjects.columns:
        src = subjects.select(
            "subject_id",
            pl.when(pl.col("infusion_datetime").is_not_null())
            .then(pl.lit("infusion_datetime ") + pl.col("infusion_datetime"))
            .otherwise(pl.lit("infusion_date ") + pl.col("infusion_date")).alias("a"))
        anchor = {k: v for k, v in src.iter_rows() if v is not None}
    out = []
    for sev in ("error", "warning"):
        part = bad.filter((pl.col("day").floor() < 0) if sev == "error" else (pl.col("day").floor() > 0))
        for i, (sid, day, rows, agent, dtext) in enumerate(part.iter_rows()):
            if i == MAX_SUBJECTS:
                rest = part.slice(i)
                out.append(Issue(fname, "day", f"{rest.height} more subjects whose first CAR-T dose is "
                                 f"{'before' if sev == 'error' else 'after'} day 0: "
                                 f"{', '.join(rest['subject_id'].to_list())}",
                                 sorted(r for rs in rest[row].to_list() for r in rs), sev))
                break
            out.append(_issue(fname, sid, float(day), rows, agent, dtext, anchor.get(sid), sev))
    return out


def _issue(fname: str, sid: str, day: float, rows: list[int], agent: str, dtext: str | None, anchor: str | None,
           sev: str) -> Issue:
    cal = int(day // 1)
    cday = f" (calendar day {cal})" if day != cal else ""
    when, col = f"on day {_num(day)}{cday}", "day"
    if dtext is not None and anchor is not None:  # the date-time and the infusion date disagree
        when, col = f"dated {dtext}, day {_num(day)} from {anchor}{cday}", "datetime"
    head = f"subject {sid!r}: the first CAR-T dose (agent {agent!r}) is {when}"
    if sev == "error":
        fix = ("correct the subject's infusion_date/infusion_datetime or this dose's datetime" if col == "datetime"
               else "renumber the subject's days from the first infusion (this dose on day 0) or correct this row")
        return Issue(fname, col, f"{head}, before day 0, but day 0 is the day of the first CAR-T infusion (spec "
                     f"\"Time\": \"days relative to the first CAR-T infusion. Day 0 is the infusion day\"): no CAR-T "
                     f"can precede it. {fix[0].upper()}{fix[1:]}; a CAR-T of an earlier line of therapy does not "
                     "belong in doses", rows, "error")
    fix = ("correct infusion_date/infusion_datetime or this dose's datetime" if col == "datetime"
           else "renumber the subject's days (this dose on day 0)")
    return Issue(fname, col, f"{head}, and none is on day 0, the first CAR-T infusion (spec \"Time\"): read as a "
                 f"later dose after a day-0 infusion not recorded in doses. ICAHT and the response assessments "
                 f"count from day 0, but CRS/ICANS are graded from day {_num(day)} and the kinetics count time "
                 f"from it (the first CAR-T dose row). If this is the first infusion, {fix}", rows, "warning")


def _clock(day: float) -> str:
    """The clock time of a fractional day: 0.6667 -> 16:00."""
    m = round((float(day) % 1) * 1440)
    return f"{m // 60:02d}:{m % 60:02d}"


def infusion_time_differs(doses: pl.DataFrame, subjects: pl.DataFrame, fname: str, row: str) -> list[Issue]:
    """A warning per subject whose ``infusion_datetime`` (with a clock time) and first CAR-T dose row
    (timed: a date-time with a clock time or a fractional day) are on day 0 but more than a minute apart
    (review 39 B7). Both say when the first CAR-T infusion was (spec "Time": day 0 = the first CAR-T
    infusion); the kinetics count time from the dose row (``kinetics.agents.car_t_infusions`` takes
    infusion_datetime's time only where the dose row has none), so a sample between the two times is
    read as pre-dose. A dose off day 0 has its own message (:func:`first_car_t_not_on_day0`)."""
    from cartlab.kinetics.agents import car_t_agent_expr  # lazily: cartlab.kinetics imports the readers

    if doses.height == 0 or "agent" not in doses.columns or "infusion_datetime" not in subjects.columns:
        return []
    idt = pl.col("infusion_datetime")
    inf = (subjects.filter(has_clock_time(idt))
           .select("subject_id", idt.alias("__idt"),
                   day_number(wall_clock(idt), day_zero(idt, pl.col("infusion_date"))).alias("__iday"))
           .drop_nulls("__iday").unique("subject_id", keep="first"))
    if inf.height == 0:
        return []
    dt = "datetime" if "datetime" in doses.columns else None
    car = doses.filter(pl.col("day").is_not_null() & pl.col("day").is_finite() & car_t_agent_expr(pl.col("agent")))
    first = (car.filter(pl.col("day") == pl.col("day").min().over("subject_id"))
             .filter((pl.col("day").floor() == 0) & is_timed("day", dt))
             .group_by("subject_id", maintain_order=True)
             .agg(pl.col("day").first(), pl.col(row).sort(),
                  (pl.col(dt) if dt else pl.lit(None, dtype=pl.String)).first().alias("__ddt")))
    bad = first.join(inf, on="subject_id", how="inner").filter((pl.col("day") - pl.col("__iday")).abs() > 1 / 1440)
    out = []
    for sid, day, rows, ddt, idt_text, iday in bad.iter_rows():
        dose = f"dated {ddt}" if ddt is not None and "T" in str(ddt).replace(" ", "T") else f"on day {_num(day)}"
        out.append(Issue(fname, "datetime" if dose.startswith("dated") else "day",
                         f"subject {sid!r}: subjects' infusion_datetime {idt_text} puts the first CAR-T infusion at "
                         f"{_clock(iday)} (day {_num(iday)}), but the first CAR-T dose row is {dose} ({_clock(day)}, "
                         f"day {_num(day)}): the kinetics count time from the dose row (spec \"Time\": day 0 is the "
                         "first CAR-T infusion), so a sample between the two times is read as "
                         f"{'pre-dose' if day > iday else 'post-dose'}; correct one of them",
                         rows, severity="warning"))
    return out
