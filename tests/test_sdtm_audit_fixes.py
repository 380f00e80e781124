"""SDTM import audit fixes (interop audit H1, M1-M5, L2, L4, L5): small hand-written SDTM CSV
folders; every expected value is worked out by hand in the comments.

Day 0 in these folders: subject T1-001 gets it from its CAR-T exposure in EX (2021-05-10), subject
T1-002 from DM.RFXSTDTC (2021-06-07).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from cartlab.cli import app
from cartlab.errors import InputError
from cartlab.io.sdtm import read_sdtm

DM = """STUDYID,DOMAIN,USUBJID,RFXSTDTC,AGE,AGEU,SEX
T1,DM,T1-001,,54,YEARS,M
T1,DM,T1-002,2021-06-07,7,YEARS,F
"""
EX = """STUDYID,DOMAIN,USUBJID,EXSEQ,EXTRT,EXDOSE,EXDOSU,EXSTDTC
T1,EX,T1-001,1,TISAGENLECLEUCEL,2,10^6 cells/kg,2021-05-10T14:00
"""
LBH = "STUDYID,DOMAIN,USUBJID,LBSEQ,LBTESTCD,LBORRES,LBORRESU,LBSTRESC,LBSTRESN,LBSTRESU,LBSTNRLO,LBSTNRHI,LBDTC\n"


def sdtm(tmp_path: Path, **files: str) -> Path:
    """A folder with dm.csv and ex.csv (unless given) and the files given (name -> CSV text)."""
    d = tmp_path / "sdtm"
    d.mkdir()
    for name, text in {"dm": DM, "ex": EX, **files}.items():
        (d / f"{name}.csv").write_text(text, encoding="utf-8")
    return d


def rows(df: pl.DataFrame, src_file: str) -> list[int]:
    return sorted(df.filter(pl.col("src_file") == src_file)["src_row"].to_list())


# ---------------------------------------------------------------------------------------------
# H1: a QS item code is not the ICE total


def test_ice_item_codes_are_not_the_ice_total(tmp_path):
    qs = """STUDYID,DOMAIN,USUBJID,QSSEQ,QSCAT,QSTESTCD,QSTEST,QSORRES,QSSTRESC,QSSTRESN,QSDTC
T1,QS,T1-001,1,ICE,ICE01,ICE1-Orientation,4,4,4,2021-05-15T09:00
T1,QS,T1-001,2,ICE,ICE02,ICE1-Naming,3,3,3,2021-05-15T09:00
T1,QS,T1-001,3,ICE,ICE03,ICE1-Following Commands,1,1,1,2021-05-15T09:00
T1,QS,T1-001,4,ICE,ICE04,ICE1-Writing,1,1,1,2021-05-15T09:00
T1,QS,T1-001,5,ICE,ICE05,ICE1-Attention,1,1,1,2021-05-15T09:00
T1,QS,T1-001,6,ICE,ICETOT,ICE1-Total Score,10,10,10,2021-05-15T09:00
T1,QS,T1-001,7,ICE,ICE,ICE Total Score,8,8,8,2021-05-16T09:00
"""
    imp = read_sdtm(sdtm(tmp_path, qs=qs), report=True)
    ice = imp.study.observations.filter(pl.col("param") == "ICE").sort("src_row")
    # only the totals: ICETOT 10 (record 6, day 5 + 9/24) and ICE 8 (record 7, day 6 + 9/24); the
    # item score 4 of ICE01 is no ICE score
    assert ice["src_row"].to_list() == [6, 7]
    assert ice["value"].to_list() == [10.0, 8.0]
    assert ice["day"].to_list() == pytest.approx([5 + 9 / 24, 6 + 9 / 24])
    rep = imp.report.filter(pl.col("file") == "qs.csv")
    items = rep.filter(pl.col("code").is_in(["ICE01", "ICE02", "ICE03", "ICE04", "ICE05"]))
    assert items.height == 5
    assert set(items["reason"]) == {"an item of the ICE, not its total"}
    assert items["n_skipped"].to_list() == [1] * 5 and items["n_mapped"].to_list() == [0] * 5


# ---------------------------------------------------------------------------------------------
# M1 / M2: upper-case CDISC unit spellings


def test_upper_case_dose_units_are_read_through_the_units_table(tmp_path):
    ex = """STUDYID,DOMAIN,USUBJID,EXSEQ,EXTRT,EXDOSE,EXDOSU,EXSTDTC
