"""Where a CAR-T kinetic profile ends and how its window AUC was reached (session 40, review40_kin).

* :func:`cut_at_reinfusion` (option ``kinetics.profile_end``): NCA is one profile per dosing interval
  (PKNCA computes every parameter per interval), so with ``time_from="first"`` the profile of the first
  administration ends at a later CAR-T infusion that starts a new administration; samples after it
  (the re-expansion) are left out of the NCA and named in a warning (rule ``car_kinetics.profile_end``).
* :func:`window_basis_parts`: whether ``car_auc_0_28`` was extrapolated past the last quantifiable sample
  by lambda.z (PKNCA ``aucint.inf.obs``) and by how much (option ``kinetics.auc_past_tlast``).
* :func:`warn_untimed_infusion` (option ``kinetics.untimed_infusion``): an infusion without a clock time
  while samples have one.
"""

from __future__ import annotations

import warnings

import polars as pl

from cartlab._days import day_expr
from cartlab.errors import SubjectsWarning
from cartlab.kinetics.agents import split_dose_gap_expr

__all__ = ["reinfusions", "cut_at_reinfusion", "reinfusion_note", "untimed_note", "window_basis_parts", "untimed_infusion_subjects",
           "warn_date_only_same_day",
           "warn_untimed_infusion"]


def reinfusions(inf: pl.DataFrame, gap_days: float) -> pl.DataFrame:
    """Per subject, the day of the first CAR-T infusion more than ``gap_days`` after the one before it
    (``_reinf``): the start of a second administration. Fractions of a split dose (days 0, 1, 2; the seed
    case's days 0 and 2) are one administration, and so is an infusion of a product with a labelled split
    dose up to its ``split_dose_window_days`` after the previous one (obe-cel: Day 1 and Day 10 +/- 2, up to
    Day 21; review45 F1). ``inf``: ``subject_id``, ``day`` (sorted), ``agent`` when known."""
    if inf.height == 0:
        return pl.DataFrame(schema={"subject_id": pl.String, "_reinf": pl.Float64})
    gap = (split_dose_gap_expr(pl.col("agent"), gap_days) if "agent" in inf.columns else pl.lit(float(gap_days)))
    d = inf.sort("subject_id", "day").with_columns(
        (pl.col("day") - pl.col("day").shift(1).over("subject_id")).alias("_gap"), gap.alias("_max_gap"))
    return (d.filter(pl.col("_gap") > pl.col("_max_gap")).group_by("subject_id")
            .agg(pl.col("day").min().alias("_reinf")))


def cut_at_reinfusion(prof: pl.DataFrame, inf: pl.DataFrame, profile_end: str, time_from: str,
                      gap_days: float) -> pl.DataFrame:
    """``prof`` without the samples after a re-infusion (``profile_end="next_infusion"``, ``time_from=
    "first"``), with a warning naming each subject, the re-infusion day and the rows left out. A sample
    on the re-infusion's own time (a pre-dose sample) closes the first profile (PKNCA intervals include
    their end). ``"all"`` keeps every sample (before session 40)."""
    if profile_end != "next_infusion" or time_from != "first" or prof.height == 0:
        return prof
    re = reinfusions(inf, gap_days)
    if re.height == 0:
        return prof
    p = prof.join(re, on="subject_id", how="left")
    late = pl.col("_reinf").is_not_null() & (pl.col("day") > pl.col("_reinf"))
    gone = p.filter(late)
    if gone.height:
        per = (gone.sort("subject_id", "day").group_by("subject_id", maintain_order=True).agg(
            pl.col("_reinf").first(), pl.len().alias("_n"),
            pl.col("evidence").list.explode(keep_nulls=False, empty_as_null=False).str.join(", ").alias("_rows")))
        labels = per.select(pl.format("{} ({} sample(s) after the CAR-T re-infusion on day {} left out: {})",
                                      "subject_id", "_n", day_expr(pl.col("_reinf")), "_rows")).to_series().to_list()
        warnings.warn(SubjectsWarning(
            f"{per.height} subject(s) had a second CAR-T administration (an infusion more than {gap_days:g} days "
            "after the previous one, option kinetics.split_dose_gap_days, or a product's labelled split-dose window, "
            "car_t_products.yaml): their NCA (Cmax, Tmax, Tlast, lambda.z, "
            "AUC) describes the first administration only, ending at the re-infusion (PKNCA: one NCA per dosing "
            "interval; kinetics.profile_end=all pools every sample as before); the second profile's parameters "
            "are not computed (out of scope): {subjects}", per["subject_id"].to_list(),
            "car_kinetics.csv (reason)", labels=labels), stacklevel=3)
    return p.filter(~late).drop("_reinf")


