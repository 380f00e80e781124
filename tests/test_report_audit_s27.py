"""Report audit (session 27): findings of /work/notes/audit_report/REPORT.md.

Every expected value is derived by hand from the input design (the 8-subject study below, a copy of
the audit's ``make_study.py``, or a hand-made table), never copied from cartlab's output.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import polars as pl
import pytest

from cartlab.analyze import Analysis, AnalysisOptions
from cartlab.errors import InputError
from cartlab.io import read_study
from cartlab.report import write_study_report

# ------------------------------------------------------------------------------------------------
# the audit's study (make_study.py): every value set explicitly

SUBJECTS = [("S01", "M", 45, 70, 175, "AML", "CD7", 200), ("S02", "F", 60, 60, 165, "AML", "CD7", 180),
            ("S03", "M", 30, 70, 178, "AML", "CD7", 300), ("S04", "F", 25, 55, 160, "T-ALL", "CD7", 45),
            ("S05", "M", 55, 80, 180, "LBCL", "CD19", 150), ("S06", "F", 50, 65, 168, "AML", "CD7", 90),
            ("S07", "M", 20, 70, 176, "B-ALL", "CD19", 365), ("S08", "M", 65, 75, 172, "AML", "CD7", 120)]


def _write_audit_study(out: Path) -> Path:  # a data listing
    obs: list[list] = []

    def o(s, d, p, v, unit="", an="", vt="", lln="", uln="", spec=""):
        obs.append([s, d, p, an, v, vt, unit, lln, uln, spec])

    R = lambda a, b: range(a, b + 1)
    neut = lambda s, f, days: [o(s, d, "NEUT", f(d), "10^9/L", lln=1.8, uln=7.5, spec="PB") for d in days]
    plat = lambda s, f, days: [o(s, d, "PLAT", f(d), "10^9/L", lln=150, uln=400, spec="PB") for d in days]
    neut("S01", lambda d: 2.0 if d <= 2 else (0.3 if d <= 8 else 1.5), R(0, 30))
    neut("S01", {42: 1.4, 56: 1.3, 70: 2.0}.get, [42, 56, 70])
    neut("S02", lambda d: 1.5 if d <= 1 else (0.2 if d <= 11 else 0.8), R(0, 30))
    neut("S02", {45: 0.9, 60: 0.8}.get, [45, 60])
    neut("S03", lambda d: 1.0 if d <= 1 else (0.05 if 5 <= d <= 11 else 0.3), R(0, 30))
    neut("S03", lambda d: 0.4 if d <= 54 else 1.2, R(31, 57))
    neut("S04", lambda d: 0.05, R(0, 45))
    neut("S05", lambda d: 0.4 if 5 <= d <= 7 else 1.2, R(0, 30))
    neut("S05", {60: 2.0, 90: 2.1}.get, [60, 90])
    neut("S07", lambda d: 0.4 if 3 <= d <= 10 else 0.8, R(0, 30))
    neut("S07", {45: 1.2, 60: 1.6, 90: 1.8}.get, [45, 60, 90])
    neut("S08", lambda d: 0.45 if 4 <= d <= 5 else 1.2, R(0, 30))
    neut("S08", {35: 1.0, 42: 1.1}.get, [35, 42])
    plat("S01", lambda d: 150 if d <= 2 else (40 if d <= 10 else 120), R(0, 30))
    plat("S02", lambda d: 100 if d <= 2 else (15 if d <= 8 else 60), R(0, 30))
    plat("S03", lambda d: 100 if d <= 1 else 15, R(0, 30))
    plat("S03", lambda d: 15 if d <= 49 else 30, R(31, 57))
    plat("S04", lambda d: 10, R(0, 45))
    plat("S05", lambda d: 200, R(0, 30))
    plat("S07", lambda d: 15 if 2 <= d <= 4 else 80, R(0, 30))
    plat("S08", lambda d: 110, R(0, 30))
    for s in ["S01", "S02", "S03", "S05", "S07", "S08"]:
        for d in (0, 7, 14, 21, 28):
            o(s, d, "HGB", 105, "g/L", lln=120, uln=160, spec="PB")
    for d in (0, 7, 14, 21, 28):
        o("S04", d, "HGB", 75, "g/L", lln=120, uln=160, spec="PB")
    for s in ["S01", "S02", "S03", "S04", "S05", "S07", "S08"]:
        for d in R(0, 14):
            o(s, d, "ALT", 20, "U/L", uln=40, spec="serum")
            o(s, d, "AST", 25, "U/L", uln=40, spec="serum")
            o(s, d, "BILI", 10, "umol/L", uln=20, spec="serum")
            o(s, d, "CREAT", 70, "umol/L", uln=100, spec="serum")
    for s, v in {"S01": 30, "S02": 25, "S03": 35, "S04": 70, "S06": 30, "S07": 80, "S08": 40}.items():
        o(s, -7, "BMBLAST", v, "%", spec="BM")
    o("S02", -7, "TGTBLAST", 90, "%", an="CD7", spec="BM")

    def marrow(s, d, bm, pb=None, cell=None, mrd=None):
        o(s, d, "BMBLAST", bm, "%", spec="BM")
        if pb is not None:
            o(s, d, "PBBLAST", pb, "%", spec="PB")
        if cell is not None:
            o(s, d, "BMCELL", cell, "%", spec="BM")
        if mrd is not None:
            o(s, d, "MRDFCM", mrd, "fraction", spec="BM")

    marrow("S01", 28, 2, 0, mrd=5e-4)
    marrow("S02", 28, 1, 0)
    marrow("S03", 21, 3, 0, cell=20)
    marrow("S04", 28, 60, 5)
    marrow("S06", 28, 2)
    marrow("S07", 28, 1, 0, mrd=5e-5)
    marrow("S08", 28, 15, 0)
    marrow("S02", 120, 40, 10)
    o("S02", 120, "TGTBLAST", 5, "%", an="CD7", spec="BM")
    cc = {"S01": [0, 5000, 80000, 20000, 6000], "S02": [0, 3000, 40000, 9000, 2000],
          "S03": [0, 10000, 150000, 30000, 8000], "S04": [0, 200, 800, 300, 100],
          "S07": [0, 6000, 60000, 15000, 4000], "S08": [0, 1000, 9000, 3000, 900]}
    for s, vals in cc.items():
        for d, v in zip((0, 7, 14, 21, 28), vals):
            if v == 0:
                obs.append([s, d, "CARCOPY", "", "", "<50", "copies/ug", "", "", "PB"])
            else:
                o(s, d, "CARCOPY", v, "copies/ug", spec="PB")
    fever = {"S01": {1: 38.5, 2: 38.5, 3: 38.5}, "S02": {1: 38.6, 2: 38.6, 3: 38.6, 4: 38.6},
             "S03": {d: 39.0 for d in R(2, 6)}, "S05": {1: 38.3, 2: 38.3, 3: 38.3}, "S07": {1: 38.1},
             "S08": {}, "S04": {}}
    lowbp = {"S02": {3: 85}, "S03": {4: 80, 5: 80}}
    ice = {"S03": {5: 8}}
    for s, *_ in SUBJECTS:
        if s == "S06":
            continue
        for d in sorted({r[1] for r in obs if r[0] == s and r[1] >= 0}):
            o(s, d, "TEMP", fever[s].get(d, 37.5 if s == "S08" else 37.0), "C")
            o(s, d, "SYSBP", lowbp.get(s, {}).get(d, 120), "mmHg")
            o(s, d, "ICE", ice.get(s, {}).get(d, 10))
    for d in R(0, 7):
        o("S06", d, "TEMP", 37.0, "C")
    out.mkdir(parents=True, exist_ok=True)

    def w(name, header, rows):
        with open(out / name, "w", newline="") as f:
            c = csv.writer(f)
            c.writerow(header)
            c.writerows(rows)

    w("subjects.csv", ["subject_id", "sex", "age_years", "weight_kg", "height_cm", "disease", "target",
                       "last_followup_day"], SUBJECTS)
    doses = []
    for s, *_ in SUBJECTS:
        doses += [[s, -5, "fludarabine", 30, "mg/m2"], [s, -5, "cyclophosphamide", 300, "mg/m2"],
                  [s, 0, "CAR-T", 1e6, "cells/kg"]]
    w("doses.csv", ["subject_id", "day", "agent", "dose", "unit"], doses)
    w("observations.csv", ["subject_id", "day", "param", "analyte", "value", "value_text", "unit", "lln", "uln",
                           "specimen"], obs)
    w("interventions.csv", ["subject_id", "start_day", "end_day", "category", "agent", "dose", "dose_unit",
                            "o2_device", "o2_flow_lpm", "indication"],
      [["S03", 4, 6, "vasopressor", "norepinephrine", 0.05, "ug/kg/min", "", "", "CRS"],
       ["S05", 2, 2, "oxygen", "", "", "", "nasal_cannula", 2, "CRS"]])
    w("events.csv", ["subject_id", "day", "event", "detail", "attribution"],
      [["S02", 120, "relapse", "marrow relapse, CD7-negative blasts", ""],
       ["S02", 180, "death", "progressive disease", "other"], ["S03", 60, "allo_hsct", "", ""],
       ["S04", 45, "death", "progressive disease", "other"], ["S08", 50, "new_therapy", "salvage chemotherapy", ""]])
    return out


@pytest.fixture(scope="module")
def audit(tmp_path_factory):
    """The audit study, its analysis (default options) and its full report (with the PDF)."""
    root = tmp_path_factory.mktemp("audit")
    study = read_study(_write_audit_study(root / "study"))
    analysis = Analysis(study)
    index = write_study_report(study, root / "report", analysis=analysis, workers=1)
    return study, analysis, index.parent


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------------
# 1. the PDF keeps every column inside the page


def test_pdf_tables_fit_the_page(audit):
    weasyprint = pytest.importorskip("weasyprint")
    from weasyprint.formatting_structure import boxes

    _, _, out = audit
    assert (out / "study.pdf").read_bytes()[:5] == b"%PDF-"
    # the study page as WeasyPrint lays it out for print (the same CSS as study.pdf)
    doc = weasyprint.HTML(filename=str(out / "index.html")).render()

    def walk(b):
        yield b
        for c in getattr(b, "children", []) or []:
            yield from walk(c)

    outside, texts = [], []
    for i, page in enumerate(doc.pages):
        width = page._page_box.margin_width()
        for b in walk(page._page_box):
            if isinstance(b, boxes.TextBox):
                texts.append(b.text)
                if b.position_x + b.width > width + 0.5:
                    outside.append((i + 1, b.text))
    assert outside == []
    # the columns the audit found cut off are laid out (wrapped, possibly in pieces)
    # a <wbr> (a line-break opportunity after "_" in a header) is laid out as a zero-width space box
    joined = "".join(texts).replace(" ", "").replace("\u200b", "")
    for col in ("Grade5n(%)", "at_risk_day_", "Couldbehighern"):
        assert col in joined


# ------------------------------------------------------------------------------------------------
# 2. a report folder: an earlier report is replaced as a whole; other files are refused


def test_rerun_replaces_the_earlier_report_and_refuses_a_foreign_folder(audit, tmp_path):
    study, _, _ = audit
    two = study.subset(["S01", "S07"])
    out = tmp_path / "r"
    write_study_report(two, out, workers=1, pdf=True)
    assert (out / "study.pdf").exists() and (out / "subject_S07.html").exists()
    one = study.subset(["S01"])
    # session 42 (suite speed): the one-subject report's Analysis is made once for its four writes (it
    # was made by each write); what is tested here is the folder, not the analysis
    a1 = Analysis(one)
    write_study_report(one, out, analysis=a1, workers=1, pdf=False)
    # no stale PDF beside the new pages, no page of a subject the new report does not hold
    assert not (out / "study.pdf").exists()
    assert not (out / "subject_S07.html").exists()
    assert (out / "subject_S01.html").exists()
    # an earlier report of an older cartlab (no marker) is still recognised as a report
    (out / ".cartlab-export.json").unlink()
    write_study_report(one, out, analysis=a1, workers=1, pdf=False)
    # a folder with other files: refused, nothing written; --force keeps the other file
    other = tmp_path / "mine"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="not an earlier cartlab report"):
        write_study_report(one, other, analysis=a1, workers=1, pdf=False)
    assert sorted(os.listdir(other)) == ["mine.txt"]
    write_study_report(one, other, analysis=a1, workers=1, pdf=False, force=True)
    assert (other / "mine.txt").read_text() == "keep me" and (other / "index.html").exists()


# ------------------------------------------------------------------------------------------------
# 3./4. a grade that is a range counts at its lower grade, with "could be higher"


class _Fake:
    """The few parts of an Analysis the cohort views read: named tables and the study's subjects."""

    def __init__(self, tables: dict[str, pl.DataFrame], ids: list[str]):
        self._t = tables
        self.study = type("S", (), {"subjects": pl.DataFrame({"subject_id": ids})})()
        self.protocol = None
        self.skipped = []

    def table_names(self):
        return list(self._t)

    def table(self, name):
        return self._t[name]

    def has(self, name):
        return name in self._t


