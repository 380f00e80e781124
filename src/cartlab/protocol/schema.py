"""Protocol files: a CAR-T programme's eligibility, lymphodepletion, CAR-T dose, monitoring and
response plan as data (YAML, schema ``cartlab-protocol/1``).

A protocol is validated on load; every problem is reported with the file, the line and the key
path (``lymphodepletion[1].unit``) and nothing is returned half-read. Shipped protocols live in
``cartlab/protocol/protocols/<id>.yaml`` and are addressable by id (lower case) as well as by path::

    from cartlab.protocol import load_protocol
    p = load_protocol("nct04762485")

Conventions
-----------
* Days are relative to the first CAR-T infusion (day 0), as everywhere in cartlab.
* Lymphodepletion doses have a basis: ``mg/m2`` (x body-surface area), ``mg/kg`` (x weight) or
  ``mg`` (flat).
* A CAR-T dose is given per weight band: ``cells/kg`` (x weight) or ``cells`` (flat), with the
  labelled/protocol range ``min``..``max`` and an optional ``target``; a split dose lists its
  infusions with the fraction of the total each one carries.
* Every number carries a ``citation``; ``source`` says whether it is stated (``published``,
  ``label``) or ``reconstructed``.
* A protocol is a table of rules (``<id>.eligibility.<criterion>``, ``<id>.lymphodepletion.<agent>``,
  ``<id>.car_t``, ``<id>.monitoring.<schedule>``, ``<id>.dosing``, ``<id>.lymphodepletion``), each
  with a verification ``status`` (the criteria tables' vocabulary): the item's own ``status``, else
  ``convention`` for a ``reconstructed`` item (cartlab's choice where the source is silent), else
  the protocol's ``status``, else ``unverified``. :meth:`Protocol.rule_infos` lists them;
  :func:`load_protocol` registers them with :mod:`cartlab.criteria.status`, so the ``rule_status``
  of the protocol's outputs comes from the protocol file.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cartlab._yaml import load_yaml
from cartlab.criteria.model import SchemaError, Status

__all__ = [
    "SCHEMA",
    "ProtocolError",
    "Protocol",
    "Criterion",
    "LymphodepletionAgent",
    "DoseBand",
    "Infusion",
    "CarTDose",
    "Monitoring",
    "ResponsePlan",
    "Tolerances",
    "LymphodepletionWindow",
    "DosingRules",
    "load_protocol",
    "parse_protocol",
    "shipped_protocols",
]

SCHEMA = "cartlab-protocol/1"
LD_UNITS = ("mg/m2", "mg/kg", "mg")
CAR_UNITS = ("cells/kg", "cells")
SUBJECT_FIELDS = ("age_years", "sex", "disease", "target", "weight_kg", "height_cm")
OPS = ("<", "<=", ">", ">=", "==", "!=", "in", "not_in", "between")
SOURCES = ("published", "label", "registry", "reconstructed")


class ProtocolError(SchemaError):
    """A protocol file breaks the schema; ``problems`` lists (where, message) for every problem."""

    what = "protocol"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -------------------------------------------------------------------------------------------------
# eligibility


class Criterion(_Strict):
    """One eligibility criterion, as data.

    The condition ``<data> <op> <value>`` is read from one of ``field`` (a subjects.csv column),
    ``param`` (an observation code, the last value in the screening window) or ``event`` (an event
    recorded in the window; when none is recorded the criterion is *unknown* unless
    ``absence_means_no``), or the criterion is ``manual`` (not decidable from the data; always
    *unknown* with the reason). An inclusion criterion passes when the condition holds; an exclusion
    criterion passes (does not exclude) when it does not. ``any_of`` combines sub-conditions with OR.
    """

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_]*$")
    text: str
    kind: Literal["inclusion", "exclusion"] = "inclusion"
    field: Optional[Literal["age_years", "sex", "disease", "target", "weight_kg", "height_cm"]] = None
    param: Optional[str] = None
    analyte: Optional[str] = None
    event: Optional[str] = None
    manual: bool = False
    absence_means_no: bool = False
    #: an ``event`` criterion: does a recorded event decide it? False = a recorded event gives
    #: *unknown* (the data record the event, not the property the criterion asks about, e.g.
    #: "uncontrolled active infection"); the reason names the event and ``event_note``
    event_decides: bool = True
    event_note: Optional[str] = None
    op: Optional[Literal["<", "<=", ">", ">=", "==", "!=", "in", "not_in", "between"]] = None
    value: Union[float, str, list[Union[float, str]], None] = None
    unit: Optional[str] = None
    relative_to: Optional[Literal["uln", "lln"]] = None
    window: Optional[tuple[float, float]] = None
    any_of: Optional[list["Criterion"]] = None
    citation: str = ""
    status: Optional[Status] = None
    note: Optional[str] = None

    @model_validator(mode="after")
    def _one_source(self) -> "Criterion":
        sources = [n for n in ("field", "param", "event") if getattr(self, n) is not None]
        if self.any_of:
            if sources or self.manual:
                raise ValueError("a criterion with any_of takes its data from its sub-conditions only")
            return self
        if self.manual:
            if sources:
                raise ValueError("a manual criterion takes no field, param or event")
            return self
        if len(sources) != 1:
            raise ValueError("give exactly one of field, param, event (or manual: true, or any_of)")
        if self.event is not None:
            if self.op is not None:
                raise ValueError("an event criterion is 'the event is recorded in the window'; it takes no op")
            return self
        if self.op is None or self.value is None:
            raise ValueError("op and value are required")
        if self.op == "between":
            if not (isinstance(self.value, list) and len(self.value) == 2
                    and all(isinstance(v, (int, float)) for v in self.value) and self.value[0] <= self.value[1]):
                raise ValueError("op 'between' needs value [low, high] with low <= high (both inclusive)")
        elif self.op in ("in", "not_in"):
            if not isinstance(self.value, list) or not self.value:
                raise ValueError(f"op {self.op!r} needs a non-empty list value")
        elif self.op in ("<", "<=", ">", ">=") and not isinstance(self.value, (int, float)):
            raise ValueError(f"op {self.op!r} needs a number value")
        if self.relative_to and self.param is None:
            raise ValueError("relative_to (uln/lln) only applies to a param")
        if self.relative_to and self.unit:
            raise ValueError("a value relative to uln/lln is a multiple; it takes no unit")
        if self.param is not None:
            from cartlab.io.dictionary import load_dictionary

            d = load_dictionary()
            if self.param not in d:
                raise ValueError(f"unknown param {self.param!r} (not in the parameter dictionary)")
            if self.unit is not None and isinstance(self.value, (int, float, list)):
                try:
                    d[self.param].conversion_from(self.unit)
                except Exception as exc:  # UnitError
                    raise ValueError(f"unit {self.unit!r} for {self.param}: {exc}") from None
        return self


# -------------------------------------------------------------------------------------------------
# dosing


class DosingRules(_Strict):
    """How body size enters the doses: BSA formula (Mosteller default), optional BSA cap, the
    renal-function estimate used by renal adjustment rules and the weight Cockcroft-Gault uses.

    ``renal_function``: ``crcl_cockcroft_gault`` (absolute mL/min), ``crcl_cockcroft_gault_bsa``
    (the same normalised to 1.73 m2: CrCl x 1.73 / BSA, for bands written in mL/min/1.73 m2) or
    ``egfr_ckd_epi_2021`` or ``egfr_bedside_schwartz``; None = each rule's own; used from 18 years.
    ``paediatric_renal_function``: the measure under 18 years; None = the table's
    (``egfr_bedside_schwartz``, renal_adjustment.yaml ``paediatric_measure``), ``same_as_adults`` =
    ``renal_function`` at every age. ``crcl_weight``: ``actual`` (the 1976 paper's default),
    ``ideal`` (the lesser of actual and Devine IBW) or ``adjusted`` (IBW + 0.4 x (actual - IBW)
    above 1.3 x IBW); ``ideal``/``adjusted`` cannot be combined with ``crcl_cockcroft_gault_bsa``."""

    bsa_method: Literal["mosteller", "dubois", "haycock"] = "mosteller"
    bsa_cap_m2: Optional[float] = Field(default=None, gt=0)
    #: None = each renal rule's own measure (Cockcroft-Gault CrCl for the fludarabine labels)
    renal_function: Optional[Literal["crcl_cockcroft_gault", "crcl_cockcroft_gault_bsa", "egfr_ckd_epi_2021",
                                     "egfr_bedside_schwartz"]] = None
    paediatric_renal_function: Optional[Literal["egfr_bedside_schwartz", "crcl_cockcroft_gault",
                                                "crcl_cockcroft_gault_bsa", "egfr_ckd_epi_2021",
                                                "same_as_adults"]] = None
    crcl_weight: Literal["actual", "ideal", "adjusted"] = "actual"
    citation: str = ""
    status: Optional[Status] = None

    @model_validator(mode="after")
    def _one_normalisation(self) -> "DosingRules":
        if self.crcl_weight != "actual" and "crcl_cockcroft_gault_bsa" in (self.renal_function,
                                                                          self.paediatric_renal_function):
            raise ValueError(f"crcl_weight {self.crcl_weight} cannot be combined with crcl_cockcroft_gault_bsa "
                             "(CrCl x 1.73 / BSA of the actual weight): no source defines that mixed normalisation")
        return self


class LymphodepletionAgent(_Strict):
    """One lymphodepleting agent: dose per administration on its basis, on the listed days."""

    agent: str = Field(min_length=1)
    dose: float = Field(gt=0)
    unit: Literal["mg/m2", "mg/kg", "mg"]
    days: list[float] = Field(min_length=1)
    route: str = "IV"
    max_dose_mg: Optional[float] = Field(default=None, gt=0)
    renal_adjustment: Optional[str] = None
    #: who says the renal rule applies to this regimen: the rule itself comes from its own table
    #: (e.g. the fludarabine label); applying it here is cartlab's convention unless the protocol's
    #: source states it (then give its citation and status). Rule ``<id>.lymphodepletion.<agent>.renal``
    renal_adjustment_citation: str = ""
    renal_adjustment_status: Status = "convention"
    citation: str = Field(min_length=1)
    source: Literal["published", "label", "registry", "reconstructed"] = "published"
    status: Optional[Status] = None
    #: where the listed days come from when it differs from the dose's ``source`` (e.g. cartlab's
    #: placement inside a label's window: ``reconstructed``); rule ``<id>.lymphodepletion.<agent>.days``
    days_source: Optional[Literal["published", "label", "registry", "reconstructed"]] = None
    note: Optional[str] = None

    @field_validator("days")
    @classmethod
    def _distinct(cls, v: list[float]) -> list[float]:
        if len(set(v)) != len(v):
            raise ValueError("days must not repeat")
        return sorted(v)

    @field_validator("agent")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.strip().lower()


class DoseBand(_Strict):
    """A CAR-T dose for a weight band (``above_kg`` < weight <= ``up_to_kg``; either may be open)."""

    above_kg: Optional[float] = Field(default=None, ge=0)
    up_to_kg: Optional[float] = Field(default=None, gt=0)
    unit: Literal["cells/kg", "cells"]
    target: Optional[float] = Field(default=None, gt=0)
    #: the lowest dose allowed (None: the source states no minimum)
    min: Optional[float] = Field(default=None, gt=0)
    max: float = Field(gt=0)
    max_total_cells: Optional[float] = Field(default=None, gt=0)
    citation: str = Field(min_length=1)

    @model_validator(mode="after")
    def _ranges(self) -> "DoseBand":
        lo = self.min if self.min is not None else 0.0
        if lo > self.max:
            raise ValueError(f"min {lo:g} is above max {self.max:g}")
        if self.target is not None and not (lo <= self.target <= self.max):
            raise ValueError(f"target {self.target:g} is outside min..max {lo:g}..{self.max:g}")
        if self.above_kg is not None and self.up_to_kg is not None and self.above_kg >= self.up_to_kg:
            raise ValueError("above_kg must be below up_to_kg")
        return self

    def holds(self, weight_kg: float) -> bool:
        return (self.above_kg is None or weight_kg > self.above_kg) and (
            self.up_to_kg is None or weight_kg <= self.up_to_kg)

    def describe(self) -> str:
        lo = f"> {self.above_kg:g} kg" if self.above_kg is not None else ""
        hi = f"<= {self.up_to_kg:g} kg" if self.up_to_kg is not None else ""
        return " and ".join(x for x in (lo, hi) if x) or "any weight"


class Infusion(_Strict):
    day: float
    fraction: float = Field(gt=0, le=1)


class CarTDose(_Strict):
    """The CAR-T product and its dose: weight bands, split infusions (fractions of the total)."""

    product: str = Field(min_length=1)
    agent: str = "CAR-T"
    cells_counted: str = "CAR-T cells"
    bands: list[DoseBand] = Field(min_length=1)
    infusions: list[Infusion] = Field(min_length=1)
    citation: str = Field(min_length=1)
    source: Literal["published", "label", "registry", "reconstructed"] = "published"
    status: Optional[Status] = None
    note: Optional[str] = None
    #: where the bands' ``target`` comes from when it is not the protocol's own dose (e.g. one
    #: patient's dose level in a dose-escalation trial: ``reconstructed``). Then deviations compare
    #: the subject's TOTAL dose with the band's range ``min``..``max`` (or with an intended dose given
    #: per subject), not with the target; rule ``<id>.car_t.range``
    target_source: Optional[Literal["published", "label", "registry", "reconstructed"]] = None
    #: where the infusion days and fractions come from when not stated by the protocol
    #: (``reconstructed``: deviations do not check the split, one ``not_checkable`` row says so);
    #: rule ``<id>.car_t.split``
    split_source: Optional[Literal["published", "label", "registry", "reconstructed"]] = None
    split_citation: str = ""

    @model_validator(mode="after")
    def _check(self) -> "CarTDose":
        total = sum(i.fraction for i in self.infusions)
        if not math.isclose(total, 1.0, abs_tol=1e-9):
            raise ValueError(f"infusion fractions add up to {total:g}, not 1")
        days = [i.day for i in self.infusions]
        if len(set(days)) != len(days):
            raise ValueError("infusion days must not repeat")
        # bands must not overlap: probe each band's edges
        edges = sorted({b.above_kg for b in self.bands if b.above_kg is not None}
                       | {b.up_to_kg for b in self.bands if b.up_to_kg is not None})
        probes = [e + d for e in edges for d in (-1e-6, 0.0, 1e-6)] + [1.0, 1000.0]
        for w in probes:
            n = sum(b.holds(w) for b in self.bands)
            if n > 1:
                raise ValueError(f"dose bands overlap at weight {w:g} kg")
        return self

    def band_for(self, weight_kg: float) -> DoseBand | None:
        for b in self.bands:
            if b.holds(weight_kg):
                return b
        return None


# -------------------------------------------------------------------------------------------------
# monitoring, response, tolerances


class Monitoring(_Strict):
    """Which parameters must be measured on which days (explicit list and/or a daily range)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_]*$")
    params: list[str] = Field(min_length=1)
    days: list[float] = Field(default_factory=list)
    daily_from: Optional[float] = None
    daily_to: Optional[float] = None
    tolerance_days: float = Field(default=0, ge=0)
    citation: str = Field(min_length=1)
    source: Literal["published", "label", "registry", "reconstructed"] = "published"
    status: Optional[Status] = None

    @model_validator(mode="after")
    def _check(self) -> "Monitoring":
        from cartlab.io.dictionary import load_dictionary

        d = load_dictionary()
        bad = [p for p in self.params if p not in d]
        if bad:
            raise ValueError(f"unknown param(s) {', '.join(bad)} (not in the parameter dictionary)")
        if (self.daily_from is None) != (self.daily_to is None):
            raise ValueError("give both daily_from and daily_to, or neither")
        if self.daily_from is not None and self.daily_from > self.daily_to:
            raise ValueError("daily_from is after daily_to")
        if not self.days and self.daily_from is None:
            raise ValueError("give days and/or daily_from..daily_to")
        return self

    def scheduled_days(self) -> list[float]:
        out = set(self.days)
        if self.daily_from is not None:
            d = self.daily_from
            while d <= self.daily_to + 1e-9:
                out.add(d)
                d += 1
        return sorted(out)


