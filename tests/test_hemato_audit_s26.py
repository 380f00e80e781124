"""Session 26 audit of IEC-HS flags and count recovery (/work/notes/audit_crs_legacy, findings F2, F4,
F5, F7, F8, F9). Every expected value is derived by hand in the comment above it from the rule text:

* IEC-HS (criteria/iec_hs_2023.yaml, Hines 2023 as in research notes §3.4): key "ferritin > 2 x ULN"
  or "> 2 x baseline"; supporting "ALT or AST > 5 x ULN (> 5 x baseline when abnormal at baseline)",
  "fibrinogen < 150 mg/dL or < LLN", cytopenia "below the HLH-2004 level (ANC < 1.0, PLT < 100,
  Hb < 9 g/dL) and below baseline"; flag = a key and >= 1 supporting criterion. Further features
  "LDH > ULN", "hypertriglyceridemia (fasting > 265 mg/dL)" are "reported for adjudication only".
* Count recovery (criteria/count_recovery.yaml): ASTCT "neutrophil recovery as the first of 3
  successive days with an ANC of >=500/uL after post-transplantation nadir", "platelet recovery as the
  first of 3 consecutive days with a platelet count of 20,000/uL or higher in the absence of platelet
  transfusion for 7 consecutive days" (PMC11161398 Table 1); CIBMTR FIM Q8-11 "Initial ANC recovery":
  "three consecutive laboratory values obtained on different days", "For various reasons it may not
  be possible to obtain daily laboratory values. Under those circumstances, report ANC recovery based
  upon three consecutive laboratory values (drawn more than a day apart)", "Do not begin counting ANC
  values of >= 0.5 x 10^9/L towards recovery until the ANC has dropped to the lowest level (nadir)
  post-HCT". Spec (study-format.md, "Follow-up for time-to-event endpoints"): a subject is censored at
  its last follow-up (without last_followup_day, at its last recorded row).
"""

from __future__ import annotations

import polars as pl
import pytest

from cartlab.analyze import Analysis, AnalysisOptions
from cartlab.errors import InputError
from cartlab.grading.hematotox import RecoveryOptions, derive_count_recovery, derive_iec_hs_flags
from cartlab.model import Study, conform

UNITS = {"NEUT": "10^9/L", "PLAT": "10^9/L", "HGB": "g/L", "FERRITIN": "ug/L", "ALT": "U/L", "AST": "U/L",
         "FIBRINO": "g/L", "LDH": "U/L", "TRIG": "mmol/L"}


def study(obs, followup=None, iv=()) -> Study:
    """``obs``: (subject, day, param, value[, lln, uln]); ``followup``: {subject: last_followup_day}."""
    rows = [{"subject_id": r[0], "day": float(r[1]), "param": r[2], "value": float(r[3]), "unit": UNITS[r[2]],
             "lln": r[4] if len(r) > 4 else None, "uln": r[5] if len(r) > 5 else None,
             "src_file": "observations.csv", "src_row": i + 1} for i, r in enumerate(obs)]
    sids = list(dict.fromkeys(r["subject_id"] for r in rows))
    followup = followup or {}
    subjects = conform(pl.DataFrame({"subject_id": sids, "last_followup_day": [followup.get(s) for s in sids]},
                                    schema={"subject_id": pl.String, "last_followup_day": pl.Float64}), "subjects")
    ivs = conform(pl.DataFrame([{"src_file": "interventions.csv", "src_row": i + 1, **r} for i, r in enumerate(iv)],
                               infer_schema_length=None), "interventions") if iv else None
    return Study(study_id="t", subjects=subjects, observations=conform(pl.DataFrame(rows, infer_schema_length=None),
                                                                        "observations"),
                 **({"interventions": ivs} if ivs is not None else {}))


# ---------------------------------------------------------------------------------------------
# IEC-HS: a missing baseline is not a normal baseline (F4)


