"""A large study's analysis in subject batches, in parallel worker processes.

:class:`cartlab.analyze.Analysis` holds a whole study and every table in memory: about 13 GiB for
10,000 subjects x 120 days. Here the per-subject steps (``Step.per_subject``, every engine but the
cohort statistics) run on batches of subjects, each batch in a worker process that loads only its
own rows (:class:`ParquetSource`, or a subset of a study in memory). Each batch's tables are spilled
to Parquet; only the tables that the cohort steps and ``subject_summary.csv`` read are sent back.
The cohort steps (response rates, Kaplan-Meier, cumulative incidence, exposure-response, the CRS
scales' concordance, the protocol's ORR) then run once, and the CSV files are streamed from the
spilled parts.

The files written are the same as :func:`cartlab.analyze.write_analysis` writes for the whole study
in one piece (tested byte for byte), apart from ``analysis.json``: the engine seconds are summed over
the batches (worker time, not wall time; its ``run`` says so, with the batch size and workers). A
warning that names subjects (e.g. those censored at their last recorded row) is merged over the
batches into one, its counts summed (:mod:`cartlab.batch_warnings`), as a whole-study run gives it.
Facts of the whole study travel with each batch: whether its CAR-T doses are recorded
(``Study.doses_recorded``, review 38 A1) and which files were not given (``Study.absent``). When
subjects.csv is not in subject-id order, a table its engines sort by subject is written in that order
over the whole study, not batch by batch (review 38 B7).

    >>> from cartlab.datasets import seed_case
    >>> import tempfile
    >>> path, analysis, tables = write_analysis_batched(InMemorySource(seed_case()), tempfile.mkdtemp(), batch_size=1)
    >>> path.name, analysis.subject_summary()["crs_grade_astct"].to_list()
    ('subject_summary.csv', [3])
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import polars as pl

from cartlab._process import peak_rss
from cartlab.analyze import Analysis, AnalysisOptions, Skipped, generic_reason, write_summary
from cartlab.batch_warnings import merge_warnings
from cartlab.errors import CartlabError
from cartlab.io.atomic import atomic_file
from cartlab.model import TABLES, Study, conform, empty_frame

__all__ = ["AUTO_BATCH_ABOVE", "DEFAULT_BATCH_SIZE", "BatchedAnalysis", "InMemorySource", "ParquetSource",
           "WorkerKilledError", "analyze_batched", "write_analysis_batched"]

#: subjects per batch when none is given (about 1.1 GiB per worker at 120 days a subject)
DEFAULT_BATCH_SIZE = 500
#: ``cartlab analyze`` runs in batches (of DEFAULT_BATCH_SIZE) above this many subjects
AUTO_BATCH_ABOVE = 2000


# ------------------------------------------------------------------------------------------------
# where a batch's rows come from


@dataclass
class InMemorySource:
    """A study already in memory; each batch is sent to its worker as a subset."""

    study: Study

    @property
    def study_id(self) -> str:
        return self.study.study_id

    def subjects(self) -> pl.DataFrame:
        return self.study.subjects

    def subject_ids(self) -> list[str]:
        return self.study.subject_ids

    def header(self) -> Study:
        """The study with its subjects only (what the cohort steps may read), sources and warnings."""
        return Study(study_id=self.study.study_id, subjects=self.study.subjects, sources=self.study.sources,
                     warnings=self.study.warnings, absent=self.study.absent,
                     doses_recorded=self.study.car_t_doses_recorded(),
                     reader_options=dict(self.study.reader_options))

    def task(self, ids: list[str]) -> Callable[[], Study]:
        return _Loaded(self.study.subset(ids))


@dataclass
class _Loaded:
    study: Study

    def __call__(self) -> Study:
        return self.study


@dataclass
class ParquetSource:
    """A study held as Parquet: ``<folder>/<table>.parquet`` or ``<folder>/<table>/*.parquet`` (parts),
    one per canonical table (``subjects`` required). Each batch reads only its subjects' rows."""

    folder: Path
    study_id: str = ""
    _sources: pl.DataFrame | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        if not self.study_id:
            self.study_id = self.folder.name
        if self._paths("subjects") is None:
            from cartlab.errors import InputError

            raise InputError(f"{self.folder}: no subjects.parquet (or subjects/*.parquet)")

    def _paths(self, name: str) -> list[Path] | None:
        return _table_paths(self.folder, name)

    def _scan(self, name: str) -> pl.LazyFrame | None:
        return _scan_table(self.folder, name)

    def subjects(self) -> pl.DataFrame:
        return conform(self._scan("subjects").collect(), "subjects")

    def subject_ids(self) -> list[str]:
        """As :attr:`cartlab.model.Study.subject_ids`: the subjects table's order, then subjects found only
        in the other tables (first seen)."""
        ids = self.subjects()["subject_id"].to_list()
        known = set(ids)
        for name in TABLES:
            scan = self._scan(name) if name != "subjects" else None
            if scan is None:
                continue
            seen = scan.select("subject_id").filter(pl.col("subject_id").is_not_null()).unique(
                maintain_order=True).collect()["subject_id"].to_list()
            new = [s for s in seen if s not in known]
            ids.extend(new)
            known.update(new)
        return ids

    def header(self) -> Study:
        return Study(study_id=self.study_id, subjects=self.subjects(), sources=self._source_table(),
                     absent=_absent(self.folder), doses_recorded=self.doses_recorded())

    def doses_recorded(self) -> bool:
        """``Study.doses_recorded`` of the whole study (review 38 A1): doses given with a CAR-T row (with a
        day) for some subject; every batch carries it."""
        from cartlab.kinetics.agents import car_t_agent_expr

        scan = self._scan("doses")
        if scan is None:
            return False
        hit = scan.filter(pl.col("day").is_not_null() & car_t_agent_expr(pl.col("agent"))).select(
            pl.len()).collect().item()
        return hit > 0

    def _source_table(self) -> pl.DataFrame:
        if self._sources is None:
            rows = [{"file": str(p.relative_to(self.folder)), "format": "parquet", "sha256": None,
                     "n_rows": pl.scan_parquet(p).select(pl.len()).collect().item()}
                    for name in TABLES for p in (self._paths(name) or [])]
            self._sources = pl.DataFrame(rows, schema={"file": pl.String, "format": pl.String,
                                                       "sha256": pl.String, "n_rows": pl.Int64})
        return self._sources

    def task(self, ids: list[str]) -> Callable[[], Study]:
        if not hasattr(self, "_recorded"):
            self._recorded = self.doses_recorded()
        return _ParquetBatch(self.folder, self.study_id, ids, self._recorded)


def _table_paths(folder: Path, name: str) -> list[Path] | None:
    """``<folder>/<name>.parquet``, else the parts ``<folder>/<name>/*.parquet``; None when neither."""
    one = folder / f"{name}.parquet"
    if one.is_file():
        return [one]
    parts = sorted((folder / name).glob("*.parquet")) if (folder / name).is_dir() else []
    return parts or None


def _scan_table(folder: Path, name: str) -> pl.LazyFrame | None:
    paths = _table_paths(folder, name)
    return None if paths is None else pl.scan_parquet(paths)


@dataclass
class _ParquetBatch:
    folder: Path
    study_id: str
    ids: list[str]
    doses_recorded: bool | None = None  # the whole study's (review 38 A1)

    def __call__(self) -> Study:
        keep = pl.col("subject_id").is_in(self.ids)
        frames = {}
        for name in TABLES:
            scan = _scan_table(self.folder, name)
            frames[name] = empty_frame(name) if scan is None else conform(scan.filter(keep).collect(), name)
        return Study(study_id=self.study_id, absent=_absent(self.folder), doses_recorded=self.doses_recorded,
                     **frames)


def _absent(folder: Path) -> frozenset[str]:
    """The optional tables the Parquet folder does not have (Study.absent: read as unknown, not none)."""
    from cartlab.io.absent_files import absent_tables

    return absent_tables(n for n in TABLES if _table_paths(folder, n) is not None)


# ------------------------------------------------------------------------------------------------
# one batch (in a worker process)


@dataclass
class _BatchResult:
    k: int
    ids: list[str]
    kept: dict[str, pl.DataFrame]
    spilled: dict[str, dict[str, str]]  # table -> its schema (column -> dtype), as written in this batch
    derived: list[str]
    missing: dict[str, set[str]]
    skipped: list[Skipped]
    warnings: list[dict[str, str]]
    timings: dict[str, float]
    rule_counts: dict[tuple[str, str], int]
    peak_rss: int
    pid: int
    #: (engine, message) -> (template, subject ids) of each subject-counting warning (merged: B1)
    warning_shapes: dict[tuple[str, str], tuple] = field(default_factory=dict)


def _run_batch(k: int, task: Callable[[], Study], ids: list[str], options: AnalysisOptions, protocol,
               spill: Path, keep: frozenset[str], csv: bool = True) -> _BatchResult:
    from cartlab.grading.adam import to_csv_frame

    study = task()
    a = Analysis(study, options, protocol)
    steps = [s for s in a.steps if s.per_subject]
    written = set(a.table_names(written_only=True))
    spilled: dict[str, dict[str, str]] = {}
    kept: dict[str, pl.DataFrame] = {}
    derived: list[str] = []
    missing: dict[str, set[str]] = {}
    for i, step in enumerate(steps):
        a.compute(step)
        later = {n for s in steps[i + 1:] for n in s.inputs}
        for name in [n for n in a.computed() if n not in later]:
            # no later step reads it: written out and freed now (the batch's peak memory is lower)
            derived.append(name)
            missing[name] = a.missing_subjects(name)
            frame = a.release(name)
            if name in written:
                # the CSV text, formatted here in parallel; Parquet too, for when batches disagree on
                # a column's type (the parent then unifies them as pl.concat would)
                (spill / name).mkdir(exist_ok=True)
                if csv:
                    to_csv_frame(frame).write_csv(spill / name / f"{k:06d}.csv")
                frame.write_parquet(spill / name / f"{k:06d}.parquet", compression="lz4")
                spilled[name] = {c: str(t) for c, t in frame.schema.items()}
            if name in keep:
                kept[name] = frame
            del frame
    return _BatchResult(
        k=k, ids=ids, kept=kept, spilled=spilled, derived=derived, missing=missing, skipped=a.skipped,
        warnings=a.warnings, warning_shapes=a.warning_shapes, timings=a.timings, rule_counts=a.rules_counted(), peak_rss=peak_rss(),
        pid=os.getpid())


# ------------------------------------------------------------------------------------------------
# the run


@dataclass
class BatchRunInfo:
    """What :func:`write_analysis_batched` did: batches, workers, peak memory of each process."""

    batches: int
    workers: int
    worker_peak_rss: list[int]
    seconds: float


@dataclass
class BatchedAnalysis:
    """The result of :func:`analyze_batched`: the cohort :class:`Analysis` (summary and cohort tables,
    ``skipped``, ``warnings``, the manifest) and each per-subject table as Parquet parts in batch
    order (``pl.scan_parquet(parts[name])`` reads one; concatenated they are the whole-study table)."""

    analysis: Analysis
    parts: dict[str, list[Path]]
    info: dict[str, Any]
    subject_ids: list[str] = field(default_factory=list)  # the study's, in the order the batches follow


def analyze_batched(source, folder: str | Path, options: AnalysisOptions | None = None, protocol=None,
                    batch_size: int = DEFAULT_BATCH_SIZE, workers: int = 1,
                    progress: Callable[[int, int], None] | None = None, *, csv: bool = False,
                    on_result: Callable[[_BatchResult], None] | None = None) -> BatchedAnalysis:
    """Every table of the analysis of ``source`` (:class:`InMemorySource` or :class:`ParquetSource`),
    ``batch_size`` subjects at a time on ``workers`` processes: the per-subject tables as Parquet parts
    in ``folder`` (``<table>/<batch>.parquet``), the cohort and summary tables in the returned
    analysis. ``csv``: the workers also write each part's CSV rows (``<table>/<batch>.csv``, for
    :func:`write_analysis_batched`). ``progress(done, total)`` is called after each batch."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    options = options or AnalysisOptions()
    folder = Path(folder)
    start = time.perf_counter()
    ids = source.subject_ids()
    batches = [ids[k:k + batch_size] for k in range(0, len(ids), batch_size)] or [[]]
    cohort = Analysis(source.header(), options, protocol)
    per_subject = [s for s in cohort.steps if s.per_subject]
    cohort_inputs = {n for s in cohort.steps if not s.per_subject for n in s.inputs}
    from cartlab.analyze import SUMMARY_SOURCES

    keep = frozenset(cohort_inputs | {name for name, _c, _cols in SUMMARY_SOURCES})
    phases = {"start": time.perf_counter() - start}
    results = _run_all(batches, source, options, protocol, folder, keep, workers, progress,
                       on_result or (lambda r: None), csv)
    phases["batches"] = time.perf_counter() - start - sum(phases.values())
    _adopt(cohort, per_subject, results, ids)
    cohort.compute_steps(per_subject=False)
    # the cohort steps' warnings in the engines' order too, as a whole-study run lists them (stable)
    rank: dict[str, int] = {}
    for i, s in enumerate(cohort.steps):
        rank.setdefault(s.engine, i)
    cohort.warnings.sort(key=lambda w: rank.get(w["engine"], len(rank)))
    phases["cohort"] = time.perf_counter() - start - sum(phases.values())
    parts: dict[str, list[Path]] = {}
    for r in results:
        for name in r.spilled:
            parts.setdefault(name, []).append(folder / name / f"{r.k:06d}.parquet")
    info = {"batches": len(batches), "workers": workers, "phases": phases, "worker_peak_rss": _peaks(results)}
    return BatchedAnalysis(cohort, parts, info, ids)


def write_analysis_batched(source, out_dir: str | Path, options: AnalysisOptions | None = None,
                           protocol=None, batch_size: int = DEFAULT_BATCH_SIZE, workers: int = 1,
                           progress: Callable[[int, int], None] | None = None,
                           info: dict[str, Any] | None = None) -> tuple[Path, Analysis, list[str]]:
    """Analyse ``source`` as :func:`analyze_batched` does and write every table, ``subject_summary.csv``
    and ``analysis.json`` into ``out_dir``. Returns the summary's path, the cohort :class:`Analysis` (its
    ``skipped``, ``warnings``, summary tables and cohort tables; the per-subject tables stay on disk)
    and the names of the tables written.

    Nothing is written into ``out_dir`` before every batch and the cohort steps are done (the spilled
    parts live in a temporary folder beside it); each file is then replaced atomically. ``info`` (a
    dict) receives the batch count, the worker peak memories, the phases' and the total wall time.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    spill = Path(tempfile.mkdtemp(prefix=".cartlab-batches-", dir=out))
    joined = _Assembler(spill)
    try:
        run = analyze_batched(source, spill, options, protocol, batch_size, workers, progress, csv=True,
                              on_result=joined.add)
        cohort = run.analysis
        summary = cohort.subject_summary()
        meta = cohort.manifest()
        # how the run was cut (review 38 C1): not an option, the results do not depend on it
        meta["run"] = {"batch_size": batch_size, "workers": workers, "batches": run.info["batches"],
                       "engine_seconds_are": "worker time summed over the batches"}
        t_write = time.perf_counter()
        names = cohort.table_names(written_only=True)
        memory = cohort.computed()
        stale = [p for p in out.glob("*.csv") if p.stem in names and p.stem not in joined.tables | set(memory)]
        written = []
        rank = {sid: i for i, sid in enumerate(run.subject_ids)}
        resort = run.subject_ids != sorted(run.subject_ids)  # else the batches follow the id order too
        for name in names:
            if name in joined.tables and resort and len(run.parts.get(name, [])) > 1 and \
                    _sorted_by_id(name, run.parts[name], rank):
                joined.drop(name)  # B7: sorted over the whole study, as a whole-study run sorts it
                _write_sorted(run.parts[name], out / f"{name}.csv", batch_size)
            elif name in joined.tables:
                joined.finish(name, out / f"{name}.csv")
            elif name in memory:
                _write_parts([memory[name]], out / f"{name}.csv")
            else:
                continue
            written.append(name)
        for p in stale:  # a table not derived this time must not be mistaken for this run's
            p.unlink()
        path = write_summary(summary, out, meta)
        run.info["phases"]["write"] = time.perf_counter() - t_write
    finally:
        joined.close()
        shutil.rmtree(spill, ignore_errors=True)
    if info is not None:
        info.update({**run.info, "seconds": time.perf_counter() - start,
                     "phases": {k: round(v, 2) for k, v in run.info["phases"].items()}})
    return path, cohort, written


def _run_all(batches, source, options, protocol, spill, keep, workers, progress,
             on_result: Callable[[_BatchResult], None], csv: bool) -> list[_BatchResult]:
    """Every batch, inline or on ``workers`` processes; ``on_result`` sees the results in batch order."""
    total = len(batches)
    if workers <= 1 or total == 1:
        results = []
        for k, ids in enumerate(batches):
            results.append(_run_batch(k, source.task(ids), ids, options, protocol, spill, keep, csv))
            on_result(results[-1])
            if progress:
                progress(k + 1, total)
        return results
    # spawned (not forked) workers: polars' thread pool does not survive a fork; each worker gets
    # its share of the cores for polars' threads (CARTLAB_WORKER_THREADS overrides)
    threads = int(os.environ.get("CARTLAB_WORKER_THREADS") or max(1, (os.cpu_count() or 1) // workers))
    saved = os.environ.get("POLARS_MAX_THREADS")
    os.environ["POLARS_MAX_THREADS"] = str(threads)
    try:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = [pool.submit(_run_batch, k, source.task(ids), ids, options, protocol, spill, keep, csv)
                       for k, ids in enumerate(batches)]
            _warm_up()  # while the workers run
            results = []
            for n, fut in enumerate(futures, 1):  # in batch order: the output order does not depend on timing
                try:
                    results.append(fut.result())
                except BrokenProcessPool as exc:
                    raise WorkerKilledError(_killed_message(n, total, batches[n - 1], len(batches[0]), workers)) from exc
                on_result(results[-1])
                if progress:
                    progress(n, total)
            return results
    finally:
        if saved is None:
            os.environ.pop("POLARS_MAX_THREADS", None)
        else:
            os.environ["POLARS_MAX_THREADS"] = saved


class WorkerKilledError(CartlabError):
    """A worker process of a batched analysis was killed (by the system: most likely out of memory).
    Exit code 1; nothing is written (review 38 B6)."""


def _killed_message(n: int, total: int, ids: list[str], size: int, workers: int) -> str:
    first, last = (ids[0], ids[-1]) if ids else ("", "")
    return (f"a worker process was killed by the system, most likely for lack of memory, before batch {n} of "
            f"{total} (subjects {first}..{last}) was done: run again with a lower --batch-size (now {size}) or "
            f"fewer --workers (now {workers}); no analysis file was written")


def _peaks(results: list[_BatchResult]) -> list[int]:
    """Peak resident memory of each worker process (a process runs several batches); batches run in
    this process (one worker) are not counted here."""
    peaks: dict[int, int] = {}
    for r in results:
        if r.pid != os.getpid():
            peaks[r.pid] = max(peaks.get(r.pid, 0), r.peak_rss)
    return sorted(peaks.values())


#: what the cohort steps import (scipy.stats for the exact CIs is most of it): imported by the parent
#: while the workers run, instead of after them
_COHORT_MODULES = ("cartlab.response.endpoints", "cartlab.response.best", "cartlab.kinetics.exposure",
                   "cartlab.grading.crs_legacy", "cartlab.protocol.outcomes", "cartlab.criteria", "scipy.stats")


def _warm_up() -> None:
    import importlib

    for name in _COHORT_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # pragma: no cover - an optional dependency: the step reports it
            pass


def _adopt(cohort: Analysis, steps, results: list[_BatchResult], ids: list[str]) -> None:
    """Merge the batches' results into the cohort analysis, as if its per-subject steps had run whole."""
    tables: dict[str, list[pl.DataFrame]] = {}
    derived: set[str] = set()
    missing: dict[str, set[str] | None] = {}
    skipped: dict[tuple, Skipped] = {}
    warnings: list[list[dict[str, str]]] = []
    shapes: dict[tuple[str, str], tuple[str, list[str]]] = {}
    timings: dict[str, float] = {}
    rules: dict[tuple[str, str], int] = {}
    outputs = {n for s in steps for n in s.outputs}
    for r in results:
        derived.update(r.derived)
        for n, t in r.kept.items():
            tables.setdefault(n, []).append(t)
        for n in outputs:
            # a table a batch could not derive at all: its subjects are missing from it
            lost = r.missing.get(n, set(r.ids)) if n in r.derived else set(r.ids)
            missing.setdefault(n, set()).update(lost)
        for s in r.skipped:
            key = (s.engine, tuple(s.tables), generic_reason(s.reason, s.subjects), s.fix)
            if key in skipped and s.subjects is not None and skipped[key].subjects is not None:
                skipped[key].subjects.extend(x for x in s.subjects if x not in skipped[key].subjects)
                skipped[key].reason = key[2]  # several subjects: the message without one's id, as whole
            elif key in skipped:
                skipped[key].subjects = None
            else:
                skipped[key] = Skipped(s.engine, list(s.tables), None if s.subjects is None else list(s.subjects),
                                       s.reason, s.fix)
        warnings.append(list(r.warnings))  # every batch's fragments: merged below (B1)
        shapes.update(r.warning_shapes)
        for n, sec in r.timings.items():
            timings[n] = timings.get(n, 0.0) + sec
        for key, n in r.rule_counts.items():
            rules[key] = rules.get(key, 0) + n
    for n in outputs - derived:
        missing[n] = None  # no batch derived it: the table is absent, as in a whole-study run
    whole = {n: pl.concat(parts, how="diagonal_relaxed") for n, parts in tables.items()}
    rank = {tuple(s.outputs): i for i, s in enumerate(steps)}  # in step order, as a whole-study run lists them
    ordered = sorted(skipped.values(), key=lambda s: rank.get(tuple(s.tables), len(rank)))
    engine_rank = {}
    for i, s in enumerate(steps):
        engine_rank.setdefault(s.engine, i)
    # one warning per kind, counts summed, in the engines' order, as a whole-study run lists them (B1)
    from cartlab.errors import names_subjects

    merged = merge_warnings(warnings, shapes, engine_rank, named=names_subjects())
    cohort.adopt(steps, whole, missing, ordered, merged, timings, rules, available=derived,
                 subject_ids=ids)


class _Assembler:
    """Each table's CSV, joined from the batches' parts as the batches finish (in batch order, while
    the later batches still run): the first part's header, then every part's rows. A table whose
    batches disagree on a column's type is rebuilt at the end from the Parquet parts instead."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files: dict[str, Any] = {}
        self.schemas: dict[str, dict[str, str]] = {}
        self.mixed: set[str] = set()
        self.tables: set[str] = set()

    def add(self, r: _BatchResult) -> None:
        for name, schema in r.spilled.items():
            self.tables.add(name)
            part = self.folder / name / f"{r.k:06d}.csv"
            if name in self.mixed:
                continue
            first = name not in self.files
            if first:
                self.schemas[name] = schema
                self.files[name] = open(self.folder / f"{name}.joined.csv", "wb")
            elif schema != self.schemas[name]:
                self.mixed.add(name)
                continue
            with open(part, "rb") as src:
                # the header once (column names hold no newline); copied in the kernel where it can
                # (2 GB in about 1 s against 8 s through Python)
                _copy_from(src, self.files[name], 0 if first else len(src.readline()))
            part.unlink()

    def finish(self, name: str, path: Path) -> None:
        fh = self.files.pop(name, None)
        if fh is not None:
            fh.close()
        if name in self.mixed:
            _write_parts(sorted((self.folder / name).glob("*.parquet")), path)
        else:
            os.replace(self.folder / f"{name}.joined.csv", path)

    def drop(self, name: str) -> None:
        """The table is written another way: its joined CSV is left to the spill folder's removal."""
        fh = self.files.pop(name, None)
        if fh is not None:
            fh.close()

    def close(self) -> None:
        for fh in self.files.values():
            fh.close()
        self.files.clear()


def _copy_from(src, dst, offset: int) -> None:
    size = os.fstat(src.fileno()).st_size
    dst.flush()
    if hasattr(os, "copy_file_range"):
        try:
            while offset < size:
                n = os.copy_file_range(src.fileno(), dst.fileno(), size - offset, offset)
                if n == 0:
                    break
                offset += n
            return
        except OSError:  # pragma: no cover - a file system without it: the portable copy below
            pass
    src.seek(offset)
    shutil.copyfileobj(src, dst, 1 << 22)


def _write_parts(parts: list, path: Path) -> None:
    """One CSV from frames or Parquet parts, in order, as ``write_tables`` writes their concatenation
    (columns unified as ``pl.concat(how="diagonal_relaxed")`` would)."""
    from cartlab.grading.adam import to_csv_frame

    schemas = [p.schema if isinstance(p, pl.DataFrame) else pl.read_parquet_schema(p) for p in parts]
    unified = (pl.concat([pl.DataFrame(schema=s) for s in schemas], how="diagonal_relaxed").schema
               if len(parts) > 1 else schemas[0])
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        for i, part in enumerate(parts):
            frame = part if isinstance(part, pl.DataFrame) else pl.read_parquet(part)
            if frame.schema != unified:
                frame = frame.select([pl.col(c).cast(t) if c in frame.columns else pl.lit(None, dtype=t).alias(c)
                                      for c, t in unified.items()])
            to_csv_frame(frame).write_csv(fh, include_header=i == 0)


#: per-subject tables whose engines sort their rows by subject_id (review 38 B7, the reversed-subjects
#: probe); used only when the batches' own rows cannot tell (no batch holds two subjects out of id order)
_ID_SORTED = frozenset({"adae_toxicity", "adlb", "adpc", "adpp", "adrs", "antigen_loss", "relapse_antigen", "car_kinetics", "crs_daily",
                        "icaht_daily", "icans_daily", "t_icaht_daily"})


def _sorted_by_id(name: str, parts: list[Path], rank: dict[str, int]) -> bool:
    """Whether the whole-study table is sorted by subject_id (not in the subjects' order), read from
    the batches' parts: each part's subjects are contiguous, in increasing id order, and in some part
    that differs from the subjects' order (else, when both orders fit every part, ``_ID_SORTED``)."""
    by_id = by_rank = True
    for p in parts:
        col = _subject_column(p)
        if col is None:
            return False
        sid = pl.read_parquet(p, columns=[col])[col]
        runs = sid.filter(sid.ne_missing(sid.shift(1)).fill_null(True)).to_list()
        if None in runs or len(runs) != len(set(runs)):
            return False  # not grouped by subject: the batch order is kept
        by_id &= all(a < b for a, b in zip(runs, runs[1:]))
        by_rank &= all(rank.get(a, -1) < rank.get(b, -1) for a, b in zip(runs, runs[1:]))
    if by_id and by_rank:
        return name in _ID_SORTED
    return by_id


def _subject_column(part: Path) -> str | None:
    """The column naming the subject: ``subject_id``, or ``USUBJID`` in the ADaM tables."""
    schema = pl.read_parquet_schema(part)
    return next((c for c in ("subject_id", "USUBJID") if c in schema), None)


def _write_sorted(parts: list[Path], path: Path, chunk: int) -> None:
    """One CSV from Parquet parts each sorted by subject_id: the rows in subject_id order over all parts
    (a subject's rows in its part's order), ``chunk`` subjects at a time (memory stays a batch's)."""
    from cartlab.grading.adam import to_csv_frame

    schemas = [pl.read_parquet_schema(p) for p in parts]
    unified = pl.concat([pl.DataFrame(schema=s) for s in schemas], how="diagonal_relaxed").schema
    col = _subject_column(parts[0])
    ids = sorted(set().union(*(pl.read_parquet(p, columns=[col])[col].to_list() for p in parts)))

    def conformed(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.select([pl.col(c).cast(t) if c in frame.columns else pl.lit(None, dtype=t).alias(c)
                             for c, t in unified.items()])

    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        if not ids:
            to_csv_frame(pl.DataFrame(schema=unified)).write_csv(fh)
        for k in range(0, len(ids), max(1, chunk)):
            want = ids[k:k + max(1, chunk)]
            frame = pl.concat([conformed(pl.scan_parquet(p).filter(pl.col(col).is_in(want)).collect())
                               for p in parts]).sort(col, maintain_order=True)
            to_csv_frame(frame).write_csv(fh, include_header=k == 0)
