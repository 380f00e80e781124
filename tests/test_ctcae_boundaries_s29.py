"""CTCAE v5 multiples of ULN on the bound, given in mg/dL (session 29 differential audit,
/work/notes/audit_diffctcae/cases/F5b_bili_mgdl_exact_multiples): the value and its ULN are converted
to umol/L and stored at 12 significant digits separately, so "3.0 x ULN" could compare above the
converted bound at admiral's 15 digits. Hand: Blood bilirubin increased (normal baseline) G1 >ULN-1.5
x ULN, G2 >1.5-3.0 x ULN, G3 >3.0-10.0 x ULN (CTCAE v5.0)."""
import polars as pl
import pytest

from cartlab.grading.ctcae import derive_ctcae
from cartlab.io import read_study

ROWS = [(1.8, 1.2, 1), (3.6, 1.2, 2), (12, 1.2, 3), (0.75, 0.5, 1), (1.5, 0.5, 2), (1.65, 1.1, 1), (3.3, 1.1, 2),
        (0.78, 0.52, 1), (1.62, 0.54, 2)]


@pytest.mark.filterwarnings("ignore")
def test_bilirubin_in_mg_dl_on_a_multiple_of_uln(tmp_path):
    (tmp_path / "subjects.csv").write_text("subject_id\nC1\n")
    (tmp_path / "observations.csv").write_text("subject_id,day,param,value,unit,lln,uln\n" + "".join(
        f"C1,{i + 1},BILI,{v},mg/dL,0.1,{u}\n" for i, (v, u, _) in enumerate(ROWS)))
    d = derive_ctcae(read_study(tmp_path)).filter(pl.col("param") == "BILI").sort("day")
    assert d["ATOXGRH"].to_list() == [g for *_, g in ROWS]
