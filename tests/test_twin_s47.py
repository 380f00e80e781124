"""Session 47 (review of the digital twin): recorded tocilizumab counts toward the clinic rule's limit in a
forecast (A1); early ICAHT of a short simulated follow-up graded as the canonical engine grades it (A2);
CD7 status at relapse by the response engine's window, unknown counted as unknown (B3, B4); afebrile
hypotension does not start the vasopressor count (B5); a censored baseline ("<1.5") read by option
baseline_blq (B6); a split with a zero fraction refused (B7).

Expected values are worked out by hand in the comments from the inputs written here and the shipped
tables (twin/criteria/clinic_v1.yaml: toci_max_doses 2, vasopressor_after_readings 2, fever 38.0 degC,
SBP < 90 mmHg; grading/criteria/icaht_2023.yaml; response option antigen_forward_days 7, molecular
cut-off 30%), or compared with the canonical engines (cartlab.analyze) on the written study folder.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from cartlab.errors import InputError

# ---------------------------------------------------------------------------------------------
# A1: the recorded tocilizumab before the forecast day counts toward toci_max_doses


@pytest.fixture(scope="module")
def toci_patient():
    """Held-out virtual patient 15 of seed 11: with the clinic rule from day 0 it gets tocilizumab on days
    5 and 6 (toci_max_doses = 2 reached), steroids and vasopressors later."""
    from cartlab.twin.calibrate import virtual_patients
    from cartlab.twin.clinic import load_clinic
    from cartlab.twin.model import simulate

    theta, base, ev, _ = virtual_patients(1, seed=11, start=15)
    t = np.arange(-7.0, 40.25, 0.25)
    truth = simulate(theta, base, ev, t, clinic=load_clinic(), keep_states=False)
    return theta, base, ev, t, truth


def _finite(a):
    a = np.asarray(a, float).ravel()
    return sorted(a[np.isfinite(a)].tolist())


def test_a1_recorded_doses_count_toward_the_rule_s_limit(toci_patient):
    from cartlab.twin.clinic import load_clinic
    from cartlab.twin.model import simulate

    theta, base, ev, t, truth = toci_patient
    assert _finite(truth.toci_times) == [5.0, 6.0]
    # a forecast from day 7 knowing the two doses given (recorded) on days 5 and 6: toci_max_doses = 2 is
    # per patient, so the rule gives none after day 7 (before session 47 it gave two more, on days 8 and 9:
    # four doses in all)
    rec = dataclasses.replace(ev, toci_day=np.array([[5.0, 6.0]]))
    fc = simulate(theta, base, rec, t, clinic=load_clinic(active_from_day=7.0), keep_states=False)
    assert _finite(fc.toci_times) == [5.0, 6.0]
    # and the recorded history replays the truth: the same steroid and vasopressor days after day 7
    days = truth.clinic_days
    for k in ("steroid", "vasopressor"):
        after = days >= 7
        assert (fc.clinic[k][0, after] == truth.clinic[k][0, after]).all(), k
    # one recorded dose (day 5): one more at most
    one = simulate(theta, base, dataclasses.replace(ev, toci_day=np.array([[5.0]])), t,
                   clinic=load_clinic(active_from_day=7.0), keep_states=False)
    got = _finite(one.toci_times)
    assert got[0] == 5.0 and len(got) <= 2


def test_a1_reference_solver_counts_them_too(toci_patient):
    """The scipy reference course (python_course with the rule in Python) runs the same event code."""
    from cartlab.twin.clinic import load_clinic
    from cartlab.twin.solver import python_course

    theta, base, ev, t, _ = toci_patient
    rec = dataclasses.replace(ev, toci_day=np.array([[5.0, 6.0]]))
    _, cl = python_course(theta[0], base, rec, t, policy=load_clinic(active_from_day=7.0), method="LSODA",
                          rtol=1e-6, return_clinic=True)
    days = np.arange(-7, 41)
    # the clinic array marks the recorded doses of integer days and no rule dose (limit reached)
    assert days[cl[:, 2] > 0.5].tolist() == [5, 6]


# ---------------------------------------------------------------------------------------------
# A2: early ICAHT with a follow-up shorter than the window


def _anc_obs(anc_by_patient, last_day):
    from cartlab.twin.observe import Observed

    t = np.arange(-7.0, 41.0)
    v = np.array(anc_by_patient, float)
    n = v.shape[0]
    v = np.where(t[None, :] <= np.asarray(last_day, float)[:, None], v, np.nan)
    return Observed(index=np.arange(n), seed=0, times={"NEUT": t}, values={"NEUT": v},
                    censored={"NEUT": np.zeros_like(v, bool)}, lloq={}, clinic={}, clinic_days=t,
                    last_day=np.asarray(last_day, float), hsct_day=np.full(n, np.nan), relapse_day=np.full(n, np.nan),
                    relapse_cd7_pct=np.full(n, np.nan), relapse_cd7_negative=np.zeros(n, bool))


def test_a2_short_follow_up_is_not_never_above():
    from cartlab.twin.summaries import icaht_early

    t = np.arange(-7.0, 41.0)
    low = np.full(t.size, 0.3)                      # ANC 0.3 x10^9/L: <= 0.5, > 0.1
    late = np.where(t >= 5, 0.3, np.nan)            # first ANC on day 5
    g = icaht_early(_anc_obs([low, low, late], [20.0, 40.0, 40.0]))
    # 0: follow-up ends day 20: days 21-30 unknown, so "never above 0.5 in days 0-30" is not established;
    #    graded by the days observed: ANC <= 0.5 on days 0-20 = 21 days >= 14 -> grade 3 (rule
    #    icaht.early.g3_anc500_ge14); it was 4 before session 47 ("never above" on the days there were)
    # 1: days 0-30 all known and <= 0.5 -> never above 0.5 -> grade 4
    # 2: data from day 5 > never_above_data_from_day 3: not "never above"; days 5-30 = 26 days -> grade 3
    assert g.tolist() == [3, 4, 3]


def test_a2_fast_icaht_equals_the_canonical_engine_on_a_12_day_study(tmp_path):
    from cartlab.analyze import Analysis
    from cartlab.io import read_study
    from cartlab.protocol.schema import load_protocol
    from cartlab.twin.observe import study_tables, write_tables
    from cartlab.twin.summaries import icaht_early
    from cartlab.twin.trial import TrialConfig, simulate_observed

    n = 20
    cfg = TrialConfig(n=n, seed=0, course_days=12.0)   # cartlab simulate --n 20 --days 12
    obs, ev = simulate_observed(cfg, np.arange(n), cfg.arms[0])
    write_tables(study_tables(obs, ev, load_protocol("nct04762485").lymphodepletion), tmp_path / "s")
    eng = Analysis(read_study(tmp_path / "s")).table("icaht").sort("subject_id")
    fast = icaht_early(obs)
    assert eng["icaht_early_grade"].to_list() == fast.tolist()
    # before session 47, 12 of these 20 were grade 4 in the fast summaries ("never above" on days 0-12)
    # against 3 in the engine (13 observed days; up to 4 with days 13-30 unknown)
    assert set(fast.tolist()) == {3} and (eng["icaht_early_grade_max"] == 4).all()


# ---------------------------------------------------------------------------------------------
# B3 / B4: CD7 status at relapse


def test_b4_cd7_at_relapse_uses_the_engine_s_window():
    from cartlab.twin.observe import load_schedule, relapse_cd7
    from cartlab.twin.summaries import CATEGORIES

    sched = load_schedule()
    assert sched.times["TGTBLAST"].tolist() == [-7, 17, 28, 60, 90]
    tgt = np.array([[95.0, 90.0, 80.0, 10.0, 5.0]] * 5)
    relapse = np.array([47.0, 28.0, 55.0, 55.0, 55.0])
    hsct = np.array([np.nan, np.nan, np.nan, 58.0, np.nan])
    mdays = np.array([17.0, 28.0, 60.0, 90.0])
    nr, cr = CATEGORIES.index("NR"), CATEGORIES.index("CR")
    cats = np.full((5, 4), nr)
    cats[4, 2] = cr                                  # patient 4: CR again on day 60
    pct, day = relapse_cd7({"TGTBLAST": tgt}, sched, relapse, hsct, (mdays, cats, np.ones((5, 4), bool)))
    # 0: relapse day 47, window 47-54 (7 days, response.antigen_forward_days): no CD7 result; the day-60
    #    marrow (10%) is not this relapse's phenotype -> unknown (it was 10%, CD7-negative, before)
    # 1: relapse day 28: that day's marrow 80%
    # 2: relapse day 55, window 55-62: the day-60 marrow, 10%
    # 3: relapse day 55, allo-HSCT day 58: the search stops on day 57 -> unknown
    # 4: relapse day 55, the next response (CR) on day 60: the search stops on day 59 -> unknown
    assert np.isnan(pct[0]) and pct[1] == 80.0 and pct[2] == 10.0 and np.isnan(pct[3]) and np.isnan(pct[4])
    assert day[1] == 28.0 and day[2] == 60.0


def test_b3_unknown_cd7_relapses_are_counted_and_give_a_range():
    from cartlab.twin.summaries import Accumulator
    from cartlab.twin.trial import TrialConfig, summarise_acc

    n = 10
    s = {"index": np.arange(n), "response": np.zeros(n, int), "crs_grade": np.zeros(n, int),
         "icaht_early": np.zeros(n, int), "relapse": np.arange(n) < 4, "cd7neg_relapse": np.arange(n) == 0,
         "cd7unknown_relapse": (np.arange(n) >= 1) & (np.arange(n) < 3), "hsct": np.zeros(n, bool)}
    acc = Accumulator()
    arm = TrialConfig(n=n).arms[0]
    acc.add(arm.label, s)
    r = summarise_acc(TrialConfig(n=n), acc)["arms"][0]
    # 4 relapses: 1 CD7-negative, 2 without a CD7 result, 1 CD7-positive: rate 1/10, with the unknowns
    # named (2), and the range 1/10 to (1 + 2)/10
    cd7 = r["rates"]["cd7neg_relapse"]
    assert (cd7["k"], cd7["n"], cd7["unknown"], cd7["range"]) == (1, 10, 2, [0.1, 0.3])
    assert r["cd7_unknown_relapses"] == 2


def test_b3_b4_cd7_status_equals_the_engine_s_relapse_antigen(tmp_path):
    """70 simulated patients (90 days, seed 0): patients 17 and 69 relapse by circulating blasts; before
    session 47, 17 read a marrow 9 days later (CD7-negative) where the engine has no result in its 7-day
    window (not assessed), and 69 was unknown where the engine reads that day's marrow."""
    from cartlab.analyze import Analysis
    from cartlab.io import read_study
    from cartlab.protocol.schema import load_protocol
    from cartlab.twin.observe import study_tables, subject_ids, write_tables
    from cartlab.twin.summaries import summarise
    from cartlab.twin.trial import TrialConfig, simulate_observed

    n = 70
    cfg = TrialConfig(n=n, seed=0)
    obs, ev = simulate_observed(cfg, np.arange(n), cfg.arms[0])
    write_tables(study_tables(obs, ev, load_protocol("nct04762485").lymphodepletion), tmp_path / "s")
    ra = Analysis(read_study(tmp_path / "s")).table("relapse_antigen")
    engine = {r["subject_id"]: {"negative": "negative", "low": "negative", "retained": "positive",
                                "not assessed": "unknown"}[r["status"]] for r in ra.iter_rows(named=True)}
    s = summarise(obs)
    ids = subject_ids(obs.index)
    mine = {ids[i]: "negative" if s["cd7neg_relapse"][i] else "unknown" if s["cd7unknown_relapse"][i] else "positive"
            for i in np.flatnonzero(s["relapse"])}
    assert mine == engine
    assert mine.get("SIM-0000017") == "unknown" and mine.get("SIM-0000069") == "negative"


