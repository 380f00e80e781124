"""Review 37 of the dashboard (B1, B2, B4-B8, C1): server-side tests of the page's data and text, and
one browser test of the deep link (B5).

Expected values are derived by hand from the standard's text or from the seed case's own CSV files
(read here with the csv module, independently of cartlab), never from cartlab's output.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import polars as pl
import pytest

from cartlab.app import cohort as C
from cartlab.app.data import build_view, dose_levels, subject_counts
from cartlab.app.links import resolve_subject, url_subject
from cartlab.app.server import mark_reconstructed, not_measured_banner, patient_headline_parts, twin_crs_note
from cartlab.datasets import seed_case, seed_case_path
from cartlab.io import read_study
from seed_helpers import hand_count_not_measured

SEED = "CD7-AML-001"


@pytest.fixture(scope="module")
def seed_view():
    return build_view(seed_case())


def _copy_seed(tmp_path: Path) -> Path:
    dst = tmp_path / "seed"
    shutil.copytree(seed_case_path(), dst)
    return dst


def _rewrite(path: Path, edit) -> None:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    fields = list(rows[0])
    rows = edit(rows)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


# -- B8: the cohort table shows a worst grade with a higher maximum as the range, as the headline does
def test_cohort_table_grades_are_ranges():
    # hand: docs/dashboard.md "missing is not negative": grade 1 with max 2 is "1–2"; 0 with max 0 is "0";
    # a missing grade is "not evaluable" (never 0); 2 with max 2 is "2"
    cohort = pl.DataFrame({"subject_id": ["A", "B", "C", "D"], "crs_grade_astct": [1, 0, None, 2],
                           "crs_grade_astct_max": [2, 0, None, 2], "icans_grade_astct": [0, 0, 1, None],
                           "icans_grade_astct_max": [1, 0, 1, None]})
    out = C.cohort_display(cohort)
    assert out["crs_grade_astct"].to_list() == ["1–2", "0", "not evaluable", "2"]
    assert out["icans_grade_astct"].to_list() == ["0–1", "0", "1", "not evaluable"]
    assert "crs_grade_astct_max" not in out.columns and "icans_grade_astct_max" not in out.columns
    # the same labels as the filter: the table and the filter "1–2" agree on subject A
    assert C.filter_cohort(cohort, {"f_crs": ("1–2",)})["subject_id"].to_list() == ["A"]


# -- B4: no subject id or value in the server's start-up output
def test_serve_startup_counts_warnings_without_subject(tmp_path, capsys):
    from cartlab.cli.serve import _catalog

    folder = _copy_seed(tmp_path)

    def dup_hgb(rows):  # a second HGB on the same day with another value: a reading warning naming the subject
        i = next(k for k, r in enumerate(rows) if r["param"] == "HGB" and r["value"])
        extra = dict(rows[i], value=str(float(rows[i]["value"]) + 1))
        return rows[:i + 1] + [extra] + rows[i + 1:]

    _rewrite(folder / "observations.csv", dup_hgb)
    warned = read_study(folder).warnings  # what `cartlab analyze` would print: it names the subject
    assert any(SEED in str(w) for w in warned)
    capsys.readouterr()
    catalog = _catalog(str(folder), tmp_path / "no_store.duckdb", "standard")
    assert len(catalog.ids()) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert SEED not in text and "HGB" not in text
    assert f"{len(warned)} input warning" in text and f"cartlab validate {folder}" in text.replace("\n", "")


# -- B5: ?subject=ID opens that subject; an unknown id is named, never replaced by another subject
def test_url_subject_forms():
    assert url_subject("?subject=SYN-0005", "") == "SYN-0005"
    assert url_subject("?x=1&subject=A%20B", None) == "A B"
    assert url_subject("", "#subject=SYN-0002") == "SYN-0002"
    assert url_subject("", "#patient/SYN-0003") == "SYN-0003"
    assert url_subject("?subject=", "") is None and url_subject("", "") is None


def test_resolve_subject():
    ids = ["SYN-0001", "SYN-0005"]
    assert resolve_subject("SYN-0005", ids, "S") == ("SYN-0005", None)
    assert resolve_subject(None, ids, "S") == ("SYN-0001", None)
    chosen, msg = resolve_subject("SYN-9999", ids, "S")
    assert chosen is None and "'SYN-9999'" in msg and "study S (2 subjects)" in msg


# -- B1: the grade per day marks a day whose evidence has not-measured rows (as the report)
def test_grades_table_marks_not_measured_rows():
    crs = pl.DataFrame({"day": [1.0, 2.0], "grade": [1, 0], "rule": ["r", "r"], "reason": ["x", "y"],
                        "evidence": [["observations.csv:2", "observations.csv:3"], ["observations.csv:4"]]})
    kinds = {"observations.csv:2": "reconstructed", "observations.csv:3": "observed",
             "observations.csv:4": "observed"}
    out = C.grades_table(crs, crs.clear(), kinds)
    # hand: day 1 has 2 evidence rows, 1 reconstructed -> "rec. 1 of 2 rows"; day 2 all measured -> no mark
    assert out["not_measured"].to_list() == ["rec. 1 of 2 rows", None]


def test_seed_grades_day8_marked(seed_view):
    p = seed_view.patient(SEED)
    g = C.grades_table(p.crs_daily, p.icans_daily, p.kinds)
    row = g.filter((pl.col("day") == 8) & pl.col("scale").str.starts_with("CRS")).row(0, named=True)
    # hand: every evidence row of the day is a seed row with source=reconstructed (the seed's CSV files)
    src = {}
    for name in ("observations.csv", "interventions.csv"):
        with (seed_case_path() / name).open(newline="", encoding="utf-8") as fh:
            for i, r in enumerate(csv.DictReader(fh), start=2):  # row 1 = header
                src[f"{name}:{i}"] = r["source"]
    n = len(row["evidence"])
    assert all(src[e] == "reconstructed" for e in row["evidence"])
    assert row["not_measured"] == f"rec. {n} of {n} rows"


# -- B2: reconstructed_columns of a paper row count as reconstructed and are named in the notes
def test_seed_counts_reconstructed_columns():
    expected_nm, total = hand_count_not_measured()
    c = subject_counts(seed_case().subject(SEED))
    assert (c["not_measured"], c["total"]) == (expected_nm, total)
    assert c["paper_with_reconstructed_columns"] == 1  # the subjects row
    banner = not_measured_banner(c)
    assert f"{expected_nm:,} of {total:,}" in banner and "publication row with reconstructed columns" in banner
    assert banner.count("not measured") == 1  # C1: said once


def test_seed_last_followup_marked_reconstructed(seed_view):
    _b, _h, notes = patient_headline_parts(seed_view, seed_view.patient(SEED))
    dor = next(n for n in notes if n.startswith("Duration of response"))
    # subjects.csv: last_followup_day = 60 is listed in reconstructed_columns
    assert "day 60 (last_followup_day, reconstructed)" in dor


def test_note_days_to_two_decimals():  # C1: docs/dashboard.md "days ... to 2 decimals"
    assert mark_reconstructed("last known alive on day 60.5299 (the last observations row, day 60.5299)", set()) \
        == "last known alive on day 60.53 (the last observations row, day 60.53)"
    assert mark_reconstructed("VAF 0.0012", set()) == "VAF 0.0012"  # not a day: unchanged


# -- B6: an unknown dose level names the missing input
def test_dose_unknown_names_missing_weight(tmp_path):
    folder = _copy_seed(tmp_path)

    def cells(rows):  # hand: 1e6 cells/kg x 70 kg = 7e7 cells; 4e6 x 70 = 2.8e8 cells
        for r in rows:
            if r["agent"] == "CAR-T":
                r["dose"], r["unit"] = str(float(r["dose"]) * 70), "cells"
        return rows

    def no_weight(rows):
        for r in rows:
            r["weight_kg"] = ""
        return rows

    _rewrite(folder / "doses.csv", cells)
    _rewrite(folder / "subjects.csv", no_weight)
    study = read_study(folder)
    d = dose_levels(study).row(0, named=True)
    assert d["dose_level"] is None
    assert d["dose_level_reason"] == "absolute dose 7×10⁷ + 2.8×10⁸ cells; subjects.weight_kg missing"
    v = build_view(study)
    _b, headline, _n = patient_headline_parts(v, v.patient(SEED))
    assert "CAR-T dose unknown (absolute dose 7×10⁷ + 2.8×10⁸ cells; subjects.weight_kg missing)" in headline


def test_dose_reason_no_car_t_row():
    import dataclasses

    study = seed_case()
    study_no_cart = dataclasses.replace(study, doses=study.doses.filter(pl.col("agent") != "CAR-T"))
    assert dose_levels(study_no_cart)["dose_level_reason"].to_list() == ["no CAR-T dose row"]


# -- B7: the twin page says which CRS options its CRS >= 3 uses
def test_twin_crs_note():
    assert "default options (fever: Tmax ≥ 38.0 °C)" in twin_crs_note({})
    note = twin_crs_note({"crs.fever_threshold_c": (38.5, 38.0), "icans.x": (1, 0)})
    assert "not this analysis's crs.fever_threshold_c=38.5" in note and "icans" not in note


# -- B5 in a real browser: the link opens the subject, or names the unknown id (no subject shown)
@pytest.mark.browser
def test_deep_link_in_browser(page):
    pytest.importorskip("playwright")
    from playwright.sync_api import expect

    from cartlab.app.data import Catalog
    from cartlab.app.run import ServerThread
    from cartlab.app.server import create_app

    catalog = Catalog.from_study(seed_case(), "folder seed_case")
    with ServerThread(create_app(catalog, token="s37-token")) as srv:
        page.goto(f"{srv.url}/?token=s37-token&subject=NOT-A-SUBJECT")
        expect(page.locator("#subject_error")).to_contain_text("'NOT-A-SUBJECT'", timeout=60_000)
        expect(page.locator("#patient_headline_text")).to_have_count(0)
        page.goto(f"{srv.url}/?subject={SEED}")
        expect(page.locator("#patient_headline_text")).to_contain_text(f"{SEED} (AML", timeout=60_000)
