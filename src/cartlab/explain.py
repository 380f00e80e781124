"""Day-by-day explanations of derived values (for ``cartlab explain``).

Each explainer reads one subject's rows of an :class:`~cartlab.analyze.Analysis` (the tables it
computed, with its options: nothing is re-derived with defaults) and returns an
:class:`Explanation`: a headline,
the criteria/options used, and a frame with one row per day or observation (``day``, ``grade``,
``rule``, ``reason``, ``evidence`` and, for some, ``shown``: the rows worth listing by default).

``crs`` and ``icans`` (ASTCT 2019), ``crs-scales`` (Lee 2014, Penn, CARTOX, MSKCC side by side),
``ctcae`` (CTCAE v5 lab grades), ``icaht`` (EHA/EBMT 2023, with the daily ANC series) and
``response`` (ELN 2022 / ALL at each marrow, best response, molecular log reductions, relapse and MRD
relapse with their rules, target-antigen results on blasts),
``kinetics`` (the CAR profile behind Cmax, Tmax, AUC0-28 and Tlast), ``hematotox`` (CAR-HEMATOTOX items
and score), ``easix`` (each time point), ``t-icaht`` (platelet windows), ``iec-hs`` (IEC-HS flag days), ``recovery`` (neutrophil and
platelet recovery) and ``endpoints`` (OS, EFS, RFS, LFS, CIR: time, event or censoring and why; the
relapse episodes; the duration of response).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import polars as pl

from cartlab._days import day_text, days_text
from cartlab.analyze import Analysis, AnalysisOptions
from cartlab.model import Study


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


def _crs(a: Analysis, sid: str) -> Explanation:
    from cartlab._days import day_text
    from cartlab.criteria import load_raw as load_criteria
    from cartlab.grading.crs import CrsOptions
    from cartlab.grading.crs_attribution import explain_days, explain_range

    opts = a.options.crs or CrsOptions()
    daily = _rows(a, "crs_daily", sid)
    s = _rows(a, "crs_summary", sid).row(0, named=True)
    if s["crs_grade_astct"] is None:
        head = "CRS not evaluable: no temperature, blood pressure or CRS intervention data"
    elif s["crs_grade_astct"] == 0:
        head = "no CRS (ASTCT grade 0)"
    else:
        n = s["crs_n_episodes"]
        head = (f"ASTCT CRS grade {s['crs_grade_astct']}, onset day {day_text(s['crs_onset_day'])}, "
                f"last CRS day {day_text(s['crs_resolution_day'])}"
                + (f" ({n} episodes: {s['crs_episode']})" if n and n > 1 else ""))
        # an earlier day whose grade is a range reaching CRS (a censored ">38.3", no temperature): the
        # onset is not definite (review35 B3); the engine's crs_onset_day_earliest, as the report (review 37 B7)
        early = s.get("crs_onset_day_earliest")
        if early is None and "grade_max" in daily.columns and s["crs_onset_day"] is not None:  # an older table
            days = daily.filter((pl.col("grade_max") >= 1) & (pl.col("day") < s["crs_onset_day"]))["day"]
            early = days.min() if days.len() else None
        if early is not None and s["crs_onset_day"] is not None:
            why = f": {s['crs_onset_open']}" if s.get("crs_onset_open") else ""
            head = head.replace(
                f"onset day {day_text(s['crs_onset_day'])}",
                f"onset day {day_text(s['crs_onset_day'])} (day {day_text(early)} if the inputs that leave the grade "
                f"of the earlier days a range reach CRS{why})", 1)
        # an episode not seen resolved (review 40 B2): "last CRS day 5 (ongoing at last follow-up)"
        status = s.get("crs_resolution_status")
        if status and status != "resolved" and s["crs_resolution_day"] is not None:
            note = (daily.filter((pl.col("day") == s["crs_resolution_day"]) & pl.col("episode_resolution_note").is_not_null())
                    ["episode_resolution_note"].to_list() if "episode_resolution_note" in daily.columns else [])
            what = (note[0].split(" (convention")[0].replace(f"last CRS day {day_text(s['crs_resolution_day'])}, ", "")
                    if note else status.replace("_", " "))
            head = head.replace(f"last CRS day {day_text(s['crs_resolution_day'])}",
                                f"last CRS day {day_text(s['crs_resolution_day'])} ({what})", 1)
        # the end likewise (review 38 B3): crs_resolution_day_latest / crs_resolution_open
        late = s.get("crs_resolution_day_latest")
        if late is not None and s["crs_resolution_day"] is not None:
            why = f": {s['crs_resolution_open']}" if s.get("crs_resolution_open") else ""
            head = head.replace(
                f"last CRS day {day_text(s['crs_resolution_day'])}",
                f"last CRS day {day_text(s['crs_resolution_day'])} (could be day {day_text(late)}{why})", 1)
    # the range: what was not recorded on the days that reach the upper bound (TEMP, SYSBP, ...), a file
    # not given named once with what it leaves unknown, and a lower bound events.csv opens (review 40 A1, C2)
    head += explain_range(daily, s)
    daily = explain_days(daily)
    crit = load_criteria(opts.criteria)
    # only the options that differ from the defaults (review 38 C1, review 39 C2): _changed_options
    options = _changed_options(opts.resolved(), CrsOptions(criteria=opts.criteria).resolved())
    return Explanation("crs", head, f"{crit['citation']}{options}", _graded_days(daily),
                       rules=_top_rules(daily))


def _icans(a: Analysis, sid: str) -> Explanation:
    from cartlab.criteria import load_raw as load_criteria
    from cartlab.grading.icans import IcansOptions

    opts = a.options.icans or IcansOptions()
    daily = _rows(a, "icans_daily", sid)
    summ = _rows(a, "icans_summary", sid)
    g, gmax = summ["icans_grade_astct"][0], summ["icans_grade_astct_max"][0]
    head = ("ICANS not evaluable: no ICE/CAPD score of the kind the age calls for (ICE from "
            f"{opts.resolved()['ice_min_age_years']:g} years, CAPD below), consciousness or neurological event data"
            if g is None else f"ASTCT ICANS grade {g}" + (_icans_range(daily, gmax) if gmax is not None and gmax > g else ""))
    crit = load_criteria(opts.criteria)
    # only the options that differ from the defaults (review 38 C1, review 39 C2): _changed_options
    options = _changed_options(opts.resolved(), IcansOptions(criteria=opts.criteria).resolved())
    return Explanation("icans", head, f"{crit['citation']}{options}", _graded_days(daily),
                       rules=_top_rules(daily))


def _icans_range(daily: pl.DataFrame, gmax: int) -> str:
    """" (up to 5: death attribution not recorded on day 4)": the inputs missing on the days that
    reach the subject's upper bound (their ``missing_inputs``), not a fixed cause (review 37 B1)."""
    from cartlab._days import day_text

    top = daily.filter(pl.col("grade_max") == gmax)
    names = list(dict.fromkeys(n for ns in top["missing_inputs"].to_list() for n in (ns or [])))
    days = ", ".join(day_text(d) for d in top["day"].to_list())
    on = f"{'day' if top.height == 1 else 'days'} {days}"
    files = [n[: -len(" (not given)")] for n in names if n.endswith(" (not given)")]
    if not files:
        return f" (up to {gmax}: {', '.join(names) if names else 'inputs'} not recorded on {on})"
    # review 39 C2: a file not given is not "not recorded" ("events.csv (not given) not recorded")
    unknown = {"events.csv": ": seizures, motor weakness, cerebral edema unknown"}
    parts = [f"{f} not given{unknown.get(f, '')}" for f in files]
    rest = [n for n in names if not n.endswith(" (not given)")]
    if rest:
        parts.append(f"{', '.join(rest)} not recorded")
    return f" (up to {gmax} on {on}: {'; '.join(parts)})"


