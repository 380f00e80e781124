"""Review 47 (protocol engines): the lymphodepletion course, CAR-T re-infusions, censored values in
another unit, untimed ties, screen failures, timed labs on the first lymphodepletion day, death.

Studies are the seed case (CD7-AML-001, NCT04762485: decitabine days -6..-3, fludarabine and
cyclophosphamide days -5..-3, CAR-T 1 + 4 x10^6/kg on days 0 and 2; AST 22 U/L (ULN 35) and BILI
9.1 umol/L on day -6, TGTBLAST CD7 95.6 % on day -7; weight 52 kg; last_followup_day 60) copied with
one hand edit each. Every expected value is worked out by hand, as each test says.
"""

from __future__ import annotations

import shutil

import polars as pl
import pytest

from cartlab.datasets import seed_case_path
from cartlab.io.study_folder import read_study
from cartlab.protocol import derive_deviations, derive_eligibility, load_protocol
from cartlab.protocol.ld_course import lymphodepletion_courses
from cartlab.protocol.options import ProtocolOptions

SID = "CD7-AML-001"
OBS_COLS = ("subject_id", "day", "param", "analyte", "value", "value_text", "unit", "lln", "uln", "lloq", "specimen",
            "source", "source_note")
DOSE_COLS = ("subject_id", "day", "agent", "dose", "unit", "source", "source_note")


@pytest.fixture(scope="module")
def proto():
    return load_protocol("nct04762485")


def _study(tmp_path, name="s", **edits):
    d = tmp_path / name
    shutil.copytree(seed_case_path(), d)
    for table, fn in edits.items():
        f = d / f"{table}.csv"
        fn(pl.read_csv(f, infer_schema_length=0)).write_csv(f)
    return read_study(d)


def _doses(days, agent, dose, unit, sid=SID):
    return pl.DataFrame([{"subject_id": sid, "day": str(d), "agent": agent, "dose": str(dose), "unit": unit,
                          "source": "observed", "source_note": None} for d in days],
                        schema={c: pl.String for c in DOSE_COLS})


def _obs(day, param, value=None, value_text=None, unit="", uln=None, sid=SID):
    return pl.DataFrame([{"subject_id": sid, "day": str(day), "param": param, "analyte": None,
                          "value": None if value is None else str(value), "value_text": value_text, "unit": unit,
                          "lln": None, "uln": None if uln is None else str(uln), "lloq": None, "specimen": None,
                          "source": "observed", "source_note": None}], schema={c: pl.String for c in OBS_COLS})


def _event(day, event="death"):
    return lambda s: pl.concat([s, pl.DataFrame([{"subject_id": SID, "day": str(day), "event": event, "detail": None,
                                                  "attribution": None, "source": "observed", "source_note": None}],
                                                schema={c: pl.String for c in s.columns})])


def _crit(res, cid):
    return res.filter(pl.col("criterion_id") == cid).row(0, named=True)


# ---- F1: a bridging course ending 2-3 days before the lymphodepletion --------------------------------
@pytest.mark.parametrize("bridge", [[-11, -10, -9], [-10, -9, -8]])
def test_bridging_days_before_the_course_are_not_the_course(tmp_path, proto, bridge):
    # decitabine bridging ending 3 (or 2) days before the planned course of days -6..-3, AST 500 U/L on
    # day -7. Old rule: the gap -9 -> -6 (or -8 -> -6) is <= the planned span 3, so the course started on
    # day -11 (-10) and the window ended there: AST unknown. New rule: -9..-3 spans 6 > 3 + 2 (span
    # rule), and day -8 would be decitabine's 5th course day while 4 are planned (count rule): the course
    # is -6..-3, the last AST in days -42..-6 is the seed's 22 U/L of day -6 (3 x ULN 35 = 105): pass
    st = _study(tmp_path, doses=lambda s: pl.concat([s, _doses(bridge, "decitabine", 20, "mg/m2")]),
                observations=lambda s: pl.concat([s, _obs(-7, "AST", 500, unit="U/L", uln=35)]))
    c = lymphodepletion_courses(st.doses, proto)[SID]
    assert (c.first, c.last) == (-6.0, -3.0)
    assert sorted(d for _, d in c.not_counted) == [float(x) for x in bridge]
    ast = _crit(derive_eligibility(st, proto), "ast")
    assert (ast["status"], ast["day"]) == ("pass", -6.0)
    days = ", ".join(str(x) for x in bridge)
    assert f"decitabine on day(s) {days} (before the course of days -6 to -3" in ast["reason"]
    # deviations: the bridging doses are extra doses saying why; the course itself has no deviation
    dev = derive_deviations(st, proto).filter(pl.col("item") == "decitabine")
    assert dev["category"].to_list() == ["extra_dose"] * 3
    assert dev["actual_day"].to_list() == [float(x) for x in bridge]
    assert all("not counted as the lymphodepletion course" in x for x in dev["detail"])


