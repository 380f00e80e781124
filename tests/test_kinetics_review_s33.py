"""Session 33: the leftovers of the line-by-line review of the cellular kinetics (fix33_kin). Expected
values are derived by hand (formulas in the comments; Python only does the arithmetic).

1. Two samples of one subject on one whole day without a time: derive_car_kinetics raised a ValueError
   (nca/frame.py, "two samples at time 7"), the subject had no car_kinetics row, and exposure-response
   did not name it. Now: not evaluable, reason "two samples at the same time (day 7)", every value
   empty (missing is not negative), the other subjects computed, and exposure_response excludes it.
2. aucint_no_lambda_z (about PKNCA's 0-infinity aucint) sat beside a valid AUC0-28. Warranted only when
   the window ends strictly after tlast, lambda.z is not available and no BLQ sample closes the curve.
3. n_blq counted the 0 imputed at the infusion (not a sample) as a BLQ sample.
4. "day 35.0" and "day 6.41667" in the reasons: whole days print as "day 35", others to 2 decimals.
"""

from __future__ import annotations

import math
import warnings

import polars as pl
import pytest

from cartlab.analyze import Analysis
from cartlab.io import read_study
from cartlab._days import day_text
from cartlab.kinetics.car import derive_car_kinetics, derive_kinetics_summary
from cartlab.kinetics.exposure import derive_exposure_response
from cartlab.kinetics.nca import nca_profile

U = "copies/ug gDNA"
LN10, LN2 = math.log(10), math.log(2)


def _rows(sid, pairs, lloq=50):
    """Observation rows; a value given as a string is the value_text (e.g. "<50")."""
    return [f"{sid},{d},,CARCOPY,{'' if isinstance(v, str) else v},{v if isinstance(v, str) else ''},{U},{lloq}"
            for d, v in pairs]


