"""Session 30 report-vs-tables differential (/work/notes/audit_reportdiff): about 2,000 values the
report shows agreed with the analysis tables; these are its findings. Expected values by hand."""

from __future__ import annotations

import re

import polars as pl
import pytest

from cartlab.analyze import Analysis
from cartlab.datasets import synthetic_cohort
from cartlab.io import read_study
from cartlab.protocol import load_protocol
from cartlab.report import write_study_report
from cartlab.report.html import _grade_range_cell


def test_a_crs_or_icans_range_is_one_cell_as_on_the_study_page():
    assert _grade_range_cell(1, 2) == "1–2 (range: an input missing, see the grades below)"
    assert _grade_range_cell(3, 3) == "3"
    from cartlab.report.cells import EMPTY

    assert _grade_range_cell(None, None) == EMPTY  # not evaluable is not 0


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("r30")
    study = read_study(synthetic_cohort(12, seed=7, out_dir=root / "study"))
    analysis = Analysis(study, protocol=load_protocol("nct04762485"))
    index = write_study_report(study, root / "report", analysis=analysis, protocol=analysis.protocol,
                               workers=1, pdf=False)
    return analysis, index.parent


def _text(p):
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", p.read_text(encoding="utf-8")))


def test_the_caption_counts_subjects_per_term(report):
    analysis, folder = report
    s = analysis.subject_summary()
    crs = s.filter(pl.col("crs_grade_astct") < pl.col("crs_grade_astct_max")).height
    icans = s.filter(pl.col("icans_grade_astct") < pl.col("icans_grade_astct_max")).height
    text = _text(folder / "index.html")
    parts = [f"{t}: {n} subject(s)" for t, n in (("CRS", crs), ("ICANS", icans)) if n]
    if parts:
        assert ", ".join(parts) + " could have a higher grade" in text
    assert re.search(r"(?<!: )\b\d+ subject\(s\) could have a higher grade", text) is None  # no bare total


def test_the_deviation_table_says_how_many_subjects_it_does_not_name(report):
    analysis, folder = report
    dev = analysis.table("protocol_deviations")
    by = dev.group_by("category", "item").agg(pl.col("subject_id").n_unique().alias("n"))
    many = by.filter(pl.col("n") > 10)
    text = _text(folder / "index.html")
    for n in many["n"].to_list():
        assert f"(+{n - 10} more)" in text


def test_subject_pages_show_ranges_verdicts_and_labs_from_day_0(report):
    analysis, folder = report
    s = analysis.subject_summary()
    rng = s.filter(pl.col("crs_grade_astct") < pl.col("crs_grade_astct_max")).row(0, named=True) \
        if s.filter(pl.col("crs_grade_astct") < pl.col("crs_grade_astct_max")).height else None
    sid = rng["subject_id"] if rng else s["subject_id"][0]
    text = _text(folder / f"subject_{sid}.html")
    if rng:
        assert f"{rng['crs_grade_astct']}–{rng['crs_grade_astct_max']} (range: an input missing" in text
    assert "crs_grade_astct_max" not in text
    v = analysis.table("eligibility_verdict").filter(pl.col("subject_id") == sid).row(0, named=True)
    assert f"Verdict (eligibility_verdict.csv): {v['verdict']} ({v['n_pass']} criteria met" in text
    assert "Worst CTCAE v5 laboratory grades from day 0 on" in text
    # the worst grade per term from day 0 on (adlb, |ATOXGR|), by hand from the table
    adlb = analysis.table("adlb").filter((pl.col("subject_id") == sid) & (pl.col("day") >= 0)
                                          & (pl.col("ATOXGR").fill_null(0) != 0))
    for term, g in adlb.group_by("term").agg(pl.col("ATOXGR").abs().max()).iter_rows():
        assert re.search(rf"{re.escape(term)} {g} ", text), (term, g)
