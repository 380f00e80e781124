"""Time-to-event fixes from the session-29 differential audit (fixtures: tests/fixtures/survival_s29).

Expected values are derived by hand from ELN 2022 (Table 9 endpoints, Table 7 relapse), the study
format spec ("Days are calendar days") and R's survival package (quantile.survfit midpoint rule).
"""
from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from cartlab.analyze import Analysis
from cartlab.io import read_study
from cartlab.response.endpoints import km_estimate

FIX = Path(__file__).parent / "fixtures" / "survival_s29"


def _tables(case: str):
    a = Analysis(read_study(FIX / case))
    return a.table("best_response"), a.table("adtte")


def _row(adtte: pl.DataFrame, sid: str, p: str) -> dict:
    return adtte.filter((pl.col("subject_id") == sid) & (pl.col("PARAMCD") == p)).row(0, named=True)


def test_remission_after_new_therapy_is_not_the_car_ts():
    """S1: NR on day 28, new therapy day 40, CR day 60 -> best response NR (assessments after the end
    event not counted), so EFS is a treatment failure at day 0 and RFS/LFS/CIR are not defined (ELN
    Table 9: RFS/CIR only for patients achieving CR/CRh/CRi). S2: allo-HSCT day 50, CR day 90, no
    assessment before -> best response NE; EFS censored at day 0 (alive, not evaluable)."""
    best, adtte = _tables("c01_remission_after_new_therapy")
    b = dict(best.select("subject_id", "best_response").iter_rows())
    assert b == {"S1": "NR", "S2": "NE"}
    efs = _row(adtte, "S1", "EFS")
    assert (efs["AVAL"], efs["CNSR"], efs["EVNTDESC"]) == (0.0, 0, "TREATMENT FAILURE")
    for p in ("RFS", "LFS", "CIR"):
        assert _row(adtte, "S1", p)["ANLFL"] is None and _row(adtte, "S2", p)["ANLFL"] is None
    efs2 = _row(adtte, "S2", "EFS")
    assert (efs2["AVAL"], efs2["CNSR"]) == (0.0, 1)


def test_emd_window_counts_calendar_days_for_datetimes():
    """Marrow on calendar day 14 (09:00), EMD event on calendar day 17 (22:00): within the +3-day
    window, so the marrow is "with EMD" and not CR -> NR, as for the same facts in day numbers (D1)."""
    best, adtte = _tables("c02_datetime_emd_window")
    assert dict(best.select("subject_id", "best_response").iter_rows()) == {"D1": "NR", "D2": "NR"}
    for sid in ("D1", "D2"):
        efs = _row(adtte, sid, "EFS")
        assert (efs["AVAL"], efs["CNSR"]) == (0.0, 0)


def test_competing_death_is_cnsr_2_in_the_analysis_table():
    """C1: CR day 28, death day 60 -> CIR AVAL 32 (60 - 28), EVENT 2 (competing), CNSR 2 (as the ADaM
    export, docs/interop/adam.md: 2 = competing event); C2's relapse on day 90: EVENT 1, CNSR 0."""
    _, adtte = _tables("c03_cir_cnsr_coding")
    c1 = _row(adtte, "C1", "CIR")
    assert (c1["AVAL"], c1["EVENT"], c1["CNSR"]) == (32.0, 2, 2)
    c2 = _row(adtte, "C2", "CIR")
    assert (c2["AVAL"], c2["EVENT"], c2["CNSR"]) == (62.0, 1, 0)
    with pytest.raises(ValueError, match="competing event"):
        km_estimate(adtte, "CIR")


def test_emd_relapse_is_dated_on_the_event():
    """CR day 28; marrow day 180 with 2% blasts; EMD event day 182 (within the marrow's window): the
    relapse is the EMD on day 182 (ELN Table 7 "development of extramedullary disease"), not the
    earlier marrow day -> RFS 182 - 28 = 154, EFS 182."""
    best, adtte = _tables("c04_emd_after_marrow_date")
    assert best.row(0, named=True)["relapse_day"] == 182.0
    assert _row(adtte, "E1", "RFS")["AVAL"] == 154.0
    assert _row(adtte, "E1", "EFS")["AVAL"] == 182.0


def test_km_median_on_an_exact_half_is_the_midpoint():
    """Deaths on days 10, 20, 30, one censored at 40: S = 3/4, 1/2, 1/4; S = 0.5 exactly on [20, 30)
    -> median (20 + 30) / 2 = 25 (R quantile.survfit: "the usual midpoint rule used for medians")."""
    a = Analysis(read_study(FIX / "c05_median_plateau"))
    m = a.table("km_median").filter(pl.col("PARAMCD") == "OS").row(0, named=True)
    assert m["median"] == 25.0


def test_km_median_flat_at_the_end_uses_the_last_time():
    """S = 0.5 from day 20 to the last time (a censoring at 50): R takes (20 + 50) / 2 = 35."""
    from cartlab.response.endpoints import median_survival

    t = pl.DataFrame({"PARAMCD": ["OS"] * 4, "AVAL": [10.0, 20.0, 50.0, 50.0], "CNSR": [0, 0, 1, 1]})
    # S(10) = 3/4, S(20) = 3/4 * 2/3 = 1/2, then only censorings
    assert median_survival(t, "OS").row(0, named=True)["median"] == 35.0


def test_bridging_new_therapy_before_day_0_ends_nothing():
    """new_therapy on day -10 (bridging) and a CR marrow on day 28: best response CR on day 28 (an
    end event counts from day 0 on, as the late ICAHT window and ADTTE already read events)."""
    best, adtte = _tables("c06_bridging_before_day0")
    r = best.row(0, named=True)
    assert (r["best_response"], r["best_response_day"]) == ("CR", 28.0)
    assert _row(adtte, "B1", "RFS")["ANLFL"] == "Y"
