"""The dashboard's twin page: a forecast of one patient from its first days, under two regimens.

The CD7 CAR-T twin (:class:`cartlab.twin.TwinModel`, docs/twin.md) is fitted to the patient's data up
to ``from_day`` (the slow part, ~20 s: cached per study, subject and day); its posterior draws are then
simulated forward under each regimen (a fraction of a second each, also cached):

* ``clinic``: the twin's clinic rule (``twin/criteria/clinic_v1.yaml``) decides interventions after
  ``from_day`` -- what ``cartlab twin forecast`` does;
* ``early_toci``: the same rule with tocilizumab from the first day of high fever
  (``high_fever_days_for_toci = 1``);
* ``no_toci``: the rule without tocilizumab (``toci_max_doses = 0``);
* ``booster``: the clinic rule plus a second CAR-T infusion of the first infusion's dose on day 14.

Every value shown is simulated (``source = simulated``), never measured.
"""

from __future__ import annotations

import dataclasses
import threading
import warnings
from collections.abc import Callable

import numpy as np
import polars as pl

from cartlab.twin.quality import MIN_ESS_INTERVALS as MIN_ESS

#: regimen key -> (label, clinic-rule overrides, booster day or None)
REGIMENS: dict[str, tuple[str, dict[str, float], float | None]] = {
    "clinic": ("clinic rule (clinic_v1)", {}, None),
    "early_toci": ("tocilizumab from the first day of high fever", {"high_fever_days_for_toci": 1.0}, None),
    "no_toci": ("no tocilizumab", {"toci_max_doses": 0.0}, None),
    "booster": ("clinic rule + second CAR-T infusion (first dose) on day 14", {}, 14.0),
}
FIT_DRAWS = 200


def with_booster(events, day: float):
    """``events`` with one more CAR-T infusion on ``day`` of the first infusion's cells (per row)."""
    first = events.car_t_cells[:, :1]
    return dataclasses.replace(
        events, car_t_day=np.hstack([events.car_t_day, np.full((len(events), 1), float(day))]),
        car_t_cells=np.hstack([events.car_t_cells, np.nan_to_num(first, nan=0.0)]))


class TwinCache:
    """Fitted twins and regimen forecasts, computed once per key (thread-safe)."""

    def __init__(self):
        self._fits: dict[tuple, object] = {}
        self._results: dict[tuple, tuple[pl.DataFrame, dict]] = {}
        self._lock = threading.Lock()

    def fitted(self, study, subject_id: str, from_day: float, progress: Callable[[str, float], None]):
        key = (study.study_id, subject_id, float(from_day))
        with self._lock:
            m = self._fits.get(key)
            if m is None:
                from cartlab.twin.fit import TwinModel

                progress(f"fitting the twin to the data up to day {from_day:g} (about 20 s)", 0.1)
                from cartlab.errors import CartlabWarning

                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", CartlabWarning)
                    m = TwinModel(n_draws=FIT_DRAWS, n_sir=2 * FIT_DRAWS + 100, n_starts=2, seed=0).fit(
                        study, subject_id, until_day=from_day)
                #: the fit's diagnostics (e.g. a small SIR effective sample size), shown with the forecast
                m.dashboard_notes_ = [str(w.message) for w in caught if issubclass(w.category, CartlabWarning)]
                self._fits[key] = m
        return m

    def compare(self, study, subject_id: str, from_day: float, regimens: tuple[str, ...],
                progress: Callable[[str, float], None] = lambda _m, _f: None) -> tuple[pl.DataFrame, dict, list]:
        """One forecast table for the regimens (``regimen`` column), per regimen the CAR copies course
        (days, median, 5th and 95th percentiles), and the fit's diagnostics (warnings, as text)."""
        key = (study.study_id, subject_id, float(from_day), regimens)
        hit = self._results.get(key)
        if hit is not None:
            return hit
        m = self.fitted(study, subject_id, from_day, progress)
        tables, curves = [], {}
        for i, reg in enumerate(regimens):
            progress(f"simulating: {REGIMENS[reg][0]}", 0.6 + 0.35 * i / len(regimens))
            table, curve = simulate_regimen(m, from_day, reg)
            tables.append(table.with_columns(pl.lit(reg).alias("regimen"),
                                             pl.lit(REGIMENS[reg][0]).alias("regimen_label")))
            curves[reg] = curve
        out = (pl.concat(tables).select("regimen", "regimen_label", pl.exclude("regimen", "regimen_label"))
               .with_columns(pl.lit("simulated").alias("source")), curves,
               [*getattr(m, "dashboard_notes_", []),
                *([] if m.converged_ else [f"the fit did not converge: {m.message_}"]),
                *([] if m.intervals_reliable_ else [  # cartlab.twin.quality
                    f"the 90% bands are not resolved: SIR effective sample size {m.ess_:.0f} < {MIN_ESS:.0f} "
                    "(fewer than one effective draw beyond each bound); cartlab twin forecast --posterior mcmc "
                    "gives usable intervals"])])
        self._results[key] = out
        return out


