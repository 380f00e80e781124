"""Solvers of the twin ODE (design §3): a numba kernel — per-patient adaptive Dormand-Prince 5(4)
(or fixed-step RK4), ``prange`` over patients, stepping exactly to events, outputs and the daily
clinic-decision boundaries, the clinic rule evaluated in the kernel — and an independent
``scipy.integrate.solve_ivp`` course (:func:`python_course`) used as the reference and as the
fallback for draws the explicit kernel cannot finish in ``MAX_STEPS`` steps.

Without numba the same kernel runs as plain Python (slow but identical arithmetic).
"""

from __future__ import annotations

import math

import numpy as np

from cartlab.errors import InputError
from cartlab.twin import model as m
from cartlab.twin.clinic import CLINIC_KEYS, N_POLICY, ClinicPolicy, clinic_decide, policy_vector
from cartlab.twin.model import (
    A_QSSA,
    NS,
    P_DELP,
    P_FVIA,
    S_CP,
    S_E,
    S_I,
    S_L0,
    S_L7,
    apply_ld,
    day_signals,
    extinguish,
    il6,
    rhs,
)

try:
    from numba import njit, prange
    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised by the no-numba subprocess test
    HAVE_NUMBA = False
    prange = range

    def njit(*_a, **_kw):
        return lambda f: f


def _install_dependency_stamp() -> None:
    """numba's on-disk cache of a function is keyed on its own source file only, so the kernels
    below would keep running a stale copy of :func:`cartlab.twin.model.rhs` after model.py or
    clinic.py change.  This locator (used for this file's functions only) adds those files' bytes
    to the cache stamp.  Without it (numba internals changed) caching stays on, stamp per file."""
    try:
        import hashlib
        from pathlib import Path

        from numba.core import caching
    except ImportError:  # pragma: no cover
        return
    here = Path(__file__).resolve()
    deps = [here.with_name("model.py"), here.with_name("clinic.py")]

    class _Stamp:
        @classmethod
        def from_function(cls, py_func, py_file):
            if Path(py_file).resolve() != here:
                return None
            return super().from_function(py_func, py_file)

        def get_source_stamp(self):
            h = hashlib.sha256(repr(super().get_source_stamp()).encode())
            for d in deps:
                h.update(d.read_bytes())
            return h.hexdigest()

    # NUMBA_CACHE_DIR (user-provided directory) first, as numba does; else the in-tree __pycache__
    class _TwinUserLocator(_Stamp, caching.UserProvidedCacheLocator):
        pass

    class _TwinLocator(_Stamp, caching.InTreeCacheLocator):
        pass

    try:
        classes = caching.CacheImpl._locator_classes
        if not any(getattr(c, "__name__", "") == "_TwinLocator" for c in classes):
            caching.CacheImpl._locator_classes = [_TwinUserLocator, _TwinLocator, *classes]
    except AttributeError:  # pragma: no cover
        return


if HAVE_NUMBA:
    _install_dependency_stamp()

__all__ = ["HAVE_NUMBA", "MAX_STEPS", "RK4_DT", "STATE_SCALE", "python_course", "solve"]

EV_CAR, EV_LD, EV_TOCI, EV_STER, EV_TRANS = 0, 1, 2, 3, 4
METHOD_DP5, METHOD_RK4, METHOD_DP5_HARD = 0, 1, 2
MAX_STEPS = 20000
RK4_DT = 1.0 / 32.0
# absolute-tolerance scale per state (atol_i = rtol * STATE_SCALE_i): 10^6 cells for cell pools,
# 10^3 cells for the blast clones (relapse timing), 0.01 pg/mL or mg/L, 0.001 x 10^9/L for counts.
STATE_SCALE = np.array([1e-3, 1e-3, 1e-3, 1e-6, 1e-6, 1e-3, 1e-3, 1e-2, 1e-2,
                        1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3])
NEG = -1.0e300

