"""Cohort filters and the tables the dashboard shows (pure functions over the StudyView's frames).

Filters (issue 17 §3): disease, target, dose level, best response, worst ASTCT CRS grade, worst ASTCT
ICANS grade. A subject whose value is missing is shown under "not evaluable" (response, grades) or
"unknown" (the others) -- missing is never read as a category of its own data (e.g. CRS grade 0).

Missing is not negative (docs/derivation-conventions.md): a worst grade with a higher possible maximum
(``crs_grade_astct_max`` > ``crs_grade_astct``: some day lacked an input, e.g. a temperature) is the
range ``"0–1"``, its own filter choice; the choice ``"0"`` holds only subjects whose maximum is 0 too.
A best response of ``NE`` and a missing one are both "not evaluable"; a subject whose disease has no
response criteria in cartlab yet (``response.no_criteria``) is "no response criteria yet (LBCL)".
"""

from __future__ import annotations

import math
import re

import polars as pl

#: filter input id -> cohort column
FILTER_COLUMNS = {"f_disease": "disease", "f_target": "target", "f_dose": "dose_level",
                  "f_response": "best_response", "f_crs": "crs_grade_astct", "f_icans": "icans_grade_astct"}
#: filter input id -> a short name for file names and provenance
FILTER_NAMES = {"f_disease": "disease", "f_target": "target", "f_dose": "dose", "f_response": "response",
                "f_crs": "crs", "f_icans": "icans"}
MISSING_LABEL = {"best_response": "not evaluable", "crs_grade_astct": "not evaluable",
                 "icans_grade_astct": "not evaluable"}
NO_CRITERIA_RULE = "response.no_criteria"


def grade_label_expr(col: str, max_col: str | None = None) -> pl.Expr:
    """A worst grade as shown: ``"2"``, or the range ``"0–1"`` when ``max_col`` (the grade had every
    missing input been positive) is higher; "not evaluable" when the grade is missing."""
    g = pl.col(col).cast(pl.Int64)
    plain = g.cast(pl.String)
    if max_col is None:
        return plain.fill_null(MISSING_LABEL[col])
    m = pl.col(max_col).cast(pl.Int64)
    return (pl.when(g.is_null()).then(pl.lit(MISSING_LABEL[col]))
            .when(m.is_not_null() & (m > g)).then(pl.format("{}–{}", g, m))
            .otherwise(plain))


def label_expr(col: str, columns) -> pl.Expr:
    """The filter label of a cohort column (using the helper columns the frame has)."""
    cols = set(columns)
    if col in ("crs_grade_astct", "icans_grade_astct"):
        mx = f"{col}_max"
        return grade_label_expr(col, mx if mx in cols else None)
    if col == "best_response":
        r = pl.col(col).cast(pl.String)
        out = pl.when(r.is_null() | (r == "NE")).then(pl.lit(MISSING_LABEL[col])).otherwise(r)
        if "best_response_rule" in cols:
            disease = pl.col("disease").cast(pl.String).fill_null("?") if "disease" in cols else pl.lit("?")
            out = (pl.when(r.is_null() & (pl.col("best_response_rule") == NO_CRITERIA_RULE))
                   .then(pl.format("no response criteria yet ({})", disease)).otherwise(out))
        return out
    return pl.col(col).cast(pl.String).fill_null(MISSING_LABEL.get(col, "unknown"))


def _sort_key(col: str):
    from cartlab.app.data import dose_label_value

    def key(v: str):
        if col == "dose_level":
            x = dose_label_value(v)
            return (0, x if x is not None else float("inf"), v)
        if col in ("crs_grade_astct", "icans_grade_astct"):
            nums = [int(n) for n in re.findall(r"\d+", v)]
            return (0, nums[0], nums[-1]) if nums else (1, 0, 0)  # "0", then "0–1", then "1"
        return (0, v)

    return key


def filter_choices(cohort: pl.DataFrame) -> dict[str, list[str]]:
    """The values each filter can take in this cohort (sorted: doses and grades by number; the missing
    label last)."""
    out = {}
    for key, col in FILTER_COLUMNS.items():
        if col not in cohort.columns:
            continue
        vals = cohort.select(label_expr(col, cohort.columns).unique()).to_series().to_list()
        miss = MISSING_LABEL.get(col, "unknown")
        out[key] = sorted((v for v in vals if v != miss), key=_sort_key(col)) + ([miss] if miss in vals else [])
    return out


