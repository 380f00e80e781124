"""Review 33: the report and the dashboard show what the analysis tables say.

Each test fails on the code before session 33:
* A1: the duration-of-response sentence printed the response-assessment window's end ("censored at
  allo_hsct on day 40") beside a duration that runs to the last known-alive day;
* B1: a late (T-)ICAHT grade that is a range was shown as one grade;
* B2: a CTCAE lab grade that is only a lower bound (ULN missing) was shown as definite and not
  counted as "could be higher";
* C1-C7: ICAHT caption per term, LFS in the survival table, Cmax/AUC 0 of an all-BLQ profile, days
  to 2 decimals in the sentences, "% of evaluable" to one decimal, ICANS grade 0 without an episode.

Expected values are derived by hand from the definitions quoted in each test (ELN 2022 Table 9,
CTCAE v5.0, T-ICAHT 2025), never from cartlab's output.
"""

from __future__ import annotations

import warnings

import polars as pl
import pytest

from cartlab.analyze import Analysis
from cartlab.model import Study, conform
from cartlab.response import BestResponseOptions, derive_best_response


def _study(obs, subjects, events=(), study_id="s33") -> Study:
    rows = [{"src_file": "observations.csv", "src_row": i + 1, "source": "synthetic", **r} for i, r in enumerate(obs)]
    ev = [{"src_file": "events.csv", "src_row": i + 1, **e} for i, e in enumerate(events)]
    doses = [{"subject_id": s["subject_id"], "day": 0.0, "agent": "CAR-T", "dose": 1e6, "unit": "cells/kg"}
             for s in subjects]
    return Study(
        study_id=study_id,
        subjects=conform(pl.DataFrame(subjects, infer_schema_length=None), "subjects"),
        doses=conform(pl.DataFrame(doses), "doses"),
        observations=conform(pl.DataFrame(rows, infer_schema_length=None), "observations"),
        events=(conform(pl.DataFrame(ev, infer_schema_length=None), "events") if ev
                else conform(pl.DataFrame(), "events").clear()),
    )


def _o(sid, day, param, value=None, unit=None, text=None, **kw):
    return {"subject_id": sid, "day": float(day), "param": param, "value": value, "value_text": text,
            "unit": unit, **kw}


def _analysis(study: Study) -> Analysis:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = Analysis(study)
        a.tables()
    return a


# -- A1 + C4: the duration of response -------------------------------------------------------------


def _marrow(sid, day, bm, anc, plt):
    return [_o(sid, day, "BMBLAST", bm, "%"), _o(sid, day, "PBBLAST", 0.0, "%"),
            _o(sid, day, "NEUT", anc, "10^9/L"), _o(sid, day, "PLAT", plt, "10^9/L")]


def _dor_study(events):
    # A: blasts 40% before; day 14.2917 (07:00): BM 3%, ANC 0.2, PLT 20 -> MLFS (ELN 2022 Table 7: < 5%
    # blasts, no count recovery), the first response; day 28 CR (ANC 1.5, PLT 120); day 56 CR again
    # after the allo-HSCT on day 40. Last follow-up day 100.
    obs = [_o("A", -5, "BMBLAST", 40.0, "%"), *_marrow("A", 14.2917, 3.0, 0.2, 20.0),
           *_marrow("A", 28, 1.0, 1.5, 120.0), *_marrow("A", 56, 2.0, 1.5, 120.0)]
    subjects = [{"subject_id": "A", "disease": "AML", "sex": "F", "age_years": 50.0, "last_followup_day": 100.0}]
    return _study(obs, subjects, [{"subject_id": "A", **e} for e in events])


