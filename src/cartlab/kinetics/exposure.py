"""Exposure-response: CAR-T expansion (Cmax, AUC0-28) against response and CRS.

For each exposure metric and binary outcome the result gives the group medians, the two-sided
Mann-Whitney U test (``scipy.stats.mannwhitneyu``; exact for small samples without ties, else
the normal approximation, as SciPy chooses with ``method="auto"``) and a logistic regression of the
outcome on log10 exposure (``statsmodels`` Logit, maximum likelihood, Wald 95% CI), reported as the
odds ratio per 10-fold higher exposure. These are the analyses CAR-T kinetic papers report (e.g.
Stein et al. 2019 relate Cmax/AUC0-28 to response; Mueller et al. 2017 to CRS).

Outcomes (from the engines' summary columns): ``responder`` = the analysis's own responder flag,
best_response.csv ``responder`` (best response in ``best_response.orr_categories``, so ``--set
best_response.orr_categories=[CR]`` changes both; one definition, review40 B8); only a frame without
a ``responder`` column falls back to the default ORR categories of
:class:`cartlab.response.best.BestResponseOptions` (CR, CRh, CRi, MLFS, PR). ``crs_grade_ge3`` = ASTCT
CRS grade >= 3, ``crs_any`` = grade >= 1 (a grade range, ``crs_grade_astct`` to
``crs_grade_astct_max``, that straddles the threshold leaves the outcome unknown: excluded, named).
``cartlab analyze`` computes ``responder`` and ``crs_grade_ge3``; ``crs_any`` is reachable from Python
(``derive_exposure_response(..., outcomes=("crs_any",))``).
A best response of ``NE`` (not evaluable: no post-infusion response assessment) is an unknown
outcome here, not a non-response: the subject is excluded from the responder rows and named (missing
is not negative). This differs on purpose from the ORR of :func:`cartlab.response.best.orr`, where NE
counts in the intention-to-treat denominator as a non-responder.

Sparse data: the logistic fit has one variable (log10 exposure), so its events per variable (EPV)
is the size of the smaller outcome group of the fit (``n_logit`` subjects; events or non-events,
whichever is fewer: van Smeden et al., BMC Med Res Methodol 2016;16:163). Below ``min_epv`` (default
10, the rule of Peduzzi et al., J Clin Epidemiol 1996;49:1373-1379: below 10 EPV the coefficients are
biased both ways and the Wald CI does not keep its coverage) the odds ratio is still given but
``logit_sparse`` is true, ``logit_note`` says why it is unreliable, and a
:class:`~cartlab.errors.CartlabWarning` names the rows (``min_epv=0`` turns the check off). Complete
separation is not fitted at all (no finite MLE).

Who is counted:

* An exposure of **0** is a non-expander (every CAR-T sample below the LLOQ: Cmax and AUC0-28 are 0).
  Zero is informative, so these subjects are in the group medians and the Mann-Whitney test (a
  rank test: 0 is the lowest rank); only the logistic regression, which takes log10 of the
  exposure, leaves them out (``n_zero``, ``n_logit`` and ``logit_note`` say so).
* A subject is **excluded** from a row when its outcome is unknown (best response NE or empty, no CRS
  grade, a CRS grade range across the threshold) or its exposure is missing (no CAR-T samples, AUC not
  computable, kinetics not evaluable — e.g. "CAR-T kinetics not evaluable: two samples at the same time
  (day 7)", from ``car_not_evaluable`` of the kinetics summary) or negative. Every
  excluded subject is named with its reason in ``excluded`` (``n_excluded`` counts them), and a
  :class:`~cartlab.errors.CartlabWarning` names them once per call (``cartlab analyze`` records it
  in ``analysis.json``); inside :func:`cartlab.errors.subject_ids_in_warnings` ``(False)`` (``cartlab report``) the
  warning gives their count per reason and points to the report's ``tables/cohort_exposure_stats.csv``
  (and analyze's ``exposure_response.csv``) instead.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from cartlab._deprecated import renamed
from cartlab.criteria import CriteriaOptions
from cartlab.errors import DEBUG_NAMES, names_subjects, subject_ids_in_warnings

__all__ = ["OUTCOMES", "crs_at_least", "derive_exposure_response", "derive_exposure_response_frame", "left_out_message",
           "plot_exposure_response", "subject_ids_in_warnings"]

def left_out_message(left_out: dict[str, list[str]]) -> str:
    """The warning about the subjects left out of exposure-response rows (``left_out``: reason -> ids):
    the ids (at most 20 per reason) when :func:`cartlab.errors.subject_ids_in_warnings` allows it (the
    default), else the count per reason and a pointer to the report's table naming them."""
    return _left_out_named(left_out) if names_subjects() else _left_out_counted(left_out)


