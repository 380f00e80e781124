"""Session 41 (lead): the CRS grade's lower bound with events.csv not given reaches ADSL and
exposure-response.

Session 40 gave the ASTCT CRS grade a lower bound ``crs_grade_astct_min`` when events.csv is not
given (a fever could be an infection's: ASTCT 2019, Lee et al., Table 1 footnote, fever "not
attributable to any other cause"). ADSL (CRSGRMX/CRSGRUP/CRSGRFL) and exposure-response's
``crs_grade_ge3``/``crs_any`` still read ``crs_grade_astct`` as the lowest possible grade. Expected
values are worked by hand from the course below (each test says how), not copied from cartlab output.
"""

from __future__ import annotations

import warnings

import polars as pl

from cartlab.analyze import Analysis, AnalysisOptions
from cartlab.io.adam import export_adam
from cartlab.kinetics.exposure import derive_exposure_response
from test_absent_files_s37 import CRS_DAYS, _study, _vitals


def _adsl(tmp_path, absent) -> dict:
    st = _study(_vitals(CRS_DAYS), absent=absent)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_adam(Analysis(st, AnalysisOptions()), tmp_path, datasets=["ADSL"], formats=("csv",))
    return pl.read_csv(tmp_path / "adsl.csv", infer_schema_length=0).row(0, named=True)


def test_adsl_gives_the_lower_bound_without_events(tmp_path):
    # day 1: 38.5 C, SBP 110 = ASTCT grade 1 with the fever counted; events.csv not given: the fever
    # could be an infection's -> lowest possible 0. The grade is a range 0-1 at least: CRSGRFL Y.
    r = _adsl(tmp_path, ("events",))
    assert (r["CRSGRLO"], r["CRSGRMX"], r["CRSGRFL"]) == ("0", "1", "Y")


def test_adsl_lower_bound_is_the_grade_when_events_given(tmp_path):
    # a header-only events.csv: no infection recorded, the fever counts: lowest possible = grade = 1
    r = _adsl(tmp_path, ())
    assert (r["CRSGRLO"], r["CRSGRMX"]) == ("1", "1")


def _summary(rows):
    return pl.DataFrame(rows, schema={"subject_id": pl.String, "car_cmax": pl.Float64, "car_auc_0_28": pl.Float64,
                                      "best_response": pl.String, "crs_grade_astct": pl.Int64,
                                      "crs_grade_astct_max": pl.Int64, "crs_grade_astct_min": pl.Int64},
                        orient="row")


def test_exposure_crs_ge3_is_unknown_when_the_lower_bound_is_below_3():
    # A: grade 3 whose fever could be an infection's (min 1): "grade >= 3" is undetermined -> excluded.
    # B, C: definite grade 3 (min = max = 3) -> yes; D, E: definite 0 -> no. Known: B, C, D, E = 4.
    s = _summary([("A", 10.0, 100.0, "CR", 3, 3, 1), ("B", 20.0, 200.0, "CR", 3, 3, 3),
                  ("C", 30.0, 300.0, "NR", 3, 3, 3), ("D", 5.0, 50.0, "CR", 0, 0, 0),
                  ("E", 6.0, 60.0, "NR", 0, 0, 0)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        er = derive_exposure_response(s, exposures=("car_cmax",), outcomes=("crs_grade_ge3",))
    r = er.row(0, named=True)
    assert r["n"] == 4 and r["n_excluded"] == 1
    assert "events.csv not given" in r["excluded"] and "A" in r["excluded"]
    # without a lower-bound column (an older summary) the grade is the lowest possible: A counts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = derive_exposure_response(s.drop("crs_grade_astct_min"), exposures=("car_cmax",),
                                       outcomes=("crs_grade_ge3",)).row(0, named=True)
    assert old["n"] == 5 and old["n_excluded"] == 0


def test_split_dose_fractions_are_not_a_reinfusion(tmp_path):
    # Lead mend (session 41): a CAR-T dose split over days 0 and 1 (NCT04762485 gives its dose in
    # fractions on consecutive days) is one administration, as kinetics reads it (split_dose_gap_days 7):
    # no marrow names "a further CAR-T infusion", and best_response.reinfusion=end_window does not end the
    # window on day 1. A dose on day 35 (35 days after the previous) is a re-infusion.
    from cartlab.response.best import BestResponseOptions, derive_best_response
    from cartlab.response.marrow import derive_marrow_response
    from test_response_s41 import marrow, quiet, row, study

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    s = study(tmp_path / "a", [*marrow("S1", -7, 60, pb=10, anc=0.3, plt=20), *marrow("S1", 28, 1)],
              subjects=(("S1", "B-ALL"),), doses=["S1,0,CAR-T,200000,cells/kg", "S1,1,CAR-T,800000,cells/kg"])
    assert "further CAR-T" not in row(quiet(derive_marrow_response, s), "S1", 28)["reason"]
    e = row(quiet(derive_best_response, s, BestResponseOptions(reinfusion="end_window")), "S1")
    assert e["best_response"] == "CR" and e["end_day"] != 1.0
    s2 = study(tmp_path / "b", [*marrow("S1", -7, 60, pb=10, anc=0.3, plt=20), *marrow("S1", 63, 1)],
               subjects=(("S1", "B-ALL"),), doses=["S1,0,CAR-T,200000,cells/kg", "S1,1,CAR-T,800000,cells/kg",
                                                  "S1,35,CAR-T,3000000,cells/kg"])
    assert "day 35 (doses.csv:3)" in row(quiet(derive_marrow_response, s2), "S1", 63)["reason"]
