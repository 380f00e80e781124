"""Response rates and time-to-event endpoints: Clopper-Pearson rates, ADTTE, Kaplan-Meier, Aalen-Johansen.

Definitions follow the ELN 2022 outcome measures (Döhner H, Wei AH, Appelbaum FR, et al. Diagnosis
and management of AML in adults: 2022 recommendations from an international expert panel on behalf
of the ELN. *Blood* 2022;140(12):1345-1377, Table 9 "Outcome measures for clinical trials in AML";
hematologic relapse as in its Table 7). They are data in ``criteria/endpoints.yaml`` (one entry per
parameter and one per rule id, each with its citation); the code here evaluates them. Every ADTTE
row carries ``rule`` (the rule id), ``reason`` (a sentence) and ``evidence`` (``"<file>:<row>"``
references of the source rows that fixed its day).

Public functions (pure functions of frames):

* :func:`clopper_pearson` - exact binomial confidence interval of k successes in n trials.
* :func:`response_rate` - n, responders, rate and Clopper-Pearson interval, overall or per group.
* :func:`derive_adtte` - ADaM-style ADTTE (OS, EFS, RFS, LFS, CIR) from a :class:`~cartlab.model.Study`
  and a responses frame; options in :class:`EndpointOptions`.
* :func:`km_estimate`, :func:`median_survival`, :func:`number_at_risk` - Kaplan-Meier estimates
  (computed by ``lifelines.KaplanMeierFitter``), medians with CI, numbers at risk.
* :func:`cumulative_incidence` / :func:`aalen_johansen` - Aalen-Johansen cumulative incidence with a
  competing event, computed exactly here (see the function for why not by lifelines' fitter).

Time is in days on cartlab's day scale (day 0 = first CAR-T infusion, which plays ELN's "day 1 of
randomization or registration"). ``STARTDY`` is the day a parameter's clock starts (0, or the
remission day for RFS and CIR), ``ADY`` the day of the event or censoring, ``AVAL = ADY - STARTDY``.

Parameters (population, origin, events):

* **OS** - all subjects; day 0 to death from any cause; otherwise censored when last known alive.
* **EFS** - all subjects; day 0 to treatment failure, hematologic relapse from CR/CRh/CRi, or death,
  whichever first. Treatment failure (ELN 2022) = no CR, CRh or CRi by the landmark
  (``EndpointOptions.efs_landmark_day``): a subject *evaluable for response* (any response row whose
  category is not ``NE``/empty) without remission by the landmark, or a subject who *dies before the
  landmark without a response assessment*, has an EFS event **at day 0** (ELN: "considered an event
  at day 1 of randomization"); a subject alive and not evaluable is **censored at day 0** (one not
  evaluable by the landmark who dies after it has an event on the death day: ELN censors only
  "patients alive who are non-evaluable" and counts "death from any cause"; option
  ``efs_ne_death_after_landmark``); a subject in remission by the landmark has an event at relapse (on
  or after the remission day) or death, else is censored **on the day of the last disease
  assessment** (ELN: "censored on the date they were last assessed for response"; option
  ``efs_censor``): the last marrow, or a later blood sample the relapse rule reads as no circulating
  blasts (review 48 F1). Without a landmark (the default, None) remission is judged by the end of follow-up
  and :func:`derive_adtte` warns once: ELN requires a pre-defined landmark
  (``cartlab analyze --set endpoints.efs_landmark_day=28``).
* **RFS** - subjects achieving CR, CRh or CRi (at any time); from the first remission day to
  hematologic relapse or death; otherwise censored when last known alive. ("RFS and disease-free
  survival have been used with the same definition", ELN 2017 Table 7 footnote.)
* **LFS** - leukemia-free survival: the RFS population and events with the clock at day 0 (the
  CAR-T infusion) instead of the remission day (cartlab convention). Conditional on reaching
  remission (guarantee-time bias: the curve cannot drop before the remission day); EFS is the
  day-0 survival of the cohort.
* **CIR** - competing-risk input: the RFS population from the first remission day; ``EVENT`` 1 =
  hematologic relapse, 2 = death without relapse (competing), 0 = censored when last known alive.
  ``cumulative_incidence(adtte, 1)`` is the CIR, ``cumulative_incidence(adtte, 2)`` the cumulative
  incidence of death without relapse (ELN asks to report both).

Conventions (documented defaults, options in :class:`EndpointOptions`):

* Events before day 0 (history, e.g. the relapse that led to CAR-T) are not outcomes.
* Hematologic relapse = an event in ``relapse_events`` (``relapse``, ``extramedullary_disease``;
  ELN 2022 Table 7: marrow blasts >= 5%, reappearing blood blasts, or development of extramedullary
  disease) on or after the remission day (a relapse recorded on the remission day contradicts the
  remission; it is counted, AVAL 0 for RFS, rather than dropped). On one day relapse precedes death.
* Last known alive = the latest of ``subjects.last_followup_day`` and the days of the subject's
  dated rows - observations, doses, interventions, non-death events, response assessments (a lab
  drawn on a day needs a living patient; ``last_alive_sources="all_tables"``, the default, with a
  warning naming the subjects with rows after ``last_followup_day``; "followup_day" counts only
  non-death events and response assessments besides it). A death recorded before day 0 makes every
  parameter of the subject not evaluable (rule ``death_before_origin``, a warning names it). OS, RFS, LFS and CIR are censored on that day. EFS (ELN 2022 Table 9: "censored on the
  date they were last assessed for response") is censored on the day of the last disease assessment
  on or before it (``efs_censor="last_disease_assessment"``, the default since session 48): the latest
  row of the ``responses`` frame (one row per assessment) whose category is an assessment (not
  ``NE``/empty) - rule ``censor.last_assessment``, ``CNSDTDSC`` "LAST RESPONSE ASSESSMENT" - or, when
  later, the last PBBLAST sample after the remission that the relapse rule reads as no circulating
  blasts (0, ``<=0``; ELN 2022 Table 7 relapse by "reappearance of blasts in the blood in at least 2
  peripheral blood samples at least one week apart"; a ``<x`` bound settles nothing and is named) -
  rule ``censor.last_blood_assessment``, ``CNSDTDSC`` "LAST DISEASE ASSESSMENT (BLOOD)", SRCDOM
  ``observations`` (:mod:`cartlab.response.last_assessment`; only for criteria whose relapse rule reads
  blood: AML and ALL both do). ``efs_censor="last_response_assessment"`` = the marrow only (sessions
  34-47); ``efs_censor="last_known_alive"`` keeps the last-known-alive day.
* Follow-up: a subject without ``last_followup_day`` is censored at the latest day of any of its
  rows - observations, doses, interventions, events, response assessments - (``missing_followup=
  "last_observation"``, the default; spec: "Follow-up for time-to-event endpoints"); the censoring
  rule is ``censor.last_record``, ``CNSDTDSC`` says "LAST RECORDED ROW (NO LAST_FOLLOWUP_DAY)", and
  one :class:`~cartlab.errors.CartlabWarning` names the subjects censored so. ``"error"`` (``cartlab
  analyze --strict``) raises a ``ValueError`` naming them instead. A subject with no row at all to
  censor at raises either way.
* ``censor_at_allo_hsct`` / ``censor_at_new_therapy`` (default False, as ELN 2022, which does not
  censor at either): censor the parameters of ``censor_params`` (default EFS, RFS, LFS and CIR; OS
  only when listed, since ELN's OS runs to death from any cause) at the first such event (day >= 0)
  when no endpoint event comes before it; an endpoint event on the same day counts as the event.
  Response assessments after the censoring day are then ignored (a remission after HSCT or new
  therapy is not the CAR-T's) when a response-based parameter is in ``censor_params``.
* The remission day is the earliest remission row of the ``responses`` frame. The frame may hold one
  row per subject (best response: its day is then used, which is the first *best* day, not
  necessarily the first remission day) or one row per assessment (then the first remission counts).

Estimators:

* Kaplan-Meier: ``lifelines.KaplanMeierFitter``; pointwise CI by the exponential Greenwood formula,
  i.e. Greenwood's variance of log S transformed to the log(-log S) scale:
  ``S(t) ** exp(+-z * sqrt(sum d/(n(n-d))) / |log S(t)|)`` (Kalbfleisch & Prentice 2002, R
  ``survfit(conf.type = "log-log")``); the median is the first time with S(t) <= 0.5 and its CI the
  times at which the lower / upper pointwise bands first reach 0.5 (Brookmeyer & Crowley 1982 style
  band inversion, lifelines ``median_survival_times``). Where S equals 0.5 exactly over a flat
  stretch, cartlab takes the midpoint of the stretch, as R ``quantile.survfit`` does (lifelines takes
  its first time): deaths on days 10, 20, 30 and a censoring at 40 give a median of 25.
* Aalen-Johansen: see :func:`aalen_johansen`.

>>> from cartlab.datasets import seed_case
>>> adtte = derive_adtte(seed_case())
>>> adtte.select("PARAMCD", "AVAL", "CNSR", "evidence").row(0)
('OS', 60.0, 1, ['subjects.csv:1', 'events.csv:1'])
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import polars as pl

from cartlab.provenance import EVIDENCE
from cartlab.response.adtte import (
    ADTTE_SCHEMA,
    PARAMCDS,
    EndpointOptions,
    derive_adtte,
    endpoint_definitions,
)

__all__ = [
    "ADTTE_SCHEMA",
    "PARAMCDS",
    "EndpointOptions",
    "aalen_johansen",
    "clopper_pearson",
    "cumulative_incidence",
    "derive_adtte",
    "endpoint_definitions",
    "km_estimate",
    "median_survival",
    "number_at_risk",
    "response_rate",
]

def _check_level(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return level


def _z(level: float) -> float:
    # scipy is imported where needed: it is most of this module's import time
    from scipy import stats

    return float(stats.norm.ppf(1.0 - (1.0 - level) / 2.0))


# ---------------------------------------------------------------------------------------------
# response rates


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided confidence interval of a binomial proportion k/n.

    ``lo = Beta^-1(alpha/2; k, n-k+1)`` and ``hi = Beta^-1(1-alpha/2; k+1, n-k)`` with
    ``alpha = 1 - level`` (Clopper CJ, Pearson ES. *Biometrika* 1934;26:404-413), with ``lo = 0`` when
    k = 0 and ``hi = 1`` when k = n. It is the interval of R's ``binom.test``; e.g. k=3, n=10 gives
    (0.06673951, 0.65245285).
    """
    level = _check_level(level)
    if isinstance(k, bool) or isinstance(n, bool) or int(k) != k or int(n) != n:
        raise ValueError(f"k and n must be integers, got k={k!r}, n={n!r}")
    k, n = int(k), int(n)
    if n <= 0:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= k <= n:
        raise ValueError(f"k must be in 0..n ({n}), got {k}")
    alpha = 1.0 - level
    from scipy import stats

    lo = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2.0, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1.0 - alpha / 2.0, k + 1, n - k))
    return lo, hi


