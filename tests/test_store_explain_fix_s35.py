"""Session 35 fixes to the store round trip and the explain and show views (review35_store A1-A3,
B1-B8).

Expected values are worked by hand:
- ASTCT 2019 CRS (Lee DW et al., BBMT 2019, Table 1): fever = Tmax >= 38.0 C; grade 2 = fever with
  hypotension (SBP < 90 mmHg) not requiring vasopressors.
- A censored result bounds one side (study-format.md, "censored values"): "<90" is some SBP below
  90, so min{90, <90} < 90; ">38.3" is some T above 38.3, so max{38.3, >38.3} > 38.3.
- Units (pint): 50 /mm3 = 50 x10^6/L = 0.05 x10^9/L; 0.5 mg/dL = 5 mg/L.
- ICAHT (Rejeski 2023): thresholds 100, 500, 1000, 1500 /uL; an ANC below 0.05 x10^9/L = 50/uL is
  at or below every one of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from cartlab.analyze import Analysis
from cartlab.errors import InputError
from cartlab.explain import explain
from cartlab.grading.crs import derive_crs_daily
from cartlab.io import read_study
from cartlab.report.timeline import subject_timeline
from cartlab.store import Store, StoreError

CARTLAB = [sys.executable, "-m", "cartlab"]

SUBJECTS = """subject_id,sex,age_years,disease,target
A,F,40,B-ALL,CD19
"""
DOSES = """subject_id,day,agent,dose,unit
A,0,CAR-T,1e6,cells/kg
"""


def run(*args, cwd=None):
    e = {**os.environ, "COLUMNS": "250"}
    return subprocess.run([*CARTLAB, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=e)


def folder(tmp: Path, name: str, obs: str, subjects: str = SUBJECTS, doses: str = DOSES) -> Path:
    f = tmp / name
    f.mkdir(parents=True, exist_ok=True)
    (f / "subjects.csv").write_text(subjects, encoding="utf-8")
    (f / "doses.csv").write_text(doses, encoding="utf-8")
    (f / "observations.csv").write_text(obs, encoding="utf-8")
    return f


# day 1: fever 38.5 and SBP rows 90 (row 2) and "<90" (row 3); day 2: TEMP 38.3 (row 4), ">38.3" (row 5)
# and SBP 120 (row 6); day 3: afebrile 37.0, SBP 110
TIES = """subject_id,day,param,value,value_text,unit
A,1,TEMP,38.5,,C
A,1,SYSBP,90,,mmHg
A,1,SYSBP,,<90,mmHg
A,2,TEMP,38.3,,C
A,2,TEMP,,>38.3,C
A,2,SYSBP,120,,mmHg
A,3,TEMP,37.0,,C
A,3,SYSBP,110,,mmHg
"""


def _day(frame: pl.DataFrame, d: int) -> dict:
    rows = frame.filter(pl.col("day") == d)
    assert rows.height == 1
    return rows.row(0, named=True)


# --- A1: at the same value an open (censored) bound is the tighter one -------------------------------

def test_a1_sbp_90_beside_below_90_is_hypotension(tmp_path):
    s = read_study(folder(tmp_path, "ties", TIES))
    d1 = _day(derive_crs_daily(s), 1)
    # fever 38.5 + SBP min < 90 (the "<90" row), no vasopressor -> grade 2 (old code: grade 1, up to 2)
    assert d1["grade"] == 2
    assert d1["rule"] == "crs.hypotension.no_vasopressor"
    assert "observations.csv:3" in d1["evidence"]  # the censored row sets the minimum


def test_a1_temp_38_3_beside_above_38_3_cites_the_censored_row(tmp_path):
    s = read_study(folder(tmp_path, "ties", TIES))
    d2 = _day(derive_crs_daily(s), 2)
    assert d2["grade"] == 1
    # the day's maximum is ">38.3": its source is row 5, not the 38.3 of row 4 (old code: row 4)
    assert "observations.csv:5" in d2["evidence"] and "observations.csv:4" not in d2["evidence"]
    assert ">38.3" in d2["reason"]


# --- A2 / A3: show prints a censored value in the column's unit and keeps it beside numbers ---------

def _cells(study, subject="A") -> dict[float, dict[str, str]]:
    _, table, _ = subject_timeline(study, subject)
    cols = {c.header: list(c._cells) for c in table.columns}
    return {float(d): {h: str(v[i]) for h, v in cols.items()} for i, d in enumerate(cols["day"])}


def test_a2_censored_cells_in_the_column_unit(tmp_path):
    obs = """subject_id,day,param,value,value_text,unit
