"""CTCAE grading engine (cartlab.grading.ctcae): criteria tables, boundaries, options, derivation.

* Structure of the YAML tables (citations, params, options, research §2.1 coverage).
* Every bound of every rule, generated from the tables as first transcribed (the ctcae_v1 dialect,
  tests/fixtures/ctcae_v1/): the value at, just below and just above each cut-off (and each PCHG
  cut-off), graded by the engine (on the shipped tables, in the criteria language) and by an
  independent row-by-row interpreter of the v1 tables written here; the rule must fire exactly on
  its side of the cut-off.
* Hand-written clinical cases (baseline-abnormal liver tests, creatinine x BASE, fibrinogen PCHG,
  missing limits, units, signif), every option, derive_ctcae on a tiny canonical study.
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
from pathlib import Path

import polars as pl
import pytest
import yaml

from cartlab.grading.common import load_criteria
from cartlab.grading.ctcae import (
    CtcaeOptions,
    available_criteria,
    combine_atoxgr,
    criteria_names,
    derive_ctcae,
    grade_labs,
    signif,
    signif_scalar,
)
from cartlab.model import Study, conform

TABLES = ("ctcae_v5", "ctcae_v5_uscv")
PARAMS_FILE = Path(__file__).resolve().parents[1] / "src" / "cartlab" / "io" / "params_v1.yaml"
V1 = Path(__file__).parent / "fixtures" / "ctcae_v1"


def v1_table(name):
    """The table as first transcribed from admiral (ctcae_v1 dialect: terms[].rules[].if), with the
    amendments of the lab audit (session 26, tests/test_ctcae_audit_s26.py): hyponatremia's
    "125-129" band read as [125, 130) (admiral: <= 129).

    Session 42: read and amended once per table per process (the pure-Python YAML parse took ~0.4 s
    and ran for each of the ~250 boundary tests); every call gets its own deep copy."""
    return copy.deepcopy(_v1_table(name))


@functools.cache
def _v1_table(name):
    data = yaml.safe_load((V1 / f"{name}.yaml").read_text())
    for e in data["terms"]:
        if e["id"] == "hyponatremia":
            for r in e["rules"]:
                for c in r["if"]:
                    if c.get("op") == "<=" and c.get("value") == 129:
                        c.update(op="<", value=130)
    # session 34 (review 34 F2/F3), deliberate: GGT's "2.0 - 2.5 x baseline" inclusive by default, and
    # Hypertriglyceridemia grade 1 "150 mg/dL - 300 mg/dL; 1.71 mmol/L - 3.42 mmol/L" inclusive (an option
    # whose alternative is admiral's strict ">")
    data["options"]["ggt_baseline_grade1_inclusive"]["default"] = True
    data["options"]["hypertriglyceridemia_grade1_inclusive"] = {"default": True, "values": [True, False]}
    for e in data["terms"]:
        if e["id"] == "hypertriglyceridemia":
            i = next(k for k, r in enumerate(e["rules"]) if r["id"] == "g1")
            g1 = e["rules"][i]
            e["rules"][i:i + 1] = [
                {**g1, "id": "g1.inclusive", "if": [{**g1["if"][0], "op": ">="}],
                 "option": {"hypertriglyceridemia_grade1_inclusive": True}},
                {**g1, "option": {"hypertriglyceridemia_grade1_inclusive": False}}]
    return data


def grade_one(term, direction, aval, anrlo=None, anrhi=None, base=None, bnrind=None, pchg=None, unit=None,
              options=None, criteria=None):
    """Grade a single row; returns (grade, rule, reason)."""
    df = pl.DataFrame(
        {"term": [term], "direction": [direction], "aval": [aval], "anrlo": [anrlo], "anrhi": [anrhi],
         "base": [base], "bnrind": [bnrind], "pchg": [pchg], "unit": [unit]},
        schema={"term": pl.String, "direction": pl.String, "aval": pl.Float64, "anrlo": pl.Float64,
                "anrhi": pl.Float64, "base": pl.Float64, "bnrind": pl.String, "pchg": pl.Float64,
                "unit": pl.String},
    )
    r = grade_labs(df, criteria=criteria, options=options).row(0, named=True)
    return r["grade"], r["rule"], r["grade_reason"]


def g(*args, **kw):
    return grade_one(*args, **kw)[0]


# ---------------------------------------------------------------------------------------------
# the criteria tables


def test_tables_discovered_and_loadable():
    names = {t["name"]: t for t in available_criteria()}
    assert names["ctcae_v5"]["units"] == "SI" and names["ctcae_v5"]["version"] == "5.0"
    assert names["ctcae_v5_uscv"]["units"] == "US"
    assert criteria_names("5.0", "auto") == ["ctcae_v5", "ctcae_v5_uscv"]
    assert criteria_names("5.0", "US") == ["ctcae_v5_uscv"]
    with pytest.raises(ValueError, match="no CTCAE criteria for version"):
        criteria_names("4.03")
    for name in TABLES:
        data = load_criteria(name)
        assert data["version"] == "5.0" and "admiral" in data["citation"] and "Apache" in data["attribution"]


@pytest.mark.parametrize("name", TABLES)
def test_every_entry_cited_and_well_formed(name):
    data = load_criteria(name)
    params = yaml.safe_load(PARAMS_FILE.read_text())["params"]
    assert [e["id"] for e in data["terms"]] == list(data["rule_sets"])  # one rule set per term, same order
    for e in data["terms"]:
        assert e["citation"].startswith("NCI CTCAE v5.0") and "admiral" in e["citation"], e["id"]
        assert set(e["ctcae"]) == {"grade_1", "grade_2", "grade_3", "grade_4"}, e["id"]
        assert e["direction"] in ("L", "H")
        for p in e["params"]:
            assert p in params, f"{e['id']}: unknown cartlab param {p}"
            if e["unit"] and name == "ctcae_v5":  # SI units are cartlab's canonical units
                assert str(params[p]["unit"]).upper() == e["unit"].upper(), (e["id"], p)
        rules = data["rule_sets"][e["id"]]
        ids = [r["id"] for r in rules]
        assert len(ids) == len(set(ids)), e["id"]
        for r in rules:
            assert r["id"].startswith(e["id"] + ":"), r["id"]
            assert r["citation"] == e["citation"], r["id"]  # every rule row cites its term
            assert r["src"].startswith(("GRADE_", "CTCAE_grade_")), (e["id"], r["id"])
            for opt in r.get("option") or {}:
                assert opt in data["defaults"] and opt in data["options"], (e["id"], r["id"], opt)


def test_options_declared_consistently_with_defaults():
    si, us = load_criteria("ctcae_v5"), load_criteria("ctcae_v5_uscv")
    assert si["defaults"] == us["defaults"] and si["options"] == us["options"]
    resolved = CtcaeOptions().resolved()
    for name, default in si["defaults"].items():
        # the class has the option, defaulting to the table's value (None = the table decides)
        assert getattr(CtcaeOptions(), name) is None, name
        assert resolved[name] == (tuple(default) if isinstance(default, list) else default), name
    for name, spec in si["options"].items():
        assert name in si["defaults"] and spec["doc"] and spec["citation"]
        assert si["defaults"][name] in spec["values"], name
        for value in spec["values"]:  # every allowed value is accepted by the class
            assert CtcaeOptions(**{name: value}).resolved()[name] == value
        # every option gates at least one rule (it does something), with allowed values only
        used = {
            r["option"][name] for rules in si["rule_sets"].values() for r in rules
            if name in (r.get("option") or {})
        }
        assert used and used <= set(spec["values"]), (name, used)


ADMIRAL_V5_TERMS = {  # research §2.1 terms that admiral v5 grades (LDH is admiral v6-only)
    ("Neutrophil count decreased", "L"), ("Platelet count decreased", "L"), ("White blood cell decreased", "L"),
    ("Lymphocyte count decreased", "L"), ("CD4 lymphocytes decreased", "L"), ("Anemia", "L"),
    ("Leukocytosis", "H"), ("Lymphocyte count increased", "H"), ("Alanine aminotransferase increased", "H"),
    ("Aspartate aminotransferase increased", "H"), ("Alkaline phosphatase increased", "H"), ("GGT increased", "H"),
    ("Blood bilirubin increased", "H"), ("Creatinine increased", "H"), ("Fibrinogen decreased", "L"),
    ("INR increased", "H"), ("Activated partial thromboplastin time prolonged", "H"), ("Hypokalemia", "L"),
    ("Hyperkalemia", "H"), ("Hyponatremia", "L"), ("Hypernatremia", "H"), ("Hypocalcemia", "L"),
    ("Hypocalcemia (Ionized)", "L"), ("Hypercalcemia", "H"), ("Hypercalcemia (Ionized)", "H"),
    ("Hypomagnesemia", "L"), ("Hypermagnesemia", "H"), ("Hypoglycemia", "L"), ("Hypoalbuminemia", "L"),
    ("Hypertriglyceridemia", "H"), ("Cholesterol high", "H"), ("Hyperuricemia", "H"), ("CPK increased", "H"),
    ("Lipase increased", "H"), ("Serum amylase increased", "H"), ("Hemoglobin increased", "H"),
    ("Acidosis", "L"), ("Alkalosis", "H"), ("Haptoglobin decreased", "L"),
}


@pytest.mark.parametrize("name", TABLES)
def test_research_terms_present(name):
    have = {(e["term"], e["direction"]) for e in load_criteria(name)["terms"]}
    assert have == {(e["term"], e["direction"]) for e in v1_table(name)["terms"]} | {
        ("Blood lactate dehydrogenase increased", "H")}  # session 39 (review 39 R39-1)
    assert ADMIRAL_V5_TERMS <= have, ADMIRAL_V5_TERMS - have
    # session 39 (review 39 R39-1): + Blood lactate dehydrogenase increased (admiral 9cb6efc, CTCAE v5.0)
    assert ("Blood lactate dehydrogenase increased", "H") in have
    assert len(have) == 40


# ---------------------------------------------------------------------------------------------
# signif


def test_signif_matches_r_examples():
    cases = {
        0.1 + 0.2: 0.3, 3 * 0.7: 2.1, 123456.7891234567: 123456.789123457, -2.0999999999999996: -2.1,
        1000.0: 1000.0, 0.0: 0.0, 1e-3: 1e-3, 99.99999999999999: 100.0, 1.23456789012345678e17: 1.23456789012346e17,
    }
    for x, want in cases.items():
        assert signif_scalar(x) == want, x
    assert signif_scalar(2.5, 1) == 2.0 and signif_scalar(3.5, 1) == 4.0 and signif_scalar(-2.5, 1) == -2.0
    # R scales in binary: 0.015 * 100 == 1.5 exactly, then rounds half to even -> 0.02 (R: signif(0.015, 1))
    assert signif_scalar(1234.5, 4) == 1234.0 and signif_scalar(0.015, 1) == 0.02
    xs = list(cases) + [2.5, -3.5, float("inf"), 12.345, 9.999999999999999, 5e-324]
    got = pl.DataFrame({"x": xs}).select(signif(pl.col("x"))).to_series().to_list()
    assert got == [signif_scalar(x) for x in xs]


def test_signif_vector_equals_scalar_on_random_values():
    import random

    rnd = random.Random(7)
    xs = [rnd.choice([-1, 1]) * 10 ** rnd.uniform(-6, 12) for _ in range(5000)]
    xs += [round(x, rnd.randint(0, 6)) for x in xs[:2000]] + [a * b for a, b in zip(xs[:500], [1.5, 3, 0.7, 2.5] * 125)]
    got = pl.DataFrame({"x": xs}).select(signif(pl.col("x"))).to_series().to_list()
    assert got == [signif_scalar(x) for x in xs]


# ---------------------------------------------------------------------------------------------
# boundaries of every rule, generated from the YAML


def ref_signif(x: float, digits: int = 15) -> float:
    """Round to `digits` significant digits by decimal formatting (independent of the engine)."""
    return float(f"{x:.{digits - 1}e}")


OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def ref_threshold(c, row):
    if "value" in c:
        return c["value"]
    ref = row.get(c["ref"])
    return None if ref is None else c.get("factor", 1) * ref + c.get("offset", 0)


def ref_cond(c, row, hi=("HIGH",), lo=("LOW",)):
    if "missing" in c:
        return any(row.get(v) is None for v in c["missing"])
    if "bnrind_in" in c:
        return row.get("BNRIND") in (hi if c["bnrind_in"] == "high" else lo)
    if "bnrind_not_in" in c:
        return row.get("BNRIND") not in (hi if c["bnrind_not_in"] == "high" else lo)
    x, t = row.get(c["x"]), ref_threshold(c, row)
    return x is not None and t is not None and OPS[c["op"]](ref_signif(x), ref_signif(t))


def active_rules(entry, opts):
    return [r for r in entry["rules"] if all(opts[k] == v for k, v in (r.get("option") or {}).items())]


def ref_grade(entry, row, opts):
    """Row-by-row reading of the YAML: first rule whose conditions all hold; else grade 0.

    Session 34 (review 34 F5), deliberate: a row with BASE but no BNRIND whose rules read BNRIND is
    read under each baseline status (missing = normal, HIGH, LOW when a rule reads it): equal grades
    give the missing-BNRIND reading, different ones the lowest grade (first reading on a tie), a
    reading that cannot be graded makes the row not gradable."""
    def first(r_row):
        for r in active_rules(entry, opts):
            if all(ref_cond(c, r_row) for c in r["if"]):
                return r["grade"], r["id"]
        return 0, "g0"

    conds = [c for r in active_rules(entry, opts) for c in r["if"]]
    which = [w for w in ("high", "low") if {"bnrind_in": w} in conds or {"bnrind_not_in": w} in conds]
    if row.get("BNRIND") is not None or row.get("BASE") is None or not which:
        return first(row)
    outs = [first(row)] + [first({**row, "BNRIND": w.upper()}) for w in which]
    grades = [g for g, _ in outs]
    if len(set(grades)) == 1:
        return outs[0]
    if None in grades:
        return outs[grades.index(None)]
    return outs[grades.index(min(grades))]


def contexts(entry, rule):
    """Candidate ANRLO/ANRHI/BASE/BNRIND/PCHG settings, the rule's own needs first."""
    absolute = [c["value"] for r in entry["rules"] for c in r["if"] if c.get("x") == "AVAL" and "value" in c]
    conds = rule["if"]
    bnrinds = (["HIGH"] if {"bnrind_in": "high"} in conds else ["LOW"] if {"bnrind_in": "low"} in conds
               else ["NORMAL"] if {"bnrind_not_in": "high"} in conds else ["NORMAL", "HIGH", "LOW", None])
    pchgs = [None] if any(c.get("x") == "PCHG" for c in conds) else [0.0, -80.0, None]
    for scale in (1.0, 4.0, 16.0):
        if entry["direction"] == "L":
            lln = 1.25 * scale * max(absolute) if absolute else 100.0 * scale
            uln = 2.0 * lln
        else:
            uln = 0.8 / scale * min(absolute) if absolute else 40.0 * scale
            lln = uln / 4
        bases = [lln * 0.5, uln, uln * 2, lln, None]
        for base, bn, pc, limits in itertools.product(bases, bnrinds, pchgs, ((lln, uln), (None, None))):
            yield {"ANRLO": limits[0], "ANRHI": limits[1], "BASE": base, "BNRIND": bn, "PCHG": pc}


