"""plotly figures of the dashboard: the linked patient course, the kinetics fit, a minimal cohort view.

The patient course is one figure of stacked panels on a shared day axis (zooming one zooms all):
CAR transgene copies (log), temperature, CRP and IL-6 (log), counts (ANC, platelets, Hb; log) and a
strip of the ASTCT CRS / ICANS grade per day. Provenance is drawn as in the static report
(:func:`cartlab.report.figures.provenance_kind`): values stated by the publication are filled
diamonds, values not measured (reconstructed, synthetic, simulated) are open circles named "not
measured" in the legend, measured values are filled circles; every point's hover text gives its
source. Figures are embedded with the plotly.js shipped in the plotly wheel (:func:`plotly_dependency`),
never from a CDN.
"""

from __future__ import annotations

import math
from pathlib import Path

import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from cartlab._days import day_expr
from cartlab.model import NOT_MEASURED_SOURCES
from cartlab.report.cohort_plotly import plotly_template, plotly_text, plotly_text_expr
from cartlab.report.course_parts import BLQ_CAPTION

COLORS = {"CARCOPY": "#6a3d9a", "TEMP": "#d7301f", "CRP": "#1f78b4", "IL6": "#e6550d", "NEUT": "#08519c",
          "PLAT": "#cb181d", "HGB": "#238b45"}
LABELS = {"CARCOPY": "CAR copies", "TEMP": "Temperature", "CRP": "CRP", "IL6": "IL-6", "NEUT": "ANC",
          "PLAT": "Platelets", "HGB": "Hb"}
#: (row title, params, log axis)
PANELS = (("CAR-T (copies/µg gDNA)", ("CARCOPY",), True), ("Temperature (°C)", ("TEMP",), False),
          ("CRP / IL-6", ("CRP", "IL6"), True), ("Counts (ANC, PLT ×10⁹/L; Hb g/L)", ("NEUT", "PLAT", "HGB"), True),
          ("Grade", (), False))
NOT_MEASURED_NOTE = "open markers = values not measured (reconstructed, synthetic or simulated)"
PERIPHERAL = ("", "PB", "BLOOD", "WB", "SERUM", "PLASMA")
GRADE_COLORS = ["#f0f0f0", "#fee08b", "#fdae61", "#f46d43", "#d73027", "#67001f"]
_SYMBOL = {"paper": "diamond", "reconstructed": "circle-open", "observed": "circle"}
_KIND_LABEL = {"paper": "stated in the publication", "reconstructed": "not measured", "observed": "measured"}


def plotly_dependency():
    """plotly.min.js from the installed plotly wheel as an htmltools dependency (served locally)."""
    import plotly
    from htmltools import HTMLDependency

    folder = Path(plotly.__file__).parent / "package_data"
    return HTMLDependency("plotly", plotly.__version__, source={"subdir": str(folder)},
                          script={"src": "plotly.min.js"})


def to_html(fig: go.Figure | dict, div_id: str) -> str:
    """The figure (a ``go.Figure`` or a figure dict, not validated again) as an HTML fragment for a
    Shiny output (no plotly.js included: see plotly_dependency)."""
    import plotly.io as pio

    return pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id, validate=False,
                       config={"displaylogo": False, "responsive": True})


def provenance_expr(col: str = "source") -> pl.Expr:
    """paper / reconstructed (any not-measured source) / observed, as report.figures.provenance_kind."""
    s = pl.col(col).fill_null("").str.strip_chars().str.to_lowercase()
    return (pl.when(s == "paper").then(pl.lit("paper"))
            .when(s.is_in(list(NOT_MEASURED_SOURCES))).then(pl.lit("reconstructed"))
            .otherwise(pl.lit("observed")))


