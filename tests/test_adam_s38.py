"""Session 38 (review 38, ADaM): TRT01A in TRT01P's terms, ADLB/ADPP AVALC, 15-digit derived numbers,
exposure of a subject without a CAR-T dose row, SAFFL option.

A hand-written three-subject study: S1 (CD19, CAR-T day 0), S2 (CD7, CAR-T day 0), S3 (CD19, no CAR-T
dose row while the others have one: not infused, cartlab.response.marrow_inputs.infusion_status).
Expected values are worked out by hand from these rows and the standard's text (comments say how).
"""

from __future__ import annotations

import polars as pl
import pytest

from cartlab.analyze import Analysis
from cartlab.io.adam import adam_frames, export_adam
from cartlab.io.study_folder import read_study

_SUBJECTS = """subject_id,sex,age_years,disease,target,infusion_date,last_followup_day
S1,F,40,B-ALL,CD19,2024-03-01,60
S2,M,50,AML,CD7,2024-03-01,60
S3,F,45,B-ALL,CD19,2024-03-01,60
S4,M,30,B-ALL,,2024-03-01,60
"""
_DOSES = """subject_id,day,agent,dose,unit
S1,0,CAR-T,1000000,cells/kg
S2,0,CAR-T,1000000,cells/kg
S4,0,CAR-T,1000000,cells/kg
S3,-5,fludarabine,30,mg/m2
"""
_OBS = """subject_id,day,param,value,value_text,unit,lln,uln
S1,-1,K,3.6,,mmol/L,3.5,5.1
S1,7,K,4.5,,mmol/L,3.5,5.1
S1,-1,NEUT,2000,,/mm3,1800,7700
S1,3,NEUT,,<50,/mm3,1800,7700
S3,-1,K,3.6,,mmol/L,3.5,5.1
S3,2,TEMP,39.0,,C,,
"""


_EVENTS = """subject_id,day,event
S1,45,death
"""


def _study(tmp_path, doses=_DOSES):
    d = tmp_path / "study"
    d.mkdir()
    (d / "subjects.csv").write_text(_SUBJECTS)
    (d / "doses.csv").write_text(doses)
    (d / "observations.csv").write_text(_OBS)
    (d / "events.csv").write_text(_EVENTS)
    return read_study(d)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    return adam_frames(Analysis(_study(tmp_path_factory.mktemp("s38"))), datasets=["ADSL", "ADLB"])


def _adsl(frames):
    return {r["USUBJID"]: r for r in frames["ADSL"].iter_rows(named=True)}


def test_trt01a_is_the_planned_product_of_a_treated_subject(frames):
    # ADaMIG: TRTxxA takes its values from the planned treatments' list (CDISC pilot ADSL: TRT01A
    # Placebo | TRT01P Placebo). S1/S2 have a CAR-T dose row -> TRT01A = TRT01P "<target> CAR-T";
    # S3 has none -> TRT01A empty (the old code wrote the dose agent "CAR-T" for everyone)
    a = _adsl(frames)
    assert (a["S1"]["TRT01P"], a["S1"]["TRT01A"]) == ("CD19 CAR-T", "CD19 CAR-T")
    assert (a["S2"]["TRT01P"], a["S2"]["TRT01A"]) == ("CD7 CAR-T", "CD7 CAR-T")
    assert a["S3"]["TRT01A"] is None
    # S4: treated, no arm and no target -> TRT01P empty; TRT01A keeps the dose agent (not "untreated")
    assert (a["S4"]["TRT01P"], a["S4"]["TRT01A"]) == (None, "CAR-T")
    lb = frames["ADLB"].filter(pl.col("USUBJID") == "S1")
    assert set(lb["TRTA"].to_list()) == {"CD19 CAR-T"}


def test_trt01a_agent_option_keeps_the_dose_agent(tmp_path):
    f = adam_frames(Analysis(_study(tmp_path)), datasets=["ADSL"], options={"trt01a": "agent"})
    a = _adsl(f)
    assert (a["S1"]["TRT01A"], a["S2"]["TRT01A"], a["S3"]["TRT01A"]) == ("CAR-T", "CAR-T", None)


def test_adlb_censored_result_is_avalc_in_the_analysis_unit(frames):
    # "<50" /mm3 = 50 / 1000 = 0.05 x 10^9/L (1 /mm3 = 1e6 /L = 1e-3 x 10^9/L); two significant digits
    # in the source -> "<0.05"; AVAL empty (Pinnacle 21: a BDS record needs AVAL or AVALC)
    r = frames["ADLB"].filter((pl.col("USUBJID") == "S1") & (pl.col("PARAMCD") == "NEUT")
                              & (pl.col("ARELDY") == 3)).row(0, named=True)
    assert (r["AVAL"], r["AVALC"], r["AVALU"]) == (None, "<0.05", "10^9/L")
    measured = frames["ADLB"].filter(pl.col("AVAL").is_not_null())
    assert measured["AVALC"].null_count() == measured.height
    assert frames["ADLB"].filter(pl.col("AVAL").is_null() & pl.col("AVALC").is_null()).height == 0


