"""Reference implementations the benchmarks compare against.

They are deliberately straightforward: what one would write without a columnar library.
"""

from __future__ import annotations

import csv
import math
from datetime import date, datetime
from pathlib import Path

import yaml

from cartlab.units import UnitError, conversion

PARAMS_FILE = Path(__file__).resolve().parents[1] / "src" / "cartlab" / "io" / "params_v1.yaml"
REQUIRED = ("subject_id", "param")


def _number(text: str) -> float | None:
    """Parse a numeric cell; ``None`` when empty, ``nan`` when not a number."""
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return math.nan


def rowwise_observations(folder: str | Path) -> dict:
    """Validate and convert ``observations.csv`` row by row (csv.DictReader, pure Python).

    Per row: required columns present, day or an anchored datetime, numbers parse, the param is
    in the dictionary, the unit converts (conversion factors cached per (param, unit)), the value
    is plausible. Converted rows are kept in a list, like a naive importer would.
    """
    folder = Path(folder)
    params = yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8"))["params"]
    anchors: dict[str, date] = {}
    with open(folder / "subjects.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row.get("infusion_date"):
                anchors[row["subject_id"]] = date.fromisoformat(row["infusion_date"])

    factors: dict[tuple[str, str], tuple[float, float] | None] = {}

    def factor(code: str, unit: str) -> tuple[float, float] | None:
        key = (code, unit)
        if key not in factors:
            p = params[code]
            canon = str(p["unit"])
            try:
                if canon == "":
                    factors[key] = (1.0, 0.0) if unit in ("", "score", "points") else None
                else:
                    src = unit or p.get("empty_unit")
                    if src:
                        c = conversion(src, canon, p.get("molar_mass_g_mol"), p.get("equivalents_per_mol"))
                        factors[key] = (c.scale, c.offset)
                    else:
                        factors[key] = None
            except UnitError:
                factors[key] = None
        return factors[key]

    rows: list[tuple] = []
    errors: list[tuple[int, str, str]] = []
    with open(folder / "observations.csv", newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh), start=1):
            if any(not (row.get(c) or "").strip() for c in REQUIRED):
                errors.append((i, "subject_id/param", "required value missing"))
                continue
            code = row["param"].strip().upper()
            p = params.get(code)
            if p is None:
                errors.append((i, "param", f"unknown param {code!r}"))
                continue
            day = _number(row.get("day", ""))
            if day is None:
                stamp = (row.get("datetime") or "").strip()
                anchor = anchors.get(row["subject_id"])
                if not stamp or anchor is None:
                    errors.append((i, "day", "neither day nor an anchored datetime"))
                    continue
                when = datetime.fromisoformat(stamp)
                day = (when - datetime(anchor.year, anchor.month, anchor.day)).total_seconds() / 86400
            value = _number(row.get("value", ""))
            text = (row.get("value_text") or "").strip()
            if value is None and not text:
                errors.append((i, "value", "neither value nor value_text"))
                continue
            unit = (row.get("unit") or "").strip()
            converted = []
            for col in ("value", "lln", "uln", "lloq"):
                x = value if col == "value" else _number(row.get(col, ""))
                if x is None:
                    converted.append(None)
                    continue
                if math.isnan(x):
                    errors.append((i, col, "not a number"))
                    break
                f = factor(code, unit)
                if f is None:
                    errors.append((i, "unit", f"unit {unit!r} not convertible for {code}"))
                    break
                converted.append(f[0] * x + f[1])
            else:
                v = converted[0]
                lo, hi = p.get("plausible", (-math.inf, math.inf))
                if v is not None and not lo <= v <= hi:
                    errors.append((i, "value", f"{v} outside plausible range"))
                    continue
                rows.append((row["subject_id"], day, code, row.get("analyte") or None, v, text or None,
                             str(p["unit"]), *converted[1:], row.get("specimen") or None))
    return {"observations": len(rows), "errors": len(errors)}


# ---------------------------------------------------------------------------------------------
# CTCAE v5 lab grading, one row at a time (the reference for bench_ctcae.py and bench_grading.py)

#: column order of the rows rowwise_ctcae() takes
CTCAE_COLUMNS = ("term", "direction", "aval", "anrlo", "anrhi", "base", "bnrind", "pchg", "unit")


