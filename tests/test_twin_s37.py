"""Session 37: the twin's binomial rows (marrow / blood blasts) get a standardised residual, so a twin
that does not describe the blasts no longer shows P(response) as if it did.

Residuals are worked out by hand from the binomial distribution in the comments.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from cartlab.twin.fit import binomial_residual
from cartlab.twin.quality import fit_quality


def _res(param, value, ipred, cells):
    a = np.array
    return binomial_residual(a([param]), a([value], float), a([ipred], float), a([cells], float), a([True]))[0]


def test_a_count_where_the_twin_predicts_almost_none_stays_finite():
    # 1 blast in 500 cells (0.2 %) where the twin predicts p = 1e-9: P(K = 0) = (1 - 1e-9)^500 = 1 - 5e-7,
    # P(K = 1) = 500e-9 = 5e-7, so u = P(K < 1) + P(K = 1) / 2 = 1 - 2.5e-7 and the residual is
    # Phi^-1(1 - 2.5e-7) = 5.03 (normal tail 2.5e-7 at z = 5.03; a Pearson residual would be ~1400)
    assert _res("BMBLAST", 0.2, 1e-7, 500) == pytest.approx(5.03, abs=0.02)
    # none counted where none is predicted: u = P(K = 0) / 2 + 0 -> just below 0.5 ... 0.5: residual ~ 0
    assert abs(_res("BMBLAST", 0.0, 1e-7, 500)) < 1e-3


def test_the_residual_is_centred_and_signed():
    # 25 % blasts counted on 100 cells where the twin says 5 %: mean 5, SD sqrt(100 x 0.05 x 0.95) = 2.18;
    # 25 lies 9 SDs up; the exact tail P(K >= 25) is ~1e-10, z ~ 6.4: far beyond 3, positive
    assert _res("PBBLAST", 25.0, 5.0, 100) > 5.5
    # 0 counted where 5 % expected: P(K = 0) = 0.95^100 = 0.00592, u = 0.00296, z = -2.75
    assert _res("PBBLAST", 0.0, 5.0, 100) == pytest.approx(-2.75, abs=0.01)
    # MRDFCM is a fraction, not a percentage: 0.01 of 1000 cells = 10 where 0.01 is predicted ->
    # u = P(K < 10) + P(K = 10) / 2 of Bin(1000, 0.01): the median region, |z| < 0.1
    assert abs(_res("MRDFCM", 0.01, 0.01, 1000)) < 0.1
    # other rows are NaN (their residual is computed elsewhere)
    out = binomial_residual(np.array(["TEMP"]), np.array([38.0]), np.array([37.0]), np.array([0.5]),
                            np.array([False]))
    assert math.isnan(out[0])


def test_blasts_the_twin_does_not_describe_withhold_p_response():
    from cartlab.twin.forecast import forecast_problems, withhold

    # marrow blasts with residuals 5 and -4: RMS sqrt((25 + 16) / 2) = 4.5 > 3 -> not described
    obs = pl.DataFrame([("BMBLAST", 0.0, 40.0, 5.0), ("BMBLAST", 28.0, 0.0, -4.0), ("TEMP", 1.0, 38.0, 0.1),
                        ("CARCOPY", 7.0, 100.0, 0.2)],
                       schema={"param": pl.String, "day": pl.Float64, "value": pl.Float64, "iwres": pl.Float64},
                       orient="row")
    m = SimpleNamespace(intervals_reliable_=True, ess_=500.0, n_unique_draws_=35, converged_=True, message_="",
                        observations_=obs, target_="CD7", baseline_defaults_used_={},
                        fit_quality_=fit_quality(obs.select("param", "iwres")))
    table = pl.DataFrame({"quantity": ["car_cmax", "car_tmax", "car_day28", "crs_ge3", "response_d28"],
                          "median": [1e5, 10.0, 1e4, None, None], "pi90_lo": [1e4, 8.0, 1e3, None, None],
                          "pi90_hi": [1e6, 12.0, 1e5, None, None], "probability": [None, None, None, 0.1, 0.9]})
    r = {x["quantity"]: x for x in withhold(m, table).iter_rows(named=True)}
    assert r["response_d28"]["value_shown"] is False
    assert "BMBLAST (RMS standardised residual 4.5 over 2 rows" in r["response_d28"]["withheld_reason"]
    assert r["crs_ge3"]["value_shown"] is True and r["car_cmax"]["value_shown"] is True
    assert "misfit" in forecast_problems(m)


from test_twin_fit import virtual  # noqa: E402,F401  (the simulated patient fixture)


def test_a_twin_fitted_to_a_simulated_patient_describes_its_blasts(virtual):  # noqa: F811
    from cartlab.twin.fit import TwinModel

    study, _, _ = virtual
    m = TwinModel(n_starts=1, n_sir=300, n_draws=100).fit(study, study.subject_ids[0])
    q = {r["param"]: r for r in m.fit_quality_.iter_rows(named=True)}
    # the patient was simulated with the twin's own binomial counting noise: the blast rows now have
    # residuals (they had none) and, the model being right, an RMS near 1 (well under 3)
    blasts = [p for p in ("BMBLAST", "PBBLAST") if p in q]
    assert blasts
    for p in blasts:
        assert q[p]["n_residuals"] > 0 and q[p]["describes"] is True, q[p]
