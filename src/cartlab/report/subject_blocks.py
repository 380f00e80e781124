"""The grade, response and protocol sections of a subject page (:mod:`cartlab.report.html`): each
reads the one :class:`~cartlab.analyze.Analysis` (never re-derives), shows a grade range where an
input is missing (with the days and the missing inputs named), and says "not evaluable" with the
reason rather than a grade when nothing was measured."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import polars as pl

# post_baseline: the rows a worst on-treatment grade reads (shared with explain; cohort_stats imports it here)
from cartlab.grading.lab_worst import post_baseline, worst_labs  # noqa: F401
from cartlab.provenance import evidence_list
from cartlab.report.cells import UNSETTLED_MARK, _cell, _day, _table, grade_range, grade_span
from cartlab.report.provenance_marks import apply_classes, refs_text, with_marks


def _of(analysis, name: str, subject_id: str) -> pl.DataFrame | None:
    """One subject's rows of an analysis table (None when the table could not be derived)."""
    if not analysis.has(name):
        return None
    frame = analysis.table(name)
    col = "USUBJID" if "USUBJID" in frame.columns and "subject_id" not in frame.columns else "subject_id"
    return frame.filter(pl.col(col) == subject_id)


#: a grading engine's ``missing_inputs`` name -> the words the page uses ("range: missing temperature")
MISSING_WORDS = {
    "TEMP": "temperature",
    "SYSBP": "systolic blood pressure",
    "ICE/CAPD": "ICE/CAPD score",
    "ICE": "ICE score",  # review 39 C1: the score the age calls for
    "CAPD": "CAPD score",
    "events.csv (not given)": "events (events.csv not given)",
    "o2_flow_lpm": "oxygen flow",
    "vasopressor agent": "vasopressor agent",
    "death attribution": "death attribution",
    "age_years": "age",
}


def _grade_text(lo: Any, hi: Any, missing: Sequence[str] = (), why: str | None = None) -> str:
    """A worst grade with its range, as the CRS scales' rows: "3", "0–1 (range: missing temperature)"."""
    if hi is None or lo is None or hi == lo:
        return _cell(lo)
    why = why or (f"missing {', '.join(missing)}" if missing else None)
    return f"{grade_span(lo, hi)} (range{': ' + why if why else ''})"


def _range_days(daily: pl.DataFrame | None, lo: Any, hi: Any) -> tuple[list[Any], list[str]]:
    """The days whose upper grade reaches the subject's upper bound ``hi`` above its grade ``lo`` and the
    inputs missing on those days (a daily ASTCT table: ``grade_max``, ``missing_inputs``)."""
    if daily is None or hi is None or "grade_max" not in daily.columns or (lo is not None and hi <= lo):
        return [], []
    rows = daily.filter(pl.col("grade_max") == hi)
    if lo is not None:
        rows = rows.filter(pl.col("grade_max") > pl.col("grade").fill_null(-1))
    rows = rows.sort("day")
    missing: list[str] = []
    if "missing_inputs" in rows.columns:
        for names in rows["missing_inputs"].to_list():
            for n in names or []:
                word = MISSING_WORDS.get(n, n)
                if word not in missing:
                    missing.append(word)
    return rows["day"].to_list(), missing


def _range_reason(hi: Any, days: list[Any], otherwise: str | None) -> str | None:
    if not days:
        return otherwise
    shown = ", ".join(_day(d) for d in days[:8]) + (" ..." if len(days) > 8 else "")
    return f"could be up to grade {_cell(hi)} on day(s) {shown}"


def _see_episodes(grade: Any, daily: pl.DataFrame | None, what: str) -> str:
    """Where a settled worst grade is explained: the episode table for grade 1 or more; for grade 0,
    which has no episode row, "no CRS episode: grade 0 on every assessed day (days 0–28)"."""
    if grade is None or grade != 0:
        return "see the episode table"
    text = f"no {what} episode: grade 0 on every assessed day"
    if daily is not None and daily.height and "day" in daily.columns:
        days = daily.filter(pl.col("grade").is_not_null())["day"] if "grade" in daily.columns else daily["day"]
        if days.len():
            text += f" (days {_day(days.min())}–{_day(days.max())})"
    return text


def _summary_value(analysis, name: str, subject_id: str, col: str) -> Any:
    df = _of(analysis, name, subject_id)
    return df[col][0] if df is not None and df.height and col in df.columns else None


def _episode_range(e: dict, crs_daily, icans_daily, icaht) -> str | None:
    """An episode's grade range: the highest upper grade of its days (ASTCT CRS/ICANS) or the early
    ICAHT upper grade, where above the episode's grade; else None."""
    grade, term = e.get("ATOXGR"), (e.get("AETERM") or "").lower()
    if grade is None:
        return None
    daily = crs_daily if term.startswith("cytokine release") else icans_daily if "neurotoxicity" in term else None
    if daily is not None and "grade_max" in daily.columns and e.get("ASTDY") is not None:
        end = e.get("AENDY") if e.get("AENDY") is not None else e["ASTDY"]
        days = daily.filter(pl.col("day").is_between(e["ASTDY"], end))
        hi = days["grade_max"].max() if days.height else None
        if hi is not None and hi > grade:
            return _grade_text(grade, hi, _range_days(days, grade, hi)[1])
    if "hematotoxicity, early" in term and icaht is not None and icaht.height:
        r = icaht.row(0, named=True)
        hi = r.get("icaht_early_grade_max")
        if hi is not None and hi > grade:
            return _grade_text(grade, hi, why=_unknown_days(r.get("early_unknown_days"), "ANC"))
    return None


def _unknown_days(n: Any, what: str) -> str | None:
    return f"no {what} on {_cell(n)} day(s)" if n else None


