"""Review 39 of the dashboard (A1, B1-B6, C1): server-side tests of the page's data and text.

Expected values are derived by hand from the standard's text (docs/twin.md "Forecast quality",
study-format.md / the reader's ABSENT_FILE_MEANS, the ICAHT daily table's ``source``) or from the seed
case's own CSV files (read here with the csv module, independently of cartlab), never from cartlab's
output.
"""

from __future__ import annotations

import csv
import math
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest

from cartlab.app import cohort as C
from cartlab.app.data import build_view
from cartlab.app.server import patient_headline_parts
from cartlab.datasets import seed_case_path
from cartlab.io import read_study
from seed_helpers import hand_count_not_measured

SEED = "CD7-AML-001"


def _copy_seed(tmp_path: Path) -> Path:
    dst = tmp_path / "seed"
    shutil.copytree(seed_case_path(), dst)
    return dst


# -- A1: the Twin tab withholds what `cartlab twin forecast` withholds ---------------------------------
def _twin_model():
    """A fitted twin's state as the withholding rule reads it: three CARCOPY rows each 4 standardised
    residuals below the twin's course (iwres -4), TEMP well described (iwres 0.5)."""
    obs = pl.DataFrame({"param": ["CARCOPY"] * 3 + ["TEMP"] * 2, "day": [3.0, 5.0, 7.0, 1.0, 2.0],
                        "value": [1.0e4, 1.0e5, 3.92e5, 38.5, 39.0], "iwres": [-4.0, -4.0, -4.0, 0.5, 0.5],
                        "source": ["observed"] * 5})
    return SimpleNamespace(observations_=obs, intervals_reliable_=True, ess_=100.0, converged_=True, message_="ok",
                           target_="CD7", baseline_defaults_used_={}, n_unique_draws_=100, dashboard_notes_=[])


def _forecast_rows() -> pl.DataFrame:
    """A forecast table (twin.forecast.forecast_table's columns): a CAR peak whose 90% PI ends at 224,360."""
    rows = []
    for q, unit in (("car_cmax", "copies/ug gDNA"), ("car_tmax", "day"), ("car_day28", "copies/ug gDNA")):
        rows.append({"quantity": q, "unit": unit, "median": 224000.0, "pi50_lo": 223500.0, "pi50_hi": 224200.0,
                     "pi90_lo": 223000.0, "pi90_hi": 224360.0, "probability": None, "probability_shown": None,
                     "n_draws": 43, "source": "simulated"})
    for q in ("crs_ge3", "response_d28"):
        rows.append({"quantity": q, "unit": "probability", "median": None, "pi50_lo": None, "pi50_hi": None,
                     "pi90_lo": None, "pi90_hi": None, "probability": 0.5, "probability_shown": "0.500",
                     "n_draws": 43, "source": "simulated"})
    return pl.DataFrame(rows, schema={"quantity": pl.String, "unit": pl.String, "median": pl.Float64,
                                      "pi50_lo": pl.Float64, "pi50_hi": pl.Float64, "pi90_lo": pl.Float64,
                                      "pi90_hi": pl.Float64, "probability": pl.Float64,
                                      "probability_shown": pl.String, "n_draws": pl.Int64, "source": pl.String})


def test_twin_compare_withholds_car_forecast(monkeypatch):
    import cartlab.app.twin as T

    model = _twin_model()
    monkeypatch.setattr(T.TwinCache, "fitted", lambda self, *a, **k: model)
    monkeypatch.setattr(T, "simulate_regimen", lambda m, day, reg: (_forecast_rows(), ([0.0], [1.0], [1.0], [1.0])))
    study = SimpleNamespace(study_id="S")
    table, _curves, notes = T.TwinCache().compare(study, "X", 7.0, ("clinic", "early_toci"))
    # docs/twin.md: RMS standardised residual 4 > 3 (MISFIT_RMS) and mean residual -4 beyond -3
    # (CAR_BIAS_IWRES): the three CAR quantities are withheld; TEMP (RMS 0.5) is described: crs_ge3 shown;
    # response_d28 rests on BMBLAST/PBBLAST, which have no residual: shown
    assert set(table.columns) >= {"value_shown", "interval_shown", "withheld_reason"}
    shown = {(r["regimen"], r["quantity"]): r["value_shown"] for r in table.iter_rows(named=True)}
    for reg in ("clinic", "early_toci"):
        assert [shown[(reg, q)] for q in ("car_cmax", "car_tmax", "car_day28", "crs_ge3", "response_d28")] == [
            False, False, False, True, True]
    why = table.filter(pl.col("quantity") == "car_cmax")["withheld_reason"][0]
    # fold = exp(|bias| x CARCOPY SD 0.56) = exp(2.24) = 9.39, "above": the twin lies above the data
    assert "CARCOPY" in why and f"{math.exp(4 * 0.56):.3g}-fold above" in why
    # 392,000 measured on day 7 > the 90% PI's upper end 224,360: the CLI's note, said once per regimen
    assert any("lies below a value already measured (3.92e+05 on day 7)" in n for n in notes)
    page = T.display_table(table)
    car = page.filter((pl.col("quantity") == "car_cmax") & (pl.col("regimen") == "clinic")).row(0, named=True)
    assert car["median"] is None and car["pi90_hi"] is None
    assert car["shown"].startswith("not shown (withheld: the twin does not describe CARCOPY")
    crs = page.filter((pl.col("quantity") == "crs_ge3") & (pl.col("regimen") == "clinic")).row(0, named=True)
    assert crs["probability_shown"] == "0.500" and crs["shown"] == "yes"
    assert T.withheld_regimens(table) == {"clinic", "early_toci"}