def _ranges() -> _Fake:
    # A: ASTCT 1 (could be 2), Penn 1-2 (crs_grade_penn empty: a range); B: 3 everywhere;
    # C: 0 everywhere; D: nothing gradable (not evaluable)
    cross = pl.DataFrame({
        "subject_id": ["A", "B", "C", "D"],
        "crs_grade_astct": [1, 3, 0, None], "crs_grade_astct_max": [2, 3, 0, None],
        "crs_grade_penn": [None, 3, 0, None], "crs_grade_penn_min": [1, 3, 0, None],
        "crs_grade_penn_max": [2, 3, 0, None],
    }, schema_overrides={c: pl.Int64 for c in ("crs_grade_astct", "crs_grade_astct_max", "crs_grade_penn",
                                                "crs_grade_penn_min", "crs_grade_penn_max")})
    summary = cross.select("subject_id", "crs_grade_astct", "crs_grade_astct_max")
    return _Fake({"crs_cross_scale": cross, "crs_summary": summary,
                  "crs_cross_scale_pairwise": pl.DataFrame(), "crs_cross_scale_summary": pl.DataFrame()},
                 ["A", "B", "C", "D"])


def test_toxicity_summary_counts_a_range_at_its_lower_grade():
    from cartlab.report.cohort_stats import toxicity_summary

    t = toxicity_summary(_ranges(), include_labs=False)
    penn = t.filter(pl.col("Scale") == "Penn").row(0, named=True)
    # by hand: A 1-2 -> grade 1 (could be higher), B 3, C 0 evaluable; D not evaluable
    assert penn["N evaluable"] == 3 and penn["Not evaluable"] == 1
    assert penn["Any grade n (%)"] == "2 (66.7%)"  # A and B, of 3
    assert penn["Grade 1 n (%)"] == "1 (33.3%)" and penn["Grade 3 n (%)"] == "1 (33.3%)"
    assert penn["Could be higher n"] == 1  # A
    astct = t.filter(pl.col("Scale") == "ASTCT 2019").row(0, named=True)
    assert astct["N evaluable"] == 3 and astct["Could be higher n"] == 1  # A: 1, could be 2


