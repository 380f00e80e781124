"""Older CRS grading scales: Lee 2014 (NCI consensus), Penn, CARTOX/MDACC and MSKCC.

Re-grading a study on the pre-2019 scales makes legacy trial data comparable with ASTCT 2019 and
shows how much the choice of scale changes a patient's grade (Pennisi et al., Blood Adv 2020).

Three layers, all pure functions over the canonical :class:`~cartlab.model.Study`, on frames:

1. :func:`crs_daily_inputs` (:mod:`cartlab.grading.crs_legacy_inputs`): per subject and calendar
   day, every input the four scales use, over the daily layer shared with the ASTCT engine
   (:mod:`cartlab.grading.crs_features`) and the vasopressor time course
   (:mod:`cartlab.grading.crs_vaso_course`). An input that cannot be known is null with a reason.
2. :func:`grade_crs_scale` (:mod:`cartlab.grading.crs_legacy_grade`): a scale is a small criteria
   table (``criteria/crs_<scale>.yaml``) evaluated by :mod:`cartlab.criteria`: per day
   ``grade_min`` is the highest grade whose rule surely holds, ``grade_max`` the highest whose rule
   surely or possibly holds, and ``grade`` is set only when they agree. ``missing_inputs`` names
   what would settle a range.
3. :func:`crs_cross_scale` / :func:`crs_cross_scale_cohort` put the per-subject maxima of every scale
   side by side (optionally with the ASTCT grade from the ASTCT engine) and summarise agreement.

Time convention: see :class:`CrsLegacyOptions` (``day_precision``). Every derived grade names the
rule that fired (``rule``), a human ``reason`` and the ``evidence`` rows (``"<file>:<row>"``).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import combinations

import polars as pl

from cartlab._deprecated import renamed
from cartlab.criteria import rule_status
from cartlab.grading.absent_interventions import interventions_unknown
from cartlab.grading.crs_legacy_absent import for_maximum as legacy_for_maximum
from cartlab.grading.crs_legacy_absent import open_absent_interventions, panel_note
from cartlab.grading.crs_legacy_grade import GRADE_SCHEMA, grade_crs_scale, scale_table
from cartlab.grading.crs_legacy_inputs import LABELS, SCALES, CrsLegacyOptions, derive_crs_daily_inputs
from cartlab.grading.crs_legacy_oxygen import zero_flow_notes
from cartlab.grading.crs_vaso_course import VASOPRESSOR_TABLE  # noqa: F401  (kept importable from here)
from cartlab.model import Study
from cartlab.provenance import EVIDENCE

__all__ = [
    "SCALES",
    "CrsLegacyOptions",
    "derive_crs_cross_scale",
    "derive_crs_cross_scale_cohort",
    "derive_crs_daily_inputs",
    "derive_crs_legacy_daily",
    "derive_crs_legacy_subject",
    "grade_crs_scale",
    "organ_grades_from_adlb",
    "scale_table",
]


def derive_crs_legacy_daily(
    study: Study,
    scales: Iterable[str] = SCALES,
    *,
    organ_grades: pl.DataFrame | None = None,
    hospitalization: pl.DataFrame | None = None,
    options: CrsLegacyOptions | None = None,
    for_maximum: bool = False,
) -> pl.DataFrame:
    """Daily grades of several legacy scales (long format: one row per subject, day and scale);
    ``for_maximum``: only the days the subject maximum reads (see :func:`grade_crs_scale`)."""
    opts = (options or CrsLegacyOptions()).applied()
    inputs = derive_crs_daily_inputs(study, opts, organ_grades=organ_grades, hospitalization=hospitalization)
    # review 38 A1: an absent interventions.csv opens days a settled grade would hide, so the subject
    # maximum's day filter runs after the opening
    absent = interventions_unknown(study, opts.absent_interventions)
    frames = []
    for s in scales:
        g = grade_crs_scale(inputs, s, opts, for_maximum=for_maximum and not absent)
        g = panel_note(open_absent_interventions(g, inputs, study, opts, s), inputs, opts, s)
        frames.append(legacy_for_maximum(g) if for_maximum and absent else g)
    if not frames:
        return pl.DataFrame(schema=GRADE_SCHEMA)
    # an oxygen row at 0 L/min is no oxygen given: named on the days graded (crs.conv.zero_flow_oxygen)
    notes = zero_flow_notes(study.interventions, opts.counted_indications, opts.count_empty_indication)
    out = pl.concat(frames)
    if notes.height == 0:
        return out
    return (out.join(notes, on=["subject_id", "day"], how="left", maintain_order="left")
            .with_columns(pl.when(pl.col("zero_flow_note").is_not_null())
                          .then(pl.concat_str("reason", pl.lit("; "), "zero_flow_note")).otherwise(pl.col("reason"))
                          .alias("reason")).drop("zero_flow_note"))


SUBJECT_SCHEMA: dict[str, pl.DataType] = {
    "subject_id": pl.String,
    "scale": pl.String,
    "grade": pl.Int64,
    "grade_min": pl.Int64,
    "grade_max": pl.Int64,
    "day": pl.Int64,
    "rule": pl.String,
    "reason": pl.String,
    "missing_inputs": pl.List(pl.String),
    "possible_rules": pl.List(pl.String),
    "evidence": EVIDENCE,
    # session 34: what the scale could not assess, on the days it could raise the maximum
    "not_assessed": pl.String,
}
#: shown per input in ``not_assessed`` (as in the reason's "could be up to grade ... on day(s)")
SHOWN_DAYS = 8


def _label(scale: pl.Expr) -> pl.Expr:
    return scale.replace_strict(LABELS, default=scale, return_dtype=pl.String)


def _not_assessed(daily: pl.DataFrame) -> pl.DataFrame:
    """``subject_id, scale, not_assessed``: per input a scale could not assess (the daily grades'
    ``missing_inputs``) on the days that could raise the subject's maximum, with those days:
    "refractoriness of hypotension (not recorded) on day 3"; inputs in alphabetical order,
    "; "-separated. Subjects and scales without such a day get no row."""
    days = pl.col("days")
    shown = days.list.head(SHOWN_DAYS).cast(pl.List(pl.String)).list.join(", ")
    return (daily.filter(pl.col("grade_max") > pl.col("grade_min").max().over("subject_id", "scale"))
            .select("subject_id", "scale", "day", pl.col("missing_inputs").alias("m"))
            .explode("m").drop_nulls("m")
            .group_by("subject_id", "scale", "m").agg(pl.col("day").unique().sort().alias("days"))
            .sort("subject_id", "scale", "m")
            .select("subject_id", "scale", pl.format(
                "{} on day{} {}{}", pl.col("m"),
                pl.when(days.list.len() > 1).then(pl.lit("s")).otherwise(pl.lit("")), shown,
                pl.when(days.list.len() > SHOWN_DAYS).then(pl.lit(" ...")).otherwise(pl.lit(""))).alias("t"))
            .group_by("subject_id", "scale", maintain_order=True)
            .agg(pl.col("t").str.join("; ").alias("not_assessed")))


def derive_crs_legacy_subject(daily: pl.DataFrame, subject_ids: Iterable[str] | None = None) -> pl.DataFrame:
    """Per subject and scale, the maximum over the course of the daily grades (or ranges).

    ``grade_min``/``grade_max`` are the maxima of the daily bounds; ``grade`` is set when they agree.
    ``day``/``rule``/``reason``/``evidence`` come from the first day reaching ``grade_min``;
    ``missing_inputs`` gathers what is unknown on the days that could raise the maximum, and
    ``not_assessed`` names each with those days ("" when none; session
    34). Subjects in ``subject_ids`` without any graded day get ``grade_min`` 0, an unknown
    ``grade_max`` and ``not_assessed`` "daily data (no graded day)".
    """
    gmin, gmax = pl.col("grade_min").max(), pl.col("grade_max").max()
    first = pl.col("grade_min") == gmin
    raising = pl.col("grade_max") > gmin
    seen = (daily.sort("subject_id", "scale", "day")
            .group_by("subject_id", "scale", maintain_order=True)
            .agg(gmin.alias("grade_min"), gmax.alias("grade_max"),
                 pl.col("day").filter(first).first().alias("first_day"),
                 pl.col("rule").filter(first).first().alias("rule"),
                 pl.col("reason").filter(first).first().alias("first_reason"),
                 pl.col("evidence").filter(first).first().alias("first_evidence"),
                 pl.col("day").filter(raising).alias("raising_days"),
                 pl.col("missing_inputs").filter(raising).explode().drop_nulls().unique().sort().alias("missing_inputs"),
                 pl.col("possible_rules").filter(raising).explode().drop_nulls().unique().sort().alias("possible_rules"),
                 pl.col("evidence").filter(raising).explode().drop_nulls().alias("raising_evidence")))
    days = pl.col("raising_days")
    shown = days.list.head(8).cast(pl.List(pl.String)).list.join(", ")
    positive = pl.col("grade_min") > 0
    reason = pl.concat_str([
        pl.when(positive).then(pl.format("max on day {}: {}", pl.col("first_day"), pl.col("first_reason")))
        .otherwise(pl.format("{} grade 0 on every graded day", _label(pl.col("scale")))),
        pl.when(days.list.len() > 0).then(pl.format(
            "; could be up to grade {} on day(s) {}{}", pl.col("grade_max"), shown,
            pl.when(days.list.len() > 8).then(pl.lit(" ...")).otherwise(pl.lit("")))).otherwise(pl.lit("")),
    ])
    empty = pl.lit([], dtype=EVIDENCE)
    evidence = pl.concat_list(pl.when(positive).then(pl.col("first_evidence")).otherwise(empty),
                              pl.col("raising_evidence")).list.unique(maintain_order=True)
    out = seen.select(
        "subject_id", "scale", pl.when(pl.col("grade_min") == pl.col("grade_max")).then(pl.col("grade_min")).alias("grade"),
        "grade_min", "grade_max", pl.when(positive).then(pl.col("first_day")).alias("day"), "rule",
        reason.alias("reason"), "missing_inputs", "possible_rules", evidence.alias("evidence"))
    out = (out.join(_not_assessed(daily), on=["subject_id", "scale"], how="left", maintain_order="left")
           .with_columns(pl.col("not_assessed").fill_null("")))
    scales = daily["scale"].unique(maintain_order=True).to_list() or list(SCALES)
    ids = pl.DataFrame({"subject_id": list(dict.fromkeys(subject_ids or []))}, schema={"subject_id": pl.String})
    none = (ids.join(pl.DataFrame({"scale": scales}, schema={"scale": pl.String}), how="cross")
            .join(out.select("subject_id", "scale"), on=["subject_id", "scale"], how="anti")
            .select("subject_id", "scale", pl.lit(None, dtype=pl.Int64).alias("grade"), pl.lit(0).alias("grade_min"),
                    pl.lit(None, dtype=pl.Int64).alias("grade_max"), pl.lit(None, dtype=pl.Int64).alias("day"),
                    pl.format("{}.no_data", pl.col("scale")).alias("rule"),
                    pl.format("{}: no graded day (no temperature, blood pressure, support, organ or event data)",
                              _label(pl.col("scale"))).alias("reason"),
                    pl.lit(["daily data"]).alias("missing_inputs"), pl.lit([], dtype=pl.List(pl.String)).alias("possible_rules"),
                    empty.alias("evidence"), pl.lit("daily data (no graded day)").alias("not_assessed")))
    return pl.concat([out.cast(SUBJECT_SCHEMA), none.cast(SUBJECT_SCHEMA)]).sort("subject_id", "scale")


# --------------------------------------------------------------------------------------------------
# cross-scale comparison


def _bounds(scale: str, astct_max: bool = True) -> tuple[pl.Expr, pl.Expr]:
    """(lowest, highest) possible grade of a subject on ``scale``. ASTCT: ``crs_grade_astct`` up to
    ``crs_grade_astct_max`` (what a missing input - a temperature, an oxygen flow - could have made
    it; ``astct_max`` False: a table without that column, the grade alone); not evaluable = 0-?."""
    if scale == "astct":
        g = pl.col("crs_grade_astct")
        hi = pl.max_horizontal(g, pl.col("crs_grade_astct_max")) if astct_max else g
        # the lower bound: crs_grade_astct_min (below the grade when events.csv was not given, review 40 A1)
        lo = pl.coalesce(pl.col("crs_grade_astct_min"), g) if astct_max else g
        return pl.coalesce(lo, pl.lit(0)), pl.when(g.is_not_null()).then(hi)
    return pl.col(f"crs_grade_{scale}_min"), pl.col(f"crs_grade_{scale}_max")


def _same_all(keys: list[str], astct_max: bool = True) -> pl.Expr:
    """True: every scale surely gives the same grade; False: they surely differ; null: unknown."""
    if not keys:
        return pl.lit(False)
    lo, hi = zip(*(_bounds(k, astct_max) for k in keys))
    points = pl.all_horizontal([a == b for a, b in zip(lo, hi)])
    return (pl.when(pl.any_horizontal([b.is_null() for b in hi])).then(None)
            .when(points).then(pl.min_horizontal(lo) == pl.max_horizontal(lo))
            .when(pl.max_horizontal(lo) > pl.min_horizontal(hi)).then(False)
            .otherwise(None).cast(pl.Boolean))


def _presence(scale: str, astct_max: bool = True) -> pl.Expr:
    """CRS present (grade >= 1) True / False, or null when the range leaves it open."""
    lo, hi = _bounds(scale, astct_max)
    return pl.when(lo >= 1).then(True).when(hi == 0).then(False).otherwise(None).cast(pl.Boolean)


#: subjects graded at a time by :func:`derive_crs_cross_scale` (the result does not depend on it)
BATCH_SIZE = 2000


def derive_crs_cross_scale(
    study: Study,
    astct: pl.DataFrame | None = None,
    organ_grades: pl.DataFrame | None = None,
    *,
    hospitalization: pl.DataFrame | None = None,
    options: CrsLegacyOptions | None = None,
    scales: Iterable[str] = SCALES,
    batch_size: int | None = BATCH_SIZE,
) -> pl.DataFrame:
    """One row per subject: the maximum CRS grade (and range) on every legacy scale, side by side.

    Columns per scale ``s``: ``crs_grade_<s>`` (null when a range), ``crs_grade_<s>_min``,
    ``crs_grade_<s>_max``, ``crs_<s>_missing``, ``crs_<s>_rule``, ``crs_<s>_reason``,
    ``crs_<s>_day``, ``crs_<s>_evidence``, ``crs_<s>_possible_rules`` (the rules that could give the
    upper grade, "; "-joined), ``crs_<s>_rule_status_max`` (the least verified status of the rule
    and those rules; review 38 B3), ``crs_<s>_not_assessed`` (the inputs the scale could not
    assess on the days they could raise the subject's maximum, with those days, from the daily
    grades' ``missing_inputs``; "" when none). ``not_assessed`` puts
    them together, "<scale>: <text>" joined by " | " ("" when no scale lacks anything; session 34).
    With ``astct`` (``subject_id, crs_grade_astct`` and
    optionally ``crs_grade_astct_max``, from the ASTCT engine's summary) its grade is added as
    ``crs_grade_astct``, ``crs_grade_astct_min`` and ``crs_grade_astct_max`` (the grade a missing input
    could have made it; = ``crs_grade_astct`` when not given): ASTCT is a range when min and max differ
    (e.g. a nasal cannula without a flow, 2-3). Unlike ``crs_grade_<s>`` of the other scales (empty
    for a range), ``crs_grade_astct`` is ASTCT's summary grade, the range's lower bound
    (= ``crs_grade_astct_min``), as in ``crs_summary``; compare scales with the ``_min`` / ``_max``
    columns. ``same_grade_all_scales`` is True/False when settled by the ranges, null
    otherwise.

    Every subject is graded on its own rows, so a large study is graded ``batch_size`` subjects at a
    time (None: all at once); the result is the same and the peak memory lower (a 10,000-subject
    analysis: 12.4 against 13.3 GiB; no speed-up confirmed by benchmarks/bench_analyze.py).
    """
    scales = tuple(scales)
    ids = study.subject_ids
    if batch_size is not None and len(ids) > batch_size:
        parts = []
        for k in range(0, len(ids), batch_size):
            batch = ids[k:k + batch_size]
            mine = pl.col("subject_id").is_in(batch)
            parts.append(derive_crs_cross_scale(
                study.subset(batch), None if astct is None else astct.filter(mine),
                None if organ_grades is None else organ_grades.filter(mine),
                hospitalization=None if hospitalization is None else hospitalization.filter(mine),
                options=options, scales=scales, batch_size=None))
        return pl.concat(parts)
    daily = derive_crs_legacy_daily(study, scales, organ_grades=organ_grades, hospitalization=hospitalization,
                             options=options, for_maximum=True)
    subj = derive_crs_legacy_subject(daily, study.subject_ids)
    base = pl.DataFrame({"subject_id": study.subject_ids}, schema={"subject_id": pl.String})
    if astct is not None:
        top = pl.col("crs_grade_astct_max") if "crs_grade_astct_max" in astct.columns else pl.col("crs_grade_astct")
        # crs_grade_astct is ASTCT's summary grade, the LOWER bound (the ASTCT convention: the grade the
        # recorded inputs prove), not empty for a range as crs_grade_<legacy scale> is; the explicit
        # crs_grade_astct_min / _max give ASTCT the same range columns as the other scales (review 37 B3)
        a = astct.select(pl.col("subject_id").cast(pl.String), pl.col("crs_grade_astct").cast(pl.Int64),
                         pl.col("crs_grade_astct_min" if "crs_grade_astct_min" in astct.columns
                                else "crs_grade_astct").cast(pl.Int64).alias("crs_grade_astct_min"),
                         top.cast(pl.Int64).alias("crs_grade_astct_max"))
        base = base.join(a, on="subject_id", how="left", maintain_order="left")
    for s in scales:
        part = subj.filter(pl.col("scale") == s).select(
            "subject_id",
            pl.col("grade").alias(f"crs_grade_{s}"),
            pl.col("grade_min").alias(f"crs_grade_{s}_min"),
            pl.col("grade_max").alias(f"crs_grade_{s}_max"),
            pl.col("missing_inputs").alias(f"crs_{s}_missing"),
            pl.col("rule").alias(f"crs_{s}_rule"),
            pl.col("reason").alias(f"crs_{s}_reason"),
            pl.col("day").alias(f"crs_{s}_day"),
            pl.col("evidence").alias(f"crs_{s}_evidence"),
            pl.col("not_assessed").alias(f"crs_{s}_not_assessed"),
            pl.col("possible_rules").list.join("; ").alias(f"crs_{s}_possible_rules"),
        )
        # review 38 B3: the least verified status of the rule and of the rules that could raise it
        worst = {v: rule_status(v) for v in part.select(pl.concat_str(
            f"crs_{s}_rule", f"crs_{s}_possible_rules", separator="; ", ignore_nulls=True)).to_series().unique().drop_nulls()}
        part = part.with_columns(pl.concat_str(f"crs_{s}_rule", f"crs_{s}_possible_rules", separator="; ", ignore_nulls=True)
                                 .replace_strict(worst, default=None, return_dtype=pl.String).alias(f"crs_{s}_rule_status_max"))
        base = base.join(part, on="subject_id", how="left", maintain_order="left")
    keys = list(scales) + (["astct"] if astct is not None else [])
    labelled = [pl.when(pl.col(f"crs_{s}_not_assessed") != "").then(pl.format(f"{LABELS[s]}: {{}}", pl.col(f"crs_{s}_not_assessed")))
                for s in scales]
    together = pl.concat_str(labelled, separator=" | ", ignore_nulls=True) if labelled else pl.lit("")
    return base.with_columns(_same_all(keys).alias("same_grade_all_scales"), together.fill_null("").alias("not_assessed"))


def _pair(a: str, b: str, astct_max: bool = True) -> list[pl.Expr]:
    (alo, ahi), (blo, bhi) = _bounds(a, astct_max), _bounds(b, astct_max)
    settled = ahi.is_not_null() & bhi.is_not_null() & (alo == ahi) & (blo == bhi)
    pa, pb = _presence(a, astct_max), _presence(b, astct_max)
    both = pa.is_not_null() & pb.is_not_null()
    n = lambda e: e.fill_null(False).sum().cast(pl.Int64)
    return [pl.lit(a).alias("scale_a"), pl.lit(b).alias("scale_b"), pl.len().cast(pl.Int64).alias("n_subjects"),
            n(settled).alias("n_evaluable"), n(settled & (alo == blo)).alias("n_same"),
            n(settled & (alo > blo)).alias("n_a_higher"), n(settled & (alo < blo)).alias("n_a_lower"),
            n(~settled.fill_null(False)).alias("n_undetermined"),
            n(both).alias("n_presence_evaluable"), n(both & (pa == pb)).alias("n_presence_agree")]


PAIRWISE_SCHEMA: dict[str, pl.DataType] = {
    "scale_a": pl.String, "scale_b": pl.String, "n_subjects": pl.Int64, "n_evaluable": pl.Int64, "n_same": pl.Int64,
    "n_a_higher": pl.Int64, "n_a_lower": pl.Int64, "n_undetermined": pl.Int64, "prop_same": pl.Float64,
    "n_presence_evaluable": pl.Int64, "n_presence_agree": pl.Int64, "prop_presence_agree": pl.Float64}


def _share(num: str, den: str) -> pl.Expr:
    return pl.when(pl.col(den) > 0).then(pl.col(num) / pl.col(den))


def derive_crs_cross_scale_cohort(study: Study, *args, **kwargs) -> dict[str, pl.DataFrame]:
    """Cohort concordance of the scales (Pennisi 2020 / JULIET-style); the arguments are
    :func:`derive_crs_cross_scale`'s (``astct``, ``organ_grades``, ``hospitalization``, ``options``,
    ``scales`` ...).

    Returns ``{"subjects": derive_crs_cross_scale(...), "pairwise": ..., "summary": ...}``.
    ``pairwise`` has one row per pair of scales (ASTCT included when given): subjects whose grades on
    both scales are settled (``n_evaluable``), concordant (``n_same``), higher / lower on the first
    scale, undetermined, and agreement on the *presence* of CRS (grade >= 1). ``summary`` has the
    proportion of subjects with the same grade on every scale (Pennisi 2020: 25% for CRS) and with
    the same presence of CRS on every scale (99%).
    """
    kwargs["scales"] = tuple(kwargs.get("scales", SCALES))
    subj = derive_crs_cross_scale(study, *args, **kwargs)
    return {"subjects": subj, **derive_crs_concordance(subj, kwargs["scales"])}


def derive_crs_concordance(subj: pl.DataFrame, scales: Iterable[str] = SCALES) -> dict[str, pl.DataFrame]:
    """The cohort part of :func:`derive_crs_cross_scale_cohort` from its per-subject table ``subj``
    (:func:`derive_crs_cross_scale`): ``{"pairwise": ..., "summary": ...}``; ASTCT is one of the
    scales compared when ``subj`` has ``crs_grade_astct`` (a range up to ``crs_grade_astct_max``
    when that column is there: such a subject is undetermined against a single grade)."""
    scales = tuple(scales)
    keys = list(scales) + (["astct"] if "crs_grade_astct" in subj.columns else [])
    top = "crs_grade_astct_max" in subj.columns
    if top and "crs_grade_astct_min" not in subj.columns:  # a table from before review 40 A1: min = grade
        subj = subj.with_columns(pl.col("crs_grade_astct").alias("crs_grade_astct_min"))
    pairs = [subj.select(_pair(a, b, top)).select(
        "scale_a", "scale_b", "n_subjects", "n_evaluable", "n_same", "n_a_higher", "n_a_lower", "n_undetermined",
        _share("n_same", "n_evaluable").alias("prop_same"), "n_presence_evaluable", "n_presence_agree",
        _share("n_presence_agree", "n_presence_evaluable").alias("prop_presence_agree"),
    ).cast(PAIRWISE_SCHEMA) for a, b in combinations(keys, 2)]
    pairwise = pl.concat(pairs) if pairs else pl.DataFrame(schema=PAIRWISE_SCHEMA)
    pres = [_presence(k, top) for k in keys]
    agree = (pl.when(pl.any_horizontal([p.is_null() for p in pres])).then(None)
             .otherwise(pl.all_horizontal(pres) | ~pl.any_horizontal(pres)).cast(pl.Boolean)) if pres else pl.lit(False)
    same = pl.col("same_grade_all_scales")
    counts = subj.select(pl.len().cast(pl.Float64).alias("n"), same.is_not_null().sum().cast(pl.Float64).alias("settled"),
                         same.fill_null(False).sum().cast(pl.Float64).alias("same"),
                         agree.is_not_null().sum().cast(pl.Float64).alias("p_settled"),
                         agree.fill_null(False).sum().cast(pl.Float64).alias("p_all")).row(0, named=True)
    ratio = lambda a, b: (a / b) if b else None
    summary = pl.DataFrame({
        "metric": ["n_subjects", "n_same_grade_settled", "n_same_grade_all_scales", "prop_same_grade_all_scales",
                   "n_presence_settled", "n_presence_agree_all_scales", "prop_presence_agree_all_scales"],
        "value": [counts["n"], counts["settled"], counts["same"], ratio(counts["same"], counts["settled"]),
                  counts["p_settled"], counts["p_all"], ratio(counts["p_all"], counts["p_settled"])],
        "scales": [", ".join(keys)] * 7,
    }, schema={"metric": pl.String, "value": pl.Float64, "scales": pl.String})
    return {"pairwise": pairwise, "summary": summary}


def organ_grades_from_adlb(adlb: pl.DataFrame) -> pl.DataFrame:
    """The ``organ_grades`` input of the legacy scales from the CTCAE engine's ADLB frame.

    One row per graded lab observation: ``organ`` = the param code (the scales' ``organ_vocabulary``
    excludes the haematological ones), ``grade`` = |ATOXGR|, ``is_transaminase`` for ALT/AST, the
    ADLB row's evidence, and ``term`` / ``value`` / ``unit`` (the CTCAE term, AVAL, AVALU: a grade's
    reason names the lab that raised it). A value CTCAE could not grade for want of an input ("not
    gradable": its reference range missing) has a null grade: the scales then read that organ's
    grade as unknown, not as 0 (missing is not negative).
    """
    gradable = pl.col("ATOXGR").is_not_null() | pl.col("grade_reason").cast(pl.String).str.contains("not gradable", literal=True)
    return adlb.lazy().filter(gradable & pl.col("day").is_not_null()).select(
        "subject_id", "day", pl.col("param").alias("organ"), pl.col("ATOXGR").abs().alias("grade"),
        pl.col("param").is_in(["ALT", "AST"]).alias("is_transaminase"), "evidence",
        pl.col("term").cast(pl.String), pl.col("AVAL").cast(pl.Float64).alias("value"),
        pl.col("AVALU").cast(pl.String).alias("unit"),
    ).collect()  # lazy: only the columns used are filtered (ADLB is wide and long)


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
__getattr__ = renamed(
    __name__, "crs_cross_scale", "crs_cross_scale_cohort", "crs_daily_inputs", "crs_legacy_daily",
    "crs_legacy_subject")
