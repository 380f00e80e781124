"""The files around the kinetics engines, for ``cartlab nca`` and ``cartlab stein``: reading
concentration tables (CSV), parsing the options, writing the results.

* :func:`read_conc_table` -- a concentration-time CSV checked and parsed (file, row, line and column
  named in every error).
* :func:`nca_command` -- the CSV contract of ``../shared/conformance/README.md``: one row per
  subject and interval with PKNCA's column names (engine: :func:`cartlab.kinetics.nca.nca`).
* :func:`stein_command` -- the Stein 2019 fits of a study or a table written into a folder
  (engine: :mod:`cartlab.kinetics.stein`), with ``stein_fit.json`` recording the input (path and
  SHA-256), every option, the counts and the fit statistics, so each number can be traced to the
  rows (``src_file``/``src_row`` in ``stein_observations.csv``) and settings that produced it.

Nothing partial is left behind: a CSV is written through :func:`cartlab.io.atomic.atomic_file`, the
Stein folder through :func:`cartlab.io.atomic.export_folder` (an earlier Stein output replaced whole, a
folder of other files refused unless --force, as analyses and reports).
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import polars as pl

from cartlab import __version__
from cartlab.io.atomic import atomic_file
from cartlab.io.study_folder import sha256_file
from cartlab.io.value_text import BLQ_WORDS, number_hint
from cartlab.kinetics.nca import (
    CENSORED_RESULT,
    NA_TEXT,
    NcaOptions,
    derive_nca,
    nca_units,
    parse_interval,
)
from cartlab.kinetics.stein import (
    BLQ_METHODS,
    DOSE_HANDLINGS,
    FIRST_DOSE_NOTE,
    PARAMS,
    PEAK_COLUMNS,
    SE_DF_CORRECTIONS,
    SPLIT_DOSE_GAP_DAYS,
    STEIN_2019,
    Progress,
    SteinModel,
    SteinPopulationModel,
)
from cartlab.model import NOT_MEASURED_SOURCES

__all__ = ["nca_command", "parse_assignments", "read_conc_table", "stein_command"]


# ---------------------------------------------------------------------------------------------
# concentration tables and cartlab nca



#: the columns that name the analyte of a row in a table of several (a study's observations.csv, SDTM, ADaM)
ANALYTE_COLUMNS = ("param", "paramcd", "analyte", "testcd", "lbtestcd", "pctestcd")


def _several_analytes(raw, col: str | None) -> str:
    """A hint when a table of several analytes (a study's observations.csv) is given to nca (session 48)."""
    if col is None or raw[col].n_unique() < 2:
        return ""
    names = ", ".join(str(v) for v in raw[col].unique(maintain_order=True).head(4).to_list())
    return (f" (the table holds several analytes in column {col!r}: {names} ...; nca reads one concentration "
            "per time: keep one analyte's rows, e.g. CARCOPY, or run cartlab analyze on the study folder, whose "
            "kinetics engine derives the CAR-T metrics)")


def _scan_fields(path: Path, separator: str = ",") -> list[str]:
    """The header; raises when a data row has another number of fields than the header."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh, delimiter=separator)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: the file is empty") from None
        width = len(header)
        for i, row in enumerate(reader, start=1):
            if len(row) != width and row:
                why = ("a value with an unquoted comma, or a separator too many?" if len(row) > width
                       else "a value left out? An empty value still needs its separator")
                raise ValueError(f"{path}: row {i} (line {reader.line_num}): expected {width} field(s) as in the "
                                 f"header ({', '.join(header)}), found {len(row)}: {why}")
    return header


def read_conc_table(input_csv: str | Path, *, subject: str, time: str, conc: str, lloq: str | None = None,
                    extra: Sequence[str] = (), csv_dialect: str = "standard") -> pl.DataFrame:
    """A concentration-time CSV checked and parsed for the ``nca`` and ``stein`` commands.

    Returns ``_row`` (1-based data row), the subject column under its own name, ``_time``,
    ``_conc`` (null for a censored ``<x`` cell or a missing one), ``_vt`` (the censored text),
    ``_lloq`` (when ``lloq`` is given) and the ``extra`` columns as text. Raises ValueError naming
    the file, row (and CSV line) and column: a missing column, a row with another number of fields
    than the header, a time, conc or LLOQ that is not a number, a missing time or subject, a time
    that does not increase within a subject (file order), a negative concentration. ``csv_dialect``
    (``--csv-dialect``): the file's separator and decimal mark; a file in another one is one error
    (cartlab.io.folder.check_plain_dialect, as ctcae and the study reader say it; review 47 F5)."""
    from cartlab.io.folder import CSV_DIALECTS, check_plain_dialect, read_plain_csv

    path = Path(input_csv)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    numeric = tuple(c for c in (time, conc, lloq) if c is not None)
    check_plain_dialect(path, csv_dialect, numeric)
    header = _scan_fields(path, CSV_DIALECTS[csv_dialect][0])
    need = list(dict.fromkeys(c for c in (subject, time, conc, lloq, *extra) if c is not None))
    miss = [c for c in need if c not in header]
    if miss:
        raise ValueError(f"{path}: column(s) {miss} not found; the header has {header}")
    acol = next((c for c in header if c.strip().lower() in ANALYTE_COLUMNS and c not in need), None)
    raw = read_plain_csv(path, csv_dialect, numeric, columns=need + ([acol] if acol else []))
    raw = raw.with_row_index("_row", offset=1)
    # BLQ / BQL / BLOQ / <LLOQ / below LLOQ: the result below the row's LLOQ, read as '<lloq' as the study
    # reader does (cartlab.io.value_text; review s38 B3); without an LLOQ the bound is unknown: an error
    word = pl.col(conc).str.strip_chars().str.to_lowercase().str.replace_all(r"\s+", " ")
    is_blq = word.is_in(list(BLQ_WORDS)).fill_null(False)
    if raw.select(is_blq.any()).item():
        lim = (pl.col(lloq).str.strip_chars() if lloq is not None else pl.lit(None, dtype=pl.String))
        no_lim = raw.filter(is_blq & (lim.cast(pl.Float64, strict=False).is_null()))
        if no_lim.height:
            r = no_lim.row(0, named=True)
            raise ValueError(f"{path}: row {r['_row']} (line {r['_row'] + 1}), column {conc!r}: {r[conc]!r} "
                             "(below the limit of quantification) needs the limit: "
                             + ("the row's LLOQ is empty or not a number" if lloq is not None else "no --lloq-col given")
                             + "; write '<' and the limit, e.g. '<20', or give the LLOQ (--lloq-col)")
        raw = raw.with_columns(pl.when(is_blq).then(pl.concat_str(pl.lit("<"), lim)).otherwise(pl.col(conc))
                               .alias(conc))

    def parse(col: str, allow_censored: bool) -> pl.Expr:
        txt = pl.col(col).str.strip_chars()
        val = txt.replace(list(NA_TEXT), None).cast(pl.Float64, strict=False)
        cens = txt.str.contains(r"^(<=|<|≤)") if allow_censored else pl.lit(False)
        bad = raw.filter(val.is_null() & txt.is_not_null() & ~txt.is_in(list(NA_TEXT))
                         & ~(cens & txt.str.extract(CENSORED_RESULT.pattern, 2).cast(pl.Float64, strict=False).is_not_null()))
        if bad.height:
            r = bad.row(0, named=True)
            raise ValueError(f"{path}: row {r['_row']} (line {r['_row'] + 1}), column {col!r}: "
                             f"{r[col]!r} is not a number" + number_hint(r[col], result=allow_censored))
        return val

    t_val = parse(time, False)
    bad = raw.filter(t_val.is_null())
    if bad.height:
        r = bad.row(0, named=True)
        raise ValueError(f"{path}: row {r['_row']} (line {r['_row'] + 1}), column {time!r}: time is missing")
    c_val = parse(conc, True)
    cols = [pl.col(subject), t_val.alias("_time"), c_val.alias("_conc"),
            pl.when(pl.col(conc).str.strip_chars().str.contains(r"^(<=|<|≤)"))
            .then(pl.col(conc).str.strip_chars()).alias("_vt")]
    if lloq is not None:
        cols.append(parse(lloq, False).alias("_lloq"))
    cols += [pl.col(c) for c in extra if c not in (subject, time, conc, lloq)]
    work = raw.select(pl.col("_row"), *cols)
    if work[subject].null_count():
        r = work.filter(pl.col(subject).is_null()).row(0, named=True)
        raise ValueError(f"{path}: row {r['_row']} (line {r['_row'] + 1}), column {subject!r}: subject is missing")
    nonincr = work.filter((pl.col("_time").diff().over(subject) <= 0).fill_null(False))
    if nonincr.height:
        r = nonincr.row(0, named=True)
        prev = work.filter((pl.col(subject) == r[subject]) & (pl.col("_row") < r["_row"]))["_time"][-1]
        raise ValueError(f"{path}: row {r['_row']} (line {r['_row'] + 1}), column {time!r}: time {r['_time']:g} "
                         f"is not greater than the previous time {prev:g} of subject {r[subject]!r}; "
                         "time must be monotonically increasing within a subject" + _several_analytes(raw, acol))
    neg = work.filter(pl.col("_conc") < 0)
    if neg.height:
        r = neg.row(0, named=True)
        raise ValueError(f"{path}: row {r['_row']} (line {r['_row'] + 1}), column {conc!r}: "
                         f"negative concentration {r['_conc']:g}")
    return work


def blq_rules(**rules: str) -> NcaOptions:
    """NcaOptions with the BLQ rules of ``cartlab nca --blq-first/--blq-middle/--blq-last``: "keep",
    "drop" or a number (PKNCA's conc.blq first/middle/last); anything else is a ValueError naming the flag."""
    given = {}
    for name, text in rules.items():
        v = str(text).strip().lower()
        if v not in ("keep", "drop"):
            try:
                v = float(v)
            except ValueError:
                v = text
        try:
            NcaOptions(**{name: v})  # the engine's own check of the value
        except ValueError:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag}: {text!r} is not keep, drop or a finite number >= 0") from None
        given[name] = v
    return NcaOptions(**given)


def nca_command(input_csv: str | Path, out_csv: str | Path, *, subject: str, time: str, conc: str,
                lloq: str | None = None, method: str = "lin-up/log-down",
                intervals: Sequence[Any] | None = None, options: NcaOptions | None = None,
                conc_unit: str | None = None, time_unit: str | None = None,
                force: bool = True, csv_dialect: str = "standard") -> dict[str, Any]:
    """``cartlab nca TABLE.csv --subject-col COL --time-col COL --conc-col COL [--lloq-col COL] [--method M]
    [--interval START,END]... --out OUT.csv`` (contract: ``../shared/conformance/README.md``).

    Writes one row per subject and interval with the subject column under its own name and the
    PKNCA column names of :func:`nca` (lists as text: ``lambda.z.times`` joined by ``;``,
    ``warnings`` by `` | ``); the file is written to a temporary name and renamed, so nothing
    partial is left under ``out_csv``. A conc cell ``<x`` is a censored (BLQ) result; ``NA`` or an
    empty cell is missing. Bad input raises ValueError naming the file, row and column: a missing
    column, a row with another number of fields than the header, a time or conc that is not a
    number, a time that does not increase within a subject (file order). Returns a summary.

    Units: with ``conc_unit`` and/or ``time_unit`` (``--conc-unit``, ``--time-unit``) a second
    file ``OUT_units.csv`` beside ``OUT.csv`` gives the unit of every quantity column (``column``,
    ``unit``; PKNCA's PPORRESU: cmax in the concentration unit, tmax and half.life in the time
    unit, the AUCs in time*concentration, lambda.z in 1/time; a unit derived from one that was not
    given is empty). Without them the output is unchanged and the summary says ``units: not given``.
    A unit pint does not know (or a ``time_unit`` that is not a time) is an error (UnitError).

    Output: unless ``force`` (``cartlab nca`` passes its --force), an existing ``out_csv`` or
    ``OUT_units.csv`` (the input table above all) is refused before anything is computed; a path
    that cannot be written is reported as that path (never a temporary file's name).
    """
    from cartlab.cli.grading_io import check_output_file
    from cartlab.io.atomic import write_error
    from cartlab.units import UnitError, parse_unit, ureg

    path = Path(input_csv)
    for what, u in (("--conc-unit", conc_unit), ("--time-unit", time_unit)):
        if u is not None and not u.strip():
            raise ValueError(f"{what}: the unit is empty")
        if u is not None:  # units are explicit: one pint does not know is an error, never copied through
            try:
                parsed = parse_unit(u)
            except UnitError as exc:
                raise UnitError(f"{what}: {exc}", hint="e.g. --conc-unit ng/mL, --conc-unit copies/ug, "
                                "--time-unit h, --time-unit d") from None
            if what == "--time-unit" and parsed.dimensionality != ureg.hour.dimensionality:
                raise UnitError(f"--time-unit: {u!r} is not a unit of time (e.g. h, d, min)")
    out_path = Path(out_csv)
    units_path = out_path.with_name(f"{out_path.stem}_units{out_path.suffix or '.csv'}")
    given = conc_unit is not None or time_unit is not None
    check_output_file(out_path, [path], force=force, what="the NCA results")
    if given:
        check_output_file(units_path, [path], force=force, what="the units of the NCA results")
    work = read_conc_table(path, subject=subject, time=time, conc=conc, lloq=lloq, csv_dialect=csv_dialect)
    base = options or NcaOptions()
    opt = NcaOptions(**{f.name: getattr(base, f.name) for f in fields(NcaOptions)} | {"method": method})
    ivs = [parse_interval(iv) for iv in (intervals or [(0.0, math.inf)])]
    out = derive_nca(work, subject=subject, time="_time", conc="_conc", lloq="_lloq" if lloq else None,
              value_text="_vt", intervals=ivs, options=opt)
    flat = out.with_columns(
        pl.col("lambda.z.times").cast(pl.List(pl.String)).list.join(";"),
        pl.col("warnings").list.join(" | "),
    )
    try:
        if given:
            units = nca_units(conc_unit, time_unit, flat.columns)
            table = pl.DataFrame({"column": list(units), "unit": list(units.values())},
                                 schema={"column": pl.String, "unit": pl.String})
            with atomic_file(units_path) as tmp_units, atomic_file(out_path) as tmp:
                table.write_csv(tmp_units)
                flat.write_csv(tmp)
        else:
            with atomic_file(out_path) as tmp:
                flat.write_csv(tmp)
    except OSError as exc:  # e.g. --out /proc/x.csv: the user's path, never the temporary file's
        raise write_error(out_path, exc) from None
    return {
        "input": str(path),
        "output": str(out_path),
        "rows": work.height,
        "subjects": out[subject].n_unique(),
        "intervals": [list(iv) for iv in ivs],
        "results": out.height,
        "method": opt.method,
        "with_lambda_z": int(out["lambda.z"].is_not_null().sum()),
        "with_warnings": int((out["warnings"].list.len() > 0).sum()),
        "units": str(units_path) if given else "not given (--conc-unit, --time-unit)",
    }


# ---------------------------------------------------------------------------------------------
# cartlab stein



#: Priors for per-subject MAP fits.
PRIORS = {"stein2019": STEIN_2019}

CITATION = ("Stein AM, et al. Tisagenlecleucel model-based cellular kinetic analysis of chimeric antigen "
            "receptor-T cells. CPT Pharmacometrics Syst Pharmacol 2019;8(5):285-295, doi:10.1002/psp4.12388")


def parse_assignments(items: Sequence[str], what: str, value_type=str,
                      extra: Sequence[str] = ()) -> list[tuple[str, Any]]:
    """``["cmax=log_dose", ...]`` -> ``[("cmax", "log_dose"), ...]``; the parameter must be one of
    the model's (``foldx, tmax, cmax, alpha, fb, beta``) or of ``extra`` (``sigma`` for ``--fix``)."""
    names = (*PARAMS, *extra)
    out = []
    for item in items:
        m = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*=\s*(\S.*?)\s*", item)
        if not m:
            raise ValueError(f"{what} {item!r}: expected PARAMETER=VALUE, e.g. "
                             f"{'cmax=log_dose' if value_type is str else 'beta=0.0032'}")
        p, v = m.group(1), m.group(2)
        if p not in names:
            raise ValueError(f"{what} {item!r}: unknown parameter {p!r} (one of {', '.join(names)})")
        if value_type is not str:
            try:
                v = value_type(v)
            except ValueError:
                raise ValueError(f"{what} {item!r}: {v!r} is not a number") from None
            ok = 0 < v < 1 if p == "fb" else math.isfinite(v) and v > 0
            if not ok:
                raise ValueError(f"{what} {item!r}: {p} must be {'in (0, 1)' if p == 'fb' else 'positive'}")
            if p == "foldx" and not v > 1:  # Stein: R0 = Cmax / foldx (review 41 F8)
                raise ValueError(f"{what} {item!r}: foldx is the fold expansion from R0 to Cmax; must be > 1")
        out.append((p, v))
    return out


def _numeric_or_text(col: pl.Series) -> pl.Series:
    """A covariate column read as text: numbers when every non-empty cell is one."""
    txt = col.str.strip_chars().replace(list(NA_TEXT), None)
    num = txt.cast(pl.Float64, strict=False)
    return num if num.null_count() == txt.null_count() else txt


#: the command-line names of the table's column options (cartlab stein passes the ones typed)
OPTION_NAMES = {"subject": "--subject-col", "time": "--time-col", "conc": "--conc-col", "lloq": "--lloq-col",
                "doses": "--doses"}


def _read_table(path: Path, subject: str | None, time: str | None, conc: str | None, lloq: str | None,
                covariate_cols: Sequence[str], option_names: dict[str, str] | None = None,
                csv_dialect: str = "standard") -> pl.DataFrame:
    names = {**OPTION_NAMES, **(option_names or {})}
    missing = [names[n] for n, v in (("subject", subject), ("time", time), ("conc", conc)) if not v]
    if missing:
        raise ValueError(f"{path}: a table needs {', '.join(missing)} (the column names of subject, time and "
                         "concentration)")
    for c in covariate_cols:
        if c in (subject, time, conc, lloq):
            raise ValueError(f"{path}: column {c!r} is the subject, time, concentration or LLOQ column, "
                             "not a covariate")
    header: list[str] = []
    if path.is_file():
        from cartlab.io.folder import CSV_DIALECTS

        with open(path, newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh, delimiter=CSV_DIALECTS[csv_dialect][0]), [])
    has_source = "source" in header  # carried so that synthetic rows stay labelled
    work = read_conc_table(path, subject=subject, time=time, conc=conc, lloq=lloq,
                           extra=[*covariate_cols, *(["source"] if has_source else [])], csv_dialect=csv_dialect)
    frame = work.select(
        pl.col(subject).cast(pl.String).alias("subject_id"),
        pl.col("_time").alias("time"),
        pl.col("_conc").alias("conc"),
        (pl.col("_lloq") if lloq else pl.lit(None, dtype=pl.Float64)).alias("lloq"),
        pl.when(pl.col("_vt").is_not_null()).then(pl.lit("<")).alias("censor"),
        pl.col("_vt").str.extract(CENSORED_RESULT.pattern, 2).cast(pl.Float64).alias("censor_limit"),
        (pl.col("source") if has_source else pl.lit(None, dtype=pl.String)).alias("source"),
        pl.lit(path.name).alias("src_file"),
        pl.col("_row").cast(pl.Int64).alias("src_row"),
    )
    for c in covariate_cols:
        frame = frame.with_columns(_numeric_or_text(work[c]).alias(c))
        per = frame.group_by("subject_id").agg(pl.col(c).drop_nulls().n_unique().alias("k"))
        bad = per.filter(pl.col("k") > 1)
        if bad.height:
            raise ValueError(f"{path}: column {c!r}: covariate values differ within subject "
                             f"{bad['subject_id'][0]!r}; a covariate has one value per subject")
    return frame


