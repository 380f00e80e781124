"""The older CRS scales as they were before issue 14 (commit 4f30e41), kept as an oracle.

tests/test_crs_legacy_vectorised.py checks that :mod:`cartlab.grading.crs_legacy` (tables over the
shared daily features, graded by :mod:`cartlab.criteria`, no row loops) gives identical frames on
random cohorts. The code below is the old row-loop implementation, verbatim but for its imports: the
criteria tables it reads are the old ones (tests/fixtures/crs_legacy_v1/, same numbers, old shape) and
its vasopressor time course is tests/crs_vaso_reference.py. Do not "fix" it here.

Exception (audit s26, /work/notes/audit_crs_legacy/FIXES_crs.md; each place is marked "audit s26"):
four behaviours were changed to the audited, hand-derived ones and are written here independently,
row by row: (1) ASTCT is the range crs_grade_astct..crs_grade_astct_max in the cross-scale table and
concordance; (2) organ toxicity is unknown on a day without the labs that define it (options
organ_labs / organ_labs_days); (3) an organ-toxicity rule's text names the labs at that grade and
their CTCAE grade (input columns <organ column>_labs); (4) Lee/CARTOX "hypotension responsive to
fluids" is not named on a day whose low-dose-vasopressor rule is named too.
Audit s29 (5) (/work/notes/audit_diffgrade, marked "audit s29"): the other-cause rule removes a
*fever* day; an afebrile day in the window keeps its waiver, and no temperature there is not unknown.
Audit s29 (6) (/work/notes/audit_difflegacy case min4): an organ input left unknown by an ungradable
lab keeps the grade its gradable labs settle as a lower bound (columns <input>_known).
Audit s29 (7) (case min2): a vasopressor episode counts for a day it overlaps, not for a day whose
first midnight it ended on.
Session 33 (review33, /work/notes/review33_legacy/REPORT.md; each place marked "session 33"):
(8) option multiple_vasopressors ("same_day" default | "concurrent": Lee/CARTOX "multiple" = drugs
running at the same time, a range when the times of day are unknown; input columns
n_vasopressors[_excl_vasopressin]_concurrent_min/_max); (9) MSKCC grade 4 "hypotension refractory to
high-dose vasopressors" is possible on a high-dose day (rule mskcc.g4.high_dose_refractory, input
refractory_hypotension always unknown); (10) the high-dose rules are status unverified and their
text names the high-dose table row and the dose (input high_dose_detail). The old tables are patched
for (9) and (10) in load_criteria below.
Session 34 (/work/notes/fix34_legacy/REPORT.md; each place marked "session 34"): (11) CARTOX grade 4
"life-threatening hypotension" is possible on a day meeting the grade-3 hypotension row (rules
cartox.g4.life_threatening_hypotension_high_dose / _multiple, input life_threatening_hypotension,
option assume_life_threatening_hypotension); (12) option assume_fluid_boluses sets the Penn input
fluid_boluses (None: unknown, as before), and Penn "treated with IV fluids" is not named beside its
low-dose-vasopressor rule; an input set by an assume_* option is named "assumed (...)" in a holding
rule's text (input columns <input>_detail); (13) the per-subject ``not_assessed`` text (each missing
input on the days that could raise the maximum, with those days) and the cross-scale columns
crs_<s>_not_assessed / not_assessed.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from cartlab.grading.common import EVIDENCE, evidence_ref
from cartlab.grading.common import load_criteria as _load_shipped
from cartlab.grading.crs_features import FeverAttribution, counted, crs_day_features
from cartlab.grading.vasopressors import UNSPECIFIED, resolve_agents
from cartlab.model import Study
from cartlab.units import conversion
from crs_vaso_reference import (
    _EPS_H,
    VASOPRESSOR_TABLE,  # noqa: F401  (kept importable from here)
    _agent_rate,
    _coverage,
    _high_dose_by_day,
    _hours,
    _overlap,
    _ref,
    _time_bounds,
    _union,
    _vaso_table,
    _VasoRow,
)

__all__ = [
    "SCALES",
    "CrsLegacyOptions",
    "crs_cross_scale",
    "crs_cross_scale_cohort",
    "crs_daily_inputs",
    "crs_legacy_daily",
    "crs_legacy_subject",
    "grade_crs_scale",
    "organ_grades_from_adlb",
    "scale_table",
]

#: Scale keys, in output order, and their criteria tables.
SCALES: tuple[str, ...] = ("lee2014", "penn", "cartox", "mskcc")
_TABLE_NAMES = {"lee2014": "crs_lee2014", "penn": "crs_penn", "cartox": "crs_cartox", "mskcc": "crs_mskcc"}
_OLD_TABLES = Path(__file__).parent / "fixtures" / "crs_legacy_v1"


# session 33 (10): the high-dose rules read the unverified high-dose table
_S33_UNVERIFIED = {"lee2014.g3.high_dose_vasopressor", "penn.g4.high_dose_vasopressor", "cartox.g3.high_dose_vasopressor"}
# session 33 (9): MSKCC grade 4 "hypotension refractory to high-dose vasopressors" (PMC7006459 Table 2)
_S33_MSKCC_G4 = {"id": "mskcc.g4.high_dose_refractory", "grade": 4,
                 "when": [{"feature": "high_dose", "op": "==", "value": 1},
                          {"feature": "refractory_hypotension", "op": "==", "value": 1}],
                 "text": "hypotension refractory to high-dose vasopressors",
                 "citation": "MSKCC grade 4: hypotension refractory to high-dose vasopressors (PMC7006459 Table 2)",
                 "status": "unverified"}


# session 34 (11): CARTOX grade 4 "life-threatening hypotension" (PMC7006459 Table 2) on a grade-3 hypotension day
_S34_CARTOX_G4 = [
    {"id": "cartox.g4.life_threatening_hypotension_high_dose", "grade": 4,
     "when": [{"feature": "high_dose", "op": "==", "value": 1},
              {"feature": "life_threatening_hypotension", "op": "==", "value": 1}],
     "text": "life-threatening hypotension (on high-dose vasopressors)", "status": "unverified",
     "citation": "CARTOX grade 4: life-threatening hypotension (PMC7006459 Table 2); precondition high-dose "
                 "vasopressors: cartlab convention"},
    {"id": "cartox.g4.life_threatening_hypotension_multiple", "grade": 4,
     "when": [{"feature": "$multiple_count_feature", "op": ">=", "value": 2},
              {"feature": "life_threatening_hypotension", "op": "==", "value": 1}],
     "text": "life-threatening hypotension (on multiple vasopressors)", "status": "convention",
     "citation": "CARTOX grade 4: life-threatening hypotension (PMC7006459 Table 2); precondition multiple "
                 "vasopressors: cartlab convention"},
]
# session 34 (12): the inputs an assume_* option may set
_S34_ASSUMED = {"fluid_boluses": "assume_fluid_boluses", "refractory_hypotension": "assume_refractory_hypotension",
                "life_threatening_hypotension": "assume_life_threatening_hypotension"}


def load_criteria(name: str) -> dict[str, Any]:
    """The old (pre-issue-14) scale tables; other tables are the shipped ones."""
    path = _OLD_TABLES / f"{name}.yaml"
    if not path.exists():
        return _load_shipped(name)
    t = yaml.safe_load(path.read_text(encoding="utf-8"))
    for r in t["rules"]:  # session 33 (10)
        if r["id"] in _S33_UNVERIFIED:
            r["status"] = "unverified"
    if name == "crs_mskcc":  # session 33 (9): before the other grade-4 row (published order)
        k = next(i for i, r in enumerate(t["rules"]) if r["id"] == "mskcc.g4.mechanical_ventilation")
        t["rules"].insert(k, dict(_S33_MSKCC_G4))
    if name == "crs_cartox":  # session 34 (11): before the other grade-4 rows (published order)
        k = next(i for i, r in enumerate(t["rules"]) if r["id"] == "cartox.g4.ventilator")
        t["rules"][k:k] = [dict(r) for r in _S34_CARTOX_G4]
    return t


_LABELS = {"lee2014": "Lee 2014", "penn": "Penn", "cartox": "CARTOX", "mskcc": "MSKCC", "astct": "ASTCT"}


@dataclass
class CrsLegacyOptions:
    """Documented choices behind the legacy-scale derivation (defaults in brackets).

    * ``counted_indications`` [("CRS",)] / ``count_empty_indication`` [True]: which interventions
      and events count toward CRS (spec "Attribution": empty or ``CRS``).
    * ``fever_threshold_c`` [38.0]: fever is Tmax >= this (spec; ASTCT 2019 and CARTOX ">= 38 C").
    * ``sbp_cutoff_mmhg`` [90]: hypotension is the day's lowest SBP below this (spec; CARTOX
      "SBP < 90 mmHg").
    * ``waiver_categories`` [tocilizumab, corticosteroid]: from the first day one is given for CRS,
      fever is no longer needed for CRS to be present (spec / ASTCT footnote). Used by the default
      ``gate`` of every scale table (``fever_or_waiver``); a scale's gate can be set to ``none``
      through ``scale_params``.
    * ``first_day`` [0.0]: days before this are not graded (CRS follows the cell infusion; None
      grades every day).
    * ``day_precision`` ["bounds"]: see the module docstring; or "full_days".
    * ``episode_gap_hours`` [0.0]: vasopressor support interrupted for at most this long is one
      episode (MSKCC "vasopressors >= 24 h" uses the cumulative episode duration).
    * ``assume_hospitalized`` [None]: hospitalization is unknown unless a ``hospitalization`` frame
      says so; True/False fills the days it does not cover.
    * ``coagulopathy_agents`` / ``iv_therapy_categories`` / ``organ_vocabulary`` [None = the
      vocabularies in crs_penn.yaml / crs_lee2014.yaml ``inputs``].
    * ``scale_params`` [{}]: per-scale overrides of a table's ``defaults`` (e.g.
      ``{"lee2014": {"multiple_count_feature": "n_vasopressors_excl_vasopressin"}}``).
    * ``fever_attribution`` [None = the ASTCT table's defaults]: how a fever attributed to another
      cause is recognised (:class:`~cartlab.grading.crs_features.FeverAttribution`); such a fever
      does not count, and with scope "day" the day is not a CRS day.
    """

    counted_indications: tuple[str, ...] = ("CRS",)
    count_empty_indication: bool = True
    fever_threshold_c: float = 38.0
    sbp_cutoff_mmhg: float = 90.0
    waiver_categories: tuple[str, ...] = ("tocilizumab", "corticosteroid")
    first_day: float | str | None = "infusion"  # session 32: from the first CAR-T infusion (day 0 without one)
    day_precision: str = "bounds"
    episode_gap_hours: float = 0.0
    assume_hospitalized: bool | None = None
    coagulopathy_agents: tuple[str, ...] | None = None
    iv_therapy_categories: tuple[str, ...] | None = None
    organ_vocabulary: Mapping[str, Iterable[str]] | None = None
    scale_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    fever_attribution: FeverAttribution | None = None
    # audit s26 (2): how days without organ labs are read
    organ_labs: str = "last_known_within_days"  # the engine's default (s26)
    organ_labs_days: int = 1
    organ_labs_open: str = "crs_signs"  # s26: days without labs are open only with a CRS sign
    # session 32: the all-organ inputs need a creatinine and a liver lab ("renal_and_liver") or any lab
    organ_labs_required: str = "renal_and_liver"
    multiple_vasopressors: str = "same_day"  # session 33 (8)
    assume_refractory_hypotension: bool | None = None  # session 33 (9)
    assume_life_threatening_hypotension: bool | None = None  # session 34 (11)
    assume_fluid_boluses: bool | None = None  # session 34 (12)

    def __post_init__(self) -> None:
        if self.multiple_vasopressors not in ("same_day", "concurrent"):
            raise ValueError(f"multiple_vasopressors must be one of ('same_day', 'concurrent'), "
                             f"not {self.multiple_vasopressors!r}")
        if self.day_precision not in ("bounds", "full_days"):
            raise ValueError(f"day_precision must be 'bounds' or 'full_days', not {self.day_precision!r}")
        modes = ("same_day", "last_known_within_days", "absent_is_normal")
        if self.organ_labs not in modes:
            raise ValueError(f"organ_labs must be one of {modes}, not {self.organ_labs!r}")
        if isinstance(self.organ_labs_days, bool) or not isinstance(self.organ_labs_days, int) or self.organ_labs_days < 0:
            raise ValueError(f"organ_labs_days must be a whole number of days >= 0, not {self.organ_labs_days!r}")
        unknown = set(self.scale_params) - set(SCALES)
        if unknown:
            raise ValueError(f"scale_params for unknown scale(s) {sorted(unknown)}; known: {SCALES}")


# --------------------------------------------------------------------------------------------------
# small helpers


def _norm(s: Any) -> str:
    return "" if s is None else " ".join(str(s).strip().lower().replace("_", " ").split())


# --------------------------------------------------------------------------------------------------
# 1. daily inputs


def _vocab(opts: CrsLegacyOptions) -> dict[str, Any]:
    lee, penn = load_criteria(_TABLE_NAMES["lee2014"]), load_criteria(_TABLE_NAMES["penn"])
    organ = opts.organ_vocabulary or lee["inputs"]["organ_vocabulary"]
    return {
        "organ": {k: {_norm(x) for x in v} for k, v in organ.items()},
        "coag": {_norm(x) for x in (opts.coagulopathy_agents or penn["inputs"]["coagulopathy_agents"])},
        "iv": {_norm(x) for x in (opts.iv_therapy_categories or penn["inputs"]["iv_therapy_categories"])},
    }


_INPUT_SCHEMA: dict[str, pl.DataType] = {
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
    "n_vasopressors_concurrent_min": pl.Int64,  # session 33 (8)
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
    "high_dose_detail": pl.String,  # session 33 (10)
    "refractory_hypotension": pl.Boolean,  # session 33 (9)
    "life_threatening_hypotension": pl.Boolean,  # session 34 (11)
    **{f"{f}_detail": pl.String for f in _S34_ASSUMED},  # session 34 (12)
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
    # audit s26 (3): the labs at each organ-toxicity grade
    "organ_grade_max_labs": pl.String,
    "organ_grade_max_non_transaminase_labs": pl.String,
    "organ_grade_max_transaminase_labs": pl.String,
    "creatinine_grade_labs": pl.String,
    "lft_grade_labs": pl.String,
    # audit s29 (6): the grade the gradable labs settle (a lower bound when another lab is ungradable)
    "organ_grade_max_known": pl.Int64,
    "organ_grade_max_non_transaminase_known": pl.Int64,
    "organ_grade_max_transaminase_known": pl.Int64,
    "creatinine_grade_known": pl.Int64,
    "lft_grade_known": pl.Int64,
    "blood_products": pl.Boolean,
    "hospitalized": pl.Boolean,
    "iv_therapy": pl.Boolean,
    "fluid_boluses": pl.Boolean,
    "death_crs": pl.Boolean,
    "unknown_reasons": pl.List(pl.String),
    "feature_evidence": pl.List(pl.String),
}

_ORGAN_COLS = ("organ_grade_max", "organ_grade_max_non_transaminase", "organ_grade_max_transaminase",
               "creatinine_grade", "lft_grade")
# audit s26 (2): what a day lacks when an organ-toxicity input has no lab
_NO_LAB = {"organ_grade_max": "organ labs", "organ_grade_max_non_transaminase": "organ lab other than ALT/AST",
           "organ_grade_max_transaminase": "ALT/AST lab", "creatinine_grade": "creatinine lab",
           "lft_grade": "liver function lab"}


def _lab_label(r: Mapping[str, Any], g: int, lag: int, d: int) -> str:
    """audit s26 (3): "hypokalemia (K 2.8 mmol/L, CTCAE grade 3)"; no term: "K 2.8 mmol/L (CTCAE grade 3)"."""
    organ = r.get("organ") if r.get("organ") is not None else "an unnamed lab value"
    v, unit = r.get("value"), r.get("unit")
    if v is not None and not math.isnan(v):
        txt = str(round(float(v), 6)).removesuffix(".0")
        measure = f"{organ} {txt}" + (f" {unit}" if unit else "")
    else:
        measure = organ
    when = f", day {d - lag}" if lag > 0 else ""
    term = r.get("term")
    if term:
        if term[1:2] == term[1:2].lower():
            term = term[:1].lower() + term[1:]
        return f"{term} ({measure}, CTCAE grade {g}{when})"
    return f"{measure} (CTCAE grade {g}{when})"


def _from_start(study: Study, first_day: Any) -> tuple[Study, dict[str, float | None]]:
    """Session 32, written row by row: the study from each subject's assessment start (first_day a
    study day; "infusion" = the first dose row of a CAR-T agent, else day 0; "all"/None = no start).
    An observation timed (fractional day) before the start is dropped, one known to the day only is
    kept from the start's day on; an intervention that ended before the start is dropped, one
    running across it starts at the start."""
    if first_day is None or first_day == "all":
        return study, {}
    starts: dict[str, float | None] = {}
    for sid in study.subject_ids:
        start = float(first_day) if first_day != "infusion" else 0.0
        if first_day == "infusion":
            cart = [r["day"] for r in study.doses.to_dicts()
                    if r["subject_id"] == sid and r.get("day") is not None
                    and str(r.get("agent") or "").strip().lower().replace("-", "").replace(" ", "") in ("cart", "cart cells")]
            start = min(cart) if cart else 0.0
        starts[sid] = start

    def keep(day: float | None, timed: bool, sid: str) -> bool:
        st_ = starts.get(sid)
        if st_ is None or day is None:
            return True
        return day >= st_ if timed else math.floor(day) >= math.floor(st_)

    def timed(day: float | None, dt: Any = None) -> bool:
        # session 34: a date-time with a clock time is timed too (as cartlab.grading.common.is_timed;
        # the oracle read the fractional day only, and kept a row "day 1, 08:00" before a start 1.5)
        return (day is not None and day != math.floor(day)) or bool(re.search(r"\d[T ]\d", str(dt or "")))

    obs = study.observations
    has_dt = "datetime" in obs.columns
    keep_obs = [keep(r["day"], timed(r["day"], r.get("datetime") if has_dt else None), r["subject_id"])
                for r in obs.select("subject_id", "day", *(["datetime"] if has_dt else [])).to_dicts()]
    iv = study.interventions
    rows = []
    for r in iv.to_dicts():
        st_ = starts.get(r["subject_id"])
        if st_ is None or r.get("start_day") is None:
            rows.append(r)
            continue
        end = r["end_day"] if r.get("end_day") is not None else r["start_day"]
        end_dt = r.get("end_datetime") if r.get("end_day") is not None else r.get("start_datetime")  # session 34
        if not keep(end, timed(end, end_dt), r["subject_id"]):
            continue
        if r["start_day"] < st_:
            r = {**r, "start_day": st_}
        rows.append(r)
    import dataclasses

    return dataclasses.replace(
        study, observations=obs.filter(pl.Series(keep_obs, dtype=pl.Boolean)) if obs.height else obs,
        interventions=pl.DataFrame(rows, schema=iv.schema) if rows else iv.clear()), starts



def _at_least(iv, cut: float):
    """session 35: whether an interval (lo, hi, lo_open, hi_open) is >= ``cut``: True, False, or None
    when it straddles ``cut`` or is not known."""
    if iv is None:
        return None
    lo, hi, _lo_open, hi_open = iv
    if lo is not None and lo >= cut:
        return True
    if hi is not None and (hi < cut or (hi_open and hi <= cut)):
        return False
    return None

def crs_daily_inputs(
    study: Study,
    options: CrsLegacyOptions | None = None,
    *,
    organ_grades: pl.DataFrame | None = None,
    hospitalization: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per subject and calendar day, every input of the legacy CRS scales (see ``_INPUT_SCHEMA``).

    ``organ_grades`` (optional): columns ``subject_id, day, organ, grade, is_transaminase`` (CTCAE
    grades from the CTCAE engine); optional provenance in ``evidence`` (list) or ``src_file`` /
    ``src_row``. When it is None every organ-toxicity input is unknown; when given it is taken as
    complete (a day without rows has no organ toxicity).
    ``hospitalization`` (optional): ``subject_id, day, hospitalized`` (bool).

    Unknown inputs are null and ``unknown_reasons`` holds ``"<feature>:<what is missing>"``;
    ``feature_evidence`` holds ``"<feature>|<file>:<row>"``.
    """
    opts = options or CrsLegacyOptions()
    attribution = opts.fever_attribution or FeverAttribution.from_table()
    study, starts = _from_start(study, opts.first_day)
    shared = crs_day_features(study, indications=opts.counted_indications,
                              count_empty=opts.count_empty_indication, attribution=attribution)
    vt = _vaso_table()
    vocab = _vocab(opts)
    days_of: dict[str, set[int]] = defaultdict(set)
    rec: dict[tuple[str, int], dict[str, Any]] = defaultdict(
        lambda: {"unknown": [], "evidence": []})

    def ev(key, feature, ref):
        if ref:
            rec[key]["evidence"].append(f"{feature}|{ref}")

    subjects = {r["subject_id"]: r for r in study.subjects.to_dicts()}

    # ---- vital signs: the day's highest temperature and lowest SBP (first row reaching it)
    # session 35: a censored result (">38.3", "<90") bounds the day's extreme: each day's extreme is an
    # interval (lo, hi, open ends); at the same value an open bound is the tighter one and names the row
    obs = study.observations.filter(pl.col("param").is_in(["TEMP", "SYSBP"]) & pl.col("day").is_not_null()
                                    & (pl.col("value").is_not_null() | pl.col("censor").is_not_null()))
    units = [u for u in obs.filter(pl.col("param") == "TEMP")["unit"].drop_nulls().unique().to_list()
             if u not in ("degC", "C", "°C")]
    value, limit = pl.col("value"), pl.col("censor_limit")
    for u in units:  # canonical frames hold degC already; convert anything else (unknown unit = error)
        c = conversion(u, "degC")
        is_u = (pl.col("param") == "TEMP") & (pl.col("unit") == u)
        value = pl.when(is_u).then(pl.col("value") * c.scale + c.offset).otherwise(value)
        limit = pl.when(is_u).then(pl.col("censor_limit") * c.scale + c.offset).otherwise(limit)
    vit: dict[tuple, list] = defaultdict(list)
    for r in obs.with_columns(value.alias("v"), limit.alias("lim"), pl.col("day").floor().cast(pl.Int64).alias("d"),
                              evidence_ref().alias("ref")).iter_rows(named=True):
        cen = r["censor"] or ""
        if r["v"] is not None:
            b = (r["v"], r["v"], False, False)
        elif cen in (">", ">=") and r["lim"] is not None:
            b = (r["lim"], None, cen == ">", False)
        elif cen in ("<", "<=") and r["lim"] is not None:
            b = (None, r["lim"], False, cen == "<")
        else:
            continue
        vit[(r["subject_id"], r["d"], r["param"])].append((*b, r["ref"]))
    for (sid, d, param), rows in vit.items():
        days_of[sid].add(d)
        hi_first = param == "TEMP"  # the day's maximum; SBP: its minimum
        k, f = (0, 1) if hi_first else (1, 0)  # the bound kept (max: lo) and the free one
        best = max if hi_first else min
        have = [r for r in rows if r[k] is not None]
        iv = [None, None, False, False]
        if have:
            top = best(r[k] for r in have)
            at = [r for r in have if r[k] == top]
            iv[k], iv[k + 2] = top, any(r[k + 2] for r in at)
            cands = [r for r in at if r[k + 2] == iv[k + 2]]  # ties: a bound on the other side first, then file order
            ref = sorted(cands, key=lambda r: (r[f] is None, 0 if r[f] is None else (-r[f] if hi_first else r[f])))[0][4]
        if all(r[f] is not None for r in rows):
            far = best(r[f] for r in rows)
            iv[f], iv[f + 2] = far, all(r[f + 2] for r in rows if r[f] == far)
            if not have:
                ref = next(r for r in rows if r[f] == far)[4]
        lo, hi, lo_open, hi_open = iv
        point = lo if lo is not None and lo == hi and not lo_open and not hi_open else None
        col, ref_col, iv_col = (("tmax_c", "tmax_ref", "_tmax_iv") if param == "TEMP"
                                else ("sbp_min_mmhg", "sbp_ref", "_sbp_iv"))
        rec[(sid, d)][col], rec[(sid, d)][ref_col], rec[(sid, d)][iv_col] = point, ref, tuple(iv)

    # ---- interventions counted toward CRS
    iv = resolve_agents(study.interventions.filter(
        pl.col("start_day").is_not_null()
        & counted("indication", opts.counted_indications, opts.count_empty_indication).fill_null(False)),
        warn=False).to_dicts()
    waiver_cats = {_norm(c) for c in opts.waiver_categories}
    waiver_first: dict[str, tuple[int, str | None]] = {}
    vaso_rows: dict[str, list[_VasoRow]] = defaultdict(list)
    for r in iv:
        sid, cat = r["subject_id"], _norm(r.get("category"))
        cov = _coverage(r)
        if cat in waiver_cats:
            d0 = cov[0]
            if sid not in waiver_first or d0 < waiver_first[sid][0]:
                waiver_first[sid] = (d0, _ref(r))
        if cat == "vasopressor":
            name = r["vaso_agent"]
            a = vt["agents"][name] if r["vaso_known"] else None
            weight = (subjects.get(sid) or {}).get("weight_kg")
            rate, why, used_w = _agent_rate(r, a["unit"] if a else None, weight)
            vaso_rows[sid].append(_VasoRow(
                agent=name, known=a is not None, vasopressin=r["vaso_is_vasopressin"],
                ne_factor=(a or {}).get("ne_factor"), rate=rate, rate_reason=why,
                weight_ref=_ref(subjects[sid]) if used_w and sid in subjects else None,
                **dict(zip(("s_lo", "s_hi", "e_lo", "e_hi"), _time_bounds(r, opts.day_precision))),
                days=cov, ref=_ref(r)))
            for d in cov:
                days_of[sid].add(d)
        elif cat == "oxygen":
            for d in cov:
                key = (sid, d)
                days_of[sid].add(d)
                rec[key].setdefault("o2", []).append(r)
                ev(key, "o2", _ref(r))
        elif cat == "other" and _norm(r.get("agent")) in vocab["coag"]:
            for d in cov:
                key = (sid, d)
                days_of[sid].add(d)
                rec[key]["blood_products"] = True
                ev(key, "blood_products", _ref(r))
        if cat in vocab["iv"]:
            for d in cov:
                key = (sid, d)
                days_of[sid].add(d)
                rec[key]["iv_therapy"] = True
                ev(key, "iv_therapy", _ref(r))

    # ---- vasopressor drugs (counts) and fever attribution: the layer shared with the ASTCT engine
    for r in shared.to_dicts():
        key = (r["subject_id"], r["day"])
        if r["n_vasopressors"] is not None:
            rec[key]["vasopressor_agents"] = r["vasopressor_agents"]
            rec[key]["n_vasopressors"] = r["n_vasopressors"]
            rec[key]["n_vasopressors_excl_vasopressin"] = r["n_vasopressors_excl_vasopressin"]
        if r["other_cause"]:
            rec[key]["other_cause"] = r["other_cause_reason"]
            for ref in r["other_cause_refs"]:
                ev(key, "other_cause", ref)

    # ---- vasopressors: NE-equivalent, hours, episodes, high dose
    gap = opts.episode_gap_hours / 24.0
    for sid, rows in vaso_rows.items():
        all_days = sorted({d for r in rows for d in r.days})
        hd, ne = _high_dose_by_day(rows, all_days, vt["high_dose"])
        inner_u = _union([r.inner for r in rows if r.inner])
        outer_u = _union([r.outer for r in rows if r.outer])
        episodes = _union(outer_u, gap)
        for d in all_days:
            key = (sid, d)
            act = [r for r in rows if d in r.days]
            for r in act:
                ev(key, "vasopressor", r.ref)
            rec[key]["vaso_hours_day_min"] = _hours(_overlap(inner_u, d, d + 1))
            rec[key]["vaso_hours_day_max"] = _hours(_overlap(outer_u, d, d + 1))
            cmin = cmax = 0.0
            for a, b in episodes:
                if a < d + 1 and b > d:  # audit s29 (7): overlapping the day, not touching its midnight
                    clip = [(max(x, a), min(y, b, d + 1)) for x, y in outer_u if y > a and x < b]
                    clip_in = [(max(x, a), min(y, b, d + 1)) for x, y in inner_u if y > a and x < b]
                    cmax = max(cmax, _overlap([c for c in clip if c[1] > c[0]], -math.inf, math.inf))
                    cmin = max(cmin, _overlap([c for c in clip_in if c[1] > c[0]], -math.inf, math.inf))
            rec[key]["vaso_episode_hours_min"] = _hours(cmin)
            rec[key]["vaso_episode_hours_max"] = _hours(cmax)
            if _hours(cmax) - _hours(cmin) > _EPS_H:
                rec[key]["unknown"].append(
                    "vaso_episode_hours:vasopressor duration (times known to the day only, or end not recorded)")
            st, rule, reasons = hd[d]
            rec[key]["high_dose"], rec[key]["high_dose_rule"] = st, rule
            # session 33 (8): the most drugs running at the same time within the day, per scenario
            for scen, tail in (("inner", "min"), ("outer", "max")):
                ivs = [(getattr(r, scen), r) for r in rows if getattr(r, scen)]
                if not ivs:
                    continue
                pts = sorted({p for (a, b), _ in ivs for p in (a, b)} | {float(d), float(d + 1)})
                n_all = n_excl = None
                for p, q in zip(pts, pts[1:]):
                    if p < d or q > d + 1:
                        continue
                    run = [r for (a, b), r in ivs if a <= p and b >= q]
                    if not run:
                        continue
                    names = {r.agent for r in run}
                    named = {r.agent for r in run if not r.vasopressin and r.agent != UNSPECIFIED}
                    n_all = max(n_all or 0, len(names))
                    n_excl = max(n_excl or 0, len(named) + (1 if names == {UNSPECIFIED} else 0))
                rec[key][f"n_vasopressors_concurrent_{tail}"] = n_all
                rec[key][f"n_vasopressors_excl_vasopressin_concurrent_{tail}"] = n_excl
            for why in reasons:
                rec[key]["unknown"].append(f"high_dose:{why}")
            for r in act:
                if r.weight_ref:
                    ev(key, "weight", r.weight_ref)
            if d in ne:
                rec[key]["ne_equiv_max_ug_min"] = round(ne[d][0], 9)
                rec[key]["ne_equiv_complete"] = ne[d][1]

    # ---- organ toxicity (from the CTCAE engine's output); audit s26 (2), (3): per organ-toxicity
    # input, the rows of its labs on the day (or the latest day within organ_labs_days before)
    organ_rows: dict[tuple[str, int, str], list[tuple[int, int, dict, list[str]]]] = defaultdict(list)
    if organ_grades is not None:
        og = organ_grades
        has_ev = "evidence" in og.columns
        has_src = "src_file" in og.columns and "src_row" in og.columns
        voc = vocab["organ"]
        window = opts.organ_labs_days if opts.organ_labs == "last_known_within_days" else 0
        for i, r in enumerate(og.to_dicts()):
            if r.get("day") is None:
                continue
            organ = _norm(r.get("organ"))
            if organ in voc.get("excluded", set()):
                continue
            sid, d0 = r["subject_id"], math.floor(r["day"])
            days_of[sid].add(d0)
            is_t = bool(r.get("is_transaminase"))
            cols = ["organ_grade_max", "organ_grade_max_transaminase" if is_t else "organ_grade_max_non_transaminase"]
            if organ in voc.get("creatinine", set()):
                cols.append("creatinine_grade")
            if is_t or organ in voc.get("lft", set()):
                cols.append("lft_grade")
            refs = list(r["evidence"] or []) if has_ev else ([_ref(r)] if has_src and _ref(r) else [f"organ_grades:{i + 1}"])
            for lag in range(window + 1):
                for c in cols:
                    organ_rows[(sid, d0 + lag, c)].append((lag, i, r, refs))
        used: dict[tuple[str, int], dict[tuple[int, int], list[str]]] = defaultdict(dict)
        for (sid, d, c), rows in organ_rows.items():
            lag0 = min(x[0] for x in rows)
            rows = [x for x in rows if x[0] == lag0]
            organ_rows[(sid, d, c)] = rows
            for lag, i, r, refs in rows:
                if r.get("grade") is not None:
                    used[(sid, d)][(lag, i)] = refs
        # session 32: an all-organ input also reads the latest creatinine and liver rows (its own kind:
        # no ALT/AST for the non-transaminase input) and is open when one of the two is missing
        if opts.organ_labs_required == "renal_and_liver":
            for (sid, d, c) in [k for k in organ_rows if k[2] in ("organ_grade_max", "organ_grade_max_non_transaminase")]:
                have = {(lag, i) for lag, i, _, _ in organ_rows[(sid, d, c)]}
                for k in ("creatinine_grade", "lft_grade"):
                    for lag, i, r, refs in organ_rows.get((sid, d, k), []):
                        own = c == "organ_grade_max" or not r.get("is_transaminase")
                        if own and (lag, i) not in have:
                            organ_rows[(sid, d, c)].append((lag, i, r, refs))
                            have.add((lag, i))
        for key, rows in used.items():
            for _, refs in sorted(rows.items()):
                for ref in refs:
                    ev(key, "organ", ref)

    # ---- hospitalization
    hosp: dict[tuple[str, int], tuple[bool, str | None]] = {}
    if hospitalization is not None:
        for i, r in enumerate(hospitalization.to_dicts()):
            if r.get("day") is None or r.get("hospitalized") is None:
                continue
            key = (r["subject_id"], math.floor(r["day"]))
            hosp[key] = (bool(r["hospitalized"]), _ref(r) or f"hospitalization:{i + 1}")

    # ---- deaths
    # session 35: per day, the last death row decides (death_crs) and every death row of a graded day is
    # cited, whatever their order (before, a death from another cause before a CRS death on the same
    # day was left out of the evidence and the reverse order kept it: the engine cites both)
    death_rows: dict[tuple[str, int], list[tuple[bool | None, str | None]]] = defaultdict(list)
    for r in study.events.to_dicts():
        if _norm(r.get("event")) != "death" or r.get("day") is None:
            continue
        att = _norm(r.get("attribution"))
        val = True if att == "crs" else (None if att == "" else False)
        death_rows[(r["subject_id"], math.floor(r["day"]))].append((val, _ref(r)))
    for key, rows in death_rows.items():
        sid, d = key
        val = rows[-1][0]
        if val is False and d not in days_of[sid]:
            continue  # a death from another cause does not count toward CRS: no day of its own
        days_of[sid].add(d)
        rec[key]["death_crs"] = val
        for _, ref in rows:
            ev(key, "death", ref)

    # ---- assemble
    out = []
    for sid in sorted(days_of):
        w = waiver_first.get(sid)
        for d in sorted(days_of[sid]):
            if starts.get(sid) is not None and d < math.floor(starts[sid]):
                continue
            key = (sid, d)
            x = rec[key]
            unknown = list(x["unknown"])
            evid = list(x["evidence"])
            tmax = x.get("tmax_c")
            fever = _at_least(x.get("_tmax_iv"), opts.fever_threshold_c)  # session 35: an interval
            if tmax is not None and math.isnan(tmax):
                fever = False
            other = x.get("other_cause")
            fever_other = bool(fever and other)
            if fever_other:  # ASTCT: fever "not attributable to any other cause"
                fever = False
            if x.get("tmax_ref"):
                evid.append(f"fever|{x['tmax_ref']}")
            if fever is None and not other:  # audit s29 (5): a fever that day would be attributed
                unknown.append("fever:temperature")
            sbp = x.get("sbp_min_mmhg")
            at_cut = _at_least(x.get("_sbp_iv"), opts.sbp_cutoff_mmhg)  # session 35: an interval
            sbp_low = None if at_cut is None else not at_cut
            if sbp is not None and math.isnan(sbp):
                sbp_low = False
            if x.get("sbp_ref"):
                evid.append(f"sbp|{x['sbp_ref']}")
            if sbp_low is None:
                unknown.append("sbp_low:systolic blood pressure")
            waiver = w is not None and d >= w[0]
            if waiver and w[1]:
                evid.append(f"waiver|{w[1]}")
            gate = True if (fever or waiver) else (None if fever is None else False)
            if other and attribution.scope == "day":
                # audit s29 (5): only a fever day is removed; an unknown temperature leaves the waiver
                if fever_other:
                    gate = False
                elif tmax is None:
                    gate = waiver
            if gate is None:
                unknown.append("crs_gate:temperature")
            # oxygen
            o2 = x.get("o2", [])
            devices = sorted({_norm(r.get("o2_device")).replace(" ", "_") for r in o2 if r.get("o2_device")})
            flows = [r["o2_flow_lpm"] for r in o2 if r.get("o2_flow_lpm") is not None]
            fio2s = [r["fio2"] for r in o2 if r.get("fio2") is not None]
            if not o2:
                fio2_min = fio2_max = 0.21
            else:
                fio2_min = max(fio2s) if fio2s else 0.21
                fio2_max = max(fio2s) if len(fio2s) == len(o2) else 1.0
                if len(fio2s) < len(o2):
                    unknown.append("fio2:FiO2 of the oxygen support")
            vent = 2 if "mechanical_ventilation" in devices else (1 if {"cpap", "bipap"} & set(devices) else 0)
            # organ toxicity (audit s26 (2), (3))
            organ_vals: dict[str, Any] = {f"{c}_labs": None for c in _ORGAN_COLS}
            organ_vals.update({f"{c}_known": 0 for c in _ORGAN_COLS})  # audit s29 (6)
            if organ_grades is None:
                organ_vals.update({c: None for c in _ORGAN_COLS})
                unknown.extend(f"{c}:organ toxicity grades (organ_grades not supplied)" for c in _ORGAN_COLS)
            else:
                when = ("that day" if opts.organ_labs == "same_day"
                        else f"that day or in the {opts.organ_labs_days} day(s) before")
                any_lab = bool(organ_rows.get((sid, d, "organ_grade_max")))
                for c in _ORGAN_COLS:
                    rows = organ_rows.get((sid, d, c), [])
                    sign = (fever is not False or sbp_low is not False or bool(o2)
                            or (x.get("n_vasopressors") or 0) > 0)
                    if not rows:
                        if opts.organ_labs == "absent_is_normal" or (
                                opts.organ_labs_open == "crs_signs" and not sign):
                            organ_vals[c] = 0
                        else:
                            organ_vals[c] = None
                            unknown.append(f"{c}:no {_NO_LAB[c] if any_lab else 'organ labs'} {when}")
                        continue
                    graded = [(int(r["grade"]), lag, r) for lag, _, r, _ in rows if r.get("grade") is not None]
                    top = max([0, *(g for g, _, _ in graded)])
                    organ_vals[c] = top
                    organ_vals[f"{c}_known"] = top  # audit s29 (6)
                    labels = sorted({_lab_label(r, g, lag, d) for g, lag, r in graded if g == top and g >= 1})
                    organ_vals[f"{c}_labs"] = ", ".join(labels) or None
                    names = {r.get("organ") if r.get("organ") is not None else "an unnamed lab value"
                             for _, _, r, _ in rows if r.get("grade") is None}
                    if names and top < 4:  # an ungraded value can raise a grade below 4: unknown
                        organ_vals[c] = None
                        unknown.extend(f"{c}:CTCAE grade of {n} (not gradable)" for n in sorted(names))
                    # session 32: a day with organ labs but no creatinine or no liver lab (renal_and_liver)
                    if (opts.organ_labs_required == "renal_and_liver" and opts.organ_labs != "absent_is_normal"
                            and c in ("organ_grade_max", "organ_grade_max_non_transaminase") and top < 4
                            and (opts.organ_labs_open == "every_crs_day" or sign)):
                        lacking = [n for n, k in (("creatinine", "creatinine_grade"), ("liver", "lft_grade"))
                                   if not organ_rows.get((sid, d, k))]
                        if lacking:
                            organ_vals[c] = None
                            unknown.extend(f"{c}:no {n} lab {when} (other organ labs measured)" for n in lacking)
            # hospitalization
            h = hosp.get(key)
            if h is not None:
                hospitalized = h[0]
                evid.append(f"hospitalized|{h[1]}")
            else:
                hospitalized = opts.assume_hospitalized
            if hospitalized is None:
                unknown.append("hospitalized:hospitalization")
            if opts.assume_fluid_boluses is None:  # session 34 (12)
                unknown.append("fluid_boluses:IV fluid boluses (not recorded in study format v1)")
            if opts.assume_refractory_hypotension is None:  # session 33 (9)
                unknown.append("refractory_hypotension:refractoriness of hypotension (not recorded)")
            if opts.assume_life_threatening_hypotension is None:  # session 34 (11)
                unknown.append("life_threatening_hypotension:whether the hypotension was life-threatening "
                               "(not recorded)")
            conc = {}  # session 33 (8)
            for f in ("n_vasopressors", "n_vasopressors_excl_vasopressin"):
                lo = max(x.get(f"{f}_concurrent_min") or 0, min(x.get(f) or 0, 1))
                hi = max(x.get(f"{f}_concurrent_max") or 0, lo)
                conc[f"{f}_concurrent_min"], conc[f"{f}_concurrent_max"] = lo, hi
                if lo < hi:
                    unknown.append(f"{f}_concurrent:vasopressor times of day (whether "
                                   f"{', '.join(x.get('vasopressor_agents') or [])} ran at the same time)")
            death = x.get("death_crs", False)
            if death is None:
                unknown.append("death_crs:attribution of death")
            row = {
                "subject_id": sid, "day": d, "tmax_c": tmax, "fever": fever,
                "fever_other_cause": fever_other, "other_cause": other,
                "sbp_min_mmhg": sbp, "sbp_low": sbp_low, "waiver_active": waiver, "crs_gate": gate,
                "vasopressor_agents": x.get("vasopressor_agents", []),
                "n_vasopressors": x.get("n_vasopressors", 0),
                "n_vasopressors_excl_vasopressin": x.get("n_vasopressors_excl_vasopressin", 0),
                "ne_equiv_max_ug_min": x.get("ne_equiv_max_ug_min"),
                "ne_equiv_complete": x.get("ne_equiv_complete"),
                "vaso_hours_day_min": x.get("vaso_hours_day_min", 0.0),
                "vaso_hours_day_max": x.get("vaso_hours_day_max", 0.0),
                "vaso_episode_hours_min": x.get("vaso_episode_hours_min", 0.0),
                "vaso_episode_hours_max": x.get("vaso_episode_hours_max", 0.0),
                **conc,
                "high_dose": x.get("high_dose", False), "high_dose_rule": x.get("high_dose_rule"),
                "high_dose_detail": _hd_detail(x),
                "refractory_hypotension": opts.assume_refractory_hypotension,
                "life_threatening_hypotension": opts.assume_life_threatening_hypotension,  # session 34 (11)
                **{f"{f}_detail": f"assumed (CrsLegacyOptions.{o}=True)" if getattr(opts, o) is True else None
                   for f, o in _S34_ASSUMED.items()},  # session 34 (12)
                "o2_any": bool(o2), "o2_devices": devices,
                "o2_flow_max_lpm": max(flows) if flows else None,
                "fio2_min": fio2_min, "fio2_max": fio2_max, "ventilation_level": vent,
                **organ_vals,
                "blood_products": x.get("blood_products", False),
                "hospitalized": hospitalized,
                "iv_therapy": x.get("iv_therapy", False),
                "fluid_boluses": opts.assume_fluid_boluses,  # session 34 (12)
                "death_crs": death,
                "unknown_reasons": sorted(set(unknown)),
                "feature_evidence": list(dict.fromkeys(evid)),
            }
            out.append(row)
    return pl.DataFrame(out, schema=_INPUT_SCHEMA, orient="row") if out else pl.DataFrame(schema=_INPUT_SCHEMA)


def _num(v: float) -> str:
    t = str(round(v, 6))
    return t[:-2] if t.endswith(".0") else t


def _hd_detail(x: Mapping[str, Any]) -> str | None:
    """session 33 (10): the high-dose table row behind high_dose = true and the day's dose."""
    rule = x.get("high_dose_rule")
    if not x.get("high_dose") or rule is None:
        return None
    table = _load_shipped(VASOPRESSOR_TABLE)
    row = next(r for r in table["high_dose"]["rows"] if r["id"] == rule)
    agents = _vaso_table()["agents"]
    status = row.get("status") or table.get("status") or "unverified"
    head = (f"{row['text']} for >= {table['high_dose']['min_duration_hours']:g} h (table row {rule}, "
            f"vasopressor_equivalents.yaml, status {status})")
    ne, complete = x.get("ne_equiv_max_ug_min"), x.get("ne_equiv_complete")
    agent = row.get("agent") if row["measure"] == "dose" else None
    factor = (agents.get(agent) or {}).get("ne_factor") if agent else None
    drugs = [a for a in (x.get("vasopressor_agents") or []) if not (agents.get(a) or {}).get("vasopressin")]
    if not complete or ne is None:
        dose = "dose not known for every drug"
    elif agent and drugs == [agent] and factor and factor > 0:
        dose = f"{agent} up to {_num(ne / factor)} {row['unit']} that day"
    else:
        dose = f"norepinephrine equivalent up to {_num(ne)} ug/min that day"
    return f"{head}; {dose}"


# --------------------------------------------------------------------------------------------------
# 2. generic three-valued grader

# feature -> (kind, columns, evidence groups). Kinds: bool, num, grade, range, const.
_FEATURES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "fever": ("bool", ("fever",), ("fever", "other_cause")),
    "crs_gate": ("bool", ("crs_gate",), ("fever", "waiver", "other_cause")),
    "sbp_low": ("bool", ("sbp_low",), ("sbp",)),
    "n_vasopressors": ("num", ("n_vasopressors",), ("vasopressor",)),
    "n_vasopressors_excl_vasopressin": ("num", ("n_vasopressors_excl_vasopressin",), ("vasopressor",)),
    "high_dose": ("bool", ("high_dose",), ("vasopressor", "weight")),
    # session 33 (8), (9)
    "n_vasopressors_concurrent": ("range", ("n_vasopressors_concurrent_min", "n_vasopressors_concurrent_max"),
                                  ("vasopressor",)),
    "n_vasopressors_excl_vasopressin_concurrent": ("range", ("n_vasopressors_excl_vasopressin_concurrent_min",
                                                             "n_vasopressors_excl_vasopressin_concurrent_max"),
                                                   ("vasopressor",)),
    "refractory_hypotension": ("bool", ("refractory_hypotension",), ()),
    "life_threatening_hypotension": ("bool", ("life_threatening_hypotension",), ()),  # session 34 (11)
    "vaso_episode_hours": ("range", ("vaso_episode_hours_min", "vaso_episode_hours_max"), ("vasopressor",)),
    "o2_any": ("bool", ("o2_any",), ("o2",)),
    "fio2": ("range", ("fio2_min", "fio2_max"), ("o2",)),
    "ventilation_level": ("num", ("ventilation_level",), ("o2",)),
    "organ_grade_max": ("grade", ("organ_grade_max",), ("organ",)),
    "organ_grade_max_non_transaminase": ("grade", ("organ_grade_max_non_transaminase",), ("organ",)),
    "organ_grade_max_transaminase": ("grade", ("organ_grade_max_transaminase",), ("organ",)),
    "creatinine_grade": ("grade", ("creatinine_grade",), ("organ",)),
    "lft_grade": ("grade", ("lft_grade",), ("organ",)),
    "blood_products": ("bool", ("blood_products",), ("blood_products",)),
    "hospitalized": ("bool", ("hospitalized",), ("hospitalized",)),
    "iv_therapy": ("bool", ("iv_therapy",), ("iv_therapy",)),
    "fluid_boluses": ("bool", ("fluid_boluses",), ()),
    "death_crs": ("bool", ("death_crs",), ("death",)),
    "always": ("const", (), ()),
}


def _interval(row: Mapping[str, Any], feature: str) -> tuple[float, float]:
    kind, cols, _ = _FEATURES[feature]
    if kind == "const":
        return 1.0, 1.0
    if kind == "range":
        lo, hi = row[cols[0]], row[cols[1]]
        return (-math.inf if lo is None else lo), (math.inf if hi is None else hi)
    v = row[cols[0]]
    if v is None:
        if kind == "grade":  # audit s29 (6): the grade the gradable labs settle stays a lower bound
            return float(row.get(f"{cols[0]}_known") or 0), 4.0
        return {"bool": (0.0, 1.0), "grade": (0.0, 4.0), "num": (0.0, math.inf)}[kind]
    return float(v), float(v)


def _cond(lo: float, hi: float, op: str, v: float) -> bool | None:
    if op == ">=":
        return True if lo >= v else (False if hi < v else None)
    if op == ">":
        return True if lo > v else (False if hi <= v else None)
    if op == "<":
        return True if hi < v else (False if lo >= v else None)
    if op == "<=":
        return True if hi <= v else (False if lo > v else None)
    if op == "==":
        return True if lo == hi == v else (False if v < lo or v > hi else None)
    raise ValueError(f"unknown operator {op!r}")


def scale_table(scale: str, options: CrsLegacyOptions | None = None) -> dict[str, Any]:
    """The criteria table of ``scale`` with ``$name`` parameters resolved and features checked."""
    if scale not in _TABLE_NAMES:
        raise ValueError(f"unknown CRS scale {scale!r}; known: {SCALES}")
    opts = options or CrsLegacyOptions()
    t = load_criteria(_TABLE_NAMES[scale])
    params = {**t.get("defaults", {}), **dict(opts.scale_params.get(scale, {}))}
    if params.get("gate", "fever_or_waiver") not in ("fever_or_waiver", "none"):
        raise ValueError(f"{scale}: gate must be 'fever_or_waiver' or 'none'")

    def res(v):
        if isinstance(v, str) and v.startswith("$"):
            if v[1:] not in params:
                raise ValueError(f"{scale}: parameter {v} is not defined in the table defaults")
            return params[v[1:]]
        return v

    rules = []
    for r in t["rules"]:
        for key in ("id", "grade", "when", "text", "citation"):
            if key not in r:
                raise ValueError(f"{scale}: rule {r.get('id')!r} lacks {key!r}")
        when = [{"feature": res(c["feature"]), "op": c["op"], "value": res(c["value"])} for c in r["when"]]
        if opts.multiple_vasopressors == "concurrent":  # session 33 (8): only the "multiple" count
            for c, raw in zip(when, r["when"]):
                if raw["feature"] == "$multiple_count_feature" and c["feature"] in (
                        "n_vasopressors", "n_vasopressors_excl_vasopressin"):
                    c["feature"] = c["feature"] + "_concurrent"
        for c in when:
            if c["feature"] not in _FEATURES:
                raise ValueError(f"{scale}: rule {r['id']} uses unknown feature {c['feature']!r}")
        rules.append({**r, "when": when, "gated": r.get("gated", True)})
    return {"scale": scale, "version": t["version"], "citation": t["citation"], "params": params,
            "rules": rules, "not_derived": t.get("not_derived", [])}


_GRADE_SCHEMA: dict[str, pl.DataType] = {
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


# audit s26 (4): a rule not named in the reason (nor as the day's rule) when one of these is named too
_SUPERSEDED = {"lee2014.g2.hypotension_fluids": ("lee2014.g2.one_low_dose_vasopressor",),
               "cartox.g2.hypotension_fluids": ("cartox.g2.low_dose_vasopressor",),
               "penn.g3.hypotension_fluid_boluses": ("penn.g3.low_dose_vasopressor",)}  # session 34 (12)


def _text(r: Mapping[str, Any], features: list[str], row: Mapping[str, Any]) -> str:
    """audit s26 (3): the rule's text, then ": <labs>" for each organ-toxicity input it reads."""
    details = [row.get(f"{f}_labs") if f in _ORGAN_COLS else row.get(f"{f}_detail")  # session 33 (10), 34 (12)
               for f in dict.fromkeys(features) if f in _ORGAN_COLS or f == "high_dose" or f in _S34_ASSUMED]
    return r["text"] + "".join(f": {t}" for t in details if t is not None)


def grade_crs_scale(inputs: pl.DataFrame, scale: str, options: CrsLegacyOptions | None = None) -> pl.DataFrame:
    """Daily grade (or range) of one legacy scale from :func:`crs_daily_inputs` output."""
    table = scale_table(scale, options)
    label = _LABELS[scale]
    gated_by_fever = table["params"].get("gate", "fever_or_waiver") == "fever_or_waiver"
    not_assessed = [f"{n['id']}: {n['text']}" for n in table["not_derived"]]
    out = []
    for row in inputs.to_dicts():
        unknown: dict[str, list[str]] = defaultdict(list)
        for u in row["unknown_reasons"] or []:
            f, _, why = u.partition(":")
            unknown[f].append(why)
        evid: dict[str, list[str]] = defaultdict(list)
        for e in row["feature_evidence"] or []:
            g, _, ref = e.partition("|")
            evid[g].append(ref)
        gate = _cond(*_interval(row, "crs_gate"), "==", 1) if gated_by_fever else True
        sure, maybe = [], []
        for r in table["rules"]:
            results = [(_cond(*_interval(row, c["feature"]), c["op"], c["value"]), c["feature"]) for c in r["when"]]
            if r["gated"]:
                results.append((gate, "crs_gate"))
            vals = [v for v, _ in results]
            if any(v is False for v in vals):
                continue
            if all(v is True for v in vals):
                sure.append((r, [f for _, f in results]))
            else:
                maybe.append((r, [f for v, f in results if v is None], [f for _, f in results]))
        gmin = max((r["grade"] for r, _ in sure), default=0)
        gmax = max([gmin, *(r["grade"] for r, _, _ in maybe)])
        top = [(r, fs) for r, fs in sure if r["grade"] == gmin]
        raise_ = [(r, unk, fs) for r, unk, fs in maybe if r["grade"] > gmin]
        missing = sorted({why for _, unk, _ in raise_ for f in unk for why in (unknown.get(f) or [f])})
        # ordered (not a set): evidence must come out in the same order on every run
        feats = list(dict.fromkeys([*(f for _, fs in top for f in fs), *(f for _, _, fs in raise_ for f in fs)]))
        refs = list(dict.fromkeys(ref for f in feats for g in _FEATURES[f][2] for ref in evid.get(g, [])))
        top_ids = {r["id"] for r, _ in top}
        shown = [(r, fs) for r, fs in top if not set(_SUPERSEDED.get(r["id"], ())) & top_ids]
        if top:
            rule = shown[0][0]["id"]
            reason = f"{label} grade {gmin}: " + "; ".join(_text(r, fs, row) for r, fs in shown)
        else:
            rule = f"{scale}.g0"
            if gate is False and row["other_cause"]:
                reason = f"{label} grade 0: not CRS that day (attributed to another cause: {row['other_cause']})"
            elif gate is False:
                reason = f"{label} grade 0: no CRS that day (no fever, fever requirement not waived)"
            else:
                reason = f"{label} grade 0: no criterion of the scale met"
        if gmax > gmin:
            up_ids = {r["id"] for r, _, _ in raise_}
            ups = "; ".join(f"grade {r['grade']} if {r['text']}" for r, _, _ in
                            sorted(raise_, key=lambda x: -x[0]["grade"])
                            if not set(_SUPERSEDED.get(r["id"], ())) & up_ids)
            reason += f" - could be up to grade {gmax} ({ups}); unknown: {', '.join(missing)}"
        out.append({
            "subject_id": row["subject_id"], "day": row["day"], "scale": scale,
            "grade": gmin if gmin == gmax else None, "grade_min": gmin, "grade_max": gmax,
            "rule": rule, "reason": reason, "missing_inputs": missing,
            "possible_rules": sorted({r["id"] for r, _, _ in raise_}),
            "not_assessed": not_assessed, "evidence": refs,
        })
    return pl.DataFrame(out, schema=_GRADE_SCHEMA, orient="row") if out else pl.DataFrame(schema=_GRADE_SCHEMA)


def crs_legacy_daily(
    study: Study,
    scales: Iterable[str] = SCALES,
    *,
    organ_grades: pl.DataFrame | None = None,
    hospitalization: pl.DataFrame | None = None,
    options: CrsLegacyOptions | None = None,
) -> pl.DataFrame:
    """Daily grades of several legacy scales (long format: one row per subject, day and scale)."""
    inputs = crs_daily_inputs(study, options, organ_grades=organ_grades, hospitalization=hospitalization)
    frames = [grade_crs_scale(inputs, s, options) for s in scales]
    return pl.concat(frames) if frames else pl.DataFrame(schema=_GRADE_SCHEMA)


_SUBJECT_SCHEMA: dict[str, pl.DataType] = {
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
    "not_assessed": pl.String,  # session 34 (13)
}


def _not_assessed(raising: list[dict]) -> str:
    """session 34 (13): each missing input of the days that could raise the maximum, with those days."""
    days: dict[str, set[int]] = defaultdict(set)
    for r in raising:
        for m in r["missing_inputs"]:
            days[m].add(r["day"])
    parts = []
    for m in sorted(days):
        d = sorted(days[m])
        parts.append(f"{m} on day{'s' if len(d) > 1 else ''} {', '.join(str(x) for x in d[:8])}"
                     f"{' ...' if len(d) > 8 else ''}")
    return "; ".join(parts)


def crs_legacy_subject(daily: pl.DataFrame, subject_ids: Iterable[str] | None = None) -> pl.DataFrame:
    """Per subject and scale, the maximum over the course of the daily grades (or ranges).

    ``grade_min``/``grade_max`` are the maxima of the daily bounds; ``grade`` is set when they agree.
    ``day``/``rule``/``reason``/``evidence`` come from the first day reaching ``grade_min``;
    ``missing_inputs`` gathers what is unknown on the days that could raise the maximum. Subjects in
    ``subject_ids`` without any graded day get ``grade_min`` 0 and an unknown ``grade_max``.
    """
    out = []
    by: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in daily.sort("subject_id", "scale", "day").to_dicts():
        by[(r["subject_id"], r["scale"])].append(r)
    scales_seen = list(dict.fromkeys(daily["scale"].to_list())) or list(SCALES)
    for sid in subject_ids or []:
        for s in scales_seen:
            by.setdefault((sid, s), [])
    for (sid, scale), rows in sorted(by.items()):
        if not rows:
            out.append({"subject_id": sid, "scale": scale, "grade": None, "grade_min": 0, "grade_max": None,
                        "day": None, "rule": f"{scale}.no_data",
                        "reason": f"{_LABELS.get(scale, scale)}: no graded day (no temperature, blood pressure, "
                                  "support, organ or event data)",
                        "missing_inputs": ["daily data"], "possible_rules": [], "evidence": [],
                        "not_assessed": "daily data (no graded day)"})  # session 34 (13)
            continue
        gmin = max(r["grade_min"] for r in rows)
        gmax = max(r["grade_max"] for r in rows)
        first = next(r for r in rows if r["grade_min"] == gmin)
        raising = [r for r in rows if r["grade_max"] > gmin]
        reason = first["reason"] if gmin > 0 else f"{_LABELS.get(scale, scale)} grade 0 on every graded day"
        if gmin > 0:
            reason = f"max on day {first['day']}: {reason}"
        if raising:
            days = [r["day"] for r in raising]
            reason += (f"; could be up to grade {gmax} on day(s) "
                       f"{', '.join(str(d) for d in days[:8])}{' ...' if len(days) > 8 else ''}")
        out.append({
            "subject_id": sid, "scale": scale, "grade": gmin if gmin == gmax else None,
            "grade_min": gmin, "grade_max": gmax, "day": first["day"] if gmin > 0 else None,
            "rule": first["rule"], "reason": reason,
            "missing_inputs": sorted({m for r in raising for m in r["missing_inputs"]}),
            "possible_rules": sorted({p for r in raising for p in r["possible_rules"]}),
            "evidence": list(dict.fromkeys(
                [*(first["evidence"] if gmin > 0 else []), *(e for r in raising for e in r["evidence"])])),
            "not_assessed": _not_assessed(raising),  # session 34 (13)
        })
    return pl.DataFrame(out, schema=_SUBJECT_SCHEMA, orient="row") if out else pl.DataFrame(schema=_SUBJECT_SCHEMA)


# --------------------------------------------------------------------------------------------------
# 3. cross-scale comparison


def _same_all(bounds: list[tuple[int | None, int | None]]) -> bool | None:
    """True: every scale surely gives the same grade; False: they surely differ; None: unknown."""
    if any(hi is None for _, hi in bounds):
        return None
    if all(lo == hi for lo, hi in bounds):
        return len({lo for lo, _ in bounds}) == 1
    lo = max(b[0] for b in bounds)
    hi = min(b[1] for b in bounds)
    return False if lo > hi else None


def _astct_bounds(r: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """audit s26 (1): ASTCT crs_grade_astct up to crs_grade_astct_max; not evaluable 0-?."""
    g, m = r.get("crs_grade_astct"), r.get("crs_grade_astct_max")
    if g is None:
        return 0, None
    return g, (g if m is None else max(g, m))


def crs_cross_scale(
    study: Study,
    astct: pl.DataFrame | None = None,
    organ_grades: pl.DataFrame | None = None,
    *,
    hospitalization: pl.DataFrame | None = None,
    options: CrsLegacyOptions | None = None,
    scales: Iterable[str] = SCALES,
) -> pl.DataFrame:
    """One row per subject: the maximum CRS grade (and range) on every legacy scale, side by side.

    Columns per scale ``s``: ``crs_grade_<s>`` (null when a range), ``crs_grade_<s>_min``,
    ``crs_grade_<s>_max``, ``crs_<s>_missing``, ``crs_<s>_rule``, ``crs_<s>_reason``,
    ``crs_<s>_day``, ``crs_<s>_evidence``. With ``astct`` (``subject_id, crs_grade_astct``, from the
    ASTCT engine) its grade is added as ``crs_grade_astct``. ``same_grade_all_scales`` is True/False
    when settled by the ranges, null otherwise.
    """
    scales = tuple(scales)
    daily = crs_legacy_daily(study, scales, organ_grades=organ_grades, hospitalization=hospitalization,
                             options=options)
    subj = crs_legacy_subject(daily, study.subject_ids)
    base = pl.DataFrame({"subject_id": study.subject_ids}, schema={"subject_id": pl.String})
    if astct is not None:  # audit s26 (1): with the grade a missing input could have made it
        top = "crs_grade_astct_max" if "crs_grade_astct_max" in astct.columns else "crs_grade_astct"
        a = astct.select(pl.col("subject_id").cast(pl.String), pl.col("crs_grade_astct").cast(pl.Int64),
                         # review 37 B3: ASTCT's lower bound under the other scales' name too
                         pl.col("crs_grade_astct").cast(pl.Int64).alias("crs_grade_astct_min"),
                         pl.col(top).cast(pl.Int64).alias("crs_grade_astct_max"))
        base = base.join(a, on="subject_id", how="left")
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
            pl.col("not_assessed").alias(f"crs_{s}_not_assessed"),  # session 34 (13)
        )
        base = base.join(part, on="subject_id", how="left")
    same = []
    for r in base.to_dicts():
        b = [(r[f"crs_grade_{s}_min"], r[f"crs_grade_{s}_max"]) for s in scales]
        if astct is not None:
            b.append(_astct_bounds(r))
        same.append(_same_all(b))
    together = [" | ".join(f"{_LABELS[s]}: {r[f'crs_{s}_not_assessed']}" for s in scales
                           if r[f"crs_{s}_not_assessed"]) for r in base.to_dicts()]  # session 34 (13)
    return base.with_columns(pl.Series("same_grade_all_scales", same, dtype=pl.Boolean),
                             pl.Series("not_assessed", together, dtype=pl.String))


def crs_cross_scale_cohort(
    study: Study,
    astct: pl.DataFrame | None = None,
    organ_grades: pl.DataFrame | None = None,
    *,
    hospitalization: pl.DataFrame | None = None,
    options: CrsLegacyOptions | None = None,
    scales: Iterable[str] = SCALES,
) -> dict[str, pl.DataFrame]:
    """Cohort concordance of the scales (Pennisi 2020 / JULIET-style).

    Returns ``{"subjects": crs_cross_scale(...), "pairwise": ..., "summary": ...}``.
    ``pairwise`` has one row per pair of scales (ASTCT included when given): subjects whose grades on
    both scales are settled (``n_evaluable``), concordant (``n_same``), higher / lower on the first
    scale, undetermined, and agreement on the *presence* of CRS (grade >= 1). ``summary`` has the
    proportion of subjects with the same grade on every scale (Pennisi 2020: 25% for CRS) and with
    the same presence of CRS on every scale (99%).
    """
    scales = tuple(scales)
    subj = crs_cross_scale(study, astct, organ_grades, hospitalization=hospitalization,
                           options=options, scales=scales)
    keys = list(scales) + (["astct"] if astct is not None else [])

    def bounds(r, s):
        if s == "astct":
            return _astct_bounds(r)
        return r[f"crs_grade_{s}_min"], r[f"crs_grade_{s}_max"]

    def presence(lo, hi):
        if lo is not None and lo >= 1:
            return True
        if hi is not None and hi == 0:
            return False
        return None

    rows = subj.to_dicts()
    pair_rows = []
    for a, b in combinations(keys, 2):
        n_eval = n_same = n_hi = n_lo = n_undet = n_pres_eval = n_pres_agree = 0
        for r in rows:
            (alo, ahi), (blo, bhi) = bounds(r, a), bounds(r, b)
            if ahi is not None and bhi is not None and alo == ahi and blo == bhi:
                n_eval += 1
                n_same += alo == blo
                n_hi += alo > blo
                n_lo += alo < blo
            else:
                n_undet += 1
            pa, pb = presence(alo, ahi), presence(blo, bhi)
            if pa is not None and pb is not None:
                n_pres_eval += 1
                n_pres_agree += pa == pb
        pair_rows.append({
            "scale_a": a, "scale_b": b, "n_subjects": len(rows), "n_evaluable": n_eval,
            "n_same": n_same, "n_a_higher": n_hi, "n_a_lower": n_lo, "n_undetermined": n_undet,
            "prop_same": (n_same / n_eval) if n_eval else None,
            "n_presence_evaluable": n_pres_eval, "n_presence_agree": n_pres_agree,
            "prop_presence_agree": (n_pres_agree / n_pres_eval) if n_pres_eval else None,
        })
    pairwise = pl.DataFrame(pair_rows, schema={
        "scale_a": pl.String, "scale_b": pl.String, "n_subjects": pl.Int64, "n_evaluable": pl.Int64,
        "n_same": pl.Int64, "n_a_higher": pl.Int64, "n_a_lower": pl.Int64, "n_undetermined": pl.Int64,
        "prop_same": pl.Float64, "n_presence_evaluable": pl.Int64, "n_presence_agree": pl.Int64,
        "prop_presence_agree": pl.Float64}, orient="row")

    same = subj["same_grade_all_scales"].to_list()
    n_settled = sum(v is not None for v in same)
    n_same_all = sum(v is True for v in same)
    pres = []
    for r in rows:
        ps = [presence(*bounds(r, s)) for s in keys]
        pres.append(None if any(p is None for p in ps) else len(set(ps)) == 1)
    n_pres_settled = sum(p is not None for p in pres)
    n_pres_all = sum(p is True for p in pres)
    summary = pl.DataFrame({
        "metric": ["n_subjects", "n_same_grade_settled", "n_same_grade_all_scales", "prop_same_grade_all_scales",
                   "n_presence_settled", "n_presence_agree_all_scales", "prop_presence_agree_all_scales"],
        "value": [float(len(rows)), float(n_settled), float(n_same_all),
                  (n_same_all / n_settled) if n_settled else None,
                  float(n_pres_settled), float(n_pres_all),
                  (n_pres_all / n_pres_settled) if n_pres_settled else None],
        "scales": [", ".join(keys)] * 7,
    }, schema={"metric": pl.String, "value": pl.Float64, "scales": pl.String})
    return {"subjects": subj, "pairwise": pairwise, "summary": summary}


def organ_grades_from_adlb(adlb: pl.DataFrame) -> pl.DataFrame:
    """The ``organ_grades`` input of the legacy scales from the CTCAE engine's ADLB frame.

    One row per graded lab observation with ``ATOXGR`` known: ``organ`` = the param code (the
    scales' ``organ_vocabulary`` excludes the haematological ones), ``grade`` = |ATOXGR|,
    ``is_transaminase`` for ALT/AST, and the ADLB row's evidence.
    """
    return adlb.filter(pl.col("ATOXGR").is_not_null() & pl.col("day").is_not_null()).select(
        "subject_id", "day", pl.col("param").alias("organ"), pl.col("ATOXGR").abs().alias("grade"),
        pl.col("param").is_in(["ALT", "AST"]).alias("is_transaminase"), "evidence",
    )
