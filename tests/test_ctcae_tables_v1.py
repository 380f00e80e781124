"""The CTCAE tables in the criteria language (issue 14) are the tables first transcribed from admiral
(ctcae_v1 dialect, copied unchanged to tests/fixtures/ctcae_v1/): every header value, option
(default, allowed values, documentation, source), term field, rule (id, grade, source column,
option gate), condition (every threshold, factor, offset, operator) and citation is kept, and the
status is the same. The v1 conditions are translated here by hand from the v1 table's own comment
(``{x, op, value}`` = ``signif(x) op signif(v)``, ``ref/factor/offset`` = ``factor * REF + offset``,
``bnrind_not_in`` true when BNRIND is missing), independently of the conversion script.

It also pins the engine's use of the language: CtcaeOptions on the options base class, the rules
compiled by cartlab.criteria, no private rule interpreter left in cartlab.grading.ctcae.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from cartlab.criteria import CriteriaOptions, CriteriaTable, load_raw, load_table
from cartlab.grading import ctcae
from cartlab.grading.ctcae import OPTION_DOCS, CtcaeOptions, compile_criteria, signif

V1 = Path(__file__).parent / "fixtures" / "ctcae_v1"
TABLES = ("ctcae_v5", "ctcae_v5_uscv")
INDICATOR = {"high": "$high_indicator", "low": "$low_indicator"}
# Amendments of the lab audit (session 26, tests/test_ctcae_audit_s26.py), checked here as such:
# the corrected-calcium terms grade CACORR and the ionized ones CAION (were CA / none); one rule per
# liver test "abnormal baseline and BASE missing -> not gradable"; hyponatremia's band 125-129 read
# as [125, 130) (<= 129 -> < 130) and its option doc saying so; rules may carry a `note`.
S26_PARAMS = {"hypocalcemia": ["CACORR"], "hypercalcemia": ["CACORR"], "hypocalcemia_ionized": ["CAION"],
              "hypercalcemia_ionized": ["CAION"]}
S26_RULES = {f"{t}:na.base_bl_abnormal" for t in ("alt_increased", "alp_increased", "ast_increased",
                                                   "bilirubin_increased", "ggt_increased")}
# Amendments of session 34 (review 34 F2/F3/F8, tests/test_ctcae_fix_s34.py): GGT's grade 1 "2.0 - 2.5 x
# baseline" inclusive by default; a new option hypertriglyceridemia_grade1_inclusive (default true: a
# rule g1.inclusive ">=" before admiral's ">" g1, now gated by the option false); annotations on
# terms (cd4 text_note, ionized calcium ctcae_us_column) and the typo "g/Dl" fixed.
S34_DEFAULTS = {"ggt_baseline_grade1_inclusive": True}
S34_OPTIONS = {"hypertriglyceridemia_grade1_inclusive"}
S34_RULES = {"hypertriglyceridemia:g1.inclusive"}
S34_TERM_KEYS = ("text_note", "ctcae_us_column", "ctcae_term")  # ctcae_term: session 39 (review 39 R39-3)
#: entries added in session 37: CTCAE's mmol/L Anemia column (review 37 R37-3), transcribed from the
#: CTCAE text (no admiral row): status partially_verified
S37_TERMS = {"ctcae_v5_uscv": ("anemia_mmol",)}
#: entries added in session 39 (review 39 R39-1): Blood lactate dehydrogenase increased, from admiral's
#: metadata at 9cb6efc (after the commits v1 was read at): status verified_secondary, as the table
S39_TERMS = ("ldh_increased",)


def v1(name: str) -> dict:
    return yaml.safe_load((V1 / f"{name}.yaml").read_text())


def translate(c: dict, digits: int) -> dict:
    if "missing" in c:
        return {"missing": [v.lower() for v in c["missing"]]}
    if "bnrind_in" in c:  # written as the exact complement of bnrind_not_in (FALSE when missing; audit s26)
        return {"not": {"any": [{"missing": "bnrind"},
                                {"feature": "bnrind", "op": "not_in", "value": INDICATOR[c["bnrind_in"]]}]}}
    if c.get("x") == "AVAL" and c.get("op") == "<=" and c.get("value") == 129:  # hyponatremia (audit s26)
        c = {**c, "op": "<", "value": 130}
    if "bnrind_not_in" in c:
        return {"any": [{"missing": "bnrind"},
                        {"feature": "bnrind", "op": "not_in", "value": INDICATOR[c["bnrind_not_in"]]}]}
    if "value" in c:
        value = c["value"]
    else:
        value = {"column": c["ref"].lower(), **{k: c[k] for k in ("factor", "offset") if k in c}}
    return {"feature": c["x"].lower(), "op": c["op"], "value": value, "signif": digits}


def same(a, b) -> bool:
    """Equal, with numbers compared by value and type family (1 == 1.0 would hide nothing here)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, str) and isinstance(b, list):  # {missing: bnrind} == {missing: [bnrind]}
        return [a] == b
    if isinstance(b, str) and isinstance(a, list):
        return a == [b]
    return a == b and type(a) is type(b)


@pytest.mark.parametrize("name", TABLES)
def test_header_and_options_kept(name):
    old, new = v1(name), load_raw(name)
    for key in ("standard", "version", "units", "citation", "status", "attribution"):
        assert new[key] == old[key], key
    assert new["defaults"]["signif_digits"] == old["signif_digits"] == 15
    assert new["defaults"]["high_indicator"] == ["HIGH"] and new["defaults"]["low_indicator"] == ["LOW"]
    assert set(new["options"]) == set(old["options"]) | S34_OPTIONS
    assert new["defaults"]["hypertriglyceridemia_grade1_inclusive"] is True
    for opt, spec in old["options"].items():
        assert new["defaults"][opt] == S34_DEFAULTS.get(opt, spec["default"]), opt
        if opt in S34_DEFAULTS:  # values, doc and citation rewritten with the default (session 34)
            assert set(new["options"][opt]["values"]) == set(spec["values"])
            continue
        skip = ("default", "doc") if opt == "hyponatremia_symptomatic" else ("default",)  # doc amended (s26)
        assert {k: v for k, v in new["options"][opt].items() if k not in skip} == \
            {k: v for k, v in spec.items() if k not in skip}, opt
    assert "[125, 130)" in new["options"]["hyponatremia_symptomatic"]["doc"]


