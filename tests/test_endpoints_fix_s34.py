"""Session 34 fixes of the survival endpoints / ADTTE (review 34 against ELN 2022 Table 9).

* A1: EFS of a subject in remission without relapse or death is censored on the day it was last
  assessed for response (ELN 2022 Table 9), option ``efs_censor``; KM and median by hand.
* B1: a subject not evaluable by the landmark who dies after it is an EFS event on the death day
  (ELN censors only "patients alive who are non-evaluable"), option ``efs_ne_death_after_landmark``.
* B2: ``censor_at_allo_hsct`` / ``censor_at_new_therapy`` leave OS alone (``censor_params``).
* B3: EFS without a landmark is said once (a CartlabWarning, in the analysis warnings).
* C2 (module docstring on the median), C4 (EVNTDESC of censored ADaM rows).
Expected values are worked out by hand in the comments (the review's probe p1, review34 REPORT.md).
"""

from __future__ import annotations

import dataclasses
import warnings

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import endpoints_reference as ref
from cartlab.analyze import Analysis, AnalysisOptions
from cartlab.datasets import seed_case
from cartlab.errors import CartlabWarning, InputError
from cartlab.response import endpoints
from cartlab.response.endpoints import EndpointOptions, derive_adtte, km_estimate, median_survival
from test_endpoints import EVENTS, RESP, SUBJECTS, make_study, responses

# the review's probe p1 (review34_endpoints/mk.py): one marrow per subject on day 28 (or none)
P1_SUBJECTS = [{"subject_id": s, "last_followup_day": fu} for s, fu in
               [("S1", 150), ("S2", 200), ("S3", 60), ("S4", None), ("S5", 40), ("S6", 50), ("S7", 300),
                ("S8", None), ("S9", 200)]]
P1_EVENTS = [("S1", 100, "relapse"), ("S1", 150, "death"), ("S3", 60, "death"), ("S4", 5, "death"),
             ("S6", 50, "death"), ("S7", 60, "allo_hsct"), ("S7", 200, "relapse"), ("S8", 0, "death"),
             ("S9", 200, "relapse")]
P1_RESP = [("S1", "CR", 28), ("S2", "CR", 28), ("S3", "NR", 28), ("S6", "CR", 28), ("S7", "CR", 28),
           ("S9", "CR", 28)]


def _p1():
    return make_study(P1_SUBJECTS, P1_EVENTS), responses(P1_RESP)


def _adtte(study, resp, **opts):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CartlabWarning)
        return derive_adtte(study, EndpointOptions(**opts), responses=resp)


def _row(adtte, sid, paramcd):
    rows = adtte.filter((pl.col("subject_id") == sid) & (pl.col("PARAMCD") == paramcd))
    assert rows.height == 1
    return rows.row(0, named=True)


def _s_at(km, t):
    """S(t) of a KM table: the estimate at the last time <= t."""
    return km.filter(pl.col("time") <= t).sort("time")["survival"][-1]


# ---------------------------------------------------------------------------------------------
# A1: EFS censored on the day last assessed for response


def test_efs_censored_at_last_response_assessment():
    a = _adtte(*_p1())
    s2 = _row(a, "S2", "EFS")
    # S2: CR on day 28 (its only marrow), no relapse or death, last_followup_day 200 -> ELN: day 28
    assert (s2["ADY"], s2["AVAL"], s2["CNSR"], s2["EVENT"]) == (28.0, 28.0, 1, 0)
    assert (s2["CNSDTDSC"], s2["rule"], s2["SRCDOM"]) == ("LAST RESPONSE ASSESSMENT", "censor.last_assessment",
                                                           "responses")
    assert "CR on day 28" in s2["reason"] and "last known alive on day 200" in s2["reason"]
    assert s2["evidence"] == ["adrs:S21"]
    # OS / RFS stay on the last-known-alive day (ELN: "last known to be alive")
    assert (_row(a, "S2", "OS")["AVAL"], _row(a, "S2", "OS")["rule"]) == (200.0, "censor.last_alive")
    assert (_row(a, "S2", "RFS")["AVAL"], _row(a, "S2", "RFS")["rule"]) == (172.0, "censor.last_alive")


