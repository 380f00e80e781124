"""SDTM/ADaM interop audit 2 (s28), findings 3, 4, 5, 8 and 9: a hand-written SDTM folder
(tests/fixtures/sdtm_s28) and a tiny study folder; every expected value is worked out by hand in the
comments from the SDTM/ADaM IG or the study-format spec, never copied from cartlab's output.

The SDTM folder: study S28; subject S28-001 (site 07, WHITE, arm "CD19 CAR-T 1x10^6 cells/kg") gets
its CAR-T (TISAGENLECLEUCEL) at EXSTDTC 2021-05-10T14:00; subject S28-002 (site 08, no race, no arm)
gets CAR-T dated 2021-06-07 without a time.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from cartlab.analyze import Analysis, AnalysisOptions
from cartlab.cli import app
from cartlab.errors import InputError
from cartlab.io import read_study
from cartlab.io.adam import export_adam
from cartlab.io.sdtm import read_sdtm

FIX = Path(__file__).parent / "fixtures" / "sdtm_s28"


def _adsl(folder: Path) -> dict[str, dict[str, str]]:
    with open(folder / "adsl.csv", newline="", encoding="utf-8") as fh:
        return {r["USUBJID"]: r for r in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def imp():
    return read_sdtm(FIX, report=True)


@pytest.fixture(scope="module")
def sdtm_adsl(imp, tmp_path_factory):
    out = tmp_path_factory.mktemp("s28_adam") / "adam"
    export_adam(Analysis(imp.study, AnalysisOptions()), out, formats=("csv",), datasets=["ADSL"])
    return out


# ---------------------------------------------------------------------------------------------
# finding 3: the study id is DM.STUDYID, not the folder name


def test_cli_sdtm_study_id_is_dm_studyid_unless_given(tmp_path):
    # docs/interop/sdtm.md: "study_id= (default: DM.STUDYID when it is unique, else the folder name)";
    # ADaMIG ADSL: "STUDYID | Study Identifier | Char | Req | DM.STUDYID". DM.STUDYID is S28 on both
    # records, the folder is named sdtm_s28.
    runner = CliRunner()
    out = tmp_path / "adam"
    res = runner.invoke(app, ["export", "--adam", str(out), "--sdtm", str(FIX)],
                        env={"CARTLAB_STORE": str(tmp_path / "s.duckdb")})
    assert res.exit_code == 0, res.output
    assert {r["STUDYID"] for r in _adsl(out).values()} == {"S28"}
    # import: stored under S28, its mapping report named after it; an explicit --study still wins
    store = tmp_path / "store.duckdb"
    res = runner.invoke(app, ["import", "--sdtm", str(FIX), "--store", str(store)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "S28_sdtm_mapping_report.csv").is_file()
    res = runner.invoke(app, ["import", "--sdtm", str(FIX), "--store", str(store), "--study", "MINE"])
    assert res.exit_code == 0, res.output
    from cartlab.store import Store

    with Store(store, read_only=True) as s:
        assert sorted(s.studies()["study_id"].to_list()) == ["MINE", "S28"]


def test_cli_fhir_study_id_is_the_bundle_id_not_the_file_stem(imp, tmp_path):
    # FHIR R4 Bundle.id is the logical id of the Bundle; cartlab's own export writes the study id there
    # (fhir writer: {"resourceType": "Bundle", "id": <study id>, "type": "collection"}). A collection
    # Bundle saying id PARTNER-7 is study PARTNER-7, not "export.fhir" (the file name without .json).
    from cartlab.io.fhir.writer import build_bundle

    bundle = build_bundle(imp.study)
    bundle["id"] = "PARTNER-7"
    path = tmp_path / "export.fhir.json"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    store = tmp_path / "store.duckdb"
    res = CliRunner().invoke(app, ["import", "--fhir", str(path), "--store", str(store)])
    assert res.exit_code == 0, res.output
    from cartlab.store import Store

    with Store(store, read_only=True) as s:
        assert s.studies()["study_id"].to_list() == ["PARTNER-7"]
    assert (tmp_path / "PARTNER-7_fhir_mapping_report.csv").is_file()


# ---------------------------------------------------------------------------------------------
# finding 4: infusion_datetime from the first CAR-T EXSTDTC with a clock time


def test_infusion_datetime_from_first_car_t_exstdtc(imp, sdtm_adsl):
    # study-format.md: "infusion_date / infusion_datetime | no | calendar anchor of day 0"; the first
    # CAR-T exposure of S28-001 is EXSTDTC 2021-05-10T14:00 (the fludarabine of 2021-05-05 is no
    # CAR-T); S28-002's CAR-T is dated without a time, so it has no infusion_datetime.
    subj = {r["subject_id"]: r for r in imp.study.subjects.iter_rows(named=True)}
    assert subj["S28-001"]["infusion_datetime"] == "2021-05-10T14:00"
    assert subj["S28-001"]["infusion_date"] == "2021-05-10"
    assert subj["S28-002"]["infusion_datetime"] is None
    assert subj["S28-002"]["infusion_date"] == "2021-06-07"
    # ADaMIG TRTSDTM "Datetime of First Exposure to Treatment", SAS seconds since 1960-01-01T00:00:
    # 1960-01-01 -> 2021-01-01 = 61 * 365 + 16 leap days = 22281 days; + Jan 31 + Feb 28 + Mar 31 +
    # Apr 30 + 9 = 22410 (2021-05-10); 22410 * 86400 + 14 * 3600 = 1936224000 + 50400 = 1936274400
    adsl = _adsl(sdtm_adsl)
    assert float(adsl["S28-001"]["TRTSDTM"]) == 1936274400.0
    assert adsl["S28-002"]["TRTSDTM"] == ""
    # the day axis does not move: day 0 is still the infusion date's midnight (clock.py: "Giving
    # infusion_datetime therefore adds precision without moving any day"), CAR-T at 14:00 = day 14/24
    car = imp.study.doses.filter(pl.col("subject_id") == "S28-001", pl.col("agent") != "fludarabine")
    assert car["day"].to_list() == [pytest.approx(14 / 24)]


# ---------------------------------------------------------------------------------------------
# finding 8: a text LBSTRESC that is no number is counted as not numeric, with a warning


def test_text_stresc_of_numeric_param_is_not_numeric_and_warned(imp):
    # SDTMIG: --STRESN is "copied in numeric format from --STRESC". "0,2" (decimal comma) and "BLQ"
    # give no number and are not censored values like "<0.5": records LBSEQ 2 and 3 are not mapped;
    # LBSEQ 1 (0.8) and LBSEQ 4 (<0.5, censored at 0.5) are.
    neut = imp.study.observations.filter(pl.col("param") == "NEUT").sort("src_row")
    assert neut["src_row"].to_list() == [1, 4]
    assert neut["censor"].to_list() == [None, "<"] and neut["censor_limit"].to_list() == [None, 0.5]
    rep = imp.report.filter(pl.col("domain") == "LB")
    bad = rep.filter(pl.col("reason").str.starts_with("not numeric"))
    assert bad["n_rows"].sum() == 2 and bad["n_skipped"].sum() == 2 and bad["n_mapped"].sum() == 0
    assert rep["n_mapped"].sum() == 2
    warned = [str(w) for w in imp.study.warnings if "not numeric" in str(w)]
    assert len(warned) == 2
    assert "LB USUBJID S28-001, LBSEQ 2" in warned[0] and "'0,2'" in warned[0] and "lb.csv, record 2" in warned[0]
    assert "LB USUBJID S28-001, LBSEQ 3" in warned[1] and "'BLQ'" in warned[1]


# ---------------------------------------------------------------------------------------------
# finding 9: UCUM Cel and [degF] in VSSTRESU


def test_ucum_temperature_units_read_and_unknown_spelling_refused(imp, tmp_path):
    # UCUM: "Cel" is degree Celsius, "[degF]" degree Fahrenheit; 101.3 F = (101.3 - 32) * 5 / 9 = 38.5 C
    temp = imp.study.observations.filter(pl.col("param") == "TEMP").sort("src_row")
    assert temp["value"].to_list() == [pytest.approx(38.6), pytest.approx(38.5)]
    # docs/interop/sdtm.md: unknown units are errors; "DEG C" is no UCUM code nor in the units table
    d = tmp_path / "bad"
    shutil.copytree(FIX, d)
    (d / "vs.csv").write_text((FIX / "vs.csv").read_text().replace(",Cel,", ",DEG C,"), encoding="utf-8")
    with pytest.raises(InputError, match=r"vs\.csv, record 1, variable VSSTRESU: unknown unit 'DEG C'"):
        read_sdtm(d)


# ---------------------------------------------------------------------------------------------
# finding 5: ADSL SITEID, RACE, ARM, TRT01P (ADaMIG ADSL: all four "Req")


def test_adsl_required_variables_from_sdtm_dm(sdtm_adsl):
    # ADaMIG ADSL table: "SITEID ... Req | DM.SITEID", "RACE ... Req | DM.RACE", "ARM ... Req | DM.ARM",
    # "TRTxxP ... Req ... TRTxxP might be derived from the SDTM DM variable ARM. At least TRT01P is required."
    adsl = _adsl(sdtm_adsl)
    one, two = adsl["S28-001"], adsl["S28-002"]
    assert (one["SITEID"], one["RACE"], one["ARM"], one["TRT01P"]) == (
        "07", "WHITE", "CD19 CAR-T 1x10^6 cells/kg", "CD19 CAR-T 1x10^6 cells/kg")
    # S28-002: DM gives site 08 and no race, no arm, and no target: nothing planned is stated, so ARM
    # and TRT01P stay empty (the CAR-T actually given is TRT01A, not a planned treatment)
    assert (two["SITEID"], two["RACE"], two["ARM"], two["TRT01P"]) == ("08", "", "", "")
    assert two["TRT01A"] == "CAR-T"
    with open(sdtm_adsl / "define.csv", newline="", encoding="utf-8") as fh:
        names = [r for r in csv.DictReader(fh) if r.get("dataset", r.get("DATASET")) == "ADSL"]
    text = json.dumps(names)
    for var in ("SITEID", "RACE", "ARM", "TRT01P"):
        assert f'"{var}"' in text


def test_adsl_from_study_folder_site_and_target(tmp_path):
    # study-format.md: "Unknown extra columns are kept and passed through" (site); "target | no |
    # target antigen of the product": the stated product is a CD7 CAR-T, so ARM = TRT01P = "CD7 CAR-T"
    # (docs/interop/adam.md). Study folders have no race: RACE is empty. Subject B states no site and
    # no target: SITEID, ARM and TRT01P are empty.
    d = tmp_path / "study"
    d.mkdir()
    (d / "subjects.csv").write_text("subject_id,sex,target,last_followup_day,site\nA,F,CD7,30,Site-3\nB,M,,30,\n",
                                    encoding="utf-8")
    (d / "doses.csv").write_text("subject_id,day,agent,dose,unit\nA,0,CAR-T,1000000,cells/kg\n"
                                 "B,0,CAR-T,1000000,cells/kg\n", encoding="utf-8")
    out = tmp_path / "adam"
    export_adam(Analysis(read_study(d), AnalysisOptions()), out, formats=("csv",), datasets=["ADSL"])
    adsl = _adsl(out)
    a, b = adsl["A"], adsl["B"]
    assert (a["SITEID"], a["RACE"], a["ARM"], a["TRT01P"]) == ("Site-3", "", "CD7 CAR-T", "CD7 CAR-T")
    assert (b["SITEID"], b["RACE"], b["ARM"], b["TRT01P"]) == ("", "", "", "")
