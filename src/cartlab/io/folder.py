"""What is in a study folder before any table is parsed.

* :func:`describe_path` says what a path is when it is not a study folder (missing, an Excel
  workbook, a CSV file ...), so a message can name it instead of saying only "not a folder".
* :func:`find_tables` matches the five table names case-insensitively (``Observations.CSV`` is
  ``observations``) and lists every other file as *not read*, with a specific hint for
  spreadsheets and CDISC SDTM domains (a README, LICENSE or Markdown file silently: documentation).
* :func:`sniff_dialect` recognises semicolon- or tab-separated files and decimal commas, so that a
  European export gets one clear message per file instead of a cascade of row errors.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from cartlab.io.errors import Issue

TABLE_NAMES = ("subjects", "doses", "observations", "interventions", "events")
TABLE_FORMATS = ("csv", "parquet")

#: CSV dialects a study folder may be read with (``--csv-dialect``): separator and decimal mark
CSV_DIALECTS: dict[str, tuple[str, str]] = {
    "standard": (",", "."),
    "european": (";", ","),
    "semicolon": (";", "."),
    "tab": ("\t", "."),
}

def decimal_point_in(cell):
    """The cells (a polars string expression or series) that hold a decimal point: an error in a column
    read with decimal commas (:func:`decimal_comma_message`). Null cells are not."""
    return cell.str.contains(".", literal=True).fill_null(False)


def decimal_comma_message(value: object, dialect: str) -> str:
    """What a cell with a decimal point in a decimal-comma dialect is told (study reader and plain tables)."""
    return f"{value!r} has a decimal point, but the {dialect} dialect writes decimals with a comma"


def comma_to_point(cell):
    """A decimal-comma cell (polars string expression or series) as a decimal-point number's text."""
    return cell.str.replace(",", ".", literal=True)


SPREADSHEETS = (".xlsx", ".xlsm", ".xls", ".ods", ".numbers")
#: CDISC SDTM domain codes (SDTMIG 3.4) a trial export commonly holds
SDTM_DOMAINS = frozenset(
    "dm ex ec lb vs ae cm pr ce fa rs tr tu pc pp qs mb is ds dd mh sv se ta te ti ts tv co su ho cv re "
    "eg ie oe sc ml suppdm supplb suppae suppex suppcm supprs".split()
)
SDTM_FORMATS = (".xpt", ".sas7bdat", ".csv", ".parquet")
DOC_SUFFIXES = (".md", ".txt", ".rst", ".pdf", ".html", ".json", ".yaml", ".yml", ".docx")


def describe_path(path: Path) -> str:
    """What ``path`` is, for a message about something that should have been a study folder."""
    if not path.exists():
        return "no such file or folder"
    if path.is_dir():
        return "a folder"
    suffix = path.suffix.lower()
    if suffix in SPREADSHEETS:
        return (f"a spreadsheet ({suffix}), not a study folder: export each sheet to CSV "
                "(subjects.csv, observations.csv, ...) into one folder")
    if suffix in (".zip", ".gz", ".tgz", ".tar", ".7z"):
        return f"an archive ({suffix}), not a study folder: unpack it and pass the folder"
    if suffix in (".xpt", ".sas7bdat"):
        return (f"a SAS file ({suffix}), not a study folder: cartlab does not read CDISC SDTM yet; "
                "convert the domains to the study folder format")
    if suffix in (".csv", ".parquet"):
        return f"a single {suffix[1:]} file, not a study folder: pass the folder that holds subjects.csv"
    return "a file, not a study folder"


@dataclass
class FolderContents:
    """The table files of a study folder and everything else in it."""

    tables: dict[str, Path]
    not_read: list[Path]


def _not_read_issue(path: Path) -> Issue:
    name, suffix = path.name, path.suffix.lower()
    stem = path.name[: -len(path.suffix)].lower() if path.suffix else path.name.lower()
    if path.is_dir():
        msg = "not read: a subfolder (a study folder is flat: the tables sit in the folder itself)"
    elif suffix in SPREADSHEETS:
        msg = (f"not read: cartlab does not read spreadsheets ({suffix}); export each sheet to CSV named "
               f"after its table ({', '.join(t + '.csv' for t in TABLE_NAMES)})")
    elif stem in SDTM_DOMAINS and suffix in SDTM_FORMATS:
        msg = (f"not read: looks like the CDISC SDTM domain {stem.upper()}; cartlab does not read SDTM yet "
               "(an SDTM importer is planned); convert it to the study folder format")
    elif suffix in DOC_SUFFIXES:
        msg = "not read (documentation or metadata, not a study table)"
    else:
        msg = (f"not read: not a study table; the tables are {', '.join(TABLE_NAMES)} "
               f"(.csv or .parquet, any letter case)")
    return Issue(name, None, msg, severity="warning")


