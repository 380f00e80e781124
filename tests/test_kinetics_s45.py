"""Review 45 (cellular kinetics) fixes: analyze's exposure_response reads the CRS grade range (F6), a window
not starting at day 0 follows the 0 of a BLQ sample after tlast (F3), a product named among other words is a
CAR-T infusion (F2), obe-cel's labelled split dose is one administration (F1), a window AUC extrapolated past
a re-infusion or death says so (F4, F5).

Every expected value is worked by hand in the comments (the reproductions of
/work/notes/review45_kinetics/REPORT.md), never copied from cartlab's output."""

from __future__ import annotations

import math
import warnings

import polars as pl
import pytest

from cartlab.kinetics.car import CarKineticsOptions, derive_car_kinetics
from cartlab.model import Study
from test_kinetics_s40 import study as study40  # the hand-made study of session 40


def study(rows: dict[str, list[tuple]], doses: dict[str, list[tuple[float, str]]] | None = None,
          lloq: float = 50.0, subjects: dict | None = None, events: list[dict] | None = None) -> Study:
    """Session 40's hand-made study (CARCOPY samples, doses as (day, agent)) with an LLOQ of 50."""
    return study40(rows, doses, lloq, subjects=subjects, events=events)


def kin(s: Study, sid: str, **opts) -> tuple[dict, list[str]]:
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        k = derive_car_kinetics(s, CarKineticsOptions(**opts))
    return k.filter(pl.col("subject_id") == sid).row(0, named=True), [str(x.message) for x in w]


# ---- F6: cartlab analyze's exposure step passes crs_grade_astct_min ------------------------------------

def test_exposure_step_reads_crs_grade_min():
    from cartlab.analyze import AnalysisOptions
    from cartlab.steps import _exposure

    ids = [f"S{i}" for i in range(8)]
    ks = pl.DataFrame({"subject_id": ids, "car_cmax": [1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5],
                       "car_auc_0_28": [1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6], "car_param": ["CARCOPY"] * 8,
                       "car_unit": ["copies/ug"] * 8, "car_auc_window": ["0-28"] * 8,
                       "car_not_evaluable": [None] * 8})
    best = pl.DataFrame({"subject_id": ids, "best_response": ["CR", "NR"] * 4, "responder": [True, False] * 4})
    crs = pl.DataFrame({"subject_id": ids, "crs_grade_astct": [0, 1, 3, 1, 3, 2, 3, 4],
                        "crs_grade_astct_min": [0, 0, 1, 0, 3, 2, 1, 4],
                        "crs_grade_astct_max": [0, 1, 3, 1, 3, 2, 3, 4]})
    out = _exposure(None, AnalysisOptions(), ks, best, crs).filter(pl.col("outcome") == "crs_grade_ge3")
    # by hand: S2 and S6 are grade 1-3 (min 1, max 3): grade >= 3 unknown, excluded and named; of the other
    # six, S4 (3) and S7 (4) are >= 3. The old code counted S2, S6 as events: n 8, n_event 4.
    assert out.height == 2
    for r in out.iter_rows(named=True):
        assert (r["n"], r["n_event"], r["n_excluded"]) == (6, 2, 2)
        assert "S2, S6" in r["excluded"] and "undetermined" in r["excluded"]


# ---- F3: a window not starting at day 0 follows the 0 of a BLQ sample after tlast ---------------------

WIN2 = [(4, 1000), (7, 50000), (10, 30000), (12, 18000), (14, 10000), (21, "<50"), (28, "<50")]


def seg(t1, c1, t2, c2):
    """lin-up/log-down trapezoid (PKNCA)."""
    return (t2 - t1) * (c2 - c1) / math.log(c2 / c1) if 0 < c2 < c1 else (t2 - t1) * (c1 + c2) / 2


