"""Server-side time of the dashboard's pages (issue 17 acceptance: patient page p95 < 300 ms over 100
requests with 100 days of data; cohort page of 1,000 synthetic subjects < 2 s).

    .venv/bin/python benchmarks/bench_dashboard.py [--patients 20] [--cohort 1000] [--json FILE]

What is timed (wall clock, this process, after the study's Analysis has been computed once -- that
one-off analysis is timed and reported apart, as ``analysis_seconds``):

* **patient page** -- everything the server computes for the outputs of the Patient tab of one
  subject, with the per-subject cache cleared before each request (so every request builds the page
  from the analysis tables, as the first visit of a patient does): the subject's rows
  (``StudyView.patient``), the headline, the linked course figure rendered to HTML
  (``course_spec`` + ``to_html``), the ``explain`` text of CRS and ICANS, the grade-per-day table
  (``grades_table`` + ``display_frame``), the kinetics figure as HTML and the kinetics table. 100
  requests cycle over ``--patients`` synthetic subjects observed daily from day -7 to day 100 (108
  days; vitals several times a day). Reported: median, p95, max (ms).
  Not included: the websocket round trip and the browser's drawing (client side).
* **cohort page** -- everything the server computes for the Cohort tab with no filter set: the filter
  choices, the filtered cohort, the cohort views (``cohort_views``: ``cartlab.report.cohort_plotly.
  cohort_figures_plotly`` when installed, else the dashboard's minimal overview), every view's figure
  rendered to HTML, and the subject table for the page (``display_frame``). Reported: seconds, 3 runs
  (min and max) and which cohort views were used.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def patient_page(view, sid: str) -> int:
    """The Patient tab's outputs of ``sid`` (as server.py's render functions compute them); returns
    the HTML size (so nothing is optimised away)."""
    from cartlab.app import cohort as C
    from cartlab.app import figures as F
    from cartlab.explain import explain

    view._patients.pop(sid, None)
    p = view.patient(sid)
    size = len(str(p.summary))
    size += len(F.to_html(F.course_spec(p), "course_fig"))
    size += sum(len(e.headline) for e in (explain(view.analysis, w, sid) for w in ("crs", "icans")))
    size += C.display_frame(C.grades_table(p.crs_daily, p.icans_daily)).height
    size += len(F.to_html(F.kinetics_figure(p), "kinetics_fig"))
    size += C.display_frame(C.kinetics_table(p.car_kinetics, p.adpp)).height
    return size


def cohort_page(view) -> tuple[int, list[str]]:
    from cartlab.app import cohort as C
    from cartlab.app import figures as F

    C.filter_choices(view.cohort)
    sub = C.filter_cohort(view.cohort, {})
    views = C.cohort_views(view, sub["subject_id"].to_list())
    size = 0
    for i, cv in enumerate(views):
        if cv.figure is not None and not cv.unavailable:
            size += len(F.to_html(cv.figure, f"cohort_view_{i}"))
        elif cv.table is not None:
            size += C.display_frame(cv.table).height
    size += C.display_frame(sub).height
    return size, [cv.key for cv in views]


def build(n: int, days: tuple[int, int], folder: Path):
    from cartlab.app.data import build_view
    from cartlab.datasets.synthetic import synthetic_cohort
    from cartlab.io import read_study

    synthetic_cohort(n, seed=5, out_dir=folder, days=days)
    study = read_study(folder, f"syn{n}")
    t0 = time.perf_counter()
    view = build_view(study)
    return view, time.perf_counter() - t0, study.observations.height


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=20, help="subjects of the patient-page study")
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--cohort", type=int, default=1000, help="subjects of the cohort-page study")
    ap.add_argument("--json", type=Path, default=ROOT / "out" / "bench_dashboard.json")
    args = ap.parse_args(argv)
    result: dict = {"python": platform.python_version(), "machine": platform.machine()}
    with tempfile.TemporaryDirectory(prefix="cartlab-bench-dash-") as tmp:
        view, secs, n_obs = build(args.patients, (-7, 100), Path(tmp) / "patients")
        ids = view.subject_ids
        patient_page(view, ids[0])  # warm-up (imports)
        times = []
        for i in range(args.requests):
            t0 = time.perf_counter()
            patient_page(view, ids[i % len(ids)])
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        p95 = times[max(0, round(0.95 * len(times)) - 1)]
        result["patient_page"] = {
            "subjects": args.patients, "days": "-7..100", "observation_rows": n_obs, "requests": args.requests,
            "analysis_seconds": round(secs, 2), "median_ms": round(statistics.median(times), 1),
            "p95_ms": round(p95, 1), "max_ms": round(times[-1], 1), "target_p95_ms": 300,
            "pass": p95 < 300}
        print(json.dumps(result["patient_page"]), flush=True)
        del view
        view, secs, n_obs = build(args.cohort, (-7, 60), Path(tmp) / "cohort")
        cohort_page(view)  # warm-up (imports)
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            _size, keys = cohort_page(view)
            runs.append(time.perf_counter() - t0)
        result["cohort_page"] = {
            "subjects": args.cohort, "observation_rows": n_obs, "analysis_seconds": round(secs, 2),
            "seconds_min": round(min(runs), 3), "seconds_max": round(max(runs), 3), "target_seconds": 2,
            "views": keys, "pass": max(runs) < 2}
        print(json.dumps(result["cohort_page"]), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
