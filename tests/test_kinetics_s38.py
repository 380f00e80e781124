"""Review s38 (cellular kinetics) fixes: date-time float noise (A3), blood specimen only (A1), one curve
per analyte (A2), AUC % extrapolated (B1), BLQ words in `cartlab nca` (B3), CAR-T agent names (B5),
quasi-complete separation (B4), all-BLQ profiles that end early (B2), ADaM time/parameter units (C1).

Every expected value is worked by hand from the standard's text in the comments (the probes of
/work/notes/review38_kin/probe), never copied from cartlab's output."""

from __future__ import annotations

import math
import warnings

import numpy as np
import polars as pl
import pytest

from cartlab.kinetics.agents import car_t_agent_expr, is_car_t_agent
from cartlab.kinetics.car import CarKineticsOptions, derive_adpp, derive_car_kinetics
from cartlab.model import Study, conform

US_PER_DAY = 86_400_000_000
LN2, LN5 = math.log(2), math.log(5)


def study(rows: dict[str, list[dict]], doses: dict[str, list[tuple[float, str]]] | None = None) -> Study:
    """CARCOPY samples ``rows[subject] = [{"day": 7, "value": 1000, "specimen": "BM", ...}, ...]`` (lloq 20
    copies/ug) and infusions ``doses[subject] = [(day, agent), ...]`` (default: CAR-T on day 0)."""
    obs, n = [], 0
    for sid, samples in rows.items():
        for r0 in samples:
            n += 1
            r = {"subject_id": sid, "param": "CARCOPY", "unit": "copies/ug", "lloq": 20.0, "value": None,
                 "value_text": None, "specimen": None, "analyte": None, "src_file": "observations.csv",
                 "src_row": n + 1, **r0}
            r["day"] = float(r["day"])
            if isinstance(r["value"], str):
                r.update(value_text=r["value"], censor="<", censor_limit=float(r["value"][1:]), value=None)
            elif r["value"] is not None:
                r["value"] = float(r["value"])
            obs.append(r)
    doses = doses if doses is not None else {sid: [(0.0, "CAR-T")] for sid in rows}
    d = [{"subject_id": sid, "day": float(day), "agent": agent, "dose": 1e6, "unit": "cells/kg",
          "src_file": "doses.csv", "src_row": i + 2}
         for i, (sid, day, agent) in enumerate((s, x, a) for s, lst in doses.items() for x, a in lst)]
    return Study(study_id="t", subjects=conform(pl.DataFrame({"subject_id": list(rows)}), "subjects"),
                 observations=conform(pl.DataFrame(obs, infer_schema_length=None), "observations"),
                 doses=conform(pl.DataFrame(d, schema={"subject_id": pl.String, "day": pl.Float64, "agent": pl.String,
                                                       "dose": pl.Float64, "unit": pl.String, "src_file": pl.String,
                                                       "src_row": pl.Int64}), "doses"))


def kin(s: Study, **opts) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return derive_car_kinetics(s, CarKineticsOptions(**opts)).row(0, named=True)


def clock_day(days: int, seconds: int) -> float:
    """The study day of a date-time ``days`` after day 0's midnight at ``seconds`` past midnight, divided
    as the reader does (io.clock: microseconds as Float64 / microseconds per day)."""
    return (pl.Series([(days * 86400 + seconds) * 1_000_000]).cast(pl.Float64) / US_PER_DAY)[0]


# ---- A3: a sample exactly N days after a timed infusion is day N ---------------------------------

def test_sample_exactly_28_days_after_an_0830_infusion_is_day_28_review_probe_s6():
    at = 8 * 3600 + 30 * 60  # infusion at 08:30 on day 0; samples at 08:30 on days 1, 7, 14, 28
    assert clock_day(28, at) - clock_day(0, at) < 28  # the float noise the old code kept (27.999999999999996)
    s = study({"A": [{"day": clock_day(d, at), "value": v} for d, v in ((1, 1000), (7, 10000), (14, 5000),
                                                                        (28, 1000))]},
              {"A": [(clock_day(0, at), "CAR-T")]})
    k = kin(s)
    # lin-up/log-down from the 0 at the infusion: 1*1000/2 + 6*(1000+10000)/2 (rises: linear)
    # + 7*(10000-5000)/ln2 + 14*(5000-1000)/ln5 (falls: log) = 500 + 33000 + 50494.33 + 34794.76
    hand = 500 + 33000 + 7 * 5000 / LN2 + 14 * 4000 / LN5
    assert k["auc_window"] == pytest.approx(hand, rel=1e-9)
    assert (k["tmax"], k["tlast"]) == (7.0, 28.0)


