"""ASTCT 2019 ICANS grading from ICE/CAPD scores, level of consciousness and neurological events.

Lee DW et al., Biol Blood Marrow Transplant 2019;25(4):625-638, Tables 3-5; rules in
``criteria/astct_icans_2019.yaml``. ICE is used from age 12, CAPD below (whichever is recorded
when the age is missing); events attributed to another cause are excluded (their day keeps a
row naming them). A day with no ICE/CAPD score and no level of consciousness is a range up to 4;
conventions in the criteria table (icans.conv.*).

>>> from cartlab.datasets import seed_case
>>> derive_icans_summary(seed_case())["icans_grade_astct"].to_list()
[0]
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Literal

import polars as pl
from pydantic import Field, field_validator

from cartlab._deprecated import renamed
from cartlab.criteria import CriteriaOptions, decision, load_table
from cartlab.criteria.compile import Range
from cartlab.criteria.model import Leaf
from cartlab.errors import SubjectsWarning
from cartlab.grading.common import assessment_start, last_covered_day, rows_from_start
from cartlab.grading.crs import assessed_days, episodes
from cartlab.grading.crs_death_reading import name_attached_death
from cartlab.grading.icans_episodes import END_NOTE, episode_ends, free_day, open_absent_events, resolution_summary
from cartlab.io.schema import ATTRIBUTIONS
from cartlab.model import Study
from cartlab.provenance import EVIDENCE, evidence_ref

#: feature of the criteria table -> the input a missing value stands for (``missing_inputs``)
INPUTS = {"ice_min": "ICE/CAPD"}
#: the day's ICE minimum and CAPD maximum as whole-number intervals (a censored score such as "<3"
#: is 0-2); the criteria compile TRUE when a rule holds for every score of the interval
BINDINGS = {"ice_min": Range("ice_lo", "ice_hi"), "capd_max": Range("capd_lo", "capd_hi")}
#: the range of each score (ICE 0-10, ASTCT 2019 Table 3; CAPD 0-32, Table 5)
SCORE_RANGE = {"ICE": (0, 10), "CAPD": (0, 32)}


def _needs_loc(table) -> list[tuple[float, int]]:
    """(ICE score, grade) of the ICE rows that also need the level of consciousness (ASTCT 2019 Table 4:
    "ICE 0 and unarousable" = 4), read from the criteria table."""
    out = []
    for r in table.rule_set("ice"):
        leaves = [c for c in r.when if isinstance(c, Leaf)]
        ice = [c.value for c in leaves if c.feature == "ice_min" and c.op == "=="]
        if r.grade is not None and ice and any(c.feature == "loc_level" for c in leaves):
            out.append((ice[0], r.grade))
    return out


class IcansOptions(CriteriaOptions):
    """Options of ASTCT ICANS grading; ``None`` means the criteria table's default."""

    ice_min_age_years: int | float | None = Field(default=None, ge=0)
    excluded_attributions: tuple[str, ...] | None = None
    capd_subjects: tuple[str, ...] | None = None
    unattributed_death: Literal["during_icans", "never"] | None = None
    unattributed_death_reading: Literal["range", "grade5"] | None = None
    loc_missing_with_score: Literal["not_depressed", "rousable"] | None = None
    ventilated_loc: Literal["grade", "range"] | None = None
    episode_gap_days_count: Literal["any", "assessed_free"] | None = None
    first_day: Literal["infusion", "all"] | float | None = None
    absent_events: Literal["unknown", "none_happened"] | None = None
    assessment_window: tuple[int | float | None, int | float | None] | None = None
    assessment_end_events: tuple[str, ...] | None = None
    episode_join_gap_days: int = Field(default=1, ge=0, description="ICANS days separated by at most this many days "
                                       "without ICANS form one episode (as :func:`cartlab.grading.crs.episodes`)")
    criteria: str = "astct_icans_2019"

    @field_validator("excluded_attributions", mode="before")
    @classmethod
    def _attributions(cls, v):
        """The events.csv attribution vocabulary, read case-insensitively as the folder reader reads the
        data ('Other' is 'other'); a value outside it is refused, not matched to nothing (review 46 F3)."""
        if v is None:
            return v
        v = [v] if isinstance(v, str) else v
        canon = {a.casefold(): a for a in ATTRIBUTIONS}
        out = []
        for x in v:
            key = str(x).strip().casefold()
            if key not in canon:
                raise ValueError(f"{x!r} is not an attribution ({', '.join(ATTRIBUTIONS)})")
            out.append(canon[key])
        return tuple(dict.fromkeys(out))


