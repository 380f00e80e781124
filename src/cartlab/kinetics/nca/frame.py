"""The NCA of a long frame: rows to padded arrays, the engine, and the result frame (:func:`nca`,
:func:`nca_profile`, :func:`time_above`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from cartlab._deprecated import renamed
from cartlab.kinetics.nca.engine import _BIT, _WARNINGS, _engine_chunked
from cartlab.kinetics.nca.options import (
    CENSORED_RESULT,
    NA_TEXT,
    NCA_COLUMNS,
    NcaOptions,
    parse_interval,
)

# ---------------------------------------------------------------------------------------------
# frame -> padded arrays


def _subject_codes(keys: list, subjects: pl.Series, option: str) -> np.ndarray:
    """Row numbers in ``subjects`` of the option's subject keys (an error names unknown keys)."""
    ks = pl.Series("_s", keys, strict=False)
    try:
        ks = ks.cast(subjects.dtype, strict=False)
    except Exception:  # noqa: BLE001 - keys of another kind than the column: compare as text
        ks = ks.cast(pl.String).cast(subjects.dtype, strict=False)
    lut = pl.DataFrame({"_s": subjects}).with_row_index("_code")
    got = pl.DataFrame({"_s": ks}).with_row_index("_k").join(lut, on="_s", how="left").sort("_k")["_code"]
    if got.null_count():
        unknown = [keys[i] for i in np.nonzero(got.is_null().to_numpy())[0][:10]]
        raise ValueError(f"{option}: subject(s) {unknown} not in the data")
    return got.to_numpy().astype(np.int64)


def _float_column(df: pl.DataFrame, col: str, label: str) -> np.ndarray:
    """A column as float64 (NaN = missing); raises naming the first text that is not a number."""
    s = df[col]
    if s.dtype.is_numeric():
        return s.cast(pl.Float64).to_numpy()
    txt = s.cast(pl.String).str.strip_chars()
    na = txt.is_null() | txt.is_in(list(NA_TEXT))
    val = txt.cast(pl.Float64, strict=False)
    bad = (val.is_null() & ~na).to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"row {i} (0-based), column {label!r}: {s[i]!r} is not a number")
    return val.to_numpy()