def iec_day4(alt_base=None, alt=250.0):
    """Subject I: day 0 ferritin 400 (ULN 300), AST 30 (ULN 40), counts normal; day 4 ferritin 2000,
    ALT ``alt`` (ULN 40), AST 30, fibrinogen 3.0 g/L (LLN 2.0), counts normal. ``alt_base``: the day-0
    ALT as (value, ULN or None), or None (not measured)."""
    obs = [("I", 0, "FERRITIN", 400, 20, 300), ("I", 0, "AST", 30, 5, 40),
           ("I", 0, "NEUT", 3.0), ("I", 0, "PLAT", 200), ("I", 0, "HGB", 130),
           ("I", 4, "FERRITIN", 2000, 20, 300), ("I", 4, "ALT", alt, 5, 40), ("I", 4, "AST", 30, 5, 40),
           ("I", 4, "FIBRINO", 3.0, 2.0, 4.0), ("I", 4, "NEUT", 3.0), ("I", 4, "PLAT", 200), ("I", 4, "HGB", 130)]
    if alt_base is not None:
        obs.append(("I", 0, "ALT", alt_base[0], 5, alt_base[1]))
    return derive_iec_hs_flags(study(obs)).filter(pl.col("day") == 4).row(0, named=True)


def test_iec_hs_transaminases_without_baseline_alt_is_undecided_not_normal():
    # day 4: ferritin 2000 > 2 x 300 (key met). AST 30 <= 5 x 40 with a normal baseline (30 <= 40): its
    # alternatives fail. Fibrinogen 3.0 g/L = 300 mg/dL >= 150 and >= LLN 2.0; ANC 3.0 >= 1.0, PLT 200 >=
    # 100, Hb 13 g/dL >= 9: no cytopenia. ALT 250 > 5 x ULN 40 = 200 if ALT was normal at baseline,
    # but if it was abnormal (e.g. 60) it needs > 5 x 60 = 300: without a baseline ALT undecided, and
    # with it the only supporting criterion left the flag is unknown (cartlab said true).
    r = iec_day4()
    assert r["iec_hs_flag"] is None
    assert r["not_evaluable"] == ["iec_hs.transaminases_gt_5x"]
    assert r["rule"].startswith("iec_hs.not_evaluable")
    assert "iec_hs.transaminases_gt_5x (no baseline ALT)" in r["reason"]


def test_iec_hs_transaminases_with_a_baseline_decide():
    # baseline ALT 30 (ULN 40): normal -> 250 > 5 x 40 = 200: met -> flag
    r = iec_day4(alt_base=(30, 40))
    assert r["iec_hs_flag"] is True and r["supporting_met"] == ["iec_hs.transaminases_gt_5x"]
    assert "ALT 250 U/L on day 4 > 5 x ULN (40)" in r["reason"]
    # baseline ALT 60 (ULN 40): abnormal -> needs > 5 x 60 = 300; 250 is not: every supporting
    # criterion decided no -> not flagged
    r = iec_day4(alt_base=(60, 40))
    assert r["iec_hs_flag"] is False and r["not_evaluable"] == [] and r["supporting_met"] == []


def test_iec_hs_baseline_without_uln_is_decided_only_when_both_readings_agree():
    # baseline ALT 30 without a ULN: normal or abnormal unknown. ALT 250 > 5 x ULN 40 = 200 (normal
    # reading) and > 5 x 30 = 150 (abnormal reading): met either way -> flag
    r = iec_day4(alt_base=(30, None))
    assert r["iec_hs_flag"] is True and r["supporting_met"] == ["iec_hs.transaminases_gt_5x"]
    assert "met either way" in r["reason"] and "5 x baseline (30 on day 0, 0 day(s) before day 0)" in r["reason"]
    # ALT 100: <= 200 and <= 150: fails either way -> not flagged (decided)
    r = iec_day4(alt_base=(30, None), alt=100.0)
    assert r["iec_hs_flag"] is False and r["not_evaluable"] == []
    # baseline ALT 60 without ULN, ALT 250: > 200 (normal reading) but not > 300 (abnormal): undecided
    r = iec_day4(alt_base=(60, None))
    assert r["iec_hs_flag"] is None and "iec_hs.transaminases_gt_5x (baseline ALT without ULN)" in r["reason"]


