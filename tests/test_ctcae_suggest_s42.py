"""Session 42: cartlab ctcae's suggestion for an unknown term (review 41 CTCAE F10 left: "ABSNEUT" and
"Thrombocytopenia" got none, and "Leukopenia" was offered the opposite term, Leukocytosis, by its stem).
Expected terms from CTCAE v5.0 (Investigations): Platelet count decreased, Neutrophil count decreased,
White blood cell decreased, Lymphocyte count decreased / increased. A suggestion only: never graded."""

from __future__ import annotations

import pytest

from cartlab.cli.grading_io import suggest_term
from cartlab.grading.ctcae import ctcae_terms


@pytest.fixture(scope="module")
def terms():
    return ctcae_terms("5.0", "auto")


@pytest.mark.parametrize("name, term", [
    ("Thrombocytopenia", "Platelet count decreased"), ("Leukopenia", "White blood cell decreased"),
    ("leucopenia", "White blood cell decreased"), ("Neutropenia", "Neutrophil count decreased"),
    ("Lymphopenia", "Lymphocyte count decreased"), ("Lymphocytosis", "Lymphocyte count increased"),
    ("ABSNEUT", "Neutrophil count decreased"),
])
def test_clinical_names_and_codes_inside_get_their_term(terms, name, term):
    assert suggest_term(name, terms).startswith(term + " (")


def test_nothing_close_gets_no_suggestion(terms):
    assert suggest_term("xyz", terms) is None