class ResponsePlan(_Strict):
    """Response assessment: the criteria table per disease, landmark days, the trial's ORR."""

    #: disease -> response criteria; cartlab's engines implement eln2022_aml and all_car_t (others,
    #: e.g. lugano_2014, are recorded but not assessed)
    criteria: dict[str, str] = Field(min_length=1)
    landmarks: list[float] = Field(default_factory=list)
    orr_categories: list[str] = Field(min_length=1)
    citation: str = Field(min_length=1)
    #: engine category -> the protocol's category it counts as (e.g. ``{CRh: CRi}`` for a trial whose
    #: CRi definition includes ELN 2022's CRh); rule ``<id>.response.category_map``
    category_map: dict[str, str] = Field(default_factory=dict)
    category_map_citation: str = ""
    category_map_status: Optional[Status] = None

    @model_validator(mode="after")
    def _mapped_into_orr(self) -> "ResponsePlan":
        bad = [f"{k} -> {v}" for k, v in self.category_map.items() if v not in self.orr_categories]
        if bad:
            raise ValueError(f"category_map must map into orr_categories: {', '.join(bad)}")
        if self.category_map and not self.category_map_citation:
            raise ValueError("category_map needs category_map_citation (the source of the mapping)")
        return self

    def counted(self) -> tuple[str, ...]:
        """The engine categories counted as responses: ``orr_categories`` and those mapped into them."""
        return tuple(self.orr_categories) + tuple(k for k in self.category_map if k not in self.orr_categories)

    def definition(self) -> str:
        """"CR + CRi (incl. CRh) + MLFS + PR": the ORR categories with the mapped ones named."""
        inc = {c: [k for k, v in self.category_map.items() if v == c] for c in self.orr_categories}
        return " + ".join(c + (f" (incl. {', '.join(inc[c])})" if inc[c] else "") for c in self.orr_categories)


