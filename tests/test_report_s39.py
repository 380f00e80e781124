"""Review 39 (report, cohort views): every fix of /work/notes/review39_report/REPORT.md B1-B10, C2.

Expected values are derived by hand from the study rows built here and the criteria texts quoted in
each test (CTCAE v5.0, the study-format spec, the CHANGELOG of sessions 38-39), never from cartlab.

Study ``T`` (a folder, so the reader records the files not given): two B-ALL subjects, synthetic.
A: CAR-T on day 0, age blank; ALT 80 and 90 U/L on days 5 and 7 with no uln; K 3.2 mmol/L on day 5
with no lln/uln; ANC 0.3 on day 5. B: lymphodepletion only (no CAR-T row in doses.csv: not infused).
No events.csv, no interventions.csv.
"""

from __future__ import annotations

import html as _html
import re
import shutil
from types import SimpleNamespace

import polars as pl
import pytest

SUBJECTS = """subject_id,sex,age_years,weight_kg,height_cm,disease,target,last_followup_day,source
A,F,,60,165,B-ALL,CD19,60,synthetic
B,M,40,70,175,B-ALL,CD19,60,synthetic
"""
DOSES = """subject_id,day,agent,dose,unit,source
A,-5,cyclophosphamide,300,mg/m2,synthetic
A,0,CAR-T,1000000,cells/kg,synthetic
B,-5,cyclophosphamide,300,mg/m2,synthetic
"""
OBS = """subject_id,day,param,value,unit,lln,uln,source
A,-1,ALT,20,U/L,,,synthetic
A,5,ALT,80,U/L,,,synthetic
A,7,ALT,90,U/L,,,synthetic
A,5,K,3.2,mmol/L,,,synthetic
A,5,NEUT,0.3,10^9/L,,,synthetic
B,3,NEUT,1.0,10^9/L,,,synthetic
"""


def _text(page: str) -> str:
    return " ".join(_html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


@pytest.fixture(scope="module")
def t_study(tmp_path_factory):
    from cartlab.analyze import Analysis
    from cartlab.io.study_folder import read_study
    from cartlab.report.html import render_subject_html

    folder = tmp_path_factory.mktemp("s39") / "T"
    folder.mkdir()
    for name, text in (("subjects.csv", SUBJECTS), ("doses.csv", DOSES), ("observations.csv", OBS)):
        (folder / name).write_text(text, encoding="utf-8")
    study = read_study(folder)
    a = Analysis(study)
    summary = a.subject_summary()
    pages = {s: render_subject_html(study, s, analysis=a, summary=summary) for s in ("A", "B")}
    return SimpleNamespace(study=study, analysis=a, summary=summary, pages=pages,
                           text={s: _text(p) for s, p in pages.items()})


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start):text.index(end, text.index(start))]


# --- B1: the worst CTCAE table lists every term with a lab ----------------------------------------


