"""SDTM import (cartlab.io.sdtm.read_sdtm): real pharmaversesdtm fixtures and a hand-written CAR-T
folder. Expected values are computed by hand from the fixture lines (comments say how)."""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl
import pytest

from cartlab.errors import InputError
from cartlab.io.sdtm import read_sdtm, write_mapping_report

FIX = Path("/work/shared/fixtures/pharmaversesdtm")
CART = Path(__file__).parent / "fixtures" / "sdtm_cart"
PROV = ["src_file", "src_row", "src_sha256"]

needs_fixtures = pytest.mark.skipif(not FIX.exists(), reason="pharmaversesdtm fixtures not present")


def _records(path: Path) -> int:
    with open(path, newline="", encoding="utf-8") as fh:
        return sum(1 for _ in csv.reader(fh)) - 1


@pytest.fixture(scope="module")
def csv_import():
    return read_sdtm(FIX / "csv", report=True)


@pytest.fixture(scope="module")
def xpt_import():
    return read_sdtm(FIX / "xpt", report=True)


@needs_fixtures
def test_every_record_of_every_file_is_accounted_for(csv_import, xpt_import):
    for imp, folder in ((csv_import, FIX / "csv"), (xpt_import, FIX / "xpt")):
        rep = imp.report
        assert (rep["n_mapped"] + rep["n_skipped"] == rep["n_rows"]).all()
        per_file = dict(rep.group_by("file").agg(pl.col("n_rows").sum()).iter_rows())
        for src in imp.study.sources.iter_rows(named=True):
            assert per_file[src["file"]] == src["n_rows"], src["file"]
        if folder.name == "csv":  # rows counted independently with the csv module
            for f in folder.glob("*.csv"):
                assert per_file[f.name] == _records(f), f.name
        # mapped counts equal the canonical rows that came from each file
        mapped = dict(rep.filter(~pl.col("file").str.contains(":")).group_by("file").agg(pl.col("n_mapped").sum()).iter_rows())
        s = imp.study
        # a record gives one row of a table, except an EX record over EXSTDTC..EXENDTC with a known EXDOSFRQ,
        # one dose per administration day (SDTMIG EX, session 40): count the records behind each table's rows
        canon = pl.concat([t.select("src_file", "src_row").unique() for t in s.tables().values() if t.height])
        from_dm_deaths = s.events.filter(pl.col("src_file").str.starts_with("dm.")).height
        counts = dict(canon.group_by("src_file").len().iter_rows())
        for f, n in mapped.items():
            extra = from_dm_deaths if f.startswith("dm.") else 0
            assert counts.get(f, 0) == n + extra, f


@needs_fixtures
def test_sources_and_provenance(csv_import, xpt_import):
    assert set(csv_import.study.sources["format"]) == {"sdtm-csv"}
    assert set(xpt_import.study.sources["format"]) == {"sdtm-xpt"}
    obs = csv_import.study.observations
    assert obs["src_file"].is_in(["lb.csv", "vs.csv"]).all()
    assert obs["src_sha256"].str.len_chars().eq(64).all()


@needs_fixtures
def test_first_lab_row_by_hand(csv_import):
    # lb.csv record 1: ALB LBORRES 3.8 g/dL, LBSTRESN 38 g/L, LBSTNRLO/HI 33/49, LBDTC 2013-12-26T14:45;
    # DM RFXSTDTC 2014-01-02 (no CAR-T in EX) -> day = -7 + 14.75/24
    row = csv_import.study.observations.filter((pl.col("src_file") == "lb.csv") & (pl.col("src_row") == 1)).row(0, named=True)
    assert row["subject_id"] == "01-701-1015" and row["param"] == "ALB"
    assert row["value"] == 38.0 and row["unit"] == "g/L" and (row["lln"], row["uln"]) == (33.0, 49.0)
    assert (row["orig_value"], row["orig_unit"], row["orig_lln"], row["orig_uln"]) == (3.8, "g/dL", 3.3, 4.9)
    assert row["day"] == pytest.approx(-7 + 14.75 / 24, abs=1e-12)
    assert row["datetime"] == "2013-12-26T14:45"
    # vs.csv: PULSE maps to HR; BEATS/MIN read through the units table
    hr = csv_import.study.observations.filter(pl.col("param") == "HR")
    assert hr.height == 8201 and set(hr["unit"]) == {"beats/min"}


