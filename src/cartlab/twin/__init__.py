"""cartlab.twin — a digital twin of CD7 CAR-T therapy (issue 16; docs/twin.md, docs/twin_trials.md).

    from cartlab.twin import TwinModel, SEED_ANCHORS
    from cartlab.datasets import seed_case
    study = seed_case()
    twin = TwinModel(sources="paper", anchors=SEED_ANCHORS).fit(study, "CD7-AML-001")
    twin.summary, twin.plot("twin.png"), twin.forecast(7)

Every value the twin produces is simulated (``source = simulated``), never measured. Names are
imported lazily so ``import cartlab.twin`` stays cheap and optional parts (the trial runner) load
only when used.
"""

from __future__ import annotations

import importlib

#: public name -> module that defines it
_EXPORTS = {
    "TwinModel": "cartlab.twin.fit", "SEED_ANCHORS": "cartlab.twin.fit", "Anchor": "cartlab.twin.fit",
    "forecast_calibration": "cartlab.twin.calibrate", "simulated_study": "cartlab.twin.calibrate",
    "identifiability": "cartlab.twin.identify", "profile": "cartlab.twin.identify",
    "sensitivity": "cartlab.twin.identify",
    "fit_figure": "cartlab.twin.plots", "forecast_figure": "cartlab.twin.plots",
    "calibration_figure": "cartlab.twin.plots", "seed_twin_figure": "cartlab.twin.plots",
    "params_markdown": "cartlab.twin.plots",
    "simulate": "cartlab.twin.model", "Baseline": "cartlab.twin.model", "Events": "cartlab.twin.model",
    "SimResult": "cartlab.twin.model", "STATES": "cartlab.twin.model",
    "load_params": "cartlab.twin.params", "ParamTable": "cartlab.twin.params",
    "load_clinic": "cartlab.twin.clinic", "ClinicPolicy": "cartlab.twin.clinic",
    "observe": "cartlab.twin.observe", "load_schedule": "cartlab.twin.observe",
    "run_trial": "cartlab.twin.trial",
}

__all__ = [
    "SEED_ANCHORS",
    "STATES",
    "Anchor",
    "Baseline",
    "ClinicPolicy",
    "Events",
    "ParamTable",
    "SimResult",
    "TwinModel",
    "calibration_figure",
    "fit_figure",
    "forecast_calibration",
    "forecast_figure",
    "identifiability",
    "load_clinic",
    "load_params",
    "load_schedule",
    "observe",
    "params_markdown",
    "profile",
    "run_trial",
    "seed_twin_figure",
    "sensitivity",
    "simulate",
    "simulated_study",
]


def __getattr__(name: str):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'cartlab.twin' has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError) as exc:
        raise AttributeError(f"cartlab.twin.{name} is not available ({mod}: {exc})") from None
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
