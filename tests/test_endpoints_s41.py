"""Session 41 fixes of the survival endpoints, ADTTE and relapse (review 41 endpoints F1-F7, review 41
molecular F3).

Expected values are derived by hand from the texts quoted in each test (ELN 2022 Table 9 as quoted in
criteria/endpoints.yaml, ELN 2022 Table 7 relapse = BM blasts >= 5 %, the research note grading.md §4.1
on MRD relapse, the study format spec "Response"), never copied from cartlab's output.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import polars as pl
import pytest

from cartlab.io.study_folder import read_study
from cartlab.response.endpoints import EndpointOptions, derive_adtte, km_estimate
from cartlab.response.marrow import derive_marrow_response
from cartlab.response.relapse_episodes import derive_relapse

OBS_HEAD = "subject_id,day,param,analyte,value,value_text,unit,lloq,specimen"


def _marrow(sid, day, bm, pb=0, anc=2.0, plt=150, bm_text="", mrd=None):
    """observations.csv rows of one marrow day (pb=None: no PBBLAST that day)."""
    rows = [f"{sid},{day},BMBLAST,,{bm},{bm_text},%,,BM"]
    if pb is not None:
        rows.append(f"{sid},{day},PBBLAST,,{pb},,%,,PB")
    rows += [f"{sid},{day},NEUT,,{anc},,10^9/L,,PB", f"{sid},{day},PLAT,,{plt},,10^9/L,,PB"]
    if mrd is not None:
        rows.append(f"{sid},{day},MRDFCM,,{mrd},,fraction,,BM")
    return rows


def _folder(tmp_path: Path, subjects, obs, events=()):
    """A study folder: ``subjects`` (sid, last_followup_day), AML, a CAR-T dose on day 0 each."""
    (tmp_path / "subjects.csv").write_text("subject_id,disease,last_followup_day\n"
                                           + "".join(f"{s},AML,{fu}\n" for s, fu in subjects))
    (tmp_path / "doses.csv").write_text("subject_id,day,agent,dose,unit\n"
                                        + "".join(f"{s},0,CAR-T,1000000.0,cells/kg\n" for s, _ in subjects))
    (tmp_path / "observations.csv").write_text(OBS_HEAD + "\n" + "\n".join(obs) + "\n")
    (tmp_path / "events.csv").write_text("subject_id,day,event\n" + "".join(f"{s},{d},{e}\n" for s, d, e in events))
    return read_study(tmp_path)


def _adtte(study, **opts):
    """ADTTE as the analysis derives it (steps._adtte): every assessment with its could_be and
    missing_inputs, the relapse table of the same assessments."""
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        a = derive_marrow_response(study)
        rel = derive_relapse(study, a)
        resp = a.select("subject_id", pl.col("category").alias("best_response"),
                        pl.col("day").alias("best_response_day"), "evidence", "could_be", "missing_inputs")
        source = opts.pop("landmark_source", None)  # derived by the analysis, not an option (review 41 diff1 F8)
        out = derive_adtte(study, EndpointOptions(**opts), responses=resp, relapses=rel, landmark_source=source)
    return out, rel, [str(x.message) for x in w]


def _row(t, sid, p):
    r = t.filter((pl.col("subject_id") == sid) & (pl.col("PARAMCD") == p))
    assert r.height == 1
    return r.row(0, named=True)


def _f1_study(tmp_path):
    # review 41 st_ne: A1 and A2 the same (NR on day 14, then BMBLAST 2 %, ANC 2.0, PLT 150 on day 28)
    # except that A1's day-28 PBBLAST is missing; both alive to day 90
    obs = (_marrow("A1", -7, 40, pb=5, anc=0.3, plt=20) + _marrow("A1", 14, 30, pb=5, anc=0.3, plt=20)
           + _marrow("A1", 28, 2, pb=None) + _marrow("A2", -7, 40, pb=5, anc=0.3, plt=20)
           + _marrow("A2", 14, 30, pb=5, anc=0.3, plt=20) + _marrow("A2", 28, 2, pb=0))
    return _folder(tmp_path, [("A1", 90), ("A2", 90)], obs)


def test_f1_open_remission_is_not_a_treatment_failure(tmp_path):
    # ELN 2022 Table 9 counts as an event at day 1 only patients "evaluable for response but not achieving
    # either CR, CRh or CRi by the defined landmark"; A1's day-28 marrow could be CR (its PBBLAST missing,
    # spec "Response": a missing input never yields a definitive negative), so whether A1 missed remission
    # by day 28 is unknown: not evaluable by the landmark, censored at day 0 (as "patients alive who are
    # non-evaluable for response should be censored at day 1"). A2 (CR on day 28) is censored at its last
    # response assessment, day 28.
    t, _, _ = _adtte(_f1_study(tmp_path), efs_landmark_day=28)
    a1 = _row(t, "A1", "EFS")
    assert (a1["AVAL"], a1["CNSR"], a1["rule"]) == (0.0, 1, "efs.remission_undetermined")
    assert "day 28" in a1["reason"] and "PBBLAST" in a1["reason"]
    assert (_row(t, "A2", "EFS")["AVAL"], _row(t, "A2", "EFS")["CNSR"]) == (28.0, 1)
    # KM by hand: nobody has an event at day 0 (A1 censored at 0, A2 censored at 28): S(0) = 1
    km = km_estimate(t, "EFS")
    assert km.filter(pl.col("time") == 0)["survival"].to_list() in ([], [1.0])
    assert km["survival"].min() == 1.0
    # RFS/LFS/CIR of A1 are not defined (no remission) and say the remission is possible
    for p in ("RFS", "LFS", "CIR"):
        r = _row(t, "A1", p)
        assert r["rule"] == "not_in_remission" and "could be CR" in r["reason"] and "PBBLAST" in r["reason"]


def test_f1_option_failure_keeps_the_old_reading_and_names_the_open_marrow(tmp_path):
    t, _, _ = _adtte(_f1_study(tmp_path), efs_landmark_day=28, efs_open_remission="failure")
    a1 = _row(t, "A1", "EFS")
    # the old reading: treatment failure, an EFS event at day 0 - with the open marrow named
    assert (a1["AVAL"], a1["CNSR"], a1["rule"]) == (0.0, 0, "efs.treatment_failure")
    assert "could be CR" in a1["reason"] and "efs_open_remission='failure'" in a1["reason"]
    with pytest.raises(ValueError, match="efs_open_remission"):
        EndpointOptions(efs_open_remission="event")


def _f2_study(tmp_path):
    # review 41 st_rel: C1 CR on day 28 (all inputs); day 60 BMBLAST "<10" (only a bound), PBBLAST 0,
    # counts normal; last_followup_day 120
    obs = (_marrow("C1", -7, 40, pb=5, anc=0.3, plt=20) + _marrow("C1", 28, 1)
           + _marrow("C1", 60, "", bm_text="<10"))
    return _folder(tmp_path, [("C1", 120)], obs)


def test_f2_undetermined_relapse_censors_at_the_last_settled_assessment(tmp_path):
    # ELN 2022 Table 7: relapse = BM blasts >= 5 %; "<10" leaves 5-10 % open, so relapse-free status is known
    # only up to day 28, the last marrow that settles it. Censored there: RFS/CIR from the remission day 28
    # -> AVAL 0 (ADY 28); LFS from day 0 -> AVAL 28; EFS (in remission by day 28) -> ADY 28.
    t, rel, _ = _adtte(_f2_study(tmp_path), efs_landmark_day=28)
    assert rel["relapse_possible_day"].to_list() == [60.0]
    for p, aval in (("RFS", 0.0), ("CIR", 0.0), ("LFS", 28.0), ("EFS", 28.0)):
        r = _row(t, "C1", p)
        assert (r["ADY"], r["AVAL"], r["CNSR"], r["rule"]) == (28.0, aval, 1, "censor.relapse_undetermined"), p
        assert "day 60" in r["reason"] and "BMBLAST" in r["reason"], p


def test_f2_a_later_death_is_an_event_but_not_a_sure_competing_event(tmp_path):
    # the same C1 dying on day 100: RFS ("relapse or death") had an event by day 100 whatever the day-60
    # marrow was -> event on the documented day, AVAL 100 - 28 = 72, the reason naming the marrow; CIR's
    # death is a competing event only "without relapse", which the day-60 marrow leaves open -> censored
    # at day 28 (AVAL 0)
    obs = (_marrow("C1", -7, 40, pb=5, anc=0.3, plt=20) + _marrow("C1", 28, 1)
           + _marrow("C1", 60, "", bm_text="<10"))
    t, _, _ = _adtte(_folder(tmp_path, [("C1", 120)], obs, events=[("C1", 100, "death")]), efs_landmark_day=28)
    r = _row(t, "C1", "RFS")
    assert (r["AVAL"], r["CNSR"], r["rule"]) == (72.0, 0, "rfs.death") and "day 60" in r["reason"]
    c = _row(t, "C1", "CIR")
    assert (c["AVAL"], c["CNSR"], c["rule"]) == (0.0, 1, "censor.relapse_undetermined")


def test_f2_options_ignore_and_event(tmp_path):
    study = _f2_study(tmp_path)
    # ignore: the old reading, censored when last known alive (day 120): RFS AVAL 120 - 28 = 92
    t, _, _ = _adtte(study, efs_landmark_day=28, undetermined_relapse="ignore")
    assert (_row(t, "C1", "RFS")["AVAL"], _row(t, "C1", "RFS")["rule"]) == (92.0, "censor.last_alive")
    # event: a relapse on the undetermined marrow's day 60: RFS AVAL 60 - 28 = 32, CIR EVENT 1
    t, _, _ = _adtte(study, efs_landmark_day=28, undetermined_relapse="event")
    r = _row(t, "C1", "RFS")
    assert (r["AVAL"], r["CNSR"], r["rule"]) == (32.0, 0, "rfs.relapse")
    assert (_row(t, "C1", "CIR")["EVENT"], _row(t, "C1", "EFS")["ADY"]) == (1, 60.0)


def test_f3_efs_landmark_follows_best_response_landmark():
    from cartlab.analyze import AnalysisOptions
    from cartlab.response.best import BestResponseOptions

    # one protocol landmark (ELN 2022 Table 9: treatment failure "by a pre-defined landmark"): set only on
    # best_response, EFS takes it (and judges evaluability by it, review 41 diff1 F1); where it came from is
    # derived (landmark_inherited), not an option (review 41 diff1 F8)
    from cartlab.response.endpoint_options import landmark_inherited

    o = AnalysisOptions(best_response=BestResponseOptions(landmark_day=28))
    e = o.endpoint_options()
    assert (e.efs_landmark_day, e.efs_evaluable_by) == (28.0, "landmark")
    assert landmark_inherited(o.endpoints, o.best_response_options())
    # an explicit endpoints.efs_landmark_day overrides it (evaluability as set: default any time)
    o = AnalysisOptions(best_response=BestResponseOptions(landmark_day=28),
                        endpoints=EndpointOptions(efs_landmark_day=30))
    assert (o.endpoint_options().efs_landmark_day, o.endpoint_options().efs_evaluable_by) == (30, "any_time")
    assert not landmark_inherited(o.endpoints, o.best_response_options())


def test_f3_landmark_from_best_response_makes_a_late_cr_a_treatment_failure(tmp_path):
    # review 41 st_lm: L1 NR on day 28, CR on day 60. With the landmark at 28 (best_response.landmark_day)
    # L1 is evaluable without CR/CRh/CRi by day 28: ELN "an event at day 1" -> EFS AVAL 0, CNSR 0; RFS
    # still starts at the CR on day 60 (ELN defines RFS for "patients achieving CR, CRh, or CRi").
    obs = (_marrow("L1", -7, 40, pb=5, anc=0.3, plt=20) + _marrow("L1", 28, 30, pb=5, anc=0.3, plt=20)
           + _marrow("L1", 60, 1))
    study = _folder(tmp_path, [("L1", 120)], obs)
    t, _, _ = _adtte(study, efs_landmark_day=28, landmark_source="best_response.landmark_day")
    r = _row(t, "L1", "EFS")
    assert (r["AVAL"], r["CNSR"], r["rule"]) == (0.0, 0, "efs.treatment_failure")
    assert "best_response.landmark_day" in r["reason"]
    assert _row(t, "L1", "RFS")["STARTDY"] == 60.0


def test_f4_efs_censored_at_hsct_uses_the_last_assessment_before_it(tmp_path):
    # review 41 case_hsct: CR on days 28 and 40, allo-HSCT on day 45, relapse on day 100. EFS is censored
    # "on the date they were last assessed for response" (ELN 2022 Table 9) and the PFS convention censors
    # at "the last tumor assessment prior to the date of initiation of subsequent therapy": day 40.
    # RFS/CIR censor when last known alive: on the HSCT day 45, AVAL 45 - 28 = 17.
    obs = (_marrow("H1", -7, 40, pb=5, anc=0.3, plt=20) + _marrow("H1", 28, 1) + _marrow("H1", 40, 1)
           + _marrow("H1", 80, 1))
    study = _folder(tmp_path, [("H1", 200)], obs, events=[("H1", 45, "allo_hsct"), ("H1", 100, "relapse")])
    t, _, _ = _adtte(study, efs_landmark_day=28, censor_at_allo_hsct=True)
    e = _row(t, "H1", "EFS")
    assert (e["ADY"], e["AVAL"], e["CNSR"], e["rule"]) == (40.0, 40.0, 1, "censor.allo_hsct")
    assert "last response assessment" in e["reason"] and "day 40" in e["reason"]
    for p in ("RFS", "CIR"):
        r = _row(t, "H1", p)
        assert (r["ADY"], r["AVAL"], r["CNSR"]) == (45.0, 17.0, 1), p
        assert "on its day" in r["reason"], p


def test_f5_cir_and_lfs_censored_rows_take_the_parameter_status():
    # endpoints.yaml: params.CIR.status unverified, params.LFS.status convention; a censored row sharing
    # the rule censor.last_alive (verified) takes the worse of the two (needs other.diff in criteria/status.py)
    from cartlab.criteria import with_rule_status

    f = pl.DataFrame({"PARAMCD": ["OS", "RFS", "LFS", "CIR"], "rule": ["censor.last_alive"] * 4})
    assert with_rule_status(f)["rule_status"].to_list() == ["verified", "verified", "convention", "unverified"]


def test_f6_relapse_without_remission_is_named(tmp_path):
    # review 41 st_dose3 B2: a relapse on day 45 (events.csv:2), no marrow. ELN counts "hematologic relapse
    # from CR/CRh/CRi": not an EFS event, the subject is not evaluable (censored at day 0) - but the row
    # must name the relapse, and a warning names the subject
    study = _folder(tmp_path, [("B1", 100), ("B2", 100)],
                    _marrow("B1", -7, 40, pb=5, anc=0.3, plt=20) + _marrow("B1", 28, 1),
                    events=[("B1", 200, "new_therapy"), ("B2", 45, "relapse")])
    t, _, w = _adtte(study, efs_landmark_day=28)
    r = _row(t, "B2", "EFS")
    assert (r["AVAL"], r["CNSR"], r["rule"]) == (0.0, 1, "efs.not_evaluable")
    assert "relapse on day 45 (events.csv:2) not counted" in r["reason"]
    assert "events.csv:2" in r["evidence"]
    assert any("relapse recorded but no CR/CRh/CRi" in m for m in w)


def test_f7_negative_efs_landmark_is_refused():
    # as best_response.landmark_day: "expected a day 0 or later"
    with pytest.raises(ValueError, match="expected a day 0 or later"):
        EndpointOptions(efs_landmark_day=-5)
    assert EndpointOptions(efs_landmark_day=0).efs_landmark_day == 0


# --- review 41 molecular F3: MRD relapse confirmed by the next sample -----------------------------

def _mrd_study(tmp_path, mrds):
    # CR MRD-negative (0.0002 < ELN 0.1 % = 0.001) on day 28, then marrows with the given MRDFCM
    obs = _marrow("M1", -7, 40, pb=5, anc=0.3, plt=20, mrd=0.3) + _marrow("M1", 28, 1, mrd=0.0002)
    for day, mrd in mrds:
        obs += _marrow("M1", day, 1, mrd=mrd)
    return _folder(tmp_path, [("M1", 200)], obs)


def test_mrd_relapse_not_confirmed_by_a_negative_next_sample(tmp_path):
    # research note §4.1: "conversion MRD- -> MRD+ ... confirm on a second consecutive sample". 0.002 on day
    # 60 is positive (>= 0.001), the next BM sample, 0.0002 on day 90, is negative: no MRD relapse
    r = derive_relapse(_mrd_study(tmp_path, [(60, 0.002), (90, 0.0002), (120, 0.0001)])).row(0, named=True)
    assert (r["mrd_relapse_day"], r["mrd_relapse_rule"]) == (None, None)
    assert "day 60" in r["mrd_relapse_reason"] and "not confirmed" in r["mrd_relapse_reason"]
    assert "day 90" in r["mrd_relapse_reason"] and "negative" in r["mrd_relapse_reason"]


def test_mrd_relapse_confirmed_is_dated_on_the_first_positive_sample(tmp_path):
    # positive on day 60 and on the next sample, day 90: confirmed, dated on day 60
    r = derive_relapse(_mrd_study(tmp_path, [(60, 0.002), (90, 0.003)])).row(0, named=True)
    assert (r["mrd_relapse_day"], r["mrd_relapse_rule"]) == (60.0, "response.mrd_relapse")
    assert "confirmed" in r["mrd_relapse_reason"] and "day 90" in r["mrd_relapse_reason"]


def test_mrd_relapse_without_a_later_sample_is_possible(tmp_path):
    # positive on day 60, no later sample yet: not confirmed, a possible MRD relapse naming the sample
    r = derive_relapse(_mrd_study(tmp_path, [(60, 0.002)])).row(0, named=True)
    assert (r["mrd_relapse_day"], r["mrd_relapse_rule"]) == (None, "response.mrd_relapse_possible")
    assert "day 60" in r["mrd_relapse_reason"] and "not yet confirmed" in r["mrd_relapse_reason"]
