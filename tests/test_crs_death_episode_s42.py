"""Session 42: a CRS episode's reason names an unattributed death the 'range' reading attaches to it, as
ICANS's does (review 41 F1 left it for ICANS only); ADAE REASON keeps it (in front: REASON is cut at
200 characters).

Course, by hand (as test_ctcae_icans_s41.test_f1_crs_range_reading): fever 39.0 C on day 1 = ASTCT 2019
CRS grade 1; death on day 2 with no attribution. With crs.unattributed_death_reading=range the day keeps
its grade without the death (0) up to 5, attached to episode 1: the episode's reason starts "up to 5:
death with no attribution recorded on day 2". With the default 'grade5' the death is a CRS death (grade
5), so nothing is left open and the reason does not say "up to 5".
"""

from __future__ import annotations

import warnings

import polars as pl

from cartlab.analyze import Analysis, AnalysisOptions
from cartlab.grading.crs import CrsOptions, derive_crs_episodes
from grading_helpers import study


def _study():
    return study(obs=[("A", 1, "TEMP", 39.0)], events=[{"subject_id": "A", "day": 2.0, "event": "death",
                                                        "attribution": None}])


def test_range_reading_names_the_death_in_the_episode_reason():
    ep = derive_crs_episodes(_study(), CrsOptions(unattributed_death_reading="range")).row(0, named=True)
    assert ep["reason"].startswith("up to 5: death with no attribution recorded on day 2, during this episode")
    assert "crs.conv.unattributed_death" in ep["reason"]


def test_default_reading_leaves_nothing_open():
    ep = derive_crs_episodes(_study()).row(0, named=True)
    assert not ep["reason"].startswith("up to 5")


def test_adae_toxicity_carries_it():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = Analysis(_study(), AnalysisOptions(crs=CrsOptions(unattributed_death_reading="range")))
        ae = a.table("adae_toxicity")
    crs = ae.filter(pl.col(next(c for c in ("AETERM", "term") if c in ae.columns)) == "Cytokine release syndrome")
    assert crs.height == 1
    reason_col = next(c for c in ("REASON", "reason") if c in crs.columns)
    assert crs[reason_col][0].startswith("up to 5: death with no attribution recorded on day 2")