def _left_out_named(left_out: dict[str, list[str]]) -> str:
    parts = [f"{why}: {', '.join(ids[:20])}" + (f" (+{len(ids) - 20} more)" if len(ids) > 20 else "")
             for why, ids in left_out.items()]
    return "subjects left out (exposure_response.csv, column excluded) -- " + " | ".join(parts)


def _left_out_counted(left_out: dict[str, list[str]]) -> str:
    # per outcome row, never a union over rows (review 39 C3: "12 subject(s) left out" read as all 12)
    parts = [f"{why}: {len(dict.fromkeys(ids))}" for why, ids in left_out.items()]
    return ("subjects left out, per outcome row -- " + " | ".join(parts) + " -- named in the report's "
            "tables/cohort_exposure_stats.csv, column excluded (and cartlab analyze's exposure_response.csv); "
            f"{DEBUG_NAMES}")


def _orr_categories() -> list[str]:
    from cartlab.response.best import BestResponseOptions

    return list(BestResponseOptions().orr_categories)


def crs_at_least(t: int) -> tuple[pl.Expr, pl.Expr]:
    """ASTCT CRS grade >= ``t``, known only when the grade range settles it: the grade itself (the
    lowest possible) reaches ``t``, or its maximum ``crs_grade_astct_max`` (an input missing; absent =
    the grade) stays below ``t``. A grade 2 that could be 3 is not "no grade >= 3". With events.csv
    not given the lowest possible is ``crs_grade_astct_min`` (a fever that could be an infection's):
    a grade 3 whose minimum is 1 is not "grade >= 3" either.

    Returns ``(flag, known)`` over ``crs_grade_astct``, ``crs_grade_astct_min`` and
    ``crs_grade_astct_max`` (all three columns must exist; null = not given). The report's exposure
    view uses the same expressions (review41_diff2 F3)."""
    lo = pl.coalesce(pl.col("crs_grade_astct_min"), pl.col("crs_grade_astct"))
    hi = pl.coalesce(pl.col("crs_grade_astct_max"), lo)
    return lo >= t, lo.is_not_null() & ((lo >= t) | (hi < t))


#: best responses that are no outcome: NE (not evaluable, e.g. no post-infusion marrow) and empty
_NO_RESPONSE = ("", "NE")

OUTCOMES = {
    "responder": (pl.col("best_response").is_in(_orr_categories()),
                  pl.col("best_response").is_not_null()
                  & ~pl.col("best_response").cast(pl.String).str.strip_chars().str.to_uppercase().is_in(_NO_RESPONSE)),
    "crs_grade_ge3": crs_at_least(3),
    "crs_any": crs_at_least(1),
}


def derive_exposure_response_frame(study) -> pl.DataFrame:
    """subject_summary columns for exposure-response: car_cmax, car_auc_0_28, best_response, crs_grade_astct."""
    from cartlab.grading.crs import derive_crs_summary
    from cartlab.kinetics.car import derive_kinetics_summary
    from cartlab.response.best import derive_response_summary

    return (derive_kinetics_summary(study)
            .join(derive_response_summary(study), on="subject_id", how="left")
            .join(derive_crs_summary(study).select("subject_id", "crs_grade_astct", "crs_grade_astct_max",
                                                   "crs_grade_astct_min"),
                  on="subject_id", how="left"))


#: events per variable below which a logistic odds ratio is flagged as unreliable (Peduzzi et al. 1996)
MIN_EPV = 10


class ExposureOptions(CriteriaOptions):
    """* ``min_epv`` (10): a logistic odds ratio fitted on fewer events (or non-events, whichever is
      fewer) per variable is flagged ``logit_sparse`` with a note and a warning (Peduzzi et al., J Clin
      Epidemiol 1996;49:1373; disputed by van Smeden et al., BMC Med Res Methodol 2016;16:163, hence a
      flag, not a refusal); 0 turns the check off. ``--set exposure.min_epv=5``."""

    min_epv: int = MIN_EPV

    def __post_init__(self) -> None:
        if int(self.min_epv) != self.min_epv or self.min_epv < 0:
            raise ValueError(f"min_epv must be a whole number >= 0, not {self.min_epv!r}")


