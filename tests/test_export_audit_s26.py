"""`cartlab export` audit (notes/audit_export/REPORT.md): the export folder is written whole, ordinary
file-system errors are one message, ADaM keys stay unique, ADaM carries the source labels, one dataset
that cannot be derived does not sink the others, and the documented import / help examples work.

Expected values are worked from the inputs by hand (the seed's observations.csv rows are named by their
1-based data row, header excluded, as src_row is in cartlab.model).
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from cartlab.analyze import Analysis
from cartlab.cli import app
from cartlab.datasets import seed_case, seed_case_path
from cartlab.errors import EngineError, InputError
from cartlab.io import read_study, write_study
from cartlab.io.adam import DATASETS, export_adam
from cartlab.io.atomic import EXPORT_MARKER
from conftest import write

STUDY_TABLES = ("subjects", "doses", "observations", "interventions", "events")


def cli(*args) -> tuple[int, str]:
    res = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200", "CARTLAB_DEBUG": ""})
    text = " ".join((res.output + (res.stderr if res.stderr_bytes is not None else "")).split())
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return res.exit_code, text


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every entry of ``folder`` (hidden ones too) with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()} | {
        p.name + "/": b"" for p in folder.iterdir() if p.is_dir()}


def leftovers(parent: Path) -> list[str]:
    """Temporary folders an export left beside or inside its target."""
    found = [p.name for p in parent.iterdir() if p.name.startswith(".") and p.name.endswith("-tmp")]
    for d in (p for p in parent.iterdir() if p.is_dir()):
        found += [f"{d.name}/{q.name}" for q in d.iterdir() if q.name.startswith(".cartlab-old-")]
    return found


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("studies")
    seed = d / "seed"
    shutil.copytree(seed_case_path(), seed)
    noev = d / "seed_noev"  # the seed without events.csv (REPORT.md finding 1)
    shutil.copytree(seed_case_path(), noev)
    (noev / "events.csv").unlink()
    newer = d / "newer"  # the seed with age 18 (repro_partial.sh)
    shutil.copytree(seed_case_path(), newer)
    text = (newer / "subjects.csv").read_text()
    assert "CD7-AML-001,F,17.0" in text
    (newer / "subjects.csv").write_text(text.replace("CD7-AML-001,F,17.0", "CD7-AML-001,F,18.0"))
    mini = d / "mini"  # one subject with only sex and age (finding 7)
    write(mini, "subjects.csv", "subject_id,sex,age_years,source\nNEW-001,F,40,synthetic")
    mini_fu = d / "mini_fu"  # the same with a follow-up day: every dataset can be derived
    write(mini_fu, "subjects.csv", "subject_id,sex,age_years,last_followup_day,source\nNEW-002,F,40,30,synthetic")
    return {"seed": seed, "noev": noev, "newer": newer, "mini": mini, "mini_fu": mini_fu}


@pytest.fixture(scope="module")
def mini_analysis(studies):
    """The Analysis of ``mini`` (default options), made once (session 42, suite speed: an ADaM export of
    this one subject costs ~7 s of CPU, nearly all in its first derivation of the tables, which the
    Analysis keeps); the tests read it and only export it, never change it."""
    return Analysis(read_study(studies["mini"]))


# ------------------------------------------------------------------------------------------------
# 1 / 2: an export replaces an earlier export as a whole; any other non-empty folder needs --force


def test_export_over_an_earlier_export_replaces_it_whole(studies, tmp_path):
    out = tmp_path / "exp"
    assert cli("export", studies["seed"], "--out", out)[0] == 0
    assert (out / "events.csv").is_file()
    code, text = cli("export", studies["noev"], "--out", out)  # an earlier export: no --force needed
    assert code == 0, text
    # the study has no events.csv, so the folder must not have one (the old one changed the re-analysis)
    assert not (out / "events.csv").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [EXPORT_MARKER, "doses.csv", "interventions.csv", "observations.csv", "subjects.csv"])
    assert "removed events.csv" in text
    assert read_study(out).events.height == 0
    # another study over it: the folder holds that study only, never a mix of two
    assert cli("export", studies["mini"], "--out", out)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == [EXPORT_MARKER, "subjects.csv"]
    assert read_study(out).subject_ids == ["NEW-001"]


def test_a_folder_that_is_not_an_export_is_refused_unless_force(studies, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(studies["seed"], old)  # a study folder cartlab did not export (README.md, no marker)
    (old / "notes.txt").write_text("mine")
    before = snapshot(old)
    code, text = cli("export", studies["noev"], "--out", old)
    assert code == 2 and "not empty" in text and "--force" in text, text
    assert snapshot(old) == before
    code, text = cli("export", studies["noev"], "--out", old, "--force")
    assert code == 0, text
    names = sorted(p.name for p in old.iterdir())
    assert "events.csv" not in names and {"notes.txt", "README.md"} <= set(names)  # the user's files are kept
    assert read_study(old).events.height == 0
    # a study-folder export is not an ADaM export: refused without --force
    code, text = cli("export", studies["mini"], "--adam", old)
    assert code == 2 and "it holds an earlier cartlab study folder export (not ADaM)" in text, text


def test_adam_over_an_earlier_adam_export_leaves_no_file_of_another_format(small_study, tmp_path):
    analysis = Analysis(read_study(small_study))
    out = tmp_path / "adam"
    export_adam(analysis, out, formats=("parquet",))
    result = export_adam(analysis, out)  # the default xpt,csv over the parquet export
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.endswith(".parquet")], names  # no stale adtte.parquet beside adtte.xpt
    assert sorted(result["removed"]) == sorted(f"{n.lower()}.parquet" for n in DATASETS)
    export_adam(analysis, out, datasets=["ADSL"], formats=("csv",))
    assert sorted(p.name for p in out.iterdir()) == [EXPORT_MARKER, "adsl.csv", "analysis_options.json", "define.csv", "define.xml"]  # + options (s30)


# ------------------------------------------------------------------------------------------------
# 3: nothing partial


def test_a_failure_while_writing_leaves_the_earlier_export_as_it_was(studies, mini_analysis, tmp_path, monkeypatch):
    from cartlab.io import adam
    from cartlab.io import study_writer as study_folder  # the writer (split out of study_folder, s27)

    out = tmp_path / "exp"
    write_study(read_study(studies["seed"]), out)
    before = snapshot(out)
    real = study_folder._to_format

    def fail_on_observations(df, name):
        if name == "observations":
            raise OSError(28, "No space left on device")
        return real(df, name)

    monkeypatch.setattr(study_folder, "_to_format", fail_on_observations)
    with pytest.raises(OSError):
        write_study(read_study(studies["newer"]), out)
    assert snapshot(out) == before and leftovers(tmp_path) == []

    analysis = mini_analysis
    aout = tmp_path / "adam"
    export_adam(analysis, aout)
    before = snapshot(aout)
    real_xpt = adam.write_xpt

    def fail_on_adrs(frame, ds, path):
        if ds.name == "ADRS":
            raise OSError(28, "No space left on device")
        real_xpt(frame, ds, path)

    monkeypatch.setattr(adam, "write_xpt", fail_on_adrs)
    with pytest.raises(OSError):
        export_adam(analysis, aout)
    assert snapshot(aout) == before and leftovers(tmp_path) == []


def test_a_swap_that_fails_half_way_is_undone(studies, tmp_path, monkeypatch):
    """repro_partial.sh: one file of the earlier export cannot be replaced (chattr +i there). Before,
    subjects.csv was already the new one (age 18) while observations.csv was old."""
    out = tmp_path / "partial"
    assert cli("export", studies["seed"], "--out", out)[0] == 0
    before = snapshot(out)
    real = os.replace

    def locked(src, dst, *a, **k):
        if Path(src) == out / "observations.csv":
            raise PermissionError(1, "Operation not permitted", str(src))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", locked)
    code, text = cli("export", studies["newer"], "--out", out)
    assert code == 1 and "cannot write the study folder export to" in text and "Operation not permitted" in text, text
    assert "internal error" not in text and "bug" not in text
    assert snapshot(out) == before  # subjects.csv still says 17.0
    assert "CD7-AML-001,F,17.0" in (out / "subjects.csv").read_text()
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------------
# 4: ordinary file-system errors are one message naming the path


@pytest.mark.parametrize("opt,target,message", [
    ("--out", "afile", "afile: a file, not a folder to write the study folder export into"),
    ("--out", "afile/x", "afile/x: {d}/afile is a file, not a folder"),
    ("--adam", "afile", "afile: a file, not a folder to write the ADaM export into"),
    ("--fhir", "fdir", "fdir: a folder; give the path of the file to write the FHIR Bundle to"),
    ("--fhir", "afile/b.json", "is a file, not a folder, so the FHIR Bundle cannot be written there"),
])
def test_a_path_of_the_wrong_kind_is_bad_input(studies, tmp_path, opt, target, message):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "fdir").mkdir()
    code, text = cli("export", studies["mini_fu"], opt, tmp_path / target)
    assert code == 2, text
    assert message.format(d=tmp_path) in text, text
    assert "internal error" not in text and "Error:" not in text
    assert (tmp_path / "afile").read_text() == "x" and not any((tmp_path / "fdir").iterdir())


@pytest.mark.parametrize("opt,name,what", [("--out", "o", "the study folder export"), ("--adam", "a", "the ADaM export"),
                                           ("--fhir", "b.json", "the FHIR Bundle")])
def test_a_folder_that_cannot_be_written_is_one_message(studies, tmp_path, monkeypatch, opt, name, what):
    from cartlab.io import atomic

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".x"))

    monkeypatch.setattr(atomic.tempfile, "mkdtemp", denied)
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda s, d, *a, **k: denied() if Path(d).name == "b.json" else real(s, d))
    code, text = cli("export", studies["mini_fu"], opt, tmp_path / name)
    assert code == 1 and f"cannot write {what} to {tmp_path / name}: Permission denied" in text, text
    assert "internal error" not in text and "bug in cartlab" not in text
    assert not (tmp_path / name).exists()


# ------------------------------------------------------------------------------------------------
# 5: USUBJID stays unique after the ASCII folding


def test_ids_that_fold_to_one_usubjid_are_refused_naming_both(tmp_path):
    f = tmp_path / "unsafe"
    write(f, "subjects.csv", "subject_id,sex,age_years,last_followup_day\nJosé-1,F,40,30\nJose-1,M,50,30\nZoë-2,F,60,30")
    analysis = Analysis(read_study(f))
    # NFKD: é = e + U+0301 and the combining mark is dropped, so both become 'Jose-1'
    with pytest.raises(InputError) as exc:
        export_adam(analysis, tmp_path / "adam")
    assert "'José-1'" in str(exc.value) and "'Jose-1'" in str(exc.value) and "both become 'Jose-1'" in str(exc.value)
    assert not (tmp_path / "adam").exists()
    # without the clash the non-ASCII id is folded and the key stays unique
    (f / "subjects.csv").write_text("subject_id,sex,age_years,last_followup_day\nJosé-1,F,40,30\nZoë-2,F,60,30\n")
    export_adam(Analysis(read_study(f)), tmp_path / "ok", formats=("csv",))
    assert pl.read_csv(tmp_path / "ok" / "adsl.csv")["USUBJID"].to_list() == ["Jose-1", "Zoe-2"]


# ------------------------------------------------------------------------------------------------
# 6: the source labels reach ADaM


@pytest.fixture(scope="module")
def seed_adam(tmp_path_factory):
    out = tmp_path_factory.mktemp("seed_adam") / "adam"
    export_adam(Analysis(seed_case()), out, formats=("csv",))
    return {n: pl.read_csv(out / f"{n}.csv", infer_schema_length=0) for n in ("adsl", "adlb", "advs", "adpc", "define")}


def _seed_sources() -> dict[str, str]:
    """observations.csv:ROW -> source, read straight from the shipped CSV."""
    with open(seed_case_path() / "observations.csv", newline="", encoding="utf-8") as fh:
        return {f"observations.csv:{i}": r["source"] for i, r in enumerate(csv.DictReader(fh), 1)}


def test_seed_adam_says_which_values_are_reconstructed(seed_adam):
    src = _seed_sources()
    # case-facts / observations.csv: row 380 (TEMP 39.4 on day 9) is the only paper-stated vital sign
    advs = seed_adam["advs"]
    assert advs.filter(pl.col("DATASRC") == "paper")["EVIDENCE"].to_list() == ["observations.csv:380"]
    assert set(advs["DATASRC"]) == {"paper", "reconstructed"}
    # CAR copies: day 14 (row 482) and day 28 (row 747) are the paper's; the day-0 zero the NCA adds
    # has no source row, so no label
    adpc = seed_adam["adpc"]
    assert sorted(adpc.filter(pl.col("DATASRC") == "paper")["EVIDENCE"].to_list()) == [
        "observations.csv:482", "observations.csv:747"]
    assert adpc.filter(pl.col("DTYPE") == "IMPUTED")["DATASRC"].to_list() == [None]
    # ADLB: every row carries the labels of its evidence rows
    adlb = seed_adam["adlb"]
    assert adlb.height > 0 and adlb["EVIDENCE"].null_count() == 0 and not adlb["EVIDENCE"].str.contains("more").any()
    for ev, label in adlb.select("EVIDENCE", "DATASRC").iter_rows():
        assert label == "; ".join(sorted({src[r] for r in ev.split("; ")})), ev
    # ADSL: subjects/doses/events rows are 'paper', interventions and most observations 'reconstructed'
    adsl = seed_adam["adsl"]
    assert adsl.select("NMEASFL", "DATASRC").rows() == [("Y", "paper; reconstructed")]
    define = seed_adam["define"]
    for ds in ("ADLB", "ADVS", "ADPC", "ADAE", "ADRS", "ADTTE", "ADPP", "ADSL"):
        row = define.filter((pl.col("dataset") == ds) & (pl.col("variable") == "DATASRC"))
        assert row.height == 1 and row["citation"][0] and row["status"][0] == "verified", ds
    assert define.filter(pl.col("variable") == "NMEASFL")["dataset"].to_list() == ["ADSL"]


def test_nmeasfl_by_hand(tmp_path):
    f = tmp_path / "prov"
    write(f, "subjects.csv", """
