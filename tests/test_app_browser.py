"""The dashboard in a real headless Chromium (pytest-playwright; the root conftest.py points it at the
system chromium): the seed case's patient page, the cohort filters, a CSV download, screenshots.

Expected values are the seed case's, read from the paper (Cao et al. 2022, the CD7 CAR-T AML index
case; see src/cartlab/datasets/seed_case/README.md): ASTCT CRS grade 3, ICANS grade 0, CAR-T doses
1×10⁶/kg on day 0 and 4×10⁶/kg on day 2 (dose level 5×10⁶/kg in total).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import expect
from shiny.playwright import controller

from cartlab.app.data import Catalog
from cartlab.app.run import ServerThread
from cartlab.app.server import create_app
from cartlab.datasets import seed_case

pytestmark = pytest.mark.browser
SEED_SUBJECT = "CD7-AML-001"
TIMEOUT = 60_000


TOKEN = "browser-test-token"


@pytest.fixture(scope="module")
def seed_server():
    """The seed case behind a token: the browser authenticates once with ?token= (then the cookie
    carries it, also on the websocket)."""
    catalog = Catalog.from_study(seed_case(), "folder seed_case")
    with ServerThread(create_app(catalog, token=TOKEN)) as srv:
        yield srv


def _open_patient(page, url: str) -> None:
    page.goto(f"{url}/?token={TOKEN}")
    assert "token" not in page.url  # redirected to the page without the token in the address
    expect(page.locator("#study_status")).to_contain_text("subjects", timeout=TIMEOUT)
    page.get_by_role("tab", name="Patient").click()
    controller.InputSelectize(page, "subject").set(SEED_SUBJECT)


def test_seed_patient_page(page, seed_server, artifacts_dir):
    _open_patient(page, seed_server.url)
    headline = page.locator("#patient_headline_text")
    expect(headline).to_contain_text("CRS grade 3", timeout=TIMEOUT)
    expect(headline).to_contain_text("ICANS grade 0")
    expect(headline).to_contain_text("5×10⁶/kg")
    # the linked course and the kinetics figure rendered by plotly.js (served locally)
    expect(page.locator("#course_plot .js-plotly-plot .main-svg").first).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#kinetics_plot .js-plotly-plot .main-svg").first).to_be_visible(timeout=TIMEOUT)
    # five stacked panels share one x axis: plotly draws one y axis per panel
    assert page.locator("#course_plot .js-plotly-plot g.ytick").count() > 0
    expect(page.locator("#course_plot")).to_contain_text("not measured")  # reconstructed points are labelled
    # the grade per day with its evidence (cartlab explain)
    expect(page.locator("#explain_text")).to_contain_text("ASTCT CRS grade 3", timeout=TIMEOUT)
    expect(page.locator("#grades_table")).to_contain_text("crs.", timeout=TIMEOUT)
    page.set_viewport_size({"width": 1280, "height": 2600})
    page.wait_for_timeout(800)
    page.screenshot(path=str(artifacts_dir / "screenshots" / "seed_patient.png"), full_page=True)


def test_without_token_nothing_is_shown(page, seed_server):
    response = page.goto(seed_server.url)
    assert response.status == 401
    expect(page.locator("body")).not_to_contain_text("CD7-AML-001")


def test_download_grades_csv(page, seed_server):
    _open_patient(page, seed_server.url)
    expect(page.locator("#grades_table")).to_contain_text("crs.", timeout=TIMEOUT)
    with page.expect_download(timeout=TIMEOUT) as info:
        page.locator("#dl_grades").click()
    dl = info.value
    assert dl.suggested_filename == "CD7-AML-001_grades.csv"
    rows = list(csv.DictReader(io.StringIO(Path(dl.path()).read_text(encoding="utf-8"))))
    crs = [r for r in rows if r["scale"].startswith("CRS")]
    # worst CRS grade of the seed case is 3 (paper); every graded day names its source rows
    assert max(int(r["grade"]) for r in crs if r["grade"]) == 3
    assert all(re.search(r"\.csv:\d+", r["evidence"]) for r in crs if r["grade"] and int(r["grade"]) > 0)


@pytest.mark.slow
def test_twin_forecast_two_regimens(page, seed_server):
    """The twin page: a forecast from the data up to day 7 under two regimens, with a progress panel
    while it runs; the table (downloaded) has both regimens, every row labelled simulated."""
    _open_patient(page, seed_server.url)
    expect(page.locator("#patient_headline_text")).to_contain_text("CRS grade 3", timeout=TIMEOUT)
    page.get_by_role("tab", name="Twin").click()
    controller.InputSelect(page, "twin_b").set("no_toci")
    page.locator("#twin_run").click()
    expect(page.locator("#twin_done")).to_be_visible(timeout=180_000)
    expect(page.locator("#twin_plot .js-plotly-plot .main-svg").first).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#twin_plot")).to_contain_text("simulated")
    with page.expect_download(timeout=TIMEOUT) as info:
        page.locator("#dl_twin").click()
    rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text(encoding="utf-8"))))
    assert {r["regimen"] for r in rows} == {"clinic", "no_toci"}
    assert {r["source"] for r in rows} == {"simulated"}
    for r in rows:
        if r["probability"]:
            assert 0.0 <= float(r["probability"]) <= 1.0
        else:  # quantiles are ordered
            vals = [float(r[k]) for k in ("pi90_lo", "pi50_lo", "median", "pi50_hi", "pi90_hi")]
            assert vals == sorted(vals)


def test_error_in_a_page_logs_no_patient_data(page, monkeypatch, capfd):
    """A computation that fails inside the patient page: the page says so, and the server's stderr has
    the error's type and code location only (cartlab serve runs under redacted_errors)."""
    import cartlab.app.figures as figures
    from cartlab.app.logs import WITHHELD, redacted_errors

    def broken(*args, **kwargs):
        raise ValueError(f"{SEED_SUBJECT}: 183945 copies/ug")

    monkeypatch.setattr(figures, "course_spec", broken)
    catalog = Catalog.from_study(seed_case(), "folder seed_case")
    with redacted_errors(), ServerThread(create_app(catalog, token=TOKEN)) as srv:
        _open_patient(page, srv.url)
        expect(page.locator("#course_plot.shiny-output-error")).to_be_visible(timeout=TIMEOUT)
        expect(page.locator("#patient_headline_text")).to_contain_text("CRS grade 3", timeout=TIMEOUT)  # the rest works
    err = capfd.readouterr().err
    assert "cartlab dashboard: ValueError at " in err and WITHHELD in err
    assert SEED_SUBJECT not in err and "183945" not in err