# ---------------------------------------------------------------------------------------------
# B5: the vasopressor count starts at CRS hypotension


def test_b5_afebrile_hypotension_does_not_start_the_vasopressor_count():
    from cartlab.twin.clinic import clinic_decide, load_clinic, policy_vector

    def run(policy, days):
        pv = policy_vector(policy)
        cs = np.zeros(5)
        cs[3] = -1e9
        out = []
        for d, (temp, sbp) in enumerate(days):
            cs[4] = d
            out.append(clinic_decide(pv, temp, sbp, 100.0, cs)[1:3])   # (vasopressor, tocilizumab)
        return out

    # day 0: SBP 85 without fever (37.0 < 38.0) and no tocilizumab yet: not CRS (ASTCT 2019), nothing given;
    # day 1: fever 38.5 with SBP 85: CRS grade 2 -> tocilizumab, the first CRS-hypotension reading;
    # day 2: SBP 85 after tocilizumab (fever waived): the second reading -> vasopressor
    course = [(37.0, 85.0), (38.5, 85.0), (37.5, 85.0)]
    assert run(load_clinic(), course) == [(0.0, 0.0), (0.0, 1.0), (1.0, 1.0)]
    # option hypotension_readings=any (before session 47): the afebrile day counts, so the vasopressor
    # starts on day 1 together with the first tocilizumab
    assert run(load_clinic(hypotension_readings="any"), course) == [(0.0, 0.0), (1.0, 1.0), (1.0, 1.0)]
    assert load_clinic().hypotension_readings == "crs"
    with pytest.raises(InputError, match="hypotension_readings"):
        load_clinic(hypotension_readings="some")


