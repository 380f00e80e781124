"""Eligibility screening (cartlab.protocol.eligibility) rule by rule.

Every criterion is tested in isolation: a one- or two-criterion protocol parsed from YAML text with
:func:`parse_protocol` and a tiny in-memory :class:`Study` built with :func:`conform`, with
``src_file``/``src_row`` set so that the evidence of each decision can be checked. The last part
runs the seed case against the shipped protocol NCT04762485.
"""

from __future__ import annotations

import textwrap

import polars as pl
import pytest

from cartlab.io.dictionary import load_dictionary
from cartlab.model import Study
from protocol_helpers import frame
from cartlab.protocol import ELIGIBILITY_SCHEMA, eligibility_verdict, load_protocol, parse_protocol, derive_eligibility

# -------------------------------------------------------------------------------------------------
# builders

_HEAD = """\
schema: cartlab-protocol/1
id: elig-test
title: Eligibility test protocol
version: "1"
citation: unit test
source: reconstructed
screening_window: [{lo}, {hi}]
car_t:
  product: test CAR-T
  bands:
    - {{unit: cells/kg, target: 1.0e6, max: 2.0e6, citation: test}}
  infusions:
    - {{day: 0, fraction: 1}}
  citation: test
eligibility:
"""


def proto(criteria: str, window: tuple[float, float] = (-30, -1)):
    """A protocol whose eligibility list is the YAML list ``criteria`` (dedented)."""
    text = _HEAD.format(lo=window[0], hi=window[1]) + textwrap.indent(textwrap.dedent(criteria).strip("\n"), "  ")
    return parse_protocol(text + "\n", "elig-test.yaml")


SUBJECT = dict(subject_id="S1", sex="F", age_years=40.0, weight_kg=70.0, height_cm=170.0, disease="AML",
               target="CD7", last_followup_day=60.0, source="observed")


def subjects(*rows: dict) -> pl.DataFrame:
    return frame("subjects", rows or ({},), **SUBJECT)


_OBS_KEYS = ("subject_id", "day", "param", "analyte", "value", "value_text", "unit", "lln", "uln",
             "censor", "censor_limit", "source", "src_file", "src_row")


def observations(*rows: dict) -> pl.DataFrame:
    """Observation rows in canonical units; src_row numbers them (1-based) unless given."""
    d = load_dictionary()
    base = dict.fromkeys(k for k in _OBS_KEYS if not k.startswith("src_"))
    return frame("observations", [{**base, "subject_id": "S1", "unit": d[r["param"]].unit, "source": "observed", **r}
                                  for r in rows])


def events(*rows: dict) -> pl.DataFrame:
    return frame("events", rows, subject_id="S1", detail=None, source="observed")


def study(subj: pl.DataFrame | None = None, obs=(), ev=()) -> Study:
    return Study(study_id="T", subjects=subj if subj is not None else subjects(),
                 observations=observations(*obs), events=events(*ev))


def screen1(p, s, criterion_id: str | None = None) -> dict:
    """The screening row of one criterion (the only one unless criterion_id is given)."""
    res = derive_eligibility(s, p)
    assert res.schema == pl.Schema(ELIGIBILITY_SCHEMA)
    if criterion_id is None:
        assert res.height == 1
        return res.row(0, named=True)
    return res.filter(pl.col("criterion_id") == criterion_id).row(0, named=True)


# -------------------------------------------------------------------------------------------------
# field criteria (subjects.csv)

AGE = """
- id: age
  text: Age 12-65 years
  field: age_years
  op: between
  value: [12, 65]
  citation: test inclusion 1
"""


@pytest.mark.parametrize("age, status", [
    (11.99, "fail"), (12.0, "pass"), (12.01, "pass"),
    # s33: ages are compared in completed years by default (65.01 is 65 years of age); 66.0 fails
    (64.99, "pass"), (65.0, "pass"), (65.01, "pass"), (66.0, "fail"),
])
def test_field_between_is_inclusive_at_both_ends(age, status):
    r = screen1(proto(AGE), study(subjects({"age_years": age})))
    assert r["status"] == status
    assert r["kind"] == "inclusion"
    assert r["unit"] == "years"
    assert r["day"] is None
    assert r["evidence"] == ["subjects.csv:1"]
    assert r["source"] == "observed"
    assert r["rule"] == "elig-test.eligibility.age"
    assert r["citation"] == "test inclusion 1"
    assert ("does not meet" in r["reason"]) == (status == "fail")
    assert "between 12 and 65" in r["reason"]


def test_field_value_is_reported():
    r = screen1(proto(AGE), study(subjects({"age_years": 17.0})))
    assert (r["status"], r["value"]) == ("pass", "17")
    assert r["reason"] == "age at infusion (study format) age_years = 17, meets between 12 and 65"


def test_field_missing_is_unknown_without_evidence():
    r = screen1(proto(AGE), study(subjects({"age_years": None})))
    assert r["status"] == "unknown"
    assert r["value"] is None
    assert r["evidence"] == []
    assert "age_years is not recorded" in r["reason"]


