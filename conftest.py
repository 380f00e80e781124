"""Repository-root pytest configuration: browser tests run in the system's Chromium.

Playwright's own browser download does not work on these machines (no CDN), so pytest-playwright's
``browser_type_launch_args`` is extended with ``executable_path`` = ``$CHROMIUM_PATH``, ``chromium``
on PATH, or ``/usr/bin/chromium`` (shiny/research note: ../shared/research/feasibility-dashboard.md).
Browser tests are marked ``browser`` (``pytest -m browser`` / ``-m "not browser"``); screenshots
go to ``$CARTLAB_ARTIFACTS/screenshots`` (default ``<repo>/test-artifacts/screenshots``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives the dashboard in a real headless Chromium (pytest-playwright)")
    config.addinivalue_line("filterwarnings", "ignore::pytest.PytestRemovedIn10Warning")


def chromium_path() -> str | None:
    exe = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None and Path("/usr/bin/chromium").exists():
        exe = "/usr/bin/chromium"
    return exe


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch arguments with the system Chromium."""
    exe = chromium_path()
    if exe is None:
        msg = "no chromium on this machine (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(msg)  # CI must run the browser tests
        pytest.skip(msg)
    return {**browser_type_launch_args, "executable_path": exe, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests save artifacts (screenshots): ``$CARTLAB_ARTIFACTS`` or ``<repo>/test-artifacts``."""
    d = Path(os.environ.get("CARTLAB_ARTIFACTS") or ROOT / "test-artifacts")
    (d / "screenshots").mkdir(parents=True, exist_ok=True)
    return d
