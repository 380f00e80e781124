"""Build canonical frames for the protocol tests: rows numbered like a source file (src_row 1..n)."""

from __future__ import annotations

import polars as pl

from cartlab.model import TABLES, conform, empty_frame


def frame(table: str, rows, **defaults) -> pl.DataFrame:
    """Canonical ``table`` rows from dicts: ``defaults`` first, then each row; provenance
    ``<table>.csv`` row i+1 unless the row gives its own. Float columns stay float."""
    out = [{"src_file": f"{table}.csv", "src_row": i + 1, **defaults, **r} for i, r in enumerate(rows)]
    if not out:
        return empty_frame(table)
    floats = {k: pl.Float64 for k, t in TABLES[table].items() if t == pl.Float64 and any(k in r for r in out)}
    return conform(pl.DataFrame(out, schema_overrides=floats, infer_schema_length=None), table)