def _by_cols(by: str | Sequence[str] | None) -> list[str]:
    if by is None:
        return []
    return [by] if isinstance(by, str) else list(by)


def _partitions(df: pl.DataFrame, by: list[str]) -> list[tuple[dict[str, Any], pl.DataFrame]]:
    """(group key dict, rows) per group, groups sorted by their key (nulls last)."""
    missing = [c for c in by if c not in df.columns]
    if missing:
        raise ValueError(f"by: column(s) {missing} not in the frame (columns: {df.columns})")
    if not by:
        return [({}, df)]
    if df.height == 0:
        return []
    parts = df.partition_by(by, as_dict=True, maintain_order=True)
    keys = sorted(parts, key=lambda key: tuple((v is None, v if v is not None else 0) for v in key))
    return [(dict(zip(by, key)), parts[key]) for key in keys]


def _responder_refs(sub: pl.DataFrame, column: str, resp: list[str]) -> list[str]:
    """The ``evidence`` of the responder rows, each reference once from the first row that has it
    (in row order; a row's own repeats are kept, as the row-by-row collection did)."""
    refs = (sub.with_row_index("_row").filter(pl.col(column).is_in(resp))
            .select("_row", pl.col("evidence").cast(EVIDENCE)).explode("evidence").drop_nulls("evidence"))
    return refs.filter(pl.col("_row") == pl.col("_row").min().over("evidence"))["evidence"].to_list()


