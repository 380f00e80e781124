"""Review 36 (a new user's trial of the CLI): B1, B2, B3, B5, B6, C2, C3, C7, C8, C9, C11.

Expected texts are the messages the review asked for (its REPORT.md), not copied from the program's
output; numbers are derived by hand where a test needs one (said at the test).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from cartlab.cli import app
from cartlab.datasets import seed_case_path

README = Path(__file__).resolve().parents[1] / "README.md"


def run(*args, code: int | None = 0, cwd: Path | None = None, store: Path | None = None) -> str:
    import os

    env = {"COLUMNS": "250", "CARTLAB_DEBUG": "", "CARTLAB_STORE": str(store) if store else None}
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        res = CliRunner().invoke(app, [str(a) for a in args], env=env)
    finally:
        os.chdir(old)
    text = res.output  # stdout and stderr, as a terminal shows them
    assert "Traceback" not in text, text
    if code is not None:
        assert res.exit_code == code, text
    return " ".join(text.split())


def _seed(tmp_path: Path, name: str = "seedcopy") -> Path:
    d = tmp_path / name
    shutil.copytree(seed_case_path(), d)
    return d


# ------------------------------------------------------------------------------------------------
# B1: a repeated header line is one error, "repeats the header", not one per column


def test_a_repeated_header_line_is_one_error_naming_row_and_line(tmp_path):
    d = _seed(tmp_path)
    lines = (d / "doses.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(lines) >= 4
    # the header again after data row 2: data row 3 is on line 4 of the file
    (d / "doses.csv").write_text("".join(lines[:3] + [lines[0]] + lines[3:]), encoding="utf-8")
    text = run("validate", d, code=1)
    assert text.count("✗") == 1, text
    assert "doses.csv, row 3 (line 4): the row repeats the header line" in text, text
    assert "must be a number" not in text and "unknown subject" not in text, text


def test_a_row_with_one_header_word_is_not_a_repeated_header(tmp_path):
    # a value that happens to equal its column's name is a bad value, named as such (not "header")
    d = _seed(tmp_path)
    lines = (d / "doses.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    row = lines[1].rstrip("\n").split(",")
    row[header.index("dose")] = "dose"
    (d / "doses.csv").write_text("".join([lines[0], ",".join(row) + "\n", *lines[2:]]), encoding="utf-8")
    text = run("validate", d, code=1)
    assert "repeats the header" not in text and "dose must be a number, got 'dose'" in text, text


# ------------------------------------------------------------------------------------------------
# B2: --strict names the file and column, no exception class name, no "[…]" placeholder


def test_strict_error_names_file_and_column_without_internals(tmp_path):
    d = tmp_path / "syn"
    run("synthetic", "--out", d, "--n", "6", "--seed", "36")
    subj = pl.read_csv(d / "subjects.csv", infer_schema=False)
    # no follow-up day and no disease (so no response assessment): nothing to censor time-to-event at
    subj.drop("last_followup_day", "disease").write_csv(d / "subjects.csv")
    text = run("analyze", d, "--strict", "--out", tmp_path / "an", code=1)
    assert "could not run for subject(s)" in text, text
    assert "subjects.csv, column last_followup_day" in text, text
    for internal in ("ValueError", "[…]", "EndpointOptions", "['"):
        assert internal not in text, (internal, text)


# ------------------------------------------------------------------------------------------------
# B3: a bad --set value is one line: the option, the value, what is expected


@pytest.mark.parametrize("setting, expected", [
    ("crs.fever_threshold_c=abc", "--set crs.fever_threshold_c: 'abc' is not valid; expected a number"),
    ("icaht.duration=foo", "--set icaht.duration: 'foo' is not valid; expected 'cumulative' or 'longest_run'"),
    ("crs.age_adjusted_sbp=maybe", "--set crs.age_adjusted_sbp: 'maybe' is not valid; expected true or false"),
])
def test_a_bad_set_value_is_one_plain_line(tmp_path, setting, expected):
    text = run("analyze", seed_case_path(), "--set", setting, "--out", tmp_path / "x", code=2)
    assert expected in text, text
    for internal in ("Input should", "CrsOptions", "IcahtOptions", ".int:", ".float:", "pydantic"):
        assert internal not in text, (internal, text)
    assert not (tmp_path / "x").exists()


def test_a_bad_value_in_an_options_file_names_the_file(tmp_path):
    opts = tmp_path / "o.yaml"
    opts.write_text("crs:\n  fever_threshold_c: abc\n", encoding="utf-8")
    text = run("analyze", seed_case_path(), "--options", opts, "--out", tmp_path / "x", code=2)
    assert f"--options {opts}: crs.fever_threshold_c: 'abc' is not valid; expected a number" in text, text


# ------------------------------------------------------------------------------------------------
# B6: a logistic odds ratio on fewer than 10 events per variable is flagged (Peduzzi et al. 1996)


def _er_summary(n_event: int, n_total: int) -> pl.DataFrame:
    """n_total subjects, n_event with CRS grade 3 (the others 1), exposures interleaved so that the
    groups overlap (no separation: a finite MLE)."""
    rng = np.random.default_rng(36)
    cmax = 10 ** rng.uniform(2, 5, n_total)
    grade = [3 if i % (n_total // n_event) == 0 and i // (n_total // n_event) < n_event else 1
             for i in range(n_total)]
    assert sum(g == 3 for g in grade) == n_event
    return pl.DataFrame({"subject_id": [f"S{i}" for i in range(n_total)], "car_cmax": cmax,
                         "car_auc_0_28": cmax * 10, "best_response": ["CR"] * n_total,
                         "crs_grade_astct": grade})


def test_sparse_exposure_response_odds_ratio_is_flagged():
    from cartlab.errors import CartlabWarning
    from cartlab.kinetics.exposure import derive_exposure_response

    summary = _er_summary(n_event=2, n_total=20)  # 2 events: EPV 2 < 10
    with pytest.warns(CartlabWarning, match="Peduzzi"):
        er = derive_exposure_response(summary, outcomes=("crs_grade_ge3",))
    for r in er.iter_rows(named=True):
        assert r["or_per_10fold"] is not None, r["logit_note"]  # still fitted (overlapping groups)
        assert r["logit_sparse"] is True
        assert "2 event(s) and 18 non-event(s)" in r["logit_note"] and "Peduzzi" in r["logit_note"]
    # the threshold is an option: 0 turns the check off
    er0 = derive_exposure_response(summary, outcomes=("crs_grade_ge3",), min_epv=0)
    assert not any(er0["logit_sparse"].to_list())
    assert all("sparse" not in n for n in er0["logit_note"].to_list())


def test_enough_events_and_non_events_are_not_flagged():
    import warnings

    from cartlab.kinetics.exposure import derive_exposure_response

    summary = _er_summary(n_event=10, n_total=20)  # 10 events, 10 non-events: EPV 10, not below 10
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        er = derive_exposure_response(summary, outcomes=("crs_grade_ge3",))
    assert not any("Peduzzi" in str(x.message) for x in w)
    assert er["logit_sparse"].to_list() == [False, False]


# ------------------------------------------------------------------------------------------------
# C2: validate a stored study id; a missing path without "Nothing was written."


def test_validate_a_stored_study_id_lists_its_recorded_warnings(tmp_path):
    d = _seed(tmp_path, "seedstudy")
    (d / "notes.txt").write_text("not a table\n", encoding="utf-8")  # an import warning: "not read"
    store = tmp_path / "s.duckdb"
    run("import", d, "--store", store)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    text = run("validate", "seedstudy", "--store", store, cwd=elsewhere)
    assert "seedstudy: a study in the store" in text and "validated when it was imported" in text, text
    assert "notes.txt" in text, text  # the recorded warning itself
    assert "Nothing was written" not in text


def test_validate_a_missing_path_says_what_validate_takes(tmp_path):
    text = run("validate", "nosuchstudy", "--store", tmp_path / "none.duckdb", code=2, cwd=tmp_path)
    assert "nosuchstudy: no such file or folder; validate takes a study folder, or the id of a study in the store" \
        in text, text
    assert "Nothing was written" not in text and ", file:" not in text, text


# ------------------------------------------------------------------------------------------------
# C11: a stored study's read-time warnings are printed at import, then counted


def test_stored_study_warnings_are_counted_not_repeated(tmp_path):
    d = _seed(tmp_path, "seedstudy")
    (d / "notes.txt").write_text("not a table\n", encoding="utf-8")
    store = tmp_path / "s.duckdb"
    imported = run("import", d, "--store", store)
    assert "notes.txt" in imported  # printed in full once, at import
    subject = pl.read_csv(d / "subjects.csv", infer_schema=False)["subject_id"][0]
    # one warning at import: notes.txt is not read (README.md is documentation, review 47 F6)
    count = "1 input warning recorded when seedstudy was imported (cartlab validate seedstudy lists them)"
    # by id (no folder of that name here) and by the folder's name (the same files as stored)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for cwd in (elsewhere, tmp_path):
        text = run("show", subject, "--study", "seedstudy", "--store", store, "--to", "0", cwd=cwd)
        assert count in text and "notes.txt" not in text, (cwd, text)
    # a folder that is not the stored study's files: every warning, as before
    text = run("show", subject, "--study", str(d), "--to", "0", cwd=elsewhere)
    assert "notes.txt" in text, text


# ------------------------------------------------------------------------------------------------
# C3: a report's warnings point to files that exist and say what --debug does there


def test_report_warning_pointers_and_debug_help():
    from cartlab.errors import SubjectsWarning
    from cartlab.kinetics.exposure import left_out_message, subject_ids_in_warnings

    w = SubjectsWarning("2 subject(s) lack X: {subjects}.", ["A", "B"], "adtte.csv (rule censor.last_record)")
    assert "which cartlab analyze writes" in w.unnamed and "cartlab --debug before the command" in w.unnamed, w.unnamed
    with subject_ids_in_warnings(False):
        msg = left_out_message({"no CRS grade": ["A"]})
    # the report writes tables/cohort_exposure_stats.csv with the column excluded (report/cohort_base.py)
    assert "tables/cohort_exposure_stats.csv, column excluded" in msg and "cartlab --debug before the command" in msg, msg
    assert "A" not in msg.replace("named", "").replace("ADaM", "")
    help_text = run("--help")
    assert "report's warnings name the subjects" in help_text, help_text


# ------------------------------------------------------------------------------------------------
# C7: simulate names its CI method


def test_simulate_names_the_wilson_interval(tmp_path):
    text = run("simulate", "--n", "20", "--seed", "1", "--folders", "0", "--out", tmp_path / "sim")
    assert "(Wilson 95% CIs)" in text and "Clopper-Pearson" in text, text
    import json

    summary = json.loads((tmp_path / "sim" / "summary.json").read_text(encoding="utf-8"))
    rates = summary["arms"][0]["rates"]["crs_ge3"]
    k = round(rates["rate"] * 20)
    # Wilson (1927) score interval by hand: centre (p + z^2/2n)/(1 + z^2/n), half-width
    # z sqrt(p(1-p)/n + z^2/4n^2)/(1 + z^2/n); the printed interval is this one
    z, n, p = 1.959963984540054, 20, k / 20
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (
        1 + z * z / n)
    assert f"CRS>=3 {100 * p:.1f}% ({100 * (centre - half):.1f}-{100 * (centre + half):.1f})" in text, text


# ------------------------------------------------------------------------------------------------
# B5: export's --format means one thing; readable metavars


def test_export_adam_format_and_the_old_format_spelling(tmp_path):
    help_text = run("export", "--help")
    assert "--adam-format" in help_text and "csv|parquet" in help_text, help_text
    text = run("export", seed_case_path(), "--adam", tmp_path / "a1", "--adam-format", "csv")
    assert "deprecated" not in text and (tmp_path / "a1" / "adsl.csv").is_file(), text
    old = run("export", seed_case_path(), "--adam", tmp_path / "a2", "--format", "csv")
    assert "--format is deprecated: use --adam-format" in old.replace("export --adam ... ", ""), old
    assert (tmp_path / "a2" / "adsl.csv").is_file() and not (tmp_path / "a2" / "adsl.xpt").exists()
    run("export", seed_case_path(), "--out", tmp_path / "f", "--adam-format", "csv", code=2)


@pytest.mark.parametrize("command", [("analyze",), ("report",), ("serve",), ("export",), ("dose",),
                                     ("eligibility",), ("simulate",), ("validate",), ("explain",)])
def test_help_metavars_are_words_not_python_types(command):
    text = run(*command, "--help")
    for raw in ("<str>", "<list[str]>", "<int range>", "<int>", "<float>", "<path>", "<float,str>"):
        assert raw not in text, (command, raw)


# ------------------------------------------------------------------------------------------------
# C8, C9: README


def test_readme_dose_csv_example_rows_are_in_the_printed_order(tmp_path):
    block = README.read_text(encoding="utf-8").split("$ cartlab dose --protocol nct04762485 --weight 52", 1)[1]
    block = block.split("```", 1)[0]
    shown = [ln.split(",")[:4] for ln in block.splitlines()[2:] if re.match(r"-?\d+\.\d,", ln)]
    res = CliRunner().invoke(app, ["dose", "--protocol", "nct04762485", "--weight", "52", "--height", "160",
                                   "--age", "17", "--sex", "F", "--creatinine", "54", "umol/L", "--csv"],
                             env={"COLUMNS": "250"})
    printed = [ln.split(",")[:4] for ln in res.stdout.splitlines() if re.match(r"-?\d+\.\d,", ln)]
    assert len(shown) >= 5
    # the README's rows are the printed rows, in the printed order (the "..." line skips, not reorders)
    positions = [printed.index(r) for r in shown]
    assert positions == sorted(positions) and positions[:4] == [0, 1, 2, 3], (shown, printed)


def test_readme_says_what_export_changes(tmp_path):
    text = " ".join(README.read_text(encoding="utf-8").split())
    assert "gives the same files back" not in text
    assert "not byte-for-byte copies" in text and "`day` filled in" in text
    # ... and it is true: a datetime-only row comes back with its day (hand: 2024-01-02T12:00 is
    # 1.5 days after an infusion on 2024-01-01 at 00:00)
    d = tmp_path / "dt"
    d.mkdir()
    (d / "subjects.csv").write_text("subject_id,infusion_date\nP1,2024-01-01\n", encoding="utf-8")
    (d / "observations.csv").write_text("subject_id,day,datetime,param,value,unit\n"
                                        "P1,,2024-01-02T12:00,CRP,5,mg/L\n", encoding="utf-8")
    run("export", d, "--out", tmp_path / "ex")
    back = pl.read_csv(tmp_path / "ex" / "observations.csv", infer_schema=False)
    assert float(back["day"][0]) == pytest.approx(1.5)
