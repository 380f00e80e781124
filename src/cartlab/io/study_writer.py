"""Write a :class:`~cartlab.model.Study` as a study folder (format v1): values and units as given
(``orig_*``), so reading the folder back gives the same canonical study; the folder is written whole."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from cartlab.io.folder import TABLE_NAMES
from cartlab.io.schema import FILES
from cartlab.model import Study

__all__ = ["is_study_file", "write_study", "write_study_tables"]

_WRITE = {
    "subjects": {}, "interventions": {}, "events": {},
    "doses": {"dose": "orig_dose", "unit": "orig_unit"},
    "observations": {"value": "orig_value", "unit": "orig_unit", "lln": "orig_lln", "uln": "orig_uln",
                     "lloq": "orig_lloq"},
}


def _to_format(df: pl.DataFrame, name: str) -> pl.DataFrame:
    spec = FILES[name]
    out = df.select(pl.col(_WRITE[name].get(c.name, c.name)).alias(c.name) for c in spec.columns)
    # an empty table keeps its required day columns too: a header-only file must still be valid
    days = {d for d, _dt, req in spec.times if req} if out.height == 0 else set()
    keep = [c.name for c in spec.columns if c.required or c.name in days or out[c.name].null_count() < out.height]
    out = out.select(keep)
    extra = df["extra"].drop_nulls()
    if extra.len():
        decoded = [json.loads(x) if x is not None else {} for x in df["extra"].to_list()]
        keys: list[str] = []
        for d in decoded:
            for k in d:
                if k not in keys:
                    keys.append(k)
        out = out.with_columns(
            pl.Series(k, [d.get(k) for d in decoded], dtype=pl.String) for k in keys
        )
    return out


def write_study(study: Study, folder: str | Path, fmt: str = "csv", *, force: bool = False) -> Path:
    """Write ``study`` as a study folder (``fmt`` = ``csv`` or ``parquet``); returns the folder.

    Values and units are written as given (``orig_*``), so reading the folder back gives the same
    canonical study. Empty optional columns are left out; unknown extra columns come back. The folder
    is written whole (:func:`cartlab.io.atomic.export_folder`): missing, empty or an earlier export
    (else an InputError unless ``force``); an earlier export is replaced as a whole; on an error
    nothing in it changes."""
    from cartlab.io.atomic import export_folder

    with export_folder(folder, "study folder", owned=is_study_file, force=force) as target:
        write_study_tables(study, target.staging, fmt)
        target.meta["study_id"] = study.study_id
    return Path(folder)


def is_study_file(name: str) -> bool:
    """A file an export of a study folder owns: a study table (any case, csv or parquet)."""
    stem, _, ext = name.lower().rpartition(".")
    return stem in TABLE_NAMES and ext in ("csv", "parquet")


def write_study_tables(study: Study, folder: Path, fmt: str = "csv") -> None:
    """The study's tables written into ``folder`` as they are (``write_study`` is the whole-folder write)."""
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', not {fmt!r}")
    # a table given empty (a header only: "none happened") stays given; one never given stays absent
    # (Study.absent: read as unknown, not as none); a study built in Python has every table given
    given = set()
    if study.sources is not None and "file" in study.sources.columns:
        given = {Path(str(f)).name.lower().rpartition(".")[0] for f in study.sources["file"].drop_nulls()}
    absent = getattr(study, "absent", frozenset())
    for name, df in study.tables().items():
        if name == "subjects" or df.height or name in given or name not in absent:
            out = _to_format(df, name)
            out.write_csv(folder / f"{name}.csv") if fmt == "csv" else out.write_parquet(folder / f"{name}.parquet")