def response_rate(
    frame: pl.DataFrame,
    responders: Iterable[str],
    column: str = "best_response",
    level: float = 0.95,
    by: str | Sequence[str] | None = None,
) -> pl.DataFrame:
    """Response rate with its exact (Clopper-Pearson) confidence interval, overall or per group.

    ``frame`` has one row per subject (e.g. the output of the best-response engine); every row is in
    the denominator (intention to treat: ``NE`` and empty responses count as non-responders), a row is
    a responder when ``column`` is in ``responders`` (e.g. ``{"CR", "CRh", "CRi"}`` for the ELN 2022
    composite complete remission rate, or ``{"CR", "CRi", "MLFS", "PR"}`` for an ORR).

    Columns: the ``by`` columns, ``n``, ``n_responders``, ``rate``, ``ci_low``, ``ci_high``, ``level``,
    ``method`` ("Clopper-Pearson exact"), ``responders`` (the categories counted as response),
    ``category_counts`` (e.g. ``"CR=2, NR=1, (missing)=1"``), ``rule``, ``reason`` and ``evidence``
    (the responders' ``evidence`` when the frame has that column). An empty frame without ``by``
    gives one row with n = 0 and empty rate and interval.
    """
    level = _check_level(level)
    if isinstance(responders, str):
        responders = {responders}
    resp = sorted(set(responders))
    if not resp:
        raise ValueError("responders must name at least one response category")
    if column not in frame.columns:
        raise ValueError(f"column {column!r} not in the frame (columns: {frame.columns})")
    cols = _by_cols(by)
    has_ev = "evidence" in frame.columns
    rows = []
    parts = _partitions(frame, cols)
    if not cols and frame.height == 0:
        parts = [({}, frame)]
    for key, sub in parts:
        if "subject_id" in sub.columns and sub["subject_id"].is_duplicated().any():
            dup = sorted(set(sub.filter(pl.col("subject_id").is_duplicated())["subject_id"].to_list()))
            raise ValueError(f"response_rate expects one row per subject; repeated: {dup}")
        values = sub[column].to_list()
        n = len(values)
        k = sum(1 for v in values if v in resp)
        counts = Counter("(missing)" if v is None else str(v) for v in values)
        order = sorted(counts, key=lambda c: (c == "(missing)", -counts[c], c))
        ev = _responder_refs(sub, column, resp) if has_ev else []
        if n:
            lo, hi = clopper_pearson(k, n, level)
            rate = k / n
            reason = (f"{k} of {n} subjects with {column} in {{{', '.join(resp)}}} -> rate {rate:.4g}, "
                      f"{level:.0%} Clopper-Pearson exact CI {lo:.4g}-{hi:.4g}")
        else:
            lo = hi = rate = None
            reason = "no subjects -> rate not estimable"
        rows.append({**key, "n": n, "n_responders": k, "rate": rate, "ci_low": lo, "ci_high": hi, "level": level,
                     "method": "Clopper-Pearson exact", "responders": resp,
                     "category_counts": ", ".join(f"{c}={counts[c]}" for c in order),
                     "rule": "response_rate.clopper_pearson", "reason": reason, "evidence": ev})
    schema = {**{c: frame.schema[c] for c in cols}, "n": pl.Int64, "n_responders": pl.Int64, "rate": pl.Float64,
              "ci_low": pl.Float64, "ci_high": pl.Float64, "level": pl.Float64, "method": pl.String,
              "responders": pl.List(pl.String), "category_counts": pl.String, "rule": pl.String,
              "reason": pl.String, "evidence": EVIDENCE}
    return pl.DataFrame(rows, schema=schema)


