"""Session 38 (review38_legacy): the older CRS scales (Lee 2014, Penn, CARTOX, MSKCC).

Expected grades are worked out by hand from the scales' published rows as quoted in PMC7006459
Table 2 (Lee 2019's comparison of the older scales) and in the criteria tables' citations; the
comment of each test says how. Never copied from cartlab output.
"""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl
import pytest

from cartlab.criteria import load_table
from cartlab.grading.crs import CrsOptions
from cartlab.grading.crs_legacy import CrsLegacyOptions, derive_crs_cross_scale
from cartlab.io import read_study

SUBJ = [{"subject_id": "S1", "sex": "M", "age_years": 50, "weight_kg": 70, "disease": "LBCL"}]
DOSE = [{"subject_id": "S1", "day": 0, "agent": "CAR-T", "dose": 1e6, "unit": "cells/kg"}]
IV_HEADER = ["subject_id", "start_day", "end_day", "category", "agent", "dose", "dose_unit", "indication"]


def _write(folder: Path, name: str, rows, header=None) -> None:
    if rows is None:
        return  # the file is absent
    rows = list(rows)
    cols = list(dict.fromkeys(k for r in rows for k in r)) or header
    with open(folder / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})


def _study(tmp_path: Path, obs, iv=None):
    _write(tmp_path, "subjects", SUBJ)
    _write(tmp_path, "doses", DOSE)
    _write(tmp_path, "observations", obs)
    _write(tmp_path, "interventions", iv, IV_HEADER)
    return read_study(tmp_path)


def _obs(day, param, value, unit):
    return {"subject_id": "S1", "day": day, "param": param, "value": value, "unit": unit}


def _vp(start, end, dose, agent="norepinephrine"):
    return {"subject_id": "S1", "start_day": start, "end_day": end, "category": "vasopressor", "agent": agent,
            "dose": dose, "dose_unit": "ug/min", "indication": "CRS"}


def _organ(*labs, days=(1,)):
    """organ_grades rows of CTCAE grade 0 (normal labs)."""
    return pl.DataFrame([{"subject_id": "S1", "day": d, "organ": o, "grade": 0, "is_transaminase": o in ("ALT", "AST")}
                         for d in days for o in labs], schema={"subject_id": pl.String, "day": pl.Int64, "organ": pl.String,
                                                 "grade": pl.Int64, "is_transaminase": pl.Boolean})


NORMAL = _organ("CREAT", "ALT", "BILI", days=(1, 2))
def _row(study, **kw):
    opts = kw.pop("options", None) or CrsLegacyOptions()
    kw.setdefault("organ_grades", NORMAL)
    return derive_crs_cross_scale(study, options=opts, **kw).row(0, named=True)


def _bounds(r, s):
    return r[f"crs_grade_{s}_min"], r[f"crs_grade_{s}_max"]


# fever 38.6 and SBP 82 on day 1 (organ labs: a normal creatinine, ALT and bilirubin on days 1-2), afebrile day 2 (review38 p1)
P1 = [_obs(1, "TEMP", 38.6, "C"), _obs(1, "SYSBP", 82, "mmHg"), _obs(2, "TEMP", 37.0, "C"), _obs(2, "SYSBP", 85, "mmHg")]


def test_absent_interventions_open_every_scale_up_to_4(tmp_path):
    """A1. Without interventions.csv the lower grade is the grade with no intervention: Lee 2014 G2
    "hypotension responsive to fluids", CARTOX G2 "hypotension responding to IV fluids", MSKCC G1
    (fever only: its G2 needs a vasopressor or O2), Penn G1 (fever; G3 boluses unknown). The upper
    grade is 4 on each: ventilation is grade 4 on all four scales (Lee "requirement for ventilator
    support", Penn/MSKCC "hypoxia requiring mechanical ventilation", CARTOX "needing ventilator
    support"), and the missing input is the file."""
    r = _row(_study(tmp_path, P1, iv=None))
    assert {s: _bounds(r, s) for s in ("lee2014", "penn", "cartox", "mskcc")} == {
        "lee2014": (2, 4), "penn": (1, 4), "cartox": (2, 4), "mskcc": (1, 4)}
    for s in ("lee2014", "penn", "cartox", "mskcc"):
        assert "interventions.csv (not given)" in r[f"crs_{s}_missing"]
        assert f"{s}.conv.absent_interventions" in r[f"crs_{s}_possible_rules"]
        assert r[f"crs_{s}_rule_status_max"] in ("unverified", "verified_secondary", "convention")
        assert r[f"crs_grade_{s}"] is None  # a range, not a grade


def test_absent_interventions_none_given_and_following_astct(tmp_path):
    """A1. none_given reads the absent file as empty (Lee 2 settled: SBP < 90 without a vasopressor is
    Lee G2); unset, the option follows crs.absent_interventions of the ASTCT options."""
    st = _study(tmp_path, P1, iv=None)
    r = _row(st, options=CrsLegacyOptions(absent_interventions="none_given"))
    assert _bounds(r, "lee2014") == (2, 2) and _bounds(r, "mskcc") == (1, 1)
    followed = CrsLegacyOptions().following(CrsOptions(absent_interventions="none_given"))
    assert _bounds(_row(st, options=followed), "cartox") == (2, 2)
    with pytest.raises(ValueError, match="absent_interventions"):
        CrsLegacyOptions(absent_interventions="nothing")


