"""Tests of cartlab.report: the course figure and the self-contained HTML reports."""

from __future__ import annotations

import re

import matplotlib.text
import polars as pl
import pytest

from cartlab.model import Study, conform
from cartlab.report import course_figure, write_study_report, write_subject_report
from cartlab.report.figures import RECONSTRUCTED_CAPTION
from cartlab.report.html import subject_filename

SID = "CD7-AML-001"
EVIL = "<script>alert(1)</script>"
SHA = "9f2c" + "0" * 56 + "beef"


def _obs(sid, day, param, value, unit, source, **kw):
    return {"subject_id": sid, "day": float(day), "param": param, "value": value, "unit": unit,
            "source": source, "specimen": "PB", **kw}


def make_study(*, reconstructed: bool = True, evil_subject: bool = True) -> Study:
    """Seed-like case: paper anchors, reconstructed curves (optional), a BLQ result; plus a
    second subject (id ``<script>…``) with observed NEUT only and no CARCOPY."""
    r = "reconstructed" if reconstructed else "paper"
    obs = [
        _obs(SID, -1, "CARCOPY", None, "copies/ug gDNA", r, value_text="<50", censor="<",
             censor_limit=50.0),
        _obs(SID, 7, "CARCOPY", 8200.0, "copies/ug gDNA", r),
        _obs(SID, 14, "CARCOPY", 183945.0, "copies/ug gDNA", "paper"),
        _obs(SID, 28, "CARCOPY", 5084.0, "copies/ug gDNA", "paper"),
        _obs(SID, 4.3, "TEMP", 38.9, "degC", r),
        _obs(SID, 4.7, "TEMP", 39.4, "degC", "paper"),
        _obs(SID, 8, "TEMP", 37.0, "degC", r),
        _obs(SID, 4, "CRP", 150.0, "mg/L", r),
        _obs(SID, 5, "IL6", 1200.0, "pg/mL", r),
        _obs(SID, 5, "IL10", 150.0, "pg/mL", r),
        _obs(SID, 5, "IFNG", None, "pg/mL", r, value_text="<2", censor="<", censor_limit=2.0),
        _obs(SID, 5, "NEUT", 0.05, "10^9/L", r),
        _obs(SID, 10, "NEUT", 0.0, "10^9/L", r),
        _obs(SID, 5, "PLAT", 20.0, "10^9/L", r),
    ]
    subjects = [{"subject_id": SID, "sex": "F", "age_years": 17.0, "disease": "AML",
                 "target": "CD7", "source": "paper"}]
    if evil_subject:
        subjects.append({"subject_id": EVIL, "sex": "M", "age_years": 40.0, "disease": "T-ALL"})
        obs += [_obs(EVIL, d, "NEUT", v, "10^9/L", "observed") for d, v in [(0, 1.1), (7, 0.2)]]
    doses = [
        {"subject_id": SID, "day": float(d), "agent": "fludarabine", "dose": 30.0, "unit": "mg/m2",
         "source": "paper"}
        for d in (-5, -4, -3)
    ] + [
        {"subject_id": SID, "day": 0.0, "agent": "CAR-T", "dose": 1e6, "unit": "cells/kg",
         "source": "paper"},
        {"subject_id": SID, "day": 2.0, "agent": "CAR-T", "dose": 4e6, "unit": "cells/kg",
         "source": "paper"},
    ]
    itv = [{"subject_id": SID, "start_day": 5.0, "end_day": 7.0, "category": "vasopressor",
            "agent": "norepinephrine", "indication": "CRS", "source": r,
            "source_note": "days not stated in the paper"}]
    ev = [{"subject_id": SID, "day": 17.0, "event": "marrow <assessment>", "detail": "MLFS & MRD",
           "source": "paper"}]
    sources = pl.DataFrame({"file": ["observations.csv", "subjects.csv"], "format": ["csv", "csv"],
                            "sha256": [SHA, "1" * 64], "n_rows": [len(obs), len(subjects)]})
    return Study(
        study_id="demo",
        subjects=conform(pl.DataFrame(subjects), "subjects"),
        doses=conform(pl.DataFrame(doses), "doses"),
        observations=conform(pl.DataFrame(obs, infer_schema_length=None), "observations"),
        interventions=conform(pl.DataFrame(itv), "interventions"),
        events=conform(pl.DataFrame(ev), "events"),
        sources=sources,
    )


