"""The subject page of a report (the study page is :mod:`cartlab.report.study`).

A page needs nothing outside its report folder: CSS is inline, the course figure is
``figures/course_<subject>.svg`` beside it (and ``.png`` with ``png=True``, ``cartlab report --png``) — or
an embedded ``data:`` URI when the page is rendered without a folder — and there are no scripts and no
links outside the folder. All data are
escaped by jinja2's autoescaping (templates in ``templates/``).

Honesty rule: whenever a subject's rows include ``reconstructed`` or ``synthetic`` values the page
opens with a banner saying so, with counts of paper-stated vs reconstructed rows, and every table
row shows its ``source`` (reconstructed rows are highlighted).
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from cartlab.model import NOT_MEASURED_SOURCES, SUBJECT_SUMMARY_COLUMNS, TABLES, Study
from cartlab.report.cells import EMPTY, _cell, _day, _is_day, _table, grade_span, zero_exposure
from cartlab.report.cohort_base import auc_window
from cartlab.report.figures import (
    LYMPHODEPLETION_AGENTS,
    RECONSTRUCTED_CAPTION,
    course_figure,
    fmt_dose,
    is_car_t_agent,
    provenance_kind,
)
from cartlab.report.files import FIGURE_DIR, FigureFiles, figure_png, safe_stem, save_figure, stamp_figure
from cartlab.report.provenance_marks import (
    RECONSTRUCTED_COLUMNS,
    approximate_day,
    reconstructed_columns,
    source_counts,
    source_kinds,
)
from cartlab.report.subject_blocks import (
    _of,
    _protocol_block,
    _response_block,
    _toxicity_block,
    car_missing_reasons,
    icaht_early_text,
    late_grade_text,
    response_notes,
    with_late_grade_max,
)
from cartlab.report.warnings_block import absent_file_text, not_infused_banner, subject_warnings

__all__ = [
    "write_subject_report",
    "render_subject_html",
    "subject_filename",
    "provenance_counts",
    "ReportFigure",
]

TEMPLATE_DIR = Path(__file__).with_name("templates")
ENGINE_NOTE = "not evaluable: an input is missing or the criteria do not apply to this subject"

#: a blank subjects.csv field on the subject page: "not given" and what reads it (review 39 B6)
NOT_GIVEN = {
    "sex": "not given",
    "age_years": "not given (ICANS: ICE or CAPD is chosen by the score recorded, convention icans.conv.age)",
    "weight_kg": "not given",
    "height_cm": "not given",
    "disease": "not given",
    "target": "not given",
    "last_followup_day": "not given (censored at the subject's last recorded day; adtte.csv reasons say which)",
}

SUBJECT_FIELDS = [
    ("subject_id", "Subject"),
    ("sex", "Sex"),
    ("age_years", "Age (years)"),
    ("weight_kg", "Weight (kg)"),
    ("height_cm", "Height (cm)"),
    ("disease", "Disease"),
    ("target", "CAR target"),
    ("infusion_date", "Infusion date"),
    ("infusion_datetime", "Infusion date/time"),
    ("last_followup_day", "Last follow-up (day)"),
    ("source", "Source"),
    ("source_note", "Source note"),
]


@functools.lru_cache(maxsize=1)
def _env() -> Environment:
    """The report's template environment, made once: it caches the compiled templates (a fresh
    environment per page recompiled the subject template for every subject)."""
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["wbr"] = _wbr
    return env


def _wbr(text: Any):
    """``text`` escaped, with a line-break opportunity after each "_" and "/" (``<wbr>``): a narrow
    table cell wraps "or_ci_high" as "or_ci_/high", never inside a token ("or_ci_hig/h")."""
    from markupsafe import Markup, escape

    return Markup(str(escape(text)).replace("_", "_<wbr>").replace("/", "/<wbr>"))


@dataclass(frozen=True)
class ReportFigure:
    """An extra section of a subject page: a PNG figure (and its SVG, when given) with its caption and
    an optional table (e.g. the digital twin of the patient, :func:`cartlab.twin.plots.seed_twin_figure`).
    The caption must say what is simulated; the table's ``source`` column, when present, styles its rows."""

    title: str
    png: bytes
    caption: str
    anchor: str = "extra"
    nav: str = "Extra"
    alt: str = ""
    table: pl.DataFrame | None = None
    svg: bytes | None = None

    def context(self, report_dir: Path | None = None, subject_id: str = "") -> dict[str, Any]:
        """The template's fields; with ``report_dir`` the figure is written to ``figures/`` and linked,
        else embedded (``data:`` URI)."""
        table = None if self.table is None else _table(self.table, [(c, c) for c in self.table.columns
                                                                     if c != "source"])
        files = None
        if report_dir is None:
            src = "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")
        else:
            stem = safe_stem(f"{self.anchor}_{subject_filename(subject_id)[len('subject_'):-len('.html')]}")
            folder = Path(report_dir) / FIGURE_DIR
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{stem}.png").write_bytes(self.png)
            files = {"png": f"{FIGURE_DIR}/{stem}.png", "svg": None}
            if self.svg is not None:
                (folder / f"{stem}.svg").write_bytes(self.svg)
                files["svg"] = f"{FIGURE_DIR}/{stem}.svg"
            src = files["png"]
        return {"title": self.title, "anchor": self.anchor, "nav": self.nav, "alt": self.alt or self.title,
                "caption": self.caption, "src": src, "files": files, "table": table}