@pytest.mark.parametrize("disease, status", [("AML", "pass"), ("T-ALL", "pass"), ("B-ALL", "fail"), (None, "unknown")])
def test_field_in(disease, status):
    p = proto("""
    - id: disease
      text: AML or T-ALL
      field: disease
      op: in
      value: [AML, T-ALL]
    """)
    assert screen1(p, study(subjects({"disease": disease})))["status"] == status


@pytest.mark.parametrize("target, status", [("CD7", "fail"), ("CD19", "pass")])
def test_field_not_in(target, status):
    p = proto("""
    - id: not_cd7
      text: target other than CD7 or CD5
      field: target
      op: not_in
      value: [CD7, CD5]
    """)
    assert screen1(p, study(subjects({"target": target})))["status"] == status


@pytest.mark.parametrize("sex, status", [("F", "pass"), ("M", "fail")])
def test_field_equals(sex, status):
    p = proto("""
    - id: female
      text: female
      field: sex
      op: "=="
      value: F
    """)
    assert screen1(p, study(subjects({"sex": sex})))["status"] == status


@pytest.mark.parametrize("weight, status", [(29.9, "fail"), (30.0, "fail"), (30.1, "pass")])
def test_field_numeric_comparison(weight, status):
    p = proto("""
    - id: weight
      text: weight above 30 kg
      field: weight_kg
      op: ">"
      value: 30
    """)
    assert screen1(p, study(subjects({"weight_kg": weight})))["status"] == status


# -------------------------------------------------------------------------------------------------
# param criteria: operators and boundaries


def _alt_criterion(op: str, value) -> str:
    v = f"[{value[0]}, {value[1]}]" if isinstance(value, list) else str(value)
    return f"""
    - id: alt
      text: ALT test
      param: ALT
      op: "{op}"
      value: {v}
    """


@pytest.mark.parametrize("op, cutoff, value, status", [
    ("<", 40, 39.99, "pass"), ("<", 40, 40.0, "fail"), ("<", 40, 40.01, "fail"),
    ("<=", 40, 39.99, "pass"), ("<=", 40, 40.0, "pass"), ("<=", 40, 40.01, "fail"),
    (">", 40, 39.99, "fail"), (">", 40, 40.0, "fail"), (">", 40, 40.01, "pass"),
    (">=", 40, 39.99, "fail"), (">=", 40, 40.0, "pass"), (">=", 40, 40.01, "pass"),
    ("between", [10, 40], 9.99, "fail"), ("between", [10, 40], 10.0, "pass"), ("between", [10, 40], 10.01, "pass"),
    ("between", [10, 40], 39.99, "pass"), ("between", [10, 40], 40.0, "pass"), ("between", [10, 40], 40.01, "fail"),
])
def test_param_boundaries(op, cutoff, value, status):
    p = proto(_alt_criterion(op, cutoff))
    r = screen1(p, study(obs=[{"param": "ALT", "day": -5, "value": value}]))
    assert r["status"] == status
    assert r["value"] == f"{value:g}"
    assert r["unit"] == "U/L"
    assert r["day"] == -5.0
    assert r["evidence"] == ["observations.csv:1"]
    assert r["source"] == "observed"


@pytest.mark.parametrize("op, value, status", [("==", 1, "pass"), ("==", 0, "fail"), ("!=", 0, "pass"), ("!=", 1, "fail")])
def test_param_equality_on_a_unitless_score(op, value, status):
    p = proto(f"""
    - id: ecog
      text: ECOG test
      param: ECOG
      op: "{op}"
      value: {value}
    """)
    r = screen1(p, study(obs=[{"param": "ECOG", "day": -3, "value": 1.0}]))
    assert r["status"] == status
    assert r["unit"] == ""


def test_param_missing_is_unknown():
    p = proto(_alt_criterion("<=", 40))
    r = screen1(p, study(obs=[{"param": "AST", "day": -5, "value": 20.0}]))
    assert r["status"] == "unknown"
    assert r["value"] is None and r["day"] is None
    assert r["evidence"] == []
    assert r["reason"] == "no ALT result in days -30 to -1"


def test_param_analyte_must_match():
    p = proto("""
    - id: cd7
      text: CD7 on more than 30% of blasts
      param: TGTBLAST
      analyte: CD7
      op: ">"
      value: 30
      unit: "%"
    """)
    only_cd19 = study(obs=[{"param": "TGTBLAST", "analyte": "CD19", "day": -5, "value": 90.0}])
    r = screen1(p, only_cd19)
    assert r["status"] == "unknown"
    assert "TGTBLAST (CD7)" in r["reason"]
    both = study(obs=[{"param": "TGTBLAST", "analyte": "CD19", "day": -4, "value": 10.0},
                      {"param": "TGTBLAST", "analyte": "CD7", "day": -5, "value": 30.1}])
    r = screen1(p, both)
    assert (r["status"], r["value"], r["evidence"]) == ("pass", "30.1", ["observations.csv:2"])
    at_cut = study(obs=[{"param": "TGTBLAST", "analyte": "CD7", "day": -5, "value": 30.0}])
    assert screen1(p, at_cut)["status"] == "fail"


