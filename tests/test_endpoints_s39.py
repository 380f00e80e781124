"""Session 39 fixes of the time-to-event endpoints (review 39: A1, B1, B2, B3, B4).

Expected values are derived by hand from the texts quoted in each test (ELN 2022 Table 9, the study
format spec "Time", CDISC ADTTE / admiral for the source variables), never copied from cartlab output.
"""

from __future__ import annotations

import warnings

import polars as pl
import pytest

from cartlab.model import Study, conform
from cartlab.response.endpoints import EndpointOptions, derive_adtte, endpoint_definitions, km_estimate


def _study(subjects, doses=(), events=(), obs=(), absent=frozenset()):
    """A tiny Study: ``subjects`` (sid, last_followup_day), ``doses`` (sid, day, agent) as doses.csv rows
    1.., ``events`` (sid, day, event) as events.csv rows 1.., ``obs`` (sid, day, param, value)."""
    subj = conform(pl.DataFrame([{"src_file": "subjects.csv", "src_row": i + 1, "subject_id": s,
                                  "last_followup_day": None if fu is None else float(fu)}
                                 for i, (s, fu) in enumerate(subjects)],
                                schema_overrides={"last_followup_day": pl.Float64}), "subjects")

    def table(name, rows, make):
        data = [{"src_file": f"{name}.csv", "src_row": i + 1, **make(r)} for i, r in enumerate(rows)]
        return conform(pl.DataFrame(data), name) if data else conform(pl.DataFrame(), name).clear()

    return Study("t", subjects=subj,
                 doses=table("doses", doses, lambda r: {"subject_id": r[0], "day": float(r[1]), "agent": r[2],
                                                        "dose": 1e6, "unit": "cells/kg"}),
                 events=table("events", events, lambda r: {"subject_id": r[0], "day": float(r[1]), "event": r[2]}),
                 observations=table("observations", obs, lambda r: {"subject_id": r[0], "day": float(r[1]),
                                                                    "param": r[2], "value": r[3]}),
                 absent=frozenset(absent))


def _resp(rows):
    return pl.DataFrame([{"subject_id": s, "best_response": c, "best_response_day": float(d), "evidence": refs}
                         for s, c, d, refs in rows],
                        schema={"subject_id": pl.String, "best_response": pl.String, "best_response_day": pl.Float64,
                                "evidence": pl.List(pl.String)})


def _run(study, resp, relapses=None, **opts):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = derive_adtte(study, EndpointOptions(**opts), responses=resp, relapses=relapses)
    return out, [str(x.message) for x in w]


def _row(t, sid, p):
    r = t.filter((pl.col("subject_id") == sid) & (pl.col("PARAMCD") == p))
    assert r.height == 1
    return r.row(0, named=True)


# --- A1: a subject without a CAR-T dose ---------------------------------------------------------

def _a1_study(absent=frozenset()):
    # X1 dead on day 50, X2 alive to day 100, both infused on day 0 (doses.csv:1-2); N1 has no CAR-T
    # dose row, a CR on day 28 and follow-up to day 200 (review 39 probe p2, N1)
    doses = [] if "doses" in absent else [("X1", 0, "CAR-T"), ("X2", 0, "CAR-T")]
    return _study([("X1", 200), ("X2", 100), ("N1", 200)], doses=doses, events=[("X1", 50, "death")],
                  absent=absent), _resp([("X1", "NR", 28, ["o:1"]), ("X2", "CR", 28, ["o:2"]),
                                         ("N1", "CR", 28, ["o:3"])])


def test_a1_not_infused_subject_is_not_counted():
    # spec "Time": day 0 is the first CAR-T infusion; N1 has none while the study records doses, so it has no
    # day 0 (the same reading as best_response.rate_population=infused): no OS/EFS/RFS/LFS/CIR counted
    s, r = _a1_study()
    t, w = _run(s, r, efs_landmark_day=28)
    for p in ("OS", "EFS", "RFS", "LFS", "CIR"):
        row = _row(t, "N1", p)
        assert (row["ANLFL"], row["AVAL"], row["CNSR"], row["rule"]) == (None, None, None, "not_infused")
        assert "no CAR-T dose" in row["reason"] and p in row["reason"]
    assert any("1 subject(s) have no CAR-T dose" in m and "N1" in m for m in w)
    # KM n of OS = the 2 infused subjects (X1 event at 50, X2 censored at 100): 2 at risk at 0, S(50) = 1/2
    km = km_estimate(t, "OS")
    assert km.filter(pl.col("time") == 0)["n_at_risk"].to_list() == [2]
    assert km.filter(pl.col("time") == 50)["survival"].to_list() == [pytest.approx(0.5)]
    os_rows = t.filter((pl.col("PARAMCD") == "OS") & (pl.col("ANLFL") == "Y"))
    assert sorted(os_rows["subject_id"].to_list()) == ["X1", "X2"]