def _read_doses(path: Path, subject: str | None, time: str | None, csv_dialect: str = "standard") -> pl.DataFrame:
    from cartlab.io.folder import read_plain_csv

    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    df = read_plain_csv(path, csv_dialect, (time or "time", "day", "dose"))  # --csv-dialect as the table's
    sid = subject if subject in df.columns else next((c for c in ("subject_id", "subject", "id") if c in df.columns), None)
    tcol = time if time in df.columns else next((c for c in ("time", "day") if c in df.columns), None)
    if sid is None or tcol is None:
        raise ValueError(f"{path}: needs the subject column ({subject or 'subject_id'}) and a time column "
                         f"({time or 'time'} or day); the header has {df.columns}")
    numeric = {tcol: "time", **({"dose": "dose"} if "dose" in df.columns else {})}
    for c in numeric:
        v = df[c].cast(pl.Float64, strict=False)
        bad = (v.is_null() & df[c].is_not_null()).arg_true()
        if bad.len():
            i = int(bad[0])
            raise ValueError(f"{path}: row {i + 1} (line {i + 2}), column {c!r}: {df[c][i]!r} is not a number")
    return df.select(pl.col(sid).alias("subject_id"),
                     *[pl.col(c).cast(pl.Float64).alias(name) for c, name in numeric.items()])



