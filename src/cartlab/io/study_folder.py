"""Read, validate and write the study folder format v1 (``../shared/spec/study-format.md``).

``read_study(folder)`` returns a canonical :class:`~cartlab.model.Study` or raises
:class:`~cartlab.io.errors.StudyValidationError` listing *every* problem of every file (file, rows,
column, message). ``validate_study(folder)`` returns the issues without raising.
``write_study(study, folder)`` writes the format back; ``read_study(write_study(s))`` equals ``s``
(the values and units as given are kept in ``orig_*`` columns and written back).

All checks are vectorised (polars); a 1.5-million-row observations file validates in seconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import polars as pl

from cartlab.errors import InputError
from cartlab.io.absent_files import absent_file_means, absent_tables
from cartlab.io.clock import day_zero, is_timed, iso_date, wall_clock
from cartlab.io.column_checks import dose_unit_kind, reference_and_specimen, suspicious_values
from cartlab.io.course_checks import (
    ABSENT_FILE_MEANS,
    followup_day_checks,
    mixed_utc_offsets,
    records_after_death,
    unknown_dose_agents,
)
from cartlab.io.dictionary import load_dictionary
from cartlab.io.duplicates import drop_duplicates
from cartlab.io.errors import Issue, StudyValidationError, spelled
from cartlab.io.file_reader import (  # noqa: F401  (SIG_DIGITS, sha256_file, ROW are imported from here)
    MAX_DISTINCT_VALUE_ISSUES,
    RESERVED,
    ROW,
    SIG_DIGITS,
    _FileReader,
    _fmt_range,
    _round_sig,
    sha256_file,
)
from cartlab.io.folder import (
    CSV_DIALECTS,
    describe_path,
    find_tables,
    missing_subjects_issue,
    sniff_dialect,
)
from cartlab.io.infusion_day import first_car_t_not_on_day0, infusion_time_differs
from cartlab.io.schema import DOSE_MAX, DOSE_UNITS, FILES
from cartlab.io.value_text import read_value_text
from cartlab.model import Study, conform, empty_frame
from cartlab.units import UnitError, conversion, parse_unit

# --------------------------------------------------------------------------------------------
# file-specific rules


def _subjects(r: _FileReader) -> pl.DataFrame:
    df = r.df
    assert df is not None
    dup = pl.col("subject_id").is_not_null() & pl.col("subject_id").is_duplicated()
    r.flag(dup, "subject_id", lambda v: f"duplicate subject_id {v!r}: each subject must appear once")
    # ids equal after Unicode NFC normalisation but written differently (review 37 B3)
    key = pl.col("subject_id").str.normalize("NFC")
    r.flag(pl.col("subject_id").is_not_null() & key.is_duplicated() & ~dup, "subject_id",
           lambda v: f"subject ids {' and '.join(spelled(x) for x in v)} differ only in their Unicode "
           "normalisation (the same letters written with other code points): one subject written twice, or two "
           "subjects that print the same; write them the same way, or make them differ visibly",
           by=pl.col("subject_id").unique().sort().implode().over(key))
    if df.height == 0:  # review 37 B5: a header without rows is a failed export, not a study
        r.issue(None, "no subject rows (the file has its header only): nothing to analyse; give one row per "
                      "subject")
    both = pl.col("infusion_date").is_not_null() & pl.col("infusion_datetime").is_not_null()
    r.flag(
        both
        & (
            wall_clock(pl.col("infusion_datetime")).dt.date() != iso_date(pl.col("infusion_date"))
        ),
        "infusion_datetime",
        "infusion_datetime falls on another date than infusion_date",
        by=pl.lit(None),
    )
    return df.with_columns(r.provenance())


def _anchors(subjects: pl.DataFrame) -> pl.DataFrame:
    """Per subject the origin of the day axis: midnight of the infusion date (``cartlab.io.clock``)."""
    anchor = day_zero(pl.col("infusion_datetime"), pl.col("infusion_date"))
    # given but unreadable: the date has its own error in subjects, so no row is told it has none
    given = pl.col("infusion_datetime").is_not_null() | pl.col("infusion_date").is_not_null()
    age = pl.col("age_years") if "age_years" in subjects.columns else pl.lit(None, dtype=pl.Float64)
    # review 39 B2: an age outside its plausible range has its own error: it dates no birth (with -3 every
    # row of the subject would fall "before birth")
    a_lo, a_hi = FILES["subjects"].column("age_years").range or (0, 120)
    age = age.cast(pl.Float64, strict=False)
    age = pl.when((age >= a_lo) & (age <= a_hi)).then(age)
    src = (pl.when(pl.col("infusion_datetime").is_not_null()).then(pl.lit("infusion_datetime "))
           .otherwise(pl.lit("infusion_date ")) + pl.coalesce(pl.col("infusion_datetime"), pl.col("infusion_date")))
    return subjects.select("subject_id", anchor.alias("__anchor"), given.alias("__anchor_given"),
                           src.alias("__anchor_from"), age.cast(pl.Float64, strict=False).alias("__age"),
                           pl.lit(True).alias("__known")).unique("subject_id", keep="first")


def _doses(r: _FileReader) -> pl.DataFrame:
    df = r.df
    assert df is not None
    pairs = df.select(pl.col("unit")).drop_nulls().unique(maintain_order=True)
    scale: dict[str, float] = {}
    canon: dict[str, str] = {}
    for (u,) in pairs.iter_rows():
        try:
            c, s = dose_unit(u)
            scale[u], canon[u] = s, c
        except UnitError as exc:
            r.flag(pl.col("unit") == u, "unit", f"{exc}; dose units: {', '.join(DOSE_UNITS)}", by=pl.lit(None))
    df = df.with_columns(
        pl.col("dose").alias("orig_dose"),
        pl.col("unit").alias("orig_unit"),
        _round_sig(pl.col("dose") * pl.col("unit").replace_strict(scale, default=None, return_dtype=pl.Float64)).alias("dose"),
        pl.col("unit").replace_strict(canon, default=None, return_dtype=pl.String).alias("unit"),
    )
    r.df = df
    top = pl.col("unit").replace_strict(DOSE_MAX, default=None, return_dtype=pl.Float64)
    r.flag(top.is_not_null() & (pl.col("dose") > top), "dose", lambda v: f"dose {v[0]} {v[1]} is above the plausible "
           f"maximum {v[2]} {v[3]}", by=pl.concat_list(pl.col("orig_dose").cast(pl.String), pl.col("orig_unit"),
                                                      top.cast(pl.String), pl.col("unit")))
    r.flag(pl.col("dose") == 0, "dose", "a dose of 0 is recorded as given (a dose not given is better left out: "
           "kinetics, the twin and the protocol's dose checks read this row as an administration)",
           by=pl.lit(None), severity="warning")
    return df.with_columns(r.provenance())


def _g(x) -> str:
    """A number written as text, shortly: '5000000000.0' -> 5e+09, '101.0' -> 101."""
    return f"{float(x):g}" if x not in (None, "") else ""


#: the parameter dictionary as the README names it (the codes, their units and other names)
PARAMS_FILE = "src/cartlab/io/params_v1.yaml"


def _near_param(v: str, codes, alias: dict[str, str]) -> str:
    """The closest code (or other name, given as its code) to an unknown param, and where the codes are
    listed (review 47 F10): " (did you mean CD7T?; the codes are in src/cartlab/io/params_v1.yaml)"."""
    import difflib

    near = difflib.get_close_matches(str(v), [*codes, *alias], n=1, cutoff=0.75)
    mean = f"did you mean {alias.get(near[0], near[0])}?; " if near else ""
    return f" ({mean}the codes are in {PARAMS_FILE})"


def _implausible(v) -> str:
    """The message for the values of one parameter and unit outside the parameter's plausible range on one
    side; ``v`` = (param, lowest orig value, lowest canonical value, highest orig value, highest canonical
    value, orig unit, canonical unit, low, high, row count). A score without unit is just out of range."""
    param, orig, val, orig_hi, val_hi, ounit, cunit, lo, hi, n = v
    g = lambda x: f"{float(x):g}" if x not in (None, "") else ""  # noqa: E731
    one = orig == orig_hi
    what = f"{param} value {g(orig)}" if one else f"{param} values {g(orig)}-{g(orig_hi)}"
    verb = "is" if one else "are"
    if not cunit:
        return f"{what} {verb} outside its range [{g(lo)}, {g(hi)}]" + ("" if one else f" ({n} rows)")
    conv = f"= {g(val)} {cunit}" if one else f"= {g(val)}-{g(val_hi)} {cunit}; {n} rows"
    return (f"{what} {ounit or '(no unit)'} ({conv}) {verb} outside the plausible range "
            f"[{g(lo)}, {g(hi)}] {cunit}: is the unit right?")


def dose_unit(unit: str) -> tuple[str, float]:
    """Canonical dose unit (one of DOSE_UNITS) and the factor to it.

    Cells are counted (dimensionless) like mg/kg is a mass ratio, so the family is chosen by the
    spelling: a unit naming cells converts within cells/kg and cells; any other within mg/m2, mg,
    mg/kg.
    """
    s = unit.replace("m^2", "m2")
    if s in DOSE_UNITS:
        return s, 1.0
    if s.lower() in DOSE_UNITS:  # the spec's closed list, matched in any case as the other vocabularies
        return s.lower(), 1.0
    unit = re.sub(r"\bcells?\b", "cells", unit, flags=re.IGNORECASE)  # "10^6 Cells/kg"
    family = ("cells/kg", "cells") if re.search(r"\bcells?\b", unit) else ("mg/m2", "mg", "mg/kg")
    parse_unit(unit)  # raises UnitError for an unknown spelling
    for target in family:
        try:
            return target, conversion(unit, target).scale
        except UnitError:
            continue
    hint = "" if "cells/kg" in family else " (a cell dose names its cells: 10^6 cells/kg, cells)"
    raise UnitError(f"dose unit {unit!r} cannot be converted to any of {', '.join(family)}{hint}")


def _observations(r: _FileReader) -> pl.DataFrame:
    df = r.df
    assert df is not None
    d = load_dictionary()
    df = df.with_columns(pl.col("param").str.to_uppercase())
    r.df = df
    codes = d.codes()
    alias = {a.upper(): p.code for p in d.params.values() for a in p.aliases}  # review 37 C1: ANC -> NEUT
    r.flag(
        pl.col("param").is_not_null() & ~pl.col("param").is_in(codes),
        "param",
        lambda v: f"unknown param {v!r}: not in the parameter dictionary"
        + (f" ({v} is another name of {alias[v]}: write {alias[v]})" if v in alias else _near_param(v, codes, alias)),
    )
    unreadable = [n for i in r.issues if i.file == r.fname and i.column == "value" for n in i.rows]
    r.flag(  # a value that is given but not a number has its own error already
        pl.col("value").is_null() & pl.col("value_text").is_null() & ~pl.col(ROW).is_in(unreadable),
        "value",
        "neither value nor value_text is given"
        # the file has no value_text column at all (review 37 C5): say so, LOC and "<x" results need it
        + ("" if "value_text" in r.header else
           f" ({r.fname} has no value_text column: a categorical result such as LOC, or a censored one "
           "such as '<30', is given in value_text)"),
        by=pl.lit(None),
    )
    read_value_text(r, d)  # censored results ("<50": bound in the row's unit) and categorical codes
    df = r.df
    for p in d.params.values():
        if p.integer:
            r.flag(
                (pl.col("param") == p.code) & pl.col("value").is_not_null() & (pl.col("value") % 1 != 0),
                "value",
                lambda v, p=p: f"{p.code} is an integer score, got {v}",
            )
    # unit conversion, once per distinct (param, unit)
    needs_unit = (
        pl.col("value").is_not_null()
        | pl.col("__censor_limit").is_not_null()
        | pl.col("lln").is_not_null()
        | pl.col("uln").is_not_null()
        | pl.col("lloq").is_not_null()
    )
    pairs = (
        df.filter(pl.col("param").is_in(codes) & (needs_unit | pl.col("unit").is_not_null()))
        .select("param", pl.col("unit").fill_null(""))
        .unique(maintain_order=True)
    )
    conv_rows = []
    no_unit_column = "unit" not in {h.lower() for h in r.header}
    unitless = []  # params that need a unit when the file has no unit column: one message for all
    for code, unit in pairs.iter_rows():
        p = d[code]
        try:
            c = p.conversion_from(unit)
            conv_rows.append((code, unit, c.scale, c.offset, p.unit))
        except UnitError as exc:
            if no_unit_column:
                unitless.append(code)
                continue
            r.flag(
                (pl.col("param") == code) & (pl.col("unit").fill_null("") == unit),
                "unit",
                f"{exc} (param {code})",
                by=pl.lit(None),
            )
    if unitless:  # named with the rows that need a unit (the first few shown, the count of the rest)
        need = df.filter(pl.col("param").is_in(unitless) & needs_unit)[ROW].sort().to_list()
        r.issue("unit", f"the file has no 'unit' column, but values of {', '.join(unitless)} need their unit "
                        f"(e.g. 10^9/L, g/L, C): add a 'unit' column and give their unit ({len(need):,} "
                        f"row{'s' if len(need) != 1 else ''})", need)
    conv = pl.DataFrame(
        conv_rows,
        schema={"param": pl.String, "__unit": pl.String, "__scale": pl.Float64, "__offset": pl.Float64, "__canon": pl.String},
        orient="row",
    )
    df = df.with_columns(pl.col("unit").fill_null("").alias("__unit")).join(
        conv, on=["param", "__unit"], how="left"
    ).sort(ROW)

    def to_canon(c: str) -> pl.Expr:
        return _round_sig(pl.col(c) * pl.col("__scale") + pl.col("__offset"))

    df = df.with_columns(
        pl.col("value").alias("orig_value"),
        pl.col("unit").alias("orig_unit"),
        pl.col("lln").alias("orig_lln"),
        pl.col("uln").alias("orig_uln"),
        pl.col("lloq").alias("orig_lloq"),
        to_canon("value").alias("value"),
        to_canon("lln").alias("lln"),
        to_canon("uln").alias("uln"),
        to_canon("lloq").alias("lloq"),
        to_canon("__censor_limit").alias("censor_limit"),
        pl.coalesce(pl.col("__canon"), pl.col("param").replace_strict({k: v.unit for k, v in d.params.items()}, default=None)).alias("unit"),
    )
    r.df = df
    # plausibility of converted values (catches a wrong unit: TEMP 101 written as C)
    lo = pl.col("param").replace_strict({k: v.plausible[0] for k, v in d.params.items() if v.plausible}, default=None, return_dtype=pl.Float64)
    hi = pl.col("param").replace_strict({k: v.plausible[1] for k, v in d.params.items() if v.plausible}, default=None, return_dtype=pl.Float64)
    group = [pl.col("param"), pl.col("orig_unit").fill_null(""), pl.col("value") < lo]
    r.flag(
        # a NaN or infinite value already has its error ("value must be a number"): not also this one
        pl.col("value").is_finite() & lo.is_not_null() & ((pl.col("value") < lo) | (pl.col("value") > hi)),
        "value",
        _implausible,
        # session 48: one error per parameter, unit as written and side, with the values' range and count
        # (a creatinine column in umol/L labelled mg/dL gave one line per distinct value)
        by=pl.concat_list(
            pl.col("param"),
            *[pl.col(x).min().over(group).cast(pl.String) for x in ("orig_value", "value")],
            *[pl.col(x).max().over(group).cast(pl.String) for x in ("orig_value", "value")],
            pl.col("orig_unit"),
            pl.col("unit"),
            lo.cast(pl.String),
            hi.cast(pl.String),
            pl.len().over(group).cast(pl.String),
        ),
    )
    for c in ("lln", "uln"):  # a reference limit no value of the param can reach (uln 1e300)
        # review 47 F3: the limit in its own unit and converted, as the value and lloq messages say it
        r.flag(pl.col(c).is_finite() & lo.is_not_null() & ((pl.col(c) < lo) | (pl.col(c) > hi)), c,
               lambda v, c=c: f"{c} {_g(v[1])} {v[2] or '(no unit)'} of {v[0]} (= {_g(v[3])} {v[4]}) is outside the "
               f"plausible range of its values [{_g(v[5])}, {_g(v[6])}] {v[4]}: is the unit right?",
               by=pl.concat_list(pl.col("param"), pl.col(f"orig_{c}").cast(pl.String), pl.col("orig_unit"),
                                 pl.col(c).cast(pl.String), pl.col("unit"), lo.cast(pl.String), hi.cast(pl.String)))
    # review 39 A1: lloq (in the row's unit) and a censored bound ('>101' C) are checked as value is: a
    # wrong unit there silently makes a peak BLQ or a fever out of 101 C
    r.flag(pl.col("lloq").is_finite() & lo.is_not_null() & ((pl.col("lloq") < lo) | (pl.col("lloq") > hi)), "lloq",
           lambda v: f"lloq {_g(v[1])} {v[2] or '(no unit)'} of {v[0]} (= {_g(v[3])} {v[4]}) is outside the plausible "
           f"range of its values [{_g(v[5])}, {_g(v[6])}] {v[4]}: is the unit right?",
           by=pl.concat_list(pl.col("param"), pl.col("orig_lloq").cast(pl.String), pl.col("orig_unit"),
                             pl.col("lloq").cast(pl.String), pl.col("unit"), lo.cast(pl.String), hi.cast(pl.String)))
    lim = pl.col("censor_limit")
    # a BLQ word's bound is the row's lloq, which has its own message above (a "<x" has a digit)
    r.flag(lim.is_finite() & lo.is_not_null() & pl.col("value_text").str.contains(r"\d").fill_null(False) & ((lim < lo) | (lim > hi)), "value_text",
           lambda v: f"{v[0]} value_text {v[1]!r} {v[2] or '(no unit)'}: its bound (= {_g(v[3])} {v[4]}) is outside "
           f"the plausible range [{_g(v[5])}, {_g(v[6])}] {v[4]}: is the unit right?",
           by=pl.concat_list(pl.col("param"), pl.col("value_text"), pl.col("orig_unit"), lim.cast(pl.String),
                             pl.col("unit"), lo.cast(pl.String), hi.cast(pl.String)))
    reference_and_specimen(r)  # review 39 C2: lln > uln, marrow blasts from blood (warnings)
    suspicious_values(r, d)  # session 45: values that usually mean a wrong unit (warnings)
    return df.with_columns(r.provenance())


def _interventions(r: _FileReader) -> pl.DataFrame:
    df = r.df
    assert df is not None
    # a device that was given but is not in the vocabulary already has its error
    unknown = [row for i in r.issues if i.file == r.fname and i.column == "o2_device" for row in i.rows]
    r.flag(
        (pl.col("category") == "oxygen") & pl.col("o2_device").is_null() & ~pl.col(ROW).is_in(unknown),
        "o2_device",
        "o2_device is required for oxygen",
        by=pl.lit(None),
    )
    # spec "Derivation conventions": days are calendar days, and an intervention covers every day from
    # start_day to end_day inclusive: an end on the start's calendar day is no error (a date-only end
    # after a timed start, start_day 2.5 with end_day 2); a timed end before a timed start is
    start, end = pl.col("start_day"), pl.col("end_day")
    before = end.is_not_null() & start.is_not_null() & (end < start)
    r.flag(
        before & ((end.floor() < start.floor()) | (is_timed("start_day", "start_datetime") & is_timed("end_day", "end_datetime"))),
        "end_day",
        "the intervention ends before it starts",
        by=pl.lit(None),
    )
    # dose_unit is optional free text (spec: "e.g. 0.1, ug/kg/min"); only the vasopressor rates of the
    # older CRS scales convert it (crs_vaso_course, which names a unit it cannot convert as the
    # missing input): an unknown unit is kept as written, with a warning (session 34; an error before)
    for (u,) in df.select(pl.col("dose_unit")).drop_nulls().unique(maintain_order=True).iter_rows():
        try:
            parse_unit(u)
        except UnitError as exc:
            r.flag(pl.col("dose_unit") == u, "dose_unit",
                   f"{exc}: kept as written (a vasopressor rate in it is unknown to the older CRS scales' "
                   "vasopressor rules, which name it as a missing input; nothing else reads dose_unit)", by=pl.lit(None), severity="warning")
    return df.with_columns(r.provenance())


def _events(r: _FileReader) -> pl.DataFrame:
    assert r.df is not None
    return r.df.with_columns(r.provenance())


_RULES = {
    "doses": _doses,
    "observations": _observations,
    "interventions": _interventions,
    "events": _events,
}


# --------------------------------------------------------------------------------------------
# public API


def check_study_path(folder: str | Path) -> Path:
    """``folder`` as a Path if it is a folder; else an error that says what the path is."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StudyValidationError([Issue(str(folder), None, describe_path(folder))], str(folder))
    return folder


