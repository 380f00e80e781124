"""The Stein 2019 curve: C(t), its exact AUC and peak, and the quantities derived from them.

Every function is vectorised over subjects x times (see :func:`stein_log_curve` for the shapes). The
infusions and comedication of the subject(s) come as one :class:`Dosing`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from cartlab.kinetics.stein.params import _EXTRA, _FB_MAX, LN2, PARAMS, PopulationParams

__all__ = ["Dosing", "derived_quantities", "stein_auc", "stein_curve", "stein_log_curve", "stein_peak"]


@dataclass(frozen=True, eq=False)
class Dosing:
    """What happened to the subject(s) besides the first CAR-T infusion, in days from it.

    * ``t_toci``, ``t_ster``: first tocilizumab / corticosteroid (``None``, NaN or inf = none); from
      then on the expansion rate is multiplied by ``ftoci`` / ``fster``.
    * ``dose_times``, ``dose_fractions``: the infusions for ``"superpose"`` dose handling (each
      starts its own curve weighted by its share of the dose; fractions are normalised, ``None``
      = equal); ``dose_times=None`` (default) is one infusion at t = 0.

    Shapes follow the parameters': scalars for one curve, ``(n,)`` (``(n, K)`` for the infusions)
    for n subjects. ``Dosing()`` is one infusion at 0 without comedication. The fields may be
    arrays, so a Dosing compares by identity.
    """

    t_toci: Any = None
    t_ster: Any = None
    dose_times: Any = None
    dose_fractions: Any = None

    def __getitem__(self, idx: Any) -> Dosing:
        """The subjects ``idx`` (array fields indexed on their first axis)."""
        return Dosing(*(None if a is None else a[idx]
                        for a in (self.t_toci, self.t_ster, self.dose_times, self.dose_fractions)))


_NONE = Dosing()


def _params_arrays(params: Any) -> dict[str, np.ndarray]:
    if isinstance(params, PopulationParams):
        d: dict[str, Any] = params.typical()
    elif isinstance(params, pl.DataFrame):
        d = {c: params[c].to_numpy() for c in params.columns if c in PARAMS + _EXTRA}
    else:
        d = dict(params)
    missing = [p for p in PARAMS if p not in d]
    if missing:
        raise KeyError(f"missing Stein parameters: {missing}")
    out = {k: np.asarray(d[k], dtype=float) for k in PARAMS}
    out["tlag"] = np.asarray(d.get("tlag", 0.0), dtype=float)
    out["ftoci"] = np.asarray(d.get("ftoci", 1.0), dtype=float)
    out["fster"] = np.asarray(d.get("fster", 1.0), dtype=float)
    return out


def _event_time(x: Any) -> np.ndarray:
    if x is None:
        return np.asarray(np.inf)
    a = np.asarray(x, dtype=float)
    return np.where(np.isfinite(a), a, np.inf)


def _x(a: np.ndarray) -> np.ndarray:
    """Add a trailing time axis."""
    return np.asarray(a, dtype=float)[..., None]


def _expansion_integral(u, tl, tt, ts, ftoci, fster):
    """Integral of the rate multiplier m(s) from tl to u (u >= tl); m = ftoci after tt, fster after ts."""
    out = np.maximum(u - tl, 0.0)
    out = out + (ftoci - 1.0) * np.maximum(u - np.maximum(tt, tl), 0.0)
    out = out + (fster - 1.0) * np.maximum(u - np.maximum(ts, tl), 0.0)
    both = np.maximum(np.maximum(tt, ts), tl)
    out = out + (ftoci - 1.0) * (fster - 1.0) * np.maximum(u - both, 0.0)
    return out


def _shape(p):
    """The quantities both the curve and its integral derive from one parameter set:
    (alpha, beta, fb, tlag, ftoci, fster, rho, log R0, peak time)."""
    lfold = np.log(p["foldx"])
    rho = lfold / p["tmax"]
    lr0 = np.log(p["cmax"]) - lfold
    fb = np.minimum(p["fb"], _FB_MAX)
    return p["alpha"], p["beta"], fb, p["tlag"], p["ftoci"], p["fster"], rho, lr0, p["tlag"] + p["tmax"]


def _log_single(tau, p, tt, ts):
    """log C of one dose term at times ``tau`` since that dose; params have a trailing axis."""
    alpha, beta, fb, tl, ftoci, fster, rho, lr0, tpk = _shape(p)
    lexp = lr0 + rho * _expansion_integral(np.minimum(tau, tpk), tl, tt, ts, ftoci, fster)
    lpk = lr0 + rho * _expansion_integral(tpk, tl, tt, ts, ftoci, fster)
    d = np.maximum(tau - tpk, 0.0)
    ldec = lpk + np.logaddexp(np.log1p(-fb) - alpha * d, np.log(fb) - beta * d)
    out = np.where(tau < tpk, lexp, ldec)
    return np.where(tau < 0.0, -np.inf, out)


def _dose_terms(dose_times, dose_fractions):
    dt = np.asarray(dose_times, dtype=float)
    if dose_fractions is None:
        w = np.ones_like(dt)
    else:
        w = np.asarray(dose_fractions, dtype=float)
    w = np.where(np.isfinite(dt), np.nan_to_num(w, nan=0.0), 0.0)
    tot = w.sum(axis=-1, keepdims=True)
    w = w / np.where(tot > 0, tot, 1.0)
    dt = np.where(np.isfinite(dt), dt, 0.0)
    return dt, w


def stein_log_curve(t: Any, params: Any, dosing: Dosing | None = None) -> np.ndarray:
    """Natural log of :func:`stein_curve` (``-inf`` before the first infusion).

    Shapes: every parameter (and ``dosing.t_toci``/``t_ster``) has a subject shape ``S`` (``()`` for
    one curve, ``(n,)`` for n subjects, any leading batch axes allowed); ``t`` is ``(T,)`` or
    ``S + (T,)``; the result is ``S + (T,)``. ``dosing.dose_times``/``dose_fractions`` are
    ``S + (K,)`` (``"superpose"`` handling, see :mod:`cartlab.kinetics.stein`); by default one
    infusion at t = 0.
    """
    dosing = _NONE if dosing is None else dosing
    p = {k: _x(v) for k, v in _params_arrays(params).items()}
    t = np.asarray(t, dtype=float)
    if t.ndim == 0:
        return stein_log_curve(t[None], params, dosing)[..., 0]
    tt = _x(_event_time(dosing.t_toci))
    ts = _x(_event_time(dosing.t_ster))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if dosing.dose_times is None:
            return _log_single(t, p, tt, ts)
        dt, w = _dose_terms(dosing.dose_times, dosing.dose_fractions)
        out = None
        for k in range(dt.shape[-1]):
            tk = _x(dt[..., k])
            term = np.log(_x(w[..., k])) + _log_single(t - tk, p, tt - tk, ts - tk)
            out = term if out is None else np.logaddexp(out, term)
        return out


def stein_curve(t: Any, params: Any, dosing: Dosing | None = None) -> np.ndarray:
    """The Stein 2019 curve C(t) (copies/ug) -- vectorised over subjects x times.

    ``params``: a mapping (or polars frame, or :class:`PopulationParams` for the typical curve)
    with ``foldx, tmax, cmax, alpha, fb, beta`` and optionally ``tlag, ftoci, fster``; each a
    scalar or an array of subjects. ``dosing``: a :class:`Dosing` (shapes as
    :func:`stein_log_curve`).

    >>> from cartlab.kinetics.stein import STEIN_2019
    >>> round(float(stein_curve(9.3, STEIN_2019)), 6)
    24000.0
    """
    return np.exp(stein_log_curve(t, params, dosing))


def _expm1_over(r, u):
    """(exp(r u) - 1) / r with the r -> 0 limit u."""
    ru = r * u
    small = np.abs(ru) < 1e-10
    safe_r = np.where(small, 1.0, r)
    return np.where(small, u * (1.0 + 0.5 * ru), np.expm1(ru) / safe_r)


def _F_single(T, p, tt, ts):
    """Integral from 0 to T (arrays of shape S) of one dose term."""
    alpha, beta, fb, tl, ftoci, fster, rho, _, tpk = _shape(p)
    r0 = p["cmax"] / p["foldx"]
    F = r0 * np.clip(T, 0.0, tl)
    e1 = np.minimum(tt, ts)
    e2 = np.maximum(tt, ts)
    f_first = np.where(tt <= ts, ftoci, fster)
    a0, a1, a2 = tl, np.clip(e1, tl, tpk), np.clip(e2, tl, tpk)
    r1, r2, r3 = rho, rho * f_first, rho * ftoci * fster
    c0 = r0
    c1 = c0 * np.exp(r1 * (a1 - a0))
    c2 = c1 * np.exp(r2 * (a2 - a1))
    cpk = c2 * np.exp(r3 * (tpk - a2))
    for c, r, a, b in ((c0, r1, a0, a1), (c1, r2, a1, a2), (c2, r3, a2, tpk)):
        F = F + c * _expm1_over(r, np.clip(T, a, b) - a)
    d = np.maximum(T - tpk, 0.0)
    F = F + cpk * ((1.0 - fb) * (-np.expm1(-alpha * d)) / alpha + fb * (-np.expm1(-beta * d)) / beta)
    return F


def stein_auc(t0: Any, t1: Any, params: Any, dosing: Dosing | None = None) -> np.ndarray:
    """Exact (analytical) AUC of the curve from ``t0`` to ``t1`` (copies*d/ug), shape ``S``.

    The curve is a sum of exponential pieces, each integrated in closed form.

    >>> from cartlab.kinetics.stein import STEIN_2019
    >>> round(float(stein_auc(0, 28, STEIN_2019)))
    171774
    """
    dosing = _NONE if dosing is None else dosing
    p = _params_arrays(params)
    tt, ts = _event_time(dosing.t_toci), _event_time(dosing.t_ster)
    t0 = np.asarray(t0, dtype=float)
    t1 = np.asarray(t1, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if dosing.dose_times is None:
            return _F_single(t1, p, tt, ts) - _F_single(t0, p, tt, ts)
        dt, w = _dose_terms(dosing.dose_times, dosing.dose_fractions)
        out = 0.0
        for k in range(dt.shape[-1]):
            tk = dt[..., k]
            fk = _F_single(t1 - tk, p, tt - tk, ts - tk) - _F_single(t0 - tk, p, tt - tk, ts - tk)
            out = out + w[..., k] * fk
        return np.asarray(out)


def stein_peak(params: Any, dosing: Dosing | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact peak (Cmax, Tmax) of the curve.

    Every piece is convex in t (constant, a rising exponential, or a positive sum of decaying
    exponentials), so the maximum lies at a breakpoint: an infusion, the end of the lag, the end
    of expansion of a dose term, or a comedication start. All are evaluated. Where the curve is not
    defined (NaN parameters: a subject that was not fitted) both are NaN.
    """
    dosing = _NONE if dosing is None else dosing
    p = _params_arrays(params)
    shape = np.broadcast_shapes(*(v.shape for v in p.values()), np.shape(_event_time(dosing.t_toci)),
                                np.shape(_event_time(dosing.t_ster)))
    tl = np.broadcast_to(p["tlag"], shape)
    tpk = np.broadcast_to(p["tlag"] + p["tmax"], shape)
    tt = np.broadcast_to(_event_time(dosing.t_toci), shape)
    ts = np.broadcast_to(_event_time(dosing.t_ster), shape)
    if dosing.dose_times is None:
        dts = [np.zeros(shape)]
    else:
        dt, _ = _dose_terms(dosing.dose_times, dosing.dose_fractions)
        dt = np.broadcast_to(dt, shape + dt.shape[-1:])
        dts = [dt[..., k] for k in range(dt.shape[-1])]
    cands = []
    for tk in dts:
        cands += [tk, tk + tl, tk + tpk]
    cands += [np.where(np.isfinite(tt), tt, 0.0), np.where(np.isfinite(ts), ts, 0.0)]
    cand = np.maximum(np.stack(cands, axis=-1), 0.0)
    lc = stein_log_curve(cand, params, dosing)
    i = np.argmax(lc, axis=-1)
    cmax = np.exp(np.take_along_axis(lc, i[..., None], axis=-1)[..., 0])
    tmax = np.take_along_axis(cand, i[..., None], axis=-1)[..., 0]
    # no curve (a subject not fitted: NaN parameters): no Tmax either, not the first candidate's day 0
    # (argmax over all-NaN returns 0; review 41 F2)
    tmax = np.where(np.any(np.isfinite(lc), axis=-1), tmax, np.nan)
    return cmax, tmax


def derived_quantities(params: Any, dosing: Dosing | None = None, *,
                       auc_window: tuple[float, float] = (0.0, 28.0)) -> dict[str, np.ndarray]:
    """rho, R0, doubling time ln2/rho, t1/2 alpha and beta, and the fitted curve's Cmax, Tmax and
    AUC0-28 (analytical) as ``stein_cmax``, ``stein_tmax``, ``stein_auc_0_28``: model-based, so not
    named like the NCA (observed) ``car_cmax``/``car_tmax``/``car_auc_0_28`` of ``subject_summary.csv``."""
    p = _params_arrays(params)
    rho = np.log(p["foldx"]) / p["tmax"]
    cmax, tmax = stein_peak(params, dosing)
    return {
        "rho": rho,
        "r0": p["cmax"] / p["foldx"],
        "doubling_time": LN2 / rho,
        "t_half_alpha": LN2 / p["alpha"],
        "t_half_beta": LN2 / p["beta"],
        "stein_cmax": cmax,
        "stein_tmax": tmax,
        "stein_auc_0_28": stein_auc(auc_window[0], auc_window[1], params, dosing),
    }