def _signif(x: float, digits: int = 15) -> float:
    """R's signif(x, digits) for one number (see cartlab.grading.ctcae.signif)."""
    if x == 0 or not math.isfinite(x):
        return x
    a = abs(x)
    k = max(-300, min(300, digits - 1 - math.floor(math.log10(a))))
    scaled = a * 10.0**k if k > 0 else a / 10.0 ** (-k)
    if scaled < 10.0 ** (digits - 1):
        k += 1
    elif scaled >= 10.0**digits:
        k -= 1
    r = round(a * 10.0**k) / 10.0**k if k > 0 else round(a / 10.0 ** (-k)) * 10.0 ** (-k)
    return -r if x < 0 else r


def _gt(x, y):  # signif comparison, False when an operand is missing (R's case_when NA -> FALSE)
    return x is not None and y is not None and _signif(x) > _signif(y)


def _lt(x, y):
    return x is not None and y is not None and _signif(x) < _signif(y)


def _ge(x, y):
    return x is not None and y is not None and _signif(x) >= _signif(y)


def _le(x, y):
    return x is not None and y is not None and _signif(x) <= _signif(y)


def _mul(f, x):
    return None if x is None else f * x


def _add(x, o):
    return None if x is None else x + o


def _low_counts(g4, g3, g2):
    def grade(aval, lln, uln, base, high, pchg):
        if _lt(aval, g4):
            return 4
        if _lt(aval, g3):
            return 3
        if _lt(aval, g2):
            return 2
        if lln is None:
            return None
        return 1 if _lt(aval, lln) else 0
    return grade


def _liver(f4, f3, f2, g1_base, g1_inclusive):
    def grade(aval, lln, uln, base, high, pchg):
        if uln is None:
            return None
        if not high:
            for g, f in ((4, f4), (3, f3), (2, f2), (1, 1)):
                if _gt(aval, f * uln):
                    return g
            return 0
        for g, f in ((4, f4), (3, f3), (2, f2)):
            if _gt(aval, _mul(f, base)):
                return g
        hit = _ge if g1_inclusive else _gt
        return 1 if hit(aval, _mul(g1_base, base)) else 0
    return grade


def _high_counts(g4, g3, g2):
    """Fixed cut-offs for grades 4/3/2 (None = no such grade), then grade 1 above ULN."""
    def grade(aval, lln, uln, base, high, pchg):
        for g, cut in ((4, g4), (3, g3), (2, g2)):
            if cut is not None and _gt(aval, cut):
                return g
        if uln is None:
            return None
        return 1 if _gt(aval, uln) else 0
    return grade


def _leukocytosis(aval, lln, uln, base, high, pchg):
    return 3 if _gt(aval, 100) else 0


def _lymphocytes_high(aval, lln, uln, base, high, pchg):
    if _gt(aval, 20):
        return 3
    return 2 if _gt(aval, 4) else 0


def _hemoglobin_high(aval, lln, uln, base, high, pchg):
    if uln is None:
        return None
    if _gt(aval, _add(uln, 40)):
        return 3
    if _gt(aval, _add(uln, 20)):
        return 2
    return 1 if _gt(aval, uln) else 0


def _anemia(aval, lln, uln, base, high, pchg):
    if _lt(aval, 80):
        return 3
    if _lt(aval, 100):
        return 2
    if lln is None:
        return None
    return 1 if _lt(aval, lln) else 0


def _creatinine(aval, lln, uln, base, high, pchg):
    if _gt(aval, _mul(6, uln)):
        return 4
    if _gt(aval, _mul(3, uln)) or _gt(aval, _mul(3, base)):
        return 3
    if _gt(aval, _mul(1.5, uln)) or _gt(aval, _mul(1.5, base)):
        return 2
    if uln is None:
        return None
    return 1 if _gt(aval, uln) else 0


def _fibrinogen(aval, lln, uln, base, high, pchg):
    if _lt(aval, 0.5):
        return 4
    if lln is None:
        return None
    below = _lt(aval, lln)
    if _lt(aval, 0.25 * lln) or (below and _le(pchg, -75)):
        return 4
    if _lt(aval, 0.5 * lln) or (below and _le(pchg, -50)):
        return 3
    if _lt(aval, 0.75 * lln) or (below and _le(pchg, -25)):
        return 2
    return 1 if below else 0


def _hypokalemia(aval, lln, uln, base, high, pchg):
    if _lt(aval, 2.5):
        return 4
    if _lt(aval, 3):
        return 3
    if lln is None:
        return None
    return 2 if _lt(aval, lln) else 0  # admiral: assume "symptomatic"


