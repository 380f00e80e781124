"""ADaM export of one analysis: SAS transport v5, CSV, Parquet, a define-like table and a
Define-XML 2.0 skeleton (docs/interop/adam.md).

>>> from cartlab.datasets import seed_case                       # doctest: +SKIP
>>> from cartlab.analyze import Analysis                          # doctest: +SKIP
>>> export_adam(Analysis(seed_case()), "adam_out")                # doctest: +SKIP

Datasets: ADSL, ADLB, ADVS, ADAE (CRS/ICANS/ICAHT episodes), ADRS, ADTTE, ADPC, ADPP, ADEX, built from the
analysis' tables (the engines are not re-run). Variable metadata comes from ``adam_spec.yaml`` (or a
user's copy, ``spec=PATH``). A dataset whose analysis table could not be derived is left out and
named in the result (``not_written``) unless ``strict``. The folder is written whole through
:func:`cartlab.io.atomic.export_folder`: an earlier ADaM export in it is replaced as a whole (no file
of it survives), any other non-empty folder is refused unless ``force``, and on an error nothing in
``out_dir`` changes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl

from cartlab.errors import InputError
from cartlab.io.adam.build import BUILDERS, build_available, cdisc_day
from cartlab.io.adam.exposure import AdamOptions
from cartlab.io.adam.spec import AdamSpec, load_spec
from cartlab.io.adam.write import ascii_text, conform, define_table, write_define_xml, write_xpt
from cartlab.io.atomic import export_folder

__all__ = ["DATASETS", "FORMATS", "AdamOptions", "adam_frames", "cdisc_day", "check_unique_ids", "export_adam", "is_adam_file",
           "load_spec", "write_adam"]

FORMATS = ("xpt", "csv", "parquet")
DATASETS = tuple(BUILDERS)
_ADAM_FILE = re.compile(rf"^(?:(?:{'|'.join(n.lower() for n in DATASETS)})\.(?:{'|'.join(FORMATS)})"
                        r"|define\.(?:csv|xml)|analysis_options\.json)$", re.IGNORECASE)


def is_adam_file(name: str) -> bool:
    """A file an ADaM export owns (``adsl.xpt`` ... ``adpp.parquet``, ``define.csv``, ``define.xml``,
    ``analysis_options.json``)."""
    return bool(_ADAM_FILE.match(name))


def _names(spec: AdamSpec, datasets) -> list[str]:
    names = list(datasets or [n for n in DATASETS if n in spec.datasets])
    unknown = [n for n in names if n not in BUILDERS or n not in spec.datasets]
    if unknown:
        raise InputError(f"ADaM datasets {', '.join(unknown)} are not derived by cartlab or not in the spec "
                         f"({spec.path}); choose from {', '.join(n for n in DATASETS if n in spec.datasets)}")
    return names


def check_unique_ids(study) -> None:
    """Subject ids that become the same USUBJID once made ASCII (``José-1`` and ``Jose-1``) are an
    :class:`InputError` naming them: the ADaM keys would no longer be unique."""
    ids = study.subjects.select(pl.col("subject_id").cast(pl.String).alias("id")).unique()
    clash = (ids.with_columns(ascii_text(pl.col("id")).alias("usubjid")).group_by("usubjid")
             .agg(pl.col("id").sort()).filter(pl.col("id").list.len() > 1).sort("usubjid"))
    if clash.height:
        pairs = "; ".join(f"{' and '.join(repr(i) for i in ids_)} both become {u!r}"
                          for u, ids_ in clash.iter_rows())
        raise InputError(f"ADaM export: subject ids that become the same USUBJID: {pairs}. ADaM text is made "
                         "ASCII and cut to 200 characters (docs/interop/adam.md, 'Text'), so the keys would not be unique",
                         hint="rename one of each pair in subjects.csv (and the other tables), then export again")


def _frames(analysis, spec: AdamSpec, datasets, strict: bool, options=None):
    names = _names(spec, datasets)
    check_unique_ids(analysis.study)
    raw, not_written, notes = build_available(analysis, names, strict=strict, options=options)
    return {n: conform(raw[n], spec.datasets[n]) for n in names if n in raw}, not_written, notes


def adam_frames(analysis, spec: AdamSpec | str | Path | None = None,
                datasets: tuple[str, ...] | list[str] | None = None, options=None) -> dict[str, Any]:
    """The conformed ADaM frames (spec order, types, ASCII, <= 200 characters) of ``datasets``; an
    EngineError when an analysis table one of them needs is not available. ``options``: an
    :class:`~cartlab.io.adam.exposure.AdamOptions` or a mapping (``{"trt01a": "agent"}``), else the
    analysis' ``adam`` options, else the defaults."""
    spec = spec if isinstance(spec, AdamSpec) else load_spec(spec)
    return _frames(analysis, spec, datasets, strict=True, options=options)[0]


