"""Daily grade of an older CRS scale from its criteria table, evaluated by :mod:`cartlab.criteria`.

A scale is one rule set (``criteria/crs_<scale>.yaml``, ``rule_sets.grade``), tried from the highest
grade down over the features of :func:`cartlab.grading.crs_legacy_inputs.crs_daily_inputs`. With
three-valued logic (a condition on an unknown input is unknown) the
:class:`~cartlab.criteria.Decision` gives per day ``grade_min`` (the first rule that surely holds,
0 when none does) and ``grade_max`` (the highest grade still possible); ``grade`` is set only when
they agree. The day's ``rule`` and ``reason`` name every rule that holds at ``grade_min``, the rules
that could raise it and what is unknown (``missing_inputs``); ``evidence`` lists the source rows of
the features of those rules, feature by feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from cartlab.criteria import Compiler, CriteriaTable, Range, decision, load_table, render
from cartlab.criteria.model import Leaf, leaves, option_name
from cartlab.grading.crs_legacy_inputs import ASSUMED, LABELS, ORGAN_COLS, SCALES, TABLE_NAMES, CrsLegacyOptions
from cartlab.provenance import EVIDENCE

__all__ = ["FEATURES", "GRADE_SCHEMA", "grade_crs_scale", "scale_table"]

RULE_SET = "grade"
ALWAYS = "__always"  # a column that is always True (feature `always`, and crs_gate with gate `none`)

#: feature -> (kind, columns, evidence groups of crs_daily_inputs' feature_evidence).
#: Kinds: bool, num, grade, range (a value known as [min, max]), const (always true). An organ-toxicity
#: grade is a range: [the grade its gradable labs settle, the grade itself] (empty: unknown, up to 4).
FEATURES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "fever": ("bool", ("fever",), ("fever", "other_cause")),
    "crs_gate": ("bool", ("crs_gate",), ("fever", "waiver", "other_cause")),
    "sbp_low": ("bool", ("sbp_low",), ("sbp",)),
    "n_vasopressors": ("num", ("n_vasopressors",), ("vasopressor",)),
    "n_vasopressors_excl_vasopressin": ("num", ("n_vasopressors_excl_vasopressin",), ("vasopressor",)),
    # session 33: drugs running at the same time (CrsLegacyOptions.multiple_vasopressors "concurrent")
    "n_vasopressors_concurrent": ("range", ("n_vasopressors_concurrent_min", "n_vasopressors_concurrent_max"),
                                  ("vasopressor",)),
    "n_vasopressors_excl_vasopressin_concurrent": ("range", ("n_vasopressors_excl_vasopressin_concurrent_min",
                                                             "n_vasopressors_excl_vasopressin_concurrent_max"),
                                                   ("vasopressor",)),
    "high_dose": ("bool", ("high_dose",), ("vasopressor", "weight")),
    "refractory_hypotension": ("bool", ("refractory_hypotension",), ()),
    # session 34: CARTOX grade 4 "life-threatening hypotension" (CrsLegacyOptions.assume_life_threatening_hypotension)
    "life_threatening_hypotension": ("bool", ("life_threatening_hypotension",), ()),
    "vaso_episode_hours": ("range", ("vaso_episode_hours_min", "vaso_episode_hours_max"), ("vasopressor",)),
    "o2_any": ("bool", ("o2_any",), ("o2",)),
    "fio2": ("range", ("fio2_min", "fio2_max"), ("o2",)),
    "ventilation_level": ("num", ("ventilation_level",), ("o2",)),
    "organ_grade_max": ("range", ("organ_grade_max_known", "organ_grade_max"), ("organ",)),
    "organ_grade_max_non_transaminase": ("range", ("organ_grade_max_non_transaminase_known", "organ_grade_max_non_transaminase"), ("organ",)),
    "organ_grade_max_transaminase": ("range", ("organ_grade_max_transaminase_known", "organ_grade_max_transaminase"), ("organ",)),
    "creatinine_grade": ("range", ("creatinine_grade_known", "creatinine_grade"), ("organ",)),
    "lft_grade": ("range", ("lft_grade_known", "lft_grade"), ("organ",)),
    "blood_products": ("bool", ("blood_products",), ("blood_products",)),
    "hospitalized": ("bool", ("hospitalized",), ("hospitalized",)),
    "iv_therapy": ("bool", ("iv_therapy",), ("iv_therapy",)),
    "fluid_boluses": ("bool", ("fluid_boluses",), ()),
    "death_crs": ("bool", ("death_crs",), ("death",)),
    "always": ("const", (), ()),
}
GATES = ("fever_or_waiver", "none")
#: feature -> the input column naming what set it (the labs at an organ-toxicity grade), added to a
#: holding rule's text in the reason ("grade 3 organ toxicity: hypokalemia (K 2.8 mmol/L, CTCAE grade 3)")
DETAILS: dict[str, str] = ({c: f"{c}_labs" for c in ORGAN_COLS} | {"high_dose": "high_dose_detail"}
                           | {f: f"{f}_detail" for f in ASSUMED})  # session 34: an input set by an assume_* option
#: the parameter naming the "multiple vasopressors" count, and its feature under
#: CrsLegacyOptions.multiple_vasopressors = "concurrent" (session 33)
MULTIPLE_PARAM = "multiple_count_feature"
CONCURRENT = {"n_vasopressors": "n_vasopressors_concurrent",
              "n_vasopressors_excl_vasopressin": "n_vasopressors_excl_vasopressin_concurrent"}
#: a table's top-level key: rule id -> rule ids that, named in the same reason, leave it out of the
#: reason and the day's ``rule`` (wording only: the grade does not change)
SUPERSEDED = "reason_superseded_by"

GRADE_SCHEMA: dict[str, pl.DataType] = {
    "subject_id": pl.String,
    "day": pl.Int64,
    "scale": pl.String,
    "grade": pl.Int64,
    "grade_min": pl.Int64,
    "grade_max": pl.Int64,
    "rule": pl.String,
    "reason": pl.String,
    "missing_inputs": pl.List(pl.String),
    "possible_rules": pl.List(pl.String),
    "not_assessed": pl.List(pl.String),
    "evidence": EVIDENCE,
}
_BIG = 1 << 20  # feature order: the rules at grade_min first, then those that could raise it


@dataclass(frozen=True)
class _Rule:
    id: str
    grade: int
    text: str
    features: tuple[str, ...]  # per condition, the feature it reads (options resolved)
    conditions: tuple[Leaf, ...]


@dataclass(frozen=True)
class _Scale:
    """A scale's table compiled against its options (cached per scale and options)."""

    scale: str
    table: CriteriaTable
    params: dict[str, Any]
    rules: tuple[_Rule, ...]  # highest grade first (the table's order)
    bindings: dict[str, str | Range]
    superseded: dict[int, tuple[int, ...]]  # rule index -> indices of the rules that leave it out of a reason

    @property
    def label(self) -> str:
        return LABELS[self.scale]

    @property
    def gated_by_fever(self) -> bool:
        return self.params.get("gate", "fever_or_waiver") == "fever_or_waiver"

    @property
    def published(self) -> list[int]:
        """Rule indices in the published order (lowest grade first, the table's order within a grade)."""
        return sorted(range(len(self.rules)), key=lambda k: (self.rules[k].grade, k))

    def not_assessed(self) -> list[str]:
        return [f"{n['id']}: {n['text']}" for n in self.table.extra("not_derived")]


