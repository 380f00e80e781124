"""The study store: canonical tables persisted in one embedded DuckDB file.

* Imports are transactional: a study is validated completely before the store is opened, then
  written in a single transaction, so a failed or killed import leaves the store as it was.
* Imports are idempotent: a study's fingerprint (the sha256 of every source file, the format and
  dictionary versions) is recorded; re-importing the same files changes nothing.
* Every row keeps its provenance: source file, its sha256 and the row number.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import polars as pl

from cartlab.errors import CartlabError, InputError
from cartlab.io.dictionary import load_dictionary
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

    def __str__(self) -> str:
        n = ", ".join(f"{v:,} {k}" for k, v in self.counts.items() if v)
        return f"{self.study_id}: {self.action} ({n})"


def study_files(folder: str | Path) -> list[Path]:
    """The files of a study folder that the format reads, in a fixed order."""
    from cartlab.io.folder import find_tables

    tables = find_tables(Path(folder))[0].tables
    return [tables[name] for name in TABLES if name in tables]


def fingerprint_files(study_id: str, files: list[tuple[str, str]]) -> str:
    """Fingerprint of a study: its id, its files' sha256 and the format/dictionary versions."""
    payload = {
        "study_id": study_id,
        "format": FORMAT_VERSION,
        "dictionary": load_dictionary().version,
        "schema": SCHEMA_VERSION,
        "files": sorted(files),
    }
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
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc
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
        if "meta" in tables:
            got = self._exec("SELECT value FROM meta WHERE key = 'schema_version'")
            if got and got[0][0] != SCHEMA_VERSION:
                raise StoreError(f"store {self.path} has schema version {got[0][0]}; this cartlab reads version "
                                 f"{SCHEMA_VERSION}: import the studies again into a new store "
                                 "(cartlab import STUDY --store NEW.duckdb)")
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
    ) -> ImportResult:
        """Validate and import a study folder (or an in-memory :class:`Study`).

        Raises :class:`cartlab.io.StudyValidationError` before touching the store when the folder
        is invalid. Re-importing identical files is a no-op (``action == "unchanged"``); changed
        files replace the study atomically (``"replaced"``).
        """
        step = progress or (lambda _msg: None)
        if isinstance(source, Study):
            study = source
            files = [(r["file"], r["sha256"]) for r in study.sources.iter_rows(named=True)]
            folder = str(Path(folder).resolve()) if folder else ""
        else:
            folder_path = Path(source)
            study_id = study_id or folder_path.resolve().name
            step("hashing files")
            files = [(p.name, sha256_file(p)) for p in study_files(folder_path)]
            fp = fingerprint_files(study_id, files)
            if self.fingerprint_of(study_id) == fp:
                return ImportResult(study_id, "unchanged", fp, self.counts(study_id))
            study = read_study(folder_path, study_id, progress=lambda n: step(f"validating {n}"))
            folder = str(folder_path.resolve())
        study_id = study_id or study.study_id
        fp = fingerprint_files(study_id, files)
        previous = self.fingerprint_of(study_id)
        if previous == fp:
            return ImportResult(study_id, "unchanged", fp, self.counts(study_id))
        self._write(study, study_id, fp, folder, step)
        return ImportResult(
            study_id, "replaced" if previous else "imported", fp, self.counts(study_id)
        )

    def _write(self, study: Study, study_id: str, fp: str, folder: str, step) -> None:
        c = self.con
        self._exec("BEGIN TRANSACTION")
        try:
            for name in ("source_files", "studies", *TABLES):
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
        for name in ("source_files", "studies", *TABLES):
            self._exec(f"DELETE FROM {name} WHERE study_id = ?", [study_id])
        self._exec("COMMIT")
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
        sql += " ORDER BY study_id, src_row"
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
        sources = self._query(
            "SELECT file, format, sha256, n_rows FROM source_files WHERE study_id = ? ORDER BY file",
            [study_id],
        )
        return Study(study_id=study_id, sources=sources, **frames)

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
        sources = self._query(
            "SELECT file, format, sha256, n_rows FROM source_files WHERE study_id = ? ORDER BY file",
            [sid],
        )
        return Study(study_id=sid, sources=sources, **frames)
