"""`cartlab report` on synthetic cohorts: this checkout against a baseline revision, in the same run.

    .venv/bin/python benchmarks/bench_report.py [--sizes 200 1000] [--baseline-rev REV] [--baseline-sizes 200]
                                                [--workers N] [--json FILE]

For each size a synthetic cohort is written once (`cartlab synthetic --n N --seed 7`). Then the whole
command a user runs, `python -m cartlab report STUDY --out DIR`, runs in a fresh process for this
checkout and for ``--baseline-rev`` (default 40e227e, main before issue 17's report work; its code from
a git worktree, through PYTHONPATH). Timed: the process's wall time from start to exit — reading the
study, the analysis (every engine), every page, every figure file, the cohort views and the PDF.
Reported: wall time, peak RSS (the largest of the process and its workers), the report folder's size
and file counts, and the speed-up. Targets (issue 17): 200 subjects < 30 s, 1,000 < 3 min on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from baseline_tree import worktree  # noqa: E402

ROOT = HERE.parent
DEFAULT_BASELINE = "40e227e"
TARGET_S = {200: 30.0, 1000: 180.0}




def _cohort(n: int, work: Path) -> Path:
    folder = work / f"synthetic_{n}"
    if not (folder / "subjects.csv").exists():
        subprocess.run([sys.executable, "-m", "cartlab", "synthetic", "--out", str(folder), "--n", str(n),
                        "--seed", "7", "--force"], check=True, capture_output=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    return folder


def _folder_stats(out: Path) -> dict:
    files = [p for p in out.rglob("*") if p.is_file()]
    by_ext: dict[str, int] = {}
    size: dict[str, int] = {}
    for p in files:
        by_ext[p.suffix] = by_ext.get(p.suffix, 0) + 1
        size[p.suffix] = size.get(p.suffix, 0) + p.stat().st_size
    return {"files": by_ext, "bytes": size, "total_bytes": sum(size.values())}


def run_report(study: Path, out: Path, src: Path, extra: tuple[str, ...] = ()) -> dict:
    """One `cartlab report` process; wall time, its (and its workers') peak RSS, the folder it wrote."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(src)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cartlab", "report", str(study), "--out", str(out), *extra],
                          env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-3:], "wall_s": wall}
    return {"wall_s": wall, "peak_rss_kib_max_so_far": max(peak, before), **_folder_stats(out)}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 1000])
    ap.add_argument("--baseline-rev", default=DEFAULT_BASELINE)
    ap.add_argument("--baseline-sizes", type=int, nargs="*", default=[200],
                    help="sizes the baseline also runs at (it takes about 3 s a subject)")
    ap.add_argument("--workers", type=int, default=None, help="--workers passed to this checkout's report")
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "cartlab-bench-report"))
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    base_src = worktree(args.baseline_rev) / "src" if args.baseline_sizes else None
    extra = ("--workers", str(args.workers)) if args.workers else ()
    results: dict[int, dict] = {}
    ok = True
    for n in args.sizes:
        study = _cohort(n, work)
        res = {"run": run_report(study, work / f"report_{n}", ROOT / "src", extra)}
        if base_src and n in args.baseline_sizes:
            res["baseline"] = run_report(study, work / f"baseline_{n}", base_src)
        results[n] = res
        r, b = res["run"], res.get("baseline")
        if "error" in r:
            ok = False
            print(f"n={n}: error {r['error']}", flush=True)
            continue
        line = (f"n={n}: {r['wall_s']:.1f} s (target < {TARGET_S.get(n, float('nan')):g} s), "
                f"{r['total_bytes'] / 2**20:.1f} MiB in {sum(r['files'].values())} files "
                f"({', '.join(f'{k or chr(45)} {v / 2**20:.1f} MiB' for k, v in sorted(r['bytes'].items()))})")
        if b and "error" not in b:
            line += (f" | baseline {args.baseline_rev}: {b['wall_s']:.1f} s, {b['total_bytes'] / 2**20:.1f} MiB"
                     f" | speed-up {b['wall_s'] / r['wall_s']:.1f}x")
        elif b:
            line += f" | baseline error {b['error']}"
        print(line, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
