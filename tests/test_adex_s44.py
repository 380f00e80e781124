"""ADEX (session 44): the exposure dataset from doses.csv. Expected values from the paper
(seed/case-facts.md: "lymphodepletion | decitabine 50 mg/day days -6..-3; fludarabine 30 mg/m2/day days
-5..-3; cyclophosphamide 300 mg/m2/day days -5..-3" and "CAR-T dose | total 5 x10^6 cells/kg, split:
1 x10^6/kg on day 0, 4 x10^6/kg on day 2") and, for the written studies below, by hand."""

from __future__ import annotations

import dataclasses

import polars as pl
import pyreadstat
import pytest

from cartlab.analyze import Analysis
from cartlab.datasets import seed_case
from cartlab.io import read_study
from cartlab.io.adam import export_adam
from cartlab.io.adam.build import build_datasets
from conftest import write


@pytest.fixture(scope="module")
def seed_adex():
    return build_datasets(Analysis(seed_case()), ["ADEX"])["ADEX"]


def _row(f: pl.DataFrame, code: str, agent: str) -> dict:
    rows = f.filter((pl.col("PARAMCD") == code) & (pl.col("PARCAT2") == agent)).to_dicts()
    assert len(rows) == 1, (code, agent, rows)
    return rows[0]


def test_seed_totals_are_the_papers(seed_adex):
    car = _row(seed_adex, "TDOSE", "CAR-T")
    assert car["AVAL"] == pytest.approx(5e6) and car["AVALU"] == "cells/kg" and car["AVALC"] is None
    assert (car["ASTRLDY"], car["AENRLDY"], car["ASTDY"], car["AENDY"]) == (0, 2, 1, 3)
    assert car["CARTFL"] == "Y" and car["PARCAT1"] == "OVERALL" and car["PARAM"] == "Total dose administered"
    assert _row(seed_adex, "TNDOSE", "CAR-T")["AVAL"] == 2
    for agent, total, unit, n, first in (("decitabine", 200, "mg", 4, -6), ("fludarabine", 90, "mg/m2", 3, -5),
                                         ("cyclophosphamide", 900, "mg/m2", 3, -5)):
        t = _row(seed_adex, "TDOSE", agent)
        assert (t["AVAL"], t["AVALU"], t["ASTRLDY"], t["AENRLDY"], t["CARTFL"]) == (total, unit, first, -3, "N")
        assert _row(seed_adex, "TNDOSE", agent)["AVAL"] == n
    doses = seed_adex.filter(pl.col("PARAMCD") == "DOSE")
    assert doses.height == 4 + 3 + 3 + 2 and set(doses["PARCAT1"]) == {"INDIVIDUAL"}
    assert doses.filter(pl.col("CARTFL") == "Y")["AVAL"].to_list() == [1e6, 4e6]
    # the split dose's two rows are the total's evidence; every value is the paper's
    assert car["EVIDENCE"] == "doses.csv:11; doses.csv:12" and set(seed_adex["DATASRC"]) == {"paper"}
    # one PARAM per PARAMCD (ADaMIG BDS), whatever the agent
    assert seed_adex.group_by("PARAMCD").agg(pl.col("PARAM").n_unique())["PARAM"].to_list() == [1, 1, 1]


def _study(tmp_path, doses: str):
    f = tmp_path / "s"
    write(f, "subjects.csv", "subject_id,disease,target,infusion_date\nA,AML,CD7,2024-03-01\nB,AML,CD7,2024-03-02")
    write(f, "doses.csv", doses)
    write(f, "observations.csv", "subject_id,day,param,value,unit\nA,1,TEMP,37,C\nB,1,TEMP,37,C")
    return read_study(f)


def test_an_unknown_dose_leaves_the_total_not_evaluable_and_units_are_not_mixed(tmp_path):
    study = _study(tmp_path, """
subject_id,day,agent,dose,unit
A,0,CAR-T,1,10^6 cells/kg
A,1,CAR-T,4e6,cells/kg
B,0,CAR-T,2e6,cells/kg
B,1,CAR-T,3,10^6 cells/kg
B,-4,fludarabine,30,mg/m2
B,-3,fludarabine,50,mg
""")
    # the readers refuse or drop a dose row without a dose; a Study built in Python can still hold one
    unknown = (pl.col("subject_id") == "A") & (pl.col("day") == 1)
    study = dataclasses.replace(study, doses=study.doses.with_columns(
        pl.when(unknown).then(None).otherwise(pl.col("dose")).alias("dose")))
    f = build_datasets(Analysis(study), ["ADEX"])["ADEX"]
    a = f.filter(pl.col("USUBJID") == "A")
    t = _row(a, "TDOSE", "CAR-T")
    assert t["AVAL"] is None and t["AVALC"] == "NE"  # missing is not zero: not 1e6
    assert _row(a, "TNDOSE", "CAR-T")["AVAL"] == 2
    assert a.filter(pl.col("PARAMCD") == "DOSE")["AVALC"].to_list() == [None, "NE"]
    b = f.filter(pl.col("USUBJID") == "B")
    # 2e6 cells/kg + 3 x10^6 cells/kg: one unit once read (pint), so one total of 5e6
    assert _row(b, "TDOSE", "CAR-T")["AVAL"] == pytest.approx(5e6)
    flu = b.filter((pl.col("PARAMCD") == "TDOSE") & (pl.col("PARCAT2") == "fludarabine")).sort("AVALU")
    assert flu.select("AVAL", "AVALU").rows() == [(50.0, "mg"), (30.0, "mg/m2")]  # never 80 of anything
    # dates: the subject's infusion date + floor(day); B's infusion is 2024-03-02 (SAS day 23437)
    assert _row(b, "TDOSE", "CAR-T")["ASTDT"] == 23437 and _row(b, "TDOSE", "CAR-T")["AENDT"] == 23438


def test_export_writes_adex_xpt_with_the_spec_labels(tmp_path):
    out = tmp_path / "adam"
    result = export_adam(Analysis(seed_case()), out, datasets=["ADSL", "ADEX"])
    assert result["datasets"]["ADEX"] == 12 + 2 * 4
    df, meta = pyreadstat.read_xport(str(out / "adex.xpt"))
    assert meta.table_name == "ADEX" and meta.file_label == "Exposure Analysis Dataset"
    got = df[(df.PARAMCD == "TDOSE") & (df.PARCAT2 == "CAR-T")]
    assert got.AVAL.tolist() == [5e6] and got.AVALU.tolist() == ["cells/kg"]
