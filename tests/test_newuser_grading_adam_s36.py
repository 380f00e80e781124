"""Session 36 new-user review fixes A1 and A2 (/work/notes/review36_newuser/REPORT.md).

* A1: ICAHT / T-ICAHT named a window graded 0 ``*.late.not_evaluable`` (and an early grade 0
  ``*.early.not_evaluable``): the rule column contradicted the grade. A grade 0 now names the criteria
  row ``<prefix>.<window>.g0``; ``not_evaluable`` only an empty grade.
* A2: the ADaM export wrote the lower end of a grade range as a definite grade (ADSL CRSGRMX=2 for
  ASTCT 2-5, ICAHTLGR=0 for 0-4, ADAE ATOXGR without an upper bound). ADSL now has CRSGRUP/CRSGRFL,
  ICNGRUP/ICNGRFL, ICAHTEUP/ICAEGRFL, ICAHTLUP/ICALGRFL and ADAE ATOXGRUP/ATOXRGFL.

Every expected value is derived by hand from the tiny studies below (inclusive "<=" ANC levels,
linear interpolation between measured days, no extrapolation, late window day 31 to last follow-up,
a day without a count read as a test below every level for the highest grade possible); none is
copied from cartlab's output. Each test failed on the code before session 36 (checked by restoring
copies of the old icaht.py / t_icaht.py / criteria tables / io/adam files).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from cartlab.analyze import Analysis, AnalysisOptions
from cartlab.criteria import rule_status
from cartlab.criteria.model import load_table
from cartlab.grading.icaht import derive_icaht
from cartlab.grading.t_icaht import derive_t_icaht
from cartlab.io import read_study
from cartlab.io.adam import export_adam, load_spec


def _study(tmp: Path, rows: dict[str, list[tuple]], fu: dict[str, int], events=()) -> object:
    """Subjects ``fu`` (id -> last follow-up day); ``rows``: id -> [(day, param, value, unit)]."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "subjects.csv").write_text("subject_id,last_followup_day\n" + "".join(f"{s},{d}\n" for s, d in fu.items()))
    (tmp / "observations.csv").write_text("subject_id,day,param,value,unit\n" + "".join(
        f"{s},{d},{p},{v},{u}\n" for s, rs in rows.items() for d, p, v, u in rs))
    # always written (header-only when no event): an absent events.csv leaves the late window's end
    # unknown (review 40 A2, icaht.conv.absent_events), which these tests are not about
    (tmp / "events.csv").write_text("subject_id,day,event\n" + "".join(f"{s},{d},{e}\n" for s, d, e in events))
    # none given (an empty file with its header): an ABSENT interventions.csv makes CRS days ranges up to
    # grade 4 since session 37 (option crs.absent_interventions)
    (tmp / "interventions.csv").write_text("subject_id,start_day,end_day,category\n")
    return read_study(tmp)


def _neut(*pairs):
    return [(d, "NEUT", v, "10^9/L") for d, v in pairs]


def _plat(*pairs):
    return [(d, "PLAT", v, "10^9/L") for d, v in pairs]


def _quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


# ---------------------------------------------------------------------------------------------
# A1: a grade 0 names its g0 row, not not_evaluable


def test_icaht_grade_0_in_both_windows_names_the_g0_rows(tmp_path):
    """ANC 2.0 on days 0, 30, 40 and 50, follow-up 60. Early: every day 0-30 known (interpolated 2.0),
    never <= 0.5 -> grade 0. Late (days 31-60): 2 measurements (40, 50), none <= 1.5 -> grade 0,
    evaluable (2 tests). Before: 'early: icaht.early.not_evaluable; late: icaht.late.not_evaluable'."""
    s = _study(tmp_path, {"S1": _neut((0, 2.0), (30, 2.0), (40, 2.0), (50, 2.0))}, {"S1": 60})
    r = _quiet(derive_icaht, s).row(0, named=True)
    assert (r["icaht_early_grade"], r["icaht_late_grade"]) == (0, 0)
    assert r["rule"] == "early: icaht.early.g0; late: icaht.late.g0"
    assert (r["early_rule"], r["late_rule"]) == ("icaht.early.g0", "icaht.late.g0")
    # days 51-60 have no ANC (no extrapolation): read as tests <= 0.1 they make grade 4 possible
    assert r["icaht_late_grade_max"] == 4


