"""Non-compartmental analysis (NCA) of concentration-time profiles, vectorised across subjects.

cartlab ports the documented *rules* and the published test *values* of PKNCA (Denney W, Duvvuri
S, Buckeridge C. "Simple, Automatic Noncompartmental Analysis: The PKNCA R Package." J
Pharmacokinet Pharmacodyn 2015;42(1):11-107,S65; R package, AGPL-3). No PKNCA code is used: the
rules below are re-stated from PKNCA's vignettes, function documentation and (for what an interval
means) its R source at tag v0.12.1, each cited where it applies, and conformance is
checked against PKNCA 0.12.1's results on R's Theoph data (``tests/fixtures/nca/``, to 1e-9
relative) and against the expectations of PKNCA's ``tests/testthat/test-auc.R``,
``test-half.life.R`` and ``test-time.above.R`` (see ``../shared/research/kinetics.md`` §2.1).

Public API
----------
* :class:`NcaOptions` — every choice, defaulting to PKNCA's (see :data:`OPTION_DOCS`).
* :func:`nca` — one row per subject and interval (PKNCA column names).
* :func:`nca_profile` — the same for one profile given as two sequences.
* :func:`time_above` — time at or above a concentration per subject and interval.
* :func:`nca_command` — the CSV contract of ``../shared/conformance/README.md`` (``cartlab nca``).
* :func:`copies_per_cell` — transgene copies/ug gDNA to copies per nucleated cell.

Engine: the long table is grouped by subject once (polars), padded to a ``subjects x samples``
array sorted by time, and every rule is applied to whole arrays (numpy): per interval the
samples inside it are moved to the front of each row (raw and BLQ-cleaned), then masked segment
sums give the AUCs, and all lambda.z candidate sets at
once from running sums. The only Python loops are over the requested intervals and over blocks
of :data:`CHUNK` subjects (to bound memory); there is no per-subject Python.
``benchmarks/bench_nca.py`` checks it against a per-subject loop
(``benchmarks/baselines.py:rowwise_nca``) on 100,000 CAR-T-like profiles, number for number;
``tests/test_kinetics_issue13.py`` against a per-profile port of PKNCA's interval calculation.

Rules (PKNCA's unless marked *cartlab*)
---------------------------------------
Data. A row is BLQ when ``conc < lloq`` (lloq column), when its ``value_text`` is a lower-censored
result (``<50``, ``<=50``, ``≤50``; conc may then be missing), or when ``conc == 0`` (PKNCA: "Values
are considered BLQ if they are 0"). BLQ rows are set to 0; missing concentrations (not censored)
are dropped (PKNCA ``conc.na = "drop"``). BLQ cleaning (PKNCA ``clean.conc.blq``) classifies the
zeros by position: *first* = at or before the first quantifiable sample (every sample when none is
quantifiable), *middle* = between the first and the last quantifiable sample, *last* = after the
last; each is ``"keep"`` (as 0), ``"drop"`` or a number (imputed, then treated as measured).
PKNCA's defaults are keep / drop / keep. An upper-censored result (``>1e6``) without a value is
used as that number, with a warning (*cartlab*).

An interval ``[start, end]`` (``end`` may be ``inf``) is computed as PKNCA 0.12.1's ``pk.nca``
computes it (source read at tag v0.12.1: ``R/pk.calc.all.R`` ``pk.nca.intervals`` /
``pk.nca.interval``): only the samples with ``start <= time <= end`` are used
(``filter_interval``), and times are counted from ``start`` ("Realign the time to be relative to
the start of the interval"; NEWS "Fix #8"). So ``tmax``, ``tlast``, ``lambda.z.time.first``,
``lambda.z.time.last`` and ``lambda.z.times`` are times since ``start`` (equal to the profile's
times for an interval starting at 0); ``persistence`` is ``start + tlast``, the last
quantifiable time on the profile's own axis (*cartlab*).

* ``cmax``, ``tmax`` (first time of cmax; the last with ``first_tmax=False``; null when every
  value is 0), ``tlast``/``clast.obs`` (last quantifiable sample; ``clast.obs`` is 0 when every
  value is 0) and ``time_above`` come from the interval's samples *before* BLQ cleaning (PKNCA
  ``pk.calc.cmax``, ``pk.calc.tmax``, ``pk.calc.tlast``, ``pk.calc.clast.obs`` in
  ``R/pk.calc.simple.R``, ``pk.calc.time_above`` in ``R/time.above.R``).
* ``auclast``, ``aucall``, ``aucinf.obs`` (PKNCA ``pk.calc.auc.last`` / ``.all`` / ``.inf.obs``
  in ``R/auc.R``, called on the interval's samples with the default interval ``c(0, Inf)``): BLQ
  cleaning of the interval's samples (positions within the interval), then null for fewer than
  two samples (``one_sample``; PKNCA #176), 0 when every value is 0, null when no sample is at
  ``start`` (``auc_before_first``), else the AUC from ``start`` to the interval's tlast — no
  interpolation or extrapolation at ``end``. AUCall adds the linear triangle from tlast to the next
  sample in the interval (a BLQ kept as 0; ``choose_interval_method``). ``aucinf.obs`` = AUClast
  + ``clast.obs / lambda.z`` (``aucinf_finite_interval`` warns for a finite interval). For
  ``"lin-log"`` the tmax that splits linear from log is the curve's own (PKNCA recomputes it).
  ``n_samples`` counts these cleaned samples.
* ``aucint`` / ``aucint.last`` (PKNCA ``aucint.inf.obs`` / ``aucint.last``, ``R/aucint.R``, which
  receive ``conc.group``/``time.group``: the whole profile) are the AUCs over exactly
  ``[start, end]``, interpolated or extrapolated at the edges; see below. Use them for an AUC to a
  day without a sample (``car_auc_0_28`` is one).

Interpolation between two samples (PKNCA vignette "AUC integration methods"): both 0 gives 0;
``"lin-up/log-down"`` (default) uses the log trapezoid ``(t2-t1)(c2-c1)/ln(c2/c1)`` when the
concentration decreases to a positive value, else linear; ``"linear"`` is always linear;
``"lin-log"`` is linear up to ``tmax`` and log after it unless a concentration is 0 (equal
positive concentrations after tmax integrate linearly here — the log formula's limit — where
PKNCA's formula gives 0/0); ``"log-up/log-down"`` (*cartlab extension*, PKNCA has none) uses the
log trapezoid whenever both concentrations are positive and differ, else linear — meant for the
exponential expansion phase of CAR-T cells, which linear-up integration over-estimates
(kinetics.md §0 item 6). Concentrations between samples are interpolated with the same choice.

``aucint`` (PKNCA ``aucint.inf.obs``): the AUC over exactly ``[start, end]`` of the curve that
interpolates the whole profile's cleaned samples (method above; BLQ positions over the whole
profile) up to its ``tlast`` and follows ``clast*exp(-lambda.z*(t - tlast))`` after it, with the
interval's ``lambda.z``; before the first sample the concentration is 0 (PKNCA ``conc.origin = 0``,
at both edges of an interval that starts before the data).
The tail is integrated exactly, ``clast/lambda.z*(exp(-lambda.z*(a-tlast)) -
exp(-lambda.z*(b-tlast)))``, which equals PKNCA's log trapezoid to the extrapolated point. When
the interval reaches past ``tlast`` and ``lambda.z`` is null, ``aucint`` is null (warning
``aucint_no_lambda_z``) — it is never silently truncated. ``aucint.last`` (PKNCA ``aucint.last``)
is the same with 0 after ``tlast``. cartlab ignores BLQ samples between ``tlast`` and ``end`` for
``aucint`` (the curve after tlast is the lambda.z tail); PKNCA mixes such observed zeros with
extrapolated points.

``lambda.z`` (PKNCA vignette "Half-Life Calculation", curve stripping; ``pk.calc.half.life`` in
``R/half.life.R`` on the interval's samples): candidates are the cleaned positive samples of the
interval after ``tmax`` (at or after with ``allow_tmax_in_half_life``), minus any listed
in ``lambda_z_exclude``; every set of the last ``k`` candidates, ``k >= min_hl_points``, is fitted
by least squares ``ln(conc) ~ time``; r² = 1 - SSres/SStot, adjusted r² = 1 - (1 - r²)(k-1)/(k-2).
The chosen set has ``lambda.z = -slope > 0`` (*cartlab*: ``lambda.z * span > 1e-10``, so that a
slope within rounding of 0 never counts) and adjusted r² > (the maximum adjusted r² over all
fitted sets, including those with lambda.z <= 0) - ``adj_r_squared_factor``; among those, the
most points. No such set: null (``no_positive_lambda_z``). With ``min_hl_points = 2`` and exactly
two candidates that pair is used (PKNCA, with a warning). ``half.life = ln 2 / lambda.z``,
``span.ratio = (lambda.z.time.last - lambda.z.time.first) / half.life`` (warning when below
``min_span_ratio``, PKNCA's exclusion criterion), ``clast.pred`` = the fitted line at ``tlast``.
Manual selection (``lambda_z_times`` or ``lambda_z_range``, PKNCA ``include_half.life``) fits the
positive samples given, without tmax or minimum-point rules; a fit with lambda.z <= 0 is not
reported (cartlab: null with a warning; PKNCA reports the negative value, issue #373).
``lambda_z_fixed`` gives lambda.z directly (e.g. a population model's terminal rate). Every row
says which points were used: ``rule``, ``reason`` and ``lambda.z.times``.

``time_above`` (PKNCA ``pk.calc.time_above``): time with conc >= ``threshold`` between the first
and last sample of the interval (raw: a BLQ between two samples counts as 0), crossing times
interpolated linearly; for the methods with log
segments a crossing on a log segment is interpolated on the log scale (*cartlab*).

Warnings (``warnings``, one ``code: message`` string each): ``no_samples``, ``all_blq``,
``auc_before_first``, ``start_after_last_sample``, ``aucinf_finite_interval``,
``too_few_points_half_life``, ``no_positive_lambda_z``, ``two_point_half_life``,
``manual_lambda_z_invalid``, ``one_sample``, ``span_ratio_below_min``, ``aucint_no_lambda_z``,
``aucint_before_first``, ``sparse_early_sampling`` (fewer than ``min_samples_before_tmax`` samples
of the interval before tmax: for exponential CAR-T expansion linear-up AUC can be ~2x too high and Cmax is likely
missed — kinetics.md §0 item 6 and §1.1), ``no_dose_time``, ``above_uloq``.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

__all__ = [
    "GENOMES_PER_UG_GDNA",
    "METHODS",
    "NCA_COLUMNS",
    "OPTION_DOCS",
    "NcaOptions",
    "copies_per_cell",
    "nca",
    "nca_command",
    "nca_profile",
    "normalise_method",
    "parse_interval",
    "read_conc_table",
    "time_above",
]

#: AUC interpolation methods ("log-up/log-down" is a cartlab extension; PKNCA has the other three)
METHODS = ("lin-up/log-down", "linear", "lin-log", "log-up/log-down")

_METHOD_ALIASES = {
    "lin up/log down": "lin-up/log-down",
    "linear up/log down": "lin-up/log-down",
    "linear-up/log-down": "lin-up/log-down",
    "linuplogdown": "lin-up/log-down",
    "lin-log": "lin-log",
    "linlog": "lin-log",
    "log up/log down": "log-up/log-down",
    "log-log": "log-up/log-down",
    "logup/logdown": "log-up/log-down",
}

#: 1 ug of human genomic DNA holds ~151,500 diploid genomes (6.6 pg per diploid genome:
#: 1e6 pg / 6.6 pg = 151,515), ../shared/research/kinetics.md §1.1 "Unit sanity check"
GENOMES_PER_UG_GDNA = 151_500

_CENSORED = re.compile(r"^\s*(<=|>=|<|>|≤|≥)\s*([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$")
_NA_TEXT = ("", "NA", "NaN", "nan", ".", "NULL", "null")


def normalise_method(method: str) -> str:
    """The canonical name of an AUC method (accepts PKNCA's spellings, e.g. ``lin up/log down``)."""
    m = str(method).strip().lower()
    m = _METHOD_ALIASES.get(m, m)
    if m not in METHODS:
        raise ValueError(f"unknown AUC method {method!r}; one of {', '.join(METHODS)}")
    return m


def _blq_rule(name: str, v: Any) -> str | float:
    if isinstance(v, str):
        if v in ("keep", "drop"):
            return v
        raise ValueError(f"{name} must be 'keep', 'drop' or a number, not {v!r}")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be 'keep', 'drop' or a finite number >= 0, not {v!r}")
    return float(v)


# ---------------------------------------------------------------------------------------------
# options


@dataclass(frozen=True)
class NcaOptions:
    """How to compute NCA. Every default is PKNCA's (0.12), see :data:`OPTION_DOCS`.

    The per-subject options (``lambda_z_*``) map a subject id to its setting; a subject has at
    most one of its own (times, range, fixed or exclude). In ``lambda_z_range`` or
    ``lambda_z_fixed`` (not both) the key ``None`` is the default for every subject without an
    entry of its own. Manual and excluded times are matched exactly against the (dose-relative)
    sample times; unknown subjects are an error.
    """

    #: AUC interpolation: "lin-up/log-down" (PKNCA's default), "linear", "lin-log",
    #: "log-up/log-down" (cartlab's extension: log trapezoid whenever both concentrations are
    #: positive and differ, else linear; PKNCA has no log-up method)
    method: str = "lin-up/log-down"
    #: BLQ before the first quantifiable sample: "keep" (as 0), "drop" or a number (PKNCA: keep)
    blq_first: str | float = "keep"
    #: BLQ between quantifiable samples (PKNCA: drop)
    blq_middle: str | float = "drop"
    #: BLQ after the last quantifiable sample (PKNCA: keep)
    blq_last: str | float = "keep"
    #: minimum number of points of a lambda.z fit (PKNCA min.hl.points = 3; >= 2)
    min_hl_points: int = 3
    #: may the tmax sample be part of the lambda.z fit (PKNCA allow.tmax.in.half.life = FALSE)
    allow_tmax_in_half_life: bool = False
    #: a set within this of the best adjusted r² qualifies; the largest such set wins (PKNCA 1e-4)
    adj_r_squared_factor: float = 1e-4
    #: warn when span.ratio is below this (PKNCA min.span.ratio = 2)
    min_span_ratio: float = 2.0
    #: tmax = the first time of cmax (True, PKNCA first.tmax) or the last
    first_tmax: bool = True
    #: manual lambda.z points: subject -> the sample times to fit (PKNCA include_half.life)
    lambda_z_times: Mapping[Any, Sequence[float]] = field(default_factory=dict)
    #: manual lambda.z points: subject -> (first, last) time, inclusive; key None = everyone else
    lambda_z_range: Mapping[Any, tuple[float, float]] = field(default_factory=dict)
    #: sample times excluded from the best fit: subject -> times (PKNCA exclude_half.life)
    lambda_z_exclude: Mapping[Any, Sequence[float]] = field(default_factory=dict)
    #: lambda.z given, not fitted: subject -> value (> 0); key None = everyone else
    lambda_z_fixed: Mapping[Any, float] = field(default_factory=dict)
    #: with a dose-times frame: time is counted from the "first" or the "last" infusion
    time_from: str = "first"
    #: warn (sparse_early_sampling) when fewer samples than this precede tmax (cartlab)
    min_samples_before_tmax: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", normalise_method(self.method))
        for name in ("blq_first", "blq_middle", "blq_last"):
            object.__setattr__(self, name, _blq_rule(name, getattr(self, name)))
        if isinstance(self.min_hl_points, bool) or not isinstance(self.min_hl_points, int) or self.min_hl_points < 2:
            raise ValueError("min_hl_points must be an integer >= 2")
        if not (isinstance(self.adj_r_squared_factor, (int, float)) and 0 < self.adj_r_squared_factor < 1):
            raise ValueError("adj_r_squared_factor must be a number between 0 and 1, exclusive (PKNCA)")
        if not (isinstance(self.min_span_ratio, (int, float)) and self.min_span_ratio >= 0):
            raise ValueError("min_span_ratio must be a number >= 0")
        if self.time_from not in ("first", "last"):
            raise ValueError(f"time_from must be 'first' or 'last', not {self.time_from!r}")
        if not isinstance(self.min_samples_before_tmax, int) or self.min_samples_before_tmax < 0:
            raise ValueError("min_samples_before_tmax must be an integer >= 0")
        for k, (lo, hi) in self.lambda_z_range.items():
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ValueError(f"lambda_z_range[{k!r}] must be (first, last) with first <= last")
        for k, v in self.lambda_z_fixed.items():
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"lambda_z_fixed[{k!r}] must be a number > 0")
        for name in ("lambda_z_times", "lambda_z_exclude"):
            if None in getattr(self, name):
                raise ValueError(f"{name} needs subject keys (None is only allowed in lambda_z_range/fixed)")
        if None in self.lambda_z_range and None in self.lambda_z_fixed:
            raise ValueError("give a default (key None) in lambda_z_range or in lambda_z_fixed, not both")
        manual = set(self.lambda_z_times) | {k for k in self.lambda_z_range if k is not None}
        both = manual & ({k for k in self.lambda_z_fixed if k is not None} | set(self.lambda_z_exclude))
        if set(self.lambda_z_times) & set(self.lambda_z_range):
            both |= set(self.lambda_z_times) & set(self.lambda_z_range)
        if both:
            raise ValueError(f"subject(s) {sorted(map(str, both))} have more than one lambda.z override")


