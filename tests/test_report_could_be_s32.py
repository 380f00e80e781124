"""Session 32: the study page says when a missing input leaves a better best response possible.

A CRi whose platelets were not measured could be CR or CRh (ELN 2022 Table 7: CR needs PLT >= 100,
CRh PLT > 50; best_response.csv could_be, subject_summary best_response_could_be). The subject table
showed plain "CRi (d28)"."""

from cartlab.report.study import SUBJECT_TABLE, _subject_cells


def _response_cell(row):
    k = [i for i, (_, cols, _) in enumerate(SUBJECT_TABLE) if cols[0] == "best_response"][0]
    return _subject_cells(row, None)[k]["text"]


def test_the_subject_table_names_the_better_categories_still_possible():
    row = {"best_response": "CRi", "best_response_day": 28.0, "best_response_could_be": "CR;CRh"}
    assert _response_cell(row) == "CRi (d28); could be CR, CRh"


def test_a_settled_best_response_is_shown_as_before():
    row = {"best_response": "CR", "best_response_day": 28.0, "best_response_could_be": None}
    assert _response_cell(row) == "CR (d28)"