#: the late ICAHT upper bound the subject summary lacks (table ``icaht``), joined for the pages
LATE_MAX = "icaht_late_grade_max"


def with_late_grade_max(summary: pl.DataFrame | None, analysis) -> pl.DataFrame | None:
    """``summary`` with ``icaht_late_grade_max`` (table ``icaht``: the late grade had the days of the
    late window without an ANC been below every level) when it lacks it; every spec column kept
    unchanged (the spec allows extra columns)."""
    if summary is None or analysis is None or LATE_MAX in summary.columns or "subject_id" not in summary.columns:
        return summary
    if not analysis.has("icaht") or LATE_MAX not in analysis.table("icaht").columns:
        return summary
    late = analysis.table("icaht").select(pl.col("subject_id").cast(summary.schema["subject_id"]),
                                          pl.col(LATE_MAX).cast(pl.Int64)).unique("subject_id", keep="first")
    return summary.join(late, on="subject_id", how="left", maintain_order="left")


def late_grade_text(lo: Any, hi: Any, what: str = "an ANC") -> str:
    """A late ICAHT / T-ICAHT grade (after day 30) in one cell: "3", or "3–4 (range: days of the late
    window without an ANC are not counted)" when the table's ``*_late_grade_max`` is above it; "—"
    when not evaluable."""
    return grade_range(lo, hi, f"days of the late window without {what} are not counted")


def icaht_early_text(analysis, subject_id: str, lo: Any, hi: Any) -> str:
    """The early ICAHT grade (days 0-30; ``lo`` = ``icaht_early_grade``, ``hi`` = ``_max``) in one
    cell, as the study table shows it ("0–4", :func:`~cartlab.report.cells.grade_range`), with why it
    is a range from table ``icaht``'s ``early_unknown_days``: "0–4 (range: no ANC on 30 day(s))"."""
    icaht = _of(analysis, "icaht", subject_id) if analysis is not None else None
    n = icaht["early_unknown_days"][0] if icaht is not None and icaht.height and "early_unknown_days" in icaht.columns else None
    return grade_range(lo, hi, _unknown_days(n, "ANC"))


#: the target-antigen rules of table ``antigen_loss`` in the page's words
ANTIGEN_STATUS = {
    "antigen.loss": "antigen loss (below the cut-off, at or above it before treatment)",
    "antigen.low_at_baseline": "below the cut-off at baseline, not a documented loss",
    "antigen.no_baseline": "below the cut-off with no pre-treatment value: a loss cannot be told",
    "antigen.retained": "retained (not below the cut-off)",
    "antigen.undetermined": "a censored result that does not settle the cut-off: a loss cannot be told",
    "antigen.no_blasts": "no blasts in the marrow that day: the antigen on blasts cannot be assessed",
}


def antigen_status(analysis, subject_id: str) -> list[str]:
    """The target antigen on blasts (table ``antigen_loss``, as the analysis derived it), one line per
    antigen: "CD7 on blasts (cut-off 30%): 20% before treatment (day -7); 15% on day 28: below the
    cut-off at baseline, not a documented loss". Empty when the subject has no TGTBLAST value."""
    if analysis is None or not analysis.has("antigen_loss"):
        return []
    rows = _of(analysis, "antigen_loss", subject_id)
    if rows is None or not rows.height:
        return []
    cut = (analysis.options.to_dict().get("molecular") or {}).get("antigen_negative_below_pct")
    lines = []
    for (antigen,), part in rows.sort("day").partition_by("antigen", as_dict=True, maintain_order=True).items():
        first = part.row(0, named=True)
        pre_shown = first.get("pre_pct_censored") or (None if first.get("pre_pct") is None else _g(first["pre_pct"]))
        pre = (f"{pre_shown}% before treatment (day {_day(first['pre_day'])})"
               if pre_shown is not None else "no value before treatment")
        after = []
        for r in part.iter_rows(named=True):
            marrow = {True: ", relapse marrow (blasts >= 5%)", False: ", marrow blasts below 5%"}.get(
                r.get("with_relapse_marrow"), ", no marrow blasts measured that day")
            after.append(f"{r.get('pct_censored') or _g(r['pct'])}% on day {_day(r['day'])}: {ANTIGEN_STATUS.get(r['rule'], r['rule'])}{marrow}")
        head = f"{antigen or 'target antigen'} on blasts" + (f" (cut-off {_g(cut)}%)" if cut is not None else "")
        lines.append(f"{head}: {pre}; " + "; ".join(after))
    return lines


#: the count each hematotoxicity grade reads
_COUNT_PARAMS = {"icaht": ("NEUT", "ANC"), "t_icaht": ("PLAT",)}


def _has_obs(analysis, subject_id: str, params: Sequence[str]) -> bool:
    obs = analysis.study.observations
    return obs.filter((pl.col("subject_id") == subject_id) & pl.col("param").is_in(list(params))).height > 0


def crs_not_evaluable(analysis, subject_id: str) -> str:
    """Why a subject's CRS (ASTCT 2019) has no grade, naming what is missing: the engine grades a day
    from its temperature (TEMP) and systolic blood pressure (SYSBP) rows, with the oxygen and
    vasopressor interventions of that day (cartlab.grading.crs); a subject without either row has no
    graded day (review 41 F5; the dashboard headline says the same)."""
    absent = [p for p in ("TEMP", "SYSBP") if not _has_obs(analysis, subject_id, (p,))]
    if len(absent) == 2:
        return "no day with a temperature or blood pressure row (TEMP, SYSBP not recorded)"
    if absent:
        return f"no day with the inputs CRS grading needs ({absent[0]} not recorded)"
    return "no day with the inputs CRS grading needs (temperature and systolic blood pressure)"


