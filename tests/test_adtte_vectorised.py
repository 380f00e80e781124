"""The vectorised ADTTE derivation equals the row-by-row one it replaces (issue 14).

The oracle is the code before the rewrite, kept verbatim in ``tests/adtte_reference.py``. Both run on
the hand-made study of tests/test_endpoints.py, on synthetic cohorts (responses and relapses from the
analysis) and on cohorts perturbed towards the edge cases (no follow-up day, subjects known only from
events, responses without evidence or day or category, derived relapses before day 0 or without
evidence, several events on one day), under every option; frames, warnings and errors (type and
message) must be identical.
"""

from __future__ import annotations

import dataclasses
import warnings

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import endpoints_reference as ref
from cartlab.analyze import Analysis
from cartlab.datasets import seed_case
from cartlab.datasets.synthetic import synthetic_cohort
from cartlab.io import read_study
from cartlab.response.endpoints import EndpointOptions, derive_adtte, response_rate
from test_endpoints import EVENTS, RESP, SUBJECTS, make_study, responses

OPTIONS = [
    EndpointOptions(),
    EndpointOptions(censor_at_allo_hsct=True),
    EndpointOptions(censor_at_new_therapy=True, efs_landmark_day=28),
    EndpointOptions(censor_at_allo_hsct=True, censor_at_new_therapy=True, params=("EFS", "CIR")),
    EndpointOptions(efs_landmark_day=0, missing_followup="error", remission_categories=("CR",)),
    EndpointOptions(relapse_events=("relapse",), not_evaluable_categories=("NE", "NR"), params=("OS", "LFS")),
]


