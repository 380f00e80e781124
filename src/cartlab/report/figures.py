"""The clinical-course figure of one subject, in the style of a CAR-T case report's Figure 1.

Panels, top to bottom, on one shared day axis (day 0 = first CAR-T infusion):

* ``treatment`` — a strip of lanes: doses (lymphodepletion agents, CAR-T infusions), interventions
  (vasopressor, corticosteroid, tocilizumab, oxygen, ...) as bars over the days they cover, events;
* ``car`` — CAR transgene copies by qPCR (``CARCOPY``) on a log axis;
* ``temp`` — daily maximum temperature with the 38 °C fever line, with CRP on a twin axis (``crp``);
* ``cytokines`` — IL-6, IL-10, IFN-γ on a log axis;
* ``counts`` — neutrophils, platelets, white cells (log axis by default) with the 0.5 ×10⁹/L ANC line.

Each axes carries its panel name as its matplotlib label (``ax.get_label()``).

Honesty rule: a point whose ``source`` is ``paper`` (stated in the publication) is drawn filled and
annotated with its value; ``reconstructed``/``synthetic`` points are drawn open and lighter, lines
touching them are dotted, and whenever any such item is shown the figure carries the legend
"open markers = values not measured (reconstructed, synthetic or simulated)". Other sources (observed/empty)
are real measurements: filled, not annotated. Censored results (``<x``) are drawn at their limit
with a down-triangle. A panel without data says "no data".

Only the object-oriented matplotlib API with the Agg canvas is used (no pyplot, no global backend
switch), so this is safe in servers, tests and threads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import LogLocator, MaxNLocator, MultipleLocator, NullFormatter

from cartlab.kinetics.agents import is_car_t_agent
from cartlab.model import NOT_MEASURED_SOURCES, Study

__all__ = [
    "course_figure",
    "provenance_kind",
    "RECONSTRUCTED_SOURCES",
    "RECONSTRUCTED_CAPTION",
    "PANELS",
]

#: ``source`` labels whose values were not measured.
RECONSTRUCTED_SOURCES = NOT_MEASURED_SOURCES

#: The legend text shown whenever a reconstructed/synthetic item is drawn.
RECONSTRUCTED_CAPTION = "open markers = values not measured (reconstructed, synthetic or simulated)"
PAPER_CAPTION = "filled, annotated = value stated in the publication"
OBSERVED_CAPTION = "small filled = measured value"
BLQ_CAPTION = "below limit of quantification / zero (drawn at the limit)"

#: Panel names (matplotlib axes labels), top to bottom; ``crp`` is the twin of ``temp``.
PANELS = ("treatment", "car", "temp", "cytokines", "counts")

LABELS = {
    "CARCOPY": "CAR copies",
    "TEMP": "Temperature (daily max)",
    "CRP": "CRP",
    "IL6": "IL-6",
    "IL10": "IL-10",
    "IFNG": "IFN-γ",
    "NEUT": "ANC",
    "PLAT": "PLT",
    "WBC": "WBC",
}

COLORS = {
    "CARCOPY": "#6a3d9a",
    "TEMP": "#d7301f",
    "CRP": "#1f78b4",
    "IL6": "#e6550d",
    "IL10": "#238b45",
    "IFNG": "#807dba",
    "NEUT": "#08519c",
    "PLAT": "#cb181d",
    "WBC": "#525252",
}

UNITS = {  # display spelling of the canonical units
    "copies/ug gDNA": "copies/µg gDNA",
    "10^9/L": "×10⁹/L",
    "degC": "°C",
}

LOG_FLOOR = {"CARCOPY": 1.0, "IL6": 0.1, "IL10": 0.1, "IFNG": 0.1, "NEUT": 0.01, "PLAT": 1.0, "WBC": 0.01}

LYMPHODEPLETION_AGENTS = (
    "fludarabine",
    "cyclophosphamide",
    "bendamustine",
    "decitabine",
    "etoposide",
    "cytarabine",
    "busulfan",
    "thiotepa",
    "alemtuzumab",
)

PERIPHERAL_SPECIMENS = ("", "PB", "BLOOD", "WB", "SERUM", "PLASMA")


def provenance_kind(source: str | None) -> str:
    """``paper``, ``reconstructed`` (for reconstructed/synthetic) or ``observed`` (anything else)."""
    s = (source or "").strip().lower()
    if s == "paper":
        return "paper"
    if s in RECONSTRUCTED_SOURCES:
        return "reconstructed"
    return "observed"


def _mt(s: object) -> str:
    """Data text safe for matplotlib (no mathtext interpretation of ``$``)."""
    return str(s).replace("$", r"\$")


def fmt_value(v: float | None) -> str:
    """A compact human number: 183,945 / 39.4 / 0.12."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}".rstrip("0").rstrip(".")
    if a == 0:
        return "0"
    return f"{v:.3g}"