#: one line per option
OPTION_DOCS: dict[str, str] = {
    "method": "AUC interpolation: lin-up/log-down (PKNCA default), linear, lin-log, log-up/log-down (cartlab)",
    "blq_first": "BLQ before the first quantifiable value: keep as 0 (PKNCA), drop, or a number",
    "blq_middle": "BLQ between quantifiable values: drop (PKNCA), keep as 0, or a number",
    "blq_last": "BLQ after the last quantifiable value: keep as 0 (PKNCA), drop, or a number",
    "min_hl_points": "minimum points of a lambda.z fit (PKNCA 3)",
    "allow_tmax_in_half_life": "the tmax sample may be in the lambda.z fit (PKNCA False)",
    "adj_r_squared_factor": "sets within this of the best adjusted r2 qualify; most points wins (PKNCA 1e-4)",
    "min_span_ratio": "warn when span.ratio < this (PKNCA 2)",
    "first_tmax": "tmax is the first time of cmax (PKNCA True)",
    "lambda_z_times": "subject -> sample times for a manual lambda.z fit",
    "lambda_z_range": "subject -> (first, last) time range for a manual lambda.z fit (None: everyone)",
    "lambda_z_exclude": "subject -> times excluded from the best-fit search",
    "lambda_z_fixed": "subject -> lambda.z given instead of fitted (None: everyone)",
    "time_from": "with doses: time from the first (default) or last infusion",
    "min_samples_before_tmax": "warn sparse_early_sampling below this many samples before tmax (3)",
}

