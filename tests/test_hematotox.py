"""Haematotoxicity engines: ICAHT, recovery days, CAR-HEMATOTOX, EASIX family, IEC-HS flags."""

from __future__ import annotations

import math

import polars as pl
import pytest

from cartlab.datasets import seed_case
from cartlab.grading.common import load_criteria
from cartlab.grading.hematotox import (
    CarHematotoxOptions,
    EasixOptions,
    IcahtOptions,
    IecHsOptions,
    RecoveryOptions,
    derive_car_hematotox,
    derive_easix,
    derive_icaht,
    derive_icaht_daily,
    derive_iec_hs_flags,
    derive_count_recovery,
)
from cartlab.model import Study, conform

# ---------------------------------------------------------------------------------------------
# builders (canonical frames via cartlab.model.conform)

UNITS = {"NEUT": "10^9/L", "PLAT": "10^9/L", "HGB": "g/L", "CRP": "mg/L", "FERRITIN": "ug/L",
         "LDH": "U/L", "CREAT": "umol/L", "ALT": "U/L", "AST": "U/L", "FIBRINO": "g/L"}


def make_study(obs=(), doses=(), iv=(), events=(), last_followup=None, sid="A") -> Study:
    """``obs``: (day, param, value[, {lln/uln}]); doses/iv/events: dicts without provenance."""
    o = []
    for i, r in enumerate(obs):
        extra = r[3] if len(r) > 3 else {}
        o.append({"subject_id": sid, "day": float(r[0]), "param": r[1], "value": float(r[2]),
                  "unit": UNITS[r[1]], "src_file": "observations.csv", "src_row": i + 1, **extra})

    def frame(rows, table, file):
        rows = [{"subject_id": sid, "src_file": file, "src_row": i + 1, **r} for i, r in enumerate(rows)]
        if not rows:
            return conform(pl.DataFrame(), table).clear()
        return conform(pl.DataFrame(rows, infer_schema_length=None), table)

    return Study(
        study_id="t",
        subjects=conform(pl.DataFrame([{"subject_id": sid, "last_followup_day": last_followup}],
                                      schema={"subject_id": pl.String, "last_followup_day": pl.Float64}), "subjects"),
        observations=frame([{k: v for k, v in r.items() if k not in ("subject_id", "src_file", "src_row")}
                            for r in o], "observations", "observations.csv"),
        doses=frame(list(doses), "doses", "doses.csv"),
        interventions=frame(list(iv), "interventions", "interventions.csv"),
        events=frame(list(events), "events", "events.csv"),
    )


def anc_course(low_days, low=0.3, high=1.0, days=range(31), extra=()):
    """Daily ANC over ``days``: ``low`` on the days in ``low_days``, ``high`` otherwise."""
    low_days = set(low_days)
    return [(d, "NEUT", low if d in low_days else high) for d in days] + list(extra)


def early(obs, **opt) -> dict:
    return derive_icaht(make_study(obs), IcahtOptions(**opt)).row(0, named=True)


# ---------------------------------------------------------------------------------------------
# ICAHT early: duration boundaries


@pytest.mark.parametrize("n, grade", [(0, 0), (1, 1), (6, 1), (7, 2), (13, 2), (14, 3), (30, 3)])
def test_early_duration_anc500(n, grade):
    r = early(anc_course(range(1, 1 + n)))
    assert r["anc_le_500_days"] == n
    assert r["icaht_early_grade"] == grade


@pytest.mark.parametrize("n, grade", [(6, 2), (7, 3), (13, 3), (14, 4)])
def test_early_duration_anc100(n, grade):
    # a 10-day ANC <= 0.5 run (grade 2 on its own) unless the <= 0.1 part is long enough;
    # for n >= 10 the <= 0.5 run is as long as the <= 0.1 run.
    length = max(n, 10)
    obs = [(d, "NEUT", (0.05 if 1 <= d <= n else 0.3) if 1 <= d <= length else 1.0) for d in range(31)]
    r = early(obs)
    assert r["anc_le_100_days"] == n
    assert r["icaht_early_grade"] == grade


