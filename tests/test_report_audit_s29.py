"""Fixes of the report/dashboard regression audit (session 29, items 8-11): the Kaplan-Meier median
table says "not reached" / "not estimable" as km_median.csv does; the target antigen on the subject
page (report and dashboard); the early ICAHT grade as one range with its reason; the exposure
legend inside the figure, a relapse on the day of death drawn above the death marker, and the KM
band drawn the same by matplotlib and plotly.

Every expected value is derived by hand in the comment next to it, from the fixture named or from
the small study written below -- never copied from cartlab's output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "survival_s28"


def _analysis(folder):
    from cartlab.analyze import Analysis
    from cartlab.io import read_study

    return Analysis(read_study(folder))


class _NoFigures:
    """A renderer drawing nothing: the views' captions and tables only (fast)."""

    def __getattr__(self, name):
        return lambda *a, **k: None


def _view(analysis, key):
    from cartlab.report.cohort_views import view_specs

    (v,) = [v for v in view_specs(analysis, None, _NoFigures()) if v.key == key]
    assert v.unavailable is None, v.unavailable
    return v


@pytest.fixture(scope="module")
def c04():
    return _analysis(FIXTURES / "c04_cir")


@pytest.fixture(scope="module")
def c03():
    return _analysis(FIXTURES / "c03_endpoints")


# ---------------------------------------------------------------------------------------------
# 8. Kaplan-Meier median table: "not reached" vs "not estimable"


def test_km_median_table_words_the_empty_bounds(c04):
    # c04 OS: deaths on 58 (Q2) and 130 (Q4), censored 58 (Q1, Q3), 128 (Q5). S(58) = 4/5 = 0.8 with
    # log(-log) band [0.204, 0.969]; S(130) = 0 -> band undefined. Median = first t with S <= 0.5 = 130;
    # its lower CI bound = first t whose lower band is <= 0.5 = 58 (0.204); the upper bound needs the
    # upper band <= 0.5 (0.969 at 58), never reached before the band ends at S = 0 -> "not
    # estimable" (not "not reached").
    # EFS (session 34: Q3 and Q5, in remission without relapse or death, are censored on their last
    # response assessment, day 28, ELN 2022 Table 9): events 58 (Q1 relapse, Q2 death), 88 (Q4):
    # S(58) = 1 - 2/3 = 1/3, Greenwood var of log S = 2/(3*1), band (1/3)^exp(+-1.96*0.8165/1.0986) =
    # [0.009, 0.774]; S(88) = 0 (band undefined) -> median 58, lower 58 (0.009), upper band 0.774 >
    # 0.5 until the band ends at S = 0 -> "not estimable".
    t = _view(c04, "survival").table
    rows = {r["PARAMCD"]: r for r in t.iter_rows(named=True)}
    assert (rows["OS"]["median"], rows["OS"]["median_ci_low"], rows["OS"]["median_ci_high"]) == (
        "130", "58", "not estimable")
    assert (rows["EFS"]["median"], rows["EFS"]["median_ci_low"], rows["EFS"]["median_ci_high"]) == (
        "58", "58", "not estimable")
    # the numbers at risk stay numbers (OS: AVAL >= 0 -> 5 subjects)
    assert rows["OS"]["at_risk_day_0"] == 5


def test_km_median_words_when_nothing_is_reached():
    # one subject, event on day 0: S(0) = 0 -> median 0, the band is never defined -> both bounds
    # "not estimable"; one subject alive (no event): S stays 1 -> median and both bounds "not reached"
    from cartlab.report.cohort_stats import median_words

    assert median_words("1 event(s) in 1 subject(s); median 0 days, 95% CI not estimable - not estimable") == (
        "0", "not estimable", "not estimable")
    assert median_words("0 event(s) in 1 subject(s); median not reached, 95% CI not reached - not reached") == (
        "not reached", "not reached", "not reached")
    assert median_words(None) == ("—", "—", "—")


# ---------------------------------------------------------------------------------------------
# 9 / 10. a small study: target antigen and early ICAHT range


