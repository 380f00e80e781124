"""Loading one table file of a study folder (CSV or Parquet) as text columns, before any typed check.

Study folder format v1: "a folder of CSV files (Parquet with the same columns is accepted too) ...
Empty cell = missing", and a problem names "the file, the row and the column". So:

* every column is read as text, surrounding white space stripped, an empty cell missing;
* a CSV file's lines: row ``r`` is on line ``r + 1`` unless a quoted cell holds a line break; then
  :attr:`Loaded.lines` maps each row to its line (read with the csv module), so a message names the
  line the row starts on (session 34: a row after a two-line cell was said to be one line early);
  a Parquet file has no lines (``lines == {}``: messages name the row only);
* CR-only line endings (Excel's "CSV (Macintosh)") are read as line breaks (session 34: a polars
  message without a row before);
* Parquet: NaN is missing (Parquet has no empty cell; NaN is how a float column says missing), and
  a whole-valued float in a text column (``subject_id`` 101.0, an integer id column with a missing
  value written by pandas) is its integer text ``101``, as the same id in a CSV file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from cartlab.io.schema import FileSpec

__all__ = ["Loaded", "load_table"]

#: issue(column, message, rows, severity) of the file being read
IssueFn = Callable[..., None]


@dataclass
class Loaded:
    df: pl.DataFrame
    header: list[str]
    #: row -> line of the file; None: row r is on line r + 1; {}: no lines (Parquet)
    lines: dict[int, int] | None


def load_table(path: Path, fmt: str, separator: str, spec: FileSpec, issue: IssueFn) -> Loaded | None:
    """The file's columns as stripped text (empty = null), or None after an issue saying why not."""
    if fmt == "csv":
        return _load_csv(path, separator, issue)
    return _load_parquet(path, spec, issue)


def check_header_names(header: list[str], issue: IssueFn) -> bool:
    """Duplicate and empty column names are errors; an empty one is named by its position."""
    ok = True
    seen: set[str] = set()
    for pos, name in enumerate(header, start=1):
        if name in seen:
            issue(name, f"duplicate column name {name!r}")
            ok = False
        seen.add(name)
        if name == "":
            last = " (the last one: a separator at the end of the header line?)" if pos == len(header) else ""
            issue(None, f"column {pos} of {len(header)} has an empty name in the header{last}: name it or "
                        "delete the column")
            ok = False
    return ok


