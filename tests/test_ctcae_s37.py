"""Session 37 fixes of CTCAE v5.0 lab grading (review 37, /work/notes/review37_ctcae/REPORT.md).

Every expected grade is derived by hand from the CTCAE v5.0 text (quoted in criteria/ctcae_v5*.yaml
``ctcae:``; the liver terms as transcribed in admiral's ncictcaev5.json GRADE_n fields), with unit
conversions worked out by hand (creatinine 1 mg/dL = 88.4 umol/L; bilirubin 1 mg/dL = 17.1 umol/L;
haemoglobin 1 mmol/L = 16.1145 g/L at 16,114.5 g/mol), never copied from the engine's output. Each
test fails on the code before session 37.
"""

from __future__ import annotations

import polars as pl
import pytest

from cartlab.grading.ctcae import CtcaeOptions, derive_ctcae, grade_labs
from cartlab.io import read_study

NEUT_L = "Neutrophil count decreased"


def _study(tmp_path, rows, infusion="2024-03-01T10:00", extra_cols=""):
    """A study folder, one subject, its infusion at ``infusion``; rows (day, datetime, param, value,
    value_text, unit, lln, uln)."""
    (tmp_path / "subjects.csv").write_text(f"subject_id,sex,age_years,infusion_datetime\nS01,F,50,{infusion}\n")
    lines = ["subject_id,day,datetime,param,value,value_text,unit,lln,uln"]
    lines += ["S01," + ",".join("" if v is None else str(v) for v in r) for r in rows]
    (tmp_path / "observations.csv").write_text("\n".join(lines) + "\n")
    return read_study(tmp_path)


def _by_day(adlb, param):
    return {round(r["day"], 4): r for r in adlb.filter(pl.col("param") == param).iter_rows(named=True)}


# ---------------------------------------------------------------------------------------------
# R37-8: a timed sample on day 0 can be the baseline (calendar day), option baseline_day0

#: creatinine, ULN 1.2 mg/dL; infusion 2024-03-01 10:00. CTCAE v5.0 Creatinine increased G2
#: ">1.5 - 3.0 x baseline; >1.5 - 3.0 x ULN". 07:00 of day 0 = day 0.2917, 16:00 = day 0.6667.
CREAT_ROWS = [
    (0, "2024-03-01T07:00", "CREAT", 0.6, None, "mg/dL", 0.5, 1.2),
    (5, "2024-03-06T08:00", "CREAT", 1.0, None, "mg/dL", 0.5, 1.2),
]


def test_timed_day0_sample_is_the_baseline(tmp_path):
    # the only pre-day-1 value is 07:00 of day 0: BASE = 0.6 mg/dL = 53.04 umol/L; day 5 1.0 mg/dL is
    # 1.0 / 0.6 = 1.667 x BASE (> 1.5, <= 3.0) and below ULN 1.2: grade 2 (old code: no BASE, grade 0)
    adlb = derive_ctcae(_study(tmp_path, CREAT_ROWS))
    rows = _by_day(adlb, "CREAT")
    assert rows[0.2917]["ABLFL"] == "Y"
    assert rows[5.3333]["BASE"] == pytest.approx(0.6 * 88.4)
    assert rows[5.3333]["ATOXGRH"] == 2 and rows[5.3333]["ATOXGRH_MAX"] is None


def test_baseline_day0_before_infusion_time(tmp_path):
    # a second day-0 sample at 16:00 (after the 10:00 infusion), 1.0 mg/dL
    rows = [*CREAT_ROWS, (0, "2024-03-01T16:00", "CREAT", 1.0, None, "mg/dL", 0.5, 1.2)]
    study = _study(tmp_path, rows)
    # calendar_day: the last value of day 0 is the 16:00 one: BASE 1.0 mg/dL, day 5 = 1.0 x BASE and
    # < ULN: grade 0
    cal = _by_day(derive_ctcae(study, CtcaeOptions(baseline_day0="calendar_day")), "CREAT")
    assert cal[0.6667]["ABLFL"] == "Y" and cal[5.3333]["ATOXGRH"] == 0
    # before_infusion_time (the default since the whole-diff review A2): only the 07:00 sample is before
    # the 10:00 infusion: BASE 0.6, grade 2 (as above)
    inf = _by_day(derive_ctcae(study), "CREAT")
    assert inf[0.2917]["ABLFL"] == "Y" and inf[0.6667]["ABLFL"] is None
    assert inf[5.3333]["ATOXGRH"] == 2
    # the 16:00 sample is after the infusion: post-baseline (1.0 / 0.6 x BASE: grade 2 too)
    assert inf[0.6667]["post_baseline"] is True and inf[0.2917]["post_baseline"] is False


