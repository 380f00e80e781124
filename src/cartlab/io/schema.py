"""The files of the study folder format v1 (``../shared/spec/study-format.md``) as data.

Each file lists its columns with a kind (``str``, ``num``, ``day``, ``datetime``, ``enum``) and whether
it is required. Enumerations are matched case-insensitively and written back in the spec's spelling.
``source`` and ``source_note`` are cartlab's provenance columns, accepted in every file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import polars as pl

#: how vocabulary words are matched: case, and runs of spaces, hyphens and underscores, do not matter
_VOCAB_SEP = r"[\s_-]+"


def vocab_key(text: object) -> str:
    """The matching key of a vocabulary word: "High-flow nasal cannula" -> "high_flow_nasal_cannula"."""
    return re.sub(_VOCAB_SEP, "_", str(text).strip().lower())


def vocab_key_expr(expr: pl.Expr) -> pl.Expr:
    """:func:`vocab_key` of a text column."""
    return expr.str.strip_chars().str.to_lowercase().str.replace_all(_VOCAB_SEP, "_")

SEX = ("F", "M", "U")
#: sex as commonly written (any case) -> the study-format code
SEX_SYNONYMS = (("female", "F"), ("male", "M"), ("unknown", "U"))
DISEASES = ("AML", "B-ALL", "T-ALL", "T-LBL", "MPAL", "LBCL", "FL", "MCL", "CLL", "MM", "other")
DOSE_UNITS = ("cells/kg", "cells", "mg/m2", "mg", "mg/kg")
#: the largest dose a row can mean, per canonical dose unit (far above any CAR-T or chemotherapy dose:
#: CAR-T 1e5-1e8 cells/kg, cyclophosphamide up to a few g/m2); above it the value is a typing error
DOSE_MAX = {"cells/kg": 1e10, "cells": 1e13, "mg/m2": 1e5, "mg": 1e6, "mg/kg": 1e4}
CATEGORIES = (
    "vasopressor",
    "oxygen",
    "tocilizumab",
    "corticosteroid",
    "antipyretic",
    "anakinra",
    "platelet_transfusion",
    "rbc_transfusion",
    "gcsf",
    "other",
)
O2_DEVICES = (
    "blow_by",
    "nasal_cannula",
    "high_flow_nasal_cannula",
    "face_mask",
    "non_rebreather",
    "venturi",
    "cpap",
    "bipap",
    "mechanical_ventilation",
)
INDICATIONS = ("CRS", "ICANS", "infection", "other")
ATTRIBUTIONS = ("CRS", "ICANS", "other")
EVENTS = (
    "seizure",
    "seizure_life_threatening",
    "motor_weakness",
    "cerebral_edema_focal",
    "cerebral_edema_diffuse",
    "extramedullary_disease",
    "infection",
    "allo_hsct",
    "relapse",
    "new_therapy",
    "death",
)
SPECIMENS = ("PB", "BM", "CSF", "serum", "plasma")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str = "str"  # str | num | enum | date | datetime
    required: bool = False
    values: tuple[str, ...] = ()
    range: tuple[float, float] | None = None  # plausible range for num columns (inclusive)
    #: enum columns: other spellings accepted (lower case) -> the value they mean
    synonyms: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class FileSpec:
    name: str
    columns: tuple[Column, ...]
    required_file: bool = False
    #: time columns: (day column, datetime column, required?)
    times: tuple[tuple[str, str, bool], ...] = field(default_factory=tuple)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


PROVENANCE_COLS = (Column("source"), Column("source_note"))
#: study days (since the infusion) a course can have: 100 years either way, as last_followup_day's upper
#: bound; a date typed into a day column (20240330) or an Excel serial (45382) is outside
DAY_RANGE = (-36500.0, 36500.0)

SUBJECTS = FileSpec(
    "subjects",
    (
        Column("subject_id", required=True),
        Column("sex", "enum", values=SEX, synonyms=SEX_SYNONYMS),
        Column("age_years", "num", range=(0, 120)),
        Column("weight_kg", "num", range=(0.3, 400)),
        Column("height_cm", "num", range=(20, 260)),
        Column("disease", "enum", values=DISEASES),
        Column("target"),
        Column("infusion_date", "date"),
        Column("infusion_datetime", "datetime"),
        Column("last_followup_day", "num", range=(-3650, 36500)),
        *PROVENANCE_COLS,
    ),
    required_file=True,
)

DOSES = FileSpec(
    "doses",
    (
        Column("subject_id", required=True),
        Column("day", "num", range=DAY_RANGE),
        Column("datetime", "datetime"),
        Column("agent", required=True),
        Column("dose", "num", required=True, range=(0, float("inf"))),
        Column("unit", required=True),
        *PROVENANCE_COLS,
    ),
    times=(("day", "datetime", True),),
)

OBSERVATIONS = FileSpec(
    "observations",
    (
        Column("subject_id", required=True),
        Column("day", "num", range=DAY_RANGE),
        Column("datetime", "datetime"),
        Column("param", required=True),
        Column("analyte"),
        Column("value", "num"),
        Column("value_text"),
        Column("unit"),
        Column("lln", "num"),
        Column("uln", "num"),
        Column("lloq", "num"),
        Column("specimen", "enum", values=SPECIMENS),
        *PROVENANCE_COLS,
    ),
    times=(("day", "datetime", True),),
)

INTERVENTIONS = FileSpec(
    "interventions",
    (
        Column("subject_id", required=True),
        Column("start_day", "num", range=DAY_RANGE),
        Column("end_day", "num", range=DAY_RANGE),
        Column("start_datetime", "datetime"),
        Column("end_datetime", "datetime"),
        Column("category", "enum", required=True, values=CATEGORIES),
        Column("agent"),
        Column("dose", "num", range=(0, float("inf"))),
        Column("dose_unit"),
        Column("o2_device", "enum", values=O2_DEVICES),
        Column("o2_flow_lpm", "num", range=(0, 100)),
        Column("fio2", "num", range=(0.21, 1.0)),
        Column("indication", "enum", values=INDICATIONS),
        *PROVENANCE_COLS,
    ),
    times=(("start_day", "start_datetime", True), ("end_day", "end_datetime", False)),
)

EVENTS_FILE = FileSpec(
    "events",
    (
        Column("subject_id", required=True),
        Column("day", "num", range=DAY_RANGE),
        Column("datetime", "datetime"),
        Column("event", "enum", required=True, values=EVENTS),
        Column("detail"),
        Column("attribution", "enum", values=ATTRIBUTIONS),
        *PROVENANCE_COLS,
    ),
    times=(("day", "datetime", True),),
)

FILES: dict[str, FileSpec] = {
    f.name: f for f in (SUBJECTS, DOSES, OBSERVATIONS, INTERVENTIONS, EVENTS_FILE)
}
