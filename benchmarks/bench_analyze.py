"""The whole analysis (every engine, every table `cartlab analyze` writes) at 1,000 and 10,000 subjects.

    .venv/bin/python benchmarks/bench_analyze.py [--sizes 1000 10000] [--baseline-rev REV] [--json FILE]

For each size a synthetic cohort of 120 calendar days (days -7 to 112) is built once, chunk by chunk
(1,000 subjects per chunk, seeds 1000 + k, every canonical column kept) into Parquet parts. Then, each
in a fresh Python process (so that its peak memory is its own):

* **run** — this checkout: load the study, `Analysis(study).tables()` and `subject_summary()`: every
  engine and every table `cartlab analyze` writes, the older CRS scales included. Per-engine times
  are the Analysis's own (`Analysis.timings`, each step's own call).
* **batched** — this checkout, the same Analysis in subject batches (`cartlab.analyze_batched.
  analyze_batched`): batches of ``--batch-size`` on ``--workers`` worker processes, each reading only its
  batch's rows from the Parquet parts and holding its per-subject tables as Parquet parts on disk; then
  the cohort steps and ``subject_summary``. The same work as **run** (every table, no CSV), plus
  reading the rows. Its memory is the parent's peak plus each worker's peak (an upper bound of what
  was resident at once). Per-engine times are summed over the batches (worker time).
* **batched_csv** — what `cartlab analyze --workers 2` does: **batched**, plus every CSV file written
  (the workers format their rows; the parent joins the parts), `subject_summary.csv` and
  `analysis.json`.
* **baseline** — the code of ``--baseline-rev`` (default: main before the redesign, 76f5845) from a git
  worktree, doing what its `cartlab analyze` did: `subject_summary(study)` then `detail_tables(study)`;
  a revision that has the `Analysis` graph runs the **run** phase instead.
  Its engine functions are wrapped with a timer (outermost calls only), so each engine's time can be
  compared with the run's.

Reported: wall time and peak RSS (VmHWM) of each phase, their ratios, the 10,000/1,000 time ratio (the
issue's linearity target is <= 11), and a per-engine table. Loading the Parquet parts is timed
separately and is not part of the analysis time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from baseline_tree import worktree  # noqa: E402

ROOT = HERE.parent
CHUNK = 1000
DAYS = (-7, 112)
DEFAULT_BASELINE = "76f5845"
#: engine functions of the old code -> the Analysis table they produce
OLD_ENGINES = {
    "cartlab.grading.ctcae": {"derive_ctcae": "adlb"},
    "cartlab.grading.crs": {"crs_daily": "crs_daily", "crs_summary": "crs_summary", "episodes": "adae_toxicity"},
    "cartlab.grading.icans": {"icans_daily": "icans_daily", "icans_summary": "icans_summary"},
    "cartlab.grading.crs_legacy": {"crs_cross_scale_cohort": "crs_cross_scale",
                                   "organ_grades_from_adlb": "crs_cross_scale"},
    "cartlab.grading.hematotox": {"icaht": "icaht", "icaht_daily": "icaht_daily", "recovery_days": "count_recovery",
                                  "car_hematotox": "car_hematotox", "easix": "easix", "iec_hs_flags": "iec_hs_flags",
                                  "icaht_episodes": "adae_toxicity", "icaht_summary": "icaht_summary"},
    "cartlab.grading.adam": {"adae_toxicity": "adae_toxicity"},
    "cartlab.response.marrow": {"marrow_response": "marrow_response", "relapse": "relapse"},
    "cartlab.response.best": {"best_response": "best_response", "derive_adrs": "adrs", "orr": "response_rates",
                              "response_summary": "response_summary"},
    "cartlab.response.endpoints": {"derive_adtte": "adtte", "km_estimate": "km",
                                   "cumulative_incidence": "cumulative_incidence"},
    "cartlab.response.molecular": {"molecular_response": "molecular_response", "antigen_loss": "antigen_loss"},
    "cartlab.kinetics.car": {"car_kinetics": "car_kinetics", "kinetics_summary": "kinetics_summary",
                             "derive_adpc": "adpc", "derive_adpp": "adpp"},
    "cartlab.kinetics.exposure": {"exposure_response": "exposure_response"},
}


# ------------------------------------------------------------------------------------------------
# building the cohort (untimed)


def build(n: int, folder: Path) -> dict:
    """Synthetic cohort of ``n`` subjects as Parquet parts (every canonical column), chunk by chunk."""
    import shutil

    import polars as pl

    from cartlab.datasets.synthetic import synthetic_cohort
    from cartlab.io import read_study

    if (folder / "done.json").exists():
        return json.loads((folder / "done.json").read_text())
    shutil.rmtree(folder, ignore_errors=True)
    rows = 0
    for k in range(0, n, CHUNK):
        size = min(CHUNK, n - k)
        with tempfile.TemporaryDirectory() as tmp:
            study = read_study(synthetic_cohort(size, seed=1000 + k, out_dir=Path(tmp) / "c", fmt="parquet",
                                                days=DAYS))
            prefix = pl.lit(f"C{k // CHUNK:03d}-")
            for name, df in study.tables().items():
                (folder / name).mkdir(parents=True, exist_ok=True)
                df.with_columns(pl.concat_str(prefix, pl.col("subject_id")).alias("subject_id")).write_parquet(
                    folder / name / f"part-{k // CHUNK:03d}.parquet")
            rows += study.observations.height
    info = {"subjects": n, "observations": rows}
    (folder / "done.json").write_text(json.dumps(info))
    return info


# ------------------------------------------------------------------------------------------------
# the phases (each in a fresh process: python bench_analyze.py --phase run|baseline FOLDER OUT.json)


def _load(folder: Path):
    import polars as pl

    from cartlab.model import TABLES, Study, conform

    frames = {name: conform(pl.read_parquet(folder / name / "*.parquet"), name) for name in TABLES}
    return Study(study_id="bench", **frames)


def _peak_rss() -> int:
    from cartlab._process import peak_rss

    return peak_rss()


def phase_run(folder: Path) -> dict:
    from cartlab.analyze import Analysis

    t0 = time.perf_counter()
    study = _load(folder)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    a = Analysis(study)
    tables = a.tables()
    a.subject_summary()
    wall = time.perf_counter() - t0
    return {"load_s": load_s, "wall_s": wall, "peak_rss": _peak_rss(), "tables": len(tables),
            "skipped": [s.to_dict() for s in a.skipped], "engines": {k: v for k, v in a.timings.items()}}


def phase_batched(folder: Path, batch_size: int, workers: int, csv: bool) -> dict:
    import shutil

    from cartlab.analyze_batched import ParquetSource, analyze_batched, write_analysis_batched

    out = Path(tempfile.mkdtemp(prefix="cartlab-bench-out-"))
    try:
        info: dict = {}
        t0 = time.perf_counter()
        if csv:
            _path, a, tables = write_analysis_batched(ParquetSource(folder), out, batch_size=batch_size,
                                                      workers=workers, info=info)
        else:
            run = analyze_batched(ParquetSource(folder), out, batch_size=batch_size, workers=workers)
            a, info = run.analysis, run.info
            a.subject_summary()
            tables = set(run.parts) | {n for n in a.table_names(written_only=True) if n in a.computed()}
        wall = time.perf_counter() - t0
        written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    parent = _peak_rss()
    return {"load_s": 0.0, "wall_s": wall, "peak_rss": parent + sum(info["worker_peak_rss"]), "parent_rss": parent,
            "worker_rss": info["worker_peak_rss"], "phases": info["phases"], "batches": info["batches"],
            "tables": len(tables), "bytes_written": written, "csv": csv, "skipped": [s.to_dict() for s in a.skipped],
            "engines": dict(a.timings)}


def phase_baseline(folder: Path) -> dict:
    import functools
    import importlib

    times: dict[str, float] = {}
    depth = [0]

    def timed(fn, table):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            if depth[0]:
                return fn(*a, **k)
            depth[0] += 1
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                times[table] = times.get(table, 0.0) + time.perf_counter() - t
                depth[0] -= 1
        return wrapper

    for module, fns in OLD_ENGINES.items():
        mod = importlib.import_module(module)
        for name, table in fns.items():
            if hasattr(mod, name):
                setattr(mod, name, timed(getattr(mod, name), table))
    from cartlab.analyze import detail_tables, subject_summary

    t0 = time.perf_counter()
    study = _load(folder)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    subject_summary(study)
    tables = detail_tables(study)
    wall = time.perf_counter() - t0
    return {"load_s": load_s, "wall_s": wall, "peak_rss": _peak_rss(), "tables": len(tables), "engines": times}


def _child(phase: str, folder: Path, pythonpath: str | None, extra: tuple[str, ...] = ()) -> dict:
    env = {**os.environ}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = Path(fh.name)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--phase", phase, str(folder), str(out), *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:], "process_s": time.perf_counter() - t0}
    res = json.loads(out.read_text())
    out.unlink()
    return res




def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--baseline-rev", default=DEFAULT_BASELINE)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "cartlab-bench-analyze"))
    ap.add_argument("--json")
    ap.add_argument("--batch-size", type=int, default=500, help="subjects per batch of the batched phase")
    ap.add_argument("--workers", type=int, default=2, help="worker processes of the batched phase")
    ap.add_argument("--phases", nargs="+", default=["batched", "batched_csv", "run"],
                    choices=["batched", "batched_csv", "run"],
                    help="this checkout's phases to run (the baseline runs unless --no-baseline)")
    ap.add_argument("--phase", nargs=3, metavar=("PHASE", "FOLDER", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.phase:
        phase, folder, out = args.phase
        if phase.startswith("batched"):
            res = phase_batched(Path(folder), args.batch_size, args.workers, csv=phase == "batched_csv")
        else:
            res = phase_run(Path(folder)) if phase == "run" else phase_baseline(Path(folder))
        Path(out).write_text(json.dumps(res))
        return 0
    sys.path.insert(0, str(ROOT / "src"))
    work = Path(args.workdir)
    base_src = None if args.no_baseline else str(worktree(args.baseline_rev) / "src")
    results = {}
    for n in args.sizes:
        t0 = time.perf_counter()
        info = build(n, work / f"n{n}")
        print(f"n={n:,}: cohort built ({info['observations']:,} observations) in {time.perf_counter() - t0:.0f} s",
              flush=True)
        opts = ("--batch-size", str(args.batch_size), "--workers", str(args.workers))
        res = {p: _child(p, work / f"n{n}", str(ROOT / "src"), opts) for p in args.phases}
        # a baseline with the Analysis graph runs as this checkout's whole-study phase does
        has_graph = base_src and "class Analysis" in (Path(base_src) / "cartlab" / "analyze.py").read_text()
        base = _child("run" if has_graph else "baseline", work / f"n{n}", base_src) if base_src else {}
        results[n] = {"info": info, **res, "baseline": base}
        for p in args.phases:
            how = {"run": "whole study in one process, every table in memory",
                   "batched": f"batches of {args.batch_size} on {args.workers} workers, every table as Parquet parts",
                   "batched_csv": f"batches of {args.batch_size} on {args.workers} workers, every CSV file written"}
            print(f" {p} ({how[p]}):")
            _print(n, res[p], base)
    if len(args.sizes) >= 2:
        lo, hi = min(args.sizes), max(args.sizes)
        for p in args.phases:
            a, b = results[lo][p].get("wall_s"), results[hi][p].get("wall_s")
            if a and b:
                print(f"{p}: time {hi:,}/{lo:,} subjects: {b / a:.1f} (linear = {hi / lo:g}; target <= {hi / lo * 1.1:g})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0 if all("error" not in r[p] for r in results.values() for p in args.phases) else 1


def _print(n: int, run: dict, base: dict) -> None:
    def gib(x):
        return f"{x / 2**30:.2f} GiB" if x else "-"

    if "error" in run:
        print(f"  run: error {run['error']}")
        return
    line = f"  run: {run['wall_s']:.1f} s, peak {gib(run['peak_rss'])} (load {run['load_s']:.1f} s, {run['tables']} tables)"
    if "phases" in run:
        line = (f"  run: {run['wall_s']:.1f} s ({', '.join(f'{k} {v:.1f} s' for k, v in run['phases'].items())}), "
                f"peak {gib(run['peak_rss'])} = parent {gib(run['parent_rss'])} + workers "
                f"{' + '.join(gib(w) for w in run['worker_rss'])} ({run['batches']} batches, {run['tables']} tables, "
                f"{run['bytes_written'] / 2**30:.2f} GiB {'of CSV' if run['csv'] else 'of Parquet parts'} written)")
    if base and "error" not in base:
        line += (f" | baseline: {base['wall_s']:.1f} s, peak {gib(base['peak_rss'])} | speed-up "
                 f"{base['wall_s'] / run['wall_s']:.1f}x, memory ratio {run['peak_rss'] / base['peak_rss']:.2f}")
    elif base:
        line += f" | baseline: error {base['error']}"
    print(line, flush=True)
    names = sorted(set(run["engines"]) | set(base.get("engines", {})),
                   key=lambda k: -max(run["engines"].get(k, 0), base.get("engines", {}).get(k, 0)))
    print(f"  {'engine (table)':<26}{'run s':>9}{'base s':>9}{'ratio':>8}")
    for k in names:
        r, b = run["engines"].get(k), base.get("engines", {}).get(k)
        ratio = f"{b / r:.1f}x" if r and b else "-"
        print(f"  {k:<26}{(f'{r:.2f}' if r is not None else '-'):>9}{(f'{b:.2f}' if b is not None else '-'):>9}{ratio:>8}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
