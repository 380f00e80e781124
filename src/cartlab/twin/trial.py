"""Virtual trials: arms (dose level x split x lymphodepletion intensity), chunked runs on one machine
or a Dask cluster, resume, and the outputs of ``cartlab simulate`` (design §3.3-3.4).

* Work unit = chunk ``c``: global patients ``[c*C, (c+1)*C)``. Each patient's draws come from its own
  random streams (seed, patient index), and every patient is run under every arm (paired design),
  so results never depend on the chunk size or on the number of workers.
* A chunk returns per-arm accumulators (counts, fixed-bin histograms; merged in chunk order, so the
  summary bytes are identical for 1 or N workers) and, for the sampled patients, their study tables.
* Resume: a finished chunk is written atomically (``chunks/cNNNNNN.npz`` + its tables) and a line
  appended to ``manifest.jsonl`` (chunk, sha256, config hash); ``--resume`` skips the chunks whose file
  and manifest line match the run's configuration and recomputes the others.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cartlab.errors import InputError
from cartlab.twin.observe import MODEL_VERSION, observe, study_tables, subject_ids, write_tables
from cartlab.twin.summaries import CATEGORIES, Accumulator, hist_median, summarise

RATES = (  # summary name, counter, denominator counter, label
    # the response rates are over the patients with a response assessment (best response not NE; review 38
    # B9, as analyze's response_rates): missing is not negative; n_response_not_evaluable is beside them
    ("response_cr_crh_cri_mlfs", "response_cr_crh_cri_mlfs", "response_evaluable",
     "ELN 2022 CR, CRh, CRi or MLFS (best response), of the patients with a response assessment"),
    ("response_cr_crh_cri", "response_cr_crh_cri", "response_evaluable",
     "ELN 2022 CR, CRh or CRi (best response), of the patients with a response assessment"),
    ("crs_any", "crs_any", "n", "ASTCT CRS any grade"),
    ("crs_ge3", "crs_ge3", "n", "ASTCT CRS grade >= 3"),
    ("icaht_early_ge3", "icaht_early_ge3", "n", "early ICAHT grade >= 3"),
    ("relapse", "relapse", "n", "marrow relapse within follow-up"),
    ("cd7neg_relapse", "cd7neg_relapse", "n", "relapse within follow-up with CD7 on at most 30% of blasts at "
     "relapse (a relapse without a CD7 result in its window is counted in 'unknown', not as CD7-positive)"),
    ("hsct", "hsct", "n", "allo-HSCT (ends follow-up)"),
    # review 38 C3: not "expanded": a non-expander's infused cells are still quantifiable (above the LLOQ),
    # so this rate says nothing about the population's non-expanders (counter name kept for chunk files)
    ("car_quantifiable", "expanded", "n", "CAR transgene quantifiable at least once (not a measure of expansion: "
     "the infused cells of a non-expander are quantifiable too)"),
)


@dataclass(frozen=True)
class Arm:
    """One regimen: CAR-T dose (cells/kg; None = the protocol's), infusion split (fractions; None =
    the protocol's), lymphodepletion intensity relative to the protocol (1 = as written)."""

    dose_per_kg: float | None = None
    split: tuple[float, ...] | None = None
    ld_intensity: float = 1.0

    @property
    def label(self) -> str:
        d = "protocol" if self.dose_per_kg is None else f"{self.dose_per_kg:g}"
        s = "protocol" if self.split is None else "+".join(f"{x:g}" for x in self.split)
        return f"dose={d}_split={s}_ld={self.ld_intensity:g}"


def arms_from(dose_levels=None, splits=None, ld_intensities=None) -> tuple[Arm, ...]:
    """Every combination of the given dose levels, splits and LD intensities (factorial)."""
    ds = list(dose_levels) if dose_levels else [None]
    ss = [tuple(s) for s in splits] if splits else [None]
    ls = list(ld_intensities) if ld_intensities else [1.0]
    return tuple(Arm(d, s, float(l)) for d in ds for s in ss for l in ls)


SOLVER_FAILURE_OPTIONS = ("exclude", "error")


class SolverFailed(RuntimeError):
    """A patient's course could not be solved (DP5 and the LSODA fallback) and on_solver_failure="error"."""


@dataclass(frozen=True)
class TrialConfig:
    protocol: str = "nct04762485"
    n: int = 200
    seed: int = 0
    arms: tuple[Arm, ...] = (Arm(),)
    chunk: int = 1000
    population: str = "cd7_pop_v1"
    schedule: str = "schedule_v1"
    course_days: float | None = None     # shorten the schedule (quick runs, tests)
    folders: int = 200                   # patients (per arm) written as study folders
    # a patient whose solvers all fail (DP5 step limit, then LSODA): "exclude" (default) leaves it out of
    # its arm, counted and listed in summary.json; "error" stops the run (SolverFailed), as before
    on_solver_failure: str = "exclude"

    @property
    def n_chunks(self) -> int:
        return max(1, math.ceil(self.n / self.chunk))

    def chunk_index(self, cid: int) -> np.ndarray:
        return np.arange(cid * self.chunk, min(self.n, (cid + 1) * self.chunk), dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["arms"] = [asdict(a) | {"label": a.label} for a in self.arms]
        return d

    def config_hash(self, population_spec: dict | None = None) -> str:
        """Hash of everything that determines a chunk's result (not the chunk count of the run)."""
        from cartlab.twin.population import load_population

        spec = population_spec if population_spec is not None else load_population(self.population).spec
        payload = {k: v for k, v in self.to_dict().items() if k != "n"} | {
            "model": MODEL_VERSION, "population_spec": spec}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def max_course_days(schedule: str = "schedule_v1") -> float:
    """The longest follow-up ``course_days`` may ask for: the schedule's follow-up (days after day 0)."""
    from cartlab.twin.observe import load_schedule

    return float(load_schedule(schedule).follow_up_days)


def validate_config(cfg: TrialConfig) -> None:
    """Refuse a configuration the model cannot run, before anything is written (InputError): course
    days not in (0, the schedule's follow-up], non-finite or negative dose / LD intensity / split, and
    an arm whose doses the protocol refuses (built here for a 60 kg patient)."""
    from cartlab.protocol.schema import load_protocol
    from cartlab.twin.model import Events

    if cfg.on_solver_failure not in SOLVER_FAILURE_OPTIONS:
        raise InputError(f"on_solver_failure must be one of {', '.join(SOLVER_FAILURE_OPTIONS)}, "
                         f"not {cfg.on_solver_failure!r}")
    if cfg.course_days is not None:
        top = max_course_days(cfg.schedule)
        d = float(cfg.course_days)
        if not math.isfinite(d) or d <= 0 or d > top:
            raise InputError(f"course days must be above 0 and at most the schedule's follow-up {top:g} days, got {d:g}")
    proto = load_protocol(cfg.protocol)
    for arm in cfg.arms:
        vals = [arm.ld_intensity] + ([arm.dose_per_kg] if arm.dose_per_kg is not None else []) + list(arm.split or ())
        if any(not math.isfinite(float(v)) or float(v) < 0 for v in vals):
            raise InputError(f"arm {arm.label}: doses, splits and LD intensity must be finite and non-negative")
        Events.from_protocol(proto, np.array([60.0]), car_dose_per_kg=arm.dose_per_kg, split=arm.split,
                             ld_intensity=arm.ld_intensity)


def _schedule(cfg: TrialConfig):
    from cartlab.twin.observe import load_schedule

    s = load_schedule(cfg.schedule)
    return s if cfg.course_days is None else s.shortened(float(cfg.course_days))


def _context(cfg: TrialConfig, population=None):
    from cartlab.protocol.schema import load_protocol
    from cartlab.twin.clinic import load_clinic
    from cartlab.twin.population import load_population

    return (population or load_population(cfg.population), _schedule(cfg), load_protocol(cfg.protocol),
            load_clinic())


def simulate_observed(cfg: TrialConfig, idx: np.ndarray, arm: Arm, population=None, draws=None, context=None,
                      solver_log: dict | None = None):
    """The recorded courses (``Observed``) and the ``Events`` of global patients ``idx`` under ``arm``.
    A patient whose solvers all fail is left out of both (``cfg.on_solver_failure`` "exclude") or stops
    the run (:class:`SolverFailed`, "error"); ``solver_log`` (if given) receives ``n_fallback`` and
    ``failed`` (global index -> reason). The other patients' draws do not change (own random streams)."""
    from cartlab.twin.model import Events, simulate
    from cartlab.twin.population import draw

    pop, sched, proto, policy = context or _context(cfg, population)
    d = draws if draws is not None else draw(pop, idx, cfg.seed)
    ev = Events.from_protocol(proto, d.baseline.weight_kg, car_dose_per_kg=arm.dose_per_kg, split=arm.split,
                              ld_intensity=arm.ld_intensity)
    sim = simulate(d.theta, d.baseline, ev, sched.t_out(), clinic=policy, keep_states=False, on_failure="mark")
    failed = {int(idx[r]): why for r, why in sim.failed.items()}
    if solver_log is not None:
        solver_log.update(n_fallback=int(sim.n_fallback), failed=failed)
    if failed and cfg.on_solver_failure == "error":
        first = min(failed)
        raise SolverFailed(f"arm {arm.label}: the course of patient {first} ({subject_ids([first])[0]}) could not be "
                           f"solved ({failed[first]}); {len(failed)} patient(s) failed in this chunk. Rerun with "
                           "on_solver_failure exclude (the default) to leave such patients out, counted in summary.json")
    hsct, cov = d.hsct_day, d.covariates
    if failed:
        ok = np.flatnonzero(~np.isin(idx, list(failed)))
        sim, idx, ev = _sim_rows(sim, ok), idx[ok], ev.take(ok)
        hsct = None if hsct is None else np.asarray(hsct)[ok]
        cov = None if cov is None else {k: np.asarray(v)[ok] for k, v in cov.items()}
    return observe(sim, idx, cfg.seed, sched, hsct_day=hsct, covariates=cov), ev


def _sim_rows(sim, rows: np.ndarray):
    """The ``SimResult`` of patient rows ``rows`` only."""
    from dataclasses import replace

    n = next(iter(sim.latent.values())).shape[0]

    def cut(x):
        return x[rows] if isinstance(x, np.ndarray) and x.ndim and x.shape[0] == n else x

    return replace(sim, states=cut(sim.states), latent={k: cut(v) for k, v in sim.latent.items()},
                   clinic={k: cut(v) for k, v in sim.clinic.items()}, toci_times=cut(sim.toci_times),
                   steroid_times=cut(sim.steroid_times), transfusion_times=cut(sim.transfusion_times),
                   n_steps=cut(sim.n_steps), failed={})


def run_chunk(cfg: TrialConfig, cid: int, population=None, fail: bool = False) -> dict[str, Any]:
    """Simulate chunk ``cid`` under every arm: per-arm accumulators and the sampled patients' tables."""
    if fail:
        raise RuntimeError(f"injected failure in chunk {cid}")
    from cartlab.twin.population import draw

    ctx = _context(cfg, population)
    proto = ctx[2]
    idx = cfg.chunk_index(cid)
    d = draw(ctx[0], idx, cfg.seed)
    acc = Accumulator()
    tables: dict[str, dict[str, pl.DataFrame]] = {}
    for arm in cfg.arms:
        log: dict = {}
        obs, ev = simulate_observed(cfg, idx, arm, draws=d, context=ctx, solver_log=log)
        if obs.index.size:
            acc.add(arm.label, summarise(obs))
        acc.add_solver(arm.label, log["n_fallback"], log["failed"])
        sample = obs.index < cfg.folders
        if sample.any():
            sub = np.nonzero(sample)[0]
            tables[arm.label] = study_tables(_take(obs, sub), ev.take(sub), proto.lymphodepletion,
                                             np.full(sub.size, arm.ld_intensity))
    return {"cid": cid, "acc": acc, "tables": tables}


def _take(obs, rows: np.ndarray):
    from dataclasses import replace

    def cut(d):
        return {k: v[rows] for k, v in d.items()}

    return replace(obs, index=obs.index[rows], values=cut(obs.values), censored=cut(obs.censored),
                   clinic=cut(obs.clinic), last_day=obs.last_day[rows], hsct_day=obs.hsct_day[rows],
                   relapse_day=obs.relapse_day[rows], relapse_cd7_pct=obs.relapse_cd7_pct[rows],
                   relapse_cd7_negative=obs.relapse_cd7_negative[rows], covariates=cut(obs.covariates),
                   relapse_cd7_day=None if obs.relapse_cd7_day is None else obs.relapse_cd7_day[rows],
                   relapse_by_pb=None if obs.relapse_by_pb is None else obs.relapse_by_pb[rows])


# ---------------------------------------------------------------------------------------------
# chunk files, manifest, resume


def _chunk_path(out: Path, cid: int) -> Path:
    return out / "chunks" / f"c{cid:06d}.npz"


def _save_chunk(out: Path, res: dict[str, Any], chash: str) -> None:
    from cartlab.io.atomic import atomic_file, atomic_folder

    cid = res["cid"]
    if res["tables"]:
        with atomic_folder(out / "chunks" / f"c{cid:06d}") as tmp:
            for a, (arm, tabs) in enumerate(res["tables"].items()):
                for name, df in tabs.items():
                    df.write_parquet(tmp / f"arm{a:02d}_{name}.parquet")
    buf = io.BytesIO()
    np.savez(buf, **res["acc"].to_arrays())
    data = buf.getvalue()
    with atomic_file(_chunk_path(out, cid)) as tmp:
        tmp.write_bytes(data)
    with open(out / "manifest.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"chunk": cid, "sha256": hashlib.sha256(data).hexdigest(), "config": chash}) + "\n")


def _done_chunks(out: Path, chash: str) -> set[int]:
    man = out / "manifest.jsonl"
    if not man.exists():
        return set()
    done = set()
    for line in man.read_text(encoding="utf-8").splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue   # a line cut by a crash
        p = _chunk_path(out, int(r["chunk"]))
        if r.get("config") == chash and p.exists() and hashlib.sha256(p.read_bytes()).hexdigest() == r["sha256"]:
            done.add(int(r["chunk"]))
    return done


def _load_acc(out: Path, cid: int) -> Accumulator:
    with np.load(_chunk_path(out, cid)) as z:
        return Accumulator.from_arrays({k: z[k] for k in z.files})


# ---------------------------------------------------------------------------------------------
# running


def _client(workers: int | None, scheduler: str | None):
    if scheduler:
        from distributed import Client

        return Client(scheduler), None
    if workers:
        import signal
        import threading

        from distributed import Client, LocalCluster

        # the worker processes inherit an ignored SIGINT: Ctrl-C reaches only this driver, which cancels
        # the work and closes the cluster (no KeyboardInterrupt traceback from every worker)
        main = threading.current_thread() is threading.main_thread()
        old = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            import logging

            # worker log lines are silenced: a chunk's error reaches this driver through its future
            cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                                   dashboard_address=None, env={"NUMBA_NUM_THREADS": "1"},
                                   silence_logs=logging.CRITICAL)
        finally:
            if main:
                signal.signal(signal.SIGINT, old)
        return Client(cluster), cluster
    return None, None


class WorkersLost(RuntimeError):
    """Every Dask worker of the run is gone (finished chunks are kept: rerun with --resume)."""


def _check_workers(client, alone_since: float | None, grace: float, out: Path) -> float | None:
    """None while the cluster has a worker; else the time it has had none since, raising
    :class:`WorkersLost` once that exceeds ``grace`` seconds."""
    import time

    try:
        n = len(client.scheduler_info().get("workers", {}))
    except Exception:   # the scheduler itself is unreachable: as good as no worker
        n = 0
    if n:
        return None
    now = time.monotonic()
    if alone_since is None:
        return now
    if now - alone_since > grace:
        raise WorkersLost(f"no Dask worker for {grace:g} s: the workers died or were stopped; the finished chunks "
                          f"are kept in {out}, rerun the same command with --resume to continue")
    return alone_since


def run_trial(cfg: TrialConfig, out: str | Path, *, workers: int | None = None, scheduler: str | None = None,
              resume: bool = False, progress: Callable[[int, int], None] | None = None, client=None,
              fail_chunk: int | None = None, no_worker_timeout: float | None = None) -> dict[str, Any]:
    """Run (or resume) a virtual trial into ``out``; returns the summary (also ``out/summary.json``).

    ``workers``: a LocalCluster of that many processes; ``scheduler``: the address of a running
    Dask scheduler; ``client``: an existing ``distributed.Client``; none: in this process.
    ``progress(done_patients, total_patients)`` is called as chunks finish. ``fail_chunk`` injects
    an exception into that chunk (tests of resume). With Dask, a run whose cluster has had no worker
    for ``no_worker_timeout`` seconds (default 60 for ``workers``, 600 for a scheduler or client)
    stops with :class:`WorkersLost` instead of waiting forever; the finished chunks are kept.
    """
    from cartlab.twin.population import load_population

    out = Path(out)
    validate_config(cfg)   # refused before the folder or run_config.json exists
    pop = load_population(cfg.population)
    chash = cfg.config_hash(pop.spec)
    cfg_file = out / "run_config.json"
    if out.exists() and (out / "manifest.jsonl").exists():
        old = json.loads(cfg_file.read_text()) if cfg_file.exists() else {}
        if not resume:
            raise InputError(f"{out} already holds a simulate run: pass --resume to continue it, or choose another --out")
        if old.get("config_hash") != chash or old.get("n") != cfg.n:
            raise InputError(f"{out} holds a run with another configuration (seed, arms, chunk, population ...); "
                             "--resume needs the same options")
    out.mkdir(parents=True, exist_ok=True)
    from cartlab.io.atomic import atomic_file

    with atomic_file(cfg_file) as tmp:
        tmp.write_text(json.dumps(cfg.to_dict() | {"config_hash": chash}, indent=1, default=str))
    done = _done_chunks(out, chash) if resume else set()
    todo = [c for c in range(cfg.n_chunks) if c not in done]
    n_done = sum(cfg.chunk_index(c).size for c in done)
    if progress:
        progress(n_done, cfg.n)
    own_client, cluster = (None, None) if client is not None else _client(workers, scheduler)
    cl = client or own_client
    try:
        if cl is None:
            for c in todo:
                res = run_chunk(cfg, c, fail=(c == fail_chunk))
                _save_chunk(out, res, chash)
                n_done += cfg.chunk_index(c).size
                if progress:
                    progress(n_done, cfg.n)
        else:
            from distributed import as_completed

            futs = [cl.submit(run_chunk, cfg, c, None, c == fail_chunk, pure=False) for c in todo]
            grace = no_worker_timeout if no_worker_timeout is not None else (60.0 if cluster is not None else 600.0)
            try:
                import time

                ac = as_completed(futs)
                alone_since, checked = None, time.monotonic()
                while not ac.is_empty():
                    batch = ac.next_batch(block=False)
                    if not batch:
                        if time.monotonic() - checked >= 1.0:   # a worker count once a second while waiting
                            alone_since, checked = _check_workers(cl, alone_since, grace, out), time.monotonic()
                        time.sleep(0.05)
                        continue
                    alone_since = None
                    for fut in batch:
                        res = fut.result()
                        _save_chunk(out, res, chash)
                        n_done += cfg.chunk_index(res["cid"]).size
                        if progress:
                            progress(n_done, cfg.n)
            except BaseException as e:
                if isinstance(e, (KeyboardInterrupt, WorkersLost)):   # one message from the CLI, no Dask log noise
                    import logging

                    logging.getLogger("distributed").setLevel(logging.CRITICAL)
                for f in futs:
                    f.cancel()
                raise
    finally:
        if own_client is not None:
            own_client.close()
        if cluster is not None:
            cluster.close()
    acc = Accumulator()
    for c in range(cfg.n_chunks):   # chunk order: identical bytes whatever the workers did
        acc.merge(_load_acc(out, c))
    return write_outputs(cfg, acc, out)


# ---------------------------------------------------------------------------------------------
# outputs


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score 95% interval of k/n (Wilson 1927)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def _rate(k: int, n: int) -> dict[str, Any]:
    from cartlab.response.endpoints import clopper_pearson

    cp = clopper_pearson(k, n) if n > 0 else (float("nan"), float("nan"))
    w = wilson(k, n)
    return {"k": int(k), "n": int(n), "rate": round(k / n, 6) if n else None,
            "ci95_wilson": [round(w[0], 6), round(w[1], 6)], "ci95_exact": [round(cp[0], 6), round(cp[1], 6)]}


def _unknown_range(rate: dict[str, Any], unknown: int) -> None:
    """A rate some of whose patients' status is unknown (missing is not negative, review 47 B3): ``unknown``
    and ``range`` [k/n, (k + unknown)/n], the rate with none or all of them counted."""
    k, n = rate["k"], rate["n"]
    rate["unknown"] = int(unknown)
    rate["range"] = [round(k / n, 6), round((k + unknown) / n, 6)] if n else [None, None]


def summarise_acc(cfg: TrialConfig, acc: Accumulator) -> dict[str, Any]:
    arms = []
    for arm in cfg.arms:
        c = acc.counts.get(arm.label, {})
        h = acc.hists.get(arm.label, {})
        n = int(c.get("n", 0))
        den = {"n": n, "response_evaluable": int(c.get("response_evaluable", 0))}
        failed = sorted((int(k.split("|")[1]), k.split("|", 2)[2]) for k in c if k.startswith("solver_failed|"))
        row = {"arm": arm.label, "dose_per_kg": arm.dose_per_kg, "split": list(arm.split) if arm.split else None,
               "ld_intensity": arm.ld_intensity, "n": n,
               "n_response_evaluable": den["response_evaluable"],
               "n_response_not_evaluable": n - den["response_evaluable"],
               "solver": {"n_fallback": int(c.get("n_fallback", 0)), "n_failed": len(failed),
                          "on_failure": cfg.on_solver_failure,
                          "failed": [{"patient": i, "subject_id": f"SIM-{i:07d}", "reason": why}
                                     for i, why in failed]},
               "rates": {name: _rate(c.get(k, 0), den[d]) | {"label": label} for name, k, d, label in RATES},
               "cd7_unknown_relapses": int(c.get("cd7unknown_relapse", 0)),
               "best_response": {cat: int(c.get(f"best_{cat}", 0)) for cat in CATEGORIES},
               "median_cmax_copies_per_ug": _r(hist_median(h["cmax"])) if "cmax" in h else None,
               "median_tmax_day": _r(hist_median(h["tmax"], log=False)) if "tmax" in h else None,
               "median_auc0_28": _r(hist_median(h["auc28"])) if "auc28" in h else None}
        _unknown_range(row["rates"]["cd7neg_relapse"], row["cd7_unknown_relapses"])
        arms.append(row)
    return {
        # the work-unit size is not part of the result (run_config.json keeps it for --resume): the
        # summary's bytes are the same for any --chunk and any number of workers
        "source": "simulated",   # every number here is from simulated patients (review36 C2)
        "model": MODEL_VERSION, "config": {k: v for k, v in cfg.to_dict().items() if k != "chunk"}, "arms": arms,
        "notes": [
            ("response: ELN 2022 best response over the simulated follow-up; 'response_cr_crh_cri_mlfs' counts "
            "CR, CRh, CRi and MLFS, 'response_cr_crh_cri' only CR, CRh and CRi; both over the patients with a "
            "response assessment (n_response_evaluable; best response NE: n_response_not_evaluable), the other "
            "rates over all n patients of the arm"),
            ("solver: a patient whose course the solvers could not follow (DP5 step limit, then the LSODA "
             "fallback) is left out of its arm (on_failure exclude; n counts the others) and listed in "
             "solver.failed; n_fallback counts the patients that needed the LSODA fallback"),
            ("CRS by ASTCT 2019 from fever, hypotension and vasopressors; the model has no hypoxia and no "
            "ICANS: CRS grade 4 by positive pressure and any ICANS are impossible in simulated patients"),
            ("medians of Cmax / AUC from fixed log10 histograms (0.01 dex bins: the middle value's bin centre, for an "
            "even count the mean of the two middle values' bin centres; within a factor 10^0.005, about 1.2%, of the "
            "sample median), Tmax from daily bins; among patients with a quantifiable CAR level"),
            _cd7_note(),
            ("95% CIs, binomial sampling only (no parameter uncertainty): ci95_wilson (Wilson score; the interval "
             "cartlab simulate prints and tables/ gives as *_lo/*_hi) and ci95_exact (Clopper-Pearson, the method "
             "of cartlab analyze's response_rates.csv)"),
        ]}


def _cd7_note() -> str:
    """The summary's note on cd7neg_relapse, worded from the options the twin reads it with (the response
    engine's defaults: :func:`cartlab.twin.observe.relapse_cd7`, :func:`cartlab.twin.observe.cd7_cutoff`)."""
    from cartlab.response.marrow_options import ResponseOptions
    from cartlab.response.molecular import MolecularOptions, antigen_sides

    mo = MolecularOptions()
    low, _high = antigen_sides(float(mo.antigen_negative_below_pct), bool(mo.antigen_positive_inclusive))
    return ("cd7neg_relapse: CD7 status at relapse as cartlab analyze's relapse_antigen.csv reads it (the first "
            f"CD7 result from the relapse day to response.antigen_forward_days, "
            f"{float(ResponseOptions().antigen_forward_days):g}, after it; CD7 on blasts {low} "
            "is not CD7-positive); a relapse without a CD7 result there is unknown, not CD7-positive: 'unknown' "
            "counts them and 'range' is the rate with none to all of them CD7-negative")


def _json_safe(x):
    """NaN / inf -> None everywhere in a JSON-bound structure (JSON has no NaN)."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _r(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(f"{x:.6g}")


def write_outputs(cfg: TrialConfig, acc: Accumulator, out: Path) -> dict[str, Any]:
    """summary.json, tables/*.csv, plots/*.png and study/ (the sampled patients' folders)."""
    from cartlab.io.atomic import atomic_file

    summary = _json_safe(summarise_acc(cfg, acc))
    with atomic_file(out / "summary.json") as tmp:   # allow_nan=False: never a bare NaN (invalid JSON)
        tmp.write_text(json.dumps(summary, indent=1, sort_keys=False, allow_nan=False) + "\n", encoding="utf-8")
    rows = []
    for a in summary["arms"]:
        r = {"arm": a["arm"], "dose_per_kg": a["dose_per_kg"],
             "split": "+".join(f"{x:g}" for x in a["split"]) if a["split"] else None,
             "ld_intensity": a["ld_intensity"], "n": a["n"],
             "n_response_evaluable": a["n_response_evaluable"], "n_response_not_evaluable": a["n_response_not_evaluable"],
             "n_solver_failed": a["solver"]["n_failed"], "n_fallback": a["solver"]["n_fallback"],
             "median_cmax": a["median_cmax_copies_per_ug"], "median_tmax": a["median_tmax_day"]}
        for name, v in a["rates"].items():
            r[name] = v["rate"]
            r[f"{name}_lo"], r[f"{name}_hi"] = v["ci95_wilson"]
            if "unknown" in v:   # cd7neg_relapse: the relapses of unknown CD7 status, and the rate with all of them
                r[f"{name}_unknown"], r[f"{name}_max"] = v["unknown"], v["range"][1]
        rows.append(r)
    # every value is simulated: the same source label as the study tables' rows
    table = pl.DataFrame(rows, infer_schema_length=None).with_columns(pl.lit("simulated").alias("source"))
    (out / "tables").mkdir(exist_ok=True)
    first = cfg.arms[0]
    views = {"arms": table,
             "dose_response": table.filter((pl.col("split").eq_missing(rows[0]["split"]))
                                           & (pl.col("ld_intensity") == first.ld_intensity)),
             "regimens": table.filter(pl.col("dose_per_kg").eq_missing(first.dose_per_kg))}
    for name, df in views.items():
        with atomic_file(out / "tables" / f"{name}.csv") as tmp:
            df.write_csv(tmp)
    _plots(views, out / "plots")
    _study(cfg, out)
    return summary


def _plots(views: dict[str, pl.DataFrame], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cartlab.io.atomic import atomic_file

    folder.mkdir(exist_ok=True)
    for name in ("dose_response", "regimens"):
        df = views[name]
        fig, ax = plt.subplots(figsize=(7, 4))
        x = np.arange(df.height)
        series = (("response_cr_crh_cri", "CR/CRh/CRi"), ("response_cr_crh_cri_mlfs", "CR/CRh/CRi/MLFS"),
                  ("crs_ge3", "CRS >= 3"), ("icaht_early_ge3", "ICAHT >= 3"), ("cd7neg_relapse", "CD7- relapse"))
        for k, (col, lab) in enumerate(series):
            y = df[col].to_numpy().astype(float)
            err = np.vstack([y - df[f"{col}_lo"].to_numpy(), df[f"{col}_hi"].to_numpy() - y])
            ax.errorbar(x + 0.08 * (k - 2), y, yerr=err, fmt="o", capsize=3, label=lab)
        ax.set_xlim(-0.5, df.height - 0.5)
        ax.set_xticks(x, [a.replace("_", "\n") for a in df["arm"].to_list()], fontsize=7)
        ax.set_ylabel("rate (Wilson 95% CI)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"simulated {name.replace('_', '-')} ({MODEL_VERSION}; simulated, not measured)", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        with atomic_file(folder / f"{name}.png") as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)


def _study(cfg: TrialConfig, out: Path) -> None:
    """Concatenate the sampled patients' tables (chunk order) into study folders: ``study/`` for
    one arm, ``study/<arm>/`` for several."""
    parts: dict[tuple[int, str], list[pl.DataFrame]] = {}
    for c in range(cfg.n_chunks):
        d = out / "chunks" / f"c{c:06d}"
        if not d.is_dir():
            continue
        for p in sorted(d.glob("arm*_*.parquet")):
            a, name = p.stem.split("_", 1)
            parts.setdefault((int(a[3:]), name), []).append(pl.read_parquet(p))
    for a, arm in enumerate(cfg.arms):
        tabs = {name: pl.concat(v, how="vertical_relaxed") for (i, name), v in parts.items() if i == a}
        if tabs:
            write_tables(tabs, out / "study" if len(cfg.arms) == 1 else out / "study" / arm.label)
