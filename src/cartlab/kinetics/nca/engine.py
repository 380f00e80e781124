"""The NCA engine on padded arrays (one row per subject, its samples in time order, NaN padded):
every rule of :mod:`cartlab.kinetics.nca` applied to whole arrays, in blocks of :data:`CHUNK`
subjects."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from cartlab.kinetics.nca.options import NcaOptions


def _row_sum(a: np.ndarray) -> np.ndarray:
    """Row sums added left to right: a subject's AUC must not depend on how many samples the other
    subjects of the matrix have (numpy's pairwise ``sum`` groups the terms by the padded row width)."""
    return np.cumsum(a, axis=1)[:, -1] if a.shape[1] else np.zeros(a.shape[0])

def _first_true(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first True per row and whether there is one."""
    return np.argmax(mask, axis=1), mask.any(axis=1)


def _last_true(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = mask.shape[1]
    return m - 1 - np.argmax(mask[:, ::-1], axis=1), mask.any(axis=1)


def _compact(mask: np.ndarray, arrays: Sequence[tuple[np.ndarray, Any]], width: int | None = None):
    """Move the True cells of each row to its front (order kept); returns counts and arrays."""
    s = mask.shape[0]
    cnt = mask.sum(axis=1)
    k = max(int(cnt.max()) if s else 0, 1) if width is None else width
    rank = np.cumsum(mask, axis=1) - 1
    r, c = np.nonzero(mask)
    dest = rank[r, c]
    out = []
    for a, fill in arrays:
        o = np.full((s, k), fill, dtype=a.dtype)
        o[r, dest] = a[r, c]
        out.append(o)
    return cnt, out


def _use_log(method: str, t1, c1, t2, c2, tmax) -> np.ndarray:
    """Is the segment (t1, c1) -> (t2, c2) integrated / interpolated on the log scale?"""
    if method == "linear":
        return np.zeros(np.shape(c1), dtype=bool)
    if method == "lin-up/log-down":
        return (c2 < c1) & (c2 > 0)
    pos = (c1 > 0) & (c2 > 0) & (c1 != c2)
    if method == "lin-log":
        return pos & (t2 > tmax)
    return pos  # log-up/log-down


def _seg_area(method: str, t1, c1, t2, c2, tmax) -> np.ndarray:
    dt = t2 - t1
    lin = dt * (c1 + c2) / 2.0
    if method == "linear":
        return lin
    uselog = _use_log(method, t1, c1, t2, c2, tmax)
    with np.errstate(divide="ignore", invalid="ignore"):
        lg = dt * (c2 - c1) / np.log(c2 / c1)
    return np.where(uselog, lg, lin)


def _interp(method: str, t1, c1, t2, c2, x, tmax) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        f = (x - t1) / (t2 - t1)
        lin = c1 + f * (c2 - c1)
        if method == "linear":
            return lin
        lg = np.exp(np.log(c1) + f * (np.log(c2) - np.log(c1)))
    return np.where(_use_log(method, t1, c1, t2, c2, tmax), lg, lin)


def _gather(a: np.ndarray, idx: np.ndarray, ok: np.ndarray, fill=np.nan) -> np.ndarray:
    rows = np.arange(a.shape[0])
    return np.where(ok, a[rows, np.clip(idx, 0, a.shape[1] - 1)], fill)


def _tmax_idx(c: np.ndarray, valid: np.ndarray, first: bool):
    """cmax, the index of tmax, and whether tmax exists (some value > 0)."""
    cm = np.where(valid, c, -np.inf).max(axis=1) if c.shape[1] else np.full(c.shape[0], -np.inf)
    at = valid & (c == cm[:, None])
    idx = _first_true(at)[0] if first else _last_true(at)[0]
    return cm, idx, cm > 0


# ---------------------------------------------------------------------------------------------
# the engine on padded arrays: one row per subject, its samples in time order, NaN padded


def _clean(T, C, B, n, opt: NcaOptions):
    """PKNCA ``clean.conc.blq`` + ``conc.na = "drop"``: which samples are kept, and their values."""
    s, m = T.shape
    idx = np.arange(m)[None, :]
    present = idx < n[:, None]
    w = np.where(B, 0.0, C)
    keep = present & ~np.isnan(w)
    pos = keep & (w > 0)
    ifirst, any_pos = _first_true(pos)
    ilast, _ = _last_true(pos)
    zero = keep & (w == 0)
    first = zero & np.where(any_pos[:, None], idx <= ifirst[:, None], True)
    last = zero & any_pos[:, None] & (idx > ilast[:, None])
    middle = zero & ~first & ~last
    for cat, rule in ((first, opt.blq_first), (middle, opt.blq_middle), (last, opt.blq_last)):
        if rule == "drop":
            keep = keep & ~cat
        elif rule != "keep":
            w = np.where(cat, float(rule), w)
    return keep, w


def _locate(T, W, n, x, j):
    """The samples around time x[row]; ``j`` = the number of samples at or before x."""
    s, m = T.shape
    rows = np.arange(s)
    jp = np.clip(j - 1, 0, m - 1)
    jn = np.clip(j, 0, m - 1)
    before = j == 0
    t1 = T[rows, jp]
    return {"t1": t1, "c1": W[rows, jp], "t2": T[rows, jn], "c2": W[rows, jn], "before": before,
            "exact": ~before & (t1 == x), "has_next": j < n}


def _edge(loc, x, tl_t, tmax_w, method: str) -> np.ndarray:
    """The whole profile's concentration at x (for ``aucint``): the sample there, else interpolated
    (method) up to tlast, else 0. NaN before the first sample."""
    t1, c1, t2, c2 = loc["t1"], loc["c1"], loc["t2"], loc["c2"]
    interp = _interp(method, t1, c1, t2, c2, x, tmax_w)
    out = np.where(loc["exact"], c1, np.where(x <= tl_t, interp, 0.0))
    return np.where(loc["before"], np.nan, out)


def _curve_auc(method, T, W, SA, lpi_all, a, ca, b, cb, fin, L, R, *, cut, triangle, first_tmax):
    """AUC along the curve (a, ca) -> the samples L..R-1 -> (b, cb) when ``fin`` (PKNCA
    ``pk.calc.auc`` on an interval): up to its last positive point (``cut``) or over every
    segment, plus (``triangle``) AUCall's linear triangle from that point to the next one.
    ``SA`` holds the areas of the segments between samples (None for lin-log, whose areas
    depend on the curve's tmax); ``lpi_all`` the running index of the last positive sample."""
    s, m = T.shape
    rows = np.arange(s)
    has_inner = R > L
    lc, rc = np.clip(L, 0, m - 1), np.clip(R - 1, 0, m - 1)
    tl_, cl_ = T[rows, lc], W[rows, lc]
    tr_, cr_ = T[rows, rc], W[rows, rc]
    cb = np.where(fin, cb, np.nan)
    tmax = None
    if method == "lin-log":
        sidx = np.arange(m)[None, :]
        inner = (sidx >= L[:, None]) & (sidx < R[:, None])
        imax = np.where(inner, W, -np.inf).max(axis=1)
        cend = np.where(fin, cb, -np.inf)
        cmax = np.fmax(np.fmax(ca, imax), cend)
        at = inner & (W == cmax[:, None])
        if first_tmax:
            ti = T[rows, _first_true(at)[0]]
            tmax = np.where(ca == cmax, a, np.where(imax == cmax, ti, b))
        else:
            ti = T[rows, _last_true(at)[0]]
            tmax = np.where(fin & (cend == cmax), b, np.where(imax == cmax, ti, a))
        tmax = np.where(cmax > 0, tmax, np.nan)
        SA = _seg_area(method, T[:, :-1], W[:, :-1], T[:, 1:], W[:, 1:], tmax[:, None])
    first_seg = np.where(has_inner, _seg_area(method, a, ca, tl_, cl_, tmax),
                         np.where(fin, _seg_area(method, a, ca, b, cb, tmax), 0.0))
    last_seg = np.where(has_inner & fin, _seg_area(method, tr_, cr_, b, cb, tmax), 0.0)
    lpi = np.where(R >= 1, lpi_all[rows, rc], -1)
    lpi_ok = has_inner & (lpi >= L)
    end_pos = fin & (cb > 0)
    if cut:
        up = np.where(end_pos, R - 1, np.where(lpi_ok, lpi, L))
        inc_first = end_pos | lpi_ok
        inc_last = end_pos
    else:
        up = R - 1
        inc_first = np.ones(s, dtype=bool)
        inc_last = fin & has_inner
    seg = np.arange(m - 1)[None, :]
    segs = _row_sum(np.where((seg >= L[:, None]) & (seg < up[:, None]), SA, 0.0)) if m > 1 else 0.0
    auc = np.where(inc_first, first_seg, 0.0) + segs + np.where(inc_last, last_seg, 0.0)
    if triangle:
        p = np.clip(lpi, 0, m - 1)
        t_next_p = np.where(p + 1 <= R - 1, T[rows, np.clip(p + 1, 0, m - 1)], np.where(fin, b, np.nan))
        tri_p = (t_next_p - T[rows, p]) * W[rows, p] / 2.0
        t_next_a = np.where(has_inner, tl_, np.where(fin, b, np.nan))
        tri_a = (t_next_a - a) * ca / 2.0
        tri = np.where(end_pos, 0.0, np.where(lpi_ok, tri_p, np.where(ca > 0, tri_a, 0.0)))
        auc = auc + np.where(np.isnan(tri), 0.0, tri)
    return auc


#: a fitted lambda.z counts as > 0 when lambda.z * (fit span) exceeds this: a slope within
#: rounding of 0 (e.g. symmetric log concentrations) is not a terminal phase
LAMBDA_Z_NOISE = 1e-10


def _lambda_z(T, W, cand, tlast_t, manual, fixed, opt: NcaOptions):
    """lambda.z per row from the candidate samples ``cand`` (PKNCA curve stripping, or a manual
    fit of all of them, or the fixed value). Returns a dict of arrays."""
    s, m = T.shape
    cand = cand & ~np.isfinite(fixed)[:, None]
    nc = cand.sum(axis=1)
    kmax = max(int(nc.max()) if s else 0, 1)
    rank = np.cumsum(cand, axis=1) - 1
    r, c = np.nonzero(cand)
    rev = nc[r] - 1 - rank[r, c]  # 0 = the last candidate
    X = np.zeros((s, kmax))
    Y = np.zeros((s, kmax))
    X[r, rev] = T[r, c]
    Y[r, rev] = np.log(W[r, c])
    x0, y0 = X[:, 0].copy(), Y[:, 0].copy()
    k = np.arange(1, kmax + 1, dtype=float)[None, :]
    inrange = k <= nc[:, None]
    xs = np.where(inrange, X - x0[:, None], 0.0)  # shifted by the last point: better conditioned
    ys = np.where(inrange, Y - y0[:, None], 0.0)
    sx, sy = np.cumsum(xs, axis=1), np.cumsum(ys, axis=1)
    sxx, sxy, syy = np.cumsum(xs * xs, axis=1), np.cumsum(xs * ys, axis=1), np.cumsum(ys * ys, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cxx = sxx - sx * sx / k
        cxy = sxy - sx * sy / k
        cyy = syy - sy * sy / k
        slope = cxy / cxx
        r2 = 1.0 - (cyy - cxy * slope) / cyy
        adj = np.where(k > 2, 1.0 - (1.0 - r2) * (k - 1.0) / (k - 2.0), np.nan)
        icpt = (sy - slope * sx) / k
    # lambda.z > 0 means a decline beyond rounding: more than 1e-10 (log scale) over the fit span
    lam = -slope
    declines = lam * -xs > LAMBDA_Z_NOISE
    fitted = inrange & (k >= 2)
    auto_ok = fitted & (k >= opt.min_hl_points)
    best = np.where(auto_ok & ~np.isnan(adj), adj, -np.inf).max(axis=1)
    two = (opt.min_hl_points == 2) & (nc == 2)
    with np.errstate(invalid="ignore"):
        near = adj > (best[:, None] - opt.adj_r_squared_factor)
    sel_auto = auto_ok & declines & (two[:, None] | near)
    sel_man = fitted & (k == nc[:, None]) & declines
    sel = np.where(manual[:, None], sel_man, sel_auto)
    kbest, found = _last_true(sel)
    rows = np.arange(s)

    def g(a):
        return np.where(found, a[rows, kbest], np.nan)

    fx = np.isfinite(fixed)
    lam_b = np.where(fx, fixed, g(lam))
    tfirst = np.where(found, X[rows, kbest], np.nan)
    tlz = np.where(found, x0, np.nan)
    with np.errstate(over="ignore", invalid="ignore"):
        pred = np.where(found, np.exp(y0 + g(icpt) + g(slope) * (tlast_t - x0)), np.nan)
        hl = np.log(2.0) / lam_b
    times = np.where(found[:, None] & (np.arange(kmax)[None, :] <= kbest[:, None]), X, np.nan)[:, ::-1]
    return {
        "lambda.z": lam_b, "half.life": hl, "r.squared": g(r2), "adj.r.squared": g(adj),
        "lambda.z.n.points": np.where(found, kbest + 1, 0), "lambda.z.time.first": tfirst,
        "lambda.z.time.last": tlz, "span.ratio": (tlz - tfirst) / hl, "clast.pred": pred,
        "_nc": nc, "_found": found, "_two": two & found & ~manual,
        "_best_adj": np.where(np.isfinite(best), best, np.nan), "_times": times,
    }


def _time_above(method, T, W, seg_ok, tmax_t, thr):
    """Time at or above thr over the segments ``seg_ok`` (PKNCA pk.calc.time_above)."""
    s, m = T.shape
    if m < 2:
        return np.zeros(s)
    t1, c1, t2, c2 = T[:, :-1], W[:, :-1], T[:, 1:], W[:, 1:]
    a1, a2 = c1 >= thr, c2 >= thr
    dt = t2 - t1
    with np.errstate(divide="ignore", invalid="ignore"):
        f_first = (thr - c1) / (c2 - c1)
        f_second = (c2 - thr) / (c2 - c1)
        if method != "linear" and thr > 0:
            uselog = _use_log(method, t1, c1, t2, c2, tmax_t)
            lr = np.log(c2 / c1)
            f_first = np.where(uselog, np.log(thr / c1) / lr, f_first)
            f_second = np.where(uselog, np.log(c2 / thr) / lr, f_second)
    part = np.where(a1 & a2, dt, np.where(a1, f_first * dt, np.where(a2, f_second * dt, 0.0)))
    return _row_sum(np.where(seg_ok, part, 0.0))


#: span.ratio is below min_span_ratio only when it is below by more than this, relatively: a ratio
#: that is min_span_ratio up to rounding does not warn
SPAN_RATIO_RTOL = 1e-9

#: warning codes in bit order, with their messages (numbers are in the row's columns)
_WARNINGS = (
    ("no_samples", "no sample in the interval"),
    ("all_blq", "no quantifiable sample in the interval"),
    ("one_sample", "a single measured concentration in the interval: no auclast/aucall/aucinf.obs (PKNCA)"),
    ("auc_before_first", "no sample at the start of the interval: auclast/aucall/aucinf.obs not computed "
                         "(PKNCA uses the interval's samples only; aucint.last interpolates)"),
    ("start_after_last_sample", "the interval starts after the last sample"),
    ("aucinf_finite_interval", "aucinf.obs extrapolates to infinity although the interval is finite"),
    ("too_few_points_half_life", "too few positive samples after tmax for lambda.z (min_hl_points {mhp})"),
    ("no_positive_lambda_z", "no candidate set with lambda.z > 0 within adj_r_squared_factor of the best "
                             "adjusted r.squared (PKNCA)"),
    ("two_point_half_life", "2 points used for the half-life (PKNCA)"),
    ("manual_lambda_z_invalid", "the manually selected samples give no lambda.z > 0 (needs >= 2 positive "
                                "samples)"),
    ("span_ratio_below_min", "span.ratio < {msr} (PKNCA min.span.ratio)"),
    ("aucint_no_lambda_z", "the interval reaches past tlast and lambda.z is not available: aucint is null "
                           "(aucint.last counts 0 after tlast)"),
    ("aucint_before_first", "aucint takes the concentration as 0 from the start to the first sample "
                            "(PKNCA conc.origin)"),
    ("sparse_early_sampling", "fewer than {msb} samples before tmax: the rise to the peak is sparsely sampled, "
                              "so the true peak (Cmax, Tmax) may lie between samples{linup} (see 'Sparse early "
                              "sampling' in docs/kinetics/README.md)"),
    ("above_uloq", "an upper-censored result ('>x') without a value was used as x"),
    ("no_dose_time", "no dose time for this subject: times used as given"),
    ("aucpext_high", "aucpext.obs above {mpe}% (max_aucpext): aucinf.obs rests largely on the lambda.z "
                     "extrapolation past tlast"),
)
_BIT = {code: i for i, (code, _) in enumerate(_WARNINGS)}


def _window(T, w0, ok, inc, exc, a, b, opt: NcaOptions):
    """The samples of ``[a, b]`` (PKNCA ``filter_interval``: ``start <= time <= end``), moved to the
    front of each row: raw (BLQ as 0, missing dropped) and after ``clean.conc.blq`` applied to
    the interval's own samples (PKNCA cleans the data each parameter function is given).
    ``inc``/``exc`` (manual / excluded lambda.z points) may be None when nobody has any."""
    m = T.shape[1]
    flags = [(x, False) for x in (inc, exc) if x is not None]
    inw = ok & (T >= a) & (T <= b)
    nr, (TR, WR, *FR) = _compact(inw, [(T, np.nan), (w0, np.nan), *flags], width=m)
    valid = np.arange(m)[None, :] < nr[:, None]
    keep, wc = _clean(TR, WR, np.zeros(TR.shape, dtype=bool), nr, opt)
    if np.array_equal(keep, valid):
        nc, TC, WC, FC = nr, TR, np.where(valid, wc, np.nan), FR
    else:
        nc, (TC, WC, *FC) = _compact(keep, [(TR, np.nan), (wc, np.nan), *((f, False) for f in FR)], width=m)
    it = iter(FC)
    IC = next(it) if inc is not None else np.zeros(TC.shape, dtype=bool)
    EC = next(it) if exc is not None else np.zeros(TC.shape, dtype=bool)
    return (nr, TR, WR), (nc, TC, WC, IC, EC)


def _engine(T, C, B, n, inc, exc, manual, fixed, intervals, opt: NcaOptions, threshold):
    """All rules on the padded arrays; one dict of per-subject arrays per interval."""
    s, m = T.shape
    method = opt.method
    idx = np.arange(m)[None, :]
    present = idx < n[:, None]
    w0 = np.where(B, 0.0, C)
    raw_ok = present & ~np.isnan(w0)
    # the whole profile, cleaned (aucint and aucint.last: PKNCA gives them conc.group/time.group)
    keep, w = _clean(T, C, B, n, opt)
    if np.array_equal(keep, present):
        n1, T1, W1 = n, T, np.where(present, w, np.nan)
    else:
        n1, (T1, W1) = _compact(keep, [(T, np.nan), (w, np.nan)], width=m)
    rows = np.arange(s)
    valid1 = idx < n1[:, None]
    pos1 = valid1 & (W1 > 0)
    lpi_all = np.maximum.accumulate(np.where(pos1, idx, -1), axis=1)
    tl_idx = lpi_all[:, -1]
    has_pos = tl_idx >= 0
    tl_t = np.where(has_pos, T1[rows, np.clip(tl_idx, 0, m - 1)], -np.inf)
    cl_w = np.where(has_pos, W1[rows, np.clip(tl_idx, 0, m - 1)], np.nan)
    t_end = _gather(T1, n1 - 1, n1 > 0)
    _, im_w, has_tmax_w = _tmax_idx(W1, valid1, opt.first_tmax)
    tmax_w = np.where(has_tmax_w, _gather(T1, im_w, has_tmax_w), np.nan)
    SA = None
    if method != "lin-log" and m > 1:
        SA = _seg_area(method, T1[:, :-1], W1[:, :-1], T1[:, 1:], W1[:, 1:], None)
    fixed_ok = np.isfinite(fixed)
    results = []
    for a, b in intervals:
        fin_b = math.isfinite(b)
        (nr, TR, WR), (nc, TC, WC, IC, EC) = _window(T, w0, raw_ok, inc if inc.any() else None,
                                                     exc if exc.any() else None, a, b, opt)

        # cmax, tmax, tlast, clast.obs from the raw samples of the interval (PKNCA pk.calc.cmax,
        # pk.calc.tmax, pk.calc.tlast, pk.calc.clast.obs: no BLQ cleaning; clast.obs 0 when all are 0)
        valid_r = idx < nr[:, None]
        cm, itmax, has_tmax = _tmax_idx(WR, valid_r, opt.first_tmax)
        has_w = nr > 0
        tmax = np.where(has_tmax, _gather(TR, itmax, has_tmax), np.nan)
        itl, has_tl = _last_true(valid_r & (WR > 0))
        tlast = np.where(has_tl, _gather(TR, itl, has_tl), np.nan)
        clast = np.where(has_tl, _gather(WR, itl, has_tl), np.where(has_w, 0.0, np.nan))

        # lambda.z (PKNCA pk.calc.half.life): the interval's cleaned positive samples after tmax
        valid_c = idx < nc[:, None]
        pos_c = valid_c & (WC > 0)
        with np.errstate(invalid="ignore"):
            after = (TC >= tmax[:, None]) if opt.allow_tmax_in_half_life else (TC > tmax[:, None])
        cand = pos_c & np.where(manual[:, None], IC, after & has_tmax[:, None] & ~EC)
        lz = _lambda_z(TC, WC, cand, tlast, manual, fixed, opt)
        lam = lz["lambda.z"]

        # auclast / aucall / aucinf.obs (PKNCA pk.calc.auc.last/.all/.inf.obs on the interval's
        # cleaned samples, interval c(0, Inf) from its start): NA for fewer than 2 samples, 0 when
        # all are 0, NA without a sample at the start; else to tlast (+ AUCall's triangle)
        lpi_c = np.maximum.accumulate(np.where(pos_c, idx, -1), axis=1)
        has_pos_c = lpi_c[:, -1] >= 0
        at_start = valid_c[:, 0] & (TC[:, 0] == a)
        ok = (nc > 1) & has_pos_c & at_start
        zero = (nc > 1) & ~has_pos_c
        SAc = _seg_area(method, TC[:, :-1], WC[:, :-1], TC[:, 1:], WC[:, 1:], None) \
            if method != "lin-log" and m > 1 else None
        nofin = np.zeros(s, dtype=bool)
        start = TC[:, 0]
        curves = {mode: _curve_auc(method, TC, WC, SAc, lpi_c, start, WC[:, 0], np.nan, np.full(s, np.nan),
                                   nofin, np.ones(s, dtype=np.int64), nc, cut=True, triangle=(mode == "all"),
                                   first_tmax=opt.first_tmax)
                  for mode in ("last", "all")}
        auclast = np.where(zero, 0.0, np.where(ok, curves["last"], np.nan))
        aucall = np.where(zero, 0.0, np.where(ok, curves["all"], np.nan))
        with np.errstate(divide="ignore", invalid="ignore"):
            aucinf = np.where(zero, 0.0, np.where(ok, auclast + clast / lam, np.nan))
            # PKNCA pk.calc.aucpext: 100 * (1 - auclast / aucinf), NA when aucinf <= 0 or auclast <= 0
            aucpext = np.where((aucinf > 0) & (auclast > 0), 100.0 * (1.0 - auclast / aucinf), np.nan)

        # aucint (lambda.z tail after tlast) and aucint.last (0 after tlast) on exactly [a, b], from
        # the whole cleaned profile, interpolated at the edges (PKNCA pk.calc.aucint)
        le_a = (T1 <= a).sum(axis=1)  # samples at or before a
        lt_b = (T1 < b).sum(axis=1)
        loc_a = _locate(T1, W1, n1, a, le_a)
        if fin_b:
            loc_b = _locate(T1, W1, n1, b, lt_b)
            le_b = lt_b + (loc_b["t2"] == b) * (lt_b < n1)
        else:
            le_b = n1
        tail_b = has_pos & (b > tl_t)
        hi = np.where(tail_b, tl_t, b)
        r_hi = np.where(tail_b, tl_idx, lt_b)  # samples strictly before hi
        part_ok = has_pos & (a < hi)
        if part_ok.any():
            loc_hi = _locate(T1, W1, n1, hi, np.where(tail_b, tl_idx + 1, le_b))
            c_hi = np.where(loc_hi["before"], 0.0, _edge(loc_hi, hi, tl_t, tmax_w, method))
            c_lo = np.where(loc_a["before"], 0.0, _edge(loc_a, a, tl_t, tmax_w, method))
            part = _curve_auc(method, T1, W1, SA, lpi_all, a, c_lo, np.where(part_ok, hi, a + 1.0), c_hi,
                              part_ok, le_a, np.where(part_ok, r_hi, le_a), cut=False, triangle=False,
                              first_tmax=opt.first_tmax)
            part = np.where(part_ok, part, 0.0)
        else:
            part = np.zeros(s)
        lo2 = np.maximum(a, tl_t)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            far = np.exp(-lam * (b - tl_t)) if fin_b else 0.0
            tail = cl_w / lam * (np.exp(-lam * (lo2 - tl_t)) - far)
        aucint = np.where(n1 > 1, np.where(tail_b, part + tail, part), np.nan)
        aucint_last = np.where(n1 > 1, part, np.nan)
        # aucint.all (PKNCA aucint.all, auc.type AUCall): aucint.last plus AUCall's linear triangle from
        # tlast down to the next cleaned sample (a BLQ kept as 0), the part of it inside [a, b]
        nxt = tl_idx + 1
        has_next = has_pos & (nxt < n1)
        t_nx = np.where(has_next, T1[rows, np.clip(nxt, 0, m - 1)], np.nan)
        u = np.maximum(a, tl_t)
        v = np.fmin(b, t_nx)
        tri_ok = has_next & (v > u)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            tri = cl_w / (t_nx - tl_t) * ((t_nx - u) ** 2 - (t_nx - v) ** 2) / 2.0
        aucint_all = np.where(n1 > 1, part + np.where(tri_ok, tri, 0.0), np.nan)

        with np.errstate(invalid="ignore"):
            n_before = (valid_c & (TC < tmax[:, None])).sum(axis=1)
        span = lz["span.ratio"]
        auto = ~manual & ~fixed_ok
        bits = {
            "no_samples": ~has_w,
            "all_blq": has_w & ~has_tmax,
            "one_sample": nc == 1,
            "auc_before_first": (nc > 1) & has_pos_c & ~at_start,
            "start_after_last_sample": (n1 > 0) & (a > t_end),
            "aucinf_finite_interval": fin_b & np.isfinite(aucinf),
            "too_few_points_half_life": auto & has_tmax & (lz["_nc"] < opt.min_hl_points),
            "no_positive_lambda_z": auto & (lz["_nc"] >= opt.min_hl_points) & ~lz["_found"],
            "two_point_half_life": lz["_two"],
            "manual_lambda_z_invalid": manual & ~fixed_ok & ~lz["_found"],
            # a relative tolerance: (6 - 2) / (ln 2 / (ln 2 / 2)) is 1.9999999999999996 in floating point
            "span_ratio_below_min": span < opt.min_span_ratio * (1.0 - SPAN_RATIO_RTOL),
            "aucint_no_lambda_z": tail_b & ~np.isfinite(lam),
            "aucint_before_first": (n1 > 1) & loc_a["before"] & has_pos,
            "sparse_early_sampling": has_tmax & (n_before < opt.min_samples_before_tmax),
            "aucpext_high": np.isfinite(aucpext) & (aucpext > opt.max_aucpext),
        }
        wbits = np.zeros(s, dtype=np.int64)
        for code, hit in bits.items():
            wbits |= hit.astype(np.int64) << _BIT[code]
        # times from the interval's start, as PKNCA reports them (pk.nca.interval: time - start)
        for key in ("lambda.z.time.first", "lambda.z.time.last"):
            lz[key] = lz[key] - a
        lz["_times"] = lz["_times"] - a
        res = {
            "start": np.full(s, float(a)), "end": np.full(s, float(b)), "n_samples": nc,
            "n_blq": (present & B & (T >= a) & (T <= b)).sum(axis=1),
            "cmax": np.where(has_w, cm, np.nan), "tmax": tmax - a, "tlast": tlast - a, "clast.obs": clast,
            "auclast": auclast, "aucall": aucall, "aucinf.obs": aucinf, "aucpext.obs": aucpext,
            "aucint": aucint, "aucint.last": aucint_last, "aucint.all": aucint_all,
            **lz, "persistence": tlast, "_wbits": wbits,
        }
        if threshold is not None:
            seg = np.arange(max(m - 1, 0))[None, :]
            seg_ok = seg + 1 < nr[:, None]
            tm = tmax[:, None] if method == "lin-log" else None
            res["time_above"] = np.where(nr >= 2, _time_above(method, TR, WR, seg_ok, tm, float(threshold)),
                                         np.nan)
        results.append(res)
    return results


#: subjects per engine call: bounds the temporaries (~40 arrays of CHUNK x samples) for big cohorts
CHUNK = 65_536


def _engine_chunked(T, C, B, n, inc, exc, manual, fixed, intervals, opt, threshold):
    """:func:`_engine` on blocks of :data:`CHUNK` subjects, results concatenated."""
    s = T.shape[0]
    if s <= CHUNK:
        return _engine(T, C, B, n, inc, exc, manual, fixed, intervals, opt, threshold)
    parts = [_engine(T[i:i + CHUNK], C[i:i + CHUNK], B[i:i + CHUNK], n[i:i + CHUNK], inc[i:i + CHUNK],
                     exc[i:i + CHUNK], manual[i:i + CHUNK], fixed[i:i + CHUNK], intervals, opt, threshold)
             for i in range(0, s, CHUNK)]
    merged = []
    for iv in range(len(intervals)):
        out = {}
        for key in parts[0][iv]:
            arrays = [p[iv][key] for p in parts]
            if key == "_times":
                width = max(a.shape[1] for a in arrays)
                arrays = [np.pad(a, ((0, 0), (width - a.shape[1], 0)), constant_values=np.nan) for a in arrays]
            out[key] = np.concatenate(arrays)
        merged.append(out)
    return merged

