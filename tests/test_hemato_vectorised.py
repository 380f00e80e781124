"""The vectorised haematotoxicity engines equal the row-loop implementation they replace (issue 14).

The oracle is the code before the rewrite, kept verbatim in ``tests/hemato_reference.py``. Both run on
seeded synthetic cohorts, on the same cohorts perturbed towards the edge cases a rewrite can change
(equal values on one day, several values a day, missing limits and provenance, a subject seen only in
observations, a subject without observations, transfusions spanning days) and under every option
that changes a code path; the frames must be identical (values, dtypes, row and column order).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import hemato_reference as ref
import icaht_reference as icaht_ref
from cartlab.datasets import seed_case
from cartlab.datasets.synthetic import synthetic_cohort
from cartlab.grading import hematotox as new
from cartlab.grading.hematotox import (
    CarHematotoxOptions,
    EasixOptions,
    IcahtOptions,
    IecHsOptions,
    RecoveryOptions,
    TIcahtOptions,
)
from cartlab.io import read_study
from cartlab.model import Study


def perturb(study: Study, seed: int) -> Study:
    """Edge cases on top of a synthetic cohort (see the module docstring)."""
    rng = np.random.default_rng(seed)
    obs = study.observations
    n = obs.height
    # several values on one calendar day: later the same day, equal or different values
    extra = obs.sample(n // 8, seed=seed).with_columns(
        (pl.col("day") + 0.25).alias("day"),
        pl.when(pl.Series(rng.random(n // 8) < 0.5)).then(pl.col("value"))
        .otherwise(pl.col("value") * pl.Series(rng.uniform(0.5, 1.5, n // 8))).alias("value"),
        (pl.int_range(pl.len()) + n + 1).alias("src_row"),
    )
    obs = pl.concat([obs, extra]).with_columns(
        # equal values on different days (ties of the nadir, of the window minimum and maximum)
        pl.when(pl.Series(rng.random(n + extra.height) < 0.3)).then(pl.col("value").round(0))
        .otherwise(pl.col("value")).alias("value"),
        pl.when(pl.Series(rng.random(n + extra.height) < 0.1)).then(None).otherwise(pl.col("uln")).alias("uln"),
        pl.when(pl.Series(rng.random(n + extra.height) < 0.1)).then(None).otherwise(pl.col("lln")).alias("lln"),
        pl.when(pl.Series(rng.random(n + extra.height) < 0.05)).then(None).otherwise(pl.col("src_row")).alias("src_row"),
    )
    # values exactly at a cut-off (canonical units) or at the row's upper limit
    at = {"NEUT": 0.5, "PLAT": 20.0, "HGB": 90.0, "CRP": 30.0, "FERRITIN": 2000.0, "FIBRINO": 1.5}
    cut = pl.col("param").replace_strict(at, default=None, return_dtype=pl.Float64)
    u = pl.Series(rng.random(obs.height))
    obs = obs.with_columns(pl.when((u < 0.05) & cut.is_not_null()).then(cut)
                           .when((u > 0.95) & pl.col("uln").is_not_null()).then(pl.col("uln"))
                           .otherwise(pl.col("value")).alias("value"))
    ids = study.subjects["subject_id"].to_list()
    obs = (obs.filter(pl.col("subject_id") != ids[1])  # a subject without observations
           .with_columns(pl.when(pl.col("subject_id") == ids[2]).then(pl.lit("ZZ-only-in-observations"))
                         .otherwise(pl.col("subject_id")).alias("subject_id")))
    iv = study.interventions
    if iv.height:
        iv = pl.concat([iv, iv.filter(pl.col("category") == "platelet_transfusion").head(3).with_columns(
            (pl.col("start_day") + 3).alias("start_day"), (pl.col("start_day") + 5).alias("end_day"))])
    return dataclasses.replace(study, observations=obs, interventions=iv)


@pytest.fixture(scope="module")
def studies() -> dict[str, Study]:
    out = {"seed_case": seed_case()}
    for seed in (3, 11):
        s = read_study(synthetic_cohort(25, seed=seed, days=(-7, 60)))
        out[f"synthetic_{seed}"] = s
        out[f"perturbed_{seed}"] = perturb(s, seed)
    return out




CASES = [
    ("recovery_days", (), {}),
    ("recovery_days", (RecoveryOptions(mode="measurements"),), {}),
    ("recovery_days", (RecoveryOptions(start="first_drop", consecutive=2),), {}),
    ("recovery_days", (RecoveryOptions(start="day0", consecutive=1, transfusion_free_during_counting=False),), {}),
    ("recovery_days", (RecoveryOptions(platelet_transfusion_free_days=0, consecutive=5, mode="measurements"),), {}),
    ("car_hematotox", (), {}),
    ("car_hematotox", (CarHematotoxOptions(undefined_boundary="best", max_lookback_days=2),), {}),
    ("car_hematotox", (CarHematotoxOptions(lymphodepletion_agents=("bendamustine",)),), {}),
    ("easix", (), {}),
    ("easix", ("each",), {}),
    ("easix", (5,), {}),
    ("easix", (14.7,), {"options": EasixOptions(day_tolerance_days=2, daily_value="min", log_base=10)}),
    ("easix", ("pre_ld",), {"options": EasixOptions(max_lookback_days=1, lymphodepletion_agents=("fludarabine",))}),
    ("easix", ("each",), {"options": EasixOptions(daily_value="max")}),
    ("iec_hs_flags", (), {}),
    ("iec_hs_flags", (IecHsOptions(lab_window_days=2, min_supporting=2),), {}),
    ("iec_hs_flags", (IecHsOptions(start_day=-3, baseline_day=-2, exclude=("iec_hs.cytopenia_new_or_worse",)),), {}),
    ("iec_hs_flags", (IecHsOptions(lab_window_days=1, exclude=("iec_hs.ferritin_gt_2x_uln", "iec_hs.ferritin_gt_2x_baseline")),), {}),
]


ICAHT_OPTIONS = [
    IcahtOptions(),
    IcahtOptions(duration="longest_run", interpolate=False, late_min_measurements=3, daily_value="mean"),
    IcahtOptions(max_interpolation_gap_days=2, inclusive=False, late_end_at_last_followup=False,
                 late_window_end_inclusive=False, never_above_requires_full_window=True, late_end_events_from_day=-10),
]
T_ICAHT_OPTIONS = [
    TIcahtOptions(),
    TIcahtOptions(censor_day_inclusive=False, transfusion_supported_levels=("20", "50"), inclusive=True,
                  duration="longest_run", late_end_at_last_followup=False, late_window_end_inclusive=False),
    TIcahtOptions(platelet_transfusion_free_days=0, censor_events=("death",), late_end_events=("relapse",),
                  daily_value="max", count_recovery_days_in_run=False, late_min_measurements=1),
]
CASES += [(fn, (o,), {}) for o in ICAHT_OPTIONS for fn in ("icaht", "icaht_daily")]
CASES += [(fn, (o,), {}) for o in T_ICAHT_OPTIONS for fn in ("t_icaht", "t_icaht_daily")]


def oracle(fn: str):
    return getattr(icaht_ref if "icaht" in fn else ref, fn)


def engine(fn: str):
    """The engine under its 0.3 name (derive_*; the oracle keeps the row-loop code's names)."""
    return getattr(new, new.__getattr__.names[fn])


@pytest.mark.parametrize("fn,args,kwargs", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_vectorised_engine_equals_the_row_loop_oracle(studies, fn, args, kwargs):
    for name, study in studies.items():
        expected = oracle(fn)(study, *args, **kwargs)
        eargs = args
        if fn == "recovery_days":  # session 37: the oracle predates censor_events and transfusion_supported
            # (tested by hand in test_recovery_s37.py); their opt-outs give the audited behaviour
            base = args[0] if args else RecoveryOptions()
            eargs = (dataclasses.replace(base, censor_events=(), transfusion_supported="as_measured"),)
        if fn in ("t_icaht", "t_icaht_daily"):  # session 48 (review 48 F4): the oracle takes a count of a
            # transfusion's day as the count before it (tested by hand in test_hemato_s48.py)
            eargs = (dataclasses.replace(args[0], same_day_count_is_pre_transfusion=True),)
        got = engine(fn)(study, *eargs, **kwargs)
        assert got.height > 0, (name, fn)
        if fn == "recovery_days":  # session 37: the censoring reason column is not in the oracle, whose
            # reason says "last_followup_day" for a death (the censor day is compared unchanged); the
            # death's events.csv row is new evidence
            got = got.drop("neutrophil_recovery_censor_reason", "platelet_recovery_censor_reason")
            why = [pl.col(f"{k}_recovery_reason").str.replace(r"; censored at day (\d+) \([^)]*\)", "; censored at day $1")
                   for k in ("neutrophil", "platelet")]
            got = got.with_columns(*why, *[pl.col(f"{k}_recovery_evidence").list.eval(pl.element().filter(
                ~pl.element().str.starts_with("events.csv:"))) for k in ("neutrophil", "platelet")])
            expected = expected.with_columns(*why)
        if fn == "car_hematotox":  # session 37: the unit columns are not in the oracle (test_recovery_s37.py)
            got = got.drop([c for c in got.columns if c.endswith("_value_unit")]
                           + ["plat_1e9_l", "neut_per_ul", "hgb_g_dl", "crp_mg_dl", "ferritin_ng_ml"], strict=False)
        if fn == "car_hematotox":  # the note on an undefined cut-off (0.4) is not in the oracle: tested by hand
            got = got.with_columns(pl.col("reason").str.replace_all(
                r"; exactly [^\]]*? a cut-off the source leaves undefined: scored (?:worst|best) \(option "
                r"undefined_boundary\)", ""))
        if fn == "easix":  # session 37 (review s37 C1): the reader's LDH / PLAT conversions are new notes
            got = got.with_columns(pl.col("reason").str.replace_all(
                r"(?:LDH|PLAT) [^;\]]+ -> [^;\]]+ (?:U/L|10\^9/L)(?:; )?", "").str.replace(r"; \]", "]")
                .str.replace(r" \[converted: \]", ""))
        got = _review40_normalised(fn, got, expected)
        if fn == "icaht":  # session 37 (review 37 B6): the late grade's qualifying tests are not in the oracle
            # (tested by hand in test_explain_s37.py)
            got = got.drop("late_qualifying_start", "late_qualifying_end", "late_qualifying_n", "late_qualifying_days")
        if fn in ("icaht", "t_icaht"):  # the early upper bound (0.4) is not in the row-loop oracle: tested by hand
            could = r" Could be up to grade \d+: .*? the grade would be that\."
            # session 32: the late upper bound (censored results, days without a count) is not in the
            # oracle either: tested by hand in test_review_hemato_s32.py
            late = r" Could be up to grade \d+: [^.]*?(?:the grade would be that|do not settle the deeper level\(s\))\."
            got = got.drop(f"{fn}_early_grade_max", "early_unknown_days", f"{fn}_late_grade_max").with_columns(
                pl.col("early_reason").str.replace(could, ""), pl.col("late_reason").str.replace_all(late, ""),
                pl.col("reason").str.replace_all(late, "")).with_columns(pl.col("reason").str.replace(could, ""))
            # session 40 (review s40 A1/A2/B2): not in the oracle, tested by hand in test_icaht_s40.py: the
            # nontransient run's days, ICAHT's early window end (columns, the death row as evidence, the
            # reason's prefix and the days without an ANC next to 'never above')
            run = r"; nontransient run: days \d+-\d+ \([^)]*\)"
            got = got.drop("late_nontransient_days").with_columns(
                pl.col("late_reason").str.replace_all(run, ""), pl.col("reason").str.replace_all(run, ""))
            # session 48 (review 48 F1, F3): the days below a level interpolated across a long gap and the other
            # reading of never_above_bridges_nonstable are named (tested by hand in test_hemato_s48.py)
            s48 = (r"; [^;]*? are interpolated across gaps of more than \d+ days without a count \(option "
                   r"range_interpolation_gap_days\): not measured, so the grade could be lower"
                   r"| The other reading \(option never_above_bridges_nonstable=true, .*? gives grade \d\.")
            got = got.with_columns(pl.col(c).str.replace_all(s48, "") for c in ("early_reason", "late_reason", "reason"))
            if fn == "icaht":
                cut = r"(^|Early: )days \d+-\d+ \(censored: [^;)]*; days \d+-\d+ not observed\): "
                unk = r"; days [\d, -]+ have no ANC \(measured or interpolated\) and are not counted\)"
                # session 45 (review 45 F1): the relapses, new therapies, allo-HSCTs and new CAR-T courses inside
                # days 0-30 that the default early_censor_events=[death] does not censor at are named, their
                # rows are evidence (tested by hand in test_hemato_s45.py)
                unc = r" Not censored at \(option early_censor_events=.*?as the T-ICAHT footnote does\): .*?\)\.( Late: |$)"
                got = got.drop("early_window_end", "early_window_end_reason").with_columns(
                    pl.col("early_reason").str.replace(cut, "$1").str.replace(unk, ")").str.replace(unc, "$1"),
                    pl.col("reason").str.replace(cut, "$1").str.replace(unk, ")").str.replace(unc, "$1"),
                    pl.col("early_evidence").list.eval(pl.element().filter(
                        ~pl.element().str.starts_with("events.csv:") & ~pl.element().str.starts_with("doses.csv:"))))
                got = got.with_columns(pl.concat_list("early_evidence", "late_evidence").list.unique(maintain_order=True)
                                       .alias("evidence"))
        if fn == "recovery_days":  # session 40 (review s40 B1): the longest gap is named (test_icaht_s40.py)
            gap = r" \(the longest gap between values: [^(]*\([^)]*\)\)"
            gap2 = r"; the longest gap between values: [^(]*\([^)]*\)"
            got = got.with_columns(*[pl.col(f"{k}_recovery_reason").str.replace(gap, "").str.replace(gap2, "")
                                     for k in ("neutrophil", "platelet")])
            # review s40 B3: G-CSF around the neutrophil recovery run is named, its row is evidence
            gcsf = r" G-CSF on .*? the ANC is counted as measured \(recovery\.gcsf_not_considered\)\."
            got = got.with_columns(pl.col("neutrophil_recovery_reason").str.replace(gcsf, ""),
                                   pl.col("neutrophil_recovery_evidence").list.eval(pl.element().filter(
                                       ~pl.element().str.starts_with("interventions.csv:"))))
        try:
            assert_frame_equal(got, expected)
        except AssertionError as exc:
            raise AssertionError(f"{fn}{args} on {name}: {exc}") from None


def _review40_normalised(fn: str, got: pl.DataFrame, expected: pl.DataFrame) -> pl.DataFrame:
    """Review 40 (tested by hand in test_hemato_s40.py): the texts and columns the row-loop oracle predates -
    CAR-HEMATOTOX each value's age, the post-lymphodepletion rows of a missing item and
    hematotox_baseline_oldest_day; EASIX baseline_rule, the pre_ld reason's opening and the
    lymphodepletion dose rows in its evidence; IEC-HS the baseline ferritin in "> 2 x ULN" and its row."""
    if fn == "car_hematotox":
        got = got.drop("hematotox_baseline_oldest_day", strict=False).with_columns(pl.col("reason").str.replace_all(
            r", [-\d.e]+ day\(s\) before (?:the first lymphodepletion dose \(day [-\d.e]+\)|day [-\d.e]+)", "")
            .str.replace_all(r"; not measured on or before day \S+, only after the first lymphodepletion dose, not "
                             r"baseline: day \S+ \([^)]*\)(?:, day \S+ \([^)]*\))*(?:, and \d+ more)?", ""))
    if fn == "easix":
        got = got.drop("baseline_rule", strict=False).with_columns(
            pl.col("reason").str.replace(r"^pre_ld values taken .*? \(rule baseline\.[a-z0-9_]+\): ", ""),
            pl.col("evidence").list.eval(pl.element().filter(~pl.element().str.starts_with("doses.csv:"))))
    if fn == "iec_hs_flags" and got.height == expected.height:
        got = got.with_columns(pl.col("reason").str.replace_all(
            r"; (?:no baseline FERRITIN|baseline [^;]*? ug/L on day -?\d+(?:, already > 2 x ULN \([^)]*\) at "
            r"baseline: met without a rise \(option ferritin_uln_when_baseline_abnormal=either\))?)", ""),
            # the baseline ferritin row is new evidence of "> 2 x ULN": the oracle's rows, in the engine's order
            pl.Series("evidence", [[e for e in g if e in set(x)] for g, x in zip(got["evidence"], expected["evidence"])],
                      dtype=got.schema["evidence"]))
    return got


def test_empty_study_gives_the_same_empty_frames():
    s = seed_case()
    blank = dataclasses.replace(s, subjects=s.subjects.clear(), observations=s.observations.clear(),
                                doses=s.doses.clear(), interventions=s.interventions.clear(), events=s.events.clear())
    for fn, args in (("recovery_days", ()), ("car_hematotox", ()), ("easix", ()), ("easix", ("each",)),
                     ("easix", (3,)), ("iec_hs_flags", ()), ("icaht", ()), ("t_icaht", ()), ("icaht_daily", ()),
                     ("t_icaht_daily", ())):
        got = engine(fn)(blank, *args)
        if fn in ("icaht", "t_icaht"):  # session 40: columns the oracle predates (tested in test_icaht_s40.py)
            got = got.drop([c for c in ("late_nontransient_days", "early_window_end", "early_window_end_reason")
                            if c in got.columns and c not in oracle(fn)(blank, *args).columns])
        # session 37: columns the oracle predates (the censoring reason, the item units)
        if fn in ("recovery_days", "car_hematotox"):
            got = got.drop([c for c in got.columns if c.endswith(("_censor_reason", "_value_unit"))]
                           + ["plat_1e9_l", "neut_per_ul", "hgb_g_dl", "crp_mg_dl", "ferritin_ng_ml"], strict=False)
        got = got.drop("hematotox_baseline_oldest_day" if fn == "car_hematotox" else "baseline_rule" if fn == "easix"
                       else "-", strict=False)  # review 40: columns the oracle predates
        assert_frame_equal(got, oracle(fn)(blank, *args))


# ---------------------------------------------------------------------------------------------
# the two deliberate differences from the row-loop code (each test failed on it)


def test_late_icaht_columns_keep_their_types_without_any_late_measurement():
    """ANC only in days 0-19: no late value for anyone. The row-loop code inferred the late
    nadir columns from all-None values (dtype Null); they are ANC values (Float64, 10^9/L) and
    calendar days (Int64, as the daily series' ``day``)."""
    from test_hematotox import make_study

    f = new.derive_icaht(make_study([(d, "NEUT", 0.3) for d in range(20)], last_followup=200))
    assert f["late_n_measurements"].to_list() == [0] and f["icaht_late_grade"].to_list() == [None]
    assert {c: f.schema[c] for c in ("late_anc_nadir", "late_anc_nadir_day", "late_anc_confirmed",
                                     "late_anc_confirmed_day")} == {
        "late_anc_nadir": pl.Float64, "late_anc_nadir_day": pl.Int64,
        "late_anc_confirmed": pl.Float64, "late_anc_confirmed_day": pl.Int64}


def test_recovery_needs_at_least_one_consecutive_value():
    """consecutive=0 made the row-loop code fail with an IndexError on the platelets (and call
    any first value a recovery); it is now an option error naming the option (when the options are made)."""
    with pytest.raises(ValueError, match=r"RecoveryOptions: consecutive: Input should be greater than or equal to 1 \(got 0\)"):
        new.derive_count_recovery(seed_case(), RecoveryOptions(consecutive=0))


def test_icaht_and_t_icaht_grade_a_daily_series_already_computed(studies):
    """An analysis computes the daily series once (its own table) and grades it: the same grades as
    deriving it again; and the series given is the one graded (a subject left out of it has no
    early grade)."""
    s = studies["perturbed_3"]
    for grade, daily, opts in ((new.derive_icaht, new.derive_icaht_daily, IcahtOptions(duration="longest_run")),
                               (new.derive_t_icaht, new.derive_t_icaht_daily, TIcahtOptions(inclusive=True))):
        d = daily(s, opts)
        assert_frame_equal(grade(s, opts, daily=d), grade(s, opts))
        first = d["subject_id"][0]
        early = grade(s, opts, daily=d.filter(pl.col("subject_id") != first)).columns[1]
        assert grade(s, opts, daily=d.filter(pl.col("subject_id") != first)).filter(
            pl.col("subject_id") == first)[early].to_list() == [None]


def test_easix_of_zero_has_no_logarithm_and_says_so():
    """LDH 0: s-EASIX = 0 / PLAT = 0, whose logarithm does not exist. The row-loop code stopped with
    "math domain error"; the score is 0, its log empty and the reason shows "NA" (as for a
    missing number)."""
    from test_hematotox import LD, make_study

    r = new.derive_easix(make_study([(-6, "LDH", 0.0), (-6, "PLAT", 50.0)], doses=LD)).row(0, named=True)
    assert r["s_easix"] == 0.0 and r["log2_s_easix"] is None
    assert "s_easix = 0 U/L / 50 10^9/L = 0 (log2 NA)" in r["reason"]
