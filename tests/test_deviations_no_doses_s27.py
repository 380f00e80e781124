"""Protocol deviations without any dose row: the doses were not recorded (day 0 is a CAR-T infusion),
so the planned administrations are not checkable, not missed (new-user trial s27: a study without
doses.csv got 'missed_dose' for every planned fludarabine/decitabine/CAR-T day)."""

from __future__ import annotations

import polars as pl

from cartlab.datasets import seed_case
from cartlab.protocol import derive_deviations, load_protocol


def _without_doses():
    s = seed_case()
    return type(s)(**{**{k: getattr(s, k) for k in s.__dataclass_fields__}, "doses": s.doses.clear()})


def test_no_dose_rows_is_not_checkable_not_missed():
    dev = derive_deviations(_without_doses(), load_protocol("nct04762485"))
    assert dev.filter(pl.col("category").is_in(["missed_dose", "wrong_day", "extra_dose"])).height == 0
    nc = dev.filter((pl.col("category") == "not_checkable") & (pl.col("item") == "doses"))
    assert nc.height == 1 and "no dose of this subject is recorded" in nc["detail"][0]


def test_with_doses_the_administrations_are_still_checked():
    """The seed records every planned administration (its doses.csv): the not-recorded row is absent."""
    dev = derive_deviations(seed_case(), load_protocol("nct04762485"))
    assert not dev["detail"].str.contains("no dose of this subject is recorded").any()


def test_validate_warns_when_doses_csv_is_absent(tmp_path):
    from cartlab.io import validate_study, write_study

    write_study(seed_case(), tmp_path / "s")
    (tmp_path / "s" / "doses.csv").unlink()
    warn = [i for i in validate_study(tmp_path / "s") if i.file == "doses.csv"]
    assert len(warn) == 1 and warn[0].severity == "warning" and "not checkable rather than missed" in warn[0].message