def subject_filename(subject_id: str) -> str:
    """A safe file name for a subject's page (``subject_<id>.html``; hashed when sanitised)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", subject_id).strip("._-")
    if safe != subject_id or not safe:
        safe = (safe[:40] + "-" if safe else "") + hashlib.sha1(subject_id.encode()).hexdigest()[:8]
    return f"subject_{safe}.html"


def provenance_counts(study: Study) -> dict[str, Any]:
    """Row counts by ``source`` over the five tables (:func:`cartlab.report.provenance_marks.source_counts`):
    paper / reconstructed / synthetic / simulated / observed; a ``paper`` row naming reconstructed
    columns counts as reconstructed. ``not_measured`` counts every row whose source is in
    :data:`cartlab.model.NOT_MEASURED_SOURCES`."""
    return source_counts(study.tables())


@dataclass(frozen=True)
class CourseFigure:
    """A subject's drawn course figure: ``src`` for the page's ``<img>`` (a file relative to the page, or
    a ``data:`` URI), the figure's ``cartlab_info``, and its PNG/SVG files when written."""

    src: str
    info: dict
    files: FigureFiles | None = None


def subject_grades(analysis, subject_id: str) -> dict[str, pl.DataFrame | None]:
    """The ASTCT daily grades of one subject from the analysis, for the course figure's grade band."""
    return {"CRS": _of(analysis, "crs_daily", subject_id), "ICANS": _of(analysis, "icans_daily", subject_id)}


def figure_stamp(counts: dict[str, Any]) -> str | None:
    """The label a figure of not-measured data carries inside its image ("synthetic data (generated,
    from no patient)"), from :func:`provenance_counts`; None when every row was measured or stated
    in the publication."""
    kinds = [k for k in NOT_MEASURED_SOURCES if counts.get(k)]
    if not kinds:
        return None
    words = {"reconstructed": "reconstructed data (not measured)",
             "synthetic": "synthetic data (generated, from no patient)",
             "simulated": "simulated data (digital twin)"}
    what = " + ".join(words.get(k, f"{k} data") for k in kinds)
    if counts.get("not_measured") == counts.get("total"):
        return what
    return f"contains {what}: {counts['not_measured']:,} of {counts['total']:,} rows"


def _reader_defaults(options: dict) -> dict[str, Any]:
    """The defaults of the reader a study was read with: FHIR (it records ``observation_statuses``) or
    SDTM (the parameters of :func:`cartlab.io.sdtm.reader.read_sdtm`)."""
    import inspect

    if "observation_statuses" in options:
        from cartlab.io.fhir import READER_DEFAULTS  # review 39 diff2 C5: public, not io.fhir._partial

        return dict(READER_DEFAULTS)
    from cartlab.io.sdtm.reader import read_sdtm

    return {k: p.default for k, p in inspect.signature(read_sdtm).parameters.items()
            if p.default is not inspect.Parameter.empty and k in options}


#: a reader option whose command-line flag is not its name in dashes (review 39 diff2 C4: the FHIR
#: ``observation_statuses`` is ``--observation-status``, given once per status; cli/interop.py)
_READER_FLAGS = {"observation_statuses": "--observation-status"}


