"""Session 32 review (haematotoxicity engines): censored results read as bounds, the
lymphodepletion course. Every expected value is derived by hand from the standard's text (quoted in
each test), never copied from cartlab's output."""

from __future__ import annotations

import polars as pl
import pytest

from cartlab.grading.ctcae import derive_ctcae
from cartlab.grading.hematotox import derive_car_hematotox, derive_count_recovery, derive_easix
from cartlab.grading.icaht import derive_icaht
from cartlab.grading.iec_hs import derive_iec_hs_flags
from cartlab.grading.t_icaht import derive_t_icaht
from cartlab.io import read_study

OBS = "subject_id,day,param,value,value_text,unit,lln,uln\n"
NORMAL_PRE = [  # CAR-HEMATOTOX items scoring 0: PLT > 175, ANC > 1200/uL, Hb > 9 g/dL, CRP < 3 mg/dL
    ("-5", "NEUT", "3.0", "", "10^9/L"), ("-5", "HGB", "12", "", "g/dL"), ("-5", "CRP", "5", "", "mg/L")]


def study(tmp_path, name, rows, doses=("fludarabine,-5", "cyclophosphamide,-5"), followup=100, interventions=None):
    d = tmp_path / name
    d.mkdir()
    if interventions is not None:
        (d / "interventions.csv").write_text(interventions)
    # session 40: "no event" is an events.csv with its header (an absent file leaves the late ICAHT window's
    # end unknown: a range, CHANGELOG); these cases mean none happened
    (d / "events.csv").write_text("subject_id,day,event\n")
    (d / "subjects.csv").write_text(f"subject_id,last_followup_day\nS,{followup}\n")
    (d / "doses.csv").write_text("subject_id,day,agent,dose,unit\n" + "".join(
        f"S,{x.split(',')[1]},{x.split(',')[0]},1,mg\n" for x in doses) + "S,0,CAR-T,1,cells\n")
    (d / "observations.csv").write_text(OBS + "".join(
        f"S,{r[0]},{r[1]},{r[2]},{r[3]},{r[4]},{r[5] if len(r) > 5 else ''},{r[6] if len(r) > 6 else ''}\n"
        for r in rows))
    return read_study(d)


def test_hematotox_censored_last_ferritin_is_the_baseline(tmp_path):
    """Baseline = "the last value on or before the day of the first lymphodepletion dose"
    (car_hematotox_2021.yaml): ferritin ">40000" on day -5 is it, not 500 of day -30. >40000 >
    2000 ng/mL -> 2 points; PLT 250 -> 0; others 0 -> score 2, high (>= 2)."""
    s = study(tmp_path, "a", [*NORMAL_PRE, ("-5", "PLAT", "250", "", "10^9/L"),
                              ("-30", "FERRITIN", "500", "", "ng/mL"), ("-5", "FERRITIN", "", ">40000", "ng/mL")])
    r = derive_car_hematotox(s).row(0, named=True)
    assert (r["ferritin_points"], r["hematotox_score"], r["hematotox_risk"]) == (2, 2, "high")
    assert ">40000" in r["reason"] and r["hematotox_missing"] == []


def test_hematotox_censored_platelets_and_an_unsettled_bound(tmp_path):
    """PLT "<10" (< 75 -> 2 points) is the day -5 baseline, not 200 of day -30: score 2, high.
    PLT "<100" does not settle the cut-offs (< 75 -> 2, 75-175 -> 1): 1 or 2 points -> score 1-2,
    risk undetermined (1 = low, 2 = high)."""
    base = [*NORMAL_PRE, ("-5", "FERRITIN", "300", "", "ng/mL"), ("-30", "PLAT", "200", "", "10^9/L")]
    r = derive_car_hematotox(study(tmp_path, "c", [*base, ("-5", "PLAT", "", "<10", "10^9/L")])).row(0, named=True)
    assert (r["plat_points"], r["hematotox_score"], r["hematotox_risk"]) == (2, 2, "high")
    r = derive_car_hematotox(study(tmp_path, "c2", [*base, ("-5", "PLAT", "", "<100", "10^9/L")])).row(0, named=True)
    assert (r["plat_points"], r["hematotox_score"], r["hematotox_score_min"], r["hematotox_score_max"],
            r["hematotox_risk"]) == (None, None, 1, 2, None)


