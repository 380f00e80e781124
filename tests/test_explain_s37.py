"""Review 37 (report and explain) fixes on the explain / engine side: B8 (explain's worst CTCAE grade
= the report's), B3 (ICAHT / T-ICAHT ranges in explain), B10 (response rates: NE that could respond),
B7 (the earliest possible CRS onset), B6 (late ICAHT episode span). Expected values are derived by
hand from the standards' text (each test says how), never copied from cartlab's output."""

from __future__ import annotations

import polars as pl

from cartlab.explain import explain
from cartlab.model import Study, conform


def _subjects(**extra):
    return conform(pl.DataFrame({"subject_id": ["S1"], "disease": ["AML"], **extra}), "subjects")


def _doses():
    return conform(pl.DataFrame({"subject_id": ["S1"], "day": [0.0], "agent": ["CD7 CAR-T"], "dose": [1e6],
                                 "unit": ["cells/kg"]}), "doses")


def _obs(rows: list[tuple[float, str, float, str]], **cols) -> pl.DataFrame:
    data = {"subject_id": ["S1"] * len(rows), "day": [r[0] for r in rows], "param": [r[1] for r in rows],
            "value": [r[2] for r in rows], "unit": [r[3] for r in rows]}
    data.update({k: [v] * len(rows) for k, v in cols.items()})
    return conform(pl.DataFrame(data), "observations")


# --- B8: explain --what ctcae = the subject page's worst grades -------------------------------------


def test_b8_pre_infusion_grade_is_baseline_not_the_worst_grade():
    """ULN 40 U/L. The baseline record is the last value before the infusion: 30 U/L on day -1 (normal).
    ALT 100 U/L on day -5 = 2.5 x ULN: CTCAE v5 ALT increased grade 1 (baseline normal: > ULN - 3.0 x
    ULN), but it is before the baseline record. The only value after it, 30 U/L on day 2, is grade 0.
    The worst on-treatment grade reads post-baseline rows (admiral/tern 'highest grade post-baseline';
    the report's table from day 0 on): no ALT toxicity; the day -5 grade is listed as baseline. Old
    explain: 'worst lab grades: Alanine aminotransferase increased 1 (day -5)'."""
    obs = _obs([(-5.0, "ALT", 100.0, "U/L"), (-1.0, "ALT", 30.0, "U/L"), (2.0, "ALT", 30.0, "U/L")], uln=40.0)
    ex = explain(Study(study_id="t", subjects=_subjects(), doses=_doses(), observations=obs), "ctcae")
    head = ex.headline
    assert "worst lab grades" not in head
    assert "every graded lab value after the baseline is grade 0 (1 values)" in head
    assert "baseline (the baseline record and the values before it, not toxicities): " \
           "Alanine aminotransferase increased 1 (day -5)" in head


def test_b8_missing_uln_gives_the_range_and_days_are_rounded_as_the_report():
    """Creatinine 250 umol/L after a baseline of 93 (no ULN column): 250/93 = 2.69 x baseline, in
    CTCAE v5 'Creatinine increased' grade 2 (> 1.5 - 3.0 x baseline); without the ULN the x ULN
    criteria are not evaluable and grade 4 (> 6.0 x ULN) is not excluded: '2-4', ANRHI missing. The
    day 5.29583 reads 5.3 (cartlab._days: at most 2 decimals, trailing zero dropped). Old explain:
    'Creatinine increased 2 (day 5.29583)'."""
    obs = _obs([(-2.0, "CREAT", 93.0, "umol/L"), (5.29583, "CREAT", 250.0, "umol/L")])
    ex = explain(Study(study_id="t", subjects=_subjects(), doses=_doses(), observations=obs), "ctcae")
    assert "Creatinine increased 2-4 (day 5.3; ANRHI missing)" in ex.headline


def test_b8_report_and_explain_share_the_worst_grade_function():
    """The shared helper (cartlab.grading.lab_worst) gives the same grade, range and day the headline
    shows: one implementation for the subject page (report.diff) and explain."""
    from cartlab.analyze import Analysis
    from cartlab.grading.lab_worst import baseline_labs, worst_labs

    obs = _obs([(-2.0, "CREAT", 93.0, "umol/L"), (5.0, "CREAT", 250.0, "umol/L")])
    a = Analysis(Study(study_id="t", subjects=_subjects(), doses=_doses(), observations=obs))
    w = worst_labs(a.table("adlb")).row(0, named=True)
    assert (w["term"], w["grade"], w["grade_max"], w["day"], w["why"]) == ("Creatinine increased", 2, 4, 5.0,
                                                                          "ANRHI missing")
    assert baseline_labs(a.table("adlb")).height == 0  # 93 umol/L, no ULN: not graded above 0


