"""Session 39 (review 39 of CTCAE v5 grading): R39-1 LDH, R39-2 clinical clauses in the reason,
R39-3 one Hypocalcemia term in the summary, R39-4 a range for a missing reference limit, R39-5
BNRIND from BASE against the row's limits in grade_labs.

Expected values are derived by hand from the CTCAE v5.0 text (as quoted in ctcae_v5.yaml's
``ctcae`` blocks, admiral's transcription) and written in the comments; none is copied from output.
"""

from __future__ import annotations

import polars as pl
import pytest

from cartlab.grading.ctcae import CtcaeOptions, ctcae_terms, derive_ctcae, grade_labs


def _grade(rows: list[dict], **opts) -> pl.DataFrame:
    cols = ("term", "param", "direction", "aval", "anrlo", "anrhi", "base", "bnrind", "unit", "criteria_units")
    frame = pl.DataFrame([{c: r.get(c) for c in cols} for r in rows],
                         schema={c: (pl.Float64 if c in ("aval", "anrlo", "anrhi", "base") else pl.String) for c in cols})
    return grade_labs(frame, None, CtcaeOptions(**opts))


# ---------------------------------------------------------------------------------------------
# R39-1: CTCAE v5.0 "Blood lactate dehydrogenase increased": grade 1 ">ULN", no grade 2-5


def test_ldh_increased_grade_1_above_uln_both_tables():
    out = _grade([
        # 500 > ULN 250: grade 1 (the only grade CTCAE v5.0 defines)
        {"param": "LDH", "direction": "H", "aval": 500, "anrhi": 250, "unit": "U/L"},
        # equal to the ULN: not ">ULN": grade 0
        {"param": "LDH", "direction": "H", "aval": 250, "anrhi": 250, "unit": "U/L"},
        # 20 x ULN: still grade 1 (no grade 2-4 in CTCAE v5.0)
        {"term": "Blood lactate dehydrogenase increased", "direction": "H", "aval": 5000, "anrhi": 250, "unit": "U/L"},
        # no ULN: ">ULN" cannot be decided and grade 0-1 is the whole scale: not gradable
        {"param": "LDH", "direction": "H", "aval": 500, "unit": "U/L"},
        # the US table has the term too
        {"term": "Blood lactate dehydrogenase increased", "direction": "H", "aval": 500, "anrhi": 250, "unit": "U/L",
         "criteria_units": "US"},
    ])
    assert out["grade"].to_list() == [1, 0, 1, None, 1]
    assert out["rule"][0] == "ctcae_v5:ldh_increased:g1"
    assert out["rule"][4] == "ctcae_v5_uscv:ldh_increased:g1"
    assert "ANRHI missing" in out["grade_reason"][3]
    terms = ctcae_terms()
    ldh = terms.filter(pl.col("term") == "Blood lactate dehydrogenase increased")
    assert sorted(ldh["table"].to_list()) == ["ctcae_v5", "ctcae_v5_uscv"]
    assert ldh["params"].to_list() == ["LDH", "LDH"] and ldh["direction"].to_list() == ["H", "H"]


# ---------------------------------------------------------------------------------------------
# R39-2: the clinical alternative of a higher grade is named on a lower lab grade (grade unchanged)


def test_clinical_clause_of_higher_grades_named_grade_unchanged():
    out = _grade([
        # K 5.2 > ULN 5.1, <= 5.5: grade 1; CTCAE G2 ">5.5 - 6.0 mmol/L; intervention initiated",
        # G3 ">6.0 - 7.0 mmol/L; hospitalization indicated"
        {"param": "K", "direction": "H", "aval": 5.2, "anrlo": 3.5, "anrhi": 5.1, "unit": "mmol/L"},
        # Hb 95 g/L: "<100 - 80 g/L" grade 2; G3 "...; <80 g/L; transfusion indicated"
        {"param": "HGB", "direction": "L", "aval": 95, "anrlo": 120, "unit": "g/L"},
        # albumin 19 g/L < 20: grade 3, the highest lab grade: the grade-4 note only ("needs clinical findings")
        {"param": "ALB", "direction": "L", "aval": 19, "anrlo": 35, "unit": "g/L"},
        # Na 152 mmol/L: ">150 - 155" grade 2; G3 ">155 - 160 mmol/L; hospitalization indicated"
        {"param": "SODIUM", "direction": "H", "aval": 152, "anrhi": 145, "unit": "mmol/L"},
    ])
    assert out["grade"].to_list() == [1, 2, 3, 2]
    assert out["grade_max"].to_list() == [1, 2, 3, 2]
    k, hb, alb, na = out["grade_reason"].to_list()
    assert "to grade 2 if intervention initiated" in k and "to grade 3 if hospitalization indicated" in k
    assert "to grade 3 if transfusion indicated" in hb
    assert "clinical clause can raise" not in alb and "grade 4 (Life-threatening consequences" in alb
    assert "to grade 3 if hospitalization indicated" in na and "to grade 2" not in na


# ---------------------------------------------------------------------------------------------
# R39-4: a missing reference limit where the value alone bounds the grade: a range naming it