# ---------------------------------------------------------------------------------------------
# IEC-HS: the features "reported for adjudication only" are reported (F7)


def test_iec_hs_reports_ldh_and_triglycerides_for_adjudication_without_using_them():
    base = [("J", -1, "FERRITIN", 400, 20, 300), ("J", -1, "ALT", 30, 5, 40), ("J", -1, "AST", 30, 5, 40),
            ("J", -1, "FIBRINO", 3.0, 2.0, 4.0),
            ("J", 3, "FERRITIN", 700, 20, 300), ("J", 3, "ALT", 150, 5, 40), ("J", 3, "FIBRINO", 1.8, 2.0, 4.0)]
    extra = [("J", 3, "LDH", 600, 100, 250),   # 600 > ULN 250: LDH > ULN
             ("J", 3, "TRIG", 3.5),            # 3.5 mmol/L = 3.5 / 0.011290 = 310 mg/dL > 265
             ("J", 5, "FERRITIN", 900, 20, 300), ("J", 5, "LDH", 200, 100, 250),  # 200 <= 250
             ("J", 5, "TRIG", 2.5),            # 2.5 mmol/L = 221 mg/dL <= 265
             ("J", 10, "LDH", 700, 100, 250),  # only LDH that day, > ULN: a row for it
             ("J", 12, "LDH", 100, 100, 250)]  # only LDH, not above ULN: no row
    f = derive_iec_hs_flags(study(base + extra))
    assert f["day"].to_list() == [3, 5, 10]  # from start_day 0; day 12 (LDH 100 only, not above ULN) is no row
    d3 = f.filter(pl.col("day") == 3).row(0, named=True)
    assert d3["adjudication_features"] == ["iec_hs.ldh_gt_uln", "iec_hs.hypertriglyceridemia"]
    assert "Reported for adjudication, never used for the flag: iec_hs.ldh_gt_uln: LDH 600 U/L on day 3 > 1 x ULN (250)" \
        in d3["reason"]
    assert "TRIG 3.5 mmol/L on day 3 > 265 mg/dL" in d3["reason"]
    assert "observations.csv:8" in d3["evidence"]  # the LDH row
    assert f.filter(pl.col("day") == 5)["adjudication_features"].to_list() == [[]]
    d10 = f.filter(pl.col("day") == 10).row(0, named=True)
    assert d10["adjudication_features"] == ["iec_hs.ldh_gt_uln"] and d10["iec_hs_flag"] is None
    # never used for the flag: day 3 (ferritin 700 > 600; fibrinogen 1.8 < LLN 2.0) is flagged the same
    # with and without them, with the same criteria
    without = derive_iec_hs_flags(study(base)).filter(pl.col("day") == 3).row(0, named=True)
    assert (d3["iec_hs_flag"], d3["key_met"], d3["supporting_met"], d3["not_evaluable"]) == (
        without["iec_hs_flag"], without["key_met"], without["supporting_met"], without["not_evaluable"]) == (
        True, ["iec_hs.ferritin_gt_2x_uln"], ["iec_hs.hypofibrinogenemia"],
        ["iec_hs.transaminases_gt_5x", "iec_hs.cytopenia_new_or_worse"])
    assert without["adjudication_features"] == []


# ---------------------------------------------------------------------------------------------
# count recovery: the audit's subjects (rec/ study)


def rec(obs, followup=None, iv=(), **opt):
    f = derive_count_recovery(study(obs, followup, iv), RecoveryOptions(**opt) if opt else None)
    return {r["subject_id"]: r for r in f.iter_rows(named=True)}


