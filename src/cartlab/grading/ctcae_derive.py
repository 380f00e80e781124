"""CTCAE derivation helpers of :func:`cartlab.grading.ctcae.derive_ctcae`: the baseline window (which
rows can be the baseline, option ``baseline_day0``), censored-result bounds and derived parameters
(corrected calcium). Split from ``ctcae.py`` in session 37 (module size)."""

from __future__ import annotations

from typing import Any

import polars as pl

from cartlab.grading.ctcae_options import CtcaeOptions

__all__ = ["baseline_window", "bnrind_from_limits", "censored_baseline_bnrind", "derive_params", "infusion_start"]


def infusion_start(study: Any) -> pl.DataFrame | None:
    """Per subject (``subject_id``, ``_inf``) the time of the first CAR-T infusion on the day axis when it
    is known to the minute (a timed dose row or ``subjects.infusion_datetime``, see
    :func:`cartlab.kinetics.agents.car_t_infusions`); subjects with only a date are absent. None when
    ``study`` is a bare observations frame (no doses or subjects)."""
    if not (hasattr(study, "doses") and hasattr(study, "subjects")):
        return None
    from cartlab.kinetics.agents import car_t_infusions

    inf = car_t_infusions(study)
    if inf.height == 0:
        return pl.DataFrame(schema={"subject_id": pl.String, "_inf": pl.Float64})
    return (inf.group_by("subject_id").agg(pl.col("day").cast(pl.Float64).min().alias("_inf"))
            .filter(pl.col("_inf") != pl.col("_inf").floor()).select(pl.col("subject_id").cast(pl.String), "_inf"))


def baseline_window(options: CtcaeOptions, has_inf: bool = False) -> pl.Expr:
    """Rows that can be the baseline (the last of them per subject and param is): on or before
    ``baseline_day`` by calendar day (``floor(day)``; before it with ``baseline_inclusive=False``), so a
    timed sample of day 0 (07:00 = day 0.29) counts as a date-only day-0 row does (review 37 R37-8). With
    ``baseline_day0="before_infusion_time"`` and a column ``_inf`` (``has_inf``, see
    :func:`infusion_start`): a timed row of the infusion day only before the infusion; an untimed row,
    or no infusion time, keeps the calendar-day rule."""
    from cartlab.io.clock import is_timed

    cal = pl.col("day").floor()
    ok = cal <= options.baseline_day if options.baseline_inclusive else cal < options.baseline_day
    if options.baseline_day0 == "before_infusion_time" and has_inf:
        after = (cal == 0) & pl.col("_inf").is_not_null() & is_timed("day", "datetime") & (pl.col("day") >= pl.col("_inf"))
        ok = ok & ~after.fill_null(False)
    return ok


def censored_baseline_bnrind(cens: pl.Expr, lim: pl.Expr, lln: pl.Expr, uln: pl.Expr) -> pl.Expr:
    """BNRIND of a censored baseline ("<0.2", ">3.0"; value empty) from its bound, when the bound settles
    it (review 37 R37-2): ">x" with x >= ULN (">=x": x > ULN) is HIGH; "<x" with x <= LLN ("<=x": x <
    LLN) is LOW; "<x" with x <= ULN (x < ULN for "<=") and no LLN, or ">x" with x >= LLN and no ULN, is
    NORMAL (a missing limit does not restrict, as for a measured baseline); else null (not settled:
    the grade is then a range over the readings)."""
    gt, ge, lt, le = cens == ">", cens == ">=", cens == "<", cens == "<="
    return (
        pl.when((gt & (lim >= uln)) | (ge & (lim > uln))).then(pl.lit("HIGH"))
        .when((lt & (lim <= lln)) | (le & (lim < lln))).then(pl.lit("LOW"))
        .when(lln.is_null() & uln.is_not_null() & ((lt & (lim <= uln)) | (le & (lim < uln)))).then(pl.lit("NORMAL"))
        .when(uln.is_null() & lln.is_not_null() & ((gt & (lim >= lln)) | (ge & (lim >= lln)))).then(pl.lit("NORMAL"))
        .otherwise(None)
    )


def bnrind_from_limits(base: pl.Expr, lln: pl.Expr, uln: pl.Expr) -> pl.Expr:
    """BNRIND of a measured baseline from reference limits (CDISC ADaM: BNRIND = ANRIND of the
    baseline record): HIGH (BASE > ULN), LOW (BASE < LLN), NORMAL within the limits it has (admiral
    derive_var_anrind: a missing limit does not restrict; session 32 review kept: ALT with only a ULN,
    the usual report, is NORMAL below it), null without BASE or without any limit. The one derivation
    of ``derive_ctcae`` (the baseline row's limits) and ``grade_labs`` (the row's own limits when
    ``bnrind`` is empty; session 39, review 39 R39-5)."""
    return (
        pl.when(base.is_null()).then(None)
        .when(uln.is_not_null() & (base > uln)).then(pl.lit("HIGH"))
        .when(lln.is_not_null() & (base < lln)).then(pl.lit("LOW"))
        .when(lln.is_not_null() | uln.is_not_null()).then(pl.lit("NORMAL"))
        .otherwise(None)
    )


