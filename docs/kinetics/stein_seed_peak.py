"""Why the Stein 2019 fit of the seed case peaks at ~441,000 copies/ug (issue 13, point 6).

Run from the repository root: ``python docs/kinetics/stein_seed_peak.py`` (about 3 minutes). It fits
the seed case's CARCOPY course (``cartlab stein`` defaults: per-subject maximum likelihood, log
scale, M3, time from the first infusion), then

* draws the two straight lines (on the log scale) that a constant-rate expansion and a
  contraction make of these data, by ordinary least squares -- the model's peak is where they
  meet;
* profiles the likelihood over Cmax (Cmax held at each value, every other parameter refitted);
* refits with Cmax held at the observed peak, 183,945 (the paper's day-14 value);
* refits with ``dose_handling="superpose"`` (1e6/kg on day 0 + 4e6/kg on day 2);
* restarts the optimiser from 300 random points (is 441,000 the global optimum?);

and writes ``stein_seed_peak.png`` and ``stein_seed_peak.json`` beside this file. The numbers in
``stein_seed_peak.md`` come from that JSON; ``tests/test_kinetics_issue13.py`` recomputes the main
ones.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from scipy import optimize, stats

HERE = Path(__file__).resolve().parent
SEED = HERE.parents[1] / "src" / "cartlab" / "datasets" / "seed_case"


def seed_course():
    """The seed's CARCOPY samples after the first infusion: times, values, sources."""
    from cartlab.io import read_study
    from cartlab.kinetics.stein import SteinModel

    study = read_study(SEED)
    fit = SteinModel().fit(study)
    obs = fit.observations_.filter(~fit.observations_["blq"])
    return study, fit, obs


def line(t, logc):
    """Least-squares line of log C on t: (slope, intercept)."""
    slope, icpt = np.polyfit(np.asarray(t, float), np.asarray(logc, float), 1)
    return float(slope), float(icpt)


def apex(t, c, rise=(1, 10), fall=(14, 28)):
    """Where the growth line (samples in ``rise``) meets the decline line (samples in ``fall``)."""
    t, lc = np.asarray(t, float), np.log(np.asarray(c, float))
    r = (t >= rise[0]) & (t <= rise[1])
    f = (t >= fall[0]) & (t <= fall[1])
    g, d = line(t[r], lc[r]), line(t[f], lc[f])
    tx = (d[1] - g[1]) / (g[0] - d[0])
    return {"growth_rate": g[0], "decline_rate": d[0], "t": tx, "c": math.exp(g[0] * tx + g[1]),
            "growth_line": g, "decline_line": d}


def one_fit(study, **kw):
    """The fitted model and its one subject's row (parameters, sigma, nll)."""
    from cartlab.kinetics.stein import SteinModel

    f = SteinModel(**kw).fit(study)
    return f, f.individual_.row(0, named=True)


def profile(study, grid):
    """-2 log L with Cmax held at each grid value (the other parameters refitted)."""
    return [2 * one_fit(study, fixed={"cmax": float(c)})[1]["nll"] for c in grid]


def profile_interval(study, best_cmax, best_m2ll, level=0.95):
    """Cmax values where the profile -2 log L rises by the chi-square(1) quantile."""
    q = stats.chi2.ppf(level, 1)

    def excess(logc):
        return 2 * one_fit(study, fixed={"cmax": math.exp(logc)})[1]["nll"] - best_m2ll - q

    lb = math.log(best_cmax)
    lo = optimize.brentq(excess, lb - 1.5, lb - 1e-3, xtol=1e-4)
    hi = optimize.brentq(excess, lb + 1e-3, lb + 1.5, xtol=1e-4)
    return math.exp(lo), math.exp(hi)


