"""Options of CTCAE lab grading (:class:`CtcaeOptions`), on the options base class of the criteria
language: frozen, validated when made, the rule-level defaults read from the criteria tables'
``defaults`` (admiral's worst-case readings) and documented from them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field

from cartlab.criteria import CriteriaOptions, load_raw, option_docs
from cartlab.grading.ctcae_units import criteria_names

__all__ = ["OPTION_DOCS", "CtcaeOptions"]


class CtcaeOptions(CriteriaOptions):
    """How to grade; ``None`` takes the criteria table's default (``defaults`` in
    ``criteria/ctcae_v5.yaml``: admiral's choices). A table of another CTCAE version may declare
    rule-level options that are not fields here: set them through ``extra={"name": value}``.
    """

    tables = ("ctcae_v5", "ctcae_v5_uscv")

    version: str = Field(default="5.0", description="CTCAE version: the criteria tables whose `version` is "
                         "this ('5.0' ships)")
    units: Literal["SI", "US", "auto"] = Field(
        default="auto", description="'SI', 'US' (conventional units) or 'auto': per row, the SI table when the "
        "row's unit fits it (or the term has no unit check), else the US table")
    high_indicator: tuple[str, ...] | None = None
    low_indicator: tuple[str, ...] | None = None
    signif_digits: Annotated[int, Field(ge=1, le=22)] | None = None
    inr_on_anticoagulation: bool | None = None
    pancreatic_enzymes_symptomatic: bool | None = None
    hyperuricemia_physiologic_consequences: bool | None = None
    hypokalemia_symptomatic: bool | None = None
    hyponatremia_symptomatic: bool | None = None
    ggt_baseline_grade1_inclusive: bool | None = None
    hypertriglyceridemia_grade1_inclusive: bool | None = None
    fibrinogen_pchg_condition: Literal["value_below_lln", "baseline_low", "never"] | None = None
    baseline_day: float = Field(default=0.0, description="derive_ctcae: baseline = the last non-missing value "
                                "on or before this day")
    baseline_inclusive: bool = Field(default=True, description="derive_ctcae: the baseline day itself counts "
                                     "(False: only days before it)")
    baseline_day0: Literal["calendar_day", "before_infusion_time"] = Field(
        default="before_infusion_time", description="derive_ctcae and ADVS: which rows of the baseline day "
        "count as 'on or before' it. 'before_infusion_time' (default): on the infusion day (day 0) a timed row "
        "counts only before the first CAR-T infusion's time (its dose row time or subjects.infusion_datetime), "
        "so a 07:00 sample before a 10:00 infusion is a baseline and a 12:00 one is on treatment; a row "
        "without a clock time, or a subject whose infusion time is unknown, counts by calendar day (as a "
        "date-only day-0 row always did). 'calendar_day': every row of day 0, timed or not. Session 37 "
        "(review 37 R37-8; whole-diff review A2: a post-infusion sample is not a baseline)")
    calcium: Literal["corrected", "as_given"] = Field(
        default="corrected", description="derive_ctcae and param rows (CA): CTCAE v5.0 Hypocalcemia/"
        "Hypercalcemia grade corrected serum calcium (CACORR) or ionized calcium (CAION, the '(Ionized)' "
        "terms). 'corrected' (the standard's reading): total calcium CA is not graded itself; "
        "derive_ctcae derives CACORR = CA + 0.02 x (40 - ALB g/L) from a CA and an ALB (albumin) row "
        "of the same subject on the same calendar day (unless a measured CACORR exists that day; "
        "derived rows have DTYPE 'DERIVED' and evidence to both rows), and a CA without albumin "
        "that day is not gradable ('corrected calcium needs albumin (ALB) on the same day'). "
        "'as_given': CA is graded as if already corrected (sponsors whose CA is corrected). A row "
        "that names the term Hypocalcemia is always graded on the value given (the user chose the "
        "term). Formula: criteria/ctcae_v5.yaml derived_params (Payne 1973 form; slope 0.02 "
        "mmol/L per g/L, status partially_verified)")
    calcium_summary: Literal["merged", "split"] = Field(
        default="merged", description="the subject-level toxicity summary (cohort/subject toxicity tables): "
        "CTCAE v5.0 has one term Hypocalcemia and one Hypercalcemia, graded on a corrected or an ionized "
        "calcium. 'merged' (default, the standard's single term): the worse of the corrected (CACORR) and "
        "ionized (CAION, admiral's '(Ionized)' metadata rows) grades counts under 'Hypocalcemia' / "
        "'Hypercalcemia', the reason naming the variant that decided. 'split': each on its own row (admiral's "
        "metadata rows). ADLB rows keep their own PARAMCD and ATOXDSC either way. Session 39 (review 39 R39-3)")
    criteria_units_by_row: Literal["si", "reported"] = Field(
        default="si", description="derive_ctcae and cartlab ctcae (a parameter row, review 41 F2): which CTCAE "
        "column grades a row. CTCAE v5.0 gives "
        "US (mg/dL) and SI (mmol/L) bounds that are not exact conversions of each other (Hypocalcemia "
        "grade 1 '<LLN - 8.0 mg/dL; <LLN - 2.0 mmol/L', 8.0 mg/dL = 1.996 mmol/L). 'si' (default, as "
        "admiral grades converted values): every row on the SI table (ctcae_v5.yaml); when the lab "
        "reported a US unit (observations orig_unit) and the US column would give another grade, "
        "grade_reason says so. 'reported': a row whose reported unit is the US column's unit (mass "
        "concentration where the SI column is molar, e.g. calcium in mg/dL; or haemoglobin in mmol/L, "
        "CTCAE's third Anemia column, session 37) is graded on that column (ctcae_v5_uscv.yaml) with its "
        "values in that unit; rows without an original unit are SI. In cartlab ctcae the row's unit is the reported "
        "one (a row naming a CTCAE term is graded on that term's column as given). Session 34 (review 34 F1)")
    clinical_clauses: Literal["worst_case", "range"] | None = None
    no_baseline: Literal["normal", "range"] | None = None
    extra: Mapping[str, Any] | tuple[tuple[str, Any], ...] = Field(
        default=(), description="values of rule-level options declared by a criteria table but not fields of "
        "this class (a mapping or (name, value) pairs)")

    def resolved(self, table: str | dict[str, Any] | None = None) -> dict[str, Any]:  # type: ignore[override]
        """The table's ``defaults`` overlaid with the options set here, the engine options and the
        ``extra`` ones (each must be declared by the table); by default the first table of
        ``version``."""
        data = table if isinstance(table, dict) else load_raw(table or criteria_names(self.version, "auto")[0])
        out = super().resolved(data)
        extra = dict(self.extra)
        unknown = sorted(set(extra) - set(data.get("defaults") or {}))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown}: not declared by the criteria tables")
        allowed = data.get("options") or {}
        for name, value in extra.items():
            values = (allowed.get(name) or {}).get("values")
            if values is not None and value not in values:
                raise ValueError(f"option {name}={value!r} not allowed by {data.get('name', 'the table')} "
                                 f"(allowed: {values})")
        out.pop("extra")
        out.update(extra)
        return out


def _option_docs() -> dict[str, str]:
    table = option_docs(CtcaeOptions.tables[0])
    described = {name: f.description for name, f in CtcaeOptions.__pydantic_fields__.items() if f.description}
    return {name: (f"{table[name][1]} (default {table[name][0]})" if name in table else described[name])
            for name in CtcaeOptions.__pydantic_fields__ if name != "extra"}


#: one line per option but ``extra`` (generated: the table's ``defaults`` comments and the engine fields)
OPTION_DOCS: dict[str, str] = _option_docs()
