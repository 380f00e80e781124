"""Session 47 (review 47 #1): the cohort toxicity views count the safety population, the infused set.

A subject without a CAR-T dose (when other subjects have one) received no product: its CRS, ICANS, ICAHT
and lab grades are not attributed to it in the grade distribution, the cross-scale table, the ICAHT
distribution and the toxicity summary, and a note names it, as the survival and response views already
do (option ``endpoints.population``; "all" keeps everyone). Expected counts by hand from the frames below.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from cartlab.analyze import Analysis, AnalysisOptions
from cartlab.io import read_study
from cartlab.report import cohort_data as cd
from cartlab.report.cohort_views import view_specs
from cartlab.response.endpoint_options import EndpointOptions
from test_report_cohort import _adopt as adopt


def _study(tmp_path: Path, doses: bool = True):
    """A, B infused (CAR-T day 0); C enrolled, no CAR-T dose (no CARCOPY either)."""
    f = tmp_path / "study"
    f.mkdir(parents=True, exist_ok=True)
    (f / "subjects.csv").write_text("subject_id,disease,target,last_followup_day,source\n"
                                    + "".join(f"{s},AML,CD7,30,\n" for s in "ABC"), encoding="utf-8")
    if doses:
        (f / "doses.csv").write_text("subject_id,day,agent,dose,unit,source\nA,0,CAR-T,1,10^6 cells/kg,\n"
                                     "B,0,CAR-T,1,10^6 cells/kg,\n", encoding="utf-8")
    return read_study(f)


def _adopt(study, options=None, **tables: pl.DataFrame) -> Analysis:
    return adopt(study, options=options, **tables)


CRS = pl.DataFrame({"subject_id": list("ABC"), "crs_grade_astct": [1, 2, 3]}, schema_overrides={"crs_grade_astct": pl.Int64})
ICAHT = pl.DataFrame({"subject_id": list("ABC"), "icaht_early_grade": [1, 1, 4], "icaht_late_grade": [0, 0, 3]},
                     schema_overrides={"icaht_early_grade": pl.Int64, "icaht_late_grade": pl.Int64})


def _n(counts: pl.DataFrame, term: str, grade: int | None) -> int:
    c = counts.filter(pl.col("term") == term)
    c = c.filter(pl.col("grade").is_null() if grade is None else pl.col("grade") == grade)
    return int(c["n"].sum())


def test_grade_and_icaht_distributions_count_the_infused(tmp_path):
    a = _adopt(_study(tmp_path), crs_summary=CRS, icaht=ICAHT)
    d = cd.grade_distribution(a)
    # by hand: A grade 1, B grade 2; C (grade 3) not infused -> not counted at all (not even as not evaluable)
    assert (_n(d.counts, "CRS", 1), _n(d.counts, "CRS", 2), _n(d.counts, "CRS", 3), _n(d.counts, "CRS", None)) == (1, 1, 0, 0)
    assert any("C not counted" in n and "endpoints.population=infused" in n for n in d.notes)
    i = cd.icaht_distribution(a)
    early = i.counts.filter(pl.col("term").str.starts_with("ICAHT early"))
    assert int(early.filter(pl.col("grade") == 1)["n"].sum()) == 2 and int(early.filter(pl.col("grade") == 4)["n"].sum()) == 0
    assert any("C not counted" in n for n in i.notes)


def test_toxicity_summary_denominator_is_the_infused_set(tmp_path):
    a = _adopt(_study(tmp_path), crs_summary=CRS)
    row = cd.toxicity_summary(a, include_labs=False).filter(pl.col("Scale") == "ASTCT 2019").row(0, named=True)
    # by hand: N = 2 (A, B); grade >= 3: none of them (C's grade 3 is not counted)
    assert (row["N evaluable"], row["Not evaluable"], row["Grade >=3 n (%)"]) == (2, 0, "0 (0.0%)")
    caps = {v.key: v.caption for v in view_specs(a, None, _NoFigures())}
    assert "C not counted" in caps["toxicity"] and "C not counted" in caps["crs_icans_grades"]


class _NoFigures:
    def __getattr__(self, name):
        return lambda *a, **k: None


def test_population_all_and_unknown_doses_keep_everyone(tmp_path):
    opts = AnalysisOptions(endpoints=EndpointOptions(population="all"))
    a = _adopt(_study(tmp_path), opts, crs_summary=CRS)
    row = cd.toxicity_summary(a, include_labs=False).filter(pl.col("Scale") == "ASTCT 2019").row(0, named=True)
    assert (row["N evaluable"], row["Grade >=3 n (%)"]) == (3, "1 (33.3%)")  # by hand: C grade 3 of 3
    b = _adopt(_study(tmp_path / "nodoses", doses=False), crs_summary=CRS)  # doses unknown: everyone infused (spec "Time")
    assert _n(cd.grade_distribution(b).counts, "CRS", 3) == 1
    assert not cd.grade_distribution(b).notes


def test_survival_caption_says_how_efs_is_censored(tmp_path):
    """review 47 #2: ELN 2022 Table 9 censors EFS at the last response assessment, OS/RFS at last known
    alive (text checked against the published table); the survival caption says so, and names the option."""
    from cartlab.report.cohort_views import _efs_censoring

    a = _adopt(_study(tmp_path), crs_summary=CRS)
    assert "EFS without an event at the last response assessment" in _efs_censoring(a)
    b = Analysis(a.study, options=AnalysisOptions(endpoints=EndpointOptions(efs_censor="last_known_alive")))
    assert "efs_censor=last_known_alive" in _efs_censoring(b)


def test_toxicity_caption_names_an_assumed_clinical_clause(tmp_path):
    """review 47 #4: CTCAE v5 Hypokalemia "<LLN - 3.0 mmol/L" is grade 1 asymptomatic, grade 2 symptomatic;
    graded 2 only by admiral's worst-case option (the row's reason says so), so the caption names it."""
    study = _study(tmp_path)
    adlb = pl.DataFrame({"subject_id": ["A", "B"], "day": [5.0, 5.0], "ATOXDSCL": ["Hypokalemia"] * 2,
                         "ATOXGRL": [2, 0], "ATOXDSCH": [None, None], "ATOXGRH": [None, None],
                         "grade_reason": ["grade 2: AVAL < ANRLO; <LLN - 3.0 mmol/L graded 2 assuming symptoms (option "
                                          "ctcae.hypokalemia_symptomatic=true)", "grade 0"]},
                        schema_overrides={"ATOXGRL": pl.Int64, "ATOXGRH": pl.Int64, "ATOXDSCH": pl.String})
    a = _adopt(study, adlb=adlb)
    notes = cd.assumed_clause_notes(a)
    assert len(notes) == 1 and notes[0].startswith("Hypokalemia: 1 subject(s) graded assuming symptoms")
    assert "ctcae.hypokalemia_symptomatic=true" in notes[0]


def test_percentages_round_half_away_from_zero():
    """review 47 #5: 1/16 = 6.25% prints 6.3 (SAS ROUND), not 6.2 (float format, half to even)."""
    from cartlab.report.cohort_base import fmt_n_pct
    from cartlab.report.cohort_views import _grade_table

    assert fmt_n_pct(1, 16) == "1 (6.3%)" and fmt_n_pct(1, 80) == "1 (1.3%)" and fmt_n_pct(0, 0) == "0 (—)"
    counts = pl.DataFrame({"n": [1, 3, 0], "n_evaluable": [16, 16, 0], "pct": [6.25, 18.75, None]})
    assert _grade_table(counts)["% of evaluable"].to_list() == [6.3, 18.8, None]


