"""Review40_kin fixes: a CAR-T re-infusion ends the first profile (A1), exposure-response uses the
analysis's responder (B8), the window AUC says when it was extrapolated (B1, C1), the AUC window is named
(B7), persistence is censored at a quantifiable last sample (B11), the report's exposure view counts
every selected subject (B9), "copies/100 ng" is per 100 ng (B2), an untimed infusion with timed samples
(B10).

Every expected value is worked by hand from the standard's text in the comments (the probes of
/work/notes/review40_kin/REPORT.md), never copied from cartlab's output."""

from __future__ import annotations

import math
import warnings

import numpy as np
import polars as pl
import pytest

from cartlab.kinetics.car import CarKineticsOptions, derive_car_kinetics, derive_kinetics_summary
from cartlab.kinetics.exposure import derive_exposure_response
from cartlab.model import Study, conform

LN2, LN5 = math.log(2), math.log(5)


def study(rows: dict[str, list[tuple]], doses: dict[str, list] | None = None, lloq: float = 10.0,
          subjects: dict | None = None, events: list[dict] | None = None) -> Study:
    """CARCOPY samples ``rows[subject] = [(day, value), ...]`` (a value "<10" is BLQ; a fractional day without
    a datetime is a timed sample) and infusions ``doses[subject] = [day or (day, agent), ...]`` (default: a
    "CAR-T" on day 0); ``subjects``: further subjects.csv columns; ``events``: events.csv rows."""
    obs, n = [], 0
    for sid, samples in rows.items():
        for day, value in samples:
            n += 1
            r = {"subject_id": sid, "param": "CARCOPY", "unit": "copies/ug", "lloq": lloq, "value": None,
                 "value_text": None, "day": float(day), "src_file": "observations.csv", "src_row": n + 1}
            if isinstance(value, str):
                r.update(value_text=value, censor="<", censor_limit=float(value[1:]))
            else:
                r["value"] = float(value)
            obs.append(r)
    doses = doses if doses is not None else {sid: [0.0] for sid in rows}
    given = [(sid, x if isinstance(x, tuple) else (x, "CAR-T")) for sid, lst in doses.items() for x in lst]
    d = [{"subject_id": sid, "day": float(day), "agent": agent, "dose": 1e6, "unit": "cells/kg",
          "src_file": "doses.csv", "src_row": i + 2} for i, (sid, (day, agent)) in enumerate(given)]
    kw = {} if events is None else {"events": conform(pl.DataFrame(events, infer_schema_length=None), "events")}
    return Study(study_id="t", subjects=conform(pl.DataFrame({"subject_id": list(rows), **(subjects or {})}), "subjects"),
                 observations=conform(pl.DataFrame(obs, infer_schema_length=None), "observations"),
                 doses=conform(pl.DataFrame(d, schema={"subject_id": pl.String, "day": pl.Float64, "agent": pl.String,
                                                       "dose": pl.Float64, "unit": pl.String, "src_file": pl.String,
                                                       "src_row": pl.Int64}), "doses"), **kw)


def kin(s: Study, sid: str | None = None, **opts) -> tuple[dict, list[str]]:
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        k = derive_car_kinetics(s, CarKineticsOptions(**opts))
    if sid is not None:
        k = k.filter(pl.col("subject_id") == sid)
    return k.row(0, named=True), [str(x.message) for x in w]


# ---- A1: a re-infusion on day 60 ends the first administration's profile --------------------------

REINF = {"A": [(7, 1000), (14, 500), (28, 100), (56, 20), (67, 50000), (74, 10000)]}


def test_reinfusion_on_day_60_ends_the_first_profile_review_probe_s1():
    k, w = kin(study(REINF, {"A": [0.0, 60.0]}))
    # PKNCA: one NCA per dosing interval. The first interval holds days 7, 14, 28, 56: Cmax 1000 on day 7,
    # tlast 56; lambda.z by least squares of ln c on the three points after tmax (14, 28, 56), the slope
    # below computed with numpy's polyfit as an independent OLS (hand: 0.073903/day, t1/2 9.38 d)
    slope = -np.polyfit([14.0, 28.0, 56.0], np.log([500.0, 100.0, 20.0]), 1)[0]
    assert slope == pytest.approx(0.073903, abs=1e-6)
    assert (k["cmax"], k["tmax"], k["tlast"]) == (1000.0, 7.0, 56.0)
    assert k["lambda.z"] == pytest.approx(slope, rel=1e-9)
    assert k["half.life"] == pytest.approx(LN2 / slope, rel=1e-9)
    # the window AUC is unchanged: 7*1000/2 + 7*500/ln2 + 14*400/ln5
    assert k["auc_window"] == pytest.approx(3500 + 7 * 500 / LN2 + 14 * 400 / LN5, rel=1e-9)
    assert "re-infusion on day 60" in k["reason"]
    msg = [m for m in w if "second CAR-T administration" in m]
    assert msg and "A (2 sample(s) after the CAR-T re-infusion on day 60" in msg[0]
    assert "observations.csv:6" in msg[0] and "observations.csv:7" in msg[0]  # the day-67 and day-74 rows
    assert "not computed" in msg[0]