def _sparse(y: np.ndarray, min_epv: int) -> str | None:
    """The note for a fit with fewer than ``min_epv`` events per variable (one variable: the smaller
    of the two outcome groups), else None."""
    events, non_events = int(y.sum()), int(len(y) - y.sum())
    if min_epv <= 0 or min(events, non_events) >= min_epv:
        return None
    return (f"sparse data: {events} event(s) and {non_events} non-event(s) in the fit, fewer than {min_epv} "
            "events per variable (Peduzzi et al. 1996): the odds ratio and its CI are unreliable (small-sample "
            "bias; read the Mann-Whitney test and the medians instead)")


def _logit(y: np.ndarray, x: np.ndarray) -> dict[str, Any]:
    import statsmodels.api as sm

    if len(set(y.tolist())) < 2 or len(y) < 4:
        return {"or_per_10fold": None, "or_ci_low": None, "or_ci_high": None, "logit_p": None,
                "logit_note": "not fitted: needs both outcomes and at least 4 subjects"}
    lx = np.log10(x)
    if lx[y == 1].min() > lx[y == 0].max() or lx[y == 1].max() < lx[y == 0].min():
        return {"or_per_10fold": None, "or_ci_low": None, "or_ci_high": None, "logit_p": None,
                "logit_note": "not fitted: the exposure separates the outcome groups completely (no finite MLE)"}
    # quasi-complete separation (review s38 B4): the groups overlap only in ties at one value, so the MLE is
    # still infinite (Albert & Anderson 1984); statsmodels would fail to converge and warn on stderr
    for top, bottom in ((lx[y == 0].max(), lx[y == 1].min()), (lx[y == 1].max(), lx[y == 0].min())):
        if top == bottom:
            tie = float(10 ** top)
            return {"or_per_10fold": None, "or_ci_low": None, "or_ci_high": None, "logit_p": None,
                    "logit_note": f"not fitted: the exposure separates the outcome groups except for ties at "
                                  f"{tie:.6g} (quasi-complete separation: no finite MLE)"}
    try:
        with warnings.catch_warnings():  # a failed fit is reported in the note, not on stderr
            warnings.simplefilter("ignore")
            fit = sm.Logit(y, sm.add_constant(lx)).fit(disp=0)
        if not fit.mle_retvals.get("converged", True):
            return {"or_per_10fold": None, "or_ci_low": None, "or_ci_high": None, "logit_p": None,
                    "logit_note": "not fitted: the likelihood maximisation did not converge (near separation of "
                                  "the outcome groups by the exposure)"}
    except Exception as exc:  # a singular design and the like
        return {"or_per_10fold": None, "or_ci_low": None, "or_ci_high": None, "logit_p": None,
                "logit_note": f"not fitted: {type(exc).__name__}: {exc}"}
    b, (lo, hi) = fit.params[1], fit.conf_int()[1]
    return {"or_per_10fold": math.exp(b), "or_ci_low": math.exp(lo), "or_ci_high": math.exp(hi),
            "logit_p": float(fit.pvalues[1]), "logit_note": "maximum likelihood (statsmodels Logit), Wald 95% CI"}


def exposure_unit(exposure: str, conc_unit: str | None) -> str | None:
    """The unit of one exposure: the concentration unit for a Cmax, the concentration unit times day
    for an AUC ("copies/ug gDNA × day", as the subject page writes it; an AUC integrates the
    concentration over days from the first infusion: [conc] x [time], pint ``unit * day``)."""
    if conc_unit is None:
        return None
    return f"{conc_unit} × day" if exposure.startswith("car_auc") else conc_unit