# ---------------------------------------------------------------------------------------------
# estimators


def _tte_rows(adtte: pl.DataFrame, paramcd: str | None, need: tuple[str, ...] = ("AVAL", "CNSR")) -> pl.DataFrame:
    """The analysable rows of one parameter: PARAMCD match, ANLFL = Y (when present), AVAL >= 0."""
    df = adtte
    if paramcd is not None:
        if "PARAMCD" not in df.columns:
            raise ValueError(f"paramcd={paramcd!r} given but the frame has no PARAMCD column")
        df = df.filter(pl.col("PARAMCD") == paramcd)
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"frame lacks column(s) {missing}")
    if "ANLFL" in df.columns:
        df = df.filter(pl.col("ANLFL") == "Y")
    null = df.filter(pl.any_horizontal([pl.col(c).is_null() for c in need]))
    if null.height:
        raise ValueError(f"{null.height} analysable row(s) with empty {'/'.join(need)}")
    aval = df["AVAL"].cast(pl.Float64)
    if df.height and (not np.all(np.isfinite(aval.to_numpy())) or aval.min() < 0):
        raise ValueError("AVAL must be finite and >= 0")
    if "CNSR" in need and df.height and not set(df["CNSR"].to_list()) <= {0, 1}:
        raise ValueError("CNSR must be 0 (event) or 1 (censored); CNSR 2 is a competing event (CIR: death "
                         "without relapse), estimated by cumulative_incidence, not Kaplan-Meier")
    return df