def test_anc_exactly_at_levels_is_inclusive_by_default_and_strict_as_option():
    at_500 = anc_course(range(1, 8), low=0.5)
    above_500 = anc_course(range(1, 8), low=0.51)
    assert early(at_500)["icaht_early_grade"] == 2
    assert early(above_500)["icaht_early_grade"] == 0
    assert early(at_500, inclusive=False)["icaht_early_grade"] == 0
    at_100 = anc_course(range(1, 8), low=0.1)
    above_100 = anc_course(range(1, 8), low=0.11)
    assert early(at_100)["icaht_early_grade"] == 3  # ANC <= 0.1 for 7 days
    assert early(above_100)["icaht_early_grade"] == 2  # only ANC <= 0.5 for 7 days
    r = early(at_100, inclusive=False)
    assert (r["anc_le_100_days"], r["anc_le_500_days"]) == (0, 7)


def test_a_2_day_recovery_is_counted_a_3_day_one_is_not():
    two = anc_course([1, 2, 3, 4, 5] + [8, 9, 10, 11, 12])  # recovery on days 6-7 (non-stable)
    three = anc_course([1, 2, 3, 4, 5] + [9, 10, 11, 12, 13])  # recovery on days 6-8 (stable)
    r2, r3 = early(two), early(three)
    # cumulative (default): 5 + 2 + 5 = 12 days; 5 + 5 = 10 days (the stable recovery not counted)
    assert (r2["anc_le_500_days"], r2["anc_le_500_start"], r2["anc_le_500_end"]) == (12, 1, 12)
    assert r2["icaht_early_grade"] == 2
    assert "2 days of non-stable recovery" in r2["early_reason"]
    assert (r3["anc_le_500_days"], r3["anc_le_500_start"], r3["anc_le_500_end"]) == (10, 1, 13)
    assert r3["icaht_early_grade"] == 2
    # the longest-run option: joined run of 12 days; the 3-day recovery separates two 5-day runs
    assert early(two, duration="longest_run")["anc_le_500_days"] == 12
    assert "joined" in early(two, duration="longest_run")["early_reason"]
    r3l = early(three, duration="longest_run")
    assert (r3l["anc_le_500_days"], r3l["anc_le_500_start"], r3l["icaht_early_grade"]) == (5, 1, 1)
    # options: recovery days not counted (5 + 5); stricter stable-recovery rule (2 days is stable)
    assert early(two, count_recovery_days_in_run=False)["anc_le_500_days"] == 10
    assert early(two, stable_recovery_days=2)["anc_le_500_days"] == 10
    assert early(two, stable_recovery_days=2, duration="longest_run")["anc_le_500_days"] == 5


def test_interpolation_across_missing_days():
    obs = [(0, "NEUT", 1.0), (10, "NEUT", 0.0), (20, "NEUT", 1.0), (30, "NEUT", 1.0)]
    r = early(obs)
    # 1 - 0.1 d <= 0.5 from day 5; 0.1 (d - 10) <= 0.5 up to day 15
    assert (r["anc_le_500_days"], r["anc_le_500_start"], r["anc_le_500_end"]) == (11, 5, 15)
    assert r["icaht_early_grade"] == 2
    assert r["anc_le_100_days"] == 3  # days 9, 10, 11
    daily = derive_icaht_daily(make_study(obs)).filter(pl.col("day") == 5).row(0, named=True)
    assert daily["source"] == "interpolated" and daily["anc"] == pytest.approx(0.5)
    assert daily["evidence"] == ["observations.csv:1", "observations.csv:2"]
    assert daily["anc_le_500"] is True
    # without interpolation only the measured day counts
    r = early(obs, interpolate=False)
    assert (r["anc_le_500_days"], r["icaht_early_grade"]) == (1, 1)
    # a gap longer than the limit is not bridged
    assert early(obs, max_interpolation_gap_days=9)["anc_le_500_days"] == 11  # 9 missing days
    assert early(obs, max_interpolation_gap_days=8)["anc_le_500_days"] == 1


def test_never_above_500_in_days_0_30_is_grade_4():
    r = early([(d, "NEUT", 0.3) for d in range(31)])
    assert r["never_above_500"] is True
    assert (r["icaht_early_grade"], r["early_rule"]) == (4, "icaht.early.g4_never_above_500")
    assert "never above 0.5" in r["early_reason"]
    # one day above 0.5 in the window breaks 'never above' (31-day run minus one day -> grade 3)
    r = early([(d, "NEUT", 0.6 if d == 0 else 0.3) for d in range(31)])
    assert (r["never_above_500"], r["icaht_early_grade"]) == (False, 3)
    # data only on days 0-12: "never above" needs the data to reach day 30, death or last follow-up
    # (session 34): without a death, 13 days <= 0.5 -> 2, up to 4 (days 13-30 unknown); with a death on
    # day 12 (E = 12) grade 4, also when the whole window must be covered (every day 0-12 known)
    short = [(d, "NEUT", 0.4) for d in range(13)]
    r = early(short)
    assert (r["icaht_early_grade"], r["icaht_early_grade_max"], r["anc_le_500_days"]) == (2, 4, 13)
    died = derive_icaht(make_study(short, events=[{"day": 12.0, "event": "death"}])).row(0, named=True)
    assert died["icaht_early_grade"] == 4
    died = derive_icaht(make_study(short, events=[{"day": 12.0, "event": "death"}]),
                        IcahtOptions(never_above_requires_full_window=True)).row(0, named=True)
    assert died["icaht_early_grade"] == 4


