"""The benchmark harness (``benchmarks/``): subprocess phases, peak memory, failure reporting."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import textwrap
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH_DIR))

import harness  # noqa: E402


def _load_runner():
    spec = importlib.util.spec_from_file_location("cartlab_bench_run", BENCH_DIR / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DUMMY = textwrap.dedent(
    '''
    from harness import benchmark

    def setup(params):
        return {"_mb": 64, "items": params["n"] * 2}

    def small(params):
        return {"touched_mb": 1}

    @benchmark("alloc", title="touch some memory", setup=setup, baseline=small)
    def alloc(params):
        block = b"x" * (params["_mb"] * 2**20)  # written, so resident
        return {"touched_mb": len(block) // 2**20}

    @benchmark("missing", requires=("cartlab_no_such_module",))
    def missing(params):
        return {}

    @benchmark("boom")
    def boom(params):
        raise RuntimeError("kaput")
    '''
)


@pytest.fixture
def dummy_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "benches"
    folder.mkdir()
    (folder / "bench_dummy.py").write_text(DUMMY)
    return folder


def test_phases_run_in_fresh_processes(dummy_dir: Path, tmp_path: Path) -> None:
    results = {r.name: r for r in harness.run_all(5, folder=dummy_dir, workdir=tmp_path / "work", timeout=60)}
    assert set(results) == {"alloc", "missing", "boom"}

    alloc = results["alloc"]
    assert alloc.setup.status == alloc.run.status == alloc.baseline.status == "ok"
    assert alloc.setup.info["items"] == 10
    assert alloc.run.info == {"touched_mb": 64}
    assert alloc.run.wall_s is not None and alloc.run.wall_s >= 0
    # peak RSS is per child: the allocating phase shows its 64 MiB, the baseline does not
    assert alloc.run.max_rss - alloc.baseline.max_rss > 48 * 2**20

    assert results["missing"].run.status == "unavailable"
    assert "cartlab_no_such_module" in results["missing"].run.error
    assert results["boom"].run.status == "error"
    assert "kaput" in results["boom"].run.error

    from rich.console import Console

    out = io.StringIO()
    _load_runner().render(list(results.values()), 5, Console(file=out, width=120))
    text = out.getvalue()
    assert "alloc" in text and "unavailable" in text and "kaput" in text


def test_unknown_benchmark_is_refused(dummy_dir: Path) -> None:
    with pytest.raises(KeyError):
        harness.run_all(5, only=["nope"], folder=dummy_dir)


def test_import_benchmark_end_to_end(tmp_path: Path) -> None:
    """The real import benchmark at n=5: the cohort is made, both sides measured (or reported)."""
    out = tmp_path / "results.json"
    code = _load_runner().main(["--n", "5", "--only", "import", "--json", str(out), "--timeout", "120"])
    (result,) = json.loads(out.read_text())
    assert result["setup"]["status"] == "ok"
    rows = result["setup"]["info"]["observations"]
    assert rows > 1000
    assert result["baseline"]["status"] == "ok"
    assert result["baseline"]["info"]["observations"] == rows
    assert result["run"]["status"] in ("ok", "unavailable")
    if result["run"]["status"] == "ok":
        assert code == 0
        assert result["run"]["info"]["observations"] == rows
        assert result["run"]["max_rss"] > 0
