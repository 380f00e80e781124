"""Review 36 (the numbers of the cohort views): count recovery keeps not-evaluable subjects (a band),
a relapse's antigen flag comes from its own episode, the heat map draws a measured 0 and marks "<x",
not-checkable rows are not deviations, every view writes its data as CSV, no grade the scale lacks,
and calendar days named where a duration counts them.

Every expected value is derived by hand from the tiny tables written here (the comment says how),
or from the cited standard; none is copied from cartlab's output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cartlab.analyze import Analysis
from cartlab.io import read_study
from cartlab.report import cohort_data as cd

EV = pl.List(pl.String)


def _study(tmp_path: Path, rows: list[tuple], events: str = "", obs: str = ""):
    """subjects (id, disease, last_followup_day, source) and optional events / observations CSV text."""
    f = tmp_path / "study"
    f.mkdir(exist_ok=True)
    lines = ["subject_id,disease,target,last_followup_day,source"]
    lines += [f"{sid},{dis},CD7,{fu},{src}" for sid, dis, fu, src in rows]
    (f / "subjects.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if events:
        (f / "events.csv").write_text("subject_id,day,event,detail,source\n" + events.strip() + "\n", encoding="utf-8")
    if obs:
        (f / "observations.csv").write_text("subject_id,day,param,value,value_text,unit,lloq,specimen,source\n"
                                            + obs.strip() + "\n", encoding="utf-8")
    return read_study(f)


def _adopt(study, protocol=None, **tables: pl.DataFrame) -> Analysis:
    """An Analysis whose ``tables`` are the given frames (their steps are not run)."""
    a = Analysis(study, protocol=protocol)
    steps = [s for s in a.steps if set(s.outputs) & set(tables)]
    a.adopt(steps, dict(tables), {n: set() for n in tables}, [], [], {}, {})
    return a


def _adtte(rows):
    """rows: (subject, PARAMCD, AVAL, EVENT)."""
    return pl.DataFrame([{"STUDYID": "t", "subject_id": s, "PARAMCD": p, "ANLFL": "Y", "STARTDY": 0.0, "ADY": v,
                          "AVAL": v, "CNSR": 1 - e, "EVENT": e, "evidence": []} for s, p, v, e in rows],
                        schema_overrides={"evidence": EV})


def _views(a, render="plotly"):
    if render == "plotly":
        from cartlab.report.cohort_plotly import cohort_figures_plotly as f
    else:
        from cartlab.report.cohort_mpl import cohort_figures as f
    return {v.key: v for v in f(a)}


# ------------------------------------------------------------------------------------------------
# A1 / C3: count recovery: not evaluable stays in the denominator, as a band


def _recovery(tmp_path):
    study = _study(tmp_path, [(s, "AML", 60, "") for s in "ABCDE"])
    f = pl.Float64
    rec = pl.DataFrame({
        "subject_id": list("ABCDE"),
        "neutrophil_recovery_day": [10.0, None, None, None, None],
        "neutrophil_recovery_day_min": [None, None, 5.0, 20.0, None],
        "neutrophil_recovery_day_max": [None, None, 15.0, None, None],
        "neutrophil_recovery_status": ["recovered", "not_reached", "not_evaluable", "not_evaluable", "not_applicable"],
        "neutrophil_recovery_reason": ["r", "not reached", "days 5-15", "from day 20, open", "never below"],
        "platelet_recovery_day": [None] * 5, "platelet_recovery_day_min": [None] * 5,
        "platelet_recovery_day_max": [None] * 5, "platelet_recovery_status": ["not_applicable"] * 5,
        "platelet_recovery_reason": ["never below"] * 5},
        schema_overrides={"platelet_recovery_day": f, "platelet_recovery_day_min": f, "platelet_recovery_day_max": f,
                          "neutrophil_recovery_day_max": f})
    return _adopt(study, count_recovery=rec)


def test_recovery_curve_keeps_not_evaluable_subjects_as_a_band(tmp_path):
    d = cd.count_recovery_data(_recovery(tmp_path))
    c = d.curve.filter(pl.col("lineage") == "neutrophil").sort("day")
    # by hand: N = A (recovered d10) + B (not reached) + C (NE, days 5-15) + D (NE, day 20 or later,
    # open) = 4; E never fell below (not in N).
    # lower bound: C at its latest day 15, D never -> day 10: 1, day 15: 2
    # upper bound: C at its earliest day 5, D at day 20 -> day 5: 1, day 10: 2, day 20: 3
    assert c["day"].to_list() == [5.0, 10.0, 15.0, 20.0]
    assert c["n_needing"].unique().to_list() == [4]
    assert c["n_recovered_low"].to_list() == [0, 1, 2, 2]
    assert c["n_recovered_high"].to_list() == [1, 2, 2, 3]
    assert c["proportion_low"].to_list() == pytest.approx([0, 0.25, 0.5, 0.5])
    assert c["proportion_high"].to_list() == pytest.approx([0.25, 0.5, 0.5, 0.75])
    assert "N = 4 below the threshold" in d.legend("neutrophil") and "2 not evaluable" in d.legend("neutrophil")


def test_recovery_band_is_drawn_by_both_renderers_and_the_caption_says_so(tmp_path):
    a = _recovery(tmp_path)
    d = cd.count_recovery_data(a)
    from matplotlib.collections import PolyCollection

    from cartlab.report.cohort_mpl import recovery_figure
    from cartlab.report.cohort_plotly import recovery_figure as plotly_recovery

    ax = recovery_figure(d).axes[0]
    # the band: a filled region whose top reaches the upper bound 75% (hand value above)
    polys = [p for p in ax.collections if isinstance(p, PolyCollection)]
    assert polys and max(v[:, 1].max() for p in polys for v in [p.get_paths()[0].vertices]) == pytest.approx(75.0)
    fig = plotly_recovery(d)
    neut = [t for t in fig.data if t.legendgroup == "neutrophil"]
    assert any(t.fill == "tonexty" for t in neut)
    assert max(max(t.y) for t in neut) == pytest.approx(75.0)
    cap = _views(a)["count_recovery"].caption
    assert "2 neutrophil" in cap and "not evaluable" in cap and "denominator" in cap


# ------------------------------------------------------------------------------------------------
# B1: the antigen flag of a relapse comes from that relapse's episode


def test_relapse_antigen_flag_is_the_first_assessment_of_its_own_episode(tmp_path):
    ids = ["P1", "P2", "P3"]
    study = _study(tmp_path, [(s, "T-ALL", 120, "") for s in ids])
    adtte = _adtte([(s, "OS", 120.0, 0) for s in ids])
    best = pl.DataFrame({"subject_id": ids, "criteria": ["ALL CAR-T response"] * 3, "best_response": ["CR"] * 3,
                         "best_response_day": [28.0, 10.0, 10.0], "responder": [True] * 3,
                         "relapse_day": [46.0, 30.0, 20.0], "evidence": [[], [], []]},
                        schema_overrides={"evidence": EV})
    # P3: two episodes: CR day 10 -> relapse day 20; CR day 50 -> relapse day 80
    relapse = pl.DataFrame({"subject_id": ["P1", "P2", "P3", "P3"], "episode": [1, 1, 1, 2],
                            "response_day": [28.0, 10.0, 10.0, 50.0], "relapse_day": [46.0, 30.0, 20.0, 80.0],
                            "evidence": [[], [], [], []]}, schema_overrides={"evidence": EV})
    # P1 (the review's probe): CD7 retained on day 46 (the relapse marrow), lost on day 57
    # P2: the only assessment (loss) is on day 10, before the relapse on day 30
    # P3: loss on day 60 (inside the second remission, before its relapse), loss on day 85
    loss = pl.DataFrame({"subject_id": ["P1", "P1", "P2", "P3", "P3"], "antigen": ["CD7"] * 5,
                         "day": [46.0, 57.0, 10.0, 60.0, 85.0], "below_cutoff": [False, True, True, True, True],
                         "antigen_loss": [False, True, True, True, True]})
    a = _adopt(study, adtte=adtte, best_response=best, relapse=relapse, antigen_loss=loss)
    mk = cd.swimmer_data(a).markers.filter(pl.col("marker") == "relapse").sort("subject_id", "day")
    got = {(r["subject_id"], r["day"]): (r["antigen"], r["label"]) for r in mk.iter_rows(named=True)}
    # review 41 F1: the label names the result's day (specimen not given: none named)
    assert got[("P1", 46.0)] == ("retained", "relapse, CD7 retained (CD7 on day 46)")
    assert got[("P2", 30.0)] == ("not assessed", "relapse, antigen not assessed")
    # P3 day 20: its episode ends at the response on day 50; the day-60 loss is not its assessment
    assert got[("P3", 20.0)][0] == "not assessed"
    # review 41 F1/F14: the day-85 result is 5 days after the relapse (within antigen_forward_days 7);
    # at or below the 30% cut-off is "low/negative", not "negative"
    assert got[("P3", 80.0)] == ("negative", "CD7-low/negative relapse (≤30%; CD7 on day 85)")


# ------------------------------------------------------------------------------------------------
# B2: the heat map: a measured 0 is a value; "<x" is censored and marked


def _il6(tmp_path):
    obs = """A,1,IL6,,<1.5,pg/mL,,PB,