def find_tables(folder: Path) -> tuple[FolderContents, list[Issue]]:
    """The table files of ``folder`` (names matched case-insensitively) and an issue per other file.

    Two files for one table (``observations.csv`` and ``Observations.CSV``, or a CSV and a Parquet)
    are an error; every file that is not read is a warning that names it, except documentation
    (:func:`is_documentation`); hidden files are skipped.
    """
    issues: list[Issue] = []
    found: dict[str, list[Path]] = {}
    not_read: list[Path] = []
    for p in sorted(folder.iterdir(), key=lambda p: p.name):
        if p.name.startswith("."):
            continue
        stem, _, ext = p.name.rpartition(".")
        if p.is_file() and stem.lower() in TABLE_NAMES and ext.lower() in TABLE_FORMATS:
            found.setdefault(stem.lower(), []).append(p)
        else:
            not_read.append(p)
    tables: dict[str, Path] = {}
    for name, paths in found.items():
        if len(paths) > 1:
            issues.append(Issue(paths[0].name, None, f"{len(paths)} files for the {name} table "
                                f"({', '.join(p.name for p in paths)}): keep one"))
        else:
            tables[name] = paths[0]
    issues += [_not_read_issue(p) for p in not_read if not is_documentation(p)]
    return FolderContents(tables, not_read), issues


def is_documentation(path: Path) -> bool:
    """A README*, LICENSE* / LICENCE* or *.md file: the folder's own documentation (the shipped seed case
    has a README.md), not a misplaced table. cartlab convention (review 47 F6): not read and not an input
    warning (issues have no information level), so it is not counted on every command; other files that
    are not tables stay warnings."""
    name = path.name.lower()
    return path.is_file() and (name.startswith(("readme", "license", "licence")) or name.endswith(".md"))


def missing_subjects_issue(contents: FolderContents) -> Issue:
    """subjects.csv is missing: say so, with a hint when the folder holds spreadsheets or SDTM."""
    others = contents.not_read
    sheets = [p.name for p in others if p.suffix.lower() in SPREADSHEETS]
    sdtm = [p.name for p in others
            if p.suffix.lower() in SDTM_FORMATS and p.name.rsplit(".", 1)[0].lower() in SDTM_DOMAINS]
    msg = "subjects.csv is required and missing"
    if sheets:
        msg += (f"; the folder holds spreadsheets ({', '.join(sheets)}): export each sheet to CSV "
                "(subjects.csv, observations.csv, ...)")
    if sdtm:
        msg += (f"; the folder looks like CDISC SDTM ({', '.join(sdtm)}): cartlab does not read SDTM yet "
                "(an SDTM importer is planned); convert the domains to the study folder format")
    return Issue("subjects.csv", None, msg)


# --------------------------------------------------------------------------------------------
# CSV dialect

_DECIMAL_COMMA = re.compile(r"^[-+]?\d+,\d+$")
_DECIMAL_POINT = re.compile(r"^[-+]?\d+\.\d+$")
_SEP_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}


