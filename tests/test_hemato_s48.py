"""Haematotoxicity fixes of session 48 (review /work/notes/review48_icaht/REPORT.md: F1, F4, F5, F3).

Every expected value is derived by hand in the comment next to it, from the rules of the criteria
tables and the spec contract (study-format.md "ICAHT (EHA/EBMT 2023)": early days 0-30, days between
measurements filled by linear interpolation; grade 1 = ANC <= 0.5 on 1-6 days, 2 = 7-13 days, 3 = >= 14
days or ANC <= 0.1 on >= 7 days, 4 = "never above 0.5 in days 0-30" or ANC <= 0.1 on >= 14 days;
T-ICAHT (Rejeski 2025 Table 1): early PLT < 50 on 1-6 days = 1, >= 7 = 2, PLT < 20 on 1-13 days = 3,
>= 14 = 4; platelet recovery "the first of 3 consecutive days with a PLT count of >= 20 x 10^9/L in
the absence of a PLT transfusion for 7 consecutive days"; ASTCT neutrophil recovery "the first of 3
successive days with an absolute neutrophil count of >= 500/uL after post-transplantation nadir").
None is copied from cartlab's output.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from cartlab.criteria import load_raw
from cartlab.grading.count_recovery import RecoveryOptions, derive_count_recovery
from cartlab.grading.icaht import IcahtOptions, derive_icaht
from cartlab.grading.t_icaht import TIcahtOptions, derive_t_icaht
from cartlab.io import read_study


def _days(a: int, b: int, v: float) -> list[tuple[float, float]]:
    return [(d, v) for d in range(a, b + 1)]


#: subject -> (NEUT (day, value) 10^9/L, PLAT (day, value) 10^9/L, events (day, event), platelet transfusion start days)
CASES = {
    # F1 (review G1): ANC 2.0 on day 0 and day 30 only (days 1-29 without a count), then daily to day 40
    "G1": ([(0, 2.0), (30, 2.0)] + _days(31, 40, 2.0), [], [], []),
    # F1 (review G2): ANC 2.0 on days 0 and 10, 0.3 on days 11-20, 2.0 on days 21-40
    "G2": ([(0, 2.0), (10, 2.0)] + _days(11, 20, 0.3) + _days(21, 40, 2.0), [], [], []),
    # F1 (review G3): PLT 150 on days 0 and 30 only, then daily to day 40
    "G3": ([], [(0, 150.0), (30, 150.0)] + _days(31, 40, 150.0), [], []),
    # F1 boundary: 2.0 on day 0, days 1-7 (7 days) without a count, 2.0 daily from day 8
    "GAP7": ([(0, 2.0)] + _days(8, 40, 2.0), [], [], []),
    # ... and days 1-8 (8 days) without a count
    "GAP8": ([(0, 2.0)] + _days(9, 40, 2.0), [], [], []),
    # F1 (review P1): PLT 150 on days 0-30, 15 on days 40 and 60, 150 on days 61-100
    "P1": ([], _days(0, 30, 150.0) + [(40, 15.0), (60, 15.0)] + _days(61, 100, 150.0), [], []),
    # F4 (review R6): PLT 10 on days 0-9, 30 from day 10; a platelet transfusion on day 10
    "R6": ([], _days(0, 9, 10.0) + _days(10, 40, 30.0), [], [10]),
    # F4 (review R7): the same counts, the transfusion on day 9
    "R7": ([], _days(0, 9, 10.0) + _days(10, 40, 30.0), [], [9]),
    # F4 with times (fractional days are times of day): PLT 10 on days 0-9, 30 at 08:00 of day 10 (10.25),
    # a transfusion at 12:00 (10.5), 30 on days 11-40: the 30 of day 10 was drawn before the transfusion
    "R6T": ([], _days(0, 9, 10.0) + [(10.25, 30.0)] + _days(11, 40, 30.0), [], [10.5]),
    # ... and the count at 18:00 (10.75), after the transfusion
    "R6A": ([], _days(0, 9, 10.0) + [(10.75, 30.0)] + _days(11, 40, 30.0), [], [10.5]),
    # F5: ANC 0.1 on days 0-10, 2.0 on days 11-13, new therapy on day 13
    "EV": (_days(0, 10, 0.1) + _days(11, 13, 2.0), [], [(13, "new_therapy")], []),
    # F3 (review B1): ANC 0.3 on days 0-28, 0.6 on day 29 (a 1-day non-stable recovery), 0.3 on days 30-40
    "B1": (_days(0, 28, 0.3) + [(29, 0.6)] + _days(30, 40, 0.3), [], [], []),
    # F3: a 3-day (stable) recovery on days 20-22 inside aplasia
    "B3": (_days(0, 19, 0.3) + _days(20, 22, 0.6) + _days(23, 40, 0.3), [], [], []),
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    d: Path = tmp_path_factory.mktemp("s48") / "study"
    d.mkdir()
    (d / "subjects.csv").write_text("subject_id,last_followup_day\n" + "".join(f"{sid},100\n" for sid in CASES))
    rows = [f"{sid},{day},NEUT,{v},10^9/L\n" for sid, (n, _, _, _) in CASES.items() for day, v in n]
    rows += [f"{sid},{day},PLAT,{v},10^9/L\n" for sid, (_, p, _, _) in CASES.items() for day, v in p]
    (d / "observations.csv").write_text("subject_id,day,param,value,unit\n" + "".join(rows))
    (d / "events.csv").write_text("subject_id,day,event\n" + "".join(
        f"{sid},{day},{ev}\n" for sid, (_, _, evs, _) in CASES.items() for day, ev in evs))
    (d / "interventions.csv").write_text("subject_id,start_day,end_day,category\n" + "".join(
        f"{sid},{t},,platelet_transfusion\n" for sid, (_, _, _, tx) in CASES.items() for t in tx))
    (d / "doses.csv").write_text("subject_id,day,agent,dose,unit\n" + "".join(f"{sid},0,CAR-T,1,cells\n" for sid in CASES))
    return read_study(d)


def _rows(frame) -> dict[str, dict]:
    return {r["subject_id"]: r for r in frame.iter_rows(named=True)}


def _icaht(study, **opts) -> dict[str, dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _rows(derive_icaht(study, IcahtOptions(**opts)))


def _t(study, **opts) -> dict[str, dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _rows(derive_t_icaht(study, TIcahtOptions(**opts)))


def _rec(study, **opts) -> dict[str, dict]:
    return _rows(derive_count_recovery(study, RecoveryOptions(**opts)))


# --- F1: days interpolated across a long gap are unknown for the range --------------------------------


def test_a_long_gap_widens_the_early_range_but_not_the_grade(study):
    r = _icaht(study)
    # G1: days 1-29 interpolated 2.0 (contract) -> no day <= 0.5 -> grade 0; for the range the 29 days of
    # the gap (> 7) are unknown: had they been <= 0.1, 29 days <= 0.1 (>= 14) -> 4
    g1 = r["G1"]
    assert (g1["icaht_early_grade"], g1["icaht_early_grade_max"], g1["early_unknown_days"]) == (0, 4, 29)
    assert "no ANC measured on days 1-29" in g1["early_reason"] and "Could be up to grade 4" in g1["early_reason"]
    assert "range_interpolation_gap_days" in g1["early_reason"]
    # G2: 0.3 on days 11-20 = 10 days <= 0.5 -> 2; days 1-9 unknown: <= 0.5 on 9 + 10 = 19 days (>= 14 -> 3),
    # <= 0.1 on 9 days (>= 7 -> 3, not >= 14); day 0 is 2.0, so not 'never above' -> max 3
    assert (r["G2"]["icaht_early_grade"], r["G2"]["icaht_early_grade_max"], r["G2"]["early_unknown_days"]) == (2, 3, 9)
    # a limit above every gap (as the table's null; None in Python is the table's default): every
    # interpolated day known (before session 48): G1 0 up to 0, G2 2 up to 2
    old = _icaht(study, range_interpolation_gap_days=10_000)
    assert (old["G1"]["icaht_early_grade_max"], old["G2"]["icaht_early_grade_max"]) == (0, 2)


def test_the_gap_length_boundary(study):
    r = _icaht(study)
    # GAP7: 7 days without a count (not more than 7): read as interpolated (2.0) -> 0 up to 0
    assert (r["GAP7"]["icaht_early_grade"], r["GAP7"]["icaht_early_grade_max"], r["GAP7"]["early_unknown_days"]) == (0, 0, 0)
    # GAP8: 8 days (days 1-8) > 7: unknown; had they been <= 0.1: 8 days <= 0.1 (>= 7) -> 3
    assert (r["GAP8"]["icaht_early_grade"], r["GAP8"]["icaht_early_grade_max"], r["GAP8"]["early_unknown_days"]) == (0, 3, 8)
    assert _icaht(study, range_interpolation_gap_days=8)["GAP8"]["icaht_early_grade_max"] == 0


def test_t_icaht_reads_a_gap_the_same_way(study):
    # G3: PLT 150 interpolated over days 1-29 -> grade 0; the 29 gap days < 20 would be >= 14 days -> 4
    g3 = _t(study)["G3"]
    assert (g3["t_icaht_early_grade"], g3["t_icaht_early_grade_max"], g3["early_unknown_days"]) == (0, 4, 29)
    assert "no platelet count measured on days 1-29" in g3["early_reason"]
    assert _t(study, range_interpolation_gap_days=10_000)["G3"]["t_icaht_early_grade_max"] == 0


def test_late_t_icaht_names_the_interpolated_days_below_20(study):
    # P1: 15 on days 40 and 60, interpolated 15 on days 41-59 -> 21 days < 20 on 2 tests -> late 4 (as the
    # contract interpolates); 19 of them (days 41-59) lie in a 19-day gap: named in the reason
    p1 = _t(study)["P1"]
    assert (p1["t_icaht_late_grade"], p1["late_plt_lt_20_days"]) == (4, 21)
    assert ("19 of the days < 20 (days 41-59) are interpolated across gaps of more than 7 days without a count"
            in p1["late_reason"])


def test_count_recovery_never_below_reads_the_gap_as_the_grades_do(study):
    # G1: ANC 2.0 on day 0 and from day 30: days 1-29 (29 > 7 days) could hold a value below 0.5 and a
    # recovery -> not evaluable, naming the gap; a limit above every gap (as the table's null: every gap
    # read as not below, sessions 40-47) -> not applicable
    g1 = _rec(study)["G1"]
    assert g1["neutrophil_recovery_status"] == "not_evaluable"
    assert "days 1-29 have no ANC value (29 days, more than never_below_max_gap_days=7)" in g1["neutrophil_recovery_reason"]
    assert _rec(study, never_below_max_gap_days=10_000)["G1"]["neutrophil_recovery_status"] == "not_applicable"
    # GAP7: a 7-day gap is read as not below -> not applicable (as ICAHT's range reads it)
    assert _rec(study)["GAP7"]["neutrophil_recovery_status"] == "not_applicable"


# --- F4: a same-day untimed count is not taken as the count before the transfusion ----------------


def test_a_same_day_count_after_the_transfusion_is_not_its_pre_count(study):
    t = _t(study)
    # R6: the day-10 count (30) may follow the transfusion: the count before it is day 9's 10 (< 20), so
    # days 10-17 (the day and the 7 after it) count < 20: days 0-17 = 18 days -> 4 (as R7 and as count
    # recovery's platelet recovery on day 18: no transfusion in days 11-20 from day 18 on)
    assert (t["R6"]["t_icaht_early_grade"], t["R6"]["plt_lt_20_days"]) == (4, 18)
    # R7: transfusion on day 9 after an own 10 on days 8 and 9: days 0-16 = 17 days -> 4 (unchanged)
    assert (t["R7"]["t_icaht_early_grade"], t["R7"]["plt_lt_20_days"]) == (4, 17)
    rec = _rec(study)
    assert (rec["R6"]["platelet_recovery_day"], rec["R7"]["platelet_recovery_day"]) == (18.0, 17.0)
    # option true (cartlab before session 48): day 10's 30 is the count before -> days 10-17 open, 10 days < 20 -> 3
    old = _t(study, same_day_count_is_pre_transfusion=True)["R6"]
    assert (old["t_icaht_early_grade"], old["t_icaht_early_grade_max"], old["plt_lt_20_days"]) == (3, 4, 10)


def test_with_times_the_time_order_decides(study):
    t = _t(study)
    # R6T: 30 at 08:00 before the transfusion at 12:00: the own count before it is 30 (not < 20), so days
    # 10-17 are open at < 20: 10 days (0-9) -> 3, up to 4 (18 days)
    assert (t["R6T"]["t_icaht_early_grade"], t["R6T"]["t_icaht_early_grade_max"], t["R6T"]["plt_lt_20_days"]) == (3, 4, 10)
    # R6A: 30 at 18:00, after the transfusion: the count before it is day 9's 10 -> days 0-17 < 20 -> 4
    assert (t["R6A"]["t_icaht_early_grade"], t["R6A"]["plt_lt_20_days"]) == (4, 18)


# --- F5: the count of the censoring event's day ---------------------------------------------------


def test_count_recovery_keeps_the_event_day_count_as_icaht_does(study):
    # EV: ANC 0.1 on days 0-10 (nadir), 2.0 on days 11, 12, 13; new therapy on day 13. The event day's count
    # counts (event_day_counts true, as ICAHT's late_window_end_inclusive): days 11-13 >= 0.5 -> day 11
    ev = _rec(study)["EV"]
    assert (ev["neutrophil_recovery_status"], ev["neutrophil_recovery_day"]) == ("recovered", 11.0)
    # false (sessions 37-47): day 13 dropped, only days 11-12 -> no complete run before the censoring
    old = _rec(study, event_day_counts=False)["EV"]
    assert old["neutrophil_recovery_status"] != "recovered" and old["neutrophil_recovery_day"] is None
    assert "values from that day on are not counted" in old["neutrophil_recovery_reason"]


def test_the_seed_case_neutrophil_recovery_stays_day_39():
    # the case report: neutropenia persisted 38 days -> recovery on day 39 (allo-HSCT on day 60 is later)
    from cartlab.datasets import seed_case

    r = derive_count_recovery(seed_case()).row(0, named=True)
    assert (r["neutrophil_recovery_status"], r["neutrophil_recovery_day"]) == ("recovered", 39.0)


# --- F3: a non-stable blip inside a 31-day aplasia --------------------------------------------------


def test_a_non_stable_blip_keeps_the_literal_grade_and_names_the_other_reading(study):
    # B1: ANC <= 0.5 on days 0-28 and 30 (30 days) plus the 1-day non-stable recovery on day 29 counted
    # -> 31 days >= 14 -> 3; day 29 is above 0.5, so 'never above 0.5' does not hold literally -> 3.
    b1 = _icaht(study)["B1"]
    assert (b1["icaht_early_grade"], b1["anc_le_500_days"]) == (3, 31)
    assert "option never_above_bridges_nonstable=true" in b1["early_reason"] and "gives grade 4" in b1["early_reason"]
    # option true (Liang: a non-stable recovery is no recovery): never above -> 4; the literal reading named
    on = _icaht(study, never_above_bridges_nonstable=True)["B1"]
    assert (on["icaht_early_grade"], on["early_rule"]) == (4, "icaht.early.g4_never_above_500")
    assert "The literal reading" in on["early_reason"] and "gives grade 3" in on["early_reason"]
    # B3: a 3-day (stable) recovery is a recovery in both readings: 28 days <= 0.5 -> 3, no other reading named
    for b3 in (_icaht(study)["B3"], _icaht(study, never_above_bridges_nonstable=True)["B3"]):
        assert b3["icaht_early_grade"] == 3 and "reading" not in b3["early_reason"]


def test_the_options_are_table_defaults():
    assert load_raw("icaht_2023")["defaults"]["range_interpolation_gap_days"] == 7
    assert load_raw("icaht_2023")["defaults"]["never_above_bridges_nonstable"] is False
    assert load_raw("t_icaht_2025")["defaults"]["range_interpolation_gap_days"] == 7
    assert load_raw("t_icaht_2025")["defaults"]["same_day_count_is_pre_transfusion"] is False
    rec = load_raw("count_recovery")["defaults"]
    assert (rec["never_below_max_gap_days"], rec["event_day_counts"]) == (7, True)
    # the grade itself stays the contract's interpolation
    assert load_raw("icaht_2023")["defaults"]["max_interpolation_gap_days"] is None