def derive_icans_daily(study: Study, options: IcansOptions | None = None) -> pl.DataFrame:
    """ICANS grade per subject and calendar day with the rule, a reason and evidence."""
    options = options or IcansOptions()
    opts = options.resolved()
    table = load_table(options.criteria)
    # ICANS is graded from the first CAR-T infusion (option first_day, as CRS: convention icans.conv.first_day)
    start = assessment_start(study, opts["first_day"])
    if start is not None:
        study = dataclasses.replace(
            study, observations=rows_from_start(study.observations.filter(pl.col("param").is_in(["ICE", "CAPD", "LOC"])),
                                                start),
            events=rows_from_start(study.events, start))
    # only the rows and columns used (the references are built for those rows only)
    obs = (
        study.observations.lazy()
        .filter(pl.col("param").is_in(["ICE", "CAPD", "LOC"]))
        .select("subject_id", "param", "value", "value_text", "censor", "censor_limit",
                pl.col("day").floor().cast(pl.Int64).alias("d"), evidence_ref().alias("ref"))
        .collect()
    )
    # subjects graded by CAPD whatever their age (option capd_subjects, convention icans.conv.capd_subjects:
    # ASTCT 2019, "older patients with developmental delays"; review 46 F4): read as aged below the ICE age
    capd_ids = list(opts["capd_subjects"] or ())
    by_capd = pl.col("subject_id").is_in(capd_ids)
    study = dataclasses.replace(study, subjects=study.subjects.with_columns(
        pl.when(by_capd).then(pl.lit(-1.0)).otherwise(pl.col("age_years").cast(pl.Float64)).alias("age_years")))
    age = study.subjects.select("subject_id", "age_years")
    # a score as whole-number bounds: a number is itself; a censored score bounds one side (ICE "<3" is
    # 0-2, ">=7" is 7-10), the other side is the score's range (convention icans.conv.censored_scores)
    c, lim = pl.col("censor").fill_null(""), pl.col("censor_limit")
    num = pl.col("value").is_not_null()
    top = pl.col("param").replace_strict({k: float(v[1]) for k, v in SCORE_RANGE.items()}, default=None,
                                         return_dtype=pl.Float64)
    low_int = pl.when(c == ">").then(lim.floor() + 1).otherwise(lim.ceil())
    high_int = pl.when(c == "<").then(lim.ceil() - 1).otherwise(lim.floor())
    scores = obs.filter(pl.col("param").is_in(["ICE", "CAPD"]) & (num | c.is_in([">", ">=", "<", "<="])
                                                                & lim.is_not_null())).with_columns(
        num.alias("_exact"),
        pl.when(num).then(pl.col("value")).when(c.is_in([">", ">="])).then(low_int.clip(0.0, top))
        .otherwise(pl.lit(0.0)).alias("lo"),
        pl.when(num).then(pl.col("value")).when(c.is_in(["<", "<="])).then(high_int.clip(0.0, top))
        .otherwise(top).alias("hi"),
    ).join(age, on="subject_id", how="left")
    # ICE from the age threshold, CAPD below it; both when the age is unknown
    use = (
        pl.when(pl.col("age_years").is_null()).then(True)
        .when(pl.col("param") == "ICE").then(pl.col("age_years") >= opts["ice_min_age_years"])
        .otherwise(pl.col("age_years") < opts["ice_min_age_years"])
    )
    ignored = scores.filter(~use)
    if ignored.height:  # the other score than the age calls for: said, not silently dropped
        age = f"{opts['ice_min_age_years']:g} years"
        for param, who in (("ICE", f"under {age}"), ("CAPD", f"aged {age} or more")):
            ids = ignored.filter((pl.col("param") == param) & ~by_capd)["subject_id"].unique(maintain_order=True).to_list()
            if ids:
                warnings.warn(SubjectsWarning(
                    f"{param} scores of {len(ids)} subject(s) {who} are not graded (ASTCT "
                    f"2019: ICE from age {opts['ice_min_age_years']:g}, CAPD below; option icans.capd_subjects "
                    f"grades older patients with developmental delays by CAPD): {{subjects}}", ids,
                    "the warnings of cartlab analyze (analysis.json)"), stacklevel=2)
    # the ignored rows' days keep a row (missing is not negative: the day has no score ASTCT calls for)
    skipped = (
        ignored.with_columns(pl.format("{} {} not graded: ASTCT 2019 grades {} by {}", pl.col("param"),
                                       pl.when(pl.col("lo") == pl.col("hi")).then(pl.col("lo").cast(pl.Int64).cast(pl.String))
                                       .otherwise(pl.format("{}-{}", pl.col("lo").cast(pl.Int64), pl.col("hi").cast(pl.Int64))),
                                       pl.when(by_capd).then(pl.lit("this subject (option capd_subjects: older patients "
                                                                    "with developmental delays)"))
                                       .when(pl.col("param") == "ICE")
                                       .then(pl.lit(f"age < {opts['ice_min_age_years']:g} years"))
                                       .otherwise(pl.lit(f"age >= {opts['ice_min_age_years']:g} years")),
                                       pl.when(pl.col("param") == "ICE").then(pl.lit("CAPD")).otherwise(pl.lit("ICE")))
                             .alias("_txt"))
        .group_by("subject_id", "d")
        .agg(pl.col("_txt").unique(maintain_order=True).str.join("; ").alias("skipped"),
             pl.col("ref").unique(maintain_order=True).alias("skipped_refs"),
             # a score performed that day (>= 1 for ICE): the patient was rousable (convention icans.conv.loc_missing)
             ((pl.col("param") == "CAPD") | (pl.col("lo") >= 1)).any().alias("_skipped_rousable"))
    )
    scores = scores.filter(use)
    # the day's worst score: the lowest ICE (interval: lowest lower and upper bounds), the highest CAPD
    ice = (
        scores.filter(pl.col("param") == "ICE").sort("hi", "lo", maintain_order=True)  # ties: file order
        .group_by("subject_id", "d")
        .agg(pl.col("lo").min().alias("ice_lo"), pl.col("hi").min().alias("ice_hi"),
             pl.col("ref").first().alias("ice_ref"),
             # a censored result the scale clips to one score ("<1": 0) is still a censored result (review 39 B3)
             (pl.col("_exact") & (pl.col("hi") == pl.col("hi").min())).any().alias("ice_exact"))
        .with_columns(pl.when(pl.col("ice_lo") == pl.col("ice_hi")).then(pl.col("ice_lo")).alias("ice_min"))
    )
    capd = (
        scores.filter(pl.col("param") == "CAPD").sort("lo", "hi", descending=True, maintain_order=True)
        .group_by("subject_id", "d")
        .agg(pl.col("lo").max().alias("capd_lo"), pl.col("hi").max().alias("capd_hi"),
             pl.col("ref").first().alias("capd_ref"),
             (pl.col("_exact") & (pl.col("lo") == pl.col("lo").max())).any().alias("capd_exact"))
        .with_columns(pl.when(pl.col("capd_lo") == pl.col("capd_hi")).then(pl.col("capd_lo")).alias("capd_max"))
    )
    levels = table.extra("loc_levels")
    loc_rule = table.extra("loc")[0]["id"]
    loc = (
        obs.filter((pl.col("param") == "LOC") & pl.col("value_text").is_not_null())
        .with_columns(pl.col("value_text").replace_strict(levels, default=None, return_dtype=pl.Int64).alias("lvl"))
        .sort("lvl", descending=True, nulls_last=True, maintain_order=True)  # an unmapped text never hides a level
        .group_by("subject_id", "d")
        .agg(
            pl.col("lvl").first().alias("loc_level"),
            pl.col("value_text").filter(pl.col("lvl").is_not_null()).first().alias("loc"),
            pl.col("ref").filter(pl.col("lvl").is_not_null()).first().alias("loc_ref"),
            # texts outside loc_levels (a Study built in Python; the folder reader refuses them): named, not graded
            pl.col("value_text").filter(pl.col("lvl").is_null()).unique(maintain_order=True).str.join(", ")
            .alias("loc_unknown"),
            pl.col("ref").filter(pl.col("lvl").is_null()).alias("loc_unknown_refs"),
        )
        .with_columns(pl.when(pl.col("loc_unknown") != "").then(pl.col("loc_unknown")).alias("loc_unknown"))
    )
    # each event row graded by the events rule set (events outside its vocabulary match no rule)
    events = decision(table, "events", opts)
    is_excluded = pl.col("attribution").is_not_null() & pl.col("attribution").is_in(list(opts["excluded_attributions"]))
    graded_ev = study.events.with_columns(*events.outcome("e", "grade", "rule")).filter(pl.col("e_rule").is_not_null())
    # ICANS events excluded by their attribution: named on their day, with their row (traceable)
    excluded_ev = (
        graded_ev.filter(is_excluded)
        .with_columns(pl.col("day").floor().cast(pl.Int64).alias("d"), evidence_ref().alias("ref"),
                      pl.format("{} attributed to {}: not ICANS (option excluded_attributions)",
                                pl.col("event"), pl.col("attribution")).alias("_txt"))
        .group_by("subject_id", "d")
        .agg(pl.col("_txt").unique(maintain_order=True).str.join("; ").alias("excluded_events"),
             pl.col("ref").unique(maintain_order=True).alias("excluded_refs"))
    )
    ev = (
        graded_ev.filter(~is_excluded)
        .with_columns(
            pl.col("day").floor().cast(pl.Int64).alias("d"),
            evidence_ref().alias("ref"),
            pl.col("e_grade").alias("eg"),
            pl.col("e_rule").alias("erule"),
        )
        .sort("eg", descending=True)
        .group_by("subject_id", "d")
        .agg(
            pl.col("eg").first().alias("event_grade"),
            pl.col("erule").first().alias("event_rule"),
            pl.col("event").unique(maintain_order=True).str.join(", ").alias("events"),
            pl.col("ref").unique(maintain_order=True).alias("event_refs"),
        )
    )
    parts = (ice, capd, loc, ev, skipped, excluded_ev)
    grid = pl.concat([f.select("subject_id", "d") for f in parts]).unique()
    f = grid
    for part in parts:
        f = f.join(part, on=["subject_id", "d"], how="left")
    f = f.with_columns(pl.col("loc_level").is_null().alias("_loc_missing"), pl.col("loc_level").fill_null(0),
                       pl.col("event_grade").fill_null(0))
    scores = {d: decision(table, d, opts, bindings=BINDINGS, otherwise_grade=0, schema=f.schema) for d in ("ice", "capd")}
    lazy = scores["ice"].apply(f.lazy(), "ice", "grade", "rule", "grade_max", "missing", labels=INPUTS)
    f = scores["capd"].apply(lazy, "capd", "grade", "rule", "grade_max").with_columns(
        pl.col("loc_level").alias("loc_grade"),
        pl.when(pl.col("loc_level") > 0).then(pl.lit(loc_rule)).alias("loc_rule"),
    ).collect()
    domains = ["ice", "capd", "loc", "event"]
    # age unknown and both scores recorded: which one ASTCT calls for is unknown, so the lower of
    # their grades counts and the higher is what the age could make it (missing is not negative)
    both = (pl.col("ice_lo").is_not_null() & pl.col("capd_lo").is_not_null()
            & pl.col("subject_id").is_in(study.subjects.filter(pl.col("age_years").is_null())["subject_id"].implode()))
    f = f.with_columns(pl.col("ice_grade").alias("_ice_grade"), pl.col("capd_grade").alias("_capd_grade"),
                       pl.when(both).then(pl.max_horizontal("ice_grade", "capd_grade")).alias("_age_grade_max"))
    f = f.with_columns(*[pl.when(both).then(pl.min_horizontal("_ice_grade", "_capd_grade"))
                         .otherwise(pl.col(f"{d}_grade")).alias(f"{d}_grade") for d in ("ice", "capd")])
    grade = pl.max_horizontal(*[pl.col(f"{d}_grade") for d in domains])
    rule = pl.lit(None, dtype=pl.String)
    for d in reversed(domains):  # the first domain reaching the maximum names the rule
        rule = pl.when((pl.col(f"{d}_grade") == grade) & (grade > 0)).then(pl.col(f"{d}_rule")).otherwise(rule)
    f = f.with_columns(grade.alias("grade"), rule.alias("rule"))
    # missing is not negative: the encephalopathy score is ICE or CAPD, whichever the age calls for
    # (both when it is unknown); without either that day the domain is unknown and the day's grade a
    # lower bound, up to the lower of the two domains' best possible grades (ICE 0-2 alone is grade
    # 3, CAPD >= 9 grade 3; ASTCT 2019 Tables 4-5)
    opened = {d: pl.col(f"{d}_grade_max") > pl.col(f"{d}_grade") for d in scores}
    best = pl.min_horizontal("ice_grade_max", "capd_grade_max")
    f = f.with_columns(pl.when(opened["ice"] & opened["capd"]).then(pl.max_horizontal("grade", best))
                       .otherwise(pl.col("grade")).alias("grade_max"))
    f = f.with_columns(pl.when(pl.col("grade_max") > pl.col("grade")).then(pl.col("ice_missing"))
                       .otherwise(pl.lit([], dtype=pl.List(pl.String))).alias("missing_inputs"))
    # ICE 0 is grade 3, or 4 when the patient is unarousable (Table 4, the criteria row that needs the
    # level of consciousness): without a LOC row that day its condition is unknown, not false
    for ice_value, loc_grade in _needs_loc(table):
        # ICE ice_value possible: within the day's interval (ICE "<3" could be 0)
        could = ((pl.col("ice_lo") <= ice_value) & (pl.col("ice_hi") >= ice_value)).fill_null(False) \
            & pl.col("_loc_missing") & (pl.col("grade_max") < loc_grade)
        f = f.with_columns(pl.when(could).then(pl.lit(loc_grade, dtype=f.schema["grade_max"]))
                           .otherwise(pl.col("grade_max")).alias("grade_max"),
                           pl.when(could).then(pl.col("missing_inputs").list.concat(pl.lit(["LOC"])))
                           .otherwise(pl.col("missing_inputs")).alias("missing_inputs"))
    # no score that day and no LOC: the patient could have been unarousable (LOC domain 4; ICE 0 and
    # unarousable is 4 too). A score performed that day (ICE >= 1, any CAPD, used or not) reads as
    # rousable (convention icans.conv.loc_missing)
    top_loc = max(int(v) for v in levels.values())
    no_score = (pl.col("ice_lo").is_null() & pl.col("capd_lo").is_null()
                & ~pl.col("_skipped_rousable").fill_null(False))
    could = no_score & pl.col("_loc_missing") & (pl.col("grade_max") < top_loc)
    f = f.with_columns(pl.when(could).then(pl.lit(top_loc, dtype=f.schema["grade_max"]))
                       .otherwise(pl.col("grade_max")).alias("grade_max"),
                       pl.when(could).then(pl.concat_list(
                           pl.col("missing_inputs").list.set_difference(pl.lit(["ICE/CAPD"])), pl.lit(["ICE/CAPD", "LOC"])))
                       .otherwise(pl.col("missing_inputs")).alias("missing_inputs"))
    # a score performed without a LOC row: 'not_depressed' (default) reads the LOC as alert; 'rousable'
    # reads it as anything short of unarousable (awakens to tactile = 3; convention icans.conv.loc_missing)
    rousable_top = max((int(v) for v in levels.values() if int(v) < top_loc), default=0)
    if opts["loc_missing_with_score"] == "rousable":
        scored = (pl.col("ice_lo").is_not_null() | pl.col("capd_lo").is_not_null()
                  | pl.col("_skipped_rousable").fill_null(False))
        could = scored & pl.col("_loc_missing") & (pl.col("grade_max") < rousable_top)
        f = f.with_columns(pl.when(could).then(pl.lit(rousable_top, dtype=f.schema["grade_max"]))
                           .otherwise(pl.col("grade_max")).alias("grade_max"),
                           pl.when(could).then(pl.col("missing_inputs").list.concat(pl.lit(["LOC"])))
                           .otherwise(pl.col("missing_inputs")).alias("missing_inputs"))
    by_age = pl.col("_age_grade_max").fill_null(0) > pl.col("grade_max")
    f = f.with_columns(pl.when(by_age).then(pl.col("_age_grade_max")).otherwise(pl.col("grade_max")).alias("grade_max"),
                       pl.when(by_age).then(pl.col("missing_inputs").list.concat(pl.lit(["age_years"])))
                       .otherwise(pl.col("missing_inputs")).alias("missing_inputs"),
                       pl.col("_ice_grade").alias("ice_grade"), pl.col("_capd_grade").alias("capd_grade"))
    # a day kept only to name an event of another cause (no score, LOC or counted event) is no more
    # assessed than a day with no row, which opens no range: grade 0, grade_max 0 (convention
    # icans.conv.excluded_events)
    only_excluded = (pl.col("excluded_events").is_not_null() & pl.col("ice_lo").is_null() & pl.col("capd_lo").is_null()
                     & pl.col("_loc_missing") & pl.col("loc_unknown").is_null() & pl.col("events").is_null()
                     & pl.col("skipped").is_null())
    # ... and is no ICANS-free assessment either (``assessed`` False): it neither resolves nor splits an
    # episode (review 46 finding 1)
    f = f.with_columns(pl.when(only_excluded).then(pl.col("grade")).otherwise(pl.col("grade_max")).alias("grade_max"),
                       pl.when(only_excluded).then(pl.lit([], dtype=pl.List(pl.String)))
                       .otherwise(pl.col("missing_inputs")).alias("missing_inputs"),
                       (~only_excluded).alias("assessed"))
    f = _ventilated(study, f, opts["ventilated_loc"])
    # the score ASTCT calls for by the age (review 39 C1): "ICE" from ice_min_age_years, "CAPD" below,
    # "ICE/CAPD" only when the age is unknown (missing_inputs and the reason name that one)
    f = f.join(study.subjects.select("subject_id", pl.col("age_years").alias("_age")), on="subject_id", how="left")
    scale = (pl.when(pl.col("_age").is_null()).then(pl.lit("ICE/CAPD"))
             .when(pl.col("_age") >= opts["ice_min_age_years"]).then(pl.lit("ICE")).otherwise(pl.lit("CAPD")))
    f = f.with_columns(pl.when(pl.col("missing_inputs").list.contains("ICE/CAPD"))
                       .then(pl.col("missing_inputs").list.join("\x1f").str.replace("ICE/CAPD", scale, literal=True)
                             .str.split("\x1f"))
                       .otherwise(pl.col("missing_inputs")).alias("missing_inputs"))

    texts = table.texts(("ice", "capd", "events"), opts)
    bits = [
        pl.when(pl.col("ice_min").is_not_null() & pl.col("ice_exact")).then(pl.format("ICE {}", pl.col("ice_min").cast(pl.Int64)))
        .when(pl.col("ice_min").is_not_null()).then(pl.format("ICE {} (censored result)", pl.col("ice_min").cast(pl.Int64)))
        .when(pl.col("ice_lo").is_not_null()).then(pl.format("ICE {}-{} (censored result)", pl.col("ice_lo").cast(pl.Int64),
                                                              pl.col("ice_hi").cast(pl.Int64))),
        pl.when(pl.col("capd_max").is_not_null() & pl.col("capd_exact")).then(pl.format("CAPD {}", pl.col("capd_max").cast(pl.Int64)))
        .when(pl.col("capd_max").is_not_null()).then(pl.format("CAPD {} (censored result)", pl.col("capd_max").cast(pl.Int64)))
        .when(pl.col("capd_lo").is_not_null()).then(pl.format("CAPD {}-{} (censored result)", pl.col("capd_lo").cast(pl.Int64),
                                                               pl.col("capd_hi").cast(pl.Int64))),
        pl.col("skipped"),
        pl.when(pl.col("loc").is_not_null()).then(pl.format("consciousness: {}", pl.col("loc"))),
        pl.when(pl.col("loc_unknown").is_not_null()).then(pl.format(
            "consciousness '{}' not in the level-of-consciousness vocabulary: not graded", pl.col("loc_unknown"))),
        pl.when(pl.col("events").is_not_null()).then(pl.format("events: {}", pl.col("events"))),
        pl.col("excluded_events"),
        pl.when(pl.col("vent_ref").is_not_null()).then(pl.format(
            "on mechanical ventilation ({}): ASTCT excludes a depressed consciousness due to sedation "
            "(option ventilated_loc={})", pl.col("vent_ref"), pl.lit(opts["ventilated_loc"]))),
    ]
    loc_text = pl.format("depressed level of consciousness: {}", pl.col("loc"))
    rule_text = (
        pl.when(pl.col("rule") == loc_rule).then(loc_text)
        .otherwise(pl.col("rule").replace_strict(texts, default=pl.col("rule")))
    )
    reason = pl.concat_str(
        [
            pl.concat_str(bits, separator="; ", ignore_nulls=True),
            pl.format("grade {}{}{}", pl.col("grade"),
                      pl.when(pl.col("rule").is_not_null()).then(pl.format(": {}", rule_text)).otherwise(pl.lit("")),
                      pl.when(pl.col("missing_inputs").list.contains("LOC attribution")).then(pl.format(
                          " (up to {}: the score or consciousness of a ventilated patient, if not due to "
                          "sedation)", pl.col("grade_max")))
                      .when(pl.col("missing_inputs").list.contains("age_years")).then(pl.format(
                          " (up to {}: age unknown, so ICE or CAPD, both recorded, could be the score ASTCT "
                          "calls for)", pl.col("grade_max")))
                      .when(pl.col("missing_inputs").list.contains("LOC") & pl.col("ice_lo").is_null()
                            & pl.col("capd_lo").is_null()).then(pl.format(
                          " (up to {}: no {} score and no level of consciousness (LOC) that day: "
                          "unarousable would make it 4)", pl.col("grade_max"), scale))
                      .when(pl.col("missing_inputs").list.contains("LOC") & (pl.col("grade_max") < top_loc))
                      .then(pl.format(" (up to {}: a score but no level of consciousness (LOC) that day: awakens "
                                      "only to tactile stimulus would make it 3 (option loc_missing_with_score))",
                                      pl.col("grade_max")))
                      .when(pl.col("missing_inputs").list.contains("LOC")).then(pl.format(
                          " (up to {}: ICE 0 with no level of consciousness (LOC) that day: unarousable would "
                          "make it 4)", pl.col("grade_max")))
                      .when((pl.col("grade_max") > pl.col("grade")) & (pl.col("ice_lo").is_not_null()
                                                                        | pl.col("capd_lo").is_not_null())).then(pl.format(
                          " (up to {}: the censored score does not settle the grade)", pl.col("grade_max")))
                      .when(pl.col("grade_max") > pl.col("grade")).then(pl.format(
                          " (up to {}: no {} score that day)", pl.col("grade_max"), scale)).otherwise(pl.lit(""))),
        ],
        separator=" -> ",
    )
    empty = pl.lit([], dtype=EVIDENCE)

    def one(c: str) -> pl.Expr:
        return pl.when(pl.col(c).is_not_null()).then(pl.concat_list(pl.col(c))).otherwise(empty)

    evidence = pl.concat_list(one("ice_ref"), one("capd_ref"), one("loc_ref"), pl.col("event_refs").fill_null(empty),
                              pl.col("skipped_refs").fill_null(empty), pl.col("loc_unknown_refs").fill_null(empty),
                              pl.col("excluded_refs").fill_null(empty), one("vent_ref")).list.unique(maintain_order=True)
    f = f.with_columns(pl.when(pl.col("assessed")).then(reason).otherwise(pl.concat_str(reason, pl.lit(
        "; no ICANS assessment that day: it does not end or split an episode (convention icans.conv.excluded_events)")))
        .alias("reason"), evidence.alias("evidence"))
    # a subject of option capd_subjects: its days graded by CAPD say so, with the convention (review 46 F4)
    by_option = by_capd & (pl.col("capd_lo").is_not_null() | pl.col("skipped").is_not_null()
                           | pl.col("missing_inputs").list.contains("CAPD"))
    f = f.with_columns(
        pl.when(by_option).then(pl.concat_str("reason", pl.lit(
            "; graded by CAPD whatever the age: option icans.capd_subjects (ASTCT 2019: older patients with "
            "developmental delays; convention icans.conv.capd_subjects)"))).otherwise(pl.col("reason")).alias("reason"),
        pl.when(by_option).then(pl.concat_str(pl.coalesce(pl.col("rule"), pl.lit("icans.g0")),
                                              pl.lit("; icans.conv.capd_subjects"))).otherwise(pl.col("rule")).alias("rule"))
    # age unknown, one score recorded: graded by that score (spec; review 39 C1), said with its convention
    by_recorded = pl.col("_age").is_null() & (pl.col("ice_lo").is_null() != pl.col("capd_lo").is_null())
    f = f.with_columns(
        pl.when(by_recorded).then(pl.concat_str("reason", pl.lit(
            "; age unknown: graded by the score recorded (convention icans.conv.age)"))).otherwise(pl.col("reason"))
        .alias("reason"),
        pl.when(by_recorded).then(pl.concat_str(pl.coalesce(pl.col("rule"), pl.lit("icans.g0")), pl.lit("; icans.conv.age")))
        .otherwise(pl.col("rule")).alias("rule"))
    # review 39 B3: a score performed with no LOC row that day, read as not depressed (the default),
    # says so: the convention and its option are named in the reason
    if opts["loc_missing_with_score"] == "not_depressed" and "_loc_missing" in f.columns:
        # ... an ICE >= 1 or a CAPD score only (the convention's scope): ICE 0 without LOC is a range up
        # to 4 (missing_inputs LOC), never "read as not depressed" (review 41 F7)
        by_score = (pl.col("_loc_missing").fill_null(False) & ~pl.col("missing_inputs").list.contains("LOC")
                    & ((pl.col("ice_lo") >= 1) | pl.col("capd_lo").is_not_null()))
        f = f.with_columns(pl.when(by_score).then(pl.concat_str("reason", pl.lit(
            "; no level of consciousness (LOC) that day: read as not depressed (option "
            "icans.loc_missing_with_score=not_depressed, convention icans.conv.loc_missing; 'rousable' gives a "
            "range)"))).otherwise(pl.col("reason")).alias("reason"))
    # events.csv not given: seizure, motor weakness, cerebral edema unknown (convention icans.conv.absent_events)
    f = open_absent_events(study, f, opts["absent_events"])
    if opts["unattributed_death"] == "during_icans":
        f = _unattributed_deaths(study, f, int(options.episode_join_gap_days) + 1, opts["unattributed_death_reading"])
    # options assessment_window / assessment_end_events, as CRS (convention icans.conv.assessment; review 41 F9)
    f = assessed_days(study, f.rename({"d": "day"}), opts)
    f = death_episode(number_icans_episodes(f, int(options.episode_join_gap_days), opts["episode_gap_days_count"]))
    # how each episode ended: resolved, not assessed after, or death (convention icans.conv.episode_end)
    f = episode_ends(f, study.events)
    last = pl.col("day") == pl.col("day").filter(pl.col("episode").is_not_null()).max().over("subject_id", "episode")
    return (
        f.with_columns(
                       # a graded day meeting no criterion names that too (criteria row icans.g0)
                       pl.when(pl.col("rule").is_null() & (pl.col("grade") == 0)).then(pl.lit("icans.g0"))
                       .otherwise(pl.col("rule")).alias("rule"),
                       pl.concat_str(pl.col("reason"),
                                     pl.when(pl.col("episode_note").is_not_null())
                                     .then(pl.concat_str(pl.lit("; "), "episode_note")).otherwise(pl.lit("")),
                                     pl.when(last & pl.col("episode_end_note").is_not_null())
                                     .then(pl.concat_str(pl.lit("; "), "episode_end_note")).otherwise(pl.lit("")))
                       .alias("reason"))
        .select("subject_id", "day", "grade", "grade_max", "missing_inputs", "rule", "reason", "evidence",
                "ice_min", "capd_max",
                "loc", "events", "ice_grade", "capd_grade", "loc_grade", "event_grade", "episode",
                "episode_end", "episode_resolution_day_latest",
                pl.col("death_episode") if "death_episode" in f.columns else pl.lit(None, pl.Int64).alias("death_episode"),
                pl.col("assessed").fill_null(True))
        .sort("subject_id", "day")
    )


