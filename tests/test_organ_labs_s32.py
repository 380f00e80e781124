"""Session 32: the older CRS scales' all-organ toxicity inputs need a renal and a liver lab.

Before, one organ lab on a day (a normal creatinine) settled "organ toxicity" for the whole day, so a
liver never measured read as normal (missing is negative). Now (``CrsLegacyOptions.organ_labs_required
= "renal_and_liver"``, the default) a day with a creatinine but no liver lab, or the reverse, keeps
the grade its labs set as a lower bound and stays open up to 4; ``"any"`` restores the old reading.

Expected grades by hand from Lee et al., Blood 2014;124:188, Table 2 (crs_lee2014.yaml): grade 1
"symptoms not life-threatening ... (fever)"; grade 2 "grade 2 organ toxicity"; grade 3 "grade 3 organ
toxicity or grade 4 transaminitis"; grade 4 "grade 4 organ toxicity (excluding transaminitis)". An
unmeasured bilirubin could be CTCAE grade 4 (non-transaminase), so a fever day with a creatinine but
no liver lab is Lee 1 up to 4. CTCAE v5 "creatinine increased" grade 3: ">3.0 - 6.0 x ULN"
(350 umol/L with ULN 100 = 3.5 x ULN).

Every subject: adult, fever 38.6 C on day 1 only (36.8 C days 0, 2, 3), SBP 115 every day, CAR-T on
day 0; CREAT 70 umol/L (60-100) and ALT 25 U/L (5-40) on the days listed.
"""

from __future__ import annotations

import csv

import pytest

from cartlab.analyze import Analysis, AnalysisOptions
from cartlab.grading.crs_legacy import CrsLegacyOptions
from cartlab.io import read_study

ALL = tuple(range(-1, 4))
SUBJECT_COLUMNS = ["subject_id", "sex", "age_years", "weight_kg", "height_cm", "disease", "target", "last_followup_day"]