def test_chg_and_pchg_are_exact_at_15_significant_digits(tmp_path):
    # K 3.6 -> 4.5: CHG = 0.9, PCHG = 100 x 0.9 / 3.6 = 25 exactly by hand; doubles gave
    # 0.8999999999999999 and 24.999999999999996 (R signif(x, 15), the engines' comparison convention)
    out = tmp_path / "adam"
    export_adam(Analysis(_study(tmp_path)), out, formats=("csv", "parquet", "xpt"), datasets=["ADSL", "ADLB"])
    p = pl.read_parquet(out / "adlb.parquet").filter((pl.col("USUBJID") == "S1") & (pl.col("PARAMCD") == "K")
                                                     & (pl.col("ARELDY") == 7))
    assert (p["CHG"][0], p["PCHG"][0]) == (0.9, 25.0)
    line = next(ln for ln in (out / "adlb.csv").read_text().splitlines()
                if ",S1," in ln and ",K," in ln and ",4.5," in ln)
    assert ",0.9," in line and ",25.0," in line
    import pyreadstat

    x, _ = pyreadstat.read_xport(str(out / "adlb.xpt"))
    row = x[(x["USUBJID"] == "S1") & (x["PARAMCD"] == "K") & (x["ARELDY"] == 7)].iloc[0]
    assert (row["CHG"], row["PCHG"]) == (0.9, 25.0)


def test_subject_without_car_t_dose_row_is_not_exposed(frames, tmp_path):
    # review s38 B2: S1/S2 have CAR-T dose rows, S3 none -> S3 not infused (the response engine's
    # reading): TRTSDT/TRTEDT empty, SAFFL blank; S1 exposed on its infusion date 2024-03-01 =
    # 23436 days after 1960-01-01 (computed with datetime.date: (date(2024,3,1) - date(1960,1,1)).days)
    a = _adsl(frames)
    import datetime as dt

    d0 = (dt.date(2024, 3, 1) - dt.date(1960, 1, 1)).days
    assert (a["S1"]["TRTSDT"], a["S1"]["TRTEDT"], a["S1"]["SAFFL"]) == (d0, d0, "Y")
    assert (a["S3"]["TRTSDT"], a["S3"]["TRTSDTM"], a["S3"]["TRTEDT"], a["S3"]["SAFFL"]) == (None, None, None, None)
    # its lab dates stay on the calendar (day -1 = 2024-02-29)
    k = frames["ADLB"].filter((pl.col("USUBJID") == "S3") & (pl.col("PARAMCD") == "K"))
    assert k["ADT"].to_list() == [d0 - 1]


def test_doses_unknown_for_the_study_keep_the_infusion_date(tmp_path):
    # no CAR-T row for any subject: day 0 is the infusion (study-format 'Time'), TRTSDT = infusion date
    f = adam_frames(Analysis(_study(tmp_path, doses="subject_id,day,agent,dose,unit\nS3,-5,fludarabine,30,mg/m2\n")),
                    datasets=["ADSL"])
    a = _adsl(f)
    assert a["S3"]["TRTSDT"] == 23436 and a["S1"]["TRTSDT"] == 23436


def test_trtemfl_blank_for_a_subject_not_infused():
    # ADAE TRTEMFL through the builder (ADaMIG OCCDS: TRTSDT <= ASTDT; no TRTSDT -> not treatment-emergent
    # is not known): an episode of a not-infused subject is empty, one of an infused subject "Y"
    from cartlab.io.adam.build import adae

    class _A:
        class study:
            study_id = "X"

        def table(self, name):
            return pl.DataFrame({"USUBJID": ["S1", "S3"], "AESEQ": [1, 1], "AETERM": ["Cytokine release syndrome"] * 2,
                                 "ASTDY": [2.0, 2.0], "AENDY": [4.0, 4.0], "ADURN": [3, 3], "ADURU": ["DAYS"] * 2,
                                 "ATOXGR": [1, 1], "ATOXGRS": ["ASTCT 2019"] * 2, "RULE": ["r"] * 2,
                                 "RULESTAT": ["verified"] * 2, "REASON": ["x"] * 2, "EVIDENCE": [[], []]},
                                schema_overrides={"EVIDENCE": pl.List(pl.String)})

        def has(self, name):
            return False

    import cartlab.io.adam.build as b

    orig = b._datasrc
    b._datasrc = lambda frame, evidence, study: pl.Series("DATASRC", [None] * frame.height, dtype=pl.String)
    try:
        dates = pl.DataFrame({"USUBJID": ["S1", "S3"], "TRTSDT": [100, None], "_anchor": [100, 100],
                              "TRT01P": ["CD19 CAR-T"] * 2, "TRT01A": ["CD19 CAR-T", None], "_exposed": [True, False]})
        out = adae(_A(), dates)
    finally:
        b._datasrc = orig
    assert out["TRTEMFL"].to_list() == ["Y", None]
    assert out["ASTDT"].to_list() == [102, 102]


