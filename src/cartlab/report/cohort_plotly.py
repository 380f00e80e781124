"""Plotly renderers of the cohort views (the dashboard), from the same data functions as the static
report (:mod:`cartlab.report.cohort_data`), with the same colours, markers and legends
(:mod:`cartlab.report.cohort_style`).

:func:`cohort_figures_plotly` returns every view as a :class:`~cartlab.report.cohort_base.CohortView`
whose ``figure`` is a ``plotly.graph_objects.Figure`` (or None for a table-only view);
``subject_ids`` (the dashboard's filters) restricts every view. Large cohorts stay fast: one trace
per category (lines separated by gaps), WebGL scatter for the many-point views. The figures are built
without plotly's property validation (:data:`VALIDATE`), so a property set on them later is not checked
either: ``go.Figure(fig)`` gives a validated copy.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.colors import make_colorscale, sequential
from plotly.subplots import make_subplots

from cartlab.model import NOT_MEASURED_SOURCES
from cartlab.report import cohort_base as cb
from cartlab.report import cohort_data as cd
from cartlab.report import cohort_style as style
from cartlab.report.cohort_base import CohortView
from cartlab.report.course_parts import UNITS

__all__ = [
    "CohortView",
    "cohort_figures_plotly",
    "cytokine_figure",
    "expansion_figure",
    "exposure_figure",
    "grade_figure",
    "incidence_figure",
    "plotly_template",
    "plotly_text",
    "plotly_text_expr",
    "rates_figure",
    "recovery_figure",
    "survival_figure",
    "swimmer_figure",
]

X_DAYS = "Days since CAR-T infusion"
KM_COLORS = {"OS": "#1b9e77", "EFS": "#d95f02", "RFS": "#7570b3", "LFS": "#e7298a",
             "relapse": "#b2182b", "death without relapse": "#525252"}


#: plotly's property validation of the cohort figures: off. It took about half of the cohort page's
#: time at 1,000 subjects (issue 17); the figures are written in the canonical forms validation would
#: produce (a template object, not its name; a colour scale as a list; titles as ``{"text": ...}``),
#: and tests/test_cohort_plotly_unvalidated_s44.py holds their JSON equal to the validated one.
VALIDATE = False

#: plotly's "Magma" colour scale as validation expands the name (plotly.js does not know it)
_MAGMA = make_colorscale(sequential.Magma)


def trace(kind: str, **props):
    """A plotly trace of type ``kind`` (``"Scatter"``, ``"Bar"`` ...), validated only with :data:`VALIDATE`."""
    return getattr(go, kind)(_validate=VALIDATE, **props)


def figure(traces) -> go.Figure:
    """A figure of ``traces`` in one step (``Figure.add_trace`` validates every trace again)."""
    return go.Figure(data=list(traces), _validate=VALIDATE)


def plotly_template() -> dict:
    """The ``plotly_white`` template as a plain dict, as plotly.js reads it (a template's name is resolved
    by validation only); a fresh copy each call (0.3 ms), so a figure that changes its template changes
    no other."""
    import plotly.io as pio

    return pio.templates["plotly_white"].to_plotly_json()


#: a legend above the plot, in rows: the swimmer's and the grade bars' long legends beside the plot
#: left it a narrow strip in the dashboard's card (and cut the grade legend to a scroll box)
TOP_LEGEND = {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0, "font": {"size": 11}}


def _layout(fig: go.Figure, height: int, **kw) -> go.Figure:
    kw.setdefault("margin", {"l": 70, "r": 20, "t": 30, "b": 50})
    kw.setdefault("legend", {"font": {"size": 11}})
    fig.layout.template = plotly_template()  # assigned: update_layout would walk the template's every key
    fig.update_layout(height=height, **kw)
    return fig


def plotly_text(value):
    """Data text for plotly (tick labels, hover texts, legend names, category values): ``&``, ``<`` and
    ``>`` as the entities plotly.js decodes, so its pseudo-HTML (``<a href>``, ``<b>``, ``<br>``) in a
    subject id or a label is shown as text and can never become a link or markup. A list is escaped
    item by item; None and numbers pass unchanged. cartlab's own markup (``<br>``, ``<extra>``) is added
    after escaping."""
    if isinstance(value, str):
        return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if isinstance(value, (list, tuple)):
        return [plotly_text(v) for v in value]
    return value


def plotly_text_expr(expr: pl.Expr) -> pl.Expr:
    """:func:`plotly_text` as a polars expression over a String column."""
    return (expr.str.replace_all("&", "&amp;", literal=True).str.replace_all("<", "&lt;", literal=True)
            .str.replace_all(">", "&gt;", literal=True))


def _symbol(base: str, open_: bool) -> str:
    return f"{base}-open" if open_ else base


def swimmer_figure(data: cd.SwimmerData) -> go.Figure:
    bars, n = data.bars, data.bars.height
    traces = []
    for cat in style.response_categories(bars["response"].to_list()):
        b = bars.filter(pl.col("response") == cat)
        pale = (b["end_kind"].is_in(list(NOT_MEASURED_SOURCES))).to_numpy()  # any not measured (C2)
        traces.append(trace("Bar",
            y=plotly_text(b["subject_id"].to_list()), x=b["end_day"].to_list(), base=0, orientation="h",
            name=plotly_text(cat),
            legendgroup="bars", legendgrouptitle_text="bar colour = best response",
            marker={"color": style.response_color(cat), "opacity": 0.6, "pattern": {"shape": ["/" if p else "" for p in pale]}},
            hovertemplate="%{y}: follow-up to day %{x}<extra>" + plotly_text(cat) + "</extra>"))
    mk = data.markers
    keys = [style.marker_key(m, a) for m, a in zip(mk["marker"].to_list(), mk["antigen"].to_list())]
    mk = mk.with_columns(pl.Series("key", keys, pl.String))
    for key, (_m, sym, color, text) in style.SWIMMER_MARKERS.items():
        for open_ in (False, True):
            sub = mk.filter((pl.col("key") == key) & (pl.col("kind").is_in(list(NOT_MEASURED_SOURCES)) == open_))
            if sub.height == 0:
                continue
            cols = [style.response_color(lab) for lab in sub["label"]] if color is None else color
            traces.append(trace("Scatter",
                x=sub["day"].to_list(), y=plotly_text(sub["subject_id"].to_list()), mode="markers",
                name=text + (" (not measured)" if open_ else ""), legendgroup="markers", legendgrouptitle_text="markers",
                text=plotly_text(sub["label"].to_list()), hovertemplate="%{y} day %{x}: %{text}<extra></extra>",
                marker={"symbol": _symbol(sym, open_), "size": 9 if n <= 60 else 6, "color": cols,
                            "line": {"color": "black" if key == "response" else cols, "width": 1}}))
    top = cb.under_death(mk)  # a relapse on the day of death: again on top of the death square, smaller
    for key, part in top.partition_by("key", as_dict=True).items() if top.height else ():
        _m, sym, color, text = style.SWIMMER_MARKERS[key[0]]
        cols = [style.response_color(lab) for lab in part["label"]] if color is None else [color] * part.height
        open_ = part["kind"].is_in(list(NOT_MEASURED_SOURCES)).to_list()  # a not-measured marker stays open
        traces.append(trace("Scatter",
            x=part["day"].to_list(), y=plotly_text(part["subject_id"].to_list()), mode="markers", name=text,
            showlegend=False, legendgroup="markers", text=plotly_text(part["label"].to_list()),
            hovertemplate="%{y} day %{x}: %{text}<extra></extra>",
            marker={"symbol": [_symbol(sym, o) for o in open_], "size": 6 if n <= 60 else 4, "color": cols,
                    "line": {"color": [c if o else "white" for c, o in zip(cols, open_)], "width": 1}}))
    on = bars.filter("ongoing")
    if on.height:
        traces.append(trace("Scatter", x=(on["end_day"] + 1.0).to_list(), y=plotly_text(on["subject_id"].to_list()),
                                 mode="markers",
                                 name=style.ongoing_text(data.events_absent), legendgroup="markers",
                                 marker={"symbol": "triangle-right", "size": 7, "color": "#444444"}, hoverinfo="skip"))
    order = plotly_text(bars.sort("order")["subject_id"].to_list())
    fig = figure(traces)
    fig.update_yaxes(categoryorder="array", categoryarray=order[::-1], showticklabels=n <= 60,
                     title=None if n <= 60 else f"{n} subjects, longest follow-up first")
    fig.update_xaxes(title=X_DAYS + " (day 0)")
    # the legend above the plot: about 19 px a row (its entries and the two group titles)
    rows = sum(1 for t in traces if t.showlegend is not False) + 2
    return _layout(fig, int(min(max(200 + 18 * n, 320), 1400)) + 19 * rows + 20, barmode="overlay", legend=TOP_LEGEND)


def grade_figure(counts: pl.DataFrame, by: str = "term", title: str = "") -> go.Figure:
    traces = []
    totals = counts.group_by(by, maintain_order=True).agg(pl.col("n").sum().alias("t"))
    c = counts.join(totals, on=by).with_columns((100 * pl.col("n") / pl.col("t")).alias("share"))
    grades = [g for g in (0, 1, 2, 3, 4, 5, None) if c.filter(
        (pl.col("grade").is_null() if g is None else pl.col("grade") == g) & (pl.col("n") > 0)).height]
    for g in grades:
        sub = c.filter(pl.col("grade").is_null() if g is None else pl.col("grade") == g)
        traces.append(trace("Bar", y=plotly_text(sub[by].to_list()), x=sub["share"].to_list(), orientation="h",
                             name=style.grade_label(g),
                             text=[str(v) if v else "" for v in sub["n"].to_list()], textposition="inside",
                             marker={"color": style.GRADE_COLORS[g], "line": {"color": "#555555", "width": 0.5},
                                         "pattern": {"shape": "/" if g is None else ""}},
                             hovertemplate="%{y}: %{text} subject(s), %{x:.1f}%<extra>" + style.grade_label(g) + "</extra>"))
    groups = plotly_text(totals[by].to_list())
    fig = figure(traces)
    fig.update_yaxes(categoryorder="array", categoryarray=groups[::-1])
    fig.update_xaxes(title="% of all subjects, not evaluable included (label = number of subjects)", range=[0, 100])
    legend = {**TOP_LEGEND, "title": {"text": "worst grade"}, "traceorder": "normal"}  # grade 0 first
    return _layout(fig, 170 + 45 * len(groups), barmode="stack", legend=legend,
                   margin={"l": 70, "r": 20, "t": 70, "b": 50}, **({"title": {"text": title}} if title else {}))


def recovery_figure(data: cd.RecoveryData) -> go.Figure:
    """As :func:`cartlab.report.cohort_mpl.recovery_figure`: the lower bound (solid) and, where not
    evaluable subjects leave it open, the upper bound (dashed) with the band between them."""
    traces = []
    colors = {"neutrophil": "#08519c", "platelet": "#cb181d"}
    fills = {"neutrophil": "rgba(8,81,156,0.2)", "platelet": "rgba(203,24,29,0.2)"}
    last = float(data.curve["day"].max() or 0.0)
    for lin in ("neutrophil", "platelet"):
        c = data.curve.filter(pl.col("lineage") == lin)
        x = [0.0, *c["day"].to_list(), last] if c.height else []
        ys = {b: ([0.0, *(100 * c[f"proportion_{b}"]).to_list(), 100 * c[f"proportion_{b}"][-1]] if c.height else [])
              for b in ("low", "high")}
        name = plotly_text(data.legend(lin))
        if ys["low"] != ys["high"]:
            traces.append(trace("Scatter", x=x, y=ys["high"], mode="lines", line={"shape": "hv", "color": colors[lin],
                                                                            "dash": "dash", "width": 1},
                                     name=f"{name}: upper bound", showlegend=False, legendgroup=lin))
            traces.append(trace("Scatter", x=x, y=ys["low"], mode="lines", line={"shape": "hv", "color": colors[lin]},
                                     fill="tonexty", fillcolor=fills[lin], name=name, legendgroup=lin))
        else:
            traces.append(trace("Scatter", x=x, y=ys["low"], mode="lines", line={"shape": "hv", "color": colors[lin]},
                                     name=name, legendgroup=lin))
    fig = figure(traces)
    if data.subjects.filter(pl.col("status").is_in(["not evaluable", "censored"])).height:
        fig.update_layout(annotations=[{"text": plotly_text(cd.RECOVERY_BAND_TEXT), "xref": "paper", "yref": "paper",
                                        "x": 0, "y": -0.25, "showarrow": False, "font": {"size": 10}, "xanchor": "left"}])
    fig.update_xaxes(title=X_DAYS)
    fig.update_yaxes(title=f"% recovered ({data.consecutive} consecutive days)", range=[0, 102])
    return _layout(fig, 360)


def _gapped(groups: pl.DataFrame) -> tuple[list, list]:
    """x, y of several lines in one trace, separated by None (fast for hundreds of subjects)."""
    xs, ys = [], []
    for d, v in zip(groups["day"].to_list(), groups["value"].to_list()):
        xs += [*d, None]
        ys += [*v, None]
    return xs, ys


def expansion_figure(data: cd.ExpansionData) -> go.Figure:
    traces = []
    pts = data.points
    lines = pts.group_by("subject_id", maintain_order=True).agg("day", "value", pl.col("response").first(),
                                                                 pl.col("kind").is_in(list(NOT_MEASURED_SOURCES)).all().alias("nm"))
    many = lines.height > 100
    for cat in style.response_categories(lines["response"].to_list()):
        for nm in (False, True):
            sub = lines.filter((pl.col("response") == cat) & (pl.col("nm") == nm))
            if sub.height == 0:
                continue
            x, y = _gapped(sub)
            traces.append(trace("Scattergl", x=x, y=y, mode="lines", name=plotly_text(cat), legendgroup=cat, showlegend=not nm,
                                       line={"color": style.response_color(cat), "width": 0.7 if many else 1.4,
                                                 "dash": "dot" if nm else "solid"}, opacity=0.5 if many else 0.9,
                                       hoverinfo="skip"))
    symbols = {"measured": "circle", "blq": "triangle-down", "above": "triangle-up"}
    for key, open_, sub in data.marker_groups():
        traces.append(trace("Scattergl",
            x=sub["day"].to_list(), y=sub["value"].to_list(), mode="markers",
            name=cd.EXPANSION_MARKS[key] + (f" — {style.OPEN_TEXT}" if open_ else ""),
            text=plotly_text(sub["subject_id"].to_list()), hovertemplate="%{text} day %{x}: %{y:.3s}<extra></extra>",
            marker={"symbol": _symbol(symbols[key], open_), "size": 4 if many else 7,
                    "color": [style.response_color(r) for r in sub["response"].to_list()]}))
    fig = figure(traces)
    fig.update_yaxes(type="log", title=f"CAR transgene ({data.unit})")
    fig.update_xaxes(title=X_DAYS)
    return _layout(fig, 460)


def exposure_figure(data: cd.ExposureData) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Cmax", f"AUC day {data.window[0]:g}-{data.window[1]:g}"))
    pts = data.points
    cats = style.response_categories(pts["response"].to_list())
    label = {True: "CRS grade >= 3 (ASTCT)", False: "CRS grade 0-2", None: "CRS >= 3 not settled (not evaluable, or a range)"}
    color = {True: "#d95f0e", False: "#3182bd", None: "#bdbdbd"}
    rng = np.random.default_rng(0)
    for j, col in enumerate(("car_cmax", "car_auc_0_28")):
        for flag in (True, False, None):
            sub = pts.filter((pl.col("crs_ge3").is_null() if flag is None else pl.col("crs_ge3") == flag)
                             & (pl.col(col) > 0))
            if sub.height == 0:
                continue
            x = [cats.index(r) + rng.uniform(-0.18, 0.18) for r in sub["response"].to_list()]
            fig.add_trace(go.Scattergl(x=x, y=sub[col].to_list(), mode="markers", name=label[flag], legendgroup=str(flag),
                                       showlegend=j == 0, text=plotly_text(sub["subject_id"].to_list()),
                                       hovertemplate="%{text}: %{y:.3s}<extra></extra>",
                                       marker={"color": color[flag], "size": 6}), row=1, col=j + 1)
        zero = pts.filter(pl.col(col) == 0)
        if zero.height:  # never silently off the log axis: at the floor, marked and named
            floor = cb.log_floor(pts[col].to_list())
            fig.add_trace(go.Scatter(
                x=[cats.index(r) + rng.uniform(-0.18, 0.18) for r in zero["response"].to_list()], y=[floor] * zero.height,
                mode="markers", name=cb.ZERO_EXPOSURE_TEXT, legendgroup="zero", showlegend=j == 0,
                text=plotly_text(zero["subject_id"].to_list()), hovertemplate="%{text}: 0 (no expansion)<extra></extra>",
                marker={"symbol": "triangle-down", "size": 8, "line": {"color": "black", "width": 1},
                        "color": [color[v] for v in zero["crs_ge3"].to_list()]}), row=1, col=j + 1)
        floor = cb.log_floor(pts[col].to_list())
        medians = data.medians(col)
        first = next((c for c in cats if medians.get(c) is not None), None)
        for i, (cat, med) in enumerate((c, medians.get(c)) for c in cats):
            if med is not None:  # the median of the category, zeros included (as the report's figure and table)
                fig.add_trace(go.Scatter(x=[i - 0.3, i + 0.3], y=[med if med > 0 else floor] * 2, mode="lines",
                                         line={"color": "black", "width": 1.5}, name="median of the category",
                                         legendgroup="median", showlegend=j == 0 and cat == first,
                                         hovertemplate=f"{plotly_text(cat)} median: {med:.3g}<extra></extra>"),
                              row=1, col=j + 1)
        fig.update_yaxes(type="log", row=1, col=j + 1)
        fig.update_xaxes(tickvals=list(range(len(cats))), ticktext=plotly_text(cats), row=1, col=j + 1)
    unit = UNITS.get(data.unit, data.unit) or "unit not known"
    fig.update_yaxes(title=unit, row=1, col=1)
    fig.update_yaxes(title=f"{unit} × day", row=1, col=2)
    return _layout(fig, 420)


def cytokine_figure(data: cd.CytokineMatrix) -> go.Figure:
    subjects = list(data.subjects)
    d0, d1 = data.days
    row = {s: i for i, s in enumerate(subjects)}
    cells = data.log_cells()
    m = np.full((len(subjects), d1 - d0 + 1), np.nan)
    at = ([row[s] for s in cells["subject_id"]], cells["day"].to_numpy() - d0)
    m[at] = cells["log10"].to_numpy()
    shown = np.full(m.shape, np.nan)  # the hover shows the cell's value (a limit for a censored one), not its log
    shown[at] = cells["value"].to_numpy()
    title = f"log10 {plotly_text(data.param)}<br>({plotly_text(data.unit)})"
    traces = [trace("Heatmap", z=m, x=list(range(d0, d1 + 1)), y=plotly_text(subjects), colorscale=_MAGMA,
                    reversescale=True, colorbar={"title": {"text": title}},
                    customdata=shown, hovertemplate="%{y} day %{x}: %{customdata:.3s} "
                    + plotly_text(data.unit) + " (log10 %{z:.2f})<extra></extra>")]
    marks = [(cells.filter("zero"), "x", "#1a9850", f"{cd.HEAT_ZERO_TEXT} ({data.floor():g} {data.unit})"),
             (cells.filter("blq"), "triangle-up", "#1f78b4", cd.HEAT_BLQ_TEXT),
             (cells.filter("above") if "above" in cells.columns else cells.clear(), "star", "#d7301f",
              cd.HEAT_ABOVE_TEXT)]
    kinds = cells["kind"].unique().to_list()
    # mark the not-measured cells when some cells were measured (a mix; every cell not measured: the stamp says it)
    if set(kinds) & set(NOT_MEASURED_SOURCES) and set(kinds) - set(NOT_MEASURED_SOURCES):
        marks.append((cells.filter(pl.col("kind").is_in(list(NOT_MEASURED_SOURCES))), "circle", "#1f78b4", "value not measured"))
    for sel, mk, col, text in marks:
        if sel.height:
            traces.append(trace("Scattergl", x=sel["day"].to_list(), y=plotly_text(sel["subject_id"].to_list()),
                                mode="markers", name=plotly_text(text),
                                marker={"size": 3 if mk == "circle" else 6, "color": col, "symbol": mk}))
    fig = figure(traces)
    fig.update_yaxes(autorange="reversed", showticklabels=len(subjects) <= 60)
    fig.update_xaxes(title=X_DAYS + " (blank = no sample)")
    return _layout(fig, int(min(max(160 + 14 * len(subjects), 300), 1000)), plot_bgcolor="#eeeeee")


def _at_risk_annotations(fig: go.Figure, rows, days) -> None:
    notes = []
    for i, (name, counts) in enumerate(rows):
        y = -0.22 - 0.07 * i
        notes.append({"x": 0, "xref": "paper", "y": y, "yref": "paper", "text": name, "showarrow": False,
                      "xanchor": "right", "xshift": -8, "font": {"size": 11, "color": KM_COLORS.get(name, "#333")}})
        notes += [{"x": d, "xref": "x", "y": y, "yref": "paper", "text": str(k), "showarrow": False, "font": {"size": 11}}
                  for d, k in zip(days, counts)]
    notes.append({"x": 0, "xref": "paper", "y": -0.15, "yref": "paper", "text": "<b>Number at risk</b>",
                  "showarrow": False, "xanchor": "left", "font": {"size": 11}})
    fig.update_layout(annotations=notes)  # one update: add_annotation validates the whole list each time


def _band(traces: list, t, lo, hi, col: str, name: str) -> None:
    """The 95% CI band of a post-step curve: one filled step outline per run of defined intervals
    (:func:`~cartlab.report.cohort_base.band_segments`), straight edges between the doubled points
    (a step, never a diagonal), nothing where the interval is undefined (ci empty, e.g. S = 0)."""
    for x, yl, yh in cb.band_segments(t, lo, hi):
        traces.append(trace("Scatter", x=x + x[::-1], y=yh + yl[::-1], fill="toself", mode="none", fillcolor=col,
                            opacity=0.15, line={"shape": "linear"}, name=f"{name} 95% CI",
                            legendgroup=f"band {name}", showlegend=False, hoverinfo="skip"))


def survival_figure(data) -> go.Figure:
    from cartlab.report.cohort_stats import ENDPOINT_NAMES

    traces = []
    names = data.steps["PARAMCD"].unique(maintain_order=True).to_list()
    for p in names:
        s = data.steps.filter(pl.col("PARAMCD") == p)
        t, y, lo, hi = cb.curve_points(s, "survival", 1.0)
        col = KM_COLORS.get(p, "#333")
        _band(traces, t, lo, hi, col, p)
        traces.append(trace("Scatter", x=t, y=y, mode="lines", line={"shape": "hv", "color": col, "width": 2},
                                 name=f"{ENDPOINT_NAMES.get(p, p)} ({p})"))
        cen = s.filter(pl.col("n_censored") > 0)
        traces.append(trace("Scatter", x=cen["time"].to_list(), y=cen["survival"].to_list(), mode="markers",
                                 marker={"symbol": "line-ns-open", "size": 9, "color": col}, name="censored",
                                 legendgroup="censored", showlegend=p == names[0]))
    fig = figure(traces)
    days = sorted(set(data.at_risk["time"].to_list()))
    rows = [(p, data.at_risk.filter(pl.col("PARAMCD") == p).sort("time")["n_at_risk"].to_list()) for p in names]
    _at_risk_annotations(fig, rows, days)
    fig.update_xaxes(title="Days since CAR-T infusion (RFS: since remission)", tickvals=days)
    fig.update_yaxes(title="Probability (band = 95% CI, log-log)", range=[-0.02, 1.04])
    return _layout(fig, 430 + 25 * len(names), margin={"l": 70, "r": 20, "t": 30, "b": 110 + 25 * len(names)})


def incidence_figure(data) -> go.Figure:
    traces = []
    for ev in data.curves["event"].unique(maintain_order=True).to_list():
        t, y, lo, hi = cb.curve_points(data.curves.filter(pl.col("event") == ev), "cif", 0.0)
        col = KM_COLORS.get(ev, "#333")
        _band(traces, t, lo, hi, col, ev)
        traces.append(trace("Scatter", x=t, y=y, mode="lines", line={"shape": "hv", "color": col, "width": 2}, name=ev))
    fig = figure(traces)
    days = sorted(set(data.at_risk["time"].to_list()))
    _at_risk_annotations(fig, [("CIR", data.at_risk.sort("time")["n_at_risk"].to_list())], days)
    fig.update_xaxes(title=f"Days since remission ({getattr(data, 'remission', 'CR/CRh/CRi')})", tickvals=days)
    fig.update_yaxes(title="Cumulative incidence (band = 95% CI)", range=[-0.02, 1.02])
    return _layout(fig, 430, margin={"l": 70, "r": 20, "t": 30, "b": 140})


def rates_figure(rates: pl.DataFrame) -> go.Figure:
    r = rates.filter(pl.col("n") > 0)
    labels = [plotly_text(f"{e} — {c} ({k}/{n})")
              for e, c, k, n in r.select("endpoint", "criteria", "n_responders", "n").iter_rows()]
    rate = (r["rate"] * 100).to_list()
    fig = figure([trace(
        "Scatter", x=rate, y=labels, mode="markers", marker={"color": "#1b7837", "size": 9}, name="rate",
        error_x={"type": "data", "symmetric": False, "array": [h * 100 - v for h, v in zip(r["ci_high"].to_list(), rate)],
                     "arrayminus": [v - lo * 100 for lo, v in zip(r["ci_low"].to_list(), rate)], "color": "#555555"})])
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title="% (exact 95% CI, Clopper-Pearson)", range=[0, 100])
    return _layout(fig, 120 + 40 * max(len(labels), 1))


def cohort_figures_plotly(analysis, subject_ids=None) -> list[cb.CohortView]:
    """Every cohort view of ``analysis`` as plotly figures and tables (``subject_ids``: a subset,
    e.g. the dashboard's filtered subjects)."""
    import sys

    from cartlab.report.cohort_views import view_specs

    return view_specs(analysis, subject_ids, sys.modules[__name__])


def events_band(fig: go.Figure, text: str) -> go.Figure:
    """``text`` (:data:`~cartlab.report.cohort_style.EVENTS_BAND_TEXT`) in a band above the plot, in the
    colours of the report's provenance stamp: the image the dashboard's camera button saves says it
    too (review 41 F6)."""
    top = (fig.layout.margin.t or 30) + 26
    fig.add_annotation(text=plotly_text(text), xref="paper", yref="paper", x=1.0, y=1.0, xanchor="right",
                       yanchor="bottom", yshift=6, showarrow=False, font={"size": 11, "color": "#7a5a00"},
                       bgcolor="#fff4cc", bordercolor="#c79a00", borderwidth=1)
    fig.update_layout(margin={"t": top})
    return fig
