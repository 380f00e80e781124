"""SAEM for the Stein population model: the estimation steps of :class:`SteinPopulationModel`.

Nonlinear mixed effects by SAEM (Delyon, Lavielle & Moulines 1999; Kuhn & Lavielle 2005), with
Metropolis-Hastings vectorised across subjects and chains, the M3 likelihood and imputation of
censored values (Samson et al. 2006), Louis' observed information for the standard errors, batched
Newton for the conditional modes (EBEs) and importance sampling for the log-likelihood; the details
are in :mod:`cartlab.kinetics.stein`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import special

from cartlab.kinetics.stein.data import _Data
from cartlab.kinetics.stein.likelihood import _Evaluator
from cartlab.kinetics.stein.params import PARAMS, Progress


def _covariate_design(cov: pl.DataFrame, spec: Mapping[str, Sequence[str]],
                      centers: Mapping[str, float] | None, est: Sequence[str]):
    """Per parameter design matrix [1, covariates...] and the covariate descriptions."""
    centers = dict(centers or {})
    n = cov.height

    def column(c: str) -> list[tuple[str, np.ndarray, str, float]]:
        if c not in cov.columns:
            raise ValueError(f"covariate {c!r} not found (available: {cov.columns[1:]})")
        s = cov[c]
        if s.null_count():
            who = cov.filter(pl.col(c).is_null())["subject_id"].to_list()
            raise ValueError(f"covariate {c!r} has missing values for {len(who)} subject(s): "
                             f"{', '.join(map(str, who[:10]))}{' ...' if len(who) > 10 else ''}; fill column {c!r} for "
                             "these subjects, or drop the covariate")
        if s.dtype in (pl.String, pl.Categorical, pl.Enum):
            vals = s.cast(pl.String).to_list()
            levels = sorted(set(vals))
            counts = {lv: vals.count(lv) for lv in levels}
            ref = max(levels, key=lambda lv: (counts[lv], -levels.index(lv)))
            out = []
            for lv in levels:
                if lv == ref:
                    continue
                out.append((f"{c}[{lv}]", np.array([v == lv for v in vals], dtype=float),
                            f"binary: 1 if {c} == {lv!r} (reference {ref!r})", 0.0))
            return out
        v = s.cast(pl.Float64).to_numpy()
        if s.dtype == pl.Boolean or set(np.unique(v)) <= {0.0, 1.0}:
            return [(c, v, "binary (0/1)", 0.0)]
        ctr = float(centers.get(c, np.median(v)))
        return [(c, v - ctr, f"continuous, centered at {ctr:.6g}", ctr)]

    X = []
    names: list[list[str]] = []
    notes: list[list[str]] = []
    centers_out: dict[str, float] = {}
    for p in est:
        cols = [np.ones(n)]
        nm, nt = [], []
        for c in spec.get(p, ()):
            for name, v, note, ctr in column(c):
                cols.append(v)
                nm.append(name)
                nt.append(note)
                centers_out[name] = ctr
        X.append(np.column_stack(cols))
        names.append(nm)
        notes.append(nt)
    for p in spec:
        if p not in est:
            raise ValueError(f"covariates given for {p!r}, which is not an estimated parameter")
    return X, names, notes, centers_out


@dataclass
class _SaemState:
    b: list[np.ndarray]
    omega2: np.ndarray
    sigma: float


def _mu(X, b) -> np.ndarray:
    return np.column_stack([x @ bj for x, bj in zip(X, b)])


def _batched_grad_hess(f, x: np.ndarray, h: float = 1e-4):
    """Gradient and Hessian of f: (..., N, P) -> (..., N) for every row, in one batched call."""
    n, k = x.shape
    E = np.eye(k) * h
    shifts = [np.zeros(k)]
    for i in range(k):
        shifts += [E[i], -E[i]]
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    for i, j in pairs:
        shifts += [E[i] + E[j], E[i] - E[j], -E[i] + E[j], -E[i] - E[j]]
    S = np.stack(shifts)  # (M, k)
    vals = f(x[None, :, :] + S[:, None, :])  # (M, N)
    f0 = vals[0]
    g = np.zeros((n, k))
    H = np.zeros((n, k, k))
    for i in range(k):
        fp, fm = vals[1 + 2 * i], vals[2 + 2 * i]
        g[:, i] = (fp - fm) / (2 * h)
        H[:, i, i] = (fp - 2 * f0 + fm) / h**2
    base = 1 + 2 * k
    for m, (i, j) in enumerate(pairs):
        a, b, c, d = vals[base + 4 * m: base + 4 * m + 4]
        H[:, i, j] = H[:, j, i] = (a - b - c + d) / (4 * h**2)
    return f0, g, H


def _batched_newton(f, x0: np.ndarray, max_iter: int = 60, tol: float = 1e-8):
    """Minimise f row-wise (f: (..., N, P) -> (..., N)) by Levenberg-damped Newton steps.

    Rows are independent problems (one per subject); a step is kept only where it lowers f."""
    x = x0.copy()
    fx = f(x)
    n, k = x.shape
    lam = np.full(n, 1e-2)
    active = np.isfinite(fx)
    eye = np.eye(k)
    for _ in range(max_iter):
        if not active.any():
            break
        _, g, H = _batched_grad_hess(f, x)
        D = np.abs(np.diagonal(H, axis1=1, axis2=2))[:, :, None] * eye + 1e-6 * eye
        A = H + lam[:, None, None] * D
        try:
            step = -np.linalg.solve(A, g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = -g / (lam[:, None] + 1.0)
        step = np.where(np.isfinite(step), step, 0.0)
        nrm = np.abs(step).max(axis=1)
        step = step * np.minimum(1.0, 2.0 / np.maximum(nrm, 1e-300))[:, None]
        step[~active] = 0.0
        xn = x + step
        fn = f(xn)
        better = active & np.isfinite(fn) & (fn < fx)
        gain = np.where(better, fx - fn, 0.0)
        x[better] = xn[better]
        fx[better] = fn[better]
        lam[better] = np.maximum(lam[better] / 4.0, 1e-8)
        lam[active & ~better] *= 6.0
        done = (better & (gain < tol)) | (np.abs(step).max(axis=1) < 1e-9) | (lam > 1e10)
        active &= ~done
    return x, fx


@dataclass
class _SaemResult:
    """What one SAEM run estimated (see :class:`SteinPopulationModel` for the fitted attributes)."""

    est: list[str]
    X: list[np.ndarray]
    cov_names: list[list[str]]
    cov_notes: list[list[str]]
    centers: dict[str, float]
    state: _SaemState
    trace: pl.DataFrame
    ebe: np.ndarray
    cond_mean: np.ndarray
    cond_cov: np.ndarray
    fim: np.ndarray | None
    loglik: float | None
    loglik_se: float | None
    n_chains: int
    polish: pl.DataFrame


class _Saem:
    """The estimation steps; mixed into :class:`SteinPopulationModel`, whose constructor holds the
    settings they read (``covariates``, ``centers``, ``fixed``, ``init``, ``omega2_init``,
    ``sigma_init``, ``n_burn``, ``n_smooth``, ``n_post``, ``n_newton``, ``n_chains``, ``kernels``,
    ``step_exponent``, ``anneal``, ``seed``, ``extras``, ``compute_se``, ``compute_ll``, ``n_is``)."""

    def _estimate(self, d: _Data, progress: Progress | None, seed: int | None = None) -> _SaemResult:
        """SAEM, then the MCMC at the estimate (conditional means, Louis' information), optional
        Newton steps, the EBEs and the log-likelihood; one run from ``seed`` (default ``self.seed``)."""
        est = [p for p in PARAMS if p not in self.fixed]
        X, cov_names, cov_notes, centers = _covariate_design(d.covariates, self.covariates, self.centers, est)
        rng = np.random.default_rng(self.seed if seed is None else seed)
        ev = _Evaluator(d, est, self.fixed, self.extras)
        n_chains = self.n_chains or max(1, int(math.ceil(50 / d.n)))
        total = self.n_burn + self.n_smooth + max(self.n_post, 1) + 1

        def tick(stage: str, done: int) -> None:
            if progress is not None:
                progress(stage, done, total)

        state, trace, phi, ll = self._saem(ev, X, est, rng, n_chains, tick=tick)
        post = self._post(ev, X, est, state, phi, ll, rng, tick=tick, offset=self.n_burn + self.n_smooth)
        polish = []
        dims = [x.shape[1] for x in X]
        for k in range(self.n_newton if self.compute_se else 0):
            info, score = post["fim"], post["score"]
            if not (np.all(np.isfinite(info)) and np.linalg.eigvalsh(info).min() > 0):
                break
            delta = np.linalg.solve(info, score)
            polish.append({"step": k, "score_chi2": float(score @ delta)})
            state = self._newton_step(state, delta, dims)
            post = self._post(ev, X, est, state, post["phi"], post["ll"], rng)
        if "score" in post and np.all(np.isfinite(post["fim"])) and np.linalg.eigvalsh(post["fim"]).min() > 0:
            polish.append({"step": len(polish),
                           "score_chi2": float(post["score"] @ np.linalg.solve(post["fim"], post["score"]))})
        mu = _mu(X, state.b)
        # EBE (conditional mode), batched
        om = state.omega2

        def obj(z):
            return -ev.loglik(z, state.sigma) + 0.5 * np.sum((z - mu) ** 2 / om, axis=-1)

        start = post["cond_mean"].copy()
        f_cm, f_best = obj(start), obj(post["best"])
        start[f_best < f_cm] = post["best"][f_best < f_cm]
        ebe, _ = _batched_newton(obj, start)
        fim = post.get("fim")
        ll_is, ll_se = self._is_loglik(ev, mu, state, post, rng) if self.compute_ll else (None, None)
        tick("done", total)
        return _SaemResult(
            est=est, X=X, cov_names=cov_names, cov_notes=cov_notes, centers=centers, state=state,
            trace=pl.DataFrame(trace), ebe=ebe, cond_mean=post["cond_mean"], cond_cov=post["cond_cov"], fim=fim,
            loglik=ll_is, loglik_se=ll_se, n_chains=n_chains,
            polish=pl.DataFrame(polish, schema={"step": pl.Int64, "score_chi2": pl.Float64}),
        )

    # -- SAEM -------------------------------------------------------------------------------
    def _mcmc(self, ev, phi, ll, mu, state, steps, rng):
        om = state.omega2
        sd = np.sqrt(om)
        sig = state.sigma
        k1, k2, k3 = self.kernels
        P = phi.shape[-1]

        def lprior(z):
            return -0.5 * np.sum((z - mu) ** 2 / om, axis=-1)

        for _ in range(k1):
            prop = mu + sd * rng.standard_normal(phi.shape)
            llp = ev.loglik(prop, sig)
            acc = np.log(rng.uniform(size=ll.shape)) < llp - ll
            phi = np.where(acc[..., None], prop, phi)
            ll = np.where(acc, llp, ll)
        lp = lprior(phi)
        for _ in range(k2):
            prop = phi + steps["rw"] * sd * rng.standard_normal(phi.shape)
            llp, lpp = ev.loglik(prop, sig), lprior(prop)
            acc = np.log(rng.uniform(size=ll.shape)) < (llp + lpp) - (ll + lp)
            phi = np.where(acc[..., None], prop, phi)
            ll, lp = np.where(acc, llp, ll), np.where(acc, lpp, lp)
            steps["rw"] *= 1 + 0.4 * (acc.mean() - 0.4)
        for _ in range(k3):
            for j in range(P):
                prop = phi.copy()
                prop[..., j] += steps["cw"][j] * sd[j] * rng.standard_normal(phi.shape[:-1])
                llp, lpp = ev.loglik(prop, sig), lprior(prop)
                acc = np.log(rng.uniform(size=ll.shape)) < (llp + lpp) - (ll + lp)
                phi = np.where(acc[..., None], prop, phi)
                ll, lp = np.where(acc, llp, ll), np.where(acc, lpp, lp)
                steps["cw"][j] *= 1 + 0.4 * (acc.mean() - 0.4)
        return phi, ll

    def _saem(self, ev: _Evaluator, X, est, rng, n_chains, tick=None):
        n, P = ev.d.n, len(est)
        b = [np.zeros(x.shape[1]) for x in X]
        for i, p in enumerate(est):
            b[i][0] = math.log(float(self.init[p]))
        om = np.array([float(self.omega2_init.get(p, 1.0)) for p in est])
        state = _SaemState(b=b, omega2=om, sigma=float(self.sigma_init))
        XtX_inv = [np.linalg.pinv(x.T @ x) for x in X]
        mu = _mu(X, state.b)
        phi = mu + np.sqrt(om) * rng.standard_normal((n_chains, n, P))
        ll = ev.loglik(phi, state.sigma)
        steps = {"rw": 0.5, "cw": np.full(P, 0.5)}
        nobs = float(ev.nobs.sum())
        s1 = np.zeros((n, P))
        s2 = np.zeros(P)
        s3 = 0.0
        trace = []
        total = self.n_burn + self.n_smooth
        for it in range(total):
            gamma = 1.0 if it < self.n_burn else 1.0 / (it - self.n_burn + 1) ** self.step_exponent
            phi, ll = self._mcmc(ev, phi, ll, mu, state, steps, rng)
            logf = ev.logf(phi)
            y = ev.impute(logf, state.sigma, rng)
            ss = float(np.mean(np.sum(np.where(ev.d.mask, (y - logf) ** 2, 0.0), axis=(-1, -2))))
            s1 = s1 + gamma * (phi.mean(axis=0) - s1)
            s2 = s2 + gamma * (np.mean(np.sum(phi**2, axis=-2), axis=0) - s2)
            s3 = s3 + gamma * (ss - s3)
            new_b, new_om = [], np.zeros(P)
            for j in range(P):
                xs = X[j].T @ s1[:, j]
                bj = XtX_inv[j] @ xs
                new_b.append(bj)
                new_om[j] = (s2[j] - 2 * bj @ xs + bj @ (X[j].T @ X[j]) @ bj) / n
            new_om = np.maximum(new_om, 1e-8)
            new_sig2 = max(s3 / nobs, 1e-10)
            if self.anneal and it < self.n_burn:
                new_om = np.maximum(new_om, 0.95 * state.omega2)
                new_sig2 = max(new_sig2, 0.95**2 * state.sigma**2)
            state = _SaemState(b=new_b, omega2=new_om, sigma=math.sqrt(new_sig2))
            mu = _mu(X, state.b)
            ll = ev.loglik(phi, state.sigma)
            row = {"iteration": it + 1}
            for j, p in enumerate(est):
                row[p] = math.exp(state.b[j][0])
                row[f"omega2_{p}"] = float(state.omega2[j])
            row["sigma"] = state.sigma
            trace.append(row)
            if tick is not None:
                tick("SAEM burn-in" if it < self.n_burn else "SAEM smoothing", it + 1)
        return state, trace, phi, ll

    def _post(self, ev: _Evaluator, X, est, state: _SaemState, phi, ll, rng, tick=None, offset: int = 0):
        """MCMC at the estimate: conditional means/covariances, best draws, Louis' FIM."""
        n, P = ev.d.n, len(est)
        mu = _mu(X, state.b)
        om = state.omega2
        s2 = state.sigma**2
        dims = [x.shape[1] for x in X]
        Q = sum(dims) + P + 1
        offs = np.cumsum([0] + dims)
        steps = {"rw": 0.5, "cw": np.full(P, 0.5)}
        sum_phi = np.zeros((n, P))
        sum_pp = np.zeros((n, P, P))
        sum_g = np.zeros((n, Q))
        sum_gg = np.zeros((n, Q, Q))
        sum_H = np.zeros((Q, Q))
        best = phi[0].copy()
        best_lp = np.full(n, -np.inf)
        ni = ev.nobs.astype(float)
        count = 0
        for _ in range(10):  # warm-up at the final estimate (the chains start from the SAEM state)
            phi, ll = self._mcmc(ev, phi, ll, mu, state, steps, rng)
        for k in range(max(self.n_post, 1)):
            phi, ll = self._mcmc(ev, phi, ll, mu, state, steps, rng)
            if tick is not None:
                tick("standard errors", offset + k + 1)
            C = phi.shape[0]
            lpost = ll - 0.5 * np.sum((phi - mu) ** 2 / om, axis=-1)
            for c in range(C):
                better = lpost[c] > best_lp
                best[better] = phi[c][better]
                best_lp[better] = lpost[c][better]
            sum_phi += phi.sum(axis=0)
            sum_pp += np.einsum("cnp,cnq->npq", phi, phi)
            count += C
            if not self.compute_se:
                continue
            logf = ev.logf(phi)
            y = ev.impute(logf, state.sigma, rng)
            SS = np.sum(np.where(ev.d.mask, (y - logf) ** 2, 0.0), axis=-1)  # (C, N)
            g = np.zeros((C, n, Q))
            Hs = np.zeros((Q, Q))
            for j in range(P):
                r = phi[..., j] - mu[:, j]
                x = X[j]
                sl = slice(offs[j], offs[j + 1])
                g[..., sl] = x[None] * (r / om[j])[..., None]
                g[..., offs[-1] + j] = -0.5 / om[j] + 0.5 * r**2 / om[j] ** 2
                Hs[sl, sl] += -(x.T @ x) / om[j] * C
                hb = -(x * r.sum(axis=0)[:, None]).sum(axis=0) / om[j] ** 2
                Hs[sl, offs[-1] + j] += hb
                Hs[offs[-1] + j, sl] += hb
                Hs[offs[-1] + j, offs[-1] + j] += np.sum(0.5 / om[j] ** 2 - r**2 / om[j] ** 3)
            g[..., Q - 1] = -0.5 * ni / s2 + 0.5 * SS / s2**2
            Hs[Q - 1, Q - 1] += np.sum(0.5 * ni / s2**2 - SS / s2**3)
            sum_g += g.sum(axis=0)
            sum_gg += np.einsum("cnp,cnq->npq", g, g)
            sum_H += Hs
        cm = sum_phi / count
        ccov = sum_pp / count - np.einsum("np,nq->npq", cm, cm)
        out = {"cond_mean": cm, "cond_cov": ccov, "best": best, "phi": phi, "ll": ll}
        if self.compute_se:
            Eg = sum_g / count
            cov_g = sum_gg / count - np.einsum("np,nq->npq", Eg, Eg)
            info = -sum_H / count - cov_g.sum(axis=0)
            out["fim"] = info
            out["score"] = Eg.sum(axis=0)  # Fisher's identity: the observed-data score
        return out

    @staticmethod
    def _newton_step(state: _SaemState, delta: np.ndarray, dims: list[int]) -> _SaemState:
        """theta + delta on (b, omega2, sigma2), damped so that variances stay above 30% of theirs."""
        P = len(dims)
        offs = np.cumsum([0] + dims)
        om, s2 = state.omega2, state.sigma**2
        d_om, d_s2 = delta[offs[-1]: offs[-1] + P], delta[-1]
        scale = 1.0
        for cur, d in list(zip(om, d_om)) + [(s2, d_s2)]:
            if cur + d < 0.3 * cur:
                scale = min(scale, 0.7 * cur / -d)
        delta = delta * scale
        b = [state.b[j] + delta[offs[j]: offs[j + 1]] for j in range(P)]
        return _SaemState(b=b, omega2=om + delta[offs[-1]: offs[-1] + P], sigma=math.sqrt(s2 + delta[-1]))

    def _is_loglik(self, ev: _Evaluator, mu, state: _SaemState, post, rng, nu: float = 5.0):
        """Observed-data log-likelihood by importance sampling.

        Proposal: a defensive mixture (Hesterberg T. *Technometrics* 1995;37:185-194) of a
        multivariate t (nu = 5) on each subject's conditional mean with twice its conditional
        covariance (weight 0.9) and the population distribution N(mu_i, Omega) (weight 0.1), which
        bounds the weights. Returns (log-likelihood, Monte-Carlo SE)."""
        n, P = mu.shape
        m = post["cond_mean"]
        S = 2.0 * post["cond_cov"] + 1e-8 * np.eye(P)
        S = S + 1e-6 * np.eye(P) * np.maximum(np.trace(S, axis1=1, axis2=2) / P, 1e-6)[:, None, None]
        L = np.linalg.cholesky(S)
        logdetS = 2 * np.sum(np.log(np.diagonal(L, axis1=1, axis2=2)), axis=1)
        om = state.omega2
        sd = np.sqrt(om)
        lnorm = -0.5 * np.sum(np.log(2 * np.pi * om))
        c_t = special.gammaln((nu + P) / 2) - special.gammaln(nu / 2) - 0.5 * P * math.log(nu * math.pi)
        M = self.n_is
        bs = 50
        chunks = []
        for start in range(0, M, bs):
            k = min(bs, M - start)
            z = rng.standard_normal((k, n, P))
            w = rng.chisquare(nu, size=(k, n)) / nu
            from_t = np.einsum("npq,knq->knp", L, z) / np.sqrt(w)[..., None] + m
            from_prior = mu + sd * rng.standard_normal((k, n, P))
            phi = np.where((rng.uniform(size=(k, n)) < 0.9)[..., None], from_t, from_prior)
            llik = ev.loglik(phi, state.sigma)
            lprior = -0.5 * np.sum((phi - mu) ** 2 / om, axis=-1) + lnorm
            sol = np.linalg.solve(L[None], (phi - m)[..., None])[..., 0]
            lt = c_t - 0.5 * logdetS - 0.5 * (nu + P) * np.log1p(np.sum(sol**2, axis=-1) / nu)
            lq = np.logaddexp(math.log(0.9) + lt, math.log(0.1) + lprior)
            chunks.append(llik + lprior - lq)
        lw = np.concatenate(chunks, axis=0)
        lli = special.logsumexp(lw, axis=0) - math.log(M)
        wn = np.exp(lw - lli)  # weights / their mean
        se = math.sqrt(float(np.sum(np.var(wn, axis=0) / M)))
        return float(np.sum(lli)), se