def _study(root, obs, subjects=None):
    sids = sorted({r.split(",")[0] for r in obs})
    root.mkdir(parents=True, exist_ok=True)
    (root / "subjects.csv").write_text(subjects or "subject_id,disease\n" + "".join(f"{s},LBCL\n" for s in sids))
    (root / "doses.csv").write_text("subject_id,day,agent,dose,unit\n"
                                    + "".join(f"{s},0,CAR-T,1e6,cells/kg\n" for s in sids))
    # a normal temperature on day 1 for every subject: a known CRS grade (0), so that exposure-response
    # has an outcome for each subject and only the kinetics can exclude one
    temps = [f"{s},1,,TEMP,37,,C," for s in sids]
    (root / "observations.csv").write_text("subject_id,day,datetime,param,value,value_text,unit,lloq\n"
                                           + "\n".join(obs + temps) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_study(root)


def _by_subject(frame):
    return {r["subject_id"]: r for r in frame.iter_rows(named=True)}


def _codes(row):
    return [w.split(":")[0] for w in row["warnings"] or []]


# 0->1 linear (0, 100): 50; 1->7 up linear (100, 10000): 6 * 10100 / 2 = 30300;
# 7->14 down log (10000, 1000): 7 * 9000 / ln 10; 14->28 down log (1000, 100): 14 * 900 / ln 10
AUC_B2 = 50 + 30300 + 7 * 9000 / LN10 + 14 * 900 / LN10
B2 = ((1, 100), (7, 10000), (14, 1000), (28, 100))


# -- 1. two samples on one whole day -------------------------------------------------------------------


@pytest.fixture(scope="module")
def dup_study(tmp_path_factory):
    obs = (_rows("A1", ((1, 100), (7, 10000), (7, 12000), (14, 1000), (28, 100)))
           + _rows("B2", B2)
           + _rows("C3", ((1, 100), (7, 10000), (14, 1000), (14, 900), (21, 500), (21, 400), (28, 100))))
    return _study(tmp_path_factory.mktemp("kin_s33_dup"), obs)


def test_two_samples_on_one_day_make_the_subject_not_evaluable_not_an_error(dup_study):
    k = _by_subject(derive_car_kinetics(dup_study))  # raised ValueError before session 33
    assert set(k) == {"A1", "B2", "C3"}
    a = k["A1"]
    assert a["not_evaluable"] == "two samples at the same time (day 7)"
    assert k["C3"]["not_evaluable"] == "two samples at the same time (day 14, day 21)"
    assert a["rule"] == "car_kinetics.duplicate_time" and _codes(a) == ["duplicate_time"]
    assert "two samples at the same time (day 7)" in a["reason"]
    # missing is not negative: every value empty, never 0
    assert all(a[c] is None for c in ("cmax", "tmax", "tlast", "auclast", "auc_window", "lambda.z"))
    assert a["auc_window_basis"] == "not evaluable: two samples at the same time (day 7)"
    assert a["param"] == "CARCOPY" and len(a["evidence"]) == 5  # the 5 observation rows it came from
    # the other subject is computed as usual
    assert k["B2"]["not_evaluable"] is None and k["B2"]["cmax"] == 10000.0
    assert k["B2"]["auc_window"] == pytest.approx(AUC_B2, rel=1e-12)


def test_the_not_evaluable_reason_reaches_the_summary_and_exposure_response(dup_study):
    s = _by_subject(derive_kinetics_summary(dup_study))
    assert s["A1"]["car_cmax"] is None and s["A1"]["car_not_evaluable"] == "two samples at the same time (day 7)"
    assert s["B2"]["car_not_evaluable"] is None
    er = Analysis(dup_study).table("exposure_response")
    why = "CAR-T kinetics not evaluable: two samples at the same time (day 7): A1"
    for r in er.filter(pl.col("outcome") == "crs_grade_ge3").iter_rows(named=True):
        assert why in r["excluded"], r["excluded"]  # A1 was missing from excluded before session 33
        assert "B2" not in r["excluded"] and r["n"] == 1  # B2 (CRS grade 0) is analysed


def test_exposure_response_names_the_kinetics_reason_on_a_summary_frame():
    summary = pl.DataFrame({"subject_id": ["A", "B", "C", "D", "E"],
                            "car_cmax": [None, 10.0, 100.0, 1000.0, 50.0],
                            "car_auc_0_28": [None, 1.0, 2.0, 3.0, 4.0],
                            "car_not_evaluable": ["two samples at the same time (day 7)", None, None, None, None],
                            "crs_grade_astct": [1, 0, 3, 4, 0]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        er = derive_exposure_response(summary, outcomes=("crs_grade_ge3",))
    assert er["excluded"].to_list() == ["CAR-T kinetics not evaluable: two samples at the same time (day 7): A"] * 2
    assert er["n"].to_list() == [4, 4]


def test_a_timed_infusion_names_the_study_day_of_the_duplicate(tmp_path):
    # infusion at 14:00: the whole-day samples are at day - 0.5833 from it; the reason names the study day
    subjects = "subject_id,disease,infusion_datetime\nT1,LBCL,2024-03-01T14:00\n"
    s = _study(tmp_path / "t", _rows("T1", ((1, 100), (7, 10000), (7, 9000), (14, 1000))), subjects)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        k = derive_car_kinetics(s).row(0, named=True)
    assert k["not_evaluable"] == "two samples at the same time (day 7)"


# -- 2. aucint_no_lambda_z only where the window needs lambda.z -----------------------------------------


@pytest.fixture(scope="module")
def tail_study(tmp_path_factory):
    # none of these has lambda.z: at most 2 positive samples after tmax (PKNCA min.hl.points 3)
    obs = (_rows("P1", ((1, 100), (7, 10000), (14, 1000), (21, 500), (35, "<50")))   # BLQ after tlast 21
           + _rows("P2", ((1, 100), (7, 1000), (14, 5000), (28, 10000), (35, 8000)))  # tlast 35 > 28
           + _rows("P3", ((1, 100), (7, 10000), (14, 1000), (21, 500)))               # tlast 21, nothing after
           + _rows("P4", ((1, 100), (7, 1000), (14, 5000), (28, 10000))))             # tlast = day 28 exactly
    return _study(tmp_path_factory.mktemp("kin_s33_tail"), obs)


def test_aucint_no_lambda_z_only_when_the_window_needs_extrapolation(tail_study):
    k = _by_subject(derive_car_kinetics(tail_study))
    assert all(k[s]["lambda.z"] is None for s in k)
    # P1: AUClast to day 21, then linear to the BLQ 0 on day 35: c(28) = 500 * 7/14 = 250
    auc_p1 = 50 + 30300 + 7 * 9000 / LN10 + 7 * 500 / LN2 + 7 * (500 + 250) / 2
    assert k["P1"]["auc_window"] == pytest.approx(auc_p1, rel=1e-12)
    # P2, P4: 0->1 50; 1->7 6*1100/2 = 3300; 7->14 7*6000/2 = 21000; 14->28 14*15000/2 = 105000 (all rising)
    assert k["P2"]["auc_window"] == pytest.approx(129350, rel=1e-12)
    assert k["P4"]["auc_window"] == pytest.approx(129350, rel=1e-12)
    for sid in ("P1", "P2", "P4"):  # a valid AUC0-28: no aucint_no_lambda_z beside it
        assert "aucint_no_lambda_z" not in _codes(k[sid]), (sid, k[sid]["warnings"])
    # P3: day 28 is after tlast (21), no lambda.z and no BLQ sample after: extrapolation needed, not possible
    assert k["P3"]["auc_window"] is None and "aucint_no_lambda_z" in _codes(k["P3"])
    msg = next(w for w in k["P3"]["warnings"] if w.startswith("aucint_no_lambda_z"))
    assert "AUC window (day 0-28)" in msg and "(day 21)" in msg


def test_engine_no_warning_when_the_interval_ends_at_tlast():
    # interval 0-28 with the last sample on day 28: no extrapolation; rising profile (no lambda.z)
    r = nca_profile([0, 1, 7, 14, 28], [0, 100, 1000, 5000, 10000], intervals=[(0, 28)]).row(0, named=True)
    assert r["aucint"] == pytest.approx(129350, rel=1e-12)
    assert not any(w.startswith("aucint_no_lambda_z") for w in r["warnings"])


# -- 3. n_blq counts observed BLQ samples, not the imputed 0 -------------------------------------------


def test_n_blq_counts_observed_blq_samples_only(tmp_path):
    obs = (_rows("N0", B2)                                                           # no BLQ sample
           + _rows("N3", ((1, "<50"), (7, 10000), (10, "<50"), (14, 1000), (35, "<50")))  # first, middle, last
           + _rows("Z4", ((1, "<50"), (7, "<50"), (14, "<50"), (28, "<50"))))       # a non-expander
    k = _by_subject(derive_car_kinetics(_study(tmp_path / "n", obs)))
    assert k["N0"]["n_blq"] == 0  # was 1: the 0 imputed at the infusion
    assert k["N3"]["n_blq"] == 3  # the BLQ kept as 0 (days 1, 35) and the one dropped (day 10) alike
    assert k["Z4"]["n_blq"] == 4  # was 5
    # N0: the imputed 0 and 4 samples are the NCA's points
    assert k["N0"]["n_samples"] == 5
    # a non-expander has a reason (it was empty: a null Tmax made the whole text null)
    assert k["Z4"]["cmax"] == 0.0 and k["Z4"]["auc_window"] == 0.0
    assert "no quantifiable sample (Cmax 0)" in k["Z4"]["reason"]


# -- 4. days in messages -------------------------------------------------------------------------------


def test_day_text():
    assert [day_text(x) for x in (42.0, 13.999999999999998, 7 - 14 / 24, 14.5, -0.001, 0.25)] == \
        ["42", "14", "6.42", "14.5", "0", "0.25"]


def test_whole_days_print_without_decimals_and_timed_ones_with_two(tail_study, tmp_path):
    k = _by_subject(derive_car_kinetics(tail_study))
    assert k["P1"]["auc_window_basis"] == ("AUClast, then linear from the last quantifiable sample to concentration 0 "
                                           "at the BLQ sample on day 35, interpolated at day 28")
    assert "Cmax 10000 at day 7, last quantifiable day 21, AUC0-28 " in k["P1"]["reason"]
    # infusion at 14:00 (day 0.58333): the whole-day day-7 peak is 7 - 14/24 = 6.41667 days after it
    subjects = "subject_id,disease,infusion_datetime\nT1,LBCL,2024-03-01T14:00\n"
    s = _study(tmp_path / "t", _rows("T1", ((1, 100), (7, 10000), (14, 1000), (21, 500), (28, 100))), subjects)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = derive_car_kinetics(s).row(0, named=True)
    assert "Cmax 10000 at day 6.42, last quantifiable day 27.42," in r["reason"]  # was "day 6.41667"


def test_explain_names_the_not_evaluable_reason(dup_study):
    """`cartlab explain --what kinetics` of A1 (two samples on day 7) says why there is no NCA, not
    "no quantifiable sample" (A1 has quantifiable samples: 100 ... 12000)."""
    from cartlab.analyze import Analysis
    from cartlab.explain import explain

    text = explain(Analysis(dup_study), "kinetics", "A1").headline
    assert "not evaluable: two samples at the same time (day 7)" in text
    assert "no quantifiable sample" not in text