def test_efs_km_and_median_by_hand():
    a = _adtte(*_p1())
    # EFS by hand: events at 0 (S3 treatment failure, S4 and S8 death without assessment), S5 censored
    # at 0 (alive, not evaluable), S2 censored at 28, S6 death at 50, S1 relapse at 100, S7 and S9
    # relapse at 200. S(0) = 6/9; at 50: n = 4 (S1, S6, S7, S9) -> 6/9 * 3/4 = 0.5; at 100: n = 3 ->
    # 1/3; at 200: n = 2, d = 2 -> 0. (The old last-known-alive censoring gave .5333, .4, .1333.)
    km = km_estimate(a, "EFS")
    for t, s in ((0, 6 / 9), (28, 6 / 9), (50, 0.5), (99, 0.5), (100, 1 / 3), (200, 0.0)):
        assert _s_at(km, t) == pytest.approx(s, abs=1e-12), t
    # median: S = 0.5 exactly on [50, 100) -> R midpoint rule: 75 (the old value was 100)
    assert median_survival(a, "EFS")["median"][0] == pytest.approx(75.0)


def test_efs_last_assessment_is_the_last_evaluable_one():
    study = make_study([{"subject_id": "X", "last_followup_day": 300.0}, {"subject_id": "Y", "last_followup_day": 300.0}])
    # X: CR 28, CR 90, NE 120 (an NE is no response assessment): censored on day 90
    # Y: CR 28 and an undated NR: censored on day 28
    resp = responses([("X", "CR", 28), ("X", "CR", 90), ("X", "NE", 120), ("Y", "CR", 28), ("Y", "NR", None)])
    a = _adtte(study, resp)
    x, y = _row(a, "X", "EFS"), _row(a, "Y", "EFS")
    assert (x["AVAL"], x["CNSR"], x["rule"], x["evidence"]) == (90.0, 1, "censor.last_assessment", ["adrs:X0", "adrs:X1"])
    assert (y["AVAL"], y["CNSR"], y["rule"]) == (28.0, 1, "censor.last_assessment")
    # the day last known alive is 300 (follow-up), well after: OS is censored there
    assert _row(a, "X", "OS")["AVAL"] == 300.0


def test_efs_censor_last_known_alive_option_keeps_the_previous_behaviour():
    a = _adtte(*_p1(), efs_censor="last_known_alive")
    s2 = _row(a, "S2", "EFS")
    assert (s2["AVAL"], s2["CNSR"], s2["CNSDTDSC"], s2["rule"]) == (200.0, 1, "LAST KNOWN ALIVE", "censor.last_alive")
    # the review's hand values of the old behaviour: .5333 at 50, .4 at 100, .1333 at 200, median 100
    km = km_estimate(a, "EFS")
    for t, s in ((50, 6 / 9 * 4 / 5), (100, 6 / 9 * 4 / 5 * 3 / 4), (200, 6 / 9 * 4 / 5 * 3 / 4 / 3)):
        assert _s_at(km, t) == pytest.approx(s, abs=1e-12)
    assert median_survival(a, "EFS")["median"][0] == pytest.approx(100.0)
    with pytest.raises(InputError, match="efs_censor"):
        EndpointOptions(efs_censor="last_seen")


def test_rule_rows_have_citation_and_status():
    rules = {r["id"]: r for r in endpoints.endpoint_definitions()["rules"]}
    la = rules["censor.last_assessment"]
    assert la["status"] == "verified" and "last assessed for response" in la["citation"]
    for rid in ("efs.death_not_evaluable", "efs.not_evaluable_died_after_landmark"):
        assert rules[rid]["status"] == "convention" and "ELN 2022 Table 9" in rules[rid]["citation"]
    assert "last assessed for response" in endpoints.endpoint_definitions()["params"]["EFS"]["citation"]
    # the docstring no longer says there is no assessment date
    assert "no separate" not in endpoints.__doc__


