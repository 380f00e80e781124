"""review38 (SDTM reader, second pass) fixes: partial death / event / end dates are never dropped in
silence, DTHFL / AESDTH are read, marrow blasts only from marrow, unmapped codes and RS results are
warned about, mixed UTC offsets are warned about, --DY may place a record.

Expected values are derived by hand from the text quoted in /work/notes/review38_sdtm/REPORT.md and
/work/notes/fix38_sdtm/REPORT.md (SDTMIG DM DTHFL "Should be populated even when the death date is
unknown"; ADaM partial-date imputation: the earliest day of the partial period, not before the last
known alive date; SDTMIG 4.4.4 --DY "there is no study day 0"; the study format: "A missing end means a
single administration at the start time"), by calendar arithmetic written out in the comments, never
copied from cartlab's output. Day 0 = 2021-05-10 (the CAR-T EXSTDTC) in every folder below.
"""

from __future__ import annotations

import polars as pl
import pytest

from cartlab.errors import InputError
from cartlab.io.sdtm import read_sdtm
from sdtm_helpers import DM, EX, LBH, deaths, folder, msgs  # noqa: F401  (shared with test_mend2_s38)

# A1: deaths -------------------------------------------------------------------------------------

def test_partial_dthdtc_is_a_death_on_the_first_day_of_the_month(tmp_path):
    s = read_sdtm(folder(tmp_path, dm=DM.format(fl="Y", dth="2021-07")))
    # 2021-07-01 - 2021-05-10 = 21 (rest of May) + 30 (June) + 1 = day 52; the last record is day 0
    assert deaths(s) == [52]
    ev = s.events.filter(pl.col("event") == "death").row(0, named=True)
    assert "imputed" in ev["detail"] and "DTHDTC" in ev["detail"] and "record 1" in ev["detail"]
    assert any("USUBJID P1" in m and "DTHDTC '2021-07' is partial" in m for m in msgs(s))


def test_partial_death_not_before_the_last_record(tmp_path):
    lb = LBH + "S,LB,P1,1,CRP,5,5,mg/L,,2021-07-10\n"
    s = read_sdtm(folder(tmp_path, dm=DM.format(fl="Y", dth="2021-07"), lb=lb))
    # last known alive 2021-07-10 = day 52 + 9 = 61, inside July: the death is not before it
    assert deaths(s) == [61]


def test_partial_death_with_records_after_the_period(tmp_path):
    lb = LBH + "S,LB,P1,1,CRP,5,5,mg/L,,2021-08-05\n"
    s = read_sdtm(folder(tmp_path, dm=DM.format(fl="Y", dth="2021-07"), lb=lb))
    # admiral min_dates: "Only dates which are in the range of possible dates of the dtc value are
    # considered": 2021-08-05 is outside July, so the first day of July (day 52) stays, with a warning
    assert deaths(s) == [52]
    assert any("records after the period" in m for m in msgs(s))


def test_partial_death_drop_option_warns(tmp_path):
    s = read_sdtm(folder(tmp_path, dm=DM.format(fl="Y", dth="2021-07")), partial_death_dates="drop")
    assert deaths(s) == []
    w = [m for m in msgs(s) if "censored at the last day known alive although the subject died" in m]
    assert len(w) == 1 and "DTHDTC '2021-07' is partial and not read" in w[0]  # one warning, not also "no date"


def test_dthfl_without_date_warns_and_invents_no_day(tmp_path):
    s = read_sdtm(folder(tmp_path, dm=DM.format(fl="Y", dth="")))
    assert deaths(s) == []
    assert any("USUBJID P1: died (DTHFL = Y)" in m and "give DTHDTC" in m for m in msgs(s))


def test_ae_fatal_without_death_date_warns(tmp_path):
    ae = ("STUDYID,DOMAIN,USUBJID,AESEQ,AETERM,AEDECOD,AESTDTC,AEOUT,AESDTH\n"
          "S,AE,P1,1,SEPSIS,SEPSIS,2021-06-01,FATAL,Y\n")
    s = read_sdtm(folder(tmp_path, ae=ae))
    assert deaths(s) == []
    assert any("USUBJID P1: died (AESDTH = Y / AEOUT = FATAL)" in m for m in msgs(s))


def test_ds_death_with_partial_date(tmp_path):
    ds = "STUDYID,DOMAIN,USUBJID,DSSEQ,DSTERM,DSDECOD,DSSTDTC\nS,DS,P1,1,DEATH,DEATH,2021-07\n"
    s = read_sdtm(folder(tmp_path, ds=ds))
    assert deaths(s) == [52]  # as above: 2021-07-01 is day 52
    assert s.events.filter(pl.col("event") == "death")["src_file"].to_list() == ["ds.csv"]


# A2: partial / ongoing CM ends --------------------------------------------------------------------