def test_a1_population_all_and_unknown_doses_keep_the_subject():
    s, r = _a1_study()
    t, _ = _run(s, r, efs_landmark_day=28, population="all")
    # before session 39: N1 from day 0, OS censored at its last_followup_day 200
    assert (_row(t, "N1", "OS")["ANLFL"], _row(t, "N1", "OS")["AVAL"]) == ("Y", 200.0)
    # doses.csv not given: doses unknown, day 0 is the infusion for everybody (spec "Time")
    s, r = _a1_study(absent={"doses"})
    t, w = _run(s, r, efs_landmark_day=28)
    assert (_row(t, "N1", "OS")["ANLFL"], _row(t, "N1", "OS")["AVAL"]) == ("Y", 200.0)
    assert not any("no CAR-T dose" in m for m in w)
    with pytest.raises(ValueError, match="population"):
        EndpointOptions(population="treated")


# --- B1: follow-up ending before the EFS landmark ---------------------------------------------

def test_b1_short_followup_is_not_a_treatment_failure():
    # ELN 2022 EFS: treatment failure = "not achieving either CR, CRh or CRi by a pre-defined landmark".
    # E1: NR on day 14, last seen on day 20, landmark 28 -> remission by day 28 unknown: censored at day 0
    # (not evaluable by the landmark). F1: NR on day 14, followed to day 40 -> shown not in CR by day 28: event
    s = _study([("E1", 20), ("F1", 40)], doses=[("E1", 0, "CAR-T"), ("F1", 0, "CAR-T")])
    r = _resp([("E1", "NR", 14, ["observations.csv:1"]), ("F1", "NR", 14, ["observations.csv:2"])])
    t, _ = _run(s, r, efs_landmark_day=28)
    e1 = _row(t, "E1", "EFS")
    assert (e1["AVAL"], e1["CNSR"], e1["EVENT"], e1["rule"]) == (0.0, 1, 0, "efs.followup_before_landmark")
    assert "day 20" in e1["reason"] and "day 28" in e1["reason"] and "NR on day 14" in e1["reason"]
    assert e1["CNSDTDSC"] == "NOT EVALUABLE FOR RESPONSE"
    assert "efs.followup_before_landmark" in {x["id"] for x in endpoint_definitions()["rules"]}
    f1 = _row(t, "F1", "EFS")
    assert (f1["AVAL"], f1["CNSR"], f1["rule"]) == (0.0, 0, "efs.treatment_failure")
    # option event: the reading before session 39
    t, _ = _run(s, r, efs_landmark_day=28, efs_short_followup="event")
    assert (_row(t, "E1", "EFS")["CNSR"], _row(t, "E1", "EFS")["rule"]) == (0, "efs.treatment_failure")


# --- B2: SRCDOM of a relapse derived from the marrow ----------------------------------------------

def test_b2_marrow_relapse_srcdom_is_observations():
    # P3 (probe p1): CR on day 28, relapse derived from the day-90 marrow (observations.csv:2), no events row
    s = _study([("P3", 200)], doses=[("P3", 0, "CAR-T")], obs=[("P3", 28, "BMBLAST", 2.0), ("P3", 90, "BMBLAST", 30.0)])
    r = _resp([("P3", "CR", 28, ["observations.csv:1"])])
    rel = pl.DataFrame({"subject_id": ["P3"], "relapse_day": [90.0], "evidence": [["observations.csv:2"]]})
    t, _ = _run(s, r, relapses=rel, efs_landmark_day=28)
    for p in ("EFS", "RFS", "LFS", "CIR"):
        row = _row(t, "P3", p)
        assert (row["ADY"], row["SRCDOM"]) == (90.0, "observations")
        assert "observations.csv:2" in row["evidence"]


# --- B3: death before the landmark after an NE assessment -------------------------------------------