def _cr_only(path: Path) -> bool:
    """The file ends its lines with CR alone (old Mac line endings)."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    return b"\r" in head and b"\n" not in head


def _load_csv(path: Path, separator: str, issue: IssueFn) -> Loaded | None:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh, delimiter=separator), None)
    except UnicodeDecodeError:
        _not_utf8(path, issue)
        return None
    if not header:
        issue(None, "empty file: the header line is missing")
        return None
    header = [h.strip() for h in header]
    if not check_header_names(header, issue):
        return None
    source: Path | io.BytesIO = path
    if _cr_only(path):  # polars splits lines at LF only
        source = io.BytesIO(path.read_bytes().replace(b"\r", b"\n"))
    try:
        df = pl.read_csv(source, separator=separator, infer_schema=False, encoding="utf8", new_columns=header)
    except Exception as exc:  # ragged rows, bad quoting: find the line with the csv module
        _explain_csv_error(path, separator, header, exc, issue)
        return None
    return Loaded(_clean(df), header, _csv_lines(path, separator, df.height))


def _csv_lines(path: Path, separator: str, n_rows: int) -> dict[int, int] | None:
    """Row -> line when a quoted cell spans lines (else None: row r is on line r + 1). The csv module
    reads the file only when it has quotes and more lines than the header and ``n_rows`` rows."""
    quotes, breaks, cr, last = False, 0, 0, b""
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            quotes = quotes or b'"' in chunk
            breaks += chunk.count(b"\n")
            cr += chunk.count(b"\r")
            last = chunk[-1:]
    n_lines = (breaks or cr) + (last not in (b"\n", b"\r", b""))
    if not quotes or n_lines <= n_rows + 1:
        return None
    lines: dict[int, int] = {}
    spans = False
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh, delimiter=separator)
        next(reader, None)
        start = reader.line_num + 1
        for row, _ in enumerate(reader, start=1):
            lines[row] = start
            spans = spans or reader.line_num != start
            start = reader.line_num + 1
    return lines if spans else None


def _not_utf8(path: Path, issue: IssueFn) -> bool:
    """One issue naming the line of the first byte that is not UTF-8 (a Latin-1 export ...); False
    when the file is UTF-8."""
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        eol = b"\n" if b"\n" in raw else b"\r"
        line = raw.count(eol, 0, bad.start) + 1
        issue(None, f"not UTF-8 text ({bad.reason} at byte {bad.start}" + (", the header" if line == 1 else "")
              + "): save the file as UTF-8", [line - 1] if line > 1 else None)
        return True
    return False


def _explain_csv_error(path: Path, separator: str, header: list[str], exc: Exception, issue: IssueFn) -> None:
    n = len(header)
    if _not_utf8(path, issue):
        return
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh, delimiter=separator)
        next(reader, None)
        for i, rec in enumerate(reader, start=1):
            if rec and len(rec) != n:
                issue(None, f"malformed CSV: {len(rec)} fields where the header has {n}", [i])
                return
    issue(None, f"malformed CSV: {exc}")


def _load_parquet(path: Path, spec: FileSpec, issue: IssueFn) -> Loaded | None:
    try:
        df = pl.read_parquet(path)
    except Exception as exc:
        issue(None, f"unreadable Parquet file: {exc}")
        return None
    header = [h.strip() for h in df.columns]  # as a CSV header is read (review 45 folder F6)
    if not check_header_names(header, issue):
        return None
    df = df.rename(dict(zip(df.columns, header)))
    text_cols = {c.name for c in spec.columns if c.kind == "str"}
    spec_cols = {n.lower() for n in spec.column_names}
    ok = True
    casts = []
    for name, dtype in df.schema.items():
        if dtype == pl.String:
            casts.append(pl.col(name))
        elif dtype == pl.Date:
            casts.append(pl.col(name).dt.to_string("%Y-%m-%d").alias(name))
        elif isinstance(dtype, pl.Datetime):  # ISO 8601, with the offset of a zone-aware column
            fmt = "%Y-%m-%dT%H:%M:%S%.f" + ("%:z" if dtype.time_zone else "")
            t = df[name].drop_nulls()
            if not dtype.time_zone and t.len() and (t.dt.truncate("1d") == t).all():
                # pandas writes a date column as timestamps at 00:00: dates, not exact midnights
                fmt = "%Y-%m-%d"
                issue(name, "every value is at 00:00: read as dates (a date column written as "
                            "timestamps); give a time other than 00:00 in one row, or a zone, to mean midnight",
                      [], "warning")
            casts.append(pl.col(name).dt.to_string(fmt).alias(name))
        elif dtype.is_float():
            col = pl.col(name).fill_nan(None)  # NaN is Parquet's missing float
            v = df[name].fill_nan(None).drop_nulls()
            if name in text_cols and v.len() and (v == v.floor()).all() and (v.abs() < 2**53).all():
                col = col.cast(pl.Int64)  # an id 101.0 is "101", as in a CSV file
            casts.append(col.cast(pl.String).alias(name))
        elif isinstance(dtype, (pl.List, pl.Array)) and name.lower() not in spec_cols:
            # an extra column of lists is kept as its JSON text ("[1, 2]"), one cell per row
            v = pl.struct(pl.col(name).alias("v")).struct.json_encode().str.strip_prefix('{"v":')
            casts.append(pl.when(pl.col(name).is_not_null()).then(v.str.strip_suffix("}")).alias(name))
        else:
            try:
                df.select(pl.col(name).cast(pl.String))
            except Exception:  # nested (a list in a spec column), binary, object: not one value per cell
                kind = "a list" if isinstance(dtype, (pl.List, pl.Array)) else "a"
                issue(name, f"{kind} column ({dtype}) cannot be read: each cell must be one value "
                            "(a number, a text, a date)")
                ok = False
                continue
            casts.append(pl.col(name).cast(pl.String))
    if not ok:
        return None
    return Loaded(_clean(df.select(casts)), header, {})


def _clean(df: pl.DataFrame) -> pl.DataFrame:
    """Strip surrounding white space; an empty cell is missing."""
    return df.with_columns(pl.col(c).str.strip_chars().replace("", None) for c in df.columns)
