"""One command-line grammar, session 41 (issue 14 item 6): a study is ``--study STUDY`` in every command
that reads one, a subject ``--subject SUBJECT`` in every command that takes one; the commands whose
object is a study (or a subject) also take it positionally, the short form. Both forms given: the same
value is fine, different values one usage error naming both (exit 2, no traceback).

The expected result of each long form is the short form's own output in the same run (the short forms
are the documented, tested grammar of earlier sessions): the two must agree byte for byte.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cartlab.cli import app

STUDY_HELP = "A study folder, or the id of a study in the store (cartlab list)."
SUBJECT_HELP = "A subject id (cartlab list --subjects)."
P = ("--protocol", "nct04762485")


def _run(*args, cwd: Path | None = None):
    res = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400", "CARTLAB_STORE": None})
    return res, " ".join(res.output.split())


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    from cartlab.datasets import synthetic_cohort

    return Path(synthetic_cohort(3, seed=2, out_dir=tmp_path_factory.mktemp("g41") / "mini"))


@pytest.fixture(scope="module")
def store(study, tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("g41store") / "cartlab.duckdb"
    res, text = _run("import", study, "--store", db, "--study-id", "mini")
    assert res.exit_code == 0, text
    return db


def _same(short: list, long: list):
    """Both forms succeed with the same output (their --out folders, when they differ, read as OUT)."""
    a, ta = _run(*short)
    b, tb = _run(*long)
    assert a.exit_code == 0, ta
    assert b.exit_code == 0, tb

    def plain(res, args):
        out = args[args.index("--out") + 1] if "--out" in args else None
        return res.stdout.replace(str(out), "OUT") if out is not None else res.stdout

    assert plain(a, short) == plain(b, long)
    return a, b


# ------------------------------------------------------------------------------------------------
# subject commands: SUBJECT or --subject SUBJECT; the study always --study STUDY


@pytest.mark.parametrize("command", [("explain", "--what", "crs"), ("show",), ("eligibility", *P, "--csv"),
                                     ("deviations", *P, "--csv"), ("dose", *P, "--csv")])
def test_subject_commands_take_the_subject_as_argument_or_option(command, study, store):
    name, *rest = command
    _same([name, "SYN-0002", *rest, "--study", study],
          [name, "--subject", "SYN-0002", *rest, "--study", study])
    # a stored study by its id, through --store
    _same([name, "SYN-0002", *rest, "--study", "mini", "--store", store],
          [name, *rest, "--store", store, "--study", "mini", "--subject", "SYN-0002"])


def test_dose_takes_a_positional_subject(study):
    # before session 41 the argument was "unexpected extra argument"; the patient is read from the data
    res, text = _run("dose", "SYN-0001", *P, "--study", study)
    assert res.exit_code == 0, text
    assert "SYN-0001:" in text and "(from the study data)" in text


@pytest.mark.parametrize("command", [("explain",), ("show",), ("eligibility", *P), ("deviations", *P),
                                     ("dose", *P)])
def test_two_different_subjects_are_one_usage_error(command, study):
    name, *rest = command
    res, text = _run(name, "SYN-0001", *rest, "--subject", "SYN-0002", "--study", study)
    assert res.exit_code == 2, text
    assert "'SYN-0001'" in text and "--subject 'SYN-0002'" in text and "give the subject once" in text
    assert "Traceback" not in res.output
    same, text = _run(name, "SYN-0001", *rest, "--subject", "SYN-0001", "--study", study)
    assert same.exit_code == 0, text


def test_a_subject_command_without_any_subject_says_both_forms(study):
    res, text = _run("explain", "--study", study)
    assert res.exit_code == 2 and "give the subject: SUBJECT or --subject SUBJECT" in text, text


# ------------------------------------------------------------------------------------------------
# study commands: STUDY or --study STUDY


def test_analyze_takes_the_study_as_argument_or_option(tmp_path, study):
    _same(["analyze", study, "--out", tmp_path / "a"], ["analyze", "--study", study, "--out", tmp_path / "b"])
    a = (tmp_path / "a" / "subject_summary.csv").read_bytes()
    assert a == (tmp_path / "b" / "subject_summary.csv").read_bytes()
    # the same study twice, once with a trailing slash: one study, fine
    res, text = _run("analyze", study, "--study", f"{study}/", "--out", tmp_path / "c")
    assert res.exit_code == 0, text


def test_export_study_option_is_the_long_form_without_a_warning(tmp_path, study):
    _same(["export", study, "--out", tmp_path / "a"], ["export", "--study", study, "--out", tmp_path / "b"])
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for n in names:
        if n.endswith(".csv"):
            assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes(), n
    res, text = _run("export", "--study", study, "--out", tmp_path / "c")
    assert res.exit_code == 0 and "deprecated" not in text, text


def test_report_takes_study_and_subject_as_options(tmp_path, study):
    short, long = _same(["report", study, "--subject", "SYN-0001", "--no-pdf", "--out", tmp_path / "a"],
                        ["report", "--study", study, "--subject", "SYN-0001", "--no-pdf", "--out", tmp_path / "b"])
    assert sorted(p.name for p in (tmp_path / "a").rglob("*.html")) == \
        sorted(p.name for p in (tmp_path / "b").rglob("*.html")) != []


def test_validate_and_delete_take_study_as_option(tmp_path, study, store):
    _same(["validate", study], ["validate", "--study", study])
    _same(["validate", "mini", "--store", store], ["validate", "--store", store, "--study", "mini"])
    db = tmp_path / "copy.duckdb"
    shutil.copy(store, db)
    res, text = _run("delete", "--study", "mini", "--store", db, "--yes")
    assert res.exit_code == 0 and "deleted mini" in text, text
    res, text = _run("list", "--store", db)
    assert "mini" not in text.replace("cartlab import", ""), text


@pytest.fixture(scope="module")
def stein_store(tmp_path_factory) -> Path:
    """A one-subject study (seed 1: its subject has enough CAR samples for a Stein fit) stored as 'mini':
    a Stein fit costs seconds per subject, and the grammar, not the fit, is what is compared here."""
    from cartlab.datasets import synthetic_cohort

    one = Path(synthetic_cohort(1, seed=1, out_dir=tmp_path_factory.mktemp("g41one") / "one"))
    db = tmp_path_factory.mktemp("g41one_store") / "cartlab.duckdb"
    res, text = _run("import", one, "--store", db, "--study-id", "mini")
    assert res.exit_code == 0, text
    return db


def test_stein_study_option_is_a_study_only(tmp_path, stein_store, study):
    store = stein_store
    _same(["stein", "mini", "--store", store, "--out", tmp_path / "a"],
          ["stein", "--study", "mini", "--store", store, "--out", tmp_path / "b"])
    assert "SYN-0001" in (tmp_path / "a" / "stein_subjects.csv").read_text()  # the one subject was fitted
    assert (tmp_path / "a" / "stein_subjects.csv").read_bytes() == (tmp_path / "b" / "stein_subjects.csv").read_bytes()
    res, text = _run("stein", "--study", study / "subjects.csv", "--out", tmp_path / "c")
    assert res.exit_code == 2 and "a file, not a study" in text, text


def test_serve_takes_the_study_as_argument_or_option(monkeypatch, study):
    import cartlab.cli.serve as serve

    served = []
    monkeypatch.setattr(serve, "run_server", lambda asgi, host, port: served.append((host, port)))
    for args in ([study], ["--study", study]):
        res, text = _run("serve", *args, "--port", "8999")
        assert res.exit_code == 0, text
        assert "1 study" in text
    assert served == [("127.0.0.1", 8999)] * 2


@pytest.mark.parametrize("command", [("analyze", "--out", "x"), ("report", "--out", "x"), ("export", "--out", "x"),
                                     ("serve",), ("stein", "--out", "x"), ("validate",), ("delete", "--yes"),
                                     ("twin", "fit", "--subject", "S"), ("twin", "forecast", "--subject", "S")])
def test_two_different_studies_are_one_usage_error(command, tmp_path, study):
    other = tmp_path / "other"
    res, text = _run(*command, study, "--study", other)
    assert res.exit_code == 2, text
    assert f"'{study}'" in text and f"--study '{other}'" in text and "give the study once" in text, text
    assert "Traceback" not in res.output and not other.exists() and not (Path("x").exists())


# ------------------------------------------------------------------------------------------------
# the help of every such command shows --study / --subject with the same metavar and text


STUDY_COMMANDS = [("analyze",), ("report",), ("export",), ("serve",), ("stein",), ("validate",), ("delete",),
                  ("twin", "fit"), ("twin", "forecast"), ("explain",), ("show",), ("eligibility",),
                  ("deviations",), ("dose",)]
SUBJECT_COMMANDS = [("explain",), ("show",), ("eligibility",), ("deviations",), ("dose",), ("report",),
                    ("twin", "fit"), ("twin", "forecast")]


def _option_line(command, option: str) -> str:
    res, _ = _run(*command, "--help")
    assert res.exit_code == 0, res.output
    lines = [" ".join(line.strip("│ ").split()) for line in res.output.splitlines()]
    found = [line for line in lines if re.match(rf"(\* )?{option} [A-Z|]+ ", line)]
    assert len(found) == 1, (command, option, found)
    return found[0]


@pytest.mark.parametrize("command", [c for c in STUDY_COMMANDS if c != ("delete",)])
def test_study_option_has_one_metavar_and_text(command):
    assert _option_line(command, "--study") == f"--study STUDY {STUDY_HELP}"


def test_delete_study_option_says_a_stored_id():
    """Session 43: delete takes a stored id only; its --study line said "A study folder, or ..."."""
    line = _option_line(("delete",), "--study")
    assert line.startswith("--study STUDY The id of the stored study") and "not a folder" in line


@pytest.mark.parametrize("command", SUBJECT_COMMANDS)
def test_subject_option_has_one_metavar_and_text(command):
    line = _option_line(command, "--subject")
    assert re.sub(r"\[required\]$", "", line).strip().removeprefix("* ") == f"--subject SUBJECT {SUBJECT_HELP}"


def test_old_study_dir_alias_still_works(study):
    res, text = _run("eligibility", "SYN-0001", *P, "--study-dir", study, "--csv")
    assert res.exit_code == 0 and "--study-dir is deprecated: use --study" in text, text