def _read(
    folder: str | Path,
    study_id: str | None,
    progress: Callable[[str], None] | None,
    csv_dialect: str = "standard",
) -> tuple[Study | None, list[Issue]]:
    """The study and every issue, each issue told where its file's rows sit (``Issue.lines``)."""
    line_maps: dict[str, dict[int, int]] = {}
    study, issues = _read_files(folder, study_id, progress, csv_dialect, line_maps)
    for i in issues:
        if i.lines is None and i.file in line_maps:
            i.lines = line_maps[i.file]
    return study, issues


def _read_files(
    folder: str | Path,
    study_id: str | None,
    progress: Callable[[str], None] | None,
    csv_dialect: str,
    line_maps: dict[str, dict[int, int]],
) -> tuple[Study | None, list[Issue]]:
    folder = Path(folder)
    if csv_dialect not in CSV_DIALECTS:
        raise InputError(f"unknown CSV dialect {csv_dialect!r}; choose one of: {', '.join(CSV_DIALECTS)}")
    if not folder.is_dir():
        return None, [Issue(str(folder), None, describe_path(folder))]
    step = progress or (lambda name: None)
    contents, issues = find_tables(folder)
    # the dialect of every CSV file first: one message per file, not a cascade of row errors
    wrong_dialect = set()
    for name, path in contents.tables.items():
        numeric = tuple(c.name for c in FILES[name].columns if c.kind == "num")
        if path.suffix.lower() == ".csv" and (issue := sniff_dialect(path, csv_dialect, numeric)) is not None:
            issues.append(issue)
            wrong_dialect.add(name)
    if "subjects" not in contents.tables:
        if not any(i.severity == "error" and i.file.lower().startswith("subjects.") for i in issues):
            issues.append(missing_subjects_issue(contents))
        return None, issues
    if "subjects" in wrong_dialect:
        return None, issues

    frames: dict[str, pl.DataFrame] = {}
    sources = []
    path = contents.tables["subjects"]
    step("subjects")
    sr = _FileReader(FILES["subjects"], path, issues, csv_dialect)
    loaded = sr.load()
    if sr.lines is not None:
        line_maps[path.name] = sr.lines
    if not loaded:
        return None, issues
    sr.parse_columns()
    subjects = _subjects(sr)
    frames["subjects"] = subjects
    sources.append((path.name, sr.fmt, sr.sha256, subjects.height))
    known = subjects["subject_id"].drop_nulls()
    anchors = _anchors(subjects)

    for name, rule in _RULES.items():
        path = contents.tables.get(name)
        if path is None or name in wrong_dialect:
            continue
        step(name)
        fr = _FileReader(FILES[name], path, issues, csv_dialect)
        loaded = fr.load()
        if fr.lines is not None:
            line_maps[path.name] = fr.lines
        if not loaded:
            continue
        fr.parse_columns()
        fr.check_subjects_known(known)
        fr.resolve_times(anchors)
        in_error = frozenset(r for i in issues if i.file == path.name and i.severity == "error" for r in i.rows or ())
        frames[name] = drop_duplicates(rule(fr), name, path.name, issues, skip_rows=in_error)
        sources.append((path.name, fr.fmt, fr.sha256, frames[name].height))
        if name == "doses":  # day 0 is the first CAR-T infusion (spec "Time")
            issues.extend(first_car_t_not_on_day0(frames[name], subjects, path.name, ROW))
            issues.extend(infusion_time_differs(frames[name], subjects, path.name, ROW))  # review 39 B7

    if any(i.severity == "error" for i in issues):
        return None, issues
    issues.extend(records_after_death(frames, ROW))
    issues.extend(mixed_utc_offsets(frames, ROW))
    issues.extend(followup_day_checks(frames, ROW))
    issues.extend(unknown_dose_agents(frames, ROW))  # session 38 (review s38 A1)
    if "doses" in frames:  # review 39 B3: a CAR-T dose in mg/m2, a fludarabine dose in cells/kg
        issues.extend(dose_unit_kind(frames["doses"], contents.tables["doses"].name, ROW))
    if "observations" in frames:  # a course without these files: say what is then read as not given
        # named in the study's own file format (review 39 C2: a Parquet study is told interventions.parquet)
        ext = ".parquet" if contents.tables["observations"].suffix.lower() == ".parquet" else ".csv"
        for name in ABSENT_FILE_MEANS:  # review 39 diff2 C1: the text names interventions.parquet too
            if name not in contents.tables:
                issues.append(Issue(f"{name}{ext}", None, f"not given: {absent_file_means(name, ext)}",
                                    severity="warning"))
    study = Study(
        study_id=study_id or folder.resolve().name,
        subjects=conform(frames["subjects"], "subjects"),
        sources=pl.DataFrame(
            sources,
            schema={"file": pl.String, "format": pl.String, "sha256": pl.String, "n_rows": pl.Int64},
            orient="row",
        ),
        **{
            name: conform(frames[name], name) if name in frames else empty_frame(name)
            for name in _RULES
        },
        absent=absent_tables(contents.tables),  # a file not given is not an empty one (Study.absent)
    )
    return study, issues


def read_study(
    folder: str | Path,
    study_id: str | None = None,
    *,
    progress: Callable[[str], None] | None = None,
    csv_dialect: str = "standard",
) -> Study:
    """Read and validate a study folder into canonical form.

    Raises :class:`StudyValidationError` listing every problem (file, rows, column) of every file.
    ``study_id`` defaults to the folder's name. ``csv_dialect`` is ``standard`` (comma-separated,
    decimal points), ``european`` (semicolons, decimal commas), ``semicolon`` or ``tab``. Warnings
    (files not read, duplicate rows dropped) are kept in ``study.warnings``.

    >>> from cartlab.datasets import seed_case_path
    >>> read_study(seed_case_path()).subjects["subject_id"].to_list()
    ['CD7-AML-001']
    """
    study, issues = _read(folder, study_id, progress, csv_dialect)
    if study is None:
        raise StudyValidationError(issues, str(folder))
    study.warnings = [i for i in issues if i.severity != "error"]
    return study


def validate_study(folder: str | Path, csv_dialect: str = "standard") -> list[Issue]:
    """Every issue (errors and warnings) of a study folder; no error means it is valid."""
    _, issues = _read(folder, None, None, csv_dialect)
    return issues
