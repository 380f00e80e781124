"""review33 (SDTM reader) fixes: --OCCUR / --STAT / ECMOOD / zero doses are no exposures or events,
a partial CAR-T date leaves no day 0, a censored --STRESC wins over a --STRESN.

Expected values are derived by hand from the SDTMIG text quoted in /work/notes/review33_sdtm/REPORT.md
(checks adapted from its confirm.py), never from cartlab's output:
* CM: "CMPRESP and CMOCCUR are used together to indicate whether the intervention ... was
  pre-specified and whether it occurred"; CE: CEOCCUR indicates "whether or not a clinical event
  occurred"; --STAT = NOT DONE: the question was not answered.
* EC: "ECOCCUR value of "N" indicates a dose was not taken, not given, or missed"; ECMOOD SCHEDULED
  = intended, PERFORMED = actual; "Dose amount variables ... must not be set to zero (0) as an
  alternative method for indicating doses not taken".
* --STRESN is --STRESC "copied in numeric format": a censored '>5000' has no exact number.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from cartlab.grading.crs import derive_crs_daily
from cartlab.io.sdtm import read_sdtm

DM = ("STUDYID,DOMAIN,USUBJID,RFSTDTC,RFXSTDTC,RFPENDTC,AGE,AGEU,SEX,DTHDTC\n"
      "S,DM,P1,2021-05-10,{rfx},2021-06-09,40,YEARS,M,\n")
EXH = "STUDYID,DOMAIN,USUBJID,EXSEQ,EXTRT,EXDOSE,EXDOSU,EXSTDTC\n"
EX = EXH + "S,EX,P1,1,CAR-T,1000000,CELLS/KG,2021-05-10\n"
LBH = "STUDYID,DOMAIN,USUBJID,LBSEQ,LBTESTCD,LBSTRESC,LBSTRESN,LBSTRESU,LBSPEC,LBDTC\n"
VS = "STUDYID,DOMAIN,USUBJID,VSSEQ,VSTESTCD,VSSTRESN,VSSTRESU,VSDTC\nS,VS,P1,1,TEMP,39.0,C,2021-05-12\n"


def folder(tmp_path: Path, **files: str | None) -> Path:
    d = tmp_path / "sdtm"
    d.mkdir()
    files.setdefault("dm", DM.format(rfx="2021-05-10"))
    files.setdefault("ex", EX)
    for k, v in files.items():
        if v is not None:
            (d / f"{k}.csv").write_text(v, encoding="utf-8")
    return d


def reasons(imp, file: str) -> dict[str, int]:
    """reason -> number of records of the mapping report (rows are grouped by code/target/reason)."""
    rep = imp.report.filter(pl.col("file") == file).group_by("reason").agg(pl.col("n_rows").sum())
    return dict(rep.iter_rows())


# A1 --------------------------------------------------------------------------------------------

def test_cm_not_given_and_not_done_are_no_interventions(tmp_path):
    cm = ("STUDYID,DOMAIN,USUBJID,CMSEQ,CMTRT,CMPRESP,CMOCCUR,CMSTAT,CMINDC,CMSTDTC,CMENDTC\n"
          "S,CM,P1,1,NOREPINEPHRINE,Y,N,,CRS,2021-05-12,2021-05-12\n"
          "S,CM,P1,2,TOCILIZUMAB,Y,,NOT DONE,CRS,2021-05-12,2021-05-12\n")
    imp = read_sdtm(folder(tmp_path, cm=cm, vs=VS), report=True)
    assert imp.study.interventions.height == 0
    assert reasons(imp, "cm.csv") == {"not done (CMSTAT)": 1, "not given (CMOCCUR = N)": 1}
    # fever 39.0 on day 2 without a vasopressor given: ASTCT CRS grade 1 (not 3)
    g = dict(derive_crs_daily(imp.study).select("day", "grade").iter_rows())
    assert g.get(2) == 1


def test_cm_occur_y_or_empty_is_given(tmp_path):
    # control: CMOCCUR = Y and a missing CMOCCUR (the usual, unsolicited record) are given
    cm = ("STUDYID,DOMAIN,USUBJID,CMSEQ,CMTRT,CMPRESP,CMOCCUR,CMINDC,CMSTDTC,CMENDTC\n"
          "S,CM,P1,1,NOREPINEPHRINE,Y,Y,CRS,2021-05-12,2021-05-12\n"
          "S,CM,P1,2,TOCILIZUMAB,,,CRS,2021-05-12,2021-05-12\n")
    s = read_sdtm(folder(tmp_path, cm=cm, vs=VS))
    assert sorted(s.interventions["category"].to_list()) == ["tocilizumab", "vasopressor"]


# A2 --------------------------------------------------------------------------------------------

def test_ce_pr_occur_n_are_no_events(tmp_path):
    ce = ("STUDYID,DOMAIN,USUBJID,CESEQ,CETERM,CEDECOD,CEPRESP,CEOCCUR,CEDTC\n"
          "S,CE,P1,1,SEIZURE,SEIZURE,Y,N,2021-05-12\n"
          "S,CE,P1,2,SEIZURE,SEIZURE,Y,Y,2021-05-13\n")
    pr = ("STUDYID,DOMAIN,USUBJID,PRSEQ,PRTRT,PRPRESP,PROCCUR,PRSTDTC\n"
          "S,PR,P1,1,ALLOGENEIC STEM CELL TRANSPLANT,Y,N,2021-08-12\n")
    imp = read_sdtm(folder(tmp_path, ce=ce, pr=pr), report=True)
    # only the CEOCCUR = Y seizure, on day 3 (2021-05-13 - 2021-05-10)
    assert imp.study.events.select("event", "day").rows() == [("seizure", 3.0)]
    assert reasons(imp, "ce.csv") == {"not occurred (CEOCCUR = N)": 1, "mapped": 1}
    assert reasons(imp, "pr.csv") == {"not occurred (PROCCUR = N)": 1}


# A3 --------------------------------------------------------------------------------------------

def test_ec_scheduled_and_not_given_are_no_doses_and_no_day0(tmp_path):
    ec = ("STUDYID,DOMAIN,USUBJID,ECSEQ,ECTRT,ECMOOD,ECOCCUR,ECDOSE,ECDOSU,ECSTDTC\n"
          "S,EC,P1,1,CAR-T,SCHEDULED,,1000000,CELLS/KG,2021-05-08\n"
          "S,EC,P1,2,CAR-T,PERFORMED,N,1000000,CELLS/KG,2021-05-09\n"
          "S,EC,P1,3,CAR-T,PERFORMED,Y,1000000,CELLS/KG,2021-05-10\n")
    imp = read_sdtm(folder(tmp_path, ex=None, ec=ec), report=True)
    assert imp.study.subjects["infusion_date"].to_list() == ["2021-05-10"]
    assert imp.study.doses.select("day", "src_row").rows() == [(0.0, 3)]
    r = reasons(imp, "ec.csv")
    assert r.pop("not given (ECOCCUR = N)") == 1 and r.pop("mapped") == 1
    ((why, n),) = r.items()
    assert why.startswith("ECMOOD SCHEDULED: not an exposure") and n == 1


def test_ec_only_scheduled_car_t_falls_back_with_a_true_warning(tmp_path):
    # the CAR-T is recognised but never given: day 0 = RFXSTDTC, and the warning must not claim the
    # product name is unknown (C2)
    ec = ("STUDYID,DOMAIN,USUBJID,ECSEQ,ECTRT,ECMOOD,ECDOSE,ECDOSU,ECSTDTC\n"
          "S,EC,P1,1,CAR-T,SCHEDULED,1000000,CELLS/KG,2021-05-08\n")
    s = read_sdtm(folder(tmp_path, ex=None, ec=ec, dm=DM.format(rfx="2021-05-05")))
    assert s.doses.height == 0
    (w,) = [w.message for w in s.warnings if "RFXSTDTC" in w.message]
    assert "no exposures" in w and "SCHEDULED" in w and "ex_agents" not in w


# A4 --------------------------------------------------------------------------------------------

def test_zero_dose_is_no_exposure_and_no_day0(tmp_path):
    ex = EXH + "S,EX,P1,1,CAR-T,0,CELLS/KG,2021-05-09\nS,EX,P1,2,CAR-T,1000000,CELLS/KG,2021-05-10\n"
    imp = read_sdtm(folder(tmp_path, ex=ex), report=True)
    s = imp.study
    assert s.subjects["infusion_date"].to_list() == ["2021-05-10"]
    assert s.doses.select("day", "src_row").rows() == [(0.0, 2)]
    r = reasons(imp, "ex.csv")
    assert r.pop("mapped") == 1
    ((why, n),) = r.items()
    assert why.startswith("EXDOSE 0 of a CAR-T: not an exposure") and n == 1
    (w,) = [w for w in s.warnings if w.column == "EXDOSE"]
    assert w.rows == [1] and "USUBJID P1 CAR-T" in w.message


# A5 / C2 ---------------------------------------------------------------------------------------

def test_partial_car_t_date_gives_no_day0_and_says_why(tmp_path):
    ex = EXH + "S,EX,P1,1,FLUDARABINE,30,MG/M2,2021-05-05\nS,EX,P1,2,CAR-T,1000000,CELLS/KG,2021-05\n"
    lb = LBH + "S,LB,P1,1,CRP,12,12,mg/L,SERUM,2021-05-12\n"
    imp = read_sdtm(folder(tmp_path, dm=DM.format(rfx="2021-05-05"), ex=ex, lb=lb), report=True)
    s = imp.study
    # not the lymphodepletion date (RFXSTDTC 2021-05-05): no day 0 at all
    assert s.subjects["infusion_date"].to_list() == [None]
    assert s.observations.height == 0
    (r,) = reasons(imp, "lb.csv")  # the one CRP record, not placed
    assert "partial" in r and "2021-05" in r and "no day 0" in r
    (w,) = [w for w in s.warnings if "EXSTDTC is partial" in w.message]
    assert "2021-05" in w.message and "ex_agents" not in w.message and w.rows == [2]
    assert not [w for w in s.warnings if "recognised" in w.message]


def test_unknown_product_code_warning_kept(tmp_path):
    # control (unchanged behaviour): a CAR-T product cartlab does not recognise -> RFXSTDTC + ex_agents advice
    ex = EXH + "S,EX,P1,1,FLUDARABINE,30,MG/M2,2021-05-05\nS,EX,P1,2,CTL019,1000000,CELLS/KG,2021-05-10\n"
    s = read_sdtm(folder(tmp_path, dm=DM.format(rfx="2021-05-05"), ex=ex))
    assert s.subjects["infusion_date"].to_list() == ["2021-05-05"]
    (w,) = [w.message for w in s.warnings if "RFXSTDTC" in w.message]
    assert "ex_agents" in w and "CTL019" in w


# B1 / C4 ---------------------------------------------------------------------------------------

def test_censored_stresc_wins_over_stresn(tmp_path):
    lb = LBH + "S,LB,P1,1,IL6,>5000,5000,pg/mL,SERUM,2021-05-12\nS,LB,P1,2,CRP,<5,5,mg/L,SERUM,2021-05-12\n"
    s = read_sdtm(folder(tmp_path, lb=lb))
    o = s.observations.sort("src_row")
    assert o.select("censor", "censor_limit", "value").rows() == [(">", 5000.0, None), ("<", 5.0, None)]
    w = [w for w in s.warnings if "contradicts the censored" in w.message]
    assert [x.rows for x in w] == [[1], [2]]
    assert "LBSEQ 1" in w[0].message and "'>5000'" in w[0].message


def test_stresn_stresc_disagreement_is_warned(tmp_path):
    lb = LBH + "S,LB,P1,1,CRP,6,5,mg/L,SERUM,2021-05-12\nS,LB,P1,2,CRP,7.0,7,mg/L,SERUM,2021-05-13\n"
    s = read_sdtm(folder(tmp_path, lb=lb))
    assert s.observations.sort("src_row")["value"].to_list() == [5.0, 7.0]  # STRESN read; 7.0 == 7 agrees
    (w,) = [w for w in s.warnings if "differs from" in w.message]
    assert w.rows == [1] and "LBSEQ 1" in w.message


def test_placebo_zero_dose_is_kept(tmp_path):
    # the CDISC pilot writes PLACEBO with EXDOSE 0 mg (a placebo given): the zero-dose rule is the
    # CAR-T's only (a CAR-T dose of 0 cells means nothing was infused)
    ex = EXH + "S,EX,P1,1,PLACEBO,0,mg,2021-05-09\nS,EX,P1,2,CAR-T,1000000,CELLS/KG,2021-05-10\n"
    s = read_sdtm(folder(tmp_path, ex=ex))
    assert s.doses.sort("src_row").select("agent", "dose").rows() == [("PLACEBO", 0.0), ("CAR-T", 1000000.0)]
    assert not [w for w in s.warnings if w.column == "EXDOSE"]


def test_a_blood_count_from_another_specimen_is_not_read(tmp_path):
    """A6/B2: LBSPEC names the material (SDTMIG LB). A CSF WBC of 5 /uL is not the blood WBC (it was
    read as 0.005 x10^9/L, profound leukopenia); a urine WBC in /HPF stopped the import over its unit.
    Both are left out and reported; a VENOUS BLOOD WBC of 5.2 x10^9/L is read (session 33)."""
    lb = (LBH + "S,LB,P1,1,WBC,5,5,/uL,CEREBROSPINAL FLUID,2021-05-12\n"
          "S,LB,P1,2,WBC,3,3,/HPF,URINE,2021-05-12\n"
          "S,LB,P1,3,WBC,5.2,5.2,10^9/L,VENOUS BLOOD,2021-05-12\n")
    imp = read_sdtm(folder(tmp_path, lb=lb), report=True)
    wbc = imp.study.observations.filter(pl.col("param") == "WBC")
    assert wbc.select("value", "specimen").rows() == [(5.2, "PB")]
    r = reasons(imp, "lb.csv")
    assert r.get("specimen CEREBROSPINAL FLUID is not blood: not read as WBC (a blood count)") == 1
    assert r.get("specimen URINE is not blood: not read as WBC (a blood count)") == 1


def test_blq_with_lloq_is_censored_at_the_lloq(tmp_path):
    """B5: PCSTRESC "BLQ" with PCLLOQ 50 is below the limit of quantification: "<50" (censor "<",
    limit 50), as the study-folder reader reads BLQ with an lloq (spec observations.csv lloq); without
    a PCLLOQ the bound is unknown: not read, reported as not numeric (session 33)."""
    pc = ("STUDYID,DOMAIN,USUBJID,PCSEQ,PCTESTCD,PCSTRESC,PCSTRESN,PCSTRESU,PCLLOQ,PCDTC\n"
          "S,PC,P1,1,CARCOPY,BLQ,,copies/ug,50,2021-05-20\n"
          "S,PC,P1,2,CARCOPY,BLQ,,copies/ug,,2021-05-21\n")
    imp = read_sdtm(folder(tmp_path, pc=pc), report=True)
    o = imp.study.observations.filter(pl.col("param") == "CARCOPY")
    assert o.select("censor", "censor_limit", "value", "lloq").rows() == [("<", 50.0, None, 50.0)]
    assert any(r.startswith("not numeric") for r in reasons(imp, "pc.csv"))


def test_dm_death_date_disagreeing_with_ds_is_warned(tmp_path):
    """B4: DS death on 2021-05-30 (day 20 from the infusion on 2021-05-10) and DM.DTHDTC 2021-05-25
    (day 15): the DS date is used (as documented) and a warning names both days (session 33)."""
    dm = ("STUDYID,DOMAIN,USUBJID,RFSTDTC,RFXSTDTC,RFPENDTC,AGE,AGEU,SEX,DTHDTC\n"
          "S,DM,P1,2021-05-10,2021-05-10,2021-06-09,40,YEARS,M,2021-05-25\n")
    ds = "STUDYID,DOMAIN,USUBJID,DSSEQ,DSDECOD,DSSTDTC\nS,DS,P1,1,DEATH,2021-05-30\n"
    s = read_sdtm(folder(tmp_path, dm=dm, ds=ds))
    assert s.events.filter(pl.col("event") == "death")["day"].to_list() == [20.0]
    (w,) = [w for w in s.warnings if "DTHDTC" in w.message]
    assert "day 15" in w.message and "day 20" in w.message
