"""Fixes of the dashboard audit "dashdiff" (session 31): the fever line at the analysis's threshold, range
days of the grade strip, NCA warnings with the interval they belong to, ICAHT reasons (early, late) on
the patient page and in the subject table, the "synthetic values" banner, the report's rounding, an
unambiguous multi-value filter in file names and a distinct marker for BLQ samples.

Every expected value is derived by hand in the comment next to it, from the hand-built study below
(``s31_study``) or from the rule being tested -- never copied from cartlab's output. No browser.
"""

from __future__ import annotations

import polars as pl
import pytest

from cartlab.app import cohort as C
from cartlab.app import figures as F
from cartlab.app.data import Catalog

FEVER = 38.5


def s31_study():
    """Two AML subjects, CD7 CAR-T 1e6 cells/kg on day 0, 50 kg, analysed with crs.fever_threshold_c 38.5:

    * S, every observation ``source = synthetic``:
      TEMP 38.2 °C on day 1 -> below 38.5: no fever -> CRS grade 0 (at the default 38.0 it would be fever);
      day 2 only SYSBP 85 mmHg, no temperature -> graded 0 as measured, but with a fever it would be
      hypotension without vasopressor = grade 2: the range 0–2, missing TEMP;
      CARCOPY 1000 on day 7 and 30 on day 14 with LLOQ 50 -> day 14 is below the LLOQ, drawn at 50;
      no ANC at all -> early ICAHT (days 0-30) and late ICAHT (after day 30) not evaluable.
    * M, measured (no source): TEMP 37.0 on day 1.
    """
    from cartlab.model import Study, conform

    subjects = conform(pl.DataFrame({"subject_id": ["S", "M"], "disease": ["AML", "AML"], "target": ["CD7", "CD7"],
                                     "weight_kg": [50.0, 50.0]}), "subjects")
    doses = conform(pl.DataFrame({"subject_id": ["S", "M"], "day": [0.0, 0.0], "agent": ["CAR-T"] * 2,
                                  "dose": [1e6] * 2, "unit": ["cells/kg"] * 2}), "doses")
    rows = [("S", 1.0, "TEMP", 38.2, "C", None, "synthetic"), ("S", 2.0, "SYSBP", 85.0, "mmHg", None, "synthetic"),
            ("S", 7.0, "CARCOPY", 1000.0, "copies/ug gDNA", 50.0, "synthetic"),
            ("S", 14.0, "CARCOPY", 30.0, "copies/ug gDNA", 50.0, "synthetic"),
            ("M", 1.0, "TEMP", 37.0, "C", None, None)]
    obs = conform(pl.DataFrame(rows, schema=["subject_id", "day", "param", "value", "unit", "lloq", "source"],
                               orient="row"), "observations")
    return Study(study_id="s31", subjects=subjects, doses=doses, observations=obs)


@pytest.fixture(scope="module")
def view():
    from cartlab.analyze import AnalysisOptions

    opts = AnalysisOptions.from_settings({"crs": {"fever_threshold_c": FEVER}})
    return Catalog.from_study(s31_study(), "folder s31", options=opts).view("s31")


# -- 1. fever line ------------------------------------------------------------------------------------------


def test_fever_line_at_the_analysis_threshold(view):
    spec = F.course_spec(view.patient("S"))
    fever = [s for s in spec["layout"]["shapes"] if s["line"].get("dash") == "dot"]
    # the analysis grades fever at 38.5 (the option given), so the line is at 38.5, not 38.0
    assert [(s["y0"], s["y1"]) for s in fever] == [(FEVER, FEVER)]
    labels = [a["text"] for a in spec["layout"]["annotations"] if "fever" in a["text"]]
    assert labels == ["fever 38.5 °C (CRS threshold of this analysis)"]
    F.course_figure(view.patient("S"))  # and the figure is valid plotly


# -- 2. grade strip: a range day is not grade 0 -----------------------------------------------------------------


def test_grade_strip_shows_a_range_day(view):
    p = view.patient("S")
    days, rows, _z, text = F.grade_strip(p.crs_daily, p.icans_daily)
    i = days.index(2)
    # day 2: grade 0 as measured, 2 had the missing TEMP been a fever -> "0–2 (missing: TEMP)"
    assert rows[0] == "CRS" and "day 2: grade 0–2 (missing: TEMP)" in text[0][i]
    # day 1: 38.2 < 38.5, nothing missing -> plainly grade 0
    assert "day 1: grade 0 (" in text[0][days.index(1)]
    spec = F.course_spec(p)
    bars = [t for t in spec["data"] if t["type"] == "bar"]
    # one hatched bar: CRS row (0), day 2, in the colour of grade 2 (its upper bound)
    assert len(bars) == 1 and bars[0]["x"] == [2.0] and bars[0]["base"] == [-0.4]
    assert bars[0]["marker"]["pattern"]["fgcolor"] == F.GRADE_COLORS[2]
    assert bars[0]["name"] == F.RANGE_LEGEND and "0–2 (missing: TEMP)" in bars[0]["hovertext"][0]


# -- 4. NCA warnings say what they belong to --------------------------------------------------------------------


def test_kinetics_warnings_name_their_interval():
    ck = pl.DataFrame({"start": [0.0, 0.0], "end": [float("inf"), 21.0], "param": ["CARCOPY"] * 2,
                       "warnings": [["aucint_no_lambda_z: aucint is null"], ["w2: text"]]})
    # row 1 is the whole profile (0 to infinity), row 2 the interval 0-21
    assert C.kinetics_warnings(ck) == ["whole profile (day 0–∞): aucint_no_lambda_z: aucint is null",
                                       "interval day 0–21: w2: text"]