def test_saffl_unknown_option(tmp_path):
    # option adam.saffl_unknown=N (Pinnacle 21 AD0005: SAFFL cannot be null): S3 (no CAR-T dose row) -> N
    res = export_adam(Analysis(_study(tmp_path)), tmp_path / "adam", formats=("parquet",), datasets=["ADSL"],
                      options={"saffl_unknown": "N"})
    a = pl.read_parquet(tmp_path / "adam" / "adsl.parquet")
    assert dict(zip(a["USUBJID"], a["SAFFL"], strict=True)) == {"S1": "Y", "S2": "Y", "S3": "N", "S4": "Y"}
    assert any("S3" in n and "SAFFL" in n for n in res["notes"])


def test_adtte_source_record_of_the_deciding_row(tmp_path):
    # review s38 B4 (CDISC pilot ADTTE: SRCDOM / SRCVAR / SRCSEQ). OS of S1: death on day 45, the
    # first data row of events.csv -> SRCDOM events, SRCVAR day, SRCSEQ 1, first in EVIDENCE.
    # OS of S2: censored at last_followup_day 60, the second data row of subjects.csv -> subjects,
    # last_followup_day, 2
    t = adam_frames(Analysis(_study(tmp_path)), datasets=["ADTTE"])["ADTTE"].filter(pl.col("PARAMCD") == "OS")
    r = {u: (d, v, q, e) for u, d, v, q, e in t.select("USUBJID", "SRCDOM", "SRCVAR", "SRCSEQ", "EVIDENCE").iter_rows()}
    assert r["S1"][:3] == ("events", "day", 1) and r["S1"][3].startswith("events.csv:1")
    assert r["S2"][:3] == ("subjects", "last_followup_day", 2) and r["S2"][3].startswith("subjects.csv:2")


def test_adpp_parameter_not_estimable_is_avalc_ne():
    # a PK parameter the NCA could not estimate (LAMZ without a terminal phase: AVAL empty) must still
    # carry AVAL or AVALC (Pinnacle 21: "only required to have AVAL or AVALC") -> AVALC "NE"; a value
    # keeps AVALC empty
    import cartlab.io.adam.build as b

    class _A:
        class study:
            study_id = "X"

        def table(self, name):
            return pl.DataFrame({"USUBJID": ["S1", "S1"], "PARAMCD": ["CARCOPY"] * 2, "PPTESTCD": ["CMAX", "LAMZ"],
                                 "PPTEST": ["Max Conc", "Lambda z"], "AVAL": [1000.0, None], "PPSTINT": [None, None],
                                 "PPENINT": [None, None], "METHOD": ["m"] * 2, "EVIDENCE": [[], []]},
                                schema_overrides={"EVIDENCE": pl.List(pl.String), "PPSTINT": pl.String,
                                                  "PPENINT": pl.String})

        def has(self, name):
            return False

    orig = b._datasrc
    b._datasrc = lambda frame, evidence, study: pl.Series("DATASRC", [None] * frame.height, dtype=pl.String)
    try:
        dates = pl.DataFrame({"USUBJID": ["S1"], "TRT01P": ["CD19 CAR-T"], "TRT01A": ["CD19 CAR-T"]})
        out = b.adpp(_A(), dates)
    finally:
        b._datasrc = orig
    assert dict(zip(out["PARAMCD"], out["AVALC"], strict=True)) == {"CMAX": None, "LAMZ": "NE"}


def test_change_is_on_the_operands_15_digit_grid():
    # by hand: 36.1 - 36.0 = 0.1, 120.3 - 120.5 = -0.2, 4.5 - 3.6 = 0.9 (IEEE doubles give
    # 0.10000000000000142, -0.20000000000000284, 0.8999999999999999); null stays null
    from cartlab.io.adam.exposure import change

    f = pl.DataFrame({"a": [36.1, 120.3, 4.5, None], "b": [36.0, 120.5, 3.6, 1.0]})
    assert f.select(change(pl.col("a"), pl.col("b")))["a"].to_list() == [0.1, -0.2, 0.9, None]
