"""Kinetics count from the infusion's clock time in ``infusion_datetime`` when the CAR-T dose row has
none (spec "subjects.csv": infusion_datetime is the "calendar anchor of day 0"; "Cellular kinetics":
"time from the first CAR-T infusion"). Case from the session-29 differential audit
(/work/notes/audit_diffresp/cases/k1_infusion_datetime_anchor).

Hand derivation: infusion 2024-03-01T10:00; samples exactly +0, +10, +28, +40 days (0, 10000, 1000,
500 copies/ug). tmax 10, tlast 40; AUC 0-28 = 10000*10/2 (linear up) + (10000-1000)*18/ln(10000/1000)
(log down) = 50000 + 70355.706 = 120355.706.
"""
import math

import polars as pl
import pytest

from cartlab.io import read_study
from cartlab.kinetics import derive_car_kinetics
from cartlab.kinetics.agents import car_t_infusions

AUC = 10000 * 10 / 2 + 9000 * 18 / math.log(10)

OBS = """subject_id,datetime,param,value,unit
K1,2024-03-01T10:00,CARCOPY,0,copies/ug
K1,2024-03-11T10:00,CARCOPY,10000,copies/ug
K1,2024-03-29T10:00,CARCOPY,1000,copies/ug
K1,2024-04-10T10:00,CARCOPY,500,copies/ug
"""


def _study(tmp_path, doses: str | None):
    (tmp_path / "subjects.csv").write_text("subject_id,disease,infusion_datetime\nK1,AML,2024-03-01T10:00\n")
    (tmp_path / "observations.csv").write_text(OBS)
    if doses is not None:
        (tmp_path / "doses.csv").write_text(doses)
    return read_study(tmp_path)


@pytest.mark.parametrize("doses", [
    "subject_id,day,agent,dose,unit\nK1,0,CAR-T,1000000,cells/kg\n",  # dose on day 0, no clock time
    None,  # no doses.csv: infusion_datetime alone says when
    "subject_id,datetime,agent,dose,unit\nK1,2024-03-01T10:00,CAR-T,1000000,cells/kg\n",  # the dose's own time
    "subject_id,datetime,agent,dose,unit\nK1,2024-03-01,CAR-T,1000000,cells/kg\n",  # a date alone
], ids=["day0", "no_doses", "dose_datetime", "dose_date_only"])
def test_time_counts_from_the_infusion_clock_time(tmp_path, doses):
    k = derive_car_kinetics(_study(tmp_path, doses)).row(0, named=True)
    assert k["tmax"] == pytest.approx(10.0)
    assert k["tlast"] == pytest.approx(40.0)
    assert k["auc_window"] == pytest.approx(AUC, rel=1e-6)


def test_a_dose_row_with_its_own_time_keeps_it(tmp_path):
    """An explicit 08:00 dose (day 0.3333) wins over infusion_datetime's 10:00."""
    s = _study(tmp_path, "subject_id,datetime,agent,dose,unit\nK1,2024-03-01T08:00,CAR-T,1000000,cells/kg\n")
    assert car_t_infusions(s)["day"].to_list() == pytest.approx([8 / 24])


def test_no_clock_time_changes_nothing(tmp_path):
    (tmp_path / "subjects.csv").write_text("subject_id,disease,infusion_date\nK1,AML,2024-03-01\n")
    (tmp_path / "doses.csv").write_text("subject_id,day,agent,dose,unit\nK1,0,CAR-T,1000000,cells/kg\n"
                                        "K1,2,CAR-T,1000000,cells/kg\n")
    s = read_study(tmp_path)
    assert car_t_infusions(s).select("day").to_series().to_list() == [0.0, 2.0]
    assert car_t_infusions(s).filter(pl.col("agent") == "CAR-T").height == 2