_SCALES: dict[tuple[str, str], _Scale] = {}


def _compiled(scale: str, options: CrsLegacyOptions | None) -> _Scale:
    if scale not in TABLE_NAMES:
        raise ValueError(f"unknown CRS scale {scale!r}; known: {SCALES}")
    opts = (options or CrsLegacyOptions()).applied()  # multiple_vasopressors: as the ASTCT option if None
    table = load_table(TABLE_NAMES[scale])
    params = {**table.defaults, **dict(opts.scale_params.get(scale, {}))}
    concurrent = opts.multiple_vasopressors == "concurrent"
    key = (scale, repr(sorted(params.items())), concurrent)
    hit = _SCALES.get(key)
    if hit is not None and hit.table is table:
        return hit
    if params.get("gate", "fever_or_waiver") not in GATES:
        raise ValueError(f"{scale}: gate must be 'fever_or_waiver' or 'none'")
    rules, bindings = [], {}
    for r in table.rule_set(RULE_SET):
        for what in ("grade", "text"):
            if getattr(r, what) is None:
                raise ValueError(f"{scale}: rule {r.id!r} lacks {what!r}")
        conds = tuple(leaves(c) for c in r.when)
        if any(len(c) != 1 or not isinstance(c[0], Leaf) for c in conds):
            raise ValueError(f"{scale}: rule {r.id} must be a list of {{feature, op, value}} conditions")
        feats = []
        for (leaf,) in conds:
            name = option_name(leaf.feature)
            if name is not None and name not in params:
                raise ValueError(f"{scale}: parameter ${name} is not defined in the table defaults")
            feature = params[name] if name is not None else leaf.feature
            if concurrent and name == MULTIPLE_PARAM:
                feature = CONCURRENT.get(feature, feature)
            if feature not in FEATURES:
                raise ValueError(f"{scale}: rule {r.id} uses unknown feature {feature!r}")
            kind, cols, _ = FEATURES[feature]
            if kind == "range":
                bindings[leaf.feature] = Range(*cols)
            elif kind == "const" or (feature == "crs_gate" and params.get("gate") == "none"):
                bindings[leaf.feature] = ALWAYS
            elif feature != leaf.feature:
                bindings[leaf.feature] = feature
            feats.append(feature)
        rules.append(_Rule(r.id, r.grade, render(r, params), tuple(feats), tuple(c[0] for c in conds)))
    if [r.grade for r in rules] != sorted((r.grade for r in rules), reverse=True):
        raise ValueError(f"{scale}: the rules of {RULE_SET!r} must go from the highest grade down")
    index = {r.id: k for k, r in enumerate(rules)}
    superseded = {}
    for rid, by in ((table.model_extra or {}).get(SUPERSEDED) or {}).items():
        unknown = sorted({rid, *by} - set(index))
        if unknown:
            raise ValueError(f"{scale}: {SUPERSEDED} names unknown rule(s) {unknown}")
        superseded[index[rid]] = tuple(index[b] for b in by)
    out = _SCALES[key] = _Scale(scale, table, params, tuple(rules), bindings, superseded)
    return out