@given(st.integers(0, 2000), st.integers(1, 2000))
@settings(max_examples=300, deadline=None)
def test_pct_half_up_matches_decimal(n, d):
    from decimal import ROUND_HALF_UP, Decimal

    from cartlab.report.cohort_base import pct_half_up

    want = float((Decimal(100 * n) / Decimal(d)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))
    assert pct_half_up(n, d) == want
    assert pl.select(pct_half_up(pl.lit(n), pl.lit(d))).item() == want


def test_incidence_table_reads_the_step_holding_on_each_day():
    """review 47 #6: the cumulative incidence view gets a table (it had only the figure). By hand: the
    relapse CIF is 0.1 from day 10 and 0.25 from day 40, the curve ends on day 50; on day 30 the step of
    day 10 holds (10.0%), on day 45 that of day 40 (25.0%), day 60 is past the curve (not defined)."""
    from cartlab.report.cohort_stats import IncidenceData

    curves = pl.DataFrame({"event": ["relapse"] * 4, "time": [0.0, 10.0, 40.0, 50.0], "cif": [0.0, 0.1, 0.25, 0.25],
                           "ci_low": [0.0, 0.01, 0.05, 0.05], "ci_high": [0.0, 0.3, 0.5, 0.5],
                           "n_at_risk": [10, 10, 5, 2], "n_events": [0, 1, 1, 0]})
    at_risk = pl.DataFrame({"event": ["relapse"] * 4, "time": [0.0, 30.0, 45.0, 60.0], "n_at_risk": [10, 6, 2, 0]})
    t = IncidenceData(curves, at_risk, "test").table()
    assert t["relapse % (CIF)"].to_list() == [0.0, 10.0, 25.0, None]
    assert t["relapse 95% CI high"].to_list() == [0.0, 30.0, 50.0, None]
    assert t["n_at_risk"].to_list() == [10, 6, 2, 0]


