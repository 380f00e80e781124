"""Review 39 diff2 C1-C5 (fix39_mend2): absent-file texts in the study's own format, the report's
docstring and reader flag, one "options:" line per explanation, no private FHIR import.

Expected values are derived by hand from the texts they check against (study-format.md: "Parquet with
the same columns is accepted too", so a Parquet study's missing file is interventions.parquet; the
CLI's own option names in cli/interop.py; the FHIR reader's documented defaults), never copied from
cartlab output.
"""

from __future__ import annotations

import ast
import inspect
import shutil

import polars as pl
import pytest

from cartlab.datasets import seed_case_path
from cartlab.io.errors import Issue
from cartlab.model import Study, conform


def _parquet_study(absent=("interventions", "events")) -> Study:
    """One subject, read from subjects.parquet / observations.parquet, without ``absent``."""
    subjects = conform(pl.DataFrame({"subject_id": ["S1"], "age_years": [50.0], "last_followup_day": [60.0]}),
                       "subjects")
    sources = pl.DataFrame({"file": ["subjects.parquet", "observations.parquet"], "format": ["parquet"] * 2,
                            "sha256": ["x", "y"], "n_rows": [1, 1]})
    return Study(study_id="P", subjects=subjects, sources=sources, absent=frozenset(absent))


# --- C1: a Parquet study is told interventions.parquet / events.parquet, in the text too ----------

def test_c1_absent_texts_name_the_parquet_files():
    from cartlab.io.absent_files import absent_file_means
    from cartlab.io.course_checks import ABSENT_FILE_MEANS

    for name in ("interventions", "events"):
        text = absent_file_means(name, ".parquet")
        # hand: the file the study lacks is <name>.parquet; no .csv file is named in its text
        assert f"{name}.parquet" in text and ".csv" not in text, text
        assert absent_file_means(name) == absent_file_means(name, ".csv") == ABSENT_FILE_MEANS[name]
    assert "name interventions.parquet (options crs.absent_interventions" in absent_file_means("interventions",
                                                                                                ".parquet")


def test_c1_dashboard_names_the_parquet_files():
    from cartlab.app.absent import absent_inputs, cohort_banner, patient_notes, with_events_clause

    study = _parquet_study()
    files = [f for f, _t in absent_inputs(study)]
    assert files == ["events.parquet", "interventions.parquet"]  # NAMED order: events, interventions (doses given)
    for f, text in absent_inputs(study):
        assert text.startswith(f"{f} not given: ") and ".csv" not in text, text
    banner = cohort_banner(study)
    assert "events.parquet not given" in banner and "interventions.parquet not given" in banner
    assert ".csv" not in banner
    assert len(patient_notes(study)) == 2
    line = with_events_clause("Relapse: none.", study)
    assert "events.parquet not given" in line and ".csv" not in line


def test_c1_file_named_by_the_readers_warning_and_read_back():
    from cartlab.io.absent_files import absent_file_name, absent_from_warnings

    w = Issue("interventions.parquet", None, "not given: ...", severity="warning")
    # a stored study keeps only the warnings: "interventions.parquet, file: not given" says interventions is absent
    assert absent_from_warnings([w]) == frozenset({"interventions"})
    study = Study(study_id="P", subjects=_parquet_study().subjects, warnings=[w])
    assert absent_file_name(study, "interventions") == "interventions.parquet"
    csv = Study(study_id="C", subjects=_parquet_study().subjects)  # no source, no warning: the format's default
    assert absent_file_name(csv, "events") == "events.csv"


def test_c1_reader_warning_text_names_the_parquet_file(tmp_path):
    from cartlab.io import study_folder
    from cartlab.io.study_folder import read_study

    if "absent_file_means" not in inspect.getsource(study_folder):
        pytest.skip("study_folder.diff (fix39_mend2) not applied")
    folder = tmp_path / "pq"
    folder.mkdir()
    for name in ("subjects", "observations", "doses"):  # the seed case in Parquet, without interventions/events
        pl.read_csv(seed_case_path() / f"{name}.csv", infer_schema_length=0).write_parquet(folder / f"{name}.parquet")
    study = read_study(folder)
    given = {w.file: w.message for w in study.warnings if str(w.message).startswith("not given:")}
    assert set(given) == {"interventions.parquet", "events.parquet"}
    for file, message in given.items():
        assert ".csv" not in message and file in message, message


