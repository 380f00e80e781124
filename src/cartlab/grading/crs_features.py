"""Daily CRS features shared by the ASTCT 2019 engine and the older scales, so they cannot disagree.

:func:`crs_day_features` gives, per subject and calendar day (``day`` = floor of the study day):

* the vasopressors counted toward CRS, as *drugs* resolved through one vocabulary
  (:mod:`cartlab.grading.vasopressors`): ``vasopressor_agents``, ``n_vasopressors``,
  ``n_vasopressors_excl_vasopressin`` (ASTCT 2019 Table 1: vasopressin never counts toward
  "multiple"), ``vasopressors_unknown`` and the evidence ``vaso_refs``;
* whether the day's fever is attributed to another cause (ASTCT 2019, Lee DW et al., Biol Blood
  Marrow Transplant 2019;25:625, Table 1 footnote: fever "not attributable to any other cause"):
  ``other_cause`` (True on such days, null elsewhere), ``other_cause_reason``, ``other_cause_refs``.

How "attributed elsewhere" is recognised is a set of documented options (:class:`FeverAttribution`,
defaults in ``criteria/astct_crs_2019.yaml``): an event of ``other_cause_events`` (``infection``)
covering the day through ``other_cause_event_window_days``; an intervention of
``other_cause_intervention_categories`` (``antipyretic``) given for one of ``other_cause_indications``
(``infection``) that day. An intervention given explicitly for CRS that day keeps the day a CRS day
(``crs_indication_overrides_other_cause``). No attribution data means the fever counts.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import polars as pl

from cartlab.grading.common import EVIDENCE, evidence_ref, expand_days, load_criteria
from cartlab.grading.vasopressors import UNSPECIFIED, resolve_agents
from cartlab.io.clock import is_timed
from cartlab.model import Study

KEY = ["subject_id", "day"]

#: option name in the criteria table / CrsOptions -> FeverAttribution field
ATTRIBUTION_OPTIONS = {
    "other_cause_attribution": "enabled",
    "other_cause_events": "events",
    "other_cause_event_window_days": "event_window_days",
    "other_cause_intervention_categories": "intervention_categories",
    "other_cause_indications": "indications",
    "other_cause_scope": "scope",
    "crs_indication_overrides_other_cause": "crs_indication_overrides",
}
SCOPES = ("day", "fever")
#: the values a fever threshold and an SBP cut-off can mean (checked when CRS options of either
#: engine are made): outside, a value in the wrong unit (100.4, a Fahrenheit fever) or a typing error
VITAL_OPTION_LIMITS: dict[str, tuple[float, float, str]] = {
    "fever_threshold_c": (35.0, 43.0, "a body temperature in degrees Celsius"),
    "sbp_cutoff_mmhg": (40.0, 200.0, "a systolic blood pressure in mmHg"),
}


def norm_text(expr: pl.Expr) -> pl.Expr:
    """Vocabulary matching: lower case, ``_``/space runs as one space, trimmed."""
    return expr.cast(pl.String).str.to_lowercase().str.replace_all(r"[\s_]+", " ").str.strip_chars()


def norm_values(values) -> list[str]:
    return [" ".join(str(v).lower().replace("_", " ").split()) for v in values]


def counted(column: str, indications, count_empty: bool = True) -> pl.Expr:
    """Rows that count toward CRS (spec "Attribution"): indication/attribution empty or in ``indications``."""
    n = norm_text(pl.col(column))
    return (pl.lit(count_empty) & (n.is_null() | (n == ""))) | n.is_in(norm_values(indications)).fill_null(False)


#: oxygen devices whose support is the gas flow: at a recorded 0 L/min (FiO2, if recorded, 0.21 = room
#: air) the row gives no oxygen (ASTCT 2019 Table 1 "requiring" oxygen; convention
#: crs.conv.zero_flow_oxygen, review 40 B1). A ventilator's or CPAP's flow column is not its support.
FLOW_DEVICES = ("blow_by", "nasal_cannula", "high_flow_nasal_cannula", "face_mask", "non_rebreather", "venturi")


def zero_flow_oxygen(columns) -> pl.Expr:
    """Intervention rows (frame ``columns``) of oxygen by a :data:`FLOW_DEVICES` device at a recorded
    ``o2_flow_lpm`` of 0 (and ``fio2`` empty or 0.21): not oxygen given, never null."""
    if "o2_flow_lpm" not in columns or "o2_device" not in columns:
        return pl.lit(False)
    fio2 = (pl.col("fio2") <= 0.21).fill_null(True) if "fio2" in columns else pl.lit(True)
    return ((norm_text(pl.col("category")) == "oxygen") & norm_text(pl.col("o2_device")).is_in(norm_values(FLOW_DEVICES))
            & (pl.col("o2_flow_lpm") == 0) & fio2).fill_null(False)


@dataclass(frozen=True)
class FeverAttribution:
    """How a fever "attributable to another cause" is recognised (see the module docstring).

    ``scope`` "day": such a day is not a CRS day at all; "fever": only its fever stops counting
    (hypotension/hypoxia still count once the fever requirement is waived).
    """

    enabled: bool
    events: tuple[str, ...]
    event_window_days: tuple[int, int]
    intervention_categories: tuple[str, ...]
    indications: tuple[str, ...]
    scope: str
    crs_indication_overrides: bool

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"other_cause_scope must be one of {SCOPES}, not {self.scope!r}")
        w = tuple(self.event_window_days)
        if len(w) != 2 or any(int(x) != x or x < 0 for x in w):
            raise ValueError("other_cause_event_window_days must be two whole numbers >= 0 "
                             f"(days before, days after the event), not {self.event_window_days!r}")

    @classmethod
    def from_options(cls, resolved: dict[str, Any]) -> FeverAttribution:
        """From a resolved options dict keyed by the criteria table's option names."""
        kw = {f: resolved[o] for o, f in ATTRIBUTION_OPTIONS.items()}
        for f in ("events", "intervention_categories", "indications", "event_window_days"):
            kw[f] = tuple(kw[f])
        return cls(**kw)

    @classmethod
    def from_table(cls, criteria: str = "astct_crs_2019", **overrides: Any) -> FeverAttribution:
        """The table's defaults, with field overrides (``FeverAttribution.from_table(enabled=False)``)."""
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown FeverAttribution field(s) {sorted(unknown)}")
        base = cls.from_options(load_criteria(criteria)["defaults"])
        return cls(**{**{f.name: getattr(base, f.name) for f in fields(cls)}, **overrides})


