"""Cohort filters and the tables the dashboard shows (pure functions over the StudyView's frames).

Filters (issue 17 §3): disease, target, dose level, best response, worst ASTCT CRS grade. A subject
whose value is missing is shown under "not evaluable" (response, CRS) or "unknown" (the others) --
missing is never read as a category of its own data (e.g. CRS grade 0).
"""

from __future__ import annotations

import polars as pl

#: filter input id -> cohort column
FILTER_COLUMNS = {"f_disease": "disease", "f_target": "target", "f_dose": "dose_level",
                  "f_response": "best_response", "f_crs": "crs_grade_astct"}
MISSING_LABEL = {"best_response": "not evaluable", "crs_grade_astct": "not evaluable"}


def _label(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.String).fill_null(MISSING_LABEL.get(col, "unknown"))


def filter_choices(cohort: pl.DataFrame) -> dict[str, list[str]]:
    """The values each filter can take in this cohort (sorted; the missing label last)."""
    out = {}
    for key, col in FILTER_COLUMNS.items():
        vals = cohort.select(_label(col).unique()).to_series().to_list()
        miss = MISSING_LABEL.get(col, "unknown")
        out[key] = sorted(v for v in vals if v != miss) + ([miss] if miss in vals else [])
    return out


def filter_cohort(cohort: pl.DataFrame, selected: dict[str, tuple[str, ...] | list[str]]) -> pl.DataFrame:
    """The subjects matching every filter with a selection (an empty selection = no filter)."""
    cond = pl.lit(True)
    for key, values in selected.items():
        if values:
            cond = cond & _label(FILTER_COLUMNS[key]).is_in(list(values))
    return cohort.filter(cond)


def display_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """A frame for the page: list columns joined with '; ', floats to 4 significant digits."""
    exprs = []
    for c, t in frame.schema.items():
        if isinstance(t, pl.List):
            exprs.append(pl.col(c).cast(pl.List(pl.String)).list.join("; ").alias(c))
        elif t in (pl.Float64, pl.Float32):
            exprs.append(pl.col(c).round_sig_figs(4).alias(c))
        elif isinstance(t, (pl.Struct, pl.Object)):
            exprs.append(pl.col(c).cast(pl.String, strict=False).alias(c))
    return frame.with_columns(exprs) if exprs else frame


def grades_table(crs_daily: pl.DataFrame, icans_daily: pl.DataFrame) -> pl.DataFrame:
    """The ASTCT CRS and ICANS grade of every assessed day with its rule, reason and evidence
    (``evidence`` = source rows "file:row"; ``rule_status`` = the rule's verification)."""
    cols = ("day", "grade", "grade_max", "rule", "reason", "evidence", "rule_status")
    parts = []
    for scale, frame in (("CRS (ASTCT 2019)", crs_daily), ("ICANS (ASTCT 2019)", icans_daily)):
        if frame.height:
            keep = [c for c in cols if c in frame.columns]
            parts.append(frame.select(pl.lit(scale).alias("scale"), *keep))
    if not parts:
        return pl.DataFrame(schema={"scale": pl.String, "day": pl.Float64, "grade": pl.Int64, "rule": pl.String,
                                    "reason": pl.String, "evidence": pl.List(pl.String)})
    return pl.concat(parts, how="diagonal_relaxed").sort("day", "scale")


def kinetics_table(car_kinetics: pl.DataFrame, adpp: pl.DataFrame) -> pl.DataFrame:
    """The NCA parameters of the subject (ADPP rows: test, value, interval, method, evidence);
    with no ADPP rows, the car_kinetics row's reason."""
    if adpp.height:
        keep = [c for c in ("PARAMCD", "PPTESTCD", "PPTEST", "AVAL", "PPSTINT", "PPENINT", "METHOD", "EVIDENCE")
                if c in adpp.columns]
        return adpp.select(keep)
    if car_kinetics.height:
        return car_kinetics.select([c for c in ("param", "n_samples", "cmax", "tmax", "reason") if c in
                                    car_kinetics.columns])
    return pl.DataFrame({"note": ["no CARCOPY or CARCELL sample after the first infusion"]})


def cohort_views(view, subject_ids: list[str]) -> list:
    """The cohort views of the filtered subjects: ``cartlab.report.cohort_plotly.cohort_figures_plotly``
    when it is installed, else a minimal overview (worst CRS grade and best response counts) and the
    response rates table of the analysis."""
    try:
        from cartlab.report.cohort_plotly import cohort_figures_plotly
    except ImportError:
        cohort_figures_plotly = None
    if cohort_figures_plotly is not None:
        return list(cohort_figures_plotly(view.analysis, subject_ids=subject_ids))
    from cartlab.app.figures import cohort_overview_figure
    from cartlab.report.cohort_base import CohortView

    sub = view.cohort.filter(pl.col("subject_id").is_in(subject_ids))
    counts = (sub.select(_label("crs_grade_astct").alias("worst ASTCT CRS grade")).group_by("worst ASTCT CRS grade")
              .len("subjects").sort("worst ASTCT CRS grade"))
    return [CohortView("overview", "Worst CRS grade and best response", f"{sub.height} subjects (filtered); "
                       "subjects whose grade or response could not be derived are counted as not evaluable",
                       cohort_overview_figure(sub), None),
            CohortView("crs_counts", "Subjects by worst ASTCT CRS grade", "", None, counts)]