# ---- review 47b: censored-above results, recovery censored by follow-up, exposure medians -------------------
def _obs_study(tmp_path, ids, obs):
    from test_report_cohort import _study as obs_study

    return obs_study(tmp_path, [(s, "AML", 30, "") for s in ids], obs=obs)


def test_heat_map_keeps_a_result_above_the_upper_limit(tmp_path):
    """A ">5000" IL-6 (above the assay's upper limit) is the day's maximum at 5000, flagged ``above``; it was
    dropped and its day drawn as "no sample". C has only "<5": its peak is unknown, so it is ranked last
    (its limit is not a peak). By hand: A day 3 = >5000 (beats 300 that day), B peaks at 800."""
    study = _obs_study(tmp_path, "ABC", "A,3,IL6,300,,pg/mL,,,\nA,3,IL6,,>5000,pg/mL,,,\nA,4,IL6,40,,pg/mL,,,\n"
                                        "B,3,IL6,800,,pg/mL,,,\nC,3,IL6,,<5,pg/mL,,,")
    m = cd.cytokine_matrix(Analysis(study))
    a3 = m.cells.filter((pl.col("subject_id") == "A") & (pl.col("day") == 3)).row(0, named=True)
    assert (a3["value"], a3["above"], a3["blq"]) == (5000.0, True, False)
    assert m.subjects == ("A", "B", "C")


def test_expansion_draws_a_result_above_the_upper_limit_at_its_limit(tmp_path):
    study = _obs_study(tmp_path, "A", "A,7,CARCOPY,1000,,copies/ug gDNA,50,PB,\nA,10,CARCOPY,,>100000,copies/ug gDNA,50,PB,")
    e = cd.expansion_data(Analysis(study))
    assert e.points.select("day", "value", "blq", "above").rows() == [(7.0, 1000.0, False, False),
                                                                      (10.0, 100000.0, False, True)]
    assert not e.notes or "left out" not in " ".join(e.notes)


def test_recovery_censored_by_follow_up_is_a_band_not_never_recovered(tmp_path):
    """4 subjects below the threshold: A recovered day 10, B died day 12 (not reached), C's follow-up ended on
    day 20 (censored), D recovered day 25. By hand: lower line 1/4 from day 10, 2/4 from day 25 (C never);
    upper line counts C from day 21 (B, dead, never): 1/4 day 10, 2/4 day 21, 3/4 day 25."""
    study = _obs_study(tmp_path, "ABCD", "")
    rec = pl.DataFrame({"subject_id": list("ABCD"), "neutrophil_recovery_day": [10.0, None, None, 25.0],
                        "neutrophil_recovery_status": ["recovered", "not_reached", "not_reached", "recovered"],
                        "neutrophil_recovery_censor_day": [None, 12.0, 20.0, None],
                        "neutrophil_recovery_censor_reason": [None, "death", "last_followup_day", None],
                        "platelet_recovery_day": [None] * 4, "platelet_recovery_status": ["no_data"] * 4},
                       schema_overrides={"platelet_recovery_day": pl.Float64, "platelet_recovery_status": pl.String})
    d = cd.count_recovery_data(adopt(study, count_recovery=rec))
    st = dict(d.subjects.filter(pl.col("lineage") == "neutrophil").select("subject_id", "status").iter_rows())
    assert st == {"A": "recovered", "B": "not reached", "C": "censored", "D": "recovered"}
    c = d.curve.filter(pl.col("lineage") == "neutrophil")
    assert c.select("day", "n_recovered_low", "n_recovered_high").rows() == [(10.0, 1, 1), (21.0, 1, 2), (25.0, 2, 3)]
    assert set(c["n_needing"].to_list()) == {4}
    assert "1 censored before recovery" in d.legend("neutrophil") and any("C (day 20)" in n for n in d.notes)


def test_exposure_medians_include_the_non_expanders():
    """CRh Cmax 16,500, 49,800, 55,900, 120,000 and a non-expander's 0: median 49,800 (the figure drew
    52,850 over the positive values only)."""
    from cartlab.report.cohort_data import ExposureData

    pts = pl.DataFrame({"subject_id": list("abcde"), "car_cmax": [16500.0, 49800.0, 55900.0, 120000.0, 0.0],
                        "car_auc_0_28": [1.0] * 5, "response": ["CRh"] * 5})
    assert ExposureData(pts, pl.DataFrame()).medians("car_cmax") == {"CRh": 49800.0}