class Tolerances(_Strict):
    """What counts as a deviation: a dose off by more than ``dose_pct`` percent, an administration
    more than ``day`` days from its planned day. Rule ``<id>.tolerances``: the defaults are
    cartlab's (``source: reconstructed``, status ``convention``) unless the protocol cites its own."""

    dose_pct: float = Field(default=10.0, ge=0)
    car_t_dose_pct: float = Field(default=20.0, ge=0)
    day: float = Field(default=0.0, ge=0)
    #: the largest day shift by which a given dose is still paired with a planned one (as a
    #: ``wrong_day``); beyond it the planned dose is ``missed_dose`` and the given one ``extra_dose``
    max_shift_days: float = Field(default=7.0, ge=0)
    citation: str = ("cartlab defaults: +/-10% chemotherapy, +/-20% cell dose, same day, a dose more than 7 days "
                     "from its planned day is not paired with it (no source states them)")
    source: Literal["published", "label", "registry", "reconstructed"] = "reconstructed"
    status: Optional[Status] = None


class LymphodepletionWindow(_Strict):
    """The days (relative to the infusion, both inclusive) on which lymphodepletion must be
    completed, e.g. Kymriah: infusion 2 to 14 days after its completion = ``completed_days: [-14, -2]``.
    The listed days are then one placement inside the window: the whole course may be shifted
    (deviations compare the given course with the plan shifted to end on the day it ended)."""

    completed_days: tuple[float, float]
    citation: str = Field(min_length=1)
    source: Literal["published", "label", "registry", "reconstructed"] = "published"
    status: Optional[Status] = None

    @model_validator(mode="after")
    def _order(self) -> "LymphodepletionWindow":
        if self.completed_days[0] > self.completed_days[1]:
            raise ValueError("completed_days: start is after end")
        return self