def test_missing_lln_gives_range_when_value_bounds_it():
    out = _grade([
        # ANC 1.7 x 10^9/L: not "<1.5" (grade 2), so at most grade 1 ("<LLN - 1.5", only if LLN > 1.7): 0-1
        {"param": "NEUT", "direction": "L", "aval": 1.7, "unit": "10^9/L"},
        # ANC 1.2: "<1.5 - 1.0" is grade 2 whatever the LLN: settled as before
        {"param": "NEUT", "direction": "L", "aval": 1.2, "unit": "10^9/L"},
        # K 5.2 without limits: not ">5.5" (grade 2), grade 1 only if ULN < 5.2: 0-1
        {"param": "K", "direction": "H", "aval": 5.2, "unit": "mmol/L"},
        # ALT 45 U/L without ULN: anything from 0 (ULN >= 45) to 4 (ULN < 2.25): no bound, not gradable
        {"param": "ALT", "direction": "H", "aval": 45, "unit": "U/L"},
    ])
    assert out["grade"].to_list() == [0, 2, 0, None]
    assert out["grade_max"].to_list() == [1, 2, 1, None]
    r = out["grade_reason"].to_list()
    assert "ANRLO missing" in r[0] and "0-1" in r[0]
    assert "ANRHI missing" in r[2]
    assert r[3].startswith("not gradable") and "ANRHI missing" in r[3]


def test_missing_lln_range_in_derive_ctcae():
    obs = pl.DataFrame({
        "subject_id": ["S1", "S1"], "day": [-1.0, 6.0], "param": ["NEUT", "NEUT"], "value": [3.0, 1.7],
        "unit": ["10^9/L", "10^9/L"], "lln": [1.8, None], "uln": [7.5, None],
        "src_file": ["observations.csv"] * 2, "src_row": [1, 2]})
    with pytest.warns(Warning):
        adlb = derive_ctcae(obs)
    row = adlb.filter(pl.col("day") == 6.0)
    # as above: 1.7 with no LLN is grade 0-1 (ATOXGRL 0, ATOXGRL_MAX 1), not "not gradable"
    assert row["ATOXGRL"].to_list() == [0] and row["ATOXGRL_MAX"].to_list() == [1]
    assert "ANRLO missing" in str(row["grade_reason"][0])


# ---------------------------------------------------------------------------------------------
# R39-5: BNRIND from BASE against the row's own limits (ADaM BNRIND = ANRIND of the baseline)


def test_bnrind_derived_from_base_and_row_limits():
    out = _grade([
        # BASE 35 <= ULN 40: baseline normal; ALT 45 > ULN: grade 1 ">ULN - 3.0 x ULN", settled
        {"param": "ALT", "direction": "H", "aval": 45, "anrhi": 40, "base": 35, "unit": "U/L"},
        # BASE 50 > ULN 40: baseline abnormal; "1.5 - 3.0 x baseline": 45 < 75: grade 0, settled
        {"param": "ALT", "direction": "H", "aval": 45, "anrhi": 40, "base": 50, "unit": "U/L"},
        # a BNRIND given wins (NORMAL): grade 1 as the first row, no "derived" note
        {"param": "ALT", "direction": "H", "aval": 45, "anrhi": 40, "base": 50, "bnrind": "NORMAL", "unit": "U/L"},
    ])
    assert out["grade"].to_list() == [1, 0, 1]
    assert out["grade_max"].to_list() == [1, 0, 1]
    r = out["grade_reason"].to_list()
    assert "BNRIND NORMAL derived from BASE" in r[0] and "baseline status unknown" not in r[0]
    assert "BNRIND HIGH derived from BASE" in r[1]
    assert "derived" not in r[2]


def test_fibrinogen_baseline_low_uses_derived_bnrind():
    # fibrinogen 1.9 g/L, LLN 2.0: 0.95 x LLN is grade 1 "<1.0 - 0.75 x LLN"; BASE 4.0 >= LLN: baseline
    # normal, so the "if abnormal" percent-decrease reading (baseline_low) does not apply: grade 1 settled
    out = _grade([{"param": "FIBRINO", "direction": "L", "aval": 1.9, "anrlo": 2.0, "anrhi": 4.0, "base": 4.0,
                   "unit": "g/L"}], fibrinogen_pchg_condition="baseline_low")
    assert out["grade"].to_list() == [1] and out["grade_max"].to_list() == [1]


# ---------------------------------------------------------------------------------------------
# R39-3: one CTCAE term Hypocalcemia (corrected or ionized calcium) in the subject summary


def test_calcium_summary_merged_takes_worse_variant():
    from cartlab.grading.ctcae_summary import lab_term_worst

    adlb = pl.DataFrame({
        "subject_id": ["S1", "S1"], "day": [5.0, 5.0], "param": ["CACORR", "CAION"],
        "ATOXDSCL": ["Hypocalcemia", "Hypocalcemia (Ionized)"], "ATOXGRL": [0, 1],
        "ATOXDSCH": ["Hypercalcemia", "Hypercalcemia (Ionized)"], "ATOXGRH": [0, 0],
        "ATOXGRL_MAX": [None, None], "ATOXGRH_MAX": [None, None]},
        schema_overrides={"ATOXGRL_MAX": pl.Int64, "ATOXGRH_MAX": pl.Int64})
    assert CtcaeOptions().calcium_summary == "merged"
    merged = lab_term_worst(adlb)
    # CTCAE v5.0 Hypocalcemia = max(corrected grade 0, ionized grade 1) = grade 1, one row
    hypo = merged.filter(pl.col("term") == "Hypocalcemia")
    assert hypo["grade"].to_list() == [1]
    assert "decided by CAION" in hypo["reason"][0]
    assert sorted(merged["term"].to_list()) == ["Hypercalcemia", "Hypocalcemia"]
    split = lab_term_worst(adlb, "split")
    assert dict(zip(split["term"], split["grade"])) == {
        "Hypercalcemia": 0, "Hypercalcemia (Ionized)": 0, "Hypocalcemia": 0, "Hypocalcemia (Ionized)": 1}
    with pytest.raises(ValueError):
        lab_term_worst(adlb, "other")