def _hyponatremia(aval, lln, uln, base, high, pchg):
    if _lt(aval, 120):
        return 4
    if _lt(aval, 130):  # "125-129" read as [125, 130) (ctcae_v5.yaml, hyponatremia; admiral: <= 129)
        return 3  # admiral: assume "symptomatic"
    if lln is None:
        return None
    return 1 if _lt(aval, lln) else 0


def _inr(aval, lln, uln, base, high, pchg):  # admiral: assume "on anticoagulation"
    if _gt(aval, 2.5) or _gt(aval, _mul(2.5, base)):
        return 3
    if _gt(aval, 1.5) or _gt(aval, _mul(1.5, base)):
        return 2
    if _gt(aval, 1.2) or _gt(aval, base):
        return 1
    if base is None:
        return None
    return 0


def _ldh(aval, lln, uln, base, high, pchg):  # CTCAE v5.0 "Blood lactate dehydrogenase increased": grade 1 >ULN only
    if uln is None:
        return None
    return 1 if _gt(aval, uln) else 0


#: (TERM, DIRECTION) -> (unit required or None, grading function); CTCAE v5.0, SI units, with
#: the thresholds of admiral's ncictcaev5.json
_CTCAE_RULES = {
    ("NEUTROPHIL COUNT DECREASED", "L"): ("10^9/L", _low_counts(0.5, 1, 1.5)),
    ("PLATELET COUNT DECREASED", "L"): ("10^9/L", _low_counts(25, 50, 75)),
    ("WHITE BLOOD CELL DECREASED", "L"): ("10^9/L", _low_counts(1, 2, 3)),
    ("LYMPHOCYTE COUNT DECREASED", "L"): ("10^9/L", _low_counts(0.2, 0.5, 0.8)),
    ("ANEMIA", "L"): ("g/L", _anemia),
    ("ALANINE AMINOTRANSFERASE INCREASED", "H"): (None, _liver(20, 5, 3, 1.5, True)),
    ("ASPARTATE AMINOTRANSFERASE INCREASED", "H"): (None, _liver(20, 5, 3, 1.5, True)),
    ("BLOOD BILIRUBIN INCREASED", "H"): (None, _liver(10, 3, 1.5, 1, False)),
    ("CREATININE INCREASED", "H"): (None, _creatinine),
    ("FIBRINOGEN DECREASED", "L"): ("g/L", _fibrinogen),
    ("HYPOKALEMIA", "L"): ("mmol/L", _hypokalemia),
    ("HYPONATREMIA", "L"): ("mmol/L", _hyponatremia),
    ("INR INCREASED", "H"): (None, _inr),
    # the other terms derive_ctcae grades on cartlab's synthetic cohort (benchmarks/bench_grading.py)
    ("HEMOGLOBIN INCREASED", "H"): ("g/L", _hemoglobin_high),
    ("LEUKOCYTOSIS", "H"): ("10^9/L", _leukocytosis),
    ("LYMPHOCYTE COUNT INCREASED", "H"): ("10^9/L", _lymphocytes_high),
    ("HYPERKALEMIA", "H"): ("mmol/L", _high_counts(7, 6, 5.5)),
    ("HYPERNATREMIA", "H"): ("mmol/L", _high_counts(160, 155, 150)),
    ("BLOOD LACTATE DEHYDROGENASE INCREASED", "H"): (None, _ldh),  # graded since session 39
}


def _bounded(grade, direction: str, aval, lln, uln, base, high, pchg):
    """A missing LLN/ULN (session 39, review 39 R39-4): the grade with that limit at its most and least
    favourable (0 and 1e12); the lowest of them when the value bounds the grade, None when the bound is 0
    up to the term's top grade (the grade at an extreme value with the limits against it) or a corner
    cannot be graded."""
    g = grade(aval, lln, uln, base, high, pchg)
    if g is not None or (lln is not None and uln is not None):
        return g
    corners = [grade(aval, lo, hi, base, high, pchg) for lo in ((0.0, 1e12) if lln is None else (lln,))
               for hi in ((0.0, 1e12) if uln is None else (uln,))]
    if any(c is None for c in corners):
        return None
    extreme = (0.0, 1e12, 1e12) if direction == "L" else (1e12, 0.0, 0.0)
    tops = [grade(*extreme, b, h, p) for b in (None, 1.0) for h in (False, True) for p in (None, -100.0, 1e6)]
    top = max(t for t in tops if t is not None)
    lo, hi = min(corners), max(corners)
    return None if lo == 0 and hi == top else lo


