"""Subject warnings of the CAR-T kinetics (moved out of ``car.py``, session 45): a profile timed from day 0 for
want of a recognised CAR-T infusion (naming the subject's doses.csv agents not read as CAR-T, review45 F2), a
quantifiable untimed sample at the infusion, dosing rows of a cell therapy that is not a CAR-T."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import polars as pl

from cartlab._days import day_expr
from cartlab.errors import SubjectsWarning
from cartlab.kinetics.agents import other_cell_therapy_expr
from cartlab.model import Study

if TYPE_CHECKING:
    from cartlab.kinetics.car import CarKineticsOptions

__all__ = ["num_text", "warn_day0", "warn_other_cell_therapy"]


def num_text(col: str) -> pl.Expr:
    """A number as the reason shows it: at or above 1000 to 0.1 (1131816.002 -> "1131816",
    1646461.507 -> "1646461.5", never 3-6 significant digits: checks compare AUC to 0.1%),
    below it to 6 significant digits; no trailing ".0" (audit s27 item 10)."""
    x = pl.col(col)
    r = pl.when(x.abs() >= 1000).then(x.round(1)).otherwise(x.round_sig_figs(6))
    return r.cast(pl.String).str.replace(r"\.0$", "")


def _unread_agents(doses: pl.DataFrame | None, ids: list) -> list[str]:
    """Per subject of ``ids``: "ID" or "ID (doses.csv agents not read as CAR-T: 'a', 'b')", the subject's
    dosing rows' agents (none of them a recognised CAR-T infusion), so a product spelt in a way cartlab does
    not recognise is seen (review45 F2)."""
    if doses is None or "agent" not in doses.columns or doses.height == 0:
        return [str(i) for i in ids]
    per = {r["subject_id"]: r["agent"] for r in doses.filter(pl.col("subject_id").is_in(ids) & pl.col("agent").is_not_null())
           .group_by("subject_id").agg(pl.col("agent").unique(maintain_order=True)).iter_rows(named=True)}
    return [f"{i} (doses.csv agents not read as CAR-T: {', '.join(repr(a) for a in per[i])})" if per.get(i) else str(i)
            for i in ids]


def warn_day0(prof: pl.DataFrame, options: CarKineticsOptions, doses_given: bool = True,
              doses: pl.DataFrame | None = None) -> None:
    """Warn about the two ways a profile's time 0 is not a recorded infusion with nothing measured at it:
    no CAR-T infusion record (timed from day 0, review s35 B3; saying when doses.csv was not given, and
    naming the subject's doses.csv agents that were not read as CAR-T, review45 F2), and a quantifiable
    date-only sample on the infusion's day taken as the level at it (review s35 B4)."""
    no_inf = prof.filter(pl.col("_no_inf"))["subject_id"].unique(maintain_order=True).to_list()
    if no_inf:
        warnings.warn(SubjectsWarning(
            f"{len(no_inf)} subject(s) have CAR-T samples but no CAR-T infusion "
            f"{'in doses.csv' if doses_given else '(doses.csv not given)'}: their kinetics are "
            "timed from day 0 (spec 'Time': day 0 is the infusion day)"
            + (" with a concentration of 0 imputed at day 0" if options.zero_at_infusion else "")
            + "; record the infusion in doses.csv if it was on another day (an agent naming a CAR-T product or "
            "'CAR-T'): {subjects}", no_inf, "car_kinetics.csv (reason)", labels=_unread_agents(doses, no_inf)),
            stacklevel=3)
    q0 = prof.filter(pl.col("_untimed0") & ~pl.col("blq") & (pl.col("conc") > 0).fill_null(False))
    if q0.height:
        labels = q0.select(pl.format("{} (day {}: {} {})", "subject_id", day_expr(pl.col("day")),
                                     num_text("conc"), pl.col("unit").fill_null(""))
                           .str.strip_chars().str.replace(r" \)$", ")")).to_series().to_list()
        warnings.warn(SubjectsWarning(
            f"{q0.height} quantifiable CAR-T sample(s) without a clock time on the day of the infusion they are "
            "timed from fall at time 0 and cannot be ordered against it: each is taken as the level at the infusion, in "
            "place of the imputed 0 (spec: only samples before the infusion leave the profile); if it is the "
            "pre-infusion baseline, --set kinetics.day0_untimed_sample=pre_infusion leaves it out: {subjects}",
            q0["subject_id"].to_list(), "car_kinetics.csv (reason)", labels=labels), stacklevel=3)


def warn_other_cell_therapy(study: Study) -> None:
    """Warn about dosing rows of a cell therapy (``-leucel``) that is not a CAR-T: not an infusion the
    kinetics are timed from (review s38 B5; ``car_t_products.yaml``)."""
    if "agent" not in study.doses.columns:
        return
    other = study.doses.filter(other_cell_therapy_expr(pl.col("agent")))
    if other.height:
        names = ", ".join(sorted(set(other["agent"].to_list())))
        warnings.warn(SubjectsWarning(
            f"{other.height} doses.csv row(s) of a cell therapy that is not a CAR-T ({names}) are not counted as "
            "CAR-T infusions (time from the first CAR-T infusion ignores them; name a CAR-T product or 'CAR-T' "
            "if it is one): {subjects}", other["subject_id"].to_list(), "doses.csv (agent)"), stacklevel=3)


_LIMITS = {"subject_id": pl.String, "_reinf_d": pl.Float64, "_reinf_t": pl.Float64, "_death_d": pl.Float64,
           "_death_t": pl.Float64, "_lfu_d": pl.Float64, "_lfu_t": pl.Float64}


def _window_limits(study: Study, inf: pl.DataFrame, options: CarKineticsOptions) -> pl.DataFrame:
    """Per subject with a CAR-T infusion: the re-infusion that ends the first profile (``kinetics.profile_end=
    next_infusion``), the death (events.csv ``death``) and the last follow-up (subjects.csv
    ``last_followup_day``), each as a study day (``_d``) and as time from the first infusion (``_t``)."""
    if options.time_from != "first" or inf.height == 0:
        return pl.DataFrame(schema=_LIMITS)
    from cartlab.kinetics.car_profile import reinfusions

    out = inf.group_by("subject_id").agg(pl.col("day").min().alias("_first"))
    if options.profile_end == "next_infusion":
        out = out.join(reinfusions(inf, options.split_dose_gap_days).rename({"_reinf": "_reinf_d"}),
                       on="subject_id", how="left")
    ev = study.events
    if ev.height and {"event", "day"} <= set(ev.columns):
        out = out.join(ev.filter(pl.col("event").cast(pl.String).str.strip_chars().str.to_lowercase() == "death")
                       .group_by("subject_id").agg(pl.col("day").cast(pl.Float64).min().alias("_death_d")),
                       on="subject_id", how="left")
    s = study.subjects
    if "last_followup_day" in s.columns:
        out = out.join(s.select("subject_id", pl.col("last_followup_day").cast(pl.Float64).alias("_lfu_d")),
                       on="subject_id", how="left")
    out = out.with_columns(*[pl.lit(None, dtype=pl.Float64).alias(c) for c in ("_reinf_d", "_death_d", "_lfu_d")
                             if c not in out.columns])
    return out.select("subject_id", *[e for k in ("_reinf", "_death", "_lfu") for e in (
        pl.col(f"{k}_d"), (pl.col(f"{k}_d") - pl.col("_first")).alias(f"{k}_t"))])


def with_window_limits(out: pl.DataFrame, study: Study, inf: pl.DataFrame, options: CarKineticsOptions,
                       lo: float, hi: float) -> pl.DataFrame:
    """Name in ``auc_window_basis`` and ``warnings`` what the window AUC reaches past (review45 F4, F5; today's
    values kept, the spec: "car_auc_0_28 ... interpolating at day 28"): a CAR-T re-infusion inside the window
    (the first profile ends there, so the AUC after it is not the measured level; warning
    ``auc_window_past_reinfusion``), and, when the AUC is extrapolated by lambda.z, the subject's death or last
    follow-up before the window's end (``auc_window_past_death``, ``auc_window_past_followup``). Needs
    ``auc_window``, ``auc_window_basis``, ``warnings``, ``_extrap``."""
    from cartlab._days import day_text

    win = f"the AUC window (day {day_text(lo)}-{day_text(hi)})"
    o = out.join(_window_limits(study, inf, options), on="subject_id", how="left")
    ex = pl.col("_extrap").fill_null(False)
    re = (pl.col("auc_window").is_not_null() & (pl.col("_reinf_t") < hi)).fill_null(False)
    dth = (ex & (pl.col("_death_t") < hi)).fill_null(False)
    lfu = (ex & ~dth & (pl.col("_lfu_t") < hi)).fill_null(False)
    how = pl.when(ex).then(pl.lit("the first administration's lambda.z tail")).otherwise(pl.lit("the 0 of a BLQ sample"))
    none = pl.lit(None, dtype=pl.String)
    notes = [
        (re, pl.format("the window reaches past the CAR-T re-infusion on day {}: the level after it is {}, not measured (the "
                       "first administration's profile ends there, kinetics.profile_end=next_infusion)",
                       day_expr(pl.col("_reinf_d")), how),
         pl.format("auc_window_past_reinfusion: " + win + " reaches past the CAR-T re-infusion on day {}: auc_window "
                   "after it is {}, not the measured level (the samples after the re-infusion belong to the second "
                   "administration)", day_expr(pl.col("_reinf_d")), how)),
        (dth, pl.format("extrapolated past the subject's death on day {} (events.csv death)", day_expr(pl.col("_death_d"))),
         pl.format("auc_window_past_death: " + win + " is extrapolated by lambda.z past the subject's death on day {} "
                   "(events.csv death): no level exists there", day_expr(pl.col("_death_d")))),
        (lfu, pl.format("extrapolated past the last follow-up on day {} (subjects.csv last_followup_day)",
                        day_expr(pl.col("_lfu_d"))),
         pl.format("auc_window_past_followup: " + win + " is extrapolated by lambda.z past the subject's last follow-up "
                   "on day {} (subjects.csv last_followup_day)", day_expr(pl.col("_lfu_d")))),
    ]
    basis = pl.concat_str([pl.when(c).then(b).otherwise(none) for c, b, _ in notes], separator="; ", ignore_nulls=True)
    warn = pl.concat_list([pl.when(c).then(pl.concat_list(w)).otherwise(pl.lit([], dtype=pl.List(pl.String)))
                           for c, _, w in notes])
    return o.with_columns(
        pl.when(basis != "").then(pl.concat_str(pl.col("auc_window_basis"), pl.lit("; "), basis))
        .otherwise(pl.col("auc_window_basis")).alias("auc_window_basis"),
        pl.col("warnings").list.concat(warn).alias("warnings"),
    ).drop(*[c for c in _LIMITS if c != "subject_id"])
