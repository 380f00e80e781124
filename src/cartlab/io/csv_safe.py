"""Spreadsheet-safe CSV for the files people open in Excel or LibreOffice: the dashboard's downloads
and the report's ``tables/subject_summary.csv``.

A spreadsheet evaluates a cell whose text starts with ``=``, ``+``, ``-`` or ``@`` as a formula
(``=HYPERLINK(...)``, ``=WEBSERVICE(...)``, DDE), and treats a leading tab or carriage return the same
way; RFC 4180 quoting does not stop it. The guard ``"quote"`` (the default) prefixes such a **text**
cell with a single quote, which the spreadsheet shows as text -- OWASP "CSV Injection"
(https://owasp.org/www-community/attacks/CSV_Injection) and OWASP ASVS 5.0 requirement 1.2.10 (which
also names a leading NUL, guarded too). Numbers are left alone: a numeric column keeps ``-2.5``, and a
text cell that is a plain number (``"-2.5"``, ``"+1e3"``) is not a formula and stays as it is. Column
names are guarded the same way (a study may carry extra columns). ``"off"`` writes the cells unchanged.

Not applied to the tables ``cartlab analyze`` writes: those are machine data that cartlab and users'
code read back, where a leading quote would change the value.
"""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl

__all__ = ["CSV_FORMULA_GUARDS", "DEFAULT_CSV_FORMULA_GUARD", "FORMULA_TRIGGERS", "check_guard", "guard_cell",
           "guard_formulas", "safe_csv_text", "write_safe_csv"]

#: the first characters that make a spreadsheet evaluate a cell (OWASP CSV Injection; ASVS 1.2.10)
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\0")
#: ``quote``: prefix ``'`` to a text cell starting with a trigger; ``off``: write cells unchanged
CSV_FORMULA_GUARDS = ("quote", "off")
DEFAULT_CSV_FORMULA_GUARD = "quote"
#: a plain number written as text (sign, digits, decimal point, exponent): not a formula
_NUMBER = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_TRIGGER = r"^[=+\-@\t\r\x00]"


def check_guard(guard: str) -> str:
    """``guard`` if it is one of :data:`CSV_FORMULA_GUARDS`, else an :class:`~cartlab.errors.InputError`
    (a ValueError) naming the choices."""
    if guard not in CSV_FORMULA_GUARDS:
        from cartlab.errors import InputError

        raise InputError(f"csv formula guard {guard!r}: choose one of {', '.join(CSV_FORMULA_GUARDS)}",
                         hint="quote (the default) neutralises spreadsheet formulas; off writes cells unchanged")
    return guard


def guard_cell(text: str | None, guard: str = DEFAULT_CSV_FORMULA_GUARD) -> str | None:
    """One text value as :func:`guard_formulas` writes it (for column names and single values)."""
    import re

    if check_guard(guard) == "off" or not text or re.match(_NUMBER, text) or text[0] not in FORMULA_TRIGGERS:
        return text
    return "'" + text


def guard_formulas(frame: pl.DataFrame, guard: str = DEFAULT_CSV_FORMULA_GUARD) -> pl.DataFrame:
    """``frame`` with every text cell (String, Categorical, Enum columns) that starts with a formula
    trigger prefixed by ``'``, plain numbers written as text excepted; column names likewise.
    Numeric, boolean, date and list columns are unchanged (write lists with
    :func:`cartlab.grading.adam.to_csv_frame` first). ``guard="off"``: ``frame`` unchanged."""
    if check_guard(guard) == "off":
        return frame
    text = [c for c, t in frame.schema.items() if t == pl.String or isinstance(t, (pl.Categorical, pl.Enum))]

    def guarded(c: str) -> pl.Expr:
        s = pl.col(c).cast(pl.String)
        risky = s.str.contains(_TRIGGER) & ~s.str.contains(_NUMBER)
        return pl.when(risky).then(pl.lit("'") + s).otherwise(s).alias(c)

    out = frame.with_columns(guarded(c) for c in text) if text else frame
    names = {c: guard_cell(c, guard) for c in out.columns}
    return out.rename({c: n for c, n in names.items() if n != c}) if any(n != c for c, n in names.items()) else out


def safe_csv_text(frame: pl.DataFrame, guard: str = DEFAULT_CSV_FORMULA_GUARD) -> str:
    """``frame`` as CSV text for a download: lists joined with ``'; '`` (as ``cartlab analyze`` writes
    them), then :func:`guard_formulas`."""
    from cartlab.grading.adam import to_csv_frame

    buf = io.StringIO()
    guard_formulas(to_csv_frame(frame), guard).write_csv(buf)
    return buf.getvalue()


def write_safe_csv(frame: pl.DataFrame, path: str | Path, guard: str = DEFAULT_CSV_FORMULA_GUARD) -> Path:
    """Write ``frame`` to ``path`` as :func:`safe_csv_text` does; returns ``path``."""
    from cartlab.grading.adam import to_csv_frame

    path = Path(path)
    guard_formulas(to_csv_frame(frame), guard).write_csv(path)
    return path