def sniff_dialect(path: Path, dialect: str = "standard", numeric: tuple[str, ...] | None = None,
                  n_lines: int = 50) -> Issue | None:
    """An error issue when ``path`` is not written in ``dialect`` (semicolons, tabs, decimal commas).

    The separator is the one the header line uses most. The decimal mark is seen in the first
    ``n_lines`` lines, in the cells of the ``numeric`` columns only (all columns when None): a
    quoted ``"1,000"`` in a free-text column says nothing about the dialect. A comma-separated file
    is never taken for decimal commas (a quoted ``"1,5"`` there cannot be the dialect's decimal mark;
    such a cell gets its row's own "must be a number" error). The message names the first row and
    column where a decimal mark was seen. ``None`` when the file looks right, is empty or cannot be
    told apart.
    """
    sep, dec = CSV_DIALECTS[dialect]
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            lines = [line for _, line in zip(range(n_lines), fh)]
    except (OSError, UnicodeDecodeError):
        return None  # the reader reports unreadable files itself
    if not lines:
        return None
    counts = {s: lines[0].count(s) for s in _SEP_NAMES}
    seen_sep = max(counts, key=lambda s: (counts[s], s == sep))
    if counts[seen_sep] == 0:
        seen_sep = sep  # a one-column header: nothing to tell
    records = list(csv.reader(lines, delimiter=seen_sep))
    shown = [h.strip() for h in records[0]] if records else []  # named as the header writes it
    names = [h.lower() for h in shown]
    wanted = [i for i, h in enumerate(names) if numeric is None or h in numeric]
    first: dict[str, tuple[int, str, str]] = {}  # decimal mark -> (row, column, cell) where first seen
    for row, rec in enumerate(records[1:], start=1):
        for i in wanted:
            c = rec[i].strip() if i < len(rec) else ""
            for mark, pattern in ((",", _DECIMAL_COMMA), (".", _DECIMAL_POINT)):
                if mark not in first and pattern.match(c):
                    first[mark] = (row, shown[i], c)
    if seen_sep == ",":
        seen_dec = "."
    else:
        commas, points = "," in first, "." in first
        seen_dec = "," if commas and not points else "." if points and not commas else dec
    if (seen_sep, seen_dec) == (sep, dec):
        return None
    what = f"looks {_SEP_NAMES[seen_sep]}-separated with decimal {'commas' if seen_dec == ',' else 'points'}"
    if seen_dec != dec and seen_dec in first:
        row, col, cell = first[seen_dec]
        what += f" (e.g. row {row}, column '{col}': {cell!r})"
    how = "re-export it as comma-separated with decimal points"
    suggestion = next((name for name, d in CSV_DIALECTS.items() if d == (seen_sep, seen_dec)), None)
    if suggestion == "standard":  # review 47 F8: the file is already what a re-export would give
        how = f"drop --csv-dialect {dialect} (or pass --csv-dialect standard)"
    elif suggestion:
        how += f", or pass --csv-dialect {suggestion}"
    return Issue(path.name, None, f"{what}, but is read as {dialect} ({_SEP_NAMES[sep]}-separated, decimal "
                 f"{'commas' if dec == ',' else 'points'}): {how}")


def check_plain_dialect(path: Path, dialect: str = "standard", numeric: tuple[str, ...] | None = None) -> None:
    """An :class:`~cartlab.errors.InputError` when ``dialect`` is not one of :data:`CSV_DIALECTS`, or the
    plain table ``path`` looks written in another dialect (:func:`sniff_dialect`, the decimal mark seen in
    the ``numeric`` columns, any letter case; None: all)."""
    from cartlab.errors import InputError

    if dialect not in CSV_DIALECTS:
        raise InputError(f"--csv-dialect {dialect!r}: choose one of {', '.join(CSV_DIALECTS)}")
    wanted = tuple(c.strip().lower() for c in numeric) if numeric is not None else None
    wrong = sniff_dialect(path, dialect, numeric=wanted)
    if wrong is not None:
        raise InputError(f"{path}: {wrong.message}", hint="Nothing was written.")


def read_plain_csv(path: Path, dialect: str = "standard", numeric: tuple[str, ...] | None = None,
                   columns: list[str] | None = None):
    """A plain table (``cartlab nca``, ``ctcae``, ``stein FILE``) read as text in ``dialect`` (``--csv-dialect``,
    :data:`CSV_DIALECTS`), as the study reader reads a folder's CSV (review 47 F5; cartlab convention).

    A file written in another dialect is one :class:`~cartlab.errors.InputError` naming it
    (:func:`sniff_dialect`: "looks semicolon-separated ... pass --csv-dialect european"). With decimal
    commas, the ``numeric`` columns (names as in the header, any letter case; None: none) have ``,`` read
    as the decimal mark; a cell there with a decimal point is an error naming its row and column, as the
    study reader says it. ``columns``: read only these. Every column stays text."""
    import polars as pl

    from cartlab.errors import InputError

    check_plain_dialect(path, dialect, numeric)
    wanted = tuple(c.strip().lower() for c in numeric) if numeric is not None else None
    sep, dec = CSV_DIALECTS[dialect]
    try:
        raw = pl.read_csv(path, separator=sep, infer_schema=False, columns=columns, encoding="utf8")
    except Exception as exc:  # noqa: BLE001 - any unreadable CSV is the user's input problem
        raise InputError(f"{path}: not a readable CSV table ({exc})") from None
    if dec == "," and wanted:
        cols = [c for c in raw.columns if c.strip().lower() in wanted]
        for c in cols:
            point = decimal_point_in(raw[c])
            if point.any():
                i = int(point.arg_true()[0])
                raise InputError(f"{path}: row {i + 1} (line {i + 2}), column {c!r}: "
                                 f"{decimal_comma_message(raw[c][i], dialect)}",
                                 hint="pass the --csv-dialect the file is written in (standard, semicolon: decimal points)")
        raw = raw.with_columns(comma_to_point(pl.col(c)) for c in cols)
    return raw