def scale_table(scale: str, options: CrsLegacyOptions | None = None) -> dict[str, Any]:
    """The criteria table of ``scale`` with ``$name`` parameters resolved and features checked: version,
    citation, params, rules (published order: ``id, grade, when, text, citation, status, gated``) and
    the criteria the study format cannot express (``not_derived``)."""
    s = _compiled(scale, options)
    t = s.table
    raw = {r.id: r for r in t.rule_set(RULE_SET)}
    rules = []
    for k in s.published:
        r = s.rules[k]
        when = [{"feature": f, "op": c.op, "value": s.params.get(option_name(c.value), c.value)
                 if option_name(c.value) else c.value} for f, c in zip(r.features, r.conditions)]
        rules.append({"id": r.id, "grade": r.grade, "when": when, "text": r.text, "citation": raw[r.id].citation,
                      "status": t.status_of(raw[r.id]), "gated": "crs_gate" in r.features})
    return {"scale": scale, "version": t.version, "citation": t.citation, "params": s.params, "rules": rules,
            "not_derived": t.extra("not_derived")}


def _listed(items: list[tuple[str, pl.Expr]]) -> pl.Expr:
    return Compiler.listed(items)


def _missing(s: _Scale, rows: pl.DataFrame, raising: list[pl.Expr], truths: list[list[pl.Expr]]) -> pl.DataFrame:
    """``rid, missing_inputs`` for the rows whose grade is a range: what is unknown in the conditions
    left unknown by the rules that could raise the grade (the inputs' reasons, else the feature)."""
    flags: dict[str, list[pl.Expr]] = {}
    for k, r in enumerate(s.rules):
        for j, f in enumerate(r.features):
            flags.setdefault(f, []).append(raising[k] & truths[k][j].is_null())
    flagged = (rows.select("rid", *(pl.any_horizontal(v).alias(f) for f, v in flags.items()))
               .unpivot(index="rid", variable_name="feature", value_name="flag").filter(pl.col("flag")))
    reasons = (rows.select("rid", "unknown_reasons").explode("unknown_reasons").drop_nulls("unknown_reasons")
               .select("rid", pl.col("unknown_reasons").str.splitn(":", 2).alias("p")).unnest("p")
               .select("rid", pl.col("field_0").alias("feature"), pl.col("field_1").fill_null("").alias("why")))
    return (flagged.join(reasons, on=["rid", "feature"], how="left")
            .group_by("rid").agg(pl.coalesce("why", "feature").unique().sort().alias("missing_inputs")))


