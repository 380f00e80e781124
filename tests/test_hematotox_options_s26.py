"""CAR-HEMATOTOX and EASIX options reach the analysis (``--set car_hematotox.X=...``), and a value
exactly at a cut-off the source leaves undefined says how it was scored. One subject, written here:
baseline on day -5 (the first fludarabine dose): platelets 75, ANC 1.2 x10^9/L, Hb 90 g/L, CRP 30
mg/L, ferritin 650 ng/mL, LDH 250 U/L, creatinine 88.4 umol/L. Expected values by hand from the
cut-offs of criteria/car_hematotox_2021.yaml (Rejeski 2021) and EASIX = LDH x creatinine / platelets
(Luft 2017)."""

from __future__ import annotations

import math

import polars as pl

from cartlab.analyze import Analysis, AnalysisOptions
from cartlab.model import Study, conform


def _study() -> Study:
    subjects = conform(pl.DataFrame({"subject_id": ["S1"], "disease": ["T-ALL"]}), "subjects")
    doses = conform(pl.DataFrame({"subject_id": ["S1", "S1"], "day": [-5.0, 0.0],
                                  "agent": ["fludarabine", "CD7 CAR-T"], "dose": [30.0, 1e6],
                                  "unit": ["mg/m2", "cells/kg"]}), "doses")
    rows = [("PLAT", 75.0, "10^9/L"), ("NEUT", 1.2, "10^9/L"), ("HGB", 90.0, "g/L"), ("CRP", 30.0, "mg/L"),
            ("FERRITIN", 650.0, "ng/mL"), ("LDH", 250.0, "U/L"), ("CREAT", 88.4, "umol/L")]
    obs = conform(pl.DataFrame({"subject_id": ["S1"] * len(rows), "day": [-5.0] * len(rows),
                                "param": [r[0] for r in rows], "value": [r[1] for r in rows],
                                "unit": [r[2] for r in rows]}), "observations")
    return Study(study_id="t", subjects=subjects, doses=doses, observations=obs)


def test_undefined_boundary_option_reaches_the_analysis_and_is_said():
    # platelets 75 (75-175: 1) and ferritin 650 (650-2000: 1) are inside closed ranges: 1 each;
    # ANC 1200/uL, Hb 9.0 g/dL, CRP 3.0 mg/dL sit exactly on "< / >" cut-offs: 1 each when worst
    worst = Analysis(_study()).table("car_hematotox").row(0, named=True)
    assert worst["hematotox_score"] == 5
    assert "exactly 1200 /uL, a cut-off the source leaves undefined: scored worst" in worst["reason"]
    best = Analysis(_study(), AnalysisOptions.from_settings({"car_hematotox": {"undefined_boundary": "best"}}))
    r = best.table("car_hematotox").row(0, named=True)
    assert r["hematotox_score"] == 2 and "scored best" in r["reason"]


def test_easix_log_base_option_reaches_the_analysis():
    # creatinine 88.4 umol/L / 88.4 (the conventional factor, params_v1.yaml) = 1.0 mg/dL; EASIX = 250 x 1 / 75
    creat = 88.4 / 88.4
    easix = 250 * creat / 75
    a = Analysis(_study(), AnalysisOptions.from_settings({"easix": {"log_base": 10}}))
    r = a.table("easix").row(0, named=True)
    assert math.isclose(r["easix"], easix, rel_tol=1e-9)
    assert math.isclose(r["log10_easix"], math.log10(easix), rel_tol=1e-9)