def fmt_dose(v: float | None, unit: str | None) -> str:
    """``1×10⁶/kg`` style for cell doses, plain numbers otherwise."""
    if v is None:
        return ""
    unit = unit or ""
    if "cells" in unit and v >= 1e4:
        exp = int(math.floor(math.log10(v)))
        mant = v / 10**exp
        sup = str(exp).translate(str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻"))
        m = f"{mant:.2f}".rstrip("0").rstrip(".")
        per = unit.replace("cells", "").strip()
        return f"{m}×10{sup}{(' ' + per) if per and not per.startswith('/') else per}"
    return f"{fmt_value(v)} {unit.replace('/m2', '/m²')}".strip()


# --------------------------------------------------------------------------------------------
# data extraction


@dataclass
class _Points:
    """Plottable points of one series."""

    param: str
    day: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)  # value | below | above
    prov: list[str] = field(default_factory=list)  # paper | reconstructed | observed
    text: list[str] = field(default_factory=list)  # annotation for paper points
    unit: str = ""

    def __len__(self) -> int:
        return len(self.day)


def _series(obs: pl.DataFrame, param: str, *, log: bool, daily_max: bool = False) -> _Points:
    df = obs.filter(pl.col("param") == param)
    pts = _Points(param)
    if df.is_empty():
        return pts
    units = [u for u in df["unit"].to_list() if u]
    pts.unit = units[0] if units else ""
    # peripheral blood / serum only (a marrow CARCOPY is not the same curve)
    spec = pl.col("specimen").fill_null("").str.to_uppercase()
    df = df.filter(spec.is_in(PERIPHERAL_SPECIMENS))
    rows = []
    for r in df.iter_rows(named=True):
        if r["day"] is None:
            continue
        v, censor, limit = r["value"], r["censor"], r["censor_limit"]
        text_v = r["value_text"]
        if v is not None and not math.isnan(v):
            kind, y = "value", float(v)
            lloq = r["lloq"]
            if lloq is not None and v < lloq:
                kind, y = "below", float(lloq)
                text_v = text_v or f"<{fmt_value(lloq)}"
        elif censor and limit is not None:
            kind = "below" if censor.startswith("<") else "above"
            y = float(limit)
        else:
            continue  # categorical / unparseable: nothing to draw
        rows.append(
            (float(r["day"]), y, kind, provenance_kind(r["source"]), text_v or fmt_value(y))
        )
    if daily_max:
        best: dict[int, tuple] = {}
        for row in rows:
            d = math.floor(row[0])
            if row[2] == "value" and (d not in best or row[1] > best[d][1]):
                best[d] = (float(d), *row[1:])
        rows = list(best.values())
    rows.sort(key=lambda t: t[0])
    for d, y, kind, prov, text in rows:
        if log and y <= 0:
            y = LOG_FLOOR.get(param, 1.0)
            kind = "below"
        pts.day.append(d)
        pts.y.append(y)
        pts.kind.append(kind)
        pts.prov.append(prov)
        pts.text.append(text)
    return pts


# --------------------------------------------------------------------------------------------
# drawing


class _Tracker:
    """What the figure ended up showing (drives the legend and ``fig.cartlab_info``)."""

    def __init__(self) -> None:
        self.prov: set[str] = set()
        self.blq = False
        self.hatched = False
        self.panels_with_data: dict[str, bool] = {}


