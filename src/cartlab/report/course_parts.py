"""Building blocks of the course figure (:mod:`cartlab.report.figures`): series extraction, the
treatment strip, the ASTCT grade band, and the number and dose formats shared with the HTML report.

Honesty rule (see :mod:`cartlab.report.figures`): paper values filled and annotated, values not
measured drawn open with dotted lines, censored results at their limit with a down-triangle."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from cartlab.kinetics.agents import is_car_t_agent
from cartlab.model import NOT_MEASURED_SOURCES
from cartlab.report.provenance_marks import approximate_day

#: ``source`` labels whose values were not measured.
RECONSTRUCTED_SOURCES = NOT_MEASURED_SOURCES

#: The legend text shown whenever a reconstructed/synthetic item is drawn.
RECONSTRUCTED_CAPTION = "open markers = values not measured (reconstructed, synthetic or simulated)"
PAPER_CAPTION = "filled, annotated = value stated in the publication"
OBSERVED_CAPTION = "small filled = measured value"
BLQ_CAPTION = "below limit of quantification / zero (drawn at the limit)"

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
    "HGB": "Hb",
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
    "HGB": "#8c510a",
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
        self.hatched_kinds: set[str] = set()  # the not-measured sources of hatched bars (simulated ...)
        self.panels_with_data: dict[str, bool] = {}
        self.strip: set[str] = set()  # marker kinds drawn in the treatment strip
        self.grades: set[int] = set()  # grade colours drawn in the grade band
        self.grade_ne = False
        self.grade_range = False


def _draw_series(ax, pts: _Points, color: str, tracker: _Tracker, *, max_annot: int = 10,
                 annot_fmt=lambda s: s, zorder: float = 3) -> None:
    if not len(pts):
        return
    tracker.prov.update(pts.prov)
    # lines: solid between measured/paper points, dotted when touching a reconstructed one
    # consecutive segments of one style form one polyline (one path per run, not per segment)
    segs, styles = [], []
    for i in range(len(pts) - 1):
        style = (0, (1.5, 1.5)) if "reconstructed" in (pts.prov[i], pts.prov[i + 1]) else "solid"
        if styles and styles[-1] == style:
            segs[-1].append((pts.day[i + 1], pts.y[i + 1]))
        else:
            segs.append([(pts.day[i], pts.y[i]), (pts.day[i + 1], pts.y[i + 1])])
            styles.append(style)
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
    # one artist per (marker, provenance) group: a figure of a long course has hundreds of points,
    # and one Line2D per point made drawing the figure several times slower
    groups: dict[tuple[str, str], list[int]] = {}
    for i in range(len(pts)):
        if pts.kind[i] != "value":
            tracker.blq = True
        groups.setdefault(({"value": "o", "below": "v", "above": "^"}[pts.kind[i]], pts.prov[i]), []).append(i)
    for (marker, prov), idx in groups.items():
        if prov == "paper":
            kw = dict(ms=7.5, mfc=color, mec="black", mew=0.9, zorder=zorder + 2)
        elif prov == "reconstructed":
            kw = dict(ms=5.5, mfc="white", mec=color, mew=1.1, alpha=0.8, zorder=zorder)
        else:
            kw = dict(ms=5, mfc=color, mec=color, mew=0.6, zorder=zorder + 1)
        ax.plot([pts.day[i] for i in idx], [pts.y[i] for i in idx], marker=marker, ls="none", **kw)
    for i in range(len(pts)):
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
    # decade ticks only: minor ticks (eight a decade) were a third of the figure's drawing time
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(_decade_label))


_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def _decade_label(value: float, _pos=None) -> str:
    """``10⁵`` as plain text (mathtext labels cost more to lay out and draw than the rest of an axis)."""
    if value <= 0:
        return ""
    exp = math.log10(value)
    if abs(exp - round(exp)) > 1e-9:
        return ""
    exp = int(round(exp))
    if 0 <= exp <= 2:
        return f"{10 ** exp:g}"
    return "10" + str(exp).translate(_SUPERSCRIPT)


def _in_range(df: pl.DataFrame, col: str, lo: float, hi: float) -> pl.DataFrame:
    return df.filter(pl.col(col).is_not_null() & (pl.col(col) >= lo) & (pl.col(col) <= hi))


def _default_range(obs, doses, itv, ev, params) -> tuple[float, float]:
    days: list[float] = []
    days += (obs if params is None else obs.filter(pl.col("param").is_in(params)))["day"].drop_nulls().to_list()
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
                tracker.strip.add(kind)
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
                tracker.strip.add("single" if e is None or e == s else "span")
                if e is None or e == s:
                    ax.plot([s], [y], marker="D", ls="none", ms=6,
                            mfc=color if prov != "reconstructed" else "white", mec=color,
                            mew=1.2, zorder=3)
                else:
                    left, right = min(s, e) - 0.4, max(s, e) + 0.4
                    if prov == "reconstructed":
                        tracker.hatched = True
                        tracker.hatched_kinds.add((r["source"] or "").strip().lower())
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
                # a day its row calls approximate is not a stated day: open star, "≈" (review 41 F1)
                approx = approximate_day(r)
                if approx:
                    prov = "reconstructed"
                tracker.prov.add(prov)
                tracker.strip.add("event")
                ax.plot([d], [y], marker="*", ls="none", ms=10,
                        mfc="black" if prov != "reconstructed" else "white", mec="black",
                        mew=1.0, zorder=3)
                near_end = d > hi - 0.2 * (hi - lo)  # label to the left near the right edge
                ax.annotate(_mt(str(r["event"] or "").replace("_", " ") + (f" (day ≈{d:g})" if approx else "")), (d, y),
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


# --------------------------------------------------------------------------------------------
# ASTCT grade band

#: Fill colour per grade (0 = assessed, no CRS/ICANS that day).
GRADE_COLORS = {0: "#e5f5e0", 1: "#fee391", 2: "#fdae61", 3: "#e34a33", 4: "#99000d", 5: "#000000"}


def _spans(days: list[float]) -> list[tuple[float, float]]:
    return [(d - 0.5, 1.0) for d in days]


def draw_grade_band(ax, grades: Mapping[str, pl.DataFrame | None], lo: float, hi: float,
                    tracker: _Tracker) -> None:
    """One row per syndrome (``{"CRS": crs_daily, "ICANS": icans_daily}``), one cell per day coloured
    by its ASTCT grade (Lee et al. 2019). A day whose grade is a range (an input missing) is hatched
    in the colour of its highest possible grade; a not-evaluable day is hatched grey; a day without
    a row was not assessed and stays blank. ``None`` for a syndrome means its table was not derived."""
    ax.set_label("grades")
    names = list(grades)
    label_cells = hi - lo <= 45
    for j, name in enumerate(names):
        df = grades[name]
        if df is None:
            ax.text(0.005, j, "not derived for this analysis", transform=ax.get_yaxis_transform(),
                    va="center", fontsize=7, color="#888888", style="italic")
            continue
        high = "grade_max" if "grade_max" in df.columns else "grade"
        df = df.filter(pl.col("day").is_not_null() & (pl.col("day") >= lo) & (pl.col("day") <= hi)).select(
            pl.col("day").cast(pl.Float64), pl.col("grade").cast(pl.Int64),
            pl.col(high).cast(pl.Int64).alias("high"))
        if df.is_empty():
            ax.text(0.005, j, "no day assessed", transform=ax.get_yaxis_transform(), va="center",
                    fontsize=7, color="#888888", style="italic")
            continue
        for (g,), part in df.filter(pl.col("grade").is_not_null()).sort("grade").group_by(["grade"], maintain_order=True):
            tracker.grades.add(int(g))
            ax.broken_barh(_spans(part["day"].to_list()), (j - 0.36, 0.72), facecolors=GRADE_COLORS.get(g, "#000000"),
                           edgecolor="white", lw=0.4, zorder=2)
        ranged = df.filter(pl.col("grade").is_not_null() & (pl.col("high") > pl.col("grade")))
        for (g,), part in ranged.sort("high").group_by(["high"], maintain_order=True):
            tracker.grade_range = True
            ax.broken_barh(_spans(part["day"].to_list()), (j - 0.36, 0.72), facecolors="none",
                           edgecolor=GRADE_COLORS.get(g, "#000000"), hatch="////", lw=0, zorder=3)
        ne = df.filter(pl.col("grade").is_null())
        if ne.height:
            tracker.grade_ne = True
            ax.broken_barh(_spans(ne["day"].to_list()), (j - 0.36, 0.72), facecolors="white",
                           edgecolor="#999999", hatch="xxx", lw=0.4, zorder=2)
        if label_cells:
            for d, g, h in df.iter_rows():
                text = "NE" if g is None else (f"{g}–{h}" if h is not None and h > g else str(g))
                ax.text(d, j, text, ha="center", va="center", fontsize=6 if len(text) > 1 else 6.5,
                        color="white" if g is not None and g >= 3 else "black", zorder=4)
    ax.set_yticks(range(len(names)), [_mt(n) for n in names], fontsize=8)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.tick_params(axis="y", length=0)
    for sp in ("left", "right", "top"):
        ax.spines[sp].set_visible(False)