def test_advs_baseline_uses_the_calendar_day(tmp_path):
    from cartlab.analyze import Analysis, AnalysisOptions
    from cartlab.io.adam.build import build_datasets

    rows = [(0, "2024-03-01T07:00", "TEMP", 37.0, None, "C", None, None),
            (2, "2024-03-03T08:00", "TEMP", 39.0, None, "C", None, None)]
    advs = build_datasets(Analysis(_study(tmp_path, rows), AnalysisOptions()), ["ADVS"])["ADVS"]
    by_day = {round(r["ARELDY"], 4): r for r in advs.iter_rows(named=True)}
    # the 07:00 reading of day 0 is the last on or before day 0: ABLFL, BASE 37.0, CHG +2.0 on day 2
    assert by_day[0.2917]["ABLFL"] == "Y"
    assert by_day[2.3333]["BASE"] == pytest.approx(37.0) and by_day[2.3333]["CHG"] == pytest.approx(2.0)


# ---------------------------------------------------------------------------------------------
# R37-1: a censored result whose interval spans two grades keeps its lower grade, the upper in _MAX


def test_censored_range_keeps_lower_grade(tmp_path):
    # NEUT "<0.6" 10^9/L: the value is in [0, 0.6); CTCAE G3 "<1.0 - 0.5 x 10e9/L" covers [0.5, 0.6),
    # G4 "<0.5 x 10e9/L" covers [0, 0.5): grade 3-4 -> ATOXGRL 3, ATOXGRL_MAX 4, ATOXGR -3
    rows = [(-1, None, "NEUT", 3.0, None, "10^9/L", 1.8, 7.5), (4, None, "NEUT", None, "<0.6", "10^9/L", 1.8, 7.5),
            (5, None, "NEUT", None, "<0.1", "10^9/L", 1.8, 7.5)]
    r = _by_day(derive_ctcae(_study(tmp_path, rows)), "NEUT")
    assert (r[4.0]["ATOXGRL"], r[4.0]["ATOXGRL_MAX"], r[4.0]["ATOXGR"]) == (3, 4, -3)
    assert "<0.6" in r[4.0]["grade_reason"] and "grade 3-4" in r[4.0]["grade_reason"]
    assert not r[4.0]["grade_reason"].startswith("not gradable")
    # "<0.1": [0, 0.1) is all G4: settled
    assert (r[5.0]["ATOXGRL"], r[5.0]["ATOXGRL_MAX"]) == (4, None)


# ---------------------------------------------------------------------------------------------
# R37-2: a censored baseline


def test_censored_baseline_settles_abnormal(tmp_path):
    # BILI day -1 ">3.0" mg/dL, ULN 1.2: the baseline exceeds the ULN -> abnormal (BNRIND HIGH).
    # Day 5 3.1 mg/dL. Blood bilirubin increased, baseline abnormal: G1 ">1.0 - 1.5 x baseline",
    # G2 ">1.5 - 3.0 x baseline". BASE in (3.0, inf): 3.1 > 1.0 x BASE only when BASE < 3.1, and
    # 3.1 > 1.5 x BASE never (BASE > 3.0): grade 0-1 (old code: a settled grade 2 as if normal)
    rows = [(-1, None, "BILI", None, ">3.0", "mg/dL", None, 1.2), (5, None, "BILI", 3.1, None, "mg/dL", None, 1.2)]
    r = _by_day(derive_ctcae(_study(tmp_path, rows)), "BILI")
    assert r[-1.0]["ABLFL"] == "Y" and r[-1.0]["BASE"] is None and r[5.0]["BNRIND"] == "HIGH"
    assert (r[5.0]["ATOXGRH"], r[5.0]["ATOXGRH_MAX"]) == (0, 1)
    # the bound in the canonical unit: 3.0 mg/dL = 30 mg/L / 584.66 g/mol = 51.31 umol/L
    assert "baseline is the censored result >51.31" in r[5.0]["grade_reason"]
    assert "umol/L (BASE empty; BNRIND HIGH)" in r[5.0]["grade_reason"]
    assert "leaves H grade 0-1 open" in r[5.0]["grade_reason"]


