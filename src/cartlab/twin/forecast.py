"""Forecast outcomes of the twin (:class:`cartlab.twin.fit.TwinModel`): the outcomes of simulated
courses, the forecast table (median, prediction intervals, probabilities shown as "< 1/N"), what makes
a forecast unreliable, and the recorded clinic a forecast keeps before its day (issue 16, item 2)."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import polars as pl

from cartlab.twin.quality import (
    CAR_BIAS_IWRES,
    FORECAST_DEPENDS,
    MIN_ESS_INTERVALS,
    MISFIT_RMS,
    fit_quality,
    residual_bias,
)

__all__ = ["defaults_text", "forecast_notes", "forecast_problems", "forecast_table", "n_effective", "outcome_arrays",
           "probability_text", "weighted_quantile", "withhold"]


CLINIC_CATEGORY = {"vasopressor": "vasopressor", "tocilizumab": "tocilizumab", "corticosteroid": "steroid",
                    "antipyretic": "antipyretic"}


def recorded_clinic(study, subject_id: str, days: np.ndarray) -> dict[str, np.ndarray]:
    """The subject's recorded interventions as (1, D) day flags on the clinic days (start..end day)."""
    iv = study.interventions.filter(pl.col("subject_id") == subject_id)
    out = {}
    for cat, key in CLINIC_CATEGORY.items():
        flag = np.zeros(days.size, bool)
        for a, b in iv.filter(pl.col("category") == cat).select("start_day", "end_day").iter_rows():
            if a is not None:
                flag |= (days >= np.floor(a)) & (days <= np.floor(b if b is not None else a))
        out[key] = flag[None, :]
    return out


def with_recorded(sim, recorded: dict[str, np.ndarray], rec_days: np.ndarray, until: float):
    """A forecast course whose clinic arrays before ``until`` are the recorded ones (the forecast
    knows what was given; the rule decides only after ``until``), so an outcome already reached
    (a vasopressor on day 5) counts."""
    days = np.asarray(sim.clinic_days, float)
    rec_days = np.asarray(rec_days, float)
    before = np.flatnonzero((days < until) & np.isin(days, rec_days))
    src = np.searchsorted(rec_days, days[before])
    clinic = dict(sim.clinic)
    for k, rec in recorded.items():
        if k in clinic:
            a = np.array(clinic[k], bool, copy=True)
            a[:, before] = np.asarray(rec, bool)[:, src]
            clinic[k] = a
    return dataclasses.replace(sim, clinic=clinic)


def events_until(events, day: float):
    """Recorded interventions after ``day`` removed (a forecast must not know them)."""
    rep = {}
    for name in ("toci_day", "steroid_day", "transfusion_day"):
        a = np.array(getattr(events, name), dtype=float, copy=True)
        a[a > day] = np.nan
        rep[name] = a
    return dataclasses.replace(events, **rep)


def outcome_arrays(t: np.ndarray, sim) -> dict[str, np.ndarray]:
    """Per-row outcomes of a noise-free simulated course: CAR Cmax on days 0-28 and its day, CAR on
    day 28; CRS grade >= 3 on a day in 0-28 by the ASTCT 2019 rules on the latent daily Tmax and
    vasopressor days, tocilizumab/steroid waiving fever (:func:`cartlab.twin.summaries.crs_daily_grades`;
    blood pressure is not used: below the cut-off without a vasopressor is grade 2; no hypoxia model);
    CR/CRh/CRi/MLFS on day 28 by the ELN 2022 rules on the latent marrow and blood blasts (blood
    blasts are reported in whole percent: below 0.5 reads as none; counts not used, so MLFS or better
    is decided by blasts alone; :func:`cartlab.twin.summaries.eln_categories`)."""
    from cartlab.twin.summaries import CATEGORIES, CR_CRH_CRI, crs_daily_grades, eln_categories

    w = (t >= 0) & (t <= 28)
    c = sim.latent["CARCOPY"][:, w]
    i28 = int(np.searchsorted(t, 28.0))
    out = {"car_cmax": c.max(axis=1), "car_tmax": t[w][c.argmax(axis=1)], "car_day28": sim.latent["CARCOPY"][:, i28]}
    cd = np.asarray(sim.clinic_days)
    sel = (cd >= 0) & (cd <= 28)
    days = cd[sel]
    tmax = np.stack([sim.latent["TEMP"][:, (t >= d) & (t < d + 1)].max(axis=1) for d in days], axis=1)
    clinic = {k: np.asarray(v, bool)[:, sel] for k, v in sim.clinic.items()}
    grades = crs_daily_grades(tmax, np.full(tmax.shape, np.nan), clinic["vasopressor"], clinic)
    out["crs_ge3"] = (grades >= 3).any(axis=1)
    pb = sim.latent["PBBLAST"][:, i28]
    nan = np.full(pb.shape, np.nan)
    cat = eln_categories(sim.latent["BMBLAST"][:, i28], np.where(pb < 0.5, 0.0, pb), nan, nan, nan)
    out["response_d28"] = np.isin(cat, [*CR_CRH_CRI, CATEGORIES.index("MLFS")])
    return out


