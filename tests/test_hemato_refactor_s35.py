"""Session 35: shared late window of N-ICAHT/T-ICAHT, the "no last value" ties mode of
daily_values, the rows a daily mean cites, one rule status checked (review
/work/notes/review34_diff/REPORT.md items M1, M2, B3, B4, B5).

Every expected value is worked out by hand in its comment from the rules it names (EASIX = LDH x
creatinine (mg/dL) / platelets, easix.yaml; ICAHT/T-ICAHT late window days 31-100 with linear
interpolation not across more than ``max_interpolation_gap_days`` missing days); none is copied
from cartlab's output. Which tests fail on the code before session 35 is said in each docstring.
"""

from __future__ import annotations

import inspect

import polars as pl
import pytest

from cartlab.criteria import STATUS_ORDER, UNSETTLED, load_table, rule_status
from cartlab.grading import hemato_late, icaht, t_icaht
from cartlab.grading.hemato_common import daily_values
from cartlab.grading.hematotox import CarHematotoxOptions, EasixOptions, derive_car_hematotox, derive_easix
from cartlab.grading.icaht import IcahtOptions, derive_icaht
from cartlab.grading.t_icaht import TIcahtOptions, derive_t_icaht
from test_hematotox import LD, make_study

# ---------------------------------------------------------------------------------------------
# B5 (checked, not applied): a *_nontransient row has the least verified status of its reading
# (convention) and of its two-test sibling, in cartlab's order (criteria/status.py STATUS_ORDER:
# ... partially_verified < verified_secondary < convention < verified)


def test_every_t_icaht_nontransient_row_has_the_worse_of_convention_and_its_sibling():
    """The table's rule (t_icaht_2025.yaml, late rule-set comment) worked out by hand: g4/g3 < 20
    and g1 < 100 have verified siblings -> convention; g2 < 50's sibling t_icaht.late.g2_plt50 is
    partially_verified (its Grade 2 column is an inference) -> partially_verified, which keeps a
    grade resting on it in the unsettled list. Review s34 B5 read convention as the lower status and
    asked for convention: that would drop the row from the unsettled list (session 35 golden run:
    analysis.json rules.unsettled 30 -> 29 on syn200). This test fails with that change."""
    want = {"t_icaht.late.g4_plt20_ge14_nontransient": "convention",
            "t_icaht.late.g3_plt20_1_13_nontransient": "convention",
            "t_icaht.late.g2_plt50_nontransient": "partially_verified",
            "t_icaht.late.g1_plt100_nontransient": "convention"}
    rows = {r.id: r.status for r in load_table("t_icaht_2025").rule_set("late")}
    assert {k: v for k, v in rows.items() if k.endswith("_nontransient")} == want
    for rid, status in want.items():  # the same, from the rule itself
        worse = min(["convention", rows[rid.removesuffix("_nontransient")]], key=STATUS_ORDER.index)
        assert status == worse == rule_status(rid)
    assert rule_status("t_icaht.late.g2_plt50_nontransient") in UNSETTLED


# ---------------------------------------------------------------------------------------------
# B4 / M1: the not-evaluable late reason names the days without a count as runs, in both engines


def test_t_icaht_late_reason_names_the_unknown_days_as_runs():
    """PLT 150 on days 25 and 40, nothing later, interpolation over at most 5 missing days: days
    26-39 (14 missing days) are not interpolated, so the late window 31-100 has one test (day 40,
    not evaluable: 2 needed; 150 is below no level, so no nontransient run) and no count on days
    31-39 (9) and 41-100 (60): 69 days, two runs. Before session 34's mend the text read one span
    "(days 31-100)"; session 35 keeps day_ranges through the shared hemato_late.late_range_text."""
    s = make_study([(25, "PLAT", 150.0), (40, "PLAT", 150.0)])
    r = derive_t_icaht(s, TIcahtOptions(max_interpolation_gap_days=5)).row(0, named=True)
    assert r["t_icaht_late_grade"] is None and r["t_icaht_late_grade_max"] == 4
    assert ("69 day(s) of the late window (days 31-39, 41-100) have no platelet count (measured or "
            "interpolated)") in r["late_reason"]
    assert "the known days alone confirm no grade" in r["late_reason"]


