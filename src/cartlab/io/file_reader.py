"""The study folder reader's per-file machinery: :class:`_FileReader` loads one CSV/Parquet file of
the study folder format v1 (``../shared/spec/study-format.md``), checks its header and columns,
parses days, datetimes, numbers and vocabularies (vectorised, every problem an
:class:`~cartlab.io.errors.Issue` naming file, rows and column) and resolves times against the
subjects' day-0 anchors. :mod:`cartlab.io.study_folder` holds the file-specific rules and
:func:`~cartlab.io.study_folder.read_study`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import polars as pl

from cartlab.io.clock import day_number, has_clock_time, iso_date, wall_clock
from cartlab.io.column_checks import did_you_mean, near_miss_columns
from cartlab.io.errors import Issue, spelled
from cartlab.io.folder import (
    CSV_DIALECTS,
    comma_to_point,
    decimal_comma_message,
    decimal_point_in,
)
from cartlab.io.schema import DAY_RANGE, FileSpec, vocab_key, vocab_key_expr
from cartlab.io.table_load import load_table
from cartlab.io.value_text import date_hint, number_hint

ROW = "__row"
#: prefix of the internal name of a user column named like an internal one ("__row"): no internal
#: column starts with it
RESERVED = "\x1fuser:"
#: converted values are rounded to this many significant digits, removing float artefacts of unit
#: conversion (100.4 F -> 38.0 C exactly) while staying far below any measurement's precision.
SIG_DIGITS = 12
MAX_DISTINCT_VALUE_ISSUES = 25
#: column kind -> (the parser its text must pass, what the message says it must be); the value is kept
#: as text. A date follows the day anchor's own rule (clock.wall_clock, ISO 8601 calendar date
#: YYYY-MM-DD): '2024-3-1' is refused here, never read as a date the anchor then cannot place.
TIME_TEXT = {
    "date": (iso_date, "date (YYYY-MM-DD)"),
    "datetime": (wall_clock, "date-time (YYYY-MM-DDThh:mm[:ss], an offset such as +01:00 allowed)"),
}

# --------------------------------------------------------------------------------------------
# small expression helpers


def _round_sig(expr: pl.Expr) -> pl.Expr:
    return expr.round_sig_figs(SIG_DIGITS)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# the reader


def _num(x: float) -> str:
    """A day as a short number: 3, 0.4167, -0.0833."""
    return f"{round(float(x), 4):g}"


def _disagree(day_col: str, dt_col: str, v) -> str:
    """The message for a row whose day and date-time disagree; ``v`` = (day, date-time as written, the
    date-time's day, day 0's date, the anchor as written)."""
    day, dt, derived, zero, anchor = v
    d = float(derived)
    return (f"{day_col} {_num(float(day))} disagrees with {dt_col} {dt}, which is day {_num(d)} (calendar day "
            f"{int(d // 1)}) from {anchor} (day 0 = {zero}): a whole-number {day_col} must be the date-time's "
            f"calendar day, a fractional one the same time to the minute (or on the same date, for a date "
            f"without a time); give one of them or make them agree")


class _FileReader:
    """Reads one file of a study folder, collecting issues instead of stopping at the first."""

    def __init__(self, spec: FileSpec, path: Path, issues: list[Issue], dialect: str = "standard"):
        self.separator, self.decimal = CSV_DIALECTS[dialect]
        self.dialect = dialect
        self.spec = spec
        self.path = path
        self.fname = path.name
        self.issues = issues
        self.df: pl.DataFrame | None = None
        self.sha256 = ""
        self.fmt = path.suffix.lstrip(".").lower()
        self.extra_cols: list[str] = []
        self.header: list[str] = []
        #: row -> line (table_load.Loaded.lines): None = row r on line r + 1, {} = no lines (Parquet)
        self.lines: dict[int, int] | None = {} if self.fmt == "parquet" else None
        #: a user column whose name starts with "__" -> the name it is read under (RESERVED + name)
        self.alias: dict[str, str] = {}

    # -- issue helpers
    def issue(self, column: str | None, message: str, rows: list[int] | None = None, severity="error"):
        self.issues.append(Issue(self.fname, column, message, list(rows or []), severity))

    def flag(
        self,
        mask: pl.Expr,
        column: str,
        message: Callable[[object], str] | str,
        by: str | pl.Expr | None = None,
        severity: str = "error",
    ) -> int:
        """Emit issues for rows where ``mask`` holds, one issue per distinct offending value."""
        assert self.df is not None
        key = by if by is not None else pl.col(column)
        if isinstance(key, str):
            key = pl.col(key)
        bad = self.df.lazy().filter(mask).select(pl.col(ROW), key.alias("__key")).collect()
        if bad.height == 0:
            return 0
        groups = bad.group_by("__key", maintain_order=True).agg(pl.col(ROW))
        for i, (val, rows) in enumerate(groups.iter_rows()):
            if i == MAX_DISTINCT_VALUE_ISSUES:
                rest = groups.slice(i)
                all_rows = sorted(r for rs in rest[ROW].to_list() for r in rs)
                self.issue(column, f"{rest.height} more distinct problem values", all_rows, severity)
                break
            msg = message(val) if callable(message) else message
            self.issue(column, msg, sorted(rows), severity)
        return bad.height

    # -- loading
    def load(self) -> bool:
        try:
            self.sha256 = sha256_file(self.path)
        except OSError as exc:
            self.issue(None, f"cannot read file: {exc}")
            return False
        loaded = load_table(self.path, self.fmt, self.separator, self.spec, self.issue)
        if loaded is None:
            return False
        df, self.header, self.lines = loaded.df, loaded.header, loaded.lines
        # a user's column named like an internal one (``__row``, ``__anchor``) is kept under a name no
        # internal column uses and written back as named (spec: "Unknown extra columns are kept")
        self.alias = {c: RESERVED + c for c in self.header if c.startswith("__")}
        df = df.rename(self.alias).with_columns(pl.int_range(1, df.height + 1, dtype=pl.Int64).alias(ROW))
        # blank lines (or separators only) are not records; the rows after them keep their numbers
        blank = pl.all_horizontal([pl.col(c).is_null() for c in df.columns if c != ROW])
        rows = df.filter(blank)[ROW].to_list()
        if rows:
            self.issue(None, "blank line(s) skipped: every cell is empty", rows, severity="warning")
            df = df.filter(~blank)
        df = self._drop_repeated_header(df)
        self.df = df
        return self._check_header()

    def _drop_repeated_header(self, df: pl.DataFrame) -> pl.DataFrame:
        """A row whose cells are the column names (two files joined, header and all) is one error,
        "repeats the header", not one per column; the row is then left out of the other checks."""
        cols = [c for c in self.header if c and self.alias.get(c, c) in df.columns]
        if not cols:
            return df
        same = pl.all_horizontal([pl.col(self.alias.get(c, c)).str.to_lowercase() == c.lower() for c in cols])
        rows = df.filter(same.fill_null(False))[ROW].to_list()
        if not rows:
            return df
        self.issue(None, "the row repeats the header line (two files joined together?): delete it", rows)
        return df.filter(~same.fill_null(False))

    def _check_header(self) -> bool:
        known = set(self.spec.column_names)
        lower = {c.lower(): c for c in self.header}
        ok = True
        for c in self.header:
            if c != c.lower() and c.lower() in known:
                self.issue(c, f"column names are lower case: write {c.lower()!r}, not {c!r}")
                ok = False
        for col in self.spec.columns:
            if col.required and col.name not in self.header and col.name not in lower:
                self.issue(col.name, f"required column {col.name!r} is missing")
                ok = False
        for day_col, dt_col, required in self.spec.times:
            if required and day_col not in self.header and dt_col not in self.header:
                self.issue(day_col, f"neither {day_col!r} nor {dt_col!r} column is present: one is required")
                ok = False
        self.extra_cols = [c for c in self.header if c not in known and c.lower() not in known]
        # review 39 B8: an extra column named like a format column the file lacks ("atribution")
        self.issues.extend(near_miss_columns(self.fname, self.header, self.extra_cols, self.spec.column_names))
        return ok

    # -- typed parsing (generic, from the FileSpec)
    def parse_columns(self) -> None:
        assert self.df is not None
        exprs = []
        for col in self.spec.columns:
            if col.name not in self.df.columns:
                dtype = pl.Float64 if col.kind == "num" else pl.String
                exprs.append(pl.lit(None, dtype=dtype).alias(col.name))
                continue
            raw = pl.col(col.name)
            if col.required:
                self.flag(raw.is_null(), col.name, f"required value {col.name!r} is empty")
            if col.kind == "num":
                point = pl.lit(False)
                if self.decimal == ",":
                    point = decimal_point_in(raw)  # one message per cell
                    self.flag(point, col.name, lambda v, c=col.name: f"{c} {decimal_comma_message(v, self.dialect)}")
                    raw = comma_to_point(raw)
                parsed = raw.cast(pl.Float64, strict=False)
                self.flag(
                    raw.is_not_null() & (parsed.is_null() | ~parsed.is_finite()) & ~point,
                    col.name,
                    lambda v, c=col.name: f"{c} must be a number, got {v!r}"
                    f"{number_hint(v, result=(self.spec.name, c) == ('observations', 'value'))}"
                    f"{date_hint(v, c, self.spec.times)}",
                )
                if col.range is not None:
                    lo, hi = col.range
                    self.flag(
                        parsed.is_finite() & ((parsed < lo) | (parsed > hi)),
                        col.name,
                        lambda v, c=col: f"{c.name} {v} is outside the plausible range "
                        f"{_fmt_range(c.range)}{_range_hint(c.name, v)}",
                    )
                exprs.append(parsed.alias(col.name))
            elif col.kind == "enum":
                # case, and spaces/hyphens for underscores, do not matter: "Nasal cannula" is nasal_cannula
                mapping = {**{vocab_key(v): v for v in col.values}, **{vocab_key(k): v for k, v in col.synonyms}}
                parsed = vocab_key_expr(raw).replace_strict(mapping, default=None)
                self.flag(
                    raw.is_not_null() & parsed.is_null(),
                    col.name,
                    lambda v, c=col: f"{v!r} is not a valid {c.name}{did_you_mean(v, c.values)}; allowed: "
                    f"{', '.join(c.values)}",
                )
                exprs.append(parsed.alias(col.name))
            elif col.kind in TIME_TEXT:
                # checked, kept as written (the day anchor and the times read the text)
                parse, what = TIME_TEXT[col.kind]
                self.flag(
                    raw.is_not_null() & parse(raw).is_null(),
                    col.name,
                    lambda v, c=col.name, w=what: f"{c} must be an ISO 8601 {w}, got {v!r}",
                )
                exprs.append(raw.alias(col.name))
            else:
                exprs.append(raw.alias(col.name))
        extra = (
            pl.struct([pl.col(self.alias.get(c, c)).alias(c) for c in self.extra_cols]).struct.json_encode().alias("extra")
            if self.extra_cols
            else pl.lit(None, dtype=pl.String).alias("extra")
        )
        self.df = self.df.select(pl.col(ROW), *exprs, extra)

    # -- time: day or datetime + the subject's infusion anchor
    def resolve_times(self, anchors: pl.DataFrame) -> None:
        assert self.df is not None
        if not self.spec.times:
            return
        df = self.df.join(anchors, on="subject_id", how="left").sort(ROW)
        self.df = df
        new_cols = []
        tmp = ("__t_derived", "__t_has_dt", "__t_date_only")
        for day_col, dt_col, required in self.spec.times:
            # the date-time parsed once per pair (the checks below read the columns; session 40: parsing
            # it in every check was most of the reading time of a large study)
            wall = wall_clock(pl.col(dt_col))
            self.df = self.df.with_columns(day_number(wall, pl.col("__anchor")).alias(tmp[0]),
                                           (pl.col(dt_col).is_not_null() & wall.is_not_null()).alias(tmp[1]),
                                           (~has_clock_time(pl.col(dt_col))).alias(tmp[2]))
            derived, has_dt = pl.col(tmp[0]), pl.col(tmp[1])
            if required:
                # a day or date-time that is given but unreadable has its own error already
                unreadable = [n for i in self.issues if i.file == self.fname and i.column in (day_col, dt_col)
                              for n in i.rows]
                self.flag(
                    pl.col(day_col).is_null() & pl.col(dt_col).is_null() & ~pl.col(ROW).is_in(unreadable),
                    day_col,
                    f"neither {day_col!r} nor {dt_col!r} is given",
                    by=pl.lit(None),
                )
            self.flag(  # a subject not in subjects has its own error ("unknown subject") already
                pl.col(day_col).is_null() & has_dt & pl.col("__anchor").is_null()
                & ~pl.col("__anchor_given").fill_null(False) & pl.col("__known").fill_null(False),
                dt_col,
                lambda v: f"{dt_col} is given but subject {v!r} has no infusion_date or "
                "infusion_datetime in subjects to anchor it",
                by="subject_id",
            )
            # defensive (review 37 A1): a readable date-time of a subject whose infusion date is given
            # but gave no day 0 is never left without a day silently; when subjects already has an
            # error on that date, this one is not repeated
            anchor_error = any(i.file.startswith("subjects.") and i.severity == "error"
                               and i.column in ("infusion_date", "infusion_datetime") for i in self.issues)
            if not anchor_error:
                self.flag(
                    pl.col(day_col).is_null() & has_dt & pl.col("__anchor").is_null()
                    & pl.col("__anchor_given").fill_null(False),
                    dt_col,
                    lambda v: f"subject {v[0]!r}: the {dt_col} cannot be placed on the day axis: its "
                    f"{v[1]} gives no day 0 (write it as YYYY-MM-DD or YYYY-MM-DDThh:mm)",
                    by=pl.concat_list(pl.col("subject_id"), pl.col("__anchor_from")),
                )
            # both given: a whole-number day names the calendar day, and a date-time on that day gives
            # its time (day 14 with 2024-03-15T12:00 after a 1 March infusion is day 14.5); a date
            # without a time names the calendar day of a fractional day, which gives the time (day
            # 14.5 with 2024-03-15 is day 14.5; session 34); otherwise they must agree to the minute
            # (see docs "Reading a study folder")
            both = pl.col(day_col).is_not_null() & has_dt & pl.col("__anchor").is_not_null()
            same_day = (pl.col(day_col) % 1 == 0) & (derived.floor() == pl.col(day_col))
            date_only = pl.col(tmp[2])
            same_date = date_only & (pl.col(day_col).floor() == derived)
            agree = same_day | same_date | ((pl.col(day_col) - derived).abs() <= 1.0 / 1440.0)
            self.flag(
                both & ~agree,
                day_col,
                lambda v, d=day_col, t=dt_col: _disagree(d, t, v),
                by=pl.concat_list(pl.col(day_col).cast(pl.String), pl.col(dt_col), derived.cast(pl.String),
                                  pl.col("__anchor").dt.date().cast(pl.String), pl.col("__anchor_from")),
            )
            # a day from a date-time (and the infusion date) that cannot be: a wrong infusion_date
            # (2099 for 2024) or date-time; a given day has its range check already
            self.flag(pl.col(day_col).is_null() & has_dt & pl.col("__anchor").is_not_null()
                      & ((derived < DAY_RANGE[0]) | (derived > DAY_RANGE[1])), dt_col,
                      lambda v: f"subject {v!r}: the {dt_col} is more than 100 years from the subject's "
                      "infusion date: check the date-time or subjects' infusion_date/infusion_datetime",
                      by="subject_id")
            day = (pl.when(both & same_day).then(derived)
                   .when(pl.col(day_col).is_not_null()).then(pl.col(day_col)).otherwise(derived))
            born = -(pl.col("__age") + 1) * 365.25  # the earliest day of birth an age in completed years allows
            before_birth = pl.col("__age").is_not_null() & day.is_not_null() & (day < born)
            for col, given in ((day_col, pl.col(day_col).is_not_null()), (dt_col, pl.col(day_col).is_null())):
                self.flag(before_birth & given, col,
                          lambda v, c=col: f"subject {v!r}: the {c} falls before the subject's birth (day "
                          "< -(age_years + 1) x 365.25): check the day, the date-time or subjects' "
                          "infusion_date and age_years", by="subject_id")
            new_cols.append(f"__t_day_{day_col}")  # kept aside: a later pair reads the days as given
            self.df = self.df.with_columns(day.alias(new_cols[-1]))
        self.df = (self.df.with_columns(pl.col(c).alias(c.removeprefix("__t_day_")) for c in new_cols)
                   .drop("__anchor", "__anchor_given", "__anchor_from", "__age", "__known", *tmp, *new_cols))

    def check_subjects_known(self, known: pl.Series) -> None:
        """Every subject_id is in subjects, as written. An id equal to a subjects' id only after
        Unicode NFC normalisation (an NFD 'é' from a macOS export) is an error naming both spellings:
        ids are written back as given, so cartlab does not normalise them (review 37 B3)."""
        assert self.df is not None
        nfc = {k: v for v, k in zip(known.to_list(), known.str.normalize("NFC").to_list())}
        sid = pl.col("subject_id")
        unknown = sid.is_not_null() & ~sid.is_in(known.implode())
        twin = sid.str.normalize("NFC").replace_strict(nfc, default=None, return_dtype=pl.String)
        self.flag(unknown & twin.is_not_null(), "subject_id",
                  lambda v: f"subject {spelled(v[0])} is not in subjects as written: it differs from subjects' "
                  f"{spelled(v[1])} only in its Unicode normalisation (the same letters written with other "
                  "code points, e.g. e + combining accent for é): write it as in subjects",
                  by=pl.concat_list(sid, twin))
        self.flag(unknown & twin.is_null(), "subject_id", lambda v: f"unknown subject {v!r}: not in subjects")

    def provenance(self) -> list[pl.Expr]:
        return [
            pl.lit(self.fname).alias("src_file"),
            pl.lit(self.sha256).alias("src_sha256"),
            pl.col(ROW).alias("src_row"),
        ]


def _range_hint(name: str, v: object) -> str:
    """How to write a value outside its column's range: FiO2 is a fraction (review 45 folder F5)."""
    try:
        x = float(str(v).replace(",", "."))
    except ValueError:
        return ""
    if name == "fio2" and 1 < x <= 100:
        return f" (FiO2 is a fraction: {x:g} % is {x / 100:g})"
    return ""


def _fmt_range(r: tuple[float, float]) -> str:
    lo, hi = r
    if hi == float("inf"):
        return f">= {lo:g}"
    return f"[{lo:g}, {hi:g}]"
