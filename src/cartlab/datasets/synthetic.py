"""Seeded synthetic CAR-T cohorts written as a study folder (format v1).

``synthetic_cohort(n, seed)`` simulates a mixed CD7 / CD19 CAR-T programme: lymphodepletion and
CAR-T dosing, intensive vital-sign monitoring, blood counts, chemistry, cytokines, CAR transgene
kinetics, ICE/CAPD/LOC neuro checks, marrow and molecular assessments, supportive interventions
and clinical events. Every subject follows one latent clinical course (CRS and ICANS grade and
timing, neutrophil recovery, CAR expansion, response, outcome) from which all rows are derived, so
the files are clinically coherent: fever and hypotension sit on the CRS days, vasopressors and
oxygen on the hypotensive / hypoxic days, IL-6 and CRP peak with the CRS, and so on.

Each simulated subject belongs to one of five sites whose laboratory reports its own unit
spellings (``10^9/L`` vs ``cells/uL`` vs ``/mm3``, ``F`` vs ``C``, ``g/dL`` vs ``mmol/L``...). Values
are generated in the canonical unit of ``params_v1.yaml``, clipped to its plausible range and
converted with :func:`cartlab.units.conversion`, so they read back to realistic canonical values.

Everything is vectorised with numpy (no Python loop over observation rows) and written with
polars; every row carries ``source = synthetic``. The output is fully determined by ``n``,
``seed`` and ``days``.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl

from cartlab.io.dictionary import load_dictionary

__all__ = ["synthetic_cohort", "SITES", "SITE_UNITS"]

SOURCE = "synthetic"

DISEASES = ("AML", "T-ALL", "T-LBL", "B-ALL", "LBCL", "FL", "MCL")
AML, TALL, TLBL, BALL, LBCL, FL, MCL = range(len(DISEASES))
SEXES = ("F", "M", "U")
SPECIMENS = (None, "PB", "BM", "serum", "plasma")
_PB, _BM, _SERUM, _PLASMA = 1, 2, 3, 4

# ---------------------------------------------------------------------------------------------
# sites and their unit spellings

SITES = ("EU", "CN", "US", "FR", "NL")
_SITE_P = (0.28, 0.30, 0.22, 0.10, 0.10)
_SITE_REPORTS_RANGES = np.array([True, True, True, True, False])
_SITE_LLOQ = np.array([50.0, 100.0, 20.0, 50.0, 30.0])  # CAR qPCR LLOQ, copies/ug gDNA
_SITE_BLQ_AS_VALUE = np.array([False, False, False, False, True])  # NL reports BLQ numerically
_COUNT = ("10^9/L", "10^9/L", "cells/uL", "/mm3", "/uL")

#: unit spelling per param, per site (in ``SITES`` order); one string = all sites
SITE_UNITS: dict[str, str | tuple[str, ...]] = {
    "TEMP": ("C", "°C", "F", "C", "degC"),
    "SYSBP": "mmHg",
    "DIABP": "mmHg",
    "HR": ("beats/min", "bpm", "bpm", "/min", "beats/min"),
    "OXYSAT": "%",
    "WBC": ("10^9/L", "10^9/L", "10^3/uL", "/mm3", "10^9/L"),
    "NEUT": _COUNT,
    "LYM": _COUNT,
    "MONO": _COUNT,
    "HGB": ("g/L", "g/L", "g/dL", "g/dL", "mmol/L"),
    "PLAT": ("10^9/L", "10^9/L", "10^3/uL", "/mm3", "/uL"),
    "PBBLAST": "%",
    "CRP": ("mg/L", "mg/L", "mg/dL", "mg/L", "mg/L"),
    "FERRITIN": ("ug/L", "ng/mL", "ng/mL", "ug/L", "ug/L"),
    "ALT": ("U/L", "U/L", "IU/L", "IU/L", "U/L"),
    "AST": ("U/L", "U/L", "IU/L", "IU/L", "U/L"),
    "BILI": ("umol/L", "umol/L", "mg/dL", "umol/L", "umol/L"),
    "CREAT": ("umol/L", "umol/L", "mg/dL", "umol/L", "umol/L"),
    "LDH": ("U/L", "U/L", "IU/L", "IU/L", "U/L"),
    "FIBRINO": ("g/L", "g/L", "mg/dL", "g/L", "g/L"),
    "K": ("mmol/L", "mmol/L", "mEq/L", "mmol/L", "mmol/L"),
    "SODIUM": ("mmol/L", "mmol/L", "mEq/L", "mmol/L", "mmol/L"),
    "IL6": ("pg/mL", "pg/mL", "pg/mL", "ng/L", "pg/mL"),
    "IL10": ("pg/mL", "pg/mL", "pg/mL", "ng/L", "pg/mL"),
    "IFNG": ("pg/mL", "pg/mL", "pg/mL", "ng/L", "pg/mL"),
    "ICE": "",
    "CAPD": "",
    "LOC": "",
    "CARCOPY": ("copies/ug gDNA", "copies/ug", "copies/ug", "copies/µg", "copies/ug gDNA"),
    "BMBLAST": "%",
    "BMCELL": "%",
    "MRDFCM": ("%", "%", "fraction", "%", ""),
    "TGTBLAST": "%",
    "MOLVAF": "%",
}
PARAMS = tuple(SITE_UNITS)
_P = {code: i for i, code in enumerate(PARAMS)}

#: decimals to report, per param (int) or per (param, spelling) (dict); negative = round to 10s...
_DECIMALS: dict[str, int | dict[str, int]] = {
    "TEMP": 1, "SYSBP": 0, "DIABP": 0, "HR": 0, "OXYSAT": 0,
    "WBC": {"10^9/L": 2, "10^3/uL": 2, "/mm3": -1},
    "NEUT": {"10^9/L": 2, "cells/uL": -1, "/mm3": -1, "/uL": -1},
    "LYM": {"10^9/L": 2, "cells/uL": -1, "/mm3": -1, "/uL": -1},
    "MONO": {"10^9/L": 2, "cells/uL": -1, "/mm3": -1, "/uL": -1},
    "HGB": {"g/L": 0, "g/dL": 1, "mmol/L": 1},
    "PLAT": {"10^9/L": 0, "10^3/uL": 0, "/mm3": -3, "/uL": -3},
    "PBBLAST": 0,
    "CRP": {"mg/L": 1, "mg/dL": 2},
    "FERRITIN": 0, "ALT": 0, "AST": 0, "LDH": 0,
    "BILI": {"umol/L": 0, "mg/dL": 1},
    "CREAT": {"umol/L": 0, "mg/dL": 2},
    "FIBRINO": {"g/L": 2, "mg/dL": 0},
    "K": 1, "SODIUM": 0, "ICE": 0, "CAPD": 0, "LOC": 0,
    "BMBLAST": 1, "BMCELL": 0, "TGTBLAST": 0, "MOLVAF": 1,
}
#: significant digits instead of decimals
_SIG = {"IL6": 3, "IL10": 3, "IFNG": 3, "CARCOPY": 3, "MRDFCM": 2}

#: adult reference ranges in canonical units (lln, uln); nan = not reported
_REF = {
    "WBC": (4.0, 10.0), "NEUT": (1.8, 7.7), "LYM": (1.0, 4.8), "MONO": (0.2, 1.0),
    "HGB": (120.0, 160.0), "PLAT": (150.0, 400.0), "CRP": (np.nan, 5.0),
    "FERRITIN": (30.0, 400.0), "ALT": (7.0, 40.0), "AST": (10.0, 40.0), "BILI": (3.0, 21.0),
    "CREAT": (45.0, 110.0), "LDH": (120.0, 250.0), "FIBRINO": (2.0, 4.0), "K": (3.5, 5.1),
    "SODIUM": (135.0, 145.0),
}


@lru_cache(maxsize=1)
def _unit_table() -> SimpleNamespace:
    """Per (site, param) index into flat arrays of spelling, affine conversion and rounding."""
    params = load_dictionary()
    spellings: list[str] = []
    scale, offset, dec, sig = [], [], [], []
    index = np.zeros((len(SITES), len(PARAMS)), dtype=np.int32)
    seen: dict[tuple[str, str], int] = {}
    for j, code in enumerate(PARAMS):
        p = params[code]
        units = SITE_UNITS[code]
        units = (units,) * len(SITES) if isinstance(units, str) else units
        for i, u in enumerate(units):
            if (code, u) not in seen:
                if p.unitless or u == p.unit:
                    c_scale, c_off = 1.0, 0.0
                else:
                    c = p.conversion_from(u)
                    c_scale, c_off = c.scale, c.offset
                d = _DECIMALS.get(code, 0)
                seen[(code, u)] = len(spellings)
                spellings.append(u)
                scale.append(c_scale)
                offset.append(c_off)
                dec.append(d[u] if isinstance(d, dict) else d)
                sig.append(_SIG.get(code, 0))
            index[i, j] = seen[(code, u)]
    bounds = [params[c].plausible or (-np.inf, np.inf) for c in PARAMS]
    lo = np.array([b[0] for b in bounds], dtype=float)
    hi = np.array([b[1] for b in bounds], dtype=float)
    ref = np.array([_REF.get(c, (np.nan, np.nan)) for c in PARAMS], dtype=float)
    return SimpleNamespace(
        index=index, spelling=spellings, scale=np.array(scale), offset=np.array(offset),
        dec=np.array(dec), sig=np.array(sig), lo=lo, hi=hi, ref_lo=ref[:, 0], ref_hi=ref[:, 1],
    )


def _round(x: np.ndarray, dec: np.ndarray, sig: np.ndarray) -> np.ndarray:
    """Round to ``dec`` decimals, or to ``sig`` significant digits where ``sig > 0``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.floor(np.log10(np.abs(x)))
        d = np.where(sig > 0, sig - 1 - np.where(np.isfinite(mag), mag, 0), dec).astype(np.int64)
        f = 10.0 ** np.abs(d)
        return np.where(d >= 0, np.round(x * f) / f, np.round(x / f) * f)


