"""The analysis graph: every spec column, tables computed once, one engine failing never sinks the rest."""

import polars as pl
import pytest

import cartlab.kinetics.car as car
from cartlab.analyze import STEPS, Analysis, AnalysisOptions
from cartlab.datasets import seed_case, synthetic_cohort
from cartlab.errors import EngineError
from cartlab.io import read_study
from cartlab.model import SUBJECT_SUMMARY, SUBJECT_SUMMARY_COLUMNS


@pytest.fixture(scope="module")
def cohort():
    return read_study(synthetic_cohort(12, seed=5))


def test_summary_has_every_spec_column_typed():
    out = Analysis(seed_case()).subject_summary()
    # the spec's columns first, in its order and types; then cartlab's extra columns
    assert out.columns[: len(SUBJECT_SUMMARY_COLUMNS)] == list(SUBJECT_SUMMARY_COLUMNS)
    assert {c: out.schema[c] for c in SUBJECT_SUMMARY_COLUMNS} == SUBJECT_SUMMARY
    assert out.columns[len(SUBJECT_SUMMARY_COLUMNS):] == ["crs_episode", "crs_n_episodes", "crs_grade_astct_max",
                                                          "crs_grade_astct_min",  # session 40 (review 40 newuser A1)
                                                          "crs_onset_day_earliest", "crs_onset_open",  # session 37
                                                          "crs_resolution_day_latest", "crs_resolution_open",  # session 38
                                                          "crs_resolution_status",  # session 40 (review 40 crs B2)
                                                          "icans_grade_astct_max", "icans_resolution_day_latest",
                                                          "icans_resolution_open",  # session 39
                                                          "icans_onset_day", "icans_resolution_day",
                                                          "icans_n_episodes",  # session 46 (review 46 F6)
                                                          "icaht_early_grade_max",
                                                          "icaht_late_grade_max",  # session 33
                                                          "best_response_could_be",  # session 32
                                                          "car_auc_window",  # session 40 (review 40 kin B7)
                                                          "car_param", "car_unit",  # car_*: session 31
                                                          # session 40 (review 40 twin B1): the rows' sources
                                                          "data_source", "n_rows_not_measured", "n_rows"]
    # the paper's facts (case-facts.md): ASTCT CRS 3, MLFS on day 17, Cmax 183,945 copies/ug on day 14
    row = out.row(0, named=True)
    assert (row["crs_grade_astct"], row["best_response"], row["best_response_day"]) == (3, "MLFS", 17.0)
    assert (row["car_cmax"], row["car_tmax"]) == (183945.0, 14.0)


def test_each_table_has_one_producer():
    names = [n for s in STEPS for n in s.outputs]
    assert len(names) == len(set(names))
    for s in STEPS:
        assert set(s.inputs) <= set(names), s.engine


def test_tables_are_computed_once(monkeypatch):
    calls = []
    real = car.derive_car_kinetics

    def counting(study, options=None):
        calls.append(study.subjects.height)
        return real(study, options)

    monkeypatch.setattr(car, "derive_car_kinetics", counting)
    a = Analysis(seed_case())
    a.tables()
    a.subject_summary()
    a.table("adpp")
    assert calls == [1]


def _failing_for(bad: set[str]):
    real = car.derive_car_kinetics

    def fails(study, options=None):
        hit = bad & set(study.subject_ids)
        if hit:
            raise ZeroDivisionError(f"cannot fit {sorted(hit)}")
        return real(study, options)

    return fails


def test_an_engine_failing_for_one_subject_keeps_the_others(cohort, monkeypatch):
    bad = cohort.subject_ids[4]
    monkeypatch.setattr(car, "derive_car_kinetics", _failing_for({bad}))
    a = Analysis(cohort)
    tables = a.tables()
    # the subject is left out of car_kinetics and of what depends on it; everyone else is there
    assert bad not in tables["car_kinetics"]["subject_id"].to_list()
    assert tables["car_kinetics"]["subject_id"].n_unique() == cohort.subjects.height - 1
    assert bad not in tables["adpp"]["USUBJID"].to_list()
    # other engines are untouched
    assert tables["crs_daily"]["subject_id"].n_unique() == cohort.subjects.height
    summary = a.subject_summary()
    assert summary.height == cohort.subjects.height
    row = summary.filter(pl.col("subject_id") == bad).row(0, named=True)
    assert row["car_cmax"] is None and row["crs_grade_astct"] is not None
    skipped = [s.to_dict() for s in a.skipped]
    nca = [s for s in skipped if s["tables"] == ["car_kinetics"]]
    assert nca and nca[0]["subjects"] == [bad] and "ZeroDivisionError" in nca[0]["reason"]
    assert any(s["tables"] == ["adpp"] and s["subjects"] == [bad] for s in skipped)
    # the cohort-level exposure-response runs without that subject and says so
    assert any(w["engine"] == "exposure-response" and bad in w["message"] for w in a.warnings)
    meta = a.manifest()
    assert meta["skipped"] == skipped
    assert {e["engine"]: e["status"] for e in meta["engines"]}["CAR-T kinetics (NCA)"] == "partial"