def test_early_not_evaluable_without_anc_in_window():
    r = early([(35, "NEUT", 0.3), (40, "NEUT", 0.3)])
    assert r["icaht_early_grade"] is None and r["early_rule"] is None
    assert r["early_reason"].startswith("not evaluable")


def test_early_window_values_outside_the_window_do_not_count_but_interpolate():
    # day -1 and day 31 measured only: the window days are interpolated between them
    obs = [(-1, "NEUT", 0.2), (31, "NEUT", 0.2)]
    r = early(obs)
    assert r["icaht_early_grade"] == 4  # interpolated 0.2 on all of days 0-30
    assert r["early_evidence"] == ["observations.csv:1", "observations.csv:2"]


# ---------------------------------------------------------------------------------------------
# ICAHT late


def late(obs, **kw) -> dict:
    return derive_icaht(make_study(obs, events=kw.pop("events", ()), last_followup=kw.pop("lfu", None)),
                 IcahtOptions(**kw)).row(0, named=True)


def test_late_needs_two_measurements():
    base = [(d, "NEUT", 2.0) for d in range(31)]
    one = late(base + [(40, "NEUT", 0.05)])
    assert one["icaht_late_grade"] is None and one["late_n_measurements"] == 1
    assert "2 needed" in one["late_reason"]
    two = late(base + [(40, "NEUT", 0.05), (50, "NEUT", 0.8)], late_nontransient=False)
    assert two["icaht_late_grade"] == 2  # worst level reached by two measurements: <= 1.0
    # session 34, "or nontransient neutropenia": days 40-46 interpolate 0.05 -> 0.5 (+0.075/day), a run
    # <= 0.5 of 7 days from the measured day 40 (>= 3) -> 3 with nontransient_length=interpolated; by
    # default (session 40, review s40 A2) the run is measured on recorded counts: day 40 only -> 2
    assert late(base + [(40, "NEUT", 0.05), (50, "NEUT", 0.8)], nontransient_length="interpolated",
                late_nontransient=True)["icaht_late_grade"] == 3  # the option (default false since session 48)
    assert late(base + [(40, "NEUT", 0.05), (50, "NEUT", 0.8)])["icaht_late_grade"] == 2
    assert (two["late_anc_nadir"], two["late_anc_confirmed"]) == (0.05, 0.8)
    assert late(base + [(40, "NEUT", 0.05), (50, "NEUT", 0.08)])["icaht_late_grade"] == 4
    assert late(base + [(40, "NEUT", 0.3), (50, "NEUT", 0.5)])["icaht_late_grade"] == 3
    assert late(base + [(40, "NEUT", 1.5), (50, "NEUT", 1.4)])["icaht_late_grade"] == 1
    assert late(base + [(40, "NEUT", 1.6), (50, "NEUT", 1.4)])["icaht_late_grade"] == 0
    # the late grade uses measurements only, never interpolated days
    assert late(base + [(40, "NEUT", 0.05), (60, "NEUT", 0.05)])["late_n_measurements"] == 2


@pytest.mark.parametrize("event", ["allo_hsct", "relapse", "new_therapy"])
def test_late_window_ends_at_end_events(event):
    base = [(d, "NEUT", 2.0) for d in range(31)]
    obs = base + [(40, "NEUT", 0.3), (50, "NEUT", 0.3), (70, "NEUT", 0.05), (80, "NEUT", 0.05)]
    assert late(obs)["icaht_late_grade"] == 4
    r = late(obs, events=[{"day": 60.0, "event": event}])
    assert (r["icaht_late_grade"], r["late_window_end"], r["late_window_end_reason"]) == (3, 60.0, event)
    assert "events.csv:1" in r["late_evidence"]
    r = late(obs, events=[{"day": 45.0, "event": event}])
    assert r["icaht_late_grade"] is None  # only the day-40 value precedes it
    # an unrelated event does not end the window; an option can remove the event from the list
    assert late(obs, events=[{"day": 45.0, "event": "seizure"}])["icaht_late_grade"] == 4
    others = tuple(e for e in ("relapse", "new_therapy", "allo_hsct") if e != event)
    assert late(obs, events=[{"day": 45.0, "event": event}], late_end_events=others)["icaht_late_grade"] == 4


