"""The explanations' shared parts: :class:`Explanation` and the helpers every explainer uses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl

from cartlab.analyze import Analysis


@dataclass
class Explanation:
    what: str
    headline: str
    criteria: str
    days: pl.DataFrame  # day, grade, rule, reason, evidence
    #: the rule ids behind the headline (their verification status is shown with it)
    rules: tuple[str, ...] = ()
    #: rule id -> the status its rows carry when that is not the rule's own (an ADTTE row's ``rule_status``:
    #: a shared censoring rule takes its parameter's status, review 41 F5 / diff1 F4); the worst per rule
    row_statuses: Mapping[str, str] = field(default_factory=dict)


def _rows(a: Analysis, name: str, sid: str) -> pl.DataFrame:
    """The subject's rows of an analysis table."""
    frame = a.table(name)
    col = "subject_id" if "subject_id" in frame.columns else "USUBJID"
    return frame.filter(pl.col(col) == sid)


def _graded_days(daily: pl.DataFrame) -> pl.DataFrame:
    """An ASTCT daily table (crs_daily, icans_daily) as explain rows: the grade as ``lo-hi`` where the
    inputs not recorded leave it a range (``0-1``: missing is not grade 0), and ``shown``: the days
    worth listing without --all-days (a grade or a range above 0, or a rule other than ``*.g0``)."""
    # CRS grade_min: below the grade when events.csv was not given (review 40 A1)
    g = pl.col("grade_min") if "grade_min" in daily.columns else pl.col("grade")
    gmax = pl.col("grade_max") if "grade_max" in daily.columns else g
    text = (pl.when(gmax.is_not_null() & g.is_not_null() & (gmax > g))
            .then(pl.format("{}-{}", g, gmax)).otherwise(g.cast(pl.String)))
    shown = ((g.fill_null(0) > 0) | (gmax.fill_null(0) > 0)
             | (pl.col("rule").is_not_null() & ~pl.col("rule").str.ends_with(".g0")))
    return daily.select("day", text.alias("grade"), "rule", "reason", "evidence", shown.alias("shown"))


def _top_rules(daily: pl.DataFrame) -> tuple[str, ...]:
    """The rule(s) behind an ASTCT headline (review 37 C2: shown with their status whatever it is): the
    rule of the first day with the subject's highest grade."""
    if daily.height == 0 or "rule" not in daily.columns:
        return ()
    top = daily.filter(pl.col("grade") == pl.col("grade").max()).sort("day")
    return tuple(x for x in top["rule"].head(1).to_list() if x)


def _changed_options(applied: dict, default: dict) -> str:
    """" | options: k=v, ..." for the options of ``applied`` that differ from ``default`` (the engine's
    options resolved with their defaults), "" when none does: the CLI's own line then says "options: all
    defaults", so an explanation prints one "options:" line, not two (review 38 C1, review 39 C2 and
    diff2 C3: CRS, ICANS, CRS scales, ICAHT, endpoints).

    >>> _changed_options({"a": 1, "b": 2}, {"a": 1, "b": 3})
    ' | options: b=2'
    >>> _changed_options({"a": 1}, {"a": 1})
    ''
    """
    changed = {k: v for k, v in applied.items() if k not in default or default[k] != v}
    return (" | options: " + ", ".join(f"{k}={v}" for k, v in changed.items())) if changed else ""


def _row_frame(rows: list[dict]) -> pl.DataFrame:
    """Explanation rows (day, grade, rule, reason, evidence) from dicts; evidence lists of text."""
    def refs(v) -> list[str]:
        if v is None:
            return []
        return [str(x) for x in v] if isinstance(v, (list, tuple, pl.Series)) else [x for x in str(v).split("; ") if x]

    status = any("rule_status" in r for r in rows)  # a row's own status (ADTTE: review 41 diff1 F4)
    return pl.DataFrame([{"day": None if r.get("day") is None else float(r["day"]), "grade": r.get("grade"),
                          "rule": r.get("rule"), "reason": r.get("reason"), "evidence": refs(r.get("evidence")),
                          "shown": True, **({"rule_status": r.get("rule_status")} if status else {})} for r in rows],
                        schema={"day": pl.Float64, "grade": pl.Int64, "rule": pl.String, "reason": pl.String,
                                "evidence": pl.List(pl.String), "shown": pl.Boolean,
                                **({"rule_status": pl.String} if status else {})})


def _one(a: Analysis, name: str, sid: str) -> dict | None:
    rows = _rows(a, name, sid) if a.has(name) else None
    return None if rows is None or rows.height == 0 else rows.row(0, named=True)


def _not_derived(what: str, label: str, criteria: str) -> Explanation:
    return Explanation(what, f"{label} not derived for this subject", criteria, _row_frame([]))


def _or(v, default: float) -> float:
    return default if v is None else v
