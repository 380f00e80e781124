"""NCA options and conventions: the AUC methods, :class:`NcaOptions` (PKNCA's defaults), the output
columns, censored-result text and small helpers (intervals, copies per cell)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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

#: a censored result's text: ``<50``, ``<=50``, ``≤50`` (below) or ``>1e6``, ``>=``, ``≥`` (above);
#: group 1 the sign, group 2 the limit
CENSORED_RESULT = re.compile(r"^\s*(<=|>=|<|>|≤|≥)\s*([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$")
#: cell texts read as missing
NA_TEXT = ("", "NA", "NaN", "nan", ".", "NULL", "null")


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
    #: warn (aucpext_high) when aucpext.obs, the % of aucinf.obs extrapolated past tlast, is above this
    #: (cartlab: PKNCA reports aucpext.obs without a limit; 20% is the usual reliability limit)
    max_aucpext: float = 20.0

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
        if isinstance(self.max_aucpext, bool) or not (isinstance(self.max_aucpext, (int, float))
                                                       and 0 <= self.max_aucpext <= 100):
            raise ValueError("max_aucpext must be a percentage between 0 and 100")
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
    "max_aucpext": "warn aucpext_high when aucpext.obs (% of aucinf.obs extrapolated) is above this (20)",
}

#: output columns of :func:`nca` after the subject column (``time_offset``, ``conc_above`` and
#: ``time_above`` are added when doses / a threshold are given)
NCA_COLUMNS = (
    "start", "end", "method", "n_samples", "n_blq", "cmax", "tmax", "tlast", "clast.obs",
    "auclast", "aucall", "aucinf.obs", "aucpext.obs", "aucint", "aucint.last", "aucint.all", "lambda.z", "half.life",
    "r.squared", "adj.r.squared", "lambda.z.n.points", "lambda.z.time.first",
    "lambda.z.time.last", "span.ratio", "clast.pred", "persistence", "rule", "reason",
    "lambda.z.times", "warnings",
)


# ---------------------------------------------------------------------------------------------
# units

#: what each quantity column of :func:`nca` is measured in: a unit built from the concentration
#: unit ``C`` and the time unit ``T`` (PKNCA ``pknca_units_table``: auclast "hr*ng/mL", lambda.z
#: "1/hr", span.ratio "fraction", r.squared "unitless", lambda.z.n.points "count")
UNIT_KINDS: dict[str, str] = {
    **dict.fromkeys(("start", "end", "tmax", "tlast", "half.life", "lambda.z.time.first", "lambda.z.time.last",
                     "persistence", "lambda.z.times", "time_offset", "time_above"), "T"),
    **dict.fromkeys(("cmax", "clast.obs", "clast.pred", "conc_above"), "C"),
    **dict.fromkeys(("auclast", "aucall", "aucinf.obs", "aucint", "aucint.last", "aucint.all"), "T*C"),
    "lambda.z": "1/T", "aucpext.obs": "%",
    "r.squared": "unitless", "adj.r.squared": "unitless", "span.ratio": "fraction",
    **dict.fromkeys(("lambda.z.n.points", "n_samples", "n_blq"), "count"),
}


def nca_units(conc_unit: str | None, time_unit: str | None, columns: Sequence[str] | None = None) -> dict[str, str | None]:
    """The unit of every quantity column (``columns``: those present; default every known one),
    from the concentration and time units, as PKNCA's ``pknca_units_table`` composes them:
    ``cmax`` in ``conc_unit``; ``tmax``, ``half.life`` in ``time_unit``; the AUCs in
    ``time_unit*conc_unit``; ``lambda.z`` in ``1/time_unit``; ``r.squared`` "unitless",
    ``span.ratio`` "fraction", point counts "count". A unit built from a unit not given is None
    (PKNCA: "If a unit is not given, then all of the units derived from that unit will be NA")."""
    c = conc_unit.strip() if conc_unit and conc_unit.strip() else None
    t = time_unit.strip() if time_unit and time_unit.strip() else None
    built = {"C": c, "T": t, "T*C": f"{t}*{c}" if c and t else None, "1/T": f"1/{t}" if t else None}
    names = [n for n in (columns if columns is not None else UNIT_KINDS) if n in UNIT_KINDS]
    return {n: built.get(UNIT_KINDS[n], UNIT_KINDS[n]) for n in names}


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
