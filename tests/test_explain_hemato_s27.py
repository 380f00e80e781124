"""`cartlab explain --what hematotox|easix|t-icaht|recovery` (traceability audit s27, finding 7): the
explanation restates the analysis's values, with the rows behind them. Expected values by hand from the
seed's rows (src/cartlab/datasets/seed_case/observations.csv)."""

from __future__ import annotations

import polars as pl
import pytest

from cartlab.analyze import Analysis
from cartlab.datasets import seed_case
from cartlab.explain import EXPLAINERS, explain


@pytest.fixture(scope="module")
def seed():
    return Analysis(seed_case())


def test_hematotox_items_by_hand(seed):
    """Baseline on or before day -5 (first lymphodepletion): PLT 42 (< 75: 2 points), Hb 7.1 g/dL (< 9.0:
    1), CRP 0.41 mg/dL (< 3.0: 0), ferritin 900 ng/mL (650-2000: 1); Rejeski 2021. The score row is the
    sum of the item points and cites the rows."""
    e = explain(seed, "hematotox", "CD7-AML-001")
    pts = {r["rule"].rsplit(".", 1)[-1]: r["grade"] for r in e.days.iter_rows(named=True)
           if r["rule"].startswith("car_hematotox.item.")}
    assert (pts["plat"], pts["hgb"], pts["crp"], pts["ferritin"]) == (2, 1, 0, 1)
    score = e.days.filter(~pl.col("rule").str.starts_with("car_hematotox.item.")).row(0, named=True)
    assert score["grade"] == sum(pts.values()) and score["evidence"]
    assert f"score {score['grade']}" in e.headline


def test_recovery_day_by_hand(seed):
    """Neutrophil recovery: the first of 3 consecutive days with ANC >= 0.5 x10^9/L after the nadir,
    computed here from the raw NEUT rows."""
    obs = seed.study.observations.filter((pl.col("param") == "NEUT") & (pl.col("day") >= 0))
    anc = dict(obs.group_by("day").agg(pl.col("value").max()).iter_rows())
    nadir_day = min(anc, key=lambda d: (anc[d], d))
    ok = [d for d in sorted(anc) if d > nadir_day and all(anc.get(d + k, -1) >= 0.5 for k in range(3))]
    e = explain(seed, "recovery", "CD7-AML-001")
    neut = e.days.filter(pl.col("rule") == "recovery.neutrophil").row(0, named=True)
    assert neut["day"] == ok[0] and f"on day {ok[0]:g}" in e.headline


@pytest.mark.parametrize("what", ["easix", "t-icaht"])
def test_every_row_names_its_rule_and_rows(seed, what):
    e = explain(seed, what, "CD7-AML-001")
    assert e.days.height >= 1
    assert all(r["rule"] and r["evidence"] for r in e.days.iter_rows(named=True))


def test_the_new_explainers_are_listed():
    assert {"hematotox", "easix", "t-icaht", "recovery"} <= set(EXPLAINERS)
