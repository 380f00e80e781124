"""One command-line grammar (issue 14 item 6; CLI audit s28, finding 14 a-k).

README: "A STUDY is named the same way everywhere: a study folder, or the id of a study in the
store". The same flag means the same thing everywhere (--subject is a subject id; the column names
of a plain table are --subject-col, --time-col, --conc-col, --lloq-col), output folders are --out,
and usage lines name their arguments STUDY, SUBJECT, FILE, DIR. Every old spelling still works as a
hidden alias that prints one deprecation line (a user's script never breaks).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from cartlab.cli import app


def _run(*args, env: dict | None = None):
    res = CliRunner().invoke(app, [str(a) for a in args],
                             env={"COLUMNS": "200", "CARTLAB_STORE": None, **(env or {})})
    text = " ".join(res.output.split())  # stdout and stderr, as the user sees them
    return res, text


def _help(*command: str) -> str:
    res, _ = _run(*command, "--help")
    assert res.exit_code == 0, res.output
    return res.output


def _usage(*command: str) -> str:
    return next(line for line in _help(*command).splitlines() if "Usage:" in line).split("Usage:")[1].strip()


def _deprecations(text: str) -> list[str]:
    return re.findall(r"! (\S+(?: \S+)*?) is deprecated: use ", text)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    from cartlab.datasets import synthetic_cohort

    return Path(synthetic_cohort(3, seed=2, out_dir=tmp_path_factory.mktemp("g") / "mini"))


@pytest.fixture(scope="module")
def store(study, tmp_path_factory) -> Path:
    """The study imported as 'mini' into cartlab.duckdb (the default store's name) of its own folder."""
    db = tmp_path_factory.mktemp("store") / "cartlab.duckdb"
    res, text = _run("import", study, "--store", db, "--study-id", "mini")
    assert res.exit_code == 0, text
    return db


@pytest.fixture
def conc(tmp_path) -> Path:
    path = tmp_path / "conc.csv"
    path.write_text("id,t,c\nA,0,0\nA,1,5\nA,2,3\nA,4,1\nA,8,0.5\nB,0,0\nB,1,4\nB,2,6\nB,4,2\nB,8,1\n",
                    encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------
# c. --subject is a subject id; a plain table's columns are --subject-col, --time-col, --conc-col, --lloq-col


def test_nca_column_options_are_named_col_and_the_old_names_still_work(tmp_path, conc):
    res, text = _run("nca", conc, "--subject-col", "id", "--time-col", "t", "--conc-col", "c", "--out",
                     tmp_path / "new.csv")
    assert res.exit_code == 0, text
    assert _deprecations(text) == []
    # the old spellings (also --name=value) give the same file; nca keeps them without a warning,
    # because ../shared/conformance/README.md runs `cartlab nca ... --subject Subject --time Time --conc conc`
    res, text = _run("nca", conc, "--subject", "id", "--time=t", "--conc", "c", "--out", tmp_path / "old.csv")
    assert res.exit_code == 0, text
    assert _deprecations(text) == []
    assert (tmp_path / "old.csv").read_bytes() == (tmp_path / "new.csv").read_bytes()


@pytest.mark.parametrize("command", ["nca", "stein"])
def test_table_commands_document_the_col_names_only(command):
    h = _help(command)
    for new in ("--subject-col", "--time-col", "--conc-col", "--lloq-col"):
        assert new in h, new
    # the old names are hidden (no option --subject / --time / --conc / --lloq in the help)
    assert not re.search(r"--(subject|time|conc|lloq)(?![-\w])", h), h


def test_nca_says_it_takes_a_plain_table_not_a_study():
    h = " ".join(_help("nca").split())
    assert "a plain table, not a study" in h.lower() or "a plain csv table, not a study" in h.lower()
    assert "cartlab analyze" in h
    assert _usage("nca").endswith("FILE")


# ------------------------------------------------------------------------------------------------
# a. stein takes a STUDY as analyze does: a folder or a stored id (--store), besides a plain table


def test_stein_fits_a_stored_study_by_its_id(tmp_path, store):
    assert "--store" in _help("stein")
    out = tmp_path / "stein"
    res, text = _run("stein", "mini", "--store", store, "--out", out)
    assert res.exit_code == 0, text
    meta = json.loads((out / "stein_fit.json").read_text(encoding="utf-8"))
    assert meta["input_kind"] == "study" and meta["n_subjects"] == 3
    assert {i["file"] for i in meta["inputs"]} >= {"subjects.csv", "observations.csv"}


def test_stein_names_what_is_wrong_with_a_stored_id_or_a_missing_table(tmp_path, store):
    res, text = _run("stein", "nosuch", "--store", store, "--out", tmp_path / "x")
    assert res.exit_code == 2 and "no study with this id" in text and "mini" in text, text
    res, text = _run("stein", "missing.csv", "--store", store, "--out", tmp_path / "x")
    assert res.exit_code == 2 and "missing.csv: no such file or folder" in text, text
    # a table option with a study: refused, named as the user typed it (old spelling: with its warning)
    res, text = _run("stein", "mini", "--store", store, "--time", "DAY", "--out", tmp_path / "x")
    assert res.exit_code == 2 and "--time: for a table" in text and "--time is deprecated" in text, text
    res, text = _run("stein", "mini", "--store", store, "--time-col", "DAY", "--out", tmp_path / "x")
    assert res.exit_code == 2 and "--time-col: for a table" in text and "deprecated" not in text, text
    assert not (tmp_path / "x").exists()


def test_stein_table_needs_the_col_options(tmp_path, conc):
    res, text = _run("stein", conc, "--time-col", "t", "--conc-col", "c", "--out", tmp_path / "x")
    assert res.exit_code == 2 and "needs --subject-col" in text, text


# ------------------------------------------------------------------------------------------------
# b. dose --store defaults to ./cartlab.duckdb (CARTLAB_STORE); --subject reads the patient from it


def test_dose_store_has_the_default_of_every_subject_command():
    h = _help("dose")
    assert re.search(r"--store\s+FILE.*\[env var: CARTLAB_STORE\].*\[default: cartlab\.duckdb\]", " ".join(h.split()))


def test_dose_subject_reads_the_patient_from_the_default_store(store, monkeypatch):
    monkeypatch.chdir(store.parent)  # ./cartlab.duckdb: the default store, no --store given
    res, text = _run("dose", "--protocol", "nct04762485", "--subject", "SYN-0001", "--csv")
    assert res.exit_code == 0, text
    assert "SYN-0001:" in text and "(from the study data)" in text
    # the same as naming the stored study, or its folder
    same, _ = _run("dose", "--protocol", "nct04762485", "--subject", "SYN-0001", "--study", "mini", "--csv")
    assert same.exit_code == 0 and same.stdout == res.stdout


def test_dose_subject_without_any_store_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res, text = _run("dose", "--protocol", "nct04762485", "--subject", "SYN-0001")
    assert res.exit_code == 2 and "--weight" in text and "no store at cartlab.duckdb" in text, text
    # --subject with --weight and --height only labels the patient, as before
    res, text = _run("dose", "--protocol", "nct04762485", "--subject", "P1", "--weight", "52", "--height", "160")
    assert res.exit_code == 0, text


# ------------------------------------------------------------------------------------------------
# d. import: --study-id is the id to store under; --study (the study to read elsewhere) a deprecated alias


def test_import_documents_study_id_and_keeps_study_as_an_alias(tmp_path, study):
    h = _help("import")
    assert "--study-id" in h and not re.search(r"--study(?![-\w])", h), h
    db = tmp_path / "s.duckdb"
    res, text = _run("import", study, "--store", db, "--study", "OLD")
    assert res.exit_code == 0, text
    assert _deprecations(text) == ["--study"] and "use --study-id" in text
    res, text = _run("list", "--store", db)
    assert "OLD" in text


# ------------------------------------------------------------------------------------------------
# e. export --adam runs the analysis with --set/--options/--strict as analyze; report takes --strict


class _Spy(Exception):
    pass


@pytest.fixture
def spy(monkeypatch):
    """cartlab.analyze.Analysis replaced: the options a command runs it with, then stop."""
    import cartlab.analyze

    seen: list = []

    def fake(data, options=None, *args, **kwargs):
        seen.append(options)
        raise _Spy("stopped after the options were seen")

    monkeypatch.setattr(cartlab.analyze, "Analysis", fake)
    return seen


def test_export_adam_takes_set_and_options(tmp_path, study, spy):
    opts = tmp_path / "o.yaml"
    opts.write_text("icaht: {duration: longest_run}\n", encoding="utf-8")
    _run("export", study, "--adam", tmp_path / "adam", "--set", "crs.fever_threshold_c=38.3", "--options", opts,
         "--strict")
    assert len(spy) == 1, "export --adam did not run the analysis with the options"
    o = spy[0].to_dict()
    assert o["crs"]["fever_threshold_c"] == 38.3 and o["icaht"]["duration"] == "longest_run" and o["strict"]
    assert "--set" in _help("export") and "--options" in _help("export")


def test_export_set_without_adam_is_refused(tmp_path, study):
    res, text = _run("export", study, "--out", tmp_path / "e", "--set", "crs.fever_threshold_c=38.3")
    assert res.exit_code == 2 and "--adam" in text and not (tmp_path / "e").exists(), text


def test_report_takes_strict(tmp_path, study, spy):
    assert "--strict" in _help("report")
    _run("report", study, "--out", tmp_path / "r", "--strict", "--set", "crs.fever_threshold_c=38.3")
    assert len(spy) == 1 and spy[0].strict and spy[0].to_dict()["crs"]["fever_threshold_c"] == 38.3


# ------------------------------------------------------------------------------------------------
# g. the output folder is --out everywhere (export's and synthetic's positional OUT: hidden, deprecated)


def test_synthetic_and_export_positional_out_is_deprecated(tmp_path, study):
    assert "OUT" not in _usage("synthetic") and "OUT" not in _usage("export")
    res, text = _run("synthetic", tmp_path / "syn", "--n", "2", "--seed", "1")
    assert res.exit_code == 0 and (tmp_path / "syn" / "subjects.csv").is_file(), text
    assert "is deprecated: use --out" in text
    res, text = _run("export", study, tmp_path / "exp")
    assert res.exit_code == 0 and (tmp_path / "exp" / "subjects.csv").is_file(), text
    assert "is deprecated: use --out" in text
    res, text = _run("synthetic", "--out", tmp_path / "syn2", "--n", "2", "--seed", "1")
    assert res.exit_code == 0 and "deprecated" not in text


@pytest.mark.parametrize("command", ["analyze", "report"])
def test_a_positional_output_folder_is_told_to_use_out(tmp_path, study, command):
    res, text = _run(command, study, tmp_path / "o")
    assert res.exit_code == 2 and "given with --out" in text and f"--out {tmp_path / 'o'}" in text, text
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------------
# i. twin forecast --from-day is a data cut-off, not show's display window: said in its help


def test_twin_forecast_from_day_says_how_it_differs_from_show_from():
    h = " ".join(_help("twin", "forecast").split())
    assert "--from-day" in h and "cartlab show --from" in h


# ------------------------------------------------------------------------------------------------
# j. usage lines: STUDY, SUBJECT, FILE, DIR in capitals; [X] optional; no {x}, no [[X]]

USAGE = {
    ("validate",): "STUDY", ("import",): "[DIR]", ("show",): "SUBJECT", ("export",): "[STUDY]",
    ("synthetic",): "", ("analyze",): "[STUDY]", ("report",): "[STUDY]", ("explain",): "SUBJECT",
    ("ctcae",): "[FILE]", ("nca",): "FILE", ("stein",): "STUDY|FILE", ("protocols",): "[PROTOCOL]",
    ("eligibility",): "[SUBJECT]", ("deviations",): "[SUBJECT]", ("serve",): "[STUDY]",
    ("twin", "fit"): "[STUDY]", ("twin", "forecast"): "[STUDY]",
}


@pytest.mark.parametrize("command", list(USAGE), ids=" ".join)
def test_usage_metavars_are_consistent(command):
    usage = _usage(*command)
    assert "{" not in usage and "[[" not in usage, usage
    assert usage == f"cartlab {' '.join(command)} [OPTIONS] {USAGE[command]}".strip(), usage


def test_subject_and_study_options_have_capital_metavars():
    for command in (("show",), ("explain",), ("eligibility",), ("deviations",), ("dose",)):
        assert re.search(r"--study\s+STUDY", _help(*command)), command
    for command in (("report",), ("dose",), ("twin", "fit")):
        assert re.search(r"--subject\s+SUBJECT", _help(*command)), command


# ------------------------------------------------------------------------------------------------
# k. eligibility, like deviations, runs over every subject of --study without a SUBJECT


def test_eligibility_without_subject_screens_every_subject(store, study):
    res, text = _run("eligibility", "--protocol", "nct04762485", "--study", "mini", "--store", store)
    assert res.exit_code == 0, text
    assert all(f"SYN-000{i}" in text for i in (1, 2, 3)) and "3 subject(s) screened" in text
    res, _ = _run("eligibility", "--protocol", "nct04762485", "--study", study, "--csv")
    assert res.exit_code == 0
    import io

    df = pl.read_csv(io.StringIO(res.stdout))
    assert set(df["subject_id"]) == {"SYN-0001", "SYN-0002", "SYN-0003"}
    one, _ = _run("eligibility", "SYN-0002", "--protocol", "nct04762485", "--study", study, "--csv")
    assert pl.read_csv(io.StringIO(one.stdout)).equals(df.filter(pl.col("subject_id") == "SYN-0002"))


def test_eligibility_without_subject_or_study_says_what_to_give(store):
    res, text = _run("eligibility", "--protocol", "nct04762485", "--store", store)
    assert res.exit_code == 2 and "give a SUBJECT, or --study" in text, text


# ------------------------------------------------------------------------------------------------
# the older hidden aliases now say that they are deprecated (one line each)


def test_old_hidden_aliases_print_one_deprecation_line(study):
    res, text = _run("deviations", "--protocol", "nct04762485", "--study-dir", study, "--format", "csv")
    assert res.exit_code == 0, text
    assert _deprecations(text) == ["--study-dir", "--format csv"]
    assert res.stdout.startswith("subject_id,")  # the CSV on stdout is unchanged by the warnings