def test_row_without_value_or_censor_is_not_a_result():
    # a "not done" text result with neither value nor censor does not count as the screening value
    p = proto(_alt_criterion("<=", 40))
    s = study(obs=[{"param": "ALT", "day": -10, "value": 30.0},
                   {"param": "ALT", "day": -2, "value": None, "value_text": "not done"}])
    r = screen1(p, s)
    assert (r["status"], r["day"], r["evidence"]) == ("pass", -10.0, ["observations.csv:1"])


def test_evidence_without_src_file_is_empty():
    p = proto(_alt_criterion("<=", 40))
    r = screen1(p, study(obs=[{"param": "ALT", "day": -5, "value": 30.0, "src_file": None, "src_row": None}]))
    assert r["status"] == "pass"
    assert r["evidence"] == []


# -------------------------------------------------------------------------------------------------
# relative to the ULN

ALT_3ULN = """
- id: alt
  text: ALT <= 3 x ULN
  param: ALT
  op: "<="
  value: 3
  relative_to: uln
"""


@pytest.mark.parametrize("value, status", [(119.99, "pass"), (120.0, "pass"), (120.01, "fail")])
def test_relative_to_uln_boundary(value, status):
    r = screen1(proto(ALT_3ULN), study(obs=[{"param": "ALT", "day": -5, "value": value, "uln": 40.0}]))
    assert r["status"] == status
    assert "x ULN" in r["reason"]
    assert "(= 120 U/L)" in r["reason"]


def test_relative_to_uln_uses_the_uln_of_the_row_used():
    s = study(obs=[{"param": "ALT", "day": -10, "value": 100.0, "uln": 50.0},
                   {"param": "ALT", "day": -5, "value": 100.0, "uln": 30.0}])
    r = screen1(proto(ALT_3ULN), s)
    assert (r["status"], r["evidence"]) == ("fail", ["observations.csv:2"])  # 100 > 3 x 30


@pytest.mark.parametrize("uln", [None, 0.0])
def test_relative_to_uln_missing_is_unknown(uln):
    r = screen1(proto(ALT_3ULN), study(obs=[{"param": "ALT", "day": -5, "value": 30.0, "uln": uln}]))
    assert r["status"] == "unknown"
    assert "no ULN" in r["reason"]
    assert r["value"] == "30"
    assert r["evidence"] == ["observations.csv:1"]


def test_relative_to_lln():
    p = proto("""
    - id: plat
      text: platelets >= 0.5 x LLN
      param: PLAT
      op: ">="
      value: 0.5
      relative_to: lln
    """)
    lln = 150.0
    assert screen1(p, study(obs=[{"param": "PLAT", "day": -5, "value": 75.0, "lln": lln}]))["status"] == "pass"
    assert screen1(p, study(obs=[{"param": "PLAT", "day": -5, "value": 74.9, "lln": lln}]))["status"] == "fail"
    assert screen1(p, study(obs=[{"param": "PLAT", "day": -5, "value": 74.9}]))["status"] == "unknown"


def test_relative_to_uln_with_a_censored_result_and_no_uln_reports_the_text():
    r = screen1(proto(ALT_3ULN), study(obs=[{"param": "ALT", "day": -5, "value": None, "value_text": "<5",
                                              "censor": "<", "censor_limit": 5.0}]))
    assert r["status"] == "unknown"
    assert r["value"] == "<5"
    assert "None" not in r["reason"]


def test_relative_to_uln_with_a_censored_result_is_decided():
    r = screen1(proto(ALT_3ULN), study(obs=[{"param": "ALT", "day": -5, "value": None, "value_text": "<5",
                                              "censor": "<", "censor_limit": 5.0, "uln": 40.0}]))
    assert (r["status"], r["value"]) == ("pass", "<5")


# -------------------------------------------------------------------------------------------------
# unit of the threshold

BILI_MG_DL = """
- id: bilirubin
  text: Total bilirubin <= 2.0 mg/dL
  param: BILI
  op: "<="
  value: 2.0
  unit: mg/dL
"""


def _bili_cutoff_umol() -> float:
    conv = load_dictionary()["BILI"].conversion_from("mg/dL")
    return conv.scale * 2.0 + conv.offset


def test_bilirubin_cutoff_converts_to_about_34_2_umol_per_l():
    assert _bili_cutoff_umol() == pytest.approx(34.2, abs=0.02)


@pytest.mark.parametrize("value, status", [(34.0, "pass"), (34.2, "pass"), (34.3, "fail"), (35.0, "fail")])
def test_threshold_in_mg_dl_against_values_in_umol_per_l(value, status):
    r = screen1(proto(BILI_MG_DL), study(obs=[{"param": "BILI", "day": -5, "value": value}]))
    assert r["status"] == status
    assert r["unit"] == "umol/L"
    assert "<= 2 mg/dL (= 34.21 umol/L)" in r["reason"]


def test_threshold_in_mg_dl_exactly_at_the_converted_cutoff():
    cut = _bili_cutoff_umol()
    p = proto(BILI_MG_DL)
    assert screen1(p, study(obs=[{"param": "BILI", "day": -5, "value": cut}]))["status"] == "pass"
    assert screen1(p, study(obs=[{"param": "BILI", "day": -5, "value": cut * (1 + 1e-6)}]))["status"] == "fail"