def reader_changes(study) -> list[dict[str, str]]:
    """The reader options a study was read with that differ from the reader's defaults (``Study.reader_options``,
    recorded in analysis.json ``reader_options``; review 39 B10): ``option`` as its command-line flag
    ("--partial-death-dates"), ``value``, ``default``."""
    options = dict(getattr(study, "reader_options", None) or {})
    if not options:
        return []
    try:
        defaults = _reader_defaults(options)
    except Exception:  # noqa: BLE001 - the line is informative: an unknown reader lists every option
        defaults = {}

    def text(v: Any) -> str:
        return ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v).lower() if isinstance(v, bool) else str(v)

    return [{"option": _READER_FLAGS.get(k, "--" + k.replace("_", "-")), "value": text(v),
             "default": text(defaults[k]) if k in defaults else "not known"}
            for k, v in options.items() if k not in defaults or text(v) != text(defaults[k])]


def shown_overrides(overrides: dict[str, tuple], options: Any) -> tuple[dict[str, tuple], list[str]]:
    """``option_overrides`` as the report and the dashboard list them, and the notes on the options that
    follow another rather than being set (``options``: the ``AnalysisOptions``): an unset
    ``endpoints.efs_landmark_day`` takes ``best_response.landmark_day``, and ``endpoints.efs_evaluable_by``
    then follows it too (:func:`cartlab.response.endpoint_options.followed_options`). The user set neither,
    so neither is listed as differing from its default; a note says "endpoints.efs_landmark_day = 28
    (follows best_response.landmark_day)" (review 41 diff1 F8, as ``cartlab explain``)."""
    from cartlab.response.endpoint_options import followed_options

    try:
        followed = followed_options(options.endpoints, options.best_response_options(), options.endpoint_options())
    except AttributeError:  # options without the analysis's methods: listed as they are
        followed = {}
    out = dict(overrides)
    notes = []
    for name, text in followed.items():
        key = f"endpoints.{name}"
        if key in out:
            del out[key]
            notes.append(f"{key} = {text}")
    return out, notes


def report_provenance(analysis) -> dict[str, Any]:
    """What the page says about how it was computed: the options that differ from the defaults
    (``option``, ``value``, ``default``), the criteria versions, and the CRS fever threshold used
    (the course figure's fever line)."""
    cached = getattr(analysis, "_report_provenance", None)
    if cached is not None:
        return cached
    from cartlab.analyze import option_overrides

    used = analysis.options.to_dict()
    overrides, follows = shown_overrides(option_overrides(used), analysis.options)
    changed = [{"option": k, "value": json.dumps(v, default=str), "default": json.dumps(d, default=str)}
               for k, (v, d) in sorted(overrides.items())]
    try:
        from cartlab.analyze import criteria_versions

        criteria = [{"table": c.get("table"), "version": c.get("version"), "status": c.get("status")}
                    for c in criteria_versions()]
    except Exception:  # noqa: BLE001 - the list is informative; the page must not fail on it
        criteria = []
    fever = (used.get("crs") or {}).get("fever_threshold_c") if isinstance(used.get("crs"), dict) else None
    out = {"changed": changed, "follows": follows, "reader_changed": reader_changes(getattr(analysis, "study", None)), "criteria": criteria,
           "fever_threshold_c": float(fever) if isinstance(fever, (int, float)) else 38.0,
           "auc_window": auc_window(analysis),
           "protocol": None if analysis.protocol is None else analysis.protocol.id}
    try:
        analysis._report_provenance = out  # one analysis, one set of options: computed once per report
    except AttributeError:  # pragma: no cover - an analysis-like object without attributes
        pass
    return out


def draw_course(study: Study, subject_id: str, *, day_range=None, grades=None, report_dir=None,
                fever_c: float | None = None, png: bool = False) -> CourseFigure:
    """Draw the course figure; with ``report_dir`` write it as SVG there (``figures/``; also as PNG with
    ``png=True``) and link the SVG, else embed it as a PNG ``data:`` URI. ``fever_c``: the fever line (the analysis's CRS
    fever threshold; default 38 °C). A subject with not-measured rows gets the label in the image."""
    fig = course_figure(study, subject_id, day_range=day_range, grades=grades,
                        fever_c=38.0 if fever_c is None else fever_c)
    info = getattr(fig, "cartlab_info", {})
    stamp = figure_stamp(provenance_counts(study.subject(subject_id)))
    if stamp:
        stamp_figure(fig, stamp)
    if report_dir is None:
        return CourseFigure("data:image/png;base64," + base64.b64encode(figure_png(fig)).decode("ascii"), info)
    files = save_figure(fig, report_dir, f"course_{subject_filename(subject_id)[len('subject_'):-len('.html')]}",
                        png=png)
    return CourseFigure(files.svg, info, files)