def test_cross_scale_figure_counts_a_range_at_its_lower_grade():
    from cartlab.report.cohort_data import cross_scale_table

    g = cross_scale_table(_ranges()).grades.filter(pl.col("scale") == "Penn")
    by = {r["label"]: r for r in g.iter_rows(named=True)}
    assert by["grade 1"]["n"] == 1 and by["grade 1"]["n_could_be_higher"] == 1  # A
    assert by["not evaluable"]["n"] == 1  # D only; A is not "not evaluable"


def test_audit_study_penn_and_lee_at_least_5_of_8(audit):
    from cartlab.report.cohort_stats import toxicity_summary

    _, analysis, _ = audit
    t = toxicity_summary(analysis, include_labs=False)
    # by hand (CASES.md): fever (>= 38 C) in S01, S02, S03, S05, S07 -> CRS of grade >= 1 on every scale,
    # whatever the upper end of a range; S04, S06, S08 afebrile -> 0. So 5 of 8, none not evaluable.
    for scale in ("Penn", "Lee 2014"):
        r = t.filter(pl.col("Scale") == scale).row(0, named=True)
        assert r["N evaluable"] == 8 and r["Not evaluable"] == 0
        assert r["Any grade n (%)"] == "5 (62.5%)"


# ------------------------------------------------------------------------------------------------
# 5. the options the report was computed with


