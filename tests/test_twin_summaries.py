"""cartlab.twin.summaries: fast per-patient summaries equal the engines; accumulators merge exactly.

Hand values are worked out in the comments; the engine comparison uses ``cartlab.analyze`` on the
written folder as the independent implementation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from cartlab.twin.summaries import (
    CATEGORIES,
    Accumulator,
    car_kinetics,
    crs_grade,
    hist_median,
    icaht_early,
    summarise,
)


def _obs(n=1, **kw):
    from cartlab.twin.observe import Observed

    days = np.arange(-7, 41, dtype=float)
    base = {"index": np.arange(n), "seed": 0, "times": {}, "values": {}, "censored": {}, "lloq": {}, "clinic": {},
                "clinic_days": days, "last_day": np.full(n, 40.0), "hsct_day": np.full(n, np.nan),
                "relapse_day": np.full(n, np.nan), "relapse_cd7_pct": np.full(n, np.nan),
                "relapse_cd7_negative": np.zeros(n, bool)}
    base.update(kw)
    return Observed(**base)


def test_car_kinetics_by_hand():
    t = np.array([-1.0, 1.0, 4.0, 7.0, 28.0])
    v = np.array([[np.nan, 100.0, 1000.0, 500.0, np.nan]])
    blq = np.array([[True, False, False, False, True]])
    k = car_kinetics(t, v, blq)
    # 0 imputed at day 0; 0-1 linear 50; 1-4 linear 1650; 4-7 log-down 3*(500-1000)/ln(0.5) = 2164.043;
    # 7-28: the day-28 BLQ after the last quantifiable sample is 0, linear (500+0)/2*21 = 5250
    assert k["cmax"][0] == 1000.0 and k["tmax"][0] == 4.0 and k["tlast"][0] == 7.0
    assert k["auc"][0] == pytest.approx(50 + 1650 + 3 * (-500) / math.log(0.5) + 5250, rel=1e-12)


def test_car_auc_interpolates_day_28_over_a_dropped_blq():
    t = np.array([21.0, 28.0, 35.0])
    v = np.array([[800.0, np.nan, 200.0]])
    blq = np.array([[False, True, False]])
    k = car_kinetics(t, v, blq)
    # 0 at day 0 -> 800 at 21 linear: 8400; day 28 BLQ between quantifiable values is dropped, the level
    # there is log-interpolated 800 -> 200 over 14 days: c28 = 800*(1/4)^(1/2) = 400; area log 7*(400-800)/ln(0.5)
    assert k["auc"][0] == pytest.approx(8400 + 7 * (-400) / math.log(0.5), rel=1e-12)


def test_crs_grade_by_hand():
    days = np.arange(-7, 41, dtype=float)
    t = np.array([2.0, 2.5, 3.0, 5.0, 6.0])
    temp = np.array([[38.5, 37.0, 37.0, 37.0, 38.2], [38.5, 37.0, 37.0, 37.0, 37.0]])
    sbp = np.array([[120.0, 120.0, 85.0, 85.0, 80.0], [120.0, 120.0, 85.0, 85.0, 120.0]])
    toci = np.zeros((2, days.size), bool)
    toci[:, days == 4] = True
    vaso = np.zeros((2, days.size), bool)
    vaso[0, days == 6] = True
    obs = _obs(n=2, times={"TEMP": t, "SYSBP": t}, values={"TEMP": temp, "SYSBP": sbp},
               clinic={"tocilizumab": toci, "vasopressor": vaso})
    # patient 0: day 2 fever -> 1; day 3 SBP 85 without fever and before tocilizumab -> 0; day 5 SBP 85
    # after tocilizumab (fever waived) -> 2; day 6 fever + vasopressor -> 3.  patient 1: max 2 (day 5)
    assert crs_grade(obs).tolist() == [3, 2]


def test_icaht_early_counts_non_stable_recovery():
    t = np.arange(0, 31, dtype=float)
    anc = np.full((2, t.size), 2.0)
    anc[0, 0:7] = 0.3      # 7 days <= 0.5
    anc[0, 7:9] = 0.8      # 2-day recovery (< 3 days: non-stable, counted)
    anc[0, 9:15] = 0.3     # 6 days -> 7 + 2 + 6 = 15 >= 14: grade 3 (13 without the recovery: grade 2)
    anc[1, 0:7] = 0.3
    anc[1, 7:10] = 0.8     # 3-day recovery is stable: 7 + 5 = 12 -> grade 2
    anc[1, 10:15] = 0.3
    obs = _obs(n=2, times={"NEUT": t}, values={"NEUT": anc})
    assert icaht_early(obs).tolist() == [3, 2]


def test_icaht_interpolates_between_measurements():
    t = np.array([0.0, 10.0, 20.0, 30.0])
    anc = np.array([[1.0, 0.0, 1.0, 2.0]])
    # daily linear interpolation: <= 0.5 on days 5..15 (11 days) -> grade 2; <= 0.1 on days 9..11 (3 days)
    assert icaht_early(_obs(times={"NEUT": t}, values={"NEUT": anc})).tolist() == [2]


def test_thresholds_come_from_the_criteria_tables(monkeypatch):
    """The fast summaries grade by the criteria tables (one rule compiler), not by constants: a table
    default changed (here the ASTCT fever threshold, the ICAHT stable-recovery days) changes the grade."""
    from cartlab.twin import summaries

    t = np.array([2.0])
    obs = _obs(times={"TEMP": t}, values={"TEMP": np.array([[38.5]])})
    assert crs_grade(obs).tolist() == [1]           # 38.5 >= 38.0 (ASTCT 2019 Table 1)
    table, opts = summaries._rules("crs")
    monkeypatch.setattr(summaries, "_rules", lambda kind: (table, {**opts, "fever_threshold_c": 39.0}))
    assert crs_grade(obs).tolist() == [0]           # 38.5 < 39.0: no fever, no CRS
    monkeypatch.undo()
    # patient 0 of test_icaht_early_counts_non_stable_recovery: 7 + 2 (non-stable) + 6 = 15 days -> grade 3;
    # with stable_recovery_days 2 the 2-day recovery is stable: 7 + 6 = 13 days -> grade 2
    tn = np.arange(0, 31, dtype=float)
    anc = np.full((1, tn.size), 2.0)
    anc[0, 0:7], anc[0, 7:9], anc[0, 9:15] = 0.3, 0.8, 0.3
    neut = _obs(times={"NEUT": tn}, values={"NEUT": anc})
    assert icaht_early(neut).tolist() == [3]
    table, opts = summaries._rules("icaht")
    monkeypatch.setattr(summaries, "_rules", lambda kind: (table, {**opts, "stable_recovery_days": 2}))
    assert icaht_early(neut).tolist() == [2]


@pytest.mark.parametrize("kind, change", [("crs", {"age_adjusted_sbp": True}), ("icaht", {"duration": "longest_run"}),
                                          ("eln", {"missing_pb_blasts": "assume_absent"})])
def test_a_default_the_fast_summaries_do_not_implement_is_refused(monkeypatch, kind, change):
    from cartlab.errors import InputError
    from cartlab.twin import summaries

    table, opts = summaries._rules(kind)
    monkeypatch.setattr(summaries, "_rules", lambda k: (table, {**opts, **change}))
    fn = {"crs": crs_grade, "icaht": icaht_early, "eln": summaries.eln_best_response}[kind]
    t = np.array([-3.0, 2.0])
    obs = _obs(times={p: t for p in ("TEMP", "NEUT", "BMBLAST")},
               values={p: np.array([[1.0, 1.0]]) for p in ("TEMP", "NEUT", "BMBLAST")})
    with pytest.raises(InputError, match="not implemented by the fast summaries"):
        fn(obs)


def test_accumulator_merge_is_exact_and_order_free_in_counts():
    rng = np.random.default_rng(0)
    n = 50
    s = {"index": np.arange(n), "response": rng.integers(0, 7, n), "crs_grade": rng.integers(0, 4, n),
         "icaht_early": rng.integers(-1, 5, n), "relapse": rng.random(n) < 0.2,
         "cd7neg_relapse": rng.random(n) < 0.1, "hsct": rng.random(n) < 0.5,
         "cmax": 10 ** rng.uniform(2, 6, n), "tmax": rng.integers(7, 21, n).astype(float),
         "auc28": 10 ** rng.uniform(3, 7, n)}
    whole = Accumulator()
    whole.add("a", s)
    parts = Accumulator()
    for lo, hi in ((0, 7), (7, 30), (30, 50)):
        p = Accumulator()
        p.add("a", {k: v[lo:hi] for k, v in s.items()})
        parts.merge(p)
    assert parts.counts == whole.counts
    assert all(np.array_equal(parts.hists["a"][k], whole.hists["a"][k]) for k in whole.hists["a"])
    assert whole.counts["a"]["crs_ge3"] == int((s["crs_grade"] >= 3).sum())
    back = Accumulator.from_arrays(whole.to_arrays())
    assert back.counts == whole.counts


def test_hist_median_within_half_a_bin():
    acc = Accumulator()
    x = np.array([1e3, 2e3, 5e4, 6e4, 1e5])
    acc.add("a", {"index": np.arange(5), "response": np.zeros(5, int), "crs_grade": np.zeros(5, int),
                  "icaht_early": np.zeros(5, int), "relapse": np.zeros(5, bool), "cd7neg_relapse": np.zeros(5, bool),
                  "hsct": np.zeros(5, bool), "cmax": x, "tmax": np.array([10.0, 12, 12, 14, 20]), "auc28": x})
    # the median is 5e4: log10 4.69897 lies in the bin [4.69, 4.70), centre 4.695 -> within 0.005 dex
    assert abs(math.log10(hist_median(acc.hists["a"]["cmax"])) - math.log10(5e4)) <= 0.0051
    assert hist_median(acc.hists["a"]["tmax"], log=False) == 12.0


def test_fast_summaries_equal_the_engines(tmp_path):
    """On 80 simulated patients (90-day courses): Cmax, Tmax, AUC0-28, Tlast, ASTCT CRS grade,
    early ICAHT, ELN best response and its day equal cartlab.analyze's subject_summary."""
    import polars as pl

    from cartlab.analyze import Analysis
    from cartlab.io import read_study
    from cartlab.protocol.schema import load_protocol
    from cartlab.twin.observe import study_tables, write_tables
    from cartlab.twin.trial import TrialConfig, simulate_observed

    cfg = TrialConfig(n=80, seed=21)
    obs, ev = simulate_observed(cfg, np.arange(80), cfg.arms[0])
    write_tables(study_tables(obs, ev, load_protocol("nct04762485").lymphodepletion), tmp_path / "s")
    eng = Analysis(read_study(tmp_path / "s")).subject_summary()
    fast = summarise(obs)
    assert eng["subject_id"].to_list() == [f"SIM-{i:07d}" for i in range(80)]
    pairs = {"car_cmax": fast["cmax"], "car_tmax": fast["tmax"], "car_auc_0_28": fast["auc28"],
             "car_tlast": fast["tlast"], "crs_grade_astct": fast["crs_grade"],
             "icaht_early_grade": fast["icaht_early"], "best_response_day": fast["response_day"]}
    for col, mine in pairs.items():
        np.testing.assert_allclose(eng[col].cast(pl.Float64).to_numpy(), np.asarray(mine, float), rtol=1e-9,
                                   err_msg=col)
    assert eng["best_response"].to_list() == [CATEGORIES[i] for i in fast["response"]]
    # the cohort is not degenerate: several grades and categories occur
    assert len(set(fast["crs_grade"].tolist())) >= 3 and len(set(fast["response"].tolist())) >= 3
