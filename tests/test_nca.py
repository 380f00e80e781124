"""cartlab.kinetics.nca: PKNCA conformance (Theoph, 12 subjects, both methods, nca() and the CSV
command), PKNCA's published test expectations (test-auc.R, test-half.life.R, test-time.above.R;
../shared/research/kinetics.md §2.1), boundary tests of every rule, and property tests against the
per-subject reference implementation (benchmarks/baselines.py:rowwise_nca).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cartlab.cli.kinetics_io import nca_command
from cartlab.kinetics.nca import (
    GENOMES_PER_UG_GDNA,
    NCA_COLUMNS,
    NcaOptions,
    copies_per_cell,
    derive_nca,
    nca_profile,
    normalise_method,
    parse_interval,
    time_above,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import baselines  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "nca"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "nca"
L2 = math.log(2)
INF = math.inf
REL = 1e-9


def close(a, b, rel=REL):
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=rel, abs_tol=0.0 if b != 0 else 1e-15)


def one(time, conc, interval=(0, INF), **opts):
    """nca_profile's single row as a dict."""
    options = NcaOptions(**opts)
    return nca_profile(time, conc, intervals=[interval], options=options).row(0, named=True)


def codes(row):
    return [w.split(":")[0] for w in row["warnings"]]


# ---------------------------------------------------------------------------------------------
# PKNCA 0.12.1 on R's Theoph data


THEOPH_IN = pl.read_csv(FIXTURES / "theoph_input.csv")
THEOPH_REF = pl.read_csv(FIXTURES / "theoph_pknca_reference.csv")
METHODS = {"lin-up/log-down": "linuplogdown", "linear": "linear"}


def _ref_columns(suffix):
    """(reference column, cartlab column) pairs for one method."""
    out = []
    for col in THEOPH_REF.columns[1:]:
        if col.endswith(("_linear", "_linuplogdown")):
            if col.endswith("_" + suffix):
                out.append((col, col.rsplit("_", 1)[0]))
        else:
            out.append((col, col))
    return out


def _check_theoph(out: pl.DataFrame, suffix: str):
    assert out.height == 12
    got = {str(r["Subject"]): r for r in out.iter_rows(named=True)}
    bad = []
    for ref in THEOPH_REF.iter_rows(named=True):
        mine = got[str(ref["Subject"])]
        for rc, mc in _ref_columns(suffix):
            want, have = float(ref[rc]), mine[mc]
            have = None if have in (None, "") else float(have)
            if have is None or not math.isclose(have, want, rel_tol=REL):
                bad.append(f"subject {ref['Subject']} {mc}: PKNCA {want!r}, cartlab {have!r}")
    assert not bad, "\n".join(bad)


def test_fixture_copies_equal_shared():
    for name in ("theoph_input.csv", "theoph_pknca_reference.csv"):
        shared = SHARED / name
        if shared.exists():
            assert (FIXTURES / name).read_bytes() == shared.read_bytes(), name
    assert THEOPH_IN.height == 132 and THEOPH_REF.height == 12
    # every reference column is checked by one of the methods
    checked = {rc for s in METHODS.values() for rc, _ in _ref_columns(s)}
    assert checked == set(THEOPH_REF.columns[1:])


@pytest.mark.parametrize("method", sorted(METHODS))
def test_theoph_nca(method):
    out = derive_nca(THEOPH_IN, subject="Subject", time="Time", conc="conc", options=NcaOptions(method=method))
    _check_theoph(out, METHODS[method])
    assert out.columns == ["Subject", *NCA_COLUMNS]
    assert (out["rule"] == "best-fit").all()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_theoph_command(tmp_path, method):
    out_csv = tmp_path / "out" / "theoph_nca.csv"
    summary = nca_command(FIXTURES / "theoph_input.csv", out_csv, subject="Subject", time="Time",
                          conc="conc", method=method)
    assert summary["subjects"] == 12 and summary["results"] == 12 and summary["rows"] == 132
    assert summary["with_lambda_z"] == 12 and summary["method"] == method
    out = pl.read_csv(out_csv, infer_schema=False)
    assert out.columns[0] == "Subject" and out.columns[1:] == list(NCA_COLUMNS)
    _check_theoph(out, METHODS[method])
    assert out.filter(pl.col("Subject") == "1")["lambda.z.times"][0] == "9.05;12.12;24.37"
    assert not list(out_csv.parent.glob("*.tmp"))


def test_theoph_tie_breaking_reason():
    """Subject 6: 7 points (2.03..23.85) are within 1e-4 of the best adjusted r2 -> most points."""
    out = derive_nca(THEOPH_IN, subject="Subject", time="Time", conc="conc").filter(pl.col("Subject") == 6)
    r = out.row(0, named=True)
    assert r["lambda.z.n.points"] == 7 and r["lambda.z.time.first"] == 2.03
    assert r["lambda.z.times"] == THEOPH_IN.filter(pl.col("Subject") == 6)["Time"].to_list()[-7:]
    assert r["reason"].startswith("best fit: the last 7 of 7 positive samples after tmax")
    strict = derive_nca(THEOPH_IN.filter(pl.col("Subject") == 6), subject="Subject", time="Time", conc="conc",
                 options=NcaOptions(adj_r_squared_factor=1e-12)).row(0, named=True)
    assert strict["lambda.z.n.points"] < 7  # the best single set, not the largest near-best one


# ---------------------------------------------------------------------------------------------
# PKNCA test-auc.R expectations (kinetics.md §2.1)


@pytest.mark.parametrize("method", ["linear"])
def test_auc_conc_at_end_above_loq(method):
    r = one([0, 1, 2], [0, 1, 1], (0, 2), method=method)
    assert r["auclast"] == 1.5 and r["aucall"] == 1.5
    assert r["aucinf.obs"] is None  # lambda.z not estimable -> NA
    assert r["lambda.z"] is None and "too_few_points_half_life" in codes(r)


def test_auc_conc_at_end_blq():
    r = one([0, 1, 2], [0, 1, 0], (0, 2), method="linear")
    assert (r["auclast"], r["aucall"], r["aucinf.obs"]) == (0.5, 1.0, None)
    r = one([0, 1, 2], [0, 1, 0], (0, 2), method="linear", lambda_z_fixed={None: 1.0})
    assert (r["auclast"], r["aucall"], r["aucinf.obs"]) == (0.5, 1.0, 1.5)
    assert r["rule"] == "fixed"