def filter_cohort(cohort: pl.DataFrame, selected: dict[str, tuple[str, ...] | list[str]]) -> pl.DataFrame:
    """The subjects matching every filter with a selection (an empty selection = no filter)."""
    cond = pl.lit(True)
    for key, values in selected.items():
        if values and FILTER_COLUMNS[key] in cohort.columns:
            cond = cond & label_expr(FILTER_COLUMNS[key], cohort.columns).is_in(list(values))
    return cohort.filter(cond)


def active_filters(selected: dict) -> dict[str, list[str]]:
    """The filters with a selection, by their short name (``{"disease": ["AML"]}``)."""
    return {FILTER_NAMES[k]: list(v) for k, v in selected.items() if v}


def _slug(value: str) -> str:
    v = value.translate(str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")).replace("×10", "e").replace("/kg", "")
    return re.sub(r"[^A-Za-z0-9.]+", "-", v).strip("-") or "x"


#: between the values of one filter in a file name (``crs-0-1_or_0``: "0–1" or "0"; never "." or "-",
#: which read as a decimal or a range)
VALUE_SEP = "_or_"


def filter_tag(selected: dict) -> str:
    """The filters in a file name: ``"_disease-AML_crs-0-1"`` (empty without a filter), several values
    of one filter joined by ``_or_`` (``"_crs-0-1_or_0"``); a long one is cut and ends with a short
    hash of the whole, so two filters never share a name."""
    import hashlib

    act = active_filters(selected)
    if not act:
        return ""
    tag = "".join(f"_{name}-{VALUE_SEP.join(_slug(v) for v in vals)}" for name, vals in act.items())
    if len(tag) > 70:
        digest = hashlib.sha256(repr(sorted(act.items())).encode()).hexdigest()[:8]
        tag = tag[:60].rstrip("-_.") + f"_{digest}"
    return "_filtered" + tag


#: the early ICAHT pair of the cohort table (both kept in the CSV download)
ICAHT_EARLY_PAIR = ("icaht_early_grade", "icaht_early_grade_max")
#: the late ICAHT upper bound (table icaht), shown in the late cell ("3–4"; kept in the CSV download)
LATE_MAX = "icaht_late_grade_max"
#: why an ICAHT grade is missing (the icaht table's early_reason / late_reason; :func:`cartlab.app.data.build_view`)
ICAHT_REASONS = ("icaht_early_reason", "icaht_late_reason")


def cohort_display(cohort: pl.DataFrame, interpolated: set[str] | frozenset = frozenset()) -> pl.DataFrame:
    """The cohort table as the page shows it: the early ICAHT grade and its upper bound as one column
    ``icaht_early`` where the grade was ("0–4" when days 0-30 lack an ANC, as the report's study
    table: :func:`cartlab.report.cells.grade_range`; "NE (≤4)" = not evaluable with its upper bound, "—" =
    not evaluable, no bound), the late grade as ``icaht_late`` ("3–4" when ``icaht_late_grade_max`` is
    higher; "NE (≤4)" / "—" likewise), each followed
    by why it is not evaluable (``icaht_early_reason``, ``icaht_late_reason``). The worst CRS and ICANS
    grades are shown as the headline and the filter show them: "1–2" when ``<grade>_max`` is higher
    (a day lacked an input; missing is not negative), "not evaluable" when missing (the ``_max``
    column is then dropped from the display). An early grade of a subject in ``interpolated`` (no ANC
    measured in days 0-30: :func:`cartlab.app.absent.interpolated_only`) carries the mark
    "(interpolated: no ANC measured in days 0-30)" (review 39 B5). The download keeps the grade columns."""
    from cartlab.app.absent import INTERPOLATED_MARK
    from cartlab.report.cells import grade_range

    lo, hi = ICAHT_EARLY_PAIR
    out = cohort
    for g in ("crs_grade_astct", "icans_grade_astct"):
        if g in out.columns:
            mx = f"{g}_max" if f"{g}_max" in out.columns else None
            out = out.with_columns(grade_label_expr(g, mx).alias(g))
            out = out.drop(mx) if mx else out
    if lo in out.columns and hi in out.columns:
        text = [grade_range(a, b) + (f" ({INTERPOLATED_MARK})" if a is not None and sid in interpolated else "")
                for a, b, sid in zip(out[lo].to_list(), out[hi].to_list(), out["subject_id"].to_list())]
        out = out.with_columns(pl.Series(lo, text, pl.String)).drop(hi).rename({lo: "icaht_early"})
    if "icaht_late_grade" in out.columns:  # a range too when icaht_late_grade_max is higher ("3–4")
        hi = (out[LATE_MAX].to_list() if LATE_MAX in out.columns else [None] * out.height)
        text = [grade_range(a, b) for a, b in zip(out["icaht_late_grade"].to_list(), hi)]
        out = out.with_columns(pl.Series("icaht_late_grade", text, pl.String)).rename(
            {"icaht_late_grade": "icaht_late"})
        out = out.drop(LATE_MAX) if LATE_MAX in out.columns else out
    reasons = [c for c in ICAHT_REASONS if c in out.columns]
    if reasons and "icaht_late" in out.columns:  # the reasons beside the grades
        cols = [c for c in out.columns if c not in reasons]
        at = cols.index("icaht_late") + 1
        out = out.select(cols[:at] + reasons + cols[at:])
    return out


def report_round_expr(col: str) -> pl.Expr:
    """A float column rounded as the report prints it, kept a number so the table sorts by value: a day
    (``day``, ``*_day``, ``*tmax``, ``*tlast``) to 2 decimals (:func:`cartlab.report.cells._day`: "d7.36"),
    a percent column ("% of evaluable") to 1 decimal, any other value as
    :func:`cartlab.report.figures.fmt_value` (whole from 100 on: AUC 6,057,119; 1 decimal from 10; 3
    significant digits below)."""
    from cartlab.report.cells import _is_day

    x = pl.col(col)
    if _is_day(col) or col.lower().endswith(("tmax", "tlast")):
        return x.round(2).alias(col)
    if "%" in col:  # a percent ("% of evaluable"): one decimal, as the report prints it
        return x.round(1).alias(col)
    a = x.abs()
    return (pl.when(a.is_nan() | a.is_infinite()).then(x).when(a >= 100).then(x.round(0))
            .when(a >= 10).then(x.round(1)).when(a == 0).then(pl.lit(0.0))
            .otherwise(x.round_sig_figs(3)).alias(col))


def display_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """A frame for the page: list columns joined with '; ', floats rounded as the report prints them
    (:func:`report_round_expr`)."""
    exprs = []
    for c, t in frame.schema.items():
        if isinstance(t, pl.List):
            exprs.append(pl.col(c).cast(pl.List(pl.String)).list.join("; ").alias(c))
        elif t in (pl.Float64, pl.Float32):
            exprs.append(report_round_expr(c))
        elif isinstance(t, (pl.Struct, pl.Object)):
            exprs.append(pl.col(c).cast(pl.String, strict=False).alias(c))
    return frame.with_columns(exprs) if exprs else frame


def grades_table(crs_daily: pl.DataFrame, icans_daily: pl.DataFrame, kinds: dict | None = None) -> pl.DataFrame:
    """The ASTCT CRS and ICANS grade of every assessed day with its rule, reason and evidence
    (``grade_max`` / ``missing_inputs`` = the grade had the missing inputs been positive, and which;
    ``evidence`` = source rows "file:row"; ``rule_status`` = the rule's verification). With ``kinds``
    (the subject's "file:row" -> source kind) a ``not_measured`` column marks a day whose evidence
    has not-measured rows as the report does ("rec. 2 of 4 rows";
    :func:`cartlab.report.provenance_marks.with_marks`), null when every source row was measured."""
    cols = ("day", "grade", "grade_max", "missing_inputs", "rule", "reason", "evidence", "rule_status")
    parts = []
    for scale, frame in (("CRS (ASTCT 2019)", crs_daily), ("ICANS (ASTCT 2019)", icans_daily)):
        if frame.height:
            keep = [c for c in cols if c in frame.columns]
            parts.append(frame.select(pl.lit(scale).alias("scale"), *keep))
    if not parts:
        return pl.DataFrame(schema={"scale": pl.String, "day": pl.Float64, "grade": pl.Int64, "rule": pl.String,
                                    "reason": pl.String, "evidence": pl.List(pl.String)})
    out = pl.concat(parts, how="diagonal_relaxed").sort("day", "scale")
    if kinds is None:
        return out
    from cartlab.report.provenance_marks import with_marks

    marked, _classes = with_marks(out, "evidence", kinds)
    if "not_measured" not in marked.columns:  # no evidence column: say so rather than show nothing
        return out
    at = marked.columns.index("grade_max" if "grade_max" in marked.columns else "grade") + 1
    cols = [c for c in marked.columns if c != "not_measured"]
    return marked.select(cols[:at] + ["not_measured"] + cols[at:])


#: ADPP parameters that need the terminal slope (lambda.z)
_NEEDS_LAMBDA_Z = {"LAMZ", "LAMZHL", "LAMZNPT", "LAMZLL", "LAMZUL", "R2", "R2ADJ", "AUCIFO", "AUCIFP", "AUCPEO",
                   "CLSTP", "MRTIFO", "VZO", "CLO"}


def _num_text(v) -> str:
    if v is None:
        return "?"
    v = float(v)
    return "∞" if math.isinf(v) else (str(int(v)) if v.is_integer() else f"{v:g}")


def interval_label(start, end) -> str:
    """What an NCA row's values belong to: "whole profile (day 0–∞)" for the interval from day 0 with
    no end, else "interval day 0–21" (car_kinetics ``start`` / ``end``)."""
    if (start is None or float(start) == 0) and (end is None or math.isinf(float(end))):
        return "whole profile (day 0–∞)"
    return f"interval day {_num_text(start)}–{_num_text(end)}"


def kinetics_warnings(car_kinetics: pl.DataFrame) -> list[str]:
    """The NCA's warnings of the subject, one per item, each with what it belongs to:
    ``"whole profile (day 0–∞): code: text"`` (and the parameter, when the subject has several), so a
    warning of the whole-profile NCA ("aucint is null") is never read as one of the AUC window shown."""
    if not car_kinetics.height or "warnings" not in car_kinetics.columns:
        return []
    k = car_kinetics
    params = k["param"].n_unique() if "param" in k.columns else 1
    out: list[str] = []
    for r in k.iter_rows(named=True):  # one row per parameter and interval: a handful
        text = r["warnings"]
        if text is None:
            continue
        label = interval_label(r.get("start"), r.get("end"))
        if params > 1 and r.get("param"):
            label = f"{r['param']}, {label}"
        items = text if isinstance(text, list) else re.split(r";\s+(?=[a-z0-9_]+:)", str(text))
        out += [f"{label}: {str(i).strip()}" for i in items if str(i).strip()]
    return list(dict.fromkeys(out))


def _why_empty(code: str, ck: dict, warnings: list[str]) -> str:
    lz_reason = ck.get("lambda.z.reason")
    if code in _NEEDS_LAMBDA_Z:
        return f"lambda.z not estimable: {lz_reason}" if lz_reason else "lambda.z not estimable"
    if code.startswith("AUCINT"):
        hit = [w for w in warnings if re.search(r"(^|: )aucint", w)]
        return ck.get("reason") or (hit[0] if hit else "the interval could not be integrated")
    return ck.get("reason") or "not computed (see the NCA warnings)"


def kinetics_table(car_kinetics: pl.DataFrame, adpp: pl.DataFrame) -> pl.DataFrame:
    """The NCA parameters of the subject (ADPP rows: test, value, interval, method, evidence) with
    ``why_empty``: for a parameter without a value, why (the car_kinetics row's ``lambda.z.reason``,
    ``reason`` and warnings); with no ADPP rows, the car_kinetics row's reason."""
    if adpp.height:
        keep = [c for c in ("PARAMCD", "PPTESTCD", "PPTEST", "AVAL", "PPSTINT", "PPENINT", "METHOD", "EVIDENCE")
                if c in adpp.columns]
        out = adpp.select(keep)
        if "AVAL" in out.columns and "PPTESTCD" in out.columns:
            ck = car_kinetics.row(0, named=True) if car_kinetics.height else {}
            warns = kinetics_warnings(car_kinetics)
            why = [None if v is not None else _why_empty(str(c), ck, warns)
                   for c, v in zip(out["PPTESTCD"].to_list(), out["AVAL"].to_list())]
            out = out.with_columns(pl.Series("why_empty", why, dtype=pl.String))
        return out
    if car_kinetics.height:
        return car_kinetics.select([c for c in ("param", "n_samples", "cmax", "tmax", "reason", "warnings") if c in
                                    car_kinetics.columns])
    return pl.DataFrame({"note": ["no CARCOPY or CARCELL sample"]})


def cohort_views(view, subject_ids: list[str] | None) -> list:
    """The cohort views of the filtered subjects (None: every subject, from the analysis's own tables):
    ``cartlab.report.cohort_plotly.cohort_figures_plotly`` when it is installed, else a minimal
    overview (worst CRS grade and best response counts) and the response rates table of the analysis."""
    try:
        from cartlab.report.cohort_plotly import cohort_figures_plotly
    except ImportError:
        cohort_figures_plotly = None
    if cohort_figures_plotly is not None:
        with warnings_once():
            views = list(cohort_figures_plotly(view.analysis, subject_ids=subject_ids))
        for v in views:  # captions count not-measured rows as the Patient banner does (provenance_note)
            shorten_id_ticks(v.figure)
        return views
    from cartlab.app.figures import cohort_overview_figure
    from cartlab.report.cohort_base import CohortView

    sub = view.cohort if subject_ids is None else view.cohort.filter(pl.col("subject_id").is_in(subject_ids))
    counts = (sub.select(label_expr("crs_grade_astct", sub.columns).alias("worst ASTCT CRS grade")).group_by("worst ASTCT CRS grade")
              .len("subjects").sort("worst ASTCT CRS grade"))
    return [CohortView("overview", "Worst CRS grade and best response", f"{sub.height} subjects (filtered); "
                       "subjects whose grade or response could not be derived are counted as not evaluable",
                       cohort_overview_figure(sub), None),
            CohortView("crs_counts", "Subjects by worst ASTCT CRS grade", "", None, counts)]


#: a subject id longer than this is cut on a figure's axis (the hover keeps it whole; review 39 B3)
ID_TICK_CHARS = 24


def cut_id(value: str, limit: int = ID_TICK_CHARS) -> str:
    """``value`` cut to ``limit`` characters with "…" when longer ("LLLLLLLLLLLLLLLLLLLL-XXX…")."""
    return value if len(value) <= limit else value[:limit] + "…"


def shorten_id_ticks(fig, limit: int = ID_TICK_CHARS):
    """A plotly figure whose y axis shows text categories (subject ids: the swimmer, the cytokine heat
    map) with tick labels cut to ``limit`` characters when one is longer (tickvals stay the full ids,
    so the hover, which reads y, names the whole id; the plot height is kept). Others unchanged."""
    if fig is None or not hasattr(fig, "update_yaxes"):
        return fig
    ys: dict[str, None] = {}
    for tr in fig.data:
        if getattr(tr, "yaxis", "y") not in (None, "y"):
            continue
        y_values = getattr(tr, "y", None)
        for y in (() if y_values is None else list(y_values)):
            if isinstance(y, str):
                ys.setdefault(y, None)
    order = list(getattr(fig.layout.yaxis, "categoryarray", None) or ()) or list(ys)
    order += [y for y in ys if y not in set(order)]
    if not any(len(y) > limit for y in order):
        return fig
    fig.update_yaxes(tickmode="array", tickvals=order, ticktext=[cut_id(y, limit) for y in order])
    return fig


_SHOWN: set[tuple] = set()


class warnings_once:
    """Show each warning (category and code location) once per server process: the cohort views are
    recomputed on every filter change and would repeat the same (redacted) log line each time."""

    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings(record=True)
        self._caught = self._cm.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        import warnings

        self._cm.__exit__(*exc)
        for w in self._caught:
            key = (w.category, w.filename, w.lineno)
            if key in _SHOWN:
                continue
            _SHOWN.add(key)
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return False