A,2,NEUT,,<50,/mm3
A,2,CRP,,<0.5,mg/dL
A,3,NEUT,500,,/mm3
"""
    cells = _cells(read_study(folder(tmp_path, "units", obs)))
    # 50 /mm3 = 0.05 x10^9/L; 0.5 mg/dL = 5 mg/L (old code: "<50" and "<0.5", the source's text)
    assert cells[2.0]["ANC 10⁹/L"] == "<0.05"
    assert cells[2.0]["CRP mg/L"] == "<5"
    assert cells[3.0]["ANC 10⁹/L"] == "0.50"


def test_a3_censored_bound_beside_numbers_is_kept(tmp_path):
    obs = """subject_id,day,param,value,value_text,unit
A,8,TEMP,38.2,,C
A,8,TEMP,,>38.3,C
A,9,NEUT,0.3,,10^9/L
A,9,NEUT,,<0.1,10^9/L
A,10,TEMP,37.5,,C
A,10,TEMP,,<39,C
"""
    cells = _cells(read_study(folder(tmp_path, "mixed", obs)))
    assert cells[8.0]["Tmax °C"] == ">38.3"  # max{38.2, >38.3} > 38.3 (old code: "38.2")
    assert cells[9.0]["ANC 10⁹/L"] == "<0.10"  # min{0.3, <0.1} < 0.1 (old code: "0.30")
    # max{37.5, <39} is at least 37.5 and below 39: neither number alone is the maximum
    assert cells[10.0]["Tmax °C"] == ">=37.5 <39.0"


# --- B1: study warnings are stored and come back ------------------------------------------------------

DUP = """subject_id,day,param,value,value_text,unit
A,1,TEMP,38.5,,C
A,1,TEMP,38.5,,C
A,2,TEMP,37.0,,C
"""


def test_b1_warnings_round_trip_through_the_store(tmp_path):
    f = folder(tmp_path, "dup", DUP)
    (f / "notes.txt").write_text("not a table\n", encoding="utf-8")
    direct = read_study(f)
    # by hand: row 2 repeats row 1 (dropped), notes.txt not read, interventions.csv and events.csv absent
    assert len(direct.warnings) == 4
    assert {w.file for w in direct.warnings} == {"notes.txt", "observations.csv", "interventions.csv", "events.csv"}
    with Store(tmp_path / "s.duckdb") as s:
        s.import_study(f)
    with Store(tmp_path / "s.duckdb", read_only=True) as s:
        loaded = s.load_study("dup")
        one = s.subject("A", "dup")
    assert [str(w) for w in loaded.warnings] == [str(w) for w in direct.warnings]
    assert [w.to_dict() for w in one.warnings] == [w.to_dict() for w in direct.warnings]
    assert any("row 2 (line 3)" in str(w) for w in loaded.warnings)


def test_b1_store_of_an_earlier_cartlab_says_warnings_were_not_recorded(tmp_path):
    f = folder(tmp_path, "dup", DUP)
    db = tmp_path / "s.duckdb"
    with Store(db) as s:
        s.import_study(f)
    con = duckdb.connect(str(db))
    con.execute("DROP TABLE study_warnings")  # as written before session 35
    con.close()
    with Store(db, read_only=True) as s:
        w = s.load_study("dup").warnings
    assert len(w) == 1 and "did not store its input warnings" in str(w[0])


# --- B2 / B3: explain crs hides grade-0 days without --all-days, shows ranges -------------------------

RANGE = """subject_id,day,param,value,value_text,unit
A,1,TEMP,37.0,,C
A,1,SYSBP,120,,mmHg
A,2,TEMP,,>37.5,C
A,2,SYSBP,120,,mmHg
A,3,TEMP,38.5,,C
A,3,SYSBP,120,,mmHg
A,4,TEMP,36.8,,C
A,4,SYSBP,118,,mmHg
"""


def _no_interventions(f: Path) -> Path:
    """An empty interventions.csv with its header: none given (an absent file is unknown since session 37)."""
    (f / "interventions.csv").write_text("subject_id,start_day,category,agent\n", encoding="utf-8")
    return f


def test_b3_range_day_and_onset_not_definite(tmp_path):
    f = _no_interventions(folder(tmp_path, "range", RANGE))
    # session 40: no infection recorded is an events.csv with its header (an absent one leaves day 3's
    # fever open to an infection: "0-1", CHANGELOG); this case is about the Tmax range of day 2
    (f / "events.csv").write_text("subject_id,day,event\n")
    ex = explain(read_study(f), "crs", "A")
    days = {r["day"]: r for r in ex.days.iter_rows(named=True)}
    # day 2: Tmax >37.5 could be >= 38.0 (fever) or not -> grade 0 up to 1 (old code: "0")
    assert days[2.0]["grade"] == "0-1"
    assert days[3.0]["grade"] == "1"
    # onset day 3 (fever 38.5), but day 2 may already be CRS (old code: "onset day 3" only)
    assert "onset day 3 (day 2 if" in ex.headline
    # B2: days 1 and 4 are grade 0 (rule crs.g0): not shown by default; days 2 and 3 are
    shown = ex.days.filter(pl.col("shown"))["day"].to_list()
    assert shown == [2.0, 3.0]


def test_b2_cli_all_days_lists_grade_0_days(tmp_path):
    f = _no_interventions(folder(tmp_path, "range", RANGE))
    plain = run("explain", "A", "--what", "crs", "--study", f)
    every = run("explain", "A", "--what", "crs", "--study", f, "--all-days")
    assert plain.returncode == 0 and every.returncode == 0, plain.stderr + every.stderr
    table_rows = lambda out: [ln for ln in out.splitlines() if ln.startswith("│ ") and ln[2:6].strip()]  # noqa: E731
    assert [ln.split("│")[1].strip() for ln in table_rows(plain.stdout)] == ["2", "3"]
    assert [ln.split("│")[1].strip() for ln in table_rows(every.stdout)] == ["1", "2", "3", "4"]


# --- B4 / B5: a censored synthetic ANC in explain icaht ------------------------------------------------

def test_b4_b5_censored_synthetic_anc(tmp_path):
    obs = """subject_id,day,param,value,value_text,unit,source
