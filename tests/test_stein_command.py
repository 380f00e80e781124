"""``cartlab stein``: the Stein 2019 fits from the command line (tables, study folders, outputs).

End-to-end through the installed command (subprocess) and through :func:`stein_command`; the
numbers written must be the estimator's own, every observation must lead back to its input row,
and bad input must leave nothing written. The per-subject end-to-end test, the seed study folder and
one bad table run the real ``python -m cartlab`` process; the other command lines run in-process
through typer's CliRunner (:func:`invoke`: the same exit code, stdout and stderr, and no exception
other than the exit), which saves an interpreter start-up per call (session 42).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cartlab.cli import app
from cartlab.cli.kinetics_io import parse_assignments, stein_command
from cartlab.datasets import seed_case_path
from cartlab.kinetics.stein import PARAMS, STEIN_2019, SteinModel, SteinPopulationModel, simulate


def run(*args, cwd=None):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "cartlab", "stein", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env)


def invoke(*args):
    """``cartlab stein ARGS`` in-process (typer's CliRunner), read like :func:`run`'s result: exit code,
    stdout, stderr. An exception other than the command's exit (a traceback in the real process) fails."""
    res = CliRunner().invoke(app, ["stein", *map(str, args)], env={"COLUMNS": "200"})
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    return SimpleNamespace(returncode=res.exit_code, stdout=res.stdout, stderr=res.stderr)


def _table(tmp_path, n=6, seed=11, with_covariate=False, name="conc.csv"):
    """A simulated cohort as a user's CSV: '<50' for BLQ samples, an LLOQ column, source=synthetic."""
    sim = simulate(n, seed=seed, params=STEIN_2019)
    df = sim.select(
        pl.col("subject_id").alias("ID"), pl.col("time").alias("DAY"),
        pl.when(pl.col("blq")).then(pl.lit("<50")).otherwise(pl.col("conc").round(3).cast(pl.String)).alias("DV"),
        pl.col("lloq").alias("LLOQ"), pl.lit("synthetic").alias("source"),
    )
    if with_covariate:
        ids = df["ID"].unique(maintain_order=True)
        dose = pl.DataFrame({"ID": ids, "LOGDOSE": np.round(np.linspace(-1, 1, ids.len()), 3)})
        df = df.join(dose, on="ID", how="left", maintain_order="left")
    path = tmp_path / name
    df.write_csv(path)
    return path, df


def _expected_frame(df: pl.DataFrame) -> pl.DataFrame:
    """The same table as the estimator's plain-frame input."""
    cens = pl.col("DV").str.starts_with("<")
    return df.select(
        pl.col("ID").alias("subject_id"), pl.col("DAY").alias("time"),
        pl.when(cens).then(None).otherwise(pl.col("DV")).cast(pl.Float64).alias("conc"),
        pl.col("LLOQ").alias("lloq"),
        pl.when(cens).then(pl.lit("<")).alias("censor"),
        pl.when(cens).then(pl.col("DV").str.slice(1)).cast(pl.Float64).alias("censor_limit"),
    )


def test_table_per_subject_end_to_end(tmp_path):
    path, df = _table(tmp_path)
    out = tmp_path / "fit"
    r = run(path, "--subject-col", "ID", "--time", "DAY", "--conc", "DV", "--lloq", "LLOQ", "--out", out)
    assert r.returncode == 0, r.stderr
    assert "per-subject fit of 6 subject(s)" in r.stdout
    assert "not measured values (source synthetic)" in r.stderr  # honest labelling of synthetic rows (a warning: stderr, review 38 C3)
    files = {p.name for p in out.iterdir()} - {".cartlab-export.json"}  # the output marker (session 37)
    assert files == {"stein_estimates.csv", "stein_subjects.csv", "stein_observations.csv", "stein_dropped.csv",
                     "stein_fits.png", "stein_fit.json", "stein_units.csv"}
    est = pl.read_csv(out / "stein_estimates.csv")
    assert est.height == 6 * (len(PARAMS) + 1)  # six parameters and sigma per subject
    # the numbers are the estimator's own
    expect = SteinModel().fit(_expected_frame(df)).individual_
    got = pl.read_csv(out / "stein_subjects.csv")
    assert got.columns == expect.columns  # the file is the fit's individual_ table, not a re-derivation
    for c in (*PARAMS, "sigma", "stein_cmax", "stein_auc_0_28", "obs_cmax", "nll"):
        assert np.allclose(got[c].to_numpy(), expect[c].to_numpy(), rtol=1e-9), c
    # every observation leads back to its input row (src_row is the 1-based data row)
    obs = pl.read_csv(out / "stein_observations.csv")
    assert obs.height == df.height and set(obs["src_file"]) == {"conc.csv"}
    src = df.with_row_index("src_row", offset=1).with_columns(pl.col("src_row").cast(pl.Int64))
    joined = obs.join(src, on="src_row")
    assert joined.height == obs.height
    assert (joined["ID"] == joined["subject_id"]).all() and np.allclose(joined["DAY"], joined["time"])
    assert (joined["blq"] == joined["DV"].str.starts_with("<")).all()
    q = joined.filter(~pl.col("blq"))
    assert np.allclose(q["conc"], q["DV"].cast(pl.Float64))
    assert obs.filter(pl.col("blq"))["iwres"].null_count() == obs["blq"].sum()
    meta = json.loads((out / "stein_fit.json").read_text())
    assert meta["inputs"][0]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta["options"]["blq"] == "m3" and meta["n_subjects"] == 6
    assert meta["n_blq"] == int(df["DV"].str.starts_with("<").sum())
    assert meta["n_not_measured"] == df.height and "warning" in meta


def test_blq_option_changes_the_likelihood(tmp_path):
    path, df = _table(tmp_path, n=3)
    a = stein_command(path, tmp_path / "m3", subject="ID", time="DAY", conc="DV", lloq="LLOQ")
    b = stein_command(path, tmp_path / "drop", subject="ID", time="DAY", conc="DV", lloq="LLOQ", blq="drop")
    assert a["n_blq"] > 0 and b["n_blq"] == 0 and b["n_dropped"] == a["n_blq"]
    dropped = pl.read_csv(tmp_path / "drop" / "stein_dropped.csv")
    assert set(dropped["reason"]) == {"BLQ dropped (blq='drop')"}


def test_fixed_parameter_and_prior(tmp_path):
    path, df = _table(tmp_path, n=2)
    stein_command(path, tmp_path / "o", subject="ID", time="DAY", conc="DV", lloq="LLOQ", fixed=["beta=0.0032"],
                  prior="stein2019")
    est = pl.read_csv(tmp_path / "o" / "stein_estimates.csv")
    beta = est.filter(pl.col("parameter") == "beta")
    assert beta["fixed"].all() and np.allclose(beta["estimate"], 0.0032) and beta["se"].null_count() == 2
    expect = SteinModel(fixed={"beta": 0.0032}, prior=STEIN_2019).fit(_expected_frame(df)).individual_
    got = pl.read_csv(tmp_path / "o" / "stein_subjects.csv")
    assert np.allclose(got["cmax"], expect["cmax"], rtol=1e-9)
    meta = json.loads((tmp_path / "o" / "stein_fit.json").read_text())
    assert meta["options"]["fixed"] == {"beta": 0.0032} and meta["options"]["prior"] == "stein2019"
    assert meta["estimator"].startswith("maximum a posteriori")


def test_population_table_with_covariate(tmp_path):
    path, df = _table(tmp_path, n=24, seed=3, with_covariate=True)
    out = tmp_path / "pop"
    r = invoke(path, "--subject-col", "ID", "--time", "DAY", "--conc", "DV", "--lloq", "LLOQ", "--population",
            "--covariate", "cmax=LOGDOSE", "--n-burn", 40, "--n-smooth", 30, "--n-post", 20, "--seed", 4,
            "--out", out)
    assert r.returncode == 0, r.stderr
    assert "population (SAEM) fit of 24 subject(s)" in r.stdout
    files = {p.name for p in out.iterdir()}
    assert {"stein_population.csv", "stein_vpc.csv", "stein_vpc.png", "stein_trace.csv", "stein_fits.png",
            "stein_subjects.csv", "stein_observations.csv", "stein_fit.json"} <= files
    pop = pl.read_csv(out / "stein_population.csv")
    assert "cmax~LOGDOSE" in pop["parameter"].to_list()
    assert set(pop.filter(pl.col("kind") == "theta")["parameter"]) == set(PARAMS)
    assert pl.read_csv(out / "stein_trace.csv").height == 70
    expect = SteinPopulationModel(covariates={"cmax": ["LOGDOSE"]}, n_burn=40, n_smooth=30, n_post=20,
                                  seed=4).fit(_expected_frame(df).join(
                                      df.select(pl.col("ID").alias("subject_id"), "LOGDOSE").unique("subject_id"),
                                      on="subject_id", how="left", maintain_order="left"))
    theta = dict(zip(pop["parameter"], pop["estimate"]))
    for p, v in expect.theta_.items():
        assert math.isclose(theta[p], v, rel_tol=1e-9), p
    obs = pl.read_csv(out / "stein_observations.csv")
    assert {"ipred", "pred", "iwres"} <= set(obs.columns) and obs.height == df.height
    meta = json.loads((out / "stein_fit.json").read_text())
    assert meta["options"]["covariates"] == {"cmax": ["LOGDOSE"]} and meta["aic"] is not None


def test_progress_reaches_the_total(tmp_path):
    path, _ = _table(tmp_path, n=4)
    calls = []
    stein_command(path, tmp_path / "p", subject="ID", time="DAY", conc="DV", lloq="LLOQ", population=True,
                  n_starts=1, n_burn=5, n_smooth=5, n_post=5, vpc_reps=20, progress=lambda *a: calls.append(a))
    counted = [c for c in calls if c[2]]
    assert [c[1] for c in counted] == sorted(c[1] for c in counted)  # monotone
    assert counted[-1][1] == counted[-1][2] == 5 + 5 + 5 + 1
    calls.clear()
    stein_command(path, tmp_path / "s", subject="ID", time="DAY", conc="DV", lloq="LLOQ",
                  progress=lambda *a: calls.append(a))
    assert [c[1:] for c in calls] == [(i, 4) for i in range(1, 5)]


def test_seed_study_folder(tmp_path):
    out = tmp_path / "seed"
    r = run(seed_case_path(), "--out", out)
    assert r.returncode == 0, r.stderr
    assert "source reconstructed" in r.stderr  # a warning: stderr (review 38 C3)
    obs = pl.read_csv(out / "stein_observations.csv")
    day14 = obs.filter(pl.col("time") == 14.0).row(0, named=True)
    assert day14["conc"] == 183945.0 and day14["source"] == "paper"  # the paper's Cmax, traced to its row
    assert day14["src_file"] == "observations.csv" and day14["src_row"] > 0
    assert (obs.filter(pl.col("source") != "paper")["source"] == "reconstructed").all()
    dropped = pl.read_csv(out / "stein_dropped.csv")
    assert dropped["reason"].to_list() == ["before the first infusion"]
    r = invoke(seed_case_path(), "--time", "DAY", "--out", tmp_path / "x")
    assert r.returncode == 2 and "--time: for a table" in r.stderr and not (tmp_path / "x").exists()
    meta = json.loads((out / "stein_fit.json").read_text())
    assert meta["input_kind"] == "study" and {i["file"] for i in meta["inputs"]} >= {"observations.csv"}
    assert meta["n_converged"] == 1


@pytest.mark.parametrize("args, message", [
    (["--subject-col", "ID", "--time", "DAY", "--conc", "NOPE"], "column(s) ['NOPE'] not found"),
    (["--time", "DAY", "--conc", "DV"], "needs --subject"),
    (["--subject-col", "ID", "--time", "DAY", "--conc", "DV", "--covariate", "cmax=LOGDOSE"], "needs --population"),
    (["--subject-col", "ID", "--time", "DAY", "--conc", "DV", "--population", "--covariate", "kmax=X"],
     "unknown parameter 'kmax'"),
    (["--subject-col", "ID", "--time", "DAY", "--conc", "DV", "--population", "--covariate", "cmax=WT"],
     "column(s) ['WT'] not found"),
    (["--subject-col", "ID", "--time", "DAY", "--conc", "DV", "--fix", "fb=1.5"], "fb must be in (0, 1)"),
    (["--subject-col", "ID", "--time", "DAY", "--conc", "DV", "--fix", "beta"], "expected PARAMETER=VALUE"),
    (["--subject-col", "ID", "--time", "DAY", "--conc", "DV", "--blq", "zero"], "--blq 'zero'"),
    (["--subject-col", "ID", "--time", "DAY", "--conc", "DV", "--prior", "flat"], "--prior 'flat'"),
    (["--subject-col", "ID", "--time", "DAY", "--conc", "DV", "--population", "--prior", "stein2019"],
     "--prior is for per-subject fits"),
])
def test_bad_options_write_nothing(tmp_path, args, message):
    path, _ = _table(tmp_path, n=2)
    out = tmp_path / "out"
    r = invoke(path, *args, "--out", out)
    assert r.returncode == 2
    assert message in r.stderr and "Nothing was written" in r.stderr
    assert not out.exists()


def test_bad_cells_name_file_row_and_column(tmp_path):
    path, df = _table(tmp_path, n=2)
    lines = path.read_text().splitlines()
    parts = lines[3].split(",")
    parts[2] = "1.2e"  # data row 3 (CSV line 4), column DV
    lines[3] = ",".join(parts)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    r = run(bad, "--subject-col", "ID", "--time", "DAY", "--conc", "DV", "--out", tmp_path / "out")
    assert r.returncode == 2 and "bad.csv: row 3 (line 4), column 'DV': '1.2e' is not a number" in r.stderr
    # a covariate must have one value per subject
    cov = df.with_columns(pl.int_range(pl.len()).cast(pl.Float64).alias("WT"))
    cov.write_csv(bad)
    r = invoke(bad, "--subject-col", "ID", "--time", "DAY", "--conc", "DV", "--population", "--covariate", "cmax=WT",
            "--out", tmp_path / "out")
    assert r.returncode == 2 and "column 'WT': covariate values differ within subject" in r.stderr
    # a covariate missing for a subject names the subject
    first = df["ID"][0]
    df.with_columns(pl.when(pl.col("ID") == first).then(None).otherwise(1.5).alias("WT")).write_csv(bad)
    r = invoke(bad, "--subject-col", "ID", "--time", "DAY", "--conc", "DV", "--population", "--covariate", "cmax=WT",
            "--out", tmp_path / "out")
    assert r.returncode == 2 and f"covariate 'WT' has missing values for 1 subject(s): {first}" in r.stderr
    assert not (tmp_path / "out").exists()


def test_population_of_one_subject_is_refused():
    with pytest.raises(ValueError, match="at least 2 subjects"):
        SteinPopulationModel().fit(simulate(1, seed=1, params=STEIN_2019))


def test_a_failure_while_writing_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    path, _ = _table(tmp_path, n=2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "stein_fit.json").write_text("old\n")
    from matplotlib.figure import Figure

    def boom(self, *a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", boom)
    from cartlab.errors import CartlabError

    # session 40 (review 40 store/cli B6): one message naming --out and the reason, not the staging folder
    with pytest.raises(CartlabError, match=f"cannot write the Stein fit to {out}: disk full"):
        stein_command(path, out, subject="ID", time="DAY", conc="DV", lloq="LLOQ")
    assert [p.name for p in out.iterdir()] == ["stein_fit.json"]
    assert (out / "stein_fit.json").read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []  # no temporary folder left


def test_observations_residuals_are_the_definition():
    sim = simulate(3, seed=8, params=STEIN_2019)
    fit = SteinModel().fit(sim)
    obs = fit.observations_
    pred = pl.concat([fit.predict(g["time"].to_numpy(), s) for (s,), g in obs.group_by("subject_id",
                                                                                        maintain_order=True)])
    assert np.allclose(obs["ipred"], pred["pred"], rtol=1e-12)
    sig = dict(zip(fit.subject_ids_, fit.individual_["sigma"]))
    q = obs.filter(~pl.col("blq"))
    want = (np.log(q["conc"].to_numpy()) - np.log(q["ipred"].to_numpy())) / np.array([sig[s] for s in q["subject_id"]])
    assert np.allclose(q["iwres"].to_numpy(), want, rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(p=st.sampled_from(PARAMS + ("kmax", "Cmax", "")), v=st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6)), sep=st.sampled_from(["=", " = ", ":"]))
def test_parse_assignments_accepts_exactly_valid_items(p, v, sep):
    item = f"{p}{sep}{v}"
    try:
        out = parse_assignments([item], "--fix", float)
    except ValueError as exc:
        assert "--fix" in str(exc)
        return
    (name, value), = out
    assert name == p and p in PARAMS and sep != ":"
    assert (0 < value < 1) if p == "fb" else (math.isfinite(value) and value > 0)


def test_table_with_split_doses(tmp_path):
    """--doses: time is counted from each subject's first infusion; superpose weights the infusions."""
    path, df = _table(tmp_path, n=2)
    shifted = df.with_columns((pl.col("DAY") + 5.0).alias("DAY"))  # infusions on study days 5 and 7
    shifted.write_csv(path)
    ids = df["ID"].unique(maintain_order=True).to_list()
    doses = pl.DataFrame({"ID": [i for i in ids for _ in (0, 1)], "DAY": [5.0, 7.0] * len(ids),
                          "dose": [1.0, 4.0] * len(ids)})
    doses.write_csv(tmp_path / "doses.csv")
    out = tmp_path / "o"
    r = invoke(path, "--subject-col", "ID", "--time", "DAY", "--conc", "DV", "--lloq", "LLOQ", "--doses",
            tmp_path / "doses.csv", "--dose-handling", "superpose", "--out", out)
    assert r.returncode == 0, r.stderr
    obs = pl.read_csv(out / "stein_observations.csv")
    assert np.allclose(obs["time"], df["DAY"])  # back on the first-infusion clock
    expect = SteinModel(dose_handling="superpose").fit(
        _expected_frame(shifted), doses=doses.rename({"ID": "subject_id", "DAY": "time"})).individual_
    got = pl.read_csv(out / "stein_subjects.csv")
    assert np.allclose(got["cmax"], expect["cmax"], rtol=1e-9)
    meta = json.loads((out / "stein_fit.json").read_text())
    assert [Path(i["file"]).name for i in meta["inputs"]] == ["conc.csv", "doses.csv"]
    # a dose that is not a number names its row and column
    (tmp_path / "bad.csv").write_text("ID,DAY,dose\nA,0,1e6\nA,x,2e6\n")
    r = invoke(path, "--subject-col", "ID", "--time", "DAY", "--conc", "DV", "--doses", tmp_path / "bad.csv",
            "--out", tmp_path / "b")
    assert r.returncode == 2 and "bad.csv: row 2 (line 3), column 'DAY': 'x' is not a number" in r.stderr
