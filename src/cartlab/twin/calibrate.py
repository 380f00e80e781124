"""Forecast calibration of the patient twin on held-out virtual patients (issue 16 acceptance, design
§4.4), and the fitted twin's course as a study folder for the engines.

Virtual patients are drawn from the prior population (the parameter table's log-normal IIV, the
model's covariate distribution, the protocol's dosing) on a random stream used by nothing else
(:data:`HELDOUT_SEED`, stream :data:`_STREAM_HELDOUT`), simulated with the clinic rule, observed on
the schedule with noise and censoring (:mod:`cartlab.twin.observe`), fitted on their data up to the
forecast day, and their forecast compared with their own simulated truth.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import polars as pl

from cartlab.errors import CartlabWarning
from cartlab.twin.fit import (
    _T_GRID,
    _ZERO_LIMIT,
    OBS_MODEL,
    TwinModel,
    _Objective,
    _Obs,
    _repeat_rows,
    forecast_draws,
)
from cartlab.twin.forecast import outcome_arrays, weighted_quantile, with_recorded

__all__ = ["HELDOUT_SEED", "calibration_metrics", "forecast_calibration", "simulated_study", "virtual_patients"]

#: the held-out stream: a seed used by nothing else (population calibration and trials use their own)
HELDOUT_SEED = 16_2026_07
_STREAM_HELDOUT = 7


def virtual_patients(n: int, seed: int = HELDOUT_SEED, start: int = 0, prior="cd7_twin_v1",
                     protocol: str = "nct04762485"):
    """``n`` virtual patients of the prior population from the held-out stream: (theta, baseline,
    events, index). Patient i's draws depend only on (seed, i) (chunking-independent)."""
    from cartlab.protocol import load_protocol
    from cartlab.twin.model import Baseline, Events
    from cartlab.twin.params import load_params

    table = load_params(prior) if isinstance(prior, str) else prior
    index = np.arange(start, start + n)
    thetas, bases = [], []
    for i in index:
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(int(i), _STREAM_HELDOUT)))
        thetas.append(table.sample(1, rng)[0])
        bases.append(Baseline.population(1, rng))
    baseline = dataclasses.replace(bases[0], **{f.name: np.concatenate([np.asarray(getattr(b, f.name)) for b in bases])
                                               for f in dataclasses.fields(bases[0])})
    events = Events.from_protocol(load_protocol(protocol), np.asarray(baseline.weight_kg, float))
    return np.vstack(thetas), baseline, events, index



def _probability(weights: np.ndarray, event: np.ndarray) -> float:
    """The weighted share of draws with the event, in [0, 1]: normalised weights sum to 1 only up to
    rounding (all draws with the event gave 1.0000000000000002)."""
    return float(np.clip(weights @ event, 0.0, 1.0))

