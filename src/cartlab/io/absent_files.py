"""Which optional tables of a study folder were not given at all (review 37 A2/B1).

An ABSENT file and an EMPTY file (its header only) are different inputs: the empty file says none was
recorded ("none given"); the absent one says nothing. The project rule "missing is not negative"
(docs/derivation-conventions.md, "Absent files") makes the engines read an absent interventions.csv as
unknown where the standard needs it (options ``crs.absent_interventions``,
``t_icaht.absent_interventions``). The reader records the absent tables in ``Study.absent``.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["EVENTS_NOT_GIVEN", "OPTIONAL_TABLES", "absent_file_means", "absent_file_name", "absent_from_warnings",
           "absent_tables", "events_absent", "table_absent"]

#: the tables of a study folder that may be left out (study-format.md: only subjects is required)
OPTIONAL_TABLES = ("doses", "observations", "interventions", "events")

#: appended to a window's end reason or a censoring reason when events.csv was not given (review 37 B1)
EVENTS_NOT_GIVEN = "events.csv not given: no {} recorded"


def events_absent(study) -> bool:
    """True when ``study`` was read from a folder without events.csv (``Study.absent``): its deaths,
    relapses, new therapies and HSCTs are unknown, not absent; the engines say so in their reasons."""
    return "events" in getattr(study, "absent", frozenset())


def absent_tables(given: Iterable[str]) -> frozenset[str]:
    """The optional tables not among ``given`` (the table names the folder holds a file for).

    >>> sorted(absent_tables(["subjects", "observations", "doses"]))
    ['events', 'interventions']
    """
    given = set(given)
    return frozenset(name for name in OPTIONAL_TABLES if name not in given)


def absent_from_warnings(warnings: Iterable) -> frozenset[str]:
    """The absent tables named by the reader's "<table>.csv (or .parquet), file: not given" warnings (what a study
    loaded back from the DuckDB store still carries: its input warnings are stored, ``Study.absent``
    is not). Only tables with such a warning (a course with observations) are returned.

    >>> from cartlab.io.errors import Issue
    >>> sorted(absent_from_warnings([Issue("events.csv", None, "not given: ...", severity="warning")]))
    ['events']
    """
    out = set()
    for w in warnings:
        file, message = getattr(w, "file", ""), str(getattr(w, "message", ""))
        # review 39 diff2 C1: a Parquet study's warning names interventions.parquet
        name = str(file or "").removesuffix(".csv").removesuffix(".parquet")
        if name in OPTIONAL_TABLES and getattr(w, "column", None) is None and message.startswith("not given:"):
            out.add(name)
    return frozenset(out)


def table_absent(study, name: str) -> bool:
    """True when ``study``'s ``name`` table was not given at all: ``Study.absent``, or the reader's
    "not given" warning a stored study carries (:func:`absent_from_warnings`); warnings of another
    shape say nothing."""
    if name in getattr(study, "absent", frozenset()):
        return True
    try:
        return name in absent_from_warnings(getattr(study, "warnings", None) or [])
    except Exception:  # warnings of another shape: nothing to read
        return False


def absent_file_means(name: str, ext: str = ".csv") -> str:
    """What the reader says of the optional table ``name`` not given, with the files named as the study
    has them (``ext`` ".csv" or ".parquet"; review 39 diff2 C1: a Parquet study's warning names
    interventions.parquet throughout, not interventions.csv in its text).

    >>> "name interventions.parquet (options" in absent_file_means("interventions", ".parquet")
    True
    """
    from cartlab.io.course_checks import ABSENT_FILE_TEMPLATES

    return ABSENT_FILE_TEMPLATES[name].format(interventions=f"interventions{ext}", events=f"events{ext}")


def absent_file_name(study, name: str) -> str:
    """The file name of the table ``name`` as ``study`` would have had it: the one its reader's "not given"
    warning names (``events.parquet`` for a Parquet study), else ``<name>`` with the extension of the
    study's observations (else subjects) source file, else ``<name>.csv``."""
    for w in getattr(study, "warnings", None) or []:
        file = str(getattr(w, "file", "") or "")
        if (file.rsplit(".", 1)[0] == name and getattr(w, "column", None) is None
                and str(getattr(w, "message", "")).startswith("not given:")):
            return file
    sources = getattr(study, "sources", None)
    files = [str(f) for f in sources["file"].to_list()] if sources is not None and "file" in sources.columns else []
    for table in ("observations", "subjects"):
        for f in files:
            stem, _, ext = f.rpartition(".")
            if stem.lower() == table and ext.lower() in ("csv", "parquet"):
                return f"{name}.{ext.lower()}"
    return f"{name}.csv"
