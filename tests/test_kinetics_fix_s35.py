"""Review s35 (cellular kinetics) fixes: ADPC ARRLT joined per subject to the most recent infusion
(A1), time_from="last" refused for samples between infusions (B1), zero_at_infusion=False without a
sample at the window's start (B2), no CAR-T infusion record (B3), a date-only sample on the day of an
untimed infusion (B4). Every expected value is worked by hand in the comments (the probes of
/work/notes/review35_kin/probe), never copied from cartlab's output."""

from __future__ import annotations

import math
import warnings

import polars as pl
import pytest

from cartlab.errors import InputError, SubjectsWarning
from cartlab.kinetics.car import CarKineticsOptions, derive_adpc, derive_car_kinetics, derive_car_profiles
from cartlab.model import Study, conform


def study(rows: dict[str, list[tuple]], doses: dict[str, list[float]]) -> Study:
    """A study of CARCOPY samples ``rows[subject] = [(day, value or "<20"), ...]`` (lloq 20 copies/ug)
    and CAR-T infusions ``doses[subject] = [day, ...]`` (a subject absent from ``doses`` has none)."""
    obs, n = [], 0
    for sid, samples in rows.items():
        for day, v in samples:
            n += 1
            r = {"subject_id": sid, "day": float(day), "param": "CARCOPY", "unit": "copies/ug", "lloq": 20.0,
                 "value": None, "value_text": None, "src_file": "observations.csv", "src_row": n + 1}
            if isinstance(v, str):
                r.update(value_text=v, censor="<", censor_limit=float(v[1:]))
            else:
                r["value"] = float(v)
            obs.append(r)
    d = [{"subject_id": sid, "day": float(day), "agent": "CAR-T", "dose": 1e6, "unit": "cells/kg",
          "src_file": "doses.csv", "src_row": i + 2}
         for i, (sid, day) in enumerate((s, x) for s, days in doses.items() for x in days)]
    return Study(study_id="t", subjects=conform(pl.DataFrame({"subject_id": list(rows)}), "subjects"),
                 observations=conform(pl.DataFrame(obs, infer_schema_length=None), "observations"),
                 doses=conform(pl.DataFrame(d, schema={"subject_id": pl.String, "day": pl.Float64, "agent": pl.String,
                                                       "dose": pl.Float64, "unit": pl.String, "src_file": pl.String,
                                                       "src_row": pl.Int64}), "doses"))


def arrlt(adpc: pl.DataFrame, sid: str) -> list[tuple[float, float]]:
    """(ADY, ARRLT) of a subject's measured rows, by day."""
    return adpc.filter((pl.col("USUBJID") == sid) & pl.col("DTYPE").is_null()).sort("ADY").select(
        "ADY", "ARRLT").rows()


# ---- A1: ARRLT = time from the most recent infusion at or before the sample, per subject ----------

def test_arrlt_from_the_most_recent_infusion_review_probe_r1():
    # infusions on days 0 and 14; samples on days 7, 15, 21:
    # ARRLT = 7 - 0 = 7, 15 - 14 = 1, 21 - 14 = 7 (old code pasted 1, 7, 7 by row position)
    s = study({"A": [(7, 1000), (15, 2000), (21, 800)]}, {"A": [0, 14]})
    a = derive_adpc(s)
    assert arrlt(a, "A") == [(7.0, 7.0), (15.0, 1.0), (21.0, 7.0)]
    # AFRLT stays the time from the first infusion (7, 15, 21); the imputed 0 is at the first infusion: 0
    assert a.filter(pl.col("DTYPE").is_null()).sort("ADY")["AFRLT"].to_list() == [7.0, 15.0, 21.0]
    assert a.filter(pl.col("DTYPE") == "IMPUTED").select("AFRLT", "ARRLT").rows() == [(0.0, 0.0)]