@needs_fixtures
def test_csv_and_xpt_agree_on_shared_domains(csv_import, xpt_import):
    c, x = csv_import.study, xpt_import.study
    for name in ("subjects", "doses"):
        # session 46: weight_kg/height_cm (and their source_note) come from VS, which only the CSV set has
        drop = PROV + (["weight_kg", "height_cm", "source_note"] if name == "subjects" else [])
        assert c.table(name).drop(drop).equals(x.table(name).drop(drop)), name
    # xpt/lb.xpt holds the first 20 subjects of LB
    subj = x.observations["subject_id"].unique()
    assert subj.len() == 20
    lb_c = c.observations.filter((pl.col("src_file") == "lb.csv") & pl.col("subject_id").is_in(subj.implode()))
    cols = [col for col in lb_c.columns if col not in PROV]
    key = ["subject_id", "day", "param"]
    assert lb_c.select(cols).sort(key).equals(x.observations.select(cols).sort(key))


@needs_fixtures
def test_partial_dates_counted_not_dropped(csv_import):
    rep = csv_import.report
    cm_partial = rep.filter((pl.col("file") == "cm.csv") & pl.col("reason").str.starts_with("partial date"))
    # cm.csv: CMSTDTC of length 4 or 7 ('2003', '2012-09') for rows whose term maps (checked by hand:
    # every skipped partial is a mapped term; the total of partial CMSTDTC in the file is larger)
    assert cm_partial["n_skipped"].sum() > 0


def test_cart_folder_by_hand():
    imp = read_sdtm(CART, report=True)
    s = imp.study
    # day 0 = first CAR-T exposure in EX (2021-05-10), not RFXSTDTC (2021-05-01)
    sub = s.subjects.filter(pl.col("subject_id") == "CART01-001").row(0, named=True)
    assert sub["infusion_date"] == "2021-05-10"
    assert sub["age_years"] == 18.0  # 216 MONTHS
    assert sub["last_followup_day"] == 100.0  # RFPENDTC 2021-08-18: 21 + 30 + 31 + 18 days
    doses = s.doses.sort("src_row")
    assert doses["agent"].to_list() == ["fludarabine", "cyclophosphamide", "TISAGENLECLEUCEL"]
    assert doses["day"].to_list() == [-5.0, -5.0, pytest.approx(14.5 / 24)]
    assert doses["dose"].to_list()[1] == 300.0 and doses["unit"].to_list()[1] == "mg/m2"  # 0.3 g/m2
    obs = s.observations.sort("src_row")
    neut = obs.filter(pl.col("param") == "NEUT").row(0, named=True)  # ANC via the mapping table
    assert (neut["value"], neut["day"], neut["specimen"]) == (0.3, 2.25, "PB")
    assert (neut["orig_value"], neut["orig_unit"], neut["orig_lln"]) == (300.0, "/uL", 1500.0)
    crp = obs.filter(pl.col("param") == "CRP").row(0, named=True)
    assert crp["source"] == "observed" and crp["extra"] == '{"LABNAME": "Central lab"}'
    iv = s.interventions.sort("src_row")
    assert iv["category"].to_list() == ["vasopressor", "oxygen"]
    assert iv["agent"].to_list() == ["norepinephrine", "oxygen"]
    assert iv["start_day"].to_list() == [pytest.approx(3 + 8 / 24), 3.0]
    assert iv["end_day"].to_list() == [4.0, None]
    assert iv["indication"].to_list() == ["CRS", "CRS"]
    o2 = iv.row(1, named=True)
    assert (o2["o2_device"], o2["o2_flow_lpm"], o2["dose"]) == ("nasal_cannula", 4.0, None)
    ev = s.events.row(0, named=True)
    assert (ev["event"], ev["day"], ev["detail"]) == ("death", 100.0, "DIED OF SEPSIS")
    rep = imp.report
    reasons = dict(rep.filter(pl.col("n_skipped") > 0).select(pl.col("file") + ":" + pl.col("code"), "reason").iter_rows())
    assert reasons["lb.csv:NEUT"].startswith("partial date in LBDTC")
    assert reasons["lb.csv:XYZ"].startswith("test code not in the mapping")
    assert "CMROUTE is excluded" in reasons["cm.csv:HYDROCORTISONE"]
    assert reasons["fa.csv:OCCUR"].startswith("domain FA not mapped")
    assert reasons["dm.csv:DTHDTC:DTHDTC"] == "death already given by DS/DD/CE"
    assert (rep["n_mapped"] + rep["n_skipped"] == rep["n_rows"]).all()