def test_profile_end_all_pools_every_sample_as_before():
    k, _ = kin(study(REINF, {"A": [0.0, 60.0]}), profile_end="all")
    assert (k["cmax"], k["tmax"], k["tlast"]) == (50000.0, 67.0, 74.0)  # the re-expansion (old behaviour)


def test_split_dose_within_the_gap_stays_one_profile():
    # the seed case's split dose (days 0 and 2) is one administration: 2 <= 7; the day-10 peak is kept
    k, w = kin(study({"A": [(1, 100), (10, 5000), (14, 1000)]}, {"A": [0.0, 2.0]}))
    assert (k["cmax"], k["tmax"]) == (5000.0, 10.0)
    assert not [m for m in w if "second CAR-T administration" in m]
    # a gap above the option is a new administration: days 0 and 9 with gap 7 cut at day 9
    k2, _ = kin(study({"A": [(1, 100), (10, 5000), (14, 1000)]}, {"A": [0.0, 9.0]}))
    assert (k2["cmax"], k2["tlast"]) == (100.0, 1.0)
    k3, _ = kin(study({"A": [(1, 100), (10, 5000), (14, 1000)]}, {"A": [0.0, 9.0]}), split_dose_gap_days=10)
    assert k3["cmax"] == 5000.0


def test_profile_options_are_checked():
    o = CarKineticsOptions(profile_end="all", split_dose_gap_days=3, auc_past_tlast="not_evaluable",
                           untimed_infusion="calendar_day", blq_middle="keep", blq_last="drop")
    assert (o.profile_end, o.split_dose_gap_days) == ("all", 3)
    d = CarKineticsOptions()  # the defaults: the standard's readings (PKNCA per dosing interval, spec 'Time')
    assert (d.profile_end, d.split_dose_gap_days, d.auc_past_tlast, d.untimed_infusion, d.blq_middle,
            d.blq_last) == ("next_infusion", 7.0, "extrapolate", "midnight", "drop", "keep")
    with pytest.raises(ValueError, match="profile_end"):
        CarKineticsOptions(profile_end="next")
    with pytest.raises(ValueError, match="auc_past_tlast"):
        CarKineticsOptions(auc_past_tlast="zero")
    with pytest.raises(ValueError, match="untimed_infusion"):
        CarKineticsOptions(untimed_infusion="noon")


# ---- B1 / C1: an extrapolated window AUC says so ---------------------------------------------------

EXTRAP = {"A": [(7, 1000), (14, 500), (17.5, 500 * 2 ** -0.5), (21, 250)]}  # halves every 7 days


def test_window_auc_extrapolated_past_tlast_names_the_share_review_probe_s3():
    k, _ = kin(study(EXTRAP))
    lz = LN2 / 7  # the decline halves every 7 days
    # auclast: 7*1000/2 (linear up) + log trapezoids 14 -> 17.5 -> 21
    c175 = 500 * 2 ** -0.5
    auclast = 3500 + 7 * 500 / LN2 + 3.5 * (500 - c175) / math.log(500 / c175) + 3.5 * (c175 - 250) / math.log(c175 / 250)
    tail = 250 / lz * (1 - math.exp(-7 * lz))  # clast/lambda.z (1 - e^(-lambda.z (28 - 21))) = 1262.36
    assert k["auc_window"] == pytest.approx(auclast + tail, rel=1e-6)
    pct = round(100 * tail / (auclast + tail), 1)  # 10.2 %
    assert pct == 10.2
    assert "extrapolated from the last quantifiable sample (day 21)" in k["auc_window_basis"]
    assert "aucint.inf.obs" in k["auc_window_basis"] and "(10.2%)" in k["auc_window_basis"]
    assert any(x.startswith("auc_window_extrapolated:") and "10.2%" in x for x in k["warnings"])


