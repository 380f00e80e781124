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
* :func:`copies_per_cell` — transgene copies/ug gDNA to copies per nucleated cell.

Modules: :mod:`~cartlab.kinetics.nca.options` (options, methods, output columns),
:mod:`~cartlab.kinetics.nca.engine` (the rules on padded arrays) and
:mod:`~cartlab.kinetics.nca.frame` (frames in and out). The CSV contract of
``../shared/conformance/README.md`` (``cartlab nca``) is the command line's:
:func:`cartlab.cli.kinetics_io.nca_command`.

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
  + ``clast.obs / lambda.z`` (``aucinf_finite_interval`` warns for a finite interval);
  ``aucpext.obs`` = ``100 (1 - auclast / aucinf.obs)``, the % extrapolated (PKNCA ``pk.calc.aucpext``:
  null when either AUC is <= 0), with warning ``aucpext_high`` above ``max_aucpext`` (20). For
  ``"lin-log"`` the tmax that splits linear from log is the curve's own (PKNCA recomputes it).
  ``n_samples`` counts these cleaned samples; ``n_blq`` (*cartlab*) counts the interval's samples
  observed BLQ, as observed (before cleaning: kept, imputed and dropped ones alike).
* ``aucint`` / ``aucint.last`` / ``aucint.all`` (PKNCA ``aucint.inf.obs`` / ``aucint.last`` /
  ``aucint.all``, ``R/aucint.R``, which
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
(docs/kinetics/README.md, "Sparse early sampling"). Concentrations between samples are interpolated with the same choice.

``aucint`` (PKNCA ``aucint.inf.obs``): the AUC over exactly ``[start, end]`` of the curve that
interpolates the whole profile's cleaned samples (method above; BLQ positions over the whole
profile) up to its ``tlast`` and follows ``clast*exp(-lambda.z*(t - tlast))`` after it, with the
interval's ``lambda.z``; before the first sample the concentration is 0 (PKNCA ``conc.origin = 0``,
at both edges of an interval that starts before the data).
The tail is integrated exactly, ``clast/lambda.z*(exp(-lambda.z*(a-tlast)) -
exp(-lambda.z*(b-tlast)))``, which equals PKNCA's log trapezoid to the extrapolated point. When
the interval reaches past ``tlast`` and ``lambda.z`` is null, ``aucint`` is null (warning
``aucint_no_lambda_z``) — it is never silently truncated. ``aucint.last`` (PKNCA ``aucint.last``)
is the same with 0 after ``tlast``; ``aucint.all`` (PKNCA ``aucint.all``, AUCall's extrapolation) adds
the linear triangle from ``tlast`` down to the next cleaned sample (a BLQ kept as 0), cut at the
interval's edges, and is ``aucint.last`` when no sample follows ``tlast``. cartlab ignores BLQ
samples between ``tlast`` and ``end`` for ``aucint`` (the curve after tlast is the lambda.z tail);
PKNCA mixes such observed zeros with extrapolated points.

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
``min_span_ratio`` by more than a relative 1e-9, PKNCA's exclusion criterion), ``clast.pred`` = the fitted line at ``tlast``.
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
of the interval before tmax: the true peak may lie between samples, and over a steep exponential
rise a linear-up AUC overestimates the area — docs/kinetics/README.md, "Sparse early sampling"),
``no_dose_time``, ``above_uloq``.

Units (``cartlab nca --conc-unit --time-unit``, :func:`nca_units`): the engine works on numbers;
the unit of each output column follows from the concentration and time units as in PKNCA's
``pknca_units_table`` (cmax: conc; tmax, half.life: time; AUCs: time*conc; lambda.z: 1/time).
"""

from cartlab._deprecated import renamed
from cartlab.kinetics.nca.frame import derive_nca, nca_profile, time_above
from cartlab.kinetics.nca.options import (
    CENSORED_RESULT,
    GENOMES_PER_UG_GDNA,
    METHODS,
    NA_TEXT,
    NCA_COLUMNS,
    OPTION_DOCS,
    NcaOptions,
    copies_per_cell,
    nca_units,
    normalise_method,
    parse_interval,
)

__all__ = [
    "CENSORED_RESULT",
    "GENOMES_PER_UG_GDNA",
    "METHODS",
    "NA_TEXT",
    "NCA_COLUMNS",
    "OPTION_DOCS",
    "NcaOptions",
    "copies_per_cell",
    "derive_nca",
    "nca_profile",
    "nca_units",
    "normalise_method",
    "parse_interval",
    "time_above",
]


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
__getattr__ = renamed(__name__, "nca")
