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
  base, bnrind, pchg, unit) adding ``grade``, ``grade_reason`` and ``rule``. Vectorised: rows are
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

from cartlab.grading.ctcae_criteria import (
    CompiledTable,
    Entry,
    Label,
    compile_criteria,
    ctcae_terms,
    dispatch,
    indicators,
    key,
    missing_mask,
    param_terms,
    precise_missing,
    tables,
)
from cartlab.grading.ctcae_options import OPTION_DOCS, CtcaeOptions
from cartlab.grading.ctcae_units import available_criteria, criteria_names, metadata_units, signif, signif_scalar
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
]


def _grade_partition(part: pl.DataFrame, table: CompiledTable, entry: Entry, gids: dict[str, int],
                     hi: list[str], lo: list[str]) -> pl.LazyFrame:
    """One entry's rule set on its partition: a plan giving _row and the global outcome id.

    The rules read few columns whose values repeat (a lab's limits, rounded results): each distinct
    combination of the inputs is graded once and joined back to its rows."""
    dec = table.decision(entry, hi, lo)
    ids = {r.id: gids[f"{table.name}:{r.id}"] for r in dec.rules}
    fired = pl.col("_c_rule").replace_strict(ids, default=gids[entry.zero[1]], return_dtype=pl.Int32)
    inputs = sorted({n for r in dec.rules for c in r.when for n in dec.compiler.inputs(c)})
    if not inputs:
        return dec.apply(part.lazy(), "_c", "rule").select(pl.col("_row"), fired.alias("_gid"))
    distinct = dec.apply(part.lazy().select(inputs).unique(), "_c", "rule").select(*inputs, fired.alias("_gid"))
    return part.lazy().select("_row", *inputs).join(distinct, on=inputs, how="left", nulls_equal=True).select(
        "_row", "_gid")


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
    that decided, ``<table>:<entry>:<rule>``; ``...:g0`` when no grade 1-4 rule held) and
    ``grade_reason`` (the rule in words, e.g. ``grade 3: AVAL < 1 10^9/L``).

    ``criteria``: None (the tables of ``options.version``/``options.units``), a table name, a
    loaded table mapping, or a sequence of them in precedence order.
    """
    gid, labels = _grade_codes(frame, criteria, options)
    grades = {i: g for i, (g, _, _) in enumerate(labels)}
    rules = {i: r for i, (_, r, _) in enumerate(labels)}
    # the reason per (outcome, which of AVAL/ANRLO/ANRHI are missing): "ANRHI missing", not "AVAL or ANRHI missing"
    mask = frame.select(missing_mask(*(_as_float(frame, c) for c in ("aval", "anrlo", "anrhi")))).to_series()
    wkey = pl.Series("_k", gid.cast(pl.Int64) * 8 + mask)
    reasons = {k: precise_missing(labels[k // 8][2], k % 8) for k in wkey.unique().to_list()}
    out = pl.DataFrame({"_gid": gid, "_k": wkey}).select(
        pl.col("_gid").replace_strict(grades, return_dtype=pl.Int64).alias("grade"),
        pl.col("_k").replace_strict(reasons, return_dtype=pl.String).alias("grade_reason"),
        pl.col("_gid").replace_strict(rules, return_dtype=pl.String).alias("rule"),
    )
    return frame.with_columns(out.get_columns())


def _grade_codes(frame: pl.DataFrame, criteria: Any = None, options: CtcaeOptions | None = None
                 ) -> tuple[pl.Series, list[Label]]:
    """The engine behind :func:`grade_labs`: per row the id of the outcome (Int32), and the outcomes
    (grade, rule id, reason) indexed by that id. Rows are graded per dispatch partition."""
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
    param_map = param_terms(tabs) if use_param else {}

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
    parts = work.partition_by(keys, as_dict=True, include_key=False) if work.height else {}
    for k, part in parts.items():
        kv = dict(zip(keys, k))
        term = kv.get("term")
        if term is None and use_param and kv.get("param") is not None:
            ent = param_map.get((str(kv["param"]).strip().upper(), key(kv.get("direction")) or ""))
            term = ent.term if ent is not None else None
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
            pieces.append(part.lazy().select(pl.col("_row"), pl.lit(extra_gid[k2], dtype=pl.Int32).alias("_gid")))
            continue
        hi = indicators(kv.get("high_indicator"), d.table.options.get("high_indicator", ()))
        lo = indicators(kv.get("low_indicator"), d.table.options.get("low_indicator", ()))
        pieces.append(_grade_partition(part, d.table, d.entry, gids, hi, lo))

    gid = np.zeros(work.height, dtype=np.int32)
    for piece in (pl.collect_all(pieces) if pieces else []):
        gid[piece["_row"].to_numpy()] = piece["_gid"].to_numpy()  # scatter back to input order
    return pl.Series("_gid", gid, dtype=pl.Int32), labels


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
    "rule", "grade_reason", "evidence",
)


def derive_ctcae(study: Any, options: CtcaeOptions | None = None) -> pl.DataFrame:
    """CTCAE grades of canonical observations as an ADLB-like frame (one row per observation).

    ``study`` is a :class:`cartlab.model.Study` or its observations frame. Rows are the
    observations whose ``param`` is listed by a term of the criteria (``params`` in the YAML).

    * AVAL/ANRLO/ANRHI/AVALU = value/lln/uln/unit (canonical SI units, so the SI table applies;
      ``options.units="US"`` is refused).
    * BASE: per subject and param, the last non-missing value with ``day <= options.baseline_day``
      (``<`` when ``baseline_inclusive`` is False; ties on the same day: the later source row);
      ABLFL = "Y" on that row. BASE is filled on every row of the subject/param.
    * BNRIND from the baseline row's own limits: HIGH (> ULN), LOW (< LLN), NORMAL (limits known,
      within), null (no baseline or no limits). PCHG = 100 * (AVAL - BASE) / BASE.
    * ATOXDSCL/ATOXDSCH: the low/high term of the param (null when none); ATOXGRL/ATOXGRH their
      grades; ATOXGR the signed combination (:func:`combine_atoxgr`); BTOXGR = ATOXGR of the baseline
      row.
    * term/direction/rule/grade_reason: those of the direction that decides ATOXGR (the non-zero
      one, or the only direction the param has); when both directions exist and ATOXGR is 0 or
      null, direction/term are null and rule/grade_reason list both ("L: ...; H: ...").
    * evidence: ``src_file:src_row`` of the observation and, when BASE comes from another row, of
      the baseline observation.
    """
    options = options or CtcaeOptions()
    if options.units == "US":
        raise ValueError("derive_ctcae grades canonical observations, which are in SI units; use units='SI' or 'auto'")
    obs = study.observations if hasattr(study, "observations") else study
    tabs = tables(None, replace(options, units="SI"))
    pmap = param_terms(tabs)
    params = sorted({p for p, _ in pmap})

    for col in ("src_file", "src_row", "datetime", "lln", "uln", "unit"):
        if col not in obs.columns:
            obs = obs.with_columns(pl.lit(None).alias(col))
    # only the columns the derivation needs travel through it; one sort, then order-keeping joins
    f = (
        obs.select("subject_id", "day", "datetime", "param", "value", "unit", "lln", "uln", "src_file", "src_row")
        .with_row_index("_obs")
        .filter(pl.col("param").is_in(params))
        .sort(["subject_id", "param", "day", "_obs"], nulls_last=True)
    )
    # baselines are per subject, so large inputs are derived in subject chunks (bounded memory)
    if f.height <= _CHUNK_ROWS:
        return _derive_chunk(f, tabs, pmap, options)
    counts = f.group_by("subject_id", maintain_order=True).len()
    chunk = (counts["len"].cum_sum() // _CHUNK_ROWS).to_list()
    bounds = [0]
    for k in range(1, len(chunk)):
        if chunk[k] != chunk[k - 1]:
            bounds.append(k)
    bounds.append(len(chunk))
    starts = [0, *counts["len"].cum_sum().to_list()]
    parts = [_derive_chunk(f.slice(starts[a], starts[b] - starts[a]), tabs, pmap, options)
             for a, b in pairwise(bounds) if b > a]
    return pl.concat(parts)


#: rows of graded params per derivation chunk (see derive_ctcae)
_CHUNK_ROWS = 1_000_000


def _derive_chunk(f: pl.DataFrame, tabs: list[CompiledTable], pmap: dict, options: CtcaeOptions) -> pl.DataFrame:
    """derive_ctcae on observations of whole subjects, already filtered and sorted."""
    low_terms = {p: e.term for (p, d), e in pmap.items() if d == "L"}
    high_terms = {p: e.term for (p, d), e in pmap.items() if d == "H"}
    before = pl.col("day") <= options.baseline_day if options.baseline_inclusive else pl.col("day") < options.baseline_day
    base = (
        f.filter(before & pl.col("value").is_not_null())
        .group_by(["subject_id", "param"], maintain_order=True)
        .last()
        .select(
            "subject_id", "param",
            pl.col("value").alias("BASE"), pl.col("lln").alias("_blln"), pl.col("uln").alias("_buln"),
            pl.col("_obs").alias("_bobs"), pl.col("src_file").alias("_bfile"), pl.col("src_row").alias("_brow"),
        )
    )
    f = f.join(base, on=["subject_id", "param"], how="left", nulls_equal=True, maintain_order="left").with_columns(
        pl.when(pl.col("_obs") == pl.col("_bobs")).then(pl.lit("Y")).otherwise(None).alias("ABLFL"),
        pl.when(pl.col("BASE").is_null()).then(None)
        .when(pl.col("_buln").is_not_null() & (pl.col("BASE") > pl.col("_buln"))).then(pl.lit("HIGH"))
        .when(pl.col("_blln").is_not_null() & (pl.col("BASE") < pl.col("_blln"))).then(pl.lit("LOW"))
        .when(pl.col("_blln").is_not_null() | pl.col("_buln").is_not_null()).then(pl.lit("NORMAL"))
        .otherwise(None).alias("BNRIND"),
        pl.when(pl.col("BASE").is_not_null() & (pl.col("BASE") != 0))
        .then((pl.col("value") - pl.col("BASE")) / pl.col("BASE") * 100).otherwise(None).alias("PCHG"),
        pl.col("param").replace_strict(low_terms, default=None, return_dtype=pl.String).alias("ATOXDSCL"),
        pl.col("param").replace_strict(high_terms, default=None, return_dtype=pl.String).alias("ATOXDSCH"),
    ).drop("_blln", "_buln")

    # both directions graded in one engine call; outcomes come back as small integer codes
    inputs = []
    for direction, term_col in (("L", "ATOXDSCL"), ("H", "ATOXDSCH")):
        inputs.append(
            f.with_row_index("_i").filter(pl.col(term_col).is_not_null()).select(
                "_i", pl.col(term_col).alias("term"), pl.lit(direction).alias("direction"),
                pl.col("value").alias("aval"), pl.col("lln").alias("anrlo"), pl.col("uln").alias("anrhi"),
                pl.col("BASE").alias("base"), pl.col("BNRIND").alias("bnrind"), pl.col("PCHG").alias("pchg"),
                pl.col("unit").alias("unit"),
            )
        )
    graded_in = pl.concat(inputs)
    codes, labels = _grade_codes(graded_in.drop("_i"), tabs, options)
    n_low = inputs[0].height
    grade_of = np.array([-1 if g is None else g for g, _, _ in labels], dtype=np.int64)
    gid = {"L": np.full(f.height, -1, dtype=np.int64), "H": np.full(f.height, -1, dtype=np.int64)}
    idx = graded_in["_i"].to_numpy()
    code = codes.to_numpy()
    gid["L"][idx[:n_low]] = code[:n_low]
    gid["H"][idx[n_low:]] = code[n_low:]

    def grades(g: np.ndarray) -> pl.Series:
        out = np.where(g >= 0, grade_of[np.maximum(g, 0)], -1)
        return pl.Series(out, dtype=pl.Int64)

    f = f.with_columns(
        grades(gid["L"]).alias("ATOXGRL"), grades(gid["H"]).alias("ATOXGRH"),
        pl.Series("_gL", gid["L"], dtype=pl.Int64), pl.Series("_gH", gid["H"], dtype=pl.Int64),
    ).with_columns(
        # -1 marks "no term in this direction" (no code) or "not gradable" (grade None)
        pl.when(pl.col("ATOXGRL") >= 0).then(pl.col("ATOXGRL")).otherwise(None).alias("ATOXGRL"),
        pl.when(pl.col("ATOXGRH") >= 0).then(pl.col("ATOXGRH")).otherwise(None).alias("ATOXGRH"),
    )
    f = f.with_columns(combine_atoxgr().alias("ATOXGR"))
    dec = (
        pl.when(pl.col("ATOXGR") < 0).then(pl.lit("L"))
        .when(pl.col("ATOXGR") > 0).then(pl.lit("H"))
        .when(pl.col("ATOXDSCH").is_null()).then(pl.lit("L"))
        .when(pl.col("ATOXDSCL").is_null()).then(pl.lit("H"))
        .otherwise(None)
    )
    f = f.with_columns(dec.alias("direction"))
    # the deciding outcome (one code) or both ("L: ...; H: ..."): one string lookup per distinct key
    nlab = len(labels)
    key = (
        pl.when(pl.col("direction") == "L").then(pl.col("_gL"))
        .when(pl.col("direction") == "H").then(pl.col("_gH"))
        .otherwise(nlab + pl.col("_gL") * nlab + pl.col("_gH"))
    )
    # the reason also depends on which inputs the row lacks ("ANRHI missing"): key * 8 + that mask
    mask = missing_mask(pl.col("value"), pl.col("lln"), pl.col("uln"))
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
    btox = f.filter(pl.col("ABLFL") == "Y").select("subject_id", "param", pl.col("ATOXGR").alias("BTOXGR"))
    f = f.join(btox, on=["subject_id", "param"], how="left", nulls_equal=True, maintain_order="left")
    sep = "\x1f"
    own = evidence_ref()
    other = pl.when(pl.col("BASE").is_not_null() & (pl.col("_bobs") != pl.col("_obs"))).then(
        evidence_ref("_bfile", "_brow"))
    joined = pl.concat_str([own, other], separator=sep, ignore_nulls=True)
    f = f.with_columns(
        pl.when(joined == "").then(pl.lit([], dtype=EVIDENCE)).otherwise(joined.str.split(sep)).alias("evidence"),
    )
    f = f.rename({"value": "AVAL", "unit": "AVALU", "lln": "ANRLO", "uln": "ANRHI"})
    return f.select(ADLB_COLUMNS)
