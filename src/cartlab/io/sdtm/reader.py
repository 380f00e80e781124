"""``read_sdtm(folder)``: an SDTM folder (XPT v5, SAS7BDAT or CSV domains) -> canonical Study.

Which domain goes where (docs/interop/sdtm.md): DM -> subjects; EX (else EC) -> doses; CM ->
interventions; LB, VS, PC, QS and any other domain with --TESTCD -> observations; AE, CE, DS, DD,
PR, RS -> events (through the mapping's ``events`` table; DM.DTHDTC gives a death when no
other domain does); SUPP-- qualifiers -> the columns of their parent records; every other domain
is read and counted as not mapped. Every record read is in the mapping report, mapped or skipped
with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from cartlab.errors import InputError
from cartlab.io.course_checks import mixed_utc_offsets
from cartlab.io.dictionary import load_dictionary
from cartlab.io.duplicates import drop_duplicates
from cartlab.io.errors import Issue
from cartlab.io.sdtm.clinical import (
    DM_EXTRA,
    EVENT_DATES,
    anchors,
    dm_deaths,
    map_cm,
    map_dm,
    map_events,
    map_ex,
    rfxstdtc_anchor_warnings,
    unmapped,
)
from cartlab.io.sdtm.common import Ctx, attach_supp
from cartlab.io.sdtm.dates import PARTIAL_DATES
from cartlab.io.sdtm.files import ROW, DomainFile, find_domains, load_domain
from cartlab.io.sdtm.findings import map_findings
from cartlab.io.sdtm.mapping import UNKNOWN_INDICATION, load_mapping
from cartlab.io.sdtm.partial import PARTIAL_OPTIONS, last_record_day, ongoing_ends, partial_deaths, undated_deaths
from cartlab.io.sdtm.report import REPORT_SCHEMA, summarise
from cartlab.io.sdtm.subjects import vs_body_size
from cartlab.model import Study, conform, empty_frame

EVENT_DOMAINS = ("AE", "CE", "DS", "DD", "PR", "RS")
#: domain -> (canonical table, mapper); any other domain with --TESTCD is a findings domain
_MAPPERS = {"EX": ("doses", map_ex), "EC": ("doses", map_ex), "CM": ("interventions", map_cm),
            **{d: ("events", map_events) for d in EVENT_DOMAINS}}


@dataclass
class SdtmImport:
    """The result of ``read_sdtm(..., report=True)``: the study and its mapping report."""

    study: Study
    #: domain, file, code, target, n_rows, n_mapped, n_skipped, reason (every record read, once)
    report: pl.DataFrame
    mapping_files: tuple[str, ...]


def _death_date_conflicts(dm: DomainFile, events: list[pl.DataFrame]) -> list[Issue]:
    """One warning per subject whose DM.DTHDTC falls on another calendar day than the death mapped
    from DS/CE (that one is used; session 33, review33 SDTM B4): two dates of one death cannot both be
    right, and survival endpoints read the day."""
    deaths = [e.filter(pl.col("event") == "death").select("subject_id", "day", "src_file")
              for e in events if e.height and "event" in e.columns]
    if "dth__day" not in dm.df.columns or not deaths:
        return []
    mapped = (pl.concat(deaths, how="vertical_relaxed").filter(pl.col("src_file") != dm.name)
              .drop_nulls("day").group_by("subject_id")
              .agg(pl.col("day").floor().min().alias("_d"), pl.col("src_file").first()))
    dmd = dm.df.select(pl.col("USUBJID").cast(pl.String).alias("subject_id"), pl.col("dth__day").floor().alias("_dm"),
                       pl.col(ROW)).drop_nulls("_dm")
    bad = dmd.join(mapped, on="subject_id", how="inner").filter(pl.col("_dm") != pl.col("_d"))
    return [SdtmIssue(dm.name, "DTHDTC", f"USUBJID {sid}: DM.DTHDTC is day {dd:g} but the death in {src} is day {d:g}; "
                      f"the {src} date is used; correct the one that is wrong", [row], "warning")
            for sid, dd, row, d, src in bad.select("subject_id", "_dm", ROW, "_d", "src_file").iter_rows()]


class SdtmIssue(Issue):
    """A warning about SDTM records: ``rows`` are record numbers of the domain file (``src_row``)."""

    def where(self, max_rows: int = 8) -> str:
        shown = ", ".join(str(r) for r in self.rows[:max_rows])
        more = f" and {len(self.rows) - max_rows:,} more" if len(self.rows) > max_rows else ""
        return f"{self.file}, record{'s' if len(self.rows) > 1 else ''} {shown}{more}" if self.rows else self.file


#: the mapping report's reason for a record dropped as an exact duplicate
DUPLICATE = ("exact duplicate of an earlier record (every variable but --SEQ the same): dropped, "
             "every engine sees it once")
_RECORD = "__record"


def _drop_duplicates(out: pl.DataFrame, st: pl.DataFrame, table: str, f: DomainFile,
                     warnings: list[Issue]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The study folder's and FHIR's rule (:func:`cartlab.io.duplicates.drop_duplicates`) for the rows
    mapped from one domain file: an exact duplicate is dropped with a warning (and counted in the
    mapping report), two different values of one measurement slot are an InputError.

    An exact duplicate is a record that gives the same canonical row *and* repeats an earlier record
    in every variable but its sequence number --SEQ: two records that differ in a variable cartlab
    does not carry (VISIT, --TPT, --POS ...) are two measurements, both kept. So are two results at the
    same time with different values from records that differ in --NAM (the laboratory), --METHOD or
    --GRPID (review46 #9: a central and a local NEUT): they are not one measurement given twice, so
    they are kept with a warning instead of the conflict error.
    """
    if out.height < 2:
        return out, st
    variables = [c for c in f.df.columns if not c.startswith("__") and c != f"{f.domain}SEQ"]
    record = f.df.select(pl.col(ROW).alias("src_row"), pl.struct(variables).alias(_RECORD))
    found: list[Issue] = []
    joined = out.join(record, on="src_row", how="left").with_row_index("__i")
    split = [v for v in (f"{f.domain}NAM", f"{f.domain}METHOD", f"{f.domain}GRPID") if f.has(v)]
    if split and table == "observations":
        part = f.df.select(pl.col(ROW).alias("src_row"), pl.concat_str(
            [f.text(v).fill_null("") for v in split], separator="\x1f").alias("__part"))
        joined = joined.join(part, on="src_row", how="left")
        kept = pl.concat([drop_duplicates(p.drop("__part"), table, f.name, found, also=(_RECORD,))
                          for p in joined.partition_by("__part", maintain_order=True)]).sort("__i")
        across: list[Issue] = []  # the conflict check over the whole file: what only differs by --NAM ...
        drop_duplicates(kept, table, f.name, across, also=(_RECORD,))
        found += [Issue(i.file, i.column, i.message.split("; keep the right one")[0].replace("conflicting values", "two values at one time") + f": the records differ in "
                        f"{'/'.join(split)} (another laboratory, method or group), so they are read as two "
                        "measurements, both kept; each engine takes the day's value its daily_value rule gives",
                        i.rows, "warning") for i in across if i.severity == "error"]
    else:
        kept = drop_duplicates(joined, table, f.name, found, also=(_RECORD,))
    kept = kept.drop(_RECORD, "__i")
    errors = [i for i in found if i.severity == "error"]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        var = f"{f.domain}STRESN/{f.domain}STRESC" if first.column == "value" else first.column
        raise InputError(f"{f.name}, records {', '.join(map(str, first.rows))}, variable {var}: {first.message}; "
                         f"in SDTM the time of each goes in {f.domain}DTC{more}")
    warnings += [SdtmIssue(i.file, i.column, i.message, i.rows, i.severity) for i in found]
    if kept.height < out.height:
        gone = out.filter(~pl.col("src_row").is_in(kept["src_row"].implode()))["src_row"]
        st = st.with_columns(pl.when(pl.col(ROW).is_in(gone.implode())).then(pl.lit(DUPLICATE))
                             .otherwise(pl.col("reason")).alias("reason"))
    return kept, st


