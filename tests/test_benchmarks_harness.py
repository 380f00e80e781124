"""The benchmark harness (``benchmarks/``): subprocess phases, peak memory, failure reporting."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import textwrap
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH_DIR))

import harness  # noqa: E402


def _load_runner():
    spec = importlib.util.spec_from_file_location("cartlab_bench_run", BENCH_DIR / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DUMMY = textwrap.dedent(
    '''
    from harness import benchmark

    def setup(params):
        return {"_mb": 64, "items": params["n"] * 2}

    def small(params):
        return {"touched_mb": 1}

    @benchmark("alloc", title="touch some memory", setup=setup, baseline=small)
    def alloc(params):
        block = b"x" * (params["_mb"] * 2**20)  # written, so resident
        return {"touched_mb": len(block) // 2**20}

    @benchmark("missing", requires=("cartlab_no_such_module",))
    def missing(params):
        return {}

    @benchmark("boom")
    def boom(params):
        raise RuntimeError("kaput")
    '''
)


@pytest.fixture
def dummy_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "benches"
    folder.mkdir()
    (folder / "bench_dummy.py").write_text(DUMMY)
    return folder


def test_phases_run_in_fresh_processes(dummy_dir: Path, tmp_path: Path) -> None:
    results = {r.name: r for r in harness.run_all(5, folder=dummy_dir, workdir=tmp_path / "work", timeout=60)}
    assert set(results) == {"alloc", "missing", "boom"}

    alloc = results["alloc"]
    assert alloc.setup.status == alloc.run.status == alloc.baseline.status == "ok"
    assert alloc.setup.info["items"] == 10
    assert alloc.run.info == {"touched_mb": 64}
    assert alloc.run.wall_s is not None and alloc.run.wall_s >= 0
    # peak RSS is per child: the allocating phase shows its 64 MiB, the baseline does not
    assert alloc.run.max_rss - alloc.baseline.max_rss > 48 * 2**20

    assert results["missing"].run.status == "unavailable"
    assert "cartlab_no_such_module" in results["missing"].run.error
    assert results["boom"].run.status == "error"
    assert "kaput" in results["boom"].run.error

    from rich.console import Console

    out = io.StringIO()
    _load_runner().render(list(results.values()), 5, Console(file=out, width=120))
    text = out.getvalue()
    assert "alloc" in text and "unavailable" in text and "kaput" in text


def test_unknown_benchmark_is_refused(dummy_dir: Path) -> None:
    with pytest.raises(KeyError):
        harness.run_all(5, only=["nope"], folder=dummy_dir)


def test_import_benchmark_end_to_end(tmp_path: Path) -> None:
    """The real import benchmark at n=5: the cohort is made, both sides measured (or reported)."""
    out = tmp_path / "results.json"
    code = _load_runner().main(["--n", "5", "--only", "import", "--json", str(out), "--timeout", "120"])
    (result,) = json.loads(out.read_text())
    assert result["setup"]["status"] == "ok"
    rows = result["setup"]["info"]["observations"]
    assert rows > 1000
    assert result["baseline"]["status"] == "ok"
    assert result["baseline"]["info"]["observations"] == rows
    assert result["run"]["status"] in ("ok", "unavailable")
    if result["run"]["status"] == "ok":
        assert code == 0
        assert result["run"]["info"]["observations"] == rows
        assert result["run"]["max_rss"] > 0


def test_grading_benchmark_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real grading benchmark on 20 subjects: every lab row graded by both sides, identically."""
    monkeypatch.setenv("CARTLAB_BENCH_GRADING_N", "20")
    out = tmp_path / "results.json"
    code = _load_runner().main(["--only", "grading", "--json", str(out), "--timeout", "300"])
    (result,) = json.loads(out.read_text())
    assert result["setup"]["status"] == "ok", result["setup"]["error"]
    setup = result["setup"]["info"]
    assert setup["subjects"] == 20 and setup["observations"] > 10_000
    assert setup["lab_rows"] > setup["adlb_rows"] > 1000
    assert result["run"]["status"] in ("ok", "unavailable")
    if result["run"]["status"] == "ok":
        assert code == 0
        assert result["run"]["info"]["adlb_rows_graded"] == setup["adlb_rows"]
        assert result["run"]["info"]["grading_total_s"] > 0
        # the baseline compares every one of its grades with cartlab's ATOXGRL/ATOXGRH
        assert result["baseline"]["status"] == "ok", result["baseline"]["error"]
        assert result["baseline"]["info"]["identical_grades"] == setup["lab_rows"]


