"""Toxicity grading: CTCAE v5 labs, ASTCT 2019 CRS and ICANS, older CRS scales, haematotoxicity.

    from cartlab.grading import derive_crs_daily, derive_icaht
    derive_crs_daily(study)   # one row per subject and day: grade, rule, reason, evidence

Criteria are data (``criteria/*.yaml``, one citation per rule); the engines are pure functions
over the canonical frames and every grade carries its rule, a reason and evidence rows.
"""

from cartlab._deprecated import renamed
from cartlab.grading.adam import derive_adae_toxicity
from cartlab.grading.crs import CrsOptions, derive_crs_daily, derive_crs_episodes, derive_crs_summary
from cartlab.grading.crs_legacy import CrsLegacyOptions, derive_crs_cross_scale, derive_crs_legacy_daily
from cartlab.grading.ctcae import CtcaeOptions, derive_ctcae
from cartlab.grading.hematotox import (
    CarHematotoxOptions,
    EasixOptions,
    IcahtOptions,
    IecHsOptions,
    RecoveryOptions,
    TIcahtOptions,
    derive_car_hematotox,
    derive_count_recovery,
    derive_easix,
    derive_icaht,
    derive_icaht_daily,
    derive_iec_hs_flags,
    derive_t_icaht,
    derive_t_icaht_daily,
)
from cartlab.grading.icans import IcansOptions, derive_icans_daily, derive_icans_episodes, derive_icans_summary

__all__ = [
    "CarHematotoxOptions",
    "CrsLegacyOptions",
    "CrsOptions",
    "CtcaeOptions",
    "EasixOptions",
    "IcahtOptions",
    "IcansOptions",
    "IecHsOptions",
    "RecoveryOptions",
    "TIcahtOptions",
    "derive_adae_toxicity",
    "derive_car_hematotox",
    "derive_count_recovery",
    "derive_crs_cross_scale",
    "derive_crs_daily",
    "derive_crs_episodes",
    "derive_crs_legacy_daily",
    "derive_crs_summary",
    "derive_ctcae",
    "derive_easix",
    "derive_icaht",
    "derive_icaht_daily",
    "derive_icans_daily",
    "derive_icans_episodes",
    "derive_icans_summary",
    "derive_iec_hs_flags",
    "derive_t_icaht",
    "derive_t_icaht_daily",
]


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
__getattr__ = renamed(
    __name__, "crs_daily", "crs_episodes", "crs_summary", "icans_daily", "icans_episodes", "icans_summary")
