"""Session 36 lead mends. Expected values by hand from the rows written in each test."""

from __future__ import annotations

from pathlib import Path

from cartlab.io import read_study


def _plt_study(tmp: Path, rows: list[tuple[int, str, str]], param: str = "PLAT") -> Path:
    """One subject C1 (follow-up to day 100) with ``param`` rows (day, value, value_text) in 10^9/L."""
    d = tmp / "s"
    d.mkdir()
    (d / "subjects.csv").write_text("subject_id,last_followup_day\nC1,100\n")
    (d / "observations.csv").write_text("subject_id,day,param,value,value_text,unit\n" + "".join(
        f"C1,{day},{param},{v},{t},10^9/L\n" for day, v, t in rows))
    return d


def test_t_icaht_could_be_higher_names_the_censored_results_not_missing_days(tmp_path):
    """PLT 150 on day 0, "<50" every day 1-13, 150 on day 14: every early day has a count, so no day is
    missing; the censored "<50" leave "< 20" open (T-ICAHT levels 50 and 20). Known: < 50 on 13 days
    (>= 7 days -> grade 2, rule t_icaht.early.g2_plt50_ge7, Rejeski 2025 Table 1); read as < 20 on all
    13 days the grade could be 3 (< 20 for 1-13 days, t_icaht.early.g3_plt20_1_13; grade 4 needs >= 14). Before session 36 the reason said "0 day(s) of the early window have no platelet
    count" and did not name the censored results."""
    from cartlab.grading.t_icaht import derive_t_icaht

    # a count on day 22 too: no gap of more than 7 days (range_interpolation_gap_days, session 48) is left
    rows = [(0, "150", ""), *[(d, "", "<50") for d in range(1, 14)], (14, "150", ""), (22, "150", ""), (30, "150", "")]
    r = derive_t_icaht(read_study(_plt_study(tmp_path, rows))).row(0, named=True)
    assert (r["t_icaht_early_grade"], r["t_icaht_early_grade_max"], r["early_unknown_days"]) == (2, 3, 0)
    early = r["reason"].split(" Late: ")[0]
    assert "no platelet count" not in early
    assert "censored result(s) <50" in early and "on day 13 leave a deeper level open" in early


def test_icaht_could_be_higher_names_the_censored_results_not_missing_days(tmp_path):
    """ANC 3 on day 0, "<0.5" every day 1-13, 3 on day 14: every early day has a result. Known: ANC <= 0.5
    on 13 days (7-13 days -> grade 2, EHA/EBMT 2023 early ICAHT); the "<0.5" leave "<= 0.1" open, and
    13 days <= 0.1 (>= 7) would be grade 3. Before session 36 the reason said "0 day(s) of days 0-30
    (none) have no ANC" and did not name the censored results."""
    from cartlab.grading.icaht import derive_icaht

    # a count on day 22 too: no gap of more than 7 days (range_interpolation_gap_days, session 48) is left
    rows = [(0, "3", ""), *[(d, "", "<0.5") for d in range(1, 14)], (14, "3", ""), (22, "3", ""), (30, "3", "")]
    r = derive_icaht(read_study(_plt_study(tmp_path, rows, "NEUT"))).row(0, named=True)
    assert (r["icaht_early_grade"], r["icaht_early_grade_max"], r["early_unknown_days"]) == (2, 3, 0)
    early = r["reason"].split(" Late: ")[0]
    assert "have no ANC" not in early and "(none)" not in early
    assert "censored result(s) <0.5 on day 1," in early and "on day 13 leave a deeper level open" in early


def test_exposure_min_epv_is_an_analysis_option_recorded_and_applied(tmp_path):
    """review36_diff B1: the sparse-data threshold of the exposure-response odds ratio is an analysis
    option (`exposure.min_epv`), recorded in the options and applied. A synthetic 10-subject study has 5
    subjects in each fit (fewer than 10 events per variable: sparse at the default 10, Peduzzi 1996);
    with min_epv=0 the check is off."""
    from cartlab.analyze import Analysis, AnalysisOptions
    from cartlab.datasets.synthetic import synthetic_cohort
    from cartlab.kinetics.exposure import ExposureOptions

    study = read_study(synthetic_cohort(10, seed=9, out_dir=tmp_path / "s"))
    default = Analysis(study).table("exposure_response")
    off = Analysis(study, AnalysisOptions(exposure=ExposureOptions(min_epv=0)))
    assert default["logit_sparse"].any()
    assert not off.table("exposure_response")["logit_sparse"].any()
    assert off.options.to_dict()["exposure"] == {"min_epv": 0}