def _missing_reason(summary: pl.DataFrame, exp: str) -> pl.Expr:
    """Why ``exp`` is missing or unusable for a subject (null when it is usable)."""
    col = pl.col(exp)
    no_kinetics = pl.lit(True)
    for c in ("car_cmax", "car_auc_0_28"):
        if c in summary.columns:
            no_kinetics = no_kinetics & pl.col(c).is_null()
    why_not = pl.col("car_not_evaluable") if "car_not_evaluable" in summary.columns else pl.lit(None, pl.String)
    return (pl.when(col.is_null() & why_not.is_not_null())
            .then(pl.format("CAR-T kinetics not evaluable: {}", why_not))
            .when(col.is_null() & no_kinetics)
            # review 40 C4: also a subject not infused (no CAR-T dose, no CAR-T measured), which the
            # summary cannot tell apart: both named, not "after the infusion"
            .then(pl.lit("no CAR-T kinetics: exposure empty (no CAR-T profile: not infused - no CAR-T dose recorded - "
                         "or no CARCOPY/CARCELL sample after the CAR-T infusion)"))
            .when(col.is_null()).then(pl.lit(f"{exp} empty: not computable (see car_kinetics.csv)"))
            .when(col.is_nan()).then(pl.lit(f"{exp} is not a number"))
            .when(col < 0).then(pl.lit(f"{exp} < 0 (invalid)")))


def _grouped(names: list[str], whys: list[str]) -> str:
    """ "reason: ID, ID; reason: ID" - every subject named under each of its reasons (a row's reasons
    are joined by "; "; a cohort's cell stays one line per reason, not one per subject, and every
    reason has its ids: session 42, review 41 report F9)."""
    by: dict[str, list[str]] = {}
    for sid, joined in zip(names, whys):
        for why in joined.split("; "):
            if sid not in by.setdefault(why, []):
                by[why].append(sid)
    return "; ".join(f"{why}: {', '.join(ids)}" for why, ids in by.items())


_UNKNOWN = {"responder": "best_response NE or empty (not evaluable: no post-infusion response assessment, "
                         "or no response criteria for the disease)",
            "crs_grade_ge3": "crs_grade_astct empty (no CRS grade)", "crs_any": "crs_grade_astct empty (no CRS grade)"}
_THRESHOLD = {"crs_grade_ge3": 3, "crs_any": 1}


def _unknown_reason(out: str) -> pl.Expr:
    """Why the outcome ``out`` is unknown for a row (the engine's reason for an empty value; for a CRS
    grade range that straddles the threshold, the range)."""
    if out not in _THRESHOLD:
        return pl.lit(_UNKNOWN[out])
    lo = pl.coalesce(pl.col("crs_grade_astct_min"), pl.col("crs_grade_astct"))
    hi = pl.coalesce(pl.col("crs_grade_astct_max"), pl.col("crs_grade_astct"))
    return (pl.when(pl.col("crs_grade_astct").is_null()).then(pl.lit(_UNKNOWN[out]))
            .when(lo < pl.col("crs_grade_astct")).then(pl.format(
                "CRS grade {}-{} (events.csv not given: the fever could be an infection's): grade >= {} "
                "undetermined", lo, hi, pl.lit(_THRESHOLD[out])))
            .otherwise(pl.format("CRS grade {}-{} (an input missing): grade >= {} undetermined",
                                 pl.col("crs_grade_astct"), pl.col("crs_grade_astct_max"),
                                 pl.lit(_THRESHOLD[out]))))