def test_b1_worst_labs_keeps_not_gradable_terms_and_both_direction_ranges():
    """ADLB rows as the CTCAE engine writes them (one per value; a value graded in both directions
    has direction null and the reason "L: ...; H: ..."). ALT with no ULN: CTCAE v5 ALT grade 1 is
    ">ULN - 3.0 x ULN": no ULN, no grade at all (not gradable). K 3.2 with no LLN/ULN: Hypokalemia
    grade 1-2 "<LLN - 3.0", grade 3 "<3.0 - 2.5": 3.2 is not < 3.0, so 0 (LLN <= 3.2) up to 2 (LLN >
    3.2; option hypokalemia_symptomatic); Hyperkalemia grade 1 ">ULN - 5.5": 0 up to 1."""
    from cartlab.grading.lab_worst import worst_labs

    k_reason = ("L: ANRLO missing: at least grade 0 (grade 2 not excluded: criteria on ANRLO not evaluable, ANRLO "
                "missing); H: ANRHI missing: at least grade 0 (grade 1 not excluded: criteria on ANRHI not "
                "evaluable, ANRHI missing)")
    adlb = pl.DataFrame({
        "term": ["Alanine aminotransferase increased", "Alanine aminotransferase increased", None],
        "direction": ["H", "H", None],
        "ATOXDSCL": [None, None, "Hypokalemia"], "ATOXDSCH": ["Alanine aminotransferase increased"] * 2 + ["Hyperkalemia"],
        "ATOXGRL": [None, None, 0], "ATOXGRH": [None, None, 0], "ATOXGR": [None, None, 0],
        "ATOXGRL_MAX": [None, None, 2], "ATOXGRH_MAX": [None, None, 1],
        "day": [5.0, 7.0, 5.0], "AVAL": [80.0, 90.0, 3.2], "post_baseline": [True, True, True],
        "grade_reason": ["not gradable: ANRHI missing", "not gradable: ANRHI missing", k_reason],
        "rule": ["ctcae_v5:alt_increased:na.aval_anrhi"] * 2 + ["L: ctcae_v5:hypokalemia:g0; H: ctcae_v5:hyperkalemia:g0"]})
    every = {r["term"]: r for r in worst_labs(adlb, every_term=True).iter_rows(named=True)}
    assert (every["Hypokalemia"]["grade"], every["Hypokalemia"]["grade_max"], every["Hypokalemia"]["why"]) == (
        0, 2, "ANRLO missing")
    assert (every["Hyperkalemia"]["grade"], every["Hyperkalemia"]["grade_max"]) == (0, 1)
    assert every["Hypokalemia"]["rule"] == "ctcae_v5:hypokalemia:g0"  # the direction's own rule
    alt = every["Alanine aminotransferase increased"]
    assert (alt["grade"], alt["why"], alt["n_not_gradable"]) == (None, "ANRHI missing", 2)
    # the default (explain's headline): open ranges too, the not-gradable term left to its own line
    default = worst_labs(adlb)["term"].to_list()
    assert default == ["Hypokalemia", "Hyperkalemia"]


def test_b1_subject_page_lists_alt_not_evaluable_and_potassium_range(t_study):
    labs = _section(t_study.text["A"], "Worst CTCAE v5 laboratory grades", "Response")
    # ALT 80 and 90 U/L after day 0 (the day -1 value is the baseline) with no ULN: 2 values not gradable
    assert "Alanine aminotransferase increased not evaluable (no ULN: ANRHI missing) 2 value(s)" in labs
    assert "Hypokalemia 0–2 (range: ANRLO missing)" in labs
    assert "Hyperkalemia 0–1 (range: ANRHI missing)" in labs
    # ANC 0.3 x10^9/L: CTCAE v5 neutrophil count decreased grade 4 "<0.5"
    assert "Neutrophil count decreased 4" in labs


# --- B2: response rates with the session-38 columns; the not infused named -------------------------


def test_b2_rate_table_columns_and_a_caption_that_adds_up(t_study):
    from cartlab.report import cohort_data as cd

    r = cd.response_rate_table(t_study.analysis)
    for col in ("n_evaluable", "rate_evaluable", "ci_low_evaluable", "ci_high_evaluable", "n_not_infused",
                "n_not_evaluable"):
        assert col in r.table.columns
    orr = r.table.filter((pl.col("endpoint") == "ORR") & (pl.col("criteria") == "all")).row(0, named=True)
    # 2 subjects - B (no CAR-T dose, option best_response.rate_population=infused) = 1; A has no marrow
    # assessment: NE, counted as a non-responder, not evaluable -> n_evaluable 0
    assert (orr["n"], orr["n_not_infused"], orr["n_not_evaluable"], orr["n_evaluable"]) == (1, 1, 1, 0)
    note = " ".join(r.notes)
    assert "Of 2 subject(s), 1 not infused (no CAR-T dose in doses.csv, rule response.not_infused: B;" in note
    assert "best_response.rate_population=infused) are in no denominator: n = 1" in note


def test_b2_study_cell_of_a_not_infused_subject_says_why(t_study):
    from cartlab.report.study import _subject_cells
    from cartlab.report.subject_blocks import response_notes

    row = t_study.summary.filter(pl.col("subject_id") == "B").row(0, named=True)
    cells = _subject_cells(row, response_notes(t_study.analysis).get("B"))
    texts = [c["text"] for c in cells]
    assert "NE (not infused: no CAR-T dose in doses.csv, rule response.not_infused)" in texts  # old: "NE (d—)"


