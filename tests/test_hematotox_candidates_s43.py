"""Session 43: CAR-HEMATOTOX with doses.csv not given scores every candidate first lymphodepletion day
(review 39 A2). It now does so in one run on copies of the subjects, one per candidate day, instead of
one run per day (~0.5 s each, mostly fixed cost; 7 s for one near-empty subject's ADaM export). The
oracle is the per-day derivation itself (``derive_car_hematotox(..., _ld_day=d)``, unchanged): every
candidate's frame must equal it exactly, on the seed case and a synthetic cohort with doses.csv
removed, and the combined table must be the one the per-day frames give."""

from __future__ import annotations

import shutil

import polars.testing
import pytest

from cartlab.datasets import seed_case_path, synthetic_cohort
from cartlab.grading import hematotox_absent
from cartlab.grading.hematotox import CarHematotoxOptions, derive_car_hematotox
from cartlab.io import read_study


def _without_doses(src, tmp_path, name):
    d = tmp_path / name
    shutil.copytree(src, d)
    (d / "doses.csv").unlink()
    return read_study(d)


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("htx")
    return [_without_doses(seed_case_path(), tmp, "seed"),
            _without_doses(synthetic_cohort(6, seed=5, out_dir=tmp / "syn_src"), tmp, "syn")]


@pytest.mark.parametrize("which", [0, 1])
def test_each_candidate_day_equals_its_own_run(studies, which):
    study = studies[which]
    options = CarHematotoxOptions()
    days = list(range(-14, 0))
    assert "doses" in study.absent
    together = hematotox_absent._every_candidate(study, options, days)
    assert len(together) == len(days)
    for d, frame in zip(days, together):
        alone = derive_car_hematotox(study, options, _ld_day=float(d))
        assert alone.height == len(study.subject_ids)
        polars.testing.assert_frame_equal(frame, alone)


def test_the_range_table_is_the_per_day_one(studies, monkeypatch):
    study = studies[1]
    new = derive_car_hematotox(study, CarHematotoxOptions())
    assert new["baseline_rule"].unique().to_list() == ["baseline.absent_doses"]
    # the same table from the per-day runs (the code before session 43)
    monkeypatch.setattr(hematotox_absent, "_every_candidate", lambda s, o, days: [
        derive_car_hematotox(s, o, _ld_day=float(d)) for d in days])
    polars.testing.assert_frame_equal(new, derive_car_hematotox(study, CarHematotoxOptions()))


def test_a_subject_only_in_another_table_keeps_its_place(studies):
    """A study built in Python may hold a subject found only in another table (Study.subject_ids): it is
    scored (and ordered) as in its own runs, though only the subjects and the items' observations are
    copied."""
    import dataclasses

    import polars as pl

    study = studies[1]
    extra = study.interventions.head(1).with_columns(pl.lit("ZZ-ONLY-HERE").alias("subject_id"))
    study = dataclasses.replace(study, interventions=pl.concat([study.interventions, extra]))
    assert study.subject_ids[-1] == "ZZ-ONLY-HERE"
    days = [-9, -2]
    together = hematotox_absent._every_candidate(study, CarHematotoxOptions(), days)
    for d, frame in zip(days, together):
        polars.testing.assert_frame_equal(frame, derive_car_hematotox(study, CarHematotoxOptions(), _ld_day=float(d)))
    assert together[0]["subject_id"].to_list() == study.subject_ids
