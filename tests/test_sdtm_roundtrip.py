"""Seed case -> write_sdtm -> read_sdtm gives back every canonical row, value, unit and
provenance label (only src_file/src_row/src_sha256 differ: they name the new files)."""

from __future__ import annotations

import polars as pl
import pytest

from cartlab.datasets import seed_case
from cartlab.io.sdtm import read_sdtm
from cartlab.io.sdtm.writer import write_sdtm

PROV = ["src_file", "src_row", "src_sha256"]


def _canonical(df: pl.DataFrame) -> pl.DataFrame:
    df = df.drop(PROV)
    return df.sort(df.columns, nulls_last=True)


@pytest.mark.parametrize("fmt", ["csv", "xpt"])
def test_seed_round_trip_is_lossless(tmp_path, fmt):
    seed = seed_case()
    folder = write_sdtm(seed, tmp_path / "sdtm", fmt)
    assert {p.suffix for p in folder.iterdir()} == {f".{fmt}"}
    imp = read_sdtm(folder, report=True)
    back = imp.study
    assert imp.report["n_skipped"].sum() == 0
    for name, df in seed.tables().items():
        a, b = _canonical(df), _canonical(back.table(name))
        assert a.schema == b.schema, name
        assert a.height == b.height, name
        for col in a.columns:
            assert a[col].to_list() == b[col].to_list(), f"{name}.{col}"
    # provenance labels survive (the seed mixes 'paper' and 'reconstructed')
    assert set(back.observations["source"].drop_nulls()) == set(seed.observations["source"].drop_nulls())
    assert set(back.sources["format"]) == {f"sdtm-{fmt}"}
    # the nominal calendar is not passed off as real dates
    assert back.subjects["infusion_date"].to_list() == [None]
    assert back.observations["datetime"].null_count() == back.observations.height


def test_round_trip_keeps_real_dates_long_notes_and_extra(tmp_path):
    seed = seed_case()
    subjects = seed.subjects.with_columns(pl.lit("2021-03-01").alias("infusion_date"),
                                          pl.lit("x" * 450).alias("source_note"))
    obs = seed.observations.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit('{"site": "A", "n": "1"}')).otherwise(None).alias("extra"))
    study = type(seed)(study_id=seed.study_id, subjects=subjects, doses=seed.doses, observations=obs,
                       interventions=seed.interventions, events=seed.events)
    back = read_sdtm(write_sdtm(study, tmp_path / "s", "xpt"))
    assert back.subjects["infusion_date"].to_list() == ["2021-03-01"]
    assert back.subjects["source_note"].to_list() == ["x" * 450]  # split over SRCNOTE, SRCNOTE1, SRCNOTE2
    assert back.observations["extra"].drop_nulls().to_list() == ['{"site": "A", "n": "1"}']
    assert _canonical(back.observations.drop("datetime")).equals(_canonical(obs.drop("datetime")))
