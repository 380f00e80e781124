"""Date-times on the day axis: one rule for the study folder, SDTM and FHIR readers (cartlab.io.clock).

Study format v1, "Time": "Day 0 is the infusion day ... day 14.5 is noon of day 14"; "Derivation
conventions": "Days are calendar days relative to day 0". Expected days below are counted by hand
from the calendar: (date - infusion date) in whole days + the clock time as written / 24 h.
"""

from __future__ import annotations

import csv
import json
from datetime import date, datetime, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cartlab.cli import app
from cartlab.io import read_study
from cartlab.io.clock import day_number, day_zero, days_from, midnight, parse_wall_clock, wall_clock
from cartlab.io.errors import StudyValidationError
from cartlab.io.fhir import read_fhir
from cartlab.io.fhir._common import fhir_text, parse_fhir_time
from cartlab.io.sdtm.dates import parse_dtc


def _write(folder, name, rows):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / name, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)


OFFSETS = ["", "Z", "+08:00", "-05:00", "+0530", "+00:00", "-11"]


@settings(max_examples=200, deadline=None)
@given(d0=st.dates(date(1990, 1, 1), date(2060, 12, 31)), k=st.integers(-40, 400),
       sec=st.integers(0, 86_399), inf_sec=st.integers(0, 86_399), off=st.sampled_from(OFFSETS),
       inf_off=st.sampled_from(OFFSETS))
def test_every_reader_counts_calendar_days_on_the_clock_as_written(d0, k, sec, inf_sec, off, inf_off):
    """Whatever the infusion's hour and whatever offsets are written, the day is the whole calendar
    days from the infusion date plus the clock time as written: the same in the polars rule (study
    folder), its Python twin (FHIR) and the SDTM --DTC reader."""
    when = datetime.combine(d0, datetime.min.time()) + timedelta(days=k, seconds=sec)
    text = when.isoformat(timespec="seconds") + off
    infusion = (datetime.combine(d0, datetime.min.time()) + timedelta(seconds=inf_sec)).isoformat() + inf_off
    expected = k + sec / 86_400
    df = pl.DataFrame({"t": [text], "inf": [infusion], "inf_date": [None]}, schema={"t": pl.String, "inf": pl.String,
                                                                                  "inf_date": pl.String})
    got = df.select(day_number(wall_clock(pl.col("t")), day_zero(pl.col("inf"), pl.col("inf_date")))).item()
    assert got == pytest.approx(expected, abs=1e-9)
    assert days_from(midnight(parse_wall_clock(infusion)), parse_wall_clock(text)) == pytest.approx(expected, abs=1e-9)
    if off in ("Z", "+08:00", "-05:00", "+00:00"):  # FHIR dateTime offsets are hh:mm or Z
        assert days_from(midnight(parse_fhir_time(fhir_text(infusion))),
                         parse_fhir_time(text)) == pytest.approx(expected, abs=1e-9)
    sd = pl.DataFrame({"t": [text]}).select(parse_dtc(pl.col("t")).struct.field("dt")).to_series()
    origin = pl.Series([datetime.combine(d0, datetime.min.time())])
    assert pl.DataFrame({"dt": sd, "o": origin}).select(day_number(pl.col("dt"), pl.col("o"))).item() == \
        pytest.approx(expected, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.datetimes(datetime(1900, 1, 1), datetime(2100, 1, 1)).map(lambda d: d.replace(microsecond=0)),
       st.sampled_from(["", "Z", "+01:00", "-0930"]))
def test_fhir_text_keeps_date_clock_and_offset(dt, off):
    text = dt.isoformat(sep=" ", timespec="minutes") + off  # a space and no seconds: common in CSV exports
    out = fhir_text(text)
    assert parse_wall_clock(out) == dt.replace(second=0)
    assert out.endswith({"": "Z", "Z": "Z", "+01:00": "+01:00", "-0930": "-09:30"}[off])
    assert out[10] == "T" and out[16] == ":"  # seconds added: FHIR needs hh:mm:ss


def test_infusion_hour_does_not_move_days(tmp_path):
    """Adding an infusion time to an infusion date adds precision, not a shift: every day is the same."""
    obs = [["subject_id", "datetime", "param", "value", "unit"],
           ["A", "2022-03-01T08:00", "TEMP", "37.0", "C"],   # before the 14:00 infusion, on day 0
           ["A", "2022-03-02T08:00", "TEMP", "38.4", "C"],   # the morning after: day 1
           ["A", "2022-03-03T23:30+01:00", "TEMP", "38.9", "C"]]
    days = {}
    for name, subj in (("date", ["A", "2022-03-01", ""]), ("datetime", ["A", "", "2022-03-01T14:00"]),
                       ("both", ["A", "2022-03-01", "2022-03-01T14:00+02:00"])):
        f = tmp_path / name
        _write(f, "subjects.csv", [["subject_id", "infusion_date", "infusion_datetime"], subj])
        _write(f, "observations.csv", obs)
        days[name] = read_study(f).observations.sort("src_row")["day"].to_list()
    expected = [8 / 24, 1 + 8 / 24, 2 + 23.5 / 24]  # by hand from the calendar
    for got in days.values():
        assert got == pytest.approx(expected)