def course_points(obs: pl.DataFrame, param: str, log: bool) -> pl.DataFrame:
    """Drawable points of one parameter: peripheral specimens, a day, a value (or a censoring limit,
    ``kind`` below/above); values below the LLOQ drawn at the LLOQ; on a log axis values <= 0 are
    not drawable and left out (said in the hover of nothing: they are listed in the tables)."""
    df = obs.filter((pl.col("param") == param) & pl.col("day").is_not_null()
                    & pl.col("specimen").fill_null("").str.to_uppercase().is_in(PERIPHERAL))
    df = df.with_columns(
        pl.when(pl.col("value").is_not_null() & pl.col("lloq").is_not_null() & (pl.col("value") < pl.col("lloq")))
        .then(pl.lit("below")).when(pl.col("value").is_not_null()).then(pl.lit("value"))
        .when(pl.col("censor").fill_null("").str.starts_with("<") & pl.col("censor_limit").is_not_null())
        .then(pl.lit("below"))
        .when(pl.col("censor").fill_null("").str.starts_with(">") & pl.col("censor_limit").is_not_null())
        .then(pl.lit("above")).otherwise(None).alias("kind"),
        pl.when(pl.col("value").is_not_null() & pl.col("lloq").is_not_null() & (pl.col("value") < pl.col("lloq")))
        .then(pl.col("lloq")).otherwise(pl.coalesce("value", "censor_limit")).alias("y"),
        provenance_expr().alias("prov"),
    ).filter(pl.col("kind").is_not_null() & pl.col("y").is_not_null())
    if log:
        df = df.filter(pl.col("y") > 0)
    return df.sort("day").select("day", "y", "kind", "prov", "unit", pl.col("source").fill_null("not given"),
                                 "src_file", "src_row")


def _day_text(col: str = "day") -> pl.Expr:
    """A day as the report prints it (:func:`cartlab._days.day_expr`): whole days without decimals
    ("-1", not "-1.0"), else at most 2 decimals."""
    return day_expr(pl.col(col))


def _marker(kind: str, censored: str, color: str) -> dict:
    """A point's marker: provenance by shape as the report (filled diamond = publication, open = not
    measured, filled circle = measured); a censored value (below / above a limit, drawn at the limit)
    is a down / up triangle instead of a circle, as the report's BLQ marker."""
    symbol = _SYMBOL[kind]
    if censored != "value":
        symbol = ("triangle-down" if censored == "below" else "triangle-up") + ("-open" if kind == "reconstructed" else "")
    return {"color": color, "symbol": symbol, "size": 9 if kind == "paper" else 6 if censored == "value" else 8,
            "line": {"color": color if kind != "paper" else "black", "width": 1.2}}


def _trace_name(label: str, kind: str, censored: str) -> str:
    if censored == "value":
        return f"{label} — {_KIND_LABEL[kind]}"
    limit = BLQ_CAPTION if censored == "below" else "above limit of quantification (drawn at the limit)"
    return f"{label} — {limit}" + (f", {_KIND_LABEL[kind]}" if kind != "observed" else "")


def _hover(df: pl.DataFrame, label: str) -> list[str]:
    """A point's hover text; the data strings (unit, source, file) escaped (:func:`plotly_text`), then
    cartlab's ``<br>`` put in."""
    return (df.select(pl.format("{} {} {} on day {}<br>{}: {} (source: {})<br>{}:{}", pl.lit(plotly_text(label)),
                                pl.when(pl.col("kind") == "below").then(pl.lit("&lt;"))
                                .when(pl.col("kind") == "above").then(pl.lit("&gt;")).otherwise(pl.lit("")),
                                pl.col("y").round_sig_figs(4), _day_text(),
                                plotly_text_expr(pl.col("unit").fill_null("")),
                                pl.col("prov").replace_strict(_KIND_LABEL, default="measured"),
                                plotly_text_expr(pl.col("source")),
                                plotly_text_expr(pl.col("src_file").fill_null("?")), pl.col("src_row").fill_null(-1)))
            .to_series().to_list())


