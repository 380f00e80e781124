"""The observation rows of synthetic subjects (vitals, counts, chemistry, cytokines, neuro, kinetics, marrow)."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import polars as pl

from cartlab.datasets.synthetic.course import (
    _BM,
    _P,
    _PB,
    _PLASMA,
    _SERUM,
    _SITE_BLQ_AS_VALUE,
    _SITE_LLOQ,
    _SITE_REPORTS_RANGES,
    AML,
    PARAMS,
    SOURCE,
    SPECIMENS,
    TLBL,
    _anc_log,
    _bump,
    _car_log,
    _ids,
    _pwl,
    _round,
    _strs,
    _unit_table,
)

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
