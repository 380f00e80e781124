"""Exposure-response: CAR-T expansion (Cmax, AUC0-28) against response and CRS.

For each exposure metric and binary outcome the result gives the group medians, the two-sided
Mann-Whitney U test (``scipy.stats.mannwhitneyu``; exact for small samples without ties, else
the normal approximation, as SciPy chooses with ``method="auto"``) and a logistic regression of the
outcome on log10 exposure (``statsmodels`` Logit, maximum likelihood, Wald 95% CI), reported as the
odds ratio per 10-fold higher exposure. These are the analyses CAR-T kinetic papers report (e.g.
Stein et al. 2019 relate Cmax/AUC0-28 to response; Mueller et al. 2017 to CRS).

Outcomes (from the engines' summary columns): ``responder`` = best response in the ORR categories
of :class:`cartlab.response.best.BestResponseOptions` (CR, CRh, CRi, MLFS, PR), ``crs_grade_ge3`` = ASTCT CRS grade >= 3, ``crs_any`` = grade >= 1.
Exposures <= 0 or missing are left out (and counted).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from cartlab._deprecated import renamed

__all__ = ["OUTCOMES", "derive_exposure_response", "derive_exposure_response_frame", "plot_exposure_response"]

def _orr_categories() -> list[str]:
    from cartlab.response.best import BestResponseOptions

    return list(BestResponseOptions().orr_categories)


OUTCOMES = {
    "responder": (pl.col("best_response").is_in(_orr_categories()),
                  pl.col("best_response").is_not_null() & (pl.col("best_response") != "")),
    "crs_grade_ge3": (pl.col("crs_grade_astct") >= 3, pl.col("crs_grade_astct").is_not_null()),
    "crs_any": (pl.col("crs_grade_astct") >= 1, pl.col("crs_grade_astct").is_not_null()),
}


def derive_exposure_response_frame(study) -> pl.DataFrame:
    """subject_summary columns for exposure-response: car_cmax, car_auc_0_28, best_response, crs_grade_astct."""
    from cartlab.grading.crs import derive_crs_summary
    from cartlab.kinetics.car import derive_kinetics_summary
    from cartlab.response.best import derive_response_summary

    return (derive_kinetics_summary(study)
            .join(derive_response_summary(study), on="subject_id", how="left")
            .join(derive_crs_summary(study).select("subject_id", "crs_grade_astct"), on="subject_id", how="left"))


def _logit(y: np.ndarray, x: np.ndarray) -> dict[str, Any]:
    import statsmodels.api as sm

    if len(set(y.tolist())) < 2 or len(y) < 4:
        return {"or_per_10fold": None, "or_ci_low": None, "or_ci_high": None, "logit_p": None,
                "logit_note": "not fitted: needs both outcomes and at least 4 subjects"}
    lx = np.log10(x)
    if lx[y == 1].min() > lx[y == 0].max() or lx[y == 1].max() < lx[y == 0].min():
        return {"or_per_10fold": None, "or_ci_low": None, "or_ci_high": None, "logit_p": None,
                "logit_note": "not fitted: the exposure separates the outcome groups completely (no finite MLE)"}
    try:
        fit = sm.Logit(y, sm.add_constant(lx)).fit(disp=0)
        if not fit.mle_retvals.get("converged", True):
            raise RuntimeError("the likelihood maximisation did not converge")
    except Exception as exc:  # perfect separation and the like
        return {"or_per_10fold": None, "or_ci_low": None, "or_ci_high": None, "logit_p": None,
                "logit_note": f"not fitted: {type(exc).__name__}: {exc}"}
    b, (lo, hi) = fit.params[1], fit.conf_int()[1]
    return {"or_per_10fold": math.exp(b), "or_ci_low": math.exp(lo), "or_ci_high": math.exp(hi),
            "logit_p": float(fit.pvalues[1]), "logit_note": "maximum likelihood (statsmodels Logit), Wald 95% CI"}


def derive_exposure_response(summary: pl.DataFrame, exposures: Sequence[str] = ("car_cmax", "car_auc_0_28"),
                      outcomes: Sequence[str] = ("responder", "crs_grade_ge3")) -> pl.DataFrame:
    """One row per exposure x outcome: n, medians by group, Mann-Whitney U and p, logistic odds ratio."""
    from scipy.stats import mannwhitneyu

    rows = []
    for out in outcomes:
        if out not in OUTCOMES:
            raise ValueError(f"unknown outcome {out!r}; choose from {sorted(OUTCOMES)}")
        flag, known = OUTCOMES[out]
        for exp in exposures:
            if exp not in summary.columns:
                raise ValueError(f"exposure column {exp!r} not in the frame")
            needed = [c for c in ("best_response", "crs_grade_astct") if c not in summary.columns]
            if needed and ((out == "responder" and "best_response" in needed)
                           or (out != "responder" and "crs_grade_astct" in needed)):
                raise ValueError(f"outcome {out!r} needs column(s) {needed}")
            f = summary.filter(known).with_columns(flag.alias("_y"))
            usable = f.filter(pl.col(exp).is_not_null() & (pl.col(exp) > 0))
            y = usable["_y"].cast(pl.Int64).to_numpy()
            x = usable[exp].to_numpy().astype(float)
            yes, no = x[y == 1], x[y == 0]
            row: dict[str, Any] = {
                "exposure": exp, "outcome": out, "n": len(x), "n_event": int(y.sum()),
                "n_excluded": f.height - usable.height,
                "median_event": float(np.median(yes)) if len(yes) else None,
                "median_no_event": float(np.median(no)) if len(no) else None,
                "mann_whitney_u": None, "mann_whitney_p": None,
            }
            if len(yes) and len(no):
                u = mannwhitneyu(yes, no, alternative="two-sided", method="auto")
                row["mann_whitney_u"], row["mann_whitney_p"] = float(u.statistic), float(u.pvalue)
            row.update(_logit(y, x))
            rows.append(row)
    return pl.DataFrame(rows, infer_schema_length=None)


def plot_exposure_response(summary: pl.DataFrame, exposure: str = "car_cmax", outcome: str = "responder"):
    """Box-and-points figure of log10 exposure by outcome group (matplotlib Figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    flag, known = OUTCOMES[outcome]
    f = summary.filter(known & pl.col(exposure).is_not_null() & (pl.col(exposure) > 0)).with_columns(flag.alias("_y"))
    groups = [np.log10(f.filter(pl.col("_y") == v)[exposure].to_numpy()) for v in (False, True)]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.boxplot(groups, showfliers=False)
    for i, g in enumerate(groups, start=1):
        ax.scatter(np.full(len(g), i) + np.linspace(-0.08, 0.08, len(g)) if len(g) else [], g, s=12, alpha=0.6)
    ax.set_xticks([1, 2], [f"no {outcome} (n={len(groups[0])})", f"{outcome} (n={len(groups[1])})"])
    ax.set_ylabel(f"log10 {exposure}")
    ax.set_title(f"{exposure} by {outcome}")
    fig.tight_layout()
    return fig


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
__getattr__ = renamed(__name__, "exposure_response", "exposure_response_frame")