def test_dor_runs_to_last_known_alive_and_the_sentence_says_so_not_the_hsct():
    """ELN 2022 Table 9 (docs/derivation-conventions.md): duration of response from the first
    response to relapse or death; without either it is censored when last known alive, and an
    allo-HSCT censors it only with the option dor_censor_events. Here: day 14.29 to day 100 (last
    follow-up) = 100 - 14 = 86 whole calendar days, censored; the HSCT on day 40 only ends the
    assessments counted for the best response."""
    from cartlab.report.subject_blocks import dor_text

    s = _dor_study([{"day": 40.0, "event": "allo_hsct"}])
    # session 37: with dor_censor="last_known_alive" (the behaviour of session 33)
    b = derive_best_response(s, BestResponseOptions(dor_censor="last_known_alive")).row(0, named=True)
    assert (b["first_response_day"], b["dor_days"], b["dor_event"]) == (14.2917, 86.0, False)
    assert (b["dor_end_day"], b["dor_end_reason"]) == (100.0, "last known alive (last_followup_day)")
    assert (b["end_day"], b["end_reason"]) == (40.0, "allo_hsct")  # the assessment window, unchanged
    # the default since session 37 censors at the last response assessment (ELN "last examined"):
    # the CR of day 56, after the HSCT, which does not censor -> 56 - 14 = 42 whole calendar days
    b = derive_best_response(s).row(0, named=True)
    assert (b["dor_days"], b["dor_event"], b["dor_end_day"]) == (42.0, False, 56.0)
    text = dor_text(_analysis(s), "A")
    assert text.startswith("42 days from the first response on day 14.29 (calendar day 14) to day 56 (whole calendar days), "
                           "censored: last response assessment (CR on day 56")
    assert "censored at allo_hsct" not in text and "14.2917" not in text
    assert "window ends at allo_hsct on day 40 (this does not censor the duration)" in text


def test_dor_censored_at_hsct_by_option_and_ended_by_relapse():
    # option dor_censor_events=("allo_hsct",): censored at the last response assessment before the
    # day-40 HSCT (session 37 default), the CR of day 28 -> 28 - 14 = 14 days; with
    # dor_censor="last_known_alive", on day 40 itself -> 40 - 14 = 26 days
    s = _dor_study([{"day": 40.0, "event": "allo_hsct"}])
    b = derive_best_response(s, BestResponseOptions(dor_censor_events=("allo_hsct",))).row(0, named=True)
    assert (b["dor_days"], b["dor_event"], b["dor_end_day"]) == (14.0, False, 28.0)
    assert b["dor_end_reason"].startswith("allo_hsct (option dor_censor_events): last response assessment before "
                                          "it (CR on day 28")
    b = derive_best_response(s, BestResponseOptions(dor_censor_events=("allo_hsct",),
                                                    dor_censor="last_known_alive")).row(0, named=True)
    assert (b["dor_days"], b["dor_event"], b["dor_end_day"]) == (26.0, False, 40.0)
    assert b["dor_end_reason"] == "allo_hsct (option dor_censor_events)"
    # a relapse event on day 70 (no HSCT): an event, 70 - 14 = 56 days
    from cartlab.report.subject_blocks import dor_text

    r = _dor_study([{"day": 70.0, "event": "relapse"}])
    b = derive_best_response(r).row(0, named=True)
    assert (b["dor_days"], b["dor_event"], b["dor_end_day"], b["dor_end_reason"]) == (56.0, True, 70.0, "relapse")
    assert dor_text(_analysis(r), "A").startswith(
        "56 days from the first response on day 14.29 (calendar day 14) to relapse on day 70 (whole calendar days), an event")


# -- B1: the late (T-)ICAHT range --------------------------------------------------------------------


def test_study_table_and_dashboard_show_the_late_icaht_range():
    from cartlab.app.cohort import cohort_display
    from cartlab.app.server import icaht_late_text
    from cartlab.report.study import SUBJECT_TABLE, _subject_cells

    # late grade 3 whose days without an ANC could make it 4 (icaht_late_grade_max 4): "3–4"
    row = {"icaht_early_grade": 1, "icaht_late_grade": 3, "icaht_early_grade_max": 1, "icaht_late_grade_max": 4}
    k = [i for i, (_, cols, _) in enumerate(SUBJECT_TABLE) if cols[0] == "icaht_early_grade"][0]
    assert _subject_cells(row, None)[k]["text"] == "1 / 3–4"
    assert icaht_late_text(row).startswith("3–4 (range: days of the late window without an ANC")
    shown = cohort_display(pl.DataFrame({"subject_id": ["a", "b"], "icaht_late_grade": [3, 2],
                                         "icaht_late_grade_max": [4, 2]}))
    assert shown["icaht_late"].to_list() == ["3–4", "2"]


@pytest.fixture(scope="module")
def late_range():
    # T-ICAHT 2025 late window (after day 30): PLT < 20 x10^9/L on 1-13 days (>= 2 measurements) = grade
    # 3, >= 14 days = grade 4. T: PLT 150 on days 0-30, 10 on days 31-40 (10 days < 20), nothing after;
    # no last_followup_day, so the window runs to day 100: the 60 days without a count could add the 4
    # days that make 14 -> grade 3, could be 4.
    obs = [_o("T", d, "PLAT", 150.0, "10^9/L") for d in range(31)]
    obs += [_o("T", d, "PLAT", 10.0, "10^9/L") for d in range(31, 41)]
    obs += [_o("T", d, "NEUT", 2.0, "10^9/L") for d in range(41)]
    subjects = [{"subject_id": "T", "disease": "AML", "sex": "M", "age_years": 60.0}]
    return _analysis(_study(obs, subjects))


