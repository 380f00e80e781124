"""The fever waiver of the older CRS scales (Lee 2014, Penn, CARTOX, MSKCC): the ASTCT engine's.

The older scales grade a day as CRS when it has a fever or its fever requirement is waived (the
scale tables' default ``gate: fever_or_waiver``). Which days are waived is one clinical fact, so it
comes from the ASTCT derivation (ASTCT 2019 Table 1 footnote, :mod:`cartlab.grading.crs_waiver`,
conventions ``crs.conv.fever_waiver*`` of ``astct_crs_2019.yaml``), with the same option values:
:class:`~cartlab.grading.crs_legacy_inputs.CrsLegacyOptions` ``waiver_categories``,
``fever_waiver_scope`` and ``fever_waiver_requires_crs`` default to the analysis's ASTCT options
(session 36; before, the older scales always read the waiver from the first agent to the end of
follow-up, whatever the ASTCT options said).

* ``fever_waiver_scope="course"`` and ``fever_waiver_requires_crs=False`` (spec): the waiver runs
  from the first day a waiver agent counted toward CRS was given to the end of follow-up. This is
  :func:`cartlab.grading.crs_waiver.apply_waiver`'s own reading of that case, computed here on the
  interventions the older scales count (their ``counted_indications``, ``count_empty_indication``,
  ``first_day``), which needs no ASTCT grading; with a ``waiver_indications`` other than
  ``counted_indications`` (``crs.waiver_indications``, followed; review 40 B3) on those rows instead.
* otherwise the waivers are those of :func:`cartlab.grading.crs.derive_crs_waiver`: the ASTCT
  engine run with the analysis's CRS options, with the waiver options above and the older scales'
  ``counted_indications`` / ``waiver_indications`` / ``first_day`` (and rows without an indication left out when
  ``count_empty_indication`` is False). "episode" ends a waiver with its ASTCT CRS episode.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import polars as pl

from cartlab.grading.crs_features import counted, norm_text, norm_values
from cartlab.grading.crs_waiver import SPAN_SCHEMA
from cartlab.model import Study

if TYPE_CHECKING:
    from cartlab.grading.crs_legacy_inputs import CrsLegacyOptions

KEY = ["subject_id", "day"]
#: subject_id, w_day, w_to (null: to the end of follow-up), w_ref
_SPANS = {"subject_id": pl.String, "w_day": pl.Int64, "w_to": pl.Int64, "w_ref": pl.String}


def _course_spans(iv: pl.DataFrame, categories: tuple[str, ...]) -> pl.DataFrame:
    """Course scope, any agent (spec): per subject the first day a counted waiver agent was given
    (its earliest row in the file on that day), to the end of follow-up."""
    day = pl.col("start_day").floor().cast(pl.Int64)
    return (iv.filter(pl.col("cat").is_in(norm_values(categories))).sort(day, "i")
            .group_by("subject_id", maintain_order=True)
            .agg(day.first().alias("w_day"), pl.col("ref").first().alias("w_ref"))
            .select("subject_id", "w_day", pl.lit(None, dtype=pl.Int64).alias("w_to"), "w_ref"))


def _waiver_rows(study: Study, iv: pl.DataFrame, opts: CrsLegacyOptions) -> pl.DataFrame:
    """The intervention rows of option ``waiver_indications`` (empty indication: with
    ``count_empty_indication``), from the assessment start, shaped as ``iv`` (``cat``, ``i``, ``ref``)."""
    from cartlab.grading.common import assessment_start, interventions_from_start
    from cartlab.provenance import evidence_ref

    start = assessment_start(study, "all" if opts.first_day is None else opts.first_day)
    rows = study.interventions if start is None else interventions_from_start(study.interventions, start)
    return (rows.filter(pl.col("start_day").is_not_null()
                        & counted("indication", opts.waiver_indications, opts.count_empty_indication).fill_null(False))
            .with_row_index("i").with_columns(norm_text(pl.col("category")).fill_null("").alias("cat"),
                                              evidence_ref().alias("ref")))


def follow_astct(opts: CrsLegacyOptions) -> CrsLegacyOptions:
    """``opts`` with each option of ``FOLLOWS_ASTCT`` left None set from the ASTCT options it follows
    (:meth:`CrsLegacyOptions.astct_options`); waiver_categories: the ASTCT ones, with "antipyretic"
    when ``antipyretics_waive_fever``. Implements :meth:`CrsLegacyOptions.applied`."""
    astct = opts.astct_options()
    crs = astct.resolved()
    cats = tuple(crs["waiver_categories"]) + (("antipyretic",) if crs["antipyretics_waive_fever"] else ())
    values = {"waiver_categories": cats, "fever_waiver_scope": crs["fever_waiver_scope"],
              "fever_waiver_requires_crs": bool(crs["fever_waiver_requires_crs"]),
              "multiple_vasopressors": crs["multiple_vasopressors"],
              "absent_interventions": crs.get("absent_interventions") or "unknown",
              "fever_threshold_c": float(crs["fever_threshold_c"]),  # review 40 consistency B1
              # ASTCT's null = its counted_indications; here the older scales' own (review 40 B3)
              "waiver_indications": tuple(crs["waiver_indications"] if crs.get("waiver_indications") is not None
                                          else opts.counted_indications)}
    out = dataclasses.replace(opts, **{k: v for k, v in values.items() if getattr(opts, k) is None})
    out._crs, out._applied = astct, True
    out._waiver_categories_set = opts.waiver_categories is not None
    return out


def astct_waiver_options(opts: CrsLegacyOptions):
    """The ASTCT options the waiver is derived with: those the older scales follow
    (:meth:`CrsLegacyOptions.astct_options`), with their waiver options and the interventions they count."""
    astct = opts.astct_options()
    update = {"fever_waiver_scope": opts.fever_waiver_scope,
              "fever_waiver_requires_crs": bool(opts.fever_waiver_requires_crs),
              "counted_indications": tuple(opts.counted_indications),
              "waiver_indications": tuple(opts.waiver_indications),
              "first_day": "all" if opts.first_day is None else opts.first_day}
    if getattr(opts, "_waiver_categories_set", opts.waiver_categories is not None):
        # a list set for the older scales is their whole list (antipyretic only when it names it)
        update.update(waiver_categories=tuple(opts.waiver_categories), antipyretics_waive_fever=False)
    return dataclasses.replace(astct, **update)


def legacy_waiver(study: Study, iv: pl.DataFrame, opts: CrsLegacyOptions) -> pl.DataFrame:
    """The fever waivers of the older scales, per subject (``_SPANS``). ``study``: as given (the
    ASTCT engine applies ``first_day`` itself); ``iv``: the interventions the older scales count
    (``cat`` normalised, row order ``i``, ``ref``); ``opts``: applied (no option left None)."""
    if opts.fever_waiver_scope == "course" and not opts.fever_waiver_requires_crs:
        if tuple(opts.waiver_indications) != tuple(opts.counted_indications):  # review 40 B3: its own indications
            iv = _waiver_rows(study, iv, opts)
        return _course_spans(iv, tuple(opts.waiver_categories)).cast(_SPANS)
    from cartlab.grading.crs import derive_crs_waiver

    if not opts.count_empty_indication:  # the ASTCT engine counts rows without an indication (spec)
        n = norm_text(pl.col("indication"))
        study = dataclasses.replace(study, interventions=study.interventions.filter(
            counted("indication", opts.counted_indications, False) | ~(n.is_null() | (n == ""))))
    spans = derive_crs_waiver(study, astct_waiver_options(opts)).cast(SPAN_SCHEMA)
    return spans.select("subject_id", pl.col("waiver_from_day").alias("w_day"), pl.col("waiver_to_day").alias("w_to"),
                        pl.col("waiver_ref").alias("w_ref")).cast(_SPANS)


def waiver_days(grid: pl.DataFrame, spans: pl.DataFrame) -> pl.DataFrame:
    """Per day of ``grid`` (subject_id, day; sorted): ``waiver_active`` (a waiver of ``spans`` is in
    force: on or after its first day, on or before its last) and ``w_ref`` (the row that started it)."""
    hit = grid.select(KEY).sort(KEY).join_asof(
        spans.sort("subject_id", "w_day"), left_on="day", right_on="w_day", by="subject_id",
        strategy="backward", check_sortedness=False)
    active = pl.col("w_day").is_not_null() & (pl.col("w_to").is_null() | (pl.col("day") <= pl.col("w_to")))
    return hit.select(*KEY, active.alias("waiver_active"), pl.when(active).then(pl.col("w_ref")).alias("w_ref"))