def derive_exposure_response(summary: pl.DataFrame, exposures: Sequence[str] = ("car_cmax", "car_auc_0_28"),
                             outcomes: Sequence[str] = ("responder", "crs_grade_ge3"),
                             min_epv: int = MIN_EPV) -> pl.DataFrame:
    """One row per kinetics param x exposure x outcome: n, medians by group, Mann-Whitney U and p,
    logistic odds ratio.

    ``param``/``unit``: the measurement the exposure comes from (``car_param`` of the summary: CARCOPY,
    else CARCELL) and the exposure's own unit (:func:`exposure_unit`: ``car_unit`` for a Cmax,
    ``car_unit`` × day for an AUC). Exposures of different params (copies/ug gDNA against cells/uL)
    are never pooled: each param has its own rows, and a subject without kinetics is named in each.
    ``n``: subjects with a known outcome (for ``responder``: a best response other than NE or empty)
    and an exposure >= 0 (medians and Mann-Whitney);
    ``n_zero``: of them, non-expanders with exposure 0; ``n_logit``: subjects in the logistic
    regression of log10 exposure (exposure > 0); ``n_excluded`` and ``excluded`` ("reason: ID, ID;
    ...", in the frame's order): subjects left out of the row and why. Excluded subjects are also named
    in a :class:`~cartlab.errors.CartlabWarning`. ``logit_sparse``: the odds ratio was fitted on fewer
    than ``min_epv`` events per variable (module docstring; a warning names the rows)."""
    left_out: dict[str, list[str]] = {}
    if "car_param" in summary.columns:
        kinds = summary.filter(pl.col("car_param").is_not_null()).select("car_param", "car_unit").unique(
            maintain_order=True).sort("car_param").rows()  # CARCELL, CARCOPY: a fixed order
        if len(kinds) > 1:
            from cartlab.errors import CartlabWarning

            counts = ", ".join(f"{k} for {summary.filter(pl.col('car_param') == k).height}" for k, _u in kinds)
            warnings.warn(CartlabWarning(f"CAR-T kinetics come from {counts} subjects: exposure-response is "
                                         "analysed per param (exposure_response.csv, column param), not pooled"),
                          stacklevel=2)
    else:
        kinds = []
    groups = [(k, u, summary.filter(pl.col("car_param").is_null() | (pl.col("car_param") == k)))
              for k, u in kinds] or [(None, None, summary)]
    rows = []
    for param, unit, part in groups:
        rows += [{"param": param, "unit": exposure_unit(r["exposure"], unit), **r}
                 for r in _rows(part, exposures, outcomes, left_out, min_epv)]
    sparse = [r for r in rows if r["logit_sparse"]]
    if sparse:
        from cartlab.errors import CartlabWarning

        which = ", ".join(f"{r['exposure']} ~ {r['outcome']}" + (f" ({r['param']})" if r["param"] else "")
                          + f": {r['n_logit']} subjects in the fit" for r in sparse)
        warnings.warn(CartlabWarning(
            f"exposure-response odds ratio(s) on sparse data, fewer than {min_epv} events (or non-events) per "
            f"variable (Peduzzi et al. 1996): {which}; the odds ratio is unreliable (the exposure-response "
            "table's columns logit_sparse and logit_note; threshold: option exposure.min_epv)"), stacklevel=2)
    if left_out:
        from cartlab.errors import SubjectsWarning

        warnings.warn(SubjectsWarning(_left_out_named(left_out), [i for ids in left_out.values() for i in ids],
                                      "exposure_response.csv", unnamed=_left_out_counted(left_out)), stacklevel=2)
    return pl.DataFrame(rows, infer_schema_length=None,
                        schema_overrides={"excluded": pl.String, "param": pl.String, "unit": pl.String,
                                          "window": pl.String})