def _kmf(sub: pl.DataFrame, level: float):
    from lifelines import KaplanMeierFitter

    return KaplanMeierFitter(alpha=1.0 - level).fit(
        sub["AVAL"].cast(pl.Float64).to_numpy(), event_observed=(sub["CNSR"].to_numpy() == 0), label="S")


#: R ``quantile.survfit``'s tolerance for "exactly at the quantile": sqrt(.Machine$double.eps)
_FLAT_TOL = math.sqrt(np.finfo(float).eps)


def _first_at_or_below(band, q: float) -> float:
    """The first time a curve (or band) is <= q where it is defined, else inf; where it is flat at
    exactly q (within R's tolerance), the midpoint of that flat stretch: to the next time it drops
    (or becomes undefined), or to the last time when it stays at q to the end. This is R
    ``quantile.survfit``'s midpoint rule (survival package, T. Therneau: "the usual midpoint rule used
    for medians"; a flat at the end of the curve uses the last time); lifelines takes the flat's start."""
    y = band.to_numpy(dtype=float)
    x = np.asarray(band.index, dtype=float)
    hit = y <= q + _FLAT_TOL  # NaN compares False
    if not hit.any():
        return math.inf
    i = int(hit.argmax())
    if abs(y[i] - q) >= _FLAT_TOL:
        return float(x[i])
    off = np.nonzero(~(np.abs(y[i:] - q) < _FLAT_TOL))[0]  # the first time it leaves the flat (NaN too)
    return float((x[i] + (x[i + off[0]] if off.size else x[-1])) / 2)


def _km_band(kmf):
    """lifelines' pointwise log(-log) band, empty (NaN) where S(t) = 0: there log S is -inf and the
    Greenwood sum has d_i = n_i, so the interval is undefined (R ``survfit``, conf.type "log-log",
    gives NA there too). lifelines writes 0-0, which would make a median's upper bound "reached"."""
    ci = kmf.confidence_interval_.copy()
    sf = kmf.survival_function_["S"].reindex(ci.index)
    ci.loc[(sf <= 0).to_numpy()] = np.nan
    return ci


def km_estimate(adtte: pl.DataFrame, paramcd: str | None, by: str | Sequence[str] | None = None,
                level: float = 0.95) -> pl.DataFrame:
    """Kaplan-Meier estimate of one ADTTE parameter, overall or per ``by`` group.

    Computed by ``lifelines.KaplanMeierFitter`` (product limit ``S(t) = prod_{t_i <= t} (1 - d_i/n_i)``)
    on the rows with ``ANLFL == "Y"``; events are ``CNSR == 0``. The pointwise ``level`` CI is
    lifelines' default, the exponential Greenwood ("log-log") interval
    ``S(t) ** exp(+-z * sqrt(sum d_i/(n_i(n_i-d_i))) / |log S(t)|)`` (equal to R ``survfit`` with
    ``conf.type = "log-log"``; bounds equal S where the variance is 0, e.g. S = 1; empty where S = 0,
    the interval being undefined there).

    Columns: ``PARAMCD``, the ``by`` columns, ``time`` (0 and every distinct AVAL), ``n_at_risk``
    (AVAL >= time), ``n_events``, ``n_censored`` (at that time), ``survival``, ``ci_low``, ``ci_high``.
    """
    level = _check_level(level)
    df = _tte_rows(adtte, paramcd)
    cols = _by_cols(by)
    schema = {"PARAMCD": pl.String, **{c: df.schema[c] for c in cols if c in df.columns}, "time": pl.Float64,
              "n_at_risk": pl.Int64, "n_events": pl.Int64, "n_censored": pl.Int64, "survival": pl.Float64,
              "ci_low": pl.Float64, "ci_high": pl.Float64}
    frames = []
    for key, sub in _partitions(df, cols):
        if sub.height == 0:
            continue
        kmf = _kmf(sub, level)
        et = kmf.event_table
        sf = kmf.survival_function_["S"].reindex(et.index)
        ci = _km_band(kmf).reindex(et.index)
        frames.append(pl.DataFrame({
            "PARAMCD": [paramcd] * len(et), **{c: [key[c]] * len(et) for c in cols},
            "time": et.index.to_numpy(dtype=float), "n_at_risk": et["at_risk"].to_numpy(dtype=np.int64),
            "n_events": et["observed"].to_numpy(dtype=np.int64), "n_censored": et["censored"].to_numpy(dtype=np.int64),
            "survival": sf.to_numpy(dtype=float), "ci_low": ci.iloc[:, 0].to_numpy(dtype=float),
            "ci_high": ci.iloc[:, 1].to_numpy(dtype=float),
        }, schema=schema).with_columns(pl.col("ci_low", "ci_high").fill_nan(None)))
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)


