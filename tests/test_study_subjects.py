"""One definition of "the subjects of a study" (issue 14): Study.subject_ids, used by every engine."""

from __future__ import annotations

import dataclasses

import polars as pl

from cartlab.datasets import seed_case
from cartlab.grading.hemato_common import subject_ids as hemato_ids
from cartlab.response.adtte import derive_adtte


def _with_orphans():
    s = seed_case()
    obs = s.observations.filter(pl.col("day") > 0).head(1).with_columns(pl.lit("ONLY-OBS").alias("subject_id"))
    ev = s.events.head(1).with_columns(pl.lit("ONLY-EVENT").alias("subject_id"))
    return dataclasses.replace(s, observations=pl.concat([s.observations, obs]), events=pl.concat([s.events, ev]))


def test_subjects_table_first_then_subjects_found_only_elsewhere_in_table_order():
    s = _with_orphans()
    # subjects.csv order first; then observations (before events in the canonical table order)
    assert s.subject_ids == ["CD7-AML-001", "ONLY-OBS", "ONLY-EVENT"]
    assert seed_case().subject_ids == ["CD7-AML-001"]


def test_engines_share_the_definition():
    s = _with_orphans()
    assert hemato_ids(s) == s.subject_ids
    # ADTTE once counted subjects from subjects and events only: the observation-only one was lost
    assert set(derive_adtte(s)["subject_id"].unique()) == set(s.subject_ids)


def test_subject_ids_follow_a_replaced_frame():
    """Study.subject_ids is cached while the frames are the same objects; replacing one recomputes it."""
    import polars as pl

    from cartlab.datasets import seed_case

    s = seed_case()
    assert s.subject_ids == ["CD7-AML-001"]
    s.observations = pl.concat([s.observations, s.observations.head(1).with_columns(pl.lit("NEW-1").alias("subject_id"))])
    assert s.subject_ids == ["CD7-AML-001", "NEW-1"]
    ids = s.subject_ids
    ids.append("caller's own list")
    assert s.subject_ids == ["CD7-AML-001", "NEW-1"]