class Population(_Strict):
    disease: list[str] = Field(default_factory=list)
    target: Optional[str] = None


class Protocol(_Strict):
    """A CAR-T protocol (schema ``cartlab-protocol/1``)."""

    schema_: Literal["cartlab-protocol/1"] = Field(alias="schema")
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    title: str
    registry: Optional[str] = None
    version: str
    citation: str = Field(min_length=1)
    source: Literal["published", "label", "registry", "reconstructed"]
    #: how the protocol's stated items were checked (the criteria tables' vocabulary); items may
    #: carry their own; None = unverified (``convention`` for reconstructed items)
    status: Optional[Status] = None
    note: Optional[str] = None
    population: Population = Population()
    screening_window: tuple[float, float] = (-42.0, -1.0)
    #: rule ``<id>.screening_window``: where the window comes from (cartlab's when ``reconstructed``)
    screening_window_source: Literal["published", "label", "registry", "reconstructed"] = "reconstructed"
    screening_window_citation: str = ("cartlab convention: screening values are the last ones in the window, "
                                      "which ends on the calendar day of the subject's first lymphodepletion "
                                      "dose, inclusive (eligibility option screening_end: "
                                      "day_before_lymphodepletion, fixed)")
    #: what ends the monitoring schedule besides death and the end of follow-up (rule
    #: ``<id>.monitoring_end``): by default allo-HSCT and new therapy take the subject off the
    #: protocol's post-infusion schedule (as they end the best-response window)
    monitoring_ends_at: list[str] = Field(default_factory=lambda: ["allo_hsct", "new_therapy"])
    eligibility: list[Criterion] = Field(default_factory=list)
    dosing: DosingRules = DosingRules()
    lymphodepletion: list[LymphodepletionAgent] = Field(default_factory=list)
    lymphodepletion_window: Optional[LymphodepletionWindow] = None
    #: eligibility age limits in completed years (floor(age_years) is compared: "up to 25 years of
    #: age" includes 25.4); false = the exact fractional age
    age_whole_years: bool = True
    car_t: CarTDose
    monitoring: list[Monitoring] = Field(default_factory=list)
    response: Optional[ResponsePlan] = None
    tolerances: Tolerances = Tolerances()
    #: where the protocol was read from (set by the loader)
    path: Optional[str] = Field(default=None, exclude=True)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _check(self) -> "Protocol":
        ids = [c.id for c in self.eligibility]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"eligibility ids repeat: {', '.join(dup)}")
        agents = [a.agent for a in self.lymphodepletion]
        dup = sorted({a for a in agents if agents.count(a) > 1})
        if dup:
            raise ValueError(f"lymphodepletion agents repeat: {', '.join(dup)}")
        if self.screening_window[0] > self.screening_window[1]:
            raise ValueError("screening_window: start is after end")
        win, last = self.lymphodepletion_window, self.last_lymphodepletion_day
        if win is not None and last is not None and not win.completed_days[0] <= last <= win.completed_days[1]:
            raise ValueError(f"lymphodepletion_window: the listed days end on day {last:g}, outside "
                             f"completed_days {win.completed_days[0]:g}..{win.completed_days[1]:g}")
        from cartlab.protocol.dosing import renal_rules

        known = renal_rules()
        for a in self.lymphodepletion:
            if a.renal_adjustment is not None and a.renal_adjustment not in known:
                raise ValueError(f"lymphodepletion {a.agent}: unknown renal_adjustment "
                                 f"{a.renal_adjustment!r}; known: {', '.join(sorted(known))}")
        return self

    # rules ------------------------------------------------------------------------------------
    def status_of(self, item: Any = None) -> str:
        """The verification status of an item of the protocol (see the module docstring)."""
        own = getattr(item, "status", None) if item is not None else None
        if own is not None:
            return own
        if getattr(item, "source", None) == "reconstructed":
            return "convention"
        if self.status is not None:
            return self.status
        return "convention" if self.source == "reconstructed" else "unverified"

    def rule_infos(self) -> list:
        """Every rule id the protocol's outputs write (dose plan, eligibility, deviations), with its
        table (``protocol:<id>``), status and citation (:class:`cartlab.criteria.RuleInfo`)."""
        from cartlab.criteria.status import RuleInfo

        table, pid = f"protocol:{self.id}", self.id

        def info(rid: str, item: Any, citation: str | None) -> RuleInfo:
            return RuleInfo(f"{pid}.{rid}", table, self.status_of(item), citation or self.citation)

        out = [info(f"eligibility.{c.id}", c, c.citation) for c in self.eligibility]
        out += [info(f"lymphodepletion.{a.agent}", a, a.citation) for a in self.lymphodepletion]
        out += [RuleInfo(f"{pid}.lymphodepletion.{a.agent}.renal", table, a.renal_adjustment_status,
                         a.renal_adjustment_citation or f"{a.renal_adjustment} (its own table, renal_adjustment.yaml) "
                         f"applied to {a.agent} of this regimen by cartlab; the protocol's source states no renal rule")
                for a in self.lymphodepletion if a.renal_adjustment is not None]
        out += [RuleInfo(f"{pid}.lymphodepletion.{a.agent}.days", table,
                         "convention" if a.days_source == "reconstructed" else self.status_of(a),
                         f"days of {a.agent}: source {a.days_source}" + (f" ({a.note.strip()})" if a.note else ""))
                for a in self.lymphodepletion if a.days_source is not None]
        if self.lymphodepletion_window is not None:
            w = self.lymphodepletion_window
            out.append(info("lymphodepletion_window", w, w.citation))
        out.append(info("tolerances", self.tolerances, self.tolerances.citation))
        out.append(info("lymphodepletion", None, self.citation))  # an agent the protocol does not list
        out.append(info("car_t", self.car_t, self.car_t.citation))
        if self.car_t.target_source is not None:
            out.append(RuleInfo(f"{pid}.car_t.range", table, self.status_of(self.car_t),
                                "the total CAR-T dose lies in the protocol's range: " + "; ".join(
                                    b.citation.strip() for b in self.car_t.bands)))
        if self.car_t.split_source is not None:
            st = "convention" if self.car_t.split_source == "reconstructed" else self.status_of(self.car_t)
            out.append(RuleInfo(f"{pid}.car_t.split", table, st, self.car_t.split_citation or self.car_t.citation))
        out.append(RuleInfo(f"{pid}.screening_window", table,
                            "convention" if self.screening_window_source == "reconstructed" else self.status_of(None),
                            self.screening_window_citation))
        out.append(RuleInfo(f"{pid}.not_infused", table, "convention",
                            "cartlab convention: no CAR-T dose (nor, with infusion_evidence=dose_or_kinetics, CAR-T "
                            "measured after day 0): no post-infusion checks (study-format 'Time': day 0 is the infusion)"))
        out.append(RuleInfo(f"{pid}.monitoring_end", table, "convention",
                            "cartlab convention: monitoring ends at death, the end of follow-up (last_followup_day; "
                            "blank: the subject's last recorded row, study-format.md) and "
                            + (", ".join(self.monitoring_ends_at) or "no other event")))
        if self.response is not None and self.response.category_map:
            r = self.response
            out.append(RuleInfo(f"{pid}.response.category_map", table, r.category_map_status or self.status_of(None),
                                r.category_map_citation))
        out += [info(f"monitoring.{m.id}", m, m.citation) for m in self.monitoring]
        out.append(info("dosing", self.dosing, self.dosing.citation))
        return out

    # convenience views ------------------------------------------------------------------------
    @property
    def first_lymphodepletion_day(self) -> float | None:
        days = [d for a in self.lymphodepletion for d in a.days]
        return min(days) if days else None

    @property
    def last_lymphodepletion_day(self) -> float | None:
        days = [d for a in self.lymphodepletion for d in a.days]
        return max(days) if days else None

    def days_rule(self, agent: str) -> str:
        """The rule(s) behind an agent's planned days (for wrong-day rows)."""
        rules = [f"{self.id}.lymphodepletion.{agent}"]
        a = next((x for x in self.lymphodepletion if x.agent == agent), None)
        if a is not None and a.days_source is not None:
            rules.append(f"{self.id}.lymphodepletion.{agent}.days")
        if a is not None and self.lymphodepletion_window is not None:
            rules.append(f"{self.id}.lymphodepletion_window")
        return "; ".join(rules)

    def schedule(self) -> list[dict[str, Any]]:
        """Every planned administration in day order: day, agent, dose, unit (on its basis)."""
        rows = [{"day": d, "agent": a.agent, "dose": a.dose, "unit": a.unit, "kind": "lymphodepletion"}
                for a in self.lymphodepletion for d in a.days]
        rows += [{"day": i.day, "agent": self.car_t.agent, "fraction": i.fraction, "kind": "car_t"}
                 for i in self.car_t.infusions]
        return sorted(rows, key=lambda r: (r["day"], r["kind"] != "lymphodepletion", r["agent"]))