def _evidence(s: _Scale, rows: pl.DataFrame, top: list[pl.Expr], raising: list[pl.Expr]) -> pl.DataFrame:
    """``rid, evidence``: the source rows of the features of the rules holding at grade_min, then of
    those that could raise it (published order), group by group, each row once."""
    pos, keys = 0, {}
    for k in s.published:
        for f in s.rules[k].features:
            keys.setdefault(f, []).append(pl.when(top[k]).then(pos).when(raising[k]).then(_BIG + pos))
            pos += 1
    gkeys: dict[str, list[pl.Expr]] = {}
    for f, ks in keys.items():
        for i, g in enumerate(FEATURES[f][2]):
            gkeys.setdefault(g, []).append(pl.min_horizontal(ks) * 8 + i)
    if not gkeys:
        return rows.select("rid", pl.lit([], dtype=EVIDENCE).alias("evidence")).head(0)
    groups = (rows.select("rid", *(pl.min_horizontal(v).alias(g) for g, v in gkeys.items()))
              .unpivot(index="rid", variable_name="grp", value_name="gkey").drop_nulls("gkey"))
    items = (rows.select("rid", "feature_evidence").with_columns(
        pl.int_ranges(pl.col("feature_evidence").list.len()).alias("pos")).explode("feature_evidence", "pos")
        .drop_nulls("feature_evidence")
        .select("rid", "pos", pl.col("feature_evidence").str.splitn("|", 2).alias("p")).unnest("p")
        .select("rid", "pos", pl.col("field_0").alias("grp"), pl.col("field_1").fill_null("").alias("ref")))
    return (groups.join(items, on=["rid", "grp"]).sort("rid", "gkey", "pos")
            .group_by("rid", maintain_order=True).agg(pl.col("ref").unique(maintain_order=True).alias("evidence")))