def test_icaht_late_reason_names_the_unknown_days_as_runs():
    """The same course of ANC 2.0 (above every level): the same 69 days in two runs."""
    s = make_study([(25, "NEUT", 2.0), (40, "NEUT", 2.0)])
    r = derive_icaht(s, IcahtOptions(max_interpolation_gap_days=5)).row(0, named=True)
    assert r["icaht_late_grade"] is None and r["icaht_late_grade_max"] == 4
    assert ("69 day(s) of the late window (days 31-39, 41-100) have no ANC (measured or interpolated) "
            "and could each have been a test") in r["late_reason"]


def test_the_late_window_code_is_shared_not_copied():
    """M1: one implementation in grading/hemato_late.py, called by both engines; no module over
    ~780 lines. Fails before session 35 (the module did not exist; each engine had its copies)."""
    for mod in (icaht, t_icaht):
        names = dict(inspect.getmembers(mod, inspect.isfunction))
        assert not {"_late_upper", "_nt_text", "_lowest", "_late_range_text", "_nontransient"} & set(names)
        src = inspect.getsource(mod)
        assert "late_upper_grade(" in src and "late_range_text(" in src and "late_lowest_text(" in src
    from cartlab.grading import hemato_common, hematotox
    for mod in (hemato_common, hemato_late, hematotox, icaht, t_icaht):
        assert len(inspect.getsource(mod).splitlines()) <= 780, mod.__name__


def test_nontransient_text_is_empty_when_the_option_is_off():
    opts = {"late_nontransient": True, "stable_recovery_days": 3}
    assert hemato_late.nontransient_text(opts, "neutropenia", "at or below") == (
        ", and no nontransient neutropenia (a run at or below a level continuing from the early window or "
        "lasting >= 3 days)")
    assert hemato_late.nontransient_text({**opts, "late_nontransient": False}, "neutropenia", "at or below") == ""


# ---------------------------------------------------------------------------------------------
# M2: daily_values(ties="range")


def _obs(rows) -> pl.DataFrame:
    """(day, value, ref[, censor, limit]) rows of subject A, param PLAT."""
    rows = [(*r, None, None)[:5] for r in rows]
    return pl.DataFrame(
        {"subject_id": "A", "param": "PLAT", "day": [float(r[0]) for r in rows], "value": [r[1] for r in rows],
         "lln": None, "uln": None, "ref": [r[2] for r in rows], "src_row": list(range(1, len(rows) + 1)),
         "censor": [r[3] for r in rows], "censor_limit": [r[4] for r in rows]},
        schema={"subject_id": pl.String, "param": pl.String, "day": pl.Float64, "value": pl.Float64,
                "lln": pl.Float64, "uln": pl.Float64, "ref": pl.String, "src_row": pl.Int64, "censor": pl.String,
                "censor_limit": pl.Float64},
    ).with_columns(pl.col("day").floor().cast(pl.Int64).alias("d"))


def _by_day(f: pl.DataFrame) -> dict[int, dict]:
    return {r["d"]: r for r in f.iter_rows(named=True)}


def test_daily_values_range_mode_gives_no_last_value_to_an_untimed_tie():
    """Day 3: 100 (r1) and 50 (r2) without a time: no last -> value null, range 50-100, 2 results,
    both rows. Day 4: 80 at 4.0 and 60 at 4.5: the later (60) is the last, no tie. Day 5: 70 twice
    (r5, r6): one result, no tie, the file's last row. Day 6: "<10" (r7) and 50 (r8): a tie whose
    low end is open (-inf). Without ``ties`` the engines keep the file's last row (r2 on day 3)."""
    obs = _obs([(3, 100.0, "r1"), (3, 50.0, "r2"), (4, 80.0, "r3"), (4.5, 60.0, "r4"), (5, 70.0, "r5"),
                (5, 70.0, "r6"), (6, None, "r7", "<", 10.0), (6, 50.0, "r8")])
    got = _by_day(daily_values(obs, "last", ties="range", carry=("day",)))
    assert (got[3]["value"], got[3]["tlo"], got[3]["thi"], got[3]["tn"], got[3]["refs"]) == (None, 50.0, 100.0, 2, [])
    assert got[3]["trefs"] == ["r1", "r2"] and got[3]["day"] == 3.0
    assert (got[4]["value"], got[4]["tn"], got[4]["refs"], got[4]["day"]) == (60.0, None, ["r4"], 4.5)
    assert (got[5]["value"], got[5]["tn"], got[5]["refs"]) == (70.0, None, ["r6"])
    assert (got[6]["value"], got[6]["tlo"], got[6]["thi"], got[6]["tn"]) == (None, float("-inf"), 50.0, 2)
    plain = _by_day(daily_values(obs, "last"))
    assert plain[3]["value"] == 50.0 and plain[3]["refs"] == ["r2"] and "tn" not in plain[3]