def test_bridging_dose_is_not_paired_with_a_missed_course_day(tmp_path, proto):
    # course without its day -6 decitabine, bridging decitabine on day -9: the old pairing (max shift 7)
    # paired planned -6 with given -9 (a dose 20 mg/m2 out of tolerance); the bridging dose is not the
    # course (decitabine has only 3 course days, but -9..-3 would span 6 > 3 + 2 days): planned -6 is
    # missed, the -9 dose extra
    st = _study(tmp_path, doses=lambda s: pl.concat([
        s.filter(~((pl.col("agent") == "decitabine") & (pl.col("day") == "-6.0"))),
        _doses([-9], "decitabine", 20, "mg/m2")]))
    dev = derive_deviations(st, proto).filter(pl.col("item") == "decitabine")
    assert sorted(zip(dev["category"], dev["planned_day"], dev["actual_day"]), key=str) == sorted(
        [("missed_dose", -6.0, None), ("extra_dose", None, -9.0)], key=str)


def test_course_tolerance_is_an_option(tmp_path, proto):
    # the seed course with its day -3 doses postponed to day -1: -6..-1 spans 5 = 3 + 2 (default): one
    # course, as before (one wrong_day "+2 days" per agent). With ld_course_tolerance_days=1 (a course
    # spans at most 4 days) day -6 is not the course: the course starts on day -5, the decitabine of
    # day -6 is an extra dose (bridging) and the screening window ends on day -5
    st = _study(tmp_path, doses=lambda s: s.with_columns(
        pl.when(pl.col("day") == "-3.0").then(pl.lit("-1.0")).otherwise(pl.col("day")).alias("day")))
    assert lymphodepletion_courses(st.doses, proto)[SID].first == -6.0
    assert lymphodepletion_courses(st.doses, proto, 1)[SID].first == -5.0
    default = derive_deviations(st, proto)
    assert sorted(default.filter(pl.col("category") == "wrong_day")["item"].to_list()) == [
        "cyclophosphamide", "decitabine", "fludarabine"]
    assert default.filter(pl.col("category") == "extra_dose").height == 0
    one = derive_deviations(st, proto, ProtocolOptions(ld_course_tolerance_days=1))
    assert one.filter(pl.col("category") == "extra_dose")["actual_day"].to_list() == [-6.0]
    el = derive_eligibility(st, proto, ld_course_tolerance_days=1)
    assert "up to the first lymphodepletion dose on day -5" in _crit(el, "ast")["reason"]
    with pytest.raises(ValueError, match="ld_course_tolerance_days"):
        ProtocolOptions(ld_course_tolerance_days=-1)


def test_seed_course_unchanged(proto):
    # the seed's course -6..-3 (no dose outside it): as before
    c = lymphodepletion_courses(read_study(seed_case_path()).doses, proto)[SID]
    assert (c.first, c.last, c.not_counted) == (-6.0, -3.0, ())


