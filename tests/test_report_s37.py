"""Review 37 fixes of the report: per-field provenance of a paper row (B1), derived rows marked when
their source rows were not measured (B2), CAR exposure units (B4, B5), the missing input named (B9),
the figure stamp above the title (C1), no break inside a word in the PDF (C4), the episodes' source
rows (C5) and docs/report.md (C6). Expected values are derived by hand from the standard's text or the
seed's CSV files read with the csv module (never from cartlab's output); each comment says how."""

from __future__ import annotations

import csv
import hashlib
import re
import warnings
from pathlib import Path

import polars as pl
import pytest

from cartlab.analyze import Analysis
from cartlab.datasets import seed_case, seed_case_path
from cartlab.model import Study, conform

SEED = "CD7-AML-001"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "report.md"


@pytest.fixture(scope="module")
def seed():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = seed_case()
        a = Analysis(study)
        a.tables()
    return study, a


def _csv_sources(name: str) -> dict[str, str]:
    """``"<name>.csv:<data row>"`` -> source, read with the csv module (row 1 = first data row)."""
    with open(seed_case_path() / f"{name}.csv", newline="", encoding="utf-8") as f:
        return {f"{name}.csv:{i}": r["source"] for i, r in enumerate(csv.DictReader(f), start=1)}


# -- B1: per-field provenance of a paper row -------------------------------------------------------------


