"""subject_summary: every spec column, typed; engines plug in through the registry."""

import polars as pl
import pytest

from cartlab.analyze import Engine, Registry, manifest, subject_summary
from cartlab.datasets import seed_case
from cartlab.model import SUBJECT_SUMMARY, SUBJECT_SUMMARY_COLUMNS


def test_empty_registry_gives_all_columns_empty():
    s = seed_case()
    out = subject_summary(s, Registry())
    assert out.columns == list(SUBJECT_SUMMARY_COLUMNS)
    assert dict(out.schema) == SUBJECT_SUMMARY
    assert out["subject_id"].to_list() == ["CD7-AML-001"]
    assert all(out[c].null_count() == 1 for c in SUBJECT_SUMMARY_COLUMNS[1:])
    meta = manifest(s, Registry())
    assert sum(len(v) for v in meta["pending_columns"].values()) == len(SUBJECT_SUMMARY_COLUMNS) - 1


def test_engine_fills_its_columns_and_clashes_are_refused():
    reg = Registry()

    def tmax(study):
        return study.observations.filter(pl.col("param") == "TEMP").group_by("subject_id").agg(
            pl.col("value").max().alias("car_cmax")  # any column: the mechanism is what is tested
        )

    reg.register(Engine("demo", ("car_cmax",), tmax))
    out = subject_summary(seed_case(), reg)
    assert out["car_cmax"].to_list() == [39.4]
    assert "car_cmax" not in [c for cs in manifest(seed_case(), reg)["pending_columns"].values() for c in cs]
    with pytest.raises(ValueError, match="already derived"):
        reg.register(Engine("again", ("car_cmax",), tmax))