def _rows(summary: pl.DataFrame, exposures: Sequence[str], outcomes: Sequence[str],
          left_out: dict[str, list[str]], min_epv: int = MIN_EPV) -> list[dict[str, Any]]:
    """The rows of :func:`derive_exposure_response` for one kinetics param (``left_out`` collects the
    excluded subjects by reason)."""
    from scipy.stats import mannwhitneyu

    rows = []
    for out in outcomes:
        if out not in OUTCOMES:
            raise ValueError(f"unknown outcome {out!r}; choose from {sorted(OUTCOMES)}")
        flag, known = OUTCOMES[out]
        if out == "responder" and "responder" in summary.columns:  # the analysis's definition (review40 B8)
            flag, known = pl.col("responder").fill_null(False), known & pl.col("responder").is_not_null()
        for exp in exposures:
            if exp not in summary.columns:
                raise ValueError(f"exposure column {exp!r} not in the frame")
            needed = [c for c in ("best_response", "crs_grade_astct") if c not in summary.columns]
            if needed and ((out == "responder" and "best_response" in needed)
                           or (out != "responder" and "crs_grade_astct" in needed)):
                raise ValueError(f"outcome {out!r} needs column(s) {needed}")
            if out in _THRESHOLD:
                summary = summary.with_columns(pl.lit(None, pl.Int64).alias(c) for c in (
                    "crs_grade_astct_max", "crs_grade_astct_min") if c not in summary.columns)
            f = summary.with_columns(
                known.fill_null(False).alias("_known"), flag.alias("_y"),
                pl.col(exp).cast(pl.Float64).alias("_x"), _missing_reason(summary, exp).alias("_why_x"))
            f = f.with_columns(pl.concat_str(
                [pl.when(~pl.col("_known")).then(_unknown_reason(out)), pl.col("_why_x")],
                separator="; ", ignore_nulls=True).alias("_why"))
            f = f.with_columns(pl.when(pl.col("_why") == "").then(None).otherwise(pl.col("_why")).alias("_why"))
            excluded = f.filter(pl.col("_why").is_not_null())
            usable = f.filter(pl.col("_why").is_null())
            y = usable["_y"].cast(pl.Int64).to_numpy()
            x = usable["_x"].to_numpy().astype(float)
            yes, no = x[y == 1], x[y == 0]
            pos = x > 0
            zeros = usable.filter(pl.col("_x") == 0)["subject_id"].cast(pl.String).to_list() \
                if "subject_id" in usable.columns else []
            names = excluded["subject_id"].cast(pl.String).to_list() if "subject_id" in excluded.columns \
                else [f"row {i + 1}" for i in range(excluded.height)]
            for sid, whys in zip(names, excluded["_why"].to_list()):
                for why in whys.split("; "):  # one entry per reason, not per combination of reasons
                    left_out.setdefault(why, [])
                    if sid not in left_out[why]:
                        left_out[why].append(sid)
            wins = (summary["car_auc_window"].drop_nulls().unique().sort().to_list()
                    if exp.startswith("car_auc") and "car_auc_window" in summary.columns else [])
            row: dict[str, Any] = {
                "exposure": exp, "window": ", ".join(wins) or None, "outcome": out, "n": len(x), "n_event": int(y.sum()),
                "n_zero": int((~pos).sum()), "n_logit": int(pos.sum()),
                "n_excluded": excluded.height,
                "excluded": _grouped(names, excluded["_why"].to_list()) or None,
                "median_event": float(np.median(yes)) if len(yes) else None,
                "median_no_event": float(np.median(no)) if len(no) else None,
                "mann_whitney_u": None, "mann_whitney_p": None,
            }
            if len(yes) and len(no):
                u = mannwhitneyu(yes, no, alternative="two-sided", method="auto")
                row["mann_whitney_u"], row["mann_whitney_p"] = float(u.statistic), float(u.pvalue)
            row.update(_logit(y[pos], x[pos]))
            sparse = _sparse(y[pos], min_epv) if row["or_per_10fold"] is not None else None
            row["logit_sparse"] = sparse is not None
            if sparse:
                row["logit_note"] = f"{row['logit_note']}; {sparse}"
            if (~pos).any():
                who = f" ({', '.join(zeros)})" if zeros else ""
                row["logit_note"] = (f"{row['logit_note']}; {int((~pos).sum())} non-expander(s) with {exp} = 0"
                                     f"{who} left out of the log10 fit only (they are in the medians and the "
                                     "Mann-Whitney test)")
            rows.append(row)
    return rows


def plot_exposure_response(summary: pl.DataFrame, exposure: str = "car_cmax", outcome: str = "responder"):
    """Box-and-points figure of log10 exposure by outcome group (matplotlib Figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    flag, known = OUTCOMES[outcome]
    n_zero = summary.filter(known & (pl.col(exposure) == 0)).height  # non-expanders: no place on a log axis
    f = summary.filter(known & pl.col(exposure).is_not_null() & (pl.col(exposure) > 0)).with_columns(flag.alias("_y"))
    groups = [np.log10(f.filter(pl.col("_y") == v)[exposure].to_numpy()) for v in (False, True)]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.boxplot(groups, showfliers=False)
    for i, g in enumerate(groups, start=1):
        ax.scatter(np.full(len(g), i) + np.linspace(-0.08, 0.08, len(g)) if len(g) else [], g, s=12, alpha=0.6)
    ax.set_xticks([1, 2], [f"no {outcome} (n={len(groups[0])})", f"{outcome} (n={len(groups[1])})"])
    ax.set_ylabel(f"log10 {exposure}")
    ax.set_title(f"{exposure} by {outcome}" + (f"\n{n_zero} non-expander(s) at 0 not shown (log axis)"
                                                if n_zero else ""), fontsize=9 if n_zero else None)
    fig.tight_layout()
    return fig


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
__getattr__ = renamed(__name__, "exposure_response", "exposure_response_frame")
