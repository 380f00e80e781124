"""Simulated (digital-twin) patients as canonical study tables and study folders.

The noise-free observables come from :func:`cartlab.twin.model.latent_observables` (through
``SimResult.latent``; no state -> observable formula is repeated here). This module adds what a
clinic's records add: the sampling schedule, measurement noise, LLOQ / LOD censoring
(``criteria/schedule_v1.yaml``, design §2.1-2.2), the clinic log as ``interventions`` rows, relapse
and allo-HSCT ``events``, and writes the five tables as a study folder (format v1,
``../shared/spec/study-format.md``) with every row ``source = simulated`` and a ``source_note``
naming the model version, the seed and the global patient index.

Randomness: one counter-based stream per (seed, global patient index, purpose), so a patient's
draws never depend on chunking or on the number of workers (:func:`patient_rng`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import polars as pl

from cartlab._yaml import load_yaml
from cartlab.errors import InputError

SOURCE = "simulated"
MODEL_VERSION = "cartlab.twin v1"
#: purposes of the per-patient random streams (spawn_key = (patient index, purpose))
STREAM_PARAMS, STREAM_COVARIATES, STREAM_NOISE = 0, 1, 2
#: the between-method error of a binomial row (MRDFCM, review 40 A1): its own stream, so the other rows'
#: noise is that of earlier versions
STREAM_METHOD = 3
#: clinic arrays -> interventions rows: category, agent, dose, dose unit, one row per day (True) or per run
CLINIC_ROWS = {
    "antipyretic": ("antipyretic", "acetaminophen", 500.0, "mg", False),
    "vasopressor": ("vasopressor", "norepinephrine", 0.08, "ug/kg/min", False),
    "tocilizumab": ("tocilizumab", "tocilizumab", 8.0, "mg/kg", True),
    "steroid": ("corticosteroid", "dexamethasone", 10.0, "mg", False),
    "platelet_transfusion": ("platelet_transfusion", "platelets", 1.0, "units", True),
}
_SPECIMEN = {"BMBLAST": "BM", "MRDFCM": "BM", "TGTBLAST": "BM", "CARCOPY": "PB", "CD7T": "PB",
             "CD7NK": "PB", "CD7NEGT": "PB"}


def patient_rng(seed: int, index: int, purpose: int) -> np.random.Generator:
    """The random stream of global patient ``index`` for ``purpose`` (independent of chunking)."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(index), int(purpose))))


def subject_ids(index: np.ndarray) -> list[str]:
    """Subject ids of global patient indices: ``SIM-0000042``."""
    return [f"SIM-{int(i):07d}" for i in index]


def _expand_times(spec) -> np.ndarray:
    out: list[float] = []
    for item in spec:
        if isinstance(item, (list, tuple)):
            a, b, step = (float(x) for x in item)
            out.extend(np.round(np.arange(a, b + step / 2, step), 6).tolist())
        else:
            out.append(float(item))
    return np.unique(np.asarray(out, float))


@dataclass(frozen=True)
class Schedule:
    """A sampling schedule: per canonical param its sampling days, noise model and limits."""

    version: str
    first_day: float
    follow_up_days: float
    times: dict[str, np.ndarray]
    noise: dict[str, dict]
    relapse_bm_blast_pct: float
    cd7_negative_below_pct: float

    def t_out(self) -> np.ndarray:
        """Every sampling day of every param (the solver's output grid)."""
        return np.unique(np.concatenate(list(self.times.values())))

    def shortened(self, last_day: float) -> Schedule:
        """The same schedule cut at ``last_day`` (short courses for tests and quick runs)."""
        times = {p: t[t <= last_day] for p, t in self.times.items()}
        return Schedule(self.version, self.first_day, min(self.follow_up_days, last_day),
                        {p: t for p, t in times.items() if t.size}, self.noise, self.relapse_bm_blast_pct,
                        self.cd7_negative_below_pct)


