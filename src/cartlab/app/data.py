"""What the dashboard reads: the studies it can show and, per study, ONE :class:`~cartlab.analyze.Analysis`.

:class:`Catalog` lists the studies (the one folder or stored study given to ``cartlab serve``, or
every study of a DuckDB store, opened read-only and closed after each read) and keeps one
:class:`StudyView` per study: the study, its Analysis (computed once, every table, with the options
recorded in ``options``), the subject summary joined with the cohort filters (disease, target, dose
level), and the study's rows split by subject so that a patient page reads its rows without
filtering the whole study. Pages read these tables; no engine runs per request.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from cartlab.analyze import describe_options, option_overrides  # noqa: F401  (re-exported)
from cartlab.model import Study
from cartlab.report.course_parts import fmt_dose

#: the parameters drawn on the patient page (course panels)
COURSE_PARAMS = ("CARCOPY", "TEMP", "CRP", "IL6", "NEUT", "PLAT", "HGB")

Progress = Callable[[str, float], None]


def _noop(_msg: str, _frac: float) -> None:
    return None


def round_sig(value: float, digits: int = 2) -> float:
    """``value`` rounded to ``digits`` significant digits, half to even on its shortest decimal form
    (``1.25e6`` -> ``1.2e6``, ``1.35e6`` -> ``1.4e6``, ``1.05e8`` -> ``1.0e8``): the same rule for every
    value, not the accident of its binary representation."""
    from decimal import ROUND_HALF_EVEN, Decimal

    d = Decimal(repr(float(value)))
    if d == 0:
        return 0.0
    exp = d.adjusted() - (digits - 1)
    return float(d.quantize(Decimal(1).scaleb(exp), rounding=ROUND_HALF_EVEN))


def dose_level_label(cells_per_kg: float | None) -> str | None:
    """A CAR-T dose level as a category: total viable CAR-T cells/kg to 2 significant digits (rounded
    half to even, :func:`round_sig`), ``2×10⁶/kg`` (``None`` when the dose is unknown)."""
    if cells_per_kg is None or not math.isfinite(cells_per_kg) or cells_per_kg <= 0:
        return None
    # the report's dose format, on the dose rounded to 2 significant digits (a category, not a value)
    return fmt_dose(round_sig(cells_per_kg, 2), "cells/kg")


_SUP = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")


def dose_label_value(label: str | None) -> float | None:
    """The number a dose-level label stands for (``"2.5×10⁵/kg"`` -> 250000.0; None if it is no dose)."""
    import re

    m = re.fullmatch(r"\s*([0-9.]+)×10([⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+)\s*/kg\s*", label or "")
    if not m:
        return None
    try:
        return float(m.group(1)) * 10 ** int(m.group(2).translate(_SUP))
    except ValueError:
        return None


def dose_levels(study: Study) -> pl.DataFrame:
    """Per subject the total CAR-T dose in cells/kg (``cells`` divided by ``subjects.weight_kg``) and
    its label; a subject without a CAR-T dose in cells/kg or cells (or without a weight for an
    absolute dose) has no dose level (null, not 0) and ``dose_level_reason`` names the missing input
    (missing is not negative: "absolute dose 7×10⁷ cells; subjects.weight_kg missing", "no CAR-T
    dose row", "unit 'mg' not convertible to cells/kg")."""
    from cartlab.kinetics.agents import car_t_agent_expr

    d = study.doses.filter(car_t_agent_expr(pl.col("agent")))
    w = study.subjects.select("subject_id", "weight_kg")
    unit = pl.col("unit").cast(pl.String)
    rows = (d.join(w, on="subject_id", how="left")
            .with_columns(pl.when(unit == "cells/kg").then(pl.col("dose"))
                          .when(unit == "cells").then(pl.col("dose") / pl.col("weight_kg"))
                          .otherwise(None).alias("_per_kg")))
    why: dict[str, list[str]] = {}
    absolute: dict[str, list[str]] = {}
    for sid, pk, dv, u in rows.filter(pl.col("_per_kg").is_null()).select(  # the few rows without cells/kg
            "subject_id", "_per_kg", "dose", unit).iter_rows():
        if dv is None:
            why.setdefault(sid, []).append(f"a CAR-T dose row without a value ({u or 'no unit'})")
        elif u == "cells":
            absolute.setdefault(sid, []).append(fmt_dose(float(dv), "cells"))
        else:
            why.setdefault(sid, []).append(f"unit {u!r} not convertible to cells/kg")
    for sid, doses in absolute.items():
        why.setdefault(sid, []).insert(0, f"absolute dose {' + '.join(doses)} cells; subjects.weight_kg missing")
    per_kg = (rows.group_by("subject_id", maintain_order=True)
              .agg(pl.when(pl.col("_per_kg").is_null().any()).then(None)
                   .otherwise(pl.col("_per_kg").sum()).alias("car_t_cells_per_kg")))
    out = study.subjects.select("subject_id").join(per_kg, on="subject_id", how="left", maintain_order="left")
    labels = [dose_level_label(v) for v in out["car_t_cells_per_kg"].to_list()]
    reasons = [None if lab is not None else
               ("; ".join(dict.fromkeys(why[sid])) if sid in why else
                "no CAR-T dose row" if sid not in set(per_kg["subject_id"].to_list()) else "CAR-T dose not positive")
               for sid, lab in zip(out["subject_id"].to_list(), labels)]
    return out.with_columns(pl.Series("dose_level", labels, dtype=pl.String),
                            pl.Series("dose_level_reason", reasons, dtype=pl.String))


def subject_counts(subject_study: Study) -> dict:
    """Row counts by source of one subject (:func:`cartlab.report.html.provenance_counts`: a ``paper``
    row naming ``reconstructed_columns`` counts as reconstructed, as the report's marks and banner do;
    ``paper_with_reconstructed_columns`` says how many)."""
    from cartlab.report.html import provenance_counts

    return provenance_counts(subject_study)


@dataclass
class Patient:
    """One subject's rows (observations of the course parameters, doses, interventions, events) and
    its rows of the analysis tables the patient page shows."""

    subject_id: str
    observations: pl.DataFrame
    doses: pl.DataFrame
    interventions: pl.DataFrame
    summary: dict
    crs_daily: pl.DataFrame
    icans_daily: pl.DataFrame
    car_kinetics: pl.DataFrame
    adpp: pl.DataFrame
    #: the CRS fever threshold of the analysis (``crs.fever_threshold_c``; the course's fever line)
    fever_threshold_c: float | None = None
    #: row counts by ``source`` over the subject's five tables (:func:`subject_counts`)
    counts: dict = field(default_factory=dict)
    #: "file:row" -> source kind of the subject's rows (:func:`cartlab.report.provenance_marks.source_kinds`)
    kinds: dict = field(default_factory=dict)
    #: the subjects row's ``reconstructed_columns`` (lower case; e.g. {"weight_kg", "last_followup_day"})
    reconstructed_columns: set = field(default_factory=set)

    @property
    def has_car_t_dose(self) -> bool:
        """Whether the subject has a CAR-T dose (day 0 is then the first CAR-T infusion)."""
        from cartlab.kinetics.agents import car_t_agent_expr

        d = self.doses
        return bool(d.height) and "agent" in d.columns and d.filter(car_t_agent_expr(pl.col("agent"))).height > 0


@dataclass
class StudyView:
    """One study with its Analysis, computed once (``seconds``: how long it took)."""

    study: Study
    analysis: object
    cohort: pl.DataFrame
    options: dict
    seconds: float
    #: the options that differ from the defaults, ``{"crs.fever_threshold_c": (39.5, 38.0)}`` (value, default)
    overrides: dict = field(default_factory=dict)
    #: the protocol checked against (``"id version"``) or None
    protocol: str | None = None
    #: options not set that follow another ("endpoints.efs_landmark_day = 28 (follows best_response.landmark_day)")
    follows: list[str] = field(default_factory=list)
    _by_subject: dict[str, dict[str, pl.DataFrame]] = field(default_factory=dict, repr=False)
    _patients: dict[str, Patient] = field(default_factory=dict, repr=False)

    @property
    def study_id(self) -> str:
        return self.study.study_id

    @property
    def subject_ids(self) -> list[str]:
        return self.cohort["subject_id"].to_list()

    def table(self, name: str) -> pl.DataFrame | None:
        """An analysis table (None when its engine was skipped or does not apply)."""
        a = self.analysis
        return a.table(name) if a.has(name) else None

    def rows(self, name: str, subject_id: str) -> pl.DataFrame:
        """The subject's rows of an analysis table (split once per table, then a dict lookup)."""
        parts = self._by_subject.get(name)
        if parts is None:
            frame = self.table(name)
            if frame is None:
                parts = {}
            else:
                col = "subject_id" if "subject_id" in frame.columns else "USUBJID"
                parts = {k[0]: v for k, v in frame.partition_by(col, as_dict=True, maintain_order=True).items()}
                parts["__empty__"] = frame.clear()
            self._by_subject[name] = parts
        if subject_id in parts:
            return parts[subject_id]
        return parts.get("__empty__", pl.DataFrame())

    def patient(self, subject_id: str) -> Patient:
        """The patient page's data (kept once built)."""
        p = self._patients.get(subject_id)
        if p is not None:
            return p
        if subject_id not in set(self.subject_ids):
            raise KeyError(subject_id)
        from cartlab.report.provenance_marks import reconstructed_columns, source_kinds

        sub = self.study.subject(subject_id)
        subj_rows = sub.subjects.to_dicts()
        obs = self.rows("__obs__", subject_id)
        summ = self.cohort.filter(pl.col("subject_id") == subject_id).row(0, named=True)
        fever = (self.options.get("crs") or {}).get("fever_threshold_c")
        p = Patient(subject_id, obs, self.rows("__doses__", subject_id), self.rows("__interventions__", subject_id),
                    summ, self.rows("crs_daily", subject_id), self.rows("icans_daily", subject_id),
                    self.rows("car_kinetics", subject_id), self.rows("adpp", subject_id),
                    float(fever) if isinstance(fever, (int, float)) else None,
                    subject_counts(sub), source_kinds(sub.tables().values()),
                    reconstructed_columns(subj_rows[0]) if subj_rows else set())
        self._patients[subject_id] = p
        return p

    def split_inputs(self) -> None:
        """Split the study's own rows by subject (observations of the course parameters, doses,
        interventions) once."""
        s = self.study
        for key, frame in (("__obs__", s.observations.filter(pl.col("param").is_in(COURSE_PARAMS))),
                           ("__doses__", s.doses), ("__interventions__", s.interventions)):
            parts = {k[0]: v for k, v in frame.partition_by("subject_id", as_dict=True, maintain_order=True).items()}
            parts["__empty__"] = frame.clear()
            self._by_subject[key] = parts


def build_view(study: Study, progress: Progress = _noop, protocol=None, options=None) -> StudyView:
    """Analyse ``study`` once (every table, with ``options``: an AnalysisOptions, None = the defaults;
    ``protocol``: also check it) and assemble the cohort frame of the dashboard."""
    from cartlab.analyze import Analysis
    from cartlab.report.subject_blocks import with_late_grade_max

    t0 = time.perf_counter()
    steps = [0]

    def step(msg: str) -> None:
        steps[0] += 1
        progress(f"analysing: {msg}", min(0.9, steps[0] / 40))

    analysis = Analysis(study, options, protocol=protocol, progress=step)
    analysis.tables()
    # with the late ICAHT upper bound (table icaht), as the report's study table shows the late grade
    summary = with_late_grade_max(analysis.subject_summary(), analysis)
    progress("assembling the cohort", 0.95)
    cohort = (study.subjects.select("subject_id", "disease", "target")
              .join(dose_levels(study), on="subject_id", how="left", maintain_order="left")
              .join(summary, on="subject_id", how="left", maintain_order="left"))
    cohort = cohort.join(_response_reasons(analysis), on="subject_id", how="left", maintain_order="left")
    cohort = cohort.join(_icaht_reasons(analysis), on="subject_id", how="left", maintain_order="left")
    opts = analysis.options.to_dict()
    proto = f"{protocol.id} {protocol.version}".strip() if protocol is not None else None
    from cartlab.report.html import shown_overrides

    # an option following another (endpoints.efs_landmark_day <- best_response.landmark_day) is not listed
    # as set by the user; its note is (review 41 diff1 F8)
    overrides, follows = shown_overrides(option_overrides(opts), analysis.options)
    view = StudyView(study, analysis, cohort, opts, time.perf_counter() - t0, overrides, proto, follows=follows)
    view.split_inputs()
    return view


def _response_reasons(analysis) -> pl.DataFrame:
    """Per subject without a best response (none, or ``NE``) the best_response table's rule and reason
    (``best_response_rule``, ``best_response_reason``; e.g. "no response criteria for disease 'LBCL'
    yet ..."), so the page can say why."""
    empty = pl.DataFrame(schema={"subject_id": pl.String, "best_response_rule": pl.String,
                                 "best_response_reason": pl.String})
    if not analysis.has("best_response"):
        return empty
    t = analysis.table("best_response")
    if not {"subject_id", "best_response"} <= set(t.columns):
        return empty
    rule = pl.col("rule").cast(pl.String) if "rule" in t.columns else pl.lit(None, pl.String)
    reason = pl.col("reason").cast(pl.String) if "reason" in t.columns else pl.lit(None, pl.String)
    unset = pl.col("best_response").is_null() | (pl.col("best_response").cast(pl.String) == "NE")
    return (t.unique("subject_id", keep="first", maintain_order=True)
            .select("subject_id", pl.when(unset).then(rule).alias("best_response_rule"),
                    pl.when(unset).then(reason).alias("best_response_reason")))


def _icaht_reasons(analysis) -> pl.DataFrame:
    """Per subject without an early / late ICAHT grade the icaht table's reason (``icaht_early_reason``,
    ``icaht_late_reason``; e.g. "not evaluable: the late window is empty ..."), so the page can say why."""
    out = pl.DataFrame(schema={"subject_id": pl.String, "icaht_early_reason": pl.String,
                               "icaht_late_reason": pl.String})
    if not analysis.has("icaht"):
        return out
    t = analysis.table("icaht")
    cols = []
    for when, grade, reason in (("early", "icaht_early_grade", "early_reason"),
                                ("late", "icaht_late_grade", "late_reason")):
        has = grade in t.columns and reason in t.columns
        cols.append(pl.when(pl.col(grade).is_null()).then(pl.col(reason).cast(pl.String)).alias(f"icaht_{when}_reason")
                    if has else pl.lit(None, pl.String).alias(f"icaht_{when}_reason"))
    if "subject_id" not in t.columns:
        return out
    return t.unique("subject_id", keep="first", maintain_order=True).select("subject_id", *cols)


# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyEntry:
    study_id: str
    n_subjects: int | None
    origin: str  # "folder PATH" | "store PATH"


class Catalog:
    """The studies a dashboard shows and their analyses (computed once each, then kept).

    ``Catalog.from_study(study, origin)``: one study (a folder given to ``cartlab serve``);
    ``Catalog.from_store(path)``: every study of a DuckDB store, read-only.
    """

    def __init__(self, entries: list[StudyEntry], loader: Callable[[str], Study], options=None, protocol=None):
        self.entries = entries
        self._loader = loader
        #: the AnalysisOptions every study is analysed with (None: the defaults) and the protocol, if any
        self.options, self.protocol = options, protocol
        self._views: dict[str, StudyView] = {}
        self._locks: dict[str, threading.Lock] = {e.study_id: threading.Lock() for e in entries}

    @classmethod
    def from_study(cls, study: Study, origin: str, options=None, protocol=None) -> Catalog:
        return cls([StudyEntry(study.study_id, study.subjects.height, origin)], lambda _sid: study, options,
                   protocol)

    @classmethod
    def from_store(cls, path: str | Path, options=None, protocol=None) -> Catalog:
        from cartlab.store import Store

        with Store(path, read_only=True) as s:
            studies = s.studies()

        def load(study_id: str) -> Study:
            with Store(path, read_only=True) as st:
                return st.load_study(study_id)

        return cls([StudyEntry(r["study_id"], r["n_subjects"], f"store {path}") for r in studies.iter_rows(named=True)],
                   load, options, protocol)

    def ids(self) -> list[str]:
        return [e.study_id for e in self.entries]

    def listing(self) -> pl.DataFrame:
        rows = [{"study": e.study_id, "subjects": e.n_subjects, "from": e.origin,
                 "analysed": "yes" if e.study_id in self._views else "not yet"} for e in self.entries]
        return pl.DataFrame(rows, schema={"study": pl.String, "subjects": pl.Int64, "from": pl.String,
                                          "analysed": pl.String})

    def cached(self, study_id: str) -> StudyView | None:
        return self._views.get(study_id)

    def view(self, study_id: str, progress: Progress = _noop) -> StudyView:
        """The study's view: analysed on first use (once, even if several sessions ask at once)."""
        if study_id not in self._locks:
            raise KeyError(study_id)
        v = self._views.get(study_id)
        if v is not None:
            return v
        with self._locks[study_id]:
            v = self._views.get(study_id)
            if v is None:
                progress("loading the study", 0.02)
                v = build_view(self._loader(study_id), progress, self.protocol, self.options)
                self._views[study_id] = v
        return v
