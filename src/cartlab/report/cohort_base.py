"""Shared pieces of the cohort views: the view record, "not available" and provenance helpers.

The cohort views (:mod:`cartlab.report.cohort_data`, :mod:`cartlab.report.cohort_stats`) read the
tables of one :class:`~cartlab.analyze.Analysis` (never an engine again). A view that cannot be
drawn raises :class:`ViewUnavailable` naming the missing table or input and why (the analysis's
``skipped`` record when the engine was skipped). ``subject_ids`` restricts every view to a subset
(the dashboard's filters); ``None`` means every subject of the study.

Provenance (the report's honesty rule, :mod:`cartlab.report.figures`): every derived marker has an
``evidence`` list of ``"<file>:<row>"`` source rows; :func:`evidence_kinds` looks those rows up and
calls the marker not measured when any of them was (``source`` in
:data:`cartlab.model.NOT_MEASURED_SOURCES`, or a ``paper`` row naming reconstructed columns, as the
banner counts), ``paper`` when all are stated in a publication, else ``observed``. The cohort CSVs
name the rows' own kind (``precise``: reconstructed / synthetic / simulated); the renderers draw any
not-measured kind open or pale.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from cartlab.errors import CartlabError, EngineError
from cartlab.model import NOT_MEASURED_SOURCES

__all__ = [
    "NOT_MEASURED_CAPTION",
    "CohortView",
    "ViewUnavailable",
    "data_files",
    "evidence_kinds",
    "kind_expr",
    "provenance_note",
    "require",
    "selected_ids",
    "subset",
]

#: caption of open / hatched items in every cohort figure
NOT_MEASURED_CAPTION = "open markers / dotted lines = values not measured (reconstructed, synthetic or simulated)"

#: display order of best-response categories (ELN 2022 / ALL CAR-T), then the "no value" groups
RESPONSE_ORDER = ("CR", "CRh", "CRi", "MLFS", "PR", "SD", "NR", "PD", "NE", "no criteria", "not assessed")


class ViewUnavailable(CartlabError):
    """A cohort view cannot be drawn; ``reason`` names the missing table or input and why."""

    def __init__(self, reason: str, tables: Iterable[str] = ()):
        super().__init__(reason)
        self.reason = reason
        self.tables = tuple(tables)


@dataclass(frozen=True)
class CohortView:
    """One cohort view as rendered: a figure (matplotlib ``Figure`` or plotly ``go.Figure``) and/or a
    table, or ``unavailable`` = why it could not be drawn. ``data``: the frames the view draws,
    by part name ("" = the main one), written by the report as ``tables/cohort_<key>[_<part>].csv``
    (:func:`data_files`)."""

    key: str
    title: str
    caption: str
    figure: Any = None
    table: pl.DataFrame | None = None
    unavailable: str | None = None
    data: dict = field(default_factory=dict)


def data_files(view: CohortView) -> dict[str, pl.DataFrame]:
    """``{file name: frame}`` of a view's data (``cohort_<key>.csv``, ``cohort_<key>_<part>.csv``)."""
    return {f"cohort_{view.key}{'_' + part if part else ''}.csv": frame for part, frame in view.data.items()
            if frame is not None and frame.width}


def require(analysis, name: str, view: str) -> pl.DataFrame:
    """The table ``name`` of ``analysis``, or :class:`ViewUnavailable` saying why it is missing."""
    if name not in analysis.table_names():
        if name.startswith(("protocol", "dose_plan", "eligibility")) and analysis.protocol is None:
            raise ViewUnavailable(f"{view}: no protocol was given (table '{name}' needs "
                                  "`--protocol ID`)", (name,))
        raise ViewUnavailable(f"{view}: the analysis has no table '{name}'", (name,))
    try:
        return analysis.table(name)
    except EngineError as exc:
        skipped = [s for s in analysis.skipped if name in s.tables and s.subjects is None]
        why = f"{skipped[0].engine} was skipped: {skipped[0].reason}" if skipped else str(exc)
        raise ViewUnavailable(f"{view}: table '{name}' is not available ({why})", (name,)) from exc


def optional(analysis, name: str) -> pl.DataFrame | None:
    """The table ``name`` when it could be derived, else None (the caller notes its absence)."""
    try:
        return analysis.table(name) if name in analysis.table_names() else None
    except EngineError:
        return None