def test_auc_0_14_with_the_last_sample_exactly_on_day_14_after_a_1400_infusion_review_probe_s5():
    at = 14 * 3600
    assert clock_day(14, at) - clock_day(0, at) < 14  # 13.999999999999998 before the fix
    s = study({"A": [{"day": clock_day(d, at), "value": v} for d, v in ((1, 1000), (7, 10000), (14, 5000))]},
              {"A": [(clock_day(0, at), "CAR-T")]})
    # 500 + 33000 + 7*5000/ln2 = 83994.33 (no extrapolation: day 14 is the last sample)
    assert kin(s, auc_window=(0.0, 14.0))["auc_window"] == pytest.approx(500 + 33000 + 7 * 5000 / LN2, rel=1e-9)


# ---- A1: blood (PB or no specimen) only -----------------------------------------------------------

PB_PLUS_BM = [{"day": 7, "value": 1000, "specimen": "PB"}, {"day": 14, "value": 500, "specimen": "PB"},
              {"day": 28, "value": 100, "specimen": None}, {"day": 21, "value": 50000, "specimen": "BM"}]
# PB alone: 7*1000/2 + 7*500/ln2 + 14*400/ln5 = 3500 + 5049.43 + 3479.48 = 12028.91
PB_AUC = 3500 + 7 * 500 / LN2 + 14 * 400 / LN5


def test_bone_marrow_sample_is_left_out_of_the_blood_profile_review_probe_r1():
    with pytest.warns(Warning, match=r"1 BM\) are left out of the blood kinetics"):
        k = derive_car_kinetics(study({"B": PB_PLUS_BM}), CarKineticsOptions()).row(0, named=True)
    assert (k["cmax"], k["tmax"]) == (1000.0, 7.0)  # not the marrow's 50000 on day 21
    assert k["auc_window"] == pytest.approx(PB_AUC, rel=1e-9)
    assert "1 BM row(s) left out" in k["reason"]
    assert "observations.csv:5" not in k["evidence"]  # the BM row (4th sample, src_row 5)


def test_specimen_all_keeps_every_row_and_bm_option_takes_the_marrow():
    assert kin(study({"B": PB_PLUS_BM}), specimen="all")["cmax"] == 50000.0
    k = kin(study({"B": PB_PLUS_BM}), specimen="BM")
    assert (k["cmax"], k["tmax"]) == (50000.0, 21.0)  # the one BM sample


def test_same_time_pb_and_bm_pair_is_not_a_duplicate_time_review_probe_r4():
    rows = [{"day": 7, "value": 1000}, {"day": 14, "value": 500}, {"day": 28.5, "value": 100},
            {"day": 28.5, "value": 2000, "specimen": "BM"}]
    k = kin(study({"B": rows}))
    assert k["not_evaluable"] is None and (k["cmax"], k["tmax"]) == (1000.0, 7.0)
    # day 28 between 500 (day 14) and 100 (day 28.5), log-linear: c28 = 500 * (100/500)^(14/14.5);
    # AUC = 3500 + 7*500/ln2 + 14*(500 - c28)/ln(500/c28)
    c28 = 500 * (100 / 500) ** (14 / 14.5)
    assert k["auc_window"] == pytest.approx(3500 + 7 * 500 / LN2 + 14 * (500 - c28) / math.log(500 / c28), rel=1e-9)


def test_subject_with_only_marrow_samples_is_not_evaluable_not_absent():
    k = kin(study({"M": [{"day": 7, "value": 1000, "specimen": "BM"}, {"day": 14, "value": 500, "specimen": "BM"}]}))
    assert k["rule"] == "car_kinetics.specimen"
    assert k["cmax"] is None and k["auc_window"] is None  # missing, not 0
    assert "2 BM" in k["not_evaluable"]


# ---- A2: one curve per analyte --------------------------------------------------------------------

TWO = [{"day": 7, "value": 1000, "analyte": "CD19-CAR"}, {"day": 14, "value": 500, "analyte": "CD19-CAR"},
       {"day": 28, "value": 100, "analyte": "CD19-CAR"}, {"day": 10, "value": 20000, "analyte": "CD22-CAR"}]


