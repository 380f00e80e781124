"""`cartlab ctcae`: grade a plain CSV lab table (the contract of ../shared/conformance/README.md).

The table is read, graded by :func:`cartlab.grading.ctcae.grade_labs` and written back with every
input column unchanged plus ``grade``, ``grade_max`` and ``grade_reason``. Besides the CTCAE term names and L/H
directions of the contract, a row may name what a user writes first:

* a direction ``low``/``high`` (``decreased``, ``increased``, ``lo``, ``hi`` ... any case);
* instead of a CTCAE term, a parameter: a cartlab code (``NEUT``), its dictionary name or a common
  abbreviation (``ANC``, ``PLT``, ``Hb``, ``Na``; ``aliases`` in ``io/params_v1.yaml``). Its value,
  reference range and baseline are then converted with pint from the row's unit (``/uL``,
  ``mg/dL`` ...) to the parameter's canonical unit, as the study reader does, and graded by the term
  that parameter maps to in that direction. ``grade_reason`` says how the row was read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from cartlab.errors import InputError
from cartlab.io.atomic import atomic_file, check_output_path, write_error

#: direction spellings -> L/H
DIRECTIONS = {
    **dict.fromkeys(("l", "low", "lo", "decreased", "decrease", "down", "below", "hypo"), "L"),
    **dict.fromkeys(("h", "high", "hi", "increased", "increase", "up", "above", "hyper"), "H"),
}
_READ_AS = "_read_as"


def _param_lookup() -> dict[str, str]:
    """Upper-cased code, name and alias -> cartlab parameter code."""
    from cartlab.io.dictionary import load_dictionary

    out: dict[str, str] = {}
    for code, p in load_dictionary().params.items():
        for name in (code, p.label, *p.aliases):
            out.setdefault(name.strip().upper(), code)
    return out


#: the numeric columns of the contract; an empty cell is missing, anything else must be a finite number
_NUMERIC_COLS = ("aval", "anrlo", "anrhi", "base", "pchg")
#: a censored result in aval: "<0.5", "> 1000", "<=2" (the study reader's value_text forms)
_CENSORED = __import__("re").compile(r"^\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
#: the value columns that are amounts of the parameter (a percent change may be negative)
_AMOUNT_COLS = ("aval", "anrlo", "anrhi", "base")


#: the study format's names of the contract's columns (study-format.md observations: value, lln, uln;
#: a baseline), read as the contract's (review 41 F3); a table with both a name and its alias is refused
ALIASES = {"lln": "anrlo", "uln": "anrhi", "value": "aval", "baseline": "base"}
#: the number columns of a table (and their aliases): a decimal comma there is read with --csv-dialect european
NUMERIC_COLUMNS = ("aval", "anrlo", "anrhi", "base", "pchg", *ALIASES)


def table_columns(raw: pl.DataFrame, path: Any) -> dict[str, str]:
    """Lower-cased contract column name -> the table's column (``lln`` read as ``anrlo`` ...: :data:`ALIASES`).
    A table with a column and its alias (``anrlo`` and ``lln``) is refused: which one holds the value?"""
    lower = {c.lower(): c for c in raw.columns}
    for alias, name in ALIASES.items():
        if alias in lower and name in lower:
            raise InputError(f"{path}: columns {lower[name]!r} and {lower[alias]!r} are the same input ({alias} is "
                             f"another name of {name}); keep one", hint="Nothing was written.")
        if alias in lower:
            lower[name] = lower.pop(alias)
    return lower


def alias_notes(raw: pl.DataFrame, lower: dict[str, str]) -> list[str | None]:
    """Per row, the aliased columns it has a value in: "column 'lln' read as anrlo" (null: none)."""
    used = [(lower[name], name) for name in ALIASES.values() if name in lower and lower[name].lower() != name]
    out: list[str | None] = []
    for r in raw.select([c for c, _ in used]).iter_rows() if used else [()] * raw.height:
        text = "; ".join(f"column {c!r} read as {name}" for (c, name), v in zip(used, r)
                         if v is not None and str(v).strip())
        out.append(text or None)
    return out


def _where(path: Any, i: int, col: str) -> str:
    """``FILE: row N (line M), column 'c'`` for the 0-based data row ``i`` (the header is line 1)."""
    return f"{path}: row {i + 1} (line {i + 2}), column {col!r}"


def accepted_directions() -> str:
    """The direction spellings a table may use, as a list for a message."""
    return ", ".join(["L", "H", *(k for k in DIRECTIONS if k not in ("l", "h"))])


def check_table(raw: pl.DataFrame, path: Any, terms: pl.DataFrame) -> None:
    """Refuse a table the grader would silently misread; raise one :class:`InputError` naming the
    file, row (and CSV line) and column of the first problem (the next few in its hint):

    * a numeric cell (``aval``, ``anrlo``, ``anrhi``, ``base``, ``pchg``) that is not a finite
      number (``abc``, ``NaN``, ``inf``; an empty cell is missing and allowed);
    * a negative amount (``aval``, ``anrlo``, ``anrhi``, ``base``) of a parameter that cannot be
      negative: its plausible range (``plausible`` in ``io/params_v1.yaml``, the ranges the study
      reader checks) starts at 0 or above. A CTCAE term is checked through the parameters it maps to;
    * a direction that is not one of :func:`accepted_directions`;
    * a unit pint does not know, or (for a parameter) one it does not accept.
    """
    import math

    from cartlab.io.dictionary import load_dictionary
    from cartlab.units import UnitError, parse_unit

    lower = table_columns(raw, path)
    d = load_dictionary()
    lookup = _param_lookup()
    term_params: dict[str, list[str]] = {}
    for t, p in zip(terms["term"].to_list(), terms["params"].to_list()):
        term_params.setdefault(str(t).strip().upper(), []).extend(c.strip() for c in (p or "").split(",") if c.strip())
    problems: list[str] = []
    for i, r in enumerate(raw.iter_rows(named=True)):
        def cell(col: str) -> str | None:
            v = r.get(lower[col]) if col in lower else None
            return None if v is None or not str(v).strip() else str(v).strip()

        values: dict[str, float] = {}
        for col in _NUMERIC_COLS:
            v = cell(col)
            if v is None:
                continue
            m = _CENSORED.match(v) if col == "aval" else None  # "<0.5": a censored result (review 37 R37-6)
            try:
                x = float(m.group(2) if m else v)
            except ValueError:
                x = math.nan
            if not math.isfinite(x):
                problems.append(f"{_where(path, i, lower[col])}: {v!r} is not a number"
                                + (" nor a censored result ('<0.5', '>1000', '<=x', '>=x')" if col == "aval" else ""))
            else:
                values[col] = x
        direction = cell("direction")
        if direction is not None and direction.lower() not in DIRECTIONS:
            problems.append(f"{_where(path, i, lower['direction'])}: {direction!r} is not a direction; "
                            f"accepted (any case): {accepted_directions()}")
        term, code = cell("term"), cell("param")
        codes: list[str] = []
        if code is not None and code.upper() in d.params:
            codes = [code.upper()]
        elif term is not None:
            codes = term_params.get(term.upper()) or [c for c in [lookup.get(term.upper())] if c]
        unit = cell("unit")
        if unit is not None:
            try:
                if len(codes) == 1 and term_params.get((term or "").upper()) is None:
                    d[codes[0]].conversion_from(unit)  # a parameter: a unit it accepts
                else:
                    parse_unit(unit)
            except UnitError as exc:
                problems.append(f"{_where(path, i, lower['unit'])}: {exc}")
        ranges = [d[c].plausible for c in codes if c in d.params]
        if ranges and all(rg is not None and rg[0] >= 0 for rg in ranges):
            for col in _AMOUNT_COLS:
                if values.get(col, 0.0) < 0:
                    written = term or code or ""
                    name = written if written.upper() in codes else f"{written} ({' / '.join(codes)})"
                    lo, hi = ranges[0]
                    problems.append(f"{_where(path, i, lower[col])}: {name} value {values[col]:g} is negative; "
                                    f"it cannot be below 0 (plausible range [{lo:g}, {hi:g}] {d[codes[0]].unit})")
    if problems:
        more = [m.removeprefix(f"{path}: ") for m in problems[1:]]
        hint = ("also: " + "; ".join(more[:5]) + (f"; and {len(more) - 5} more" if len(more) > 5 else "")
                + ". Nothing was written.") if more else "Nothing was written."
        raise InputError(problems[0], hint=hint)


def check_output_file(out: str | Path, inputs: Any = (), *, force: bool = False,
                      what: str = "the output") -> Path:
    """The output file ``out`` may be written: not a folder, no file among its parents, and, unless
    ``force``, not an existing file (an input table above all): an :class:`InputError` (exit 2)."""
    import os

    out = Path(out)
    if out.is_dir():
        raise InputError(f"{out}: a folder; give the path of the CSV file to write {what} to")
    check_output_path(out, "file", what)
    if out.exists() and not force:
        def same(p: Any) -> bool:
            try:
                return os.path.samefile(out, p)
            except OSError:
                return False

        why = " and it is an input table" if any(same(p) for p in inputs) else ""
        raise InputError(f"{out} exists{why}: cartlab will not overwrite it",
                         hint="choose another file, or pass --force to replace it")
    return out


def normalise_user_names(work: pl.DataFrame, terms: pl.DataFrame, source: Any = None) -> pl.DataFrame:
    """Directions and parameter names as a user writes them, in the contract's terms (see module doc).

    Rows whose term is a CTCAE term are left exactly as they are (admiral's contract). ``source``
    (the file) is named in an error."""
    from cartlab.io.dictionary import load_dictionary
    from cartlab.units import UnitError

    known_terms = {t.strip().upper() for t in terms["term"].to_list()}
    lookup = _param_lookup()
    d = load_dictionary()
    rows = work.to_dicts()
    notes: list[str | None] = []
    for i, r in enumerate(rows):
        note = []
        raw_dir = r.get("direction")
        if raw_dir is not None and str(raw_dir).strip().upper() not in ("L", "H"):
            mapped = DIRECTIONS.get(str(raw_dir).strip().lower())
            if mapped:
                r["direction"] = mapped
                note.append(f"direction {raw_dir!r} read as {mapped}")
        term = r.get("term")
        if term is not None and str(term).strip().upper() not in known_terms and not r.get("param"):
            code = lookup.get(str(term).strip().upper())
            if code is not None:
                r["param"], r["term"] = code, None
                note.append(f"{term!r} read as parameter {code}")
        code = r.get("param")
        if code is not None and str(code).strip().upper() in d.params and r.get("term") in (None, ""):
            p = d[str(code).strip().upper()]
            unit = r.get("unit")
            if unit not in (None, "") and unit != p.unit:
                try:
                    conv = p.conversion_from(unit)
                except UnitError as exc:
                    raise InputError(f"{_where(source if source is not None else 'the table', i, 'unit')}: "
                                     f"{exc}") from None
                for col in ("aval", "anrlo", "anrhi", "base"):
                    v = r.get(col)
                    if v not in (None, ""):
                        r[col] = str(float(v) * conv.scale + conv.offset)
                note.append(f"{unit} converted to {p.unit}")
                r["unit"] = p.unit
        notes.append("; ".join(note) or None)
    had_param = "param" in work.columns
    cols = list(work.columns) + [c for c in ("param",) if c not in work.columns]
    out = pl.DataFrame(rows, schema={c: pl.String for c in cols}, orient="row") if rows else work
    if not had_param and "param" in out.columns and out["param"].null_count() == out.height:
        out = out.drop("param")  # no row named a parameter: the table is graded exactly as given
    return out.with_columns(pl.Series(_READ_AS, notes if rows else [], dtype=pl.String))


def ctcae_command(input_csv: str | Path, out_csv: str | Path, *, units: str | None = None,
                  options: Any = None, force: bool = True, csv_dialect: str = "standard") -> dict[str, Any]:
    """Grade a plain CSV table (contract: ``../shared/conformance/README.md``).

    The input needs ``term`` (or ``param``), ``direction`` and ``aval`` (column names case-insensitive;
    ``lln``/``uln``/``value``/``baseline`` are read as ``anrlo``/``anrhi``/``aval``/``base``: :data:`ALIASES`)
    and may have ``anrlo``, ``anrhi``, ``base``, ``unit``, ``bnrind``, ``pchg``, ``high_indicator``,
    ``low_indicator`` and ``metadata`` (admiral criteria name: ``..._uscv`` = US units, else SI;
    otherwise ``units``/``options.units`` decide, "auto" by the unit). The output has the same rows in
    the same order with every input column unchanged, plus ``grade`` ("0"-"4", empty when not
    gradable), ``grade_max`` (the highest grade the value leaves open: a censored result or a missing
    baseline; equal to grade when settled) and ``grade_reason`` (the rule in words and its id in brackets).

    Bad input (see :func:`check_table`; a file in another CSV dialect than ``csv_dialect``) raises an
    :class:`InputError` naming the file, row and column, and nothing is written. Unless ``force``,
    an existing ``out_csv`` (the input above all) is refused (``cartlab ctcae`` without --force).

    Returns a summary: rows, graded, not_gradable, by_grade, criteria, unknown_terms and, when the
    input has an ``expected_grade`` column, expected_agree / expected_mismatch and
    expected_missing_limit_range (of the mismatches: expected empty, graded as a range because the
    value bounds the grade without the missing reference limit).
    """
    from dataclasses import fields

    from cartlab.grading.ctcae import (
        INPUTS,
        CtcaeOptions,
        criteria_names,
        ctcae_terms,
        grade_labs,
        metadata_units,
    )
    from cartlab.io.folder import read_plain_csv

    options = options or CtcaeOptions()
    if units is not None:
        options = CtcaeOptions(**{**{f.name: getattr(options, f.name) for f in fields(options)}, "units": units})
    check_output_file(out_csv, [input_csv], force=force, what="the graded table")
    # review 47 F5: read in csv_dialect (--csv-dialect) as the study reader reads a folder; a file in
    # another dialect is one error worded as the study reader's (sniffed in every column)
    raw = read_plain_csv(Path(input_csv), csv_dialect, numeric=NUMERIC_COLUMNS)
    clash = [c for c in raw.columns if c.lower() in ("grade", "grade_max", "grade_reason")]
    if clash:
        raise InputError(f"{input_csv}: the input already has column(s) {clash}")
    lower = table_columns(raw, input_csv)
    need = [c for c in ("term", "direction", "aval") if c not in lower]
    if need and not ("term" in need and "param" in lower and len(need) == 1):
        raise InputError(
            f"{input_csv}: the table lacks column(s) {need}",
            hint="needed: term (a CTCAE term, or a parameter such as ANC, PLT, NEUT), direction (L/H, "
                 "low/high) and aval (or value); optional: anrlo (or lln), anrhi (or uln), base (or baseline), "
                 "unit, bnrind, pchg. "
                 "cartlab ctcae --list-terms lists the terms")
    work = raw.select([pl.col(lower[c]).alias(c) for c in INPUTS if c in lower])
    terms = ctcae_terms(options=options)
    check_table(raw, input_csv, terms)
    # a censored aval ("<0.5"): its bound is graded (unit-converted as any value) and its far end too
    pattern = _CENSORED.pattern
    cens = work["aval"].cast(pl.String).str.extract(pattern, 1)
    work = work.with_columns(pl.when(cens.is_not_null()).then(pl.col("aval").cast(pl.String).str.extract(pattern, 2))
                             .otherwise(pl.col("aval").cast(pl.String)).alias("aval"))
    written = _bound_as_written(raw, lower, cens)
    work = normalise_user_names(work, terms, input_csv)
    aliased = pl.Series(alias_notes(raw, lower), dtype=pl.String)
    if aliased.null_count() < aliased.len():  # "column 'lln' read as anrlo" leads the row's reading notes
        work = work.with_columns(pl.concat_str([aliased, pl.col(_READ_AS)], separator="; ", ignore_nulls=True)
                                 .alias(_READ_AS))
    if "metadata" in lower:
        meta = raw[lower["metadata"]].unique().to_list()
        mapping = {m: metadata_units(m, options.version) for m in meta if m is not None}
        work = work.with_columns(
            raw[lower["metadata"]].replace_strict(mapping, default=None, return_dtype=pl.String).alias("criteria_units")
        )
    us_work, on_us = us_column_rows(work, written["_w_unit"], options)
    if options.criteria_units_by_row == "reported" and on_us.any():  # CTCAE's column of the reported unit
        work = us_work.with_columns(pl.when(pl.lit(on_us)).then(pl.concat_str([pl.col(_READ_AS), pl.format(
            "graded on CTCAE's {} column (the row is in {}; option criteria_units_by_row=reported)", pl.col("unit"),
            pl.lit(written["_w_unit"]))], separator="; ", ignore_nulls=True)).otherwise(pl.col(_READ_AS)).alias(_READ_AS))
    graded = _grade_censored(work.drop(_READ_AS), cens, options, grade_labs, _bound_text(written, work))
    if options.criteria_units_by_row == "si" and (on_us & cens.is_null()).any():
        graded = graded.with_columns(_other_column_note(graded, us_work, on_us & cens.is_null(), options, grade_labs))
    reason = pl.concat_str([graded["grade_reason"], pl.lit(" ["), graded["rule"], pl.lit("]")], ignore_nulls=False)
    reason = pl.select(pl.coalesce(reason, graded["grade_reason"])).to_series()
    # an empty direction is named as empty, never as Python's None (review 38 C7)
    reason = reason.str.replace("direction None is not L or H", "direction is empty: give L or H (low/high)",
                                literal=True)
    read_as = work[_READ_AS]
    reason = pl.select(pl.when(read_as.is_not_null()).then(pl.concat_str([pl.lit("("), read_as, pl.lit(") "), reason]))
                       .otherwise(reason)).to_series()
    # grade_max: the open upper grade of a censored or baseline-less value (review 38 B3), equal to
    # grade when it is settled, empty when grade is
    gmax = pl.select(pl.when(graded["grade"].is_null()).then(None)
                     .otherwise(pl.max_horizontal(graded["grade"], graded["grade_max"]))).to_series()
    out = raw.with_columns(graded["grade"].cast(pl.String).alias("grade"), gmax.cast(pl.String).alias("grade_max"),
                           reason.alias("grade_reason"))
    try:
        with atomic_file(out_csv) as tmp:  # nothing partial is left under the output name
            out.write_csv(tmp)
    except OSError as exc:  # e.g. --out /proc/x.csv: the user's path, never the temporary file's
        raise write_error(out_csv, exc) from None
    counts = graded["grade"].value_counts()
    unknown = sorted({str(t) for t, g, why in zip(work["term"].to_list() if "term" in work.columns else [],
                                                     graded["grade"].to_list(), graded["grade_reason"].to_list())
                      if t is not None and g is None and why and "is not a CTCAE" in why})
    summary: dict[str, Any] = {
        "rows": raw.height,
        "graded": int(graded["grade"].is_not_null().sum()),
        "not_gradable": int(graded["grade"].is_null().sum()),
        "by_grade": {int(g): int(n) for g, n in counts.iter_rows() if g is not None},
        "criteria": criteria_names(options.version, options.units),
        "unknown_terms": unknown,
        "with_range": int((gmax.is_not_null() & (gmax != graded["grade"])).sum()),
    }
    if "expected_grade" in lower:
        exp = raw[lower["expected_grade"]].fill_null("").str.strip_chars()
        got = out["grade"].fill_null("")
        agree = int((exp == got).sum())
        summary["expected_agree"] = agree
        summary["expected_mismatch"] = raw.height - agree
        # expected empty (admiral's NA for a missing LLN/ULN) where the value alone bounds the grade:
        # a range naming the missing limit since session 39 (review 39 R39-4), counted among the differences
        ranged = (exp == "") & (got != "") & out["grade_reason"].cast(pl.String).str.contains(
            "value alone (?:bounds|settles)").fill_null(False)
        summary["expected_missing_limit_range"] = int(ranged.sum())
    return summary


def _bound_as_written(raw: pl.DataFrame, lower: dict[str, str], cens: pl.Series) -> pl.DataFrame:
    """The censored bound and unit of each row as the user wrote them ("0.5", "mg/dL"); null elsewhere."""
    bound = raw[lower["aval"]].cast(pl.String).str.extract(_CENSORED.pattern, 2)
    unit = raw[lower["unit"]].cast(pl.String).str.strip_chars() if "unit" in lower else pl.repeat(
        None, raw.height, dtype=pl.String, eager=True)
    return pl.DataFrame({"_w_bound": bound, "_w_unit": unit, "_w_cens": cens})


def _bound_text(written: pl.DataFrame, work: pl.DataFrame) -> pl.Series:
    """The censored bound in a reason: as written ("<0.6"); when the row's value was converted to
    another unit, the written value and unit and the converted value with at most 4 significant
    digits ("<0.5 mg/dL (<8.552 umol/L)"), never the float's full repr (review 38 C2)."""
    conv = work["aval"].cast(pl.Float64, strict=False).round_sig_figs(4)
    conv_text = conv.cast(pl.String).str.replace(r"\.0$", "")
    w = written.with_columns(conv_text.alias("_conv"), work["unit"].alias("_unit") if "unit" in work.columns
                             else pl.lit(None, pl.String).alias("_unit"))
    c = pl.col("_w_cens")
    changed = pl.col("_unit").is_not_null() & pl.col("_w_unit").is_not_null() & (pl.col("_unit") != pl.col("_w_unit"))
    return w.select(
        pl.when(c.is_null()).then(None)
        .when(changed).then(pl.format("{}{} {} ({}{} {})", c, pl.col("_w_bound"), pl.col("_w_unit"), c,
                                      pl.col("_conv"), pl.col("_unit")))
        .otherwise(pl.concat_str([c, pl.col("_w_bound")])).alias("_text")).to_series()


def _grade_censored(work: pl.DataFrame, cens: pl.Series, options: Any, grade_labs: Any,
                    bound_text: pl.Series | None = None) -> pl.DataFrame:
    """grade_labs, a censored aval graded as ``derive_ctcae`` grades a study's censored result (review
    37 R37-6): at its bound (just inside it for "<"/">" at the comparison precision: one unit of the
    last compared digit, :func:`cartlab.grading.censored.just_inside`, review 41 F4) and at the far end of its interval (0 for "<", 1e12 for ">"); grades are monotone in
    the value, so one grade settles it and two give the lower grade (``grade``) with the higher as
    ``grade_max`` and a reason naming the range."""
    if cens.null_count() == cens.len():
        return grade_labs(work, None, options)
    value = pl.col("aval").cast(pl.Float64, strict=False)
    c = pl.lit(cens)
    from cartlab.grading.censored import just_inside

    digits = options.signif_digits if options.signif_digits is not None else options.resolved().get("signif_digits")
    near = pl.coalesce(just_inside(c, value, digits), value)  # at the comparison precision (review 41 F4)
    graded = grade_labs(work.with_columns(near.cast(pl.String).alias("aval")), None, options)
    rows = cens.is_not_null()
    far_in = work.with_columns(pl.when(c.is_in(["<", "<="])).then(pl.lit("0")).otherwise(pl.lit("1e12")).alias("aval"))
    far = grade_labs(far_in.filter(rows), None, options)
    idx = rows.arg_true()
    fg = pl.Series("fg", [None] * work.height, dtype=pl.Int64).scatter(idx, far["grade"])
    fm = pl.Series("fm", [None] * work.height, dtype=pl.Int64).scatter(idx, far["grade_max"])
    text = pl.lit(bound_text) if bound_text is not None else pl.concat_str([c, pl.col("_bound")])
    g, gm, fgc = pl.col("grade"), pl.col("grade_max"), pl.col("_fg")
    spread = c.is_not_null() & g.is_not_null() & fgc.is_not_null() & (g != fgc)
    out = graded.with_columns(work["aval"].alias("_bound"), fg.alias("_fg"), fm.alias("_fm")).with_columns(
        pl.when(c.is_not_null() & (g.is_null() | fgc.is_null())).then(None)
        .otherwise(pl.min_horizontal(g, fgc).fill_null(g)).alias("grade"),
        pl.when(c.is_not_null() & g.is_not_null() & fgc.is_not_null())
        .then(pl.max_horizontal(gm, pl.col("_fm"), g, fgc)).otherwise(gm).alias("grade_max"),
        pl.when(spread).then(pl.format("censored result {} leaves grade {}-{} open (the lower grade stands); at its "
                                       "bound: {}", text, pl.min_horizontal(g, fgc), pl.max_horizontal(g, fgc),
                                       pl.col("grade_reason")))
        .when(c.is_not_null() & g.is_not_null() & fgc.is_null())
        .then(pl.format("not gradable: censored result {}: the far end of its interval is not gradable; at its bound: {}",
                        text, pl.col("grade_reason")))
        .when(c.is_not_null()).then(pl.format("censored result {}, graded by its bound: {}", text, pl.col("grade_reason")))
        .otherwise(pl.col("grade_reason")).alias("grade_reason"),
    )
    return out.drop("_bound", "_fg", "_fm")


def us_column_rows(work: pl.DataFrame, written_unit: pl.Series, options: Any) -> tuple[pl.DataFrame, pl.Series]:
    """A parameter row written in the unit of CTCAE's own conventional (US) or mmol/L column for its term
    and direction (glucose in mg/dL, magnesium in mg/dL, haemoglobin in mmol/L: CTCAE v5.0 gives both
    columns, and their bounds are not exact conversions of each other), as derive_ctcae finds it
    (:func:`cartlab.grading.ctcae_readings.us_columns`): ``work`` with those rows graded on that column
    (the term, the value and limits back in that unit, ``criteria_units`` US) and the mask of those rows
    (review 41 F2). Other rows are unchanged."""
    from dataclasses import replace

    from cartlab.grading.ctcae_criteria import param_terms, tables
    from cartlab.grading.ctcae_readings import us_columns

    none = pl.Series("_on_us", [False] * work.height, dtype=pl.Boolean)
    if "param" not in work.columns or work.height == 0:
        return work, none
    tabs = tables(None, replace(options, units="SI"))
    pmap = param_terms(tabs)
    f = work.with_columns(pl.Series("_ounit", written_unit, dtype=pl.String).str.strip_chars(),
                          pl.col("param").str.strip_chars().str.to_uppercase().alias("_p"))
    us = us_columns(f.select(pl.col("_p").alias("param"), "_ounit"), pmap, tables(None, replace(options, units="US")))
    terms = {(p, d): e.term for (p, d), e in pmap.items()}
    d = pl.col("direction")
    unit, scale, offset = (pl.when(d == "L").then(pl.col(f"_{k}L")).when(d == "H").then(pl.col(f"_{k}H"))
                           for k in ("u", "s", "o"))
    f = pl.concat([f, us.drop("param", "_ounit")], how="horizontal").with_columns(
        unit.alias("_uu"), scale.alias("_us"), offset.alias("_uo"))
    mask = (pl.col("term").is_null() & pl.col("param").is_not_null() & pl.col("_uu").is_not_null()
            & pl.col("_ounit").is_not_null())
    on_us = f.select(mask.fill_null(False)).to_series().alias("_on_us")
    if not on_us.any():
        return work, none
    term = pl.struct("_p", "direction").map_elements(lambda r: terms.get((r["_p"], r["direction"])),
                                                      return_dtype=pl.String)
    conv = [pl.when(mask).then(((pl.col(c).cast(pl.Float64, strict=False) - pl.col("_uo")) / pl.col("_us"))
                                .cast(pl.String)).otherwise(pl.col(c)).alias(c)
            for c in ("aval", "anrlo", "anrhi", "base") if c in f.columns]
    out = f.with_columns(*conv, pl.when(mask).then(term).otherwise(pl.col("term")).alias("term"),
                         pl.when(mask).then(pl.col("_uu")).otherwise(pl.col("unit")).alias("unit"),
                         pl.when(mask).then(pl.lit("US")).otherwise(
                             pl.col("criteria_units") if "criteria_units" in f.columns else pl.lit(None, pl.String))
                         .alias("criteria_units"))
    return out.select(*work.columns, *(["criteria_units"] if "criteria_units" not in work.columns else [])), on_us


def _other_column_note(graded: pl.DataFrame, us_work: pl.DataFrame, rows: pl.Series, options: Any,
                       grade_labs: Any) -> pl.Expr:
    """grade_reason of a row graded on the SI column (criteria_units_by_row=si, the default) whose
    CTCAE column of the row's unit gives another grade: that grade, as derive_ctcae's note (review 41 F2)."""
    sub = us_work.filter(rows).drop(_READ_AS, strict=False)
    g = grade_labs(sub, None, options)["grade"]
    idx = rows.arg_true()
    us_grade = pl.Series("_usg", [None] * graded.height, dtype=pl.Int64).scatter(idx, g)
    value = pl.Series("_usv", [None] * graded.height, dtype=pl.Float64).scatter(
        idx, sub["aval"].cast(pl.Float64, strict=False).round_sig_figs(6))
    unit = pl.Series("_usu", [None] * graded.height, dtype=pl.String).scatter(idx, sub["unit"])
    term = pl.Series("_ust", [None] * graded.height, dtype=pl.String).scatter(idx, sub["term"])
    differs = pl.lit(us_grade).is_not_null() & pl.col("grade").is_not_null() & (pl.lit(us_grade) != pl.col("grade"))
    return (pl.when(differs).then(pl.format(
        "{}; CTCAE's {} column gives {} grade {} for {} {}; graded on the SI column, grade {} (option "
        "criteria_units_by_row=si; 'reported' grades on the column of the row's unit)", pl.col("grade_reason"),
        pl.lit(unit), pl.lit(term), pl.lit(us_grade), pl.lit(value).cast(pl.String).str.replace(r"\.0$", ""),
        pl.lit(unit), pl.col("grade"))).otherwise(pl.col("grade_reason")).alias("grade_reason"))


def term_listing(terms: pl.DataFrame) -> pl.DataFrame:
    """``terms`` (:func:`cartlab.grading.ctcae.ctcae_terms`) with what a row may write instead (review 41 F10):
    ``also written as`` (each parameter's code, name and aliases: ANC, PLT, Hb ...) and ``accepted units``
    (the parameter's unit and the units it converts; pint's spellings of them too, e.g. K/uL or G/L)."""
    from cartlab.io.dictionary import load_dictionary

    d = load_dictionary()
    names, units = [], []
    for codes in terms["params"].to_list():
        ps = [d[c.strip()] for c in (codes or "").split(",") if c.strip() in d.params]
        names.append(", ".join(dict.fromkeys(n for p in ps for n in (p.code, p.label, *p.aliases))) or None)
        units.append(", ".join(dict.fromkeys(u for p in ps for u in (p.unit, *p.accepts) if u)) or None)
    return terms.with_columns(pl.Series("also written as", names, dtype=pl.String),
                              pl.Series("accepted units", units, dtype=pl.String))


#: clinical names of the CTCAE v5 lab terms (a suggestion only: a row is never graded under another name);
#: "Leukopenia" would otherwise be suggested "Leukocytosis" by its stem (session 42)
CLINICAL_NAMES = {"thrombocytopenia": "Platelet count decreased", "neutropenia": "Neutrophil count decreased",
                  "leukopenia": "White blood cell decreased", "leucopenia": "White blood cell decreased",
                  "lymphopenia": "Lymphocyte count decreased", "lymphocytosis": "Lymphocyte count increased"}


def suggest_term(name: str, terms: pl.DataFrame) -> str | None:
    """The CTCAE term or parameter name nearest to an unknown ``name`` ("Neutropenia" -> "Neutrophil count
    decreased (NEUT; also ANC, neutrophils ...)"), or None: a close spelling (difflib) or a shared stem of
    five letters or more (review 41 F10)."""
    import difflib

    listing = term_listing(terms)
    cands: dict[str, str] = {}
    for term, direction, also in listing.select("term", "direction", "also written as").iter_rows():
        shown = f"{term} ({direction}{'; ' + also if also else ''})"
        for n in (term, *((also or "").split(", "))):
            if n:
                cands.setdefault(n.lower(), shown)
    low = name.strip().lower()
    if CLINICAL_NAMES.get(low, "").lower() in cands:
        return cands[CLINICAL_NAMES[low].lower()]
    close = difflib.get_close_matches(low, list(cands), n=1, cutoff=0.75)
    if close:
        return cands[close[0]]
    for k in range(min(len(low), 8), 4, -1):  # the longest shared stem first
        stem = [c for c in cands if c.startswith(low[:k])]
        if stem:
            return cands[sorted(stem, key=len)[0]]
    # a known name inside it, 4 letters or more ("ABSNEUT": NEUT), the longest first
    inside = sorted((c for c in cands if len(c) >= 4 and c in low), key=len, reverse=True)
    return cands[inside[0]] if inside else None