def test_arrlt_does_not_depend_on_other_subjects_review_probe_r2():
    # B has a sample on the day of its second infusion (day 14): the old code's two frames then had
    # different heights and ARRLT fell back to AFRLT for every subject.
    # A, split dose on days 0 and 2: 4 - 2 = 2, 7 - 2 = 5, 28 - 2 = 26
    # B, infusions 0 and 14: 7 - 0 = 7, 14 - 14 = 0, 21 - 14 = 7, 28 - 14 = 14
    # C, no CAR-T infusion record: timed from day 0, ARRLT = AFRLT = 7, 14
    s = study({"A": [(4, 1000), (7, 10000), (28, 500)], "B": [(7, 1000), (14, 500), (21, 800), (28, 400)],
               "C": [(7, 100), (14, 50)]}, {"A": [0, 2], "B": [0, 14]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = derive_adpc(s)
    assert arrlt(a, "A") == [(4.0, 2.0), (7.0, 5.0), (28.0, 26.0)]
    assert arrlt(a, "B") == [(7.0, 7.0), (14.0, 0.0), (21.0, 7.0), (28.0, 14.0)]
    assert arrlt(a, "C") == [(7.0, 7.0), (14.0, 14.0)]


# ---- B1: time_from="last" ----------------------------------------------------------------------

def test_time_from_last_refuses_samples_between_infusions():
    # infusions 0 and 14, a sample on day 7 (between them): refused, naming the subject, day and row
    s = study({"A": [(7, 1000), (15, 2000), (21, 800)]}, {"A": [0, 14]})
    with pytest.raises(InputError, match=r"A \(sample day\(s\) 7 before the last infusion on day 14; "
                                         r"observations.csv:2\)"):
        derive_car_kinetics(s, CarKineticsOptions(time_from="last"))
    # the default (time from the first infusion) ends the first profile at the day-14 re-infusion (14 days
    # after day 0, more than kinetics.split_dose_gap_days 7: PKNCA one NCA per dosing interval, review40 A1):
    # the peak of the first administration is day 7; profile_end=all pools both (the day-15 peak, as before)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert derive_car_kinetics(s)["tmax"].to_list() == [7.0]
        assert derive_car_kinetics(s, CarKineticsOptions(profile_end="all"))["tmax"].to_list() == [15.0]


def test_time_from_last_with_every_sample_after_the_last_infusion():
    # infusions 0 and 2, samples on days 4 (1000), 7 (10000), 28 (500): times from day 2 are 2, 5, 26,
    # and the 0 is imputed at the last infusion (day 2, time 0)
    s = study({"A": [(4, 1000), (7, 10000), (28, 500)]}, {"A": [0, 2]})
    p = derive_car_profiles(s, CarKineticsOptions(time_from="last"))
    assert p.select("day", "time").rows() == [(2.0, 0.0), (4.0, 2.0), (7.0, 5.0), (28.0, 26.0)]


# ---- B2: zero_at_infusion=False -----------------------------------------------------------------

def test_zero_at_infusion_false_without_a_sample_at_the_window_start():
    # A: 7 -> 10000, 21 -> 1000, 35 -> 100 (no BLQ after tlast: the old code gave PKNCA aucint's 93878.5
    # from conc.origin = 0, i.e. the 0 imputed anyway). B: 7 -> 1000, 14 -> 500, 21 "<20" (BLQ after
    # tlast: the old code gave null with the basis "AUCall: ..."). Both: not computable, and why.
    s = study({"A": [(7, 10000), (21, 1000), (35, 100)], "B": [(7, 1000), (14, 500), (21, "<20")]},
              {"A": [0], "B": [0]})
    k = derive_car_kinetics(s, CarKineticsOptions(zero_at_infusion=False)).sort("subject_id")
    assert k["auc_window"].to_list() == [None, None]
    assert all(b.startswith("not computable: no sample at the start of the window (day 0)")
               for b in k["auc_window_basis"].to_list())
    # with a sample at the window's start the AUC is computed:
    # a "<20" on day 0 is BLQ before the first quantifiable value: 0 (spec). Then 0 -> 7 -> 21 -> 28:
    # 7*10000/2 = 35000; 14*(10000-1000)/ln(10) = 54721.10; day 28 log-interpolated between 21 (1000)
    # and 35 (100): c28 = sqrt(1000*100) = 316.228; 7*(1000-316.228)/ln(1000/316.228) = 4157.42;
    # total 93878.52 (the review's r1 SYN-0002)
    s = study({"A": [(0, "<20"), (7, 10000), (21, 1000), (35, 100)]}, {"A": [0]})
    k = derive_car_kinetics(s, CarKineticsOptions(zero_at_infusion=False)).row(0, named=True)
    c28 = math.sqrt(1000 * 100)
    hand = 35000 + 14 * 9000 / math.log(10) + 7 * (1000 - c28) / math.log(1000 / c28)
    assert k["auc_window"] == pytest.approx(hand, rel=1e-9) and hand == pytest.approx(93878.52, abs=0.01)


# ---- B3: no CAR-T infusion record ---------------------------------------------------------------

def test_no_infusion_record_is_timed_from_day_0_and_says_so():
    # samples 3 -> 1000, 14 -> 500, 28 -> 250, no CAR-T dose row: timed from day 0 (spec: day 0 is the
    # infusion day), 0 imputed at day 0. AUC0-28 = 3*1000/2 + 11*500/ln 2 + 14*250/ln 2
    # = 1500 + 7934.85 + 5049.45 = 14484.30
    s = study({"A": [(3, 1000), (14, 500), (28, 250)], "B": [(7, 100), (28, 50)]}, {"B": [0]})
    with pytest.warns(SubjectsWarning, match=r"1 subject\(s\) have CAR-T samples but no CAR-T infusion.*: A$"):
        k = derive_car_kinetics(s).sort("subject_id")
    a = k.row(0, named=True)
    assert a["auc_window"] == pytest.approx(1500 + 5500 / math.log(2) + 3500 / math.log(2), rel=1e-9)
    assert "time from day 0 (no CAR-T infusion recorded); concentration 0 imputed at day 0" in a["reason"]
    assert "time from the first infusion; concentration 0 imputed at the infusion" in k.row(1, named=True)["reason"]


# ---- B4: a date-only sample on the day of an untimed infusion -----------------------------------

def test_untimed_day0_sample_as_given_and_pre_infusion():
    # day 0 = 35 (no clock time, infusion without one), 7 -> 1000, 28 -> 100 (the review's r3 SYN-0003)
    # as_given (default, the spec): 7*(35+1000)/2 + 21*(1000-100)/ln(10) = 3622.5 + 8208.17 = 11830.67
    # pre_infusion: the 0 is imputed instead: 7*1000/2 + 8208.17 = 11708.17
    s = study({"A": [(0, 35), (7, 1000), (28, 100)]}, {"A": [0]})
    tail = 21 * 900 / math.log(10)
    with pytest.warns(SubjectsWarning, match=r"A \(day 0: 35 copies/ug"):
        k = derive_car_kinetics(s).row(0, named=True)
    assert k["auc_window"] == pytest.approx(3622.5 + tail, rel=1e-9)
    assert "kinetics.day0_untimed_sample=as_given" in k["reason"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", SubjectsWarning)  # no warning: the sample is left out as asked
        pre = derive_car_kinetics(s, CarKineticsOptions(day0_untimed_sample="pre_infusion")).row(0, named=True)
    assert pre["auc_window"] == pytest.approx(3500 + tail, rel=1e-9)
    assert pre["n_samples"] == 3  # the imputed 0, day 7, day 28
    # a "<20" on day 0 is 0 either way (BLQ before the first quantifiable value): no warning
    blq = study({"A": [(0, "<20"), (7, 1000), (28, 100)]}, {"A": [0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", SubjectsWarning)
        assert derive_car_kinetics(blq)["auc_window"][0] == pytest.approx(3500 + tail, rel=1e-9)
    with pytest.raises(InputError, match="day0_untimed_sample must be 'as_given' or 'pre_infusion'"):
        CarKineticsOptions(day0_untimed_sample="baseline")
