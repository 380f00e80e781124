"""The DuckDB store: idempotent, transactional, provenance kept, crash-safe."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cartlab.io import StudyValidationError, read_study
from cartlab.model import TABLES
from cartlab.store import Store, StoreError



def snapshot(db: Path) -> dict:
    """Everything in a store, as comparable frames."""
    with Store(db, read_only=True) as s:
        out = {"studies": s.studies().drop("imported_at")}
        for name in TABLES:
            out[name] = s.table(name).sort(["study_id", "src_file", "src_row"])
    return out


def assert_snapshots_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].equals(b[k]), k


def test_import_load_equals_read(small_study, tmp_path):
    db = tmp_path / "s.duckdb"
    with Store(db) as s:
        r = s.import_study(small_study)
        assert r.action == "imported" and r.counts["observations"] == 10
        loaded = s.load_study("small")
    direct = read_study(small_study)
    for name in TABLES:
        assert loaded.table(name).equals(direct.table(name)), name
    assert loaded.sources.sort("file").equals(direct.sources.sort("file"))


def test_reimport_same_files_changes_nothing(small_study, tmp_path):
    db = tmp_path / "s.duckdb"
    with Store(db) as s:
        s.import_study(small_study)
    before = snapshot(db)
    with Store(db) as s:
        imported_at = s.studies()["imported_at"][0]
        r = s.import_study(small_study)
        assert r.action == "unchanged"
        assert s.studies()["imported_at"][0] == imported_at
    assert_snapshots_equal(before, snapshot(db))


def test_changed_files_replace_atomically(small_study, tmp_path):
    db = tmp_path / "s.duckdb"
    with Store(db) as s:
        s.import_study(small_study)
        with open(small_study / "observations.csv", "a") as fh:
            fh.write("S2,3,,CRP,,4,,mg/dL,,0.5,,\n")
        r = s.import_study(small_study)
        assert r.action == "replaced" and r.counts["observations"] == 11
        assert s.studies().height == 1


def test_invalid_study_leaves_store_unchanged(small_study, tmp_path):
    db = tmp_path / "s.duckdb"
    with Store(db) as s:
        s.import_study(small_study)
    before = snapshot(db)
    with open(small_study / "observations.csv", "a") as fh:
        fh.write("S1,4,,NEUT,,0.4,,furlongs,,,,\n")
    with Store(db) as s, pytest.raises(StudyValidationError):
        s.import_study(small_study)
    assert_snapshots_equal(before, snapshot(db))


def test_failure_inside_the_transaction_rolls_back(small_study, tmp_path):
    db = tmp_path / "s.duckdb"
    with Store(db) as s:
        s.import_study(small_study, "first")
    before = snapshot(db)

    def boom(msg):
        if msg.startswith("writing events"):
            raise RuntimeError("disk on fire")

    with Store(db) as s, pytest.raises(RuntimeError, match="disk on fire"):
        s.import_study(small_study, "second", progress=boom)
    assert_snapshots_equal(before, snapshot(db))


def test_provenance_persisted(small_study, tmp_path):
    with Store(tmp_path / "s.duckdb") as s:
        s.import_study(small_study)
        obs = s.table("observations", "small")
    assert obs["src_file"].unique().to_list() == ["observations.csv"]
    assert obs["src_row"].to_list() == list(range(1, 11))
    assert obs["src_sha256"].n_unique() == 1


def test_subject_lookup(small_study, tmp_path):
    with Store(tmp_path / "s.duckdb") as s:
        s.import_study(small_study, "a")
        s.import_study(small_study, "b")
        with pytest.raises(StoreError, match="several studies"):
            s.subject("S1")
        one = s.subject("S1", "a")
        assert one.subjects.height == 1 and one.observations.height == 7
        with pytest.raises(StoreError, match="no subject"):
            s.subject("nobody")
        assert s.delete_study("b") and not s.delete_study("b")


def test_read_only_store_must_exist(tmp_path):
    with pytest.raises(StoreError, match="no store"):
        Store(tmp_path / "missing.duckdb", read_only=True)


# ---- crash safety --------------------------------------------------------------------------

def _big_study(folder: Path, n_subjects: int = 600, days: int = 120) -> Path:
    """A valid study with n_subjects * days * 10 observations (written fast with numpy/polars)."""
    folder.mkdir(parents=True)
    ids = [f"P{i:04d}" for i in range(n_subjects)]
    pl.DataFrame({"subject_id": ids}).write_csv(folder / "subjects.csv")
    rng = np.random.default_rng(1)
    params = ["NEUT", "PLAT", "WBC", "LYM", "CRP", "TEMP", "SYSBP", "HR", "OXYSAT", "IL6"]
    units = ["10^9/L", "10^9/L", "10^9/L", "10^9/L", "mg/L", "C", "mmHg", "beats/min", "%", "pg/mL"]
    lo = np.array([0.1, 10, 1, 0.1, 1, 36, 90, 60, 90, 1])
    n = n_subjects * days * len(params)
    sid = np.repeat(ids, days * len(params))
    day = np.tile(np.repeat(np.arange(-7, days - 7), len(params)), n_subjects)
    pidx = np.tile(np.arange(len(params)), n_subjects * days)
    pl.DataFrame(
        {
            "subject_id": sid,
            "day": day,
            "param": np.array(params)[pidx],
            "value": np.round(lo[pidx] + 5 * rng.random(n), 2),
            "unit": np.array(units)[pidx],
        }
    ).write_csv(folder / "observations.csv")
    return folder


_IMPORTER = """
import sys, time
from cartlab.store import Store
pause_at = sys.argv[3]
def step(msg):
    print(msg, flush=True)
    if pause_at != "-" and msg.startswith(pause_at):
        print("PAUSED", flush=True)
        time.sleep(60)
with Store(sys.argv[1]) as s:
    s.import_study(sys.argv[2], "big", progress=step)
print("DONE", flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "kill_after, pause_at, delay",
    [
        # while the bulk INSERT of the observations runs
        ("writing observations", "-", 0.05),
        # after the observations were inserted, inside the open transaction
        ("PAUSED", "writing interventions", 0.0),
        # just before COMMIT
        ("PAUSED", "committing", 0.0),
    ],
)
def test_sigkill_during_import_leaves_store_unchanged(small_study, tmp_path, kill_after, pause_at, delay):
    db = tmp_path / "s.duckdb"
    with Store(db) as s:
        s.import_study(small_study, "existing")
    before = snapshot(db)
    big = _big_study(tmp_path / "big")
    proc = subprocess.Popen(
        [sys.executable, "-c", _IMPORTER, str(db), str(big), pause_at],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line.strip())
        if line.startswith(kill_after):
            time.sleep(delay)
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (seen, proc.stderr.read() if proc.stderr else "")
    assert "DONE" not in seen
    # the store opens, is readable, and holds exactly what it held before
    assert_snapshots_equal(before, snapshot(db))
    with Store(db) as s:  # and it is writable again
        assert s.import_study(small_study, "existing").action == "unchanged"
        assert s.fingerprint_of("big") is None