def _lab_grade(r: dict) -> str:
    """One term's worst grade as the subject page shows it: "Creatinine increased 2-4 (day 5; ANRHI
    missing)", days via :func:`cartlab._days.day_text`."""
    from cartlab._days import day_text

    hi = r.get("grade_max")
    grade = f"{r['grade']}-{hi}" if hi is not None and hi > r["grade"] else f"{r['grade']}"
    why = f"; {r['why']}" if hi is not None and hi > r["grade"] and r.get("why") else ""
    return f"{r['term']} {grade} (day {day_text(r['day'])}{why})"


def _ctcae(a: Analysis, sid: str) -> Explanation:
    from cartlab.grading.ctcae import CtcaeOptions, criteria_names
    from cartlab.grading.lab_worst import baseline_labs, post_baseline, worst_labs

    opts = a.options.ctcae or CtcaeOptions()
    adlb = _rows(a, "adlb", sid)
    graded = adlb.filter(pl.col("ATOXGR").is_not_null())
    # the report's worst grades (one implementation, review 37 B8): post-baseline rows only, a range
    # where a missing input or a censored result leaves the grade open; the baseline grades apart
    worst = worst_labs(graded)
    base = baseline_labs(graded)
    n_post = graded.filter(post_baseline(graded)).height
    n_not = adlb.height - graded.height
    # the terms no value after the baseline could grade, named with the missing input (review 39 B1)
    every = worst_labs(adlb, every_term=True)
    none = every.filter(pl.col("grade").is_null())
    named = "; ".join(f"{t} ({w})" for t, w in none.select("term", "why").iter_rows())
    not_gradable = (f"; {n_not} value(s) not gradable (listed below with why)"
                    + (f"; not gradable after the baseline: {named}" if named else "")) if n_not else ""
    baseline = ("; baseline (the baseline record and the values before it, not toxicities): "
                + "; ".join(_lab_grade(r) for r in base.iter_rows(named=True))) if base.height else ""
    if adlb.height == 0:
        head = "CTCAE not evaluable: no lab parameter of the CTCAE v5 criteria"
    elif graded.height == 0:
        head = f"CTCAE v{opts.version} not evaluable: none of the {n_not} lab value(s) could be graded (listed below with why)"
    elif n_post == 0:
        head = f"CTCAE v{opts.version}: no graded lab value after the baseline{baseline}{not_gradable}"
    elif worst.height == 0:
        head = (f"CTCAE v{opts.version}: every graded lab value after the baseline is grade 0 ({n_post} values)"
                f"{baseline}{not_gradable}")
    else:
        head = (f"CTCAE v{opts.version} worst lab grades: "
                + "; ".join(_lab_grade(r) for r in worst.iter_rows(named=True)) + baseline + not_gradable)
    days = adlb.select(
        "day",
        pl.col("ATOXGR").abs().alias("grade"),
        pl.col("rule"),
        pl.concat_str(
            [pl.col("param"), pl.lit(" "), pl.col("AVAL").round_sig_figs(6).cast(pl.String).fill_null("(empty)"),
             pl.lit(" "), pl.col("AVALU").fill_null(""), pl.lit(" ("), pl.col("term").fill_null("both directions"),
             pl.lit("; baseline "), pl.col("BASE").round_sig_figs(6).cast(pl.String).fill_null("none"),
             pl.lit("): "), pl.col("grade_reason")],
            ignore_nulls=False,
        ).alias("reason"),
        pl.col("evidence"),
        (pl.col("ATOXGR").is_null() | (pl.col("ATOXGR") != 0)).alias("shown"),  # not gradable is shown, with why
    )
    crit = ", ".join(criteria_names(opts.version, "SI"))
    return Explanation("ctcae", head, f"CTCAE v{opts.version} ({crit}); signed ATOXGR: negative = low direction",
                       days, rules=tuple(dict.fromkeys(x for x in worst["rule"].to_list() if x))
                       if "rule" in worst.columns else ())


#: what a window's reason says leaves its grade open (grading/icaht.py, t_icaht.py, hemato_late.py)
_COULD_BE = r"Could be up to grade \d+: (.+?); had they been below every level"