#: output columns of :func:`nca` after the subject column (``time_offset``, ``conc_above`` and
#: ``time_above`` are added when doses / a threshold are given)
NCA_COLUMNS = (
    "start", "end", "method", "n_samples", "n_blq", "cmax", "tmax", "tlast", "clast.obs",
    "auclast", "aucall", "aucinf.obs", "aucint", "aucint.last", "lambda.z", "half.life",
    "r.squared", "adj.r.squared", "lambda.z.n.points", "lambda.z.time.first",
    "lambda.z.time.last", "span.ratio", "clast.pred", "persistence", "rule", "reason",
    "lambda.z.times", "warnings",
)


# ---------------------------------------------------------------------------------------------
# small helpers


def copies_per_cell(copies_per_ug: Any, genomes_per_ug: float = GENOMES_PER_UG_GDNA) -> Any:
    """Transgene copies per nucleated (diploid) cell from copies per ug of genomic DNA.

    ``copies_per_ug / genomes_per_ug``; 1 ug of human gDNA holds ~151,500 diploid genomes
    (6.6 pg per genome), ../shared/research/kinetics.md §1.1: 183,945 copies/ug = 1.21 copies per
    cell. Works on numbers, numpy arrays, polars Series and expressions. Divide further by the
    vector copy number (VCN) for the CAR+ fraction of cells.
    """
    if not (isinstance(genomes_per_ug, (int, float)) and genomes_per_ug > 0):
        raise ValueError("genomes_per_ug must be a number > 0")
    if isinstance(copies_per_ug, (int, float)) and not isinstance(copies_per_ug, bool):
        if copies_per_ug < 0:
            raise ValueError("copies_per_ug must be >= 0")
        return copies_per_ug / genomes_per_ug
    return copies_per_ug / genomes_per_ug


def parse_interval(value: Any) -> tuple[float, float]:
    """``(start, end)`` from a pair or a ``"START,END"`` string (``inf``/``Inf`` allowed for END)."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        if len(parts) != 2:
            raise ValueError(f"interval {value!r} must be START,END")
        try:
            pair = (float(parts[0]), float(parts[1]))
        except ValueError:
            raise ValueError(f"interval {value!r}: START and END must be numbers (END may be inf)") from None
    else:
        try:
            a, b = value
            pair = (float(a), float(b))
        except (TypeError, ValueError):
            raise ValueError(f"interval {value!r} must be a (start, end) pair") from None
    a, b = pair
    if not math.isfinite(a) or math.isnan(b):
        raise ValueError(f"interval {value!r}: start must be finite")
    if not a < b:
        raise ValueError(f"interval {value!r}: the AUC interval must be increasing (start < end)")
    return a, b


def _first_true(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first True per row and whether there is one."""
    return np.argmax(mask, axis=1), mask.any(axis=1)


