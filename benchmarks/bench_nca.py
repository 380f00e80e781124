"""NCA of 100,000 CAR-T-like profiles: cartlab's vectorised ``nca`` vs a per-subject Python loop.

setup    writes ``profiles.parquet``: ``CARTLAB_BENCH_NCA_N`` subjects (default 100,000; ``--n``
         does not apply) with 10-15 samples each from the Stein et al. 2019 tisagenlecleucel model
         (CPT Pharmacometrics Syst Pharmacol 2019;8:285; ../shared/research/kinetics.md §1.1):
         ``C = R0*exp(rho*t)`` before Tmax, ``Cmax*((1-FB)*exp(-alpha*(t-Tmax)) +
         FB*exp(-beta*(t-Tmax)))`` after, Table 1 typical values with log-normal IIV (the Table 1
         numbers read as variances, as nlmixr2lib does) and a log-scale residual error (SD 0.56).
         Samples: day 0 (pre-infusion) plus 9-14 of the nominal days 1, 2, 4, 7, 10, 14, 21, 28,
         42, 56, 90, 180, 270, 365 with +/-10% jitter; values rounded to 3 significant digits (ties
         occur). LLOQ 50 copies/ug: a BLQ value is written either as a number below the ``lloq``
         column or, for half of them, as ``value_text = "<50"`` with the value missing; 0.5% of
         values are missing. Shown: ``profiles``, ``samples``, ``blq``.
run      ``cartlab.kinetics.nca.nca`` with the intervals (0, 28) and (0, inf) and PKNCA's default
         options (lin-up/log-down); writes the numeric results for the baseline. ``nca_s`` is the
         call alone (the table's time also covers reading and writing parquet).
baseline ``baselines.rowwise_nca``: the same rules written per subject in pure Python (lists and
         the math module). ``base_nca_s`` times it from the same in-memory frame as ``nca_s``
         (frame to Python rows, then the loop; ``base_loop_s`` is the loop alone). Every numeric
         result is compared with cartlab's (relative 1e-12; r.squared and adj.r.squared also
         absolute 1e-12; nulls must agree) and so are the warning codes; any difference fails
         the phase. ``speed_up`` = base_nca_s / nca_s. Then the loop a user writes without
         vectorisation: cartlab's ``nca`` called once per subject (``loop_s``; same numbers
         required), ``loop_speed_up`` = loop_s / nca_s.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from harness import benchmark

N_DEFAULT = 100_000
INTERVALS = ((0.0, 28.0), (0.0, math.inf))
NOMINAL_DAYS = (1, 2, 4, 7, 10, 14, 21, 28, 42, 56, 90, 180, 270, 365)
LLOQ = 50.0
#: Stein 2019 Table 1 typical values and IIV (variances on the log scale), kinetics.md §1.1
STEIN = {"foldx": (3900.0, 2.4), "tmax": (9.3, 0.38), "cmax": (24000.0, 0.65),
         "alpha": (0.16, 0.91), "fb": (0.0079, 0.80), "beta": (0.0032, 0.86)}
RESIDUAL_SD = 0.56

#: the numeric result columns compared between cartlab and the baseline
COMPARE = ("n_samples", "n_blq", "cmax", "tmax", "tlast", "clast.obs", "auclast", "aucall",
           "aucinf.obs", "aucint", "aucint.last", "lambda.z", "half.life", "r.squared",
           "adj.r.squared", "lambda.z.n.points", "lambda.z.time.first", "lambda.z.time.last",
           "span.ratio", "clast.pred")


def make_profiles(n_subjects: int, seed: int = 0):
    """The benchmark frame (polars): subject_id, time, conc, lloq, value_text."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    p = {k: v * np.exp(rng.normal(0.0, math.sqrt(w), n_subjects)) for k, (v, w) in STEIN.items()}
    p["fb"] = np.minimum(p["fb"], 0.5)
    p["beta"] = np.minimum(p["beta"], 0.5 * p["alpha"])
    p["tmax"] = np.clip(p["tmax"], 2.0, 40.0)
    p["foldx"] = np.maximum(p["foldx"], 5.0)
    nd = len(NOMINAL_DAYS)
    n_post = rng.integers(9, 15, n_subjects)  # + day 0 -> 10..15 samples
    # choose n_post of the nominal days per subject (random keys, keep the smallest n_post)
    keys = rng.random((n_subjects, nd))
    order = np.argsort(keys, axis=1)
    chosen = np.zeros((n_subjects, nd), dtype=bool)
    rows = np.repeat(np.arange(n_subjects), nd).reshape(n_subjects, nd)
    chosen[rows, order] = np.arange(nd)[None, :] < n_post[:, None]
    days = np.broadcast_to(np.asarray(NOMINAL_DAYS, dtype=float), (n_subjects, nd))
    jitter = 1.0 + rng.uniform(-0.1, 0.1, (n_subjects, nd))
    t_post = np.round(days * jitter, 2)
    sub = np.concatenate([np.arange(n_subjects), rows[chosen]])
    t = np.concatenate([np.zeros(n_subjects), t_post[chosen]])
    i = sub
    rho = np.log(p["foldx"]) / p["tmax"]
    r0 = p["cmax"] / p["foldx"]
    tm = p["tmax"][i]
    dt = t - tm
    decline = (1 - p["fb"][i]) * np.exp(-p["alpha"][i] * dt) + p["fb"][i] * np.exp(-p["beta"][i] * dt)
    c = np.where(t < tm, r0[i] * np.exp(rho[i] * np.minimum(t, tm)), p["cmax"][i] * decline)
    c = c * np.exp(rng.normal(0.0, RESIDUAL_SD, c.size))
    c = np.where(t == 0, r0[i] * np.exp(rng.normal(0.0, RESIDUAL_SD, c.size)), c)  # pre-infusion
    scale = 10.0 ** (2 - np.floor(np.log10(c)))  # 3 significant digits
    c = np.round(c * scale) / scale
    blq = c < LLOQ
    as_text = blq & (rng.random(c.size) < 0.5)
    missing = ~blq & (rng.random(c.size) < 0.005)
    conc = np.where(as_text | missing, np.nan, c)
    frame = pl.DataFrame({
        "subject_id": [f"S{k:06d}" for k in sub.tolist()],
        "time": t,
        "conc": conc,
        "lloq": np.full(c.size, LLOQ),
        "value_text": pl.Series(np.where(as_text, "<50", ""), dtype=pl.String),
    }).with_columns(pl.col("conc").fill_nan(None), pl.col("value_text").replace("", None))
    # a realistic long table: rows in collection order, subjects interleaved by visit
    return frame.sample(fraction=1.0, shuffle=True, seed=seed)