def empty_study() -> Study:
    return Study(study_id="empty", subjects=conform(pl.DataFrame({"subject_id": ["S1"]}), "subjects"))


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text)]


def _axes(fig) -> dict:
    return {ax.get_label(): ax for ax in fig.axes}


# ------------------------------------------------------------------------------------ figure


def test_figure_panels_and_scales():
    fig = course_figure(make_study(), SID)
    axes = _axes(fig)
    assert {"treatment", "car", "temp", "crp", "cytokines", "counts"} <= set(axes)
    assert axes["car"].get_yscale() == "log"
    assert axes["cytokines"].get_yscale() == "log"
    assert axes["temp"].get_yscale() == "linear"
    # shared day axis
    assert axes["car"].get_xlim() == axes["counts"].get_xlim()
    lo, hi = axes["counts"].get_xlim()
    assert lo < -5 and hi > 28
    info = fig.cartlab_info
    assert info["has_paper"] and info["has_reconstructed"]
    assert all(info["panels_with_data"].values())
    # paper values annotated
    texts = _texts(fig)
    assert "183,945" in texts and "5,084" in texts
    assert any(t.startswith("39.4") for t in texts)
    # fever and ANC lines
    assert any(abs(line.get_ydata()[0] - 38.0) < 1e-9 for line in axes["temp"].get_lines()
               if len(line.get_ydata()) == 2)


def test_blq_drawn_at_limit_with_down_triangle():
    fig = course_figure(make_study(), SID)
    car = _axes(fig)["car"]
    blq = [ln for ln in car.get_lines() if ln.get_marker() == "v"]
    assert len(blq) == 1
    assert blq[0].get_xdata()[0] == -1 and blq[0].get_ydata()[0] == 50
    # zero ANC on the log axis is drawn at the floor as "below", not dropped
    counts = _axes(fig)["counts"]
    assert any(ln.get_marker() == "v" for ln in counts.get_lines())


def test_paper_filled_reconstructed_open():
    fig = course_figure(make_study(), SID)
    car = _axes(fig)["car"]
    pts = {ln.get_xdata()[0]: ln for ln in car.get_lines() if ln.get_marker() in ("o", "v")}
    assert pts[14].get_markerfacecolor() != "white"  # paper: filled
    assert pts[7].get_markerfacecolor() == "white"  # reconstructed: open


def test_reconstructed_caption_only_when_reconstructed_rows():
    fig = course_figure(make_study(), SID)
    assert RECONSTRUCTED_CAPTION in _texts(fig)
    assert "open markers = values not measured (reconstructed, synthetic or simulated)" in _texts(fig)
    fig2 = course_figure(make_study(reconstructed=False), SID)
    assert RECONSTRUCTED_CAPTION not in _texts(fig2)
    assert not fig2.cartlab_info["has_reconstructed"]
    # observed-only subject: no caption either
    fig3 = course_figure(make_study(), EVIL)
    assert RECONSTRUCTED_CAPTION not in _texts(fig3)


def test_caption_follows_day_range():
    # only the paper anchors (days 14 and 28) in range, but the strip's reconstructed vasopressor
    # (days 5-7) is out of range too → no reconstructed caption
    fig = course_figure(make_study(), SID, day_range=(13, 30))
    assert fig.cartlab_info["day_range"] == (13, 30)
    assert RECONSTRUCTED_CAPTION not in _texts(fig)