def grade_crs_scale(inputs: pl.DataFrame, scale: str, options: CrsLegacyOptions | None = None, *,
                    for_maximum: bool = False) -> pl.DataFrame:
    """Daily grade (or range) of one legacy scale from :func:`crs_daily_inputs` output.

    ``for_maximum``: only the days :func:`cartlab.grading.crs_legacy.derive_crs_legacy_subject` reads
    for a subject's maximum (the first day at the subject's highest ``grade_min``, and every day whose
    ``grade_max`` exceeds it); the reasons and evidence are built for those days only.
    """
    s = _compiled(scale, options)
    if inputs.height == 0:
        return pl.DataFrame(schema=GRADE_SCHEMA)
    frame = inputs.with_row_index("rid").with_columns(pl.lit(True).alias(ALWAYS))
    dec = decision(s.table, RULE_SET, s.params, bindings=s.bindings, otherwise_grade=0, schema=frame.schema)
    x = dec.apply(frame, "g", "grade", "grade_max", "rule", truths=True)
    gmin, gmax = pl.col("g_grade"), pl.col("g_grade_max")
    if for_maximum:
        top_min = gmin.max().over("subject_id")
        at_top = gmin == top_min
        first_at_top = at_top & (pl.col("day") == pl.col("day").filter(at_top).min().over("subject_id"))
        x = x.filter(first_at_top | (gmax > top_min))
    truth = [pl.col(f"g_truth_{r.id}") for r in s.rules]
    top = [t.fill_null(False) & (gmin == r.grade) for t, r in zip(truth, s.rules)]
    raising = [t.is_null() & (gmin < r.grade) for t, r in zip(truth, s.rules)]
    cond = [[dec.compiler.truth(c) for c in r.conditions] for r in s.rules]
    ranged = x.filter(gmax > gmin)
    missing = _missing(s, ranged, raising, cond)
    evidence = _evidence(s, x.filter(pl.col("g_rule").is_not_null() | (gmax > gmin)), top, raising)
    x = (x.join(missing, on="rid", how="left", maintain_order="left")
         .join(evidence, on="rid", how="left", maintain_order="left"))
    label = s.label
    # a rule is left out of the reason (and the day's rule) when a rule superseding it is named too
    shown_top = [t & ~pl.any_horizontal([top[j] for j in s.superseded[k]]) if k in s.superseded else t
                 for k, t in enumerate(top)]
    shown_up = [t & ~pl.any_horizontal([raising[j] for j in s.superseded[k]]) if k in s.superseded else t
                for k, t in enumerate(raising)]

    def text(r: _Rule) -> pl.Expr:  # the rule's text, with the labs that set an organ-toxicity grade
        details = [pl.when(pl.col(DETAILS[f]).is_not_null()).then(pl.format(": {}", pl.col(DETAILS[f])))
                   .otherwise(pl.lit("")) for f in dict.fromkeys(r.features) if f in DETAILS and DETAILS[f] in x.columns]
        return pl.concat_str([pl.lit(r.text), *details])

    holding = pl.concat_str([pl.when(shown_top[k]).then(text(s.rules[k])) for k in s.published], separator="; ",
                            ignore_nulls=True)
    day_rule = pl.coalesce(*(pl.when(shown_top[k]).then(pl.lit(r.id)) for k, r in enumerate(s.rules)), pl.col("g_rule"))
    other = pl.col("other_cause").is_not_null() & (pl.col("other_cause") != "")
    gate_false = (pl.col("crs_gate") == False).fill_null(False) if s.gated_by_fever else pl.lit(False)
    head = (pl.when(pl.col("g_rule").is_not_null()).then(pl.format(f"{label} grade {{}}: {{}}", gmin, holding))
            .when(gate_false & other).then(pl.format(
                f"{label} grade 0: not CRS that day (attributed to another cause: {{}})", pl.col("other_cause")))
            .when(gate_false).then(pl.lit(f"{label} grade 0: no CRS that day (no fever, fever requirement not waived)"))
            .otherwise(pl.lit(f"{label} grade 0: no criterion of the scale met")))
    ups = pl.concat_str([pl.when(shown_up[k]).then(pl.lit(f"grade {r.grade} if {r.text}")) for k, r in enumerate(s.rules)],
                        separator="; ", ignore_nulls=True)
    tail = pl.when(gmax > gmin).then(pl.format(" - could be up to grade {} ({}); unknown: {}", gmax, ups,
                                               pl.col("missing_inputs").list.join(", "))).otherwise(pl.lit(""))
    empty = pl.lit([], dtype=pl.List(pl.String))
    return x.select(
        "subject_id", "day", pl.lit(scale).alias("scale"),
        pl.when(gmin == gmax).then(gmin).alias("grade"), gmin.alias("grade_min"), gmax.alias("grade_max"),
        pl.coalesce(day_rule, pl.lit(f"{scale}.g0")).alias("rule"), pl.concat_str([head, tail]).alias("reason"),
        pl.col("missing_inputs").fill_null(empty),
        _listed(sorted(((r.id, raising[k]) for k, r in enumerate(s.rules)), key=lambda t: t[0])).alias("possible_rules"),
        pl.lit(s.not_assessed(), dtype=pl.List(pl.String)).alias("not_assessed"),
        pl.col("evidence").fill_null(pl.lit([], dtype=EVIDENCE)),
    ).cast(GRADE_SCHEMA)
