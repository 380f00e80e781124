"""How far a fitted twin can be trusted: goodness of fit per measured parameter, and whether the
posterior draws resolve the tails of a 90% prediction interval.

* **Fit quality.** The standardised residual of a row (``iwres``: (observed - twin) / the
  observation model's SD, on the log scale for log-normal parameters; for binomial blast counts the
  quantile residual, :func:`cartlab.twin.fit.binomial_residual`) has RMS about 1 over a
  parameter's rows when the model and its error model describe them. An RMS above
  :data:`MISFIT_RMS` (residuals typically three times the assumed measurement error) means the
  model cannot follow that parameter's course for this subject: its fit, and any forecast that
  depends on it, is not to be trusted. Censored rows have no residual and are counted apart.
* **Interval reliability.** With Laplace + SIR, the 5% and 95% quantiles of a forecast rest on the
  importance draws beyond them: about 0.05 x ESS effective draws each. Below
  :data:`MIN_ESS_INTERVALS` (= 20) fewer than one effective draw lies beyond each bound, and the
  interval collapses towards one draw (on the 500-patient forecast calibration, docs/twin.md, the 30
  patients with ESS < 30 had 90% intervals covering 80% of true peaks, against 86% over all). MCMC
  draws are unweighted and not judged by this rule.
* **Forecasts withheld** (session 36). A forecast quantity rests on the parameters named in
  :data:`FORECAST_DEPENDS`; when the fit-quality rule above says the twin does not describe one of
  them, its point value and intervals are not shown (the table keeps them, with the reason). When
  the intervals are not resolved (ESS rule), the intervals are not shown.
* **A CAR course off the data it was fitted to** (session 36). The mean standardised CARCOPY
  residual up to the forecast day is the twin's bias on the log scale in observation SDs: below
  -:data:`CAR_BIAS_IWRES` the twin's CAR course lies above the measurements (by more than
  exp(3 x 0.56) = 5.4-fold, geometric mean, with the CARCOPY SD 0.56), above +3 below them. The
  same 3 as :data:`MISFIT_RMS`, but signed: a forecast CAR peak far above early values is no
  fault when the twin's course passes through those values (the CAR-T expansion may still be ahead);
  it is when the twin's course already lies far above every value measured at the same days.
"""

from __future__ import annotations

import math

import polars as pl

__all__ = ["CAR_BIAS_IWRES", "FORECAST_DEPENDS", "MIN_ESS_INTERVALS", "MISFIT_RMS", "car_ceiling_text", "fit_quality",
           "intervals_reliable", "misfit_text", "optimiser_message", "residual_bias"]

#: RMS standardised residual above which the twin is said not to describe a parameter
MISFIT_RMS = 3.0
#: SIR effective sample size below which the 90% prediction intervals are not resolved
MIN_ESS_INTERVALS = 20.0
#: |mean standardised CARCOPY residual| beyond which the twin's CAR course is off the data it was fitted
#: to (twin forecast --max-car-bias; the MISFIT_RMS threshold, signed)
CAR_BIAS_IWRES = 3.0
#: forecast quantity -> the measured parameters its value rests on (the latent course it is read from:
#: CAR peak / its day / day 28 from CARCOPY; CRS grade from the daily Tmax, TEMP; the day-28 response
#: from the marrow and blood blasts, binomial rows with a quantile residual since session 37,
#: :func:`cartlab.twin.forecast.outcome_arrays`)
FORECAST_DEPENDS: dict[str, tuple[str, ...]] = {
    "car_cmax": ("CARCOPY",), "car_tmax": ("CARCOPY",), "car_day28": ("CARCOPY",),
    "crs_ge3": ("TEMP",), "response_d28": ("BMBLAST", "PBBLAST")}


def fit_quality(observations: pl.DataFrame) -> pl.DataFrame:
    """One row per fitted parameter (``observations``: a fitted twin's ``observations_``, with
    ``iwres``): rows, rows with a residual, RMS and largest absolute standardised residual, share of
    rows beyond 3, and ``describes`` (RMS <= :data:`MISFIT_RMS`; null without any residual)."""
    schema = {"param": pl.String, "n_rows": pl.UInt32, "n_residuals": pl.UInt32, "rms_iwres": pl.Float64,
              "max_abs_iwres": pl.Float64, "share_abs_iwres_gt_3": pl.Float64, "describes": pl.Boolean}
    if observations.height == 0:
        return pl.DataFrame(schema=schema)
    r = pl.col("iwres")
    out = (observations.group_by("param", maintain_order=True)
           .agg(pl.len().alias("n_rows"), r.count().alias("n_residuals"),
                (r.pow(2).mean()).sqrt().alias("rms_iwres"), r.abs().max().alias("max_abs_iwres"),
                (r.abs() > 3).mean().alias("share_abs_iwres_gt_3")))
    out = out.with_columns(pl.when(pl.col("n_residuals") > 0).then(pl.col("rms_iwres") <= MISFIT_RMS)
                           .alias("describes"))
    return out.sort("param").select(list(schema)).cast(schema)


