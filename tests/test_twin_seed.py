"""The seed-case twin (issue 16 acceptance, design §4.3): fitted ONLY to the paper's own rows
(``source = paper``) plus the paper's qualitative facts as soft pseudo-observations, the simulated
course must reproduce the paper's anchors. Expected values are the paper's numbers
(../shared/seed/case-facts.md), not the program's output."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cartlab.datasets import seed_case
from cartlab.twin.fit import _T_GRID, SEED_ANCHORS, TwinModel

PEAK, DAY28 = 183_945.0, 5_084.0   # case-facts.md: CAR-T expansion peak (day 14) and day-28 persistence


@pytest.fixture(scope="module")
def twin():
    study = seed_case()
    return TwinModel(sources="paper", anchors=SEED_ANCHORS, n_sir=500, n_draws=200).fit(study, "CD7-AML-001")


def _lat(twin, p):
    return twin.course_.latent[p][0]


def test_fitted_only_to_paper_rows(twin):
    assert set(twin.observations_["source"].to_list()) == {"paper"}
    assert twin.observations_.filter(pl.col("param") == "CARCOPY").height == 2   # days 14 and 28


def test_car_peak_and_day28_within_two_fold(twin):
    t, c = _T_GRID, _lat(twin, "CARCOPY")
    w = (t >= 0) & (t <= 28)
    i = int(np.argmax(c[w]))
    peak, tpeak = c[w][i], t[w][i]
    assert PEAK / 2 <= peak <= PEAK * 2, peak
    assert 10 <= tpeak <= 17, tpeak
    d28 = c[np.searchsorted(t, 28.0)]
    assert DAY28 / 2 <= d28 <= DAY28 * 2, d28


def test_blasts_below_5pct_by_day17(twin):
    t, b = _T_GRID, _lat(twin, "BMBLAST")
    assert b[np.searchsorted(t, -7.0)] == pytest.approx(20.0, rel=0.05)   # 20% before CAR-T (paper)
    assert b[np.searchsorted(t, 17.0)] < 5.0


def test_cd7_positive_t_and_nk_fall_cd7_negative_t_kept(twin):
    t = _T_GRID
    w = (t >= 0) & (t <= 28)
    i0 = np.searchsorted(t, 0.0)
    ratio = {p: _lat(twin, p)[w].min() / _lat(twin, p)[i0] for p in ("CD7T", "CD7NK", "CD7NEGT")}
    assert ratio["CD7T"] < 0.2 and ratio["CD7NK"] < 0.2     # "fell markedly" [A: < 20% of baseline]
    assert ratio["CD7NEGT"] > ratio["CD7T"]                 # CD7- T cells kept


def test_fever_days_near_twelve(twin):
    fever = twin.anchors_.filter(pl.col("statistic") == "fever_days")["value"][0]
    assert 10 <= fever <= 14   # paper: fever lasting 12 days; tolerance +-2 [A]


def test_crs_grade3_by_the_astct_engine_on_the_simulated_course(twin, tmp_path):
    """The twin's MAP course with the clinic rule from day 0, observed on the schedule (noise, seed 0)
    and written as a study folder; the ASTCT engine grades it from the folder. The seed's care as the
    paper reports it: norepinephrine and dexamethasone, no tocilizumab (case-facts.md), so the rule
    runs with tocilizumab off (toci_max_doses = 0)."""
    from cartlab.grading import derive_crs_summary
    from cartlab.io.study_folder import read_study
    from cartlab.twin.calibrate import simulated_study

    folder = simulated_study(twin, tmp_path / "seed_twin", seed=0, toci_max_doses=0)
    s = derive_crs_summary(read_study(folder))
    grade = s["max_grade"][0] if "max_grade" in s.columns else s["crs_grade_astct"][0]
    assert grade == 3


def test_identifiability_table_and_profile_at_the_map(twin):
    """The profile at the MAP equals the MAP objective minus that parameter's own prior term (the
    others are already optimal there): an identity, not a value read from the program."""
    from cartlab.twin.identify import identifiability

    tab = identifiability(twin, profile_params=("rho",), n_points=3, span=1.0)
    ob = twin._objective
    assert tab["parameter"].to_list() == [ob.table.names[i] for i in ob.free]
    assert twin.sensitivity_["n_observations"] == twin.observations_.height + len(SEED_ANCHORS)
    prof = twin.profiles_
    at_map = prof.filter(pl.col("log_offset") == 0.0)["objective"][0]
    j = list(tab["parameter"]).index("rho")
    own = 0.5 * ((twin.x_[j] - ob.pm[j]) / ob.psd[j]) ** 2
    assert at_map == pytest.approx(twin.nll_ - own, abs=0.05)
    assert tab.filter(pl.col("parameter") == "rho")["verdict"][0] != "not profiled"


def test_overlay_figure_labels_simulated_values(twin, tmp_path):
    fig = twin.plot(tmp_path / "twin.png")
    assert (tmp_path / "twin.png").stat().st_size > 20_000
    labels = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert any("simulated" in x for x in labels)                # the twin's line
    assert any("reconstructed (not measured)" in x for x in labels)   # the seed's reconstructed rows
    assert "simulated, not measured" in fig._suptitle.get_text()
