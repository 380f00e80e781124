"""Conventions shared by the grading engines (CTCAE, CRS, ICANS, haematotoxicity).

* Criteria are data: YAML tables in ``cartlab/grading/criteria/`` with a ``version`` and a
  ``citation`` for every rule row; :func:`load_criteria` reads them.
* Engines are pure functions ``derive_*(study_or_frames, options) -> polars.DataFrame``.
* Every derived grade is traceable: the output carries ``rule`` (the id of the criteria row that
  fired), ``reason`` (a human sentence) and ``evidence`` (a list of ``"<file>:<row>"`` references to
  the source rows that produced it, built with :func:`evidence_ref`).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

import polars as pl
import yaml

#: dtype of the ``evidence`` column: e.g. ["observations.csv:812", "interventions.csv:3"]
EVIDENCE = pl.List(pl.String)


def evidence_ref(file_col: str = "src_file", row_col: str = "src_row") -> pl.Expr:
    """Expression giving ``"<file>:<row>"`` for a canonical row (null when provenance is missing)."""
    return pl.concat_str(pl.col(file_col), pl.lit(":"), pl.col(row_col).cast(pl.String))


@lru_cache(maxsize=None)
def load_criteria(name: str) -> dict[str, Any]:
    """A criteria table shipped in ``cartlab/grading/criteria/<name>.yaml`` (parsed YAML)."""
    path = resources.files("cartlab.grading").joinpath("criteria", f"{name}.yaml")
    if not path.is_file():
        raise FileNotFoundError(f"no criteria table {name!r} (looked for {path})")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key in ("version", "citation"):
        if key not in data:
            raise ValueError(f"criteria table {name!r} lacks {key!r}")
    return data