def _prepare(frame: pl.DataFrame, subject: str, time: str, conc: str, lloq: str | None,
             value_text: str | None, doses: pl.DataFrame | None, dose_time: str | None,
             opt: NcaOptions):
    missing = [c for c in (subject, time, conc, lloq, value_text) if c is not None and c not in frame.columns]
    if missing:
        raise ValueError(f"column(s) {missing} not found; the frame has {frame.columns}")
    if frame[subject].null_count():
        i = int(np.argmax(frame[subject].is_null().to_numpy()))
        raise ValueError(f"row {i} (0-based): column {subject!r} is missing")
    t = _float_column(frame, time, time)
    if np.isnan(t).any():
        raise ValueError(f"row {int(np.argmax(np.isnan(t)))} (0-based): column {time!r} is missing")
    if np.isinf(t).any():
        raise ValueError(f"row {int(np.argmax(np.isinf(t)))} (0-based): column {time!r} is not finite")
    c = _float_column(frame, conc, conc)
    blq = c == 0
    above_row = np.zeros(c.size, dtype=bool)
    if value_text is not None:
        vt = frame[value_text].cast(pl.String)
        low = vt.str.contains(r"^\s*(<=|<|≤)\s*([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$").fill_null(False)
        blq |= low.to_numpy()
        up = (vt.str.contains(r"^\s*(>=|>|≥)").fill_null(False).to_numpy() & np.isnan(c))
        if up.any():
            lim = vt.str.extract(CENSORED_RESULT.pattern, 2).cast(pl.Float64, strict=False).to_numpy()
            up &= ~np.isnan(lim)
            c = np.where(up, lim, c)
            above_row = up
    if lloq is not None:
        lq = _float_column(frame, lloq, lloq)
        with np.errstate(invalid="ignore"):
            blq |= c < lq
    with np.errstate(invalid="ignore"):
        neg = c < 0
    if neg.any():
        i = int(np.argmax(neg))
        raise ValueError(f"row {i} (0-based), column {conc!r}: negative concentration {c[i]:g}")

    # group by subject (order of first appearance), pad, sort every row by time
    g = (frame.select(pl.col(subject)).with_row_index("_r")
         .group_by(subject, maintain_order=True).agg(pl.col("_r")))
    subjects = g[subject]
    s = subjects.len()
    counts = g["_r"].list.len().to_numpy().astype(np.int64)
    perm = g["_r"].explode().to_numpy().astype(np.int64) if s else np.zeros(0, dtype=np.int64)
    m = max(int(counts.max()) if s else 0, 1)
    code = np.repeat(np.arange(s), counts)
    pos = np.arange(perm.size) - np.repeat(np.cumsum(counts) - counts, counts)
    T = np.full((s, m), np.nan)
    C = np.full((s, m), np.nan)
    B = np.zeros((s, m), dtype=bool)
    AB = np.zeros((s, m), dtype=bool)
    T[code, pos] = t[perm]
    C[code, pos] = c[perm]
    B[code, pos] = blq[perm]
    AB[code, pos] = above_row[perm]
    offset = None
    if doses is not None:
        dt_col = dose_time or time
        miss = [x for x in (subject, dt_col) if x not in doses.columns]
        if miss:
            raise ValueError(f"doses: column(s) {miss} not found; it has {doses.columns}")
        agg = pl.col("_d").min() if opt.time_from == "first" else pl.col("_d").max()
        d = (doses.select(pl.col(subject).cast(subjects.dtype, strict=False).alias("_s"),
                          pl.col(dt_col).cast(pl.Float64, strict=False).alias("_d"))
             .drop_nulls().group_by("_s").agg(agg.alias("_off")))
        offset = (pl.DataFrame({"_s": subjects}).with_row_index("_code")
                  .join(d, on="_s", how="left").sort("_code")["_off"])
        T = T - offset.fill_null(0.0).to_numpy()[:, None]
    with np.errstate(invalid="ignore"):
        unsorted = T[:, 1:] < T[:, :-1]
    if unsorted.any():
        order = np.argsort(T, axis=1)  # NaN padding sorts last
        T, C = np.take_along_axis(T, order, 1), np.take_along_axis(C, order, 1)
        B, AB = np.take_along_axis(B, order, 1), np.take_along_axis(AB, order, 1)
    dup = T[:, 1:] == T[:, :-1]
    if dup.any():
        r, k = np.argwhere(dup)[0]
        raise ValueError(f"subject {subjects[int(r)]!r} has two samples at time {T[r, k]:g}; time must be "
                         "strictly increasing within a subject")

    # lambda.z options per subject: a subject's own entry first, else the None default
    INC = np.zeros((s, m), dtype=bool)
    EXC = np.zeros((s, m), dtype=bool)
    kind = np.zeros(s, dtype=np.int8)  # 0 best fit, 1 lambda_z_times, 2 lambda_z_range
    fixed = np.full(s, np.nan)
    own = np.zeros(s, dtype=bool)
    entries = {}
    for name in ("lambda_z_times", "lambda_z_range", "lambda_z_fixed", "lambda_z_exclude"):
        keys = [k for k in getattr(opt, name) if k is not None]
        codes = _subject_codes(keys, subjects, name) if keys else np.zeros(0, dtype=np.int64)
        entries[name] = (keys, codes)
        own[codes] = True
    for name, target in (("lambda_z_times", INC), ("lambda_z_exclude", EXC)):
        keys, codes = entries[name]
        mapping = getattr(opt, name)
        if name == "lambda_z_times":
            kind[codes] = 1
        pc = np.repeat(codes, [len(mapping[k]) for k in keys]).astype(np.int64)
        pt = np.array([float(x) for k in keys for x in mapping[k]], dtype=float)
        if pc.size:
            r, k = np.nonzero(T[pc] == pt[:, None])
            target[pc[r], k] = True
    if opt.lambda_z_range:
        lo, hi = np.full(s, np.nan), np.full(s, np.nan)
        if None in opt.lambda_z_range:
            lo[~own], hi[~own] = opt.lambda_z_range[None]
        keys, codes = entries["lambda_z_range"]
        lo[codes] = [opt.lambda_z_range[k][0] for k in keys]
        hi[codes] = [opt.lambda_z_range[k][1] for k in keys]
        ranged = ~np.isnan(lo)
        INC |= ranged[:, None] & (T >= lo[:, None]) & (T <= hi[:, None])
        kind[ranged] = 2
    if opt.lambda_z_fixed:
        if None in opt.lambda_z_fixed:
            fixed[~own] = opt.lambda_z_fixed[None]
        keys, codes = entries["lambda_z_fixed"]
        fixed[codes] = [opt.lambda_z_fixed[k] for k in keys]
    return subjects, T, C, B, counts, INC, EXC, kind, fixed, offset, AB.any(axis=1)


