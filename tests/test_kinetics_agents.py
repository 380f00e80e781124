"""One CAR-T agent rule (kinetics.agents): the scalar and the column form agree, and the Stein
reader uses it (it used its own pattern, ``^car[- ]?t``, which missed "CD7 CAR-T")."""

from __future__ import annotations

import dataclasses

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from cartlab.datasets import seed_case
from cartlab.kinetics.agents import car_t_agent_expr, is_car_t_agent
from cartlab.kinetics.stein.data import _from_study

WORDS = st.sampled_from(["CAR", "car", "T", "t", "-", "_", " ", "CD7", "leucel", "tisagen", "cabtagene", "fludarabine",
                         "axi", "ciloleucel", "Cy", "x", "cel", "Kymriah", "Carvykti", "ide"])


@given(st.lists(st.one_of(st.none(), st.lists(WORDS, max_size=5).map("".join), st.text(max_size=12)), max_size=20))
def test_the_column_form_is_the_scalar_rule(agents):
    got = pl.DataFrame({"a": agents}, schema={"a": pl.String}).select(car_t_agent_expr(pl.col("a"))).to_series()
    assert got.to_list() == [is_car_t_agent(a) for a in agents]


def test_the_stein_reader_finds_a_cd7_car_t_dose():
    s = seed_case()
    renamed = dataclasses.replace(s, doses=s.doses.with_columns(
        pl.when(pl.col("agent") == "CAR-T").then(pl.lit("CD7 CAR-T")).otherwise(pl.col("agent")).alias("agent")))
    _, doses, _ = _from_study(renamed, "CARCOPY")
    _, expected, _ = _from_study(s, "CARCOPY")
    assert doses.height == expected.height == 2  # the seed's two split infusions, days 0 and 2 (case-facts.md)


def test_marketed_products_by_brand_and_short_name():
    """Brand and short names of the marketed CAR-T products (car_t_products.yaml, cited per row) are
    CAR-T infusions; other -cel words and lymphodepletion are not."""
    for name in ("Kymriah", "Yescarta", "Tecartus", "Breyanzi", "Abecma", "CARVYKTI", "axi-cel", "Axi Cel", "tisa-cel",
                 "brexu-cel", "liso_cel", "ide-cel", "cilta-cel"):
        assert is_car_t_agent(name), name
    # session 45 (review 45 kinetics F2): a product name among other words is that product ("Kymriah
    # maintenance" was listed here as not CAR-T, with no reason given; "Kymriah (tisagenlecleucel)" must be)
    for name in ("fludarabine", "cyclophosphamide", "cel", "ide", "tocilizumab", "Kymriahx", "tisacelx"):
        assert not is_car_t_agent(name), name