@pytest.mark.parametrize("how, day3", [("min", 50.0), ("max", 100.0), ("mean", 75.0)])
def test_daily_values_range_mode_leaves_min_max_mean_alone(how, day3):
    """min/max/mean use every value of the day: no tie, the tie columns null."""
    got = _by_day(daily_values(_obs([(3, 100.0, "r1"), (3, 50.0, "r2")]), how, ties="range"))
    assert got[3]["value"] == pytest.approx(day3) and got[3]["tn"] is None and got[3]["trefs"] is None


def test_daily_values_rejects_an_unknown_ties_mode():
    with pytest.raises(ValueError, match="ties"):
        daily_values(_obs([(3, 100.0, "r1"), (3, 50.0, "r2")]), "last", ties="first")


def test_car_hematotox_baseline_of_two_rows_with_one_result_cites_the_file_last():
    """PLT 100 twice at day -6 (rows 1 and 2, different lln): one result, 1 point, no tie; the row
    cited is the file's last of that time, as daily_values' "last" everywhere (before session 35
    the pre-lymphodepletion path cited the first, row 1)."""
    obs = [(-6, "PLAT", 100.0, {"lln": 150.0}), (-6, "PLAT", 100.0, {"lln": 140.0}), (-6, "NEUT", 3.0),
           (-6, "HGB", 120.0), (-6, "CRP", 5.0), (-6, "FERRITIN", 100.0)]
    r = derive_car_hematotox(make_study(obs, doses=LD), CarHematotoxOptions()).row(0, named=True)
    assert (r["plat_value"], r["plat_points"], r["hematotox_score"]) == (100.0, 1, 1)
    assert "observations.csv:2" in r["evidence"] and "observations.csv:1" not in r["evidence"]


# ---------------------------------------------------------------------------------------------
# B3: a daily mean cites every row it averages


@pytest.mark.parametrize("day", ["pre_ld", -6, "each"])
def test_easix_daily_mean_cites_every_row_it_averages(day):
    """LDH 400 (row 1) and 200 (row 2) on day -6, creatinine 88.4 umol/L = 1 mg/dL (row 3), PLT 100
    (row 4): mean LDH 300 -> easix = 300 x 1 / 100 = 3. Fails before session 35: only row 1 was
    cited (the first of the day), row 2 was averaged but not named."""
    s = make_study([(-6, "LDH", 400.0), (-6, "LDH", 200.0), (-6, "CREAT", 88.4), (-6, "PLAT", 100.0)], doses=LD)
    r = derive_easix(s, day, EasixOptions(daily_value="mean")).row(0, named=True)
    assert r["ldh_u_l"] == pytest.approx(300.0) and r["easix"] == pytest.approx(3.0)
    assert {f"observations.csv:{i}" for i in (1, 2, 3, 4)} <= set(r["evidence"])


def test_easix_min_still_cites_only_the_row_it_takes():
    """min takes LDH 200 (row 2) -> easix 2; row 1 (400) is not used and not cited."""
    s = make_study([(-6, "LDH", 400.0), (-6, "LDH", 200.0), (-6, "CREAT", 88.4), (-6, "PLAT", 100.0)], doses=LD)
    r = derive_easix(s, "pre_ld", EasixOptions(daily_value="min")).row(0, named=True)
    assert r["easix"] == pytest.approx(2.0)
    assert "observations.csv:2" in r["evidence"] and "observations.csv:1" not in r["evidence"]