CMH = "STUDYID,DOMAIN,USUBJID,CMSEQ,CMTRT,CMINDC,CMSTDTC,CMENDTC,CMENRTPT\n"


def test_partial_cm_end_keeps_the_record_as_a_missing_end(tmp_path):
    cm = CMH + "S,CM,P1,1,NOREPINEPHRINE,CRS,2021-05-12,2021-05,\n"
    s = read_sdtm(folder(tmp_path, cm=cm))
    iv = s.interventions.row(0, named=True)
    # 2021-05-12 is day 2; the end is unknown: the study format's missing end (one administration)
    assert (iv["start_day"], iv["end_day"], iv["category"]) == (2, None, "vasopressor")
    assert "CMENDTC partial ('2021-05')" in iv["source_note"]
    assert any("partial CMENDTC" in m for m in msgs(s))


def test_ongoing_cm_continues_to_rfpendtc(tmp_path):
    cm = CMH + "S,CM,P1,1,NOREPINEPHRINE,CRS,2021-05-12,,ONGOING\n"
    s = read_sdtm(folder(tmp_path, cm=cm))
    iv = s.interventions.row(0, named=True)
    # RFPENDTC 2021-09-09: 21 (May) + 30 + 31 + 31 + 9 = day 122
    assert (iv["start_day"], iv["end_day"]) == (2, 122)
    assert "DM.RFPENDTC" in iv["source_note"]


# A3: partial event starts -----------------------------------------------------------------------

CEH = "STUDYID,DOMAIN,USUBJID,CESEQ,CETERM,CEDECOD,CESTDTC\n"


@pytest.mark.parametrize("partial_dates", ["skip", "impute"])
def test_partial_seizure_is_kept_not_before_day_0(tmp_path, partial_dates):
    ce = CEH + "S,CE,P1,1,SEIZURE,SEIZURE,2021-05\n"
    s = read_sdtm(folder(tmp_path, ce=ce), partial_dates=partial_dates)
    # May 2021 = days -9..21: contains day 0, so the first day not before day 0 is day 0
    assert s.events.select("event", "day").rows() == [("seizure", 0)]
    assert "CESTDTC partial ('2021-05')" in s.events["source_note"][0]
    assert any("partial CESTDTC" in m for m in msgs(s))


def test_partial_event_wholly_before_day_0_keeps_its_first_day(tmp_path):
    ce = CEH + "S,CE,P1,1,SEIZURE,SEIZURE,2021-04\n"
    s = read_sdtm(folder(tmp_path, ce=ce))
    # 2021-04-01 .. 05-10 = 30 (April) + 9 = 39 days before day 0
    assert s.events["day"].to_list() == [-39]


# B1: blasts by specimen --------------------------------------------------------------------------

def test_bmblast_from_blood_is_pbblast_and_from_csf_is_not_read(tmp_path):
    lb = (LBH + "S,LB,P1,1,BMBLAST,30,30,%,BONE MARROW,2021-06-09\n"
          "S,LB,P1,2,BMBLAST,4,4,%,BLOOD,2021-06-09\n"
          "S,LB,P1,3,BMBLAST,2,2,%,CEREBROSPINAL FLUID,2021-06-09\n")
    imp = read_sdtm(folder(tmp_path, lb=lb), report=True)
    obs = imp.study.observations.sort("src_row").select("param", "value", "src_row").rows()
    assert obs == [("BMBLAST", 30, 1), ("PBBLAST", 4, 2)]
    rep = imp.report.filter(pl.col("file") == "lb.csv")["reason"].to_list()
    assert any("is not bone marrow: not read as BMBLAST" in r for r in rep)
    assert any("read as PBBLAST" in m for m in msgs(imp.study))


# B2: unmapped codes -------------------------------------------------------------------------------

def test_unmapped_test_codes_are_warned_with_counts(tmp_path):
    lb = (LBH + "S,LB,P1,1,INTLK6,100,100,pg/mL,,2021-05-12\n"
          "S,LB,P1,2,NEUTLE,40,40,%,,2021-05-12\nS,LB,P1,3,NEUTLE,41,41,%,,2021-05-13\n")
    s = read_sdtm(folder(tmp_path, lb=lb))
    w = [m for m in msgs(s) if "test code not in the mapping" in m]
    assert len(w) == 1 and "NEUTLE (2), INTLK6 (1)" in w[0]


# B6: mixed UTC offsets ----------------------------------------------------------------------------

def test_mixed_utc_offsets_warn(tmp_path):
    ex = EX.replace("CELLS/KG,2021-05-10\n", "CELLS/KG,2021-05-10T14:00+02:00\n")
    lb = LBH + "S,LB,P1,1,CRP,50,50,mg/L,,2021-05-10T13:00Z\n"
    s = read_sdtm(folder(tmp_path, ex=ex, lb=lb))
    assert any("different UTC offsets" in m and "+00:00" in m and "+02:00" in m for m in msgs(s))


