"""A bare study name that is both a folder here and a stored study (the default id of an imported
folder is its name, so this is the normal case) must not silently read the folder when the two differ
(audit s26: `export syn6` read the folder's WBC 1.45, the store held 1.55)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from cartlab.datasets import seed_case_path


def _run(*args, cwd):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "cartlab", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env)


def test_a_name_that_is_a_folder_and_a_different_stored_study_is_refused(tmp_path):
    shutil.copytree(seed_case_path(), tmp_path / "seed")
    assert _run("import", "seed", "--store", "s.duckdb", cwd=tmp_path).returncode == 0
    # unchanged folder: the same files as stored -> no ambiguity, the folder is read
    same = _run("export", "seed", "--store", "s.duckdb", "--out", "a", cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    # the folder changes after the import: the bare name is refused, naming both
    obs = tmp_path / "seed" / "observations.csv"
    obs.write_text(obs.read_text().replace("38.9", "38.7", 1))
    amb = _run("export", "seed", "--store", "s.duckdb", "--out", "b", cwd=tmp_path)
    assert amb.returncode == 2 and "names both a folder here and a different study in the store" in amb.stderr
    assert not (tmp_path / "b").exists()
    # written as a path it is the folder
    assert _run("export", "./seed", "--store", "s.duckdb", "--out", "c", cwd=tmp_path).returncode == 0


def test_a_store_of_another_layout_is_one_clear_message(tmp_path):
    """A store from an earlier cartlab (a canonical column missing) or of another schema version:
    one message naming what and what to do (it was "internal error: BinderException"), exit 1."""
    import duckdb

    shutil.copytree(seed_case_path(), tmp_path / "seed")
    assert _run("import", "seed", "--store", "old.duckdb", cwd=tmp_path).returncode == 0
    shutil.copy(tmp_path / "old.duckdb", tmp_path / "v99.duckdb")
    con = duckdb.connect(str(tmp_path / "old.duckdb"))
    con.execute("ALTER TABLE observations DROP COLUMN censor_limit")
    con.close()
    r = _run("list", "--store", "old.duckdb", cwd=tmp_path)
    assert r.returncode == 1 and "written by an earlier cartlab: table observations lacks column(s) censor_limit" in r.stderr
    assert "internal error" not in r.stderr
    con = duckdb.connect(str(tmp_path / "v99.duckdb"))
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    r = _run("import", "seed", "--store", "v99.duckdb", cwd=tmp_path)
    # review 38 B4: a NEWER store is not "import again" but "upgrade cartlab"
    assert r.returncode == 1 and "schema version 99" in r.stderr and "upgrade cartlab" in r.stderr


def test_subject_lookup_names_the_real_problem(tmp_path):
    """`show SUBJECT --study X` from the store: an unknown study is named as such; a subject that is in
    another study says where it is (both said "no subject ... in s.duckdb")."""
    from cartlab.store import Store
    from cartlab.store.duckdb_store import StoreLookupError

    shutil.copytree(seed_case_path(), tmp_path / "seed")
    with Store(tmp_path / "s.duckdb") as s:
        s.import_study(tmp_path / "seed", "seed")
        s.import_study(tmp_path / "seed", "copy")
        import pytest

        with pytest.raises(StoreLookupError, match="no study 'nope' in .* \\(studies: copy, seed\\)|"
                                                   "no study 'nope' in .* \\(studies: seed, copy\\)"):
            s.subject("CD7-AML-001", "nope")
        with pytest.raises(StoreLookupError, match="several studies"):
            s.subject("CD7-AML-001")
        assert s.subject("CD7-AML-001", "copy").study_id == "copy"