# Dormand-Prince 5(4) tableau (Hairer, Norsett & Wanner, Solving ODEs I, Table 5.2)
A21 = 1 / 5
A31, A32 = 3 / 40, 9 / 40
A41, A42, A43 = 44 / 45, -56 / 15, 32 / 9
A51, A52, A53, A54 = 19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729
A61, A62, A63, A64, A65 = 9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656
B1, B3, B4, B5, B6 = 35 / 384, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84
E1, E3, E4, E5, E6, E7 = 71 / 57600, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40
C2, C3, C4, C5 = 1 / 5, 3 / 10, 4 / 5, 8 / 9
# continuous extension (Hairer's dopri5.f, contd5)
D1, D3, D4 = -12715105075 / 11282082432, 87487479700 / 32700410799, -10690763975 / 1880347072
D5, D6, D7 = 701980252875 / 199316789632, -1453857185 / 822651844, 69997945 / 29380423


@njit(cache=True, error_model="numpy")
def _apply_events(t, y, p, ev_t, ev_k, ev_v, ie, day_lo, day_hi, eff, out_cl, cs):
    """Apply the scheduled events at time t; returns the new event index.  eff = [t_toci, t_ster].
    A recorded tocilizumab dose counts in the clinic rule's state ``cs`` (doses given, day of the first):
    under a policy the recorded doses are those before ``active_from_day``, and the rule's
    ``toci_max_doses`` is per patient, so the doses already given count toward it (review 47 A1)."""
    ne = ev_t.shape[0]
    while ie < ne and ev_t[ie] <= t:
        k = ev_k[ie]
        v = ev_v[ie]
        if k == EV_CAR:
            y[S_E] += p[P_FVIA] * v * 1e-9
        elif k == EV_LD:
            apply_ld(y, p, v)
        elif k == EV_TOCI:
            eff[0] = t
            if cs[2] == 0.0:
                cs[3] = t
            cs[2] += 1.0
        elif k == EV_STER:
            eff[1] = t
        else:
            y[S_CP] += p[P_DELP] * v
        if math.floor(t) == t and t >= day_lo and t <= day_hi and k >= EV_TOCI:
            out_cl[int(t - day_lo), k] = 1.0  # recorded intervention on that day (columns 2, 3, 4)
        ie += 1
    return ie


@njit(cache=True, error_model="numpy")
def _day(t, y, p, a, use_policy, pv, act_from, day_lo, day_hi, cs, eff, out_cl):
    """Integer day t: blast extinction, then the clinic rule; True when the state or the right-hand
    side changed (the integrator must restart at t)."""
    changed = (0.0 < y[S_L7] < 1e-9) or (0.0 < y[S_L0] < 1e-9)
    extinguish(y)
    if use_policy and t >= act_from and t >= day_lo and t <= day_hi:
        cs[4] = t
        tr, sr, pl = day_signals(t, y, p, a, eff[0], eff[1])
        ap, va, to, st, un = clinic_decide(pv, tr, sr, pl, cs)
        d = int(t - day_lo)
        out_cl[d, 0] = ap
        out_cl[d, 1] = va
        if to > 0.0:
            eff[0] = t
            out_cl[d, 2] = 1.0
            changed = True
        if st > 0.0:
            eff[1] = t
            out_cl[d, 3] = 1.0
            changed = True
        if un > 0.0:
            y[S_CP] += p[P_DELP] * un
            out_cl[d, 4] = 1.0
            changed = True
    return changed


def _boundary(t, y, p, a, ev_t, ev_k, ev_v, ie, use_policy, pv, act_from, day_lo, day_hi, cs, eff, out_cl):
    """Events at t, then (integer t) extinction and the clinic rule — the reference's hard stop."""
    ie = _apply_events(t, y, p, ev_t, ev_k, ev_v, ie, day_lo, day_hi, eff, out_cl, cs)
    if math.floor(t) == t:
        _day(t, y, p, a, use_policy, pv, act_from, day_lo, day_hi, cs, eff, out_cl)
    return ie


@njit(cache=True, error_model="numpy")
def _write_outputs(io, t, y, p, a, eff, t_out, out_y):
    """Write state ``y`` (at time ``t``) to every output time <= t from index ``io``; returns the next
    index.  With the IL-6 quasi-steady state the I column is its algebraic value."""
    T = t_out.shape[0]
    while io < T and t_out[io] <= t:
        for j in range(NS):
            out_y[io, j] = max(y[j], 0.0)  # non-negative, as the states (see the projection in _course)
        if a[A_QSSA] != 0.0:
            out_y[io, S_I] = il6(t, y, p, a, eff[1])
        io += 1
    return io


