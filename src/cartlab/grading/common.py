"""Conventions shared by the grading engines (CTCAE, CRS, ICANS, haematotoxicity).

* Criteria are data: YAML tables in ``cartlab/grading/criteria/`` with a ``version`` and a
  ``citation`` for every rule row; the rule language, its schema and its compiler are
  :mod:`cartlab.criteria` (:func:`load_criteria` gives a table as parsed YAML,
  :func:`cartlab.criteria.load_table` validated).
* Engines are pure functions ``derive_*(study_or_frames, options) -> polars.DataFrame``.
* Every derived grade is traceable: the output carries ``rule`` (the id of the criteria row that
  fired), ``reason`` (a human sentence) and ``evidence`` (a list of ``"<file>:<row>"`` references to
  the source rows that produced it, built with :func:`evidence_ref`).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from cartlab.criteria import load_raw as _load_raw
from cartlab.provenance import EVIDENCE, evidence_ref, unique_refs  # noqa: F401  (one definition, re-exported)


def load_criteria(name: str, package: str = "cartlab.grading") -> dict[str, Any]:
    """A criteria table shipped in ``<package>/criteria/<name>.yaml`` (parsed YAML), by default
    ``cartlab/grading/criteria``; ``cartlab.response`` keeps its tables the same way."""
    return _load_raw(name, package)


def expand_days(frame: pl.DataFrame, start: str = "start_day", end: str = "end_day") -> pl.DataFrame:
    """One row per calendar day an interval covers (start..end inclusive; no end = start only)."""
    lo = pl.col(start).floor().cast(pl.Int64)
    hi = pl.coalesce(pl.col(end), pl.col(start)).floor().cast(pl.Int64)
    return (
        frame.filter(pl.col(start).is_not_null())
        .with_columns(pl.int_ranges(lo, pl.max_horizontal(lo, hi) + 1).alias("d"))
        .explode("d")
    )
