"""CTCAE v5.0 lab grading: the fixes of the lab audit (notes/audit_labs/REPORT.md, session 26).

Every expected value is derived by hand from the CTCAE v5.0 text quoted in the comment (the text as
transcribed in criteria/ctcae_v5.yaml, ``ctcae:`` of each term) or from the correction formula;
none is copied from cartlab's output.

1. Hypo-/Hypercalcemia grade corrected calcium (CACORR, derived from CA and ALB of the same day) or
   ionized calcium (CAION); total calcium CA alone is not graded (option ``calcium``).
2. Liver tests with an abnormal baseline (BNRIND HIGH) and no BASE: not gradable, naming BASE.
3. Creatinine without BASE: the "x baseline" grades stay open: ``grade_max`` and the reason.
4. Plain table: PCHG computed from BASE when not given (fibrinogen).
5. BNRIND matched case-insensitively; an unknown value is an error naming the row and column.
6. Hypophosphatemia / Hyperglycemia: v5.0 terms graded by intervention, said so.
7. Hyponatremia between whole mmol/L: 125-129 read as [125, 130), 120-124 as [120, 125).
"""

from __future__ import annotations

import polars as pl
import pytest

from cartlab.cli.grading_io import ctcae_command
from cartlab.criteria.status import rule_status
from cartlab.grading.ctcae import CtcaeOptions, derive_ctcae, grade_labs
from cartlab.io.dictionary import load_dictionary
from cartlab.model import conform

ALT = "Alanine aminotransferase increased"
SCHEMA = {"term": pl.String, "param": pl.String, "direction": pl.String, "aval": pl.Float64, "anrlo": pl.Float64,
          "anrhi": pl.Float64, "base": pl.Float64, "bnrind": pl.String, "pchg": pl.Float64, "unit": pl.String}


def grade(term=None, direction="L", aval=None, anrlo=None, anrhi=None, base=None, bnrind=None, pchg=None,
          unit=None, param=None, options=None):
    """One row through grade_labs: (grade, grade_max, rule, reason)."""
    row = {"term": term, "param": param, "direction": direction, "aval": aval, "anrlo": anrlo, "anrhi": anrhi,
           "base": base, "bnrind": bnrind, "pchg": pchg, "unit": unit}
    r = grade_labs(pl.DataFrame([row], schema=SCHEMA), options=options).row(0, named=True)
    return r["grade"], r["grade_max"], r["rule"], r["grade_reason"]


# ---------------------------------------------------------------------------------------------
# 1. calcium: corrected (CACORR, derived) or ionized (CAION)

def _calcium_study():
    # subject_id, day, param, value, unit, lln, uln, src_row; CA limits 2.15-2.55 mmol/L, ALB LLN 35 g/L
    rows = [
        ("S1", -1.0, "CA", 1.9, "mmol/L", 2.15, 2.55, 1), ("S1", -1.0, "ALB", 25.0, "g/L", 35.0, 50.0, 2),
        ("S1", 3.2, "CA", 1.7, "mmol/L", 2.15, 2.55, 3), ("S1", 3.9, "ALB", 30.0, "g/L", 35.0, 50.0, 4),
        ("S1", 3.1, "ALB", 20.0, "g/L", 35.0, 50.0, 5),
        ("S1", 5.0, "CA", 2.0, "mmol/L", 2.15, 2.55, 6),  # no albumin on day 5
        ("S1", 6.0, "CA", 2.0, "mmol/L", 2.15, 2.55, 7), ("S1", 6.0, "ALB", 30.0, "g/L", 35.0, 50.0, 8),
        ("S1", 6.5, "CACORR", 2.3, "mmol/L", 2.15, 2.55, 9),  # measured corrected calcium on day 6
        ("S1", 7.0, "CAION", 0.95, "mmol/L", 1.15, 1.30, 10),
        ("S2", 2.0, "CA", 2.8, "mmol/L", 2.15, 2.55, 11), ("S2", 2.4, "ALB", 20.0, "g/L", 35.0, 50.0, 12),
    ]
    df = pl.DataFrame(rows, schema=["subject_id", "day", "param", "value", "unit", "lln", "uln", "src_row"],
                      orient="row")
    return conform(df.with_columns(pl.lit("observations.csv").alias("src_file")), "observations")


def _rows(adlb):
    return {(r["subject_id"], r["param"], r["day"]): r for r in adlb.iter_rows(named=True)}