def _dose_role(agent: str | None, day: float | None) -> str:
    if is_car_t_agent(agent):
        return "CAR-T infusion"
    a = (agent or "").lower()
    if day is not None and -21 <= day < 0 and any(x in a for x in LYMPHODEPLETION_AGENTS):
        return "lymphodepletion"
    if day is not None and day < 0:
        return "pre-infusion (bridging / other)"
    return "other anticancer therapy"


def _text_columns(df: pl.DataFrame, **columns: pl.Expr) -> pl.DataFrame:
    """``df`` with the String ``columns`` (name=expression) added; on a frame without rows they are
    null String columns (their row-wise ``map_elements`` is not run on no rows)."""
    if df.height:
        return df.with_columns(**columns)
    return df.with_columns(pl.lit(None, pl.String).alias(name) for name in columns)


#: the subject page's listings: (column, header) pairs shown in this order, and the columns shown even when empty
_LISTINGS: dict[str, tuple[list[tuple[str, str]], tuple[str, ...]]] = {
    "doses": ([("day", "Day"), ("datetime", "Date/time"), ("_role", "Role"), ("agent", "Agent"), ("_dose", "Dose"),
               ("source", "Source"), ("source_note", "Source note")], ("day", "agent", "_dose", "source")),
    "interventions": ([("start_day", "Start day"), ("end_day", "End day"), ("category", "Category"),
                       ("agent", "Agent"), ("dose", "Dose"), ("dose_unit", "Dose unit"), ("o2_device", "O₂ device"),
                       ("o2_flow_lpm", "O₂ flow (L/min)"), ("fio2", "FiO₂"), ("indication", "Indication"),
                       ("source", "Source"), ("source_note", "Source note")],
                      ("start_day", "end_day", "category", "source")),
    "events": ([("day_shown", "Day"), ("datetime", "Date/time"), ("event", "Event"), ("detail", "Detail"),
                ("attribution", "Attribution"), ("source", "Source"), ("source_note", "Source note")],
               ("day_shown", "event", "source")),
    "paper_values": ([("day", "Day"), ("param", "Parameter"), ("analyte", "Analyte"), ("_value", "Value"),
                      ("unit", "Unit"), ("specimen", "Specimen"), ("source_note", "Source note")],
                     ("day", "param", "_value", "unit")),
}


def _listing(df: pl.DataFrame, name: str) -> dict:
    columns, always = _LISTINGS[name]
    return _table(df, columns, always=always)


def _doses_table(doses: pl.DataFrame) -> dict:
    df = _text_columns(
        doses.sort("day", nulls_last=True),
        _role=pl.struct(["agent", "day"])
        .map_elements(lambda s: _dose_role(s["agent"], s["day"]), return_dtype=pl.String),
        _dose=pl.struct(["dose", "unit"])
        .map_elements(lambda s: fmt_dose(s["dose"], s["unit"]) or None, return_dtype=pl.String),
    )
    return _listing(df, "doses")


def _interventions_table(itv: pl.DataFrame) -> dict:
    return _listing(itv.sort("start_day", nulls_last=True), "interventions")



def _events_table(ev: pl.DataFrame) -> dict:
    """The subject's events; a day its row calls approximate (source note "day 60 is approximate", or
    ``day`` among its ``reconstructed_columns``) reads "≈ 60" (review 39 B7: not a stated day)."""
    ev = ev.sort("day", nulls_last=True)
    approx = [approximate_day(r) for r in ev.iter_rows(named=True)]
    ev = ev.with_columns(pl.Series("day_shown", [f"≈ {_day(d)} (approximate)" if a and d is not None else _day(d)
                                                 for d, a in zip(ev["day"].to_list(), approx)], pl.String))
    return _listing(ev, "events")


def _paper_values_table(obs: pl.DataFrame) -> dict:
    df = obs.filter(pl.col("source").fill_null("").str.to_lowercase() == "paper").sort(
        ["day", "param"], nulls_last=True
    )
    df = _text_columns(
        df,
        _value=pl.when(pl.col("value_text").is_not_null())
        .then(pl.col("value_text"))
        .otherwise(pl.col("value").map_elements(_cell, return_dtype=pl.String)),
    )
    return _listing(df, "paper_values")


