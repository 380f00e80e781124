"""Counts read straight from the seed case's CSV files (an independent count, not cartlab's reader)."""

from __future__ import annotations

import csv

from cartlab.datasets import seed_case_path

SEED_FILES = ("subjects.csv", "observations.csv", "doses.csv", "interventions.csv", "events.csv")


def hand_count_not_measured() -> tuple[int, int]:
    """(rows not measured, all rows) of the seed case: source reconstructed / synthetic / simulated, or a
    paper row with ``reconstructed_columns`` (session 37: such a row carries reconstructed values)."""
    expected_nm, total = 0, 0
    for name in SEED_FILES:
        with (seed_case_path() / name).open(newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                total += 1
                src = (r.get("source") or "").strip().lower()
                if src in ("reconstructed", "synthetic", "simulated") or (
                        src == "paper" and (r.get("reconstructed_columns") or "").strip()):
                    expected_nm += 1
    return expected_nm, total
