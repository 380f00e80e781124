"""CAR-T kinetics from the canonical tables: profiles, the subject_summary columns, ADPC/ADPP and
exposure-response (cartlab.kinetics.car / exposure), on the seed case and small hand-made studies."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from cartlab.datasets import seed_case
from cartlab.errors import InputError
from cartlab.kinetics.car import (
    CarKineticsOptions,
    derive_adpc,
    derive_adpp,
    derive_car_kinetics,
    derive_car_profiles,
    derive_kinetics_summary,
)
from cartlab.kinetics.exposure import derive_exposure_response
from cartlab.model import Study, conform


def _lin_up_log_down(t, c):
    """Hand-written reference: linear when rising or to/from zero, log trapezoid when falling."""
    auc = 0.0
    for (t1, c1), (t2, c2) in zip(zip(t, c), zip(t[1:], c[1:])):
        if c2 < c1 and c2 > 0:
            auc += (c1 - c2) * (t2 - t1) / math.log(c1 / c2)
        else:
            auc += (c1 + c2) / 2 * (t2 - t1)
    return auc


def make(rows, doses=((0.0, "CAR-T"),), subject="A") -> Study:
    obs = [{"subject_id": subject, "src_file": "observations.csv", "src_row": i + 1, **r} for i, r in enumerate(rows)]
    d = [{"subject_id": subject, "day": day, "agent": agent, "dose": 1e6, "unit": "cells/kg",
          "src_file": "doses.csv", "src_row": i + 1} for i, (day, agent) in enumerate(doses)]
    return Study(study_id="t", subjects=conform(pl.DataFrame({"subject_id": [subject]}), "subjects"),
                 observations=conform(pl.DataFrame(obs, infer_schema_length=None), "observations"),
                 doses=conform(pl.DataFrame(d), "doses"))


def cc(day, value=None, text=None, lloq=50.0, param="CARCOPY"):
    r = {"day": float(day), "param": param, "value": value, "value_text": text, "lloq": lloq,
         "unit": "copies/ug" if param == "CARCOPY" else "cells/uL"}
    if text and text.startswith("<"):
        r["censor"], r["censor_limit"] = "<", float(text[1:])
    return r


def test_seed_case_summary_columns():
    s = seed_case()
    row = derive_kinetics_summary(s).row(0, named=True)
    assert row["car_cmax"] == 183945.0 and row["car_tmax"] == 14.0
    assert row["car_tlast"] >= 49.0
    k = derive_car_kinetics(s).row(0, named=True)
    assert k["method"] == "lin-up/log-down" and "lin-up/log-down" in k["reason"]
    assert "observations.csv:482" in k["evidence"]  # the paper's day-14 peak row (data row 482)
    prof = derive_car_profiles(s).filter(pl.col("time") <= 28)
    pts = prof.filter(~pl.col("blq")).sort("time")
    expected = _lin_up_log_down(pts["time"].to_list(), pts["conc"].to_list())
    assert row["car_auc_0_28"] == pytest.approx(expected, rel=1e-9)
    # day 28 has a sample (the paper's 5,084), so no interpolation is needed at the window end
    assert 28.0 in pts["time"].to_list()


def test_profile_starts_at_zero_and_drops_pre_infusion_samples():
    s = make([cc(-1, text="<50"), cc(2, 100.0), cc(7, 5000.0), cc(14, 800.0)])
    p = derive_car_profiles(s)
    assert p["time"].to_list() == [0.0, 2.0, 7.0, 14.0] and p["imputed"].to_list() == [True, False, False, False]
    off = derive_car_profiles(s, CarKineticsOptions(zero_at_infusion=False))
    assert off["time"].to_list() == [2.0, 7.0, 14.0]


def test_auc_window_interpolates_at_day_28():
    s = make([cc(0, text="<50"), cc(7, 10000.0), cc(21, 1000.0), cc(35, 100.0)])
    k = derive_kinetics_summary(s).row(0, named=True)
    # log-down between day 21 and 35: C(28) = 1000 * (100/1000)^(7/14)
    c28 = 1000.0 * (0.1 ** 0.5)
    expected = _lin_up_log_down([0, 7, 21, 28], [0.0, 10000.0, 1000.0, c28])
    assert k["car_auc_0_28"] == pytest.approx(expected, rel=1e-9)
    assert (k["car_cmax"], k["car_tmax"], k["car_tlast"]) == (10000.0, 7.0, 35.0)


def test_blq_middle_dropped_last_zero():
    s = make([cc(0, text="<50"), cc(7, 4000.0), cc(10, text="<50"), cc(14, 1000.0), cc(21, text="<50")])
    k = derive_kinetics_summary(s).row(0, named=True)
    assert k["car_tlast"] == 14.0
    expected = _lin_up_log_down([0, 7, 14, 21], [0.0, 4000.0, 1000.0, 0.0])
    assert k["car_auc_0_28"] == pytest.approx(expected, rel=1e-9)


def test_blq_after_day_28_ends_the_curve_at_zero_not_the_terminal_slope():
    # study contract: BLQ "0 after the last" quantifiable value, and car_auc_0_28 "interpolating at
    # day 28 when there is no sample that day". By hand: 0 -> 1000 over days 0-7 (linear up: 3,500),
    # 1000 -> 250 over days 7-14 (log down: 750 * 7 / ln 4 = 3,787.07), then the curve falls to the
    # 0 of the day-35 BLQ sample (linear: a log trapezoid cannot reach 0), C(28) = 250 * 7/21 =
    # 83.33, days 14-28: (250 + 83.33) / 2 * 14 = 2,333.33; total 9,620.40. (Before, the window end
    # was extrapolated by lambda.z, not estimable from two points, and the AUC was empty.)
    s = make([cc(0, text="<50"), cc(7, 1000.0), cc(14, 250.0), cc(35, text="<50")])
    k = derive_car_kinetics(s).row(0, named=True)
    expected = 3500.0 + 750.0 * 7 / math.log(4.0) + (250.0 + 250.0 / 3) / 2 * 14
    assert expected == pytest.approx(9620.40, abs=0.01)
    assert k["auc_window"] == pytest.approx(expected, rel=1e-9)
    assert "day 35" in k["auc_window_basis"]
    assert (k["cmax"], k["tmax"], k["tlast"]) == (1000.0, 7.0, 14.0)
    # with a terminal slope the later 0 still decides: days 7, 10, 14 fall by half every 3-4 days,
    # so lambda.z exists, but C(28) is still 250 * 7/21 on the line to the day-35 zero
    s = make([cc(0, text="<50"), cc(7, 1000.0), cc(10, 500.0), cc(14, 250.0), cc(35, text="<50")])
    k = derive_kinetics_summary(s).row(0, named=True)
    expected = (3500.0 + 500.0 * 3 / math.log(2.0) + 250.0 * 4 / math.log(2.0) + (250.0 + 250.0 / 3) / 2 * 14)
    assert k["car_auc_0_28"] == pytest.approx(expected, rel=1e-9)


def test_carcell_when_no_carcopy_and_time_from_last_infusion():
    s = make([cc(0, 0.0, param="CARCELL", lloq=None), cc(5, 20.0, param="CARCELL", lloq=None),
              cc(9, 50.0, param="CARCELL", lloq=None), cc(20, 5.0, param="CARCELL", lloq=None)],
             doses=((0.0, "CAR-T"), (2.0, "CAR-T")))
    k = derive_car_kinetics(s).row(0, named=True)
    assert k["param"] == "CARCELL" and k["cmax"] == 50.0 and k["tmax"] == 9.0
    # the day-0 sample lies between the infusions on days 0 and 2: time from the last infusion is
    # refused for it (review s35 B1: a sample of another dosing interval has no place on that axis)
    with pytest.raises(InputError, match="between two CAR-T infusions"):
        derive_car_profiles(s, CarKineticsOptions(time_from="last"))
    after = make([cc(5, 20.0, param="CARCELL", lloq=None), cc(9, 50.0, param="CARCELL", lloq=None),
                  cc(20, 5.0, param="CARCELL", lloq=None)], doses=((0.0, "CAR-T"), (2.0, "CAR-T")))
    last = derive_car_profiles(after, CarKineticsOptions(time_from="last"))
    assert last.filter(pl.col("day") == 9.0)["time"][0] == 7.0  # 9 - 2
    assert last.filter(pl.col("imputed"))["day"].to_list() == [2.0]  # the 0 sits at the last infusion
    with pytest.raises(ValueError):
        CarKineticsOptions(param="IL6")


def test_adpc_and_adpp():
    s = seed_case()
    adpc = derive_adpc(s)
    assert {"AFRLT", "ARRLT", "NFRLT", "BLQFL", "EVIDENCE"} <= set(adpc.columns)
    d14 = adpc.filter(pl.col("ADY") == 14.0).row(0, named=True)
    # split dose days 0 and 2: day 14 is 14 days after the first and 12 after the most recent
    assert (d14["AVAL"], d14["AFRLT"], d14["ARRLT"]) == (183945.0, 14.0, 12.0)
    assert adpc.filter(pl.col("DTYPE") == "IMPUTED").height == 1
    adpp = derive_adpp(s)
    cmax = adpp.filter(pl.col("PPTESTCD") == "CMAX").row(0, named=True)
    assert cmax["AVAL"] == 183945.0 and cmax["METHOD"] == "lin-up/log-down"
    auc = adpp.filter(pl.col("PPTESTCD") == "AUCINT").row(0, named=True)
    assert (auc["PPSTINT"], auc["PPENINT"]) == ("0", "28")


def test_exposure_response_statistics():
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(3)
    n = 60
    resp = rng.random(n) < 0.5
    cmax = 10 ** (4 + 0.8 * resp + rng.normal(0, 0.5, n))
    summary = pl.DataFrame({
        "subject_id": [f"S{i}" for i in range(n)], "car_cmax": cmax, "car_auc_0_28": cmax * 9,
        "best_response": np.where(resp, "CR", "NR"), "crs_grade_astct": np.where(cmax > 3e4, 3, 1),
    })
    er = derive_exposure_response(summary)
    r = er.filter((pl.col("exposure") == "car_cmax") & (pl.col("outcome") == "responder")).row(0, named=True)
    u = mannwhitneyu(cmax[resp], cmax[~resp], alternative="two-sided")
    assert r["mann_whitney_u"] == pytest.approx(u.statistic) and r["mann_whitney_p"] == pytest.approx(u.pvalue)
    assert r["n"] == n and r["n_event"] == int(resp.sum())
    assert r["or_per_10fold"] > 1 and r["or_ci_low"] < r["or_per_10fold"] < r["or_ci_high"]
    sep = er.filter((pl.col("exposure") == "car_cmax") & (pl.col("outcome") == "crs_grade_ge3")).row(0, named=True)
    assert sep["or_per_10fold"] is None and "not fitted" in sep["logit_note"]  # perfect separation
    with pytest.raises(ValueError, match="unknown outcome"):
        derive_exposure_response(summary, outcomes=("death",))


def _cli(*args):
    """``cartlab ARGS`` in-process (typer's CliRunner), read like a subprocess result: exit code, stdout,
    stderr (session 42: no interpreter start-up per call; these tests are about the outputs, not the
    process). An exception other than the command's exit (a traceback in the real process) fails."""
    from types import SimpleNamespace

    from typer.testing import CliRunner

    from cartlab.cli import app

    res = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return SimpleNamespace(returncode=res.exit_code, stdout=res.stdout, stderr=res.stderr)


def test_cli_nca_reproduces_pknca_on_theoph(tmp_path):
    from pathlib import Path

    run = _cli
    fx = Path(__file__).parent / "fixtures" / "nca"
    src = fx / "theoph_input.csv" if (fx / "theoph_input.csv").exists() else \
        Path(__file__).resolve().parents[2] / "shared" / "conformance" / "nca" / "theoph_input.csv"
    ref = pl.read_csv(src.with_name("theoph_pknca_reference.csv"))
    for method, suffix in (("lin-up/log-down", "_linuplogdown"), ("linear", "_linear")):
        out = tmp_path / f"nca{suffix}.csv"
        r = run("nca", src, "--subject", "Subject", "--time", "Time", "--conc", "conc", "--method", method, "--out", out)
        assert r.returncode == 0, r.stderr
        got = pl.read_csv(out).sort("Subject")
        for col in ("cmax", "tmax", "tlast", "clast.obs", "lambda.z", "half.life", "adj.r.squared", "lambda.z.n.points"):
            np.testing.assert_allclose(got[col].to_numpy(), ref[col].to_numpy(), rtol=1e-9, err_msg=col)
        for col in ("auclast", "aucinf.obs"):
            np.testing.assert_allclose(got[col].to_numpy(), ref[col + suffix].to_numpy(), rtol=1e-9, err_msg=col)
    bad = run("nca", src, "--subject", "Nope", "--time", "Time", "--conc", "conc", "--out", tmp_path / "x.csv")
    assert bad.returncode == 2 and "Nope" in bad.stderr and not (tmp_path / "x.csv").exists()


def test_cli_analyze_and_explain_kinetics(seed_copy, tmp_path):
    import csv

    run = _cli
    out = tmp_path / "a"
    assert run("analyze", seed_copy, "--out", out).returncode == 0
    with open(out / "subject_summary.csv") as fh:
        row = next(csv.DictReader(fh))
    assert (row["car_cmax"], row["car_tmax"]) == ("183945.0", "14.0") and float(row["car_auc_0_28"]) > 0
    for name in ("car_kinetics", "adpc", "adpp", "exposure_response"):
        assert (out / f"{name}.csv").is_file(), name
    db = tmp_path / "x.duckdb"
    assert run("import", seed_copy, "--store", db).returncode == 0
    e = run("explain", "CD7-AML-001", "--what", "kinetics", "--store", db)
    assert e.returncode == 0, e.stderr
    assert "Cmax 183,945" in e.stdout and "lin-up/log-down" in e.stdout and "observations.csv:482" in e.stdout
    assert "reconstructed, not measured" in e.stdout


# ---------------------------------------------------------------------------------------------
# issue 14: layering and rooms of the kinetics package


def test_kinetics_engines_import_no_report_cli_or_app():
    """Engines never import cartlab.report, cartlab.cli or cartlab.app: run every kinetics engine
    on the seed case in a fresh interpreter and list the modules it loaded."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from cartlab.datasets import seed_case\n"
        "from cartlab.kinetics import derive_adpc, derive_adpp, derive_car_kinetics, derive_nca\n"
        "from cartlab.kinetics.exposure import derive_exposure_response, derive_exposure_response_frame\n"
        "from cartlab.kinetics.stein import SteinModel\n"
        "s = seed_case()\n"
        "derive_car_kinetics(s); derive_adpc(s); derive_adpp(s); derive_exposure_response_frame(s)\n"
        "SteinModel().fit(s).plot()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[:2] in (['cartlab', 'report'], ['cartlab', 'cli'],"
        " ['cartlab', 'app'])))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_one_car_t_agent_rule_and_no_kinetics_module_over_800_lines():
    """The CAR-T dose rule has one definition (the figures use the kinetics one), and no module of
    the kinetics package is over ~800 lines (issue 14: stein.py had 2,156, nca.py 1,319)."""
    from pathlib import Path

    import cartlab.kinetics
    import cartlab.report.figures
    from cartlab.kinetics.agents import is_car_t_agent

    assert cartlab.report.figures.is_car_t_agent is is_car_t_agent
    assert [is_car_t_agent(a) for a in ("CAR-T", "CD7 CAR-T", "car_t", "tisagenlecleucel",
                                        "axicabtagene ciloleucel", "fludarabine", "", None)] == [True] * 5 + [False] * 3
    root = Path(cartlab.kinetics.__file__).parent
    sizes = {str(p.relative_to(root)): len(p.read_text(encoding="utf-8").splitlines()) for p in root.rglob("*.py")}
    assert max(sizes.values()) <= 800, sizes