def _csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
CASES = {
    # subject: (creatinine days, ALT days, day-1 creatinine)
    "CREAT_ONLY": (ALL, (), 70),
    "ALT_ONLY": ((), ALL, 70),
    "BOTH": (ALL, ALL, 70),
    "CREAT3_ONLY": (ALL, (), 350),
    "CREAT_YESTERDAY": ((-1, 0), (1, 2, 3), 70),  # day 1: ALT that day, creatinine of day 0 stands in
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("organ_labs")
    obs = []
    for sid, (creat_days, alt_days, creat1) in CASES.items():
        for d in ALL:
            if d >= 0:
                obs += [[sid, d, "TEMP", 38.6 if d == 1 else 36.8, "C", "", ""], [sid, d, "SYSBP", 115, "mmHg", "", ""]]
            if d in creat_days:
                obs.append([sid, d, "CREAT", creat1 if d == 1 else 70, "umol/L", 60, 100])
            if d in alt_days:
                obs.append([sid, d, "ALT", 25, "U/L", 5, 40])
    _csv(root / "subjects.csv", SUBJECT_COLUMNS, ([sid, "M", 50, 70, 175, "LBCL", "CD19", 28] for sid in CASES))
    _csv(root / "observations.csv", ["subject_id", "day", "param", "value", "unit", "lln", "uln"], obs)
    _csv(root / "doses.csv", ["subject_id", "day", "agent", "dose", "unit"], ([sid, 0, "CAR-T", 1e6, "cells/kg"] for sid in CASES))
    # no intervention was given (a header-only file; an absent file leaves them unknown since session 38)
    _csv(root / "interventions.csv", ["subject_id", "start_day", "end_day", "category", "agent"], [])
    return read_study(root)


def _lee(study, **opts):
    options = AnalysisOptions(crs_legacy=CrsLegacyOptions(**opts)) if opts else AnalysisOptions()
    x = Analysis(study, options).table("crs_cross_scale")
    return {r["subject_id"]: (r["crs_grade_lee2014_min"], r["crs_grade_lee2014_max"], r["crs_lee2014_reason"])
            for r in x.iter_rows(named=True)}


def test_a_day_with_creatinine_but_no_liver_lab_leaves_lee_open_up_to_4(study):
    lee = _lee(study)
    assert lee["CREAT_ONLY"][:2] == (1, 4)
    assert "no liver lab" in lee["CREAT_ONLY"][2]
    # a creatinine of CTCAE grade 3 is grade 3 for sure; the unmeasured liver could make it 4
    assert lee["CREAT3_ONLY"][:2] == (3, 4)


def test_a_renal_and_a_liver_lab_settle_the_day(study):
    lee = _lee(study)
    assert lee["BOTH"][:2] == (1, 1)
    # default look-back of 1 day: the day-0 creatinine stands in beside the day-1 ALT
    assert lee["CREAT_YESTERDAY"][:2] == (1, 1)


def test_alt_alone_was_already_open_and_stays_so(study):
    # no non-transaminase lab at all: grade 4 organ toxicity (excluding transaminitis) possible
    assert _lee(study)["ALT_ONLY"][:2] == (1, 4)


def test_any_restores_the_earlier_reading(study):
    lee = _lee(study, organ_labs_required="any")
    # creatinine settles the non-transaminase organs; ALT/AST unmeasured: grade 4 transaminitis -> 3
    assert lee["CREAT_ONLY"][:2] == (1, 3)
    assert lee["CREAT3_ONLY"][:2] == (3, 3)
    assert lee["BOTH"][:2] == (1, 1)


def test_the_option_is_validated():
    with pytest.raises(ValueError, match="organ_labs_required"):
        CrsLegacyOptions(organ_labs_required="some")


# -- the older scales start at the first CAR-T infusion, as ASTCT (session 32 review, /work/notes/review32_tox c02)
# ASTCT 2019 grades CRS "associated with immune effector cells"; its footnote waives the fever only in
# "patients who have CRS then receive tocilizumab or steroids". PRE: fever 38.6 C on day -2 only; STER:
# dexamethasone on day -6, never febrile, SBP 85 on day 10. CAR-T on day 0; normal CREAT/ALT daily.


@pytest.fixture(scope="module")
def pre_infusion(tmp_path_factory):
    root = tmp_path_factory.mktemp("pre_infusion")
    obs = []
    for sid in ("PRE", "STER"):
        for d in range(-7, 11):
            obs += [[sid, d, "TEMP", 38.6 if (sid, d) == ("PRE", -2) else 36.8, "C", "", ""],
                    [sid, d, "SYSBP", 85 if (sid, d) == ("STER", 10) else 115, "mmHg", "", ""],
                    [sid, d, "CREAT", 70, "umol/L", 60, 100], [sid, d, "ALT", 25, "U/L", 5, 40]]
    ids = ("PRE", "STER")
    _csv(root / "subjects.csv", SUBJECT_COLUMNS, ([sid, "M", 50, 70, 175, "LBCL", "CD19", 28] for sid in ids))
    _csv(root / "observations.csv", ["subject_id", "day", "param", "value", "unit", "lln", "uln"], obs)
    _csv(root / "interventions.csv", ["subject_id", "start_day", "end_day", "category", "agent", "dose", "dose_unit",
                                      "indication"], [["STER", -6, -6, "corticosteroid", "dexamethasone", 10, "mg", ""]])
    _csv(root / "doses.csv", ["subject_id", "day", "agent", "dose", "unit"], ([sid, 0, "CAR-T", 1e6, "cells/kg"] for sid in ids))
    return read_study(root)


def test_the_older_scales_do_not_grade_before_the_infusion(pre_infusion):
    lee = _lee(pre_infusion)
    assert lee["PRE"][:2] == (0, 0)  # the only fever is before the cells: no CRS
    assert lee["STER"][:2] == (0, 0)  # a steroid before the cells starts no fever waiver: SBP 85 afebrile is no CRS
    old = _lee(pre_infusion, first_day="all")  # every recorded day, as before session 32
    assert old["PRE"][:2] == (1, 1)  # Lee grade 1: fever
    assert old["STER"][:2] == (2, 2)  # Lee grade 2: "hypotension responsive to fluids" under the waiver


def test_first_day_is_validated():
    with pytest.raises(ValueError, match="first_day"):
        CrsLegacyOptions(first_day="cells")