def test_subject_page_shows_the_late_t_icaht_range(late_range):
    from cartlab.report.subject_blocks import _of, _worst_grades

    t = late_range.table("t_icaht").row(0, named=True)
    assert (t["t_icaht_late_grade"], t["t_icaht_late_grade_max"]) == (3, 4)  # by hand, above
    rows = {r["toxicity"]: r for r in _worst_grades(late_range, "T", None, _of(late_range, "icaht", "T"))
            .iter_rows(named=True)}
    late = rows["T-ICAHT, late (after day 30)"]
    assert late["grade"] == ("3–4 (range: days of the late window without a platelet count are not counted)")
    assert late["missing"] == "days of the late window without a platelet count are not counted"


def test_summary_gains_the_late_icaht_max_and_keeps_the_spec_columns(late_range):
    from cartlab.report.subject_blocks import with_late_grade_max

    # since session 33 analyze's own summary carries icaht_late_grade_max (steps._icaht_summary):
    # with_late_grade_max adds it to a summary without it (e.g. one written by an earlier version)
    base = late_range.subject_summary().drop("icaht_late_grade_max")
    out = with_late_grade_max(base, late_range)
    assert out.columns == [*base.columns, "icaht_late_grade_max"]
    assert out.drop("icaht_late_grade_max").equals(base)
    assert out["icaht_late_grade_max"].to_list() == late_range.subject_summary()["icaht_late_grade_max"].to_list()


# -- B2: a CTCAE grade that is only a lower bound -----------------------------------------------------


@pytest.fixture(scope="module")
def creat():
    # CTCAE v5.0 Creatinine increased: G1 > ULN - 1.5 x ULN; G2 > 1.5 - 3.0 x baseline, > 1.5 - 3.0 x ULN;
    # G3 > 3.0 x baseline, > 3.0 - 6.0 x ULN; G4 > 6.0 x ULN.
    # U (no ULN): baseline 80, day 6 140 = 1.75 x baseline -> grade 2; without the ULN grades 3 (> 3 x ULN)
    #   and 4 (> 6 x ULN) cannot be excluded -> 2-4.
    # K (ULN 100): baseline 80, day 6 140 = 1.4 x ULN (G1), 1.75 x baseline (G2) -> 2; G3 needs > 240
    #   (3 x baseline) or > 300 (3 x ULN): settled at 2.
    obs = [_o("U", -5, "CREAT", 80.0, "umol/L"), _o("U", 6, "CREAT", 140.0, "umol/L"),
           _o("K", -5, "CREAT", 80.0, "umol/L", uln=100.0), _o("K", 6, "CREAT", 140.0, "umol/L", uln=100.0)]
    subjects = [{"subject_id": s, "disease": "AML", "sex": "F", "age_years": 50.0, "last_followup_day": 30.0}
                for s in ("U", "K")]
    return _analysis(_study(obs, subjects))


def test_ctcae_engine_gives_the_upper_bound_in_a_column(creat):
    day6 = creat.table("adlb").filter(pl.col("day") == 6).sort("subject_id")
    got = {r["subject_id"]: (r["ATOXGRH"], r["ATOXGRH_MAX"], r["ATOXGR"]) for r in day6.iter_rows(named=True)}
    assert got == {"K": (2, None, 2), "U": (2, 4, 2)}  # ATOXGR (ADaM) stays the lower grade


def test_toxicity_summary_and_subject_page_show_the_lab_range(creat):
    from cartlab.report.cohort_stats import toxicity_summary
    from cartlab.report.subject_blocks import _toxicity_block

    row = toxicity_summary(creat).filter(pl.col("Term") == "Creatinine increased").row(0, named=True)
    assert (row["N evaluable"], row["Grade 2 n (%)"], row["Could be higher n"]) == (2, "2 (100.0%)", 1)
    cells = {sid: _toxicity_block(creat, sid)["ctcae"]["rows"][0]["cells"] for sid in ("U", "K")}
    assert cells["U"][:2] == ["Creatinine increased", "2–4 (range: ANRHI missing)"]
    assert cells["K"][:2] == ["Creatinine increased", "2"]