@pytest.mark.parametrize("name", TABLES)
def test_every_term_rule_and_number_kept(name):
    old, new = v1(name), load_raw(name)
    digits = old["signif_digits"]
    s37 = (*S37_TERMS.get(name, ()), *S39_TERMS)
    new_terms = [e for e in new["terms"] if e["id"] not in s37]
    assert [e["id"] for e in new_terms] == [e["id"] for e in old["terms"]]
    assert [k for k in new["rule_sets"] if k not in s37] == [e["id"] for e in old["terms"]]
    n = 0
    added = 0
    for o, t in zip(old["terms"], new_terms):
        want_term = {k: v for k, v in o.items() if k != "rules"}
        if o["id"] in S26_PARAMS:
            want_term["params"] = S26_PARAMS[o["id"]]
        if o["id"] == "hemoglobin_increased":  # typo "g/Dl" fixed (session 34)
            want_term["ctcae"] = {**o["ctcae"], "grade_1": o["ctcae"]["grade_1"].replace("g/Dl", "g/dL")}
        got = {k: v for k, v in t.items() if k not in ("integer_gaps", *S34_TERM_KEYS)}
        assert got == want_term, o["id"]  # term, params, unit, text, citation
        rules = [r for r in new["rule_sets"][o["id"]] if r["id"] not in S26_RULES | S34_RULES]
        added += len(new["rule_sets"][o["id"]]) - len(rules)
        assert len(rules) == len(o["rules"]), o["id"]
        for r_old, r_new in zip(o["rules"], rules):
            want = {"id": f"{o['id']}:{r_old['id']}", "grade": r_old["grade"],
                    "when": [translate(c, digits) for c in r_old["if"]], "src": r_old["src"],
                    "citation": o["citation"]}
            if r_old.get("option"):
                want["option"] = r_old["option"]
            if want["id"] == "hypertriglyceridemia:g1":  # admiral's ">" now the option's alternative (s34)
                want["option"] = {"hypertriglyceridemia_grade1_inclusive": False}
            assert same({k: v for k, v in r_new.items() if k != "note"}, want), (r_new, want)
            n += 1
    assert n == sum(len(e["rules"]) for e in old["terms"]) == {"ctcae_v5": 235, "ctcae_v5_uscv": 264}[name]
    assert added == len(S26_RULES) + len(S34_RULES)


@pytest.mark.parametrize("name", TABLES)
def test_status_of_every_rule_is_the_tables(name):
    table = load_table(name)
    assert table.status == "verified_secondary" == v1(name)["status"]
    s37 = S37_TERMS.get(name, ())
    assert {table.status_of(r) for k, rules in table.rule_sets.items() if k not in s37 for r in rules} == {
        "verified_secondary"}
    assert {table.status_of(r) for k in s37 for r in table.rule_sets[k]} <= {"partially_verified"}


def test_engine_uses_the_criteria_language():
    compiled = compile_criteria("ctcae_v5")
    assert isinstance(compiled.model, CriteriaTable) and compiled.model is load_table("ctcae_v5")
    assert compile_criteria("ctcae_v5") is compiled  # compiled once, cached
    for name in ("_Cond", "_parse_cond", "_cond_expr", "_compile_table"):
        assert not hasattr(ctcae, name), name
    # signif_digits: the rules' rounding follows the option (a copy of the rules at 2 digits)
    two = compile_criteria("ctcae_v5", CtcaeOptions(signif_digits=2))
    leaves = [c for rules in two.model.rule_sets.values() for r in rules for c in r.when if getattr(c, "signif", None)]
    assert leaves and {c.signif for c in leaves} == {2}


def test_options_on_the_base_class():
    assert issubclass(CtcaeOptions, CriteriaOptions)
    o = CtcaeOptions(hypokalemia_symptomatic=False, high_indicator=["H", "HIGH"])
    assert o.high_indicator == ("H", "HIGH")  # validated into the field's type
    r = o.resolved()
    assert r["hypokalemia_symptomatic"] is False and r["inr_on_anticoagulation"] is True
    assert r["low_indicator"] == ("LOW",) and r["signif_digits"] == 15 and r["units"] == "auto"
    # documentation generated from the table's defaults (values and comments) and the engine fields
    assert "| `hyponatremia_symptomatic` | `true` | `true` | sodium <=129 = G3" in CtcaeOptions.__doc__
    assert OPTION_DOCS["fibrinogen_pchg_condition"].endswith("(default value_below_lln)")
    assert set(OPTION_DOCS) == set(CtcaeOptions.__pydantic_fields__) - {"extra"}


def test_signif_keeps_missing_and_widens_integers():
    df = pl.DataFrame({"x": [2.0999999999999996, None, float("nan"), -0.0, float("inf")], "i": [1, 2, None, 4, 5]})
    out = df.select(signif(pl.col("x")), signif(pl.col("i"), 1))
    assert out["x"].to_list()[:2] == [2.1, None] and out["x"][2] != out["x"][2]  # NaN stays NaN
    assert out["x"].to_list()[3:] == [0.0, float("inf")]
    assert out["i"].dtype == pl.Float64 and out["i"].to_list() == [1.0, 2.0, None, 4.0, 5.0]