def test_twin_csv_keeps_numbers_with_reasons():
    from cartlab.app.server import csv_text
    from cartlab.app.twin import withheld_table

    table, _notes = withheld_table(_twin_model(), _forecast_rows())
    rows = list(csv.DictReader(csv_text(table).splitlines()))
    car = next(r for r in rows if r["quantity"] == "car_cmax")
    # as twin_forecast.csv (docs/twin.md): the number stays, value_shown false, the reason beside it
    assert car["median"] == "224000.0" and car["value_shown"] == "false" and car["withheld_reason"]


# -- B4: the Twin tab's quantities defined; response_d28 is the twin's AML set; N = effective draws -----
def test_twin_quantities_defined():
    from cartlab.app.twin import display_table, response_model_note

    page = display_table(_forecast_rows())
    assert "n_draws" not in page.columns and "N (effective draws)" in page.columns
    label = dict(zip(page["quantity"], page["quantity_label"]))
    assert "ELN 2022 AML CR/CRh/CRi/MLFS on day 28" in label["response_d28"]
    assert "CRS grade ≥ 3" in label["crs_ge3"]
    assert response_model_note("AML") is None
    note = response_model_note("T-LBL")
    assert "T-LBL" in note and "AML" in note and "not the response criteria of the patient page" in note


def test_page_defines_twin_columns_and_lang():
    from cartlab.app.ui import page

    html = str(page(["S"]))
    assert re.search(r"<html[^>]*\blang=\"en\"", html)  # WCAG 2.1 SC 3.1.1 (C1)
    assert "response_d28 = P(ELN 2022 AML CR/CRh/CRi/MLFS on day 28)" in html
    assert "N (effective draws) = the SIR effective sample size" in html


# -- C1: the refusal names no CLI option the page lacks; serve's bad path -------------------------------
def test_twin_refusal_wording():
    from cartlab.app.server import twin_error_text

    msg = ("SYN-0001 is a CD19 subject (subjects.target = CD19); the twin models CD7 CAR-T therapy (CD7 antigen pool, "
           "CD7+ blast and T/NK kill), so its fit would not describe this subject. Use --allow-other-target "
           "(allow_other_target=True) to fit the CD7 model anyway")
    text = twin_error_text(msg)
    assert "allow-other-target" not in text and "allow_other_target" not in text
    assert text.startswith("the twin does not forecast this subject: SYN-0001 is a CD19 subject")
    assert "failed" not in text


def test_serve_bad_path_message(tmp_path):
    from typer.testing import CliRunner

    from cartlab.cli import app

    res = CliRunner().invoke(app, ["serve", str(tmp_path / "nope" / "x"), "--port", "8901"])
    assert res.exit_code == 2
    out = res.output + (res.stderr if hasattr(res, "stderr") and res.stderr_bytes is not None else "")
    assert "The dashboard was not started." in out and "Nothing was written" not in out


# -- B2: events.csv / interventions.csv not given ------------------------------------------------------
@pytest.fixture(scope="module")
def no_optional_view(tmp_path_factory):
    d = _copy_seed(tmp_path_factory.mktemp("noopt"))
    (d / "events.csv").unlink()
    (d / "interventions.csv").unlink()
    return build_view(read_study(d))


def test_absent_files_named(no_optional_view):
    from cartlab.app.absent import absent_inputs, cohort_banner, patient_notes
    from cartlab.io.course_checks import ABSENT_FILE_MEANS

    v = no_optional_view
    # the reader's words for the two files removed (study-format.md: both optional; missing is not negative)
    assert absent_inputs(v.study) == [("events.csv", f"events.csv not given: {ABSENT_FILE_MEANS['events']}"),
                                      ("interventions.csv",
                                       f"interventions.csv not given: {ABSENT_FILE_MEANS['interventions']}")]
    assert "events.csv not given" in cohort_banner(v.study) and "interventions.csv not given" in cohort_banner(v.study)
    assert len(patient_notes(v.study)) == 2
    _b, _h, notes = patient_headline_parts(v, v.patient(SEED))
    relapse = next(n for n in notes if n.startswith("Relapse:"))
    assert "events.csv not given" in relapse


def test_files_given_no_note():
    from cartlab.app.absent import absent_inputs, cohort_banner

    s = read_study(seed_case_path())  # every file given
    assert absent_inputs(s) == [] and cohort_banner(s) is None