def _param_traces(obs, param: str, axis: str, log: bool, seen: set[str]) -> list[dict]:
    """The line and the markers (one trace per provenance kind) of one parameter, as plotly dicts."""
    pts = course_points(obs, param, log)
    if pts.height == 0:
        return []
    color, label = COLORS[param], LABELS[param]
    ax = {"xaxis": f"x{axis}", "yaxis": f"y{axis}"}
    out = [{"type": "scatter", "x": pts["day"].to_list(), "y": pts["y"].to_list(), "mode": "lines", "name": label,
            "line": {"color": color, "width": 1.2}, "legendgroup": param, "showlegend": False, "hoverinfo": "skip",
            "opacity": 0.6, **ax}]
    for (kind, censored), part in _marker_groups(pts):
        seen.add(kind)
        out.append({"type": "scatter", "x": part["day"].to_list(), "y": part["y"].to_list(), "mode": "markers",
                    "legendgroup": param, "name": _trace_name(label, kind, censored), "hovertext": _hover(part, label),
                    "hoverinfo": "text", "marker": _marker(kind, censored, color), **ax})
    return out


def _marker_groups(pts: pl.DataFrame):
    """The points by (provenance kind, value / below / above): one marker trace each."""
    return [(k, part) for k, part in pts.partition_by("prov", "kind", as_dict=True, maintain_order=True).items()]


def grade_strip(crs_daily: pl.DataFrame, icans_daily: pl.DataFrame) -> tuple[list, list, list, list]:
    """Days, rows (CRS, ICANS), grades (None = not graded that day) and hover texts of the strip. A
    day whose grade is a range (``grade_max`` above ``grade``: an input missing) says so, as the
    report's grade band: "day 40: grade 0–1 (missing: TEMP) (crs.g0)" (:func:`strip_ranges` hatches it)."""
    days = sorted(set(crs_daily["day"].to_list()) | set(icans_daily["day"].to_list())) if (
        crs_daily.height or icans_daily.height) else []
    z, text = [], []
    for frame in (crs_daily, icans_daily):
        t = _strip_frame(frame)
        g = dict(zip(t["day"].to_list(), t["grade"].to_list()))
        h = dict(zip(t["day"].to_list(), t["text"].to_list()))
        z.append([g.get(d) for d in days])
        text.append([h.get(d) or f"day {d:g}: not graded" for d in days])
    return days, ["CRS", "ICANS"], z, text


def _strip_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """``day``, ``grade``, ``high`` (the upper grade) and the hover ``text`` of one daily grade table."""
    if not frame.height:
        return pl.DataFrame(schema={"day": pl.Float64, "grade": pl.Int64, "high": pl.Int64, "text": pl.String})
    g = pl.col("grade").cast(pl.Int64)
    hi = pl.col("grade_max").cast(pl.Int64) if "grade_max" in frame.columns else g
    m = pl.col("missing_inputs").cast(pl.List(pl.String)) if "missing_inputs" in frame.columns else None
    miss = (pl.when(m.list.len() > 0).then(plotly_text_expr(m.list.join(", "))) if m is not None
            else pl.lit(None, pl.String))
    rule = plotly_text_expr(pl.col("rule").fill_null("no rule")) if "rule" in frame.columns else pl.lit("no rule")
    ranged = g.is_not_null() & hi.is_not_null() & (hi > g)
    grade = (pl.when(g.is_null()).then(pl.lit("not graded"))
             .when(ranged).then(pl.format("{}–{} (missing: {})", g, hi, miss.fill_null("an input")))
             .otherwise(g.cast(pl.String)))
    return frame.select(pl.col("day").cast(pl.Float64), g.alias("grade"), pl.when(ranged).then(hi).alias("high"),
                        pl.format("day {}: grade {} ({})", _day_text(), grade, rule).alias("text"))


#: the strip's hatched overlay: a range day (an input missing)
RANGE_LEGEND = "hatched: grade is a range (an input missing)"