def test_corrected_calcium_derived_from_ca_and_albumin_of_the_same_day():
    row = _rows(derive_ctcae(_calcium_study()))
    # REPORT.md item 1: CA 1.9 mmol/L, ALB 25 g/L on day -1. Payne: corrected = 1.9 + 0.02 x (40 - 25)
    # = 2.2 mmol/L, >= LLN 2.15 and <= ULN 2.55: grade 0 (CTCAE grade 1 is "<LLN - 2.0 mmol/L").
    # Graded on total calcium it was grade 2 ("<2.0 - 1.75 mmol/L").
    d = row[("S1", "CACORR", -1.0)]
    assert d["AVAL"] == pytest.approx(2.2) and d["ATOXGR"] == 0 and d["DTYPE"] == "DERIVED"
    assert d["evidence"] == ["observations.csv:1", "observations.csv:2"]  # the CA row, then the ALB row
    assert "ctcae_v5.cacorr.payne" in d["rule"] and d["grade_reason"].startswith("(derived CACORR = CA + 0.02 x (40 - ALB)")
    assert d["ABLFL"] == "Y"  # the derived value on day -1 is CACORR's baseline
    # day 3.2: CA 1.7; ALB on day 3 at 3.1 (20 g/L, 0.1 day away) and 3.9 (30 g/L): the nearer one.
    # 1.7 + 0.02 x (40 - 20) = 2.1: <LLN 2.15 and >= 2.0 -> grade 1 (with the 3.9 ALB: 1.9 -> grade 2)
    d = row[("S1", "CACORR", 3.2)]
    assert d["AVAL"] == pytest.approx(2.1) and d["ATOXGR"] == -1
    assert d["evidence"][:2] == ["observations.csv:3", "observations.csv:5"]
    # the CA rows themselves carry no grade, and say where they went
    ca = row[("S1", "CA", -1.0)]
    assert ca["ATOXGR"] is None and ca["ATOXDSCL"] is None and "derived CACORR" in ca["grade_reason"]
    # S2 day 2: CA 2.8, ALB 20 -> 2.8 + 0.4 = 3.2 mmol/L: Hypercalcemia grade 3 ("Corrected serum
    # calcium of >3.1 - 3.4 mmol/L"); on total calcium 2.8 it would be grade 1 (">ULN - 2.9 mmol/L")
    d = row[("S2", "CACORR", 2.0)]
    assert d["AVAL"] == pytest.approx(3.2) and d["ATOXGR"] == 3 and d["term"] == "Hypercalcemia"


def test_total_calcium_without_albumin_is_not_gradable_and_measured_cacorr_wins():
    out = derive_ctcae(_calcium_study())
    row = _rows(out)
    ca5 = row[("S1", "CA", 5.0)]  # no ALB on day 5: not graded, the missing input named
    assert ca5["ATOXGRL"] is None and ca5["ATOXGRH"] is None and ca5["ATOXGR"] is None
    assert "corrected calcium needs albumin (ALB) on the same day" in ca5["grade_reason"]
    assert ("S1", "CACORR", 5.0) not in row
    # day 6: a measured CACORR exists (2.3, within 2.15-2.55: grade 0): nothing derived that day
    assert ("S1", "CACORR", 6.0) not in row and row[("S1", "CACORR", 6.5)]["ATOXGR"] == 0
    assert row[("S1", "CACORR", 6.5)]["DTYPE"] is None
    assert "measured CACORR" in row[("S1", "CA", 6.0)]["grade_reason"]
    # ionized calcium 0.95 mmol/L: Hypocalcemia (Ionized) "<1.0 - 0.9 mmol/L" -> grade 2
    ion = row[("S1", "CAION", 7.0)]
    assert ion["ATOXGR"] == -2 and ion["term"] == "Hypocalcemia (Ionized)"
    assert out.filter(pl.col("DTYPE") == "DERIVED").height == 3  # days -1 and 3.2 of S1, day 2 of S2


def test_calcium_as_given_grades_total_calcium_as_corrected():
    out = derive_ctcae(_calcium_study(), CtcaeOptions(calcium="as_given"))
    row = _rows(out)
    # CA 1.9 graded as corrected calcium: "<2.0 - 1.75 mmol/L" -> grade 2; nothing derived
    ca = row[("S1", "CA", -1.0)]
    assert ca["ATOXGR"] == -2 and "ctcae_v5.cacorr.as_given" in ca["rule"] and "calcium=as_given" in ca["grade_reason"]
    assert out.filter(pl.col("DTYPE") == "DERIVED").height == 0
    with pytest.raises(ValueError, match="calcium"):
        CtcaeOptions(calcium="total")


