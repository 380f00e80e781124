"""Validation issues: every problem names its file, its rows and its column."""

from __future__ import annotations

from dataclasses import dataclass, field

from cartlab.errors import InputError


def spelled(text: str) -> str:
    """A text in quotes and, when it has non-ASCII characters, its code points:
    'José-1' (code points: Jos<U+00E9>-1)."""
    esc = "".join(c if ord(c) < 128 else f"<U+{ord(c):04X}>" for c in text)
    return f"'{text}'" + (f" (code points: {esc})" if esc != text else "")


@dataclass
class Issue:
    """One problem found in a study folder.

    ``rows`` are 1-based data-row numbers (the header is line 1, so row ``r`` is on line ``r + 1``
    of a CSV file); an empty list means the problem is with the file or its header. ``lines`` says
    where rows sit when that rule does not hold: ``{row: line}`` (a CSV file with a quoted cell that
    spans lines; a row not in it is named without a line) or ``{}`` (Parquet: no lines at all).
    """

    file: str
    column: str | None
    message: str
    rows: list[int] = field(default_factory=list)
    severity: str = "error"  # "error" | "warning"
    lines: dict[int, int] | None = field(default=None, repr=False, compare=False)

    def where(self, max_rows: int = 8) -> str:
        if not self.rows:
            loc = ("header (line 1)" if self.lines != {} else "header") if self.column else "file"
        elif len(self.rows) == 1:
            r = self.rows[0]
            line = r + 1 if self.lines is None else self.lines.get(r)
            loc = f"row {r}" + (f" (line {line})" if line is not None else "")
        else:
            # a map of lines (a quoted cell spanning lines moved them): each row with its line (review 39 B4)
            lines = self.lines or {}
            shown = ", ".join(f"{r} (line {lines[r]})" if r in lines else str(r) for r in self.rows[:max_rows])
            more = len(self.rows) - max_rows
            loc = f"rows {shown}" + (f" and {more:,} more ({len(self.rows):,} rows)" if more > 0 else "")
        col = f", column '{self.column}'" if self.column else ""
        return f"{self.file}, {loc}{col}"

    def line_numbers(self) -> list[int | None]:
        """The line of each row, as :meth:`where` names them: row + 1 (a CSV file without a quoted cell
        spanning lines), the map's line, or None (Parquet has no lines; a row not in the map)."""
        if self.lines is None:
            return [r + 1 for r in self.rows]
        return [self.lines.get(r) for r in self.rows]

    def __str__(self) -> str:
        return f"{self.where()}: {self.message}"

    def to_dict(self) -> dict:
        return {
            "severity": self.severity,
            "file": self.file,
            "rows": self.rows,
            "lines": self.line_numbers(),
            "column": self.column,
            "message": self.message,
        }


class StudyValidationError(InputError):
    """A study folder breaks the format; ``issues`` lists every problem found (all files, all rows)."""

    def __init__(self, issues: list[Issue], folder: str = ""):
        self.issues = [i for i in issues if i.severity == "error"]
        self.warnings = [i for i in issues if i.severity != "error"]
        self.folder = folder
        n = len(self.issues)
        head = f"{folder}: " if folder else ""
        lines = [f"{head}{n} problem{'s' if n != 1 else ''} found"]
        lines += [f"  - {i}" for i in self.issues[:50]]
        if n > 50:
            lines.append(f"  ... and {n - 50} more")
        super().__init__("\n".join(lines))
