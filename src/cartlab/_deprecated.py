"""Old names of renamed public functions, kept importable for one release with a DeprecationWarning.

cartlab 0.3 names every table-producing engine ``derive_<table>`` (admiral's convention; see
CHANGELOG.md). A module sets ``__getattr__ = renamed(__name__, "icaht", "icaht_daily")`` (an old name ``x`` is now
``derive_x``; other new names as keywords: ``recovery_days="derive_count_recovery"``);
``from cartlab.grading.icaht import icaht`` then still works, warns and returns the same function as
``derive_icaht``.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["REMOVED_IN", "renamed"]

#: the release that drops the old names
REMOVED_IN = "0.4"


def renamed(module: str, *old: str | Mapping[str, str], **other: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving each old name to its new one (``derive_<old>`` unless given
    as a keyword, or a mapping old -> new), with a warning; the mapping is its ``names`` attribute."""
    names: dict[str, str] = dict(other)
    for item in old:
        names.update(item if isinstance(item, Mapping) else {item: f"derive_{item}"})

    def __getattr__(name: str) -> Any:
        new = names.get(name)
        if new is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(f"{module}.{name} is renamed {new} (cartlab 0.3); the old name goes in {REMOVED_IN}",
                      DeprecationWarning, stacklevel=2)
        return getattr(sys.modules[module], new)

    __getattr__.names = names
    return __getattr__