#: the kind of output a Stein folder holds (its cartlab export marker): an earlier Stein output is
#: replaced whole (no stein_estimates.csv of an earlier per-subject fit beside a new population fit)
STEIN_KIND = "stein"


def _stein_owned(name: str) -> bool:
    return name.startswith("stein_")


def _earlier_stein(out: Path) -> bool:
    """A Stein folder written before the export marker existed (stein_fit.json in it)."""
    return (out / "stein_fit.json").is_file()


def check_stein_folder(out_dir: str | Path, force: bool = False) -> Path:
    """``out_dir`` may take a Stein fit: missing, empty or an earlier Stein output (else an
    InputError unless ``force``) - checked before the fit, which can take minutes."""
    from cartlab.io.atomic import check_output_folder

    return check_output_folder(out_dir, STEIN_KIND, force=force, what="the Stein fit", earlier=_earlier_stein)


def _write_files(files: dict[str, Any], out_dir: Path, force: bool = False) -> list[Path]:
    """Write every output (frames as CSV, dicts as JSON, figures as PNG) into ``out_dir`` at once,
    replacing an earlier Stein output whole (other files are kept with ``force``)."""
    from cartlab.io.atomic import export_folder

    with export_folder(out_dir, STEIN_KIND, owned=_stein_owned, force=force, what="the Stein fit",
                       earlier=_earlier_stein) as target:
        tmp = target.staging
        for name, obj in files.items():
            target = tmp / name
            if isinstance(obj, pl.DataFrame):
                obj.write_csv(target)
            elif isinstance(obj, (dict, list)):
                target.write_text(json.dumps(obj, indent=2, default=str) + "\n", encoding="utf-8")
            else:  # a matplotlib Figure
                obj.savefig(target, dpi=110)
    return [out_dir / name for name in files]


