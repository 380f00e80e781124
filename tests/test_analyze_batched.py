"""Analysis in subject batches (cartlab.analyze_batched): the same files as the whole-study analysis.

The oracle is :func:`cartlab.analyze.write_analysis` on the whole study (the code path the goldens of
issue 14 were recorded with); the batched run must write byte-identical CSV files and the same
``analysis.json`` apart from the engines' seconds (summed over batches).
"""

import filecmp
import json

import polars as pl
import pytest

import cartlab.kinetics.car as car
from cartlab.analyze import Analysis, AnalysisOptions, write_analysis
from cartlab.analyze_batched import InMemorySource, ParquetSource, write_analysis_batched
from cartlab.datasets import seed_case, synthetic_cohort
from cartlab.errors import EngineError
from cartlab.io import read_study
from cartlab.model import Study
from cartlab.protocol import load_protocol


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    return synthetic_cohort(30, seed=11, out_dir=tmp_path_factory.mktemp("c") / "study")


@pytest.fixture(scope="module")
def cohort(cohort_dir):
    return read_study(cohort_dir)


@pytest.fixture(scope="module")
def whole(cohort, tmp_path_factory):
    """The oracle, once per module (session 42): the whole-study Analysis of the cohort and the folder
    write_analysis wrote it to. Tests only read both."""
    analysis = Analysis(cohort)
    out = tmp_path_factory.mktemp("whole") / "whole"
    write_analysis(analysis, out)
    return analysis, out


def _same_files(a, b):
    names_a = sorted(p.name for p in a.iterdir() if not p.name.startswith("."))  # the CLI's marker (s28)
    names_b = sorted(p.name for p in b.iterdir() if not p.name.startswith("."))
    assert names_a == names_b
    for name in names_a:
        if name == "analysis.json":
            ja, jb = (json.loads((d / name).read_text()) for d in (a, b))
            for j in (ja, jb):
                for e in j["engines"]:
                    e.pop("seconds")
            # review 38 C1: a batched run records how it was cut ("run"); a whole run has none
            assert "run" not in ja and set(jb.pop("run")) == {"batch_size", "workers", "batches",
                                                               "engine_seconds_are"}
            assert ja == jb
        else:
            assert filecmp.cmp(a / name, b / name, shallow=False), name


@pytest.mark.parametrize("batch_size", [4, 13])
def test_batches_write_the_same_files_as_the_whole_study(cohort, whole, tmp_path, batch_size):
    write_analysis_batched(InMemorySource(cohort), tmp_path / "batched", batch_size=batch_size)
    _same_files(whole[1], tmp_path / "batched")
    assert not list((tmp_path / "batched").glob(".cartlab-batches-*"))  # the spilled parts are gone


def test_two_worker_processes_with_a_protocol(cohort, tmp_path):
    proto = load_protocol("nct04762485")
    write_analysis(Analysis(cohort, protocol=proto), tmp_path / "whole")
    info = {}
    path, analysis, tables = write_analysis_batched(InMemorySource(cohort), tmp_path / "batched", protocol=proto,
                                                    batch_size=8, workers=2, info=info)
    _same_files(tmp_path / "whole", tmp_path / "batched")
    assert info["batches"] == 4 and len(info["worker_peak_rss"]) == 2
    assert "protocol_orr" in tables and path.name == "subject_summary.csv"


def test_parquet_source_reads_only_each_batch(cohort, whole, tmp_path):
    folder = tmp_path / "pq"
    folder.mkdir()
    for name, frame in cohort.tables().items():
        if name == "observations":  # parts, as a chunked writer leaves them
            (folder / name).mkdir()
            half = frame.height // 2
            frame.head(half).write_parquet(folder / name / "part-0.parquet")
            frame.tail(frame.height - half).write_parquet(folder / name / "part-1.parquet")
        else:
            frame.write_parquet(folder / f"{name}.parquet")
    src = ParquetSource(folder)
    assert src.subject_ids() == cohort.subject_ids
    batch = src.task(cohort.subject_ids[3:5])()
    assert batch.subject_ids == cohort.subject_ids[3:5]
    assert batch.observations.equals(cohort.subset(cohort.subject_ids[3:5]).observations)
    write_analysis_batched(src, tmp_path / "batched", batch_size=11)
    adlb = pl.read_csv(whole[1] / "adlb.csv", infer_schema=False)
    assert adlb.equals(pl.read_csv(tmp_path / "batched" / "adlb.csv", infer_schema=False))


def test_a_parquet_folder_without_subjects_is_an_input_error(tmp_path):
    from cartlab.errors import InputError

    with pytest.raises(InputError, match="subjects"):
        ParquetSource(tmp_path)


def test_subjects_found_only_in_other_tables_are_analysed(tmp_path):
    seed = seed_case()
    extra = seed.observations.with_columns(pl.lit("EXTRA-1").alias("subject_id"))
    study = Study(study_id="x", subjects=seed.subjects, doses=seed.doses,
                  observations=pl.concat([seed.observations, extra]), interventions=seed.interventions,
                  events=seed.events)
    write_analysis(Analysis(study), tmp_path / "whole")
    write_analysis_batched(InMemorySource(study), tmp_path / "batched", batch_size=1)
    _same_files(tmp_path / "whole", tmp_path / "batched")