def delta(t):
    return abs(t) * 1e-9 if t else 1e-9


def inside(c, t):
    return {"<": t - delta(t), "<=": t, ">": t + delta(t), ">=": t}[c["op"]]


def boundary_rows(entry, opts):
    """[(row, rule id that must fire or None, description)] covering every bound of every rule."""
    out = []
    for rule in active_rules(entry, opts):
        cmps = [c for c in rule["if"] if "x" in c]
        missing = [c for c in rule["if"] if "missing" in c]
        found = False
        for ctx in contexts(entry, rule):
            row = dict(ctx)
            if missing:
                for v in missing[0]["missing"][:1]:
                    row[v] = None
                for aval in ([None] if "AVAL" in missing[0]["missing"] else
                             [v for v in (row["ANRLO"], row["ANRHI"], row["BASE"], 1.0, 1e6, 0.0) if v is not None]):
                    row["AVAL"] = aval
                    if ref_grade(entry, row, opts)[1] == rule["id"]:
                        out.append((dict(row), rule["id"], f"{rule['id']} missing"))
                        found = True
                        break
                if found:
                    break
                continue
            thresholds = [(c, ref_threshold(c, row)) for c in cmps]
            if any(t is None for _, t in thresholds):
                continue
            for c, t in thresholds:
                row[c["x"]] = inside(c, t)
            if all(c["x"] != "AVAL" for c in cmps):  # the rule does not bound AVAL: any value that lets it fire
                for aval in (v for v in (row["ANRLO"], row["ANRHI"], 0.99 * (row["ANRLO"] or 0), 1.0) if v):
                    row["AVAL"] = aval
                    if ref_grade(entry, row, opts)[1] == rule["id"]:
                        break
            if ref_grade(entry, row, opts)[1] != rule["id"]:
                continue
            for c, t in thresholds:  # at, just below and just above each cut-off
                for v in (t - delta(t), t, t + delta(t)):
                    r = dict(row)
                    r[c["x"]] = v
                    fires = OPS[c["op"]](v, t)
                    out.append((r, rule["id"] if fires else None, f"{rule['id']}: {c['x']}={v!r} vs {t!r}"))
            found = True
            break
        assert found, f"{entry['id']}: rule {rule['id']} can never fire (options {opts})"
    return out