def _drop_restated_dm(dm: DomainFile) -> None:
    """Blank the DM.SITEID / RACE / ARM that would only restate what ``subjects.extra`` gets anyway, so
    write_sdtm -> read_sdtm gives ``extra`` back as it was (keys and their order):

    * the variable's key is already in the record's SUPPDM EXTRA (write_sdtm writes the subject's
      ``extra`` there and DM.SITEID/RACE/ARM from it; the EXTRA key wins over the DM variable anyway);
    * DM.ARM is ``<SUPPDM TARGET> CAR-T``: the arm write_sdtm derives from the target when none is
      stated, which the ADaM ADSL derives again from ``target`` (nothing is lost).

    A third-party DM (no SUPPDM EXTRA / TARGET) is left as it is: its SITEID, RACE and ARM go to
    ``extra`` as before."""
    present = [var for var in DM_EXTRA if dm.has(var)]
    if not present:
        return
    extra = dm.col("__q_extra").cast(pl.String)
    cols = []
    for var in present:
        stated = extra.str.json_path_match(f"$.{DM_EXTRA[var]}").is_not_null().fill_null(False)
        if var == "ARM":
            target = dm.col("__q_target").cast(pl.String).str.strip_chars()
            stated = stated | (dm.text("ARM") == target + pl.lit(" CAR-T")).fill_null(False)
        cols.append(pl.when(stated).then(None).otherwise(pl.col(var)).alias(var))
    df = dm.df.with_columns(cols)
    # a variable left with no value is dropped: extra is then the SUPPDM EXTRA text as written
    dm.df = df.drop([var for var in present if df[var].null_count() == df.height])


