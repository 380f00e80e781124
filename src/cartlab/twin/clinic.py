"""Clinic rule of the digital twin (design §2.3; ``twin/criteria/clinic_v1.yaml``).

Evaluated once a day (at each integer day boundary) on the noise-free model observables, so a
simulated clinic gives antipyretics, vasopressors, tocilizumab, corticosteroids and platelet
transfusions the way the YAML's rows say.  :func:`clinic_decide` is arithmetic only: the numba
kernel compiles it and :func:`cartlab.twin.model.reference_solve` runs the same function in Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import cache
from importlib import resources

import numpy as np

from cartlab._yaml import load_yaml
from cartlab.errors import InputError

__all__ = ["ANTIPYRETIC_FROM", "CLINIC_KEYS", "ClinicPolicy", "clinic_decide", "load_clinic", "policy_vector"]

CLINIC_KEYS = ("antipyretic", "vasopressor", "tocilizumab", "steroid", "platelet_transfusion")


@dataclass(frozen=True)
class ClinicPolicy:
    """Thresholds of the daily rule (floats).  ``active_from_day``: before it, the recorded
    interventions of :class:`~cartlab.twin.model.Events` act; from it on, the rule decides."""

    active_from_day: float = -math.inf
    fever_c: float = 38.0
    high_fever_c: float = 39.0
    high_fever_days_for_toci: float = 3.0
    sbp_low_mmhg: float = 90.0
    vasopressor_after_readings: float = 2.0
    toci_max_doses: float = 2.0
    steroid_after_toci_days: float = 1.0
    plat_transfuse: float = 10.0
    plat_transfuse_fever: float = 20.0
    platelet_units: float = 1.0
    name: str = "clinic_v1"
    #: when an antipyretic day's TEMP is lowered: "after_decision" (the readings after the day's start,
    #: when the clinic decided on the TEMP then; a reading at the day's start keeps its fever) or
    #: "day_start" (every reading of the day)
    antipyretic_from: str = "after_decision"
    #: which daily SBP < sbp_low_mmhg readings count toward ``vasopressor_after_readings``: "crs" (ASTCT
    #: CRS hypotension: with fever, or after tocilizumab) or "any" (every hypotensive reading, before
    #: session 47: an afebrile reading the day before a febrile one started a vasopressor on the first CRS day)
    hypotension_readings: str = "crs"


ANTIPYRETIC_FROM = ("after_decision", "day_start")
HYPOTENSION_READINGS = ("crs", "any")
_STRINGS = ("name", "active_from_day", "antipyretic_from", "hypotension_readings")
_FLOATS = [f.name for f in fields(ClinicPolicy) if f.name not in _STRINGS]
#: length of :func:`policy_vector` (the thresholds, then the hypotension_readings flag)
N_POLICY = len(_FLOATS) + 1


def policy_vector(policy: ClinicPolicy) -> np.ndarray:
    """The thresholds as a float vector in :data:`_FLOATS` order, then 1.0 when every hypotensive reading
    counts toward a vasopressor (``hypotension_readings`` "any"), 0.0 for CRS readings only (kernel input)."""
    return np.array([float(getattr(policy, k)) for k in _FLOATS] + [float(policy.hypotension_readings == "any")],
                    dtype=np.float64)


@cache
def _doc(name: str) -> dict:
    path = resources.files("cartlab.twin").joinpath("criteria", f"{name}.yaml")
    if not path.is_file():
        raise InputError(f"no twin clinic table {name!r}")
    return load_yaml(path.read_text(encoding="utf-8"))


def load_clinic(name: str = "clinic_v1", **overrides) -> ClinicPolicy:
    """The clinic policy ``twin/criteria/<name>.yaml`` (each rule row: value, unit, status, citation);
    keyword overrides (e.g. ``active_from_day=7``) replace single thresholds."""
    doc = _doc(name)
    vals = {}
    for row in doc["rules"]:
        if row["id"] not in _FLOATS:
            raise InputError(f"twin/criteria/{name}.yaml: unknown rule id {row['id']!r}")
        if row.get("status") not in ("verified", "unverified", "assumed"):
            raise InputError(f"twin/criteria/{name}.yaml: {row['id']}: bad status {row.get('status')!r}")
        vals[row["id"]] = float(row["value"])
    missing = set(_FLOATS) - set(vals)
    if missing:
        raise InputError(f"twin/criteria/{name}.yaml lacks {sorted(missing)}")
    vals["antipyretic_from"] = str(doc.get("antipyretic_from", "after_decision"))
    vals["hypotension_readings"] = str(doc.get("hypotension_readings", "crs"))
    vals.update(overrides)
    if vals["antipyretic_from"] not in ANTIPYRETIC_FROM:
        raise InputError(f"antipyretic_from must be one of {', '.join(ANTIPYRETIC_FROM)}, not "
                         f"{vals['antipyretic_from']!r} (twin/criteria/{name}.yaml or the override)")
    if vals["hypotension_readings"] not in HYPOTENSION_READINGS:
        raise InputError(f"hypotension_readings must be one of {', '.join(HYPOTENSION_READINGS)}, not "
                         f"{vals['hypotension_readings']!r} (twin/criteria/{name}.yaml or the override)")
    return ClinicPolicy(name=name, **vals)


try:
    from numba import njit as _njit
except ImportError:  # pragma: no cover
    def _njit(**_kw):
        return lambda f: f


@_njit(cache=True)
def clinic_decide(pv, temp_raw, sbp_raw, plat, state):
    """One day's decisions from the noise-free TEMP (before antipyretic), SYSBP (before vasopressor)
    and PLAT.  ``state`` (float array of 5, updated in place): consecutive hypotension readings,
    consecutive days >= high fever, tocilizumab doses given (the recorded doses before
    ``active_from_day`` included: the solver counts them as they act, review 47 A1), day of the first
    tocilizumab (or -1e9), current day.  Returns (antipyretic, vasopressor, tocilizumab, steroid, platelet units) as floats.

    Rules (criteria/clinic_v1.yaml): antipyretic if fever; vasopressor once SBP < threshold on
    ``vasopressor_after_readings`` consecutive daily readings of CRS hypotension (with fever, or after
    tocilizumab; every hypotensive reading with ``hypotension_readings`` "any") (ASTCT grade 3); tocilizumab (at most
    ``toci_max_doses``) for ASTCT grade >= 2 (fever with hypotension) or high fever on
    ``high_fever_days_for_toci`` consecutive days; corticosteroid for grade 3, or grade 2 persisting
    ``steroid_after_toci_days`` after tocilizumab; platelets below the thresholds."""
    fever = 1.0 if temp_raw >= pv[0] else 0.0
    hyp = 1.0 if sbp_raw < pv[3] else 0.0
    state[1] = state[1] + 1.0 if temp_raw >= pv[1] else 0.0
    toci_before = state[2] > 0.0
    # fever is waived once tocilizumab has been given (ASTCT 2019 Table 1 footnote)
    crs2 = hyp > 0.0 and (fever > 0.0 or toci_before)
    # the readings before a vasopressor are CRS hypotension (the first one gets fluids + tocilizumab):
    # an afebrile hypotensive reading before any tocilizumab is not CRS (ASTCT 2019) and does not count
    # (review 47 B5), unless hypotension_readings is "any" (pv[10])
    counts = crs2 or (pv[10] > 0.0 and hyp > 0.0)
    state[0] = state[0] + 1.0 if counts else 0.0
    vaso = 1.0 if (crs2 and state[0] >= pv[4]) else 0.0
    toci = 0.0
    if state[2] < pv[5] and (crs2 or state[1] >= pv[2]):
        toci = 1.0
        if state[2] == 0.0:
            state[3] = state[4]
        state[2] += 1.0
    ster = 0.0
    if vaso > 0.0 or (crs2 and toci_before and state[4] - state[3] >= pv[6]):
        ster = 1.0
    units = 0.0
    if plat <= pv[7] or (fever > 0.0 and plat <= pv[8]):
        units = pv[9]
    return fever, vaso, toci, ster, units
