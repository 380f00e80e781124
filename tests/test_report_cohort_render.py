"""Cohort view renderers (matplotlib and plotly): every view renders for the seed case and a
40-subject synthetic cohort, unavailable views name the missing table, ``subject_ids`` filters
every view, and legends explain the markers drawn."""

from __future__ import annotations

import polars as pl
import pytest

from cartlab.analyze import Analysis
from cartlab.datasets import seed_case, synthetic_cohort
from cartlab.io import read_study
from cartlab.protocol import load_protocol
from cartlab.report.cohort_mpl import cohort_figures
from cartlab.report.cohort_plotly import cohort_figures_plotly
from cartlab.report.cohort_views import VIEW_KEYS

TABLE_ONLY = {"toxicity", "deviations"}


@pytest.fixture(scope="module")
def seed_analysis():
    return Analysis(seed_case(), protocol=load_protocol("nct04762485"))


@pytest.fixture(scope="module")
def synthetic_analysis(tmp_path_factory):
    folder = synthetic_cohort(40, seed=3, out_dir=tmp_path_factory.mktemp("syn40"))
    return Analysis(read_study(folder))


def _by_key(views):
    return {v.key: v for v in views}


@pytest.mark.parametrize("render", [cohort_figures, cohort_figures_plotly])
def test_seed_case_every_view_renders_or_says_why(seed_analysis, render):
    views = _by_key(render(seed_analysis))
    assert tuple(views) == VIEW_KEYS
    for key, v in views.items():
        if v.unavailable:
            assert v.figure is None and v.table is None
        elif key in TABLE_ONLY:
            assert v.table is not None
        else:
            assert v.figure is not None, key
    # the seed patient (MLFS, not CR/CRh/CRi) is in no CIR population: the reason names the table
    assert "adtte" in views["relapse_incidence"].unavailable
    # a protocol was given: 2 missed marrow assessments (BMBLAST, MRDFCM on day 28), 1 subject
    dev = views["deviations"]
    assert dev.unavailable is None and dev.table["n_deviations"].sum() == 2
    assert "1 of 1 subject" in dev.caption
    # the seed's reconstructed values are said in the captions
    assert "reconstructed" in views["expansion"].caption


def test_seed_swimmer_matplotlib_legend_explains_every_marker(seed_analysis):
    v = _by_key(cohort_figures(seed_analysis))["swimmer"]
    ax = v.figure.axes[0]
    texts = [t.get_text().replace("\n", " ") for leg in ax.findobj(lambda o: hasattr(o, "get_texts")) if
             hasattr(leg, "legend_handles") for t in leg.get_texts()]
    joined = " | ".join(texts)
    # drawn for the seed: best response (MLFS filled: its day-17 marrow is source=paper, case-facts.md),
    # allo-HSCT, alive at last follow-up. Review 41 F1 (docs/report.md, Provenance marks): the bar ends on
    # last_followup_day, a reconstructed column of the subjects row -> pale bar; the allo-HSCT day is
    # "approximate" in its source note -> open marker. The response marker stays filled.
    for needle in ("MLFS", "best response", "allogeneic HSCT", "alive at last follow-up",
                   "pale bar = follow-up from not-measured data", "open marker = value not measured"):
        assert needle in joined, needle
    mk = v.data["markers"]
    assert mk.filter(pl.col("marker") == "response")["kind"].to_list() == ["paper"]
    assert mk.filter(pl.col("marker") == "allo-HSCT")["kind"].to_list() == ["reconstructed"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["CD7-AML-001"]


@pytest.mark.parametrize("render", [cohort_figures, cohort_figures_plotly])
def test_synthetic_cohort_every_view_renders(synthetic_analysis, render):
    views = _by_key(render(synthetic_analysis))
    for key, v in views.items():
        if key == "deviations":
            assert "no protocol" in v.unavailable
            continue
        assert v.unavailable is None, (key, v.unavailable)
        assert (v.table if key in TABLE_ONLY else v.figure) is not None, key
    # a synthetic cohort says so
    assert "synthetic" in views["swimmer"].caption


def test_subject_ids_filter_every_view(synthetic_analysis):
    ids = synthetic_analysis.study.subject_ids[:5]
    views = _by_key(cohort_figures_plotly(synthetic_analysis, ids))
    bars = [t for t in views["swimmer"].figure.data if t.type == "bar"]
    assert sorted(y for t in bars for y in t.y) == sorted(ids)
    tox = views["toxicity"].table
    assert (tox["N evaluable"] + tox["Not evaluable"]).unique().to_list() == [5]
    grades = views["crs_icans_grades"].table
    assert grades.group_by("term").agg(pl.col("n").sum())["n"].to_list() == [5, 5]
    rates = views["response_rates"].table
    assert rates.filter(pl.col("criteria") == "all")["n"].max() <= 5
    heat = views["cytokines"].figure.data[0]
    assert set(heat.y) <= set(ids)
    mpl = _by_key(cohort_figures(synthetic_analysis, ids))["swimmer"].figure
    assert sorted(t.get_text() for t in mpl.axes[0].get_yticklabels()) == sorted(ids)


def test_empty_selection_every_view_unavailable(synthetic_analysis):
    for v in cohort_figures_plotly(synthetic_analysis, []):
        assert v.unavailable and "no subjects in the selection" in v.unavailable, v.key
