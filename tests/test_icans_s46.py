"""Review 46 (ASTCT 2019 ICANS): findings 1-6, 8-10.

Expected values are worked out by hand from ASTCT 2019 (Lee DW et al., BBMT 2019;25:625, Table 4 as
reproduced in PMC8403007: ICE 3-6 = grade 2, ICE 10 = 0, seizure = 3; "ICANS grade is determined by
the most severe event ... not attributable to any other cause"; footnote "Depressed level of
consciousness should be attributable to no other cause (eg, no sedating medication)"; CAPD >= 9 =
grade 3 and CAPD "for children younger than 12 ... (and older patients with baseline developmental
delays)" as reported by MDedge 192202) and from cartlab's own documented conventions
(icans.conv.excluded_events: a day kept only for an event of another cause "is no more assessed than a
day with no row"; icans.conv.episode_end; icans.conv.unattributed_death), never copied from
cartlab's output.
"""

from __future__ import annotations

import warnings

import polars as pl
import pytest

from cartlab.analyze import Analysis, AnalysisOptions
from cartlab.criteria import load_table
from cartlab.errors import InputError
from cartlab.grading.icans import IcansOptions, derive_icans_daily, derive_icans_summary
from cartlab.io import read_study
from cartlab.io.adam import export_adam
from grading_helpers import study

ICANS = "Immune effector cell-associated neurotoxicity syndrome"


def _quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


def _day(frame, day, sid="A"):
    return frame.filter((pl.col("subject_id") == sid) & (pl.col("day") == day)).row(0, named=True)


def _adae(tmp_path, s) -> dict:
    out = tmp_path / "adam"
    _quiet(export_adam, Analysis(s, AnalysisOptions()), out, datasets=["ADSL", "ADAE"], formats=("csv",))
    return pl.read_csv(out / "adae.csv", infer_schema_length=0).filter(pl.col("AETERM") == ICANS).row(0, named=True)


def _other_seizure(*obs):
    """ICE 5 + LOC alert on day 3 (grade 2), a seizure attributed to 'other' on day 4, ``obs`` after."""
    return study(obs=[("A", 3, "ICE", 5.0), ("A", 3, "LOC", None, "alert"), *obs],
                 events=[{"subject_id": "A", "day": 4.0, "event": "seizure", "attribution": "other"}])


# --- finding 1: a day kept only for an event of another cause is no ICANS-free assessment ------------
def test_f1_excluded_event_day_does_not_resolve_the_episode():
    # s4 C01: day 4 has only the 'other' seizure: not an assessment, so after day 3 no ICANS-free
    # assessment follows -> the episode (day 3) ends not_assessed, open (no later assessment)
    d = derive_icans_daily(_other_seizure())
    d3, d4 = _day(d, 3), _day(d, 4)
    assert (d3["grade"], d3["episode"], d3["episode_end"], d3["episode_resolution_day_latest"]) == (2, 1, "not_assessed", None)
    assert "resolution not observed: no ICANS-free assessment after day 3" in d3["reason"]
    assert (d4["grade"], d4["grade_max"], d4["assessed"], d3["assessed"]) == (0, 0, False, True)
    assert "no ICANS assessment that day" in d4["reason"]
    r = derive_icans_summary(_other_seizure(), daily=d).row(0, named=True)
    assert r["icans_resolution_open"].startswith("resolution not observed: no ICANS-free assessment after day 3")


def test_f1_adae_outcome_is_unknown(tmp_path):
    # the last recorded day (4) is after AENDY (day 3) but no assessment settles the end: AEOUT UNKNOWN
    # (adam.aeout_unobserved default), AENDY empty; was RECOVERED/RESOLVED, AENRGFL N
    ae = _adae(tmp_path, _other_seizure())
    assert (ae["AEOUT"], ae["AENDY"], ae["AENRGFL"]) == ("UNKNOWN", None, None)


