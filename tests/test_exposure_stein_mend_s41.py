"""Session 41, mend of review41_diff2 findings 3, 10 and 11 (helper mend41_m3).

* F3: the report/dashboard exposure view reads the CRS grade's lower bound (``crs_grade_astct_min``,
  events.csv not given) as exposure_response.csv does, in the drawn points and in the statistics
  re-derived for a subject selection.
* F10: under ``se_df_correction='residual'`` only the structural parameters' covariance is scaled by
  n/(n - p); the reported sigma is the ML one and keeps its ML SE and a 1.96 CI.
* F11: only an infusion more than 7 days (``kinetics.split_dose_gap_days``) after the previous one gets
  the re-infusion note that the ``stein`` command warns about; split-dose fractions get their own note.

Expected values are worked by hand (each test says how), never copied from cartlab output.
"""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from cartlab.kinetics.stein import DESIGN_180D, STEIN_2019, SteinModel, stein_curve
from cartlab.report import cohort_data as cd


# -- F3 ------------------------------------------------------------------------------------------------
class _Analysis:
    """The few members the exposure view reads: study.subjects, table_names(), table(), options."""

    def __init__(self, tables: dict[str, pl.DataFrame]):
        self._t = tables
        self.study = SimpleNamespace(subjects=tables["kinetics_summary"].select("subject_id"))
        self.options = SimpleNamespace(exposure=None, kinetics=None)

    def table_names(self):
        return list(self._t)

    def table(self, name):
        return self._t[name]


def test_exposure_view_reads_the_crs_lower_bound():
    # (subject, Cmax, AUC, best response, responder, CRS grade, min, max)
    rows = [("A", 10.0, 100.0, "CR", True, 3, 1, 3),   # 3 whose fever could be an infection's: 1-3
            ("B", 20.0, 200.0, "CR", True, 3, 3, 3),   # definite 3
            ("C", 30.0, 300.0, "NR", False, 3, 3, 3),  # definite 3
            ("D", 5.0, 50.0, "CR", True, 0, 0, 0),     # definite 0
            ("E", 6.0, 60.0, "NR", False, 2, 2, 3)]    # 2 that could be 3 (an input missing)
    ids = [r[0] for r in rows]
    kin = pl.DataFrame({"subject_id": ids, "car_cmax": [r[1] for r in rows], "car_auc_0_28": [r[2] for r in rows]})
    best = pl.DataFrame({"subject_id": ids, "criteria": ["ELN2022"] * 5, "best_response": [r[3] for r in rows],
                         "responder": [r[4] for r in rows]})
    crs = pl.DataFrame({"subject_id": ids, "crs_grade_astct": [r[5] for r in rows],
                        "crs_grade_astct_min": [r[6] for r in rows], "crs_grade_astct_max": [r[7] for r in rows]})
    an = _Analysis({"kinetics_summary": kin, "best_response": best, "crs_summary": crs})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = cd.exposure_outcome_data(an, subject_ids=ids)  # a selection: the stats are re-derived
    # points: A's lower bound 1 < 3 <= its max -> unknown (was True); E 2-3 unknown; B, C yes; D no
    assert dict(d.points.select("subject_id", "crs_ge3").iter_rows()) == {
        "A": None, "B": True, "C": True, "D": False, "E": None}
    assert d.points["crs_grade"].to_list() == [3, 3, 3, 0, 2]  # the grade shown stays the grade
    # stats: CRS >= 3 known for B, C, D only -> n 3 (2 events), A and E excluded (was n 4, A an event)
    r = d.stats.filter((pl.col("outcome") == "crs_grade_ge3") & (pl.col("exposure") == "car_cmax")).row(0, named=True)
    assert (r["n"], r["n_excluded"]) == (3, 2)
    assert "A" in r["excluded"] and "events.csv not given" in r["excluded"]