def test_bridging_cyclophosphamide_is_not_lymphodepletion(tmp_path):
    """Score "determined prior to lymphodepleting chemotherapy (e.g. day -5)" (EMCL page): bridging
    cyclophosphamide on day -40, flu/cy days -5..-3 -> baseline day -5. Day -5: PLT 50 (<75: 2),
    ANC 0.8 (1), Hb 8.5 (1), CRP 50 mg/L = 5 mg/dL (1), ferritin 3000 (2) = 7; EASIX = LDH 400 x
    creatinine 1 mg/dL / PLT 50 = 8."""
    rows = [(d, p, v, "", u) for d, vals in (("-41", ("2", "13", "250", "1", "100", "150", "88.4")),
                                             ("-5", ("0.8", "8.5", "50", "50", "3000", "400", "88.4")))
            for p, v, u in zip(("NEUT", "HGB", "PLAT", "CRP", "FERRITIN", "LDH", "CREAT"), vals,
                               ("10^9/L", "g/dL", "10^9/L", "mg/L", "ng/mL", "U/L", "umol/L"))]
    s = study(tmp_path, "b", rows, doses=("cyclophosphamide,-40", "fludarabine,-5", "cyclophosphamide,-5",
                                          "fludarabine,-4", "fludarabine,-3"))
    r = derive_car_hematotox(s).row(0, named=True)
    assert (r["baseline_day"], r["hematotox_score"]) == (-5.0, 7)
    e = derive_easix(s).row(0, named=True)
    assert e["easix"] == pytest.approx(8.0)


def test_easix_with_censored_platelets_is_a_bound(tmp_path):
    """EASIX = LDH x creatinine (mg/dL) / PLT (Pennisi 2021): 300 x 1 / (<10) > 30 - a bound, so
    the value is empty (never PLT 150 of day -30) and the reason says "> 30"."""
    s = study(tmp_path, "e", [("-5", "LDH", "300", "", "U/L"), ("-5", "CREAT", "88.4", "", "umol/L"),
                              ("-30", "PLAT", "150", "", "10^9/L"), ("-5", "PLAT", "", "<10", "10^9/L")])
    r = derive_easix(s).row(0, named=True)
    assert r["easix"] is None and "easix > 30" in r["reason"] and "PLAT" not in r["missing"]


def test_recovery_after_a_censored_nadir(tmp_path):
    """ASTCT: "first of 3 successive days with ANC >= 500/uL after post-transplantation nadir":
    ANC <0.1 days 3-8 is the nadir, 0.6/0.8/1.0 on days 9-11 -> day 9. Platelets ">= 20,000/uL ...
    first of 3 consecutive days": <10 days 5-9, 25/30/40 days 10-12, no transfusion -> day 10."""
    rows = [("0", "NEUT", "2.0", "", "10^9/L"), ("2", "NEUT", "0.9", "", "10^9/L"),
            *[(str(d), "NEUT", "", "<0.1", "10^9/L") for d in range(3, 9)],
            ("9", "NEUT", "0.6", "", "10^9/L"), ("10", "NEUT", "0.8", "", "10^9/L"), ("11", "NEUT", "1.0", "", "10^9/L"),
            ("0", "PLAT", "150", "", "10^9/L"), ("3", "PLAT", "60", "", "10^9/L"),
            *[(str(d), "PLAT", "", "<10", "10^9/L") for d in range(5, 10)],
            ("10", "PLAT", "25", "", "10^9/L"), ("11", "PLAT", "30", "", "10^9/L"), ("12", "PLAT", "40", "", "10^9/L")]
    # session 38: "no transfusion" is an interventions.csv with its header and no row (an absent file
    # leaves platelet transfusions unknown: not evaluable from day 10, CHANGELOG)
    s = study(tmp_path, "r", rows, followup=12, interventions="subject_id,category,agent,start_day,end_day\n")
    r = derive_count_recovery(s).row(0, named=True)
    assert (r["neutrophil_recovery_day"], r["platelet_recovery_day"]) == (9.0, 10.0)