def _configs(table):
    data = v1_table(table)
    defaults = {k: v["default"] for k, v in data["options"].items()}
    yield "defaults", defaults
    for name, spec in data["options"].items():
        for value in spec["values"]:
            if value != spec["default"]:
                yield f"{name}={value}", {**defaults, name: value}


def _boundary_cases():
    for table in TABLES:
        data = v1_table(table)
        for label, opts in _configs(table):
            for e in data["terms"]:
                gated = any(r.get("option") for r in e["rules"])
                if label == "defaults" or gated:
                    yield pytest.param(table, e["id"], opts, id=f"{table}-{e['id']}-{label}")


@pytest.mark.parametrize("table,entry_id,opts", list(_boundary_cases()))
def test_every_bound_of_every_rule(table, entry_id, opts):
    entry = next(e for e in v1_table(table)["terms"] if e["id"] == entry_id)
    cases = boundary_rows(entry, opts)
    assert cases
    options = CtcaeOptions(**{k: v for k, v in opts.items()})
    df = pl.DataFrame(
        {
            "term": [entry["term"].upper() if i % 2 else entry["term"] for i in range(len(cases))],  # case-insensitive
            "direction": [entry["direction"]] * len(cases),
            "aval": [c[0].get("AVAL") for c in cases],
            "anrlo": [c[0].get("ANRLO") for c in cases],
            "anrhi": [c[0].get("ANRHI") for c in cases],
            "base": [c[0].get("BASE") for c in cases],
            "bnrind": [c[0].get("BNRIND") for c in cases],
            "pchg": [c[0].get("PCHG") for c in cases],
            "unit": [entry["unit"]] * len(cases),
        },
        schema_overrides={k: pl.Float64 for k in ("aval", "anrlo", "anrhi", "base", "pchg")} | {"bnrind": pl.String},
    )
    out = grade_labs(df, criteria=table, options=options)
    problems = []
    top = max(r["grade"] for r in entry["rules"] if r["grade"] is not None)
    for (row, must_fire, what), grade, rule, gmax in zip(cases, out["grade"], out["rule"], out["grade_max"]):
        want_grade, want_rule = ref_grade(entry, row, opts)
        fired = rule.rsplit(":", 1)[-1] if rule else None
        limits = [k for k in ("ANRLO", "ANRHI") if row.get(k) is None]
        if want_grade is None and limits and row.get("AVAL") is not None:
            # session 39 (review 39 R39-4): a missing limit at both extremes (0 and 1e12) in the reference:
            # where the value bounds the grade, a range (lowest, highest); else not gradable as before
            corners = [ref_grade(entry, {**row, **dict(zip(limits, vals))}, opts)[0]
                       for vals in ((0.0, 0.0), (1e12, 1e12), (0.0, 1e12), (1e12, 0.0))]
            if None not in corners and not (min(corners) == 0 and max(corners) >= top):
                if (grade, gmax) != (min(corners), max(corners)):
                    problems.append(f"{what}: engine {grade}-{gmax}, reference range {min(corners)}-{max(corners)}, "
                                    f"row {row}")
                continue
        if grade != want_grade or fired != want_rule:
            problems.append(f"{what}: engine {grade} ({fired}), reference {want_grade} ({want_rule}), row {row}")
        if must_fire is not None and fired != must_fire:
            problems.append(f"{what}: rule {must_fire} should fire, got {fired}")
        if must_fire is None and "AVAL" in what and fired == what.split(":")[0]:
            problems.append(f"{what}: rule must not fire on this side of the cut-off")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------
