"""A small benchmark harness: every measured phase runs in a fresh Python process.

A benchmark is a function registered with :func:`benchmark` in a ``bench_*.py`` file next to this
one. It may have an untimed ``setup`` (run once, in its own process; its returned dict becomes the
parameters of the other phases) and a ``baseline`` (a reference implementation measured in the same
run). Each phase runs in a new interpreter, so its peak resident memory is its own. The child
reports the wall time of the call and its peak RSS: ``VmHWM`` of ``/proc/self/status`` where
available, because on Linux ``ru_maxrss`` survives fork + exec and so never reads below the parent's
RSS at the moment it spawned the child; elsewhere ``getrusage(RUSAGE_SELF).ru_maxrss``. The parent
also records the child's ``ru_maxrss`` from ``os.wait4`` (``rusage_max_rss``).

Modules listed in ``requires`` are imported before the timer starts; when one is missing the phase
is reported as *unavailable* instead of failing the run. Any other exception is reported as an
error with its message. Returned dicts are shown in the table, except keys starting with ``_``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PHASES = ("setup", "run", "baseline")


@dataclass
class Benchmark:
    name: str
    title: str
    run: Callable[[dict], dict | None]
    setup: Callable[[dict], dict | None] | None = None
    baseline: Callable[[dict], dict | None] | None = None
    requires: tuple[str, ...] = ()
    baseline_requires: tuple[str, ...] = ()
    module_file: str = ""


#: name -> Benchmark, filled by the @benchmark decorator when bench files are imported
REGISTRY: dict[str, Benchmark] = {}


def benchmark(
    name: str,
    *,
    title: str = "",
    setup: Callable[[dict], dict | None] | None = None,
    baseline: Callable[[dict], dict | None] | None = None,
    requires: tuple[str, ...] = (),
    baseline_requires: tuple[str, ...] = (),
):
    """Register the decorated function as the measured phase of benchmark ``name``."""

    def deco(fn: Callable[[dict], dict | None]) -> Callable[[dict], dict | None]:
        module_file = sys.modules[fn.__module__].__file__ or ""
        REGISTRY[name] = Benchmark(
            name=name,
            title=title or (fn.__doc__ or name).strip().splitlines()[0],
            run=fn,
            setup=setup,
            baseline=baseline,
            requires=tuple(requires),
            baseline_requires=tuple(baseline_requires),
            module_file=str(Path(module_file).resolve()),
        )
        return fn

    return deco


def _import_file(path: Path) -> None:
    """Import a bench file under its own name (its directory goes on ``sys.path``)."""
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    if path.stem in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)


def discover(folder: str | Path = HERE) -> dict[str, Benchmark]:
    """Import every ``bench_*.py`` in ``folder``; return the registry (name -> Benchmark)."""
    folder = Path(folder).resolve()
    for path in sorted(folder.glob("bench_*.py")):
        _import_file(path)
    return {k: b for k, b in REGISTRY.items() if Path(b.module_file).parent == folder}


# ---------------------------------------------------------------------------------------------
# child side


def _max_rss_bytes(ru_maxrss: int) -> int:
    """ru_maxrss is in kilobytes on Linux, bytes on macOS."""
    return ru_maxrss if sys.platform == "darwin" else ru_maxrss * 1024


from cartlab._process import peak_rss  # noqa: E402 - one definition, shared with cartlab.analyze_batched


def child_main(module_file: str, name: str, phase: str, params_file: str, out_file: str) -> None:
    """Run one phase of one benchmark in this (fresh) process and write its result as JSON."""
    result: dict = {"status": "ok", "wall_s": None, "info": {}, "error": ""}
    try:
        _import_file(Path(module_file))
        bench = REGISTRY[name]
        fn = getattr(bench, phase)
        params = json.loads(Path(params_file).read_text())
        needs = bench.baseline_requires if phase == "baseline" else bench.requires
        for mod in needs:
            try:
                importlib.import_module(mod)
            except ImportError as exc:
                result.update(status="unavailable", error=f"cannot import {mod}: {exc}")
                break
        if result["status"] == "ok":
            t0 = time.perf_counter()
            info = fn(params)
            result["wall_s"] = time.perf_counter() - t0
            result["info"] = info or {}
    except ImportError as exc:
        result.update(status="unavailable", error=f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # reported to the parent, never raised
        tb = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(tb.filename).name}:{tb.lineno}"
        result.update(status="error", error=f"{type(exc).__name__}: {exc} ({where})")
    result["max_rss"] = peak_rss()
    Path(out_file).write_text(json.dumps(result, default=str))


# ---------------------------------------------------------------------------------------------
# parent side


@dataclass
class Measurement:
    status: str  # ok | unavailable | error | skipped
    wall_s: float | None = None
    max_rss: int | None = None  # bytes, the child's own peak resident set size
    rusage_max_rss: int | None = None  # bytes, ru_maxrss of the child as seen by os.wait4
    info: dict = field(default_factory=dict)
    error: str = ""


@dataclass
class Result:
    name: str
    title: str
    setup: Measurement
    run: Measurement
    baseline: Measurement


def measure(bench: Benchmark, phase: str, params: dict, workdir: Path, timeout: float = 1800) -> Measurement:
    """Run ``phase`` of ``bench`` in a fresh interpreter; wall time and peak RSS of that child."""
    params_file = workdir / f"{bench.name}.{phase}.params.json"
    out_file = workdir / f"{bench.name}.{phase}.result.json"
    log_file = workdir / f"{bench.name}.{phase}.log"
    params_file.write_text(json.dumps(params))
    out_file.unlink(missing_ok=True)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import harness; "
        "harness.child_main(*sys.argv[2:])"
    )
    args = [sys.executable, "-c", code, str(HERE), bench.module_file, bench.name, phase,
            str(params_file), str(out_file)]
    with open(log_file, "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                return Measurement("error", error=f"timed out after {timeout:g} s")
            time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from waiting again
    ru = _max_rss_bytes(usage.ru_maxrss)
    if not out_file.exists():
        tail = log_file.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return Measurement("error", rusage_max_rss=ru, error=f"exit code {proc.returncode}: {tail[0]}")
    r = json.loads(out_file.read_text())
    return Measurement(r["status"], r["wall_s"], r["max_rss"], ru, r["info"], r["error"])


def run_benchmark(bench: Benchmark, n: int, workdir: Path, timeout: float = 1800) -> Result:
    """Setup (untimed figure), then the measured function and its baseline, each in its own process."""
    base = {"n": n, "workdir": str(workdir)}
    skipped = Measurement("skipped")
    setup = measure(bench, "setup", base, workdir, timeout) if bench.setup else skipped
    if setup.status != "ok" and bench.setup:
        return Result(bench.name, bench.title, setup, skipped, skipped)
    params = {**base, **setup.info}
    run = measure(bench, "run", params, workdir, timeout)
    baseline = measure(bench, "baseline", params, workdir, timeout) if bench.baseline else skipped
    return Result(bench.name, bench.title, setup, run, baseline)


def run_all(
    n: int,
    only: list[str] | None = None,
    folder: str | Path = HERE,
    workdir: str | Path | None = None,
    timeout: float = 1800,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Discover and run benchmarks (all, or those named in ``only``); return their results."""
    registry = discover(folder)
    names = list(registry) if not only else only
    unknown = [x for x in names if x not in registry]
    if unknown:
        raise KeyError(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(registry)}")
    results = []
    with tempfile.TemporaryDirectory(prefix="cartlab-bench-") as tmp:
        root = Path(workdir) if workdir else Path(tmp)
        for name in names:
            wd = root / name
            wd.mkdir(parents=True, exist_ok=True)
            res = run_benchmark(registry[name], n, wd, timeout)
            results.append(res)
            if on_result:
                on_result(res)
    return results


def to_json(results: list[Result]) -> list[dict]:
    return [asdict(r) for r in results]