def test_censored_baseline_unsettled_gives_a_range(tmp_path):
    # BILI baseline "<2.0" mg/dL with LLN 0.3, ULN 1.2: below, within or above the limits: not settled.
    # Day 5 3.1 mg/dL: baseline normal -> 3.1 / 1.2 = 2.58 x ULN, G2 (">1.5 - 3.0 x ULN");
    # baseline abnormal, BASE in (0, 2.0) -> 3.1 / BASE in (1.55, inf): G2 (>1.5 x) up to G4 (>10 x,
    # BASE < 0.31): grade 2-4
    rows = [(-1, None, "BILI", None, "<2.0", "mg/dL", 0.3, 1.2), (5, None, "BILI", 3.1, None, "mg/dL", 0.3, 1.2)]
    r = _by_day(derive_ctcae(_study(tmp_path, rows)), "BILI")
    assert r[5.0]["BNRIND"] is None
    assert (r[5.0]["ATOXGRH"], r[5.0]["ATOXGRH_MAX"]) == (2, 4)
    # 2.0 mg/dL = 20 mg/L / 584.66 g/mol = 34.21 umol/L
    assert "censored result <34.2" in r[5.0]["grade_reason"] and "leaves H grade 2-4 open" in r[5.0]["grade_reason"]


def test_no_baseline_reason_says_read_as_normal(tmp_path):
    # ALT 130 U/L, ULN 40, no baseline: 3.25 x ULN, G2 ">3.0 - 5.0 x ULN if baseline was normal"
    # (admiral reads no baseline as normal); the reason now says so
    rows = [(3, None, "ALT", 130, None, "U/L", None, 40)]
    r = _by_day(derive_ctcae(_study(tmp_path, rows)), "ALT")[3.0]
    assert r["ATOXGRH"] == 2 and "no baseline (BASE empty)" in r["grade_reason"]


# ---------------------------------------------------------------------------------------------
# R37-4 / R37-9: ADLB upper bounds, range flags and worst-grade flags (post-baseline only)


def test_adlb_ranges_and_worst_flags(tmp_path):
    from cartlab.analyze import Analysis, AnalysisOptions
    from cartlab.io.adam.build import build_datasets

    # NEUT (LLN 1.8): day 0 (date only) 0.3 = G4 ("<0.5") is the baseline record (last on or before
    # day 0); day 2 0.8 = G3 ("<1.0 - 0.5"); day 4 "<0.6" = G3-4 (as above); day 6 0.8 = G3 again.
    # The worst post-baseline ATOXGRL is 3 (the range counts at its lower grade): the first, day 2,
    # is WGRLOFL; the baseline record (G4) is not.
    rows = [(0, None, "NEUT", 0.3, None, "10^9/L", 1.8, 7.5), (2, None, "NEUT", 0.8, None, "10^9/L", 1.8, 7.5),
            (4, None, "NEUT", None, "<0.6", "10^9/L", 1.8, 7.5), (6, None, "NEUT", 0.8, None, "10^9/L", 1.8, 7.5)]
    adlb = build_datasets(Analysis(_study(tmp_path, rows, infusion="2024-03-01"), AnalysisOptions()), ["ADLB"])["ADLB"]
    by = {r["ARELDY"]: r for r in adlb.iter_rows(named=True)}
    assert by[0.0]["ABLFL"] == "Y" and by[0.0]["WGRLOFL"] is None
    assert [d for d, r in sorted(by.items()) if r["WGRLOFL"] == "Y"] == [2.0]
    assert (by[4.0]["ATOXGRL"], by[4.0]["ATOXGLUP"], by[4.0]["ATOXLRFL"]) == ("3", 4, "Y")
    assert (by[2.0]["ATOXGLUP"], by[2.0]["ATOXLRFL"]) == (3, "N")
    assert by[2.0]["ATOXGHUP"] is None and by[2.0]["WGRHIFL"] is None  # NEUT has no high term


# ---------------------------------------------------------------------------------------------
# R37-3: CTCAE's mmol/L Anemia column

