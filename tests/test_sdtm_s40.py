"""Session 40 SDTM fixes (review40_interop A1-A4, B2, B6, B8, B9; review40_crs A1, B4).

Every expected value is derived by hand from the standard's text or the unit definitions named in the
comments (never from cartlab's output). The folder helper (tests/sdtm_helpers.py) puts the CAR-T on
2021-05-10 = day 0.
"""

from __future__ import annotations

import polars as pl
import pytest

from cartlab.io.sdtm import read_sdtm
from sdtm_helpers import folder, msgs

LB = ("STUDYID,DOMAIN,USUBJID,LBSEQ,LBTESTCD,LBORRES,LBORRESU,LBORNRLO,LBORNRHI,LBSTRESC,LBSTRESN,LBSTRESU,"
      "LBSTNRLO,LBSTNRHI,LBLLOQ,LBSTAT,LBREASND,LBDTC\n")


def _lb(*rows: str) -> str:
    return LB + "".join(f"S,LB,P1,{r}\n" for r in rows)


# -- A1: a censored --ORRES wins over an exact --STRESC/--STRESN ---------------------------------------------------
def test_censored_orres_wins_over_exact_standard_result(tmp_path):
    # CRP: LBORRES '<0.5' mg/dL is below the LLOQ; 0.5 mg/dL = 5 mg/L (1 dL = 0.1 L), so the result is
    # censored '<' 5 mg/L, with no exact value, whatever the sponsor put in LBSTRESN (5 = the LLOQ, or 0)
    d = folder(tmp_path, lb=_lb("1,CRP,<0.5,mg/dL,,,5,5,mg/L,,,5,,,2021-05-11",
                                "2,CRP,<0.5,mg/dL,,,0,0,mg/L,,,5,,,2021-05-12"))
    s = read_sdtm(d)
    o = s.observations.sort("day")
    assert o["value"].to_list() == [None, None]
    assert o["censor"].to_list() == ["<", "<"]
    assert o["censor_limit"].to_list() == [pytest.approx(5.0), pytest.approx(5.0)]
    assert o["value_text"].to_list() == ["<0.5", "<0.5"]
    assert o["orig_unit"].to_list() == ["mg/dL", "mg/dL"]
    w = [m for m in msgs(s) if "censored LBORRES" in m]
    assert len(w) == 1 and "LBSEQ 1" in w[0] and "LBSEQ 2" in w[0]


# -- A3: the original-unit LLOQ is --LLOQ converted to --ORRESU ---------------------------------------------------
def test_orig_lloq_in_the_original_unit(tmp_path):
    # SDTMIG LB: LBLLOQ "Units will be those used for LBSTRESU": 3 mg/L = 0.3 mg/dL (1 mg/dL = 10 mg/L)
    d = folder(tmp_path, lb=_lb("1,CRP,1.5,mg/dL,,0.5,15,15,mg/L,,5,3,,,2021-05-11"))
    o = read_sdtm(d).observations
    assert o["lloq"][0] == pytest.approx(3.0)
    assert o["orig_unit"][0] == "mg/dL"
    assert o["orig_lloq"][0] == pytest.approx(0.3)
    assert o["orig_uln"][0] == pytest.approx(0.5)


# -- B8 / B6: the range survives in both units ----------------------------------------------------------------------
def test_orig_range_converted_from_standard_when_ornr_empty(tmp_path):
    # 1 ukat/L = 1 umol/s/L = 60 umol/min/L = 60 U/L, so ULN 40 U/L = 0.6667 ukat/L next to LBORRES 2.5 ukat/L
    d = folder(tmp_path, lb=_lb("1,ALT,2.5,ukat/L,,,150,150,U/L,,40,,,,2021-05-11"))
    o = read_sdtm(d).observations
    assert o["uln"][0] == pytest.approx(40.0)
    assert o["orig_unit"][0] == "ukat/L"
    assert o["orig_uln"][0] == pytest.approx(40 / 60, rel=1e-6)


def test_standard_range_from_ornr_when_stnr_empty(tmp_path):
    # LBORNRHI 0.5 ukat/L = 30 U/L (x 60); LBSTNRLO/HI empty: SDTMIG gives the same range for --ORRES
    d = folder(tmp_path, lb=_lb("1,ALT,2.5,ukat/L,0.1,0.5,150,150,U/L,,,,,,2021-05-11"))
    s = read_sdtm(d)
    o = s.observations
    assert o["uln"][0] == pytest.approx(30.0)
    assert o["lln"][0] == pytest.approx(6.0)
    assert "range from LBORNRLO/LBORNRHI" in o["source_note"][0]
    assert any("LBSTNRLO/LBSTNRHI empty" in m for m in msgs(s))