def _cells(days: list) -> pl.DataFrame:
    """Each strip day's heatmap cell: its centre ``mid`` and ``width`` (edges half-way to the next days,
    as plotly draws a heatmap's bricks)."""
    d = pl.DataFrame({"day": days}, schema={"day": pl.Float64})
    gap = pl.col("day").diff()
    lo = pl.col("day") - (gap.fill_null(gap.shift(-1)).fill_null(1.0) / 2)
    hi = pl.col("day") + (gap.shift(-1).fill_null(gap).fill_null(1.0) / 2)
    return d.select("day", ((lo + hi) / 2).alias("mid"), ((hi - lo) * 0.92).alias("width"))


def strip_ranges(crs_daily: pl.DataFrame, icans_daily: pl.DataFrame, days: list, axis: str) -> list[dict]:
    """Hatched bars over the strip's range days (grade below ``grade_max``), in the colour of the highest
    possible grade over the measured grade's colour, as the report's grade band; one bar trace per
    row and upper grade, one legend entry."""
    out: list[dict] = []
    cells = _cells(days)
    for j, frame in enumerate((crs_daily, icans_daily)):
        t = _strip_frame(frame).filter(pl.col("high").is_not_null()).join(cells, on="day", how="left")
        for (high,), part in t.partition_by("high", as_dict=True, maintain_order=True).items():
            out.append({"type": "bar", "x": part["mid"].to_list(), "y": [0.8] * part.height,
                        "base": [j - 0.4] * part.height, "width": part["width"].to_list(),
                        "hovertext": part["text"].to_list(),
                        "hoverinfo": "text", "name": RANGE_LEGEND, "legendgroup": "grade_range",
                        "showlegend": not out,
                        "marker": {"color": "rgba(0,0,0,0)", "line": {"width": 0},
                                   "pattern": {"shape": "/", "fgcolor": GRADE_COLORS[min(int(high), 5)],
                                               "fgopacity": 1.0, "solidity": 0.45}},
                        "xaxis": f"x{axis}", "yaxis": f"y{axis}"})
    return out