def _window_grade(r: dict, col: str, reason_col: str) -> str:
    """An ICAHT / T-ICAHT window's grade as the report shows it: "2", "0-4 (6 day(s) of the late window
    (days 55-60) have no ANC)" from ``<col>`` and ``<col>_max`` (missing is not negative), "not
    evaluable (could be up to 3: ...)" when only the upper bound is known."""
    import re

    lo, hi = r.get(col), r.get(f"{col}_max")
    m = re.search(_COULD_BE, str(r.get(reason_col) or ""))
    why = f" ({m.group(1)})" if m else ""
    if lo is None:
        return "not evaluable" + ("" if hi is None else f" (could be up to {hi}{': ' + m.group(1) if m else ''})")
    return f"{lo}" if hi is None or hi <= lo else f"{lo}-{hi}{why}"


def _icaht(a: Analysis, sid: str) -> Explanation:
    from cartlab.criteria import load_raw as load_criteria
    from cartlab.grading.hematotox import IcahtOptions

    opts = a.options.icaht or IcahtOptions()
    r = _rows(a, "icaht", sid).row(0, named=True)
    # each window as the report shows it: a range up to *_grade_max naming the days without an ANC (review 37 B3)
    head = (f"early ICAHT grade {_window_grade(r, 'icaht_early_grade', 'early_reason')}, "
            f"late ICAHT grade {_window_grade(r, 'icaht_late_grade', 'late_reason')}. {r['reason']}")
    daily = _rows(a, "icaht_daily", sid)
    levels = [c for c in daily.columns if c.startswith("anc_le_")]
    # session 38 (review s38 C2): an early day lists only the levels the early grade reads (500, 100)
    from cartlab.grading.icaht import early_level_columns

    early = [c for c in levels if c in early_level_columns(opts)]

    def _below(cols: list[str]) -> pl.Expr:
        return pl.concat_str([pl.when(pl.col(c)).then(pl.lit(c.replace("anc_le_", "<= "))).otherwise(None)
                              for c in cols] or [pl.lit(None, dtype=pl.String)], separator=", ", ignore_nulls=True)

    def _top(cols: list[str]) -> str:
        return str(max((int(c.replace("anc_le_", "")) for c in cols), default="")) if cols else ""

    is_early = pl.col("window") == "early"
    # the day's ANC in /uL and the thresholds it is at or below; above all of them: "> <highest>"
    # (audit s27 item 9: never an empty list "-> ANC  /uL")
    anc_ul = (pl.col("anc") * 1000).round(0).cast(pl.Int64).cast(pl.String)
    under = pl.when(is_early.fill_null(False)).then(_below(early)).otherwise(_below(levels))
    # a censored ANC ("<0.05") is counted below the thresholds it settles (anc_le_*): say so (review35 B4)
    censored = pl.col("anc_censored") if "anc_censored" in daily.columns else pl.lit(None, dtype=pl.String)
    where = (pl.when(pl.col("anc").is_null() & censored.is_not_null() & under.is_not_null() & (under != ""))
             .then(pl.format("ANC {} x10^9/L (censored): {} /uL", censored, under))
             .when(pl.col("anc").is_null() & censored.is_not_null())
             .then(pl.format("ANC {} x10^9/L (censored): no ICAHT threshold settled", censored))
             .when(pl.col("anc").is_null()).then(pl.lit("ANC not known"))
             .when(under.is_not_null() & (under != "")).then(pl.format("ANC {}/uL: {} /uL", anc_ul, under))
             .otherwise(pl.format("ANC {}/uL: > {} /uL (above every ICAHT threshold{})", anc_ul,
                                  pl.when(is_early.fill_null(False)).then(pl.lit(_top(early))).otherwise(pl.lit(_top(levels))),
                                  pl.when(is_early.fill_null(False)).then(pl.lit(" of the early window"))
                                  .otherwise(pl.lit("")))))
    days = daily.select(
        "day",
        pl.lit(None, dtype=pl.Int64).alias("grade"),
        pl.when(pl.col("window").is_not_null())
        .then(pl.concat_str([pl.lit("icaht."), pl.col("window"), pl.lit(".day")])).otherwise(None).alias("rule"),
        pl.concat_str(
            [pl.col("window").fill_null("outside the ICAHT windows"), pl.lit(": "), pl.col("reason"),
             pl.lit(" -> "), where],
        ).alias("reason"),
        pl.col("evidence"),
        (pl.col("window").is_not_null() & pl.any_horizontal([pl.col(c).fill_null(False) for c in levels])).alias("shown"),
    )
    crit = load_criteria(opts.criteria)
    options = _changed_options(opts.resolved(), IcahtOptions(criteria=opts.criteria).resolved())  # diff2 C3
    return Explanation("icaht", head, f"{crit['citation']}{options}", days,
                       rules=tuple(x for x in (r["early_rule"], r["late_rule"]) if x))