# ---------------------------------------------------------------------------------------------
# B1: not evaluable by the landmark, death after it


def test_not_evaluable_death_after_landmark_is_an_event():
    a = _adtte(*_p1(), efs_landmark_day=3)
    s4 = _row(a, "S4", "EFS")  # no marrow, death on day 5, landmark day 3
    assert (s4["ADY"], s4["AVAL"], s4["CNSR"], s4["EVENT"], s4["EVNTDESC"]) == (5.0, 5.0, 0, 1, "DEATH")
    assert s4["rule"] == "efs.death_not_evaluable" and "alive" not in s4["reason"]
    assert s4["evidence"] == ["events.csv:4"]
    # S5: no marrow, alive at 40 -> still censored at day 0 as alive and not evaluable
    s5 = _row(a, "S5", "EFS")
    assert (s5["AVAL"], s5["CNSR"], s5["rule"]) == (0.0, 1, "efs.not_evaluable")
    # S8: death on day 0, before the landmark -> treatment failure at day 0, unchanged
    assert (_row(a, "S8", "EFS")["AVAL"], _row(a, "S8", "EFS")["rule"]) == (0.0, "efs.death_without_assessment")


def test_not_evaluable_death_after_landmark_censor_option():
    a = _adtte(*_p1(), efs_landmark_day=3, efs_ne_death_after_landmark="censor")
    s4 = _row(a, "S4", "EFS")
    assert (s4["AVAL"], s4["CNSR"], s4["EVENT"]) == (0.0, 1, 0)
    assert s4["rule"] == "efs.not_evaluable_died_after_landmark"
    assert not s4["reason"].startswith("alive") and "death on day 5" in s4["reason"]


def test_empty_response_is_not_an_assessment():
    # found in session 34: an empty category ("") counted as evaluable -> treatment failure at day 0.
    # The docstring (and "missing is not negative"): an empty response is never an assessment ->
    # alive and not evaluable, censored at day 0, as a null category is
    study = make_study([{"subject_id": "Z", "last_followup_day": 100.0}])
    for cat in ("", None):
        z = _row(_adtte(study, responses([("Z", cat, 20)]), efs_landmark_day=28), "Z", "EFS")
        assert (z["AVAL"], z["CNSR"], z["rule"]) == (0.0, 1, "efs.not_evaluable"), cat


# ---------------------------------------------------------------------------------------------
# B2: HSCT / new-therapy censoring leaves OS alone by default


def test_censor_at_allo_hsct_does_not_censor_os():
    a = _adtte(*_p1(), censor_at_allo_hsct=True)
    # S7: CR 28, HSCT 60, relapse 200, alive at 300
    os_ = _row(a, "S7", "OS")
    assert (os_["AVAL"], os_["CNSR"], os_["rule"]) == (300.0, 1, "censor.last_alive")
    # session 41 (review 41 F4): EFS censored at the last response assessment on or before the HSCT (the CR
    # on day 28), as duration of response; RFS/LFS/CIR on the HSCT day 60
    for p, aval in (("EFS", 28.0), ("RFS", 32.0), ("LFS", 60.0), ("CIR", 32.0)):
        r = _row(a, "S7", p)
        assert (r["AVAL"], r["CNSR"], r["rule"]) == (aval, 1, "censor.allo_hsct"), p


def test_censor_params_choose_the_parameters():
    a = _adtte(*_p1(), censor_at_allo_hsct=True, censor_params=("OS", "EFS"))
    assert (_row(a, "S7", "OS")["AVAL"], _row(a, "S7", "OS")["rule"]) == (60.0, "censor.allo_hsct")
    assert (_row(a, "S7", "EFS")["AVAL"], _row(a, "S7", "EFS")["rule"]) == (28.0, "censor.allo_hsct")  # session 41 F4
    # RFS not listed: the relapse on day 200 counts (200 - 28 = 172)
    assert (_row(a, "S7", "RFS")["AVAL"], _row(a, "S7", "RFS")["rule"]) == (172.0, "rfs.relapse")
    study = make_study(SUBJECTS, EVENTS)
    # new therapy: C (NR on 28, new therapy 35, alive at 200) keeps OS 200 by default
    b = _adtte(study, responses(RESP), censor_at_new_therapy=True)
    assert (_row(b, "C", "OS")["AVAL"], _row(b, "C", "OS")["CNSR"]) == (200.0, 1)
    with pytest.raises(InputError, match="censor_params"):
        EndpointOptions(censor_params=("PFS",))


