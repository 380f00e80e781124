"""Session 42 (review 41 report F9): exposure_response.csv / cohort_exposure_stats.csv ``excluded`` names
the ids under each reason. Before, a subject with two reasons was written as one group "reason A;
reason B: G", which read as reason A with no ids.

By hand: G has no response assessment (best_response empty) and no AUC; K has only an empty AUC; H, I,
J are usable. Row car_auc_0_28 x responder: G under both reasons, K under the AUC reason."""

from __future__ import annotations

import warnings

import polars as pl

from cartlab.kinetics.exposure import derive_exposure_response

NE = "best_response NE or empty"
AUC = "car_auc_0_28 empty: not computable (see car_kinetics.csv)"


def test_every_reason_has_its_ids():
    summary = pl.DataFrame({
        "subject_id": ["G", "H", "I", "J", "K"],
        "car_cmax": [100.0, 200.0, 50.0, 400.0, 80.0],
        "car_auc_0_28": [None, 2000.0, 500.0, 4000.0, None],
        "best_response": ["", "CR", "NR", "CR", "NR"],
        "crs_grade_astct": [1, 3, 1, 2, 0],
    })
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        er = derive_exposure_response(summary)
    r = er.filter(exposure="car_auc_0_28", outcome="responder").row(0, named=True)
    assert r["n_excluded"] == 2  # subjects, not reasons
    groups = dict(part.rsplit(": ", 1) for part in r["excluded"].split("; "))
    assert groups[AUC] == "G, K"
    ne = [k for k in groups if k.startswith(NE)]
    assert len(ne) == 1 and groups[ne[0]] == "G"
