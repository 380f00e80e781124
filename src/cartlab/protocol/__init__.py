"""cartlab.protocol — CAR-T protocols as data: eligibility, lymphodepletion and CAR-T dosing,
monitoring schedule, response plan; dose calculation, eligibility screening, deviations.

    from cartlab.protocol import load_protocol, Patient, dose_plan
    p = load_protocol("nct04762485")            # shipped id, or a YAML file path
    plan = dose_plan(p, Patient(weight_kg=52, height_cm=160, age_years=17, sex="F"))

Shipped protocols: :func:`shipped_protocols`. Formulas: :mod:`cartlab.protocol.formulas`.
"""

from cartlab._deprecated import renamed
from cartlab.protocol.deviations import DEVIATION_SCHEMA, derive_deviations, planned_doses, subject_patient
from cartlab.protocol.dosing import (
    DOSE_PLAN_SCHEMA,
    DoseOptions,
    DosingError,
    Patient,
    body_size,
    creatinine_mg_dl,
    dose_plan,
    plan_to_doses,
    renal_rules,
)
from cartlab.protocol.eligibility import ELIGIBILITY_SCHEMA, derive_eligibility, eligibility_verdict
from cartlab.protocol.schema import Protocol, ProtocolError, load_protocol, parse_protocol, shipped_protocols

__all__ = [
    "Protocol", "ProtocolError", "load_protocol", "parse_protocol", "shipped_protocols",
    "Patient", "DoseOptions", "DosingError", "body_size", "dose_plan", "plan_to_doses", "creatinine_mg_dl", "renal_rules",
    "DOSE_PLAN_SCHEMA", "derive_eligibility", "eligibility_verdict", "ELIGIBILITY_SCHEMA",
    "derive_deviations", "planned_doses", "subject_patient", "DEVIATION_SCHEMA",
]


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
__getattr__ = renamed(__name__, protocol_deviations="derive_deviations", screen_eligibility="derive_eligibility")
