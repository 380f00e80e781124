"""Session 46 fixes of the SDTM reader (review46_sdtm findings 1-7, 9).

Every expected value is derived by hand from the data written here and the rule it cites (ASTCT
2019 / the study format's grade table, the FHIR reader's age and weight rules, the study folder's
sex vocabulary), never copied from the program's output. The data are the review's reproductions
(/work/notes/review46_sdtm/edge/e2..e8), written inline.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from cartlab.errors import InputError
from cartlab.grading.crs import derive_crs_summary
from cartlab.grading.icaht import derive_icaht
from cartlab.grading.icans import derive_icans_summary
from cartlab.io.sdtm import read_sdtm

# day 0 = 2021-09-10 (the CAR-T EXSTDTC) in every folder below
DM3 = ("STUDYID,USUBJID,RFSTDTC,RFXSTDTC,RFPENDTC,AGE,AGEU,SEX\n"
       + "".join(f"E,{u},2021-09-10,2021-09-10,2021-10-30,40,YEARS,F\n" for u in ("A1", "A2", "A3")))
EX3 = ("STUDYID,USUBJID,EXSEQ,EXTRT,EXDOSE,EXDOSU,EXSTDTC\n"
       + "".join(f"E,{u},1,CAR-T,1,10^6 CELLS/KG,2021-09-10\n" for u in ("A1", "A2", "A3")))


def _folder(tmp_path: Path, **files: str) -> Path:
    d = tmp_path / "sdtm"
    d.mkdir()
    files.setdefault("dm", DM3)
    files.setdefault("ex", EX3)
    for name, text in files.items():
        (d / f"{name}.csv").write_text(text, encoding="utf-8")
    return d


def _warn(study, column: str) -> list[str]:
    return [w.message for w in study.warnings if w.column == column]


def _grade(summary: pl.DataFrame, sid: str, col: str = "crs_grade_astct"):
    return summary.filter(pl.col("subject_id") == sid)[col].item()


# ---------------------------------------------------------------------------------------------
# finding 1: the oxygen device in CMTRT behind CMDOSFRM GAS / CMROUTE


VS_FEVER = ("STUDYID,USUBJID,VSSEQ,VSTESTCD,VSSTRESC,VSSTRESN,VSSTRESU,VSDTC\n"
            "E,A1,1,TEMP,37.0,37.0,C,2021-09-10\nE,A1,2,TEMP,38.9,38.9,C,2021-09-11\n"
            "E,A1,3,TEMP,38.4,38.4,C,2021-09-12\nE,A1,4,TEMP,37.2,37.2,C,2021-09-13\n")
CM_HFNC = ("STUDYID,USUBJID,CMSEQ,CMTRT,CMDECOD,CMDOSFRM,CMROUTE,CMDOSE,CMDOSU,CMSTDTC,CMENDTC,CMINDC\n"
           "E,A1,1,HIGH FLOW NASAL CANNULA,OXYGEN,GAS,RESPIRATORY (INHALATION),40,L/min,2021-09-12,2021-09-12,"
           "CYTOKINE RELEASE SYNDROME\n")


def test_oxygen_device_in_cmtrt_behind_cmdosfrm_gas(tmp_path):
    """CMDOSFRM GAS and CMROUTE RESPIRATORY (INHALATION) are no devices; CMTRT HIGH FLOW NASAL CANNULA
    is (o2_devices). Before session 46 the first non-empty text (GAS) was looked up alone and the record
    dropped. By hand: day 2 has fever 38.4 >= 38.0 and HFNC, ASTCT 2019 grade 3 ("hypoxia requiring
    high-flow nasal cannula"; study format: high_flow_nasal_cannula = 3), so the maximum is 3."""
    study = read_sdtm(_folder(tmp_path, vs=VS_FEVER, cm=CM_HFNC))
    iv = study.interventions
    assert iv.height == 1 and iv["o2_device"].item() == "high_flow_nasal_cannula"
    assert iv["o2_flow_lpm"].item() == 40.0
    assert not _warn(study, "SUPPCM O2DEV")
    assert _grade(derive_crs_summary(study), "A1") == 3


def test_device_in_cmdosfrm_still_read(tmp_path):
    """A device named in CMDOSFRM itself (NASAL CANNULA) is read as before, ahead of CMTRT OXYGEN."""
    cm = ("STUDYID,USUBJID,CMSEQ,CMTRT,CMDOSFRM,CMDOSE,CMDOSU,CMSTDTC\n"
          "E,A1,1,OXYGEN,NASAL CANNULA,2,L/min,2021-09-12\n")
    study = read_sdtm(_folder(tmp_path, cm=cm))
    assert study.interventions["o2_device"].to_list() == ["nasal_cannula"]


# ---------------------------------------------------------------------------------------------
# finding 2: an unrecognised CMINDC is no longer "other"

VS_E7 = "STUDYID,USUBJID,VSSEQ,VSTESTCD,VSSTRESC,VSSTRESN,VSSTRESU,VSDTC\n" + "".join(
    f"E,{u},{i},{t},{v},{v},{unit},{dtc}\n" for u in ("A1", "A2", "A3") for i, (t, v, unit, dtc) in enumerate((
        ("TEMP", 38.9, "C", "2021-09-11"), ("SYSBP", 100, "mmHg", "2021-09-11"), ("TEMP", 38.6, "C", "2021-09-12"),
        ("SYSBP", 82, "mmHg", "2021-09-12"), ("TEMP", 37.0, "C", "2021-09-13"), ("SYSBP", 110, "mmHg", "2021-09-13")), 1))
CM_E7 = ("STUDYID,USUBJID,CMSEQ,CMTRT,CMINDC,CMSTDTC,CMENDTC\n"
         "E,A1,1,NOREPINEPHRINE,HYPOTENSION,2021-09-12,2021-09-12\n"
         "E,A2,1,NOREPINEPHRINE,,2021-09-12,2021-09-12\n"
         "E,A3,1,NOREPINEPHRINE,CYTOKINE RELEASE SYNDROME GRADE 3,2021-09-12,2021-09-12\n")


def test_unknown_indication_counts_by_default(tmp_path):
    """By hand: each subject has fever (38.6) and SBP 82 < 90 with one vasopressor on day 2: ASTCT 2019
    grade 3 ("hypotension requiring a vasopressor"). The study format counts an intervention whose
    indication is empty or CRS; HYPOTENSION (not in the table) is left empty, CYTOKINE RELEASE SYNDROME
    GRADE 3 is CRS by indication_prefixes. Before: A1 and A3 were "other" (grade 2), silently."""
    study = read_sdtm(_folder(tmp_path, vs=VS_E7, cm=CM_E7))
    iv = study.interventions.sort("subject_id")
    assert iv["indication"].to_list() == [None, None, "CRS"]
    notes = iv["source_note"].to_list()
    assert notes[0] == "CMINDC 'HYPOTENSION' not in the indications table: read as not given"
    assert notes[1] is None and "indication_prefixes" in notes[2]
    crs = derive_crs_summary(study)
    assert [_grade(crs, s) for s in ("A1", "A2", "A3")] == [3, 3, 3]
    msgs = _warn(study, "CMINDC")
    assert len(msgs) == 1 and "HYPOTENSION (1)" in msgs[0] and "GRADE 3" not in msgs[0]
    assert study.reader_options["unknown_indication"] == "count"


def test_unknown_indication_other_keeps_old_reading(tmp_path):
    """Option unknown_indication = other (keyword or mapping key): HYPOTENSION is "other", not counted, so
    A1 has fever and hypotension without a counted vasopressor: ASTCT grade 2 (hypotension not requiring
    vasopressors). Still warned, and the text kept in source_note."""
    folder = _folder(tmp_path, vs=VS_E7, cm=CM_E7)
    mapping = tmp_path / "map.yaml"
    mapping.write_text("unknown_indication: other\n", encoding="utf-8")
    for study in (read_sdtm(folder, unknown_indication="other"), read_sdtm(folder, mapping=mapping)):
        iv = study.interventions.sort("subject_id")
        assert iv["indication"].to_list() == ["other", None, "CRS"]
        assert "read as other" in iv["source_note"][0]
        assert _grade(derive_crs_summary(study), "A1") == 2
        assert len(_warn(study, "CMINDC")) == 1
    # the keyword wins over the mapping file
    assert read_sdtm(folder, mapping=mapping, unknown_indication="count").interventions.sort(
        "subject_id")["indication"][0] is None
    with pytest.raises(InputError, match="unknown_indication"):
        read_sdtm(folder, unknown_indication="drop")
    mapping.write_text("unknown_indication: maybe\n", encoding="utf-8")
    with pytest.raises(InputError, match="unknown_indication"):
        read_sdtm(folder, mapping=mapping)


def test_indication_rows_and_whole_word_prefix(tmp_path):
    """SEPSIS / SEPTIC SHOCK are infection (a category of the study format); a prefix matches as a whole
    word only: CRS-RELATED HYPOTENSION is CRS, CRSX is not (left empty, warned)."""
    cm = ("STUDYID,USUBJID,CMSEQ,CMTRT,CMINDC,CMSTDTC\n"
          "E,A1,1,NOREPINEPHRINE,SEPTIC SHOCK,2021-09-12\nE,A1,2,NOREPINEPHRINE,Sepsis,2021-09-13\n"
          "E,A1,3,NOREPINEPHRINE,CRS-RELATED HYPOTENSION,2021-09-14\nE,A1,4,NOREPINEPHRINE,CRSX,2021-09-15\n")
    study = read_sdtm(_folder(tmp_path, cm=cm))
    assert study.interventions.sort("start_day")["indication"].to_list() == ["infection", "infection", "CRS", None]
    assert "CRSX (1)" in _warn(study, "CMINDC")[0]


# ---------------------------------------------------------------------------------------------
# findings 3 and 6: unread event and CM terms are named; new event rows


def _events_folder(tmp_path: Path, pr_term: str) -> Path:
    """The review's edge/e3: NEUT 1.2, 1.3 on days 35, 45; an HSCT on day 60; NEUT <= 0.08 after it."""
    dm = ("STUDYID,USUBJID,RFSTDTC,RFXSTDTC,RFPENDTC,AGE,AGEU,SEX\nE,H1,2021-09-10,2021-09-10,2021-12-19,40,YEARS,F\n")
    ex = "STUDYID,USUBJID,EXSEQ,EXTRT,EXDOSE,EXDOSU,EXSTDTC\nE,H1,1,CAR-T,1,10^6 CELLS/KG,2021-09-10\n"
    import datetime as dt
    d0 = dt.date(2021, 9, 10)
    lb = "STUDYID,USUBJID,LBSEQ,LBTESTCD,LBSTRESC,LBSTRESN,LBSTRESU,LBSPEC,LBDTC\n" + "".join(
        f"E,H1,{i},NEUT,{v},{v},10^9/L,BLOOD,{d0 + dt.timedelta(days=d)}\n" for i, (d, v) in enumerate(
            ((-1, 2.0), (1, 0.3), (5, 0.2), (10, 0.6), (20, 1.8), (35, 1.2), (45, 1.3), (70, 0.05), (75, 0.04),
             (90, 0.08)), 1))
    pr = f"STUDYID,USUBJID,PRSEQ,PRTRT,PRSTDTC\nE,H1,1,{pr_term},{d0 + dt.timedelta(days=60)}\n"
    return _folder(tmp_path, dm=dm, ex=ex, lb=lb, pr=pr)


def test_allo_bmt_term_is_an_hsct(tmp_path):
    """PRTRT ALLOGENEIC BONE MARROW TRANSPLANT (new row) is allo_hsct on day 60. By hand (study format:
    late ICAHT runs from day 31 to the earliest of day 100, relapse, new therapy or HSCT): the window is
    days 31-60 with ANC 1.2 and 1.3, both <= 1.5 and > 1.0: EHA/EBMT 2023 late ICAHT grade 1. Before, the
    post-HSCT aplasia (0.04-0.08) was counted: grade 4."""
    study = read_sdtm(_events_folder(tmp_path, "ALLOGENEIC BONE MARROW TRANSPLANT"))
    assert study.events.select("event", "day").rows() == [("allo_hsct", 60.0)]
    assert derive_icaht(study)["icaht_late_grade"].item() == 1
    (tmp_path / "b").mkdir()
    pbsct = read_sdtm(_events_folder(tmp_path / "b", "Allogeneic peripheral blood stem cell transplant"))
    assert pbsct.events["event"].to_list() == ["allo_hsct"]


def test_unread_event_terms_warned(tmp_path):
    """The review's edge/e8: AEDECOD Brain oedema (not mapped: focal or diffuse is unknown) is named in
    one AE warning with its count and flagged; Generalised tonic-clonic seizure is a seizure (new row)."""
    ae = ("STUDYID,USUBJID,AESEQ,AETERM,AEDECOD,AEBODSYS,AETOXGR,AESTDTC\n"
          "E,A3,1,CEREBRAL EDEMA,Brain oedema,Nervous system disorders,4,2021-09-15\n"
          "E,A3,2,GENERALIZED SEIZURE,Generalised tonic-clonic seizure,Nervous system disorders,3,2021-09-16\n"
          "E,A2,3,NAUSEA,Nausea,Gastrointestinal disorders,1,2021-09-16\n"
          "E,A1,4,NAUSEA,Nausea,Gastrointestinal disorders,1,2021-09-17\n")
    study = read_sdtm(_folder(tmp_path, ae=ae))
    assert study.events.select("subject_id", "event", "day").rows() == [("A3", "seizure", 6.0)]
    msgs = [w for w in study.warnings if w.file == "ae.csv"]
    assert len(msgs) == 1
    m = msgs[0].message
    assert m.startswith("3 AE record(s)") and "Nausea (2)" in m and "Brain oedema (1)" in m
    assert "among them Brain oedema" in m and "Nausea" not in m.split("among them")[1]
    assert sorted(msgs[0].rows) == [1, 3, 4]
    # study format: seizure = ICANS grade 3
    assert _grade(derive_icans_summary(study), "A3", "icans_grade_astct") == 3


def test_unread_cm_term_warned(tmp_path):
    """The review's edge/e5: a salt name in CMTRT and CMDECOD is in no cm_terms row: not read, but named."""
    cm = ("STUDYID,USUBJID,CMSEQ,CMTRT,CMDECOD,CMINDC,CMSTDTC\n"
          "E,A1,1,NOREPINEPHRINE BITARTRATE,NOREPINEPHRINE BITARTRATE,CRS,2021-09-12\n")
    study = read_sdtm(_folder(tmp_path, cm=cm))
    assert study.interventions.height == 0
    msgs = [w.message for w in study.warnings if w.file == "cm.csv"]
    assert len(msgs) == 1 and "NOREPINEPHRINE BITARTRATE (1)" in msgs[0] and "cm_terms" in msgs[0]


# ---------------------------------------------------------------------------------------------
# findings 4, 7, 5: age, sex, weight and height


def test_age_on_day0_from_brthdtc(tmp_path):
    """The review's edge/e4: born 2009-09-08, CAR-T 2021-09-10: 12 completed years (the birthday was two
    days before), though DM.AGE says 11 (at the reference date). Born 2009-09-11: 11 (birthday the day
    after). ICE 6 on day 3 at age 12 is ICANS grade 2 (ASTCT 2019: ICE 3-6 = 2; ICE applies from 12)."""
    dm = ("STUDYID,USUBJID,RFSTDTC,RFXSTDTC,BRTHDTC,AGE,AGEU,SEX\n"
          "E4,W1,2021-09-04,2021-09-04,2009-09-08,11,YEARS,M\nE4,W2,2021-09-04,2021-09-04,2009-09-11,11,YEARS,M\n")
    ex = "STUDYID,USUBJID,EXSEQ,EXTRT,EXDOSE,EXDOSU,EXSTDTC\n" + "".join(
        f"E4,{u},1,CAR-T,1,10^6 CELLS/KG,2021-09-10\n" for u in ("W1", "W2"))
    qs = "STUDYID,USUBJID,QSSEQ,QSTESTCD,QSSTRESC,QSSTRESN,QSDTC\nE4,W1,1,ICE,6,6.0,2021-09-13\n"
    study = read_sdtm(_folder(tmp_path, dm=dm, ex=ex, qs=qs))
    s = study.subjects.sort("subject_id")
    assert s["age_years"].to_list() == [12.0, 11.0]
    assert s["source_note"].to_list() == ["age_years: completed years on day 0 from DM.BRTHDTC"] * 2
    assert _grade(derive_icans_summary(study), "W1", "icans_grade_astct") == 2


def test_age_from_age_noted_and_unknown_ageu_warned(tmp_path):
    """Without BRTHDTC: AGE/AGEU (40 MONTHS = 40/12 years), noted as the age at the reference date; a
    partial BRTHDTC is no day; AGEU YRS is in no table: age empty, one warning naming the record."""
    dm = ("STUDYID,USUBJID,RFSTDTC,RFXSTDTC,BRTHDTC,AGE,AGEU,SEX\n"
          "E,A1,2021-09-10,2021-09-10,,40,MONTHS,F\nE,A2,2021-09-10,2021-09-10,2009,40,YRS,F\n"
          "E,A3,2021-09-10,2021-09-10,2009-05,40,YEARS,F\n")
    study = read_sdtm(_folder(tmp_path, dm=dm))
    s = study.subjects.sort("subject_id")
    assert s["age_years"].to_list() == [pytest.approx(40 / 12), None, 40.0]
    assert "at the sponsor's reference date" in s["source_note"][0] and s["source_note"][1] is None
    msgs = _warn(study, "AGEU")
    assert len(msgs) == 1 and "USUBJID A2: AGE 40 AGEU 'YRS'" in msgs[0]


def test_sex_study_folder_vocabulary(tmp_path):
    """The study folder reads F/M/U in any case and female/male/unknown (cartlab.io.schema); X is none."""
    dm = ("STUDYID,USUBJID,RFSTDTC,RFXSTDTC,AGE,AGEU,SEX\n"
          "E,A1,2021-09-10,2021-09-10,40,YEARS,FEMALE\nE,A2,2021-09-10,2021-09-10,40,YEARS,m\n"
          "E,A3,2021-09-10,2021-09-10,40,YEARS,X\n")
    study = read_sdtm(_folder(tmp_path, dm=dm))
    assert study.subjects.sort("subject_id")["sex"].to_list() == ["F", "M", None]
    msgs = _warn(study, "SEX")
    assert len(msgs) == 1 and "USUBJID A3: SEX 'X'" in msgs[0]


def test_weight_height_from_vs(tmp_path):
    """The FHIR rule: the last measurement up to day 0, else the first after it. A1: weights on days -7
    (38), 0 (39) and 5 (41): 39; height only on day -7: 145. A2: weights on days 9 and 5 only: the first
    after day 0, day 5 (41). A3: SUPPDM WEIGHTKG 50 wins over VS."""
    vs = "STUDYID,USUBJID,VSSEQ,VSTESTCD,VSSTRESC,VSSTRESN,VSSTRESU,VSDTC\n" + "".join(
        f"E,{u},{i},{t},{v},{v},{unit},{dtc}\n" for i, (u, t, v, unit, dtc) in enumerate((
            ("A1", "WEIGHT", 38, "kg", "2021-09-03"), ("A1", "WEIGHT", 39, "kg", "2021-09-10"),
            ("A1", "WEIGHT", 41, "kg", "2021-09-15"), ("A1", "HEIGHT", 145, "cm", "2021-09-03"),
            ("A2", "WEIGHT", 45, "kg", "2021-09-19"), ("A2", "WEIGHT", 41, "kg", "2021-09-15"),
            ("A3", "WEIGHT", 60, "kg", "2021-09-03")), 1))
    suppdm = "STUDYID,RDOMAIN,USUBJID,IDVAR,IDVARVAL,QNAM,QLABEL,QVAL\nE,DM,A3,,,WEIGHTKG,Weight,50\n"
    study = read_sdtm(_folder(tmp_path, vs=vs, suppdm=suppdm))
    s = study.subjects.sort("subject_id")
    assert s["weight_kg"].to_list() == [39.0, 41.0, 50.0]
    assert s["height_cm"].to_list() == [145.0, None, None]
    assert "weight_kg from vs.csv record 2 (WEIGHT, day 0)" in s["source_note"][0]
    assert "height_cm from vs.csv record 4 (HEIGHT, day -7)" in s["source_note"][0]


# ---------------------------------------------------------------------------------------------
# finding 9: two laboratories at the same time are two measurements

LB_TWO = ("STUDYID,USUBJID,LBSEQ,LBTESTCD,LBNAM,LBSTRESC,LBSTRESN,LBSTRESU,LBSPEC,LBDTC\n"
          "E,A1,1,NEUT,{a},0.3,0.3,10^9/L,BLOOD,2021-09-13T06:00\nE,A1,2,NEUT,{b},0.35,0.35,10^9/L,BLOOD,2021-09-13T06:00\n")


def test_two_laboratories_are_two_measurements(tmp_path):
    """Records differing in LBNAM (central 0.3, local 0.35 at one time) are both kept with a warning (the
    documented rule: records that differ in a variable cartlab does not carry are two measurements); the
    same LBNAM with two values stays the conflict error."""
    study = read_sdtm(_folder(tmp_path, lb=LB_TWO.format(a="CENTRAL", b="LOCAL")))
    assert sorted(study.observations["value"].to_list()) == [0.3, 0.35]
    msgs = [w for w in study.warnings if w.file == "lb.csv"]
    assert len(msgs) == 1 and "LBNAM" in msgs[0].message and msgs[0].rows == [1, 2]
    (tmp_path / "b").mkdir()
    with pytest.raises(InputError, match="conflicting values"):
        read_sdtm(_folder(tmp_path / "b", lb=LB_TWO.format(a="CENTRAL", b="CENTRAL")))