# ---------------------------------------------------------------------------------------------
# B6: a censored baseline value


def _seed_with_censored_il6(extra=None):
    from cartlab.datasets import seed_case

    st = seed_case()
    o = st.observations
    cens = (pl.col("param") == "IL6") & (pl.col("day") <= 0)   # the seed's baseline IL-6: 4.0 pg/mL on day -1
    o = o.with_columns(value=pl.when(cens).then(None).otherwise(pl.col("value")),
                       censor=pl.when(cens).then(pl.lit("<")).otherwise(pl.col("censor")),
                       censor_limit=pl.when(cens).then(1.5).otherwise(pl.col("censor_limit")))
    if extra is not None:
        o = pl.concat([o, extra(o)], how="vertical_relaxed")
    return dataclasses.replace(st, observations=o)


def test_b6_censored_baseline_read_by_option():
    from cartlab.twin.baseline_prior import blq_baseline
    from cartlab.twin.model import Baseline

    st = _seed_with_censored_il6()
    sid = "CD7-AML-001"
    base = Baseline.from_study(st, [sid])
    assert np.isnan(base.il6[0])                      # from_study alone: missing (the default 5 pg/mL)
    half, read = blq_baseline(st, sid, base)          # default half_lloq: 1.5 / 2 = 0.75 pg/mL
    assert half.il6[0] == 0.75 and "il6" not in half.defaults_used(0)
    assert read["il6"]["censored"] == "<1.5" and read["il6"]["day"] == -1.0
    assert blq_baseline(st, sid, base, "lloq")[0].il6[0] == 1.5
    miss, none = blq_baseline(st, sid, base, "missing")
    assert np.isnan(miss.il6[0]) and none == {} and "il6" in miss.defaults_used(0)
    with pytest.raises(InputError, match="baseline_blq"):
        blq_baseline(st, sid, base, "zero")