@pytest.mark.parametrize("value, status", [(49.9, "fail"), (50.0, "pass"), (62.0, "pass")])
def test_threshold_as_a_fraction_against_percent(value, status):
    p = proto("""
    - id: lvef
      text: LVEF >= 0.5
      param: LVEF
      op: ">="
      value: 0.5
      unit: fraction
    """)
    assert screen1(p, study(obs=[{"param": "LVEF", "day": -5, "value": value}]))["status"] == status


def test_between_threshold_converted():
    p = proto("""
    - id: bili_range
      text: bilirubin 1-2 mg/dL
      param: BILI
      op: between
      value: [1.0, 2.0]
      unit: mg/dL
    """)
    lo, hi = _bili_cutoff_umol() / 2, _bili_cutoff_umol()
    for v, status in [(lo * 0.999, "fail"), (lo, "pass"), (25.0, "pass"), (hi, "pass"), (hi * 1.001, "fail")]:
        assert screen1(p, study(obs=[{"param": "BILI", "day": -5, "value": v}]))["status"] == status, v


# -------------------------------------------------------------------------------------------------
# censored results


def _censored(text: str, censor: str, limit: float, param: str = "BILI") -> dict:
    return {"param": param, "day": -5, "value": None, "value_text": text, "censor": censor, "censor_limit": limit}


@pytest.mark.parametrize("crit_op, crit_value, text, censor, limit, status", [
    # "<5" is below 34.2: decidable
    ("<=", 34.2, "<5", "<", 5.0, "pass"),
    ("<", 34.2, "<5", "<", 5.0, "pass"),
    (">", 10, "<5", "<", 5.0, "fail"),
    (">=", 5, "<5", "<", 5.0, "fail"),
    (">", 5, "<5", "<", 5.0, "fail"),
    # "<5" against a cut-off inside the interval: undecidable
    ("<=", 3, "<5", "<", 5.0, "unknown"),
    (">", 3, "<5", "<", 5.0, "unknown"),
    # at the limit: open vs closed ends
    ("<", 5, "<5", "<", 5.0, "pass"),
    ("<=", 5, "<=5", "<=", 5.0, "pass"),
    ("<", 5, "<=5", "<=", 5.0, "unknown"),
    (">=", 5, "<=5", "<=", 5.0, "unknown"),
    # right-censored
    ("<=", 34.2, ">100", ">", 100.0, "fail"),
    (">", 50, ">100", ">", 100.0, "pass"),
    (">", 100, ">100", ">", 100.0, "pass"),
    ("<=", 100, ">100", ">", 100.0, "fail"),
    (">", 100, ">=100", ">=", 100.0, "unknown"),
    (">=", 100, ">=100", ">=", 100.0, "pass"),
    ("<", 100, ">=100", ">=", 100.0, "fail"),
    ("<=", 200, ">100", ">", 100.0, "unknown"),
    # between
    ("between", [10, 20], "<5", "<", 5.0, "fail"),
    ("between", [10, 20], "<15", "<", 15.0, "unknown"),
    ("between", [10, 20], ">25", ">", 25.0, "fail"),
    ("between", [10, 20], "<10", "<", 10.0, "fail"),
    ("between", [10, 20], "<=10", "<=", 10.0, "unknown"),
])
def test_censored_results(crit_op, crit_value, text, censor, limit, status):
    v = f"[{crit_value[0]}, {crit_value[1]}]" if isinstance(crit_value, list) else crit_value
    p = proto(f"""
    - id: bili
      text: bilirubin test
      param: BILI
      op: "{crit_op}"
      value: {v}
    """)
    r = screen1(p, study(obs=[_censored(text, censor, limit)]))
    assert r["status"] == status
    assert r["value"] == text
    assert r["evidence"] == ["observations.csv:1"]
    if status == "unknown":
        assert "cannot decide" in r["reason"]
    else:
        assert "cannot decide" not in r["reason"]


def test_censored_result_against_a_converted_threshold():
    # "<5 umol/L" is below 2.0 mg/dL (34.2 umol/L); "<50 umol/L" may or may not be
    p = proto(BILI_MG_DL)
    assert screen1(p, study(obs=[_censored("<5", "<", 5.0)]))["status"] == "pass"
    r = screen1(p, study(obs=[_censored("<50", "<", 50.0)]))
    assert r["status"] == "unknown"
    assert "cannot decide" in r["reason"]


def test_censored_result_is_the_last_value_when_it_is_latest():
    p = proto("""
    - id: bili
      text: bilirubin <= 3 umol/L
      param: BILI
      op: "<="
      value: 3
    """)
    s = study(obs=[{"param": "BILI", "day": -20, "value": 2.0}, _censored("<5", "<", 5.0)])
    r = screen1(p, s)
    assert (r["status"], r["day"], r["evidence"]) == ("unknown", -5.0, ["observations.csv:2"])


# -------------------------------------------------------------------------------------------------
# the screening window


