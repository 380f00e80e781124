"""The vectorised XPT reader (cartlab.io.sdtm.xport) gives the loader the same frame as pyreadstat.

The reference is the independent reader: pyreadstat (ReadStat) via ``load_domain(..., fast_xpt=False)``;
the comparison is exact (dtypes, values, nulls), on the pharmaversesdtm fixture, on a hand-made file
with missing numerics (``.``, ``.A``, ``._``), blank and leading-blank text and blank records, and on
random IBM float bit patterns (hypothesis).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import polars as pl
import pyreadstat
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from cartlab.io.sdtm.files import load_domain
from cartlab.io.sdtm.xport import read_xport_simple

XPT = Path("/work/shared/fixtures/pharmaversesdtm/xpt")


def _both(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    fast = load_domain("X", path).df
    slow = load_domain("X", path, fast_xpt=False).df
    return fast, slow


@pytest.mark.skipif(not XPT.exists(), reason="pharmaversesdtm fixtures not present")
@pytest.mark.parametrize("name", ["dm.xpt", "ex.xpt", "lb.xpt"])
def test_fixture_same_frame_both_paths(name):
    path = XPT / name
    assert read_xport_simple(path) is not None  # the fast path is taken for these files
    fast, slow = _both(path)
    assert fast.schema == slow.schema
    assert_frame_equal(fast, slow, check_exact=True)
    # the fixture has missing numerics and blank text: both came through as nulls
    assert fast.select(pl.col(pl.Float64).null_count()).sum_horizontal().item() > 0
    assert fast.select(pl.col(pl.String).null_count()).sum_horizontal().item() > 0


def _write(tmp: Path, df: pd.DataFrame) -> Path:
    path = tmp / "x.xpt"
    pyreadstat.write_xport(df, str(path), table_name="X", file_format_version=5)
    return path


def _patch_numeric(path: Path, ncols_bytes: int, row: int, first_byte: bytes, offset: int) -> None:
    """Set the first byte of numeric ``col`` (byte offset ``offset`` in a row) of ``row`` to a
    SAS special missing value marker (``A``-``Z``, ``_``) with zero bytes after it."""
    raw = bytearray(path.read_bytes())
    obs = raw.find(b"HEADER RECORD*******OBS     HEADER RECORD!!!!!!!") + 80
    at = obs + row * ncols_bytes + offset
    raw[at:at + 8] = first_byte + b"\x00" * 7
    path.write_bytes(bytes(raw))


def test_missing_numerics_blank_text_and_blank_records(tmp_path):
    df = pd.DataFrame({
        "USUBJID": ["S1", "", "  S3", "S4", "", ""],
        "TXT": ["a b ", "", "x", "é", "", ""],
        "VAL": [1.5, float("nan"), -0.1, 1e-300, 2.0, float("nan")],
    })
    path = _write(tmp_path, df)
    fast0 = read_xport_simple(path)
    assert fast0 is not None
    # tagged missing values .A and ._ in VAL of rows 2 and 3 (bytes: TXT and USUBJID widths first)
    ns = pyreadstat.read_xport(str(path), metadataonly=True)[1]
    widths = [ns.variable_storage_width[c] for c in ("USUBJID", "TXT")]
    rowlen = sum(widths) + 8
    _patch_numeric(path, rowlen, 0, b"A", sum(widths))
    _patch_numeric(path, rowlen, 3, b"_", sum(widths))
    fast, slow = _both(path)
    assert_frame_equal(fast, slow, check_exact=True)
    # independent expectation: row 5 (blank text, missing number) is a record, row 6 too (it is
    # not all blanks: the missing number is "." + zero bytes); leading blanks are stripped
    assert fast.height == 6
    assert fast["USUBJID"].to_list() == ["S1", None, "S3", "S4", None, None]
    assert fast["TXT"].to_list() == ["a b", None, "x", "é", None, None]
    assert fast["VAL"].to_list() == [None, None, -0.1, None, 2.0, None]


def test_trailing_blank_records_are_padding(tmp_path):
    # an all-text file whose last records are all blanks: ReadStat treats them as the padding of
    # the last 80-byte record; blank records before a non-blank one are kept
    df = pd.DataFrame({"USUBJID": ["A", "", "B", "", ""]})
    path = _write(tmp_path, df)
    fast, slow = _both(path)
    assert_frame_equal(fast, slow, check_exact=True)
    assert fast["USUBJID"].to_list() == ["A", None, "B"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.binary(min_size=8, max_size=8), min_size=1, max_size=40))
def test_random_ibm_floats_convert_as_readstat(tmp_path, values):
    df = pd.DataFrame({"USUBJID": ["S"] * len(values), "VAL": [0.0] * len(values)})
    path = _write(tmp_path, df)
    raw = bytearray(path.read_bytes())
    obs = raw.find(b"HEADER RECORD*******OBS     HEADER RECORD!!!!!!!") + 80
    rowlen = pyreadstat.read_xport(str(path), metadataonly=True)[1].variable_storage_width["USUBJID"] + 8
    for i, v in enumerate(values):
        raw[obs + (i + 1) * rowlen - 8:obs + (i + 1) * rowlen] = v
    path.write_bytes(bytes(raw))
    fast, slow = _both(path)
    assert_frame_equal(fast, slow, check_exact=True)
