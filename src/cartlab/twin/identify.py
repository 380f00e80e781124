"""Identifiability of a fitted twin (design §4.2): local sensitivity at the MAP and profile likelihoods.

* Sensitivity: S_ij = d g(y_i) / d log theta_j / sigma_i at the MAP, on the subject's own fitted
  observations (g = log for log-normal observables, identity for Gaussian ones, the percentage for
  binomial blast counts, scaled by the binomial SD), by central differences in one batched solve.
  Importance of a parameter = RMS of its column (Brun, Reichert & Kuensch 2001, "delta msqr");
  collinearity index of a parameter set K = 1 / sqrt(smallest eigenvalue of Sn_K' Sn_K) with unit-
  length columns Sn (Brun 2001; the same formula as R FME::collin, whose documentation says "As a
  rule of thumb, a collinearity value less than about 20 is 'identifiable'",
  https://rdrr.io/rforge/FME/man/collin.html): pairs above 20 are flagged. The SVD condition number
  and rank of S are reported for the whole free set.
* Profile: for a parameter, fix log theta_j on a grid around the MAP, re-optimise the others
  (warm-started L-BFGS-B) on the negative log posterior WITHOUT theta_j's own prior term, and report
  the rise above the minimum. A profile that stays below chi2_1(0.95)/2 = 1.92 on both sides within
  the grid is "practically non-identifiable from these data" (Raue et al. 2009): its estimate is the
  prior's. The other parameters keep their priors (regularised profile), which is an assumption.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import polars as pl
from scipy import optimize

from cartlab.twin.fit import _LOG_FLOOR, _T_GRID, FD_STEP, OBS_MODEL, _obs_loglik, course_summaries
from cartlab.twin.mrd_obs import METHOD_LOG_SD, method_sd

__all__ = ["collinearity", "identifiability", "profile", "sensitivity"]

CHI2_95_HALF = 1.92  # chi2_1(0.95) / 2 = 3.841 / 2
COLLINEARITY_FLAG = 20.0


def _names(model) -> list[str]:
    ob = model._objective
    return [ob.table.names[i] for i in ob.free]


def sensitivity(model, h: float = 1e-2) -> np.ndarray:
    """(N_obs + N_anchors, k) scaled sensitivity matrix at the MAP (see module docstring); soft anchors
    count as pseudo-observations (their statistic / SD)."""
    ob = model._objective
    x = model.x_
    k = x.size
    E = np.eye(k) * h
    sim = ob.simulate(np.vstack([x + E, x - E]))
    _, pred = _obs_loglik(ob.obs, ob.t_out, sim.latent)
    kind = np.array([OBS_MODEL[p][0] for p in ob.obs.param])
    s = np.array([OBS_MODEL[p][1] for p in ob.obs.param], dtype=float)
    g = pred.copy()
    ln = kind == "lognormal"
    g[:, ln] = np.log(np.maximum(pred[:, ln], _LOG_FLOOR)) / s[ln]
    nm = kind == "normal"
    g[:, nm] = pred[:, nm] / s[nm]
    bi = kind == "binomial"
    if bi.any():  # percentage scaled by the binomial SD at the MAP prediction
        _, p0 = _obs_loglik(ob.obs, ob.t_out, ob.simulate(x[None, :]).latent)
        scale = np.where(ob.obs.param[bi] == "MRDFCM", 1.0, 100.0)
        pr = np.clip(p0[0, bi] / scale, 1e-6, 1 - 1e-6)
        g[:, bi] = pred[:, bi] / (scale * np.sqrt(pr * (1 - pr) / s[bi]))
        mrd = bi & np.isin(ob.obs.param, list(METHOD_LOG_SD))
        for p in np.unique(ob.obs.param[mrd]):   # between-method rows: log prediction over the total SD (A1)
            j = mrd & (ob.obs.param == p)
            sd = method_sd(np.maximum(p0[0, j], 0.0), s[j], METHOD_LOG_SD[p])
            g[:, j] = np.log(np.maximum(pred[:, j], _LOG_FLOOR)) / sd
    if ob.anchors:   # the soft anchors are pseudo-observations: one row each, scaled by the anchor's SD
        grid = np.isin(ob.t_out, _T_GRID)
        summ = course_summaries(ob.t_out[grid], {p: v[:, grid] for p, v in sim.latent.items()})
        g = np.hstack([g, np.stack([summ[a.stat] / a.sd for a in ob.anchors], axis=1)])
    return ((g[:k] - g[k:]) / (2 * h)).T


def collinearity(S: np.ndarray, cols) -> float:
    """Brun 2001 collinearity index of the columns ``cols`` of S (inf when a column is all zero)."""
    A = S[:, list(cols)]
    n = np.linalg.norm(A, axis=0)
    if np.any(n == 0):
        return math.inf
    A = A / n
    lam = np.linalg.eigvalsh(A.T @ A).min()
    return math.inf if lam <= 1e-14 else 1.0 / math.sqrt(lam)


def profile(model, name: str, span: float = 2.0, n_points: int = 9, maxiter: int = 60) -> pl.DataFrame:
    """Profile of the negative log posterior (without ``name``'s own prior) on a log-grid of
    ``n_points`` over MAP +/- ``span`` natural-log units; columns name, log_offset, value, delta."""
    ob = model._objective
    names = _names(model)
    j = names.index(name)
    others = [i for i in range(len(names)) if i != j]
    blo, bhi = ob.table.bounds()
    lo = np.log(np.maximum(blo[ob.free], 1e-300))
    hi = np.log(bhi[ob.free])
    x0 = model.x_.copy()
    h = FD_STEP

    def own_prior(v):
        return 0.5 * ((v - ob.pm[j]) / ob.psd[j]) ** 2

    def f_and_g(xo, v):
        k = xo.size
        full = np.repeat(x0[None, :], 2 * k + 1, axis=0)
        full[:, j] = v
        E = np.eye(k) * h
        full[:, others] = np.vstack([xo[None, :], xo + E, xo - E])
        f = ob(full) - own_prior(v)
        return float(f[0]), (f[1:k + 1] - f[k + 1:]) / (2 * h)

    rows = []
    offsets = np.linspace(-span, span, n_points)
    # walk outward from the MAP in both directions, warm-starting from the neighbour
    for side in (offsets[offsets >= 0], offsets[offsets < 0][::-1]):
        xo = x0[others].copy()
        for off in side:
            v = float(np.clip(x0[j] + off, lo[j], hi[j]))
            r = optimize.minimize(f_and_g, xo, args=(v,), jac=True, method="L-BFGS-B",
                                  bounds=list(zip(lo[others], hi[others])), options={"maxiter": maxiter})
            xo = r.x
            rows.append({"parameter": name, "log_offset": float(off), "value": math.exp(v), "objective": float(r.fun)})
    df = pl.DataFrame(rows).sort("log_offset")
    return df.with_columns(delta=pl.col("objective") - pl.col("objective").min())


def identifiability(model, profile_params=None, n_points: int = 9, span: float = 2.0) -> pl.DataFrame:
    """One row per estimated parameter: importance (RMS scaled sensitivity), SE (log), shrinkage,
    the most collinear partner and the pair's collinearity index, and (for ``profile_params``) the
    profile rise at -span and +span and the verdict. Also sets ``model.identifiability_``,
    ``model.profiles_`` and ``model.sensitivity_`` (condition number, full-set collinearity)."""
    names = _names(model)
    S = sensitivity(model)
    n = max(S.shape[0], 1)
    imp = np.sqrt((S * S).sum(axis=0) / n)
    sv = np.linalg.svd(S, compute_uv=False) if S.size else np.array([0.0])
    cond = float(sv.max() / sv.min()) if sv.min() > 0 and S.shape[0] >= S.shape[1] else math.inf
    pair = {}
    live = [j for j in range(len(names)) if np.linalg.norm(S[:, j]) > 0]   # zero columns: no sensitivity at all
    for a, b in itertools.combinations(live, 2):
        g = collinearity(S, (a, b))
        for u, w in ((a, b), (b, a)):
            if u not in pair or g > pair[u][1]:
                pair[u] = (w, g)
    summ = model.summary
    profiles = []
    prof_lo, prof_hi = {}, {}
    for p in (profile_params if profile_params is not None else []):
        if p not in names:
            continue
        pr = profile(model, p, span=span, n_points=n_points)
        profiles.append(pr)
        prof_lo[p] = float(pr["delta"][0])
        prof_hi[p] = float(pr["delta"][-1])
    rows = []
    for i, p in enumerate(names):
        lo, hi = prof_lo.get(p), prof_hi.get(p)
        if imp[i] == 0:
            verdict = "no sensitivity to the data (prior only)"
        elif lo is None:
            verdict = "not profiled"
        elif lo > CHI2_95_HALF and hi > CHI2_95_HALF:
            verdict = "identifiable (profile exceeds 1.92 on both sides)"
        elif lo > CHI2_95_HALF or hi > CHI2_95_HALF:
            verdict = "partly identifiable (one-sided profile)"
        else:
            verdict = "practically non-identifiable (prior-dominated)"
        partner, gam = pair.get(i, (None, math.nan))
        rows.append({"parameter": p, "importance": float(imp[i]), "se_log": float(summ["se_log"][i]),
                     "shrinkage": None if summ["shrinkage"][i] is None else float(summ["shrinkage"][i]),
                     "most_collinear_with": None if partner is None else names[partner],
                     "pair_collinearity": float(gam), "collinear_flag": bool(gam > COLLINEARITY_FLAG),
                     "profile_delta_lo": lo, "profile_delta_hi": hi, "verdict": verdict})
    out = pl.DataFrame(rows, schema={"parameter": pl.String, "importance": pl.Float64, "se_log": pl.Float64,
                                     "shrinkage": pl.Float64, "most_collinear_with": pl.String,
                                     "pair_collinearity": pl.Float64, "collinear_flag": pl.Boolean,
                                     "profile_delta_lo": pl.Float64, "profile_delta_hi": pl.Float64,
                                     "verdict": pl.String})
    model.identifiability_ = out
    model.profiles_ = pl.concat(profiles) if profiles else None
    model.sensitivity_ = {"n_observations": int(S.shape[0]), "n_parameters": len(names), "condition_number": cond,
                          "collinearity_all": collinearity(S, range(len(names))) if S.shape[0] else math.inf,
                          "rank": int(np.linalg.matrix_rank(S)) if S.size else 0}
    return out