def rowwise_ctcae(rows, high_indicator: tuple[str, ...] = ("HIGH",), bounded: bool = True) -> list[int | None]:
    """Grade rows (tuples in CTCAE_COLUMNS order) one at a time with hand-written rules.

    Covers the 13 SI terms of the ctcae benchmark and the 5 further terms of the grading benchmark
    (the 18 terms derive_ctcae grades on the synthetic cohort); other terms, a wrong or missing unit
    where the term checks units, or a missing AVAL give None — as cartlab's engine does. ``bounded``: a
    missing LLN/ULN gives the lowest grade the value allows (:func:`_bounded`, cartlab since session 39);
    False: None, as admiral's vectors expect.
    """
    rules = {(t, d): (u.upper() if u else None, f) for (t, d), (u, f) in _CTCAE_RULES.items()}
    out: list[int | None] = []
    for term, direction, aval, anrlo, anrhi, base, bnrind, pchg, unit in rows:
        rule = rules.get(((term or "").strip().upper(), (direction or "").strip().upper()))
        if rule is None or aval is None:
            out.append(None)
            continue
        need, grade = rule
        if need is not None and (unit or "").strip().upper() != need:
            out.append(None)
            continue
        if not bounded:  # admiral's reading: a missing limit is not gradable
            out.append(grade(aval, anrlo, anrhi, base, bnrind in high_indicator, pchg))
            continue
        out.append(_bounded(grade, (direction or "").strip().upper(), aval, anrlo, anrhi, base,
                            bnrind in high_indicator, pchg))
    return out


# ---------------------------------------------------------------------------------------------
# NCA, one subject at a time (the reference for bench_nca.py and tests/test_nca.py)
#
# The rules of cartlab.kinetics.nca (PKNCA's documented rules; see that module's docstring),
# written the straightforward way: group the rows by subject, then per subject and interval
# plain Python lists and the math module; every lambda.z candidate set is fitted from scratch.

import re as _re  # noqa: E402 - used by the NCA baseline only

_NCA_CENSORED = _re.compile(r"^\s*(<=|>=|<|>|≤|≥)\s*([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$")


class _NcaDefaults:
    method = "lin-up/log-down"
    blq_first, blq_middle, blq_last = "keep", "drop", "keep"
    min_hl_points = 3
    allow_tmax_in_half_life = False
    adj_r_squared_factor = 1e-4
    min_span_ratio = 2.0
    max_aucpext = 20.0
    first_tmax = True
    lambda_z_times: dict = {}
    lambda_z_range: dict = {}
    lambda_z_exclude: dict = {}
    lambda_z_fixed: dict = {}
    time_from = "first"
    min_samples_before_tmax = 3


def _nca_use_log(method, t1, c1, t2, c2, tmax):
    if method == "linear":
        return False
    if method == "lin-up/log-down":
        return c2 < c1 and c2 > 0
    pos = c1 > 0 and c2 > 0 and c1 != c2
    if method == "lin-log":
        return pos and tmax is not None and t2 > tmax
    return pos


def _nca_area(method, t1, c1, t2, c2, tmax):
    if _nca_use_log(method, t1, c1, t2, c2, tmax):
        return (t2 - t1) * (c2 - c1) / math.log(c2 / c1)
    return (t2 - t1) * (c1 + c2) / 2.0


def _nca_interp(method, t1, c1, t2, c2, x, tmax):
    f = (x - t1) / (t2 - t1)
    if _nca_use_log(method, t1, c1, t2, c2, tmax):
        return math.exp(math.log(c1) + f * (math.log(c2) - math.log(c1)))
    return c1 + f * (c2 - c1)


def _nca_tmax(ts, cs, first):
    """(cmax, index of tmax or None)."""
    if not cs:
        return None, None
    cmax = max(cs)
    if cmax <= 0:
        return cmax, None
    hits = [i for i, c in enumerate(cs) if c == cmax]
    return cmax, hits[0] if first else hits[-1]


def _nca_conc_at(method, ts, cs, x, tlast, tmax, mode):
    """conc of the cleaned profile at x: None before the first sample; after tlast 0 ("last")
    or the AUCall triangle ("all")."""
    j = 0
    while j < len(ts) and ts[j] <= x:
        j += 1
    if j == 0:
        return None
    t1, c1 = ts[j - 1], cs[j - 1]
    if t1 == x:
        return c1
    if tlast is not None and x <= tlast:
        return _nca_interp(method, t1, c1, ts[j], cs[j], x, tmax)
    if mode == "all" and c1 > 0 and j < len(ts):
        return c1 * (ts[j] - x) / (ts[j] - t1)
    return 0.0