# ---- F2: a CAR-T re-infusion ------------------------------------------------------------------------
def test_reinfusion_is_not_added_to_the_split_dose_total(tmp_path, proto):
    # seed split 1 + 4 x10^6/kg (days 0, 2), re-infusion 6 x10^6/kg on day 30 (28 days after day 2 > 7,
    # kinetics.split_dose_gap_days). Old: total 11 x10^6/kg > 10 x10^6/kg "outside the protocol range",
    # and the split not checked. New: the first course is 5 x10^6/kg, in range, split as reconstructed:
    # no CAR-T deviation; one informational not_checkable row for day 30
    st = _study(tmp_path, doses=lambda s: pl.concat([s, _doses([30], "CAR-T", 6e6, "cells/kg")]))
    car = derive_deviations(st, proto).filter(pl.col("item") == "CAR-T")
    assert car["category"].to_list() == ["not_checkable"]
    r = car.row(0, named=True)
    assert r["actual_day"] == 30.0 and "re-infusion on day 30" in r["detail"]
    assert "not added to the first course's total" in r["detail"]
    # with a gap of 30 days (the analysis's kinetics option), day 30 is a split fraction: total 11e6
    wide = derive_deviations(st, proto, split_dose_gap_days=30).filter(pl.col("item") == "CAR-T")
    assert "dose_out_of_tolerance" in wide["category"].to_list()


# ---- F3: a censored value converted from another unit --------------------------------------------------
def test_censored_value_in_another_unit_shows_both_units(tmp_path, proto):
    # BILI "<0.5" mg/dL on day -6 (the seed's 9.1 umol/L removed): 0.5 mg/dL = 0.5 x 17.104 = 8.552 umol/L
    # (the dictionary's factor). Old: "BILI <0.5 umol/L" (the text with the converted unit)
    st = _study(tmp_path, observations=lambda s: pl.concat([
        s.filter(~((pl.col("param") == "BILI") & (pl.col("day") == "-6.0"))),
        _obs(-6, "BILI", None, "<0.5", "mg/dL")]))
    b = _crit(derive_eligibility(st, proto), "bilirubin")
    assert (b["status"], b["value"], b["unit"]) == ("pass", "<8.552", "umol/L")
    assert "BILI <0.5 mg/dL (= <8.552 umol/L) on day -6" in b["reason"]


# ---- F4: two untimed values of the last day --------------------------------------------------------------
def test_untimed_same_day_values_that_disagree_are_unknown(tmp_path, proto):
    # the seed's AST 22 U/L and a second AST 200 U/L on day -6 (ULN 35: 3 x ULN = 105): 22 meets, 200 does
    # not; no time of day orders them. Old: the later row decided (fail)
    st = _study(tmp_path, observations=lambda s: pl.concat([s, _obs(-6, "AST", 200, unit="U/L", uln=35)]))
    a = _crit(derive_eligibility(st, proto), "ast")
    assert a["status"] == "unknown"
    assert "22 U/L" in a["reason"] and "200 U/L" in a["reason"] and "disagree" in a["reason"]
    assert len(a["evidence"]) == 2


def test_untimed_same_day_values_that_agree_decide(tmp_path, proto):
    # 22 and 30 U/L both <= 105 U/L: pass, both rows are evidence
    st = _study(tmp_path, observations=lambda s: pl.concat([s, _obs(-6, "AST", 30, unit="U/L", uln=35)]))
    a = _crit(derive_eligibility(st, proto), "ast")
    assert a["status"] == "pass" and len(a["evidence"]) == 2 and "each tried" in a["reason"]


# ---- F5: a screen failure without any dose row ------------------------------------------------------------
def test_screen_failure_without_doses_has_no_monitoring_rows(tmp_path, proto):
    # S2: no dose row, no CARCOPY; the seed subject's CAR-T rows are recorded. Old: 21 missed_monitoring
    # rows (everything after an infusion that never happened). New: one not_infused row
    st = _study(tmp_path, subjects=lambda s: pl.concat([s, s.with_columns(pl.lit("S2").alias("subject_id"))]),
                observations=lambda s: pl.concat([s, s.filter(pl.col("day").cast(pl.Float64) < 0)
                                                  .with_columns(pl.lit("S2").alias("subject_id"))]))
    s2 = derive_deviations(st, proto).filter(pl.col("subject_id") == "S2")
    assert s2["category"].to_list() == ["not_infused"]
    assert "screen failure" in s2["detail"][0]