# -- B1: a subject without a CAR-T dose is named on the rate and survival cards --------------------------
def test_not_infused_named_on_cards(tmp_path):
    from cartlab.datasets import synthetic_cohort

    d = tmp_path / "syn"
    synthetic_cohort(8, seed=5, out_dir=d)
    with (d / "subjects.csv").open(newline="", encoding="utf-8") as fh:
        aml = [r["subject_id"] for r in csv.DictReader(fh) if r.get("disease") == "AML"]
    sid = aml[0]  # an AML subject: it has response criteria (ELN 2022)
    with (d / "doses.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    # study-format.md: a CAR-T infusion is a doses.csv row with agent CAR-T; without one the subject is not infused
    keep = [r for r in rows if not (r["subject_id"] == sid and (r.get("agent") or "").strip().upper() == "CAR-T")]
    assert len(keep) < len(rows)
    with (d / "doses.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(keep)
    # and no CAR-T measured: a CARCOPY/CARCELL after day 0 counts as an infusion not recorded (s39 infusion_evidence)
    with (d / "observations.csv").open(newline="", encoding="utf-8") as fh:
        obs = list(csv.DictReader(fh))
    obs_keep = [r for r in obs if not (r["subject_id"] == sid and r["param"] in ("CARCOPY", "CARCELL"))]
    with (d / "observations.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(obs[0]))
        w.writeheader()
        w.writerows(obs_keep)
    v = build_view(read_study(d))
    caps = {cv.key: cv.caption or "" for cv in C.cohort_views(v, None)}
    rate, surv = caps["response_rates"].lower(), caps["survival"].lower()
    assert "not infused" in rate and sid.lower() in rate
    # by hand: 8 subjects - 1 LBCL (no response criteria yet) - 1 not infused = 6 in the denominator
    n_lbcl = sum(1 for r in csv.DictReader((d / "subjects.csv").open(encoding="utf-8")) if r["disease"] == "LBCL")
    assert f"n = {8 - n_lbcl - 1}" in rate
    assert "not infused" in surv and sid.lower() in surv


# -- B5: an early ICAHT grade on interpolated days only is marked ----------------------------------------
def test_interpolated_only_marked():
    from cartlab.app.absent import INTERPOLATED_MARK, interpolated_only
    from cartlab.app.server import interpolated_mark

    days = list(range(-1, 32))
    daily = pl.DataFrame({
        "subject_id": ["A"] * len(days) + ["B"] * len(days), "day": days * 2,
        # A: no ANC measured on days 0-30 (only day -1 and day 31); B: one measured on day 5
        "source": [("observed" if d in (-1, 31) else "interpolated") for d in days]
        + [("observed" if d in (-1, 5, 31) else "interpolated") for d in days]})
    assert interpolated_only(daily) == {"A"}
    assert INTERPOLATED_MARK == "interpolated: no ANC measured in days 0-30"
    view = SimpleNamespace(table=lambda name: daily if name == "icaht_daily" else None)
    assert interpolated_mark("1", view, "A", {"icaht_early_grade": 1}) == f"1 ({INTERPOLATED_MARK})"
    assert interpolated_mark("2", view, "B", {"icaht_early_grade": 2}) == "2"
    cohort = pl.DataFrame({"subject_id": ["A", "B"], "icaht_early_grade": [1, 2], "icaht_early_grade_max": [1, 2]})
    shown = C.cohort_display(cohort, {"A"})
    assert shown["icaht_early"].to_list() == [f"1 ({INTERPOLATED_MARK})", "2"]


# -- B6: one reconstructed-row count on the Cohort and Patient tabs --------------------------------------
def test_seed_cohort_count_as_banner():
    expected_nm, total = hand_count_not_measured()
    v = build_view(read_study(seed_case_path()))
    banner, _h, _n = patient_headline_parts(v, v.patient(SEED))
    assert f"{expected_nm:,} of {total:,}" in banner
    caps = [cv.caption for cv in C.cohort_views(v, None) if cv.caption and "Data:" in cv.caption]
    assert caps and all(f"Data: {expected_nm:,} of {total:,} rows" in c for c in caps)
    assert all("counting 1 publication row with reconstructed columns" in c for c in caps)


# -- B3: a long subject id is cut on the figure's axis, whole in the hover --------------------------------
def test_long_id_ticks_cut():
    import plotly.graph_objects as go

    long_id = "L" * 20 + "-" + "X" * 280
    fig = go.Figure(go.Bar(y=["SYN-0001", long_id], x=[10, 20], orientation="h",
                           hovertemplate="%{y}: day %{x}"))
    fig.update_layout(height=400)
    C.shorten_id_ticks(fig)
    ax = fig.layout.yaxis
    assert list(ax.tickvals) == ["SYN-0001", long_id]  # the hover (%{y}) reads the whole id
    assert list(ax.ticktext) == ["SYN-0001", "LLLLLLLLLLLLLLLLLLLL-XXX…"]  # 24 characters + "…"
    assert fig.layout.height == 400
    short = go.Figure(go.Bar(y=["SYN-0001"], x=[1], orientation="h"))
    C.shorten_id_ticks(short)
    assert short.layout.yaxis.ticktext is None