R02_DAYS = (0, 3, 7, 10, 14, 17, 21, 28)
R02 = ([("R02", d, "NEUT", v) for d, v in zip(R02_DAYS, (2.0, 0.1, 0.05, 0.3, 0.8, 1.2, 1.5, 2.0))]
       + [("R02", d, "PLAT", v) for d, v in zip(R02_DAYS, (150, 50, 10, 15, 40, 60, 90, 120))])


def test_sparse_labs_leave_the_days_reading_not_evaluable_and_give_the_cibmtr_reading():
    # ANC: nadir 0.05 on day 7; day 10 is 0.3 (< 0.5), so runs starting on days 8-10 fail; days 11-13
    # have no value, so "3 successive days >= 0.5" from day 11 is possible, and no 3 successive days
    # are measured anywhere: the recovery day is not decidable (>= 11), not "not reached" (F2).
    # CIBMTR values: 0.8 (14), 1.2 (17), 1.5 (21) -> day 14. Platelets: nadir 10 on day 7, 15 on day
    # 10 (< 20); 40, 60, 90 on days 14, 17, 21 -> values reading 14, days reading not evaluable from 11.
    # No follow-up recorded -> censored at the last_followup_day 30.
    # Session 29: the first episode runs from the first value below the level (ANC 0.1 on day 3) to
    # its first run that recovers; days 4-6 have no value and could be that run (the 0.05 on day 7
    # would then be a later dip), so the ANC range starts on day 4 (count_recovery.yaml "nadir:
    # first_episode"; /work/notes/audit_diffscore). Platelets first fall below 20 on day 7 (10): 11.
    r = rec(R02, {"R02": 30.0})["R02"]
    for k, label, lo, gap in (("neutrophil", "ANC", 4.0, "4, 5, 6"), ("platelet", "platelets", 11.0, "11, 12, 13")):
        assert r[f"{k}_recovery_status"] == "not_evaluable"
        assert (r[f"{k}_recovery_day"], r[f"{k}_recovery_day_min"], r[f"{k}_recovery_day_max"]) == (None, lo, None)
        assert r[f"{k}_recovery_censor_day"] == 30.0
        assert r[f"{k}_recovery_rule"] == f"recovery.{k}; recovery.not_evaluable"
        why = r[f"{k}_recovery_reason"]
        assert why.startswith("not evaluable: no 3 consecutive days measured") and f"no {label} value on day(s) {gap}" in why
        assert "(option mode=measurements) gives day 14" in why and "censored at day 30 (last_followup_day)" in why
    m = rec(R02, {"R02": 30.0}, mode="measurements")["R02"]
    assert (m["neutrophil_recovery_day"], m["platelet_recovery_day"]) == (14.0, 14.0)
    assert m["neutrophil_recovery_status"] == "recovered" and m["neutrophil_recovery_censor_day"] is None


