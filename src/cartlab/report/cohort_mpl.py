"""Matplotlib renderers of the cohort views (static report), one function per view, drawn from the
data functions of :mod:`cartlab.report.cohort_data`.

Object-oriented matplotlib on the Agg canvas (no pyplot, no global state: safe in threads and worker
processes); fixed margins (``subplots_adjust``) instead of the constrained layout, which is slow.
Figures are 9 inches wide. Every colour and marker is in a legend; values that were not measured
(reconstructed, synthetic, simulated) are drawn open or pale, and the caption says how many.

:func:`cohort_figures` returns every view as a :class:`~cartlab.report.cohort_base.CohortView`
(``figure`` or ``table`` or ``unavailable`` = why not).
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from cartlab.model import NOT_MEASURED_SOURCES
from cartlab.report import cohort_data as cd
from cartlab.report.cohort_base import (
    ZERO_EXPOSURE_TEXT,
    CohortView,
    band_segments,
    curve_points,
    log_floor,
    under_death,
)
from cartlab.report.cohort_style import (
    GRADE_COLORS,
    LIGHT_BAR_TEXT,
    OPEN_TEXT,
    SWIMMER_MARKERS,
    grade_label,
    marker_key,
    ongoing_text,
    response_categories,
    response_color,
)
from cartlab.report.course_parts import UNITS, _log_axis

__all__ = [
    "CohortView",
    "cohort_figures",
    "cytokine_figure",
    "expansion_figure",
    "exposure_figure",
    "grade_figure",
    "incidence_figure",
    "rates_figure",
    "recovery_figure",
    "survival_figure",
    "swimmer_figure",
]

WIDTH = 9.0
FONT = 8.5
MAX_LABELLED = 60  # subjects: above this, no per-subject tick labels


def _figure(height: float) -> Figure:
    fig = Figure(figsize=(WIDTH, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _legend(ax, handles, title=None, loc="upper left", anchor=(1.01, 1.0), width=40):
    """A legend outside the axes on the right, labels wrapped to ``width`` characters."""
    for h in handles:
        h.set_label(textwrap.fill(h.get_label(), width))
    if handles:
        return ax.legend(handles=handles, title=title, loc=loc, bbox_to_anchor=anchor, fontsize=FONT - 1,
                         title_fontsize=FONT - 0.5, frameon=False, borderaxespad=0.0)
    return None


# ------------------------------------------------------------------------------------------------
# 1. swimmer


def _bars(y, end, h: float, colors, alpha: float) -> PolyCollection:
    """Horizontal bars from day 0 to ``end`` at rows ``y`` as one collection."""
    verts = [((0.0, yi - h / 2), (e, yi - h / 2), (e, yi + h / 2), (0.0, yi + h / 2)) for yi, e in zip(y, end)]
    return PolyCollection(verts, facecolors=colors, edgecolors="none", alpha=alpha)


def swimmer_figure(data: cd.SwimmerData) -> Figure:
    """One bar per subject (day 0 to death / last follow-up), coloured by best response; markers for
    response, relapse (antigen flag), allo-HSCT, death; an arrow when alive at last follow-up."""
    bars = data.bars
    n = bars.height
    fig = _figure(min(max(2.2 + 0.2 * n, 3.2), 16.0))
    fig.subplots_adjust(left=0.14 if n <= MAX_LABELLED else 0.07, right=0.66, top=0.95,
                        bottom=max(0.6 / fig.get_figheight(), 0.04))
    ax = fig.add_subplot()
    y = bars["order"].to_numpy()
    pale = (bars["end_kind"].is_in(list(NOT_MEASURED_SOURCES))).to_numpy()  # any not measured (C2)
    colors = [response_color(r) for r in bars["response"].to_list()]
    h = 0.7 if n <= MAX_LABELLED else 0.9
    end = bars["end_day"].to_numpy()
    ax.add_collection(_bars(y, end, h, colors, 0.6))  # one collection: barh makes a patch per bar (slow)
    if pale.any():  # follow-up from not-measured data: paler still
        ax.add_collection(_bars(y[pale], end[pale], h, "white", 0.4))
    ms = 36 if n <= MAX_LABELLED else max(4.0, 2400.0 / n)
    on = bars.filter("ongoing")
    xmax = float(max(bars["end_day"].max() or 1.0, data.markers["day"].max() or 0.0))
    ax.scatter(on["end_day"].to_numpy() + 0.025 * xmax, on["order"].to_numpy(), marker=">", s=ms * 0.8,
               color="#444444", linewidths=0, zorder=3)
    order = dict(zip(bars["subject_id"], bars["order"]))
    mk = data.markers.with_columns(pl.struct("marker", "antigen").map_elements(
        lambda r: marker_key(r["marker"], r["antigen"]), return_dtype=pl.String).alias("key"))
    any_open = False
    for key, (m, _sym, color, _text) in SWIMMER_MARKERS.items():
        sub = mk.filter(pl.col("key") == key)
        if sub.height == 0:
            continue
        ys = np.array([order[s] for s in sub["subject_id"]])
        cols = [response_color(lab) for lab in sub["label"]] if color is None else [color] * sub.height
        open_ = sub["kind"].is_in(list(NOT_MEASURED_SOURCES)).to_numpy()
        any_open |= bool(open_.any())
        for sel, filled in ((~open_, True), (open_, False)):
            if sel.any():
                c = [cols[i] for i in np.nonzero(sel)[0]]
                edge = "black" if key == "response" else c  # a response marker sits on a bar of its colour
                ax.scatter(sub["day"].to_numpy()[sel], ys[sel], marker=m, s=ms, zorder=4,
                           c=c if filled else "none", edgecolors=edge, linewidths=0.6 if filled else 1.3)
    top = under_death(mk)  # a relapse on the day of death: again on top of the death square, smaller
    for key, part in top.partition_by("key", as_dict=True).items() if top.height else ():
        m, _sym, color, _text = SWIMMER_MARKERS[key[0]]
        c = [response_color(lab) for lab in part["label"]] if color is None else [color] * part.height
        open_ = part["kind"].is_in(list(NOT_MEASURED_SOURCES)).to_list()  # a not-measured marker stays open
        ax.scatter(part["day"].to_numpy(), [order[s] for s in part["subject_id"]], marker=m, s=ms * 0.6, zorder=5,
                   c=["none" if o else x for x, o in zip(c, open_)],
                   edgecolors=[x if o else "white" for x, o in zip(c, open_)], linewidths=0.6)
    ax.set_ylim(-0.7, n - 0.3)
    ax.invert_yaxis()
    if n <= MAX_LABELLED:
        ax.set_yticks(y, bars["subject_id"].to_list(), fontsize=FONT - 1)
    else:
        ax.set_yticks([])
        ax.set_ylabel(f"{n} subjects, longest follow-up first", fontsize=FONT)
    ax.set_xlim(min(0.0, float(data.markers["day"].min() or 0.0)) - 1, xmax * 1.06 + 1)
    ax.set_xlabel("Days since CAR-T infusion (day 0)", fontsize=FONT)
    ax.tick_params(labelsize=FONT - 1)
    ax.axvline(0, color="#888888", lw=0.6)
    cats = response_categories(bars["response"].to_list())
    h1 = [Patch(color=response_color(c), label=c) for c in cats]
    if pale.any():
        h1.append(Patch(facecolor=response_color(cats[0]), alpha=0.5, label=LIGHT_BAR_TEXT))
    leg = _legend(ax, h1, "bar colour = best response")
    present = set(mk["key"].to_list())
    h2 = [Line2D([], [], marker=m, ls="", color=c or "#888888", markeredgecolor="black" if c is None else c,
                 label=text) for key, (m, _s, c, text) in SWIMMER_MARKERS.items() if key in present]
    if on.height:
        h2.append(Line2D([], [], marker=">", ls="", color="#444444", label=ongoing_text(data.events_absent)))
    if any_open:
        h2.append(Line2D([], [], marker="o", ls="", markerfacecolor="none", markeredgecolor="#444444", label=OPEN_TEXT))
    if leg is not None:
        ax.add_artist(leg)
    _legend(ax, h2, "markers", loc="lower left", anchor=(1.01, 0.0))
    return fig


# ------------------------------------------------------------------------------------------------
# 2/3. grade distributions (stacked bars), count recovery


def grade_figure(counts: pl.DataFrame, by: str = "term", title: str = "") -> Figure:
    """One horizontal 100% bar per ``by`` (term or scale): subjects by worst grade, not evaluable
    hatched at the end; each segment labelled with its count when wide enough."""
    groups = counts[by].unique(maintain_order=True).to_list()
    fig = _figure(1.3 + 0.55 * len(groups))
    fig.subplots_adjust(left=0.30, right=0.80, top=1 - 0.35 / fig.get_figheight(), bottom=0.55 / fig.get_figheight())
    ax = fig.add_subplot()
    used = set()
    starred = False
    for i, g in enumerate(groups):
        rows = counts.filter(pl.col(by) == g)
        total = int(rows["n"].sum())
        n_ne = int(rows.filter(pl.col("grade").is_null())["n"].sum())
        left = 0.0
        for r in rows.iter_rows(named=True):
            if r["n"] == 0:
                continue
            w = 100.0 * r["n"] / total
            ax.barh(i, w, left=left, color=GRADE_COLORS.get(r["grade"], "#ffffff"), edgecolor="#555555", lw=0.4,
                    hatch="///" if r["grade"] is None else None, height=0.62)
            used.add(r["grade"])
            star = bool(r.get("n_could_be_higher"))  # a range counted at its lower grade
            starred |= star
            if w >= 6:
                dark = r["grade"] is not None and r["grade"] >= 3
                ax.text(left + w / 2, i, f"{r['n']}*" if star else str(r["n"]), ha="center", va="center",
                        fontsize=FONT - 1, color="white" if dark else "black")
            left += w
        ax.text(101, i, f"n={total}" + (f"\n({total - n_ne} evaluable)" if n_ne else ""), va="center",
                fontsize=FONT - 1.5)
    ax.set_yticks(range(len(groups)), groups, fontsize=FONT - 0.5)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of all n subjects, not evaluable included (label = number of subjects)", fontsize=FONT)
    ax.tick_params(labelsize=FONT - 1)
    if title:
        ax.set_title(title, fontsize=FONT + 0.5, loc="left")
    handles = [Patch(facecolor=GRADE_COLORS[g], edgecolor="#555555", hatch="///" if g is None else None,
                     label=grade_label(g)) for g in (0, 1, 2, 3, 4, 5, None) if g in used]
    if starred:
        handles.append(Patch(facecolor="white", edgecolor="white",
                             label="* includes a range (input missing) counted at its lower grade"))
    _legend(ax, handles, "worst grade", anchor=(1.09, 1.0), width=22)
    return fig


def recovery_figure(data: cd.RecoveryData) -> Figure:
    """Cumulative share of subjects with neutrophil / platelet recovery by day, among those whose
    counts fell below the threshold (not evaluable included: a band from each such subject at its
    latest to its earliest possible day; the others, never below it or no data, in the legend)."""
    fig = _figure(3.4)
    fig.subplots_adjust(left=0.08, right=0.62, top=0.92, bottom=0.15)
    ax = fig.add_subplot()
    colors = {"neutrophil": "#08519c", "platelet": "#cb181d"}
    handles = []
    last = float(data.curve["day"].max() or 0.0)
    for lin in ("neutrophil", "platelet"):
        c = data.curve.filter(pl.col("lineage") == lin)
        if c.height:  # to the last recovery day seen in the cohort (not extrapolated further)
            x = np.concatenate([[0.0], c["day"].to_numpy(), [last]])
            lo = np.concatenate([[0.0], 100 * c["proportion_low"].to_numpy(), [100 * c["proportion_low"][-1]]])
            hi = np.concatenate([[0.0], 100 * c["proportion_high"].to_numpy(), [100 * c["proportion_high"][-1]]])
            if (lo != hi).any():
                ax.fill_between(x, lo, hi, step="post", color=colors[lin], alpha=0.2, linewidth=0)
                ax.step(x, hi, where="post", color=colors[lin], lw=1.0, ls="--")
            ax.step(x, lo, where="post", color=colors[lin], lw=1.6)
        handles.append(Line2D([], [], color=colors[lin], lw=1.6, label=data.legend(lin)))
    if data.subjects.filter(pl.col("status").is_in(["not evaluable", "censored"])).height:
        handles.append(Patch(facecolor="#888888", alpha=0.3, label=cd.RECOVERY_BAND_TEXT))
    ax.set_ylim(0, 102)
    ax.set_xlabel("Days since CAR-T infusion", fontsize=FONT)
    ax.set_ylabel(f"% recovered ({data.consecutive} consecutive days)", fontsize=FONT)
    ax.tick_params(labelsize=FONT - 1)
    _legend(ax, handles, "count recovery (ASTCT / CIBMTR)")
    return fig


# ------------------------------------------------------------------------------------------------
# 4. expansion and exposure


def expansion_figure(data: cd.ExpansionData) -> Figure:
    """Every subject's CAR-T copies over time (log axis), coloured by best response; open markers =
    not measured, down-triangles = below the limit of quantification (drawn at the limit)."""
    fig = _figure(4.2)
    fig.subplots_adjust(left=0.09, right=0.68, top=0.94, bottom=0.12)
    ax = fig.add_subplot()
    pts = data.points
    many = pts["subject_id"].n_unique() > 100
    cats = response_categories(pts["response"].unique().to_list())
    lines = pts.group_by("subject_id", maintain_order=True).agg("day", "value", pl.col("response").first(),
                                                                 pl.col("kind").is_in(list(NOT_MEASURED_SOURCES)).all().alias("nm"))
    for cat in cats:
        sub = lines.filter(pl.col("response") == cat)
        segs = [np.column_stack([d, v]) for d, v in zip(sub["day"].to_list(), sub["value"].to_list())]
        styles = ["dotted" if nm else "solid" for nm in sub["nm"].to_list()]
        ax.add_collection(LineCollection(segs, colors=response_color(cat), linewidths=0.6 if many else 1.1,
                                         alpha=0.45 if many else 0.9, linestyles=styles))
    ms = 6 if many else 18
    markers = {"measured": "o", "blq": "v", "above": "^"}
    for key, open_, sub in data.marker_groups():
        c = [response_color(r) for r in sub["response"].to_list()]
        ax.scatter(sub["day"].to_numpy(), sub["value"].to_numpy(), marker=markers[key], s=ms, zorder=3,
                   c="none" if open_ else c, edgecolors=c, linewidths=0.7)
    _log_axis(ax)  # decade ticks, plain-text labels: mathtext and minor ticks were a tenth of the views' time
    _whole_decades(ax)
    ax.set_xlabel("Days since CAR-T infusion", fontsize=FONT)
    ax.set_ylabel(f"CAR transgene ({data.unit})", fontsize=FONT)
    ax.tick_params(labelsize=FONT - 1)
    h1 = [Line2D([], [], color=response_color(c), lw=1.5, label=c) for c in cats]
    leg = _legend(ax, h1, "line colour = best response")
    h2 = [Line2D([], [], marker="o", ls="", color="#444444", label="measured value")]
    if pts["kind"].is_in(list(NOT_MEASURED_SOURCES)).any():
        h2.append(Line2D([], [], marker="o", ls=":", color="#444444", markerfacecolor="none", label=OPEN_TEXT))
    drawn = {key for key, _, _ in data.marker_groups()}
    h2 += [Line2D([], [], marker=markers[k], ls="", color="#444444", label=cd.EXPANSION_MARKS[k])
           for k in ("blq", "above") if k in drawn]
    if leg is not None:
        ax.add_artist(leg)
    _legend(ax, h2, "markers", loc="lower left", anchor=(1.01, 0.0))
    return fig


def _whole_decades(ax) -> None:
    """The log axis widened to whole decades, so its decade-only labels (``_log_axis``) always show two."""
    ax.autoscale_view()
    lo, hi = ax.get_ylim()
    if lo > 0 and hi > 0:
        a, b = math.floor(math.log10(lo) + 1e-9), math.ceil(math.log10(hi) - 1e-9)
        ax.set_ylim(10.0 ** a, 10.0 ** max(b, a + 1))


def exposure_figure(data: cd.ExposureData) -> Figure:
    """Cmax and AUC(0-28) per best-response category (log axis), points coloured by CRS grade >= 3."""
    fig = _figure(3.8)
    fig.subplots_adjust(left=0.08, right=0.74, top=0.90, bottom=0.22, wspace=0.32)
    pts = data.points
    cats = response_categories(pts["response"].to_list())
    rng = np.random.default_rng(0)  # jitter only; deterministic
    crs_col = {True: "#d95f0e", False: "#3182bd", None: "#bdbdbd"}
    unit = UNITS.get(data.unit, data.unit) or "unit not known"
    auc = f"AUC day {data.window[0]:g}-{data.window[1]:g}"
    for j, (col, label) in enumerate((("car_cmax", f"Cmax ({unit})"), ("car_auc_0_28", f"{auc} ({unit} × day)"))):
        ax = fig.add_subplot(1, 2, j + 1)
        floor = log_floor(pts[col].to_list())
        medians = data.medians(col)
        for i, cat in enumerate(cats):
            sub = pts.filter((pl.col("response") == cat) & (pl.col(col) > 0))
            x = i + rng.uniform(-0.18, 0.18, sub.height)
            ax.scatter(x, sub[col].to_numpy(), s=14, c=[crs_col[v] for v in sub["crs_ge3"].to_list()], linewidths=0)
            if medians.get(cat) is not None:  # zeros included; a median of 0 at the floor
                ax.hlines(medians[cat] if medians[cat] > 0 else floor, i - 0.3, i + 0.3, color="black", lw=1.2)
            zero = pts.filter((pl.col("response") == cat) & (pl.col(col) == 0))
            if zero.height:  # never silently off the log axis: at the floor, marked
                ax.scatter(i + rng.uniform(-0.18, 0.18, zero.height), [floor] * zero.height, s=22, marker="v",
                           c=[crs_col[v] for v in zero["crs_ge3"].to_list()], edgecolors="black", linewidths=0.6)
        _log_axis(ax)
        _whole_decades(ax)
        ax.set_xticks(range(len(cats)), cats, rotation=45, ha="right", fontsize=FONT - 1)
        ax.set_xlim(-0.6, max(len(cats) - 0.4, 0.6))
        ax.set_ylabel(label, fontsize=FONT)
        ax.tick_params(labelsize=FONT - 1)
    handles = [Line2D([], [], marker="o", ls="", color=crs_col[True], label="CRS grade >= 3 (ASTCT)"),
               Line2D([], [], marker="o", ls="", color=crs_col[False], label="CRS grade 0-2"),
               Line2D([], [], marker="o", ls="", color=crs_col[None], label="CRS >= 3 not settled (not evaluable, or a range)"),
               Line2D([], [], color="black", lw=1.2, label="median of the category")]
    if pts.filter((pl.col("car_cmax") == 0) | (pl.col("car_auc_0_28") == 0)).height:
        handles.append(Line2D([], [], marker="v", ls="", color="#888888", markeredgecolor="black", label=ZERO_EXPOSURE_TEXT))
    _legend(fig.axes[-1], handles, "points", width=26)  # inside the figure's right edge (PNG and SVG)
    return fig


# ------------------------------------------------------------------------------------------------
# 5. cytokine heat map


def cytokine_figure(data: cd.CytokineMatrix) -> Figure:
    """Subjects x days, colour = log10 of the day's maximum; grey = no sample; a measured 0 is drawn
    at the floor of the scale (×), a censored "<x" at its limit (▲); a dot marks a value not
    measured when measured and not-measured values are mixed."""
    subjects = list(data.subjects)
    n = len(subjects)
    d0, d1 = data.days
    fig = _figure(min(max(2.0 + 0.16 * n, 3.0), 12.0))
    fig.subplots_adjust(left=0.14 if n <= MAX_LABELLED else 0.06, right=0.86, top=0.95,
                        bottom=max(0.55 / fig.get_figheight(), 0.05))
    ax = fig.add_subplot()
    row = {s: i for i, s in enumerate(subjects)}
    cells = data.log_cells()
    m = np.full((n, d1 - d0 + 1), np.nan)
    r = np.array([row[s] for s in cells["subject_id"]], dtype=int)
    c = cells["day"].to_numpy() - d0
    m[r, c] = cells["log10"].to_numpy()
    ax.set_facecolor("#eeeeee")
    im = ax.imshow(m, aspect="auto", interpolation="nearest", cmap="magma_r",
                   extent=(d0 - 0.5, d1 + 0.5, n - 0.5, -0.5))
    marks = [(cells.filter("zero"), "x", "#1a9850", f"{cd.HEAT_ZERO_TEXT} ({data.floor():g} {data.unit})"),
             (cells.filter("blq"), "^", "#1f78b4", cd.HEAT_BLQ_TEXT),
             (cells.filter("above") if "above" in cells.columns else cells.clear(), "*", "#d7301f", cd.HEAT_ABOVE_TEXT)]
    kinds = cells["kind"].unique().to_list()
    # mark the not-measured cells when some cells were measured (a mix; every cell not measured: the stamp says it)
    if set(kinds) & set(NOT_MEASURED_SOURCES) and set(kinds) - set(NOT_MEASURED_SOURCES):
        marks.append((cells.filter(pl.col("kind").is_in(list(NOT_MEASURED_SOURCES))), "o", "#1f78b4",
                      "value not measured (reconstructed / synthetic)"))
    shown = False
    for sel, mk, col, text in marks:
        if sel.height:
            ax.scatter(sel["day"].to_numpy(), [row[s] for s in sel["subject_id"]], s=9 if mk != "o" else 4, c=col,
                       marker=mk, linewidths=0.8 if mk == "x" else 0, label=text)
            shown = True
    if shown:
        ax.legend(loc="upper left", bbox_to_anchor=(0, -0.12), fontsize=FONT - 1, frameon=False)
    if n <= MAX_LABELLED:
        ax.set_yticks(range(n), subjects, fontsize=FONT - 1)
    else:
        ax.set_yticks([])
        ax.set_ylabel(f"{n} subjects, highest peak first", fontsize=FONT)
    ax.set_xlabel("Day since CAR-T infusion (grey = no sample)", fontsize=FONT)
    ax.tick_params(labelsize=FONT - 1)
    cax = fig.add_axes((0.88, 0.25, 0.02, 0.6))
    cb = fig.colorbar(im, cax=cax)
    cb.set_label(f"log10 {data.param} daily max ({data.unit})", fontsize=FONT)
    cb.ax.tick_params(labelsize=FONT - 1)
    return fig


# ------------------------------------------------------------------------------------------------
# 6. survival and relapse incidence (numbers at risk under the axis)


KM_COLORS = {"OS": "#1b9e77", "EFS": "#d95f02", "RFS": "#7570b3", "LFS": "#e7298a",
             "relapse": "#b2182b", "death without relapse": "#525252"}


ROW_IN = 0.2  # inches per at-risk row


def _risk_margin(fig, n_rows: int) -> float:
    """Bottom margin (figure fraction) leaving room for the x label and ``n_rows`` at-risk rows."""
    return (0.8 + ROW_IN * n_rows + 0.2) / fig.get_figheight()


def _at_risk_rows(fig, ax, rows: list[tuple[str, list[int]]], days: list[float], colors: list[str]) -> None:
    """Numbers at risk as text rows in an axes under ``ax`` sharing its x positions."""
    pos = ax.get_position()
    H = fig.get_figheight()
    tab = fig.add_axes((pos.x0, 0.12 / H, pos.width, ROW_IN * len(rows) / H), sharex=ax)
    tab.set_axis_off()
    for i, ((name, counts), color) in enumerate(zip(rows, colors)):
        yy = 1 - (i + 0.5) / len(rows)
        tab.text(-0.01, yy, name, transform=tab.transAxes, ha="right", va="center", fontsize=FONT - 1, color=color)
        for d, k in zip(days, counts):
            tab.text(d, yy, str(k), ha="center", va="center", fontsize=FONT - 1, transform=tab.get_xaxis_transform())
    tab.text(0.0, 1.15, "Number at risk", transform=tab.transAxes, fontsize=FONT - 1, fontweight="bold")


def _curve_axes(ax, at_risk: pl.DataFrame, tmax: float, ylabel: str, xlabel: str) -> list[float]:
    """Probability y axis, x ticks at the at-risk days; returns those days."""
    ax.set_ylim(-0.02, 1.04)
    ax.set_ylabel(ylabel, fontsize=FONT)
    ax.set_xlabel(xlabel, fontsize=FONT)
    ax.tick_params(labelsize=FONT - 1)
    days = sorted(set(at_risk["time"].to_list()))
    ax.set_xticks(days)
    ax.set_xlim(-0.02 * max(days[-1], 1), max(days[-1], tmax) * 1.03 + 0.5)
    return days


def _band(ax, t, lo, hi, col: str) -> None:
    """The 95% CI band of a post-step curve as the dashboard draws it (:func:`band_segments`): the
    interval at ``t[i]`` holds on ``[t[i], t[i+1])``, so the last defined one reaches the time where
    the interval becomes undefined (e.g. S = 0: a gap from there on, never a bound)."""
    for x, yl, yh in band_segments(t, lo, hi):
        ax.fill_between(x, yl, yh, color=col, alpha=0.15, lw=0)


def survival_figure(data) -> Figure:
    """Kaplan-Meier curves with 95% CI bands and censoring ticks; numbers at risk under the axis."""
    names = data.steps["PARAMCD"].unique(maintain_order=True).to_list()
    fig = _figure(3.6 + ROW_IN * len(names))
    fig.subplots_adjust(left=0.12, right=0.72, top=0.94, bottom=_risk_margin(fig, len(names)))
    ax = fig.add_subplot()
    for p in names:
        s = data.steps.filter(pl.col("PARAMCD") == p).sort("time")
        col = KM_COLORS.get(p, "#333333")
        t, y, lo, hi = curve_points(s, "survival", 1.0)
        ax.step(t, y, where="post", color=col, lw=1.6)
        _band(ax, t, lo, hi, col)
        cen = s.filter(pl.col("n_censored") > 0)
        ax.plot(cen["time"].to_numpy(), cen["survival"].to_numpy(), ls="", marker="|", ms=7, color=col)
    days = _curve_axes(ax, data.at_risk, float(data.steps["time"].max()), "Probability",
                       "Days since CAR-T infusion (RFS: since remission)")
    rows = [(p, data.at_risk.filter(pl.col("PARAMCD") == p).sort("time")["n_at_risk"].to_list()) for p in names]
    _at_risk_rows(fig, ax, rows, days, [KM_COLORS.get(p, "#333333") for p in names])
    from cartlab.report.cohort_stats import ENDPOINT_NAMES

    handles = [Line2D([], [], color=KM_COLORS.get(p, "#333"), lw=1.6, label=f"{ENDPOINT_NAMES.get(p, p)} ({p})")
               for p in names]
    handles += [Patch(color="#888888", alpha=0.3, label="95% CI (log-log)"),
                Line2D([], [], marker="|", ls="", color="#333", ms=7, label="censored")]
    _legend(ax, handles, "Kaplan-Meier")
    return fig


def incidence_figure(data) -> Figure:
    """Cumulative incidence of relapse and of death without relapse (Aalen-Johansen, 95% CI)."""
    fig = _figure(3.6 + ROW_IN)
    fig.subplots_adjust(left=0.12, right=0.72, top=0.94, bottom=_risk_margin(fig, 1))
    ax = fig.add_subplot()
    events = data.curves["event"].unique(maintain_order=True).to_list()
    for ev in events:
        col = KM_COLORS.get(ev, "#333")
        t, y, lo, hi = curve_points(data.curves.filter(pl.col("event") == ev), "cif", 0.0)
        ax.step(t, y, where="post", color=col, lw=1.6)
        _band(ax, t, lo, hi, col)
    days = _curve_axes(ax, data.at_risk, float(data.curves["time"].max()), "Cumulative incidence",
                       f"Days since remission ({getattr(data, 'remission', 'CR/CRh/CRi')})")
    _at_risk_rows(fig, ax, [("CIR", data.at_risk.sort("time")["n_at_risk"].to_list())], days, ["#333333"])
    handles = [Line2D([], [], color=KM_COLORS.get(e, "#333"), lw=1.6, label=e) for e in events]
    handles.append(Patch(color="#888888", alpha=0.3, label="95% CI"))
    _legend(ax, handles, "Aalen-Johansen")
    return fig


# ------------------------------------------------------------------------------------------------
# 8. response rates


def rates_figure(rates: pl.DataFrame) -> Figure:
    """Each rate with its exact 95% CI (horizontal bar), overall and per criteria set."""
    r = rates.filter(pl.col("n") > 0)
    labels = [f"{e} — {c} ({k}/{n})" for e, c, k, n in r.select("endpoint", "criteria", "n_responders", "n").iter_rows()]
    fig = _figure(1.1 + 0.35 * max(len(labels), 1))
    fig.subplots_adjust(left=0.42, right=0.96, top=1 - 0.25 / fig.get_figheight(), bottom=0.55 / fig.get_figheight())
    ax = fig.add_subplot()
    y = np.arange(len(labels))
    rate = r["rate"].to_numpy() * 100
    lo, hi = r["ci_low"].to_numpy() * 100, r["ci_high"].to_numpy() * 100
    ax.errorbar(rate, y, xerr=[rate - lo, hi - rate], fmt="o", color="#1b7837", ecolor="#555555", capsize=3, ms=5)
    ax.set_yticks(y, labels, fontsize=FONT - 1)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of subjects with response criteria (point = rate, bar = exact 95% CI, Clopper-Pearson)",
                  fontsize=FONT - 0.5)
    ax.tick_params(labelsize=FONT - 1)
    return fig


# ------------------------------------------------------------------------------------------------
# every view


def cohort_figures(analysis, subject_ids=None) -> list[CohortView]:
    """Every cohort view of ``analysis`` as matplotlib figures and tables (``subject_ids``: a subset)."""
    import sys

    from cartlab.report.cohort_views import view_specs

    return view_specs(analysis, subject_ids, sys.modules[__name__])


def events_band(fig: Figure, text: str) -> Figure:
    """``text`` (:data:`~cartlab.report.cohort_style.EVENTS_BAND_TEXT`) in a band inside the image, as
    the provenance stamp (:func:`cartlab.report.files.stamp_figure`): the swimmer, survival and
    relapse-incidence images of a study without events.csv say so on their own (review 41 F6)."""
    from cartlab.report.files import stamp_figure

    stamp_figure(fig, text)
    return fig
