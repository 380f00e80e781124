"""CTCAE derivation helpers of :func:`cartlab.grading.ctcae.derive_ctcae`: the baseline window (which
rows can be the baseline, option ``baseline_day0``), censored-result bounds and derived parameters
(corrected calcium). Split from ``ctcae.py`` in session 37 (module size)."""

from __future__ import annotations

from typing import Any

import polars as pl

from cartlab.grading.censored import censored_text
from cartlab.grading.ctcae_options import CtcaeOptions

__all__ = ["baseline_window", "bnrind_from_limits", "censored_baseline_bnrind", "derive_params", "derived_censoring",
           "infusion_start"]


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
    (source rows: why they are not graded themselves), ``DTYPE`` and ``_cfar`` (a censored derived
    value: the far end of its interval when finite, see :func:`derived_censoring`).

    A censored source or adjusting row (total calcium "<1.4", albumin "<15"; value empty) is derived
    too, as a censored result (review 48 F1): an exact adjusting row is preferred to a censored one of
    the same day."""
    f = f.with_columns(pl.lit(None, dtype=pl.String).alias("_xfile"), pl.lit(None, dtype=pl.Int64).alias("_xrow"),
                       *(pl.lit(None, dtype=pl.String).alias(c) for c in ("_dnote", "_drule", "_srcnote", "DTYPE")),
                       pl.lit(None, dtype=pl.Float64).alias("_cfar"))
    if "src_row" in f.columns:
        f = f.with_columns(pl.col("src_row").cast(pl.Int64, strict=False))
    # a number, or a censored result with its bound (review 48 F1: a censored result is a measurement)
    known = pl.col("value").is_not_null() | (pl.col("_cens").is_not_null() & pl.col("_clim").is_not_null())
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
        s = f.filter((pl.col("param") == src) & known).with_columns(day)
        a = (f.filter((pl.col("param") == str(adj["param"]).upper()) & known)
             .select("subject_id", day, pl.col("day").alias("_aday"), pl.col("value").alias("_aval"),
                     pl.col("_cens").alias("_acens"), pl.col("_clim").alias("_aclim"),
                     pl.col("_obs").alias("_aobs"), pl.col("src_file").alias("_afile"), pl.col("src_row").alias("_arow")))
        m = (s.join(a, on=["subject_id", "_dayk"], how="inner")
             .sort(["_obs", pl.col("_aval").is_null(), (pl.col("day") - pl.col("_aday")).abs(), "_aobs"],
                   descending=[False, False, False, True])
             .group_by("_obs", maintain_order=True).first())
        if spec.get("skip_if_measured"):
            measured = f.filter((pl.col("param") == tgt) & known).select("subject_id", day).unique()
            m = m.join(measured.with_columns(pl.lit(True).alias("_meas")), on=["subject_id", "_dayk"], how="left")
            s = s.join(measured.with_columns(pl.lit(True).alias("_meas")), on=["subject_id", "_dayk"], how="left")
            m = m.filter(pl.col("_meas").is_null())
        else:
            s = s.with_columns(pl.lit(None, dtype=pl.Boolean).alias("_meas"))
        factor, ref = float(adj["factor"]), float(adj["reference"])
        m = m.with_columns(derived_censoring(factor, ref))
        apart = m.filter(pl.col("_dop").eq_missing("apart"))  # censored from opposite sides: no bound
        m = m.filter(pl.col("_dop").ne_missing("apart"))
        value = pl.col("value") + factor * (ref - pl.col("_aval"))
        text = f"{tgt} = {src} + {factor:g} x ({ref:g} - {adj['param']})"
        cens = pl.col("_dop").is_not_null()
        shown = pl.when(cens).then(pl.concat_str(censored_text(pl.col("_dop"), pl.col("_dlim")), pl.when(
            pl.col("_dfar").is_not_null()).then(pl.format(" (and {} {}: {} >= 0)", pl.when(pl.col("_dop").is_in(["<", "<="]))
                                                        .then(pl.lit(">=")).otherwise(pl.lit("<=")),
                                                        pl.col("_dfar").round_sig_figs(6), _which_floor(src, adj))),
                                                      ignore_nulls=True)).otherwise(value.round(6).cast(pl.String))
        derived = m.with_columns(
            pl.lit(tgt).alias("param"), pl.when(cens).then(None).otherwise(value).alias("value"),
            pl.when(cens).then(pl.col("_dop")).alias("_cens"), pl.when(cens).then(pl.col("_dlim")).alias("_clim"),
            pl.when(cens).then(pl.col("_dfar")).alias("_cfar"),
            pl.col("_afile").alias("_xfile"), pl.col("_arow").cast(pl.Int64).alias("_xrow"),
            pl.format(f"(derived {text} = {{}} + {factor:g} x ({ref:g} - {{}}) = {{}} {{}}{{}}; {adj['param']} of day "
                      f"{{}}; {spec['id']})", _input_text("value", "_cens", "_clim"),
                      _input_text("_aval", "_acens", "_aclim"), shown, pl.col("unit"),
                      pl.when(cens).then(pl.format("; from the censored {}", _censored_inputs(src, adj)))
                      .otherwise(pl.lit("")), pl.col("_aday")).alias("_dnote"),
            pl.lit(str(spec["id"])).alias("_drule"), pl.lit("DERIVED").alias("DTYPE"),
        ).select(f.columns)
        done = set(m["_obs"].to_list())
        opposite = set(apart["_obs"].to_list())
        note = (pl.when(pl.col("_obs").is_in(list(done)))
                .then(pl.lit(f"not graded itself: graded as the derived {tgt} row of the same day ({spec['id']})"))
                .when(pl.col("_meas").fill_null(False))
                .then(pl.lit(f"not graded itself: the measured {tgt} of the same day is graded"))
                .when(pl.col("_obs").is_in(list(opposite)))
                .then(pl.format(f"not gradable for {terms}: {src} {{}} and {adj['param']} {{}} (day {{}}) are both censored "
                                f"and bound {text} from opposite sides: no bound to grade ({spec['id']})",
                                censored_text(pl.col("_cens"), pl.col("_clim")),
                                censored_text(pl.col("_acens"), pl.col("_aclim")), pl.col("_aday")))
                .otherwise(pl.lit(f"not gradable for {terms}: {spec['missing']}")))
        notes = s.join(apart.select("_obs", "_acens", "_aclim", "_aday"), on="_obs", how="left").select(
            "_obs", note.alias("_n"))
        f = (f.join(notes, on="_obs", how="left", maintain_order="left")
             .with_columns(pl.coalesce("_n", "_srcnote").alias("_srcnote"),
                           pl.when(pl.col("param") == src).then(pl.lit(str(spec["id"]))).otherwise(pl.col("_drule"))
                           .alias("_drule"))
             .drop("_n"))
        f = pl.concat([f, derived]).sort(["subject_id", "param", "day", "_obs"], nulls_last=True)
    return f


#: a censored bound seen from the other side of a decreasing map ("<y" of ALB: ">" of CA + f x (ref - ALB))
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
_UP = ("<", "<=")


def derived_censoring(factor: float, ref: float) -> list[pl.Expr]:
    """The censoring of ``source + factor x (ref - adjust)`` (corrected calcium, Payne) from a censored
    source (``_cens``/``_clim``) and/or adjusting row (``_acens``/``_aclim``), review 48 F1: ``_dop`` the
    derived operator (null: both exact; "apart": both censored from opposite sides, no bound), ``_dlim``
    its bound, ``_dfar`` the far end of the interval when finite. The map increases in the source and
    decreases in the adjusting value (factor > 0): a censored source keeps its operator, the bound
    shifted by factor x (ref - adjust); a censored adjusting value flips it ("<15" g/L albumin: corrected
    calcium above the bound at 15). Both censored the same way: the bound of both ends (strict when either
    is). The far end uses that both are concentrations, never negative (cartlab convention): total
    calcium "<1.4" with albumin 40 is in [0, 1.4); calcium 2.0 with albumin "<15" in (2.5, 2.8]."""
    s_op, a_op = pl.col("_cens"), pl.col("_acens")
    a_dop = a_op.replace(_FLIP) if factor > 0 else a_op  # the adjusting bound seen on the derived value
    s_num, a_num = pl.col("value").is_not_null(), pl.col("_aval").is_not_null()
    s_at = pl.coalesce(pl.col("value"), pl.col("_clim"))
    a_at = pl.coalesce(pl.col("_aval"), pl.col("_aclim"))
    strict = s_op.is_in(["<", ">"]).fill_null(False) | a_op.is_in(["<", ">"]).fill_null(False)
    same = s_op.is_in(_UP) == a_dop.is_in(_UP)
    both_op = (pl.when(s_op.is_in(_UP)).then(pl.when(strict).then(pl.lit("<")).otherwise(pl.lit("<=")))
               .otherwise(pl.when(strict).then(pl.lit(">")).otherwise(pl.lit(">="))))
    dop = (pl.when(s_num & a_num).then(None)
           .when(a_num).then(s_op)
           .when(s_num).then(a_dop)
           .when(same).then(both_op)
           .otherwise(pl.lit("apart")))
    # the far end: each input at its own far end (0 for "<", unbounded for ">"), finite only when both are
    s_far = pl.when(s_num).then(pl.col("value")).when(s_op.is_in(_UP)).then(pl.lit(0.0))
    a_far = pl.when(a_num).then(pl.col("_aval")).when(a_op.is_in(_UP)).then(pl.lit(0.0))
    return [dop.alias("_dop"), (s_at + factor * (ref - a_at)).alias("_dlim"),
            pl.when(~(s_num & a_num)).then(s_far + factor * (ref - a_far)).alias("_dfar")]


def _input_text(value: str, op: str, lim: str) -> pl.Expr:
    """An input of a derivation as text: its number, or its censored result ("<1.4")."""
    return pl.coalesce(pl.col(value).cast(pl.String), censored_text(pl.col(op), pl.col(lim)))


def _censored_inputs(src: str, adj: dict) -> pl.Expr:
    """Which inputs of a derived row are censored, as text ("CA <1.4", "ALB <15", both)."""
    return pl.concat_str([pl.when(pl.col("value").is_null()).then(pl.format(f"{src} {{}}", censored_text(
        pl.col("_cens"), pl.col("_clim")))), pl.when(pl.col("_aval").is_null()).then(pl.format(
            f"{adj['param']} {{}}", censored_text(pl.col("_acens"), pl.col("_aclim"))))], separator=" and ",
        ignore_nulls=True)


def _which_floor(src: str, adj: dict) -> pl.Expr:
    """The input whose floor (0) gives the far end of a censored derived value."""
    return pl.when(pl.col("value").is_null()).then(pl.lit(src)).otherwise(pl.lit(str(adj["param"])))