def _icans_not_evaluable(analysis, subject_id: str) -> str:
    """Why a subject's ICANS has no grade, naming what is missing."""
    if not _has_obs(analysis, subject_id, ("ICE", "CAPD")):
        return "no ICE/CAPD score recorded"
    return "no day with the inputs ICANS grading needs (ICE/CAPD score and consciousness)"


def _worst_grades(analysis, subject_id: str, icans_daily, icaht) -> pl.DataFrame:
    """ICANS (ASTCT 2019), ICAHT and T-ICAHT (EHA/EBMT 2023) of one subject: each worst grade with its
    range (where an input is missing) and why — a grade 0 that could be higher has no episode row."""
    rows = []
    icans = _of(analysis, "icans_summary", subject_id)
    if icans is not None and icans.height:
        r = icans.row(0, named=True)
        lo, hi = r.get("icans_grade_astct"), r.get("icans_grade_astct_max")
        up_days, missing = _range_days(icans_daily, lo, hi)
        if lo is None:  # never "see the episode table": that table lists grade >= 1 only (reads as 0)
            why = _icans_not_evaluable(analysis, subject_id)
            rows.append({"toxicity": "ICANS (ASTCT 2019)",
                         "grade": "not evaluable" if hi is None else f"not evaluable (at most {_cell(hi)})",
                         "missing": why, "rule": None, "reason": f"ICANS not evaluable: {why}",
                         "evidence": _daily_evidence(icans_daily)})
        else:
            rows.append({"toxicity": "ICANS (ASTCT 2019)", "grade": _grade_text(lo, hi, missing),
                         "missing": ", ".join(missing) or None, "rule": None,
                         "reason": _range_reason(hi, up_days, _see_episodes(lo, icans_daily, "ICANS")),
                         "evidence": _daily_evidence(icans_daily)})
    t_icaht = _of(analysis, "t_icaht", subject_id)
    for name, frame, prefix, what in (("ICAHT", icaht, "icaht", "ANC"), ("T-ICAHT", t_icaht, "t_icaht", "platelet count")):
        if frame is None or not frame.height:
            continue
        r = frame.row(0, named=True)
        lo, hi = r.get(f"{prefix}_early_grade"), r.get(f"{prefix}_early_grade_max")
        why = _unknown_days(r.get("early_unknown_days"), what) if hi is not None and lo is not None and hi > lo else None
        if lo is None and hi is None:
            why = f"no {what} recorded in days 0-30" if not _has_obs(analysis, subject_id, _COUNT_PARAMS[prefix]) else None
        if lo is None and why is None:  # not evaluable: the window's input, with its days, as the late row
            end = r.get("early_window_end")
            why = f"{what} (days 0–{_day(end) if end is not None else 30})"
        rows.append({"toxicity": f"{name}, early (days 0-30)",
                     # not evaluable with an upper bound: "NE (≤4)", as the summary and the study table (review 41 F4)
                     "grade": _grade_text(lo, hi, why=why) if lo is not None else grade_range(None, hi)
                     if hi is not None else "not evaluable",
                     "missing": why, "rule": r.get("early_rule"), "reason": r.get("early_reason"),
                     "evidence": evidence_list(r.get("early_evidence"))})
        late, late_hi = r.get(f"{prefix}_late_grade"), r.get(f"{prefix}_late_grade_max")
        # a late grade that days of the window without a count leave open is a range, as the early one
        late_why = (f"days of the late window without {'an' if what == 'ANC' else 'a'} {what} are not counted"
                    if late is not None and late_hi is not None and late_hi > late else None)
        rows.append({"toxicity": f"{name}, late (after day 30)",
                     "grade": _grade_text(late, late_hi, why=late_why) if late is not None else grade_range(None, late_hi)
                     if late_hi is not None else "not evaluable",
                     "missing": late_why if late is not None else _window_input(what, r),
                     "rule": r.get("late_rule"), "reason": r.get("late_reason"),
                     "evidence": evidence_list(r.get("late_evidence"))})
    return pl.DataFrame(rows, schema={"toxicity": pl.String, "grade": pl.String, "missing": pl.String,
                                      "rule": pl.String, "reason": pl.String, "evidence": pl.List(pl.String)})


def _daily_evidence(daily: pl.DataFrame | None) -> list[str]:
    """Every source row of a daily grading table (``evidence``): what a worst grade over the days reads
    (review 39 B7: a grade from not-measured rows is marked as such)."""
    if daily is None or "evidence" not in daily.columns or not daily.height:
        return []
    return list(dict.fromkeys(r for v in daily["evidence"].to_list() for r in evidence_list(v)))


def _window_input(what: str, r: dict) -> str:
    """The input a not-evaluable late window misses, named with the window's days: "ANC (days 31–33)"
    (table icaht / t_icaht ``late_window_start`` / ``late_window_end``)."""
    start, end = r.get("late_window_start"), r.get("late_window_end")
    if start is not None and end is not None and end < start:
        # review s40 B4: an empty window misses nothing ("ANC (days 31–5)" was written)
        why = r.get("late_window_end_reason")
        return f"— (late window empty: ends day {_day(end)}{', ' + str(why) if why else ''})"
    return f"{what} (days {_day(start)}–{_day(end)})" if start is not None and end is not None else what


#: the CAR-T measurements the kinetics read (cartlab.kinetics.car: CARCOPY, else CARCELL)
CAR_PARAMS = ("CARCOPY", "CARCELL")