# -- F10 -----------------------------------------------------------------------------------------------
def test_sigma_se_is_the_ml_one_under_the_residual_correction():
    """All 14 samples quantifiable (LLOQ 1e-3): -log L = n log sigma + RSS / (2 sigma^2) + const. In
    s = log sigma, d2/ds2 = 2 RSS / sigma^2 = 2n at the MLE sigma^2 = RSS/n, and the cross derivatives
    with the structural parameters are -2 e^(-2s) x dRSS/2 = 0 there (RSS at its minimum): SE(log sigma)
    = 1/sqrt(2n) = 1/sqrt(28) = 0.18898, RSE 18.90%, with or without the correction; the CI is
    sigma x exp(+-1.96 x 0.18898). Before the mend: x sqrt(14/9) (23.57%) and t(9) 2.262."""
    t = np.array(DESIGN_180D[1:], dtype=float)
    assert t.size == 14
    ly = np.log(stein_curve(t, STEIN_2019)) + np.random.default_rng(1).normal(0, 0.1, t.size)
    df = pl.DataFrame({"subject_id": "S", "time": t, "conc": np.exp(ly), "lloq": 1e-3})
    fixed = {"beta": 0.0032}
    res = {c: {r["parameter"]: r for r in SteinModel(fixed=fixed, se_df_correction=c).fit(df).summary
               .iter_rows(named=True)} for c in ("residual", "none")}
    se = 1 / math.sqrt(28)
    for c in ("residual", "none"):
        s = res[c]["sigma"]
        assert s["rse_pct"] == pytest.approx(100 * se, rel=2e-3), c
        assert s["ci_lower"] == pytest.approx(s["estimate"] * math.exp(-1.96 * s["rse_pct"] / 100), rel=1e-9), c
        assert s["ci_upper"] == pytest.approx(s["estimate"] * math.exp(1.96 * s["rse_pct"] / 100), rel=1e-9), c
    # the structural parameters are still corrected: x sqrt(14/9) (n = 14, p = 5)
    assert res["residual"]["cmax"]["rse_pct"] == pytest.approx(res["none"]["cmax"]["rse_pct"] * math.sqrt(14 / 9),
                                                               rel=1e-6)


# -- F11 -----------------------------------------------------------------------------------------------
def test_split_dose_fractions_are_not_warned_as_reinfusions(tmp_path):
    from cartlab.cli.kinetics_io import stein_command

    # P: split dose on days 0 and 2 (the seed case's 40/60 %); Q: days 0 and 7 (exactly the 7-day gap:
    # not more than it, still one administration); R: re-infused on day 60 (> 7 days) -> the only warning
    one = np.array([1, 4, 7, 9, 11, 14, 21, 28, 42, 56.0])
    df = pl.concat([pl.DataFrame({"subject_id": s, "time": one, "conc": stein_curve(one, STEIN_2019), "lloq": 50.0})
                    for s in ("P", "Q", "R")])
    doses = pl.DataFrame({"subject_id": ["P", "P", "Q", "Q", "R", "R"], "time": [0.0, 2.0, 0.0, 7.0, 0.0, 60.0],
                          "dose": [0.4, 0.6, 0.5, 0.5, 1.0, 1.0]})
    notes = dict(SteinModel(prior=STEIN_2019).fit(df, doses=doses).individual_
                 .select("subject_id", "dosing_note").iter_rows())
    split = ("fractions of one split dose (each within 7 days of the previous, kinetics.split_dose_gap_days): "
             "one dose at the first (dose_handling='first')")
    assert notes["P"] == "2 infusions (days 0, 2 from the first); " + split
    assert notes["Q"] == "2 infusions (days 0, 7 from the first); " + split
    assert notes["R"] == ("2 infusions (days 0, 60 from the first); dose_handling='first' counts time from the "
                          "first and treats them as one dose")
    conc, dpath = tmp_path / "conc.csv", tmp_path / "doses.csv"
    df.write_csv(conc)
    doses.write_csv(dpath)
    meta = stein_command(conc, tmp_path / "out", subject="subject_id", time="time", conc="conc", lloq="lloq",
                         doses=dpath, prior="stein2019")
    assert meta["multiple_infusions"] == ["R"]
    w = [x for x in meta["warnings"] if "more than one CAR-T infusion" in x]
    assert len(w) == 1 and "R" in w[0] and "P" not in w[0].split(":")[-1] and "Q" not in w[0].split(":")[-1]