def test_a_missing_day_inside_a_run_gives_a_range():
    # R06: ANC 0.1 days 1-7, 0.6 day 8, day 9 not measured, 0.7/0.8/0.9 days 10-12. Days 10-12 are 3
    # successive days >= 0.5: recovery at the latest on 10. If day 9 was >= 0.5, days 8-10 were: day 8.
    # (Day 9 can never be the first: if it was >= 0.5, day 8 came first.) -> between 8 and 10 (F9).
    obs = [("R06", 0, "NEUT", 1.0)] + [("R06", d, "NEUT", 0.1) for d in range(1, 8)]
    obs += [("R06", 8, "NEUT", 0.6), ("R06", 10, "NEUT", 0.7), ("R06", 11, "NEUT", 0.8), ("R06", 12, "NEUT", 0.9)]
    r = rec(obs, {"R06": 15.0})["R06"]
    assert r["neutrophil_recovery_status"] == "not_evaluable"
    assert (r["neutrophil_recovery_day"], r["neutrophil_recovery_day_min"], r["neutrophil_recovery_day_max"]) == (None, 8.0, 10.0)
    assert r["neutrophil_recovery_censor_day"] is None  # recovered by day 10 in any case
    assert r["neutrophil_recovery_reason"].startswith("not evaluable: the recovery day is between day 8 and day 10")
    assert "no ANC value on day(s) 9" in r["neutrophil_recovery_reason"]
    # the CIBMTR values: 0.6 (8), 0.7 (10), 0.8 (11) -> day 8
    assert "gives day 8" in r["neutrophil_recovery_reason"]
    assert rec(obs, {"R06": 15.0}, mode="measurements")["R06"]["neutrophil_recovery_day"] == 8.0
    # measured on day 9 the range closes: 0.55 -> day 8; 0.4 -> day 10
    for v, day in ((0.55, 8.0), (0.4, 10.0)):
        r = rec(obs + [("R06", 9, "NEUT", v)], {"R06": 15.0})["R06"]
        assert (r["neutrophil_recovery_day"], r["neutrophil_recovery_day_min"], r["neutrophil_recovery_day_max"],
                r["neutrophil_recovery_status"]) == (day, day, day, "recovered")


def test_no_recovery_is_censored_at_the_last_follow_up():
    # R03: ANC 0.1 and platelets 10 every day 1-20, last_followup_day 25 -> not reached, censored at 25 (F8)
    obs = [("R03", 0, "NEUT", 1.0), ("R03", 0, "PLAT", 100)]
    obs += [("R03", d, p, v) for d in range(1, 21) for p, v in (("NEUT", 0.1), ("PLAT", 10))]
    r = rec(obs, {"R03": 25.0})["R03"]
    for k in ("neutrophil", "platelet"):
        assert (r[f"{k}_recovery_status"], r[f"{k}_recovery_day"], r[f"{k}_recovery_censor_day"]) == ("not_reached", None, 25.0)
        assert r[f"{k}_recovery_reason"].endswith("up to day 20; censored at day 25 (last_followup_day).")
    # without last_followup_day: the last recorded row (day 20)
    r = rec(obs)["R03"]
    assert r["neutrophil_recovery_censor_day"] == 20.0
    assert "censored at day 20 (no last_followup_day: the latest day of the subject's rows)" in r["neutrophil_recovery_reason"]
    # a value after the recorded follow-up: censored at that value's day, said so
    r = rec(obs, {"R03": 15.0})["R03"]
    assert r["neutrophil_recovery_censor_day"] == 20.0 and "it is after the end of follow-up" in r["neutrophil_recovery_reason"]


def test_a_run_cut_by_the_end_of_data_is_not_reached_and_said():
    # ANC 0.1 days 1-10, 0.6 on days 11-12 (the last values), follow-up 20: days 11, 12 and 13 would be
    # needed; the data end before -> not reached (censored at 20), the open run named
    obs = [("S", d, "NEUT", 0.1) for d in range(1, 11)] + [("S", 11, "NEUT", 0.6), ("S", 12, "NEUT", 0.6)]
    r = rec(obs, {"S": 20.0})["S"]
    assert (r["neutrophil_recovery_status"], r["neutrophil_recovery_censor_day"]) == ("not_reached", 20.0)
    assert "the values from day 11 meet the level, but the data end before 3 consecutive days" in r["neutrophil_recovery_reason"]


