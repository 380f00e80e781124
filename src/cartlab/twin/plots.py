"""Figures and doc tables of the patient twin (matplotlib on the Agg canvas, no pyplot state): the fit
overlay, the forecast fan, the forecast calibration plot, the seed-twin figure for the report, and
the state/parameter table of ``docs/twin.md`` rendered from the parameter YAML."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from cartlab.model import NOT_MEASURED_SOURCES

__all__ = ["calibration_figure", "fit_figure", "forecast_figure", "params_markdown", "seed_twin_figure"]

#: panels of the overlay: (param, title, log scale)
PANELS = (("CARCOPY", "CAR transgene (copies/ug gDNA)", True), ("BMBLAST", "marrow blasts (%)", False),
          ("TEMP", "temperature (°C)", False), ("SYSBP", "systolic BP (mmHg)", False),
          ("NEUT", "neutrophils (10^9/L)", True), ("CD7T", "CD7+ T cells (cells/uL)", True),
          ("IL6", "IL-6 (pg/mL)", True), ("CRP", "CRP (mg/L)", True))
_SIM_LABEL = "twin (simulated)"


def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _observed(ax, obs: pl.DataFrame, param: str, fitted_rows: set | None) -> None:
    o = obs.filter((pl.col("param") == param) & pl.col("value").is_not_null())
    if not o.height:
        return
    measured = ~o["source"].is_in(list(NOT_MEASURED_SOURCES))
    for mask, style, label in ((measured, {"marker": "o", "color": "k", "ls": "none", "ms": 5}, "observed (paper/measured)"),
                               (~measured, {"marker": "o", "mfc": "none", "color": "0.45", "ls": "none", "ms": 3.5},
                                "reconstructed (not measured)")):
        sub = o.filter(mask)
        if sub.height:
            ax.plot(sub["day"].to_numpy(), sub["value"].to_numpy(), label=label, **style)
    if fitted_rows is not None and "src_row" in o.columns:
        f = o.filter(pl.struct("day", "src_row").map_elements(lambda r: (r["day"], r["src_row"]) in fitted_rows,
                                                              return_dtype=pl.Boolean))
        if f.height:
            ax.plot(f["day"].to_numpy(), f["value"].to_numpy(), ls="none", marker="s", mfc="none", mec="C3", ms=9,
                    label="fitted")
    cens = obs.filter((pl.col("param") == param) & (pl.col("censor") == "<"))
    if cens.height:
        ax.plot(cens["day"].to_numpy(), cens["lloq"].to_numpy(), "v", mfc="none", color="C3", ms=5, label="< LLOQ")


def _band(ax, t, draws: np.ndarray, color: str, label: str, qs=((0.05, 0.95), (0.25, 0.75)),
          weights: np.ndarray | None = None) -> None:
    from cartlab.twin.forecast import weighted_quantile

    for (a, b), alpha in zip(qs, (0.18, 0.3)):
        lo, hi = weighted_quantile(draws, weights, [a, b], axis=0)
        ax.fill_between(t, lo, hi, color=color, alpha=alpha, lw=0,
                        label=f"{label} {round(100 * (b - a))}% interval")


def _finish(fig, axes, path, ncol: int):
    """One legend for all panels (each label once) below the figure; saved to ``path`` when given."""
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), ncol), fontsize=7, frameon=False,
               bbox_to_anchor=(0.5, -0.06))
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def fit_figure(model, path=None, n_band: int = 200, t_max: float = 60.0):
    """Observed course of the subject over the twin's MAP course and its 90% posterior band (all
    simulated values labelled "simulated")."""
    from cartlab.twin.fit import _T_GRID

    ob = model._objective
    obs = model.study_.observations.filter(pl.col("subject_id") == model.subject_id_)
    w = _T_GRID <= t_max
    t = _T_GRID[w]
    lat = model.course_.latent
    draws = model.posterior_x_[:n_band]
    band = ob.simulate(draws, t_out=_T_GRID).latent
    fitted = set(zip(model.observations_["day"].to_list(), model.observations_["src_row"].to_list())) \
        if "src_row" in model.observations_.columns else None
    fig = _figure((13, 6.5))
    axes = fig.subplots(2, 4).ravel()
    for ax, (p, title, log) in zip(axes, PANELS):
        if p in lat:
            _band(ax, t, band[p][:, w], "C0", "posterior", qs=((0.05, 0.95),))
            ax.plot(t, lat[p][0, w], color="C0", lw=1.6, label=_SIM_LABEL + ", MAP")
        _observed(ax, obs, p, fitted)
        if log:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("day from first CAR-T infusion", fontsize=8)
        ax.tick_params(labelsize=7)
    src = "all rows" if model.sources is None else "source = " + ", ".join(model.sources)
    fig.suptitle(f"Digital twin of {model.subject_id_}: fitted to {src}"
                 + (f" + {len(model.anchors)} qualitative anchors" if model.anchors else "")
                 + " — lines and bands are simulated, not measured", fontsize=10)
    return _finish(fig, axes, path, ncol=6)


#: forecast-figure panel -> the forecast quantity read from it (a withheld one is marked on the panel)
_PANEL_QUANTITY = {"CARCOPY": "car_cmax", "TEMP": "crs_ge3", "BMBLAST": "response_d28"}


def forecast_figure(model, path=None, t_max: float = 60.0):
    """Fan chart of the forecast after ``forecast_day_`` (5-95% and 25-75% of the simulated draws,
    clinic rule active after that day) with the observations up to it; a panel whose forecast is
    withheld (:func:`cartlab.twin.forecast.withhold`) says so in its title."""
    from cartlab.twin.fit import _T_GRID
    from cartlab.twin.forecast import weighted_quantile

    sim = model.forecast_sim_
    obs = model.study_.observations.filter(pl.col("subject_id") == model.subject_id_)
    w = _T_GRID <= t_max
    t = _T_GRID[w]
    fc = getattr(model, "forecast_", None)
    shown = (dict(zip(fc["quantity"].to_list(), fc["value_shown"].to_list()))
             if fc is not None and "value_shown" in fc.columns else {})
    fig = _figure((13, 6.5))
    axes = fig.subplots(2, 4).ravel()
    for ax, (p, title, log) in zip(axes, PANELS):
        if p in sim.latent:
            wts = getattr(model, "forecast_weights_", None)  # the forecast table's draws and weights
            _band(ax, t, sim.latent[p][:, w], "C2", "forecast (simulated)", weights=wts)
            ax.plot(t, weighted_quantile(sim.latent[p][:, w], wts, [0.5], axis=0)[0], color="C2", lw=1.4,
                    label="forecast median (simulated)")
        seen = obs.filter(pl.col("day") <= model.forecast_day_)
        _observed(ax, seen, p, None)
        later = obs.filter((pl.col("day") > model.forecast_day_) & (pl.col("param") == p) & pl.col("value").is_not_null())
        if later.height:
            ax.plot(later["day"].to_numpy(), later["value"].to_numpy(), "x", color="0.6", ms=4,
                    label="later observations (not used)")
        ax.axvline(model.forecast_day_, color="k", ls="--", lw=0.8)
        if log:
            ax.set_yscale("log")
        q = _PANEL_QUANTITY.get(p)
        if q in shown and not shown[q]:   # the forecast resting on this panel is withheld (twin.forecast.withhold)
            title = f"{title}\nforecast WITHHELD (twin_forecast.csv, withheld_reason)"
        ax.set_title(title, fontsize=9, color="C3" if q in shown and not shown[q] else "k")
        ax.tick_params(labelsize=7)
    fig.suptitle(f"Forecast of {model.subject_id_} from day {model.forecast_day_:g} (data up to that day; clinic "
                 "rule after it) — bands are simulated", fontsize=10)
    return _finish(fig, axes, path, ncol=5)


def calibration_figure(per_patient: pl.DataFrame, path=None):
    """Left: empirical coverage of the 50% and 90% prediction intervals of the CAR peak against the
    nominal level. Right: reliability diagram of the forecast P(CRS grade >= 3) (fixed bins, counts shown)
    with the prevalence-only forecast. ``per_patient`` is the table of :func:`cartlab.twin.calibrate.forecast_calibration`."""
    fig = _figure((10, 4.2))
    a, b = fig.subplots(1, 2)
    nom = np.array([0.5, 0.9])
    emp = np.array([per_patient["in_pi50"].mean(), per_patient["in_pi90"].mean()])
    n = per_patient.height
    se = np.sqrt(nom * (1 - nom) / max(n, 1))
    a.plot([0, 1], [0, 1], color="0.6", ls=":")
    a.fill_between([0.87, 0.93], [0.85, 0.85], [0.95, 0.95], color="C2", alpha=0.25,
                   label="acceptance 85–95% (90% PI)")
    a.errorbar(nom, emp, yerr=1.96 * se, fmt="o", color="C0", capsize=3,
               label=f"CAR peak PI coverage, 95% binomial CI (n={n})")
    a.set_xlim(0.4, 1.0)
    a.set_ylim(0.3, 1.02)
    a.set_xlabel("nominal coverage")
    a.set_ylabel("observed coverage of the true peak")
    a.legend(fontsize=7)
    p = per_patient["p_crs_ge3"].to_numpy()
    y = per_patient["true_crs_ge3"].to_numpy().astype(float)
    edges = np.array([0.0, 0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0 + 1e-9])
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    xs, ys, ns = [], [], []
    for k in range(len(edges) - 1):
        m = idx == k
        if m.any():
            xs.append(p[m].mean())
            ys.append(y[m].mean())
            ns.append(m.sum())
    b.plot([0, 1], [0, 1], color="0.6", ls=":")
    b.plot(xs, ys, "o-", color="C3", label="forecast P(CRS ≥ 3) (binned)")
    for x, yv, k in zip(xs, ys, ns):
        b.annotate(str(k), (x, yv), textcoords="offset points", xytext=(4, -10), fontsize=7, color="C3")
    b.axhline(y.mean(), color="0.4", ls="--", lw=0.8, label=f"prevalence {y.mean():.2f}")
    brier = float(np.mean((p - y) ** 2))
    b.set_title(f"Brier {brier:.3f} vs prevalence-only {y.mean() * (1 - y.mean()):.3f}", fontsize=9)
    b.set_xlabel("forecast probability")
    b.set_ylabel("observed frequency (simulated truth)")
    b.legend(fontsize=7)
    fig.suptitle("Forecast calibration on held-out virtual patients (all values simulated)", fontsize=10)
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def seed_twin_figure(path, with_table: bool = False):
    """The seed case's twin fitted to its ``source = paper`` rows plus the paper's qualitative anchors
    (the acceptance fit; posterior by MCMC), drawn over the whole seed course (reconstructed rows shown hollow) and
    written to ``path`` (PNG). For ``make demo``'s report (``cartlab.report.html.ReportFigure``).
    With ``with_table``, also returns the anchors table: paper value vs the twin's simulated value."""
    from cartlab.datasets import seed_case
    from cartlab.twin.fit import _T_GRID, SEED_ANCHORS, TwinModel

    study = seed_case()
    # MCMC, not Laplace + SIR: with 7 data rows the importance weights degenerate (ESS ~2-6 of the
    # proposals), so the band would rest on a handful of draws (docs/twin.md, seed posterior)
    m = TwinModel(sources=("paper",), anchors=SEED_ANCHORS, posterior="mcmc", n_draws=200).fit(
        study, study.subject_ids[0])
    path = Path(path)
    fig = fit_figure(m, path)
    # the same figure as SVG beside the PNG (a report writes every figure in both formats)
    fig.savefig(path.with_suffix(".svg"), format="svg", bbox_inches="tight", metadata={"Date": None})
    if not with_table:
        return path
    t, lat = _T_GRID, m.course_.latent
    w = (t >= 0) & (t <= 28)
    car = lat["CARCOPY"][0]
    i0 = int(np.searchsorted(t, 0.0))
    rows = [("CAR peak (copies/ug gDNA), day", "183,945, day 14",
             f"{car[w].max():,.0f}, day {t[w][car[w].argmax()]:g}"),
            ("CAR day 28 (copies/ug gDNA)", "5,084", f"{car[int(np.searchsorted(t, 28.0))]:,.0f}"),
            ("marrow blasts day 17 (%)", "0 (no blasts)", f"{lat['BMBLAST'][0][int(np.searchsorted(t, 17.0))]:.2f}"),
            ("CD7+ T nadir / day 0", "fell markedly", f"{lat['CD7T'][0][w].min() / lat['CD7T'][0][i0]:.2f}")]
    label = {"fever_days": "fever days (daily max >= 38 C)", "sbp_min": "lowest systolic BP d0-28 (mmHg)",
             "anc_days_lt05": "days ANC < 0.5 in d0-30"}
    rows += [(label[a.stat], a.source.split(": ", 1)[-1], f"{v:.3g}") for a, v in
             zip(m.anchors, m.anchors_["value"].to_list()) if a.stat in label]
    table = pl.DataFrame(rows, schema=["quantity", "paper", "twin (simulated)"], orient="row").with_columns(
        source=pl.lit("simulated"))
    return path, table


def params_markdown(name: str = "cd7_twin_v1") -> str:
    """The parameter table of ``docs/twin.md`` rendered from ``twin/params/<name>.yaml`` (one row per
    parameter and constant: name, value, unit, IIV SD, bounds, status, description; citations in a
    second table would be long, so the citation is the last column)."""
    from cartlab.twin.params import load_params

    tab = load_params(name).table()

    def cell(v) -> str:
        if isinstance(v, float):
            return f"{v:.6g}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    cols = ("name", "value", "unit", "iiv_sd", "lower", "upper", "status", "description", "citation")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in tab.iter_rows(named=True):
        lines.append("| " + " | ".join(cell(row[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"