def _crs_scales(a: Analysis, sid: str) -> Explanation:
    """The cross-scale row and the day-by-day grades behind it, derived with the analysis' own
    ``crs_legacy`` options and its ADLB (session 33, review33 C3: not with defaults)."""
    from cartlab.grading.crs_legacy import CrsLegacyOptions, derive_crs_legacy_daily, organ_grades_from_adlb

    opts = a.options.crs_legacy or CrsLegacyOptions()
    study = a.study.subject(sid)
    organ = organ_grades_from_adlb(_rows(a, "adlb", sid))
    x = _rows(a, "crs_cross_scale", sid).row(0, named=True)
    g, gmax = x["crs_grade_astct"], x.get("crs_grade_astct_max")
    astct = "not evaluable" if g is None else (f"{g}" if gmax is None or gmax == g else f"{g}-{gmax}")
    parts = [f"ASTCT {astct}"]
    for s, label in (("lee2014", "Lee 2014"), ("penn", "Penn"), ("cartox", "CARTOX"), ("mskcc", "MSKCC")):
        lo, hi = x[f"crs_grade_{s}_min"], x[f"crs_grade_{s}_max"]
        g = f"{lo}" if lo == hi else f"{lo}-{hi if hi is not None else '?'} (missing: {', '.join(x[f'crs_{s}_missing'])})"
        # an upper grade resting on a rule not (fully) verified (session 38 rule_status_max; review 39 B4)
        from cartlab.criteria import UNSETTLED

        status = x.get(f"crs_{s}_rule_status_max")
        if lo != hi and hi is not None and status in UNSETTLED:
            rules = x.get(f"crs_{s}_possible_rules") or []
            rules = [r.strip() for r in rules.split(";") if r.strip()] if isinstance(rules, str) else list(rules)
            top = [r for r in rules if f".g{hi}." in str(r)] or rules
            g += f" [grade {hi} by {', '.join(map(str, top))} ⚠ {status.replace('_', ' ')}]"
        parts.append(f"{label} {g}")
    head = "CRS by scale: " + "; ".join(parts)
    daily = derive_crs_legacy_daily(study, organ_grades=organ, options=opts)
    days = daily.sort("day", "scale").select(
        "day",
        pl.when(pl.col("grade_min") == pl.col("grade_max")).then(pl.col("grade_min").cast(pl.String))
        .otherwise(pl.concat_str([pl.col("grade_min").cast(pl.String), pl.lit("-"),
                                  pl.col("grade_max").cast(pl.String)])).alias("grade"),
        pl.concat_str([pl.col("scale"), pl.lit(": "), pl.col("rule").fill_null("")]).alias("rule"),
        "reason", "evidence",
        (pl.col("grade_max").fill_null(1) > 0).alias("shown"),
    )
    from cartlab.criteria import load_raw as load_criteria

    crit = " | ".join(load_criteria(f"crs_{s}")["citation"] for s in ("lee2014", "penn", "cartox", "mskcc"))
    options = _changed_options(opts.resolved(), CrsLegacyOptions().resolved())  # review 39 diff2 C3
    return Explanation("crs-scales", head, f"{crit}{options}", days)


def _response(an: Analysis, sid: str) -> Explanation:
    a = _rows(an, "marrow_response", sid)
    b = _rows(an, "best_response", sid).row(0, named=True)
    head = (f"best response {b['best_response']} on day {day_text(b['best_response_day'])}"
            if b["best_response_day"] is not None else f"best response {b['best_response'] or 'not evaluable'}")
    if b["mrd_negative"] is not None:
        head += f", MRD {'negative' if b['mrd_negative'] else 'positive'} at that marrow"
    head += f". {b['reason']}"
    # the relapse and the duration of response best_response.csv reports (review 38 B10): a relapse from
    # blood samples or an event has no marrow row, so it is named here and listed from the relapse table
    head = head.rstrip() + ("" if head.rstrip().endswith(".") else ".")
    if b.get("relapse_day") is not None:
        head += f" Relapse on day {day_text(b['relapse_day'])} ({b['relapse_rule']}): {b['relapse_reason']}"
        head += "" if str(b["relapse_reason"] or "").endswith(".") else "."
    if b.get("mrd_relapse_day") is not None:
        head += f" MRD relapse on day {day_text(b['mrd_relapse_day'])}: {b['mrd_relapse_reason']}"
        head += "" if str(b["mrd_relapse_reason"] or "").endswith(".") else "."
    elif b.get("mrd_relapse_rule"):  # a possible MRD relapse has no day, never silent (review 41 F11)
        head += f" MRD relapse not dated ({b['mrd_relapse_rule']}): {b['mrd_relapse_reason']}"
        head += "" if str(b["mrd_relapse_reason"] or "").endswith(".") else "."
    if b.get("dor_days") is not None:
        head += (f" Duration of response {day_text(b['dor_days'])} days, "
                 f"{'ended' if b['dor_event'] else 'censored'} on day {day_text(b['dor_end_day'])}: "
                 f"{b['dor_end_reason']}.")
    elif b.get("dor_end_reason"):  # a non-responder: why relapse and DOR are empty (review 40 consistency B2)
        head += f" Relapse and duration of response {b['dor_end_reason']}."
    mol = _rows(an, "molecular_response", sid)
    rel = _rows(an, "relapse", sid) if an.has("relapse") else None
    parts = [
        a.select("day", pl.col("category").alias("grade"), "rule", "reason", "evidence"),
        mol.select("day", pl.lit(None, dtype=pl.String).alias("grade"), "rule", "reason", "evidence"),
    ]
    if rel is not None and rel.height:
        parts += [
            rel.filter(pl.col("relapse_day").is_not_null()).select(
                pl.col("relapse_day").alias("day"), pl.lit("relapse").alias("grade"),
                pl.col("relapse_rule").alias("rule"), pl.col("relapse_reason").alias("reason"), "evidence"),
            rel.filter(pl.col("mrd_relapse_day").is_not_null()).select(
                pl.col("mrd_relapse_day").alias("day"), pl.lit("MRD relapse").alias("grade"),
                # rule response.mrd_relapse (response_rules.yaml, research note §4.1 [M]; review 39 B2)
                (pl.col("mrd_relapse_rule") if "mrd_relapse_rule" in rel.columns
                 else pl.lit(None, dtype=pl.String)).alias("rule"), pl.col("mrd_relapse_reason").alias("reason"),
                "evidence"),
        ]
        if "mrd_relapse_rule" in rel.columns:  # a possible MRD relapse: on its sample's day (review 41 diff1 F3)
            day = pl.coalesce(pl.col("mrd_relapse_possible_day") if "mrd_relapse_possible_day" in rel.columns
                              else pl.lit(None, dtype=pl.Float64), pl.col("response_day"))
            parts.append(rel.filter(pl.col("mrd_relapse_day").is_null() & pl.col("mrd_relapse_rule").is_not_null())
                         .select(day.alias("day"), pl.lit("possible MRD relapse").alias("grade"),
                                 pl.col("mrd_relapse_rule").alias("rule"), pl.col("mrd_relapse_reason").alias("reason"),
                                 "evidence"))
    ag = _rows(an, "antigen_loss", sid) if an.has("antigen_loss") else None
    if ag is not None and ag.height:  # target antigen on blasts (antigen_loss.csv; review 39 B4)
        parts.append(ag.select(
            "day", pl.concat_str([pl.col("antigen").fill_null("target"), pl.lit(" antigen")]).alias("grade"),
            "rule", "reason", "evidence"))
    days = pl.concat(parts, how="vertical_relaxed").sort("day").with_columns(pl.lit(True).alias("shown"))
    return Explanation("response", head, str(b["criteria"] or "no response criteria for this disease"), days)