def _ventilated(study: Study, f: pl.DataFrame, mode: str) -> pl.DataFrame:
    """``vent_ref``: the interventions row of mechanical ventilation covering a day with an ICE/CAPD
    score or a level of consciousness (ASTCT 2019 Table 4 footnote: a depressed consciousness "should
    be attributable to no other cause (eg, no sedating medication)"; convention icans.conv.ventilated_loc).
    ``mode`` 'grade' (default) only names it; 'range' grades the day by its events only, up to the
    grade its score/consciousness gives (missing_inputs 'LOC attribution')."""
    iv = study.interventions
    vent = (iv.filter((pl.col("o2_device") == "mechanical_ventilation") & pl.col("start_day").is_not_null())
            .select("subject_id", pl.col("start_day").floor().cast(pl.Int64).alias("_s"),
                    last_covered_day(iv).alias("_e"),  # an end at 00:00: the day before (review 38 A1)
                    evidence_ref().alias("vent_ref"))
            if iv.height and "o2_device" in iv.columns else None)
    if vent is None or vent.height == 0:
        return f.with_columns(pl.lit(None, dtype=pl.String).alias("vent_ref"))
    sedatable = (pl.col("ice_lo").is_not_null() | pl.col("capd_lo").is_not_null() | ~pl.col("_loc_missing")
                 | pl.col("skipped").is_not_null() | pl.col("loc_unknown").is_not_null())
    hit = (f.filter(sedatable).select("subject_id", "d").join(vent, on="subject_id")
           .filter((pl.col("d") >= pl.col("_s")) & (pl.col("d") <= pl.col("_e")))
           .group_by("subject_id", "d").agg(pl.col("vent_ref").sort().first()))
    f = f.join(hit, on=["subject_id", "d"], how="left")
    if mode != "range":
        return f
    lower = pl.col("vent_ref").is_not_null() & (pl.col("grade") > pl.col("event_grade"))
    return f.with_columns(
        pl.when(lower).then(pl.col("event_grade").cast(f.schema["grade"])).otherwise(pl.col("grade")).alias("grade"),
        pl.when(lower).then(pl.when(pl.col("event_grade") > 0).then(pl.col("event_rule")))
        .otherwise(pl.col("rule")).alias("rule"),
        pl.when(lower).then(pl.col("missing_inputs").list.concat(pl.lit(["LOC attribution"])))
        .otherwise(pl.col("missing_inputs")).alias("missing_inputs"))


