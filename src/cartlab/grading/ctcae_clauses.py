"""CTCAE v5.0 clinical clauses the lab value cannot settle (option ``clinical_clauses``; review 41 F5).

Five criteria grade a lab value by a clinical fact the lab does not record: Hypokalemia G2
"Symptomatic with <LLN - 3.0 mmol/L", Hyponatremia G3 "125-129 mmol/L and symptomatic", Hyperuricemia
G3 ">ULN with physiologic consequences", Lipase/Serum amylase increased G3/G4 "with signs or symptoms",
INR increased "if on anticoagulation" (x baseline). Their options (``hypokalemia_symptomatic`` ...)
default to admiral's worst case (the clause holds: ``clinical_clauses="worst_case"``, the default of
the criteria tables' ``defaults``, reasons saying "assuming ..."). ``clinical_clauses="range"`` grades
a row under both readings: the grade without the clause stands (``grade`` / ATOXGR*), the grade with
it is the upper bound (``grade_max`` / ATOXGR*_MAX) and the reason names the clause as the missing
input. Where the reading with the clause is itself open or not gradable (INR with no BASE), its own
upper bound is kept (not gradable: the term's highest lab grade) and the reason names its missing
input too: never a definite grade from an open reading (review41_diff2 F2). An individual option
that is set explicitly is kept as set.
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


def clause_range(options: Any, criteria: Any = None) -> bool:
    """The option asks for ranges and at least one clause option is left to it (unset). Unset, the
    option is the default of the criteria table graded with (``criteria`` as
    :func:`cartlab.grading.ctcae.grade_labs` takes it; None: the first table of ``options.version``):
    ``defaults: clinical_clauses`` in ctcae_v5.yaml, worst_case (admiral's reading; review41_diff2
    F12). A table that declares no such default has no clauses to read as a range."""
    if not any(getattr(options, k, None) is None for k in CLAUSES):
        return False
    mode = getattr(options, "clinical_clauses", None)
    return (mode if mode is not None else _table_default(options, criteria)) == "range"


def _table_default(options: Any, criteria: Any) -> Any:
    """``clinical_clauses`` of the first table in ``criteria`` (its ``defaults``)."""
    from collections.abc import Mapping

    from cartlab.criteria import load_raw
    from cartlab.grading.ctcae_criteria import CompiledTable
    from cartlab.grading.ctcae_units import criteria_names

    first = criteria[0] if isinstance(criteria, (list, tuple)) and criteria else criteria
    if isinstance(first, CompiledTable):
        return first.options.get("clinical_clauses")
    if isinstance(first, Mapping):
        return (first.get("defaults") or {}).get("clinical_clauses")
    name = first if isinstance(first, str) else criteria_names(getattr(options, "version", "5.0"), "auto")[0]
    return (load_raw(name).get("defaults") or {}).get("clinical_clauses")


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


def _lab_tops(criteria: Any, options: Any) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """The highest lab-derived grade of each criteria entry under ``options`` (the reading with the
    clauses), by entry (``<table>:<entry>``) and by (term, direction): the upper bound of a row that
    reading cannot grade (INR increased with no BASE: grade 3)."""
    from cartlab.grading.ctcae_criteria import tables
    by_entry: dict[str, int] = {}
    by_term: dict[tuple[str, str], int] = {}
    for tab in tables(criteria, options):
        for e in tab.entries:
            top = max((g for g, _, _ in e.labels if g is not None), default=None)
            if top is None:
                continue
            by_entry[f"{tab.name}:{e.entry_id}"] = top
            k = (e.term, e.direction)
            by_term[k] = max(by_term.get(k, top), top)
    return by_entry, by_term


def _open(g: pl.Expr, g_max: pl.Expr, hi: pl.Expr, hi_max: pl.Expr, table_top: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(the row is opened by the clause, its upper bound). Any difference between the two readings opens
    the row (review41_diff2 F2): the reading with the clause grades higher, is itself a range (its
    grade_max stays the bound), or cannot grade the row (a missing input of its own, e.g. INR 'if on
    anticoagulation' with no BASE: the term's highest lab grade is the bound). Never a definite grade
    from an open reading."""
    top = pl.max_horizontal(hi, hi_max, g_max, pl.when(hi.is_null() & hi_max.is_null()).then(table_top))
    opened = g.is_not_null() & (hi.is_null() | (hi > g) | (top > pl.coalesce(g_max, g)))
    return opened, top


