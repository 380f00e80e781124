"""Session 37: ADaM ADSL pre-lymphodepletion scores; ADTTE without undefined parameters.

Expected values worked out by hand from the seed case's own rows (observations.csv), the CAR-HEMATOTOX
cut-offs (Rejeski et al., Blood 2021) and EASIX = LDH x creatinine / platelets (Luft et al. 2017).
"""

from __future__ import annotations

import polars as pl
import pytest

from cartlab.analyze import Analysis
from cartlab.datasets import seed_case
from cartlab.io.adam import export_adam


@pytest.fixture(scope="module")
def seed_adam(tmp_path_factory):
    out = tmp_path_factory.mktemp("adam37") / "adam"
    export_adam(Analysis(seed_case()), out, formats=("csv",))
    return {n: pl.read_csv(out / f"{n}.csv", infer_schema_length=None) for n in ("adsl", "adtte")}


def test_adsl_car_hematotox_and_easix_of_the_seed(seed_adam):
    r = seed_adam["adsl"].row(0, named=True)
    # CAR-HEMATOTOX from the last values up to the first LD day (-5): platelets 42 (< 75: 2 points),
    # ANC 1.2 x10^9/L = 1200/uL (the cut-off itself: scored worst, 1), Hb 7.1 g/dL (< 9.0: 1), CRP 0.41
    # mg/dL (< 3.0: 0), ferritin 900 ng/mL (650-2000: 1) -> 5, high risk (>= 2); a definite score
    assert (r["HTXSCBL"], r["HTXSCLO"], r["HTXSCUP"], r["HTXSCFL"], r["HTXGR1"]) == (5, 5, 5, "N", "HIGH")
    # EASIX = LDH 273 U/L x creatinine 54 umol/L (/88.4 = 0.61086 mg/dL) / platelets 42 = 3.9706;
    # m-EASIX = 273 x CRP 0.41 mg/dL / 42 = 2.665
    assert r["EASIXBL"] == pytest.approx(273 * (54 / 88.4) / 42, rel=1e-4)
    assert r["MEASIXBL"] == pytest.approx(273 * 0.41 / 42, rel=1e-4)


def test_adtte_has_no_record_of_a_parameter_not_defined(seed_adam):
    # the seed patient reached MLFS, never a remission (CR/CRh/CRi): RFS, LFS and CIR are not defined
    # (adtte.csv keeps them with rule not_in_remission); CDISC BDS-TTE needs a CNSR on every record
    t = seed_adam["adtte"]
    assert sorted(t["PARAMCD"].to_list()) == ["EFS", "OS"]
    assert t["CNSR"].null_count() == 0