def _n(params: dict) -> int:
    return int(os.environ.get("CARTLAB_BENCH_NCA_N", N_DEFAULT))


def setup(params: dict) -> dict:
    path = Path(params["workdir"]) / "profiles.parquet"
    df = make_profiles(_n(params), seed=0)
    df.write_parquet(path)
    import polars as pl

    blq = df.select(((pl.col("conc") < pl.col("lloq")) | pl.col("value_text").is_not_null()).sum()).item()
    return {"_path": str(path), "profiles": df["subject_id"].n_unique(), "samples": df.height, "blq": int(blq)}


def baseline(params: dict) -> dict:
    import baselines
    import polars as pl

    df = pl.read_parquet(params["_path"])
    t0 = time.perf_counter()
    rows = list(zip(*(df[c].to_list() for c in ("subject_id", "time", "conc", "lloq", "value_text")), strict=True))
    t1 = time.perf_counter()
    results = baselines.rowwise_nca(rows, intervals=INTERVALS)
    base_s = time.perf_counter() - t0
    info = {"base_nca_s": round(base_s, 3), "base_loop_s": round(base_s - (t1 - t0), 3),
            "base_profiles_per_s": int(len(results) / len(INTERVALS) / base_s)}
    theirs_path = Path(params["_path"]).with_name("nca_cartlab.parquet")
    if theirs_path.exists():
        theirs = pl.read_parquet(theirs_path)
        mine = baselines.nca_results_frame(results, COMPARE)
        bad = baselines.compare_nca(mine, theirs, COMPARE, rtol=1e-12)
        if bad:
            raise AssertionError(f"{len(bad)} differences between the baseline and cartlab; first: {bad[:3]}")
        info["identical_rows"] = theirs.height
        info["compared_values"] = theirs.height * len(COMPARE)
        run_info = theirs_path.with_name("nca_cartlab_time.txt")
        if run_info.exists():
            nca_s = float(run_info.read_text())
            info["speed_up"] = f"{base_s / nca_s:.0f}x"
    return info