T1,EX,T1-001,1,FLUDARABINE,30,MG/M2,2021-05-05
T1,EX,T1-001,2,TISAGENLECLEUCEL,2000000,CELLS/KG,2021-05-10T14:00
T1,EX,T1-002,1,TISAGENLECLEUCEL,1.5,10^8 CELLS,2021-06-07T10:30
T1,EX,T1-002,2,CYCLOPHOSPHAMIDE,500,MG,2021-06-02
"""
    imp = read_sdtm(sdtm(tmp_path, ex=ex), report=True)
    doses = imp.study.doses.sort("src_row", "subject_id")
    got = {r["src_row"]: (r["subject_id"], r["agent"], r["dose"], r["unit"], r["orig_dose"], r["orig_unit"], r["day"])
           for r in doses.iter_rows(named=True)}
    assert got == {
        1: ("T1-001", "fludarabine", 30.0, "mg/m2", 30.0, "mg/m2", -5.0),        # 2021-05-05 - 05-10
        2: ("T1-001", "TISAGENLECLEUCEL", 2e6, "cells/kg", 2e6, "cells/kg", pytest.approx(14 / 24)),
        3: ("T1-002", "TISAGENLECLEUCEL", 1.5e8, "cells", 1.5, "10^8 cells", pytest.approx(10.5 / 24)),
        4: ("T1-002", "cyclophosphamide", 500.0, "mg", 500.0, "mg", -5.0),     # 2021-06-02 - 06-07
    }
    assert imp.report.filter(pl.col("file") == "ex.csv")["n_skipped"].sum() == 0
    # day 0 of T1-001 from its (now read) CAR-T dose
    assert imp.study.subjects.filter(pl.col("subject_id") == "T1-001")["infusion_date"].item() == "2021-05-10"


def test_upper_case_lab_units_g_dl_and_mg_dl(tmp_path):
    lb = LBH + """T1,LB,T1-001,1,HGB,10.2,G/DL,10.2,10.2,G/DL,12,16,2021-05-11
T1,LB,T1-001,2,CRP,1.5,MG/DL,1.5,1.5,MG/DL,,0.5,2021-05-11
"""
    obs = read_sdtm(sdtm(tmp_path, lb=lb)).observations.sort("src_row")
    # HGB 10.2 g/dL = 102 g/L, range 12-16 g/dL = 120-160 g/L; CRP 1.5 mg/dL = 15 mg/L, ULN 5 mg/L
    assert obs.select("param", "value", "unit", "lln", "uln", "orig_value", "orig_unit").rows() == [
        ("HGB", 102.0, "g/L", 120.0, 160.0, 10.2, "g/dL"),
        ("CRP", 15.0, "mg/L", None, 5.0, 1.5, "mg/dL"),
    ]


def test_other_upper_case_lab_units_of_the_dictionary(tmp_path):
    # CREAT 88.4 UMOL/L is 88.4 umol/L (canonical); IL6 12 PG/ML is 12 pg/mL; FERRITIN 500 NG/ML is
    # 500 ug/L (1 ng/mL = 1 ug/L); CRP 15 MG/L is 15 mg/L
    lb = LBH + """T1,LB,T1-001,1,CREAT,88.4,UMOL/L,88.4,88.4,UMOL/L,,,2021-05-11
