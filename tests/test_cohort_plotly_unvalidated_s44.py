"""The dashboard's cohort figures are built without plotly's property validation (issue 17: it took
about half of the cohort page's time on 1,000 subjects). Validation also normalises shorthand (a
template name, a colour-scale name, a colour bar's title as a string) that plotly.js would not read
from the JSON, so the figures must be written in the canonical forms: here every figure of every
view is built both ways and its JSON must hold the same values (key order aside), on the seed case (one subject,
reconstructed values), a synthetic cohort with events and one without events.csv (other notes and
bands). Expected values: plotly's own validated output, an independent implementation."""

from __future__ import annotations

import json
import shutil

import pytest

from cartlab.analyze import Analysis
from cartlab.datasets import seed_case, synthetic_cohort
from cartlab.io import read_study
from cartlab.protocol import load_protocol
from cartlab.report import cohort_plotly


@pytest.fixture(scope="module")
def analyses(tmp_path_factory):
    folder = synthetic_cohort(30, seed=11, out_dir=tmp_path_factory.mktemp("syn30"))
    bare = tmp_path_factory.mktemp("bare") / "study"
    shutil.copytree(folder, bare)
    (bare / "events.csv").unlink()
    return {"seed": Analysis(seed_case(), protocol=load_protocol("nct04762485")),
            "syn30": Analysis(read_study(folder)), "no_events": Analysis(read_study(bare))}


def _json(analysis, validate: bool, monkeypatch, ids=None) -> dict[str, str]:
    monkeypatch.setattr(cohort_plotly, "VALIDATE", validate)
    views = cohort_plotly.cohort_figures_plotly(analysis, ids)
    return {v.key: json.loads(v.figure.to_json()) for v in views if v.figure is not None}


def _diff(a, b, path="") -> str | None:
    """The first path where two JSON values differ (None: equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}/{k}: only in {'the fast' if k in a else 'the validated'} figure"
            d = _diff(a[k], b[k], f"{path}/{k}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := _diff(x, y, f"{path}[{i}]"))), None)
    return None if a == b and type(a) is type(b) else f"{path}: {str(a)[:80]!r} != {str(b)[:80]!r}"


@pytest.mark.parametrize("name", ["seed", "syn30", "no_events"])
def test_unvalidated_figures_are_the_validated_ones(analyses, name, monkeypatch):
    a = analyses[name]
    fast = _json(a, False, monkeypatch)
    checked = _json(a, True, monkeypatch)
    assert fast.keys() == checked.keys() and len(fast) >= 5
    for key in checked:
        assert _diff(fast[key], checked[key]) is None, (key, _diff(fast[key], checked[key]))
        assert "data" in fast[key]["layout"]["template"], key  # the template itself, never only its name


def test_unvalidated_figures_of_a_filtered_cohort(analyses, monkeypatch):
    a = analyses["syn30"]
    ids = a.study.subject_ids[:7]
    fast, checked = _json(a, False, monkeypatch, ids), _json(a, True, monkeypatch, ids)
    assert _diff(fast, checked) is None, _diff(fast, checked)


def test_the_flag_really_skips_validation(monkeypatch):
    """The fast path is the unvalidated one (else this file would compare a path with itself)."""
    monkeypatch.setattr(cohort_plotly, "VALIDATE", False)
    fig = cohort_plotly.figure([cohort_plotly.trace("Scatter", x=[1], y=[2], notaproperty=1)])
    assert fig.data[0].to_plotly_json().get("notaproperty") == 1
    monkeypatch.setattr(cohort_plotly, "VALIDATE", True)
    with pytest.raises(ValueError):
        cohort_plotly.trace("Scatter", x=[1], y=[2], notaproperty=1)
