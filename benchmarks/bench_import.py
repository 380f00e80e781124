"""Import + validate of an n-subject synthetic cohort (default n = 1,000, ~1.5 M observations)."""

from __future__ import annotations

from pathlib import Path

from harness import benchmark


def generate(params: dict) -> dict:
    """Untimed setup: write the synthetic cohort once; report its observation row count."""
    from cartlab.datasets.synthetic import synthetic_cohort

    folder = synthetic_cohort(params["n"], seed=0, out_dir=Path(params["workdir"]) / "cohort")
    with open(folder / "observations.csv", "rb") as fh:
        rows = sum(1 for _ in fh) - 1
    return {"_path": str(folder), "observations": rows}


def rowwise(params: dict) -> dict:
    """Baseline: pure-Python row-by-row validation + conversion of observations.csv."""
    from baselines import rowwise_observations

    return rowwise_observations(params["_path"])


@benchmark(
    "import",
    title="import + validate of a synthetic cohort",
    setup=generate,
    baseline=rowwise,
    requires=("cartlab.io", "cartlab.store"),
    baseline_requires=("cartlab.units", "yaml"),
)
def import_study(params: dict) -> dict:
    """``cartlab.io.read_study`` (validation + canonical conversion), then ``Store.import_study``
    of the validated study (one DuckDB transaction), as ``cartlab import`` does."""
    from cartlab.io import read_study
    from cartlab.store import Store

    study = read_study(params["_path"])
    db = Path(params["workdir"]) / "bench.duckdb"
    db.unlink(missing_ok=True)
    store = Store(db)
    try:
        result = store.import_study(study, folder=params["_path"])
        assert result.action == "imported", result
    finally:
        store.close()
    return {"observations": study.observations.height}