# review 40 B8: the window compares calendar days: day -0.5 is 12:00 on calendar day -1, inside "days -30 to -1"
@pytest.mark.parametrize("day, used", [(-31, False), (-30, True), (-15, True), (-1, True), (-0.5, True), (0, False), (3, False)])
def test_window_ends_are_inclusive_and_values_outside_are_ignored(day, used):
    r = screen1(proto(_alt_criterion("<=", 40)), study(obs=[{"param": "ALT", "day": day, "value": 30.0}]))
    if used:
        assert (r["status"], r["day"]) == ("pass", float(day))
    else:
        assert r["status"] == "unknown"
        assert r["reason"] == "no ALT result in days -30 to -1"


def test_last_value_in_the_window_is_used():
    # rows deliberately out of day order; the day-0 value lies outside the window
    s = study(obs=[
        {"param": "ALT", "day": 0, "value": 500.0},
        {"param": "ALT", "day": -5, "value": 30.0},
        {"param": "ALT", "day": -20, "value": 200.0},
        {"param": "ALT", "day": -40, "value": 20.0},
    ])
    r = screen1(proto(_alt_criterion("<=", 40)), s)
    assert (r["status"], r["value"], r["day"]) == ("pass", "30", -5.0)
    assert r["evidence"] == ["observations.csv:2"]
    assert "last in days -30 to -1" in r["reason"]


def test_last_value_in_the_window_can_fail_after_an_earlier_pass():
    s = study(obs=[{"param": "ALT", "day": -20, "value": 30.0}, {"param": "ALT", "day": -2, "value": 41.0}])
    r = screen1(proto(_alt_criterion("<=", 40)), s)
    assert (r["status"], r["evidence"]) == ("fail", ["observations.csv:2"])


def test_same_day_tie_without_time_that_disagrees_is_unknown():
    # session 47 (review 46 F4): two untimed values of the last day have no order; 30 meets <= 40 and
    # 50 does not, so the criterion is unknown with both rows as evidence (was: the later row decided)
    s = study(obs=[{"param": "ALT", "day": -3, "value": 30.0}, {"param": "ALT", "day": -3, "value": 50.0}])
    r = screen1(proto(_alt_criterion("<=", 40)), s)
    assert (r["status"], sorted(r["evidence"])) == ("unknown", ["observations.csv:1", "observations.csv:2"])


def test_protocol_screening_window_is_used():
    p = proto(_alt_criterion("<=", 40), window=(-10, -6))
    s = study(obs=[{"param": "ALT", "day": -8, "value": 30.0}, {"param": "ALT", "day": -3, "value": 99.0}])
    r = screen1(p, s)
    assert (r["status"], r["day"]) == ("pass", -8.0)
    assert "days -10 to -6" in r["reason"]


def test_criterion_window_overrides_the_protocol_window():
    p = proto("""
    - id: alt_early
      text: ALT <= 40 at days -60..-40
      param: ALT
      op: "<="
      value: 40
      window: [-60, -40]
    """)
    s = study(obs=[{"param": "ALT", "day": -50, "value": 30.0}, {"param": "ALT", "day": -5, "value": 99.0}])
    r = screen1(p, s)
    assert (r["status"], r["day"], r["evidence"]) == ("pass", -50.0, ["observations.csv:1"])
    assert "days -60 to -40" in r["reason"]
    # only a value in the protocol window: unknown for this criterion
    r = screen1(p, study(obs=[{"param": "ALT", "day": -5, "value": 30.0}]))
    assert r["status"] == "unknown"
    assert r["reason"] == "no ALT result in days -60 to -40"


# -------------------------------------------------------------------------------------------------
# event criteria

INFECTION = """
- id: active_infection
  kind: exclusion
  text: Active infection
  event: infection
"""


def test_event_in_window_excludes():
    s = study(ev=[{"day": -7, "event": "infection", "detail": "pneumonia"}])
    r = screen1(proto(INFECTION), s)
    assert r["status"] == "fail"
    assert r["kind"] == "exclusion"
    assert r["day"] == -7.0
    assert r["value"] == "infection"
    assert r["evidence"] == ["events.csv:1"]
    assert r["reason"].startswith("excluded: ")
    assert "infection recorded on day -7 (pneumonia)" in r["reason"]


def test_event_latest_in_window_is_reported():
    s = study(ev=[{"day": -20, "event": "infection"}, {"day": -4, "event": "infection"},
                  {"day": 2, "event": "infection"}])
    r = screen1(proto(INFECTION), s)
    assert (r["status"], r["day"], r["evidence"]) == ("fail", -4.0, ["events.csv:2"])


@pytest.mark.parametrize("ev", [
    [],
    [{"day": -40, "event": "infection"}],  # before the window
    [{"day": 0, "event": "infection"}],  # after the window
    [{"day": -5, "event": "relapse"}],  # another event
])
def test_no_event_in_window_is_unknown(ev):
    r = screen1(proto(INFECTION), study(ev=ev))
    assert r["status"] == "unknown"
    assert r["evidence"] == []
    assert "absence of a record is not evidence of absence" in r["reason"]
    assert not r["reason"].startswith(("excluded", "not excluded"))


def test_absence_means_no_for_an_exclusion():
    p = proto(INFECTION + "  absence_means_no: true\n")
    r = screen1(p, study())
    assert r["status"] == "pass"
    assert r["reason"].startswith("not excluded: ")
    assert "no infection event recorded in days -30 to -1" in r["reason"]
    # a recorded event still excludes
    assert screen1(p, study(ev=[{"day": -3, "event": "infection"}]))["status"] == "fail"


