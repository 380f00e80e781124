"""Session 43: ``cartlab nca --blq-first/--blq-middle/--blq-last`` (PKNCA conc.blq first/middle/last).

Hand-computed (lin-up/log-down, interval 0-inf) on A: t 0 1 2 4 8 12, c <1 10 <1 5 2 <1.
- defaults (first keep as 0, middle drop, last keep as 0): 0-1 linear (0+10)/2 = 5; 1-4 log down
  (10-5)*3/ln(10/5) = 21.6404; 4-8 log down (5-2)*4/ln(5/2) = 13.0963 -> auclast 39.7367; aucall adds the
  triangle 8-12 to 0: (2+0)/2*4 = 4 -> 43.7367; 5 samples.
- --blq-middle keep: the day-2 BLQ is 0: 0-1 5; 1-2 linear down to 0 (log impossible) 5; 2-4 linear up
  5; 4-8 13.0963 -> auclast 28.0963; 6 samples.
- --blq-middle 1: the day-2 BLQ is 1: 0-1 5; 1-2 log down (10-1)*1/ln(10) = 3.9087; 2-4 linear up
  (1+5)/2*2 = 6; 4-8 13.0963 -> 28.0050.
"""

from __future__ import annotations

import csv
import math

import pytest
from typer.testing import CliRunner

from cartlab.cli import app

ROWS = "id,t,c\nA,0,<1\nA,1,10\nA,2,<1\nA,4,5\nA,8,2\nA,12,<1\n"


def _nca(tmp_path, *flags):
    src = tmp_path / "conc.csv"
    src.write_text(ROWS)
    out = tmp_path / "nca.csv"
    res = CliRunner().invoke(app, ["nca", str(src), "--subject-col", "id", "--time-col", "t", "--conc-col", "c",
                                   "--out", str(out), "--force", *flags], env={"COLUMNS": "200"})
    return res, (next(csv.DictReader(out.open())) if res.exit_code == 0 else None)


@pytest.mark.parametrize(("flags", "n", "auclast", "aucall"), [
    ((), 5, 5 + 15 / math.log(2) + 12 / math.log(2.5), 5 + 15 / math.log(2) + 12 / math.log(2.5) + 4),
    (("--blq-middle", "keep"), 6, 15 + 12 / math.log(2.5), 15 + 12 / math.log(2.5) + 4),
    (("--blq-middle", "1"), 6, 5 + 9 / math.log(10) + 6 + 12 / math.log(2.5), None),
])
def test_blq_flags_change_the_auc_as_by_hand(tmp_path, flags, n, auclast, aucall):
    res, row = _nca(tmp_path, *flags)
    assert res.exit_code == 0, res.output
    assert int(row["n_samples"]) == n
    assert float(row["auclast"]) == pytest.approx(auclast, rel=1e-9)
    if aucall is not None:
        assert float(row["aucall"]) == pytest.approx(aucall, rel=1e-9)


def test_blq_first_drop_leaves_no_sample_at_the_start(tmp_path):
    res, row = _nca(tmp_path, "--blq-first", "drop")
    assert res.exit_code == 0, res.output
    assert int(row["n_samples"]) == 4 and row["auclast"] == "" and "auc_before_first" in row["warnings"]


@pytest.mark.parametrize("bad", ["maybe", "-1", "inf", ""])
def test_a_bad_rule_is_one_usage_error_naming_the_flag(tmp_path, bad):
    res, _ = _nca(tmp_path, "--blq-last", bad)
    assert res.exit_code == 2 and "--blq-last" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "nca.csv").exists()
