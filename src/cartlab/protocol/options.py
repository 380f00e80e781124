"""Options of the protocol views an analysis computes with ``--protocol`` (dose plan, eligibility,
deviations): the same choices the ``cartlab dose`` / ``eligibility`` / ``deviations`` commands
offer, settable on ``cartlab analyze`` / ``report`` / ``serve`` as ``--set protocol.OPTION=VALUE``
and recorded in analysis.json."""

from __future__ import annotations

from cartlab.criteria.options import CriteriaOptions
from cartlab.protocol.eligibility import SCREENING_ENDS
from cartlab.protocol.ld_course import COURSE_TOLERANCE_DAYS


class ProtocolOptions(CriteriaOptions):
    """Documented choices of the protocol views (defaults in brackets; docs/protocol.md).

    * ``car_dose`` [None = the protocol's target; for a dose-escalation protocol such as NCT04762485
      its range]: the intended CAR-T total dose in the protocol's unit (cells/kg or cells), as
      ``cartlab deviations --car-dose``; the dose plan and the deviations both use it.
    * ``age_whole_years`` [None = the protocol's ``age_whole_years``, True by default]: compare age
      limits in completed years.
    * ``screening_end`` ["lymphodepletion"]: the screening window ends on the day of the first
      recorded lymphodepletion dose (inclusive); "day_before_lymphodepletion" or "fixed" (the
      protocol's nominal end).
    * ``ld_course_tolerance_days`` [2 days, cartlab convention; None reads as 2]: how many days a subject's recorded
      lymphodepletion course may span beyond the protocol's planned span (NCT04762485: 3 days, so at most
      5); an earlier dose of a lymphodepletion agent is bridging, not the course (it does not move the
      screening window; the deviations report it as an extra dose; review 47 F1, docs/protocol.md).
    * ``max_shift_days`` [None = the protocol's ``tolerances.max_shift_days``, 7]: the farthest a
      given dose is paired with a planned one; beyond it, a missed and an extra dose.
    * ``off_study_ends_monitoring`` [True]: the protocol's ``monitoring_ends_at`` events (allo-HSCT,
      new therapy) end the monitoring schedule; death and the end of follow-up always do.
    * ``dose_pct`` / ``car_t_dose_pct`` / ``day_tolerance`` [None = the protocol's ``tolerances``:
      cartlab conventions ±10 % chemotherapy, ±20 % CAR-T, 0 days, rule ``<id>.tolerances``]: what
      counts as a deviation (review 40 B10; ``cartlab deviations --dose-pct/--car-t-dose-pct/--day-tolerance``).

    Dose-plan choices (review 39 B5; as ``cartlab dose``'s flags, :class:`~cartlab.protocol.dosing.DoseOptions`):

    * ``bsa_method`` [None = the protocol's, Mosteller]: mosteller | dubois | haycock (--bsa-method).
    * ``bsa_decimals`` [2]: BSA rounded half up to 2-4 decimals before dosing (--bsa-decimals).
    * ``bsa_unrounded`` [False]: dose from the unrounded BSA (--bsa-unrounded).
    * ``renal_function`` [None = under 18 the paediatric measure, else the protocol's, else the rule's]:
      crcl_cockcroft_gault | crcl_cockcroft_gault_bsa | egfr_ckd_epi_2021 | egfr_bedside_schwartz.
    * ``paediatric_renal_function`` [None = the protocol's, else egfr_bedside_schwartz]: the measure
      under 18 years, or same_as_adults.
    * ``crcl_weight`` [None = the protocol's, actual]: actual | ideal | adjusted (Cockcroft-Gault weight).
    * ``apply_renal_adjustment`` [True]: apply the protocol's renal rules (--no-renal-adjustment).
    """

    car_dose: float | None = None
    age_whole_years: bool | None = None
    screening_end: str = "lymphodepletion"
    ld_course_tolerance_days: float | None = COURSE_TOLERANCE_DAYS  # recorded as used in analysis.json
    max_shift_days: float | None = None
    off_study_ends_monitoring: bool = True
    dose_pct: float | None = None
    car_t_dose_pct: float | None = None
    day_tolerance: float | None = None
    bsa_method: str | None = None
    bsa_decimals: int = 2
    bsa_unrounded: bool = False
    renal_function: str | None = None
    paediatric_renal_function: str | None = None
    crcl_weight: str | None = None
    apply_renal_adjustment: bool = True

    def __post_init__(self) -> None:
        if self.car_dose is not None and not (float(self.car_dose) > 0):
            raise ValueError(f"car_dose must be a dose > 0, not {self.car_dose!r}")
        if self.screening_end not in SCREENING_ENDS:
            raise ValueError(f"screening_end must be one of {', '.join(SCREENING_ENDS)}, not {self.screening_end!r}")
        from cartlab.protocol.ld_course import course_tolerance

        course_tolerance(self.ld_course_tolerance_days)  # a number of days >= 0 (ValueError otherwise)
        if self.max_shift_days is not None and not (float(self.max_shift_days) >= 0):
            raise ValueError(f"max_shift_days must be a number of days >= 0, not {self.max_shift_days!r}")
        for name in ("dose_pct", "car_t_dose_pct", "day_tolerance"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not float(value) >= 0):
                raise ValueError(f"{name} must be a number >= 0, not {value!r}")
        self.dose_options()  # the dose choices are checked where they are defined (DoseOptions, formulas.yaml)
        if self.bsa_method is not None:
            from cartlab.protocol.formulas import BSA_METHODS

            if self.bsa_method not in BSA_METHODS:
                raise ValueError(f"bsa_method must be one of {', '.join(BSA_METHODS)}, not {self.bsa_method!r}")
        if self.crcl_weight is not None and self.crcl_weight not in ("actual", "ideal", "adjusted"):
            raise ValueError(f"crcl_weight must be actual, ideal or adjusted, not {self.crcl_weight!r}")
        for name in ("age_whole_years", "off_study_ends_monitoring", "bsa_unrounded", "apply_renal_adjustment"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false, not {value!r}")

    def dose_options(self):
        """The :class:`~cartlab.protocol.dosing.DoseOptions` of the plan (None: the defaults)."""
        from cartlab.protocol.dosing import DoseOptions, DosingError

        kw = {k: getattr(self, k) for k in ("bsa_method", "renal_function", "paediatric_renal_function",
                                            "crcl_weight", "apply_renal_adjustment")}
        kw["bsa_decimals"] = None if self.bsa_unrounded else self.bsa_decimals
        if self.car_dose is not None:
            kw["car_dose"] = float(self.car_dose)
        if kw == {**{k: getattr(DoseOptions(), k) for k in kw}}:
            return None
        try:
            return DoseOptions(**kw)
        except DosingError as exc:
            raise ValueError(str(exc)) from None