def warn_missing_limits(adlb: pl.DataFrame) -> pl.DataFrame:
    """Say once (the same words in every subject batch) when lab values were left ungraded for want
    of the reference limit their criteria need: a study without lln/uln loses most CTCAE grades."""
    reason = adlb["grade_reason"].cast(pl.String)
    if reason.str.contains(r"(?:ANRLO|ANRHI)(?: and [A-Z]+)? missing").any():
        import warnings

        from cartlab.errors import CartlabWarning

        warnings.warn(CartlabWarning(
            "lab values without the reference limit their criteria need (lln/uln: observations.csv; SDTM --STNRLO/--STNRHI; "
            "FHIR referenceRange) are graded as a range where the value alone bounds the grade (ATOXGR*_MAX) and "
            "not graded otherwise (adlb.csv: grade empty; grade_reason names the missing limit; missing is not grade 0)"),
            stacklevel=3)
    return adlb


def derive_params(f: pl.DataFrame, specs: list, pmap: dict) -> pl.DataFrame:
    """``f`` plus the rows of the derived params (``derived_params`` with ``adjust``) and, on every
    row, ``_xfile``/``_xrow`` (the adjusting row), ``_dnote``/``_drule`` (derived rows), ``_srcnote``
    (source rows: why they are not graded themselves) and ``DTYPE``."""
    f = f.with_columns(pl.lit(None, dtype=pl.String).alias("_xfile"), pl.lit(None, dtype=pl.Int64).alias("_xrow"),
                       *(pl.lit(None, dtype=pl.String).alias(c) for c in ("_dnote", "_drule", "_srcnote", "DTYPE")))
    if "src_row" in f.columns:
        f = f.with_columns(pl.col("src_row").cast(pl.Int64, strict=False))
    for spec in specs:
        src, tgt, adj = (str(spec["source"]).upper(), str(spec["param"]).upper(), spec.get("adjust"))
        if not adj:  # the source graded as the param itself (calcium=as_given): say so on its rows
            f = f.with_columns(
                pl.when(pl.col("param") == src).then(pl.lit(f"({spec['text']}; {spec['id']})")).otherwise("_dnote")
                .alias("_dnote"),
                pl.when(pl.col("param") == src).then(pl.lit(str(spec["id"]))).otherwise("_drule").alias("_drule"))
            continue
        terms = "/".join(e.term for (p, _), e in sorted(pmap.items()) if p == tgt) or tgt
        day = pl.col("day").floor().alias("_dayk")
        s = f.filter((pl.col("param") == src) & pl.col("value").is_not_null()).with_columns(day)
        a = (f.filter((pl.col("param") == str(adj["param"]).upper()) & pl.col("value").is_not_null())
             .select("subject_id", day, pl.col("day").alias("_aday"), pl.col("value").alias("_aval"),
                     pl.col("_obs").alias("_aobs"), pl.col("src_file").alias("_afile"), pl.col("src_row").alias("_arow")))
        m = (s.join(a, on=["subject_id", "_dayk"], how="inner")
             .sort(["_obs", (pl.col("day") - pl.col("_aday")).abs(), "_aobs"], descending=[False, False, True])
             .group_by("_obs", maintain_order=True).first())
        if spec.get("skip_if_measured"):
            measured = f.filter((pl.col("param") == tgt) & pl.col("value").is_not_null()).select(
                "subject_id", day).unique()
            m = m.join(measured.with_columns(pl.lit(True).alias("_meas")), on=["subject_id", "_dayk"], how="left")
            s = s.join(measured.with_columns(pl.lit(True).alias("_meas")), on=["subject_id", "_dayk"], how="left")
            m = m.filter(pl.col("_meas").is_null())
        else:
            s = s.with_columns(pl.lit(None, dtype=pl.Boolean).alias("_meas"))
        factor, ref = float(adj["factor"]), float(adj["reference"])
        value = pl.col("value") + factor * (ref - pl.col("_aval"))
        derived = m.with_columns(
            pl.lit(tgt).alias("param"), value.alias("value"),
            pl.col("_afile").alias("_xfile"), pl.col("_arow").cast(pl.Int64).alias("_xrow"),
            pl.format(f"(derived {tgt} = {src} + {factor:g} x ({ref:g} - {adj['param']}) = {{}} + {factor:g} x "
                      f"({ref:g} - {{}}) = {{}} {{}}; {adj['param']} of day {{}}; {spec['id']})",
                      pl.col("value"), pl.col("_aval"), value.round(6), pl.col("unit"), pl.col("_aday")).alias("_dnote"),
            pl.lit(str(spec["id"])).alias("_drule"), pl.lit("DERIVED").alias("DTYPE"),
        ).select(f.columns)
        done = set(m["_obs"].to_list())
        note = (pl.when(pl.col("_obs").is_in(list(done)))
                .then(pl.lit(f"not graded itself: graded as the derived {tgt} row of the same day ({spec['id']})"))
                .when(pl.col("_meas").fill_null(False))
                .then(pl.lit(f"not graded itself: the measured {tgt} of the same day is graded"))
                .otherwise(pl.lit(f"not gradable for {terms}: {spec['missing']}")))
        notes = s.select("_obs", note.alias("_n"))
        f = (f.join(notes, on="_obs", how="left", maintain_order="left")
             .with_columns(pl.coalesce("_n", "_srcnote").alias("_srcnote"),
                           pl.when(pl.col("param") == src).then(pl.lit(str(spec["id"]))).otherwise(pl.col("_drule"))
                           .alias("_drule"))
             .drop("_n"))
        f = pl.concat([f, derived]).sort(["subject_id", "param", "day", "_obs"], nulls_last=True)
    return f
