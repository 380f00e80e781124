"""The study store: canonical tables persisted in one embedded DuckDB file.

* Imports are transactional: a study is validated completely before the store is opened, then
  written in a single transaction, so a failed or killed import leaves the store as it was.
* Imports are idempotent: a study's fingerprint (the sha256 of every source file, the format and
  dictionary versions, the CSV dialect and the cartlab version) is recorded; re-importing the same
  files with the same dialect and cartlab changes nothing.
* Every row keeps its provenance: source file, its sha256 and the row number; the study's input
  warnings (rows dropped, files not read) are stored with it (table ``study_warnings``).
* A study id names one source: importing another folder under an existing id is refused unless
  ``replace=True``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import polars as pl

from cartlab.errors import CartlabError, InputError
from cartlab.io.absent_files import absent_from_warnings
from cartlab.io.dictionary import load_dictionary
from cartlab.io.errors import Issue
from cartlab.io.study_folder import read_study, sha256_file
from cartlab.model import FORMAT_VERSION, TABLES, Study, conform

DEFAULT_STORE = "cartlab.duckdb"
SCHEMA_VERSION = "1"

_DUCK_TYPES = {pl.String: "VARCHAR", pl.Float64: "DOUBLE", pl.Int64: "BIGINT"}


class StoreError(CartlabError, RuntimeError):
    """The store cannot be opened or changed."""


class StoreLookupError(StoreError, InputError):
    """The store has no such study, subject or table, or no store exists at the path (exit 2)."""


@dataclass(frozen=True)
class ImportResult:
    study_id: str
    action: str  # "imported" | "replaced" | "unchanged"
    fingerprint: str
    counts: dict[str, int]
    previous: str = ""  # "replaced": what was replaced (its folder and import time)

    def __str__(self) -> str:
        n = ", ".join(f"{v:,} {k}" for k, v in self.counts.items() if v)
        return f"{self.study_id}: {self.action} ({n})" + (f"; it replaced {self.previous}" if self.previous else "")


def study_files(folder: str | Path) -> list[Path]:
    """The files of a study folder that the format reads, in a fixed order."""
    from cartlab.io.folder import find_tables

    tables = find_tables(Path(folder))[0].tables
    return [tables[name] for name in TABLES if name in tables]


def fingerprint_files(study_id: str, files: list[tuple[str, str]], csv_dialect: str = "standard",
                      reader_options: dict | None = None) -> str:
    """Fingerprint of a study: its id, its files' sha256, the format/dictionary versions, the CSV
    dialect it was read with and the cartlab version (a newer reader may read the same files
    differently: units, censored values); for an SDTM or FHIR source also the reader's options (the
    same files read with other options are another study: partial dates imputed or dropped)."""
    from cartlab import __version__

    payload = {
        "study_id": study_id,
        "format": FORMAT_VERSION,
        "dictionary": load_dictionary().version,
        "schema": SCHEMA_VERSION,
        "files": sorted(files),
        "csv_dialect": csv_dialect,
        "cartlab": __version__,
    }
    if reader_options:  # not in a study folder's payload: its fingerprints stay as they were
        payload["reader_options"] = reader_options
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


#: DuckDB's database files carry these bytes after an 8-byte header checksum (DuckDB docs, "Storage":
#: a uint64 checksum, then the magic bytes ``DUCK``, then the storage version)
DUCKDB_MAGIC = b"DUCK"
DUCKDB_MAGIC_OFFSET = 8


def is_duckdb_file(path: str | Path) -> bool:
    """``path`` is a file starting with DuckDB's header (checksum, ``DUCK``)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(DUCKDB_MAGIC_OFFSET + len(DUCKDB_MAGIC))
    except OSError:
        return False
    return head[DUCKDB_MAGIC_OFFSET:] == DUCKDB_MAGIC


def check_store_path(path: str | Path) -> bool:
    """Whether a store exists at ``path`` (False: none yet); anything there that is not a DuckDB
    database (a folder, a CSV, an empty file) is a :class:`StoreLookupError` (exit 2) before DuckDB
    opens it: DuckDB would open a ``.csv`` as an in-memory database and keep nothing."""
    path = Path(path)
    if path.is_dir():
        raise StoreLookupError(f"{path}: a folder, not a cartlab store",
                               hint="give --store the store's file (a DuckDB file, e.g. cartlab.duckdb)")
    if not path.exists():
        if path.is_symlink():
            raise StoreLookupError(f"{path}: a broken link, not a cartlab store")
        return False
    if not is_duckdb_file(path):
        what = "an empty file" if path.is_file() and path.stat().st_size == 0 else "not a DuckDB database file"
        raise StoreLookupError(f"{path}: not a cartlab store ({what})",
                               hint="give --store a store file (cartlab import STUDY --store NEW.duckdb makes "
                                    "one); cartlab does not write a store into another file")
    return True


