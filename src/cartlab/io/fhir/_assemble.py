"""Rows the FHIR reader collected, assembled into study-folder tables: the subject columns FHIR carries
outside the Patient (day-0 anchor, age, baseline weight/height), one frame per table, the study-folder
reader's errors in the Bundle's words and the day-0 warnings."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import polars as pl

from cartlab.errors import InputError
from cartlab.io.dictionary import load_dictionary
from cartlab.io.errors import StudyValidationError
from cartlab.io.fhir._common import parse_fhir_time
from cartlab.model import TABLES, conform


def _subjects_from_fhir(rd) -> None:
    """Subject columns FHIR carries outside the Patient: day-0 anchor, age, baseline weight/height."""
    obs = defaultdict(list)
    for row in rd.rows["observations"]:
        if row["param"] in ("WEIGHT", "HEIGHT") and row.get("orig_value") is not None:
            obs[(row["subject_id"], row["param"])].append(row)
    for row, e in zip(rd.rows["subjects"], rd.where["subjects"]):
        sid = row["subject_id"]
        row.update(rd.baseline.get(sid, {}))
        if sid in rd.anchor_text:
            row.setdefault("infusion_datetime", rd.anchor_text[sid])
        birth = e.res.get("birthDate")
        if "age_years" not in row and birth and sid in rd.nominal:
            rd.skip(e, "birthDate", "birthDate not used for age: the subject's times are nominal (no calendar day 0)")
        elif "age_years" not in row and birth and sid in rd.anchor:
            b = parse_fhir_time(birth) if re.fullmatch(r"\d{4}-\d{2}-\d{2}.*", str(birth)) else None
            if b is None:  # "1980" or "1980-05": the completed years on day 0 are not known
                rd.skip(e, "birthDate", f"birthDate {birth!r} has no day: the age on day 0 is not computed "
                        "(age_years empty; give the full date or an age)")
            if b is not None:  # completed years on the day of the first CAR-T infusion
                d0 = rd.anchor[sid].date()
                row["age_years"] = float(d0.year - b.year - ((d0.month, d0.day) < (b.month, b.day)))
        for param, col in (("WEIGHT", "weight_kg"), ("HEIGHT", "height_cm")):
            rows = sorted(obs.get((sid, param), []), key=lambda x: x["day"])
            if col not in row and rows:  # the last measurement up to day 0, else the first after it
                before = [x for x in rows if x["day"] < 1]  # up to the end of day 0
                pick = before[-1] if before else rows[0]
                p = load_dictionary()[param]
                row[col] = p.conversion_from(pick.get("orig_unit"))(pick["orig_value"])


def _frame(rows: list[dict], table: str) -> pl.DataFrame:
    if not rows:
        return conform(pl.DataFrame(schema=TABLES[table]), table)
    cols = [c for c in TABLES[table] if any(c in r for r in rows)]
    data = {c: [r.get(c) for r in rows] for c in cols}
    return conform(pl.DataFrame({c: pl.Series(c, v, dtype=TABLES[table][c], strict=False) for c, v in data.items()}), table)


def _translate(exc: StudyValidationError, rd) -> InputError:
    issue = exc.issues[0]
    table = Path(issue.file).stem
    entries = rd.where.get(table, [])
    places = [entries[r - 1].where for r in issue.rows[:3] if 0 < r <= len(entries)] or [table]
    more = f" (and {len(exc.issues) - 1} more problems)" if len(exc.issues) > 1 else ""
    col = f", field {issue.column!r}" if issue.column else ""
    return InputError(f"{'; '.join(places)}{col}: {issue.message}{more}")


def _day0_warnings(rd) -> list[str]:
    """The day-0 warnings (a partial CAR-T date: no day 0), each also a mapping-report row on the Patient."""
    patient = {sid: e for sid, e in rd.patients.values()}
    for sid, msg in rd.day0_warnings:
        rd.skip(patient[sid], "day 0", msg)
    return [msg for _, msg in rd.day0_warnings]




def translate_warning(w, rd):
    """A warning of the study-folder reader about the temporary ``<table>.parquet`` in the Bundle's words
    (review 46 C10): its rows become the Bundle entries they came from (as :func:`_translate` does for an
    error), ``row N`` in the message the entry, ``<table>.parquet`` the table. Other warnings as they are."""
    from dataclasses import replace

    if not str(w.file).endswith(".parquet"):
        return w
    table = Path(w.file).stem
    entries = rd.where.get(table, [])

    def entry(r: int) -> str | None:
        return entries[r - 1].where if 0 < r <= len(entries) else None

    places = [p for p in (entry(r) for r in (w.rows or [])[:3]) if p]
    msg = re.sub(r"\brow (\d+)\b", lambda m: entry(int(m.group(1))) or m.group(0), w.message)
    msg = re.sub(r"\b(\w+)\.parquet\b", r"table \1", msg)
    more = f" (and {len(w.rows) - 3} more)" if len(w.rows or []) > 3 else ""
    col = f", field {w.column!r}" if w.column else ""
    where = f"{'; '.join(places)}{more}{col}: " if places else (f"table {table}{col}: " if col else "")
    name = entries[w.rows[0] - 1].file if places else (entries[0].file if entries else w.file)
    return replace(w, file=name, column=None, message=where + msg, rows=[], lines=None)