def _formats(formats) -> tuple[str, ...]:
    formats = tuple(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise InputError(f"ADaM export: unknown format(s) {', '.join(bad) or '(none given)'}; "
                         f"choose from {', '.join(FORMATS)}")
    return formats


def write_adam(analysis, folder: Path, formats: tuple[str, ...] | list[str] = ("xpt", "csv"), *,
               spec: AdamSpec | str | Path | None = None, datasets: tuple[str, ...] | list[str] | None = None,
               define_xml: bool = True, strict: bool = False, options=None) -> dict[str, Any]:
    """Write the ADaM files into ``folder`` as they are (no staging: :func:`export_adam` is the
    whole-folder write); return ``{"datasets", "files", "not_written", "notes"}``."""
    formats = _formats(formats)
    spec = spec if isinstance(spec, AdamSpec) else load_spec(spec)
    frames, not_written, notes = _frames(analysis, spec, datasets, strict, options)
    define = define_table(spec, frames)
    files = []
    for name, frame in frames.items():
        base = name.lower()
        if "xpt" in formats:
            write_xpt(frame, spec.datasets[name], folder / f"{base}.xpt")
            files.append(f"{base}.xpt")
        if "csv" in formats:
            frame.write_csv(folder / f"{base}.csv")
            files.append(f"{base}.csv")
        if "parquet" in formats:
            frame.write_parquet(folder / f"{base}.parquet")
            files.append(f"{base}.parquet")
    define.write_csv(folder / "define.csv")
    files.append("define.csv")
    if define_xml:
        write_define_xml(spec, define, analysis.study.study_id, folder / "define.xml")
        files.append("define.xml")
    # the options the datasets were derived with (a CRSGRMX at 38.3 C looks like one at 38.0 C):
    # every value applied and what was set; `cartlab analyze --options analysis_options.json` replays it
    import json
    from dataclasses import asdict

    from cartlab import __version__
    from cartlab.io.adam.exposure import adam_options

    record = {"cartlab_version": __version__, "study_id": analysis.study.study_id,
              "adam_options": asdict(adam_options(options, analysis)),
              "options": analysis.options.to_dict(diseases=analysis._diseases()),
              "options_set": analysis.options.settings_record()}
    (folder / "analysis_options.json").write_text(json.dumps(record, indent=1, default=str) + "\n", encoding="utf-8")
    files.append("analysis_options.json")
    return {"datasets": {n: f.height for n, f in frames.items()}, "files": files, "not_written": not_written,
            "notes": notes}


def export_adam(analysis, out_dir: str | Path, formats: tuple[str, ...] | list[str] = ("xpt", "csv"), *,
                spec: AdamSpec | str | Path | None = None, datasets: tuple[str, ...] | list[str] | None = None,
                define_xml: bool = True, strict: bool = False, force: bool = False, options=None) -> dict[str, Any]:
    """Write the ADaM datasets of ``analysis`` to ``out_dir`` (``<name>.xpt|csv|parquet`` in lower case,
    ``define.csv`` and ``define.xml``); return ``{"datasets": {name: rows}, "files": [...],
    "not_written": {name: why}, "notes": [...], "removed": [...]}`` (``removed``: files of an earlier
    ADaM export in ``out_dir`` that this one does not write, now deleted).

    A dataset whose analysis table could not be derived is left out and named in ``not_written``
    (``strict``: an EngineError, nothing written). ``out_dir`` must be missing, empty or an earlier
    ADaM export, else an InputError unless ``force`` (then its ADaM files are replaced, others kept)."""
    _formats(formats)
    spec = spec if isinstance(spec, AdamSpec) else load_spec(spec)
    _names(spec, datasets)  # a bad request is refused before the folder is looked at
    out = Path(out_dir)
    with export_folder(out, "ADaM", owned=is_adam_file, force=force) as target:
        result = write_adam(analysis, target.staging, formats, spec=spec, datasets=datasets,
                            define_xml=define_xml, strict=strict, options=options)
        target.meta.update(study_id=analysis.study.study_id, not_written=result["not_written"], notes=result["notes"])
    result["files"] = [str(out / f) for f in result["files"]]
    result["removed"] = target.removed
    return result