def test_window_from_day1_follows_blq_zero():
    # by hand: 0 imputed at day 0, lin-up/log-down to day 14, then linear 10,000 -> 0 on days 14-21 (the BLQ
    # sample on day 21 kept as 0), 0 to day 28: AUC0-28 = 305,160.44; the linear rise 0 -> 1000 over days 0-4
    # is 250 at day 1, so AUC0-1 = 125 and AUC1-28 = 305,035.44. The old code extrapolated by lambda.z
    # through the BLQ samples: 305,666.4 (more than AUC0-28).
    pts = [(0, 0.0)] + [(t, 0.0 if isinstance(c, str) else float(c)) for t, c in WIN2]
    auc028 = sum(seg(*a, *b) for a, b in zip(pts, pts[1:]))
    assert auc028 == pytest.approx(305160.44, abs=0.01)
    k, w = kin(study({"W1": WIN2}), "W1", auc_window=(1.0, 28.0))
    assert k["auc_window"] == pytest.approx(auc028 - 125.0, rel=1e-9)
    assert k["auc_window"] == pytest.approx(305035.44, abs=0.01)
    assert "BLQ sample on day 21" in k["auc_window_basis"] and "day 1-28" in k["auc_window_basis"]
    assert not any(x.startswith("auc_window_extrapolated") for x in k["warnings"])
    k0, _ = kin(study({"W1": WIN2}), "W1")  # the day-0 window is unchanged
    assert k0["auc_window"] == pytest.approx(auc028, rel=1e-9)


def test_window_from_day7_without_lambda_z_is_computable():
    # the same without day 12: lambda.z is not estimable (2 points after tmax), but the BLQ sample on day 21
    # settles the level. By hand over days 7-28: log-down 7-10 and 10-14, linear 14-21 to 0:
    # 3*20000/ln(5/3) + 4*20000/ln 3 + 7*10000/2 = 117,456.9 + 72,819.1 + 35,000 = 225,276.05. The old code
    # gave null ("lambda.z is not estimable").
    rows = [r for r in WIN2 if r[0] != 12]
    hand = 3 * 20000 / math.log(5 / 3) + 4 * 20000 / math.log(3) + 7 * 10000 / 2
    assert hand == pytest.approx(225276.05, abs=0.01)
    k, _ = kin(study({"W1": rows}), "W1", auc_window=(7.0, 28.0))
    assert k["auc_window"] == pytest.approx(hand, rel=1e-9)


def test_window_from_day1_ending_before_the_blq_zero():
    # window 1-17, BLQ on day 21: linear 10,000 -> 0 over days 14-21 is 10000*4/7 at day 17, so the window
    # is AUC1-14 + (10000 + 40000/7)/2*3 (the triangle cut at the window's end). The old code took lambda.z.
    pts = [(0, 0.0)] + [(t, float(c)) for t, c in WIN2 if not isinstance(c, str)]
    auc014 = sum(seg(*a, *b) for a, b in zip(pts, pts[1:]))
    hand = auc014 - 125.0 + (10000 + 40000 / 7) / 2 * 3
    k, _ = kin(study({"W1": WIN2}), "W1", auc_window=(1.0, 17.0))
    assert k["auc_window"] == pytest.approx(hand, rel=1e-9)
    assert "interpolated at day 17" in k["auc_window_basis"]


# ---- F2: a dosing row naming a CAR-T product among other words is a CAR-T infusion ---------------------

@pytest.mark.parametrize("agent", ["Kymriah (tisagenlecleucel)", "axi-cel (Yescarta)", "tisagenlecleucel 2nd infusion",
                                   "liso-cel CD8 component", "Breyanzi CD4", "obe-cel dose 2", "Tisa Cel"])
def test_product_named_among_words_is_car_t(agent):
    from cartlab.kinetics.agents import car_t_agent_expr, is_car_t_agent

    assert is_car_t_agent(agent)
    assert pl.DataFrame({"a": [agent]}).select(car_t_agent_expr(pl.col("a")))["a"][0]


@pytest.mark.parametrize("agent", ["kymriahx", "tabelecleucel", "afamitresgene autoleucel", "fludarabine",
                                   "CTL019", "pre-axicelx"])
def test_product_word_needs_word_edges(agent):
    # a product name glued to other letters or digits is not the product; development codes are not guessed
    from cartlab.kinetics.agents import car_t_agent_expr, is_car_t_agent

    assert not is_car_t_agent(agent)
    assert not pl.DataFrame({"a": [agent]}).select(car_t_agent_expr(pl.col("a")))["a"][0]


K1 = [(4, 1000), (7, 20000), (10, 30000), (14, 15000), (28, 3000), (56, 200), (67, 60000), (74, 20000), (88, 4000)]


