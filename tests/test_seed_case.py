"""The built-in seed case keeps every value the paper states, and labels the rest."""

from __future__ import annotations

import polars as pl
import pytest

from cartlab.datasets import seed_case, seed_case_path
from cartlab.datasets.seed import PAPER_FACTS, SUBJECT, build_seed_case


@pytest.fixture(scope="module")
def study():
    return seed_case()


def test_shipped_folder_matches_builder(tmp_path):
    build_seed_case(tmp_path)
    for name in ("subjects", "doses", "observations", "interventions", "events"):
        assert (tmp_path / f"{name}.csv").read_bytes() == (seed_case_path() / f"{name}.csv").read_bytes(), name


@pytest.mark.parametrize("param, analyte, day, value, unit", PAPER_FACTS)
def test_paper_values_kept_exactly(study, param, analyte, day, value, unit):
    rows = study.observations.filter(
        (pl.col("param") == param) & (pl.col("day") == day) & (pl.col("source") == "paper")
    )
    if analyte:
        rows = rows.filter(pl.col("analyte") == analyte)
    assert rows.height == 1
    r = rows.row(0, named=True)
    assert r["orig_value"] == value and r["orig_unit"] == unit


def test_every_row_is_labelled(study):
    for name, df in study.tables().items():
        assert df["source"].null_count() == 0, name
        assert set(df["source"].unique()) <= {"paper", "reconstructed"}, name
    # reconstructed rows exist and paper rows are few
    src = study.observations["source"].value_counts()
    counts = dict(zip(src["source"], src["count"]))
    assert counts["paper"] == len(PAPER_FACTS)
    assert counts["reconstructed"] > 1000


def test_daily_course_from_day_minus_7_to_60(study):
    for param in ("TEMP", "SYSBP", "NEUT", "PLAT"):
        days = study.observations.filter(pl.col("param") == param)["day"].to_list()
        assert days == [float(d) for d in range(-7, 61)], param


def test_subject_and_protocol_facts(study):
    s = study.subjects.row(0, named=True)
    assert (s["subject_id"], s["sex"], s["age_years"], s["disease"], s["target"]) == (
        SUBJECT, "F", 17.0, "AML", "CD7")
    assert "weight_kg" in s["source_note"]  # reconstructed fields are named
    d = study.doses
    car = d.filter(pl.col("agent") == "CAR-T").sort("day")
    assert car.select("day", "dose", "unit").rows() == [(0.0, 1e6, "cells/kg"), (2.0, 4e6, "cells/kg")]
    flu = d.filter(pl.col("agent") == "fludarabine")
    assert flu["day"].to_list() == [-5.0, -4.0, -3.0] and set(flu["dose"]) == {30.0}
    cy = d.filter(pl.col("agent") == "cyclophosphamide")
    assert cy["day"].to_list() == [-5.0, -4.0, -3.0] and set(cy["dose"]) == {300.0}
    dec = d.filter(pl.col("agent") == "decitabine")
    assert dec["day"].to_list() == [-6.0, -5.0, -4.0, -3.0] and set(dec["dose"]) == {50.0}


def test_reconstruction_consistent_with_paper(study):
    o = study.observations
    temp = o.filter(pl.col("param") == "TEMP")
    fever = temp.filter(pl.col("value") >= 38.0)
    assert fever.height == 12 and temp["value"].max() == 39.4  # 12 days, max 39.4 C
    anc = o.filter(pl.col("param") == "NEUT").sort("day")
    assert anc.filter(pl.col("value") < 0.5).height == 38  # neutropenia 38 days
    early = anc.filter(pl.col("day").is_between(0, 30))
    assert early.filter(pl.col("value") <= 0.5).height >= 14  # early ICAHT >= grade 3
    car = o.filter(pl.col("param") == "CARCOPY").drop_nulls("value")
    top = car.sort("value", descending=True).row(0, named=True)
    assert (top["day"], top["value"]) == (14.0, 183945.0)  # the peak is the paper's
    # hypotension treated with norepinephrine for CRS, dexamethasone, no ICANS
    iv = study.interventions
    ne = iv.filter(pl.col("agent") == "norepinephrine").row(0, named=True)
    sbp_low = o.filter((pl.col("param") == "SYSBP") & (pl.col("value") < 90))["day"].to_list()
    assert sbp_low and all(ne["start_day"] <= d <= ne["end_day"] for d in sbp_low)
    assert ne["indication"] == "CRS"
    assert iv.filter(pl.col("agent") == "dexamethasone").height == 1
    assert set(o.filter(pl.col("param") == "ICE")["value"]) == {10.0}
    # day-17 counts not recovered (MLFS, not CR/CRh/CRi)
    d17 = o.filter((pl.col("day") == 17) & pl.col("param").is_in(["NEUT", "PLAT"]))
    vals = dict(zip(d17["param"], d17["value"]))
    assert vals["NEUT"] < 0.5 and vals["PLAT"] < 50
    assert study.events.row(0, named=True)["event"] == "allo_hsct"
