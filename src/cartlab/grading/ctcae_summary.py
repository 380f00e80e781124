"""CTCAE grading, session 39 (review 39), for :mod:`cartlab.grading.ctcae` and the toxicity summary:

* a missing reference limit (R39-4): a row whose rule "ANRLO/ANRHI missing" made it not gradable is
  graded with the missing limit at both extremes; where the value alone bounds the grade the row
  gets a range (the lower grade, the higher as grade_max) naming the missing limit, as creatinine
  and INR do for a missing BASE (:func:`limit_range_outcomes`); where it does not bound it at all
  (0 to the term's highest lab grade) it stays not gradable;
* a BNRIND derived from BASE against the row's own limits (R39-5, ``grade_labs``): said in the
  reason (:func:`derived_bnrind_outcomes`);
* the subject-level summary by CTCAE term (R39-3): admiral's "Hypocalcemia (Ionized)" and
  "Hypercalcemia (Ionized)" are metadata rows of the one CTCAE v5.0 term Hypocalcemia /
  Hypercalcemia (a corrected or an ionized calcium); :func:`lab_term_worst` takes the worse of the
  variants under that term (option ``calcium_summary``: ``merged``, default, or ``split``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl

from cartlab.grading.ctcae_criteria import Label
from cartlab.grading.ctcae_readings import apply_new_outcomes, read_plans

__all__ = ["LIMIT_CORNERS", "derived_bnrind_outcomes", "lab_term_worst", "limit_corners", "limit_range_outcomes",
           "open_grades", "summary_terms"]

#: the values a missing ANRLO / ANRHI takes when a row is graded at both extremes of it: 0 and 1e12
#: (a reference limit is not negative; 1e12 is above any lab value in any unit). Grades are monotone
#: in each limit, so the corners bound them; only the missing limit is filled.
LIMIT_CORNERS: tuple[tuple[float, float], ...] = ((0.0, 0.0), (1e12, 1e12), (0.0, 1e12), (1e12, 0.0))
#: a rule's reason that a missing reference limit made the row not gradable
_LIMIT_NA = re.compile(r"^not gradable: .*\bANR(?:LO|HI)\b.* missing")


def limit_corners(part: pl.DataFrame, entry: Any, plans: dict[tuple[float, float], list[pl.LazyFrame]],
                  mask: np.ndarray, top: np.ndarray, grade: Callable[[pl.DataFrame], pl.LazyFrame]) -> None:
    """The rows of one dispatch partition with a value and a missing ANRLO/ANRHI, graded (``grade``:
    the partition's rule set) at each corner of :data:`LIMIT_CORNERS` (appended to ``plans``); their
    missing-limit bits in ``mask`` and the entry's highest lab grade in ``top``."""
    lim = part.filter(pl.col("aval").is_not_null() & (pl.col("anrlo").is_null() | pl.col("anrhi").is_null()))
    if not lim.height:
        return
    at = lim["_row"].to_numpy()
    mask[at] = (lim["anrlo"].is_null().cast(pl.Int64) + 2 * lim["anrhi"].is_null().cast(pl.Int64)).to_numpy()
    top[at] = max((g for g, _, _ in entry.labels if g is not None), default=0)
    for lo_fill, hi_fill in LIMIT_CORNERS:
        filled = lim.with_columns(pl.coalesce(pl.col("anrlo"), pl.lit(lo_fill)).alias("anrlo"),
                                  pl.coalesce(pl.col("anrhi"), pl.lit(hi_fill)).alias("anrhi"))
        plans.setdefault((lo_fill, hi_fill), []).append(grade(filled))


def limit_range_outcomes(gid: np.ndarray, gmax: np.ndarray, miss: np.ndarray, labels: list[Label],
                         corner_plans: dict[Any, list[pl.LazyFrame]], mask: np.ndarray, top: np.ndarray
                         ) -> dict[int, int]:
    """Rows not gradable for a missing ANRLO/ANRHI alone (review 39 R39-4; project rule "an absent
    input gives a range naming it"): graded at each corner of :data:`LIMIT_CORNERS` (``corner_plans``:
    per corner, plans giving ``_row``, ``_gid``, ``_gmax``), the lowest grade stands with its rule and
    the highest is left open, e.g. ANC 1.7 x 10^9/L without LLN: grade 0, grade_max 1 (CTCAE v5.0
    grade 2 is "<1.5 - 1.0", so 1.7 is at most grade 1, and grade 1 "<LLN - 1.5" only if LLN > 1.7).
    A row the value does not bound (0 to ``top``, the entry's highest lab grade) stays not gradable.
    ``mask``: per row 1 (ANRLO missing) + 2 (ANRHI missing). In place on ``gid``/``gmax``/``miss``;
    appends to ``labels``; returns the new outcomes whose grade is left open (id -> highest grade)."""
    out: dict[int, int] = {}
    n = gid.shape[0]
    grade_of = np.array([-1 if g is None else g for g, _, _ in labels], dtype=np.int64)
    limit_na = np.array([g is None and bool(_LIMIT_NA.search(r or "")) for g, _, r in labels], dtype=bool)
    reads: list[tuple[np.ndarray, np.ndarray]] = []
    for plans in corner_plans.values():
        reads.append(read_plans(plans, n))
    if not reads:
        return out
    graded = np.all(np.stack([g >= 0 for g, _ in reads]), axis=0)
    rows = np.flatnonzero(limit_na[gid] & (mask > 0) & graded)
    if not rows.size:
        return out
    keys = np.stack([gid[rows].astype(np.int64), mask[rows], top[rows]] + [a[rows] for g, h in reads for a in (g, h)],
                    axis=1)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    new_gid = np.full(len(uniq), -1, dtype=np.int64)  # -1: stays not gradable
    for u, k in enumerate(uniq.tolist()):
        main, m, t = k[0], k[1], k[2]
        reason = labels[main][2]
        names = " and ".join(nm for bit, nm in ((1, "ANRLO"), (2, "ANRHI")) if m & bit and nm in reason)
        corners = [(k[3 + 2 * i], k[4 + 2 * i]) for i in range(len(reads))]
        grades = [int(grade_of[c]) for c, _ in corners]
        if not names or min(grades) < 0:
            continue
        highs = [max(gr, hm) for gr, (_, hm) in zip(grades, corners)]
        lo, hi = min(grades), max(highs)
        if lo == 0 and hi >= t:  # the value does not bound the grade at all: not gradable stays
            continue
        lo_c, hi_c = corners[grades.index(lo)][0], corners[highs.index(hi)][0]
        _, rule, lo_reason = labels[lo_c]
        if hi == lo:
            text = f"{lo_reason}; {names} missing, but the value alone settles the grade (grade {lo} whatever {names})"
        else:
            text = (f"{names} missing: the value alone bounds the grade to {lo}-{hi} ({lo_reason}, with {names} at its "
                    f"most favourable; {labels[hi_c][2]}, at its least); at least grade {lo} (grade {hi} not excluded: "
                    f"criteria on {names} not evaluable, {names} missing)")
            out[len(labels)] = hi
        new_gid[u] = len(labels)
        labels.append((lo, rule, text))
    apply_new_outcomes(rows, inverse, new_gid, gid, gmax, miss)
    return out


def derived_bnrind_outcomes(gid: np.ndarray, labels: list[Label], derived: np.ndarray,
                            maxes: dict[int, int]) -> dict[int, int]:
    """Rows whose BNRIND grade_labs derived from BASE against the row's own limits (``derived``: the
    value, or None), graded by a term that reads BNRIND: the reason says so (review 39 R39-5). In
    place on ``gid``; appends to ``labels``; returns ``maxes`` with the new outcomes' open grades."""
    rows = np.flatnonzero(np.array([v is not None for v in derived], dtype=bool))
    if not rows.size:
        return maxes
    out = dict(maxes)
    made: dict[tuple[int, str], int] = {}
    for i in rows:
        k = (int(gid[i]), str(derived[i]))
        if k not in made:
            g, rule, reason = labels[k[0]]
            made[k] = len(labels)
            labels.append((g, rule, f"{reason}; BNRIND {k[1]} derived from BASE against this row's limits (ANRLO/"
                                    "ANRHI; the baseline's own limits not given), as derive_ctcae derives it"))
            if k[0] in maxes:
                out[made[k]] = maxes[k[0]]
        gid[i] = made[k]
    return out


def open_grades(gid: np.ndarray, gmax: np.ndarray, miss: np.ndarray, labels: list[Label]
                 ) -> tuple[pl.Series, list[Label], dict[int, int]]:
    """Outcomes whose grade a missing input leaves open (a higher-grade rule UNKNOWN above the one
    that decided) become outcomes of their own: same grade and rule, the reason saying "at least
    grade N (grade M not excluded: criteria on BASE not evaluable, BASE missing)". Moved from
    ``ctcae.py`` in session 48 (module size)."""
    grade_of = np.array([-1 if g is None else g for g, _, _ in labels], dtype=np.int64)
    open_ = (grade_of[gid] >= 0) & (gmax > grade_of[gid])
    out: dict[int, int] = {}
    if open_.any():
        idx = np.flatnonzero(open_)
        combos: dict[tuple[int, int, str], int] = {}
        for i in idx:
            k = (int(gid[i]), int(gmax[i]), str(miss[i] or ""))
            if k not in combos:
                g, rule, reason = labels[k[0]]
                names = " and ".join(n.upper() for n in k[2].split(",") if n) or "an input"
                combos[k] = len(labels)
                labels.append((g, rule, (f"{reason}; at least grade {g} (grade {k[1]} not excluded: criteria on "
                                         f"{names} not evaluable, {names} missing)")))
                out[combos[k]] = k[1]
            gid[i] = combos[k]
    return pl.Series("_gid", gid, dtype=pl.Int32), labels, out


def summary_terms(tables: Sequence[Any]) -> dict[str, str]:
    """Table term -> the CTCAE term it reports under (``ctcae_term`` of a table entry, e.g.
    "Hypocalcemia (Ionized)" -> "Hypocalcemia"; review 39 R39-3); terms without one map to themselves."""
    out: dict[str, str] = {}
    for tb in tables:
        for e in tb.model.extra("terms"):
            if e.get("ctcae_term"):
                out.setdefault(str(e["term"]), str(e["ctcae_term"]))
    return out


def lab_term_worst(labs: pl.DataFrame, calcium_summary: str = "merged",
                   terms: dict[str, str] | None = None) -> pl.DataFrame:
    """Per subject and CTCAE term the worst grade of ADLB-like rows (``ATOXDSC{L,H}``,
    ``ATOXGR{L,H}``, optional ``ATOXGR{L,H}_MAX``, ``param``, ``day``): ``subject_id``, ``term``,
    ``grade`` (the highest lower grade), ``grade_max`` (the highest upper bound when above it, else
    null) and ``reason`` (merged terms only: which variant decided, e.g. "worst of Hypocalcemia
    (CACORR) grade 0, Hypocalcemia (Ionized) (CAION) grade 1 on day 5: decided by CAION").

    ``calcium_summary`` ``"merged"`` (default; CTCAE v5.0 has one term Hypocalcemia, graded on a
    corrected or an ionized calcium, and one Hypercalcemia): the "(Ionized)" rows count under the
    CTCAE term (``terms``, default :func:`summary_terms` of the shipped SI table); ``"split"``: each
    table term on its own (admiral's metadata rows). ADLB keeps its own PARAMCD and ATOXDSC."""
    if calcium_summary not in ("merged", "split"):
        raise ValueError(f"calcium_summary must be 'merged' or 'split', not {calcium_summary!r}")
    if terms is None:
        from cartlab.grading.ctcae_criteria import compile_criteria

        terms = summary_terms([compile_criteria("ctcae_v5")])
    if calcium_summary == "split":
        terms = {}
    has = set(labs.columns)
    day = pl.col("day").cast(pl.Float64) if "day" in has else pl.lit(None, dtype=pl.Float64)
    param = pl.col("param").cast(pl.String) if "param" in has else pl.lit(None, dtype=pl.String)
    rows = pl.concat([labs.select(
        pl.col("subject_id").cast(pl.String), pl.col(f"ATOXDSC{d}").cast(pl.String).alias("variant"),
        pl.col(f"ATOXGR{d}").cast(pl.Int64).alias("grade"),
        (pl.coalesce(pl.col(f"ATOXGR{d}_MAX"), pl.col(f"ATOXGR{d}")) if f"ATOXGR{d}_MAX" in has
         else pl.col(f"ATOXGR{d}")).cast(pl.Int64).alias("_upper"), param.alias("_param"), day.alias("_day"))
        for d in ("L", "H")]).filter(pl.col("variant").is_not_null())
    rows = rows.with_columns(pl.col("variant").replace(terms).alias("term"))
    # per variant: its worst row (the earliest of equal grades), named by term and param
    per_variant = (rows.sort(["grade", "_day"], descending=[True, False], nulls_last=True)
                   .group_by("subject_id", "term", "variant", maintain_order=True)
                   .agg(pl.col("grade").first(), pl.col("_upper").max(), pl.col("_param").first(), pl.col("_day").first())
                   .with_columns(pl.format("{} ({}) grade {}{}", "variant", pl.col("_param").fill_null("?"),
                                           pl.col("grade").cast(pl.String).fill_null("not evaluable"),
                                           pl.when(pl.col("grade").is_not_null() & pl.col("_day").is_not_null())
                                           .then(pl.format(" on day {}", pl.col("_day"))).otherwise(pl.lit("")))
                                 .alias("_said")))
    out = (per_variant.sort(["grade", "_day"], descending=[True, False], nulls_last=True)
           .group_by("subject_id", "term", maintain_order=True)
           .agg(pl.col("grade").max(), pl.col("_upper").max(), pl.col("_said").sort(), pl.col("_param").first(),
                pl.col("variant").n_unique().alias("_n")))
    return out.sort("term", "subject_id").select(
        "subject_id", "term", "grade",
        pl.when(pl.col("_upper") > pl.col("grade")).then(pl.col("_upper")).otherwise(None).alias("grade_max"),
        pl.when(pl.col("_n") > 1).then(pl.format("worst of {}: decided by {}", pl.col("_said").list.join(", "),
                                                 pl.col("_param").fill_null("?")))
        .otherwise(None).alias("reason"))
