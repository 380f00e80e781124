"""``value_text`` of ``observations.csv``: categorical codes and censored results.

Study folder format v1, observations.csv: ``value_text`` is "a categorical result (e.g. LOC), or a
censored result such as ``<50``" (the bound in the row's unit). Anything else there would be dropped
by every engine, so it is an error naming the file, row and column, never a silently missing value:
a unit inside the text (``<50 copies/ug``), a word for a numeric parameter (MRD ``negative``), or a
row giving both a number and a censored text.

One documented extension: ``BLQ`` (also ``BQL``, ``BLOQ``, ``<LLOQ``, ``below LLOQ``) on a row with
an ``lloq`` reads as ``<lloq``, the result below the row's limit of quantification; without an
``lloq`` it is an error (the bound is unknown).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import polars as pl

from cartlab.io.schema import vocab_key, vocab_key_expr

if TYPE_CHECKING:  # pragma: no cover
    from cartlab.io.dictionary import Dictionary

__all__ = ["CENSORED", "BLQ_WORDS", "MISSING_WORDS", "NOT_DETECTED_WORDS", "number_hint", "read_value_text"]

CENSORED = re.compile(r"^\s*(<=|>=|<|>|≤|≥)\s*([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$")
#: below the limit of quantification, as lab systems print it (lower case, spaces folded)
BLQ_WORDS = ("blq", "bql", "bloq", "<lloq", "< lloq", "below lloq", "<loq", "< loq")
MISSING_WORDS = {"na", "n/a", "nan", "null", "none", "nd", "-", "--", ".", "missing", "unknown",
                 "#n/a", "#na", "#value!", "#null!"}  # the last: what a spreadsheet shows for an empty lookup
#: a measured result below the detection limit, as lab systems print it: a result, not a missing value
NOT_DETECTED_WORDS = {"nd", "n.d.", "not detected", "undetected", "undetectable", "not detectable",
                      "negative", "neg"}
BELOW_DETECTION_HINT = (" (a below-detection result: write '<' and the detection limit in the row's unit in "
                        "value_text, e.g. '<50', or give lloq and write BLQ; an empty cell would make it missing)")
_DECIMAL_COMMA = re.compile(r"^[-+]?\d+,\d+$")
_PERCENT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)\s*%$")
CENSORED_HINT = (" (a censored result: write it in value_text, e.g. value_text '<50', and leave value empty; "
                 "BLQ there needs an lloq)")


def number_hint(text: object, result: bool = False) -> str:
    """How to write what was written where a number belongs: a missing-value word (NA, N/A, -, #N/A), a
    decimal comma, a percentage ("5%"); ``result``: the cell holds a measured result (observations' value/value_text), where
    ND / not detected / negative is a below-detection result, never a missing value (session 34), and a censored result
    (<50, BLQ) belongs in value_text (session 45)."""
    word = " ".join(str(text).strip().lower().split())
    if result and word in NOT_DETECTED_WORDS:
        return BELOW_DETECTION_HINT
    if word in MISSING_WORDS:
        return " (leave the cell empty for a missing value)"
    if result and (CENSORED.match(word) or word in BLQ_WORDS):  # review 45 folder F5
        return CENSORED_HINT
    if _PERCENT.match(word):
        return " (write the number in value and % in unit)"
    if _DECIMAL_COMMA.match(word):
        return (" (a decimal comma or a thousands separator: write a decimal point and no thousands "
                "separator, or read a semicolon-separated file with --csv-dialect european)")
    return ""


#: a calendar date (ISO 2021-06-01, optionally with a time; 01.06.2021, 6/1/2021)
_DATE = re.compile(r"^\s*(\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2})?)?|\d{1,2}[./]\d{1,2}[./]\d{2,4})\s*$")


def date_hint(text: object, column: str, times=()) -> str:
    """A date written in a day column (``times``: the file's (day, datetime, required) columns): where a date
    goes (review 47 F10; spec: a row's day counts from the subject's infusion_date, README "days")."""
    datetime_col = next((dt for day, dt, _ in times if day == column), None)
    if datetime_col is None or not _DATE.match(str(text)):
        return ""
    return f" (a date: put it in {datetime_col}, with the subject's infusion_date in subjects.csv)"


def read_value_text(r, d: Dictionary) -> None:
    """Parse ``r.df``'s ``value_text`` into ``censor`` and ``__censor_limit`` (row's unit), normalise
    categorical codes, and flag what the format does not allow (``r``: the study-folder file reader)."""
    df = r.df
    text = pl.col("value_text")
    point = pl.lit(False)
    if r.decimal == ",":  # "<0,5" in the european dialect
        # a decimal point in the bound ("<1.000": one thousand, or one?) is ambiguous in a decimal-comma
        # file: an error, as in the value column (review 37 A2), never read as "<1"
        point = text.str.contains(r"^\s*[<>≤≥]=?\s*[-+]?[\d.,]*\.[\d.,]*([eE][-+]?\d+)?\s*$").fill_null(False)
        r.flag(point, "value_text",
               lambda v: f"value_text {v!r} has a decimal point in its bound, but the {r.dialect} dialect writes "
               "decimals with a comma (a thousands separator or a decimal point?): write the bound without "
               "thousands separators and with a decimal comma, e.g. '<1000' or '<1,5'")
        text = text.str.replace(r"^(\s*[<>≤≥]=?\s*[-+]?\d+),(\d+)", "$1.$2")
    cens = text.str.extract_groups(CENSORED.pattern)
    blq = pl.col("value_text").str.strip_chars().str.to_lowercase().str.replace_all(r"\s+", " ").is_in(BLQ_WORDS)
    blq_bound = blq & pl.col("lloq").is_not_null()
    df = df.with_columns(
        pl.when(blq_bound).then(pl.lit("<"))
        .otherwise(cens.struct.field("1").replace({"≤": "<=", "≥": ">="})).alias("censor"),
        pl.when(blq_bound).then(pl.col("lloq").cast(pl.Float64))
        .otherwise(cens.struct.field("2").cast(pl.Float64, strict=False)).alias("__censor_limit"),
        blq.fill_null(False).alias("__blq"),
        point.alias("__point"),
    )
    # categorical params: value_text in the vocabulary's spelling ("Awakens to voice" is
    # awakens_to_voice, as for the enum columns), then it must be one of the allowed codes
    categorical = [p for p in d.params.values() if p.text_values]
    for p in categorical:
        key = vocab_key_expr(pl.col("value_text"))
        df = df.with_columns(
            pl.when(pl.col("param") == p.code)
            .then(key.replace_strict({vocab_key(v): v for v in p.text_values}, default=pl.col("value_text")))
            .otherwise(pl.col("value_text")).alias("value_text"))
    r.df = df
    for p in categorical:
        r.flag(
            (pl.col("param") == p.code)
            & pl.col("value_text").is_not_null()
            & ~pl.col("value_text").is_in(p.text_values),
            "value_text",
            lambda v, p=p: f"{v!r} is not a valid {p.code}; allowed: {', '.join(p.text_values)}",
        )
        r.flag(  # a categorical param has no number: a value there would be ignored by every engine
            (pl.col("param") == p.code) & pl.col("value").is_not_null(),
            "value",
            lambda v, p=p: (f"{p.code} is categorical: give it in value_text ({', '.join(p.text_values)}), "
                            f"not as the number {v}"),
        )
    numeric = pl.col("param").is_in([c for c, p in d.params.items() if not p.text_values])
    given = numeric & pl.col("value_text").is_not_null()
    r.flag(
        given & pl.col("__blq") & pl.col("lloq").is_null(),
        "value_text",
        lambda v: (f"value_text {v!r} needs the row's lloq (the limit the result is below); give lloq, or "
                   "write '<' and the limit in the row's unit, e.g. '<50'"),
    )
    nd = (pl.col("value_text").str.strip_chars().str.to_lowercase().str.replace_all(r"\s+", " ")
          .is_in(sorted(NOT_DETECTED_WORDS)))
    r.flag(
        given & nd,
        "value_text",
        lambda v: (f"value_text {v!r} is a below-detection result without its limit: write '<' and the "
                   "detection limit in the row's unit, e.g. '<50', or give lloq and write BLQ (an empty "
                   "cell would make it a missing value)"),
    )
    not_censored = given & ~nd & ~pl.col("__blq") & ~pl.col("__point") & pl.col("__censor_limit").is_null()
    scores = pl.col("param").is_in(["ICE", "CAPD"])
    r.flag(
        not_censored & ~scores,
        "value_text",
        lambda v: (f"value_text {v!r} is not a censored result such as '<50' (a bound in the row's unit, "
                   f"no unit or word inside){number_hint(v)}; a measured number goes in value"),
    )
    r.flag(  # review 37 B5: ASTCT 2019 Table 4, ICE 0 "patient is unarousable and unable to perform ICE";
        # review 46 F5: footnote "Depressed level of consciousness should be attributable to no other cause
        # (eg, no sedating medication)" - a sedated patient is not recorded as unarousable
        not_censored & scores,
        "value_text",
        lambda v: (f"value_text {v!r} is not a censored result such as '<3' (a bound, no word inside)"
                   f"{number_hint(v)}; a measured score goes in value. An ICE/CAPD the patient could not "
                   "perform because of ICANS (unarousable): record ICE 0 with an LOC row 'unarousable' "
                   "(grade 4), or only the LOC row. Not evaluable for another reason (sedation, intubation; "
                   "ASTCT 2019: a depressed consciousness should be attributable to no other cause, eg no "
                   "sedating medication): leave the score and the LOC out (the day's grade is then a range "
                   "naming the missing score), or record the mechanical ventilation in interventions.csv "
                   "(o2_device mechanical_ventilation; option icans.ventilated_loc=range)"),
    )
    r.flag(
        given & pl.col("value").is_not_null() & pl.col("__censor_limit").is_not_null(),
        "value_text",
        lambda v: f"the row gives both value {v[0]} and value_text {v[1]!r}: give one of them",
        by=pl.concat_list(pl.col("value").cast(pl.String), pl.col("value_text")),
    )
    _flag_empty_score_bounds(r, d)
    r.df = r.df.drop("__blq", "__point")


def _flag_empty_score_bounds(r, d: Dictionary) -> None:
    """A censored bound of an integer score (ICE 0-10, CAPD 0-32: ASTCT 2019 Tables 3 and 5) that no
    score of its range satisfies ("<0", "<=-1", ">10"; CAPD ">40") is an error, as an impossible number
    is (review 39 B3): the engine would otherwise clip it onto the range's end, a score never
    recorded. A fractional bound that leaves scores ("<2.5": 0-2) is accepted."""
    lim, c = pl.col("__censor_limit"), pl.col("censor").fill_null("")
    for p in d.params.values():
        if not (p.integer and p.unitless and p.plausible):
            continue
        lo, hi = p.plausible
        top_int = pl.when(c == "<").then(lim.ceil() - 1).otherwise(lim.floor())   # "<3": 2, "<=2.5": 2
        low_int = pl.when(c == ">").then(lim.floor() + 1).otherwise(lim.ceil())   # ">7": 8, ">=6.5": 7
        empty = (pl.when(c.is_in(["<", "<="])).then(top_int < lo)
                 .when(c.is_in([">", ">="])).then(low_int > hi).otherwise(pl.lit(False)))
        r.flag(
            (pl.col("param") == p.code) & pl.col("value_text").is_not_null() & lim.is_not_null()
            & pl.col("value").is_null() & empty.fill_null(False),
            "value_text",
            lambda v, p=p, lo=lo, hi=hi: (f"{p.code} value_text {v!r} leaves no score in its range "
                                          f"[{lo:g}, {hi:g}]: {p.code} is a whole score from {lo:g} to {hi:g}, "
                                          "so the bound allows none (a bound such as '<3' is 0-2)"),
        )
