"""Finding and loading SDTM domain files: SAS XPT v5 (a vectorised reader, see :mod:`.xport`; pyreadstat
for what it does not read) / SAS7BDAT (pyreadstat) or CSV (polars).

A domain is a file ``<domain>.<ext>`` (case-insensitive: ``lb.xpt``, ``LB.csv``); ``supp<domain>``
files hold its supplemental qualifiers. Every value is loaded as text (numbers are parsed where a
variable is numeric, naming the record of a bad value), white space stripped, empty = missing; each
record gets its 1-based number ``__row``. A file that cannot be read is one
:class:`~cartlab.errors.InputError` naming the file (and the record when one is at fault).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from cartlab.errors import InputError
from cartlab.io.sdtm.xport import read_xport_simple
from cartlab.io.study_folder import sha256_file

ROW = "__row"
FORMATS = {".xpt": "sdtm-xpt", ".sas7bdat": "sdtm-sas7bdat", ".csv": "sdtm-csv"}
_ORDER = (".xpt", ".sas7bdat", ".csv")


def find_domains(folder: Path) -> dict[str, Path]:
    """Domain name (upper case: ``LB``, ``SUPPLB``) -> file; one format per domain (an error when a
    domain comes in two formats, so that no row is read twice)."""
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is not a folder"
        raise InputError(f"{folder}: {what}; an SDTM folder holds domain files such as dm.xpt, lb.csv")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        ext = p.suffix.lower()
        if not p.is_file() or ext not in FORMATS or p.name.startswith("."):
            continue
        dom = p.stem.upper()
        if dom in found:
            raise InputError(
                f"{folder}: domain {dom} is given twice ({found[dom].name} and {p.name}); keep one file per domain"
            )
        found[dom] = p
    return found


@dataclass
class DomainFile:
    """One loaded domain file: ``df`` holds text columns (upper-case names) plus ``__row``."""

    domain: str
    path: Path
    fmt: str
    sha256: str
    df: pl.DataFrame

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def n_rows(self) -> int:
        return self.df.height

    def has(self, var: str) -> bool:
        return var in self.df.columns

    def col(self, var: str) -> pl.Expr:
        """The variable as text, or a null column when the file does not have it."""
        if var in self.df.columns:
            return pl.col(var)
        return pl.lit(None, dtype=pl.String)

    def fail(self, mask: pl.Expr, column: str, what: str) -> None:
        """Raise one InputError naming the first record where ``mask`` holds (and how many more)."""
        bad = self.df.lazy().filter(mask).select(ROW, self.col(column).alias("__v")).collect()
        if bad.height == 0:
            return
        row, val = bad.row(0)
        more = f" (and {bad.height - 1:,} more records)" if bad.height > 1 else ""
        got = "" if val is None or (isinstance(val, str) and not val.strip()) else f", got {val!r}"  # review38 C1
        raise InputError(f"{self.name}, record {row}, variable {column}: {what}{got}{more}")

    def require(self, *variables: str) -> None:
        for v in variables:
            if v not in self.df.columns:
                names = [c for c in self.df.columns if not c.startswith('__')]
                # review38 C4: one header column holding the separators of another dialect
                hint = next((f"; the header is one column containing '{sep}': the file is not comma-separated "
                             "(write it with ',' separators)" for sep in (";", "\t", "|")
                             if len(names) == 1 and sep in names[0]), "")
                raise InputError(
                    f"{self.name}, header: required variable {v} is missing "
                    f"(variables: {', '.join(names)}){hint}"
                )

    def text(self, var: str) -> pl.Expr:
        """The variable as text (a numeric XPT variable: integral values without ".0")."""
        if var not in self.df.columns:
            return pl.lit(None, dtype=pl.String)
        if self.df.schema[var] == pl.Float64:
            e = pl.col(var)
            return pl.when(e == e.round(0)).then(e.cast(pl.Int64, strict=False).cast(pl.String)).otherwise(
                e.cast(pl.String))
        return pl.col(var).cast(pl.String)

    def number(self, var: str) -> pl.Expr:
        """A numeric variable: text parsed as a number (checked by :meth:`check_numbers`)."""
        return self.col(var).cast(pl.Float64, strict=False)

    def check_numbers(self, *variables: str) -> None:
        for v in variables:
            if v in self.df.columns and self.df.schema[v] == pl.String:
                parsed = pl.col(v).cast(pl.Float64, strict=False)
                self.fail(pl.col(v).is_not_null() & (parsed.is_null() | ~parsed.is_finite()), v, "not a number")


#: ``__raw_QVAL``: a SUPP-- file's QVAL as given (not stripped), so that a value split over QNAM,
#: QNAM1 ... is joined with the white space at its splits. In a SAS file trailing blanks are the
#: padding of a fixed-width variable (pyreadstat drops them), so there only leading ones are kept.
RAW_QVAL = "__raw_QVAL"


def _text_frame(df: pl.DataFrame, supp: bool = False, sas: bool = False) -> pl.DataFrame:
    """Text columns stripped (empty = missing), numeric ones Float64 (NaN = missing), dates as ISO
    text; names upper case; plus the record number (and, for a SUPP-- file, QVAL as given)."""
    cols = []
    for name, dtype in df.schema.items():
        if supp and str(name).upper() == "QVAL" and dtype == pl.String:
            raw = pl.col(name).str.strip_chars_end(" ") if sas else pl.col(name)
            cols.append(raw.alias(RAW_QVAL))
        e = pl.col(name)
        if dtype == pl.String:
            e = e.str.strip_chars().replace("", None)
        elif dtype.is_numeric():
            e = e.cast(pl.Float64)
            e = pl.when(e.is_nan()).then(None).otherwise(e)
        elif dtype.is_temporal():
            e = e.dt.to_string("%Y-%m-%dT%H:%M:%S")
        elif dtype == pl.Null:
            e = e.cast(pl.String)
        else:
            e = e.cast(pl.String).str.strip_chars().replace("", None)
        cols.append(e.alias(str(name).upper()))
    out = df.select(cols) if cols else pl.DataFrame()
    return out.with_columns(pl.int_range(1, out.height + 1, dtype=pl.Int64).alias(ROW))


def _read_sas(path: Path, kind: str, fast: bool = True) -> pl.DataFrame:
    import pyreadstat

    reader = pyreadstat.read_xport if kind == "sdtm-xpt" else pyreadstat.read_sas7bdat
    size = path.stat().st_size
    if kind == "sdtm-xpt" and size % 80 != 0:
        raise InputError(
            f"{path.name}, record after byte {size - size % 80}: truncated SAS transport file "
            f"({size} bytes is not a whole number of 80-byte records)"
        )
    if fast and kind == "sdtm-xpt":
        try:
            df = read_xport_simple(path)
        except OSError as exc:
            raise InputError(f"{path.name}: cannot read the file ({exc.strerror})") from exc
        if df is not None:
            return df
    try:
        pdf, _meta = reader(str(path))
    except Exception as exc:  # pyreadstat raises ReadstatError / PyreadstatError / OSError
        raise InputError(f"{path.name}, header: not a readable {kind[5:].upper()} file ({exc})") from exc
    try:
        df = pl.from_pandas(pdf)
    except Exception as exc:  # mixed object columns
        raise InputError(f"{path.name}: unreadable values ({exc})") from exc
    if df.width == 0:
        raise InputError(f"{path.name}, header: the file has no variables")
    return df


def _read_csv(path: Path) -> pl.DataFrame:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), None)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path.name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if not header or not any(h.strip() for h in header):
        raise InputError(f"{path.name}, header: empty file (the header line is missing)")
    names = [h.strip().upper() for h in header]
    if "" in names or len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1 or n == ""})
        raise InputError(f"{path.name}, header: empty or duplicate variable names {dup}")
    try:
        return pl.read_csv(path, infer_schema=False, new_columns=names, encoding="utf8")
    except Exception as exc:  # ragged records, bad quoting: find the record with the csv module
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            next(reader, None)
            try:
                for i, rec in enumerate(reader, start=1):
                    if rec and len(rec) != len(names):
                        raise InputError(
                            f"{path.name}, record {i}: {len(rec)} fields where the header has {len(names)}"
                        ) from exc
            except csv.Error as cexc:
                raise InputError(f"{path.name}, record {reader.line_num}: malformed CSV ({cexc})") from exc
        raise InputError(f"{path.name}: malformed CSV ({exc})") from exc


def load_domain(domain: str, path: Path, *, fast_xpt: bool = True) -> DomainFile:
    """Load one domain file as text (see the module docstring). A plain XPT v5 file is read by the
    vectorised :func:`~cartlab.io.sdtm.xport.read_xport_simple` (the same frame as pyreadstat's, about
    ten times faster); ``fast_xpt=False``, or any other SAS file, goes through pyreadstat."""
    fmt = FORMATS[path.suffix.lower()]
    try:
        sha = sha256_file(path)
    except OSError as exc:
        raise InputError(f"{path.name}: cannot read the file ({exc.strerror})") from exc
    raw = _read_csv(path) if fmt == "sdtm-csv" else _read_sas(path, fmt, fast_xpt)
    return DomainFile(domain, path, fmt, sha, _text_frame(raw, supp=domain.startswith("SUPP"), sas=fmt != "sdtm-csv"))
