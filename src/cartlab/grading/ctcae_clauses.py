"""CTCAE v5.0 clinical clauses the lab value cannot settle (option ``clinical_clauses``; review 41 F5).

Five criteria grade a lab value by a clinical fact the lab does not record: Hypokalemia G2
"Symptomatic with <LLN - 3.0 mmol/L", Hyponatremia G3 "125-129 mmol/L and symptomatic", Hyperuricemia
G3 ">ULN with physiologic consequences", Lipase/Serum amylase increased G3/G4 "with signs or symptoms",
INR increased "if on anticoagulation" (x baseline). Their options (``hypokalemia_symptomatic`` ...)
default to admiral's worst case (the clause holds: ``clinical_clauses="worst_case"``, the default,
reasons saying "assuming ..."). ``clinical_clauses="range"`` grades a row under both readings: the
grade without the clause stands (``grade`` / ATOXGR*), the grade with it is the upper bound
(``grade_max`` / ATOXGR*_MAX) and the reason names the clause as the missing input. An individual
option that is set explicitly is kept as set.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import polars as pl

__all__ = ["CLAUSES", "clause_range", "clause_options", "grade_labs_range", "derive_range"]

#: option -> the clause in CTCAE's words (what the row's data do not say)
CLAUSES = {
    "hypokalemia_symptomatic": "symptoms (Hypokalemia G2 'Symptomatic with <LLN - 3.0 mmol/L')",
    "hyponatremia_symptomatic": "symptoms (Hyponatremia G3 '125-129 mmol/L and symptomatic')",
    "hyperuricemia_physiologic_consequences": "physiologic consequences (Hyperuricemia G3 '>ULN with physiologic "
                                              "consequences')",
    "pancreatic_enzymes_symptomatic": "signs or symptoms (Lipase/Serum amylase increased G3 '>2.0 - 5.0 x ULN with "
                                      "signs or symptoms')",
    "inr_on_anticoagulation": "anticoagulation (INR increased 'if on anticoagulation': x baseline)",
}
#: the term each clause governs (an INR/lipase row reads only its own clause)
TERMS = {"hypokalemia_symptomatic": ("Hypokalemia",), "hyponatremia_symptomatic": ("Hyponatremia",),
         "hyperuricemia_physiologic_consequences": ("Hyperuricemia",),
         "pancreatic_enzymes_symptomatic": ("Lipase increased", "Serum amylase increased"),
         "inr_on_anticoagulation": ("INR increased",)}


def clause_range(options: Any) -> bool:
    """The option asks for ranges and at least one clause option is left to it (unset)."""
    return getattr(options, "clinical_clauses", "worst_case") == "range" and any(
        getattr(options, k) is None for k in CLAUSES)


def clause_options(options: Any) -> tuple[Any, Any, list[str]]:
    """(without the clauses, with them, the clause options read as a range): the unset clause options
    False, then True; both with clinical_clauses worst_case (one reading each)."""
    free = [k for k in CLAUSES if getattr(options, k) is None]
    return (replace(options, clinical_clauses="worst_case", **dict.fromkeys(free, False)),
            replace(options, clinical_clauses="worst_case", **dict.fromkeys(free, True)), free)


#: the criteria entries (rule ids ``<table>:<entry>:<rule>``) each clause governs
ENTRIES = {"hypokalemia_symptomatic": ("hypokalemia",), "hyponatremia_symptomatic": ("hyponatremia",),
           "hyperuricemia_physiologic_consequences": ("hyperuricemia",),
           "pancreatic_enzymes_symptomatic": ("lipase_increased", "amylase_increased"),
           "inr_on_anticoagulation": ("inr_increased",)}


def _words(term: pl.Expr, free: list[str]) -> pl.Expr:
    """The clause a row's term reads, in words (null: none of the free clauses)."""
    mapping = {t: CLAUSES[k] for k in free for t in TERMS[k]}
    return term.cast(pl.String).replace_strict(mapping, default=None, return_dtype=pl.String)


def _rule_words(rule: pl.Expr, free: list[str]) -> pl.Expr:
    """The clause of the criteria entry a rule id names, in words."""
    mapping = {e: CLAUSES[k] for k in free for e in ENTRIES[k]}
    return (rule.cast(pl.String).str.extract(r"^[^:]+:([^:]+):", 1)
            .replace_strict(mapping, default=None, return_dtype=pl.String))


def _note(lo: pl.Expr, hi: pl.Expr, words: pl.Expr) -> pl.Expr:
    return pl.format("; up to grade {} with {}: a clinical clause the lab value does not settle (missing input: "
                     "{}; graded {} without it, option ctcae.clinical_clauses=range; 'worst_case' assumes it)",
                     hi, words, words.str.extract(r"^([a-z ]+?) \(", 1), lo)


def grade_labs_range(frame: pl.DataFrame, criteria: Any, options: Any, grade_labs: Any) -> pl.DataFrame:
    """:func:`cartlab.grading.ctcae.grade_labs` with clinical_clauses="range": grade without the clauses,
    grade_max the higher of the two readings, the reason naming the clause where they differ."""
    without, with_, free = clause_options(options)
    lo, hi = grade_labs(frame, criteria, without), grade_labs(frame, criteria, with_)
    g, top = lo["grade"], pl.max_horizontal(hi["grade"], hi["grade_max"], lo["grade_max"])
    words = _rule_words(pl.lit(hi["rule"]), free)
    opened = g.is_not_null() & (pl.lit(hi["grade"]) > g)
    return lo.with_columns(
        pl.when(opened).then(top).otherwise(pl.col("grade_max")).alias("grade_max"),
        pl.when(opened).then(pl.concat_str([pl.col("grade_reason"), _note(g, pl.lit(hi["grade"]), pl.coalesce(
            words, pl.lit("a clinical clause (a CTCAE clause not derived from labs)")))]))
        .otherwise(pl.col("grade_reason")).alias("grade_reason"))


def derive_range(study: Any, options: Any, derive: Any) -> pl.DataFrame:
    """:func:`cartlab.grading.ctcae.derive_ctcae` with clinical_clauses="range": ATOXGR{L,H} without the
    clauses, ATOXGR{L,H}_MAX the higher reading where they differ, grade_reason naming the clause."""
    without, with_, free = clause_options(options)
    lo, hi = derive(study, without), derive(study, with_)
    cols = []
    notes = []
    for d in ("L", "H"):
        g, gh = pl.col(f"ATOXGR{d}"), pl.lit(hi[f"ATOXGR{d}"])
        top = pl.max_horizontal(gh, pl.lit(hi[f"ATOXGR{d}_MAX"]), pl.col(f"ATOXGR{d}_MAX"))
        opened = g.is_not_null() & (gh > g)
        cols.append(pl.when(opened).then(top).otherwise(pl.col(f"ATOXGR{d}_MAX")).alias(f"ATOXGR{d}_MAX"))
        notes.append(pl.when(opened).then(_note(g, gh, pl.coalesce(_words(pl.col(f"ATOXDSC{d}"), free), pl.lit(
            "a clinical clause")))))
    note = pl.concat_str(notes, ignore_nulls=True)
    out = lo.with_columns(*cols, pl.when(note.is_not_null() & (note != "")).then(
        pl.concat_str([pl.col("grade_reason").cast(pl.String), note])).otherwise(pl.col("grade_reason").cast(pl.String))
        .cast(lo.schema["grade_reason"]).alias("grade_reason"))
    return out  # ATOXGRL/ATOXGRH (and so ATOXGR) are the reading without the clauses