def _draw_series(ax, pts: _Points, color: str, tracker: _Tracker, *, max_annot: int = 10,
                 annot_fmt=lambda s: s, zorder: float = 3) -> None:
    if not len(pts):
        return
    tracker.prov.update(pts.prov)
    # lines: solid between measured/paper points, dotted when touching a reconstructed one
    segs, styles = [], []
    for i in range(len(pts) - 1):
        segs.append([(pts.day[i], pts.y[i]), (pts.day[i + 1], pts.y[i + 1])])
        recon = "reconstructed" in (pts.prov[i], pts.prov[i + 1])
        styles.append((0, (1.5, 1.5)) if recon else "solid")
    if segs:
        lc = LineCollection(segs, colors=color, linewidths=1.3, linestyles=styles, alpha=0.75,
                            zorder=zorder - 1)
        ax.add_collection(lc)
    n_paper = pts.prov.count("paper")
    if n_paper > max_annot:  # too many to label: label only the maximum and the last
        idx = [i for i, p in enumerate(pts.prov) if p == "paper"]
        top = max(idx, key=lambda i: pts.y[i])
        annotate = {top, idx[-1]}
    else:
        annotate = {i for i, p in enumerate(pts.prov) if p == "paper"}
    for i in range(len(pts)):
        marker = {"value": "o", "below": "v", "above": "^"}[pts.kind[i]]
        if pts.kind[i] != "value":
            tracker.blq = True
        prov = pts.prov[i]
        if prov == "paper":
            kw = dict(ms=7.5, mfc=color, mec="black", mew=0.9, zorder=zorder + 2)
        elif prov == "reconstructed":
            kw = dict(ms=5.5, mfc="white", mec=color, mew=1.1, alpha=0.8, zorder=zorder)
        else:
            kw = dict(ms=5, mfc=color, mec=color, mew=0.6, zorder=zorder + 1)
        ax.plot([pts.day[i]], [pts.y[i]], marker=marker, ls="none", **kw)
        if i in annotate:
            ax.annotate(
                _mt(annot_fmt(pts.text[i])),
                (pts.day[i], pts.y[i]),
                xytext=(0, 9),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=7.5,
                fontweight="bold",
                color="black",
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec=color, lw=0.6, alpha=0.9),
                zorder=zorder + 5,
                annotation_clip=True,
            )


def _no_data(ax, note: str = "no data") -> None:
    ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", fontsize=11,
            color="#888888", style="italic", zorder=10,
            bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="none"))


def _missing_note(ax, names: list[str]) -> None:
    if names:
        ax.text(0.005, 0.97, "no data: " + ", ".join(names), transform=ax.transAxes, ha="left",
                va="top", fontsize=7, color="#888888", style="italic")


def _series_handle(color: str, label: str) -> Line2D:
    return Line2D([], [], color=color, marker="o", ms=5, lw=1.3, label=_mt(label))


def _unit(pts: _Points, default: str) -> str:
    u = pts.unit or default
    return UNITS.get(u, u)


def _ensure_decades(ax, floor: float, min_decades: float = 2.0) -> None:
    lo, hi = ax.get_ylim()
    lo = max(lo, floor / 10)
    if hi / lo < 10**min_decades:
        mid = math.sqrt(lo * hi)
        half = 10 ** (min_decades / 2)
        lo, hi = mid / half, mid * half
    ax.set_ylim(lo, hi * 2.5)  # head-room for annotations


def _log_axis(ax) -> None:
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, numticks=8))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _in_range(df: pl.DataFrame, col: str, lo: float, hi: float) -> pl.DataFrame:
    return df.filter(pl.col(col).is_not_null() & (pl.col(col) >= lo) & (pl.col(col) <= hi))


def _default_range(obs, doses, itv, ev, params) -> tuple[float, float]:
    days: list[float] = []
    days += obs.filter(pl.col("param").is_in(params))["day"].drop_nulls().to_list()
    days += doses["day"].drop_nulls().to_list()
    days += itv["start_day"].drop_nulls().to_list() + itv["end_day"].drop_nulls().to_list()
    days += ev["day"].drop_nulls().to_list()
    if not days:
        return (-7.0, 28.0)
    lo, hi = min(min(days), -1.0), max(max(days), 1.0)
    return (math.floor(lo), math.ceil(hi))


