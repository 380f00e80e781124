"""Mend of review 41 diff 1, findings 6, 7 and the report's part of 8 (report and dashboard).

Expected values are derived by hand from the frames built here and from the review's text (the
counting rule: a ``paper`` row naming reconstructed columns counts as not measured, provenance.source_counts'
docstring), never copied from cartlab output.
"""

from __future__ import annotations

from types import SimpleNamespace

import polars as pl

from cartlab.io.errors import Issue
from cartlab.model import Study, conform

# --- F6: the report's "Rows" counts are one pass, not one source_counts call per subject --------------


def test_f6_rows_counts_in_one_pass_same_numbers(monkeypatch):
    """Subjects A, B, C. observations: A has 3 paper rows, 2 of them naming reconstructed columns (one in the
    column, one in ``extra`` with an upper-case key), 1 observed row; B has 2 paper rows, one with an empty
    list (names nothing) and one with ``extra`` without the key; C has 1 synthetic row. subjects: A's paper row
    names ``last_followup_day``. By hand: A paper 3+1-3 = 1, not measured 2+1 = 3, observed 1; B paper 2, not
    measured 0 (with its subjects row: paper 3); C not measured 2. ``source_counts`` (called once per subject before the mend: O(subjects x
    rows), 22 s on 1,000 subjects) must not be called at all."""
    import cartlab.report.study as study_mod
    from cartlab.report.provenance_marks import paper_reconstructed_by_subject

    obs = pl.DataFrame({
        "subject_id": ["A", "A", "A", "A", "B", "B", "C"],
        "source": ["paper", " Paper", "paper", "observed", "paper", "paper", "synthetic"],
        "reconstructed_columns": ["value", None, None, None, " ; ", None, None],
        "extra": [None, '{"Reconstructed_Columns": "day"}', None, None, None, '{"note": "x"}', None]})
    subj = pl.DataFrame({"subject_id": ["A", "B", "C"], "source": ["paper", "paper", "synthetic"],
                         "extra": ['{"reconstructed_columns": "last_followup_day"}', None, None]})
    tables = {"subjects": subj, "observations": obs}
    calls = []
    monkeypatch.setattr(study_mod, "source_counts", lambda *a, **k: calls.append(a) or {}, raising=False)
    got = study_mod._provenance_by_subject(SimpleNamespace(tables=lambda: tables))
    assert calls == []
    assert got == {"A": {"paper": 1, "not_measured": 3, "observed": 1},
                   "B": {"paper": 3, "not_measured": 0, "observed": 0},
                   "C": {"paper": 0, "not_measured": 2, "observed": 0}}
    # the same numbers as the banner's count, subject by subject (hand: A 3, B 0, C 0)
    assert paper_reconstructed_by_subject(tables.values()) == {"A": 3}


# --- F7: the events-not-given band and captions say relapses from the marrows are still shown ---------------


def test_f7_events_band_and_captions_do_not_deny_marrow_relapses():
    """Without events.csv, relapses derived from the marrows are still in adtte and on the images, and no
    death is known, so the relapse incidence has no competing event: the band, the cohort caption and the
    dashboard banner must not say "no ... relapse ... known" nor call the relapse incidence "most favourable"."""
    from cartlab.app.absent import cohort_banner
    from cartlab.report.cohort_style import EVENTS_BAND_TEXT
    from cartlab.report.cohort_views import _course_notes

    band = EVENTS_BAND_TEXT.format(events="events.csv")
    assert band == ("events.csv not given: no death, new therapy or HSCT known (relapses only from the marrows) "
                    "— deaths unknown")
    subjects = conform(pl.DataFrame({"subject_id": ["S1"], "age_years": [50.0], "last_followup_day": [60.0]}),
                       "subjects")
    study = Study(study_id="E", subjects=subjects, absent=frozenset({"events"}),
                  warnings=[Issue("events.csv", None, "not given: no events file", severity="warning")])
    notes = _course_notes(SimpleNamespace(has=lambda name: False, study=study), None)
    banner = cohort_banner(study)
    for text in (*notes, banner):
        assert "no death, relapse" not in text
    caption = " ".join(notes)
    assert "relapses come only from the marrows" in caption
    assert "OS, EFS and LFS are the most favourable reading" in caption
    assert "cumulative incidence of relapse has no competing death" in caption
    assert "relapses come only from the marrows" in banner


# --- F8: an EFS landmark following best_response.landmark_day is not listed as a user's option ---------------


def test_f8_efs_landmark_following_best_response_is_not_listed_as_set():
    """The user sets only best_response.landmark_day = 28: the analysis applies endpoints.efs_landmark_day 28
    and efs_evaluable_by "landmark" (both follow it). The report and dashboard list only
    best_response.landmark_day as differing, and say "endpoints.efs_landmark_day = 28 (follows
    best_response.landmark_day)". A user who set endpoints.efs_landmark_day = 40 keeps it listed."""
    from cartlab.analyze import AnalysisOptions, option_overrides
    from cartlab.app.server import options_text
    from cartlab.report.html import shown_overrides
    from cartlab.response.best import BestResponseOptions
    from cartlab.response.endpoint_options import EndpointOptions

    options = AnalysisOptions(best_response=BestResponseOptions(landmark_day=28))
    shown, follows = shown_overrides(option_overrides(options.to_dict()), options)
    assert sorted(shown) == ["best_response.landmark_day"] and shown["best_response.landmark_day"][0] == 28
    assert follows == ["endpoints.efs_landmark_day = 28 (follows best_response.landmark_day)",
                       "endpoints.efs_evaluable_by = landmark (follows best_response.landmark_day)"]
    line = options_text(SimpleNamespace(overrides=shown, protocol=None, follows=follows))
    assert line.startswith("options not default: best_response.landmark_day = 28")
    assert "endpoints.efs_landmark_day = 28.0" not in line
    assert line.endswith("(endpoints.efs_landmark_day = 28 (follows best_response.landmark_day); "
                         "endpoints.efs_evaluable_by = landmark (follows best_response.landmark_day))")

    set_by_user = AnalysisOptions(endpoints=EndpointOptions(efs_landmark_day=40),
                                  best_response=BestResponseOptions(landmark_day=28))
    shown2, follows2 = shown_overrides(option_overrides(set_by_user.to_dict()), set_by_user)
    assert follows2 == [] and shown2["endpoints.efs_landmark_day"][0] == 40