def forecast_calibration(n: int = 500, *, seed: int = HELDOUT_SEED, from_day: float = 7.0, n_draws: int = 300,
                         n_sir: int | None = None, n_starts: int | None = None, start: int = 0, prior="cd7_twin_v1",
                         out=None, progress=None) -> pl.DataFrame:
    """Forecast ``n`` held-out virtual patients from their data up to ``from_day`` and compare with
    their simulated truth. ``n_sir``/``n_starts`` default to :class:`TwinModel`'s, so the calibration
    checks the fit a user gets; the intervals use every importance draw with its weight, not the
    ``n_draws`` resampled ones. One row per patient: true CAR peak (noise-free, days 0-28), forecast
    median and 50%/90% PIs, in_pi50, in_pi90, forecast P(CRS >= 3) and the truth, P(response by day
    28) and the truth, SIR ESS, fit seconds.

    Truth: theta from the prior (the parameter table's log-normal IIV), covariates from
    ``Baseline.population``, dosing from the protocol, the clinic rule deciding interventions from
    day 0 on; data = the schedule's noisy, censored samples (``observe``) up to ``from_day``; the
    forecast knows the toci/steroid given up to ``from_day``. Assumed: baseline covariates are known
    exactly (the fit of a study reads them from day <= 0 rows). With ``out`` (a CSV path) each
    patient's row is appended as soon as it is done and patients already there are skipped (resume)."""
    import json
    import time
    from pathlib import Path

    from cartlab.twin.clinic import load_clinic
    from cartlab.twin.model import simulate
    from cartlab.twin.observe import load_schedule, observe
    from cartlab.twin.params import load_params

    table = load_params(prior) if isinstance(prior, str) else prior
    theta, baseline, events, index = virtual_patients(n, seed, start, table)
    schedule = load_schedule()
    t_out = np.unique(np.concatenate([schedule.t_out(), _T_GRID]))
    truth = simulate(theta, baseline, events, t_out, clinic=load_clinic(), keep_states=False)
    seen = observe(truth, index, seed, schedule)
    g = np.isin(t_out, _T_GRID)
    true_out = outcome_arrays(_T_GRID, _latent_view(truth, g))
    cd = np.asarray(truth.clinic_days, float)
    def known(times):   # doses given up to the forecast day (the rest are the future)
        a = np.array(times, float, copy=True)
        a[~(a <= from_day)] = np.nan
        return a if a.size else np.full((n, 1), np.nan)

    tr = known(truth.transfusion_times)
    fit_events = dataclasses.replace(events, toci_day=known(truth.toci_times), steroid_day=known(truth.steroid_times),
                                     transfusion_day=tr, transfusion_units=np.where(np.isfinite(tr), load_clinic().platelet_units, np.nan))
    flags_known = {k: np.asarray(truth.clinic[k], bool) & (cd <= from_day)[None, :] for k in ("antipyretic",
                                                                                             "vasopressor")}
    sd = table.iiv_sd()
    free = np.flatnonzero(sd > 0)
    clinic = load_clinic(active_from_day=float(from_day))
    rows = []
    done = set()
    if out is not None and Path(out).is_file():
        done = {json.loads(line)["patient"] for line in Path(out).read_text().splitlines() if line.strip()}
    for r in range(n):
        if int(index[r]) in done:
            continue
        t0 = time.perf_counter()
        obs = _observed_rows(seen, r, from_day)
        ob = _Objective(table, table.vector(), free, sd[free], _repeat_rows(baseline, np.array([r])),
                        fit_events.take(np.array([r])), obs, (),
                        recorded=(cd, {k: v[r:r + 1] for k, v in flags_known.items()}))
        m = TwinModel(prior=table, n_draws=n_draws, seed=int(index[r]),
                      **{k: v for k, v in (("n_sir", n_sir), ("n_starts", n_starts)) if v is not None})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CartlabWarning)
            m._fit_objective(ob)
        rec = {k: np.asarray(v, bool)[r:r + 1] for k, v in truth.clinic.items()}
        # every importance draw with its weight (resampling would lose the tails to duplicates)
        # (the draws and weights `twin forecast` uses: cartlab.twin.fit.forecast_draws)
        draws, wts = forecast_draws(m)
        wts = np.full(len(draws), 1.0 / len(draws)) if wts is None else wts
        fc = outcome_arrays(_T_GRID, with_recorded(ob.simulate(draws, t_out=_T_GRID, clinic=clinic), rec,
                                                    truth.clinic_days, from_day))
        q = weighted_quantile(fc["car_cmax"], wts, [0.05, 0.25, 0.5, 0.75, 0.95])
        tp = float(true_out["car_cmax"][r])
        rows.append({"patient": int(index[r]), "true_peak": tp, "median": q[2], "pi50_lo": q[1], "pi50_hi": q[3],
                     "pi90_lo": q[0], "pi90_hi": q[4], "in_pi50": bool(q[1] <= tp <= q[3]),
                     "in_pi90": bool(q[0] <= tp <= q[4]), "p_crs_ge3": _probability(wts, fc["crs_ge3"]),
                     "true_crs_ge3": bool(true_out["crs_ge3"][r]), "p_response_d28": _probability(wts, fc["response_d28"]),
                     "true_response_d28": bool(true_out["response_d28"][r]), "n_obs": int(obs.param.size),
                     "sir_ess": m.ess_, "converged": m.converged_, "seconds": time.perf_counter() - t0})
        if out is not None:
            with open(out, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({k: (float(v) if isinstance(v, np.floating) else v) for k, v in rows[-1].items()})
                         + "\n")
        if progress is not None:
            progress(r + 1, n)
    if out is not None:
        return pl.read_ndjson(out)
    return pl.DataFrame(rows)