def number_icans_episodes(daily: pl.DataFrame, join_gap_days: int = 1, gap_days_count: str = "any") -> pl.DataFrame:
    """``daily`` with ``episode`` (null on grade-0 days) and ``episode_note``: ICANS days (grade >= 1)
    separated by at most ``join_gap_days`` days form one episode; 'any' counts every calendar day between
    (as crs.conv.episodes), 'assessed_free' only assessed ICANS-free days (:func:`free_day`: grade_max
    0; a day never assessed, graded 0 only as a lower bound, or kept only to name an event of another
    cause does not split). The first day of an episode that
    follows unassessed days names them (convention icans.conv.episodes)."""
    key = ["subject_id", "day"]
    # rows that are ICANS assessments (a day kept only for an event of another cause is not: review 46 F1)
    assessed = pl.col("assessed").fill_null(True) if "assessed" in daily.columns else pl.lit(True)
    d = daily.drop("episode", "episode_note", strict=False).sort(key).with_columns(
        free_day(daily.columns).cast(pl.Int64).cum_sum().over("subject_id").alias("_free"),
        assessed.cast(pl.Int64).cum_sum().over("subject_id").alias("_i"))
    pos = d.filter(pl.col("grade") >= 1).with_columns(
        *[pl.col(c).shift(1).over("subject_id").alias(f"_p{c}") for c in ("day", "_free", "_i")])
    between = pl.col("day") - pl.col("_pday") - 1
    counted = between if gap_days_count == "any" else pl.col("_free") - pl.col("_p_free")
    unassessed = between - (pl.col("_i") - pl.col("_p_i") - 1)
    pos = pos.with_columns(
        (counted > join_gap_days).fill_null(True).cum_sum().over("subject_id").cast(pl.Int64).alias("episode"),
        # the split rests on unassessed days: the assessed ICANS-free days alone would not split
        pl.when((counted > join_gap_days) & (unassessed > 0) & (pl.col("_free") - pl.col("_p_free") <= join_gap_days))
        .then(pl.format("new episode after ICANS day {}: {} of the {} day(s) between have no ICANS assessment "
                        "(convention icans.conv.episodes, option episode_gap_days_count={})", pl.col("_pday"),
                        unassessed, between, pl.lit(gap_days_count))).alias("episode_note"))
    return daily.drop("episode", "episode_note", strict=False).join(
        pos.select(*key, "episode", "episode_note"), on=key, how="left")


