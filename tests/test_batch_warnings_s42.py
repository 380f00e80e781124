"""Session 42: a subject-counting warning whose labels hold ", " (e.g. "S1 (day 46, events.csv:9)") merges
across batches like any other, and a run that does not name subjects (cartlab analyze without --debug)
gives the words pointing to the table, not the ids (the CI failure of session 41: the batched run named
SYN-0016 where the whole run pointed to adtte.csv). Expected texts written by hand from the templates."""

import warnings

from cartlab.batch_warnings import merge_warnings, warning_shape
from cartlab.errors import SubjectsWarning, subject_ids_in_warnings, warning_text

TEMPLATE = "{n} subject(s) have a relapse and no CR: {subjects}"


def _fragment(ids, labels):
    w = SubjectsWarning(TEMPLATE.replace("{n}", str(len(ids))), ids, "adtte.csv (EFS reason)", labels=labels)
    return w, {"engine": "e", "message": str(w)}


def test_labels_with_commas_merge_and_name():
    w1, m1 = _fragment(["S1"], ["S1 (day 46, events.csv:9)"])
    w2, m2 = _fragment(["S2", "S3"], ["S2 (day 3, events.csv:2)", "S3 (day 5, events.csv:4, events.csv:5)"])
    shapes = {("e", m1["message"]): warning_shape(w1), ("e", m2["message"]): warning_shape(w2)}
    merged = merge_warnings([[m1], [m2]], shapes)
    assert merged == [{"engine": "e", "message": "3 subject(s) have a relapse and no CR: S1 (day 46, events.csv:9), "
                                                 "S2 (day 3, events.csv:2), S3 (day 5, events.csv:4, events.csv:5)"}]


def test_labels_with_commas_unnamed_when_the_run_does_not_name():
    w1, m1 = _fragment(["S1"], ["S1 (day 46, events.csv:9)"])
    w2, m2 = _fragment(["S2"], ["S2 (day 3, events.csv:2)"])
    shapes = {("e", m1["message"]): warning_shape(w1), ("e", m2["message"]): warning_shape(w2)}
    merged = merge_warnings([[m1], [m2]], shapes, named=False)
    assert len(merged) == 1
    text = merged[0]["message"]
    assert text.startswith("2 subject(s) have a relapse and no CR: named in adtte.csv (EFS reason)")
    assert "S1" not in text and "S2" not in text
    # one batch, one subject: the same words as a whole run gives (no merge partner)
    alone = merge_warnings([[m1]], {("e", m1["message"]): warning_shape(w1)}, named=False)
    with subject_ids_in_warnings(False):
        assert alone[0]["message"] == warning_text(w1)


def test_shape_carries_the_labels():
    w, _ = _fragment(["S1"], ["S1 (day 46, events.csv:9)"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert warning_shape(w)[3] == ["S1 (day 46, events.csv:9)"]
        assert w.labels == ["S1 (day 46, events.csv:9)"]