@njit(cache=True, error_model="numpy")
def _course(p, y0, a, ev_t, ev_k, ev_v, t0, t_out, day_lo, day_hi, use_policy, pv, act_from,
            rtol, atol, method, h_fixed, max_steps, out_y, out_cl):
    """One patient's course; returns the number of steps, or -1 when ``max_steps`` is exceeded.

    Events (doses, lymphodepletion, recorded interventions) are hard stops.  DP5 steps over output
    times and day boundaries and reads the state there from its 4th-order continuous extension
    (Hairer's dopri5 ``contd5``); it restarts at a day only when that day changes the state or the
    right-hand side (a clinic action, an extinct clone).  RK4 (and ``method`` DP5_HARD) stops at
    every output time and day."""
    y = y0.copy()
    yn = np.empty(NS)
    yt = np.empty(NS)
    yb = np.empty(NS)
    k1 = np.empty(NS)
    k2 = np.empty(NS)
    k3 = np.empty(NS)
    k4 = np.empty(NS)
    k5 = np.empty(NS)
    k6 = np.empty(NS)
    k7 = np.empty(NS)
    r5 = np.empty(NS)
    eff = np.empty(2)
    eff[0] = NEG
    eff[1] = NEG
    cs = np.zeros(5)
    cs[3] = -1e9
    T = t_out.shape[0]
    ne = ev_t.shape[0]
    t_end = t_out[T - 1]
    hard = method != METHOD_DP5
    t = t0
    io = 0
    io = _write_outputs(io, t, y, p, a, eff, t_out, out_y)
    ie = _apply_events(t, y, p, ev_t, ev_k, ev_v, 0, day_lo, day_hi, eff, out_cl, cs)
    nd = math.floor(t)
    if nd == t:
        _day(t, y, p, a, use_policy, pv, act_from, day_lo, day_hi, cs, eff, out_cl)
        nd += 1.0
    else:
        nd += 1.0
    h = h_fixed if method == METHOD_RK4 else 0.05
    steps = 0
    rhs(t, y, p, a, eff[0], eff[1], k1)
    while io < T:
        t_stop = t_end
        if ie < ne and ev_t[ie] < t_stop:
            t_stop = ev_t[ie]
        if hard:
            t_stop = min(t_stop, nd)
            t_stop = min(t_stop, t_out[io])
        hh = h
        last = False
        if t + hh >= t_stop:
            hh = t_stop - t
            last = True
        steps += 1
        if steps > max_steps:
            return -1
        if method == METHOD_RK4:
            for j in range(NS):
                yt[j] = y[j] + 0.5 * hh * k1[j]
            rhs(t + 0.5 * hh, yt, p, a, eff[0], eff[1], k2)
            for j in range(NS):
                yt[j] = y[j] + 0.5 * hh * k2[j]
            rhs(t + 0.5 * hh, yt, p, a, eff[0], eff[1], k3)
            for j in range(NS):
                yt[j] = y[j] + hh * k3[j]
            rhs(t + hh, yt, p, a, eff[0], eff[1], k4)
            for j in range(NS):
                yn[j] = y[j] + hh / 6.0 * (k1[j] + 2.0 * k2[j] + 2.0 * k3[j] + k4[j])
        else:
            for j in range(NS):
                yt[j] = y[j] + hh * A21 * k1[j]
            rhs(t + C2 * hh, yt, p, a, eff[0], eff[1], k2)
            for j in range(NS):
                yt[j] = y[j] + hh * (A31 * k1[j] + A32 * k2[j])
            rhs(t + C3 * hh, yt, p, a, eff[0], eff[1], k3)
            for j in range(NS):
                yt[j] = y[j] + hh * (A41 * k1[j] + A42 * k2[j] + A43 * k3[j])
            rhs(t + C4 * hh, yt, p, a, eff[0], eff[1], k4)
            for j in range(NS):
                yt[j] = y[j] + hh * (A51 * k1[j] + A52 * k2[j] + A53 * k3[j] + A54 * k4[j])
            rhs(t + C5 * hh, yt, p, a, eff[0], eff[1], k5)
            for j in range(NS):
                yt[j] = y[j] + hh * (A61 * k1[j] + A62 * k2[j] + A63 * k3[j] + A64 * k4[j] + A65 * k5[j])
            rhs(t + hh, yt, p, a, eff[0], eff[1], k6)
            for j in range(NS):
                yn[j] = y[j] + hh * (B1 * k1[j] + B3 * k3[j] + B4 * k4[j] + B5 * k5[j] + B6 * k6[j])
            rhs(t + hh, yn, p, a, eff[0], eff[1], k7)
            err = 0.0
            for j in range(NS):
                ej = hh * (E1 * k1[j] + E3 * k3[j] + E4 * k4[j] + E5 * k5[j] + E6 * k6[j] + E7 * k7[j])
                sc = atol[j] + rtol * max(abs(y[j]), abs(yn[j]))
                err += (ej / sc) ** 2
            err = math.sqrt(err / NS)
            if err > 1.0:
                h = hh * max(0.2, 0.9 * err ** -0.2)
                continue
            fac = 0.9 * err ** -0.2 if err > 0.0 else 5.0
            hn = hh * min(5.0, max(0.2, fac))
            if not (last and hn < h):
                h = hn
        tn = t_stop if last else t + hh
        # output times and integer days inside (t, tn]: dense output, restart on a change
        restart = False
        at_end = False
        changed_end = False
        have_r5 = False  # the continuous extension's coefficients, computed when a point falls inside
        while True:
            b = nd
            if io < T and t_out[io] < b:
                b = t_out[io]
            if b > tn:
                break
            if b == tn:
                at_end = True
                for j in range(NS):
                    yb[j] = yn[j]
            else:
                if not have_r5:
                    for j in range(NS):
                        r5[j] = hh * (D1 * k1[j] + D3 * k3[j] + D4 * k4[j] + D5 * k5[j] + D6 * k6[j] + D7 * k7[j])
                    have_r5 = True
                th = (b - t) / hh
                th1 = 1.0 - th
                for j in range(NS):
                    dj = yn[j] - y[j]
                    bs = hh * k1[j] - dj
                    yb[j] = y[j] + th * (dj + th1 * (bs + th * (dj - hh * k7[j] - bs + th1 * r5[j])))
            io = _write_outputs(io, b, yb, p, a, eff, t_out, out_y)
            if b == nd:
                if b == tn and ie < ne and ev_t[ie] <= tn:
                    break  # a day that is also an event time: events first, below
                nd += 1.0
                ch = _day(b, yb, p, a, use_policy, pv, act_from, day_lo, day_hi, cs, eff, out_cl)
                if ch and b < tn:
                    for j in range(NS):
                        y[j] = yb[j]
                    t = b
                    restart = True
                    break
                if ch:
                    changed_end = True
        if restart:
            rhs(t, y, p, a, eff[0], eff[1], k1)
            continue
        t = tn
        if at_end:
            for j in range(NS):
                y[j] = yb[j]
        else:
            for j in range(NS):
                y[j] = yn[j]
        # every state is a cell number or a concentration: a component that the step left below 0
        # (within the absolute tolerance of an extinct clone) is projected to 0, and the
        # right-hand side re-evaluated (Shampine, Thompson, Kierzenka & Byrne 2005, Appl Math
        # Comput 170:556, "Non-negative solutions of ODEs")
        for j in range(NS):
            if y[j] < 0.0:
                y[j] = 0.0
                changed_end = True
        if ie < ne and ev_t[ie] <= t:
            ie = _apply_events(t, y, p, ev_t, ev_k, ev_v, ie, day_lo, day_hi, eff, out_cl, cs)
            if nd == t:
                _day(t, y, p, a, use_policy, pv, act_from, day_lo, day_hi, cs, eff, out_cl)
                nd += 1.0
            changed_end = True
        if changed_end or method == METHOD_RK4:
            rhs(t, y, p, a, eff[0], eff[1], k1)
        else:
            for j in range(NS):
                k1[j] = k7[j]
    return steps