def missing_note(analysis, name: str) -> str:
    """``"<name> not available (<why>)"`` for a view's notes."""
    try:
        require(analysis, name, name)
    except ViewUnavailable as exc:
        return exc.reason
    return ""


def selected_ids(analysis, subject_ids: Iterable[str] | None, view: str) -> list[str] | None:
    """The selected subjects in study order (None = every subject, no filtering needed).

    Raises :class:`ViewUnavailable` for an empty selection or a study without subjects."""
    every = analysis.study.subjects["subject_id"]
    if subject_ids is None:
        if every.len() == 0:
            raise ViewUnavailable(f"{view}: the study has no subjects")
        return None
    wanted = set(subject_ids)
    ids = every.filter(every.is_in(list(wanted))).to_list()
    if not ids:
        raise ViewUnavailable(f"{view}: no subjects in the selection")
    return ids


def subset(frame: pl.DataFrame, ids: list[str] | None) -> pl.DataFrame:
    """Rows of ``frame`` whose subject (``subject_id`` or ``USUBJID``) is in ``ids`` (None = all)."""
    if ids is None:
        return frame
    for col in ("subject_id", "USUBJID"):
        if col in frame.columns:
            return frame.filter(pl.col(col).is_in(ids))
    return frame


def subjects_of(analysis, ids: list[str] | None) -> pl.DataFrame:
    return subset(analysis.study.subjects, ids)


def safety_subjects(analysis, ids: list[str] | None) -> tuple[pl.DataFrame, list[str]]:
    """(``subject_id`` of the subjects the toxicity views count, a note naming those left out).

    The safety population of a CAR-T trial is the infused set (ICH E9 "safety set": subjects who
    received the treatment; e.g. ZUMA-1 counts "all patients treated with axi-cel"): a subject without
    a CAR-T dose (when other subjects have one) has no grade attributed to a product it never received
    (review 47 #1). The same reading and option as the survival and response denominators:
    ``endpoints.population`` ("infused"; "all" keeps every subject) with ``infusion_evidence`` (a
    quantifiable CAR-T after day 0 is an infusion not recorded); doses unknown = everyone infused."""
    from cartlab.response.infusion_evidence import infused_subjects

    everyone = subjects_of(analysis, None if ids is None else list(ids)).select("subject_id")
    try:
        opts = analysis.options.endpoint_options()
        population, evidence = opts.population, opts.infusion_evidence
    except AttributeError:
        population, evidence = "infused", "dose_or_kinetics"
    if population == "all" or not hasattr(analysis.study, "doses"):  # not a Study (no doses to read): everyone
        return everyone, []
    given, _why, _by_car = infused_subjects(analysis.study, evidence)
    if given is None:
        return everyone, []
    left = everyone.filter(~pl.col("subject_id").is_in(list(given)))["subject_id"].to_list()
    if not left:
        return everyone, []
    shown = ", ".join(left[:10]) + (f" and {len(left) - 10} more" if len(left) > 10 else "")
    return everyone.filter(pl.col("subject_id").is_in(list(given))), [
        f"Not infused (no CAR-T dose in doses.csv; option endpoints.population={population}): {shown} not counted "
        "in the toxicity views (the safety population is the infused set)"]


def kind_expr(col: str = "source", precise: bool = False) -> pl.Expr:
    """``paper`` / ``reconstructed`` (not measured) / ``observed`` from a ``source`` column
    (vectorised :func:`cartlab.report.figures.provenance_kind`); ``precise``: a not-measured row keeps
    its own source (reconstructed / synthetic / simulated; review 39 C2)."""
    s = pl.col(col).cast(pl.String).fill_null("").str.strip_chars().str.to_lowercase()
    return (pl.when(s == "paper").then(pl.lit("paper"))
            .when(s.is_in(list(NOT_MEASURED_SOURCES))).then(s if precise else pl.lit("reconstructed"))
            .otherwise(pl.lit("observed")))


_RANK = {"paper": 0, "observed": 1, "reconstructed": 2, "simulated": 3, "synthetic": 4}


