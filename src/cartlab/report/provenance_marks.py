"""Provenance marks of the report's lines that are not one source row (subject facts, derived tables).

* A ``paper`` row of any table may name its reconstructed columns in the optional extra column
  ``reconstructed_columns`` ("weight_kg;height_cm;last_followup_day"; the study-format spec keeps an
  unknown column in the row's ``extra``): :func:`reconstructed_columns`. The subject page marks those
  lines reconstructed, the others stay "stated in the publication" (docs/report.md).
* A derived row (an episode, a worst CTCAE grade, a response assessment) names its source rows in the
  engines' ``evidence`` ("observations.csv:812"); when any of them is not measured (source
  reconstructed / synthetic / simulated, or a ``paper`` row with reconstructed columns) the row gets
  the class :data:`DERIVED_CLASS` and a short mark ("rec. 26 of 31 rows"): :func:`evidence_marks`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import polars as pl

from cartlab.model import NOT_MEASURED_SOURCES

# the counting lives in cartlab.provenance (the analysis's subject_summary uses it too, and engines never
# import report); re-exported here for the pages
from cartlab.provenance import (  # noqa: F401
    RECONSTRUCTED_COLUMNS,
    evidence_list,
    paper_reconstructed_by_subject,
    reconstructed_columns,
    source_counts,
)

#: the row class of a derived row with a not-measured source row (styled as a not-measured row)
DERIVED_CLASS = "derived-nm"
#: the short mark of each not-measured source, explained once in the page's legend
SHORT = {"reconstructed": "rec.", "synthetic": "syn.", "simulated": "sim."}


#: a row's source note saying its day is approximate ("day 60 is approximate": the seed's allo-HSCT)
APPROX_DAY = r"(?i)\bday\b[^;]*\bapproximate"


def approximate_day(row: Mapping[str, Any]) -> bool:
    """Whether a row's ``day`` is approximate, not stated: its ``source_note`` says so ("day 60 is
    approximate") or ``day`` is among its ``reconstructed_columns`` (review 39 B7; the Events table
    shows "≈ 60 (approximate)", the swimmer draws the marker open, review 41 F1)."""
    note = row.get("source_note")
    return bool(isinstance(note, str) and re.search(APPROX_DAY, note)) or "day" in reconstructed_columns(row)


def _kind(source: Any) -> str:
    s = str(source or "").strip().lower()
    return s if s == "paper" or s in NOT_MEASURED_SOURCES else "observed"


def source_kinds(tables: Iterable[pl.DataFrame]) -> dict[str, str]:
    """``"<file>:<row>"`` -> paper / reconstructed / synthetic / simulated / observed for every row of
    ``tables`` (one subject's: a few thousand rows at most). A ``paper`` row with reconstructed columns
    counts as reconstructed: part of what it gives was not stated."""
    out: dict[str, str] = {}
    for df in tables:
        if not df.height or not {"src_file", "src_row", "source"} <= set(df.columns):
            continue
        recon = (df["extra"].str.contains(RECONSTRUCTED_COLUMNS, literal=True).fill_null(False)
                 if "extra" in df.columns and df.schema["extra"] == pl.String else pl.Series([False] * df.height))
        refs = df.select(pl.concat_str(pl.col("src_file"), pl.lit(":"), pl.col("src_row").cast(pl.String)))
        for ref, src, extra_has, extra in zip(refs.to_series().to_list(), df["source"].to_list(), recon.to_list(),
                                              df["extra"].to_list() if "extra" in df.columns else [None] * df.height):
            if ref is None:
                continue
            kind = _kind(src)
            if kind == "paper" and extra_has and reconstructed_columns({"extra": extra}):
                kind = "reconstructed"
            out[ref] = kind
    return out


def evidence_mark(refs: Sequence[str], kinds: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(row class, mark) of a derived row from its evidence: ``("derived-nm", "rec. 26 of 31 rows")``
    when a source row is not measured; ``("paper", None)`` when every source row is stated in the
    publication; ``(None, None)`` otherwise (measured rows, or no evidence)."""
    got = [kinds.get(r) for r in refs]
    known = [k for k in got if k is not None]
    if not known:
        return None, None
    nm = [k for k in known if k in NOT_MEASURED_SOURCES]
    if nm:
        marks = "/".join(SHORT.get(k, k) for k in NOT_MEASURED_SOURCES if k in nm)
        return DERIVED_CLASS, f"{marks} {len(nm)} of {len(refs)} row{'' if len(refs) == 1 else 's'}"
    if all(k == "paper" for k in known):
        return "paper", None
    return None, None


def with_marks(df: pl.DataFrame, evidence_col: str, kinds: Mapping[str, str] | None) -> tuple[pl.DataFrame, list]:
    """``df`` with a ``not_measured`` column (the mark, or null) and the row classes, in row order
    (None where the table's own rule applies). Without ``kinds`` the frame is returned unchanged."""
    if kinds is None or evidence_col not in df.columns or not df.height:
        return df, [None] * df.height
    pairs = [evidence_mark(evidence_list(v), kinds) for v in df[evidence_col].to_list()]
    return (df.with_columns(pl.Series("not_measured", [m for _, m in pairs], dtype=pl.String)),
            [c for c, _ in pairs])


def apply_classes(table: dict, classes: Sequence[str | None]) -> dict:
    """Set the rows' classes of a :func:`~cartlab.report.cells._table` dict where ``classes`` gives one."""
    for row, cls in zip(table["rows"], classes):
        if cls:
            row["prov"] = cls
    return table


def refs_text(refs: Any, first: int = 5) -> str:
    """Source rows of a derived row in one cell: "31: observations.csv:147, 166, 189, 216, 241, … 26
    more" (a file named once for its consecutive rows); "—" when none."""
    refs = evidence_list(refs)
    if not refs:
        return "—"
    parts, last_file = [], None
    for r in refs[:first]:
        file, _, row = r.rpartition(":")
        parts.append(row if file == last_file else r)
        last_file = file
    more = f", … {len(refs) - first} more" if len(refs) > first else ""
    return f"{len(refs)}: {', '.join(parts)}{more}"