def car_missing_reasons(study, analysis=None, subject_ids=None) -> dict[str, str]:
    """Why a subject has no CAR-T exposure (Cmax/AUC empty), naming the missing input: "no
    CARCOPY/CARCELL sample", "no CARCOPY/CARCELL sample after day 0", or the kinetics table's
    ``not_evaluable`` reason; subjects with an exposure are left out. One pass over the observations."""
    obs = study.observations
    ids = [str(i) for i in (subject_ids if subject_ids is not None else study.subject_ids)]
    car = obs.filter(pl.col("param").is_in(list(CAR_PARAMS))).group_by(pl.col("subject_id").cast(pl.String)).agg(
        pl.col("day").max().alias("last"))
    last = dict(car.iter_rows())
    kin: dict[str, Any] = {}
    if analysis is not None and analysis.has("car_kinetics"):
        k = analysis.table("car_kinetics")
        if {"cmax", "not_evaluable"} <= set(k.columns):
            kin = {str(a): (c, ne) for a, c, ne in k.select("subject_id", "cmax", "not_evaluable").iter_rows()}
    out = {}
    for sid in ids:
        cmax, ne = kin.get(sid, (None, None))
        if cmax is not None:
            continue
        if sid not in last:
            out[sid] = "no CARCOPY/CARCELL sample"
        elif last[sid] is None or last[sid] <= 0:
            out[sid] = "no CARCOPY/CARCELL sample after day 0"
        elif ne:
            out[sid] = f"not evaluable: {ne}"
    return out


def _lower_grade(text: str) -> int | None:
    """The lower grade a worst-grade cell shows ("3", "3–4 (range: ...)" -> 3; "not evaluable" -> None)."""
    m = re.match(r"\s*(\d+)", str(text or ""))
    return int(m.group(1)) if m else None


def episode_sentence(worst_rows: pl.DataFrame, crs_missing: bool = False) -> str:
    """What the page says where the episode table is empty, worded from the grades the worst-grade
    table shows: a toxicity is "not evaluable" only where its grade cell is (each phase named, e.g.
    "T-ICAHT, late (after day 30)"), and a grade of 1 or more without an episode row (T-ICAHT never
    has one; an ICAHT window graded from counts alone) is named with its grade, never read as none."""
    graded, not_eval = [], []
    if crs_missing:
        not_eval.append("CRS")
    for r in worst_rows.iter_rows(named=True):
        grade = str(r["grade"] or "")
        name = r["toxicity"].replace(", early (", " early window (").replace(", late (", " late window (")
        if grade.startswith("not evaluable"):
            why = r["missing"] or str(r["reason"] or "").removeprefix("not evaluable: ").removeprefix(
                f"{r['toxicity'].split(' (')[0]} not evaluable: ").rstrip(".") or None
            not_eval.append(f"{name} ({why})" if why else name)
        elif (_lower_grade(grade) or 0) >= 1:
            graded.append(f"{name}: grade {grade}")
    text = "no CRS, ICANS or ICAHT episode row"
    if graded:
        text += ("; graded without an episode row (worst-grade table below): " + "; ".join(graded))
    elif not not_eval:
        return "no CRS, ICANS or ICAHT episode of grade 1 or more"
    else:
        text = "no CRS, ICANS or ICAHT episode of grade 1 or more among the evaluable toxicities"
    if not_eval:
        text += "; not evaluable: " + "; ".join(not_eval)
    return text


#: how a term no value of which could be graded names the missing limit ("no ULN"), after the engine's words
_LIMIT_WORDS = {"ANRHI": "no ULN: ANRHI missing", "ANRLO": "no LLN: ANRLO missing"}


def _limit_words(why: str | None) -> str | None:
    """The engine's "ANRHI missing" of a term not gradable as the page says it: "no ULN: ANRHI missing"."""
    if not why:
        return why
    for code, words in _LIMIT_WORDS.items():
        if why.strip() == f"{code} missing":
            return words
    return why


def _worst_labs(adlb: pl.DataFrame, calcium_summary: str = "merged") -> pl.DataFrame:
    """The worst CTCAE grade per term after the baseline (as the study page's toxicity summary; the
    baseline record and the values before it are baseline: :func:`post_baseline`), its first day and
    value; a grade a missing input or a censored result leaves open is a range naming it: "2–4 (range:
    ANRHI missing)", "3–4 (range: censored result <0.6)", "0–2" too (an open range is not a 0). Every
    term with a value is listed (review 39 B1, missing is not negative): a term no value of which could
    be graded reads "not evaluable (no ULN ...)", and values not gradable beside graded ones are
    counted ("Not gradable"). One implementation with ``cartlab explain --what ctcae``
    (:func:`cartlab.grading.lab_worst.worst_labs`, review 37 B8)."""
    worst = worst_labs(adlb, every_term=True, calcium_summary=calcium_summary)
    text = [f"not evaluable ({_limit_words(why) or 'not gradable'})" if lo is None
            else _grade_text(lo, hi, why=why or "an input missing")
            for lo, hi, why in zip(worst["grade"].to_list(), worst["grade_max"].to_list(), worst["why"].to_list())]
    ng = [None if not n else f"{n} value(s)" if lo is None else f"{n} value(s): {_limit_words(w) or 'not gradable'}"
          for n, w, lo in zip(worst["n_not_gradable"].to_list(), worst["not_gradable_why"].to_list(),
                              worst["grade"].to_list())]
    return worst.with_columns(pl.Series("grade", text, pl.String), pl.Series("not_gradable", ng, pl.String)).select(
        [c for c in ("term", "grade", "not_gradable", "day", "AVAL", "AVALU", "BASE", "rule", "evidence")
         if c in worst.columns or c == "not_gradable"])