def _lanes(doses: pl.DataFrame, itv: pl.DataFrame, ev: pl.DataFrame) -> list[tuple[str, str, pl.DataFrame]]:
    """(kind, lane label, rows) for the treatment strip, in display order."""
    lanes: list[tuple[str, str, pl.DataFrame]] = []
    if doses.height:
        order = (
            doses.with_columns(pl.col("agent").fill_null("(agent?)"))
            .group_by("agent", maintain_order=True)
            .agg(pl.col("day").min().alias("first"))
            .sort("first")
        )
        car, other = [], []
        for agent in order["agent"].to_list():
            rows = doses.filter(pl.col("agent").fill_null("(agent?)") == agent)
            if is_car_t_agent(agent):
                car.append(("car-t", "CAR-T infusion", rows))
            else:
                dose_txt = {fmt_dose(d, u) for d, u in zip(rows["dose"], rows["unit"])}
                label = agent if len(dose_txt) != 1 else f"{agent} {dose_txt.pop()}"
                other.append(("dose", label, rows))
        lanes += other + car
    if itv.height:
        keyed = itv.with_columns(
            pl.col("category").fill_null("other").alias("_cat"),
            pl.col("agent").fill_null("").alias("_agent"),
        )
        order = keyed.group_by(["_cat", "_agent"], maintain_order=True).agg(
            pl.col("start_day").min().alias("first")
        ).sort("first", nulls_last=True)
        for cat, agent in zip(order["_cat"], order["_agent"]):
            rows = keyed.filter((pl.col("_cat") == cat) & (pl.col("_agent") == agent))
            label = cat.replace("_", " ") + (f" ({agent})" if agent and agent != cat else "")
            lanes.append(("intervention", label, rows))
    if ev.height:
        lanes.append(("event", "events", ev))
    return lanes


ITV_COLORS = {
    "vasopressor": "#b2182b",
    "corticosteroid": "#e08214",
    "tocilizumab": "#2166ac",
    "oxygen": "#35978f",
    "antipyretic": "#d6604d",
    "anakinra": "#5aae61",
    "platelet_transfusion": "#f4a582",
    "rbc_transfusion": "#ca0020",
    "gcsf": "#8073ac",
}


def _draw_strip(ax, lanes, tracker: _Tracker, lo: float, hi: float) -> None:
    ax.set_label("treatment")
    if not lanes:
        ax.set_yticks([])
        _no_data(ax, "no data (no doses, interventions or events recorded)")
        return
    ys, labels = [], []
    for j, (kind, label, rows) in enumerate(lanes):
        y = j
        ys.append(y)
        labels.append(_mt(label))
        if kind in ("dose", "car-t"):
            color = "#c51b7d" if kind == "car-t" else "#4d4d4d"
            rows = rows.filter(pl.col("day").is_not_null()).sort("day")
            for r in rows.iter_rows(named=True):
                if r["day"] is None:
                    continue
                prov = provenance_kind(r["source"])
                tracker.prov.add(prov)
                filled = prov != "reconstructed"
                marker = "^" if kind == "car-t" else "s"
                ax.plot([r["day"]], [y], marker=marker, ls="none", ms=9 if kind == "car-t" else 7,
                        mfc=color if filled else "white", mec=color, mew=1.2, zorder=3)
            if kind == "car-t" and rows.height:
                # one label right of the last infusion: "d0 1×10⁶/kg + d2 4×10⁶/kg"
                parts = [f"d{fmt_value(r['day'])} {fmt_dose(r['dose'], r['unit'])}".strip()
                         for r in rows.iter_rows(named=True)]
                units = set(rows["unit"].drop_nulls().to_list())
                total = rows["dose"].drop_nulls()
                text = " + ".join(parts)
                if rows.height > 1 and len(units) == 1 and total.len() == rows.height:
                    text += f"  (total {fmt_dose(total.sum(), units.pop())})"
                ax.annotate(_mt(text), (rows["day"][-1], y), xytext=(9, 0),
                            textcoords="offset points", ha="left", va="center", fontsize=7.5,
                            color=color, annotation_clip=False)
        elif kind == "intervention":
            for r in rows.iter_rows(named=True):
                s, e = r["start_day"], r["end_day"]
                if s is None:
                    continue
                prov = provenance_kind(r["source"])
                tracker.prov.add(prov)
                color = ITV_COLORS.get(r["_cat"], "#737373")
                if e is None or e == s:
                    ax.plot([s], [y], marker="D", ls="none", ms=6,
                            mfc=color if prov != "reconstructed" else "white", mec=color,
                            mew=1.2, zorder=3)
                else:
                    left, right = min(s, e) - 0.4, max(s, e) + 0.4
                    if prov == "reconstructed":
                        tracker.hatched = True
                        ax.barh(y, right - left, left=left, height=0.5, color="white",
                                edgecolor=color, hatch="////", lw=1.0, alpha=0.9, zorder=2)
                    else:
                        ax.barh(y, right - left, left=left, height=0.5, color=color,
                                edgecolor=color, lw=1.0, zorder=2)
        else:  # events
            for r in rows.sort("day").iter_rows(named=True):
                d = r["day"]
                if d is None:
                    continue
                prov = provenance_kind(r["source"])
                tracker.prov.add(prov)
                ax.plot([d], [y], marker="*", ls="none", ms=10,
                        mfc="black" if prov != "reconstructed" else "white", mec="black",
                        mew=1.0, zorder=3)
                near_end = d > hi - 0.2 * (hi - lo)  # label to the left near the right edge
                ax.annotate(_mt(str(r["event"] or "").replace("_", " ")), (d, y),
                            xytext=(-7 if near_end else 7, 0), textcoords="offset points",
                            ha="right" if near_end else "left", va="center", fontsize=7.5,
                            annotation_clip=True)
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_ylim(len(lanes) - 0.4, -0.6)
    ax.tick_params(axis="y", length=0)
    for sp in ("left", "right", "top"):
        ax.spines[sp].set_visible(False)
    ax.grid(axis="y", color="#eeeeee", lw=6, zorder=0)


