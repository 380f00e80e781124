"""Session 32 review of the kinetics engines (/work/notes/review33_kin): three fixes, expected values by hand.

1. An upper-censored sample (">1e6", above the upper limit of quantification) was dropped. The NCA's
   documented rule reads it as its bound (warning above_uloq). Hand, lin-up/log-down with 0 imputed
   at the infusion: 0->1 d (0, 100): 50; 1->7 (100, 1e6) up: 6*(100+1e6)/2 = 3,000,300; 7->14 down:
   7*(1e6-1000)/ln(1000) = 1,012,340.44; 14->28 down: 14*(1000-100)/ln(10) = 5,472.06; total 4,018,162.5.
2. A pre-infusion CARCOPY baseline ("<50" on day -1) made the subject a CARCOPY subject with no
   CARCOPY after the infusion: every car_* empty. The spec: "from CARCOPY (else CARCELL), time from
   the first CAR-T infusion"; CARCELL 0.1, 10, 1, 0.1 on days 1, 7, 14, 28 -> Cmax 10 on day 7, and
   the same AUC as the subject without the baseline.
3. ADPC NFRLT was floor(AFRLT): 13 for a sample exactly 14 days after a 14:00 infusion
   (13.999999999999998), 6 for a date-only sample on day 7. Nominal day = the calendar day.
"""

from __future__ import annotations

import polars as pl
import pytest

from cartlab.analyze import Analysis
from cartlab.io import read_study


def _write(root, subjects, doses, observations):
    root.mkdir(parents=True, exist_ok=True)
    (root / "subjects.csv").write_text(subjects, encoding="utf-8")
    (root / "doses.csv").write_text(doses, encoding="utf-8")
    (root / "observations.csv").write_text(observations, encoding="utf-8")
    return read_study(root)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    obs = ["subject_id,day,datetime,param,value,value_text,unit,lloq",
           "U1,1,,CARCOPY,100,,copies/ug gDNA,50", "U1,7,,CARCOPY,,>1e6,copies/ug gDNA,50",
           "U1,14,,CARCOPY,1000,,copies/ug gDNA,50", "U1,28,,CARCOPY,100,,copies/ug gDNA,50",
           "V1,-1,,CARCOPY,,<50,copies/ug gDNA,50"]
    obs += [f"{sid},{d},,CARCELL,{v},,cells/uL,0.05" for sid in ("V1", "V2") for d, v in ((1, 0.1), (7, 10), (14, 1), (28, 0.1))]
    obs += ["T3,7,,CARCOPY,10000,,copies/ug gDNA,50", "T3,14,2024-03-15T14:00,CARCOPY,1000,,copies/ug gDNA,50",
            "T3,28,2024-03-29T14:00,CARCOPY,100,,copies/ug gDNA,50"]
    subjects = ("subject_id,disease,infusion_datetime\nU1,LBCL,2024-03-01T00:00\nV1,LBCL,2024-03-01T00:00\n"
                "V2,LBCL,2024-03-01T00:00\nT3,LBCL,2024-03-01T14:00\n")
    doses = "subject_id,day,agent,dose,unit\n" + "".join(f"{s},0,CAR-T,1e6,cells/kg\n" for s in ("U1", "V1", "V2", "T3"))
    return _write(tmp_path_factory.mktemp("kin_s32"), subjects, doses, "\n".join(obs) + "\n")


@pytest.fixture(scope="module")
def analysis(study):
    return Analysis(study)


def test_a_sample_above_the_upper_limit_is_read_as_its_bound(analysis):
    s = {r["subject_id"]: r for r in analysis.subject_summary().iter_rows(named=True)}
    assert (s["U1"]["car_cmax"], s["U1"]["car_tmax"]) == (1e6, 7.0)
    assert s["U1"]["car_auc_0_28"] == pytest.approx(4_018_162.5, abs=0.05)


def test_a_pre_infusion_carcopy_baseline_does_not_hide_the_carcell_profile(analysis):
    s = {r["subject_id"]: r for r in analysis.subject_summary().iter_rows(named=True)}
    assert (s["V1"]["car_param"], s["V1"]["car_cmax"], s["V1"]["car_tmax"]) == ("CARCELL", 10.0, 7.0)
    assert s["V1"]["car_auc_0_28"] == pytest.approx(s["V2"]["car_auc_0_28"], rel=1e-12)


def test_adpc_nominal_day_is_the_calendar_day(analysis):
    adpc = analysis.table("adpc").filter(pl.col("USUBJID") == "T3").sort("ADY")
    by_day = dict(zip(adpc["ADY"].round(4).to_list(), adpc["NFRLT"].to_list()))
    # infusion 14:00 on day 0 (day 0.5833); date-only day-7 sample; samples at 14:00 on days 14 and 28
    assert by_day[7.0] == 7 and by_day[14.5833] == 14 and by_day[28.5833] == 28