def random_starts(study, n=300, seed=0):
    """The best -2 log L from ``n`` random L-BFGS-B starts (no data-driven start)."""
    from cartlab.kinetics.stein.data import _prepare
    from cartlab.kinetics.stein.likelihood import _Evaluator
    from cartlab.kinetics.stein.params import _BOUNDS, PARAMS

    d = _prepare(study, doses=None, covariates=None, param="CARCOPY", blq="m3", blq_below_lloq=True,
                 dose_handling="first")
    ev = _Evaluator(d.subset([0]), list(PARAMS), {}, {"ftoci": 1.0, "fster": 1.0, "tlag": 0.0})

    def nll(x):
        v = -float(ev.loglik(x[None, :6], math.exp(x[6]))[0])
        return v if np.isfinite(v) else 1e300

    bounds = [(math.log(_BOUNDS[p][0]), math.log(_BOUNDS[p][1])) for p in PARAMS] + [(math.log(1e-4), math.log(10))]
    rng = np.random.default_rng(seed)
    lows = np.log([10, 3, 5e4, 0.02, 1e-4, 1e-4])
    highs = np.log([1e5, 30, 2e6, 2, 0.5, 0.2])
    best = math.inf
    for _ in range(n):
        x0 = np.append(rng.uniform(lows, highs), math.log(0.5))
        best = min(best, optimize.minimize(nll, x0, method="L-BFGS-B", bounds=bounds).fun)
    return 2 * best


