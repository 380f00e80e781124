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
from cartlab.io.dictionary import load_dictionary
from cartlab.io.sdtm.clinical import anchors, dm_deaths, map_cm, map_dm, map_events, map_ex, unmapped
from cartlab.io.sdtm.common import Ctx, attach_supp
from cartlab.io.sdtm.dates import PARTIAL_DATES
from cartlab.io.sdtm.files import DomainFile, find_domains, load_domain
from cartlab.io.sdtm.findings import map_findings
from cartlab.io.sdtm.mapping import load_mapping
from cartlab.io.sdtm.report import REPORT_SCHEMA, summarise
from cartlab.model import Study, conform, empty_frame

EVENT_DOMAINS = ("AE", "CE", "DS", "DD", "PR", "RS")


@dataclass
class SdtmImport:
    """The result of ``read_sdtm(..., report=True)``: the study and its mapping report."""

    study: Study
    #: domain, file, code, target, n_rows, n_mapped, n_skipped, reason (every record read, once)
    report: pl.DataFrame
    mapping_files: tuple[str, ...]


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
) -> Study | SdtmImport:
    """Read an SDTM folder into a canonical :class:`~cartlab.model.Study`.

    ``mapping``: a YAML file merged over the shipped tables (``sdtm_map.yaml``). ``partial_dates``:
    ``skip`` (default; such records are counted as not mapped) or ``impute`` (see
    :mod:`cartlab.io.sdtm.dates`). ``report=True`` returns an :class:`SdtmImport` with the mapping
    report. A file that breaks SDTM (unreadable, a required variable missing, a bad date or number,
    an unknown unit of a mapped test) raises one :class:`~cartlab.errors.InputError` naming the
    file and the record.
    """
    if partial_dates not in PARTIAL_DATES:
        raise InputError(f"partial_dates must be one of {', '.join(PARTIAL_DATES)}, not {partial_dates!r}")
    folder = Path(folder)
    m = load_mapping(mapping)
    paths = find_domains(folder)
    if "DM" not in paths:
        raise InputError(f"{folder}: no DM domain (dm.xpt, dm.sas7bdat or dm.csv); found: "
                         f"{', '.join(p.name for p in paths.values()) or 'no domain files'}")
    files = {dom: load_domain(dom, p) for dom, p in paths.items()}
    for dom, f in files.items():
        if dom not in m.unmapped_domains:
            f.require("USUBJID")
    statuses: list[tuple[DomainFile, pl.DataFrame]] = []
    for dom, f in files.items():
        if dom.startswith("SUPP") and len(dom) > 4:
            parent = files.get(dom[4:])
            if parent is None:
                statuses.append((f, unmapped(f, f"parent domain {dom[4:]} not present")))
            else:
                statuses.append((f, attach_supp(parent, f, m)))
    dm = files["DM"]
    dm.require("USUBJID")
    ex = files.get("EX") or files.get("EC")
    anc = anchors(dm, ex, m.ex_agents)
    ctx = Ctx(m, load_dictionary(), partial_dates, anc, dm.df["USUBJID"].cast(pl.String).drop_nulls())

    subjects, st = map_dm(dm, ctx)
    statuses.append((dm, st))
    tables: dict[str, list[pl.DataFrame]] = {"doses": [], "observations": [], "interventions": [], "events": []}
    for dom, f in files.items():
        if dom == "DM" or (dom.startswith("SUPP") and len(dom) > 4):
            continue
        if dom in m.unmapped_domains:
            st = unmapped(f, f"domain {dom} not mapped: {m.unmapped_domains[dom]}")
        elif dom == "EC" and "EX" in files:
            st = unmapped(f, "EC (exposure as collected) not used: EX is present")
        elif dom in ("EX", "EC"):
            out, st = map_ex(f, ctx)
            tables["doses"].append(out)
        elif dom == "CM":
            out, st = map_cm(f, ctx)
            tables["interventions"].append(out)
        elif dom in EVENT_DOMAINS:
            out, st = map_events(f, ctx)
            tables["events"].append(out)
        elif f.has(f"{dom}TESTCD"):
            out, st = map_findings(f, ctx)
            tables["observations"].append(out)
        else:
            st = unmapped(f, f"domain {dom} not mapped by cartlab")
        statuses.append((f, st))
    have_death = set()
    for ev in tables["events"]:
        have_death |= set(ev.filter(pl.col("event") == "death")["subject_id"].to_list())
    deaths, dst = dm_deaths(dm, ctx, have_death)
    if deaths.height:
        tables["events"].append(deaths)

    sids = dm.df["STUDYID"].drop_nulls().unique().to_list() if dm.has("STUDYID") else []
    study = Study(
        study_id=study_id or (str(sids[0]) if len(sids) == 1 else folder.resolve().name),
        subjects=conform(subjects, "subjects"),
        sources=pl.DataFrame(
            [(f.name, f.fmt, f.sha256, f.n_rows) for f in files.values()],
            schema={"file": pl.String, "format": pl.String, "sha256": pl.String, "n_rows": pl.Int64}, orient="row",
        ),
        **{name: _concat(frames, name) for name, frames in tables.items()},
    )
    if not report:
        return study
    parts = [summarise(f.domain, f.name, s) for f, s in statuses]
    if dst.height:
        parts.append(summarise("DM", f"{dm.name}:DTHDTC", dst))
    rep = pl.concat(parts) if parts else pl.DataFrame(schema=REPORT_SCHEMA)
    return SdtmImport(study, rep, m.files)
