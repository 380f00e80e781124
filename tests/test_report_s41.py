"""Review 41 (report and dashboard): fixes of /work/notes/review41_report/REPORT.md F1-F9.

Expected values are worked out by hand from the rows written here and the rules quoted in each test
(docs/report.md "Provenance marks", the EHA/EBMT 2023 ICAHT windows, ASTCT 2019 CRS inputs, RFC 4180),
never copied from cartlab's output.

Study ``S41`` (a folder with events.csv):
* ``P`` (AML): every row ``paper``; the subjects row names ``reconstructed_columns =
  last_followup_day`` (the seed case's pattern); an allo-HSCT on day 45 whose source note says "day 45
  is approximate". No death: the OS bar ends at last_followup_day 60.
* ``Q`` (B-ALL): every row ``synthetic``; CAR-T copies and IL-6 in blood; no NEUT (no ANC at all), no
  TEMP and no SYSBP (CRS has no day to grade); an allo-HSCT on day 30 with no note.
Study ``N``: ``Q``'s rows alone, in a folder without events.csv (and without interventions.csv).
"""

from __future__ import annotations

import html as _html
import re
from types import SimpleNamespace

import polars as pl
import pytest

SUBJECTS = """subject_id,sex,age_years,weight_kg,height_cm,disease,target,last_followup_day,source,source_note,reconstructed_columns
P,F,17,52,160,AML,CD7,60,paper,follow-up end not stated,last_followup_day
Q,M,40,70,175,B-ALL,CD19,60,synthetic,,
"""
DOSES = """subject_id,day,agent,dose,unit,source
P,-5,fludarabine,30,mg/m2,paper
P,0,CAR-T,1000000,cells/kg,paper
Q,-5,fludarabine,30,mg/m2,synthetic
Q,0,CAR-T,1000000,cells/kg,synthetic
"""
OBS = """subject_id,day,param,value,unit,specimen,lln,uln,source
P,1,TEMP,37.0,C,,,,paper
P,1,SYSBP,120,mmHg,,,,paper
P,5,NEUT,0.3,10^9/L,,,,paper
P,20,NEUT,2.0,10^9/L,,,,paper
Q,3,CARCOPY,1000,copies/ug,PB,,,synthetic
Q,7,CARCOPY,50000,copies/ug,PB,,,synthetic
Q,14,CARCOPY,2000,copies/ug,PB,,,synthetic
Q,3,IL6,20,pg/mL,,,,synthetic
Q,7,IL6,300,pg/mL,,,,synthetic
Q,5,K,3.4,mmol/L,,3.5,5.1,synthetic
"""
EVENTS = """subject_id,day,event,detail,attribution,source,source_note
P,45,allo_hsct,allogeneic HSCT,,paper,the paper says 'six weeks after'; day 45 is approximate
Q,30,allo_hsct,allogeneic HSCT,,synthetic,
"""