def test_f1_the_first_real_free_day_bounds_the_end(tmp_path):
    # ICE 10 + alert on day 5 is the first assessed ICANS-free day: the day-3 episode's resolution lies
    # between day 4 and day 5 (day 4 not assessed): not_assessed, latest day 4; ADAE range 3-4 (ADaM days 4-5)
    s = _other_seizure(("A", 5, "ICE", 10.0), ("A", 5, "LOC", None, "alert"))
    d3 = _day(derive_icans_daily(s), 3)
    assert (d3["episode_end"], d3["episode_resolution_day_latest"]) == ("not_assessed", 4)
    ae = _adae(tmp_path, s)
    assert (ae["AEOUT"], ae["AENRGFL"], ae["ADURN"], ae["ADURNUP"]) == ("RECOVERED/RESOLVED", "Y", "1", "2")


def test_f1_excluded_event_day_does_not_split_with_assessed_free():
    # s4 C02: ICE 5 on days 3 and 5 (grade 2 each), day 4 only the 'other' seizure; with
    # episode_gap_days_count=assessed_free and episode_join_gap_days=0 no assessed ICANS-free day lies
    # between -> one episode, days 3-5
    s = _other_seizure(("A", 5, "ICE", 4.0), ("A", 5, "LOC", None, "alert"))
    d = derive_icans_daily(s, IcansOptions(episode_gap_days_count="assessed_free", episode_join_gap_days=0))
    assert (_day(d, 3)["episode"], _day(d, 5)["episode"]) == (1, 1)


# --- finding 2: an unattributed death after an assessed ICANS-free day is not during ICANS -----------
def _b04():
    """s2 B04: ICE 5/alert day 4 (grade 2), ICE 10/alert day 5 (grade 0, settled), death day 6, no attribution."""
    return study(obs=[("A", 4, "ICE", 5.0), ("A", 4, "LOC", None, "alert"),
                      ("A", 5, "ICE", 10.0), ("A", 5, "LOC", None, "alert")],
                 events=[{"subject_id": "A", "day": 6.0, "event": "death", "attribution": None}])


def test_f2_death_after_a_free_day_is_not_during_icans(tmp_path):
    # the episode is resolved on day 5 (assessed ICANS-free): the day-6 death is not the episode's ->
    # grade 2, grade_max 2 (was up to 5), no death day row, no death_episode; ADAE ATOXGRUP 2
    d = derive_icans_daily(_b04())
    assert d.filter(pl.col("day") == 6).height == 0
    assert d["death_episode"].drop_nulls().len() == 0
    r = derive_icans_summary(_b04(), daily=d).row(0, named=True)
    assert (r["icans_grade_astct"], r["icans_grade_astct_max"]) == (2, 2)
    ae = _adae(tmp_path, _b04())
    assert (ae["ATOXGR"], ae["ATOXGRUP"], ae["AEOUT"]) == ("2", "2", "RECOVERED/RESOLVED")


def test_f2_death_after_an_excluded_event_day_still_during_icans():
    # findings 1 + 2: the day between (4) has only an 'other' seizure, no assessment, so nothing settles
    # the episode before the death on day 5, 2 days after ICANS day 3 (window episode_join_gap_days + 1
    # = 2): still during ICANS, grade 0 up to 5, attached to episode 1 (before the fix: cut by day 4)
    s = study(obs=[("A", 3, "ICE", 5.0), ("A", 3, "LOC", None, "alert")],
              events=[{"subject_id": "A", "day": 4.0, "event": "seizure", "attribution": "other"},
                      {"subject_id": "A", "day": 5.0, "event": "death", "attribution": None}])
    d5 = _day(derive_icans_daily(s), 5)
    assert (d5["grade"], d5["grade_max"], d5["death_episode"]) == (0, 5, 1)


# --- findings 3 and 8: option values --------------------------------------------------------------
def test_f3_excluded_attributions_read_case_insensitively():
    # [Other] is [other]: the 'other' seizure is not ICANS -> subject grade 2 (ICE 5), not 3 (seizure)
    s = _other_seizure()
    assert IcansOptions(excluded_attributions=["Other"]).resolved()["excluded_attributions"] == ("other",)
    r = derive_icans_summary(s, IcansOptions(excluded_attributions=["Other"])).row(0, named=True)
    assert r["icans_grade_astct"] == 2


def test_f3_unknown_attribution_refused():
    with pytest.raises(InputError) as exc:
        IcansOptions(excluded_attributions=["infection"])
    assert "'infection' is not an attribution (CRS, ICANS, other)" in str(exc.value)