def _floor_day(col: str) -> pl.Expr:
    return pl.col(col).floor().cast(pl.Int64)


def _timed(frame: pl.DataFrame) -> pl.Expr:
    """A row whose start AND end are known to the time of day (each a fractional day or a datetime with a
    clock time, :func:`cartlab.io.clock.is_timed`); a date alone says only which day."""
    def col(name: str) -> str | None:
        return name if name in frame.columns else None

    return (pl.col("end_day").is_not_null() & is_timed("start_day", col("start_datetime"))
            & is_timed("end_day", col("end_datetime")))


def _concurrent(days: pl.DataFrame) -> pl.DataFrame:
    """Per subject and day (``d``): ``_overlap`` (two named drugs other than vasopressin ran at the
    same time that day: timed rows whose [start, end] intervals overlap within the day) and
    ``_untimed`` (a named drug other than vasopressin has a row without times that day)."""
    named = days.filter(~pl.col("vaso_is_vasopressin") & (pl.col("vaso_agent") != UNSPECIFIED))
    t = named.filter(pl.col("_timed")).select("subject_id", "d", "vaso_agent", "start_day", "end_day")
    pairs = t.join(t, on=["subject_id", "d"], suffix="_b").filter(
        (pl.col("vaso_agent") < pl.col("vaso_agent_b"))
        & (pl.max_horizontal("start_day", "start_day_b") < pl.min_horizontal("end_day", "end_day_b"))
        & (pl.max_horizontal("start_day", "start_day_b") < pl.col("d") + 1)
        & (pl.min_horizontal("end_day", "end_day_b") > pl.col("d")))
    return (named.group_by("subject_id", "d").agg((~pl.col("_timed")).any().alias("_untimed"))
            .join(pairs.select("subject_id", "d").unique().with_columns(pl.lit(True).alias("_overlap")),
                  on=["subject_id", "d"], how="left")
            .with_columns(pl.col("_overlap").fill_null(False)))


