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
