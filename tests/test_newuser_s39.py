"""Review 39 (a new user's first hour): A1, A2, B3, B5, C9. Expected values are derived by hand from
the standards' text (each test says how), never from cartlab output."""

from __future__ import annotations

import warnings
from pathlib import Path

import polars as pl

from cartlab.grading.hematotox import CarHematotoxOptions, EasixOptions, derive_car_hematotox, derive_easix
from cartlab.grading.icans import derive_icans_daily
from cartlab.io import read_study
from cartlab.response.best import BestResponseOptions, derive_best_response, orr

OBS_HEAD = "subject_id,day,datetime,param,analyte,value,value_text,unit,specimen"


def _folder(tmp_path: Path, obs: list[str], subjects=("S1",), dosed=("S1",), doses: bool = True):
    (tmp_path / "observations.csv").write_text("\n".join([OBS_HEAD, *obs]) + "\n")
    (tmp_path / "subjects.csv").write_text(
        "subject_id,sex,age_years,disease,infusion_date,infusion_datetime,last_followup_day\n"
        + "".join(f"{s},F,50,AML,,,200\n" for s in subjects))
    if doses:
        (tmp_path / "doses.csv").write_text("subject_id,day,datetime,agent,dose,unit\n"
                                            + "".join(f"{s},0,,CAR-T,1,10^6 cells/kg\n" for s in dosed))
    return read_study(tmp_path)


def _row(sid, day, param, value, unit, specimen="PB", text=""):
    return f"{sid},{day},,{param},,{value},{text},{unit},{specimen}"


def _marrow(sid, day, bm, pb="0", anc="1.5", plt="150"):
    return [_row(sid, day, "BMBLAST", bm, "%", "BM"), _row(sid, day, "PBBLAST", pb, "%"),
            _row(sid, day, "NEUT", anc, "10^9/L"), _row(sid, day, "PLAT", plt, "10^9/L")]


# A1 -- T01 has no CAR-T dose row but CARCOPY 5000 copies/ug on day 7; T02 is dosed. Both: BM 40% before
# day 0. Day 28: T01 BM 40% (ELN 2022: not CR (>= 5%), not PR (no 50% fall from 40%) -> NR); T02 BM 2%,
# PB 0, ANC 1.5, PLT 150 -> CR. By hand: ORR over the infused = 1/2 (T01 counted, infused from its
# CAR-T measurement); the old reading (a dose row only) is 1/1 with T01 NE not_infused.

def _a1(tmp_path, car_text=""):
    obs = [_row("T01", -7, "BMBLAST", "40", "%", "BM"), _row("T02", -7, "BMBLAST", "40", "%", "BM"),
           _row("T01", 7, "CARCOPY", "" if car_text else "5000", "copies/ug", text=car_text),
           *_marrow("T01", 28, "40"), *_marrow("T02", 28, "2")]
    return _folder(tmp_path, obs, subjects=("T01", "T02"), dosed=("T02",))


def test_a1_car_t_measured_counts_as_infused(tmp_path):
    s = _a1(tmp_path)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        b = derive_best_response(s)
    t1 = b.filter(pl.col("subject_id") == "T01").row(0, named=True)
    assert t1["best_response"] == "NR" and t1["rule"] != "response.not_infused"
    assert "no CAR-T dose recorded; CAR-T measured on day 7" in t1["reason"]
    assert "option infusion_evidence" in t1["reason"]
    assert any("T01" in str(x.message) and "quantifiable CARCOPY/CARCELL" in str(x.message) for x in w)
    o = orr(b).row(0, named=True)
    assert (o["n"], o["n_responders"], o["n_not_infused"]) == (2, 1, 0)


def test_a1_option_dose_keeps_the_old_reading(tmp_path):
    b = derive_best_response(_a1(tmp_path), BestResponseOptions(infusion_evidence="dose"))
    t1 = b.filter(pl.col("subject_id") == "T01").row(0, named=True)
    assert t1["best_response"] == "NE" and t1["rule"] == "response.not_infused"
    assert orr(b).row(0, named=True)["n"] == 1


def test_a1_censored_car_value_is_no_evidence(tmp_path):
    """CARCOPY '<50' (censored, spec 'Cellular kinetics' BLQ) is not quantified: T01 stays not infused."""
    b = derive_best_response(_a1(tmp_path, car_text="<50"))
    assert b.filter(pl.col("subject_id") == "T01")["rule"][0] == "response.not_infused"


def test_a1_endpoint_population_reads_the_same_evidence(tmp_path):
    from cartlab.response.adtte_population import not_infused

    s = _a1(tmp_path)
    rows = pl.DataFrame({"subject_id": ["T01", "T02"], "PARAMCD": ["OS", "OS"], "AVAL": [200.0, 200.0],
                         "rule": ["censor", "censor"], "reason": ["r", "r"],
                         "evidence": [[], []]}, schema_overrides={"evidence": pl.List(pl.String)})
    out, missing = not_infused(rows, s, "infused", lambda *a, **k: pl.lit("x"))
    assert missing == [] and out["AVAL"].to_list() == [200.0, 200.0]
    assert "CAR-T measured on day 7" in out["reason"][0]
    out, missing = not_infused(rows, s, "infused", lambda *a, **k: pl.lit("x"), evidence="dose")
    assert missing == ["T01"]


