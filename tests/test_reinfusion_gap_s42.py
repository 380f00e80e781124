"""Session 42: the response engines and the protocol's ORR read the analysis's options.

* ``kinetics.split_dose_gap_days`` decides what makes a later CAR-T dose a re-infusion for the kinetics
  AND the response engines (before: the response engines read its default, 7, whatever was set).
* The protocol's best response / ORR (``protocol_best_response``) applies the analysis's best-response
  options (here ``best_response.reinfusion``), with the protocol's ORR categories and landmarks (before:
  the defaults).

The course, by hand: AML, marrow day -7 60% blasts, day 28 1% blasts with full counts (ELN 2022 CR);
CAR-T doses on days 0 and 5. Day 5 is 5 days after day 0: one split dose under the default gap (7:
5 <= 7), a re-infusion under a gap of 3 (5 > 3). With best_response.reinfusion=end_window a re-infusion
ends the assessment window on day 5, so the day-28 CR is not counted: best response NE.
"""

from __future__ import annotations

import warnings

from cartlab.analyze import Analysis, AnalysisOptions
from cartlab.kinetics.car import CarKineticsOptions
from cartlab.protocol.schema import load_protocol
from cartlab.response.best import BestResponseOptions
from test_response_s41 import marrow, row, study

DOSES = ["S1,0,CAR-T,1000000,cells/kg", "S1,5,CAR-T,1000000,cells/kg"]


def _tables(tmp_path, protocol=None, **options):
    s = study(tmp_path, [*marrow("S1", -7, 60, pb=10, anc=0.3, plt=20), *marrow("S1", 28, 1)], doses=DOSES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = Analysis(s, AnalysisOptions(**options), protocol=protocol)
        names = ["marrow_response", "best_response", *(["protocol_best_response"] if protocol else [])]
        return {n: a.table(n) for n in names}


def test_default_gap_reads_day_5_as_a_split_dose(tmp_path):
    t = _tables(tmp_path)
    assert "further CAR-T" not in row(t["marrow_response"], "S1", 28)["reason"]
    assert row(t["best_response"], "S1")["best_response"] == "CR"


def test_a_set_gap_reaches_the_marrow_and_best_response(tmp_path):
    t = _tables(tmp_path, kinetics=CarKineticsOptions(split_dose_gap_days=3))
    assert "day 5 (doses.csv:2)" in row(t["marrow_response"], "S1", 28)["reason"]
    b = row(t["best_response"], "S1")
    assert b["best_response"] == "CR" and "day 5 (doses.csv:2)" in b["reason"]


def test_end_window_at_a_reinfusion_under_the_set_gap(tmp_path):
    t = _tables(tmp_path, kinetics=CarKineticsOptions(split_dose_gap_days=3),
                best_response=BestResponseOptions(reinfusion="end_window"))
    b = row(t["best_response"], "S1")
    assert (b["best_response"], b["end_day"]) == ("NE", 5.0)
    # the default gap: day 5 is no re-infusion, the window stays open and the CR counts
    (tmp_path / "d").mkdir()
    d = row(_tables(tmp_path / "d", best_response=BestResponseOptions(reinfusion="end_window"))["best_response"], "S1")
    assert d["best_response"] == "CR"


def test_protocol_best_response_applies_the_analysis_options(tmp_path):
    proto = load_protocol("nct04762485")
    t = _tables(tmp_path, protocol=proto, kinetics=CarKineticsOptions(split_dose_gap_days=3),
                best_response=BestResponseOptions(reinfusion="end_window"))
    p = t["protocol_best_response"].filter(landmark_day=28.0)
    assert row(p, "S1")["best_response"] == "NE"  # as the analysis's own best response (defaults: CR)
    (tmp_path / "d").mkdir()
    q = _tables(tmp_path / "d", protocol=proto)["protocol_best_response"].filter(landmark_day=28.0)
    assert row(q, "S1")["best_response"] == "CR"