def test_icaht_not_evaluable_stays_only_where_the_late_grade_is_empty(tmp_path):
    """ANC 2.0 on days 0, 30 and 40, follow-up 60: one late measurement (day 40) < 2 needed and no
    run at or below a level -> late not evaluable (empty); early grade 0 (as above)."""
    s = _study(tmp_path, {"S1": _neut((0, 2.0), (30, 2.0), (40, 2.0))}, {"S1": 60})
    r = _quiet(derive_icaht, s).row(0, named=True)
    assert r["icaht_late_grade"] is None and r["late_rule"] is None
    assert r["rule"] == "early: icaht.early.g0; late: icaht.late.not_evaluable"


def test_t_icaht_grade_0_in_both_windows_names_the_g0_rows(tmp_path):
    """PLT 200 on days 0, 30, 40 and 50, follow-up 60: early never < 50 -> 0; late 2 counts, none
    < 100 -> 0 (Rejeski 2025 Table 1). Before: both windows written t_icaht.*.not_evaluable."""
    s = _study(tmp_path, {"S1": _plat((0, 200), (30, 200), (40, 200), (50, 200))}, {"S1": 60})
    r = _quiet(derive_t_icaht, s).row(0, named=True)
    assert (r["t_icaht_early_grade"], r["t_icaht_late_grade"]) == (0, 0)
    assert r["rule"] == "early: t_icaht.early.g0; late: t_icaht.late.g0"
    assert (r["early_rule"], r["late_rule"]) == ("t_icaht.early.g0", "t_icaht.late.g0")


@pytest.mark.parametrize("table,prefix,status", [("icaht_2023", "icaht", "partially_verified"),
                                                 ("t_icaht_2025", "t_icaht", "verified")])
def test_g0_rows_are_criteria_rows_with_citation_and_status(table, prefix, status):
    """The g0 ids are rows of the table (text, citation quoting the source, status): the status
    look-up finds them, and their text says grade 0, not 'not evaluable'."""
    rows = {r["id"]: r for r in load_table(table).extra("conventions")}
    for window in ("early", "late"):
        row = rows[f"{prefix}.{window}.g0"]
        assert row["status"] == status and "grade 0" in row["citation"] and "Grade 1" in row["citation"]
        assert "grade 0" in row["text"] and "not evaluable" not in row["text"]
        assert rule_status(f"{prefix}.{window}.g0") == status


# ---------------------------------------------------------------------------------------------
# A2: ADaM writes the highest grade possible and a range flag


#: ANC 2.0 x10^9/L every 6 days over days 0-30 (no gap of more than range_interpolation_gap_days, 7)
EARLY = [(d, 2.0) for d in range(0, 31, 6)]


@pytest.fixture(scope="module")
def adam(tmp_path_factory):
    """S1: ICAHT early 0 (definite), late 1 up to 4: ANC 2.0 on days 0, 6, 12, 18, 24 and 30 (no gap of
    more than 7 days: range_interpolation_gap_days, session 48), 1.2 on days 40 and 50,
    follow-up 60 -> 2 late tests <= 1.5 (none <= 1.0) = grade 1; days 51-60 without an ANC could be
    tests <= 0.1 -> 4. S4 (CRS; no ANC): fever 39.0 C on day 3 with SBP 120 and SpO2 98 % = ASTCT
    grade 1; day 4 afebrile = 0; a death on day 10 without attribution could be CRS grade 5 -> 1 up to 5.
    S2: ANC 2.0 on days 0, 6, 12, 18, 24 and 30, 1.2 on days 36, 43, 50, 57 and 60, follow-up 60: every late
    day known (no gap of more than 7 days) -> late grade 1, definite. S3: ANC 2.0 on days 0, 30 and 40, follow-up 60: late not evaluable (one
    test), up to 4 (days 41-60 unknown)."""
    vitals = [(3, "TEMP", 39.0, "C"), (3, "SYSBP", 120, "mmHg"), (3, "OXYSAT", 98, "%"),
              (4, "TEMP", 37.0, "C"), (4, "SYSBP", 120, "mmHg"), (4, "OXYSAT", 98, "%")]
    s = _study(tmp_path_factory.mktemp("s36adam") / "study",
               {"S1": _neut(*EARLY, (40, 1.2), (50, 1.2)), "S4": vitals,
                "S2": _neut(*EARLY, (36, 1.2), (43, 1.2), (50, 1.2), (57, 1.2), (60, 1.2)),
                "S3": _neut((0, 2.0), (30, 2.0), (40, 2.0))},
               {"S1": 60, "S2": 60, "S3": 60, "S4": 60}, events=[("S4", 10, "death")])
    out = tmp_path_factory.mktemp("s36adam") / "adam"
    _quiet(export_adam, Analysis(s, AnalysisOptions()), out, datasets=["ADSL", "ADAE"], formats=("xpt", "csv"))
    return out