def evidence_kinds(study, frame: pl.DataFrame, key: str = "subject_id", evidence: str = "evidence",
                   precise: bool = False, approximate_days: bool = False) -> pl.DataFrame:
    """``key``, ``kind`` for each row of ``frame``: the least-measured kind of its evidence rows
    (reconstructed > observed > paper), each row's kind as the subject pages and the banner count it
    (:func:`cartlab.report.provenance_marks.source_kinds`: a ``paper`` row naming reconstructed
    columns is reconstructed; review 41 F1). ``approximate_days``: an ``events`` row whose day is
    approximate (:func:`cartlab.report.provenance_marks.approximate_day`) counts as reconstructed too
    (the swimmer's markers are drawn at that day). Rows without a known evidence row take the kind of
    their subject's ``subjects`` row (``frame`` has ``subject_id``), else ``observed``. ``precise``: a
    not-measured kind is the rows' own source (synthetic > simulated > reconstructed), not
    "reconstructed" for all three (review 39 C2)."""
    from cartlab.report.provenance_marks import approximate_day, source_kinds

    refs = (frame.select(key, pl.col(evidence).cast(pl.List(pl.String))).explode(evidence).drop_nulls(evidence)
            .with_columns(pl.col(evidence).str.extract(r"^(.*):(\d+)$", 1).alias("_f"),
                          pl.col(evidence).str.extract(r"^(.*):(\d+)$", 2).cast(pl.Int64, strict=False).alias("_r")))
    files = refs["_f"].drop_nulls().unique().to_list()
    rows = refs["_r"].drop_nulls().unique().to_list()

    def kinds_of(name: str, t: pl.DataFrame) -> dict[str, str]:
        got = source_kinds([t])
        if approximate_days and name == "events":
            for r in t.iter_rows(named=True):  # the referenced event rows: a few per subject
                ref = f"{r['src_file']}:{r['src_row']}"
                if got.get(ref) in ("paper", "observed") and approximate_day(r):
                    got[ref] = "reconstructed"
        return got

    found: dict[str, str] = {}
    for name in ("subjects", "doses", "observations", "interventions", "events"):
        t = getattr(study, name)
        if {"src_file", "src_row", "source"} <= set(t.columns) and files:
            t = t.filter(pl.col("src_file").is_in(files) & pl.col("src_row").is_in(rows))
            for ref, k in kinds_of(name, t).items():
                found.setdefault(ref, k)
    lookup = pl.DataFrame({"_ref": list(found), "k": list(found.values())},
                          schema={"_ref": pl.String, "k": pl.String})
    loose = pl.when(pl.col("k").is_in(list(NOT_MEASURED_SOURCES))).then(pl.lit("reconstructed")).otherwise(pl.col("k"))
    lookup = lookup.with_columns((pl.col("k") if precise else loose).alias("k"))
    rank = pl.col("k").replace_strict(_RANK, return_dtype=pl.Int64, default=1)
    by_row = (refs.with_columns(pl.col(evidence).alias("_ref")).join(lookup, on="_ref", how="inner")
              .group_by(key).agg(rank.max().alias("_rank")))
    out = frame.select(key, *(["subject_id"] if "subject_id" in frame.columns and key != "subject_id" else []))
    out = out.join(by_row, on=key, how="left")
    if "subject_id" in frame.columns:
        subj = study.subjects.select("subject_id", kind_expr(precise=True).alias("k"),
                                     *(["src_file", "src_row"] if {"src_file", "src_row"} <= set(study.subjects.columns)
                                       else []))
        if "src_file" in subj.columns:  # a subjects row naming reconstructed columns (the seed's follow-up end)
            sk = source_kinds([study.subjects])
            subj = subj.with_columns(pl.Series("k", [sk.get(f"{f}:{r}", k) for f, r, k in zip(
                subj["src_file"].to_list(), subj["src_row"].to_list(), subj["k"].to_list())], dtype=pl.String))
        subj = subj.select("subject_id", (pl.col("k") if precise else loose).replace_strict(
            _RANK, return_dtype=pl.Int64, default=1).alias("_s")).unique("subject_id")
        out = out.join(subj, on="subject_id", how="left").with_columns(pl.coalesce("_rank", "_s").alias("_rank"))
    inv = {v: k for k, v in _RANK.items()}
    return out.select(key, pl.col("_rank").fill_null(1).replace_strict(inv, return_dtype=pl.String).alias("kind"))