def _last_true(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = mask.shape[1]
    return m - 1 - np.argmax(mask[:, ::-1], axis=1), mask.any(axis=1)


def _compact(mask: np.ndarray, arrays: Sequence[tuple[np.ndarray, Any]], width: int | None = None):
    """Move the True cells of each row to its front (order kept); returns counts and arrays."""
    s = mask.shape[0]
    cnt = mask.sum(axis=1)
    k = max(int(cnt.max()) if s else 0, 1) if width is None else width
    rank = np.cumsum(mask, axis=1) - 1
    r, c = np.nonzero(mask)
    dest = rank[r, c]
    out = []
    for a, fill in arrays:
        o = np.full((s, k), fill, dtype=a.dtype)
        o[r, dest] = a[r, c]
        out.append(o)
    return cnt, out


def _use_log(method: str, t1, c1, t2, c2, tmax) -> np.ndarray:
    """Is the segment (t1, c1) -> (t2, c2) integrated / interpolated on the log scale?"""
    if method == "linear":
        return np.zeros(np.shape(c1), dtype=bool)
    if method == "lin-up/log-down":
        return (c2 < c1) & (c2 > 0)
    pos = (c1 > 0) & (c2 > 0) & (c1 != c2)
    if method == "lin-log":
        return pos & (t2 > tmax)
    return pos  # log-up/log-down


def _seg_area(method: str, t1, c1, t2, c2, tmax) -> np.ndarray:
    dt = t2 - t1
    lin = dt * (c1 + c2) / 2.0
    if method == "linear":
        return lin
    uselog = _use_log(method, t1, c1, t2, c2, tmax)
    with np.errstate(divide="ignore", invalid="ignore"):
        lg = dt * (c2 - c1) / np.log(c2 / c1)
    return np.where(uselog, lg, lin)


def _interp(method: str, t1, c1, t2, c2, x, tmax) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        f = (x - t1) / (t2 - t1)
        lin = c1 + f * (c2 - c1)
        if method == "linear":
            return lin
        lg = np.exp(np.log(c1) + f * (np.log(c2) - np.log(c1)))
    return np.where(_use_log(method, t1, c1, t2, c2, tmax), lg, lin)


def _gather(a: np.ndarray, idx: np.ndarray, ok: np.ndarray, fill=np.nan) -> np.ndarray:
    rows = np.arange(a.shape[0])
    return np.where(ok, a[rows, np.clip(idx, 0, a.shape[1] - 1)], fill)


def _tmax_idx(c: np.ndarray, valid: np.ndarray, first: bool):
    """cmax, the index of tmax, and whether tmax exists (some value > 0)."""
    cm = np.where(valid, c, -np.inf).max(axis=1) if c.shape[1] else np.full(c.shape[0], -np.inf)
    at = valid & (c == cm[:, None])
    idx = _first_true(at)[0] if first else _last_true(at)[0]
    return cm, idx, cm > 0


# ---------------------------------------------------------------------------------------------
# the engine on padded arrays: one row per subject, its samples in time order, NaN padded


def _clean(T, C, B, n, opt: NcaOptions):
    """PKNCA ``clean.conc.blq`` + ``conc.na = "drop"``: which samples are kept, and their values."""
    s, m = T.shape
    idx = np.arange(m)[None, :]
    present = idx < n[:, None]
    w = np.where(B, 0.0, C)
    keep = present & ~np.isnan(w)
    pos = keep & (w > 0)
    ifirst, any_pos = _first_true(pos)
    ilast, _ = _last_true(pos)
    zero = keep & (w == 0)
    first = zero & np.where(any_pos[:, None], idx <= ifirst[:, None], True)
    last = zero & any_pos[:, None] & (idx > ilast[:, None])
    middle = zero & ~first & ~last
    for cat, rule in ((first, opt.blq_first), (middle, opt.blq_middle), (last, opt.blq_last)):
        if rule == "drop":
            keep = keep & ~cat
        elif rule != "keep":
            w = np.where(cat, float(rule), w)
    return keep, w


def _locate(T, W, n, x, j):
    """The samples around time x[row]; ``j`` = the number of samples at or before x."""
    s, m = T.shape
    rows = np.arange(s)
    jp = np.clip(j - 1, 0, m - 1)
    jn = np.clip(j, 0, m - 1)
    before = j == 0
    t1 = T[rows, jp]
    return {"t1": t1, "c1": W[rows, jp], "t2": T[rows, jn], "c2": W[rows, jn], "before": before,
            "exact": ~before & (t1 == x), "has_next": j < n}


def _edge(loc, x, tl_t, tmax_w, method: str) -> np.ndarray:
    """The whole profile's concentration at x (for ``aucint``): the sample there, else interpolated
    (method) up to tlast, else 0. NaN before the first sample."""
    t1, c1, t2, c2 = loc["t1"], loc["c1"], loc["t2"], loc["c2"]
    interp = _interp(method, t1, c1, t2, c2, x, tmax_w)
    out = np.where(loc["exact"], c1, np.where(x <= tl_t, interp, 0.0))
    return np.where(loc["before"], np.nan, out)


def _curve_auc(method, T, W, SA, lpi_all, a, ca, b, cb, fin, L, R, *, cut, triangle, first_tmax):
    """AUC along the curve (a, ca) -> the samples L..R-1 -> (b, cb) when ``fin`` (PKNCA
    ``pk.calc.auc`` on an interval): up to its last positive point (``cut``) or over every
    segment, plus (``triangle``) AUCall's linear triangle from that point to the next one.
    ``SA`` holds the areas of the segments between samples (None for lin-log, whose areas
    depend on the curve's tmax); ``lpi_all`` the running index of the last positive sample."""
    s, m = T.shape
    rows = np.arange(s)
    has_inner = R > L
    lc, rc = np.clip(L, 0, m - 1), np.clip(R - 1, 0, m - 1)
    tl_, cl_ = T[rows, lc], W[rows, lc]
    tr_, cr_ = T[rows, rc], W[rows, rc]
    cb = np.where(fin, cb, np.nan)
    tmax = None
    if method == "lin-log":
        sidx = np.arange(m)[None, :]
        inner = (sidx >= L[:, None]) & (sidx < R[:, None])
        imax = np.where(inner, W, -np.inf).max(axis=1)
        cend = np.where(fin, cb, -np.inf)
        cmax = np.fmax(np.fmax(ca, imax), cend)
        at = inner & (W == cmax[:, None])
        if first_tmax:
            ti = T[rows, _first_true(at)[0]]
            tmax = np.where(ca == cmax, a, np.where(imax == cmax, ti, b))
        else:
            ti = T[rows, _last_true(at)[0]]
            tmax = np.where(fin & (cend == cmax), b, np.where(imax == cmax, ti, a))
        tmax = np.where(cmax > 0, tmax, np.nan)
        SA = _seg_area(method, T[:, :-1], W[:, :-1], T[:, 1:], W[:, 1:], tmax[:, None])
    first_seg = np.where(has_inner, _seg_area(method, a, ca, tl_, cl_, tmax),
                         np.where(fin, _seg_area(method, a, ca, b, cb, tmax), 0.0))
    last_seg = np.where(has_inner & fin, _seg_area(method, tr_, cr_, b, cb, tmax), 0.0)
    lpi = np.where(R >= 1, lpi_all[rows, rc], -1)
    lpi_ok = has_inner & (lpi >= L)
    end_pos = fin & (cb > 0)
    if cut:
        up = np.where(end_pos, R - 1, np.where(lpi_ok, lpi, L))
        inc_first = end_pos | lpi_ok
        inc_last = end_pos
    else:
        up = R - 1
        inc_first = np.ones(s, dtype=bool)
        inc_last = fin & has_inner
    seg = np.arange(m - 1)[None, :]
    segs = np.where((seg >= L[:, None]) & (seg < up[:, None]), SA, 0.0).sum(axis=1) if m > 1 else 0.0
    auc = np.where(inc_first, first_seg, 0.0) + segs + np.where(inc_last, last_seg, 0.0)
    if triangle:
        p = np.clip(lpi, 0, m - 1)
        t_next_p = np.where(p + 1 <= R - 1, T[rows, np.clip(p + 1, 0, m - 1)], np.where(fin, b, np.nan))
        tri_p = (t_next_p - T[rows, p]) * W[rows, p] / 2.0
        t_next_a = np.where(has_inner, tl_, np.where(fin, b, np.nan))
        tri_a = (t_next_a - a) * ca / 2.0
        tri = np.where(end_pos, 0.0, np.where(lpi_ok, tri_p, np.where(ca > 0, tri_a, 0.0)))
        auc = auc + np.where(np.isnan(tri), 0.0, tri)
    return auc


#: a fitted lambda.z counts as > 0 when lambda.z * (fit span) exceeds this: a slope within
#: rounding of 0 (e.g. symmetric log concentrations) is not a terminal phase
LAMBDA_Z_NOISE = 1e-10


def _lambda_z(T, W, cand, tlast_t, manual, fixed, opt: NcaOptions):
    """lambda.z per row from the candidate samples ``cand`` (PKNCA curve stripping, or a manual
    fit of all of them, or the fixed value). Returns a dict of arrays."""
    s, m = T.shape
    cand = cand & ~np.isfinite(fixed)[:, None]
    nc = cand.sum(axis=1)
    kmax = max(int(nc.max()) if s else 0, 1)
    rank = np.cumsum(cand, axis=1) - 1
    r, c = np.nonzero(cand)
    rev = nc[r] - 1 - rank[r, c]  # 0 = the last candidate
    X = np.zeros((s, kmax))
    Y = np.zeros((s, kmax))
    X[r, rev] = T[r, c]
    Y[r, rev] = np.log(W[r, c])
    x0, y0 = X[:, 0].copy(), Y[:, 0].copy()
    k = np.arange(1, kmax + 1, dtype=float)[None, :]
    inrange = k <= nc[:, None]
    xs = np.where(inrange, X - x0[:, None], 0.0)  # shifted by the last point: better conditioned
    ys = np.where(inrange, Y - y0[:, None], 0.0)
    sx, sy = np.cumsum(xs, axis=1), np.cumsum(ys, axis=1)
    sxx, sxy, syy = np.cumsum(xs * xs, axis=1), np.cumsum(xs * ys, axis=1), np.cumsum(ys * ys, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cxx = sxx - sx * sx / k
        cxy = sxy - sx * sy / k
        cyy = syy - sy * sy / k
        slope = cxy / cxx
        r2 = 1.0 - (cyy - cxy * slope) / cyy
        adj = np.where(k > 2, 1.0 - (1.0 - r2) * (k - 1.0) / (k - 2.0), np.nan)
        icpt = (sy - slope * sx) / k
    # lambda.z > 0 means a decline beyond rounding: more than 1e-10 (log scale) over the fit span
    lam = -slope
    declines = lam * -xs > LAMBDA_Z_NOISE
    fitted = inrange & (k >= 2)
    auto_ok = fitted & (k >= opt.min_hl_points)
    best = np.where(auto_ok & ~np.isnan(adj), adj, -np.inf).max(axis=1)
    two = (opt.min_hl_points == 2) & (nc == 2)
    with np.errstate(invalid="ignore"):
        near = adj > (best[:, None] - opt.adj_r_squared_factor)
    sel_auto = auto_ok & declines & (two[:, None] | near)
    sel_man = fitted & (k == nc[:, None]) & declines
    sel = np.where(manual[:, None], sel_man, sel_auto)
    kbest, found = _last_true(sel)
    rows = np.arange(s)

    def g(a):
        return np.where(found, a[rows, kbest], np.nan)

    fx = np.isfinite(fixed)
    lam_b = np.where(fx, fixed, g(lam))
    tfirst = np.where(found, X[rows, kbest], np.nan)
    tlz = np.where(found, x0, np.nan)
    with np.errstate(over="ignore", invalid="ignore"):
        pred = np.where(found, np.exp(y0 + g(icpt) + g(slope) * (tlast_t - x0)), np.nan)
        hl = np.log(2.0) / lam_b
    times = np.where(found[:, None] & (np.arange(kmax)[None, :] <= kbest[:, None]), X, np.nan)[:, ::-1]
    return {
        "lambda.z": lam_b, "half.life": hl, "r.squared": g(r2), "adj.r.squared": g(adj),
        "lambda.z.n.points": np.where(found, kbest + 1, 0), "lambda.z.time.first": tfirst,
        "lambda.z.time.last": tlz, "span.ratio": (tlz - tfirst) / hl, "clast.pred": pred,
        "_nc": nc, "_found": found, "_two": two & found & ~manual,
        "_best_adj": np.where(np.isfinite(best), best, np.nan), "_times": times,
    }


def _time_above(method, T, W, seg_ok, tmax_t, thr):
    """Time at or above thr over the segments ``seg_ok`` (PKNCA pk.calc.time_above)."""
    s, m = T.shape
    if m < 2:
        return np.zeros(s)
    t1, c1, t2, c2 = T[:, :-1], W[:, :-1], T[:, 1:], W[:, 1:]
    a1, a2 = c1 >= thr, c2 >= thr
    dt = t2 - t1
    with np.errstate(divide="ignore", invalid="ignore"):
        f_first = (thr - c1) / (c2 - c1)
        f_second = (c2 - thr) / (c2 - c1)
        if method != "linear" and thr > 0:
            uselog = _use_log(method, t1, c1, t2, c2, tmax_t)
            lr = np.log(c2 / c1)
            f_first = np.where(uselog, np.log(thr / c1) / lr, f_first)
            f_second = np.where(uselog, np.log(c2 / thr) / lr, f_second)
    part = np.where(a1 & a2, dt, np.where(a1, f_first * dt, np.where(a2, f_second * dt, 0.0)))
    return np.where(seg_ok, part, 0.0).sum(axis=1)


#: warning codes in bit order, with their messages (numbers are in the row's columns)
_WARNINGS = (
    ("no_samples", "no sample in the interval"),
    ("all_blq", "no quantifiable sample in the interval"),
    ("one_sample", "a single measured concentration in the interval: no auclast/aucall/aucinf.obs (PKNCA)"),
    ("auc_before_first", "no sample at the start of the interval: auclast/aucall/aucinf.obs not computed "
                         "(PKNCA uses the interval's samples only; aucint.last interpolates)"),
    ("start_after_last_sample", "the interval starts after the last sample"),
    ("aucinf_finite_interval", "aucinf.obs extrapolates to infinity although the interval is finite"),
    ("too_few_points_half_life", "too few positive samples after tmax for lambda.z (min_hl_points {mhp})"),
    ("no_positive_lambda_z", "no candidate set with lambda.z > 0 within adj_r_squared_factor of the best "
                             "adjusted r.squared (PKNCA)"),
    ("two_point_half_life", "2 points used for the half-life (PKNCA)"),
    ("manual_lambda_z_invalid", "the manually selected samples give no lambda.z > 0 (needs >= 2 positive "
                                "samples)"),
    ("span_ratio_below_min", "span.ratio < {msr} (PKNCA min.span.ratio)"),
    ("aucint_no_lambda_z", "the interval reaches past tlast and lambda.z is not available: aucint is null "
                           "(aucint.last counts 0 after tlast)"),
    ("aucint_before_first", "aucint takes the concentration as 0 from the start to the first sample "
                            "(PKNCA conc.origin)"),
    ("sparse_early_sampling", "fewer than {msb} samples before tmax: with exponential CAR-T expansion "
                              "Cmax/Tmax are likely missed{linup} (kinetics.md §0 item 6, §1.1)"),
    ("above_uloq", "an upper-censored result ('>x') without a value was used as x"),
    ("no_dose_time", "no dose time for this subject: times used as given"),
)
_BIT = {code: i for i, (code, _) in enumerate(_WARNINGS)}


def _window(T, w0, ok, inc, exc, a, b, opt: NcaOptions):
    """The samples of ``[a, b]`` (PKNCA ``filter_interval``: ``start <= time <= end``), moved to the
    front of each row: raw (BLQ as 0, missing dropped) and after ``clean.conc.blq`` applied to
    the interval's own samples (PKNCA cleans the data each parameter function is given).
    ``inc``/``exc`` (manual / excluded lambda.z points) may be None when nobody has any."""
    m = T.shape[1]
    flags = [(x, False) for x in (inc, exc) if x is not None]
    inw = ok & (T >= a) & (T <= b)
    nr, (TR, WR, *FR) = _compact(inw, [(T, np.nan), (w0, np.nan), *flags], width=m)
    valid = np.arange(m)[None, :] < nr[:, None]
    keep, wc = _clean(TR, WR, np.zeros(TR.shape, dtype=bool), nr, opt)
    if np.array_equal(keep, valid):
        nc, TC, WC, FC = nr, TR, np.where(valid, wc, np.nan), FR
    else:
        nc, (TC, WC, *FC) = _compact(keep, [(TR, np.nan), (wc, np.nan), *((f, False) for f in FR)], width=m)
    it = iter(FC)
    IC = next(it) if inc is not None else np.zeros(TC.shape, dtype=bool)
    EC = next(it) if exc is not None else np.zeros(TC.shape, dtype=bool)
    return (nr, TR, WR), (nc, TC, WC, IC, EC)


def _engine(T, C, B, n, inc, exc, manual, fixed, intervals, opt: NcaOptions, threshold):
    """All rules on the padded arrays; one dict of per-subject arrays per interval."""
    s, m = T.shape
    method = opt.method
    idx = np.arange(m)[None, :]
    present = idx < n[:, None]
    w0 = np.where(B, 0.0, C)
    raw_ok = present & ~np.isnan(w0)
    # the whole profile, cleaned (aucint and aucint.last: PKNCA gives them conc.group/time.group)
    keep, w = _clean(T, C, B, n, opt)
    if np.array_equal(keep, present):
        n1, T1, W1 = n, T, np.where(present, w, np.nan)
    else:
        n1, (T1, W1) = _compact(keep, [(T, np.nan), (w, np.nan)], width=m)
    rows = np.arange(s)
    valid1 = idx < n1[:, None]
    pos1 = valid1 & (W1 > 0)
    lpi_all = np.maximum.accumulate(np.where(pos1, idx, -1), axis=1)
    tl_idx = lpi_all[:, -1]
    has_pos = tl_idx >= 0
    tl_t = np.where(has_pos, T1[rows, np.clip(tl_idx, 0, m - 1)], -np.inf)
    cl_w = np.where(has_pos, W1[rows, np.clip(tl_idx, 0, m - 1)], np.nan)
    t_end = _gather(T1, n1 - 1, n1 > 0)
    _, im_w, has_tmax_w = _tmax_idx(W1, valid1, opt.first_tmax)
    tmax_w = np.where(has_tmax_w, _gather(T1, im_w, has_tmax_w), np.nan)
    SA = None
    if method != "lin-log" and m > 1:
        SA = _seg_area(method, T1[:, :-1], W1[:, :-1], T1[:, 1:], W1[:, 1:], None)
    fixed_ok = np.isfinite(fixed)
    results = []
    for a, b in intervals:
        fin_b = math.isfinite(b)
        (nr, TR, WR), (nc, TC, WC, IC, EC) = _window(T, w0, raw_ok, inc if inc.any() else None,
                                                     exc if exc.any() else None, a, b, opt)

        # cmax, tmax, tlast, clast.obs from the raw samples of the interval (PKNCA pk.calc.cmax,
        # pk.calc.tmax, pk.calc.tlast, pk.calc.clast.obs: no BLQ cleaning; clast.obs 0 when all are 0)
        valid_r = idx < nr[:, None]
        cm, itmax, has_tmax = _tmax_idx(WR, valid_r, opt.first_tmax)
        has_w = nr > 0
        tmax = np.where(has_tmax, _gather(TR, itmax, has_tmax), np.nan)
        itl, has_tl = _last_true(valid_r & (WR > 0))
        tlast = np.where(has_tl, _gather(TR, itl, has_tl), np.nan)
        clast = np.where(has_tl, _gather(WR, itl, has_tl), np.where(has_w, 0.0, np.nan))

        # lambda.z (PKNCA pk.calc.half.life): the interval's cleaned positive samples after tmax
        valid_c = idx < nc[:, None]
        pos_c = valid_c & (WC > 0)
        with np.errstate(invalid="ignore"):
            after = (TC >= tmax[:, None]) if opt.allow_tmax_in_half_life else (TC > tmax[:, None])
        cand = pos_c & np.where(manual[:, None], IC, after & has_tmax[:, None] & ~EC)
        lz = _lambda_z(TC, WC, cand, tlast, manual, fixed, opt)
        lam = lz["lambda.z"]

        # auclast / aucall / aucinf.obs (PKNCA pk.calc.auc.last/.all/.inf.obs on the interval's
        # cleaned samples, interval c(0, Inf) from its start): NA for fewer than 2 samples, 0 when
        # all are 0, NA without a sample at the start; else to tlast (+ AUCall's triangle)
        lpi_c = np.maximum.accumulate(np.where(pos_c, idx, -1), axis=1)
        has_pos_c = lpi_c[:, -1] >= 0
        at_start = valid_c[:, 0] & (TC[:, 0] == a)
        ok = (nc > 1) & has_pos_c & at_start
        zero = (nc > 1) & ~has_pos_c
        SAc = _seg_area(method, TC[:, :-1], WC[:, :-1], TC[:, 1:], WC[:, 1:], None) \
            if method != "lin-log" and m > 1 else None
        nofin = np.zeros(s, dtype=bool)
        start = TC[:, 0]
        curves = {mode: _curve_auc(method, TC, WC, SAc, lpi_c, start, WC[:, 0], np.nan, np.full(s, np.nan),
                                   nofin, np.ones(s, dtype=np.int64), nc, cut=True, triangle=(mode == "all"),
                                   first_tmax=opt.first_tmax)
                  for mode in ("last", "all")}
        auclast = np.where(zero, 0.0, np.where(ok, curves["last"], np.nan))
        aucall = np.where(zero, 0.0, np.where(ok, curves["all"], np.nan))
        with np.errstate(divide="ignore", invalid="ignore"):
            aucinf = np.where(zero, 0.0, np.where(ok, auclast + clast / lam, np.nan))

        # aucint (lambda.z tail after tlast) and aucint.last (0 after tlast) on exactly [a, b], from
        # the whole cleaned profile, interpolated at the edges (PKNCA pk.calc.aucint)
        le_a = (T1 <= a).sum(axis=1)  # samples at or before a
        lt_b = (T1 < b).sum(axis=1)
        loc_a = _locate(T1, W1, n1, a, le_a)
        if fin_b:
            loc_b = _locate(T1, W1, n1, b, lt_b)
            le_b = lt_b + (loc_b["t2"] == b) * (lt_b < n1)
        else:
            le_b = n1
        tail_b = has_pos & (b > tl_t)
        hi = np.where(tail_b, tl_t, b)
        r_hi = np.where(tail_b, tl_idx, lt_b)  # samples strictly before hi
        part_ok = has_pos & (a < hi)
        if part_ok.any():
            loc_hi = _locate(T1, W1, n1, hi, np.where(tail_b, tl_idx + 1, le_b))
            c_hi = np.where(loc_hi["before"], 0.0, _edge(loc_hi, hi, tl_t, tmax_w, method))
            c_lo = np.where(loc_a["before"], 0.0, _edge(loc_a, a, tl_t, tmax_w, method))
            part = _curve_auc(method, T1, W1, SA, lpi_all, a, c_lo, np.where(part_ok, hi, a + 1.0), c_hi,
                              part_ok, le_a, np.where(part_ok, r_hi, le_a), cut=False, triangle=False,
                              first_tmax=opt.first_tmax)
            part = np.where(part_ok, part, 0.0)
        else:
            part = np.zeros(s)
        lo2 = np.maximum(a, tl_t)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            far = np.exp(-lam * (b - tl_t)) if fin_b else 0.0
            tail = cl_w / lam * (np.exp(-lam * (lo2 - tl_t)) - far)
        aucint = np.where(n1 > 1, np.where(tail_b, part + tail, part), np.nan)
        aucint_last = np.where(n1 > 1, part, np.nan)

        with np.errstate(invalid="ignore"):
            n_before = (valid_c & (TC < tmax[:, None])).sum(axis=1)
        span = lz["span.ratio"]
        auto = ~manual & ~fixed_ok
        bits = {
            "no_samples": ~has_w,
            "all_blq": has_w & ~has_tmax,
            "one_sample": nc == 1,
            "auc_before_first": (nc > 1) & has_pos_c & ~at_start,
            "start_after_last_sample": (n1 > 0) & (a > t_end),
            "aucinf_finite_interval": fin_b & np.isfinite(aucinf),
            "too_few_points_half_life": auto & has_tmax & (lz["_nc"] < opt.min_hl_points),
            "no_positive_lambda_z": auto & (lz["_nc"] >= opt.min_hl_points) & ~lz["_found"],
            "two_point_half_life": lz["_two"],
            "manual_lambda_z_invalid": manual & ~fixed_ok & ~lz["_found"],
            "span_ratio_below_min": span < opt.min_span_ratio,
            "aucint_no_lambda_z": tail_b & ~np.isfinite(lam),
            "aucint_before_first": (n1 > 1) & loc_a["before"] & has_pos,
            "sparse_early_sampling": has_tmax & (n_before < opt.min_samples_before_tmax),
        }
        wbits = np.zeros(s, dtype=np.int64)
        for code, hit in bits.items():
            wbits |= hit.astype(np.int64) << _BIT[code]
        # times from the interval's start, as PKNCA reports them (pk.nca.interval: time - start)
        for key in ("lambda.z.time.first", "lambda.z.time.last"):
            lz[key] = lz[key] - a
        lz["_times"] = lz["_times"] - a
        res = {
            "start": np.full(s, float(a)), "end": np.full(s, float(b)), "n_samples": nc,
            "n_blq": (present & B & (T >= a) & (T <= b)).sum(axis=1),
            "cmax": np.where(has_w, cm, np.nan), "tmax": tmax - a, "tlast": tlast - a, "clast.obs": clast,
            "auclast": auclast, "aucall": aucall, "aucinf.obs": aucinf,
            "aucint": aucint, "aucint.last": aucint_last,
            **lz, "persistence": tlast, "_wbits": wbits,
        }
        if threshold is not None:
            seg = np.arange(max(m - 1, 0))[None, :]
            seg_ok = seg + 1 < nr[:, None]
            tm = tmax[:, None] if method == "lin-log" else None
            res["time_above"] = np.where(nr >= 2, _time_above(method, TR, WR, seg_ok, tm, float(threshold)),
                                         np.nan)
        results.append(res)
    return results


#: subjects per engine call: bounds the temporaries (~40 arrays of CHUNK x samples) for big cohorts
CHUNK = 65_536


def _engine_chunked(T, C, B, n, inc, exc, manual, fixed, intervals, opt, threshold):
    """:func:`_engine` on blocks of :data:`CHUNK` subjects, results concatenated."""
    s = T.shape[0]
    if s <= CHUNK:
        return _engine(T, C, B, n, inc, exc, manual, fixed, intervals, opt, threshold)
    parts = [_engine(T[i:i + CHUNK], C[i:i + CHUNK], B[i:i + CHUNK], n[i:i + CHUNK], inc[i:i + CHUNK],
                     exc[i:i + CHUNK], manual[i:i + CHUNK], fixed[i:i + CHUNK], intervals, opt, threshold)
             for i in range(0, s, CHUNK)]
    merged = []
    for iv in range(len(intervals)):
        out = {}
        for key in parts[0][iv]:
            arrays = [p[iv][key] for p in parts]
            if key == "_times":
                width = max(a.shape[1] for a in arrays)
                arrays = [np.pad(a, ((0, 0), (width - a.shape[1], 0)), constant_values=np.nan) for a in arrays]
            out[key] = np.concatenate(arrays)
        merged.append(out)
    return merged


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
    na = txt.is_null() | txt.is_in(list(_NA_TEXT))
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
            lim = vt.str.extract(_CENSORED.pattern, 2).cast(pl.Float64, strict=False).to_numpy()
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
    linup = (" and linear-up AUC before tmax can be ~2x too high; consider method='log-up/log-down'"
             if opt.method != "log-up/log-down" else "")
    fill = {"mhp": opt.min_hl_points, "msr": _g(opt.min_span_ratio), "msb": opt.min_samples_before_tmax,
            "linup": linup}
    messages = [f"{code}: {msg.format(**fill)}" for code, msg in _WARNINGS]
    combos = {int(v): [messages[i] for i in range(len(_WARNINGS)) if (int(v) >> i) & 1] for v in np.unique(wbits)}
    warnings = pl.Series("warnings", wbits).replace_strict(combos, return_dtype=pl.List(pl.String))

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


def nca(frame: pl.DataFrame, *, subject: str = "subject_id", time: str = "time", conc: str = "conc",
        lloq: str | None = None, value_text: str | None = None,
        intervals: Sequence[Any] = ((0.0, math.inf),), options: NcaOptions | None = None,
        doses: pl.DataFrame | None = None, dose_time: str | None = None,
        threshold: float | None = None) -> pl.DataFrame:
    """NCA of every subject's profile over every interval; one row per subject and interval.

    ``frame`` is a long table: one row per sample with ``subject``, ``time`` and ``conc`` columns
    (``conc`` may be missing on a censored row), optionally ``lloq`` (BLQ when conc < lloq) and
    ``value_text`` (BLQ when a lower-censored result such as ``<50``). Rows need not be sorted; a
    subject may not have two samples at one time. ``intervals`` are ``(start, end)`` pairs or
    ``"START,END"`` strings (``end`` may be ``inf``). With ``doses`` (columns ``subject`` and
    ``dose_time``, default the ``time`` name), time is counted from each subject's first or last
    dose (``options.time_from``) and ``time_offset`` gives the dose time used. With
    ``threshold``, ``conc_above`` and ``time_above`` (time at or above it) are added.

    Each interval is computed from the samples inside it, with times from its start, as PKNCA's
    ``pk.nca`` does (``auclast`` stops at the interval's last quantifiable sample; ``aucint`` and
    ``aucint.last`` interpolate at the edges). Output: the subject column (first-appearance
    order), then :data:`NCA_COLUMNS` — ``start``, ``end``, ``method``, ``n_samples`` (samples used
    for the AUCs), ``n_blq``, ``cmax``, ``tmax``, ``tlast``,
    ``clast.obs``, ``auclast``, ``aucall``, ``aucinf.obs``, ``aucint``, ``aucint.last``,
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
    out = nca(frame, subject="s", time="t", conc="c", intervals=intervals, options=options,
              threshold=threshold, **kw)
    return out.drop("s")


def time_above(frame: pl.DataFrame, threshold: float, **kwargs: Any) -> pl.DataFrame:
    """Time at or above ``threshold`` per subject and interval (PKNCA ``time_above``): the
    subject column, ``start``, ``end``, ``conc_above``, ``time_above``; ``kwargs`` as :func:`nca`."""
    out = nca(frame, threshold=threshold, **kwargs)
    return out.select(out.columns[0], "start", "end", "conc_above", "time_above")


# ---------------------------------------------------------------------------------------------
# CSV command


def _scan_fields(path: Path) -> list[str]:
    """The header; raises when a data row has another number of fields than the header."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: the file is empty") from None
        width = len(header)
        for i, row in enumerate(reader, start=1):
            if len(row) != width and row:
                raise ValueError(f"{path}: row {i} (line {reader.line_num}) has {len(row)} field(s) but the "
                                 f"header has {width}: time, conc and the other columns must have the same length")
    return header


def read_conc_table(input_csv: str | Path, *, subject: str, time: str, conc: str, lloq: str | None = None,
                    extra: Sequence[str] = ()) -> pl.DataFrame:
    """A concentration-time CSV checked and parsed for the ``nca`` and ``stein`` commands.

    Returns ``_row`` (1-based data row), the subject column under its own name, ``_time``,
    ``_conc`` (null for a censored ``<x`` cell or a missing one), ``_vt`` (the censored text),
    ``_lloq`` (when ``lloq`` is given) and the ``extra`` columns as text. Raises ValueError naming
    the file, row (and CSV line) and column: a missing column, a row with another number of fields
    than the header, a time, conc or LLOQ that is not a number, a missing time or subject, a time
    that does not increase within a subject (file order), a negative concentration."""
    path = Path(input_csv)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    header = _scan_fields(path)
    need = list(dict.fromkeys(c for c in (subject, time, conc, lloq, *extra) if c is not None))
    miss = [c for c in need if c not in header]
    if miss:
        raise ValueError(f"{path}: column(s) {miss} not found; the header has {header}")
    raw = pl.read_csv(path, infer_schema=False, columns=need)
    raw = raw.with_row_index("_row", offset=1)

    def parse(col: str, allow_censored: bool) -> pl.Expr:
        txt = pl.col(col).str.strip_chars()
        val = txt.replace(list(_NA_TEXT), None).cast(pl.Float64, strict=False)
        cens = txt.str.contains(r"^(<=|<|≤)") if allow_censored else pl.lit(False)
        bad = raw.filter(val.is_null() & txt.is_not_null() & ~txt.is_in(list(_NA_TEXT))
                         & ~(cens & txt.str.extract(_CENSORED.pattern, 2).cast(pl.Float64, strict=False).is_not_null()))
        if bad.height:
            r = bad.row(0, named=True)
            raise ValueError(f"{path}: row {r['_row']} (line {r['_row'] + 1}), column {col!r}: "
                             f"{r[col]!r} is not a number")
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
                         "time must be monotonically increasing within a subject")
    neg = work.filter(pl.col("_conc") < 0)
    if neg.height:
        r = neg.row(0, named=True)
        raise ValueError(f"{path}: row {r['_row']} (line {r['_row'] + 1}), column {conc!r}: "
                         f"negative concentration {r['_conc']:g}")
    return work