def _kinetics(a: Analysis, sid: str) -> Explanation:
    """The CAR profile behind Cmax, Tmax, AUC0-28 and Tlast. Every sample says where it comes
    from; values that were not measured (``source`` in :data:`cartlab.model.NOT_MEASURED_SOURCES`,
    e.g. the seed's reconstructed course) are marked. Samples, Cmax and AUC as the report shows them
    (thousands separated; at or above 1000 a whole number: 1646461.507 reads 1,646,462, within 0.1%
    of the CSV); lambda.z and the half-life to 3 significant digits."""
    import math

    from cartlab._days import day_text
    from cartlab.kinetics.car import CarKineticsOptions, derive_car_profiles
    from cartlab.model import NOT_MEASURED_SOURCES

    def num(x: float, sig: int | None = None) -> str:
        """``x`` with thousands separators, rounded to ``sig`` significant digits when given, else
        at or above 1000 to a whole number as the report shows it (report fmt_value; review 37 C3:
        one rounding wherever shown): 1646461.507 -> "1,646,462" (the CSV keeps every digit)."""
        if sig is not None and x != 0:
            x = round(x, sig - 1 - math.floor(math.log10(abs(x))))
        elif sig is None and abs(x) >= 1000:
            return f"{x:,.0f}"
        if float(x).is_integer():
            return f"{int(x):,}"
        return f"{x:,.{sig or 6}g}"

    opts = a.options.kinetics or CarKineticsOptions()
    k = _rows(a, "car_kinetics", sid)
    if k.height == 0:
        return Explanation("kinetics", "no CARCOPY or CARCELL sample after the first infusion", "", _row_frame([]))
    r = k.row(0, named=True)
    prof = derive_car_profiles(a.study.subject(sid), opts)
    measured = prof.filter(~pl.col("imputed"))
    not_measured = measured.filter(pl.col("source").is_in(list(NOT_MEASURED_SOURCES)))
    kinds = "/".join(sorted(set(not_measured["source"].to_list())))
    peak = measured.filter((pl.col("time") == r["tmax"]) & ~pl.col("blq"))
    # the peak's source when the study records one ("(paper, not measured)"); nothing otherwise
    peak_src = peak["source"][0] if peak.height and peak["source"][0] else None
    if peak_src in NOT_MEASURED_SOURCES:
        peak_src += ", not measured"
    unit = f" {r['unit']}" if r.get("unit") else ""
    # a subject without a CAR-T infusion record is timed from day 0 (spec), as car_kinetics' reason says
    at0 = ("day 0 (no CAR-T infusion recorded)" if "no CAR-T infusion recorded" in (r.get("reason") or "")
           else "the infusion")
    head = (f"{r['param']} from {measured.height} samples"
            + (f", {not_measured.height} of them {kinds} (not measured)" if not_measured.height else "")
            + (f"; 0 imputed at {at0}" if r["zero_imputed"] else "") + ". ")
    if r.get("not_evaluable"):  # e.g. two samples at the same time: no NCA at all (missing, not 0)
        head += f"not evaluable: {r['not_evaluable']}"
    elif r["cmax"] is not None and r["tmax"] is not None:
        head += f"Cmax {num(r['cmax'])}{unit} on day {day_text(r['tmax'])}" + (f" ({peak_src})" if peak_src else "")
    else:
        head += "no quantifiable sample"
    if r["tlast"] is not None:
        head += f"; last quantifiable day {day_text(r['tlast'])}"
    lo, hi = opts.auc_window
    if r["auc_window"] is not None:
        head += (f"; AUC{num(lo)}-{num(hi)} {num(r['auc_window'])}{unit}·day by {r['method']}, "
                 f"{r['auc_window_basis']}")
    else:
        head += f"; AUC{num(lo)}-{num(hi)} {r['auc_window_basis']}"
    if r.get("warnings"):
        head += f"; warnings: {'; '.join(r['warnings'])}"
    if r.get("lambda.z") is not None:
        fit = (f"; last {r['lambda.z.n.points']} samples, adjusted R² {r['adj.r.squared']:.4f}"
               if r.get("lambda.z.n.points") else f"; {r['lambda.z.rule']}")
        head += (f"; lambda.z {num(r['lambda.z'], 3)}/day (half-life {num(r['half.life'], 3)} days"
                 f"{fit})")
    day_txt = pl.col("day").map_elements(day_text, return_dtype=pl.String)
    value_txt = pl.col("conc").map_elements(num, return_dtype=pl.String)
    days = prof.select(
        pl.col("day"), pl.lit(None, dtype=pl.String).alias("grade"),
        pl.when(pl.col("imputed")).then(pl.lit("kinetics.imputed_zero"))
        .when(pl.col("blq")).then(pl.lit("kinetics.blq")).otherwise(pl.lit("kinetics.sample")).alias("rule"),
        pl.format("{} {}{} on day {}{}", pl.col("param"),
                  pl.when(pl.col("blq")).then(pl.concat_str(pl.lit("<"), pl.col("lloq").map_elements(
                      num, return_dtype=pl.String))).otherwise(value_txt),
                  pl.when(pl.col("unit").is_not_null()).then(pl.concat_str(pl.lit(" "), pl.col("unit")))
                  .otherwise(pl.lit("")), day_txt,
                  pl.when(pl.col("imputed")).then(pl.lit(f" (0 imputed at {at0}: no CAR-T before it)"))
                  .when(pl.col("source").is_in(list(NOT_MEASURED_SOURCES)))
                  .then(pl.concat_str(pl.lit(" — "), pl.col("source"), pl.lit(", not measured"),
                                      pl.when(pl.col("blq")).then(pl.lit("; below LLOQ")).otherwise(pl.lit(""))))
                  .when(pl.col("blq")).then(pl.lit(" (below LLOQ)"))
                  .when(pl.col("source").is_not_null()).then(pl.format(" ({})", pl.col("source")))
                  .otherwise(pl.lit(""))).alias("reason"),
        "evidence", pl.col("source"), pl.lit(True).alias("shown"),
    )
    crit = "PKNCA rules (Denney et al. 2015) via cartlab.kinetics.nca"
    if not_measured.height:
        crit += (f"; {not_measured.height} of {measured.height} samples are {kinds}, not measured "
                 "(marked below)")
    return Explanation("kinetics", head, crit, days)


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


