"""Daily inputs of the older CRS scales (Lee 2014, Penn, CARTOX/MDACC, MSKCC), on frames.

:func:`crs_daily_inputs` derives, per subject and calendar day, every feature the scale tables
(``criteria/crs_<scale>.yaml``) name: Tmax and fever (a fever attributed to another cause does not
count, as for ASTCT), lowest SBP, the vasopressors (drugs and fever attribution from
:func:`cartlab.grading.crs_features.crs_day_features`, the layer shared with the ASTCT engine; the
time course - hours, episodes, norepinephrine-equivalent dose and the Lee 2014 high-dose rule - from
:mod:`cartlab.grading.crs_vaso_course`), oxygen support (device, flow, FiO2), organ-toxicity grades
(from an optional ``organ_grades`` frame), FFP / cryoprecipitate / fibrinogen, IV therapy,
hospitalization (unknown unless given) and CRS death. An input that cannot be known is null with a
reason (missing is not negative).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from cartlab._deprecated import renamed
from cartlab.grading import crs_features as cf
from cartlab.grading.common import (
    FIRST_DAY_MODES,
    assessment_start,
    interventions_from_start,
    load_criteria,
    rows_from_start,
)
from cartlab.grading.crs_legacy_absent import (
    PANEL,
    check_options,
    hospitalization_days,
    lab_label,
    open_end_inputs,
    organ_parts,
)
from cartlab.grading.crs_legacy_oxygen import _floor, _items, support_days
from cartlab.grading.crs_legacy_waiver import follow_astct, legacy_waiver, waiver_days
from cartlab.grading.crs_vaso_course import SAME_AGENT_OVERLAP, high_dose_detail, vaso_course, vaso_rows
from cartlab.grading.vasopressors import resolve_agents
from cartlab.model import Study
from cartlab.provenance import EVIDENCE, evidence_ref
from cartlab.units import conversion

__all__ = ["SCALES", "CrsLegacyOptions", "derive_crs_daily_inputs"]

#: Scale keys, in output order, and their criteria tables.
SCALES: tuple[str, ...] = ("lee2014", "penn", "cartox", "mskcc")
TABLE_NAMES = {"lee2014": "crs_lee2014", "penn": "crs_penn", "cartox": "crs_cartox", "mskcc": "crs_mskcc"}
LABELS = {"lee2014": "Lee 2014", "penn": "Penn", "cartox": "CARTOX", "mskcc": "MSKCC", "astct": "ASTCT"}
KEY = ["subject_id", "day"]
#: values of CrsLegacyOptions.organ_labs (how days without organ labs are read)
ORGAN_LABS = ("same_day", "last_known_within_days", "absent_is_normal")
#: values of CrsLegacyOptions.organ_labs_required (which labs settle the all-organ inputs on a day)
ORGAN_LABS_REQUIRED = ("renal_and_liver", "each", "any")
#: inputs never recorded in study format v1 -> the CrsLegacyOptions field that may assume them
#: (None: unknown, a range naming it; session 34)
ASSUMED = {"fluid_boluses": "assume_fluid_boluses", "refractory_hypotension": "assume_refractory_hypotension",
           "life_threatening_hypotension": "assume_life_threatening_hypotension"}
#: values of CrsLegacyOptions.multiple_vasopressors (Lee 2014 / CARTOX "multiple vasopressors")
MULTIPLE_VASOPRESSORS = ("same_day", "concurrent")
#: values of CrsLegacyOptions.fever_waiver_scope (as the ASTCT option of that name)
WAIVER_SCOPES = ("course", "episode")
#: the options that default to the ASTCT CRS option of the same name (None = follow it; session 36)
FOLLOWS_ASTCT = ("waiver_categories", "fever_waiver_scope", "fever_waiver_requires_crs", "multiple_vasopressors",
                 "absent_interventions", "waiver_indications", "fever_threshold_c")


@dataclass
class CrsLegacyOptions:
    """Documented choices behind the legacy-scale derivation (defaults in brackets).

    * ``counted_indications`` [("CRS",)] / ``count_empty_indication`` [True]: which
      *interventions* count toward CRS (spec "Attribution": empty or ``CRS``). Deaths do not read
      them: a death attributed to CRS is grade 5, one attributed to another cause is not CRS, and a
      death with an empty attribution leaves the day open up to grade 5 (``missing_inputs``
      "attribution of death"), inside or outside a CRS episode. (The ASTCT engine instead counts an
      unattributed death inside a CRS episode as grade 5, convention crs.conv.unattributed_death;
      session 33 kept the legacy range, tested in tests/test_crs_legacy.py.)
    * ``multiple_vasopressors`` [None = the ASTCT option ``crs.multiple_vasopressors`` of the
      analysis, "same_day" by default; session 36]: how Lee 2014 / CARTOX "multiple vasopressors" is
      counted. "same_day": two or more drugs given on the same calendar day (the study format's
      ASTCT convention, so that the cross-scale table compares like with like; convention rows
      lee2014.conv.multiple_vasopressors / cartox.conv.multiple_vasopressors). "concurrent": two or
      more drugs running at the same time, from the vasopressor time course; a switch from one drug
      to another is one vasopressor, and two drugs on one day without times of day are a range
      naming the missing times (session 33, review33 A1/B1).
    * ``fever_threshold_c`` [None = the ASTCT option ``crs.fever_threshold_c``, 38.0]: fever is Tmax >= this
      (spec; ASTCT 2019 and CARTOX ">= 38 C"); session 40: it follows the analysis's CRS threshold.
    * ``sbp_cutoff_mmhg`` [90]: hypotension is the day's lowest SBP below this (spec; CARTOX
      "SBP < 90 mmHg").
    * The fever waiver (ASTCT 2019 Table 1 footnote; the default ``gate`` ``fever_or_waiver`` of
      every scale table: a CRS day has a fever, or its fever requirement is waived; a scale's gate can
      be set to ``none`` through ``scale_params``) is the ASTCT engine's, one derivation for both
      (:mod:`cartlab.grading.crs_legacy_waiver`; session 36). Its options default to None = the
      ASTCT CRS options of the analysis (``crs.*``; outside an analysis the ASTCT table's defaults),
      so ``--set crs.fever_waiver_scope=episode`` reaches the older scales too; a value set here
      applies to the older scales only:

      - ``waiver_categories`` [None = ``crs.waiver_categories``, with "antipyretic" when
        ``crs.antipyretics_waive_fever``; tocilizumab, corticosteroid by default]: the intervention
        categories, given for CRS, that waive the fever. A list set here is the whole list (add
        "antipyretic" to it to let antipyretics waive).
      - ``fever_waiver_scope`` [None = ``crs.fever_waiver_scope``, "course" by default]: "course"
        (spec): from the first day one is given to the end of follow-up; "episode": inside the ASTCT
        CRS episode in which it was given (a later episode needs a fever, then its own agent), the
        episodes being the ASTCT engine's, graded with the analysis's CRS options.
      - ``waiver_indications`` [None = ``crs.waiver_indications``; that one None = these scales'
        ``counted_indications``]: the indications whose tocilizumab/corticosteroid waive the fever,
        under either scope (review 40 B3; e.g. ("CRS", "ICANS")).
      - ``fever_waiver_requires_crs`` [None = ``crs.fever_waiver_requires_crs``, False by default]:
        True: only an agent given on or after the first ASTCT CRS day starts the waiver (not a
        prophylactic dose).
    * ``first_day`` ["infusion"]: grading starts at the first CAR-T infusion, as the ASTCT engine's
      ``CrsOptions.first_day``: rows before it (a timed row on the infusion day before its time
      included) are not read, an intervention running across it counts from it, days before its
      day are not graded (CRS follows the cell infusion). A number: that study day (0.0 before
      session 32); "all" or None grades every day.
    * ``day_precision`` ["bounds"]: a whole-number day only says which day (the engine carries the
      earliest/latest possible times, so "norepinephrine days 8-10" lasted at least 24 h and at
      most 72 h); "full_days" reads whole-number days as full calendar days. A fractional day or a
      ``*_datetime`` with a time is an exact time point.
    * ``episode_gap_hours`` [0.0]: vasopressor support interrupted for at most this long is one
      episode (MSKCC "vasopressors >= 24 h" uses the cumulative episode duration).
    * ``same_agent_overlap`` ["range"]: rows of the same vasopressor (after the vocabulary's synonyms)
      running at the same time, for the high-dose table: "range" - the drug's rate is between its
      highest row and the rows' sum, high dose unknown (naming the rows) when the threshold lies
      between; "sum" adds them (cartlab before session 45); "max" takes the highest row (review 45;
      vasopressor_equivalents.yaml same_agent_overlap).
    * ``assume_hospitalized`` [None]: hospitalization is unknown unless a ``hospitalization`` frame
      says so; True/False fills the days it does not cover.
    * ``assume_refractory_hypotension`` [None]: MSKCC grade 4 "hypotension refractory to high-dose
      vasopressors" - refractoriness is not recorded in the study format, so on a CRS day with
      high-dose vasopressors MSKCC is a range up to 4 naming it (session 33); False reads every
      such hypotension as not refractory (cartlab before session 33: MSKCC 3 at most), True as
      refractory.
    * ``assume_life_threatening_hypotension`` [None]: CARTOX grade 4 "life-threatening hypotension"
      (Neelapu 2018; PMC7006459 Table 2) - a clinical judgement the study format does not record, so
      on a CRS day whose hypotension already meets CARTOX grade 3 (high-dose or multiple
      vasopressors, the scale's next lower hypotension row) CARTOX is a range up to 4 naming it
      (session 34); False reads no hypotension as life-threatening (cartlab before session 34:
      CARTOX 3 at most on such a day), True every such hypotension. Other days cannot reach it.
    * ``assume_fluid_boluses`` [None]: Penn grade 3 "hypotension treated with IV fluids (multiple
      fluid boluses for blood pressure support)" (Porter 2018) - study format v1 has no way to
      record fluid boluses (no intervention category; an ``other`` row with a free-text agent is
      not read as one), so a hypotensive CRS day without a vasopressor is Penn open up to 3, naming
      "IV fluid boluses (not recorded in study format v1)"; True reads every hypotensive day as
      treated with multiple boluses (Penn 3), False as not (session 34).
    * ``coagulopathy_agents`` / ``iv_therapy_categories`` / ``organ_vocabulary`` [None = the
      vocabularies in crs_penn.yaml / crs_lee2014.yaml ``inputs``].
    * ``iv_route_unknown_categories`` [None = crs_penn.yaml ``inputs``: corticosteroid, anakinra]: Penn
      grade 2 "need for IV therapies": a row of these categories counted toward CRS is given IV or not
      (study format v1 records no route), so it leaves ``iv_therapy`` unknown (Penn up to 2, naming
      the route) instead of false; ``()``: read as not IV (cartlab before session 45; review 45).
    * ``scale_params`` [{}]: per-scale overrides of a table's ``defaults`` (e.g.
      ``{"lee2014": {"multiple_count_feature": "n_vasopressors_excl_vasopressin"}}``).
    * ``fever_attribution`` [None = the ASTCT table's defaults]: how a fever attributed to another
      cause is recognised (:class:`~cartlab.grading.crs_features.FeverAttribution`); such a fever
      does not count, and with scope "day" the day is not a CRS day.
    * ``organ_labs`` ["last_known_within_days", with ``organ_labs_days`` 1: labs drawn every other
      day, as CAR-T follow-up often is, still settle a day; a cartlab convention]: which days of a
      supplied ``organ_grades`` frame say something about
      organ toxicity (missing is not negative). "same_day": an organ-toxicity input is known on a day
      only when a lab that defines it was measured that day (a row of that group: any organ lab for
      ``organ_grade_max``, creatinine for ``creatinine_grade``, ALT/AST for the transaminase grade,
      LFTs for ``lft_grade``, any other organ lab for the non-transaminase grade); without one it is
      unknown ("no organ labs that day"), so the day's grade is a range. "last_known_within_days":
      the group's labs of the latest day at most ``organ_labs_days`` days before stand in (named
      with their day in the reason). "absent_is_normal": a day without rows has no organ toxicity
      (cartlab before 2026-12; for sponsors who grade that way).
    * ``organ_labs_days`` [1]: the look-back of "last_known_within_days", in calendar days.
    * ``organ_labs_open`` ["crs_signs"]: on which CRS days missing organ labs leave the grade open:
      days with a CRS sign (fever or an unknown temperature, hypotension or an unknown blood
      pressure, oxygen, a vasopressor); on an afebrile day without any, a CRS day only by the fever
      waiver (with fever_waiver_scope "course", to the end of follow-up), absent labs read as no
      organ toxicity.
      "every_crs_day" opens every CRS day without labs.
    * ``organ_labs_required`` ["renal_and_liver"]: which labs settle the all-organ inputs
      (``organ_grade_max``, ``organ_grade_max_non_transaminase``) on a day. "renal_and_liver": a
      creatinine and a liver lab (ALT, AST, bilirubin, ALP, GGT: the chemistry panel was drawn),
      each of the day or within the look-back; a day with only one of them
      keeps the grade the measured labs set as a lower bound and stays open up to 4, naming the
      lab that is missing (a normal creatinine does not say the liver was normal; missing is not
      negative; convention crs_legacy.conv.organ_labs_required: a liver lab stands for the panel, the
      reason names the panel labs - creatinine, ALT/AST, bilirubin - not measured). "each": a creatinine,
      an ALT/AST and a bilirubin must each be measured, else a range naming the missing ones (review 38
      B1). "any": any organ lab settles them (cartlab before session 32).
    * ``absent_interventions`` [None = ``crs.absent_interventions``, "unknown"] / ``open_end_infusion``
      ["unknown"]: an absent interventions.csv, a vasopressor without an end (review 38 A1, A2; see
      :mod:`cartlab.grading.crs_legacy_absent`).
    """

    counted_indications: tuple[str, ...] = ("CRS",)
    count_empty_indication: bool = True
    fever_threshold_c: float | None = None
    sbp_cutoff_mmhg: float = 90.0
    waiver_categories: tuple[str, ...] | None = None
    first_day: float | str | None = "infusion"
    day_precision: str = "bounds"
    episode_gap_hours: float = 0.0
    same_agent_overlap: str = "range"
    assume_hospitalized: bool | None = None
    assume_refractory_hypotension: bool | None = None
    assume_life_threatening_hypotension: bool | None = None
    assume_fluid_boluses: bool | None = None
    coagulopathy_agents: tuple[str, ...] | None = None
    iv_therapy_categories: tuple[str, ...] | None = None
    iv_route_unknown_categories: tuple[str, ...] | None = None
    organ_vocabulary: Mapping[str, Iterable[str]] | None = None
    scale_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    fever_attribution: cf.FeverAttribution | None = None
    organ_labs: str = "last_known_within_days"
    organ_labs_days: int = 1
    organ_labs_open: str = "crs_signs"
    organ_labs_required: str = "renal_and_liver"
    multiple_vasopressors: str | None = None
    fever_waiver_scope: str | None = None
    fever_waiver_requires_crs: bool | None = None
    absent_interventions: str | None = None
    waiver_indications: tuple[str, ...] | None = None
    open_end_infusion: str = "unknown"

    def __post_init__(self) -> None:
        for name in ("assume_hospitalized", "assume_refractory_hypotension", "assume_life_threatening_hypotension",
                     "assume_fluid_boluses"):
            if getattr(self, name) not in (None, True, False):
                raise ValueError(f"{name} must be None (not recorded: a range), True or False, "
                                 f"not {getattr(self, name)!r}")
        if self.multiple_vasopressors not in (None, *MULTIPLE_VASOPRESSORS):
            raise ValueError(f"multiple_vasopressors must be None (as the ASTCT option) or one of "
                             f"{MULTIPLE_VASOPRESSORS}, not {self.multiple_vasopressors!r}")
        check_options(self)  # absent_interventions, open_end_infusion (review 38)
        if self.fever_waiver_scope not in (None, *WAIVER_SCOPES):
            raise ValueError(f"fever_waiver_scope must be None (as the ASTCT option) or one of {WAIVER_SCOPES}, "
                             f"not {self.fever_waiver_scope!r}")
        if self.fever_waiver_requires_crs not in (None, True, False):
            raise ValueError(f"fever_waiver_requires_crs must be None (as the ASTCT option), True or False, "
                             f"not {self.fever_waiver_requires_crs!r}")
        for name in ("waiver_categories", "waiver_indications"):
            v = getattr(self, name)
            if v is not None:
                if isinstance(v, str) or not all(isinstance(c, str) for c in v):
                    raise ValueError(f"{name} must be None (as the ASTCT option) or a list of "
                                     f"{'intervention categories' if name == 'waiver_categories' else 'indications'}, "
                                     f"not {v!r}")
                setattr(self, name, tuple(v))
        if self.same_agent_overlap not in SAME_AGENT_OVERLAP:
            raise ValueError(f"same_agent_overlap must be one of {SAME_AGENT_OVERLAP}, not {self.same_agent_overlap!r}")
        if self.day_precision not in ("bounds", "full_days"):
            raise ValueError(f"day_precision must be 'bounds' or 'full_days', not {self.day_precision!r}")
        if self.organ_labs_open not in ("crs_signs", "every_crs_day"):
            raise ValueError(f"organ_labs_open must be 'crs_signs' or 'every_crs_day', not {self.organ_labs_open!r}")
        if not (self.first_day is None or self.first_day in FIRST_DAY_MODES
                or (isinstance(self.first_day, (int, float)) and not isinstance(self.first_day, bool))):
            raise ValueError(f"first_day must be 'infusion', 'all' or a study day, not {self.first_day!r}")
        if self.organ_labs_required not in ORGAN_LABS_REQUIRED:
            raise ValueError(f"organ_labs_required must be one of {ORGAN_LABS_REQUIRED}, not {self.organ_labs_required!r}")
        if self.organ_labs not in ORGAN_LABS:
            raise ValueError(f"organ_labs must be one of {ORGAN_LABS}, not {self.organ_labs!r}")
        if isinstance(self.organ_labs_days, bool) or not isinstance(self.organ_labs_days, int) or self.organ_labs_days < 0:
            raise ValueError(f"organ_labs_days must be a whole number of days >= 0, not {self.organ_labs_days!r}")
        for name, (low, high, what) in cf.VITAL_OPTION_LIMITS.items():
            v = getattr(self, name)
            if isinstance(v, (int, float)) and not low <= v <= high:
                raise ValueError(f"{name}={v!r} is not {what} (expected {low} to {high})")
        if not isinstance(self.scale_params, Mapping):
            raise ValueError(f"scale_params must be a mapping {{scale: {{option: value}}}}, not {self.scale_params!r}")
        unknown = set(self.scale_params) - set(SCALES)
        if unknown:
            raise ValueError(f"scale_params for unknown scale(s) {sorted(unknown)}; known: {SCALES}")
        defaults = self.scale_defaults()
        for scale, params in self.scale_params.items():
            if not isinstance(params, Mapping):
                raise ValueError(f"scale_params.{scale} must be a mapping {{option: value}}, not {params!r}")
            bad = sorted(set(params) - set(defaults[scale]))
            if bad:
                raise ValueError(f"scale_params.{scale}: unknown option(s) {bad}; the options of "
                                 f"{TABLE_NAMES[scale]}.yaml are {', '.join(defaults[scale])}")

    @staticmethod
    def scale_defaults() -> dict[str, dict[str, Any]]:
        """Each scale table's ``defaults`` (the options ``scale_params`` may override)."""
        from cartlab.criteria import load_table

        return {scale: dict(load_table(TABLE_NAMES[scale]).defaults) for scale in SCALES}

    def resolved(self) -> dict[str, Any]:
        """Every option as applied, ``scale_params`` as each scale's table defaults overlaid with
        the overrides (what ``analysis.json`` records)."""
        from dataclasses import asdict

        out = asdict(self.applied())
        out["scale_params"] = {scale: {**d, **dict(self.scale_params.get(scale, {}))}
                               for scale, d in self.scale_defaults().items()}
        return out

    def following(self, crs: Any) -> CrsLegacyOptions:
        """A copy that takes the options left None (:data:`FOLLOWS_ASTCT`) from ``crs``, the ASTCT
        :class:`~cartlab.grading.crs.CrsOptions` of the analysis (None: the ASTCT table's defaults),
        and derives the fever waiver with them (how :class:`cartlab.analyze.Analysis` links the two)."""
        out = dataclasses.replace(self)
        out._crs = crs
        return out

    def astct_options(self) -> Any:
        """The ASTCT CRS options this one follows (:meth:`following`; else the defaults)."""
        from cartlab.grading.crs import CrsOptions

        return getattr(self, "_crs", None) or CrsOptions()

    def applied(self) -> CrsLegacyOptions:
        """A copy with every option of :data:`FOLLOWS_ASTCT` left None set to the ASTCT value it
        follows (idempotent; the link to the ASTCT options is kept)."""
        return self if getattr(self, "_applied", False) else follow_astct(self)


INPUT_SCHEMA: dict[str, pl.DataType] = {
    "subject_id": pl.String,
    "day": pl.Int64,
    "tmax_c": pl.Float64,
    "fever": pl.Boolean,
    "fever_other_cause": pl.Boolean,
    "other_cause": pl.String,
    "sbp_min_mmhg": pl.Float64,
    "sbp_low": pl.Boolean,
    "waiver_active": pl.Boolean,
    "crs_gate": pl.Boolean,
    "vasopressor_agents": pl.List(pl.String),
    "n_vasopressors": pl.Int64,
    "n_vasopressors_excl_vasopressin": pl.Int64,
    # session 33: the most drugs running at the same time that day (surely / possibly)
    "n_vasopressors_concurrent_min": pl.Int64,
    "n_vasopressors_concurrent_max": pl.Int64,
    "n_vasopressors_excl_vasopressin_concurrent_min": pl.Int64,
    "n_vasopressors_excl_vasopressin_concurrent_max": pl.Int64,
    "ne_equiv_max_ug_min": pl.Float64,
    "ne_equiv_complete": pl.Boolean,
    "vaso_hours_day_min": pl.Float64,
    "vaso_hours_day_max": pl.Float64,
    "vaso_episode_hours_min": pl.Float64,
    "vaso_episode_hours_max": pl.Float64,
    "high_dose": pl.Boolean,
    "high_dose_rule": pl.String,
    # session 33: the high-dose table row and dose behind high_dose = true, for the reasons
    "high_dose_detail": pl.String,
    # session 33: MSKCC grade 4 "hypotension refractory to high-dose vasopressors": never recorded
    "refractory_hypotension": pl.Boolean,
    # session 34: CARTOX grade 4 "life-threatening hypotension": never recorded
    "life_threatening_hypotension": pl.Boolean,
    # session 34: "assumed (CrsLegacyOptions.<option>=True)" when an assume_* option sets the input
    # (named in the reason of a rule that holds by it), else null
    **{f"{f}_detail": pl.String for f in ASSUMED},
    "o2_any": pl.Boolean,
    "o2_devices": pl.List(pl.String),
    "o2_flow_max_lpm": pl.Float64,
    "fio2_min": pl.Float64,
    "fio2_max": pl.Float64,
    "ventilation_level": pl.Int64,
    "organ_grade_max": pl.Int64,
    "organ_grade_max_non_transaminase": pl.Int64,
    "organ_grade_max_transaminase": pl.Int64,
    "creatinine_grade": pl.Int64,
    "lft_grade": pl.Int64,
    "organ_grade_max_labs": pl.String,
    "organ_grade_max_non_transaminase_labs": pl.String,
    "organ_grade_max_transaminase_labs": pl.String,
    "creatinine_grade_labs": pl.String,
    "lft_grade_labs": pl.String,
    # the grade the gradable labs settle (a lower bound where an ungradable lab could raise it)
    "organ_grade_max_known": pl.Int64,
    "organ_grade_max_non_transaminase_known": pl.Int64,
    "organ_grade_max_transaminase_known": pl.Int64,
    "creatinine_grade_known": pl.Int64,
    "lft_grade_known": pl.Int64,
    # review 38 B1: the panel labs (creatinine, ALT/AST, bilirubin) not measured for organ_grade_max
    "organ_labs_unmeasured": pl.List(pl.String),
    "blood_products": pl.Boolean,
    "hospitalized": pl.Boolean,
    "iv_therapy": pl.Boolean,
    "fluid_boluses": pl.Boolean,
    "death_crs": pl.Boolean,
    "unknown_reasons": pl.List(pl.String),
    "feature_evidence": pl.List(pl.String),
}

ORGAN_COLS = ("organ_grade_max", "organ_grade_max_non_transaminase", "organ_grade_max_transaminase",
              "creatinine_grade", "lft_grade")
#: per organ-toxicity input, the labs whose absence on a day leaves it unknown ("no <this> that day")
ORGAN_GROUP_LABS = {"organ_grade_max": "organ labs", "organ_grade_max_non_transaminase": "organ lab other than ALT/AST",
                    "organ_grade_max_transaminase": "ALT/AST lab", "creatinine_grade": "creatinine lab",
                    "lft_grade": "liver function lab"}
_SEP = "\x1f"  # joins strings while a list is built (never in a reason)


def _vocab(opts: CrsLegacyOptions) -> dict[str, Any]:
    lee, penn = load_criteria(TABLE_NAMES["lee2014"]), load_criteria(TABLE_NAMES["penn"])
    organ = opts.organ_vocabulary or lee["inputs"]["organ_vocabulary"]
    return {
        "organ": {k: cf.norm_values(v) for k, v in organ.items()},
        "coag": cf.norm_values(opts.coagulopathy_agents or penn["inputs"]["coagulopathy_agents"]),
        "iv": cf.norm_values(opts.iv_therapy_categories or penn["inputs"]["iv_therapy_categories"]),
        "iv_route": cf.norm_values(penn["inputs"]["iv_route_unknown_categories"] if opts.iv_route_unknown_categories is None
                                else opts.iv_route_unknown_categories),
    }


def _vitals(study: Study) -> pl.DataFrame:
    """The day's highest temperature (degC) and lowest SBP, each with the row that sets it, read as the
    ASTCT engine reads them (:func:`cartlab.grading.censored.day_extreme`, session 35): a censored result
    (">38.3", "<90") bounds the day's extreme, so ``tmax_c`` / ``sbp_min_mmhg`` are the point value
    when one number settles it, and ``_tmax_*`` / ``_sbp_*`` hold the interval (lo, hi, open ends)."""
    from cartlab.grading.censored import day_extreme, row_intervals

    obs = study.observations.lazy().select(
        "subject_id", "day", "param", "unit", "value", "censor", "censor_limit", "src_file", "src_row").filter(
        pl.col("param").is_in(["TEMP", "SYSBP"]) & pl.col("day").is_not_null()
        & (pl.col("value").is_not_null() | pl.col("censor").is_not_null()))
    units = [u for u in obs.filter(pl.col("param") == "TEMP").select(pl.col("unit").drop_nulls().unique(
        maintain_order=True)).collect()["unit"].to_list() if u not in ("degC", "C", "°C")]
    value, limit = pl.col("value"), pl.col("censor_limit")
    for u in units:  # canonical frames hold degC already; convert anything else (unknown unit = error)
        c = conversion(u, "degC")
        is_u = (pl.col("param") == "TEMP") & (pl.col("unit") == u)
        value = pl.when(is_u).then(pl.col("value") * c.scale + c.offset).otherwise(value)
        limit = pl.when(is_u).then(pl.col("censor_limit") * c.scale + c.offset).otherwise(limit)
    rows = row_intervals(obs.with_columns(value.alias("value"), limit.alias("censor_limit"), _floor("day").alias("d"),
                                    evidence_ref().alias("ref")).collect())
    out = []
    for param, name, col, highest in (("TEMP", "tmax", "tmax_c", True), ("SYSBP", "sbp", "sbp_min_mmhg", False)):
        ext = day_extreme(rows.filter(pl.col("param") == param), name, highest=highest)
        out.append(ext.select(
            "subject_id", pl.col("d").alias("day"), pl.col(name).alias(col), pl.col(f"{name}_ref"),
            *(pl.col(f"{name}_{k}").alias(f"_{name}_{k}") for k in ("lo", "hi", "lo_open", "hi_open"))))
    return out[0].join(out[1], on=KEY, how="full", coalesce=True)


def _interventions(study: Study, opts: CrsLegacyOptions, vocab: dict[str, Any]) -> pl.DataFrame:
    """Interventions counted toward CRS (row order kept in ``i``) with their normalised category."""
    iv = study.interventions.filter(
        pl.col("start_day").is_not_null()
        & cf.counted("indication", opts.counted_indications, opts.count_empty_indication).fill_null(False))
    cat = cf.norm_text(pl.col("category")).fill_null("")
    return resolve_agents(iv, warn=False).with_row_index("i").with_columns(
        cat.alias("cat"), evidence_ref().alias("ref"),
        ((cat == "other") & cf.norm_text(pl.col("agent")).is_in(vocab["coag"]).fill_null(False)).alias("is_coag"),
        cat.is_in(vocab["iv"]).alias("is_iv"), (cat.is_in(vocab["iv_route"]) & ~cat.is_in(vocab["iv"])).alias("iv_route"))


def _vasopressors(study: Study, iv: pl.DataFrame, opts: CrsLegacyOptions) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per day covered by a vasopressor row: the time course (crs_vaso_course) and its evidence
    (every running row; the subjects row whose weight converted a dose per kg)."""
    rows = vaso_rows(iv.filter(pl.col("cat") == "vasopressor"), study.subjects, opts.day_precision)
    course = vaso_course(rows, episode_gap_hours=opts.episode_gap_hours, same_agent_overlap=opts.same_agent_overlap
                         ).with_columns(pl.lit(True).alias("vaso_day"))
    act = rows.select("subject_id", "idx", "ref", "weight_ref", pl.col("days").alias("day")).explode("day").drop_nulls("day")
    items = pl.concat([_items(act, "vasopressor", "ref"), _items(act, "weight", "weight_ref")])
    return course, items


def _organ(organ_grades: pl.DataFrame, vocab: dict[str, Any], opts: CrsLegacyOptions
           ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Per day and organ-toxicity input (``ORGAN_COLS``): the highest grade of its labs (all,
    non-transaminase, transaminase, creatinine, LFTs; cytopenias excluded by the vocabulary),
    ``_has_<column>`` (a lab of the group that day, or within ``organ_labs_days`` before with
    "last_known_within_days"), ``<column>_labs`` (the labs at that grade, named with their CTCAE
    grade) and the evidence of the rows read; plus the days with organ rows (the grid).
    A row without a grade is a lab value that could not be graded (its reference range missing): a
    grade it could raise is unknown (null, ``_unk_<column>``; ``_organ_unknown_<column>`` names the
    organs), never 0. Optional columns ``term`` (CTCAE term), ``value``, ``unit`` name the lab."""
    voc = vocab["organ"]
    og = organ_grades.with_row_index("i").filter(pl.col("day").is_not_null())
    names = og.select(pl.col("organ").unique())
    names = names.with_columns(cf.norm_text(pl.col("organ")).fill_null("").alias("organ_n"))
    og = (og.join(names, on="organ", how="left", nulls_equal=True, maintain_order="left")
          .filter(~pl.col("organ_n").is_in(voc.get("excluded", []))))
    fallback = pl.format("organ_grades:{}", pl.col("i") + 1)
    if "evidence" in og.columns:
        refs = pl.col("evidence").fill_null(pl.lit([], dtype=EVIDENCE))
    elif "src_file" in og.columns and "src_row" in og.columns:
        refs = pl.concat_list(pl.coalesce(evidence_ref(), fallback))
    else:
        refs = pl.concat_list(fallback)
    is_t = pl.col("is_transaminase").fill_null(False) if "is_transaminase" in og.columns else pl.lit(False)
    opt = {c: (pl.col(c).cast(t) if c in og.columns else pl.lit(None, dtype=t))
           for c, t in (("term", pl.String), ("value", pl.Float64), ("unit", pl.String))}
    og = og.select("subject_id", _floor("day").alias("day"), "i", "organ", "organ_n", pl.col("grade").cast(pl.Int64).alias("g"),
                   is_t.alias("is_t"), refs.alias("refs"), *(e.alias(f"_{c}") for c, e in opt.items()))
    grid = og.select(KEY).unique()
    window = opts.organ_labs_days if opts.organ_labs == "last_known_within_days" else 0
    if window:
        og = (og.with_columns(pl.int_ranges(0, window + 1).alias("lag")).explode("lag")
              .with_columns((pl.col("day") + pl.col("lag")).alias("day")))
    else:
        og = og.with_columns(pl.lit(0, dtype=pl.Int64).alias("lag"))
    g, lag = pl.col("g"), pl.col("lag")
    organ = pl.col("organ").cast(pl.String).fill_null("an unnamed lab value")
    creat, lft = pl.col("organ_n").is_in(voc.get("creatinine", [])), pl.col("organ_n").is_in(voc.get("lft", []))
    liver = pl.col("is_t") | lft
    bili = pl.col("organ_n").is_in(["bili", "bilirubin", "blood bilirubin increased"])
    groups = {"organ_grade_max": pl.lit(True), "organ_grade_max_non_transaminase": ~pl.col("is_t"),
              "organ_grade_max_transaminase": pl.col("is_t"), "creatinine_grade": creat, "lft_grade": liver,
              "_bilirubin": bili}
    # the labs the all-organ inputs need on a day (organ_labs_required): a renal and a liver lab, the
    # chemistry panel drawn; a normal creatinine alone does not say the liver was normal, so a day
    # with one of them only stays open above what it measured
    parts = organ_parts(opts.organ_labs_required)  # review 38 B1: "each" also needs ALT/AST and bilirubin
    # the rows an input reads on a day: its group's rows of the latest lab day (the day itself with
    # lag 0), and for an all-organ input also the latest rows of each lab it needs
    read = {c: (e & (lag == lag.filter(e).min().over(KEY))) if window else e for c, e in groups.items()}
    for c, need in parts.items():  # an input reads only its own kind of row (no ALT for non-transaminase)
        read[c] = read[c] | (pl.any_horizontal([read[k] for k in need.values()]) & groups[c])
    og = og.with_columns(*(r.alias(f"_r_{c}") for c, r in read.items()))
    read = {c: pl.col(f"_r_{c}") for c in groups}
    cols = [c for c in groups if not c.startswith("_")]
    aggs, none = [], pl.lit([], dtype=pl.List(pl.String))
    for c in cols:
        e, top = groups[c], g.filter(read[c]).max()
        missing = [pl.when(~groups[k].any()).then(pl.lit(name)) for name, k in parts.get(c, {}).items()]
        aggs += [top.fill_null(0).clip(lower_bound=0).alias(c),
                 # an ungraded value can only raise a grade below 4
                 ((g.is_null() & read[c]).any() & (top.fill_null(0) < 4)).alias(f"_unk_{c}"),
                 organ.filter(g.is_null() & read[c]).unique().sort().alias(f"_organ_unknown_{c}"),
                 # the labs an all-organ input needs and lacks (a grade 4 already settles it)
                 (pl.when(top.fill_null(0) < 4).then(pl.concat_list(missing).list.drop_nulls()).otherwise(none)
                  if missing else none).alias(f"_missing_{c}"),
                 e.any().alias(f"_has_{c}"), top.alias(f"_top_{c}")]
    unmeasured = [pl.when(~groups[k].any()).then(pl.lit(name)) for name, k in PANEL.items()]
    days = og.group_by(KEY).agg(*aggs, pl.concat_list(unmeasured).list.drop_nulls().alias("organ_labs_unmeasured"))
    # the labs at each input's grade, named (labels built for the few rows with a grade >= 1 only)
    pos = og.filter(g >= 1)
    pos = pos.with_columns(lab_label(pl.col("_term"), organ, pl.col("_value"), pl.col("_unit"), g, lag,
                                      pl.col("day")).alias("label"))
    for c in cols:
        labs = (pos.filter(read[c]).join(days.select(*KEY, f"_top_{c}"), on=KEY)
                .filter(g == pl.col(f"_top_{c}"))
                .group_by(KEY).agg(pl.col("label").unique().sort().str.join(", ").alias(f"{c}_labs")))
        days = days.join(labs, on=KEY, how="left")
    used = og.filter(g.is_not_null() & pl.any_horizontal([read[c] for c in cols]))
    ev = (used.sort(*KEY, "lag", "i") if window else used).select(*KEY, pl.col("refs").alias("ref")).explode("ref")
    return days, _items(ev, "organ", "ref"), grid


def _deaths(study: Study) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per day of a death event: ``death_crs`` (attributed to CRS: True, no attribution: unknown,
    another: False; the last row of the day) and the evidence."""
    ev = study.events.with_row_index("i").filter((cf.norm_text(pl.col("event")) == "death") & pl.col("day").is_not_null())
    att = cf.norm_text(pl.col("attribution")).fill_null("")
    ev = ev.select("subject_id", _floor("day").alias("day"), "i", evidence_ref().alias("ref"),
                   pl.when(att == "crs").then(True).when(att == "").then(None).otherwise(False).alias("death_crs"))
    return (ev.unique(KEY, keep="last", maintain_order=True).select(*KEY, "death_crs", pl.lit(True).alias("death_day")),
            _items(ev, "death", "ref"))


def _listed(parts: list[pl.Expr]) -> pl.Expr:
    """Strings (nulls skipped) as a sorted list of distinct values."""
    return pl.concat_str(parts, separator=_SEP, ignore_nulls=True).str.split(_SEP).list.unique().list.sort()


def derive_crs_daily_inputs(
    study: Study,
    options: CrsLegacyOptions | None = None,
    *,
    organ_grades: pl.DataFrame | None = None,
    hospitalization: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per subject and calendar day, every input of the legacy CRS scales (see ``INPUT_SCHEMA``).

    ``organ_grades`` (optional): columns ``subject_id, day, organ, grade, is_transaminase`` (CTCAE
    grades from the CTCAE engine, one row per graded lab value, grade 0 included); optional
    ``term``, ``value``, ``unit`` (named in the reasons) and provenance in ``evidence`` (list) or
    ``src_file`` / ``src_row``. When it is None every organ-toxicity input is unknown; when given,
    a day without the labs of an input leaves that input unknown (``options.organ_labs``
    "same_day"), or reads the last labs within ``organ_labs_days`` ("last_known_within_days"), or
    reads as no organ toxicity ("absent_is_normal").
    ``hospitalization`` (optional): ``subject_id, day, hospitalized`` (bool).

    Unknown inputs are null and ``unknown_reasons`` holds ``"<feature>:<what is missing>"``;
    ``feature_evidence`` holds ``"<feature>|<file>:<row>"``.
    """
    opts = (options or CrsLegacyOptions()).applied()
    original = study
    attribution = opts.fever_attribution or cf.FeverAttribution.from_table()
    # from the first CAR-T infusion (first_day), as the ASTCT engine: earlier rows are not read, an
    # intervention running across it counts from it (a steroid before it starts no fever waiver)
    start = assessment_start(study, "all" if opts.first_day is None else opts.first_day)
    if start is not None:
        study = dataclasses.replace(study, observations=rows_from_start(study.observations, start),
                                    interventions=interventions_from_start(study.interventions, start))
    vocab = _vocab(opts)
    iv = _interventions(study, opts, vocab)
    vaso, vaso_items = _vasopressors(study, iv, opts)
    shared = cf.crs_day_features(study, indications=opts.counted_indications,
                              count_empty=opts.count_empty_indication, attribution=attribution)
    vitals = _vitals(study)
    support, support_items = support_days(iv)  # oxygen at 0 L/min not counted (review 40 B1)
    deaths, death_items = _deaths(study)
    # a death attributed to another cause adds no day of its own (spec "Attribution": it does not count
    # toward CRS; a day with nothing else recorded is not assessed, as a day without any row)
    # a day with only a corticosteroid/anakinra (route unknown) adds no day to grade, as before review 45
    route_only = ~(pl.col("o2_any") | pl.col("blood_products") | pl.col("iv_therapy"))
    parts = [vitals, vaso, support.filter(~route_only), deaths.filter(pl.col("death_crs").is_null() | pl.col("death_crs"))]
    items = [support_items, vaso_items]
    organ = None
    if organ_grades is not None:
        organ, organ_items, organ_days = _organ(organ_grades, vocab, opts)
        parts.append(organ_days)
        items.append(organ_items)
    items.append(death_items)
    grid = pl.concat([p.select(KEY) for p in parts]).unique()
    if start is not None:
        grid = (grid.join(start, on="subject_id", how="left")
                .filter(pl.col("_start").is_null() | (pl.col("day") >= pl.col("_start").floor())).drop("_start"))
    grid = grid.sort(KEY)
    other = shared.filter(pl.col("other_cause").fill_null(False))
    waiver = legacy_waiver(original, iv, opts)
    x = grid
    for part in (vitals, vaso, support, deaths, *([organ] if organ is not None else [])):
        x = x.join(part, on=KEY, how="left")
    x = (x.join(shared.filter(pl.col("n_vasopressors").is_not_null())
                .select(*KEY, "vasopressor_agents", "n_vasopressors", "n_vasopressors_excl_vasopressin"), on=KEY, how="left")
         .join(other.select(*KEY, pl.col("other_cause_reason").alias("other_cause")), on=KEY, how="left")
         .join(waiver_days(grid, waiver), on=KEY, how="left"))
    if hospitalization is not None:
        x = x.join(hospitalization_days(hospitalization), on=KEY, how="left")
    else:
        x = x.with_columns(pl.lit(None, dtype=pl.Boolean).alias("h"), pl.lit(None, dtype=pl.String).alias("h_ref"))
    x = _assemble(x, opts, attribution, organ_grades is not None)
    if organ_grades is None:
        x = x.with_columns(*(pl.lit(None, dtype=pl.String).alias(f"{c}_labs") for c in ORGAN_COLS),
                           pl.lit(None, dtype=pl.List(pl.String)).alias("organ_labs_unmeasured"))
    other_items = _items(other.select(*KEY, pl.col("other_cause_refs").alias("ref")).explode("ref"), "other_cause", "ref")
    items.insert(1, other_items)
    items.append(pl.concat([_items(x, "fever", "tmax_ref"), _items(x, "sbp", "sbp_ref"),
                            _items(x.filter(pl.col("waiver_active")), "waiver", "w_ref"), _items(x, "hospitalized", "h_ref")]))
    # the sources in the order they record evidence (a day's items keep it; each item once)
    evidence = (pl.concat(items).unique(maintain_order=True)
                .group_by(KEY, maintain_order=True).agg(pl.col("item").alias("feature_evidence")))
    x = (x.join(evidence, on=KEY, how="left", maintain_order="left")
         .with_columns(pl.col("feature_evidence").fill_null(pl.lit([], dtype=pl.List(pl.String)))))
    return open_end_inputs(x, iv, opts).select(*INPUT_SCHEMA).cast(INPUT_SCHEMA)  # review 38 A2


def _when(opts: CrsLegacyOptions) -> str:
    return ("that day" if opts.organ_labs == "same_day"
            else f"that day or in the {opts.organ_labs_days} day(s) before")


def _no_labs(c: str, opts: CrsLegacyOptions) -> pl.Expr:
    """Why organ-toxicity input ``c`` is unknown on a day without its labs."""
    when = _when(opts)
    return (pl.when(pl.col("_has_organ_grade_max").fill_null(False))
            .then(pl.lit(f"no {ORGAN_GROUP_LABS[c]} {when}")).otherwise(pl.lit(f"no organ labs {when}")))


def _assemble(x: pl.DataFrame, opts: CrsLegacyOptions, attribution: cf.FeverAttribution, organ_given: bool
              ) -> pl.DataFrame:
    """The grid joined with every source -> the features, their defaults and unknown reasons."""
    tmax, sbp = pl.col("tmax_c"), pl.col("sbp_min_mmhg")

    def at_least(name: str, point: pl.Expr, cut: float) -> pl.Expr:
        """Whether the day's interval ``_<name>_lo/_hi`` (open ends) is >= ``cut``: true, false, or null
        when it straddles ``cut`` (a censored bound, session 35) or nothing was recorded."""
        lo, hi = pl.col(f"_{name}_lo"), pl.col(f"_{name}_hi")
        no = hi.is_not_null() & ((hi < cut) | (pl.col(f"_{name}_hi_open").fill_null(False) & (hi <= cut)))
        return pl.when(lo.is_not_null() & (lo >= cut)).then(True).when(no).then(False).otherwise(None)

    other = pl.col("other_cause").is_not_null() & (pl.col("other_cause") != "")
    day_scope = attribution.scope == "day"
    raw_fever = pl.when(tmax.is_nan()).then(False).otherwise(at_least("tmax", tmax, opts.fever_threshold_c))
    fever_other = (raw_fever & other).fill_null(False)
    fever = pl.when(fever_other).then(False).otherwise(raw_fever)
    waiver = pl.col("waiver_active").fill_null(False)
    gate = pl.when(fever.fill_null(False) | waiver).then(True).when(fever.is_null()).then(None).otherwise(False)
    if day_scope:
        # a fever day attributed to another cause is not a CRS day; an afebrile day has no fever to
        # attribute (the waiver keeps it open), and an unknown temperature would be attributed too
        gate = pl.when(fever_other).then(False).when(other & raw_fever.is_null()).then(waiver).otherwise(gate)
    sbp_low = pl.when(sbp.is_nan()).then(False).otherwise(~at_least("sbp", sbp, opts.sbp_cutoff_mmhg))
    hosp = pl.coalesce("h", pl.lit(opts.assume_hospitalized, dtype=pl.Boolean))
    x = x.with_columns(fever.alias("fever"), fever_other.alias("fever_other_cause"), sbp_low.alias("sbp_low"),
                       waiver.alias("waiver_active"), hosp.alias("hospitalized"),
                       pl.when(pl.col("death_day").is_null()).then(False).otherwise(pl.col("death_crs")).alias("death_crs"))
    x = x.with_columns(gate.alias("crs_gate"))
    # session 33: drugs running together; at least one when one was given that day (its times may
    # be known to the day only), at most what the longest time scenario lets overlap
    for f in ("n_vasopressors", "n_vasopressors_excl_vasopressin"):
        lo = pl.max_horizontal(pl.col(f"{f}_concurrent_min").fill_null(0), pl.col(f).fill_null(0).clip(upper_bound=1))
        x = x.with_columns(lo.alias(f"{f}_concurrent_lo")).with_columns(
            pl.max_horizontal(pl.col(f"{f}_concurrent_max").fill_null(0), pl.col(f"{f}_concurrent_lo"))
            .alias(f"{f}_concurrent_hi"))
    fever_unknown = pl.col("fever").is_null() & ~other  # a fever that day would be attributed: not CRS
    # a day without organ labs is open only where CRS shows (fever, or unknown; hypotension, or
    # unknown; oxygen; a vasopressor) unless organ_labs_open = every_crs_day: an afebrile day with none
    # of them is a CRS day only by the fever waiver, which lasts to the end of follow-up
    sign = (pl.col("fever").fill_null(True) | pl.col("sbp_low").fill_null(True) | pl.col("o2_any").fill_null(False)
            | (pl.col("n_vasopressors").fill_null(0) > 0))
    open_day = pl.lit(True) if opts.organ_labs_open == "every_crs_day" else sign

    def partial(c: str) -> pl.Expr:  # some organ labs that day, not every one the input needs
        if not organ_given or opts.organ_labs == "absent_is_normal":
            return pl.lit(False)
        return (pl.col(f"_has_{c}").fill_null(False) & (pl.col(f"_missing_{c}").list.len().fill_null(0) > 0)
                & open_day)
    unknown = [
        pl.when(pl.col("high_dose_reasons").list.len() > 0).then(
            pl.col("high_dose_reasons").list.eval(pl.lit("high_dose:") + pl.element()).list.join(_SEP)),
        pl.when(pl.col("duration_unknown").fill_null(False)).then(pl.lit(
            "vaso_episode_hours:vasopressor duration (times known to the day only, or end not recorded)")),
        pl.when(fever_unknown).then(pl.lit("fever:temperature")),
        pl.when(pl.col("sbp_low").is_null()).then(pl.lit("sbp_low:systolic blood pressure")),
        pl.when(pl.col("crs_gate").is_null()).then(pl.lit("crs_gate:temperature")),
        pl.when(pl.col("fio2_unknown").fill_null(False)).then(pl.lit("fio2:FiO2 of the oxygen support")),
        *([] if organ_given else [pl.lit(f"{c}:organ toxicity grades (organ_grades not supplied)") for c in ORGAN_COLS]),
        *([pl.when(~pl.col(f"_has_{c}").fill_null(False) & open_day).then(pl.lit(f"{c}:") + _no_labs(c, opts))
           for c in ORGAN_COLS] if organ_given and opts.organ_labs != "absent_is_normal" else []),
        *([pl.when(partial(c)).then(pl.col(f"_missing_{c}").list.eval(
            pl.lit(f"{c}:no ") + pl.element() + pl.lit(f" lab {_when(opts)} (other organ labs measured)")
        ).list.join(_SEP)) for c in ORGAN_COLS] if organ_given and opts.organ_labs != "absent_is_normal" else []),
        *([pl.when(pl.col(f"_unk_{c}").fill_null(False)).then(pl.col(f"_organ_unknown_{c}").list.eval(
            pl.lit(f"{c}:CTCAE grade of ") + pl.element()
            + pl.lit(" (not gradable)")).list.join(_SEP))
            for c in ORGAN_COLS] if organ_given else []),
        pl.when(pl.col("hospitalized").is_null()).then(pl.lit("hospitalized:hospitalization")),
        *([pl.lit("fluid_boluses:IV fluid boluses (not recorded in study format v1)")]
          if opts.assume_fluid_boluses is None else []),
        *([pl.lit("refractory_hypotension:refractoriness of hypotension (not recorded)")]
          if opts.assume_refractory_hypotension is None else []),
        *([pl.lit("life_threatening_hypotension:whether the hypotension was life-threatening (not recorded)")]
          if opts.assume_life_threatening_hypotension is None else []),
        *(pl.when(pl.col(f"{f}_concurrent_lo") < pl.col(f"{f}_concurrent_hi")).then(pl.format(
            f"{f}_concurrent:vasopressor times of day (whether {{}} ran at the same time)",
            pl.col("vasopressor_agents").list.join(", "))) for f in ("n_vasopressors", "n_vasopressors_excl_vasopressin")),
        pl.when(pl.col("death_crs").is_null()).then(pl.lit("death_crs:attribution of death")),
        pl.when(~pl.col("iv_therapy").fill_null(False) & (pl.col("iv_route_cats").list.len() > 0)).then(pl.format(
            "iv_therapy:route of {} (IV or not; not recorded in study format v1, option iv_route_unknown_categories)",
            pl.col("iv_route_cats").list.join(", "))),
    ]
    lacking = (lambda c: pl.lit(False)) if opts.organ_labs == "absent_is_normal" else (
        lambda c: ~pl.col(f"_has_{c}").fill_null(False) & open_day)
    organ = ([pl.when(pl.col(f"_unk_{c}").fill_null(False) | lacking(c) | partial(c)).then(None).otherwise(pl.col(c).fill_null(0)).alias(c)
              for c in ORGAN_COLS] if organ_given
             else [pl.lit(None, dtype=pl.Int64).alias(c) for c in ORGAN_COLS])
    # the lower bound an unknown organ input keeps: a bilirubin of CTCAE grade 3 beside an ALT without
    # its ULN is "grade 3 LFTs" for sure, up to 4 (audit s29); 0 where no lab settles anything
    organ += ([pl.col(c).fill_null(0).alias(f"{c}_known") for c in ORGAN_COLS] if organ_given
              else [pl.lit(0, dtype=pl.Int64).alias(f"{c}_known") for c in ORGAN_COLS])
    empty = pl.lit([], dtype=pl.List(pl.String))
    return x.with_columns(
        _listed(unknown).alias("unknown_reasons"),
        pl.col("vasopressor_agents").fill_null(empty), pl.col("n_vasopressors").fill_null(0),
        pl.col("n_vasopressors_excl_vasopressin").fill_null(0),
        *(pl.col(c).fill_null(0.0) for c in ("vaso_hours_day_min", "vaso_hours_day_max", "vaso_episode_hours_min",
                                              "vaso_episode_hours_max")),
        pl.when(pl.col("vaso_day").is_null()).then(False).otherwise(pl.col("high_dose")).alias("high_dose"),
        pl.col("o2_any").fill_null(False), pl.col("o2_devices").fill_null(empty),
        pl.col("fio2_min").fill_null(0.21), pl.col("fio2_max").fill_null(0.21),
        pl.col("ventilation_level").fill_null(0),
        *organ,
        pl.col("blood_products").fill_null(False),
        pl.when(pl.col("iv_therapy").fill_null(False)).then(True)  # review 45: a route not recorded is unknown
        .when(pl.col("iv_route_cats").list.len().fill_null(0) > 0).then(None).otherwise(False).alias("iv_therapy"),
        pl.lit(opts.assume_fluid_boluses, dtype=pl.Boolean).alias("fluid_boluses"),
        pl.lit(opts.assume_refractory_hypotension, dtype=pl.Boolean).alias("refractory_hypotension"),
        pl.lit(opts.assume_life_threatening_hypotension, dtype=pl.Boolean).alias("life_threatening_hypotension"),
        *(pl.lit(f"assumed (CrsLegacyOptions.{o}=True)" if getattr(opts, o) is True else None, dtype=pl.String)
          .alias(f"{f}_detail") for f, o in ASSUMED.items()),
        *(pl.col(f"{f}_concurrent_{a}").alias(f"{f}_concurrent_{b}") for f in (
            "n_vasopressors", "n_vasopressors_excl_vasopressin") for a, b in (("lo", "min"), ("hi", "max"))),
        high_dose_detail().alias("high_dose_detail"),
    )


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
__getattr__ = renamed(__name__, "crs_daily_inputs")
