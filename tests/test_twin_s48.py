"""Session 48: the twin's summary notes are worded from the options it reads the rates with."""

import dataclasses

import cartlab.response.marrow_options as marrow_options
import cartlab.response.molecular as molecular
from cartlab.twin.trial import _cd7_note


def test_cd7_note_states_the_default_rule():
    # defaults: MolecularOptions.antigen_negative_below_pct 30, positive only above it;
    # ResponseOptions.antigen_forward_days 7
    note = _cd7_note()
    assert "antigen_forward_days, 7, after it" in note
    assert "CD7 on blasts at or below 30% (not above it) is not CD7-positive" in note


def test_cd7_note_follows_the_options(monkeypatch):
    # the note was a fixed text ("30%", "7"); it must say the values the rule runs with
    mo = dataclasses.replace(molecular.MolecularOptions(), antigen_negative_below_pct=20.0,
                             antigen_positive_inclusive=True)
    ro = marrow_options.ResponseOptions(antigen_forward_days=10)
    monkeypatch.setattr(molecular, "MolecularOptions", lambda: mo)
    monkeypatch.setattr(marrow_options, "ResponseOptions", lambda: ro)
    note = _cd7_note()
    assert "antigen_forward_days, 10, after it" in note
    assert "CD7 on blasts below 20% is not CD7-positive" in note
