"""The twin's posterior samplers (:class:`cartlab.twin.fit.TwinModel`): the guarded Laplace
covariance, sampling-importance-resampling with a multivariate-t proposal, and an adaptive random-walk
Metropolis for checking it. ``ob`` is the fit's objective: a callable from log-parameter rows to the
negative log posterior, with ``bounds_x`` = (lo, hi) of the log parameters (or None)."""

from __future__ import annotations

import numpy as np

__all__ = ["importance_draws", "inside_bounds", "pd_cov", "rw_metropolis"]


def pd_cov(H: np.ndarray, prior_sd: np.ndarray) -> tuple[np.ndarray, bool]:
    """Laplace covariance = inverse Hessian, guarded: in prior-whitened coordinates (x / prior SD) the
    posterior precision of a Gaussian prior plus data is I + J with J >= 0 (data add information), so
    its eigenvalues are floored at 1 -- no direction is wider than the prior (finite-difference noise
    or a non-convex likelihood can otherwise give a negative or tiny curvature). Returns the
    covariance and whether H was positive definite before the guard."""
    D = np.diag(prior_sd)
    Hw = D @ (0.5 * (H + H.T)) @ D
    w, V = np.linalg.eigh(Hw)
    ok = bool(np.all(w > 0))
    w = np.maximum(w, 1.0)
    return D @ ((V / w) @ V.T) @ D, ok



def importance_draws(ob, center: np.ndarray, cov: np.ndarray, n: int, rng: np.random.Generator, nu: float = 5.0):
    """Draws from a multivariate t (``nu`` df) around ``center`` and their normalised importance
    weights against the posterior exp(-objective), truncated to the parameter bounds
    (``ob.bounds_x`` = (lo, hi) of the log parameters, when set): a draw outside gets weight 0
    (rejection), so no resampled draw leaves the bounds."""
    k = center.size
    L = np.linalg.cholesky(cov + 1e-12 * np.eye(k))
    z = rng.standard_normal((n, k))
    g = rng.chisquare(nu, n) / nu
    xs = center + (z @ L.T) / np.sqrt(g)[:, None]
    inside = inside_bounds(ob, xs)
    if not inside.any():   # every proposal outside the bounds: the bounded centre alone (ESS 1, flagged)
        lo, hi = ob.bounds_x
        xs = np.clip(center, lo, hi)[None, :].repeat(n, axis=0)
        w = np.zeros(n)
        w[0] = 1.0
        return xs, w
    d = np.linalg.solve(L, (xs - center).T).T
    logq = -0.5 * (nu + k) * np.log1p((d * d).sum(axis=1) / nu)  # t density up to a constant
    lw = np.full(n, -np.inf)
    lw[inside] = -ob(xs[inside]) - logq[inside]
    w = np.exp(lw - lw[inside].max())
    return xs, w / w.sum()



def inside_bounds(ob, xs: np.ndarray) -> np.ndarray:
    """Rows of ``xs`` (log parameters) inside the objective's bounds (all rows without bounds)."""
    b = getattr(ob, "bounds_x", None)
    if b is None:
        return np.ones(xs.shape[0], bool)
    return np.all((xs >= b[0]) & (xs <= b[1]), axis=1)



def rw_metropolis(ob, x0: np.ndarray, cov: np.ndarray, rng: np.random.Generator, *,
                   n_keep: int = 1000, n_chains: int = 8, n_burn: int = 300, n_iter: int = 800) -> np.ndarray:
    """Adaptive random-walk Metropolis (Haario 2001 scaling 2.38^2/k), ``n_chains`` chains advanced in
    one batched solve per step, started from Laplace draws; the last ``n_iter`` steps kept, thinned."""
    k = x0.size
    L = np.linalg.cholesky(cov)
    x = x0 + rng.standard_normal((n_chains, k)) @ L.T * 0.5
    f = ob(x)
    scale = 2.38 ** 2 / k
    kept = []
    for it in range(n_burn + n_iter):
        prop = x + rng.standard_normal((n_chains, k)) @ (np.sqrt(scale) * L).T
        fp = np.full(n_chains, np.inf)
        ins = inside_bounds(ob, prop)   # a proposal outside the parameter bounds is rejected
        if ins.any():
            fp[ins] = ob(prop[ins])
        acc = np.log(rng.uniform(size=n_chains)) < (f - fp)
        x[acc], f[acc] = prop[acc], fp[acc]
        if it >= n_burn:
            kept.append(x.copy())
    allx = np.concatenate(kept)
    idx = np.linspace(0, allx.shape[0] - 1, n_keep).astype(int)
    return allx[idx]