def test_morning_after_fever_is_crs_onset_day_1(tmp_path):
    """Infusion at 14:00 on 1 March, fever at 08:00 on 2 March: CRS onset is day 1 (ASTCT grades
    calendar days), not day 0 as 18 hours after the infusion would floor to."""
    f = tmp_path / "s"
    _write(f, "subjects.csv", [["subject_id", "infusion_datetime", "age_years"], ["A", "2022-03-01T14:00", "50"]])
    _write(f, "doses.csv", [["subject_id", "datetime", "agent", "dose", "unit"],
                            ["A", "2022-03-01T14:00", "CAR-T", "1e6", "cells/kg"]])
    _write(f, "observations.csv", [["subject_id", "datetime", "param", "value", "unit"],
                                   ["A", "2022-03-01T09:00", "TEMP", "36.8", "C"],
                                   ["A", "2022-03-02T08:00", "TEMP", "38.6", "C"],
                                   ["A", "2022-03-03T08:00", "TEMP", "37.1", "C"]])
    res = CliRunner().invoke(app, ["analyze", str(f), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    row = pl.read_csv(tmp_path / "out" / "subject_summary.csv").row(0, named=True)
    assert (row["crs_grade_astct"], row["crs_onset_day"], row["crs_resolution_day"]) == (1, 1, 1)


def test_offset_infusion_time_matches_its_own_date(tmp_path):
    """06:00+08:00 on 1 March is 1 March at the site (22:00 UTC on 28 Feb): infusion_date 2022-03-01
    agrees with it."""
    f = tmp_path / "s"
    _write(f, "subjects.csv", [["subject_id", "infusion_date", "infusion_datetime"],
                               ["A", "2022-03-01", "2022-03-01T06:00+08:00"]])
    assert read_study(f).subjects["infusion_datetime"].to_list() == ["2022-03-01T06:00+08:00"]
    _write(f, "subjects.csv", [["subject_id", "infusion_date", "infusion_datetime"],
                               ["A", "2022-03-02", "2022-03-01T06:00+08:00"]])
    with pytest.raises(StudyValidationError, match="infusion_datetime falls on another date"):
        read_study(f)


@pytest.mark.parametrize("bad", ["2022-03-02T08:00+25:00", "2022-03-02T08:00+01:75", "2022-03-02T25:00",
                                 "2022-03-02T8:00", "2022-3-2T08:00", "02/03/2022 08:00"])
def test_impossible_times_are_errors_naming_the_row(tmp_path, bad):
    f = tmp_path / "s"
    _write(f, "subjects.csv", [["subject_id", "infusion_date"], ["A", "2022-03-01"]])
    _write(f, "observations.csv", [["subject_id", "datetime", "param", "value", "unit"],
                                   ["A", "2022-03-02T08:00", "TEMP", "37", "C"], ["A", bad, "TEMP", "38", "C"]])
    with pytest.raises(StudyValidationError) as exc:
        read_study(f)
    msg = str(exc.value)
    assert "observations.csv" in msg and "datetime" in msg and "row 2" in msg and bad in msg


def test_fhir_date_only_and_offset_times_on_the_calendar(tmp_path):
    """An external Bundle (no cartlab anchor): day 0 is the date of the CAR-T administration; a
    date-only lab on the next date is day 1 and a 00:30+01:00 reading is 00:30 of its own date."""
    def entry(res):
        return {"fullUrl": f"urn:uuid:{res['resourceType']}-{res['id']}", "resource": res}
    pat = {"resourceType": "Patient", "id": "p1"}
    car = {"resourceType": "MedicationAdministration", "id": "m1", "status": "completed",
           "medicationCodeableConcept": {"text": "tisagenlecleucel"}, "subject": {"reference": "Patient/p1"},
           "effectiveDateTime": "2024-03-01T23:00:00+01:00",
           "dosage": {"dose": {"value": 2e6, "unit": "cells/kg"}}}

    def crp(i, when):
        return {"resourceType": "Observation", "id": f"o{i}", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "1988-5"}]},
                "subject": {"reference": "Patient/p1"}, "effectiveDateTime": when,
                "valueQuantity": {"value": 10, "unit": "mg/L", "system": "http://unitsofmeasure.org", "code": "mg/L"}}
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [entry(pat), entry(car), entry(crp(1, "2024-03-02")), entry(crp(2, "2024-03-03T00:30:00+01:00"))]}
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bundle))
    s = read_fhir(path)
    assert s.doses["day"].to_list() == pytest.approx([23 / 24])
    assert sorted(s.observations["day"].to_list()) == pytest.approx([1.0, 2 + 0.5 / 24])