def test_subject_without_car_copies_says_no_data():
    fig = course_figure(make_study(), EVIL)
    axes = _axes(fig)
    assert axes["car"].get_yscale() == "log"
    car_texts = [t.get_text() for t in axes["car"].texts]
    assert "no data" in car_texts
    assert "no data" in [t.get_text() for t in axes["cytokines"].texts]
    assert fig.cartlab_info["panels_with_data"]["counts"] is True
    assert fig.cartlab_info["panels_with_data"]["car"] is False
    fig.canvas.draw()  # renders without error


def test_figure_empty_subject_and_unknown_subject():
    fig = course_figure(empty_study(), "S1")
    assert not any(fig.cartlab_info["panels_with_data"].values())
    fig.canvas.draw()
    with pytest.raises(KeyError):
        course_figure(empty_study(), "nobody")


def test_figure_dollar_in_text_is_not_mathtext():
    s = make_study()
    s.subjects = s.subjects.with_columns(pl.lit("$x$ disease").alias("disease"))
    course_figure(s, SID).canvas.draw()


# ------------------------------------------------------------------------------------ html


EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


def test_subject_report_self_contained_banner_provenance(tmp_path):
    summary = pl.DataFrame({"subject_id": [SID], "crs_grade_astct": [3], "best_response": [None]},
                           schema_overrides={"best_response": pl.String})
    p = write_subject_report(make_study(), SID, tmp_path, summary=summary)
    html = p.read_text(encoding="utf-8")
    assert p.parent == tmp_path and p.suffix == ".html"
    assert not EXTERNAL.search(html)
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html.lower()
    # the course figure is a file of the report folder, as SVG (linked); PNG only when asked for (issue 17)
    src = re.search(r'<img alt="Clinical course[^"]*" src="([^"]+)"', html).group(1)
    assert src.startswith("figures/") and ".." not in src and src.endswith(".svg")
    svg = (tmp_path / src).read_text(encoding="utf-8")
    assert "<svg" in svg and "CAR-T expansion" in svg  # text kept as text (svg.fonttype none)
    assert not (tmp_path / src).with_suffix(".png").exists()
    with_png = write_subject_report(make_study(), SID, tmp_path / "png", summary=summary, png=True)
    assert (tmp_path / "png" / src).with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 'href="' + src[:-4] + '.png"' in with_png.read_text(encoding="utf-8")
    # banner with counts
    assert "This case contains reconstructed values" in html
    assert re.search(r"source = paper</code>\): \d+ rows", html)
    # provenance hash
    assert SHA in html
    # summary: given value + em dash with the engine note
    assert "crs_grade_astct" in html and ">3<" in html
    # every engine exists: the legend says why a value can be empty, not that an engine is missing
    assert "—" in html and "not evaluable: an input is missing" in html and "not yet available" not in html
    # escaped data
    assert "marrow &lt;assessment&gt;" in html and "MLFS &amp; MRD" in html
    # tables
    assert "lymphodepletion" in html and "CAR-T infusion" in html and "norepinephrine" in html


def test_no_banner_without_reconstructed_rows(tmp_path):
    html = write_subject_report(make_study(reconstructed=False), SID, tmp_path).read_text()
    assert "contains reconstructed values" not in html
    assert RECONSTRUCTED_CAPTION.capitalize() not in html


def test_subject_id_is_escaped(tmp_path):
    p = write_subject_report(make_study(), EVIL, tmp_path)
    html = p.read_text(encoding="utf-8")
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html.lower()
    assert "<" not in p.name and ">" not in p.name and p.name == subject_filename(EVIL)


def test_empty_tables_and_no_summary(tmp_path):
    p = write_subject_report(empty_study(), "S1", tmp_path, title="Empty <case>")
    html = p.read_text(encoding="utf-8")
    assert "Empty &lt;case&gt;" in html
    assert "no doses recorded" in html and "no interventions recorded" in html
    assert "no events recorded" in html
    assert "not evaluable: an input is missing" in html and "not yet available" not in html
    assert "crs_grade_astct" in html  # default summary columns shown as —
    assert "contains reconstructed values" not in html
    assert not EXTERNAL.search(html)
    with pytest.raises(KeyError):
        write_subject_report(empty_study(), "nobody", tmp_path)