def _unsettled_top(grade: str, lo: Any, hi: Any, rules: Any, status: Any) -> str:
    """A range whose upper grade rests on a rule not (fully) verified (``crs_<scale>_possible_rules`` /
    ``_rule_status_max``, session 38; review 39 B4) is marked: "2–3† (range; † grade 3 by
    lee2014.g3.high_dose_vasopressor ⚠ unverified)"."""
    from cartlab.criteria import UNSETTLED

    if lo is None or hi is None or hi == lo or status not in UNSETTLED:
        return grade
    names = ([str(r) for r in rules] if isinstance(rules, (list, tuple, pl.Series))
             else [r.strip() for r in str(rules or "").split(";") if r.strip()])
    top = [r for r in names if f".g{hi}." in r] or names
    by = f" by {', '.join(top)}" if top else ""
    return f"{grade_span(lo, hi)}† (range; † grade {hi}{by} {UNSETTLED_MARK} {str(status).replace('_', ' ')})"


def _open_ends(analysis, subject_id: str, episodes: pl.DataFrame) -> pl.DataFrame:
    """``OPEN_END`` of the last CRS and ICANS episode: the latest day it could have lasted to when the
    days after its last day lack an input (``crs_resolution_day_latest`` / ``_open``, session 38;
    ``icans_*``, session 39; review 39 B3): "day 60 (day(s) 12, 13, ...: interventions.csv not recorded)"."""
    out = [None] * episodes.height
    if not episodes.height or not {"AETERM", "AENDY"} <= set(episodes.columns):
        return episodes.with_columns(pl.Series("OPEN_END", out, pl.String))
    terms = [str(t or "").lower() for t in episodes["AETERM"].to_list()]
    ends = episodes["AENDY"].to_list()
    for table, prefix, match in (("crs_summary", "crs", "cytokine release"), ("icans_summary", "icans", "neurotoxicity")):
        latest = _summary_value(analysis, table, subject_id, f"{prefix}_resolution_day_latest")
        why = _summary_value(analysis, table, subject_id, f"{prefix}_resolution_open")
        mine = [i for i, t in enumerate(terms) if match in t and ends[i] is not None]
        if latest is None or not mine:
            continue
        last = max(mine, key=lambda i: ends[i])
        if latest > ends[last]:
            out[last] = f"day {_day(latest)}" + (f" ({why})" if why else "")
    return episodes.with_columns(pl.Series("OPEN_END", out, pl.String))


