"""Vasopressors are drugs, not strings: one vocabulary for the ASTCT engine and the older scales.

Expected grades are read off ASTCT 2019 Table 1 by hand: one vasopressor (with or without
vasopressin) = grade 3, two or more vasopressors other than vasopressin = grade 4. Which names are
the same drug comes from the US labels cited in criteria/vasopressor_equivalents.yaml (Levophed =
norepinephrine bitartrate, Adrenalin = epinephrine, Vasostrict = 8-L-arginine vasopressin, ...).
"""

from __future__ import annotations

import warnings

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cartlab.grading.common import load_criteria
from cartlab.grading.crs import derive_crs_daily
from cartlab.grading.crs_legacy import derive_crs_daily_inputs
from cartlab.grading.vasopressors import UnknownVasopressorWarning, normalize_agent, resolve_agents, vocabulary

from grading_helpers import study, vaso


def astct_day(agents, day=1):
    s = study(obs=[("A", day, "TEMP", 38.5), ("A", day, "SYSBP", 80.0)], iv=[vaso(a, day) for a in agents])
    return derive_crs_daily(s).filter(pl.col("day") == day).row(0, named=True)


@pytest.mark.parametrize(
    "agents, n, n_excl, grade",
    [
        (["norepinephrine", "noradrenaline"], 1, 1, 3),          # one drug, two names
        (["norepinephrine", "Noradrenaline "], 1, 1, 3),         # case and whitespace
        (["norepinephrine", "argipressin"], 2, 1, 3),            # argipressin is vasopressin
        (["Levophed", "norepinephrine"], 1, 1, 3),               # brand name
        (["LEVOPHED", "Adrenalin"], 2, 2, 4),                    # two different drugs by brand
        (["norepinephrine", "Vasostrict"], 2, 1, 3),             # vasopressin by brand
        (["phenylephrine", "Neo-Synephrine", "biorphen"], 1, 1, 3),
        (["norepinephrine_bitartrate", "NOREPINEPHRINE"], 1, 1, 3),
    ],
)
def test_vasopressor_names_resolve_to_drugs(agents, n, n_excl, grade):
    r = astct_day(agents)
    assert (r["n_vasopressors"], r["n_vasopressors_excl_vasopressin"], r["grade"]) == (n, n_excl, grade)
    # every source row stays in the evidence, whatever its spelling
    assert all(f"interventions.csv:{i + 1}" in r["evidence"] for i in range(len(agents)))


def test_unknown_agent_is_its_own_drug_and_warned():
    with pytest.warns(UnknownVasopressorWarning, match="angiotensin ii"):
        r = astct_day(["norepinephrine", "Angiotensin  II"])
    # an unknown name is never merged with a known drug and is not vasopressin: two drugs -> grade 4
    assert (r["n_vasopressors"], r["n_vasopressors_excl_vasopressin"], r["grade"]) == (2, 2, 4)
    assert "not in the vasopressor vocabulary" in r["reason"]


def test_missing_agent_counts_once_and_is_warned():
    with pytest.warns(UnknownVasopressorWarning, match="without an agent name"):
        r = astct_day([None, None])
    assert (r["n_vasopressors"], r["grade"]) == (1, 3)


def test_known_names_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownVasopressorWarning)
        astct_day(["Levophed", "vasopressin"])


def test_vocabulary_rows_cite_their_names():
    t = load_criteria("vasopressor_equivalents")
    for row in t["agents"]:
        assert row["names_citation"] and row["names_status"] in ("verified", "unverified"), row["name"]
    assert normalize_agent("  Neo_Synephrine®  ") == "neo synephrine"
    assert vocabulary().lookup["levophed"] == "norepinephrine"


def test_legacy_scales_use_the_same_vocabulary():
    from test_crs_legacy import iv, make_study

    s = make_study([iv(8, 10, dose=4, agent="norepinephrine"), iv(8, 10, dose=4, agent="Noradrenaline"),
                    iv(9, 9, agent="argipressin", dose=0.03, dose_unit="U/min")])
    r = derive_crs_daily_inputs(s).filter(pl.col("day") == 9).row(0, named=True)
    assert r["vasopressor_agents"] == ["norepinephrine", "vasopressin"]
    assert (r["n_vasopressors"], r["n_vasopressors_excl_vasopressin"]) == (2, 1)
    # the NE-equivalent adds both rows of the one drug: 4 + 4 ug/min
    assert r["ne_equiv_max_ug_min"] == pytest.approx(8.0)
    # a brand name the older table did not know: Adrenalin is epinephrine (one drug, not two)
    s = make_study([iv(8, 10, dose=4, agent="Adrenalin"), iv(8, 10, dose=4, agent="epinephrine")])
    r = derive_crs_daily_inputs(s).filter(pl.col("day") == 9).row(0, named=True)
    assert (r["vasopressor_agents"], r["n_vasopressors"]) == (["epinephrine"], 1)


# --------------------------------------------------------------------------------------------------
# property: ASTCT and the legacy scales count the same drugs, whatever the spelling

_SPELLINGS = {canon: sorted({n for n, c in vocabulary().lookup.items() if c == canon})
              for canon in vocabulary().agents}


@st.composite
def _spelling(draw, canon):
    name = draw(st.sampled_from(_SPELLINGS[canon]))
    name = "".join(ch.upper() if draw(st.booleans()) else ch for ch in name)
    sep = draw(st.sampled_from([" ", "  ", "_", "-"]))
    return draw(st.sampled_from(["", " ", "\t"])) + name.replace(" ", sep) + draw(st.sampled_from(["", " "]))


@st.composite
def _day_rows(draw):
    canons = draw(st.lists(st.sampled_from(sorted(_SPELLINGS)), min_size=1, max_size=5))
    return [(c, draw(_spelling(c))) for c in canons]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_day_rows())
def test_astct_and_legacy_counts_agree(rows):
    from test_crs_legacy import iv, make_study

    drugs = {c for c, _ in rows}
    expected = (len(drugs), len(drugs - {"vasopressin"}))  # by hand: distinct drugs, vasopressin aside
    s = make_study([iv(8, 8, dose=None, agent=name) for _, name in rows], days=range(7, 10))
    legacy = derive_crs_daily_inputs(s).filter(pl.col("day") == 8).row(0, named=True)
    astct = derive_crs_daily(s).filter(pl.col("day") == 8).row(0, named=True)
    assert (astct["n_vasopressors"], astct["n_vasopressors_excl_vasopressin"]) == expected
    assert (legacy["n_vasopressors"], legacy["n_vasopressors_excl_vasopressin"]) == expected
    assert sorted(legacy["vasopressor_agents"]) == sorted(drugs)


def test_resolve_agents_is_vectorised_over_a_frame():
    out = resolve_agents(pl.DataFrame({"agent": ["Noradrenaline ", "LEVOPHED", "argipressin", "dopamine"]}))
    assert out["vaso_agent"].to_list() == ["norepinephrine", "norepinephrine", "vasopressin", "dopamine"]
    assert out["vaso_is_vasopressin"].to_list() == [False, False, True, False]


def test_unknown_agent_reaches_the_analysis_warnings():
    from cartlab.analyze import Analysis
    from cartlab.errors import CartlabWarning

    assert issubclass(UnknownVasopressorWarning, CartlabWarning)
    s = study(obs=[("A", 1, "TEMP", 38.5), ("A", 1, "SYSBP", 80.0)], iv=[vaso("Giapreza", 1)])
    a = Analysis(s)
    a.table("crs_daily")
    assert any("giapreza" in w["message"] for w in a.warnings)
