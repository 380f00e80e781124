"""Old names of renamed public functions, kept importable for one release with a DeprecationWarning.

cartlab 0.3 names every table-producing engine ``derive_<table>`` (admiral's convention; see
CHANGELOG.md). A module lists its old names in ``_RENAMED`` and sets
``__getattr__ = renamed(__name__, _RENAMED)``; ``from cartlab.grading.icaht import icaht`` then
still works, warns once per call site and returns the same function as ``derive_icaht``.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["REMOVED_IN", "renamed"]

#: the release that drops the old names
REMOVED_IN = "0.4"


def renamed(module: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving each old name in ``names`` to its new one, with a warning."""

    def __getattr__(name: str) -> Any:
        new = names.get(name)
        if new is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(f"{module}.{name} is renamed {new} (cartlab 0.3); the old name goes in {REMOVED_IN}",
                      DeprecationWarning, stacklevel=2)
        return getattr(sys.modules[module], new)

    return __getattr__