@lru_cache(maxsize=4)
def load_schedule(name: str = "schedule_v1") -> Schedule:
    """The shipped schedule ``criteria/<name>.yaml``."""
    path = resources.files("cartlab.twin").joinpath("criteria", f"{name}.yaml")
    if not path.is_file():
        raise InputError(f"no twin schedule {name!r}")
    raw = load_yaml(path.read_text(encoding="utf-8"))
    times: dict[str, np.ndarray] = {}
    for g in raw["groups"].values():
        t = _expand_times(g["times"])
        for p in g["params"]:
            times[p] = t
    missing = set(times) - set(raw["noise"])
    if missing:
        raise InputError(f"schedule {name}: no noise model for {sorted(missing)}")
    return Schedule(str(raw["version"]), float(raw["first_day"]), float(raw["follow_up_days"]), times,
                    raw["noise"], float(raw["relapse"]["bm_blast_pct"]),
                    float(raw["relapse"]["cd7_negative_below_pct"]))


@dataclass
class Observed:
    """A chunk of simulated patients as they would be recorded (arrays, not yet rows).

    ``values[p]`` is (n, len(times[p])) in the canonical unit, NaN = not sampled (after follow-up,
    or no value); ``censored[p]`` marks results below the LLOQ (value = NaN, limit ``lloq[p]``).
    """

    index: np.ndarray                 # (n,) global patient indices
    seed: int
    times: dict[str, np.ndarray]
    values: dict[str, np.ndarray]
    censored: dict[str, np.ndarray]
    lloq: dict[str, float]
    clinic: dict[str, np.ndarray]     # (n, D) bool, already cut at follow-up
    clinic_days: np.ndarray
    last_day: np.ndarray              # (n,) last_followup_day
    hsct_day: np.ndarray              # (n,) NaN = none
    relapse_day: np.ndarray           # (n,) NaN = none
    relapse_cd7_pct: np.ndarray       # (n,) CD7 on blasts at relapse (NaN when not measured)
    relapse_cd7_negative: np.ndarray  # (n,) bool
    covariates: dict[str, np.ndarray] = field(default_factory=dict)   # sex, age_years, weight_kg, height_cm
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)   # param -> (lln, uln)
    relapse_by_pb: np.ndarray | None = None   # (n,) bool: relapse dated by circulating blasts (no marrow >= 5% first)
    relapse_cd7_day: np.ndarray | None = None  # (n,) day of the CD7 result read at relapse (NaN: none in the window)

    @property
    def n(self) -> int:
        return int(self.index.size)


