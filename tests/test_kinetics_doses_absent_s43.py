"""Session 43 (new-user trial with doses.csv removed): the kinetics warning about subjects with CAR-T
samples and no infusion said "no CAR-T infusion in doses.csv" when there was no doses.csv at all. It now
says the file was not given; with doses.csv given (a subject without a CAR-T row) the text is as before."""

from __future__ import annotations

import dataclasses

import pytest

from cartlab.errors import SubjectsWarning
from cartlab.kinetics.car import derive_car_kinetics
from test_kinetics_fix_s35 import study


def test_no_doses_file_is_named_as_not_given():
    s = study({"A": [(3, 1000), (14, 500), (28, 250)]}, {})
    s = dataclasses.replace(s, absent=frozenset({"doses"}))
    with pytest.warns(SubjectsWarning, match=r"no CAR-T infusion \(doses\.csv not given\): their kinetics"):
        derive_car_kinetics(s)


def test_a_subject_without_a_dose_row_in_a_given_file():
    s = study({"A": [(3, 1000), (14, 500), (28, 250)], "B": [(7, 100), (28, 50)]}, {"B": [0]})
    with pytest.warns(SubjectsWarning, match=r"no CAR-T infusion in doses\.csv: their kinetics"):
        derive_car_kinetics(s)
