"""Session 37: a FHIR Patient's deceased[x] is checked against the death event of another resource.

The cartlab writer puts a death on a Condition (its day) and on the Patient (deceasedDateTime, or
deceasedBoolean for nominal-time subjects); the reader read the Condition and ignored the Patient, so a
hand edit of one of the two was silently lost. Days below are counted by hand from day 0 = 2024-03-01.
"""

from __future__ import annotations

import polars as pl
import pytest

from cartlab.errors import InputError
from cartlab.io.fhir import read_fhir
from cartlab.io.fhir.mapping import CS_EVENT
from test_interop_input_audit_s30 import PAT, _bundle, _obs


def _death(day: int) -> dict:
    return {"resourceType": "Condition", "id": "death", "subject": {"reference": "Patient/P1"},
            "code": {"coding": [{"system": CS_EVENT, "code": "death"}], "text": "death"},
            "onsetDateTime": f"2024-03-{1 + day:02d}T08:00:00Z"}


def _deaths(s) -> list[float]:
    return s.events.filter(pl.col("event") == "death")["day"].to_list()


def test_patient_and_condition_agreeing_on_the_day_read_one_death(tmp_path):
    # deceasedDateTime 2024-03-07T20:00 is day 6, as the Condition's 2024-03-07T08:00
    s = read_fhir(_bundle(tmp_path, _obs(1, "8310-5", 2, 37.0, "Cel"), _death(6),
                          patient={**PAT, "deceasedDateTime": "2024-03-07T20:00:00Z"}))
    assert [int(d) for d in _deaths(s)] == [6]


def test_patient_deceased_date_edited_against_the_condition_is_an_error(tmp_path):
    # the Patient says 2024-03-10 (day 9), the Condition day 6: neither may silently win
    p = _bundle(tmp_path, _obs(1, "8310-5", 2, 37.0, "Cel"), _death(6),
                patient={**PAT, "deceasedDateTime": "2024-03-10"})
    with pytest.raises(InputError, match=r"Patient/P1.*deceasedDateTime 2024-03-10 \(day 9\) disagrees with the "
                                         r"death on day 6.*Condition/death"):
        read_fhir(p)


def test_patient_not_deceased_with_a_death_condition_is_an_error(tmp_path):
    p = _bundle(tmp_path, _obs(1, "8310-5", 2, 37.0, "Cel"), _death(6), patient={**PAT, "deceasedBoolean": False})
    with pytest.raises(InputError, match="deceasedBoolean is false.*Condition/death"):
        read_fhir(p)
    # deceasedBoolean true (the writer's form for nominal times) agrees with any day
    s = read_fhir(_bundle(tmp_path, _obs(1, "8310-5", 2, 37.0, "Cel"), _death(6),
                          patient={**PAT, "deceasedBoolean": True}))
    assert [int(d) for d in _deaths(s)] == [6]
