"""cartlab.twin.observe: simulated patients as study folders (issue 16).

Expected values are worked out by hand from the schedule / noise definitions (comments say how).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cartlab.twin.observe import (
    Observed,
    _noisy,
    event_rows,
    intervention_rows,
    load_schedule,
    observation_rows,
    patient_rng,
    study_tables,
    write_tables,
)


def _obs(n=1, **kw) -> Observed:
    days = np.arange(-7, 31, dtype=float)
    base = {"index": np.arange(n), "seed": 3, "times": {}, "values": {}, "censored": {}, "lloq": {},
                "clinic": {}, "clinic_days": days, "last_day": np.full(n, 30.0), "hsct_day": np.full(n, np.nan),
                "relapse_day": np.full(n, np.nan), "relapse_cd7_pct": np.full(n, np.nan),
                "relapse_cd7_negative": np.zeros(n, bool)}
    base.update(kw)
    return Observed(**base)


def test_noise_models_by_hand():
    # lognormal with z = 0 returns the latent value; z = 1 multiplies by exp(sd)
    v, c = _noisy("CARCOPY", np.array([[1000.0, 40.0]]), np.array([[1.0, 0.0]]), {"kind": "lognormal", "sd": 0.56, "lloq": 50})
    assert v[0, 0] == pytest.approx(1000 * np.exp(0.56))
    # 40 copies/ug is below the LLOQ of 50: censored, no value
    assert c.tolist() == [[False, True]] and np.isnan(v[0, 1])
    # 500-cell differential: 20% latent, z = 0 -> 100 blasts of 500 = 20.0%; z = 1 -> 100 + sqrt(500*.2*.8)=8.94 -> 109 -> 21.8%
    v, _ = _noisy("BMBLAST", np.array([[20.0, 20.0]]), np.array([[0.0, 1.0]]), {"kind": "binomial", "cells": 500, "decimals": 1})
    assert v.tolist() == [[20.0, 21.8]]
    # a real 0: no blasts in a 100-cell differential stays 0 (ELN needs PBBLAST == 0)
    v, _ = _noisy("PBBLAST", np.array([[0.0]]), np.array([[2.5]]), {"kind": "binomial", "cells": 100})
    assert v.tolist() == [[0.0]]


def test_patient_streams_do_not_depend_on_the_batch():
    a = patient_rng(7, 12, 2).standard_normal(3)
    b = patient_rng(7, 12, 2).standard_normal(3)
    c = patient_rng(7, 13, 2).standard_normal(3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_clinic_log_becomes_interventions():
    days = np.arange(-7, 31, dtype=float)
    vaso = np.zeros((1, days.size), bool)
    vaso[0, np.isin(days, [3, 4, 5, 8])] = True          # two runs: days 3-5 and day 8
    toci = np.zeros_like(vaso)
    toci[0, days == 4] = True
    plt = np.zeros_like(vaso)
    plt[0, np.isin(days, [6, 9])] = True
    iv = intervention_rows(_obs(clinic={"vasopressor": vaso, "tocilizumab": toci, "platelet_transfusion": plt}))
    v = iv.filter(pl.col("category") == "vasopressor")
    assert v.select("start_day", "end_day").rows() == [(3.0, 5.0), (8.0, 8.0)]
    assert set(v["agent"]) == {"norepinephrine"} and set(v["indication"]) == {"CRS"}
    assert iv.filter(pl.col("category") == "tocilizumab")["start_day"].to_list() == [4.0]
    assert iv.filter(pl.col("category") == "platelet_transfusion")["start_day"].to_list() == [6.0, 9.0]
    assert set(iv["source"]) == {"simulated"}
    assert iv["source_note"][0] == "cartlab.twin v1, seed 3, patient 0"


def test_relapse_event_with_cd7_status():
    from cartlab.twin.observe import _relapse

    sched = load_schedule()
    t = sched.times["BMBLAST"]                     # -7, 17, 28, 60, 90
    bm = np.array([[20.0, 1.0, 2.0, 12.0, 30.0], [20.0, 1.0, 8.0, 9.0, 9.0], [20.0, 12.0, 15.0, 15.0, 15.0]])
    cd7 = np.array([[95.0, np.nan, 90.0, 10.0, 5.0], [95.0, 90.0, 80.0, 80.0, 80.0], [95.0] * 5])
    # the response day (first CR/CRh/CRi/MLFS marrow) is now an input: the ELN categories need the counts
    day, pct, _ = _relapse({"BMBLAST": bm, "TGTBLAST": cd7}, sched, np.array([17.0, 17.0, np.nan]))
    # patient 0: remission on day 17 (< 5%), first marrow >= 5% afterwards is day 60, CD7 on 10% of blasts
    # patient 1: remission day 17, relapse day 28 (8%), CD7 80%; patient 2: never in remission -> no relapse
    assert t.tolist() == [-7, 17, 28, 60, 90]
    assert day[:2].tolist() == [60.0, 28.0] and np.isnan(day[2])
    assert pct[:2].tolist() == [10.0, 80.0]
    ev = event_rows(_obs(n=2, relapse_day=day[:2], relapse_cd7_pct=pct[:2],
                         relapse_cd7_negative=np.array([True, False]), hsct_day=np.array([np.nan, 45.0])))
    assert ev.select("subject_id", "day", "event").rows() == [
        ("SIM-0000000", 60.0, "relapse"), ("SIM-0000001", 28.0, "relapse"), ("SIM-0000001", 45.0, "allo_hsct")]
    assert ev["detail"][0].startswith("CD7-negative") and ev["detail"][1].startswith("CD7-positive")


def test_censored_rows_are_written_as_below_lloq():
    t = np.array([-1.0, 7.0])
    obs = _obs(times={"CARCOPY": t}, values={"CARCOPY": np.array([[np.nan, 1234.5]])},
               censored={"CARCOPY": np.array([[True, False]])}, lloq={"CARCOPY": 50.0})
    rows = observation_rows(obs)
    assert rows.select("day", "value", "value_text", "lloq", "unit", "specimen").rows() == [
        (-1.0, None, "<50", 50.0, "copies/ug gDNA", "PB"), (7.0, 1234.5, None, 50.0, "copies/ug gDNA", "PB")]


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory):
    from cartlab.protocol.schema import load_protocol
    from cartlab.twin.trial import TrialConfig, simulate_observed

    cfg = TrialConfig(n=8, seed=11, course_days=35)
    obs, ev = simulate_observed(cfg, np.arange(8), cfg.arms[0])
    out = tmp_path_factory.mktemp("twin") / "study"
    write_tables(study_tables(obs, ev, load_protocol("nct04762485").lymphodepletion), out)
    return out, obs


def test_folder_reads_back_valid_with_canonical_units(small_folder):
    from cartlab.io import read_study, validate_study
    from cartlab.io.dictionary import load_dictionary

    out, _ = small_folder
    assert validate_study(out) == []
    study = read_study(out)
    assert study.subjects.height == 8
    d = load_dictionary()
    units = study.observations.select("param", "unit").unique().rows()
    assert all(u == d[p].unit for p, u in units)
    for name, df in study.tables().items():
        if df.height:
            assert set(df["source"]) == {"simulated"}, name
    note = study.subjects.filter(pl.col("subject_id") == "SIM-0000003")["source_note"][0]
    assert note == "cartlab.twin v1, seed 11, patient 3"
    # the pre-infusion qPCR (day -1) cannot find CAR-T that has not been given: below the LLOQ
    pre = study.observations.filter((pl.col("param") == "CARCOPY") & (pl.col("day") == -1))
    assert pre.height == 8 and pre["value"].null_count() == 8 and set(pre["value_text"]) == {"<50"}
    # every simulated subject carries the protocol's lymphodepletion and its CAR-T infusions
    doses = study.doses
    assert set(doses["agent"]) >= {"fludarabine", "cyclophosphamide", "CAR-T"}
    assert study.observations["day"].max() <= 35
    # counts are written as numbers a reader expects: no negative zero (e.g. "-0.0" % marrow blasts)
    text = (out / "observations.csv").read_text()
    assert ",-0.0," not in text and ",-0," not in text


def test_simulate_200_then_analyze_grades_everyone(tmp_path):
    """Acceptance (issue 16): simulate --n 200, then analyze: no NE / empty grade for want of data."""
    from typer.testing import CliRunner

    from cartlab.cli import app

    out = tmp_path / "sim"
    r = CliRunner().invoke(app, ["simulate", "--n", "200", "--seed", "4", "--chunk", "100", "--out", str(out)])
    assert r.exit_code == 0, r.output
    res = CliRunner().invoke(app, ["analyze", str(out / "study"), "--out", str(tmp_path / "an")])
    assert res.exit_code == 0, res.output
    s = pl.read_csv(tmp_path / "an" / "subject_summary.csv", infer_schema_length=None)
    assert s.height == 200
    for col in ("crs_grade_astct", "icans_grade_astct", "icaht_early_grade", "best_response", "car_cmax"):
        assert s[col].null_count() == 0, col
    assert (s["best_response"] != "NE").all()
    import json

    analysis = json.loads((tmp_path / "an" / "analysis.json").read_text())
    assert analysis.get("skipped", []) == []
