"""What a twin fit / forecast needs to be traced and reproduced (review 40 B4): the random seed, the
study (path and its input files' SHA-256: the study's own recorded checksums when it has them, else
computed from the folder), the cartlab version, the parameter set, and the Monte-Carlo standard error of
each forecast interval bound and probability.

Monte-Carlo error: the forecast's quantiles are weighted quantiles of ``n`` posterior draws
(importance draws with their SIR weights, or MCMC draws with equal weights). Their standard error is
estimated by the bootstrap over the draws (Efron & Tibshirani 1993, ch. 6): ``n_boot`` resamples of
the ``n`` draws with replacement, each keeping its weight (renormalised), the quantile recomputed, the
SD over resamples reported. It is the error of the interval's bound from using a finite number of draws
(``--draws``; a different ``--seed`` moves a bound by about this much), not the forecast's uncertainty.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["N_BOOT", "interval_mc_se", "study_record", "trace_record"]

#: bootstrap resamples of the Monte-Carlo standard error
N_BOOT = 200


def study_record(data, study_arg: str | None) -> dict:
    """``{"path", "study_id", "inputs": [{file, sha256, n_rows, format}], "checksums"}``: the study's
    recorded ``sources`` (read when the study was loaded) when it has them, else the folder's files hashed."""
    out: dict = {"path": None if study_arg is None else str(Path(study_arg).resolve()) if Path(study_arg).exists()
                 else str(study_arg), "study_id": getattr(data, "study_id", None)}
    src = getattr(data, "sources", None)
    if src is not None and getattr(src, "height", 0):
        out["inputs"] = [{k: r.get(k) for k in ("file", "format", "sha256", "n_rows")} for r in src.iter_rows(named=True)]
        out["checksums"] = "recorded by the study reader (Study.sources)"
        return out
    if study_arg is not None and Path(study_arg).is_dir():
        from cartlab.io.study_folder import sha256_file

        files = sorted(p for p in Path(study_arg).iterdir() if p.is_file() and p.suffix.lower() in (".csv", ".tsv"))
        out["inputs"] = [{"file": p.name, "sha256": sha256_file(p)} for p in files]
        out["checksums"] = "computed from the folder's files"
    else:
        out["inputs"], out["checksums"] = [], "not available (the study has no recorded source files)"
    return out


def trace_record(model, table, data, study_arg: str | None) -> dict:
    """The seed, cartlab version, parameter set id (``table``: the model's ParamTable) and study record."""
    import cartlab

    return {"seed": int(model.seed), "cartlab_version": cartlab.__version__,
            "parameter_set": f"{table.name} {table.version}".strip(),
            "missing_baseline": getattr(model, "missing_baseline", None),
            "baseline_blq": getattr(model, "baseline_blq", None),
            "study": study_record(data, study_arg)}


def interval_mc_se(t: np.ndarray, sim, weights: np.ndarray | None, seed: int = 0, n_boot: int = N_BOOT) -> dict:
    """Bootstrap Monte-Carlo SE of each forecast bound (median, pi50/pi90 lo/hi) and probability, by quantity
    (see module docstring); ``{"method", "n_draws", "n_boot", "se": {quantity: {bound: se}}}``."""
    from cartlab.twin.forecast import outcome_arrays, weighted_quantile

    o = outcome_arrays(t, sim)
    n = len(o["crs_ge3"])
    w = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, float) / float(np.sum(weights))
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(41,)))
    idx = rng.integers(0, n, size=(n_boot, n))
    se: dict[str, dict[str, float]] = {}
    names = ("pi90_lo", "pi50_lo", "median", "pi50_hi", "pi90_hi")
    for q in ("car_cmax", "car_tmax", "car_day28"):
        v = o[q][idx].T                         # (n, n_boot): one column per resample
        wb = w[idx].T
        wb = wb / wb.sum(axis=0, keepdims=True)
        b = np.stack([weighted_quantile(v[:, i], wb[:, i], [0.05, 0.25, 0.5, 0.75, 0.95]) for i in range(n_boot)])
        se[q] = {k: float(np.nanstd(b[:, j], ddof=1)) for j, k in enumerate(names)}
    for q in ("crs_ge3", "response_d28"):
        x = o[q].astype(float)[idx]
        wb = w[idx]
        p = (wb * x).sum(axis=1) / wb.sum(axis=1)
        se[q] = {"probability": float(np.std(p, ddof=1))}
    return {"method": f"bootstrap over the {n} forecast draws with their weights ({n_boot} resamples), "
                      "cartlab.twin.trace", "n_draws": int(n), "n_boot": int(n_boot), "se": se}