# -- B2: NOT DONE with a result --------------------------------------------------------------------------------------
def test_not_done_with_result_is_named_and_reasnd_kept(tmp_path):
    # SDTMIG --STAT: "Used to indicate exam not done. Should be null if a result exists."
    d = folder(tmp_path, lb=_lb("1,NEUT,0.07,10^9/L,,,0.07,0.07,10^9/L,,,,NOT DONE,,2021-05-11",
                                "2,NEUT,,,,,,,,,,,NOT DONE,haemolysed,2021-05-12",
                                "3,NEUT,0.5,10^9/L,,,0.5,0.5,10^9/L,,,,,,2021-05-13"))
    imp = read_sdtm(d, report=True)
    assert imp.study.observations["day"].to_list() == [3.0]
    w = [m for m in msgs(imp.study) if "LBSTAT NOT DONE" in m]
    assert len(w) == 1 and "LBSEQ 1" in w[0] and "0.07" in w[0]
    reasons = imp.report["reason"].drop_nulls().to_list()
    assert any("LBREASND haemolysed" in r for r in reasons), reasons


# -- B9 / A2: partial dates are named on screen, CRS-relevant ones say so ------------------------------------------
def test_partial_finding_date_is_warned(tmp_path):
    d = folder(tmp_path, lb=_lb("7,NEUT,0.45,10^9/L,,,0.45,0.45,10^9/L,,,,,,2021-05"))
    s = read_sdtm(d)
    assert s.observations.height == 0
    w = [m for m in msgs(s) if "partial LBDTC" in m]
    assert len(w) == 1 and "LBSEQ 7" in w[0] and "'2021-05'" in w[0] and "--partial-dates impute" in w[0]


CM = "STUDYID,DOMAIN,USUBJID,CMSEQ,CMTRT,CMCAT,CMINDC,CMDOSE,CMDOSU,CMDOSFRM,CMSTDTC\n"


def test_partial_vasopressor_start_says_crs_may_be_higher(tmp_path):
    # ASTCT 2019: a vasopressor is grade 3 CRS; with the start '2021-05' (the whole of May, day 0 included)
    # the record cannot be placed, so the grade printed may be too low: the warning must say so
    d = folder(tmp_path, cm=CM + "S,CM,P1,4,NOREPINEPHRINE,VASOPRESSOR,CRS,,,,2021-05\n")
    s = read_sdtm(d)
    assert s.interventions.height == 0
    w = [m for m in msgs(s) if "partial CMSTDTC" in m]
    assert len(w) == 1 and "CMSEQ 4" in w[0] and "CRS grade of that period may be higher" in w[0]


# -- review40_crs A1 / B4: oxygen device unknown, flow in other units ---------------------------------------------
def test_oxygen_without_known_device_is_warned(tmp_path):
    d = folder(tmp_path, cm=CM + "S,CM,P1,1,OXYGEN,,CRS,2,L/min,OXYMIZER,2021-05-11\n")
    s = read_sdtm(d)
    assert s.interventions.height == 0  # the study format requires o2_device for oxygen
    w = [m for m in msgs(s) if "oxygen record(s) without a device" in m]
    assert len(w) == 1 and "CMSEQ 1" in w[0] and "grade 2 to 4" in w[0]


@pytest.mark.parametrize(("dose", "unit", "lpm"), [("2", "L/min", 2.0), ("500", "mL/min", 0.5), ("120", "L/h", 2.0),
                                                  ("600", "L/h", 10.0)])
def test_oxygen_flow_units_converted(tmp_path, dose, unit, lpm):
    # 1 L/min = 1000 mL/min = 60 L/h (ASTCT 2019 grades a nasal cannula by L/min: > 6 L/min is high flow)
    d = folder(tmp_path, cm=CM + f"S,CM,P1,1,OXYGEN,,CRS,{dose},{unit},NASAL CANNULA,2021-05-11\n")
    iv = read_sdtm(d).interventions
    assert iv["o2_device"].to_list() == ["nasal_cannula"]
    assert iv["o2_flow_lpm"][0] == pytest.approx(lpm)
    assert iv["dose"].to_list() == [None]