# B5 -- no events.csv: a new therapy / HSCT would be unknown; the best response's reason says so.

def test_b5_events_not_given_named_in_best_response(tmp_path):
    s = _folder(tmp_path, [_row("S1", -7, "BMBLAST", "40", "%", "BM"), *_marrow("S1", 28, "2")])
    assert "events" in s.absent
    r = derive_best_response(s).row(0, named=True)
    assert r["best_response"] == "CR"  # no verdict change
    assert "events.csv not given: new therapy / HSCT unknown" in r["reason"]


# A2 -- CAR-HEMATOTOX (Rejeski 2021 cut-offs: PLT <75 -> 2, 75-175 -> 1, >175 -> 0; ANC <1200/uL -> 1;
# Hb <= 9.0 g/dL -> 1; CRP >= 3.0 mg/dL -> 1; ferritin <650 -> 0). Values on days -20 and -7: PLT 237,
# ANC 1.7, Hb 10.5 g/dL, CRP 0.92 mg/dL, ferritin 288 -> 0 points each, score 0. Day -1 (post-LD nadir):
# PLT 29 -> 2, ANC 0.15 -> 1, Hb 10.2 -> 0, CRP 1.37 mg/dL -> 0, ferritin 252 -> 0: score 3.
# doses.csv not given: the first LD day could be any day -14..-1: on or before -14..-2 -> score 0,
# on or before -1 -> 3. By hand: range 0-3, spanning low (0-1) and high (>= 2): risk undetermined.

def _a2_obs():
    rows = []
    for d in (-20, -7):
        rows += [_row("S1", d, "PLAT", "237", "10^9/L"), _row("S1", d, "NEUT", "1.7", "10^9/L"),
                 _row("S1", d, "HGB", "105", "g/L"), _row("S1", d, "CRP", "9.2", "mg/L"),
                 _row("S1", d, "FERRITIN", "288", "ug/L"), _row("S1", d, "LDH", "200", "U/L"),
                 _row("S1", d, "CREAT", "80", "umol/L")]
    rows += [_row("S1", -1, "PLAT", "29", "10^9/L"), _row("S1", -1, "NEUT", "0.15", "10^9/L"),
             _row("S1", -1, "HGB", "102", "g/L"), _row("S1", -1, "CRP", "13.7", "mg/L"),
             _row("S1", -1, "FERRITIN", "252", "ug/L")]
    return rows


def test_a2_absent_doses_gives_a_range_not_the_nadir(tmp_path):
    s = _folder(tmp_path, _a2_obs(), doses=False)
    r = derive_car_hematotox(s).row(0, named=True)
    assert (r["hematotox_score_min"], r["hematotox_score_max"], r["hematotox_score"]) == (0, 3, None)
    assert r["hematotox_risk"] is None and "doses.csv (not given)" in r["hematotox_missing"]
    assert r["baseline_rule"] == "baseline.absent_doses" and "doses.csv not given" in r["reason"]


def test_a2_option_before_day0_names_the_absent_file(tmp_path):
    s = _folder(tmp_path, _a2_obs(), doses=False)
    r = derive_car_hematotox(s, CarHematotoxOptions(absent_doses="before_day0")).row(0, named=True)
    assert (r["hematotox_score"], r["hematotox_risk"]) == (3, "high")
    assert "doses.csv not given" in r["reason"] and "absent_doses=before_day0" in r["reason"]


def test_a2_header_only_doses_keeps_no_lymphodepletion_recorded(tmp_path):
    s = _folder(tmp_path, _a2_obs(), dosed=())
    r = derive_car_hematotox(s).row(0, named=True)
    assert (r["hematotox_score"], r["baseline_rule"]) == (3, "baseline.before_day0")
    assert "no lymphodepletion dose recorded" in r["reason"]


def test_a2_easix_not_computed_without_doses(tmp_path):
    s = _folder(tmp_path, _a2_obs(), doses=False)
    r = derive_easix(s).row(0, named=True)
    assert r["easix"] is None and r["missing"] == ["doses.csv (not given)"]
    # before_day0: the day -7 LDH/CREAT and the day -1 PLAT: EASIX = 200 * (80/88.42) / 29 (by hand ~6.24)
    e = derive_easix(s, options=EasixOptions(absent_doses="before_day0")).row(0, named=True)
    assert abs(e["easix"] - 200 * (80 / 88.42) / 29) < 0.05


# B3 -- ICE 8 with no LOC row that day (ASTCT 2019: ICE 7-9 -> grade 1); the default reads the LOC as
# not depressed and the reason must name that convention and its option.