def course_spec(patient, height: int = 900) -> dict:
    """The linked course of one patient (see the module doc) as a plotly figure dict. Built without
    plotly's per-call validation (the page renders it with ``to_html``; :func:`course_figure` gives a
    validated ``go.Figure``)."""
    heights, gap = (0.22, 0.17, 0.2, 0.25, 0.08), 0.025
    n = len(PANELS)
    scale = (1.0 - gap * (n - 1)) / sum(heights)
    top, domains = 1.0, []
    for h in heights:
        domains.append((max(0.0, top - h * scale), top))
        top -= h * scale + gap
    data: list[dict] = []
    layout: dict = {"height": height, "template": plotly_template(), "hovermode": "closest", "dragmode": "zoom",
                    "legend": {"orientation": "h", "y": -0.06, "font": {"size": 11}}, "annotations": [],
                    "shapes": []}
    seen: set[str] = set()
    obs = patient.observations
    for i, ((title, params, log), (lo, hi)) in enumerate(zip(PANELS, domains), start=1):
        sfx = "" if i == 1 else str(i)
        layout[f"xaxis{sfx}"] = {"anchor": f"y{sfx}", "domain": [0.0, 1.0],
                                 **({"matches": f"x{n}", "showticklabels": False} if i < n else {})}
        layout[f"yaxis{sfx}"] = {"anchor": f"x{sfx}", "domain": [lo, hi], **({"type": "log"} if log else {})}
        layout["annotations"].append({"text": title, "showarrow": False, "xref": "paper", "yref": "paper",
                                      "x": 0.5, "y": hi, "xanchor": "center", "yanchor": "bottom",
                                      "font": {"size": 14}})
        if i == n:
            continue
        traces = [t for p in params for t in _param_traces(obs, p, sfx, log, seen)]
        data.extend(traces)
        if not traces:
            layout["annotations"].append({"text": "no data", "showarrow": False, "xref": f"x{sfx} domain",
                                          "yref": f"y{sfx} domain", "x": 0.5, "y": 0.5, "font": {"color": "#888"}})
        elif params == ("TEMP",) and getattr(patient, "fever_threshold_c", None) is not None:
            fever = patient.fever_threshold_c  # the analysis's crs.fever_threshold_c, never a default
            layout["shapes"].append({"type": "line", "xref": f"x{sfx} domain", "x0": 0, "x1": 1, "yref": f"y{sfx}",
                                     "y0": fever, "y1": fever, "line": {"dash": "dot", "color": "#d7301f", "width": 1}})
            layout["annotations"].append({"text": fever_label(fever), "showarrow": False, "xref": f"x{sfx} domain",
                                          "yref": f"y{sfx}", "x": 1, "y": fever, "xanchor": "right",
                                          "yanchor": "bottom", "font": {"size": 10, "color": "#d7301f"}})
    days, rows, z, text = grade_strip(patient.crs_daily, patient.icans_daily)
    if days:
        colors = [[k / 5, GRADE_COLORS[k]] for k in range(6)]
        data.append({"type": "heatmap", "x": days, "y": [0, 1], "z": z, "text": text, "hoverinfo": "text", "zmin": 0,
                     "zmax": 5, "colorscale": colors, "showscale": False, "xgap": 1, "ygap": 2,
                     "name": "grade per day", "xaxis": f"x{n}", "yaxis": f"y{n}"})
        data.extend(strip_ranges(patient.crs_daily, patient.icans_daily, days, str(n)))
        layout[f"yaxis{n}"].update({"tickvals": [0, 1], "ticktext": rows, "range": [1.5, -0.5]})
        layout["barmode"] = "overlay"
    else:
        layout["annotations"].append({"text": "no CRS/ICANS grading", "showarrow": False, "xref": f"x{n} domain",
                                      "yref": f"y{n} domain", "x": 0.5, "y": 0.5, "font": {"color": "#888"}})
    for d in patient.doses.filter(_car_t()).get_column("day").drop_nulls().unique().sort().to_list():
        layout["shapes"].append({"type": "line", "xref": f"x{n}", "x0": d, "x1": d, "yref": "paper", "y0": 0,
                                 "y1": 1, "line": {"color": "#6a3d9a", "width": 1, "dash": "dash"}})
    layout[f"xaxis{n}"]["title"] = {"text": day_axis_title(patient, "(dashed: CAR-T infusions)")}
    note = NOT_MEASURED_NOTE if "reconstructed" in seen else None
    layout["margin"] = {"l": 70, "r": 20, "t": 70 if note else 40, "b": 60}
    if note:
        layout["title"] = {"text": note, "font": {"size": 12, "color": "#444"}, "x": 0.01}
    return {"data": data, "layout": layout}


def fever_label(fever_c: float) -> str:
    """The fever line's label: "fever 38.5 °C (CRS threshold of this analysis)"."""
    return f"fever {fever_c:g} °C (CRS threshold of this analysis)"


def day_axis_title(patient, suffix: str = "") -> str:
    """"day after the first CAR-T infusion" -- or, for a subject without a CAR-T dose, "study day (no
    CAR-T dose recorded)": day 0 is then not an infusion."""
    if getattr(patient, "has_car_t_dose", True):
        return f"day after the first CAR-T infusion {suffix}".strip()
    return "study day (no CAR-T dose recorded)"


def course_figure(patient, height: int = 900) -> go.Figure:
    """:func:`course_spec` as a validated ``go.Figure``."""
    return go.Figure(course_spec(patient, height))


def _car_t() -> pl.Expr:
    from cartlab.kinetics.agents import car_t_agent_expr

    return car_t_agent_expr(pl.col("agent"))