def subject_target(study, subject_id: str) -> str | None:
    """The subject's ``target`` (subjects table; None when the column or value is absent)."""
    subj = study.subjects
    if "target" not in subj.columns:
        return None
    v = subj.filter(pl.col("subject_id") == subject_id)["target"]
    return str(v[0]).strip() if len(v) and v[0] is not None and str(v[0]).strip() else None


def n_effective(m, n_draws: int) -> int:
    """Draws a forecast probability rests on: the draws simulated, or fewer (the SIR ESS) when the
    resampled draws repeat a few importance draws."""
    ess = getattr(m, "ess_", float("nan"))
    return int(max(1, min(n_draws, math.floor(ess)))) if math.isfinite(ess) else int(n_draws)


#: baseline values whose population default makes a forecast unreliable: the weight sets the blood
#: volume (every blood count <-> body cells, CARCOPY), the marrow blasts the leukaemia and antigen load
UNRELIABLE_DEFAULTS = ("weight_kg", "bm_blast_pct")


def defaults_text(used: dict) -> str:
    """``baseline_defaults_used_`` as text: "weight_kg 60 kg assumed (subjects.csv column weight_kg is
    empty); ..." (empty when nothing was defaulted)."""
    return "; ".join(f"{k} {v['value']:g} {v['unit']} assumed ({v['missing']})" for k, v in used.items())


def forecast_problems(m, car_bias_iwres: float = CAR_BIAS_IWRES) -> list[str]:
    """Keys of what makes a forecast unreliable (``forecast_reliable`` false when any): ``ess`` intervals
    not resolved, ``not_converged`` the fit did not converge, ``no_car_samples`` no CAR-T measurement in
    the fitting window (the kinetics rest on the prior only), ``not_cd7`` a non-CD7 subject,
    ``baseline_default`` the weight or the marrow blasts taken from the population default, ``misfit``
    the twin does not describe a parameter a forecast quantity rests on (:data:`FORECAST_DEPENDS`,
    the :data:`MISFIT_RMS` rule), ``car_off_data`` the twin's CAR course lies off the CARCOPY values it
    was fitted to (mean standardised residual beyond ``car_bias_iwres``, :mod:`cartlab.twin.quality`)."""
    problems = []
    if not m.intervals_reliable_:
        problems.append("ess")
    if not getattr(m, "converged_", True):
        problems.append("not_converged")
    if m.observations_.filter(pl.col("param") == "CARCOPY").height == 0:
        problems.append("no_car_samples")
    tgt = getattr(m, "target_", "CD7")
    if tgt is None or tgt.upper() != "CD7":  # another target, or none given (fitted with allow_other_target)
        problems.append("not_cd7")
    if set(getattr(m, "baseline_defaults_used_", {})) & set(UNRELIABLE_DEFAULTS):
        problems.append("baseline_default")
    if _misfits(m):
        problems.append("misfit")
    if _car_off(m, car_bias_iwres) is not None:
        problems.append("car_off_data")
    return problems


def _quality(m) -> pl.DataFrame:
    q = getattr(m, "fit_quality_", None)
    return q if q is not None else fit_quality(m.observations_.select("param", "iwres"))


def _misfits(m) -> dict[str, str]:
    """Parameters a forecast quantity rests on that the twin does not describe: param -> "CARCOPY
    (RMS standardised residual 9.3 over 3 rows > 3)"."""
    need = {p for ps in FORECAST_DEPENDS.values() for p in ps}
    bad = _quality(m).filter(pl.col("param").is_in(list(need)) & pl.col("describes").not_())
    return {p: f"{p} (RMS standardised residual {r:.1f} over {n} rows > {MISFIT_RMS:g})"
            for p, r, n in bad.select("param", "rms_iwres", "n_residuals").iter_rows()}