def write_atomic_csv(frame: pl.DataFrame, out_csv: str | Path) -> Path:
    """Write ``frame`` to a temporary name beside ``out_csv`` and rename it: nothing partial is
    left under the output name."""
    out_path = Path(out_csv)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    try:
        frame.write_csv(tmp)
        tmp.replace(out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


def nca_command(input_csv: str | Path, out_csv: str | Path, *, subject: str, time: str, conc: str,
                lloq: str | None = None, method: str = "lin-up/log-down",
                intervals: Sequence[Any] | None = None, options: NcaOptions | None = None) -> dict[str, Any]:
    """``cartlab nca TABLE.csv --subject COL --time COL --conc COL [--lloq COL] [--method M]
    [--interval START,END]... --out OUT.csv`` (contract: ``../shared/conformance/README.md``).

    Writes one row per subject and interval with the subject column under its own name and the
    PKNCA column names of :func:`nca` (lists as text: ``lambda.z.times`` joined by ``;``,
    ``warnings`` by `` | ``); the file is written to a temporary name and renamed, so nothing
    partial is left under ``out_csv``. A conc cell ``<x`` is a censored (BLQ) result; ``NA`` or an
    empty cell is missing. Bad input raises ValueError naming the file, row and column: a missing
    column, a row with another number of fields than the header, a time or conc that is not a
    number, a time that does not increase within a subject (file order). Returns a summary.
    """
    path = Path(input_csv)
    work = read_conc_table(path, subject=subject, time=time, conc=conc, lloq=lloq)
    base = options or NcaOptions()
    opt = NcaOptions(**{f.name: getattr(base, f.name) for f in fields(NcaOptions)} | {"method": method})
    ivs = [parse_interval(iv) for iv in (intervals or [(0.0, math.inf)])]
    out = nca(work, subject=subject, time="_time", conc="_conc", lloq="_lloq" if lloq else None,
              value_text="_vt", intervals=ivs, options=opt)
    flat = out.with_columns(
        pl.col("lambda.z.times").cast(pl.List(pl.String)).list.join(";"),
        pl.col("warnings").list.join(" | "),
    )
    out_path = write_atomic_csv(flat, out_csv)
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
    }
