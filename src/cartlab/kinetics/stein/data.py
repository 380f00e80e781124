"""Data preparation for the Stein fits: a cartlab Study or a plain frame to padded arrays (subjects x
samples, log scale, censoring flags), the dosing of each subject, the rows not used and why; and the
observation and observed-peak frames of a fit."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from cartlab._days import day_text
from cartlab.errors import InputError
from cartlab.kinetics.agents import car_t_infusions, split_dose_gap_expr
from cartlab.kinetics.car import CarKineticsOptions
from cartlab.kinetics.stein.curve import Dosing
from cartlab.kinetics.stein.params import BLQ_METHODS, DOSE_HANDLINGS, MISSING_DOSES, NO_INFUSION

__all__ = ["PEAK_COLUMNS", "observed_peaks", "FIRST_DOSE_NOTE", "SPLIT_DOSE_GAP_DAYS", "SPLIT_DOSE_NOTE",
           "split_dose_note"]

#: the dosing_note of a subject with several infusions under dose_handling='first' contains this
#: (review 41 F5: Stein 2019 had one infusion per patient; applying the model across a re-infusion is
#: an assumption, stated per subject and warned about by the command)
FIRST_DOSE_NOTE = "dose_handling='first' counts time from the first and treats them as one dose"

#: an infusion more than this many days after the previous one is a re-infusion (FIRST_DOSE_NOTE, warned
#: about); closer ones are the fractions of one split dose: the NCA's gap (kinetics.split_dose_gap_days,
#: rule car_kinetics.profile_end), so that both engines read a subject's infusions alike
SPLIT_DOSE_GAP_DAYS: float = CarKineticsOptions.split_dose_gap_days

def split_dose_note(gap_days: float, labelled: bool = False) -> str:
    """The dosing_note of a subject whose infusions are all fractions of one split dose: each within
    ``gap_days`` (the analysis's kinetics.split_dose_gap_days) of the previous one or, ``labelled``, within
    its product's labelled split-dose window (car_t_products.yaml, obe-cel; review45 F1)."""
    return (f"fractions of one split dose (each within {gap_days:g} days of the previous, kinetics.split_dose_gap_days"
            + (", or within the product's labelled split-dose window, car_t_products.yaml" if labelled else "")
            + "): one dose at the first (dose_handling='first')")


#: the dosing_note of a subject whose infusions are all within SPLIT_DOSE_GAP_DAYS of the previous one
SPLIT_DOSE_NOTE = split_dose_note(SPLIT_DOSE_GAP_DAYS)


@dataclass
class _Data:
    ids: list[str]
    t: np.ndarray  # (N, J) days from the first infusion
    logy: np.ndarray  # (N, J) log conc, or log of the censoring limit
    cens: np.ndarray  # (N, J) 0 quantifiable, +1 below the limit, -1 above the limit
    mask: np.ndarray  # (N, J) bool
    dosing: Dosing  # t_toci, t_ster (N,) (inf = none); dose_times, dose_fractions (N, K) or None
    obs: pl.DataFrame  # long: subject_id, time, conc, lloq, blq
    covariates: pl.DataFrame  # subject_id + candidate covariates
    dropped: pl.DataFrame
    notes: dict[str, str] = field(default_factory=dict)  # per subject: how its dosing was read
    # (N, J) the censoring flag as reported (0 quantifiable): differs from ``cens`` under blq='half',
    # whose imputed LLOQ/2 enters the likelihood as a value but is still a BLQ sample (review 41 F3)
    cens_orig: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def quantified(self) -> np.ndarray:
        """(N, J) bool: a used sample reported as quantifiable (not BLQ, whatever ``blq`` imputes)."""
        c = self.cens if self.cens_orig is None else self.cens_orig
        return self.mask & (c == 0)

    def subset(self, idx: Sequence[int]) -> _Data:
        idx = np.asarray(idx)
        ids = [self.ids[i] for i in idx]
        return _Data(
            ids=ids,
            t=self.t[idx], logy=self.logy[idx], cens=self.cens[idx], mask=self.mask[idx],
            dosing=self.dosing[idx],
            obs=self.obs.filter(pl.col("subject_id").is_in(ids)),
            covariates=self.covariates.filter(pl.col("subject_id").is_in(ids)),
            dropped=self.dropped, notes={k: v for k, v in self.notes.items() if k in ids},
            cens_orig=None if self.cens_orig is None else self.cens_orig[idx],
        )


def _first_col(df: pl.DataFrame, names: Sequence[str], what: str, required: bool = True) -> str | None:
    for n in names:
        if n in df.columns:
            return n
    if required:
        raise ValueError(f"data has no {what} column (one of {list(names)})")
    return None


def _is_study(data: Any) -> bool:
    from cartlab.model import Study

    return isinstance(data, Study)


def _from_study(study: Any, param: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(long obs, doses, per-subject covariates/events) from a canonical Study."""
    doses = car_t_infusions(study)  # one CAR-T rule and infusion time (kinetics.agents)
    # dose in cells/kg (absolute cell doses divided by the subject's weight)
    # the weight: subjects.csv, else the last WEIGHT observation on or before day 0 (no screening window:
    # no protocol; review 39 B4, diff1 B5); the covariate weight_kg is the same, weight_source names it
    from cartlab.protocol.dose_inputs import study_weights

    weights = study_weights(study)
    wt = pl.DataFrame({"subject_id": list(weights), "weight_kg": [v[0] for v in weights.values()],
                       "weight_source": [v[1] for v in weights.values()]},
                      schema={"subject_id": pl.String, "weight_kg": pl.Float64, "weight_source": pl.String})
    doses = doses.join(wt.drop("weight_source"), on="subject_id", how="left")
    unit = pl.col("unit").fill_null("").str.to_lowercase().str.replace_all(" ", "")
    doses = doses.select(
        "subject_id", pl.col("day").alias("time"),
        (pl.col("agent").cast(pl.String) if "agent" in doses.columns else pl.lit(None, dtype=pl.String)).alias("_agent"),
        pl.when(unit == "cells/kg").then(pl.col("dose"))
        .when(unit == "cells").then(pl.col("dose") / pl.col("weight_kg"))
        .otherwise(None).alias("dose"),
    )
    first = doses.group_by("subject_id").agg(pl.col("time").min().alias("t0"))
    o = study.observations.filter(pl.col("param") == param)
    cens = pl.col("censor").fill_null("")
    o = o.select(
        "subject_id",
        pl.col("day").alias("time"),
        pl.col("value").alias("conc"),
        pl.col("lloq"),
        pl.coalesce(pl.col("censor_limit"), pl.col("lloq")).alias("limit"),
        pl.when(cens.str.starts_with("<")).then(1).when(cens.str.starts_with(">")).then(-1)
        .otherwise(0).alias("cens"),
        *_provenance(study.observations),
    )
    o = o.join(first, on="subject_id", how="left").with_columns(
        (pl.col("time") - pl.col("t0").fill_null(0.0)).alias("time")
    ).drop("t0")
    doses = doses.join(first, on="subject_id").with_columns((pl.col("time") - pl.col("t0")).alias("time")).drop("t0")
    iv = study.interventions.join(first, on="subject_id", how="left").with_columns(
        (pl.col("start_day") - pl.col("t0").fill_null(0.0)).alias("start")
    )
    cat = pl.col("category").fill_null("").str.to_lowercase()
    agent = pl.col("agent").fill_null("").str.to_lowercase()
    toci = iv.filter((cat == "tocilizumab") | agent.str.contains("tocilizumab")).group_by("subject_id").agg(
        pl.col("start").min().alias("t_toci"))
    ster = iv.filter(cat.is_in(["corticosteroid", "steroid", "corticosteroids"])).group_by("subject_id").agg(
        pl.col("start").min().alias("t_ster"))
    subj = study.subjects.select(
        [c for c in ("subject_id", "sex", "age_years", "height_cm", "disease", "target")
         if c in study.subjects.columns]
    ).join(wt, on="subject_id", how="left")  # the weight the dose/kg used, and its source (review 39 diff1 B2)
    dsum = doses.group_by("subject_id").agg(
        pl.when(pl.col("dose").null_count() == 0).then(pl.col("dose").sum()).otherwise(None).alias("dose_total"),
        pl.len().alias("n_infusions"))
    cov = (
        subj.join(dsum, on="subject_id", how="left")
        .join(toci, on="subject_id", how="left")
        .join(ster, on="subject_id", how="left")
        .with_columns(
            pl.col("dose_total").log().alias("log_dose"),
            pl.col("t_toci").is_not_null().cast(pl.Int64).alias("toci"),
            pl.col("t_ster").is_not_null().cast(pl.Int64).alias("steroid"),
        )
    )
    return o, doses, cov


_PROVENANCE = {"source": pl.String, "src_file": pl.String, "src_row": pl.Int64}


def _provenance(df: pl.DataFrame) -> list[pl.Expr]:
    """Provenance columns carried from input rows to fitted observations (null when absent)."""
    return [pl.col(c).cast(t) if c in df.columns else pl.lit(None, dtype=t).alias(c) for c, t in _PROVENANCE.items()]


def _from_frame(df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(long obs, per-subject extra columns) from a plain frame."""
    sid = _first_col(df, ("subject_id", "subject", "id"), "subject")
    tcol = _first_col(df, ("time", "day", "t"), "time")
    ccol = _first_col(df, ("conc", "value", "dv"), "concentration")
    lcol = _first_col(df, ("lloq",), "lloq", required=False)
    bcol = _first_col(df, ("blq",), "blq", required=False)
    scol = _first_col(df, ("censor",), "censor", required=False)
    lim = _first_col(df, ("censor_limit",), "limit", required=False)
    lloq = pl.col(lcol).cast(pl.Float64) if lcol else pl.lit(None, dtype=pl.Float64)
    if bcol:
        cens = pl.when(pl.col(bcol).cast(pl.Boolean).fill_null(False)).then(1).otherwise(0)
    elif scol:
        c = pl.col(scol).fill_null("")
        cens = pl.when(c.str.starts_with("<")).then(1).when(c.str.starts_with(">")).then(-1).otherwise(0)
    else:
        cens = pl.lit(0)
    limit = pl.coalesce(pl.col(lim).cast(pl.Float64), lloq) if lim else lloq
    o = df.select(
        pl.col(sid).cast(pl.String).alias("subject_id"),
        pl.col(tcol).cast(pl.Float64).alias("time"),
        pl.col(ccol).cast(pl.Float64).alias("conc"),
        lloq.alias("lloq"),
        limit.alias("limit"),
        cens.cast(pl.Int64).alias("cens"),
        *_provenance(df),
    )
    known = {sid, tcol, ccol, lcol, bcol, scol, lim, "pred", "value_text", *_PROVENANCE}
    extra_cols = [c for c in df.columns if c not in known]
    extra = (
        df.with_columns(pl.col(sid).cast(pl.String).alias("subject_id"))
        .group_by("subject_id", maintain_order=True)
        .agg([pl.col(c).drop_nulls().first() for c in extra_cols if c != "subject_id"])
    )
    return o, extra


def _prepare(
    data: Any,
    *,
    doses: pl.DataFrame | None = None,
    covariates: pl.DataFrame | None = None,
    param: str = "CARCOPY",
    blq: str = "m3",
    blq_below_lloq: bool = True,
    dose_handling: str = "first",
    missing_dose: str = "error",
    no_infusion: str = "drop",
    split_dose_gap_days: float = SPLIT_DOSE_GAP_DAYS,
) -> _Data:
    if blq not in BLQ_METHODS:
        raise ValueError(f"blq must be one of {', '.join(map(repr, BLQ_METHODS))}")
    if dose_handling not in DOSE_HANDLINGS:
        raise ValueError(f"dose_handling must be one of {', '.join(map(repr, DOSE_HANDLINGS))}")
    if missing_dose not in MISSING_DOSES:
        raise ValueError(f"missing_dose must be one of {', '.join(map(repr, MISSING_DOSES))}")
    if no_infusion not in NO_INFUSION:
        raise ValueError(f"no_infusion must be one of {', '.join(map(repr, NO_INFUSION))}")
    notes: dict[str, str] = {}
    if _is_study(data):
        o, dose_df, cov = _from_study(data, param)
        # a study's day 0 is the CAR-T infusion day by the study format: its time origin is known
        o = o.with_columns(pl.lit(False).alias("_noinf"))
        dose_df = dose_df.with_columns(pl.lit(None, dtype=pl.Int64).alias("_row"))
    else:
        if not isinstance(data, pl.DataFrame):
            data = pl.DataFrame(data) if not hasattr(data, "to_numpy") else pl.from_pandas(data)
        o, cov = _from_frame(data)
        dose_df = None
        o = o.with_columns(pl.lit(False).alias("_noinf"))
        if doses is not None:
            dsid = _first_col(doses, ("subject_id", "subject", "id"), "subject")
            dt = _first_col(doses, ("time", "day"), "time")
            dd = _first_col(doses, ("dose",), "dose", required=False)
            dose_df = doses.with_row_index("_row", offset=1).select(
                pl.col("_row").cast(pl.Int64),
                pl.col(dsid).cast(pl.String).alias("subject_id"),
                pl.col(dt).cast(pl.Float64).alias("time"),
                (pl.col(dd).cast(pl.Float64) if dd else pl.lit(1.0)).alias("dose"),
            )
            t0 = dose_df.group_by("subject_id").agg(pl.col("time").min().alias("t0"))
            o = o.join(t0, on="subject_id", how="left").with_columns(
                (pl.col("time") - pl.col("t0").fill_null(0.0)).alias("time"),
                (pl.col("t0").is_null() & pl.lit(no_infusion == "drop")).alias("_noinf")).drop("t0")
            for sid in o.filter(pl.col("_noinf").not_() & pl.col("subject_id").is_in(t0["subject_id"].implode())
                                .not_())["subject_id"].unique(maintain_order=True).to_list():
                notes[sid] = "no CAR-T infusion row: times kept as given (no_infusion='as_is')"
            dose_df = dose_df.join(t0, on="subject_id").with_columns(
                (pl.col("time") - pl.col("t0")).alias("time")).drop("t0")
    if covariates is not None:
        cov_in = covariates.with_columns(pl.col("subject_id").cast(pl.String))
        keep = [c for c in cov.columns if c == "subject_id" or c not in cov_in.columns]
        cov = cov.select(keep).join(cov_in, on="subject_id", how="full", coalesce=True)

    # BLQ classification
    below = ((pl.col("cens") == 0) & pl.lit(blq_below_lloq) & pl.col("conc").is_not_null()
             & pl.col("lloq").is_not_null() & (pl.col("conc") < pl.col("lloq")))
    o = o.with_columns(
        pl.when(below).then(pl.format("reported value {} below its LLOQ {}: censored at the LLOQ "
                                      "(blq_below_lloq=True)", pl.col("conc"), pl.col("lloq")))
        .when(pl.col("cens") == 1).then(pl.format("reported as below {}", pl.col("limit")))
        .when(pl.col("cens") == -1).then(pl.format("reported as above {}", pl.col("limit")))
        .otherwise(None).alias("blq_reason"),
        below.alias("_below"),
    ).with_columns(
        pl.when(pl.col("_below")).then(1).otherwise(pl.col("cens")).alias("cens")
    ).with_columns(
        pl.when(pl.col("cens") == 0).then(pl.col("conc")).otherwise(pl.col("limit")).alias("y")
    )
    reason = (
        pl.when(pl.col("_noinf")).then(pl.lit("no CAR-T infusion row: time origin unknown (no_infusion='drop')"))
        .when(pl.col("time").is_null()).then(pl.lit("no time"))
        .when(pl.col("time") < 0).then(pl.lit("before the first infusion"))
        .when(pl.col("y").is_null() & (pl.col("cens") != 0)).then(pl.lit("censored without a limit"))
        .when(pl.col("y").is_null()).then(pl.lit("no value"))
        .when((pl.col("y") <= 0) & pl.col("lloq").is_not_null())
        .then(pl.lit("value <= 0 (not treated as BLQ: blq_below_lloq=False)"))
        .when(pl.col("y") <= 0).then(pl.lit("value <= 0 without an LLOQ"))
        .when((pl.col("cens") != 0) & pl.lit(blq == "drop")).then(pl.lit("BLQ dropped (blq='drop')"))
        .otherwise(pl.lit(None, dtype=pl.String))
        .alias("reason")
    )
    o = o.with_columns(reason)
    dropped = o.filter(pl.col("reason").is_not_null()).select("subject_id", "time", "conc", "lloq", "reason",
                                                               *_PROVENANCE)
    o = o.filter(pl.col("reason").is_null()).drop("reason", "_noinf")
    if blq == "half":
        o = o.with_columns(
            pl.when(pl.col("cens") == 1).then(pl.col("y") / 2).otherwise(pl.col("y")).alias("y"),
            pl.lit(0).alias("cens_m"),
        ).with_columns(pl.when(pl.col("cens") == -1).then(-1).otherwise(0).alias("cens_m"))
    else:
        o = o.with_columns(pl.col("cens").alias("cens_m"))
    o = o.sort("subject_id", "time", maintain_order=True)
    ids = o["subject_id"].unique(maintain_order=True).to_list()
    if not ids:
        raise ValueError(f"no usable {param} observations")
    # subjects sorted by subject_id (the rows above are sorted by subject_id, time)
    counts = o.group_by("subject_id", maintain_order=True).len()
    nmax = int(counts["len"].max())
    n = len(ids)
    pos = {s: i for i, s in enumerate(ids)}
    t = np.ones((n, nmax))
    logy = np.zeros((n, nmax))
    cens = np.zeros((n, nmax), dtype=np.int8)
    cens_orig = np.zeros((n, nmax), dtype=np.int8)
    mask = np.zeros((n, nmax), dtype=bool)
    fill = np.zeros(n, dtype=int)
    for sid, ti, yi, ci, co in zip(o["subject_id"].to_list(), o["time"].to_numpy(), o["y"].to_numpy(),
                                    o["cens_m"].to_numpy(), o["cens"].to_numpy()):
        i = pos[sid]
        j = fill[i]
        t[i, j], logy[i, j], cens[i, j], cens_orig[i, j], mask[i, j] = ti, math.log(yi), ci, co, True
        fill[i] += 1
    cov = pl.DataFrame({"subject_id": ids}).join(cov, on="subject_id", how="left")
    tt = np.full(n, np.inf)
    ts = np.full(n, np.inf)
    for name, arr in (("t_toci", tt), ("t_ster", ts)):
        if name in cov.columns:
            v = cov[name].cast(pl.Float64).to_numpy()
            arr[:] = np.where(np.isfinite(v), v, np.inf)
    dose_t = dose_w = None
    if dose_handling == "first" and dose_df is not None and dose_df.height:
        # several infusions read as one dose at the first: said per subject (review 41 F5). Only an infusion
        # more than SPLIT_DOSE_GAP_DAYS after the previous one (a re-infusion, as the NCA's profile_end reads
        # it) gets FIRST_DOSE_NOTE, which the command warns about; the fractions of a split dose (days 0, 2)
        # are one dose as intended, noted without it (review41_diff2 F11)
        # the gap is the analysis's (split_dose_gap_days), widened for a product with a labelled split dose
        agent = pl.col("_agent") if "_agent" in dose_df.columns else pl.lit(None, dtype=pl.String)
        g = (dose_df.sort("time").with_columns(split_dose_gap_expr(agent, split_dose_gap_days).alias("_max_gap"))
             .group_by("subject_id", maintain_order=True).agg("time", "_max_gap"))
        for sid, times, gaps in g.iter_rows():
            if sid in pos and len(times) > 1:
                days = ", ".join(day_text(x) for x in times)
                if any(b - a > m for a, b, m in zip(times, times[1:], gaps[1:])):
                    note = f"{len(times)} infusions (days {days} from the first); {FIRST_DOSE_NOTE}"
                else:
                    labelled = any(b - a > split_dose_gap_days for a, b in zip(times, times[1:]))
                    note = (f"{len(times)} infusions (days {days} from the first); "
                            f"{split_dose_note(split_dose_gap_days, labelled)}")
                notes[sid] = "; ".join(x for x in (notes.get(sid), note) if x)
    if dose_handling == "superpose" and dose_df is not None and dose_df.height:
        g = dose_df.sort("time").group_by("subject_id", maintain_order=True).agg("time", "dose", "_row")
        gm = {r[0]: (r[1], r[2], r[3]) for r in g.iter_rows()}
        kmax = max((len(v[0]) for v in gm.values()), default=1)
        dose_t = np.zeros((n, kmax))
        dose_w = np.zeros((n, kmax))
        for s, i in pos.items():
            times, dd, rows = gm.get(s, ([0.0], [1.0], [None]))
            miss = [k for k, x in enumerate(dd) if x is None or not np.isfinite(x)]
            if miss:
                dd, times = _missing_dose(s, times, dd, rows, miss, missing_dose, notes)
            dose_t[i, : len(times)] = times
            dose_w[i, : len(times)] = np.asarray(dd) / np.sum(dd)
    obs = o.select(
        # a reported value censored by blq_below_lloq keeps its measured value beside the flag (review 39 B4)
        "subject_id", "time",
        pl.when((pl.col("cens") == 0) | pl.col("_below")).then(pl.col("conc")).otherwise(None).alias("conc"),
        "lloq", pl.col("limit"), (pl.col("cens") != 0).alias("blq"), "blq_reason", *_PROVENANCE,
    )
    return _Data(ids, t, logy, cens, mask, Dosing(tt, ts, dose_t, dose_w), obs, cov, dropped,
                 {k: v for k, v in notes.items() if k in pos}, cens_orig)


def _missing_dose(s: str, times: list, dd: list, rows: list, miss: list[int], how: str,
                  notes: dict[str, str]) -> tuple[list, list]:
    """A subject's infusions when some dose is unknown (``superpose``): error (default), equal
    fractions, or only the first infusion (``dose_handling="first"`` for that subject)."""
    where = ", ".join(f"doses row {rows[k]}, column dose (day {day_text(times[k])})" if rows[k] is not None else
                      f"study doses, day {day_text(times[k])}, column dose (or weight_kg for a dose in cells)"
                      for k in miss)
    if how == "error":
        raise InputError(f"subject {s}: infusion dose unknown ({where}); dose_handling='superpose' needs every "
                         "infusion's dose: give it, or missing_dose='equal' / 'first' (--missing-dose)")
    if how == "equal":
        notes[s] = f"dose unknown ({where}): equal fractions for its {len(dd)} infusions (missing_dose='equal')"
        return [1.0] * len(dd), times
    notes[s] = (f"dose unknown ({where}): only the first infusion used, dose_handling='first' for this subject "
                "(missing_dose='first')")
    return [1.0] + [0.0] * (len(dd) - 1), times


def _observations_frame(d: _Data, log_ipred: np.ndarray, sigma: np.ndarray,
                        log_pred: np.ndarray | None = None) -> pl.DataFrame:
    """Every used observation with ipred (and pred), iwres on the log scale and its provenance."""
    m = d.mask
    sig = np.asarray(sigma, dtype=float)
    sig = np.broadcast_to(sig[:, None] if sig.ndim else sig, m.shape)[m]
    # BLQ rows have no residual, also when blq='half' imputed a value for the likelihood (review 41 F3)
    res = np.where(d.quantified[m], (d.logy[m] - log_ipred[m]) / sig, np.nan)
    out = d.obs.with_columns(pl.Series("ipred", np.exp(log_ipred[m])),
                             pl.Series("iwres", res).fill_nan(None))
    if log_pred is not None:
        out = out.with_columns(pl.Series("pred", np.exp(log_pred[m])))
    # ``limit``: what a BLQ row is censored at (its "<x" bound, else its lloq): the value the fit used;
    # ``conc`` of a BLQ row is its measured value when one was reported (blq_below_lloq), else empty
    cols = ["subject_id", "time", "conc", "lloq", "blq", "blq_reason", "limit", "ipred", "iwres"] + (["pred"] if log_pred is not None else [])
    return out.select(*cols, *_PROVENANCE)


#: what the peak columns of ``stein_subjects.csv`` mean (also written into ``stein_fit.json``)
PEAK_COLUMNS = {
    "stein_cmax": "peak of the fitted curve: the apex where the constant-rate expansion meets the "
                "contraction; it can lie between two samples and above every observation when growth slows "
                "before the peak (docs/kinetics/stein_seed_peak.md); model-based, not the NCA car_cmax of "
                  "subject_summary.csv; null when the fitted peak lies after the last sample (peak_window='observed')",
    "stein_tmax": "its time (days from the first infusion)",
    "stein_auc_0_28": "exact AUC0-28 of the fitted curve (not the NCA car_auc_0_28)",
    "peak_extrapolated": "the fitted peak lies after the subject's last sample (t_last_sample)",
    "obs_cmax": "highest quantifiable observation used in the fit",
    "obs_tmax": "its time (the first one when tied)",
    "ipred_at_obs_tmax": "the fitted curve at obs_tmax",
    "stein_cmax_over_obs": "stein_cmax / obs_cmax",
}


def observed_peaks(obs: pl.DataFrame) -> pl.DataFrame:
    """Per subject of a fit's observations frame (``subject_id, time, conc, blq, ipred``): the
    highest quantifiable observation, its time and the fitted curve there (:data:`PEAK_COLUMNS`)."""
    q = obs.filter(~pl.col("blq") & pl.col("conc").is_not_null()).sort("subject_id", "time")
    top = pl.col("conc") == pl.col("conc").max()
    return q.group_by("subject_id", maintain_order=True).agg(
        pl.col("conc").max().alias("obs_cmax"),
        pl.col("time").filter(top).first().alias("obs_tmax"),
        pl.col("ipred").filter(top).first().alias("ipred_at_obs_tmax"),
    )


def _with_observed_peaks(subjects: pl.DataFrame, obs: pl.DataFrame) -> pl.DataFrame:
    """``subjects`` with the observed-peak columns after ``stein_auc_0_28``."""
    out = subjects.join(observed_peaks(obs), on="subject_id", how="left", maintain_order="left").with_columns(
        (pl.col("stein_cmax") / pl.col("obs_cmax")).alias("stein_cmax_over_obs"))
    new = ["obs_cmax", "obs_tmax", "ipred_at_obs_tmax", "stein_cmax_over_obs"]
    cols = list(subjects.columns)
    at = cols.index("stein_auc_0_28") + 1 if "stein_auc_0_28" in cols else len(cols)
    return out.select(cols[:at] + new + cols[at:])