def untimed_note(subjects, mode: str) -> pl.DataFrame:
    """``subject_id``, ``_untimed_note``: the reason's words for an infusion without a clock time while
    the subject's CAR-T samples have one (:func:`untimed_infusion_subjects`; review 40 B5: the warning
    points to car_kinetics.csv's reason)."""
    what = ("infusion without a clock time: taken at midnight, so the sample times (Tmax, the AUC) count from "
            "00:00 of the infusion day (option kinetics.untimed_infusion=midnight)" if mode == "midnight" else
            "infusion without a clock time: samples timed in whole calendar days from the infusion's day (option "
            "kinetics.untimed_infusion=calendar_day)")
    return pl.DataFrame({"subject_id": list(subjects)}, schema={"subject_id": pl.String}).with_columns(
        pl.lit(what).alias("_untimed_note"))


def reinfusion_note(prof_all: pl.DataFrame, inf: pl.DataFrame, profile_end: str, time_from: str,
                    gap_days: float, untimed=(), untimed_mode: str = "midnight") -> pl.DataFrame:
    """``subject_id``, ``_reinf_note``: the reason's words for a profile ended at a re-infusion and, for
    the ``untimed`` subjects (:func:`untimed_infusion_subjects`), for an infusion without a clock time
    (:func:`untimed_note`), "; "-joined."""
    empty = pl.DataFrame(schema={"subject_id": pl.String, "_reinf_note": pl.String})
    re = reinfusions(inf, gap_days) if profile_end == "next_infusion" and time_from == "first" else empty
    if re.height == 0:
        re = empty
    else:
        re = re.select("subject_id", pl.format(
            "profile of the first administration: ends at the CAR-T re-infusion on day {} (kinetics.profile_end="
            "next_infusion, rule car_kinetics.profile_end; later samples left out)", day_expr(pl.col("_reinf")))
            .alias("_reinf_note"))
    un = untimed_note(untimed, untimed_mode)
    if un.height == 0:
        return re
    return (un.join(re, on="subject_id", how="full", coalesce=True)
            .select("subject_id", pl.concat_str("_untimed_note", "_reinf_note", separator="; ", ignore_nulls=True)
                    .alias("_reinf_note")))


def window_basis_parts(hi: float, lo: float) -> tuple[pl.Expr, pl.Expr]:
    """For the aucint path of ``car_auc_0_28``: (``past``: the window ends after the last quantifiable
    sample, so its end is reached by the lambda.z tail, PKNCA ``aucint.inf.obs``; ``tail``: the AUC of
    that tail, ``clast/lambda.z (exp(-lambda.z (max(lo, tlast) - tlast)) - exp(-lambda.z (hi - tlast)))``).
    Expressions over ``tlast``, ``clast.obs`` and ``lambda.z`` of the whole profile."""
    tl, cl, lz = pl.col("tlast"), pl.col("clast.obs"), pl.col("lambda.z")
    past = (tl < hi).fill_null(False)
    start = pl.max_horizontal(pl.lit(lo), tl)
    tail = cl / lz * ((-lz * (start - tl)).exp() - (-lz * (pl.lit(hi) - tl)).exp())
    return past, tail


def untimed_infusion_subjects(obs: pl.DataFrame, inf: pl.DataFrame, date_only: pl.Expr) -> list[str]:
    """Subjects whose first CAR-T infusion has no clock time (a whole day) while some CAR sample has one."""
    if inf.height == 0 or obs.height == 0:
        return []
    untimed = inf.group_by("subject_id").agg(pl.col("day").min()).filter(pl.col("day") == pl.col("day").floor())
    timed = obs.filter(~date_only & pl.col("subject_id").is_in(untimed["subject_id"].implode()))
    return timed["subject_id"].unique().sort().to_list()