def median_survival(adtte: pl.DataFrame, paramcd: str | None, by: str | Sequence[str] | None = None,
                    level: float = 0.95) -> pl.DataFrame:
    """Kaplan-Meier median with its CI, overall or per ``by`` group.

    The median is the first time with S(t) <= 0.5; the CI is the first times at which the lower and
    upper pointwise log(-log) bands reach 0.5 (the Brookmeyer-Crowley band inversion of R
    ``print.survfit`` and lifelines ``median_survival_times(confidence_interval_)``; the band is
    undefined where S = 0, so a bound is not reached there). Where a curve is exactly 0.5 over a
    stretch, the midpoint of the stretch (R ``quantile.survfit``; deaths on days 10, 20, 30 and a
    censoring at 40 in 4 subjects: S = 0.5 on [20, 30), median 25, where lifelines says 20). A
    median or bound that is not reached is empty and the reason says so ("not estimable" when the
    band ends at S = 0 before reaching 0.5, e.g. one subject with an event).

    Columns: ``PARAMCD``, the ``by`` columns, ``n``, ``n_events``, ``median``, ``median_ci_low``,
    ``median_ci_high``, ``level``, ``method``, ``reason``.
    """
    level = _check_level(level)
    df = _tte_rows(adtte, paramcd)
    cols = _by_cols(by)
    rows = []
    for key, sub in _partitions(df, cols):
        if sub.height == 0:  # no subject in the parameter's population (e.g. RFS when none reached CR)
            continue
        kmf = _kmf(sub, level)
        med = _first_at_or_below(kmf.survival_function_["S"], 0.5)
        band = _km_band(kmf)
        lo, hi = (_first_at_or_below(col, 0.5) for _, col in band.items())
        fin = [None if not math.isfinite(v) else v for v in (med, lo, hi)]
        n_ev = int((sub["CNSR"] == 0).sum())
        # a bound not found: "not reached" while the band is defined to the end, else not estimable
        # (the band ends where S = 0, as with a single subject's event)
        open_txt = "not reached" if band.iloc[-1].notna().all() else "not estimable"
        ci_txt = " - ".join(open_txt if v is None else f"{v:g}" for v in fin[1:])
        reason = (f"{n_ev} event(s) in {sub.height} subject(s); median "
                  + ("not reached" if fin[0] is None else f"{fin[0]:g} days")
                  + f", {level:.0%} CI {ci_txt}")
        rows.append({"PARAMCD": paramcd, **key, "n": sub.height, "n_events": n_ev, "median": fin[0],
                     "median_ci_low": fin[1], "median_ci_high": fin[2], "level": level,
                     "method": "Kaplan-Meier; CI by inversion of the log(-log) pointwise band", "reason": reason})
    schema = {"PARAMCD": pl.String, **{c: df.schema[c] for c in cols}, "n": pl.Int64, "n_events": pl.Int64,
              "median": pl.Float64, "median_ci_low": pl.Float64, "median_ci_high": pl.Float64, "level": pl.Float64,
              "method": pl.String, "reason": pl.String}
    return pl.DataFrame(rows, schema=schema)


