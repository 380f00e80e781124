"""Run cartlab's benchmarks: ``python benchmarks/run.py [--n 1000] [--only NAME] [--json FILE]``.

Each registered benchmark (``benchmarks/bench_*.py``) is run phase by phase in fresh processes
(see ``harness.py``); the table shows wall time and peak memory of cartlab's implementation and of
the baseline measured in the same run, and their ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import HERE, Measurement, Result, run_all, to_json  # noqa: E402


def _time(m: Measurement) -> str:
    return f"{m.wall_s:.2f} s" if m.status == "ok" and m.wall_s is not None else m.status


def _mem(m: Measurement) -> str:
    return f"{m.max_rss / 2**20:,.0f} MiB" if m.status == "ok" and m.max_rss else "-"


def _ratio(a: float | None, b: float | None, fmt: str) -> str:
    return fmt.format(a / b) if a and b else "-"


def _info(*ms: Measurement) -> str:
    seen: dict = {}
    for m in ms:
        seen.update({k: v for k, v in m.info.items() if not k.startswith("_")})
    return ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in seen.items())


def render(results: list[Result], n: int, console=None) -> None:
    """Print the results table (rich), one line of details per benchmark, and any problems."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"cartlab benchmarks (n = {n:,})", title_justify="left")
    for col in ("name", "setup", "time", "peak RSS", "base time", "base RSS", "speed-up", "mem ratio"):
        table.add_column(col, justify="left" if col == "name" else "right")
    for r in results:
        ok = r.run.status == "ok" and r.baseline.status == "ok"
        table.add_row(
            r.name,
            _time(r.setup) if r.setup.status != "skipped" else "-",
            _time(r.run),
            _mem(r.run),
            _time(r.baseline) if r.baseline.status != "skipped" else "-",
            _mem(r.baseline),
            _ratio(r.baseline.wall_s, r.run.wall_s, "{:.1f}x") if ok else "-",
            _ratio(r.run.max_rss, r.baseline.max_rss, "{:.2f}") if ok else "-",
        )
    console.print(table)
    for r in results:
        details = _info(r.setup, r.run, r.baseline)
        console.print(f"[bold]{r.name}[/bold]: {r.title}" + (f" [dim]({details})[/dim]" if details else ""))
        for phase in ("setup", "run", "baseline"):
            m: Measurement = getattr(r, phase)
            if m.status in ("error", "unavailable"):
                console.print(f"  [bold red]{phase}: {m.status}[/bold red] {m.error}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="cohort size for data-driven benchmarks")
    ap.add_argument("--only", action="append", metavar="NAME", help="run only this benchmark (repeatable)")
    ap.add_argument("--dir", default=str(HERE), help="folder holding bench_*.py files")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds allowed per phase")
    args = ap.parse_args(argv)

    from rich.console import Console

    console = Console()
    with console.status("running benchmarks (each phase in a fresh process)..."):
        try:
            results = run_all(args.n, args.only, args.dir, timeout=args.timeout)
        except KeyError as exc:
            console.print(f"[red]{exc.args[0]}[/red]")
            return 2
    render(results, args.n, console)
    if args.json:
        Path(args.json).write_text(json.dumps(to_json(results), indent=2))
    return 0 if all(r.run.status in ("ok", "unavailable") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