# hand-written cases


def test_boundaries_neutrophils_platelets_as_admiral():
    for aval, want in ((0.49, 4), (0.5, 3), (0.99, 3), (1, 2), (1.49, 2), (1.5, 1), (1.9, 1), (2, 0)):
        assert g("Neutrophil count decreased", "L", aval, anrlo=2, unit="10^9/L") == want, aval
    for aval, want in ((24, 4), (25, 3), (74, 2), (75, 1), (99, 1), (100, 0)):
        assert g("Platelet count decreased", "L", aval, anrlo=100, unit="10^9/L") == want
    # LLN missing: absolute grades still assigned, grade 0/1 undecidable: session 39 (review 39 R39-4)
    # a range, grade 0 (75 is not "<75.0 - 50.0", grade 1 only if LLN > 75), grade_max 1
    assert g("Platelet count decreased", "L", 74, unit="10^9/L") == 2
    assert g("Platelet count decreased", "L", 75, unit="10^9/L") == 0
    assert g("Neutrophil count decreased", "L", 0.4, unit="10^9/L") == 4


@pytest.mark.parametrize(
    "term,ratio_g1,strict",
    [("Alanine aminotransferase increased", 1.5, False), ("Aspartate aminotransferase increased", 1.5, False),
     ("Alkaline phosphatase increased", 2.0, False), ("GGT increased", 2.0, False),  # session 34: GGT inclusive
     ("Blood bilirubin increased", 1.0, True)],
)
def test_baseline_abnormal_liver_tests(term, ratio_g1, strict):
    base, uln = 40.0, 39.0
    at = ratio_g1 * base
    # baseline abnormal (BNRIND HIGH): multiples of BASE, not of ULN
    assert g(term, "H", at, anrhi=uln, base=base, bnrind="HIGH") == (0 if strict else 1)
    assert g(term, "H", at + 1, anrhi=uln, base=base, bnrind="HIGH") == 1
    assert g(term, "H", at - 1, anrhi=uln, base=base, bnrind="HIGH") == 0
    assert g(term, "H", base, anrhi=uln, base=base, bnrind="HIGH") == 0  # the baseline visit itself
    g4 = {1.5: 20, 2.0: 20, 1.0: 10}[ratio_g1]
    assert g(term, "H", g4 * base + 1, anrhi=uln, base=base, bnrind="HIGH") == 4
    assert g(term, "H", g4 * base, anrhi=uln, base=base, bnrind="HIGH") == 3
    # the same value with a normal (or missing) baseline indicator is graded against the ULN
    assert g(term, "H", 41, anrhi=uln, base=base, bnrind="NORMAL") == 1
    # session 34 (review 34 F5): a missing BNRIND with BASE 40 is not "normal": the abnormal reading
    # (41 vs 1.5/2.0 x BASE) gives 0, the normal one 1, so grade 0 with grade_max 1 (bilirubin: > 1.0 x
    # BASE also grade 1, the readings agree)
    assert g(term, "H", 41, anrhi=uln, base=base, bnrind=None) == (1 if ratio_g1 == 1.0 else 0)
    assert g(term, "H", 41, anrhi=uln, bnrind=None) == 1  # no baseline at all: admiral's normal reading
    # missing ULN with an abnormal baseline: CTCAE grades on multiples of BASE only, so the value settles
    # it (session 39, review 39 R39-4): 200 = 5.0 x BASE is ALT/AST ">3.0 - 5.0 x baseline" grade 2, ALP/GGT
    # ">2.5 - 5.0 x baseline" grade 2, bilirubin ">3.0 - 10.0 x baseline" grade 3
    assert g(term, "H", 200, base=base, bnrind="HIGH") == (3 if ratio_g1 == 1.0 else 2)
    # missing ULN with a normal baseline: 0 (ULN >= 200) to 4 (ULN < 10): not gradable
    assert g(term, "H", 200, base=base, bnrind="NORMAL") is None


