"""All grading on a large synthetic cohort (default 10,000 subjects x 120 days, ~2e7 observations).

setup    builds the cohort in chunks of 1,000 subjects (``synthetic_cohort`` with days -7..112, read
         and validated with ``read_study``), keeps the canonical columns the grading engines use and
         writes them to ``grading_cohort/<table>/*.parquet``. From the same written parts it also
         writes the CTCAE grading input, ``grading_labs/*.parquet``: ``derive_ctcae`` on each chunk,
         one row per observation and direction that has a CTCAE term (ATOXDSCL -> direction L,
         ATOXDSCH -> H) with the columns term, direction, aval, anrlo, anrhi, base, bnrind, pchg,
         unit (= AVAL, ANRLO, ANRHI, BASE, BNRIND, PCHG, AVALU), the ADLB row it belongs to
         (``adlb_row``) and its keys (subject_id, param, day). Untimed.
run      loads the canonical tables and runs every grading engine over the whole cohort: CTCAE v5
         (ADLB via ``derive_ctcae``), ASTCT CRS (daily, episodes, summary), ASTCT ICANS, ICAHT.
         Reports the time of each engine (``*_s``), their sum (``grading_total_s``) and the load time;
         the harness reports the phase's wall time (load + grading + writing the grades) and peak
         memory. Then writes ATOXGRL/ATOXGRH with the row keys to ``grades_cartlab.parquet``.
baseline a straightforward row-by-row Python implementation of the same CTCAE rules
         (``baselines.rowwise_ctcae``, hand-written, no cartlab code) over the same lab rows, read in
         batches from ``grading_labs``; only its grading loop is timed (``base_grade_s``). Every
         grade is compared with cartlab's ATOXGRL (direction L) or ATOXGRH (H) of the same ADLB row
         (the keys are checked first); any mismatch fails the phase.

The CTCAE comparison to quote is ``base_grade_s / ctcae_s`` (rowwise grading of the lab rows vs
``derive_ctcae``, which also derives BASE/BNRIND/PCHG and the ADLB columns); the table's speed-up
column compares whole phases, which do different work.

Size: ``CARTLAB_BENCH_GRADING_N`` (default 10,000 subjects; ``--n`` of run.py does not apply).
Targets from the issue: < 60 s and < 8 GB for all grading.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from harness import benchmark

CHUNK = 1000
DAYS = (-7, 112)  # 120 calendar days
#: canonical columns the engines read (the others are not loaded, to keep memory honest)
COLUMNS = {
    "subjects": ["subject_id", "age_years", "weight_kg", "last_followup_day"],
    "observations": ["subject_id", "day", "param", "value", "value_text", "censor", "censor_limit", "unit", "lln", "uln",
                     "src_file", "src_row"],
    "interventions": ["subject_id", "start_day", "end_day", "category", "agent", "dose", "dose_unit",
                      "o2_device", "o2_flow_lpm", "fio2", "indication", "src_file", "src_row"],
    "events": ["subject_id", "day", "event", "detail", "attribution", "src_file", "src_row"],
    "doses": ["subject_id", "day", "agent", "dose", "unit", "src_file", "src_row"],
}
#: ADLB columns that identify a row (written by run, checked by baseline)
KEYS = ("subject_id", "param", "day")
#: rows per batch the baseline converts to Python objects (bounds its memory)
BATCH = 500_000

def _n() -> int:
    return int(os.environ.get("CARTLAB_BENCH_GRADING_N", "10000"))


def _lab_input(adlb, offset: int = 0):
    """The CTCAE grading input of an ADLB frame (``derive_ctcae`` output): one row per observation
    and direction with a CTCAE term, in ``baselines.CTCAE_COLUMNS`` plus ``adlb_row`` and the keys."""
    import polars as pl

    rows = adlb.select(
        (pl.int_range(pl.len(), dtype=pl.UInt32) + offset).alias("adlb_row"), *KEYS, "ATOXDSCL", "ATOXDSCH",
        pl.col("AVAL").alias("aval"), pl.col("ANRLO").alias("anrlo"), pl.col("ANRHI").alias("anrhi"),
        pl.col("BASE").alias("base"), pl.col("BNRIND").alias("bnrind"), pl.col("PCHG").alias("pchg"),
        pl.col("AVALU").alias("unit"),
    )
    per_direction = [
        rows.filter(pl.col(col).is_not_null()).select(
            "adlb_row", *KEYS, pl.col(col).alias("term"), pl.lit(d).alias("direction"),
            "aval", "anrlo", "anrhi", "base", "bnrind", "pchg", "unit",
        )
        for d, col in (("L", "ATOXDSCL"), ("H", "ATOXDSCH"))
    ]
    return pl.concat(per_direction).sort("adlb_row", "direction")


def build(params: dict) -> dict:
    import shutil

    import polars as pl

    from cartlab.datasets.synthetic import synthetic_cohort
    from cartlab.grading.ctcae import derive_ctcae
    from cartlab.io import read_study

    n = _n()
    work = Path(params["workdir"])
    root, labs, tmp = work / "grading_cohort", work / "grading_labs", work / "grading_chunk"
    for folder in (root, labs, tmp):
        shutil.rmtree(folder, ignore_errors=True)
    labs.mkdir(parents=True)
    rows = adlb_rows = lab_rows = 0
    for k in range(0, n, CHUNK):
        size = min(CHUNK, n - k)
        part = f"part-{k // CHUNK:03d}.parquet"
        folder = synthetic_cohort(size, seed=1000 + k, out_dir=tmp / str(k), fmt="parquet", days=DAYS)
        study = read_study(folder)
        prefix = pl.lit(f"C{k // CHUNK:03d}-")
        for name, cols in COLUMNS.items():
            df = study.table(name).select(cols).with_columns(
                pl.concat_str(prefix, pl.col("subject_id")).alias("subject_id")
            )
            (root / name).mkdir(parents=True, exist_ok=True)
            df.write_parquet(root / name / part)
        rows += study.observations.height
        del study
        shutil.rmtree(tmp / str(k))
        # the CTCAE input, from the part just written (derive_ctcae works per subject and param and
        # sorts by subject: chunk by chunk gives the rows and the row order of the whole cohort)
        adlb = derive_ctcae(pl.read_parquet(root / "observations" / part))
        lab = _lab_input(adlb, offset=adlb_rows)
        lab.write_parquet(labs / part)
        adlb_rows += adlb.height
        lab_rows += lab.height
    return {"_root": str(root), "_labs": str(labs), "_grades": str(work / "grades_cartlab.parquet"),
            "subjects": n, "observations": rows, "adlb_rows": adlb_rows, "lab_rows": lab_rows}


def _load(root: str):
    import polars as pl

    from cartlab.model import Study

    frames = {name: pl.read_parquet(Path(root) / name / "*.parquet") for name in COLUMNS}
    return Study(study_id="bench", **frames)


def baseline(params: dict) -> dict:
    """Row-by-row CTCAE grading of the lab rows (batches of BATCH rows); compared with cartlab's."""
    import baselines
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    grades_file = Path(params["_grades"])
    theirs = pq.read_table(grades_file) if grades_file.exists() else None
    dataset = ds.dataset(params["_labs"], format="parquet")
    wanted = [*baselines.CTCAE_COLUMNS, "adlb_row", *KEYS]
    grade_s, rows, bad, first = 0.0, 0, 0, []
    for batch in dataset.to_batches(columns=wanted, batch_size=BATCH):
        # untimed: the rows as Python objects
        columns = [batch.column(c).to_pylist() for c in baselines.CTCAE_COLUMNS]
        t0 = time.perf_counter()
        grades = baselines.rowwise_ctcae(zip(*columns))
        grade_s += time.perf_counter() - t0
        rows += len(grades)
        if theirs is None:
            continue
        # untimed: cartlab's ATOXGRL / ATOXGRH of the same ADLB rows, row by row
        other = theirs.take(batch.column("adlb_row"))
        for key in KEYS:
            if not other.column(key).equals(pa.chunked_array([batch.column(key)])):
                raise AssertionError(f"cartlab's ADLB rows do not line up with the lab input (column {key})")
        is_low = pc.equal(batch.column("direction"), "L")
        cartlab = pc.if_else(is_low, other.column("ATOXGRL"), other.column("ATOXGRH")).to_pylist()
        for i, (a, b) in enumerate(zip(grades, cartlab)):
            if a != b:
                bad += 1
                if len(first) < 3:
                    row = {c: v[i] for c, v in zip(baselines.CTCAE_COLUMNS, columns)}
                    first.append(f"baseline {a} vs cartlab {b}: {row}")
    if rows != params["lab_rows"]:
        raise AssertionError(f"read {rows} lab rows, setup wrote {params['lab_rows']}")
    if bad:
        raise AssertionError(f"{bad} of {rows} grades differ; first: " + " | ".join(first))
    info = {"base_grade_s": round(grade_s, 2), "base_rows_per_s": int(rows / grade_s) if grade_s else 0}
    info["identical_grades"] = rows if theirs is not None else "not compared (no cartlab grades)"
    return info