#: how many days before a death an ICANS day makes it a death "during ICANS" with the default
#: episode_join_gap_days (1): gap + 1, as the CRS convention crs.conv.unattributed_death
DEATH_WINDOW_DAYS = 2


def _unattributed_deaths(study: Study, f: pl.DataFrame, window: int = DEATH_WINDOW_DAYS,
                         reading: str = "range") -> pl.DataFrame:
    """Convention icans.conv.unattributed_death: a death with no attribution recorded on a day with an
    ICANS day (grade >= 1) at most ``window`` days (episode_join_gap_days + 1) before it, and no
    assessed ICANS-free day (:func:`free_day`) after that ICANS day up to the death day (review 46
    finding 2, as episode_ends), opens that day up to 5 (grade_max,
    missing_inputs "death attribution"); a death day without ICANS data gets a row (grade 0, the
    recorded data's lower bound). Grades are unchanged; with ``reading`` "grade5" (option
    unattributed_death_reading, as the CRS engine reads such a death) that day is grade 5 instead."""
    deaths = (study.events.filter((pl.col("event") == "death") & pl.col("attribution").is_null()
                                  & pl.col("day").is_not_null())
              .select("subject_id", pl.col("day").floor().cast(pl.Int64).alias("d"), evidence_ref().alias("_dref"))
              .unique(["subject_id", "d"], keep="first", maintain_order=True))
    if deaths.height == 0:
        return f
    icans_days = f.filter(pl.col("grade") >= 1).select("subject_id", pl.col("d").alias("_id"))
    # ... unless an assessed ICANS-free day lies after the last such ICANS day, up to the death day: the
    # bound episode_ends puts on the episode (review 46 finding 2)
    free = f.filter(free_day(f.columns)).select("subject_id", pl.col("d").alias("_fd"))
    last = (deaths.join(icans_days, on="subject_id", how="inner")
            .filter((pl.col("_id") <= pl.col("d")) & (pl.col("_id") >= pl.col("d") - window))
            .group_by("subject_id", "d", "_dref", maintain_order=True).agg(pl.col("_id").max()))
    cut = (last.join(free, on="subject_id").filter((pl.col("_fd") > pl.col("_id")) & (pl.col("_fd") <= pl.col("d")))
           .select("subject_id", "d").unique())
    during = (last.join(cut, on=["subject_id", "d"], how="anti")
              .select("subject_id", "d", "_dref").unique(["subject_id", "d"], maintain_order=True))
    if during.height == 0:
        return f
    new = during.join(f.select("subject_id", "d"), on=["subject_id", "d"], how="anti")
    if new.height:
        f = pl.concat([f, new.select("subject_id", "d").with_columns(
            pl.lit(0, dtype=f.schema["grade"]).alias("grade"), pl.lit(0, dtype=f.schema["grade_max"]).alias("grade_max"),
            pl.lit([], dtype=f.schema["missing_inputs"]).alias("missing_inputs"),
            pl.lit("no ICE/CAPD score, consciousness or ICANS event recorded that day -> grade 0").alias("reason"),
            pl.lit([], dtype=EVIDENCE).alias("evidence"))], how="diagonal_relaxed")
    f = f.join(during.with_columns(pl.lit(True).alias("_death")), on=["subject_id", "d"], how="left")
    hit = pl.col("_death").fill_null(False)
    if reading == "grade5":  # the death counted as ICANS: grade 5, settled (review 41 F1)
        return f.with_columns(
            pl.when(hit).then(pl.lit(5, dtype=f.schema["grade"])).otherwise(pl.col("grade")).alias("grade"),
            pl.when(hit).then(pl.lit(5, dtype=f.schema["grade_max"])).otherwise(pl.col("grade_max")).alias("grade_max"),
            # the day's own findings first, as the range reading (review 46 F9)
            pl.when(hit).then(pl.concat_str(pl.col("reason"), pl.lit(
                "; death with no attribution recorded, during ICANS -> grade 5 (counted as an ICANS death: option "
                "icans.unattributed_death_reading=grade5, convention icans.conv.unattributed_death)")))
            .otherwise(pl.col("reason")).alias("reason"),
            pl.when(hit).then(pl.concat_list(pl.col("evidence"), pl.concat_list(pl.col("_dref"))))
            .otherwise(pl.col("evidence")).alias("evidence"),
            pl.when(hit).then(pl.lit("icans.conv.unattributed_death")).otherwise(pl.col("rule")).alias("rule"),
        ).drop("_death", "_dref")
    return f.with_columns(
        pl.when(hit).then(pl.lit(5, dtype=f.schema["grade_max"])).otherwise(pl.col("grade_max")).alias("grade_max"),
        pl.when(hit).then(pl.col("missing_inputs").list.concat(pl.lit(["death attribution"])))
        .otherwise(pl.col("missing_inputs")).alias("missing_inputs"),
        pl.when(hit).then(pl.concat_str(pl.col("reason"), pl.lit(
            "; death with no attribution recorded during ICANS: up to 5 if due to ICANS "
            "(convention icans.conv.unattributed_death)"))).otherwise(pl.col("reason")).alias("reason"),
        pl.when(hit).then(pl.concat_list(pl.col("evidence"), pl.concat_list(pl.col("_dref"))))
        .otherwise(pl.col("evidence")).alias("evidence"),
        pl.when(hit).then(pl.concat_str(
            pl.coalesce(pl.col("rule"), pl.lit("icans.g0")), pl.lit("; icans.conv.unattributed_death")))
        .otherwise(pl.col("rule")).alias("rule"),
    ).drop("_death", "_dref")