def _observation_overview(obs: pl.DataFrame) -> dict:
    if obs.height == 0:
        return {"headers": [], "rows": [], "num": []}
    src = pl.col("source").fill_null("").str.to_lowercase()
    agg = (
        obs.group_by("param")
        .agg(
            pl.len().alias("n"),
            pl.col("day").min().alias("first"),
            pl.col("day").max().alias("last"),
            (src == "paper").sum().alias("paper"),
            src.is_in(list(NOT_MEASURED_SOURCES)).sum().alias("recon"),  # simulated rows too (s30 audit)
            pl.col("unit").drop_nulls().first().alias("unit"),
        )
        .sort("param")
    )
    rows = []
    for r in agg.iter_rows(named=True):
        n_obs = r["n"] - r["paper"] - r["recon"]
        rows.append(
            {
                "cells": [r["param"], _cell(r["unit"]), str(r["n"]), _day(r["first"]), _day(r["last"]),
                          str(r["paper"]), str(r["recon"]), str(n_obs)],
                "prov": "reconstructed" if r["recon"] == r["n"] else "mixed",
            }
        )
    return {
        "num": [False, False] + [True] * 6,
        "headers": ["Parameter", "Unit", "Rows", "First day", "Last day", "Stated in paper",
                    "Not measured (reconstructed, synthetic, simulated)", "Measured"],
        "rows": rows,
    }


def _with_note(cell: str, note: str | None) -> str:
    return f"{cell} ({note})" if note and cell == EMPTY else cell


#: the CAR-T kinetics columns of the summary: label and unit ({} = the CAR copies' unit)
KINETICS_LABELS = {
    "car_cmax": ("CAR Cmax", "{}"),
    "car_tmax": ("CAR Tmax", "day"),
    "car_auc_0_28": ("CAR AUC0–28", "{} × day"),
    "car_tlast": ("CAR Tlast", "day"),
}


def _quantity(v: Any) -> str:
    """A kinetics value: large values as whole numbers with thousands separators (Cmax 183,945, AUC
    1,646,462 — never 1.64646e+06), small ones to 4 significant digits."""
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:,.4g}"
    return _cell(v)


def _car_unit(analysis, sub: Study | None, subject_id: str) -> str | None:
    """The unit of the subject's CAR copies (the kinetics table's, else the CARCOPY rows')."""
    if analysis is not None:
        try:
            kin = _of(analysis, "car_kinetics", subject_id)
        except Exception:  # noqa: BLE001 - a label must not break the page
            kin = None
        if kin is not None and kin.height and "unit" in kin.columns:
            units = [u for u in kin["unit"].to_list() if u]
            if units:
                return units[0]
    if sub is not None and sub.observations.height:
        units = sub.observations.filter(pl.col("param") == "CARCOPY")["unit"].drop_nulls().to_list()
        if units:
            return units[0]
    return None


def _summary_label(col: str, car_unit: str | None, window=(0.0, 28.0)) -> str:
    if col not in KINETICS_LABELS:
        return col
    label, unit = KINETICS_LABELS[col]
    if col == "car_auc_0_28" and tuple(window) != (0.0, 28.0):  # the column keeps its name; the label the window
        label = f"CAR AUC {window[0]:g}–{window[1]:g}"  # as the study table's header
    if "{}" in unit:
        unit = unit.format(car_unit) if car_unit else None
    return f"{label} ({unit}), {col}" if unit else f"{label}, {col}"


#: the early ICAHT pair of the summary, shown as one cell (the study table's "0–4")
ICAHT_EARLY_PAIR = ("icaht_early_grade", "icaht_early_grade_max")
ICAHT_EARLY_LABEL = "ICAHT early (days 0–30), icaht_early_grade(_max)"
#: the late ICAHT grade with its upper bound (table icaht's icaht_late_grade_max), one cell
ICAHT_LATE_PAIR = ("icaht_late_grade", "icaht_late_grade_max")
ICAHT_LATE_LABEL = "ICAHT late (after day 30), icaht_late_grade(_max)"


#: worst grades whose upper bound the summary carries as a column of its own (merged into one cell)
GRADE_RANGE_PAIRS = {"crs_grade_astct": "crs_grade_astct_max", "icans_grade_astct": "icans_grade_astct_max"}