def _nca_curve_auc(method, pts, first_tmax, cut, triangle):
    """AUC along points [(t, c)]: to the last positive point (cut) or all; + AUCall triangle."""
    last_pos = None
    for i, (_, c) in enumerate(pts):
        if c > 0:
            last_pos = i
    tmax = None
    if method == "lin-log":
        _, im = _nca_tmax([p[0] for p in pts], [p[1] for p in pts], first_tmax)
        tmax = pts[im][0] if im is not None else None
    end = len(pts) - 1
    if cut:
        if last_pos is None:
            return 0.0
        end = last_pos
    auc = 0.0
    for i in range(end):
        (t1, c1), (t2, c2) = pts[i], pts[i + 1]
        auc += _nca_area(method, t1, c1, t2, c2, tmax)
    if triangle and last_pos is not None and last_pos < len(pts) - 1:
        (t1, c1), (t2, _) = pts[last_pos], pts[last_pos + 1]
        auc += (t2 - t1) * c1 / 2.0
    return auc


def _nca_fits(xs, ys, tlast, kmin):
    """Least squares ln(conc) ~ time of the last k points for every k >= kmin, adding one point
    at a time from the last one backwards (running sums relative to the last point)."""
    n = len(xs)
    x0, y0 = xs[-1], ys[-1]
    sx = sy = sxx = sxy = syy = 0.0
    fits = []
    for k in range(1, n + 1):
        x, y = xs[n - k] - x0, ys[n - k] - y0
        sx += x
        sy += y
        sxx += x * x
        sxy += x * y
        syy += y * y
        if k < max(kmin, 2):
            continue
        cxx = sxx - sx * sx / k
        cxy = sxy - sx * sy / k
        cyy = syy - sy * sy / k
        slope = cxy / cxx
        r2 = 1.0 - (cyy - cxy * slope) / cyy if cyy != 0 else math.nan
        adj = 1.0 - (1.0 - r2) * (k - 1.0) / (k - 2.0) if k > 2 else math.nan
        icpt = (sy - slope * sx) / k
        fits.append({"lambda.z": -slope, "r.squared": r2, "adj.r.squared": adj,
                     # no positive raw sample (only imputed BLQ values): no tlast, no predicted clast
                     "clast.pred": math.exp(y0 + icpt + slope * (tlast - x0)) if tlast is not None else math.nan,
                     "lambda.z.time.first": xs[n - k], "lambda.z.time.last": x0, "lambda.z.n.points": k,
                     "_declines": -slope * -x > 1e-10})
    return fits


def _nca_clean(kept, o):
    """PKNCA clean.conc.blq over the samples given, [(t, c)] with BLQ as 0: first/middle/last."""
    pos_idx = [i for i, (_, c) in enumerate(kept) if c > 0]
    clean = []
    for i, (t, c) in enumerate(kept):
        if c == 0:
            if not pos_idx or i < pos_idx[0]:
                rule = o.blq_first
            elif i > pos_idx[-1]:
                rule = o.blq_last
            else:
                rule = o.blq_middle
            if rule == "drop":
                continue
            if rule != "keep":
                c = float(rule)
        clean.append((t, c))
    return clean