def test_late_window_ends_at_day_100_and_last_followup():
    base = [(d, "NEUT", 2.0) for d in range(31)]
    obs = base + [(40, "NEUT", 0.3), (50, "NEUT", 0.3), (100, "NEUT", 0.05), (101, "NEUT", 0.05), (120, "NEUT", 0.05)]
    r = late(obs)
    assert (r["icaht_late_grade"], r["late_window_end"], r["late_n_measurements"]) == (3, 100.0, 3)
    assert late(obs, late_end_day=120)["icaht_late_grade"] == 4
    r = late(obs, lfu=45.0)
    assert (r["icaht_late_grade"], r["late_window_end_reason"]) == (None, "last follow-up")
    # end day exclusive as an option
    r = late(base + [(40, "NEUT", 0.3), (60, "NEUT", 0.3)], events=[{"day": 60.0, "event": "relapse"}],
             late_window_end_inclusive=False)
    assert r["icaht_late_grade"] is None


def test_thresholds_come_from_the_criteria_table():
    table = load_criteria("icaht_2023")
    assert {k: v["value"] for k, v in table["levels"].items()} == {
        "anc_100": 100, "anc_500": 500, "anc_1000": 1000, "anc_1500": 1500}
    assert all(r.get("citation") for s in ("early", "late") for r in table["rule_sets"][s])
    assert table["defaults"]["early_window"] == [0, 30]


# ---------------------------------------------------------------------------------------------
# recovery days


def test_neutrophil_recovery_first_of_3_consecutive_days_after_nadir():
    obs = [(0, "NEUT", 0.8), (1, "NEUT", 0.9), (2, "NEUT", 0.7)]  # above 0.5 before the nadir
    obs += [(d, "NEUT", 0.1) for d in range(3, 10)]
    obs += [(10, "NEUT", 0.5), (11, "NEUT", 0.6), (12, "NEUT", 0.55), (13, "NEUT", 0.9)]
    r = derive_count_recovery(make_study(obs)).row(0, named=True)
    assert r["neutrophil_recovery_day"] == 10.0  # exactly 0.5 counts (>=)
    assert "days 10, 11, 12" in r["neutrophil_recovery_reason"]
    assert "observations.csv:11" in r["neutrophil_recovery_evidence"]
    # with counting from day 0 the pre-nadir values would count: the option shows the difference
    assert derive_count_recovery(make_study(obs), RecoveryOptions(start="day0")).row(0, named=True)["neutrophil_recovery_day"] == 0.0


def test_neutrophil_recovery_days_versus_measurements_mode():
    obs = [(0, "NEUT", 0.1), (5, "NEUT", 0.05), (10, "NEUT", 0.6), (11, "NEUT", 0.7), (13, "NEUT", 0.8)]
    days = derive_count_recovery(make_study(obs)).row(0, named=True)
    assert days["neutrophil_recovery_day"] is None
    # days 1-4, 6-9 and 12 have no value: a run of 3 days >= 0.5 could start on day 6 (audit s26: not
    # evaluable, no complete run), not "not reached"; and already on day 1 (audit s29): the first
    # episode runs from the first value below the level (0.1 on day 0) to its first run that recovers,
    # which days 1-3 could be (count_recovery.yaml "nadir: first_episode"), so the earliest is day 1
    assert days["neutrophil_recovery_status"] == "not_evaluable" and days["neutrophil_recovery_day_min"] == 1.0
    meas = derive_count_recovery(make_study(obs), RecoveryOptions(mode="measurements")).row(0, named=True)
    assert meas["neutrophil_recovery_day"] == 10.0
    # a value below the level interrupts the sequence
    obs2 = obs[:-1] + [(12, "NEUT", 0.4), (13, "NEUT", 0.8), (14, "NEUT", 0.8), (15, "NEUT", 0.8)]
    r2 = derive_count_recovery(make_study(obs2)).row(0, named=True)
    # days 13-15 are the first complete run; days 1-3 (unmeasured, after the first value below 0.5)
    # could have been one: range 1-13 (s26 said 6-13, counting only after the lowest value, s29)
    assert (r2["neutrophil_recovery_day_min"], r2["neutrophil_recovery_day_max"]) == (1.0, 13.0)
    full = [(d, "NEUT", 0.05) for d in range(0, 10)] + obs2[2:]  # every day measured: day 13, certain
    assert derive_count_recovery(make_study(full)).row(0, named=True)["neutrophil_recovery_day"] == 13.0