def test_auc_multiple_blq_at_end():
    r = one(range(7), [0, 1, 0, 0, 0, 0, 0], (0, 6), method="linear", lambda_z_fixed={None: 1.0})
    assert (r["auclast"], r["aucall"], r["aucinf.obs"]) == (0.5, 1.0, 1.5)


EXPECT = {
    "keep_middle": ([0, 2, 0, 1, 2, 1], list(range(6)), (0, 5), {"blq_middle": "keep"},
                    {"linear": (1 + 1 + .5 + 1.5 + 1.5, 1 + 1 + .5 + 1.5 + 1.5),
                     "lin-up/log-down": (1 + 1 + .5 + 1.5 + 1 / L2, 1 + 1 + .5 + 1.5 + 1 / L2)}),
    "keep_all_blq_end": ([0, 2, 0, 1, 2, 1, 0, 0], list(range(8)), (0, 7), {"blq_middle": "keep"},
                         {"linear": (1 + 1 + .5 + 1.5 + 1.5, 1 + 1 + .5 + 1.5 + 1.5 + .5),
                          "lin-up/log-down": (1 + 1 + .5 + 1.5 + 1 / L2, 1 + 1 + .5 + 1.5 + 1 / L2 + .5)}),
    "drop_middle": ([0, 2, 0, 1, 2, 1, 0, 0], list(range(8)), (0, 7), {},
                    {"linear": (1 + 3 + 1.5 + 1.5, 1 + 3 + 1.5 + 1.5 + .5),
                     "lin-up/log-down": (1 + 2 / L2 + 1.5 + 1 / L2, 1 + 2 / L2 + 1.5 + 1 / L2 + .5)}),
    "na_at_end": ([0, 2, 0, 1, 2, 1, None, 0], list(range(8)), (0, 7), {},
                  {"linear": (1 + 3 + 1.5 + 1.5, 1 + 3 + 1.5 + 1.5 + 1),
                   "lin-up/log-down": (1 + 2 / L2 + 1.5 + 1 / L2, 1 + 2 / L2 + 1.5 + 1 / L2 + 1)}),
    # test-auc.R calls pk.calc.auc(..., interval=c(0, 6)) and gets AUCall 7.75 (the triangle cut
    # at 6); pk.nca with the interval 0-6 first keeps the samples in [0, 6] (filter_interval in
    # R/pk.calc.all.R), whose last one (t=5) is quantifiable: AUCall = AUClast, as cartlab's nca
    "interval_0_6_sample_at_7": ([0, 2, 0, 1, 2, 1, 0], [0, 1, 2, 3, 4, 5, 7], (0, 6), {},
                                 {"linear": (1 + 3 + 1.5 + 1.5, 1 + 3 + 1.5 + 1.5),
                                  "lin-up/log-down": (1 + 2 / L2 + 1.5 + 1 / L2, 1 + 2 / L2 + 1.5 + 1 / L2)}),
}


@pytest.mark.parametrize("case", sorted(EXPECT))
@pytest.mark.parametrize("method", ["linear", "lin-up/log-down"])
def test_auc_pknca_golden(case, method):
    conc, time, iv, opts, want = EXPECT[case]
    last, all_ = want[method]
    r = one(time, conc, iv, method=method, **opts)
    assert close(r["auclast"], last) and close(r["aucall"], all_)
    # AUCinf = AUClast + Clast/lambda.z with lambda.z = 1 (Clast = 1 in every case) ...
    rf = one(time, conc, iv, method=method, lambda_z_fixed={None: 1.0}, **opts)
    assert close(rf["aucinf.obs"], last + 1.0) and rf["clast.obs"] == 1.0
    # ... and NA when lambda.z is NA (PKNCA: "AUCinf is requested with NA for lambda.z")
    assert r["lambda.z"] is None and r["aucinf.obs"] is None


@pytest.mark.parametrize("method", ["linear", "lin-up/log-down"])
def test_auc_interval_before_first_sample_is_na(method):
    r = one([0, 1, 2, 3, 4, 5, 7], [0, 2, 0, 1, 2, 1, 0], (-1, INF), method=method, lambda_z_fixed={None: 1.0})
    assert (r["auclast"], r["aucall"], r["aucinf.obs"]) == (None, None, None)
    assert "auc_before_first" in codes(r)
    # NA at the start of the interval: the first measured sample is at 1
    r = one([0, 1, 2, 3, 4, 5, 7], [None, 2, 0, 1, 2, 1, 0], (0, INF), method=method, lambda_z_fixed={None: 1.0})
    assert (r["auclast"], r["aucall"], r["aucinf.obs"]) == (None, None, None)
    assert "auc_before_first" in codes(r)


def test_auc_start_after_last_sample_warns():
    # pk.nca: no sample in [2, 3] ("No data for interval"), so no AUC
    r = one([0, 1], [1, 2], (2, 3), method="linear")
    assert {"start_after_last_sample", "no_samples"} <= set(codes(r)) and r["auclast"] is None


