"""IEC-HS (Hines 2023, research notes §3.4): a flag raised only because the cytopenia proxy
(cartlab's operationalisation of "new or worsening cytopenias", status proxy) supplies the supporting
criterion says so in its reason (session 34, review 33 finding 7). Expectations by hand."""

from __future__ import annotations

import polars as pl

from cartlab.grading.iec_hs import IecHsOptions, derive_iec_hs_flags
from cartlab.io import read_study


def _study(tmp_path, name, rows):
    d = tmp_path / name
    d.mkdir()
    (d / "subjects.csv").write_text("subject_id,last_followup_day\nS,30\n")
    (d / "doses.csv").write_text("subject_id,day,agent,dose,unit\nS,0,CAR-T,1,cells\n")
    (d / "observations.csv").write_text("subject_id,day,param,value,unit,uln\n" + "".join(rows))
    return read_study(d)


BASE = ["S,-5,FERRITIN,200,ug/L,400\n", "S,-5,PLAT,150,10^9/L,\n", "S,-5,ALT,20,U/L,40\n"]


def test_flag_via_the_cytopenia_proxy_alone_is_named(tmp_path):
    """Day 5: ferritin 1000 > 2 x ULN 400 = 800 (key met); platelets 50 < 100 and < baseline 150
    (proxy met); ALT 30 < 5 x 40 = 200 (not met): one supporting criterion, and only the proxy ->
    flagged, and the reason says the proxy made it. Without the proxy the flag is unknown, not
    false: fibrinogen and AST are not measured, so hypofibrinogenemia or the transaminases could still
    supply the criterion."""
    s = _study(tmp_path, "p", BASE + ["S,5,FERRITIN,1000,ug/L,400\n", "S,5,PLAT,50,10^9/L,\n", "S,5,ALT,30,U/L,40\n"])
    r = derive_iec_hs_flags(s).filter(pl.col("day") == 5).row(0, named=True)
    assert r["iec_hs_flag"] is True
    assert r["supporting_met"] == ["iec_hs.cytopenia_new_or_worse"]
    assert "Met via the proxy criterion (iec_hs.cytopenia_new_or_worse" in r["reason"]
    r2 = derive_iec_hs_flags(s, IecHsOptions(exclude=("iec_hs.cytopenia_new_or_worse",))).filter(
        pl.col("day") == 5).row(0, named=True)
    assert r2["iec_hs_flag"] is None and r2["not_evaluable"] == ["iec_hs.transaminases_gt_5x", "iec_hs.hypofibrinogenemia"]


def test_flag_with_a_direct_supporting_criterion_does_not_name_the_proxy(tmp_path):
    """Day 5: ALT 250 > 5 x 40 = 200 with a normal baseline (20 <= 40): transaminases met, so the
    flag stands without the proxy (met too) -> no proxy sentence."""
    s = _study(tmp_path, "d", BASE + ["S,5,FERRITIN,1000,ug/L,400\n", "S,5,PLAT,50,10^9/L,\n", "S,5,ALT,250,U/L,40\n"])
    r = derive_iec_hs_flags(s).filter(pl.col("day") == 5).row(0, named=True)
    assert r["iec_hs_flag"] is True
    assert set(r["supporting_met"]) == {"iec_hs.transaminases_gt_5x", "iec_hs.cytopenia_new_or_worse"}
    assert "proxy criterion" not in r["reason"]
