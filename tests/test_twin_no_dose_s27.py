"""The twin refuses a subject without a CAR-T dose (new-user trial s27: a study without doses.csv gave a
forecast CAR peak of 0 copies/ug, i.e. missing doses read as "no CAR-T given")."""

from __future__ import annotations

import polars as pl
import pytest

from cartlab.datasets import seed_case
from cartlab.errors import InputError
from cartlab.twin.fit import TwinModel


def _seed(doses):
    s = seed_case()
    return type(s)(**{**{k: getattr(s, k) for k in s.__dataclass_fields__}, "doses": doses})


@pytest.mark.parametrize("case", ["no_rows", "car_t_dose_empty"])
def test_no_car_t_dose_is_an_input_error(case):
    s = seed_case()
    doses = s.doses.clear() if case == "no_rows" else s.doses.with_columns(
        pl.when(pl.col("unit").str.starts_with("cells")).then(None).otherwise(pl.col("dose")).alias("dose"))
    with pytest.raises(InputError, match="no CAR-T dose with its amount"):
        TwinModel().fit(_seed(doses), s.subject_ids[0])
