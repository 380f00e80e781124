"""The virtual CD7 CAR-T population: covariates, inter-individual variability, calibration.

``params/cd7_pop_v1.yaml`` holds the covariate distributions (each with a citation and status) and
the hyper-parameters (log multipliers of the model's population values, IIV SDs);
``targets/cd7_v1.yaml`` holds the cohort figures the population should reproduce (design §5).

Each patient's draws come from its own random streams keyed by (seed, global patient index), so a
patient is the same whatever the chunking or the number of workers, and the same patient can be
run under every trial arm (paired comparisons, common random numbers).

Calibration (:func:`calibrate`): simulated method of moments with a binomial / normal synthetic
log-likelihood of the targets, common random numbers (fixed patient streams, so the objective is a
deterministic function of the hyper-parameters) and Nelder-Mead over a handful of hyper-parameters.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cartlab._yaml import load_yaml
from cartlab.errors import InputError
from cartlab.twin.observe import STREAM_COVARIATES, STREAM_PARAMS, patient_rng

HYPER_ORDER = (("log_mult", "rho"), ("log_mult", "k_kill"), ("log_mult", "p_I"), ("log_mult", "phi0"),
               ("iiv_sd", "p_I"))


def _yaml(folder: str, name: str) -> dict[str, Any]:
    path = resources.files("cartlab.twin").joinpath(folder, f"{name}.yaml")
    if not path.is_file():
        raise InputError(f"no twin {folder} file {name!r}")
    return load_yaml(path.read_text(encoding="utf-8"))


@lru_cache(maxsize=4)
def load_targets(name: str = "cd7_v1") -> tuple[dict[str, Any], ...]:
    """The calibration / acceptance targets (each with citation and status)."""
    rows = tuple(_yaml("targets", name)["targets"])
    for r in rows:
        for k in ("id", "statistic", "summary", "range", "citation", "status"):
            if k not in r:
                raise InputError(f"target {r.get('id')!r} lacks {k}")
    return rows


@dataclass(frozen=True)
class Population:
    name: str
    spec: dict[str, Any]
    table: Any   # cartlab.twin.params.ParamTable

    @property
    def hyper(self) -> dict[str, dict[str, float]]:
        return self.spec["hyper"]

    def with_hyper(self, vector: np.ndarray) -> Population:
        """A copy with the hyper-parameters of :data:`HYPER_ORDER` set from ``vector``."""
        hyper = json.loads(json.dumps(self.hyper))
        for (group, name), x in zip(HYPER_ORDER, np.asarray(vector, float)):
            hyper.setdefault(group, {})[name] = float(x)
        return Population(self.name, {**self.spec, "hyper": hyper}, self.table)

    def hyper_vector(self) -> np.ndarray:
        base = self.table.iiv_sd()
        out = []
        for group, name in HYPER_ORDER:
            default = 0.0 if group == "log_mult" else float(base[self.table.index(name)])
            out.append(float(self.hyper.get(group, {}).get(name, default)))
        return np.array(out)

    def medians_and_sd(self) -> tuple[np.ndarray, np.ndarray]:
        mu, sd = self.table.vector().copy(), self.table.iiv_sd().copy()
        for name, lm in self.hyper.get("log_mult", {}).items():
            mu[self.table.index(name)] *= math.exp(float(lm))
        for name, s in self.hyper.get("iiv_sd", {}).items():
            sd[self.table.index(name)] = float(s)
        return mu, sd


def load_population(name: str = "cd7_pop_v1") -> Population:
    from cartlab.twin.params import load_params

    spec = _yaml("params", name)
    return Population(name, spec, load_params(spec.get("params", "cd7_twin_v1")))


@dataclass
class Draw:
    """One chunk's patients: parameters, covariates and baseline."""

    index: np.ndarray
    theta: np.ndarray                 # (n, P) natural scale
    covariates: dict[str, np.ndarray]
    hsct_day: np.ndarray              # NaN = no HSCT
    non_expander: np.ndarray
    baseline: Any                     # cartlab.twin.model.Baseline


def _clipped_lognormal(c: dict, z: np.ndarray) -> np.ndarray:
    return np.clip(c["median"] * np.exp(c["sd_log"] * z), c["lower"], c["upper"])


