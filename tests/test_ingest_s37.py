"""Session 37: the study folder reader against review 37 (/work/notes/review37_ingest/REPORT.md).

Inputs are the review's probes (quoted in each test); expected values are derived by hand from
study-format.md v1 and the unit definitions (each test says how), never from the reader's output.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartlab.io import read_study, validate_study
from cartlab.io.clock import iso_date
from cartlab.io.dictionary import load_dictionary
from cartlab.io.errors import StudyValidationError
from cartlab.units import conversion

SUBJ = "subject_id,sex,age_years,disease,infusion_date\nS1,F,40,AML,2024-03-01\n"


def mk(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8", newline="")
    return root


def errors_of(folder: Path, **kw) -> list[str]:
    with pytest.raises(StudyValidationError) as exc:
        read_study(folder, **kw)
    return [str(i) for i in exc.value.issues]


def warnings_of(folder: Path) -> list[str]:
    return [str(i) for i in validate_study(folder) if i.severity == "warning"]


# --- A1: a date column is an ISO 8601 calendar date (YYYY-MM-DD), the anchor's own rule

def test_one_digit_infusion_date_is_refused_with_row_and_column(tmp_path):
    # probe p18: spec "Time": datetime is "ISO 8601"; ISO 8601 extended calendar dates have two-digit
    # months and days (YYYY-MM-DD), so '2024-3-1' is not one. Before: "valid", and both TEMP rows
    # (and the CAR-T dose) had day = null with no message, the CRS grade empty.
    folder = mk(tmp_path / "s", {
        "subjects.csv": "subject_id,disease,infusion_date\nS1,AML,2024-3-1\n",
        "observations.csv": "subject_id,day,datetime,param,value,unit\nS1,,2024-03-02,TEMP,39.5,C\n"
                            "S1,,2024-03-03,TEMP,39.0,C\n",
    })
    errs = errors_of(folder)
    assert errs == ["subjects.csv, row 1 (line 2), column 'infusion_date': infusion_date must be an ISO 8601 "
                    "date (YYYY-MM-DD), got '2024-3-1'"]


def test_two_digit_infusion_date_places_rows_on_their_days(tmp_path):
    # the same study written YYYY-MM-DD: 2024-03-02 and 2024-03-03 minus 2024-03-01 = days 1 and 2
    folder = mk(tmp_path / "s", {
        "subjects.csv": "subject_id,disease,infusion_date\nS1,AML,2024-03-01\n",
        "observations.csv": "subject_id,day,datetime,param,value,unit\nS1,,2024-03-02,TEMP,39.5,C\n"
                            "S1,,2024-03-03,TEMP,39.0,C\n",
    })
    assert read_study(folder).observations["day"].to_list() == [1.0, 2.0]


@settings(max_examples=60, deadline=None)
@given(y=st.integers(1900, 2100), m=st.integers(1, 12), d=st.integers(1, 28))
def test_iso_date_takes_two_digit_fields_only(y, m, d):
    # ISO 8601 calendar date, extended format: YYYY-MM-DD, every field zero-padded
    padded, loose = f"{y:04d}-{m:02d}-{d:02d}", f"{y}-{m}-{d}"
    out = pl.DataFrame({"t": [padded, loose]}).select(iso_date(pl.col("t")))["t"].to_list()
    assert str(out[0]) == padded
    assert out[1] is None or loose == padded  # '2024-3-1' is refused; '2024-10-11' is both


# --- A2: european dialect, a decimal point in a censored bound is ambiguous

def test_european_censored_bound_with_point_is_an_error(tmp_path):
    # probe p33: "<1.000" in a decimal-comma file is one thousand (thousands separator) or one: the
    # value column refuses "1.000" for the same reason; before, it was read as <1 /uL (x1000 off)
    folder = mk(tmp_path / "s", {
        "subjects.csv": "subject_id;disease;infusion_date\nS1;AML;2024-03-01\n",
        "observations.csv": "subject_id;day;param;value;value_text;unit\nS1;2;NEUT;;<1.000;/uL\n",
    })
    errs = errors_of(folder, csv_dialect="european")
    assert len(errs) == 1
    assert errs[0].startswith("observations.csv, row 1 (line 2), column 'value_text': value_text '<1.000' has a "
                              "decimal point")


def test_european_censored_bound_with_comma_still_reads(tmp_path):
    # "<0,5" in a decimal-comma file is 0.5 copies/ug = 500 copies/ug... kept in its unit: the bound 0.5
    # in copies/ug; CARCOPY's canonical unit is copies/ug (dictionary), so the limit is 0.5
    folder = mk(tmp_path / "s", {
        "subjects.csv": "subject_id;disease;infusion_date\nS1;AML;2024-03-01\n",
        "observations.csv": "subject_id;day;param;value;value_text;unit\nS1;2;CARCOPY;;<0,5;copies/ug\n",
    })
    obs = read_study(folder, csv_dialect="european").observations
    assert obs["censor_limit"].to_list() == [0.5]


def test_european_value_with_point_and_comma_is_one_message(tmp_path):
    # review 37 C1: "1.000,5" gave two errors on one cell ("decimal point" and "must be a number")
    folder = mk(tmp_path / "s", {
        "subjects.csv": "subject_id;disease;infusion_date\nS1;AML;2024-03-01\n",
        "observations.csv": "subject_id;day;param;value;unit\nS1;2;NEUT;1.000,5;/uL\n",
    })
    errs = errors_of(folder, csv_dialect="european")
    assert len(errs) == 1 and "has a decimal point" in errs[0] and "column 'value'" in errs[0]


# --- B1: Parquet list columns

def test_parquet_list_column_in_spec_column_is_named(tmp_path):
    # probe p22: events.parquet with day = [[1, 2]]: before "internal error: InvalidOperationError"
    folder = mk(tmp_path / "s", {"subjects.csv": SUBJ})
    pl.DataFrame({"subject_id": ["S1"], "day": [[1, 2]], "event": ["relapse"]}).write_parquet(folder / "events.parquet")
    errs = errors_of(folder)
    assert len(errs) == 1
    assert errs[0].startswith("events.parquet, header, column 'day': a list column")


def test_parquet_list_extra_column_is_kept_as_json(tmp_path):
    # spec: "Unknown extra columns are kept and passed through": a list [1, 2] is kept as its JSON text
    folder = mk(tmp_path / "s", {"subjects.csv": SUBJ})
    pl.DataFrame({"subject_id": ["S1"], "day": [20.0], "event": ["relapse"],
                  "tags": [["a", "b"]]}).write_parquet(folder / "events.parquet")
    ev = read_study(folder).events
    assert ev["extra"].to_list() == ['{"tags":"[\\"a\\",\\"b\\"]"}']


# --- B2: a user column named like an internal one

def test_user_column_named_row_is_kept(tmp_path):
    # review 37 B2: a column '__row' crashed the reader ("internal error: SchemaError"); the spec keeps
    # unknown extra columns, so it is read and passed through as written
    folder = mk(tmp_path / "s", {
        "subjects.csv": SUBJ,
        "observations.csv": "subject_id,day,param,value,unit,__row,__anchor\nS1,1,NEUT,0.3,10^9/L,x,y\n",
    })
    obs = read_study(folder).observations
    assert obs["extra"].to_list() == ['{"__row":"x","__anchor":"y"}']
    assert obs["day"].to_list() == [1.0]  # 1, as written (not moved by a user '__anchor')


# --- B3: ids equal after Unicode NFC normalisation

def test_nfd_subject_id_names_both_spellings(tmp_path):
    # probe p08: subjects 'José-1' (NFC, U+00E9), observations the NFD spelling (e + U+0301)
    nfc, nfd = "José-1", unicodedata.normalize("NFD", "José-1")
    assert nfc != nfd
    folder = mk(tmp_path / "s", {
        "subjects.csv": f"subject_id,disease,infusion_date\n{nfc},AML,2024-03-01\n",
        "observations.csv": f"subject_id,day,param,value,unit\n{nfd},1,NEUT,0.3,10^9/L\n",
    })
    errs = errors_of(folder)
    assert len(errs) == 1
    assert "Jose<U+0301>-1" in errs[0] and "Jos<U+00E9>-1" in errs[0] and "Unicode normalisation" in errs[0]


def test_two_subject_ids_equal_after_nfc_are_an_error(tmp_path):
    nfc, nfd = "José-1", unicodedata.normalize("NFD", "José-1")
    folder = mk(tmp_path / "s", {"subjects.csv": f"subject_id,disease\n{nfc},AML\n{nfd},AML\n"})
    errs = errors_of(folder)
    assert len(errs) == 1 and errs[0].startswith("subjects.csv, rows 1, 2, column 'subject_id': subject ids")


# --- B5: subjects without rows

def test_header_only_subjects_is_an_error(tmp_path):
    # probe p11b: "subject_id,sex" and no row: nothing to analyse
    errs = errors_of(mk(tmp_path / "s", {"subjects.csv": "subject_id,sex\n"}))
    assert len(errs) == 1 and errs[0].startswith("subjects.csv, file: no subject rows")


# --- B4: mixed UTC offsets in one subject

def test_mixed_utc_offsets_warn_naming_subject_and_rows(tmp_path):
    # probe p37: infusion +01:00, readings Z and -05:00: three offsets in one subject
    folder = mk(tmp_path / "s", {
        "subjects.csv": "subject_id,disease,infusion_datetime\nS1,AML,2024-03-01T10:00+01:00\n"
                        "S2,AML,2024-03-01T10:00+01:00\n",
        "observations.csv": "subject_id,day,datetime,param,value,unit\nS1,,2024-03-01T09:30Z,CARCOPY,500,copies/ug\n"
                            "S1,,2024-03-01T23:30-05:00,TEMP,38.4,C\nS2,,2024-03-02T08:00+0100,TEMP,37,C\n",
    })
    warn = [w for w in warnings_of(folder) if "UTC offsets" in w]
    assert len(warn) == 2  # S1 in subjects.csv and in observations.csv; S2 has +01:00 only (+0100 = +01:00)
    assert warn[0].startswith("subjects.csv, row 1 (line 2): subject 'S1'")
    assert warn[1].startswith("observations.csv, rows 1, 2: subject 'S1'")
    assert "+00:00 in observations.csv row 1" in warn[0] and "-05:00 in observations.csv row 2" in warn[0]
    # the documented rule is kept: offsets not applied, 23:30 on 1 March is day 0 + 23.5 h = 0.979167
    obs = read_study(folder).observations
    assert obs["day"][1] == pytest.approx(23.5 / 24)


# --- B7: last_followup_day against the subject's rows

def test_last_followup_before_later_rows_and_negative_warn(tmp_path):
    # probe p42: S1 follow-up day 10 with NEUT on day 30 and relapse on day 20; S2 follow-up day -5
    folder = mk(tmp_path / "s", {
        "subjects.csv": "subject_id,disease,infusion_date,last_followup_day\nS1,AML,2024-03-01,10\n"
                        "S2,AML,2024-03-01,-5\nS3,AML,2024-03-01,40\n",
        "observations.csv": "subject_id,day,param,value,unit\nS1,30,NEUT,0.3,10^9/L\nS2,1,NEUT,2,10^9/L\n"
                            "S3,40.5,NEUT,2,10^9/L\n",
        "events.csv": "subject_id,day,event\nS1,20,relapse\nS3,50,death\n",
    })
    warn = [w for w in warnings_of(folder) if "last_followup_day" in w]
    assert any(w.startswith("subjects.csv, row 2 (line 3), column 'last_followup_day': subject 'S2': "
                            "last_followup_day -5 is before day 0") for w in warn)
    assert any(w.startswith("observations.csv, row 1 (line 2), column 'day': subject 'S1'") and "day 30" in w
               for w in warn)
    assert any(w.startswith("events.csv, row 1 (line 2), column 'day': subject 'S1'") and "day 20" in w
               for w in warn)
    # S3: day 40.5 is on calendar day 40 (not after 40); a death after follow-up is no contradiction
    assert not any("'S3'" in w for w in warn)
    assert len(warn) == 4  # S2 negative + S2 row day 1 + S1 observations + S1 events


# --- B6: unit spellings, factors by hand

@pytest.mark.parametrize("param,unit,scale,offset", [
    ("TEMP", "Cel", 1.0, 0.0),        # UCUM Cel = degree Celsius, TEMP's unit
    ("SYSBP", "mm[Hg]", 1.0, 0.0),    # UCUM mm[Hg] = mmHg
    ("PLAT", "K/mm3", 1.0, 0.0),      # 10^3/mm3 = 10^3/uL = 10^3 x 10^6/L = 10^9/L
    ("ALT", "UI/L", 1.0, 0.0),        # UI = unité internationale = IU; 1 IU/L = 1 U/L (dictionary)
    ("HR", "min-1", 1.0, 0.0),        # min-1 = 1/min = beats/min (a beat is a count)
])
def test_new_unit_spellings_convert(param, unit, scale, offset):
    c = load_dictionary()[param].conversion_from(unit)
    assert c.scale == pytest.approx(scale) and c.offset == pytest.approx(offset)


def test_new_unit_spellings_factors_by_hand():
    # degF = degC x 9/5 + 32; 10^3/mm3 in /uL: 1 mm3 = 1 uL, so x1000; mm[Hg] to kPa: 133.322 Pa
    c = conversion("Cel", "degF")
    assert (c.scale, c.offset) == (pytest.approx(1.8), pytest.approx(32.0))
    assert conversion("K/mm3", "1/uL").scale == pytest.approx(1000.0)
    assert conversion("mm[Hg]", "kPa").scale == pytest.approx(0.133322, rel=1e-5)
    assert conversion("min-1", "1/h").scale == pytest.approx(60.0)


# --- C1: an alias of a param is named with its code

def test_unknown_param_alias_names_the_code(tmp_path):
    # params_v1.yaml lists ANC as an alias of NEUT and PLT of PLAT (read by cartlab ctcae)
    folder = mk(tmp_path / "s", {
        "subjects.csv": SUBJ,
        "observations.csv": "subject_id,day,param,value,unit\nS1,1,ANC,0.3,10^9/L\nS1,1,plt,30,10^9/L\n",
    })
    errs = errors_of(folder)
    assert "write NEUT" in errs[0] and "'ANC'" in errs[0]
    assert "write PLAT" in errs[1] and "'PLT'" in errs[1]
