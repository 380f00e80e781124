"""A vectorised reader of plain SAS transport (XPT v5) files: numpy + pyarrow instead of a value-
by-value parse, for the SDTM loader (:func:`cartlab.io.sdtm.files.load_domain`).

It reads only the simple layout (SAS technical note TS-140, "Record layout of a SAS version 5 or 6
data set in SAS transport (XPORT) format", https://support.sas.com/techsup/technote/ts140.pdf):
one member, 140-byte NAMESTR records, 8-byte numerics stored back to back, no date/time formats,
UTF-8 text without NUL bytes. For anything else :func:`read_xport_simple` returns ``None`` and the
caller reads the file with pyreadstat, so errors and unusual files behave as before. Within that
layout it gives what ``pyreadstat.read_xport`` + ``polars.from_pandas`` give: the IBM -> IEEE
conversion is ReadStat's (``src/sas/ieee.c``, from TS-140) bit for bit, missing values (``.``,
``._``, ``.A``-``.Z``) are null, all-blank rows at the end of the data are padding and dropped
(blank rows before a non-blank one are records), text keeps its leading blanks (trailing ones are
stripped by the loader anyway).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

_REC = 80
_HDR = b"HEADER RECORD*******"
_TAIL = b"HEADER RECORD!!!!!!!"
# pyreadstat turns numerics with these SAS formats into dates / times (its sas_*_formats lists);
# any format name that looks like one sends the file to pyreadstat
_DATELIKE = re.compile(r"DAT|TIM|YY|DT|TM|DA|HHMM|TOD|AMPM|WEEK|JUL|MON|QTR|DAY|HOUR")


def _header(rec: bytes, name: bytes) -> bool:
    return rec[:20] == _HDR and rec[20:28] == name.ljust(8) and rec[28:48] == _TAIL


def _ibm_to_ieee(raw: np.ndarray) -> np.ndarray:
    """8-byte IBM floats (rows of uint8) -> float64, as ReadStat's ``xpt2ieee`` (TS-140) does it,
    with ReadStat's missing values (``.``, ``_``, ``A``-``Z`` followed by seven zero bytes) NaN."""
    w = raw.view(">u4").astype(np.int64)  # (n, 2): big-endian halves
    x1, x2 = w[:, 0], w[:, 1]
    first = raw[:, 0].astype(np.int64)
    rest_zero = (x1 & 0x00FFFFFF) == 0
    rest_zero &= x2 == 0
    # nonzero first byte, rest zero: ReadStat's missing values, and xpt2ieee's 0xFFFF.. NaN
    nan = (first != 0) & rest_zero
    inf = ((x1 & 0x7FFFFFFF) == 0x7FFFFFFF) & (x2 == 0xFFFFFFFF)
    zero = (x1 == 0) & (x2 == 0)
    shift = np.where(x1 & 0x00800000, 3, np.where(x1 & 0x00400000, 2, np.where(x1 & 0x00200000, 1, 0)))
    i1 = x1 & 0x00FFFFFF
    i2 = x2.copy()
    s = shift > 0
    i1 = np.where(s, i1 >> shift, i1)
    i2 = np.where(s, ((x2 >> shift) | ((x1 & 7) << (29 + (3 - shift)))) & 0xFFFFFFFF, i2)
    i1 &= 0xFFEFFFFF
    expo = ((((first & 0x7F) - 65) << 2) + shift + 1023) << 20
    i1 = (i1 | (expo & 0xFFFFFFFF) | (x1 & 0x80000000)) & 0xFFFFFFFF
    i1 = np.where(inf, (x1 & 0x80000000) | 0x7FF00000, i1)
    i2 = np.where(inf, 0, i2)
    bits = (i1.astype(np.uint64) << np.uint64(32)) | i2.astype(np.uint64)
    bits = np.where(zero, np.uint64(0), bits)
    out = bits.view(np.float64)
    return np.where(nan & ~inf, np.nan, out)


def read_xport_simple(path: Path) -> pl.DataFrame | None:
    """The first (only) member of a plain XPT v5 file as a frame (Float64 numerics, String text), or
    ``None`` when the file is not of the simple layout (the caller then uses pyreadstat)."""
    buf = path.read_bytes()
    n = len(buf)
    if n % _REC or n < 8 * _REC:
        return None
    rec = [buf[i * _REC:(i + 1) * _REC] for i in range(8)]
    if not (_header(rec[0], b"LIBRARY") and _header(rec[3], b"MEMBER") and _header(rec[4], b"DSCRPTR")
            and _header(rec[7], b"NAMESTR")):
        return None
    if rec[3][74:78] != b"0140" or not rec[7][48:58].isdigit():
        return None
    nvar = int(rec[7][53:58])
    if nvar == 0:
        return None
    start = 8 * _REC
    nbytes = nvar * 140
    obs = start + -(-nbytes // _REC) * _REC
    if obs + _REC > n or not _header(buf[obs:obs + _REC], b"OBS"):
        return None
    names, kinds, widths = [], [], []
    pos = 0
    for i in range(nvar):
        ns = buf[start + i * 140:start + (i + 1) * 140]
        ntype, nlng = int.from_bytes(ns[0:2], "big"), int.from_bytes(ns[4:6], "big")
        npos = int.from_bytes(ns[84:88], "big")
        try:
            name = ns[8:16].rstrip(b" ").decode("ascii")
            form = ns[56:64].rstrip(b" ").decode("ascii").upper()
        except UnicodeDecodeError:
            return None
        if not name or "\0" in name or npos != pos or nlng <= 0:
            return None
        if ntype == 1:
            if nlng != 8 or _DATELIKE.search(form):
                return None
        elif ntype != 2:
            return None
        names.append(name)
        kinds.append(ntype)
        widths.append(nlng)
        pos += nlng
    if len({nm.upper() for nm in names}) != nvar:
        return None
    data_start = obs + _REC
    if buf.find(_HDR + b"MEMBER", data_start) != -1:  # a second member: leave it to pyreadstat
        return None
    rowlen = pos
    nrows = (n - data_start) // rowlen
    if nrows == 0:
        return None
    data = np.frombuffer(buf, dtype=np.uint8, count=nrows * rowlen, offset=data_start).reshape(nrows, rowlen)
    blank = (data == 0x20).all(axis=1)
    last = np.flatnonzero(~blank)
    if last.size == 0:
        return None
    nrows = int(last[-1]) + 1
    data = data[:nrows]
    cols: dict[str, pl.Series] = {}
    pos = 0
    for name, kind, width in zip(names, kinds, widths, strict=True):
        block = np.ascontiguousarray(data[:, pos:pos + width])
        pos += width
        if kind == 1:
            cols[name] = pl.Series(name, _ibm_to_ieee(block), dtype=pl.Float64, nan_to_null=True)
            continue
        if (block == 0).any():
            return None
        arr = pa.Array.from_buffers(pa.binary(width), nrows, [None, pa.py_buffer(block)])
        try:
            arr = arr.cast(pa.binary()).cast(pa.string())
        except pa.ArrowInvalid:  # not UTF-8
            return None
        cols[name] = pl.Series(name, pl.from_arrow(arr), dtype=pl.String)
    return pl.DataFrame(list(cols.values()))
