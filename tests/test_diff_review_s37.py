"""Session 37 whole-diff review fixes (engines): worst CTCAE grades keep open ranges of grade-0 rows.

Expected values by hand from the rows built here (CTCAE v5 grades as ADLB carries them).
"""

from __future__ import annotations

import polars as pl

from cartlab.grading.lab_worst import worst_labs


def test_a_grade_0_row_whose_range_reaches_4_is_kept_as_0_to_4():
    # ALT ">30" U/L with no ULN known: grade 0 up to 4 (ATOXGRH_MAX 4); it must not vanish from the
    # worst grades because its lower grade is 0 ("missing is not negative")
    adlb = pl.DataFrame({
        "term": ["Alanine aminotransferase increased"] * 2 + ["Anemia"], "direction": ["H", "H", "L"],
        "ATOXGR": [0, 0, -2], "ATOXGRL_MAX": [None, None, 2], "ATOXGRH_MAX": [0, 4, None], "day": [2.0, 4.0, 5.0],
        "post_baseline": [True, True, True],
        "grade_reason": ["grade 0", "censored result >30 leaves grade 0-4 open", "grade 2"]})
    w = {r["term"]: r for r in worst_labs(adlb).iter_rows(named=True)}
    alt = w["Alanine aminotransferase increased"]
    assert (alt["grade"], alt["grade_max"], alt["day"]) == (0, 4, 4.0) and alt["why"] == "censored result >30"
    assert (w["Anemia"]["grade"], w["Anemia"]["grade_max"]) == (2, 2)
    # a settled grade 0 (no range) is not a toxicity: not listed
    settled = adlb.with_columns(pl.lit(0).alias("ATOXGRH_MAX"))
    assert "Alanine aminotransferase increased" not in worst_labs(settled)["term"].to_list()


def test_an_absent_interventions_file_only_widens_t_icaht():
    """Platelets 10 x10^9/L on days 0-5 and 7-13, 25 on day 6, 150 from day 14 (review 37 diff A1). As
    measured (no transfusion): < 20 on days 0-13 with a one-day non-stable recovery counted (Rejeski 2025:
    a recovery under 3 days does not end the run): 14 days -> grade 4. With interventions.csv absent the
    day-6 count could be transfusion-supported; that can only keep the grade, never lower it to 3."""
    from cartlab.grading.t_icaht import derive_t_icaht
    from cartlab.model import Study, conform

    vals = {d: 10.0 for d in [*range(0, 6), *range(7, 14)]} | {6: 25.0} | {d: 150.0 for d in range(14, 31)}

    def grades(absent):
        subjects = conform(pl.DataFrame({"subject_id": ["S1"], "age_years": [50.0], "last_followup_day": [60.0]}),
                           "subjects")
        doses = conform(pl.DataFrame({"subject_id": ["S1"], "day": [0.0], "agent": ["CAR-T"], "dose": [1.0],
                                      "unit": ["cells"]}), "doses")
        obs = conform(pl.DataFrame([{"subject_id": "S1", "day": float(d), "param": "PLAT", "value": v,
                                     "unit": "10^9/L"} for d, v in vals.items()]), "observations")
        r = derive_t_icaht(Study(study_id="T", subjects=subjects, doses=doses, observations=obs,
                                 absent=frozenset(absent))).row(0, named=True)
        return r["t_icaht_early_grade"], r["t_icaht_early_grade_max"]

    assert grades(()) == (4, 4)
    assert grades(("interventions",)) == (4, 4)


def test_a_study_built_in_python_written_and_read_back_keeps_its_empty_tables_given(tmp_path):
    # review 37 diff B5: an empty interventions table of a Python-built study (every table given) was not
    # written, so it read back as absent (unknown: CRS ranges up to 4); now it is written with its header
    from cartlab.datasets import seed_case
    from cartlab.io.study_folder import read_study
    from cartlab.io.study_writer import write_study_tables
    from cartlab.model import Study

    seed = seed_case()  # its subjects and observations only: a study built in Python, no source files
    write_study_tables(Study(study_id="T", subjects=seed.subjects, observations=seed.observations), tmp_path)
    assert (tmp_path / "interventions.csv").is_file()
    assert read_study(tmp_path).absent == frozenset()
    # a study read without the file keeps it absent when written again
    (tmp_path / "interventions.csv").unlink()
    again = tmp_path / "again"
    again.mkdir()
    write_study_tables(read_study(tmp_path), again)
    assert not (again / "interventions.csv").exists()


def test_twin_forecast_does_not_replace_an_old_fit_folder(tmp_path):
    # review 37 diff B4: a fit folder written before the output marker (twin_fit.json) is not an earlier
    # forecast: refused without --force, as a fit folder with the marker is
    from pathlib import Path

    from typer.testing import CliRunner

    from cartlab.cli import app

    out = tmp_path / "fit"
    out.mkdir()
    (out / "twin_fit.json").write_text("{}", encoding="utf-8")
    (out / "twin_params.csv").write_text("a\n1\n", encoding="utf-8")
    seed = Path(__file__).parents[1] / "src" / "cartlab" / "datasets" / "seed_case"
    r = CliRunner().invoke(app, ["twin", "forecast", str(seed), "--subject", "CD7-AML-001", "--out", str(out)])
    assert r.exit_code == 2 and "not empty" in r.output, r.output
    assert (out / "twin_params.csv").read_text(encoding="utf-8") == "a\n1\n"


def test_subject_page_without_molecular_response(tmp_path):
    # review 37 diff B2: the rounding of log10 reductions ran before the "engine did not run" check
    from cartlab.analyze import Analysis
    from cartlab.datasets import seed_case
    from cartlab.report.subject_blocks import _response_block

    class NoMolecular:  # an analysis whose molecular_response could not be derived
        def __init__(self, a):
            self.a = a

        def has(self, name):
            return name != "molecular_response" and self.a.has(name)

        def __getattr__(self, name):
            return getattr(self.a, name)

    block = _response_block(NoMolecular(Analysis(seed_case())), "CD7-AML-001")
    assert block is not None
