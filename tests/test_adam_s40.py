"""Session 40 (review 40, ADaM): ADAE AEOUT of ICANS episodes (A1), UNKNOWN for an episode whose data
stop before the last follow-up (B1), AEOUT cited as the SDTM AE variable with codelist OUT (C2), the
end of an episode bounded only by later days as a range (B3), ADLB with the ungraded labs (B2).

Hand-written studies, every subject infused 2024-01-10 (CAR-T day 0). Expected values are worked
out by hand from the rows and the standards' text (CDISC CT codelist OUT C66768: FATAL, NOT
RECOVERED/NOT RESOLVED, RECOVERED/RESOLVED, ..., UNKNOWN; ASTCT 2019: ICE 3-6 = ICANS grade 2,
ICE 0-2 = grade 3, death due to ICANS = grade 5, Tmax >= 38.0 C = CRS grade 1; ADY has no day 0).
"""

from __future__ import annotations

import polars as pl

from cartlab.analyze import Analysis
from cartlab.io.adam import adam_frames
from cartlab.io.adam.spec import load_spec
from cartlab.io.study_folder import read_study

ICANS = "Immune effector cell-associated neurotoxicity syndrome"
CRS = "Cytokine release syndrome"


def _study(tmp_path, subjects: str, obs: list[str], events: str = ""):
    d = tmp_path / "study"
    d.mkdir()
    ids = [line.split(",")[0] for line in subjects.strip().splitlines()]
    (d / "subjects.csv").write_text("subject_id,sex,age_years,disease,target,infusion_date,last_followup_day\n"
                                    + subjects.strip() + "\n")
    (d / "doses.csv").write_text("subject_id,day,agent,dose,unit\n" + "".join(f"{i},0,CAR-T,1,10^6 cells/kg\n" for i in ids))
    (d / "observations.csv").write_text("subject_id,day,param,value,unit\n" + "\n".join(obs) + "\n")
    (d / "events.csv").write_text("subject_id,day,event,detail,attribution\n" + events)
    (d / "interventions.csv").write_text("subject_id,start_day,end_day,category,agent,dose,dose_unit,o2_device,"
                                         "o2_flow_lpm,fio2,indication\n")
    return read_study(d)


def _temp(sid, days, t):
    return [f"{sid},{d},TEMP,{t},C" for d in days]


def _ice(sid, days, score):
    return [f"{sid},{d},ICE,{score},points" for d in days]


def _adae(study, **options) -> dict:
    f = adam_frames(Analysis(study), datasets=["ADAE"], options=options or None)["ADAE"]
    return {(r["USUBJID"], r["AETERM"], r["AESEQ"]): r for r in f.iter_rows(named=True)}


def _ends(tmp_path):
    # A: CRS fever (39.2 C) days 2-4, no row after day 4, followed to day 30
    # B: ICE 10 days 0-2, ICE 5 (grade 2) days 3-5, never assessed after day 5, TEMP 37.0 to day 8, followed to day 30
    # H: CRS fever days 2-4 and again on day 30 (the last follow-up day): still graded at the end of follow-up
    obs = (_temp("A", [0, 1], 37.0) + _temp("A", [2, 3, 4], 39.2)
           + _temp("B", range(9), 37.0) + _ice("B", [0, 1, 2], 10) + _ice("B", [3, 4, 5], 5)
           + _temp("H", [0, 1], 37.0) + _temp("H", range(2, 31), 39.2))
    return _study(tmp_path, "A,M,50,B-ALL,CD19,2024-01-10,30\nB,F,40,B-ALL,CD19,2024-01-10,30\n"
                            "H,M,55,B-ALL,CD19,2024-01-10,30", obs)


def test_icans_and_crs_not_seen_resolved_have_no_end_and_unknown_outcome(tmp_path):
    rows = _adae(_ends(tmp_path))
    # A1: B's ICANS (days 3-5 grade 2 by ICE 5) never assessed again while followed to day 30: the end is
    # not known -> no AENDY/AENRLDY/AENDT/ADURN, outcome UNKNOWN (before: AENDY 6, ADURN 3, AEOUT empty)
    b = rows[("B", ICANS, 1)]
    assert (b["ASTDY"], b["ATOXGRN"], b["AEOUT"], b["AENDY"], b["AENRLDY"], b["ADURN"], b["ADURU"]) == \
        (4, 2, "UNKNOWN", None, None, None, None)
    assert b["REASON"].startswith("AEOUT UNKNOWN: not seen resolved") and "last follow-up day 30" in b["REASON"]
    # B1: A's CRS (days 2-4) with nothing recorded after day 4, followed to day 30: UNKNOWN, not "not resolved"
    a = rows[("A", CRS, 1)]
    assert (a["AEOUT"], a["AENDY"], a["ADURN"]) == ("UNKNOWN", None, None)
    # H: fever still recorded on day 30 = last follow-up: observed ongoing -> NOT RECOVERED/NOT RESOLVED
    h = rows[("H", CRS, 1)]
    assert (h["AEOUT"], h["AENDY"], h["ADURN"]) == ("NOT RECOVERED/NOT RESOLVED", None, None)


def test_option_aeout_unobserved_not_resolved(tmp_path):
    rows = _adae(_ends(tmp_path), aeout_unobserved="not_resolved")
    for key in (("A", CRS, 1), ("B", ICANS, 1)):
        assert rows[key]["AEOUT"] == "NOT RECOVERED/NOT RESOLVED" and rows[key]["AENDY"] is None
        assert "adam.aeout_unobserved=not_resolved" in rows[key]["REASON"]


