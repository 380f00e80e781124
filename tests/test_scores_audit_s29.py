"""IEC-HS and count-recovery fixes from the session-29 differential audit
(fixtures tests/fixtures/scores_s29, each README has the hand derivation)."""
from __future__ import annotations

from pathlib import Path

import polars as pl

from cartlab.grading.hematotox import derive_count_recovery
from cartlab.grading.iec_hs import derive_iec_hs_flags
from cartlab.io import read_study

FIX = Path(__file__).parent / "fixtures" / "scores_s29"


def test_iec_hs_reads_each_value_against_its_own_uln():
    """Day 5, baseline ferritin 2000 (so "> 2 x baseline" fails), ANC 0.3 (cytopenia met).
    B1: 700 (no ULN) and 3000 (ULN 400): 3000 > 2 x 400 -> flag true.
    B2: 600 (ULN 400) and 900 (no ULN): 600 < 800, 900 undecided -> flag empty (not evaluable).
    B3: 900 (no ULN) only -> empty. Spec: "lln, uln: reference range, in the row's unit"."""
    f = derive_iec_hs_flags(read_study(FIX / "iec_uln_other_row")).filter(pl.col("day") == 5)
    flag = dict(f.select("subject_id", "iec_hs_flag").iter_rows())
    assert flag == {"B1": True, "B2": None, "B3": None}


def test_a_run_possible_before_the_measured_nadir_leaves_recovery_open():
    """ANC 2.0 d0, 0.4 d1, - d2, 0.6 d3, - d4, 0.1 d5, 1.0 d6-15 (threshold 0.5, 3 days): if days 2
    and 4 were >= 0.5, days 2-4 recover the first episode (nadir 0.4) on day 2; the first measured run
    is days 6-8. count_recovery.yaml: such a run "makes the recovery day not evaluable, a range from
    the earliest such run to the first complete run" -> not_evaluable, 2-6."""
    r = derive_count_recovery(read_study(FIX / "recovery_prenadir_run")).row(0, named=True)
    assert r["neutrophil_recovery_status"] == "not_evaluable"
    assert (r["neutrophil_recovery_day_min"], r["neutrophil_recovery_day_max"]) == (2.0, 6.0)
    assert r["neutrophil_recovery_day"] is None