def test_reinfusion_named_with_brand_and_inn_ends_the_profile():
    # review45 kym/: 'Kymriah (tisagenlecleucel)' on days 0 and 60. By hand: the day-60 infusion is 60 > 7 days
    # after the first, a second administration (rule car_kinetics.profile_end): the profile is days 0-56,
    # Cmax 30,000 at day 10, tlast 56; days 67/74/88 are left out. The old code saw no infusion: cmax 60,000
    # at day 67 (the second course), tlast 88.
    s = study({"K1": K1}, doses={"K1": [(0.0, "Kymriah (tisagenlecleucel)"), (60.0, "Kymriah (tisagenlecleucel)")]})
    k, w = kin(s, "K1")
    assert (k["cmax"], k["tmax"], k["tlast"]) == (30000.0, 10.0, 56.0)
    assert "re-infusion on day 60" in k["reason"]
    assert any("second CAR-T administration" in x for x in w)
    assert not any("no CAR-T infusion" in x for x in w)


def test_no_infusion_warning_names_the_unread_agents():
    # a subject with CAR samples and only a dosing row cartlab cannot read as CAR-T: the warning lists it
    s = study({"K1": K1[:5]}, doses={"K1": [(0.0, "CTL019"), (-5.0, "fludarabine")]})
    _, w = kin(s, "K1")
    msg = next(x for x in w if "no CAR-T infusion" in x)
    assert "K1 (doses.csv agents not read as CAR-T: 'CTL019', 'fludarabine')" in msg


# ---- F1: obe-cel's labelled split dose (Day 1 and Day 10 +/- 2, up to Day 21) is one administration -----

OBE = [(1, "<50"), (4, 300), (7, 2000), (9, 5000), (14, 120000), (21, 40000), (28, 8000)]
OBE_AUC = 0 + 3 * 150 + 3 * 1150 + 2 * 3500 + 5 * 62500 + 7 * 80000 / math.log(3) + 7 * 32000 / math.log(5)


def test_obe_cel_split_dose_is_one_administration():
    # review45 obe/: obecabtagene autoleucel on day 0 and day 9 (label Day 1 and Day 10). By hand (lin-up/log-down,
    # 0 imputed at day 0, the day-1 BLQ kept as 0): Cmax 120,000 at day 14; AUC0-28 = 0 + 3*150 + 3*1150 + 2*3500
    # + 5*62,500 + 7*80,000/ln 3 + 7*32,000/ln 5 = 972,313. The old code cut the profile at day 9 (gap 9 > 7).
    assert OBE_AUC == pytest.approx(972313, abs=0.5)
    s = study({"O1": OBE}, doses={"O1": [(0.0, "obecabtagene autoleucel"), (9.0, "obecabtagene autoleucel")]})
    k, w = kin(s, "O1")
    assert (k["cmax"], k["tmax"], k["tlast"]) == (120000.0, 14.0, 28.0)
    assert k["auc_window"] == pytest.approx(OBE_AUC, rel=1e-9)
    assert not any("second CAR-T administration" in x for x in w)


@pytest.mark.parametrize("agent, second, cut", [
    ("Aucatzyl", 20.0, False),     # postponed to Day 21 = 20 days after Day 1: still the split dose
    ("obe-cel dose 2", 12.0, False),
    ("obe-cel", 25.0, True),       # past the labelled window (20 days): a re-infusion
    ("CAR-T", 9.0, True),          # no labelled split dose: kinetics.split_dose_gap_days (7) as before
    ("Kymriah", 9.0, True),
])
def test_split_dose_window_is_per_product(agent, second, cut):
    rows = [(1, 100), (4, 3000), (7, 20000), (14, 50000), (21, 30000), (28, 40000), (35, 9000)]
    s = study({"O1": rows}, doses={"O1": [(0.0, agent), (second, agent)]})
    k, w = kin(s, "O1")
    assert any("second CAR-T administration" in x for x in w) is cut
    assert (k["tlast"] <= second) is cut


def test_split_dose_window_never_narrows_the_option():
    # a gap option wider than the product's window wins: max(split_dose_gap_days, window)
    s = study({"O1": OBE}, doses={"O1": [(0.0, "obe-cel"), (25.0, "obe-cel")]})
    _, w = kin(s, "O1", split_dose_gap_days=30.0)
    assert not any("second CAR-T administration" in x for x in w)