def _noisy(p: str, latent: np.ndarray, z: np.ndarray, spec: dict,
           z_method: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(value, censored) from noise-free ``latent`` and standard normals ``z`` of the same shape;
    ``z_method`` (same shape) the between-method error of a binomial spec with ``between_method_log_sd``
    (:mod:`cartlab.twin.mrd_obs`)."""
    kind = spec["kind"]
    if kind == "lognormal":
        v = latent * np.exp(spec["sd"] * z)
    elif kind == "normal":
        v = latent + spec["sd"] * z
    elif kind == "const":
        v = np.full_like(z, spec["value"]) + spec.get("sd", 0.0) * z
        v = np.clip(v, spec.get("lower", -np.inf), spec.get("upper", np.inf))
    elif kind == "binomial":   # normal approximation to counting `cells` cells [A]
        frac = latent if p == "MRDFCM" else latent / 100.0
        if spec.get("between_method_log_sd") is not None and z_method is not None:
            frac = frac * np.exp(float(spec["between_method_log_sd"]) * z_method)
        frac = np.clip(frac, 0.0, 1.0)
        cells = float(spec["cells"])
        k = np.clip(np.round(cells * frac + np.sqrt(cells * frac * (1 - frac)) * z), 0, cells) + 0.0  # no -0.0
        v = k / cells if p == "MRDFCM" else 100.0 * k / cells
    else:
        raise InputError(f"unknown noise kind {kind!r} for {p}")
    if "decimals" in spec:
        v = np.round(v, int(spec["decimals"]))
    v = np.where(np.isfinite(latent), v, np.nan)
    lloq = spec.get("lloq")
    cens = np.zeros(v.shape, bool) if lloq is None else np.isfinite(v) & (v < float(lloq))
    return np.where(cens, np.nan, v), cens


def observe(sim, index: np.ndarray, seed: int, schedule: Schedule, *, hsct_day: np.ndarray | None = None,
            covariates: dict[str, np.ndarray] | None = None) -> Observed:
    """Sample, add noise and censor ``sim`` (a ``SimResult`` whose ``t`` holds ``schedule.t_out()``).

    ``index`` are the patients' global indices (their random streams); ``hsct_day`` ends follow-up.
    TGTBLAST on or before day 0 reports ``covariates["cd7_on_blasts_pct"]`` where known
    (:func:`_screening_cd7`); relapse CD7 status stays model-based.
    """
    index = np.asarray(index, np.int64)
    n = index.size
    hsct = np.full(n, np.nan) if hsct_day is None else np.asarray(hsct_day, float)
    last = np.where(np.isfinite(hsct), np.minimum(hsct, schedule.follow_up_days), schedule.follow_up_days)
    params = [p for p in schedule.times if p in schedule.noise]
    cols: dict[str, np.ndarray] = {}
    for p in params:
        pos = np.searchsorted(sim.t, schedule.times[p])
        pos = np.clip(pos, 0, sim.t.size - 1)
        if not np.allclose(sim.t[pos], schedule.times[p]):
            raise InputError(f"SimResult.t lacks sampling days of {p}; simulate with t_out=schedule.t_out()")
        cols[p] = pos
    sizes = [schedule.times[p].size for p in params]
    z = np.empty((n, int(sum(sizes))))
    for r, i in enumerate(index):
        z[r] = patient_rng(seed, i, STREAM_NOISE).standard_normal(z.shape[1])
    offs = np.concatenate([[0], np.cumsum(sizes)])
    values, censored, lloq = {}, {}, {}
    for k, p in enumerate(params):
        spec = schedule.noise[p]
        zp = z[:, offs[k]:offs[k + 1]]
        if spec["kind"] == "const":
            latent = np.zeros((n, sizes[k]))
        else:
            if p not in sim.latent:
                raise InputError(f"the model gives no latent {p}")
            latent = np.asarray(sim.latent[p], float)[:, cols[p]]
            if p == "TGTBLAST":
                latent = _screening_cd7(latent, schedule.times[p], covariates)
        zm = None
        if spec.get("between_method_log_sd") is not None:
            zm = np.stack([patient_rng(seed, i, STREAM_METHOD).standard_normal(sizes[k]) for i in index]) \
                if n else np.empty((0, sizes[k]))
        v, c = _noisy(p, latent, zp, spec, zm)
        if spec.get("sum_of"):   # WBC = its differential + the other white cells (review 38 B4)
            v = _count_with_differential(p, spec, latent, zp, values, schedule, sim, cols)
        after = schedule.times[p][None, :] > last[:, None]
        v[after] = np.nan
        c[after] = False
        values[p], censored[p] = v, c
        if spec.get("lloq") is not None:
            lloq[p] = float(spec["lloq"])
    if "TGTBLAST" in values and "BMBLAST" in values:   # CD7 on blasts only where blasts were counted
        no_blasts = ~(values["BMBLAST"] > 0)
        values["TGTBLAST"] = np.where(no_blasts, np.nan, values["TGTBLAST"])
    days = np.asarray(sim.clinic_days, float)
    clinic = {k: np.asarray(v, bool) & (days[None, :] <= last[:, None]) for k, v in sim.clinic.items()}
    ranges = {p: (schedule.noise[p].get("lln"), schedule.noise[p].get("uln")) for p in params
              if schedule.noise[p].get("lln") is not None or schedule.noise[p].get("uln") is not None}
    nan = np.full(n, np.nan)
    obs = Observed(index, int(seed), {p: schedule.times[p] for p in params}, values, censored, lloq, clinic,
                   days, last, np.where(hsct <= last, hsct, np.nan), nan, nan.copy(), np.zeros(n, bool),
                   dict(covariates or {}), ranges, np.zeros(n, bool))
    if "BMBLAST" in values:
        from cartlab.twin.summaries import eln_marrow_categories, first_response_day

        marrows = eln_marrow_categories(obs)
        start = first_response_day(obs, marrows)
        pb = (schedule.times["PBBLAST"], values["PBBLAST"]) if "PBBLAST" in values else None
        rday, _, by_pb = _relapse(values, schedule, start, pb)
        rcd7, cd7_day = relapse_cd7(values, schedule, rday, obs.hsct_day, marrows)   # the engine's window
        obs.relapse_day, obs.relapse_cd7_pct, obs.relapse_by_pb, obs.relapse_cd7_day = rday, rcd7, by_pb, cd7_day
        cut, inclusive = cd7_cutoff(schedule)
        with np.errstate(invalid="ignore"):
            below = (rcd7 <= cut) if not inclusive else (rcd7 < cut)
        obs.relapse_cd7_negative = np.isfinite(rcd7) & below & np.isfinite(rday)
    return obs


def cd7_cutoff(schedule: Schedule) -> tuple[float, bool]:
    """(cut-off, positive_inclusive) of "CD7-negative at relapse": the response engine's
    ``molecular.antigen_negative_below_pct`` and ``antigen_positive_inclusive`` (default 30, False: CD7 on
    at most 30% of blasts is not positive, NCT04762485 "CD7 >30% of blasts"), as ``cartlab analyze``'s
    relapse_antigen.csv reads it (review 47 B4). The schedule's ``cd7_negative_below_pct`` must agree."""
    from cartlab.response.molecular import MolecularOptions

    mo = MolecularOptions()
    cut = float(mo.antigen_negative_below_pct)
    if schedule.cd7_negative_below_pct != cut:
        raise InputError(f"twin schedule {schedule.version}: relapse.cd7_negative_below_pct "
                         f"{schedule.cd7_negative_below_pct:g} differs from the response engine's "
                         f"molecular.antigen_negative_below_pct {cut:g}; the simulated and analysed CD7 status "
                         "at relapse must use one cut-off")
    return cut, bool(mo.antigen_positive_inclusive)


def relapse_cd7(values: dict[str, np.ndarray], schedule: Schedule, relapse_day: np.ndarray, hsct_day: np.ndarray,
                marrows) -> tuple[np.ndarray, np.ndarray]:
    """CD7 % of blasts at relapse and its day (NaN, NaN: not measured), by the rule of
    ``cartlab.response.molecular.derive_relapse_antigen``: the first TGTBLAST result (the twin's are all
    marrow) on a calendar day from the relapse's to ``antigen_forward_days`` after it (option of
    ``ResponseOptions``, default 7), the search stopping the day before an allo-HSCT after the relapse's
    day and the day before the next response (a marrow in a ``relapse_after`` category; ``marrows``:
    :func:`cartlab.twin.summaries.eln_marrow_categories`, None = not known). A later result is
    not the relapse's phenotype: the status is unknown, never negative (review 47 B3/B4; before, the first
    later marrow with >= 5% blasts was used, however late)."""
    from cartlab.response.marrow_options import ResponseOptions
    from cartlab.twin.summaries import CATEGORIES, relapse_rule

    n = np.asarray(relapse_day).size
    tgt = values.get("TGTBLAST")
    if tgt is None or "TGTBLAST" not in schedule.times:
        return np.full(n, np.nan), np.full(n, np.nan)
    fwd = float(ResponseOptions().antigen_forward_days)
    day0 = np.floor(np.asarray(relapse_day, float))
    stop = day0 + fwd
    hs = np.floor(np.asarray(hsct_day, float))
    with np.errstate(invalid="ignore"):
        stop = np.where(hs > day0, np.minimum(stop, hs - 1.0), stop)
        if marrows is not None:
            days, cats, counted = marrows
            after = [CATEGORIES.index(c) for c in relapse_rule()["after_categories"] if c in CATEGORIES]
            nxt = counted & np.isin(cats, after) & (np.floor(days)[None, :] > day0[:, None])
            nday = np.where(nxt.any(axis=1), np.floor(days)[np.argmax(nxt, axis=1)] if days.size else np.nan, np.nan)
            stop = np.where(nday <= stop, nday - 1.0, stop)
        td = np.floor(schedule.times["TGTBLAST"])[None, :]
        ok = np.isfinite(tgt) & (td >= day0[:, None]) & (td <= stop[:, None])
    first = np.argmax(ok, axis=1)
    has = ok.any(axis=1) & np.isfinite(day0)
    rows = np.arange(n)
    return (np.where(has, tgt[rows, first], np.nan),
            np.where(has, schedule.times["TGTBLAST"][first] if ok.shape[1] else np.nan, np.nan))


def _count_with_differential(p: str, spec: dict, latent: np.ndarray, z: np.ndarray, values: dict, schedule,
                             sim, cols: dict) -> np.ndarray:
    """A total count (WBC) observed as the sum of its already observed parts (``spec["sum_of"]``, e.g.
    NEUT and LYM, each with its own noise) plus the noise-free remainder (latent total - latent parts,
    at least 0: monocytes, blasts, other white cells) with the total's own noise model applied to that
    remainder, so total >= sum of the parts on every sample, as in a real CBC whose differential is a share
    of the same count. The parts must be observed on the same days and come before the total in the
    schedule's noise table."""
    parts = list(spec["sum_of"])
    for q in parts:
        if q not in values or not np.array_equal(schedule.times[q], schedule.times[p]):
            raise InputError(f"schedule {schedule.version}: {p} sum_of {q}: {q} must be observed before {p} and on "
                             f"the same days")
    rest = latent.copy()
    total = np.zeros_like(latent)
    for q in parts:
        rest = rest - np.asarray(sim.latent[q], float)[:, cols[q]]
        total = total + values[q]
    other, _ = _noisy(p, np.maximum(rest, 0.0), z, {k: v for k, v in spec.items() if k not in ("lloq", "decimals")})
    v = total + other
    if "decimals" in spec:   # rounded up: the total never falls below its parts
        f = 10.0 ** int(spec["decimals"])
        v = np.ceil(v * f) / f
    return np.where(np.isfinite(latent), v, np.nan)


def _screening_cd7(latent: np.ndarray, t: np.ndarray, covariates: dict[str, np.ndarray] | None) -> np.ndarray:
    """TGTBLAST (CD7 % of blasts) to report: on or before day 0 the baseline flow covariate
    ``cd7_on_blasts_pct`` where it is known (the screening flow the patient was drawn with), else and
    after infusion the model's CD7+ share of the blasts. The model starts with only
    min(phi0, 1 - TGTBLAST/100) CAR-resistant blasts (flow's CD7-negative gate also holds CD7-dim,
    killable blasts), so its own CD7+ share before infusion is ~99.9%, not what flow measured."""
    cd7 = None if covariates is None else covariates.get("cd7_on_blasts_pct")
    if cd7 is None:
        return latent
    cd7 = np.broadcast_to(np.asarray(cd7, float), (latent.shape[0],))
    pre = np.asarray(t, float)[None, :] <= 0.0
    use = pre & np.isfinite(cd7)[:, None] & np.isfinite(latent)
    return np.where(use, cd7[:, None], latent)


def _relapse(values: dict[str, np.ndarray], schedule: Schedule, start_day: np.ndarray,
             pb: tuple[np.ndarray, np.ndarray] | None = None, hsct_day: np.ndarray | None = None,
             marrows=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Relapse as ``cartlab.response.marrow.derive_relapse`` finds it (ELN 2022 Table 7, the criteria
    table's ``relapse:`` rules): only after a response (``start_day``: the first marrow in one of the
    table's ``relapse_after`` categories, default CR, CRh, CRi; NaN = never, no relapse), the first later scheduled marrow with blasts >= 5%, or
    the second of two samples with circulating blasts (PBBLAST > 0) at least 7 days apart after the
    response (``pb``: (days, values)), whichever comes first. Returns (relapse day, CD7 % of blasts at
    relapse by :func:`relapse_cd7` (the engine's window; ``hsct_day`` / ``marrows`` stop it, when given),
    dated by circulating blasts)."""
    from cartlab.twin.summaries import relapse_rule

    rule = relapse_rule()
    bm = values.get("BMBLAST")
    start = np.asarray(start_day, float)
    n = start.size
    t = schedule.times["BMBLAST"]
    with np.errstate(invalid="ignore"):
        hit = (t[None, :] > start[:, None]) & (bm >= rule["bm_blast_pct"])   # NaN start: never
    day = np.where(hit.any(axis=1), t[np.argmax(hit, axis=1)], np.nan)
    by_pb = np.zeros(n, bool)
    if pb is not None:
        tp, v = np.asarray(pb[0], float), np.asarray(pb[1], float)
        with np.errstate(invalid="ignore"):
            pos = (tp[None, :] > start[:, None]) & (v > 0)
        cum = np.cumsum(pos, axis=1)
        need, gap = rule["pb_blast_samples"], rule["pb_blast_min_days_apart"]
        hit_pb = np.zeros_like(pos)
        for j in range(tp.size):
            i = int(np.searchsorted(tp, tp[j] - gap, side="right")) - 1   # samples at least `gap` days earlier
            earlier = cum[:, i] if i >= 0 else np.zeros(n, np.int64)
            hit_pb[:, j] = pos[:, j] & (earlier + 1 >= need)
        pday = np.where(hit_pb.any(axis=1), tp[np.argmax(hit_pb, axis=1)], np.nan)
        by_pb = np.isfinite(pday) & ~(pday >= day)
        day = np.where(by_pb, pday, day)
    hs = np.full(n, np.nan) if hsct_day is None else np.asarray(hsct_day, float)
    return day, relapse_cd7(values, schedule, day, hs, marrows)[0], by_pb


# ---------------------------------------------------------------------------------------------
# rows


def _note(obs: Observed) -> pl.Series:
    return pl.Series([f"{MODEL_VERSION}, seed {obs.seed}, patient {int(i)}" for i in obs.index], dtype=pl.String)


def _units() -> dict[str, str]:
    from cartlab.io.dictionary import load_dictionary

    d = load_dictionary()
    return {p: d[p].unit for p in d.codes()}


def observation_rows(obs: Observed) -> pl.DataFrame:
    """The ``observations`` table (format v1 columns) of a chunk; censored results as ``<LLOQ``."""
    units = _units()
    ids = pl.Series(subject_ids(obs.index), dtype=pl.String)
    notes = _note(obs)
    parts = []
    for p, t in obs.times.items():
        v, c = obs.values[p], obs.censored[p]
        s, j = np.nonzero(np.isfinite(v) | c)
        lq = obs.lloq.get(p)
        text = [None] * s.size
        if lq is not None:
            text = [f"<{lq:g}" if x else None for x in c[s, j].tolist()]
        lln, uln = obs.ranges.get(p, (None, None))
        parts.append(pl.DataFrame({
            "s": s.astype(np.int64), "day": t[j], "param": [p] * s.size,
            "analyte": ["CD7" if p == "TGTBLAST" else None] * s.size,
            "value": _sig12(np.where(c[s, j], np.nan, v[s, j])),
            "value_text": pl.Series(text, dtype=pl.String),
            "unit": [units[p]] * s.size,
            "lln": np.full(s.size, np.nan if lln is None else float(lln)),
            "uln": np.full(s.size, np.nan if uln is None else float(uln)),
            "lloq": np.full(s.size, np.nan if lq is None else lq),
            "specimen": pl.Series([_SPECIMEN.get(p)] * s.size, dtype=pl.String),
        }, schema_overrides={"analyte": pl.String}))
    df = pl.concat(parts).sort(["s", "day", "param"])
    return df.select(ids.gather(df["s"]).alias("subject_id"), "day", "param", "analyte",
                     pl.col("value").fill_nan(None), "value_text", "unit", pl.col("lln").fill_nan(None),
                     pl.col("uln").fill_nan(None), pl.col("lloq").fill_nan(None),
                     "specimen", pl.lit(SOURCE).alias("source"), notes.gather(df["s"]).alias("source_note"))


def _sig12(v: np.ndarray) -> np.ndarray:
    """Values rounded to 12 significant digits (as cartlab's readers round converted values): the
    last-bit differences of the floating-point arithmetic (one arm or several in a chunk) do not
    reach the written study."""
    v = np.asarray(v, float)
    return np.array([float(f"{x:.12g}") if np.isfinite(x) else x for x in v.tolist()], float) if v.size else v


def _runs(mask: np.ndarray, days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, first day, last day) of each run of consecutive True days."""
    m = np.pad(mask.astype(np.int8), ((0, 0), (1, 1)))
    d = np.diff(m, axis=1)
    r0, a = np.nonzero(d == 1)
    _r1, b = np.nonzero(d == -1)
    return r0, days[a], days[b - 1]


def intervention_rows(obs: Observed) -> pl.DataFrame:
    """The clinic log as ``interventions`` rows (indication CRS; transfusions none)."""
    ids = pl.Series(subject_ids(obs.index), dtype=pl.String)
    notes = _note(obs)
    parts = []
    for key, (cat, agent, dose, unit, per_day) in CLINIC_ROWS.items():
        mask = obs.clinic.get(key)
        if mask is None:
            continue
        if per_day:
            s, j = np.nonzero(mask)
            a, b = obs.clinic_days[j], np.full(s.size, np.nan)
        else:
            s, a, b = _runs(mask, obs.clinic_days)
        parts.append(pl.DataFrame({
            "s": s.astype(np.int64), "start_day": a.astype(float), "end_day": b.astype(float),
            "category": [cat] * s.size, "agent": [agent] * s.size, "dose": np.full(s.size, dose),
            "dose_unit": [unit] * s.size,
            "indication": pl.Series([None if cat == "platelet_transfusion" else "CRS"] * s.size, dtype=pl.String),
        }))
    schema = {"s": pl.Int64, "start_day": pl.Float64, "end_day": pl.Float64, "category": pl.String,
              "agent": pl.String, "dose": pl.Float64, "dose_unit": pl.String, "indication": pl.String}
    df = pl.concat([p.cast(schema) for p in parts]) if parts else pl.DataFrame(schema=schema)
    df = df.sort(["s", "start_day", "category"])
    return df.select(ids.gather(df["s"]).alias("subject_id"), "start_day", pl.col("end_day").fill_nan(None),
                     "category", "agent", "dose", "dose_unit", "indication", pl.lit(SOURCE).alias("source"),
                     notes.gather(df["s"]).alias("source_note"))


def _relapse_detail(cd7: float, negative: bool, by_pb: bool, cd7_day: float = np.nan) -> str:
    status = "CD7-negative" if negative else "CD7-positive" if np.isfinite(cd7) else "CD7 status unknown"
    where = (f"CD7 on {cd7:g}% of blasts" + (f" in the marrow of day {cd7_day:g}" if np.isfinite(cd7_day) else "")
             if np.isfinite(cd7) else "no CD7 result within the relapse's window")
    if not by_pb:
        return f"{status} marrow relapse ({where})"
    return f"{status} relapse (circulating blasts in 2 samples at least 7 days apart; {where})"


def event_rows(obs: Observed) -> pl.DataFrame:
    """Relapse (CD7 status in ``detail``) and allo-HSCT ``events`` rows (no death model in v1)."""
    ids = pl.Series(subject_ids(obs.index), dtype=pl.String)
    notes = _note(obs)
    rs = np.nonzero(np.isfinite(obs.relapse_day))[0]
    cd7 = obs.relapse_cd7_pct[rs]
    by_pb = np.zeros(obs.n, bool) if obs.relapse_by_pb is None else np.asarray(obs.relapse_by_pb, bool)
    cday = np.full(obs.n, np.nan) if obs.relapse_cd7_day is None else np.asarray(obs.relapse_cd7_day, float)
    detail = [_relapse_detail(c, neg, pbr, d) for c, neg, pbr, d in
              zip(cd7, obs.relapse_cd7_negative[rs], by_pb[rs], cday[rs])]
    hs = np.nonzero(np.isfinite(obs.hsct_day))[0]
    df = pl.DataFrame({
        "s": np.concatenate([rs, hs]).astype(np.int64),
        "day": np.concatenate([obs.relapse_day[rs], obs.hsct_day[hs]]),
        "event": ["relapse"] * rs.size + ["allo_hsct"] * hs.size,
        "detail": detail + ["consolidative allogeneic HSCT (ends simulated follow-up)"] * hs.size,
    }, schema_overrides={"event": pl.String, "detail": pl.String}).sort(["s", "day"])
    return df.select(ids.gather(df["s"]).alias("subject_id"), "day", "event", "detail",
                     pl.lit(None, dtype=pl.String).alias("attribution"), pl.lit(SOURCE).alias("source"),
                     notes.gather(df["s"]).alias("source_note"))


def subject_rows(obs: Observed, *, disease: str = "AML", target: str = "CD7") -> pl.DataFrame:
    """The ``subjects`` table: covariates, disease AML, target CD7, last_followup_day."""
    cov = obs.covariates
    n = obs.n

    def col(name, default):
        return np.asarray(cov[name]) if name in cov else np.full(n, default)

    return pl.DataFrame({
        "subject_id": subject_ids(obs.index),
        "sex": pl.Series(col("sex", None), dtype=pl.String),
        "age_years": np.round(col("age_years", np.nan).astype(float), 0),
        "weight_kg": np.round(col("weight_kg", np.nan).astype(float), 1),
        "height_cm": np.round(col("height_cm", np.nan).astype(float), 0),
        "disease": [disease] * n, "target": [target] * n,
        "last_followup_day": obs.last_day.astype(float),
        "source": [SOURCE] * n,
        "source_note": _note(obs),
    }).with_columns(pl.col(pl.Float64).fill_nan(None))


def dose_rows(obs: Observed, events, ld_agents, ld_scale: np.ndarray | None = None) -> pl.DataFrame:
    """``doses`` rows: lymphodepletion agents (the protocol's dose x the patient's relative intensity
    ``ld_scale``, default 1, on the protocol's basis) and the CAR-T infusions (absolute viable cells,
    unit ``cells``) from the model's ``Events``; ``ld_agents`` are the protocol's
    ``LymphodepletionAgent`` objects."""
    ids = subject_ids(obs.index)
    note = _note(obs).to_list()
    scale = np.ones(obs.n) if ld_scale is None else np.broadcast_to(np.asarray(ld_scale, float), (obs.n,))
    rows: dict[str, list] = {k: [] for k in ("subject_id", "day", "agent", "dose", "unit", "source_note")}
    car_day, car_cells = np.asarray(events.car_t_day, float), np.asarray(events.car_t_cells, float)

    def add(r, day, agent, dose, unit):
        for k, v in zip(rows, (ids[r], float(day), agent, float(dose), unit, note[r])):
            rows[k].append(v)

    for r in range(obs.n):
        if scale[r] > 0:
            for a in ld_agents:
                for d in a.days:
                    add(r, d, a.agent, round(a.dose * scale[r], 4), a.unit)
        for d, c in zip(car_day[r], car_cells[r]):
            if np.isfinite(d) and np.isfinite(c) and c > 0:
                add(r, d, "CAR-T", np.round(c, -3), "cells")
    df = pl.DataFrame(rows, schema={"subject_id": pl.String, "day": pl.Float64, "agent": pl.String,
                                    "dose": pl.Float64, "unit": pl.String, "source_note": pl.String})
    return df.sort(["subject_id", "day", "agent"]).with_columns(pl.lit(SOURCE).alias("source")).select(
        "subject_id", "day", "agent", "dose", "unit", "source", "source_note")


def study_tables(obs: Observed, events, ld_agents, ld_scale: np.ndarray | None = None) -> dict[str, pl.DataFrame]:
    """The five canonical tables of a chunk (format v1 columns, ``source = simulated``)."""
    return {"subjects": subject_rows(obs), "doses": dose_rows(obs, events, ld_agents, ld_scale),
            "observations": observation_rows(obs), "interventions": intervention_rows(obs),
            "events": event_rows(obs)}


def write_tables(tables: dict[str, pl.DataFrame], out_dir: str | Path) -> Path:
    """Write a study folder atomically (:func:`cartlab.io.atomic.atomic_folder`): nothing partial is
    left under ``out_dir`` if writing fails."""
    from cartlab.io.atomic import atomic_folder

    out = Path(out_dir)
    with atomic_folder(out) as tmp:
        for name, df in tables.items():
            df.write_csv(tmp / f"{name}.csv")
    return out
