"""Session 30: the exposure-response warning names each reason once, with its subjects, not every
combination of reasons a table row carried (a subject with two reasons was listed three times)."""

from __future__ import annotations

import polars as pl
import pytest

from cartlab.errors import CartlabWarning
from cartlab.kinetics.exposure import derive_exposure_response


def test_a_subject_with_two_reasons_is_named_once_per_reason():
    # G: no response assessment and an empty AUC (Cmax known); H: usable everywhere
    summary = pl.DataFrame({
        "subject_id": ["G", "H", "I", "J"],
        "car_cmax": [100.0, 200.0, 50.0, 400.0],
        "car_auc_0_28": [None, 2000.0, 500.0, 4000.0],
        "best_response": ["", "CR", "NR", "CR"],
        "crs_grade_astct": [1, 3, 1, 2],
    })
    with pytest.warns(CartlabWarning) as w:
        er = derive_exposure_response(summary)
    (msg,) = [str(x.message) for x in w if "exposure_response.csv" in str(x.message)]
    body = msg.split(" -- ", 1)[1]
    parts = body.split(" | ")
    # two reasons, each once: "best_response NE or empty (...): G" and "car_auc_0_28 empty: ...: G"
    assert len(parts) == 2, parts
    assert parts[0].startswith("best_response NE or empty") and parts[0].endswith(": G")
    assert parts[1] == "car_auc_0_28 empty: not computable (see car_kinetics.csv): G"
    # the table rows keep their own combination (the row for AUC x responder names both reasons)
    r = er.filter(exposure="car_auc_0_28", outcome="responder").row(0, named=True)
    assert r["n_excluded"] == 1 and "; car_auc_0_28 empty" in r["excluded"]