def _lock_message(path: Path, exc: Exception) -> StoreError | None:
    """DuckDB's "Could not set lock ... Conflicting lock is held in <program> (PID n)" as one cartlab
    message (DuckDB's own advice names a command-line flag cartlab does not have); None otherwise."""
    text = str(exc)
    if "lock" not in text.lower():
        return None
    pid = re.search(r"PID (\d+)", text)
    who = f" (PID {pid.group(1)})" if pid else ""
    return StoreError(f"the store {path} is in use by another process{who}: another cartlab command or DuckDB "
                      "program has it open, and DuckDB lets only one process write to a store file",
                      hint="try again when that command has finished (or close the program holding it)")


def _io_reason(exc: Exception) -> str:
    """DuckDB's 'IO Error: Cannot open file "x": No such file or directory' as its last part."""
    text = str(exc)
    return text.rsplit(": ", 1)[-1] if ": " in text else text


class Store:
    """A DuckDB file holding any number of studies in canonical form.

    >>> store = Store("cartlab.duckdb")            # doctest: +SKIP
    >>> store.import_study("path/to/study")         # doctest: +SKIP
    ImportResult(study_id='study', action='imported', ...)
    """

    def __init__(self, path: str | Path = DEFAULT_STORE, *, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        existed = check_store_path(self.path)
        if read_only and not existed:
            raise StoreLookupError(f"no store at {self.path} (import a study first: cartlab import STUDY_DIR)")
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            if not existed:  # the path given cannot be made a file (a missing or read-only folder): usage
                raise StoreLookupError(f"cannot create the store {self.path}: {_io_reason(exc)}",
                                       hint="give --store a file in a folder that exists and can be "
                                            "written") from exc
            raise (_lock_message(self.path, exc) or StoreError(f"cannot open store {self.path}: {exc}")) from exc
        try:
            self._check_layout()
        except StoreError:
            self.con.close()
            raise
        if not read_only:
            self._create_schema()

    def _check_layout(self) -> None:
        """Refuse a store this cartlab cannot read: another schema version, or a canonical table
        without a column this version writes (a store from an earlier cartlab) - one message, not
        a database error halfway through a command."""
        tables = {r[0] for r in self._exec("SELECT table_name FROM information_schema.tables")}
        got = self._exec("SELECT value FROM meta WHERE key = 'schema_version'") if "meta" in tables else []
        if not got and not tables and self.read_only:  # review 40 diff2 C1: an empty file (e.g. an import stopped)
            raise StoreLookupError(f"{self.path}: an empty DuckDB file, no study imported into it yet",
                                   hint=f"cartlab import STUDY --store {self.path} makes it a store")
        if not got and tables:
            # review 40 B1: a DuckDB database cartlab did not write (no meta schema_version row): never
            # written into, never read as a store (an empty new file is the only database made a store)
            held = ", ".join(sorted(tables)[:8]) + (" ..." if len(tables) > 8 else "")
            raise StoreLookupError(
                f"{self.path}: a DuckDB database but not a cartlab store (no cartlab meta table with a schema "
                f"version; {'it holds table(s) ' + held if tables else 'it holds no tables'})",
                hint="give --store a cartlab store or a new file (cartlab import STUDY --store NEW.duckdb makes "
                     "one); cartlab does not write its tables into another database. Nothing was written.")
        if got and got[0][0] != SCHEMA_VERSION:
            raise StoreError(_schema_message(self.path, got[0][0]))
        for name, schema in TABLES.items():
            if name not in tables:
                continue
            have = {r[0] for r in self._exec(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [name])}
            lacking = [c for c in schema if c not in have]
            if lacking:
                raise StoreError(f"store {self.path} was written by an earlier cartlab: table {name} lacks "
                                 f"column(s) {', '.join(lacking)}; import the studies again into a new store "
                                 "(cartlab import STUDY --store NEW.duckdb)")

    def _exec(self, sql: str, args: list | None = None) -> list[tuple]:
        """Run a statement and fetch its whole result (DuckDB wants results finished)."""
        return self.con.execute(sql, args or []).fetchall()

    # -- lifecycle
    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _create_schema(self) -> None:
        self._exec("BEGIN TRANSACTION")
        self._exec("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        self._exec(
            "INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT DO NOTHING", [SCHEMA_VERSION]
        )
        self._exec(
            """CREATE TABLE IF NOT EXISTS studies (
                study_id VARCHAR PRIMARY KEY, fingerprint VARCHAR, folder VARCHAR,
                imported_at TIMESTAMP, format_version VARCHAR, dictionary_version VARCHAR,
                n_subjects BIGINT, n_observations BIGINT)"""
        )
        self._exec(
            """CREATE TABLE IF NOT EXISTS source_files (
                study_id VARCHAR, file VARCHAR, format VARCHAR, sha256 VARCHAR, n_rows BIGINT)"""
        )
        # session 35: one row per study imported since, its input warnings as a JSON list (a store of
        # an earlier cartlab gains the table here; a study imported before has no row: not recorded)
        self._exec("CREATE TABLE IF NOT EXISTS study_warnings (study_id VARCHAR PRIMARY KEY, warnings VARCHAR)")
        # session 39: the SDTM / FHIR reader's options of a study imported since (Study.reader_options, JSON)
        self._exec("CREATE TABLE IF NOT EXISTS study_reader_options (study_id VARCHAR PRIMARY KEY, options VARCHAR)")
        for name, schema in TABLES.items():
            cols = ", ".join(f'"{k}" {_DUCK_TYPES[v]}' for k, v in schema.items())
            self._exec(f"CREATE TABLE IF NOT EXISTS {name} (study_id VARCHAR, {cols})")
        self._exec("COMMIT")

    # -- import
    def fingerprint_of(self, study_id: str) -> str | None:
        rows = self._exec("SELECT fingerprint FROM studies WHERE study_id = ?", [study_id])
        return rows[0][0] if rows else None

    def import_study(
        self,
        source: str | Path | Study,
        study_id: str | None = None,
        *,
        folder: str | Path | None = None,
        progress: Callable[[str], None] | None = None,
        csv_dialect: str = "standard",
        replace: bool = False,
    ) -> ImportResult:
        """Validate and import a study folder (or an in-memory :class:`Study`).

        Raises :class:`cartlab.io.StudyValidationError` before touching the store when the folder
        is invalid. Re-importing identical files (same CSV dialect, same cartlab) is a no-op
        (``action == "unchanged"``); changed files from the same folder replace the study atomically
        (``"replaced"``). A study id already imported from another folder is an :class:`InputError`
        unless ``replace``. ``csv_dialect``: the dialect ``source`` was read with (fingerprint).
        """
        step = progress or (lambda _msg: None)
        if isinstance(source, Study):
            study = source
            files = [(r["file"], r["sha256"]) for r in study.sources.iter_rows(named=True)]
            folder = str(Path(folder).resolve()) if folder else ""
            reader_options = study.reader_options
        else:
            folder_path = Path(source)
            study_id = study_id or folder_path.resolve().name
            step("hashing files")
            files = [(p.name, sha256_file(p)) for p in study_files(folder_path)]
            fp = fingerprint_files(study_id, files, csv_dialect)
            if self.fingerprint_of(study_id) == fp:
                return ImportResult(study_id, "unchanged", fp, self.counts(study_id))
            self.check_replace(study_id, folder_path, replace)
            study = read_study(folder_path, study_id, progress=lambda n: step(f"validating {n}"),
                               csv_dialect=csv_dialect)
            folder = str(folder_path.resolve())
            reader_options = None
        study_id = study_id or study.study_id
        fp = fingerprint_files(study_id, files, csv_dialect, reader_options)
        previous = self.fingerprint_of(study_id)
        if previous == fp:
            return ImportResult(study_id, "unchanged", fp, self.counts(study_id))
        before = self.check_replace(study_id, folder, replace)
        self._write(study, study_id, fp, folder, step)
        return ImportResult(
            study_id, "replaced" if previous else "imported", fp, self.counts(study_id), before
        )

    def check_replace(self, study_id: str, folder: str | Path | None, replace: bool = False) -> str:
        """What an import of ``folder`` under ``study_id`` would replace ("" if nothing): the same
        folder may replace its earlier import; another folder only with ``replace`` (else an
        :class:`InputError` naming both), so that one id never silently names another study."""
        rows = self._exec("SELECT folder, imported_at FROM studies WHERE study_id = ?", [study_id])
        if not rows:
            return ""
        old, when = rows[0]
        new = str(Path(folder).resolve()) if folder else ""
        stamp = f"{when:%Y-%m-%d %H:%M} UTC" if when is not None else "an unknown time"
        before = f"the import of {old or 'an in-memory study'} of {stamp}"
        if old and new and old != new and not replace:
            raise InputError(
                f"study id {study_id!r} in {self.path} holds the study imported from {old} on {stamp}; "
                f"this import is from {new}",
                hint=f"give this study another id (--study-id), or --replace to replace {study_id!r} with it")
        return before

    def _write(self, study: Study, study_id: str, fp: str, folder: str, step) -> None:
        c = self.con
        self._exec("BEGIN TRANSACTION")
        try:
            for name in _STUDY_TABLES:
                self._exec(f"DELETE FROM {name} WHERE study_id = ?", [study_id])
            for name in TABLES:
                df = conform(study.table(name), name)
                step(f"writing {name} ({df.height:,} rows)")
                arrow = df.with_columns(pl.lit(study_id).alias("study_id")).select(
                    "study_id", *TABLES[name]
                ).to_arrow()
                c.register("__incoming", arrow)
                self._exec(f"INSERT INTO {name} SELECT * FROM __incoming")
                c.unregister("__incoming")
            src = study.sources.with_columns(pl.lit(study_id).alias("study_id")).select(
                "study_id", "file", "format", "sha256", "n_rows"
            )
            c.register("__src", src.to_arrow())
            self._exec("INSERT INTO source_files SELECT * FROM __src")
            c.unregister("__src")
            self._exec("INSERT INTO study_warnings VALUES (?, ?)", [study_id, _warnings_json(study.warnings)])
            if study.reader_options:
                self._exec("INSERT INTO study_reader_options VALUES (?, ?)",
                           [study_id, json.dumps(study.reader_options, sort_keys=True)])
            self._exec(
                "INSERT INTO studies VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    study_id,
                    fp,
                    folder,
                    datetime.now(timezone.utc).replace(tzinfo=None),
                    FORMAT_VERSION,
                    str(load_dictionary().version),
                    study.subjects.height,
                    study.observations.height,
                ],
            )
            step("committing")
            self._exec("COMMIT")
        except BaseException:
            self._exec("ROLLBACK")
            raise

    def delete_study(self, study_id: str) -> bool:
        """Remove a study; returns whether it existed."""
        existed = self.fingerprint_of(study_id) is not None
        self._exec("BEGIN TRANSACTION")
        try:
            for name in _STUDY_TABLES:
                self._exec(f"DELETE FROM {name} WHERE study_id = ?", [study_id])
            self._exec("COMMIT")
        except BaseException:
            self._exec("ROLLBACK")
            raise
        return existed

    # -- queries
    def _query(self, sql: str, args: list | None = None) -> pl.DataFrame:
        return self.con.sql(sql, params=args or None).pl()

    def studies(self) -> pl.DataFrame:
        return self._query(
            "SELECT study_id, n_subjects, n_observations, imported_at, folder, fingerprint "
            "FROM studies ORDER BY study_id"
        )

    def counts(self, study_id: str) -> dict[str, int]:
        return {
            name: self._exec(f"SELECT count(*) FROM {name} WHERE study_id = ?", [study_id])[0][0]
            for name in TABLES
        }

    def table(
        self, name: str, study_id: str | None = None, subject_id: str | None = None
    ) -> pl.DataFrame:
        """A canonical table (optionally of one study / one subject), in source-row order."""
        if name not in TABLES:
            raise StoreLookupError(f"no table {name!r}; tables: {', '.join(TABLES)}")
        where, args = [], []
        if study_id is not None:
            where.append("study_id = ?")
            args.append(study_id)
        if subject_id is not None:
            where.append("subject_id = ?")
            args.append(subject_id)
        sql = f"SELECT * FROM {name}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY study_id, src_file, src_row"  # several files per table (SDTM LB + VS): not interleaved
        df = self._query(sql, args)
        if df.height == 0:
            return pl.DataFrame(schema={"study_id": pl.String, **TABLES[name]})
        return df

    def load_study(self, study_id: str) -> Study:
        """The stored study as a canonical :class:`Study`."""
        if self.fingerprint_of(study_id) is None:
            known = ", ".join(self.studies()["study_id"].to_list()) or "none"
            raise StoreLookupError(f"no study {study_id!r} in {self.path} (studies: {known})")
        frames = {name: conform(self.table(name, study_id), name) for name in TABLES}
        sources = self._sources(study_id)
        warnings = self.study_warnings(study_id)  # the read warnings name the files not given (Study.absent)
        # doses_recorded: left to the Study (its frames are the whole study's)
        return Study(study_id=study_id, sources=sources, warnings=warnings,
                     absent=stored_absent(sources, warnings), reader_options=self.reader_options(study_id), **frames)

    def _sources(self, study_id: str) -> pl.DataFrame:
        """The study's source files in the order a study folder is read (subjects, doses, observations,
        interventions, events; other files after them by name), as ``read_study`` lists them."""
        src = self._query("SELECT file, format, sha256, n_rows FROM source_files WHERE study_id = ? ORDER BY file",
                          [study_id])
        rank = {name: i for i, name in enumerate(TABLES)}
        stem = pl.col("file").str.to_lowercase().str.replace(r"\.[^.]*$", "")
        return (src.with_columns(stem.replace_strict(rank, default=len(rank), return_dtype=pl.Int64).alias("_o"))
                .sort("_o", "file", maintain_order=True).drop("_o"))

    def study_warnings(self, study_id: str) -> list[Issue]:
        """The study's input warnings recorded at import (duplicate rows dropped, files not read), as
        :class:`~cartlab.io.errors.Issue`; a study imported by a cartlab before session 35 has none
        recorded: one warning says so (missing is not "no warnings")."""
        tables = {r[0] for r in self._exec("SELECT table_name FROM information_schema.tables")}
        rows = (self._exec("SELECT warnings FROM study_warnings WHERE study_id = ?", [study_id])
                if "study_warnings" in tables else [])
        if not rows:
            # a note, not an input warning (review 38 C3): the command prints it in full, not counted
            return [Issue(file=self.path.name, column=None, severity=NOT_RECORDED_SEVERITY,
                          message=f"study {study_id!r} was imported by an earlier cartlab that did not store its "
                                  "input warnings (rows dropped, files not read): none are listed here; import "
                                  "the study again to record them")]
        from cartlab.io.sdtm.reader import SdtmIssue  # its rows are SDTM record numbers: named as such

        kinds = {"SdtmIssue": SdtmIssue}
        return [kinds.get(w.get("kind"), Issue)(
            file=w["file"], column=w["column"], message=w["message"], rows=list(w["rows"]), severity=w["severity"],
            lines=None if w.get("lines") is None else {int(k): v for k, v in w["lines"].items()})
            for w in json.loads(rows[0][0])]

    def reader_options(self, study_id: str) -> dict:
        """The SDTM / FHIR reader options the study was imported with (``Study.reader_options``); empty for
        a study folder, and for a study imported before session 39 (which did not record them)."""
        tables = {r[0] for r in self._exec("SELECT table_name FROM information_schema.tables")}
        if "study_reader_options" not in tables:  # a store of an earlier cartlab opened read-only
            return {}
        rows = self._exec("SELECT options FROM study_reader_options WHERE study_id = ?", [study_id])
        return json.loads(rows[0][0]) if rows else {}

    def locate_subject(self, subject_id: str, study_id: str | None = None) -> str:
        """The study holding ``subject_id``; an error if none or several (then pass ``study_id``)."""
        rows = self._exec(
            "SELECT DISTINCT study_id FROM subjects WHERE subject_id = ?"
            + (" AND study_id = ?" if study_id else ""),
            [subject_id, study_id] if study_id else [subject_id],
        )
        if not rows:
            known = self.studies()["study_id"].to_list()
            if study_id is not None and study_id not in known:
                raise StoreLookupError(f"no study {study_id!r} in {self.path} (studies: {', '.join(known) or 'none'})")
            if study_id is not None:
                elsewhere = [r[0] for r in self._exec(
                    "SELECT DISTINCT study_id FROM subjects WHERE subject_id = ?", [subject_id])]
                where = f"; it is in {', '.join(elsewhere)}" if elsewhere else ""
                raise StoreLookupError(f"no subject {subject_id!r} in study {study_id!r} of {self.path}{where}")
            raise StoreLookupError(f"no subject {subject_id!r} in {self.path}")
        if len(rows) > 1:
            ids = ", ".join(r[0] for r in rows)
            raise StoreLookupError(f"subject {subject_id!r} is in several studies ({ids}): pass --study")
        return rows[0][0]

    def subject(self, subject_id: str, study_id: str | None = None) -> Study:
        """One subject's data as a :class:`Study`."""
        sid = self.locate_subject(subject_id, study_id)
        frames = {name: conform(self.table(name, sid, subject_id), name) for name in TABLES}
        sources = self._sources(sid)
        warnings = self.study_warnings(sid)
        absent = stored_absent(sources, warnings)
        return Study(study_id=sid, sources=sources, warnings=warnings, absent=absent,
                     doses_recorded=self.doses_recorded(sid, absent), reader_options=self.reader_options(sid),
                     **frames)

    def doses_recorded(self, study_id: str, absent: frozenset = frozenset()) -> bool:
        """Whether the WHOLE stored study records its CAR-T doses (``Study.doses_recorded``, review 38 A1):
        doses.csv not absent and a CAR-T row with a day for some subject; one subject's Study carries it."""
        if "doses" in absent:
            return False
        from cartlab.kinetics.agents import car_t_agent_expr

        agents = self._query("SELECT DISTINCT agent FROM doses WHERE study_id = ? AND day IS NOT NULL", [study_id])
        return agents.height > 0 and agents.filter(car_t_agent_expr(pl.col("agent"))).height > 0