def number_at_risk(adtte: pl.DataFrame, paramcd: str | None, times: Iterable[float],
                   by: str | Sequence[str] | None = None) -> pl.DataFrame:
    """Numbers at risk at chosen times (the table under a KM plot), overall or per ``by`` group.

    ``n_at_risk`` at t = subjects with AVAL >= t (a subject with its event or censoring at t is still
    at risk at t, as in lifelines' event table and R ``summary(survfit)``); ``n_events_cum`` and
    ``n_censored_cum`` = events (CNSR 0) and censorings with AVAL <= t.

    Columns: ``PARAMCD``, the ``by`` columns, ``time``, ``n_at_risk``, ``n_events_cum``, ``n_censored_cum``.
    """
    ts = [float(t) for t in times]
    df = _tte_rows(adtte, paramcd)
    cols = _by_cols(by)
    rows = []
    for key, sub in _partitions(df, cols):
        aval = sub["AVAL"].cast(pl.Float64).to_numpy()
        ev = sub["CNSR"].to_numpy() == 0
        for t in ts:
            rows.append({"PARAMCD": paramcd, **key, "time": t, "n_at_risk": int((aval >= t).sum()),
                         "n_events_cum": int(((aval <= t) & ev).sum()),
                         "n_censored_cum": int(((aval <= t) & ~ev).sum())})
    schema = {"PARAMCD": pl.String, **{c: df.schema[c] for c in cols}, "time": pl.Float64, "n_at_risk": pl.Int64,
              "n_events_cum": pl.Int64, "n_censored_cum": pl.Int64}
    return pl.DataFrame(rows, schema=schema)