def test_header_only_interventions_file_is_not_opened(tmp_path):
    """A1. A header-only interventions.csv says none was given: Lee 2 settled (as before)."""
    r = _row(_study(tmp_path, P1, iv=[]))
    assert _bounds(r, "lee2014") == (2, 2) and r["crs_lee2014_missing"] == []


# NE 5 ug/min from day 1 08:00 without an end; fever and SBP 82 on days 1-2 (review38 p5 D2)
D2 = [_obs(d, p, v, u) for d in (1, 2) for p, v, u in (("TEMP", 38.6, "C"), ("SYSBP", 82, "mmHg"))]


def test_open_end_vasopressor_leaves_mskcc_24h_open(tmp_path):
    """A2. MSKCC G2 "vasopressors < 24 h" surely (a vasopressor was given), G3 ">= 24 h" possible:
    the row has no end, so its duration is unknown (docs 'durations'): MSKCC 2-3 naming the end.
    open_end_infusion=start_day_only: it ended by midnight of day 1 (16 h < 24 h): MSKCC 2."""
    st = _study(tmp_path, D2, iv=[_vp(1 + 8 / 24, None, 5)])
    r = _row(st)
    assert _bounds(r, "mskcc") == (2, 3)
    assert any("vasopressor end not recorded" in m for m in r["crs_mskcc_missing"])
    assert _bounds(_row(st, options=CrsLegacyOptions(open_end_infusion="start_day_only")), "mskcc") == (2, 2)
    with pytest.raises(ValueError, match="open_end_infusion"):
        CrsLegacyOptions(open_end_infusion="forever")


FEVER = [_obs(1, "TEMP", 38.6, "C"), _obs(1, "SYSBP", 120, "mmHg")]


def test_organ_labs_required_each_names_bilirubin(tmp_path):
    """B1. Creatinine, ALT, AST normal, no bilirubin; fever only (Lee G1). With "each" the bilirubin
    could be CTCAE grade 4 (> 10 x ULN), which is Lee G4 "grade 4 organ toxicity (excluding
    transaminitis)": Lee 1-4 naming bilirubin. The default reading keeps Lee 1 and says in the
    reason that bilirubin was not measured and read as not raising the grade."""
    st = _study(tmp_path, FEVER, iv=[])
    og = _organ("CREAT", "ALT", "AST")
    each = _row(st, organ_grades=og, options=CrsLegacyOptions(organ_labs_required="each"))
    assert _bounds(each, "lee2014") == (1, 4) and _bounds(each, "cartox") == (1, 4)
    assert any("bilirubin" in m for m in each["crs_lee2014_missing"])
    default = _row(st, organ_grades=og)
    assert _bounds(default, "lee2014") == (1, 1)
    assert "bilirubin" in default["crs_lee2014_reason"]
    assert "crs_legacy.conv.organ_labs_required" in default["crs_lee2014_reason"]
    # with the whole panel measured nothing is named, and "each" settles Lee 1
    full = _organ("CREAT", "ALT", "BILI")
    assert "organ_labs_required" not in _row(st, organ_grades=full)["crs_lee2014_reason"]
    assert _bounds(_row(st, organ_grades=full, options=CrsLegacyOptions(organ_labs_required="each")),
                   "lee2014") == (1, 1)


def test_cross_scale_names_the_upper_rule_and_its_status(tmp_path):
    """B3. Fever, SBP 82, NE 25 ug/min for 6 h: MSKCC G2 "< 24 h" holds; G4 "refractory to high-dose
    vasopressors" is possible (refractoriness not recorded), and it reads the high-dose table, whose
    status is unverified: the upper rule and the least verified status are in the table."""
    st = _study(tmp_path, [_obs(1, "TEMP", 38.6, "C"), _obs(1, "SYSBP", 82, "mmHg")], iv=[_vp(1.25, 1.5, 25)])
    r = _row(st)
    assert r["crs_mskcc_rule"] == "mskcc.g2.vasopressor_lt24h"
    assert "mskcc.g4.high_dose_refractory" in r["crs_mskcc_possible_rules"].split("; ")
    assert r["crs_mskcc_rule_status_max"] == "unverified"


def test_convention_rows_are_in_the_tables():
    """A1/A2/B1/C1: the conventions are data rows with status convention."""
    ids = {s: {c["id"]: c for c in load_table(f"crs_{s}").extra("conventions")}
           for s in ("lee2014", "penn", "cartox", "mskcc")}
    for s in ids:
        assert ids[s][f"{s}.conv.absent_interventions"]["status"] == "convention"
    for rid in ("crs_legacy.conv.open_end_infusion", "crs_legacy.conv.organ_labs_required"):
        assert ids["lee2014"][rid]["status"] == "convention"
    assert ids["cartox"]["cartox.conv.gate"]["status"] == "convention"
