"""An unverified rule says so where its result is shown (issue 13, point 7)."""

from __future__ import annotations

import polars as pl
import pytest

from cartlab.analyze import Analysis
from cartlab.criteria import STATUS_ORDER, UNSETTLED, rule_index, rule_status, rules_in, with_rule_status
from cartlab.criteria.status import _tables
from cartlab.datasets import seed_case


def test_every_criteria_table_and_rule_has_a_known_status():
    for name, data in _tables().items():
        assert data.get("status") in STATUS_ORDER, f"{name}.yaml has no table-level status"
    for rid, info in rule_index().items():
        assert info.status in STATUS_ORDER, f"{rid} ({info.table}.yaml) has no status"


@pytest.mark.parametrize("text,status", [
    ("hd.combination", "unverified"),  # Lee 2014 high-dose vasopressor table (row status)
    ("icaht.early.g3_anc500_ge14", "partially_verified"),
    ("ctcae_v5:anemia:g2", "verified_secondary"),  # CTCAE: table status, by its prefix
    ("eln2022.MLFS", "verified"),
    ("censor.last_record", "convention"),
    # several rules in one cell: the least verified one decides
    ("early: icaht.early.g3_anc500_ge14; late: icaht.late.g3_anc500", "partially_verified"),
    ("car_hematotox.high; car_hematotox.item.plat", "unverified"),
    ("no rule of any table", None),
    (None, None),
])
def test_rule_status_of_a_cell(text, status):
    assert rule_status(text) == status


def test_with_rule_status_adds_a_column_per_rule_column():
    df = pl.DataFrame({"rule": ["eln2022.MLFS", None], "early_rule": ["icaht.early.g3_anc500_ge14", "x.y"]})
    out = with_rule_status(df)
    assert out["rule_status"].to_list() == ["verified", None]
    assert out["early_rule_status"].to_list() == ["partially_verified", None]


def test_every_derived_row_carries_its_status_and_the_manifest_lists_unsettled_rules():
    a = Analysis(seed_case())
    tables = a.tables()
    for name, df in tables.items():
        for col in df.columns:
            if col.lower() == "rule" and df.schema[col] in (pl.String, pl.Categorical):
                # ``rule`` -> ``rule_status``; the ADaM-style ``RULE`` -> ``RULESTAT`` (the ADaM name)
                assert ("RULESTAT" if col == "RULE" else f"{col}_status") in df.columns, name
    # the seed's ICAHT rows rest on partially verified rules (Rejeski 2023 table not read in full)
    icaht = tables["icaht"].row(0, named=True)
    assert icaht["rule_status"] == "partially_verified"
    # its CAR-HEMATOTOX score rests on unverified cut-offs
    assert tables["car_hematotox"]["rule_status"].to_list() == ["unverified"]
    # ASTCT CRS and CTCAE grades are settled
    crs = tables["crs_daily"]
    assert set(crs.filter(pl.col("grade") > 0)["rule_status"].drop_nulls()) <= {"verified", "verified_secondary"}
    # a grade-0 day names the convention row crs.g0 (no criterion met; since session 28)
    assert set(crs.filter(pl.col("grade") == 0)["rule"]) == {"crs.g0"}
    assert set(crs.filter(pl.col("grade") == 0)["rule_status"]) == {"convention"}
    assert set(tables["adlb"]["rule_status"].drop_nulls()) == {"verified_secondary"}
    rules = a.manifest()["rules"]
    listed = {r["rule"]: r for r in rules["unsettled"]}
    assert {"icaht.early.g3_anc500_ge14", "car_hematotox.item.plat"} <= set(listed)
    assert all(r["status"] in UNSETTLED and r["citation"] for r in rules["unsettled"])
    assert listed["icaht.early.g3_anc500_ge14"]["rows"]["icaht"] >= 1
    assert rules["not_in_a_criteria_table"] == []  # every emitted rule id has a criteria row (s27)


def test_report_marks_an_unsettled_rule(tmp_path):
    from cartlab.report import write_subject_report

    html = write_subject_report(seed_case(), "CD7-AML-001", tmp_path).read_text()
    assert "icaht.early.g3_anc500_ge14 ⚠ partially verified" in html
    assert "ctcae_v5:anemia" in html and "ctcae_v5:anemia:g3 ⚠" not in html


def test_rules_in_names_each_rule_once():
    infos = rules_in("early: icaht.early.g3_anc500_ge14; late: icaht.early.g3_anc500_ge14")
    assert [i.id for i in infos] == ["icaht.early.g3_anc500_ge14"]


def test_explain_marks_unsettled_rules(tmp_path):
    import os
    import subprocess
    import sys

    from cartlab.datasets import seed_case_path

    env = {**os.environ, "COLUMNS": "200"}
    db = tmp_path / "s.duckdb"
    run = lambda *a: subprocess.run([sys.executable, "-m", "cartlab", *map(str, a)], capture_output=True,  # noqa: E731
                                    text=True, env=env)
    assert run("import", seed_case_path(), "--store", db).returncode == 0
    icaht = run("explain", "CD7-AML-001", "--what", "icaht", "--store", db)
    assert icaht.returncode == 0, icaht.stderr
    text = " ".join(icaht.stdout.split())
    assert "⚠ these results rest on criteria rows not (fully) verified" in text
    assert "icaht.early.g3_anc500_ge14 (partially verified; icaht_2023.yaml)" in text
    crs = run("explain", "CD7-AML-001", "--what", "crs", "--store", db)
    assert crs.returncode == 0 and "⚠" not in crs.stdout  # ASTCT CRS rests on verified rows