def test_calcium_plain_table():
    # the user names the term: graded on the value as given ("<2.0 - 1.75 mmol/L" -> 2)
    assert grade("Hypocalcemia", "L", 1.9, anrlo=2.15, unit="mmol/L")[0] == 2
    # a corrected value under its parameter: the same
    assert grade(param="CACORR", direction="L", aval=1.9, anrlo=2.15, unit="mmol/L")[0] == 2
    # total calcium by parameter: not graded, the missing input named
    g, _, rule, why = grade(param="CA", direction="L", aval=1.9, anrlo=2.15, unit="mmol/L")
    assert g is None and rule == "ctcae_v5.cacorr.payne"
    assert "corrected calcium needs albumin (ALB) on the same day" in why
    # calcium=as_given: CA graded as corrected -> 2
    assert grade(param="CA", direction="L", aval=1.9, anrlo=2.15, unit="mmol/L",
                 options=CtcaeOptions(calcium="as_given"))[0] == 2
    # REPORT.md case d1: an ionized result (1.10, limits 1.15-1.30) under the calcium parameter was
    # graded 4 ("<1.5 mmol/L"); as CAION it is "<LLN - 1.0 mmol/L" -> grade 1
    assert grade(param="CA", direction="L", aval=1.10, anrlo=1.15, unit="mmol/L")[0] is None
    assert grade(param="CAION", direction="L", aval=1.10, anrlo=1.15, unit="mmol/L")[0] == 1


def test_calcium_parameters_and_formula_units():
    d = load_dictionary()
    assert "total" in d["CA"].label.lower() and "not albumin-corrected" in d["CA"].label
    for code in ("CACORR", "CAION"):
        p = d[code]
        assert p.unit == "mmol/L" and "mg/dL" in p.accepts and p.molar_mass_g_mol == 40.078 and p.origin == "cartlab"
    # 0.02 mmol/L per g/L albumin = 0.2 mmol/L per g/dL = 0.2 / 0.24951 (mmol/L per mg/dL, 10 / 40.078)
    # = 0.80 mg/dL per g/dL: the mg/dL form "Ca + 0.8 x (4 - albumin g/dL)"
    per_mg_dl = d["CA"].conversion_from("mg/dL").scale
    assert per_mg_dl == pytest.approx(10 / 40.078)
    assert 0.02 * 10 / per_mg_dl == pytest.approx(0.8, abs=0.002)
    # the derivation's verification status reaches the rule status of a derived row
    assert rule_status("ctcae_v5:hypocalcemia:g1; ctcae_v5.cacorr.payne") == "partially_verified"
    assert rule_status("ctcae_v5:hypocalcemia:g1") == "verified_secondary"


# ---------------------------------------------------------------------------------------------
# 2. abnormal baseline without BASE

@pytest.mark.parametrize("term,aval,anrhi", [
    (ALT, 300.0, 40.0), (ALT, 2000.0, 40.0),  # REPORT cases 145/146
    ("Aspartate aminotransferase increased", 2000.0, 40.0), ("Alkaline phosphatase increased", 3000.0, 120.0),
    ("Blood bilirubin increased", 300.0, 21.0), ("GGT increased", 2000.0, 60.0),  # cases c1-c4
])
def test_abnormal_baseline_without_base_is_not_gradable(term, aval, anrhi):
    # CTCAE: "... x baseline if baseline was abnormal": with BNRIND HIGH every grade is a multiple of
    # BASE, so without BASE no grade can be decided (it was grade 0 at any value)
    g, gmax, rule, why = grade(term, "H", aval, anrhi=anrhi, bnrind="HIGH")
    assert g is None and gmax is None and rule.endswith(":na.base_bl_abnormal")
    assert why == "not gradable: baseline abnormal high (BNRIND in high_indicator) and BASE missing"
    # with BASE the rows grade as before: e.g. ALT 61 >= 1.5 x BASE 40 -> grade 1 ("1.5 - 3.0 x baseline")
    assert grade(ALT, "H", 61.0, anrhi=39.0, base=40.0, bnrind="HIGH")[:2] == (1, 1)


# ---------------------------------------------------------------------------------------------
# 3. "could be higher": grade_max