def test_one_offset_does_not_warn(tmp_path):
    ex = EX.replace("CELLS/KG,2021-05-10\n", "CELLS/KG,2021-05-10T14:00+02:00\n")
    lb = LBH + "S,LB,P1,1,CRP,50,50,mg/L,,2021-05-10T15:00+02:00\n"
    s = read_sdtm(folder(tmp_path, ex=ex, lb=lb))
    assert not any("different UTC offsets" in m for m in msgs(s))


# B4: RS -------------------------------------------------------------------------------------------

def test_rs_results_not_read_are_counted_and_detail_is_the_result(tmp_path):
    rs = ("STUDYID,DOMAIN,USUBJID,RSSEQ,RSTESTCD,RSORRES,RSSTRESC,RSDTC\n"
          "S,RS,P1,1,OVRLRESP,CR,CR,2021-06-10\nS,RS,P1,2,OVRLRESP,PD,PD,2021-08-10\n"
          "S,RS,P1,3,OVRLRESP,Relapse from CR,RELAPSE,2021-08-20\n")
    s = read_sdtm(folder(tmp_path, rs=rs))
    # 2021-08-20 - 2021-05-10 = 21 + 30 + 31 + 20 = day 102
    assert s.events.select("event", "day", "detail").rows() == [("relapse", 102, "Relapse from CR")]
    w = [m for m in msgs(s) if "RS result(s) not read" in m]
    assert len(w) == 1 and w[0].startswith("2 RS result(s) not read: CR (1), PD (1)")


# B3: --DY -----------------------------------------------------------------------------------------

LBDY = ("STUDYID,DOMAIN,USUBJID,LBSEQ,LBTESTCD,LBSTRESC,LBSTRESN,LBSTRESU,LBDTC,LBDY\n"
        "S,LB,P1,1,CRP,50,50,mg/L,,3\nS,LB,P1,2,CRP,20,20,mg/L,,-1\n")


def test_dy_only_records_warn_by_default(tmp_path):
    s = read_sdtm(folder(tmp_path, lb=LBDY))
    assert s.observations.height == 0
    assert any(m.startswith("2 record(s) with LBDY but no date in LBDTC were not read") for m in msgs(s))


def test_study_day_fallback_places_from_dy(tmp_path):
    s = read_sdtm(folder(tmp_path, lb=LBDY), study_day_fallback=True)
    # SDTMIG: day 1 = RFSTDTC (= day 0 here), no day 0: LBDY 3 -> day 2, LBDY -1 -> day -1
    assert sorted(s.observations.select("day", "value").rows()) == [(-1, 20), (2, 50)]
    assert all("day from LBDY" in n for n in s.observations["source_note"])


def test_study_day_zero_is_an_error(tmp_path):
    lb = LBDY.replace(",,3\n", ",,0\n")
    with pytest.raises(InputError, match="LBDY.*no study day 0"):
        read_sdtm(folder(tmp_path, lb=lb), study_day_fallback=True)


# C1 -----------------------------------------------------------------------------------------------

def test_empty_stresu_message(tmp_path):
    lb = LBH + "S,LB,P1,1,CRP,50,50,,,2021-05-12\n"
    with pytest.raises(InputError) as e:
        read_sdtm(folder(tmp_path, lb=lb))
    assert "LBSTRESU is empty: give the unit of LBSTRESN" in str(e.value)
    assert "got None" not in str(e.value)


# C4 -----------------------------------------------------------------------------------------------

def test_semicolon_csv_gets_a_delimiter_hint(tmp_path):
    dm = DM.format(fl="", dth="").replace(",", ";")
    with pytest.raises(InputError, match="containing ';': the file is not comma-separated"):
        read_sdtm(folder(tmp_path, dm=dm))


# C2 -----------------------------------------------------------------------------------------------

def test_write_sdtm_states_the_death_in_dm(tmp_path):
    from cartlab.io.sdtm import write_sdtm

    ds = "STUDYID,DOMAIN,USUBJID,DSSEQ,DSTERM,DSDECOD,DSSTDTC\nS,DS,P1,1,DEATH,DEATH,2021-07-20\n"
    s = read_sdtm(folder(tmp_path, ds=ds))
    out = write_sdtm(s, tmp_path / "out")
    dm = pl.read_csv(out / "dm.csv", infer_schema_length=0)
    # SDTMIG DM: DTHFL "Y", DTHDTC the date of death; RFPENDTC 2021-09-09 was read as last follow-up (day 122)
    assert dm.select("DTHFL", "DTHDTC", "RFPENDTC").row(0) == ("Y", "2021-07-20", "2021-09-09")
    assert pl.read_csv(out / "ds.csv", infer_schema_length=0)["DSCAT"].to_list() == ["DISPOSITION EVENT"]