# ---- F6: a timed lab drawn after the first lymphodepletion dose on that day ----------------------------------
def test_timed_lab_after_the_first_timed_dose_is_not_a_screening_value(tmp_path, proto):
    # first decitabine at 08:00 of day -6 (-5.666667), AST 500 U/L at 18:00 of day -6 (-5.25): after the
    # dose, not a screening value; the seed's untimed AST 22 U/L of day -6 is (the day counts): pass.
    # Old: 500 U/L was the last value: fail
    st = _study(tmp_path, doses=lambda s: s.with_columns(
        pl.when(pl.col("day") == "-6.0").then(pl.lit("-5.666667")).otherwise(pl.col("day")).alias("day")),
        observations=lambda s: pl.concat([s, _obs(-5.25, "AST", 500, unit="U/L", uln=35)]))
    a = _crit(derive_eligibility(st, proto), "ast")
    assert (a["status"], a["day"]) == ("pass", -6.0)
    assert "at 08:00" in a["reason"]


def test_timed_lab_without_a_timed_dose_keeps_the_day(tmp_path, proto):
    # the same lab with the seed's untimed dose of day -6: the day counts, 500 U/L decides: fail (unchanged)
    st = _study(tmp_path, observations=lambda s: pl.concat([s, _obs(-5.25, "AST", 500, unit="U/L", uln=35)]))
    assert _crit(derive_eligibility(st, proto), "ast")["status"] == "fail"


# ---- F9/F10: death -----------------------------------------------------------------------------------
def test_death_day_is_not_a_missed_monitoring_day(tmp_path, proto):
    # death on day 21, TEMP of day 21 removed: TEMP is scheduled daily to day 28; nothing is due on the
    # day of death. Old: "TEMP not measured on scheduled day(s) 21"
    st = _study(tmp_path, events=_event(21),
                observations=lambda s: s.filter(~((pl.col("param") == "TEMP") & (pl.col("day") == "21.0"))))
    dev = derive_deviations(st, proto)
    assert dev.filter((pl.col("category") == "missed_monitoring") & (pl.col("item") == "TEMP")).height == 0


def test_dose_after_death_is_flagged(tmp_path, proto):
    # death on day 1, the seed's CAR-T dose on day 2: one dose_after_death row naming both rows
    st = _study(tmp_path, events=_event(1))
    r = derive_deviations(st, proto).filter(pl.col("category") == "dose_after_death")
    assert r["actual_day"].to_list() == [2.0]
    assert len(r["evidence"][0]) == 2


def test_dose_plan_creatinine_timed_after_the_first_timed_dose_is_not_screening(tmp_path, proto):
    # the dose plan reads the screening creatinine as eligibility does (review 47 F6, lead): first decitabine
    # at 08:00 of day -6 (-5.666667), creatinine 300 umol/L at 18:00 of day -6 (-5.25) is after the dose; the
    # seed's untimed 54 umol/L of day -6 is the screening value. Old: 300 umol/L (the last one) was used.
    from cartlab.protocol.deviations import subject_patient

    st = _study(tmp_path, doses=lambda s: s.with_columns(
        pl.when(pl.col("day") == "-6.0").then(pl.lit("-5.666667")).otherwise(pl.col("day")).alias("day")),
        observations=lambda s: pl.concat([s, _obs(-5.25, "CREAT", 300, unit="umol/L")]))
    patient, _ = subject_patient(st, proto, SID)
    assert (patient.creatinine, patient.creatinine_day) == (54.0, -6.0)
    # without a time on the dose, the day counts: the later 300 umol/L row is the screening value (unchanged)
    st2 = _study(tmp_path, "s2", observations=lambda s: pl.concat([s, _obs(-5.25, "CREAT", 300, unit="umol/L")]))
    assert subject_patient(st2, proto, SID)[0].creatinine == 300.0


def test_absence_reason_says_where_absence_means_no_is_set(tmp_path, proto):
    # review 47 new user #9: the reason named a setting --set refuses; it is a key of the protocol YAML's criterion
    r = _crit(derive_eligibility(_study(tmp_path), proto), "active_infection")
    assert r["status"] == "unknown"
    assert "absence_means_no: true on this criterion in a copy of the protocol YAML and pass --protocol FILE" in r["reason"]