def _car_off(m, car_bias_iwres: float = CAR_BIAS_IWRES) -> str | None:
    """Text when the twin's CAR course lies off the CARCOPY values it was fitted to (None: it does not)."""
    from cartlab.twin.fit import OBS_MODEL

    bias, n = residual_bias(m.observations_, "CARCOPY")
    if n == 0 or not abs(bias) > car_bias_iwres:
        return None
    fold = math.exp(abs(bias) * OBS_MODEL["CARCOPY"][1])
    side = "above" if bias < 0 else "below"
    return (f"the twin's CAR course lies {fold:.3g}-fold {side} the {n} CARCOPY value(s) measured up to the forecast "
            f"day (geometric mean; mean standardised residual {bias:+.1f}, beyond +-{car_bias_iwres:g})")


def withhold(m, table: pl.DataFrame, *, show_withheld: bool = False,
             car_bias_iwres: float = CAR_BIAS_IWRES) -> pl.DataFrame:
    """``table`` (:func:`forecast_table`) with ``value_shown``, ``interval_shown`` and ``withheld_reason``:
    a quantity whose parameters (:data:`FORECAST_DEPENDS`) the twin does not describe (the
    :data:`MISFIT_RMS` rule), or a CAR quantity when the twin's CAR course lies off the CARCOPY values
    it was fitted to (``car_bias_iwres``), has neither its value nor its intervals shown; unresolved
    intervals (SIR ESS < :data:`MIN_ESS_INTERVALS`) are not shown. The numbers stay in the table.
    ``show_withheld``: show them anyway (the reasons are still given)."""
    mis, off = _misfits(m), _car_off(m, car_bias_iwres)
    ess = not m.intervals_reliable_
    vs, ivs, why = [], [], []
    for q in table["quantity"].to_list():
        reasons = [f"the twin does not describe {mis[p]}" for p in FORECAST_DEPENDS.get(q, ()) if p in mis]
        if off is not None and q.startswith("car_"):
            reasons.append(off)
        interval = q in ("car_cmax", "car_tmax", "car_day28")
        vs.append(show_withheld or not reasons)
        if ess and interval:
            reasons.append(f"90% interval not resolved: SIR effective sample size {m.ess_:.0f} < {MIN_ESS_INTERVALS:.0f}")
        ivs.append((show_withheld or not reasons) if interval else None)
        why.append("; ".join(reasons) or None)
    return table.with_columns(pl.Series("value_shown", vs, pl.Boolean), pl.Series("interval_shown", ivs, pl.Boolean),
                              pl.Series("withheld_reason", why, pl.String))