def test_report_states_its_options_and_writes_the_manifest(audit, tmp_path):
    study, _, out = audit
    html = _text(out / "index.html")
    assert "Engine options: all defaults" in html and "astct_crs_2019" in html
    manifest = json.loads(_text(out / "tables" / "analysis.json"))
    assert manifest["options"]["crs"]["fever_threshold_c"] == 38.0  # ASTCT's own >= 38.0 C

    one = study.subset(["S01"])
    a = Analysis(one, AnalysisOptions.from_settings({"crs": {"fever_threshold_c": 38.6}}))
    o2 = write_study_report(one, tmp_path / "opt", analysis=a, workers=1, pdf=False).parent
    page, subj = _text(o2 / "index.html"), _text(o2 / "subject_S01.html")
    for text in (page, subj):
        assert "crs.fever_threshold_c = 38.6" in text
    assert "fever 38.6 °C" in subj  # the course figure's fever line follows the option
    assert json.loads(_text(o2 / "tables" / "analysis.json"))["options"]["crs"]["fever_threshold_c"] == 38.6
    # S01's Tmax 38.5 < 38.6: no fever, so ASTCT CRS 0 with this option (1 with the default)
    assert a.table("crs_summary").filter(pl.col("subject_id") == "S01")["crs_grade_astct"][0] == 0