T1,LB,T1-001,2,IL6,12,PG/ML,12,12,PG/ML,,,2021-05-11
T1,LB,T1-001,3,FERRITIN,500,NG/ML,500,500,NG/ML,,,2021-05-11
T1,LB,T1-001,4,CRP,15,MG/L,15,15,MG/L,,,2021-05-11
"""
    obs = read_sdtm(sdtm(tmp_path, lb=lb)).observations.sort("src_row")
    assert obs.select("param", "value", "unit").rows() == [
        ("CREAT", 88.4, "umol/L"), ("IL6", 12.0, "pg/mL"), ("FERRITIN", 500.0, "ug/L"), ("CRP", 15.0, "mg/L")]


# ---------------------------------------------------------------------------------------------
# M3: a number given only in --STRESC


def test_numeric_stresc_is_the_value(tmp_path):
    lb = LBH + """T1,LB,T1-001,1,WBC,1.2,10^9/L,1.2,,10^9/L,,,2021-05-11
T1,LB,T1-001,2,CRP,.5,mg/L,.5,,mg/L,,,2021-05-11
T1,LB,T1-001,3,IL6,<2,pg/mL,<2,,pg/mL,,,2021-05-12
"""
    obs = read_sdtm(sdtm(tmp_path, lb=lb)).observations.sort("src_row")
    assert obs.select("param", "value", "value_text", "unit", "censor", "censor_limit").rows() == [
        ("WBC", 1.2, None, "10^9/L", None, None),
        ("CRP", 0.5, None, "mg/L", None, None),
        ("IL6", None, "<2", "pg/mL", "<", 2.0),  # the censored form stays text
    ]


# ---------------------------------------------------------------------------------------------
# M4: duplicates and conflicts, by the study folder's rule


def test_exact_duplicate_records_are_dropped_with_a_warning(tmp_path):
    lb = """STUDYID,DOMAIN,USUBJID,LBSEQ,LBTESTCD,LBSTRESC,LBSTRESN,LBSTRESU,VISIT,LBDTC
T1,LB,T1-001,1,CRP,10,10,mg/L,DAY 2,2021-05-12
T1,LB,T1-001,1,CRP,10,10,mg/L,DAY 2,2021-05-12
T1,LB,T1-001,3,CRP,10,10,mg/L,UNSCHEDULED,2021-05-12
"""
    vs = """STUDYID,DOMAIN,USUBJID,VSSEQ,VSTESTCD,VSSTRESC,VSSTRESN,VSSTRESU,VSDTC
T1,VS,T1-001,1,TEMP,38.4,38.4,C,2021-05-12T02:00
T1,VS,T1-001,2,TEMP,38.4,38.4,C,2021-05-12T02:00
"""
    imp = read_sdtm(sdtm(tmp_path, lb=lb, vs=vs), report=True)
    obs = imp.study.observations
    # lb record 2 repeats record 1 exactly; record 3 differs in VISIT: another measurement, kept.
    # vs record 2 repeats record 1 in every variable but VSSEQ.
    assert rows(obs, "lb.csv") == [1, 3]
    assert rows(obs, "vs.csv") == [1]
    warned = [str(w) for w in imp.study.warnings]
    assert len(warned) == 2
    assert warned[0].startswith("lb.csv, record 2: 1 exact duplicate") and "row 2 repeats row 1" in warned[0]
    assert warned[1].startswith("vs.csv, record 2: 1 exact duplicate") and "row 2 repeats row 1" in warned[1]
    # the mapping report counts the dropped records as skipped (3 + 2 records, 3 mapped)
    rep = imp.report.filter(pl.col("file").is_in(["lb.csv", "vs.csv"]))
    assert rep["n_rows"].sum() == 5 and rep["n_mapped"].sum() == 3
    dup = rep.filter(pl.col("reason").str.starts_with("exact duplicate"))
    assert sorted(dup.select("file", "n_skipped").rows()) == [("lb.csv", 1), ("vs.csv", 1)]


def test_conflicting_values_are_one_error_naming_file_records_and_variable(tmp_path):
    lb = """STUDYID,DOMAIN,USUBJID,LBSEQ,LBTESTCD,LBSTRESC,LBSTRESN,LBSTRESU,LBDTC
