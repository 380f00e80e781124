"""Review 37 (a new user's first hour, optional columns removed): the report's CIR sentence when no
response was assessed (A3), the analysis's warnings on the report's pages (B2), the ASTCT range
columns of crs_cross_scale (B3), CAR kinetics without an lloq (B5), the ranges' days in the report's
legend (B6) and export --help on SDTM (C6). Expected values are derived by hand from the study-format
spec and the standards' text, never from cartlab's output; each comment says how."""

from __future__ import annotations

import csv
import shutil
import warnings
from pathlib import Path

import polars as pl
import pytest

from cartlab.analyze import Analysis
from cartlab.datasets import seed_case, seed_case_path
from cartlab.io.study_folder import read_study

SEED = "CD7-AML-001"


def _rewrite(path: Path, keep=lambda row: True, drop_cols=(), change=None) -> None:
    """Rewrite a CSV file with the csv module: rows kept by ``keep``, columns ``drop_cols`` removed,
    ``change(row)`` applied to each kept row."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    cols = [c for c in rows[0] if c not in drop_cols]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            if keep(r):
                if change:
                    change(r)
                w.writerow(r)


def _quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """The seed case without subjects.disease and without interventions.csv (review 37 V5 + V7)."""
    d = tmp_path_factory.mktemp("bare") / "study"
    shutil.copytree(seed_case_path(), d)
    (d / "interventions.csv").unlink()
    _rewrite(d / "subjects.csv", drop_cols=("disease",))
    study = _quiet(read_study, d)
    a = Analysis(study)
    _quiet(a.tables)
    return study, a


# -- A3: "no subject reached CR/CRh/CRi" only when responses were assessed ------------------------------


def test_cir_view_not_evaluable_without_response_criteria(bare):
    # spec: the response criteria are chosen by subjects.disease; without it no response is assessed,
    # so the CIR population (ELN 2022 Table 9: subjects achieving CR/CRh/CRi) cannot be known: the view
    # must say "not evaluable" and name the missing input, never state that no subject reached CR
    from cartlab.report.cohort_base import ViewUnavailable
    from cartlab.report.cohort_stats import relapse_incidence_data

    _, a = bare
    with pytest.raises(ViewUnavailable) as exc:
        relapse_incidence_data(a)
    text = str(exc.value)
    assert "no subject reached" not in text
    assert "not evaluable: no subject has an assessed response" in text
    assert "1 subject: subjects.disease is empty" in text


class _FakeAnalysis:
    """Just the adtte CIR rows the view reads (rule not_in_remission: assessed, no CR/CRh/CRi)."""

    def __init__(self, adtte: pl.DataFrame):
        self._t = adtte

    def has(self, name):
        return name == "adtte"

    def table(self, name):
        return self._t


def test_cir_view_says_no_cr_when_responses_were_assessed():
    # two subjects assessed (NR with marrow rows as evidence) and one without response criteria:
    # by ELN 2022 Table 9 the CIR population is empty because nobody reached CR/CRh/CRi; the third is
    # counted apart as not evaluable
    from cartlab.report.cohort_stats import _no_cir_population

    adtte = pl.DataFrame({
        "subject_id": ["S1", "S2", "S3"], "PARAMCD": ["CIR"] * 3, "ANLFL": [None] * 3,
        "rule": ["not_in_remission", "not_in_remission", "no_response_criteria"],
        "reason": ["no CR/CRh/CRi (NR on day 31) -> CIR is defined only for subjects achieving remission",
                   "no CR/CRh/CRi (NR on day 28) -> CIR is defined only for subjects achieving remission",
                   "CIR rests on response assessments, and subjects.disease is empty: x -> not defined"],
        "evidence": [["observations.csv:1"], ["observations.csv:9"], []],
    }, schema_overrides={"ANLFL": pl.String})
    text = _no_cir_population(_FakeAnalysis(adtte), None)
    assert text.startswith("no subject reached CR/CRh/CRi (2 subjects with an assessed response")
    assert "not evaluable: 1 subject: subjects.disease is empty: x" in text


# -- B2: the analysis's warnings on the report's pages ----------------------------------------------------


def test_absent_interventions_file_is_not_none_recorded(bare):
    # the reader says "interventions.csv, file: not given" (spec: the file is optional): the subject page
    # must say the file was not given, not "no interventions recorded" (which an empty file means)
    from cartlab.report.html import CourseFigure, render_subject_html
    from cartlab.report.warnings_block import absent_file

    study, a = bare
    assert absent_file(study, "interventions.csv") and not absent_file(study, "events.csv")
    html = render_subject_html(study, SEED, analysis=a, course=CourseFigure("", {"error": "test", "panels": []}))
    assert "interventions.csv not given (not known: ASTCT CRS and T-ICAHT" in html  # docs review B1
    assert "no interventions recorded" not in html
    assert 'id="warnings"' in html  # the subject's warnings: the file not given concerns every subject


def test_seed_with_its_interventions_has_no_absent_file():
    # the seed folder has interventions.csv: nothing is said to be missing
    from cartlab.report.warnings_block import absent_file

    study = _quiet(seed_case)
    assert not absent_file(study, "interventions.csv")


def test_study_page_lists_the_analysis_warnings(bare):
    # analysis.json's input_warnings (interventions.csv not given), warnings (no disease: no response
    # criteria) and skipped are listed on the study page and in its PDF (same template, for_print)
    from cartlab.report.study import render_study_html
    from cartlab.report.warnings_block import study_warnings

    study, a = bare
    w = study_warnings(study, a)
    cells = [" ".join(r["cells"]) for r in w["rows"]]
    assert any("interventions.csv" in c and "not given" in c for c in cells)
    assert any(c.startswith("analysis ") for c in cells)
    assert w["n"] == len(a.warnings) + len(a.skipped) + sum(
        1 for i in study.warnings if i.severity == "warning")
    for for_print in (False, True):
        html = render_study_html(study, {}, warnings=w, for_print=for_print)
        assert "<h2 id=\"warnings\">Warnings and assumptions</h2>" in html
        assert "interventions.csv, file" in html


# -- B3: ASTCT range columns in crs_cross_scale -----------------------------------------------------------


def test_cross_scale_astct_has_min_and_max():
    # ASTCT's summary grade is the lower bound of its range (a nasal cannula without a flow: 2-3); the
    # table gives it the other scales' range columns: _min = 2 (the lower bound), _max = 3
    from cartlab.grading.crs_legacy import derive_crs_cross_scale

    study = _quiet(seed_case)
    astct = pl.DataFrame({"subject_id": [SEED], "crs_grade_astct": [2], "crs_grade_astct_max": [3]})
    row = _quiet(derive_crs_cross_scale, study, astct).row(0, named=True)
    assert (row["crs_grade_astct"], row["crs_grade_astct_min"], row["crs_grade_astct_max"]) == (2, 2, 3)


def test_docs_say_which_astct_column_is_the_lower_bound():
    text = (Path(__file__).resolve().parents[1] / "docs" / "report.md").read_text(encoding="utf-8")
    assert "`crs_grade_astct` is ASTCT's summary grade, the **lower bound**" in text


# -- B5: CAR kinetics without an lloq ---------------------------------------------------------------------


def _car(study):
    from cartlab.kinetics.car import derive_car_kinetics

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = derive_car_kinetics(study)
    return out.filter(pl.col("subject_id") == SEED).row(0, named=True), [str(c.message) for c in caught]


def test_no_lloq_warning_when_no_sample_has_a_limit(tmp_path):
    # spec: BLQ is "a '<x' value_text or a value below lloq"; with neither on any CARCOPY row a value
    # below the assay's limit cannot be recognised: the row's warnings and the analysis say so
    d = tmp_path / "study"
    shutil.copytree(seed_case_path(), d)

    def blank(r):
        if r["param"] == "CARCOPY":
            r["lloq"] = ""

    _rewrite(d / "observations.csv", keep=lambda r: not (r["param"] == "CARCOPY" and r["value_text"].startswith("<")),
             change=blank)
    row, caught = _car(_quiet(read_study, d))
    assert any(w.startswith("no_lloq:") for w in row["warnings"])
    assert any("without an lloq" in m for m in caught)


def test_no_lloq_warning_absent_when_lloq_given():
    # the seed's CARCOPY rows carry lloq 50 (observations.csv, read above with the csv module's eyes)
    row, caught = _car(_quiet(seed_case))
    assert not any(w.startswith("no_lloq:") for w in row["warnings"] or [])
    assert not any("without an lloq" in m for m in caught)


# -- B6 / C6: wording -------------------------------------------------------------------------------------


def test_report_legend_says_ranges_are_over_graded_days():
    from cartlab.report.study import render_study_html

    study = _quiet(seed_case)
    summary = pl.DataFrame({"subject_id": [SEED]})
    html = render_study_html(study, {}, summary=summary)
    assert "a day with no CRS (ICANS) row at all is not assessed and raises no upper bound" in html


def test_export_help_says_sdtm_is_read_only():
    from typer.testing import CliRunner

    from cartlab.cli import app

    res = CliRunner().invoke(app, ["export", "--help"], env={"COLUMNS": "300", "NO_COLOR": "1"})
    assert res.exit_code == 0
    assert "SDTM is read, not written" in " ".join(res.output.split())


def test_censoring_reason_names_one_days_rows_once(tmp_path):
    # C4: without last_followup_day OS is censored at the last recorded row (spec: last_followup_day
    # optional; docs: censored at the subject's last recorded row). The seed's observations on that day
    # (day 60) are counted here with the csv module: one phrase "last observations row, day 60
    # (observations.csv:first-last, n rows)", not the same words once per row
    d = tmp_path / "study"
    shutil.copytree(seed_case_path(), d)

    def no_fu(r):
        r["last_followup_day"] = ""

    _rewrite(d / "subjects.csv", change=no_fu)
    with open(d / "observations.csv", newline="", encoding="utf-8") as f:
        rows = [i for i, r in enumerate(csv.DictReader(f), start=1) if float(r["day"] or "nan") == 60.0]
    assert rows == list(range(rows[0], rows[-1] + 1))  # consecutive in the seed file
    a = Analysis(_quiet(read_study, d))
    reason = _quiet(a.table, "adtte").filter(pl.col("PARAMCD") == "OS")["reason"][0]
    assert reason.count("last observations row, day 60") == 1
    assert f"(observations.csv:{rows[0]}-{rows[-1]}, {len(rows)} rows)" in reason


def test_missing_value_text_column_is_named(tmp_path):
    # C5: the seed has a '<50' CARCOPY row (value empty, value_text '<50'); without the value_text column
    # that row has neither: the error says the file has no value_text column at all
    from cartlab.io.errors import StudyValidationError

    d = tmp_path / "study"
    shutil.copytree(seed_case_path(), d)
    _rewrite(d / "observations.csv", drop_cols=("value_text",))
    with pytest.raises(StudyValidationError) as exc:
        _quiet(read_study, d)
    msgs = [i.message for i in exc.value.issues if i.column == "value"]
    assert any("neither value nor value_text is given (observations.csv has no value_text column" in m
               for m in msgs)
