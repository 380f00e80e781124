"""T-ICAHT and IEC-HS review fixes (session 33). T-ICAHT: a transfused count is below 20 only after an own count below 20.

Rejeski et al. 2025, Table 1 (T-ICAHT): early grade 1 = PLT < 50 x10^9/L on 1-6 days, grade 3 =
PLT < 20 on 1-13 days; transfusions appear only in the recovery definition ("first of 3 consecutive
days with a PLT count of >= 20 ... in the absence of a PLT transfusion for 7 consecutive days"), which
presupposes a count below 20. Expected values by hand; interpolation is linear between measured days.
"""

from __future__ import annotations

import polars as pl

from cartlab.grading.t_icaht import TIcahtOptions, derive_t_icaht, derive_t_icaht_daily
from cartlab.io import read_study


def _study(tmp_path, name, counts, tx_days, followup=100):
    d = tmp_path / name
    d.mkdir()
    (d / "subjects.csv").write_text(f"subject_id,last_followup_day\nS,{followup}\n")
    (d / "events.csv").write_text("subject_id,day,event\n")  # session 40: none happened (an absent file: a range)
    (d / "doses.csv").write_text("subject_id,day,agent,dose,unit\nS,0,CAR-T,1,cells\n")
    (d / "observations.csv").write_text("subject_id,day,param,value,unit\n" + "".join(
        f"S,{day},PLAT,{v},10^9/L\n" for day, v in counts))
    (d / "interventions.csv").write_text("subject_id,start_day,end_day,category\n" + "".join(
        f"S,{t},,platelet_transfusion\n" for t in tx_days))
    return read_study(d)


LATE = [(30, 150), (40, 150), (60, 150)]


def test_transfusion_at_an_own_count_of_40_leaves_below_20_open(tmp_path):
    """Own counts never below 20; a transfusion on day 2 at an own count of 40. Days 2-9 (the day
    and the 7 after it) are open at < 20: early grade 1 (day 2: 40 < 50, the only day < 50), up to 3
    had they been < 20 (it was 3 for sure before session 33)."""
    s = _study(tmp_path, "a", [(0, 100), (2, 40), (3, 70), (5, 60), (7, 80), (10, 120), (14, 150), *LATE], [2])
    r = derive_t_icaht(s).row(0, named=True)
    # session 48 (review 48 F1): days 15-29 lie in a 15-day gap (> 7 days) -> unknown for the range -> up to 4
    assert (r["t_icaht_early_grade"], r["t_icaht_early_grade_max"], r["plt_lt_20_days"]) == (1, 4, 0)
    assert (derive_t_icaht(s, TIcahtOptions(range_interpolation_gap_days=10_000)).row(0, named=True)
            ["t_icaht_early_grade_max"]) == 3
    assert "8 day(s) follow a platelet transfusion" in r["reason"]
    d = derive_t_icaht_daily(s).filter(pl.col("day").is_between(2, 9))
    assert d["plt_lt_20"].null_count() == 8


def test_transfusion_after_an_own_count_below_20_still_counts(tmp_path):
    """Own count 10 on day 5, transfused that day; 60-80 on days 6-12: days 5-12 count < 20 (not a
    recovery) = 8 days -> grade 3 (PLT < 20 on 1-13 days), settled."""
    s = _study(tmp_path, "b", [(0, 100), (4, 30), (5, 10), (6, 60), (8, 70), (12, 80), (14, 150), *LATE], [5])
    r = derive_t_icaht(s).row(0, named=True)
    # session 48 (review 48 F1): days 15-29 (a 15-day gap) unknown for the range: 8 + 15 days < 20 -> up to 4
    assert (r["t_icaht_early_grade"], r["t_icaht_early_grade_max"], r["plt_lt_20_days"]) == (3, 4, 8)
    assert (derive_t_icaht(s, TIcahtOptions(range_interpolation_gap_days=10_000)).row(0, named=True)
            ["t_icaht_early_grade_max"]) == 3


def test_transfusion_before_day_0_at_normal_counts(tmp_path):
    """A transfusion on day -3 with own counts 150 throughout: days 0-4 of the early window are open
    at < 20 (grade 0, up to 3); it was grade 3 for sure."""
    s = _study(tmp_path, "c", [(-5, 150), (-3, 150), (0, 150), (2, 150), (4, 150), *LATE], [-3])
    r = derive_t_icaht(s).row(0, named=True)
    # session 48 (review 48 F1): days 5-29 (a 25-day gap) unknown for the range -> up to 4
    assert (r["t_icaht_early_grade"], r["t_icaht_early_grade_max"], r["plt_lt_20_days"]) == (0, 4, 0)
    assert (derive_t_icaht(s, TIcahtOptions(range_interpolation_gap_days=10_000)).row(0, named=True)
            ["t_icaht_early_grade_max"]) == 3


def test_late_window_ending_on_day_100_at_last_followup_is_not_censored(tmp_path):
    """Counts 150 on day 35, 10 on days 85, 95 and 110: interpolated 150 - 140 (d - 35) / 50 is < 20
    from day 82 (18.4); days 82-100 = 19 days < 20, whether follow-up ends on day 120 or exactly on
    day 100, the nominal end (with follow-up 100 days 96-100 were dropped as censored: 14 days)."""
    counts = [(0, 150), (30, 150), (35, 150), (85, 10), (95, 10), (110, 10)]
    for fu in (120, 100):
        r = derive_t_icaht(_study(tmp_path, f"fu{fu}", counts, [], followup=fu)).row(0, named=True)
        assert (r["late_plt_lt_20_days"], r["t_icaht_late_grade"]) == (19, 4), fu


def test_iec_hs_not_flagged_names_what_was_not_assessed(tmp_path):
    """IEC-HS (Hines 2023, research notes §3.4): the key criterion can also be a rapidly rising
    ferritin, and hemophagocytosis is a criterion; cartlab computes neither. Ferritin 300 ug/L with
    ULN 400 on day 5 (not > 2 x ULN): not flagged by the computable criteria, and the reason says
    which criteria were not assessed (session 33)."""
    from cartlab.grading.iec_hs import derive_iec_hs_flags

    d = tmp_path / "iec"
    d.mkdir()
    (d / "subjects.csv").write_text("subject_id,last_followup_day\nS,30\n")
    (d / "doses.csv").write_text("subject_id,day,agent,dose,unit\nS,0,CAR-T,1,cells\n")
    (d / "observations.csv").write_text("subject_id,day,param,value,unit,uln\nS,-5,FERRITIN,200,ug/L,400\n"
                                        "S,5,FERRITIN,300,ug/L,400\n")
    r = derive_iec_hs_flags(read_study(d)).filter(pl.col("day") == 5).row(0, named=True)
    assert r["iec_hs_flag"] is False
    assert "Not assessed (adjudication): " in r["reason"]
    assert "iec_hs.ferritin_rapidly_rising" in r["reason"] and "iec_hs.hemophagocytosis" in r["reason"]