def test_alt_normal_baseline_boundaries():
    for aval, want in ((801, 4), (800, 3), (201, 3), (200, 2), (121, 2), (120, 1), (41, 1), (40, 0)):
        assert g("Alanine aminotransferase increased", "H", aval, anrhi=40, base=40, bnrind="NORMAL") == want


def test_creatinine_times_baseline():
    c = "Creatinine increased"
    assert g(c, "H", 42, anrhi=40, base=13.9) == 3  # > 3 x BASE (41.7)
    assert g(c, "H", 42, anrhi=40, base=14) == 2  # > 1.5 x BASE but not > 3 x BASE
    assert g(c, "H", 42.1, anrhi=40, base=28) == 2
    assert g(c, "H", 42, anrhi=40, base=28) == 1  # 42 = 1.5 x 28: strict
    assert g(c, "H", 241, anrhi=40, base=241) == 4  # > 6 x ULN
    assert g(c, "H", 42, base=42) is None  # no ULN and no BASE rule fires -> NA
    assert g(c, "H", 130, base=40) == 3  # no ULN, but > 3 x BASE decides
    _, rule, reason = grade_one(c, "H", 42, anrhi=40, base=13.9)
    assert rule == "ctcae_v5:creatinine_increased:g3.xbase" and "3 x BASE" in reason


def test_fibrinogen_percent_change():
    f = "Fibrinogen decreased"
    assert g(f, "L", 1.5, anrlo=2, pchg=-51, unit="g/L") == 3  # by PCHG (LLN multiples alone: 1)
    assert g(f, "L", 1.5, anrlo=2, pchg=-20, unit="g/L") == 1
    assert g(f, "L", 1.9, anrlo=2, pchg=-75, unit="g/L") == 4
    assert g(f, "L", 2.1, anrlo=2, pchg=-60, unit="g/L") == 0  # not abnormal: PCHG does not count
    assert g(f, "L", 0.5, anrlo=2.1, pchg=-51, unit="g/L") == 4  # 0.5 < 0.25 x 2.1
    assert g(f, "L", 0.49, unit="g/L") == 4  # absolute < 0.5 g/L even without LLN
    assert g(f, "L", 0.5, pchg=-80, unit="g/L") is None  # LLN missing: NA even with -80 %
    assert g(f, "L", 1.5, anrlo=2, pchg=None, unit="g/L") == 1


def test_missing_limits_and_values():
    # session 39 (review 39 R39-4): 1.9 is not "<1.5" (grade 2): grade 0-1 by the value alone (grade 0 shown)
    assert g("Neutrophil count decreased", "L", 1.9, unit="10^9/L") == 0
    assert g("Neutrophil count decreased", "L", None, anrlo=2, unit="10^9/L") is None
    assert g("Alanine aminotransferase increased", "H", 400) is None
    assert g("Hypertriglyceridemia", "H", 1.72, unit="mmol/L") == 1  # no limit needed
    assert g("Leukocytosis", "H", 100.1, unit="10^9/L") == 3
    assert g("Leukocytosis", "H", 99, unit="10^9/L") == 0
    assert g("INR increased", "H", 1.2, base=None) is None  # on anticoagulation: needs BASE
    assert g("INR increased", "H", 1.3, base=None) == 1
    assert g("CPK increased", "H", float("nan"), anrhi=100) is None  # NaN is missing (R is.na)


def test_units_checked_case_insensitively():
    grade, rule, reason = grade_one("Anemia", "L", 79, anrlo=120, unit="G/cL")
    assert grade is None and rule == "ctcae_v5:anemia:unit_check" and "G/cL" in reason and "g/L" in reason
    grade, rule, reason = grade_one("Anemia", "L", 79, anrlo=120, unit=None)
    assert grade is None and "unit missing" in reason
    assert g("Anemia", "L", 79, anrlo=120, unit="G/L") == 3
    assert g("Anemia", "L", 79, anrlo=120, unit=" g/l ") == 3
    assert g("Alanine aminotransferase increased", "H", 41, anrhi=40, unit="whatever") == 1  # no unit check


def test_terms_and_directions():
    assert g("  neutrophil COUNT decreased ", "l", 0.4, anrlo=2, unit="10^9/L") == 4
    grade, rule, reason = grade_one("Not a term", "L", 1, anrlo=2, unit="10^9/L")
    assert grade is None and rule is None and "not a CTCAE 5.0 term" in reason
    assert grade_one(None, "L", 1)[2] == "not gradable: no CTCAE term"
    assert g("Neutrophil count decreased", "H", 0.4, anrlo=2, unit="10^9/L") is None  # wrong direction
    assert g("Neutrophil count decreased", None, 0.4, anrlo=2, unit="10^9/L") is None


def test_signif_applied_to_thresholds():
    # 3 x 0.7 = 2.0999999999999996 in binary: without signif 2.1 would exceed it (grade 2)
    assert 2.1 > 3 * 0.7
    assert g("Alanine aminotransferase increased", "H", 2.1, anrhi=0.7) == 1
    assert g("Alanine aminotransferase increased", "H", 2.1000001, anrhi=0.7) == 2


def test_reason_and_rule_trace():
    grade, rule, reason = grade_one("Neutrophil count decreased", "L", 0.8, anrlo=2, unit="10^9/L")
    assert (grade, rule, reason) == (3, "ctcae_v5:neutrophil_count_decreased:g3", "grade 3: AVAL < 1 10^9/L")
    grade, rule, reason = grade_one("Neutrophil count decreased", "L", 2.5, anrlo=2, unit="10^9/L")
    assert (grade, rule) == (0, "ctcae_v5:neutrophil_count_decreased:g0") and reason.startswith("grade 0")
    grade, rule, reason = grade_one("Alanine aminotransferase increased", "H", 61, anrhi=39, base=40, bnrind="HIGH")
    assert rule.endswith("g1.bl_abnormal") and "AVAL >= 1.5 x BASE" in reason and "baseline abnormal" in reason


def test_grade_by_param_and_string_inputs():
    df = pl.DataFrame({
        "param": ["NEUT", "NEUT", "K", "K", "ALT", "CRP"],
        "direction": ["L", "H", "L", "H", "H", "H"],
        "aval": ["0.4", "30", "3.2", "6.5", "130", "100"],
        "anrlo": ["2", "2", "3.5", "3.5", "", ""],
        "anrhi": ["7.5", "7.5", "5.1", "5.1", "40", "5"],
        "unit": ["10^9/L", "10^9/L", "mmol/L", "mmol/L", "U/L", "mg/L"],
    })
    out = grade_labs(df)
    assert out["grade"].to_list() == [4, None, 2, 3, 2, None]  # NEUT has no high-direction term
    assert out.columns[: df.width] == df.columns  # input columns kept


