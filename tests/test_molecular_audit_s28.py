"""Molecular response and target-antigen audit, session 28 (notes/audit_hemmol/REPORT.md), findings
1, 2, 3, 4, 5 and 8: censored molecular results ("<x") as bounds, the baseline is the last result
before day 0 even when censored, a value below its LLOQ is censored at the LLOQ, an absent marrow
never reads as "no relapse marrow", and antigen "loss" needs the antigen at or above the cut-off
before treatment.

Every expected value is derived by hand in a comment from the rule it follows:
- research note grading.md §4.1 (quoted in cartlab.response.molecular): "log10 reduction =
  log10(baseline / follow-up)";
- cartlab docs: the baseline of a marker "is its last value before day 0";
- study-format v1, observations: value_text holds "a censored result such as `<50`"; Cellular
  kinetics: BLQ is "a `<x` in `value_text`, or a value below `lloq`";
- the project rule: "Missing is not negative: an absent input never silently reads as false or
  normal";
- NCT04762485 eligibility (the default cut-off): "CD7 > 30% of blasts by flow"; a relapse marrow
  has blasts >= 5% (ELN 2022).
Studies that need the reader (value_text "<x" parsed into censor / censor_limit, units converted)
are written as study folders in tmp_path.
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from cartlab.criteria import rule_status
from cartlab.io import read_study
from cartlab.response import derive_antigen_loss, derive_molecular_response
from cartlab.response.molecular import MolecularOptions
from test_response import make

HEAD = "subject_id,day,param,analyte,value,value_text,unit,lloq,specimen\n"


def _study(tmp_path: Path, rows: str):
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "subjects.csv").write_text("subject_id,disease\nA1,AML\n", encoding="utf-8")
    (folder / "observations.csv").write_text(HEAD + rows, encoding="utf-8")
    return read_study(folder)


def _row(frame: pl.DataFrame, **where) -> dict:
    rows = frame.filter(**where).rows(named=True)
    assert len(rows) == 1, (where, frame)
    return rows[0]


# ---------------------------------------------------------------------------------------------
# molecular response


def test_censored_follow_up_is_a_lower_bound_not_a_dropped_row(tmp_path):
    # finding 1: FLT3-ITD 40% on day -3, "<0.01" % on day 56. The true value is below 0.01, so
    # log10(40 / value) > log10(40 / 0.01) = log10(4000) = 3.602: "at least" 3.60, no exact number.
    s = _study(tmp_path, "A1,-3,MOLVAF,FLT3-ITD,40,,%,,BM\nA1,56,MOLVAF,FLT3-ITD,,<0.01,%,,BM\n")
    r = _row(derive_molecular_response(s), day=56.0)
    assert r["log10_reduction"] is None and r["fold_reduction"] is None
    assert r["log10_reduction_at_least"] == pytest.approx(math.log10(4000))
    assert r["log10_reduction_at_most"] is None
    assert (r["value"], r["value_censored"], r["baseline"], r["baseline_day"]) == (None, "<0.01", 40.0, -3.0)
    assert r["rule"] == "molecular.followup_censored" and ">= log10(40 / 0.01) = 3.60" in r["reason"]


def test_censored_follow_up_in_a_fraction_is_bounded_in_percent(tmp_path):
    # the marker's canonical unit is % (study-format: MOLVAF "%"): "<0.0001" as a fraction is <0.01 %,
    # so against 40% the reduction is at least log10(40 / 0.01) = 3.602, as above
    s = _study(tmp_path, "A1,-3,MOLVAF,FLT3-ITD,40,,%,,BM\nA1,56,MOLVAF,FLT3-ITD,,<0.0001,fraction,,BM\n")
    r = _row(derive_molecular_response(s), day=56.0)
    assert r["log10_reduction_at_least"] == pytest.approx(math.log10(4000)) and r["value_censored"] == "<0.01"


def test_censored_baseline_is_the_baseline_and_gives_an_upper_bound(tmp_path):
    # finding 2: IDH1 40% on day -30, "<0.01" % on day -2, 0.4% on day 28. The baseline "is its last
    # value before day 0": "<0.01" on day -2, not 40 on day -30. Baseline below 0.01, follow-up 0.4:
    # log10(baseline / 0.4) < log10(0.01 / 0.4) = log10(0.025) = -1.602, i.e. at most -1.60 (a rise
    # of at least 40-fold), never the 2.00 that the day -30 value would give.
    s = _study(tmp_path, "A1,-30,MOLVAF,IDH1,40,,%,,BM\nA1,-2,MOLVAF,IDH1,,<0.01,%,,BM\n"
                         "A1,28,MOLVAF,IDH1,0.4,,%,,BM\n")
    r = _row(derive_molecular_response(s), day=28.0)
    assert (r["baseline_day"], r["baseline"]) == (-2.0, None) and r["baseline_censored"] == "<0.01"
    assert r["log10_reduction"] is None and r["fold_reduction"] is None and r["log10_reduction_at_least"] is None
    assert r["log10_reduction_at_most"] == pytest.approx(math.log10(0.025))
    assert r["rule"] == "molecular.baseline_censored" and "40-fold" in r["reason"]


def test_censored_baseline_is_not_reported_as_no_baseline(tmp_path):
    # finding 3: TP53del "<1" % on day -4 (measured, below 1), 5% on day 28: at most
    # log10(1 / 5) = -0.699; the reason names the censored baseline, not "no value before day 0"
    s = _study(tmp_path, "A1,-4,FISHPCT,TP53del,,<1,%,,BM\nA1,28,FISHPCT,TP53del,5,,%,,BM\n")
    r = _row(derive_molecular_response(s), day=28.0)
    assert r["rule"] == "molecular.baseline_censored" and r["rule"] != "molecular.no_baseline"
    assert r["log10_reduction_at_most"] == pytest.approx(math.log10(0.2))
    assert "<1" in r["reason"] and "no value before day" not in r["reason"]


def test_value_below_its_lloq_is_censored_at_the_lloq():
    # finding 8: KIT 10% on day -3; 0.0005% with lloq 0.001 on day 28. BLQ is "a value below `lloq`"
    # (study-format, kinetics), so the value is only known to be below 0.001: at least
    # log10(10 / 0.001) = 4.00, not the exact log10(10 / 0.0005) = 4.30.
    s = make([{"day": -3.0, "param": "MOLVAF", "analyte": "KIT", "value": 10.0},
              {"day": 28.0, "param": "MOLVAF", "analyte": "KIT", "value": 0.0005, "lloq": 0.001}])
    r = _row(derive_molecular_response(s), day=28.0)
    assert r["log10_reduction"] is None and r["fold_reduction"] is None
    assert r["log10_reduction_at_least"] == pytest.approx(4.0)
    assert r["rule"] == "molecular.below_lloq" and "LLOQ" in r["reason"] and r["value_censored"] == "<0.001"
    # a value at its LLOQ is quantified: log10(10 / 0.001) = 4.00 exactly
    at = make([{"day": -3.0, "param": "MOLVAF", "analyte": "KIT", "value": 10.0},
               {"day": 28.0, "param": "MOLVAF", "analyte": "KIT", "value": 0.001, "lloq": 0.001}])
    assert _row(derive_molecular_response(at), day=28.0)["log10_reduction"] == pytest.approx(4.0)


def test_baseline_below_its_lloq_is_an_upper_bound():
    # same BLQ rule on the baseline side: 0.0005 with lloq 0.001 on day -3 is "below 0.001"; 0.1 on
    # day 28 gives at most log10(0.001 / 0.1) = -2.00 (the old code: exact log10(0.0005 / 0.1) = -2.30)
    s = make([{"day": -3.0, "param": "MOLVAF", "analyte": "KIT", "value": 0.0005, "lloq": 0.001},
              {"day": 28.0, "param": "MOLVAF", "analyte": "KIT", "value": 0.1}])
    r = _row(derive_molecular_response(s), day=28.0)
    assert r["log10_reduction"] is None and r["log10_reduction_at_most"] == pytest.approx(-2.0)
    assert r["rule"] == "molecular.baseline_censored" and r["baseline_censored"] == "<0.001"


def test_both_censored_gives_no_number_and_says_why(tmp_path):
    # baseline "<1", follow-up "<0.5": both below a limit, so the ratio can be anything: no exact
    # reduction and no bound, but a row (the result is not dropped) with the reason
    s = _study(tmp_path, "A1,-4,FISHPCT,TP53del,,<1,%,,BM\nA1,28,FISHPCT,TP53del,,<0.5,%,,BM\n")
    r = _row(derive_molecular_response(s), day=28.0)
    assert (r["log10_reduction"], r["log10_reduction_at_least"], r["log10_reduction_at_most"]) == (None, None, None)
    assert r["rule"] == "molecular.both_censored" and "no bound" in r["reason"]


def test_new_rule_ids_have_a_row_and_status():
    # every rule id written in a table is a row of a criteria table with a status
    # (docs/derivation-conventions.md "Rules that are cartlab conventions")
    for rid in ("molecular.followup_censored", "molecular.below_lloq", "molecular.baseline_censored",
                "molecular.both_censored", "molecular.not_numeric", "antigen.low_at_baseline",
                "antigen.no_baseline"):
        assert rule_status(rid) == "convention", rid


# ---------------------------------------------------------------------------------------------
# target antigen


def test_no_marrow_that_day_leaves_the_relapse_link_unknown():
    # finding 4: CD7 95% on day -7, 10% on day 90 and no BMBLAST on day 90: a loss (95 >= 30, 10 < 30),
    # but whether it came with a relapse marrow (blasts >= 5%) is unknown: empty, naming BMBLAST.
    # With BMBLAST 2% the same day it is known: not a relapse marrow (false).
    s = make([(-7, "TGTBLAST", 95.0, "CD7"), (90, "TGTBLAST", 10.0, "CD7"),
              (120, "TGTBLAST", 12.0, "CD7"), (120, "BMBLAST", 2.0)])
    a = derive_antigen_loss(s)
    r = _row(a, day=90.0)
    assert r["antigen_loss"] is True and r["with_relapse_marrow"] is None and "BMBLAST" in r["reason"]
    assert _row(a, day=120.0)["with_relapse_marrow"] is False


def test_antigen_low_before_treatment_is_not_a_loss():
    # finding 5: CD7 20% on day -7 (already below the 30% cut-off, "CD7 > 30% of blasts"), 15% on
    # day 28: antigen-low at baseline, not a loss. A pre-treatment value exactly at the cut-off (30%)
    # is not "> 30%" (NCT04762485 eligibility; session 39 A4), so 30 -> 20 is antigen-low at baseline;
    # with antigen_positive_inclusive=True (30% counts as positive) it is a loss.
    low = derive_antigen_loss(make([(-7, "TGTBLAST", 20.0, "CD7"), (28, "TGTBLAST", 15.0, "CD7"),
                                    (28, "BMBLAST", 1.0)]))
    r = _row(low, day=28.0)
    assert (r["rule"], r["antigen_loss"]) == ("antigen.low_at_baseline", False) and r["below_cutoff"] is True
    assert "not a loss" in r["reason"]
    edge = _row(derive_antigen_loss(make([(-7, "TGTBLAST", 30.0, "CD7"), (28, "TGTBLAST", 20.0, "CD7")])),
                day=28.0)
    assert (edge["rule"], edge["antigen_loss"]) == ("antigen.low_at_baseline", False)
    edge = _row(derive_antigen_loss(make([(-7, "TGTBLAST", 30.0, "CD7"), (28, "TGTBLAST", 20.0, "CD7")]),
                                    MolecularOptions(antigen_positive_inclusive=True)), day=28.0)
    assert (edge["rule"], edge["antigen_loss"]) == ("antigen.loss", True)


def test_antigen_below_cutoff_without_a_baseline_is_not_called_a_loss():
    # finding 5: CD7 15% on day 28 and no TGTBLAST before day 0: loss or low from the start cannot be
    # told, so antigen_loss is empty (not true), and the reason says there is no pre-treatment value
    r = _row(derive_antigen_loss(make([(28, "TGTBLAST", 15.0, "CD7"), (28, "BMBLAST", 40.0)])), day=28.0)
    assert (r["rule"], r["antigen_loss"]) == ("antigen.no_baseline", None) and r["below_cutoff"] is True
    assert r["with_relapse_marrow"] is True and "no pre-treatment" in r["reason"]