def outcome(fn, *args, **kwargs):
    """(frame or None, error "Type: message" or None, warning messages)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out, err = fn(*args, **kwargs), None
        except (ValueError, KeyError) as exc:
            out, err = None, f"{type(exc).__name__}: {exc}"
    return out, err, [str(w.message) for w in caught]


def marrow_only(options: EndpointOptions) -> EndpointOptions:
    """The reference censors EFS at the last marrow: the blood samples of efs_censor="last_disease_assessment"
    (review 48 F1, tests/test_tte_s48.py) are not in it."""
    if options.efs_censor != "last_disease_assessment":
        return options
    return dataclasses.replace(options, efs_censor="last_response_assessment")


def check(study, responses=None, relapses=None, options=None) -> str | None:
    # the reference is the row-by-row derivation on the days as given (calendar_days=False);
    # test_calendar_days_equal_the_reference_on_floored_days covers the default
    exact = dataclasses.replace(marrow_only(options or EndpointOptions()), calendar_days=False,
                                last_alive_sources="followup_day")
    new = outcome(derive_adtte, study, exact, responses=responses, relapses=relapses)
    old = outcome(ref.derive_adtte, study, options, responses=responses, relapses=relapses)
    if old[1] and "before the clock start" in old[1]:
        # session 37: the message names the row that set the day ("from last_followup_day -5
        # (subjects.csv:5)"), the reference only the table: the same error up to that row
        head = old[1].split(" (")[0]
        assert new[1].startswith(head) and "before the clock start" in new[1], (options, new[1], old[1])
    else:
        assert new[1] == old[1], (options, new[1], old[1])
    # session 37: the warning naming rows after last_followup_day is not the reference's
    new_w = [m for m in new[2] if "after their last_followup_day" not in m]
    assert new_w == old[2], (options, new[2], old[2])
    if old[0] is not None:
        assert_frame_equal(new[0], old[0])
    return old[1]


@pytest.fixture(scope="module")
def cohorts():
    out = []
    for seed in (5, 23):
        s = read_study(synthetic_cohort(30, seed=seed, days=(-7, 90)))
        a = Analysis(s)
        resp = a.table("marrow_response").select("subject_id", pl.col("category").alias("best_response"),
                                                 pl.col("day").alias("best_response_day"), "evidence")
        out.append((s, resp, a.table("relapse")))
    return out


def perturb(study, resp, relapse):
    """Edge cases on a synthetic cohort (module docstring)."""
    ids = study.subjects["subject_id"].to_list()
    subjects = study.subjects.with_columns(  # every third subject without a follow-up day
        pl.when(pl.int_range(pl.len()) % 3 == 0).then(None).otherwise(pl.col("last_followup_day"))
        .alias("last_followup_day"))
    ev = study.events
    extra = pl.DataFrame({"subject_id": ["EV-ONLY", ids[0], ids[0]], "day": [15.0, 40.0, 40.0],
                          "event": ["relapse", "extramedullary_disease", "relapse"],
                          "src_file": ["events.csv"] * 3, "src_row": [9001, 9002, 9003]})
    ev = pl.concat([ev, extra.cast({c: ev.schema[c] for c in extra.columns})], how="diagonal_relaxed")
    resp = pl.concat([
        resp,
        pl.DataFrame({"subject_id": [ids[1], ids[2], ids[3], ids[4]], "best_response": [None, "", "NE", "NR"],
                      "best_response_day": [10.0, None, 12.0, None], "evidence": [None, [], ["x:1", "x:1"], ["x:2"]]},
                     schema=resp.schema),
    ])
    relapse = pl.concat([relapse, pl.DataFrame(
        {"subject_id": [ids[5], ids[6]], "relapse_day": [-3.0, 50.0], "evidence": [None, []]})],
        how="diagonal_relaxed")
    return dataclasses.replace(study, subjects=subjects, events=ev), resp, relapse


@pytest.mark.parametrize("options", OPTIONS, ids=range(len(OPTIONS)))
def test_hand_made_study(options):
    s = make_study(SUBJECTS, EVENTS)
    check(s, responses(RESP), None, options)
    # several events on one day: two relapse kinds (the first row names it), an event on the
    # censoring day, death on the relapse day
    same_day = [*EVENTS, ("G", 120, "relapse"), ("F", 90, "allo_hsct"), ("F", 90, "relapse"),
                ("F", 95, "new_therapy"), ("F", 95, "death"), ("E", 60, "death"), ("E", 60, "allo_hsct")]
    check(make_study(SUBJECTS, same_day), responses(RESP), None, options)
    check(s, responses(RESP), pl.DataFrame({"subject_id": ["A", "E"], "relapse_day": [70.0, 30.0],
                                             "evidence": [["adrs:r1"], ["adrs:r2", None]]}), options)


@pytest.mark.parametrize("options", OPTIONS, ids=range(len(OPTIONS)))
def test_synthetic_and_perturbed_cohorts(cohorts, options):
    for study, resp, relapse in cohorts:
        check(study, resp, relapse, options)
        check(study, None, None, dataclasses.replace(options, params=("OS",)))
        p = perturb(study, resp, relapse)
        check(p[0], p[1], p[2], options)
        # responses without evidence: the references are the responses' own rows
        check(p[0], p[1].drop("evidence").with_columns(pl.lit("adrs.csv").alias("src_file"),
                                                       pl.int_range(pl.len()).alias("src_row")), p[2], options)


def _floored(study, resp, relapse):
    """The same facts on whole calendar days (spec: "Days are calendar days relative to day 0")."""
    day_cols = ("day", "start_day", "end_day", "last_followup_day")
    tables = {}
    for name in ("subjects", "observations", "doses", "interventions", "events"):
        t = getattr(study, name)
        tables[name] = t.with_columns(pl.col(c).cast(pl.Float64).floor() for c in day_cols if c in t.columns)
    return (dataclasses.replace(study, **tables),
            resp.with_columns(pl.col("best_response_day").floor()),
            relapse.with_columns(pl.col("relapse_day").floor()))


@pytest.mark.parametrize("options", OPTIONS[:3], ids=range(3))
def test_calendar_days_equal_the_reference_on_floored_days(cohorts, options):
    for study, resp, relapse in cohorts:
        # fractional days, as date-times give them: a sample at 15:00 on day 20 is day 20.625
        frac_resp = resp.with_columns((pl.col("best_response_day") + 0.625).alias("best_response_day"))
        events = study.events.with_columns(pl.col("day") + 0.375)
        s = dataclasses.replace(study, events=events)
        rel = relapse.with_columns(pl.col("relapse_day") + 0.5)
        new = derive_adtte(s, marrow_only(options), responses=frac_resp, relapses=rel)
        fs, fr, frel = _floored(s, frac_resp, rel)
        want = ref.derive_adtte(fs, dataclasses.replace(options, calendar_days=False), responses=fr, relapses=frel)
        ady = new["ADY"].drop_nulls()
        assert ady.len() > 0 and (ady == ady.floor()).all()  # whole days
        assert_frame_equal(new, want)


def test_seed_case():
    for o in OPTIONS[:3]:
        check(seed_case(), None, None, dataclasses.replace(o, params=("OS",)))


def test_errors_are_those_of_the_row_by_row_derivation():
    subjects = [{"subject_id": s, "last_followup_day": fu} for s, fu in
                [("A", 100), ("B", None), ("C", 50), ("D", None)]]
    s = make_study(subjects, [("C", 20, "death")])
    # E: last known alive on day -5, before the clock start (day 0) of OS, EFS and LFS
    e = make_study([*subjects, {"subject_id": "E", "last_followup_day": -5}], [("C", 20, "death")])
    cases = [
        # C dies on day 20 before its remission on day 30
        (s, [("A", "CR", 28), ("C", "CR", 30)]),
        # B and D have nothing to censor at (the row-by-row loop goes on), then C's contradiction
        (s, [("C", "CR", 30)]),
        # a remission without a day (A)
        (s, [("A", "CR", None), ("C", "NR", 10)]),
        # two contradictions: the first subject's is raised
        (s, [("A", "CR", None), ("C", "CR", 30)]),
        (s, [("C", "CR", None), ("A", "CR", 28), ("A", "CR", None)]),
        # B and D with nothing to censor at only
        (s, [("A", "CR", 28)]),
        (e, [("A", "NR", 20)]),
        # D: nothing to censor at for OS, so its undated remission is reached only without OS
        (s, [("D", "CR", None)]),
    ]
    errors = [err for study, rows in cases for o in OPTIONS if (err := check(study, responses(rows), None, o))]
    # session 30: contradictory input is an InputError (a ValueError) naming the file
    # (the strict "nothing to censor at" stays a ValueError in both)
    assert {err.split(":")[0] for err in errors} == {"InputError", "ValueError"}
    assert all(e.startswith("InputError") for e in errors if "before the" in e or "without best_response_day" in e)
    assert any("subject C: death on day 20 (events.csv) before the remission on day 30" in err for err in errors)
    assert any("subject E: last known alive on day -5 (subjects.csv last_followup_day), before the clock start 0"
               in err for err in errors)
    assert any("subject A: remission response 'CR' without best_response_day" in err for err in errors)
    assert any("subject D: remission response 'CR' without best_response_day" in err for err in errors)
    assert any("subject(s) ['B', 'D']: no last_followup_day and no row at all" in err for err in errors)
    assert any("subject(s) ['B', 'D']: no last_followup_day and no event or response" in err for err in errors)


def test_response_rate_evidence_equals_the_row_by_row_collection(cohorts):
    """Each responder reference once, from the first row that has it (a row's own repeats kept)."""
    rows = pl.DataFrame({
        "subject_id": ["a", "b", "c", "d", "e", "f"], "best_response": ["CR", "NR", "PR", None, "CR", "CRi"],
        "grp": ["x", "x", "y", "y", None, "x"],
        "evidence": [["r1", "r2", "r1"], ["r3"], None, ["r4"], ["r2", None, "r5"], []],
    })
    for by in (None, "grp"):
        for responders in ({"CR", "PR"}, "CRi", {"CR", "CRi", "NR"}):
            assert_frame_equal(response_rate(rows, responders, by=by), ref.response_rate(rows, responders, by=by))
    for _, resp, _ in cohorts:
        best = resp.unique("subject_id", keep="first", maintain_order=True)
        for by in (None, "best_response"):
            assert_frame_equal(response_rate(best, {"CR", "CRi", "CRh"}, by=by),
                               ref.response_rate(best, {"CR", "CRi", "CRh"}, by=by))