def _clipped_logit(c: dict, z: np.ndarray) -> np.ndarray:
    m = c["median"] / 100.0
    x = 100.0 / (1.0 + np.exp(-(math.log(m / (1 - m)) + c["sd_logit"] * z)))
    return np.clip(x, c["lower"], c["upper"])


def draw(pop: Population, index: np.ndarray, seed: int) -> Draw:
    """Parameters and covariates of global patients ``index`` (per-patient random streams)."""
    from cartlab.twin.model import Baseline

    index = np.asarray(index, np.int64)
    n, p = index.size, len(pop.table)
    z = np.empty((n, p))
    zc = np.empty((n, 4))
    u = np.empty((n, 4))
    for r, i in enumerate(index):
        g = patient_rng(seed, i, STREAM_PARAMS)
        z[r] = g.standard_normal(p)
        g = patient_rng(seed, i, STREAM_COVARIATES)
        zc[r] = g.standard_normal(4)
        u[r] = g.random(4)
    mu, sd = pop.medians_and_sd()
    theta = mu[None, :] * np.exp(sd[None, :] * z)
    lo, hi = pop.table.bounds()
    theta = np.clip(theta, lo, hi)
    cov = pop.spec["covariates"]
    non_exp = u[:, 2] < float(cov["non_expander_p"]["value"])
    irho = pop.table.index("rho")
    theta[:, irho] = np.where(non_exp, theta[:, irho] * float(cov["non_expander_p"]["rho_factor"]), theta[:, irho])
    weight = _clipped_lognormal(cov["weight_kg"], zc[:, 0])
    height = np.clip(cov["height_cm"]["median"] * (weight / cov["weight_kg"]["median"]) ** 0.3,
                     cov["height_cm"]["lower"], cov["height_cm"]["upper"])
    age = _clipped_lognormal(cov["age_years"], zc[:, 1])
    blasts = _clipped_logit(cov["bm_blast_pct"], zc[:, 2])
    cd7 = _clipped_logit(cov["cd7_on_blasts_pct"], zc[:, 3])
    h = cov["hsct_day"]
    hsct = np.where(u[:, 1] < float(cov["hsct_p"]["value"]),
                    np.floor(h["lower"] + (h["upper"] - h["lower"] + 1) * u[:, 3]), np.nan)
    sex = np.where(u[:, 0] < float(cov["sex_female_p"]["value"]), "F", "M")
    nan = np.full(n, np.nan)
    baseline = Baseline(weight_kg=weight, bm_blast_pct=blasts, cd7_on_blasts_pct=cd7, cd7t_ul=nan, cd7nk_ul=nan,
                        cd7negt_ul=nan, neut=nan, plat=nan, crp=nan, il6=nan, sysbp=nan, temp=nan)
    covariates = {"sex": sex, "age_years": age, "weight_kg": weight, "height_cm": height,
                  "bm_blast_pct": blasts, "cd7_on_blasts_pct": cd7}
    return Draw(index, theta, covariates, hsct, non_exp, baseline)


# ---------------------------------------------------------------------------------------------
# calibration


def target_rates(acc, arm: str) -> dict[str, float]:
    """The simulated statistics the targets name, from a merged accumulator."""
    from cartlab.twin.summaries import hist_median

    c, h = acc.counts[arm], acc.hists.get(arm, {})
    n = max(c["n"], 1)
    out = {k: c.get(k, 0) / n for k in ("response_cr_crh_cri", "response_cr_crh_cri_mlfs", "crs_ge3", "crs_any",
                                        "cd7neg_relapse", "icaht_early_ge3")}
    out["cmax"] = hist_median(h["cmax"]) if "cmax" in h else float("nan")
    out["tmax"] = hist_median(h["tmax"], log=False) if "tmax" in h else float("nan")
    return out


def objective(rates: dict[str, float], targets=None) -> float:
    """Negative synthetic log-likelihood of the targets given simulated ``rates``."""
    targets = targets or load_targets()
    nll = 0.0
    for t in targets:
        x = rates.get(t["summary"], float("nan"))
        if t["statistic"] == "rate" and "k" in t:
            p = min(max(x, 1e-4), 1 - 1e-4)
            nll -= t["k"] * math.log(p) + (t["n"] - t["k"]) * math.log(1 - p)
        elif t["statistic"] == "median_log10" and math.isfinite(x) and x > 0:
            nll += 0.5 * ((math.log10(x) - math.log10(t["value"])) / t["sd_log10"]) ** 2
        elif t["statistic"] == "median" and math.isfinite(x):
            nll += 0.5 * ((x - t["value"]) / t["sd"]) ** 2
        elif t["statistic"] != "rate":
            nll += 50.0   # no expansion at all: far from every kinetic target
    return nll


