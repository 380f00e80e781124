"""Writing outputs so that nothing partial is ever left under an output's name.

* :func:`atomic_file` — write one file through a temporary sibling, renamed into place when complete.
* :func:`atomic_folder` — write several files into a temporary folder beside the target and move them
  into place only when every one is complete; on an error the target is left as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_file", "atomic_folder"]


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` (atomic on one file
    system), on an error it is removed and ``path`` is untouched.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "a.csv"
    >>> with atomic_file(out) as tmp:
    ...     _ = tmp.write_text("x\\n1\\n")
    >>> out.read_text()
    'x\\n1\\n'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_folder(out_dir: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``out_dir``; on success every file written there is moved into
    ``out_dir`` (created if needed; other files in it are kept), on an error nothing is moved."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        out.mkdir(parents=True, exist_ok=True)
        for p in sorted(tmp.rglob("*")):
            if p.is_file():
                target = out / p.relative_to(tmp)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(p, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
