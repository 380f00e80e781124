"""review38 diff2 mend (A1, B1-B4, B6-B8, C1-C6): SDTM partial dates and reader options, CLI usage
errors and report folders, the ADaM SAFFL of a study without doses, explain texts.

Expected values are derived by hand from the review's text (/work/notes/review38_diff2/REPORT.md) and
the standards it quotes (SDTMIG 4.4.4 "there is no study day 0", day 1 = RFSTDTC; the ADaM partial death
date: the first day of the period, not before the last known alive date), by calendar arithmetic written
out in the comments, never copied from cartlab's output. Day 0 = 2021-05-10 (the CAR-T EXSTDTC).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest

from cartlab.errors import InputError
from cartlab.io.sdtm import read_sdtm
from sdtm_helpers import DM, EX, LBH, deaths, folder, msgs  # noqa: F401

CEH = "STUDYID,DOMAIN,USUBJID,CESEQ,CETERM,CEDECOD,CESTDTC\n"
CEDYH = "STUDYID,DOMAIN,USUBJID,CESEQ,CETERM,CEDECOD,CESTDTC,CESTDY\n"


# A1 ---------------------------------------------------------------------------------------------

def test_a1_ce_partial_death_is_read(tmp_path):
    ce = CEH + "S,CE,P1,1,DEATH,DEATH,2021-07\n"
    s = read_sdtm(folder(tmp_path, ce=ce))
    # 2021-07-01 - 2021-05-10 = 21 (rest of May) + 30 (June) + 1 = day 52; no record after day 0
    assert deaths(s) == [52]
    assert any("CESTDTC '2021-07' is partial" in m for m in msgs(s))


def test_a1_ce_partial_death_drop_is_warned(tmp_path):
    ce = CEH + "S,CE,P1,1,DEATH,DEATH,2021-07\n"
    s = read_sdtm(folder(tmp_path, dm=DM.format(fl="Y", dth=""), ce=ce), partial_death_dates="drop")
    assert deaths(s) == []
    w = [m for m in msgs(s) if "although the subject died" in m]
    # one warning, naming the CE date; not also "no death date is given" (CE gives 2021-07)
    assert len(w) == 1 and "CESTDTC '2021-07' is partial and not read" in w[0]


# B1 ---------------------------------------------------------------------------------------------

def test_b1_sdtm_reader_options_recorded(tmp_path):
    s = read_sdtm(folder(tmp_path), partial_death_dates="drop", study_day_fallback=True)
    assert s.reader_options == {"partial_dates": "skip", "partial_death_dates": "drop",
                                "partial_event_dates": "impute", "study_day_fallback": True,
                                "unknown_indication": "count"}  # session 46 (review 46 SDTM F2)


# B7 ---------------------------------------------------------------------------------------------

def test_b7_partial_date_with_dy_default_one_message(tmp_path):
    ce = CEDYH + "S,CE,P1,1,SEIZURE,SEIZURE,2021-05,6\n"
    s = read_sdtm(folder(tmp_path, ce=ce))
    # the period 2021-05-01..31 contains day 0 (2021-05-10): the partial-date rule places it on day 0
    assert s.events.filter(pl.col("event") == "seizure")["day"].to_list() == [0]
    assert not any("were not read" in m for m in msgs(s))
    assert any("partial CESTDTC placed" in m for m in msgs(s))


def test_b7_partial_date_with_dy_fallback_uses_dy(tmp_path):
    ce = CEDYH + "S,CE,P1,1,SEIZURE,SEIZURE,2021-05,6\n"
    s = read_sdtm(folder(tmp_path, ce=ce), study_day_fallback=True)
    # SDTMIG: CESTDY 6 = 2021-05-15 (day 1 = RFSTDTC 2021-05-10) = day 5 after the infusion
    ev = s.events.filter(pl.col("event") == "seizure").row(0, named=True)
    assert ev["day"] == 5
    assert "partial date '2021-05'" in ev["source_note"] and "no date in" not in ev["source_note"]


# C1 ---------------------------------------------------------------------------------------------

def test_c1_record_on_last_day_of_period_is_in_it(tmp_path):
    lb = LBH + "S,LB,P1,1,CRP,5,5,mg/L,,2021-07-31T10:00\n"
    s = read_sdtm(folder(tmp_path, dm=DM.format(fl="Y", dth="2021-07"), lb=lb))
    # 2021-07-31 = day 52 + 30 = day 82: inside July, so the death is on day 82, no "after the period"
    assert deaths(s) == [82]
    w = [m for m in msgs(s) if "DTHDTC '2021-07' is partial" in m]
    assert len(w) == 1 and "after the period" not in w[0]


# B2 ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,flag", [({"sdtm_opts": {"partial_death_dates": "drop"}}, "--partial-death-dates"),
                                     ({"sdtm_opts": {"study_day_fallback": True}}, "--study-day-fallback"),
                                     ({"sdtm_opts": {"partial_event_dates": "drop"}}, "--partial-event-dates"),
                                     ({"partial_dates": "impute"}, "--partial-dates")])
def test_b2_reader_options_refused_on_a_study_folder(small_study, kw, flag):
    from cartlab.cli.interop import load_source

    with pytest.raises(InputError, match=flag.replace("-", r"\-") + ".* to --sdtm"):
        load_source(small_study, None, **kw)


def test_b2_defaults_accepted_on_a_study_folder(small_study, tmp_path):
    from cartlab.cli.interop import load_source

    data, _ = load_source(str(small_study), tmp_path / "no_store.duckdb", sdtm_opts={"partial_death_dates": "impute",
                                                        "partial_event_dates": "impute",
                                                        "study_day_fallback": False})
    assert data.subject_ids


# B3 ---------------------------------------------------------------------------------------------

def test_b3_arm_with_no_patients_prints():
    from cartlab.cli.simulate import _arm_line

    rate = {"k": 0, "n": 0}
    a = {"arm": "A", "n": 0, "n_response_evaluable": 0, "best_response": {},
         "solver": {"n_failed": 1, "failed": []},
         "rates": {k: rate for k in ("response_cr_crh_cri", "response_cr_crh_cri_mlfs", "icaht_early_ge3",
                                     "crs_ge3", "cd7neg_relapse")},
         "median_cmax_copies_per_ug": None, "median_tmax_day": None}
    assert "no patients (all excluded: solver failures" in _arm_line(a, None)


# B8 ---------------------------------------------------------------------------------------------

def test_b8_subject_force_keeps_report_marker(tmp_path):
    from cartlab.cli.analysis import _remove_report_files, _study_report_in
    from cartlab.io.atomic import EXPORT_MARKER
    from cartlab.report.study import REPORT_KIND, check_report_folder

    out = tmp_path / "r1"
    (out / "tables").mkdir(parents=True)
    (out / "index.html").write_text("<html></html>", encoding="utf-8")
    (out / EXPORT_MARKER).write_text(json.dumps({"cartlab_export": REPORT_KIND, "files": ["index.html", "tables"]}),
                                     encoding="utf-8")
    _remove_report_files(out, _study_report_in(out, True))
    (out / "subject_P1.html").write_text("<html></html>", encoding="utf-8")  # the subject page
    assert (out / EXPORT_MARKER).exists()
    assert check_report_folder(out, False) == out  # a later full report may replace it


# B6 ---------------------------------------------------------------------------------------------

def _analysis_json(tmp_path: Path) -> Path:
    from cartlab import __version__

    p = tmp_path / "analysis.json"
    p.write_text(json.dumps({"cartlab_version": __version__,
                             "options_set": {"protocol": {"max_shift_days": 3}, "crs": {"fever_threshold_c": 38.3}}}),
                 encoding="utf-8")
    return p


def test_b6_analysis_json_protocol_options_ignored_without_protocol(tmp_path):
    from cartlab.cli.base import analysis_options

    opts = analysis_options(_analysis_json(tmp_path), None, protocol="none", command="explain")
    assert opts.crs.fever_threshold_c == 38.3  # the rest of the analysis' options is replayed


def test_b6_set_protocol_option_still_refused(tmp_path):
    from cartlab.cli.base import analysis_options

    with pytest.raises(InputError, match="no protocol"):
        analysis_options(None, ["protocol.max_shift_days=3"], protocol="none", command="explain")


# B4 ---------------------------------------------------------------------------------------------

def test_b4_saffl_blank_when_doses_unknown():
    from cartlab.io.adam.exposure import AdamOptions, exposure

    study = SimpleNamespace(absent=frozenset({"doses"}), warnings=[])  # no doses.csv: doses unknown
    dates = pl.DataFrame({"USUBJID": ["P1"], "TRTSDT": [None], "TRTSDTM": [None], "TRT01P": ["CD7 CAR-T"],
                          "TRT01A": [None], "TRTEDT": [None]},
                         schema={"USUBJID": pl.String, "TRTSDT": pl.Date, "TRTSDTM": pl.Datetime,
                                 "TRT01P": pl.String, "TRT01A": pl.String, "TRTEDT": pl.Date})
    out = exposure(study, dates, AdamOptions(saffl_unknown="N"))
    # taken as infused (missing is not negative): not "N" (not in the safety population)
    assert out["SAFFL"].to_list() == [None]


# C2, C4 (seed case) -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seed_analysis():
    from cartlab.analyze import Analysis
    from cartlab.datasets import seed_case_path
    from cartlab.io import read_study

    return Analysis(read_study(seed_case_path()))


def test_c2_crs_defaults_not_said_twice(seed_analysis):
    from cartlab.explain import explain

    e = explain(seed_analysis, "crs", "CD7-AML-001")
    assert "options:" not in e.criteria


def test_c4_iec_hs_days_as_runs(seed_analysis):
    from cartlab.explain import explain

    e = explain(seed_analysis, "iec-hs", "CD7-AML-001")
    # runs of consecutive days are written a-b: three consecutive days never appear one by one
    import re

    listed = re.findall(r"\(([^()]*)\)", e.headline)
    for part in listed:
        nums = [int(x) for x in re.findall(r"(?<![\d.-])(\d+)(?=,|$)", part.replace(" ", ""))]
        assert not any(nums[i] + 1 == nums[i + 1] and nums[i + 1] + 1 == nums[i + 2] for i in range(len(nums) - 2))


# C3 ---------------------------------------------------------------------------------------------

def test_c3_mrd_relapse_row_has_no_invented_rule():
    import cartlab.explain as ex

    assert '"mrd relapse"' not in inspect.getsource(ex._response)


# C5, C6 -----------------------------------------------------------------------------------------

def test_c5_absent_interventions_names_the_legacy_option():
    from cartlab.io.course_checks import ABSENT_FILE_MEANS
    from cartlab.report.warnings_block import _ABSENT_MEANS

    assert "crs_legacy.absent_interventions" in ABSENT_FILE_MEANS["interventions"]
    assert "crs_legacy.absent_interventions" in _ABSENT_MEANS["interventions.csv"]


def test_c6_cli_twin_uses_no_private_model_method():
    import cartlab.cli.twin as t
    from cartlab.twin.params import load_params

    assert "._table()" not in inspect.getsource(t)
    assert t._param_table(SimpleNamespace(prior="cd7_twin_v1")) == load_params("cd7_twin_v1")