def _grade_range_cell(lo: Any, hi: Any) -> str:
    """A worst grade with its upper bound, as the study table shows it: "1", "1–2 (range: an input
    missing, see the grades below)"."""
    if lo is None or hi is None or hi == lo:
        return _cell(lo)
    return f"{grade_span(lo, hi)} (range: an input missing, see the grades below)"


def _summary_block(summary: pl.DataFrame | None, subject_id: str, note: str | None = None,
                   car_unit: str | None = None, analysis=None, car_why: str | None = None) -> dict:
    """The subject's summary row; ``car_why`` (:func:`~cartlab.report.subject_blocks.car_missing_reasons`)
    names the missing input behind empty CAR-T kinetics cells ("— (no CARCOPY/CARCELL sample after day 0)")."""
    summary = with_late_grade_max(summary, analysis)
    window = auc_window(analysis)
    if summary is not None and "subject_id" in summary.columns:
        cols = [c for c in summary.columns if c != "subject_id"]
        rows = summary.filter(pl.col("subject_id").cast(pl.String) == subject_id)
    else:
        cols, rows = [c for c in SUBJECT_SUMMARY_COLUMNS if c != "subject_id"], None
    pair = all(c in cols for c in ICAHT_EARLY_PAIR)
    if pair:  # one "ICAHT early" cell where the grade was; its upper bound is no column of its own
        cols = [c for c in cols if c != ICAHT_EARLY_PAIR[1]]
    # CRS and ICANS as the study table shows them: one cell, "1–2" when an input is missing
    merged = {lo: hi for lo, hi in GRADE_RANGE_PAIRS.items() if lo in cols and hi in cols}
    late = all(c in cols for c in ICAHT_LATE_PAIR)  # the late grade as a range too (table icaht)
    cols = [c for c in cols if c not in merged.values() and not (late and c == ICAHT_LATE_PAIR[1])]
    if rows is None or rows.height == 0:
        cells = [EMPTY] * len(cols)
    else:
        r = rows.row(0, named=True)
        cells = [icaht_early_text(analysis, subject_id, r[c], r[ICAHT_EARLY_PAIR[1]]) if pair and c == ICAHT_EARLY_PAIR[0]
                 else late_grade_text(r[c], r[ICAHT_LATE_PAIR[1]]) if late and c == ICAHT_LATE_PAIR[0]
                 else _grade_range_cell(r[c], r[merged[c]]) if c in merged
                 else _day(r[c]) if c in ("car_tmax", "car_tlast")
                 else zero_exposure(r[c], "AUC" if "auc" in c else "Cmax") or _quantity(r[c])
                 if c in ("car_cmax", "car_auc_0_28")
                 else _quantity(r[c]) if c in KINETICS_LABELS
                 else _day(r[c]) if _is_day(c)
                 # NE for want of a CAR-T dose says so (review 39 B2/B5), not a bare "NE"
                 # NE with the engine's reason, as the study table (review 41 F7)
                 else f"{_cell(r[c])} ({note})" if c == "best_response" and note and r[c] == "NE"
                 else _with_note(_cell(r[c]), note if c == "best_response" else None) for c in cols]
        cells = [_with_note(v, car_why) if c in KINETICS_LABELS else v for c, v in zip(cols, cells)]
    if pair:
        cols = [ICAHT_EARLY_LABEL if c == ICAHT_EARLY_PAIR[0] else c for c in cols]
    if late:
        cols = [ICAHT_LATE_LABEL if c == ICAHT_LATE_PAIR[0] else c for c in cols]
    return {
        "given": summary is not None,
        "items": list(zip([_summary_label(c, car_unit, window) for c in cols], cells)),
        "any_empty": any(c.startswith(EMPTY) for c in cells),
    }


def _not_measured_kinds(counts: dict[str, Any]) -> dict[str, str] | None:
    """The kinds of not-measured rows a subject holds, in the page's words: ``rows`` ("reconstructed",
    "synthetic", "reconstructed or synthetic") and what a grade derived from them is (``grade``); None
    when every row was measured or stated in the publication."""
    kinds = [k for k in NOT_MEASURED_SOURCES if counts.get(k)]
    if not kinds:
        return None
    grade = {"reconstructed": "a reconstruction", "synthetic": "synthetic", "simulated": "simulated"}
    return {"rows": " or ".join(kinds),
            "grade": grade.get(kinds[0], kinds[0]) if len(kinds) == 1 else "not measured either"}