def simulate_regimen(model, from_day: float, regimen: str) -> tuple[pl.DataFrame, tuple]:
    """The fitted twin's posterior draws simulated after ``from_day`` under ``regimen`` (recorded
    interventions before ``from_day``, the regimen's clinic rule after it), as
    :meth:`cartlab.twin.TwinModel.forecast` does for the clinic rule."""
    from cartlab.twin.fit import forecast_draws
    from cartlab.twin.forecast import forecast_table, n_effective, weighted_quantile

    _label, overrides, booster = REGIMENS[regimen]
    events = None if booster is None else with_booster(model.events_, booster)
    # the draws and weights `cartlab twin forecast` uses (importance draws with their weights after SIR)
    draws, weights = forecast_draws(model)
    t, sim = model.simulate_after(float(from_day), clinic_overrides=overrides, events=events, draws=draws)
    car = np.asarray(sim.latent["CARCOPY"], float)
    q = weighted_quantile(car, weights, [0.05, 0.5, 0.95], axis=0)
    keep = t >= 0
    # a probability rests on the effective draws (the SIR ESS), as `cartlab twin forecast` shows it
    table = forecast_table(t, sim, n_effective=n_effective(model, car.shape[0]), weights=weights)
    return table, (t[keep].tolist(), q[1][keep].tolist(), q[0][keep].tolist(), q[2][keep].tolist())


def forecast_figure(curves: dict, from_day: float):
    """Median and 90% band of the simulated CAR copies per regimen (log axis)."""
    import plotly.graph_objects as go

    palette = ["#1f78b4", "#e31a1c", "#33a02c", "#6a3d9a"]
    fig = go.Figure()
    for i, (reg, (days, med, lo, hi)) in enumerate(curves.items()):
        c = palette[i % len(palette)]
        label = REGIMENS[reg][0]
        fig.add_trace(go.Scatter(x=days + days[::-1], y=hi + lo[::-1], fill="toself", line={"width": 0},
                                 fillcolor=c, opacity=0.15, name=f"{label}: 90% interval (simulated)",
                                 hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=days, y=med, mode="lines", line={"color": c, "width": 2},
                                 name=f"{label}: median (simulated)"))
    fig.add_vline(x=from_day, line={"dash": "dot", "color": "#444"})
    fig.update_yaxes(type="log", title_text="CAR copies/µg gDNA (simulated)")
    fig.update_xaxes(title_text=f"day after the first CAR-T infusion (data used up to day {from_day:g}, dotted)")
    fig.update_layout(height=420, template="plotly_white", margin={"l": 70, "r": 20, "t": 30, "b": 60},
                      legend={"orientation": "h", "y": -0.25})
    return fig


def display_table(table: pl.DataFrame) -> pl.DataFrame:
    """The forecast table with numbers rounded for the page (the CSV download keeps them whole)."""
    num = [c for c, t in table.schema.items() if t == pl.Float64]
    return table.with_columns([pl.col(c).round_sig_figs(3) for c in num])
