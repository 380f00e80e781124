"""Review 41 (protocol dosing and the Stein 2019 model): findings 1-9.

Every expected value is worked out by hand from the quoted standard (the comment says how) or by an
independent computation (scipy's curve_fit), never copied from cartlab's output."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import optimize, stats

from cartlab.kinetics.stein import (
    DESIGN_180D,
    PARAMS,
    STEIN_2019,
    SteinModel,
    stein_curve,
    stein_log_curve,
    stein_peak,
)
from cartlab.protocol import DoseOptions, Patient, body_size, dose_plan
from cartlab.protocol import formulas as fx
from cartlab.protocol.dose_inputs import parse_quantity
from cartlab.protocol.schema import load_protocol
from cartlab.protocol.sheet import sheet_context


# -- F1: 5 ft is 60 in (Devine's floor), not below it ------------------------------------------------
def test_five_feet_is_sixty_inches_for_devine():
    # pint: 5 ft = 152.39999999999998 cm; 60 in = 152.4 cm exactly. The same height.
    h5, _ = parse_quantity("5 ft", "cm", "height")
    h60, _ = parse_quantity("60 in", "cm", "height")
    assert h5 == h60 == 152.4
    # Devine (clincalc, formulas.yaml): 45.5 kg (F) + 2.3 kg per inch over 5 feet: at 60 in, 45.5 kg
    assert fx.ideal_body_weight(152.39999999999998, "F") == pytest.approx(45.5, abs=1e-9)


@pytest.mark.parametrize("height", ["5 ft", "60 in"])
def test_five_feet_gives_the_reduced_fludarabine_dose(height):
    h, _ = parse_quantity(height, "cm", "height")
    p = load_protocol("axicabtagene_lbcl")
    pt = Patient(weight_kg=90, height_cm=h, age_years=60, sex="F", creatinine=1.0, creatinine_unit="mg/dL")
    o = DoseOptions(crcl_weight="ideal")
    plan = dose_plan(p, pt, o, size=body_size(pt, p, o))
    flu = plan.filter(pl.col("agent") == "fludarabine").row(0, named=True)
    # hand: IBW(F, 60 in) = 45.5 kg < 90 kg actual; CrCl = (140 - 60) x 45.5 / (72 x 1.0) x 0.85 = 42.97 mL/min,
    # in the 30-70 band of fludarabine_label (x 0.8). BSA Mosteller sqrt(152.4 x 90 / 3600) = 1.9519 -> 1.95 m2;
    # 30 mg/m2 x 1.95 x 0.8 = 46.8 mg (not 58.5 mg, the full dose the actual weight gave)
    assert flu["renal_value"] == pytest.approx(80 * 45.5 / 72 * 0.85, rel=1e-9)
    assert flu["factor"] == 0.8
    assert flu["dose"] == pytest.approx(46.8)


# -- F9: an unusable unit names the accepted forms ------------------------------------------------------
def test_unusable_height_unit_names_the_accepted_forms():
    with pytest.raises(ValueError) as e:
        parse_quantity("5'7\"", "cm", "height")
    msg = str(e.value)
    assert "()" not in msg  # pint's exception text is empty: no empty parentheses
    assert "5 ft 7 in" in msg and "170 cm" in msg


# -- F4: the sheet prints the renal value with the digits that show its band ----------------------------
def test_sheet_prints_crcl_70_03_not_70_0():
    p = load_protocol("axicabtagene_lbcl")
    # hand: (140 - 60) x 63.027 / (72 x 1.0) = 70.03 mL/min, above 70: full dose (fludarabine_label);
    # "70.0" would read as inside the 30-70 band (x 0.8)
    pt = Patient(weight_kg=63.027, height_cm=170, age_years=60, sex="M", creatinine=1.0, creatinine_unit="mg/dL")
    o = DoseOptions()
    size = body_size(pt, p, o)
    plan = dose_plan(p, pt, o, size=size)
    ctx = sheet_context(p, plan, size, o, pt)
    assert "70.0 " not in ctx["options"]["Renal measure"] and "70.03 mL/min" in ctx["options"]["Renal measure"]


def test_sheet_prints_egfr_70_03_not_70_0():
    p = load_protocol("axicabtagene_lbcl")
    # CKD-EPI 2021, M 60 y, Scr 1.1886 mg/dL: 142 x (1.1886/0.9)^-1.200 x 0.9938^60 = 70.03 (hand:
    # (1.32067)^-1.2 = 0.71622; 0.9938^60 = 0.68897; 142 x 0.71622 x 0.68897 = 70.07 +- rounding of the powers;
    # the bound that matters: above 70, full dose)
    pt = Patient(weight_kg=70, height_cm=170, age_years=60, sex="M", creatinine=1.1886, creatinine_unit="mg/dL")
    o = DoseOptions(renal_function="egfr_ckd_epi_2021")
    size = body_size(pt, p, o)
    assert 70.0 < size["egfr_ml_min_173"] < 70.05
    plan = dose_plan(p, pt, o, size=size)
    ctx = sheet_context(p, plan, size, o, pt)
    egfr = next(d for d in ctx["derived"] if d["name"].startswith("eGFR (CKD-EPI"))
    assert egfr["value"] == "70.03 mL/min/1.73 m2"
    assert "70.03 mL/min/1.73 m2" in ctx["options"]["Renal measure"]


# -- F2: an unfitted subject has no model Tmax ----------------------------------------------------------
def _rich_and_unfitted() -> pl.DataFrame:
    t = np.array([1, 4, 7, 9, 11, 14, 21, 28, 42, 56, 90.0])
    c = stein_curve(t, STEIN_2019) * np.exp(np.random.default_rng(1).normal(0, 0.3, t.size))
    rows = [("RICH", ti, ci, 50.0, False) for ti, ci in zip(t, c)]
    rows += [("ALLBLQ", ti, None, 50.0, True) for ti in (1.0, 7.0, 14.0, 28.0)]
    rows += [("SPARSE", 14.0, 20000.0, 50.0, False), ("SPARSE", 28.0, 3000.0, 50.0, False)]
    return pl.DataFrame(rows, schema=["subject_id", "time", "conc", "lloq", "blq"], orient="row")


def test_stein_peak_of_no_curve_is_nan():
    nan = np.array([np.nan])
    p = {k: nan for k in PARAMS} | {"tlag": 0.0, "ftoci": 1.0, "fster": 1.0}
    cmax, tmax = stein_peak(p)
    assert np.isnan(cmax).all() and np.isnan(tmax).all()  # not day 0


def test_unfitted_subjects_have_null_tmax_and_peak_flag():
    ind = SteinModel().fit(_rich_and_unfitted()).individual_
    for sid in ("ALLBLQ", "SPARSE"):  # no quantifiable sample; 2 samples for 7 free parameters
        r = ind.filter(pl.col("subject_id") == sid).row(0, named=True)
        assert r["fitted"] is False
        assert r["stein_tmax"] is None and r["peak_extrapolated"] is None


# -- F3: blq='half' imputes a value but the sample stays BLQ --------------------------------------------
@pytest.mark.parametrize("prior", [None, STEIN_2019])
def test_half_all_blq_subject_is_not_fitted(prior):
    t = [1.0, 4, 7, 9, 11, 14, 21, 28, 42, 56]
    df = pl.DataFrame({"subject_id": "NONEXP", "time": t, "conc": [None] * len(t), "lloq": 50.0, "blq": True})
    r = SteinModel(blq="half", prior=prior).fit(df).individual_.row(0, named=True)
    # 10 samples, all reported BLQ: n_blq 10 (as with m3/drop), no quantifiable sample -> not fitted
    assert r["n_obs"] == 10 and r["n_blq"] == 10
    assert r["fitted"] is False and r["stein_auc_0_28"] is None
    assert r["message"].startswith("not fitted: no quantifiable sample")


def test_half_counts_blq_and_gives_no_residual_for_them():
    df = _rich_and_unfitted()
    m = SteinModel(blq="half").fit(df)
    # BLQ by the input: flagged, or a value below its LLOQ (blq_below_lloq, the spec's rule), counted on the frame
    blq = df.with_columns((pl.col("blq") | (pl.col("conc") < pl.col("lloq")).fill_null(False)).alias("b"))
    want = dict(blq.group_by("subject_id").agg(pl.col("b").sum()).iter_rows())
    assert want["ALLBLQ"] == 4 and sum(want.values()) >= 4
    assert dict(m.individual_.select("subject_id", "n_blq").iter_rows()) == want
    blq_rows = m.observations_.filter(pl.col("blq"))
    n = sum(want.values())
    assert blq_rows.height == n and blq_rows["iwres"].null_count() == n


# -- F5: several infusions under dose_handling='first' are said --------------------------------------------
def _reinfused() -> tuple[pl.DataFrame, pl.DataFrame]:
    t = np.array([1, 4, 7, 9, 11, 14, 21, 28, 42, 56, 61, 64, 67, 70, 74, 81, 88, 102, 116.0])
    c = stein_curve(t, STEIN_2019) + stein_curve(t - 60, STEIN_2019)
    one = np.array([1, 4, 7, 9, 11, 14, 21, 28, 42, 56.0])
    df = pl.concat([pl.DataFrame({"subject_id": "R1", "time": t, "conc": c, "lloq": 50.0}),
                    pl.DataFrame({"subject_id": "S1", "time": one, "conc": stein_curve(one, STEIN_2019),
                                  "lloq": 50.0})])
    doses = pl.DataFrame({"subject_id": ["R1", "R1", "S1"], "time": [0.0, 60.0, 0.0], "dose": [1.0, 1.0, 1.0]})
    return df, doses


def test_first_dose_handling_notes_a_reinfusion():
    df, doses = _reinfused()
    ind = SteinModel(prior=STEIN_2019).fit(df, doses=doses).individual_
    notes = dict(ind.select("subject_id", "dosing_note").iter_rows())
    # written from the doses table: R1 infused on days 0 and 60; S1 once (no note)
    assert notes["R1"] == ("2 infusions (days 0, 60 from the first); dose_handling='first' counts time from the "
                           "first and treats them as one dose")
    assert notes["S1"] is None


def test_stein_command_warns_about_reinfused_subjects(tmp_path):
    from cartlab.cli.kinetics_io import stein_command

    df, doses = _reinfused()
    conc, dpath = tmp_path / "conc.csv", tmp_path / "doses.csv"
    df.write_csv(conc)
    doses.write_csv(dpath)
    meta = stein_command(conc, tmp_path / "out", subject="subject_id", time="time", conc="conc", lloq="lloq",
                         doses=dpath, prior="stein2019")
    assert meta["multiple_infusions"] == ["R1"]
    assert any("more than one CAR-T infusion" in w and "R1" in w and "S1" not in w for w in meta["warnings"])


# -- F6: residual degrees of freedom in the per-subject SEs ------------------------------------------------
def test_se_df_correction_matches_curve_fit():
    """Independent check: with beta fixed, the free parameters are 5 and sigma is estimated, so the
    residual df are n - 5 = 9 (n = 14). scipy's curve_fit(absolute_sigma=False) on the same log-scale
    model gives pcov = RSS/(n - p) (J'J)^-1: the SEs of the log parameters must agree (Gauss-Newton vs the
    exact Hessian: within 3%, 1% here); 'none' must be smaller by sqrt((n - p)/n) = sqrt(9/14) = 0.80."""
    t = np.array(DESIGN_180D[1:], dtype=float)
    assert t.size == 14
    ly = np.log(stein_curve(t, STEIN_2019)) + np.random.default_rng(1).normal(0, 0.1, t.size)
    df = pl.DataFrame({"subject_id": "S", "time": t, "conc": np.exp(ly), "lloq": 1e-3})
    fixed = {"beta": 0.0032}
    res = SteinModel(fixed=fixed).fit(df)
    assert res.individual_["converged"][0]
    s = {r["parameter"]: r for r in res.summary.iter_rows(named=True)}
    free = [p for p in PARAMS if p not in fixed]

    def f(tt, *lp):
        p = {k: math.exp(v) for k, v in zip(free, lp)} | fixed | {"tlag": 0.0, "ftoci": 1.0, "fster": 1.0}
        return stein_log_curve(tt, p)

    popt, pcov = optimize.curve_fit(f, t, ly, p0=[math.log(s[p]["estimate"]) for p in free], absolute_sigma=False)
    se_cf = np.sqrt(np.diag(pcov))
    for p, se in zip(free, se_cf):
        assert s[p]["rse_pct"] / 100 == pytest.approx(se, rel=0.03), p
    # 95% CI from t(9): 0.975 quantile 2.262 (tables), on the log scale
    tq = stats.t.ppf(0.975, 9)
    assert tq == pytest.approx(2.262, abs=1e-3)
    r = s["cmax"]
    assert r["ci_upper"] == pytest.approx(r["estimate"] * math.exp(tq * r["rse_pct"] / 100), rel=1e-9)
    old = {r["parameter"]: r for r in SteinModel(fixed=fixed, se_df_correction="none").fit(df).summary
           .iter_rows(named=True)}
    for p in free:
        assert old[p]["rse_pct"] == pytest.approx(s[p]["rse_pct"] * math.sqrt(9 / 14), rel=1e-6), p
    assert old["cmax"]["ci_upper"] == pytest.approx(
        old["cmax"]["estimate"] * math.exp(1.96 * old["cmax"]["rse_pct"] / 100), rel=1e-9)


@pytest.fixture(scope="module")
def rich_map():
    """The MAP fit (prior STEIN_2019, defaults otherwise) of subject RICH, shared read-only by the two tests
    that fitted it each (session 42)."""
    df = _rich_and_unfitted().filter(pl.col("subject_id") == "RICH")
    return df, SteinModel(prior=STEIN_2019).fit(df)


def test_se_df_correction_not_under_a_prior(rich_map):
    # MAP with sigma held at the prior's: the residual scale is not estimated, no correction (same SEs)
    df, fit = rich_map
    a = fit.summary
    b = SteinModel(prior=STEIN_2019, se_df_correction="none").fit(df).summary
    assert a["se"].to_list() == b["se"].to_list()


def test_se_df_correction_option_is_checked():
    with pytest.raises(ValueError, match="se_df_correction"):
        SteinModel(se_df_correction="reml")


# -- F7: a prior's comedication multipliers are used unless given -------------------------------------------
def test_prior_ftoci_used_when_not_given(rich_map):
    df, m = rich_map
    # STEIN_2019 (Table 1): Ftoci 1.2, Fster 1.0
    assert m.params_["ftoci"][0] == 1.2 and m.params_["fster"][0] == 1.0
    assert "ftoci 1.2 (the prior's)" in m.comedication_rule_
    given = SteinModel(prior=STEIN_2019, ftoci=1.0).fit(df)
    assert given.params_["ftoci"][0] == 1.0 and "ftoci 1 (given)" in given.comedication_rule_
    none = SteinModel().fit(df)
    assert none.params_["ftoci"][0] == 1.0 and "ftoci 1 (default, no effect)" in none.comedication_rule_


# -- F8: foldx is a fold expansion (> 1) ----------------------------------------------------------------------
@pytest.mark.parametrize("v", [0.5, 1.0])
def test_fix_foldx_at_most_one_is_refused(v):
    from cartlab.cli.kinetics_io import parse_assignments

    with pytest.raises(ValueError, match="fold expansion from R0 to Cmax; must be > 1"):
        parse_assignments([f"foldx={v}"], "--fix", float, extra=("sigma",))
    with pytest.raises(ValueError, match="must be > 1"):
        SteinModel(fixed={"foldx": v})
    assert parse_assignments(["foldx=1.5"], "--fix", float) == [("foldx", 1.5)]
