"""Engine options (session 30 options audit, /work/notes/audit_options): what analysis.json records
is what was applied, the record replays an analysis (``--options analysis.json``), every explanation
names its options, and values of the right type that cannot be meant are refused.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cartlab.analyze import Analysis, AnalysisOptions, describe_options, option_overrides
from cartlab.cli import app
from cartlab.errors import InputError
from cartlab.grading.crs import CrsOptions, derive_crs_daily
from cartlab.grading.crs_legacy import CrsLegacyOptions
from cartlab.grading.hematotox import IcahtOptions
from cartlab.io import write_study
from grading_helpers import drug, study


def _run(*args):
    res = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200", "CARTLAB_STORE": None})
    return res, " ".join(res.output.split())


def _bilirubin_study():
    """Bilirubin 3.6 mg/dL with ULN 1.2 mg/dL on day 5 (and a normal baseline 0.8 on day -1).
    CTCAE v5.0 'Blood bilirubin increased', baseline normal: grade 2 '>1.5 - 3.0 x ULN', grade 3
    '>3.0 - 10.0 x ULN'; 3.6 = 3.0 x 1.2 exactly, so grade 2 (by hand)."""
    obs = [
        {"subject_id": "A", "day": -1.0, "param": "BILI", "value": 0.8, "unit": "mg/dL", "lln": 0.1, "uln": 1.2},
        {"subject_id": "A", "day": 5.0, "param": "BILI", "value": 3.6, "unit": "mg/dL", "lln": 0.1, "uln": 1.2},
    ]
    return obs


def _folder(tmp_path, obs_rows):
    import polars as pl

    from cartlab.io import read_study

    d = tmp_path / "study"
    d.mkdir()
    pl.DataFrame([{"subject_id": "A", "sex": "F", "age_years": 40, "disease": "AML", "target": "CD7",
                   "infusion_date": "2024-01-10"}]).write_csv(d / "subjects.csv")
    pl.DataFrame(obs_rows).write_csv(d / "observations.csv")
    read_study(d)  # valid
    return d


def test_the_recorded_ctcae_precision_is_the_applied_one_and_replays(tmp_path):
    d = _folder(tmp_path, _bilirubin_study())
    res, text = _run("analyze", d, "--out", tmp_path / "a")
    assert res.exit_code == 0, text
    meta = json.loads((tmp_path / "a" / "analysis.json").read_text())
    # derive_ctcae compares a study's (converted) values at 11 significant digits when not set
    assert meta["options"]["ctcae"]["signif_digits"] == 11
    assert meta["options_set"] == {}

    def grade(folder):
        import polars as pl

        adlb = pl.read_csv(folder / "adlb.csv", infer_schema_length=None)
        return adlb.filter((pl.col("param") == "BILI") & (pl.col("day") == 5))["ATOXGRH"].to_list()

    assert grade(tmp_path / "a") == [2]
    # the recorded options, given back as an options file, give the same grade
    opts = tmp_path / "replay.yaml"
    opts.write_text(f"ctcae: {{signif_digits: {meta['options']['ctcae']['signif_digits']}}}\n")
    res, text = _run("analyze", d, "--out", tmp_path / "b", "--options", opts)
    assert res.exit_code == 0, text
    assert grade(tmp_path / "b") == [2]
    # and the default run does not list the applied precision as "not default"
    assert "ctcae.signif_digits" not in option_overrides(AnalysisOptions().to_dict())


def test_options_set_is_recorded_and_replayed_from_analysis_json(tmp_path):
    d = _folder(tmp_path, _bilirubin_study() + [
        {"subject_id": "A", "day": 2.3, "param": "TEMP", "value": 38.2, "unit": "C"}])
    res, text = _run("analyze", d, "--out", tmp_path / "a", "--set", "crs.fever_threshold_c=38.3")
    assert res.exit_code == 0, text
    meta = json.loads((tmp_path / "a" / "analysis.json").read_text())
    assert meta["options_set"] == {"crs": {"fever_threshold_c": 38.3}}
    # 38.2 C is below the 38.3 threshold set: no CRS (with the default 38.0 it would be grade 1)
    summary = (tmp_path / "a" / "subject_summary.csv").read_text()
    res, text = _run("analyze", d, "--out", tmp_path / "b", "--options", tmp_path / "a" / "analysis.json")
    assert res.exit_code == 0, text
    assert (tmp_path / "b" / "subject_summary.csv").read_text() == summary
    assert json.loads((tmp_path / "b" / "analysis.json").read_text())["options_set"] == meta["options_set"]
    res, text = _run("analyze", d, "--out", tmp_path / "c")
    assert (tmp_path / "c" / "subject_summary.csv").read_text() != summary  # the option mattered
    # explain with the analysis's options says which ones it used
    res, text = _run("explain", "A", "--study", d, "--what", "crs", "--options", tmp_path / "a" / "analysis.json")
    assert res.exit_code == 0, text
    assert "options not default: crs.fever_threshold_c = 38.3 (default 38.0)" in text
    # an analysis.json without options_set (written before it was recorded) is refused clearly
    old = {k: v for k, v in meta.items() if k != "options_set"}
    (tmp_path / "old.json").write_text(json.dumps(old))
    res, text = _run("analyze", d, "--out", tmp_path / "e", "--options", tmp_path / "old.json")
    assert res.exit_code == 2 and "has no 'options_set'" in text and "Traceback" not in text
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("what", ["easix", "hematotox", "recovery", "ctcae", "response", "kinetics", "crs-scales"])
def test_every_explanation_names_its_options(tmp_path, what):
    d = _folder(tmp_path, _bilirubin_study())
    res, text = _run("explain", "A", "--study", d, "--what", what)
    assert res.exit_code == 0, text
    assert "options: all defaults" in text
    res, text = _run("explain", "A", "--study", d, "--what", what, "--set", "easix.log_base=10")
    assert "options not default: easix.log_base = 10 (default 2)" in text


def test_a_changed_response_option_is_listed_once():
    o = AnalysisOptions.from_settings({"response": {"mrd_threshold": 0.001}})
    over = option_overrides(o.to_dict())
    assert list(over) == ["response.mrd_threshold"]
    assert over["response.mrd_threshold"][0] == 0.001
    assert describe_options({}) == "options: all defaults"


def test_settings_record_of_options_built_in_python():
    o = AnalysisOptions(crs=CrsOptions(fever_threshold_c=38.5), icaht=IcahtOptions(duration="longest_run"))
    assert o.settings_record() == {"crs": {"fever_threshold_c": 38.5}, "icaht": {"duration": "longest_run"}}


@pytest.mark.parametrize("kw, words", [
    ({"fever_threshold_c": 100.4}, "not a body temperature in degrees Celsius"),
    ({"fever_threshold_c": -5}, "not a body temperature"),
    ({"sbp_cutoff_mmhg": 9}, "not a systolic blood pressure"),
    ({"other_cause_event_window_days": (3, 0)}, "is reversed"),
    ({"waiver_categories": ("toci",)}, "unknown value(s) 'toci'"),
])
def test_values_that_cannot_be_meant_are_refused(kw, words):
    with pytest.raises(InputError, match=words.replace("(", r"\(").replace(")", r"\)")):
        CrsOptions(**kw)


def test_reversed_icaht_window_and_bad_scale_params_are_refused():
    with pytest.raises(InputError, match="early_window=\\[30, 0\\] is reversed"):
        IcahtOptions(early_window=(30, 0))
    with pytest.raises(ValueError, match="must be a mapping"):
        CrsLegacyOptions(scale_params=3)
    with pytest.raises(ValueError, match=r"scale_params.penn: unknown option\(s\) \['foo'\]"):
        CrsLegacyOptions(scale_params={"penn": {"foo": 1}})
    with pytest.raises(ValueError, match="not a body temperature"):
        CrsLegacyOptions(fever_threshold_c=100.4)


def test_the_cli_refuses_a_fahrenheit_threshold_in_one_line(tmp_path):
    d = _folder(tmp_path, _bilirubin_study())
    res, text = _run("analyze", d, "--out", tmp_path / "a", "--set", "crs.fever_threshold_c=100.4")
    assert res.exit_code == 2 and "fever_threshold_c=100.4 is not a body temperature" in text
    assert "Traceback" not in text and not (tmp_path / "a").exists()


def test_recorded_scale_params_are_the_applied_ones():
    rec = AnalysisOptions.from_settings({"crs_legacy": {"scale_params": {"lee2014": {"fio2_cutoff": 0.5}}}}).to_dict()
    sp = rec["crs_legacy"]["scale_params"]
    # every scale with its table's defaults (crs_lee2014.yaml: fio2_cutoff 0.4), the override applied
    assert sp["lee2014"]["fio2_cutoff"] == 0.5 and sp["cartox"]["fio2_cutoff"] == 0.4
    assert set(sp) == {"lee2014", "penn", "cartox", "mskcc"}


def test_waiver_categories_can_be_set():
    """ASTCT 2019 (Lee et al.), Table 1 footnote: fever need not be present after antipyretic or
    anti-cytokine therapy (tocilizumab, steroids). Case by hand: a corticosteroid for CRS on day 2,
    day 4 afebrile (37.0 C) with SBP 85 and no vasopressor. Default waiver (tocilizumab,
    corticosteroid): day 4 is CRS grade 2 (hypotension without vasopressor). With only tocilizumab
    waiving, day 4 has no fever and no waiver: not CRS (grade 0)."""
    obs = [("A", 2.3, "TEMP", 39.0), ("A", 4.3, "TEMP", 37.0), ("A", 4.5, "SYSBP", 85.0)]
    s = study(obs=obs, iv=[drug("corticosteroid", 2, agent="dexamethasone")])
    g = dict(derive_crs_daily(s).select("day", "grade").iter_rows())
    assert g[4] == 2
    g = dict(derive_crs_daily(s, CrsOptions(waiver_categories=("tocilizumab",))).select("day", "grade").iter_rows())
    assert g[4] == 0
    assert Analysis(s, AnalysisOptions.from_settings({"crs": {"waiver_categories": ["tocilizumab"]}})
                    ).options.to_dict()["crs"]["waiver_categories"] == ["tocilizumab"]


def test_the_adam_export_records_its_options_and_they_replay(tmp_path):
    d = _folder(tmp_path, _bilirubin_study())
    res, text = _run("export", d, "--adam", tmp_path / "adam", "--format", "csv", "--set", "crs.fever_threshold_c=38.3")
    assert res.exit_code == 0, text
    rec = json.loads((tmp_path / "adam" / "analysis_options.json").read_text())
    assert rec["options_set"] == {"crs": {"fever_threshold_c": 38.3}}
    assert rec["options"]["crs"]["fever_threshold_c"] == 38.3 and rec["options"]["ctcae"]["signif_digits"] == 11
    res, text = _run("analyze", d, "--out", tmp_path / "a", "--options", tmp_path / "adam" / "analysis_options.json")
    assert res.exit_code == 0, text
    assert json.loads((tmp_path / "a" / "analysis.json").read_text())["options_set"] == rec["options_set"]


def test_car_hematotox_names_the_low_risk_band():
    """Rejeski et al., Blood 2021: HT-low = score 0-1, HT-high >= 2 (criteria/car_hematotox_2021.yaml).
    By hand: PLT 200 (> 175: 0), ANC 3.0 x10^9/L = 3000/uL (> 1200: 0), Hb 130 g/L = 13 g/dL (> 9: 0),
    CRP 1 mg/L = 0.1 mg/dL (< 3: 0), ferritin 100 (< 650: 0): score 0, low risk, band 0-1."""
    from cartlab.grading.hematotox import derive_car_hematotox

    obs = [("A", -5.0, "PLAT", 200.0), ("A", -5.0, "NEUT", 3.0), ("A", -5.0, "HGB", 130.0),
           ("A", -5.0, "CRP", 1.0), ("A", -5.0, "FERRITIN", 100.0)]
    r = derive_car_hematotox(study(obs=obs)).row(0, named=True)
    assert (r["hematotox_score"], r["hematotox_risk"]) == (0, "low")
    assert r["reason"].endswith("-> score 0, low risk (score 0-1).")
