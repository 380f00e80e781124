"""Several SAEM starts of one population fit (``n_starts``): their seeds, the record of each start,
which one is kept, and the warnings when they disagree or the kept one is not a stationary point.

SAEM is a stochastic EM: from one seed it can stop at a local maximum of the likelihood with
ordinary-looking diagnostics (review 39: one seed in five on a 40-subject cohort). Monolix's
"convergence assessment" reruns the estimation from several seeds / initial values and compares the
log-likelihoods; ``n_starts`` does the same inside every fit and keeps the highest log-likelihood."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["N_STARTS_DEFAULT", "best_start", "start_record", "start_seeds", "starts_warnings"]

#: default number of independent SAEM runs of a population fit
N_STARTS_DEFAULT = 3


def start_seeds(seed: int, n_starts: int) -> list[int]:
    """The seed of each start: the first start uses ``seed`` itself (``n_starts=1`` is the single run
    of earlier versions); start k >= 1 uses the first 32-bit word of NumPy's
    ``SeedSequence([seed, k])`` (deterministic, and not the seed of another ``--seed``'s first start)."""
    if int(n_starts) < 1:
        raise ValueError(f"n_starts must be >= 1 (got {n_starts})")
    return [int(seed)] + [int(np.random.SeedSequence([int(seed), k]).generate_state(1)[0])
                          for k in range(1, int(n_starts))]


def start_record(k: int, seed: int, r: Any, n_parameters: int) -> dict[str, Any]:
    """What one start reached: seed, log-likelihood (and its Monte-Carlo SE), the score chi2 at its
    end point, whether its information matrix is positive definite, and ``converged``: information
    positive definite and score chi2 <= n_parameters (a stationary point within Monte-Carlo noise)."""
    pol = r.polish["score_chi2"].to_list()
    chi2 = pol[-1] if pol else None
    fim_ok = None
    if r.fim is not None:
        fim_ok = bool(np.all(np.isfinite(r.fim)) and np.linalg.eigvalsh(r.fim).min() > 0)
    conv = bool(fim_ok and chi2 is not None and math.isfinite(chi2) and chi2 <= n_parameters)
    rec: dict[str, Any] = {"start": k, "seed": int(seed), "loglik": r.loglik, "loglik_se": r.loglik_se,
                           "score_chi2": chi2, "fim_ok": fim_ok, "converged": conv}
    for j, p in enumerate(r.est):
        rec[p] = math.exp(float(r.state.b[j][0]))
        rec[f"omega2_{p}"] = float(r.state.omega2[j])
    rec["sigma"] = float(r.state.sigma)
    return rec


def best_start(records: Sequence[dict[str, Any]]) -> int:
    """Index of the start kept: the highest log-likelihood (the first start when none has one,
    i.e. ``compute_ll=False``; ties: the earliest)."""
    best, val = 0, -math.inf
    for i, rec in enumerate(records):
        ll = rec.get("loglik")
        if ll is not None and math.isfinite(ll) and ll > val:
            best, val = i, ll
    return best


def starts_warnings(records: Sequence[dict[str, Any]], kept: int, n_parameters: int) -> list[str]:
    """Warnings of a multi-start fit.

    * the starts disagree: the best and the worst log-likelihood differ by more than 2 x the
      Monte-Carlo SE of that difference (sqrt(se_best^2 + se_worst^2)), or by more than 1 when an
      SE is missing -- some start stopped at a local maximum or has not converged;
    * the kept start's score chi2 (score' I^-1 score at its end point) exceeds ``n_parameters``: at
      a stationary point it is Monte-Carlo noise, << n_parameters."""
    out = []
    lls = [(i, r) for i, r in enumerate(records) if r.get("loglik") is not None and math.isfinite(r["loglik"])]
    if len(lls) >= 2:
        hi = max(lls, key=lambda x: x[1]["loglik"])[1]
        lo = min(lls, key=lambda x: x[1]["loglik"])[1]
        diff = hi["loglik"] - lo["loglik"]
        ses = (hi.get("loglik_se"), lo.get("loglik_se"))
        if all(s is not None and math.isfinite(s) for s in ses):
            lim = 2 * math.sqrt(ses[0] ** 2 + ses[1] ** 2)
            rule = "2 x the Monte-Carlo SE of the difference"
        else:
            lim, rule = 1.0, "1 (no Monte-Carlo SE)"
        if diff > lim:
            out.append(f"SAEM starts disagree: the best start (seed {hi['seed']}) reached log-likelihood "
                       f"{hi['loglik']:.2f}, the worst (seed {lo['seed']}) {lo['loglik']:.2f}; the difference "
                       f"{diff:.3g} exceeds {lim:.3g} ({rule}): local maxima or non-convergence. The best start is "
                       "kept; its SEs do not include the between-start spread (stein_fit.json, starts)")
    chi2 = records[kept].get("score_chi2") if records else None
    if chi2 is not None and math.isfinite(chi2) and chi2 > n_parameters:
        out.append(f"score chi2 {chi2:.3g} > {n_parameters} (the number of estimated parameters) at the kept "
                   f"estimate (seed {records[kept]['seed']}): it is not a stationary point of the likelihood "
                   "(SAEM has not converged); increase n_burn / n_smooth or n_starts")
    return out