def test_study_report_index_links_each_subject(tmp_path):
    out = tmp_path / "report"
    idx = write_study_report(make_study(), out)
    assert idx == out / "index.html"
    html = idx.read_text(encoding="utf-8")
    assert not EXTERNAL.search(html)
    # one inline script (the table sort), none loaded from anywhere; no data inside it
    assert re.findall(r"<script[^>]*>", html.lower()) == ["<script>"]
    assert "<script>alert(1)" not in html
    assert "This study contains reconstructed values" in html
    for sid in (SID, EVIL):
        name = subject_filename(sid)
        assert f'href="{name}"' in html
        sub_html = (out / name).read_text(encoding="utf-8")
        assert 'href="index.html"' in sub_html
    assert SHA in html


def test_study_report_empty_study(tmp_path):
    s = Study(study_id="none", subjects=conform(pl.DataFrame({"subject_id": []},
                                                             schema={"subject_id": pl.String}),
                                                "subjects"))
    html = write_study_report(s, tmp_path).read_text(encoding="utf-8")
    assert "no subjects" in html


def test_a_synthetic_cohort_is_not_called_reconstructed_from_the_publication(tmp_path):
    """Issue 17: the banner names the kinds of not-measured rows the data hold (a synthetic cohort is
    not 'made consistent with the publication')."""
    from cartlab.datasets import synthetic_cohort
    from cartlab.io import read_study

    study = read_study(synthetic_cohort(2, seed=3, out_dir=tmp_path / "c"))
    sid = study.subject_ids[0]
    html = write_subject_report(study, sid, tmp_path / "r").read_text(encoding="utf-8")
    assert "This case contains synthetic values." in html
    assert "made consistent with the publication" not in html
    assert "synthetic (generated, from no patient)" in html
    assert "source = paper" not in html  # no line for a kind the data do not hold


def test_a_lymphoma_subject_says_why_it_has_no_response(tmp_path):
    """Issue 17: the reason for an empty best response (no criteria for the disease) is shown next
    to the empty cell, on the subject page and on the study page."""
    from cartlab.analyze import Analysis
    from cartlab.datasets import seed_case
    from cartlab.report.study import write_study_report

    s = seed_case()
    s.subjects = s.subjects.with_columns(pl.lit("DLBCL").alias("disease"))
    a = Analysis(s)
    idx = write_study_report(s, tmp_path, summary=a.subject_summary(), analysis=a)
    note = "— (no response criteria for disease &#39;DLBCL&#39; yet)"
    assert note in idx.read_text(encoding="utf-8")
    assert note in (tmp_path / subject_filename("CD7-AML-001")).read_text(encoding="utf-8")


@pytest.mark.parametrize("value, text", [(-2 / 3, "-0.67"), (0.5, "0.5"), (14.0, "14"), (-0.001, "0"),
                                         (1.125, "1.13"), (14.001, "14"), (None, "—")])
def test_days_from_datetimes_print_with_two_decimals(value, text):
    """Issue 17: a day computed from a datetime printed as -0.666667; by hand: -2/3 -> -0.67.
    Session 34: one formatter (cartlab._days) for report, dashboard and messages, hundredths rounded
    half away from zero (1.125 -> 1.13; it was 1.12 by Python's half-even string formatting), and
    14.001 -> "14" (it printed "14.")."""
    from cartlab.report.cells import _day

    assert _day(value) == text


# ------------------------------------------------------------------------------ study report (issue 17)


def _synthetic(tmp_path, n):
    from cartlab.datasets.synthetic import synthetic_cohort
    from cartlab.io import read_study

    return read_study(synthetic_cohort(n, seed=5, out_dir=tmp_path / f"syn{n}"))


