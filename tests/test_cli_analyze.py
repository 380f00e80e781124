"""`cartlab analyze` on studies nobody here wrote (issue 13, point 1): a valid study never aborts."""

from __future__ import annotations

import csv
import json

import polars as pl
import pytest

from cartlab.analyze import STEPS
from test_cli import run_here


def run(*args, env=None):
    """The command line in this process (test_cli.run_here: the installed command's exit code, stdout and
    stderr, a traceback included when one would be printed)."""
    return run_here(*args, env=env)


def _cohort_without_followup(d, n: int):
    """An n-subject synthetic cohort (seed 3) without the optional last_followup_day column."""
    assert run("synthetic", d, "--n", n, "--seed", "3").returncode == 0
    subjects = pl.read_csv(d / "subjects.csv", infer_schema=False)
    subjects.drop("last_followup_day").write_csv(d / "subjects.csv")
    return d


@pytest.fixture(scope="module")
def no_followup(tmp_path_factory):
    """A 40-subject synthetic cohort without the optional last_followup_day column."""
    return _cohort_without_followup(tmp_path_factory.mktemp("nofu") / "cohort", 40)


@pytest.fixture(scope="module")
def no_followup_small(tmp_path_factory):
    """The same, 12 subjects: enough for --strict to meet a subject censored at its last record (the test
    asserts the error naming last_followup_day, so a cohort without such a subject fails it: 8 subjects of
    seed 3 have none, and --strict then exits 0)."""
    return _cohort_without_followup(tmp_path_factory.mktemp("nofu12") / "cohort", 12)


def test_analyze_without_followup_writes_every_table_and_says_what_was_censored(no_followup, tmp_path):
    assert run("validate", no_followup).returncode == 0
    out = tmp_path / "res"
    r = run("analyze", no_followup, "--out", out)
    assert r.returncode == 0, r.stderr
    written = {p.stem for p in out.glob("*.csv")}
    expected = {n for s in STEPS if s.write for n in s.outputs} | {"subject_summary"}
    assert written == expected
    with open(out / "subject_summary.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 40
    meta = json.loads((out / "analysis.json").read_text())
    assert meta["skipped"] == []
    censor = [w for w in meta["warnings"] if "censor.last_record" in w["message"]]
    assert len(censor) == 1 and "no last_followup_day" in censor[0]["message"]
    assert "censor.last_record" in " ".join(r.stderr.split())
    adtte = pl.read_csv(out / "adtte.csv")
    last = adtte.filter(pl.col("rule") == "censor.last_record")
    assert last.height > 0 and set(last["CNSDTDSC"]) == {"LAST RECORDED ROW (NO LAST_FOLLOWUP_DAY)"}
    # the empty-or-not cohort tables always carry their header
    for name in ("km", "cumulative_incidence"):
        assert (out / f"{name}.csv").read_text().split("\n")[0].startswith("PARAMCD")
    # no cell of a cohort table holds a list of every responder's source rows
    rates = (out / "response_rates.csv").read_text()
    assert max(len(c) for row in csv.reader(rates.splitlines()) for c in row) < 500


def test_strict_keeps_the_error(no_followup_small, tmp_path):
    r = run("analyze", no_followup_small, "--out", tmp_path / "s", "--strict")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "last_followup_day" in " ".join(r.stderr.split())
    assert not (tmp_path / "s" / "subject_summary.csv").exists()


def test_synthetic_refuses_a_non_empty_folder(tmp_path):
    d = tmp_path / "c"
    assert run("synthetic", d, "--n", "3", "--seed", "1").returncode == 0
    (d / "README.md").write_text("an old study's readme")
    first = (d / "subjects.csv").read_text()
    r = run("synthetic", d, "--n", "5", "--seed", "2")
    assert r.returncode == 2 and "not empty" in r.stderr and "--force" in r.stderr
    assert (d / "subjects.csv").read_text() == first  # untouched
    f = run("synthetic", d, "--n", "5", "--seed", "2", "--force")
    assert f.returncode == 0, f.stderr
    # review 38 B8: --force replaces the study tables only; a README the user wrote is kept
    assert (d / "README.md").read_text() == "an old study's readme"
    assert len((d / "subjects.csv").read_text().strip().splitlines()) == 6


def _sparse_anc_study(folder):
    """One subject with a single ANC of 0.3 x10^9/L on day 2 and fevers of 38.3 C on days 1-2."""
    folder.mkdir(parents=True)
    (folder / "subjects.csv").write_text("subject_id,age_years,last_followup_day\nA,50,100\n")
    (folder / "observations.csv").write_text("subject_id,day,param,value,unit\nA,2,NEUT,0.3,10^9/L\n"
                                             "A,1,TEMP,38.3,C\nA,2,TEMP,38.3,C\nA,3,TEMP,37.0,C\n")
    return folder


def test_engine_options_from_the_command_line(tmp_path):
    """--set and --options reach the engines and analysis.json records them. By hand: one ANC <= 0.5
    on day 2 and no other: "never above 0.5 in days 0-30" cannot be known (session 34: the data must
    reach day 30, death or last follow-up; it was grade 4 from the one day), so early ICAHT is graded
    by duration, 1 day <= 0.5 -> grade 1, up to 4; with never_above_requires_full_window also 1. A fever
    threshold of 38.5 C makes the two 38.3 C days no fever -> CRS 0 (default 38.0 -> grade 1)."""
    study = _sparse_anc_study(tmp_path / "s")
    base = tmp_path / "base"
    r = run("analyze", study, "--out", base)
    assert r.returncode == 0, r.stderr
    row = pl.read_csv(base / "subject_summary.csv").row(0, named=True)
    assert (row["icaht_early_grade"], row["crs_grade_astct"]) == (1, 1)
    assert pl.read_csv(base / "icaht.csv").row(0, named=True)["icaht_early_grade_max"] == 4
    opts = tmp_path / "opts.yaml"
    opts.write_text("crs:\n  fever_threshold_c: 38.5\n")
    out = tmp_path / "set"
    r = run("analyze", study, "--out", out, "--options", opts, "--set", "icaht.never_above_requires_full_window=true")
    assert r.returncode == 0, r.stderr
    row = pl.read_csv(out / "subject_summary.csv").row(0, named=True)
    assert (row["icaht_early_grade"], row["crs_grade_astct"]) == (1, 0)
    applied = json.loads((out / "analysis.json").read_text())["options"]
    assert applied["icaht"]["never_above_requires_full_window"] is True and applied["crs"]["fever_threshold_c"] == 38.5


@pytest.mark.parametrize("args, message", [
    (["--set", "icaht.no_such_option=1"], "unknown option icaht.no_such_option"),  # session 37: as written
    (["--set", "nosuch.x=1"], "unknown engine 'nosuch'"),
    (["--set", "icaht"], "write ENGINE.OPTION=VALUE"),
])
def test_bad_engine_options_are_one_clear_error(tmp_path, args, message):
    study = _sparse_anc_study(tmp_path / "s")
    r = run("analyze", study, "--out", tmp_path / "o", *args)
    assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()
