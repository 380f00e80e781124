"""Review 38 (the store and the batched analysis, second pass): A1, A2, B1, B4, B5, B6, B7, C1, C2, C3.

Expected values are derived by hand from the rules' text (named in each test), never copied from
cartlab's output.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest

from cartlab.analyze import Analysis, AnalysisOptions, write_analysis
from cartlab.analyze_batched import InMemorySource, WorkerKilledError, _killed_message, write_analysis_batched
from cartlab.batch_warnings import merge_warnings
from cartlab.datasets import synthetic_cohort
from cartlab.io import read_study
from cartlab.response.best import BestResponseOptions, derive_best_response
from cartlab.response.marrow_inputs import infusion_status
from cartlab.store import Store, StoreError

NOT_DOSED = ["SYN-0004", "SYN-0005", "SYN-0006"]


def _drop_rows(path: Path, drop) -> None:
    rows = list(csv.DictReader(path.open()))
    keep = [r for r in rows if not drop(r)]
    assert len(keep) < len(rows)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(keep)


def _drop_car_t(folder: Path, ids: list[str]) -> None:
    """Remove the CAR-T rows of ``ids`` from doses.csv (as the review's ``ni`` probe), and their CAR-T
    measurements: since session 39 a CARCOPY/CARCELL after day 0 is an infusion not recorded
    (best_response.infusion_evidence), so a subject not infused has none."""
    _drop_rows(folder / "doses.csv", lambda r: r["subject_id"] in ids and r["agent"] == "CAR-T")
    _drop_rows(folder / "observations.csv", lambda r: r["subject_id"] in ids and r["param"] in ("CARCOPY", "CARCELL"))


@pytest.fixture(scope="module")
def ni(tmp_path_factory) -> Path:
    """9 synthetic subjects (T-ALL / T-LBL / B-ALL / AML / LBCL), SYN-0004..6 without a CAR-T row."""
    folder = synthetic_cohort(9, seed=5, out_dir=tmp_path_factory.mktemp("ni") / "ni")
    _drop_car_t(folder, NOT_DOSED)
    return folder


# ---------------------------------------------------------------------------------------------- A1

def test_a1_subset_of_not_dosed_subjects_stays_not_infused(ni):
    # best.py rule response.not_infused: a subject without its own CAR-T row while OTHER subjects of the
    # study have one is not infused -> NE. The fact "doses are recorded" is the whole study's (lead's
    # decision), so a subset holding only the three not-dosed subjects still says so.
    study = read_study(ni)
    part = study.subset(NOT_DOSED)
    given, why = infusion_status(part)
    assert given == set() and why == "doses.csv"
    best = derive_best_response(part)
    assert best.select("subject_id", "best_response", "rule").rows() == [
        (sid, "NE", "response.not_infused") for sid in NOT_DOSED]
    one = study.subject("SYN-0005")
    assert infusion_status(one)[0] == set()


def test_a1_batch_of_not_dosed_subjects_equals_whole_run(ni, tmp_path):
    # batch size 3: the second batch is exactly SYN-0004..6 (no CAR-T row in it at all); every file but
    # analysis.json must equal the whole run's (the --workers help: "the files written are the same")
    study = read_study(ni)
    write_analysis(Analysis(study), tmp_path / "whole")
    write_analysis_batched(InMemorySource(study), tmp_path / "batch", batch_size=3)
    for f in sorted((tmp_path / "whole").glob("*.csv")):
        assert f.read_bytes() == (tmp_path / "batch" / f.name).read_bytes(), f.name
    best = pl.read_csv(tmp_path / "batch" / "best_response.csv").filter(pl.col("subject_id").is_in(NOT_DOSED))
    assert best["rule"].to_list() == ["response.not_infused"] * 3


def test_a1_parquet_batches_carry_the_study_fact(ni, tmp_path):
    from cartlab.analyze_batched import ParquetSource

    study = read_study(ni)
    folder = tmp_path / "pq"
    folder.mkdir()
    for name, frame in study.tables().items():
        frame.write_parquet(folder / f"{name}.parquet")
    src = ParquetSource(folder)
    batch = src.task(NOT_DOSED)()  # only the three subjects without a CAR-T row
    assert batch.doses_recorded is True and infusion_status(batch)[0] == set()
    write_analysis_batched(src, tmp_path / "batched", batch_size=3)
    best = pl.read_csv(tmp_path / "batched" / "best_response.csv").filter(pl.col("subject_id").is_in(NOT_DOSED))
    assert best["rule"].to_list() == ["response.not_infused"] * 3


def test_a1_stored_subject_knows_the_study_records_doses(ni, tmp_path):
    store = tmp_path / "s.duckdb"
    with Store(store) as s:
        s.import_study(ni, "ni")
    with Store(store, read_only=True) as s:
        one = s.subject("SYN-0005", "ni")
        assert one.doses_recorded is True  # 6 other subjects have a CAR-T row (by construction)
        assert infusion_status(one)[0] == set()


def test_a1_no_car_t_row_anywhere_is_unknown_not_negative(ni, tmp_path):
    # spec "Time": without any CAR-T row the infusion is taken on day 0 (missing is not negative)
    folder = tmp_path / "none"
    shutil.copytree(ni, folder)
    _drop_car_t(folder, [f"SYN-000{i}" for i in range(1, 10)])
    study = read_study(folder)
    assert study.car_t_doses_recorded() is False
    assert infusion_status(study.subset(["SYN-0001"]))[0] is None


# ---------------------------------------------------------------------------------------------- A2

def test_a2_old_store_study_keeps_absent_files(ni, tmp_path):
    # a study folder without interventions.csv and doses.csv; a store row-less in study_warnings (every
    # study imported before session 35): source_files lists the tables read, so the other optional
    # tables were not given (io/absent_files.py: an absent file is unknown, not "none given")
    folder = tmp_path / "abs"
    shutil.copytree(ni, folder)
    (folder / "interventions.csv").unlink()
    (folder / "doses.csv").unlink()
    store = tmp_path / "s.duckdb"
    with Store(store) as s:
        s.import_study(folder, "abs")
    con = duckdb.connect(str(store))
    con.execute("DELETE FROM study_warnings WHERE study_id = 'abs'")
    con.close()
    with Store(store, read_only=True) as s:
        assert {"interventions", "doses"} <= s.load_study("abs").absent
        assert {"interventions", "doses"} <= s.subject("SYN-0001", "abs").absent
        assert s.load_study("abs").absent == read_study(folder).absent
        # C3: the "not recorded" notice is a note, not an input warning
        notes = s.study_warnings("abs")
        assert [w.severity for w in notes] == ["note"]
        assert "import the study again" in notes[0].message


# ---------------------------------------------------------------------------------------------- B5

def test_b5_not_infused_reason_names_the_real_option(ni):
    study = read_study(ni)
    part = study.subset(NOT_DOSED)
    default = derive_best_response(part)["reason"].to_list()[0]
    assert "option best_response.rate_population=infused" in default and "left out" in default
    counted = derive_best_response(part, BestResponseOptions(rate_population="all"))["reason"].to_list()[0]
    assert "option best_response.rate_population=all" in counted
    assert "left out" not in counted and "non-responder" in counted
    assert "option population=" not in default + counted


# ---------------------------------------------------------------------------------------------- B1

def test_b1_merge_sums_counts_and_names_in_order():
    # three batches' fragments of one warning: 2 + 1 + 0 (no fragment) + 2 = 5 subjects, named in order
    t = "{} subject(s) have X ({} row(s)) on day 28: {{subjects}}"
    frag = [(["A", "B"], 4), (["C"], 1), (["D", "E"], 3)]
    batches, shapes = [], {}
    for ids, rows in frag:
        msg = t.format(len(ids), rows).replace("{subjects}", ", ".join(ids))
        shapes[("e", msg)] = (t.format(len(ids), rows), ids)
        batches.append([{"engine": "e", "message": msg}, {"engine": "e", "message": "plain"}])
    out = merge_warnings(batches, shapes)
    # by hand: 5 subjects, 4 + 1 + 3 = 8 rows; "day 28" is not a count (no "(s)") and stays 28
    assert out == [{"engine": "e", "message": "5 subject(s) have X (8 row(s)) on day 28: A, B, C, D, E"},
                   {"engine": "e", "message": "plain"}]


def test_b1_batched_run_gives_one_warning_per_kind(ni, tmp_path):
    # without doses.csv every subject with CAR samples is timed from day 0 (kinetics/car.py warning);
    # the 9 synthetic subjects all have CARCOPY rows, so one warning counts 9 subjects, as a whole run
    folder = synthetic_cohort(9, seed=5, out_dir=tmp_path / "nodoses")  # ni without its CAR-T rows dropped
    (folder / "doses.csv").unlink()
    study = read_study(folder)
    n_car = study.observations.filter(pl.col("param").is_in(["CARCOPY", "CARCELL"]))["subject_id"].n_unique()
    assert n_car == 9
    write_analysis_batched(InMemorySource(study), tmp_path / "b", batch_size=2)
    meta = json.loads((tmp_path / "b" / "analysis.json").read_text())
    found = [w["message"] for w in meta["warnings"] if "CAR-T samples but no CAR-T infusion" in w["message"]]
    assert len(found) == 1 and found[0].startswith("9 subject(s)")
    # C1: the run's cut is recorded
    assert meta["run"]["batch_size"] == 2 and meta["run"]["workers"] == 1 and meta["run"]["batches"] == 5


# ---------------------------------------------------------------------------------------------- B7

def test_b7_subjects_not_in_id_order_batched_equals_whole(ni, tmp_path):
    # subjects.csv in reverse id order: the engines that sort by subject_id sort over the whole study
    folder = tmp_path / "shuf"
    shutil.copytree(ni, folder)
    lines = (folder / "subjects.csv").read_text().splitlines()
    (folder / "subjects.csv").write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    study = read_study(folder)
    write_analysis(Analysis(study), tmp_path / "whole")
    write_analysis_batched(InMemorySource(study), tmp_path / "batch", batch_size=3)
    for name in ("crs_daily", "adlb", "adrs", "car_kinetics", "best_response", "subject_summary"):
        assert (tmp_path / "whole" / f"{name}.csv").read_bytes() == (tmp_path / "batch" / f"{name}.csv").read_bytes()
    first = pl.read_csv(tmp_path / "batch" / "crs_daily.csv")["subject_id"][0]
    assert first == "SYN-0001"  # sorted by id, not the first batch's SYN-0009..7


# ---------------------------------------------------------------------------------------------- B4

@pytest.mark.parametrize(("version", "words"), [("2", "upgrade cartlab"), ("0", "import the studies again")])
def test_b4_schema_version_advice(tmp_path, version, words):
    store = tmp_path / "s.duckdb"
    Store(store).close()
    con = duckdb.connect(str(store))
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [version])
    con.close()
    with pytest.raises(StoreError) as err:
        Store(store, read_only=True)
    assert words in str(err.value)


# ---------------------------------------------------------------------------------------------- B6

def test_b6_killed_worker_message():
    msg = _killed_message(3, 7, ["S7", "S8", "S9"], 3, 2)
    assert "killed by the system" in msg and "batch 3 of 7" in msg and "S7..S9" in msg
    assert "--batch-size (now 3)" in msg
    assert "--workers (now 2)" in msg and "bug" not in msg


class _Die:
    """A batch task whose worker process dies as the OOM killer would kill it."""

    def __call__(self):
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def test_b6_killed_worker_is_a_clear_error(tmp_path, monkeypatch):
    from cartlab.datasets import seed_case

    src = InMemorySource(seed_case())
    monkeypatch.setattr(InMemorySource, "task", lambda self, ids: _Die())
    with pytest.raises(WorkerKilledError) as err:
        from cartlab.analyze_batched import _run_all

        _run_all([["a"], ["b"]], src, AnalysisOptions(), None, tmp_path, frozenset(), 2, None,
                 lambda r: None, False)
    assert err.value.exit_code == 1 and "killed by the system" in str(err.value)


# ---------------------------------------------------------------------------------------------- C2

def test_c2_open_crs_inputs_named_once(ni, tmp_path):
    # crs_onset_open / crs_resolution_open list each missing input once ("interventions.csv, TEMP"),
    # never "interventions.csv, TEMP, interventions.csv" (review 38 C2). Needs other.diff (grading/crs*.py).
    folder = tmp_path / "noint"
    shutil.copytree(ni, folder)
    (folder / "interventions.csv").unlink()
    summary = Analysis(read_study(folder)).subject_summary()
    texts = [t for c in ("crs_onset_open", "crs_resolution_open") for t in summary[c].drop_nulls().to_list()]
    assert texts, "the probe needs an open onset/resolution"
    for t in texts:
        names = t.split(": ", 1)[1].removesuffix(" not recorded").split(", ")
        assert len(names) == len(set(names)), t
