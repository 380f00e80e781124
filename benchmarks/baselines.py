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
    if _le(aval, 129):
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
}


def rowwise_ctcae(rows, high_indicator: tuple[str, ...] = ("HIGH",)) -> list[int | None]:
    """Grade rows (tuples in CTCAE_COLUMNS order) one at a time with hand-written rules.

    Covers the 13 SI terms of the ctcae benchmark and the 5 further terms of the grading benchmark
    (the 18 terms derive_ctcae grades on the synthetic cohort); other terms, a wrong or missing unit
    where the term checks units, or a missing AVAL give None — as cartlab's engine does.
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
        out.append(grade(aval, anrlo, anrhi, base, bnrind in high_indicator, pchg))
    return out
