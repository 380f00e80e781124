"""Cellular kinetics: NCA with PKNCA's rules (``nca``), CAR-T kinetics from the canonical tables
(``car``: Cmax, Tmax, AUC0-28, Tlast, ADPC, ADPP), the Stein 2019 model with per-subject and
population (SAEM) fits (``stein``), and exposure-response (``exposure``).
"""

from cartlab.kinetics.car import CarKineticsOptions, car_kinetics, car_profiles, derive_adpc, derive_adpp, kinetics_summary
from cartlab.kinetics.nca import NcaOptions, copies_per_cell, nca

__all__ = [
    "CarKineticsOptions",
    "NcaOptions",
    "car_kinetics",
    "car_profiles",
    "copies_per_cell",
    "derive_adpc",
    "derive_adpp",
    "kinetics_summary",
    "nca",
]