def test_sponsor_code_of_the_car_t_product_sets_day_0(tmp_path):
    # EXTRT is a sponsor code mapped by ex_agents; day 0 is its date (SDTM guide: "the date of the
    # first CAR-T exposure in EX"), not RFXSTDTC: subject 1 has none, subject 2 has 2021-06-07
    # while the infusion is on 2021-06-09. By hand: LB on 2021-05-11 is day 1 for subject 1,
    # 2021-06-10 is day 1 for subject 2; the CAR-T doses are on day 0.
    f = tmp_path / "sdtm"
    f.mkdir()
    (f / "dm.csv").write_text("STUDYID,DOMAIN,USUBJID,RFXSTDTC,AGE,AGEU,SEX\n"
                              "S,DM,S-1,,54,YEARS,M\nS,DM,S-2,2021-06-07,60,YEARS,F\n", encoding="utf-8")
    (f / "ex.csv").write_text("STUDYID,DOMAIN,USUBJID,EXSEQ,EXTRT,EXDOSE,EXDOSU,EXSTDTC\n"
                              "S,EX,S-1,1,JCAR017,2000000,cells/kg,2021-05-10\n"
                              "S,EX,S-2,1,JCAR017,3000000,cells/kg,2021-06-09\n", encoding="utf-8")
    (f / "lb.csv").write_text("STUDYID,DOMAIN,USUBJID,LBSEQ,LBTESTCD,LBSTRESN,LBSTRESU,LBSPEC,LBDTC\n"
                              "S,LB,S-1,1,NEUT,0.4,10^9/L,BLOOD,2021-05-11\n"
                              "S,LB,S-2,1,NEUT,0.6,10^9/L,BLOOD,2021-06-10\n", encoding="utf-8")
    m = tmp_path / "map.yaml"
    m.write_text("ex_agents:\n  JCAR017: lisocabtagene maraleucel\n", encoding="utf-8")
    s = read_sdtm(f, mapping=m)
    assert dict(s.subjects.select("subject_id", "infusion_date").iter_rows()) == {"S-1": "2021-05-10",
                                                                                  "S-2": "2021-06-09"}
    assert s.doses.sort("subject_id")["day"].to_list() == [0.0, 0.0]
    assert s.observations.sort("subject_id")["day"].to_list() == [1.0, 1.0]


def test_partial_date_imputation_option():
    s = read_sdtm(CART, partial_dates="impute")
    neut = s.observations.filter(pl.col("src_file").eq("lb.csv") & pl.col("src_row").eq(3)).row(0, named=True)
    assert neut["day"] == -9.0  # '2021-05' -> 2021-05-01, day 0 = 2021-05-10
    assert "imputed from the partial date '2021-05'" in neut["source_note"]
    toci = s.interventions.filter(pl.col("category") == "tocilizumab").row(0, named=True)
    assert toci["start_day"] == -9.0


def test_user_mapping_file_extends_and_overrides(tmp_path):
    m = tmp_path / "map.yaml"
    m.write_text("tests:\n  LB:\n    XYZ: {param: ICE}\n    ANC: {param: null, reason: not wanted}\n", encoding="utf-8")
    imp = read_sdtm(CART, mapping=m, report=True)
    rep = imp.report.filter(pl.col("file") == "lb.csv")
    assert rep.filter(pl.col("code") == "XYZ")["n_mapped"].sum() == 1
    assert rep.filter(pl.col("code") == "ANC")["reason"].to_list() == ["not wanted"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("testz: {}\n", encoding="utf-8")
    with pytest.raises(InputError, match="unknown key"):
        read_sdtm(CART, mapping=bad)


def test_write_mapping_report(tmp_path):
    imp = read_sdtm(CART, report=True)
    csv_path, md = write_mapping_report(imp.report, tmp_path / "report.csv")
    back = pl.read_csv(csv_path)
    assert back["n_rows"].sum() == imp.report["n_rows"].sum()
    assert "| lb.csv | 6 | 2 | 4 |" in md.read_text()