def test_two_analytes_make_the_subject_not_evaluable_review_probe_r2():
    k = kin(study({"A": TWO}))
    assert k["rule"] == "car_kinetics.multiple_analytes"
    assert k["cmax"] is None and k["auc_window"] is None  # not 20000 from the CD22 assay
    assert "CD19-CAR, CD22-CAR" in k["not_evaluable"] and "kinetics.analyte" in k["reason"]


def test_analyte_option_takes_one_analytes_rows():
    k = kin(study({"A": TWO}), analyte="CD19-CAR")
    assert (k["cmax"], k["tmax"]) == (1000.0, 7.0)
    assert k["auc_window"] == pytest.approx(PB_AUC, rel=1e-9)  # the CD19 curve: 12028.91 by hand
    assert "analyte CD22-CAR left out" in k["reason"]


def test_rows_without_an_analyte_beside_one_named_analyte_are_that_analyte():
    rows = [{"day": 7, "value": 1000, "analyte": "CD19-CAR"}, {"day": 14, "value": 500},
            {"day": 28, "value": 100, "analyte": "CD19-CAR"}]
    k = kin(study({"A": rows}))
    assert k["auc_window"] == pytest.approx(PB_AUC, rel=1e-9)
    assert "1 CARCOPY row(s) without an analyte taken as CD19-CAR" in k["reason"]


# ---- B1: AUC % extrapolated -----------------------------------------------------------------------