@njit(cache=True, parallel=True, error_model="numpy")
def _run_all(th, y0, aux, ev_t, ev_k, ev_v, t0, t_out, day_lo, day_hi, use_policy, pv, act_from,
             rtol, atol, method, h_fixed, max_steps, out_y, out_cl, nsteps):
    for i in prange(th.shape[0]):
        nsteps[i] = _course(th[i], y0[i], aux[i], ev_t[i], ev_k[i], ev_v[i], t0[i], t_out, day_lo, day_hi,
                            use_policy, pv, act_from, rtol, atol, method, h_fixed, max_steps, out_y[i], out_cl[i])


def _run_all_py(th, y0, aux, ev_t, ev_k, ev_v, t0, t_out, day_lo, day_hi, use_policy, pv, act_from,
                rtol, atol, method, h_fixed, max_steps, out_y, out_cl, nsteps):
    course = getattr(_course, "py_func", _course)
    for i in range(th.shape[0]):
        nsteps[i] = course(th[i], y0[i], aux[i], ev_t[i], ev_k[i], ev_v[i], t0[i], t_out, day_lo, day_hi,
                           use_policy, pv, act_from, rtol, atol, method, h_fixed, max_steps, out_y[i], out_cl[i])


# ---------------------------------------------------------------- event table
def event_table(events: m.Events, clinic: ClinicPolicy | None):
    """(ev_t, ev_k, ev_v) (n, K) sorted by time (stable: kind order CAR, LD, toci, steroid,
    transfusion at equal times), +inf padded.  With a policy, recorded interventions act only before
    ``active_from_day``."""
    n = len(events)
    cut = math.inf if clinic is None else clinic.active_from_day
    cols_t, cols_k, cols_v = [], [], []

    def add(days, vals, kind, gate):
        d = np.asarray(days, dtype=np.float64)
        if d.shape[1] == 0:
            return
        ok = np.isfinite(d) & ((d < cut) if gate else True)
        cols_t.append(np.where(ok, d, np.inf))
        cols_k.append(np.full(d.shape, kind, dtype=np.int64))
        cols_v.append(np.where(ok, np.nan_to_num(np.asarray(vals, dtype=np.float64)), 0.0))

    add(events.car_t_day, events.car_t_cells, EV_CAR, False)
    add(events.ld_day, events.ld_intensity, EV_LD, False)
    add(events.toci_day, np.ones_like(events.toci_day), EV_TOCI, True)
    add(events.steroid_day, np.ones_like(events.steroid_day), EV_STER, True)
    add(events.transfusion_day, events.transfusion_units, EV_TRANS, True)
    if not cols_t:
        return np.full((n, 0), np.inf), np.zeros((n, 0), dtype=np.int64), np.zeros((n, 0))
    et, ek, evv = np.hstack(cols_t), np.hstack(cols_k), np.hstack(cols_v)
    order = np.argsort(et, axis=1, kind="stable")  # equal times keep the CAR, LD, toci, steroid, transfusion order
    take = lambda x: np.take_along_axis(x, order, axis=1)
    return np.ascontiguousarray(take(et)), np.ascontiguousarray(take(ek)), np.ascontiguousarray(take(evv))


