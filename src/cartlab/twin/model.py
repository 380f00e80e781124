"""The CD7 CAR-T digital-twin ODE (design §1) and its observable maps (§2.1).

17 states, time in days from the first CAR-T infusion, cell numbers whole-body in 10^9 cells.
:func:`rhs` and the observable helpers are arithmetic on scalars so that the numba kernel
(:mod:`cartlab.twin.solver`) compiles the very same functions the reference solver and
:func:`latent_observables` use — one implementation of every formula.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from cartlab._yaml import load_yaml
from cartlab.errors import InputError
from cartlab.twin.clinic import ClinicPolicy, load_clinic
from cartlab.twin.params import load_params

__all__ = [
    "LATENT",
    "PARAM_NAMES",
    "STATES",
    "Baseline",
    "ClinicPolicy",
    "Events",
    "SimResult",
    "cd7neg_share",
    "initial_state",
    "latent_observables",
    "load_clinic",
    "reference_solve",
    "rhs",
    "simulate",
]

STATES = ("E", "M", "X", "L7", "L0", "N7", "N0", "I", "R", "PN", "T1", "T2", "T3", "CN", "PP", "TP", "CP")
(S_E, S_M, S_X, S_L7, S_L0, S_N7, S_N0, S_I, S_R, S_PN, S_T1, S_T2, S_T3, S_CN, S_PP, S_TP, S_CP) = range(17)
NS = 17

PARAM_NAMES = (
    "rho", "K_A", "d_E", "eps", "theta_M", "x_ex", "d_M", "d_X", "r_h", "phi7", "f_viable", "K_N", "r_N", "s_N",
    "s_N0", "r_L", "r_L0", "M_BM", "k_kill", "K_k", "mu", "phi0", "kappa_L", "kappa_lymph", "kappa_N", "kappa_P",
    "p_I", "K_I", "d_I", "I_0", "e_Tmax", "k_T", "toci_il6_rise", "e_Smax", "k_S", "Fster", "k_R", "a_R", "S_R",
    "MTT_N", "g_N", "S_N", "MTT_P", "g_P", "delta_P", "f_b", "V_b", "VCN", "genomes_per_ug", "f_NK",
    "mono_per_neut", "f_pbL", "f_flow", "dT_max", "S_T50", "dSBP", "S_B50", "antipyretic_dT", "vaso_dSBP")
(P_RHO, P_KA, P_DE, P_EPS, P_THM, P_XEX, P_DM, P_DX, P_RH, P_PHI7, P_FVIA, P_KN, P_RN, P_SN7,
 P_SN0, P_RL, P_RL0, P_MBM, P_KKILL, P_KK, P_MU, P_PHI0, P_KAPL, P_KAPLY, P_KAPN, P_KAPP,
 P_PI, P_KI, P_DI, P_I0, P_ETMAX, P_KT, P_TRISE, P_ESMAX, P_KS, P_FSTER, P_KR, P_AR, P_SR,
 P_MTTN, P_GN, P_SNI, P_MTTP, P_GP, P_DELP, P_FB, P_VB, P_VCN, P_GPU, P_FNK,
 P_MONO, P_FPBL, P_FFLOW, P_DTMAX, P_ST50, P_DSBP, P_SB50, P_APDT, P_VSBP) = range(len(PARAM_NAMES))

# per-patient constants derived from the baseline (aux vector)
(A_CNREF, A_CPREF, A_M0, A_VL, A_SBP, A_TEMP, A_B0, A_I0, A_R0, A_QSSA) = range(10)
NA = 10

LATENT = ("CARCOPY", "LYM", "CD7T", "CD7NK", "CD7NEGT", "NEUT", "MONO", "PLAT", "WBC", "PBBLAST", "BMBLAST",
          "MRDFCM", "TGTBLAST", "IL6", "CRP", "TEMP", "SYSBP")

_NEG_INF = -1.0e300

try:  # the scalar formulas are compiled when numba is importable (one code path for kernel and reference)
    from numba import njit as _njit

    def _jit(f):
        return _njit(cache=True, error_model="numpy")(f)
except ImportError:  # pragma: no cover - exercised by the no-numba subprocess test
    def _jit(f):
        return f


def _py(f):
    """The plain-Python function behind a compiled one (for NumPy array arguments)."""
    return getattr(f, "py_func", f)


def _check_names() -> None:
    names = load_params().names
    if names != PARAM_NAMES:
        raise InputError("twin/params/cd7_twin_v1.yaml rows are not in the model's PARAM_NAMES order")


_check_names()


# ---------------------------------------------------------------- scalar formulas (jit-compatible)
@_jit
def effect(t, t_last, emax, k):
    """Tocilizumab / steroid effect emax*exp(-k (t - t_last)) after the latest dose, 0 before any."""
    if t_last <= _NEG_INF or t < t_last:
        return 0.0
    return emax * math.exp(-k * (t - t_last))


@_jit
def hill2(s, s50):
    """s^2 / (s^2 + s50^2): fever and hypotension response to the excess IL-6 signal."""
    return s * s / (s * s + s50 * s50)


@_jit
def excess_signal(i, e_t, i0):
    """IL-6 signalling above baseline, S_x = max(I (1 - e_T) - I0, 0) (design §1: blockade acts
    downstream of IL-6, so the measured IL-6 is not what drives the effects)."""
    s = i * (1.0 - e_t) - i0
    return max(0.0, s)


@_jit
def temp_raw(p, a, sx):
    """TEMP before an antipyretic (degC)."""
    return a[A_TEMP] + p[P_DTMAX] * hill2(sx, p[P_ST50])


@_jit
def sbp_raw(p, a, sx):
    """SYSBP before a vasopressor (mmHg)."""
    return a[A_SBP] - p[P_DSBP] * hill2(sx, p[P_SB50])


@_jit
def il6(t, y, p, a, t_ster):
    """The IL-6 driver I: the state, or with ``il6="qssa"`` (aux flag) its quasi-steady state
    I0 + p_I s E (1 - e_S) / ((K_I + E) d_I) (design §3.1 mitigation (a): removes the fast d_I mode)."""
    if a[A_QSSA] == 0.0:
        return y[S_I]
    E = y[S_E]
    A = y[S_L7] + y[S_N7]
    s = A / (p[P_KA] + A)
    e_s = effect(t, t_ster, p[P_ESMAX], p[P_KS])
    return a[A_I0] + p[P_PI] * s * E * (1.0 - e_s) / ((p[P_KI] + E) * p[P_DI])


@_jit
def rhs(t, y, p, a, t_toci, t_ster, dy):
    """dy/dt of the 17 states (design §1) into ``dy``; ``t_toci``/``t_ster`` = latest dose times."""
    E = y[S_E]; Mm = y[S_M]; X = y[S_X]; L7 = y[S_L7]; L0 = y[S_L0]; N7 = y[S_N7]; N0 = y[S_N0]
    R = y[S_R]
    A = L7 + N7
    s = A / (p[P_KA] + A)
    ttot = E + Mm + X + N7 + N0
    L = L7 + L0
    e_t = effect(t, t_toci, p[P_ETMAX], p[P_KT])
    e_s = effect(t, t_ster, p[P_ESMAX], p[P_KS])
    fster = 1.0 + (p[P_FSTER] - 1.0) * e_s
    kl = p[P_KKILL] * E / (p[P_KK] + E + A)
    room_t = 1.0 - ttot / p[P_KN]
    dy[S_E] = ((p[P_RHO] * s * fster + p[P_RH] * room_t) * E - (p[P_DE] + p[P_EPS] + p[P_XEX] * s) * E
               + p[P_THM] * s * Mm - p[P_PHI7] * kl * E)
    dy[S_M] = p[P_EPS] * E - p[P_THM] * s * Mm - p[P_DM] * Mm
    dy[S_X] = p[P_XEX] * s * E - p[P_DX] * X
    room_l = 1.0 - L / p[P_MBM]
    dy[S_L7] = p[P_RL] * L7 * room_l - kl * L7 - p[P_MU] * L7
    dy[S_L0] = p[P_RL0] * L0 * room_l + p[P_MU] * L7
    dy[S_N7] = p[P_SN7] + p[P_RN] * N7 * room_t - kl * N7
    dy[S_N0] = p[P_SN0] + p[P_RN] * N0 * room_t
    if a[A_QSSA] == 0.0:
        I = y[S_I]
        dy[S_I] = p[P_PI] * s * E * (1.0 - e_s) / (p[P_KI] + E) + p[P_DI] * (a[A_I0] - I)
    else:
        I = a[A_I0] + p[P_PI] * s * E * (1.0 - e_s) / ((p[P_KI] + E) * p[P_DI])
        dy[S_I] = 0.0
    sx = excess_signal(I, e_t, a[A_I0])
    dy[S_R] = p[P_KR] * (a[A_R0] + p[P_AR] * sx / (sx + p[P_SR]) - R)
    m = max(0.0, room_l)
    mr = m / a[A_M0]
    inh = 1.0 / (1.0 + sx / p[P_SNI])
    kn = 4.0 / p[P_MTTN]
    cn = max(1e-300, y[S_CN])
    fb = mr * a[A_CNREF] / cn
    prod = math.exp(p[P_GN] * math.log(fb)) * inh if fb > 0.0 else 0.0
    dy[S_PN] = kn * y[S_PN] * (prod - 1.0)
    dy[S_T1] = kn * (y[S_PN] - y[S_T1])
    dy[S_T2] = kn * (y[S_T1] - y[S_T2])
    dy[S_T3] = kn * (y[S_T2] - y[S_T3])
    dy[S_CN] = kn * (y[S_T3] - y[S_CN])
    kp = 2.0 / p[P_MTTP]
    cp = max(1e-300, y[S_CP])
    fp = mr * a[A_CPREF] / cp
    prodp = math.exp(p[P_GP] * math.log(fp)) if fp > 0.0 else 0.0
    dy[S_PP] = kp * y[S_PP] * (prodp - 1.0)
    dy[S_TP] = kp * (y[S_PP] - y[S_TP])
    dy[S_CP] = kp * (y[S_TP] - y[S_CP])


@_jit
def apply_ld(y, p, u):
    """Lymphodepletion on one day at intensity u: Y <- Y exp(-kappa_Y u) (design §1 events)."""
    fl = math.exp(-p[P_KAPL] * u)
    fly = math.exp(-p[P_KAPLY] * u)
    y[S_L7] *= fl
    y[S_L0] *= fl
    y[S_N7] *= fly
    y[S_N0] *= fly
    y[S_PN] *= math.exp(-p[P_KAPN] * u)
    y[S_PP] *= math.exp(-p[P_KAPP] * u)


@_jit
def extinguish(y):
    """Blast clones below one cell (1e-9 x 10^9 cells) are extinct (design §1, deterministic
    stand-in for Kimmel 2021's stochastic extinction)."""
    if y[S_L7] < 1e-9:
        y[S_L7] = 0.0
    if y[S_L0] < 1e-9:
        y[S_L0] = 0.0


@_jit
def day_signals(t, y, p, a, t_toci, t_ster):
    """(TEMP raw, SYSBP raw, PLAT) the clinic rule sees at time t."""
    e_t = effect(t, t_toci, p[P_ETMAX], p[P_KT])
    sx = excess_signal(il6(t, y, p, a, t_ster), e_t, a[A_I0])
    return temp_raw(p, a, sx), sbp_raw(p, a, sx), y[S_CP]


# ---------------------------------------------------------------- baseline and events
_BASE_FIELDS = ("weight_kg", "bm_blast_pct", "cd7_on_blasts_pct", "cd7t_ul", "cd7nk_ul", "cd7negt_ul",
                "neut", "plat", "crp", "il6", "sysbp", "temp")
_BASE_PARAMS = {"bm_blast_pct": "BMBLAST", "cd7_on_blasts_pct": "TGTBLAST", "cd7t_ul": "CD7T",
                "cd7nk_ul": "CD7NK", "cd7negt_ul": "CD7NEGT", "neut": "NEUT", "plat": "PLAT", "crp": "CRP",
                "il6": "IL6", "sysbp": "SYSBP", "temp": "TEMP"}


_BASE_UNITS = {"weight_kg": "kg", "bm_blast_pct": "%", "cd7t_ul": "cells/uL", "cd7nk_ul": "cells/uL",
               "cd7negt_ul": "cells/uL", "neut": "10^9/L", "plat": "10^9/L", "crp": "mg/L", "il6": "pg/mL",
               "sysbp": "mmHg", "temp": "degC"}


@cache
def _baseline_rows() -> dict[str, dict]:
    from importlib import resources

    doc = load_yaml(resources.files("cartlab.twin").joinpath("params", "cd7_twin_v1.yaml")
                         .read_text(encoding="utf-8"))
    return {r["name"]: r for r in doc["baseline_defaults"]}


def _baseline_defaults() -> dict[str, float]:
    return {k: float(r["value"]) for k, r in _baseline_rows().items()}


@dataclass(frozen=True)
class Baseline:
    """Per-patient baseline arrays (n,), canonical units; NaN -> the population default
    (``baseline_defaults`` rows of the parameter YAML)."""

    weight_kg: np.ndarray
    bm_blast_pct: np.ndarray
    cd7_on_blasts_pct: np.ndarray
    cd7t_ul: np.ndarray
    cd7nk_ul: np.ndarray
    cd7negt_ul: np.ndarray
    neut: np.ndarray
    plat: np.ndarray
    crp: np.ndarray
    il6: np.ndarray
    sysbp: np.ndarray
    temp: np.ndarray

    def __post_init__(self):
        arrs = [np.atleast_1d(np.asarray(getattr(self, f), dtype=np.float64)) for f in _BASE_FIELDS]
        n = max(len(x) for x in arrs)
        for f, x in zip(_BASE_FIELDS, arrs):
            if len(x) == 1 and n > 1:
                x = np.full(n, x[0])
            if len(x) != n:
                raise InputError(f"Baseline.{f} has {len(x)} values, expected {n}")
            object.__setattr__(self, f, x)

    def __len__(self) -> int:
        return len(self.weight_kg)

    def filled(self) -> Baseline:
        """NaN replaced by the population defaults."""
        d = _baseline_defaults()
        return Baseline(**{f: np.where(np.isfinite(getattr(self, f)), getattr(self, f), d[f]) for f in _BASE_FIELDS})

    def defaults_used(self, i: int = 0) -> dict[str, dict]:
        """Patient ``i``'s baseline values the data lack, that :meth:`filled` takes from
        ``baseline_defaults``: name -> value, unit, what was empty, the default's citation. CD7 on
        blasts has none (unmeasured, the CD7-negative share is the parameter phi0, :func:`cd7neg_share`)."""
        rows, out = _baseline_rows(), {}
        for f in _BASE_FIELDS:
            if f != "cd7_on_blasts_pct" and not math.isfinite(float(getattr(self, f)[i])):
                empty = ("subjects.csv column weight_kg is empty" if f == "weight_kg" else
                         f"observations.csv has no {_BASE_PARAMS[f]} value on or before day 0")
                out[f] = {"value": float(rows[f]["value"]), "unit": _BASE_UNITS[f], "missing": empty,
                          "citation": str(rows[f].get("citation", ""))}
        return out

    def take(self, idx) -> Baseline:
        return Baseline(**{f: getattr(self, f)[idx] for f in _BASE_FIELDS})

    def row(self, i: int) -> Baseline:
        return self.take(np.array([i]))

    @classmethod
    def from_study(cls, study, subject_ids) -> Baseline:
        """Last value on or before the first lymphodepletion day (the pre-treatment state the ODE starts
        from), else the last value on or before day 0; absent -> NaN (population default at solve)."""
        import polars as pl
        ids = list(subject_ids)
        obs = study.observations
        ev = Events.from_study(study, ids)
        out = {f: np.full(len(ids), np.nan) for f in _BASE_FIELDS}
        from cartlab.protocol.dose_inputs import study_weights

        weights = study_weights(study, ids)  # subjects.csv, else a WEIGHT observation (review 39 B4)
        for k, sid in enumerate(ids):
            w = weights.get(sid, (None, ""))[0]
            if w is not None:
                out["weight_kg"][k] = float(w)
            ld = ev.ld_day[k]
            first_ld = float(np.nanmin(ld)) if np.isfinite(ld).any() else 0.0
            o = obs.filter((pl.col("subject_id") == sid) & pl.col("value").is_not_null() & (pl.col("day") <= 0))
            for f, prm in _BASE_PARAMS.items():
                rows = o.filter(pl.col("param") == prm).sort("day")
                pre = rows.filter(pl.col("day") <= first_ld)
                use = pre if len(pre) else rows
                if len(use):
                    out[f][k] = float(use["value"][-1])
        return cls(**out)

    @classmethod
    def population(cls, n: int, rng: np.random.Generator) -> Baseline:
        """Covariates drawn for a virtual cohort (design §5, all [A]): marrow blasts logit-normal
        around 36% (CD7 §3.1-e, range 2-87%), weight log-normal around 60 kg (SD 0.25, clipped to 30-150 kg); the rest at the
        population defaults (NaN -> defaults at solve)."""
        z = rng.standard_normal((n, 2))
        b = 1.0 / (1.0 + np.exp(-(math.log(0.36 / 0.64) + 1.2 * z[:, 0])))
        nan = np.full(n, np.nan)
        return cls(weight_kg=np.clip(60.0 * np.exp(0.25 * z[:, 1]), 30.0, 150.0), bm_blast_pct=100.0 * b, cd7_on_blasts_pct=nan,
                   cd7t_ul=nan, cd7nk_ul=nan, cd7negt_ul=nan, neut=nan, plat=nan, crp=nan, il6=nan,
                   sysbp=nan, temp=nan)


def _pad(rows: list[list[float]], n: int) -> np.ndarray:
    k = max([len(r) for r in rows] + [0])
    out = np.full((n, k), np.nan)
    for i, r in enumerate(rows):
        out[i, :len(r)] = sorted(r) if r and not isinstance(r[0], tuple) else r
    return out


_EV_FIELDS = ("car_t_day", "car_t_cells", "ld_day", "ld_intensity", "toci_day", "steroid_day",
              "transfusion_day", "transfusion_units")


@dataclass(frozen=True)
class Events:
    """Padded per-patient event arrays, NaN = no event; days relative to the first CAR-T infusion.
    ``car_t_cells`` are absolute viable cells; ``ld_intensity`` u = Flu/30 + Cy/300 (mg/m2) +
    ld_dec_per_mg * decitabine mg per day (design §1); toci / steroid / transfusion = recorded
    interventions (fits use them; a clinic policy replaces them from ``active_from_day``)."""

    car_t_day: np.ndarray
    car_t_cells: np.ndarray
    ld_day: np.ndarray
    ld_intensity: np.ndarray
    toci_day: np.ndarray
    steroid_day: np.ndarray
    transfusion_day: np.ndarray | None = None
    transfusion_units: np.ndarray | None = None

    def __post_init__(self):
        n = np.atleast_2d(np.asarray(self.car_t_day, dtype=np.float64)).shape[0]
        for f in _EV_FIELDS:
            v = getattr(self, f)
            v = np.zeros((n, 0)) if v is None else np.atleast_2d(np.asarray(v, dtype=np.float64))
            if v.shape[0] != n:
                raise InputError(f"Events.{f} has {v.shape[0]} rows, expected {n}")
            object.__setattr__(self, f, v)
        for a, b in (("car_t_day", "car_t_cells"), ("ld_day", "ld_intensity"),
                     ("transfusion_day", "transfusion_units")):
            if getattr(self, a).shape != getattr(self, b).shape:
                raise InputError(f"Events.{a} and {b} differ in shape")

    def __len__(self) -> int:
        return self.car_t_day.shape[0]

    def take(self, idx) -> Events:
        return Events(**{f: getattr(self, f)[idx] for f in _EV_FIELDS})

    def repeat(self, k: int) -> Events:
        return Events(**{f: np.repeat(getattr(self, f), k, axis=0) for f in _EV_FIELDS})

    @classmethod
    def from_study(cls, study, subject_ids) -> Events:
        """Doses (CAR-T in cells/kg or cells; fludarabine / cyclophosphamide in mg/m2 or mg, BSA by
        the protocol module's Mosteller formula; decitabine in mg) and recorded tocilizumab,
        corticosteroid (one administration per day from start to end day) and platelet transfusions."""
        import polars as pl

        from cartlab.grading.ld_agents import canonical_agent
        from cartlab.kinetics.agents import is_car_t_agent
        from cartlab.protocol.dosing import Patient, body_size
        from cartlab.provenance import row_ref
        consts = load_params().constants
        ids = list(subject_ids)
        rows = {f: [[] for _ in ids] for f in _EV_FIELDS}
        from cartlab.protocol.dose_inputs import study_body_sizes

        sizes = study_body_sizes(study, ids)  # subjects.csv, else WEIGHT/HEIGHT observations (review 39 B4, diff1 B5)
        for k, sid in enumerate(ids):
            z = sizes.get(sid, {"weight_source": "no subjects.csv row", "height_source": "no subjects.csv row"})
            wt, wt_src, ht = z.get("weight_kg"), z["weight_source"], z.get("height_cm")
            w, h = (float(v) if v is not None else math.nan for v in (wt, ht))
            ld: dict[float, float] = {}
            for r in study.doses.filter(pl.col("subject_id") == sid).iter_rows(named=True):
                unit = (r["unit"] or "").strip()
                agent = canonical_agent(r["agent"] or "")  # "Fludara" is fludarabine (ld_agents.yaml)
                dose = r["dose"]
                if dose is None:
                    continue
                where = f"{row_ref(r) or 'doses.csv'} (subject {sid}, column unit)"
                if is_car_t_agent(r["agent"]) or unit.startswith("cells"):
                    if unit not in ("cells", "cells/kg"):
                        raise InputError(f"{where}: CAR-T dose unit {unit!r} is not supported by the twin "
                                         "(cells or cells/kg)")
                    if unit == "cells/kg" and not math.isfinite(w):
                        raise InputError(f"{where}: the CAR-T dose is in cells/kg but there is no weight_kg for "
                                         f"{sid} ({wt_src}): add weight_kg to subjects.csv, or give the dose in "
                                         "cells")
                    cells = float(dose) * (w if unit == "cells/kg" else 1.0)
                    rows["car_t_day"][k].append(float(r["day"]))
                    rows["car_t_cells"][k].append(cells)
                    continue
                ref = {"fludarabine": consts["ld_ref_flu"].value, "cyclophosphamide": consts["ld_ref_cy"].value}
                if agent in ref:
                    if unit == "mg/m2":
                        mg_m2 = float(dose)
                    elif unit == "mg":
                        if not (math.isfinite(w) and math.isfinite(h)):
                            gone = "/".join(c for c, v in (("weight_kg", w), ("height_cm", h)) if not math.isfinite(v))
                            raise InputError(f"{where}: {agent} is in mg and there is no {gone} for {sid} ({wt_src}; "
                                             f"{z['height_source']}; needed for the BSA): add them, or give the dose in mg/m2")
                        bsa = body_size(Patient(weight_kg=w, height_cm=h))["bsa_m2"]
                        mg_m2 = float(dose) / bsa
                    else:
                        raise InputError(f"{where}: {agent} dose unit {unit!r} is not supported by the twin "
                                         "(mg/m2 or mg)")
                    u = mg_m2 / ref[agent]
                elif agent == "decitabine":
                    if unit != "mg":
                        raise InputError(f"{where}: decitabine dose unit {unit!r} is not supported by the twin (mg)")
                    u = float(dose) * consts["ld_dec_per_mg"].value
                else:
                    continue
                ld[float(r["day"])] = ld.get(float(r["day"]), 0.0) + u
            for d in sorted(ld):
                rows["ld_day"][k].append(d)
                rows["ld_intensity"][k].append(ld[d])
            iv = study.interventions.filter(pl.col("subject_id") == sid)
            for r in iv.iter_rows(named=True):
                cat = r["category"]
                d0 = r["start_day"]
                if d0 is None:
                    continue
                d1 = r["end_day"] if r["end_day"] is not None else d0
                if cat == "tocilizumab":
                    rows["toci_day"][k].append(float(d0))
                elif cat == "corticosteroid":
                    rows["steroid_day"][k].extend(float(d) for d in np.arange(d0, d1 + 0.5))
                elif cat == "platelet_transfusion":  # dose in units (empty unit: units; empty dose: 1 unit)
                    pu = (r.get("dose_unit") or "").strip()
                    if pu.lower() not in ("units", "unit", ""):
                        raise InputError(f"{row_ref(r) or 'interventions.csv'} (subject {sid}, column dose_unit): "
                                         f"platelet transfusion dose unit {pu!r} is not supported by the twin",
                                         hint="give platelet transfusions in units (dose_unit units; one apheresis "
                                              "or pooled unit is ~200-300 mL)")
                    rows["transfusion_day"][k].append(float(d0))
                    rows["transfusion_units"][k].append(float(r["dose"]) if r["dose"] is not None else 1.0)
        return cls._from_rows(rows, len(ids))

    @classmethod
    def _from_rows(cls, rows, n) -> Events:
        out = {}
        for a, b in (("car_t_day", "car_t_cells"), ("ld_day", "ld_intensity"),
                     ("transfusion_day", "transfusion_units")):
            pairs = [sorted(zip(x, y)) for x, y in zip(rows[a], rows[b])]
            k = max([len(p) for p in pairs] + [0])
            da, db = np.full((n, k), np.nan), np.full((n, k), np.nan)
            for i, pr in enumerate(pairs):
                for j, (x, y) in enumerate(pr):
                    da[i, j], db[i, j] = x, y
            out[a], out[b] = da, db
        for f in ("toci_day", "steroid_day"):
            out[f] = _pad(rows[f], n)
        return cls(**out)

    @classmethod
    def from_protocol(cls, protocol, weight_kg, *, car_dose_per_kg=None, split=None,
                      ld_intensity=1.0) -> Events:
        """The protocol's schedule (``dose_plan``): CAR-T cells = cells/kg x weight (or flat cells),
        ``car_dose_per_kg`` overriding the total, ``split`` the infusion fractions (one per protocol
        infusion day, each above 0, adding up to 1; a single 1.0 = everything on the first day); LD intensity from the protocol's
        mg/m2 doses scaled by ``ld_intensity``."""
        w = np.atleast_1d(np.asarray(weight_kg, dtype=np.float64))
        n = len(w)
        bins = np.round(w, 1)
        scheds = {wk: _protocol_schedule(protocol, float(wk), car_dose_per_kg) for wk in np.unique(bins)}
        k_car = max(len(sc[0]) for sc in scheds.values()) if split is None or len(split) != 1 else 1
        k_ld = max(len(sc[3]) for sc in scheds.values())
        out = {f: np.full((n, k), np.nan) for f, k in (("car_t_day", k_car), ("car_t_cells", k_car),
                                                        ("ld_day", k_ld), ("ld_intensity", k_ld))}
        for wk, (days, per, perkg, ld_days, ld_u) in scheds.items():
            ix = np.flatnonzero(bins == wk)
            cells = np.asarray(per)[None, :] * np.where(np.asarray(perkg)[None, :], w[ix, None], 1.0)
            d = np.asarray(days, dtype=np.float64)
            if split is not None:
                fr = np.asarray(list(split), dtype=np.float64)
                if not (fr.size and np.all(np.isfinite(fr) & (fr > 0)) and abs(fr.sum() - 1.0) <= 1e-6):  # review 47 B7
                    raise InputError(f"split {','.join(f'{x:g}' for x in fr)}: the infusion fractions must each be above 0 "
                                     "and add up to 1 (a fraction of 0 is an infusion of no cells: give the split "
                                     "without it, e.g. 1 for a single infusion)")
                total = cells.sum(axis=1, keepdims=True)
                if len(fr) == 1:
                    d, cells = d[:1], total
                elif len(fr) == len(d):
                    cells = total * fr[None, :] / fr.sum()
                else:
                    raise InputError(f"split has {len(fr)} fractions, the protocol {len(d)} infusions")
            out["car_t_day"][ix, :len(d)] = d[None, :]
            out["car_t_cells"][ix, :len(d)] = cells
            out["ld_day"][ix, :len(ld_days)] = np.asarray(ld_days)[None, :]
            out["ld_intensity"][ix, :len(ld_days)] = np.asarray(ld_u)[None, :] * ld_intensity
        return cls(toci_day=np.zeros((n, 0)), steroid_day=np.zeros((n, 0)), **out)


_SCHEDULES: dict = {}


def _protocol_schedule(protocol, wk: float, car_dose_per_kg):
    """(CAR days, protocol doses, per-kg flags, LD days, LD u per day) of ``dose_plan`` for a weight
    (cached: population weights fall in ~1,200 0.1-kg bins)."""
    key = (id(protocol), protocol.id, wk, car_dose_per_kg)
    if key in _SCHEDULES:
        return _SCHEDULES[key]
    from cartlab.grading.ld_agents import canonical_agent
    from cartlab.protocol.dosing import DoseOptions, Patient, dose_plan
    consts = load_params().constants
    # height only feeds the BSA of the absolute mg doses, which u does not use (u is on the
    # protocol's mg/m2 basis): a height giving BMI 22 keeps the plausibility checks quiet
    height = min(200.0, max(100.0, 100.0 * math.sqrt(wk / 22.0)))
    patient = Patient(weight_kg=wk, height_cm=height)
    car_dose = car_dose_per_kg
    if car_dose_per_kg is not None:
        # car_dose_per_kg is per kg (cartlab simulate --dose-levels); a band in flat cells (Kymriah
        # B-ALL above 50 kg) takes the dose in cells: per kg x weight (session 33, review33 twin B2)
        plan0 = dose_plan(protocol, patient)
        units0 = plan0.filter(plan0["kind"] == "car_t")["protocol_unit"].to_list()
        if units0 and all(u == "cells" for u in units0):
            car_dose = float(car_dose_per_kg) * wk
    plan = dose_plan(protocol, patient, DoseOptions(car_dose=car_dose))
    car = plan.filter(plan["kind"] == "car_t")
    if any(d is None for d in car["protocol_dose"].to_list()):
        why = "; ".join(sorted({str(x) for x in car["adjustment"].drop_nulls().to_list()}))
        raise InputError(f"protocol {protocol.id!r} gives no CAR-T target dose for a {wk:g} kg patient"
                         + (f" ({why})" if why else "") + ": give the dose to simulate (cartlab simulate "
                         "--dose-levels, or car_dose_per_kg=)")
    units = car["protocol_unit"].to_list()
    for u in units:
        if u not in ("cells", "cells/kg"):
            raise InputError(f"CAR-T protocol unit {u!r} not supported (cells, cells/kg)")
    ref = {"fludarabine": consts["ld_ref_flu"].value, "cyclophosphamide": consts["ld_ref_cy"].value}
    ld: dict[float, float] = {}
    for r in plan.filter(plan["kind"] == "lymphodepletion").iter_rows(named=True):
        a = canonical_agent(r["agent"])  # the protocol's agent by any alias (ld_agents.yaml)
        if r["status"] == "withhold":  # the renal rule says do not give: no lymphodepletion effect
            continue
        # the virtual patient has no creatinine: a renal adjustment is "not_evaluable" and the full
        # protocol dose is simulated (normal renal function assumed; docs/twin.md "Dosing")
        if a in ref:
            if r["protocol_unit"] != "mg/m2":
                raise InputError(f"{a}: protocol unit {r['protocol_unit']!r} not supported (mg/m2)")
            u = r["protocol_dose"] * (r["factor"] or 1.0) / ref[a]
        elif a == "decitabine":
            u = (r["dose"] or 0.0) * consts["ld_dec_per_mg"].value
        else:
            continue
        ld[r["day"]] = ld.get(r["day"], 0.0) + u
    items = sorted(ld.items())
    # the planned dose: the protocol's, times the plan's factor (a label cap: Yescarta's 2e8 cells at
    # 130 kg is factor 10/13 of 2e6/kg; session 33, the uncapped dose was simulated)
    car_per = [d * (f if f is not None else 1.0) for d, f in zip(car["protocol_dose"].to_list(), car["factor"].to_list())]
    res = (tuple(car["day"].to_list()), tuple(car_per), tuple(u == "cells/kg" for u in units),
           tuple(d for d, _ in items), tuple(u for _, u in items))
    if len(_SCHEDULES) > 20000:
        _SCHEDULES.clear()
    _SCHEDULES[key] = res
    return res


# ---------------------------------------------------------------- initial state and aux
def _theta2d(theta, n) -> np.ndarray:
    th = np.atleast_2d(np.asarray(theta, dtype=np.float64))
    if th.shape[1] != len(PARAM_NAMES):
        raise InputError(f"theta has {th.shape[1]} columns, expected {len(PARAM_NAMES)} (PARAM_NAMES)")
    if th.shape[0] == 1 and n > 1:
        th = np.repeat(th, n, axis=0)
    if th.shape[0] != n:
        raise InputError(f"theta has {th.shape[0]} rows for {n} patients")
    return np.ascontiguousarray(th)


def blood_litres(theta, baseline) -> np.ndarray:
    return theta[:, P_VB] * baseline.weight_kg / 1000.0


def to_body(conc_ul, theta, vl):
    """cells/uL in blood -> whole-body 10^9 cells (blood holds a share f_b of the pool)."""
    return conc_ul * vl * 1e-3 / theta[:, P_FB]


def cd7neg_share(theta: np.ndarray, baseline: Baseline) -> np.ndarray:
    """(n,) CAR-resistant (CD7-negative) share of the blasts at the start: the parameter ``phi0``,
    bounded above by the CD7-negative share flow cytometry measured, 1 - TGTBLAST/100, when CD7 on
    blasts is known (a measured TGTBLAST, or the virtual population's covariate). Flow's
    CD7-negative gate also holds CD7-dim blasts the CAR-T kills, so the measured share is an upper
    bound of the resistant clone, not its size (docs/twin.md, "Identifiability")."""
    th = _theta2d(theta, len(baseline))
    cd7 = np.asarray(baseline.cd7_on_blasts_pct, dtype=np.float64)
    known = np.isfinite(cd7)
    measured = 1.0 - np.clip(np.nan_to_num(cd7, nan=0.0), 0.0, 100.0) / 100.0
    return np.where(known, np.minimum(th[:, P_PHI0], measured), th[:, P_PHI0])


def initial_state(theta: np.ndarray, baseline: Baseline) -> tuple[np.ndarray, np.ndarray]:
    """(y0 (n,17), aux (n,9)) at the start of integration (design §1 table of initial values)."""
    b = baseline.filled()
    n = len(b)
    th = _theta2d(theta, n)
    vl = blood_litres(th, b)
    b0 = np.clip(b.bm_blast_pct / 100.0, 0.0, 0.95)
    L = b0 * th[:, P_MBM]
    y0 = np.zeros((n, NS))
    y0[:, S_L0] = cd7neg_share(th, baseline) * L
    y0[:, S_L7] = L - y0[:, S_L0]
    y0[:, S_N7] = to_body(b.cd7t_ul + b.cd7nk_ul, th, vl)
    y0[:, S_N0] = to_body(b.cd7negt_ul, th, vl)
    y0[:, S_I] = b.il6
    y0[:, S_R] = b.crp
    for s in (S_PN, S_T1, S_T2, S_T3, S_CN):
        y0[:, s] = b.neut
    for s in (S_PP, S_TP, S_CP):
        y0[:, s] = b.plat
    aux = np.zeros((n, NA))
    aux[:, A_CNREF] = b.neut
    aux[:, A_CPREF] = b.plat
    aux[:, A_M0] = 1.0 - b0
    aux[:, A_VL] = vl
    aux[:, A_SBP] = b.sysbp
    aux[:, A_TEMP] = b.temp
    aux[:, A_B0] = b0
    aux[:, A_I0] = b.il6
    aux[:, A_R0] = b.crp
    return y0, aux


# ---------------------------------------------------------------- observables
def _last_before(t: np.ndarray, times: np.ndarray) -> np.ndarray:
    """(n, T) latest dose time < t from (n, Q) NaN-padded dose times (-1e300 if none): an output at a
    dose's instant is the state just before it (as :func:`simulate`'s states), so the dose does not act yet."""
    n = times.shape[0]
    out = np.full((n, len(t)), _NEG_INF)
    for q in range(times.shape[1]):
        tq = times[:, q:q + 1]
        hit = np.isfinite(tq) & (tq < t[None, :])
        out = np.where(hit, np.maximum(out, np.nan_to_num(tq, nan=_NEG_INF)), out)
    return out


def _day_flags(t, clinic_arrays, clinic_days, key, n):
    if clinic_arrays is None or key not in clinic_arrays or clinic_days is None or len(clinic_days) == 0:
        return np.zeros((n, len(t)))
    d = np.floor(t).astype(np.int64)
    pos = d - int(clinic_days[0])
    ok = (pos >= 0) & (pos < len(clinic_days))
    out = np.zeros((n, len(t)))
    out[:, ok] = np.asarray(clinic_arrays[key], dtype=np.float64)[:, pos[ok]]
    return out


def latent_observables(states, theta, baseline, t, clinic_arrays=None, *, clinic_days=None,
                       toci_times=None, antipyretic_from: str | None = None,
                       fever_c: float | None = None) -> dict[str, np.ndarray]:
    """The one implementation of the state -> observable maps (design §2.1, noise-free).

    ``states`` (n, T, 17); returns name -> (n, T) in canonical units.  ``clinic_arrays`` (the
    daily antipyretic / vasopressor flags, days ``clinic_days``) lower TEMP and raise SYSBP on
    those days (TEMP after the day's start, when the clinic decided, or all day: ``antipyretic_from``,
    default the clinic table's); ``toci_times`` (n, Q) raise the measured IL-6 (receptor blockade)."""
    st = np.asarray(states, dtype=np.float64)
    n, T = st.shape[0], st.shape[1]
    t = np.asarray(t, dtype=np.float64)
    th = _theta2d(theta, n)
    _y0, aux = initial_state(th, baseline)
    P = {k: th[:, i][:, None] for i, k in enumerate(PARAM_NAMES)}
    a = {k: aux[:, i][:, None] for k, i in (("vl", A_VL), ("b0", A_B0), ("i0", A_I0), ("cnref", A_CNREF),
                                            ("sbp", A_SBP), ("temp", A_TEMP))}
    g = {s: st[:, :, i] for i, s in enumerate(STATES)}
    pb = P["f_b"] / (a["vl"] * 1e-3)  # cells/uL per 10^9 body cells
    car = g["E"] + g["M"] + g["X"]
    lym = pb * (car + g["N7"] + g["N0"]) / 1000.0
    neut = g["CN"]
    mono = P["mono_per_neut"] * neut
    L = g["L7"] + g["L0"]
    pbbl = P["f_pbL"] * L / a["vl"]
    wbc = neut + lym + mono + pbbl
    H = P["M_BM"] * (1.0 - a["b0"]) * np.maximum(g["PN"], 0.0) / a["cnref"]
    with np.errstate(invalid="ignore", divide="ignore"):
        bm = np.where(L + H > 0, 100.0 * L / (L + H), 0.0)
        tgt = np.where(L > 0, 100.0 * g["L7"] / np.where(L > 0, L, 1.0), np.nan)
    tt = np.broadcast_to(t[None, :], (n, T))
    if toci_times is None:
        toci_times = np.zeros((n, 0))
        if clinic_arrays is not None and clinic_days is not None and "tocilizumab" in clinic_arrays:
            ta = np.asarray(clinic_arrays["tocilizumab"], dtype=bool)
            toci_times = np.where(ta, np.asarray(clinic_days, dtype=np.float64)[None, :], np.nan)
    tl = _last_before(t, np.asarray(toci_times, dtype=np.float64).reshape(n, -1))
    e_t = np.where(tl > _NEG_INF, P["e_Tmax"] * np.exp(-P["k_T"] * (tt - np.where(tl > _NEG_INF, tl, 0.0))), 0.0)
    sx = np.maximum(g["I"] * (1.0 - e_t) - a["i0"], 0.0)
    apy = _day_flags(t, clinic_arrays, clinic_days, "antipyretic", n)
    vas = _day_flags(t, clinic_arrays, clinic_days, "vasopressor", n)
    temp = a["temp"] + P["dT_max"] * _py(hill2)(sx, P["S_T50"])
    if antipyretic_from is None or fever_c is None:
        pol = load_clinic()
        antipyretic_from = pol.antipyretic_from if antipyretic_from is None else antipyretic_from
        fever_c = pol.fever_c if fever_c is None else fever_c
    if antipyretic_from == "after_decision":
        # the clinic decides at the day's start (integer t) on the TEMP then: that reading is the one that
        # prompted the antipyretic and keeps its value; later readings of the day are lowered. Depends on
        # each output time alone, not on which other times are asked for (session 36, review36_diff B2)
        apy = apy * (t - np.floor(t) > 0)[None, :]
    elif antipyretic_from != "day_start":
        raise InputError(f"antipyretic_from must be after_decision or day_start, not {antipyretic_from!r}")
    return {
        "CARCOPY": P["VCN"] * P["genomes_per_ug"] * pb * car / (1000.0 * wbc),
        "LYM": lym,
        "CD7T": (1.0 - P["f_NK"]) * pb * g["N7"],
        "CD7NK": P["f_NK"] * pb * g["N7"],
        "CD7NEGT": pb * g["N0"],
        "NEUT": neut,
        "MONO": mono,
        "PLAT": g["CP"],
        "WBC": wbc,
        "PBBLAST": 100.0 * pbbl / wbc,
        "BMBLAST": bm,
        "MRDFCM": P["f_flow"] * bm / 100.0,
        "TGTBLAST": tgt,
        "IL6": g["I"] * (1.0 + P["toci_il6_rise"] * e_t),
        "CRP": g["R"],
        "TEMP": temp - P["antipyretic_dT"] * apy,
        "SYSBP": a["sbp"] - P["dSBP"] * _py(hill2)(sx, P["S_B50"]) + P["vaso_dSBP"] * vas,
    }


# ---------------------------------------------------------------- simulation API
@dataclass
class SimResult:
    t: np.ndarray
    states: np.ndarray | None
    latent: dict[str, np.ndarray]
    clinic: dict[str, np.ndarray]
    clinic_days: np.ndarray
    n_fallback: int
    toci_times: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    steroid_times: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    transfusion_times: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    n_steps: np.ndarray | None = None
    failed: dict = field(default_factory=dict)   # row -> reason: every solver failed (on_failure="mark": NaN row)


def simulate(theta, baseline: Baseline, events: Events, t_out, *, clinic: ClinicPolicy | None = None,
             solver: str = "dp5", rtol: float = 1e-6, keep_states: bool = True, il6: str = "dynamic",
             on_failure: str = "raise") -> SimResult:
    """Solve the twin for n patients (design §3): ``solver`` "dp5" (numba adaptive Dormand-Prince
    5(4), NumPy-free pure-Python kernel when numba is absent), "rk4" (fixed step 1/32 d), or
    "python" (the same kernel, not compiled).  Outputs at ``t_out`` are the state just before any
    event at that instant.  ``il6="qssa"`` replaces the IL-6 ODE by its quasi-steady state (an
    approximation of the model, ~1.6x fewer steps; the I column then holds the algebraic value).
    ``on_failure="mark"``: a patient whose backup solver fails too gets NaN rows, listed in ``failed``."""
    from cartlab.twin.solver import solve
    return solve(theta, baseline, events, t_out, clinic=clinic, solver=solver, rtol=rtol, keep_states=keep_states,
                 il6=il6, on_failure=on_failure)


def reference_solve(theta_row, baseline_row, events_row, t_out, clinic_log=None, *, policy=None,
                    method="DOP853", rtol=1e-10, atol_scale=None, il6="dynamic"):
    """Independent per-segment ``scipy.integrate.solve_ivp`` solution (T, 17) with the same event
    segmentation (events, integer days, outputs).  ``clinic_log`` = (toci_times, steroid_times,
    transfusion (times, units)) frozen from a fast run, or ``policy`` to run the rule in Python."""
    from cartlab.twin.solver import python_course
    return python_course(theta_row, baseline_row, events_row, np.asarray(t_out, dtype=np.float64),
                         clinic_log=clinic_log, policy=policy, method=method, rtol=rtol, atol_scale=atol_scale,
                        il6=il6)