# --- B3: ICAHT / T-ICAHT ranges in explain -----------------------------------------------------------


def _counts(param: str, unit: str, normal: float) -> Study:
    """A normal count every day 0-50, nothing on days 51-60; last follow-up day 60 (the late window:
    days 31-60). Days 51-60 could each have been a test below every level (missing is not negative):
    late grade 0 known, up to the grade two tests below the deepest level give (ICAHT: ANC <= 100/uL
    on >= 2 measurements = grade 4, Rejeski 2023)."""
    obs = _obs([(float(d), param, normal, unit) for d in range(0, 51)])
    return Study(study_id="t", subjects=_subjects(last_followup_day=[60.0]), doses=_doses(), observations=obs)


def test_b3_explain_icaht_shows_the_late_range_naming_the_days():
    ex = explain(_counts("NEUT", "10^9/L", 3.0), "icaht")
    # old headline: "early ICAHT grade 0, late ICAHT grade 0." (a definite 0)
    assert "early ICAHT grade 0, late ICAHT grade 0-4 (10 day(s) of the late window (days 51-60) have no ANC" \
        in ex.headline


def test_b3_explain_t_icaht_shows_the_late_range():
    from cartlab.analyze import Analysis

    a = Analysis(_counts("PLAT", "10^9/L", 200.0))
    hi = a.table("t_icaht").row(0, named=True)["t_icaht_late_grade_max"]
    assert hi is not None and hi > 0  # the 10 days without a count leave a higher grade open
    ex = explain(a, "t-icaht")
    assert f"late T-ICAHT grade 0-{hi} (" in ex.headline  # old: "late T-ICAHT grade 0"


# --- B10: response rates with the NE that could be responders -----------------------------------------


def test_b10_rates_count_the_subjects_that_could_be_responders():
    """A CR, B NE that could be CR/CRi (peripheral blasts missing), C NR, D MLFS that could be CRi.
    ORR {CR, CRh, CRi, MLFS, PR}: responders A, D = 2 of 4 (ITT, ELN 2022: NE a non-responder); B could
    reach it -> up to 3 of 4 = 0.75. CR/CRh/CRi: responder A = 1 of 4; B (CR/CRi) and D (CRi) could
    reach it -> up to 3 of 4 = 0.75."""
    from cartlab.response.best import orr

    best = pl.DataFrame({"subject_id": ["A", "B", "C", "D"], "best_response": ["CR", "NE", "NR", "MLFS"],
                         "criteria": ["ELN 2022 AML"] * 4,
                         "could_be": [[], ["CR", "CRi"], [], ["CRi"]],
                         "missing_inputs": [[], ["peripheral blasts"], [], ["ANC"]]})
    o = orr(best, ("CR", "CRh", "CRi", "MLFS", "PR")).row(0, named=True)
    assert (o["n"], o["n_responders"], o["n_could_be_responders"], o["rate_max"]) == (4, 2, 1, 0.75)
    assert "B (NE; could be CR/CRi: peripheral blasts)" in o["reason"]
    c = orr(best, ("CR", "CRh", "CRi")).row(0, named=True)
    assert (c["n_responders"], c["n_could_be_responders"], c["rate_max"]) == (1, 2, 0.75)
    per = orr(best, ("CR", "CRh", "CRi"), by="criteria").row(0, named=True)
    assert (per["n_could_be_responders"], per["rate_max"]) == (2, 0.75)


# --- B7: the earliest possible CRS onset ------------------------------------------------------------


def _crs_study() -> Study:
    """Day 0 37.0 C; days 1-3 SBP 110 but no temperature; day 4 38.5 C (fever: ASTCT grade 1); day 5
    37.0 C. ASTCT 2019: onset = the first day of fever; days 1-3 could each have had one (grade 0-1),
    so the onset is day 4 at the latest and could be day 1."""
    rows = [(0.0, "TEMP", 37.0, "C"), (0.0, "SYSBP", 115.0, "mmHg")]
    rows += [(float(d), "SYSBP", 110.0, "mmHg") for d in (1, 2, 3)]
    rows += [(4.0, "TEMP", 38.5, "C"), (4.0, "SYSBP", 112.0, "mmHg"), (5.0, "TEMP", 37.0, "C"),
             (5.0, "SYSBP", 118.0, "mmHg")]
    return Study(study_id="t", subjects=_subjects(), doses=_doses(), observations=_obs(rows))