# -- C1, C2, C3, C5, C7 ------------------------------------------------------------------------------


class _NoFigures:
    def __getattr__(self, name):
        return lambda *a, **k: None


def test_icaht_caption_names_the_term_whose_grade_could_be_higher(late_range):
    from cartlab.report.cohort_views import view_specs

    cap = {v.key: v.caption for v in view_specs(late_range, None, _NoFigures())}["icaht"]
    assert "T-ICAHT late (after day 30): 1 subject(s) could have a higher grade" in cap
    assert "early grade(s) could be higher" not in cap


def test_survival_table_has_lfs():
    from cartlab.report.cohort_stats import survival_data

    # A reaches MLFS/CR, so it is in the LFS population (ELN 2022 Table 9: from CR/CRh/CRi or MLFS)
    d = survival_data(_analysis(_dor_study([])))
    assert "LFS" in d.shown_table()["PARAMCD"].to_list()


def test_all_blq_cmax_and_auc_are_worded():
    from cartlab.report.study import SUBJECT_TABLE, _subject_cells

    heads = [h for h, _, _ in SUBJECT_TABLE]
    cells = _subject_cells({"car_cmax": 0.0, "car_tmax": None, "car_auc_0_28": 0.0}, None)
    assert cells[heads.index("CAR Cmax (day)")]["text"] == "0 (all samples below LLOQ)"
    assert cells[heads.index("CAR AUC₀₋₂₈")]["text"] == "0 (all samples in the window below LLOQ)"
    assert _subject_cells({"car_cmax": 1500.0, "car_tmax": 7.0}, None)[heads.index("CAR Cmax (day)")]["text"] \
        == "1,500 (d7)"


def test_percent_of_evaluable_has_one_decimal_in_report_and_dashboard():
    from cartlab.app.cohort import display_frame
    from cartlab.report.cohort_views import PCT_OF_EVALUABLE, _grade_table
    from cartlab.report.study import _frame_table

    # 16, 2 and 11 of 39 evaluable: 41.03%, 5.128%, 28.21% -> 41.0, 5.1, 28.2
    counts = pl.DataFrame({"grade": [1, 2, 3], "n": [16, 2, 11], "pct": [100 * 16 / 39, 100 * 2 / 39, 100 * 11 / 39]})
    shown = _grade_table(counts)
    k = shown.columns.index(PCT_OF_EVALUABLE)
    assert [r["cells"][k] for r in _frame_table(shown)["rows"]] == ["41.0", "5.1", "28.2"]
    assert display_frame(shown)[PCT_OF_EVALUABLE].to_list() == [41.0, 5.1, 28.2]


def test_icans_grade_0_is_not_sent_to_the_episode_table():
    from cartlab.report.subject_blocks import _of, _worst_grades

    # ICE 10 (no impairment) and awake on days 0-8: ASTCT 2019 ICANS grade 0 every day -> no episode row
    obs = [_o("Z", d, "ICE", 10.0) for d in range(9)] + [_o("Z", d, "LOC", text="awake") for d in range(9)]
    a = _analysis(_study(obs, [{"subject_id": "Z", "disease": "AML", "sex": "F", "age_years": 50.0,
                                "last_followup_day": 30.0}]))
    icans = {r["toxicity"]: r for r in _worst_grades(a, "Z", _of(a, "icans_daily", "Z"), None).iter_rows(named=True)}
    r = icans["ICANS (ASTCT 2019)"]
    assert r["grade"] == "0"
    assert r["reason"] == "no ICANS episode: grade 0 on every assessed day (days 0–8)"


def test_explain_names_the_duration_of_response_end():
    """Seed case: MLFS on day 17 (case-facts), no relapse or death, its only marrow: censored at the
    last response assessment (session 37 default, ELN "last examined") -> 17 - 17 = 0 days; with
    dor_censor="last_known_alive", last_followup_day 60 -> 60 - 17 = 43 days. explain names the end."""
    from cartlab.analyze import Analysis, AnalysisOptions
    from cartlab.datasets import seed_case
    from cartlab.explain import explain

    e = explain(Analysis(seed_case()), "endpoints")
    text = " ".join(e.days["reason"].to_list())
    assert "0 days to day 17 (last response assessment" in text and "censored" in text
    o = AnalysisOptions.from_settings({"best_response": {"dor_censor": "last_known_alive"}})
    text = " ".join(explain(Analysis(seed_case(), o), "endpoints").days["reason"].to_list())
    assert "43 days to day 60 (last known alive" in text and "censored" in text
