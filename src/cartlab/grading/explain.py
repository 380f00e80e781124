"""Day-by-day explanations of derived grades (for ``cartlab explain``).

Each explainer takes one subject's :class:`Study` and returns an :class:`Explanation`: a headline,
the criteria/options used, and a frame with one row per day (``day``, ``grade``, ``rule``,
``reason``, ``evidence``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from cartlab.model import Study


@dataclass
class Explanation:
    what: str
    headline: str
    criteria: str
    days: pl.DataFrame  # day, grade, rule, reason, evidence


def _crs(study: Study) -> Explanation:
    from cartlab.grading.common import load_criteria
    from cartlab.grading.crs import CrsOptions, crs_daily, crs_summary

    opts = CrsOptions()
    daily = crs_daily(study, opts)
    s = crs_summary(study, opts, daily).row(0, named=True)
    if s["crs_grade_astct"] is None:
        head = "CRS not evaluable: no temperature, blood pressure or CRS intervention data"
    elif s["crs_grade_astct"] == 0:
        head = "no CRS (ASTCT grade 0)"
    else:
        head = (f"ASTCT CRS grade {s['crs_grade_astct']}, onset day {s['crs_onset_day']:g}, "
                f"last CRS day {s['crs_resolution_day']:g}")
    crit = load_criteria(opts.criteria)
    resolved = opts.resolved()
    options = ", ".join(f"{k}={v}" for k, v in resolved.items())
    return Explanation("crs", head, f"{crit['citation']} | options: {options}",
                       daily.select("day", "grade", "rule", "reason", "evidence"))


def _icans(study: Study) -> Explanation:
    from cartlab.grading.common import load_criteria
    from cartlab.grading.icans import IcansOptions, icans_daily, icans_summary

    opts = IcansOptions()
    daily = icans_daily(study, opts)
    g = icans_summary(study, opts, daily)["icans_grade_astct"][0]
    head = ("ICANS not evaluable: no ICE, CAPD, consciousness or neurological event data"
            if g is None else f"ASTCT ICANS grade {g}")
    crit = load_criteria(opts.criteria)
    options = ", ".join(f"{k}={v}" for k, v in opts.resolved().items())
    return Explanation("icans", head, f"{crit['citation']} | options: {options}",
                       daily.select("day", "grade", "rule", "reason", "evidence"))


EXPLAINERS: dict[str, Callable[[Study], Explanation]] = {"crs": _crs, "icans": _icans}


def explain(study: Study, what: str) -> Explanation:
    """Explain ``what`` (one of :data:`EXPLAINERS`) for the single subject in ``study``."""
    if what not in EXPLAINERS:
        raise KeyError(f"cannot explain {what!r}; choose one of {', '.join(EXPLAINERS)}")
    return EXPLAINERS[what](study)
