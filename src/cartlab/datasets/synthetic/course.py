"""The latent clinical course of synthetic subjects, the sites' unit spellings and shared helpers."""

from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace

import numpy as np
import polars as pl

from cartlab.io.dictionary import load_dictionary

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



def _ids(c: SimpleNamespace) -> pl.Series:
    width = max(4, len(str(c.n)))
    return pl.Series([f"SYN-{i:0{width}d}" for i in range(1, c.n + 1)], dtype=pl.String)