def _csv(out: Path, name: str) -> pl.DataFrame:
    return pl.read_csv(out / f"{name}.csv", infer_schema_length=0)


def test_adsl_gives_the_upper_bound_and_range_flag_of_each_grade(adam):
    a = {r["USUBJID"]: r for r in _csv(adam, "adsl").iter_rows(named=True)}
    s1, s2, s3, s4 = a["S1"], a["S2"], a["S3"], a["S4"]
    assert (s4["CRSGRMX"], s4["CRSGRUP"], s4["CRSGRFL"]) == ("1", "5", "Y")
    assert (s1["ICAHTEGR"], s1["ICAHTEUP"], s1["ICAEGRFL"]) == ("0", "0", "N")
    assert (s1["ICAHTLGR"], s1["ICAHTLUP"], s1["ICALGRFL"]) == ("1", "4", "Y")
    assert (s2["ICAHTLGR"], s2["ICAHTLUP"], s2["ICALGRFL"]) == ("1", "1", "N")
    # not evaluable: no grade, but an upper bound -> a range (0-4), never a definite grade
    assert (s3["ICAHTLGR"], s3["ICAHTLUP"], s3["ICALGRFL"]) == (None, "4", "Y")


def test_adae_gives_the_episode_upper_bound_and_range_flag(adam):
    e = _csv(adam, "adae")
    late = {r["USUBJID"]: r for r in e.filter(pl.col("AETERM").str.contains("late")).iter_rows(named=True)}
    assert (late["S1"]["ATOXGR"], late["S1"]["ATOXGRUP"], late["S1"]["ATOXRGFL"]) == ("1", "4", "Y")
    assert (late["S2"]["ATOXGR"], late["S2"]["ATOXGRUP"], late["S2"]["ATOXRGFL"]) == ("1", "1", "N")
    assert "S3" not in late  # no late grade >= 1: no episode (the range is in ADSL)
    crs = e.filter(pl.col("AETERM") == "Cytokine release syndrome").row(0, named=True)
    # the episode is day 3 only; the possible grade 5 (death day 10) lies outside it: ADSL CRSGRUP
    assert (crs["ATOXGR"], crs["ATOXGRUP"], crs["ATOXRGFL"]) == ("1", "1", "N")


def test_new_variables_keep_xpt_limits_and_are_in_define(adam):
    spec = load_spec()
    new = {"ADSL": ["CRSGRUP", "CRSGRFL", "ICNGRUP", "ICNGRFL", "ICAHTEUP", "ICAEGRFL", "ICAHTLUP", "ICALGRFL"],
           "ADAE": ["ATOXGRUP", "ATOXGRLO", "ATOXRGFL"]}  # ATOXGRLO: review41_diff2 F4
    define = pl.read_csv(adam / "define.csv", infer_schema_length=0)
    for ds, names in new.items():
        x = pd.read_sas(adam / f"{ds.lower()}.xpt", format="xport")
        listed = define.filter(pl.col("dataset") == ds)
        labels = {v.name: v.label for v in spec.datasets[ds].variables}
        for n in names:
            assert len(n) <= 8 and n in x.columns and n in listed["variable"].to_list()
            assert 0 < len(labels[n]) <= 40 and labels[n] == listed.filter(pl.col("variable") == n)["label"].item()
            # the derivation names the source column or the compared variables
            assert listed.filter(pl.col("variable") == n)["derivation"].item()