def test_per_row_indicator_and_units_columns():
    df = pl.DataFrame({
        "term": ["GGT increased"] * 3 + ["Anemia", "Anemia"],
        "direction": ["H"] * 3 + ["L", "L"],
        "aval": [100.0, 100.0, 100.0, 9.0, 9.0], "anrhi": [39.0] * 3 + [None, None], "anrlo": [None] * 3 + [12.0, 12.0],
        "base": [40.0] * 3 + [None, None], "bnrind": ["HIGH HIGH", "HIGH HIGH", "HIGH"] + [None, None],
        "high_indicator": ["HIGH HIGH", "HIGH", "HIGH | HIGH HIGH", None, None],
        "unit": [None] * 3 + ["g/dL", "g/dL"], "criteria_units": [None, None, None, "US", "SI"],
    })
    out = grade_labs(df, options=CtcaeOptions(units="SI"))
    # abnormal baseline: 100 > 2 x BASE -> 1; row 2 ("HIGH HIGH" not an indicator there): 100 > 2.5 x ULN -> 2
    assert out["grade"].to_list() == [1, 2, 1, 2, None]


def test_empty_frame():
    df = pl.DataFrame(schema={"term": pl.String, "direction": pl.String, "aval": pl.Float64})
    out = grade_labs(df)
    assert out.height == 0 and {"grade", "rule", "grade_reason"} <= set(out.columns)


def test_input_errors():
    with pytest.raises(ValueError, match="needs columns"):
        grade_labs(pl.DataFrame({"term": ["Anemia"], "aval": [1.0]}))
    with pytest.raises(ValueError, match=r"units: Input should be 'SI', 'US' or 'auto'"):
        CtcaeOptions(units="metric")
    with pytest.raises(ValueError, match="unknown option"):
        grade_one("Anemia", "L", 1.0, options=CtcaeOptions(extra={"anemia_transfused": True}))
    with pytest.raises(ValueError, match=r"fibrinogen_pchg_condition: Input should be 'value_below_lln', "
                                         r"'baseline_low' or 'never'"):
        grade_one("Anemia", "L", 1.0, options=CtcaeOptions(fibrinogen_pchg_condition="sometimes"))
    with pytest.raises(ValueError, match="signif_digits"):
        CtcaeOptions(signif_digits=0)
    with pytest.raises(ValueError, match="unknown option 'hypokalaemia_symptomatic'"):
        CtcaeOptions(hypokalaemia_symptomatic=False)
    with pytest.raises(ValueError, match="no CTCAE criteria"):
        grade_one("Anemia", "L", 1.0, options=CtcaeOptions(version="6.0"))


# ---------------------------------------------------------------------------------------------
# options: each one changes what it documents, and nothing is silently ignored


def test_option_inr_on_anticoagulation():
    off = CtcaeOptions(inr_on_anticoagulation=False)
    assert g("INR increased", "H", 1.2, base=1.0) == 1 and g("INR increased", "H", 1.2, base=1.0, options=off) == 0
    assert g("INR increased", "H", 1.0, base=None) is None and g("INR increased", "H", 1.0, options=off) == 0
    assert g("INR increased", "H", 2.0, base=0.7) == 3 and g("INR increased", "H", 2.0, base=0.7, options=off) == 2


@pytest.mark.parametrize("term", ["Lipase increased", "Serum amylase increased"])
def test_option_pancreatic_enzymes_symptomatic(term):
    off = CtcaeOptions(pancreatic_enzymes_symptomatic=False)
    assert g(term, "H", 300, anrhi=100) == 3 and g(term, "H", 300, anrhi=100, options=off) == 2
    assert g(term, "H", 501, anrhi=100) == 4 and g(term, "H", 501, anrhi=100, options=off) == 3
    assert g(term, "H", 170, anrhi=100) == 2 and g(term, "H", 170, anrhi=100, options=off) == 2


def test_option_hyperuricemia():
    off = CtcaeOptions(hyperuricemia_physiologic_consequences=False)
    assert g("Hyperuricemia", "H", 500, anrhi=420) == 3 and g("Hyperuricemia", "H", 500, anrhi=420, options=off) == 1


def test_option_hypokalemia():
    off = CtcaeOptions(hypokalemia_symptomatic=False)
    args = ("Hypokalemia", "L", 3.2)
    assert g(*args, anrlo=3.5, unit="mmol/L") == 2 and g(*args, anrlo=3.5, unit="mmol/L", options=off) == 1
    assert g("Hypokalemia", "L", 2.9, anrlo=3.5, unit="mmol/L", options=off) == 3


def test_option_hyponatremia():
    off = CtcaeOptions(hyponatremia_symptomatic=False)
    # 129.5: the band 125-129 read as [125, 130) (audit s26 item 7; admiral's <= 129 gave 1)
    for aval, on_, off_ in ((127, 3, 2), (129, 3, 2), (129.5, 3, 2), (124, 3, 3), (124.5, 3, 3), (119, 4, 4), (135, 0, 0)):
        assert g("Hyponatremia", "L", aval, anrlo=135, unit="mmol/L") == on_, aval
        assert g("Hyponatremia", "L", aval, anrlo=135, unit="mmol/L", options=off) == off_, aval


def test_option_ggt_inclusive():
    # session 34 (review 34 F3): the CTCAE text's inclusive "2.0 - 2.5 x baseline" is the default
    off = CtcaeOptions(ggt_baseline_grade1_inclusive=False)
    assert g("GGT increased", "H", 80, anrhi=39, base=40, bnrind="HIGH") == 1
    assert g("GGT increased", "H", 80, anrhi=39, base=40, bnrind="HIGH", options=off) == 0


def test_option_fibrinogen_pchg_condition():
    f = ("Fibrinogen decreased", "L")
    never = CtcaeOptions(fibrinogen_pchg_condition="never")
    bl = CtcaeOptions(fibrinogen_pchg_condition="baseline_low")
    assert g(*f, 1.5, anrlo=2, pchg=-51, unit="g/L", options=never) == 1
    assert g(*f, 1.5, anrlo=2, pchg=-51, bnrind="LOW", unit="g/L", options=bl) == 3
    assert g(*f, 1.5, anrlo=2, pchg=-51, bnrind="NORMAL", unit="g/L", options=bl) == 1
    assert g(*f, 2.5, anrlo=2, pchg=-51, bnrind="LOW", unit="g/L", options=bl) == 3  # value normal, baseline low


