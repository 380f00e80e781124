"""cartlab: an open toolkit for CAR-T cell therapy programmes in blood cancers.

One canonical long table (``cartlab.model``) carries real and simulated patients; ``cartlab.io``
reads and writes the study folder format, ``cartlab.store`` persists studies in DuckDB, and the
engines (grading, response, kinetics, twin) are pure functions over those frames.
"""

__version__ = "0.2.0"