# --------------------------------------------------------------------------------------------


def _draw_params(ax, obs, params, log, tracker, default_unit):
    """Draw several params on one axis; returns (legend handles, missing labels, unit shown)."""
    handles, missing, unit = [], [], default_unit
    for p in params:
        s = _series(obs, p, log=log)
        if len(s):
            _draw_series(ax, s, COLORS[p], tracker)
            handles.append(_series_handle(COLORS[p], LABELS[p]))
            unit = _unit(s, unit)
        else:
            missing.append(LABELS[p])
    return handles, missing, unit


def course_figure(
    study: Study,
    subject_id: str,
    *,
    day_range: tuple[float, float] | None = None,
    counts_log: bool = True,
    width: float = 9.0,
) -> Figure:
    """The clinical course of ``subject_id`` as a multi-panel matplotlib figure (Agg canvas).

    ``day_range=(lo, hi)`` limits the day axis (default: all data of the subject, always including
    day 0). ``counts_log=False`` draws the blood counts on a linear axis. The returned figure has
    an attribute ``cartlab_info`` (dict: ``panels``, ``panels_with_data``, ``has_reconstructed``,
    ``has_paper``, ``day_range``). Raises ``KeyError`` if the subject has no row in any table.
    """
    sub = study.subject(subject_id)
    if all(df.is_empty() for df in sub.tables().values()):
        raise KeyError(f"subject {subject_id!r} not in study {study.study_id!r}")
    obs, doses, itv, ev = sub.observations, sub.doses, sub.interventions, sub.events
    plotted = ["CARCOPY", "TEMP", "CRP", "IL6", "IL10", "IFNG", "NEUT", "PLAT", "WBC"]
    lo, hi = day_range if day_range is not None else _default_range(obs, doses, itv, ev, plotted)
    obs = _in_range(obs, "day", lo, hi)
    doses = _in_range(doses, "day", lo, hi)
    ev = _in_range(ev, "day", lo, hi)
    itv = itv.filter(
        pl.col("start_day").is_not_null()
        & (pl.col("start_day") <= hi)
        & (pl.coalesce("end_day", "start_day") >= lo)
    )
    lanes = _lanes(doses, itv, ev)
    tracker = _Tracker()

    strip_h = 0.45 + 0.24 * max(len(lanes), 1)
    heights = [strip_h, 2.3, 2.0, 2.0, 2.2]
    fig = Figure(figsize=(width, sum(heights) + 1.5), layout="constrained")
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(5, 1, height_ratios=heights)
    ax_strip = fig.add_subplot(gs[0])
    ax_car = fig.add_subplot(gs[1], sharex=ax_strip)
    ax_temp = fig.add_subplot(gs[2], sharex=ax_strip)
    ax_cyt = fig.add_subplot(gs[3], sharex=ax_strip)
    ax_cnt = fig.add_subplot(gs[4], sharex=ax_strip)

    # -- title
    srow = sub.subjects.row(0, named=True) if sub.subjects.height else {}
    bits = []
    if srow.get("age_years") is not None:
        bits.append(f"{srow['age_years']:g} y")
    if srow.get("sex"):
        bits.append(str(srow["sex"]))
    for k in ("disease", "target"):
        if srow.get(k):
            bits.append(str(srow[k]) + (" CAR-T" if k == "target" else ""))
    title = f"{subject_id} — course after CAR-T infusion"
    if bits:
        title += "  (" + ", ".join(bits) + ")"
    fig.suptitle(_mt(title), fontsize=11.5, fontweight="bold", x=0.01, ha="left")

    # -- (a) treatment strip
    _draw_strip(ax_strip, lanes, tracker, lo, hi)
    ax_strip.set_title("Treatment, supportive care and events", loc="left", fontsize=9.5)

    # -- (b) CAR copies
    ax_car.set_label("car")
    car = _series(obs, "CARCOPY", log=True)
    _log_axis(ax_car)
    ax_car.set_title("CAR-T expansion in peripheral blood (qPCR)", loc="left", fontsize=9.5)
    if len(car):
        _draw_series(ax_car, car, COLORS["CARCOPY"], tracker)
        ax_car.autoscale_view()
        _ensure_decades(ax_car, LOG_FLOOR["CARCOPY"], 3)
    else:
        ax_car.set_ylim(1, 1e6)
        _no_data(ax_car)
    ax_car.set_ylabel(f"CAR copies\n({_unit(car, 'copies/ug gDNA')})", fontsize=8.5)
    tracker.panels_with_data["car"] = bool(len(car))

    # -- (c) temperature + CRP
    ax_temp.set_label("temp")
    ax_crp = ax_temp.twinx()
    ax_crp.set_label("crp")
    temp = _series(obs, "TEMP", log=False, daily_max=True)
    crp = _series(obs, "CRP", log=False)
    ax_temp.set_title("Temperature (daily maximum) and CRP", loc="left", fontsize=9.5)
    handles = []
    if len(temp):
        _draw_series(ax_temp, temp, COLORS["TEMP"], tracker, annot_fmt=lambda s: f"{s} °C")
        handles.append(_series_handle(COLORS["TEMP"], LABELS["TEMP"]))
        tmin, tmax = min(temp.y), max(temp.y)
        ax_temp.set_ylim(min(35.5, tmin - 0.3), max(40.5, tmax + 0.6))
    else:
        ax_temp.set_ylim(35.5, 40.5)
    ax_temp.axhline(38.0, color=COLORS["TEMP"], ls="--", lw=0.9, alpha=0.7, zorder=1)
    ax_temp.text(0.004, 38.0, "38 °C", transform=ax_temp.get_yaxis_transform(), ha="left",
                 va="bottom", fontsize=7, color=COLORS["TEMP"])
    # temperature (with its annotations) above the CRP twin
    ax_temp.set_zorder(ax_crp.get_zorder() + 1)
    ax_temp.patch.set_visible(False)
    if len(crp):
        _draw_series(ax_crp, crp, COLORS["CRP"], tracker, zorder=2.5)
        handles.append(_series_handle(COLORS["CRP"], LABELS["CRP"]))
        ax_crp.set_ylim(0, max(crp.y) * 1.3 or 1)
    ax_temp.set_ylabel("Temperature (°C)", fontsize=8.5, color=COLORS["TEMP"])
    ax_crp.set_ylabel(f"CRP ({_unit(crp, 'mg/L')})", fontsize=8.5, color=COLORS["CRP"])
    if not len(temp) and not len(crp):
        _no_data(ax_temp)
    else:
        _missing_note(ax_temp, [n for n, p in (("temperature", temp), ("CRP", crp)) if not len(p)])
        ax_temp.legend(handles=handles, loc="upper right", fontsize=7.5, frameon=False)
    tracker.panels_with_data["temp"] = bool(len(temp) or len(crp))

    # -- (d) cytokines
    ax_cyt.set_label("cytokines")
    _log_axis(ax_cyt)
    ax_cyt.set_title("Serum cytokines", loc="left", fontsize=9.5)
    handles, missing, unit = _draw_params(ax_cyt, obs, ("IL6", "IL10", "IFNG"), True, tracker, "pg/mL")
    ax_cyt.set_ylabel(f"Cytokines\n({unit})", fontsize=8.5)
    if handles:
        ax_cyt.autoscale_view()
        _ensure_decades(ax_cyt, 0.1, 2)
        ax_cyt.legend(handles=handles, loc="upper right", fontsize=7.5, frameon=False, ncols=3)
        _missing_note(ax_cyt, missing)
    else:
        ax_cyt.set_ylim(1, 1e4)
        _no_data(ax_cyt)
    tracker.panels_with_data["cytokines"] = bool(handles)

    # -- (e) blood counts
    ax_cnt.set_label("counts")
    if counts_log:
        _log_axis(ax_cnt)
    ax_cnt.set_title("Blood counts", loc="left", fontsize=9.5)
    handles, missing, unit = _draw_params(ax_cnt, obs, ("NEUT", "PLAT", "WBC"), counts_log, tracker, "10^9/L")
    ax_cnt.axhline(0.5, color=COLORS["NEUT"], ls="--", lw=0.9, alpha=0.7, zorder=1)
    ax_cnt.text(1.005, 0.5, "ANC\n0.5", transform=ax_cnt.get_yaxis_transform(), ha="left",
                va="center", fontsize=7, color=COLORS["NEUT"])
    ax_cnt.set_ylabel(f"Counts\n({UNITS.get(unit, unit)})", fontsize=8.5)
    if handles:
        ax_cnt.autoscale_view()
        if counts_log:
            _ensure_decades(ax_cnt, 0.01, 2)
        else:
            ax_cnt.set_ylim(bottom=0)
        ax_cnt.legend(handles=handles, loc="upper right", fontsize=7.5, frameon=False, ncols=3)
        _missing_note(ax_cnt, missing)
    else:
        if counts_log:
            ax_cnt.set_ylim(0.01, 1000)
        else:
            ax_cnt.set_ylim(0, 10)
        _no_data(ax_cnt)
    tracker.panels_with_data["counts"] = bool(handles)
    tracker.panels_with_data["treatment"] = bool(lanes)

    # -- shared day axis
    ax_cnt.set_xlim(lo - 0.8, hi + 0.8)
    span = hi - lo
    if span <= 70:
        ax_cnt.xaxis.set_major_locator(MultipleLocator(7 if span > 21 else 2))
        ax_cnt.xaxis.set_minor_locator(MultipleLocator(1))
    else:
        ax_cnt.xaxis.set_major_locator(MaxNLocator(nbins=12, integer=True, steps=[1, 2, 5, 7, 10]))
    ax_cnt.set_xlabel("Day after first CAR-T infusion (day 0)", fontsize=9)
    for ax in (ax_strip, ax_car, ax_temp, ax_cyt, ax_cnt):
        ax.axvline(0, color="#c51b7d", lw=0.9, alpha=0.45, zorder=0)
        ax.tick_params(labelsize=8)
        if ax is not ax_cnt:
            ax.tick_params(axis="x", labelbottom=False)
        if ax is not ax_strip:
            ax.grid(axis="x", which="major", color="#e6e6e6", lw=0.6, zorder=0)
            for d in ev["day"].drop_nulls().to_list():
                ax.axvline(d, color="#555555", ls=":", lw=0.8, alpha=0.6, zorder=0)
    ax_crp.tick_params(labelsize=8)

    # -- provenance legend
    has_recon = "reconstructed" in tracker.prov
    has_paper = "paper" in tracker.prov
    key = []
    if has_paper:
        key.append(Line2D([], [], marker="o", ls="none", ms=7.5, mfc="#777777", mec="black",
                          label=PAPER_CAPTION))
    if "observed" in tracker.prov and (has_recon or has_paper):
        key.append(Line2D([], [], marker="o", ls="none", ms=5, mfc="#777777", mec="#777777",
                          label=OBSERVED_CAPTION))
    if has_recon:
        key.append(Line2D([], [], marker="o", ls=(0, (1.5, 1.5)), ms=5.5, mfc="white",
                          mec="#555555", color="#555555", label=RECONSTRUCTED_CAPTION))
    if tracker.hatched:
        key.append(Patch(facecolor="white", edgecolor="#555555", hatch="////",
                         label="hatched = reconstructed timing"))
    if tracker.blq:
        key.append(Line2D([], [], marker="v", ls="none", ms=6, mfc="#777777", mec="#777777",
                          label=BLQ_CAPTION))
    if key:
        leg = fig.legend(handles=key, loc="outside lower center", ncols=2, fontsize=8,
                         frameon=True, handlelength=2.2)
        if has_recon:
            leg.get_frame().set_facecolor("#fff7d6")
            leg.get_frame().set_edgecolor("#c79a00")

    fig.cartlab_info = {
        "subject_id": subject_id,
        "panels": list(PANELS),
        "panels_with_data": dict(tracker.panels_with_data),
        "has_reconstructed": has_recon,
        "has_paper": has_paper,
        "day_range": (lo, hi),
    }
    return fig
