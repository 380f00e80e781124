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
    "events.csv not given: no death, relapse, ... is recorded (...)")``, in the reader's words, the file
    named as the study has it (``events.parquet`` for a Parquet study; review 39 diff2 C1)."""
    from cartlab.io.absent_files import absent_file_means, absent_file_name, table_absent

    out = []
    for name in NAMED:
        if study is not None and table_absent(study, name):
            file = absent_file_name(study, name)
            out.append((file, f"{file} not given: {absent_file_means(name, '.' + file.rpartition('.')[2])}"))
    return out


def _absent_file(study, name: str) -> str | None:
    """The file name of ``name`` (``events``, ``interventions``) when the study was given without it."""
    return next((f for f, _t in absent_inputs(study) if f.rpartition(".")[0] == name), None)


def cohort_banner(study) -> str | None:
    """The Cohort tab's banner when events.csv or interventions.csv was not given (None otherwise)."""
    events, interventions = _absent_file(study, "events"), _absent_file(study, "interventions")
    if not events and not interventions:
        return None
    what = []
    if events:
        what.append(f"{events} not given: no death, HSCT or new therapy is known, so none is counted, and "
                    "relapses come only from the marrows (OS, EFS and LFS are the most favourable reading, not an "
                    "observation; the relapse incidence has no competing death; ICANS days are ranges up to "
                    "grade 4)")
    if interventions:
        what.append(f"{interventions} not given: no vasopressor, oxygen, tocilizumab, corticosteroid or "
                    "transfusion is known (ASTCT CRS days one could raise are ranges up to grade 4)")
    return "; ".join(what) + ". The Studies tab says what each analysis made of it (missing is not negative)."


def patient_notes(study) -> list[str]:
    """The patient page's notes under the CRS/ICANS card: what a file not given means for its grades
    (the reader's words, which end with what an empty file would say instead)."""
    return [text for f, text in absent_inputs(study) if f.rpartition(".")[0] in ("events", "interventions")]


#: appended to the relapse / duration-of-response notes when events.csv was not given (``{events}``: the
#: file as the study has it)
EVENTS_CLAUSE = ("{events} not given: relapses, HSCT and new therapies recorded only in {events} cannot show, "
                 "and none is taken as having happened")


def with_events_clause(line: str, study) -> str:
    """A relapse or duration-of-response note with :data:`EVENTS_CLAUSE` when events.csv was not given."""
    from cartlab.io.absent_files import absent_file_name, table_absent

    if study is None or not table_absent(study, "events"):
        return line
    return f"{line.rstrip('. ')} ({EVENTS_CLAUSE.format(events=absent_file_name(study, 'events'))})"


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
