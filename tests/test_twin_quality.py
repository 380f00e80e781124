"""cartlab.twin.quality: goodness of fit per parameter and whether forecast intervals are resolved.
Expected values are worked out by hand in the comments."""

from __future__ import annotations

import math

import polars as pl
import pytest

from cartlab.twin.quality import MIN_ESS_INTERVALS, MISFIT_RMS, fit_quality, intervals_reliable, misfit_text


def _obs(rows):
    return pl.DataFrame(rows, schema={"param": pl.String, "iwres": pl.Float64}, orient="row")


def test_fit_quality_by_hand():
    q = fit_quality(_obs([("NEUT", 1.0), ("NEUT", -1.0), ("NEUT", 3.0), ("NEUT", None),
                          ("CARCOPY", 4.0), ("CARCOPY", -5.0), ("BMBLAST", None)]))
    assert q["param"].to_list() == ["BMBLAST", "CARCOPY", "NEUT"]
    neut = q.row(2, named=True)
    # NEUT: 4 rows, 3 residuals; RMS sqrt((1 + 1 + 9) / 3) = 1.9149; max 3; none beyond 3 -> describes
    assert (neut["n_rows"], neut["n_residuals"]) == (4, 3)
    assert neut["rms_iwres"] == pytest.approx(math.sqrt(11 / 3), rel=1e-12)
    assert neut["max_abs_iwres"] == 3.0 and neut["share_abs_iwres_gt_3"] == 0.0 and neut["describes"] is True
    car = q.row(1, named=True)
    # CARCOPY: RMS sqrt((16 + 25) / 2) = 4.5277 > 3 -> does not describe; both rows beyond 3
    assert car["rms_iwres"] == pytest.approx(math.sqrt(41 / 2), rel=1e-12)
    assert car["share_abs_iwres_gt_3"] == 1.0 and car["describes"] is False
    # BMBLAST: censored only (no residual): neither described nor not -- unknown, never "fits"
    assert q.row(0, named=True)["describes"] is None and q.row(0, named=True)["n_residuals"] == 0
    assert misfit_text(q) == "CARCOPY (RMS standardised residual 4.5 over 2 rows)"


def test_misfit_boundary_and_order():
    # RMS exactly 3 still describes (<=); just above does not; the worst is named first
    q = fit_quality(_obs([("A", MISFIT_RMS), ("B", MISFIT_RMS + 1e-9), ("C", 10.0)]))
    assert q["describes"].to_list() == [True, False, False]
    assert misfit_text(q).startswith("C (RMS standardised residual 10.0") and ", B (" in misfit_text(q)
    assert misfit_text(fit_quality(_obs([("A", 0.5)]))) is None
    assert fit_quality(_obs([])).height == 0


def test_interval_reliability_boundary():
    assert MIN_ESS_INTERVALS == 20  # 0.05 x 20 = 1 effective draw beyond each 90% bound
    assert intervals_reliable("laplace", 20.0) and not intervals_reliable("laplace", 19.99)
    assert not intervals_reliable("laplace", float("nan"))
    assert intervals_reliable("mcmc", float("nan"))


def test_forecast_notes_flag_unresolved_intervals_and_a_peak_below_the_data():
    from types import SimpleNamespace

    from cartlab.twin.forecast import forecast_notes as _forecast_notes

    table = pl.DataFrame({"quantity": ["car_cmax"], "pi90_hi": [2256.0]})
    obs = pl.DataFrame({"param": ["CARCOPY", "CARCOPY", "CARCOPY", "TEMP"], "day": [4.0, 7.0, 9.0, 7.0],
                        "value": [1800.0, 26200.0, 90000.0, 39.0], "iwres": [0.1, 0.2, None, 0.0]})
    m = SimpleNamespace(intervals_reliable_=False, ess_=1.0, observations_=obs)
    notes = _forecast_notes(m, table)
    assert len(notes) == 2
    assert "effective sample size 1 < 20" in notes[0] and "--posterior mcmc" in notes[0]
    # the censored day-9 row (no residual) is not a measured level; day 7's 26,200 is
    assert notes[1].endswith("lies below a value already measured (2.62e+04 on day 7)")
    ok = SimpleNamespace(intervals_reliable_=True, ess_=500.0, observations_=obs.filter(pl.col("day") < 5))
    assert _forecast_notes(ok, table) == []