def _hematotox_item_ref(a: Analysis, sid: str, param: str, day, value) -> list[str]:
    """The observations row an item's baseline value comes from (``file:row``): the subject's row of
    ``param`` on that day with that (canonical) value; of several, the last (as the baseline rule)."""
    from cartlab.provenance import row_ref

    if day is None or value is None:
        return []
    o = a.study.observations
    rows = (o.filter((pl.col("subject_id") == sid) & (pl.col("param") == param) & (pl.col("day") == float(day))
                     & ((pl.col("value") - float(value)).abs() <= 1e-9 * max(1.0, abs(float(value)))))
            .sort("src_row", nulls_last=True))
    ref = row_ref(rows.row(-1, named=True)) if rows.height else None
    return [ref] if ref else []


def _hematotox(a: Analysis, sid: str) -> Explanation:
    """CAR-HEMATOTOX (Rejeski 2021): the score, its risk group and each item's baseline value, in
    the unit of the item's cut-offs, with its source row."""
    from cartlab.grading.common import load_criteria
    from cartlab.grading.hemato_common import fmt, from_canonical

    r = _one(a, "car_hematotox", sid)
    if r is None:
        return _not_derived("hematotox", "CAR-HEMATOTOX", "Rejeski K et al., Blood 2021")
    name = getattr(a.options.car_hematotox, "criteria", None) or "car_hematotox_2021"
    table = load_criteria(name)
    lo, hi = r["hematotox_score_min"], r["hematotox_score_max"]
    missing = r["hematotox_missing"]
    missing = ", ".join(str(x) for x in missing) if isinstance(missing, (list, tuple, pl.Series)) else str(missing)
    # review 40 B3: doses.csv not given is not "an item": the range is over the candidate lymphodepletion days
    from cartlab.grading.hematotox_absent import DOSES_NOT_GIVEN

    absent_ld = r["baseline_rule"] == "baseline.absent_doses"
    items_missing = ", ".join(str(x) for x in (r["hematotox_missing"] or []) if str(x) != DOSES_NOT_GIVEN)
    if lo == hi:
        score = f"{r['hematotox_score']}"
    elif absent_ld:
        score = (f"{lo}-{hi} (a range: {DOSES_NOT_GIVEN}, the lymphodepletion day is unknown"
                 + (f"; missing: {items_missing})" if items_missing else ")"))
    else:
        score = f"{lo}-{hi} (an item missing: {missing})" if missing.strip() else f"{lo}-{hi} (a range: see the items)"
    head = f"CAR-HEMATOTOX score {score}, risk {r['hematotox_risk'] or 'undetermined'}. {r['reason']}"
    base = r["baseline_day"]
    # the baseline rule: on or before the first lymphodepletion day, else before day 0
    where = (f"on or before the baseline day (day {fmt(base, 6)}, the first lymphodepletion dose)"
             if r["baseline_rule"] == "baseline.first_lymphodepletion_day" else
             "on or before any candidate lymphodepletion day (doses.csv not given)" if absent_ld else
             "before day 0 (no lymphodepletion dose recorded)")
    items = []
    for item in table["items"]:
        k, p, unit = item["param"].lower(), item["param"], item["unit"]
        if f"{k}_points" not in r:
            continue
        v, pts = r[f"{k}_value"], r[f"{k}_points"]
        if v is not None:
            shown = f"{fmt(from_canonical(v, unit, p))} {unit}"
        elif r[f"{k}_day"] is not None:  # measured: a censored result, or two values of a day without a time
            shown = (f"measured on day {fmt(r[f'{k}_day'], 6)}, as a censored result or two values of that day "
                     "without a time (the score's reason gives them and their points)")
        elif absent_ld and p not in (r["hematotox_missing"] or []):
            shown = ("not one value: the candidate baselines differ by lymphodepletion day (doses.csv not given; "
                     "see the reason)")
        else:
            shown = f"not measured {where}"
        ranged = v is None and (r[f"{k}_day"] is not None or (absent_ld and p not in (r["hematotox_missing"] or [])))
        got = ("a range (see the reason)" if ranged else "?") if pts is None else pts
        items.append({"day": _or(_or(r[f"{k}_day"], base), 0.0), "grade": pts, "rule": item.get("id", f"car_hematotox.item.{k}"),
                      "reason": f"{item.get('label', k)}: {shown} -> {got} point(s)",
                      "evidence": _hematotox_item_ref(a, sid, p, r[f"{k}_day"], v)})
    items.append({"day": _or(base, 0.0), "grade": r["hematotox_score"],
                  "rule": r["rule"], "reason": f"score {score} = the sum of the item points; risk "
                  f"{r['hematotox_risk'] or 'undetermined'}", "evidence": r["evidence"]})
    frame = _row_frame(items)
    return Explanation("hematotox", head, f"{table.get('citation') or 'Rejeski K et al., Blood 2021;138:2499'} "
                       f"(criteria/{name}.yaml); baseline: {r['baseline_rule']}", frame,
                       rules=tuple(x for x in [r["rule"]] if x))