# -- A4: EX constant-dosing records ---------------------------------------------------------------------------------
EXH = "STUDYID,DOMAIN,USUBJID,EXSEQ,EXTRT,EXDOSE,EXDOSU,EXDOSFRQ,EXSTDTC,EXENDTC\n"
CART = "S,EX,P1,9,CAR-T,1000000,CELLS/KG,ONCE,2021-05-10,\n"


def test_ex_qd_period_is_one_dose_per_day(tmp_path):
    # SDTMIG EX: EXSTDTC..EXENDTC a period of constant dosing; QD = every day: 05-05, 05-06, 05-07 =
    # days -5, -4, -3 from the CAR-T on 05-10, 30 mg/m2 each (90 in total)
    d = folder(tmp_path, ex=EXH + "S,EX,P1,1,FLUDARABINE,30,MG/M2,QD,2021-05-05,2021-05-07\n" + CART)
    doses = read_sdtm(d).doses.filter(pl.col("agent") == "fludarabine").sort("day")
    assert doses["day"].to_list() == [-5.0, -4.0, -3.0]
    assert doses["dose"].to_list() == [30.0, 30.0, 30.0]


def test_ex_bid_and_unknown_frequency(tmp_path):
    # BID = 2 administrations a day: 05-05 and 05-06 (days -5, -4), 2 x 10 mg = 20 mg a day;
    # PRN (as needed) has no count of administrations: one row on EXSTDTC, warned
    d = folder(tmp_path, ex=EXH + "S,EX,P1,1,MESNA,10,MG,BID,2021-05-05,2021-05-06\n"
               "S,EX,P1,2,CYCLOPHOSPHAMIDE,500,MG/M2,PRN,2021-05-05,2021-05-07\n" + CART)
    s = read_sdtm(d)
    mesna = s.doses.filter(pl.col("agent") == "MESNA").sort("day")
    assert mesna["day"].to_list() == [-5.0, -4.0]
    assert mesna["dose"].to_list() == [20.0, 20.0]
    cy = s.doses.filter(pl.col("agent") == "cyclophosphamide")
    assert cy["day"].to_list() == [-5.0]
    w = [m for m in msgs(s) if "EXDOSFRQ PRN" in m]
    assert len(w) == 1 and "EXENDTC 2021-05-07 not used" in w[0]


# -- B4: --DY counts from DM.RFSTDTC ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("rfst", "day"), [("2021-05-05", 2.0), ("2021-05-10", 7.0)])
def test_study_day_fallback_counts_from_rfstdtc(tmp_path, rfst, day):
    # SDTMIG 4.4.4: --DY = date - RFSTDTC + 1 on or after RFSTDTC. LBDY 8 with RFSTDTC 2021-05-05 is 2021-05-12,
    # 2 days after the CAR-T on 2021-05-10 (day 2); with RFSTDTC = the infusion day it is 2021-05-17 (day 7)
    dm = ("STUDYID,DOMAIN,USUBJID,RFSTDTC,RFXSTDTC,AGE,AGEU,SEX\n"
          f"S,DM,P1,{rfst},2021-05-05,40,YEARS,M\n")
    lb = ("STUDYID,DOMAIN,USUBJID,LBSEQ,LBTESTCD,LBSTRESC,LBSTRESN,LBSTRESU,LBDTC,LBDY\n"
          "S,LB,P1,1,NEUT,0.3,0.3,10^9/L,,8\n")
    s = read_sdtm(folder(tmp_path, dm=dm, lb=lb), study_day_fallback=True)
    assert s.observations["day"].to_list() == [day]


# -- B1: a finding's complete date is its datetime (study format: datetime ISO 8601, a date alone included) --------
def test_finding_date_only_is_datetime(tmp_path):
    d = folder(tmp_path, lb=_lb("1,NEUT,0.5,10^9/L,,,0.5,0.5,10^9/L,,,,,,2021-05-12",
                                "2,NEUT,0.6,10^9/L,,,0.6,0.6,10^9/L,,,,,,2021-05-13T08:00"))
    o = read_sdtm(d).observations.sort("day")
    assert o["datetime"].to_list() == ["2021-05-12", "2021-05-13T08:00"]
    assert o["day"].to_list() == [2.0, pytest.approx(3 + 8 / 24)]
