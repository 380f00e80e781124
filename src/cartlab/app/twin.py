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
        tables, curves, notes = [], {}, list(getattr(m, "dashboard_notes_", []))
        for i, reg in enumerate(regimens):
            progress(f"simulating: {REGIMENS[reg][0]}", 0.6 + 0.35 * i / len(regimens))
            table, curve = simulate_regimen(m, from_day, reg)
            # the CLI's rule (review 39 A1): a quantity the twin does not describe is withheld, with its reason
            table, reg_notes = withheld_table(m, table)
            tables.append(table.with_columns(pl.lit(reg).alias("regimen"),
                                             pl.lit(REGIMENS[reg][0]).alias("regimen_label")))
            curves[reg] = curve
            notes += [f"{REGIMENS[reg][0]}: {n}" if "forecast CAR peak" in n and len(regimens) > 1 else n
                      for n in reg_notes]
        out = (pl.concat(tables).select("regimen", "regimen_label", pl.exclude("regimen", "regimen_label"))
               .with_columns(pl.lit("simulated").alias("source")), curves, list(dict.fromkeys(notes)))
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


def withheld_table(model, table: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """``table`` with ``value_shown``, ``interval_shown`` and ``withheld_reason`` by the rule ``cartlab twin
    forecast`` applies (:func:`cartlab.twin.forecast.withhold`, docs/twin.md "Forecast quality": a
    quantity whose parameter the twin does not describe, a CAR quantity when the twin's CAR course
    lies off the CARCOPY values it was fitted to, an interval not resolved), and the CLI's notes
    (:func:`cartlab.twin.forecast.forecast_notes`, e.g. "the forecast CAR peak ... lies below a value
    already measured")."""
    from cartlab.twin.forecast import forecast_notes, withhold

    shown = withhold(model, table)
    return shown, forecast_notes(model, shown)


#: what each forecast quantity is (the page's legend and docs/dashboard.md "Twin"; twin/forecast.py
#: outcome_arrays): the codes stay in the ``quantity`` column, the words in ``quantity_label``
QUANTITY_LABELS = {
    "car_cmax": "CAR peak on days 0-28 (copies/µg gDNA)",
    "car_tmax": "day of the CAR peak (days 0-28)",
    "car_day28": "CAR level on day 28 (copies/µg gDNA)",
    "crs_ge3": "P(ASTCT CRS grade ≥ 3 on a day 0-28), default options, no blood pressure or hypoxia model",
    "response_d28": ("P(ELN 2022 AML CR/CRh/CRi/MLFS on day 28) from simulated marrow and blood blasts "
                     "(counts not modelled): the twin's AML response set"),
}

#: the page's legend under the Twin table
TWIN_LEGEND = ("Columns: quantity (code) and quantity_label (what it is); median and pi50/pi90 = the 50% and 90% "
               "prediction intervals of the noise-free simulated course; probability_shown = the probability, "
               "'< 1/N' or '> 1 - 1/N' when finer than N resolves; N (effective draws) = the SIR effective sample "
               "size the values rest on (the column n_draws of twin_forecast.csv; the probability's resolution is "
               "1/N); shown = 'yes', or why the value is withheld (the rule of cartlab twin forecast: its number "
               "stays in the CSV download with value_shown, interval_shown and withheld_reason).")


def response_model_note(disease) -> str | None:
    """For a subject whose disease is not AML: the twin's response_d28 is AML's (ELN 2022) response
    set, not the criteria of the patient page (review 39 B4); None for AML."""
    d = str(disease or "").strip()
    if d.upper() == "AML":
        return None
    return (f"response_d28 uses the twin's response model, which is AML's (ELN 2022 CR/CRh/CRi/MLFS from marrow "
            f"and blood blasts): this subject's disease is {d or 'not given'}, so it is not the response criteria "
            "of the patient page; read it as 'marrow blasts below 5% on day 28', not as this subject's response.")


def withheld_regimens(table: pl.DataFrame) -> set[str]:
    """The regimens whose CAR forecast (car_cmax) is withheld (``value_shown`` false)."""
    if "value_shown" not in table.columns:
        return set()
    return set(table.filter((pl.col("quantity") == "car_cmax") & pl.col("value_shown").not_())["regimen"].to_list())


def forecast_figure(curves: dict, from_day: float, withheld: set[str] | frozenset = frozenset()):
    """Median and 90% band of the simulated CAR copies per regimen (log axis); a regimen whose CAR
    forecast is withheld (``withheld``: :func:`withheld_regimens`) is named "forecast WITHHELD", as
    the CLI's figure panel (twin/plots.py)."""
    import plotly.graph_objects as go

    palette = ["#1f78b4", "#e31a1c", "#33a02c", "#6a3d9a"]
    fig = go.Figure()
    for i, (reg, (days, med, lo, hi)) in enumerate(curves.items()):
        c = palette[i % len(palette)]
        label = REGIMENS[reg][0] + (" (forecast WITHHELD: see the table's shown column)" if reg in withheld else "")
        fig.add_trace(go.Scatter(x=days + days[::-1], y=hi + lo[::-1], fill="toself", line={"width": 0},
                                 fillcolor=c, opacity=0.15, name=f"{label}: 90% interval (simulated)",
                                 hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=days, y=med, mode="lines", line={"color": c, "width": 2,
                                                                     "dash": "dot" if reg in withheld else "solid"},
                                 name=f"{label}: median (simulated)"))
    fig.add_vline(x=from_day, line={"dash": "dot", "color": "#444"})
    fig.update_yaxes(type="log", title_text="CAR copies/µg gDNA (simulated)")
    fig.update_xaxes(title_text=f"day after the first CAR-T infusion (data used up to day {from_day:g}, dotted)")
    title = ("CAR forecast WITHHELD (the twin does not describe this patient's CAR data: cartlab twin forecast "
             "does not show it)" if withheld else None)
    fig.update_layout(height=420, template="plotly_white", margin={"l": 70, "r": 20, "t": 50 if title else 30, "b": 60},
                      legend={"orientation": "h", "y": -0.25},
                      title={"text": title, "font": {"size": 13, "color": "#b2182b"}} if title else None)
    return fig


def display_table(table: pl.DataFrame) -> pl.DataFrame:
    """The forecast table as the page shows it: numbers rounded to 3 significant digits (the CSV
    download keeps them whole), ``quantity_label`` after the code, a withheld value or interval blank
    and ``shown`` saying why (the CLI's ``withheld_reason``), ``n_draws`` headed "N (effective
    draws)" (it is the SIR effective sample size, docs/twin.md)."""
    num = [c for c, t in table.schema.items() if t == pl.Float64]
    out = table.with_columns([pl.col(c).round_sig_figs(3) for c in num])
    out = out.with_columns(pl.col("quantity").replace_strict(QUANTITY_LABELS, default=None, return_dtype=pl.String)
                           .alias("quantity_label"))
    if "value_shown" in out.columns:
        hide_v = pl.col("value_shown").fill_null(True).not_()
        hide_i = hide_v | pl.col("interval_shown").fill_null(True).not_()
        out = out.with_columns(
            *[pl.when(hide_v).then(None).otherwise(pl.col(c)).alias(c) for c in ("median", "probability")
              if c in out.columns],
            *[pl.when(hide_i).then(None).otherwise(pl.col(c)).alias(c)
              for c in ("pi50_lo", "pi50_hi", "pi90_lo", "pi90_hi") if c in out.columns],
            pl.when(hide_v).then(pl.lit("not shown (withheld: ") + pl.col("withheld_reason").fill_null("?") + ")")
            .when(hide_i).then(pl.lit("value shown; interval not shown (") + pl.col("withheld_reason").fill_null("?")
                               + ")")
            .otherwise(pl.lit("yes")).alias("shown"),
            pl.when(hide_v & pl.col("probability_shown").is_not_null()).then(pl.lit("not shown"))
            .otherwise(pl.col("probability_shown")).alias("probability_shown"))
        out = out.drop("value_shown", "interval_shown", "withheld_reason")
    first = [c for c in ("regimen", "regimen_label", "quantity", "quantity_label") if c in out.columns]
    out = out.select(*first, pl.exclude(*first))
    return out.rename({"n_draws": "N (effective draws)"}) if "n_draws" in out.columns else out
