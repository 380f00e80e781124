"""Session 43: an engine failure that names the subjects it comes from (``errors.failing_subjects``)
is not bisected. In the pilot SDTM data, 52 of 306 subjects have neither last_followup_day nor any row
to censor at; ADTTE then took 345 runs to bisect the cohort. Now those subjects are left out at once
and the others run in one call, with the same tables and the same skip entries as bisection gives.

By hand (doses.csv not given, so every subject counts from day 0): S1 and S2 have observations
(censored at their last row); S3, S4 and S5 have only their subjects.csv row (no last_followup_day, no
row at all), so each fails alone with "no row at all to censor at"; S6 has last_followup_day -3, before
its clock start (an InputError of its own)."""

from __future__ import annotations

import polars.testing
import pytest

from cartlab.analyze import Analysis
from cartlab.io import read_study
from conftest import write


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    d = tmp_path_factory.mktemp("nobisect")
    write(d, "subjects.csv", """
subject_id,sex,age_years,weight_kg,height_cm,disease,target,last_followup_day
S1,F,40,60,165,AML,CD7,
S2,M,50,80,180,AML,CD7,
S3,F,41,61,166,AML,CD7,
S4,M,52,82,181,AML,CD7,
S5,F,43,63,167,AML,CD7,
S6,M,55,85,182,AML,CD7,-3
""")
    write(d, "observations.csv", """
subject_id,day,param,value,unit
S1,3,TEMP,38.5,C
S2,9,TEMP,37.0,C
""")
    return read_study(d)


def _run(study, monkeypatch, bisect: bool):
    import cartlab.analyze as analyze_mod
    import cartlab.response.endpoints as ep

    calls = []
    real = ep.derive_adtte

    def counted(*a, **k):
        calls.append(sorted(a[0].subject_ids))
        return real(*a, **k)

    with monkeypatch.context() as m:
        m.setattr(ep, "derive_adtte", counted)
        if bisect:  # the behaviour before session 43
            m.setattr(analyze_mod, "leave_out_named", lambda call, ids, exc, parts, failed: ids)
        a = Analysis(study)
        adtte = a.table("adtte")
    skips = [(s.engine, s.subjects, s.reason) for s in a.skipped if "adtte" in s.tables]
    return adtte, skips, calls


def test_named_subjects_are_left_out_without_bisection(study, monkeypatch):
    adtte, skips, calls = _run(study, monkeypatch, bisect=False)
    assert sorted(adtte["subject_id"].unique()) == ["S1", "S2"]
    failed = {sid for _e, sids, _r in skips for sid in sids}
    assert failed == {"S3", "S4", "S5", "S6"}
    by = {tuple(sids): why for _e, sids, why in skips}
    assert "no row at all to censor at" in by[("S3", "S4", "S5")] and "S3" not in by[("S3", "S4", "S5")]
    assert "subject S6" in by[("S6",)] and "before the clock start 0" in by[("S6",)]
    # the whole study stops at S6's contradiction first (a row-by-row derivation would); without S6 it
    # names S3-S5; then S1 and S2 run
    assert calls == [["S1", "S2", "S3", "S4", "S5", "S6"], ["S1", "S2", "S3", "S4", "S5"], ["S1", "S2"]]


def test_the_same_tables_and_skips_as_bisection(study, monkeypatch):
    new, new_skips, new_calls = _run(study, monkeypatch, bisect=False)
    old, old_skips, old_calls = _run(study, monkeypatch, bisect=True)
    assert len(old_calls) > len(new_calls)  # bisection ran ADTTE on more subsets
    polars.testing.assert_frame_equal(new, old)
    assert new_skips == old_skips
