"""cartlab: an open toolkit for CAR-T cell therapy programmes in blood cancers.

One canonical long table (``cartlab.model``) carries real and simulated patients; ``cartlab.io``
reads and writes the study folder format, ``cartlab.store`` persists studies in DuckDB, and the
engines (grading, response, kinetics, twin) are pure functions over those frames.
"""

__version__ = "0.2.0"

#: the entry points, loaded on first use so that ``import cartlab`` stays light
_LAZY = {
    "Analysis": "cartlab.analyze",
    "AnalysisOptions": "cartlab.analyze",
    "Study": "cartlab.model",
    "read_study": "cartlab.io",
    "validate_study": "cartlab.io",
    "write_study": "cartlab.io",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cartlab' has no attribute {name!r}")