@benchmark(
    "grading",
    title="all grading on a synthetic cohort (CTCAE, CRS, ICANS, ICAHT)",
    setup=build,
    baseline=baseline,
    requires=("cartlab.grading", "cartlab.grading.ctcae", "polars"),
    baseline_requires=("pyarrow", "yaml"),
)
def grade_all(params: dict) -> dict:
    from cartlab.grading.crs import derive_crs_daily, derive_crs_summary, episodes
    from cartlab.grading.ctcae import derive_ctcae
    from cartlab.grading.hematotox import derive_icaht
    from cartlab.grading.icans import derive_icans_daily, derive_icans_summary

    t0 = time.perf_counter()
    study = _load(params["_root"])
    load_s = time.perf_counter() - t0
    timings = {}

    def timed(name, fn):
        t = time.perf_counter()
        out = fn()
        timings[name] = round(time.perf_counter() - t, 2)
        return out

    adlb = timed("ctcae_s", lambda: derive_ctcae(study))
    crs = timed("crs_s", lambda: derive_crs_daily(study))
    timed("crs_summary_s", lambda: (derive_crs_summary(study, daily=crs), episodes(crs, "CRS", "ASTCT 2019")))
    icans = timed("icans_s", lambda: derive_icans_daily(study))
    timed("icans_summary_s", lambda: derive_icans_summary(study, daily=icans))
    timed("icaht_s", lambda: derive_icaht(study))
    total = round(sum(timings.values()), 2)
    # untimed by the figures above (but inside the phase's wall time): the grades for the baseline
    t0 = time.perf_counter()
    adlb.select(*KEYS, "ATOXGRL", "ATOXGRH").write_parquet(params["_grades"])
    write_s = time.perf_counter() - t0
    return {"adlb_rows_graded": adlb.height, "crs_days": crs.height, "load_s": round(load_s, 2), **timings,
            "grading_total_s": total, "write_grades_s": round(write_s, 2)}
