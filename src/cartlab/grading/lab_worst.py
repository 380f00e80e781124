"""The worst CTCAE laboratory grade per term, one implementation for the subject page and
``cartlab explain --what ctcae`` (review 37 B8: they disagreed).

The worst on-treatment grade reads the post-baseline ADLB records only (pharmaverse admiral/tern
"highest grade post-baseline"; ADLB ``post_baseline``; an older table without it: day 0 on). The
baseline record and the values before it are the baseline (BTOXGR), listed apart. A grade a missing
input or a censored result leaves open (``ATOXGRL_MAX`` / ``ATOXGRH_MAX``) is a range from its lower
grade to the highest upper bound of the term's rows, with what leaves it open named ("missing is not
negative").
"""

from __future__ import annotations

import polars as pl

__all__ = ["post_baseline", "worst_labs", "baseline_labs"]

#: the input a range grade waits for, as the CTCAE engine words it
_NOT_EXCLUDED = r"not excluded: criteria on (.+?) not evaluable"
#: ... or the baseline's normal/abnormal status (ctcae_readings.unknown_baseline_outcomes; review 41 F8)
_BNRIND_UNKNOWN = "not excluded: baseline normal/abnormal not known"
#: ... with no baseline at all (option no_baseline=range; ctcae_readings.NO_BASELINE_CONTEXT, review 48 F3)
_NO_BASELINE = "no baseline (BASE and BNRIND missing"
#: a grade a censored result or baseline leaves open (review 37 R37-1/R37-2)
_CENSORED = r"(baseline is the )?censored result ([<>]=?[0-9.eE+-]+)"


def post_baseline(frame: pl.DataFrame) -> pl.Expr:
    """The rows a worst on-treatment grade reads: ADLB ``post_baseline`` (after the baseline window);
    a table without it: day 0 on."""
    return pl.col("post_baseline").fill_null(False) if "post_baseline" in frame.columns else pl.col("day") >= 0


#: a row of both directions (direction null) words each: "L: <low reason>; H: <high reason>"
_BOTH = r"(?s)^L: (.*?); H: (.*)$"
#: why a row is not gradable ("not gradable: ANRHI missing")
_NOT_GRADABLE = r"not gradable: ([^;(]+)"