def test_aucpext_obs_and_adpp_aucpeo_review_probe_r1_syn0005():
    s = study({"E": [{"day": d, "value": v} for d, v in ((7, 10000), (10, 5000), (14, 2500), (22, 625))]})
    # lambda.z = ln2/4 (the last 3 points halve every 4 days: 5000 -> 2500 -> 625 over 4 and 8 days)
    # auclast = 7*10000/2 + 3*5000/ln2 + 4*2500/ln2 + 8*1875/ln4; aucinf = auclast + 625/lambda.z
    auclast = 35000 + 3 * 5000 / LN2 + 4 * 2500 / LN2 + 8 * 1875 / math.log(4)
    aucinf = auclast + 625 / (LN2 / 4)
    pext = 100 * (1 - auclast / aucinf)  # PKNCA pk.calc.aucpext: 4.22 %
    k = kin(s)
    assert k["aucpext.obs"] == pytest.approx(pext, rel=1e-9)
    assert not any(w.startswith("aucpext_high") for w in k["warnings"])  # 4.22 <= 20
    assert any(w.startswith("aucpext_high") for w in kin(s, max_aucpext=4.0)["warnings"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = derive_adpp(s)
    assert p.filter(pl.col("PPTESTCD") == "AUCPEO")["AVAL"].to_list() == pytest.approx([pext], rel=1e-9)


# ---- B3: BLQ words in `cartlab nca` ---------------------------------------------------------------

def test_nca_reads_blq_and_lloq_words_with_an_lloq_column(tmp_path):
    from cartlab.cli.kinetics_io import nca_command

    src = tmp_path / "blq.csv"
    src.write_text("id,t,c,lloq\nA,0,0,20\nA,3,BLQ,20\nA,7,1000,20\nA,14,500,20\nA,21,<LLOQ,20\nA,28,<20,20\n")
    nca_command(src, tmp_path / "out.csv", subject="id", time="t", conc="c", lloq="lloq")
    out = pl.read_csv(tmp_path / "out.csv").row(0, named=True)
    # aucall: 0 (0-3) + 4*(0+1000)/2 (BLQ before the first quantifiable = 0) + 7*500/ln2
    # + 7*500/2 (linear triangle to the BLQ 0 on day 21) = 2000 + 5049.43 + 1750 = 8799.43
    assert out["aucall"] == pytest.approx(2000 + 7 * 500 / LN2 + 1750, rel=1e-9)
    bad = tmp_path / "nolloq.csv"
    bad.write_text("id,t,c\nA,0,0\nA,3,BLQ\nA,7,1000\n")
    with pytest.raises(ValueError, match=r"row 2 \(line 3\), column 'c': 'BLQ'.*'<20'"):
        nca_command(bad, tmp_path / "o2.csv", subject="id", time="t", conc="c")


def test_nca_not_detected_word_gets_the_below_detection_hint(tmp_path):
    from cartlab.cli.kinetics_io import nca_command

    src = tmp_path / "nd.csv"
    src.write_text("id,t,c\nA,0,0\nA,3,not detected\nA,7,1000\n")
    with pytest.raises(ValueError, match="below-detection result"):
        nca_command(src, tmp_path / "o.csv", subject="id", time="t", conc="c")


# ---- B5: CAR-T products, not any cell therapy -----------------------------------------------------

def test_car_t_names_review_probe():
    names = ["tabelecleucel", "lifileucel", "afamitresgene autoleucel", "Aucatzyl", "carteolol",
             "CAR-T", "CD7 CAR-T", "car_t", "obecabtagene autoleucel", "Kymriah"]
    # the review's expectation (INN stems; Aucatzyl is obecabtagene autoleucel, a CD19 CAR-T) and the
    # spec's agent vocabulary (doses.csv agent 'CAR-T')
    want = [False, False, False, True, False, True, True, True, True, True]
    assert [is_car_t_agent(a) for a in names] == want
    assert pl.DataFrame({"a": names}).select(car_t_agent_expr(pl.col("a")))["a"].to_list() == want


def test_a_tabelecleucel_dose_is_not_a_car_t_infusion():
    rows = {"A": [{"day": 7, "value": 1000}, {"day": 14, "value": 500}]}
    s = study(rows, {"A": [(0.0, "CAR-T"), (10.0, "tabelecleucel")]})
    with pytest.warns(Warning, match="not a CAR-T \\(tabelecleucel\\)"):
        k = derive_car_kinetics(s, CarKineticsOptions(time_from="last")).row(0, named=True)
    # time from the last CAR-T infusion = day 0 (the old code refused: "samples between two infusions")
    assert (k["tmax"], k["tlast"]) == (7.0, 14.0)


def test_an_aucatzyl_dose_times_the_profile():
    s = study({"A": [{"day": 9, "value": 1000}, {"day": 16, "value": 500}]}, {"A": [(2.0, "Aucatzyl")]})
    assert kin(s)["tmax"] == 7.0  # day 9 - infusion day 2 (the old code timed it from day 0: 9)


# ---- B4: quasi-complete separation ----------------------------------------------------------------

def test_quasi_complete_separation_has_its_own_note_and_no_stderr_warning():
    from cartlab.kinetics.exposure import _logit

    # events' lowest exposure (1000) = non-events' highest (1000): no finite MLE (Albert & Anderson 1984)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = _logit(np.array([0, 0, 0, 1, 1, 1]), np.array([10, 100, 1000, 1000, 1e4, 1e5]))
    assert r["or_per_10fold"] is None
    assert "quasi-complete separation" in r["logit_note"] and "1000" in r["logit_note"]
    assert "RuntimeError" not in r["logit_note"]


# ---- B2: all BLQ, sampled to day 3 only -----------------------------------------------------------

def test_all_blq_to_day_3_names_the_last_day_and_option_through_last_sample():
    s = study({"Z": [{"day": 1, "value": "<20"}, {"day": 3, "value": "<20"}]})
    k = kin(s)
    assert k["auc_window"] == 0.0  # PKNCA: an AUC of all-zero concentrations is 0 (the default kept)
    assert "last on day 3" in k["auc_window_basis"]
    assert any(w.startswith("all_blq_before_window_end") for w in k["warnings"])
    k2 = kin(s, all_blq_auc="through_last_sample")
    assert k2["auc_window"] is None and k2["cmax"] == 0.0  # unknown after day 3; Cmax 0 is still right
    assert "day 3" in k2["auc_window_basis"]


# ---- C1: ADaM units ------------------------------------------------------------------------------

def test_adpc_time_units_and_adpp_avalu():
    from cartlab.analyze import Analysis
    from cartlab.io.adam.build import build_datasets

    s = study({"E": [{"day": d, "value": v} for d, v in ((7, 10000), (10, 5000), (14, 2500), (22, 625))]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = build_datasets(Analysis(s), ["ADPC", "ADPP"])
    assert set(ds["ADPC"]["FRLTU"].to_list()) == {"DAYS"} and set(ds["ADPC"]["RRLTU"].to_list()) == {"DAYS"}
    pp = ds["ADPP"]
    # adam_terms.yaml pp_units: CMAX in the concentration unit, TMAX in days
    assert pp.filter(pl.col("PARAMCD") == "CMAX")["AVALU"].to_list() == ["copies/ug"]
    assert pp.filter(pl.col("PARAMCD") == "TMAX")["AVALU"].to_list() == ["days"]