def _nca_profile(sid, samples, intervals, o, offset_known, above, threshold=None):
    """All results of one subject: samples = [(time, conc or None, blq)] sorted by time.

    Per interval, as PKNCA's pk.nca: the PKNCA-named columns from the samples in [start, end]
    only (raw for cmax/tmax/tlast/clast.obs/time_above, BLQ-cleaned within the interval for the
    AUCs and lambda.z), times from the start; aucint/aucint.last from the whole cleaned profile."""
    method = o.method
    # BLQ rows -> 0, missing dropped
    kept = [(t, 0.0 if b else c) for t, c, b in samples if b or (c is not None and not math.isnan(c))]
    clean = _nca_clean(kept, o)
    ts = [t for t, _ in clean]
    cs = [c for _, c in clean]
    n1 = len(ts)
    tl_w = None
    for t, c in clean:
        if c > 0:
            tl_w, cl_w = t, c
    _, im_w = _nca_tmax(ts, cs, o.first_tmax)
    tmax_w = ts[im_w] if im_w is not None else None
    # the subject's own lambda.z entry, else the None default of lambda_z_range / lambda_z_fixed
    own = any(sid in getattr(o, name) for name in
              ("lambda_z_times", "lambda_z_range", "lambda_z_fixed", "lambda_z_exclude"))
    fixed = o.lambda_z_fixed.get(sid) if own else o.lambda_z_fixed.get(None)
    rng = o.lambda_z_range.get(sid) if own else o.lambda_z_range.get(None)
    in_manual = None
    if sid in o.lambda_z_times:
        manual = set(float(x) for x in o.lambda_z_times[sid])
        in_manual = lambda t: t in manual  # noqa: E731
    elif rng is not None:
        lo_r, hi_r = rng
        in_manual = lambda t: lo_r <= t <= hi_r  # noqa: E731
    excluded = set(float(x) for x in o.lambda_z_exclude.get(sid, ()))
    out = []
    for a, b in intervals:
        res: dict = {"subject": sid, "start": a, "end": b}
        raw = [(t, c) for t, c in kept if a <= t <= b]
        win = _nca_clean(raw, o)
        res["n_samples"] = len(win)
        res["n_blq"] = sum(1 for t, _, bq in samples if bq and a <= t <= b)
        cmax, imr = _nca_tmax([t for t, _ in raw], [c for _, c in raw], o.first_tmax)
        res["cmax"] = cmax
        tmax = raw[imr][0] if imr is not None else None
        tlast = clast = None
        for t, c in raw:
            if c > 0:
                tlast, clast = t, c
        if raw and tlast is None:
            clast = 0.0  # pk.calc.clast.obs: 0 when every concentration is 0
        res["clast.obs"] = clast
        # lambda.z
        lz = None
        nc = 0
        two = False
        if fixed is None:
            if in_manual is not None:
                cand = [(t, c) for t, c in win if c > 0 and in_manual(t)]
                nc = len(cand)
                if nc >= 2:
                    fit = _nca_fits([t for t, _ in cand], [math.log(c) for _, c in cand], tlast, nc)[-1]
                    if fit["_declines"]:
                        lz = fit
            elif tmax is not None:
                cand = [(t, c) for t, c in win
                        if c > 0 and (t >= tmax if o.allow_tmax_in_half_life else t > tmax) and t not in excluded]
                nc = len(cand)
                if nc >= o.min_hl_points:
                    xs = [t for t, _ in cand]
                    ys = [math.log(c) for _, c in cand]
                    fits = _nca_fits(xs, ys, tlast, o.min_hl_points)
                    adjs = [f["adj.r.squared"] for f in fits if not math.isnan(f["adj.r.squared"])]
                    best = max(adjs) if adjs else -math.inf
                    two = o.min_hl_points == 2 and nc == 2
                    for f in fits:
                        if f["_declines"] and (two or f["adj.r.squared"] > best - o.adj_r_squared_factor):
                            lz = f  # the last qualifying = the most points
                    two = two and lz is not None
        for key in ("lambda.z", "r.squared", "adj.r.squared", "lambda.z.n.points", "lambda.z.time.first",
                    "lambda.z.time.last", "clast.pred"):
            res[key] = lz[key] if lz is not None else None
        if fixed is not None:
            res["lambda.z"] = float(fixed)
        lam = res["lambda.z"]
        res["half.life"] = math.log(2.0) / lam if lam is not None else None
        res["span.ratio"] = ((res["lambda.z.time.last"] - res["lambda.z.time.first"]) / res["half.life"]
                             if lz is not None else None)
        # AUClast / AUCall / AUCinf.obs from the interval's cleaned samples, from its start
        zero = len(win) > 1 and all(c == 0 for _, c in win)
        auclast = aucall = None
        if zero:
            auclast = aucall = 0.0
        elif len(win) > 1 and win[0][0] == a:
            auclast = _nca_curve_auc(method, win, o.first_tmax, True, False)
            aucall = _nca_curve_auc(method, win, o.first_tmax, True, True)
        res["auclast"], res["aucall"] = auclast, aucall
        if zero:
            res["aucinf.obs"] = 0.0
        else:
            res["aucinf.obs"] = auclast + clast / lam if None not in (auclast, clast, lam) else None
        # % extrapolated (PKNCA pk.calc.aucpext: 100 * (1 - auclast / aucinf), NA if either AUC <= 0)
        ai = res["aucinf.obs"]
        res["aucpext.obs"] = (100.0 * (1.0 - auclast / ai) if ai is not None and auclast is not None
                              and ai > 0 and auclast > 0 else None)
        # times from the interval's start (pk.nca.interval: time - start)
        res["tmax"] = tmax - a if tmax is not None else None
        res["tlast"] = tlast - a if tlast is not None else None
        for key in ("lambda.z.time.first", "lambda.z.time.last"):
            if res[key] is not None:
                res[key] -= a
        # aucint (lambda.z tail after tlast) and aucint.last
        aucint = aucint_last = None
        if n1 > 1:
            part1 = 0.0
            if tl_w is not None and a < min(b, tl_w):
                hi = min(b, tl_w)
                c_lo = 0.0 if a < ts[0] else _nca_conc_at(method, ts, cs, a, tl_w, tmax_w, "last")
                pts = [(a, c_lo)] + [(t, c) for t, c in clean if a < t < hi]
                c_hi = 0.0 if hi < ts[0] else _nca_conc_at(method, ts, cs, hi, tl_w, tmax_w, "last")
                pts.append((hi, c_hi))
                part1 = _nca_curve_auc(method, pts, o.first_tmax, False, False)
            aucint_last = part1
            if tl_w is not None and b > tl_w:
                if lam is not None:
                    lo = max(a, tl_w)
                    far = math.exp(-lam * (b - tl_w)) if math.isfinite(b) else 0.0
                    aucint = part1 + cl_w / lam * (math.exp(-lam * (lo - tl_w)) - far)
            else:
                aucint = part1
        res["aucint"], res["aucint.last"] = aucint, aucint_last
        # aucint.all: aucint.last plus the linear triangle from tlast to the next cleaned sample, as a
        # trapezoid between the concentrations on that line at the clipped ends
        aucint_all = aucint_last
        if aucint_last is not None and tl_w is not None:
            nxt = next((t for t, _ in clean if t > tl_w), None)
            if nxt is not None and max(a, tl_w) < min(b, nxt):
                u, v = max(a, tl_w), min(b, nxt)
                line = lambda x: cl_w * (nxt - x) / (nxt - tl_w)  # noqa: E731
                aucint_all = aucint_last + (v - u) * (line(u) + line(v)) / 2.0
        res["aucint.all"] = aucint_all
        if threshold is not None:
            res["time_above"] = _nca_time_above(method, [t for t, _ in raw], [c for _, c in raw],
                                                float(threshold), tmax)
        # warnings (codes)
        tmax_ok = tmax is not None
        auto = in_manual is None and fixed is None
        has_pos = any(c > 0 for _, c in win)
        checks = (
            ("no_samples", not raw),
            ("all_blq", bool(raw) and not tmax_ok),
            ("one_sample", len(win) == 1),
            ("auc_before_first", len(win) > 1 and has_pos and win[0][0] > a),
            ("start_after_last_sample", n1 > 0 and a > ts[-1]),
            ("aucinf_finite_interval", math.isfinite(b) and res["aucinf.obs"] is not None),
            ("too_few_points_half_life", auto and tmax_ok and nc < o.min_hl_points),
            ("no_positive_lambda_z", auto and nc >= o.min_hl_points and lz is None),
            ("two_point_half_life", auto and two),
            ("manual_lambda_z_invalid", in_manual is not None and fixed is None and lz is None),
            ("span_ratio_below_min", res["span.ratio"] is not None and res["span.ratio"] < o.min_span_ratio),
            ("aucint_no_lambda_z", tl_w is not None and b > tl_w and lam is None),
            ("aucint_before_first", n1 > 1 and a < ts[0] and tl_w is not None),
            ("sparse_early_sampling", tmax_ok and sum(1 for t, _ in win if t < tmax) < o.min_samples_before_tmax),
            ("above_uloq", above),
            ("no_dose_time", not offset_known),
            ("aucpext_high", res["aucpext.obs"] is not None and res["aucpext.obs"] > o.max_aucpext),
        )
        res["codes"] = [code for code, hit in checks if hit]
        out.append(res)
    return out


