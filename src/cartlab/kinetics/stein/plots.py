"""Figures of the Stein fits (matplotlib on the Agg canvas, no pyplot state): observed vs fitted
curves per subject, and the visual predictive check."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import polars as pl

#: ``predict(times, subjects)`` of a fit: a frame subject_id, time, pred
Predict = Callable[[np.ndarray, Sequence[str]], pl.DataFrame]


def _plot_subjects(ax_list, obs: pl.DataFrame, curves: dict[str, tuple[np.ndarray, np.ndarray]], ids):
    for ax, sid in zip(ax_list, ids):
        o = obs.filter(pl.col("subject_id") == sid)
        q = o.filter(~pl.col("blq"))
        b = o.filter(pl.col("blq"))
        ax.plot(q["time"].to_numpy(), q["conc"].to_numpy(), "o", color="C0", ms=4, label="observed")
        if b.height:
            ax.plot(b["time"].to_numpy(), b["limit"].to_numpy(), "v", mfc="none", color="C3", ms=5,
                    label="BLQ (at LLOQ)")
        tg, cg = curves[sid]
        ax.plot(tg, cg, "-", color="C1", lw=1.5, label="fitted")
        ll = o["lloq"].drop_nulls()
        if ll.len():
            ax.axhline(float(ll[0]), color="0.6", ls=":", lw=1)
        ax.set_yscale("log")
        ax.set_title(sid, fontsize=8)
        ax.tick_params(labelsize=7)


def _figure(figsize):
    """A matplotlib Figure on the Agg canvas (no pyplot state, as cartlab.report does)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _grid_axes(n: int, figsize=None):
    cols = min(4, n)
    rows = int(math.ceil(n / cols))
    fig = _figure(figsize or (max(3.2 * cols, 5.0), max(2.6 * rows, 3.6)))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()[:n]


def fits_figure(obs: pl.DataFrame, ids: Sequence[str], predict: Predict, figsize=None,
                typical: Callable[[np.ndarray], np.ndarray] | None = None):
    """Observed (BLQ as open triangles at the LLOQ) vs fitted curve per subject, log scale; with
    ``typical`` (times -> the typical curve) that curve dashed in every panel."""
    tg = np.linspace(0, float(obs["time"].max()) * 1.05 + 1, 400)
    pr = predict(tg, ids)
    curves = {s: (tg, pr.filter(pl.col("subject_id") == s)["pred"].to_numpy()) for s in ids}
    fig, axes = _grid_axes(len(ids), figsize)
    _plot_subjects(axes, obs, curves, ids)
    if typical is not None:
        typ = typical(tg)
        for ax in axes:
            ax.plot(tg, typ, "--", color="0.5", lw=1, label="typical")
    axes[0].legend(fontsize=6)
    fig.supxlabel("days from first infusion")
    fig.supylabel("transgene copies/ug")
    fig.tight_layout()
    return fig


def vpc_figure(obs: pl.DataFrame, v: pl.DataFrame, figsize=None):
    """Simulated percentile bands vs observed percentiles (a table of ``vpc()``), with the
    observations and the LLOQ."""
    fig = _figure(figsize or (7, 4.5))
    ax = fig.subplots()
    q = obs.filter(~pl.col("blq"))
    ax.plot(q["time"].to_numpy(), q["conc"].to_numpy(), ".", color="0.7", ms=3, label="observed")
    colors = {0.05: "C0", 0.5: "C3", 0.95: "C0"}
    for qq in sorted(v["quantile"].unique().to_list()):
        s = v.filter(pl.col("quantile") == qq).sort("time")
        tt = s["time"].to_numpy()
        col = colors.get(qq, "C2")
        ax.fill_between(tt, s["sim_lo"].fill_null(np.nan).to_numpy(), s["sim_hi"].fill_null(np.nan).to_numpy(),
                        color=col, alpha=0.2, lw=0, label=f"simulated P{qq * 100:g} ({100 * 0.9:g}% PI)")
        ax.plot(tt, s["observed"].fill_null(np.nan).to_numpy(), "-o", color=col, ms=3, lw=1.2,
                label=f"observed P{qq * 100:g}")
    ll = obs["lloq"].drop_nulls()
    if ll.len():
        ax.axhline(float(ll.median()), color="k", ls=":", lw=1, label="LLOQ")
    ax.set_yscale("log")
    ax.set_xlabel("days from first infusion")
    ax.set_ylabel("transgene copies/ug")
    ax.set_title("VPC (Stein model, SAEM fit)")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig
