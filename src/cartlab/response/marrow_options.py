"""Options of the marrow response criteria (:class:`ResponseOptions`, moved out of
:mod:`cartlab.response.marrow` in session 40) and how they meet a study of several diseases.

* :class:`ResponseOptions` — every documented choice; ``None`` = the criteria table's default.
  Values outside their range are refused when the options are made (review 40 B2).
* :func:`resolve_for_study` — the options resolved per criteria table in use. An option one table
  does not define (``use_crh``: ELN 2022 AML only) is not used for that table's subjects, with ONE
  warning naming the option and those subjects (review 40 B1: never a per-subject failure that
  drops subjects).
* :func:`mrd_qualifies` — the categories a table's MRD negativity qualifies (ELN 2022 "CR, CRh, or
  CRi without MRD"; review 45 F5).
* :func:`open_categories` — the categories a "not evaluable" rule row leaves open (the table's
  ``not_evaluable_open``: ``eln2022.NE.aplastic`` could be MLFS for want of an aspirate cell count;
  review 40 B5).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, Literal

from pydantic import Field

from cartlab.criteria import CriteriaOptions, load_raw
from cartlab.errors import InputError, SubjectsWarning
from cartlab.response.infusion_evidence import EVIDENCE_DOC

__all__ = ["OPTION_BOUNDS", "ResponseOptions", "inapplicable", "missing_count_open", "mrd_qualifies", "open_categories",
           "resolve_for_study"]

PACKAGE = "cartlab.response"
#: the shipped response criteria tables
RESPONSE_TABLES = ("eln2022_aml", "all_car_t")

#: option -> (lowest, highest, what the value is): checked when the options are made (review 40 B2).
#: The count window and transfusion days are calendar days (spec "Response": counts "from the marrow
#: day (or the nearest within +/- 3 days)"); CRi has two counts to recover (ELN 2022 Table 7: "All
#: CR criteria except for residual neutropenia ... or thrombocytopenia"); a cellularity is a
#: percentage; MRDFCM is a fraction of cells (spec "observations": MRDFCM 0-1); the pre-treatment
#: marrow is before the CAR-T (spec "Response": "the last one before day 0").
OPTION_BOUNDS: dict[str, tuple[float, float, str]] = {
    "count_window_days": (0, math.inf, "0 or more calendar days (0 = the marrow's calendar day only)"),
    "platelet_transfusion_free_days": (0, math.inf, "0 or more calendar days"),
    "min_cellularity_pct": (0, 100, "a percentage from 0 to 100"),
    "cri_min_recovered_counts": (0, 2, "0, 1 or 2 (of the two counts ANC and platelets)"),
    "mrd_threshold": (0, 1, "a fraction of cells above 0 and at most 1 (0.001 = 0.1%)"),
    "pre_treatment_before_day": (-math.inf, 0, "day 0 or earlier (the pre-treatment marrow is before the CAR-T)"),
    "emd_window_days": (0, math.inf, "0 or more calendar days (an EMD event at most this many days before the marrow)"),
    "antigen_forward_days": (0, math.inf, "0 or more calendar days (0 = the relapse's calendar day only)"),
    "mrd_relapse_confirm_within_days": (0, math.inf, "0 or more calendar days from the first positive sample"),
}


class ResponseOptions(CriteriaOptions):
    """Options of the response criteria; ``None`` takes the criteria table's default (AML: ELN 2022,
    ALL: ELIANA; each documented by its comment in the table's ``defaults``, rendered below). An
    option one criteria table does not have (``use_crh``, ``cri_min_recovered_counts``: AML only) is
    used for the subjects of the tables that have it and not for the others (a warning names them);
    ``resolved(table)`` of such a table refuses it.

    ``cri_min_recovered_counts`` 0 makes CRi "either count may be short"; ``missing_pb_blasts``
    "not_evaluable" makes a marrow that would be CR/CRh/CRi/MLFS but has no PBBLAST within the
    count window NE, naming the categories still possible, "assume_absent" reads the missing value
    as no circulating blasts (and the reason says so). ``aplastic_marrow`` (blasts < 5%, cellularity
    below ``min_cellularity_pct``): "not_evaluable" = NE could be MLFS (ELN 2022 MLFS: ">= 200 cells
    enumerated in the aspirate or cellularity >= 10%"; the format has no cell count) or, for ALL, the
    CR/CRi its counts allow (BBMT 2010 ALL Table 4a: "Adequate bone marrow cellularity"; review 45
    F1), "no_response" = NR. ``min_cellularity_pct`` and ``missing_cellularity`` are read by AML's
    MLFS and ALL's CR/CRi (ALL's default 0: the spec's ALL rule reads no cellularity). ``same_day_marrow``, ``relapse_after``,
    ``mrd_relapse_same_specimen``, ``mrd_specimen``, ``all_count_strict``, ``same_day_baseline`` (the
    PR baseline of several same-day readings), ``pb_blast_consecutive`` and ``pb_relapse_date`` (relapse by blood),
    ``emd_window_days``, ``pre_infusion_emd``, ``mrd_molecular``, ``mrd_zero_without_lloq``,
    ``mrd_relapse_methods``, ``mrd_relapse_confirm_within_days``, ``missing_count``: see the table's comments.
    ``antigen_forward_days`` / ``antigen_relapse_specimen``: the target antigen at relapse
    (:func:`cartlab.response.molecular.derive_relapse_antigen`). Ranges: :data:`OPTION_BOUNDS`.
    """

    criteria_package = "cartlab.response"
    tables = RESPONSE_TABLES

    count_window_days: int | None = None
    emd_window: Literal["since_infusion", "assessment_day"] | None = None
    platelet_transfusion_free_days: int | None = None
    min_cellularity_pct: int | float | None = None
    cri_min_recovered_counts: int | None = None
    use_crh: bool | None = None
    aplastic_marrow: Literal["not_evaluable", "no_response"] | None = None
    mrd_threshold: int | float | None = None
    mrd_threshold_inclusive: bool | None = None
    missing_pb_blasts: Literal["not_evaluable", "assume_absent"] | None = None
    missing_cellularity: Literal["assume_adequate", "not_evaluable"] | None = None
    same_day_marrow: Literal["highest", "not_evaluable"] | None = None
    relapse_after: tuple[Literal["CR", "CRh", "CRi", "MLFS"], ...] | None = None  # not PR: a PR marrow has 5-25% blasts (ELN: relapse is >= 5%)
    mrd_relapse_same_specimen: bool | None = None
    mrd_specimen: Literal["BM", "any"] | None = None
    all_count_strict: bool | None = None
    same_day_baseline: Literal["range", "lowest", "highest"] | None = None
    pb_blast_consecutive: bool | None = None
    mrd_relapse_confirm: Literal["next_sample", "none"] | None = None  # review 41: see the table's comments
    emd_window_days: int | float | None = None
    mrd_molecular: Literal["name", "not_negative", "molecular_first"] | None = None  # molecular_first: review 47 F2
    mrd_zero_without_lloq: Literal["negative", "not_evaluable"] | None = None
    pre_infusion_emd: Literal["ignore", "unknown"] | None = None  # review 45 F4: see the table's comments
    pb_relapse_date: Literal["confirming", "first"] | None = None  # review 45 F3: see the table's comments
    # review 47 (F1, F4, F3): see the table's comments
    mrd_relapse_methods: Literal["flow", "flow_and_molecular"] | None = None
    mrd_relapse_confirm_within_days: int | float | None = None
    missing_count: Literal["lower_bound", "not_evaluable"] | None = None
    pre_treatment_before_day: float = Field(default=0.0, description="the pre-treatment marrow is the last "
                                            "BMBLAST before this day")
    criteria: str | None = Field(default=None, description="force one table (eln2022_aml, all_car_t) for every "
                                 "subject instead of choosing it by disease")
    infusion_evidence: Literal["dose_or_kinetics", "dose"] = Field(default="dose_or_kinetics", description=EVIDENCE_DOC)
    antigen_forward_days: float = Field(default=7.0, description=(
        "target antigen at relapse (relapse_antigen.csv): a TGTBLAST result up to this many calendar days after "
        "the relapse gives the relapse's antigen status (0 = the relapse's calendar day only); the search also "
        "stops at the first new_therapy or allo_hsct after the relapse. No source gives a window: a result "
        "later than that is not the relapse's phenotype (review 41 F1)"))
    antigen_relapse_specimen: Literal["BM", "any"] = Field(default="BM", description=(
        "target antigen at relapse: 'BM' = on a day with a marrow (BM, or no specimen) and a blood result, the "
        "marrow's decides and the blood's is named; 'any' = negative when either specimen is (review 41 F2)"))

    def __post_init__(self) -> None:
        for name, (low, high, what) in OPTION_BOUNDS.items():
            v = getattr(self, name)
            if v is None or isinstance(v, bool):
                continue
            if not low <= v <= high or (name == "mrd_threshold" and v <= 0):
                raise ValueError(f"response.{name} = {v!r} is not valid; expected {what}")

    def resolved(self, table: str | dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        """The table's defaults overlaid with the options set here (the table is chosen per subject)."""
        return super().resolved(table)


def _defaults(table: str) -> dict[str, Any]:
    return load_raw(table, PACKAGE).get("defaults") or {}


def inapplicable(options: ResponseOptions, table: str) -> list[str]:
    """The options set here (not None) that criteria table ``table`` does not define."""
    have = _defaults(table)
    return [f.name for f in dataclasses.fields(options) if f.default is None and f.name != "criteria"
            and getattr(options, f.name) is not None and f.name not in have]


def applicable(options: ResponseOptions, table: str) -> ResponseOptions:
    """The options with those ``table`` does not define reset to the table's default (None)."""
    drop = inapplicable(options, table)
    return dataclasses.replace(options, **dict.fromkeys(drop)) if drop else options


def resolve_for_study(options: ResponseOptions, table_of: dict[str, str | None],
                      warn: bool = True) -> dict[str, dict[str, Any]]:
    """Per criteria table in use (``table_of``: subject -> table, None = no criteria), the resolved
    options. An option a table in use does not define (``use_crh`` for ALL) is not used for that
    table's subjects, who keep the table's rules; ONE warning per option names it, the standard and
    those subjects (``warn``). Never a failure: a subject is never dropped for an option of another
    disease, in a mixed study or in a batch of one disease (review 40 B1). An option no shipped table
    defines is refused (InputError)."""
    names = [t for t in dict.fromkeys(table_of.values()) if t is not None]
    lacking = {t: inapplicable(options, t) for t in names}
    for opt in dict.fromkeys(o for v in lacking.values() for o in v):
        defined = [load_raw(t, PACKAGE)["standard"] for t in RESPONSE_TABLES if opt in _defaults(t)]
        if not defined:
            raise InputError(f"option response.{opt} is defined by no response criteria table; remove --set response.{opt}")
        if not warn:
            continue
        for t in names:
            if opt not in lacking[t]:
                continue
            ids = [s for s, x in table_of.items() if x == t]
            standard = load_raw(t, PACKAGE)["standard"]
            warnings.warn(SubjectsWarning(
                f"option response.{opt}={getattr(options, opt)!r} applies to {' and '.join(defined)} only: not used "
                f"for {len(ids)} {standard} subject(s), whose response follows the {standard} table: {{subjects}}",
                ids, "marrow_response.csv (column criteria)"), stacklevel=3)
    if warn:
        _warn_differing_defaults(options, table_of, names)
    return {t: applicable(options, t).resolved(load_raw(t, PACKAGE)) for t in names}


def _warn_differing_defaults(options: ResponseOptions, table_of: dict[str, str | None], names: list[str]) -> None:
    """One warning per option set here whose default differs between the criteria tables in use (e.g.
    ``mrd_threshold``: ELN 2022 AML 0.001, ALL 0.0001): the one value replaces every table's default,
    so the warning names each default and the subjects whose default it replaces (review 41 F8; the
    options have no per-table key)."""
    if len(names) < 2:
        return
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if f.default is not None or f.name == "criteria" or value is None:
            continue
        have = {t: _defaults(t)[f.name] for t in names if f.name in _defaults(t)}
        if len(have) < 2 or len({repr(v) for v in have.values()}) < 2:
            continue
        changed = [t for t, v in have.items() if repr(v) != repr(list(value) if isinstance(value, tuple) else value)]
        ids = [s for s, t in table_of.items() if t in changed]
        if not ids:
            continue
        shown = "; ".join(f"{load_raw(t, PACKAGE)['standard']}'s default {v!r}" for t, v in have.items())
        warnings.warn(SubjectsWarning(
            f"option response.{f.name}={value!r} is set once for every criteria table, whose defaults differ "
            f"({shown}): it replaces the default for {len(ids)} subject(s) of "
            f"{' and '.join(load_raw(t, PACKAGE)['standard'] for t in changed)}: {{subjects}}",
            ids, "marrow_response.csv (the reason names the value used)"), stacklevel=4)


def open_categories(table: dict[str, Any], rule_id: str) -> tuple[list[str], list[str]] | None:
    """(could_be, missing inputs) of a "not evaluable" rule row of the table's ``not_evaluable_open``
    (e.g. ``eln2022.NE.aplastic``: could be MLFS, missing an aspirate cell count), else None."""
    found = (table.get("not_evaluable_open") or {}).get(rule_id)
    if not found:
        return None
    return list(found.get("could_be") or []), list(found.get("missing") or [])


def missing_count_open(table: dict[str, Any], opts: dict[str, Any], a: dict[str, Any]) -> dict[str, Any]:
    """Option ``missing_count`` (review 47 F3): with "not_evaluable", an assessment in the table's
    ``missing_count_rule.applies_to`` (CRh, CRi: categories that assert a residual cytopenia) that a
    missing count (ANC, platelets) leaves open to a better category is NE (rule
    ``eln2022.NE.missing_count``), ``could_be`` that category and the better ones, as a missing PBBLAST
    gives (ELN 2022 Table 7 CRi: "residual neutropenia ... or thrombocytopenia", a finding; spec
    "Response": a missing input never yields a definitive negative). "lower_bound" (default) keeps the
    category as a lower bound. A table without the rule (ALL) is unchanged."""
    rule = table.get("missing_count_rule")
    if rule is None or opts.get("missing_count", "lower_bound") != "not_evaluable":
        return a
    if (a["category"] not in rule["applies_to"] or not a["could_be"]
            or not set(rule["features"]) & set(a.get("missing") or [])):
        return a
    order = ("CR", "CRh", "CRi", "MLFS", "PR")
    could = sorted({a["category"], *a["could_be"]}, key=lambda c: order.index(c) if c in order else len(order))
    return {**a, "category": rule["category"], "rule": rule["id"], "text": rule["text"], "could_be": could}


def mrd_qualifies(table: str | None = None) -> tuple[str, ...]:
    """The categories the MRD qualifier of a criteria table (its ``mrd.qualifies``) applies to, by table
    name (``eln2022_aml``) or standard (``ELN 2022 AML``): ELN 2022 Table 7 "CR, CRh, or CRi without
    MRD"; ALL CR/CRi MRD-negative. ``None`` or an unknown table: every shipped table's, in rank order.
    An MLFS or PR with MRDFCM below the threshold keeps ``mrd_negative`` (the spec's threshold reading)
    but is not "MRD negative" in the standard's sense (review 45 F5)."""
    out: list[str] = []
    for t in RESPONSE_TABLES:
        raw = load_raw(t, PACKAGE)
        if table is None or table in (t, raw.get("standard")) or table not in (
                *RESPONSE_TABLES, *(load_raw(x, PACKAGE).get("standard") for x in RESPONSE_TABLES)):
            out += [c for c in ((raw.get("mrd") or {}).get("qualifies") or ()) if c not in out]
    order = ("CR", "CRh", "CRi", "MLFS", "PR")
    return tuple(sorted(out, key=lambda c: order.index(c) if c in order else len(order)))
