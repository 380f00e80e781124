"""CAR-T cellular kinetics from the canonical tables: profiles, NCA summary, ADPC and ADPP.

The measured quantity is CARCOPY (CAR transgene copies/ug genomic DNA by qPCR), else CARCELL (CAR+
cells/uL by flow) for a subject without CARCOPY (study-format v1, "Derivation conventions",
Cellular kinetics). Time is days from the first CAR-T infusion (the study's day axis; ``time_from
="last"`` measures from the most recent infusion instead). Conventions, each an option:

* BLQ (a ``<x`` result or a value below ``lloq``): 0 before the first quantifiable value, dropped
  between quantifiable values, 0 after the last (PKNCA's default ``conc.blq``, and the study
  contract).
* Samples before the first infusion are not part of the profile, and the profile starts with a
  concentration of 0 at the infusion when no sample was taken at that moment (no CAR-T is in the
  blood before it is given: PKNCA's ``start_conc0`` imputation). ``zero_at_infusion=False`` turns
  this off (an AUC window starting before the first sample is then not computable: empty, with
  that reason). A subject without a CAR-T infusion record is timed from day 0 (spec "Time"), with
  a warning; a date-only sample on the day of an untimed infusion is at time 0 (option
  ``day0_untimed_sample``).
* ``car_auc_0_28`` (study contract, "Cellular kinetics"): the AUC over exactly days 0-28 by
  ``method`` (linear-up/log-down by default: linear trapezoids while the level rises or stays,
  log trapezoids ``dt (c2 - c1) / ln(c2 / c1)`` while it falls), from the 0 at the infusion
  through the samples to day 28. Without a sample on day 28 the level there is interpolated by
  the same method between the samples around it (log-linearly on a decline). Past the last
  quantifiable sample the curve falls linearly to the 0 of the next BLQ sample (AUCall's linear
  triangle; day 28 is interpolated on that line when the BLQ sample is later), or, without one,
  follows the terminal slope ``clast exp(-lambda.z (t - tlast))``; null when neither is
  available. Otherwise this is PKNCA's ``aucint.inf.obs`` over 0-28 (interval AUC with the lambda.z
  tail after tlast; PKNCA's ``aucint.last`` puts 0 there), not PKNCA's ``auclast`` over 0-28, which
  stops at the last sample on or before day 28 (``cartlab nca --interval 0,28`` gives
  ``aucint`` = aucint.inf.obs, ``aucint.last`` and ``auclast``). The basis says which path gave the
  value and, when the lambda.z tail was used, how much of it is extrapolated (warning
  ``auc_window_extrapolated``; option ``auc_past_tlast``).
* A CAR-T infusion more than ``split_dose_gap_days`` (7) after the previous one starts a second
  administration: the profile of the first ends there (option ``profile_end``, rule
  ``car_kinetics.profile_end``; PKNCA: one NCA per dosing interval).

* Two samples of one subject at the same time (one whole ``day`` twice, without a time of day):
  the subject's NCA is not evaluable, with the reason "two samples at the same time (day 7)"
  (PKNCA requires unique times); see :func:`derive_car_kinetics`.

Every value carries the rows it came from (``evidence``) and the method; the NCA itself is
:func:`cartlab.kinetics.nca.nca`.
"""

from __future__ import annotations

import math
import warnings

import polars as pl

from cartlab._days import day_expr, day_text
from cartlab._deprecated import renamed
from cartlab.criteria.options import CriteriaOptions
from cartlab.errors import InputError, SubjectsWarning
from cartlab.io.absent_files import table_absent
from cartlab.kinetics.agents import car_t_infusions
from cartlab.kinetics.car_profile import (
    cut_at_reinfusion,
    parameter_evidence,
    reinfusion_note,
    untimed_infusion_subjects,
    warn_date_only_same_day,
    warn_untimed_infusion,
    window_basis_parts,
)
from cartlab.kinetics.car_rows import excluded_rows as _excluded_rows
from cartlab.kinetics.car_rows import not_evaluable_rows as _not_evaluable_rows
from cartlab.kinetics.car_rows import select_analyte, select_specimen
from cartlab.kinetics.car_warn import num_text as _num_text
from cartlab.kinetics.car_warn import warn_day0 as _warn_day0
from cartlab.kinetics.car_warn import warn_other_cell_therapy as _warn_other_cell_therapy
from cartlab.kinetics.car_warn import with_window_limits as _with_window_limits
from cartlab.model import Study
from cartlab.provenance import EVIDENCE, evidence_ref

__all__ = [
    "CAR_PARAMS",
    "CarKineticsOptions",
    "derive_car_kinetics",
    "derive_car_profiles",
    "derive_adpc",
    "derive_adpp",
    "derive_kinetics_summary",
]

#: measured quantities, in order of preference
CAR_PARAMS = ("CARCOPY", "CARCELL")


