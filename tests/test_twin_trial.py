"""cartlab.twin.trial / cartlab simulate: determinism across workers and chunk sizes, resume, outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cartlab.errors import InputError
from cartlab.twin.trial import Arm, TrialConfig, arms_from, run_trial, wilson

# short courses and few patients: the tests check the machinery, not the clinical numbers
CFG = TrialConfig(n=12, seed=9, chunk=3, course_days=30, folders=0)


def _arms(summary):
    return json.dumps(summary["arms"], sort_keys=True)


def test_wilson_interval_by_hand():
    # k=3, n=10: centre (0.3 + 1.92/20)/(1+3.8415/10) = 0.28615; half 1.95996*sqrt(0.021+0.0096)/1.38415 = 0.24757
    lo, hi = wilson(3, 10)
    assert lo == pytest.approx(0.10779, abs=1e-4) and hi == pytest.approx(0.60322, abs=1e-4)
    assert wilson(0, 5)[0] == 0.0


def test_arms_are_the_factorial_product():
    arms = arms_from([1e6, 5e6], [(1.0,), (0.2, 0.8)], [0.5, 1.0])
    assert len(arms) == 8 and arms[0] == Arm(1e6, (1.0,), 0.5)
    assert len({a.label for a in arms}) == 8


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    run_trial(CFG, out)
    return out


def test_one_and_two_dask_workers_give_identical_bytes(reference, tmp_path):
    from distributed import Client, LocalCluster

    outs = {}
    for k in (1, 2):
        with LocalCluster(n_workers=k, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
            outs[k] = tmp_path / f"w{k}"
            if k == 1:
                with Client(cluster) as client:
                    run_trial(CFG, outs[k], client=client)
            else:   # the --scheduler path: connect to a running scheduler by its address
                run_trial(CFG, outs[k], scheduler=cluster.scheduler_address)
    ref = (reference / "summary.json").read_bytes()
    assert (outs[1] / "summary.json").read_bytes() == ref
    assert (outs[2] / "summary.json").read_bytes() == ref
    assert (outs[2] / "tables" / "arms.csv").read_bytes() == (reference / "tables" / "arms.csv").read_bytes()


def test_resume_after_a_failed_chunk(reference, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="injected failure in chunk 2"):
        run_trial(CFG, out, fail_chunk=2)
    chunks = out / "chunks"
    assert sorted(p.name for p in chunks.glob("*.npz")) == ["c000000.npz", "c000001.npz"]
    before = {p.name: p.stat().st_mtime_ns for p in chunks.glob("*.npz")}
    with pytest.raises(InputError, match="--resume"):
        run_trial(CFG, out)                       # an existing run is never silently overwritten
    done = []
    run_trial(CFG, out, resume=True, progress=lambda d, n: done.append(d))
    assert done[0] == 6                           # two finished chunks of 3 counted at the start
    after = {p.name: p.stat().st_mtime_ns for p in chunks.glob("*.npz")}
    assert {k: after[k] for k in before} == before   # finished chunks were not recomputed
    assert len(after) == 4
    assert (out / "summary.json").read_bytes() == (reference / "summary.json").read_bytes()
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["chunk"] for x in lines) == [0, 1, 2, 3]


def test_resume_refuses_another_configuration(reference, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    with pytest.raises(InputError, match="another configuration"):
        run_trial(TrialConfig(n=12, seed=10, chunk=3, course_days=30, folders=0), out, resume=True)


def test_chunk_size_does_not_change_results(reference, tmp_path):
    ref = json.loads((reference / "summary.json").read_text())
    for chunk in (4, 12):
        s = run_trial(TrialConfig(n=12, seed=9, chunk=chunk, course_days=30, folders=0), tmp_path / f"c{chunk}")
        assert _arms(s) == _arms(ref)


def test_cli_dose_levels_tables_plots_and_folders(tmp_path):
    from typer.testing import CliRunner

    from cartlab.cli import app
    from cartlab.io import read_study

    out = tmp_path / "sim"
    r = CliRunner().invoke(app, ["simulate", "--n", "4", "--seed", "2", "--days", "30", "--dose-levels", "1e6,5e6",
                                 "--folders", "all", "--out", str(out)])
    assert r.exit_code == 0, r.output
    s = json.loads((out / "summary.json").read_text())
    assert [a["dose_per_kg"] for a in s["arms"]] == [1e6, 5e6]
    rate = s["arms"][0]["rates"]["crs_ge3"]
    assert set(rate) >= {"k", "n", "rate", "ci95_wilson", "ci95_exact"} and rate["n"] == 4
    import polars as pl

    dr = pl.read_csv(out / "tables" / "dose_response.csv")
    assert dr["dose_per_kg"].to_list() == [1e6, 5e6]
    assert (out / "plots" / "dose_response.png").stat().st_size > 1000
    for arm in s["arms"]:
        study = read_study(out / "study" / arm["arm"])
        assert study.subjects.height == 4
        cells = study.doses.filter(pl.col("agent") == "CAR-T").group_by("subject_id").agg(pl.col("dose").sum())
        w = study.subjects.select("subject_id", "weight_kg")
        # the folder's CAR-T doses are the arm's dose level x the subject's weight (rounded to 1,000 cells)
        j = cells.join(w, on="subject_id")
        np.testing.assert_allclose(j["dose"].to_numpy(), arm["dose_per_kg"] * j["weight_kg"].to_numpy(), rtol=2e-3)
    bad = CliRunner().invoke(app, ["simulate", "--n", "4", "--split", "0.3,0.3", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "add up to 1" in bad.output
