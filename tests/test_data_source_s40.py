"""Session 40 (review 40 twin B1): the analysis's tables say which subjects' results rest on rows that were
not measured: subject_summary.csv ``data_source`` / ``n_rows_not_measured`` / ``n_rows`` and analysis.json
``data_sources``. Expected counts are read straight from the CSV files (tests/seed_helpers.py), not from
cartlab's reader."""

from __future__ import annotations

import csv
import json
import shutil

import polars as pl
from typer.testing import CliRunner

from cartlab.analyze import Analysis
from cartlab.cli import app
from cartlab.datasets import seed_case, seed_case_path
from cartlab.io import read_study
from seed_helpers import SEED_FILES, hand_count_not_measured


def _rows(folder, name):
    with (folder / name).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_seed_summary_names_its_sources():
    nm, total = hand_count_not_measured()
    r = Analysis(seed_case()).subject_summary().row(0, named=True)
    # subjects.csv says paper (with reconstructed_columns); the other rows are paper or reconstructed
    assert (r["data_source"], r["n_rows_not_measured"], r["n_rows"]) == ("paper; reconstructed", nm, total)


def test_mixed_study_per_subject_and_in_analysis_json(tmp_path):
    src = tmp_path / "s"
    shutil.copytree(seed_case_path(), src)
    # a second subject whose rows are all observed (source 'site EHR', not a not-measured kind)
    for name in SEED_FILES:
        rows = _rows(src, name)
        with (src / name).open("a", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
            for r in rows:
                w.writerow({**r, "subject_id": "OBS-2", "source": "site EHR",
                            **({"reconstructed_columns": ""} if "reconstructed_columns" in r else {})})
    nm, total = hand_count_not_measured()
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["analyze", str(src), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"{nm:,} of {2 * total:,} input rows are reconstructed (not measured)" in " ".join(res.output.split())
    summ = {r["subject_id"]: r for r in _rows(out, "subject_summary.csv")}
    assert (summ["OBS-2"]["data_source"], summ["OBS-2"]["n_rows_not_measured"], summ["OBS-2"]["n_rows"]) == (
        "observed", "0", str(total))
    assert summ["CD7-AML-001"]["data_source"] == "paper; reconstructed"
    ds = json.loads((out / "analysis.json").read_text())["data_sources"]
    assert (ds["not_measured"], ds["total"], ds["observed"]) == (nm, 2 * total, total)
    assert ds["reconstructed"] == nm and ds["paper"] == total - nm


def test_batched_and_whole_agree(tmp_path):
    s = read_study(seed_case_path())
    whole = Analysis(s).subject_summary()
    from cartlab.analyze_batched import InMemorySource, write_analysis_batched

    _p, a, _t = write_analysis_batched(InMemorySource(s), tmp_path / "b", None, None, batch_size=1, workers=1)
    got = a.subject_summary()
    cols = ["subject_id", "data_source", "n_rows_not_measured", "n_rows"]
    assert got.select(cols).equals(whole.select(cols))
    assert pl.Series(whole["n_rows"]).sum() == hand_count_not_measured()[1]