def test_window_auc_interpolated_has_another_basis_and_no_warning():
    # day 28 between 21 (250) and 35 (62.5), log-linear: c28 = 125; nothing is extrapolated
    k, _ = kin(study({"A": [(7, 1000), (21, 250), (35, 62.5)]}))
    assert k["auc_window"] == pytest.approx(3500 + 14 * 750 / math.log(4) + 7 * 125 / LN2, rel=1e-9)
    assert "extrapolated" not in k["auc_window_basis"] and "aucint.inf.obs" in k["auc_window_basis"]
    assert not any(x.startswith("auc_window_extrapolated") for x in k["warnings"])


def test_auc_past_tlast_not_evaluable_leaves_the_window_empty():
    k, _ = kin(study(EXTRAP), auc_past_tlast="not_evaluable")
    assert k["auc_window"] is None  # missing, not 0
    assert "auc_past_tlast=not_evaluable" in k["auc_window_basis"] and "day 21" in k["auc_window_basis"]
    assert k["cmax"] == 1000.0


# ---- B7: the window of car_auc_0_28 is named ---------------------------------------------------------

def test_kinetics_summary_names_a_non_default_window():
    s = study({"A": [(7, 1000), (14, 500), (28, 100)]})
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        summ = derive_kinetics_summary(s, CarKineticsOptions(auc_window=(0.0, 14.0)))
    r = summ.row(0, named=True)
    assert r["car_auc_0_28"] == pytest.approx(3500 + 7 * 500 / LN2, rel=1e-9)  # AUC0-14 by hand: 8549.43
    assert r["car_auc_window"] == "0-14"
    assert any("AUC over days 0-14" in str(x.message) for x in w)
    with warnings.catch_warnings(record=True) as w2:
        warnings.simplefilter("always")
        r2 = derive_kinetics_summary(s).row(0, named=True)
    assert r2["car_auc_window"] == "0-28" and not any("car_auc_window" in str(x.message) for x in w2)


# ---- B11: persistence censored at a quantifiable last sample ----------------------------------------

def test_persistence_is_censored_when_the_last_sample_is_quantifiable():
    s = study({"A": [(7, 1000), (14, 500), (56, 59300)], "B": [(7, 1000), (14, 500), (28, "<10"), (56, "<10")]})
    a, _ = kin(s, "A")
    b, _ = kin(s, "B")
    # A: still quantifiable at its last sample (day 56): persistence >= 56, censored, no loss day
    assert (a["persistence"], a["persistence_censored"], a["persistence_lost_by"]) == (56.0, True, None)
    # B: quantifiable to day 14, BLQ on day 28: lost between 14 and 28
    assert (b["persistence"], b["persistence_censored"], b["persistence_lost_by"]) == (14.0, False, 28.0)


# ---- B10: an infusion without a clock time, samples with one -----------------------------------------

UNTIMED = {"A": [(1 / 3, 300), (7 + 1 / 3, 1000), (14 + 1 / 3, 500), (28 + 1 / 3, 100)]}  # 08:00 each day


def test_untimed_infusion_with_timed_samples_warns_and_calendar_day_counts_whole_days():
    k, w = kin(study(UNTIMED))
    assert k["tmax"] == pytest.approx(7 + 1 / 3)  # default midnight (spec 'Time'): unchanged ...
    assert any("infusion without a clock time but CAR-T samples with one" in m and "A" in m for m in w)  # ... warned
    c, wc = kin(study(UNTIMED), untimed_infusion="calendar_day")
    assert (c["tmax"], c["tlast"]) == (7.0, 28.0)
    # the 08:00 sample on the infusion day is at time 0 (day0_untimed_sample=as_given: the level there):
    # 7*(300 + 1000)/2 + 7*500/ln2 + 14*400/ln5 = 4550 + 5049.43 + 3479.48 = 13078.91
    assert c["auc_window"] == pytest.approx(4550 + 7 * 500 / LN2 + 14 * 400 / LN5, rel=1e-9)
    assert any("calendar_day" in m for m in wc)
    p, _ = kin(study(UNTIMED), untimed_infusion="calendar_day", day0_untimed_sample="pre_infusion")
    # the day-0 sample is the baseline: 0 imputed; 3500 + 5049.43 + 3479.48 = 12028.91
    assert p["auc_window"] == pytest.approx(3500 + 7 * 500 / LN2 + 14 * 400 / LN5, rel=1e-9)


