"""Session 46 (lead): cartlab export --sdtm takes the SDTM reader's options that analyze, report and import
take (review 46 SDTM F8), and the protocol commands' shared subject selection (one declaration)."""

from __future__ import annotations

import polars as pl
from typer.testing import CliRunner

from cartlab.cli import app

DM = "STUDYID,USUBJID,RFSTDTC,RFXSTDTC,AGE,AGEU,SEX\nEDGE,S1,2021-09-04,2021-09-04,30,YEARS,F\n"
EX = "STUDYID,USUBJID,EXSEQ,EXTRT,EXDOSE,EXDOSU,EXSTDTC\nEDGE,S1,1,CAR-T,1,10^6 CELLS/KG,2021-09-10T14:00\n"
# VSDY 9 without a date: SDTMIG has no study day 0, day 1 = RFSTDTC 2021-09-04, so VSDY 9 = 2021-09-12,
# two days after the CAR-T day 0 (2021-09-10): canonical day 2 (worked by hand)
VS = ("STUDYID,USUBJID,VSSEQ,VSTESTCD,VSORRES,VSORRESU,VSSTRESC,VSSTRESN,VSSTRESU,VSDTC,VSDY\n"
      "EDGE,S1,1,TEMP,38.6,C,38.6,38.6,C,,9\n"
      "EDGE,S1,2,TEMP,37.0,C,37.0,37.0,C,2021-09-11,\n")


def _sdtm(tmp_path):
    d = tmp_path / "sdtm"
    d.mkdir()
    for name, text in (("dm.csv", DM), ("ex.csv", EX), ("vs.csv", VS)):
        (d / name).write_text(text)
    return d


def _temps(folder):
    obs = pl.read_csv(folder / "observations.csv")
    return sorted(obs.filter(pl.col("param") == "TEMP")["day"].to_list())


def test_export_sdtm_takes_study_day_fallback(tmp_path):
    src = _sdtm(tmp_path)
    res = CliRunner().invoke(app, ["export", "--sdtm", str(src), "--out", str(tmp_path / "a"), "--study-day-fallback"])
    assert res.exit_code == 0, res.output
    assert _temps(tmp_path / "a") == [1, 2]  # 2021-09-11 = day 1; VSDY 9 = day 2 (above)
    res = CliRunner().invoke(app, ["export", "--sdtm", str(src), "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert _temps(tmp_path / "b") == [1]  # without the option the VSDY-only record is not placed


def test_export_sdtm_takes_partial_date_options(tmp_path):
    src = _sdtm(tmp_path)
    res = CliRunner().invoke(app, ["export", "--sdtm", str(src), "--out", str(tmp_path / "c"),
                                   "--partial-death-dates", "drop", "--partial-event-dates", "drop"])
    assert res.exit_code == 0, res.output


def test_export_of_a_study_folder_refuses_sdtm_only_options(tmp_path):
    src = _sdtm(tmp_path)
    CliRunner().invoke(app, ["export", "--sdtm", str(src), "--out", str(tmp_path / "f"), "--study-day-fallback"])
    res = CliRunner().invoke(app, ["export", str(tmp_path / "f"), "--out", str(tmp_path / "g"), "--study-day-fallback"])
    assert res.exit_code != 0
    assert "--study-day-fallback" in res.output


def test_eligibility_and_deviations_share_the_subject_selection(tmp_path):
    """Both commands take SUBJECT, --subject, --study, --store, --csv, --json and --csv-dialect (declared once)."""
    for cmd in ("eligibility", "deviations"):
        out = CliRunner().invoke(app, [cmd, "--help"], env={"COLUMNS": "200"}).output
        for flag in ("--subject", "--study", "--store", "--csv", "--json", "--csv-dialect", "--protocol"):
            assert flag in out, (cmd, flag)


# --unknown-indication (review 46 SDTM F2 / FHIR A1): the readers' option from the command line --------------

def _crs_max(out_dir):
    return pl.read_csv(out_dir / "subject_summary.csv").sort("subject_id")["crs_grade_astct"].to_list()


def test_unknown_indication_flag_sdtm(tmp_path):
    """By hand (tests/test_sdtm_s46.py): A1's vasopressor is given for HYPOTENSION (in no table); counted it
    makes fever + SBP 82 a grade 3 (ASTCT 2019), read as 'other' a grade 2; A2 (no CMINDC) and A3 (CRS) are 3."""
    from test_sdtm_s46 import CM_E7, VS_E7, _folder

    src = _folder(tmp_path, vs=VS_E7, cm=CM_E7)
    r = CliRunner()
    res = r.invoke(app, ["analyze", "--sdtm", str(src), "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert _crs_max(tmp_path / "a") == [3, 3, 3]
    res = r.invoke(app, ["analyze", "--sdtm", str(src), "--out", str(tmp_path / "b"), "--unknown-indication", "other"])
    assert res.exit_code == 0, res.output
    assert _crs_max(tmp_path / "b") == [2, 3, 3]
    res = r.invoke(app, ["analyze", "--sdtm", str(src), "--out", str(tmp_path / "c"), "--unknown-indication", "drop"])
    assert res.exit_code == 2 and "applies to --fhir" in res.output
    assert not (tmp_path / "c").exists()


def test_unknown_indication_flag_fhir(tmp_path):
    """By hand (tests/test_fhir_s46.py): the norepinephrine 'for Hypotension' counted gives grade 3 on days 2-3;
    dropped, fever + hypotension without a vasopressor is grade 2."""
    from test_fhir_s46 import _hypo

    src = _hypo(tmp_path)
    r = CliRunner()
    res = r.invoke(app, ["analyze", "--fhir", str(src), "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert _crs_max(tmp_path / "a") == [3]
    assert "unknown indications count" in res.output
    res = r.invoke(app, ["analyze", "--fhir", str(src), "--out", str(tmp_path / "b"), "--unknown-indication", "drop"])
    assert res.exit_code == 0, res.output
    assert _crs_max(tmp_path / "b") == [2]
    res = r.invoke(app, ["analyze", "--fhir", str(src), "--out", str(tmp_path / "c"), "--unknown-indication", "other"])
    assert res.exit_code == 2 and "applies to --sdtm" in res.output


def test_unknown_indication_flag_refused_for_a_study_folder(tmp_path):
    src = _sdtm(tmp_path)
    CliRunner().invoke(app, ["export", "--sdtm", str(src), "--out", str(tmp_path / "f")])
    res = CliRunner().invoke(app, ["analyze", str(tmp_path / "f"), "--out", str(tmp_path / "o"),
                                   "--unknown-indication", "count"])
    assert res.exit_code == 2 and "--unknown-indication applies to --sdtm or --fhir" in res.output
    assert "a study folder is read as it is" in res.output