def death_episode(daily: pl.DataFrame) -> pl.DataFrame:
    """``death_episode``: on a day an unattributed death leaves open up to 5 (missing_inputs "death
    attribution") the ICANS episode it was attached to (the day's own, or the last one before it: the
    death is within episode_join_gap_days + 1 days of an ICANS day), so that ADAE's ATOXGRUP reaches it
    (review 41 F1); null elsewhere."""
    if "episode" not in daily.columns or "missing_inputs" not in daily.columns:
        return daily
    order = daily.with_row_index("_o").sort("subject_id", "day")
    last = pl.col("episode").forward_fill().over("subject_id")
    return (order.with_columns(pl.when(pl.col("missing_inputs").list.contains("death attribution"))
                               .then(pl.coalesce(pl.col("episode"), last)).alias("death_episode"))
            .sort("_o").drop("_o"))


def derive_icans_episodes(study: Study, options: IcansOptions | None = None) -> pl.DataFrame:
    """ICANS episodes (ADAE-like)."""
    options = options or IcansOptions()
    return icans_episodes_from_daily(derive_icans_daily(study, options), options)


def icans_episodes_from_daily(daily: pl.DataFrame, options: IcansOptions | None = None) -> pl.DataFrame:
    """ADAE-like ICANS episodes from :func:`derive_icans_daily` (its ``episode`` numbering, from the
    options it was graded with); an episode that starts after unassessed days names them in its
    reason (convention icans.conv.episodes)."""
    options = options or IcansOptions()
    eps = episodes(daily, "Immune effector cell-associated neurotoxicity syndrome", "ASTCT 2019",
                   options.episode_join_gap_days)
    if eps.height == 0 or "episode" not in daily.columns:
        return eps
    # an episode after days never assessed says so (its reason is its worst day's; the note is its first day's)
    notes = (daily.filter(pl.col("episode").is_not_null()).sort("subject_id", "day")
             .group_by("subject_id", "episode", maintain_order=True)
             .agg(pl.col("reason").first().str.extract(r"; (new episode after ICANS day .*)$").alias("_note")))
    eps = (eps.join(notes, on=["subject_id", "episode"], how="left")
           .with_columns(pl.when(pl.col("_note").is_not_null() & ~pl.col("reason").str.contains(
                               "new episode after ICANS day", literal=True))
                         .then(pl.concat_str("reason", pl.lit("; "), "_note")).otherwise(pl.col("reason")).alias("reason"))
           .drop("_note"))
    # an unattributed death attached to the episode (review 41 F1), named in front of the reason
    eps = name_attached_death(eps, daily, "icans.conv.unattributed_death")
    if "episode_end" not in daily.columns:
        return eps
    # how the episode ended (its last day's end note; convention icans.conv.episode_end): end_reason,
    # resolution_day_latest and ADURN_max (the duration's upper bound; null: open, no later assessment)
    ends = (daily.filter(pl.col("episode").is_not_null()).sort("subject_id", "day")
            .group_by("subject_id", "episode", maintain_order=True)
            .agg(pl.col("episode_end").last().alias("end_reason"),
                 pl.col("episode_resolution_day_latest").last().alias("resolution_day_latest"),
                 pl.col("reason").last().str.extract(END_NOTE).alias("_end")))
    return (eps.join(ends, on=["subject_id", "episode"], how="left", maintain_order="left")
            .with_columns(
                pl.when(pl.col("_end").is_not_null() & ~pl.col("reason").str.ends_with(pl.col("_end").fill_null("")))
                .then(pl.concat_str("reason", pl.lit("; "), "_end")).otherwise(pl.col("reason")).alias("reason"),
                pl.when(pl.col("resolution_day_latest").is_not_null())
                .then(pl.col("resolution_day_latest") - pl.col("ASTDY") + 1)
                .when(pl.col("end_reason") != "not_assessed").then(pl.col("ADURN")).cast(pl.Int64).alias("ADURN_max"))
            .drop("_end"))


