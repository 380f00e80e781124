"""Toxicity grading: CTCAE v5 labs, ASTCT 2019 CRS and ICANS, older CRS scales, haematotoxicity.

Criteria are data (``criteria/*.yaml``, one citation per rule); the engines are pure functions
over the canonical frames and every grade carries its rule, a reason and evidence rows.
"""

from cartlab.grading.crs import CrsOptions, crs_daily, crs_episodes, crs_summary
from cartlab.grading.icans import IcansOptions, icans_daily, icans_episodes, icans_summary

__all__ = [
    "CrsOptions",
    "IcansOptions",
    "crs_daily",
    "crs_episodes",
    "crs_summary",
    "icans_daily",
    "icans_episodes",
    "icans_summary",
]