def kinetics_figure(patient, stein=None) -> go.Figure:
    """CAR transgene course with Cmax, the terminal log-linear fit of the NCA (lambda.z over its
    points) and, when given, the fitted Stein 2019 curve (``stein``: (days, values))."""
    fig = go.Figure()
    seen: set[str] = set()
    obs = patient.observations
    pts = course_points(obs, "CARCOPY", True)
    if pts.height:
        for (kind, censored), part in _marker_groups(pts):
            seen.add(kind)
            fig.add_trace(go.Scatter(x=part["day"].to_list(), y=part["y"].to_list(), mode="markers",
                                     name=_trace_name("CAR copies", kind, censored),
                                     hovertext=_hover(part, "CAR copies"), hoverinfo="text",
                                     marker={**_marker(kind, censored, COLORS["CARCOPY"]), "size": 8}))
    k = patient.car_kinetics
    if k.height:
        r = k.row(0, named=True)
        if r.get("cmax") is not None and r.get("tmax") is not None:
            fig.add_trace(go.Scatter(x=[r["tmax"]], y=[r["cmax"]], mode="markers", name="Cmax (NCA)",
                                     marker={"symbol": "star", "size": 14, "color": "#ff7f00",
                                             "line": {"color": "black", "width": 1}}))
        lz, t0, t1, cp, tl = (r.get("lambda.z"), r.get("lambda.z.time.first"), r.get("lambda.z.time.last"),
                              r.get("clast.pred"), r.get("tlast"))
        if all(v is not None and math.isfinite(v) for v in (lz, t0, t1, cp, tl)) and cp > 0:
            xs = [t0 + (t1 - t0) * i / 20 for i in range(21)]
            fig.add_trace(go.Scatter(x=xs, y=[cp * math.exp(-lz * (x - tl)) for x in xs], mode="lines",
                                     name=f"terminal fit (λz {lz:.3g}/day)", line={"color": "#33a02c", "dash": "dash"}))
    if stein is not None:
        fig.add_trace(go.Scatter(x=list(stein[0]), y=list(stein[1]), mode="lines",
                                 name="Stein 2019 model fit", line={"color": "#1f78b4"}))
    if not pts.height:
        fig.add_annotation(text="no CARCOPY samples", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    fig.update_yaxes(type="log", title_text="CAR copies/µg gDNA")
    fig.update_xaxes(title_text=day_axis_title(patient))
    extra = [NOT_MEASURED_NOTE] if "reconstructed" in seen else []
    fig.update_layout(height=420, template="plotly_white", margin={"l": 70, "r": 20, "t": 30, "b": 60},
                      title={"text": "; ".join(extra), "font": {"size": 11}} if extra else None)
    return fig


def cohort_overview_figure(cohort: pl.DataFrame) -> go.Figure:
    """Subjects by worst ASTCT CRS grade (not evaluable counted apart) and by best response."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Worst ASTCT CRS grade", "Best response"))
    crs = (cohort.select(pl.col("crs_grade_astct").cast(pl.String).fill_null("not evaluable").alias("g"))
           .group_by("g").len().sort("g"))
    fig.add_trace(go.Bar(x=plotly_text(crs["g"].to_list()), y=crs["len"].to_list(), name="subjects by CRS grade",
                         marker_color="#d7301f"), row=1, col=1)
    resp = (cohort.select(pl.col("best_response").fill_null("not evaluable").alias("r"))
            .group_by("r").len().sort("len", descending=True))
    fig.add_trace(go.Bar(x=plotly_text(resp["r"].to_list()), y=resp["len"].to_list(), name="subjects by best response",
                         marker_color="#1f78b4"), row=1, col=2)
    fig.update_yaxes(title_text="subjects", row=1, col=1)
    fig.update_layout(height=360, template="plotly_white", showlegend=False,
                      margin={"l": 60, "r": 20, "t": 40, "b": 60})
    return fig