#: Anemia mmol/L column: G1 "<LLN - 6.2 mmol/L", G2 "<6.2 - 4.9 mmol/L", G3 "<4.9 mmol/L".
#: 4.96 mmol/L = 79.93 g/L (< 80 g/L: SI G3), mmol/L column G2; 6.2 mmol/L = 99.91 g/L (< 100 g/L:
#: SI G2), mmol/L column G1 (not "<6.2"; LLN 7.45 mmol/L).


def test_hb_mmol_note_and_reported_column(tmp_path):
    rows = [(6, None, "HGB", 4.96, None, "mmol/L", 7.45, 9.93), (7, None, "HGB", 6.2, None, "mmol/L", 7.45, 9.93)]
    study = _study(tmp_path, rows)
    si = _by_day(derive_ctcae(study), "HGB")
    assert si[6.0]["ATOXGRL"] == 3 and "CTCAE's mmol/L column gives Anemia grade 2" in si[6.0]["grade_reason"]
    assert si[7.0]["ATOXGRL"] == 2 and "CTCAE's mmol/L column gives Anemia grade 1" in si[7.0]["grade_reason"]
    rep = _by_day(derive_ctcae(study, CtcaeOptions(criteria_units_by_row="reported")), "HGB")
    assert (rep[6.0]["ATOXGRL"], rep[7.0]["ATOXGRL"]) == (2, 1)
    assert str(rep[6.0]["rule"]).startswith("ctcae_v5_uscv:anemia_mmol:g2")


def test_anemia_term_in_mmol_is_graded_on_its_column():
    df = pl.DataFrame({"term": ["Anemia", "Anemia"], "direction": ["L", "L"], "aval": [4.96, 4.8],
                       "anrlo": [7.45, 7.45], "unit": ["mmol/L", "mmol/L"]})
    assert grade_labs(df)["grade"].to_list() == [2, 3]  # "<6.2 - 4.9" and "<4.9 mmol/L"


# ---------------------------------------------------------------------------------------------
# R37-5 / R37-6: cartlab ctcae


def test_param_row_without_direction_says_so():
    df = pl.DataFrame({"param": ["NEUT"], "direction": [None], "aval": [0.4], "anrlo": [2.0], "unit": ["10^9/L"]},
                      schema_overrides={"direction": pl.String})
    r = grade_labs(df).row(0, named=True)
    assert r["grade"] is None
    assert r["grade_reason"] == f"not gradable: direction missing (NEUT has {NEUT_L} (L))"


def test_ctcae_command_grades_censored_aval(tmp_path):
    from cartlab.cli.grading_io import ctcae_command

    src = tmp_path / "t.csv"
    # "<0.5": [0, 0.5) all G4; "<500" /uL = "<0.5" 10^9/L; "<0.6": G3-4 (lower 3 stands); ALT ">1000"
    # with ULN 40: > 25 x ULN, G4 ">20.0 x ULN" at both ends
    src.write_text("term,direction,aval,anrlo,anrhi,unit\nANC,L,<0.5,2.0,7.5,10^9/L\nANC,L,<500,2000,7500,/uL\n"
                   "ANC,L,<0.6,2.0,7.5,10^9/L\nALT,H,>1000,,40,U/L\n")
    out = tmp_path / "o.csv"
    ctcae_command(src, out)
    got = pl.read_csv(out, infer_schema=False)
    assert got["grade"].to_list() == ["4", "4", "3", "4"]
    assert got["aval"].to_list()[0] == "<0.5"  # input columns unchanged
    assert "grade 3-4 open" in got["grade_reason"][2]


# ---------------------------------------------------------------------------------------------
# R37-7 (needs params.diff: TBILI as a BILI alias in io/params_v1.yaml)


def test_tbili_is_read_as_bilirubin(tmp_path):
    from cartlab.cli.grading_io import ctcae_command

    # TBILI 1.8 mg/dL, ULN 1.2: exactly 1.5 x ULN, Blood bilirubin increased G1 ">ULN - 1.5 x ULN"
    src = tmp_path / "t.csv"
    src.write_text("term,direction,aval,anrhi,unit\nTBILI,H,1.8,1.2,mg/dL\n")
    out = tmp_path / "o.csv"
    summary = ctcae_command(src, out)
    got = pl.read_csv(out, infer_schema=False)
    assert got["grade"].to_list() == ["1"] and summary["unknown_terms"] == []
    assert "read as parameter BILI" in got["grade_reason"][0]