def _csv_ready(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns([pl.col(c).list.join("; ") for c, t in df.schema.items() if t == pl.List(pl.String)])


#: the unit kind of each quantity column of the Stein outputs: C concentration, T*C its AUC, T time
#: (days), 1/T rate; "log" a residual SD on the natural-log scale; "1" unitless; "count"
_STEIN_UNIT_KINDS = {
    "cmax": "C", "r0": "C", "stein_cmax": "C", "obs_cmax": "C", "ipred_at_obs_tmax": "C", "conc": "C",
    "lloq": "C", "limit": "C", "ipred": "C", "pred": "C",
    "stein_auc_0_28": "T*C",
    "tmax": "T", "stein_tmax": "T", "obs_tmax": "T", "doubling_time": "T", "t_half_alpha": "T",
    "t_half_beta": "T", "t_last_sample": "T", "time": "T", "tlag": "T",
    "rho": "1/T", "alpha": "1/T", "beta": "1/T",
    "foldx": "1", "fb": "1", "stein_cmax_over_obs": "1", "iwres": "1", "sigma": "log",
    "auc_extrapolated_pct": "%", "n_obs": "count", "n_blq": "count",
}


def stein_units(columns: Sequence[str], conc_unit: str | None) -> dict[str, str]:
    """The unit of each quantity column of a Stein output among ``columns`` (times in days; a
    concentration-derived unit is "not given" when ``conc_unit`` is None, as PKNCA leaves it NA).
    For stein_estimates.csv / stein_population.csv, whose rows are parameters, the column
    ``parameter`` is listed with "per row: see the parameter's unit" and each parameter by name."""
    c = conc_unit or "not given"
    built = {"C": c, "T": "d", "T*C": f"d*{conc_unit}" if conc_unit else "not given", "1/T": "1/d",
             "1": "unitless", "log": "natural-log scale (SD of log C)", "%": "%", "count": "count"}
    cols = list(columns)
    out = {k: built[_STEIN_UNIT_KINDS[k]] for k in cols if k in _STEIN_UNIT_KINDS}
    if "parameter" in cols:  # a parameter table: the unit of each row's estimate
        out.update({f"parameter={p}": built[_STEIN_UNIT_KINDS[p]] for p in (*PARAMS, "sigma")})
        out.update({k: "the unit of the row's parameter (parameter=...)" for k in
                    ("estimate", "se", "ci_lower", "ci_upper") if k in cols})
        out.update({k: "%" for k in ("rse_pct", "omega2_rse_pct", "iiv_cv_pct", "shrinkage_sd_pct") if k in cols})
        if "omega2" in cols:
            out["omega2"] = "variance of the log-parameter (unitless)"
        if "omega2_se" in cols:
            out["omega2_se"] = "unitless (SE of omega2)"
    return out


def _stein_conc_unit(kind: str, data: Any, param: str, conc_unit: str | None) -> str | None:
    """The concentration unit of the fit: a study's canonical unit of ``param`` (the loader converts
    every row to it), or ``conc_unit`` (--conc-unit) for a table, checked by pint."""
    from cartlab.units import UnitError, parse_unit

    if kind == "study":
        if conc_unit is not None:
            raise ValueError("--conc-unit: for a table; a study's values are in the canonical unit of their "
                             "parameter")
        from cartlab.io.dictionary import load_dictionary

        dic = load_dictionary()
        return dic[param].unit if param in dic else None
    if conc_unit is None:
        return None
    if not conc_unit.strip():
        raise ValueError("--conc-unit: the unit is empty")
    try:
        parse_unit(conc_unit)
    except UnitError as exc:
        raise UnitError(f"--conc-unit: {exc}", hint="e.g. --conc-unit copies/ug") from None
    return conc_unit.strip()


def _blq_rule(obs: pl.DataFrame, blq: str, blq_below_lloq: bool) -> dict[str, Any]:
    """The BLQ rule applied (stein_fit.json): the method, ``blq_below_lloq``, and the rows censored
    because their reported value was below their LLOQ (subject, time, value, LLOQ, source row)."""
    below = obs.filter(pl.col("blq") & pl.col("conc").is_not_null())
    return {
        "blq": blq, "method": BLQ_METHODS[blq], "blq_below_lloq": blq_below_lloq,
        "rule": "a '<x' result is censored at x; " + ("a reported value below its row's LLOQ is censored at "
                                                      "that LLOQ (study-format spec)" if blq_below_lloq else
                                                      "a reported value below its LLOQ is kept as measured"),
        "n_reported_censored": int(obs["blq"].sum()) - below.height,
        "n_below_lloq_censored": below.height,
        "below_lloq_rows": below.select(
            "subject_id", "time", pl.col("conc").alias("value"), "lloq",
            *[c for c in ("src_file", "src_row") if c in below.columns]).to_dicts(),
    }


def stein_command(
    source: Any,
    out_dir: str | Path,
    *,
    population: bool = False,
    subject: str | None = None,
    time: str | None = None,
    conc: str | None = None,
    lloq: str | None = None,
    doses: str | Path | None = None,
    param: str = "CARCOPY",
    blq: str = "m3",
    dose_handling: str = "first",
    covariates: Sequence[str] = (),
    fixed: Sequence[str] = (),
    prior: str | None = None,
    estimate_sigma: bool = False,
    ftoci: float | None = None,
    fster: float | None = None,
    tlag: float = 0.0,
    missing_dose: str = "error",
    no_infusion: str = "drop",
    peak_window: str = "observed",
    derived_if_unidentified: str = "null",
    seed: int = 0,
    n_starts: int = 3,
    blq_below_lloq: bool = True,
    auc_extrap_warn_pct: float = 20.0,
    se_df_correction: str = "residual",
    conc_unit: str | None = None,
    split_dose_gap_days: float | None = None,
    n_burn: int = 300,
    n_smooth: int = 200,
    n_post: int = 150,
    n_chains: int | None = None,
    vpc_reps: int = 200,
    progress: Progress | None = None,
    option_names: dict[str, str] | None = None,
    force: bool = False,
    csv_dialect: str = "standard",
) -> dict[str, Any]:
    """Fit the Stein 2019 model and write the results into ``out_dir`` (missing, empty or an earlier
    Stein output, replaced whole; a folder holding other files only with ``force``).

    ``source``: a cartlab Study, a study folder, or a CSV table (one row per sample; ``subject``,
    ``time`` (days from the first infusion, or give ``doses``) and ``conc`` name its columns; a
    conc cell ``<x`` is below the limit x; ``lloq`` names an LLOQ column). ``covariates``:
    ``PARAMETER=COLUMN`` items (population fit only; for a study the columns are those of
    :class:`~cartlab.kinetics.stein.SteinPopulationModel`, e.g. ``cmax=log_dose``); ``fixed``:
    ``PARAMETER=VALUE`` items held fixed (per-subject fits also accept ``sigma=VALUE``, the
    residual SD); ``prior="stein2019"``: per-subject MAP fits with the published population
    distribution (:data:`~cartlab.kinetics.stein.STEIN_2019`) as the prior, for sparse subjects
    whose curve the data alone do not identify. Under a prior the residual SD is held at the
    prior's (0.56, empirical Bayes) unless ``--fix sigma=VALUE`` or ``estimate_sigma``. ``ftoci`` /
    ``fster`` None: the prior's under ``prior`` (Stein 2019: 1.2 / 1.0), else 1 (stein_fit.json,
    ``options.comedication``, says which). ``se_df_correction``: per-subject ML fits, ``residual``
    (default: covariance x n/(n - p), t(n - p) CIs) or ``none``
    (:data:`~cartlab.kinetics.stein.individual.SE_DF_CORRECTIONS`).

    A subject whose data cannot identify the free parameters (no quantifiable sample; without a
    prior, fewer quantifiable samples than free parameters) gets no estimates and its reason in
    ``stein_subjects.csv`` (column ``message``); when no subject can be fitted, ValueError (nothing
    is written).

    Files: ``stein_estimates.csv`` (per-subject fit: parameter, estimate, SE, RSE, 95% CI) or
    ``stein_population.csv`` (typical values, omega², covariate effects, sigma, shrinkage);
    ``stein_subjects.csv`` (per-subject parameters and derived Cmax, Tmax, AUC0-28, half-lives, and
    the observed peak beside the fitted one: :data:`PEAK_COLUMNS`);
    ``stein_observations.csv`` (observed vs ipred/pred, iwres, source rows); ``stein_dropped.csv``;
    ``stein_fits.png``; population only: ``stein_vpc.csv``, ``stein_vpc.png``, ``stein_trace.csv``;
    ``stein_fit.json``. Raises ValueError (bad options or table, naming file, row and column).
    ``option_names``: the command-line names of ``subject``, ``time``, ``conc``, ``lloq`` and
    ``doses`` for messages (default :data:`OPTION_NAMES`: ``--subject-col`` ...).

    ``n_starts``: population fits run SAEM that many times (seeds from ``seed``) and keep the highest
    log-likelihood; every start is in ``stein_fit.json`` (``starts``). ``blq_below_lloq``: a reported
    value below its LLOQ is censored (the spec's BLQ rule; its measured value stays in
    ``stein_observations.csv`` with ``blq_reason``). ``auc_extrap_warn_pct``: flag a subject whose
    ``auc_extrapolated_pct`` exceeds it. Units: ``stein_units.csv`` (file, column, unit) and
    ``stein_fit.json`` (``units``) give every quantity column's unit; concentrations are in the study's
    canonical unit of ``param`` (CARCOPY: copies/ug gDNA), or in ``conc_unit`` for a table (not given:
    the concentration-derived units are empty, "not given"); times are days.
    """
    from cartlab.model import Study

    out_dir = check_stein_folder(out_dir, force)
    cov_items = parse_assignments(covariates, "--covariate")
    fix_items = dict(parse_assignments(fixed, "--fix", float, extra=("sigma",)))
    if "sigma" in fix_items and population:
        raise ValueError("--fix sigma: a population fit estimates the residual error; sigma can be held only in "
                         "per-subject fits")
    if estimate_sigma and (population or prior is None):
        raise ValueError("--estimate-sigma is for per-subject MAP fits (--prior): without a prior sigma is "
                         "estimated anyway")
    if estimate_sigma and "sigma" in fix_items:
        raise ValueError("--estimate-sigma and --fix sigma=...: give one")
    if cov_items and not population:
        raise ValueError("--covariate needs --population (covariate effects are population parameters)")
    clash = sorted({p for p, _ in cov_items} & set(fix_items))
    if clash:
        raise ValueError(f"{', '.join(clash)}: a fixed parameter cannot have covariate effects")
    cov_spec: dict[str, list[str]] = {}
    for p, c in cov_items:
        cov_spec.setdefault(p, []).append(c)
    if prior is not None and prior.lower() not in PRIORS:
        raise ValueError(f"--prior {prior!r}: one of {', '.join(PRIORS)}")
    if prior is not None and population:
        raise ValueError("--prior is for per-subject fits; a population fit estimates the distribution itself")
    if blq not in BLQ_METHODS:
        raise ValueError(f"--blq {blq!r}: one of {', '.join(BLQ_METHODS)} (default m3)")
    if dose_handling not in DOSE_HANDLINGS:
        raise ValueError(f"--dose-handling {dose_handling!r}: one of {', '.join(DOSE_HANDLINGS)} (default first)")

    dose_df = None
    if isinstance(source, Study):
        data, inputs = source, source.sources.to_dicts()
        kind = "study"
    else:
        path = Path(source)
        if path.is_dir():
            from cartlab.io import read_study

            data = read_study(path)
            inputs, kind = data.sources.to_dicts(), "study"
        elif path.is_file():
            data = _read_table(path, subject, time, conc, lloq, [c for _, c in cov_items], option_names,
                               csv_dialect)
            inputs, kind = [{"file": str(path), "sha256": sha256_file(path)}], "table"
            if doses is not None:
                dose_df = _read_doses(Path(doses), subject, time, csv_dialect)
                inputs.append({"file": str(doses), "sha256": sha256_file(Path(doses))})
        else:
            raise ValueError(f"{path}: no such file or study folder")
    if kind == "study":
        names = {**OPTION_NAMES, **(option_names or {})}
        given = [names[n] for n, v in (("subject", subject), ("time", time), ("conc", conc), ("lloq", lloq),
                                       ("doses", doses)) if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: for a table; a study (a folder or a stored study) has its own "
                             "columns, LLOQs and doses")

    for name, v, ok in (("--ftoci", ftoci, ftoci is None or ftoci > 0), ("--fster", fster, fster is None or fster > 0),
                        ("--tlag", tlag, tlag >= 0)):
        if v is not None and not (math.isfinite(v) and ok):
            raise ValueError(f"{name} {v!r}: a finite number {'>= 0' if name == '--tlag' else '> 0'}")
    if se_df_correction not in SE_DF_CORRECTIONS:
        raise ValueError(f"--se-df-correction {se_df_correction!r}: one of {', '.join(SE_DF_CORRECTIONS)} "
                         "(default residual)")
    if not (math.isfinite(auc_extrap_warn_pct) and 0 <= auc_extrap_warn_pct <= 100):
        raise ValueError(f"--auc-extrap-warn-pct {auc_extrap_warn_pct!r}: a percentage in [0, 100]")
    if population and int(n_starts) < 1:
        raise ValueError(f"--n-starts {n_starts!r}: at least 1")
    # what makes a later infusion a re-infusion: the analysis's kinetics.split_dose_gap_days (review45 F1)
    gap = SPLIT_DOSE_GAP_DAYS if split_dose_gap_days is None else split_dose_gap_days
    if not (math.isfinite(gap) and gap >= 0):
        raise ValueError(f"--split-dose-gap-days {gap!r}: a number of days >= 0 (default {SPLIT_DOSE_GAP_DAYS:g}, "
                         "kinetics.split_dose_gap_days)")
    conc_u = _stein_conc_unit(kind, data, param, conc_unit)
    shared = {"ftoci": ftoci, "fster": fster, "tlag": tlag, "missing_dose": missing_dose, "no_infusion": no_infusion,
              "peak_window": peak_window, "blq_below_lloq": blq_below_lloq, "auc_extrap_warn_pct": auc_extrap_warn_pct,
              "split_dose_gap_days": float(gap)}
    options = {"population": population, "param": param, "blq": blq, "dose_handling": dose_handling,
               "covariates": cov_spec, "fixed": fix_items, **shared,
               "shrinkage_basis": "SD: 1 - SD(eta)/omega"}
    if population:
        options.update(seed=seed, n_starts=n_starts, n_burn=n_burn, n_smooth=n_smooth, n_post=n_post,
                       n_chains=n_chains, vpc_reps=vpc_reps)
        model = SteinPopulationModel(covariates=cov_spec, fixed=fix_items, seed=seed, n_starts=n_starts, n_burn=n_burn,
                                     n_smooth=n_smooth, n_post=n_post, n_chains=n_chains, blq=blq,
                                     dose_handling=dose_handling, param=param, **shared)
    else:
        options["prior"] = prior and prior.lower()
        options["derived_if_unidentified"] = derived_if_unidentified
        options["se_df_correction"] = se_df_correction
        model = SteinModel(fixed=fix_items, blq=blq, dose_handling=dose_handling, param=param,
                           prior=PRIORS[prior.lower()] if prior else None,
                           sigma="estimate" if estimate_sigma else None,
                           derived_if_unidentified=derived_if_unidentified, se_df_correction=se_df_correction,
                           **shared)
    fit = model.fit(data, doses=dose_df, progress=progress)
    # the comedication multipliers used (the prior's when not given: review 41 F7)
    options.update(ftoci=fit.extras["ftoci"], fster=fit.extras["fster"],
                   comedication=getattr(fit, "comedication_rule_", None) or
                   f"ftoci {fit.extras['ftoci']:g}; fster {fit.extras['fster']:g}")
    if not population:
        options["sigma"] = fit.sigma_rule_
        unfitted = fit.individual_.filter(~pl.col("fitted"))
        if unfitted.height == fit.individual_.height:
            reasons = "; ".join(f"{r['subject_id']}: {r['message']}" for r in unfitted.head(5).iter_rows(named=True))
            more = f" (and {unfitted.height - 5} more)" if unfitted.height > 5 else ""
            raise ValueError(f"no subject could be fitted -- {reasons}{more}")

    obs = fit.observations_
    subjects = fit.individual_
    n_not_measured = int(obs["source"].is_in(list(NOT_MEASURED_SOURCES)).sum())
    files: dict[str, Any] = {}
    meta: dict[str, Any] = {
        "cartlab_version": __version__, "command": "stein", "model": "Stein 2019 piecewise CAR-T kinetics",
        "citation": CITATION, "input_kind": kind, "inputs": inputs, "options": options,
        "n_subjects": subjects.height, "n_observations": obs.height, "n_blq": int(obs["blq"].sum()),
        "n_dropped": fit.dropped_.height,
        "n_not_measured": n_not_measured,
        "likelihood": f"log-concentration scale; BLQ by {BLQ_METHODS[blq]}",
        "peak_columns": PEAK_COLUMNS,
        "blq_rule": _blq_rule(obs, blq, blq_below_lloq),
    }
    if population:
        files["stein_population.csv"] = fit.summary
        meta.update(loglik=fit.loglik_, loglik_se=fit.loglik_se_, aic=fit.aic_, bic=fit.bic_,
                    n_parameters=fit.n_parameters_, n_chains=fit.n_chains_, shrinkage_sd_pct=fit.shrinkage_,
                    diagnostics=fit.diagnostics_, warnings=list(fit.warnings_), starts=fit.starts_,
                    rse_pct={r["parameter"]: r["rse_pct"] for r in fit.summary.iter_rows(named=True)},
                    omega2_rse_pct={r["parameter"]: r["omega2_rse_pct"] for r in fit.summary.iter_rows(named=True)
                                    if r["kind"] == "theta"},
                    estimator="SAEM (Kuhn & Lavielle 2005); SEs by Louis' observed information")
        if progress is not None:
            progress("VPC", 0, 0)
        vpc = fit.vpc(n_rep=vpc_reps, seed=seed + 1)
        files["stein_vpc.csv"] = vpc
        files["stein_trace.csv"] = fit.trace_
        figs = {"stein_vpc.png": fit.plot(kind="vpc", vpc=vpc), "stein_fits.png": fit.plot(kind="fits")}
    else:
        files["stein_estimates.csv"] = fit.summary
        meta.update(n_converged=int(subjects["converged"].sum()),
                    not_converged=subjects.filter(~pl.col("converged") & pl.col("fitted"))["subject_id"].to_list(),
                    not_fitted={r["subject_id"]: r["message"]
                                for r in subjects.filter(~pl.col("fitted")).iter_rows(named=True)},
                    warnings=[],
                    estimator=("maximum a posteriori per subject (prior: Stein 2019 Table 1)" if prior else
                               "maximum likelihood per subject") + "; SEs from the Hessian (delta method)"
                    + ("; with sigma estimated by ML: the structural parameters' covariance x n/(n - p), their "
                       "95% CIs from t(n - p); sigma the ML sqrt(RSS/n) with its ML SE "
                       "(se_df_correction='residual')" if se_df_correction == "residual" and prior is None
                       and "sigma" not in fix_items else ""))
        figs = {"stein_fits.png": fit.plot()}
    # several infusions read as one dose at the first (dose_handling='first'): named (review 41 F5)
    meta["multiple_infusions"] = subjects.filter(
        pl.col("dosing_note").fill_null("").str.contains(FIRST_DOSE_NOTE, literal=True))["subject_id"].to_list()
    if meta["multiple_infusions"]:
        meta["warnings"].append(
            f"{len(meta['multiple_infusions'])} subject(s) with more than one CAR-T infusion (a re-infusion more "
            f"than {gap:g} days after the previous one, --split-dose-gap-days, beyond a product's labelled split-dose "
            "window; split-dose fractions are not named), "
            f"fitted with time from "
            f"the first and the infusions as one dose (dose_handling='first'; Stein 2019 had one infusion per "
            f"patient): {', '.join(meta['multiple_infusions'][:10])}"
            + (f" (and {len(meta['multiple_infusions']) - 10} more)" if len(meta["multiple_infusions"]) > 10 else "")
            + "; their dosing_note gives the days (--dose-handling superpose adds one curve per infusion)")
    meta["prior_dominated"] = subjects.filter(pl.col("prior_dominated").fill_null(False))["subject_id"].to_list()
    meta["peak_extrapolated"] = subjects.filter(pl.col("peak_extrapolated").fill_null(False))["subject_id"].to_list()
    if meta["peak_extrapolated"]:
        meta["warnings"].append(f"{len(meta['peak_extrapolated'])} subject(s) with the fitted peak after their last "
                                f"sample (peak_window={peak_window!r}): {', '.join(meta['peak_extrapolated'][:10])}")
    meta["auc_extrapolated"] = subjects.filter(pl.col("auc_extrapolated").fill_null(False))["subject_id"].to_list()
    if meta["auc_extrapolated"]:
        meta["warnings"].append(f"{len(meta['auc_extrapolated'])} subject(s) with more than {auc_extrap_warn_pct:g}% of "
                                f"stein_auc_0_28 after their last sample (auc_extrapolated_pct): "
                                f"{', '.join(meta['auc_extrapolated'][:10])}")
    if meta["prior_dominated"]:
        meta["warnings"].append(f"{len(meta['prior_dominated'])} subject(s) prior-dominated (Cmax/AUC are the "
                                f"population's): {', '.join(meta['prior_dominated'][:10])}")
    if n_not_measured:
        kinds = ", ".join(sorted(set(obs.filter(pl.col("source").is_in(list(NOT_MEASURED_SOURCES)))["source"])))
        note = f"{n_not_measured} of {obs.height} observations are not measured values (source {kinds})"
        meta["warning"] = note
        for fig in figs.values():
            fig.suptitle(f"includes synthetic data:\n{n_not_measured} of {obs.height} observations {kinds}",
                         fontsize=7, color="darkred")
            fig.tight_layout(rect=(0, 0, 1, 0.94))
    files["stein_subjects.csv"] = subjects
    files["stein_observations.csv"] = obs
    files["stein_dropped.csv"] = fit.dropped_
    units = {name: stein_units(files[name].columns, conc_u) for name in
             ("stein_population.csv" if population else "stein_estimates.csv", "stein_subjects.csv",
              "stein_observations.csv")}
    meta["units"] = {"conc": conc_u or "not given (--conc-unit)", "time": "d", "columns": units}
    files["stein_units.csv"] = pl.DataFrame(
        [{"file": f, "column": c, "unit": u} for f, cols in units.items() for c, u in cols.items()],
        schema={"file": pl.String, "column": pl.String, "unit": pl.String})
    files.update(figs)
    files["stein_fit.json"] = meta
    files = {k: _csv_ready(v) if isinstance(v, pl.DataFrame) else v for k, v in files.items()}
    try:
        written = _write_files(files, out_dir, force)
    except OSError as exc:  # review 40 B6: the --out given, never the hidden staging folder
        from cartlab.io.atomic import write_error

        raise write_error(out_dir, exc, "the Stein fit") from exc
    meta["written"] = [str(p) for p in written]
    return meta