# Session 42 (suite speed): each cohort is generated and read once per module; no test changes a Study
# (write_study_report only reads it), and each test writes its report into its own tmp_path.
@pytest.fixture(scope="module")
def syn3(tmp_path_factory):
    return _synthetic(tmp_path_factory.mktemp("syn3"), 3)


@pytest.fixture(scope="module")
def syn6(tmp_path_factory):
    """The 6-subject cohort and its Analysis (default options), shared by the study-page tests."""
    from cartlab.analyze import Analysis

    study = _synthetic(tmp_path_factory.mktemp("syn6"), 6)
    return study, Analysis(study)


def test_study_report_parallel_equals_serial_and_links_every_file(syn6, tmp_path, monkeypatch):
    """Figures drawn on 2 worker processes give the same files as drawn in this process; every
    <img>/<a> of every page points to a file of the report folder."""
    import cartlab.report.study as study_mod

    study, a = syn6
    # Session 42 (suite speed): the pool is used above SERIAL_LIMIT subjects (8); rather than drawing 11
    # subjects twice, the limit is lowered for this test so that the 6-subject cohort goes to the pool
    # (6 chunks of 1 on 2 workers); the spy below checks that the pool was used indeed
    monkeypatch.setattr(study_mod, "SERIAL_LIMIT", 3)
    assert len(study.subject_ids) > study_mod.SERIAL_LIMIT
    pools = []
    real_pool = study_mod.ProcessPoolExecutor

    def spy(*args, **kwargs):
        pools.append(kwargs.get("max_workers"))
        return real_pool(*args, **kwargs)

    monkeypatch.setattr(study_mod, "ProcessPoolExecutor", spy)
    serial = write_study_report(study, tmp_path / "serial", analysis=a, workers=1, pdf=False).parent
    assert pools == []  # workers=1: drawn in this process
    parallel = write_study_report(study, tmp_path / "parallel", analysis=a, workers=2, pdf=False).parent
    assert pools == [2]  # drawn by 2 worker processes
    files = sorted(p.relative_to(serial).as_posix() for p in serial.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(parallel).as_posix() for p in parallel.rglob("*") if p.is_file())
    for rel in files:
        assert (serial / rel).read_bytes() == (parallel / rel).read_bytes(), rel
    for page in serial.glob("*.html"):
        html = page.read_text(encoding="utf-8")
        assert not EXTERNAL.search(html)
        for ref in re.findall(r'(?:src|href)="([^"#]+)"', html):
            assert ".." not in ref and (serial / ref).is_file(), (page.name, ref)
    # one course figure per subject, as SVG (PNG only with png=True, issue 17)
    for sid in study.subject_ids:
        stem = subject_filename(sid)[len("subject_"):-len(".html")]
        assert not (serial / "figures" / f"course_{stem}.png").exists()
        assert "<svg" in (serial / "figures" / f"course_{stem}.svg").read_text(encoding="utf-8")


def test_study_page_views_sortable_table_and_pdf(syn6, tmp_path):
    """The study page shows the cohort views (each drawn, or its reason), the narrow subject table with
    numeric sort keys, and the same page as a PDF whose text says what the page says."""
    from pypdf import PdfReader

    study, a = syn6
    out = write_study_report(study, tmp_path / "r", analysis=a, workers=1).parent
    html = (out / "index.html").read_text(encoding="utf-8")
    for title in ("Swimmer plot", "CRS and ICANS grades", "Survival (Kaplan-Meier)", "Toxicity summary",
                  "Response rates"):
        assert f"<h3>{title}</h3>" in html, title
    assert "protocol deviations: no protocol was given" in html  # unavailable view names why
    # the worst possible CRS grade of each subject (its grade_max where an input is missing, else its grade)
    # is the sort key of its CRS cell (derived from crs_daily)
    worst = a.table("crs_daily").group_by("subject_id").agg(pl.coalesce("grade_max", "grade").max())
    for sid, g in worst.iter_rows():
        row = re.search(rf'<tr[^>]*>\s*<td data-sort="{re.escape(sid)}">.*?</tr>', html, re.S).group(0)
        keys = re.findall(r'data-sort="([^"]*)"', row)
        assert float(keys[4]) == float(g), (sid, keys)  # subject, disease, age, sex, then CRS
    text = " ".join(p.extract_text() for p in PdfReader(out / "study.pdf").pages)
    assert "study report" in text and "Swimmer plot" in text and "Subjects" in text
    assert 'href="study.pdf"' in html
    assert (out / "tables" / "subject_summary.csv").read_text().startswith("subject_id,")


