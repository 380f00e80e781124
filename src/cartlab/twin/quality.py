"""How far a fitted twin can be trusted: goodness of fit per measured parameter, and whether the
posterior draws resolve the tails of a 90% prediction interval.

* **Fit quality.** The standardised residual of a row (``iwres``: (observed - twin) / the
  observation model's SD, on the log scale for log-normal parameters) has RMS about 1 over a
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
"""

from __future__ import annotations

import math

import polars as pl

__all__ = ["MIN_ESS_INTERVALS", "MISFIT_RMS", "fit_quality", "intervals_reliable", "misfit_text"]

#: RMS standardised residual above which the twin is said not to describe a parameter
MISFIT_RMS = 3.0
#: SIR effective sample size below which the 90% prediction intervals are not resolved
MIN_ESS_INTERVALS = 20.0


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


def intervals_reliable(posterior: str, ess: float) -> bool:
    """Whether the posterior draws resolve a 90% prediction interval (see the module docstring)."""
    return posterior == "mcmc" or (math.isfinite(ess) and ess >= MIN_ESS_INTERVALS)