def test_fatal_icans_is_fatal(tmp_path):
    # E: ICE 2 (grade 3) days 3-5, death on day 5 attributed to ICANS -> grade 5, "death due to ICANS":
    # AEOUT FATAL as a CRS death (before: empty, which chevron AET01 counts as resolved)
    obs = _temp("E", range(6), 37.0) + _ice("E", [0, 1, 2], 10) + _ice("E", [3, 4, 5], 2)
    st = _study(tmp_path, "E,F,40,B-ALL,CD19,2024-01-10,", obs, "E,5,death,cerebral edema,ICANS\n")
    e = _adae(st)[("E", ICANS, 1)]
    assert (e["ATOXGRN"], e["AEOUT"]) == (5, "FATAL")
    assert e["AENRGFL"] == "N" and e["ADURNUP"] == e["ADURN"]  # ended at death: a settled end


def test_end_bounded_only_by_the_next_episode_is_a_range(tmp_path):
    # G: 37.0 day 0, 39.2 days 2-3, no row days 4-11, 39.2 days 12-13, 37.0 days 14, 15, 30.
    # Episode 1: last CRS day 3, first settled CRS-free day none before episode 2 starts on day 12:
    # end between day 3 and day 11 -> ADURN 2 (days 2-3, shortest), ADURNUP 10 (days 2-11), AENRGFL Y.
    # Episode 2: days 12-13, day 14 graded 0 -> settled, ADURN 2 = ADURNUP, AENRGFL N; AENDY = day 13 + 1 = 14.
    obs = _temp("G", [0], 37.0) + _temp("G", [2, 3, 12, 13], 39.2) + _temp("G", [14, 15, 30], 37.0)
    rows = _adae(_study(tmp_path, "G,M,50,B-ALL,CD19,2024-01-10,30", obs))
    g1, g2 = rows[("G", CRS, 1)], rows[("G", CRS, 2)]
    assert (g1["AEOUT"], g1["AENDY"], g1["ADURN"], g1["ADURNUP"], g1["AENRGFL"]) == ("RECOVERED/RESOLVED", 4, 2, 10, "Y")
    assert g1["REASON"].startswith("end between day 3 and day 11")
    assert (g2["AEOUT"], g2["AENDY"], g2["ADURN"], g2["ADURNUP"], g2["AENRGFL"]) == ("RECOVERED/RESOLVED", 14, 2, 2, "N")


def test_aeout_cited_as_sdtm_ae_with_codelist_out():
    spec = load_spec()
    ae = spec.datasets["ADAE"]
    out = ae.variable("AEOUT")
    assert out.cite == "ct_out" and "OUT" in out.derivation and "UNKNOWN" in out.derivation
    # blanked by the export for an episode not seen resolved: a derivation, not a copy
    assert ae.variable("AENRLDY").origin == "Derived" and ae.variable("ADURN").origin == "Derived"
    assert "review 40" not in out.derivation and "review 40" not in ae.variable("AENDY").derivation


def test_adlb_carries_the_ungraded_labs(tmp_path):
    # S: CRP (no CTCAE v5 term) on days -1, 3, 7 and NEUT (graded) on days -1, 3. With the default
    # adam.adlb_params=all: three CRP records, grades empty, baseline the day -1 value (10 mg/L):
    # CHG on day 3 = 80 - 10 = 70, PCHG = 700; the NEUT records are the same as with "graded".
    obs = (["S,-1,CRP,10,mg/L", "S,3,CRP,80,mg/L", "S,7,CRP,20,mg/L"]
           + ["S,-1,NEUT,2.0,10^9/L", "S,3,NEUT,0.4,10^9/L"])
    st = _study(tmp_path, "S,F,40,B-ALL,CD19,2024-01-10,30", obs)
    every = adam_frames(Analysis(st), datasets=["ADLB"])["ADLB"]
    graded = adam_frames(Analysis(st), datasets=["ADLB"], options={"adlb_params": "graded"})["ADLB"]
    crp = every.filter(pl.col("PARAMCD") == "CRP").sort("ARELDY")
    assert crp["AVAL"].to_list() == [10.0, 80.0, 20.0] and crp["ATOXGR"].null_count() == 3
    assert crp["ABLFL"].to_list() == ["Y", None, None] and crp["CHG"].to_list()[1] == 70.0
    assert crp["PCHG"].to_list()[1] == 700.0 and crp["ADY"].to_list() == [-1, 4, 8]
    assert crp["REASON"].str.contains("no CTCAE v5 term").all()
    assert graded.filter(pl.col("PARAMCD") == "CRP").height == 0
    assert every.head(graded.height).equals(graded)  # the graded records are unchanged and come first


def test_icans_resolved_after_unassessed_days_is_a_range(tmp_path):
    # B: ICE 5 (grade 2) days 3-5, no ICE days 6-7, ICE 10 (grade 0, LOC not recorded: read as awake by
    # the default option) on day 8: ICANS-free seen on day 8, so RECOVERED/RESOLVED, end between day 5
    # and day 7 -> AENDY 6 (day 5 + 1), ADURN 3 (days 3-5), ADURNUP 5 (days 3-7), AENRGFL Y
    obs = _temp("B", range(9), 37.0) + _ice("B", [0, 1, 2], 10) + _ice("B", [3, 4, 5], 5) + _ice("B", [8], 10)
    b = _adae(_study(tmp_path, "B,F,40,B-ALL,CD19,2024-01-10,30", obs))[("B", ICANS, 1)]
    assert (b["AEOUT"], b["AENDY"], b["ADURN"], b["ADURNUP"], b["AENRGFL"]) == ("RECOVERED/RESOLVED", 6, 3, 5, "Y")
    assert b["REASON"].startswith("end between day 5 and day 7")
