"""Checks of a study folder's course as a whole (after every file is read): what a missing optional
file means, and records dated after a death. They warn; they never stop a read."""

from __future__ import annotations

import polars as pl

from cartlab.io.errors import Issue

__all__ = ["ABSENT_FILE_MEANS", "records_after_death"]

#: what an analysis reads as not given when a course (observations) comes without these files
ABSENT_FILE_MEANS = {
    "doses": "no CAR-T, lymphodepletion or bridging dose is recorded (kinetics per dose, the protocol's dose "
             "checks and the twin's dosing have no doses; a protocol's planned administrations of a subject "
             "without any dose row are not checkable rather than missed)",
    "interventions": "no vasopressor, oxygen, tocilizumab, corticosteroid or transfusion is recorded, so "
                     "none is taken as given (CRS grades 2-4 from hypotension with vasopressors or hypoxia, "
                     "the fever waiver, transfusion rules of T-ICAHT); an empty file with its header says "
                     "none was given",
    "events": "no death, relapse, HSCT, new therapy, seizure, cerebral edema or infection is recorded, so "
              "none is taken as having happened (ICANS events, the late ICAHT window, survival endpoints); "
              "an empty file with its header says none happened",
}


def records_after_death(frames: dict[str, pl.DataFrame], row: str) -> list[Issue]:
    """Warnings for records dated after the subject's death (a calendar day later than the first
    `death` event), and a last_followup_day after it: likely a wrong day or subject."""
    ev = frames.get("events")
    if ev is None or "event" not in ev.columns:
        return []
    deaths = (ev.filter((pl.col("event") == "death") & pl.col("day").is_not_null())
              .group_by("subject_id").agg(pl.col("day").min().floor().alias("__death")))
    if deaths.is_empty():
        return []
    out = []
    for name, col in (("observations", "day"), ("doses", "day"), ("interventions", "start_day"), ("events", "day"),
                      ("subjects", "last_followup_day")):
        df = frames.get(name)
        if df is None or col not in df.columns:
            continue
        late = (df.join(deaths, on="subject_id", how="inner").filter(pl.col(col).floor() > pl.col("__death"))
                .group_by("subject_id", "__death", maintain_order=True).agg(pl.col(row).sort()))
        for sid, death, rows in late.iter_rows():
            what = "its last_followup_day is" if name == "subjects" else f"{len(rows)} row(s) are dated"
            out.append(Issue(f"{name}.csv", col, f"subject {sid!r}: {what} after its death on day {death:g} "
                             "(events.csv): check the day or the subject", rows, severity="warning"))
    return out