def test_a_figure_that_cannot_be_drawn_leaves_the_page_and_the_rest(syn3, tmp_path, monkeypatch):
    """One figure failing never sinks the report: its page says why, every other figure is drawn."""
    import cartlab.report.html as html_mod

    study = syn3
    bad = study.subject_ids[1]
    real = html_mod.course_figure

    def flaky(s, sid, **kw):
        if sid == bad:
            raise ValueError("no day axis")
        return real(s, sid, **kw)

    monkeypatch.setattr(html_mod, "course_figure", flaky)
    out = write_study_report(study, tmp_path / "r", workers=1, pdf=False).parent
    page = (out / subject_filename(bad)).read_text(encoding="utf-8")
    assert "could not be drawn (ValueError: no day axis)" in page and "Toxicity" in page
    assert len(list((out / "figures").glob("course_*.svg"))) == 2


def test_report_errors_leave_nothing_behind(syn3, tmp_path, monkeypatch):
    """The report folder is written atomically: an error midway leaves no partial report."""
    import cartlab.report.study as study_mod

    study = syn3

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(study_mod, "render_study_html", boom)
    with pytest.raises(RuntimeError):
        write_study_report(study, tmp_path / "r", workers=1, pdf=False)
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".r.")]


def test_subject_table_cells_readable_and_sortable():
    """The narrow subject table: a grade range shows as "2–3" and sorts by its upper end; numbers are
    formatted for reading and sorted as numbers; a missing value is "—" with the engine's note."""
    from cartlab.report.study import SUBJECT_TABLE, _subject_cells

    row = {"crs_grade_astct": 2, "crs_grade_astct_max": 3, "crs_onset_day": 3.0, "crs_resolution_day": None,
           "icans_grade_astct": None, "icans_grade_astct_max": None, "icaht_early_grade": 3,
           "icaht_late_grade": None, "best_response": "MLFS", "best_response_day": 17.0, "mrd_negative": False,
           "car_cmax": 183945.0, "car_tmax": 14.0, "car_auc_0_28": 1646460.3}
    cells = _subject_cells(row, None)
    assert [h for h, _, _ in SUBJECT_TABLE][0] == "CRS (ASTCT)"
    assert [c["text"] for c in cells] == ["2–3 (d3–?)", "—", "3 / —", "MLFS (d17)", "no", "183,945 (d14)",
                                          "1,646,460"]
    assert [c["sort"] for c in cells] == ["3.0", "", "3.0", "MLFS", "False", "183945.0", "1646460.3"]
    empty = _subject_cells(None, "no response criteria for disease 'DLBCL' yet")
    assert empty[3]["text"] == "— (no response criteria for disease 'DLBCL' yet)" and empty[3]["sort"] == ""


def test_study_table_provenance_counts_agree_with_the_subject_pages(tmp_path):
    """The study table counts each subject's rows in one pass; they must equal what the subject's own
    page counts (``provenance_counts`` of the subject), for a study mixing paper, reconstructed and
    observed rows."""
    from cartlab.report.html import provenance_counts
    from cartlab.report.study import _provenance_by_subject

    s = make_study()
    per = _provenance_by_subject(s)
    for sid in s.subject_ids:
        c = provenance_counts(s.subject(sid))
        assert per[sid] == {"paper": c["paper"], "not_measured": c["not_measured"], "observed": c["observed"]}, sid
    assert sum(v["paper"] for v in per.values()) > 0 and sum(v["not_measured"] for v in per.values()) > 0