def _concat(frames: list[pl.DataFrame], table: str) -> pl.DataFrame:
    frames = [conform(f, table) for f in frames if f.height]
    return pl.concat(frames) if frames else empty_frame(table)


def read_sdtm(
    folder: str | Path,
    mapping: str | Path | None = None,
    *,
    report: bool = False,
    partial_dates: str = "skip",
    study_id: str | None = None,
    partial_death_dates: str = "impute",
    partial_event_dates: str = "impute",
    study_day_fallback: bool = False,
    unknown_indication: str | None = None,
) -> Study | SdtmImport:
    """Read an SDTM folder into a canonical :class:`~cartlab.model.Study`.

    ``mapping``: a YAML file merged over the shipped tables (``sdtm_map.yaml``). ``partial_dates``:
    ``skip`` (default; such records are counted as not mapped) or ``impute`` (see
    :mod:`cartlab.io.sdtm.dates`). ``report=True`` returns an :class:`SdtmImport` with the mapping
    report. ``partial_death_dates`` / ``partial_event_dates`` (``impute``, default, or ``drop``): a death or
    an event whose date is partial (``2021-07``) is placed on the first day of the period, not before the
    last record (a death) or day 0 (an event), with a warning (:mod:`cartlab.io.sdtm.partial`).
    ``study_day_fallback``: place a record with --DY and no --DTC from --DY (off by default).
    ``unknown_indication``: a CMINDC in neither indications table of the mapping is ``count`` (default:
    the indication is left empty, which the study format counts toward CRS) or ``other`` (not counted);
    None takes the mapping's ``unknown_indication`` (default ``count``). Either way the text is kept
    in source_note and named in a warning. A file that breaks SDTM (unreadable, a required variable missing, a bad date or number,
    an unknown unit of a mapped test) raises one :class:`~cartlab.errors.InputError` naming the
    file and the record.
    """
    if partial_dates not in PARTIAL_DATES:
        raise InputError(f"partial_dates must be one of {', '.join(PARTIAL_DATES)}, not {partial_dates!r}")
    for name, val in (("partial_death_dates", partial_death_dates), ("partial_event_dates", partial_event_dates)):
        if val not in PARTIAL_OPTIONS:
            raise InputError(f"{name} must be one of {', '.join(PARTIAL_OPTIONS)}, not {val!r}")
    folder = Path(folder)
    m = load_mapping(mapping)
    if unknown_indication is None:
        unknown_indication = m.unknown_indication
    if unknown_indication not in UNKNOWN_INDICATION:
        raise InputError(f"unknown_indication must be one of {', '.join(UNKNOWN_INDICATION)}, not {unknown_indication!r}")
    paths = find_domains(folder)
    if "DM" not in paths:
        raise InputError(f"{folder}: no DM domain (dm.xpt, dm.sas7bdat or dm.csv); found: "
                         f"{', '.join(p.name for p in paths.values()) or 'no domain files'}")
    files = {dom: load_domain(dom, p) for dom, p in paths.items()}
    for dom, f in files.items():
        if dom not in m.unmapped_domains:
            f.require("USUBJID")
            # SDTMIG: USUBJID is required in every record; a record without one belongs to no subject
            f.fail(pl.col("USUBJID").cast(pl.String).str.strip_chars().fill_null("") == "", "USUBJID",
                   "USUBJID is empty (SDTMIG: required in every record)")
    statuses: list[tuple[DomainFile, pl.DataFrame]] = []
    supp_warnings: list[Issue] = []  # SUPP-- records attached to no parent record (domain, IDVAR, IDVARVAL)
    for dom, f in files.items():
        if dom.startswith("SUPP") and len(dom) > 4:
            parent = files.get(dom[4:])
            if parent is None:
                statuses.append((f, unmapped(f, f"parent domain {dom[4:]} not present")))
            else:
                statuses.append((f, attach_supp(parent, f, m, supp_warnings)))
    dm = files["DM"]
    dm.require("USUBJID")
    ex = files.get("EX") or files.get("EC")
    anc = anchors(dm, ex, m.ex_agents)
    ctx = Ctx(m, load_dictionary(), partial_dates, anc, dm.df["USUBJID"].cast(pl.String).drop_nulls(),
              partial_event_dates=partial_event_dates, partial_death_dates=partial_death_dates,
              study_day_fallback=bool(study_day_fallback), unknown_indication=unknown_indication)

    _drop_restated_dm(dm)
    subjects, st = map_dm(dm, ctx)
    statuses.append((dm, st))
    tables: dict[str, list[pl.DataFrame]] = {"doses": [], "observations": [], "interventions": [], "events": []}
    warnings: list[Issue] = [SdtmIssue(ex.name, f"{ex.domain}TRT", msg, rows, "warning")
                             for _sid, msg, rows in rfxstdtc_anchor_warnings(anc, ex, m.ex_agents)]
    warnings += supp_warnings
    in_dm = set(ctx.subjects.to_list())
    for dom, f in files.items():  # records of subjects DM does not have: not mapped, and said so
        if dom == "DM" or dom in m.unmapped_domains:
            continue
        stray = f.df.filter(~pl.col("USUBJID").cast(pl.String).is_in(sorted(in_dm))).select(
            pl.col("USUBJID").cast(pl.String), ROW)
        if stray.height:
            ids = stray["USUBJID"].unique(maintain_order=True).to_list()
            who = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
            warnings.append(SdtmIssue(f.name, "USUBJID", f"{stray.height:,} record(s) of USUBJID {who}, not a "
                                      "subject of DM: not mapped (counted in the mapping report)",
                                      stray[ROW].to_list(), "warning"))
    for dom, f in files.items():
        if dom == "DM" or (dom.startswith("SUPP") and len(dom) > 4):
            continue
        if dom in m.unmapped_domains:
            st = unmapped(f, f"domain {dom} not mapped: {m.unmapped_domains[dom]}")
        elif dom == "EC" and "EX" in files:
            st = unmapped(f, "EC (exposure as collected) not used: EX is present")
        else:
            table, mapper = _MAPPERS.get(dom, ("observations", map_findings) if f.has(f"{dom}TESTCD") else (None, None))
            if mapper is None:
                st = unmapped(f, f"domain {dom} not mapped by cartlab")
            else:
                out, st = _drop_duplicates(*mapper(f, ctx), table, f, warnings)
                tables[table].append(out)
        statuses.append((f, st))
    have_death = set()
    for ev in tables["events"]:
        have_death |= set(ev.filter(pl.col("event") == "death")["subject_id"].to_list())
    warnings += ctx.warnings  # e.g. a text result of a numeric param that is no number (not mapped)
    deaths, dst = dm_deaths(dm, ctx, have_death)
    if deaths.height:
        tables["events"].append(deaths)
        have_death |= set(deaths["subject_id"].to_list())
    warnings += _death_date_conflicts(dm, tables["events"])
    # partial death dates (DS before DM), undated deaths, ongoing interventions (review38 A1, A2)
    lka = last_record_day(tables)
    sources = []
    if "DS" in files:
        ds = files["DS"]
        if "__event" in ds.df.columns:
            sources.append((ds, "DSSTDTC", "__dstatus", pl.col("__event") == "death"))
    # a death record of another event domain the mapping reads deaths from (CE CEDECOD = DEATH, AE ...):
    # the same rule, after DS (review38 diff2 A1)
    for dom, f in files.items():
        if dom in ("DS", "DM") or dom.startswith("SUPP") or "__event" not in f.df.columns:
            continue
        dtc = EVENT_DATES.get(dom, f"{dom}DTC")
        if dom == "CE" and not f.has("CESTDTC"):
            dtc = "CEDTC"
        sources.append((f, dtc, "__dstatus", pl.col("__event") == "death"))
    if dm.has("DTHDTC") and "dth__dstatus" in dm.df.columns:
        sources.append((dm, "DTHDTC", "dth__dstatus", pl.lit(True)))
    imputed, warned = partial_deaths(sources, have_death, lka, ctx.partial_death_dates, warnings)
    if imputed.height:
        tables["events"].append(imputed)
    undated_deaths(dm, files.get("AE"), have_death | warned, warnings)
    rfpen = dm.df.select(pl.col("USUBJID").cast(pl.String).alias("subject_id"),
                         pl.when(pl.col("end__dstatus") == "ok").then(pl.col("end__day").floor()).alias("__rfpen"))
    tables["interventions"] = ongoing_ends(tables["interventions"], rfpen, lka)

    concat = {name: _concat(frames, name) for name, frames in tables.items()}
    subjects = vs_body_size(conform(subjects, "subjects"), tables["observations"])  # review46 #5
    warnings += [SdtmIssue(i.file, i.column, i.message, i.rows, "warning")  # review38 B6, the study folder's check
                 for i in mixed_utc_offsets({"subjects": subjects, **concat}, "src_row")]
    sids = dm.df["STUDYID"].drop_nulls().unique().to_list() if dm.has("STUDYID") else []
    study = Study(
        study_id=study_id or (str(sids[0]) if len(sids) == 1 else folder.resolve().name),
        subjects=subjects,
        sources=pl.DataFrame(
            [(f.name, f.fmt, f.sha256, f.n_rows) for f in files.values()],
            schema={"file": pl.String, "format": pl.String, "sha256": pl.String, "n_rows": pl.Int64}, orient="row",
        ),
        **concat,
        warnings=warnings,
    )
    #: the reader options this study was read with, written to analysis.json (as the FHIR reader; review38
    #: diff2 B1)
    study.reader_options = {"partial_dates": partial_dates, "partial_death_dates": partial_death_dates,
                            "partial_event_dates": partial_event_dates,
                            "study_day_fallback": bool(study_day_fallback),
                            "unknown_indication": unknown_indication}
    if not report:
        return study
    parts = [summarise(f.domain, f.name, s) for f, s in statuses]
    if dst.height:
        parts.append(summarise("DM", f"{dm.name}:DTHDTC", dst))
    rep = pl.concat(parts) if parts else pl.DataFrame(schema=REPORT_SCHEMA)
    return SdtmImport(study, rep, m.files)
