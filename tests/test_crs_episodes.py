"""CRS episodes and what the summary describes.

Expected values by hand: with ``episode_join_gap_days`` = 1 (the default), CRS days separated by at
most one CRS-free day are one episode, two or more CRS-free days start a new one. The spec
(study-format.md, "Required outputs") defines crs_onset_day / crs_resolution_day as the first and
last day with grade >= 1, so the default summary (``summary_episode="course"``) spans every episode
and says so in ``crs_episode`` ("1-2").
"""

from __future__ import annotations

import polars as pl
import pytest

from cartlab.datasets import seed_case
from cartlab.grading.crs import CrsOptions, derive_crs_daily, derive_crs_episodes, derive_crs_summary, episodes

from grading_helpers import study, vaso


def two_episode_study():
    # episode 1: fever days 2-5 (day 4 with a vasopressor: grade 3); CRS-free 6-8; episode 2: days 9-10
    temps = {d: 38.6 for d in range(2, 6)} | {d: 37.0 for d in range(6, 9)} | {9: 38.4, 10: 38.2, 11: 37.0}
    return study(obs=[("A", d, "TEMP", t) for d, t in temps.items()] + [("A", 4, "SYSBP", 80.0)],
                 iv=[vaso("norepinephrine", 4)])


def test_episode_numbers_on_daily_rows():
    d = derive_crs_daily(two_episode_study())
    ep = dict(d.select("day", "episode").iter_rows())
    assert [ep[x] for x in (2, 5, 6, 9, 10, 11)] == [1, 1, None, 2, 2, None]


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("course", (3, 2.0, 10.0, "1-2", 2)),  # spec: first/last CRS day, maximum over the course
        ("first", (3, 2.0, 5.0, "1", 2)),
        ("worst", (3, 2.0, 5.0, "1", 2)),
    ],
)
def test_summary_says_which_episode(mode, expected):
    out = derive_crs_summary(two_episode_study(), CrsOptions(summary_episode=mode)).row(0, named=True)
    got = (out["crs_grade_astct"], out["crs_onset_day"], out["crs_resolution_day"], out["crs_episode"],
           out["crs_n_episodes"])
    assert got == expected


def test_worst_episode_can_be_a_later_one():
    temps = {2: 38.5, 3: 38.5, 10: 39.0, 11: 39.0}
    s = study(obs=[("A", d, "TEMP", t) for d, t in temps.items()] + [("A", 11, "SYSBP", 80.0)])
    out = derive_crs_summary(s, CrsOptions(summary_episode="worst")).row(0, named=True)
    assert (out["crs_grade_astct"], out["crs_onset_day"], out["crs_resolution_day"], out["crs_episode"]) == (
        2, 10.0, 11.0, "2")
    first = derive_crs_summary(s, CrsOptions(summary_episode="first")).row(0, named=True)
    assert (first["crs_grade_astct"], first["crs_episode"]) == (1, "1")


def test_no_crs_and_not_evaluable_have_no_episode():
    s = study(subjects=[{"subject_id": "A"}, {"subject_id": "B"}], obs=[("A", 1, "TEMP", 37.0)])
    out = derive_crs_summary(s).sort("subject_id")
    assert out.select("crs_grade_astct", "crs_episode", "crs_n_episodes").rows() == [(0, None, 0), (None, None, None)]


def test_adae_episodes_follow_the_options_the_daily_grades_were_made_with():
    # analyze calls episodes(crs_daily(...)) without a gap: the daily frame's episode numbers rule
    d = derive_crs_daily(two_episode_study(), CrsOptions(episode_join_gap_days=3))
    assert episodes(d, "Cytokine release syndrome", "ASTCT 2019").height == 1
    assert derive_crs_episodes(two_episode_study()).height == 2


def test_assessment_window_option():
    temps = {3: 38.5, 40: 38.5}
    s = study(obs=[("A", d, "TEMP", t) for d, t in temps.items()])
    assert derive_crs_summary(s)["crs_resolution_day"].to_list() == [40.0]
    out = derive_crs_summary(s, CrsOptions(assessment_window=(0, 30))).row(0, named=True)
    assert (out["crs_onset_day"], out["crs_resolution_day"], out["crs_n_episodes"]) == (3.0, 3.0, 1)
    assert 40 not in derive_crs_daily(s, CrsOptions(assessment_window=(0, 30)))["day"].to_list()


def test_bad_summary_mode_is_rejected():
    with pytest.raises(ValueError, match="summary_episode"):
        derive_crs_summary(two_episode_study(), CrsOptions(summary_episode="last"))


def test_seed_case_stays_one_grade_3_episode():
    """Seed case (research notes §6): fever days 3-14, norepinephrine days 8-10 -> ASTCT 3, one
    episode days 3-14; no infection is recorded, so nothing is attributed elsewhere."""
    out = derive_crs_summary(seed_case()).row(0, named=True)
    assert (out["crs_grade_astct"], out["crs_onset_day"], out["crs_resolution_day"], out["crs_episode"],
            out["crs_n_episodes"]) == (3, 3.0, 14.0, "1", 1)
    assert derive_crs_daily(seed_case()).filter(pl.col("rule") == "crs.other_cause").height == 0


def test_every_convention_names_real_options_with_a_citation():
    from dataclasses import fields

    from cartlab.grading.common import load_criteria
    from cartlab.grading.crs import CrsOptions

    t = load_criteria("astct_crs_2019")
    names = {f.name for f in fields(CrsOptions)}
    covered = set()
    for row in t["conventions"]:
        assert row["citation"] and row["status"] in ("verified", "verified_secondary", "unverified"), row["id"]
        for opt in row["options"]:
            assert opt in t["defaults"] and opt in names, (row["id"], opt)
            covered.add(opt)
    # every option added for attribution, episodes and the summary is documented
    assert {n for n in names if n.startswith(("other_cause", "episode", "summary", "assessment"))} <= covered