def test_b6_a_later_quantified_value_wins_and_the_option_is_the_model_s():
    from cartlab.twin.baseline_prior import blq_baseline
    from cartlab.twin.fit import TwinModel
    from cartlab.twin.model import Baseline

    # a quantified IL-6 of 3.0 on day -1 after the censored one: the latest reading (from_study's rule) is read
    def later(o):
        r = o.filter((pl.col("param") == "IL6") & (pl.col("day") <= 0)).head(1)
        return r.with_columns(value=pl.lit(3.0), censor=pl.lit(None, pl.String), censor_limit=pl.lit(None, pl.Float64))

    st = _seed_with_censored_il6(later)
    sid = "CD7-AML-001"
    b, read = blq_baseline(st, sid, Baseline.from_study(st, [sid]))
    assert b.il6[0] == 3.0 and read == {}
    assert TwinModel().baseline_blq == "half_lloq"
    with pytest.raises(InputError, match="baseline_blq"):
        TwinModel(baseline_blq="zero")


# ---------------------------------------------------------------------------------------------
# B7: a split with a zero fraction


def test_b7_zero_fraction_split_refused():
    from cartlab.protocol import load_protocol
    from cartlab.twin.model import Events
    from cartlab.twin.trial import Arm, TrialConfig, validate_config

    proto = load_protocol("nct04762485")   # two CAR-T infusion days (day 0 and day 2)
    w = np.array([60.0])
    with pytest.raises(InputError, match="above 0 and add up to 1"):
        Events.from_protocol(proto, w, split=(0.0, 1.0))
    with pytest.raises(InputError, match="above 0 and add up to 1"):
        Events.from_protocol(proto, w, split=(0.5, 0.6))
    with pytest.raises(InputError, match="split 0,1"):
        validate_config(TrialConfig(n=1, arms=(Arm(split=(0.0, 1.0)),)))
    # a valid split: 20% then 80% of the protocol's total cells (6e7 + 2.4e8 = 3e8 for 60 kg)
    ev = Events.from_protocol(proto, w, split=(0.2, 0.8))
    np.testing.assert_allclose(ev.car_t_cells[0], [6e7, 2.4e8])