# --- C2: the report module says what it writes: SVG course figures, PNG with --png -----------------

def test_c2_html_docstring_names_the_svg_course_figure():
    from cartlab.report import html

    doc = " ".join(html.__doc__.split())
    assert "figures/course_<subject>.svg``" in doc and "``.png`` with ``png=True``" in doc
    assert "course_<subject>.png``" not in doc


# --- C3: one "options:" line per explanation (crs-scales, icaht, endpoints as icans) --------------

@pytest.fixture(scope="module")
def seed_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seed") / "study"
    shutil.copytree(seed_case_path(), folder)
    return folder


def _explain(folder, what, *extra):
    from typer.testing import CliRunner

    from cartlab.cli import app

    r = CliRunner().invoke(app, ["explain", "CD7-AML-001", "--study", str(folder), "--what", what, *extra])
    assert r.exit_code == 0, r.output
    return r.output


@pytest.mark.parametrize("what", ["crs-scales", "icaht", "endpoints", "icans", "crs"])
def test_c3_defaults_print_one_options_line(seed_folder, what):
    out = _explain(seed_folder, what)
    # hand: nothing set, so the CLI's own "options: all defaults" is the only options line
    assert out.count("options:") == 1 and "options: all defaults" in out, out


@pytest.mark.parametrize("what, setting, shown", [
    ("icaht", "icaht.max_interpolation_gap_days=3", "| options: max_interpolation_gap_days=3"),
    ("crs-scales", "crs_legacy.fever_threshold_c=38.5", "| options: fever_threshold_c=38.5"),
    ("endpoints", "endpoints.censor_at_allo_hsct=true", "| options: censor_at_allo_hsct=True"),
])
def test_c3_a_set_option_is_the_only_one_named(seed_folder, what, setting, shown):
    out = " ".join(_explain(seed_folder, what, "--set", setting).split())
    assert shown in out
    # only the option set: the explanation's line names one "k=v", not the full option dump
    after = out.split("| options: ", 1)[1].split(" options not default:", 1)[0]
    assert after.count("=") == 1, after


# --- C4: the report names the real flag, --observation-status -------------------------------------

def test_c4_reader_changes_names_the_cli_flag():
    from cartlab.cli import app
    from cartlab.report.html import reader_changes

    study = _parquet_study(absent=())
    study.reader_options = {"observation_statuses": ["final", "preliminary"], "numeric_valuestring": "skip",
                            "partial_death_dates": "impute", "partial_event_dates": "impute",
                            "ongoing_interventions": "last_record"}
    # hand: only the statuses differ from the reader's documented default (final, amended, corrected)
    assert reader_changes(study) == [{"option": "--observation-status", "value": "final, preliminary",
                                      "default": "final, amended, corrected"}]
    # and `cartlab import` has that flag (the page's flag can be copied)
    import typer.main

    cmd = typer.main.get_command(app).commands["import"]
    flags = {o for p in cmd.params for o in getattr(p, "opts", [])}
    assert "--observation-status" in flags and "--observation-statuses" not in flags


# --- C5: the report imports no private FHIR module -------------------------------------------------

def test_c5_report_imports_the_public_reader_defaults():
    from cartlab.io.fhir import READER_DEFAULTS
    from cartlab.report import html

    tree = ast.parse(inspect.getsource(html))
    mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(m and m.split(".")[-1].startswith("_") for m in mods if m.startswith("cartlab.io")), mods
    # hand, from read_fhir's docstring and cli/interop.py's defaults
    assert dict(READER_DEFAULTS) == {"observation_statuses": ("final", "amended", "corrected"),
                                     "numeric_valuestring": "skip", "partial_death_dates": "impute",
                                     "partial_event_dates": "impute", "ongoing_interventions": "last_record",
                                     "unknown_indication": "count"}