def forecast_notes(m, table: pl.DataFrame, car_bias_iwres: float = CAR_BIAS_IWRES) -> list[str]:
    """Why a forecast should not be read as it stands (empty when nothing is wrong): one note per
    :func:`forecast_problems` key, one (``baseline_default: ...``) for any baseline value defaulted, and
    a forecast peak below a value already measured, and one (``not_measured_data: ...``) when most fitted
    rows are not measured (:func:`cartlab.twin.provenance.not_measured_note`)."""
    notes = []
    problems = forecast_problems(m, car_bias_iwres)
    if "ess" in problems:
        notes.append(f"the forecast's prediction intervals are not resolved: SIR effective sample size {m.ess_:.0f} < "
                     f"{MIN_ESS_INTERVALS:.0f} (fewer than one effective draw beyond each 90% bound; "
                     f"{getattr(m, 'n_unique_draws_', 0)} distinct draw(s) after resampling); rerun with "
                     "posterior='mcmc' (cartlab twin forecast --posterior mcmc)")
    if "not_converged" in problems:
        notes.append(f"the fit did not converge ({m.message_}): the forecast is not reliable")
    if "no_car_samples" in problems:
        notes.append("no CAR-T measurement (CARCOPY) up to the forecast day: the CAR peak and kinetics forecast "
                     "rests on the population prior only, not on this subject's data")
    if "not_cd7" in problems:
        notes.append((f"the subject's target is {m.target_}" if m.target_ else "the subject's target is not given")
                     + "; the twin models CD7 CAR-T (fitted with --allow-other-target)")
    used = getattr(m, "baseline_defaults_used_", {})
    if used:  # key baseline_default: a problem for the weight / marrow blasts, a note for any
        notes.append(f"baseline_default: {defaults_text(used)}: the twin starts from the population default "
                     + ("(the weight or the marrow blasts): the forecast is not reliable" if "baseline_default"
                        in problems else "for these (not by itself a reason to call the forecast unreliable)"))
    if blq := getattr(m, "baseline_blq_used_", {}):   # review 47 B6: a baseline read from its limit is named
        from cartlab.twin.baseline_prior import blq_text

        notes.append(f"baseline_blq: {blq_text(blq)}")
    if "misfit" in problems:
        deps = {p: [q for q, ps in FORECAST_DEPENDS.items() if p in ps] for p in _misfits(m)}
        notes.append("the twin does not describe " + ", ".join(f"{t} (the forecast's {', '.join(deps[p])})"
                     for p, t in _misfits(m).items()) + ": these forecasts are not shown (twin_forecast.csv keeps "
                     "them with withheld_reason)")
    if "car_off_data" in problems:
        notes.append(f"{_car_off(m, car_bias_iwres)}: the CAR forecast is inconsistent with the data it used")
    if getattr(m, "car_ceiling_", None):   # review 40 B3: a measured value the model cannot reach (a note)
        notes.append(m.car_ceiling_)
    from cartlab.twin.provenance import not_measured_note

    if (nm := not_measured_note(m.observations_)) is not None:   # review 38 B5: a note, not a problem
        notes.append(nm)
    peak = table.row(table["quantity"].to_list().index("car_cmax"), named=True)
    car = m.observations_.filter((pl.col("param") == "CARCOPY") & pl.col("iwres").is_not_null())
    if car.height and car["value"].max() > peak["pi90_hi"]:
        top = car.sort("value", descending=True).row(0, named=True)
        notes.append(f"the forecast CAR peak (90% PI up to {peak['pi90_hi']:.3g} copies/ug) lies below a value "
                     f"already measured ({top['value']:.3g} on day {top['day']:g})")
    return notes


