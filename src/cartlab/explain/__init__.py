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

from collections.abc import Callable

import polars as pl

from cartlab._days import day_text
from cartlab.analyze import Analysis, AnalysisOptions
from cartlab.explain._base import (
    Explanation,
    _changed_options,
    _graded_days,
    _one,
    _or,
    _row_frame,
    _rows,
    _top_rules,
)
from cartlab.explain.hemato import _easix, _hematotox, _icaht, _iec_hs, _recovery, _t_icaht
from cartlab.model import Study


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
    worst = worst_labs(graded, calcium_summary=opts.calcium_summary)
    base = baseline_labs(graded, calcium_summary=opts.calcium_summary)
    n_post = graded.filter(post_baseline(graded)).height
    n_not = adlb.height - graded.height
    # the terms no value after the baseline could grade, named with the missing input (review 39 B1)
    every = worst_labs(adlb, every_term=True, calcium_summary=opts.calcium_summary)
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
        from cartlab.response.marrow_options import mrd_qualifies

        qualifies = mrd_qualifies(b.get("criteria"))
        if b["mrd_negative"] and b["best_response"] not in qualifies:  # review 45 F5: a threshold reading only
            q = "/".join(qualifies)
            head += (f", MRD below the threshold at that marrow ({b.get('criteria') or 'the criteria'}'s "
                     f"'{q} without MRD' qualifies {q} only, not {b['best_response']})")
        else:
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