def _easix(a: Analysis, sid: str) -> Explanation:
    """EASIX (LDH x creatinine / platelets) at each time point, with m-EASIX and s-EASIX."""
    from cartlab.grading.common import load_criteria

    name = getattr(a.options.easix, "criteria", None) or "easix"
    rows = _rows(a, "easix", sid) if a.has("easix") else pl.DataFrame()
    items = [{"day": _or(r["day"], 0.0), "grade": None, "rule": r["rule"],
              "reason": f"{r['timepoint']}: {r['reason']}", "evidence": r["evidence"]}
             for r in rows.iter_rows(named=True)]
    vals = ", ".join(f"{r['timepoint']} {r['easix']:.4g}" if r["easix"] is not None else f"{r['timepoint']} not computable"
                     for r in rows.iter_rows(named=True))
    head = f"EASIX {vals}" if vals else "EASIX not derived for this subject"
    cite = load_criteria(name).get("citation")  # the criteria table's source (Pennisi 2021), not a fixed text
    return Explanation("easix", head, f"{cite}; criteria/{name}.yaml" if cite else f"criteria/{name}.yaml",
                       _row_frame(items), rules=tuple({x for r in items for x in [r["rule"]] if x}))


def _t_icaht(a: Analysis, sid: str) -> Explanation:
    """T-ICAHT (platelets): the early and late window grades with their reasons."""
    r = _one(a, "t_icaht", sid)
    if r is None:
        return _not_derived("t-icaht", "T-ICAHT", "criteria/t_icaht_2025.yaml")
    e, late = r["t_icaht_early_grade"], r["t_icaht_late_grade"]
    head = (f"early T-ICAHT grade {_window_grade(r, 't_icaht_early_grade', 'early_reason')}, "
            f"late T-ICAHT grade {_window_grade(r, 't_icaht_late_grade', 'late_reason')}")
    items = [{"day": _or(r["early_window_end"], 30.0), "grade": e, "rule": r["early_rule"],
              "reason": f"early window: {r['early_reason']}", "evidence": r["early_evidence"]},
             {"day": _or(r["late_window_start"], 31.0), "grade": late, "rule": r["late_rule"],
              "reason": f"late window: {r['late_reason']}", "evidence": r["late_evidence"]}]
    return Explanation("t-icaht", head, "criteria/t_icaht_2025.yaml", _row_frame(items),
                       rules=tuple(x for x in (r["early_rule"], r["late_rule"]) if x))


def _iec_hs(a: Analysis, sid: str) -> Explanation:
    """IEC-HS flags (session 38, review s38 C3): one line per day with each computable criterion met,
    undecided (the engine's reason says why: the missing input, a censored baseline, ...) or not met,
    then the engine's reason; the evidence holds the day's rows and the baseline rows used."""
    from cartlab.grading.common import load_criteria
    from cartlab.grading.iec_hs import IecHsOptions

    opts = a.options.iec_hs or IecHsOptions()
    table = load_criteria(opts.criteria)
    ids = [c["id"] for role in ("key", "supporting") for c in table[role]
           if c.get("computable") and c["id"] not in opts.exclude]
    rows = _rows(a, "iec_hs_flags", sid) if a.has("iec_hs_flags") else None
    if rows is None or rows.height == 0:
        return _not_derived("iec-hs", "IEC-HS flags (no day with an IEC-HS criterion measured)",
                            f"criteria/{opts.criteria}.yaml")
    items = []
    for r in rows.iter_rows(named=True):
        met = [*r["key_met"], *r["supporting_met"]]
        open_ = list(r["not_evaluable"])
        no = [i for i in ids if i not in met and i not in open_]
        state = {True: "flagged", False: "not flagged", None: "not evaluable"}[r["iec_hs_flag"]]
        parts = [f"met: {', '.join(met)}" if met else "", f"undecided: {', '.join(open_)}" if open_ else "",
                 f"not met: {', '.join(no)}" if no else ""]
        items.append({"day": r["day"], "grade": None, "rule": r["rule"],
                      "reason": f"{state} ({'; '.join(p for p in parts if p)}) - {r['reason']}", "evidence": r["evidence"]})
    flag = rows.filter(pl.col("iec_hs_flag").fill_null(False))["day"].to_list()
    unk = rows.filter(pl.col("iec_hs_flag").is_null())["day"].to_list()
    head = (f"IEC-HS flag (for review, not a diagnosis) on {len(flag)} day(s)"
            + (f" ({days_text(flag)})" if flag else "")  # runs, as CRS (review38 diff2 C4)
            + f", not evaluable on {len(unk)} day(s)" + (f" ({days_text(unk)})" if unk else "")
            + f", of {rows.height} day(s) with a criterion measured")
    return Explanation("iec-hs", head, f"{table.get('citation')}; criteria/{opts.criteria}.yaml", _row_frame(items),
                       rules=tuple(dict.fromkeys(x for r in items for x in str(r["rule"] or "").split("; ") if x)))


def _recovery(a: Analysis, sid: str) -> Explanation:
    """Neutrophil and platelet count recovery (day, or not reached with the censoring day)."""
    r = _one(a, "count_recovery", sid)
    if r is None:
        return _not_derived("recovery", "count recovery", "criteria/count_recovery.yaml")
    items, bits = [], []
    for k, label in (("neutrophil", "neutrophils"), ("platelet", "platelets")):
        day, status = r[f"{k}_recovery_day"], r[f"{k}_recovery_status"]
        bits.append(f"{label} {(status or 'not evaluable').replace('_', ' ')}" + (f" on day {day_text(day)}" if day is not None else ""))
        items.append({"day": _or(day, _or(r[f"{k}_recovery_censor_day"], 0.0)), "grade": None,
                      "rule": r[f"{k}_recovery_rule"], "reason": f"{label}: {r[f'{k}_recovery_reason']}",
                      "evidence": r[f"{k}_recovery_evidence"]})
    return Explanation("recovery", "count recovery: " + "; ".join(bits), "criteria/count_recovery.yaml",
                       _row_frame(items), rules=tuple(x["rule"] for x in items if x["rule"]))


