"""``cartlab simulate``: a virtual trial of the CD7 CAR-T digital twin (cartlab.twin.trial)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from cartlab.cli.base import _force_progress, _usage, app, console, err


def _floats(text: str | None, what: str) -> list[float] | None:
    if text is None:
        return None
    items = [x.strip() for x in text.replace(";", ",").split(",")]
    if any(not x for x in items):   # review 38 C2: an empty item is an error, never silently dropped
        raise _usage(f"{what}: empty item in {text!r}", hint="give numbers separated by commas, e.g. 1e6,2e6")
    try:
        vals = [float(x) for x in items]
    except ValueError:
        raise _usage(f"{what}: expected numbers separated by commas, got {text!r}") from None
    if not vals or any(not math.isfinite(v) for v in vals):
        raise _usage(f"{what}: expected finite numbers (not nan or inf), got {text!r}")
    if any(v < 0 for v in vals):
        raise _usage(f"{what}: expected non-negative numbers, got {text!r}")
    return vals


def _splits(text: str | None) -> list[tuple[float, ...]] | None:
    """'0.2,0.8' = one split; '1;0.2,0.8' = two regimens (single infusion, 20/80 split)."""
    if text is None:
        return None
    out = []
    for k, part in enumerate(text.split(";")):
        if not part.strip():
            where = "after ';'" if k else "before ';'"
            raise _usage(f"--split: empty regimen {where} in {text!r}",
                         hint="e.g. --split 0.2,0.8 or --split '1;0.2,0.8' to compare regimens")
        fr = _floats(part, "--split")
        if not fr or abs(sum(fr) - 1.0) > 1e-6:
            raise _usage(f"--split: the fractions of a regimen must add up to 1, got {part!r}",
                         hint="e.g. --split 0.2,0.8 or --split '1;0.2,0.8' to compare regimens")
        out.append(tuple(fr))
    return out


@app.command("simulate")
def simulate_cmd(
    protocol: Annotated[str, typer.Option("--protocol", "-p", help="Protocol (shipped id or YAML).")] = "nct04762485",
    n: Annotated[int, typer.Option("--n", help="Virtual patients (per arm; every patient runs in every arm).")] = 200,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed (the same seed gives the same patients).")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="Output folder.")] = Path("out/simulate"),
    dose_levels: Annotated[str | None, typer.Option(
        "--dose-levels", help="CAR-T dose levels in cells/kg, e.g. 1e6,2e6,5e6 (default: the protocol's).")] = None,
    split: Annotated[str | None, typer.Option(
        "--split", help="Infusion fractions, e.g. 0.2,0.8; several regimens separated by ';' ('1;0.2,0.8').")] = None,
    ld_intensity: Annotated[str | None, typer.Option(
        "--ld-intensity", help="Lymphodepletion intensity relative to the protocol, e.g. 0.5,1,1.5.")] = None,
    folders: Annotated[str, typer.Option(
        "--folders", help="Patients (per arm) written as study folders under DIR/study: a number or 'all'.")] = "200",
    workers: Annotated[int | None, typer.Option(
        "--workers", help="Run on a local Dask cluster of this many worker processes.")] = None,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", help="Address of a running Dask scheduler (tcp://host:8786).")] = None,
    chunk: Annotated[int, typer.Option("--chunk", help="Patients per work unit.")] = 1000,
    days: Annotated[float | None, typer.Option(
        "--days", help="Shorten the simulated follow-up to this many days after the first infusion (more than 0, "
        "at most the schedule's follow-up, 90 days; default: 90).")] = None,
    on_solver_failure: Annotated[str, typer.Option(
        "--on-solver-failure", metavar="exclude|error", help="A patient whose course the solvers cannot follow "
        "(DP5 step limit, then the LSODA fallback): exclude (default) leaves it out of its arm, counted and listed "
        "in summary.json (solver.failed) and on the screen; error stops the run.")] = "exclude",
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue a run in DIR: finished chunks are kept, the others computed.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Write into a folder that holds other files (not an earlier simulate run); the other "
                        "files are kept.")] = False,
) -> None:
    """Run a virtual trial of the CD7 CAR-T digital twin; write DIR/summary.json, DIR/tables, DIR/plots, DIR/study.

    Every simulated row has source = simulated. Rates come with 95% CIs: the screen and tables/ give the
    Wilson score interval, summary.json both Wilson (ci95_wilson) and exact Clopper-Pearson (ci95_exact,
    the method of cartlab analyze's response rates). A folder
    holding other files (not an earlier simulate run) is refused unless --force.

    [bold]Example[/]: cartlab simulate --protocol nct04762485 --n 200 --seed 1 --out sim/
    [bold]Example[/]: cartlab simulate --n 100000 --dose-levels 1e6,2e6,5e6 --workers 2 --out sim/
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from cartlab.protocol import load_protocol
    from cartlab.twin.trial import SolverFailed, TrialConfig, WorkersLost, arms_from, run_trial

    if n < 1:
        raise _usage("--n must be at least 1")
    if chunk < 1:
        raise _usage("--chunk must be at least 1")
    if workers is not None and scheduler:
        raise _usage("give --workers or --scheduler, not both")
    if workers is not None and workers < 1:
        raise _usage("--workers must be at least 1")
    if on_solver_failure not in ("exclude", "error"):
        raise _usage(f"--on-solver-failure must be exclude or error, not {on_solver_failure!r}")
    if folders != "all" and not folders.isdigit():
        raise _usage(f"--folders: a number or 'all', got {folders!r}")
    if out.exists() and not out.is_dir():
        raise _usage(f"--out {out}: a file, not a folder to write the trial into")
    from cartlab.io.atomic import check_output_folder

    # a folder of other files is refused before any work (an earlier run: run_trial asks for --resume)
    check_output_folder(out, "simulate", force=force, what="the trial", noun="run",
                        earlier=lambda p: (p / "manifest.jsonl").exists() or (p / "run_config.json").exists())
    if days is not None:
        from cartlab.twin.trial import max_course_days

        horizon = max_course_days()
        if not math.isfinite(days) or days <= 0:
            raise _usage(f"--days must be a number of days above 0 (at most {horizon:g}), got {days:g}")
        if days > horizon:
            raise _usage(f"--days {days:g} is beyond the model's follow-up horizon: at most {horizon:g} days "
                         "(the schedule's follow-up)")
    load_protocol(protocol)   # a bad protocol fails here (exit 2), not in a worker
    arms = arms_from(_floats(dose_levels, "--dose-levels"), _splits(split), _floats(ld_intensity, "--ld-intensity"))
    cfg = TrialConfig(protocol=protocol, n=n, seed=seed, arms=arms, chunk=chunk,
                      folders=n if folders == "all" else int(folders), course_days=days,
                      on_solver_failure=on_solver_failure)
    from cartlab.twin.trial import validate_config

    validate_config(cfg)   # every arm's doses checked against the protocol before anything is written
    with Progress(TextColumn("[bold]simulating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("ETA"), TimeRemainingColumn(), console=err, transient=True,
                  disable=not err.is_terminal and not _force_progress()) as prog:
        task = prog.add_task("patients", total=n)

        def progress(done: int, total: int) -> None:
            prog.update(task, completed=done, total=total)

        try:
            summary = run_trial(cfg, out, workers=workers, scheduler=scheduler, resume=resume, progress=progress)
        except KeyboardInterrupt:
            prog.stop()
            err.print(f"interrupted: the finished chunks are kept in {out}; continue with the same command and "
                      "--resume", soft_wrap=True, highlight=False)
            raise typer.Exit(130) from None
        except OSError as exc:  # review 40 B6: one message naming --out, not a bare OS error
            prog.stop()
            from cartlab.errors import CartlabError

            reason = exc.strerror or type(exc).__name__
            raise CartlabError(f"cannot write the trial to --out {out}: {reason}",
                               hint="check that the folder and the one above it can be written (permissions, a "
                                    "read-only or full disk), or choose another --out; chunks finished before "
                                    "this, if any, are kept there (--resume continues)") from None
        except (WorkersLost, SolverFailed) as e:
            prog.stop()
            err.print(f"[red]error:[/] {e}", soft_wrap=True, highlight=False)
            raise typer.Exit(1) from None
    for a in summary["arms"]:
        console.print(_arm_line(a, days), soft_wrap=True, highlight=False)
        if (sv := a.get("solver")) and (sv["n_failed"] or sv["n_fallback"]):
            err.print(_solver_line(a), soft_wrap=True, highlight=False)
    console.print(f"[green]wrote[/] {out / 'summary.json'}, {out / 'tables'}, {out / 'plots'}"
                  + (f", {out / 'study'}" if cfg.folders else "") + " (all values simulated)")
    console.print("[dim]rates: % (Wilson score 95% CI); summary.json also gives the exact Clopper-Pearson CI "
                  "(ci95_exact), the method of cartlab analyze's response_rates.csv[/]", soft_wrap=True,
                  highlight=False)


def _pct(k: int, n: int) -> str:
    """k/n as "% (Wilson 95% CI)"."""
    from cartlab.twin.trial import wilson

    lo, hi = wilson(k, n)
    return f"{100 * k / n:.1f}% ({100 * lo:.1f}-{100 * hi:.1f})"


def _arm_line(a: dict, days: float | None) -> str:
    """One arm's printed rates (review 38 B9): a response rate is over the patients with a response
    assessment (best response not NE, as analyze's response_rates), with the NE count named, and
    "not evaluable" when none was assessed; with a follow-up shorter than the early ICAHT window
    (days 0-30, EHA/EBMT 2023) ICAHT >= 3 is a lower bound ("at least"), and Cmax/Tmax are "within D
    days" when D is shorter than the 28-day expansion window."""
    from cartlab.twin.summaries import early_icaht_window

    r, n = a["rates"], a["n"]
    if n == 0:  # every patient of the arm left out by a solver failure (review38 diff2 B3): no rate
        n_failed = int((a.get("solver") or {}).get("n_failed", 0))
        why = f"solver failures, {n_failed} patient(s)" if n_failed else "solver failures"
        return f"[bold]{a['arm']}[/] n=0: no patients (all excluded: {why})"
    ne = int(a["best_response"].get("NE", 0))
    evaluable = int(a.get("n_response_evaluable", n - ne))
    if evaluable == 0:
        follow = f"follow-up {days:g} days; " if days is not None else ""
        response = f"response not evaluable (0/{n} with a response assessment: {follow}best response NE for all)"
    else:
        response = (f"response CR/CRh/CRi {_pct(r['response_cr_crh_cri']['k'], evaluable)} (with MLFS "
                    f"{_pct(r['response_cr_crh_cri_mlfs']['k'], evaluable)}) of {evaluable} evaluable"
                    + (f", {ne} not evaluable (NE)" if ne else ""))
    window_end = early_icaht_window()[1]
    short = days is not None and days < window_end
    icaht = (f"ICAHT>=3 at least {_pct(r['icaht_early_ge3']['k'], n)} (follow-up {days:g} days < the early window's "
             f"{window_end:g})" if short else f"ICAHT>=3 {_pct(r['icaht_early_ge3']['k'], n)}")
    within = f" within {days:g} days" if days is not None and days < 28 else ""
    cd7 = r["cd7neg_relapse"]
    unknown = int(cd7.get("unknown", 0))   # relapses without a CD7 result in their window (review 47 B3)
    cd7_text = _pct(cd7["k"], n) + (f"; CD7 unknown in {unknown} relapse(s), up to {100 * (cd7['k'] + unknown) / n:.1f}%"
                                    if unknown else "")
    return (f"[bold]{a['arm']}[/] n={n} (Wilson 95% CIs): {response}, CRS>=3 {_pct(r['crs_ge3']['k'], n)}, "
            f"{icaht}, CD7- relapse {cd7_text}; median Cmax{within} "
            f"{a['median_cmax_copies_per_ug']} copies/ug at day {a['median_tmax_day']}")


def _solver_line(a: dict) -> str:
    """The arm's solver report (review 38 B2): patients left out because no solver could follow them
    (ids and reason), and the count that needed the LSODA fallback."""
    sv = a["solver"]
    text = f"[yellow]warning:[/] {a['arm']}: {sv['n_fallback']} patient(s) needed the LSODA fallback solver"
    if sv["n_failed"]:
        shown = "; ".join(f"{f['subject_id']} ({f['reason']})" for f in sv["failed"][:5])
        more = f"; and {sv['n_failed'] - 5} more" if sv["n_failed"] > 5 else ""
        text += (f"; {sv['n_failed']} left out of the arm (every solver failed; rates over the other {a['n']}): "
                 f"{shown}{more} (summary.json: solver.failed)")
    return text