def test_stein_reads_infusions_with_the_analysis_gap_and_product_window():
    from cartlab.kinetics.stein import SteinModel
    from cartlab.kinetics.stein.data import FIRST_DOSE_NOTE

    obe = study({"O1": OBE, "G1": OBE}, doses={"O1": [(0.0, "obe-cel"), (9.0, "obe-cel")],
                                               "G1": [(0.0, "CAR-T"), (9.0, "CAR-T")]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        notes = SteinModel()._prepare(obe, None, None).notes
        wide = SteinModel(split_dose_gap_days=10.0)._prepare(obe, None, None).notes
    # obe-cel day 0 + 9: the labelled split dose, as the NCA reads it (the old code: a re-infusion)
    assert FIRST_DOSE_NOTE not in notes["O1"] and "split dose" in notes["O1"]
    assert FIRST_DOSE_NOTE in notes["G1"]  # generic CAR-T 9 days apart: a re-infusion (gap 7)
    assert FIRST_DOSE_NOTE not in wide["G1"] and "within 10 days" in wide["G1"]  # the option passed through


def test_stein_command_refuses_a_bad_gap(tmp_path):
    from cartlab.cli.kinetics_io import stein_command

    with pytest.raises(ValueError, match="--split-dose-gap-days"):
        stein_command(study({"O1": OBE}), tmp_path / "out", split_dose_gap_days=-1.0)


# ---- F4, F5: the window AUC names a re-infusion inside it, and a death / last follow-up it is extrapolated past --

R1 = [(4, 1000), (7, 50000), (10, 30000), (12, 18000), (14, 10000), (21, 3000), (24, 90000), (28, 100000)]


def test_window_crossing_a_reinfusion_is_named():
    # review45 re/: re-infused on day 20, the profile ends there (samples 21-28 left out), the window 0-28 is
    # reached by the first profile's lambda.z tail from day 14. Today's value is kept (the spec's AUC0-28): the
    # same as the subject without the re-infusion and the samples after it; the basis and a warning now say so.
    k, w = kin(study({"R1": R1}, doses={"R1": [(0.0, "CAR-T"), (20.0, "CAR-T")]}), "R1")
    same, _ = kin(study({"R1": R1[:5]}), "R1")
    assert k["auc_window"] == pytest.approx(same["auc_window"], rel=1e-12)
    assert "re-infusion on day 20" in k["auc_window_basis"] and "lambda.z tail" in k["auc_window_basis"]
    assert any(x.startswith("auc_window_past_reinfusion:") and "day 20" in x for x in k["warnings"])
    assert "re-infusion on day 20" in k["reason"].split("AUC0-28")[1]  # the reason quotes the basis
    # a re-infusion after the window's end: nothing to say
    k2, _ = kin(study({"R1": R1}, doses={"R1": [(0.0, "CAR-T"), (40.0, "CAR-T")]}), "R1")
    assert not any(x.startswith("auc_window_past_reinfusion") for x in k2["warnings"])


DTH = [(1, 500), (4, 90000), (7, 60000), (10, 30000), (14, 12000)]


def test_window_extrapolated_past_death_is_named():
    # review45 hard/ DTH: death on day 15, last sample day 14, AUC0-28 extrapolated by lambda.z to day 28
    # (13 of the 14 extrapolated days after death). Value kept; basis and warning name the death.
    ev = [{"subject_id": "D1", "day": 15.0, "event": "death"}]
    k, _ = kin(study({"D1": DTH}, events=ev, subjects={"last_followup_day": [15.0]}), "D1")
    plain, _ = kin(study({"D1": DTH}), "D1")
    assert k["auc_window"] == pytest.approx(plain["auc_window"], rel=1e-12)
    assert "death on day 15" in k["auc_window_basis"]
    assert any(x.startswith("auc_window_past_death:") and "day 15" in x for x in k["warnings"])
    # death named, so the follow-up (the same day) is not named twice
    assert not any(x.startswith("auc_window_past_followup") for x in k["warnings"])


def test_window_extrapolated_past_last_followup_is_named():
    k, _ = kin(study({"D1": DTH}, subjects={"last_followup_day": [20.0]}), "D1")
    assert "last follow-up on day 20" in k["auc_window_basis"]
    assert any(x.startswith("auc_window_past_followup:") for x in k["warnings"])


def test_death_after_the_window_or_a_measured_window_says_nothing():
    ev = [{"subject_id": "D1", "day": 40.0, "event": "death"}]
    k, _ = kin(study({"D1": DTH}, events=ev), "D1")  # death after day 28
    assert not any(x.startswith("auc_window_past_") for x in k["warnings"])
    # samples through day 28 (no extrapolation), death on day 25 between them: the AUC is measured
    rows = DTH + [(21, 3000), (28, 1000)]
    k, _ = kin(study({"D1": rows}, events=[{"subject_id": "D1", "day": 25.0, "event": "death"}]), "D1")
    assert not any(x.startswith("auc_window_past_") for x in k["warnings"])
