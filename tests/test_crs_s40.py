"""Session 40 (review 40 CRS): oxygen at 0 L/min (B1), how a CRS episode ended (B2), the older
scales' fever waiver by indication (B3).

Expected values are derived by hand from ASTCT 2019 Table 1 (Lee DW et al., Biol Blood Marrow
Transplant 2019;25:625; PMC8021214 Table 1) and the older scales' tables (PMC7006459 Table 2); each
test says how. Studies are written as small study folders and read with ``read_study``.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import polars as pl
import pytest

from cartlab.grading.crs import CrsOptions, derive_crs_daily, derive_crs_episodes, derive_crs_summary
from cartlab.grading.crs_legacy import CrsLegacyOptions, derive_crs_legacy_daily
from cartlab.io import read_study

IV_COLS = ["subject_id", "start_day", "end_day", "category", "agent", "dose", "dose_unit", "o2_device",
           "o2_flow_lpm", "fio2", "indication"]


def _write(path: Path, rows: list[dict], cols: list[str]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})


def _study(tmp_path: Path, obs, ivs=(), events=(), subjects=None):
    subjects = subjects or [{"subject_id": "S1"}]
    subj = [{"sex": "M", "age_years": 50, "weight_kg": 70, "disease": "LBCL", "last_followup_day": None, **s}
            for s in subjects]
    _write(tmp_path / "subjects.csv", subj, ["subject_id", "sex", "age_years", "weight_kg", "disease",
                                             "last_followup_day"])
    _write(tmp_path / "doses.csv", [{"subject_id": s["subject_id"], "day": 0, "agent": "CAR-T", "dose": 1e6,
                                     "unit": "cells/kg"} for s in subj], ["subject_id", "day", "agent", "dose", "unit"])
    _write(tmp_path / "observations.csv", [{"subject_id": s, "day": d, "param": p, "value": v,
                                            "unit": "C" if p == "TEMP" else "mmHg"} for s, d, p, v in obs],
           ["subject_id", "day", "param", "value", "unit"])
    _write(tmp_path / "interventions.csv", list(ivs), IV_COLS)
    _write(tmp_path / "events.csv", list(events), ["subject_id", "day", "event", "attribution"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_study(tmp_path)


def _vitals(s: str, days, temp: float, sbp: float):
    return [row for d in days for row in ((s, d, "TEMP", temp), (s, d, "SYSBP", sbp))]


# ---------------------------------------------------------------- B1: oxygen at 0 L/min


def _o2(device: str, flow, fio2=None) -> dict:
    return {"subject_id": "S1", "start_day": 1, "category": "oxygen", "o2_device": device, "o2_flow_lpm": flow,
            "fio2": fio2}


def test_nasal_cannula_at_zero_flow_is_no_oxygen(tmp_path):
    # by hand: day 1 Tmax 38.5 (fever), SBP 120 (no hypotension); a nasal cannula at 0 L/min delivers
    # no oxygen, so no hypoxia "requiring low-flow nasal cannula" (ASTCT Table 1 grade 2): grade 1 (fever)
    st = _study(tmp_path, _vitals("S1", [1], 38.5, 120), [_o2("nasal_cannula", 0)])
    day = derive_crs_daily(st).row(0, named=True)
    assert (day["grade"], day["grade_max"], day["o2_level"]) == (1, 1, 0)
    assert "oxygen nasal_cannula (interventions.csv:1) flow 0 L/min: not counted" in day["reason"]
    assert "crs.conv.zero_flow_oxygen" in day["reason"]
    assert any("interventions.csv:1" in str(e) for e in day["evidence"])


def test_zero_flow_with_oxygen_fio2_or_a_ventilator_still_counts(tmp_path):
    # FiO2 0.40 recorded: oxygen was given whatever the flow column says -> nasal cannula = grade 2;
    # mechanical ventilation: positive pressure (ASTCT grade 4), its flow column is not its support
    st = _study(tmp_path, _vitals("S1", [1], 38.5, 120), [_o2("nasal_cannula", 0, 0.4)])
    assert derive_crs_daily(st)["grade"].to_list() == [2]
    st = _study(tmp_path, _vitals("S1", [1], 38.5, 120), [_o2("mechanical_ventilation", 0)])
    assert derive_crs_daily(st)["grade"].to_list() == [4]


def test_older_scales_leave_zero_flow_oxygen_out(tmp_path):
    # by hand: fever only (no oxygen given) -> MSKCC grade 1 "mild symptoms" settled (its grade 2
    # needs hypoxia requiring O2); Penn grade 1 at least (its grade 3 "supplemental oxygen" no longer
    # applies; organ labs not supplied keep an upper bound, not the lower one)
    st = _study(tmp_path, _vitals("S1", [1], 38.5, 120), [_o2("nasal_cannula", 0)])
    d = {r["scale"]: r for r in derive_crs_legacy_daily(st).iter_rows(named=True)}
    assert (d["mskcc"]["grade_min"], d["mskcc"]["grade_max"]) == (1, 1)
    assert d["penn"]["grade_min"] == 1
    for s in ("lee2014", "penn", "cartox", "mskcc"):
        assert "flow 0 L/min: not counted" in d[s]["reason"], s


# ---------------------------------------------------------------- B2: how the episode ended


def test_resolution_status_per_episode_and_subject(tmp_path):
    # A: fever + SBP 85 days 1-3, fever days 4-5, nothing later (last follow-up day 5): not seen resolved
    # B: days 1-3, death day 3 attributed to 'other': ongoing at death (not grade 5: not due to CRS)
    # C: days 1-3, death day 4 'other', day 4 not graded: ongoing at death (no CRS-free day before it)
    # D: fever days 1-2, day 3 Tmax 37.0 / SBP 120 (grade 0, nothing missing): resolved
    # E: days 1-2, death day 2 attributed to CRS: ASTCT grade 5 -> fatal
    obs = (_vitals("A", [1, 2, 3], 38.6, 85) + [("A", 4, "TEMP", 38.6), ("A", 4, "SYSBP", 120),
                                                 ("A", 5, "TEMP", 38.7), ("A", 5, "SYSBP", 120)]
           + _vitals("B", [1, 2, 3], 38.6, 85) + _vitals("C", [1, 2, 3], 38.6, 85)
           + _vitals("D", [1, 2], 38.6, 120) + _vitals("D", [3], 37.0, 120) + _vitals("E", [1, 2], 38.6, 85))
    events = [{"subject_id": "B", "day": 3, "event": "death", "attribution": "other"},
              {"subject_id": "C", "day": 4, "event": "death", "attribution": "other"},
              {"subject_id": "E", "day": 2, "event": "death", "attribution": "CRS"}]
    subjects = [{"subject_id": "A", "last_followup_day": 5}] + [{"subject_id": s} for s in "BCDE"]
    st = _study(tmp_path, obs, events=events, subjects=subjects)
    daily = derive_crs_daily(st)
    summ = {r["subject_id"]: r for r in derive_crs_summary(st, None, daily).iter_rows(named=True)}
    want = {"A": ("ongoing_at_last_followup", 5.0), "B": ("ongoing_at_death", 3.0), "C": ("ongoing_at_death", 3.0),
            "D": ("resolved", 2.0), "E": ("fatal", 2.0)}
    assert {s: (r["crs_resolution_status"], r["crs_resolution_day"]) for s, r in summ.items()} == want
    eps = {r["subject_id"]: r for r in derive_crs_episodes(st).iter_rows(named=True)}
    assert {s: r["resolution_status"] for s, r in eps.items()} == {s: v[0] for s, v in want.items()}
    assert "CRS ongoing at last follow-up: last CRS day 5" in eps["A"]["reason"]
    assert "(last follow-up day 5)" in eps["A"]["reason"]
    assert "CRS ongoing at death on day 3 (events.csv:1, attributed to other)" in eps["B"]["reason"]
    assert "CRS ongoing at death on day 4" in eps["C"]["reason"] and "last CRS day 3" in eps["C"]["reason"]
    assert "ongoing" not in eps["D"]["reason"]


def test_resolution_status_between_episodes_and_summary_episode(tmp_path):
    # fever days 1-2, afebrile graded days 3-5 (grade 0, settled), fever again day 6 (last row):
    # episode 1 resolved, episode 2 not seen resolved; "first" describes episode 1, "course" the last
    obs = _vitals("S1", [1, 2], 38.6, 120) + _vitals("S1", [3, 4, 5], 37.0, 120) + _vitals("S1", [6], 38.9, 120)
    st = _study(tmp_path, obs)
    eps = derive_crs_episodes(st)
    assert eps.select("episode", "resolution_status").rows() == [(1, "resolved"), (2, "ongoing_at_last_followup")]
    assert derive_crs_summary(st)["crs_resolution_status"].to_list() == ["ongoing_at_last_followup"]
    first = derive_crs_summary(st, CrsOptions(summary_episode="first"))
    assert first.select("crs_resolution_day", "crs_resolution_status").rows() == [(2.0, "resolved")]


# ---------------------------------------------------------------- B3: the older scales' waiver indications


@pytest.mark.parametrize("scope", ["course", "episode"])
def test_older_scales_follow_waiver_indications_under_either_scope(tmp_path, scope):
    # fever days 1-2; dexamethasone day 3 given for ICANS; day 4 T 37.0, SBP 85, no vasopressor.
    # With crs.waiver_indications [CRS, ICANS] the steroid waives the fever (ASTCT footnote: after
    # CRS "tocilizumab or steroids" -> fever no longer required): day 4 is Lee 2014 grade 2
    # ("hypotension responsive to fluids or low dose of one vasopressor") and CARTOX grade 2
    # ("SBP < 90 ... responds to IV fluids"); by default (given for CRS only) day 4 is no CRS day (0).
    obs = _vitals("S1", [1, 2], 38.6, 120) + _vitals("S1", [4], 37.0, 85)
    ivs = [{"subject_id": "S1", "start_day": 3, "category": "corticosteroid", "agent": "dexamethasone", "dose": 10,
            "dose_unit": "mg", "indication": "ICANS"}]
    st = _study(tmp_path, obs, ivs)

    def day4(crs: CrsOptions, legacy: CrsLegacyOptions | None = None) -> dict:
        d = derive_crs_legacy_daily(st, ("lee2014", "cartox"), options=(legacy or CrsLegacyOptions()).following(crs))
        return {r["scale"]: r["grade_min"] for r in d.filter(pl.col("day") == 4).iter_rows(named=True)}

    both = CrsOptions(waiver_indications=("CRS", "ICANS"), fever_waiver_scope=scope)
    assert day4(both) == {"lee2014": 2, "cartox": 2}
    assert day4(CrsOptions(fever_waiver_scope=scope)) == {"lee2014": 0, "cartox": 0}
    # a value set for the older scales is theirs: CRS only -> no waiver, whatever the ASTCT option
    assert day4(both, CrsLegacyOptions(waiver_indications=("CRS",))) == {"lee2014": 0, "cartox": 0}
    assert CrsLegacyOptions().following(both).applied().waiver_indications == ("CRS", "ICANS")
    with pytest.raises(ValueError, match="waiver_indications"):
        CrsLegacyOptions(waiver_indications="ICANS")


# ---------------------------------------------------------------- B2 with other.diff: ADAE, explain, subject summary


def test_ongoing_episode_in_adae_explain_and_summary(tmp_path):
    # A: fever + SBP 85 days 1-3, nothing later (last follow-up day 5): CRS not seen resolved ->
    # CDISC AE outcome "NOT RECOVERED/NOT RESOLVED", no end day/duration (right-censored);
    # B: the same, then day 4 Tmax 37.0 / SBP 120 (grade 0): "RECOVERED/RESOLVED", AENDY = CDISC
    # study day of day 3 = 4 (no day 0), ADURN 3 (days 1-3)
    from cartlab.analyze import Analysis, AnalysisOptions
    from cartlab.explain import explain
    from cartlab.io.adam.build import build_datasets

    obs = _vitals("A", [1, 2, 3], 38.6, 85) + _vitals("B", [1, 2, 3], 38.6, 85) + _vitals("B", [4], 37.0, 120)
    st = _study(tmp_path, obs, subjects=[{"subject_id": "A", "last_followup_day": 5}, {"subject_id": "B"}])
    an = Analysis(st, AnalysisOptions())
    adae = build_datasets(an, ["ADAE"])["ADAE"].filter(pl.col("AETERM") == "Cytokine release syndrome")
    rows = {r["USUBJID"]: r for r in adae.iter_rows(named=True)}
    # review 40 B1: A's data stop on day 3 while it was followed to day 5: whether the CRS resolved is
    # not known -> CDISC OUT (C66768) "UNKNOWN" (option adam.aeout_unobserved=unknown, the default)
    assert (rows["A"]["AEOUT"], rows["A"]["AENDY"], rows["A"]["ADURN"]) == ("UNKNOWN", None, None)
    assert (rows["B"]["AEOUT"], rows["B"]["AENDY"], rows["B"]["ADURN"]) == ("RECOVERED/RESOLVED", 4, 3)
    head = explain(st, "crs", "A").headline
    assert "last CRS day 3 (CRS ongoing at last follow-up: no CRS-free day graded after it (last follow-up day 5))" in head
    summ = {r["subject_id"]: r["crs_resolution_status"] for r in an.subject_summary().iter_rows(named=True)}
    assert summ == {"A": "ongoing_at_last_followup", "B": "resolved"}


# ------------------------------------ review 40 consistency B1: the older scales' fever threshold


def test_older_scales_follow_the_analysis_fever_threshold(tmp_path):
    """Tmax 38.1 on day 1 and nothing else (SBP 120, no interventions). With crs.fever_threshold_c = 38.3 the
    day has no fever on ASTCT (grade 0) and, following it, none on Lee 2014, CARTOX or MSKCC (grade 0);
    before session 40 the older scales kept 38.0 and gave grade 1 ("fever" alone). Set apart
    (crs_legacy.fever_threshold_c = 38.0) they give 1 again."""
    from cartlab.analyze import Analysis, AnalysisOptions

    s = _study(tmp_path, _vitals("S1", [1], 38.1, 120))
    # the lowest grade each scale allows (Lee 2014 and CARTOX leave grade 2 open without organ labs)
    cols = ["crs_grade_astct_min", "crs_grade_lee2014_min", "crs_grade_cartox_min", "crs_grade_mskcc_min"]
    follow = Analysis(s, AnalysisOptions.from_settings({"crs": {"fever_threshold_c": 38.3}}))
    assert follow.table("crs_cross_scale").select(cols).row(0) == (0, 0, 0, 0)
    apart = Analysis(s, AnalysisOptions.from_settings({"crs": {"fever_threshold_c": 38.3},
                                                       "crs_legacy": {"fever_threshold_c": 38.0}}))
    assert apart.table("crs_cross_scale").select(cols).row(0) == (0, 1, 1, 1)