# ------------------------------------------------------------------------------------------------
# 6., 12., 14., 16. subject pages


def test_s06_page_says_not_evaluable_and_no_lab_values(audit):
    _, _, out = audit
    page = _text(out / "subject_S06.html")
    # S06 has no ICE/CAPD row and no laboratory value (by design)
    assert "ICANS not evaluable: no ICE/CAPD score recorded" in page
    assert "no laboratory values recorded" in page
    assert "no abnormal CTCAE-graded laboratory value" not in page
    # its rows are neither reconstructed nor from the publication: no key for such rows
    assert "value stated in the publication" not in page


def test_lymphoma_response_section_names_the_reason(audit):
    _, _, out = audit
    page = _text(out / "subject_S05.html")
    response = page.split('id="response"')[1].split("<h2")[0]
    assert "no response criteria for disease &#39;LBCL&#39; yet" in response


def test_one_day_crs_prints_one_day(audit):
    _, _, out = audit
    html = _text(out / "index.html")
    # S07: fever on day 1 only -> CRS 1 on day 1; S01: days 1-3
    assert "1 (d1)" in html and "d1–1" not in html
    assert "1 (d1–3)" in html


def test_course_axis_covers_the_course(audit):
    from cartlab.report.figures import course_figure

    study, _, _ = audit
    info = course_figure(study, "S06").cartlab_info
    # S06: temperatures days 0-7 only, a marrow on day 28 (its last row), last follow-up day 90:
    # the axis reaches the marrow (it stopped at day 7.7), not the row-less follow-up
    assert 28 <= info["day_range"][1] < 90


# ------------------------------------------------------------------------------------------------
# 8. denominators of figure and table


def test_grade_table_percent_is_named_by_its_denominator(audit):
    _, _, out = audit
    html = _text(out / "index.html")
    grades = html.split('id="view-crs_icans_grades"')[1].split("</section>")[0]
    # ICANS: grade 0 in 6 subjects of 7 evaluable (S06 not evaluable) = 85.7%
    assert "% of evaluable" in grades and "85.7" in grades
    assert "% of all n subjects" in _text(out / "figures" / "cohort_crs_icans_grades.svg")