def test_b3_death_after_ne_assessment_names_it():
    # L2: NE marrow on day 14 (observations.csv:1), death on day 20 (events.csv:1), landmark 28. ELN 2022: "die
    # before the defined landmark without response assessments ... event at day 1"; NE is no adequate assessment
    s = _study([("L2", None)], doses=[("L2", 0, "CAR-T")], events=[("L2", 20, "death")])
    t, _ = _run(s, _resp([("L2", "NE", 14, ["observations.csv:1"])]), efs_landmark_day=28)
    row = _row(t, "L2", "EFS")
    assert (row["AVAL"], row["CNSR"], row["rule"]) == (0.0, 0, "efs.death_without_assessment")
    assert "NE on day 14" in row["reason"] and "without a response assessment" not in row["reason"]
    assert {"observations.csv:1", "events.csv:1"} <= set(row["evidence"])


# --- B4: the source of a record dated day 0 -------------------------------------------------------

def test_b4_day0_records_come_from_the_dose_row():
    # CDISC ADTTE: SRCDOM/SRCVAR/SRCSEQ = the record ADT comes from; a day-0 EFS record is dated by the first
    # CAR-T infusion: doses.csv row 2 for P1 (row 1 is fludarabine on day -5), row 3 for P2
    from cartlab.io.adam.srcrec import source_record

    s = _study([("P1", 200), ("P2", None)], doses=[("P1", -5, "fludarabine"), ("P1", 0, "CAR-T"), ("P2", 0, "CAR-T")])
    t, _ = _run(s, _resp([("P1", "NR", 28, ["observations.csv:9"])]), efs_landmark_day=28)
    p1, p2 = _row(t, "P1", "EFS"), _row(t, "P2", "EFS")
    assert (p1["rule"], p1["SRCDOM"], p1["evidence"][0]) == ("efs.treatment_failure", "doses", "doses.csv:2")
    assert (p2["rule"], p2["SRCDOM"], p2["evidence"]) == ("efs.not_evaluable", "doses", ["doses.csv:3"])
    adam = source_record(t.filter(pl.col("PARAMCD") == "EFS"), s)
    got = {r["subject_id"]: (r["SRCVAR"], r["SRCSEQ"]) for r in adam.iter_rows(named=True)}
    assert got == {"P1": ("day", 2), "P2": ("day", 3)}


def test_b4_doses_unknown_names_adsl_trtsdt():
    # doses.csv not given: day 0 is the treatment start of ADSL (admiral censor_source(dataset_name = "adsl",
    # date = TRTSDT, SRCDOM = "ADSL", SRCVAR = "TRTSDT"))
    s = _study([("P1", 200)], absent={"doses"})
    t, _ = _run(s, _resp([("P1", "NR", 28, ["o:1"])]), efs_landmark_day=28)
    assert _row(t, "P1", "EFS")["SRCDOM"] == "ADSL"


def test_b4_adam_day0_record_without_doses_is_adsl_trtsdt(tmp_path):
    # the ADaM ADTTE record of a day-0 EFS treatment failure with doses.csv not given: SRCDOM ADSL, SRCVAR
    # TRTSDT (admiral censor_source for the treatment start), SRCSEQ empty (no study row carries day 0)
    from cartlab.analyze import Analysis, AnalysisOptions
    from cartlab.io.adam import adam_frames
    from cartlab.io.study_folder import read_study

    (tmp_path / "subjects.csv").write_text("subject_id,disease,last_followup_day\nP1,AML,200\n", encoding="utf-8")
    rows = [("BMBLAST", 30, "%", "BM"), ("PBBLAST", 5, "%", "PB"), ("NEUT", 0.3, "10^9/L", "PB"),
            ("PLAT", 20, "10^9/L", "PB")]
    obs = "".join(f"P1,{d},{p},{v},{u},{sp}\n" for d in (-5, 28) for p, v, u, sp in rows)  # NR on day 28
    (tmp_path / "observations.csv").write_text("subject_id,day,param,value,unit,specimen\n" + obs, encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = Analysis(read_study(tmp_path), AnalysisOptions(endpoints=EndpointOptions(efs_landmark_day=28)))
        t = adam_frames(a, datasets=["ADTTE"])["ADTTE"]
    t = pl.DataFrame(t) if not isinstance(t, pl.DataFrame) else t
    efs = t.filter(pl.col("PARAMCD") == "EFS").row(0, named=True)
    assert (efs["AVAL"], efs["CNSR"], efs["SRCDOM"], efs["SRCVAR"]) == (0.0, 0, "ADSL", "TRTSDT")
    assert efs["SRCSEQ"] is None