def evaluate(pop: Population, n: int, seed: int, chunk: int = 500) -> dict[str, float]:
    """Target statistics of ``n`` patients of ``pop`` under the protocol's regimen."""
    from cartlab.twin.trial import Arm, TrialConfig, run_chunk

    cfg = TrialConfig(n=n, seed=seed, arms=(Arm(),), chunk=chunk, population=pop.name)
    from cartlab.twin.summaries import Accumulator

    acc = Accumulator()
    for cid in range(cfg.n_chunks):
        acc.merge(run_chunk(cfg, cid, population=pop)["acc"])
    return target_rates(acc, cfg.arms[0].label)


def calibrate(n: int = 400, seed: int = 20260, maxiter: int = 40, log: str | Path | None = None,
              start: Population | None = None) -> tuple[Population, dict[str, float], float]:
    """Nelder-Mead on the synthetic log-likelihood over :data:`HYPER_ORDER` (common random numbers:
    the same ``n`` patient streams at every evaluation). Returns the calibrated population, its
    rates and the objective; each evaluation is appended to ``log`` (JSON lines).

    Internal: a function, not an estimator class (the exception to the estimator convention of
    docs/architecture.md), used by this module's ``__main__`` to re-derive the population's
    hyper-parameters (written by :func:`write_calibrated`). It keeps the best point it evaluated, not
    the optimiser's final one (the objective is a simulation, so the two can differ)."""
    from scipy.optimize import minimize

    pop = start or load_population()
    x0 = pop.hyper_vector()
    best: dict[str, Any] = {}

    def f(x):
        x = np.asarray(x, float).copy()
        x[-1] = abs(x[-1])
        rates = evaluate(pop.with_hyper(x), n, seed)
        val = objective(rates)
        if log is not None:
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"x": x.tolist(), "objective": val, "rates": rates}) + "\n")
        if not best or val < best["val"]:
            best.update(val=val, x=x, rates=rates)
        return val

    minimize(f, x0, method="Nelder-Mead", options={"maxiter": maxiter, "xatol": 0.02, "fatol": 0.05,
                                                     "initial_simplex": x0 + np.vstack([np.zeros(len(x0)),
                                                                                        0.5 * np.eye(len(x0))])})
    return pop.with_hyper(best["x"]), best["rates"], best["val"]


def write_calibrated(pop: Population, rates: dict[str, float], value: float, n: int, seed: int,
                     path: str | Path) -> Path:
    """Write the population YAML with the calibrated hyper-parameters and the achieved rates."""
    from cartlab.io.atomic import atomic_file

    hyper = {g: {k: round(float(v), 4) for k, v in d.items()} for g, d in pop.hyper.items()}
    calibration = {
        "status": "calibrated", "method": "simulated method of moments, Nelder-Mead, common random numbers",
        "n_patients": n, "seed": seed, "objective": round(value, 4),
        "achieved": {k: (round(v, 4) if math.isfinite(v) else None) for k, v in rates.items()}}
    src = resources.files("cartlab.twin").joinpath("params", f"{pop.name}.yaml").read_text(encoding="utf-8")
    head = src[: src.index("\nhyper:") + 1] if "\nhyper:" in src else src
    text = head + yaml.safe_dump({"hyper": hyper, "calibration": calibration}, sort_keys=False)
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


if __name__ == "__main__":  # pragma: no cover - background calibration run
    import sys

    n_, seed_, iters = (int(a) for a in (sys.argv[2:5] if len(sys.argv) > 4 else (400, 20260, 40)))
    out = Path(sys.argv[1])
    pop_, rates_, val_ = calibrate(n_, seed_, iters, log=out.with_suffix(".jsonl"))
    write_calibrated(pop_, rates_, val_, n_, seed_, out)
    print(json.dumps({"objective": val_, "rates": rates_, "hyper": pop_.hyper}, indent=1))
