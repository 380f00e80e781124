"""ADaM export options and the subject's exposure (ADSL TRT01A, TRTSDT, SAFFL; ADAE TRTEMFL).

* ``AdamOptions.trt01a`` (review s38 A1): ``planned_product`` (default) - TRT01A / TRTA in TRT01P's
  terms: the planned product (``<target> CAR-T`` or the stated arm) when the subject has a CAR-T dose
  row (the dose agent when no plan is stated: no arm, no target), empty when it has none (ADaMIG ADSL: TRTxxP "Planned Treatment", TRTxxA "Actual Treatment"
  from the same treatment list, so a subject treated as planned has TRT01A = TRT01P; CDISC pilot
  ADSL: "TRT01A Placebo | TRT01P Placebo"); ``agent`` - the ``agent`` text of the subject's earliest
  CAR-T dose row (cartlab before session 38, e.g. "CAR-T" for every product).
* ``AdamOptions.saffl_unknown`` (review s38 B1): ``blank`` (default: missing is not negative) or
  ``N`` - SAFFL of a subject without a CAR-T dose row when other subjects have one (known not infused).
  Pinnacle 21 rule AD0005 ("population flags ... SAFFL ... cannot be null") rejects the blank. When the
  doses are unknown for the study (no doses.csv, no CAR-T row for any subject) SAFFL stays blank whatever
  the option says: the subject is taken as infused (TRTSDT, ADAE TRTEMFL), not as outside the safety
  population (review38 diff2 B4).
* ``AdamOptions.aeout_unobserved`` (review 40 B1): ``unknown`` (default) or ``not_resolved`` - ADAE
  AEOUT of a CRS/ICANS episode not seen resolved whose data stop before the last follow-up
  (io/adam/adae.py). ``AdamOptions.adlb_params`` (review 40 B2): ``all`` (default) or ``graded``.
* Exposure (review s38 B2), the response engine's reading
  (:func:`cartlab.response.marrow_inputs.infusion_status`): when other subjects have a CAR-T dose row,
  a subject without one was not infused - TRTSDT/TRTSDTM/TRTEDT empty, SAFFL blank (or N), its ADAE
  TRTEMFL empty. When the doses are unknown for the study (no doses.csv, or no CAR-T row for any
  subject), day 0 is the infusion (study-format "Time") and TRTSDT is the infusion date, as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Literal

import polars as pl

from cartlab.criteria.options import CriteriaOptions
from cartlab.errors import InputError

__all__ = ["ADAM_SIG_DIGITS", "AdamOptions", "adam_options", "change", "exposure"]

#: significant digits of the derived numbers the export computes by arithmetic (CHG, PCHG, ARELDY ...):
#: 15, R's ``signif(x, 15)`` that admiral and cartlab's criteria language compare at
#: (cartlab.criteria.signif, criteria/ctcae_v5.yaml ``signif: 15``), so 3.6 -> 4.5 is PCHG 25, not 24.999999999999996
ADAM_SIG_DIGITS = 15



class AdamOptions(CriteriaOptions):
    """Options of the ADaM export (docs/interop/adam.md "Options"); the package's one options base
    class (frozen, validated, unknown options refused with a hint)."""

    trt01a: Literal["planned_product", "agent"] = "planned_product"
    saffl_unknown: Literal["blank", "N"] = "blank"
    #: AEOUT of a CRS/ICANS episode whose data stop before the last follow-up (review 40 B1): UNKNOWN
    #: (CDISC codelist OUT C66768) or NOT RECOVERED/NOT RESOLVED (cartlab's session-40 reading)
    aeout_unobserved: Literal["unknown", "not_resolved"] = "unknown"
    #: ADLB parameters (review 40 B2): every lab observation (all) or the CTCAE-graded ones only
    adlb_params: Literal["all", "graded"] = "all"


def adam_options(options=None, analysis=None) -> AdamOptions:
    """``options`` (an :class:`AdamOptions` or a mapping of its fields), else the analysis' ``adam``
    options when it has them, else the defaults."""
    if options is None and analysis is not None:
        options = getattr(getattr(analysis, "options", None), "adam", None)
    if options is None:
        return AdamOptions()
    if isinstance(options, AdamOptions):
        return options
    if isinstance(options, Mapping):
        known = [f.name for f in fields(AdamOptions)]
        bad = [k for k in options if k not in known]
        if bad:
            raise InputError(f"unknown ADaM option(s) {', '.join(bad)}; the options are {', '.join(known)}")
        return AdamOptions(**dict(options))
    return AdamOptions(**{f.name: getattr(options, f.name) for f in fields(AdamOptions)})


def exposure(study, dates: pl.DataFrame, opts: AdamOptions) -> pl.DataFrame:
    """``dates`` (USUBJID, TRTSDT, TRTSDTM, TRT01P, TRT01A = first CAR-T agent, TRTEDT) with the
    options applied: ``_anchor`` (the day-0 date, for ADT), ``_exposed`` (False: not infused by the
    response engine's reading; null: doses unknown for the study), TRT01A per ``opts.trt01a``,
    TRTSDT/TRTSDTM/TRTEDT empty when not infused, SAFFL (Y / blank or N)."""
    from cartlab.response.marrow_inputs import infusion_status

    infused, _why = infusion_status(study)
    has_dose = pl.col("TRT01A").is_not_null()
    if infused is None:  # doses unknown for the study: day 0 is the infusion (as before session 38)
        exposed = pl.when(has_dose).then(pl.lit(True)).otherwise(pl.lit(None, dtype=pl.Boolean))
    else:
        exposed = has_dose | pl.col("USUBJID").is_in(sorted(infused))
    f = dates.with_columns(pl.col("TRTSDT").alias("_anchor"), exposed.alias("_exposed"))
    not_infused = pl.col("_exposed").eq(False).fill_null(False)
    # a treated subject whose plan is not stated (no arm, no target) keeps the dose agent: an empty
    # TRT01A would read as not treated
    actual = (pl.when(has_dose).then(pl.coalesce(pl.col("TRT01P"), pl.col("TRT01A")))
              if opts.trt01a == "planned_product" else pl.col("TRT01A"))
    # saffl_unknown applies to a subject known not infused; with the doses unknown for the study the
    # subject is taken as infused (TRTSDT kept, TRTEMFL Y), so its SAFFL is blank, never N (review38 diff2 B4)
    saffl = (pl.when(has_dose).then(pl.lit("Y"))
             .when(not_infused).then(pl.lit("N") if opts.saffl_unknown == "N" else pl.lit(None, dtype=pl.String))
             .otherwise(pl.lit(None, dtype=pl.String)))
    return f.with_columns(
        actual.alias("TRT01A"), saffl.alias("SAFFL"),
        *[pl.when(not_infused).then(None).otherwise(pl.col(c)).alias(c) for c in ("TRTSDT", "TRTSDTM", "TRTEDT")])


def change(aval: pl.Expr, base: pl.Expr) -> pl.Expr:
    """CHG = AVAL - BASE on the operands' 15-significant-digit grid (review s38 B3): the difference
    rounded to the decimal place of the 15th significant digit of the larger operand, so 36.1 - 36.0 is
    0.1 (not 0.10000000000000142) and 4.5 - 3.6 is 0.9; null when either is null."""
    import numpy as np

    def _grid(s: pl.Series) -> pl.Series:
        a = s.struct.field("a").cast(pl.Float64).to_numpy()
        b = s.struct.field("b").cast(pl.Float64).to_numpy()
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            d = a - b
            m = np.maximum(np.abs(a), np.abs(b))
            e = np.where(m > 0, np.floor(np.log10(np.where(m > 0, m, 1.0))), 0.0)
            k = np.clip(ADAM_SIG_DIGITS - 1 - e, -300, 300)
            p = np.power(10.0, np.abs(k))
            r = np.where(k > 0, np.round(d * p) / p, np.round(d / p) * p)
            r = np.where(np.isfinite(d), r, d)
        out = pl.Series(s.name, r, dtype=pl.Float64, nan_to_null=False)
        return out.set(s.struct.field("a").is_null() | s.struct.field("b").is_null(), None)

    return pl.struct(aval.alias("a"), base.alias("b")).map_batches(_grid, return_dtype=pl.Float64, is_elementwise=True)