def test_an_engine_failing_for_everyone_is_skipped_whole(cohort, monkeypatch):
    monkeypatch.setattr(car, "derive_car_kinetics", _failing_for(set(cohort.subject_ids)))
    a = Analysis(cohort)
    tables = a.tables()
    assert "car_kinetics" not in tables and "adpp" not in tables and "exposure_response" not in tables
    assert "crs_daily" in tables and "adtte" in tables
    assert a.subject_summary()["car_cmax"].null_count() == cohort.subjects.height
    with pytest.raises(EngineError, match="car_kinetics"):
        a.table("car_kinetics")


def test_strict_turns_a_skip_into_an_error(cohort, monkeypatch):
    monkeypatch.setattr(car, "derive_car_kinetics", _failing_for({cohort.subject_ids[0]}))
    with pytest.raises(EngineError, match=cohort.subject_ids[0]):
        Analysis(cohort, AnalysisOptions(strict=True)).tables()


def test_missing_followup_is_censored_at_the_last_row_with_a_warning(cohort):
    s = read_study(synthetic_cohort(12, seed=5))
    s.subjects = s.subjects.with_columns(pl.lit(None, dtype=pl.Float64).alias("last_followup_day"))
    a = Analysis(s)
    adtte = a.table("adtte")
    assert not a.skipped
    censored = adtte.filter(pl.col("rule") == "censor.last_record")
    assert censored.height > 0
    assert set(censored["CNSDTDSC"].to_list()) == {"LAST RECORDED ROW (NO LAST_FOLLOWUP_DAY)"}
    assert any("censor.last_record" in w["message"] for w in a.warnings)
    # strict keeps the earlier error for subjects with no event or assessment to censor at
    with pytest.raises(EngineError, match="last_followup_day"):
        Analysis(s, AnalysisOptions(strict=True)).table("adtte")


def test_manifest_records_resolved_options_and_criteria_versions():
    from cartlab.grading.crs import CrsOptions

    meta = Analysis(seed_case(), AnalysisOptions(crs=CrsOptions(sbp_cutoff_mmhg=85))).manifest()
    # the option set, and the table's defaults for the rest (astct_crs_2019.yaml)
    assert meta["options"]["crs"]["sbp_cutoff_mmhg"] == 85
    assert meta["options"]["crs"]["fever_threshold_c"] == 38.0
    assert meta["options"]["icaht"]["duration"] == "cumulative"
    crit = {c["table"]: c for c in meta["criteria"]}
    assert crit["ctcae_v5"]["version"] == "5.0" and crit["eln2022_aml"]["status"] == "verified"


def test_subjects_failing_for_the_same_reason_are_one_entry(cohort, monkeypatch):
    """An engine error that names its subject ("subject(s) ['X']: ...") is one skipped entry for all
    the subjects it hit, not one entry (and one table row on the command line) per subject."""
    bad = set(cohort.subject_ids[2:5])
    real = car.derive_car_kinetics

    def fails(study, options=None):
        hit = set(study.subject_ids) & bad
        if hit:
            raise ValueError(f"subject(s) {sorted(hit)}: no CAR-T infusion")
        return real(study, options)

    monkeypatch.setattr(car, "derive_car_kinetics", fails)
    a = Analysis(cohort)
    a.tables()
    nca = [s.to_dict() for s in a.skipped if s.tables == ["car_kinetics"]]
    assert len(nca) == 1 and sorted(nca[0]["subjects"]) == sorted(bad)
    assert nca[0]["reason"] == "ValueError: subject(s) […]: no CAR-T infusion"


def test_response_options_reach_the_best_response():
    """AnalysisOptions(response=...) (e.g. --set response.criteria=eln2022_aml) applies to the best
    response too: the seed case without its disease is NE for want of criteria by default, and its
    ELN 2022 best response (as with its disease given) with the criteria named."""
    from cartlab.response.marrow import ResponseOptions

    s = seed_case()
    s.subjects = s.subjects.with_columns(pl.lit(None, dtype=pl.String).alias("disease"))
    default = Analysis(s).table("best_response").row(0, named=True)
    assert default["best_response"] is None and default["rule"] == "response.no_criteria"
    chosen = Analysis(s, AnalysisOptions(response=ResponseOptions(criteria="eln2022_aml"))).table("best_response")
    with_eln = Analysis(seed_case()).table("best_response").row(0, named=True)
    assert chosen.row(0, named=True)["best_response"] == with_eln["best_response"]
    assert with_eln["best_response"] is not None
