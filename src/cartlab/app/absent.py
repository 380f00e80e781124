"""What the dashboard says of the optional files a study was given without (review 39 B2) and of an
early ICAHT grade resting only on interpolated days (review 39 B5).

Missing is not negative (docs/derivation-conventions.md, "Absent files"): an absent events.csv or
interventions.csv is not "none happened". The words are the reader's
(:data:`cartlab.io.course_checks.ABSENT_FILE_MEANS`, what ``cartlab analyze`` prints), the test of
absence the analysis's (:func:`cartlab.io.absent_files.table_absent`: the folder had no file, or a
stored study's "not given" warning).
"""

from __future__ import annotations

import polars as pl

#: the optional files whose absence the pages name (doses: the patient page says "no CAR-T dose")
NAMED = ("events", "interventions", "doses")


def absent_inputs(study) -> list[tuple[str, str]]:
    """``(file, text)`` for each optional file the study was given without: ``("events.csv",
    "events.csv not given: no death, relapse, ... is recorded (...)")``, in the reader's words."""
    from cartlab.io.absent_files import table_absent
    from cartlab.io.course_checks import ABSENT_FILE_MEANS

    out = []
    for name in NAMED:
        if study is not None and table_absent(study, name):
            out.append((f"{name}.csv", f"{name}.csv not given: {ABSENT_FILE_MEANS[name]}"))
    return out


def cohort_banner(study) -> str | None:
    """The Cohort tab's banner when events.csv or interventions.csv was not given (None otherwise)."""
    names = [f for f, _t in absent_inputs(study) if f in ("events.csv", "interventions.csv")]
    if not names:
        return None
    what = []
    if "events.csv" in names:
        what.append("events.csv not given: no death, relapse, HSCT or new therapy is known, so none is counted "
                    "(OS, EFS and LFS are the most favourable reading, not an observation; ICANS days are ranges "
                    "up to grade 4)")
    if "interventions.csv" in names:
        what.append("interventions.csv not given: no vasopressor, oxygen, tocilizumab, corticosteroid or "
                    "transfusion is known (ASTCT CRS days one could raise are ranges up to grade 4)")
    return "; ".join(what) + ". The Studies tab says what each analysis made of it (missing is not negative)."


def patient_notes(study) -> list[str]:
    """The patient page's notes under the CRS/ICANS card: what a file not given means for its grades
    (the reader's words, which end with what an empty file would say instead)."""
    return [text for f, text in absent_inputs(study) if f in ("events.csv", "interventions.csv")]


#: appended to the relapse / duration-of-response notes when events.csv was not given
EVENTS_CLAUSE = ("events.csv not given: relapses, HSCT and new therapies recorded only in events.csv cannot show, "
                 "and none is taken as having happened")


def with_events_clause(line: str, study) -> str:
    """A relapse or duration-of-response note with :data:`EVENTS_CLAUSE` when events.csv was not given."""
    from cartlab.io.absent_files import table_absent

    if study is None or not table_absent(study, "events"):
        return line
    return f"{line.rstrip('. ')} ({EVENTS_CLAUSE})"


#: the mark of an early ICAHT grade no ANC of days 0-30 was measured for (review 39 B5)
INTERPOLATED_MARK = "interpolated: no ANC measured in days 0-30"


def interpolated_only(icaht_daily: pl.DataFrame | None, subject_ids=None) -> set[str]:
    """The subjects whose days 0-30 of ``icaht_daily`` all have ``source = interpolated`` (no ANC was
    measured in the early window, so its grade rests only on interpolated values; the engine's
    ``icaht.max_interpolation_gap_days`` default sets no limit)."""
    if icaht_daily is None or not icaht_daily.height or not {"subject_id", "day", "source"} <= set(icaht_daily.columns):
        return set()
    d = icaht_daily.filter(pl.col("day").cast(pl.Float64).is_between(0, 30))
    if subject_ids is not None:
        d = d.filter(pl.col("subject_id").is_in(list(subject_ids)))
    per = d.group_by("subject_id").agg(
        (pl.col("source").cast(pl.String).str.to_lowercase() == "interpolated").all().alias("all_interp"))
    return set(per.filter(pl.col("all_interp"))["subject_id"].to_list())
