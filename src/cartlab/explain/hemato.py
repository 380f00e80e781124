"""Explanations of the hematologic engines: ICAHT, T-ICAHT (EHA/EBMT 2023; Rejeski 2025), CAR-HEMATOTOX,
EASIX, IEC-HS flags and count recovery (``cartlab explain --what icaht`` ...)."""

from __future__ import annotations

import polars as pl

from cartlab._days import day_text, days_text
from cartlab.analyze import Analysis
from cartlab.explain._base import Explanation, _changed_options, _not_derived, _one, _or, _row_frame, _rows

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
