"""Session 34: the study folder reader against study-format.md v1 (review34_studyfmt findings).

Inputs are the review's probes (/work/notes/review34_studyfmt/p*.py); expected values are derived by
hand from the spec and the unit definitions (each says how), never from the reader's output.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from cartlab.io import read_study, validate_study
from cartlab.io.dictionary import load_dictionary
from cartlab.io.errors import StudyValidationError
from cartlab.units import UnitError

SUBJ = "subject_id,sex,age_years,disease,infusion_date\nS1,F,40,AML,2024-03-01\n"


def mk(root: Path, files: dict[str, str | bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        if isinstance(text, bytes):
            (root / name).write_bytes(text)
        else:
            (root / name).write_text(text, encoding="utf-8", newline="")
    return root


def errors_of(folder: Path) -> list[str]:
    with pytest.raises(StudyValidationError) as exc:
        read_study(folder)
    return [str(i) for i in exc.value.issues]


# --- A1: an empty unit on a % parameter is "unit missing" (spec: only MRDFCM's empty unit has a meaning)

def test_empty_unit_on_percent_params_is_unit_missing(tmp_path):
    # probe p12_emptyunit: 0.5 with no unit could be 50 % or 0.5 %; BMBLAST 0.5 read as 0.5 % made a
    # marrow with 50 % blasts CR-eligible
    obs = ("subject_id,day,param,analyte,value,unit,specimen\nS1,28,BMBLAST,,0.5,,BM\nS1,28,MOLVAF,NPM1,0.45,,BM\n"
           "S1,28,PBBLAST,,0.2,,PB\nS1,28,OXYSAT,,0.93,,PB\nS1,28,TGTBLAST,CD7,0.9,,BM\n")
    errs = errors_of(mk(tmp_path / "s", {"subjects.csv": SUBJ, "observations.csv": obs}))
    assert len(errs) == 5
    for row, code in enumerate(["BMBLAST", "MOLVAF", "PBBLAST", "OXYSAT", "TGTBLAST"], start=1):
        assert any(f"row {row} (line {row + 1}), column 'unit': unit missing: {code} needs a unit" in e
                   for e in errs), code


def test_percent_params_have_no_empty_unit_but_mrdfcm_keeps_fraction():
    d = load_dictionary()
    for code in ("PBBLAST", "OXYSAT", "BMBLAST", "BMCELL", "TGTBLAST", "MOLVAF", "MOLAR", "FISHPCT", "FUSION"):
        with pytest.raises(UnitError, match="unit missing"):
            d[code].conversion_from("")
        # a fraction written as such converts: 1 fraction = 100 % (definition of per cent)
        assert d[code].conversion_from("fraction").scale == pytest.approx(100.0)
    assert d["MRDFCM"].conversion_from("").scale == 1.0  # spec: "an empty unit also means fraction"


# --- A3: identical administrations are all read

def test_identical_doses_and_interventions_are_each_an_administration(tmp_path):
    # probe p05c_dups: a split CAR-T bag (2 x 5e5 cells/kg) and two platelet units on day 5
    doses = "subject_id,day,agent,dose,unit\nS1,0,CAR-T,5e5,cells/kg\nS1,0,CAR-T,5e5,cells/kg\n"
    iv = "subject_id,start_day,category\nS1,5,platelet_transfusion\nS1,5,platelet_transfusion\n"
    obs = "subject_id,day,param,value,unit\nS1,1,NEUT,0.5,10^9/L\nS1,1,NEUT,0.5,10^9/L\n"
    s = read_study(mk(tmp_path / "s", {"subjects.csv": SUBJ, "doses.csv": doses, "interventions.csv": iv,
                                       "observations.csv": obs}))
    assert s.doses["dose"].to_list() == [5e5, 5e5]  # total 1e6 cells/kg, not 5e5
    assert s.interventions["start_day"].to_list() == [5.0, 5.0]
    assert s.observations.height == 1  # the same measurement exported twice is still read once
    w = [str(i) for i in s.warnings]
    assert any("doses.csv, rows 1, 2" in x and "2 identical administrations on day 0" in x and "read as 2" in x
               and "bag_id" in x for x in w)
    assert any("interventions.csv, rows 1, 2" in x and "2 identical administrations on day 5" in x for x in w)


# --- A4: "ends before it starts" compares calendar days

def test_end_on_the_start_calendar_day_is_read(tmp_path):
    # probe p05d_end, row 1: oxygen from 10:00 on 3 March, ending "2024-03-03" (date only)
    iv = ("subject_id,start_day,end_day,start_datetime,end_datetime,category,o2_device\n"
          "S1,,,2024-03-03T10:00,2024-03-03,oxygen,nasal_cannula\nS1,2.5,2,,,corticosteroid,\n")
    s = read_study(mk(tmp_path / "s", {"subjects.csv": SUBJ, "interventions.csv": iv}))
    # day 0 = 1 March: 3 March 10:00 is day 2 + 10/24; the date-only end is day 2
    assert s.interventions["start_day"].to_list() == pytest.approx([2 + 10 / 24, 2.5])
    assert s.interventions["end_day"].to_list() == [2.0, 2.0]


def test_end_before_start_still_refused(tmp_path):
    iv = ("subject_id,start_day,end_day,start_datetime,end_datetime,category\n"
          "S1,,,2024-03-03T10:00,2024-03-03T09:00,corticosteroid\n"  # both timed, 09:00 < 10:00
          "S1,2.5,2.25,,,corticosteroid\n"                          # both fractional
          "S1,3,2,,,corticosteroid\n"                                # an earlier calendar day
          "S1,2.5,2,,,corticosteroid\n")                             # same day, end untimed: read
    errs = errors_of(mk(tmp_path / "s", {"subjects.csv": SUBJ, "interventions.csv": iv}))
    assert errs == ["interventions.csv, rows 1, 2, 3, column 'end_day': the intervention ends before it starts"]


def test_vasopressor_untimed_end_on_a_timed_start_day_is_read_and_graded(tmp_path):
    """Lead, session 34: the exception for vasopressors is lifted. Norepinephrine from day 2.5 (noon)
    with an end of day 2 without a time ended between noon and the end of day 2, never before its
    start: the study is read, and the older scales' vasopressor course bounds are start 2.5,
    end between 2.5 and 3.0 (bounds reading: an untimed end covers its whole calendar day)."""
    from cartlab.grading.crs_vaso_course import _time_bounds

    iv = "subject_id,start_day,end_day,category,agent\nS1,2.5,2,vasopressor,norepinephrine\n"
    s = read_study(mk(tmp_path / "s", {"subjects.csv": SUBJ, "interventions.csv": iv}))
    b = s.interventions.select(_time_bounds("bounds")).row(0, named=True)
    assert (b["s_lo"], b["s_hi"], b["e_lo"], b["e_hi"]) == (2.5, 2.5, 2.5, 3.0)
    from cartlab.grading.crs_legacy import derive_crs_legacy_daily

    derive_crs_legacy_daily(s)  # no "end_day is before start_day" error (it raised before)


# --- A5: a fractional day with a date-only datetime on the same date

def test_fractional_day_with_a_date_on_its_calendar_day(tmp_path):
    # probe p13_both: 15 March is day 14 after a 1 March infusion; 14.5 is noon of that day
    obs = "subject_id,day,datetime,param,value,unit\nS1,14.5,2024-03-15,NEUT,1,10^9/L\n"
    s = read_study(mk(tmp_path / "s", {"subjects.csv": SUBJ, "observations.csv": obs}))
    assert s.observations["day"].to_list() == [14.5]
    obs = "subject_id,day,datetime,param,value,unit\nS1,14.5,2024-03-16,NEUT,1,10^9/L\n"  # day 15: disagrees
    errs = errors_of(mk(tmp_path / "t", {"subjects.csv": SUBJ, "observations.csv": obs}))
    assert len(errs) == 1 and "day 14.5 disagrees with datetime 2024-03-16" in errs[0]


# --- A2: the decimal-comma sniffer looks at numeric columns only, and not at all in comma files

def test_quoted_thousands_in_free_text_is_read(tmp_path):
    ev = 'subject_id,day,event,detail\nS1,3,infection,"CMV 1,000"\nS1,4,infection,"1,000"\n'  # probe p05b
    s = read_study(mk(tmp_path / "s", {"subjects.csv": SUBJ, "events.csv": ev}))
    assert s.events["detail"].to_list() == ["CMV 1,000", "1,000"]


def test_quoted_decimal_comma_in_a_comma_file_is_a_row_error(tmp_path):
    obs = 'subject_id,day,param,value,unit\nS1,1,NEUT,"0,5",10^9/L\n'
    errs = errors_of(mk(tmp_path / "s", {"subjects.csv": SUBJ, "observations.csv": obs}))
    assert len(errs) == 1 and errs[0].startswith("observations.csv, row 1 (line 2), column 'value': value must be")
    assert "decimal comma" in errs[0]


def test_semicolon_decimal_commas_name_row_and_column(tmp_path):
    ev = "subject_id;day;event;detail\nS1;1;infection;x\nS1;2,5;infection;y\n"
    errs = errors_of(mk(tmp_path / "s", {"subjects.csv": SUBJ, "events.csv": ev}))
    assert len(errs) == 1 and "row 2, column 'day': '2,5'" in errs[0] and "--csv-dialect european" in errs[0]


# --- A6: dose_unit is kept with a warning; all-caps spellings of a param's own units

def test_unknown_intervention_dose_unit_is_a_warning(tmp_path):
    iv = "subject_id,start_day,category,agent,dose,dose_unit\nS1,1,antipyretic,paracetamol,1,tablet\n"
    s = read_study(mk(tmp_path / "s", {"subjects.csv": SUBJ, "interventions.csv": iv}))
    assert s.interventions["dose_unit"].to_list() == ["tablet"]
    assert any("interventions.csv, row 1" in str(w) and "'dose_unit'" in str(w) and "tablet" in str(w)
               for w in s.warnings)


def test_all_caps_unit_spellings(tmp_path):
    obs = ("subject_id,day,param,value,unit\nS1,1,CRP,5,MG/DL\nS1,2,CRP,7,MG/L\nS1,1,NEUT,500,/UL\n"
           "S1,1,SYSBP,85,MMHG\nS1,1,TEMP,100.4,f\nS1,1,HGB,5,MMOL/L\nS1,1,FERRITIN,300,NG/ML\n")
    s = read_study(mk(tmp_path / "s", {"subjects.csv": SUBJ, "observations.csv": obs}))
    got = dict(zip(s.observations["param"] + s.observations["day"].cast(pl.String),
                   s.observations["value"]))
    # 1 mg/dL = 10 mg/L; MG/L is mg/L (never megagauss per litre); 500/uL = 0.5 10^9/L;
    # (100.4 - 32) x 5/9 = 38.0 C; HGB 1 mmol/L (monomer) = 16.1145 g/L; 1 ng/mL = 1 ug/L
    assert got == pytest.approx({"CRP1.0": 50.0, "CRP2.0": 7.0, "NEUT1.0": 0.5, "SYSBP1.0": 85.0,
                                 "TEMP1.0": 38.0, "HGB1.0": 80.5725, "FERRITIN1.0": 300.0})


def test_casefold_matches_one_accepted_spelling_only():
    from cartlab.units import casefold_spelling

    assert casefold_spelling("MG/DL", ("mg/L", "mg/dL")) == "mg/dL"
    assert casefold_spelling("MG", ("mg", "Mg")) is None  # two spellings differ only in case: no guess
    with pytest.raises(UnitError):
        load_dictionary()["NEUT"].conversion_from("GIGA/L")  # not a spelling NEUT accepts


# --- B1: Parquet NaN is missing; a whole float id is the integer text

def test_parquet_nan_and_float_ids(tmp_path):
    d = mk(tmp_path / "s", {"observations.csv": "subject_id,day,param,value,value_text,unit\n"
                                                 "101,1,NEUT,1,,10^9/L\n"})
    pl.DataFrame({"subject_id": [101.0, 102.0], "infusion_date": ["2024-03-01"] * 2}).write_parquet(d / "subjects.parquet")
    s = read_study(d)  # probe p11c_pq_float: "unknown subject '101'" before
    assert s.subjects["subject_id"].to_list() == ["101", "102"]
    e = mk(tmp_path / "e", {"subjects.csv": SUBJ})
    pl.DataFrame({"subject_id": ["S1"], "day": [2], "param": ["NEUT"], "value": [float("nan")],
                  "value_text": ["<0.1"], "unit": ["10^9/L"]}).write_parquet(e / "observations.parquet")
    s = read_study(e)  # probe p04b: "value must be a number, got 'NaN'" before
    assert s.observations["censor_limit"].to_list() == [0.1] and s.observations["value"].to_list() == [None]


# --- B2: line numbers

def test_line_after_a_multiline_cell_and_none_for_parquet(tmp_path):
    ev = 'subject_id,day,event,detail\nS1,1,infection,"line one\nline two"\nS1,2,infection,x\nS1,abc,infection,y\n'
    errs = errors_of(mk(tmp_path / "s", {"subjects.csv": SUBJ, "events.csv": ev}))  # probe p10c
    assert errs == ["events.csv, row 3 (line 5), column 'day': day must be a number, got 'abc'"]
    e = mk(tmp_path / "e", {"subjects.csv": SUBJ})
    pl.DataFrame({"subject_id": ["S1"], "day": ["x"], "param": ["NEUT"], "value": [1.0],
                  "unit": ["10^9/L"]}).write_parquet(e / "observations.parquet")
    errs = errors_of(e)
    assert errs == ["observations.parquet, row 1, column 'day': day must be a number, got 'x'"]


# --- B3: CR-only line endings

def test_cr_only_line_endings(tmp_path):
    d = mk(tmp_path / "s", {"subjects.csv": "subject_id,infusion_date\rS1,2024-03-01\rS2,2024-03-02"})  # p10g
    assert read_study(d).subjects["subject_id"].to_list() == ["S1", "S2"]


# --- B4: ND is a below-detection result

def test_not_detected_hint(tmp_path):
    obs = ("subject_id,day,param,value_text,unit,lloq\nS1,1,CARCOPY,ND,copies/ug gDNA,\n"
           "S1,2,CARCOPY,not detected,copies/ug gDNA,\n")  # probe p11a_nd
    errs = errors_of(mk(tmp_path / "s", {"subjects.csv": SUBJ, "observations.csv": obs}))
    assert len(errs) == 2
    for e in errs:
        assert "below-detection result" in e and "'<50'" in e and "BLQ" in e
        assert "leave the cell empty" not in e
    obs = "subject_id,day,param,value,unit\nS1,1,CARCOPY,ND,copies/ug gDNA\n"
    errs = errors_of(mk(tmp_path / "t", {"subjects.csv": SUBJ, "observations.csv": obs}))
    assert len(errs) == 1 and "below-detection result" in errs[0] and "leave the cell empty" not in errs[0]


# --- C1: an empty header name says which column

def test_empty_header_name_gives_its_position(tmp_path):
    d = mk(tmp_path / "s", {"subjects.csv": "subject_id,infusion_date,\nS1,2024-03-01,\n"})  # probe p06c
    issues = [str(i) for i in validate_study(d) if i.severity == "error"]
    assert len(issues) == 1 and "column 3 of 3 has an empty name" in issues[0]