def test_platelet_recovery_needs_7_transfusion_free_days():
    obs = [(0, "PLAT", 30.0)] + [(d, "PLAT", 10.0) for d in range(1, 20)]
    obs += [(d, "PLAT", 25.0) for d in range(20, 30)]
    tx = [{"start_day": 15.0, "category": "platelet_transfusion"}]
    r = derive_count_recovery(make_study(obs, iv=tx)).row(0, named=True)
    assert r["platelet_recovery_day"] == 23.0  # day 15 is within 7 days before days 20-22
    assert "no platelet transfusion from day 16" in r["platelet_recovery_reason"]
    assert derive_count_recovery(make_study(obs)).row(0, named=True)["platelet_recovery_day"] == 20.0
    # a transfusion on a counting day also prevents it (default) unless the option says otherwise
    tx2 = [{"start_day": 21.0, "category": "platelet_transfusion"}]
    r2 = derive_count_recovery(make_study(obs, iv=tx2)).row(0, named=True)
    assert r2["platelet_recovery_day"] is None  # days 29-31 would be needed; data end on day 29
    r3 = derive_count_recovery(make_study(obs, iv=tx2), RecoveryOptions(transfusion_free_during_counting=False)).row(0, named=True)
    assert r3["platelet_recovery_day"] == 20.0  # only the 7 days before day 20 are checked
    # other transfusion categories do not count
    rbc = [{"start_day": 15.0, "category": "rbc_transfusion"}]
    assert derive_count_recovery(make_study(obs, iv=rbc)).row(0, named=True)["platelet_recovery_day"] == 20.0


def test_platelet_recovery_not_applicable_when_never_below_20():
    r = derive_count_recovery(make_study([(d, "PLAT", 150.0) for d in range(10)])).row(0, named=True)
    assert r["platelet_recovery_day"] is None
    assert r["platelet_recovery_reason"].startswith("not applicable")


# ---------------------------------------------------------------------------------------------
# CAR-HEMATOTOX

NEUTRAL = {"PLAT": 200.0, "NEUT": 2.0, "HGB": 120.0, "CRP": 10.0, "FERRITIN": 300.0}  # 0 points each
LD = [{"day": -5.0, "agent": "fludarabine"}]


def hematotox(values: dict, **opt) -> dict:
    vals = {**NEUTRAL, **values}
    obs = [(-6, p, v) for p, v in vals.items() if v is not None]
    return derive_car_hematotox(make_study(obs, doses=LD), CarHematotoxOptions(**opt)).row(0, named=True)


@pytest.mark.parametrize("param, value, points", [
    ("PLAT", 74.9, 2), ("PLAT", 75.0, 1), ("PLAT", 175.0, 1), ("PLAT", 175.1, 0),
    ("NEUT", 1.19, 1), ("NEUT", 1.2, 1), ("NEUT", 1.21, 0),
    ("HGB", 89.0, 1), ("HGB", 90.0, 1), ("HGB", 91.0, 0),          # 9.0 g/dL = 90 g/L
    ("CRP", 29.0, 0), ("CRP", 30.0, 1), ("CRP", 31.0, 1),          # 3.0 mg/dL = 30 mg/L
    ("FERRITIN", 649.0, 0), ("FERRITIN", 650.0, 1), ("FERRITIN", 2000.0, 1), ("FERRITIN", 2001.0, 2),
])
def test_hematotox_cutoffs(param, value, points):
    r = hematotox({param: value})
    assert r[f"{param.lower()}_points"] == points
    assert r["hematotox_score"] == points
    assert r["hematotox_risk"] == ("high" if points >= 2 else "low")


@pytest.mark.parametrize("param, value", [("NEUT", 1.2), ("HGB", 90.0), ("CRP", 30.0)])
def test_hematotox_undefined_boundary_option(param, value):
    assert hematotox({param: value})[f"{param.lower()}_points"] == 1
    assert hematotox({param: value}, undefined_boundary="best")[f"{param.lower()}_points"] == 0


