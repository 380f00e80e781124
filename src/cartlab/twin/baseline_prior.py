"""A missing baseline in a forecast: drawn from the population prior, not a fixed default (review 40 B2).

Standard: missing is not negative, an absent input gives a range naming it. The fit starts the twin from
the parameter table's ``baseline_defaults`` where the subject's data lack a value (recorded in
``baseline_defaults_used_``); before this module the forecast simulated every posterior draw from that one
value, so withholding the marrow made the 90% interval NARROWER (a known 36% instead of an unknown one).

Option ``missing_baseline`` (:class:`cartlab.twin.fit.TwinModel`, ``cartlab twin forecast
--missing-baseline``):

* ``"integrate"`` (default): each forecast draw gets its own value of every missing baseline in
  :data:`INTEGRATED` (the weight, the marrow blasts), drawn from the distribution the virtual
  population uses (``params/cd7_pop_v1.yaml`` covariates, :func:`cartlab.twin.population.draw`:
  weight log-normal median 62 kg, SD 0.2, 35-120 kg; marrow blasts logit-normal median 36%, SD 1.2,
  2-87%), so the interval carries that spread. The fit itself (MAP, posterior of the parameters) is
  still the fit at the table's default; the forecast stays flagged ``baseline_default``.
* ``"default"``: the earlier behaviour, every draw at the table's default value.
"""

from __future__ import annotations

import contextlib

import numpy as np

__all__ = ["INTEGRATED", "MISSING_BASELINE", "drawn_baseline", "drawn_text"]

#: the values of the model's Baseline drawn from the population prior when missing
INTEGRATED = ("weight_kg", "bm_blast_pct")
MISSING_BASELINE = ("integrate", "default")
_STREAM = 40  # spawn key of the baseline draws (seeded by the model's seed)


def _prior_rows(population: str = "cd7_pop_v1") -> dict[str, dict]:
    from cartlab.twin.population import load_population

    cov = load_population(population).spec["covariates"]
    out = {}
    for f in INTEGRATED:
        c = dict(cov[f])
        kind = "log-normal" if "sd_log" in c else "logit-normal"
        sd = c.get("sd_log", c.get("sd_logit"))
        out[f] = {"distribution": kind, "median": float(c["median"]), "sd": float(sd), "lower": float(c["lower"]),
                  "upper": float(c["upper"]), "status": str(c.get("status", "")),
                  "citation": str(c.get("citation", "")), "source": f"{population}.yaml covariates.{f}"}
    return out


def _draw(f: str, row: dict, z: np.ndarray) -> np.ndarray:
    """The population's own transforms (:func:`cartlab.twin.population._clipped_lognormal` / ``_logit``)."""
    from cartlab.twin.population import _clipped_logit, _clipped_lognormal

    c = {"median": row["median"], "lower": row["lower"], "upper": row["upper"]}
    if row["distribution"] == "log-normal":
        return _clipped_lognormal({**c, "sd_log": row["sd"]}, z)
    return _clipped_logit({**c, "sd_logit": row["sd"]}, z)


@contextlib.contextmanager
def drawn_baseline(model, n: int, mode: str = "integrate"):
    """While active, the fitted objective of ``model`` simulates ``n`` draws each with its own baseline:
    the missing :data:`INTEGRATED` values drawn from the population prior (``mode="integrate"``).
    Yields ``{name: distribution row + drawn quantiles}`` (empty: nothing drawn)."""
    if mode not in MISSING_BASELINE:
        from cartlab.errors import InputError

        raise InputError(f"missing_baseline must be one of {', '.join(MISSING_BASELINE)}, not {mode!r}")
    ob = model._objective
    missing = [f for f in INTEGRATED if f in getattr(model, "baseline_defaults_used_", {})]
    if mode == "default" or not missing or n < 1:
        yield {}
        return
    rng = np.random.default_rng(np.random.SeedSequence(int(model.seed), spawn_key=(_STREAM,)))
    rows = _prior_rows()
    base = ob.baseline.take(np.zeros(n, dtype=int))
    drawn, values = {}, {}
    for f in missing:
        v = _draw(f, rows[f], rng.standard_normal(n))
        values[f] = v
        drawn[f] = {**rows[f], "n_draws": int(n), "drawn_p05": float(np.quantile(v, 0.05)),
                    "drawn_p95": float(np.quantile(v, 0.95))}
    import dataclasses

    ob.draw_baseline = dataclasses.replace(base, **values)
    try:
        yield drawn
    finally:
        ob.draw_baseline = None


_LABEL = {"weight_kg": "weight", "bm_blast_pct": "marrow blasts"}
_UNIT = {"weight_kg": " kg", "bm_blast_pct": "%"}


def drawn_text(drawn: dict) -> str:
    """"marrow blasts (bm_blast_pct) not measured: drawn from the population prior (logit-normal, median 36%,
    2-87%, cd7_pop_v1.yaml covariates.bm_blast_pct)" for each drawn input, joined by "; "."""
    return "; ".join(f"{_LABEL.get(f, f)} ({f}) not measured: drawn from the population prior ({r['distribution']}, "
                     f"median {r['median']:g}{_UNIT.get(f, '')}, {r['lower']:g}-{r['upper']:g}{_UNIT.get(f, '')}, "
                     f"{r['source']})" for f, r in drawn.items())