def _toxicity_block(analysis, subject_id: str, kinds: dict[str, str] | None = None) -> dict:
    """Toxicity grading of one subject: ADAE-like episodes, CRS on every scale, worst CTCAE lab grades
    (the analysis's tables, with its options). With ``kinds`` (source row -> its source,
    :func:`~cartlab.report.provenance_marks.source_kinds`) an episode or worst grade derived from a
    not-measured row is marked ("rec. 26 of 31 rows")."""
    from cartlab.grading.crs_legacy import SCALES

    adlb = _of(analysis, "adlb", subject_id)
    adlb = adlb if adlb is not None else pl.DataFrame(schema={"ATOXGR": pl.Int64, "term": pl.String, "day": pl.Float64})
    episodes = _of(analysis, "adae_toxicity", subject_id)
    episodes = (episodes if episodes is not None else pl.DataFrame(schema={"EVIDENCE": pl.List(pl.String)})
                ).with_columns(pl.col("EVIDENCE").map_elements(refs_text, return_dtype=pl.String).alias("src_rows"))
    cross = _of(analysis, "crs_cross_scale", subject_id)
    cross = cross if cross is not None else pl.DataFrame()
    labels = {"lee2014": "Lee 2014", "penn": "Penn", "cartox": "CARTOX/MDACC", "mskcc": "MSKCC"}
    crs_daily = _of(analysis, "crs_daily", subject_id)
    icans_daily = _of(analysis, "icans_daily", subject_id)
    scale_rows = []
    if cross.height:
        x = cross.row(0, named=True)
        lo = x.get("crs_grade_astct")
        hi = x.get("crs_grade_astct_max")
        if hi is None:
            hi = _summary_value(analysis, "crs_summary", subject_id, "crs_grade_astct_max")
        up_days, missing = _range_days(crs_daily, lo, hi)
        if lo is None:  # never "see the episode table" (it has no CRS row): why, as ICANS (review 41 F5)
            why = crs_not_evaluable(analysis, subject_id)
            scale_rows.append({"scale": "ASTCT 2019",
                               "grade": "not evaluable" if hi is None else f"not evaluable (at most {_cell(hi)})",
                               "evidence": _daily_evidence(crs_daily), "missing": why, "rule": None,
                               "reason": f"CRS not evaluable: {why}"})
        else:
            scale_rows.append({"scale": "ASTCT 2019", "grade": _grade_text(lo, hi, missing),
                               "evidence": _daily_evidence(crs_daily),
                               "missing": ", ".join(missing) or None, "rule": None,
                               "reason": _range_reason(hi, up_days, _see_episodes(lo, crs_daily, "CRS"))})
        for sc in SCALES:
            lo, hi = x[f"crs_grade_{sc}_min"], x[f"crs_grade_{sc}_max"]
            if lo is None and hi is None:  # no day this scale could grade: never "None" (review 41 F9)
                na = x.get(f"crs_{sc}_not_assessed")
                grade = f"not evaluable ({na})" if na else "not evaluable"
            else:
                grade = str(lo) if lo == hi else f"{lo}–{hi if hi is not None else '?'} (range)"
            grade = _unsettled_top(grade, lo, hi, x.get(f"crs_{sc}_possible_rules"), x.get(f"crs_{sc}_rule_status_max"))
            scale_rows.append({"scale": labels.get(sc, sc), "grade": grade,
                               "missing": ", ".join(x[f"crs_{sc}_missing"] or []) or None,
                               "rule": x[f"crs_{sc}_rule"], "reason": x[f"crs_{sc}_reason"],
                               "evidence": evidence_list(x.get(f"crs_{sc}_evidence"))})
    scales = pl.DataFrame(scale_rows, schema={"scale": pl.String, "grade": pl.String, "missing": pl.String,
                                              "rule": pl.String, "reason": pl.String, "evidence": pl.List(pl.String)})
    # review 48 F4: admiral's "(Ionized)" rows under the one CTCAE term, as ctcae.calcium_summary says
    ctcae_opts = getattr(getattr(analysis, "options", None), "ctcae", None)
    worst = _worst_labs(adlb, getattr(ctcae_opts, "calcium_summary", None) or "merged")
    icaht = _of(analysis, "icaht", subject_id)
    worst_rows = _worst_grades(analysis, subject_id, icans_daily, icaht)
    episodes_empty = episode_sentence(worst_rows, crs_missing=(
        _summary_value(analysis, "crs_summary", subject_id, "crs_grade_astct") is None and cross.height == 0))
    if adlb.height == 0:
        ctcae_empty = "no laboratory values recorded: CTCAE laboratory grades not evaluable"
    elif adlb["ATOXGR"].is_null().all():
        ctcae_empty = ("no laboratory value could be CTCAE-graded (a reference limit the criteria need is "
                       "missing: lln/uln, in SDTM --STNRLO/--STNRHI, in FHIR referenceRange); not evaluable")
    else:  # every term with a value after the baseline is a row (review 39 B1): none here
        ctcae_empty = "no laboratory value after the baseline (the baseline record and the values before it)"
    episodes = episodes.with_columns(pl.Series("RANGE", [
        _episode_range(e, crs_daily, icans_daily, icaht) for e in episodes.iter_rows(named=True)], dtype=pl.String))
    if "ADURN" in episodes.columns:  # the late ICAHT row spans its qualifying tests: no duration (review 37 B6)
        episodes = episodes.with_columns(pl.when(pl.col("ADURN").is_null() & pl.col("ASTDY").is_not_null())
                                         .then(pl.lit("no duration (graded from tests)"))
                                         .otherwise(pl.col("ADURN").cast(pl.String)).alias("ADURN"))
    episodes = _open_ends(analysis, subject_id, episodes)
    episodes, ep_classes = with_marks(episodes, "EVIDENCE", kinds)
    worst, worst_classes = with_marks(worst, "evidence", kinds)
    # the worst-grade and scale rows marked as the episodes are (review 39 B7): from the engines' evidence
    worst_rows, wr_classes = with_marks(worst_rows, "evidence", kinds)
    scales, sc_classes = with_marks(scales, "evidence", kinds)
    return {
        "episodes": apply_classes(_table(episodes, [("AETERM", "Toxicity"), ("ATOXGR", "Grade"), ("RANGE", "Range"),
                                      ("ATOXGRS", "Scale"), ("ASTDY", "Start day"), ("AENDY", "End day"),
                                      ("OPEN_END", "Could last to"), ("ADURN", "Days"), ("RULE", "Rule"), ("REASON", "Why"),
                                      ("not_measured", "Not measured"), ("src_rows", "Source rows")]),
                                  ep_classes),
        "episodes_empty": episodes_empty,
        "ctcae_empty": ctcae_empty,
        "worst": apply_classes(_table(worst_rows,
                                      [("toxicity", "Toxicity"), ("grade", "Worst grade"), ("missing", "Missing inputs"),
                                       ("rule", "Rule"), ("reason", "Why"), ("not_measured", "Not measured")]),
                               wr_classes),
        "scales": apply_classes(_table(scales, [("scale", "CRS scale"), ("grade", "Maximum grade"),
                                                ("missing", "Missing inputs"), ("rule", "Rule"), ("reason", "Why"),
                                                ("not_measured", "Not measured")]), sc_classes),
        "ctcae": apply_classes(_table(worst, [("term", "CTCAE v5 term"), ("grade", "Worst grade"),
                                              ("not_gradable", "Not gradable"), ("day", "First day"),
                                              ("AVAL", "Value"), ("AVALU", "Unit"), ("BASE", "Baseline"),
                                              ("rule", "Rule"), ("not_measured", "Not measured")]), worst_classes),
    }


def _g(x) -> str:
    return f"{float(x):g}"


def relapse_episodes(analysis, subject_id: str) -> pl.DataFrame:
    """The subject's relapses, one row per response episode with a relapse (table ``relapse``: a
    response after a relapse starts a new episode): ``episode``, ``response_day``,
    ``response_category``, ``relapse_day``, ``relapse_rule``, ``relapse_reason`` (and the MRD relapse)."""
    rel = _of(analysis, "relapse", subject_id)
    cols = ["episode", "response_day", "response_category", "relapse_day", "relapse_rule", "relapse_reason",
            "mrd_relapse_day", "mrd_relapse_reason"]
    if rel is None or not rel.height:
        return pl.DataFrame(schema={c: pl.String for c in cols})
    have = [c for c in cols if c in rel.columns]
    return (rel.filter(pl.col("relapse_day").is_not_null() | (pl.col("mrd_relapse_day").is_not_null()
                                                               if "mrd_relapse_day" in rel.columns else pl.lit(False)))
            .sort("relapse_day", nulls_last=True).select(have))