def _endpoints(a: Analysis, sid: str) -> Explanation:
    """Time-to-event endpoints (ELN 2022 Table 9): each ADTTE parameter's time, event or censoring and
    why, the relapse episodes behind RFS/CIR and the duration of response."""
    rows = _rows(a, "adtte", sid) if a.has("adtte") else pl.DataFrame()
    if rows.height and "rule_status" not in rows.columns:
        from cartlab.criteria import with_rule_status

        rows = with_rule_status(rows)
    if rows.height and "evidence" in rows.columns:  # the row that fixed ADY first, as ADaM EVIDENCE (review s39 B2)
        from cartlab.response.adtte_population import deciding_row_first

        rows = deciding_row_first(rows, a.study)
    items, bits = [], []
    for r in rows.iter_rows(named=True):
        if r["ANLFL"] != "Y":
            # a subject without a CAR-T dose: say so in the headline (review s39 A1)
            what = "not counted (no CAR-T dose)" if r["rule"] == "not_infused" else "not defined"
            bits.append(f"{r['PARAMCD']} {what}")
        else:
            kind = ("censored" if r["CNSR"] == 1 else
                    "competing event" if r["PARAMCD"] == "CIR" and r["EVENT"] == 2 else "event")
            desc = r["EVNTDESC"] if kind != "censored" else r["CNSDTDSC"]
            what = f"{day_text(r['AVAL'])} days, {kind}" + (f" ({desc.lower()})" if desc else "")
            bits.append(f"{r['PARAMCD']} {what}")
        # the row's status as adtte.csv / ADaM RULESTAT give it (with_rule_status, the one function; review 41 diff1 F4)
        items.append({"day": _or(r["ADY"], 0.0), "grade": None, "rule": r["rule"], "rule_status": r.get("rule_status"),
                      "reason": f"{r['PARAMCD']} ({r['PARAM']}): {what}; {r['reason']}", "evidence": r["evidence"]})
    rel = _rows(a, "relapse", sid) if a.has("relapse") else pl.DataFrame()
    for r in rel.iter_rows(named=True):
        day = r["relapse_day"] if r["relapse_day"] is not None else r["response_day"]
        items.append({"day": _or(day, 0.0), "grade": None, "rule": r["relapse_rule"],
                      "reason": f"relapse episode {r['episode']}: response {r['response_category']} on day "
                                f"{day_text(r['response_day'])}; {r['relapse_reason']}", "evidence": r["evidence"]})
    b = _one(a, "best_response", sid)
    if b is not None and b.get("first_response_day") is not None:
        end = ""
        if b.get("dor_end_day") is not None:  # the duration's own end (not the assessment window's)
            end = f" to day {day_text(b['dor_end_day'])}" + (f" ({b['dor_end_reason']})" if b.get("dor_end_reason") else "")
        dor = ("not derived" if b["dor_days"] is None else
               f"{day_text(b['dor_days'])} days{end}, {'event (relapse or death)' if b['dor_event'] else 'censored'}")
        items.append({"day": b["first_response_day"], "grade": None, "rule": None,
                      "reason": f"duration of response from the first response on day {day_text(b['first_response_day'])}: {dor}",
                      "evidence": []})
    items.sort(key=lambda x: x["day"])  # stable: the parameters in their order on one day
    head = "; ".join(bits) if bits else "no time-to-event endpoint derived for this subject"
    if not bits:  # the step skipped this subject: say why, as cartlab analyze does
        why = next((sk for sk in getattr(a, "skipped", []) if "adtte" in sk.tables
                    and (sk.subjects is None or sid in sk.subjects)), None)
        if why is not None:
            head += f": {why.reason} (fix: {why.fix})"
    from dataclasses import fields

    from cartlab.response.endpoint_options import followed_options
    from cartlab.response.endpoints import EndpointOptions

    opts, default = a.options.endpoint_options(), EndpointOptions()
    # an inherited landmark follows best_response: shown so, not as an option set (review 41 diff1 F8)
    applied = ({f.name: getattr(opts, f.name) for f in fields(opts)}
               | followed_options(a.options.endpoints, a.options.best_response_options(), opts))
    options = _changed_options(applied,  # review 39 diff2 C3
                               {f.name: getattr(default, f.name) for f in fields(default)})
    from cartlab.criteria.status import row_statuses

    worst = row_statuses((x["rule"], x.get("rule_status")) for x in items)
    return Explanation("endpoints", head, "ELN 2022 (Döhner et al., Blood 2022) Table 9; criteria/endpoints.yaml"
                       f"{options}", _row_frame(items),
                       rules=tuple(dict.fromkeys(x["rule"] for x in items if x["rule"])), row_statuses=worst)


EXPLAINERS: dict[str, Callable[[Analysis, str], Explanation]] = {
    "kinetics": _kinetics,
    "response": _response,
    "crs": _crs, "icans": _icans, "crs-scales": _crs_scales, "ctcae": _ctcae, "icaht": _icaht,
    "hematotox": _hematotox, "easix": _easix, "t-icaht": _t_icaht, "iec-hs": _iec_hs, "recovery": _recovery,
    "endpoints": _endpoints,
}


def explain(source: Study | Analysis, what: str, subject_id: str | None = None,
            options: AnalysisOptions | None = None) -> Explanation:
    """Explain ``what`` (one of :data:`EXPLAINERS`) for one subject.

    ``source`` is an :class:`~cartlab.analyze.Analysis` (its tables and options are used) or a study
    (analysed with ``options``); ``subject_id`` may be left out when it holds one subject.
    """
    if what not in EXPLAINERS:
        raise KeyError(f"cannot explain {what!r}; choose one of {', '.join(EXPLAINERS)}")
    a = source if isinstance(source, Analysis) else Analysis(source, options)
    ids = a.study.subject_ids
    sid = subject_id if subject_id is not None else (ids[0] if len(ids) == 1 else None)
    if sid is None or sid not in ids:
        raise KeyError(f"name one subject of the study ({len(ids)} subjects)" if sid is None
                       else f"no subject {sid!r} in the study")
    return EXPLAINERS[what](a, sid)