def provenance_note(analysis, ids: list[str] | None) -> str:
    """One sentence saying how much of the selected subjects' data was not measured ("" if none), counted
    as the subject pages count (:func:`cartlab.report.provenance_marks.source_counts`: a publication row
    naming reconstructed columns is reconstructed)."""
    from cartlab.report.provenance_marks import source_counts

    study = analysis.study
    c = source_counts({name: getattr(study, name) for name in ("subjects", "observations", "events", "doses",
                                                                "interventions")}, ids)
    kinds = [k for k in NOT_MEASURED_SOURCES if c[k]]
    if not kinds:
        return ""
    labels = ", ".join(sorted(kinds))
    n, total, moved = c["not_measured"], c["total"], c["paper_with_reconstructed_columns"]
    if n == total:
        return f"Every value shown is {labels} (not measured)."
    part = (f", counting {moved:,} publication row{'' if moved == 1 else 's'} with reconstructed columns "
            "(reconstructed_columns)" if moved else "")
    return f"Data: {n:,} of {total:,} rows are {labels}, not measured (points drawn open or dotted){part}."


def pct_half_up(n, d):
    """100 n / d to one decimal, a half rounded away from zero as clinical tables do (SAS ``ROUND``;
    6.25 -> 6.3, where a float format gives 6.2), in exact integer arithmetic; a polars expression when
    ``n`` / ``d`` are expressions (None where d is 0 or null). Review 47 #5."""
    if isinstance(n, pl.Expr) or isinstance(d, pl.Expr):
        n, d = pl.lit(n) if not isinstance(n, pl.Expr) else n, pl.lit(d) if not isinstance(d, pl.Expr) else d
        n, d = n.cast(pl.Int64), d.cast(pl.Int64)
        return pl.when(d > 0).then((((2000 * n + d) // (2 * d)).cast(pl.Float64) / 10).round(1))
    return (2000 * n + d) // (2 * d) / 10 if d else None


def fmt_n_pct(n: int, d: int) -> str:
    """``"3 (7.5%)"``; ``"0 (—)"`` when the denominator is 0 (percent: :func:`pct_half_up`)."""
    return f"{n} ({pct_half_up(n, d):.1f}%)" if d else f"{n} (—)"


def response_label() -> pl.Expr:
    """Best response with the "no value" cases named: ``no criteria`` (disease without response
    criteria) and ``not assessed`` (criteria but no assessment) — never read as non-response."""
    return (pl.when(pl.col("best_response").is_not_null()).then(pl.col("best_response"))
            .when(pl.col("criteria").is_null()).then(pl.lit("no criteria"))
            .otherwise(pl.lit("not assessed")))


def nice_ticks(tmax: float, at: Iterable[float] | None = None) -> list[float]:
    """Days for numbers at risk: ``at`` if given, else multiples of a step (7, 14, 28, 30, 60, 90,
    180, 365) giving at most 8 ticks from 0 to ``tmax``."""
    if at is not None:
        return sorted({float(t) for t in at})
    for step in (7, 14, 28, 30, 60, 90, 180, 365, 730):
        if tmax / step <= 7:
            break
    n = int(max(tmax, 0) // step)
    return [float(step * i) for i in range(n + 1)]


def worst_grade_counts(long: pl.DataFrame, max_grade: int = 5) -> pl.DataFrame:
    """Subjects by worst grade per ``term`` and ``scale`` (ADaM-style AE summary counts).

    ``long``: ``subject_id``, ``term``, ``scale``, ``grade`` (null = not evaluable); several rows of
    a subject and term give its worst (maximum) grade, and it is evaluable when any row has a grade.
    Columns: ``term``, ``scale``, ``n_subjects``, ``n_evaluable`` (the denominator N),
    ``n_not_evaluable`` (counted apart, never as grade 0), ``n_any`` (grade >= 1), ``n_ge3``, and
    ``grade_0`` .. ``grade_<max_grade>``; terms in first-seen order.
    """
    bad = long.filter((pl.col("grade") < 0) | (pl.col("grade") > max_grade))
    if bad.height:
        raise ValueError(f"grades outside 0..{max_grade}: {bad['grade'].unique().to_list()}")
    g = pl.col("grade")
    per = long.group_by("term", "scale", "subject_id", maintain_order=True).agg(g.max())
    out = per.group_by("term", "scale", maintain_order=True).agg(
        pl.len().alias("n_subjects"), g.is_not_null().sum().alias("n_evaluable"),
        g.is_null().sum().alias("n_not_evaluable"), (g >= 1).sum().alias("n_any"), (g >= 3).sum().alias("n_ge3"),
        *[(g == k).sum().alias(f"grade_{k}") for k in range(max_grade + 1)])
    return out.with_columns(pl.exclude("term", "scale").cast(pl.Int64))


def curve_points(frame, value: str, start: float):
    """``time``, ``value``, ``ci_low``, ``ci_high`` of one step curve as numpy arrays, starting at
    (0, ``start``) so that an event at day 0 shows as a drop from ``start``. An undefined interval
    (e.g. where the Kaplan-Meier estimate is 0) is NaN: a gap in the band, never a made-up bound."""
    import numpy as np

    s = frame.sort("time")
    t = np.concatenate([[0.0], s["time"].to_numpy()])
    pick = lambda c: np.concatenate([[start], s[c].cast(pl.Float64).fill_null(np.nan).to_numpy()])
    return t, pick(value), pick("ci_low"), pick("ci_high")


def band_segments(t, lo, hi) -> list[tuple[list, list, list]]:
    """The confidence band of a post-step curve (:func:`curve_points`) as explicit step outlines:
    one ``(x, low, high)`` per run of defined intervals, each point doubled so that the interval at
    time ``t[i]`` holds on ``[t[i], t[i+1])`` (the last one at its own time only). An undefined
    interval (NaN, e.g. where the Kaplan-Meier estimate reaches 0) ends the run at its time: a gap,
    never a bound drawn early nor a straight line to the next defined point. Drawn as polygons
    (x forward with ``high``, then backward with ``low``) with straight edges, the outline is the
    band of the CSV, step for step."""
    import numpy as np

    t, lo, hi = (np.asarray(a, dtype=float) for a in (t, lo, hi))
    ok = ~(np.isnan(lo) | np.isnan(hi))
    out, i, n = [], 0, len(t)
    while i < n:
        if not ok[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and ok[j + 1]:
            j += 1
        x, yl, yh = [], [], []
        for k in range(i, j + 1):
            end = t[k + 1] if k + 1 < n else t[k]
            x += [float(t[k]), float(end)]
            yl += [float(lo[k])] * 2
            yh += [float(hi[k])] * 2
        out.append((x, yl, yh))
        i = j + 1
    return out


def under_death(markers: pl.DataFrame) -> pl.DataFrame:
    """The swimmer markers (relapse, response, allo-HSCT) on the calendar day of their subject's
    death marker: the renderers draw these again on top, smaller and edged in white, so the death
    square does not hide them (e.g. a relapse found at death); the legend is unchanged."""
    death = markers.filter(pl.col("marker") == "death").select("subject_id", pl.col("day").floor().alias("_d")).unique()
    if death.height == 0:
        return markers.clear()
    return (markers.filter(pl.col("marker") != "death").with_columns(pl.col("day").floor().alias("_d"))
            .join(death, on=["subject_id", "_d"], how="semi").drop("_d"))


#: the label of an exposure of 0 drawn at the floor of a log axis
ZERO_EXPOSURE_TEXT = "0 (no expansion), drawn at the axis floor"


def log_floor(values) -> float:
    """Where a 0 is drawn on a log axis: a decade below the smallest positive value (1 if none)."""
    import math

    pos = [float(v) for v in values if v is not None and float(v) > 0]
    return 10.0 ** (math.floor(math.log10(min(pos))) - 1) if pos else 1.0


def auc_window(analysis) -> tuple[float, float]:
    """The kinetics AUC window of ``analysis`` (``kinetics.auc_window``; the spec's days 0-28): the
    column keeps its name ``car_auc_0_28``, the labels say the window used."""
    try:
        from cartlab.kinetics.car import CarKineticsOptions

        # the kinetics options' field, as Analysis.options.to_dict() records it, without resolving every
        # engine's options: this is called for every subject page (issue 17, report speed)
        w = (analysis.options.kinetics or CarKineticsOptions()).auc_window
        return (float(w[0]), float(w[1]))
    except (AttributeError, TypeError, IndexError, ValueError):
        return (0.0, 28.0)


def auc_name(window=(0.0, 28.0)) -> str:
    """"AUC(0-28)", or the window used ("AUC(0-21)")."""
    return f"AUC({window[0]:g}-{window[1]:g})"
