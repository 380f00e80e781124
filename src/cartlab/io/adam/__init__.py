"""ADaM export of one analysis: SAS transport v5, CSV, Parquet, a define-like table and a
Define-XML 2.0 skeleton (docs/interop/adam.md).

>>> from cartlab.datasets import seed_case                       # doctest: +SKIP
>>> from cartlab.analyze import Analysis                          # doctest: +SKIP
>>> export_adam(Analysis(seed_case()), "adam_out")                # doctest: +SKIP

Datasets: ADSL, ADLB, ADVS, ADAE (CRS/ICANS/ICAHT episodes), ADRS, ADTTE, ADPC, ADPP, built from the
analysis' tables (the engines are not re-run). Variable metadata comes from ``adam_spec.yaml`` (or a
user's copy, ``spec=PATH``). Everything is written through :func:`cartlab.io.atomic.atomic_folder`:
on an error nothing is left in ``out_dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cartlab.errors import InputError
from cartlab.io.adam.build import BUILDERS, build_datasets, cdisc_day
from cartlab.io.adam.spec import AdamSpec, load_spec
from cartlab.io.adam.write import conform, define_table, write_define_xml, write_xpt
from cartlab.io.atomic import atomic_folder

__all__ = ["DATASETS", "FORMATS", "adam_frames", "cdisc_day", "export_adam", "load_spec"]

FORMATS = ("xpt", "csv", "parquet")
DATASETS = tuple(BUILDERS)


def adam_frames(analysis, spec: AdamSpec | str | Path | None = None,
                datasets: tuple[str, ...] | list[str] | None = None) -> dict[str, Any]:
    """The conformed ADaM frames (spec order, types, ASCII, <= 200 characters) of ``datasets``."""
    spec = spec if isinstance(spec, AdamSpec) else load_spec(spec)
    names = list(datasets or [n for n in DATASETS if n in spec.datasets])
    unknown = [n for n in names if n not in BUILDERS or n not in spec.datasets]
    if unknown:
        raise InputError(f"ADaM datasets {', '.join(unknown)} are not derived by cartlab or not in the spec "
                         f"({spec.path}); choose from {', '.join(n for n in DATASETS if n in spec.datasets)}")
    raw = build_datasets(analysis, names)
    return {n: conform(raw[n], spec.datasets[n]) for n in names}


def export_adam(analysis, out_dir: str | Path, formats: tuple[str, ...] | list[str] = ("xpt", "csv"), *,
                spec: AdamSpec | str | Path | None = None, datasets: tuple[str, ...] | list[str] | None = None,
                define_xml: bool = True) -> dict[str, Any]:
    """Write the ADaM datasets of ``analysis`` to ``out_dir`` (``<name>.xpt|csv|parquet`` in lower case,
    ``define.csv`` and ``define.xml``); return ``{"datasets": {name: rows}, "files": [...]}``."""
    formats = tuple(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise InputError(f"ADaM export: unknown format(s) {', '.join(bad) or '(none given)'}; "
                         f"choose from {', '.join(FORMATS)}")
    spec = spec if isinstance(spec, AdamSpec) else load_spec(spec)
    frames = adam_frames(analysis, spec, datasets)
    define = define_table(spec, frames)
    out = Path(out_dir)
    files = []
    with atomic_folder(out) as tmp:
        for name, frame in frames.items():
            base = name.lower()
            if "xpt" in formats:
                write_xpt(frame, spec.datasets[name], tmp / f"{base}.xpt")
                files.append(f"{base}.xpt")
            if "csv" in formats:
                frame.write_csv(tmp / f"{base}.csv")
                files.append(f"{base}.csv")
            if "parquet" in formats:
                frame.write_parquet(tmp / f"{base}.parquet")
                files.append(f"{base}.parquet")
        define.write_csv(tmp / "define.csv")
        files.append("define.csv")
        if define_xml:
            write_define_xml(spec, define, analysis.study.study_id, tmp / "define.xml")
            files.append("define.xml")
    return {"datasets": {n: f.height for n, f in frames.items()}, "files": [str(out / f) for f in files]}