def test_rowwise_ctcae_agrees_with_admiral_vectors() -> None:
    """The hand-written baseline rules give admiral's grades on its SI test vectors for every term
    they cover (so a benchmark mismatch points at cartlab, not at the baseline)."""
    import csv

    import baselines

    fixture = Path(__file__).resolve().parent / "fixtures" / "ctcae" / "ctcae_v5_admiral_vectors.csv"

    def num(text: str) -> float | None:
        return float(text) if text.strip() else None

    covered: set[str] = set()
    wrong = []
    with open(fixture, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            term = (r["term"] or "").strip().upper()
            if r["metadata"] != "atoxgr_criteria_ctcv5" or (term, r["direction"].strip().upper()) not in baselines._CTCAE_RULES:
                continue
            high = tuple(x.strip() for x in (r["high_indicator"] or "HIGH").replace(",", "|").split("|"))
            row = (r["term"], r["direction"], num(r["aval"]), num(r["anrlo"]), num(r["anrhi"]), num(r["base"]),
                   r["bnrind"] or None, num(r["pchg"]), r["unit"] or None)
            (got,) = baselines.rowwise_ctcae([row], high_indicator=high, bounded=False)
            want = int(r["expected_grade"]) if r["expected_grade"].strip() else None
            covered.add(term)
            if got != want:
                wrong.append((r["testnum"], row, want, got))
    # every rule has admiral vectors, but LDH (added to admiral after the vectors were copied): checked below
    assert covered == {t for t, _ in baselines._CTCAE_RULES} - {"BLOOD LACTATE DEHYDROGENASE INCREASED"}
    assert not wrong, wrong[:5]
    # CTCAE v5.0 "Blood lactate dehydrogenase increased": grade 1 >ULN (no higher grade): by hand, ULN 250
    ldh = [("Blood lactate dehydrogenase increased", "H", v, 120.0, uln, None, None, None, "U/L")
           for v, uln in ((250.0, 250.0), (250.5, 250.0), (900.0, 250.0), (900.0, None))]
    assert baselines.rowwise_ctcae(ldh) == [0, 1, 1, None]  # no ULN: 0 up to 1, the top grade: not gradable
    # a missing limit the value bounds (review 39 R39-4), by hand: Hb 140 g/L, no LLN: grade 0 (>= LLN) or 1
    # (< LLN) -> 0; ALT 9 U/L, base 13, no ULN: 0 (ULN huge) up to 4 (ULN tiny), the top grade -> not gradable;
    # ALT 200, abnormal baseline 40: 200 = 5.0 x base, CTCAE ">3.0 - 5.0 x baseline" -> grade 2 (not > 5.0 x
    # baseline, so not 3), whatever the ULN
    rows = [("Anemia", "L", 140.0, None, None, None, None, None, "g/L"),
            ("Alanine aminotransferase increased", "H", 9.0, None, None, 13.0, None, None, "U/L"),
            ("Alanine aminotransferase increased", "H", 200.0, None, None, 40.0, "HIGH", None, "U/L")]
    assert baselines.rowwise_ctcae(rows) == [0, None, 2]
    assert baselines.rowwise_ctcae(rows, bounded=False) == [None, None, None]


def test_nca_benchmarks_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """nca and nca_calls on 40 profiles: both baselines reproduce every value of the one call."""
    monkeypatch.setenv("CARTLAB_BENCH_NCA_N", "40")
    out = tmp_path / "results.json"
    code = _load_runner().main(["--only", "nca", "--only", "nca_calls", "--json", str(out), "--timeout", "300"])
    results = {r["name"]: r for r in json.loads(out.read_text())}
    assert code == 0
    rowwise, calls = results["nca"]["baseline"], results["nca_calls"]["baseline"]
    assert rowwise["status"] == "ok", rowwise["error"]
    assert rowwise["info"]["identical_rows"] == 80
    assert calls["status"] == "ok", calls["error"]
    assert calls["info"]["loop_subjects"] == 40 and calls["info"]["loop_s"] > 0
    assert calls["info"]["loop_speed_up"].endswith("x")


def test_stein_recovery_study_helpers() -> None:
    """Seed lists parse; the summary counts a replicate as passing only when all 12 bands hold."""
    spec = importlib.util.spec_from_file_location("cartlab_stein_recovery", BENCH_DIR / "stein_recovery.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    assert study._seeds("1-3,7") == [1, 2, 3, 7]
    import polars as pl

    rows = []
    for seed, foldx_err in ((1, 0.05), (2, 0.12)):
        for p in study.PARAMS:
            e = foldx_err if p == "foldx" else 0.0
            rows.append({"seed": seed, "draw": "moment-matched", "parameter": p, "theta_err": e,
                         "theta_err_vs_sample": e, "omega2_err": 0.249, "omega2_err_vs_sample": 0.0,
                         "sigma": 0.56, "fit_seconds": 1.0})
    text = study._summary(pl.DataFrame(rows))
    assert "all 12 criteria met in 1)" in text
    assert "| foldx | +8.5% |" in text and "| 1/2 |" in text