A,0,NEUT,0.2,,10^9/L,synthetic
A,1,NEUT,,<50,/mm3,synthetic
A,2,NEUT,0.3,,10^9/L,
"""
    ex = explain(read_study(folder(tmp_path, "anc", obs)), "icaht", "A")
    r1 = ex.days.filter(pl.col("day") == 1).row(0, named=True)
    # <50/uL is at or below 100, 500, 1000 and 1500/uL (old code: "ANC not known")
    assert "ANC not known" not in r1["reason"]
    # session 38 (review s38 C2): an early day lists only the early grade's levels (100 and 500/uL)
    assert "(censored): <= 100, <= 500 /uL" in r1["reason"]
    # the row's source is synthetic (old code: "measured ANC <0.05")
    assert "synthetic ANC <0.05" in r1["reason"]
    a = Analysis(read_study(folder(tmp_path, "anc", obs)))
    src = a.table("icaht_daily").filter(pl.col("day") == 1)["source"].to_list()
    assert src == ["synthetic"]


# --- B6 / B8: an id names one folder; the fingerprint includes the dialect and version -------------------

def test_b6_another_folder_under_an_existing_id_is_refused(tmp_path):
    a = folder(tmp_path / "x", "trial", TIES)
    b = folder(tmp_path / "y", "trial", DUP)
    db = tmp_path / "s.duckdb"
    with Store(db) as s:
        assert s.import_study(a).action == "imported"
        assert s.import_study(a).action == "unchanged"
        with pytest.raises(InputError, match=r"imported from .*x/trial.*this import is from .*y/trial"):
            s.import_study(b)
        assert s.load_study("trial").observations.height == 8  # still the first study
        r = s.import_study(b, replace=True)
    assert r.action == "replaced" and "x/trial" in str(r)


def test_b6_cli_refuses_without_replace(tmp_path):
    a = folder(tmp_path / "x", "trial", TIES)
    b = folder(tmp_path / "y", "trial", DUP)
    db = tmp_path / "s.duckdb"
    assert run("import", a, "--store", db).returncode == 0
    out = run("import", b, "--store", db)
    assert out.returncode == 2 and "--replace" in out.stderr + out.stdout
    assert "Traceback" not in out.stderr
    again = run("import", a, "--store", db)
    assert again.returncode == 0 and "unchanged" in again.stdout
    rep = run("import", b, "--store", db, "--replace")
    assert rep.returncode == 0 and "replaced" in rep.stdout


def test_b8_fingerprint_includes_dialect_and_version(monkeypatch):
    import cartlab
    from cartlab.store.duckdb_store import fingerprint_files

    files = [("subjects.csv", "0" * 64)]
    base = fingerprint_files("s", files)
    assert fingerprint_files("s", files, "european") != base
    monkeypatch.setattr(cartlab, "__version__", "0.0.0-other")
    assert fingerprint_files("s", files) != base


# --- B7: a store held by another process: one clear message ---------------------------------------------

def test_b7_locked_store_message(tmp_path):
    db = tmp_path / "s.duckdb"
    with Store(db):
        pass
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, duckdb; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); time.sleep(30)"),
        str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreError) as exc:
            Store(db, read_only=True)
        msg = str(exc.value)
        assert f"the store {db} is in use by another process (PID {holder.pid})" in msg
        assert "-readonly" not in msg
        out = run("list", "--store", db)
        assert out.returncode == 1 and "in use by another process" in out.stderr + out.stdout
        assert "-readonly" not in out.stderr + out.stdout
    finally:
        holder.kill()
        holder.wait()


# --- A1 in the older CRS scales: they read the day's Tmax / lowest SBP the same way -------------------

def test_a1_legacy_scales_read_censored_vitals(tmp_path):
    from cartlab.grading.crs_legacy import derive_crs_legacy_daily
    from cartlab.grading.crs_legacy_inputs import derive_crs_daily_inputs

    s = read_study(folder(tmp_path, "ties", TIES))
    x = derive_crs_daily_inputs(s)
    d1, d2 = _day(x, 1), _day(x, 2)
    # day 1: min{90, <90} < 90 -> SBP low (old code: SBP 90 read alone, "<90" ignored -> not low)
    assert d1["sbp_low"] is True and d1["sbp_min_mmhg"] is None
    assert "sbp|observations.csv:3" in d1["feature_evidence"]
    # day 2: max{38.3, >38.3} > 38.3: fever, named by the censored row 5 (old code: row 4)
    assert d2["fever"] is True and "fever|observations.csv:5" in d2["feature_evidence"]
    # Lee 2014 (Blood 2014, Table 2) grade 2: hypotension responsive to fluids (no vasopressor), with fever
    lee = derive_crs_legacy_daily(s).filter((pl.col("scale") == "lee2014") & (pl.col("day") == 1)).row(0, named=True)
    # (at least 2; no organ labs were given, so organ toxicity leaves it open up to 4; old code: at least 1)
    assert lee["grade_min"] == 2


# --- C1 / C4 / C8 ---------------------------------------------------------------------------------------

def test_c1_stored_sources_in_read_order(tmp_path):
    f = folder(tmp_path, "order", TIES)
    (f / "events.csv").write_text("subject_id,day,event\nA,30,death\n", encoding="utf-8")
    with Store(tmp_path / "s.duckdb") as s:
        s.import_study(f)
        files = s.load_study("order").sources["file"].to_list()
    # the folder is read subjects, doses, observations, ..., events (old code: alphabetical)
    assert files == read_study(f).sources["file"].to_list() == ["subjects.csv", "doses.csv", "observations.csv",
                                                                 "events.csv"]


def test_c4_show_prints_a_censored_marrow_value(tmp_path):
    obs = """subject_id,day,param,value,value_text,unit,specimen,source
