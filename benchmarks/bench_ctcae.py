"""CTCAE v5 lab grading on admiral-shaped data: cartlab's grade_labs vs a row-by-row baseline.

setup    writes ``labs.parquet``: n subjects x 13 CTCAE terms (SI units) x 100 visits (n = 1,000 gives
         1.3 million rows) with the columns of an ADLB grading input (term, direction, aval, anrlo,
         anrhi, base, bnrind, pchg, unit). Values are drawn around and across the CTCAE cut-offs,
         rounded to lab precision so that many values fall exactly on a boundary; a few rows have a
         missing value, missing limits or baseline, a wrong unit, or an abnormal-high baseline.
run      ``cartlab.grading.ctcae.grade_labs`` on the frame (read from parquet); writes the grades.
baseline ``baselines.rowwise_ctcae``: hand-written per-term rules in pure Python, one row at a time;
         then checks that both phases produced identical grades (mismatches are reported and fail
         the phase).

The run phase reports ``criteria_load_s`` (parsing and compiling the YAML criteria, once per
process) and ``grade_s`` (the grade_labs call on all rows); the baseline reports ``base_grade_s``
(its grading loop). Both exclude reading the file; the harness' wall time covers the whole phase
(reading, grading, writing or comparing the grades).
"""

from __future__ import annotations

import time
from pathlib import Path

from harness import benchmark

VISITS = 100

#: (term as written in the data, direction, unit, lln, uln, typical value, log-sd) — 13 SI terms
TERMS = (
    ("Neutrophil count decreased", "L", "10^9/L", 2.0, 7.5, 2.0, 0.9),
    ("Platelet count decreased", "L", "10^9/L", 150.0, 400.0, 90.0, 0.8),
    ("White blood cell decreased", "L", "10^9/L", 4.0, 10.0, 3.5, 0.7),
    ("Lymphocyte count decreased", "L", "10^9/L", 1.0, 4.0, 0.7, 0.8),
    ("ANEMIA", "L", "g/L", 120.0, 160.0, 100.0, 0.2),
    ("Alanine aminotransferase increased", "H", "U/L", 7.0, 40.0, 45.0, 1.0),
    ("Aspartate aminotransferase increased", "H", "U/L", 8.0, 35.0, 40.0, 1.0),
    ("Blood bilirubin increased", "H", "umol/L", 3.0, 21.0, 18.0, 0.8),
    ("Creatinine increased", "H", "umol/L", 45.0, 100.0, 90.0, 0.6),
    ("Fibrinogen decreased", "L", "g/L", 2.0, 4.0, 2.2, 0.6),
    ("hypokalemia", "L", "mmol/L", 3.5, 5.1, 3.6, 0.15),
    ("Hyponatremia", "L", "mmol/L", 135.0, 145.0, 134.0, 0.05),
    ("INR increased", "H", "", None, None, 1.2, 0.4),
)