def test_initial_recovery_counts_from_the_first_episodes_nadir():
    # R04: ANC 0.2 days 1-5, 1.0 days 6-12, 0.05 days 13-18, 1.0 days 19-25. CIBMTR's item is the
    # "initial ANC recovery", counted after the nadir post-HCT: the first episode's nadir is 0.2 (day 1,
    # the earliest of equal values), then 1.0 on days 6, 7, 8 -> day 6 (cartlab gave 19, F5). The later
    # dip is named. Option nadir=lowest (the whole follow-up's lowest, 0.05 on day 13) gives 19.
    obs = [("R04", 0, "NEUT", 2.0)] + [("R04", d, "NEUT", 0.2) for d in range(1, 6)]
    obs += [("R04", d, "NEUT", 1.0) for d in range(6, 13)] + [("R04", d, "NEUT", 0.05) for d in range(13, 19)]
    obs += [("R04", d, "NEUT", 1.0) for d in range(19, 26)]
    r = rec(obs, {"R04": 26.0})["R04"]
    assert (r["neutrophil_recovery_day"], r["neutrophil_recovery_status"]) == (6.0, "recovered")
    assert r["neutrophil_recovery_reason"] == (
        "ANC >= 0.5 on days 6, 7, 8 after the nadir 0.2 on day 1 -> recovery day 6; ANC below 0.5 again from "
        "day 13 (the initial recovery counts; option nadir=lowest counts after the lowest value).")
    low = rec(obs, {"R04": 26.0}, nadir="lowest")["R04"]
    assert low["neutrophil_recovery_day"] == 19.0
    assert "after the nadir 0.05 on day 13 (the lowest value from day 0: option nadir=lowest)" in low["neutrophil_recovery_reason"]


def test_the_nadir_option_is_validated_and_reaches_the_analysis():
    with pytest.raises(InputError, match=r"RecoveryOptions: nadir: Input should be 'first_episode' or 'lowest'"):
        RecoveryOptions(nadir="deepest")
    obs = [("R04", 0, "NEUT", 2.0)] + [("R04", d, "NEUT", 0.2) for d in range(1, 6)]
    obs += [("R04", d, "NEUT", 1.0) for d in range(6, 13)] + [("R04", d, "NEUT", 0.05) for d in range(13, 19)]
    obs += [("R04", d, "NEUT", 1.0) for d in range(19, 26)]
    a = Analysis(study(obs), AnalysisOptions.from_settings({"count_recovery": {"nadir": "lowest"}}))
    assert a.table("count_recovery")["neutrophil_recovery_day"].to_list() == [19.0]


def test_unchanged_recoveries_keep_their_day_and_text():
    # R01: ANC nadir 0.02 (day 5); 0.6 (8), 0.4 (9), >= 0.7 from 10 -> 10. Platelets nadir 8 (day 6),
    # >= 20 from 8, transfusion on day 7: days 8-14 have it within 7 days before -> first counting day 15
    anc = (1.0, 0.6, 0.3, 0.1, 0.05, 0.02, 0.1, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9) + (1.5,) * 8
    plt = (100, 80, 60, 40, 25, 12, 8, 15, 30, 28, 26, 24, 22, 21, 25, 30, 35, 40, 45, 50, 55)
    obs = [("R01", d, "NEUT", v) for d, v in enumerate(anc)] + [("R01", d, "PLAT", v) for d, v in enumerate(plt)]
    r = rec(obs, {"R01": 25.0}, iv=[{"subject_id": "R01", "start_day": 7.0, "category": "platelet_transfusion"}])["R01"]
    assert (r["neutrophil_recovery_day"], r["platelet_recovery_day"]) == (10.0, 15.0)
    assert r["neutrophil_recovery_reason"] == "ANC >= 0.5 on days 10, 11, 12 after the nadir 0.02 on day 5 -> recovery day 10."
    assert (r["platelet_recovery_day_min"], r["platelet_recovery_day_max"], r["platelet_recovery_censor_day"]) == (15.0, 15.0, None)
    # R05: ANC >= 0.5 throughout: not applicable
    r = rec([("R05", d, "NEUT", 1.2) for d in range(21)], {"R05": 20.0})["R05"]
    assert (r["neutrophil_recovery_status"], r["neutrophil_recovery_day_min"]) == ("not_applicable", None)
    assert r["platelet_recovery_status"] == "no_data"