class CarKineticsOptions(CriteriaOptions):
    """* ``param``: force CARCOPY or CARCELL (default: CARCOPY, else CARCELL per subject).
    * ``method``: AUC interpolation ("lin-up/log-down" default; "linear", "lin-log", "log-up/log-down").
    * ``auc_window`` ((0, 28)): the ``car_auc_0_28`` window in days.
    * ``time_from`` ("first"): days from the first CAR-T infusion (the spec), or "last": from the
      subject's last infusion, for subjects whose samples all follow it; a sample between two
      infusions belongs to another dosing interval (PKNCA: NCA per dosing interval), and the option
      is then refused (InputError naming the subjects, days and rows).
    * ``zero_at_infusion`` (True): a concentration of 0 at time 0 when no sample is there. False: no
      0 is imputed, and ``car_auc_0_28`` is empty (not computable: no sample at the start of the
      window) for a subject without a sample at the window's start.
    * ``day0_untimed_sample`` ("as_given"): a sample given as a date (or whole day) without a clock
      time on the day of the infusion it is timed from, when that infusion has no clock time either,
      is at time 0: it cannot be ordered against the infusion. "as_given" (the spec: day 0 is the
      infusion day, and only samples *before* the infusion leave the profile) makes it the level at
      the infusion, in place of the imputed 0, with a warning naming a quantifiable one;
      "pre_infusion" reads it as the pre-infusion baseline: left out, and the 0 is imputed.
    * ``date_only_samples`` ("as_given"): a sample given as a date without a clock time (``datetime``
      2021-05-24), or as a whole ``day`` without a ``datetime``, is at that day's midnight, as every date-time is (spec "Time"), so after an
      infusion at 14:00 a day-14 sample is 13.42 days from it (spec: "time from the first CAR-T
      infusion"); a warning names such subjects. "calendar_day": such a sample's time is whole days,
      its calendar day minus the infusion's (13.42 -> 14; its time of day is unknown); samples with a
      clock time keep their exact time.
    * ``specimen`` ("PB"): the blood kinetics take rows of this specimen only; a row with an empty
      specimen counts as PB (spec: CARCOPY/CARCELL "in blood"). Rows of other specimens (BM, CSF) are
      left out, named in a warning and in the reason; "all" keeps every row (before session 38).
    * ``analyte`` (None): one curve per analyte. A subject with rows of two or more named analytes of
      its param is not evaluable (rule ``car_kinetics.multiple_analytes``) unless this names one (then
      only its rows; a subject without any is not evaluable, its reason naming the analytes it has, and
      a warning says when no subject has it); rows without an analyte beside one named analyte are that
      analyte.
    * ``max_aucpext`` (20): warning ``aucpext_high`` when ``aucpext.obs`` (ADPP AUCPEO, the % of
      ``aucinf.obs`` extrapolated past tlast; PKNCA ``pk.calc.aucpext``) is above this percentage.
    * ``profile_end`` ("next_infusion"): with ``time_from="first"``, the profile ends at the first CAR-T
      infusion more than ``split_dose_gap_days`` (7, a convention: split-dose fractions on days 0-2 stay
      one administration) after the previous one; samples after that re-infusion are left out of the NCA
      (named in a warning; the second administration's parameters are not computed). "all": every sample
      after the first infusion (before session 40: a re-expansion became Cmax).
    * ``auc_past_tlast`` ("extrapolate"): a window ending after the last quantifiable sample, with no BLQ
      sample after it, is completed by the lambda.z tail (PKNCA ``aucint.inf.obs``; the basis gives the
      extrapolated % and warning ``auc_window_extrapolated``); "not_evaluable": empty with that reason (the
      spec says "interpolating" only).
    * ``untimed_infusion`` ("midnight"): an infusion without a clock time is at midnight (spec "Time"), so
      timed samples count from it to the hour, with a warning; "calendar_day": those subjects' samples are
      timed in whole calendar days from the infusion's day (a sample on that day is at time 0 and follows
      ``day0_untimed_sample``).
    * ``blq_middle`` ("drop") / ``blq_last`` ("keep"): PKNCA ``conc.blq`` for BLQ samples between
      quantifiable ones and after the last ("keep" = as 0, "drop" = left out); with ``blq_last="drop"``
      the window past tlast is the lambda.z tail, not the line to the BLQ sample's 0.
    * ``all_blq_auc`` ("zero"): a subject whose samples are all BLQ gets ``car_auc_0_28`` 0 (PKNCA: "If
      all conc input are zero, then the AU(M)C is zero"), with a basis naming the last sampled day and
      warning ``all_blq_before_window_end`` when that day is before the window's end;
      "through_last_sample": empty (not computable) in that case, the level after it being unknown.
    """

    param: str | None = None
    method: str = "lin-up/log-down"
    auc_window: tuple[float, float] = (0.0, 28.0)
    time_from: str = "first"
    zero_at_infusion: bool = True
    date_only_samples: str = "as_given"
    day0_untimed_sample: str = "as_given"
    specimen: str = "PB"
    analyte: str | None = None
    max_aucpext: float = 20.0
    all_blq_auc: str = "zero"
    profile_end: str = "next_infusion"
    split_dose_gap_days: float = 7.0
    auc_past_tlast: str = "extrapolate"
    untimed_infusion: str = "midnight"
    blq_middle: str = "drop"
    blq_last: str = "keep"

    def __post_init__(self) -> None:
        for name, allowed in (("profile_end", ("next_infusion", "all")), ("auc_past_tlast", (
                "extrapolate", "not_evaluable")), ("untimed_infusion", ("midnight", "calendar_day")),
                              ("blq_middle", ("drop", "keep")), ("blq_last", ("keep", "drop"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {getattr(self, name)!r}")
        if not (isinstance(self.split_dose_gap_days, (int, float)) and self.split_dose_gap_days >= 0):
            raise ValueError(f"split_dose_gap_days must be a number of days >= 0, not {self.split_dose_gap_days!r}")
        if self.all_blq_auc not in ("zero", "through_last_sample"):
            raise ValueError(f"all_blq_auc must be 'zero' or 'through_last_sample', not {self.all_blq_auc!r}")
        if not isinstance(self.specimen, str) or not self.specimen.strip():
            raise ValueError(f"specimen must be a specimen code (PB, BM, CSF ...) or 'all', not {self.specimen!r}")
        if self.analyte is not None and not str(self.analyte).strip():
            raise ValueError("analyte must be an analyte name (observations.csv analyte) or empty (None)")
        if self.day0_untimed_sample not in ("as_given", "pre_infusion"):
            raise ValueError(f"day0_untimed_sample must be 'as_given' or 'pre_infusion', not {self.day0_untimed_sample!r}")
        if self.date_only_samples not in ("as_given", "calendar_day"):
            raise ValueError(f"date_only_samples must be 'as_given' or 'calendar_day', not {self.date_only_samples!r}")
        if self.param is not None and self.param not in CAR_PARAMS:
            raise ValueError(f"param must be one of {CAR_PARAMS}, not {self.param!r}")
        if self.time_from not in ("first", "last"):
            raise ValueError("time_from must be 'first' or 'last'")
        lo, hi = self.auc_window
        if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
            raise ValueError(f"auc_window must be two finite days, start < end, not {self.auc_window!r}")


def _infusions(study: Study) -> pl.DataFrame:
    d = car_t_infusions(study)
    if d.height == 0:
        return pl.DataFrame(schema={"subject_id": pl.String, "day": pl.Float64, "agent": pl.String})
    agent = pl.col("agent").cast(pl.String) if "agent" in d.columns else pl.lit(None, dtype=pl.String)
    return d.select("subject_id", pl.col("day").cast(pl.Float64), agent.alias("agent")).sort("subject_id", "day")


_PROFILE_SCHEMA = {
    "subject_id": pl.String, "param": pl.String, "day": pl.Float64, "time": pl.Float64,
    "conc": pl.Float64, "lloq": pl.Float64, "blq": pl.Boolean, "value_text": pl.String,
    "unit": pl.String, "imputed": pl.Boolean, "source": pl.String, "evidence": EVIDENCE,
}


def _date_only() -> pl.Expr:
    """A row whose time is known to the day only: a ``datetime`` without a clock time (``2021-05-24``),
    or a whole ``day`` number given without a ``datetime`` (day 14 is no more precise than a date)."""
    dt = pl.col("datetime").cast(pl.String).str.strip_chars()
    return (dt.str.contains(r"^\d{4}-\d{2}-\d{2}$")
            | (dt.is_null() & (pl.col("day") == pl.col("day").floor()))).fill_null(False)


def _warn_date_only(study: Study, prof: pl.DataFrame, options: CarKineticsOptions) -> None:
    """Warn when date-only samples meet an infusion with a clock time (option ``date_only_samples``)."""
    if options.date_only_samples != "as_given":
        return
    timed = _infusions(study).group_by("subject_id").agg(pl.col("day").min()).filter(
        pl.col("day") != pl.col("day").floor())["subject_id"]
    dated = study.observations.filter(pl.col("param").is_in(list(CAR_PARAMS)) & _date_only()
                                      & pl.col("subject_id").is_in(timed.implode()))["subject_id"].unique().sort()
    dated = [sid for sid in dated.to_list() if sid in set(prof["subject_id"].to_list())]
    if dated:
        warnings.warn(SubjectsWarning(
            f"{len(dated)} subject(s) have CAR-T samples given as dates without a clock time (or as whole days) "
            "while the infusion has one: their times from the infusion count from midnight (a day-14 sample "
            "after a 14:00 infusion is 13.42 days), which can leave no sample on day 28 for car_auc_0_28; --set "
            "kinetics.date_only_samples=calendar_day counts them in whole days: {subjects}", dated,
            "the warnings of cartlab analyze (analysis.json)"), stacklevel=3)


def _with_last_infusion(obs: pl.DataFrame, inf: pl.DataFrame, calendar: bool) -> pl.DataFrame:
    """``obs`` with ``_last``: the day of the subject's most recent CAR-T infusion at or before each row,
    joined per subject (polars ``join_asof`` by ``subject_id``, backward), never by row position
    (review s35 A1). In ``calendar_day`` mode a date-only row is compared by calendar day (its day
    0-28 counts from the infusion's calendar day), any other row by its exact time."""
    rows = obs.with_row_index("_row")
    right = inf.select("subject_id", pl.col("day").alias("_last"), pl.col("day").floor().alias("_last_k")).sort("_last")
    exact = rows.select("_row", "subject_id", "day").sort("day").join_asof(
        right.select("subject_id", "_last"), left_on="day", right_on="_last", by="subject_id", strategy="backward", check_sortedness=False)
    cal = rows.select("_row", "subject_id", "_t").sort("_t").join_asof(
        right.select("subject_id", "_last_k", pl.col("_last").alias("_last_c")), left_on="_t", right_on="_last_k",
        by="subject_id", strategy="backward", check_sortedness=False)
    rows = rows.join(exact.select("_row", "_last"), on="_row", how="left").join(
        cal.select("_row", "_last_c"), on="_row", how="left")
    use_cal = _date_only() & pl.lit(calendar)
    return rows.with_columns(pl.when(use_cal).then(pl.col("_last_c")).otherwise(pl.col("_last")).alias("_last")
                             ).drop("_row", "_last_c").sort("subject_id", "day")


def _profiles(study: Study, options: CarKineticsOptions) -> pl.DataFrame:
    """:func:`derive_car_profiles` with private columns: ``_rel`` (time from the most recent
    infusion, ADPC ARRLT), ``_untimed0`` (a date-only sample at time 0, B4), ``_no_inf`` (the subject
    has no CAR-T infusion record: timed from day 0, B3) and ``_note`` (rows left out: specimen, analyte)."""
    return _profiles_ex(study, options)[0]


def _profiles_ex(study: Study, options: CarKineticsOptions, warn: bool = False) -> tuple[pl.DataFrame, pl.DataFrame]:
    """:func:`_profiles` and the subjects not evaluable for the specimen/analyte rules (``subject_id``,
    ``param``, ``unit``, ``evidence``, ``not_evaluable``, ``rule``); ``warn``: warn about left-out rows.

    Times are rounded to 1e-9 day (86 us, the NFRLT rule): a date-time exactly N days after the
    infusion is day N, not 27.999999999999996 (review s38 A3)."""
    all_obs = study.observations.filter(pl.col("param").is_in(list(CAR_PARAMS)) & pl.col("day").is_not_null())
    obs, spec_notes = select_specimen(all_obs, options.specimen, warn=warn)
    if options.param is not None:
        obs = obs.filter(pl.col("param") == options.param)
    inf = _infusions(study)
    calendar = options.date_only_samples == "calendar_day"
    first = inf.group_by("subject_id").agg(pl.col("day").min().alias("_first"), pl.col("day").max().alias("_final"))
    obs = obs.join(first, on="subject_id", how="left").with_columns(
        pl.col("_first").is_null().alias("_no_inf"), pl.col("_first").fill_null(0.0))
    if calendar:  # a date without a clock time: its calendar day
        obs = obs.with_columns(pl.when(_date_only()).then(pl.col("day").floor()).otherwise(pl.col("day")).alias("_t"),
                               pl.when(_date_only()).then(pl.col("_first").floor()).otherwise(pl.col("_first"))
                               .alias("_first_t"))
    else:
        obs = obs.with_columns(pl.col("day").alias("_t"), pl.col("_first").alias("_first_t"))
    untimed_inf = (pl.col("_first") == pl.col("_first").floor()) & pl.lit(options.untimed_infusion == "calendar_day")
    obs = obs.with_columns(pl.when(untimed_inf).then(pl.col("_t").floor()).otherwise(pl.col("_t")).alias("_t"),
                           untimed_inf.alias("_cal_inf"))
    obs = obs.filter((pl.col("_t") - pl.col("_first_t")).round(9) >= 0)
    if options.param is None:  # per subject: CARCOPY when it has any after the infusion, else CARCELL
        # (a pre-infusion CARCOPY baseline "<50" must not hide the CARCELL profile: session 32 review)
        has_copy = obs.filter(pl.col("param") == "CARCOPY")["subject_id"].unique().to_list()
        obs = obs.filter((pl.col("param") == "CARCOPY") | ~pl.col("subject_id").is_in(has_copy))
    obs, an_notes, multi = select_analyte(obs, options.analyte, warn=warn)
    obs = obs.join(spec_notes, on="subject_id", how="left").join(an_notes, on="subject_id", how="left").with_columns(
        pl.concat_str(pl.col("_spec_note"), pl.col("_an_note"), separator="; ", ignore_nulls=True)
        .replace("", None).alias("_note")
    ).drop("_spec_note", "_an_note")
    obs = _with_last_infusion(obs, inf, calendar)
    if options.time_from == "last":
        _refuse_between(obs)
    last = pl.coalesce(pl.col("_last"), pl.col("_first"))  # no infusion record: day 0 (B3)
    ref_last = pl.when(_date_only() & pl.lit(calendar)).then(last.floor()).otherwise(last)
    rel = (pl.col("_t") - ref_last).round(9).alias("_rel")
    time = (rel if options.time_from == "last" else (pl.col("_t") - pl.col("_first_t")).round(9)).alias("time")
    obs = obs.with_columns(time, rel, ((_date_only() | pl.col("_cal_inf")) & (time == 0)).alias("_untimed0"))
    if options.day0_untimed_sample == "pre_infusion":  # a date-only sample on the infusion's day: before it
        obs = obs.filter(~pl.col("_untimed0"))
    limit = pl.coalesce(pl.col("censor_limit"), pl.col("lloq"))
    prof = obs.select(
        "subject_id", "param", "day", "time",
        pl.col("value").alias("conc"), limit.alias("lloq"),
        (pl.col("censor").is_in(["<", "<="]).fill_null(False)
         | (pl.col("value").is_not_null() & limit.is_not_null() & (pl.col("value") < limit))
         | (pl.col("value") == 0).fill_null(False)).alias("blq"),  # a 0 is BLQ without an lloq too (docs)
        "value_text", "unit", pl.lit(False).alias("imputed"), pl.col("source"),
        pl.concat_list(evidence_ref()).list.drop_nulls().alias("evidence"),
        "_rel", "_untimed0", "_no_inf", "_note",
    )
    schema = {**_PROFILE_SCHEMA, "_rel": pl.Float64, "_untimed0": pl.Boolean, "_no_inf": pl.Boolean,
              "_note": pl.String}
    if options.zero_at_infusion:
        at0 = prof.filter(pl.col("time") == 0)["subject_id"].unique().to_list()
        starts = prof.group_by("subject_id", maintain_order=True).agg(
            pl.col("param").first(), pl.col("unit").first(), pl.col("_no_inf").first(), pl.col("_note").first())
        ref_day = pl.col("_final" if options.time_from == "last" else "_first").fill_null(0.0)
        zero = starts.filter(~pl.col("subject_id").is_in(at0)).join(first, on="subject_id", how="left").select(
            "subject_id", "param", ref_day.alias("day"), pl.lit(0.0).alias("time"),
            pl.lit(0.0).alias("conc"), pl.lit(None, dtype=pl.Float64).alias("lloq"), pl.lit(False).alias("blq"),
            pl.lit(None, dtype=pl.String).alias("value_text"), "unit", pl.lit(True).alias("imputed"),
            pl.lit(None, dtype=pl.String).alias("source"), pl.lit([], dtype=EVIDENCE).alias("evidence"),
            pl.lit(0.0).alias("_rel"), pl.lit(False).alias("_untimed0"), "_no_inf", "_note",
        )
        prof = pl.concat([prof.cast(schema), zero.cast(schema)])
    prof = prof.cast(schema).sort("subject_id", "time")
    # a subject whose CAR rows are all of another specimen: not evaluable, naming them (missing is not negative)
    gone = spec_notes.filter(~pl.col("subject_id").is_in(prof["subject_id"].implode())
                             & ~pl.col("subject_id").is_in(multi["subject_id"].implode()))
    first_rows = all_obs.sort("subject_id", "day").group_by("subject_id", maintain_order=True).agg(
        pl.col("param").first(), pl.col("unit").first(), evidence_ref().drop_nulls().alias("evidence"))
    no_blood = gone.join(first_rows, on="subject_id", how="left").select(
        "subject_id", "param", "unit", "evidence",
        pl.format("no {} CAR sample: {}", pl.lit(options.specimen), pl.col("_spec_note")).alias("not_evaluable"),
        pl.lit("car_kinetics.specimen").alias("rule"))
    excluded = pl.concat([multi.with_columns(pl.lit("car_kinetics.multiple_analytes").alias("rule")), no_blood],
                         how="diagonal_relaxed")
    return prof, excluded


def _refuse_between(obs: pl.DataFrame) -> None:
    """``time_from="last"`` times a profile from the subject's last infusion, so a sample before it (after
    an earlier infusion) belongs to another dosing interval (PKNCA: one NCA per dosing interval) and
    has no place on that axis: refused, naming the subjects, days and rows (review s35 B1)."""
    bad = obs.filter(pl.col("_last").is_not_null() & (pl.col("_last") < pl.col("_final")))
    if bad.height == 0:
        return
    per = (bad.sort("subject_id", "day").group_by("subject_id", maintain_order=True).agg(
        day_expr(pl.col("day")).str.join(", ").alias("_days"), pl.col("_final").first(),
        evidence_ref().drop_nulls().str.join(", ").alias("_rows"))
        .select(pl.format("{} (sample day(s) {} before the last infusion on day {}{})", "subject_id", "_days",
                          day_expr(pl.col("_final")),
                          pl.when(pl.col("_rows") != "").then(pl.concat_str(pl.lit("; "), pl.col("_rows")))
                          .otherwise(pl.lit("")))))
    shown = per.to_series().to_list()
    raise InputError(
        f"kinetics.time_from=last: {len(shown)} subject(s) have CAR-T samples between two CAR-T infusions "
        f"(observations.csv, column day): {'; '.join(shown[:20])}{' ...' if len(shown) > 20 else ''}. Time from "
        "the last infusion puts such samples on the axis of another dosing interval (NCA is per dosing interval, "
        "PKNCA), so the option is refused",
        hint="use kinetics.time_from=first (the default and the spec: time from the first CAR-T infusion), or "
             "analyse the samples after the last infusion as a study of their own")


def derive_car_profiles(study: Study, options: CarKineticsOptions | None = None) -> pl.DataFrame:
    """One row per CAR kinetic sample after the first infusion (plus the imputed 0 at infusion).

    ``conc`` is the value in the canonical unit (null for a censored ``<x`` result), ``lloq`` the
    row's LLOQ or the censoring limit, ``blq`` whether the sample is below it; ``time`` follows
    ``time_from``; ``source`` is the row's provenance label (``paper``, ``reconstructed`` ...; null
    for the imputed 0). BLQ handling itself happens in the NCA (first/middle/last policies).
    A subject without a CAR-T infusion record is timed from day 0 (spec "Time": day 0 is the
    infusion day); ``time_from="last"`` raises :class:`~cartlab.errors.InputError` when a sample falls
    between two infusions.
    """
    options = options or CarKineticsOptions()
    return _profiles(study, options).drop("_rel", "_untimed0", "_no_inf", "_note")


def _same_time(prof: pl.DataFrame) -> pl.DataFrame:
    """Subjects with two (or more) samples at one time, with ``not_evaluable``: "two samples at the same
    time (day 7)" (the study days, as the user gave them; "several" when a time has three or more)."""
    groups = (prof.filter(pl.len().over("subject_id", "time") > 1)
              .group_by("subject_id", "time").agg(pl.col("day").min().alias("_d"), pl.len().alias("_n"))
              .sort("subject_id", "time")
              .group_by("subject_id", maintain_order=True)
              .agg(pl.concat_str(pl.lit("day "), day_expr(pl.col("_d"))).str.join(", ").alias("_days"),
                   (pl.col("_n") > 2).any().alias("_more")))
    return groups.select("subject_id", pl.format(
        "{} samples at the same time ({})", pl.when(pl.col("_more")).then(pl.lit("several")).otherwise(pl.lit("two")),
        pl.col("_days")).alias("not_evaluable"))


def derive_car_kinetics(study: Study, options: CarKineticsOptions | None = None) -> pl.DataFrame:
    """NCA of every subject's CAR profile: PKNCA-named parameters over all data and the AUC window.

    Columns: ``subject_id``, ``param``, ``unit``, the NCA columns of the whole profile (``cmax``,
    ``tmax``, ``tlast``, ``clast.obs``, ``auclast``, ``lambda.z``, ``half.life`` ...), ``auc_window``
    (the AUC over ``auc_window``), ``auc_window_basis``, ``method``, ``warnings``, ``rule``,
    ``reason``, ``evidence`` and ``not_evaluable``.

    * ``n_blq``: the subject's samples (after the infusion) observed below the limit of
      quantification — a ``<x`` result, a value below its ``lloq``, or a measured 0 (PKNCA: "values
      are considered BLQ if they are 0") — counted as observed: those the BLQ rule sets to 0 (before
      the first and after the last quantifiable sample) and those it drops (between) alike. The 0
      imputed at the infusion (``zero_at_infusion``) is not a sample and is not counted (it was before
      session 33). ``n_samples`` is the NCA's: the points its AUCs use, the imputed 0 included.
    * ``warnings``: the whole-profile NCA's, except ``aucint_no_lambda_z`` (PKNCA's 0-infinity
      ``aucint`` always needs lambda.z): that code is given only when ``auc_window`` is null because
      the window ends after the last quantifiable sample, lambda.z is not available, and no BLQ
      sample after it brings the level to 0 (the only case where extrapolation is needed).
    * Two samples of a subject at the same time (two rows of one whole ``day`` without a time of day,
      which the study reader keeps and warns about): NCA needs one concentration per time (PKNCA:
      times must be unique and increasing), and which is the later sample is unknown. The subject is
      not evaluable: one row with every NCA value empty, ``not_evaluable`` = "two samples at the same
      time (day 7)", rule ``car_kinetics.duplicate_time``, warning ``duplicate_time``; the other
      subjects are computed as usual (session 33: one raised ValueError left the subject without a
      row). Missing is not negative: its Cmax and AUC are empty, never 0.
    """
    from cartlab.kinetics.nca import NcaOptions, derive_nca

    options = options or CarKineticsOptions()
    prof, excluded = _profiles_ex(study, options, warn=True)
    inf = _infusions(study)
    car_obs = study.observations.filter(pl.col("param").is_in(list(CAR_PARAMS))
                                        & pl.col("subject_id").is_in(prof["subject_id"].unique().implode()))
    warn_untimed_infusion(untimed := untimed_infusion_subjects(car_obs, inf, _date_only()), options.untimed_infusion)
    prof = cut_at_reinfusion(prof, inf, options.profile_end, options.time_from, options.split_dose_gap_days)
    reinf = reinfusion_note(prof, inf, options.profile_end, options.time_from, options.split_dose_gap_days,
                            untimed, options.untimed_infusion)  # review 40 B5: the reason names it
    warn_date_only_same_day(car_obs, prof["evidence"].list.explode(keep_nulls=False, empty_as_null=False), _date_only())
    _warn_date_only(study, prof, options)
    _warn_day0(prof, options, doses_given=not table_absent(study, "doses"), doses=study.doses)
    _warn_other_cell_therapy(study)
    schema_extra = {"subject_id": pl.String}
    if prof.height == 0:
        empty = pl.DataFrame(schema={**schema_extra, "param": pl.String, "cmax": pl.Float64, "tmax": pl.Float64,
                                     "tlast": pl.Float64, "auc_window": pl.Float64, "method": pl.String,
                                     "rule": pl.String, "reason": pl.String, "evidence": EVIDENCE,
                                     "not_evaluable": pl.String})
        if excluded.height == 0:
            return empty
        return pl.concat([empty, _excluded_rows(excluded, options)], how="diagonal_relaxed")
    same = _same_time(prof)
    # the NCA sees quantifiable values as conc and BLQ samples as conc 0 with their LLOQ
    # (a measured 0 stays a 0: the NCA reads it as BLQ without an lloq, PKNCA's convention)
    censored = pl.col("blq") & (pl.col("conc") != 0).fill_null(True)
    # an upper-censored result (">1e6", above the upper limit of quantification; its bound is in
    # ``lloq``, canonical) goes to the NCA as ">bound": used as the bound, with warning above_uloq
    # (it was dropped: a ">1e6" peak left Cmax at the next sample; session 32 review)
    above = (pl.col("conc").is_null() & ~pl.col("blq")
             & pl.col("value_text").str.contains(r"^\s*(>=|>|≥)").fill_null(False) & pl.col("lloq").is_not_null())
    frame = (prof.filter(~pl.col("subject_id").is_in(same["subject_id"].implode()))
             .select("subject_id", "time", pl.when(censored).then(None).otherwise(pl.col("conc")).alias("conc"),
                     pl.when(censored).then(pl.col("lloq")).otherwise(None).alias("lloq"),
                     pl.when(censored).then(pl.concat_str(pl.lit("<"), pl.col("lloq").cast(pl.String)))
                     .when(above).then(pl.concat_str(pl.lit(">"), pl.col("lloq").cast(pl.String)))
                     .otherwise(None).alias("value_text")))
    lo, hi = options.auc_window
    res = derive_nca(frame, subject="subject_id", time="time", conc="conc", lloq="lloq", value_text="value_text",
              intervals=((0.0, math.inf), (lo, hi)), options=NcaOptions(
        method=options.method, max_aucpext=options.max_aucpext, blq_middle=options.blq_middle, blq_last=options.blq_last))
    whole = res.filter(pl.col("end").is_infinite()).rename({"rule": "lambda.z.rule", "reason": "lambda.z.reason"})
    win = res.filter(pl.col("end") == hi).select(
        "subject_id", pl.col("aucint").alias("_aucint"), pl.col("aucint.all").alias("_aucint_all"),
        pl.col("warnings").list.eval(pl.element().str.starts_with("aucint_no_lambda_z:")).list.any()
        .alias("_win_no_lz"))
    # BLQ after the last quantifiable sample: the curve is 0 from there on (study contract: BLQ after
    # the last quantifiable value is 0). Inside the window the window AUC is AUCall; after it, the
    # level at the window's end is interpolated between the last quantifiable sample and that 0
    # (linearly: a log trapezoid cannot reach 0), not extrapolated by lambda.z.
    zero_after = (prof.join(whole.select("subject_id", "tlast"), on="subject_id", how="left")
                  .filter(pl.col("blq") & (pl.col("time") > pl.col("tlast")))
                  .group_by("subject_id").agg(pl.col("time").min().alias("_zero_at")))
    meta = prof.group_by("subject_id", maintain_order=True).agg(
        pl.col("param").first(), pl.col("unit").first(), pl.col("evidence").list.explode(keep_nulls=False, empty_as_null=False).alias("evidence"),
        pl.col("imputed").any().alias("zero_imputed"), pl.col("_no_inf").any().alias("_no_inf"),
        pl.col("_note").drop_nulls().first().alias("_note"),
        (pl.col("_untimed0") & ~pl.col("blq") & (pl.col("conc") > 0).fill_null(False)).any().alias("_q0"),
        # a sample at the window's start (or before it): without one and without the imputed 0 the window
        # has no start (zero_at_infusion=False; review s35 B2)
        (pl.col("time") <= lo).any().alias("_has_start"),
        # samples observed BLQ (the imputed 0 at the infusion is not one: its blq is False)
        pl.col("blq").sum().cast(pl.Int64).alias("_n_blq"),
        # every sample BLQ (the imputed 0 is no sample), and the last sampled time (review s38 B2)
        (pl.col("blq").filter(~pl.col("imputed")).all() & (~pl.col("imputed")).any()).alias("_all_blq"),
        pl.col("time").filter(~pl.col("imputed")).max().alias("_last_t"),
        # no sample with an lloq and no "<x" result (its limit is in lloq too): a value below the
        # assay's limit cannot be recognised as BLQ (review 37 B5); the imputed 0 is no sample
        pl.col("lloq").filter(~pl.col("imputed")).is_null().all().alias("_no_lloq"))
    no_lloq = meta.filter(pl.col("_no_lloq").fill_null(False))["subject_id"].to_list()
    if no_lloq:  # said once for the analysis too (analysis.json, the report), beside each row's warnings
        warnings.warn(SubjectsWarning(
            f"{len(no_lloq)} subject(s) have CAR-T samples without an lloq and without a '<x' result: values below "
            "the assay's limit of quantification cannot be recognised as BLQ, so they count as quantified "
            "(car_kinetics.csv warnings no_lloq; give observations.csv lloq): {subjects}", no_lloq,
            "car_kinetics.csv (warnings no_lloq)"), stacklevel=2)
    out = (whole.join(win, on="subject_id", how="left").join(zero_after, on="subject_id", how="left")
           .join(meta, on="subject_id", how="left").join(reinf, on="subject_id", how="left")
           .with_columns(pl.concat_str(pl.col("_note"), pl.col("_reinf_note"), separator="; ", ignore_nulls=True)
                         .replace("", None).alias("_note")).drop("_reinf_note"))
    # BLQ after tlast is 0 (not dropped), for every window: the window's aucint.all (review45 F3)
    keep_last = pl.lit(options.blq_last == "keep")
    use_all = pl.col("_zero_at").is_not_null() & (pl.col("_zero_at") <= hi) & keep_last
    zero_later = pl.col("_zero_at").is_not_null() & (pl.col("_zero_at") > hi) & (pl.col("tlast") < hi) & keep_last
    tl, z = pl.col("tlast"), pl.col("_zero_at")
    # zero_at_infusion=False and no sample at the window's start: not computable (the option's meaning;
    # PKNCA's aucint would start from conc.origin = 0, i.e. impute the 0 anyway: review s35 B2)
    no_start = pl.lit(not options.zero_at_infusion) & ~pl.col("_has_start").fill_null(False)
    blq_short = pl.col("_all_blq").fill_null(False) & (pl.col("_last_t") < hi).fill_null(False)
    blq_null = blq_short & pl.lit(options.all_blq_auc == "through_last_sample")
    # the window needs lambda.z only on the aucint path (no BLQ sample after tlast closes the curve)
    # and only when it ends after tlast (the window row's own aucint_no_lambda_z says exactly that)
    no_lz = (~no_start & ~use_all & ~zero_later & pl.col("_aucint").is_null()
             & pl.col("_win_no_lz").fill_null(False))
    # the aucint path past tlast: the lambda.z tail (PKNCA aucint.inf.obs), extrapolated (review40 B1)
    past, tail = window_basis_parts(hi, lo)
    extrap = ~no_start & ~blq_null & ~use_all & ~zero_later & ~no_lz & pl.col("_aucint").is_not_null() & past \
        & ~pl.col("_all_blq").fill_null(False)
    refuse = extrap & pl.lit(options.auc_past_tlast == "not_evaluable")
    pct = (tail / pl.col("_aucint") * 100)
    # AUCall's linear fall from tlast to the BLQ 0, cut at the window's edges: PKNCA aucint.all
    auc = (pl.when(no_start | blq_null | refuse).then(pl.lit(None, dtype=pl.Float64))
           .when(use_all | zero_later).then(pl.col("_aucint_all")).otherwise(pl.col("_aucint")))
    over = "" if lo == 0.0 else f", over day {day_text(lo)}-{day_text(hi)} (PKNCA aucint.all)"
    out = out.with_columns(
        auc.alias("auc_window"),
        pl.when(no_start).then(pl.lit(
            f"not computable: no sample at the start of the window (day {day_text(lo)}) and no 0 imputed at the "
            "infusion (zero_at_infusion=False)"))
        .when(blq_null).then(pl.format(
            f"not computable: all samples BLQ, the last on day {{}}, before the window's end (day {day_text(hi)}): "
            "the level after it is unknown (kinetics.all_blq_auc=through_last_sample)", day_expr(pl.col("_last_t"))))
        .when(pl.col("_all_blq").fill_null(False) & ~blq_short & (auc == 0).fill_null(False)).then(pl.format(
            "all samples BLQ, the last on day {}: AUC 0 (PKNCA: an AUC of all-zero concentrations is 0)",
            day_expr(pl.col("_last_t"))))
        .when(blq_short & auc.is_not_null()).then(pl.format(
            f"all samples BLQ, the last on day {{}}: AUC taken as 0 to day {day_text(hi)} (PKNCA: an AUC of all-zero "
            "concentrations is 0; kinetics.all_blq_auc=zero)", day_expr(pl.col("_last_t"))))
        # a method is the basis of a value only: an empty AUC says why it is empty (review s35 B2)
        .when(auc.is_null() & (use_all | zero_later)).then(pl.lit(
            "not computable: the NCA of the whole profile gives no AUCall/AUClast"))
        .when(use_all).then(pl.format("AUCall: concentration 0 from the BLQ sample on day {}" + over, day_expr(z)))
        .when(zero_later).then(pl.format(
            f"AUClast, then linear from the last quantifiable sample to concentration 0 at the BLQ sample on "
            f"day {{}}, interpolated at day {day_text(hi)}{over}", day_expr(z)))
        .when(no_lz).then(pl.lit("not computable: the window reaches past the last quantifiable sample and "
                                 "lambda.z is not estimable"))
        .when(pl.col("_aucint").is_null()).then(pl.lit("not computable: fewer than 2 samples in the profile"))
        .when(refuse).then(pl.format(
            f"not evaluable: the window ends (day {day_text(hi)}) after the last quantifiable sample (day {{}}) with "
            "no later sample; the level there would be extrapolated by lambda.z (kinetics.auc_past_tlast="
            "not_evaluable)", day_expr(tl)))
        .when(extrap).then(pl.format(
            "AUC over the window, extrapolated from the last quantifiable sample (day {}) by lambda.z {}/day "
            "(PKNCA aucint.inf.obs): {} of {} ({}%) extrapolated", day_expr(tl), _num_text("lambda.z"),
            tail.round(1).cast(pl.String), _num_text("_aucint"), pct.round(1).cast(pl.String)))
        .otherwise(pl.lit("AUC over the window, through the samples (interpolated at the window's end when no "
                          "sample is there; PKNCA aucint.inf.obs, no extrapolation)")).alias("auc_window_basis"),
        # aucint_no_lambda_z of the whole profile is about PKNCA's 0-infinity aucint (= aucinf.obs), not
        # the window beside it: given only when the window itself needs lambda.z (session 33)
        pl.col("warnings").list.eval(pl.element().filter(~pl.element().str.starts_with("aucint_no_lambda_z:")))
        .list.concat(pl.when(no_lz).then(pl.concat_list(pl.format(
            f"aucint_no_lambda_z: the AUC window (day {day_text(lo)}-{day_text(hi)}) reaches past the last "
            "quantifiable sample (day {}) and lambda.z is not available, with no BLQ sample after it to bring the "
            "level to 0: auc_window is null (PKNCA aucint.inf.obs)", day_expr(tl))))
                     .otherwise(pl.lit([], dtype=pl.List(pl.String))))
        .list.concat(pl.when(extrap).then(pl.concat_list(pl.format(
            f"auc_window_extrapolated: the AUC window (day {day_text(lo)}-{day_text(hi)}) ends after the last "
            "quantifiable sample (day {}): {}% of auc_window is the lambda.z tail (PKNCA aucint.inf.obs; option "
            "kinetics.auc_past_tlast)", day_expr(tl), pct.round(1).cast(pl.String))))
                     .otherwise(pl.lit([], dtype=pl.List(pl.String))))
        .list.concat(pl.when(blq_short).then(pl.concat_list(pl.format(
            f"all_blq_before_window_end: every sample is BLQ and the last is on day {{}}, before the window's end (day "
            f"{day_text(hi)}): nothing is known of the level after it (option kinetics.all_blq_auc)",
            day_expr(pl.col("_last_t"))))).otherwise(pl.lit([], dtype=pl.List(pl.String))))
        .list.concat(pl.when(pl.col("_no_lloq").fill_null(False)).then(pl.concat_list(pl.format(
            "no_lloq: no {} sample has an lloq (observations.csv lloq) or a '<x' value_text: a value below the "
            "assay's limit of quantification cannot be recognised, so BLQ comes only from a '<x' result or a "
            "measured 0 and every other value is taken as quantified (n_blq, auc_window); give lloq",
            pl.col("param")))).otherwise(pl.lit([], dtype=pl.List(pl.String)))).alias("warnings"),
        pl.col("_n_blq").alias("n_blq"),
        # persistence = tlast is censored when no BLQ sample follows it: CAR-T still detectable (review40 B11)
        pl.when(pl.col("tlast").is_not_null()).then(pl.col("_zero_at").is_null()).alias("persistence_censored"),
        pl.col("_zero_at").alias("persistence_lost_by"), extrap.alias("_extrap"),
    ).drop("_aucint", "_aucint_all", "_zero_at", "_win_no_lz", "_n_blq", "_has_start", "_no_lloq", "_all_blq", "_last_t")
    out = _with_window_limits(out, study, inf, options, lo, hi)  # re-infusion, death, follow-up (review45 F4, F5)
    auc_text = (pl.when(pl.col("auc_window").is_null()).then(pl.format("({})", pl.col("auc_window_basis")))
                .otherwise(pl.format("{} by {} ({})", _num_text("auc_window"), pl.lit(options.method),
                                     pl.col("auc_window_basis"))))
    peak_text = (pl.when(pl.col("tmax").is_null()).then(pl.format("no quantifiable sample (Cmax {})", _num_text("cmax")))
                 .otherwise(pl.format("Cmax {} at day {}, last quantifiable day {}", _num_text("cmax"),
                                      day_expr(pl.col("tmax")), day_expr(pl.col("tlast")))))
    out = out.with_columns(
        pl.lit(options.method).alias("method"),
        pl.lit(f"{day_text(lo)}-{day_text(hi)}").alias("auc_window_days"),
        pl.lit("car_kinetics.nca").alias("rule"),
        pl.format("{} NCA from {} samples ({}{}{}{}): {}, AUC{}-{} {}",
                  pl.col("param"), pl.col("n_samples"),
                  pl.when(pl.col("_no_inf")).then(pl.lit("time from day 0 (no CAR-T infusion recorded)"))
                  .otherwise(pl.lit(f"time from the {options.time_from} infusion")),
                  pl.when(pl.col("zero_imputed") & pl.col("_no_inf")).then(pl.lit("; concentration 0 imputed at day 0"))
                  .when(pl.col("zero_imputed")).then(pl.lit("; concentration 0 imputed at the infusion"))
                  .otherwise(pl.lit("")),
                  pl.when(pl.col("_q0")).then(pl.lit(
                      "; a quantifiable sample without a clock time on the infusion's day taken as the level at "
                      "the infusion (kinetics.day0_untimed_sample=as_given)")).otherwise(pl.lit("")),
                  pl.when(pl.col("_note").is_not_null()).then(pl.concat_str(pl.lit("; "), pl.col("_note")))
                  .otherwise(pl.lit("")),
                  peak_text, pl.lit(day_text(lo)), pl.lit(day_text(hi)),
                  auc_text).alias("reason"),
        pl.lit(None, dtype=pl.String).alias("not_evaluable"),
    ).drop("_no_inf", "_q0", "_note")
    out = out.join(parameter_evidence(prof, out, lo, hi), on="subject_id", how="left").drop("_extrap")
    if same.height:
        out = pl.concat([out, _not_evaluable_rows(same, meta, options)], how="diagonal_relaxed").sort(
            "subject_id", maintain_order=True)
    if excluded.height:
        out = pl.concat([out, _excluded_rows(excluded, options)], how="diagonal_relaxed").sort(
            "subject_id", maintain_order=True)
    return out


def derive_kinetics_summary(study: Study, options: CarKineticsOptions | None = None,
                     kinetics: pl.DataFrame | None = None) -> pl.DataFrame:
    """``car_cmax``, ``car_tmax``, ``car_auc_0_28``, ``car_tlast`` per subject (subject_summary.csv),
    with ``car_param`` and ``car_unit``: the measurement they come from (CARCOPY, else CARCELL) and its
    unit, since a cohort may mix the two.

    ``car_auc_0_28`` is the AUC over exactly ``auc_window`` (days 0-28), interpolated at day 28 by
    the AUC method (module docstring); Cmax/Tmax/Tlast are those of the whole profile.

    ``car_not_evaluable``: why the subject's kinetics are not evaluable (e.g. "two samples at the same
    time (day 7)"; null otherwise), so that exposure-response names the reason; it is not a
    subject_summary.csv column.

    ``car_auc_window``: the window of ``car_auc_0_28`` in days ("0-28"; another with option
    ``kinetics.auc_window``, with a warning: the column keeps its contract name, review40 B7).

    ``kinetics``: the :func:`car_kinetics` frame when already computed.
    """
    k = kinetics if kinetics is not None else derive_car_kinetics(study, options)
    lo, hi = (options or CarKineticsOptions()).auc_window
    win = f"{day_text(lo)}-{day_text(hi)}"
    if "auc_window_days" in k.columns and k["auc_window_days"].drop_nulls().len():
        win = k["auc_window_days"].drop_nulls()[0]
    if win != "0-28" and k.height:
        warnings.warn(SubjectsWarning(
            f"car_auc_0_28 holds the AUC over days {win} (option kinetics.auc_window), not days 0-28: the column "
            "keeps its name (subject_summary.csv contract); car_auc_window says the window: {subjects}",
            k["subject_id"].unique(maintain_order=True).to_list(), "subject_summary.csv (car_auc_window)"),
            stacklevel=2)
    return study.subjects.select("subject_id").join(
        k.select("subject_id", pl.col("cmax").alias("car_cmax"), pl.col("tmax").alias("car_tmax"),
                 pl.col("auc_window").alias("car_auc_0_28"), pl.lit(win).alias("car_auc_window"),
                 pl.col("tlast").alias("car_tlast"),
                 *[(pl.col(c) if c in k.columns else pl.lit(None, pl.String)).alias(f"car_{c}")
                   for c in ("param", "unit", "not_evaluable")]),  # an empty NCA frame has no param/unit
        on="subject_id", how="left", maintain_order="left")


def _avalc() -> pl.Expr:
    """AVALC of a censored sample in AVALU, the canonical unit: ``<`` and the converted bound
    (``<0.05`` in 10^9/L is ``<50`` cells/uL; ``BLQ`` with an lloq of 50 is ``<50``)."""
    sym = pl.col("value_text").str.extract(r"^\s*(<=|>=|<|>|≤|≥)", 1).replace({"≤": "<=", "≥": ">="})
    bound = pl.col("lloq").cast(pl.String).str.replace(r"\.0$", "")
    return (pl.when(pl.col("value_text").is_not_null() & pl.col("lloq").is_not_null()
                    & (sym.is_not_null() | pl.col("blq")))
            .then(pl.concat_str(sym.fill_null("<"), bound)).otherwise(pl.col("value_text")).alias("AVALC"))


ADPC_COLUMNS = ("STUDYID", "USUBJID", "PARAMCD", "AVAL", "AVALU", "AVALC", "BLQFL", "ADY", "AFRLT", "ARRLT",
                "NFRLT", "DTYPE", "EVIDENCE")


def derive_adpc(study: Study, options: CarKineticsOptions | None = None) -> pl.DataFrame:
    """ADaM-style ADPC: one row per CAR kinetic sample after the first infusion.

    AFRLT = actual time from the first infusion (days), ARRLT = from the most recent infusion at or
    before the sample (that infusion's day, per subject; date-only samples by calendar day under
    ``date_only_samples="calendar_day"``, as AFRLT),
    NFRLT = the nominal (planned) day, taken as the sample's calendar day counted from the infusion's
    calendar day (session 32: was the floor of AFRLT, a day short for a date-only sample after a timed
    infusion, and for 13.999999999999998); DTYPE = "IMPUTED"
    for the concentration of 0 placed at the infusion.
    """
    options = options or CarKineticsOptions()
    # ARRLT on the same rows as AFRLT: each sample joined per subject to its most recent infusion
    # (``_rel``; 0 for the imputed 0), never pasted by row position (review s35 A1)
    first = _profiles(study, CarKineticsOptions(**{**options.__dict__, "time_from": "first"}))
    return first.select(
        pl.lit(study.study_id).alias("STUDYID"), pl.col("subject_id").alias("USUBJID"),
        pl.col("param").alias("PARAMCD"), pl.col("conc").alias("AVAL"), pl.col("unit").alias("AVALU"),
        _avalc(), pl.when(pl.col("blq")).then(pl.lit("Y")).otherwise(None).alias("BLQFL"),
        pl.col("day").alias("ADY"), pl.col("time").alias("AFRLT"), pl.col("_rel").alias("ARRLT"),
        # the sample's calendar day counted from the infusion's calendar day (a date-only sample on
        # day 7 after a 14:00 infusion is 7, not floor(6.42)); rounded first: 13.999999999999998 is 14
        pl.when(pl.col("day").is_null()).then(pl.col("time").round(9).floor())
        .otherwise(pl.col("day").round(9).floor() - (pl.col("day") - pl.col("time")).round(9).floor()).alias("NFRLT"),
        pl.when(pl.col("imputed")).then(pl.lit("IMPUTED")).otherwise(None).alias("DTYPE"),
        pl.col("evidence").alias("EVIDENCE"),
    )


#: ADPP test codes (CDISC PKPARMCD) and the NCA column each comes from
PPTESTCD = {
    "CMAX": ("cmax", "Max Conc"), "TMAX": ("tmax", "Time of CMAX"), "CLST": ("clast.obs", "Last Nonzero Conc"),
    "TLST": ("tlast", "Time of Last Nonzero Conc"), "AUCLST": ("auclast", "AUC to Last Nonzero Conc"),
    "AUCALL": ("aucall", "AUC All"), "AUCIFO": ("aucinf.obs", "AUC Infinity Obs"),
    "AUCPEO": ("aucpext.obs", "AUC %Extrapolation Obs"),
    "AUCINT": ("auc_window", "AUC from T1 to T2"), "LAMZ": ("lambda.z", "Lambda z"),
    "LAMZHL": ("half.life", "Half-Life Lambda z"), "R2ADJ": ("adj.r.squared", "R Squared Adjusted"),
    "LAMZNPT": ("lambda.z.n.points", "Number of Points for Lambda z"),
}


#: the rows behind each ADPP parameter (review40 B4); the others name the whole profile
_PP_EVIDENCE = {"CMAX": "cmax_evidence", "TMAX": "cmax_evidence", "CLST": "tlast_evidence", "TLST": "tlast_evidence",
                "LAMZ": "lambda_z_evidence", "LAMZHL": "lambda_z_evidence", "R2ADJ": "lambda_z_evidence",
                "LAMZNPT": "lambda_z_evidence", "AUCINT": "auc_window_evidence"}


def _evidence_of(code: str, columns: list[str]) -> pl.Expr:
    col = _PP_EVIDENCE.get(code)
    if col is None or col not in columns:
        return pl.col("evidence")
    return pl.when(pl.col(col).list.len() > 0).then(pl.col(col)).otherwise(pl.col("evidence"))


def derive_adpp(study: Study, options: CarKineticsOptions | None = None,
                kinetics: pl.DataFrame | None = None) -> pl.DataFrame:
    """ADaM-style ADPP: one row per subject and PK parameter (CDISC PPTESTCD), with the method.

    ``kinetics``: the :func:`car_kinetics` frame when already computed (with the same options).
    """
    options = options or CarKineticsOptions()
    k = kinetics if kinetics is not None else derive_car_kinetics(study, options)
    lo, hi = options.auc_window
    parts = []
    for code, (col, label) in PPTESTCD.items():
        if col not in k.columns:
            continue
        parts.append(k.select(
            pl.lit(study.study_id).alias("STUDYID"), pl.col("subject_id").alias("USUBJID"),
            pl.col("param").alias("PARAMCD"), pl.lit(code).alias("PPTESTCD"), pl.lit(label).alias("PPTEST"),
            pl.col(col).cast(pl.Float64).alias("AVAL"),
            pl.lit(f"{lo:g}" if code == "AUCINT" else None, dtype=pl.String).alias("PPSTINT"),
            pl.lit(f"{hi:g}" if code == "AUCINT" else None, dtype=pl.String).alias("PPENINT"),
            pl.col("method").alias("METHOD"), _evidence_of(code, k.columns).alias("EVIDENCE"),
        ))
    if not parts:
        return pl.DataFrame()
    return pl.concat(parts).sort("USUBJID", "PPTESTCD")


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
__getattr__ = renamed(__name__, "car_kinetics", "car_profiles", "kinetics_summary")
