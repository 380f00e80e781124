"""Response rates and time-to-event endpoints (cartlab.response.endpoints).

* Clopper-Pearson against R ``binom.test`` and closed forms; response_rate.
* Kaplan-Meier: a hand-computed product limit (with Greenwood / log(-log) CI and median), equality
  with lifelines to 1e-12, and a hypothesis property test on random data.
* Aalen-Johansen: hand-computed CIFs with a competing event (also with tied times, where lifelines
  jitters), equality with lifelines to 1e-12 on tie-free data (estimate, variance, CI).
* ADTTE on a tiny hand-made Study: death, relapse, treatment failure, HSCT / new-therapy censoring
  options, landmark, missing follow-up; and the seed case.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import polars as pl
import pytest

from cartlab.errors import CartlabWarning
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lifelines import AalenJohansenFitter, KaplanMeierFitter
from scipy import stats

from cartlab.datasets import seed_case
from cartlab.model import Study, conform
from cartlab.response.endpoints import (
    ADTTE_SCHEMA,
    PARAMCDS,
    EndpointOptions,
    aalen_johansen,
    clopper_pearson,
    cumulative_incidence,
    derive_adtte,
    endpoint_definitions,
    km_estimate,
    median_survival,
    number_at_risk,
    response_rate,
)

Z95 = 1.959963984540054  # qnorm(0.975)


# ---------------------------------------------------------------------------------------------
# Clopper-Pearson


def test_clopper_pearson_matches_r_binom_test():
    # R (stats): binom.test(3, 10)$conf.int -> 0.06673951 0.65245285, the Clopper & Pearson (Biometrika
    # 1934;26:404-413) interval; scipy.stats.beta.ppf gives 0.06673951117773447, 0.6524528500599973.
    lo, hi = clopper_pearson(3, 10)
    assert lo == pytest.approx(0.06673951, abs=5e-9) and hi == pytest.approx(0.65245285, abs=5e-9)
    # the defining tail equations: P(X >= 3 | lo) = P(X <= 3 | hi) = 0.025
    assert stats.binom.sf(2, 10, lo) == pytest.approx(0.025, abs=1e-12)
    assert stats.binom.cdf(3, 10, hi) == pytest.approx(0.025, abs=1e-12)


def test_clopper_pearson_edges_closed_forms():
    # k = 0: (0, 1 - (alpha/2)^(1/n)); k = n: ((alpha/2)^(1/n), 1). R: binom.test(0, 10) -> 0 0.3084971
    assert clopper_pearson(0, 10) == (0.0, pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-12))
    assert clopper_pearson(0, 10)[1] == pytest.approx(0.3084971, abs=5e-8)
    assert clopper_pearson(10, 10) == (pytest.approx(0.025 ** (1 / 10), abs=1e-12), 1.0)
    lo90, hi90 = clopper_pearson(3, 10, level=0.90)
    lo95, hi95 = clopper_pearson(3, 10)
    assert lo95 < lo90 < 0.3 < hi90 < hi95
    for bad in [(1, 0), (-1, 5), (6, 5), (1.5, 5)]:
        with pytest.raises(ValueError):
            clopper_pearson(*bad)
    with pytest.raises(ValueError, match="level"):
        clopper_pearson(1, 5, level=1.0)


def test_response_rate_overall_and_by_group():
    best = pl.DataFrame({
        "subject_id": [f"S{i}" for i in range(10)],
        "arm": ["a"] * 5 + ["b"] * 5,
        "best_response": ["CR", "CRi", "NR", "NE", None, "CR", "NR", "NR", "MLFS", "NR"],
        "evidence": [[f"observations.csv:{i}"] for i in range(10)],
    })
    r = response_rate(best, {"CR"}).row(0, named=True)
    assert (r["n"], r["n_responders"], r["rate"]) == (10, 2, 0.2)
    assert (r["ci_low"], r["ci_high"]) == clopper_pearson(2, 10)
    assert r["method"] == "Clopper-Pearson exact" and r["responders"] == ["CR"]
    assert r["category_counts"] == "NR=4, CR=2, CRi=1, MLFS=1, NE=1, (missing)=1"
    assert r["evidence"] == ["observations.csv:0", "observations.csv:5"]
    r3 = response_rate(best, {"CR", "CRi"}).row(0, named=True)
    assert r3["n_responders"] == 3 and r3["ci_low"] == pytest.approx(0.06673951, abs=5e-9)
    g = response_rate(best, {"CR", "CRi", "MLFS"}, by="arm")
    assert g["arm"].to_list() == ["a", "b"] and g["n"].to_list() == [5, 5]
    assert g["n_responders"].to_list() == [2, 2] and g["rate"].to_list() == [0.4, 0.4]
    empty = response_rate(best.clear(), {"CR"}).row(0, named=True)
    assert empty["n"] == 0 and empty["rate"] is None
    with pytest.raises(ValueError, match="one row per subject"):
        response_rate(pl.concat([best, best.head(1)]), {"CR"})


# ---------------------------------------------------------------------------------------------
# Kaplan-Meier


def tte(aval, cnsr, paramcd="OS", **extra):
    return pl.DataFrame({"subject_id": [f"S{i}" for i in range(len(aval))], "PARAMCD": [paramcd] * len(aval),
                         "ANLFL": ["Y"] * len(aval), "AVAL": [float(a) for a in aval],
                         "CNSR": [int(c) for c in cnsr], **extra})


# 6 subjects: events at 1, 3, 3, 5; censored at 2 and 4.
KM_T = [1, 2, 3, 3, 4, 5]
KM_C = [0, 1, 0, 0, 1, 0]


def test_km_hand_computed_product_limit():
    km = km_estimate(tte(KM_T, KM_C), "OS")
    assert km["time"].to_list() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert km["n_at_risk"].to_list() == [6, 6, 5, 4, 2, 1]
    assert km["n_events"].to_list() == [0, 1, 0, 2, 0, 1]
    assert km["n_censored"].to_list() == [0, 0, 1, 0, 1, 0]
    # S(t) = prod (1 - d/n): t1: 1 - 1/6 = 5/6; t2 censor; t3: 5/6 * (1 - 2/4) = 5/12; t4 censor;
    # t5: 5/12 * (1 - 1/1) = 0
    want = [1.0, 5 / 6, 5 / 6, 5 / 12, 5 / 12, 0.0]
    assert np.allclose(km["survival"].to_numpy(), want, atol=1e-15, rtol=0)
    # log(-log) CI: Greenwood sum at t3 = 1/(6*5) + 2/(4*2) = 1/30 + 1/4
    for i, gw in ((1, 1 / 30), (3, 1 / 30 + 1 / 4)):
        s = want[i]
        se = math.sqrt(gw) / abs(math.log(s))
        assert km["ci_low"][i] == pytest.approx(s ** math.exp(Z95 * se), abs=1e-12)
        assert km["ci_high"][i] == pytest.approx(s ** math.exp(-Z95 * se), abs=1e-12)
    assert km["ci_low"][3] == pytest.approx(0.055992, abs=1e-6)
    # at t5 S = 0: log S = -inf and the Greenwood term d/(n(n-d)) = 1/0, so the interval is undefined
    # (R survfit conf.type "log-log" gives NA), never 0-0
    assert (km["ci_low"][5], km["ci_high"][5]) == (None, None)
    # median: first time S <= 0.5 is t=3; lower band <= 0.5 at t=1 (0.273); the upper band is
    # 5/12 ** exp(-1.96 * sqrt(1/30 + 1/4) / |log 5/12|) = 0.766 at t3 and t4 and undefined at t5:
    # it never reaches 0.5 where defined, so the upper bound is not reached (was 5 before 0.x s28)
    m = median_survival(tte(KM_T, KM_C), "OS").row(0, named=True)
    assert (m["median"], m["median_ci_low"], m["median_ci_high"]) == (3.0, 1.0, None)
    assert m["reason"].endswith("95% CI 1 - not estimable")  # the band ends at t5, where S = 0
    assert (m["n"], m["n_events"]) == (6, 4)


def test_km_equals_lifelines_and_by_groups():
    rng = np.random.default_rng(3)
    t = rng.integers(0, 40, 60).astype(float)
    c = rng.integers(0, 2, 60)
    arm = np.where(rng.random(60) < 0.5, "a", "b")
    df = tte(t, c, arm=arm.tolist())
    km = km_estimate(df, "OS", by="arm", level=0.9)
    for a in ("a", "b"):
        sel = arm == a
        kmf = KaplanMeierFitter(alpha=0.1).fit(t[sel], c[sel] == 0)
        got = km.filter(pl.col("arm") == a)
        assert np.array_equal(got["time"].to_numpy(), kmf.survival_function_.index.to_numpy())
        assert np.max(np.abs(got["survival"].to_numpy() - kmf.survival_function_.iloc[:, 0].to_numpy())) < 1e-12
        d = got["survival"].to_numpy() > 0  # lifelines writes 0-0 where S = 0; cartlab leaves it undefined
        assert np.max(np.abs(got["ci_low"].to_numpy()[d] - kmf.confidence_interval_.iloc[:, 0].to_numpy()[d])) < 1e-12
        assert np.max(np.abs(got["ci_high"].to_numpy()[d] - kmf.confidence_interval_.iloc[:, 1].to_numpy()[d])) < 1e-12
        assert got["n_at_risk"].to_list() == kmf.event_table["at_risk"].tolist()
    med = median_survival(df, "OS", by="arm")
    assert med["arm"].to_list() == ["a", "b"]
    # other parameters and non-analysable rows are ignored
    mixed = pl.concat([df.drop("arm"), tte([1.0], [0], paramcd="EFS"),
                       tte([2.0], [0]).with_columns(pl.lit(None, dtype=pl.String).alias("ANLFL"))])
    assert km_estimate(mixed, "OS")["n_at_risk"][0] == 60


def test_number_at_risk():
    nar = number_at_risk(tte(KM_T, KM_C), "OS", [0, 2.5, 3, 5, 6])
    assert nar["n_at_risk"].to_list() == [6, 4, 4, 1, 0]
    assert nar["n_events_cum"].to_list() == [0, 1, 3, 4, 4]
    assert nar["n_censored_cum"].to_list() == [0, 1, 1, 2, 2]


def product_limit(t, events):
    """Independent reference: S at each distinct time, straight from the definition."""
    out = {}
    s = 1.0
    for x in sorted(set(t)):
        n = sum(1 for u in t if u >= x)
        d = sum(1 for u, e in zip(t, events) if u == x and e)
        s *= 1 - d / n
        out[x] = s
    return out


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 15), st.booleans()), min_size=1, max_size=25))
def test_km_property_monotone_bounded_equals_lifelines(data):
    t = [float(a) for a, _ in data]
    ev = [e for _, e in data]
    km = km_estimate(tte(t, [0 if e else 1 for e in ev]), "OS")
    s = km["survival"].to_numpy()
    assert np.all((s >= 0) & (s <= 1))
    assert np.all(np.diff(s) <= 1e-15)
    lo, hi = km["ci_low"].to_numpy(), km["ci_high"].to_numpy()
    assert np.array_equal(np.isnan(lo), s == 0) and np.array_equal(np.isnan(hi), s == 0)  # undefined at S = 0 only
    assert np.all(lo[s > 0] <= s[s > 0] + 1e-12) and np.all(s[s > 0] <= hi[s > 0] + 1e-12)
    kmf = KaplanMeierFitter().fit(t, ev)
    assert np.max(np.abs(s - kmf.survival_function_.iloc[:, 0].to_numpy())) < 1e-12
    ref = product_limit(t, ev)
    for time, val in zip(km["time"].to_list(), s):
        assert abs(val - ref.get(time, 1.0)) < 1e-12
    nar = number_at_risk(tte(t, [0 if e else 1 for e in ev]), "OS", km["time"].to_list())
    assert nar["n_at_risk"].to_list() == km["n_at_risk"].to_list()


# ---------------------------------------------------------------------------------------------
# Aalen-Johansen


def lifelines_aj(t, e, k, level=0.95, seed=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AalenJohansenFitter(alpha=1 - level, seed=seed).fit(np.asarray(t, float), np.asarray(e), event_of_interest=k)


def test_aj_hand_computed_with_competing_event():
    # times 1..6: relapse, death, censored, relapse, death, censored
    t, e = [1, 2, 3, 4, 5, 6], [1, 2, 0, 1, 2, 0]
    cr = aalen_johansen(t, e, 1)
    cd = aalen_johansen(t, e, 2)
    # S(t-) and increments: t1 n=6: CIF1 += 1 * 1/6, S -> 5/6; t2 n=5: CIF2 += 5/6 * 1/5 = 1/6, S -> 4/6;
    # t3 censored; t4 n=3: CIF1 += 4/6 * 1/3 = 2/9 (CIF1 = 7/18), S -> 4/9; t5 n=2: CIF2 += 4/9 * 1/2 = 2/9
    assert np.allclose(cr["cif"].to_numpy(), [0, 1 / 6, 1 / 6, 1 / 6, 7 / 18, 7 / 18, 7 / 18], atol=1e-15, rtol=0)
    assert np.allclose(cd["cif"].to_numpy(), [0, 0, 1 / 6, 1 / 6, 1 / 6, 7 / 18, 7 / 18], atol=1e-15, rtol=0)
    assert cr["n_at_risk"].to_list() == [6, 6, 5, 4, 3, 2, 1]
    assert cr["n_competing"].to_list() == [0, 0, 1, 0, 0, 1, 0]
    # CIF1 + CIF2 + S_KM = 1 (S_KM at 6 = 2/9)
    assert cr["cif"][-1] + cd["cif"][-1] + 2 / 9 == pytest.approx(1.0, abs=1e-15)
    # variance at t1: S(0-)^2 * d1 (n - d1) / n^3 = 5/216
    assert cr["variance"][1] == pytest.approx(5 / 216, abs=1e-15)
    v, f = 5 / 216, 1 / 6
    se = math.sqrt(v) / (f * abs(math.log(f)))
    assert cr["ci_low"][1] == pytest.approx(math.exp(-math.exp(math.log(-math.log(f)) + Z95 * se)), abs=1e-15)
    assert cr["ci_low"][1] == pytest.approx(0.007723, abs=1e-6) and cr["ci_high"][1] == pytest.approx(0.516802, abs=1e-6)
    # equals lifelines (whose CI columns are labelled upper/lower the wrong way round)
    lf = lifelines_aj(t, e, 1)
    assert np.max(np.abs(cr["cif"].to_numpy() - lf.cumulative_density_.iloc[:, 0].to_numpy())) < 1e-12
    ci = lf.confidence_interval_.to_numpy()
    ok = np.isfinite(ci[:, 0])
    assert np.max(np.abs(cr["ci_low"].to_numpy()[ok] - ci[ok].min(axis=1))) < 1e-12
    assert np.max(np.abs(cr["ci_high"].to_numpy()[ok] - ci[ok].max(axis=1))) < 1e-12


def test_aj_tied_times_exact_where_lifelines_jitters():
    # at t=2: a relapse, a death and a censoring; t=3 relapse; t=5 two censored.
    t, e = [2, 2, 2, 3, 5, 5], [1, 2, 0, 1, 0, 0]
    cr = aalen_johansen(t, e, 1)
    # t2 n=6: CIF1 = 1/6, CIF2 = 1/6, S = 1 - 2/6 = 2/3; t3 n=3: CIF1 += 2/3 * 1/3 = 2/9 -> 7/18
    assert cr["time"].to_list() == [0.0, 2.0, 3.0, 5.0]
    assert np.allclose(cr["cif"].to_numpy(), [0, 1 / 6, 7 / 18, 7 / 18], atol=1e-15, rtol=0)
    assert aalen_johansen(t, e, 2)["cif"][-1] == pytest.approx(1 / 6, abs=1e-15)
    # lifelines jitters the tied event times at random: its answer depends on the seed (the jitter
    # can move an event past the censoring at t=2), which is why cartlab computes the estimator itself.
    finals = {round(float(lifelines_aj(t, e, 1, seed=s).cumulative_density_.iloc[-1, 0]), 6) for s in range(1, 6)}
    assert len(finals) > 1 and round(7 / 18, 6) in finals
    assert aalen_johansen(t, e, 1).equals(cr)  # deterministic


def test_aj_single_cause_is_one_minus_km_and_time_zero_events():
    t, e = [0, 0, 1, 2, 2, 3, 4], [1, 0, 1, 1, 1, 0, 1]
    aj = aalen_johansen(t, e, 1)
    kmf = KaplanMeierFitter().fit(t, np.array(e) == 1)
    assert np.max(np.abs(aj["cif"].to_numpy() - (1 - kmf.survival_function_.iloc[:, 0].to_numpy()))) < 1e-12
    assert aj["cif"][0] == pytest.approx(1 / 7)  # an event at time 0 counts (lifelines forces 0 there)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(1, 500), st.integers(0, 2)), min_size=2, max_size=20,
                unique_by=lambda x: x[0]),
       st.sampled_from([0.8, 0.95]))
def test_aj_equals_lifelines_on_tie_free_data(data, level):
    t = [a / 10 for a, _ in data]
    e = [k for _, k in data]
    for k in (1, 2):
        ours = aalen_johansen(t, e, k, level)
        lf = lifelines_aj(t, e, k, level)
        assert np.array_equal(ours["time"].to_numpy(), lf.cumulative_density_.index.to_numpy())
        assert np.max(np.abs(ours["cif"].to_numpy() - lf.cumulative_density_.iloc[:, 0].to_numpy())) < 1e-12
        var = lf.variance_.to_numpy()
        ok = np.isfinite(var)
        assert np.max(np.abs(ours["variance"].to_numpy()[ok] - var[ok]), initial=0) < 1e-12
        ci = lf.confidence_interval_.to_numpy()
        ok = np.isfinite(ci).all(axis=1)
        assert np.max(np.abs(ours["ci_low"].to_numpy()[ok] - ci[ok].min(axis=1)), initial=0) < 1e-12
        assert np.max(np.abs(ours["ci_high"].to_numpy()[ok] - ci[ok].max(axis=1)), initial=0) < 1e-12
        c = ours["cif"].to_numpy()
        assert np.all(np.diff(c) >= -1e-15) and np.all((c >= 0) & (c <= 1))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(1, 8), min_size=2, max_size=20), st.lists(st.integers(0, 2), min_size=20, max_size=20),
       st.integers(0, 2 ** 16))
def test_aj_with_ties_equals_lifelines_jittered_at_the_grid(times, codes, seed):
    # event times on integers, censorings on half-integers: lifelines' jitter (1e-4) then never moves
    # an event past a censoring, and its jittered CIF must equal the exact one between grid points.
    e = codes[: len(times)]
    t = [x if k else x + 0.5 for x, k in zip(times, e)]
    ours = aalen_johansen(t, e, 1)
    lf = lifelines_aj(t, e, 1, seed=seed).cumulative_density_.iloc[:, 0]
    for time, val in zip(ours["time"].to_list(), ours["cif"].to_list()):
        assert abs(val - float(lf.loc[: time + 0.25].iloc[-1])) < 1e-12


def test_cumulative_incidence_from_adtte_frame():
    df = pl.DataFrame({"subject_id": list("ABCDEF"), "PARAMCD": ["CIR"] * 6, "ANLFL": ["Y"] * 6,
                       "AVAL": [1.0, 2, 3, 4, 5, 6], "EVENT": [1, 2, 0, 1, 2, 0], "grp": list("xxxyyy")})
    ci = cumulative_incidence(pl.concat([df, df.with_columns(pl.lit("OS").alias("PARAMCD"))]))
    assert ci.height == 7 and ci["cif"][-1] == pytest.approx(7 / 18) and set(ci["PARAMCD"]) == {"CIR"}
    assert cumulative_incidence(df, 2)["cif"][-1] == pytest.approx(7 / 18)
    g = cumulative_incidence(df, by="grp")
    assert g.filter(pl.col("grp") == "x")["cif"].to_list() == [0.0, 1 / 3, 1 / 3, 1 / 3]


# ---------------------------------------------------------------------------------------------
# ADTTE on a hand-made study


def make_study(subjects, events=(), obs=()):
    subj = conform(pl.DataFrame([{"src_file": "subjects.csv", "src_row": i + 1, **s} for i, s in enumerate(subjects)],
                                schema_overrides={"last_followup_day": pl.Float64}), "subjects")
    ev_rows = [{"src_file": "events.csv", "src_row": i + 1, "subject_id": s, "day": float(d), "event": k}
               for i, (s, d, k) in enumerate(events)]
    ev = conform(pl.DataFrame(ev_rows), "events") if ev_rows else conform(pl.DataFrame(), "events").clear()
    ob_rows = [{"src_file": "observations.csv", "src_row": i + 1, "subject_id": s, "day": float(d), "param": p,
                "value": v} for i, (s, d, p, v) in enumerate(obs)]
    ob = conform(pl.DataFrame(ob_rows), "observations") if ob_rows else conform(pl.DataFrame(), "observations").clear()
    return Study("t", subjects=subj, events=ev, observations=ob)


def responses(rows):
    return pl.DataFrame([{"subject_id": s, "best_response": c, "best_response_day": None if d is None else float(d),
                          "evidence": [f"adrs:{s}{i}"]} for i, (s, c, d) in enumerate(rows)],
                        schema={"subject_id": pl.String, "best_response": pl.String, "best_response_day": pl.Float64,
                                "evidence": pl.List(pl.String)})


SUBJECTS = [{"subject_id": s, "last_followup_day": fu} for s, fu in
            [("A", 100), ("B", 80), ("C", 200), ("D", None), ("E", 90), ("F", 150), ("G", 130), ("H", 120), ("P", 60)]]
EVENTS = [
    ("A", -30, "relapse"), ("A", 50, "relapse"), ("A", 100, "death"),         # events.csv:1-3
    ("B", 45, "allo_hsct"), ("B", 80, "death"),                              # 4-5
    ("C", 35, "new_therapy"),                                                # 6
    ("D", 10, "death"),                                                      # 7
    ("G", 120, "extramedullary_disease"),                                    # 8
    ("H", 70, "new_therapy"), ("H", 100, "relapse"), ("H", 100, "death"),    # 9-11
    ("P", 28, "relapse"),                                                    # 12
]
RESP = [("A", "CR", 28), ("B", "CRh", 21), ("C", "NR", 28), ("E", "NE", None), ("F", "CR", 60),
        ("G", "CRi", 28), ("H", "CR", 28), ("P", "CR", 28)]


def get(adtte, sid, paramcd):
    rows = adtte.filter((pl.col("subject_id") == sid) & (pl.col("PARAMCD") == paramcd))
    assert rows.height == 1
    return rows.row(0, named=True)


@pytest.fixture
def study():
    return make_study(SUBJECTS, EVENTS)


def test_adtte_shape_and_defaults(study):
    a = derive_adtte(study, responses=responses(RESP))
    assert a.schema == pl.Schema(ADTTE_SCHEMA)
    assert a.height == 9 * 5 and a["PARAMCD"].unique(maintain_order=True).to_list() == list(PARAMCDS)
    defs = endpoint_definitions()
    assert set(a["rule"]) <= {r["id"] for r in defs["rules"]}
    assert all(r.get("citation") for r in defs["rules"]) and all(p["citation"] for p in defs["params"].values())
    an = a.filter(pl.col("ANLFL") == "Y")
    assert (an["AVAL"] == an["ADY"] - an["STARTDY"]).all() and (an["AVAL"] >= 0).all()
    assert ((an["CNSR"] == 1) == (an["EVENT"] == 0)).all()
    assert (an.filter(pl.col("CNSR") == 0)["EVNTDESC"].is_not_null()).all()
    assert (an.filter(pl.col("CNSR") == 1)["CNSDTDSC"].is_not_null()).all()

    # A: CR day 28, relapse day 50 (the day -30 relapse is history), death day 100
    assert [get(a, "A", "OS")[k] for k in ("AVAL", "CNSR", "rule", "evidence")] == [100.0, 0, "os.death", ["events.csv:3"]]
    efs = get(a, "A", "EFS")
    assert (efs["AVAL"], efs["CNSR"], efs["rule"], efs["EVNTDESC"]) == (50.0, 0, "efs.relapse", "RELAPSE")
    assert efs["evidence"] == ["adrs:A0", "events.csv:2"]
    rfs = get(a, "A", "RFS")
    assert (rfs["STARTDY"], rfs["ADY"], rfs["AVAL"], rfs["CNSR"]) == (28.0, 50.0, 22.0, 0)
    assert (get(a, "A", "LFS")["AVAL"], get(a, "A", "LFS")["STARTDY"]) == (50.0, 0.0)
    cir = get(a, "A", "CIR")
    assert (cir["AVAL"], cir["EVENT"], cir["CNSR"], cir["rule"]) == (22.0, 1, 0, "cir.relapse")

    # B: CRh day 21, HSCT day 45 (not censored by default), death day 80 without relapse
    assert (get(a, "B", "OS")["AVAL"], get(a, "B", "OS")["CNSR"]) == (80.0, 0)
    assert get(a, "B", "EFS")["rule"] == "efs.death"
    cir = get(a, "B", "CIR")
    assert (cir["AVAL"], cir["EVENT"], cir["EVNTDESC"], cir["rule"]) == (59.0, 2, "DEATH WITHOUT RELAPSE",
                                                                        "cir.death_without_relapse")

    # C: NR -> treatment failure at day 0; not in the RFS/LFS/CIR populations; OS censored at follow-up
    efs = get(a, "C", "EFS")
    assert (efs["AVAL"], efs["CNSR"], efs["rule"], efs["EVNTDESC"], efs["evidence"]) == (
        0.0, 0, "efs.treatment_failure", "TREATMENT FAILURE", ["adrs:C2"])
    for p in ("RFS", "LFS", "CIR"):
        r = get(a, "C", p)
        assert (r["ANLFL"], r["AVAL"], r["CNSR"], r["rule"]) == (None, None, None, "not_in_remission")
        assert "NR on day 28" in r["reason"]
    os_c = get(a, "C", "OS")
    assert (os_c["AVAL"], os_c["CNSR"], os_c["rule"], os_c["evidence"]) == (200.0, 1, "censor.last_alive", ["subjects.csv:3"])

    # D: no response assessment, died on day 10 (no follow-up needed) -> EFS event at day 0
    efs = get(a, "D", "EFS")
    assert (efs["AVAL"], efs["CNSR"], efs["rule"], efs["evidence"]) == (0.0, 0, "efs.death_without_assessment", ["events.csv:7"])
    assert get(a, "D", "OS")["AVAL"] == 10.0

    # E: alive, not evaluable -> EFS censored at day 0
    efs = get(a, "E", "EFS")
    assert (efs["AVAL"], efs["CNSR"], efs["rule"], efs["CNSDTDSC"]) == (0.0, 1, "efs.not_evaluable", "NOT EVALUABLE FOR RESPONSE")

    # F: CR on day 60 (no landmark): remission; RFS from day 60 to last follow-up 150; EFS censored
    # on the last response assessment, day 60 (ELN 2022 Table 9; session 34)
    assert get(a, "F", "EFS")["rule"] == "censor.last_assessment" and get(a, "F", "EFS")["AVAL"] == 60.0
    assert get(a, "F", "RFS")["AVAL"] == 90.0

    # G: CRi then extramedullary disease = hematologic relapse (ELN 2022 Table 7)
    efs = get(a, "G", "EFS")
    assert (efs["AVAL"], efs["EVNTDESC"]) == (120.0, "RELAPSE (EXTRAMEDULLARY DISEASE)")

    # P: a relapse recorded on the remission day is counted (not dropped): RFS AVAL 0
    rfs = get(a, "P", "RFS")
    assert (rfs["AVAL"], rfs["CNSR"], rfs["rule"]) == (0.0, 0, "rfs.relapse")

    # H: relapse and death on day 100: relapse first (CIR EVENT 1); new therapy not censored by default
    assert get(a, "H", "CIR")["EVENT"] == 1 and get(a, "H", "EFS")["AVAL"] == 100.0
    assert get(a, "H", "OS")["rule"] == "os.death"


def test_adtte_censor_at_allo_hsct_and_new_therapy(study):
    hsct = derive_adtte(study, EndpointOptions(censor_at_allo_hsct=True), responses(RESP))
    # session 34: OS is not censored at HSCT unless censor_params names it (ELN: death from any cause)
    os_b = get(hsct, "B", "OS")
    assert (os_b["AVAL"], os_b["CNSR"], os_b["rule"]) == (80.0, 0, "os.death")
    os_b = get(derive_adtte(study, EndpointOptions(censor_at_allo_hsct=True, censor_params=("OS", "CIR")),
                            responses(RESP)), "B", "OS")
    assert (os_b["AVAL"], os_b["CNSR"], os_b["rule"], os_b["CNSDTDSC"], os_b["evidence"]) == (
        45.0, 1, "censor.allo_hsct", "ALLOGENEIC HSCT", ["events.csv:4"])
    cir = get(hsct, "B", "CIR")
    assert (cir["AVAL"], cir["EVENT"], cir["CNSR"]) == (24.0, 0, 1)
    assert get(hsct, "A", "OS")["rule"] == "os.death"  # no HSCT: unchanged
    assert get(hsct, "H", "EFS")["AVAL"] == 100.0  # new therapy still not a censoring

    nt = derive_adtte(study, EndpointOptions(censor_at_new_therapy=True), responses(RESP))
    efs = get(nt, "H", "EFS")
    # session 41 (review 41 F4): EFS censored at new therapy (day 70) on the last response assessment on
    # or before it, CR on day 28 (ELN 2022 EFS "censored on the date they were last assessed for response"),
    # as duration of response; RFS/CIR keep the day 70
    assert (efs["AVAL"], efs["CNSR"], efs["rule"], efs["CNSDTDSC"]) == (28.0, 1, "censor.new_therapy", "NEW ANTICANCER THERAPY")
    assert (get(nt, "H", "RFS")["ADY"], get(nt, "H", "RFS")["rule"]) == (70.0, "censor.new_therapy")
    assert efs["evidence"] == ["adrs:H6", "events.csv:9"]
    assert (get(nt, "C", "OS")["AVAL"], get(nt, "C", "OS")["rule"]) == (200.0, "censor.last_alive")  # session 34
    assert get(nt, "C", "EFS")["rule"] == "efs.treatment_failure"  # day 0 comes first
    assert get(nt, "B", "OS")["rule"] == "os.death"


def test_adtte_event_on_censoring_day_and_response_after_censoring():
    s = make_study([{"subject_id": "J", "last_followup_day": 90.0}, {"subject_id": "I", "last_followup_day": 200.0}],
                   [("J", 50, "allo_hsct"), ("J", 50, "relapse"), ("I", 40, "allo_hsct")])
    resp = responses([("J", "CR", 28), ("I", "NR", 28), ("I", "CR", 80)])  # I: one row per assessment
    on = derive_adtte(s, EndpointOptions(censor_at_allo_hsct=True), resp)
    assert get(on, "J", "RFS")["rule"] == "rfs.relapse" and get(on, "J", "RFS")["AVAL"] == 22.0
    # I: the CR on day 80 follows the HSCT on day 40 -> ignored when censoring at HSCT
    assert get(on, "I", "EFS")["rule"] == "efs.treatment_failure"
    assert get(on, "I", "RFS")["ANLFL"] is None
    off = derive_adtte(s, responses=resp)
    assert get(off, "I", "RFS")["STARTDY"] == 80.0 and get(off, "I", "EFS")["rule"] == "censor.last_assessment"
    assert get(off, "I", "EFS")["AVAL"] == 80.0  # session 34: the last response assessment (CR on day 80)


def test_adtte_efs_landmark(study):
    lm = derive_adtte(study, EndpointOptions(efs_landmark_day=28), responses(RESP))
    efs = get(lm, "F", "EFS")  # CR on day 60 is after the day-28 landmark
    assert (efs["AVAL"], efs["CNSR"], efs["rule"]) == (0.0, 0, "efs.treatment_failure")
    assert "by day 28" in efs["reason"]
    assert get(lm, "F", "RFS")["AVAL"] == 90.0  # RFS has no landmark
    assert get(lm, "A", "EFS")["rule"] == "efs.relapse"  # CR on day 28 is on the landmark
    # death after the landmark without an assessment (session 34): ELN censors only "patients alive who
    # are non-evaluable" -> an EFS event on the death day; option "censor": censored at day 0
    s = make_study([{"subject_id": "D", "last_followup_day": None}], [("D", 40, "death")])
    d = get(derive_adtte(s, EndpointOptions(efs_landmark_day=28), responses([])), "D", "EFS")
    assert (d["rule"], d["AVAL"], d["CNSR"]) == ("efs.death_not_evaluable", 40.0, 0)
    d = get(derive_adtte(s, EndpointOptions(efs_landmark_day=28, efs_ne_death_after_landmark="censor"),
                         responses([])), "D", "EFS")
    assert (d["rule"], d["AVAL"], d["CNSR"]) == ("efs.not_evaluable_died_after_landmark", 0.0, 1)
    assert get(derive_adtte(s, responses=responses([])), "D", "EFS")["rule"] == "efs.death_without_assessment"


def test_adtte_missing_followup():
    s = make_study([{"subject_id": "K", "last_followup_day": None}, {"subject_id": "M", "last_followup_day": None},
                    {"subject_id": "N", "last_followup_day": None}],
                   [("M", 30, "death"), ("N", 20, "allo_hsct")], obs=[("K", 12, "NEUT", 1.0), ("K", 5, "NEUT", 0.5)])
    # --strict (missing_followup="error") keeps the earlier error for a subject with nothing but rows
    with pytest.raises(ValueError, match=r"\['K'\].*last_followup_day"):
        derive_adtte(s, EndpointOptions(missing_followup="error"))
    # the default (spec "Follow-up for time-to-event endpoints"): censored at the last recorded row,
    # the reason says so, and one warning names the subjects
    with pytest.warns(CartlabWarning, match=r"2 subject\(s\).*censor.last_record.*K, N"):
        a = derive_adtte(s)
    k = get(a, "K", "OS")
    assert (k["AVAL"], k["CNSR"], k["evidence"], k["SRCDOM"]) == (12.0, 1, ["observations.csv:1"], "observations")
    assert k["rule"] == "censor.last_record" and k["CNSDTDSC"] == "LAST RECORDED ROW (NO LAST_FOLLOWUP_DAY)"
    assert "no last_followup_day" in k["reason"] and "day 12" in k["reason"]
    assert get(a, "M", "OS")["CNSR"] == 0
    n = get(a, "N", "OS")  # an event on day 20 shows N was alive then
    assert (n["AVAL"], n["evidence"]) == (20.0, ["events.csv:2"])
    empty = make_study([{"subject_id": "Z", "last_followup_day": None}])
    with pytest.raises(ValueError, match="Z"):
        derive_adtte(empty, EndpointOptions(missing_followup="last_observation"))


def test_adtte_input_errors(study):
    with pytest.raises(ValueError, match="need a responses frame"):
        derive_adtte(study, EndpointOptions(params=("OS", "EFS")))
    with pytest.raises(ValueError, match="not in the study"):
        derive_adtte(study, responses=responses([("Q", "CR", 28)]))
    with pytest.raises(ValueError, match="unknown ADTTE parameter"):
        EndpointOptions(params=("PFS",))
    with pytest.raises(ValueError, match="without best_response_day"):
        derive_adtte(study, responses=responses([("A", "CR", None)]))
    only_os = derive_adtte(study)
    assert only_os["PARAMCD"].unique().to_list() == ["OS"] and only_os.height == 9


def test_adtte_feeds_the_estimators(study):
    a = derive_adtte(study, responses=responses(RESP))
    km = km_estimate(a, "OS")
    assert km["n_at_risk"][0] == 9 and km["n_events"].sum() == 4  # deaths of A, B, D, H
    ci = cumulative_incidence(a, 1)
    assert ci["n_at_risk"][0] == 6  # subjects in remission: A, B, F, G, H, P (C, D, E are not)
    assert ci["n_events"].sum() == 4 and ci["n_competing"].sum() == 1  # relapses A, G, H, P; death B
    nrm = cumulative_incidence(a, 2)
    assert nrm["cif"][-1] + ci["cif"][-1] <= 1.0


# ---------------------------------------------------------------------------------------------
# the seed case


def test_seed_case_os_censored_day_60():
    a = derive_adtte(seed_case())
    assert a.height == 1
    r = a.row(0, named=True)
    assert (r["subject_id"], r["PARAMCD"], r["STARTDY"], r["ADY"], r["AVAL"], r["CNSR"], r["EVENT"]) == (
        "CD7-AML-001", "OS", 0.0, 60.0, 60.0, 1, 0)
    assert r["rule"] == "censor.last_alive" and r["CNSDTDSC"] == "LAST KNOWN ALIVE"
    assert r["evidence"] == ["subjects.csv:1", "events.csv:1"]  # last_followup_day 60; allo_hsct on day 60
    assert "no death" in r["reason"] and "allo_hsct on day 60" in r["reason"]
    # session 34: OS is censored at HSCT only when censor_params names it
    h = derive_adtte(seed_case(), EndpointOptions(censor_at_allo_hsct=True)).row(0, named=True)
    assert (h["AVAL"], h["CNSR"], h["rule"]) == (60.0, 1, "censor.last_alive")
    h = derive_adtte(seed_case(), EndpointOptions(censor_at_allo_hsct=True, censor_params=("OS",))).row(0, named=True)
    assert (h["AVAL"], h["CNSR"], h["rule"], h["evidence"]) == (60.0, 1, "censor.allo_hsct", ["events.csv:1"])
    km = km_estimate(a, "OS")
    assert km["survival"].to_list() == [1.0, 1.0] and km["n_censored"].to_list() == [0, 1]
