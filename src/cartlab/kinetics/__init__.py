"""Cellular kinetics: NCA with PKNCA's rules (``nca``), CAR-T kinetics from the canonical tables
(``car``: Cmax, Tmax, AUC0-28, Tlast, ADPC, ADPP), the Stein 2019 model with per-subject and
population (SAEM) fits (``stein``), and exposure-response (``exposure``).

The Stein names (``SteinModel``, ``SteinPopulationModel``, ``STEIN_2019``, ``Dosing``, ``simulate``)
and the exposure-response functions are imported on first use, so that ``import cartlab.kinetics``
does not load scipy's optimisers.
"""

from typing import Any

from cartlab._deprecated import renamed
from cartlab.kinetics.agents import is_car_t_agent
from cartlab.kinetics.car import (
    CarKineticsOptions,
    derive_adpc,
    derive_adpp,
    derive_car_kinetics,
    derive_car_profiles,
    derive_kinetics_summary,
)
from cartlab.kinetics.nca import NcaOptions, copies_per_cell, derive_nca, nca_profile, time_above

#: public names of the submodules loaded on first use
_LAZY = {
    "Dosing": "cartlab.kinetics.stein",
    "PopulationParams": "cartlab.kinetics.stein",
    "STEIN_2019": "cartlab.kinetics.stein",
    "SteinModel": "cartlab.kinetics.stein",
    "SteinPopulationModel": "cartlab.kinetics.stein",
    "simulate": "cartlab.kinetics.stein",
    "stein_curve": "cartlab.kinetics.stein",
    "derive_exposure_response": "cartlab.kinetics.exposure",
    "derive_exposure_response_frame": "cartlab.kinetics.exposure",
}

__all__ = [
    "STEIN_2019",
    "CarKineticsOptions",
    "Dosing",
    "NcaOptions",
    "PopulationParams",
    "SteinModel",
    "SteinPopulationModel",
    "copies_per_cell",
    "derive_adpc",
    "derive_adpp",
    "derive_car_kinetics",
    "derive_car_profiles",
    "derive_exposure_response",
    "derive_exposure_response_frame",
    "derive_kinetics_summary",
    "derive_nca",
    "is_car_t_agent",
    "nca_profile",
    "simulate",
    "stein_curve",
    "time_above",
]


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
_renamed = renamed(__name__, "car_kinetics", "car_profiles", "exposure_response", "exposure_response_frame",
                   "kinetics_summary", "nca")


def __getattr__(name: str) -> Any:
    if name in _renamed.names:
        return _renamed(name)
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