def test_cli_refuses_a_zero_split_and_an_unknown_baseline_blq(tmp_path):
    """End to end (lead): `cartlab simulate --split 0,1` stops before writing anything; `cartlab twin fit
    --baseline-blq` takes only the three documented values."""
    from typer.testing import CliRunner

    from cartlab.cli import app

    out = tmp_path / "sim"
    r = CliRunner().invoke(app, ["simulate", "--protocol", "nct04762485", "--n", "2", "--split", "0,1", "--out", str(out)])
    assert r.exit_code != 0 and "split" in r.output and not out.exists()
    r = CliRunner().invoke(app, ["twin", "fit", "x", "--subject", "S", "--baseline-blq", "half", "--out",
                                 str(tmp_path / "fit")])
    assert r.exit_code == 2 and "--baseline-blq must be one of half_lloq, lloq, missing" in r.output


def test_baseline_left_out_by_sources_is_named_not_called_missing():
    """review 47 new user #7: with sources=['paper'] the seed's reconstructed baseline rows (CD7T 322
    cells/uL on day -7, NEUT ...) exist but are left out; the warning says so instead of "add the
    measurements if they exist"."""
    import warnings

    from cartlab.datasets import seed_case
    from cartlab.twin.fit import TwinModel

    m = TwinModel(sources=["paper"])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m._setup(seed_case(), "CD7-AML-001", None)
    assert "recorded with another source, left out" in m.baseline_defaults_used_["cd7t_ul"]["missing"]
    text = " ".join(str(x.message) for x in w)
    assert "include that source to use them" in text and "add the measurements if they exist" not in text
    m2 = TwinModel()  # every source: the seed's CD7T is read, not a default
    m2._setup(seed_case(), "CD7-AML-001", None)
    assert "cd7t_ul" not in m2.baseline_defaults_used_