def test_hematotox_risk_groups_and_missing_inputs_give_a_range():
    r = hematotox({"NEUT": 1.0})
    assert (r["hematotox_score"], r["hematotox_risk"]) == (1, "low")
    # the rule names the risk group and every item it scored (their cut-offs are unverified)
    assert r["rule"] == ("car_hematotox.low; car_hematotox.item.plat; car_hematotox.item.neut; car_hematotox.item.hgb; "
                         "car_hematotox.item.crp; car_hematotox.item.ferritin")
    from cartlab.criteria import rule_status

    assert rule_status(r["rule"]) == "unverified"
    r = hematotox({"NEUT": 1.0, "HGB": 80.0})
    assert (r["hematotox_score"], r["hematotox_risk"]) == (2, "high")
    r = hematotox({"NEUT": 1.0, "FERRITIN": None})
    assert r["hematotox_score"] is None
    assert (r["hematotox_score_min"], r["hematotox_score_max"]) == (1, 3)
    assert r["hematotox_risk"] is None and r["hematotox_missing"] == ["FERRITIN"]
    assert "score 1-3" in r["reason"] and "ferritin missing" in r["reason"]
    r = hematotox({"PLAT": 50.0, "FERRITIN": None})
    assert (r["hematotox_score_min"], r["hematotox_risk"]) == (2, "high")
    r = hematotox({p: None for p in NEUTRAL})
    assert (r["hematotox_score_min"], r["hematotox_score_max"], r["hematotox_risk"]) == (0, 7, None)


def test_hematotox_baseline_window():
    obs = [(-6, "PLAT", 50.0), (-3, "PLAT", 200.0), (0, "PLAT", 10.0)]
    obs += [(-6, p, v) for p, v in NEUTRAL.items() if p != "PLAT"]
    with_ld = derive_car_hematotox(make_study(obs, doses=LD)).row(0, named=True)
    assert (with_ld["plat_value"], with_ld["plat_day"], with_ld["baseline_day"]) == (50.0, -6.0, -5.0)
    assert "doses.csv:1" in with_ld["evidence"]
    no_ld = derive_car_hematotox(make_study(obs)).row(0, named=True)
    assert (no_ld["plat_value"], no_ld["baseline_rule"]) == (200.0, "baseline.before_day0")
    # decitabine is not a lymphodepletion agent by default; an option can make it one
    r = derive_car_hematotox(make_study(obs, doses=[{"day": -7.0, "agent": "decitabine"}])).row(0, named=True)
    assert r["plat_value"] == 200.0
    r = derive_car_hematotox(make_study(obs, doses=[{"day": -7.0, "agent": "decitabine"}]),
                      CarHematotoxOptions(lymphodepletion_agents=("decitabine",))).row(0, named=True)
    assert r["plat_value"] is None and "PLAT" in r["hematotox_missing"]
    r = derive_car_hematotox(make_study(obs, doses=LD), CarHematotoxOptions(max_lookback_days=0.5)).row(0, named=True)
    assert r["hematotox_missing"] == ["PLAT", "NEUT", "HGB", "CRP", "FERRITIN"]


# ---------------------------------------------------------------------------------------------
# EASIX family


def easix_study(day=-6):
    return make_study([(day, "LDH", 300.0), (day, "CREAT", 88.4), (day, "CRP", 20.0), (day, "PLAT", 50.0)], doses=LD)


def test_easix_arithmetic_with_unit_conversion():
    r = derive_easix(easix_study()).row(0, named=True)
    assert r["creat_mg_dl"] == pytest.approx(1.0, rel=1e-4)  # 88.4 umol/L
    assert r["crp_mg_dl"] == pytest.approx(2.0)  # 20 mg/L
    assert r["easix"] == pytest.approx(300 * 1.0 / 50, rel=1e-4)
    assert r["m_easix"] == pytest.approx(300 * 2.0 / 50)
    assert r["s_easix"] == pytest.approx(6.0)
    assert r["log2_m_easix"] == pytest.approx(math.log2(12.0))
    assert r["timepoint"] == "pre_ld" and r["missing"] == []
    # review 40 B1: the lymphodepletion dose row that chose the pre_ld day is evidence too
    assert sorted(r["evidence"]) == ["doses.csv:1", *[f"observations.csv:{i}" for i in (1, 2, 3, 4)]]
    assert "CRP 20 mg/L -> 2 mg/dL" in r["reason"]


