"""A statistician's audit of the cohort numbers (session 26), on a 10-subject study written by hand
(tests/fixtures/cohort_s26/base; ``hsct`` = the same with an infusion date and an allogeneic HSCT
on day 60 for S02 and S05). Every expected value is derived by hand from the study design:

| id  | disease | day-28 marrow | relapse | death | last_followup_day |
| S01 | AML     | CR            | 120     | 200   | 200               |
| S02 | AML     | CR            | -       | -     | 365               |
| S04 | B-ALL   | CRi           | -       | 60    | 60                |
| S05 | B-ALL   | CR            | 150     | -     | 300               |
| S06 | B-ALL   | none (NE)     | -       | 10    | 10                |
| S08 | LBCL    | (no criteria) | -       | -     | 240               |
| S09 | AML     | CR            | 90      | 120   | 120               |
| S10 | B-ALL   | CR            | -       | -     | empty; last row (WBC) day 100 |
Every subject's only neutrophil counts are on day 28 (S10: days 28 and 56).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from cartlab.analyze import Analysis, AnalysisOptions
from cartlab.io.study_folder import read_study
from cartlab.response.best import BestResponseOptions

HERE = Path(__file__).parent / "fixtures" / "cohort_s26"


@pytest.fixture(scope="module")
def base():
    return Analysis(read_study(HERE / "base"))


def _rows(df: pl.DataFrame, key: str = "subject_id") -> dict:
    return {r[key]: r for r in df.iter_rows(named=True)}


def test_duration_of_response_ends_at_relapse_or_death_else_last_known_alive(base):
    # first response day 28 for every responder; DOR = relapse or death day - 28, else censored at the
    # last response assessment (session 37 default, ELN "last examined"; S10: its day-56 marrow, 28
    # days; when last known alive, dor_censor="last_known_alive": its last recorded row, day 100, 72)
    b = _rows(base.table("best_response"))
    got = {s: (b[s]["dor_days"], b[s]["dor_event"]) for s in ("S01", "S02", "S04", "S05", "S09", "S10")}
    # (S02: its only marrow is the day-28 CR: 0 days; last follow-up 365: 337)
    assert got == {"S01": (92.0, True), "S02": (0.0, False), "S04": (32.0, True), "S05": (122.0, True),
                   "S09": (62.0, True), "S10": (28.0, False)}
    alive = _rows(Analysis(base.study, AnalysisOptions(best_response=BestResponseOptions(
        dor_censor="last_known_alive"))).table("best_response"))
    assert (alive["S02"]["dor_days"], alive["S10"]["dor_days"]) == (337.0, 72.0)


def test_duration_of_response_and_hsct():
    study = read_study(HERE / "hsct")
    # default (as ELN 2022 and the ADTTE endpoints): no censoring at HSCT; S05's relapse on day 150
    # after its day-60 HSCT is the event, S02 is censored at its last response assessment (session 37:
    # its only marrow, the day-28 CR, 0 days; at its last follow-up, 365 - 28, when last known alive)
    b = _rows(Analysis(study).table("best_response"))
    assert (b["S02"]["dor_days"], b["S02"]["dor_event"]) == (0.0, False)
    assert (b["S05"]["dor_days"], b["S05"]["dor_event"]) == (122.0, True)
    # censoring at HSCT (option): at the last response assessment before the day-60 HSCT, day 28
    # (0 days), the same rule for both; when last known alive: at the HSCT, 60 - 28 = 32
    for censor, days in (("last_response_assessment", 0.0), ("last_known_alive", 32.0)):
        opts = AnalysisOptions(best_response=BestResponseOptions(dor_censor_events=("allo_hsct",), dor_censor=censor))
        b = _rows(Analysis(study, opts).table("best_response"))
        assert (b["S02"]["dor_days"], b["S02"]["dor_event"]) == (days, False)
        assert (b["S05"]["dor_days"], b["S05"]["dor_event"]) == (days, False)


def test_response_based_endpoints_not_defined_without_response_criteria(base):
    t = base.table("adtte").filter(pl.col("subject_id") == "S08")
    p = _rows(t, "PARAMCD")
    assert p["OS"]["ANLFL"] == "Y" and p["OS"]["AVAL"] == 240.0 and p["OS"]["CNSR"] == 1
    for code in ("EFS", "RFS", "LFS", "CIR"):
        r = p[code]
        assert r["ANLFL"] is None and r["AVAL"] is None and r["CNSR"] is None, code
        assert r["rule"] == "no_response_criteria" and "LBCL" in r["reason"], code
    # EFS's population is then the 9 subjects with criteria (S07, alive and NE, stays censored at 0)
    efs = base.table("adtte").filter((pl.col("PARAMCD") == "EFS") & (pl.col("ANLFL") == "Y"))
    assert efs.height == 9


def test_adam_cir_competing_death_is_not_cnsr_0(base, tmp_path):
    from cartlab.io.adam import export_adam

    export_adam(base, tmp_path, formats=("csv",))
    cir = _rows(pl.read_csv(tmp_path / "adtte.csv").filter(pl.col("PARAMCD") == "CIR"), "USUBJID")
    # relapse after remission: S01, S05, S09 -> 0; S04 died on day 60 without relapse -> competing, 2;
    # S02, S10 alive without relapse -> censored, 1
    assert {s: cir[s]["CNSR"] for s in ("S01", "S02", "S04", "S05", "S09", "S10")} == {
        "S01": 0, "S02": 1, "S04": 2, "S05": 0, "S09": 0, "S10": 1}


def test_early_icaht_from_one_count_is_a_range(base):
    i = _rows(base.table("icaht"))
    # one ANC (normal) on day 28: days 0-27, 29, 30 unknown (30 days) -> 0 by the days known, and
    # up to 4 had they been below 0.1 (>= 14 days <= 100/uL)
    assert (i["S01"]["icaht_early_grade"], i["S01"]["icaht_early_grade_max"], i["S01"]["early_unknown_days"]) == (0, 4, 30)
    assert "Could be up to grade 4" in i["S01"]["early_reason"]
    # S10: counts on days 28 and 56: days 29 and 30 are interpolated for the grade, but across a 27-day gap
    # (more than range_interpolation_gap_days, 7; session 48, review 48 F1) unknown for the range: 30 unknown
    assert (i["S10"]["icaht_early_grade"], i["S10"]["icaht_early_grade_max"], i["S10"]["early_unknown_days"]) == (0, 4, 30)
    # S06 died on day 10 without a count: not evaluable, 11 days (0-10) unknown; session 38 (review s38 B3):
    # up to 4 - had every day been <= 100/uL the ANC was never above 500 in the window (icaht.early.g4_never_above_500)
    assert i["S06"]["icaht_early_grade"] is None and i["S06"]["icaht_early_grade_max"] == 4
    assert i["S06"]["early_unknown_days"] == 11


def test_icaht_distribution_counts_grades_that_could_be_higher(base):
    from cartlab.report import cohort_data as cd

    d = cd.icaht_distribution(base).counts
    early0 = d.filter(pl.col("term").str.starts_with("ICAHT early") & (pl.col("grade") == 0)).row(0, named=True)
    # grade 0 early: S01, S02, S04, S05, S07, S09, S10 - each could be higher (days without a count)
    assert early0["n"] == 7 and early0["n_could_be_higher"] == 7


def test_seed_case_icaht_range_is_closed():
    from cartlab.datasets import seed_case

    r = Analysis(seed_case()).table("icaht").row(0, named=True)
    # the seed's ANC covers days 0-30 (measured or interpolated): the grade is settled
    assert (r["icaht_early_grade"], r["icaht_early_grade_max"], r["early_unknown_days"]) == (3, 3, 0)


def test_km_medians_and_numbers_at_risk(base):
    # KM by hand (AVAL, CNSR; events before censorings at a tie):
    # OS: deaths 10, 60, 90, 120, 200 among 10; S(120) = .9 * 8/9 * 7/8 * 5/6 = .5833 (S10 censored at
    #     100), S(200) = .5833 * 3/4 = .4375 -> median 200
    # EFS (9 subjects; S08 has no response criteria): S(0) = 7/9; session 34: remission without
    #     relapse or death is censored on the last response assessment (ELN 2022 Table 9): S02 at 28,
    #     S10 at 56 -> at 60 n = 4: S(60) = 7/9 * 3/4 = .5833, S(90) = * 2/3 = .3889 -> median 90
    # RFS (6 in remission, from day 28): events at 32, 62, 92 (S(92) = 5/6 * 4/5 * 2/3 = .444) -> 92
    med = _rows(base.table("km_median"), "PARAMCD")
    assert {p: med[p]["median"] for p in ("OS", "EFS", "RFS")} == {"OS": 200.0, "EFS": 90.0, "RFS": 92.0}
    assert (med["OS"]["n"], med["OS"]["n_events"], med["EFS"]["n"], med["RFS"]["n"]) == (10, 5, 9, 6)
    assert set(base.table("km")["PARAMCD"]) == {"OS", "EFS", "RFS", "LFS"}
    from cartlab.report import cohort_data as cd

    t = _rows(cd.survival_data(base).table(), "PARAMCD")
    # at risk = AVAL >= t: OS at 60: all but S06 (10) -> 9; at 120: S01, S02, S05, S07, S08, S09 -> 6
    assert (t["OS"]["median"], t["OS"]["at_risk_day_0"], t["OS"]["at_risk_day_60"], t["OS"]["at_risk_day_120"]) == (
        200.0, 10, 9, 6)
    assert (t["RFS"]["at_risk_day_0"], t["RFS"]["at_risk_day_60"], t["RFS"]["at_risk_day_120"]) == (6, 5, 2)


def test_early_t_icaht_from_one_count_is_a_range(base):
    t = _rows(base.table("t_icaht"))
    # one platelet count on day 28 (S01: 150 x10^9/L, not below any level): 30 of days 0-30 unknown;
    # had they been below every level (< 10 for 30 days) the grade would be 4
    assert (t["S01"]["t_icaht_early_grade"], t["S01"]["t_icaht_early_grade_max"], t["S01"]["early_unknown_days"]) == (
        0, 4, 30)
    # S06: early window censored at death on day 10, no count: not evaluable, 11 unknown days
    assert t["S06"]["t_icaht_early_grade"] is None and t["S06"]["early_unknown_days"] == 11
    from cartlab.report import cohort_data as cd

    d = cd.icaht_distribution(base).counts
    t0 = d.filter(pl.col("term").str.starts_with("T-ICAHT early") & (pl.col("grade") == 0)).row(0, named=True)
    assert t0["n_could_be_higher"] == t0["n"]


def test_km_median_skips_an_endpoint_nobody_is_in():
    from cartlab.datasets import seed_case

    # the seed subject's best response is MLFS: not in remission, so no RFS/LFS row is analysable;
    # OS: alive (no event) -> median not reached
    m = _rows(Analysis(seed_case()).table("km_median"), "PARAMCD")
    assert set(m) == {"OS", "EFS"} and m["OS"]["median"] is None and "not reached" in m["OS"]["reason"]


def test_response_rates_say_who_is_in_no_denominator(base):
    r = base.table("response_rates").filter(pl.col("criteria").is_null() & (pl.col("endpoint") == "ORR")).row(
        0, named=True)
    # 9 subjects with criteria (S08, LBCL, has none): responders S01 S02 S04 S05 S09 S10 -> 6 of 9
    assert (r["n"], r["n_responders"], r["n_no_criteria"]) == (9, 6, 1)
    assert "1 subject(s) without response criteria" in r["reason"] and "S08" in r["reason"]


def test_report_icaht_view_says_grades_could_be_higher(base):
    from cartlab.report.cohort_mpl import cohort_figures

    views = {v.key: v for v in cohort_figures(base)}
    # 7 early ICAHT grades 0 and 7 early T-ICAHT grades 0/1 rest on one count on day 28 (S03's
    # T-ICAHT 1 too); every one of them could be higher
    # session 33: the caption names each term (it credited every range to "early"); its counts are
    # the subjects whose table grade is below its upper bound
    ic, ti = base.table("icaht"), base.table("t_icaht")
    n_ic = ic.filter(pl.col("icaht_early_grade_max") > pl.col("icaht_early_grade")).height
    n_ti = ti.filter(pl.col("t_icaht_early_grade_max") > pl.col("t_icaht_early_grade")).height
    assert n_ic >= 7 and n_ti >= 7
    # session 34: the late ICAHT term has upper bounds too (days without an ANC), named between them
    cap = views["icaht"].caption
    assert f"ICAHT early (days 0-30): {n_ic} subject(s), " in cap
    assert (f"T-ICAHT early (days 0-30): {n_ti} subject(s) could have a higher grade (days of the window without a "
            "count are not counted)") in cap or f"T-ICAHT early (days 0-30): {n_ti} subject(s), " in cap
    t = views["survival"].table
    assert {"median", "at_risk_day_0"} <= set(t.columns)


def test_mrd_reason_states_the_comparison_that_holds(base):
    # S01: MRDFCM 0.005 against the ELN threshold 0.1% (0.001, strict "<" for negative): positive, so
    # the reason says ">=" (it said "0.005 < 0.001: positive"); S02: 0 < 0.001, negative
    m = _rows(base.table("marrow_response"))
    # session 37: the reason goes on with the specimen and the flow-only note (review 37 B1/B2)
    assert "MRDFCM 0.005 >= 0.001: positive (" in m["S01"]["reason"]
    assert "MRDFCM 0 < 0.001: negative [" in m["S02"]["reason"]
