"""Where a derived value comes from: the ``"<file>:<row>"`` references every engine's ``evidence`` holds.

A canonical row carries ``src_file`` and ``src_row`` (1-based data row of the file it was read
from, see :mod:`cartlab.model`); a reference is ``"observations.csv:812"``. One definition, used by
every engine, so that a reference always means the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import polars as pl

#: dtype of an ``evidence`` column: e.g. ["observations.csv:812", "interventions.csv:3"]
EVIDENCE = pl.List(pl.String)

__all__ = ["EVIDENCE", "evidence_ref", "ref", "row_ref", "unique_refs"]


def evidence_ref(file_col: str = "src_file", row_col: str = "src_row") -> pl.Expr:
    """Expression giving ``"<file>:<row>"`` for a canonical row (null when provenance is missing)."""
    return pl.concat_str(pl.col(file_col), pl.lit(":"), pl.col(row_col).cast(pl.String))


def ref(file: Any, row: Any) -> str | None:
    """``"<file>:<row>"``, or None when either is missing."""
    if file is None or row is None:
        return None
    return f"{file}:{int(row)}"


def row_ref(row: Mapping[str, Any]) -> str | None:
    """The reference of a canonical row given as a mapping (``src_file``, ``src_row``)."""
    return ref(row.get("src_file"), row.get("src_row"))


def unique_refs(refs: Iterable[str | None]) -> list[str]:
    """The non-null references in first-seen order, each once (for ``evidence`` lists)."""
    return list(dict.fromkeys(r for r in refs if r is not None))
