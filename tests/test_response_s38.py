"""Session 38 fixes of cartlab.response (notes/review38_response, fix38_response). Expected values are
worked by hand from the quoted sources, never copied from cartlab's output:

* ELN 2022 response table (publisher's table page view-large/10723166): CR = BM blasts < 5%, no
  circulating blasts, ANC >= 1.0, PLT >= 100; PR = counts of CR, BM blasts 5-25% and "decrease of
  pre-treatment bone marrow blast percentage by at least 50%"; hematologic relapse by blood:
  "reappearance of blasts in the blood in at least 2 peripheral blood samples at least one week apart".
* Clopper-Pearson by hand: k = n: lo = (alpha/2)^(1/n) (2/2 -> 0.025^(1/2) = 0.1581).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from cartlab.io import read_study
from cartlab.response import ResponseOptions, derive_marrow_response, derive_relapse
from cartlab.response.best import derive_best_response, orr

OBS_HEAD = "subject_id,day,datetime,param,analyte,value,value_text,unit,specimen"


def folder(tmp_path: Path, obs: list[str], subjects=("S1",), dosed=("S1",)):
    (tmp_path / "observations.csv").write_text("\n".join([OBS_HEAD, *obs]) + "\n")
    (tmp_path / "subjects.csv").write_text(
        "subject_id,sex,age_years,disease,infusion_date,infusion_datetime,last_followup_day\n"
        + "".join(f"{s},F,50,AML,,,200\n" for s in subjects))
    (tmp_path / "doses.csv").write_text("subject_id,day,datetime,agent,dose,unit\n"
                                        + "".join(f"{s},0,,CAR-T,1,10^6 cells/kg\n" for s in dosed))
    return read_study(tmp_path)


def cell(day: int, param: str, value: str, unit="%", specimen="BM", sid="S1") -> str:
    return f"{sid},{day},,{param},,{value},,{unit},{specimen}"


def marrow(day: int, bm="2", pb="0", anc="1.5", plt="150", sid="S1") -> list[str]:
    return [cell(day, "BMBLAST", bm, sid=sid), cell(day, "PBBLAST", pb, specimen="PB", sid=sid),
            cell(day, "NEUT", anc, "10^9/L", "PB", sid), cell(day, "PLAT", plt, "10^9/L", "PB", sid)]


# A1 -- two pre-treatment readings on one day (8% and 30%), day 28 BM 12% with CR counts.
# By hand: from 30% the reduction is (30-12)/30 = 60% >= 50 (PR); from 8% it is a rise (not PR).
# The readings disagree -> never a definitive PR: NE could be PR (range), NR with lowest, PR with highest.

def _a1(tmp_path, **opt):
    s = folder(tmp_path, [cell(-7, "BMBLAST", "8"), cell(-7, "BMBLAST", "30"), *marrow(28, bm="12")])
    return derive_marrow_response(s, ResponseOptions(**opt)).row(0, named=True)


def test_a1_same_day_baseline_range_is_not_a_definitive_pr(tmp_path):
    r = _a1(tmp_path)
    assert r["category"] == "NE" and r["could_be"] == ["PR"]
    assert "8%" in r["reason"] and "30%" in r["reason"] and "same_day_baseline=range" in r["reason"]
    assert {"observations.csv:1", "observations.csv:2"} <= set(r["evidence"])


def test_a1_same_day_baseline_lowest_and_highest(tmp_path):
    assert _a1(tmp_path, same_day_baseline="lowest")["category"] == "NR"
    assert _a1(tmp_path, same_day_baseline="highest")["category"] == "PR"


def test_a1_agreeing_readings_still_pr(tmp_path):
    """30% and 40% on day -7, day 28 BM 12%: 60% and 70% reductions, both >= 50 -> PR under range."""
    s = folder(tmp_path, [cell(-7, "BMBLAST", "30"), cell(-7, "BMBLAST", "40"), *marrow(28, bm="12")])
    assert derive_marrow_response(s).row(0, named=True)["category"] == "PR"


# A2 -- T01 no CAR-T dose (T02 has one): T01 NE rule response.not_infused; ORR over the infused 1/1.

def test_a2_not_infused_subject_is_not_evaluable_and_out_of_the_rate(tmp_path):
    pre = [cell(-7, "BMBLAST", "40", sid="T01"), cell(-7, "BMBLAST", "40", sid="T02")]
    s = folder(tmp_path, [*pre, *marrow(28, sid="T01"), *marrow(28, sid="T02")], subjects=("T01", "T02"),
               dosed=("T02",))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        b = derive_best_response(s)
    t1 = b.filter(b["subject_id"] == "T01").row(0, named=True)
    assert t1["best_response"] == "NE" and t1["rule"] == "response.not_infused" and t1["responder"] is False
    assert any("1 subject(s) have no CAR-T dose" in str(x.message) and "T01" in str(x.message) for x in w)
    o = orr(b).row(0, named=True)
    assert (o["n"], o["n_responders"], o["n_not_infused"]) == (1, 1, 1) and "T01" in o["reason"]
    assert orr(b, population="all").row(0, named=True)["n"] == 2


def test_a2_absent_doses_file_keeps_day_zero_and_says_so(tmp_path):
    s = folder(tmp_path, [cell(-7, "BMBLAST", "40"), *marrow(28)])
    (tmp_path / "doses.csv").unlink()
    b = derive_best_response(read_study(tmp_path)).row(0, named=True)
    assert b["best_response"] == "CR" and "doses.csv not given" in b["reason"]
    assert s is not None


# A3 -- CR day 28; PBBLAST 2% day 35, 0 on 42/56/90, 1% day 120: the day-35 blip was cleared, day 120
# is one unconfirmed sample -> no relapse (ELN: 2 samples >= 1 week apart, the second confirming).

def _a3(tmp_path):
    obs = [cell(-7, "BMBLAST", "40"), *marrow(28)]
    obs += [cell(d, "PBBLAST", v, specimen="PB") for d, v in ((35, "2"), (42, "0"), (56, "0"), (90, "0"), (120, "1"))]
    return folder(tmp_path, obs)


def test_a3_cleared_blip_plus_one_sample_is_no_relapse(tmp_path):
    r = derive_relapse(_a3(tmp_path)).row(0, named=True)
    assert r["relapse_day"] is None
    assert "day 120" in r["relapse_reason"] and "not confirmed" in r["relapse_reason"]


def test_a3_option_false_keeps_the_old_reading(tmp_path):
    r = derive_relapse(_a3(tmp_path), options=ResponseOptions(pb_blast_consecutive=False)).row(0, named=True)
    assert r["relapse_day"] == 120  # days 35 and 120 are >= 7 days apart


def test_a3_two_consecutive_positive_samples_relapse(tmp_path):
    """PBBLAST 2% day 35 and 3% day 42 (7 days apart, nothing between) -> relapse on day 42."""
    obs = [cell(-7, "BMBLAST", "40"), *marrow(28), cell(35, "PBBLAST", "2", specimen="PB"),
           cell(42, "PBBLAST", "3", specimen="PB")]
    assert derive_relapse(folder(tmp_path, obs)).row(0, named=True)["relapse_day"] == 42


# B8 -- CR day 28; day 60 BM 2%, PB 3%, counts normal: one blood sample -> not NR, relapse possible.

def test_b8_one_pb_sample_after_cr_is_relapse_possible_not_nr(tmp_path):
    s = folder(tmp_path, [cell(-7, "BMBLAST", "40"), *marrow(28), *marrow(60, pb="3")])
    a = derive_marrow_response(s).row(1, named=True)
    assert a["category"] == "NE" and a["could_be"] == ["relapse"]
    assert any("second PBBLAST" in m for m in a["missing_inputs"])
    b = derive_best_response(s).row(0, named=True)
    assert b["best_response"] == "CR" and "NR on day 60" not in (b["dor_end_reason"] or "")
    assert b["dor_end_day"] == 28  # censored at the last response assessment (day 60 is NE, not one)


# B6 -- 3 dosed subjects: CR, CR, no marrow (NE). Rate 2/3; evaluable 2/2; the NE subject named.

def test_b6_not_evaluable_named_and_evaluable_rate(tmp_path):
    obs = [cell(-7, "BMBLAST", "40", sid=x) for x in ("A", "B", "C")] + marrow(28, sid="A") + marrow(28, sid="B")
    b = derive_best_response(folder(tmp_path, obs, subjects=("A", "B", "C"), dosed=("A", "B", "C")))
    o = orr(b).row(0, named=True)
    assert (o["n"], o["n_responders"], o["n_not_evaluable"], o["n_evaluable"]) == (3, 2, 1, 2)
    assert o["rate"] == pytest.approx(2 / 3) and o["rate_evaluable"] == pytest.approx(1.0)
    assert o["ci_low_evaluable"] == pytest.approx(0.025 ** 0.5, abs=1e-9)  # k=n=2: lo = (alpha/2)^(1/n)
    assert "C (response.NE)" in o["reason"]


# B1/B2/B3/B5 -- traceability: the other same-day NEUT, the equally near PBBLAST and the baseline day.

def test_b1_b2_b3_reason_names_the_other_values(tmp_path):
    obs = [cell(-200, "BMBLAST", "40"), cell(28, "BMBLAST", "2"), cell(28, "NEUT", "1.2", "10^9/L", "PB"),
           cell(28, "NEUT", "0.8", "10^9/L", "PB"), cell(28, "PLAT", "150", "10^9/L", "PB"),
           cell(25, "PBBLAST", "2", specimen="PB"), cell(31, "PBBLAST", "0", specimen="PB")]
    r = derive_marrow_response(folder(tmp_path, obs)).row(0, named=True)
    assert r["category"] == "NR"  # verdict unchanged (earlier PB 2% used, documented convention)
    assert "2 NEUT on day 28" in r["reason"] and "1.2" in r["reason"]
    assert "equally near" in r["reason"] and "day 31" in r["reason"]
    assert "pre-treatment marrow on day -200 (200 days before day 0)" in r["reason"]
    assert {"observations.csv:3", "observations.csv:4", "observations.csv:7"} <= set(r["evidence"])


def test_rate_population_is_an_analysis_option(tmp_path):
    """The response rates' population is recorded in the analysis options (``--set
    best_response.rate_population=all``), not only an ``orr()`` argument (lead, session 38)."""
    from cartlab.response.best import BestResponseOptions

    assert BestResponseOptions().rate_population == "infused"
    with pytest.raises(Exception):
        BestResponseOptions(rate_population="everyone")