# ---- B8: exposure-response uses the analysis's responder ---------------------------------------------

def test_exposure_response_uses_the_responder_column_review_probe_r1o():
    # orr_categories=[CR]: responders (CR) 92.2, 1000, 50000, 251000; non-responders (CRi, PR: responder False)
    # 1000, 1000, 35500, 204000, 970000
    cmax = [92.2, 1000, 50000, 251000, 1000, 1000, 35500, 204000, 970000]
    best = ["CR"] * 4 + ["CRi", "CRi", "PR", "PR", "MLFS"]
    f = pl.DataFrame({"subject_id": [f"S{i}" for i in range(9)], "car_cmax": cmax, "car_auc_0_28": cmax,
                      "car_param": ["CARCOPY"] * 9, "car_unit": ["copies/ug gDNA"] * 9, "best_response": best,
                      "responder": [True] * 4 + [False] * 5, "crs_grade_astct": [1] * 9})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = derive_exposure_response(f, exposures=("car_cmax",), outcomes=("responder",)).row(0, named=True)
    assert (r["n"], r["n_event"]) == (9, 4)
    assert r["median_event"] == pytest.approx((1000 + 50000) / 2)  # median(92.2, 1000, 50000, 251000) = 25500
    assert r["median_no_event"] == 35500.0
    # U (responders first): 92.2 beats none; 1000 ties two 1000s (0.5 each); 50000 beats 1000, 1000, 35500;
    # 251000 beats 1000, 1000, 35500, 204000: 0 + 1 + 3 + 4 = 8
    assert r["mann_whitney_u"] == 8.0


# ---- B9: the report's exposure view on a selection names every left-out subject ------------------------