def _analysis(study: Study, protocol, analysis):
    """The analysis the report shows (one of ``study`` with the default options when none is given)."""
    if analysis is not None:
        if analysis.study is not study and analysis.study.study_id != study.study_id:
            raise ValueError("the analysis is of another study")
        if protocol is not None and analysis.protocol is None:
            raise ValueError("a protocol section needs an analysis made with that protocol")
        return analysis
    from cartlab.analyze import Analysis

    return Analysis(study, protocol=protocol)


def _sources_table(study: Study, sub: Study | None) -> dict:
    counts: dict[str, int] = {}
    if sub is not None:
        for df in sub.tables().values():  # rows per file: counted per distinct name, not per row
            for f, n in df.get_column("src_file").drop_nulls().value_counts().iter_rows():
                counts[f] = counts.get(f, 0) + n
                base = Path(f).name
                if base != f:
                    counts[base] = counts.get(base, 0) + n
    rows = []
    for r in study.sources.iter_rows(named=True):
        f = r.get("file")
        cells = [_cell(f), _cell(r.get("format")), _cell(r.get("sha256")), _cell(r.get("n_rows"))]
        if sub is not None:
            n = counts.get(f or "", counts.get(Path(f or "").name, 0))
            cells.append(str(n))
        rows.append({"cells": cells, "prov": "observed"})
    headers = ["File", "Format", "SHA-256", "Rows in file"]
    if sub is not None:
        headers.append("Rows of this subject")
    return {"headers": headers, "rows": rows, "num": [False, False, False, True, True]}


@functools.lru_cache(maxsize=1)
def _version() -> str:
    try:
        from importlib.metadata import version

        return version("cartlab")
    except Exception:  # pragma: no cover - not installed
        return "unknown"


def _page_footer() -> dict[str, str]:
    """The template context every report page ends with: the not-evaluable note, the empty-cell mark,
    cartlab's version and the date the page was generated."""
    return {"engine_note": ENGINE_NOTE, "empty": EMPTY, "version": _version(),
            "generated": _dt.date.today().isoformat()}


def _subject_facts(sub: Study, subject_id: str) -> tuple[list[tuple[str, str, str]], str]:
    """The subject's characteristics as (label, value, row class) lines and the row's class. A ``paper``
    row's columns named in its extra column ``reconstructed_columns`` are marked reconstructed
    (:func:`~cartlab.report.provenance_marks.reconstructed_columns`): only the others were stated."""
    if sub.subjects.height == 0:
        return [("Subject", subject_id, "observed")], "observed"
    r = sub.subjects.row(0, named=True)
    prov = provenance_kind(r.get("source"))
    recon = reconstructed_columns(r) if prov == "paper" else set()
    items = [(label, _cell(r.get(col)), "reconstructed" if col.lower() in recon else prov)
             for col, label in SUBJECT_FIELDS]
    # a blank field reads "not given", never vanishes (review 39 B6: missing is not negative); the optional
    # infusion date/time and source note stay out when blank
    items = [(k, NOT_GIVEN.get(col, "not given") if v == EMPTY and col in NOT_GIVEN else v, p)
             for (k, v, p), (col, _) in zip(items, SUBJECT_FIELDS)
             if v != EMPTY or col in NOT_GIVEN or k in ("Subject", "Source")]
    if r.get("extra"):
        try:
            extra = json.loads(r["extra"])
            items += [("Reconstructed columns (not stated)" if str(k).strip().lower() == RECONSTRUCTED_COLUMNS
                       else str(k), _cell(v), "reconstructed" if str(k).lower() in recon
                       else "observed" if str(k).strip().lower() == RECONSTRUCTED_COLUMNS else prov)
                      for k, v in extra.items()]
        except (ValueError, AttributeError):
            items.append(("Extra", str(r["extra"]), prov))
    return items, prov


# --------------------------------------------------------------------------------------------