# ---------------------------------------------------------------------------------------------
# B3: EFS without a landmark is said once


def test_efs_without_landmark_warns_once():
    study, resp = _p1()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        derive_adtte(study, EndpointOptions(), responses=resp)
    msgs = [str(w.message) for w in caught if "without a landmark" in str(w.message)]
    assert len(msgs) == 1 and "--set endpoints.efs_landmark_day=" in msgs[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        derive_adtte(study, EndpointOptions(efs_landmark_day=28), responses=resp)
        derive_adtte(study, EndpointOptions(params=("OS",)), responses=resp)
    assert not [w for w in caught if "without a landmark" in str(w.message)]


def test_analyze_says_efs_has_no_landmark_and_the_set_path_works():
    from cartlab.cli.base import analysis_options

    a = Analysis(seed_case(), AnalysisOptions())
    a.table("adtte")
    hits = [w for w in a.warnings if "without a landmark" in w["message"]]
    assert len(hits) == 1
    # the option path the message names
    opts = analysis_options(None, ["endpoints.efs_landmark_day=28"])
    assert opts.endpoint_options().efs_landmark_day == 28
    b = Analysis(seed_case(), opts)
    b.table("adtte")
    assert not [w for w in b.warnings if "without a landmark" in w["message"]]


# ---------------------------------------------------------------------------------------------
# C2, C4


def test_median_docstring_names_the_midpoint_rule():
    assert "lifelines and cartlab the first time" not in endpoints.__doc__
    assert "midpoint" in endpoints.__doc__ and "25" in endpoints.__doc__


def test_adam_adtte_censored_rows_describe_their_censoring(tmp_path):
    from cartlab.io.adam import export_adam

    a = Analysis(seed_case(), AnalysisOptions())
    export_adam(a, tmp_path / "adam", formats=("csv",), datasets=("ADTTE",), define_xml=False)
    t = pl.read_csv(tmp_path / "adam" / "adtte.csv", infer_schema_length=0)
    cens = t.filter(pl.col("CNSR") == "1")
    assert cens.height > 0
    # ADaM BDS-TTE EVNTDESC = "Event or Censoring Description": filled as CNSDTDSC on censored rows
    assert (cens["EVNTDESC"] == cens["CNSDTDSC"]).all()
    os_ = t.filter(pl.col("PARAMCD") == "OS").row(0, named=True)
    assert (os_["CNSR"], os_["EVNTDESC"], os_["CNSDTDSC"]) == ("1", "LAST KNOWN ALIVE", "LAST KNOWN ALIVE")


# ---------------------------------------------------------------------------------------------
# the row-by-row oracle agrees with the vectorised derivation under the new options


@pytest.mark.parametrize("kw", [
    {"efs_censor": "last_known_alive"},
    {"efs_landmark_day": 28, "efs_ne_death_after_landmark": "censor"},
    {"efs_landmark_day": 3, "censor_at_allo_hsct": True, "censor_params": ("OS",)},
    {"censor_at_allo_hsct": True, "censor_at_new_therapy": True, "censor_params": ("OS", "RFS", "CIR")},
], ids=range(4))
def test_oracle_equals_vectorised_under_new_options(kw):
    opts = EndpointOptions(**kw)
    exact = dataclasses.replace(opts, calendar_days=False, last_alive_sources="followup_day")
    for study, resp in (_p1(), (make_study(SUBJECTS, EVENTS), responses(RESP))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CartlabWarning)
            assert_frame_equal(derive_adtte(study, exact, responses=resp), ref.derive_adtte(study, opts, responses=resp))