def _clinic_window(t_out):
    return float(math.ceil(t_out[0])), float(math.floor(t_out[-1]))


def solve(theta, baseline, events, t_out, *, clinic=None, solver="dp5", rtol=1e-6, keep_states=True,
          max_steps=MAX_STEPS, h_fixed=RK4_DT, il6="dynamic", on_failure="raise"):
    """Driver behind :func:`cartlab.twin.model.simulate`. A patient whose course exceeds ``max_steps`` is
    re-run with LSODA (counted in ``n_fallback``); if that fails too, ``on_failure`` "raise" raises its
    RuntimeError, "mark" leaves the patient's rows NaN and lists it in ``SimResult.failed`` (row -> reason)."""
    if on_failure not in ("raise", "mark"):
        raise InputError(f"on_failure must be raise or mark, not {on_failure!r}")
    t_out = np.ascontiguousarray(np.asarray(t_out, dtype=np.float64))
    if t_out.ndim != 1 or len(t_out) == 0 or np.any(np.diff(t_out) < 0):
        raise InputError("t_out must be a non-empty increasing 1-D array of days")
    n = len(baseline)
    if len(events) != n:
        raise InputError(f"{len(events)} event rows for {n} baselines")
    th = m._theta2d(theta, n)
    y0, aux = m.initial_state(th, baseline)
    aux[:, A_QSSA] = _qssa_flag(il6)
    ev_t, ev_k, ev_v = event_table(events, clinic)
    first_ev = np.min(ev_t, axis=1, initial=np.inf) if ev_t.shape[1] else np.full(n, np.inf)
    # the state of the baseline is the state at the first event (the first lymphodepletion or
    # CAR-T dose), whatever the output grid: outputs before it read that state (session 33; the
    # course started at the first output time, so a grid from day -30 or from day -7 gave different
    # courses, blasts and normal T cells growing from the earlier start)
    t0 = np.where(np.isfinite(first_ev), first_ev, t_out[0])
    day_lo, day_hi = _clinic_window(t_out)
    D = max(0, int(day_hi - day_lo) + 1)
    use_policy = clinic is not None
    pv = policy_vector(clinic) if use_policy else np.zeros(N_POLICY)
    act = float(clinic.active_from_day) if use_policy else math.inf
    act = max(act, -1e300)
    atol = rtol * STATE_SCALE
    method = {"dp5": METHOD_DP5, "rk4": METHOD_RK4, "python": METHOD_DP5, "dp5_hard": METHOD_DP5_HARD}.get(solver)
    if method is None:
        raise InputError(f"unknown solver {solver!r} (dp5, dp5_hard, rk4, python)")
    out_y = np.zeros((n, len(t_out), NS))
    out_cl = np.zeros((n, max(D, 1), 5))
    nsteps = np.zeros(n, dtype=np.int64)
    runner = _run_all if (HAVE_NUMBA and solver != "python") else _run_all_py
    runner(th, y0, aux, ev_t, ev_k, ev_v, t0, t_out, day_lo, day_hi, use_policy, pv, act,
           float(rtol), atol, method, float(h_fixed), int(max_steps), out_y, out_cl, nsteps)
    failed = np.flatnonzero(nsteps < 0)
    lost: dict[int, str] = {}
    for i in failed:  # stiff / extreme draw: implicit LSODA with the rule run in Python
        try:
            ys, cl = python_course(th[i], baseline.row(i), events.take([i]), t_out, policy=clinic,
                                   method="LSODA", rtol=rtol, return_clinic=True, il6=il6)
        except RuntimeError as exc:
            if on_failure == "raise":
                raise
            lost[int(i)] = f"DP5 exceeded {int(max_steps)} steps and the LSODA fallback failed: {exc}"
            out_y[i], out_cl[i] = np.nan, 0.0
            continue
        out_y[i] = ys
        out_cl[i] = cl
    clin = {k: out_cl[:, :D, j] > 0.5 for j, k in enumerate(CLINIC_KEYS)}
    days = np.arange(day_lo, day_hi + 1) if D else np.zeros(0)
    toci_t = _given_times(events.toci_day, clin["tocilizumab"], days, clinic)
    with np.errstate(invalid="ignore" if lost else "warn"):   # a failed patient's NaN rows stay NaN
        lat = m.latent_observables(out_y, th, baseline, t_out, clin, clinic_days=days, toci_times=_compact(toci_t),
                                   antipyretic_from=None if clinic is None else clinic.antipyretic_from,
                                   fever_c=None if clinic is None else clinic.fever_c)
    return m.SimResult(t=t_out, states=out_y if keep_states else None, latent=lat, clinic=clin,
                       clinic_days=days, n_fallback=len(failed), toci_times=toci_t,
                       steroid_times=_given_times(events.steroid_day, clin["steroid"], days, clinic),
                       transfusion_times=_given_times(events.transfusion_day, clin["platelet_transfusion"],
                                                      days, clinic),
                       n_steps=nsteps, failed=lost)