def probability_text(p: float, n: int) -> str:
    """A probability from ``n`` (effective) draws as shown: "< 1/n" / "> 1 - 1/n" (as decimals) when it is
    below 1/n / above 1 - 1/n (n draws resolve nothing finer than 1/n, whatever the draws' weights: a
    weighted share of 3.5e-7 from 163 draws is "< 0.00614", review 38 A1), else the share to 3 decimals. A bound is
    rounded toward itself, so it stays true: "< 1/n" up (ceil, 3 significant digits: n = 28 -> "< 0.0358"),
    "> 1 - 1/n" down (floor, to the decimal of 1/n's second significant digit: n = 137 -> "> 0.9927")."""
    n = max(int(n), 1)
    low, high = p < 1.0 / n, p > 1.0 - 1.0 / n
    if low or high:
        if n == 1:
            return "< 1" if p < 0.5 else "> 0"
        e = len(str(n - 1))            # 10^-e <= 1/n < 10^-(e-1), exactly (integers)
        if low:
            d = e + 2                  # 3 significant digits of 1/n, rounded up
            k = -(-(10 ** d) // n)
        else:
            d = e + 1                  # 1 - 1/n to 1/n's second significant digit, rounded down
            k = (n - 1) * 10 ** d // n
        text = f"{k / 10 ** d:.{d}f}".rstrip("0").rstrip(".")
        return f"< {text}" if low else f"> {text}"
    return f"{p:.3f}"


def weighted_quantile(v: np.ndarray, w: np.ndarray | None, qs, axis: int = 0) -> np.ndarray:
    """Quantiles ``qs`` of ``v`` along ``axis`` with draw weights ``w`` (None: equal weights, numpy's
    default quantile). Weighted: the inverse of the weighted empirical CDF, midpoint rule, so equal
    weights give numpy's "hazen" quantiles; draws of weight 0 are left out. A NaN (a draw the solver
    could not follow) is left out of its own column, never interpolated through; an all-NaN column
    gives NaN. Returns shape (len(qs),) + the other axes of ``v``."""
    v = np.moveaxis(np.asarray(v, float), axis, 0)
    if w is None:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: NaN, said by the caller
            return np.nanquantile(v, qs, axis=0)
    w = np.asarray(w, float)
    if np.any(w <= 0):  # a draw without weight has no mass: it must not stretch the interpolation
        v, w = v[w > 0], w[w > 0]
    flat = v.reshape(v.shape[0], int(np.prod(v.shape[1:], dtype=np.int64)))
    if flat.shape[0] == 0:  # no draw with weight
        return np.full((len(qs),) + v.shape[1:], np.nan)
    o = np.argsort(flat, axis=0)  # NaN last
    vs = np.take_along_axis(flat, o, axis=0)
    valid = ~np.isnan(vs)
    ws = np.where(valid, w[o], 0.0)
    total = ws.sum(axis=0)
    cw = (np.cumsum(ws, axis=0) - 0.5 * ws) / np.where(total > 0, total, 1.0)
    nv = valid.sum(axis=0)
    last = np.maximum(nv - 1, 0)
    cols = np.arange(flat.shape[1])
    out = np.empty((len(qs), flat.shape[1]))
    for k, q in enumerate(np.asarray(qs, float)):  # np.interp per column, vectorised over the columns
        above = (cw > q) & valid
        hi = np.where(above.any(axis=0), above.argmax(axis=0), nv)
        lo = np.clip(hi - 1, 0, last)
        hc = np.clip(hi, 0, last)
        c_lo, c_hi = cw[lo, cols], cw[hc, cols]
        frac = np.where(c_hi > c_lo, (q - c_lo) / np.where(c_hi > c_lo, c_hi - c_lo, 1.0), 0.0)
        val = vs[lo, cols] + np.clip(frac, 0.0, 1.0) * (vs[hc, cols] - vs[lo, cols])
        val = np.where(hi == 0, vs[0, cols], np.where(hi >= nv, vs[last, cols], val))
        out[k] = np.where(nv == 0, np.nan, val)
    return out.reshape((len(qs),) + v.shape[1:])


def forecast_table(t: np.ndarray, sim, n_effective: int | None = None, weights: np.ndarray | None = None) -> pl.DataFrame:
    """Median, 50%/90% intervals of the continuous outcomes, probabilities of the binary ones
    (``probability_shown``: "< 1/N" or "> 1 - 1/N" when the share is below 1/N or above 1 - 1/N; N =
    ``n_effective``, default the draws simulated). ``weights``: the draws' posterior weights (the
    importance draws of a Laplace + SIR fit; None: equal). The intervals are those of the noise-free
    course over the posterior (parameter uncertainty): a new measurement scatters more, by the
    observation model's noise. Every row is model-based (``source`` = "simulated")."""
    o = outcome_arrays(t, sim)
    n = int(n_effective) if n_effective else len(o["crs_ge3"])
    wn = None if weights is None else np.asarray(weights, float) / float(np.sum(weights))
    rows = []
    for q, unit in (("car_cmax", "copies/ug gDNA"), ("car_tmax", "day"), ("car_day28", "copies/ug gDNA")):
        v = o[q]
        p = weighted_quantile(v, wn, [0.05, 0.25, 0.5, 0.75, 0.95])
        rows.append({"quantity": q, "unit": unit, "median": p[2], "pi50_lo": p[1], "pi50_hi": p[3],
                     "pi90_lo": p[0], "pi90_hi": p[4], "probability": None, "probability_shown": None,
                     "n_draws": n, "source": "simulated"})
    for q in ("crs_ge3", "response_d28"):
        pr = float(np.mean(o[q])) if wn is None else float(np.clip(wn @ o[q].astype(float), 0.0, 1.0))
        rows.append({"quantity": q, "unit": "probability", "median": None, "pi50_lo": None, "pi50_hi": None,
                     "pi90_lo": None, "pi90_hi": None, "probability": pr, "probability_shown": probability_text(pr, n),
                     "n_draws": n, "source": "simulated"})
    return pl.DataFrame(rows, schema={"quantity": pl.String, "unit": pl.String, "median": pl.Float64,
                                      "pi50_lo": pl.Float64, "pi50_hi": pl.Float64, "pi90_lo": pl.Float64,
                                      "pi90_hi": pl.Float64, "probability": pl.Float64,
                                      "probability_shown": pl.String, "n_draws": pl.Int64, "source": pl.String})