def relapse_text(analysis, subject_id: str) -> str:
    """One line: every relapse (day, rule, episode), or that none was found (and why not looked for)."""
    if analysis is None or not analysis.has("relapse"):
        return "relapse not assessed (no table 'relapse': no response criteria applied)"
    rel = relapse_episodes(analysis, subject_id)
    if not rel.height:
        return "no relapse found after a response"
    parts = []
    for r in rel.iter_rows(named=True):
        after = (f" after {r['response_category']} on day {_day(r['response_day'])}"
                 if r.get("response_day") is not None and r.get("response_category") else "")
        if r.get("relapse_day") is not None:
            parts.append(f"day {_day(r['relapse_day'])} ({r.get('relapse_rule') or 'relapse'}; episode "
                         f"{r.get('episode')}{after})")
        if r.get("mrd_relapse_day") is not None:
            parts.append(f"MRD relapse day {_day(r['mrd_relapse_day'])} (episode {r.get('episode')}{after})")
    return f"{len(parts)} relapse(s): " + "; ".join(parts)


def dor_text(analysis, subject_id: str) -> str:
    """The duration of response of best_response.csv in words: ``dor_days`` from
    ``first_response_day`` to the duration's own end (``dor_end_day``, ``dor_end_reason``: relapse or
    death = an event; else censored, e.g. when last known alive), or why it was not derived. The
    response-assessment window's end (``end_day``/``end_reason``, e.g. an allo-HSCT) is named apart:
    it does not censor the duration unless the option ``dor_censor_events`` says so (ELN 2022)."""
    best = _of(analysis, "best_response", subject_id) if analysis is not None and analysis.has("best_response") else None
    if best is None or not best.height or "dor_days" not in best.columns:
        return "not derived (no best response)"
    r = best.row(0, named=True)
    dor, first = r.get("dor_days"), r.get("first_response_day")
    if dor is None:
        if not r.get("responder") or first is None:
            br = r.get("best_response")
            if str(r.get("dor_end_reason") or "").startswith("not derived"):  # names orr_categories (review 40)
                return str(r["dor_end_reason"])
            return f"not derived: no response (best response {br})" if br else "not derived: no best response"
        note = next((p for p in str(r.get("reason") or "").split("; ") if "duration of response" in p), None)
        return note or "not derived"
    start = f" from the first response on day {_calendar_day(first)}" if first is not None else ""
    end, why = r.get("dor_end_day"), r.get("dor_end_reason")
    if r.get("dor_event"):
        to = f" to {why or 'relapse or death'}" + (f" on day {_calendar_day(end)}" if end is not None else "")
        text = f"{_g(dor)} days{start}{to} (whole calendar days), an event"
    else:
        to = f" to day {_calendar_day(end)}" if end is not None else ""
        text = (f"{_g(dor)} days{start}{to} (whole calendar days), censored: "
                + (why or "no relapse or death seen"))
    text += "; first response episode"
    window, wend = r.get("end_reason"), r.get("end_day")
    if window and wend is not None and not str(why or "").startswith(str(window)):
        text += (f"; the best-response assessment window ends at {window} on day {_day(wend)} "
                 "(this does not censor the duration)")
    return text


def _calendar_day(v) -> str:
    """A day as the tables print it (:func:`~cartlab.report.cells._day`: "29.42" from a date-time),
    with the calendar day a whole-day duration counts from ("29.42 (calendar day 29)"; ELN 2022
    Table 9 "to the date of", ``EndpointOptions.calendar_days``), so 60 - 29 = 31 can be checked."""
    text = _day(v)
    if isinstance(v, float) and math.isfinite(v) and not float(text.lstrip("-") or 0).is_integer():
        return f"{text} (calendar day {math.floor(v)})"
    return text


def _response_block(analysis, subject_id: str, kinds: dict[str, str] | None = None) -> dict:
    """Response of one subject: each marrow assessment (ELN 2022 / ALL), the relapses (every episode)
    and the duration of response, and molecular log reductions. With ``kinds`` an assessment derived
    from a not-measured row is marked (as :func:`_toxicity_block`)."""
    a = _of(analysis, "marrow_response", subject_id)
    mol = _of(analysis, "molecular_response", subject_id)
    mol = mol if mol is not None else pl.DataFrame()  # the engine did not run (or was skipped)
    # log10 reductions to 2 decimals, as the engine's reason ("= 0.90") and the paper (review 37 C3)
    mol = mol.with_columns([pl.col(c).round(2) for c in ("log10_reduction", "log10_reduction_at_least",
                                                         "log10_reduction_at_most") if c in mol.columns])
    a = a if a is not None else pl.DataFrame()
    a, a_classes = with_marks(a, "evidence", kinds)
    return {
        "marrow": apply_classes(_table(a, [("day", "Day"), ("category_mrd", "Response"), ("criteria", "Criteria"),
                                           ("bm_blast_pct", "Marrow blasts %"), ("anc", "ANC"), ("plt", "PLT"),
                                           ("mrd_fcm", "MRD (flow, fraction)"), ("mrd_negative", "MRD negative"),
                                           ("rule", "Rule"), ("reason", "Why"), ("not_measured", "Not measured")]),
                                a_classes),
        "marrow_empty": response_notes(analysis, subject_id).get(subject_id)
                        or "no marrow assessment after infusion",
        "relapse_text": relapse_text(analysis, subject_id),
        "relapses": _table(relapse_episodes(analysis, subject_id),
                           [("episode", "Episode"), ("response_category", "Response"), ("response_day", "Response day"),
                            ("relapse_day", "Relapse day"), ("relapse_rule", "Rule"), ("relapse_reason", "Why"),
                            ("mrd_relapse_day", "MRD relapse day"), ("mrd_relapse_reason", "MRD relapse: why")]),
        "dor_text": dor_text(analysis, subject_id),
        "antigen": antigen_status(analysis, subject_id),
        # MOLVAF, MOLAR, FISHPCT, FUSION are % in the canonical unit (study-format v1 "params")
        "molecular": _table(mol, [("param", "Param"), ("analyte", "Marker"), ("baseline", "Baseline (%)"),
                                  ("baseline_censored", "Baseline (censored, %)"), ("day", "Day"), ("value", "Value (%)"),
                                  ("value_censored", "Value (censored, %)"), ("log10_reduction", "log10 reduction"),
                                  ("log10_reduction_at_least", "log10 reduction at least"),
                                  ("log10_reduction_at_most", "log10 reduction at most"), ("reason", "Why")]),
    }


