"""The late window shared by N-ICAHT and T-ICAHT (EHA/EBMT 2023; Rejeski et al., Blood 2025, Table 1).

One implementation, parametrised by the count (value column, label "ANC"/"PLT", flag prefix and
levels), of what both instruments do after day 30 (session 35, review s34 M1: the two engines
carried near-copies):

* the highest late grade the data leave possible (:func:`late_upper_grade`; missing is not
  negative: a day without a count could have been a test below every level);
* the texts of a late reason: the window (:func:`late_window_text`), its lowest counts
  (:func:`late_lowest_text`), the "or nontransient" clause of a not-evaluable window
  (:func:`nontransient_text`) and the range a window short of counts leaves
  (:func:`late_range_text`, naming the days without a count as
  :func:`~cartlab.grading.hemato_common.day_ranges` writes them: "41-44, 60-100");
* the days interpolated across a gap longer than ``range_interpolation_gap_days`` (session 48, review
  48 F1), known for the grade but unknown for the ranges of both windows (:func:`long_gap_day`,
  :func:`gap_days` and the texts naming them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import polars as pl

from cartlab.criteria import CriteriaTable
from cartlab.grading.common import last_covered_day
from cartlab.grading.hemato_common import day_ranges, fmt_expr, grades, nontransient_runs, py_str
from cartlab.model import Study
from cartlab.provenance import EVIDENCE, evidence_ref

__all__ = ["gap_below_text", "gap_days", "gap_range_text", "late_lowest_text", "long_gap_day", "nontransient_days",
           "late_range_text", "late_upper_grade", "late_window_text", "lowest_text", "window_grades", "window_rules",
           "nontransient_text"]


def long_gap_day(opts: dict[str, Any]) -> pl.Expr:
    """An interpolated day of :func:`~cartlab.grading.hemato_common.daily_series` (``source``,
    ``prev_day``, ``next_day``) inside a gap of more than ``range_interpolation_gap_days`` days without a
    count (session 48, review 48 F1; cartlab convention, missing is not negative): the grade reads it as
    interpolated (the contract), the highest grade possible (``*_grade_max``) as unknown (count
    recovery's "never below" reads such a gap alike: ``never_below_max_gap_days``). Always False with
    the option null (cartlab before session 48)."""
    n = opts.get("range_interpolation_gap_days")
    if n is None:
        return pl.lit(False)
    return ((pl.col("source") == "interpolated")
            & ((pl.col("next_day") - pl.col("prev_day") - 1) > int(n))).fill_null(False)


def gap_days(frame: pl.DataFrame, opts: dict[str, Any], flags: Sequence[str], name: str) -> pl.DataFrame:
    """Per subject with a :func:`long_gap_day` in ``frame``: ``_<name>_gap_days`` (their count),
    ``_<name>_gap_list`` ("1-29, 41-59") and, per flag of ``flags``, ``_<name>_gap_<flag>`` (how many of
    them the interpolation puts at or below that level: days the grade counts that were not measured)."""
    g = frame.filter(long_gap_day(opts))
    out = (g.group_by("subject_id").agg(pl.len().cast(pl.Int64).alias(f"_{name}_gap_days"),
                                        *[pl.col(c).fill_null(False).sum().cast(pl.Int64).alias(f"_{name}_gap_{c}")
                                          for c in flags])
           .join(day_ranges(g, f"_{name}_gap_list"), on="subject_id", how="left"))
    for c in flags:  # the gap days at or below each level ("41-59")
        out = out.join(day_ranges(g.filter(pl.col(c).fill_null(False)), f"_{name}_gap_{c}_list"), on="subject_id",
                       how="left")
    return out


def gap_below_text(name: str, flags: Sequence[tuple[str, str]], opts: dict[str, Any]) -> pl.Expr:
    """"; 19 of the days < 20 (days 41-59) are interpolated across ..." for the columns of
    :func:`gap_days` (``flags``: (flag, "< 20")); "" when no such day is counted below a level."""
    n = opts.get("range_interpolation_gap_days")
    parts = [pl.when(pl.col(f"_{name}_gap_{c}").fill_null(0) > 0).then(
        pl.format(f"{{}} of the days {what} (days {{}})", pl.col(f"_{name}_gap_{c}"), pl.col(f"_{name}_gap_{c}_list")))
        for c, what in flags]
    if n is None or not parts:
        return pl.lit("")
    txt = pl.concat_str(parts, separator=", ", ignore_nulls=True)
    return pl.when(txt != "").then(pl.format(
        f"; {{}} are interpolated across gaps of more than {n} days without a count (option "
        "range_interpolation_gap_days): not measured, so the grade could be lower", txt)).otherwise(pl.lit(""))


def gap_range_text(name: str, label: str, opts: dict[str, Any]) -> pl.Expr:
    """"no ANC measured on days 1-29 (...)": the days of :func:`gap_days` a range reads as unknown
    (null when there are none)."""
    return pl.when(pl.col(f"_{name}_gap_list").is_not_null()).then(pl.format(
        f"no {label} measured on days {{}} (interpolated for the grade, but across gaps of more than "
        f"{opts.get('range_interpolation_gap_days')} days without a count: unknown for the range, option "
        "range_interpolation_gap_days)", pl.col(f"_{name}_gap_list")))


def late_upper_grade(daily: pl.DataFrame, wins: pl.DataFrame, sids: list[str], opts: dict[str, Any],
                     levels: Sequence[str], table: CriteriaTable, *, value: str, flag: str, out: str,
                     features: Callable[[pl.DataFrame], pl.DataFrame], censored: str | None = None,
                     keep: Sequence[str] = (), fills: Sequence[pl.Expr] = ()) -> pl.DataFrame:
    """The highest late grade the data leave possible (N-ICAHT, T-ICAHT; session 34): every day of
    the late window (``wins``: ``subject_id``, ``start``, ``end``; ``late_window_end_inclusive``)
    without a count (measured or interpolated) read as a test below every level (``value`` 0, flags
    ``<flag><level>`` True, ``source`` "unknown": a recorded day), and every censored result at a
    level its bound leaves open ("<0.5" against 0.1) as below it; nontransient runs
    (:func:`~cartlab.grading.hemato_common.nontransient_runs`, columns ``<out><level>``) over the
    early days of ``daily`` and these; then graded by the table's late rules on ``features(frame)``.

    ``censored``: the column holding a censored result as text; a day with one is a day with a
    count (N-ICAHT). Without it a day has no count when its value and every flag are null (T-ICAHT,
    as :func:`~cartlab.grading.hemato_common.early_upper_grade`). ``keep``/``fills``: the engine's
    other columns of ``daily`` and how a day without a row fills them.

    A day interpolated across a gap longer than ``range_interpolation_gap_days`` is read as a day
    without a count (session 48, review 48 F1).

    Returns ``subject_id``, ``_late_grade_max``, ``_late_unknown_days`` (the window's days without a
    count or in such a gap; null when the window is empty), ``_late_missing_days`` and
    ``_late_unknown_list`` (the days without a count, "41-44, 60") and the columns of :func:`gap_days`
    (``_late_gap_days``, ``_late_gap_list``, ...)."""
    flags = [f"{flag}{n}" for n in levels]
    last = (pl.col("end").floor() if opts["late_window_end_inclusive"] else pl.col("end").ceil() - 1).cast(pl.Int64)
    grid = (wins.select("subject_id", pl.int_ranges(pl.col("start").ceil().cast(pl.Int64), last + 1).alias("day"))
            .explode("day").drop_nulls("day"))
    cols = ["subject_id", "day", value, *([censored] if censored else []), "source", "prev_day", "next_day", "evidence",
            *keep, *flags]
    up = grid.join(daily.filter(pl.col("window") == "late").select(cols), on=["subject_id", "day"], how="left",
                   maintain_order="left")
    no_count = pl.col(value).is_null() & (pl.col(censored).is_null() if censored else
                                          pl.all_horizontal([pl.col(c).is_null() for c in flags]))
    # session 48 (review 48 F1): a day interpolated across a gap longer than range_interpolation_gap_days
    # is unknown here too (named apart: _late_gap_list), as a day without a count
    gaps = gap_days(up, opts, flags, "late")
    unknown = up.group_by("subject_id").agg(no_count.sum().cast(pl.Int64).alias("_late_missing_days")).join(
        day_ranges(up.filter(no_count), "_late_unknown_list"), on="subject_id", how="left").join(
        gaps, on="subject_id", how="left").with_columns(
        (pl.col("_late_missing_days") + pl.col("_late_gap_days").fill_null(0)).alias("_late_unknown_days"))
    gap = long_gap_day(opts)
    up = up.with_columns(*[pl.when(gap).then(None).otherwise(pl.col(c)).alias(c) for c in (value, *flags)])
    # a day without a count could have been a test below every level (session 34: it was read as
    # below but never as a measurement, so a window short of counts could never reach its 2-test grades)
    up = up.with_columns(
        pl.col(value).fill_null(pl.when(no_count).then(0.0)), pl.col("evidence").fill_null(pl.lit([], dtype=EVIDENCE)),
        pl.when(no_count).then(pl.lit("unknown")).otherwise(pl.col("source")).alias("source"),
        pl.lit("late").alias("window"), *fills, *[pl.col(c).fill_null(True) for c in flags])
    early = daily.filter(pl.col("window") == "early").select(up.columns)
    nt = nontransient_runs(pl.concat([early, up]), sids, opts, list(levels), flag, out)
    worst = features(up).join(nt, on="subject_id", how="left", maintain_order="left").with_columns(
        grades(table, opts, ("late",)))
    return worst.select("subject_id", pl.col("late_grade").alias("_late_grade_max")).join(
        unknown, on="subject_id", how="left", maintain_order="left")


def window_grades(prefix: str, early_ok: pl.Expr, late_ok: pl.Expr) -> list[pl.Expr]:
    """The grade columns of an ICAHT-family engine (``prefix``: "icaht", "t_icaht"): the early and late
    grades and rules where their window is evaluable, and the highest grades possible (missing is not
    negative: a not-evaluable late window keeps ``_late_grade_max``; an empty one is null)."""
    return [
        pl.when(late_ok).then(pl.max_horizontal("late_grade", "_late_grade_max"))
        .otherwise(pl.when(pl.col("_late_unknown_days").is_not_null()).then(pl.col("_late_grade_max")))
        .alias(f"{prefix}_late_grade_max"),
        pl.when(early_ok).then(pl.col("early_grade")).alias(f"{prefix}_early_grade"),
        # session 38 (review s38 B3): an early window without any count is not evaluable with the grade
        # its unknown days leave possible (as the late window), not empty
        pl.when(early_ok).then(pl.max_horizontal("early_grade", "_early_grade_max"))
        .otherwise(pl.when(pl.col("early_unknown_days") > 0).then(pl.col("_early_grade_max")))
        .alias(f"{prefix}_early_grade_max"),
        pl.when(early_ok).then(pl.col("early_rule")).alias("early_rule"),
        pl.when(late_ok).then(pl.col("late_grade")).alias(f"{prefix}_late_grade"),
        pl.when(late_ok).then(pl.col("late_rule")).alias("late_rule"),
    ]


def window_rules(table: CriteriaTable, prefix: str) -> list[pl.Expr]:
    """``early_rule``/``late_rule`` naming the grade-0 row (``<prefix>.<window>.g0`` of the table's
    ``conventions``) where the window is evaluable and no rule of its set holds, and the combined
    ``rule`` ("early: <id>; late: <id>") with ``<prefix>.<window>.not_evaluable`` only where the grade
    is empty (session 36, review s36 A1: a grade 0 was written as not evaluable). Both ids must be
    rows of the table."""
    rows = {r.get("id") for r in table.extra("conventions")}
    out, parts = [], []
    for window in ("early", "late"):
        g0, ne = f"{prefix}.{window}.g0", f"{prefix}.{window}.not_evaluable"
        missing = [i for i in (g0, ne) if i not in rows]
        if missing:
            raise KeyError(f"criteria table {table.name!r}: no conventions row {missing} (the rule ids the engine writes)")
        grade, rule = pl.col(f"{prefix}_{window}_grade"), pl.col(f"{window}_rule")
        expr = (pl.when(grade.is_null()).then(pl.lit(None, dtype=pl.String))
                .when(rule.is_null() | (rule == "")).then(pl.lit(g0)).otherwise(rule))
        out.append(expr.alias(f"{window}_rule"))
        parts += [pl.lit(f"{window}: " if window == "early" else "; late: "), expr.fill_null(ne)]
    return [*out, pl.concat_str(parts).alias("rule")]


def late_window_text(start: str, end: str, why: str) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """(the window "days 31-100 (window ends: day 100)", the not-evaluable sentence when it is
    empty, its emptiness) of a late window."""
    ws, we = pl.col(start).cast(pl.Int64), pl.col(end)
    win = pl.concat_str(pl.lit("days "), py_str(ws), pl.lit("-"), fmt_expr(we), pl.lit(" (window ends: "),
                        py_str(pl.col(why)), pl.lit(")"))
    empty = pl.concat_str(pl.lit("not evaluable: the late window is empty (it ends on day "), fmt_expr(we),
                          pl.lit(", "), py_str(pl.col(why)), pl.lit(", before day "), py_str(ws), pl.lit(")."))
    return win, empty, we < ws


def lowest_text(label: str, prefix: str) -> pl.Expr:
    """"lowest ANC 0.3 on day 40, second lowest 0.4 on day 45" of the late window's values."""
    def num(c: str) -> pl.Expr:  # a censored result as written ("<0.5"): the engines keep it in _<c>_cs
        return pl.coalesce(pl.col(f"_{c}_cs"), fmt_expr(pl.col(c)), pl.lit("NA"))

    return pl.concat_str(
        pl.lit(f"lowest {label} "), num(f"{prefix}_nadir"), pl.lit(" on day "), py_str(pl.col(f"{prefix}_nadir_day")),
        pl.lit(", second lowest "), num(f"{prefix}_confirmed"), pl.lit(" on day "),
        py_str(pl.col(f"{prefix}_confirmed_day")))


def late_lowest_text(n: pl.Expr, label: str, prefix: str) -> pl.Expr:
    """The lowest late counts (``<prefix>_nadir``/``_confirmed`` with their days); a window graded on
    a nontransient run may have one measurement (``n``) or none (session 34: it printed "second
    lowest NA on day None")."""
    nadir = pl.coalesce(pl.col(f"_{prefix}_nadir_cs"), fmt_expr(pl.col(f"{prefix}_nadir")))
    return (pl.when(n >= 2).then(lowest_text(label, prefix))
            .when(n == 1).then(pl.format(f"lowest {label} {{}} on day {{}} (the only measurement)", nadir,
                                         pl.col(f"{prefix}_nadir_day")))
            .otherwise(pl.lit("no measurement in the window")))


def nontransient_text(opts: dict, what: str, where: str) -> str:
    """What else would have made a late window evaluable (option ``late_nontransient``; "" when
    off): ", and no nontransient <what> (a run <where> a level ...)"."""
    if not opts.get("late_nontransient"):
        return ""
    return (f", and no nontransient {what} (a run {where} a level continuing from the early window or "
            f"lasting >= {opts['stable_recovery_days']} days)")


def late_range_text(grade: str, grade_max: str, no_count: str, none_text: str, extra: pl.Expr,
                    opts: dict | None = None, label: str = "count") -> pl.Expr:
    """" Could be up to grade X: ..." - the range a late window leaves (session 34): up to
    ``grade_max`` had its days without a count (``_late_unknown_days``, named by
    ``_late_unknown_list``: "N day(s) of the late window (days 41-44, 60) have no <no_count>";
    ``none_text`` when there are none) been below every level, then ``extra``, and, when ``grade``
    is empty (not evaluable), at least what the known days confirm (``late_grade``: missing is not
    negative, a range naming the missing counts, never a grade 0)."""
    parts = [pl.when(pl.col("_late_missing_days").fill_null(0) > 0).then(pl.format(
        f"{{}} day(s) of the late window (days {{}}) have no {no_count}", pl.col("_late_missing_days"),
        pl.col("_late_unknown_list")))]
    if opts is not None:  # session 48 (review 48 F1): days interpolated across a long gap
        parts.append(gap_range_text("late", label, opts))
    named = pl.concat_str(parts, separator="; ", ignore_nulls=True)
    missing = pl.when(named != "").then(named).otherwise(pl.lit(none_text))
    lower = (pl.when(pl.col(grade).is_not_null()).then(pl.lit(""))
             .when(pl.col("late_grade") > 0).then(pl.format("; the known days alone confirm grade {}", pl.col("late_grade")))
             .otherwise(pl.lit("; the known days alone confirm no grade (a lower bound of 0, not a finding of none)")))
    return pl.format(" Could be up to grade {}: {}{}{}; had they been below every level, the grade would be that.",
                     py_str(pl.col(grade_max)), missing, extra, lower)


def gcsf_days_text(study: Study, lo: float, hi: float) -> pl.DataFrame:
    """Per subject with a ``gcsf`` intervention (interventions.csv) overlapping days ``lo``-``hi``:
    ``_gcsf`` - "G-CSF (filgrastim) on days 5-10 (interventions.csv:3)". ICAHT grades the ANC as
    measured under G-CSF (no G-CSF rule in the verified text; convention icaht.gcsf_not_considered,
    session 38, review s38 C1): the reason names those days."""
    iv = study.interventions
    if iv.is_empty() or "category" not in iv.columns:
        return pl.DataFrame(schema={"subject_id": pl.String, "_gcsf": pl.String})
    if "end_day" not in iv.columns:
        iv = iv.with_columns(pl.lit(None, dtype=pl.Float64).alias("end_day"))
    # the last day covered (an end at exactly 00:00 covers up to the day before; review 38 diff1 F7)
    end = last_covered_day(iv)
    agent = pl.col("agent") if "agent" in iv.columns else pl.lit(None, dtype=pl.String)
    g = (iv.filter((pl.col("category") == "gcsf") & pl.col("start_day").is_not_null()
                   & (pl.col("start_day") <= hi) & (end >= lo))
         .with_columns(evidence_ref().alias("_ref"), end.alias("_end"))
         .sort("subject_id", "start_day"))
    return g.group_by("subject_id", maintain_order=True).agg(pl.format(
        "G-CSF{} on {} ({})",
        pl.when(agent.is_not_null()).then(pl.format(" ({})", agent)).otherwise(pl.lit("")),
        pl.when(pl.col("start_day").floor() == pl.col("_end")).then(pl.format("day {}", pl.col("start_day").cast(pl.Int64)))
        .otherwise(pl.format("days {}-{}", pl.col("start_day").cast(pl.Int64), pl.col("_end").cast(pl.Int64))),
        pl.col("_ref").fill_null("no row")).str.join("; ").alias("_gcsf"))


def nontransient_days(levels: Sequence[str], out: str, count: str) -> pl.Expr:
    """``late_nontransient_days``: the run a ``*_nontransient`` late rule rests on (session 40, review
    s40 A2), read from :func:`~cartlab.grading.hemato_common.nontransient_runs`' ``_<out><level>_days``
    for the level the rule names (``<count><level>``: "anc500", "plt20"); null for any other rule."""
    rule = pl.col("late_rule").fill_null("")
    e = pl.lit(None, dtype=pl.String)
    for n in levels:
        e = pl.when(rule.str.contains(rf"_{count}{n}(_[^.]*)?_nontransient$")).then(pl.col(f"_{out}{n}_days")).otherwise(e)
    return e.alias("late_nontransient_days")


def nontransient_days_text() -> pl.Expr:
    """"; nontransient run: days 40-60 (...)" of a late grade resting on a nontransient run ("" otherwise)."""
    return (pl.when(pl.col("late_nontransient_days").is_not_null())
            .then(pl.concat_str(pl.lit("; nontransient run: "), pl.col("late_nontransient_days"))).otherwise(pl.lit("")))