def vasopressor_days(study: Study, indications, count_empty: bool = True, concurrent: bool = False) -> pl.DataFrame:
    """Per subject and day: the vasopressor drugs counted toward CRS (one vocabulary for all engines);
    a row with a dose recorded as 0 is not a vasopressor given (ASTCT Table 1 "requiring a
    vasopressor"; convention crs.conv.zero_dose_vasopressor, review 38 B5).

    ``concurrent`` (ASTCT option ``multiple_vasopressors="concurrent"``): drugs other than vasopressin
    count as several only when their timed [start, end] intervals overlap; on a day whose rows carry
    no times the lower count is 1 and the upper the same-day count (``vasopressor_times_missing``)."""
    iv = study.interventions.filter(
        (norm_text(pl.col("category")) == "vasopressor") & counted("indication", indications, count_empty)
    )
    if "dose" in iv.columns:  # a dose recorded as 0 is not a vasopressor given (crs.conv.zero_dose_vasopressor)
        iv = iv.filter((pl.col("dose") != 0).fill_null(True))
    iv = resolve_agents(iv.with_columns(evidence_ref().alias("ref")), "agent", warn=True)
    days = expand_days(iv).sort("subject_id", "d", "src_row", nulls_last=True)
    agent = pl.col("vaso_agent")
    out = (
        days.group_by("subject_id", "d")
        .agg(
            agent.unique().sort().alias("vasopressor_agents"),
            agent.n_unique().cast(pl.Int64).alias("n_vasopressors"),
            # at least: the named drugs; rows without an agent could be one of them (or vasopressin), so
            # they add a drug only when no agent is named that day
            (agent.filter(~pl.col("vaso_is_vasopressin") & (agent != UNSPECIFIED)).n_unique()
             + ((agent == UNSPECIFIED).any() & (agent != UNSPECIFIED).not_().all()).cast(pl.Int64)).cast(pl.Int64)
            .alias("n_vasopressors_excl_vasopressin"),
            agent.filter(~pl.col("vaso_known")).unique().sort().alias("vasopressors_unknown"),
            # missing is not negative: each row without an agent could be another drug than the rest
            (agent.filter(~pl.col("vaso_is_vasopressin") & (agent != UNSPECIFIED)).n_unique()
             + pl.col("ref").filter(agent == UNSPECIFIED).n_unique()).cast(pl.Int64)
            .alias("n_vasopressors_excl_vasopressin_max"),
            pl.col("ref").drop_nulls().unique(maintain_order=True).alias("vaso_refs"),
        )
    )
    if not concurrent:
        return out.rename({"d": "day"})
    conc = _concurrent(days.with_columns(_timed(days).alias("_timed")))
    out = out.join(conc, on=["subject_id", "d"], how="left").with_columns(
        pl.col("_overlap").fill_null(False), pl.col("_untimed").fill_null(False))
    several = pl.col("n_vasopressors_excl_vasopressin") >= 2
    return out.with_columns(
        (several & ~pl.col("_overlap") & pl.col("_untimed")).alias("vasopressor_times_missing"),
        (several & ~pl.col("_overlap") & ~pl.col("_untimed")).alias("vasopressors_sequential"),
        pl.when(several & ~pl.col("_overlap")).then(pl.lit(1, dtype=pl.Int64))
        .otherwise(pl.col("n_vasopressors_excl_vasopressin")).alias("n_vasopressors_excl_vasopressin"),
        # the upper count: the same-day count unless every row was timed (then what overlapped)
        pl.when(several & ~pl.col("_overlap") & ~pl.col("_untimed"))
        .then(pl.col("n_vasopressors_excl_vasopressin_max") - pl.col("n_vasopressors_excl_vasopressin") + 1)
        .otherwise(pl.col("n_vasopressors_excl_vasopressin_max")).alias("n_vasopressors_excl_vasopressin_max"),
    ).drop("_overlap", "_untimed").rename({"d": "day"})