def calibration_metrics(per_patient: pl.DataFrame) -> dict[str, float]:
    """Coverage of the 50%/90% PIs of the true peak, Brier score of P(CRS >= 3) against the
    prevalence-only forecast p(1-p) (p = the sample's prevalence), and the same for response."""
    y = per_patient["true_crs_ge3"].cast(pl.Float64).to_numpy()
    p = per_patient["p_crs_ge3"].to_numpy()
    yr = per_patient["true_response_d28"].cast(pl.Float64).to_numpy()
    pr = per_patient["p_response_d28"].to_numpy()
    return {"n": per_patient.height, "coverage_pi50": float(per_patient["in_pi50"].mean()),
            "coverage_pi90": float(per_patient["in_pi90"].mean()),
            "crs_ge3_prevalence": float(y.mean()), "brier_crs_ge3": float(np.mean((p - y) ** 2)),
            "brier_crs_ge3_prevalence_only": float(y.mean() * (1 - y.mean())),
            "response_prevalence": float(yr.mean()), "brier_response": float(np.mean((pr - yr) ** 2)),
            "brier_response_prevalence_only": float(yr.mean() * (1 - yr.mean())),
            "median_seconds_per_patient": float(per_patient["seconds"].median())}


def _latent_view(sim, g: np.ndarray):
    return dataclasses.replace(sim, t=sim.t[g], latent={k: v[:, g] for k, v in sim.latent.items()}, states=None)


def _observed_rows(seen, r: int, until: float) -> _Obs:
    """The fitted rows of patient ``r`` of an ``observe`` result, up to day ``until``."""
    param, day, value, limit, cens = [], [], [], [], []
    for p, t in seen.times.items():
        if p not in OBS_MODEL:
            continue
        v, c = seen.values[p][r], seen.censored[p][r]
        keep = (t <= until) & (np.isfinite(v) | c)
        lim = np.full(t.size, seen.lloq.get(p, np.nan))
        if OBS_MODEL[p][0] == "lognormal":   # a reported 0: censored at half the resolution (as fits of studies)
            z = np.isfinite(v) & (v <= 0)
            c, lim = c | z, np.where(z, _ZERO_LIMIT.get(p, 1e-12), lim)
        n = int(keep.sum())
        param += [p] * n
        day.append(t[keep])
        value.append(np.where(c[keep], np.nan, v[keep]))
        limit.append(lim[keep])
        cens.append(np.where(c[keep], -1, 0))
    cat = (lambda xs: np.concatenate(xs) if xs else np.array([]))
    return _Obs(np.array(param, dtype=object).astype(str), cat(day).astype(float), cat(value).astype(float),
                cat(limit).astype(float), cat(cens).astype(int), pl.DataFrame())


def simulated_study(model, out, *, seed: int = 0, clinic_from: float = 0.0, protocol: str = "nct04762485",
                    **clinic_overrides):
    """The fitted twin's MAP course as a study folder (``source = simulated``): the clinic rule decides
    interventions from ``clinic_from`` on (before it, the recorded ones act), the schedule's noisy
    samples (``cartlab.twin.observe``, seed ``seed``), lymphodepletion rows from the protocol;
    ``clinic_overrides`` replace thresholds of the clinic policy (e.g. ``toci_max_doses=0``). The
    engines (ASTCT CRS, ELN response, ICAHT) then grade the twin exactly as a recorded patient."""
    from cartlab.protocol import load_protocol
    from cartlab.twin.clinic import load_clinic
    from cartlab.twin.observe import load_schedule, observe, study_tables, write_tables

    ob = model._objective
    schedule = load_schedule()
    sim = ob.simulate(model.x_[None, :], t_out=schedule.t_out(), clinic=load_clinic(active_from_day=clinic_from,
                                                                                      **clinic_overrides))
    seen = observe(sim, np.array([0]), seed, schedule, covariates={"weight_kg": np.asarray(ob.baseline.weight_kg)})
    return write_tables(study_tables(seen, ob.events, load_protocol(protocol).lymphodepletion), out)