#: every table holding rows of a study (deleted together when it is replaced or removed)
_STUDY_TABLES = ("source_files", "studies", "study_warnings", "study_reader_options", *TABLES)

#: the severity of the one notice a study imported before session 35 gets instead of its input warnings
#: (review 38 C3: not counted as an input warning; the command line prints it in full)
NOT_RECORDED_SEVERITY = "note"


def _schema_message(path: Path, version: str) -> str:
    """Why a store of another schema version is refused, and what to do (review 38 B4): a NEWER store
    needs a newer cartlab (re-importing with this one would lose what the newer one stored); an older
    one is imported again."""
    try:
        newer = int(version) > int(SCHEMA_VERSION)
    except (TypeError, ValueError):
        newer = False
    if newer:
        return (f"store {path} was written by a newer cartlab (schema version {version}; this cartlab reads "
                f"version {SCHEMA_VERSION}): upgrade cartlab (pip install -U cartlab) to read it")
    return (f"store {path} has schema version {version}; this cartlab reads version {SCHEMA_VERSION}: import the "
            "studies again into a new store (cartlab import STUDY --store NEW.duckdb)")


def stored_absent(sources: pl.DataFrame, warnings: list) -> frozenset[str]:
    """``Study.absent`` of a stored study. A study-folder import (a ``subjects.*`` source file) lists in
    ``source_files`` exactly the tables it read, in every cartlab version, so the optional tables not
    among them were not given (review 38 A2: a study imported before session 35 has no stored warnings);
    other imports (SDTM, FHIR, a Study built in Python) keep the stored "not given" warnings' reading."""
    from cartlab.io.absent_files import absent_tables

    stems = {str(f).lower().rsplit(".", 1)[0] for f in sources["file"].to_list()} if sources.height else set()
    if "subjects" in stems:
        return absent_tables(stems) | absent_from_warnings(warnings)
    return absent_from_warnings(warnings)


def _warnings_json(warnings: list) -> str:
    """A study's warnings (:class:`~cartlab.io.errors.Issue`, or anything with ``to_dict``/text) as JSON."""
    out = []
    for w in warnings:
        if isinstance(w, Issue):
            out.append({**w.to_dict(), "kind": type(w).__name__,
                        "lines": None if w.lines is None else {str(k): v for k, v in w.lines.items()}})
        else:
            d = w.to_dict() if hasattr(w, "to_dict") else {"message": str(w)}
            out.append({"severity": d.get("severity", "warning"), "file": d.get("file", ""),
                        "rows": list(d.get("rows") or []), "column": d.get("column"),
                        "message": d.get("message", str(w)), "lines": None})
    return json.dumps(out)