def test_a_cohort_given_in_date_times_analyses_like_the_same_cohort_in_days(tmp_path):
    """Metamorphic check: a synthetic cohort rewritten with date-times (each subject infused at its
    own hour, some with a UTC offset; every row at the calendar date and clock its day stands for)
    gives the same subject summary as the cohort in days."""
    from cartlab.analyze import Analysis, write_analysis
    from cartlab.datasets import synthetic_cohort

    days_dir = synthetic_cohort(30, seed=5, out_dir=tmp_path / "days")
    dt_dir = tmp_path / "datetimes"
    dt_dir.mkdir()
    subj = pl.read_csv(days_dir / "subjects.csv", infer_schema_length=None)
    ids = subj["subject_id"].to_list()
    d0 = {sid: datetime(2023, 1, 1) + timedelta(days=7 * i) for i, sid in enumerate(ids)}
    off = {sid: ["", "+02:00", "Z", "-05:00"][i % 4] for i, sid in enumerate(ids)}

    def stamp(sid, day):
        if day is None:
            return None
        return (d0[sid] + timedelta(days=day)).isoformat(timespec="seconds") + off[sid]

    subj.with_columns(
        pl.col("subject_id").map_elements(lambda s: (d0[s] + timedelta(hours=8 + ids.index(s) % 9)).isoformat()
                                          + off[s], return_dtype=pl.String).alias("infusion_datetime"),
        pl.lit(None, pl.String).alias("infusion_date"),
    ).write_csv(dt_dir / "subjects.csv")
    a = read_study(days_dir)  # every row's day, also for rows the generator gave as date-times
    for name, cols in (("doses", [("day", "datetime")]), ("observations", [("day", "datetime")]),
                       ("events", [("day", "datetime")]),
                       ("interventions", [("start_day", "start_datetime"), ("end_day", "end_datetime")])):
        df = pl.read_csv(days_dir / f"{name}.csv", infer_schema_length=None).with_row_index("src_row", offset=1)
        resolved = a.table(name).select("src_row", *[pl.col(c).alias(f"_{c}") for c, _ in cols])
        df = df.with_columns(pl.col("src_row").cast(pl.Int64)).join(resolved, on="src_row", how="left")
        for day_col, dt_col in cols:
            # a whole-number end_day is "some time that day" (spec: inclusive), which a date alone says; a
            # clock time of 00:00 would say the interval ended as the day began (session 38, review 38 A1)
            def conv(r, c=f"_{day_col}", end=day_col == "end_day"):
                v = r[c]
                if end and v is not None and float(v).is_integer():
                    return (d0[r["subject_id"]] + timedelta(days=v)).date().isoformat()
                return stamp(r["subject_id"], v)
            df = df.with_columns(pl.struct("subject_id", f"_{day_col}").map_elements(
                conv, return_dtype=pl.String, skip_nulls=False).alias(dt_col))
        df.drop("src_row", *[c for c, _ in cols], *[f"_{c}" for c, _ in cols], strict=False).write_csv(
            dt_dir / f"{name}.csv")

    b = read_study(dt_dir)
    assert b.observations["day"].to_list() == pytest.approx(a.observations["day"].to_list(), abs=1e-9)
    # the same days through FHIR and SDTM (their writers keep the clock; their readers share the rule)
    from cartlab.io.fhir import write_fhir_bundle
    from cartlab.io.sdtm import read_sdtm
    from cartlab.io.sdtm.writer import write_sdtm
    few = b.subset(ids[:4])  # one subject per offset convention
    via_fhir = read_fhir(write_fhir_bundle(few, tmp_path / "b.json"))
    write_sdtm(few, tmp_path / "sdtm")
    via_sdtm = read_sdtm(tmp_path / "sdtm")
    for other in (via_fhir, via_sdtm):
        for t, col in (("observations", "day"), ("doses", "day"), ("interventions", "start_day")):
            def days(st):
                return sorted((r[0], round(r[1], 6)) for r in st.table(t).select("subject_id", col).rows())
            assert days(other) == days(few)
    write_analysis(Analysis(a), tmp_path / "out_days")
    write_analysis(Analysis(b), tmp_path / "out_dt")
    sa = pl.read_csv(tmp_path / "out_days" / "subject_summary.csv", infer_schema_length=None)
    sb = pl.read_csv(tmp_path / "out_dt" / "subject_summary.csv", infer_schema_length=None)
    assert sa.columns == sb.columns
    from polars.testing import assert_frame_equal
    assert_frame_equal(sa, sb, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