def test_event_inclusion_and_absence_means_no():
    base = """
    - id: prior_hsct
      text: Prior allogeneic HSCT
      event: allo_hsct
      window: [-3650, -1]
    """
    assert screen1(proto(base), study(ev=[{"day": -400, "event": "allo_hsct"}]))["status"] == "pass"
    assert screen1(proto(base), study())["status"] == "unknown"
    strict = proto(base.rstrip() + "\n      absence_means_no: true\n")
    assert screen1(strict, study())["status"] == "fail"


# -------------------------------------------------------------------------------------------------
# manual criteria


def test_manual_is_always_unknown():
    p = proto("""
    - id: rr
      text: Relapsed or refractory
      manual: true
    - id: pregnancy
      kind: exclusion
      text: Pregnant
      manual: true
    """)
    res = derive_eligibility(study(obs=[{"param": "ALT", "day": -5, "value": 30.0}]), p)
    assert res["status"].to_list() == ["unknown", "unknown"]
    assert res["kind"].to_list() == ["inclusion", "exclusion"]
    for r in res.iter_rows(named=True):
        assert "check the source documents" in r["reason"]
        assert r["evidence"] == []
        assert r["value"] is None


def test_note_is_appended_to_the_reason():
    p = proto("""
    - id: rr
      text: Relapsed or refractory
      manual: true
      note: read from the registry record
    """)
    assert screen1(p, study())["reason"].endswith("[note: read from the registry record]")


# -------------------------------------------------------------------------------------------------
# exclusion semantics with data


ALT_5ULN_EXCL = """
- id: hepatic
  kind: exclusion
  text: ALT > 5 x ULN
  param: ALT
  op: ">"
  value: 5
  relative_to: uln
"""


@pytest.mark.parametrize("value, status", [(250.0, "pass"), (250.01, "fail")])
def test_exclusion_condition_true_fails(value, status):
    r = screen1(proto(ALT_5ULN_EXCL), study(obs=[{"param": "ALT", "day": -5, "value": value, "uln": 50.0}]))
    assert r["status"] == status
    assert r["reason"].startswith("excluded: " if status == "fail" else "not excluded: ")


def test_exclusion_unknown_stays_unknown():
    r = screen1(proto(ALT_5ULN_EXCL), study())
    assert r["status"] == "unknown"
    assert r["reason"].startswith("no ALT result")


def test_exclusion_on_a_field():
    p = proto("""
    - id: minor
      kind: exclusion
      text: younger than 18
      field: age_years
      op: "<"
      value: 18
    """)
    assert screen1(p, study(subjects({"age_years": 17.0})))["status"] == "fail"
    assert screen1(p, study(subjects({"age_years": 18.0})))["status"] == "pass"


# -------------------------------------------------------------------------------------------------
# any_of

CARDIAC = """
- id: cardiac
  text: LVEF >= 50% or NYHA I/II
  any_of:
    - id: lvef
      text: LVEF >= 50%
      param: LVEF
      op: ">="
      value: 50
      unit: "%"
    - id: nyha
      text: NYHA I or II
      manual: true
"""

CARDIAC_DATA = """
- id: cardiac
  text: LVEF >= 50% or ECOG <= 1
  any_of:
    - id: lvef
      text: LVEF >= 50%
      param: LVEF
      op: ">="
      value: 50
    - id: ecog
      text: ECOG <= 1
      param: ECOG
      op: "<="
      value: 1
"""


def test_any_of_true_or_unknown_passes():
    r = screen1(proto(CARDIAC), study(obs=[{"param": "LVEF", "day": -5, "value": 55.0}]))
    assert r["status"] == "pass"
    assert (r["value"], r["unit"], r["day"]) == ("55", "%", -5.0)
    assert r["evidence"] == ["observations.csv:1"]
    assert "[LVEF >= 50%: " in r["reason"] and " OR [NYHA I or II: " in r["reason"]


def test_any_of_false_or_unknown_is_unknown():
    r = screen1(proto(CARDIAC), study(obs=[{"param": "LVEF", "day": -5, "value": 45.0}]))
    assert r["status"] == "unknown"
    assert r["evidence"] == ["observations.csv:1"]


def test_any_of_unknown_or_unknown_is_unknown():
    r = screen1(proto(CARDIAC), study())
    assert r["status"] == "unknown"
    assert r["evidence"] == []


@pytest.mark.parametrize("lvef, ecog, status", [
    (55.0, 3.0, "pass"), (45.0, 1.0, "pass"), (55.0, 0.0, "pass"),
    (45.0, 2.0, "fail"),
    (None, 2.0, "unknown"), (45.0, None, "unknown"),
    (None, 0.0, "pass"),
])
def test_any_of_three_valued_or(lvef, ecog, status):
    obs = []
    if lvef is not None:
        obs.append({"param": "LVEF", "day": -5, "value": lvef})
    if ecog is not None:
        obs.append({"param": "ECOG", "day": -4, "value": ecog})
    r = screen1(proto(CARDIAC_DATA), study(obs=obs))
    assert r["status"] == status