def other_cause_days(study: Study, attribution: FeverAttribution) -> pl.DataFrame:
    """Days whose fever is attributed to another cause (columns ``other_cause`` True, reason, refs)."""
    schema = {"subject_id": pl.String, "day": pl.Int64, "other_cause": pl.Boolean,
              "other_cause_reason": pl.String, "other_cause_refs": EVIDENCE}
    if not attribution.enabled:
        return pl.DataFrame(schema=schema)
    before, after = (int(x) for x in attribution.event_window_days)
    ev = study.events.filter(
        norm_text(pl.col("event")).is_in(norm_values(attribution.events))
        & pl.col("day").is_not_null()
        & (norm_text(pl.col("attribution")).fill_null("") != "crs")
    ).with_columns(
        pl.int_ranges(_floor_day("day") - before, _floor_day("day") + after + 1).alias("d"),
        pl.format("{} on day {}{}", pl.col("event"), _floor_day("day"),
                  pl.when(pl.col("detail").is_not_null()).then(pl.format(" ({})", pl.col("detail")))
                  .otherwise(pl.lit(""))).alias("why"),
        evidence_ref().alias("ref"),
    ).explode("d")
    iv = study.interventions.filter(
        norm_text(pl.col("category")).is_in(norm_values(attribution.intervention_categories))
        & norm_text(pl.col("indication")).is_in(norm_values(attribution.indications)).fill_null(False)
    ).with_columns(
        pl.format("{} for {}{}", pl.col("category"), pl.col("indication"),
                  pl.when(pl.col("agent").is_not_null()).then(pl.format(" ({})", pl.col("agent")))
                  .otherwise(pl.lit(""))).alias("why"),
        evidence_ref().alias("ref"),
    )
    parts = [f.select("subject_id", "d", "why", "ref") for f in (ev, expand_days(iv))]
    src = pl.concat(parts)
    if attribution.crs_indication_overrides:
        crs = expand_days(study.interventions.filter(norm_text(pl.col("indication")) == "crs"))
        src = src.join(crs.select("subject_id", "d").unique(), on=["subject_id", "d"], how="anti",
                       maintain_order="left")
    # stable: a day's reasons in a fixed order (events, then interventions, each in file order)
    src = src.sort("subject_id", "d", maintain_order=True)
    return (
        src.group_by("subject_id", "d", maintain_order=True)
        .agg(pl.col("why").unique(maintain_order=True).str.join("; ").alias("other_cause_reason"),
             pl.col("ref").drop_nulls().unique(maintain_order=True).alias("other_cause_refs"))
        .select("subject_id", pl.col("d").alias("day"), pl.lit(True).alias("other_cause"),
                "other_cause_reason", "other_cause_refs")
        .cast(schema)
    )


def crs_day_features(
    study: Study, *, indications, count_empty: bool = True, attribution: FeverAttribution | None = None,
    concurrent_vasopressors: bool = False,
) -> pl.DataFrame:
    """The shared daily layer: vasopressor drugs and fever attribution per subject and day.

    Used by :func:`cartlab.grading.crs.crs_features` (ASTCT) and
    :func:`cartlab.grading.crs_legacy.crs_daily_inputs` (Lee 2014, Penn, CARTOX, MSKCC).
    """
    attribution = attribution or FeverAttribution.from_table()
    vaso = vasopressor_days(study, indications, count_empty, concurrent_vasopressors)
    oc = other_cause_days(study, attribution)
    return vaso.join(oc, on=KEY, how="full", coalesce=True).sort(KEY)