# ---------------------------------------------------------------------------------------------
# output


def _g(x: float) -> str:
    return f"{x:g}"


def _stack(results: list[dict], key: str) -> np.ndarray:
    """Per-interval arrays of one column interleaved subject by subject."""
    return np.stack([r[key] for r in results], axis=1).reshape(-1)


def _assemble(subject: str, subjects: pl.Series, results: list[dict], opt: NcaOptions,
              kind: np.ndarray, fixed_ok: np.ndarray, above: np.ndarray, offset: pl.Series | None,
              threshold) -> pl.DataFrame:
    s = subjects.len()
    nk = len(results)
    sub = np.repeat(np.arange(s), nk)
    cols: dict[str, Any] = {}
    ints = ("n_samples", "n_blq")
    for c in NCA_COLUMNS:
        if c in ("method", "rule", "reason", "lambda.z.times", "warnings"):
            continue
        v = _stack(results, c)
        if c in ints:
            cols[c] = pl.Series(c, v.astype(np.int64))
        elif c == "lambda.z.n.points":
            cols[c] = pl.Series(c, v.astype(np.int64)).replace(0, None)
        else:
            cols[c] = pl.Series(c, v.astype(float), nan_to_null=True)
    width = max(r["_times"].shape[1] for r in results)
    times = np.stack([np.pad(r["_times"], ((0, 0), (width - r["_times"].shape[1], 0)), constant_values=np.nan)
                      for r in results], axis=1).reshape(s * nk, width)
    cols["lambda.z.times"] = (pl.Series("lambda.z.times", times).arr.to_list()
                              .list.eval(pl.element().filter(pl.element().is_not_nan())))

    # rule and reason: one category per row; numbers only where a fit was made
    found = _stack(results, "_found")
    kd = kind[sub]
    fx = fixed_ok[sub]
    nsamp = _stack(results, "n_samples")
    tmx = _stack(results, "tmax")
    nc = _stack(results, "_nc")
    cat = np.select(
        [fx, (kd > 0) & found, kd > 0, found, nsamp == 0, np.isnan(tmx), nc < opt.min_hl_points],
        [0, 1, 2, 3, 4, 5, 6], 7)
    rule_of = {0: "fixed", 1: "manual", 2: "manual", 3: "best-fit", 4: "none", 5: "none", 6: "none", 7: "none"}
    word = "at or after" if opt.allow_tmax_in_half_life else "after"
    static = {
        0: "lambda.z given in options (lambda_z_fixed); no fit",
        2: "manual: the selected samples give no lambda.z > 0 (needs >= 2 positive samples); not reported",
        4: "no sample in the interval",
        5: "no quantifiable sample in the interval",
        6: f"too few positive samples {word} tmax for a fit (min_hl_points {opt.min_hl_points})",
        7: (f"no set of >= {opt.min_hl_points} points with lambda.z > 0 within "
            f"{_g(opt.adj_r_squared_factor)} of the best adjusted r.squared"),
    }
    catser = pl.Series("_cat", cat)
    frame = pl.DataFrame({**cols, "_cat": catser, "_nc": nc, "_kind": kd,
                          "_best_adj": pl.Series(_stack(results, "_best_adj"), nan_to_null=True)})
    txt = lambda c: pl.col(c).cast(pl.String)  # noqa: E731 - full precision: the reason is a trace
    reason = pl.when(pl.col("_cat") == 3).then(pl.format(
        "best fit: the last {} of {} positive samples " + word + " tmax; adj.r.squared {} within "
        + _g(opt.adj_r_squared_factor) + " of the best {}, most points",
        pl.col("lambda.z.n.points"), pl.col("_nc"), txt("adj.r.squared"), txt("_best_adj")))
    if (cat == 1).any():
        reason = reason.when(pl.col("_cat") == 1).then(pl.format(
            "manual: fit of the {} positive samples selected by {}", pl.col("lambda.z.n.points"),
            pl.when(pl.col("_kind") == 1).then(pl.lit("lambda_z_times")).otherwise(pl.lit("lambda_z_range"))))
    reason = reason.otherwise(pl.col("_cat").replace_strict(static, default=None, return_dtype=pl.String))
    rule = pl.col("_cat").replace_strict(rule_of, return_dtype=pl.String)
    rule = pl.when(rule == "manual").then(
        pl.when(pl.col("_kind") == 1).then(pl.lit("manual-times")).otherwise(pl.lit("manual-range"))
    ).otherwise(rule)

    # warnings: a bit per code, one list of messages per distinct combination
    wbits = _stack(results, "_wbits")
    wbits |= above[sub].astype(np.int64) << _BIT["above_uloq"]
    if offset is not None:
        wbits |= offset.is_null().to_numpy()[sub].astype(np.int64) << _BIT["no_dose_time"]
    linup = ("; over a steep (exponential) rise a linear-up AUC before tmax overestimates the area, consider "
             "method='log-up/log-down'" if opt.method != "log-up/log-down" else "")
    fill = {"mhp": opt.min_hl_points, "msr": _g(opt.min_span_ratio), "msb": opt.min_samples_before_tmax,
            "linup": linup, "mpe": _g(opt.max_aucpext)}
    messages = [f"{code}: {msg.format(**fill)}" for code, msg in _WARNINGS]
    combos = {int(v): [messages[i] for i in range(len(_WARNINGS)) if (int(v) >> i) & 1] for v in np.unique(wbits)}
    warnings = (pl.Series("warnings", wbits).replace_strict(combos, return_dtype=pl.List(pl.String)) if wbits.size
                else pl.Series("warnings", [], dtype=pl.List(pl.String)))  # no rows: still a list column

    out = frame.with_columns(
        subjects.gather(sub).alias(subject),
        pl.lit(opt.method).alias("method"),
        rule.alias("rule"),
        reason.alias("reason"),
        warnings,
    )
    names = [subject] + list(NCA_COLUMNS)
    if offset is not None:
        out = out.with_columns(offset.gather(sub).alias("time_offset"))
        names.append("time_offset")
    if threshold is not None:
        out = out.with_columns(pl.lit(float(threshold)).alias("conc_above"),
                               pl.Series("time_above", _stack(results, "time_above"), nan_to_null=True))
        names += ["conc_above", "time_above"]
    return out.select(names)


