"""Session 37 (review 37 A2/B1): an ABSENT optional file is not an empty one.

Project rule (docs/derivation-conventions.md "Missing is not negative"): an absent input never reads as
false or normal; the result is a range naming the missing input. An EMPTY file with its header still
means "none given". Expected values are derived by hand from the standards' text (each test says how),
never copied from cartlab output.
"""

from __future__ import annotations

import shutil

import polars as pl
import pytest

from cartlab.datasets import seed_case_path
from cartlab.grading.crs import CrsOptions, derive_crs_daily, derive_crs_summary
from cartlab.grading.icaht import derive_icaht
from cartlab.grading.t_icaht import TIcahtOptions, derive_t_icaht
from cartlab.io.study_folder import read_study
from cartlab.model import Study, conform
from cartlab.response.adtte import derive_adtte

NOT_GIVEN = "interventions.csv (not given)"


def _study(obs: list[tuple], absent=(), followup: float = 60.0) -> Study:
    """One subject S1, CAR-T on day 0, observations (day, param, value, unit)."""
    subjects = conform(pl.DataFrame({"subject_id": ["S1"], "age_years": [50.0], "last_followup_day": [followup]}),
                       "subjects")
    doses = conform(pl.DataFrame({"subject_id": ["S1"], "day": [0.0], "agent": ["CAR-T"], "dose": [1.0],
                                  "unit": ["cells"]}), "doses")
    o = conform(pl.DataFrame([{"subject_id": "S1", "day": float(d), "param": p, "value": float(v), "unit": u}
                              for d, p, v, u in obs]), "observations")
    return Study(study_id="T", subjects=subjects, doses=doses, observations=o, absent=frozenset(absent))


def _vitals(days: dict[int, tuple[float, float]]) -> list[tuple]:
    return [r for d, (t, sbp) in days.items() for r in ((d, "TEMP", t, "C"), (d, "SYSBP", sbp, "mmHg"))]


# day 0: afebrile, normotensive; day 1: fever 38.5 C; day 2: afebrile, SBP 100 (>= 90)
CRS_DAYS = {0: (37.0, 110.0), 1: (38.5, 110.0), 2: (37.0, 100.0)}


# --- 1. the reader records which optional files were absent ------------------------------------

