"""Session 34 SDTM reader fixes: a partial CAR-T date next to a dated one, SUPP-- keyed on --GRPID,
blood-count params from the dictionary's hematology group.

Expected values are derived by hand, never from cartlab's output:
* a partial --STDTC is a period: ``2021-05`` is 2021-05-01 .. 2021-05-31, ``2021`` is 2021-01-01 ..
  2021-12-31 (ISO 8601 reduced precision, SDTMIG 3.4 §4.4.4). A given CAR-T exposure whose period
  starts on or before the first fully dated CAR-T date may be the first infusion: day 0 is unknown
  (the FHIR reader's rule, session 34, tests/test_fhir_fix_s34.py). A period wholly after it changes
  nothing; then day = calendar days from day 0.
* SDTMIG 3.3/3.4 SUPP--: IDVAR "identifies the related record(s). Examples include --SEQ and
  --GRPID"; §8.3: IDVAR values "may have values that are unique for ... Groups of observations
  within a domain" (wiki.cdisc.org SDTMIG pages, quoted in /work/notes/review33_sdtm/REPORT.md B3).
* params_v1.yaml: WBC, NEUT, LYM, MONO, HGB, PLAT and PBBLAST are the params with
  ``group: hematology`` (read off the file by hand).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl
import pytest

import cartlab.io.sdtm.reader as sdtm_reader
from cartlab.io.dictionary import Param, load_dictionary
from cartlab.io.sdtm import read_sdtm

DM = ("STUDYID,DOMAIN,USUBJID,RFSTDTC,RFXSTDTC,RFPENDTC,AGE,AGEU,SEX,DTHDTC\n"
      "S,DM,P1,2021-05-05,2021-05-05,2021-08-09,40,YEARS,M,\n")
EXH = "STUDYID,DOMAIN,USUBJID,EXSEQ,EXTRT,EXDOSE,EXDOSU,EXSTDTC,EXOCCUR\n"
LBH = "STUDYID,DOMAIN,USUBJID,LBSEQ,LBGRPID,LBTESTCD,LBSTRESC,LBSTRESN,LBSTRESU,LBSPEC,LBDTC\n"
SUPPH = "STUDYID,RDOMAIN,USUBJID,IDVAR,IDVARVAL,QNAM,QLABEL,QVAL\n"


def folder(tmp_path: Path, **files: str) -> Path:
    d = tmp_path / "sdtm"
    d.mkdir()
    files.setdefault("dm", DM)
    for k, v in files.items():
        (d / f"{k}.csv").write_text(v, encoding="utf-8")
    return d


def ex_two_cart(partial: str, dated: str, occur: str = "") -> str:
    """records: 1 fludarabine 2021-05-05; 2 CAR-T with the partial date; 3 CAR-T fully dated."""
    return (EXH + "S,EX,P1,1,FLUDARABINE,30,MG/M2,2021-05-05,\n"
            f"S,EX,P1,2,CAR-T,1000000,CELLS/KG,{partial},{occur}\n"
            f"S,EX,P1,3,CAR-T,1000000,CELLS/KG,{dated},\n")


LB_CRP = LBH + "S,LB,P1,1,,CRP,12,12,mg/L,SERUM,2021-06-12\n"


# -- 1. a partial CAR-T date next to a dated one ----------------------------------------------------

@pytest.mark.parametrize("partial", ["2021-05", "2021-04", "2021", "--05-01"])
def test_partial_cart_on_or_before_the_dated_one_leaves_no_day0(tmp_path, partial):
    # 2021-05 includes 2021-05-20 (same month); 2021-04 lies before; 2021 includes it; no year: any time
    imp = read_sdtm(folder(tmp_path, ex=ex_two_cart(partial, "2021-05-20"), lb=LB_CRP), report=True)
    s = imp.study
    assert s.subjects["infusion_date"].to_list() == [None]
    assert s.observations.height == 0  # the CRP cannot be placed on a day
    (w,) = [w for w in s.warnings if "may fall on or before" in w.message]
    assert w.message.startswith(f"USUBJID P1: the CAR-T exposure's EXSTDTC is partial ({partial}, record 2), and "
                                "may fall on or before the first fully dated CAR-T exposure (record 3, 2021-05-20), "
                                "so the subject has no day 0")
    assert w.message.endswith("give the complete date of the CAR-T infusion in EXSTDTC")
    assert "RFXSTDTC" not in w.message and "ex_agents" not in w.message
    assert 2 in w.rows and 3 in w.rows
    (r,) = imp.report.filter(pl.col("file") == "lb.csv")["reason"].to_list()
    assert r.startswith(f"subject has no day 0 (the CAR-T exposure's EXSTDTC is partial ({partial}, record 2)")


def test_partial_month_including_a_timed_first_day_leaves_no_day0(tmp_path):
    # boundary: the period 2021-06-01 .. 06-30 starts on the dated CAR-T's day (2021-06-01T10:00)
    s = read_sdtm(folder(tmp_path, ex=ex_two_cart("2021-06", "2021-06-01T10:00"), lb=LB_CRP))
    assert s.subjects["infusion_date"].to_list() == [None]
    assert s.subjects["infusion_datetime"].to_list() == [None]
    assert [w for w in s.warnings if "(record 3, 2021-06-01T10:00)" in w.message]


DM2 = DM + "S,DM,P2,2021-05-05,2021-05-05,2021-08-09,41,YEARS,F,\n"
LB_CRP2 = LB_CRP + "S,LB,P2,1,,CRP,20,20,mg/L,SERUM,2021-06-12\n"


def two_subjects(p2_partial: str, p2_dated: str, p2_occur: str = "", p2_dose: str = "1000000") -> str:
    """P1: a given CAR-T 2021-05 next to 2021-05-20 (no day 0, the case fixed); P2: the control."""
    return (EXH + "S,EX,P1,1,CAR-T,1000000,CELLS/KG,2021-05,\n"
            "S,EX,P1,2,CAR-T,1000000,CELLS/KG,2021-05-20,\n"
            f"S,EX,P2,1,CAR-T,{p2_dose},CELLS/KG,{p2_partial},{p2_occur}\n"
            f"S,EX,P2,2,CAR-T,1000000,CELLS/KG,{p2_dated},\n")


def _days(s) -> dict[str, object]:
    return dict(s.subjects.select("subject_id", "infusion_date").iter_rows())


@pytest.mark.parametrize("dated,day", [("2021-05-20", 23.0), ("2021-05-31", 12.0)])
def test_partial_month_wholly_after_the_dated_one_keeps_day0(tmp_path, dated, day):
    # P2: 2021-06 starts 2021-06-01, after 2021-05-20 / 2021-05-31: day 0 stays the dated CAR-T;
    # CRP 2021-06-12 is day 23 from 2021-05-20 (11 days left of May + 12), day 12 from 2021-05-31
    s = read_sdtm(folder(tmp_path, dm=DM2, ex=two_subjects("2021-06", dated), lb=LB_CRP2))
    assert _days(s) == {"P1": None, "P2": dated}
    assert s.observations.select("subject_id", "day").rows() == [("P2", day)]
    assert [w.message[:12] for w in s.warnings if "no day 0" in w.message] == ["USUBJID P1: "]


def test_partial_cart_not_given_does_not_matter(tmp_path):
    # P2's partial record has EXOCCUR = N: not an exposure (SDTMIG), so it cannot be the first infusion
    s = read_sdtm(folder(tmp_path, dm=DM2, ex=two_subjects("2021-05", "2021-05-20", p2_occur="N"), lb=LB_CRP2))
    assert _days(s) == {"P1": None, "P2": "2021-05-20"}
    assert s.observations.select("subject_id", "day").rows() == [("P2", 23.0)]


def test_zero_dose_partial_cart_does_not_matter(tmp_path):
    # P2's partial record has EXDOSE 0: no CAR-T exposure (SDTMIG: a dose is not set to 0 to mean not given)
    s = read_sdtm(folder(tmp_path, dm=DM2, ex=two_subjects("2021-05", "2021-05-20", p2_dose="0"), lb=LB_CRP2))
    assert _days(s) == {"P1": None, "P2": "2021-05-20"}


# -- 2. SUPP-- keyed on --GRPID ------------------------------------------------------------------

LB_GRP = (LBH + "S,LB,P1,1,G1,CRP,12,12,mg/L,SERUM,2021-06-01\n"
          "S,LB,P1,2,G1,CRP,13,13,mg/L,SERUM,2021-06-02\n"
          "S,LB,P1,3,G2,CRP,14,14,mg/L,SERUM,2021-06-03\n"
          "S,LB,P1,4,,CRP,15,15,mg/L,SERUM,2021-06-04\n")
EX_ONE = EXH + "S,EX,P1,1,CAR-T,1000000,CELLS/KG,2021-05-20,\n"


def _obs(s) -> dict[int, tuple]:
    return {r["src_row"]: (r["source"], r["source_note"], r["extra"])
            for r in s.observations.select("src_row", "source", "source_note", "extra").to_dicts()}


def test_supp_keyed_on_grpid_qualifies_every_record_of_the_group(tmp_path):
    supp = (SUPPH + "S,LB,P1,LBGRPID,G1,SOURCE,Source,central lab\n"
            "S,LB,P1,LBGRPID,G1,LABREF,Lab ref,K-7\n"     # a QNAM not in `supp`: goes to extra
            "S,LB,P1,LBSEQ,3,SOURCE,Source,local lab\n")
    imp = read_sdtm(folder(tmp_path, ex=EX_ONE, lb=LB_GRP, supplb=supp), report=True)
    o = _obs(imp.study)
    assert o[1] == ("central lab", None, '{"LABREF": "K-7"}')
    assert o[2] == ("central lab", None, '{"LABREF": "K-7"}')
    assert o[3] == ("local lab", None, None)
    assert o[4] == (None, None, None)
    rep = imp.report.filter(pl.col("file") == "supplb.csv")
    assert rep["n_rows"].sum() == 3 and rep["n_mapped"].sum() == 3  # each SUPP record counted once
    assert not [w for w in imp.study.warnings if w.column == "IDVAR"]


def test_supp_grpid_and_seq_giving_one_record_a_qnam_twice(tmp_path):
    # LB record 1 gets SOURCE from its group and from its --SEQ: given twice, neither is used
    supp = (SUPPH + "S,LB,P1,LBGRPID,G1,SOURCE,Source,central lab\n"
            "S,LB,P1,LBSEQ,1,SOURCE,Source,local lab\n")
    imp = read_sdtm(folder(tmp_path, ex=EX_ONE, lb=LB_GRP, supplb=supp), report=True)
    o = _obs(imp.study)
    assert o[1][0] is None and o[2][0] is None
    reasons = imp.report.filter(pl.col("file") == "supplb.csv")["reason"].to_list()
    assert reasons == ["qualifier given twice for the same record"]


def test_supp_unresolved_idvar_is_reported_and_warned(tmp_path):
    supp = (SUPPH + "S,LB,P1,LBGRPID,G9,SOURCE,Source,x\n"        # no record of group G9
            "S,LB,P1,LBREFID,R1,SOURCE,Source,y\n"                # LB has no LBREFID
            "S,LB,P1,LBGRPID,G2,SRCNOTE,Note,checked\n")           # control: attached
    imp = read_sdtm(folder(tmp_path, ex=EX_ONE, lb=LB_GRP, supplb=supp), report=True)
    assert _obs(imp.study)[3] == (None, "checked", None)
    rep = dict(imp.report.filter(pl.col("file") == "supplb.csv").select("reason", "n_rows").iter_rows())
    assert rep == {"parent LB record not found (USUBJID/IDVAR/IDVARVAL)": 1,
                   "IDVAR LBREFID is not a variable of LB: parent record not found": 1, "mapped": 1}
    (w,) = [w for w in imp.study.warnings if w.column == "IDVAR"]
    assert w.file == "supplb.csv" and w.rows == [1, 2]
    assert "IDVAR LBGRPID, IDVARVAL G9 (USUBJID P1)" in w.message
    assert "IDVAR LBREFID, IDVARVAL R1 (USUBJID P1)" in w.message and "not attached to any LB record" in w.message


def test_supp_seq_matching_two_records_is_not_attached(tmp_path):
    # --SEQ names one record (unique per subject); two LB records with LBSEQ 1: ambiguous, not guessed
    lb = (LBH + "S,LB,P1,1,,CRP,12,12,mg/L,SERUM,2021-06-01\n"
          "S,LB,P1,1,,CRP,13,13,mg/L,SERUM,2021-06-02\n")
    supp = SUPPH + "S,LB,P1,LBSEQ,1,SOURCE,Source,central lab\n"
    imp = read_sdtm(folder(tmp_path, ex=EX_ONE, lb=lb, supplb=supp), report=True)
    assert imp.study.observations["source"].to_list() == [None, None]
    (w,) = [w for w in imp.study.warnings if w.column == "IDVAR"]
    assert "IDVAR LBSEQ, IDVARVAL 1 (USUBJID P1): IDVAR LBSEQ names several LB records" in w.message


# -- 3. blood counts: the dictionary's hematology group ---------------------------------------------

def test_blood_counts_are_the_dictionarys_hematology_group():
    from cartlab.io.sdtm.findings import blood_counts

    # by hand from params_v1.yaml (group: hematology)
    assert sorted(blood_counts(load_dictionary())) == sorted(["WBC", "NEUT", "LYM", "MONO", "HGB", "PLAT", "PBBLAST"])


def test_a_new_hematology_param_is_refused_from_a_non_blood_specimen(tmp_path, monkeypatch):
    d = load_dictionary()
    eos = Param(code="EOS", label="Absolute eosinophil count", group="hematology", unit="10^9/L", plausible=(0, 100))
    monkeypatch.setattr(sdtm_reader, "load_dictionary",
                        lambda: dataclasses.replace(d, params={**d.params, "EOS": eos}))
    lb = (LBH + "S,LB,P1,1,,EOS,0.3,0.3,10^9/L,CEREBROSPINAL FLUID,2021-06-01\n"
          "S,LB,P1,2,,EOS,0.4,0.4,10^9/L,BLOOD,2021-06-01\n")
    imp = read_sdtm(folder(tmp_path, ex=EX_ONE, lb=lb), report=True)
    assert imp.study.observations.select("src_row", "value").rows() == [(2, 0.4)]
    reasons = imp.report.filter(pl.col("file") == "lb.csv").sort("reason")["reason"].to_list()
    assert reasons == ["mapped", "specimen CEREBROSPINAL FLUID is not blood: not read as EOS (a blood count)"]