def test_b7_crs_summary_gives_the_earliest_possible_onset():
    from cartlab.grading.crs import derive_crs_summary

    r = derive_crs_summary(_crs_study()).row(0, named=True)
    assert (r["crs_grade_astct"], r["crs_onset_day"], r["crs_onset_day_earliest"]) == (1, 4.0, 1.0)
    assert r["crs_onset_open"] == "day(s) 1, 2, 3: TEMP not recorded"


def test_b7_settled_onset_has_no_earliest_day():
    """Day 0-3 all with a temperature below 38 C: the onset (day 4) is settled -> empty."""
    from cartlab.grading.crs import derive_crs_summary

    rows = [(float(d), "TEMP", 37.0, "C") for d in range(4)] + [(4.0, "TEMP", 38.5, "C")]
    s = Study(study_id="t", subjects=_subjects(), doses=_doses(), observations=_obs(rows))
    r = derive_crs_summary(s).row(0, named=True)
    assert (r["crs_onset_day"], r["crs_onset_day_earliest"], r["crs_onset_open"]) == (4.0, None, None)


def test_b7_explain_names_the_missing_input_behind_the_open_onset():
    ex = explain(_crs_study(), "crs")
    assert ("onset day 4 (day 1 if the inputs that leave the grade of the earlier days a range reach CRS: "
            "day(s) 1, 2, 3: TEMP not recorded)") in ex.headline


# --- B6: late ICAHT episode span -----------------------------------------------------------------------


def _late_icaht() -> Study:
    """ANC 3.0 on days 0-30 (no early ICAHT); late window 31-60 (last follow-up 60): 0.68 (d33),
    0.93 (d34), 2.0 (d40), 0.94 (d44), 2.0 (d50), 1.0 (d56), 2.0 (d60). Rejeski 2023 late ICAHT grade 2
    = ANC <= 1000/uL on >= 2 measurements (none <= 500): the qualifying tests are days 33, 34, 44, 56
    (4 measurements), so the span is 33-56 with no duration."""
    rows = [(float(d), "NEUT", 3.0, "10^9/L") for d in range(0, 31)]
    rows += [(33.0, "NEUT", 0.68, "10^9/L"), (34.0, "NEUT", 0.93, "10^9/L"), (40.0, "NEUT", 2.0, "10^9/L"),
             (44.0, "NEUT", 0.94, "10^9/L"), (50.0, "NEUT", 2.0, "10^9/L"), (56.0, "NEUT", 1.0, "10^9/L"),
             (60.0, "NEUT", 2.0, "10^9/L")]
    return Study(study_id="t", subjects=_subjects(last_followup_day=[60.0]), doses=_doses(), observations=_obs(rows))


def test_b6_late_icaht_episode_spans_the_qualifying_measurements():
    from cartlab.grading.adam import derive_adae_toxicity
    from cartlab.grading.icaht import derive_icaht_episodes

    s = _late_icaht()
    late = derive_icaht_episodes(s).filter(pl.col("episode") == 2).row(0, named=True)
    assert (late["ATOXGR"], late["ASTDY"], late["AENDY"], late["ADURN"]) == (2, 33, 56, None)
    assert "the 4 ANC measurement(s) of the late window (days 31-60) at or below the grade's level, on day(s) " \
           "33, 34, 44, 56" in late["reason"]
    adae = derive_adae_toxicity(s, [derive_icaht_episodes(s)]).row(0, named=True)
    assert (adae["ASTDY"], adae["ADURN"], adae["ADURU"]) == (33, None, None)


def test_b6_window_option_keeps_the_assessment_window():
    from cartlab.grading.icaht import IcahtOptions, derive_icaht_episodes

    late = derive_icaht_episodes(_late_icaht(), IcahtOptions(late_episode_span="window")).filter(
        pl.col("episode") == 2).row(0, named=True)
    assert (late["ASTDY"], late["AENDY"], late["ADURN"]) == (31, 60, 30)  # days 31-60 inclusive = 30 days


# --- C2 / C3: rules behind the headline; one rounding ------------------------------------------------


def test_c2_crs_headline_names_its_rule():
    """Grade 1 on day 4 from a fever alone: criteria/astct_crs_2019.yaml row crs.fever (grade 1, tmax_c
    >= fever_threshold_c). The headline's rule is listed (its status is printed whatever it is)."""
    assert explain(_crs_study(), "crs").rules == ("crs.fever",)


def test_c3_kinetics_auc_rounded_as_the_report():
    """The seed's AUC0-28 is 1646461.507 (test_report_subject_s26); the report prints whole numbers at or
    above 1000 (report fmt_value: 1,646,462); explain now prints the same, not 1,646,461.5."""
    from cartlab.datasets import seed_case

    e = explain(seed_case(), "kinetics")
    assert "AUC0-28 1,646,462 " in e.headline and "1,646,461.5" not in e.headline
