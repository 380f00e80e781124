"""Molecular log reduction compares a follow-up with a baseline of the same specimen; target-antigen
loss reads a censored result by its bound (session 33).

Expected values by hand: log10(baseline / follow-up).
"""

from __future__ import annotations

import math

import pytest

from cartlab.io import read_study
from cartlab.response.molecular import MolecularOptions, derive_antigen_loss, derive_molecular_response


def _study(tmp_path, rows):
    d = tmp_path / "s"
    d.mkdir()
    (d / "subjects.csv").write_text("subject_id,last_followup_day\nS,60\n")
    (d / "doses.csv").write_text("subject_id,day,agent,dose,unit\nS,0,CAR-T,1,cells\n")
    (d / "observations.csv").write_text("subject_id,day,param,analyte,value,unit,specimen\n" + "".join(
        f"S,{day},MOLAR,FLT3-ITD,{v},%,{sp}\n" for day, v, sp in rows))
    return read_study(d)


def test_blood_followup_takes_the_blood_baseline(tmp_path):
    """BM 50% (day -10) and PB 5% (day -7) before; PB 0.5% on day 28 -> log10(5 / 0.5) = 1.0 from
    the blood baseline (not log10(50 / 0.5) = 2.0 from the marrow, nor the last-of-any 5%)."""
    s = _study(tmp_path, [(-10, 50, "BM"), (-7, 5, "PB"), (28, 0.5, "PB"), (28, 10, "BM")])
    f = derive_molecular_response(s).sort("specimen")
    bm, pb = f.row(0, named=True), f.row(1, named=True)
    assert (pb["specimen"], pb["baseline"], pb["log10_reduction"]) == ("PB", 5.0, pytest.approx(1.0))
    # marrow day 28: 10% against the marrow baseline 50% -> log10(5) = 0.699 (not log10(5 / 10) < 0)
    assert (bm["specimen"], bm["baseline"], bm["log10_reduction"]) == ("BM", 50.0, pytest.approx(math.log10(5)))


def test_no_baseline_in_the_followup_specimen(tmp_path):
    """Only a marrow baseline; a blood follow-up: no reduction, and the reason names the marrow."""
    s = _study(tmp_path, [(-7, 50, "BM"), (28, 0.5, "PB")])
    r = derive_molecular_response(s).row(0, named=True)
    assert r["rule"] == "molecular.no_baseline" and r["log10_reduction"] is None
    assert "in PB" in r["reason"] and "only in BM" in r["reason"]


def test_option_compares_across_specimens(tmp_path):
    """same_specimen=False: the last result before day 0 whatever its specimen (BM 50%) ->
    log10(50 / 0.5) = 2.0."""
    s = _study(tmp_path, [(-7, 50, "BM"), (28, 0.5, "PB")])
    r = derive_molecular_response(s, MolecularOptions(same_specimen=False)).row(0, named=True)
    assert r["log10_reduction"] == pytest.approx(2.0)


def test_rows_without_specimen_still_pair(tmp_path):
    """A study without specimens: baseline 59.4 (day -7), 5.94 on day 17 -> exactly 1.0."""
    s = _study(tmp_path, [(-7, 59.4, ""), (17, 5.94, "")])
    r = derive_molecular_response(s).row(0, named=True)
    assert r["log10_reduction"] == pytest.approx(1.0)


def _antigen_study(tmp_path, rows, name="a"):
    d = tmp_path / name
    d.mkdir()
    (d / "subjects.csv").write_text("subject_id,last_followup_day\nS,60\n")
    (d / "doses.csv").write_text("subject_id,day,agent,dose,unit\nS,0,CAR-T,1,cells\n")
    (d / "observations.csv").write_text("subject_id,day,param,analyte,value,value_text,unit,specimen\n" + "".join(
        f"S,{day},{p},{a},{v},{t},%,BM\n" for day, p, a, v, t in rows))
    return read_study(d)


def test_censored_antigen_result_is_read_by_its_bound(tmp_path):
    """CD7 on 95.6% of blasts before; "<1" on day 28 (CD7-negative by flow) with marrow blasts 20%:
    below the 30% cut-off from at or above it -> antigen loss, with a relapse marrow (20 >= 5)."""
    s = _antigen_study(tmp_path, [(-7, "TGTBLAST", "CD7", "95.6", ""), (28, "TGTBLAST", "CD7", "", "<1"),
                                  (28, "BMBLAST", "", "20", "")])
    r = derive_antigen_loss(s).row(0, named=True)
    assert (r["below_cutoff"], r["antigen_loss"], r["rule"], r["pct"], r["pct_censored"]) == (
        True, True, "antigen.loss", None, "<1")
    assert r["with_relapse_marrow"] is True and "<1%" in r["reason"]


def test_unsettled_censored_antigen_result(tmp_path):
    """"<50" against 30%: could be 40 (retained) or 10 (below): undetermined, loss empty."""
    s = _antigen_study(tmp_path, [(-7, "TGTBLAST", "CD7", "95.6", ""), (28, "TGTBLAST", "CD7", "", "<50")])
    r = derive_antigen_loss(s).row(0, named=True)
    assert (r["below_cutoff"], r["antigen_loss"], r["rule"]) == (None, None, "antigen.undetermined")


def test_censored_pre_treatment_antigen(tmp_path):
    """Pre-treatment ">90" (not below 30) and 10% on day 28 -> a loss; pre-treatment "<40" and 10%
    on day 28 -> unsettled baseline: undetermined."""
    s = _antigen_study(tmp_path, [(-7, "TGTBLAST", "CD7", "", ">90"), (28, "TGTBLAST", "CD7", "10", "")])
    r = derive_antigen_loss(s).row(0, named=True)
    assert (r["antigen_loss"], r["rule"], r["pre_pct_censored"]) == (True, "antigen.loss", ">90")
    s = _antigen_study(tmp_path, [(-7, "TGTBLAST", "CD7", "", "<40"), (28, "TGTBLAST", "CD7", "10", "")], "b")
    r = derive_antigen_loss(s).row(0, named=True)
    assert (r["antigen_loss"], r["rule"]) == (None, "antigen.undetermined")