def _qssa_flag(il6_mode: str) -> float:
    if il6_mode not in ("dynamic", "qssa"):
        raise InputError(f"il6 must be 'dynamic' or 'qssa', not {il6_mode!r}")
    return 1.0 if il6_mode == "qssa" else 0.0


def _compact(times):
    """(n, Q) NaN-padded times with each row's finite values first (sorted) and the all-NaN columns
    dropped: the same set of times per patient in ~1-3 columns instead of one per clinic day (the
    observables take the latest dose before each output, whatever the column order)."""
    a = np.sort(np.asarray(times, dtype=np.float64), axis=1)  # NaN sort last
    k = int((~np.isnan(a)).sum(axis=1).max(initial=0))
    return np.ascontiguousarray(a[:, :max(k, 1)]) if a.shape[1] else a


def _given_times(recorded, flags, days, clinic):
    """(n, Q) times an intervention acted: recorded ones (before active_from_day under a policy)
    plus the rule's days."""
    rec = np.asarray(recorded, dtype=np.float64)
    if clinic is not None:
        rec = np.where(rec < clinic.active_from_day, rec, np.nan)
        rule = np.where(flags & (days[None, :] >= clinic.active_from_day), days[None, :].astype(float), np.nan)
        rec = np.hstack([rec, rule])
    return rec