def _sides(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per value and direction with a CTCAE term (``ATOXDSCL``/``ATOXDSCH``, ``ATOXGR{L,H}``,
    ``ATOXGR{L,H}_MAX``): ``term``, ``_g`` (its grade, null = not gradable), ``_upper`` (the upper bound
    a missing input leaves, null = none), ``grade_reason`` and ``rule`` of that direction. A row graded
    in both directions (``direction`` null: K, Na, a WBC with no LLN) counts under each term ("0-2
    Hypokalemia"), as the study page's toxicity summary (``lab_term_worst``). A table without the
    per-direction columns: ``term``/``direction``/``ATOXGR`` as before (review 39 B1)."""
    cols = set(rows.columns)
    reason = pl.col("grade_reason").cast(pl.String) if "grade_reason" in cols else pl.lit(None, pl.String)
    rule = pl.col("rule").cast(pl.String) if "rule" in cols else pl.lit(None, pl.String)
    direction = pl.col("direction").cast(pl.String) if "direction" in cols else pl.lit(None, pl.String)
    if not {"ATOXDSCL", "ATOXDSCH", "ATOXGRL", "ATOXGRH"} <= cols:
        has_max = {"ATOXGRL_MAX", "ATOXGRH_MAX"} <= cols
        upper = (pl.when(direction == "L").then(pl.col("ATOXGRL_MAX")).when(direction == "H")
                 .then(pl.col("ATOXGRH_MAX")) if has_max else pl.lit(None, pl.Int64))
        return rows.filter(pl.col("term").is_not_null()).with_columns(
            pl.col("ATOXGR").cast(pl.Int64).abs().alias("_g"), upper.cast(pl.Int64).alias("_upper"),
            reason.alias("grade_reason"), rule.alias("rule"))
    parts = []
    for i, d in enumerate(("L", "H")):
        mx = f"ATOXGR{d}_MAX"
        side_reason = (pl.when(direction == d).then(reason)
                       .when(direction.is_null()).then(pl.coalesce(reason.str.extract(_BOTH, i + 1), reason)))
        side_rule = (pl.when(direction == d).then(rule)
                     .when(direction.is_null()).then(pl.coalesce(rule.str.extract(_BOTH, i + 1), rule)))
        parts.append(rows.filter(pl.col(f"ATOXDSC{d}").is_not_null()).with_columns(
            pl.col(f"ATOXDSC{d}").cast(pl.String).alias("term"),
            pl.col(f"ATOXGR{d}").cast(pl.Int64).abs().alias("_g"),
            (pl.col(mx) if mx in cols else pl.lit(None)).cast(pl.Int64).alias("_upper"),
            side_reason.alias("grade_reason"), side_rule.alias("rule")))
    # in the rows' order, low direction first within a value
    return pl.concat([p.with_row_index("_i").with_columns(pl.lit(k).alias("_side")) for k, p in enumerate(parts)],
                     how="diagonal_relaxed").sort("_i", "_side", maintain_order=True).drop("_i", "_side")


def _summary_terms(calcium_summary: str) -> dict[str, str]:
    """Table term -> the CTCAE term it is reported under, as the cohort toxicity summary does
    (:func:`cartlab.grading.ctcae_summary.lab_term_worst`; review 48 F4): ``"merged"`` maps admiral's
    "Hypocalcemia (Ionized)" / "Hypercalcemia (Ionized)" metadata rows to the one CTCAE v5.0 term;
    ``"split"`` keeps each table term."""
    if calcium_summary not in ("merged", "split"):
        raise ValueError(f"calcium_summary must be 'merged' or 'split', not {calcium_summary!r}")
    if calcium_summary == "split":
        return {}
    from cartlab.grading.ctcae_criteria import compile_criteria
    from cartlab.grading.ctcae_summary import summary_terms

    return summary_terms([compile_criteria("ctcae_v5")])


def _worst(rows: pl.DataFrame, every_term: bool = False, calcium_summary: str = "merged") -> pl.DataFrame:
    rows = _sides(rows)
    terms = _summary_terms(calcium_summary)
    if terms:  # one CTCAE term per toxicity, as the cohort summary (option ctcae.calcium_summary)
        rows = rows.with_columns(pl.col("term").replace(terms))
    reason = pl.col("grade_reason")
    cens = pl.concat_str([pl.when(reason.str.extract(_CENSORED, 1).is_not_null()).then(pl.lit("censored baseline "))
                          .otherwise(pl.lit("censored result ")), reason.str.extract(_CENSORED, 2)])
    up = pl.coalesce(pl.col("_upper"), pl.col("_g"))
    rows = rows.with_columns(
        up.alias("_up"),
        pl.when(pl.col("_upper").is_not_null() & (pl.col("_upper") > pl.col("_g").fill_null(0))).then(pl.coalesce(
            reason.str.extract(_NOT_EXCLUDED, 1) + pl.lit(" missing"),
            pl.when(reason.str.contains(_NO_BASELINE, literal=True)).then(pl.lit("no baseline (BASE and BNRIND missing)")),
            pl.when(reason.str.contains(_BNRIND_UNKNOWN, literal=True)).then(pl.lit(
                "baseline reference limits missing (BNRIND unknown)")), cens,
            pl.lit("an input missing"))).alias("_miss"),
        # not gradable: no grade and no bound (a missing limit that does not bound the grade at all)
        (pl.col("_g").is_null() & pl.col("_upper").is_null()).alias("_ng"),
        reason.str.extract(_NOT_GRADABLE, 1).str.strip_chars().alias("_ngwhy"))
    # a row graded >= 1, or graded 0 with a range reaching >= 1 ("0-4": an open range is not a grade 0)
    shown = (pl.col("_g").fill_null(0) >= 1) | (pl.col("_up").fill_null(0) >= 1)
    if not every_term:
        rows = rows.filter(shown)
    rows = rows.with_columns(shown.alias("_shown"))
    # per term: its not-gradable values and why (the most frequent reason; "not gradable" when unsaid)
    ng = (rows.group_by("term", maintain_order=True)
          .agg(pl.col("_ng").sum().cast(pl.Int64).alias("n_not_gradable"),
               pl.col("_ngwhy").filter(pl.col("_ng")).drop_nulls().mode().sort().first().alias("not_gradable_why"),
               pl.col("_shown").any().alias("_any_shown"), (~pl.col("_ng")).any().alias("_any_graded")))
    graded = rows.filter(~pl.col("_ng"))
    tops = graded.group_by("term", maintain_order=True).agg(
        pl.col("_up").max().alias("grade_max"),
        pl.col("_miss").filter(pl.col("_up") == pl.col("_up").max()).drop_nulls().first().alias("why"))
    # the worst row: a shown one (graded >= 1 or open) first, then the highest grade, then the first day
    worst = (graded.with_columns(pl.col("_g").fill_null(0)).sort(["_shown", "_g", "day"], descending=[True, True, False])
             .group_by("term", maintain_order=True).first()
             .join(tops, on="term", how="left", maintain_order="left")
             .with_columns(pl.col("_g").cast(pl.Int64).alias("grade"))
             .with_columns(pl.when(pl.col("grade_max") > pl.col("grade")).then(pl.col("why")).alias("why")))
    # terms in first-appearance order; a term with no gradable value: grade null, why = what is missing
    worst = ng.join(worst, on="term", how="left", maintain_order="left").with_columns(
        pl.when(pl.col("grade").is_null()).then(pl.col("not_gradable_why").fill_null("not gradable"))
        .otherwise(pl.col("why")).alias("why"))
    if every_term:  # graded >= 1 or open; settled 0 with values not gradable; not gradable; settled 0
        order = (pl.when(pl.col("_any_shown")).then(0).when(pl.col("grade").is_null()).then(2)
                 .when(pl.col("n_not_gradable") > 0).then(1).otherwise(3))
        worst = worst.with_columns(order.alias("_o")).sort("_o", maintain_order=True)
    else:
        worst = worst.filter(pl.col("_any_shown"))
    return worst.select([c for c in ("term", "grade", "grade_max", "why", "day", "AVAL", "AVALU", "BASE", "rule",
                                     "evidence", "n_not_gradable", "not_gradable_why") if c in worst.columns])


def worst_labs(adlb: pl.DataFrame, every_term: bool = False, calcium_summary: str = "merged") -> pl.DataFrame:
    """Per term (in first-appearance order) the worst post-baseline grade ``grade`` (>= 1, or 0 when a
    range reaches >= 1), its first
    day and value, ``grade_max`` (the highest upper bound of the term's post-baseline rows: a range
    when above ``grade``), ``why`` (what leaves it open: "ANRHI missing", "censored result <0.6"),
    ``n_not_gradable`` and ``not_gradable_why`` (values of the term no grade could be given).

    ``every_term`` (the subject page, review 39 B1: missing is not negative): every term with a value
    after the baseline: first the graded and open ones, then a settled 0 with values not gradable,
    then the terms with no gradable value (``grade`` null, ``why`` = "ANRHI missing"), then the
    settled grade 0s.

    ``calcium_summary`` (option ``ctcae.calcium_summary``): "merged" (default) reports admiral's
    "Hypocalcemia (Ionized)" rows under the CTCAE v5.0 term Hypocalcemia, as the cohort toxicity
    summary does (review 48 F4); "split" keeps each table term."""
    return _worst(adlb.filter(post_baseline(adlb)), every_term, calcium_summary)


def baseline_labs(adlb: pl.DataFrame, every_term: bool = False, calcium_summary: str = "merged") -> pl.DataFrame:
    """As :func:`worst_labs` for the baseline record and the values before it (not toxicities)."""
    return _worst(adlb.filter(~post_baseline(adlb)), every_term, calcium_summary)