def _nca_time_above(method, wt, wc, thr, tmax):
    if len(wt) < 2:
        return None
    tot = 0.0
    for i in range(len(wt) - 1):
        t1, c1, t2, c2 = wt[i], wc[i], wt[i + 1], wc[i + 1]
        a1, a2 = c1 >= thr, c2 >= thr
        if a1 and a2:
            tot += t2 - t1
        elif a1 or a2:
            if method != "linear" and thr > 0 and _nca_use_log(method, t1, c1, t2, c2, tmax):
                f = math.log(thr / c1) / math.log(c2 / c1) if a1 else math.log(c2 / thr) / math.log(c2 / c1)
            else:
                f = (thr - c1) / (c2 - c1) if a1 else (c2 - thr) / (c2 - c1)
            tot += f * (t2 - t1)
    return tot


def rowwise_nca(rows, *, intervals=((0.0, math.inf),), options=None, doses=None, threshold=None) -> list[dict]:
    """NCA per subject in pure Python: ``rows`` = (subject, time, conc, lloq, value_text) tuples
    (lloq / value_text may be None). ``options`` is a cartlab NcaOptions or None (PKNCA's
    defaults); ``doses`` = (subject, dose time) tuples. One dict per subject and interval, in the
    order subjects first appear, with the numeric results and the warning ``codes``."""
    o = options or _NcaDefaults()
    offsets: dict = {}
    if doses is not None:
        for sid, t in doses:
            if t is None:
                continue
            prev = offsets.get(sid)
            if prev is None:
                offsets[sid] = t
            else:
                offsets[sid] = min(prev, t) if o.time_from == "first" else max(prev, t)
    subjects: dict = {}
    for sid, t, c, lloq, vt in rows:
        blq = False
        above = False
        if c is not None and math.isnan(c):
            c = None
        if vt is not None:
            m = _NCA_CENSORED.match(vt)
            if m:
                if m.group(1) in ("<", "<=", "≤"):
                    blq = True
                elif c is None:
                    c, above = float(m.group(2)), True
        if c is not None and (c == 0 or (lloq is not None and c < lloq)):
            blq = True
        if doses is not None:
            t = t - offsets.get(sid, 0.0)
        subjects.setdefault(sid, []).append((t, c, blq, above))
    out = []
    for sid, samples in subjects.items():
        samples.sort(key=lambda s: s[0])
        above = any(s[3] for s in samples)
        out.extend(_nca_profile(sid, [s[:3] for s in samples], intervals, o,
                                doses is None or sid in offsets, above, threshold))
    return out