def misfit_text(quality: pl.DataFrame) -> str | None:
    """"NEUT (RMS standardised residual 27.1 over 15 rows), ..." for the parameters the twin does not
    describe, worst first; ``None`` when it describes every parameter with residuals."""
    bad = quality.filter(pl.col("describes").not_()).sort("rms_iwres", descending=True)
    if bad.height == 0:
        return None
    return ", ".join(f"{p} (RMS standardised residual {r:.1f} over {n} rows)"
                     for p, r, n in bad.select("param", "rms_iwres", "n_residuals").iter_rows())


def car_ceiling_text(observations: pl.DataFrame, vcn: float, genomes_per_ug: float) -> str | None:
    """Review 40 B3: the twin's CARCOPY is VCN x genomes/ug x (CAR-T share of blood white cells), at most
    ``vcn`` x ``genomes_per_ug`` (1.5 x 151,500 = 227,250 copies/ug, VCN fixed and assumed) when every white
    cell were a CAR-T cell. A measured value above it cannot be fitted (the cited CD7 cohort's maximum
    Cmax is 326,483 copies/ug, CD7 §3.1-k): text naming the largest such value and the ceiling, else None."""
    ceiling = float(vcn) * float(genomes_per_ug)
    if "value" not in observations.columns:
        return None
    car = observations.filter((pl.col("param") == "CARCOPY") & (pl.col("value") > ceiling)).sort("value")
    if car.height == 0:
        return None
    top = car.row(-1, named=True)
    return (f"car_ceiling: CARCOPY {top['value']:,.0f} copies/ug on day {top['day']:g} ({car.height} value(s) above) "
            f"exceeds the twin's ceiling {ceiling:,.0f} copies/ug (VCN {vcn:g} copies/cell, assumed, x "
            f"{genomes_per_ug:,.0f} genomes/ug): the twin cannot reach these values, its CAR peak is under-fitted")


def intervals_reliable(posterior: str, ess: float) -> bool:
    """Whether the posterior draws resolve a 90% prediction interval (see the module docstring)."""
    return posterior == "mcmc" or (math.isfinite(ess) and ess >= MIN_ESS_INTERVALS)


def residual_bias(observations: pl.DataFrame, param: str = "CARCOPY") -> tuple[float, int]:
    """Mean standardised residual (``iwres``) of ``param``'s rows with a residual, and their number
    (NaN, 0 without any): negative = the twin's course lies above the measurements."""
    r = observations.filter((pl.col("param") == param) & pl.col("iwres").is_not_null())["iwres"]
    return (float(r.mean()), r.len()) if r.len() else (float("nan"), 0)


#: scipy's L-BFGS-B ``status`` (OptimizeResult.status; scipy/optimize/_lbfgsb_py.py ``warnflag``):
#: 0 success, 1 too many iterations or evaluations, 2 stopped for another reason ("ABNORMAL": its
#: line search found no lower point; "ERROR": bad input)
_LBFGSB_STATUS = {0: "reported success", 1: "stopped at its iteration or evaluation limit",
                  2: "stopped without success"}
_ABNORMAL = ("its line search found no lower point (often finite-difference gradient noise near an optimum, "
             "or a poorly scaled objective)")


def optimiser_message(r) -> str:
    """An L-BFGS-B result (``r``: scipy OptimizeResult) as text a user can read, e.g. "L-BFGS-B stopped
    without success: its line search found no lower point (...) (scipy status 2: ABNORMAL)". scipy >=
    1.15 gives the bare message "ABNORMAL: " for a failed line search, which was shown as
    "ABNORMAL: ;"; the status and the message together say what happened. A fit the optimiser calls
    a success can still be judged not converged (Hessian, bound: :class:`cartlab.twin.fit.TwinModel`)."""
    status = getattr(r, "status", None)
    raw = str(getattr(r, "message", "") or "").strip().rstrip(":").strip()
    what = _LBFGSB_STATUS.get(status, "stopped" if status is None else f"stopped (status {status})")
    if "ABNORMAL" in raw.upper():
        what += f": {_ABNORMAL}"
    code = "" if status is None else f"status {status}: "
    return f"L-BFGS-B {what} (scipy {code}{raw or 'no message'})"