def test_easix_timepoints_and_missing_inputs():
    s = make_study([(-6, "LDH", 300.0), (-6, "PLAT", 50.0), (3, "LDH", 600.0), (3, "PLAT", 20.0),
                    (4, "CRP", 100.0), (3, "CREAT", 176.8)], doses=LD)
    pre = derive_easix(s).row(0, named=True)
    assert pre["s_easix"] == pytest.approx(6.0)
    assert pre["easix"] is None and pre["missing"] == ["CREAT", "CRP"]
    assert "easix not computable (missing CREAT)" in pre["reason"]
    d3 = derive_easix(s, day=3).row(0, named=True)
    assert d3["easix"] == pytest.approx(600 * 2.0 / 20, rel=1e-4)
    assert d3["m_easix"] is None  # CRP only on day 4
    d3t = derive_easix(s, day=3, options=EasixOptions(day_tolerance_days=1)).row(0, named=True)
    assert d3t["m_easix"] == pytest.approx(600 * 10.0 / 20) and d3t["crp_mg_dl_day"] == 4.0
    each = derive_easix(s, day="each")
    assert each["day"].to_list() == [-6.0, 3.0, 4.0]
    assert each.filter(pl.col("day") == 3.0)["s_easix"][0] == pytest.approx(30.0)


def test_easix_zero_platelets_is_not_computable():
    s = make_study([(-6, "LDH", 300.0), (-6, "PLAT", 0.0)], doses=LD)
    r = derive_easix(s).row(0, named=True)
    assert r["s_easix"] is None and "platelets 0" in r["reason"]


# ---------------------------------------------------------------------------------------------
# IEC-HS flags


def test_iec_hs_flags_small_case():
    fer = {"uln": 300.0}
    alt = {"uln": 40.0}
    fib = {"lln": 2.0}
    obs = [
        (0, "FERRITIN", 400.0, fer), (0, "ALT", 30.0, alt), (0, "FIBRINO", 3.0, fib),
        (5, "FERRITIN", 1500.0, fer), (5, "ALT", 250.0, alt),      # ferritin > 2x ULN, ALT > 5x ULN
        (6, "FERRITIN", 1500.0, fer), (6, "ALT", 100.0, alt), (6, "FIBRINO", 1.2, fib),  # hypofibrinogenemia
        (7, "FERRITIN", 500.0, fer), (7, "ALT", 300.0, alt),       # ferritin criterion not met
        (8, "FERRITIN", 900.0, fer), (8, "ALT", 100.0, alt), (8, "FIBRINO", 2.5, fib),   # no supporting criterion
    ]
    f = derive_iec_hs_flags(make_study(obs))
    flagged = f.filter("iec_hs_flag")["day"].to_list()
    assert flagged == [5, 6]
    d5 = f.filter(pl.col("day") == 5).row(0, named=True)
    assert d5["key_met"] == ["iec_hs.ferritin_gt_2x_uln", "iec_hs.ferritin_gt_2x_baseline"]
    assert d5["supporting_met"] == ["iec_hs.transaminases_gt_5x"]
    assert "iec_hs.hemophagocytosis" in d5["needs_adjudication"]
    assert "not a diagnosis" in d5["reason"]
    assert {"observations.csv:4", "observations.csv:5", "observations.csv:1"} <= set(d5["evidence"])
    d6 = f.filter(pl.col("day") == 6).row(0, named=True)
    assert d6["supporting_met"] == ["iec_hs.hypofibrinogenemia"]
    d8 = f.filter(pl.col("day") == 8).row(0, named=True)
    # day 8: key met, ALT 100 <= 5 x 40 and fibrinogen 2.5 g/L >= LLN 2.0 and >= 150 mg/dL, but AST
    # (the other transaminase) and the blood counts were not measured: those criteria are undecided,
    # so the flag is unknown, not "no"
    assert d8["iec_hs_flag"] is None and d8["key_met"] == ["iec_hs.ferritin_gt_2x_uln", "iec_hs.ferritin_gt_2x_baseline"]
    assert d8["not_evaluable"] == ["iec_hs.transaminases_gt_5x", "iec_hs.cytopenia_new_or_worse"]
    assert d8["rule"].startswith("iec_hs.not_evaluable")
    # with AST (normal, <= 5 x ULN) and normal counts that day and at baseline, every supporting
    # criterion is decided: not flagged
    counts = [(d, p, v, {}) for d in (0, 8) for p, v in (("NEUT", 3.0), ("PLAT", 200.0), ("HGB", 130.0))]
    counts += [(0, "AST", 20.0, {"uln": 40.0}), (8, "AST", 30.0, {"uln": 40.0})]
    d8 = derive_iec_hs_flags(make_study(obs + counts)).filter(pl.col("day") == 8).row(0, named=True)
    assert d8["iec_hs_flag"] is False and d8["not_evaluable"] == [] and d8["rule"].startswith("iec_hs.no_flag")
    # requiring two supporting criteria removes both flags
    assert derive_iec_hs_flags(make_study(obs), IecHsOptions(min_supporting=2))["iec_hs_flag"].sum() == 0