def warn_untimed_infusion(subjects: list[str], mode: str) -> None:
    """Warn whenever an untimed infusion meets timed samples (option ``kinetics.untimed_infusion``)."""
    if not subjects:
        return
    what = ("the infusion is taken at midnight (spec 'Time'), so an 08:00 sample is 0.33 day later than its "
            "calendar day and a sample on the infusion day counts as after it; --set kinetics.untimed_infusion="
            "calendar_day counts such samples in whole calendar days from the infusion's day"
            if mode == "midnight" else
            "samples are timed in whole calendar days from the infusion's day (kinetics.untimed_infusion="
            "calendar_day); a sample on the infusion day is at time 0 and follows kinetics.day0_untimed_sample")
    warnings.warn(SubjectsWarning(
        f"{len(subjects)} subject(s) have a CAR-T infusion without a clock time but CAR-T samples with one: "
        f"{what}: {{subjects}}", subjects, "car_kinetics.csv (reason)"), stacklevel=3)


def warn_date_only_same_day(obs: pl.DataFrame, used: pl.Series, date_only: pl.Expr) -> None:
    """Warn (``date_only_same_day``) when a sample without a clock time and a timed sample of one subject
    fall on the same calendar day: the untimed one is put at midnight, first, though the data cannot
    order them (review40 B5). ``used``: the evidence labels of the profile's rows."""
    from cartlab.provenance import evidence_ref

    if obs.height == 0:
        return
    f = (obs.with_columns(evidence_ref().alias("_ref"), date_only.alias("_d"), pl.col("day").floor().alias("_k"))
         .filter(pl.col("_ref").is_in(used.implode())))
    both = f.filter(pl.col("_d").any().over("subject_id", "param", "_k") & (~pl.col("_d")).any().over(
        "subject_id", "param", "_k"))
    if both.height == 0:
        return
    per = (both.sort("subject_id", "day").group_by("subject_id", "_k", maintain_order=True)
           .agg(pl.col("_ref").str.join(", ").alias("_rows")))
    labels = per.select(pl.format("{} (day {}: {})", "subject_id", day_expr(pl.col("_k")), "_rows")).to_series().to_list()
    warnings.warn(SubjectsWarning(
        f"{per.height} day(s) have a CAR-T sample without a clock time and one with a clock time: the untimed one "
        "counts at midnight, before the timed one, an order the data do not give (give each sample its time of "
        "day): {subjects}", per["subject_id"].to_list(), "car_kinetics.csv (evidence)", labels=labels), stacklevel=3)


def parameter_evidence(prof: pl.DataFrame, out: pl.DataFrame, lo: float, hi: float) -> pl.DataFrame:
    """The rows each NCA parameter used (review40 B4): ``cmax_evidence`` (the sample at tmax),
    ``tlast_evidence`` (the sample at tlast), ``lambda_z_evidence`` (the samples at ``lambda.z.times``)
    and ``auc_window_evidence`` (the samples in the window, the first one after its end when the end is
    interpolated, and the lambda.z samples when the tail past tlast was extrapolated: ``_extrap``).
    ``out``: ``subject_id``, ``tmax``, ``tlast``, ``lambda.z.times``, ``_extrap``."""
    t = pl.col("time")
    p = prof.select("subject_id", "time", "blq", "evidence").join(
        out.select("subject_id", "tmax", "tlast", "lambda.z.times", "_extrap"), on="subject_id", how="inner")
    in_lz = pl.col("lambda.z.times").list.contains(t).fill_null(False)
    nxt = t.filter(t > hi).min().over("subject_id")
    has_end = (t == hi).any().over("subject_id")
    in_win = ((t >= lo) & (t <= hi)) | (~has_end & (t == nxt)) | (pl.col("_extrap").fill_null(False) & in_lz)
    ev = pl.col("evidence")
    return p.group_by("subject_id", maintain_order=True).agg(
        ev.filter((t == pl.col("tmax")) & ~pl.col("blq")).list.explode(keep_nulls=False, empty_as_null=False).alias("cmax_evidence"),
        ev.filter((t == pl.col("tlast")) & ~pl.col("blq")).list.explode(keep_nulls=False, empty_as_null=False).alias("tlast_evidence"),
        ev.filter(in_lz).list.explode(keep_nulls=False, empty_as_null=False).alias("lambda_z_evidence"),
        ev.filter(in_win).list.explode(keep_nulls=False, empty_as_null=False).alias("auc_window_evidence"))