def test_creatinine_without_baseline_reports_the_open_grades():
    c = "Creatinine increased"
    # 120 umol/L, ULN 100, no BASE: grade 1 ">ULN - 1.5 x ULN"; grade 2 ">1.5 - 3.0 x baseline" and
    # grade 3 ">3.0 baseline" hold for any BASE < 40, so up to grade 3 (not 4: ">6.0 x ULN" is false)
    g, gmax, _, why = grade(c, "H", 120.0, anrhi=100.0)
    assert (g, gmax) == (1, 3)
    assert why == ("grade 1: AVAL > ANRHI; at least grade 1 (grade 3 not excluded: criteria on BASE not evaluable, "
                   "BASE missing)")
    # 90 <= ULN: grade 0 by ULN, grade 3 if BASE < 30 (REPORT case 187)
    assert grade(c, "H", 90.0, anrhi=100.0)[:2] == (0, 3)
    # with BASE 100 nothing is open: 120 <= 1.5 x 100 -> 1
    assert grade(c, "H", 120.0, anrhi=100.0, base=100.0)[:2] == (1, 1)
    # ULN missing, BASE 50: 80 > 1.5 x 50 -> 2; "> 6.0 x ULN" (grade 4) cannot be excluded
    assert grade(c, "H", 80.0, base=50.0)[:2] == (2, 4)


def test_open_grades_elsewhere_and_missing_bnrind_is_not_open():
    # fibrinogen 1.9 < LLN 2.0, no BASE/PCHG: grade 1 "<1.0 - 0.75 x LLN"; "if abnormal, 75% decrease
    # from baseline" (grade 4) cannot be excluded
    g, gmax, _, why = grade("Fibrinogen decreased", "L", 1.9, anrlo=2.0, unit="g/L")
    assert (g, gmax) == (1, 4) and "PCHG missing" in why
    # ALT without BNRIND is read as a normal baseline (admiral): nothing open, reason unchanged
    assert grade(ALT, "H", 50.0, anrhi=40.0) == (1, 1, "ctcae_v5:alt_increased:g1.bl_normal",
                                                 ("grade 1: baseline not abnormal high (BNRIND not in high_indicator) "
                                                  "and AVAL > ANRHI"))
    # derive_ctcae: a creatinine without baseline says the same in its reason
    obs = conform(pl.DataFrame({"subject_id": ["S1"], "day": [3.0], "param": ["CREAT"], "value": [120.0],
                                "unit": ["umol/L"], "uln": [100.0]}), "observations")
    r = derive_ctcae(obs).row(0, named=True)
    assert r["ATOXGR"] == 1 and "at least grade 1 (grade 3 not excluded" in r["grade_reason"]


# ---------------------------------------------------------------------------------------------
# 4. PCHG from BASE

def test_fibrinogen_pchg_computed_from_base():
    f = "Fibrinogen decreased"
    # REPORT case b6: 1.9 g/L, LLN 2.0, BASE 4.0: PCHG = (1.9 - 4.0) / 4.0 x 100 = -52.5 %;
    # "if abnormal, 50 - <75% decrease from baseline" and 1.9 < LLN -> grade 3 (was 1)
    assert grade(f, "L", 1.9, anrlo=2.0, base=4.0, unit="g/L")[:2] == (3, 3)
    # the same as with PCHG given (case b7); a given PCHG is used as it is
    assert grade(f, "L", 1.9, anrlo=2.0, base=4.0, pchg=-52.5, unit="g/L")[0] == 3
    assert grade(f, "L", 1.9, anrlo=2.0, base=4.0, pchg=-10.0, unit="g/L")[0] == 1
    # BASE 0: no percent change; 1.9 < LLN -> 1, grades 2-4 by % decrease left open
    assert grade(f, "L", 1.9, anrlo=2.0, base=0.0, unit="g/L")[:2] == (1, 4)
    # 1.4 g/L, BASE 2.5: PCHG = -44 % -> "25 - <50% decrease" (2); 1.4 < 0.75 x 2.0 = 1.5 also 2 -> 2
    assert grade(f, "L", 1.4, anrlo=2.0, base=2.5, unit="g/L")[0] == 2


# ---------------------------------------------------------------------------------------------
# 5. BNRIND values

@pytest.mark.parametrize("bnrind", ["HIGH", "High", "high", " high "])
def test_bnrind_case_insensitive(bnrind):
    # REPORT case b4: ALT 100, ULN 40, BASE 80, baseline abnormal: 100 < 1.5 x 80 = 120 -> grade 0
    assert grade(ALT, "H", 100.0, anrhi=40.0, base=80.0, bnrind=bnrind)[0] == 0