# ---------------------------------------------------------------- reference / fallback course
def python_course(theta_row, baseline_row, events_row, t_out, *, clinic_log=None, policy=None,
                  method="DOP853", rtol=1e-10, atol_scale=None, return_clinic=False, il6="dynamic"):
    """One patient with ``solve_ivp`` between the same boundaries the kernel stops at (events,
    integer days, outputs).  ``clinic_log`` = dict with "toci", "steroid", "transfusion" (times)
    and "transfusion_units" from a fast run (frozen decisions), or ``policy`` = the rule in Python.
    Returns (T, 17) states (and the (D, 5) clinic array with ``return_clinic``)."""
    from scipy.integrate import solve_ivp

    t_out = np.asarray(t_out, dtype=np.float64)
    p = np.asarray(theta_row, dtype=np.float64).reshape(-1)
    y0, aux = m.initial_state(p[None, :], baseline_row)
    y = y0[0].copy()
    a = aux[0]
    a[A_QSSA] = _qssa_flag(il6)
    ev = events_row
    pol = None if clinic_log is not None else policy
    if clinic_log is not None:
        tr = np.asarray(clinic_log.get("transfusion", []), dtype=float).reshape(1, -1)
        tu = np.asarray(clinic_log.get("transfusion_units", np.ones(tr.shape[1])), dtype=float).reshape(1, -1)
        ev = m.Events(car_t_day=events_row.car_t_day, car_t_cells=events_row.car_t_cells,
                      ld_day=events_row.ld_day, ld_intensity=events_row.ld_intensity,
                      toci_day=np.asarray(clinic_log.get("toci", []), dtype=float).reshape(1, -1),
                      steroid_day=np.asarray(clinic_log.get("steroid", []), dtype=float).reshape(1, -1),
                      transfusion_day=tr, transfusion_units=tu)
    ev_t, ev_k, ev_v = (x[0] for x in event_table(ev, pol))
    ev_t = ev_t[np.isfinite(ev_t)]
    t = ev_t[0] if len(ev_t) else t_out[0]  # the baseline state is at the first event (see solve)
    day_lo, day_hi = _clinic_window(t_out)
    D = max(0, int(day_hi - day_lo) + 1)
    out = np.zeros((len(t_out), m.NS))
    cl = np.zeros((max(D, 1), 5))
    cs = np.zeros(5)
    cs[3] = -1e9
    eff = np.array([NEG, NEG])
    pv = policy_vector(pol) if pol is not None else np.zeros(N_POLICY)
    act = max(pol.active_from_day, -1e300) if pol is not None else math.inf
    atol = (rtol if atol_scale is None else atol_scale) * STATE_SCALE
    bnd = getattr(_boundary, "py_func", _boundary)
    dy = np.empty(m.NS)

    def f(tt, yy):
        rhs(tt, yy, p, a, eff[0], eff[1], dy)
        return dy.copy()

    ie, io = 0, 0
    while True:
        while io < len(t_out) and t_out[io] <= t:
            out[io] = y
            if a[A_QSSA] != 0.0:
                out[io, S_I] = m.il6(t, y, p, a, eff[1])
            io += 1
        ie = bnd(t, y, p, a, ev_t, ev_k[:len(ev_t)], ev_v[:len(ev_t)], ie, pol is not None, pv, act,
                 day_lo, day_hi, cs, eff, cl)
        if io >= len(t_out):
            break
        t_next = min(math.floor(t) + 1.0, t_out[io], ev_t[ie] if ie < len(ev_t) else math.inf)
        sol = solve_ivp(f, (t, t_next), y, method=method, rtol=rtol, atol=atol)
        if not sol.success:
            raise RuntimeError(f"solve_ivp failed on [{t}, {t_next}]: {sol.message}")
        y = sol.y[:, -1].copy()
        t = t_next
    return (out, cl) if return_clinic else out
