"""Options of the protocol views an analysis computes with ``--protocol`` (dose plan, eligibility,
deviations): the same choices the ``cartlab dose`` / ``eligibility`` / ``deviations`` commands
offer, settable on ``cartlab analyze`` / ``report`` / ``serve`` as ``--set protocol.OPTION=VALUE``
and recorded in analysis.json."""

from __future__ import annotations

from cartlab.criteria.options import CriteriaOptions
from cartlab.protocol.eligibility import SCREENING_ENDS


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
    * ``max_shift_days`` [None = the protocol's ``tolerances.max_shift_days``, 7]: the farthest a
      given dose is paired with a planned one; beyond it, a missed and an extra dose.
    * ``off_study_ends_monitoring`` [True]: the protocol's ``monitoring_ends_at`` events (allo-HSCT,
      new therapy) end the monitoring schedule; death and the end of follow-up always do.
    """

    car_dose: float | None = None
    age_whole_years: bool | None = None
    screening_end: str = "lymphodepletion"
    max_shift_days: float | None = None
    off_study_ends_monitoring: bool = True

    def __post_init__(self) -> None:
        if self.car_dose is not None and not (float(self.car_dose) > 0):
            raise ValueError(f"car_dose must be a dose > 0, not {self.car_dose!r}")
        if self.screening_end not in SCREENING_ENDS:
            raise ValueError(f"screening_end must be one of {', '.join(SCREENING_ENDS)}, not {self.screening_end!r}")
        if self.max_shift_days is not None and not (float(self.max_shift_days) >= 0):
            raise ValueError(f"max_shift_days must be a number of days >= 0, not {self.max_shift_days!r}")
        for name in ("age_whole_years", "off_study_ends_monitoring"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false, not {value!r}")

    def dose_options(self):
        """The :class:`~cartlab.protocol.dosing.DoseOptions` of the plan (None: the defaults)."""
        from cartlab.protocol.dosing import DoseOptions

        return None if self.car_dose is None else DoseOptions(car_dose=float(self.car_dose))
