"""``aucint.all`` (PKNCA ``aucint.all``, session 44) and the CAR-T engine's ``auc_window``: the docs
say ``car_auc_0_28`` equals ``cartlab nca``'s ``aucint.all`` over 0-28 when a BLQ sample follows the
last quantifiable one (the curve goes linearly to that 0). Expected values by hand."""

from __future__ import annotations

import math

import polars as pl

from cartlab.io import read_study
from cartlab.kinetics.car import derive_car_kinetics
from cartlab.kinetics.nca import NcaOptions, nca_profile
from conftest import write


def _study(tmp_path):
    f = tmp_path / "s"
    write(f, "subjects.csv", "subject_id,disease,target\nA,AML,CD7")
    write(f, "doses.csv", "subject_id,day,agent,dose,unit\nA,0,CAR-T,1e6,cells/kg")
    # quantifiable on days 7, 14, 21 (linear up, log down 14 -> 21), BLQ on days 25 and 40
    write(f, "observations.csv", """
subject_id,day,param,value,value_text,unit,lloq
A,7,CARCOPY,1000,,copies/ug gDNA,50
A,14,CARCOPY,8000,,copies/ug gDNA,50
A,21,CARCOPY,2000,,copies/ug gDNA,50
A,25,CARCOPY,,<50,copies/ug gDNA,50
A,40,CARCOPY,,<50,copies/ug gDNA,50
""")
    return read_study(f)


def test_car_auc_0_28_is_nca_aucint_all_when_a_blq_follows_tlast(tmp_path):
    # by hand: 0 -> 7 linear 7 * 1000 / 2; 7 -> 14 linear up 7 * 9000 / 2; 14 -> 21 log down
    # 7 * 6000 / ln 4; 21 -> 25 the triangle 4 * 2000 / 2; then 0 to day 28
    expected = 3500 + 31500 + 7 * 6000 / math.log(4) + 4000
    kin = derive_car_kinetics(_study(tmp_path))
    assert math.isclose(kin["auc_window"][0], expected, rel_tol=1e-12)
    r = nca_profile([0, 7, 14, 21, 25, 40], [0, 1000, 8000, 2000, 0, 0], intervals=[(0, 28)],
                    options=NcaOptions()).row(0, named=True)
    assert math.isclose(r["aucint.all"], expected, rel_tol=1e-12)
    # aucint.last stops at day 21; aucint takes the lambda.z tail (none: the BLQ samples are not on it)
    assert math.isclose(r["aucint.last"], expected - 4000, rel_tol=1e-12)


def test_cli_nca_writes_aucint_all(tmp_path):
    from test_cli import run_here

    p = write(tmp_path, "conc.csv", "subject_id,time,conc\nS,0,0\nS,1,8\nS,2,4\nS,6,0")
    out = tmp_path / "nca.csv"
    r = run_here("nca", str(p), "--subject-col", "subject_id", "--time-col", "time", "--conc-col", "conc",
                 "--out", str(out), "--method", "linear", "--interval", "0,3")
    assert r.returncode == 0, r.stdout + r.stderr
    row = pl.read_csv(out).row(0, named=True)
    # 0 -> 1: 4, 1 -> 2: 6, 2 -> 3 on the line 4 (6 - t) / 4: (4 + 3) / 2
    assert math.isclose(row["aucint.all"], 13.5) and math.isclose(row["aucint.last"], 10.0)