def nca_results_frame(results: list[dict], columns):
    """The baseline results as a polars frame (subject_id, start, end, columns..., codes)."""
    import polars as pl

    data = {"subject_id": [r["subject"] for r in results], "start": [r["start"] for r in results],
            "end": [r["end"] for r in results]}
    for c in columns:
        data[c] = [r[c] for r in results]
    data["codes"] = [r["codes"] for r in results]
    return pl.DataFrame(data, strict=False, infer_schema_length=None)


def compare_nca(mine, theirs, columns, rtol=1e-12, r2_atol=1e-12) -> list[str]:
    """Differences between two NCA result frames (same row order): null vs value, a relative
    difference above rtol, or other warning codes. Returns descriptions (empty = identical).

    r.squared and adj.r.squared are computed as 1 - x, so their precision is absolute (~1e-16
    whatever their size): for them a difference up to r2_atol is also accepted (an adjusted r2
    of 2e-4 from a poor fit may differ at the 1e-12 relative level between two summation
    orders)."""
    import numpy as np

    bad: list[str] = []
    if mine.height != theirs.height:
        return [f"row counts differ: {mine.height} vs {theirs.height}"]
    keys = ("subject_id", "start", "end")
    for k in keys:
        if mine[k].cast(theirs[k].dtype).to_list() != theirs[k].to_list():
            return [f"row keys differ in {k}"]
    for c in columns:
        a = mine[c].cast(float).fill_null(np.nan).to_numpy()
        b = theirs[c].cast(float).fill_null(np.nan).to_numpy()
        na, nb = np.isnan(a), np.isnan(b)
        with np.errstate(invalid="ignore"):
            rel = np.abs(a - b) / np.maximum(np.abs(a), np.abs(b))
        close = rel <= rtol
        if c in ("r.squared", "adj.r.squared"):
            close |= np.abs(a - b) <= r2_atol
        off = (na != nb) | (~na & ~nb & (a != b) & ~close)
        for i in np.nonzero(off)[0][:5]:
            bad.append(f"{mine['subject_id'][int(i)]} [{mine['start'][int(i)]}, {mine['end'][int(i)]}] {c}: "
                       f"baseline {a[i]!r} vs cartlab {b[i]!r}")
    if "codes" in theirs.columns:
        for i, (x, y) in enumerate(zip(mine["codes"].to_list(), theirs["codes"].to_list())):
            if sorted(x) != sorted(y):
                bad.append(f"{mine['subject_id'][i]} warnings: baseline {x} vs cartlab {y}")
                if len(bad) > 20:
                    break
    return bad
