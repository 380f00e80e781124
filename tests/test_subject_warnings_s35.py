"""Warnings that name subjects (session 35): one helper, ``cartlab.errors.SubjectsWarning``, names them
for ``cartlab analyze`` and the API, and gives the same words with a pointer to the table naming
them on the terminal of ``cartlab report`` (a log; ``--debug`` names them). Before session 35 only the
exposure-response warning did so; the ADTTE, best-response, ICANS, early-ICAHT, CAR-T sample and
dose-plan warnings and the "not analysed" table named subjects on the report's stderr.

Expected texts are written by hand from the templates' words, not copied from output."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import warnings
from types import SimpleNamespace

import polars as pl
import pytest

from cartlab.datasets.synthetic import synthetic_cohort
from cartlab.errors import (
    CartlabWarning,
    SubjectsWarning,
    names_subjects,
    subject_ids_in_warnings,
    warning_text,
)


def test_subjects_warning_names_at_most_limit_and_counts_the_rest():
    w = SubjectsWarning("3 subject(s) lack X: {subjects}.", ["A", "B", "A", "C"], "x.csv", limit=2)
    assert str(w) == "3 subject(s) lack X: A, B (+1 more)."
    assert w.subject_ids == ["A", "B", "C"]
    # session 40: analyze counts too, so the pointer names --debug before any command
    assert w.unnamed == ("3 subject(s) lack X: named in x.csv, which cartlab analyze writes (cartlab --debug "
                         "before the command (cartlab --debug analyze ...) names them here).")
    assert "A" not in w.unnamed.replace("named", "")  # no id in the unnamed words
    labelled = SubjectsWarning("{subjects}", ["A"], "t", labels=["A (22 d)"])
    assert str(labelled) == "A (22 d)"
    assert isinstance(w, CartlabWarning)


def test_warning_text_follows_the_context_and_nests():
    w = SubjectsWarning("left out: {subjects}", ["S-1"], "t.csv")
    assert names_subjects() and warning_text(w) == "left out: S-1"
    with subject_ids_in_warnings(False):
        assert not names_subjects()
        assert warning_text(w) == w.unnamed and "S-1" not in warning_text(w)
        assert warning_text(CartlabWarning("plain")) == "plain"
        with subject_ids_in_warnings(True):
            assert warning_text(w) == "left out: S-1"
        assert not names_subjects()
    assert names_subjects()


def test_subjects_warning_pickles_as_its_named_text():
    back = pickle.loads(pickle.dumps(SubjectsWarning("a {subjects}", ["S-9"], "t")))
    assert type(back) is CartlabWarning and str(back) == "a S-9"


def test_exposure_module_keeps_its_public_context_manager():
    from cartlab.kinetics import exposure

    assert exposure.subject_ids_in_warnings is subject_ids_in_warnings


# -- through the Analysis and the CLI


@pytest.fixture(scope="module")
def odd_study(tmp_path_factory):
    """A 6-subject synthetic study; SYN-0002 loses its disease (best response: 'no disease' warning),
    SYN-0003 its last_followup_day (ADTTE: 'censored at their last recorded row' warning)."""
    tmp = tmp_path_factory.mktemp("s35w")
    folder = synthetic_cohort(6, 35, tmp / "syn")
    subj = pl.read_csv(folder / "subjects.csv", infer_schema_length=0)
    subj = subj.with_columns(
        pl.when(pl.col("subject_id") == "SYN-0002").then(None).otherwise(pl.col("disease")).alias("disease"),
        pl.when(pl.col("subject_id") == "SYN-0003").then(None).otherwise(pl.col("last_followup_day"))
        .alias("last_followup_day"))
    subj.write_csv(folder / "subjects.csv")
    return folder


def _messages(analysis) -> str:
    return "\n".join(w["message"] for w in analysis.warnings)


def test_analysis_records_ids_by_default_and_pointers_inside_the_report_context(odd_study):
    from cartlab.analyze import Analysis
    from cartlab.io import read_study

    study = read_study(odd_study)
    named = _messages(_computed(Analysis(study)))
    assert "have no disease in subjects.csv, so no response criteria were applied: SYN-0002" in named
    assert "(ADTTE rule censor.last_record): SYN-0003" in named
    with subject_ids_in_warnings(False):
        a = _computed(Analysis(study))
    unnamed = _messages(a)
    assert "SYN-0002" not in unnamed and "SYN-0003" not in unnamed
    assert "applied: named in best_response.csv (column reason)" in unnamed
    assert "censor.last_record): named in adtte.csv (rule censor.last_record)" in unnamed


def _computed(analysis):
    analysis.subject_summary()
    analysis.table("adtte")
    return analysis


def _run(args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "CARTLAB_DEBUG"}
    r = subprocess.run([sys.executable, "-m", "cartlab", *args], capture_output=True, text=True, env=env,
                       timeout=600, check=False, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return r


def _run_here(args, cwd):
    """``_run`` in this process (typer's CliRunner; session 42: no 3-5 s of a subprocess importing): the
    same exit code and stderr, CARTLAB_DEBUG unset. Used for the --debug runs, whose checks look for
    ids that must be there (the runs that must name no id stay real processes: their whole stderr)."""
    import traceback

    from typer.testing import CliRunner

    from cartlab.cli import app

    old = os.getcwd()
    try:
        os.chdir(cwd)
        res = CliRunner().invoke(app, list(args), env={"CARTLAB_DEBUG": None}, prog_name="cartlab")
    finally:
        os.chdir(old)
    stderr = res.stderr
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        stderr += "".join(traceback.format_exception(res.exception))
    assert res.exit_code == 0, stderr
    return SimpleNamespace(stderr=stderr, stdout=res.stdout)


def test_cli_report_stderr_points_to_tables_analyze_names(odd_study, tmp_path):
    rep = _run(["report", str(odd_study), "--out", str(tmp_path / "rep"), "--no-pdf", "--workers", "1"], tmp_path)
    assert "SYN-0002" not in rep.stderr and "SYN-0003" not in rep.stderr
    assert "named in best_response.csv" in rep.stderr.replace("\n", " ")
    # the report's own tables still name them (the pointer is true)
    best = pl.read_csv(tmp_path / "rep" / "tables" / "subject_summary.csv", infer_schema_length=0)
    assert "SYN-0002" in best["subject_id"].to_list()
    # session 40 (review 40 store/cli B2): analyze's terminal output is a log too: counts, --debug names them
    ana = _run(["analyze", str(odd_study), "--out", str(tmp_path / "ana")], tmp_path)
    assert "SYN-0002" not in ana.stderr and "SYN-0003" not in ana.stderr
    ana_dbg = _run_here(["--debug", "analyze", str(odd_study), "--out", str(tmp_path / "ana2")], tmp_path)
    assert "SYN-0002" in ana_dbg.stderr and "SYN-0003" in ana_dbg.stderr
    dbg = _run_here(["--debug", "report", str(odd_study), "--out", str(tmp_path / "rep2"), "--no-pdf", "--workers",
                     "1"], tmp_path)
    assert "SYN-0002" in dbg.stderr


def test_not_analysed_table_counts_subjects_and_blanks_their_ids_in_reasons():
    from rich.console import Console

    import cartlab.cli.base as base
    from cartlab.analyze import Skipped

    sk = Skipped(engine="CAR-T kinetics", tables=["car_kinetics"], subjects=["PT-7", "PT-77"], reason="subject 'PT-77' has two samples at time 7",
                 fix="drop one")
    analysis = SimpleNamespace(skipped=[sk], warnings=[])
    buf = io.StringIO()
    old = base.err
    base.err = Console(file=buf, width=300)
    try:
        base._print_skipped(analysis)
        named = buf.getvalue()
        buf.seek(0), buf.truncate()
        with subject_ids_in_warnings(False):
            base._print_skipped(analysis)
        unnamed = buf.getvalue()
    finally:
        base.err = old
    assert "PT-7, PT-77" in named and "subject 'PT-77'" in named
    assert "PT-7" not in unnamed  # neither id, not even inside the reason ("PT-77" contains "PT-7")
    assert "2 (named in analysis.json)" in unnamed and "subject '[subject]' has two samples" in unnamed


def test_uncaptured_subjects_warning_is_shown_without_ids_in_report_mode():
    from rich.console import Console

    import cartlab.cli.base as base

    buf = io.StringIO()
    old = base.err
    base.err = Console(file=buf, width=300)
    try:
        with subject_ids_in_warnings(False), warnings.catch_warnings():
            base._print_warnings([SubjectsWarning("left out: {subjects}", ["S-5"], "t.csv")])
    finally:
        base.err = old
    assert "S-5" not in buf.getvalue() and "left out: named in t.csv" in buf.getvalue()