def _protocol_block(analysis, subject_id: str, protocol) -> dict | None:
    """The protocol view of one subject: planned doses (from the subject's own weight and BSA),
    eligibility screening and deviations (``None`` without a protocol)."""
    if protocol is None:
        return None
    from cartlab.protocol.sheet import dose_text

    plan = _of(analysis, "dose_plan", subject_id)
    notes = _of(analysis, "dose_plan_notes", subject_id)
    why = notes["reason"][0] if notes is not None and notes.height else None
    if plan is not None and plan.height:  # WITHHOLD / not evaluable (needs creatinine) where no dose is given
        plan = plan.drop("subject_id").with_columns(
            pl.struct("dose", "unit", "status", "needs").map_elements(dose_text, return_dtype=pl.String)
            .alias("dose_text"))
    else:
        plan = None
    elig = _of(analysis, "eligibility", subject_id)
    elig = elig if elig is not None else pl.DataFrame()
    verdict = _of(analysis, "eligibility_verdict", subject_id)
    verdict_text = None
    if verdict is not None and verdict.height:
        v = verdict.row(0, named=True)
        verdict_text = (f"{v['verdict']} ({v['n_pass']} criteria met, {v['n_fail']} not met"
                        + (f": {v['failed']}" if v.get("failed") else "") + f", {v['n_unknown']} undetermined"
                        + (f": {v['unknown']}" if v.get("unknown") else "") + ")")
    dev = _of(analysis, "protocol_deviations", subject_id)
    dev = (dev if dev is not None else pl.DataFrame(schema={"evidence": pl.List(pl.String)})).with_columns(
        pl.col("evidence").list.join(", ").alias("source_rows"))
    return {
        "id": protocol.id, "title": protocol.title, "version": protocol.version, "source": protocol.source,
        "plan_note": why,
        "verdict": verdict_text,
        "plan": _table(plan, [("day", "Day"), ("agent", "Agent"), ("dose_text", "Planned dose"), ("unit", "Unit"),
                              ("basis", "Basis"), ("adjustment", "Adjustment"), ("rule", "Rule"),
                              ("source", "Source")]) if plan is not None else None,
        "eligibility": _table(elig, [("criterion_id", "Criterion"), ("kind", "Kind"), ("status", "Status"),
                                     ("value", "Value"), ("unit", "Unit"), ("day", "Day"), ("reason", "Why"),
                                     ("source", "Source")]),
        "deviations": _table(dev, [("category", "Category"), ("item", "Item"), ("detail", "Detail"),
                                   ("rule", "Rule"), ("source_rows", "Source rows")]),
    }


def response_notes(analysis, subject_id: str | None = None) -> dict[str, str]:
    """Why a subject has no best response, where the criteria do not apply: subject -> e.g. "no
    response criteria for disease 'DLBCL' yet" (the best-response engine's reason, shown next to the
    empty cell rather than only in best_response.csv); every subject, or only ``subject_id``."""
    if analysis is None or not analysis.has("best_response"):
        return {}
    best = analysis.table("best_response") if subject_id is None else _of(analysis, "best_response", subject_id)
    if "rule" not in best.columns or "reason" not in best.columns:
        return {}
    rows = best.filter(pl.col("rule") == "response.no_criteria").select("subject_id", "reason")
    out = {sid: (why or "").split(" (")[0] for sid, why in rows.iter_rows()}
    # any other empty or NE best response: the first clause of the engine's reason ("no post-infusion
    # marrow assessment"), as the dashboard says it, never "NE (d—)" (review 41 F7)
    if "best_response" in best.columns:
        ne = best.filter((pl.col("best_response").is_null() | (pl.col("best_response") == "NE"))
                         & pl.col("reason").is_not_null())
        for sid, why in ne.select("subject_id", "reason").iter_rows():
            if sid not in out and (first := _first_clause(why)):
                out[sid] = first
    # a subject with no CAR-T dose (session 38, rule response.not_infused): NE for that reason (review 39 B2)
    for sid in best.filter(pl.col("rule") == "response.not_infused")["subject_id"].to_list():
        out[sid] = NOT_INFUSED_NOTE
    return out


def _first_clause(reason: str) -> str:
    """"no post-infusion marrow assessment" from "not evaluable: no post-infusion marrow assessment.
    Could be ..." (the reason's first clause, without the "not evaluable" its cell already says)."""
    text = str(reason).strip()
    if text.lower().startswith("not evaluable"):
        text = text[len("not evaluable"):].lstrip(" :")
    return re.split(r";\s|\.\s|\.$", text, maxsplit=1)[0].strip()


#: the study table's and the subject page's word for a subject with no CAR-T dose in doses.csv
NOT_INFUSED_NOTE = "not infused: no CAR-T dose in doses.csv, rule response.not_infused"


def not_infused_ids(analysis) -> list[str]:
    """The subjects best_response calls not infused (rule ``response.not_infused``: no CAR-T dose in
    doses.csv while other subjects have one; session 38), in table order."""
    if analysis is None or not analysis.has("best_response"):
        return []
    best = analysis.table("best_response")
    if "rule" not in best.columns:
        return []
    return best.filter(pl.col("rule") == "response.not_infused")["subject_id"].to_list()