A,28,MRDFCM,,<0.01,%,BM,Synthetic
"""
    cells = _cells(read_study(folder(tmp_path, "mrd", obs)))
    # the value as given, starred: its source is synthetic whatever its letter case (old code: "MRDFCM %")
    assert cells[28.0]["events / marrow"] == "MRDFCM <0.01 %*"


def test_c8_delete_study_rolls_back_on_error(tmp_path):
    db = tmp_path / "s.duckdb"
    with Store(db) as s:
        s.import_study(folder(tmp_path, "gone", TIES))
        real = s._exec

        def failing(sql, args=None):
            if sql.startswith("DELETE FROM observations"):
                raise RuntimeError("disk full")
            return real(sql, args)

        s._exec = failing
        with pytest.raises(RuntimeError):
            s.delete_study("gone")
        s._exec = real
        # nothing was deleted, and the store takes the next transaction (old code: left one open)
        assert s.fingerprint_of("gone") is not None and s.counts("gone")["observations"] == 8
        assert s.delete_study("gone") is True


def test_b1_sdtm_warnings_keep_their_record_numbers(tmp_path):
    from cartlab.io.sdtm.reader import SdtmIssue

    s = read_study(folder(tmp_path, "sd", TIES))
    s.warnings = [SdtmIssue("LB.xpt", "LBORRES", "2 exact duplicate record(s) dropped", rows=[3, 4],
                            severity="warning")]
    with Store(tmp_path / "s.duckdb") as st:
        st.import_study(s, "sd", folder=tmp_path / "sd")
        back = st.load_study("sd").warnings
    # an SDTM warning names records, not CSV rows and lines (SdtmIssue.where; old code: no warnings)
    assert [str(w) for w in back] == ["LB.xpt, records 3, 4: 2 exact duplicate record(s) dropped"]
