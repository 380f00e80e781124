"""Session 40 (review 40 of the twin: A1, B2, B3, B4, C1). Expected values by hand from the review's and
the standard's text (each test says how); never copied from cartlab's output."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from cartlab.cli import app


# ---- A1: flow MRD carries a between-method error in the simulator and in the fit ------------------------
def test_the_review_s_mrd_row_is_no_longer_a_13_sd_residual():
    from cartlab.twin.fit import binomial_residual

    # review 40 A1, SIM-0000001: MRDFCM 0.56588 on day -7, twin 0.65 x 0.882 = 0.5733; the old residual was
    # -7.94 (500,000-cell binomial). By hand with the between-method SD 0.3 (schedule_v1.yaml, assumed):
    # s = sqrt(0.3^2 + (1 - 0.56588) / (500000 x 0.56588)) = sqrt(0.09 + 1.5343e-6) = 0.3000026;
    # r = ln(0.56588 / 0.5733) / s = -0.0130270 / 0.3000026 = -0.04342
    r = binomial_residual(np.array(["MRDFCM"]), np.array([0.56588]), np.array([0.5733]), np.array([500000.0]),
                          np.array([True]))
    assert r[0] == pytest.approx(-0.04342, abs=2e-4)
    # a blast differential keeps the binomial quantile residual: 44 of 500 cells (8.8%) where the twin says
    # 8.8% is the median count, P(K < 44) + P(K = 44)/2 = about 0.5 -> residual about 0 (by hand: mean 44)
    r2 = binomial_residual(np.array(["BMBLAST"]), np.array([8.8]), np.array([8.8]), np.array([500.0]),
                           np.array([True]))
    assert abs(r2[0]) < 0.1


def test_simulated_mrd_scatters_by_the_between_method_sd():
    from cartlab.twin.observe import _noisy, load_schedule

    spec = load_schedule().noise["MRDFCM"]
    assert spec["between_method_log_sd"] == 0.3 and spec["between_method_status"] == "assumed"
    rng = np.random.default_rng(5)
    latent = np.full((1, 20000), 0.2)
    v, _ = _noisy("MRDFCM", latent, rng.standard_normal(latent.shape), spec, rng.standard_normal(latent.shape))
    # by hand: log-SD sqrt(0.3^2 + (1 - 0.2) / (500000 x 0.2)) = sqrt(0.09 + 8e-6) = 0.30001; 20,000 draws
    # give the SD to about 0.3 / sqrt(2 x 20000) = 0.0015
    assert np.std(np.log(v[0] / 0.2)) == pytest.approx(0.30001, abs=0.006)


def test_the_fit_s_mrd_residual_of_its_own_simulated_patients_is_about_standard_normal():
    """Review 40 A1: the twin's start (0.65 x the observed BMBLAST, as the fit's baseline) against the
    simulated day -7 MRDFCM, scored with the fit's residual: 45 of 50 beyond 3 before. On data the model
    generated itself |r| <= 3 on >= 95% of patients (N(0, 1): 0.27% expected beyond 3)."""
    from cartlab.twin.calibrate import virtual_patients
    from cartlab.twin.clinic import load_clinic
    from cartlab.twin.fit import OBS_MODEL, binomial_residual
    from cartlab.twin.model import simulate
    from cartlab.twin.observe import load_schedule, observe
    from cartlab.twin.params import load_params

    theta, base, ev, idx = virtual_patients(40, seed=11, start=0)
    sch = load_schedule().shortened(-7)
    sim = simulate(theta, base, ev, sch.t_out(), clinic=load_clinic(), keep_states=False)
    seen = observe(sim, idx, 11, sch, covariates={"weight_kg": base.weight_kg})
    f_flow = load_params("cd7_twin_v1").vector()[load_params("cd7_twin_v1").index("f_flow")]
    bm, mrd = seen.values["BMBLAST"][:, 0], seen.values["MRDFCM"][:, 0]
    ok = np.isfinite(bm) & np.isfinite(mrd)
    assert ok.sum() >= 30
    pred = f_flow * bm[ok] / 100.0
    r = binomial_residual(np.full(ok.sum(), "MRDFCM"), mrd[ok], pred, np.full(ok.sum(), OBS_MODEL["MRDFCM"][1]),
                          np.ones(ok.sum(), bool))
    assert np.mean(np.abs(r) <= 3) >= 0.95
    assert 0.5 < math.sqrt(np.mean(r * r)) < 1.5


# ---- B3: a measured CARCOPY above the model's ceiling is said, naming both numbers -------------------------
def test_a_car_value_above_the_ceiling_is_named_with_the_ceiling():
    from cartlab.twin.quality import car_ceiling_text

    obs = pl.DataFrame({"param": ["CARCOPY", "CARCOPY", "CARCOPY"], "day": [10.0, 14.0, 17.0],
                        "value": [192000.0, 367890.0, 242000.0]})
    # by hand: ceiling VCN 1.5 x 151,500 genomes/ug = 227,250; above it: 367,890 (day 14) and 242,000
    text = car_ceiling_text(obs, 1.5, 151500.0)
    assert "367,890" in text and "day 14" in text and "227,250" in text and "2 value(s) above" in text
    assert car_ceiling_text(obs.filter(pl.col("value") < 227250), 1.5, 151500.0) is None


# ---- B2 / B4 / C1 through the CLI: a subject without marrow, forecast, traced ------------------------------
def _no_marrow_folder(tmp_path: Path) -> Path:
    from twin_helpers import virtual_patient

    study, _theta, _sim = virtual_patient(seed=7, days=7)
    folder = tmp_path / "study"
    folder.mkdir()
    for name, df in study.folder_tables.items():
        if name == "observations":
            df = df.filter(~pl.col("param").is_in(["BMBLAST", "MRDFCM", "TGTBLAST"]))
        if name == "subjects" and "target" not in df.columns:
            df = df.with_columns(pl.lit("CD7").alias("target"))
        df.write_csv(folder / f"{name}.csv")
    return folder


@pytest.fixture(scope="module")
def no_marrow(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("s40")
    folder = _no_marrow_folder(tmp)
    sid = pl.read_csv(folder / "subjects.csv")["subject_id"][0]
    out = {}
    for mode in ("integrate", "default"):
        res = CliRunner().invoke(app, ["twin", "forecast", str(folder), "--subject", sid, "--from-day", "2",
                                       "--draws", "100", "--seed", "3", "--missing-baseline", mode,
                                       "--out", str(tmp / f"fc_{mode}")])
        assert res.exit_code == 0, res.output
        out[mode] = (tmp / f"fc_{mode}", res.output)
    return folder, out


def test_a_missing_marrow_is_drawn_from_the_population_prior_and_widens_the_interval(no_marrow):
    _folder, out = no_marrow
    meta = {m: json.loads((d / "twin_forecast.json").read_text()) for m, (d, _o) in out.items()}
    drawn = meta["integrate"]["baseline_drawn_from_prior"]
    # cd7_pop_v1.yaml covariates.bm_blast_pct: logit-normal median 36, sd 1.2, 2-87 (the virtual population's)
    assert drawn["bm_blast_pct"]["median"] == 36 and drawn["bm_blast_pct"]["sd"] == 1.2
    assert (drawn["bm_blast_pct"]["lower"], drawn["bm_blast_pct"]["upper"]) == (2, 87)
    assert meta["default"]["baseline_drawn_from_prior"] == {}
    assert "marrow blasts (bm_blast_pct) not measured: drawn from the population prior" in " ".join(
        out["integrate"][1].split())
    assert any(n.startswith("baseline_drawn:") for n in meta["integrate"]["forecast_notes"])

    def ratio(m):   # the 90% PI of the CAR peak as hi / lo
        row = next(r for r in meta[m]["forecast"] if r["quantity"] == "car_cmax")
        return row["pi90_hi"] / row["pi90_lo"]

    # standard: missing is not negative -> the unknown marrow widens the interval, never narrows it
    assert ratio("integrate") > ratio("default")


def test_a_forecast_records_seed_study_hashes_version_parameter_set_and_mc_error(no_marrow):
    import cartlab

    folder, out = no_marrow
    d = out["integrate"][0]
    meta = json.loads((d / "twin_forecast.json").read_text())
    assert meta["seed"] == 3 and meta["cartlab_version"] == cartlab.__version__
    assert meta["parameter_set"].startswith("cd7_twin_v1")
    assert meta["study"]["path"] == str(folder.resolve())
    # the hashes are those of the files themselves (hashlib here, independently of cartlab)
    got = {r["file"].split("/")[-1]: r["sha256"] for r in meta["study"]["inputs"]}
    for f in ("observations.csv", "doses.csv", "subjects.csv"):
        assert got[f] == hashlib.sha256((folder / f).read_bytes()).hexdigest()
    se = meta["interval_mc_se"]
    assert se["n_draws"] > 0 and set(se["se"]) == {"car_cmax", "car_tmax", "car_day28", "crs_ge3", "response_d28"}
    assert se["se"]["car_cmax"]["pi90_hi"] > 0   # a finite number of draws has a Monte-Carlo error


def test_fit_statistics_name_the_sources_of_their_rows_not_simulated(no_marrow):
    _folder, out = no_marrow
    d = out["integrate"][0]
    q = pl.read_csv(d / "twin_fit_quality.csv")
    obs = pl.read_csv(d / "twin_observations.csv")
    assert "source" not in q.columns
    # by hand: every row of this virtual patient is source = simulated, so each param's text is
    # "simulated <its number of rows in twin_observations.csv>"
    for p, text in q.select("param", "data_sources").iter_rows():
        assert text == f"simulated {obs.filter(pl.col('param') == p).height}"
    ident = pl.read_csv(d / "twin_identifiability.csv")
    assert "source" not in ident.columns and set(ident["data_sources"]) == {f"simulated {obs.height}"}