def _failing_for(bad):
    real = car.derive_car_kinetics

    def fails(study, options=None):
        if bad & set(study.subject_ids):
            raise ZeroDivisionError(f"cannot fit {sorted(bad & set(study.subject_ids))}")
        return real(study, options)

    return fails


def test_a_failing_subject_is_left_out_as_in_the_whole_study(cohort, tmp_path, monkeypatch):
    bad = {cohort.subject_ids[4], cohort.subject_ids[17]}
    monkeypatch.setattr(car, "derive_car_kinetics", _failing_for(bad))
    whole = Analysis(cohort)
    write_analysis(whole, tmp_path / "whole")
    _path, batched, _ = write_analysis_batched(InMemorySource(cohort), tmp_path / "batched", batch_size=6)
    _same_files(tmp_path / "whole", tmp_path / "batched")
    assert [s.to_dict() for s in batched.skipped] == [s.to_dict() for s in whole.skipped]


def test_strict_stops_and_writes_nothing(cohort, tmp_path, monkeypatch):
    monkeypatch.setattr(car, "derive_car_kinetics", _failing_for({cohort.subject_ids[2]}))
    out = tmp_path / "out"
    with pytest.raises(EngineError):
        write_analysis_batched(InMemorySource(cohort), out, AnalysisOptions(strict=True), batch_size=5)
    assert not [p for p in out.iterdir()]


def test_batch_size_must_be_positive(cohort, tmp_path):
    with pytest.raises(ValueError):
        write_analysis_batched(InMemorySource(cohort), tmp_path, batch_size=0)


def test_cli_workers_write_the_same_files(cohort_dir, tmp_path):
    """End to end: `cartlab analyze --workers 2 --batch-size 8` against the one-piece run. The batched run
    is a real process (it spawns its workers); the one-piece run goes through the same command line in
    this process (session 42: typer's CliRunner, no second interpreter importing cartlab). Not the
    module's write_analysis oracle: the command writes its analysis.json warnings as a log (counts, no
    ids: session 40), which write_analysis does not."""
    import subprocess
    import sys

    from typer.testing import CliRunner

    from cartlab.cli import app

    res = CliRunner().invoke(app, ["analyze", str(cohort_dir), "--out", str(tmp_path / "whole")])
    assert res.exit_code == 0, (res.output, res.exception)
    proc = subprocess.run([sys.executable, "-m", "cartlab", "analyze", str(cohort_dir), "--out",
                           str(tmp_path / "batched"), "--workers", "2", "--batch-size", "8"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    _same_files(tmp_path / "whole", tmp_path / "batched")


def test_batches_that_disagree_on_a_column_type_are_unified_as_concat_would(tmp_path):
    """One batch has an all-null column (type Null) and integers where another has floats: the file is
    the CSV of pl.concat(how="diagonal_relaxed") of the batches (computed here independently)."""
    from cartlab.analyze_batched import _Assembler, _BatchResult
    from cartlab.grading.adam import to_csv_frame

    parts = [pl.DataFrame({"subject_id": ["A"], "x": [1], "note": [None]}),
             pl.DataFrame({"subject_id": ["B"], "x": [2.5], "note": ["n"]}),
             pl.DataFrame({"subject_id": ["C"], "x": [3], "note": [None]})]
    (tmp_path / "t").mkdir()
    asm = _Assembler(tmp_path)
    for k, frame in enumerate(parts):
        to_csv_frame(frame).write_csv(tmp_path / "t" / f"{k:06d}.csv")
        frame.write_parquet(tmp_path / "t" / f"{k:06d}.parquet")
        asm.add(_BatchResult(k=k, ids=[], kept={}, spilled={"t": {c: str(t) for c, t in frame.schema.items()}},
                             derived=["t"], missing={}, skipped=[], warnings=[], timings={}, rule_counts={},
                             peak_rss=0, pid=0))
    asm.finish("t", tmp_path / "t.csv")
    expected = tmp_path / "expected.csv"
    pl.concat(parts, how="diagonal_relaxed").write_csv(expected)
    assert (tmp_path / "t.csv").read_text() == expected.read_text() == "subject_id,x,note\nA,1.0,\nB,2.5,n\nC,3.0,\n"


def test_analyze_batched_holds_every_table_as_parts_equal_to_the_whole(cohort, whole, tmp_path):
    from cartlab.analyze_batched import analyze_batched

    whole, _ = whole
    tables = whole.tables()
    run = analyze_batched(InMemorySource(cohort), tmp_path, batch_size=9)
    assert set(run.parts) | set(run.analysis.computed()) >= set(tables)
    for name in ("adlb", "crs_daily", "car_kinetics", "best_response"):
        assert pl.concat([pl.read_parquet(p) for p in run.parts[name]], how="diagonal_relaxed").equals(tables[name])
    for name in ("km", "response_rates", "crs_cross_scale_pairwise"):
        assert run.analysis.table(name).equals(tables[name])
    assert not list(tmp_path.glob("*/*.csv"))  # no CSV text unless asked
    assert run.analysis.subject_summary().equals(whole.subject_summary())
