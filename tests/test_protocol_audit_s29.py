"""Creatinine converts with the conventional 88.4 umol/L per mg/dL (session-29 dosing audit,
/work/notes/audit_diffdose/cases/crcl70_umol): a factor differing in the 5th digit (88.4017 from
113.12 g/mol) moved 88.4 umol/L across the fludarabine band edge CrCl 70.

Hand derivation: Cockcroft-Gault (140 - 70) x 72 / (72 x 1.0) = 70.0 mL/min, in the band 30-70
(high inclusive: 20% reduction, renal_adjustment.yaml); BSA Mosteller sqrt(175 x 72 / 3600) = 1.8708
-> 1.87 m2; fludarabine 30 x 1.87 x 0.8 = 44.88 mg/day, whether creatinine is given as 1.0 mg/dL or
as 88.4 umol/L.
"""
import csv
import io
import subprocess
import sys

import pytest

from cartlab.io import load_dictionary


def test_dictionary_factor_is_88_4():
    conv = load_dictionary()["CREAT"].conversion_from("mg/dL")
    assert conv.scale == pytest.approx(88.4, rel=1e-12) and conv.offset == 0


@pytest.mark.parametrize("value,unit", [("1.0", "mg/dL"), ("88.4", "umol/L")])
def test_crcl_70_band_edge_either_unit(value, unit):
    out = subprocess.run([sys.executable, "-m", "cartlab", "dose", "--protocol", "nct04762485", "--weight", "72",
                          "--height", "175", "--age", "70", "--sex", "M", "--creatinine", value, unit, "--csv"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    flu = [r for r in csv.DictReader(io.StringIO(out.stdout)) if r["agent"] == "fludarabine"]
    assert [float(r["dose"]) for r in flu] == pytest.approx([44.88] * 3, rel=1e-12)


def _study(tmp_path, subjects: str):
    (tmp_path / "subjects.csv").write_text(subjects)
    (tmp_path / "observations.csv").write_text("subject_id,day,param,value,unit\n")
    return tmp_path


def test_analyze_says_which_subjects_dosing_refused(tmp_path):
    """A weight of 1.5 kg is refused by dosing (plausible 2-300 kg): no dose_plan rows for that
    subject, and a warning (screen and analysis.json) names it and why; the other subject is planned,
    and its doses carry no float noise (the audit saw 822.0000000000001 mg for 154 kg / 175 cm)."""
    import json
    import warnings

    from cartlab.analyze import Analysis
    from cartlab.io import read_study
    from cartlab.protocol import load_protocol

    folder = _study(tmp_path, "subject_id,sex,age_years,weight_kg,height_cm\nW1,F,1,1.5,50\nLB,M,40,154,175\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = Analysis(read_study(folder), protocol=load_protocol("nct04762485"))
        plan = a.table("dose_plan")
    assert set(plan["subject_id"]) == {"LB"}
    msgs = [w["message"] for w in a.manifest()["warnings"] if "no plan" in w["message"]]
    assert msgs and "W1: weight 1.5 kg" in msgs[0]
    text = json.dumps(plan["dose"].to_list())
    assert "0000000" not in text


def test_csv_dose_keeps_the_paediatric_renal_caveat_on_stderr():
    out = subprocess.run([sys.executable, "-m", "cartlab", "dose", "--protocol", "nct04762485", "--weight", "10",
                          "--height", "80", "--age", "1", "--sex", "M", "--creatinine", "0.3", "mg/dL", "--csv"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "paediatric" in out.stderr and "paediatric" not in out.stdout