def make_labs(n_subjects: int, seed: int = 0):
    """The benchmark frame (polars) for ``n_subjects`` subjects (13 x 100 rows each)."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    frames = []
    for ti, (term, direction, unit, lln, uln, typical, sd) in enumerate(TERMS):
        n = n_subjects * VISITS
        subj = np.repeat(np.arange(n_subjects), VISITS)
        visit = np.tile(np.arange(VISITS), n_subjects)
        decimals = 0 if typical >= 50 else 2
        aval = np.round(typical * np.exp(rng.normal(0.0, sd, n)), decimals)
        # baseline = first visit of the subject; percent change from it
        base = np.repeat(aval[::VISITS], VISITS)
        pchg = np.where(base != 0, (aval - base) / np.where(base == 0, 1, base) * 100, np.nan)
        anrlo = np.full(n, np.nan if lln is None else lln)
        anrhi = np.full(n, np.nan if uln is None else uln)
        if uln is not None:
            bnrind = np.where(base > uln, "HIGH", np.where(lln is not None and base < (lln or 0), "LOW", "NORMAL"))
        else:
            bnrind = np.full(n, "NORMAL")
        units = np.full(n, unit, dtype=object)
        # sprinkle gaps: missing value, missing limits, missing baseline, wrong unit
        miss = rng.random((4, n))
        aval = np.where(miss[0] < 0.01, np.nan, aval)
        anrlo = np.where(miss[1] < 0.02, np.nan, anrlo)
        anrhi = np.where(miss[1] < 0.02, np.nan, anrhi)
        base = np.where(miss[2] < 0.02, np.nan, base)
        units = np.where(miss[3] < 0.005, "G/cL", units)
        frames.append(
            pl.DataFrame(
                {
                    "subject": subj.astype(np.int32),
                    "visit": visit.astype(np.int16),
                    "term": np.full(n, term),
                    "direction": np.full(n, direction),
                    "aval": aval,
                    "anrlo": anrlo,
                    "anrhi": anrhi,
                    "base": base,
                    "bnrind": bnrind,
                    "pchg": pchg,
                    "unit": units.astype(str),
                }
            ).with_columns(pl.col(c).fill_nan(None) for c in ("aval", "anrlo", "anrhi", "base", "pchg"))
            .with_columns(pl.when(pl.col("unit") == "").then(None).otherwise(pl.col("unit")).alias("unit"))
        )
    return pl.concat(frames).sort(["subject", "visit"])  # admiral-shaped: one long table by subject


def setup(params: dict) -> dict:
    path = Path(params["workdir"]) / "labs.parquet"
    df = make_labs(params["n"], seed=0)
    df.write_parquet(path)
    return {"_path": str(path), "rows": df.height, "terms": len(TERMS)}


def baseline(params: dict) -> dict:
    import baselines
    import pyarrow.parquet as pq

    table = pq.read_table(params["_path"], columns=list(baselines.CTCAE_COLUMNS))
    columns = [table.column(c).to_pylist() for c in baselines.CTCAE_COLUMNS]
    t0 = time.perf_counter()
    grades = baselines.rowwise_ctcae(zip(*columns))
    grade_s = time.perf_counter() - t0
    info = {"base_grade_s": round(grade_s, 3), "base_rows_per_s": int(len(grades) / grade_s)}
    # identical grades? (the run phase wrote its grades next to the data)
    theirs = Path(params["_path"]).with_name("grades_cartlab.parquet")
    if theirs.exists():
        other = pq.read_table(theirs).column("grade").to_pylist()
        bad = [i for i, (a, b) in enumerate(zip(grades, other)) if a != b]
        if len(other) != len(grades) or bad:
            rows = table.slice(bad[0], 1).to_pylist() if bad else []
            raise AssertionError(
                f"{len(bad)} grade mismatches (len {len(grades)} vs {len(other)}); first at row "
                f"{bad[:1]}: baseline {grades[bad[0]] if bad else None} vs cartlab "
                f"{other[bad[0]] if bad else None}: {rows}"
            )
        info["identical_grades"] = len(grades)
    return info


@benchmark(
    "ctcae",
    title="CTCAE v5 lab grading (13 SI terms) with grade_labs",
    setup=setup,
    baseline=baseline,
    requires=("polars", "cartlab.grading.ctcae"),
    baseline_requires=("pyarrow", "yaml"),
)
def run(params: dict) -> dict:
    import polars as pl

    from cartlab.grading.ctcae import CtcaeOptions, grade_labs

    df = pl.read_parquet(params["_path"])
    options = CtcaeOptions(units="SI")
    t0 = time.perf_counter()
    grade_labs(df.head(1), options=options)  # one-off: parse and compile the criteria table
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = grade_labs(df, options=options)
    grade_s = time.perf_counter() - t0
    out.select("grade").write_parquet(Path(params["_path"]).with_name("grades_cartlab.parquet"))
    return {
        "criteria_load_s": round(load_s, 3),
        "grade_s": round(grade_s, 3),
        "rows_per_s": int(df.height / grade_s),
        "not_gradable": int(out["grade"].null_count()),
    }