def baseline_calls(params: dict) -> dict:
    import polars as pl

    df = pl.read_parquet(params["_path"])
    theirs_path = Path(params["_path"]).with_name("nca_cartlab.parquet")
    nca_s = float(theirs_path.with_name("nca_cartlab_time.txt").read_text())
    return _per_subject_calls(df, pl.read_parquet(theirs_path), nca_s)


def _per_subject_calls(df, theirs, nca_s: float) -> dict:
    """The straightforward loop a user writes without vectorisation: split the table by subject
    and call cartlab's ``nca`` once per subject (``CARTLAB_BENCH_NCA_LOOP_N`` subjects, default
    all). Its results must equal the vectorised call's; ``loop_speed_up`` = its time scaled to
    the whole cohort / nca_s (exact when every subject is run)."""
    import polars as pl

    import baselines
    from cartlab.kinetics.nca import NcaOptions, derive_nca

    n_all = df["subject_id"].n_unique()
    n = min(int(os.environ.get("CARTLAB_BENCH_NCA_LOOP_N", n_all)), n_all)
    keep = sorted(df["subject_id"].unique().to_list())[:n]
    sub = df.filter(pl.col("subject_id").is_in(keep))
    opts = NcaOptions()
    t0 = time.perf_counter()
    parts = [derive_nca(g, lloq="lloq", value_text="value_text", intervals=INTERVALS, options=opts)
             for g in sub.partition_by("subject_id", maintain_order=False)]
    loop_s = time.perf_counter() - t0
    order = ("subject_id", "start", "end")
    mine = pl.concat(parts).select(*order, *COMPARE).sort(order)
    ref = theirs.filter(pl.col("subject_id").is_in(keep)).select(*order, *COMPARE).sort(order)
    bad = baselines.compare_nca(mine, ref, COMPARE, rtol=1e-12)
    if bad:
        raise AssertionError(f"{len(bad)} differences between per-subject nca calls and one call; first: {bad[:3]}")
    scaled = loop_s * n_all / n
    return {"loop_subjects": n, "loop_s": round(loop_s, 2), "loop_ms_per_subject": round(1e3 * loop_s / n, 3),
            "loop_speed_up": f"{scaled / nca_s:.0f}x" + ("" if n == n_all else f" (scaled from {n} subjects)")}


@benchmark(
    "nca",
    title="NCA (cmax, AUCs, lambda.z, ...) of CAR-T-like profiles with nca",
    setup=setup,
    baseline=baseline,
    requires=("polars", "numpy", "cartlab.kinetics.nca"),
    baseline_requires=("polars",),
)
def run(params: dict) -> dict:
    import polars as pl

    from cartlab.kinetics.nca import NcaOptions, derive_nca

    df = pl.read_parquet(params["_path"])
    opts = NcaOptions()
    derive_nca(df.head(50), lloq="lloq", value_text="value_text", intervals=INTERVALS, options=opts)  # warm-up
    t0 = time.perf_counter()
    out = derive_nca(df, lloq="lloq", value_text="value_text", intervals=INTERVALS, options=opts)
    nca_s = time.perf_counter() - t0
    keep = ["subject_id", "start", "end", *COMPARE]
    out.select(*keep, pl.col("warnings").list.eval(pl.element().str.split(":").list.first()).alias("codes")) \
        .write_parquet(Path(params["_path"]).with_name("nca_cartlab.parquet"))
    Path(params["_path"]).with_name("nca_cartlab_time.txt").write_text(repr(nca_s))
    n_prof = out["subject_id"].n_unique()
    return {
        "nca_s": round(nca_s, 3),
        "profiles_per_s": int(n_prof / nca_s),
        "result_rows": out.height,
        "rows_per_s": int(out.height / nca_s),
        "with_lambda_z": int(out["lambda.z"].is_not_null().sum()),
    }


@benchmark(
    "nca_calls",
    title="NCA of CAR-T-like profiles: one nca call vs nca called once per subject",
    setup=setup,
    baseline=baseline_calls,
    requires=("polars", "numpy", "cartlab.kinetics.nca"),
    baseline_requires=("polars", "numpy", "cartlab.kinetics.nca"),
)
def run_calls(params: dict) -> dict:
    return run(params)
