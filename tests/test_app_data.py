"""The dashboard's data layer without a browser: one Analysis per study, dose levels, filters, the
tables shown and their CSV, the course figure's provenance labels, the twin regimens."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from cartlab.app import cohort as C
from cartlab.app.data import Catalog, dose_level_label, dose_levels
from cartlab.app.figures import NOT_MEASURED_NOTE, course_figure, course_points
from cartlab.app.server import csv_text
from cartlab.datasets import seed_case


@pytest.fixture(scope="module")
def seed_view():
    return Catalog.from_study(seed_case(), "folder seed_case").view("seed_case")


@pytest.mark.parametrize("value, label", [(5e6, "5×10⁶/kg"), (1e6, "1×10⁶/kg"), (2.5e5, "2.5×10⁵/kg"),
                                          (9.96e6, "1×10⁷/kg"), (None, None), (0.0, None)])
def test_dose_level_label(value, label):
    assert dose_level_label(value) == label


def test_dose_levels_by_hand(small_study):
    """tests/conftest.py small_study: S1 1e6 cells/kg; S2 '1 10^6 cells/kg' = 1e6 cells/kg after units."""
    from cartlab.io import read_study

    lv = dose_levels(read_study(small_study))
    assert dict(zip(lv["subject_id"], lv["dose_level"])) == {"S1": "1×10⁶/kg", "S2": "1×10⁶/kg"}


def test_absolute_dose_needs_a_weight():
    """cells are divided by weight_kg (2e8 cells / 80 kg = 2.5e6/kg); without a weight: unknown (not 0)."""
    from cartlab.model import Study, conform

    subjects = conform(pl.DataFrame({"subject_id": ["A", "B"], "weight_kg": [80.0, None]}), "subjects")
    doses = conform(pl.DataFrame({"subject_id": ["A", "B"], "day": [0.0, 0.0], "agent": ["CAR-T", "CAR-T"],
                                  "dose": [2e8, 2e8], "unit": ["cells", "cells"]}), "doses")
    s = Study(study_id="x", subjects=subjects, doses=doses)
    lv = dose_levels(s)
    assert lv["car_t_cells_per_kg"].to_list() == [2.5e6, None]
    assert lv["dose_level"].to_list() == ["2.5×10⁶/kg", None]


def test_seed_view_once(seed_view):
    """The seed case (Cao et al. 2022): ASTCT CRS 3, 1e6/kg + 4e6/kg CAR-T; the Analysis is kept."""
    catalog = Catalog.from_study(seed_case(), "x")
    v1 = catalog.view("seed_case")
    assert catalog.view("seed_case") is v1  # cached: the Analysis is computed once
    row = seed_view.cohort.row(0, named=True)
    assert row["crs_grade_astct"] == 3 and row["dose_level"] == "5×10⁶/kg"
    assert row["disease"] == "AML" and row["target"] == "CD7"
    assert seed_view.options["strict"] is False and "crs" in seed_view.options  # options recorded


def test_patient_rows_are_the_subjects(seed_view):
    p = seed_view.patient("CD7-AML-001")
    assert set(p.observations["subject_id"]) == {"CD7-AML-001"}
    assert p.crs_daily.height == seed_view.analysis.table("crs_daily").height  # one subject: all its rows
    assert seed_view.patient("CD7-AML-001") is p
    with pytest.raises(KeyError):
        seed_view.patient("nobody")


def _cohort():
    return pl.DataFrame({"subject_id": ["a", "b", "c", "d"], "disease": ["AML", "AML", "B-ALL", None],
                         "target": ["CD7", "CD7", "CD19", "CD19"], "dose_level": ["1×10⁶/kg", None, "1×10⁶/kg", None],
                         "best_response": ["CR", None, "CR", "NR"], "crs_grade_astct": [0, 3, None, 1]})


def test_filter_choices_missing_apart():
    ch = C.filter_choices(_cohort())
    assert ch["f_disease"] == ["AML", "B-ALL", "unknown"]
    assert ch["f_crs"] == ["0", "1", "3", "not evaluable"]
    assert ch["f_response"] == ["CR", "NR", "not evaluable"]


@pytest.mark.parametrize("sel, ids", [
    ({}, ["a", "b", "c", "d"]),
    ({"f_disease": ["AML"]}, ["a", "b"]),
    ({"f_disease": ["AML"], "f_crs": ["3"]}, ["b"]),
    ({"f_crs": ["0"]}, ["a"]),  # a missing grade is not grade 0
    ({"f_crs": ["not evaluable"]}, ["c"]),
    ({"f_response": ["CR"], "f_target": ["CD19"]}, ["c"]),
    ({"f_dose": ["unknown"]}, ["b", "d"]),
    ({"f_disease": []}, ["a", "b", "c", "d"]),
])
def test_filter_cohort(sel, ids):
    assert C.filter_cohort(_cohort(), sel)["subject_id"].to_list() == ids


def test_grades_table_and_csv(seed_view):
    p = seed_view.patient("CD7-AML-001")
    t = C.grades_table(p.crs_daily, p.icans_daily)
    assert t.height == p.crs_daily.height + p.icans_daily.height
    crs = t.filter(pl.col("scale").str.starts_with("CRS"))
    assert crs["grade"].max() == 3  # the seed's ASTCT maximum (paper)
    text = csv_text(t)
    header = text.splitlines()[0].split(",")
    assert header[:4] == ["scale", "day", "grade", "grade_max"]
    assert "; " in text or "observations.csv:" in text  # evidence lists written as text


def test_course_points_provenance():
    obs = pl.DataFrame({"param": ["CARCOPY"] * 4, "day": [1.0, 2.0, 3.0, None], "value": [10.0, 0.0, 5.0, 1.0],
                        "lloq": [None, None, 20.0, None], "censor": [None] * 4, "censor_limit": [None] * 4,
                        "specimen": ["PB", "PB", "", "PB"], "unit": ["c"] * 4,
                        "source": ["paper", "synthetic", None, "observed"], "src_file": ["o.csv"] * 4,
                        "src_row": [1, 2, 3, 4]})
    pts = course_points(obs, "CARCOPY", log=True)
    # day None is not drawable; 0 is not drawable on a log axis; 5 < LLOQ 20 is drawn at 20 as "below"
    assert pts["day"].to_list() == [1.0, 3.0]
    assert pts["prov"].to_list() == ["paper", "observed"]
    assert pts["kind"].to_list() == ["value", "below"] and pts["y"].to_list() == [10.0, 20.0]
    lin = course_points(obs, "CARCOPY", log=False)
    assert lin.filter(pl.col("day") == 2.0)["prov"].to_list() == ["reconstructed"]


def test_course_figure_labels_not_measured(seed_view):
    fig = course_figure(seed_view.patient("CD7-AML-001"))
    names = {t.name for t in fig.data}
    assert "CAR copies — not measured" in names and "CAR copies — stated in the publication" in names
    assert fig.layout.title.text == NOT_MEASURED_NOTE
    # the panels share one x axis (zooming one zooms all)
    assert all(fig.layout[f"xaxis{i}"].matches == "x5" or fig.layout[f"xaxis{i}"].matches is None
               for i in range(1, 6))
    assert fig.layout.xaxis.matches == "x5"


def test_twin_regimens():
    from cartlab.app.twin import REGIMENS, with_booster
    from cartlab.twin.clinic import ClinicPolicy
    from cartlab.twin.model import Events

    fields = {f.name for f in dataclasses.fields(ClinicPolicy)}
    assert all(set(over) <= fields for _l, over, _b in REGIMENS.values())
    ev = Events(car_t_day=[[0.0, 2.0]], car_t_cells=[[5e7, 2e8]], ld_day=[[-3.0]], ld_intensity=[[1.0]],
                toci_day=[[np.nan]], steroid_day=[[np.nan]])
    b = with_booster(ev, 14.0)
    assert b.car_t_day.tolist() == [[0.0, 2.0, 14.0]]
    assert b.car_t_cells.tolist() == [[5e7, 2e8, 5e7]]  # the first infusion's dose again
    assert ev.car_t_day.shape == (1, 2)  # the input is unchanged


def test_catalog_from_store_is_read_only(tmp_path):
    """Every study of a store is listed; loading one reads the store without changing it."""
    import hashlib

    from cartlab.datasets import seed_case_path
    from cartlab.store import Store

    path = tmp_path / "s.duckdb"
    with Store(path) as s:
        s.import_study(seed_case_path(), "seed")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    catalog = Catalog.from_store(path)
    assert catalog.ids() == ["seed"]
    assert catalog.listing()["analysed"].to_list() == ["not yet"]
    v = catalog.view("seed")
    assert v.cohort["crs_grade_astct"].to_list() == [3]
    assert catalog.listing()["analysed"].to_list() == ["yes"]
    with Store(path, read_only=True):  # a read-only opener can still open it: no lock held by the catalog
        pass
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_twin_regimen_probabilities_rest_on_the_effective_draws(monkeypatch):
    """The dashboard's regimen table shows a probability of 0 from N draws as "< 1/N" with N the SIR
    effective sample size (7 of 40 here), as `cartlab twin forecast` does - not the 40 draws."""
    import types

    import cartlab.twin.forecast as forecast
    from cartlab.app.twin import simulate_regimen

    seen = {}

    def fake_table(t, sim, n_effective=None, weights=None):
        seen["n"], seen["w"] = n_effective, weights
        return pl.DataFrame({"quantity": ["crs_ge3"]})

    monkeypatch.setattr(forecast, "forecast_table", fake_table)
    sim = types.SimpleNamespace(latent={"CARCOPY": np.ones((40, 3))})
    # session 34: a Laplace + SIR model's 40 importance draws with their weights are simulated
    model = types.SimpleNamespace(ess_=7.3, events_=None, posterior="laplace", is_draws_=np.zeros((40, 2)),
                                  is_weights_=np.full(40, 1 / 40),
                                  simulate_after=lambda *a, **k: (np.array([-1.0, 0.0, 1.0]), sim))
    table, curve = simulate_regimen(model, 7.0, "clinic")
    assert seen["n"] == 7 and curve[0] == [0.0, 1.0]
    assert seen["w"] is not None and len(seen["w"]) == 40
