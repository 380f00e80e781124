"""Issue 15 through the command line: SDTM and FHIR in (import, analyze), ADaM and FHIR out (export).

Expected values: row counts of the pharmaverse fixtures are read from the fixture files themselves
(an independent reader: the csv module); the seed round trip compares against the seed as read from
its study folder.
"""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl
import pyreadstat
import pytest
from typer.testing import CliRunner

from cartlab.cli import app
from cartlab.datasets import seed_case_path
from cartlab.io import read_study

SDTM = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "pharmaversesdtm"
if not SDTM.is_dir():  # a checkout with ../shared beside it (CI), or this machine's /work/shared
    SDTM = Path("/work/shared/fixtures/pharmaversesdtm")


def run(*args, code: int = 0) -> str:
    res = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200", "CARTLAB_DEBUG": ""})
    text = res.output + (res.stderr if res.stderr_bytes is not None else "")
    assert "Traceback" not in text
    assert res.exit_code == code, text
    return " ".join(text.split())


def _rows(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as fh:
        return sum(1 for _ in csv.DictReader(fh))


def _canonical(study, table: str) -> pl.DataFrame:
    drop = [c for c in ("src_file", "src_row", "src_sha256") if c in study.table(table).columns]
    return study.table(table).drop(drop).sort(pl.all())


@pytest.mark.skipif(not SDTM.is_dir(), reason="needs ../shared (pharmaversesdtm fixtures)")
def test_import_sdtm_writes_a_mapping_report_accounting_for_every_record(tmp_path):
    store = tmp_path / "s.duckdb"
    out = run("import", "--sdtm", SDTM / "csv", "--study", "PILOT", "--store", store)
    assert "PILOT: imported" in out
    report = pl.read_csv(tmp_path / "PILOT_sdtm_mapping_report.csv")
    expected = {p.stem.upper(): _rows(p) for p in (SDTM / "csv").glob("*.csv")}
    # rows of a file (not the second uses of some records, e.g. "dm.csv:DTHDTC" -> death events)
    got = report.filter(~pl.col("file").str.contains(":")).group_by("domain").agg(pl.col("n_rows").sum())
    assert dict(got.iter_rows()) == expected
    assert (report["n_mapped"] + report["n_skipped"] == report["n_rows"]).all()
    assert "PILOT" in run("list", "--store", store)
    # the store keeps the source format and file hash of every row (issue 15, item 4)
    from cartlab.store import Store

    with Store(store, read_only=True) as s:
        stored = s.load_study("PILOT")
    files = dict(stored.sources.select("file", "sha256").iter_rows())
    assert set(stored.sources["format"]) == {"sdtm-csv"}
    obs = stored.observations
    assert obs.height > 0 and obs["src_file"].is_in(list(files)).all()
    assert all(files[f] == h for f, h in obs.select("src_file", "src_sha256").unique().iter_rows())


@pytest.mark.skipif(not SDTM.is_dir(), reason="needs ../shared (pharmaversesdtm fixtures)")
def test_export_adam_from_sdtm_xpt_reads_back_with_pyreadstat(tmp_path):
    out = run("export", "--adam", tmp_path / "adam", "--sdtm", SDTM / "xpt", "--format", "xpt")
    assert "ADSL" in out
    df, meta = pyreadstat.read_xport(str(tmp_path / "adam" / "adsl.xpt"))
    assert meta.table_name == "ADSL" and len(df) == _rows(SDTM / "csv" / "dm.csv")
    assert all(len(c) <= 8 for c in df.columns) and "USUBJID" in df.columns
    assert (tmp_path / "adam" / "define.csv").is_file() and (tmp_path / "sdtm_mapping_report.csv").exists() is False
    assert (tmp_path / "adam" / "sdtm_mapping_report.csv").is_file()


@pytest.fixture(scope="module")
def seed_bundle(tmp_path_factory) -> Path:
    """`cartlab export SEED --fhir`, run once for the tests that read the bundle (read only)."""
    bundle = tmp_path_factory.mktemp("fhir") / "seed.json"
    run("export", seed_case_path(), "--fhir", bundle)
    return bundle


def test_seed_round_trips_through_a_fhir_bundle_and_the_store(tmp_path, seed_bundle):
    store = tmp_path / "s.duckdb"
    bundle = seed_bundle
    run("import", "--fhir", bundle, "--study", "SEED", "--store", store)
    run("export", "SEED", "--out", tmp_path / "back", "--store", store)
    seed, back = read_study(seed_case_path()), read_study(tmp_path / "back")
    for table in ("subjects", "doses", "observations", "interventions", "events"):
        assert _canonical(back, table).equals(_canonical(seed, table)), table


def test_analyze_from_fhir_writes_the_mapping_report_beside_the_tables(tmp_path, seed_bundle):
    run("analyze", "--fhir", seed_bundle, "--out", tmp_path / "a")
    assert (tmp_path / "a" / "fhir_mapping_report.csv").is_file()
    summary = pl.read_csv(tmp_path / "a" / "subject_summary.csv")
    assert summary["crs_grade_astct"].to_list() == [3]  # case-facts.md: the seed's CRS was grade 3


def test_a_source_is_named_once_and_an_ambiguous_store_lists_its_studies(tmp_path):
    store = tmp_path / "s.duckdb"
    assert "give one source" in run("analyze", seed_case_path(), "--fhir", tmp_path / "x.json",
                                    "--out", tmp_path / "a", code=2)
    assert "--mapping applies to --sdtm or --fhir" in run("analyze", seed_case_path(), "--mapping",
                                                            tmp_path / "m.yaml", "--out", tmp_path / "a", code=2)
    run("import", seed_case_path(), "--study", "A", "--store", store)
    run("export", "--adam", tmp_path / "one", "--store", store)  # the only study: used
    assert (tmp_path / "one" / "adsl.csv").is_file()
    run("import", seed_case_path(), "--study", "B", "--store", store)
    assert "several studies: A, B" in run("export", "--adam", tmp_path / "two", "--store", store, code=2)
    assert not (tmp_path / "two").exists()


def test_malformed_fhir_is_one_message_and_the_store_is_untouched(tmp_path):
    store = tmp_path / "s.duckdb"
    bad = tmp_path / "bad.json"
    bad.write_text('{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": '
                   '"Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": "high"}}]}')
    out = run("import", "--fhir", bad, "--store", store, code=2)
    assert "bad.json" in out
    assert not store.exists()


def test_partial_dates_are_an_sdtm_option(tmp_path):
    assert "--partial-dates applies to --sdtm" in run("analyze", "--fhir", tmp_path / "x.json", "--partial-dates",
                                                       "impute", "--out", tmp_path / "a", code=2)
    # review 40 C1: the flag and its choices, not the reader's Python name
    assert "--partial-dates 'guess': choose skip or impute" in run("analyze", "--sdtm", SDTM / "csv", "--partial-dates",
                                                                   "guess", "--out", tmp_path / "a", code=2)
    assert not (tmp_path / "a").exists()


def test_the_readers_warnings_are_printed(tmp_path):
    # an exact duplicate LB record (only LBSEQ differs) is dropped by the SDTM reader: the command says so
    f = tmp_path / "sdtm"
    f.mkdir()
    (f / "dm.csv").write_text("STUDYID,DOMAIN,USUBJID,RFXSTDTC\nS,DM,S-1,2021-05-10\n", encoding="utf-8")
    (f / "lb.csv").write_text("STUDYID,DOMAIN,USUBJID,LBSEQ,LBTESTCD,LBSTRESN,LBSTRESU,LBSPEC,LBDTC\n"
                              "S,LB,S-1,1,NEUT,0.4,10^9/L,BLOOD,2021-05-11\n"
                              "S,LB,S-1,2,NEUT,0.4,10^9/L,BLOOD,2021-05-11\n", encoding="utf-8")
    out = run("import", "--sdtm", f, "--store", tmp_path / "x.duckdb")
    assert "lb.csv, record 2: 1 exact duplicate row(s) dropped" in out