@pytest.mark.parametrize("opt", [{"episode_join_gap_days": -1}, {"ice_min_age_years": -3}])
def test_f8_negative_values_refused(opt):
    with pytest.raises(InputError) as exc:
        IcansOptions(**opt)
    assert next(iter(opt)) in str(exc.value)


# --- finding 9: grade5 reading keeps the day's own findings -----------------------------------------
def test_f9_grade5_reason_keeps_the_day():
    # s5 D01: ICE 3 + awakens_to_voice on day 4 (grade 2 by itself), death with no attribution on day 4
    s = study(obs=[("A", 4, "ICE", 3.0), ("A", 4, "LOC", None, "awakens_to_voice")],
              events=[{"subject_id": "A", "day": 4.0, "event": "death", "attribution": None}])
    r = _day(derive_icans_daily(s, IcansOptions(unattributed_death_reading="grade5")), 4)
    assert r["grade"] == 5
    assert r["reason"].startswith("ICE 3; consciousness: awakens_to_voice")
    assert "unattributed_death_reading=grade5" in r["reason"]


# --- finding 5: the ICE/CAPD value_text message and sedation ------------------------------------------
def test_f5_value_text_message_names_sedation(tmp_path):
    (tmp_path / "subjects.csv").write_text("subject_id,age_years\nA,40\n")
    (tmp_path / "observations.csv").write_text("subject_id,day,param,value,value_text,unit\nA,1,ICE,,NE,\n")
    with pytest.raises(InputError) as exc:
        read_study(tmp_path)
    msg = str(exc.value)
    assert "sedation" in msg and "leave the score and the LOC out" in msg
    assert "because of ICANS (unarousable)" in msg


# --- finding 4: CAPD for an older patient with developmental delay ----------------------------------
def test_f4_capd_subjects():
    # 13 years, CAPD 12 + alert: by default CAPD is not graded at 13 (grade 0 up to 3); listed in
    # capd_subjects it is graded by CAPD: >= 9 -> grade 3 (icans.capd.ge9)
    s = study(subjects=[{"subject_id": "A", "age_years": 13.0}],
              obs=[("A", 1, "CAPD", 12.0), ("A", 1, "LOC", None, "alert")])
    r = _quiet(lambda: _day(derive_icans_daily(s), 1))
    assert (r["grade"], r["grade_max"]) == (0, 3)
    r = _day(derive_icans_daily(s, IcansOptions(capd_subjects=["A"])), 1)
    assert (r["grade"], r["grade_max"]) == (3, 3)
    assert "icans.capd.ge9" in r["rule"] and "option icans.capd_subjects" in r["reason"]
    assert IcansOptions().resolved()["capd_subjects"] == ()


# --- finding 6: onset, resolution and number of episodes in the summary ------------------------------
def test_f6_summary_onset_resolution_episodes():
    # ICE 5 on days 2 and 3 (grade 2), ICE 10 on day 4 and 5 (free), ICE 8 on day 6 (grade 1), all alert:
    # ICANS days 2, 3, 6 -> onset 2, resolution 6; day 4-5 two free days > gap 1 -> 2 episodes
    ice = ((2, 5.0), (3, 5.0), (4, 10.0), (5, 10.0), (6, 8.0))
    s = study(obs=[x for d, v in ice for x in (("A", d, "ICE", v), ("A", d, "LOC", None, "alert"))])
    r = derive_icans_summary(s).row(0, named=True)
    assert (r["icans_onset_day"], r["icans_resolution_day"], r["icans_n_episodes"]) == (2.0, 6.0, 2)
    # no ICANS day: empty days, 0 episodes
    r = derive_icans_summary(study(obs=[("A", 1, "ICE", 10.0)])).row(0, named=True)
    assert (r["icans_onset_day"], r["icans_resolution_day"], r["icans_n_episodes"]) == (None, None, 0)


# --- finding 10 / criteria rows ------------------------------------------------------------------------
def test_criteria_rows():
    t = load_table("astct_icans_2019")
    loc = t.extra("loc")[0]
    assert "vigorous or repetitive tactile stimuli" in loc["citation"] and "unarousable" in loc["citation"]
    rows = {r["id"]: r for r in t.conventions}
    assert "developmental delays" in rows["icans.conv.capd_subjects"]["citation"]
    assert rows["icans.conv.capd_subjects"]["options"] == ["capd_subjects"]
