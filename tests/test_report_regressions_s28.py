"""Report and dashboard regressions found by the s28 report audit (audit_report2): the dashboard's
Kaplan-Meier / cumulative-incidence bands, every relapse episode in the swimmer plot, relapses and
duration of response on the subject page, the T-ICAHT episode sentence, a Stein fit that is not
identified, and the exposure-response exclusions.

Expected values come from the analysis tables (km.csv, cumulative_incidence.csv, relapse.csv,
best_response.csv) and from the hand derivations of the audit (CASES.md), never from figure code.
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from cartlab.analyze import Analysis
from cartlab.io import read_study

FIX = Path(__file__).parent / "fixtures" / "survival_s28"


@pytest.fixture(scope="module")
def c04():
    return Analysis(read_study(FIX / "c04_cir"))


@pytest.fixture(scope="module")
def c03():
    # session 35: the case's relapse after MLFS (P5 day 28) is the CAR-T trial convention, the option
    # relapse_after (ELN 2022, the default, looks for relapse after CR/CRh/CRi only)
    from cartlab.analyze import AnalysisOptions

    return Analysis(read_study(FIX / "c03_endpoints"),
                    AnalysisOptions.from_settings({"response": {"relapse_after": ["CR", "CRh", "CRi", "MLFS"]}}))


# ------------------------------------------------------------------------------------------------
# 1. dashboard bands: what plotly draws, read back from the trace points


def _pieces(trace):
    """The drawn outline of a filled trace as straight segments, following its line shape
    ("hv": horizontal then vertical, as plotly draws it); None / NaN break the outline."""
    shape = trace.line.shape or "linear"
    pts = list(zip(trace.x, trace.y))
    segs = []
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in (x0, y0, x1, y1)):
            continue
        if shape == "hv":
            segs += [((x0, y0), (x1, y0)), ((x1, y0), (x1, y1))]
        elif shape == "vh":
            segs += [((x0, y0), (x0, y1)), ((x0, y1), (x1, y1))]
        else:
            segs.append(((x0, y0), (x1, y1)))
    return segs


def _extent(fig, name: str, x: float):
    """(lowest, highest) y of the band traces named ``name`` at ``x`` (not a break point), or None."""
    ys = []
    for tr in fig.data:
        if tr.type != "scatter" or not tr.fill or tr.name != name:
            continue
        for (x0, y0), (x1, y1) in _pieces(tr):
            if min(x0, x1) < x < max(x0, x1):
                ys.append(y0 + (y1 - y0) * (x - x0) / (x1 - x0))
    return (min(ys), max(ys)) if ys else None


def _bands(fig):
    return [tr for tr in fig.data if tr.type == "scatter" and tr.fill]


def _expected_post_step(table: pl.DataFrame, x: float):
    """The interval holding at ``x`` by the post-step rule (the row with the largest time <= x),
    or None where it is undefined (ci empty) or past the last time."""
    if x > table["time"].max():
        return None
    row = table.filter(pl.col("time") <= x).sort("time").tail(1)
    lo, hi = row["ci_low"][0], row["ci_high"][0]
    return None if lo is None or hi is None or math.isnan(lo) else (lo, hi)


def _views(analysis):
    from cartlab.report.cohort_plotly import cohort_figures_plotly

    return {v.key: v for v in cohort_figures_plotly(analysis)}


def test_dashboard_km_band_is_the_km_csv_step_function(c04):
    fig = _views(c04)["survival"].figure
    km = c04.table("km")
    assert not any(v is None or (isinstance(v, float) and math.isnan(v)) for tr in _bands(fig) for v in (*tr.x, *tr.y))
    drawn = {tr.name.split()[0] for tr in _bands(fig)}
    assert {"OS", "EFS"} <= drawn
    for p in drawn:
        tab = km.filter(pl.col("PARAMCD") == p)
        times = sorted(set(tab["time"].to_list()))
        probes = [(a + b) / 2 for a, b in zip(times, times[1:])] + [a + 0.25 for a in times[:-1]] + [b - 0.25 for b in times[1:]]
        for x in probes:
            want, got = _expected_post_step(tab, x), _extent(fig, f"{p} 95% CI", x)
            if want is None:
                assert got is None, (p, x, got)
            else:
                assert got == pytest.approx(want, abs=1e-9), (p, x)
    # hand derivations (CASES.md, Greenwood / log(-log), z = 1.96)
    os_ = lambda x: _extent(fig, "OS 95% CI", x)
    efs = lambda x: _extent(fig, "EFS 95% CI", x)
    assert os_(30) == pytest.approx((1.0, 1.0))
    assert os_(58.5) == pytest.approx((0.204, 0.969), abs=5e-4)
    assert os_(129.9) == pytest.approx((0.204, 0.969), abs=5e-4)   # [58, 130): S(128) = 0.8 holds to day 130
    assert os_(130.1) is None                                       # S(130) = 0: no band, no wedge
    assert max(x for tr in _bands(fig) if tr.name == "OS 95% CI" for x in tr.x) == 130
    # session 34: Q3 and Q5 are censored on their last response assessment (day 28, ELN 2022 Table 9):
    # at 58 n = 3, d = 2: S = 1/3, lower band (1/3)^exp(1.96*sqrt(2/3)/log 3) = 0.00896; S(88) = 0
    assert efs(57.9)[0] == pytest.approx(1.0)                       # not 0.009 one step early
    assert efs(58.1)[0] == pytest.approx(0.00896, abs=5e-5)
    assert efs(87.9)[0] == pytest.approx(0.00896, abs=5e-5)
    assert efs(88.1) is None                                        # S(88) = 0: no band


def test_dashboard_cumulative_incidence_band_is_a_step_function(c04):
    fig = _views(c04)["relapse_incidence"].figure
    cif = c04.table("cumulative_incidence")
    for ev in cif["event"].unique().to_list():
        tab = cif.filter(pl.col("event") == ev)
        times = sorted(set(tab["time"].to_list()))
        for x in [(a + b) / 2 for a, b in zip(times, times[1:])] + [a + 0.25 for a in times[:-1]] + [b - 0.25 for b in times[1:]]:
            assert _extent(fig, f"{ev} 95% CI", x) == pytest.approx(_expected_post_step(tab, x), abs=1e-9), (ev, x)
    # fixture README / CASES.md: CI [0, 0] before day 30 (not 0.29 at day 15), F1(30) = 0.2 with [0.008, 0.58]
    assert _extent(fig, "relapse 95% CI", 15) == pytest.approx((0.0, 0.0))
    assert _extent(fig, "relapse 95% CI", 45) == pytest.approx((0.008, 0.582), abs=5e-4)


# ------------------------------------------------------------------------------------------------
# 2. swimmer: every relapse episode


def test_swimmer_marks_every_relapse_episode(c03):
    from cartlab.report import cohort_data as cd

    rel = c03.table("relapse").filter(pl.col("relapse_day").is_not_null())
    # relapse.csv (one row per episode): P5 relapses on day 28 (after MLFS) and day 120 (after CR on day 60)
    assert rel.filter(pl.col("subject_id") == "P5")["relapse_day"].sort().to_list() == [28.0, 120.0]
    mk = cd.swimmer_data(c03).markers.filter(pl.col("marker") == "relapse")
    for sid, days in rel.group_by("subject_id").agg(pl.col("relapse_day").unique().sort()).iter_rows():
        assert mk.filter(pl.col("subject_id") == sid)["day"].sort().to_list() == days, sid
    # the dashboard swimmer draws both P5 markers
    fig = _views(c03)["swimmer"].figure
    drawn = [(x, y) for tr in fig.data if tr.type == "scatter" and tr.name and "relapse" in tr.name
             for x, y in zip(tr.x, tr.y)]
    assert sorted(x for x, y in drawn if y == "P5") == [28.0, 120.0]
    # the static swimmer (report) draws them too: the markers frame is shared; check the PNG view renders
    from cartlab.report.cohort_mpl import cohort_figures

    assert {v.key: v for v in cohort_figures(c03)}["swimmer"].figure is not None


# ------------------------------------------------------------------------------------------------
# 3. subject page (report and dashboard): relapses and duration of response


def test_subject_page_shows_every_relapse_and_the_duration_of_response(c03):
    from cartlab.app.server import response_notes_lines
    from cartlab.report.subject_blocks import _response_block

    best = c03.table("best_response").filter(pl.col("subject_id") == "P5").row(0, named=True)
    assert (best["dor_days"], best["dor_event"]) == (14.0, True)   # MLFS day 14 -> relapse day 28
    block = _response_block(c03, "P5")
    assert "day 28 (eln2022.relapse.marrow; episode 1" in block["relapse_text"]
    assert "day 120 (eln2022.relapse.marrow; episode 2" in block["relapse_text"]
    assert len(block["relapses"]["rows"]) == 2
    assert block["dor_text"].startswith("14 days from the first response on day 14 to relapse on day 28")
    lines = response_notes_lines(c03, "P5")
    assert any("day 120" in x for x in lines) and any(x.startswith("Duration of response: 14 days") for x in lines)
    # no response: why no DoR (P3 NR)
    assert "no response" in _response_block(c03, "P3")["dor_text"]


# ------------------------------------------------------------------------------------------------
# 4. the toxicity sentence: "not evaluable" only where the grade is


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_t_icaht_early_grade_is_not_summarised_as_no_episode_not_evaluable(tmp_path):
    from cartlab.report.subject_blocks import _toxicity_block

    # caseD3_leak L1 (CASES.md): PLT 15 on days 0 and 12, relapse day 14 -> T-ICAHT early window days 0-14,
    # PLT < 20 on days 0-12 = 13 days -> grade 3 (Rejeski 2025 Table 1 "<20 ... 1-13"), days 13-14 unknown -> max 4
    folder = _write(tmp_path / "d3", {
        "subjects.csv": "subject_id,sex,age_years,disease,target,last_followup_day\nL1,F,60,LBCL,CD19,100\n",
        "doses.csv": "subject_id,day,agent,dose,unit\nL1,0,CAR-T,100000000,cells\n",
        "events.csv": "subject_id,day,event,detail,attribution\nL1,14,relapse,,\n",
        "interventions.csv": "subject_id,start_day,end_day,category,agent,indication\n",
        "observations.csv": "subject_id,day,param,value,unit\nL1,0,PLAT,15,10^9/L\nL1,12,PLAT,15,10^9/L\n"
                            "L1,20,PLAT,15,10^9/L\n"})
    a = Analysis(read_study(folder))
    t = a.table("t_icaht").row(0, named=True)
    assert (t["t_icaht_early_grade"], t["t_icaht_early_grade_max"]) == (3, 4)
    text = _toxicity_block(a, "L1")["episodes_empty"]
    assert "episode of grade 1 or more" not in text
    assert "T-ICAHT early window (days 0-30): grade 3–4" in text
    ne = text.split("not evaluable: ", 1)[1]
    assert "T-ICAHT late window (after day 30)" in ne and "T-ICAHT early" not in ne
    assert all(part.strip() != "T-ICAHT" for part in ne.split(";"))


# ------------------------------------------------------------------------------------------------
# 5. dashboard kinetics: a Stein fit that is not identified is no estimate


def test_stein_fit_not_identified_is_not_drawn_nor_quoted():
    from cartlab.app.server import stein_identified, stein_note_text

    # the row stein_probe.py got for stein_decline (audit finding 6)
    row = {"fitted": True, "converged": False, "stein_cmax": 2.99e5, "stein_tmax": 14.6, "doubling_time": 0.695,
           "message": "not identified: no quantifiable sample before the fitted peak"}
    assert not stein_identified(row)
    note = stein_note_text(row)
    assert note.startswith("Stein 2019 fit not identified: no quantifiable sample before the fitted peak")
    assert "2.99e+05" not in note and "0.695" not in note and "Cmax 2" not in note
    ok = {**row, "converged": True, "message": "converged"}
    assert stein_identified(ok) and "Cmax 2.99e+05" in stein_note_text(ok)


# ------------------------------------------------------------------------------------------------
# 6. report exposure-response: exclusions and exposures of 0


@pytest.fixture(scope="module")
def syn30(tmp_path_factory):
    from cartlab.datasets import synthetic_cohort

    return Analysis(read_study(synthetic_cohort(30, seed=9, out_dir=tmp_path_factory.mktemp("syn30"))))


def test_exposure_view_shows_exclusions_and_zero_exposure(syn30):
    from cartlab.report.cohort_mpl import cohort_figures
    from cartlab.report.cohort_plotly import cohort_figures_plotly

    best = syn30.table("best_response")
    # hand (CASES.md syn30): 9 subjects have no best response (LBCL, no criteria) or NE -> excluded from the responder rows
    n_ex = syn30.table("subject_summary").filter(pl.col("best_response").is_null()
                                                 | (pl.col("best_response") == "NE")).height \
        if syn30.has("subject_summary") else best.filter(pl.col("best_response").is_null()
                                                         | (pl.col("best_response") == "NE")).height
    # session 40 (review 40 response B5): SYN-0030's day-28 marrow (BMBLAST 0.7 %, BMCELL 5 % < 10 %) is an
    # aplastic marrow, NE could be MLFS (it was NR): 10
    assert n_ex == 10
    v = {x.key: x for x in cohort_figures(syn30)}["exposure"]
    assert "n_excluded" in v.table.columns
    assert v.table.filter(pl.col("outcome") == "responder")["n_excluded"].to_list() == [n_ex, n_ex]
    assert f"responder rows: {n_ex} subject(s) excluded, best_response NE or empty" in v.caption
    assert "1 subject(s) with Cmax 0 (no expansion: SYN-0007)" in v.caption
    fig = {x.key: x for x in cohort_figures_plotly(syn30)}["exposure"].figure
    drawn = [t for t in fig.data if t.name and "0 (no expansion)" in t.name]
    assert drawn and all(list(t.text) == ["SYN-0007"] for t in drawn)