def aalen_johansen(durations: Sequence[float], events: Sequence[int], event_of_interest: int = 1,
                   level: float = 0.95) -> pl.DataFrame:
    """Aalen-Johansen cumulative incidence of one event type in the presence of competing events.

    ``events``: 0 = censored, k >= 1 = event of type k. At each distinct time t_j with n_j at risk
    (duration >= t_j), d_j events of any type and d_kj of the type of interest,
    ``F_k(t) = sum_{t_j <= t} S(t_j-) d_kj / n_j`` where S is the all-cause Kaplan-Meier survival
    (Aalen & Johansen, *Scand J Stat* 1978;5:141-150; Kalbfleisch & Prentice 2002 §8.2). Tied times,
    also of different event types, are handled exactly - no jitter is needed: the formula gives the
    same value as any ordering of the tied events.

    Variance and CI are those of ``lifelines.AalenJohansenFitter`` (Collett, *Modelling Survival Data
    in Medical Research*, 3rd ed., p. 411; a Greenwood-type delta-method variance):
    ``Var F(t) = sum (F(t)-F(t_j))^2 d_j/(n_j(n_j-d_j)) + sum S(t_j-)^2 d_kj(n_j-d_kj)/n_j^3
    - 2 sum (F(t)-F(t_j)) S(t_j-) d_kj/n_j^2``, and the interval on the log(-log F) scale,
    ``exp(-exp(log(-log F) +- z sqrt(Var) / (F |log F|)))``. Where ``n_j = d_j`` the first term is 0
    (lifelines gives NaN there); where F = 0 (or 1) both bounds equal F.

    Why not lifelines' fitter: it "cannot handle tied event times" and, when different event types
    share a time, randomly jitters *all* event times by up to ``jitter_level`` (a warning; reproducible
    only with ``seed``), which also moves events past censorings at the same time and changes the
    estimate; it also forces F = 0 on its first row, wrong when events occur at time 0. On tie-free
    data this function equals lifelines to 1e-12 (tests/test_endpoints.py).

    Columns: ``time`` (0 and every distinct duration), ``n_at_risk``, ``n_events`` (of interest),
    ``n_competing``, ``n_censored``, ``cif``, ``variance``, ``ci_low``, ``ci_high``.
    """
    level = _check_level(level)
    t = np.asarray(durations, dtype=float)
    e = np.asarray(events)
    if t.shape != e.shape or t.ndim != 1:
        raise ValueError("durations and events must be 1-d and of the same length")
    if t.size and (not np.all(np.isfinite(t)) or t.min() < 0):
        raise ValueError("durations must be finite and >= 0")
    if e.size and (np.any(e < 0) or np.any(e != np.round(e))):
        raise ValueError("events must be integers >= 0 (0 = censored)")
    e = e.astype(np.int64)
    k = int(event_of_interest)
    if k < 1:
        raise ValueError("event_of_interest must be an event code >= 1")
    schema = {"time": pl.Float64, "n_at_risk": pl.Int64, "n_events": pl.Int64, "n_competing": pl.Int64,
              "n_censored": pl.Int64, "cif": pl.Float64, "variance": pl.Float64, "ci_low": pl.Float64,
              "ci_high": pl.Float64}
    if t.size == 0:
        return pl.DataFrame(schema=schema)
    times = np.unique(t)
    if times[0] > 0:
        times = np.concatenate([[0.0], times])
    n = np.array([(t >= x).sum() for x in times], dtype=np.int64)
    d_all = np.array([((t == x) & (e > 0)).sum() for x in times], dtype=np.int64)
    d_k = np.array([((t == x) & (e == k)).sum() for x in times], dtype=np.int64)
    cens = np.array([((t == x) & (e == 0)).sum() for x in times], dtype=np.int64)
    lag_s = np.ones(len(times))
    s = 1.0
    for j in range(len(times)):
        lag_s[j] = s
        s *= 1.0 - d_all[j] / n[j]
    cif = np.minimum(np.cumsum(lag_s * d_k / n), 1.0)  # a sum of 1 may round to 1 + 2e-16
    # the variance, accumulated as lifelines does (a * (x - b)^2 and a * (x - b) expanded)
    q_const = q_lin = q_quad = 0.0
    l_const = l_lin = 0.0
    second = 0.0
    var = np.zeros(len(times))
    for j in range(len(times)):
        f = float(cif[j])
        a = 0.0 if n[j] == d_all[j] else d_all[j] / n[j] / (n[j] - d_all[j])
        q_const += a * (f ** 2)
        q_lin -= 2 * a * f
        q_quad += a
        second += (lag_s[j] ** 2) * d_k[j] * (n[j] - d_k[j]) / (n[j] ** 3)
        c = lag_s[j] * d_k[j] / (n[j] ** 2)
        l_const -= c * f
        l_lin += c
        var[j] = (q_const + q_lin * f + q_quad * (f ** 2)) + second - 2 * (l_const + l_lin * f)
    z = _z(level)
    lo = cif.copy()
    hi = cif.copy()
    inside = (cif > 0) & (cif < 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.log(-np.log(cif[inside]))
        se = np.sqrt(np.maximum(var[inside], 0.0)) / (cif[inside] * np.abs(np.log(cif[inside])))
    lo[inside] = np.exp(-np.exp(g + z * se))
    hi[inside] = np.exp(-np.exp(g - z * se))
    return pl.DataFrame({"time": times, "n_at_risk": n, "n_events": d_k, "n_competing": d_all - d_k,
                         "n_censored": cens, "cif": cif, "variance": var, "ci_low": lo, "ci_high": hi}, schema=schema)


def cumulative_incidence(adtte_cr: pl.DataFrame, event_of_interest: int = 1, level: float = 0.95,
                         paramcd: str | None = "CIR", by: str | Sequence[str] | None = None) -> pl.DataFrame:
    """Aalen-Johansen cumulative incidence from a competing-risk ADTTE (``AVAL`` and ``EVENT`` codes).

    ``event_of_interest`` 1 on the CIR rows of :func:`derive_adtte` = cumulative incidence of relapse
    with death without relapse competing (ELN 2022 Table 9); 2 = cumulative incidence of death
    without relapse. Rows are filtered to ``paramcd`` (when the frame has ``PARAMCD``; None = all rows)
    and ``ANLFL == "Y"``. Estimator, variance and CI: :func:`aalen_johansen` (exact with ties; equals
    ``lifelines.AalenJohansenFitter`` on tie-free data).

    Columns: ``PARAMCD``, the ``by`` columns, ``event_of_interest``, then those of :func:`aalen_johansen`.
    """
    level = _check_level(level)
    df = adtte_cr
    if paramcd is not None and "PARAMCD" not in df.columns:
        paramcd = None
    df = _tte_rows(df, paramcd, need=("AVAL", "EVENT"))
    cols = _by_cols(by)
    frames = []
    for key, sub in _partitions(df, cols):
        aj = aalen_johansen(sub["AVAL"].cast(pl.Float64).to_numpy(), sub["EVENT"].to_numpy(), event_of_interest, level)
        frames.append(aj.select(
            pl.lit(paramcd, dtype=pl.String).alias("PARAMCD"),
            *[pl.lit(key[c], dtype=df.schema[c]).alias(c) for c in cols],
            pl.lit(int(event_of_interest), dtype=pl.Int64).alias("event_of_interest"),
            pl.all()))
    if frames:
        return pl.concat(frames)
    schema = {"PARAMCD": pl.String, **{c: df.schema[c] for c in cols}, "event_of_interest": pl.Int64,
              **aalen_johansen([], [], event_of_interest, level).schema}
    return pl.DataFrame(schema=schema)