def test_report_exposure_view_on_a_selection_counts_subjects_without_kinetics():
    from cartlab.analyze import Analysis
    from cartlab.report import cohort_data as cd

    ids = ["A", "B", "C", "D", "E", "F"]
    s = study({i: [(7, 1000)] for i in ids})
    kin_s = pl.DataFrame({"subject_id": ids, "car_cmax": [100.0, 200.0, 300.0, 400.0, None, None],
                          "car_auc_0_28": [1000.0, 2000.0, 3000.0, 4000.0, None, None],
                          "car_param": ["CARCOPY"] * 4 + [None, "CARCOPY"], "car_unit": ["copies/ug"] * 6,
                          "car_not_evaluable": [None] * 5 + ["two samples at the same time (day 14)"]})
    best = pl.DataFrame({"subject_id": ids, "criteria": ["x"] * 6, "best_response": ["CR", "PD", "CR", "PD", "CR", "CR"],
                         "responder": [True, False, True, False, True, True]})
    crs = pl.DataFrame({"subject_id": ids, "crs_grade_astct": [1, 1, 3, 0, 1, 1]})
    a = Analysis(s)
    tables = {"kinetics_summary": kin_s, "best_response": best, "crs_summary": crs}
    steps = [st for st in a.steps if set(st.outputs) & set(tables)]
    a.adopt(steps, tables, {n: set() for n in tables}, [], [], {}, {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = cd.exposure_outcome_data(a, ids).stats
    r = stats.filter((pl.col("exposure") == "car_cmax") & (pl.col("outcome") == "responder")).row(0, named=True)
    # A-D usable (n 4); E has no kinetics, F is not evaluable: both excluded and named (n_excluded 2)
    assert (r["n"], r["n_excluded"]) == (4, 2)
    assert "E" in r["excluded"] and "F" in r["excluded"] and "not evaluable" in r["excluded"]


# ---- B2: a numeric denominator is one quantity ----------------------------------------------------------

@pytest.mark.parametrize("unit", ["copies/100 ng", "copies/100ng", "copies/100 ng gDNA", "copies/0.1 ug"])
def test_copies_per_100_ng_is_ten_copies_per_ug(unit):
    from cartlab.units import conversion

    # 1 copy per 100 ng = 1 copy per 0.1 ug = 10 copies/ug
    assert conversion(unit, "copies/ug").scale == pytest.approx(10.0, rel=1e-12)


def test_other_numeric_denominators_keep_their_dimension():
    from cartlab.units import conversion

    assert conversion("mg/24 h", "mg/h").scale == pytest.approx(1 / 24, rel=1e-12)  # 24 mg a day is 1 mg/h
    assert conversion("mL/min/1.73 m2", "mL/min/m2").scale == pytest.approx(1 / 1.73, rel=1e-12)


# ---- B5: an untimed and a timed sample of one day are named --------------------------------------------

def test_untimed_and_timed_sample_of_one_day_warn_review_probe_s4():
    s = study({"A": [(4, 300), (7, 1000), (7 + 1 / 3, 3000), (14, 500), (28, 100)]})
    k, w = kin(s)
    # the whole day 7 (no clock time) and the 08:00 sample of day 7: which came first is unknown
    msg = [m for m in w if "without a clock time and one with a clock time" in m]
    assert msg and "A (day 7: observations.csv:3, observations.csv:4)" in msg[0]
    # the values are unchanged (midnight first, spec 'Time'): Cmax 3000 at day 7.33
    assert (k["cmax"], k["tmax"]) == (3000.0, pytest.approx(7 + 1 / 3))
    _, w2 = kin(study({"A": [(4, 300), (7, 1000), (14, 500), (28, 100)]}))
    assert not [m for m in w2 if "without a clock time and one with a clock time" in m]


# ---- B4: each ADPP parameter names the rows it used -----------------------------------------------------

def test_adpp_evidence_is_per_parameter_review_probe_r1():
    from cartlab.kinetics.car import derive_adpp

    # rows: observations.csv:2..6 = days 4, 7, 14, 21, 28 (the helper numbers rows from 2)
    s = study({"A": [(4, 300), (7, 1000), (14, 500), (21, 250), (28, 125), (35, 62.5)]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = derive_adpp(s)
    ev = dict(zip(a["PPTESTCD"].to_list(), a["EVIDENCE"].to_list()))
    assert ev["CMAX"] == ev["TMAX"] == ["observations.csv:3"]  # the day-7 peak only
    assert ev["TLST"] == ["observations.csv:7"]  # day 35
    # lambda.z: the best fit after tmax is 14, 21, 28, 35 (exact halving every 7 days; PKNCA keeps the most
    # points among equal adjusted R2)
    assert ev["LAMZ"] == [f"observations.csv:{i}" for i in (4, 5, 6, 7)]
    # AUC over 0-28: the samples on days 4-28 (day 28 is sampled: nothing after it is used)
    assert ev["AUCINT"] == [f"observations.csv:{i}" for i in (2, 3, 4, 5, 6)]
    assert len(ev["AUCLST"]) == 6  # a whole-profile parameter keeps every row


# ---- B3: the BLQ rules are options (PKNCA conc.blq middle / last) -------------------------------------------

def test_blq_middle_keep_sets_the_between_samples_to_zero_review_probe_s5():
    s = study({"A": [(7, 1000), (14, 500), (21, "<50"), (28, "<50"), (56, 60)]}, lloq=50.0)
    k, _ = kin(s)
    # default (PKNCA middle = drop): day 28 interpolated log-linearly between 14 (500) and 56 (60)
    c28 = 500 * (60 / 500) ** (14 / 42)  # 246.6
    assert k["auc_window"] == pytest.approx(3500 + 7 * 500 / LN2 + 14 * (500 - c28) / math.log(500 / c28), rel=1e-9)
    kk, _ = kin(s, blq_middle="keep")
    # keep (as 0): 3500 + 5049.43 + linear 500 -> 0 over days 14-21 (a log trapezoid cannot reach 0) + 0
    assert kk["auc_window"] == pytest.approx(3500 + 7 * 500 / LN2 + 7 * 500 / 2, rel=1e-9)  # 10299.43


def test_blq_last_drop_uses_the_lambda_z_tail_review_probe_c4():
    c175 = 500 * 2 ** -0.5
    s = study({"A": [(7, 1000), (14, 500), (17.5, c175), (21, 250), (35, "<10")]})
    auclast = 3500 + 7 * 500 / LN2 + 3.5 * (500 - c175) / math.log(500 / c175) + 3.5 * (c175 - 250) / math.log(c175 / 250)
    k, _ = kin(s)  # default keep: linear from (21, 250) to (35, 0), c28 = 125: + 7 (250 + 125) / 2
    assert k["auc_window"] == pytest.approx(auclast + 7 * 375 / 2, rel=1e-6)  # 12386.65
    kd, _ = kin(s, blq_last="drop")  # the BLQ is left out: the lambda.z tail (ln2/7) to day 28
    lz = LN2 / 7
    assert kd["auc_window"] == pytest.approx(auclast + 250 / lz * (1 - math.exp(-7 * lz)), rel=1e-6)  # 12336.51