def render_subject_html(
    study: Study,
    subject_id: str,
    *,
    summary: pl.DataFrame | None = None,
    title: str | None = None,
    day_range: tuple[float, float] | None = None,
    index_href: str | None = None,
    protocol=None,
    analysis=None,
    figures: Sequence[ReportFigure] = (),
    course: CourseFigure | None = None,
    report_dir: str | Path | None = None,
) -> str:
    """The HTML text of one subject's report (see :func:`write_subject_report`); with a
    ``protocol`` (:class:`cartlab.protocol.Protocol`) it gains the protocol section. The derived
    sections come from ``analysis`` (:class:`cartlab.analyze.Analysis`, with its options), else from
    an analysis of ``study`` with the default options. ``course`` is the drawn course figure
    (:func:`draw_course`); without it the figure is drawn and embedded in the page. With ``report_dir``
    the extra ``figures`` are written to its ``figures/`` folder and linked, else embedded."""
    analysis = _analysis(study, protocol, analysis)
    sub = study.subject(subject_id)
    if all(df.is_empty() for df in sub.tables().values()):
        raise KeyError(f"subject {subject_id!r} not in study {study.study_id!r}")
    provenance = report_provenance(analysis)
    if course is None:
        course = draw_course(study, subject_id, day_range=day_range, grades=subject_grades(analysis, subject_id),
                             fever_c=provenance["fever_threshold_c"])
    facts, facts_prov = _subject_facts(sub, subject_id)
    kinds = source_kinds(sub.tables().values())  # source row -> its source: marks derived rows (B2, s37)
    counts = provenance_counts(sub)
    ctx = {
        "title": title or f"{study.study_id} — subject {subject_id}",
        "study_id": study.study_id,
        "subject_id": subject_id,
        "counts": counts,
        "table_names": list(TABLES),
        "facts": facts,
        "facts_prov": facts_prov,
        "doses": _doses_table(sub.doses),
        "interventions": _interventions_table(sub.interventions),
        "events": _events_table(sub.events),
        # a file not given is not "none recorded" (review 37 B2); the analysis's warnings about this subject
        "interventions_empty": absent_file_text(study, "interventions.csv", "no interventions recorded"),
        "events_empty": absent_file_text(study, "events.csv", "no events recorded"),
        "warnings": subject_warnings(study, analysis, subject_id),
        "not_infused": not_infused_banner(analysis, subject_id),
        "paper_values": _paper_values_table(sub.observations),
        "overview": _observation_overview(sub.observations),
        "summary": _summary_block(summary, subject_id, response_notes(analysis, subject_id).get(subject_id),
                                  _car_unit(analysis, sub, subject_id), analysis,
                                  car_missing_reasons(sub, analysis, [subject_id]).get(subject_id)),
        "not_measured_kinds": _not_measured_kinds(counts),
        "toxicity": _toxicity_block(analysis, subject_id, kinds),
        "response": _response_block(analysis, subject_id, kinds),
        "protocol": _protocol_block(analysis, subject_id, protocol),
        "sources": _sources_table(study, sub),
        "analysis_provenance": provenance,
        "figure_src": course.src,
        "figure_files": course.files,
        "figure_info": course.info,
        "extra_figures": [f.context(report_dir, subject_id) for f in figures],
        "recon_caption": RECONSTRUCTED_CAPTION,
        "index_href": index_href,
        **_page_footer(),
    }
    return _env().get_template("subject.html.j2").render(**ctx)


def write_subject_report(study: Study, subject_id: str, out_dir, *, png: bool = False, **page) -> Path:
    """Write ``out_dir/subject_<id>.html`` with its course figure as ``figures/course_<id>.svg`` (and
    ``.png`` with ``png=True``) and return the page's path; ``page``: the keywords of
    :func:`render_subject_html` (``summary``, ``title``, ``day_range``, ``index_href``, ``protocol``,
    ``analysis``, ``figures``, ``course``: an already drawn figure).

    ``summary`` is a ``subject_summary``-like frame (one row per subject); its columns for this
    subject are shown, missing values as "—". ``figures`` are extra sections (:class:`ReportFigure`).
    Raises ``KeyError`` for an unknown subject.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page["analysis"] = analysis = _analysis(study, page.get("protocol"), page.get("analysis"))
    if page.get("course") is None:
        page["course"] = draw_course(study, subject_id, day_range=page.get("day_range"),
                                     grades=subject_grades(analysis, subject_id), report_dir=out,
                                     fever_c=report_provenance(analysis)["fever_threshold_c"], png=png)
    html = render_subject_html(study, subject_id, report_dir=out, **page)
    path = out / subject_filename(subject_id)
    path.write_text(html, encoding="utf-8")
    return path
