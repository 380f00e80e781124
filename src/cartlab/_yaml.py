"""YAML loading through libyaml when PyYAML was built with it (about 10x faster than the pure-Python
loader; the criteria tables are parsed in every process, including each worker of a batched run)."""

from __future__ import annotations

from typing import Any

import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load(text)`` with the C loader when available (same YAML 1.1 safe schema)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