# ---------------------------------------------------------------------------------------------
# small numeric helpers


def _pwl(t: np.ndarray, kt: np.ndarray, kv: np.ndarray) -> np.ndarray:
    """Piecewise-linear curve through per-row knots ``(kt, kv)`` (rows x k), flat outside."""
    out = np.where(t < kt[:, 0], kv[:, 0], kv[:, -1])
    for j in range(kt.shape[1] - 1):
        a, b = kt[:, j], kt[:, j + 1]
        w = (t - a) / np.maximum(b - a, 1e-9)
        out = np.where((t >= a) & (t < b), kv[:, j] + w * (kv[:, j + 1] - kv[:, j]), out)
    return out


def _bump(t: np.ndarray, centre: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Asymmetric Gaussian bump, 1 at ``centre``."""
    w = np.where(t < centre, left, right)
    return np.exp(-0.5 * ((t - centre) / w) ** 2)


def _pick(rng: np.random.Generator, n: int, p: np.ndarray) -> np.ndarray:
    """Categorical draw per row of a probability matrix ``p`` (n x k)."""
    cdf = np.cumsum(p, axis=1)
    return np.minimum((rng.random(n)[:, None] > cdf).sum(axis=1), p.shape[1] - 1)


def _strs(values, name: str = "") -> pl.Series:
    """A polars String series from a numpy array / list of str and None."""
    values = values.tolist() if isinstance(values, np.ndarray) else list(values)
    return pl.Series(name, values, dtype=pl.String)


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, first column, last column) of every run of True along axis 1."""
    m = np.pad(mask, ((0, 0), (1, 1))).astype(np.int8)
    dm = np.diff(m, axis=1)
    rs, cs = np.nonzero(dm == 1)
    _, ce = np.nonzero(dm == -1)
    return rs, cs, ce - 1


# ---------------------------------------------------------------------------------------------
# the latent clinical course


def _course(rng: np.random.Generator, n: int, d0: int, d1: int) -> SimpleNamespace:
    """Draw subjects and their latent course (all arrays of length n, or n x days)."""
    c = SimpleNamespace(n=n, d0=d0, d1=d1)
    c.dg = np.arange(d0, d1 + 1)
    D = c.dg[None, :]

    # --- demographics, programme, site
    cd7 = rng.random(n) < 0.45
    dis = np.where(
        cd7,
        np.array([AML, TALL, TLBL])[_pick(rng, n, np.tile([0.40, 0.42, 0.18], (n, 1)))],
        np.array([BALL, LBCL, FL, MCL])[_pick(rng, n, np.tile([0.62, 0.28, 0.05, 0.05], (n, 1)))],
    )
    ped = rng.random(n) < np.array([0.30, 0.50, 0.40, 0.60, 0.0, 0.0, 0.0])[dis]
    a_lo = np.array([18, 18, 18, 18, 25, 40, 45])[dis]
    a_hi = np.array([78, 65, 55, 70, 83, 80, 82])[dis]
    age = np.where(ped, np.round(rng.uniform(1.0, 17.9, n), 1), np.floor(rng.uniform(a_lo, a_hi)))
    sex = _pick(rng, n, np.tile([0.45, 0.54, 0.01], (n, 1)))
    adult_h = np.array([163.0, 177.0, 170.0])[sex]
    h_child = np.where(age < 2, 75 + 12 * (age - 1), 87 + 6.3 * (age - 2))
    height = np.round(np.minimum(h_child, adult_h) * rng.normal(1.0, 0.035, n), 1)
    bmi = np.where(
        age < 18,
        15.8 + 0.4 * np.maximum(age - 7, 0) + rng.normal(0, 1.2, n),
        np.clip(rng.normal(25.0, 4.0, n), 17.0, 40.0),
    )
    weight = np.round(np.maximum(bmi, 12.5) * (height / 100) ** 2, 1)
    site = _pick(rng, n, np.tile(_SITE_P, (n, 1)))
    has_date = rng.random(n) < 0.10
    inf_date = np.datetime64("2019-01-07") + rng.integers(0, 6 * 365, n).astype("timedelta64[D]")
    leuk = np.isin(dis, (AML, TALL, BALL))
    marrow = leuk | (dis == TLBL)
    c.__dict__.update(
        cd7=cd7, dis=dis, age=age, sex=sex, height=height, weight=weight, site=site,
        has_date=has_date, inf_date=inf_date, leuk=leuk, marrow=marrow,
    )

    # --- CRS: max grade, onset, duration, peak; daily severity
    pg = np.where(cd7[:, None], [[0.12, 0.43, 0.28, 0.13, 0.04]], [[0.25, 0.40, 0.22, 0.10, 0.03]])
    G = _pick(rng, n, pg)
    o = np.where(cd7, rng.integers(1, 9, n), rng.integers(0, 6, n))
    L = 2 + 2 * G + rng.integers(0, 5, n)
    p = np.minimum(o + rng.integers(0, 3, n), o + L - 1)
    plen = np.minimum(1 + rng.integers(0, 3, n), o + L - p)
    in_crs = (G[:, None] > 0) & (D >= o[:, None]) & (D < (o + L)[:, None])
    in_peak = in_crs & (D >= p[:, None]) & (D < (p + plen)[:, None])
    shoulder = in_crs & ~in_peak & (G[:, None] >= 3) & (D >= (p - 1)[:, None]) & (D <= (p + plen)[:, None])
    sev = np.where(in_peak, G[:, None], np.where(shoulder, 2, np.where(in_crs, 1, 0)))
    mech = rng.choice(3, n, p=[0.5, 0.25, 0.25])  # hypotension, hypoxia, both
    hypo_lvl = np.where(((mech != 1)[:, None]) & (sev >= 2), sev, 0)
    hypox_lvl = np.where(((mech != 0)[:, None]) & (sev >= 2), sev, 0)
    toci = ((G >= 2) & (rng.random(n) < 0.9)) | ((G == 1) & (rng.random(n) < 0.15))
    first2 = np.where((G >= 3) & (p - 1 >= o), p - 1, p)
    toci_day = np.where(G >= 2, first2, o + np.minimum(2, L - 1))
    toci2 = toci & (G >= 3) & (rng.random(n) < 0.5)
    fever_end = np.where(toci, toci_day + 1, o + L)
    fever = in_crs & (D < fever_end[:, None])
    ster_crs = ((G >= 3) & (rng.random(n) < 0.85)) | ((G == 2) & (rng.random(n) < 0.25))
    ster_crs_len = 3 + rng.integers(0, 4, n)
    vaso_vp = rng.random(n) < 0.3
    c.__dict__.update(
        G=G, o=o, L=L, p=p, plen=plen, in_crs=in_crs, in_peak=in_peak, sev=sev,
        hypo_lvl=hypo_lvl, hypox_lvl=hypox_lvl, toci=toci, toci_day=toci_day, toci2=toci2,
        ster_crs=ster_crs, ster_crs_len=ster_crs_len, vaso_vp=vaso_vp,
    )

    # --- ICANS: grade correlated with CRS, onset after CRS onset
    has_i = rng.random(n) < np.array([0.03, 0.15, 0.35, 0.60, 0.80])[G]
    I = 1 + _pick(rng, n, np.tile([0.45, 0.30, 0.17, 0.08], (n, 1)))
    I = np.where(has_i, np.minimum(4, I + ((G >= 3) & (rng.random(n) < 0.3))), 0)
    io = np.where(G > 0, o + rng.integers(1, 5, n), rng.integers(3, 10, n))
    IL = 1 + I + rng.integers(0, 4, n)
    ipk = io + rng.integers(0, np.maximum(IL - 1, 1))
    ipl = np.minimum(1 + rng.integers(0, 2, n), io + IL - ipk)
    in_icans = (I[:, None] > 0) & (D >= io[:, None]) & (D < (io + IL)[:, None])
    in_ipk = in_icans & (D >= ipk[:, None]) & (D < (ipk + ipl)[:, None])
    isev = np.where(in_ipk, I[:, None], np.where(in_icans, np.maximum(I - 1, 1)[:, None], 0))
    ster_icans = (I >= 2) & (rng.random(n) < 0.85)
    anakinra = (I >= 3) & (rng.random(n) < 0.3)
    c.__dict__.update(I=I, io=io, IL=IL, ipk=ipk, isev=isev, ster_icans=ster_icans, anakinra=anakinra)

    # --- response (marrow diseases): 0 = CR-type, 1 = PR, 2 = NR
    pr = np.array([[0.62, 0.10, 0.28], [0.85, 0, 0.15], [0.80, 0, 0.20], [0.87, 0, 0.13],
                   [0.6, 0, 0.4], [0.7, 0, 0.3], [0.6, 0, 0.4]])[dis]
    resp = _pick(rng, n, pr)
    c.resp = resp

    # --- infection
    infected = rng.random(n) < 0.22
    inf_day = rng.integers(5, 50, n)
    inf_o2 = infected & (rng.random(n) < 0.3)
    septic = infected & (rng.random(n) < 0.05)
    inf_fever = infected[:, None] & ((D == inf_day[:, None]) | (D == inf_day[:, None] + 1))
    c.__dict__.update(infected=infected, inf_day=inf_day, inf_o2=inf_o2, septic=septic)
    c.fever = fever | inf_fever
    c.crs_fever = fever
    c.inf_fever = inf_fever & ~fever
    c.hypo = (hypo_lvl >= 2) | (septic[:, None] & (D >= inf_day[:, None]) & (D <= inf_day[:, None] + 1))
    c.hypox = (hypox_lvl >= 2) | (inf_o2[:, None] & (D >= inf_day[:, None]) & (D <= inf_day[:, None] + 3))

    # --- outcomes: relapse, HSCT, new therapy, death, follow-up
    big = 10**6
    responder = resp == 0
    relapse_day = np.where(responder & (rng.random(n) < 0.12), rng.integers(35, 76, n), big)
    new_tx_day = np.where(
        resp == 2,
        np.where(rng.random(n) < 0.4, rng.integers(29, 46, n), big),
        np.where((relapse_day < big) & (rng.random(n) < 0.5), relapse_day + rng.integers(3, 11, n), big),
    )
    hsct_p = np.where(np.isin(dis, (AML, TALL, TLBL)), 0.35, np.where(dis == BALL, 0.15, 0.0))
    hsct = responder & (relapse_day == big) & (rng.random(n) < hsct_p)
    hsct_day = np.where(hsct, rng.integers(30, 61, n), big)
    edema = (I == 4) & (rng.random(n) < 0.10)
    death_crs = np.where((G == 4) & (rng.random(n) < 0.25), p + plen + rng.integers(0, 7, n), big)
    death_inf = np.where(infected & (rng.random(n) < 0.10), inf_day + rng.integers(3, 15, n), big)
    death_prog = np.where((resp == 2) & (rng.random(n) < 0.20), rng.integers(35, 61, n), big)
    death_edema = np.where(edema & (rng.random(n) < 0.7), ipk + 2, big)
    causes = np.stack([death_crs, death_inf, death_prog, death_edema])
    death_day = causes.min(axis=0)
    death_cause = np.array(["CRS / multi-organ failure", "infection", "disease progression",
                            "cerebral oedema"])[causes.argmin(axis=0)]
    lost_day = np.where(rng.random(n) < 0.06, np.round(rng.uniform(0.35, 1.0, n) * d1), big)
    last = np.minimum(np.minimum(d1, death_day), lost_day).astype(float)
    c.__dict__.update(
        relapse_day=relapse_day, new_tx_day=new_tx_day, hsct_day=hsct_day, edema=edema,
        death_day=death_day, death_cause=death_cause, dead=death_day <= last, last=last,
    )

    # --- CAR transgene kinetics (log10 copies/ug gDNA)
    cmax = np.clip(rng.normal(4.6 + 0.3 * cd7 + 0.15 * G, 0.5), 3.0, 6.3)
    cmax = np.where(rng.random(n) < 0.05, rng.uniform(1.5, 2.6, n), cmax)
    c.__dict__.update(
        cmax=cmax, tmax=rng.integers(7, 15, n).astype(float), c1=rng.uniform(1.0, 2.3, n),
        k_fast=np.log(2) / rng.uniform(3, 7, n), k_slow=np.log(2) / rng.uniform(20, 60, n),
        f_fast=rng.uniform(0.85, 0.97, n),
    )

    # --- neutrophils: log10 knots (LD start, nadir, end of nadir, recovered)
    base = np.select(
        [dis == AML, np.isin(dis, (TALL, BALL))],
        [rng.uniform(-1.0, 0.3, n), rng.uniform(-0.5, 0.6, n)],
        rng.uniform(0.2, 0.8, n),
    )
    mild = rng.random(n) < 0.15
    nad = np.where(mild, rng.uniform(-0.25, 0.1, n), rng.uniform(-2.0, -0.35, n))
    tn = rng.integers(0, 5, n).astype(float)
    dn = np.clip(np.exp(rng.normal(np.log(4.5), 0.7, n)) * (1 + 0.15 * G), 1, 50)
    dn = np.where(mild, rng.uniform(2, 6, n), dn)
    dn = np.where(~mild & (rng.random(n) < 0.08), 90.0, dn)  # no recovery (aplasia)
    rr = rng.integers(4, 11, n).astype(float)
    rec = np.where(leuk & (resp == 2), rng.uniform(-0.5, 0.2, n), rng.uniform(0.0, 0.7, n))
    c.anc_kt = np.stack([np.full(n, -5.0), tn, tn + dn, tn + dn + rr], axis=1)
    c.anc_kv = np.stack([base, nad, nad, rec], axis=1)
    # one late dip: conditioning for HSCT, or a biphasic second neutropenia
    biph = (hsct_day == big) & (rng.random(n) < 0.18)
    c.dip_a = np.where(hsct_day < big, hsct_day - 5.0, np.where(biph, rng.uniform(30, 45, n), np.inf))
    c.dip_b = np.where(hsct_day < big, hsct_day + 16.0, c.dip_a + rng.uniform(7, 20, n))
    c.dip_v = np.where(hsct_day < big, rng.uniform(-2.0, -1.3, n), rng.uniform(-0.6, 0.15, n))
    c.gcsf = ~mild & (dn >= 14) & (dn < 90) & (rng.random(n) < 0.5)
    c.gcsf_a, c.gcsf_b = tn + 10, tn + dn + 2
    c.mono_ratio = np.log10(rng.uniform(0.08, 0.2, n))
    lym_pk = rng.uniform(-0.5, 0.7, n) + 0.2 * (cmax - 4.6)
    c.lym_kt = np.stack([np.full(n, -5.0), np.full(n, -1.0), np.full(n, 2.0), c.tmax, c.tmax + 14], axis=1)
    ld = rng.uniform(-2.0, -1.0, n)
    c.lym_kv = np.stack([rng.uniform(-0.5, 0.4, n), ld, ld, lym_pk, rng.uniform(-0.5, 0.2, n)], axis=1)

    # --- peripheral blasts (%)
    zero = rng.random(n) < np.array([0.3, 0.35, 0.8, 0.35, 1, 1, 1])[dis]
    c.pbb0 = np.where(zero, 0.0, rng.uniform(1, np.array([60, 85, 10, 85, 1, 1, 1])[dis]))
    c.pbb_half = rng.uniform(1.0, 2.5, n)

    # --- daily platelets and haemoglobin with transfusions (loop over days, vectorised on subjects)
    nd = c.dg.size
    pb = np.select([dis == AML, np.isin(dis, (TALL, BALL))],
                   [rng.uniform(1.1, 2.2, n), rng.uniform(1.3, 2.4, n)], rng.uniform(2.0, 2.55, n))
    pnad = rng.uniform(0.6, 1.6, n)
    prec = np.where(leuk & (resp == 2), rng.uniform(1.0, 1.8, n), rng.uniform(1.7, 2.5, n))
    p1 = tn + rng.uniform(-1, 3, n)
    p2 = np.maximum(p1, tn + dn + rng.uniform(-2, 6, n))
    kt = np.stack([np.full(n, -5.0), p1, p2, p2 + rng.uniform(5, 14, n)], axis=1)
    kv = np.stack([pb, pnad, pnad, prec], axis=1)
    plat_true = 10 ** (_pwl(np.repeat(c.dg[None, :], n, 0).ravel(), np.repeat(kt, nd, 0),
                           np.repeat(kv, nd, 0)).reshape(n, nd) + rng.normal(0, 0.06, (n, nd)))
    hb0 = np.where(leuk, rng.uniform(75, 115, n), rng.uniform(95, 140, n))
    hb_fall = rng.uniform(0.6, 1.4, n)
    hb_rise = rng.uniform(0.3, 0.8, n)
    hb_rec = tn + np.minimum(dn, 40) + rr + 5
    t = c.dg[None, :].astype(float)
    h0, fall, rise, rec_t = hb0[:, None], hb_fall[:, None], hb_rise[:, None], hb_rec[:, None]
    hb_trend = np.where(
        t < -5, h0,
        np.where(t < rec_t, h0 - fall * (t + 5), h0 - fall * (rec_t + 5) + rise * (t - rec_t)),
    )
    hb_trend = np.minimum(hb_trend, np.maximum(hb0, 125)[:, None] + 10)
    plat = np.empty((n, nd))
    hgb = np.empty((n, nd))
    plat_tx = np.zeros((n, nd), dtype=bool)
    rbc_tx = np.zeros((n, nd), dtype=bool)
    p_boost = np.zeros(n)
    h_boost = np.zeros(n)
    p_inc = rng.uniform(20, 45, (n, nd))
    h_inc = rng.uniform(12, 20, (n, nd))
    for j in range(nd):
        plat[:, j] = plat_true[:, j] + p_boost
        hgb[:, j] = hb_trend[:, j] + h_boost
        thr = np.where(c.fever[:, j], 20.0, 10.0)
        plat_tx[:, j] = (plat[:, j] < thr) & (c.dg[j] >= -5)
        rbc_tx[:, j] = (hgb[:, j] < 70.0) & (c.dg[j] >= -5)
        p_boost = p_boost * 0.55 + plat_tx[:, j] * p_inc[:, j]
        h_boost = h_boost * 0.99 + rbc_tx[:, j] * h_inc[:, j]
    c.plat = np.maximum(plat, 1.0)
    c.hgb = np.maximum(hgb + rng.normal(0, 3, (n, nd)), 50.0)
    c.plat_tx, c.rbc_tx = plat_tx, rbc_tx
    return c


def _car_log(c: SimpleNamespace, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """log10 CAR transgene copies at time ``t`` (expansion, then bi-exponential contraction)."""
    c1, cm, tm = c.c1[s], c.cmax[s], c.tmax[s]
    up = np.where(t < 1, c1 - (1 - t), c1 + (cm - c1) * (t - 1) / (tm - 1))
    dt = np.maximum(t - tm, 0)
    f = c.f_fast[s]
    down = cm + np.log10(f * np.exp(-c.k_fast[s] * dt) + (1 - f) * np.exp(-c.k_slow[s] * dt))
    return np.where(t <= tm, up, down)


def _anc_log(c: SimpleNamespace, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """log10 absolute neutrophil count (10^9/L), without noise."""
    v = _pwl(t, c.anc_kt[s], c.anc_kv[s])
    in_dip = (t >= c.dip_a[s]) & (t < c.dip_b[s])
    v = np.where(in_dip, np.minimum(v, c.dip_v[s]), v)
    return v


# ---------------------------------------------------------------------------------------------
# observation rows


_OBS_SCHEMA = {
    "s": pl.UInt32, "t": pl.Float64, "ord": pl.UInt8, "p": pl.UInt16, "pu": pl.Int32,
    "analyte": pl.String, "value": pl.Float64, "value_text": pl.String, "lln": pl.Float64,
    "uln": pl.Float64, "lloq": pl.Float64, "spec": pl.UInt8,
}


def _emit(
    c: SimpleNamespace,
    s: np.ndarray,
    t: np.ndarray,
    ordn: int,
    p: np.ndarray | int,
    v: np.ndarray | None,
    *,
    text: list | np.ndarray | None = None,
    analyte: list | np.ndarray | None = None,
    lloq: np.ndarray | None = None,
    ref: bool = False,
    spec: np.ndarray | int = 0,
) -> pl.DataFrame:
    """Observation rows from canonical values: clip, convert to the site's unit, round."""
    u = _unit_table()
    m = s.size
    p = np.broadcast_to(np.asarray(p, dtype=np.int64), (m,))
    pu = u.index[c.site[s], p]

    def conv(x: np.ndarray) -> np.ndarray:
        return _round((x - u.offset[pu]) / u.scale[pu], u.dec[pu], u.sig[pu])

    cols: dict[str, object] = {
        "s": s.astype(np.uint32), "t": t.astype(float),
        "ord": np.full(m, ordn, np.uint8), "p": p.astype(np.uint16), "pu": pu,
        "spec": np.broadcast_to(np.asarray(spec, dtype=np.uint8), (m,)).copy(),
    }
    if v is not None:
        cols["value"] = conv(np.clip(v, u.lo[p], u.hi[p]))
    if ref:
        lo, hi = u.ref_lo[p].copy(), u.ref_hi[p].copy()
        child = (p == _P["CREAT"]) & (c.age[s] < 12)
        lo[child], hi[child] = 20.0, 60.0
        show = _SITE_REPORTS_RANGES[c.site[s]]
        cols["lln"] = np.where(show, conv(lo), np.nan)
        cols["uln"] = np.where(show, conv(hi), np.nan)
    if lloq is not None:
        cols["lloq"] = conv(lloq)
    df = pl.DataFrame(cols)
    if text is not None:
        df = df.with_columns(_strs(text, "value_text"))
    if analyte is not None:
        df = df.with_columns(_strs(analyte, "analyte"))
    df = df.with_columns(pl.col(pl.Float64).fill_nan(None))
    missing = [pl.lit(None, dtype=dt).alias(k) for k, dt in _OBS_SCHEMA.items() if k not in df.columns]
    return df.with_columns(missing).select([pl.col(k).cast(dt) for k, dt in _OBS_SCHEMA.items()])


def _expand(
    s: np.ndarray, t: np.ndarray, values: np.ndarray, keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flatten (timepoints x params) value matrices to rows where ``keep``."""
    k = values.shape[1]
    flat = keep.ravel()
    return (
        np.repeat(s, k)[flat],
        np.repeat(t, k)[flat],
        np.tile(np.arange(k), s.size)[flat],
        values.ravel()[flat],
    )


def _vitals(c: SimpleNamespace, rng: np.random.Generator) -> pl.DataFrame:
    """TEMP, SYSBP, DIABP, HR, OXYSAT: 4/day days -1..14 and during CRS/ICANS, 3/day to day 32, then daily."""
    n, dg = c.n, c.dg
    D = dg[None, :]
    frac = np.array([0.25, 0.5, 0.75, 0.875])
    intensive = ((D >= -1) & (D <= 14)) | c.in_crs | (c.isev > 0) | c.fever | c.hypo | c.hypox
    ward = ((D >= 15) & (D <= 32)) & ~intensive
    slots = np.where(
        intensive[..., None], True,
        np.where(ward[..., None], np.array([True, True, True, False]), np.array([False, True, False, False])),
    )
    des = np.where(intensive, rng.integers(0, 4, (n, dg.size)),
                   np.where(ward, rng.integers(0, 3, (n, dg.size)), 1))
    event_day = c.fever | c.hypo | c.hypox
    p_miss = np.where((D > 32) & ~intensive, 0.15, 0.03)
    day_ok = ((rng.random((n, dg.size)) >= p_miss) | event_day) & (D <= c.last[:, None])
    s, di, k = np.nonzero(slots & day_ok[..., None])
    t = dg[di] + frac[k]
    m = s.size
    is_des = k == des[s, di]
    fev, hypo, hypox = c.fever[s, di], c.hypo[s, di], c.hypox[s, di]

    child = c.age < 12
    base_t = rng.uniform(36.4, 37.0, n)
    tpeak = np.minimum(rng.uniform(38.4, 40.2, n) + 0.15 * c.G, 41.2)
    temp = np.clip(base_t[s] + rng.normal(0, 0.22, m), 35.8, 37.6)
    spike = 38.1 + rng.random(m) * (tpeak[s] - 38.1)
    temp = np.where(fev & is_des, spike, np.where(fev, 37.0 + rng.random(m) * (tpeak[s] - 37.0), temp))

    sbp0 = np.where(child, rng.uniform(100, 112, n), rng.uniform(110, 135, n))
    sbp = np.maximum(sbp0[s] + rng.normal(0, 7, m) - 4 * fev, 90.0)
    sbp = np.where(hypo, np.where(is_des, rng.uniform(68, 88, m), rng.uniform(84, 102, m)), sbp)
    dbp = np.clip(sbp * rng.uniform(0.55, 0.68, m) + rng.normal(0, 3, m), 35, sbp - 15)
    hr0 = np.where(child, rng.uniform(85, 115, n), rng.uniform(65, 90, n))
    hr = np.clip(hr0[s] + 9 * np.maximum(temp - 37, 0) + 12 * hypo + rng.normal(0, 5, m), 45, 200)
    sat0 = rng.uniform(96.0, 99.5, n)
    sat = np.minimum(sat0[s] + rng.normal(0, 0.8, m), 100)
    severe = c.hypox_lvl[s, di] >= 4
    sat = np.where(hypox, np.where(is_des, np.where(severe, rng.uniform(82, 90, m), rng.uniform(85, 92, m)),
                                   rng.uniform(89, 96, m)), sat)

    vals = np.stack([temp, sbp, dbp, hr, sat], axis=1)
    keep = rng.random(vals.shape) >= 0.03
    keep[:, 0] |= fev & is_des
    keep[:, 1] |= hypo & is_des
    keep[:, 4] |= hypox & is_des
    rs, rt, rp, rv = _expand(s, t, vals, keep)
    codes = np.array([_P[x] for x in ("TEMP", "SYSBP", "DIABP", "HR", "OXYSAT")])
    return _emit(c, rs, rt, 0, codes[rp], rv)


def _day_grid(c: SimpleNamespace, mask: np.ndarray, rng: np.random.Generator, p_miss: float):
    """(subject, day index) of measured days: scheduled, not missed, within follow-up."""
    ok = mask & (rng.random(mask.shape) >= p_miss) & (c.dg[None, :] <= c.last[:, None])
    return np.nonzero(ok)


def _cbc(c: SimpleNamespace, rng: np.random.Generator) -> pl.DataFrame:
    """WBC, NEUT, LYM, MONO, HGB, PLAT, PBBLAST: daily to day 35, then every other day."""
    D = c.dg[None, :]
    sched = np.broadcast_to((D <= 35) | (D % 2 == 0), (c.n, c.dg.size))
    s, di = _day_grid(c, sched, rng, 0.04)
    t = c.dg[di].astype(float)
    m = s.size
    anc = 10 ** (_anc_log(c, s, t) + rng.normal(0, 0.08, m))
    mono = 10 ** (_anc_log(c, s, t + 3) + c.mono_ratio[s] + rng.normal(0, 0.1, m))
    lym = 10 ** (_pwl(t, c.lym_kt[s], c.lym_kv[s]) + rng.normal(0, 0.08, m))
    pbb0, half = c.pbb0[s], c.pbb_half[s]
    resp = c.resp[s]
    pre = pbb0 * (1 - 0.3 * np.clip((t + 5) / 5, 0, 1))
    post = np.select(
        [resp == 0, resp == 1],
        [pbb0 * 0.7 * 2.0 ** (-t / half), pbb0 * 0.7 * 2.0 ** (-t / 4)],
        np.minimum(pbb0 * (0.5 + 0.04 * t), 90),
    )
    pbb = np.where(t < 0, pre, post)
    rel = c.relapse_day[s]
    pbb = np.where(t >= rel, np.minimum(pbb + 2.0 ** ((t - rel) / 4), 90), pbb)
    pbb = np.clip(pbb * rng.uniform(0.85, 1.15, m), 0, 90)
    wbc = (anc + lym + mono + 0.02) / (1 - pbb / 100)
    vals = np.stack([wbc, anc, lym, mono, c.hgb[s, di], c.plat[s, di], pbb], axis=1)
    keep = rng.random(vals.shape) >= 0.03
    keep[:, 6] &= c.leuk[s] | (c.dis[s] == TLBL)
    rs, rt, rp, rv = _expand(s, t, vals, keep)
    codes = np.array([_P[x] for x in ("WBC", "NEUT", "LYM", "MONO", "HGB", "PLAT", "PBBLAST")])
    return _emit(c, rs, rt, 1, codes[rp], rv, ref=True, spec=_PB)


def _chemistry(c: SimpleNamespace, rng: np.random.Generator) -> pl.DataFrame:
    """CRP, FERRITIN, ALT, AST, BILI, CREAT, LDH, FIBRINO, K, SODIUM: daily to day 14, then 3/week."""
    n = c.n
    D = c.dg[None, :]
    sched = (D <= 14) | ((D > 14) & np.isin(D % 7, (1, 3, 5)))
    sched = sched | c.in_crs | c.fever
    s, di = _day_grid(c, sched, rng, 0.05)
    t = c.dg[di].astype(float)
    m = s.size
    G, o, L = c.G[s], c.o[s].astype(float), c.L[s].astype(float)
    inf = np.where(c.infected[s], _bump(t, c.inf_day[s] + 1.0, 1.0, 2.5), 0.0)

    def per_subject(lo, hi):
        return rng.uniform(lo, hi, n)[s]

    def amp(table, jitter=0.25):
        return np.asarray(table)[G] + rng.uniform(-jitter, jitter, n)[s]

    crs_b = _bump(t, o + 1.5, np.full(m, 1.5), 1.5 + L / 3)
    crp = 10 ** (per_subject(0.2, 1.3) + amp([0.5, 1.1, 1.4, 1.55, 1.7]) * crs_b + 1.1 * inf
                 + rng.normal(0, 0.06, m))
    crp = crp / (1 + crp / 600)  # saturates below ~600 mg/L
    ferr_b = _bump(t, o + 3, np.full(m, 2.0), 3 + L / 3)
    ferr = 10 ** (per_subject(2.3, 3.5) + 0.2 * c.cd7[s] + amp([0.1, 0.4, 0.7, 1.0, 1.3], 0.1) * ferr_b
                  + rng.normal(0, 0.05, m))
    liver_b = _bump(t, o + 4, np.full(m, 2.0), np.full(m, 3.0))
    liver = amp([0.0, 0.1, 0.3, 0.55, 0.8], 0.2) * liver_b
    alt = 10 ** (per_subject(1.0, 1.6) + liver + rng.normal(0, 0.06, m))
    ast = 10 ** (per_subject(1.1, 1.6) + 1.1 * liver + rng.normal(0, 0.06, m))
    bili = 10 ** (per_subject(0.6, 1.2) + amp([0, 0, 0.1, 0.3, 0.5], 0.1) * liver_b + rng.normal(0, 0.05, m))
    cr0 = np.where(c.age < 18, 20 + 2.5 * c.age, rng.uniform(55, 95, n))[s]
    creat = cr0 * (1 + amp([0, 0, 0.1, 0.5, 1.2], 0.1).clip(0) * liver_b) * rng.normal(1, 0.05, m)
    ldh = 10 ** (np.where(c.leuk[s], per_subject(2.3, 3.1), per_subject(2.2, 2.7))
                 + amp([0.05, 0.1, 0.2, 0.3, 0.4], 0.05) * crs_b + rng.normal(0, 0.04, m))
    consume = (G >= 3) & (rng.random(n)[s] < 0.5)
    fib_shift = np.where(consume, -rng.uniform(1.0, 2.5, n)[s], rng.uniform(0.5, 2.0, n)[s])
    fib = per_subject(2.0, 4.5) + fib_shift * ferr_b
    fib = np.maximum(fib + rng.normal(0, 0.15, m), 0.4)
    k = np.clip(rng.normal(4.1, 0.35, m), 2.8, 6.0)
    na = np.clip(rng.normal(139, 2.2, m) - rng.uniform(2, 6, n)[s] * crs_b * (G > 0), 122, 150)
    vals = np.stack([crp, ferr, alt, ast, bili, creat, ldh, fib, k, na], axis=1)
    p_miss = np.array([0.03, 0.30, 0.03, 0.03, 0.03, 0.03, 0.15, 0.20, 0.03, 0.03])
    keep = rng.random(vals.shape) >= p_miss
    rs, rt, rp, rv = _expand(s, t, vals, keep)
    names = ("CRP", "FERRITIN", "ALT", "AST", "BILI", "CREAT", "LDH", "FIBRINO", "K", "SODIUM")
    codes = np.array([_P[x] for x in names])
    spec = np.where(codes[rp] == _P["FIBRINO"], _PLASMA, _SERUM)
    return _emit(c, rs, rt, 2, codes[rp], rv, ref=True, spec=spec)


def _cytokines(c: SimpleNamespace, rng: np.random.Generator) -> pl.DataFrame:
    """IL6, IL10, IFNG at fixed days and daily during CRS (to day 21)."""
    n = c.n
    D = c.dg[None, :]
    sched = np.isin(D, (-1, 1, 3, 5, 7, 10, 14)) | (c.in_crs & (D <= 21))
    s, di = _day_grid(c, sched, rng, 0.08)
    t = c.dg[di].astype(float)
    m = s.size
    G = c.G[s]
    centre = c.o[s] + 1.0
    width = 1.0 + c.L[s] / 4
    b = _bump(t, centre, np.full(m, 1.0), width)
    a = np.array([0.5, 1.2, 1.8, 2.4, 2.9])[G] + rng.uniform(-0.3, 0.3, n)[s]
    after_toci = c.toci[s] & (t >= c.toci_day[s])
    toci_lift = np.where(after_toci, np.log10(rng.uniform(2, 6, n))[s] * np.exp(-(t - c.toci_day[s]) / 7), 0)
    il6 = 10 ** (rng.uniform(0.3, 1.3, n)[s] + a * b + toci_lift + rng.normal(0, 0.1, m))
    il10 = 10 ** (rng.uniform(0.3, 1.0, n)[s] + 0.6 * a * b + rng.normal(0, 0.1, m))
    ifng = 10 ** (rng.uniform(0.5, 1.5, n)[s] + 0.8 * a * b + rng.normal(0, 0.1, m))
    vals = np.stack([il6, il10, ifng], axis=1)
    full_panel = (rng.random(n) < 0.7)[s]
    keep = rng.random(vals.shape) >= 0.03
    keep[:, 1:] &= full_panel[:, None]
    rs, rt, rp, rv = _expand(s, t, vals, keep)
    codes = np.array([_P["IL6"], _P["IL10"], _P["IFNG"]])
    spec = np.where(c.site[rs] == 1, _PLASMA, _SERUM)
    return _emit(c, rs, rt, 3, codes[rp], rv, spec=spec)


_LOC = np.array(["alert", "awakens_spontaneously", "awakens_to_voice", "awakens_to_tactile", "unarousable"])


def _neuro(c: SimpleNamespace, rng: np.random.Generator) -> pl.DataFrame:
    """ICE (age >= 12) or CAPD (< 12) and LOC twice daily, days 0-21."""
    n, dg = c.n, c.dg
    D = dg[None, :]
    sched = ((D >= 0) & (D <= 21)) & ((rng.random((n, dg.size)) >= 0.05) | (c.isev > 0))
    s, di, k = np.nonzero(sched[..., None] & (D <= c.last[:, None])[..., None] & np.ones((1, 1, 2), bool))
    t = dg[di] + np.array([0.375, 0.875])[k]
    m = s.size
    worst = rng.integers(0, 2, (n, dg.size))[s, di] == k
    sev = c.isev[s, di]
    lvl = np.where(worst, sev, np.maximum(sev - rng.integers(0, 2, m), np.minimum(sev, 1)))
    ice = np.select([lvl == 0, lvl == 1, lvl == 2, lvl == 3], [10, rng.integers(7, 10, m),
                    rng.integers(3, 7, m), rng.integers(0, 3, m)], 0)
    capd = np.select([lvl == 0, lvl == 1, lvl == 2, lvl == 3], [0, rng.integers(1, 9, m),
                     rng.integers(5, 9, m), rng.integers(9, 19, m)], rng.integers(19, 33, m))
    loc_lvl = np.where(lvl == 1, np.where(rng.random(m) < 0.7, 0, 1), lvl)
    child = c.age[s] < 12
    score_keep = rng.random(m) >= 0.03
    loc_keep = rng.random(m) >= 0.03
    score_p = np.where(child, _P["CAPD"], _P["ICE"])
    a = _emit(c, s[score_keep], t[score_keep], 4, score_p[score_keep],
              np.where(child, capd, ice)[score_keep].astype(float))
    b = _emit(c, s[loc_keep], t[loc_keep], 4, _P["LOC"], None, text=_LOC[loc_lvl[loc_keep]])
    return pl.concat([a, b])


def _kinetics(c: SimpleNamespace, rng: np.random.Generator) -> pl.DataFrame:
    """CARCOPY at a kinetic schedule; below LLOQ as ``<lloq`` (or a numeric value at NL)."""
    n = c.n
    sched = np.array([-1, 1, 4, 7, 10, 14, 21, 28, 42, 56, 90])
    day = np.broadcast_to(sched, (n, sched.size)).copy()
    late = day >= 14
    day = day + late * rng.integers(-1, 2, day.shape) * (rng.random(day.shape) < 0.3)
    ok = (day >= c.d0) & (day <= c.d1) & (day <= c.last[:, None]) & (rng.random(day.shape) >= 0.05)
    s, j = np.nonzero(ok)
    t = day[s, j].astype(float)
    m = s.size
    conc = 10 ** (_car_log(c, s, t) + rng.normal(0, 0.1, m))
    lloq = _SITE_LLOQ[c.site[s]]
    blq = (t < 0) | (conc < lloq)
    as_value = _SITE_BLQ_AS_VALUE[c.site[s]] & (t >= 0)
    conc = np.where(blq & as_value, np.minimum(conc, lloq * 0.95), conc)
    text_rows = blq & ~as_value
    text = np.where(text_rows, np.char.add("<", lloq.astype(int).astype(str)), None)
    value = np.where(text_rows, np.nan, conc)
    return _emit(c, s, t, 5, _P["CARCOPY"], value, text=text, lloq=lloq, spec=_PB)


_MOL = np.array(["NPM1", "TP53", "DNMT3A", "IDH2", "RUNX1", "FLT3-TKD", "NRAS", "TET2"])


def _marrow(c: SimpleNamespace, rng: np.random.Generator) -> pl.DataFrame:
    """BMBLAST, BMCELL, MRDFCM, TGTBLAST at screening, ~day 28 and relapse; MOLVAF for some AML."""
    n = c.n
    pre_day = rng.integers(-7, -4, n)
    post_day = 28 + rng.integers(-2, 4, n)
    visit_day = np.stack([pre_day, post_day, c.relapse_day], axis=1)
    ok = c.marrow[:, None] & (visit_day >= c.d0) & (visit_day <= np.minimum(c.d1, c.last)[:, None])
    s, kind = np.nonzero(ok)
    t = visit_day[s, kind].astype(float)
    m = s.size
    dis, resp = c.dis[s], c.resp[s]
    hi = np.select([c.dis == AML, c.dis == TLBL], [80.0, 20.0], 95.0)
    blast_pre = np.round(rng.uniform(np.where(c.dis == TLBL, 0.5, 10.0), hi), 1)[s]
    blast_post = np.select(
        [resp == 0, resp == 1],
        [rng.uniform(0, 4.5, m), rng.uniform(5, np.maximum(5.5, np.minimum(25, blast_pre / 2)), m)],
        np.minimum(rng.uniform(0.5, 1.2, m) * np.maximum(blast_pre, 5), 95),
    )
    blast = np.select([kind == 0, kind == 1], [blast_pre, blast_post], rng.uniform(8, 60, m))
    blast = np.where((kind == 1) & (resp == 2), np.maximum(blast, 5.0), blast)
    cell = np.select(
        [kind == 0, (kind == 1) & (rng.random(m) < 0.08)],
        [rng.uniform(50, 95, m), rng.uniform(3, 9, m)], rng.uniform(15, 80, m),
    )
    thr = np.where(dis == AML, 1e-3, 1e-4)
    neg = rng.random(m) < 0.7
    mrd_cr = np.where(neg, np.where(rng.random(m) < 0.5, 0.0, rng.uniform(0.01, 0.9, m) * thr),
                      rng.uniform(1e-3, 4e-2, m))
    mrd_blasts = np.minimum(blast / 100 * rng.uniform(0.7, 1.1, m), 0.99)
    mrd = np.where((kind == 1) & (resp == 0), mrd_cr, mrd_blasts)
    antigen_loss = (kind == 2) & ~c.cd7[s] & (rng.random(m) < 0.2)
    tgt = np.where(antigen_loss, rng.uniform(0, 10, m), rng.uniform(70, 100, m))
    vals = np.stack([blast, cell, mrd, tgt], axis=1)
    keep = np.ones(vals.shape, bool)
    keep[:, 1] = rng.random(m) >= 0.2
    keep[:, 2] = rng.random(m) >= 0.1
    keep[:, 3] = kind != 1
    rs, rt, rp, rv = _expand(s, t, vals, keep)
    codes = np.array([_P["BMBLAST"], _P["BMCELL"], _P["MRDFCM"], _P["TGTBLAST"]])
    target = np.where(c.cd7, "CD7", "CD19")
    analyte = np.where(codes[rp] == _P["TGTBLAST"], target[rs], None)
    frames = [_emit(c, rs, rt, 6, codes[rp], rv, analyte=analyte, spec=_BM)]

    # molecular: 1-2 variants for ~60% of AML, at the screening and day-28 marrows
    n_mut = np.where((c.dis == AML) & (rng.random(n) < 0.6), 1 + (rng.random(n) < 0.4), 0)
    genes = np.argsort(rng.random((n, _MOL.size)), axis=1)[:, :2]
    vaf0 = rng.uniform(5, 48, (n, 2))
    mk = (kind <= 1)
    ms, mt, mkind = s[mk], t[mk], kind[mk]
    ms2 = np.repeat(ms, 2)
    mt2 = np.repeat(mt, 2)
    slot = np.tile([0, 1], ms.size)
    has = slot < n_mut[ms2]
    post = np.repeat(mkind == 1, 2)
    clear = c.resp[ms2] == 0
    vaf = vaf0[ms2, slot] * np.where(post, np.where(clear, rng.uniform(0, 0.04, ms2.size),
                                                    rng.uniform(0.3, 1.0, ms2.size)), 1.0)
    h = has
    frames.append(_emit(c, ms2[h], mt2[h], 7, _P["MOLVAF"], vaf[h], analyte=_MOL[genes[ms2, slot]][h],
                        spec=_BM))
    return pl.concat(frames)


def _observations(c: SimpleNamespace, rng: np.random.Generator, step: Callable[[str], None]) -> pl.DataFrame:
    parts = []
    for name, fn in (("vital signs", _vitals), ("blood counts", _cbc), ("chemistry", _chemistry),
                     ("cytokines", _cytokines), ("neuro checks", _neuro), ("CAR kinetics", _kinetics),
                     ("marrow", _marrow)):
        step(name)
        parts.append(fn(c, rng))
    df = pl.concat(parts).sort(["s", "t", "ord", "p"])

    # ~10% of subjects give infusion_date; ~60% of their rows then use datetime instead of day
    m = df.height
    s = df["s"].to_numpy()
    t = df["t"].to_numpy()
    use_dt = c.has_date[s] & (rng.random(m) < 0.6)
    idx = np.nonzero(use_dt)[0]
    ts = t[idx]
    whole = np.floor(ts)
    frac = ts - whole
    # labs (whole days) get a morning draw time; vitals keep their slot plus a few minutes
    minutes = np.where(frac == 0, rng.integers(300, 660, idx.size),
                       np.round(frac * 1440) + rng.integers(0, 50, idx.size))
    date_only = (frac == 0) & (rng.random(idx.size) < 0.3)
    date = c.inf_date[s[idx]] + whole.astype(np.int64).astype("timedelta64[D]")
    stamp = date.astype("datetime64[s]") + (minutes * 60).astype(np.int64).astype("timedelta64[s]")
    text = np.where(date_only, np.datetime_as_string(date, unit="D"), np.datetime_as_string(stamp, unit="s"))
    dt_col = np.full(m, None, dtype=object)
    dt_col[idx] = text
    u = _unit_table()
    unit_names = pl.Series([x if x else None for x in u.spelling], dtype=pl.String)
    return pl.DataFrame({
        "subject_id": _ids(c).gather(df["s"]),
        "day": np.where(use_dt, np.nan, t),
        "datetime": _strs(dt_col),
        "param": pl.Series(PARAMS).gather(df["p"]),
        "analyte": df["analyte"],
        "value": df["value"],
        "value_text": df["value_text"],
        "unit": unit_names.gather(df["pu"]),
        "lln": df["lln"],
        "uln": df["uln"],
        "lloq": df["lloq"],
        "specimen": pl.Series(SPECIMENS, dtype=pl.String).gather(df["spec"]),
    }).with_columns(pl.col("day").fill_nan(None), pl.lit(SOURCE).alias("source"))


# ---------------------------------------------------------------------------------------------
# subjects, doses, interventions, events


def _ids(c: SimpleNamespace) -> pl.Series:
    width = max(4, len(str(c.n)))
    return pl.Series([f"SYN-{i:0{width}d}" for i in range(1, c.n + 1)], dtype=pl.String)


def _subjects(c: SimpleNamespace) -> pl.DataFrame:
    date = np.where(c.has_date, np.datetime_as_string(c.inf_date, unit="D"), None)
    return pl.DataFrame({
        "subject_id": _ids(c),
        "sex": np.array(SEXES)[c.sex],
        "age_years": c.age,
        "weight_kg": c.weight,
        "height_cm": c.height,
        "disease": np.array(DISEASES)[c.dis],
        "target": np.where(c.cd7, "CD7", "CD19"),
        "infusion_date": _strs(date),
        "last_followup_day": c.last,
        "site": np.array(SITES)[c.site],
        "source": SOURCE,
    })


def _doses(c: SimpleNamespace, rng: np.random.Generator) -> pl.DataFrame:
    """Lymphodepletion (Flu/Cy, decitabine for some CD7 AML) and CAR-T (single or split)."""
    n = c.n
    ids = _ids(c)
    lbcl = np.isin(c.dis, (LBCL, FL, MCL))
    flu = np.where(lbcl, 30.0, rng.choice([25.0, 30.0], n))
    cy = np.where(lbcl, 500.0, rng.choice([250.0, 300.0, 500.0], n))
    rows_s, rows_day, rows_agent, rows_dose, rows_unit = [], [], [], [], []

    def add(mask, day, agent, dose, unit):
        idx = np.nonzero(mask)[0]
        rows_s.append(idx)
        rows_day.append(np.broadcast_to(np.asarray(day, float), (n,))[idx])
        rows_agent.append(np.full(idx.size, agent, dtype=object))
        rows_dose.append(np.broadcast_to(np.asarray(dose, float), (n,))[idx])
        rows_unit.append(np.full(idx.size, unit, dtype=object))

    dec = c.cd7 & (c.dis == AML) & (rng.random(n) < 0.5)
    everyone = np.ones(n, bool)
    for d in (-7, -6, -5):
        add(dec, d, "decitabine", 50.0, "mg")
    for d in (-5, -4, -3):
        add(everyone, d, "fludarabine", flu, "mg/m2")
        add(everyone, d, "cyclophosphamide", cy, "mg/m2")
    level = np.where(c.cd7, rng.choice([1e6, 2e6, 5e6, 1e7], n), rng.choice([1e6, 2e6, 3e6, 5e6], n))
    split = rng.random(n) < 0.35
    first = rng.choice([0.3, 0.4, 0.5], n)
    absolute = lbcl & (rng.random(n) < 0.4)
    per_kg = ~absolute
    add(per_kg & ~split, 0, "CAR-T", level, "cells/kg")
    add(per_kg & split, 0, "CAR-T", level * first, "cells/kg")
    add(per_kg & split, 2, "CAR-T", level * (1 - first), "cells/kg")
    total = np.round(level * c.weight / 1e6) * 1e6
    add(absolute, 0, "CAR-T", total, "cells")
    s = np.concatenate(rows_s)
    df = pl.DataFrame({
        "s": s, "day": np.concatenate(rows_day),
        "agent": _strs(np.concatenate(rows_agent)),
        "dose": np.concatenate(rows_dose),
        "unit": _strs(np.concatenate(rows_unit)),
    })
    df = df.filter(pl.col("day") <= pl.Series(c.last).gather(df["s"])).sort(["s", "day"], maintain_order=True)
    return df.select(ids.gather(df["s"]).alias("subject_id"), "day", "agent", "dose", "unit",
                     pl.lit(SOURCE).alias("source"))


_ITV_SCHEMA = {
    "s": pl.Int64, "start_day": pl.Float64, "end_day": pl.Float64, "category": pl.String,
    "agent": pl.String, "dose": pl.Float64, "dose_unit": pl.String, "o2_device": pl.String,
    "o2_flow_lpm": pl.Float64, "fio2": pl.Float64, "indication": pl.String,
}


def _itv(s: np.ndarray, start, end, category: str, **cols) -> pl.DataFrame:
    """Intervention rows; scalars broadcast, ``None`` = empty."""
    m = s.size
    data = {"s": s.astype(np.int64), "start_day": np.broadcast_to(np.asarray(start, float), (m,)),
            "category": [category] * m}
    data["end_day"] = np.full(m, np.nan) if end is None else np.broadcast_to(np.asarray(end, float), (m,))
    for k, v in cols.items():
        if v is None:
            continue
        if isinstance(v, str):
            data[k] = [v] * m
        else:
            data[k] = np.broadcast_to(v, (m,))
    df = pl.DataFrame(data)
    df = df.with_columns(
        [pl.lit(None, dtype=dt).alias(k) for k, dt in _ITV_SCHEMA.items() if k not in df.columns]
    )
    return df.select([pl.col(k).cast(dt) for k, dt in _ITV_SCHEMA.items()]).with_columns(
        pl.col(pl.Float64).fill_nan(None)
    )


def _interventions(c: SimpleNamespace, rng: np.random.Generator) -> pl.DataFrame:
    """Vasopressors, oxygen, tocilizumab, steroids, anakinra, antipyretics, G-CSF, transfusions."""
    n, d0 = c.n, c.d0
    ids = _ids(c)
    parts = []
    kg_min = "ug/kg/min"

    # vasopressors for CRS (one run per level band)
    r, a, b = _runs(c.hypo_lvl >= 3)
    parts.append(_itv(r, d0 + a, d0 + b, "vasopressor", agent="norepinephrine",
                      dose=np.round(rng.uniform(0.05, 0.3, n), 2)[r], dose_unit=kg_min, indication="CRS"))
    r, a, b = _runs(c.hypo_lvl == 4)
    second = np.array(["epinephrine", "phenylephrine", "dopamine"])[rng.integers(0, 3, n)]
    second_dose = np.select([second == "epinephrine", second == "phenylephrine"],
                            [np.round(rng.uniform(0.02, 0.2, n), 2), np.round(rng.uniform(0.5, 2, n), 1)],
                            np.round(rng.uniform(5, 10, n)))
    parts.append(_itv(r, d0 + a, d0 + b, "vasopressor", agent=second[r], dose=second_dose[r],
                      dose_unit=kg_min, indication="CRS"))
    r, a, b = _runs((c.hypo_lvl >= 3) & c.in_peak & c.vaso_vp[:, None])
    parts.append(_itv(r, d0 + a, d0 + b, "vasopressor", agent="vasopressin", dose=0.03,
                      dose_unit="U/min", indication="CRS"))
    # septic shock: a vasopressor for infection (does not count toward CRS)
    sp = np.nonzero(c.septic)[0]
    parts.append(_itv(sp, c.inf_day[sp], c.inf_day[sp] + 1, "vasopressor", agent="norepinephrine",
                      dose=0.1, dose_unit=kg_min, indication="infection"))

    # oxygen for CRS hypoxia, by support level
    young = c.age < 3
    for lvl in (2, 3, 4):
        r, a, b = _runs(c.hypox_lvl == lvl)
        if lvl == 2:
            dev = np.where(young, "blow_by", "nasal_cannula")[r]
            flow = np.where(young[r], np.nan, np.round(rng.uniform(1, 5, n), 1)[r])
            fio2 = np.full(r.size, np.nan)
        elif lvl == 3:
            dev = np.array(["high_flow_nasal_cannula", "face_mask", "non_rebreather"])[
                _pick(rng, n, np.tile([0.7, 0.2, 0.1], (n, 1)))][r]
            hfnc = dev == "high_flow_nasal_cannula"
            hf_flow, mask_flow = np.round(rng.uniform(20, 50, r.size)), np.round(rng.uniform(6, 10, r.size))
            flow = np.select([hfnc, dev == "face_mask"], [hf_flow, mask_flow], 15.0)
            fio2 = np.where(hfnc, np.round(rng.uniform(0.4, 0.7, r.size), 2), np.nan)
        else:
            dev = np.where(rng.random(n) < 0.4, "bipap", "mechanical_ventilation")[r]
            flow = np.full(r.size, np.nan)
            fio2 = np.round(rng.uniform(0.4, 0.9, r.size), 2)
        parts.append(_itv(r, d0 + a, d0 + b, "oxygen", o2_device=dev, o2_flow_lpm=flow, fio2=fio2,
                          indication="CRS"))
    io2 = np.nonzero(c.inf_o2)[0]
    parts.append(_itv(io2, c.inf_day[io2], c.inf_day[io2] + 3, "oxygen", o2_device="nasal_cannula",
                      o2_flow_lpm=2.0, indication="infection"))

    # tocilizumab (8 mg/kg, 12 mg/kg under 30 kg), repeat dose for some grade >= 3
    tz = np.nonzero(c.toci)[0]
    tz_dose = np.where(c.weight < 30, 12.0, 8.0)
    parts.append(_itv(tz, c.toci_day[tz], None, "tocilizumab", agent="tocilizumab", dose=tz_dose[tz],
                      dose_unit="mg/kg", indication="CRS"))
    t2 = np.nonzero(c.toci2)[0]
    parts.append(_itv(t2, c.toci_day[t2] + 1, None, "tocilizumab", agent="tocilizumab", dose=tz_dose[t2],
                      dose_unit="mg/kg", indication="CRS"))

    # corticosteroids for CRS / ICANS, anakinra for severe ICANS
    st = np.nonzero(c.ster_crs)[0]
    st_start = np.where(c.G >= 3, c.p, c.toci_day)
    parts.append(_itv(st, st_start[st], st_start[st] + c.ster_crs_len[st] - 1, "corticosteroid",
                      agent="dexamethasone", dose=10.0, dose_unit="mg", indication="CRS"))
    mp = np.nonzero((c.G == 4) & c.ster_crs & (rng.random(n) < 0.3))[0]
    parts.append(_itv(mp, c.p[mp] + 1, c.p[mp] + 3, "corticosteroid", agent="methylprednisolone",
                      dose=1000.0, dose_unit="mg", indication="CRS"))
    si = np.nonzero(c.ster_icans)[0]
    ster_len = 2 + rng.integers(0, 4, n)
    parts.append(_itv(si, c.ipk[si], c.ipk[si] + ster_len[si] - 1, "corticosteroid", agent="dexamethasone",
                      dose=np.where(c.age < 12, 0.5, 10.0)[si],
                      dose_unit=np.where(c.age < 12, "mg/kg", "mg")[si], indication="ICANS"))
    ak = np.nonzero(c.anakinra)[0]
    parts.append(_itv(ak, c.ipk[ak] + 1, c.ipk[ak] + 3 + rng.integers(0, 5, ak.size), "anakinra",
                      agent="anakinra", dose=100.0, dose_unit="mg", indication="ICANS"))

    # antipyretics: CRS fever runs, infection fever, premedication before the infusion
    apy = np.where(rng.random(n) < 0.5, "paracetamol", "acetaminophen")
    apy_dose = np.where(c.age < 12, 15.0, 1000.0)
    apy_unit = np.where(c.age < 12, "mg/kg", "mg")
    for mask, indication in ((c.crs_fever, "CRS"), (c.inf_fever, "infection")):
        r, a, b = _runs(mask)
        parts.append(_itv(r, d0 + a, d0 + b, "antipyretic", agent=apy[r], dose=apy_dose[r],
                          dose_unit=apy_unit[r], indication=indication))
    pm = np.nonzero(rng.random(n) < 0.4)[0]
    parts.append(_itv(pm, 0.0, None, "antipyretic", agent=apy[pm], dose=apy_dose[pm], dose_unit=apy_unit[pm],
                      indication="other"))
    hc = np.nonzero(rng.random(n) < 0.03)[0]
    parts.append(_itv(hc, rng.integers(1, 20, hc.size), None, "corticosteroid", agent="hydrocortisone",
                      dose=100.0, dose_unit="mg", indication="other"))

    # G-CSF for prolonged neutropenia; transfusions from the daily simulation
    gc = np.nonzero(c.gcsf)[0]
    parts.append(_itv(gc, np.round(c.gcsf_a[gc]), np.round(c.gcsf_b[gc]), "gcsf", agent="filgrastim",
                      dose=5.0, dose_unit="ug/kg", indication="other"))
    for mask, cat in ((c.plat_tx, "platelet_transfusion"), (c.rbc_tx, "rbc_transfusion")):
        r, j = np.nonzero(mask)
        parts.append(_itv(r, c.dg[j], None, cat, indication="other"))

    df = pl.concat(parts)
    last = pl.Series(c.last).gather(df["s"])
    df = df.with_columns(last.alias("__last")).filter(
        (pl.col("start_day") <= pl.col("__last")) & (pl.col("start_day") >= c.d0)
    ).with_columns(
        pl.when(pl.col("end_day").is_not_null()).then(pl.min_horizontal("end_day", "__last")).alias("end_day")
    ).sort(["s", "start_day", "category"], maintain_order=True)
    return df.select(ids.gather(df["s"]).alias("subject_id"), *list(_ITV_SCHEMA)[1:],
                     pl.lit(SOURCE).alias("source"))


_INFECTIONS = np.array(["bacteraemia (E. coli)", "pneumonia", "CMV reactivation", "invasive aspergillosis",
                        "catheter-related bloodstream infection", "neutropenic fever, no organism"])


def _events(c: SimpleNamespace, rng: np.random.Generator) -> pl.DataFrame:
    """ICANS-related events, infection, relapse, new therapy, allo-HSCT, extramedullary disease, death."""
    n = c.n
    ids = _ids(c)
    big = 10**6
    parts = []

    def add(mask, day, event, detail, attribution=None):
        idx = np.nonzero(mask)[0]
        parts.append(pl.DataFrame({
            "s": idx.astype(np.int64),
            "day": np.broadcast_to(np.asarray(day, float), (n,))[idx],
            "event": _strs([event] * idx.size),
            "detail": _strs(np.broadcast_to(np.asarray(detail, dtype=object), (n,))[idx]),
            "attribution": _strs([attribution] * idx.size),
        }))

    add((c.I >= 3) & (rng.random(n) < 0.35), c.ipk, "seizure",
        "generalised tonic-clonic, terminated with levetiracetam", "ICANS")
    add((c.I == 4) & (rng.random(n) < 0.25), c.ipk, "seizure_life_threatening", "status epilepticus", "ICANS")
    add((c.I == 4) & (rng.random(n) < 0.08), c.ipk, "motor_weakness", "hemiparesis", "ICANS")
    add(c.edema, c.ipk + 1, "cerebral_edema_diffuse", "diffuse cerebral oedema on CT", "ICANS")
    febrile = (c.age < 6) & (c.I == 0) & (c.G >= 1) & (rng.random(n) < 0.1)
    add(febrile, c.o, "seizure", "febrile seizure", "other")
    add(c.infected, c.inf_day, "infection", _INFECTIONS[rng.integers(0, _INFECTIONS.size, n)], "other")
    add((c.dis == TLBL) & (rng.random(n) < 0.7), np.full(n, max(c.d0, -7)), "extramedullary_disease",
        "mediastinal mass at screening", None)
    add(c.relapse_day < big, c.relapse_day, "relapse", "marrow relapse", None)
    add(c.new_tx_day < big, c.new_tx_day, "new_therapy", "salvage chemotherapy", None)
    add(c.hsct_day < big, c.hsct_day, "allo_hsct", "consolidative allogeneic HSCT", None)
    attribution = np.where(c.death_cause == "CRS / multi-organ failure", "CRS",
                           np.where(c.death_cause == "cerebral oedema", "ICANS", "other"))
    idx = np.nonzero(c.dead)[0]
    parts.append(pl.DataFrame({
        "s": idx.astype(np.int64),
        "day": c.death_day[idx].astype(float),
        "event": _strs(["death"] * idx.size),
        "detail": _strs(c.death_cause[idx]),
        "attribution": _strs(attribution[idx]),
    }))
    df = pl.concat(parts)
    last = pl.Series(c.last).gather(df["s"])
    df = df.filter((pl.col("day") <= last) & (pl.col("day") >= c.d0)).sort(["s", "day"], maintain_order=True)
    return df.select(ids.gather(df["s"]).alias("subject_id"), "day", "event", "detail", "attribution",
                     pl.lit(SOURCE).alias("source"))


# ---------------------------------------------------------------------------------------------
# public API


@contextlib.contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[str], None]]:
    """Yield ``step(label)``; a rich progress bar when ``enabled``."""
    if not enabled:
        yield lambda label: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn()) as bar:
        task = bar.add_task("synthetic cohort", total=total)
        started = False

        def step(label: str) -> None:
            nonlocal started
            bar.update(task, description=label, advance=1 if started else 0)
            started = True

        yield step
        bar.update(task, description="done", completed=total)


def synthetic_cohort(
    n: int,
    seed: int = 0,
    out_dir: str | Path | None = None,
    *,
    fmt: str = "csv",
    days: tuple[int, int] = (-7, 60),
    progress: bool = False,
) -> Path:
    """Write a seeded synthetic study folder of ``n`` subjects and return its path.

    ``fmt`` is ``"csv"`` or ``"parquet"``; ``days`` is the observation window (first, last day;
    day 0 = first CAR-T infusion). With ``out_dir=None`` a new temporary folder is created. The
    same ``n``/``seed``/``days`` always give byte-identical files. Every row has
    ``source = synthetic``.

    >>> folder = synthetic_cohort(3, seed=1)
    >>> sorted(p.name for p in folder.iterdir())[:2]
    ['doses.csv', 'events.csv']
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    d0, d1 = int(days[0]), int(days[1])
    if not d0 <= 0 < d1:
        raise ValueError(f"days must span the infusion: first <= 0 < last, got {days!r}")
    out = Path(tempfile.mkdtemp(prefix="cartlab-synthetic-")) if out_dir is None else Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    with _progress(progress, 12) as step:
        step("latent clinical course")
        c = _course(rng, n, d0, d1)
        step("subjects and doses")
        tables = {"subjects": _subjects(c), "doses": _doses(c, rng)}
        tables["observations"] = _observations(c, rng, step)
        step("interventions")
        tables["interventions"] = _interventions(c, rng)
        step("events")
        tables["events"] = _events(c, rng)
        step("writing files")
        for name, df in tables.items():
            path = out / f"{name}.{fmt}"
            if fmt == "csv":
                df.write_csv(path)
            else:
                df.write_parquet(path)
    return out