# --- B9 (and B2): survival, swimmer captions say what events.csv absent and not infused mean -------


def test_b9_survival_and_swimmer_captions_name_events_csv_and_the_not_infused(t_study):
    from cartlab.report.cohort_views import view_specs

    class NoDraw:  # the captions only: no figure drawn
        def __getattr__(self, name):
            return lambda *a, **k: None

    views = {v.key: v for v in view_specs(t_study.analysis, None, NoDraw())}
    for key in ("survival", "swimmer"):
        cap = views[key].caption
        # review 41 diff1 F7: relapses from the marrows are still counted, so "no relapse known" was false
        assert "events.csv not given: no death, HSCT or new therapy is known, so none is counted" in cap
        assert "relapses come only from the marrows" in cap and "no death, relapse" not in cap
        assert "Not infused (no CAR-T dose in doses.csv" in cap and "endpoints.population=infused): B" in cap


# --- B5: a not-infused subject's page says so; engine warnings naming it are on its page ------------


def test_b5_not_infused_subject_page_header_banner_and_warnings(t_study):
    b = t_study.text["B"]
    assert "subject B · no CAR-T infusion recorded: day 0 = study day 0" in b
    assert "Not infused: no CAR-T dose for this subject in doses.csv" in b
    assert "option best_response.rate_population=infused" in b and "option endpoints.population=infused" in b
    warn = _section(b, "Warnings and assumptions of the analysis for this subject", "Subject characteristics")
    assert "best response: 1 subject(s) have no CAR-T dose in doses.csv" in warn
    a = t_study.text["A"]
    assert "Not infused:" not in a and "day 0 = first CAR-T infusion" in a
    assert "have no CAR-T dose in doses.csv" not in _section(a, "Warnings and assumptions", "Subject characteristics")


def test_b5_names_subject_matches_whole_ids_only():
    from cartlab.report.warnings_block import names_subject

    w = {"engine": "x", "message": "left out: S-1, S-10"}
    assert names_subject(None, w, "S-1") and names_subject(None, w, "S-10")
    assert not names_subject(None, {"engine": "x", "message": "left out: S-10"}, "S-1")


# --- B6: a blank characteristic reads "not given" -----------------------------------------------------


def test_b6_blank_age_reads_not_given(t_study):
    chars = _section(t_study.text["A"], "Subject characteristics", "Doses")
    assert "Age (years) not given (ICANS: ICE or CAPD is chosen by the score recorded" in chars
    assert "Age (years) 40" in _section(t_study.text["B"], "Subject characteristics", "Doses")


# --- B8: the events.csv-absent texts say what the engines do -----------------------------------------


def test_b8_absent_events_texts_match_icans_unknown(t_study):
    from cartlab.io.course_checks import ABSENT_FILE_MEANS

    text = ABSENT_FILE_MEANS["events"]
    assert "so none is taken as having happened" not in text and "icans.absent_events=unknown" in text
    # the FHIR reader keeps the words before " (ICANS events" (io/fhir/_partial.py): still a sentence
    assert text.split(" (ICANS events")[0] == ("no death, relapse, HSCT, new therapy, seizure, cerebral edema or "
                                               "infection is recorded")
    page = t_study.text["A"]
    events = page[page.index("events.csv not given ("):page.index("Toxicity grading")]
    assert "as if none happened" not in events and "none assumed" not in events
    assert "ICANS reads seizure, motor weakness and cerebral edema as unknown" in events


# --- B3: the CRS end missing inputs leave open -----------------------------------------------------


def test_b3_study_cell_shows_the_open_end():
    """Session 38: crs_resolution_day_latest = the latest day CRS could have lasted to. A row with
    onset 5, last CRS day 11, latest 60 (days 12, 13 without interventions.csv)."""
    from cartlab.report.study import SUBJECT_TABLE, _subject_cells

    row = {c: None for _, cols, _ in SUBJECT_TABLE for c in cols}
    row.update(crs_grade_astct=1, crs_grade_astct_max=4, crs_onset_day=5.0, crs_resolution_day=11.0,
               crs_resolution_day_latest=60.0, crs_resolution_open="day(s) 12, 13: interventions.csv not recorded")
    assert _subject_cells(row, None)[0]["text"] == (
        "1–4 (d5–11, could last to d60: day(s) 12, 13: interventions.csv not recorded)")


