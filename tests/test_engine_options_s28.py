"""Every documented engine option can be set (``--set`` / ``--options``) and is recorded in
analysis.json: the older CRS scales (``crs_legacy``) and the molecular engines (``molecular``:
molecular response, target-antigen loss) were not reachable before (docs audit, session 28)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cartlab.analyze import OPTION_CLASSES, Analysis, AnalysisOptions
from cartlab.cli import app
from cartlab.datasets.synthetic import synthetic_cohort
from cartlab.grading.crs_legacy import CrsLegacyOptions, derive_crs_cross_scale, organ_grades_from_adlb
from cartlab.io import read_study
from test_response import make

SEED = "src/cartlab/datasets/seed_case"


def test_antigen_loss_cutoff_is_an_analysis_option():
    # TGTBLAST 95% before infusion, 25% on day 28: below the default 30% (NCT04762485 eligibility,
    # MolecularOptions) it is antigen loss; with the cut-off set to 20% it is not
    s = make([(-7, "TGTBLAST", 95.0, "CD7"), (28, "TGTBLAST", 25.0, "CD7"), (28, "BMBLAST", 8.0)])
    default = Analysis(s).table("antigen_loss").filter(day=28.0)["antigen_loss"].to_list()
    low = Analysis(s, AnalysisOptions.from_settings({"molecular": {"antigen_negative_below_pct": 20}}))
    assert default == [True] and low.table("antigen_loss").filter(day=28.0)["antigen_loss"].to_list() == [False]


def test_crs_legacy_options_reach_the_cross_scale_table():
    # a synthetic cohort's labs are not daily, so "same_day" (no organ labs that day = unknown)
    # differs from the default look-back of one day (CrsLegacyOptions.organ_labs)
    s = read_study(synthetic_cohort(8, seed=3, days=(-7, 40)))
    opts = CrsLegacyOptions(organ_labs="same_day")
    a = Analysis(s, AnalysisOptions(crs_legacy=opts))
    want = derive_crs_cross_scale(s, a.table("crs_summary"), organ_grades_from_adlb(a.table("adlb")), options=opts)
    got = a.table("crs_cross_scale")  # the analysis adds the rules' *_status columns
    assert got.select(want.columns).equals(want)
    assert not Analysis(s).table("crs_cross_scale").select(want.columns).equals(want)


def test_set_from_the_cli_is_recorded_and_bad_values_are_one_message(tmp_path):
    r = CliRunner().invoke(app, ["analyze", SEED, "--out", str(tmp_path / "o"), "--set", "crs_legacy.organ_labs=same_day",
                                 "--set", "molecular.antigen_negative_below_pct=20"])
    assert r.exit_code == 0, r.output
    opts = json.loads((tmp_path / "o" / "analysis.json").read_text())["options"]
    assert opts["crs_legacy"]["organ_labs"] == "same_day" and opts["molecular"]["antigen_negative_below_pct"] == 20
    for bad, words in (("crs_legacy.organ_labs=bogus", "organ_labs must be one of"),
                       ("crs_legacy.nonsense=1", "unknown option crs_legacy.nonsense")):  # session 37: as written
        r = CliRunner().invoke(app, ["analyze", SEED, "--out", str(tmp_path / "x"), "--set", bad])
        assert r.exit_code == 2 and words in r.output and "internal error" not in r.output, r.output
        assert not (tmp_path / "x").exists()


def test_options_help_names_every_engine():
    r = CliRunner().invoke(app, ["analyze", "--help"], env={"COLUMNS": "2000", "TERMINAL_WIDTH": "2000"})
    text = " ".join(r.output.split())
    for engine in OPTION_CLASSES:
        assert engine in text, engine