def _seed_copy(tmp_path, drop=(), empty=()):
    folder = tmp_path / "study"
    shutil.copytree(seed_case_path(), folder)
    for name in drop:
        (folder / f"{name}.csv").unlink()
    for name in empty:  # the header only: "none given" (documented, kept)
        path = folder / f"{name}.csv"
        path.write_text(path.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    return folder


def test_reader_records_absent_files_not_empty_ones(tmp_path):
    absent = read_study(_seed_copy(tmp_path, drop=("interventions", "events")))
    assert absent.absent == frozenset({"interventions", "events"})
    assert absent.subset(absent.subject_ids).absent == absent.absent
    assert absent.subject(absent.subject_ids[0]).absent == absent.absent
    empty = read_study(_seed_copy(tmp_path / "e", empty=("interventions", "events")))
    assert empty.absent == frozenset()
    # a study built in Python reads every table as given (as before)
    assert Study(study_id="x", subjects=empty.subjects).absent == frozenset()


def test_seed_without_interventions_crs_upper_bound_is_grade_4(tmp_path):
    # ASTCT 2019 Table 1: with fever, hypotension needing multiple vasopressors or hypoxia needing
    # positive pressure is grade 4: with no interventions file, every CRS fever day could be grade 4
    absent = read_study(_seed_copy(tmp_path, drop=("interventions",)))
    s = derive_crs_summary(absent)
    assert s["crs_grade_astct_max"].to_list() == [4]
    # the empty file (header only) still says none was given: no day names the file
    empty = read_study(_seed_copy(tmp_path / "e", empty=("interventions",)))
    daily = derive_crs_daily(empty)
    assert not daily["missing_inputs"].list.contains(NOT_GIVEN).any()


# --- 2. ASTCT CRS ----------------------------------------------------------------------------

def test_crs_absent_interventions_unknown_gives_ranges():
    # hand: day 1 fever only -> grade 1 (Table 1); a vasopressor/oxygen could make it up to 4.
    # day 2 afebrile -> grade 0; after the day-1 fever a tocilizumab (waiving the fever) plus oxygen
    # could make it a CRS day: up to 4 as well. Day 0 comes before any possible fever day: CRS starts
    # with a fever (ASTCT 2019), so it stays 0-0 (session 37 diff review B1)
    d = derive_crs_daily(_study(_vitals(CRS_DAYS), absent=("interventions",))).sort("day")
    assert d["grade"].to_list() == [0, 1, 0]
    assert d["grade_max"].to_list() == [0, 4, 4]
    assert [NOT_GIVEN in m for m in d["missing_inputs"].to_list()] == [False, True, True]
    assert all("interventions.csv not given" in r for r in d["reason"].to_list()[1:])
    s = derive_crs_summary(_study(_vitals(CRS_DAYS), absent=("interventions",)))
    assert s.select("crs_grade_astct", "crs_grade_astct_max").row(0) == (1, 4)


def test_crs_absent_interventions_requires_crs_opens_from_first_fever_day():
    # fever_waiver_requires_crs: only a tocilizumab given on/after the first CRS (fever) day waives, so
    # day 0 (afebrile, before any fever) cannot be CRS: 0-0; days 1-2 as above
    opts = CrsOptions(fever_waiver_requires_crs=True)
    d = derive_crs_daily(_study(_vitals(CRS_DAYS), absent=("interventions",)), opts).sort("day")
    assert d["grade"].to_list() == [0, 1, 0]
    assert d["grade_max"].to_list() == [0, 4, 4]


def test_crs_absent_interventions_none_given_is_the_old_reading():
    # none_given: fever only, every input recorded -> grade = grade_max (1 on day 1, 0 elsewhere)
    opts = CrsOptions(absent_interventions="none_given")
    d = derive_crs_daily(_study(_vitals(CRS_DAYS), absent=("interventions",)), opts).sort("day")
    assert d["grade_max"].to_list() == [0, 1, 0]
    assert not d["missing_inputs"].list.contains(NOT_GIVEN).any()
    # a study whose interventions table is given (empty) is unaffected by the default
    d2 = derive_crs_daily(_study(_vitals(CRS_DAYS))).sort("day")
    assert d2["grade_max"].to_list() == [0, 1, 0]


# --- 3. T-ICAHT ------------------------------------------------------------------------------

def _platelets():
    # day 0: 100; days 1-3: 15 (< 20); days 4-30: 30 (< 50, not < 20); one count a day
    return [(d, "PLAT", 100.0 if d == 0 else 15.0 if d <= 3 else 30.0, "10^9/L") for d in range(0, 31)]


def test_t_icaht_absent_interventions_transfusions_unknown():
    # Rejeski 2025 Table 1: PLT < 20 on 1-13 days -> grade 3; >= 14 days -> grade 4. Days 1-3 are < 20
    # (3 days: grade 3). A count >= 20 within 7 days of a transfusion given after an own count < 20 is
    # no recovery: with transfusions unknown, days 4-30 (27 days) could be < 20 -> 30 days: up to 4
    r = derive_t_icaht(_study(_platelets(), absent=("interventions",)))
    assert r.select("t_icaht_early_grade", "t_icaht_early_grade_max").row(0) == (3, 4)
    assert "interventions.csv not given" in r["early_reason"][0]
    old = derive_t_icaht(_study(_platelets(), absent=("interventions",)),
                         TIcahtOptions(absent_interventions="none_given"))
    assert old.select("t_icaht_early_grade", "t_icaht_early_grade_max").row(0) == (3, 3)
    given = derive_t_icaht(_study(_platelets()))  # table given (empty): no transfusion
    assert given.select("t_icaht_early_grade", "t_icaht_early_grade_max").row(0) == (3, 3)


# --- 4. events.csv absent: the assumption is named ------------------------------------------

NEUT = [(d, "NEUT", 2.0, "10^9/L") for d in (0, 10, 20, 40, 50)]


def test_events_absent_named_in_late_icaht_window_end():
    # no events file: the late ICAHT window (days 31-100) ends at the last follow-up (day 60) only
    # because no relapse/new therapy/death is known: the end reason says so
    assert "events.csv not given" in derive_icaht(_study(NEUT, absent=("events",)))["late_window_end_reason"][0]
    assert "events.csv" not in derive_icaht(_study(NEUT))["late_window_end_reason"][0]  # given (empty): as before


def test_events_absent_named_in_os_censoring():
    # OS without events.csv: censored at the last follow-up (no death known, not "no death")
    os_ = derive_adtte(_study(NEUT, absent=("events",))).filter(pl.col("PARAMCD") == "OS")
    assert os_["CNSR"].to_list() == [1]
    assert os_["reason"][0].endswith("events.csv not given: no death recorded")
    assert "events.csv" not in derive_adtte(_study(NEUT)).filter(pl.col("PARAMCD") == "OS")["reason"][0]


def test_absent_interventions_options_exist_and_are_checked():
    assert CrsOptions(absent_interventions="none_given").resolved()["absent_interventions"] == "none_given"
    assert CrsOptions().resolved()["absent_interventions"] == "unknown"  # the default: missing is not negative
    assert TIcahtOptions().resolved()["absent_interventions"] == "unknown"
    with pytest.raises(Exception):
        CrsOptions(absent_interventions="maybe")


def test_a_stored_study_keeps_its_absent_files(tmp_path):
    # the store keeps the read warnings ("interventions.csv, file: not given"): loaded back, the study
    # still knows which files were absent, so the same CRS range is derived from the store
    from cartlab.store import Store

    folder = _seed_copy(tmp_path, drop=("interventions",))
    with Store(tmp_path / "s.duckdb") as st:
        st.import_study(folder)
    with Store(tmp_path / "s.duckdb", read_only=True) as st:
        stored = st.load_study(read_study(folder).study_id)
    assert stored.absent == frozenset({"interventions"})
    assert derive_crs_summary(stored)["crs_grade_astct_max"].to_list() == [4]


def test_a_subject_never_febrile_is_not_opened():
    # temperatures every day, never >= 38 C: no day could start CRS, so no intervention could make one
    never = {0: (37.0, 110.0), 1: (37.2, 105.0), 2: (36.9, 100.0)}
    s = derive_crs_summary(_study(_vitals(never), absent=("interventions",)))
    assert s.select("crs_grade_astct", "crs_grade_astct_max").row(0) == (0, 0)