def test_bnrind_other_cdisc_values_and_declared_ones():
    # NORMAL / ABNORMAL (any case) are not "high": graded against ULN, 100 in (40, 120] -> 1
    for v in ("normal", "Abnormal", "LOW"):
        assert grade(ALT, "H", 100.0, anrhi=40.0, base=80.0, bnrind=v)[0] == 1
    # "H" declared as a high indicator (option, any case): abnormal baseline -> 0
    assert grade(ALT, "H", 100.0, anrhi=40.0, base=80.0, bnrind="h",
                 options=CtcaeOptions(high_indicator=("H",)))[0] == 0


def test_bnrind_unknown_value_is_an_error_naming_row_and_column():
    df = pl.DataFrame({"term": [ALT, ALT, ALT], "direction": ["H"] * 3, "aval": [100.0] * 3, "anrhi": [40.0] * 3,
                       "base": [80.0] * 3, "bnrind": ["HIGH", None, "H"]})
    with pytest.raises(ValueError, match=r"column bnrind, row 2 \(line 4 of a CSV with a header\): 'H'"):
        grade_labs(df)
    # a value declared in the row's own high_indicator column is known
    ok = grade_labs(df.with_columns(pl.lit("HIGH|H").alias("high_indicator")))
    # row 1 has no BNRIND but BASE 80 > ULN 40: BNRIND HIGH from BASE against the row's limits (session 39,
    # review 39 R39-5; ADaM BNRIND = ANRIND of the baseline), so the abnormal reading: 100 < 1.5 x 80 = grade 0
    assert ok["grade"].to_list() == [0, 0, 0]
    assert ok["grade_max"].to_list() == [0, 0, 0]
    assert "BNRIND HIGH derived from BASE" in ok["grade_reason"][1]


# ---------------------------------------------------------------------------------------------
# 6. terms graded by intervention

def test_terms_graded_by_intervention(tmp_path):
    for term, direction, param in (("Hypophosphatemia", "L", "PHOS"), ("Hyperglycemia", "H", "GLUC")):
        want = f"not gradable: CTCAE 5.0 grades {term} by intervention, not by a lab value: not gradable from labs"
        g, _, rule, why = grade(term, direction, 0.3, anrlo=0.8, anrhi=6.1, unit="mmol/L")
        assert g is None and why == want and rule == f"ctcae_v5:{term.lower()}:by_intervention"
        assert grade(param=param, direction=direction, aval=0.3, anrlo=0.8, anrhi=6.1, unit="mmol/L")[3] == want
    src = tmp_path / "labs.csv"
    src.write_text("term,direction,aval,anrlo,anrhi,unit\nHypophosphatemia,L,0.3,0.8,,mmol/L\n"
                   "Hyperglycemia,H,30,,6.1,mmol/L\nFoo,L,1,2,,mmol/L\n")
    summary = ctcae_command(src, tmp_path / "o.csv")
    assert summary["unknown_terms"] == ["Foo"]  # not "not CTCAE terms" any more


# ---------------------------------------------------------------------------------------------
# 7. hyponatremia between whole mmol/L

@pytest.mark.parametrize("aval,symptomatic,asymptomatic", [
    (130.0, 1, 1),      # "<LLN - 130 mmol/L": 130 is grade 1
    (129.99, 3, 2),     # 125-129 read as [125, 130): "125-129 symptomatic" 3 / "and asymptomatic" 2
    (129.5, 3, 2),      # REPORT case 63 (was 1)
    (125.0, 3, 2),
    (124.5, 3, 3),      # 120-124 read as [120, 125): "120-124 mmol/L regardless of symptoms" 3
    (120.0, 3, 3),
    (119.5, 4, 4),      # "<120 mmol/L" 4: the same reading at every integer gap
    (134.0, 1, 1), (135.0, 0, 0),  # LLN 135
])
def test_hyponatremia_integer_gaps(aval, symptomatic, asymptomatic):
    off = CtcaeOptions(hyponatremia_symptomatic=False)
    assert grade("Hyponatremia", "L", aval, anrlo=135.0, unit="mmol/L")[0] == symptomatic
    assert grade("Hyponatremia", "L", aval, anrlo=135.0, unit="mmol/L", options=off)[0] == asymptomatic
    # the US table writes sodium in mmol/L too: same grades
    us = CtcaeOptions(units="US")
    assert grade("Hyponatremia", "L", aval, anrlo=135.0, unit="mmol/L", options=us)[0] == symptomatic