def _text(page: str) -> str:
    return " ".join(_html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def _folder(root, name, files):
    folder = root / name
    folder.mkdir()
    for fname, text in files.items():
        (folder / fname).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def s41(tmp_path_factory):
    from cartlab.analyze import Analysis
    from cartlab.io.study_folder import read_study

    root = tmp_path_factory.mktemp("s41")
    folder = _folder(root, "S41", {"subjects.csv": SUBJECTS, "doses.csv": DOSES, "observations.csv": OBS,
                                   "events.csv": EVENTS, "interventions.csv": "subject_id,start_day,category,agent,source\n"})
    study = read_study(folder)
    a = Analysis(study)
    return SimpleNamespace(study=study, analysis=a, summary=a.subject_summary())


@pytest.fixture(scope="module")
def n_study(tmp_path_factory):
    from cartlab.analyze import Analysis
    from cartlab.io.study_folder import read_study

    keep = lambda text: "\n".join(line for line in text.splitlines() if not line.startswith("P,")) + "\n"
    root = tmp_path_factory.mktemp("s41n")
    folder = _folder(root, "N", {"subjects.csv": keep(SUBJECTS), "doses.csv": keep(DOSES),
                                 "observations.csv": keep(OBS)})
    study = read_study(folder)
    return SimpleNamespace(study=study, analysis=Analysis(study))


# --- F1: the swimmer counts a paper row with reconstructed columns, and an approximate day ----------------


def test_f1_swimmer_bar_and_hsct_marker_of_reconstructed_or_approximate_rows(s41):
    """docs/report.md, Provenance marks: a ``paper`` row naming reconstructed columns "counts as
    reconstructed" as a source row of a derived value; an events day its note calls approximate is not a
    stated day ("≈ 60 (approximate)"). P's OS bar ends on last_followup_day 60, a reconstructed column of
    its subjects row -> end_kind "reconstructed" (was "paper"). P's allo-HSCT (day 45, "day 45 is
    approximate") -> kind "reconstructed", label "allo-HSCT (day ≈45, approximate)". Q's allo-HSCT (day
    30, no note, synthetic) keeps label "allo-HSCT" and kind "synthetic"."""
    from cartlab.report.cohort_data import swimmer_data

    sw = swimmer_data(s41.analysis)
    bars = {r["subject_id"]: r for r in sw.bars.iter_rows(named=True)}
    assert bars["P"]["end_day"] == 60.0 and bars["P"]["end_kind"] == "reconstructed"
    hsct = {r["subject_id"]: r for r in sw.markers.filter(pl.col("marker") == "allo-HSCT").iter_rows(named=True)}
    assert hsct["P"]["day"] == 45.0
    assert hsct["P"]["label"] == "allo-HSCT (day ≈45, approximate)"
    assert hsct["P"]["kind"] == "reconstructed"
    assert hsct["Q"]["label"] == "allo-HSCT" and hsct["Q"]["kind"] == "synthetic"


def test_f1_approximate_day_rule():
    """The rule of docs/report.md: the note says the day is approximate, or ``day`` is a reconstructed
    column; a note about another column is not."""
    from cartlab.report.provenance_marks import approximate_day

    assert approximate_day({"source_note": "the paper says 'two months'; day 60 is approximate"})
    assert approximate_day({"source_note": None, "extra": '{"reconstructed_columns": "day"}'})
    assert not approximate_day({"source_note": "weight is approximate; day stated"})
    assert not approximate_day({"source_note": None})


# --- F2: cohort CSVs name the rows' own source kind ---------------------------------------------------


def test_f2_expansion_cytokine_and_marker_kinds_are_the_rows_source(s41):
    """Q's rows are all ``source = synthetic``; review 39 C2 made the exported kind the rows' own source
    (synthetic is never "reconstructed", which means made consistent with a publication). So every
    expansion point, cytokine cell and swimmer marker of Q is "synthetic"."""
    from cartlab.report.cohort_data import cytokine_matrix, expansion_data, swimmer_data

    pts = expansion_data(s41.analysis, ["Q"]).points
    assert pts.height == 3 and set(pts["kind"].to_list()) == {"synthetic"}
    cells = cytokine_matrix(s41.analysis, ["Q"]).cells
    assert cells.height == 2 and set(cells["kind"].to_list()) == {"synthetic"}
    mk = swimmer_data(s41.analysis, ["Q"]).markers
    assert mk.height >= 1 and set(mk["kind"].to_list()) == {"synthetic"}


def test_f2_renderers_draw_synthetic_points_open(s41):
    """The renderers test "any not-measured kind", so a synthetic marker is still drawn open: the
    plotly swimmer names its trace "allogeneic HSCT (not measured)" for Q's synthetic HSCT."""
    from cartlab.report.cohort_data import swimmer_data
    from cartlab.report.cohort_plotly import swimmer_figure

    fig = swimmer_figure(swimmer_data(s41.analysis, ["Q"]))
    names = [t.name for t in fig.data]
    assert "allogeneic HSCT (not measured)" in names and "allogeneic HSCT" not in names


# --- F3: the study table's row counts agree with the banner -----------------------------------------------


def test_f3_rows_per_subject_count_reconstructed_columns_as_not_measured(s41):
    """P's rows by hand: subjects 1 + doses 2 + observations 4 + events 1 = 8, all ``paper``; the subjects
    row names reconstructed columns, so the banner (source_counts) counts it reconstructed: paper 7, not
    measured 1. Q: 1 + 2 + 6 + 1 = 10 synthetic rows, all not measured."""
    from cartlab.report.study import _provenance_by_subject

    got = _provenance_by_subject(s41.study)
    assert got["P"] == {"paper": 7, "not_measured": 1, "observed": 0}
    assert got["Q"] == {"paper": 0, "not_measured": 10, "observed": 0}


# --- F4: one wording for a not-evaluable ICAHT grade with an upper bound ------------------------------


def test_f4_grade_range_upper_bound_only_is_ne():
    from cartlab.report.cells import grade_range

    assert grade_range(None, 4) == "NE (≤4)"
    assert grade_range(None, 2) == "NE (≤2)"
    assert grade_range(None, None) == "—"


def test_f4_study_table_subject_page_and_dashboard_agree(s41):
    """Q has no ANC at all. EHA/EBMT 2023 (Rejeski et al.): early ICAHT needs the ANC of days 0-30, so
    it is not evaluable; had each of those days been below 100/uL the grade would be 4 (the engine's
    ``_max``, the "at most"). One wording everywhere: "NE (≤4)"; the early row's "Missing inputs" names
    the window: "ANC (days 0–30)". The late window is empty (Q's allo-HSCT on day 30 ends it before day
    31): not evaluable with no bound, "—"."""
    from cartlab.app.cohort import cohort_display
    from cartlab.report.html import render_subject_html
    from cartlab.report.study import render_study_html
    from cartlab.report.subject_blocks import response_notes

    row = s41.summary.filter(pl.col("subject_id") == "Q").row(0, named=True)
    assert row["icaht_early_grade"] is None and row["icaht_early_grade_max"] == 4  # the premise
    study_text = _text(render_study_html(s41.study, {}, summary=s41.summary, notes=response_notes(s41.analysis)))
    q = study_text[study_text.index("Q B-ALL"):]
    assert "NE (≤4) / —" in q[:200]
    page = _text(render_subject_html(s41.study, "Q", analysis=s41.analysis, summary=s41.summary))
    early = page[page.index("ICAHT, early (days 0-30)"):]
    assert early.startswith("ICAHT, early (days 0-30) NE (≤4) ANC (days 0–30)")
    shown = cohort_display(s41.summary)
    q_row = shown.filter(pl.col("subject_id") == "Q").row(0, named=True)
    assert q_row["icaht_early"] == "NE (≤4)"


def test_f4_dashboard_headline_keeps_the_bound():
    from cartlab.app.server import icaht_late_text

    assert icaht_late_text({"icaht_late_grade": None, "icaht_late_grade_max": 4,
                            "icaht_late_reason": "not evaluable: no ANC in days 31-60."}) == "NE (≤4): no ANC in days 31-60"
    # no bound known: unchanged
    assert icaht_late_text({"icaht_late_grade": None, "icaht_late_reason": "not evaluable: the window is empty."}) \
        == "not evaluable: the window is empty"


# --- F5: CRS that cannot be graded says why ------------------------------------------------------------------


def test_f5_crs_not_evaluable_names_the_missing_vitals(s41):
    """ASTCT 2019 CRS is graded on days with a temperature (fever) and a blood pressure (hypotension);
    Q has neither a TEMP nor a SYSBP row, so no day is graded: the reason names both (preamble:
    "an absent input is 'not evaluable' ... naming the missing input"), never "see the episode table"."""
    from cartlab.report.html import render_subject_html

    why = "no day with a temperature or blood pressure row (TEMP, SYSBP not recorded)"
    summary = s41.summary.filter(pl.col("subject_id") == "Q").row(0, named=True)
    assert summary["crs_grade_astct"] is None  # the premise
    page = _text(render_subject_html(s41.study, "Q", analysis=s41.analysis, summary=s41.summary))
    crs = page[page.index("CRS on every scale"):]
    astct = crs[crs.index("ASTCT 2019"):][:300]  # the ASTCT row of the cross-scale table
    assert astct.startswith(f"ASTCT 2019 not evaluable {why}")
    assert f"CRS not evaluable: {why}" in astct and "see the episode table" not in astct
    # the dashboard headline gives the same reason
    from cartlab.app.server import grade_text, not_evaluable_why

    assert not_evaluable_why(s41.analysis, "Q", summary, "crs_grade_astct") == why
    assert grade_text(summary, "crs_grade_astct") == "not evaluable"
    # P has both vitals: graded, no reason
    p = s41.summary.filter(pl.col("subject_id") == "P").row(0, named=True)
    assert not_evaluable_why(s41.analysis, "P", p, "crs_grade_astct") is None


def test_f5_grade_text_upper_bound_only():
    from cartlab.app.server import grade_text

    assert grade_text({"crs_grade_astct": None, "crs_grade_astct_max": 2}, "crs_grade_astct") == \
        "not evaluable (at most 2)"
    assert grade_text({"crs_grade_astct": 1, "crs_grade_astct_max": 2}, "crs_grade_astct") == "1–2"


# --- F6: without events.csv the images say so -----------------------------------------------------------


def _svg(fig) -> str:
    import io

    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text kept as text, as the report writes it
        fig.savefig(buf, format="svg")
    return buf.getvalue()


def test_f6_no_events_file_band_and_arrow_legend(n_study, s41):
    """docs/report.md: figures "carry that label inside the image ... so that a PNG or SVG reused on its
    own still says it". Study N has no events.csv: no death is known, which is not "alive". The swimmer,
    survival and relapse-incidence images carry "events.csv not given: no death, new therapy or HSCT known
    (relapses only from the marrows)" (review 41 diff1 F7: marrow relapses are still drawn)
    and the arrow reads "no death recorded"; the study with events.csv keeps "alive at last follow-up"."""
    from cartlab.report.cohort_mpl import cohort_figures
    from cartlab.report.cohort_plotly import cohort_figures_plotly

    band = "events.csv not given: no death, new therapy or HSCT known (relapses only from the marrows)"
    views = {v.key: v for v in cohort_figures(n_study.analysis)}
    swimmer = _svg(views["swimmer"].figure)
    legend = " ".join(re.findall(r">([^<>]*)</text>", swimmer))  # the legend wraps its labels: one text per line
    assert band in swimmer
    assert "arrow = no death recorded (events.csv not given: vital status unknown)" in " ".join(legend.split())
    assert "alive at last" not in swimmer
    for key in ("survival", "relapse_incidence"):
        if views[key].figure is not None:
            assert band in _svg(views[key].figure)
    pviews = {v.key: v for v in cohort_figures_plotly(n_study.analysis)}
    pj = pviews["swimmer"].figure.to_json()
    assert band in pj and "no death recorded" in pj
    given = _svg({v.key: v for v in cohort_figures(s41.analysis)}["swimmer"].figure)
    assert band not in given and "arrow = alive at last follow-up" in " ".join(
        " ".join(re.findall(r">([^<>]*)</text>", given)).split())


# --- F7: NE with the engine's reason ---------------------------------------------------------------------


def test_f7_response_notes_give_the_first_clause_of_any_ne_reason():
    """best_response.csv's reason "not evaluable: no post-infusion marrow assessment" -> the study
    table reads "NE (no post-infusion marrow assessment)" (the dashboard's words), not "NE (d—)"."""
    from cartlab.report.study import _subject_cells
    from cartlab.report.subject_blocks import response_notes

    best = pl.DataFrame({"subject_id": ["X", "Y", "Z"], "best_response": ["NE", None, "CR"],
                         "rule": ["response.NE", "response.no_criteria", "response.CR"],
                         "reason": ["not evaluable: no post-infusion marrow assessment",
                                    "no response criteria for disease 'LBCL' yet (see docs)", "CR on day 28"]})
    fake = SimpleNamespace(has=lambda name: name == "best_response", table=lambda name: best)
    notes = response_notes(fake)
    assert notes == {"Y": "no response criteria for disease 'LBCL' yet", "X": "no post-infusion marrow assessment"}
    cells = _subject_cells({"best_response": "NE", "best_response_day": None}, notes["X"])
    assert "NE (no post-infusion marrow assessment)" in [c["text"] for c in cells]


# --- F8: the provenance JSON counts rows, not lines -----------------------------------------------------------


def test_f8_provenance_rows_with_a_line_break_in_a_cell():
    """RFC 4180: a quoted field may hold a line break; the 2-row frame is 2 records (3 physical lines
    of data), so "rows" is 2, with or without the frame's height given."""
    from cartlab.app.server import csv_text, provenance

    class View:
        study_id, overrides, protocol, options = "s", {}, None, {}

    frame = pl.DataFrame({"subject_id": ["a", "b"], "note": ["line1\nline2", "x"]})
    text = csv_text(frame)
    assert len(text.splitlines()) - 1 == 3  # the premise: 3 physical lines below the header
    assert provenance(View(), "t", "t.csv", text)["rows"] == 2
    assert provenance(View(), "t", "t.csv", text, n_rows=frame.height)["rows"] == 2


# --- F9: the filter note ---------------------------------------------------------------------------------------


def test_f9_filter_note_says_ranges_are_separate_choices():
    from cartlab.app.ui import page

    text = _text(str(page(["s"])))
    assert '"2" leaves out 1–2 and 2–3' in text