T1,LB,T1-001,1,CRP,10,10,mg/L,2021-05-12T08:00
T1,LB,T1-001,2,CRP,99,99,mg/L,2021-05-12T08:00
"""
    folder = sdtm(tmp_path, lb=lb)
    with pytest.raises(InputError) as exc:
        read_sdtm(folder)
    msg = str(exc.value)
    assert msg.startswith("lb.csv, records 1, 2, variable LBSTRESN/LBSTRESC: conflicting values: CRP")
    assert "'T1-001' on day 2.33333 " in msg and "LBDTC" in msg  # session 32: 08:00 of day 2
    # through the command line: one message, no traceback, nothing stored
    store = tmp_path / "s.duckdb"
    res = CliRunner().invoke(app, ["import", "--sdtm", str(folder), "--store", str(store)],
                             env={"COLUMNS": "200", "CARTLAB_DEBUG": ""})
    text = " ".join((res.output + (res.stderr if res.stderr_bytes is not None else "")).split())
    assert res.exit_code == 2 and "Traceback" not in text
    assert "lb.csv, records 1, 2" in text and not store.exists()
    # each with its time: two measurements, both read
    (folder / "lb.csv").write_text(lb.replace("2021-05-12T08:00\nT1", "2021-05-12T06:00\nT1").replace(
        "mg/L,2021-05-12T08:00\n", "mg/L,2021-05-12T18:00\n"), encoding="utf-8")
    obs = read_sdtm(folder).observations.sort("src_row")
    assert obs.select("value", "day").rows() == [(10.0, 2.25), (99.0, 2.75)]


# ---------------------------------------------------------------------------------------------
# M5: an imputed end date is noted too


def test_imputed_end_date_is_noted(tmp_path):
    cm = """STUDYID,DOMAIN,USUBJID,CMSEQ,CMTRT,CMDECOD,CMINDC,CMSTDTC,CMENDTC
T1,CM,T1-002,1,NOREPINEPHRINE,NOREPINEPHRINE,CRS,2021-06-09,2021-06
T1,CM,T1-002,2,DEXAMETHASONE,DEXAMETHASONE,ICANS,2021-06,2021-06
"""
    suppcm = """STUDYID,RDOMAIN,USUBJID,IDVAR,IDVARVAL,QNAM,QLABEL,QVAL
T1,CM,T1-002,CMSEQ,2,SRCNOTE,Note,given by the site
"""
    iv = read_sdtm(sdtm(tmp_path, cm=cm, suppcm=suppcm), partial_dates="impute").interventions.sort("src_row")
    # day 0 = 2021-06-07: a start 2021-06 -> 06-01 = day -6; an end 2021-06 -> 06-30 = day 23
    assert iv.select("start_day", "end_day").rows() == [(2.0, 23.0), (-6.0, 23.0)]
    assert iv["source_note"].to_list() == [
        "CMENDTC imputed from the partial date '2021-06'",
        "given by the site; CMSTDTC imputed from the partial date '2021-06'; "
        "CMENDTC imputed from the partial date '2021-06'",
    ]


# ---------------------------------------------------------------------------------------------
# L4 / L2: impossible dates are errors; long fractions of a second keep the time


@pytest.mark.parametrize("dtc", ["2021-13", "2021-00", "2021---32", "2021-13T10:00"])
def test_a_partial_date_that_cannot_exist_is_an_error(tmp_path, dtc):
    lb = LBH + f"T1,LB,T1-001,1,CRP,10,mg/L,10,10,mg/L,,5,{dtc}\n"
    with pytest.raises(InputError, match=rf"^lb\.csv, record 1, variable LBDTC: .*got '{dtc}'$"):
        read_sdtm(sdtm(tmp_path, lb=lb))


def test_an_impossible_rfxstdtc_is_an_error(tmp_path):
    dm = DM.replace("2021-06-07", "2021-13-07")
    with pytest.raises(InputError, match=r"^dm\.csv, record 2, variable RFXSTDTC: .*got '2021-13-07'$"):
        read_sdtm(sdtm(tmp_path, dm=dm))


def test_more_than_six_fractional_second_digits_keep_the_time(tmp_path):
    lb = LBH + """T1,LB,T1-001,1,CRP,10,mg/L,10,10,mg/L,,5,2021-05-17T08:00:00.123456789
