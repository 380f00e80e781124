"""The cohort page of a 200-subject synthetic cohort in headless Chromium: filters, the filtered
table's CSV download, a screenshot. Expected counts are read from the generated subjects.csv with the
csv module (independently of cartlab's reader and of the dashboard)."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import expect
from shiny.playwright import controller

from cartlab.app.data import Catalog
from cartlab.app.run import ServerThread
from cartlab.app.server import create_app
from cartlab.datasets.synthetic import synthetic_cohort
from cartlab.io import read_study

pytestmark = pytest.mark.browser
TIMEOUT = 60_000
N = 200


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = synthetic_cohort(N, seed=17, out_dir=tmp_path_factory.mktemp("syn") / "syn200")
    with open(folder / "subjects.csv", encoding="utf-8") as fh:
        subjects = list(csv.DictReader(fh))
    catalog = Catalog.from_study(read_study(folder, "syn200"), f"folder {folder}")
    with ServerThread(create_app(catalog)) as srv:
        yield srv, subjects


def test_cohort_filter_and_download(page, cohort, artifacts_dir):
    srv, subjects = cohort
    by_disease = Counter(r["disease"] for r in subjects)
    disease, n_disease = by_disease.most_common(1)[0]
    page.goto(srv.url)
    page.get_by_role("tab", name="Cohort").click()
    count = page.locator("#cohort_count")
    expect(count).to_contain_text(f"{N} of {N} subjects", timeout=TIMEOUT)
    expect(page.locator("#cohort_views .js-plotly-plot .main-svg").first).to_be_visible(timeout=TIMEOUT)
    page.set_viewport_size({"width": 1280, "height": 2400})
    page.wait_for_timeout(800)
    page.screenshot(path=str(artifacts_dir / "screenshots" / "cohort_200.png"), full_page=True)

    controller.InputSelectize(page, "f_disease").set([disease])
    expect(count).to_contain_text(f"{n_disease} of {N} subjects", timeout=TIMEOUT)
    # a second filter narrows further: disease AND target
    target = Counter(r["target"] for r in subjects if r["disease"] == disease).most_common(1)[0][0]
    other = sorted({r["target"] for r in subjects} - {target})
    n_both = sum(r["disease"] == disease and r["target"] == target for r in subjects)
    controller.InputSelectize(page, "f_target").set([target])
    expect(count).to_contain_text(f"{n_both} of {N} subjects", timeout=TIMEOUT)
    if other:  # a target no subject of this disease has: none left
        controller.InputSelectize(page, "f_target").set([other[0]])
        n_other = sum(r["disease"] == disease and r["target"] == other[0] for r in subjects)
        expect(count).to_contain_text(f"{n_other} of {N} subjects", timeout=TIMEOUT)
        controller.InputSelectize(page, "f_target").set([target])
        expect(count).to_contain_text(f"{n_both} of {N} subjects", timeout=TIMEOUT)

    with page.expect_download(timeout=TIMEOUT) as info:
        page.locator("#dl_cohort").click()
    dl = info.value
    # a filtered download is named after its filters (docs/dashboard.md); the values are letters,
    # digits and "-" only, so they pass through unchanged
    assert dl.suggested_filename == f"syn200_subjects_filtered_disease-{disease}_target-{target}.csv"
    rows = list(csv.DictReader(io.StringIO(Path(dl.path()).read_text(encoding="utf-8"))))
    expected = sorted(r["subject_id"] for r in subjects if r["disease"] == disease and r["target"] == target)
    assert sorted(r["subject_id"] for r in rows) == expected
    assert {r["disease"] for r in rows} == {disease}
    assert "crs_grade_astct" in rows[0]
