"""The twin forecast uses the estimator its calibration measured (session 34): after a Laplace +
SIR fit, every importance draw with its weight (weighted quantiles and probabilities), not the
resampled draws with equal weights. Expectations by hand or from numpy's documented quantiles."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartlab.twin.forecast import weighted_quantile


def test_weighted_quantile_by_hand():
    """v = 1, 2, 3, 4 with weights 0.1, 0.2, 0.3, 0.4: midpoints of the weighted CDF are
    0.05, 0.2, 0.45, 0.8; the median 0.5 lies between 0.45 (3) and 0.8 (4): 3 + (0.05 / 0.35) = 3.142857."""
    q = weighted_quantile(np.array([4.0, 1.0, 3.0, 2.0]), np.array([0.4, 0.1, 0.3, 0.2]), [0.5, 0.05, 0.8])
    assert q == pytest.approx([3 + 0.05 / 0.35, 1.0, 4.0])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=40),
       st.lists(st.floats(0.01, 0.99), min_size=1, max_size=5))
def test_equal_weights_give_numpys_hazen_quantiles(v, qs):
    """Equal weights: the midpoint rule is numpy's "hazen" method (Hyndman & Fan type 5)."""
    v = np.array(v)
    got = weighted_quantile(v, np.ones(v.size), qs)
    assert got == pytest.approx(np.quantile(v, qs, method="hazen"), rel=1e-9, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-100, 100, allow_nan=False), min_size=1, max_size=10),
       st.lists(st.floats(1e-3, 10), min_size=10, max_size=10))
def test_weighted_quantiles_are_ordered_and_inside_the_draws(v, w):
    """Any weights: the 5/25/50/75/95% quantiles are non-decreasing and inside [min, max] of the draws."""
    v = np.array(v)
    q = weighted_quantile(v, np.array(w[: v.size]), [0.05, 0.25, 0.5, 0.75, 0.95])
    assert np.all(np.diff(q) >= -1e-9) and v.min() - 1e-9 <= q[0] and q[-1] <= v.max() + 1e-9


def test_a_draw_without_weight_does_not_count():
    """Weights 1, 1, 0: the third draw (1000) has no mass -> the quantiles of 1 and 2 alone
    (midpoints 0.25, 0.75 -> median 1.5, 95% -> 2)."""
    q = weighted_quantile(np.array([1.0, 2.0, 1000.0]), np.array([1.0, 1.0, 0.0]), [0.5, 0.95])
    assert q == pytest.approx([1.5, 2.0])


def test_weighted_quantile_along_an_axis():
    """Per column (time point): column 0 = 0, 10 with weights 0.25, 0.75: midpoints 0.125, 0.625 ->
    median 0 + 10 x (0.5 - 0.125) / 0.5 = 7.5; column 1 constant 5."""
    v = np.array([[0.0, 5.0], [10.0, 5.0]])
    assert weighted_quantile(v, np.array([0.25, 0.75]), [0.5], axis=0)[0] == pytest.approx([7.5, 5.0])


@pytest.fixture(scope="module")
def fitted():
    from cartlab.twin import TwinModel
    from twin_helpers import virtual_patient

    study = virtual_patient(321)[0]
    m = TwinModel(n_starts=1, n_sir=200, n_draws=50, maxiter=8).fit(study, study.subject_ids[0], until_day=5)
    return m


def test_forecast_uses_the_importance_draws_with_their_weights(fitted):
    """SIR fit, no n_draws: the forecast simulates the importance draws above 1e-6 of the largest
    weight, and its median/intervals/probabilities are their weighted ones (recomputed here from the
    simulated outcomes with the same weights)."""
    import warnings

    from cartlab.twin.fit import _T_GRID
    from cartlab.twin.forecast import outcome_arrays

    m = fitted
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tab = m.forecast(5)
    w = m.forecast_weights_
    keep = m.is_weights_ > 1e-6 * m.is_weights_.max()
    assert w is not None and w.size == int(keep.sum()) and w.sum() == pytest.approx(1.0)
    o = outcome_arrays(_T_GRID, m.forecast_sim_)
    row = tab.filter(pl.col("quantity") == "car_cmax").row(0, named=True)
    q = weighted_quantile(o["car_cmax"], w, [0.05, 0.5, 0.95])
    assert (row["pi90_lo"], row["median"], row["pi90_hi"]) == pytest.approx(tuple(q))
    p = tab.filter(pl.col("quantity") == "crs_ge3")["probability"][0]
    assert p == pytest.approx(float(w @ o["crs_ge3"].astype(float)))
    # n_draws given: the kept (resampled) draws, evenly thinned, equal weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.forecast(5, n_draws=20)
    assert m.forecast_weights_ is None and m.forecast_sim_.latent["CARCOPY"].shape[0] == 20
