"""The canonical data model: one long observation table plus subjects, doses, interventions, events.

Every engine reads these frames (polars) and nothing else, so real, imported and simulated patients
are served alike. Column lists here are the contract between ``cartlab.io`` (which builds them from
the study folder format v1, see ``../shared/spec/study-format.md``), ``cartlab.store`` (which
persists them in DuckDB) and the engines.

Conventions
-----------
* ``day`` is days relative to the first CAR-T infusion (day 0 exists; 14.5 is noon of day 14).
* ``value``/``lln``/``uln``/``lloq`` are in the parameter's canonical unit (``unit``); the values
  as given in the source are kept in ``orig_*`` columns so the study can be written back losslessly.
* ``source`` is the data-provenance label (``paper``, ``reconstructed``, ``synthetic``, ``observed``
  or empty) and ``source_note`` says what part of a row is reconstructed.
* ``src_file``/``src_sha256``/``src_row`` say which file and which data row (1-based, header
  excluded) produced the row.
* ``extra`` holds the unknown extra columns of the source row as a JSON object (they are kept and
  written back, never dropped).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

FORMAT_VERSION = "1"

PROVENANCE = {
    "src_file": pl.String,
    "src_sha256": pl.String,
    "src_row": pl.Int64,
}

COMMON_TAIL = {
    "source": pl.String,
    "source_note": pl.String,
    "extra": pl.String,
    **PROVENANCE,
}

SUBJECTS = {
    "subject_id": pl.String,
    "sex": pl.String,
    "age_years": pl.Float64,
    "weight_kg": pl.Float64,
    "height_cm": pl.Float64,
    "disease": pl.String,
    "target": pl.String,
    "infusion_date": pl.String,
    "infusion_datetime": pl.String,
    "last_followup_day": pl.Float64,
    **COMMON_TAIL,
}

DOSES = {
    "subject_id": pl.String,
    "day": pl.Float64,
    "datetime": pl.String,
    "agent": pl.String,
    "dose": pl.Float64,  # in ``unit`` (canonical: cells/kg, cells, mg/m2, mg, mg/kg)
    "unit": pl.String,
    "orig_dose": pl.Float64,
    "orig_unit": pl.String,
    **COMMON_TAIL,
}

OBSERVATIONS = {
    "subject_id": pl.String,
    "day": pl.Float64,
    "datetime": pl.String,
    "param": pl.String,
    "analyte": pl.String,
    "value": pl.Float64,  # canonical unit
    "value_text": pl.String,
    "unit": pl.String,  # canonical unit of the param ("" when unitless)
    "lln": pl.Float64,
    "uln": pl.Float64,
    "lloq": pl.Float64,
    "censor": pl.String,  # "<", "<=", ">", ">=" when value_text is a censored result like "<50"
    "censor_limit": pl.Float64,  # the bound of a censored result, canonical unit
    "specimen": pl.String,
    "orig_value": pl.Float64,
    "orig_unit": pl.String,
    "orig_lln": pl.Float64,
    "orig_uln": pl.Float64,
    "orig_lloq": pl.Float64,
    **COMMON_TAIL,
}

INTERVENTIONS = {
    "subject_id": pl.String,
    "start_day": pl.Float64,
    "end_day": pl.Float64,
    "start_datetime": pl.String,
    "end_datetime": pl.String,
    "category": pl.String,
    "agent": pl.String,
    "dose": pl.Float64,
    "dose_unit": pl.String,
    "o2_device": pl.String,
    "o2_flow_lpm": pl.Float64,
    "fio2": pl.Float64,
    "indication": pl.String,
    **COMMON_TAIL,
}

EVENTS = {
    "subject_id": pl.String,
    "day": pl.Float64,
    "datetime": pl.String,
    "event": pl.String,
    "detail": pl.String,
    "attribution": pl.String,
    **COMMON_TAIL,
}

#: ``source`` labels whose values were not measured (the seed's reconstructed course, synthetic cohorts,
#: digital-twin simulations); every view that shows such values labels them.
NOT_MEASURED_SOURCES: tuple[str, ...] = ("reconstructed", "synthetic", "simulated")

TABLES: dict[str, dict[str, pl.DataType]] = {
    "subjects": SUBJECTS,
    "doses": DOSES,
    "observations": OBSERVATIONS,
    "interventions": INTERVENTIONS,
    "events": EVENTS,
}

#: Columns that say where a row came from (file, hash, row); not part of the data itself.
PROVENANCE_COLUMNS = tuple(PROVENANCE)

#: Columns of ``subject_summary.csv`` required by the spec, in order, with their types (grades are
#: integers, days numbers, ``mrd_negative`` a boolean; empty = not evaluable).
SUBJECT_SUMMARY: dict[str, pl.DataType] = {
    "subject_id": pl.String,
    "crs_grade_astct": pl.Int64,
    "crs_onset_day": pl.Float64,
    "crs_resolution_day": pl.Float64,
    "icans_grade_astct": pl.Int64,
    "icaht_early_grade": pl.Int64,
    "icaht_late_grade": pl.Int64,
    "best_response": pl.String,
    "best_response_day": pl.Float64,
    "mrd_negative": pl.Boolean,
    "car_cmax": pl.Float64,
    "car_tmax": pl.Float64,
    "car_auc_0_28": pl.Float64,
    "car_tlast": pl.Float64,
}
SUBJECT_SUMMARY_COLUMNS = tuple(SUBJECT_SUMMARY)


def empty_frame(table: str) -> pl.DataFrame:
    """An empty canonical frame of ``table`` with the right schema."""
    return pl.DataFrame(schema=TABLES[table])


def conform(df: pl.DataFrame, table: str) -> pl.DataFrame:
    """Return ``df`` with exactly the canonical columns of ``table`` (missing ones null), in order."""
    schema = TABLES[table]
    cols = []
    for name, dtype in schema.items():
        if name in df.columns:
            cols.append(pl.col(name).cast(dtype))
        else:
            cols.append(pl.lit(None, dtype=dtype).alias(name))
    return df.select(cols)


@dataclass
class Study:
    """A study in canonical form: five frames plus the list of source files it was read from."""

    study_id: str
    subjects: pl.DataFrame
    doses: pl.DataFrame = field(default_factory=lambda: empty_frame("doses"))
    observations: pl.DataFrame = field(default_factory=lambda: empty_frame("observations"))
    interventions: pl.DataFrame = field(default_factory=lambda: empty_frame("interventions"))
    events: pl.DataFrame = field(default_factory=lambda: empty_frame("events"))
    #: one row per source file: file, format, sha256, n_rows
    sources: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(
            schema={"file": pl.String, "format": pl.String, "sha256": pl.String, "n_rows": pl.Int64}
        )
    )
    #: what reading the study warned about (``cartlab.io.Issue``: files not read, duplicate rows dropped)
    warnings: list = field(default_factory=list)
    #: the optional tables whose file was not given at all (``"interventions"``, ``"events"``, ...), set by
    #: the study-folder reader; empty (a study built in Python, SDTM, FHIR) reads every table as given, an
    #: empty table as "none recorded". Engines read an absent file as unknown where the standard needs it
    #: (options ``crs.absent_interventions``, ``t_icaht.absent_interventions``)
    absent: frozenset = field(default_factory=frozenset)
    #: whether the study's CAR-T doses are recorded: doses.csv given and holding a CAR-T row for at least
    #: one subject of the WHOLE study (review 38 A1: a study-level fact, so a subset, one subject, a batch
    #: or a stored subject says the same as the whole study; ``subset``/``subject`` carry it). None: not
    #: fixed yet, read from this Study's own rows (:meth:`car_t_doses_recorded`)
    doses_recorded: bool | None = None
    #: the options the SDTM / FHIR reader read the study with (partial dates, observation statuses, ...);
    #: empty for a study folder. A subset, one subject, a batch and a stored study carry them, so every
    #: analysis.json of the study records them
    reader_options: dict = field(default_factory=dict)

    def car_t_doses_recorded(self) -> bool:
        """``doses_recorded`` when fixed, else from this Study: doses.csv not absent (``absent``, or a
        stored study's "not given" warning) and a CAR-T row (with a day) for some subject."""
        if self.doses_recorded is not None:
            return self.doses_recorded
        return car_t_rows_recorded(self)

    def table(self, name: str) -> pl.DataFrame:
        return getattr(self, name)

    def tables(self) -> dict[str, pl.DataFrame]:
        return {name: getattr(self, name) for name in TABLES}

    @property
    def subject_ids(self) -> list[str]:
        """The subjects of the study: ``subjects`` in its order, then any subject found only in the
        other tables (doses, observations, interventions, events, in that order and first-seen order).

        The one definition every engine uses. A study read from a folder has no such extra subjects
        (the reader rejects them); a study built in Python may, and they are analysed, not dropped.
        """
        frames = tuple(self.table(name) for name in TABLES)
        cache = getattr(self, "_ids_cache", None)  # not a dataclass field: Study(**fields) keeps working
        if cache is not None and all(a is b for a, b in zip(cache[0], frames)):
            return list(cache[1])  # every engine asks; the frames are the same objects
        ids = self._subject_ids()
        self._ids_cache = (frames, tuple(ids))  # holding the frames: their ids cannot be reused
        return ids

    def _subject_ids(self) -> list[str]:
        ids = self.subjects["subject_id"].to_list()
        known = self.subjects["subject_id"]
        for name in TABLES:
            if name == "subjects":
                continue
            sid = self.table(name)["subject_id"]
            extra = sid.filter(sid.is_not_null() & ~sid.is_in(known.implode()))
            if extra.len():
                new = extra.unique(maintain_order=True)
                ids.extend(new.to_list())
                known = known.append(new)
        return ids

    def subset(self, subject_ids) -> "Study":
        """The same study restricted to ``subject_ids`` (order of the subjects table kept)."""
        ids = list(subject_ids)
        kw = {name: df.filter(pl.col("subject_id").is_in(ids)) for name, df in self.tables().items()}
        return Study(study_id=self.study_id, sources=self.sources, warnings=self.warnings, absent=self.absent,
                     doses_recorded=self.car_t_doses_recorded(), reader_options=dict(self.reader_options), **kw)

    def subject(self, subject_id: str) -> "Study":
        """The same study restricted to one subject."""
        kw = {
            name: df.filter(pl.col("subject_id") == subject_id) for name, df in self.tables().items()
        }
        return Study(study_id=self.study_id, sources=self.sources, absent=self.absent,
                     doses_recorded=self.car_t_doses_recorded(), reader_options=dict(self.reader_options), **kw)

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        parts = ", ".join(f"{n}={self.table(n).height}" for n in TABLES)
        return f"Study({self.study_id!r}, {parts})"


def car_t_rows_recorded(study: Study) -> bool:
    """True when ``study``'s doses are recorded: doses.csv not absent (``Study.absent`` or a stored "not
    given" warning) and at least one CAR-T row with a day (spec "Time": day 0 is the first CAR-T infusion;
    a doses.csv without any CAR-T row leaves the infusion unrecorded: missing is not negative)."""
    from cartlab.io.absent_files import table_absent
    from cartlab.kinetics.agents import car_t_agent_expr

    if table_absent(study, "doses"):
        return False
    d = study.doses
    return bool(d.height) and d.filter(pl.col("day").is_not_null() & car_t_agent_expr(pl.col("agent"))).height > 0