def test_iec_hs_transaminases_against_abnormal_baseline():
    alt = {"uln": 40.0}
    obs = [(0, "FERRITIN", 100.0, {"uln": 300.0}), (0, "ALT", 100.0, alt),   # abnormal baseline ALT
           (5, "FERRITIN", 2000.0, {"uln": 300.0}), (5, "ALT", 250.0, alt),   # > 5x ULN but < 5x baseline
           (6, "FERRITIN", 2000.0, {"uln": 300.0}), (6, "ALT", 510.0, alt)]   # > 5x baseline
    f = derive_iec_hs_flags(make_study(obs))
    assert f.filter("iec_hs_flag")["day"].to_list() == [6]


def test_iec_hs_lab_window_option():
    obs = [(0, "FERRITIN", 100.0, {"uln": 300.0}), (5, "FERRITIN", 2000.0, {"uln": 300.0}),
           (6, "ALT", 300.0, {"uln": 40.0}), (0, "ALT", 30.0, {"uln": 40.0})]  # a normal baseline ALT (s26)
    assert derive_iec_hs_flags(make_study(obs))["iec_hs_flag"].sum() == 0
    f = derive_iec_hs_flags(make_study(obs), IecHsOptions(lab_window_days=1))
    assert f.filter("iec_hs_flag")["day"].to_list() == [6]


# ---------------------------------------------------------------------------------------------
# the built-in seed case


def test_seed_case_icaht_and_explanation():
    r = derive_icaht(seed_case()).row(0, named=True)
    assert r["icaht_early_grade"] >= 3
    assert r["icaht_early_grade"] == 3  # day 0 ANC 0.7 (> 0.5), so not 'never above'
    assert "days 1-30" in r["early_reason"] and "days 5-14" in r["early_reason"]
    assert r["icaht_late_grade"] == 3  # late window ends at allo-HSCT on day 60
    assert r["late_window_end"] == 60.0 and "allo_hsct" in r["late_window_end_reason"]
    assert r["evidence"] and all(e.startswith(("observations.csv:", "events.csv:")) for e in r["evidence"])


def test_seed_case_other_scores():
    s = seed_case()
    rec = derive_count_recovery(s).row(0, named=True)
    assert rec["neutrophil_recovery_day"] == 39.0
    assert rec["platelet_recovery_day"] is None  # transfusion-dependent through day 58
    ht = derive_car_hematotox(s).row(0, named=True)
    assert ht["baseline_day"] == -5.0 and ht["hematotox_risk"] == "high"
    assert ht["hematotox_score"] == 5
    ex = derive_easix(s).row(0, named=True)
    # creatinine 54 umol/L / 88.4 (the conventional factor, params_v1.yaml) mg/dL
    assert ex["easix"] == pytest.approx(273 * (54 / 88.4) / 42, rel=1e-9)
    assert derive_iec_hs_flags(s).filter("iec_hs_flag").height > 0


def test_several_subjects_are_graded_independently():
    rows = [{"subject_id": "A", "day": float(d), "param": "NEUT", "value": 0.3, "unit": "10^9/L",
             "src_file": "observations.csv", "src_row": d + 1} for d in range(31)]
    rows += [{"subject_id": "B", "day": float(d), "param": "NEUT", "value": 0.3 if d in (2, 3) else 2.0,
              "unit": "10^9/L", "src_file": "observations.csv", "src_row": 100 + d} for d in range(31)]
    s = Study(study_id="t", subjects=conform(pl.DataFrame({"subject_id": ["A", "B", "C"]}), "subjects"),
              observations=conform(pl.DataFrame(rows), "observations"))
    r = derive_icaht(s)
    assert r["subject_id"].to_list() == ["A", "B", "C"]
    assert r["icaht_early_grade"].to_list() == [4, 1, None]
    assert r.filter(pl.col("subject_id") == "B")["evidence"][0][0] == "observations.csv:100"
    assert derive_count_recovery(s)["subject_id"].to_list() == ["A", "B", "C"]
    assert derive_car_hematotox(s)["hematotox_risk"].to_list() == [None, None, None]