def test_patient_kinetics_warnings_never_bare(view):
    p = view.patient("S")
    warns = C.kinetics_warnings(p.car_kinetics)
    # one positive sample (1000 on day 7), then BLQ: no terminal slope, and car_kinetics' row is the
    # whole profile -> every warning says so (none reads as one of the AUC window's row)
    assert warns and all(w.startswith("whole profile (day 0–∞): ") for w in warns)


# -- 5, 6. ICAHT reasons --------------------------------------------------------------------------------------


def test_headline_gives_the_icaht_reasons(view):
    from cartlab.app.server import patient_headline_parts

    _banner, headline, _notes = patient_headline_parts(view, view.patient("S"))
    # no ANC at all: days 0-30 have none (early), and the late window has 0 measurements (late); each grade
    # could be up to 4 (every day below 100/uL), so "NE (≤4)" as the study table and subject page (review 41 F4)
    assert "ICAHT early (days 0-30) NE (≤4): no ANC in days 0-30" in headline
    assert "ICAHT late (after day 30) NE (≤4): 0 ANC measurement(s) in days 31-" in headline


def test_icaht_late_text():
    from cartlab.app.server import icaht_late_text

    assert icaht_late_text({"icaht_late_grade": 3}) == "3"
    assert icaht_late_text({"icaht_late_grade": None, "icaht_late_reason": "not evaluable: the window is empty."}) \
        == "not evaluable: the window is empty"
    assert icaht_late_text({}) == "not evaluable"


def test_subject_table_late_icaht_not_blank(view):
    shown = C.cohort_display(view.cohort)
    row = shown.filter(pl.col("subject_id") == "S").row(0, named=True)
    # S has no ANC: no grade, and each shows its upper bound "NE (≤4)" (session 34 late: days 31-100 without an
    # ANC could each have been below every level; session 38 early likewise: 31 days without an ANC, all
    # <= 100/uL, would be "never above 500 in days 0-30" = grade 4), each with its reason beside it;
    # "NE" since review 41 F4: the study table, the subject page and the dashboard give one wording
    assert row["icaht_early"] == "NE (≤4)" and row["icaht_late"] == "NE (≤4)"
    assert row["icaht_early_reason"].startswith("not evaluable: no ANC in days 0-30")
    assert row["icaht_late_reason"].startswith("not evaluable: 0 ANC measurement(s)")
    cols = shown.columns
    assert cols.index("icaht_late_reason") == cols.index("icaht_late") + 2  # beside the grades
    cohort = pl.DataFrame({"subject_id": ["a", "b"], "icaht_early_grade": [1, 2], "icaht_early_grade_max": [1, 2],
                           "icaht_late_grade": [2, None], "icaht_early_reason": [None, None],
                           "icaht_late_reason": [None, "not evaluable: x"]})
    # a: late grade 2; b: none -> "—" and its reason
    assert C.cohort_display(cohort)["icaht_late"].to_list() == ["2", "—"]


# -- 7. synthetic banner ---------------------------------------------------------------------------------------


def test_patient_banner_for_synthetic_values(view):
    from cartlab.app.server import patient_headline_parts

    banner, _h, _n = patient_headline_parts(view, view.patient("S"))
    # S: 4 observation rows synthetic + its subjects row and dose row (no source) = 4 of 6 rows
    assert banner.startswith("This case contains synthetic values. 4 of 6 data rows are synthetic")
    assert patient_headline_parts(view, view.patient("M"))[0] is None  # M: every row measured


# -- 8. cosmetic ---------------------------------------------------------------------------------------------


def test_display_rounds_as_the_report():
    from cartlab.report.figures import fmt_value

    frame = pl.DataFrame({"car_tmax": [7.3556], "car_auc_0_28": [6057119.29], "crp": [12.34], "lamz": [0.10291]})
    out = C.display_frame(frame).row(0, named=True)
    # Tmax is a day: 2 decimals (the report's "d7.36"); AUC whole (6,057,119); 12.34 -> 12.3; 0.10291 -> 0.103
    assert out == {"car_tmax": 7.36, "car_auc_0_28": 6057119.0, "crp": 12.3, "lamz": 0.103}
    for c in ("car_auc_0_28", "crp", "lamz"):  # the same number as the report's text
        assert out[c] == float(fmt_value(frame[c][0]).replace(",", ""))


def test_multi_value_filter_tag_unambiguous():
    # "0–1" or "0": the values joined by "_or_", never "0-1.0" (which reads as 0 to 1.0)
    assert C.filter_tag({"f_crs": ("0–1", "0")}) == "_filtered_crs-0-1_or_0"
    assert C.filter_tag({"f_dose": ("1×10⁶/kg", "2×10⁶/kg")}) == "_filtered_dose-1e6_or_2e6"


def test_blq_samples_have_their_own_marker(view):
    from cartlab.report.course_parts import BLQ_CAPTION

    p = view.patient("S")
    traces = [t for t in F.course_spec(p)["data"] if t.get("name", "").startswith("CAR copies —")]
    by_name = {t["name"]: t for t in traces}
    # day 14: 30 < LLOQ 50 -> drawn at 50 with an open down-triangle (synthetic = not measured)
    blq = by_name[f"CAR copies — {BLQ_CAPTION}, not measured"]
    assert blq["x"] == [14.0] and blq["y"] == [50.0] and blq["marker"]["symbol"] == "triangle-down-open"
    # day 7: 1000 quantified -> the open circle of a not-measured value
    assert by_name["CAR copies — not measured"]["x"] == [7.0]
    assert by_name["CAR copies — not measured"]["marker"]["symbol"] == "circle-open"
    kin = F.kinetics_figure(p)
    assert any(t.name == f"CAR copies — {BLQ_CAPTION}, not measured" and t.marker.symbol == "triangle-down-open"
               for t in kin.data)