def test_b3_score_without_loc_names_the_convention(tmp_path):
    obs = [_row("S1", 3, "ICE", "8", "")]
    s = _folder(tmp_path, obs)
    r = derive_icans_daily(s).filter(pl.col("day") == 3).row(0, named=True)
    assert r["grade"] == 1
    assert "icans.loc_missing_with_score=not_depressed" in r["reason"] and "icans.conv.loc_missing" in r["reason"]


# C9 -- the README's explain topic list names iec-hs (cartlab explain --what iec-hs exists).

def test_c9_readme_lists_iec_hs():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    line = next(x for x in readme.splitlines() if "--what crs" in x and "reasoning:" in x)
    assert "iec-hs" in line


# B1 -- WEIGHT 95 kg on day -300 and 78 kg on day -6; screening window from day -42 (NCT04762485,
# screening_window [-42, -6]), first LD day -5: by hand only the day -6 row is in [-42, -5] -> 78 kg.
# With only the day -300 row: no weight, and the source names that row as outside the window.

def _size_obs(rows):
    return pl.DataFrame({"subject_id": ["S1"] * len(rows), "day": [float(d) for d, _, _ in rows],
                         "param": [p for _, p, _ in rows], "value": [float(v) for _, _, v in rows],
                         "src_file": ["observations.csv"] * len(rows), "src_row": list(range(1, len(rows) + 1))})


def test_b1_weight_outside_the_screening_window_is_not_used():
    from cartlab.protocol.dose_inputs import subject_body_size

    sub = {"subject_id": "S1", "weight_kg": None, "height_cm": None, "src_file": "subjects.csv", "src_row": 1}
    both = _size_obs([(-300, "WEIGHT", 95), (-6, "WEIGHT", 78)])
    assert subject_body_size(both, sub, -5.0, -42.0)["weight_kg"] == 78.0
    old = _size_obs([(-300, "WEIGHT", 95)])
    r = subject_body_size(old, sub, -5.0, -42.0)
    assert r["weight_kg"] is None
    assert "day -300 (observations.csv:1), is outside the screening window (days -42 to -5)" in r["weight_source"]
    assert subject_body_size(old, sub, -5.0)["weight_kg"] == 95.0  # no window given: any earlier day


# B4 -- subjects.csv without weight_kg, a WEIGHT 80 kg observation on day -6 and a CAR-T dose of
# 1e6 cells/kg: by hand the twin's CAR-T dose is 1e6 x 80 = 8e7 cells (it refused before: "no weight_kg"),
# and Stein's cells dose 8e7 cells / 80 kg = 1e6 cells/kg.

def _b4(tmp_path, unit="10^6 cells/kg", dose="1"):
    (tmp_path / "observations.csv").write_text(OBS_HEAD + "\n" + _row("S1", -6, "WEIGHT", "80", "kg") + "\n"
                                               + _row("S1", 7, "CARCOPY", "5000", "copies/ug") + "\n")
    (tmp_path / "subjects.csv").write_text("subject_id,disease\nS1,AML\n")
    (tmp_path / "doses.csv").write_text(f"subject_id,day,datetime,agent,dose,unit\nS1,0,,CAR-T,{dose},{unit}\n")
    return read_study(tmp_path)


def test_b4_twin_takes_the_weight_from_observations(tmp_path):
    from cartlab.twin.model import Baseline, Events

    s = _b4(tmp_path, unit="cells/kg", dose="1e6")
    ev = Events.from_study(s, ["S1"])
    assert abs(float(ev.car_t_cells[0][0]) - 8e7) < 1
    assert float(Baseline.from_study(s, ["S1"]).weight_kg[0]) == 80.0


def test_b4_stein_takes_the_weight_from_observations(tmp_path):
    from cartlab.kinetics.stein.data import _from_study

    s = _b4(tmp_path, unit="cells", dose="8e7")
    _obs, doses, _cov = _from_study(s, "CARCOPY")
    assert abs(doses["dose"][0] - 1e6) < 1e-3


# C2 -- the explain ICANS header for days open only because events.csv is not given: the review's
# wording, without the double negation "events.csv (not given) not recorded".

def test_c2_icans_range_names_the_file_not_given():
    from cartlab.explain import _icans_range

    daily = pl.DataFrame({"day": [1.0, 2.0], "grade_max": [4, 4],
                          "missing_inputs": [["events.csv (not given)"], ["events.csv (not given)"]]})
    assert _icans_range(daily, 4) == (" (up to 4 on days 1, 2: events.csv not given: seizures, motor weakness, "
                                      "cerebral edema unknown)")
    daily = daily.with_columns(pl.Series("missing_inputs", [["LOC"], ["LOC"]]))
    assert _icans_range(daily, 4) == " (up to 4: LOC not recorded on days 1, 2)"  # unchanged (review 37 B1)
