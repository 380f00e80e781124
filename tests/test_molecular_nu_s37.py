"""Session 37 (new-user review A1, C8): molecular results without `analyte`.

study-format v1: `analyte` is the "qualifier for molecular params". Without it two markers under one
param cannot be paired; TGTBLAST is the subject's target on blasts (subjects.target). Values by hand.
"""

from __future__ import annotations

import math

import polars as pl

from cartlab.io import read_study
from cartlab.response.molecular import derive_antigen_loss, derive_molecular_response


def _study(tmp_path, with_analyte: bool):
    (tmp_path / "subjects.csv").write_text("subject_id,disease,target\nS1,AML,CD7\n", encoding="utf-8")
    rows = [(-5, "TP53", 6.9), (-5, "RUNX1", 34.2), (29, "RUNX1", 0.2), (29, "TP53", 0.1)]
    lines = ["subject_id,day,param,analyte,value,unit,specimen"]
    lines += [f"S1,{d},MOLVAF,{a if with_analyte else ''},{v},%,BM" for d, a, v in rows]
    lines += ["S1,-5,TGTBLAST,,95,%,BM", "S1,29,TGTBLAST,,10,%,BM", "S1,29,BMBLAST,,40,%,BM"]
    (tmp_path / "observations.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return read_study(tmp_path)


def test_two_markers_without_analyte_are_not_paired(tmp_path):
    m = derive_molecular_response(_study(tmp_path, with_analyte=False))
    # RUNX1 34.2 / TP53 0.1 would give log10(342) = 2.53, a number about no marker: not computed
    assert m["rule"].to_list() == ["molecular.ambiguous_marker"] * 2
    assert m["log10_reduction"].null_count() == 2 and m["baseline"].null_count() == 2
    assert "no analyte" in m["reason"][0] and "give observations.csv analyte" in m["reason"][0]


def test_with_analyte_each_marker_against_its_own_baseline(tmp_path):
    m = derive_molecular_response(_study(tmp_path, with_analyte=True)).sort("analyte")
    # RUNX1 log10(34.2 / 0.2) = 2.233; TP53 log10(6.9 / 0.1) = 1.839
    got = dict(zip(m["analyte"], m["log10_reduction"]))
    assert math.isclose(got["RUNX1"], math.log10(34.2 / 0.2), rel_tol=1e-6)
    assert math.isclose(got["TP53"], math.log10(6.9 / 0.1), rel_tol=1e-6)


def test_antigen_without_analyte_is_the_subjects_target(tmp_path):
    a = derive_antigen_loss(_study(tmp_path, with_analyte=False))
    assert a.filter(pl.col("day") == 29)["antigen"].to_list() == ["CD7"]
