"""The warnings and assumptions of an analysis on the report's pages (review 37 B2).

``cartlab analyze`` records what it read as not given and what it could not derive: the reader's
warnings (``analysis.json`` ``input_warnings``: a file not given, rows with an ambiguous value), the
engines' warnings (``warnings``) and the engines or subjects left out (``skipped``). The study page
lists them all; a subject page lists the ones about the study's files as a whole, about its own rows,
and the engines that left it out. A file not given is told apart from a file with no row for the
subject ("interventions.csv not given" rather than "no interventions recorded"), since an absent
input is not a negative (docs/derivation-conventions.md, "An absent input never reads as 'false'").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl

from cartlab.model import Study

__all__ = ["absent_file", "absent_file_text", "names_subject", "not_infused_banner", "study_warnings",
           "subject_warnings"]

#: how many subject ids a skipped engine names on the study page before "and n more"
MAX_IDS = 10


def _input_warnings(study: Study) -> list[Any]:
    return [w for w in getattr(study, "warnings", None) or [] if getattr(w, "severity", "warning") == "warning"]


def absent_file(study: Study, name: str) -> bool:
    """Whether the reader said the file ``name`` (e.g. ``interventions.csv``) was not given: a study
    folder without it, or a FHIR/SDTM input without its resources (the read warning "not given: ...").
    A study built in memory carries no such warning: False (nothing is claimed)."""
    stem = name.rsplit(".", 1)[0]
    for w in _input_warnings(study):
        f = Path(str(getattr(w, "file", "") or "")).name
        if (f == name or f.rsplit(".", 1)[0] == stem) and str(getattr(w, "message", "")).startswith("not given"):
            return True
    return False


#: what a subject page says of a file not given (the reader's ABSENT_FILE_MEANS, in short)
_ABSENT_MEANS = {
    "interventions.csv": "not known: ASTCT CRS and T-ICAHT grades and platelet recovery days that interventions "
                         "could change are ranges naming the file (options crs.absent_interventions / "
                         "t_icaht.absent_interventions / count_recovery.absent_interventions); the older CRS "
                         "scales follow crs_legacy.absent_interventions (default: as crs.absent_interventions; "
                         "ranges up to grade 4); ICANS reads none as given",
    # review 39 B8: what each engine does since session 39, never "none happened"
    "events.csv": "not known whether a death, relapse, HSCT, new therapy, seizure, cerebral edema or infection "
                  "happened: ICANS reads seizure, motor weakness and cerebral edema as unknown, every graded day a "
                  "range up to grade 4 naming events.csv (option icans.absent_events=unknown); the late ICAHT window "
                  "and the survival endpoints count none of them (OS, EFS and LFS are the most favourable "
                  "reading), and their reasons say 'events.csv not given'",
}


def absent_file_text(study: Study, name: str, empty: str) -> str:
    """The text of a subject page's empty table: ``"<name> not given (...)"`` - what the analysis made
    of it - when the reader said the file was not given, else ``empty`` ("no interventions recorded")."""
    if absent_file(study, name):
        means = _ABSENT_MEANS.get(name, "none assumed")
        return f"{name} not given ({means}; an empty file with its header says none was given)"
    return empty


def _where(w: Any) -> str:
    where = getattr(w, "where", None)
    return where() if callable(where) else str(getattr(w, "file", "") or "")


def _ids(subjects: Any) -> str:
    if subjects is None or subjects == "all":
        return "every subject"
    ids = list(subjects)
    shown = ", ".join(ids[:MAX_IDS])
    return shown + (f" and {len(ids) - MAX_IDS} more ({len(ids)} subjects)" if len(ids) > MAX_IDS else "")


def study_warnings(study: Study, analysis) -> dict[str, Any]:
    """The study page's "Warnings and assumptions": a page table (``headers``, ``rows``, ``num``) with
    one row per read warning, engine warning and skipped engine (``analysis.json`` ``input_warnings``,
    ``warnings``, ``skipped``), and ``n``, their count."""
    rows = []
    for w in _input_warnings(study):
        rows.append(["input", _where(w), str(getattr(w, "message", w))])
    for w in getattr(analysis, "warnings", None) or []:
        rows.append(["analysis", str(w.get("engine", "")), str(w.get("message", ""))])
    for s in getattr(analysis, "skipped", None) or []:
        fix = f" (fix: {s.fix})" if getattr(s, "fix", "") else ""
        rows.append(["not derived", f"{s.engine}: {', '.join(s.tables)} for {_ids(s.subjects)}", f"{s.reason}{fix}"])
    return {"headers": ["Kind", "Where", "Warning or assumption"],
            "rows": [{"cells": r, "prov": ""} for r in rows], "num": [False, False, False], "n": len(rows)}


def _rows_of(study: Study, subject_id: str) -> dict[str, set[int]]:
    """The data rows (``src_row``) of the subject, by source file name (its base name too)."""
    out: dict[str, set[int]] = {}
    for df in study.tables().values():
        if not df.height or not {"subject_id", "src_file", "src_row"} <= set(df.columns):
            continue
        mine = df.filter(pl.col("subject_id") == subject_id).select("src_file", "src_row").drop_nulls()
        for f, r in mine.iter_rows():
            out.setdefault(f, set()).add(int(r))
            out.setdefault(Path(f).name, set()).add(int(r))
    return out


def subject_warnings(study: Study, analysis, subject_id: str) -> list[str]:
    """The warnings that concern one subject: read warnings about a whole file (a file not given),
    read warnings naming one of its rows, and the engines that left it out (``skipped``)."""
    out = []
    mine = None
    for w in _input_warnings(study):
        rows = list(getattr(w, "rows", None) or [])
        if not rows:  # about a whole file: only a file not given concerns each subject (not "README.md not read")
            if str(getattr(w, "message", "")).startswith("not given"):
                out.append(f"{_where(w)}: {w.message}")
            continue
        if mine is None:
            mine = _rows_of(study, subject_id)
        f = str(getattr(w, "file", "") or "")
        hit = sorted(set(rows) & (mine.get(f) or mine.get(Path(f).name) or set()))
        if hit:
            shown = ", ".join(str(r) for r in hit[:8]) + (f" and {len(hit) - 8} more" if len(hit) > 8 else "")
            col = f", column '{w.column}'" if getattr(w, "column", None) else ""
            out.append(f"{f}, row{'s' if len(hit) > 1 else ''} {shown} of this subject{col}: {w.message}")
    for s in getattr(analysis, "skipped", None) or []:
        if s.subjects is None or subject_id in s.subjects:
            who = "for any subject" if s.subjects is None else "for this subject"
            out.append(f"{s.engine} not derived {who} ({', '.join(s.tables)}): {s.reason}")
    # the engines' warnings that name this subject (review 39 B5: not infused, kinetics timed from day 0, ...)
    for w in getattr(analysis, "warnings", None) or []:
        if names_subject(analysis, w, subject_id):
            out.append(f"{w.get('engine', '')}: {w.get('message', '')}")
    return out


def names_subject(analysis, warning: dict, subject_id: str) -> bool:
    """Whether an engine warning (``analysis.warnings`` entry) names ``subject_id``: its subject list
    (``warning_shapes``, every id even past the shown ones) or, for an analysis read back from
    analysis.json, the id as a whole word of the message."""
    shape = (getattr(analysis, "warning_shapes", None) or {}).get((warning.get("engine"), warning.get("message")))
    if shape is not None:
        return subject_id in shape[1]
    return re.search(rf"(?<![\w.-]){re.escape(subject_id)}(?![\w-])", str(warning.get("message", ""))) is not None


def not_infused_banner(analysis, subject_id: str) -> str | None:
    """The subject page's word for a subject with no CAR-T dose in doses.csv (best_response rule
    ``response.not_infused``, session 38; review 39 B5): what day 0 is and what it leaves the subject
    out of, with the options in force; None for an infused subject."""
    from cartlab.report.subject_blocks import not_infused_ids

    if subject_id not in not_infused_ids(analysis):
        return None
    opts = getattr(analysis, "options", None)
    try:
        rate_pop = opts.best_response_options().rate_population
        ep_pop = opts.endpoint_options().population
    except AttributeError:
        rate_pop = ep_pop = "infused"
    rates = ("left out of the response rates" if rate_pop == "infused" else "counted as a non-responder in the "
             "response rates")
    survival = ("left out of OS, EFS, RFS, LFS and CIR" if ep_pop == "infused"
                else "counted in OS, EFS, RFS, LFS and CIR from study day 0")
    return (f"Not infused: no CAR-T dose for this subject in doses.csv (other subjects have one; rule "
            f"response.not_infused). Day 0 is study day 0, not an infusion: the grades and kinetics on this page are "
            f"timed from it. Best response NE; {rates} (option best_response.rate_population={rate_pop}); "
            f"{survival} (option endpoints.population={ep_pop}).")