def _with_note(hi: pl.Expr, hi_max: pl.Expr, hi_reason: pl.Expr) -> pl.Expr:
    """What the reading with the clause says when it is not a definite grade (its own missing input)."""
    return pl.when(hi.is_null() | (hi_max > hi)).then(pl.format("; with it: {}", hi_reason)).otherwise(pl.lit(""))


def grade_labs_range(frame: pl.DataFrame, criteria: Any, options: Any, grade_labs: Any) -> pl.DataFrame:
    """:func:`cartlab.grading.ctcae.grade_labs` with clinical_clauses="range": grade without the clauses,
    grade_max the higher of the two readings (the reading with them not gradable: the term's highest
    lab grade), the reason naming the clause (and that reading's own missing input) where they differ."""
    without, with_, free = clause_options(options)
    lo, hi = grade_labs(frame, criteria, without), grade_labs(frame, criteria, with_)
    by_entry, _ = _lab_tops(criteria, with_)
    entry = pl.lit(hi["rule"]).cast(pl.String).str.extract(r"^([^:]+:[^:]+):", 1)
    table_top = entry.replace_strict(by_entry, default=None, return_dtype=pl.Int64)
    hg, hm = pl.lit(hi["grade"]), pl.lit(hi["grade_max"])
    g = pl.col("grade")
    opened, top = _open(g, pl.col("grade_max"), hg, hm, table_top)
    words = _rule_words(pl.lit(hi["rule"]), free)
    note = pl.concat_str([_note(g, top, pl.coalesce(words, pl.lit(
        "a clinical clause (a CTCAE clause not derived from labs)"))), _with_note(hg, hm, pl.lit(hi["grade_reason"]))])
    return lo.with_columns(
        pl.when(opened).then(top).otherwise(pl.col("grade_max")).alias("grade_max"),
        pl.when(opened).then(pl.concat_str([pl.col("grade_reason"), note])).otherwise(pl.col("grade_reason"))
        .alias("grade_reason"))


def derive_range(study: Any, options: Any, derive: Any) -> pl.DataFrame:
    """:func:`cartlab.grading.ctcae.derive_ctcae` with clinical_clauses="range": ATOXGR{L,H} without the
    clauses, ATOXGR{L,H}_MAX the higher reading where they differ (as :func:`grade_labs_range`),
    grade_reason naming the clause."""
    without, with_, free = clause_options(options)
    lo, hi = derive(study, without), derive(study, with_)
    _, by_term = _lab_tops(None, with_)
    cols = []
    notes = []
    for d in ("L", "H"):
        g, gh, hm = pl.col(f"ATOXGR{d}"), pl.lit(hi[f"ATOXGR{d}"]), pl.lit(hi[f"ATOXGR{d}_MAX"])
        table_top = pl.col(f"ATOXDSC{d}").cast(pl.String).replace_strict(
            {t: v for (t, dd), v in by_term.items() if dd == d}, default=None, return_dtype=pl.Int64)
        opened, top = _open(g, pl.col(f"ATOXGR{d}_MAX"), gh, hm, table_top)
        cols.append(pl.when(opened).then(top).otherwise(pl.col(f"ATOXGR{d}_MAX")).alias(f"ATOXGR{d}_MAX"))
        notes.append(pl.when(opened).then(pl.concat_str([_note(g, top, pl.coalesce(
            _words(pl.col(f"ATOXDSC{d}"), free), pl.lit("a clinical clause"))), _with_note(
            gh, hm, pl.lit(hi["grade_reason"]).cast(pl.String))])))
    note = pl.concat_str(notes, ignore_nulls=True)
    out = lo.with_columns(*cols, pl.when(note.is_not_null() & (note != "")).then(
        pl.concat_str([pl.col("grade_reason").cast(pl.String), note])).otherwise(pl.col("grade_reason").cast(pl.String))
        .cast(lo.schema["grade_reason"]).alias("grade_reason"))
    return out  # ATOXGRL/ATOXGRH (and so ATOXGR) are the reading without the clauses