# ---------------------------------------------------------------------------------------------
# public functions


def derive_nca(frame: pl.DataFrame, *, subject: str = "subject_id", time: str = "time", conc: str = "conc",
        lloq: str | None = None, value_text: str | None = None,
        intervals: Sequence[Any] = ((0.0, math.inf),), options: NcaOptions | None = None,
        doses: pl.DataFrame | None = None, dose_time: str | None = None,
        threshold: float | None = None) -> pl.DataFrame:
    """NCA of every subject's profile over every interval; one row per subject and interval.

    ``frame`` is a long table: one row per sample with ``subject``, ``time`` and ``conc`` columns
    (``conc`` may be missing on a censored row), optionally ``lloq`` (BLQ when conc < lloq) and
    ``value_text`` (BLQ when a lower-censored result such as ``<50``). Rows need not be sorted; a
    subject may not have two samples at one time (PKNCA: times must be unique; a ValueError names
    the subject and the time — :func:`cartlab.kinetics.car.derive_car_kinetics` makes such a
    subject not evaluable instead, so one subject never sinks a study). ``intervals`` are
    ``(start, end)`` pairs or ``"START,END"`` strings (``end`` may be ``inf``). With ``doses`` (columns ``subject`` and
    ``dose_time``, default the ``time`` name), time is counted from each subject's first or last
    dose (``options.time_from``) and ``time_offset`` gives the dose time used. With
    ``threshold``, ``conc_above`` and ``time_above`` (time at or above it) are added.

    Each interval is computed from the samples inside it, with times from its start, as PKNCA's
    ``pk.nca`` does (``auclast`` stops at the interval's last quantifiable sample; ``aucint`` and
    ``aucint.last`` interpolate at the edges). Output: the subject column (first-appearance
    order), then :data:`NCA_COLUMNS` — ``start``, ``end``, ``method``, ``n_samples`` (samples used
    for the AUCs, after BLQ cleaning), ``n_blq`` (samples of the interval observed BLQ — below
    ``lloq``, a lower-censored ``value_text`` or a concentration of 0 — counted as observed, before
    BLQ cleaning: those kept or imputed as 0 and those dropped alike; PKNCA has no such column, its
    ``count_conc`` counts the non-missing concentrations and ``count_conc_measured`` those not
    below or above the limit of quantification), ``cmax``, ``tmax``, ``tlast``,
    ``clast.obs``, ``auclast``, ``aucall``, ``aucinf.obs``, ``aucpext.obs``, ``aucint``, ``aucint.last``,
    ``aucint.all``,
    ``lambda.z``, ``half.life``, ``r.squared``, ``adj.r.squared``, ``lambda.z.n.points``,
    ``lambda.z.time.first``, ``lambda.z.time.last``, ``span.ratio``, ``clast.pred``,
    ``persistence`` (= start + tlast), ``rule``/``reason`` (how lambda.z was chosen), ``lambda.z.times``
    (the times fitted) and ``warnings``. The rules are in the module docstring.
    """
    opt = options or NcaOptions()
    ivs = [parse_interval(iv) for iv in intervals]
    if not ivs:
        raise ValueError("at least one interval is needed")
    if threshold is not None and not (isinstance(threshold, (int, float)) and math.isfinite(threshold)):
        raise ValueError("threshold must be a finite number")
    subjects, T, C, B, n, INC, EXC, kind, fixed, offset, above = _prepare(
        frame, subject, time, conc, lloq, value_text, doses, dose_time, opt)
    results = _engine_chunked(T, C, B, n, INC, EXC, kind > 0, fixed, ivs, opt, threshold)
    return _assemble(subject, subjects, results, opt, kind, np.isfinite(fixed), above, offset, threshold)