def main(n_random: int = 300, out_dir: Path = HERE) -> dict:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cartlab.kinetics.stein import stein_curve

    study, fit, obs = seed_course()
    t, c = obs["time"].to_numpy(), obs["conc"].to_numpy()
    src = obs["source"].to_list()
    ml = fit.individual_.row(0, named=True)
    est = fit.summary.filter(fit.summary["parameter"] == "cmax").row(0, named=True)
    ap = apex(t, c)
    ipred = dict(zip(obs["time"].to_list(), obs["ipred"].to_list(), strict=True))
    fixed_fit, fx = one_fit(study, fixed={"cmax": 183945.0})
    fx_obs = fixed_fit.observations_
    sup_fit, sp = one_fit(study, dose_handling="superpose")
    sup_row = sup_fit.individual_.row(0, named=True)
    grid = np.exp(np.linspace(math.log(1.2e5), math.log(1.2e6), 25))
    prof = profile(study, grid)
    ci = profile_interval(study, ml["cmax"], 2 * ml["nll"])
    m2ll_fixed = 2 * fx["nll"]
    out = {
        "ml": {"cmax": ml["cmax"], "cmax_ci_wald": [est["ci_lower"], est["ci_upper"]],
               "cmax_ci_profile": list(ci), "tmax": ml["tmax"], "foldx": ml["foldx"],
               "rho": math.log(ml["foldx"]) / ml["tmax"], "alpha": ml["alpha"],
               "fb": ml["fb"], "beta": ml["beta"], "sigma": ml["sigma"], "m2ll": 2 * ml["nll"]},
        "apex_by_hand": {k: v for k, v in ap.items() if not k.endswith("_line")},
        "observed_peak": {"t": float(t[np.argmax(c)]), "c": float(c.max())},
        "near_peak": [{"t": float(x), "observed": float(y), "ipred": float(ipred[x]),
                       "ratio": float(y / ipred[x]), "source": s}
                      for x, y, s in zip(t, c, src, strict=True) if 7 <= x <= 21],
        "local_rates": [{"from": float(a), "to": float(b), "rate": float(math.log(cb / ca) / (b - a))}
                        for a, b, ca, cb in zip(t, t[1:], c, c[1:], strict=False)],
        "cmax_fixed_at_observed": {"m2ll": m2ll_fixed, "delta_m2ll": m2ll_fixed - 2 * ml["nll"],
                                   "p_value": float(stats.chi2.sf(m2ll_fixed - 2 * ml["nll"], 1)),
                                   "sigma": fx["sigma"], "tmax": fx["tmax"],
                                   "max_abs_log_residual": float(np.nanmax(np.abs(np.log(
                                       fx_obs["conc"].to_numpy() / fx_obs["ipred"].to_numpy()))))},
        "superpose": {"m2ll": 2 * sp["nll"], "delta_m2ll": 2 * sp["nll"] - 2 * ml["nll"], "cmax": sp["cmax"],
                      "peak": sup_row["stein_cmax"], "peak_t": sup_row["stein_tmax"]},
        "random_starts": {"n": n_random, "best_m2ll": random_starts(study, n_random)},
        "n_samples": len(t), "n_reconstructed": int(sum(s == "reconstructed" for s in src)),
    }

    fig, ax = plt.subplots(1, 3, figsize=(13, 4.2))
    tg = np.linspace(0, 60, 600)
    paper = np.array([s == "paper" for s in src])
    a0 = ax[0]
    a0.plot(t[~paper], c[~paper], "o", mfc="none", color="C0", label="reconstructed sample")
    a0.plot(t[paper], c[paper], "o", color="C0", label="sample stated by the paper")
    a0.plot(tg, stein_curve(tg, ml), "-", color="C1", label=f"ML fit: Cmax {ml['cmax']:,.0f}")
    a0.plot(tg, stein_curve(tg, fx), "--", color="C2", label="fit with Cmax held at 183,945")
    g, d = ap["growth_line"], ap["decline_line"]
    tr, tf = np.linspace(0, ap["t"], 50), np.linspace(ap["t"], 30, 50)
    a0.plot(tr, np.exp(g[0] * tr + g[1]), ":", color="0.4", lw=1)
    a0.plot(tf, np.exp(d[0] * tf + d[1]), ":", color="0.4", lw=1,
            label=f"least-squares lines, days 1-10 and 14-28\n(meet on day {ap['t']:.1f} at {ap['c']:,.0f})")
    a0.set_yscale("log")
    a0.set_ylim(50, 2e6)
    a0.set_xlim(0, 60)
    a0.set_xlabel("days from the first CAR-T infusion")
    a0.set_ylabel("CAR copies/µg gDNA")
    a0.set_title("seed case: data and fits", fontsize=9)
    a0.legend(fontsize=6.5, loc="upper right")
    a1 = ax[1]
    lr = out["local_rates"]
    for r in lr:
        a1.plot([r["from"], r["to"]], [r["rate"]] * 2, "-", color="C0", lw=2)
    a1.axhline(out["ml"]["rho"], color="C1", ls="-", lw=1, label=f"model expansion rate rho {out['ml']['rho']:.2f}/day")
    a1.axvline(ml["tmax"], color="C1", ls=":", lw=1, label=f"model Tmax {ml['tmax']:.1f}")
    a1.axhline(-ml["alpha"], color="C1", ls="--", lw=1,
               label=f"model contraction -alpha {-ml['alpha']:.2f}/day")
    a1.axhline(0, color="0.7", lw=0.8)
    a1.set_xlim(0, 60)
    a1.set_xlabel("days")
    a1.set_ylabel("log-slope between successive samples (1/day)")
    a1.set_title("growth slows before the peak; the model's rate is constant", fontsize=9)
    a1.legend(fontsize=6.5)
    a2 = ax[2]
    a2.plot(grid, np.asarray(prof) - 2 * ml["nll"], "-", color="C1")
    a2.axhline(stats.chi2.ppf(0.95, 1), color="0.5", ls=":", lw=1, label="95% (chi-square 1 df: 3.84)")
    a2.axvline(183945, color="C2", ls="--", lw=1, label="observed peak 183,945")
    a2.axvline(ml["cmax"], color="C1", ls=":", lw=1, label=f"ML {ml['cmax']:,.0f}")
    a2.set_xscale("log")
    ticks = [1.5e5, 2e5, 3e5, 5e5, 7e5, 1e6]
    a2.set_xticks(ticks, [f"{x / 1e3:,.0f}k" for x in ticks])
    a2.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    a2.set_ylim(0, 15)
    a2.set_xlabel("Cmax held at (copies/µg)")
    a2.set_ylabel("increase of -2 log L")
    a2.set_title("profile likelihood of Cmax", fontsize=9)
    a2.legend(fontsize=6.5)
    fig.suptitle(f"includes synthetic data: {out['n_reconstructed']} of {out['n_samples']} samples reconstructed",
                 fontsize=8, color="darkred")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(out_dir / "stein_seed_peak.png", dpi=110)
    (out_dir / "stein_seed_peak.json").write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
