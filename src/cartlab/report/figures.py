"""The clinical-course figure of one subject, in the style of a CAR-T case report's Figure 1.

Panels, top to bottom, on one shared day axis (day 0 = first CAR-T infusion):

* ``treatment`` — a strip of lanes: doses (lymphodepletion agents, CAR-T infusions), interventions
  (vasopressor, corticosteroid, tocilizumab, oxygen, ...) as bars over the days they cover, events;
* ``grades`` — when the caller passes the analysis's daily grades: the ASTCT CRS and ICANS grade of
  each day as a colour band (ranges hatched, not-evaluable days hatched grey);
* ``car`` — CAR transgene copies by qPCR (``CARCOPY``) on a log axis;
* ``temp`` — daily maximum temperature with the 38 °C fever line, with CRP on a twin axis (``crp``);
* ``cytokines`` — IL-6, IL-10, IFN-γ on a log axis;
* ``counts`` — neutrophils, platelets, white cells (log axis by default) with the 0.5 ×10⁹/L ANC line,
  and haemoglobin on a twin axis (``hb``).

Each axes carries its panel name as its matplotlib label (``ax.get_label()``).

Honesty rule: a point whose ``source`` is ``paper`` (stated in the publication) is drawn filled and
annotated with its value; ``reconstructed``/``synthetic`` points are drawn open and lighter, lines
touching them are dotted, and whenever any such item is shown the figure carries the legend
"open markers = values not measured (reconstructed, synthetic or simulated)". Other sources (observed/empty)
are real measurements: filled, not annotated. Censored results (``<x``) are drawn at their limit
with a down-triangle. A panel without data says "no data".

The layout is computed once in inches (no layout engine): it keeps panels the same size whatever
the figure holds, and drawing the figure costs a third of a constrained layout's.

Only the object-oriented matplotlib API with the Agg canvas is used (no pyplot, no global backend
switch), so this is safe in servers, tests and threads.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, MultipleLocator, NullLocator

from cartlab.model import Study
from cartlab.report.course_parts import (
    BLQ_CAPTION,
    COLORS,
    GRADE_COLORS,
    LABELS,
    LOG_FLOOR,
    LYMPHODEPLETION_AGENTS,
    OBSERVED_CAPTION,
    PAPER_CAPTION,
    RECONSTRUCTED_CAPTION,
    RECONSTRUCTED_SOURCES,
    UNITS,
    _default_range,
    _draw_params,
    _draw_series,
    _draw_strip,
    _ensure_decades,
    _in_range,
    _lanes,
    _log_axis,
    _missing_note,
    _mt,
    _no_data,
    _series,
    _series_handle,
    _Tracker,
    _unit,
    draw_grade_band,
    fmt_dose,
    fmt_value,
    is_car_t_agent,
    provenance_kind,
)

__all__ = [
    "course_figure",
    "provenance_kind",
    "fmt_dose",
    "fmt_value",
    "is_car_t_agent",
    "LYMPHODEPLETION_AGENTS",
    "RECONSTRUCTED_SOURCES",
    "RECONSTRUCTED_CAPTION",
    "PANELS",
]

#: Panel names (matplotlib axes labels), top to bottom; ``crp`` is the twin of ``temp``, ``hb`` of
#: ``counts``; ``grades`` is drawn only when daily grades are given.
PANELS = ("treatment", "grades", "car", "temp", "cytokines", "counts")

DAY0 = "#c51b7d"
# layout, in inches
_GAP = 0.36  # between panels (room for a panel title)
_TOP = 0.5  # suptitle
_BOTTOM = 0.62  # day tick labels and axis label
_RIGHT = 0.85  # twin axes (CRP, Hb)
_MIN_LEFT = 1.0  # two-line axis labels and log tick labels


def _text_width(fig: Figure, texts: list[str], size: float) -> float:
    """Widest of ``texts`` in inches at font ``size`` (measured by the Agg renderer, no drawing)."""
    if not texts:
        return 0.0
    renderer = fig.canvas.get_renderer()
    prop = FontProperties(size=size)
    return max(renderer.get_text_width_height_descent(t, prop, ismath=False)[0] for t in texts) / fig.dpi


def _legend_handles(tracker: _Tracker, grades_shown: bool, has_events: bool) -> list:
    """One legend entry per kind of mark the figure actually shows."""
    key: list = [Line2D([], [], color=DAY0, lw=1.2, alpha=0.6, label="day 0 = first CAR-T infusion")]
    if "car-t" in tracker.strip:
        key.append(Line2D([], [], marker="^", ls="none", ms=8, mfc=DAY0, mec=DAY0, label="CAR-T infusion"))
    if "dose" in tracker.strip:
        key.append(Line2D([], [], marker="s", ls="none", ms=6.5, mfc="#4d4d4d", mec="#4d4d4d",
                          label="other dose (e.g. lymphodepletion)"))
    if "span" in tracker.strip:
        key.append(Patch(facecolor="#737373", edgecolor="#737373", label="bar = days an intervention ran"))
    if "single" in tracker.strip:
        key.append(Line2D([], [], marker="D", ls="none", ms=5.5, mfc="#737373", mec="#737373",
                          label="one-day intervention"))
    if has_events:
        key.append(Line2D([], [], marker="*", ls=":", ms=9, mfc="black", mec="black", color="#555555", lw=0.9,
                          label="event (dotted line on every panel)"))
    if grades_shown:
        for g in sorted(tracker.grades):
            key.append(Patch(facecolor=GRADE_COLORS.get(g, "#000000"), edgecolor="#bbbbbb",
                             label=f"ASTCT grade {g}" + (" (assessed, none)" if g == 0 else "")))
        if tracker.grade_range:
            key.append(Patch(facecolor="white", edgecolor="#e34a33", hatch="////",
                             label="hatched = grade is a range (an input missing)"))
        if tracker.grade_ne:
            key.append(Patch(facecolor="white", edgecolor="#999999", hatch="xxx", label="NE = not evaluable"))
    has_recon = "reconstructed" in tracker.prov
    has_paper = "paper" in tracker.prov
    if has_paper:
        key.append(Line2D([], [], marker="o", ls="none", ms=7.5, mfc="#777777", mec="black", label=PAPER_CAPTION))
    if "observed" in tracker.prov and (has_recon or has_paper):
        key.append(Line2D([], [], marker="o", ls="none", ms=5, mfc="#777777", mec="#777777", label=OBSERVED_CAPTION))
    if has_recon:
        key.append(Line2D([], [], marker="o", ls=(0, (1.5, 1.5)), ms=5.5, mfc="white",
                          mec="#555555", color="#555555", label=RECONSTRUCTED_CAPTION))
    if tracker.hatched:
        kinds = "/".join(sorted(tracker.hatched_kinds)) or "reconstructed"  # the words of the data (simulated ...)
        key.append(Patch(facecolor="white", edgecolor="#555555", hatch="////", label=f"hatched bar = {kinds} timing"))
    if tracker.blq:
        key.append(Line2D([], [], marker="v", ls="none", ms=6, mfc="#777777", mec="#777777", label=BLQ_CAPTION))
    return key


def course_figure(
    study: Study,
    subject_id: str,
    *,
    day_range: tuple[float, float] | None = None,
    counts_log: bool = True,
    width: float = 9.0,
    grades: Mapping[str, pl.DataFrame | None] | None = None,
    fever_c: float = 38.0,
) -> Figure:
    """The clinical course of ``subject_id`` as a multi-panel matplotlib figure (Agg canvas).

    ``day_range=(lo, hi)`` limits the day axis (default: all data of the subject, always including
    day 0). ``counts_log=False`` draws the blood counts on a linear axis. ``grades`` adds the ASTCT
    grade band: ``{"CRS": rows of crs_daily, "ICANS": rows of icans_daily}`` for this subject, from
    the analysis (``None`` for a table that was not derived); without it the band is left out, since
    a figure does not grade. ``fever_c`` is the fever line (the CRS fever threshold the analysis
    used). The day axis runs through the subject's last row of any kind.
    The returned figure has an attribute ``cartlab_info`` (dict: ``panels``,
    ``panels_with_data``, ``has_reconstructed``, ``has_paper``, ``day_range``). Raises ``KeyError``
    if the subject has no row in any table.
    """
    sub = study.subject(subject_id)
    if all(df.is_empty() for df in sub.tables().values()):
        raise KeyError(f"subject {subject_id!r} not in study {study.study_id!r}")
    obs, doses, itv, ev = sub.observations, sub.doses, sub.interventions, sub.events
    # the axis covers every recorded row (a day-28 marrow too), not the follow-up beyond the last row
    lo, hi = _default_range(obs, doses, itv, ev, None) if day_range is None else day_range
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

    # -- layout in inches: panel heights, then margins from the widest lane label
    names = ["treatment", *(["grades"] if grades is not None else []), "car", "temp", "cytokines", "counts"]
    panel_h = {"treatment": 0.45 + 0.24 * max(len(lanes), 1), "grades": 0.25 + 0.22 * len(grades or ()),
               "car": 2.3, "temp": 2.0, "cytokines": 2.0, "counts": 2.2}
    heights = [panel_h[n] for n in names]
    fig = Figure(figsize=(width, 10.0), layout=None)
    FigureCanvasAgg(fig)
    left = max(_MIN_LEFT, 0.3 + _text_width(fig, [_mt(lbl) for _, lbl, _ in lanes] + list(grades or ()), 8))
    n_key = 14  # legend rows are sized after drawing; reserve from an upper bound of entries, trimmed below
    body = sum(heights) + _GAP * (len(heights) - 1)
    height = _TOP + body + _BOTTOM + 0.2 * ((n_key + 2) // 3) + 0.2
    fig.set_size_inches(width, height)
    gs = fig.add_gridspec(len(names), 1, height_ratios=heights, left=left / width, right=1 - _RIGHT / width,
                          top=1 - _TOP / height, bottom=1 - (_TOP + body) / height,
                          hspace=_GAP / (sum(heights) / len(heights)))
    axes = {}
    for k, name in enumerate(names):
        axes[name] = fig.add_subplot(gs[k], sharex=axes.get("treatment"))
    ax_strip, ax_car, ax_temp, ax_cyt, ax_cnt = (axes[n] for n in ("treatment", "car", "temp", "cytokines", "counts"))

    def title(ax, text: str) -> None:  # an explicit y skips matplotlib's costly automatic title placement
        ax.set_title(text, loc="left", fontsize=9.5, y=1.0, pad=4)

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
    heading = f"{subject_id} — course after CAR-T infusion"
    if bits:
        heading += "  (" + ", ".join(bits) + ")"
    fig.suptitle(_mt(heading), fontsize=11.5, fontweight="bold", x=0.01, y=1 - 0.12 / height, ha="left", va="top")

    # -- (a) treatment strip
    _draw_strip(ax_strip, lanes, tracker, lo, hi)
    title(ax_strip, "Treatment, supportive care and events")

    # -- (a') ASTCT grade band
    if grades is not None:
        draw_grade_band(axes["grades"], grades, lo, hi, tracker)
        title(axes["grades"], "ASTCT 2019 grade per day (Lee et al.; from this analysis)")
        tracker.panels_with_data["grades"] = any(g is not None and g.height for g in grades.values())

    # -- (b) CAR copies
    ax_car.set_label("car")
    car = _series(obs, "CARCOPY", log=True)
    _log_axis(ax_car)
    title(ax_car, "CAR-T expansion in peripheral blood (qPCR)")
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
    title(ax_temp, "Temperature (daily maximum) and CRP")
    handles = []
    if len(temp):
        _draw_series(ax_temp, temp, COLORS["TEMP"], tracker, annot_fmt=lambda s: f"{s} °C")
        handles.append(_series_handle(COLORS["TEMP"], LABELS["TEMP"]))
        tmin, tmax = min(temp.y), max(temp.y)
        ax_temp.set_ylim(min(35.5, tmin - 0.3), max(40.5, tmax + 0.6))
    else:
        ax_temp.set_ylim(35.5, 40.5)
    ax_temp.axhline(fever_c, color=COLORS["TEMP"], ls="--", lw=0.9, alpha=0.7, zorder=1)
    ax_temp.text(0.004, fever_c, f"{fever_c:g} °C fever line", transform=ax_temp.get_yaxis_transform(), ha="left",
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
    title(ax_cyt, "Serum cytokines")
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

    # -- (e) blood counts, haemoglobin on a twin axis
    ax_cnt.set_label("counts")
    ax_hb = ax_cnt.twinx()
    ax_hb.set_label("hb")
    if counts_log:
        _log_axis(ax_cnt)
    title(ax_cnt, "Blood counts and haemoglobin")
    handles, missing, unit = _draw_params(ax_cnt, obs, ("NEUT", "PLAT", "WBC"), counts_log, tracker, "10^9/L")
    ax_cnt.axhline(0.5, color=COLORS["NEUT"], ls="--", lw=0.9, alpha=0.7, zorder=1)
    ax_cnt.text(0.004, 0.5, "ANC 0.5", transform=ax_cnt.get_yaxis_transform(), ha="left",
                va="bottom", fontsize=7, color=COLORS["NEUT"])
    ax_cnt.set_ylabel(f"Counts\n({UNITS.get(unit, unit)})", fontsize=8.5)
    hb = _series(obs, "HGB", log=False)
    if len(hb):
        _draw_series(ax_hb, hb, COLORS["HGB"], tracker, zorder=2.5)
        handles.append(_series_handle(COLORS["HGB"], f"{LABELS['HGB']} (right axis)"))
        ax_hb.set_ylim(0, max(hb.y) * 1.35 or 1)
    else:
        missing.append(LABELS["HGB"])
        ax_hb.set_yticks([])
    ax_hb.set_ylabel(f"Hb ({_unit(hb, 'g/L')})", fontsize=8.5, color=COLORS["HGB"])
    ax_cnt.set_zorder(ax_hb.get_zorder() + 1)
    ax_cnt.patch.set_visible(False)
    if handles:
        ax_cnt.autoscale_view()
        if counts_log:
            _ensure_decades(ax_cnt, 0.01, 2)
        else:
            ax_cnt.set_ylim(bottom=0)
        ax_cnt.legend(handles=handles, loc="upper right", fontsize=7.5, frameon=False, ncols=4)
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
        # a minor tick per day only on short courses: on long ones they are noise, and every tick of
        # every shared axis is an artist (they were most of the figure's drawing time)
        ax_cnt.xaxis.set_minor_locator(MultipleLocator(1) if span <= 21 else NullLocator())
    else:
        ax_cnt.xaxis.set_major_locator(MaxNLocator(nbins=12, integer=True, steps=[1, 2, 5, 7, 10]))
    ax_cnt.set_xlabel("Day after first CAR-T infusion (day 0)", fontsize=9)
    event_days = ev["day"].drop_nulls().to_list()
    # Only the bottom panel draws its day axis. The panels above share it: their tick marks would
    # be hundreds of artists (most of the drawing time), so their day grid and the day-0 and event
    # lines are one collection each.
    grid_days = [d for d in ax_cnt.xaxis.get_major_locator().tick_values(lo - 0.8, hi + 0.8) if lo - 0.8 <= d <= hi + 0.8]
    for name, ax in axes.items():
        ax.tick_params(labelsize=8)
        if ax is not ax_cnt:
            ax.xaxis.set_visible(False)
        xaxis = ax.get_xaxis_transform()
        ax.vlines([0], 0, 1, transform=xaxis, color=DAY0, lw=0.9, alpha=0.45, zorder=0)
        if name not in ("treatment", "grades"):
            ax.vlines(grid_days, 0, 1, transform=xaxis, color="#e6e6e6", lw=0.6, zorder=0)
            if event_days:
                ax.vlines(event_days, 0, 1, transform=xaxis, color="#555555", linestyles=":", lw=0.8, alpha=0.6,
                          zorder=0)
    ax_crp.tick_params(labelsize=8)
    ax_hb.tick_params(labelsize=8)

    # -- legend: every kind of mark shown, sized to its rows
    key = _legend_handles(tracker, grades is not None, bool(event_days))
    rows = (len(key) + 2) // 3
    height = _TOP + body + _BOTTOM + 0.2 * rows + 0.2
    fig.set_size_inches(width, height)
    gs.update(top=1 - _TOP / height, bottom=1 - (_TOP + body) / height)
    fig._suptitle.set_y(1 - 0.12 / height)
    leg = fig.legend(handles=key, loc="lower center", bbox_to_anchor=(0.5, 0.08 / height), ncols=3, fontsize=7.5,
                     frameon=True, handlelength=2.2, columnspacing=1.2)
    if "reconstructed" in tracker.prov:
        leg.get_frame().set_facecolor("#fff7d6")
        leg.get_frame().set_edgecolor("#c79a00")

    fig.cartlab_info = {
        "subject_id": subject_id,
        "panels": [n for n in PANELS if n in names],
        "panels_with_data": dict(tracker.panels_with_data),
        "has_reconstructed": "reconstructed" in tracker.prov,
        "has_paper": "paper" in tracker.prov,
        "day_range": (lo, hi),
        "fever_c": fever_c,
    }
    return fig
