"""Survival endpoints: the session-28 audit's cases (tests/fixtures/survival_s28, README.md there).

Every expected value is the auditor's hand derivation from ELN 2022 (Döhner et al., Blood 2022):
Table 9 (outcome measures: OS, EFS, RFS, CIR and duration of response run "to the date of" the
event) and Table 7 (hematologic relapse: marrow blasts >= 5%, reappearing blood blasts, or
development of extramedullary disease), and from the Kaplan-Meier product limit with Greenwood's
variance and the log(-log) interval - none is copied from cartlab's output.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cartlab.cli import app
from cartlab.io import read_study
from cartlab.response import derive_best_response, derive_relapse

CASES = Path(__file__).parent / "fixtures" / "survival_s28"


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """``cartlab analyze`` of every case, once."""
    root = tmp_path_factory.mktemp("surv28")
    runner = CliRunner()
    done = {}
    for case in ("c02_datetime", "c03_endpoints", "c04_cir", "c06_missing", "c07_pb_relapse"):
        res = runner.invoke(app, ["analyze", str(CASES / case), "--out", str(root / case)])
        assert res.exit_code == 0, res.output
        done[case] = root / case
    return done


def rows(path: Path, **match) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if all(r[k] == v for k, v in match.items())]


def tte(folder: Path, sid: str, paramcd: str) -> tuple[float, str, str]:
    (r,) = rows(folder / "adtte.csv", subject_id=sid, PARAMCD=paramcd)
    return float(r["AVAL"]), r["CNSR"], r["EVENT"]


# ---------------------------------------------------------------------------------------------
# 1. a relapse after a second remission is not lost


def test_relapse_after_a_later_remission_is_an_event(out):
    # P5: MLFS day 14, marrow blasts 10% day 28 (relapse from MLFS), CR day 60, blasts 20% day 120,
    # last_followup_day 200. RFS from the remission (day 60) to the relapse (day 120): 60, event;
    # EFS and LFS: relapse on day 120; CIR: relapse (EVENT 1) after 60 days
    f = out["c03_endpoints"]
    assert tte(f, "P5", "RFS") == (60.0, "0", "1")
    assert tte(f, "P5", "EFS") == (120.0, "0", "1")
    assert tte(f, "P5", "LFS") == (120.0, "0", "1")
    assert tte(f, "P5", "CIR") == (60.0, "0", "1")
    # the other subjects of the case keep the values the auditor derived (README: "match")
    assert tte(f, "P1", "RFS") == (62.0, "0", "1") and tte(f, "P2", "CIR") == (92.0, "2", "2")  # competing death: CNSR 2 (s29)
    assert tte(f, "P6", "RFS") == (122.0, "0", "1") and tte(f, "P8", "RFS") == (47.0, "1", "0")


def test_relapse_episodes():
    from cartlab.response.best import BestResponseOptions
    from cartlab.response.marrow import ResponseOptions

    s = read_study(CASES / "c03_endpoints")
    # session 35: relapse is looked for after CR/CRh/CRi (ELN 2022) by default; the CAR-T trial
    # convention (relapse after MLFS too) is the option relapse_after, under which this case was built
    mlfs = ResponseOptions(relapse_after=("CR", "CRh", "CRi", "MLFS"))
    p5 = derive_relapse(s, options=mlfs).filter(subject_id="P5")
    # episode 1 from the MLFS on day 14 to marrow blasts >= 5% on day 28; episode 2 from the CR on
    # day 60 to marrow blasts >= 5% on day 120
    assert p5.select("episode", "response_day", "response_category", "relapse_day", "relapse_rule").rows() == [
        (1, 14.0, "MLFS", 28.0, "eln2022.relapse.marrow"), (2, 60.0, "CR", 120.0, "eln2022.relapse.marrow")]
    # duration of response stays that of the first response: 14 -> 28
    b = derive_best_response(s, BestResponseOptions(response=mlfs)).filter(subject_id="P5").row(0, named=True)
    assert (b["first_response_day"], b["relapse_day"], b["dor_days"], b["dor_event"]) == (14.0, 28.0, 14.0, True)
    # default (ELN 2022): one episode, CR day 60 -> relapse day 120; the day-28 marrow (blasts 10%, 75%
    # below the pre-treatment 40%, counts recovered) is a PR, still a response, so the response from the
    # MLFS on day 14 lasts to the relapse: 120 - 14 = 106 days, an event
    assert derive_relapse(s).filter(subject_id="P5").select("episode", "response_day", "relapse_day").rows() == [
        (1, 60.0, 120.0)]
    d = derive_best_response(s).filter(subject_id="P5").row(0, named=True)
    assert (d["first_response_day"], d["relapse_day"], d["dor_days"], d["dor_event"]) == (14.0, 120.0, 106.0, True)


# ---------------------------------------------------------------------------------------------
# 2. date-times give the same time-to-event as the same facts in day numbers


def test_datetimes_count_on_their_calendar_day(out):
    # deaths at 08:00 and 20:00 on day 10, 12:00 on day 20, 00:00 on day 40 after an infusion at
    # 14:00; last_followup_day 10 and 30. OS: 10, 10, 10 (censored), 20, 30 (censored), 40.
    f = out["c02_datetime"]
    got = sorted((float(r["AVAL"]), r["CNSR"]) for r in rows(f / "adtte.csv", PARAMCD="OS"))
    assert got == [(10.0, "0"), (10.0, "0"), (10.0, "1"), (20.0, "0"), (30.0, "1"), (40.0, "0")]
    km = {float(r["time"]): r for r in rows(f / "km.csv", PARAMCD="OS")}
    # product limit: the censoring on day 10 stays at risk: S(10) = 1 - 2/6, S(20) = 4/6 * (1 - 1/3)
    assert float(km[10.0]["survival"]) == pytest.approx(4 / 6, abs=1e-12)
    assert float(km[20.0]["survival"]) == pytest.approx(4 / 9, abs=1e-12)
    (m,) = rows(f / "km_median.csv", PARAMCD="OS")
    assert float(m["median"]) == 20.0


def test_calendar_days_option_is_recorded_and_can_be_turned_off(out, tmp_path):
    opts = json.loads((out["c02_datetime"] / "analysis.json").read_text())["options"]["endpoints"]
    assert opts["calendar_days"] is True
    res = CliRunner().invoke(app, ["analyze", str(CASES / "c02_datetime"), "--out", str(tmp_path / "x"),
                                   "--set", "endpoints.calendar_days=false"])
    assert res.exit_code == 0, res.output
    # exact times: 08:00 on day 10 is day 10 + 8/24 (spec: "a time's day is the time from that
    # date's midnight"; the infusion date's midnight is day 0)
    s1 = rows(tmp_path / "x" / "adtte.csv", subject_id="S1", PARAMCD="OS")[0]
    assert float(s1["AVAL"]) == pytest.approx(10 + 8 / 24, abs=1e-9)


# ---------------------------------------------------------------------------------------------
# 3. duration of response ends at an extramedullary relapse


def test_duration_of_response_ends_at_extramedullary_relapse(out):
    # Q4: CR day 28, extramedullary_disease event day 88, death day 130: DoR 88 - 28 = 60, event
    (b,) = rows(out["c04_cir"] / "best_response.csv", subject_id="Q4")
    assert (float(b["relapse_day"]), b["relapse_rule"]) == (88.0, "eln2022.relapse.event")
    assert (float(b["dor_days"]), b["dor_event"]) == (60.0, "true")
    # and it agrees with CIR (EVENT 1 after 60 days from the remission)
    assert tte(out["c04_cir"], "Q4", "CIR") == (60.0, "0", "1")


# ---------------------------------------------------------------------------------------------
# 4. the Kaplan-Meier interval where S = 0


def test_km_interval_undefined_where_survival_reaches_zero(out):
    # c04 OS: deaths on days 58 and 130 among 5 subjects: S(58) = 4/5, S(130) = 0 (the last at risk
    # dies: d = n, Greenwood term infinite) -> no interval at 130 and the median's upper bound is not
    # reached (the upper band at 58 is 0.8 ** exp(-1.96 sqrt(1/20) / |log 0.8|) = 0.963 > 0.5)
    f = out["c04_cir"]
    km = {float(r["time"]): r for r in rows(f / "km.csv", PARAMCD="OS")}
    assert float(km[130.0]["survival"]) == 0.0 and km[130.0]["ci_low"] == km[130.0]["ci_high"] == ""
    hi = 0.8 ** math.exp(-1.959963984540054 * math.sqrt(1 / 20) / abs(math.log(0.8)))
    assert float(km[58.0]["ci_high"]) == pytest.approx(hi, abs=1e-9)
    (m,) = rows(f / "km_median.csv", PARAMCD="OS")
    assert (float(m["median"]), float(m["median_ci_low"]), m["median_ci_high"]) == (130.0, 58.0, "")


# ---------------------------------------------------------------------------------------------
# 5. no negative duration of response


def test_no_duration_of_response_when_death_precedes_the_response(out):
    # R3: CR marrow on day 28 but death on day 20: contradictory dates, no duration (was -8)
    (b,) = rows(out["c06_missing"] / "best_response.csv", subject_id="R3")
    assert b["dor_days"] == "" and b["dor_event"] == ""
    assert "death on day 20 precedes the first response on day 28" in b["reason"]


# ---------------------------------------------------------------------------------------------
# 6. every relapse rule id cited has a criteria row


def test_relapse_rule_ids_are_in_criteria_tables(out):
    (t1,) = rows(out["c07_pb_relapse"] / "best_response.csv", subject_id="T1")
    # PBBLAST 3% day 40 and 4% day 50 (>= 7 days apart) after CR day 28: relapse on the second sample
    assert (float(t1["relapse_day"]), t1["relapse_rule"], t1["relapse_rule_status"]) == (
        50.0, "eln2022.relapse.pb_blasts", "unverified")
    for case in out.values():
        rules = json.loads((case / "analysis.json").read_text())["rules"]
        assert rules.get("not_in_a_criteria_table", []) == [], case.name


def test_explain_endpoints_names_times_events_and_relapse_episodes():
    from cartlab.explain import explain

    from cartlab.analyze import AnalysisOptions

    # session 35: the case's relapse after MLFS is the CAR-T convention (option relapse_after)
    mlfs = AnalysisOptions.from_settings({"response": {"relapse_after": ["CR", "CRh", "CRi", "MLFS"]}})
    ex = explain(read_study(CASES / "c03_endpoints"), "endpoints", "P5", options=mlfs)
    # the hand values of test_relapse_after_a_later_remission_is_an_event
    assert ex.headline.startswith("OS 200 days, censored")
    assert "RFS 60 days, event (relapse)" in ex.headline and "CIR 60 days, event (relapse)" in ex.headline
    reasons = ex.days["reason"].to_list()
    assert any(r.startswith("relapse episode 2: response CR on day 60") for r in reasons)
    # session 33: the duration's own end is named ("to day 28 (relapse)"): response day 14 + 14 days
    assert any("duration of response from the first response on day 14: 14 days to day 28" in r
               and ", event" in r for r in reasons)
    assert {"rfs.relapse", "eln2022.relapse.marrow"} <= set(ex.rules)
    never = explain(read_study(CASES / "c03_endpoints"), "endpoints", "P3")  # NR: never in remission
    assert "RFS not defined" in never.headline
