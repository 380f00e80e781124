"""Build small canonical studies for grading tests."""

from __future__ import annotations

import polars as pl

from cartlab.model import Study, conform


def study(subjects=None, obs=(), iv=(), events=()) -> Study:
    """``obs``: (subject, day, param, value[, value_text]); ``iv``: dicts; ``events``: dicts."""
    subjects = subjects or [{"subject_id": "A", "age_years": 40.0}]
    o = [
        {"subject_id": r[0], "day": float(r[1]), "param": r[2], "value": r[3],
         "value_text": r[4] if len(r) > 4 else None, "src_file": "observations.csv", "src_row": i + 1}
        for i, r in enumerate(obs)
    ]
    ivs = [{"src_file": "interventions.csv", "src_row": i + 1, **r} for i, r in enumerate(iv)]
    evs = [{"src_file": "events.csv", "src_row": i + 1, **r} for i, r in enumerate(events)]

    def frame(rows, table):
        if not rows:
            return conform(pl.DataFrame(), table).clear()
        return conform(pl.DataFrame(rows, infer_schema_length=None), table)

    return Study(
        study_id="t",
        subjects=conform(pl.DataFrame(subjects), "subjects"),
        observations=frame(o, "observations"),
        interventions=frame(ivs, "interventions"),
        events=frame(evs, "events"),
    )


def vaso(agent, start, end=None, subject="A", indication="CRS", **kw):
    return {"subject_id": subject, "start_day": float(start), "end_day": None if end is None else float(end),
            "category": "vasopressor", "agent": agent, "indication": indication, **kw}


def oxygen(device, day, flow=None, subject="A", indication=None):
    return {"subject_id": subject, "start_day": float(day), "category": "oxygen", "o2_device": device,
            "o2_flow_lpm": flow, "indication": indication}


def drug(category, day, agent=None, subject="A", indication="CRS"):
    return {"subject_id": subject, "start_day": float(day), "category": category, "agent": agent,
            "indication": indication}