def nca_profile(time: Sequence[float], conc: Sequence[float | None], *,
                lloq: Sequence[float | None] | float | None = None,
                intervals: Sequence[Any] = ((0.0, math.inf),), options: NcaOptions | None = None,
                threshold: float | None = None) -> pl.DataFrame:
    """:func:`nca` of one profile given as sequences (``None``/NaN conc = missing); one row per
    interval, without a subject column. Raises like PKNCA on unequal lengths or times that do
    not increase."""
    t = list(time)
    c = list(conc)
    if len(t) != len(c):
        raise ValueError("Conc and time must be the same length")
    if any(b <= a for a, b in zip(t, t[1:], strict=False)):
        raise ValueError("Time must be monotonically increasing")
    missing = [x is None or (isinstance(x, float) and math.isnan(x)) for x in c]
    data: dict[str, Any] = {"s": [0] * len(t), "t": [float(x) for x in t],
                            "c": [None if na else float(x) for x, na in zip(c, missing, strict=True)]}
    kw: dict[str, Any] = {}
    if lloq is not None:
        lv = list(lloq) if isinstance(lloq, Sequence) else [lloq] * len(t)
        if len(lv) != len(t):
            raise ValueError("lloq and time must be the same length")
        data["l"] = [None if v is None else float(v) for v in lv]
        kw["lloq"] = "l"
    frame = pl.DataFrame(data, schema_overrides={"c": pl.Float64, "t": pl.Float64})
    out = derive_nca(frame, subject="s", time="t", conc="c", intervals=intervals, options=options,
              threshold=threshold, **kw)
    return out.drop("s")


def time_above(frame: pl.DataFrame, threshold: float, **kwargs: Any) -> pl.DataFrame:
    """Time at or above ``threshold`` per subject and interval (PKNCA ``time_above``): the
    subject column, ``start``, ``end``, ``conc_above``, ``time_above``; ``kwargs`` as :func:`nca`."""
    out = derive_nca(frame, threshold=threshold, **kwargs)
    return out.select(out.columns[0], "start", "end", "conc_above", "time_above")


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
__getattr__ = renamed(__name__, "nca")