def test_any_of_fail_lists_all_evidence():
    s = study(obs=[{"param": "LVEF", "day": -5, "value": 45.0}, {"param": "ECOG", "day": -4, "value": 2.0}])
    r = screen1(proto(CARDIAC_DATA), s)
    assert r["status"] == "fail"
    assert r["evidence"] == ["observations.csv:1", "observations.csv:2"]


def test_any_of_pass_reports_the_passing_part():
    s = study(obs=[{"param": "LVEF", "day": -5, "value": 45.0}, {"param": "ECOG", "day": -4, "value": 1.0}])
    r = screen1(proto(CARDIAC_DATA), s)
    assert (r["status"], r["value"], r["day"]) == ("pass", "1", -4.0)


def test_any_of_as_exclusion():
    p = proto("""
    - id: organ
      kind: exclusion
      text: ALT > 5 x ULN or bilirubin > 3 mg/dL
      any_of:
        - id: alt
          text: ALT > 5 x ULN
          param: ALT
          op: ">"
          value: 5
          relative_to: uln
        - id: bili
          text: bilirubin > 3 mg/dL
          param: BILI
          op: ">"
          value: 3
          unit: mg/dL
    """)
    ok = study(obs=[{"param": "ALT", "day": -5, "value": 60.0, "uln": 40.0}, {"param": "BILI", "day": -5, "value": 10.0}])
    assert screen1(p, ok)["status"] == "pass"
    bad = study(obs=[{"param": "ALT", "day": -5, "value": 60.0, "uln": 40.0}, {"param": "BILI", "day": -5, "value": 60.0}])
    assert screen1(p, bad)["status"] == "fail"
    half = study(obs=[{"param": "ALT", "day": -5, "value": 60.0, "uln": 40.0}])
    assert screen1(p, half)["status"] == "unknown"


def test_any_of_passes_its_window_to_its_parts():
    p = proto("""
    - id: cardiac
      text: LVEF >= 50% or ECOG <= 1
      window: [-90, -60]
      any_of:
        - id: lvef
          text: LVEF >= 50%
          param: LVEF
          op: ">="
          value: 50
        - id: ecog
          text: ECOG <= 1
          param: ECOG
          op: "<="
          value: 1
          window: [-5, -1]
    """)
    s = study(obs=[{"param": "LVEF", "day": -70, "value": 45.0}, {"param": "LVEF", "day": -5, "value": 60.0},
                   {"param": "ECOG", "day": -70, "value": 0.0}, {"param": "ECOG", "day": -3, "value": 2.0}])
    r = screen1(p, s)
    # LVEF from the any_of window (-70: 45, fail); ECOG from its own window (-3: 2, fail)
    assert r["status"] == "fail"
    assert r["evidence"] == ["observations.csv:1", "observations.csv:4"]


# -------------------------------------------------------------------------------------------------
# several criteria, several subjects, the verdict

TWO = AGE + ALT_3ULN + """
- id: rr
  text: Relapsed or refractory
  manual: true
"""


def _three_subjects() -> Study:
    subj = subjects({"subject_id": "S1"}, {"subject_id": "S2", "age_years": 70.0}, {"subject_id": "S3"})
    obs = [
        {"subject_id": "S1", "param": "ALT", "day": -5, "value": 30.0, "uln": 40.0},
        {"subject_id": "S2", "param": "ALT", "day": -5, "value": 30.0, "uln": 40.0},
        {"subject_id": "S3", "param": "ALT", "day": -5, "value": 30.0},
    ]
    return study(subj, obs=obs)


def test_screen_rows_per_subject_and_criterion_in_order():
    res = derive_eligibility(_three_subjects(), proto(TWO))
    assert res.height == 9
    assert res["subject_id"].to_list() == ["S1"] * 3 + ["S2"] * 3 + ["S3"] * 3
    assert res["criterion_id"].to_list() == ["age", "alt", "rr"] * 3
    assert res["status"].to_list() == ["pass", "pass", "unknown",
                                       "fail", "pass", "unknown",
                                       "pass", "unknown", "unknown"]
    assert res.filter(pl.col("subject_id") == "S2")["evidence"].to_list()[0] == ["subjects.csv:2"]


def test_screen_one_subject():
    res = derive_eligibility(_three_subjects(), proto(TWO), subject_id="S2")
    assert res["subject_id"].unique().to_list() == ["S2"]
    assert res.height == 3


def test_screen_unknown_subject_raises():
    with pytest.raises(ValueError, match="no subject 'S9'"):
        derive_eligibility(_three_subjects(), proto(TWO), subject_id="S9")


def test_screen_without_criteria_is_empty_with_schema():
    p = parse_protocol(_HEAD.format(lo=-30, hi=-1).replace("eligibility:\n", ""), "none.yaml")
    res = derive_eligibility(study(), p)
    assert res.height == 0
    assert res.schema == pl.Schema(ELIGIBILITY_SCHEMA)
    v = eligibility_verdict(res)
    assert v.height == 0
    assert v.columns == ["subject_id", "verdict", "n_pass", "n_fail", "n_unknown", "failed", "unknown"]