subject_id,sex,age_years,last_followup_day,source
P1,F,40,30,paper
P2,M,50,30,paper
P3,F,60,30,
""")
    write(f, "observations.csv", """
subject_id,day,param,value,unit,source
P1,1,TEMP,38.5,C,paper
P2,1,TEMP,37.0,C,synthetic
P2,2,TEMP,37.2,C,paper
P3,1,TEMP,36.9,C,
""")
    export_adam(Analysis(read_study(f)), tmp_path / "adam", formats=("csv",), datasets=["ADSL", "ADVS"])
    adsl = pl.read_csv(tmp_path / "adam" / "adsl.csv", infer_schema_length=0)
    # P1 all paper -> N; P2 one synthetic row -> Y; P3 nothing labelled -> N, no label
    assert adsl.select("USUBJID", "NMEASFL", "DATASRC").rows() == [
        ("P1", "N", "paper"), ("P2", "Y", "paper; synthetic"), ("P3", "N", None)]
    advs = pl.read_csv(tmp_path / "adam" / "advs.csv", infer_schema_length=0)
    assert advs.select("USUBJID", "AVAL", "DATASRC").rows() == [
        ("P1", "38.5", "paper"), ("P2", "37.0", "synthetic"), ("P2", "37.2", "paper"), ("P3", "36.9", None)]


# ------------------------------------------------------------------------------------------------
# 7: one dataset that cannot be derived does not sink the export


def test_one_dataset_that_cannot_be_derived_does_not_sink_the_rest(mini_analysis, small_study, tmp_path):
    out = tmp_path / "adam"
    export_adam(Analysis(read_study(small_study)), out)  # an earlier export with adtte.*
    assert (out / "adtte.xpt").is_file()
    result = export_adam(mini_analysis, out)
    # NEW-001 has no last_followup_day and no row to censor at: no ADTTE; everything else is written
    assert list(result["not_written"]) == ["ADTTE"] and "last_followup_day" in result["not_written"]["ADTTE"]
    assert "ADSL" in result["datasets"] and (out / "adsl.xpt").is_file()
    assert not list(out.glob("adtte.*"))  # the earlier export's ADTTE does not survive
    assert pl.read_csv(out / "define.csv").filter(pl.col("dataset") == "ADTTE").height == 0
    with pytest.raises(EngineError, match="adtte"):
        export_adam(mini_analysis, tmp_path / "strict", strict=True)
    assert not (tmp_path / "strict").exists()


def test_cli_adam_names_what_was_left_out_and_strict_stops(studies, tmp_path):
    code, text = cli("export", studies["mini"], "--adam", tmp_path / "x")
    assert code == 0 and "ADTTE not written" in text and "last_followup_day" in text, text
    assert (tmp_path / "x" / "adsl.xpt").is_file() and not (tmp_path / "x" / "adtte.xpt").exists()
    code, text = cli("export", studies["mini"], "--adam", tmp_path / "y", "--strict")
    assert code == 1 and "NEW-001" in text, text
    assert not (tmp_path / "y").exists()


# ------------------------------------------------------------------------------------------------
# 8: the documented import and the help example


def test_write_sdtm_imports_as_documented():
    from cartlab.io.sdtm import write_sdtm
    from cartlab.io.sdtm.writer import write_sdtm as direct

    assert write_sdtm is direct


def test_export_help_example_runs(tmp_path, monkeypatch):
    code, text = cli("export", "--help")
    assert code == 0 and "cartlab export out/seed_case --out exported/ --format parquet" in text
    assert "export seed_case " not in text and "CD7-AML-001-study" not in text
    monkeypatch.chdir(tmp_path)
    shutil.copytree(seed_case_path(), tmp_path / "out" / "seed_case")  # what `cartlab demo` writes there
    code, text = cli("export", "out/seed_case", "--out", "exported/", "--format", "parquet",
                     "--store", tmp_path / "none.duckdb")
    assert code == 0, text
    assert sorted(p.name for p in (tmp_path / "exported").glob("*.parquet")) == sorted(
        f"{t}.parquet" for t in STUDY_TABLES)


def test_a_label_with_a_non_ascii_space_is_refused_not_stripped(tmp_path):
    """Found by test_adam_export_spec's hypothesis run (label '0\\x85'): str.strip() drops NEL, so the
    label passed as '0'. The spec loader must refuse it as not ASCII, as it does any other character."""
    import yaml

    from cartlab.io.adam import load_spec

    raw = yaml.safe_load((Path(__file__).parents[1] / "src/cartlab/io/adam/adam_spec.yaml").read_text(encoding="utf-8"))
    for v in raw["datasets"]["ADSL"]["variables"]:
        if v.get("name") == "AGE":
            v["label"] = "Age\x85"
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(InputError, match="not ASCII"):
        load_spec(p)


def test_a_table_given_empty_is_exported_empty(tmp_path):
    """An events.csv with its header only says "no event happened" (the study format); the export
    keeps it given (a header-only file), so reading the export back does not warn "events.csv not
    given"; a table never given stays absent."""
    import shutil

    from cartlab.datasets import seed_case_path
    from cartlab.io.study_folder import read_study
    from cartlab.io.study_writer import write_study

    src = tmp_path / "src"
    shutil.copytree(seed_case_path(), src)
    (src / "events.csv").write_text("subject_id,day,event\n")
    (src / "interventions.csv").unlink()
    out = tmp_path / "out"
    write_study(read_study(src), out)
    # the header only, with the required columns (subject_id, day, event): still a valid file
    assert (out / "events.csv").read_text().strip().splitlines() == ["subject_id,day,event"]
    assert not (out / "interventions.csv").exists()
    back = read_study(out)
    assert back.events.height == 0 and not any("events.csv" in str(w) for w in back.warnings)


def test_define_xml_names_the_study_as_studyid_is_written(tmp_path):
    """A study id with a non-ASCII letter: STUDYID is ASCII-folded ('Stüdy' -> 'Study'); define.xml's
    StudyName and OIDs say the same, not the raw id."""
    from cartlab.analyze import Analysis
    from cartlab.datasets import seed_case
    from cartlab.io.adam import export_adam

    study = seed_case()
    study.study_id = "Stüdy #1"
    export_adam(Analysis(study), tmp_path / "adam", formats=("csv",))
    xml = (tmp_path / "adam" / "define.xml").read_text(encoding="utf-8")
    assert "<StudyName>Study #1</StudyName>" in xml and "Stüdy" not in xml