def _write_study(folder: Path) -> Path:
    """A2 (T-ALL, CD7 CAR-T 1e6 cells/kg on day 0): CD7 on 20% of blasts on day -7 and on 15% on
    day 28 (cut-off: "below 30%" = the default antigen_negative_below_pct); marrow blasts 80% before,
    1% on day 28; one ANC (1.5) and one platelet count (150) on day 28, nothing else in days 0-30."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "subjects.csv").write_text(
        "subject_id,sex,age_years,disease,target,last_followup_day\nA2,M,30,T-ALL,CD7,120\n")
    (folder / "doses.csv").write_text("subject_id,day,agent,dose,unit\nA2,0,CAR-T,1000000,cells/kg\n")
    (folder / "observations.csv").write_text(
        "subject_id,day,param,analyte,value,value_text,unit,lloq,specimen\n"
        "A2,-7,BMBLAST,,80,,%,,BM\n"
        "A2,-7,TGTBLAST,CD7,20,,%,,BM\n"
        "A2,28,TGTBLAST,CD7,15,,%,,BM\n"
        "A2,28,BMBLAST,,1,,%,,BM\n"
        "A2,28,PBBLAST,,0,,%,,PB\n"
        "A2,28,NEUT,,1.5,,10^9/L,,PB\n"
        "A2,28,PLAT,,150,,10^9/L,,PB\n")
    return folder


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return _analysis(_write_study(tmp_path_factory.mktemp("s29") / "study"))


# CD7 20% before treatment is already below 30% and 15% on day 28 is still below: low at baseline,
# not a loss; marrow blasts 1% < 5% the same day: not a relapse marrow
ANTIGEN_LINE = ("CD7 on blasts (cut-off 30%): 20% before treatment (day -7); 15% on day 28: below the cut-off "
                "at baseline, not a documented loss, marrow blasts below 5%")
# days 0-30 = 31 days, one ANC (1.5 >= 0.5) on day 28: grade 0 as measured; the 30 days without an
# ANC could each be < 0.1 -> up to grade 4 (EHA/EBMT 2023 early ICAHT); the study table's "0–4"
ICAHT_EARLY = "0–4 (range: no ANC on 30 day(s))"


def _page(analysis, sid):
    from cartlab.report.html import CourseFigure, render_subject_html

    return render_subject_html(analysis.study, sid, summary=analysis.subject_summary(), analysis=analysis,
                               course=CourseFigure("", {"error": "not drawn in this test", "panels": []}))


def test_subject_page_shows_the_antigen_status_and_one_early_icaht_cell(small):
    html = _page(small, "A2")
    assert ANTIGEN_LINE in html
    assert ICAHT_EARLY in html  # the summary's one early-ICAHT cell
    from cartlab.report.html import ICAHT_EARLY_LABEL, _summary_block

    block = _summary_block(small.subject_summary(), "A2", analysis=small)
    items = dict(block["items"])
    assert items[ICAHT_EARLY_LABEL] == ICAHT_EARLY
    # the raw pair is no longer two columns of the page's summary
    assert "icaht_early_grade" not in items and "icaht_early_grade_max" not in items


def test_antigen_status_words_every_rule():
    # the rules of derive_antigen_loss, in the page's words (missing is not negative: no baseline
    # is "cannot be told", never a loss nor retained); antigen.undetermined added in session 33
    from cartlab.report.subject_blocks import ANTIGEN_STATUS

    assert set(ANTIGEN_STATUS) == {"antigen.loss", "antigen.low_at_baseline", "antigen.no_baseline",
                                   "antigen.retained", "antigen.undetermined", "antigen.no_blasts"}
    # session 42: every antigen.* rule of the response rule table has the page's words (the table,
    # not this list, is the source: antigen.no_blasts was added there in session 37)
    from cartlab.criteria import load_table

    table = load_table("response_rules", "cartlab.response")
    table_ids = {r.id for rules in table.rule_sets.values() for r in rules if r.id.startswith("antigen.")}
    assert table_ids <= set(ANTIGEN_STATUS), table_ids - set(ANTIGEN_STATUS)
    assert "cannot be assessed" in ANTIGEN_STATUS["antigen.no_blasts"]
    assert "cannot be told" in ANTIGEN_STATUS["antigen.undetermined"]
    assert "not a documented loss" in ANTIGEN_STATUS["antigen.low_at_baseline"]
    assert "cannot be told" in ANTIGEN_STATUS["antigen.no_baseline"]


def test_dashboard_patient_page_and_cohort_table(small):
    from cartlab.app import cohort as C
    from cartlab.app.data import build_view
    from cartlab.app.server import csv_text, response_notes_lines

    view = build_view(small.study)
    assert f"Target antigen: {ANTIGEN_LINE}" in response_notes_lines(view.analysis, "A2")
    from cartlab.app.server import icaht_text

    assert icaht_text(view.analysis, "A2", view.patient("A2").summary) == ICAHT_EARLY
    shown = C.cohort_display(view.cohort)
    assert "icaht_early_grade_max" not in shown.columns
    assert shown.filter(pl.col("subject_id") == "A2")["icaht_early"].to_list() == ["0–4"]
    # the CSV download (the filtered cohort itself) keeps both raw columns: 0 and 4
    header, row = csv_text(view.cohort).splitlines()[:2]
    cols = dict(zip(header.split(","), row.split(",")))
    assert (cols["icaht_early_grade"], cols["icaht_early_grade_max"]) == ("0", "4")


def test_grade_range_is_the_study_tables_rule():
    from cartlab.report.cells import grade_range

    assert grade_range(0, 4) == "0–4"
    assert grade_range(2, 2) == "2"
    assert grade_range(None, 4) == "NE (≤4)"  # not evaluable, with its bound (review 41 F4)
    assert grade_range(None, None) == "—"
    assert grade_range(1, 4, "no ANC on 14 day(s)") == "1–4 (range: no ANC on 14 day(s))"
    assert grade_range(3, 3, "no ANC on 2 day(s)") == "3"  # no range, no reason


# ---------------------------------------------------------------------------------------------
# 11a. exposure legend inside the figure


def test_exposure_legend_fits_inside_the_figure():
    # every legend entry present: CRS >= 3 (True), 0-2 (False), not settled (None), a zero exposure
    from cartlab.report import cohort_data as cd
    from cartlab.report.cohort_mpl import exposure_figure

    pts = pl.DataFrame({"subject_id": ["a", "b", "c", "d"], "car_cmax": [1e4, 2e5, 3e3, 0.0],
                        "car_auc_0_28": [1e5, 2e6, 3e4, 0.0], "response": ["CR", "NR", "no criteria", "CR"],
                        "crs_ge3": [True, False, None, False]})
    fig = exposure_figure(cd.ExposureData(pts, pl.DataFrame()))
    r = fig.canvas.get_renderer()
    width = fig.bbox.width  # 9 in x 100 dpi = 900 px; the SVG is the same figure (same layout)
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert legends
    for leg in legends:
        assert leg.get_window_extent(r).x1 <= width
        for t in leg.get_texts():
            assert t.get_window_extent(r).x1 <= width, t.get_text()


# ---------------------------------------------------------------------------------------------
# 11b. a relapse on the day of death is not hidden


def _topmost(ax, x, y):
    """The face colour of the marker collection drawn last at (x, y) (zorder, then order added)."""
    from matplotlib.collections import PathCollection
    from matplotlib.colors import to_hex

    hits = []
    for i, c in enumerate(ax.collections):
        if not isinstance(c, PathCollection):
            continue
        off = c.get_offsets()
        for j, (ox, oy) in enumerate(np.asarray(off)):
            if abs(ox - x) < 1e-9 and abs(oy - y) < 1e-9:
                fc = c.get_facecolors()
                hits.append((c.get_zorder(), i, to_hex(fc[j % len(fc)]) if len(fc) else "none"))
    return max(hits)[2] if hits else None, len(hits)


def test_relapse_on_the_day_of_death_is_drawn_on_top(c03):
    # c03 P9: CR on day 28, relapse marrow and death on day 100 (fixture README): both markers on
    # (100, P9); the relapse (antigen not assessed: #f4a582) must be on top of the black death square
    from cartlab.report import cohort_data as cd
    from cartlab.report.cohort_mpl import swimmer_figure
    from cartlab.report.cohort_plotly import swimmer_figure as plotly_swimmer

    d = cd.swimmer_data(c03)
    y = d.bars.filter(pl.col("subject_id") == "P9")["order"][0]
    fig = swimmer_figure(d)
    colour, n = _topmost(fig.axes[0], 100.0, float(y))
    assert n >= 2 and colour == "#f4a582"
    # plotly: the trace drawn last holding (100, P9) is a relapse, and the legend is unchanged
    f = plotly_swimmer(d)
    at = [tr for tr in f.data if tr.type == "scatter" and any(
        x == 100.0 and s == "P9" for x, s in zip(tr.x or (), tr.y or ()))]
    assert len(at) >= 2 and at[-1].name.startswith("relapse")
    shown = [tr.name for tr in f.data if tr.type == "scatter" and tr.showlegend is not False]
    assert len(shown) == len(set(shown))  # no second legend entry for the redrawn marker


# ---------------------------------------------------------------------------------------------
# 11c. the KM band: the same in the report (matplotlib) and the dashboard (plotly)


def test_km_band_runs_to_the_day_s_reaches_zero_in_both_renderers(c04):
    # c04 OS (CASES.md): band 1-1 on [0, 58), 0.204-0.969 on [58, 130) -- the interval at 128 (a
    # censoring, S still 0.8) holds until the next time, 130 -- and none at 130 where S = 0 (the
    # Greenwood term is infinite). So the band's last x is 130 and its lowest value 0.204.
    from matplotlib.colors import to_hex

    from cartlab.report import cohort_data as cd
    from cartlab.report.cohort_mpl import KM_COLORS, survival_figure
    from cartlab.report.cohort_plotly import survival_figure as plotly_survival

    d = cd.survival_data(c04)
    fig = survival_figure(d)
    os_col = KM_COLORS["OS"]
    xs, ys = [], []
    for c in fig.axes[0].collections:
        fc = c.get_facecolor()
        if len(fc) and to_hex(fc[0]) == os_col and c.get_paths():
            v = np.concatenate([p.vertices for p in c.get_paths()])
            xs += v[:, 0].tolist()
            ys += v[:, 1].tolist()
    assert max(xs) == pytest.approx(130.0) and min(ys) == pytest.approx(0.204, abs=1e-3)
    f = plotly_survival(d)
    bx = [x for tr in f.data if tr.name == "OS 95% CI" for x in tr.x]
    by = [y for tr in f.data if tr.name == "OS 95% CI" for y in tr.y]
    assert max(bx) == pytest.approx(130.0) and min(by) == pytest.approx(0.204, abs=1e-3)