def test_verdict_eligible_not_eligible_undetermined():
    p = proto(AGE + ALT_3ULN)
    subj = subjects({"subject_id": "A"}, {"subject_id": "B", "age_years": 70.0}, {"subject_id": "C"},
                    {"subject_id": "D", "age_years": 70.0})
    obs = [
        {"subject_id": "A", "param": "ALT", "day": -5, "value": 30.0, "uln": 40.0},  # all pass
        {"subject_id": "B", "param": "ALT", "day": -5, "value": 30.0},  # age fails, ALT unknown
        {"subject_id": "C", "param": "ALT", "day": -5, "value": 30.0},  # ALT unknown only
        {"subject_id": "D", "param": "ALT", "day": -5, "value": 300.0, "uln": 40.0},  # both fail
    ]
    v = eligibility_verdict(derive_eligibility(study(subj, obs=obs), p))
    rows = {r["subject_id"]: r for r in v.iter_rows(named=True)}
    assert list(rows) == ["A", "B", "C", "D"]
    assert rows["A"] == {"subject_id": "A", "verdict": "eligible", "n_pass": 2, "n_fail": 0, "n_unknown": 0,
                         "failed": "", "unknown": ""}
    assert rows["B"] == {"subject_id": "B", "verdict": "not eligible", "n_pass": 0, "n_fail": 1, "n_unknown": 1,
                         "failed": "age", "unknown": "alt"}
    assert rows["C"] == {"subject_id": "C", "verdict": "undetermined", "n_pass": 1, "n_fail": 0, "n_unknown": 1,
                         "failed": "", "unknown": "alt"}
    assert rows["D"]["verdict"] == "not eligible"
    assert rows["D"]["failed"] == "age, alt"


def test_verdict_with_a_failing_exclusion():
    p = proto(AGE + INFECTION)
    s = study(ev=[{"day": -2, "event": "infection"}])
    v = eligibility_verdict(derive_eligibility(s, p)).row(0, named=True)
    assert (v["verdict"], v["failed"]) == ("not eligible", "active_infection")


# -------------------------------------------------------------------------------------------------
# the seed case against NCT04762485


@pytest.fixture(scope="module")
def seed_screen() -> pl.DataFrame:
    from cartlab.datasets import seed_case_path
    from cartlab.io import read_study

    return derive_eligibility(read_study(seed_case_path()), load_protocol("nct04762485"))


def _by_id(frame: pl.DataFrame) -> dict[str, dict]:
    return {r["criterion_id"]: r for r in frame.iter_rows(named=True)}


def test_seed_cd7_on_blasts_passes(seed_screen):
    r = _by_id(seed_screen)["cd7_on_blasts"]
    assert r["status"] == "pass"
    assert r["value"] == "95.6"
    assert r["unit"] == "%"
    assert r["day"] == -7.0
    assert len(r["evidence"]) == 1 and r["evidence"][0].startswith("observations.csv:")


def test_seed_age_passes(seed_screen):
    r = _by_id(seed_screen)["age"]
    assert (r["status"], r["value"]) == ("pass", "17")
    assert r["evidence"] == ["subjects.csv:1"]


def test_seed_ecog_unknown(seed_screen):
    r = _by_id(seed_screen)["ecog"]
    assert r["status"] == "unknown"
    # the window ends on the day of the seed's first lymphodepletion dose (decitabine, day -6)
    assert r["reason"] == "no ECOG result in days -42 to -6, up to the first lymphodepletion dose on day -6"


def test_seed_other_decided_criteria(seed_screen):
    by = _by_id(seed_screen)
    for cid in ("disease", "ast", "alt", "bilirubin"):
        assert by[cid]["status"] == "pass", cid
        assert by[cid]["evidence"], cid
    for cid in ("relapsed_refractory", "cardiac", "pregnancy", "active_infection"):
        assert by[cid]["status"] == "unknown", cid


def test_seed_verdict_undetermined_with_no_fail(seed_screen):
    assert "fail" not in seed_screen["status"].to_list()
    v = eligibility_verdict(seed_screen)
    assert v.height == 1
    r = v.row(0, named=True)
    assert r["subject_id"] == "CD7-AML-001"
    assert r["verdict"] == "undetermined"
    assert r["n_fail"] == 0 and r["failed"] == ""
    assert "ecog" in r["unknown"].split(", ")
    assert r["n_pass"] + r["n_unknown"] == seed_screen.height


def test_calendar_date_from_the_infusion_date():
    p = proto("""
    - id: alt
      text: ALT <= 3 x ULN
      param: ALT
      op: "<="
      value: 3
      relative_to: uln
    - id: age
      text: adult
      field: age_years
      op: ">="
      value: 18
    """)
    s = study(subjects({"infusion_date": "2021-08-20"}), obs=[{"day": -7.0, "param": "ALT", "value": 30.0, "uln": 40.0}])
    res = derive_eligibility(s, p).sort("criterion_id")
    assert res["date"].to_list() == [None, "2021-08-13"]  # age has no day; ALT on day -7
    no_anchor = derive_eligibility(study(obs=[{"day": -7.0, "param": "ALT", "value": 30.0, "uln": 40.0}]), p)
    assert no_anchor["date"].is_null().all()