def derive_icans_summary(study: Study, options: IcansOptions | None = None, daily: pl.DataFrame | None = None) -> pl.DataFrame:
    """``icans_grade_astct`` per subject: maximum daily grade; empty without any neuro data. As the CRS
    summary (review 46 F6): ``icans_onset_day`` / ``icans_resolution_day``, the first / last day with
    grade >= 1 (empty when none; the resolution's upper bound is ``icans_resolution_day_latest``) and
    ``icans_n_episodes`` (0 when the subject has ICANS data but no ICANS day)."""
    daily = daily if daily is not None else derive_icans_daily(study, options)
    icans = pl.col("day").filter(pl.col("grade") >= 1)
    agg = daily.group_by("subject_id").agg(
        pl.col("grade").max().alias("icans_grade_astct"),
        (pl.col("grade_max") if "grade_max" in daily.columns else pl.col("grade")).max().alias("icans_grade_astct_max"),
        icans.min().cast(pl.Float64).alias("icans_onset_day"), icans.max().cast(pl.Float64).alias("icans_resolution_day"),
        (pl.col("episode").drop_nulls().n_unique() if "episode" in daily.columns
         else pl.lit(None)).cast(pl.Int64).alias("icans_n_episodes"))
    # how the last episode ended, as crs_resolution_day_latest / crs_resolution_open (icans.conv.episode_end)
    ends = resolution_summary(daily)
    return (study.subjects.select("subject_id").join(agg, on="subject_id", how="left", maintain_order="left")
            .join(ends, on="subject_id", how="left", maintain_order="left"))


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
__getattr__ = renamed(__name__, "icans_daily", "icans_episodes", "icans_summary")