def test_late_grades_with_censored_counts_are_ranges(tmp_path):
    """Late ICAHT: "<= 0.5 on >= 2 measurements = 3, <= 0.1 = 4": ANC <0.5 on days 40 and 50 is
    <= 0.5 for sure, <= 0.1 unknown -> grade 3, up to 4; the reason names "<0.5", not NA.
    Late T-ICAHT: < 50 on >= 2 = 2, < 20 for 1-13 days = 3, >= 14 days = 4: PLT <50 on days 40, 50
    -> 2; < 20 unknown on those days and days 31-39, 41-49, 51-59 have no count -> up to 4."""
    rows = [*[(str(d), p, v, "", "10^9/L") for d in range(-1, 31) for p, v in (("NEUT", "2.0"), ("PLAT", "150"))],
            *[(str(d), p, "", c, "10^9/L") for d in (40, 50) for p, c in (("NEUT", "<0.5"), ("PLAT", "<50"))],
            ("60", "NEUT", "2.0", "", "10^9/L"), ("60", "PLAT", "150", "", "10^9/L")]
    s = study(tmp_path, "l", rows, followup=60)
    r = derive_icaht(s).row(0, named=True)
    assert (r["icaht_late_grade"], r["icaht_late_grade_max"]) == (3, 4)
    assert "lowest ANC <0.5 on day 40" in r["late_reason"] and "NA" not in r["late_reason"]
    t = derive_t_icaht(s).row(0, named=True)
    assert (t["t_icaht_late_grade"], t["t_icaht_late_grade_max"]) == (2, 4)


def test_iec_hs_censored_baseline_and_day_value(tmp_path):
    """IEC-HS key: ferritin > 2 x ULN or > 2 x baseline (baseline = last value on or before day 0).
    A: baseline ">40000" (day 0), 5000 on day 5 without ULN: not > 2 x baseline (80000+), > 2 x ULN
    undecidable -> flag empty, not true. B: ">40000" on day 5 with ULN 400: > 800 for sure; ALT 300
    > 5 x ULN 40 (baseline 20 normal) -> flagged."""
    a = study(tmp_path, "ia", [("-10", "FERRITIN", "500", "", "ug/L"), ("0", "FERRITIN", "", ">40000", "ug/L"),
                               ("5", "FERRITIN", "5000", "", "ug/L"), ("0", "ALT", "20", "", "U/L", "", "40"),
                               ("5", "ALT", "300", "", "U/L", "", "40")])
    r = derive_iec_hs_flags(a).filter(pl.col("day") == 5).row(0, named=True)
    assert r["iec_hs_flag"] is None and "iec_hs.ferritin_gt_2x_baseline" not in r["key_met"]
    b = study(tmp_path, "ib", [("-10", "FERRITIN", "500", "", "ug/L"), ("5", "FERRITIN", "", ">40000", "ug/L", "", "400"),
                               ("0", "ALT", "20", "", "U/L", "", "40"), ("5", "ALT", "300", "", "U/L", "", "40")])
    r = derive_iec_hs_flags(b).filter(pl.col("day") == 5).row(0, named=True)
    assert r["iec_hs_flag"] is True and "iec_hs.ferritin_gt_2x_uln" in r["key_met"]


def test_ctcae_censored_platelets_and_bnrind_without_uln(tmp_path):
    """CTCAE v5 Platelet count decreased grade 4: "<25.0 x 10e9 /L": PLT <10 -> grade 4 (AVAL kept
    empty, the reason names "<10"); PLT <40: grade 3 (<50) or 4 (<25) -> not gradable, range named.
    A baseline ALT 200 with LLN 7 and no ULN: BNRIND NORMAL as admiral's derive_var_anrind reads a
    missing limit (it does not restrict); kept, since ALT with only a ULN is the usual report."""
    s = study(tmp_path, "ct", [("-1", "PLAT", "200", "", "10^9/L", "150", "400"), ("5", "PLAT", "", "<10", "10^9/L"),
                               ("6", "PLAT", "", "<40", "10^9/L"), ("-1", "ALT", "200", "", "U/L", "7", ""),
                               ("5", "ALT", "300", "", "U/L", "7", "40")])
    with pytest.warns(Warning):
        f = derive_ctcae(s)
    p5 = f.filter((pl.col("param") == "PLAT") & (pl.col("day") == 5)).row(0, named=True)
    assert (p5["AVAL"], p5["ATOXGR"]) == (None, -4) and "<10" in str(p5["grade_reason"])
    p6 = f.filter((pl.col("param") == "PLAT") & (pl.col("day") == 6)).row(0, named=True)
    # session 37 (review37 R37-1): the range keeps its lower grade, the upper one in ATOXGRL_MAX
    assert (p6["ATOXGR"], p6["ATOXGRL"], p6["ATOXGRL_MAX"]) == (-3, 3, 4) and "grade 3-4" in str(p6["grade_reason"])
    alt = f.filter(pl.col("param") == "ALT").row(0, named=True)
    assert alt["BNRIND"] == "NORMAL"