def test_option_units():
    assert g("Anemia", "L", 9.0, anrlo=12, unit="g/dL") == 2  # auto: the US table fits g/dL
    assert g("Anemia", "L", 9.0, anrlo=12, unit="g/dL", options=CtcaeOptions(units="SI")) is None
    assert g("Anemia", "L", 90.0, anrlo=120, unit="g/L", options=CtcaeOptions(units="US")) is None
    assert g("Anemia", "L", 90.0, anrlo=120, unit="g/L", options=CtcaeOptions(units="SI")) == 2
    assert g("Platelet count decreased", "L", 49000, anrlo=150000, unit="10^3/mL") == 3  # legacy US unit


def test_option_indicators_and_digits():
    alt = "Alanine aminotransferase increased"
    # BNRIND "H" is abnormal only when declared as a high indicator: then 59 < 1.5 x BASE 40 -> 0;
    # undeclared it is not a CDISC NRIND value: an error (audit s26 item 5), no longer read as normal
    with pytest.raises(ValueError, match="column bnrind"):
        g(alt, "H", 59.0, anrhi=20, base=40, bnrind="H")
    assert g(alt, "H", 59.0, anrhi=20, base=40, bnrind="H", options=CtcaeOptions(high_indicator=("H",))) == 0
    assert g(alt, "H", 59.0, anrhi=20, base=40, bnrind="HIGH", options=CtcaeOptions(high_indicator=("H",))) == 1
    # low_indicator drives the fibrinogen baseline_low reading
    bl = {"fibrinogen_pchg_condition": "baseline_low"}
    assert g("Fibrinogen decreased", "L", 1.5, anrlo=2, pchg=-51, bnrind="L", unit="g/L",
             options=CtcaeOptions(**bl, low_indicator=("L",))) == 3
    with pytest.raises(ValueError, match="column bnrind"):  # "L" undeclared: not a CDISC NRIND value
        g("Fibrinogen decreased", "L", 1.5, anrlo=2, pchg=-51, bnrind="L", unit="g/L", options=CtcaeOptions(**bl))
    two = CtcaeOptions(signif_digits=2)
    assert g(alt, "H", 124, anrhi=40) == 2
    assert g(alt, "H", 124, anrhi=40, options=two) == 1  # signif(124, 2) = 120, not > 120


def test_new_version_is_a_data_change():
    """A table of another version (same schema) grades without any code change."""
    cite = "test"
    table = {
        "standard": "CTCAE", "version": "9.9", "units": "SI", "citation": cite, "status": "unverified",
        "name": "ctcae_v99",
        "defaults": {"demo_flag": True, "signif_digits": 15},
        "options": {"demo_flag": {"values": [True, False]}},
        "terms": [{"id": "demo", "term": "Demo count decreased", "direction": "L", "params": ["NEUT"],
                   "unit": "10^9/L"}],
        "rule_sets": {"demo": [
            {"id": "demo:na", "grade": None, "when": [{"missing": ["aval"]}], "citation": cite},
            {"id": "demo:g4", "grade": 4, "citation": cite,
             "when": [{"feature": "aval", "op": "<=", "value": {"column": "anrlo", "factor": 0.1}, "signif": 15}]},
            {"id": "demo:g2", "grade": 2, "when": [{"feature": "aval", "op": "<", "value": 1, "signif": 15}],
             "option": {"demo_flag": True}, "citation": cite},
            {"id": "demo:g1", "grade": 1, "when": [{"feature": "aval", "op": "<", "value": {"column": "anrlo"},
                                                   "signif": 15}], "citation": cite},
        ]},
    }
    assert grade_one("demo count DECREASED", "L", 0.2, anrlo=2, unit="10^9/L", criteria=table)[:2] == (4, "ctcae_v99:demo:g4")
    assert g("Demo count decreased", "L", 0.5, anrlo=2, unit="10^9/L", criteria=table) == 2
    off = CtcaeOptions(extra={"demo_flag": False})
    assert g("Demo count decreased", "L", 0.5, anrlo=2, unit="10^9/L", criteria=table, options=off) == 1
    with pytest.raises(ValueError, match="not allowed"):  # the table's allowed values bind extra options too
        g("Demo count decreased", "L", 0.5, anrlo=2, unit="10^9/L", criteria=table,
          options=CtcaeOptions(extra={"demo_flag": "maybe"}))
    with pytest.raises(ValueError, match="does not apply"):  # an option the table lacks is refused
        g("Demo count decreased", "L", 0.5, anrlo=2, unit="10^9/L", criteria=table,
          options=CtcaeOptions(hypokalemia_symptomatic=False))


# ---------------------------------------------------------------------------------------------
# ATOXGR combination and derive_ctcae


def test_combine_atoxgr_as_admiral():
    df = pl.DataFrame(
        {"ATOXDSCL": ["Hypoglycemia", "Hypoglycemia", "Hypoglycemia", None, "Hypophosphatemia", "Anemia", "Anemia"],
         "ATOXDSCH": ["Hyperglycemia", "Hyperglycemia", "Hyperglycemia", "INR Increased", None, "Hb inc", "Hb inc"],
         "ATOXGRL": [None, 0, 0, None, 1, 3, None],
         "ATOXGRH": [0, 1, 0, 0, None, 0, None]},
        schema_overrides={"ATOXGRL": pl.Int64, "ATOXGRH": pl.Int64},
    )
    assert df.select(combine_atoxgr()).to_series().to_list() == [None, 1, 0, 0, -1, -3, None]