# -------------------------------------------------------------------------------------------------
# loading


def _line_of(node: yaml.Node | None, loc: tuple) -> int | None:
    """The 1-based line of the YAML node at ``loc`` (deepest node found along the path)."""
    line = None
    for key in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == key or (key == "schema_" and k.value == "schema"):
                    nxt = v
                    line = k.start_mark.line + 1
                    break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _loc_text(loc: tuple) -> str:
    out = ""
    for k in loc:
        if isinstance(k, int):
            out += f"[{k}]"
        else:
            k = "schema" if k == "schema_" else k
            out += ("." if out else "") + str(k)
    return out


_NOISE = re.compile(r"^(Value error|Assertion failed), ")


def parse_protocol(text: str, source: str = "<protocol>") -> Protocol:
    """Validate protocol YAML text; raise :class:`ProtocolError` listing every problem."""
    try:
        node = yaml.compose(text)
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        raise ProtocolError(source, [(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    if not isinstance(data, dict):
        raise ProtocolError(source, [("", "a protocol file is a YAML mapping (key: value) at the top level")])
    if data.get("schema") != SCHEMA:
        raise ProtocolError(source, [(f"line {_line_of(node, ('schema',)) or 1}, schema",
                                      f"schema must be {SCHEMA!r} (found {data.get('schema')!r})")])
    try:
        return Protocol.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            loc = tuple(e["loc"])
            # pydantic adds the union member / model name to the location; keep the data path
            loc = tuple(k for k in loc if not (isinstance(k, str) and (k.startswith("function-") or k in
                                                                        ("float", "str", "list[union[float,str]]"))))
            line = _line_of(node, loc)
            where = (f"line {line}, " if line else "") + (_loc_text(loc) or "top level")
            msg = _NOISE.sub("", e["msg"])
            if e["type"] == "extra_forbidden":
                msg = "unknown key (typo?); see the schema in cartlab.protocol.schema"
            elif e["type"] == "missing":
                msg = "required key is missing"
            elif e["type"] == "literal_error":
                msg = f"{msg} (found {e.get('input')!r})"
            problems.append((where, msg))
        # one message per location
        seen: dict[str, str] = {}
        for where, msg in problems:
            seen.setdefault(where, msg)
        raise ProtocolError(source, list(seen.items())) from None


def _shipped_dir():
    return resources.files("cartlab.protocol").joinpath("protocols")


@lru_cache(maxsize=None)
def shipped_protocols() -> dict[str, str]:
    """The protocols shipped with cartlab: id -> title."""
    out = {}
    for f in sorted(_shipped_dir().iterdir(), key=lambda p: p.name):
        if f.name.endswith(".yaml"):
            p = parse_protocol(f.read_text(encoding="utf-8"), f.name)
            out[p.id] = p.title
    return out


def load_protocol(id_or_path: str | Path, register: bool = True) -> Protocol:
    """A protocol by shipped id (``nct04762485``) or by YAML file path. Its rules are registered with
    :func:`cartlab.criteria.status.register_rules` (``register=False``: not), so that the status of
    ``<id>.eligibility.<criterion>`` ... is the one of this file."""
    p = _load_protocol(id_or_path)
    if register:
        from cartlab.criteria.status import register_rules

        register_rules(p.rule_infos())
    return p


def _load_protocol(id_or_path: str | Path) -> Protocol:
    text_id = str(id_or_path)
    path = Path(text_id)
    if path.suffix.lower() in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ProtocolError(text_id, [("", "no such protocol file")])
        p = parse_protocol(path.read_text(encoding="utf-8"), str(path))
        return p.model_copy(update={"path": str(path)})
    key = text_id.strip().lower()
    f = _shipped_dir().joinpath(f"{key}.yaml")
    if not f.is_file():
        ids = ", ".join(sorted(shipped_protocols()))
        raise ProtocolError(text_id, [("", f"no shipped protocol with id {key!r} and no such file; shipped: {ids}")])
    p = parse_protocol(f.read_text(encoding="utf-8"), f"{key}.yaml")
    return p.model_copy(update={"path": str(f)})