T1,LB,T1-001,2,CRP,11,mg/L,11,11,mg/L,,5,2021-05-18T20:30:15.1234567
"""
    obs = read_sdtm(sdtm(tmp_path, lb=lb)).observations.sort("src_row")
    # day 7 at 08:00:00.123456 (truncated to microseconds); day 8 at 20:30:15.123456
    assert obs["day"].to_list() == pytest.approx(
        [7 + (8 * 3600 + 0.123456) / 86400, 8 + (20 * 3600 + 30 * 60 + 15.123456) / 86400], abs=1e-12)
    assert obs["datetime"].to_list() == ["2021-05-17T08:00:00.123456789", "2021-05-18T20:30:15.1234567"]


# ---------------------------------------------------------------------------------------------
# L5: SUPP-- values split over QNAM, QNAM1 keep the text at the split


def test_split_supp_values_are_joined_as_given(tmp_path):
    lb = LBH + """T1,LB,T1-001,1,CRP,10,mg/L,10,10,mg/L,,5,2021-05-11
T1,LB,T1-001,2,CRP,11,mg/L,11,11,mg/L,,5,2021-05-12
T1,LB,T1-001,3,CRP,12,mg/L,12,12,mg/L,,5,2021-05-13
"""
    supplb = """STUDYID,RDOMAIN,USUBJID,IDVAR,IDVARVAL,QNAM,QLABEL,QVAL
T1,LB,T1-001,LBSEQ,1,SRCNOTE,Note,first part \n\
T1,LB,T1-001,LBSEQ,1,SRCNOTE1,Note,second part
T1,LB,T1-001,LBSEQ,2,SRCNOTE,Note,"first part"
T1,LB,T1-001,LBSEQ,2,SRCNOTE1,Note," second part"
T1,LB,T1-001,LBSEQ,3,SRCNOTE,Note,"  padded  "
"""
    obs = read_sdtm(sdtm(tmp_path, lb=lb, supplb=supplb)).observations.sort("src_row")
    # the space at the split belongs to the text (either side); the ends of the value are stripped
    assert obs["source_note"].to_list() == ["first part second part", "first part second part", "padded"]


def test_split_supp_values_from_xpt_keep_leading_blanks_and_drop_the_padding(tmp_path):
    pd = pytest.importorskip("pandas")
    pyreadstat = pytest.importorskip("pyreadstat")
    d = tmp_path / "xpt"
    d.mkdir()
    frames = {
        "dm": {"STUDYID": ["T1"], "USUBJID": ["T1-001"], "RFXSTDTC": ["2021-05-10"]},
        "lb": {"STUDYID": ["T1"], "USUBJID": ["T1-001"], "LBSEQ": [1.0], "LBTESTCD": ["CRP"], "LBSTRESN": [10.0],
               "LBSTRESU": ["mg/L"], "LBDTC": ["2021-05-11"]},
        # QVAL is stored 13 characters wide: "first part" is padded with 3 blanks (padding, not text)
        "supplb": {"STUDYID": ["T1"] * 3, "RDOMAIN": ["LB"] * 3, "USUBJID": ["T1-001"] * 3, "IDVAR": ["LBSEQ"] * 3,
                   "IDVARVAL": ["1"] * 3, "QNAM": ["SRCNOTE", "SRCNOTE1", "SRCNOTE2"],
                   "QVAL": ["first part", " second part", "  third part"]},
    }
    for name, cols in frames.items():
        pyreadstat.write_xport(pd.DataFrame(cols), str(d / f"{name}.xpt"), table_name=name.upper(),
                               file_format_version=5)
    assert read_sdtm(d).observations["source_note"].to_list() == ["first part second part  third part"]