def test_b3_episode_row_open_end():
    from cartlab.report.subject_blocks import _open_ends

    summary = pl.DataFrame({"subject_id": ["A"], "crs_resolution_day_latest": [60.0],
                            "crs_resolution_open": ["day(s) 12: interventions.csv not recorded"]})
    analysis = SimpleNamespace(has=lambda n: n == "crs_summary", table=lambda n: summary)
    ep = pl.DataFrame({"AETERM": ["Cytokine release syndrome"], "AENDY": [11.0]})
    assert _open_ends(analysis, "A", ep)["OPEN_END"][0] == "day 60 (day(s) 12: interventions.csv not recorded)"


# --- B10: non-default reader options on the page ------------------------------------------------------


def test_b10_reader_options_named_with_their_defaults():
    from cartlab.report.html import _env, reader_changes

    # read_sdtm's defaults: partial_dates skip, partial_death_dates impute, partial_event_dates impute
    study = SimpleNamespace(reader_options={"partial_dates": "skip", "partial_death_dates": "drop",
                                            "partial_event_dates": "impute", "study_day_fallback": False})
    changed = reader_changes(study)
    assert changed == [{"option": "--partial-death-dates", "value": "drop", "default": "impute"}]
    line = _env().from_string('{% import "_macros.html.j2" as m %}{{ m.options_line(p) }}').render(
        p={"changed": [], "reader_changed": changed, "protocol": None})
    assert "all defaults" in line and "read with: <code>--partial-death-dates drop</code> (default impute)" in line


# --- B4 and B7: the seed case --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seed_pages(tmp_path_factory):
    """The seed case as shipped, and a copy whose norepinephrine row has no dose (Lee 2014 grade 3 =
    "high-dose vasopressors": with the dose unknown grade 2 up to 3, the 3 by the vasopressor-equivalents
    table, unverified - CHANGELOG session 38)."""
    from cartlab.analyze import Analysis
    from cartlab.datasets import seed_case_path
    from cartlab.io.study_folder import read_study
    from cartlab.report.html import render_subject_html

    out = {}
    copy = tmp_path_factory.mktemp("seed39") / "V"
    shutil.copytree(seed_case_path(), copy)
    iv = copy / "interventions.csv"
    lines = iv.read_text(encoding="utf-8").splitlines()
    lines = [ln.replace(",norepinephrine,0.08,ug/kg/min,", ",norepinephrine,,,") for ln in lines]
    iv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for key, path in (("seed", seed_case_path()), ("nodose", copy)):
        study = read_study(path)
        a = Analysis(study)
        out[key] = render_subject_html(study, "CD7-AML-001", analysis=a, summary=a.subject_summary())
    return out


def test_b4_unverified_upper_grade_is_marked(seed_pages):
    scales = _text(seed_pages["nodose"])
    scales = _section(scales, "CRS on every scale", "Worst CTCAE")
    assert "Lee 2014 2–3† (range; † grade 3 by lee2014.g3.high_dose_vasopressor ⚠ unverified)" in scales


def test_b7_seed_worst_and_scale_rows_marked_and_hsct_day_approximate(seed_pages):
    page = seed_pages["seed"]
    # the late ICAHT grade is derived from reconstructed ANC values (case-facts: only the early ICAHT 3 is
    # in the paper), Lee 2014 from reconstructed vitals and interventions: styled not measured
    for name in ("ICAHT, late (after day 30)", "Lee 2014"):
        assert re.search(rf'<tr class="derived-nm"><td>{re.escape(name)}', page), name
    # events.csv row 1: source paper, note "day 60 is approximate" ("about two months"): ≈, source kept
    assert re.search(r'<tr class="paper"><td>≈ 60 \(approximate\)</td><td>allo_hsct', page)


# --- C2: the swimmer CSV names synthetic rows as synthetic -----------------------------------------


def test_c2_swimmer_end_kind_is_the_rows_own_source(t_study):
    from cartlab.report import cohort_data as cd

    bars = cd.swimmer_data(t_study.analysis).bars
    assert bars["end_kind"].to_list() == ["synthetic"]  # A only (B has no OS row); every row synthetic
