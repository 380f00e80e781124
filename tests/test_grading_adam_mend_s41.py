"""Session 41, mend of review41_diff2 findings 2, 4, 5, 12 and 13 (the ICANS engine's private import).

Expected values are worked by hand from the criteria text (each test says how), never copied from
cartlab's output.
"""

from __future__ import annotations

import warnings

import polars as pl
import yaml

from cartlab.analyze import Analysis, AnalysisOptions
from cartlab.criteria import load_raw
from cartlab.grading.ctcae import grade_labs
from cartlab.grading.ctcae_options import OPTION_DOCS, CtcaeOptions
from cartlab.io.adam import export_adam, load_spec
from test_absent_files_s37 import CRS_DAYS, _study, _vitals

# ---------------------------------------------------------------------------------------------
# F2: clinical_clauses=range keeps the upper bound the reading with the clause leaves open

def test_f2_range_keeps_the_open_reading_with_the_clause():
    """CTCAE v5.0 INR increased: G1 '>1.2 - 1.5 x ULN; >1 - 1.5 x baseline if on anticoagulation',
    G2 '>1.5 - 2.5 x ULN; >1.5 - 2.5 x baseline ...', G3 '>2.5 x ULN; >2.5 x baseline ...' (no G4 from
    labs). ULN 1.2, no BASE. INR 1.1 (<= ULN): grade 0 without the clause; on anticoagulation it could
    be 1, 2 or 3 (a baseline below 1.1, 0.73, 0.44) -> 0 up to 3, the reason naming both missing
    inputs (anticoagulation; BASE). INR 2.0: 1.5 x 1.2 = 1.8 < 2.0 <= 3.0 = 2.5 x ULN -> grade 2
    without the clause; with it 3 if the baseline is below 0.8 -> 2 up to 3 (the old code: 0/0, 2/2)."""
    f = pl.DataFrame({"term": ["INR increased"] * 2, "direction": ["H"] * 2, "aval": [1.1, 2.0],
                      "anrhi": [1.2, 1.2], "base": [None, None], "unit": ["1", "1"]},
                     schema_overrides={"base": pl.Float64})
    out = grade_labs(f, None, CtcaeOptions(clinical_clauses="range"))
    assert list(zip(out["grade"], out["grade_max"])) == [(0, 3), (2, 3)]
    for reason in out["grade_reason"]:
        assert "missing input: anticoagulation" in reason and "BASE missing" in reason


# ---------------------------------------------------------------------------------------------
# F4: ADAE gives the CRS lower bound (events.csv not given), as ADSL

def _adam(tmp_path, absent) -> tuple[dict, dict]:
    st = _study(_vitals(CRS_DAYS), absent=absent)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_adam(Analysis(st, AnalysisOptions()), tmp_path, datasets=["ADSL", "ADAE"], formats=("csv",))
    adsl = pl.read_csv(tmp_path / "adsl.csv", infer_schema_length=0).row(0, named=True)
    adae = (pl.read_csv(tmp_path / "adae.csv", infer_schema_length=0)
            .filter(pl.col("AETERM") == "Cytokine release syndrome").row(0, named=True))
    return adsl, adae


def test_f4_adae_gives_the_crs_lower_bound_as_adsl(tmp_path):
    """Day 1: 38.5 C, SBP 110 = ASTCT grade 1 (fever only; days 0 and 2 afebrile: a one-day episode).
    events.csv not given: the fever could be an infection's, so the episode may not have happened:
    lowest possible 0 -> ATOXGRLO 0, ATOXGR 1, ATOXRGFL Y, REASON naming the lower bound; ADSL
    CRSGRLO 0 / CRSGRFL Y (the same). With events.csv given (header only) the fever counts: 1 = 1."""
    adsl, ae = _adam(tmp_path / "a", ("events",))
    assert (ae["ATOXGRLO"], ae["ATOXGR"], ae["ATOXRGFL"]) == ("0", "1", "Y")
    assert (adsl["CRSGRLO"], adsl["CRSGRFL"]) == (ae["ATOXGRLO"], ae["ATOXRGFL"]) == ("0", "Y")
    assert "grade_min 0" in ae["REASON"][:200] or "down to grade 0" in ae["REASON"][:200]
    adsl, ae = _adam(tmp_path / "b", ())
    assert (ae["ATOXGRLO"], ae["ATOXGR"], adsl["CRSGRLO"]) == ("1", "1", "1")


# ---------------------------------------------------------------------------------------------
# F5: define.xml's ATOXGRUP derivation names the attached unattributed death

def test_f5_define_atoxgrup_names_the_attached_death():
    """Since review 41 F1 ATOXGRUP reads a day after AENRLDY whose unattributed death the engine
    attached to the episode (death_episode); the spec text (define.xml/define.csv) must say so, and
    ATOXGRLO is declared with its label."""
    adae = {v.name: v for v in load_spec().datasets["ADAE"].variables}
    up = adae["ATOXGRUP"].derivation
    assert "death_episode" in up and "not here" not in up
    assert adae["ATOXGRLO"].label == "Min Possible Analysis Toxicity Grade"
    assert "ATOXGRLO" in adae["ATOXRGFL"].derivation


# ---------------------------------------------------------------------------------------------
# F12: ctcae.clinical_clauses' default is in the criteria tables' defaults

def test_f12_clinical_clauses_default_is_table_data():
    """Rules are data: the default 'worst_case' (admiral's reading) lives in ctcae_v5.yaml and
    ctcae_v5_uscv.yaml ``defaults`` as the other engine-level defaults (signif_digits ...); the field
    is unset (None) until resolved from the table, and a table whose default is 'range' is graded as
    a range. CTCAE v5.0 Hyperuricemia: G1 '>ULN without physiologic consequences', G3 '>ULN with
    physiologic consequences': urate 0.45 mmol/L (ULN 0.43) -> 3 under worst_case, 1 up to 3 under
    range."""
    import copy
    from importlib import resources

    for name in ("ctcae_v5", "ctcae_v5_uscv"):
        data = yaml.safe_load(resources.files("cartlab.grading").joinpath(f"criteria/{name}.yaml").read_text())
        assert data["defaults"]["clinical_clauses"] == "worst_case"
    assert CtcaeOptions().clinical_clauses is None
    assert CtcaeOptions().resolved()["clinical_clauses"] == "worst_case"
    assert OPTION_DOCS["clinical_clauses"].endswith("(default worst_case)")
    f = pl.DataFrame({"term": ["Hyperuricemia"], "direction": ["H"], "aval": [0.45], "anrhi": [0.43],
                      "unit": ["mmol/L"]})
    assert grade_labs(f, None, CtcaeOptions()).select("grade", "grade_max").row(0) == (3, 3)
    table = copy.deepcopy(load_raw("ctcae_v5"))
    table["defaults"]["clinical_clauses"] = "range"
    table.setdefault("name", "ctcae_v5")
    assert grade_labs(f, table, CtcaeOptions()).select("grade", "grade_max").row(0) == (1, 3)


# ---------------------------------------------------------------------------------------------
# F13: the ICANS engine imports no private name of the CRS engine

def test_f13_icans_uses_the_public_assessed_days():
    import inspect

    from cartlab.grading import crs, icans

    assert icans.assessed_days is crs.assessed_days
    assert "import _" not in inspect.getsource(icans)
