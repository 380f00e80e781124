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

__all__ = ["BASELINE_BLQ", "INTEGRATED", "MISSING_BASELINE", "blq_baseline", "drawn_baseline", "drawn_text"]

#: option ``baseline_blq``: a baseline value reported below its limit of quantification ("<1.5")
BASELINE_BLQ = ("half_lloq", "lloq", "missing")

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


def blq_baseline(study, subject_id: str, baseline, mode: str = "half_lloq"):
    """``baseline`` (:meth:`cartlab.twin.model.Baseline.from_study` of one subject) with each baseline value
    whose latest reading (on or before the first lymphodepletion day, else day 0, as ``from_study`` picks
    it) is censored below a limit ("<1.5 pg/mL": ``censor`` "<", ``censor_limit`` else ``lloq``) read by
    option ``baseline_blq`` (review 47 B6; cartlab convention, the usual LLOQ/2 substitution for a single
    value below the LLOQ): ``"half_lloq"`` (default) the limit / 2, ``"lloq"`` the limit, ``"missing"`` not
    read (as before session 47: an earlier quantified value, else the population default). CD7 on blasts
    (TGTBLAST) is never read from a bound. Returns (baseline, ``{field: {value, unit, censored, day,
    option}}`` of the values read from a bound)."""
    import dataclasses
    import math

    import polars as pl

    from cartlab.errors import InputError
    from cartlab.twin.model import _BASE_PARAMS, _BASE_UNITS, Events

    if mode not in BASELINE_BLQ:
        raise InputError(f"baseline_blq must be one of {', '.join(BASELINE_BLQ)}, not {mode!r}")
    if mode == "missing":
        return baseline, {}
    ld = Events.from_study(study, [subject_id]).ld_day[0]
    first_ld = float(np.nanmin(ld)) if np.isfinite(ld).any() else 0.0
    params = {p: f for f, p in _BASE_PARAMS.items() if f != "cd7_on_blasts_pct"}
    o = (study.observations.filter((pl.col("subject_id") == subject_id) & pl.col("param").is_in(list(params))
                                   & (pl.col("day") <= 0))
         .with_columns(_lim=pl.coalesce("censor_limit", "lloq"), _cens=(pl.col("censor") == "<").fill_null(False))
         .filter(pl.col("value").is_not_null() | (pl.col("_cens") & pl.col("_lim").is_not_null())))
    # the reading from_study takes: the last on or before the first lymphodepletion day, else the last by day 0
    o = o.with_columns(_pre=pl.col("day") <= first_ld).with_columns(_any_pre=pl.col("_pre").any().over("param"))
    last = (o.filter(pl.col("_pre") | ~pl.col("_any_pre")).sort("day", maintain_order=True)
            .group_by("param", maintain_order=True).last().filter(pl.col("value").is_null()))
    factor = 0.5 if mode == "half_lloq" else 1.0
    values, read = {}, {}
    for r in last.iter_rows(named=True):
        f = params[r["param"]]
        v = float(r["_lim"]) * factor
        if not math.isfinite(v):
            continue
        values[f] = np.array([v])
        read[f] = {"value": v, "unit": _BASE_UNITS[f], "censored": f"<{r['_lim']:g}", "day": float(r["day"]),
                   "option": f"baseline_blq {mode}"}
    return (dataclasses.replace(baseline, **values) if values else baseline), read


def blq_text(read: dict) -> str:
    """"il6 <1.5 pg/mL on day -1 read as 0.75 pg/mL (baseline_blq half_lloq)" for each value, joined by "; "."""
    return "; ".join(f"{f} {r['censored']} {r['unit']} on day {r['day']:g} read as {r['value']:g} {r['unit']} "
                     f"({r['option']})" for f, r in read.items())
