"""CAR-T samples given as dates only after an infusion with a clock time (interop audit, session 28:
an SDTM import with EXSTDTC 14:00 and date-only LBDTC lost car_auc_0_28).

Hand derivation: infusion 2021-05-10T14:00 (day 0.5833); CARCOPY dated 05-17, 05-24 and 06-07 (days
7, 14, 28 at midnight). Spec "Cellular kinetics": "time from the first CAR-T infusion", so as given the
times are 6.4167, 13.4167 and 27.4167 and no sample reaches day 28 (the AUC 0-28 needs the curve
past the last quantifiable sample: not computable with two points after the peak). With
``date_only_samples = calendar_day`` they are 7, 14, 28 and the linear-up/log-down AUC 0-28 is
0-7: (0 + 1000)/2 * 7 = 3,500; 7-14: (1000 + 10000)/2 * 7 = 38,500; 14-28 (down, log):
(10000 - 500) * 14 / ln(10000/500) = 44,396.45; total 86,396.45.
"""

from __future__ import annotations

import math

import pytest

from cartlab.analyze import Analysis, AnalysisOptions
from cartlab.io import read_study

AUC = 3500 + 38500 + 9500 * 14 / math.log(20)


@pytest.fixture
def study(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    (d / "subjects.csv").write_text("subject_id,disease,infusion_datetime\nA,AML,2021-05-10T14:00\n")
    (d / "doses.csv").write_text("subject_id,datetime,agent,dose,unit\nA,2021-05-10T14:00,CD7 CAR-T,1000000,cells/kg\n")
    (d / "observations.csv").write_text(
        "subject_id,datetime,param,value,unit\n"
        "A,2021-05-17,CARCOPY,1000,copies/ug\nA,2021-05-24,CARCOPY,10000,copies/ug\nA,2021-06-07,CARCOPY,500,copies/ug\n")
    return read_study(d)


def test_as_given_counts_from_midnight_and_warns(study):
    a = Analysis(study)
    k = a.table("car_kinetics").row(0, named=True)
    assert k["tmax"] == pytest.approx(14 - 14 / 24, abs=1e-9) and k["auc_window"] is None
    msgs = [w["message"] for w in a.warnings if "dates without a clock time" in w["message"]]
    assert len(msgs) == 1 and "kinetics.date_only_samples=calendar_day" in msgs[0] and msgs[0].endswith(": A")


def test_calendar_day_counts_whole_days(study):
    opts = AnalysisOptions.from_settings({"kinetics": {"date_only_samples": "calendar_day"}})
    a = Analysis(study, opts)
    k = a.table("car_kinetics").row(0, named=True)
    assert (k["tmax"], k["tlast"]) == (14.0, 28.0)
    assert k["auc_window"] == pytest.approx(AUC, rel=1e-9)
    assert not [w for w in a.warnings if "dates without a clock time" in w["message"]]
    assert a.options.to_dict()["kinetics"]["date_only_samples"] == "calendar_day"


def test_bad_value_is_refused():
    from cartlab.errors import InputError

    with pytest.raises(InputError, match="date_only_samples must be"):
        AnalysisOptions.from_settings({"kinetics": {"date_only_samples": "noon"}})
