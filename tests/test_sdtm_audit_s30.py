"""SDTM import (session 30 differential audit, /work/notes/audit_diffsdtm: an independent study-folder
-> SDTM converter, 150 synthetic subjects and an edge study compared table by table). Each case is
the minimised disagreement; expected values by hand from the spec (docs/interop/sdtm.md, SDTMIG)."""

from __future__ import annotations

import pytest

from cartlab.errors import InputError
from cartlab.grading.crs import derive_crs_daily
from cartlab.io.sdtm import read_sdtm

DM = ("STUDYID,DOMAIN,USUBJID,RFSTDTC,RFXSTDTC,RFPENDTC,AGE,AGEU,SEX\n"
      "S,DM,P1,2021-05-10,{rfx},2021-06-09,40,YEARS,M\n")
VS = ("STUDYID,DOMAIN,USUBJID,VSSEQ,VSTESTCD,VSSTRESN,VSSTRESU,VSDTC\n"
      "S,VS,P1,1,TEMP,39.0,C,2021-05-13\nS,VS,P1,2,SYSBP,120,mmHg,2021-05-13\n")


def _folder(tmp_path, **files):
    f = tmp_path / "sdtm"
    f.mkdir()
    for name, text in files.items():
        (f / f"{name}.csv").write_text(text, encoding="utf-8")
    return f


def _o2(tmp_path, o2dev: str):
    """Day 3 (2021-05-13): 39.0 C, SBP 120, oxygen for CRS with SUPPCM O2DEV ``o2dev`` at 2 L/min."""
    return _folder(
        tmp_path, dm=DM.format(rfx="2021-05-10"),
        ex="STUDYID,DOMAIN,USUBJID,EXSEQ,EXTRT,EXDOSE,EXDOSU,EXSTDTC\nS,EX,P1,1,CAR-T,1000000,CELLS/KG,2021-05-10\n",
        vs=VS,
        cm="STUDYID,DOMAIN,USUBJID,CMSEQ,CMTRT,CMCAT,CMINDC,CMSTDTC,CMENDTC\n"
           "S,CM,P1,1,OXYGEN,OXYGEN,CRS,2021-05-13,2021-05-13\n",
        suppcm="STUDYID,RDOMAIN,USUBJID,IDVAR,IDVARVAL,QNAM,QLABEL,QVAL\n"
               f"S,CM,P1,CMSEQ,1,O2DEV,O2DEV,{o2dev}\nS,CM,P1,CMSEQ,1,O2FLOW,O2FLOW,2\n")


@pytest.mark.parametrize("o2dev", ["NASAL CANNULA", "nasal_cannula", "Nasal Cannula", "NASAL_CANNULA"])
def test_suppcm_o2dev_is_read_through_the_device_names(tmp_path, o2dev):
    """Spec, CRS: 'low flow (nasal_cannula <= 6 L/min) = 2' with fever: day 3 is grade 2 whichever
    way the device is spelled (the o2_devices term NASAL CANNULA was kept as typed: grade 1)."""
    s = read_sdtm(_o2(tmp_path, o2dev))
    assert s.interventions["o2_device"].to_list() == ["nasal_cannula"]
    g = dict(derive_crs_daily(s).select("day", "grade").iter_rows())
    assert g[3] == 2


def test_an_unknown_o2dev_is_not_guessed_and_is_reported(tmp_path):
    imp = read_sdtm(_o2(tmp_path, "TIN CAN"), report=True)
    assert imp.study.interventions.height == 0  # not mapped (was kept with an unknown device)
    reasons = imp.report.filter(imp.report["n_skipped"] > 0)["reason"].to_list()
    assert any("O2DEV 'TIN CAN' is not an oxygen device" in r for r in reasons), reasons


def test_day_0_from_rfxstdtc_when_no_exposure_is_a_car_t_is_warned(tmp_path):
    """EXTRT CTL019 (a product code cartlab does not know) and fludarabine on RFXSTDTC 2021-05-05:
    day 0 falls back to RFXSTDTC (documented), now with a warning naming the treatments."""
    f = _folder(tmp_path, dm=DM.format(rfx="2021-05-05"),
                ex="STUDYID,DOMAIN,USUBJID,EXSEQ,EXTRT,EXDOSE,EXDOSU,EXSTDTC\n"
                   "S,EX,P1,1,FLUDARABINE,30,MG/M2,2021-05-05\nS,EX,P1,2,CTL019,1000000,CELLS/KG,2021-05-10\n",
                vs=VS)
    s = read_sdtm(f)
    assert s.subjects["infusion_date"].to_list() == ["2021-05-05"]
    (w,) = [w for w in s.warnings if "RFXSTDTC" in w.message]
    assert "CTL019, FLUDARABINE" in w.message and "ex_agents" in w.message and "P1 (2021-05-05)" in w.message
    assert w.rows == [1, 2] and w.severity == "warning"
    # named in the mapping: day 0 is the CAR-T (2021-05-10), no warning; the fever on 05-13 is day 3
    m = tmp_path / "map.yaml"
    m.write_text("ex_agents:\n  CTL019: tisagenlecleucel\n", encoding="utf-8")
    s = read_sdtm(f, mapping=m)
    assert s.subjects["infusion_date"].to_list() == ["2021-05-10"]
    assert not [w for w in s.warnings if "RFXSTDTC" in w.message]


def test_an_empty_usubjid_is_an_error_naming_the_record(tmp_path):
    f = _folder(tmp_path, dm=DM.format(rfx="2021-05-10"),
                lb="STUDYID,DOMAIN,USUBJID,LBSEQ,LBTESTCD,LBSTRESN,LBSTRESU,LBSPEC,LBDTC\n"
                   "S,LB,P1,1,NEUT,0.3,10^9/L,BLOOD,2021-05-12\nS,LB,,2,NEUT,0.2,10^9/L,BLOOD,2021-05-13\n")
    with pytest.raises(InputError, match=r"lb.csv, record 2, variable USUBJID: USUBJID is empty"):
        read_sdtm(f)


def test_records_of_a_subject_not_in_dm_are_warned(tmp_path):
    f = _folder(tmp_path, dm=DM.format(rfx="2021-05-10"),
                lb="STUDYID,DOMAIN,USUBJID,LBSEQ,LBTESTCD,LBSTRESN,LBSTRESU,LBSPEC,LBDTC\n"
                   "S,LB,P1,1,NEUT,0.3,10^9/L,BLOOD,2021-05-12\nS,LB,P9,2,NEUT,0.2,10^9/L,BLOOD,2021-05-13\n")
    s = read_sdtm(f)
    assert s.observations["subject_id"].to_list() == ["P1"]
    (w,) = [w for w in s.warnings if "not a subject of DM" in w.message]
    assert "USUBJID P9" in w.message and w.rows == [2]