A,2,IL6,0,,pg/mL,,PB,
A,3,IL6,100,,pg/mL,,PB,
B,1,IL6,3,,pg/mL,,PB,
B,1,IL6,,<5,pg/mL,,PB,"""
    return Analysis(_study(tmp_path, [("A", "AML", 30, ""), ("B", "AML", 30, "")], obs=obs))


def test_cytokine_cells_keep_a_measured_zero_and_flag_censored_results(tmp_path):
    m = cd.cytokine_matrix(_il6(tmp_path))
    rows = m.cells.sort("subject_id", "day").select("subject_id", "day", "value", "blq").rows()
    # A: day 1 "<1.5" (censored, at its limit), day 2 a measured 0, day 3 100;
    # B day 1: a measured 3 beats a "<5" (true value unknown below 5)
    assert rows == [("A", 1, 1.5, True), ("A", 2, 0.0, False), ("A", 3, 100.0, False), ("B", 1, 3.0, False)]
    # floor: a decade below the smallest positive value 1.5 -> 10**(0 - 1) = 0.1, log10 = -1
    lc = m.log_cells().filter((pl.col("subject_id") == "A") & (pl.col("day") == 2)).row(0, named=True)
    assert lc["zero"] and lc["log10"] == pytest.approx(-1.0)


def test_heat_map_draws_zero_at_the_floor_and_marks_censored_in_both_renderers(tmp_path):
    m = cd.cytokine_matrix(_il6(tmp_path))
    from cartlab.report.cohort_mpl import cytokine_figure
    from cartlab.report.cohort_plotly import cytokine_figure as plotly_cytokine

    fig = cytokine_figure(m)
    ax = fig.axes[0]
    img = ax.get_images()[0].get_array()
    row = {s: i for i, s in enumerate(m.subjects)}
    d0 = m.days[0]
    assert not np.ma.is_masked(img[row["A"], 2 - d0]) and float(img[row["A"], 2 - d0]) == pytest.approx(-1.0)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("measured 0" in t for t in texts) and any("censored" in t for t in texts)
    f = plotly_cytokine(m)
    z = np.asarray(f.data[0].z, dtype=float)
    assert z[row["A"], 2 - d0] == pytest.approx(-1.0)
    names = [t.name for t in f.data[1:]]
    assert any("measured 0" in n for n in names) and any("censored" in n for n in names)


# ------------------------------------------------------------------------------------------------
# B3: not checkable is not a deviation; n_deviations in one unit


def test_not_checkable_is_counted_apart_and_missed_days_are_counted(tmp_path):
    from cartlab.protocol import load_protocol

    study = _study(tmp_path, [(s, "AML", 30, "") for s in ("P1", "P2", "P3")])
    dev = pl.DataFrame({"subject_id": ["P1", "P1", "P2"],
                        "category": ["missed_monitoring", "missed_dose", "not_checkable"],
                        "item": ["IL6", "decitabine", "fludarabine"], "planned_day": [None, -5.0, -4.0],
                        "days": [[1.0, 2.0, 3.0], None, None], "detail": ["", "", ""]},
                       schema_overrides={"days": pl.List(pl.Float64), "planned_day": pl.Float64})
    a = _adopt(study, protocol=load_protocol("nct04762485"), protocol_deviations=dev)
    d = cd.deviation_summary(a)
    # by hand: only P1 has a deviation (P2's row could not be checked) -> 1 of 3
    assert (d.n_with, d.n_selected, d.n_not_checkable) == (1, 3, 1)
    got = {(r["category"], r["item"]): (r["n_deviations"], r["n_rows"]) for r in d.summary.iter_rows(named=True)}
    # IL6: one row, three missed days; decitabine: one missed dose
    assert got == {("missed_monitoring", "IL6"): (3, 1), ("missed_dose", "decitabine"): (1, 1)}
    assert d.not_checkable.select("item", "n_subjects", "subjects").rows() == [("fludarabine", 1, "P2")]
    cap = _views(a)["deviations"].caption
    assert "1 of 3 subject(s) with at least one deviation" in cap and "Could not be checked" in cap
    assert "1 subject(s) (fludarabine: P2)" in cap


# ------------------------------------------------------------------------------------------------
# B4: the views' data as CSV beside the figures (formula guard)


def test_every_view_writes_its_data_as_csv_with_numbers_at_risk(tmp_path):
    from cartlab.report.study import _cohort_views

    ids = list("ABCDE")
    study = _study(tmp_path, [(s, "AML", 30, "") for s in ids])
    aval = {"A": 5.0, "B": 10.0, "C": 10.0, "D": 20.0, "E": 30.0}
    event = {"A": 1, "B": 0, "C": 1, "D": 0, "E": 0}
    tox = pl.DataFrame({"subject_id": ids, "crs_grade_astct": [0, 1, 2, None, 1]},
                       schema_overrides={"crs_grade_astct": pl.Int64})
    a = _adopt(study, adtte=_adtte([(s, "OS", aval[s], event[s]) for s in ids]), crs_summary=tox)
    out = tmp_path / "rep"
    out.mkdir()
    views = _cohort_views(a, out, None, "quote")
    surv = next(v for v in views if v["key"] == "survival")
    names = [c["name"] for c in surv["csv"]]
    assert "cohort_survival_at_risk.csv" in names and all(c["href"].startswith("tables/") for c in surv["csv"])
    ar = pl.read_csv(out / "tables" / "cohort_survival_at_risk.csv").filter(pl.col("PARAMCD") == "OS")
    # by hand: at risk at day d = subjects with AVAL >= d among 5, 10, 10, 20, 30
    for t, n in ar.select("time", "n_at_risk").rows():
        assert n == sum(v >= t for v in aval.values()), t
    assert ar.height >= 2
    # the toxicity summary as CSV: CRS grades 0, 1, 2, NE, 1 -> N evaluable 4, grade 1: 2 (50.0%)
    t = pl.read_csv(out / "tables" / "cohort_toxicity.csv").filter(pl.col("Term") == "Cytokine release syndrome")
    t = t.filter(pl.col("Scale") == "ASTCT 2019").row(0, named=True)
    assert (t["N evaluable"], t["Not evaluable"], t["Grade 1 n (%)"]) == (4, 1, "2 (50.0%)")


def test_cohort_csv_goes_through_the_formula_guard(tmp_path):
    from cartlab.report.study import _cohort_views

    study = _study(tmp_path, [("A", "AML", 30, ""), ("B", "AML", 30, "")])
    # a text cell starting with "=" (an adopted table is not validated): quoted unless the guard is off
    best = pl.DataFrame({"subject_id": ["A", "B"], "criteria": ["x", "x"], "best_response": ["=cmd", "CR"],
                         "best_response_day": [28.0, 28.0], "responder": [None, None], "relapse_day": [None, None],
                         "evidence": [[], []]},
                        schema_overrides={"relapse_day": pl.Float64, "responder": pl.Boolean, "evidence": EV})
    a = _adopt(study, adtte=_adtte([("A", "OS", 30.0, 0), ("B", "OS", 20.0, 1)]), best_response=best)
    for guard, first in (("quote", "'=cmd"), ("off", "=cmd")):
        out = tmp_path / guard
        out.mkdir()
        _cohort_views(a, out, None, guard)
        bars = pl.read_csv(out / "tables" / "cohort_swimmer_bars.csv")
        assert bars.filter(pl.col("subject_id") == "A")["response"].to_list() == [first]


# ------------------------------------------------------------------------------------------------
# C1: no grade the scale does not define


def test_grade_levels_come_from_the_criteria_tables():
    from cartlab.report.cohort_stats import CTCAE_LABS, ICAHT_EARLY, T_LATE, grade_levels

    # Rejeski 2023 (ICAHT) and T-ICAHT: grades 1-4; CTCAE v5.0 "Neutrophil count decreased": grades
    # 1-4 ("-" for grade 5); "Leukocytosis": grades 3-4 only (grades 1-2 "-")
    assert grade_levels(ICAHT_EARLY, "EHA/EBMT 2023 ICAHT") == {1, 2, 3, 4}
    assert grade_levels(T_LATE, "T-ICAHT 2025") == {1, 2, 3, 4}
    assert grade_levels("Neutrophil count decreased", CTCAE_LABS) == {1, 2, 3, 4}
    assert grade_levels("Leukocytosis", CTCAE_LABS) == {3, 4}


def test_toxicity_summary_prints_a_dash_for_a_grade_the_scale_lacks(tmp_path):
    from cartlab.report.cohort_stats import ICAHT_EARLY, NOT_ON_SCALE

    study = _study(tmp_path, [(s, "AML", 60, "") for s in "AB"])
    icaht = pl.DataFrame({"subject_id": ["A", "B"], "icaht_early_grade": [1, 4], "icaht_late_grade": [0, None]},
                         schema_overrides={"icaht_late_grade": pl.Int64})
    crs = pl.DataFrame({"subject_id": ["A", "B"], "crs_grade_astct": [1, 2]})
    t = cd.toxicity_summary(_adopt(study, icaht=icaht, crs_summary=crs), include_labs=False)
    early = t.filter(pl.col("Term") == ICAHT_EARLY).row(0, named=True)
    # by hand: early ICAHT grades 1 and 4 of 2 evaluable; ICAHT has no grade 5
    assert early["Grade 1 n (%)"] == "1 (50.0%)" and early["Grade 4 n (%)"] == "1 (50.0%)"
    assert early["Grade 5 n (%)"] == NOT_ON_SCALE == "—"
    # ASTCT CRS defines grade 5 (death attributed to CRS): 0 of 2
    c = t.filter((pl.col("Term") == "Cytokine release syndrome") & (pl.col("Scale") == "ASTCT 2019")).row(0, named=True)
    assert c["Grade 5 n (%)"] == "0 (0.0%)"


# ------------------------------------------------------------------------------------------------
# C2: a duration in whole calendar days names the calendar day it counts from


def test_dor_sentence_names_the_calendar_day_of_a_date_time_day(tmp_path):
    from cartlab.report.subject_blocks import dor_text

    study = _study(tmp_path, [("A", "AML", 60, "")])
    best = pl.DataFrame({"subject_id": ["A"], "criteria": ["ELN 2022 AML"], "best_response": ["CR"],
                         "best_response_day": [29.42], "responder": [True], "relapse_day": [None],
                         "first_response_day": [29.42], "dor_days": [31.0], "dor_event": [False],
                         "dor_end_day": [60.0], "dor_end_reason": ["last follow-up"], "evidence": [[]]},
                        schema_overrides={"relapse_day": pl.Float64, "evidence": EV})
    text = dor_text(_adopt(study, best_response=best), "A")
    # ELN 2022 Table 9 / calendar_days: 60 - floor(29.42) = 60 - 29 = 31 whole days
    assert "from the first response on day 29.42 (calendar day 29) to day 60" in text
    assert "31 days" in text
