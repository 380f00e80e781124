"""Writing outputs so that nothing partial is ever left under an output's name.

* :func:`atomic_file` — write one file through a temporary sibling, renamed into place when complete.
* :func:`atomic_folder` — write several files into a temporary folder beside the target and move them
  into place only when every one is complete; on an error the target is left as it was. Other files
  in the target are kept (outputs that add to a folder: reports, analysis tables).
* :func:`atomic_replace_folder` — the same, but the named entries of the target (an earlier
  output's files) are taken out when the new ones go in, so nothing of the old output survives
  beside the new one. The swap is undone if any move fails.
* :func:`export_folder` — :func:`atomic_replace_folder` for an export (``cartlab export``): a
  non-empty folder that is not an earlier export of the same kind is refused unless ``force``; the
  export leaves a marker (:data:`EXPORT_MARKER`) listing its files, so that the next export into the
  same folder replaces exactly them.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cartlab.errors import CartlabError, InputError

__all__ = ["EXPORT_MARKER", "ExportTarget", "atomic_file", "atomic_folder", "atomic_replace_folder",
           "check_output_folder", "check_output_path", "export_folder", "write_error"]

#: the hidden file an export leaves in its folder: its kind and the files it wrote (hidden files are
#: not read as study tables, cartlab.io.folder)
EXPORT_MARKER = ".cartlab-export.json"


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


@contextmanager
def atomic_replace_folder(out_dir: str | Path, replace: Iterable[str] = ()) -> Iterator[Path]:
    """Yield a temporary folder beside ``out_dir``. When the block ends without an error, the new
    contents are swapped in: a missing ``out_dir`` is the temporary folder renamed (one atomic step);
    otherwise the entries of ``out_dir`` named in ``replace`` (and any the new contents overwrite) are
    moved aside, the new entries moved in, and the old ones deleted. If a move fails, the moves made
    are undone and ``out_dir`` is as it was. On an error in the block nothing in ``out_dir`` changes.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "o"
    >>> out.mkdir(); _ = (out / "old.csv").write_text("1"); _ = (out / "notes.txt").write_text("n")
    >>> with atomic_replace_folder(out, replace=["old.csv"]) as tmp:
    ...     _ = (tmp / "new.csv").write_text("2")
    >>> sorted(p.name for p in out.iterdir())
    ['new.csv', 'notes.txt']
    """
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", suffix="-tmp", dir=out.parent))
    try:
        yield tmp
        _swap_in(tmp, out, set(replace))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _dir_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


def _swap_in(tmp: Path, out: Path, replace: set[str]) -> None:
    new = sorted(os.listdir(tmp))
    if not out.exists() and not out.is_symlink():
        os.chmod(tmp, _dir_mode())  # mkdtemp makes 0700; a new output folder gets the usual mode
        os.rename(tmp, out)
        return
    old = sorted(n for n in os.listdir(out) if n in replace or n in new)
    trash = Path(tempfile.mkdtemp(prefix=".cartlab-old-", dir=out))  # inside: the same file system
    moved_old: list[str] = []
    moved_new: list[str] = []
    try:
        for n in old:
            os.replace(out / n, trash / n)
            moved_old.append(n)
        for n in new:
            os.replace(tmp / n, out / n)
            moved_new.append(n)
    except BaseException:
        try:
            for n in reversed(moved_new):
                os.replace(out / n, tmp / n)
            for n in reversed(moved_old):
                os.replace(trash / n, out / n)
        except OSError as undo:  # pragma: no cover - the folder changed under us twice
            raise CartlabError(f"{out}: the swap failed and could not be undone ({undo}); the earlier files "
                               f"are kept in {trash}") from undo
        shutil.rmtree(trash, ignore_errors=True)
        raise
    shutil.rmtree(trash, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# exports


@dataclass
class ExportTarget:
    """An export under way: the folder it goes to, where it is written meanwhile (``staging``),
    what it replaces and ``meta`` for the marker (the caller may add to it)."""

    path: Path
    kind: str
    staging: Path | None = None
    previous: str | None = None  # kind of the earlier export in the folder, if any
    replaced: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # what the export wrote (set when it ends)

    @property
    def removed(self) -> list[str]:
        """Entries of the earlier export that the new one does not write (they are deleted)."""
        return [n for n in self.replaced if n not in self.files and n != EXPORT_MARKER]


def check_output_path(path: str | Path, want: str = "folder", what: str = "the output") -> Path:
    """``path`` can be made a ``want`` (``folder`` or ``file``): not a file where a folder is wanted
    (or the reverse), no file among its parents; else an :class:`InputError` saying which."""
    path = Path(path)
    if path.exists() and want == "folder" and not path.is_dir():
        raise InputError(f"{path}: a file, not a folder to write {what} into",
                         hint="give a folder (a new one, or an earlier export of the same kind)")
    if path.is_dir() and want == "file":
        raise InputError(f"{path}: a folder; give the path of the file to write {what} to "
                         f"(e.g. {path / 'study.json'})")
    for p in path.parents:
        if p.exists():
            if not p.is_dir():
                raise InputError(f"{path}: {p} is a file, not a folder, so {what} cannot be written there")
            break
    return path


def _read_marker(out: Path) -> dict[str, Any] | None:
    try:
        got = json.loads((out / EXPORT_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return got if isinstance(got, dict) and isinstance(got.get("files"), list) else None


def _prepare(out: Path, kind: str, owned: Callable[[str], bool], force: bool, what: str,
             noun: str = "export", earlier: Callable[[Path], bool] | None = None) -> ExportTarget:
    check_output_path(out, "folder", what)
    target = ExportTarget(out, kind)
    if not out.is_dir():
        return target
    names = os.listdir(out)
    if not names:
        return target
    marker = _read_marker(out)
    target.previous = None if marker is None else str(marker.get("cartlab_export"))
    if marker is None and earlier is not None and earlier(out):  # an output of an earlier cartlab (no marker)
        target.previous = kind
    if target.previous != kind and not force:
        said = (f"it holds an earlier cartlab {target.previous} {noun} (not {kind})" if marker is not None
                else f"it is not an earlier cartlab {kind} {noun}")
        raise InputError(f"{out} is not empty ({len(names)} entries) and {said}: cartlab will not write into it",
                         hint=f"choose a new or empty folder, or pass --force to replace the {kind} files in it "
                              "(other files are kept)")
    listed = {str(n) for n in (marker or {}).get("files", [])}
    target.replaced = sorted(n for n in names if n in listed or n == EXPORT_MARKER or owned(n))
    return target


def check_output_folder(out_dir: str | Path, kind: str, *, force: bool = False, what: str | None = None,
                        noun: str = "output", earlier: Callable[[Path], bool] | None = None) -> Path:
    """The check :func:`export_folder` makes, for a command that writes into ``out_dir`` itself
    (``cartlab simulate``): a missing or empty folder, or one holding an earlier output of ``kind``
    (its marker, or ``earlier(out)`` says so) is fine; a file is an :class:`InputError`, and so is a
    folder holding other files unless ``force`` (the same wording as exports, reports and analyses)."""
    _prepare(Path(out_dir), kind, lambda _n: False, force, what or f"the {kind} {noun}", noun, earlier)
    return Path(out_dir)


@contextmanager
def export_folder(out_dir: str | Path, kind: str, *, owned: Callable[[str], bool], force: bool = False,
                  what: str | None = None, noun: str = "export",
                  earlier: Callable[[Path], bool] | None = None) -> Iterator[ExportTarget]:
    """An export of ``kind`` into ``out_dir``, written in ``target.staging`` and swapped in whole.

    ``out_dir`` may be missing, empty, or an earlier export of the same ``kind`` (its marker says
    so); anything else is an :class:`InputError` (exit 2) unless ``force``. The files of the earlier
    export (listed in its marker) and every entry ``owned`` says belongs to an export of this kind
    are replaced as a whole: none of them survives beside the new export. Other files are kept.

    ``noun`` names the output in messages (an "analysis output" rather than an "export");
    ``earlier(out)`` recognises an output of this kind written before the marker existed."""
    out = Path(out_dir)
    target = _prepare(out, kind, owned, force, what or f"the {kind} {noun}", noun, earlier)
    with atomic_replace_folder(out, target.replaced) as tmp:
        target.staging = tmp
        yield target
        target.files = sorted(os.listdir(tmp))
        from cartlab import __version__

        marker = {"cartlab_export": kind, "cartlab_version": __version__, "files": target.files, **target.meta}
        (tmp / EXPORT_MARKER).write_text(json.dumps(marker, indent=1, default=str) + "\n", encoding="utf-8")


#: errors about the path itself (it cannot exist as given): bad usage, exit 2, as the command line
#: classes them for every command (cartlab.cli.base); others (no permission, a full disk): exit 1
PATH_ERRORS = (FileExistsError, NotADirectoryError, IsADirectoryError, FileNotFoundError)


def write_error(path: str | Path, exc: OSError, what: str = "the output") -> CartlabError:
    """An operating-system error while writing ``what`` to ``path`` as one message naming the path
    the user gave and the problem (never an internal temporary name); nothing was changed at
    ``path`` (the writers above). Exit code 2 when the path cannot exist as given (e.g. ``/proc/x``:
    :data:`PATH_ERRORS`), as for every command; 1 otherwise."""
    import errno
    import os

    codes = {FileNotFoundError: errno.ENOENT, PermissionError: errno.EACCES, IsADirectoryError: errno.EISDIR,
             NotADirectoryError: errno.ENOTDIR, FileExistsError: errno.EEXIST}
    code = exc.errno or next((c for t, c in codes.items() if isinstance(exc, t)), None)
    reason = exc.strerror or (os.strerror(code) if code else str(exc) or type(exc).__name__)
    name = Path(str(exc.filename)).name if exc.filename else ""
    where = f" ({exc.filename})" if name and not name.startswith(".") else ""  # not a temporary name
    cls = InputError if isinstance(exc, PATH_ERRORS) else CartlabError
    return cls(f"cannot write {what} to {path}: {reason}{where}; nothing was changed there",
               hint="check that the folder and the one above it can be written (permissions, a "
                    "read-only or full disk), or choose another path")
