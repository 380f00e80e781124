"""ADLB: the lab observations no CTCAE term grades (review 40 B2; docs/interop/adam.md).

The ``adlb`` analysis table holds the CTCAE-graded rows only; option ``adam.adlb_params=all`` (default)
adds every observation of the dictionary groups hematology, chemistry, coagulation and cytokine whose
parameter the table does not grade (CRP, ferritin, monocytes, blasts, IL-6 ...), so the inputs of
ADSL HTXSCBL / EASIXBL and the CRS biomarkers can be found in ADaM (ADaM v2.1 section 2.2,
traceability). Their grade variables are empty and REASON says why; the baseline is the ADLB /
ADVS rule (the analysis' CTCAE baseline options). ``graded``: the graded rows only (before session 40).
The graded rows are never changed: the new ones are appended after them.
"""

from __future__ import annotations

import polars as pl

from cartlab.provenance import evidence_ref

__all__ = ["LAB_GROUPS", "ungraded_rows"]

#: the dictionary groups ADLB carries
LAB_GROUPS = ("hematology", "chemistry", "coagulation", "cytokine")


def with_adlb_baseline(f: pl.DataFrame, analysis, opts) -> tuple[pl.DataFrame, pl.Expr]:
    """``f`` (observations with ``_obs``, sorted by subject, param, day) with ``BASE`` and ``_bobs``: the last
    value before the infusion by the ADLB rule (review 37 R37-8: calendar day, option ctcae.baseline_day0),
    and the expression of a row being before it; one rule for the graded and the ungraded ADLB records."""
    from cartlab.grading.ctcae_derive import baseline_window, infusion_start

    if "datetime" not in f.columns:
        f = f.with_columns(pl.lit(None, dtype=pl.String).alias("datetime"))
    inf = infusion_start(analysis.study) if opts.baseline_day0 == "before_infusion_time" else None
    if inf is not None:
        f = f.join(inf, on="subject_id", how="left", maintain_order="left")
    before = baseline_window(opts, inf is not None)
    base = (f.filter(before & pl.col("value").is_not_null()).group_by(["subject_id", "param"], maintain_order=True)
            .last().select("subject_id", "param", pl.col("value").alias("BASE"), pl.col("_obs").alias("_bobs")))
    return f.join(base, on=["subject_id", "param"], how="left", maintain_order="left"), before


def ungraded_rows(analysis, t: pl.DataFrame, params: pl.DataFrame) -> pl.DataFrame:
    """Rows shaped as the ``adlb`` analysis table ``t`` (same columns and types) for the observations
    of :data:`LAB_GROUPS` parameters absent from ``t`` (value given, or a censored result);
    ``params``: the dictionary (_code, _group)."""
    from cartlab.grading.ctcae_options import CtcaeOptions

    opts = analysis.options.ctcae or CtcaeOptions()
    graded = t["param"].unique().to_list() if t.height else []
    codes = params.filter(pl.col("_group").is_in(LAB_GROUPS) & ~pl.col("_code").is_in(graded))["_code"].to_list()
    obs = analysis.study.observations
    censored = (pl.col("censor").is_in(["<", "<=", ">", ">="]) if "censor" in obs.columns else pl.lit(False))
    f = (obs.with_row_index("_obs").filter(pl.col("param").is_in(codes) & (pl.col("value").is_not_null() | censored))
         .sort(["subject_id", "param", "day", "_obs"], nulls_last=True))
    if f.height == 0:
        return t.clear()
    for c in ("lln", "uln"):
        if c not in f.columns:
            f = f.with_columns(pl.lit(None, dtype=pl.Float64).alias(c))
    f, before = with_adlb_baseline(f, analysis, opts)
    reason = pl.format("{}: no CTCAE v5 term grades this parameter: not graded, value given as recorded "
                       "(option adam.adlb_params=all)", pl.col("param"))
    cols = {
        "subject_id": pl.col("subject_id"), "day": pl.col("day"), "datetime": pl.col("datetime"),
        "param": pl.col("param"), "AVAL": pl.col("value"), "AVALU": pl.col("unit"),
        "ANRLO": pl.col("lln"), "ANRHI": pl.col("uln"), "BASE": pl.col("BASE"),
        "ABLFL": pl.when(pl.col("_obs") == pl.col("_bobs")).then(pl.lit("Y")),
        "PCHG": pl.when(pl.col("BASE").is_not_null() & (pl.col("BASE") != 0))
        .then((pl.col("value") - pl.col("BASE")) / pl.col("BASE") * 100),
        "grade_reason": reason, "evidence": pl.concat_list(evidence_ref()),
        "post_baseline": ~before.fill_null(False),
    }
    out = f.select(*(cols[c].alias(c) if c in cols else pl.lit(None).alias(c) for c in t.columns))
    return out.cast(dict(t.schema), strict=False)
