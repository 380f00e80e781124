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
#: a grade a censored result or baseline leaves open (review 37 R37-1/R37-2)
_CENSORED = r"(baseline is the )?censored result ([<>]=?[0-9.eE+-]+)"


def post_baseline(frame: pl.DataFrame) -> pl.Expr:
    """The rows a worst on-treatment grade reads: ADLB ``post_baseline`` (after the baseline window);
    a table without it: day 0 on."""
    return pl.col("post_baseline").fill_null(False) if "post_baseline" in frame.columns else pl.col("day") >= 0


def _worst(rows: pl.DataFrame) -> pl.DataFrame:
    has_max = all(c in rows.columns for c in ("ATOXGRL_MAX", "ATOXGRH_MAX", "direction"))
    upper = (pl.when(pl.col("direction") == "L").then(pl.col("ATOXGRL_MAX"))
             .when(pl.col("direction") == "H").then(pl.col("ATOXGRH_MAX")) if has_max else pl.lit(None, pl.Int64))
    # a row graded >= 1, or graded 0 with a range reaching >= 1 ("0-4": an open range is not a grade 0)
    rows = (rows.filter((pl.col("ATOXGR").fill_null(0) != 0) | (upper.cast(pl.Int64).fill_null(0) >= 1))
            .with_columns(pl.col("ATOXGR").fill_null(0).abs().alias("_g")))
    reason = pl.col("grade_reason").cast(pl.String) if "grade_reason" in rows.columns else pl.lit(None, pl.String)
    cens = pl.concat_str([pl.when(reason.str.extract(_CENSORED, 1).is_not_null()).then(pl.lit("censored baseline "))
                          .otherwise(pl.lit("censored result ")), reason.str.extract(_CENSORED, 2)])
    rows = rows.with_columns(
        pl.coalesce(upper.cast(pl.Int64), pl.col("_g")).alias("_up"),
        pl.when(upper.is_not_null() & (upper.cast(pl.Int64) > pl.col("_g"))).then(pl.coalesce(
            reason.str.extract(_NOT_EXCLUDED, 1) + pl.lit(" missing"), cens,
            pl.lit("an input missing"))).alias("_miss"))
    tops = rows.group_by("term", maintain_order=True).agg(
        pl.col("_up").max().alias("grade_max"),
        pl.col("_miss").filter(pl.col("_up") == pl.col("_up").max()).drop_nulls().first().alias("why"))
    worst = (rows.sort(["_g", "day"], descending=[True, False]).group_by("term", maintain_order=True).first()
             .join(tops, on="term", how="left", maintain_order="left")
             .with_columns(pl.col("_g").cast(pl.Int64).alias("grade"))
             .with_columns(pl.when(pl.col("grade_max") > pl.col("grade")).then(pl.col("why")).alias("why")))
    return worst.select([c for c in ("term", "grade", "grade_max", "why", "day", "AVAL", "AVALU", "BASE", "rule",
                                     "evidence") if c in worst.columns])


def worst_labs(adlb: pl.DataFrame) -> pl.DataFrame:
    """Per term (in first-appearance order) the worst post-baseline grade ``grade`` (>= 1, or 0 when a
    range reaches >= 1), its first
    day and value, ``grade_max`` (the highest upper bound of the term's post-baseline rows: a range
    when above ``grade``) and ``why`` (what leaves it open: "ANRHI missing", "censored result <0.6")."""
    return _worst(adlb.filter(post_baseline(adlb)))


def baseline_labs(adlb: pl.DataFrame) -> pl.DataFrame:
    """As :func:`worst_labs` for the baseline record and the values before it (not toxicities)."""
    return _worst(adlb.filter(~post_baseline(adlb)))