def _study():
    rows = [
        ("S1", -5, "NEUT", 1.8, "10^9/L", 2.0, 7.5, 1), ("S1", 0, "NEUT", 2.5, "10^9/L", 2.0, 7.5, 2),
        ("S1", 3, "NEUT", 0.3, "10^9/L", 2.0, 7.5, 3), ("S1", 7, "NEUT", None, "10^9/L", 2.0, 7.5, 4),
        ("S1", -1, "ALT", 80, "U/L", 7, 40, 5), ("S1", 5, "ALT", 119, "U/L", 7, 40, 6),
        ("S1", 6, "ALT", 121, "U/L", 7, 40, 7),
        ("S1", 1, "HGB", 170, "g/L", 120, 160, 8), ("S1", 2, "CRP", 170, "mg/L", None, 5, 9),
        ("S1", -2, "CREAT", 50, "umol/L", 45, 100, 10), ("S1", 9, "CREAT", 160, "umol/L", 45, 100, 11),
        ("S2", 4, "K", 3.2, "mmol/L", 3.5, 5.1, 12), ("S2", 0, "FIBRINO", 3.0, "g/L", 2.0, 4.0, 13),
        ("S2", 6, "FIBRINO", 1.4, "g/L", 2.0, 4.0, 14),
    ]
    df = pl.DataFrame(rows, schema=["subject_id", "day", "param", "value", "unit", "lln", "uln", "src_row"], orient="row")
    obs = conform(df.with_columns(pl.lit("observations.csv").alias("src_file")), "observations")
    subjects = conform(pl.DataFrame({"subject_id": ["S1", "S2"]}), "subjects")
    return Study("t", subjects=subjects, observations=obs)


def test_derive_ctcae_tiny_study():
    out = derive_ctcae(_study())
    assert out.height == 13  # CRP has no CTCAE term
    row = {(r["subject_id"], r["param"], r["day"]): r for r in out.iter_rows(named=True)}
    n3 = row[("S1", "NEUT", 3.0)]
    assert (n3["BASE"], n3["BNRIND"], n3["ATOXGRL"], n3["ATOXGRH"], n3["ATOXGR"], n3["BTOXGR"]) == (2.5, "NORMAL", 4, None, -4, 0)
    assert n3["term"] == "Neutrophil count decreased" and n3["direction"] == "L" and n3["ATOXDSCH"] is None
    assert n3["rule"] == "ctcae_v5:neutrophil_count_decreased:g4" and n3["grade_reason"] == "grade 4: AVAL < 0.5 10^9/L"
    assert n3["evidence"] == ["observations.csv:3", "observations.csv:2"]
    assert row[("S1", "NEUT", 0.0)]["ABLFL"] == "Y" and row[("S1", "NEUT", 0.0)]["evidence"] == ["observations.csv:2"]
    assert row[("S1", "NEUT", -5.0)]["ATOXGR"] == -1  # before baseline: graded too, BASE filled
    assert row[("S1", "NEUT", 7.0)]["ATOXGR"] is None  # missing value
    # abnormal baseline ALT (80 > ULN 40): grades relative to BASE; the baseline itself grades 0
    alt = [row[("S1", "ALT", d)] for d in (-1.0, 5.0, 6.0)]
    assert [a["BNRIND"] for a in alt] == ["HIGH"] * 3 and [a["ATOXGR"] for a in alt] == [0, 0, 1]
    assert alt[2]["rule"].endswith("g1.bl_abnormal") and alt[0]["BTOXGR"] == 0
    # both directions: the non-zero one decides
    hgb = row[("S1", "HGB", 1.0)]
    assert (hgb["ATOXDSCL"], hgb["ATOXGRL"], hgb["ATOXGRH"], hgb["ATOXGR"], hgb["direction"]) == ("Anemia", 0, 1, 1, "H")
    assert hgb["BASE"] is None and hgb["BTOXGR"] is None
    # creatinine 160 with ULN 100 and BASE 50: > 3 x BASE -> 3 (ULN alone would give 2)
    cr = row[("S1", "CREAT", 9.0)]
    assert cr["ATOXGR"] == 3 and cr["PCHG"] == pytest.approx(220.0) and cr["rule"].endswith("g3.xbase")
    # fibrinogen 1.4 (< LLN 2, 0.7 x LLN -> 2 by LLN) with PCHG -53 % -> 3
    fib = row[("S2", "FIBRINO", 6.0)]
    assert fib["ATOXGR"] == -3 and round(fib["PCHG"], 6) == round((1.4 - 3.0) / 3.0 * 100, 6)
    k = row[("S2", "K", 4.0)]
    assert (k["ATOXGRL"], k["ATOXGRH"], k["ATOXGR"]) == (2, 0, -2) and k["BASE"] is None
    # rows where both directions are 0: no single deciding term; both rules listed
    both0 = derive_ctcae(conform(pl.DataFrame({"subject_id": ["S3"], "day": [1.0], "param": ["K"], "value": [4.0],
                                               "unit": ["mmol/L"], "lln": [3.5], "uln": [5.1]}), "observations"))
    r = both0.row(0, named=True)
    assert r["ATOXGR"] == 0 and r["direction"] is None and r["rule"].startswith("L: ") and "; H: " in r["grade_reason"]
    assert r["evidence"] == []


def test_derive_ctcae_baseline_options():
    study = _study()
    later = derive_ctcae(study, CtcaeOptions(baseline_day=-3))
    n = {r["day"]: r for r in later.filter(pl.col("param") == "NEUT").iter_rows(named=True)}
    assert n[3.0]["BASE"] == 1.8 and n[-5.0]["ABLFL"] == "Y" and n[3.0]["BNRIND"] == "LOW"
    strict = derive_ctcae(study, CtcaeOptions(baseline_inclusive=False))
    n = {r["day"]: r for r in strict.filter(pl.col("param") == "NEUT").iter_rows(named=True)}
    assert n[3.0]["BASE"] == 1.8  # day 0 no longer counts as baseline
    with pytest.raises(ValueError, match="SI"):
        derive_ctcae(study, CtcaeOptions(units="US"))
    # an option reaches the grading: hypokalemia asymptomatic
    k = derive_ctcae(study, CtcaeOptions(hypokalemia_symptomatic=False)).filter(pl.col("param") == "K")
    assert k["ATOXGR"].to_list() == [-1]


def test_derive_ctcae_accepts_frame_and_empty():
    obs = _study().observations
    assert derive_ctcae(obs).height == 13
    empty = derive_ctcae(obs.clear())
    assert empty.height == 0 and "ATOXGR" in empty.columns


def test_grade_labs_is_pure():
    df = pl.DataFrame({"term": ["Anemia"], "direction": ["L"], "aval": [79.0], "anrlo": [120.0], "unit": ["g/L"]})
    before = df.clone()
    grade_labs(df)
    assert df.equals(before)
    assert math.isfinite(signif_scalar(1e308))