def test_auc_errors_and_degenerate_profiles():
    with pytest.raises(ValueError, match="Conc and time must be the same length"):
        nca_profile([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="Time must be monotonically increasing"):
        nca_profile([1, 2, 1], [1, 2, 3])
    with pytest.raises(ValueError, match="Time must be monotonically increasing"):
        nca_profile([1, 2, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="must be increasing"):
        nca_profile([0, 1], [1, 2], intervals=[(2, 1)])
    with pytest.raises(ValueError, match="unknown AUC method"):
        NcaOptions(method="wrong")
    # all concentrations zero -> 0; zeros mixed with NA -> 0; one measured concentration -> NA
    assert one([2, 3], [0, 0], (2, 3), method="linear")["auclast"] == 0.0
    # (test-auc.R: pk.calc.auxc(conc=c(NA, 0, NA, 0, NA), time=2:6, interval=c(1, 3)) is 0; through
    # pk.nca the interval 1-3 holds one measured sample (NA below), so all of them are given here)
    assert one([2, 3, 4, 5, 6], [None, 0, None, 0, None], (1, 6), method="linear")["auclast"] == 0.0
    r = one([0], [1], (0, INF))
    assert r["auclast"] is None and "one_sample" in codes(r)
    r = one([2, 3, 4], [None, 0, None], (1, 3), method="linear")
    assert r["auclast"] is None and "one_sample" in codes(r)
    # all missing: no samples at all
    r = one([0, 1], [None, None])
    assert r["n_samples"] == 0 and r["auclast"] is None and "no_samples" in codes(r)


# ---------------------------------------------------------------------------------------------
# PKNCA test-half.life.R expectations


def _lstsq(t, c):
    slope, icpt = np.polyfit(np.asarray(t, float), np.log(np.asarray(c, float)), 1)
    return -slope, icpt


def test_half_life_exact_exponential():
    r = one([0, 1, 2], [1, 0.5, 0.25], min_hl_points=3, allow_tmax_in_half_life=True)
    assert close(r["half.life"], 1.0) and r["lambda.z.n.points"] == 3
    r = one([0, 1, 2], [1, 0.5, 0.25], min_hl_points=4)
    assert r["lambda.z"] is None and "too_few_points_half_life" in codes(r)


def test_half_life_most_points_within_factor():
    t, c = [0, 1, 2, 3], [1, 0.5, 0.25, 0.1251]
    r = one(t, c, allow_tmax_in_half_life=True, adj_r_squared_factor=0.1)
    assert r["lambda.z.n.points"] == 4
    assert math.isclose(r["half.life"], 1.000346, rel_tol=1e-5)  # PKNCA's printed value
    lam, icpt = _lstsq(t, c)
    assert close(r["lambda.z"], lam) and close(r["clast.pred"], math.exp(icpt - lam * 3))
    assert math.isclose(r["span.ratio"], 2.998962, rel_tol=1e-5)
    # tmax excluded (PKNCA default): the three points after tmax
    r = one(t, c)
    assert r["lambda.z.n.points"] == 3 and r["lambda.z.time.first"] == 1
    assert math.isclose(r["half.life"], 1.000577, rel_tol=1e-5)
    assert close(r["lambda.z"], _lstsq(t[1:], c[1:])[0])


def test_half_life_manual_selection():
    t, c = [0, 1, 2, 3, 4, 5], [3, 1, 0.5, 0.13, 0.12, 0.113]
    r = one(t, c, lambda_z_times={0: t})
    assert math.isclose(r["half.life"], 1.00653, rel_tol=1e-4)  # PKNCA: "uses the given points as is"
    assert close(r["lambda.z"], _lstsq(t, c)[0])
    assert r["rule"] == "manual-times" and r["lambda.z.n.points"] == 6 and r["lambda.z.times"] == [0, 1, 2, 3, 4, 5]
    auto = one(t, c)
    assert auto["half.life"] != r["half.life"] and auto["rule"] == "best-fit"
    # all BLQ with manual selection: no fit
    r = one(t, [0] * 6, lambda_z_times={0: t})
    assert r["lambda.z"] is None and "manual_lambda_z_invalid" in codes(r)


# ---------------------------------------------------------------------------------------------
# lambda.z selection rules


def test_lambda_z_adj_r_squared_factor_boundary():
    t = [0, 1, 2, 3, 4]
    c = [20, 10 * 0.5 * 1.1, 10 * 0.25, 10 * 0.125, 10 * 0.0625]  # last 3 exact, the 4th off by 10%
    lam4, _ = _lstsq(t[1:], c[1:])
    y = np.log(c[1:])
    fit = np.polyval(np.polyfit(t[1:], y, 1), t[1:])
    r2 = 1 - ((y - fit) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    gap = 1 - (1 - (1 - r2) * 3 / 2)  # best (3 points, adj r2 = 1) minus the 4-point adj r2
    assert 1e-4 < gap < 1e-2
    assert one(t, c)["lambda.z.n.points"] == 3
    assert one(t, c, adj_r_squared_factor=gap * 0.99)["lambda.z.n.points"] == 3
    wide = one(t, c, adj_r_squared_factor=gap * 1.01)
    assert wide["lambda.z.n.points"] == 4 and close(wide["lambda.z"], lam4)


def test_lambda_z_best_set_with_negative_slope_vetoes():
    """PKNCA: the tolerance is taken from the best adjusted r2 of ALL sets, including rising ones."""
    t = [0, 1, 2, 3, 4, 5, 6]
    c = [10, 8, 5, 3, 1, 2, 4]  # the last 3 rise exactly exponentially (adj r2 = 1)
    r = one(t, c)
    assert r["lambda.z"] is None and "no_positive_lambda_z" in codes(r)
    assert r["reason"].startswith("no set of >= 3 points with lambda.z > 0")


def test_lambda_z_tmax_inclusion_and_min_points():
    t, c = [0, 1, 2, 3], [1, 0.5, 0.25, 0.125]
    assert one(t, c)["lambda.z.n.points"] == 3
    r = one(t, c, allow_tmax_in_half_life=True)
    assert r["lambda.z.n.points"] == 4 and r["lambda.z.time.first"] == 0 and close(r["half.life"], 1.0)
    assert one(t, c, min_hl_points=4)["lambda.z"] is None
    r = one([0, 1, 2], [4, 2, 1], min_hl_points=2)
    assert r["lambda.z.n.points"] == 2 and close(r["half.life"], 1.0) and r["adj.r.squared"] is None
    assert "two_point_half_life" in codes(r)
    with pytest.raises(ValueError):
        NcaOptions(min_hl_points=1)


def test_lambda_z_first_or_last_tmax():
    t, c = [0, 1, 2, 3, 4, 5], [0, 8, 4, 8, 4, 2]
    assert one(t, c)["tmax"] == 1 and one(t, c, first_tmax=False)["tmax"] == 3
    assert one(t, c, first_tmax=False)["lambda.z"] is None  # only 2 points after the last tmax


def test_lambda_z_only_positive_after_blq_handling():
    t = [0, 1, 2, 3, 4, 5, 6]
    c = [0, 10, 5, 0, 1.25, 0.625, 0]  # BLQ in the middle (dropped) and at the end (kept, not fitted)
    r = one(t, c)
    assert r["lambda.z.times"] == [2, 4, 5] and close(r["lambda.z"], _lstsq([2, 4, 5], [5, 1.25, 0.625])[0])
    assert r["tlast"] == 5 and r["persistence"] == 5


def test_lambda_z_manual_range_exclude_fixed():
    t = [0.0, 1, 2, 4, 8, 12, 24]
    c = [0.0, 100, 60, 30, 9, 3, 0.1]
    frame = pl.DataFrame({"subject_id": ["A"] * 7 + ["B"] * 7 + ["C"] * 7 + ["D"] * 7,
                          "time": t * 4, "conc": c * 4})
    opts = NcaOptions(lambda_z_range={"A": (4, 12)}, lambda_z_exclude={"B": [24]},
                      lambda_z_fixed={"C": 0.3}, lambda_z_times={"D": [2, 24]})
    out = {r["subject_id"]: r for r in derive_nca(frame, options=opts).iter_rows(named=True)}
    assert out["A"]["rule"] == "manual-range" and out["A"]["lambda.z.times"] == [4, 8, 12]
    assert close(out["A"]["lambda.z"], _lstsq([4, 8, 12], [30, 9, 3])[0])
    assert out["B"]["rule"] == "best-fit" and 24 not in out["B"]["lambda.z.times"]
    assert out["C"]["rule"] == "fixed" and out["C"]["lambda.z"] == 0.3 and out["C"]["lambda.z.n.points"] is None
    assert close(out["C"]["aucinf.obs"], out["C"]["auclast"] + 0.1 / 0.3)
    assert out["D"]["rule"] == "manual-times" and out["D"]["lambda.z.n.points"] == 2
    assert close(out["D"]["lambda.z"], math.log(60 / 0.1) / 22)
    # a default range for everyone without an entry of their own
    opts = NcaOptions(lambda_z_range={None: (8, 24)}, lambda_z_fixed={"C": 0.3})
    out = {r["subject_id"]: r for r in derive_nca(frame, options=opts).iter_rows(named=True)}
    assert out["A"]["lambda.z.times"] == [8, 12, 24] and out["C"]["rule"] == "fixed"
    # a manual fit with lambda.z <= 0 is not reported
    r = one([0, 1, 2, 3], [10, 1, 2, 4], lambda_z_times={0: [1, 2, 3]})
    assert r["lambda.z"] is None and "manual_lambda_z_invalid" in codes(r)
    with pytest.raises(ValueError, match="more than one lambda.z override"):
        NcaOptions(lambda_z_times={"A": [1]}, lambda_z_fixed={"A": 1.0})
    with pytest.raises(ValueError, match="not in the data"):
        derive_nca(frame, options=NcaOptions(lambda_z_fixed={"Z": 1.0}))


def test_span_ratio_warning():
    r = one([0, 1, 2, 3], [8, 4, 2, 1])
    assert close(r["span.ratio"], 2.0) and "span_ratio_below_min" not in codes(r)
    r = one([0, 1, 2, 3], [8, 4, 2, 1], min_span_ratio=2.5)
    assert "span_ratio_below_min" in codes(r)


# ---------------------------------------------------------------------------------------------
# BLQ policies


BLQ_T = [0, 1, 2, 3, 4, 5, 6]
BLQ_C = [0.5, 5, 0.5, 4, 2, 0.5, 0.5]  # lloq 1: BLQ first, middle, last


def _blq(**opts):
    frame = pl.DataFrame({"subject_id": ["S"] * 7, "time": BLQ_T, "conc": BLQ_C, "lloq": [1.0] * 7})
    return derive_nca(frame, lloq="lloq", options=NcaOptions(method="linear", **opts)).row(0, named=True)


def test_blq_defaults_keep_drop_keep():
    r = _blq()
    assert r["n_blq"] == 4 and r["n_samples"] == 6
    assert close(r["auclast"], 2.5 + 9 + 3) and close(r["aucall"], 2.5 + 9 + 3 + 1)
    assert (r["tmax"], r["tlast"], r["clast.obs"], r["cmax"]) == (1, 4, 2, 5)


def test_blq_policies():
    r = _blq(blq_first="drop")
    assert r["auclast"] is None and "auc_before_first" in codes(r)
    assert close(_blq(blq_first=0.25)["auclast"], 2.625 + 9 + 3)
    assert close(_blq(blq_middle="keep")["auclast"], 2.5 + 2.5 + 2 + 3)
    assert close(_blq(blq_middle=0.5)["auclast"], 2.5 + 2.75 + 2.25 + 3)
    r = _blq(blq_last="drop")
    assert close(r["aucall"], r["auclast"]) and r["n_samples"] == 4
    r = _blq(blq_last=0.5)  # imputed after tlast: the AUC treats it as measured (clean.conc.blq) ...
    assert close(r["auclast"], 2.5 + 9 + 3 + 1.25 + 0.5)
    assert r["tlast"] == 4  # ... but pk.calc.tlast reads the raw data (R/pk.calc.simple.R)
    with pytest.raises(ValueError):
        NcaOptions(blq_middle="zero")


def test_blq_from_value_text_and_lloq_boundary():
    frame = pl.DataFrame({
        "subject_id": ["S"] * 7, "time": BLQ_T,
        "conc": [None, 5.0, None, 4.0, 2.0, 1.0, None],  # conc == lloq is quantifiable
        "lloq": [1.0] * 7,
        "value_text": ["<1", None, "< 1", None, None, None, "<=1"],
    })
    r = derive_nca(frame, lloq="lloq", value_text="value_text", options=NcaOptions(method="linear")).row(0, named=True)
    assert r["n_blq"] == 3 and r["tlast"] == 5 and r["clast.obs"] == 1.0
    assert close(r["auclast"], 2.5 + 9 + 3 + 1.5) and close(r["aucall"], r["auclast"] + 0.5)
    # a missing value without a censored text is dropped (PKNCA conc.na = "drop")
    frame2 = frame.with_columns(pl.lit(None, dtype=pl.String).alias("value_text"))
    r2 = derive_nca(frame2, lloq="lloq", value_text="value_text", options=NcaOptions(method="linear")).row(0, named=True)
    assert r2["n_samples"] == 4 and r2["auclast"] is None  # the first sample (t=0) is missing


def test_above_uloq_text_is_used_with_warning():
    frame = pl.DataFrame({"subject_id": ["S"] * 3, "time": [0.0, 1, 2], "conc": [0.0, None, 2.0],
                          "value_text": [None, ">100", None]})
    r = derive_nca(frame, value_text="value_text").row(0, named=True)
    assert r["cmax"] == 100 and "above_uloq" in codes(r)


# ---------------------------------------------------------------------------------------------
# interpolation methods, hand-computed segments


def test_lin_log_and_log_up_log_down_segments():
    t, c = [0, 1, 2, 4], [1, 4, 2, 3]  # tmax 1; up, down, up after tmax
    assert close(one(t, c, method="linear")["auclast"], 2.5 + 3 + 5)
    assert close(one(t, c, method="lin-up/log-down")["auclast"], 2.5 + 2 / L2 + 5)
    assert close(one(t, c, method="lin-log")["auclast"], 2.5 + 2 / L2 + 2 / math.log(1.5))
    assert close(one(t, c, method="log-up/log-down")["auclast"], 3 / math.log(4) + 2 / L2 + 2 / math.log(1.5))
    # zeros: linear in every method; equal concentrations: linear (the log formula's limit)
    t, c = [0, 1, 2, 3, 4], [0, 4, 4, 2, 0]
    for m in ("lin-log", "log-up/log-down"):
        r = one(t, c, method=m)
        assert close(r["auclast"], 2 + 4 + 2 / L2) and close(r["aucall"], 2 + 4 + 2 / L2 + 1)
    assert normalise_method("lin up/log down") == "lin-up/log-down"
    assert normalise_method("log-log") == "log-up/log-down"


def test_log_up_reduces_exponential_expansion_bias():
    """kinetics.md §1.1 worked example: points (0,0), (14, Cmax), (28, C28) and the true curve."""
    cmax, c28 = 183_945.0, 5_084.0
    t = np.linspace(0, 14, 15)
    rho = math.log(cmax / 6.15) / 14
    c = [6.15 * math.exp(rho * x) for x in t]  # exponential expansion sampled daily
    dense = one(list(t), c, method="linear")["auclast"]
    sparse_lin = one([0, 14], [6.15, cmax], method="lin-up/log-down")
    sparse_log = one([0, 14], [6.15, cmax], method="log-up/log-down")
    truth = (cmax - 6.15) / rho
    assert sparse_lin["auclast"] > 5 * truth and abs(sparse_log["auclast"] / truth - 1) < 1e-12
    assert dense > truth
    assert "sparse_early_sampling" in codes(sparse_lin)
    assert any("log-up/log-down" in w for w in sparse_lin["warnings"])
    assert not any("consider method" in w for w in sparse_log["warnings"])
    r = one([0, 14, 28], [0, cmax, c28], (0, 28), method="lin-up/log-down")
    assert close(r["auclast"], 7 * cmax + 14 * (cmax - c28) / math.log(cmax / c28))


# ---------------------------------------------------------------------------------------------
# interval edges and aucint


EDGE_T, EDGE_C = [0, 1, 2, 4, 8], [0, 8, 4, 2, 1]


def test_interval_end_interpolated_with_the_method():
    # auclast: the samples in [0, 3] only (PKNCA pk.nca); aucint.last interpolates at 3
    r = one(EDGE_T, EDGE_C, (0, 3), method="linear")
    assert close(r["auclast"], 4 + 6) and r["tlast"] == 2 and r["n_samples"] == 3
    assert close(r["aucint.last"], 4 + 6 + 3.5)
    c3 = math.sqrt(8)  # log interpolation between 4 at t=2 and 2 at t=4
    r = one(EDGE_T, EDGE_C, (0, 3))
    assert close(r["auclast"], 4 + 4 / L2)
    assert close(r["aucint.last"], 4 + 4 / L2 + (4 - c3) / math.log(4 / c3)) and close(r["aucint"], r["aucint.last"])
    # start interpolated too: linear up between 0 and 8 at t=0.5, then the samples; no sample at
    # 0.5, so no auclast
    r = one(EDGE_T, EDGE_C, (0.5, 2))
    assert close(r["aucint.last"], 0.5 * (4 + 8) / 2 + 4 / L2) and r["cmax"] == 8 and r["n_samples"] == 2
    assert r["auclast"] is None and "auc_before_first" in codes(r)


def test_aucint_extrapolates_with_lambda_z_or_is_null():
    lam = L2 / 4
    r = one(EDGE_T, EDGE_C, (0, 12), lambda_z_fixed={None: lam})
    base = one(EDGE_T, EDGE_C, (0, INF))["auclast"]
    assert close(r["auclast"], base) and close(r["aucint.last"], base)
    assert close(r["aucint"], base + 1 / lam * (1 - math.exp(-lam * 4)))
    r = one(EDGE_T, EDGE_C, (0, INF), lambda_z_fixed={None: lam})
    assert close(r["aucint"], r["aucinf.obs"]) and close(r["aucinf.obs"], base + 1 / lam)
    r = one(EDGE_T, EDGE_C, (9, 12), lambda_z_fixed={None: lam})
    assert close(r["aucint"], 1 / lam * (math.exp(-lam) - math.exp(-lam * 4))) and r["aucint.last"] == 0
    r = one(EDGE_T, EDGE_C, (0, 12), min_hl_points=5)  # no lambda.z: no silent truncation
    assert r["aucint"] is None and "aucint_no_lambda_z" in codes(r) and close(r["aucint.last"], base)


def test_aucint_before_first_sample_starts_from_zero():
    r = one([1, 2, 4, 8], [8, 4, 2, 1], (0, 8))
    assert r["auclast"] is None and "auc_before_first" in codes(r)
    assert close(r["aucint.last"], 4 + 4 / L2 + 4 / L2 + 4 / L2)
    assert "aucint_before_first" in codes(r)


def test_aucall_triangle_inside_interval():
    # tlast 2, BLQ at 6: AUCall adds the triangle 2 -> 6 when the BLQ sample is in the interval ...
    r = one([0, 1, 2, 6], [0, 8, 4, 0], (0, 6), method="linear")
    assert close(r["auclast"], 4 + 6) and close(r["aucall"], 4 + 6 + 4 * 4 / 2)
    # ... and nothing when it is not (PKNCA uses the interval's samples only; no cut triangle)
    r = one([0, 1, 2, 6], [0, 8, 4, 0], (0, 3), method="linear")
    assert close(r["auclast"], 4 + 6) and close(r["aucall"], 4 + 6)


def test_aucint_all_adds_the_triangle_cut_at_the_interval():
    """PKNCA aucint.all ("extrapolating from Tlast ... with the triangle from Tlast to the next point and
    zero thereafter (matching AUCall)", R/aucint.R): by hand, linear method, tlast 2 (conc 4), a 0 at 6.
    The line from (2, 4) to (6, 0) is c(t) = 4 (6 - t) / 4 = 6 - t."""
    t, c = [0, 1, 2, 6], [0, 8, 4, 0]
    r = one(t, c, (0, INF), method="linear")
    assert close(r["aucint.last"], 4 + 6) and close(r["aucint.all"], 4 + 6 + 4 * 4 / 2)
    assert close(r["aucint.all"], r["aucall"])  # over the whole profile it is AUCall
    # cut inside the triangle: 2 -> 3 under c(t) = 6 - t is (4 + 3) / 2 (aucall has no cut triangle)
    r = one(t, c, (0, 3), method="linear")
    assert close(r["aucint.last"], 10) and close(r["aucint.all"], 10 + 3.5) and close(r["aucall"], 10)
    # an interval inside the triangle only: 3 -> 5 is (3 + 1) / 2 * 2; aucint.last is 0 there
    r = one(t, c, (3, 5), method="linear")
    assert r["aucint.last"] == 0 and close(r["aucint.all"], 4.0)
    # after the 0: nothing
    assert one(t, c, (7, 9), method="linear")["aucint.all"] == 0
    # no sample after tlast, or the BLQ after it dropped (blq_last="drop"): no triangle (PKNCA cleans first)
    r = one([0, 1, 2], [0, 8, 4], (0, 5), method="linear")
    assert close(r["aucint.all"], r["aucint.last"]) and close(r["aucint.all"], 10)
    r = one(t, c, (0, INF), method="linear", blq_last="drop")
    assert close(r["aucint.all"], 10)
    # log-down before tlast is the method's; the triangle stays linear (a log segment cannot reach 0)
    r = one([0, 1, 2, 6], [0, 8, 4, 0], (0, INF))
    assert close(r["aucint.all"], 4 + 4 / L2 + 8)


# ---------------------------------------------------------------------------------------------
# time above, persistence, doses, units


def test_time_above_pknca_linear():
    def ta(conc, time, thr):
        frame = pl.DataFrame({"subject_id": [1] * len(conc), "time": [float(x) for x in time],
                              "conc": conc}, schema_overrides={"conc": pl.Float64})
        return time_above(frame, thr, options=NcaOptions(method="linear"))["time_above"][0]

    assert ta([5], [5], 5) is None
    assert ta([5, 5], [1, 2], 5) == 1
    assert ta([5, 6, 5], [1, 2, 3], 5) == 2
    assert ta([4, 4], [1, 2], 5) == 0
    assert ta([5, 4, 5], [1, 2, 3], 5) == 0
    assert ta([6, 4, 5], [1, 2, 3], 5) == 0.5
    assert ta([6, None, 5], [1, 2, 3], 5) == 2


def test_time_above_log_segments_and_columns():
    frame = pl.DataFrame({"subject_id": [1] * 3, "time": [0.0, 1.0, 3.0], "conc": [0.0, 8.0, 2.0]})
    out = derive_nca(frame, threshold=4.0)
    assert out.columns[-2:] == ["conc_above", "time_above"]
    # linear up 0 -> 8: above 4 from t=0.5; log down 8 -> 2 over 2 h: 4 reached at t=2
    assert close(out["time_above"][0], 0.5 + 1.0)


def test_doses_time_from_first_or_last():
    frame = pl.DataFrame({"subject_id": ["A"] * 5 + ["B"] * 3, "time": [0.0, 2, 5, 9, 16, 0, 4, 8],
                          "conc": [0.0, 10, 80, 40, 10, 0, 5, 2]})
    doses = pl.DataFrame({"subject_id": ["A", "A"], "time": [0.0, 2.0]})
    out = derive_nca(frame, doses=doses)
    a, b = out.row(0, named=True), out.row(1, named=True)
    assert a["time_offset"] == 0 and a["tmax"] == 5 and b["time_offset"] is None
    assert "no_dose_time" in codes(b)
    last = derive_nca(frame, doses=doses, options=NcaOptions(time_from="last")).row(0, named=True)
    assert last["time_offset"] == 2 and last["tmax"] == 3 and last["n_samples"] == 4  # -2 is before 0
    assert close(last["auclast"], one([0, 3, 7, 14], [10, 80, 40, 10])["auclast"])
    assert close(derive_nca(frame, doses=doses, intervals=[(-2, INF)], options=NcaOptions(time_from="last"))
                 ["auclast"][0], a["auclast"])


def test_copies_per_cell():
    assert GENOMES_PER_UG_GDNA == 151_500
    assert math.isclose(copies_per_cell(183_945), 1.2142, rel_tol=1e-4)  # kinetics.md §1.1
    assert math.isclose(copies_per_cell(5_084), 0.0336, rel_tol=1e-2)
    assert np.allclose(copies_per_cell(np.array([151_500.0, 0.0])), [1.0, 0.0])
    assert pl.select(copies_per_cell(pl.lit(303_000.0))).item() == 2.0
    with pytest.raises(ValueError):
        copies_per_cell(-1)


def test_parse_interval():
    assert parse_interval("0,28") == (0.0, 28.0)
    assert parse_interval("0, Inf") == (0.0, INF)
    assert parse_interval((1, 2)) == (1.0, 2.0)
    for bad in ("0", "a,b", (3, 1), "inf,inf"):
        with pytest.raises(ValueError):
            parse_interval(bad)


def test_frame_errors_and_order():
    frame = pl.DataFrame({"subject_id": ["B", "A", "B"], "time": [1.0, 0.0, 0.0], "conc": [1.0, 2.0, 0.0]})
    out = derive_nca(frame)
    assert out["subject_id"].to_list() == ["B", "A"]  # first appearance; rows need not be sorted
    with pytest.raises(ValueError, match="not found"):
        derive_nca(frame, conc="value")
    with pytest.raises(ValueError, match="two samples at time 1"):
        derive_nca(pl.DataFrame({"subject_id": ["A", "A"], "time": [1.0, 1.0], "conc": [1.0, 2.0]}))
    with pytest.raises(ValueError, match="negative"):
        derive_nca(pl.DataFrame({"subject_id": ["A"], "time": [1.0], "conc": [-1.0]}))
    with pytest.raises(ValueError, match="row 1 .*'time'.*'x'"):
        derive_nca(pl.DataFrame({"subject_id": ["A", "A"], "time": ["0", "x"], "conc": [1.0, 2.0]}))
    empty = derive_nca(frame.head(0))
    assert empty.height == 0 and empty.columns == ["subject_id", *NCA_COLUMNS]
    two = derive_nca(frame, intervals=[(0, 1), "0,inf"])
    assert two.height == 4 and two["end"].to_list() == [1.0, INF, 1.0, INF]


# ---------------------------------------------------------------------------------------------
# the CSV command


def _write(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n", encoding="utf-8")
    return path


def test_command_errors(tmp_path):
    out = tmp_path / "out.csv"
    good = "id,t,c\nA,0,0\nA,1,5\nA,2,2.5\n"
    f = _write(tmp_path / "in.csv", good)
    with pytest.raises(ValueError, match=r"in\.csv.*column\(s\) \['conc'\] not found"):
        nca_command(f, out, subject="id", time="t", conc="conc")
    f = _write(tmp_path / "bad_time.csv", "id,t,c\nA,0,0\nA,one,5\n")
    with pytest.raises(ValueError, match=r"bad_time\.csv: row 2 \(line 3\), column 't': 'one' is not a number"):
        nca_command(f, out, subject="id", time="t", conc="c")
    f = _write(tmp_path / "bad_conc.csv", "id,t,c\nA,0,0\nA,1,high\n")
    with pytest.raises(ValueError, match=r"bad_conc\.csv: row 2 \(line 3\), column 'c': 'high'"):
        nca_command(f, out, subject="id", time="t", conc="c")
    f = _write(tmp_path / "order.csv", "id,t,c\nA,0,0\nB,0,1\nA,2,5\nA,1,3\n")
    with pytest.raises(ValueError, match=r"order\.csv: row 4 \(line 5\), column 't': time 1 is not greater "
                                         r"than the previous time 2 of subject 'A'"):
        nca_command(f, out, subject="id", time="t", conc="c")
    f = _write(tmp_path / "ragged.csv", "id,t,c\nA,0,0\nA,1\n")
    with pytest.raises(ValueError, match=r"ragged\.csv: row 2 \(line 3\): expected 3 field\(s\) as in the header \(.*\), found 2"):
        nca_command(f, out, subject="id", time="t", conc="c")
    f = _write(tmp_path / "neg.csv", "id,t,c\nA,0,0\nA,1,-2\n")
    with pytest.raises(ValueError, match=r"neg\.csv: row 2 \(line 3\), column 'c': negative"):
        nca_command(f, out, subject="id", time="t", conc="c")
    f = _write(tmp_path / "lloq.csv", "id,t,c,q\nA,0,0,x\n")
    with pytest.raises(ValueError, match=r"lloq\.csv: row 1 \(line 2\), column 'q'"):
        nca_command(f, out, subject="id", time="t", conc="c", lloq="q")
    with pytest.raises(ValueError, match="no such file"):
        nca_command(tmp_path / "missing.csv", out, subject="id", time="t", conc="c")
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))


def test_command_censored_lloq_intervals(tmp_path):
    f = _write(tmp_path / "in.csv", "id,t,c,q\nA,0,<10,10\nA,1,80,10\nA,2,40,10\nA,4,5,10\nA,8,NA,10\nB,0,0,10\n"
                                    "B,1,20,10\n")
    out = tmp_path / "res" / "out.csv"
    s = nca_command(f, out, subject="id", time="t", conc="c", lloq="q", method="linear",
                    intervals=["0,2", "0,inf"])
    assert s["results"] == 4 and s["intervals"] == [[0.0, 2.0], [0.0, INF]]
    res = pl.read_csv(out)
    a = res.filter((pl.col("id") == "A") & (pl.col("end") == 2.0)).row(0, named=True)
    assert a["n_blq"] == 1 and close(a["auclast"], 40 + 60)
    a_inf = res.filter((pl.col("id") == "A") & pl.col("end").is_infinite()).row(0, named=True)
    assert a_inf["n_blq"] == 2 and a_inf["tlast"] == 2 and close(a_inf["aucall"], 100 + 40)
    assert res["method"].unique().to_list() == ["linear"]
    out.write_text("old")
    nca_command(f, out, subject="id", time="t", conc="c")  # replaced atomically
    assert pl.read_csv(out).height == 2 and not list(out.parent.glob("*.tmp"))


# ---------------------------------------------------------------------------------------------
# property tests


_GRID = [round(10 ** (k / 4), 6) for k in range(-4, 13)]  # 0.1 .. 1e3, no near-equal values


@st.composite
def cohorts(draw):
    n_sub = draw(st.integers(1, 5))
    rows = []
    for s in range(n_sub):
        n = draw(st.integers(1, 11))
        steps = draw(st.lists(st.sampled_from([0.25, 0.5, 1, 2, 3.5, 7]), min_size=n, max_size=n))
        t0 = draw(st.sampled_from([0.0, 0.0, 0.5, -1.0]))
        times = list(np.round(t0 + np.cumsum([0.0] + steps[:-1]), 6))
        for t in times:
            kind = draw(st.sampled_from(["pos"] * 6 + ["zero", "blq", "na"]))
            c = {"pos": draw(st.sampled_from(_GRID)), "zero": 0.0, "blq": 0.05, "na": None}[kind]
            rows.append((f"S{s}", float(t), c))
    return rows


@st.composite
def option_sets(draw):
    return NcaOptions(
        method=draw(st.sampled_from(["lin-up/log-down", "linear", "lin-log", "log-up/log-down"])),
        blq_first=draw(st.sampled_from(["keep", "drop", 0.05])),
        blq_middle=draw(st.sampled_from(["drop", "keep", 0.05])),
        blq_last=draw(st.sampled_from(["keep", "drop", 0.05])),
        min_hl_points=draw(st.integers(2, 4)),
        allow_tmax_in_half_life=draw(st.booleans()),
        adj_r_squared_factor=draw(st.sampled_from([1e-4, 1e-2, 0.3])),
        first_tmax=draw(st.booleans()),
    )


INTERVALS = st.lists(st.sampled_from([(0.0, INF), (0.0, 3.0), (0.5, 10.0), (-1.0, INF), (2.0, 2.5),
                                      (1.0, 6.0), (0.0, 30.0)]), min_size=1, max_size=3, unique=True)


def _frame(rows):
    return pl.DataFrame({"subject_id": [r[0] for r in rows], "time": [r[1] for r in rows],
                         "conc": [r[2] for r in rows], "lloq": [0.1] * len(rows)},
                        schema_overrides={"conc": pl.Float64})


COMPARED = ("n_samples", "n_blq", "cmax", "tmax", "tlast", "clast.obs", "auclast", "aucall", "aucinf.obs",
            "aucint", "aucint.last", "aucint.all", "lambda.z", "half.life", "r.squared", "adj.r.squared",
            "lambda.z.n.points", "lambda.z.time.first", "lambda.z.time.last", "span.ratio", "clast.pred",
            "time_above")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=cohorts(), opts=option_sets(), ivs=INTERVALS, thr=st.sampled_from([None, 1.0, 10.0]),
       fixed=st.booleans())
def test_vectorised_equals_per_subject_reference(rows, opts, ivs, thr, fixed):
    """The vectorised engine equals the straightforward per-subject loop of benchmarks/baselines.py
    (PKNCA's pk.nca interval rules, issue 13 point 5) on every column and warning."""
    if fixed:
        opts = NcaOptions(**{**{f: getattr(opts, f) for f in ("method", "blq_first", "blq_middle", "blq_last",
                                                             "min_hl_points", "allow_tmax_in_half_life",
                                                             "adj_r_squared_factor", "first_tmax")},
                             "lambda_z_fixed": {"S0": 0.2}, "lambda_z_range": {None: (1.0, 12.0)}})
    out = derive_nca(_frame(rows), lloq="lloq", intervals=ivs, options=opts, threshold=thr)
    ref = baselines.rowwise_nca([(s, t, c, 0.1, None) for s, t, c in rows], intervals=ivs, options=opts,
                                threshold=thr)
    cols = COMPARED if thr is not None else COMPARED[:-1]
    mine = baselines.nca_results_frame(ref, cols)
    theirs = out.select("subject_id", "start", "end", *cols,
                        pl.col("warnings").list.eval(pl.element().str.split(":").list.first()).alias("codes"))
    bad = baselines.compare_nca(mine, theirs, cols, rtol=1e-12)
    assert not bad, bad


@settings(max_examples=100, deadline=None)
@given(rows=cohorts(), opts=option_sets(), ivs=INTERVALS)
def test_auc_non_negative(rows, opts, ivs):
    out = derive_nca(_frame(rows), lloq="lloq", intervals=ivs, options=opts)
    for c in ("auclast", "aucall", "aucinf.obs", "aucint", "aucint.last", "aucint.all"):
        assert (out[c].drop_nulls() >= 0).all(), c
    both = out.filter(pl.col("aucint.all").is_not_null())
    assert (both["aucint.all"] >= both["aucint.last"] - 1e-9).all()
    assert (out["aucall"].drop_nulls() >= out.filter(pl.col("aucall").is_not_null())["auclast"] - 1e-9).all()


@settings(max_examples=100, deadline=None)
@given(conc=st.lists(st.sampled_from(_GRID), min_size=2, max_size=10, unique=True),
       steps=st.lists(st.sampled_from([0.5, 1, 2, 4]), min_size=10, max_size=10))
def test_linear_ge_lin_up_log_down_on_decreasing_data(conc, steps):
    conc = sorted(conc, reverse=True)
    time = list(np.cumsum([0.0] + steps[: len(conc) - 1]))
    lin = one(time, conc, method="linear")["auclast"]
    log = one(time, conc, method="lin-up/log-down")["auclast"]
    assert lin >= log > 0
    assert close(one(time, conc, method="log-up/log-down")["auclast"], log)


def test_reference_agrees_when_an_interval_has_only_blq_samples():
    """Hypothesis found it (2026-12-04): in the interval [1, 6] S1 has only zeros, so no tlast; with
    blq_first imputed, a lambda.z fit exists and clast.pred is not defined. The reference crashed on
    it; both now say NaN, and everything else agrees."""
    import math as _m

    rows = [("S0", 0.0, 0.1), ("S0", 0.25, 0.1), ("S0", 0.5, 0.1), ("S0", 0.75, 0.1), ("S1", 0.0, 0.1),
            ("S1", 0.25, 0.1), ("S1", 0.5, 0.1), ("S1", 0.75, 0.1), ("S1", 1.0, 0.0), ("S1", 1.25, 0.0),
            ("S2", 0.0, 0.1), ("S3", 0.0, 0.1)]
    opts = NcaOptions(method="lin-up/log-down", blq_first=0.05, blq_middle="drop", blq_last="keep", min_hl_points=2,
                      allow_tmax_in_half_life=False, adj_r_squared_factor=0.0001, min_span_ratio=2.0,
                      first_tmax=False, time_from="first", min_samples_before_tmax=3)
    test_vectorised_equals_per_subject_reference.hypothesis.inner_test(
        rows=rows, opts=opts, ivs=[(0.0, _m.inf), (1.0, 6.0)], thr=None, fixed=True)
