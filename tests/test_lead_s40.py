"""Session 40, the session-diff review's findings (review 40 diff1 F3, F4). Expected texts and numbers are worked
out by hand from the inputs written here."""

from __future__ import annotations

import warnings
from pathlib import Path

from cartlab.io import read_study

SUBJ = ("subject_id,sex,age_years,weight_kg,height_cm,disease,target,infusion_date,last_followup_day\n"
        "P1,M,50,70,175,AML,CD7,,60\n")
OBS = "subject_id,day,param,value,unit,uln,specimen\n"


def _study(tmp_path: Path, obs_rows: str, doses: str | None = None):
    (tmp_path / "subjects.csv").write_text(SUBJ)
    (tmp_path / "observations.csv").write_text(OBS + obs_rows)
    if doses is not None:
        (tmp_path / "doses.csv").write_text(doses)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_study(tmp_path)


def test_not_evaluable_best_response_is_not_called_no_response(tmp_path):
    """F3: AML marrow on day 28 with blasts 2 %, no blood blasts, cellularity 5 % and no count recovery is NE,
    could be MLFS (rule eln2022.NE.aplastic: < 10 % cellularity and no cell count); its empty relapse and
    duration of response say "not evaluable", not "no response"."""
    from cartlab.response.best import derive_best_response
    from cartlab.response.marrow import derive_marrow_response

    s = _study(tmp_path, "P1,-10,BMBLAST,60,%,,BM\nP1,28,BMBLAST,2,%,,BM\nP1,28,BMCELL,5,%,,BM\n"
                         "P1,28,PBBLAST,0,%,,PB\nP1,28,NEUT,200,cells/uL,,PB\nP1,28,PLAT,20,10^9/L,,PB\n",
               "subject_id,day,agent,dose,unit\nP1,0,CAR-T,1,10^6 cells/kg\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = derive_best_response(s, assessments=derive_marrow_response(s)).row(0, named=True)
    assert r["best_response"] == "NE"
    for col in ("relapse_reason", "dor_end_reason"):
        assert r[col].startswith("not derived: best response NE (not evaluable; could be MLFS)"), r[col]
        assert "no response (" not in r[col]


def test_iec_hs_names_a_ferritin_not_counted_for_an_abnormal_baseline(tmp_path):
    """F4: ferritin 1000 (ULN 300) on day -1, 1200 on day 10. With ferritin_uln_when_baseline_abnormal=baseline
    the day is not flagged by "> 2 x ULN" (1200 > 600) because the baseline 1000 > 300 must double (> 2000):
    the reason says so. With the default (either) the criterion is met and no such note appears."""
    from cartlab.grading.iec_hs import IecHsOptions, derive_iec_hs_flags

    s = _study(tmp_path, "P1,-1,FERRITIN,1000,ng/mL,300,\nP1,10,FERRITIN,1200,ng/mL,300,\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = derive_iec_hs_flags(s, IecHsOptions(ferritin_uln_when_baseline_abnormal="baseline"))
        either = derive_iec_hs_flags(s, IecHsOptions())
    day10 = base.filter(base["day"] == 10).row(0, named=True)["reason"]
    assert "Ferritin 1200.0 > 2 x ULN (600.0) not counted: the baseline 1000.0 (day -1)" in day10
    assert "> 2000.0" in day10
    assert "not counted" not in either.filter(either["day"] == 10).row(0, named=True)["reason"]


def test_crs_death_months_after_the_data_stop_does_not_end_the_episode(tmp_path):
    """F1: fever 39 on days 1-3 and nothing after; a death on day 200 (attributed to another cause), last
    follow-up 200. Days 4-199 were not assessed, so the episode's end is not known: ongoing at last follow-up
    (ADAE UNKNOWN), not "ongoing at death". A death on day 4, the day after the last CRS day, does end it."""
    from cartlab.analyze import Analysis

    def run(death_day: int, folder: Path) -> str:
        folder.mkdir()
        (folder / "subjects.csv").write_text(SUBJ.replace(",60\n", ",200\n"))
        (folder / "doses.csv").write_text("subject_id,day,agent,dose,unit\nP1,0,CAR-T,1,10^6 cells/kg\n")
        (folder / "observations.csv").write_text(OBS + "".join(f"P1,{d},TEMP,39,C,,\nP1,{d},SYSBP,120,mmHg,,\n"
                                                               for d in (1, 2, 3)))
        (folder / "interventions.csv").write_text("subject_id,start_day,category,agent\n")
        (folder / "events.csv").write_text(f"subject_id,day,event,attribution\nP1,{death_day},death,other\n")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = read_study(folder)
            return Analysis(s).subject_summary().row(0, named=True)["crs_resolution_status"]

    assert run(200, tmp_path / "late") == "ongoing_at_last_followup"
    assert run(4, tmp_path / "next") == "ongoing_at_death"


def test_deviations_takes_who_is_infused_from_the_analysis(tmp_path):
    """F2: SYN-0002's CAR-T dose row removed, its CAR-T samples kept. analyze with
    best_response.infusion_evidence=dose calls it not infused (one not_infused row); `cartlab deviations
    --options analysis.json` (and --set of that option) must agree; with the default (dose_or_kinetics, its
    CAR-T samples) it is infused and gets no not_infused row."""
    import csv
    import json

    from typer.testing import CliRunner

    from cartlab.cli import app

    r = CliRunner()
    study = tmp_path / "s"
    assert r.invoke(app, ["synthetic", "--out", str(study), "--n", "3", "--seed", "9"]).exit_code == 0
    rows = list(csv.DictReader((study / "doses.csv").open(encoding="utf-8")))
    keep = [x for x in rows if not (x["subject_id"] == "SYN-0002" and x["agent"].lower().startswith("car"))]
    assert len(keep) < len(rows)
    with (study / "doses.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(keep)
    out = tmp_path / "an"
    res = r.invoke(app, ["analyze", str(study), "--out", str(out), "--protocol", "nct04762485",
                         "--set", "best_response.infusion_evidence=dose"])
    assert res.exit_code == 0, res.output

    def categories(*extra: str) -> set[str]:
        res = r.invoke(app, ["deviations", "SYN-0002", "--study", str(study), "--protocol", "nct04762485", "--json",
                             *extra])
        assert res.exit_code == 0, res.output
        return {d["category"] for d in json.loads(res.output)}

    analysed = {x["category"] for x in csv.DictReader((out / "protocol_deviations.csv").open(encoding="utf-8"))
                if x["subject_id"] == "SYN-0002"}
    assert "not_infused" in analysed
    assert "not_infused" in categories("--options", str(out / "analysis.json"))
    assert "not_infused" in categories("--set", "best_response.infusion_evidence=dose")
    assert "not_infused" not in categories()


def test_units_a_number_glued_to_a_squared_unit():
    """diff2 B4: "mL/min/1.73m2" (no space) is mL per minute per 1.73 m**2, as "mL/min/1.73 m2" (session 40's
    numeric-denominator reading had made it per metre); a power of ten keeps its meaning (10^3/uL = 1000/uL,
    not an elementary charge cubed)."""
    from cartlab.units import parse_unit, ureg

    glued, spaced = parse_unit("mL/min/1.73m2"), parse_unit("mL/min/1.73 m2")
    assert glued.dimensionality == ureg("mL/min/m**2").dimensionality
    assert abs(glued.to("mL/min/m**2").magnitude - 1 / 1.73) < 1e-12
    assert glued == spaced
    assert parse_unit("10^3/uL").to("1/uL").magnitude == 1000.0
    assert parse_unit("1e3/uL").to("1/uL").magnitude == 1000.0


def test_sdtm_censored_orres_keeps_its_range_in_the_original_unit(tmp_path):
    """diff2 A1: CRP LBORRES '<0.5' mg/dL with an exact LBSTRESN 5 mg/L and LBSTNRHI 5 mg/L (LBORNRHI empty):
    the record is read with LBORRESU (mg/dL), so its original-unit ULN is 5 mg/L = 0.5 mg/dL (1 mg/dL =
    10 mg/L), not 5 "mg/dL" (which re-read from an export would be a ULN of 50 mg/L)."""
    import pytest

    from cartlab.io.sdtm import read_sdtm
    from sdtm_helpers import folder

    lb = ("STUDYID,DOMAIN,USUBJID,LBSEQ,LBTESTCD,LBORRES,LBORRESU,LBORNRLO,LBORNRHI,LBSTRESC,LBSTRESN,LBSTRESU,"
          "LBSTNRLO,LBSTNRHI,LBLLOQ,LBSTAT,LBREASND,LBDTC\nS,LB,P1,1,CRP,<0.5,mg/dL,,,5,5,mg/L,,5,5,,,2021-05-11\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        o = read_sdtm(folder(tmp_path, lb=lb)).observations
    assert o["orig_unit"][0] == "mg/dL"
    assert o["uln"][0] == pytest.approx(5.0)
    assert o["orig_uln"][0] == pytest.approx(0.5)


def test_eligibility_options_file_errors_are_one_line(tmp_path):
    """diff2 B1: `cartlab eligibility --options` with broken YAML, or a key given twice, stops with one line
    naming the file and line (exit 2), as `cartlab analyze --options` does."""
    from typer.testing import CliRunner

    from cartlab.cli import app
    from cartlab.datasets import seed_case_path

    broken, twice = tmp_path / "broken.yaml", tmp_path / "twice.yaml"
    broken.write_text("protocol:\n  bsa_method: [mosteller\n")
    twice.write_text("protocol:\n  bsa_method: mosteller\n  bsa_method: dubois\n")
    for f, words in ((broken, "line"), (twice, "bsa_method")):
        res = CliRunner().invoke(app, ["eligibility", "CD7-AML-001", "--study", str(seed_case_path()),
                                       "--protocol", "nct04762485", "--options", str(f)])
        assert res.exit_code == 2, res.output
        lines = [x for x in res.output.splitlines() if x.strip()]
        assert len(lines) <= 2 and str(f.name) in res.output and words in res.output, res.output


def test_list_on_an_empty_duckdb_file_says_it_is_empty(tmp_path):
    """diff2 C1: an empty DuckDB file (e.g. left by an interrupted first import) is named as empty, with the
    import command that makes it a store, not "not a cartlab store"."""
    import duckdb
    from typer.testing import CliRunner

    from cartlab.cli import app

    f = tmp_path / "e.duckdb"
    duckdb.connect(str(f)).close()
    res = CliRunner().invoke(app, ["list", "--store", str(f)])
    assert res.exit_code == 2
    assert "an empty DuckDB file, no study imported into it yet" in res.output
    assert "not a cartlab store" not in res.output


def test_reimport_hint_keeps_the_other_stored_options(tmp_path):
    """diff2 B2: a stored SDTM study imported with --study-day-fallback and --partial-death-dates drop, then
    analysed with --partial-death-dates impute: refused, and the re-import command it suggests repeats
    --study-day-fallback (following the hint must not silently drop it)."""
    from typer.testing import CliRunner

    from cartlab.cli import app

    cart = Path(__file__).parent / "fixtures" / "sdtm_cart"
    store = tmp_path / "s.duckdb"
    r = CliRunner()
    res = r.invoke(app, ["import", "--sdtm", str(cart), "--study-id", "T1", "--partial-death-dates", "drop",
                         "--study-day-fallback", "--store", str(store)], env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    res = r.invoke(app, ["analyze", "T1", "--store", str(store), "--partial-death-dates", "impute", "--out",
                         str(tmp_path / "a")], env={"COLUMNS": "300"})
    text = " ".join(res.output.split())
    assert res.exit_code == 2, text
    hint = text[text.index("re-import it with:"):]
    assert "--partial-death-dates impute" in hint and "--study-day-fallback" in hint, hint
