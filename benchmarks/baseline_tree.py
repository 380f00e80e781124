"""The baseline a benchmark runs against in the same run: a git worktree of a revision, used through
``PYTHONPATH=<worktree>/src``. Imports nothing from cartlab (a baseline child imports this file too)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def worktree(rev: str) -> Path:
    """A git worktree of ``rev`` in the temporary folder, made once and reused."""
    path = Path(tempfile.gettempdir()) / f"cartlab-baseline-{rev}"
    if not (path / "src" / "cartlab").exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--force", str(path), rev],
                       check=True, capture_output=True)
    return path
