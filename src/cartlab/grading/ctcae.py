"""CTCAE laboratory toxicity grading: a generic engine over versioned criteria tables.

The criteria are data (``criteria/ctcae_v5.yaml`` in SI units, ``criteria/ctcae_v5_uscv.yaml`` in US
conventional units; see the comment at the top of either file) written in the criteria language
(:mod:`cartlab.criteria`): per term and direction an ordered rule set; the first rule whose
conditions hold decides the grade (0-4, or null = cannot be graded) and no rule holding means grade
0. This is the semantics of the machine-readable CTCAE v5.0 criteria of pharmaverse/admiral, from
which the thresholds were transcribed (with attribution); this module holds no term-specific
logic, so CTCAE v4.03 or v6.0 is a new YAML file with the same schema (tables are discovered by
their ``standard``, ``version`` and ``units`` keys).

Public API
----------
* :class:`CtcaeOptions` — version, unit system and every ambiguous choice of the standard, each
  defaulting to admiral's (worst-case) reading (the tables' ``defaults``); see :data:`OPTION_DOCS`.
* :func:`grade_labs` — grade a frame of lab results (term or param, direction, aval, anrlo, anrhi,
  base, bnrind, pchg, unit) adding ``grade``, ``grade_reason``, ``rule`` and ``grade_max`` (the
  highest grade a missing input leaves possible). Vectorised: rows are
  partitioned by (term, direction, unit, ...) and each partition is graded by its term's rule set
  compiled once (:class:`cartlab.criteria.Decision`); there is no per-row Python.
* :func:`derive_ctcae` — an ADLB-like frame (ATOXGRL/ATOXGRH/ATOXGR/BTOXGR, ...) from canonical
  observations.
* :func:`ctcae_terms` — every term the criteria grade (direction, cartlab params, unit); the
  command line's ``cartlab ctcae`` (``cartlab.cli.grading_io``) grades a plain CSV table with them
  as ``../shared/conformance/README.md`` describes.

Comparisons follow admiral: ``signif(x, 15) <op> signif(threshold, 15)`` where ``signif`` is R's
(round to 15 significant digits, half to even) and a threshold is ``factor * REF + offset`` or an
absolute value; a comparison with a missing operand never makes its rule fire.

The modules: :mod:`~cartlab.grading.ctcae_options` (options), :mod:`~cartlab.grading.ctcae_criteria`
(tables compiled, reasons, dispatch), :mod:`~cartlab.grading.ctcae_units` (``signif``, table and
admiral metadata names); this one grades.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise
from typing import Any

import numpy as np
import polars as pl

from cartlab.grading.censored import just_inside
from cartlab.grading.ctcae_clauses import clause_range, derive_range, grade_labs_range
from cartlab.grading.ctcae_criteria import (
    CompiledTable,
    Entry,
    Label,
    compile_criteria,
    ctcae_terms,
    derived_params,
    dispatch,
    indicators,
    intervention_terms,
    key,
    missing_mask,
    param_terms,
    precise_missing,
    tables,
)
from cartlab.grading.ctcae_derive import (
    baseline_window,
    bnrind_from_limits,
    censored_baseline_bnrind,
    derive_params,
    infusion_start,
    warn_missing_limits,
)
from cartlab.grading.ctcae_options import OPTION_DOCS, CtcaeOptions
from cartlab.grading.ctcae_readings import (
    NO_BASELINE,
    baseline_readings,
    column_note,
    no_baseline_mode,
    reading_plans,
    unknown_baseline_outcomes,
    us_columns,
)
from cartlab.grading.ctcae_summary import derived_bnrind_outcomes, limit_corners, limit_range_outcomes, open_grades
from cartlab.grading.ctcae_units import available_criteria, criteria_names, metadata_units, signif, signif_scalar
from cartlab.grading.hemato_common import censored_text
from cartlab.provenance import EVIDENCE, evidence_ref

__all__ = [
    "ADLB_COLUMNS",
    "INPUTS",
    "OPTION_DOCS",
    "CtcaeOptions",
    "available_criteria",
    "combine_atoxgr",
    "compile_criteria",
    "criteria_names",
    "ctcae_terms",
    "derive_ctcae",
    "grade_labs",
    "metadata_units",
    "signif",
    "signif_scalar",
    "study_options",
    "study_signif_digits",
]


def study_signif_digits() -> int:
    """The comparison precision of :func:`derive_ctcae` when ``signif_digits`` is not set: a study's
    values are stored at ``SIG_DIGITS`` (12) significant digits after unit conversion, so a value on a
    bound in its own unit (bilirubin 3.6 mg/dL = 3.0 x ULN 1.2 mg/dL) can differ from the converted
    bound in the 12th digit: one digit less (admiral's 15 assumes values as given; ``cartlab ctcae``
    on a table keeps 15)."""
    from cartlab.io.study_folder import SIG_DIGITS

    return SIG_DIGITS - 1


def study_options(options: CtcaeOptions | None = None) -> CtcaeOptions:
    """The options :func:`derive_ctcae` applies to a study: ``signif_digits`` at
    :func:`study_signif_digits` unless set (what ``analysis.json`` records as applied)."""
    options = options or CtcaeOptions()
    return options if options.signif_digits is not None else replace(options, signif_digits=study_signif_digits())


def _grade_partition(part: pl.DataFrame, table: CompiledTable, entry: Entry, gids: dict[str, int],
                     hi: list[str], lo: list[str]) -> pl.LazyFrame:
    """One entry's rule set on its partition: a plan giving _row and the global outcome id.

    The rules read few columns whose values repeat (a lab's limits, rounded results): each distinct
    combination of the inputs is graded once and joined back to its rows."""
    dec = table.decision(entry, hi, lo)
    ids = {r.id: gids[f"{table.name}:{r.id}"] for r in dec.rules}
    fired = pl.col("_c_rule").replace_strict(ids, default=gids[entry.zero[1]], return_dtype=pl.Int32)
    # the highest grade the row could have (rules above the deciding one left open by a missing
    # input, e.g. creatinine "x baseline" without BASE) and those inputs
    outs = (fired.alias("_gid"), pl.col("_c_grade_max").alias("_gmax"),
            pl.col("_c_missing").list.join(",").alias("_miss"))
    what = ("rule", "grade_max", "missing")
    inputs = sorted({n for r in dec.rules for c in r.when for n in dec.compiler.inputs(c)})
    if not inputs:
        return dec.apply(part.lazy(), "_c", *what).select(pl.col("_row"), *outs)
    distinct = dec.apply(part.lazy().select(inputs).unique(), "_c", *what).select(*inputs, *outs)
    return part.lazy().select("_row", *inputs).join(distinct, on=inputs, how="left", nulls_equal=True).select(
        "_row", "_gid", "_gmax", "_miss")


# ---------------------------------------------------------------------------------------------
# grade_labs


INPUTS = ("term", "param", "direction", "aval", "anrlo", "anrhi", "base", "bnrind", "pchg", "unit",
           "high_indicator", "low_indicator", "criteria_units")
_NUMERIC = ("aval", "anrlo", "anrhi", "base", "pchg")


def _as_float(frame: pl.DataFrame, col: str) -> pl.Expr:
    if col not in frame.columns:
        return pl.lit(None, dtype=pl.Float64).alias(col)
    dtype = frame.schema[col]
    e = pl.col(col)
    if dtype == pl.String:
        e = e.str.strip_chars().cast(pl.Float64, strict=False)
    elif dtype != pl.Float64:
        e = e.cast(pl.Float64, strict=False)
    return e.fill_nan(None).alias(col)  # NaN is missing, as R's is.na(NaN)


def grade_labs(frame: pl.DataFrame, criteria: Any = None, options: CtcaeOptions | None = None) -> pl.DataFrame:
    """Grade lab results by CTCAE; returns ``frame`` plus ``grade``, ``grade_reason`` and ``rule``.

    Input columns (lower case; all but ``direction`` and ``aval`` optional):
    ``term`` (CTCAE term, case-insensitive) or ``param`` (cartlab code, used when ``term`` is absent
    or null), ``direction`` (L/H), ``aval``, ``anrlo``, ``anrhi``, ``base``, ``bnrind``, ``pchg``,
    ``unit``; optionally ``high_indicator`` / ``low_indicator`` (per-row BNRIND indicator values,
    "|"- or ","-separated) and ``criteria_units`` ("SI"/"US", overriding ``options.units`` for that
    row). Numeric columns may be strings (unparsable = missing).

    Output: ``grade`` (Int64 0-4, null when the row cannot be graded), ``rule`` (the id of the rule
    that decided, ``<table>:<entry>:<rule>``; ``...:g0`` when no grade 1-4 rule held),
    ``grade_reason`` (the rule in words, e.g. ``grade 3: AVAL < 1 10^9/L``) and ``grade_max`` (the
    highest grade the row could have: equal to ``grade`` unless a higher-grade rule is left open by a
    missing input, e.g. creatinine 120 umol/L, ULN 100, no BASE: grade 1, grade_max 3, the reason
    ending "at least grade 1 (grade 3 not excluded: criteria on BASE not evaluable, BASE missing)").

    BNRIND values are matched case-insensitively ("High" is HIGH); a value that is neither a CDISC
    reference-range indicator (HIGH, LOW, NORMAL, ABNORMAL) nor a declared high/low indicator is a
    ValueError naming the row. A missing ``pchg`` is computed from ``base`` (100 * (AVAL - BASE) /
    BASE) when BASE is given and not 0. A ``param`` row that names a total calcium (CA) is graded
    as corrected calcium only with ``options.calcium="as_given"``; a row naming the term Hypocalcemia
    is graded on its value as given (the user named the term). A row with ``base`` but no ``bnrind``
    whose term reads it (liver tests) is graded as if the baseline were normal and abnormal: the
    lower grade, ``grade_max`` the higher (session 34; missing is not "normal").

    ``criteria``: None (the tables of ``options.version``/``options.units``), a table name, a
    loaded table mapping, or a sequence of them in precedence order.
    """
    if clause_range(options, criteria):  # option clinical_clauses=range (review 41 F5)
        return grade_labs_range(frame, criteria, options, grade_labs)
    gid, labels, gmax = _grade_codes(frame, criteria, options, bnrind_from_row=True)
    grades = {i: g for i, (g, _, _) in enumerate(labels)}
    highest = {i: gmax.get(i, g) for i, g in grades.items()}
    rules = {i: r for i, (_, r, _) in enumerate(labels)}
    # the reason per (outcome, which of AVAL/ANRLO/ANRHI are missing): "ANRHI missing", not "AVAL or ANRHI missing"
    mask = frame.select(missing_mask(*(_as_float(frame, c) for c in ("aval", "anrlo", "anrhi")))).to_series()
    wkey = pl.Series("_k", gid.cast(pl.Int64) * 8 + mask)
    reasons = {k: precise_missing(labels[k // 8][2], k % 8) for k in wkey.unique().to_list()}
    out = pl.DataFrame({"_gid": gid, "_k": wkey}).select(
        pl.col("_gid").replace_strict(grades, return_dtype=pl.Int64).alias("grade"),
        pl.col("_k").replace_strict(reasons, return_dtype=pl.String).alias("grade_reason"),
        pl.col("_gid").replace_strict(rules, return_dtype=pl.String).alias("rule"),
        pl.col("_gid").replace_strict(highest, return_dtype=pl.Int64).alias("grade_max"),
    )
    return frame.with_columns(out.get_columns())


#: CDISC reference-range indicator values (SDTM LBNRIND / ADaM BNRIND), matched case-insensitively
NRIND = ("HIGH", "LOW", "NORMAL", "ABNORMAL")


def _bnrind(work: pl.DataFrame, options_hi: Any, options_lo: Any) -> pl.Expr:
    """BNRIND upper-cased; a value that is neither a CDISC indicator nor a declared one is an error."""
    raw = work["bnrind"]
    up = raw.str.strip_chars().str.to_uppercase()
    up = pl.select(pl.when(up == "").then(None).otherwise(up)).to_series()
    known = set(NRIND) | {str(v).strip().upper() for v in (*options_hi, *options_lo)}
    for c in ("high_indicator", "low_indicator"):
        if c in work.columns:
            for cell in work[c].drop_nulls().unique().to_list():
                known |= {v.upper() for v in indicators(cell, ())}
    bad = work.select("_row", raw.alias("v"), up.alias("u")).filter(pl.col("u").is_not_null() & ~pl.col("u").is_in(sorted(known)))
    if bad.height:
        rows = ", ".join(f"row {r} (line {r + 2} of a CSV with a header): {v!r}"
                         for r, v in bad.head(5).select("_row", "v").iter_rows())
        more = f" and {bad.height - 5} more rows" if bad.height > 5 else ""
        raise ValueError(
            f"column bnrind, {rows}{more}: not a CDISC reference-range indicator ({', '.join(NRIND)}; any case) nor "
            "a declared high_indicator/low_indicator (rows counted from 0). Write HIGH/LOW/NORMAL/ABNORMAL, or "
            "declare the value (CtcaeOptions(high_indicator=...) or a high_indicator column)")
    return pl.lit(up).alias("bnrind")


def _grade_codes(frame: pl.DataFrame, criteria: Any = None, options: CtcaeOptions | None = None,
                 unknown_baseline: str = "baseline status unknown (BNRIND missing)", bnrind_from_row: bool = False
                 ) -> tuple[pl.Series, list[Label], dict[int, int]]:
    """The engine behind :func:`grade_labs`: per row the id of the outcome (Int32), the outcomes
    (grade, rule id, reason) indexed by that id, and the grade_max of the outcomes whose grade a
    missing input leaves open (id -> highest possible grade). Rows are graded per dispatch partition.

    A row with BASE but no BNRIND whose rules read BNRIND ("if baseline was normal / abnormal":
    ALT, AST, ALP, GGT, bilirubin) is graded under each baseline reading (normal, abnormal high,
    abnormal low): equal grades settle it, different ones give the lower grade with the higher as
    grade_max and a reason starting with ``unknown_baseline`` (session 34, review 34 F5: a missing
    BNRIND is not "baseline normal").

    ``bnrind_from_row`` (grade_labs): a row with BASE and no BNRIND gets BNRIND from BASE against the
    row's own limits (:func:`cartlab.grading.ctcae_derive.bnrind_from_limits`, as derive_ctcae does
    with the baseline row's limits; review 39 R39-5), said in the reason of the terms that read it.
    A row whose reference limit is missing is also graded with that limit at both extremes: where the
    value alone bounds the grade, a range (review 39 R39-4, :func:`ctcae_summary.limit_range_outcomes`)."""
    options = options or CtcaeOptions()
    cols = frame.columns
    if criteria is None and "criteria_units" in cols and options.units != "auto":
        # a per-row choice of unit system needs both tables; rows without one use options.units
        criteria = criteria_names(options.version, "auto")
    tabs = tables(criteria, options)
    if "direction" not in cols or "aval" not in cols or ("term" not in cols and "param" not in cols):
        raise ValueError("grade_labs needs columns direction, aval and term or param")
    version = tabs[0].version if tabs else options.version

    # narrow working frame: row id, raw dispatch keys, numbers
    keys = [c for c in ("term", "param", "direction", "unit", "high_indicator", "low_indicator", "criteria_units")
            if c in cols]
    use_param = "param" in cols and ("term" not in cols or frame["term"].null_count() > 0)
    if not use_param and "param" in keys:
        keys.remove("param")
    work = frame.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"),
        *[pl.col(k).cast(pl.String) for k in keys],
        *[_as_float(frame, c) for c in _NUMERIC],
        (pl.col("bnrind").cast(pl.String) if "bnrind" in cols else pl.lit(None, dtype=pl.String)).alias("bnrind"),
    )
    first = tabs[0].options if tabs else {}
    work = work.with_columns(_bnrind(work, first.get("high_indicator", ()), first.get("low_indicator", ())))
    derived_bnr = pl.lit(None, dtype=pl.String)
    if bnrind_from_row:  # review 39 R39-5: the ADaM derivation, on this row's limits
        derived_bnr = pl.when(pl.col("bnrind").is_null()).then(
            bnrind_from_limits(pl.col("base"), pl.col("anrlo"), pl.col("anrhi")))
    work = work.with_columns(
        derived_bnr.alias("_bnr_derived"), pl.coalesce(pl.col("bnrind"), derived_bnr).alias("bnrind"),
        # PCHG not given: from BASE, as derive_ctcae computes it (fibrinogen's "% decrease from baseline")
        pl.coalesce(pl.col("pchg"), pl.when(pl.col("base").is_not_null() & (pl.col("base") != 0))
                    .then((pl.col("aval") - pl.col("base")) / pl.col("base") * 100)).alias("pchg"),
    )
    param_map = param_terms(tabs) if use_param else {}
    by_param_iv = intervention_terms(tabs) if use_param else {}
    derived = derived_params(tabs, options) if use_param else []

    # global outcome ids: every rule the options keep + dispatch outcomes met in this call
    labels: list[Label] = []  # gid -> (grade, rule id, reason)
    gids: dict[str, int] = {}
    for tb in tabs:
        for ent in tb.entries:
            for label in (*ent.labels, ent.zero):
                gids[label[1]] = len(labels)
                labels.append(label)
    extra_gid: dict[tuple[str | None, str], int] = {}

    pieces = []
    alt_pieces: dict[Any, list[pl.LazyFrame]] = {}  # baseline reading -> plans of the rows without BNRIND
    lim_pieces: dict[tuple[float, float], list[pl.LazyFrame]] = {}  # missing-limit corner -> plans
    lim_mask, lim_top = np.zeros(work.height, dtype=np.int64), np.full(work.height, -1, dtype=np.int64)
    bnr_note = np.full(work.height, None, dtype=object)  # the BNRIND derived from the row's limits
    parts = work.partition_by(keys, as_dict=True, include_key=False) if work.height else {}
    for k, part in parts.items():
        kv = dict(zip(keys, k))
        term = kv.get("term")
        refused = None
        if term is None and use_param and kv.get("param") is not None:
            pk = (str(kv["param"]).strip().upper(), key(kv.get("direction")) or "")
            named = [f"{e.term} ({dd})" for (p, dd), e in sorted(param_map.items()) if p == pk[0]]
            if pk[1] not in ("L", "H") and named:  # say the direction, not "no CTCAE term" (review 37 R37-5)
                raw_dir = kv.get("direction")
                what = "missing" if raw_dir is None or not str(raw_dir).strip() else f"{raw_dir!r} is not L or H"
                refused = (None, f"not gradable: direction {what} ({pk[0]} has {', '.join(named)})")
            ent = param_map.get(pk)
            term = ent.term if ent is not None else by_param_iv.get(pk)
            for spec in (s for s in derived if term is None and refused is None and str(s["source"]).upper() == pk[0]):
                target = param_map.get((str(spec["param"]).upper(), pk[1]))
                if target is None:
                    continue
                if spec.get("adjust"):  # e.g. total calcium: grading needs the correction
                    other = [f"set {k}={v}" for tb in tabs for s in tb.derived if s["source"] == spec["source"]
                             and not s.get("adjust") for k, v in (s.get("option") or {}).items()]
                    refused = (str(spec["id"]),
                               (f"not gradable: {pk[0]} is not graded for {target.term} ({spec['param']} is): "
                                f"{spec['missing']}; give {spec['param']} or name the term"
                                + "".join(f", or {o}" for o in other)))
                else:  # e.g. calcium=as_given: CA graded as CACORR
                    term = target.term
        if refused is not None:
            if refused not in extra_gid:
                extra_gid[refused] = len(labels)
                labels.append((None, *refused))
            pieces.append(part.lazy().select(pl.col("_row"), pl.lit(extra_gid[refused], dtype=pl.Int32).alias("_gid"),
                                             *_NO_MAX))
            continue
        system = key(kv.get("criteria_units"))
        if system is not None and system not in ("SI", "US"):
            raise ValueError(f"criteria_units must be SI or US, not {kv.get('criteria_units')!r}")
        if system is None and options.units != "auto":
            system = options.units
        d = dispatch(tabs, term, kv.get("direction"), kv.get("unit"), system, version)
        if d.entry is None:
            k2 = (d.rule_id, d.reason)
            if k2 not in extra_gid:
                extra_gid[k2] = len(labels)
                labels.append((None, d.rule_id, d.reason))
            pieces.append(part.lazy().select(pl.col("_row"), pl.lit(extra_gid[k2], dtype=pl.Int32).alias("_gid"),
                                             *_NO_MAX))
            continue
        hi = [v.upper() for v in indicators(kv.get("high_indicator"), d.table.options.get("high_indicator", ()))]
        lo = [v.upper() for v in indicators(kv.get("low_indicator"), d.table.options.get("low_indicator", ()))]
        pieces.append(_grade_partition(part, d.table, d.entry, gids, hi, lo))
        limit_corners(part, d.entry, lim_pieces, lim_mask, lim_top,  # review 39 R39-4
                      lambda p, d=d, hi=hi, lo=lo: _grade_partition(p, d.table, d.entry, gids, hi, lo))
        readings = baseline_readings(d.table, d.entry, hi, lo)
        if readings and bnrind_from_row:
            said = part.filter(pl.col("_bnr_derived").is_not_null())
            bnr_note[said["_row"].to_numpy()] = said["_bnr_derived"].to_numpy()
        if readings:  # BASE without BNRIND (session 34); no baseline at all with no_baseline=range (review 48 F3)
            reading_plans(part, readings, d.table.options, alt_pieces,
                          lambda p, d=d, hi=hi, lo=lo: _grade_partition(p, d.table, d.entry, gids, hi, lo))

    gid = np.zeros(work.height, dtype=np.int32)
    gmax = np.full(work.height, -1, dtype=np.int64)
    miss = np.full(work.height, None, dtype=object)
    for piece in (pl.collect_all(pieces) if pieces else []):
        at = piece["_row"].to_numpy()  # scatter back to input order
        gid[at] = piece["_gid"].to_numpy()
        gmax[at] = piece["_gmax"].fill_null(-1).to_numpy()
        miss[at] = piece["_miss"].to_numpy()
    ranged = limit_range_outcomes(gid, gmax, miss, labels, lim_pieces, lim_mask, lim_top) if lim_pieces else {}
    settled = unknown_baseline_outcomes(gid, gmax, miss, labels, alt_pieces, unknown_baseline) if alt_pieces else {}
    settled = {**ranged, **settled}
    if bnrind_from_row:
        settled = derived_bnrind_outcomes(gid, labels, bnr_note, settled)
    out_gid, labels, open_max = open_grades(gid, gmax, miss, labels)
    return out_gid, labels, {**open_max, **settled}


#: the grade_max / missing-input columns of an outcome that no rule set decides
_NO_MAX = (pl.lit(None, dtype=pl.Int64).alias("_gmax"), pl.lit(None, dtype=pl.String).alias("_miss"))


# ---------------------------------------------------------------------------------------------
# ADLB-like derivation on canonical observations


def combine_atoxgr(low: str = "ATOXGRL", high: str = "ATOXGRH", low_term: str = "ATOXDSCL",
                   high_term: str = "ATOXDSCH") -> pl.Expr:
    """admiral's derive_var_atoxgr as an expression: signed grade, negative for the low direction.

    Both missing -> null; low >= 1 -> -low; high >= 1 -> high; 0 when the other direction is 0 or
    has no term; otherwise (one direction 0 and the other not gradable) null.
    """
    lo, hi = pl.col(low), pl.col(high)
    return (
        pl.when(lo.is_null() & hi.is_null()).then(None)
        .when(lo >= 1).then(-lo)
        .when(hi >= 1).then(hi)
        .when(((lo == 0) | pl.col(low_term).is_null()).fill_null(False) & (hi == 0).fill_null(False)).then(0)
        .when(((hi == 0) | pl.col(high_term).is_null()).fill_null(False) & (lo == 0).fill_null(False)).then(0)
        .otherwise(None)
        .cast(pl.Int64)
    )


ADLB_COLUMNS = (
    "subject_id", "day", "datetime", "param", "term", "direction", "AVAL", "AVALU", "ANRLO", "ANRHI",
    "BASE", "ABLFL", "BNRIND", "PCHG", "ATOXDSCL", "ATOXGRL", "ATOXDSCH", "ATOXGRH", "ATOXGR", "BTOXGR",
    "rule", "grade_reason", "evidence", "DTYPE", "ATOXGRL_MAX", "ATOXGRH_MAX", "post_baseline",
)


def derive_ctcae(study: Any, options: CtcaeOptions | None = None) -> pl.DataFrame:
    """CTCAE grades of canonical observations as an ADLB-like frame (one row per observation).

    ``study`` is a :class:`cartlab.model.Study` or its observations frame. Rows are the
    observations whose ``param`` is listed by a term of the criteria (``params`` in the YAML).

    * AVAL/ANRLO/ANRHI/AVALU = value/lln/uln/unit (canonical SI units, so the SI table applies;
      ``options.units="US"`` is refused). Comparisons at 11 significant digits unless
      ``signif_digits`` is set: the study's converted values carry 12.
    * BASE: per subject and param, the last non-missing value on or before ``options.baseline_day``
      by calendar day (``floor(day)``: a timed day-0 sample counts; before it when ``baseline_inclusive``
      is False; ``baseline_day0`` can keep only day-0 rows before the infusion time; ties on the same
      day: the later source row);
      ABLFL = "Y" on that row. BASE is filled on every row of the subject/param.
    * BNRIND from the baseline row's own limits: HIGH (> ULN), LOW (< LLN), NORMAL (limits known,
      within), null (no baseline or no limits). PCHG = 100 * (AVAL - BASE) / BASE. A BASE without
      BNRIND leaves "if baseline was normal / abnormal" open (ALT, AST, ALP, GGT, bilirubin): both
      readings are graded, the lower grade stands with the higher in ATOXGRH_MAX and a reason
      starting "baseline ULN unknown" (session 34); no BASE at all: as normal (admiral; option no_baseline).
    * The CTCAE column: ``options.criteria_units_by_row`` "si" (default) grades every row on the SI
      table; a row whose lab reported the US column's unit (``orig_unit``, e.g. calcium mg/dL) and
      whose grade there differs says so in grade_reason ("CTCAE's mg/dL column gives Hypocalcemia
      grade 1 for 8.0 mg/dL; graded on the SI column, grade 2 ..."). "reported" grades such rows on
      the US table (rule ``ctcae_v5_uscv:...``) with value, limits and BASE in that unit (AVAL stays SI).
    * ATOXDSCL/ATOXDSCH: the low/high term of the param (null when none); ATOXGRL/ATOXGRH their
      grades; ATOXGR the signed combination (:func:`combine_atoxgr`); BTOXGR = ATOXGR of the baseline
      row.
    * ATOXGRL_MAX/ATOXGRH_MAX (cartlab, not ADaM): the highest grade of that direction a missing
      input leaves possible, when above ATOXGRL/ATOXGRH (creatinine 2 x BASE without ANRHI: ATOXGRH
      2, ATOXGRH_MAX 4, the reason "at least grade 2 (grade 4 not excluded: ...)"); null when the
      grade is settled or not gradable. ATOXGR stays the lower grade (ADaM).
    * term/direction/rule/grade_reason: those of the direction that decides ATOXGR (the non-zero
      one, or the only direction the param has); when both directions exist and ATOXGR is 0 or
      null, direction/term are null and rule/grade_reason list both ("L: ...; H: ...").
    * evidence: ``src_file:src_row`` of the observation and, when BASE comes from another row, of
      the baseline observation.
    * Derived parameters (the table's ``derived_params``, chosen by ``options.calcium``): with
      ``calcium="corrected"`` (default) the corrected-calcium terms (Hypocalcemia, Hypercalcemia)
      grade CACORR; a CA (total calcium) row with an ALB row of the same subject and calendar day
      (floor of ``day``; the ALB nearest in time, ties the later row) and no measured CACORR that day
      gives a derived CACORR row (CA + 0.02 x (40 - ALB), CA's day, limits and unit; DTYPE
      "DERIVED"; evidence CA row, ALB row; rule + "; <derivation id>"; reason starting "(derived
      ...)"). The CA row itself has no grade and says why ("corrected calcium needs albumin (ALB) on
      the same day" when there is none). ``calcium="as_given"``: CA is graded as corrected calcium.
    * DTYPE: "DERIVED" on derived rows, else null.
    * post_baseline (cartlab): True on rows after the baseline window (calendar day after
      ``baseline_day``; with ``baseline_day0="before_infusion_time"`` also the infusion day's timed rows
      from the infusion on): the rows a worst on-treatment grade reads (ADaM ADLB WGRLOFL/WGRHIFL, the
      report's worst grades); the baseline record (ABLFL, BTOXGR) and the rows before it are False.
    * A censored result (value empty, ``censor`` "<"/">") is graded at both ends of its interval: one
      grade settles it, two give the lower grade with the higher in ATOXGR*_MAX (review 37 R37-1). A
      censored result can be the baseline (BASE empty, BNRIND from its bound when that settles it);
      the rows are then graded with BASE at both ends of its interval (review 37 R37-2).
    """
    options = options or CtcaeOptions()
    if clause_range(options):  # option clinical_clauses=range (review 41 F5)
        return derive_range(study, options, derive_ctcae)
    if options.units == "US":
        raise ValueError("derive_ctcae grades canonical observations, which are in SI units; use units='SI' or 'auto'")
    options = study_options(options)
    obs = study.observations if hasattr(study, "observations") else study
    tabs = tables(None, replace(options, units="SI"))
    us_tabs = tables(None, replace(options, units="US"))
    pmap = param_terms(tabs)
    specs = derived_params(tabs, options)
    for spec in (s for s in specs if not s.get("adjust")):  # the source graded as the param (calcium=as_given)
        for d in ("L", "H"):
            if (str(spec["param"]), d) in pmap:
                pmap[(str(spec["source"]).upper(), d)] = pmap[(str(spec["param"]), d)]
    adjusted = [s for s in specs if s.get("adjust")] + [s for s in specs if not s.get("adjust")]
    params = sorted({p for p, _ in pmap} | {str(s[k]).upper() for s in adjusted for k in ("source", "param")}
                    | {str(s["adjust"]["param"]).upper() for s in adjusted if s.get("adjust")})

    for col in ("src_file", "src_row", "datetime", "lln", "uln", "unit", "orig_unit"):
        if col not in obs.columns:
            obs = obs.with_columns(pl.lit(None).alias(col))
    for col, dt in (("censor", pl.String), ("censor_limit", pl.Float64)):
        if col not in obs.columns:
            obs = obs.with_columns(pl.lit(None, dtype=dt).alias(col))
    # only the columns the derivation needs travel through it; one sort, then order-keeping joins
    f = (
        obs.select("subject_id", "day", "datetime", "param", "value", "unit", "lln", "uln", "src_file", "src_row",
                   pl.col("orig_unit").cast(pl.String).alias("_ounit"),
                   # a censored result ("<10", value empty) is graded by its bound (session 32)
                   pl.when(pl.col("value").is_null() & pl.col("censor").is_in(["<", "<=", ">", ">="]))
                   .then(pl.col("censor")).alias("_cens"), pl.col("censor_limit").cast(pl.Float64).alias("_clim"))
        .with_row_index("_obs")
        .filter(pl.col("param").is_in(params))
        .sort(["subject_id", "param", "day", "_obs"], nulls_last=True)
    )
    inf = infusion_start(study) if options.baseline_day0 == "before_infusion_time" else None
    if inf is not None:  # the infusion's time, for the baseline window (review 37 R37-8)
        f = f.join(inf, on="subject_id", how="left", maintain_order="left")
    # baselines are per subject, so large inputs are derived in subject chunks (bounded memory)
    if f.height <= _CHUNK_ROWS:
        return warn_missing_limits(_derive_chunk(f, tabs, pmap, options, adjusted, us_tabs))
    counts = f.group_by("subject_id", maintain_order=True).len()
    chunk = (counts["len"].cum_sum() // _CHUNK_ROWS).to_list()
    bounds = [0]
    for k in range(1, len(chunk)):
        if chunk[k] != chunk[k - 1]:
            bounds.append(k)
    bounds.append(len(chunk))
    starts = [0, *counts["len"].cum_sum().to_list()]
    parts = [_derive_chunk(f.slice(starts[a], starts[b] - starts[a]), tabs, pmap, options, adjusted, us_tabs)
             for a, b in pairwise(bounds) if b > a]
    return warn_missing_limits(pl.concat(parts))


#: rows of graded params per derivation chunk (see derive_ctcae)
_CHUNK_ROWS = 1_000_000


def _derive_chunk(f: pl.DataFrame, tabs: list[CompiledTable], pmap: dict, options: CtcaeOptions,
                  adjusted: list | None = None, us_tabs: list[CompiledTable] | None = None) -> pl.DataFrame:
    """derive_ctcae on observations of whole subjects, already filtered and sorted."""
    f = derive_params(f, adjusted or [], pmap)
    us_tabs = us_tabs or []
    f = us_columns(f, pmap, us_tabs)
    reported = options.criteria_units_by_row == "reported"
    low_terms = {p: e.term for (p, d), e in pmap.items() if d == "L"}
    high_terms = {p: e.term for (p, d), e in pmap.items() if d == "H"}
    # the baseline: the last value (or censored result, review 37 R37-2) on or before the baseline day,
    # by calendar day (review 37 R37-8; option baseline_day0)
    before = baseline_window(options, "_inf" in f.columns)
    base = (
        f.filter(before & (pl.col("value").is_not_null() | pl.col("_cens").is_not_null()))
        .group_by(["subject_id", "param"], maintain_order=True)
        .last()
        .select(
            "subject_id", "param",
            pl.col("value").alias("BASE"), pl.col("lln").alias("_blln"), pl.col("uln").alias("_buln"),
            pl.col("_obs").alias("_bobs"), pl.col("src_file").alias("_bfile"), pl.col("src_row").alias("_brow"),
            pl.when(pl.col("value").is_null()).then(pl.col("_cens")).alias("_bcens"), pl.col("_clim").alias("_bclim"),
        )
    )
    f = f.join(base, on=["subject_id", "param"], how="left", nulls_equal=True, maintain_order="left").with_columns(
        pl.when(pl.col("_obs") == pl.col("_bobs")).then(pl.lit("Y")).otherwise(None).alias("ABLFL"),
        # after the baseline window: the rows a worst on-treatment grade reads (review 37 R37-9, admiral/tern
        # "highest grade post-baseline"); the baseline record and the rows before it are not
        (~before).alias("post_baseline"),
        pl.when(pl.col("_bcens").is_not_null())
        .then(censored_baseline_bnrind(pl.col("_bcens"), pl.col("_bclim"), pl.col("_blln"), pl.col("_buln")))
        .otherwise(bnrind_from_limits(pl.col("BASE"), pl.col("_blln"), pl.col("_buln"))).alias("BNRIND"),
        pl.when(pl.col("BASE").is_not_null() & (pl.col("BASE") != 0))
        .then((pl.col("value") - pl.col("BASE")) / pl.col("BASE") * 100).otherwise(None).alias("PCHG"),
        pl.col("param").replace_strict(low_terms, default=None, return_dtype=pl.String).alias("ATOXDSCL"),
        pl.col("param").replace_strict(high_terms, default=None, return_dtype=pl.String).alias("ATOXDSCH"),
    ).drop("_blln", "_buln")

    # a censored result is graded at its bound (just inside "<"/">" at the comparison precision: just_inside) and
    # the far end (0 / 1e12; a derived one: _cfar); grades are monotone in the value: one grade settles it, two a range
    cens, lim, digits = pl.col("_cens"), pl.col("_clim"), options.signif_digits or study_signif_digits()
    near = just_inside(cens, lim, digits)
    far = pl.coalesce("_cfar", pl.when(cens.is_in(["<", "<="])).then(0.0).when(cens.is_not_null()).then(1e12))
    f = f.with_columns(pl.coalesce(pl.col("value"), near).alias("_aval"), far.alias("_far"))
    # a censored baseline (BASE empty) likewise, BASE at its bound and far end ("<": 1e-9 x the bound: PCHG defined)
    bc, bl = pl.col("_bcens"), pl.col("_bclim")
    bnear = just_inside(bc, bl, digits)
    bfar = pl.when(bc.is_in(["<", "<="])).then(bl * 1e-9).when(bc.is_not_null()).then(pl.lit(1e12))
    f = f.with_columns(pl.coalesce(pl.col("BASE"), bnear).alias("_bnear"), pl.coalesce(pl.col("BASE"), bfar).alias("_bfar"))

    # both directions graded in one engine call; outcomes come back as small integer codes. A row
    # graded on the US column (criteria_units_by_row="reported", or the "us" pass behind the note of
    # the default) has its value, limits and BASE in that column's unit (session 34, review 34 F1)
    def graded_input(aval: pl.Expr, rows: pl.Expr, mode: str = "table",
                     base: pl.Expr = pl.col("_bnear")) -> list[pl.DataFrame]:
        out = []
        for direction, term_col in (("L", "ATOXDSCL"), ("H", "ATOXDSCH")):
            us_unit, scale, offset = pl.col(f"_u{direction}"), pl.col(f"_s{direction}"), pl.col(f"_o{direction}")
            use = us_unit.is_not_null() if (reported or mode == "us") else pl.lit(False)

            def conv(e: pl.Expr, use: pl.Expr = use, scale: pl.Expr = scale, offset: pl.Expr = offset) -> pl.Expr:
                return pl.when(use).then((e - offset) / scale).otherwise(e)

            out.append(
                f.with_row_index("_i").filter(pl.col(term_col).is_not_null() & rows
                                              & (use if mode == "us" else pl.lit(True))).select(
                    "_i", pl.col(term_col).alias("term"), pl.lit(direction).alias("direction"),
                    conv(aval).alias("aval"), conv(pl.col("lln")).alias("anrlo"), conv(pl.col("uln")).alias("anrhi"),
                    conv(base).alias("base"), pl.col("BNRIND").alias("bnrind"),
                    pl.when(base.is_not_null() & (base != 0)).then((aval - base) / base * 100).alias("pchg"),
                    pl.when(use).then(us_unit).otherwise(pl.col("unit")).alias("unit"),
                    pl.when(use).then(pl.lit("US")).otherwise(pl.lit("SI")).alias("criteria_units"),
                )
            )
        return out

    all_tabs = [*tabs, *us_tabs]
    reads_bnrind = {e.term for tb in tabs for e in tb.entries  # terms with "if baseline was normal/abnormal" rules
                    if baseline_readings(tb, e, list(tb.options.get("high_indicator", ())),
                                         list(tb.options.get("low_indicator", ())))}
    unknown = "baseline ULN unknown (BNRIND missing: the baseline row has no reference limits)"
    inputs = graded_input(pl.col("_aval"), pl.lit(True))
    graded_in = pl.concat(inputs)
    codes, labels, open_max = _grade_codes(graded_in.drop("_i"), all_tabs, options, unknown)
    n_low = inputs[0].height
    grade_of = np.array([-1 if g is None else g for g, _, _ in labels], dtype=np.int64)
    # the upper bound of an outcome a missing input leaves open (-1: settled)
    upper_of = np.full(len(labels), -1, dtype=np.int64)
    for k, g in open_max.items():
        upper_of[k] = g
    gid = {"L": np.full(f.height, -1, dtype=np.int64), "H": np.full(f.height, -1, dtype=np.int64)}
    idx = graded_in["_i"].to_numpy()
    code = codes.to_numpy()
    gid["L"][idx[:n_low]] = code[:n_low]
    gid["H"][idx[n_low:]] = code[n_low:]

    def grades(g: np.ndarray) -> pl.Series:
        out = np.where(g >= 0, grade_of[np.maximum(g, 0)], -1)
        return pl.Series(out, dtype=pl.Int64)

    def uppers(g: np.ndarray) -> pl.Series:
        out = np.where(g >= 0, upper_of[np.maximum(g, 0)], -1)
        return pl.Series(out, dtype=pl.Int64)

    # a censored result or baseline: graded at each end of its interval too (grades are monotone in
    # AVAL and in BASE, so the corners bound them); the lowest grade stands, the highest is *_MAX
    # (review 37 R37-1, R37-2: a range, not "not gradable"); -9: the row is not graded so
    main = {d: grades(gid[d]).to_numpy() for d in ("L", "H")}
    low = {d: main[d].copy() for d in ("L", "H")}
    high = {d: np.maximum(main[d], uppers(gid[d]).to_numpy()) for d in ("L", "H")}
    spread = {d: np.zeros(f.height, dtype=bool) for d in ("L", "H")}
    cens_a, cens_b = pl.col("_cens").is_not_null(), pl.col("_bcens").is_not_null()
    for aval, base, rows in ((pl.col("_far"), pl.col("_bnear"), cens_a), (pl.col("_aval"), pl.col("_bfar"), cens_b),
                             (pl.col("_far"), pl.col("_bfar"), cens_a & cens_b)):
        v_in = graded_input(aval, rows, base=base)
        if v_in[0].height + v_in[1].height == 0:
            continue
        vc, vlab, vopen = _grade_codes(pl.concat(v_in).drop("_i"), all_tabs, options, unknown)
        vgrade = np.array([-1 if g is None else g for g, _, _ in vlab], dtype=np.int64)
        vup = np.array([max(vopen.get(i, -1), vgrade[i]) for i in range(len(vlab))], dtype=np.int64)
        vidx = pl.concat(v_in)["_i"].to_numpy()
        codes_v = vc.to_numpy()
        nl = v_in[0].height
        for d, sl in (("L", slice(0, nl)), ("H", slice(nl, None))):
            at, g, u = vidx[sl], vgrade[codes_v[sl]], vup[codes_v[sl]]
            spread[d][at] |= g != main[d][at]
            low[d][at] = np.where((low[d][at] < 0) | (g < 0), -1, np.minimum(low[d][at], g))
            high[d][at] = np.maximum(high[d][at], u)
    f = f.with_columns(
        *[pl.Series(f"ATOXGR{d}", np.where(low[d] >= 0, low[d], -1), dtype=pl.Int64) for d in ("L", "H")],
        pl.Series("_gL", gid["L"], dtype=pl.Int64), pl.Series("_gH", gid["H"], dtype=pl.Int64),
        *[pl.Series(f"ATOXGR{d}_MAX", high[d], dtype=pl.Int64) for d in ("L", "H")],
        *[pl.Series(f"_sp{d}", spread[d]) for d in ("L", "H")],
    ).with_columns(
        *[pl.when(pl.col(f"_sp{d}") & (pl.col(f"ATOXGR{d}") >= 0) & (pl.col(f"ATOXGR{d}_MAX") > pl.col(f"ATOXGR{d}")))
          .then(pl.format("grade {}-{}", pl.col(f"ATOXGR{d}"), pl.col(f"ATOXGR{d}_MAX"))).alias(f"_range{d}")
          for d in ("L", "H")],
    ).with_columns(
        # -1 marks "no term in this direction" (no code) or "not gradable" (grade None)
        pl.when(pl.col("ATOXGRL") >= 0).then(pl.col("ATOXGRL")).otherwise(None).alias("ATOXGRL"),
        pl.when(pl.col("ATOXGRH") >= 0).then(pl.col("ATOXGRH")).otherwise(None).alias("ATOXGRH"),
        # the upper bound only where the grade stands and a missing input or an interval leaves a higher one open
        *[pl.when((pl.col(f"ATOXGR{d}") >= 0) & (pl.col(f"ATOXGR{d}_MAX") > pl.col(f"ATOXGR{d}")))
          .then(pl.col(f"ATOXGR{d}_MAX")).otherwise(None).alias(f"ATOXGR{d}_MAX") for d in ("L", "H")],
    )
    f = f.with_columns(combine_atoxgr().alias("ATOXGR"))
    no_term = pl.col("ATOXDSCL").is_null() & pl.col("ATOXDSCH").is_null()  # a source row (CA): not graded itself
    dec = (
        pl.when(no_term).then(None)
        .when(pl.col("ATOXGR") < 0).then(pl.lit("L"))
        .when(pl.col("ATOXGR") > 0).then(pl.lit("H"))
        .when(pl.col("ATOXDSCH").is_null()).then(pl.lit("L"))
        .when(pl.col("ATOXDSCL").is_null()).then(pl.lit("H"))
        .otherwise(None)
    )
    f = f.with_columns(dec.alias("direction"))
    # the deciding outcome (one code) or both ("L: ...; H: ..."): one string lookup per distinct key
    nlab = len(labels)
    key = (
        pl.when(no_term).then(None)
        .when(pl.col("direction") == "L").then(pl.col("_gL"))
        .when(pl.col("direction") == "H").then(pl.col("_gH"))
        .otherwise(nlab + pl.col("_gL") * nlab + pl.col("_gH"))
    )
    # the reason also depends on which inputs the row lacks ("ANRHI missing"): key * 8 + that mask
    mask = missing_mask(pl.col("_aval"), pl.col("lln"), pl.col("uln"))
    f = f.with_columns(key.alias("_key")).with_columns((pl.col("_key") * 8 + mask).alias("_wkey"))
    rule_map: dict[int, str] = {}
    why_map: dict[int, str] = {}
    for k in f["_key"].unique().to_list():
        if k is None:
            continue
        if k < nlab:
            rule_map[k] = labels[k][1] or ""
        else:
            a, b = divmod(k - nlab, nlab)
            rule_map[k] = f"L: {labels[a][1]}; H: {labels[b][1]}"
    for wk in f["_wkey"].unique().to_list():
        if wk is None:
            continue
        k, m = divmod(wk, 8)
        if k < nlab:
            why_map[wk] = precise_missing(labels[k][2], m)
        else:
            a, b = divmod(k - nlab, nlab)
            why_map[wk] = f"L: {precise_missing(labels[a][2], m)}; H: {precise_missing(labels[b][2], m)}"
    f = f.with_columns(
        pl.when(pl.col("direction") == "L").then(pl.col("ATOXDSCL"))
        .when(pl.col("direction") == "H").then(pl.col("ATOXDSCH")).otherwise(None).alias("term"),
        # few distinct texts over millions of rows: categorical (compares and prints as text)
        pl.col("_key").replace_strict(rule_map, default=None, return_dtype=pl.String).cast(pl.Categorical).alias("rule"),
        pl.col("_wkey").replace_strict(why_map, default=None, return_dtype=pl.String).cast(pl.Categorical)
        .alias("grade_reason"),
    )
    # derived rows: the derivation in the reason and its id in the rule; source rows: why not graded
    f = f.with_columns(
        pl.when(pl.col("_dnote").is_not_null()).then(pl.concat_str([pl.col("rule").cast(pl.String), pl.col("_drule")],
                                                                   separator="; "))
        .when(no_term).then(pl.col("_drule")).otherwise(pl.col("rule").cast(pl.String)).cast(pl.Categorical).alias("rule"),
        pl.when(pl.col("_dnote").is_not_null()).then(pl.concat_str([pl.col("_dnote"), pl.col("grade_reason").cast(pl.String)],
                                                                   separator=" "))
        .when(no_term).then(pl.coalesce("_srcnote", pl.lit("not gradable: AVAL missing")))
        .otherwise(pl.col("grade_reason").cast(pl.String))
        .cast(pl.Categorical).alias("grade_reason"),
    )
    # a censored result: AVAL stays empty; the reason names it, and the range when its bound does not settle the grade
    ctext = censored_text(pl.col("_cens"), pl.col("_clim"))
    rng = pl.concat_str([pl.when(pl.col("_rangeL").is_not_null()).then(pl.format("L {}", pl.col("_rangeL"))),
                         pl.when(pl.col("_rangeH").is_not_null()).then(pl.format("H {}", pl.col("_rangeH")))],
                        separator=", ", ignore_nulls=True)
    btext = censored_text(pl.col("_bcens"), pl.col("_bclim"))
    open_ranges = pl.concat_str([pl.when(pl.col(f"ATOXGR{d}_MAX").is_not_null()).then(pl.format(
        "{} grade {}-{}", pl.lit(d), pl.col(f"ATOXGR{d}"), pl.col(f"ATOXGR{d}_MAX"))) for d in ("L", "H")],
        separator=", ", ignore_nulls=True)
    f = f.with_columns(pl.when(pl.col("_cens").is_not_null() & ~no_term).then(
        pl.when(rng != "").then(pl.format("censored result {} (AVAL empty) leaves {} open (the lower grade stands, "
                                          "the higher in ATOXGR*_MAX); at its bound: {}", ctext, rng,
                                          pl.col("grade_reason").cast(pl.String)))
        .otherwise(pl.format("censored result {} (AVAL empty), graded by its bound: {}", ctext,
                             pl.col("grade_reason").cast(pl.String))))
        .otherwise(pl.col("grade_reason").cast(pl.String)).alias("grade_reason"))
    # a censored baseline (review 37 R37-2): the reason names it, its BNRIND and the range it leaves
    f = f.with_columns(pl.when(pl.col("_bcens").is_not_null() & ~no_term).then(pl.concat_str([
        pl.col("grade_reason"),
        pl.format("baseline is the censored result {} {} (BASE empty; BNRIND {}); graded at both ends of its interval",
                  btext, pl.col("unit"), pl.col("BNRIND").fill_null("not settled by its bound: both readings graded")),
        pl.when(pl.col("_cens").is_null() & (open_ranges != "")).then(pl.format("leaves {} open", open_ranges))],
        separator="; ", ignore_nulls=True))
        .when(pl.col("BASE").is_null() & ~no_term & pl.col("ATOXDSCL").is_in(list(reads_bnrind))
              | pl.col("BASE").is_null() & ~no_term & pl.col("ATOXDSCH").is_in(list(reads_bnrind)))
        .then(pl.concat_str([pl.col("grade_reason"), pl.lit(NO_BASELINE[no_baseline_mode(tabs)])], separator="; "))
        .otherwise(pl.col("grade_reason")).cast(pl.Categorical).alias("grade_reason"))
    f = column_note(f, graded_input, _grade_codes, all_tabs, options, reported)
    btox = f.filter(pl.col("ABLFL") == "Y").select("subject_id", "param", pl.col("ATOXGR").alias("BTOXGR"))
    f = f.join(btox, on=["subject_id", "param"], how="left", nulls_equal=True, maintain_order="left")
    sep = "\x1f"
    own = evidence_ref()
    other = pl.when(pl.col("_bobs").is_not_null() & (pl.col("_bobs") != pl.col("_obs"))).then(
        evidence_ref("_bfile", "_brow"))
    joined = pl.concat_str([own, evidence_ref("_xfile", "_xrow"), other], separator=sep, ignore_nulls=True)
    f = f.with_columns(
        pl.when(joined == "").then(pl.lit([], dtype=EVIDENCE)).otherwise(joined.str.split(sep)).alias("evidence"),
    )
    f = f.rename({"value": "AVAL", "unit": "AVALU", "lln": "ANRLO", "uln": "ANRHI"})
    return f.select(ADLB_COLUMNS)