def test_seed_subject_row_names_its_reconstructed_columns():
    # case-facts.md: the paper states sex, age, disease and target; weight, height and the follow-up
    # (HSCT ~2 months) are not stated -> reconstructed
    with open(seed_case_path() / "subjects.csv", newline="", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    assert row["source"] == "paper"
    assert row["reconstructed_columns"] == "weight_kg;height_cm;last_followup_day"
    assert (row["sex"], row["age_years"], row["disease"], row["target"]) == ("F", "17.0", "AML", "CD7")


def test_subject_page_marks_reconstructed_characteristics(seed):
    from cartlab.report.html import _subject_facts

    study, _ = seed
    facts, _prov = _subject_facts(study.subject(SEED), SEED)
    cls = {k: p for k, _v, p in facts}
    for label in ("Weight (kg)", "Height (cm)", "Last follow-up (day)"):
        assert cls[label] == "reconstructed", label
    for label in ("Sex", "Age (years)", "Disease", "CAR target"):
        assert cls[label] == "paper", label


def test_reconstructed_columns_parsing_and_row_kinds():
    from cartlab.report.provenance_marks import reconstructed_columns, source_kinds

    assert reconstructed_columns({"extra": '{"Reconstructed_Columns": "Weight_kg; height_cm,day"}'}) == {
        "weight_kg", "height_cm", "day"}
    assert reconstructed_columns({"extra": None}) == set()
    df = pl.DataFrame({"src_file": ["o.csv"] * 3, "src_row": [1, 2, 3], "source": ["paper", "paper", None],
                       "extra": ['{"reconstructed_columns": "day"}', None, None]})
    # a paper row with a reconstructed column is not wholly stated: it counts as reconstructed
    assert source_kinds([df]) == {"o.csv:1": "reconstructed", "o.csv:2": "paper", "o.csv:3": "observed"}


# -- B2: derived rows marked ----------------------------------------------------------------------------


def test_evidence_mark_counts_not_measured_rows():
    from cartlab.report.provenance_marks import DERIVED_CLASS, evidence_mark

    kinds = {"a:1": "paper", "a:2": "reconstructed", "a:3": "observed", "a:4": "simulated"}
    assert evidence_mark(["a:1", "a:2", "a:3"], kinds) == (DERIVED_CLASS, "rec. 1 of 3 rows")
    assert evidence_mark(["a:2", "a:4"], kinds) == (DERIVED_CLASS, "rec./sim. 2 of 2 rows")
    assert evidence_mark(["a:1"], kinds) == ("paper", None)
    assert evidence_mark(["a:3"], kinds) == (None, None)


def test_seed_response_and_toxicity_rows_are_marked(seed):
    from cartlab.report.provenance_marks import DERIVED_CLASS, source_kinds
    from cartlab.report.subject_blocks import _response_block, _toxicity_block

    study, a = seed
    kinds = source_kinds(study.subject(SEED).tables().values())
    src = {**_csv_sources("observations"), **_csv_sources("interventions"), **_csv_sources("events")}
    # the day-17 MLFS row: its evidence refs -> their source in the CSV files; not "paper" = not measured
    mr = a.table("marrow_response").filter(pl.col("day") == 17).row(0, named=True)
    refs = list(mr["evidence"])
    n_nm = sum(src[r] != "paper" for r in refs)
    assert 0 < n_nm < len(refs)  # paper marrow blasts/MRD with reconstructed counts (review37 B2)
    marrow = _response_block(a, SEED, kinds)["marrow"]
    row = marrow["rows"][0]
    assert row["prov"] == DERIVED_CLASS
    assert row["cells"][marrow["headers"].index("Not measured")] == f"rec. {n_nm} of {len(refs)} rows"
    tox = _toxicity_block(a, SEED, kinds)
    ctcae = tox["ctcae"]
    alt = next(r for r in ctcae["rows"] if r["cells"][0] == "Alanine aminotransferase increased")
    assert alt["prov"] == DERIVED_CLASS  # 261 U/L is reconstructed (the paper: "grade 3 liver dysfunction")
    assert all(r["prov"] == DERIVED_CLASS for r in tox["episodes"]["rows"])
    # without kinds (an analysis alone) the tables are as before: no mark column
    assert "Not measured" not in _response_block(a, SEED)["marrow"]["headers"]


# -- C5: source rows listed ----------------------------------------------------------------------------


def test_source_rows_text_lists_the_first_rows():
    from cartlab.report.provenance_marks import refs_text

    refs = ["observations.csv:147", "observations.csv:166", "interventions.csv:2", "interventions.csv:3",
            "observations.csv:380", "observations.csv:9", "observations.csv:10"]
    # 7 refs, the first 5 shown, the file named once per run of the same file
    assert refs_text(refs) == ("7: observations.csv:147, 166, interventions.csv:2, 3, observations.csv:380, "
                               "… 2 more")
    assert refs_text("a.csv:1; a.csv:2") == "2: a.csv:1, 2"
    assert refs_text(None) == "—"


def test_seed_episode_table_shows_rows_not_a_count(seed):
    from cartlab.report.subject_blocks import _toxicity_block

    _study, a = seed
    ep = _toxicity_block(a, SEED)["episodes"]
    col = ep["headers"].index("Source rows")
    assert all(re.match(r"\d+: \w+\.csv:\d+", r["cells"][col]) for r in ep["rows"])


# -- B4: units in the study table -----------------------------------------------------------------------


def _summary(rows):
    return pl.DataFrame(rows, orient="row", schema={"subject_id": pl.String, "car_cmax": pl.Float64, "car_tmax": pl.Float64,
                                      "car_auc_0_28": pl.Float64, "car_param": pl.String, "car_unit": pl.String})


def test_study_table_header_unit_when_one_unit():
    from cartlab.report.study import SUBJECT_TABLE, _header, car_units

    s = _summary([("A", 1e5, 10.0, 9e5, "CARCOPY", "copies/ug gDNA"), ("B", None, None, None, None, None)])
    assert car_units(s) == ["copies/ug gDNA"]
    heads = [_header(h, cols, None, "copies/ug gDNA") for h, cols, _ in SUBJECT_TABLE]
    # an AUC is concentration x time: its unit is the concentration unit times day
    assert "CAR Cmax, copies/ug gDNA (day)" in heads and "CAR AUC₀₋₂₈, copies/ug gDNA × day" in heads


def test_study_table_unit_per_cell_when_mixed():
    from cartlab.report.study import SUBJECT_TABLE, _subject_cells, car_units

    s = _summary([("A", 99400.0, 10.0, 906833.0, "CARCELL", "cells/uL"),
                  ("B", 164000.0, 10.0, 1911117.0, "CARCOPY", "copies/ug gDNA"),
                  ("C", 5.0, 3.0, 9.0, "CARCELL", "cells/uL")])
    assert car_units(s) == ["cells/uL", "copies/ug gDNA"]
    k_cmax = next(i for i, (_h, cols, _) in enumerate(SUBJECT_TABLE) if cols == ("car_cmax", "car_tmax"))
    k_auc = next(i for i, (_h, cols, _) in enumerate(SUBJECT_TABLE) if cols == ("car_auc_0_28",))
    cells = {r["subject_id"]: _subject_cells(r, None, unit_in_cell=True) for r in s.iter_rows(named=True)}
    assert cells["A"][k_cmax]["text"] == "99,400 cells/uL (d10)"
    assert cells["A"][k_auc]["text"] == "906,833 cells/uL × day"
    # sorted per unit first: every cells/uL value before any copies value; by value within a unit
    keys = sorted(cells, key=lambda sid: cells[sid][k_cmax]["sort"])
    assert keys == ["C", "A", "B"]


# -- B5: the exposure table's unit per exposure ---------------------------------------------------------


def test_exposure_response_auc_unit_is_conc_times_day():
    from cartlab.kinetics.exposure import derive_exposure_response

    s = pl.DataFrame({"subject_id": [f"S{i}" for i in range(4)], "car_param": ["CARCOPY"] * 4,
                      "car_unit": ["copies/ug gDNA"] * 4, "car_cmax": [1e5, 2e5, 1e3, 2e3],
                      "car_auc_0_28": [1e6, 2e6, 1e4, 2e4], "best_response": ["CR", "CR", "NR", "NR"],
                      "crs_grade_astct": [1, 1, 1, 1]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = derive_exposure_response(s, outcomes=("responder",))
    units = dict(zip(out["exposure"].to_list(), out["unit"].to_list()))
    assert units == {"car_cmax": "copies/ug gDNA", "car_auc_0_28": "copies/ug gDNA × day"}


# -- B9: the missing input named ------------------------------------------------------------------------


def _tiny(obs) -> Study:
    rows = [{"src_file": "observations.csv", "src_row": i + 1, "source": "synthetic", **r} for i, r in enumerate(obs)]
    subjects = [{"subject_id": s, "disease": "AML"} for s in ("P1", "P2", "P3")]
    doses = [{"subject_id": s["subject_id"], "day": 0.0, "agent": "CAR-T", "dose": 1e6, "unit": "cells/kg"}
             for s in subjects]
    return Study(study_id="s37", subjects=conform(pl.DataFrame(subjects), "subjects"),
                 doses=conform(pl.DataFrame(doses), "doses"),
                 observations=conform(pl.DataFrame(rows, infer_schema_length=None), "observations"))


def test_car_missing_reason_names_the_sample():
    from cartlab.report.subject_blocks import car_missing_reasons

    obs = [{"subject_id": "P2", "day": -3.0, "param": "CARCOPY", "value": 10.0, "unit": "copies/ug gDNA"},
           {"subject_id": "P3", "day": 7.0, "param": "CARCOPY", "value": 1000.0, "unit": "copies/ug gDNA"},
           {"subject_id": "P1", "day": 7.0, "param": "NEUT", "value": 1.0, "unit": "10^9/L"}]
    why = car_missing_reasons(_tiny(obs))
    # P1: no CAR sample at all; P2: only before the infusion; P3: a sample after day 0 (no reason here)
    assert why == {"P1": "no CARCOPY/CARCELL sample", "P2": "no CARCOPY/CARCELL sample after day 0"}


def test_study_and_summary_cells_name_the_missing_car_sample():
    from cartlab.report.html import _summary_block
    from cartlab.report.study import SUBJECT_TABLE, _subject_cells

    row = {"subject_id": "P1", "car_cmax": None, "car_tmax": None, "car_auc_0_28": None}
    cells = _subject_cells(row, None, car_why="no CARCOPY/CARCELL sample")
    k = next(i for i, (_h, cols, _) in enumerate(SUBJECT_TABLE) if cols == ("car_cmax", "car_tmax"))
    assert cells[k]["text"] == "— (no CARCOPY/CARCELL sample)"
    assert cells[k + 1]["title"] == "not evaluable: no CARCOPY/CARCELL sample"
    summ = pl.DataFrame({"subject_id": ["P1"], "car_cmax": [None], "car_auc_0_28": [None]},
                        schema={"subject_id": pl.String, "car_cmax": pl.Float64, "car_auc_0_28": pl.Float64})
    items = dict(_summary_block(summ, "P1", car_why="no CARCOPY/CARCELL sample after day 0")["items"])
    assert items["CAR Cmax, car_cmax"] == "— (no CARCOPY/CARCELL sample after day 0)"


def test_late_window_missing_input_names_days():
    from cartlab.report.subject_blocks import _window_input

    # EHA/EBMT 2023: the late window runs from day 31; here it ends on day 33 (new therapy)
    assert _window_input("ANC", {"late_window_start": 31.0, "late_window_end": 33.0}) == "ANC (days 31–33)"
    assert _window_input("platelet count", {}) == "platelet count"


# -- C1: the stamp covers no title ----------------------------------------------------------------------


def test_stamp_does_not_overlap_the_title():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from cartlab.report.files import stamp_figure

    fig = Figure(figsize=(6, 3))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    fig.subplots_adjust(top=0.8)
    # a title across the whole width, at the top as the course figure's (y = 1 - 0.12 in / height)
    title = fig.suptitle("S-001 — course after CAR-T infusion (17 y, F, AML, CD7 CAR-T) " + "x" * 20,
                         x=0.01, y=1 - 0.12 / 3, ha="left", va="top", fontsize=11.5)
    before = ax.get_position().height * 3  # the axes' height in inches
    stamp_figure(fig, "contains reconstructed data (not measured): 1,310 of 1,338 rows")
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    stamp = fig.texts[-1].get_bbox_patch().get_window_extent(r)  # the stamp's box, as drawn
    assert not stamp.overlaps(title.get_window_extent(r))
    assert ax.get_position().height * fig.get_figheight() == pytest.approx(before)  # nothing squeezed


# -- C4: no break inside a word in the PDF --------------------------------------------------------------


def test_print_css_and_table_cells_break_at_underscores_only():
    from cartlab.report.html import _env

    tmpl = _env().from_string('{% import "_macros.html.j2" as m with context %}{{ m.table(t) }}')
    t = {"headers": ["or_ci_high"], "rows": [{"cells": ["CARCOPY", "car_auc_0_28"], "prov": ""}], "num": [False, False]}
    html = tmpl.render(t=t)
    assert "or_<wbr>ci_<wbr>high" in html and ">CARCOPY<" in html and ">car_auc_0_28<" in html  # web page: cells as is
    printed = tmpl.render(t=t, for_print=True)  # the PDF's page: cells wrap after "_" too
    assert ">car_<wbr>auc_<wbr>0_<wbr>28<" in printed and ">CARCOPY<" in printed
    base = (Path(__file__).resolve().parents[1] / "src/cartlab/report/templates/base.html.j2").read_text()
    print_css = base[base.index("@media print {\n"):]
    assert "overflow-wrap: anywhere" not in print_css and "word-break: break-word" not in print_css


# -- C6: docs/report.md in step ---------------------------------------------------------------------------


def test_docs_survival_lfs_safe_names_and_provenance_column():
    text = DOCS.read_text(encoding="utf-8")
    assert re.search(r"\| Survival \|[^\n]*OS, EFS, RFS, LFS", text)
    # the safe name of "SYN<i>&3": "<" and ">&" replaced by "_", and the first 8 hex digits of the id's SHA-1
    expected = f"subject_SYN_i_3-{hashlib.sha1(b'SYN<i>&3').hexdigest()[:8]}.html"
    assert expected in text
    from cartlab.report.html import subject_filename

    assert subject_filename("SYN<i>&3") == expected
    assert "reconstructed_columns" in text and "grade per day with its rule and evidence" not in text