# ------------------------------------------------------------------------------------------------
# 9., 15. the seed case


def test_seed_swimmer_response_stated_in_the_paper_is_filled():
    from cartlab.datasets import seed_case
    from cartlab.report.cohort_data import swimmer_data

    s = seed_case()
    # case-facts.md: "morphologic leukemia-free state (MLFS) on day 17"; its marrow row is source=paper
    bm = s.observations.filter((pl.col("param") == "BMBLAST") & (pl.col("day") == 17))
    assert bm["source"].to_list() == ["paper"]
    m = swimmer_data(Analysis(s)).markers.filter(pl.col("marker") == "response").row(0, named=True)
    assert (m["day"], m["label"], m["kind"]) == (17.0, "MLFS", "paper")


def test_seed_banner_and_captions_count_the_same_rows():
    from cartlab.datasets import seed_case
    from cartlab.report.cohort_base import provenance_note
    from cartlab.report.html import provenance_counts
    from seed_helpers import hand_count_not_measured

    s = seed_case()
    # by hand, from the CSV files: rows of the five tables, and those not measured. Session 40: a paper
    # row naming reconstructed_columns counts as reconstructed here too (it did on the dashboard only)
    nm, total = hand_count_not_measured()
    c = provenance_counts(s)
    assert (c["not_measured"], c["total"]) == (nm, total)
    assert c["paper_with_reconstructed_columns"] == 1  # subjects.csv row 1
    note = provenance_note(Analysis(s), None)
    assert f"{nm:,} of {total:,} rows" in note and "counting 1 publication row with reconstructed columns" in note


# ------------------------------------------------------------------------------------------------
# 10. a figure of synthetic data says so inside the image


def test_synthetic_figures_carry_the_label(tmp_path):
    from cartlab.datasets import synthetic_cohort

    study = read_study(synthetic_cohort(2, seed=7, out_dir=tmp_path / "syn"))
    out = write_study_report(study, tmp_path / "r", workers=1, pdf=False).parent
    figs = sorted((out / "figures").glob("*.svg"))
    assert figs
    for svg in figs:  # SVG text stays text (svg.fonttype none)
        assert "synthetic data" in _text(svg), svg.name


# ------------------------------------------------------------------------------------------------
# 11. bad output folders: one message naming the user's path


def test_bad_out_folders_name_the_users_path(audit, tmp_path):
    from typer.testing import CliRunner

    from cartlab.cli import app

    study_dir = tmp_path / "study"
    _write_audit_study(study_dir)
    afile = tmp_path / "afile"
    afile.write_text("x")
    r = CliRunner().invoke(app, ["report", str(study_dir), "--out", str(afile / "sub"), "--no-pdf"])
    assert r.exit_code == 2 and "afile is a file" in r.output and "File exists" not in r.output
    if os.path.isdir("/proc"):  # a folder nothing can be created in
        from cartlab.datasets import synthetic_cohort

        small = synthetic_cohort(1, seed=3, out_dir=tmp_path / "one")
        r = CliRunner().invoke(app, ["report", str(small), "--out", "/proc/cartlab_x", "--no-pdf", "--workers", "1"])
        assert r.exit_code != 0
        assert "cannot write the report folder to /proc/cartlab_x" in r.output
        assert "/proc/.cartlab_x" not in r.output  # never the internal temporary folder


# ------------------------------------------------------------------------------------------------
# 13. days from date-times: 2 decimals at most


def test_days_print_with_two_decimals():
    from cartlab.report.cells import _round_days, day_span

    # 2024-03-01T14:00 to 2024-03-29T10:00 = 28 days - 4 h = 27 + 20/24 = 27.8333...; 28 + 10/24 = 28.41666...
    assert _round_days("day 28.416667: CR") == "day 28.42: CR"
    assert _round_days("CR (d28.4167)") == "CR (d28.42)"
    assert day_span(27 + 20 / 24, 28 + 10 / 24) == "d27.83–28.42"
    assert day_span(1.0, 1.0) == "d1" and day_span(1.0, None) == "d1–?"
