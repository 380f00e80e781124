"""Duplicate and conflicting rows of a study folder table.

* **Exact duplicates** — rows whose data are identical (every column but the provenance and the
  values as written, so ``38 C`` and ``100.4 F`` at the same time are one measurement): in
  observations and events the first is kept, every later copy is dropped, and a warning names the
  file and the rows dropped. Every engine sees the de-duplicated table, so a duplicated lab row is
  graded once, not twice.
* **Identical administrations** — in doses and interventions each row is an administration (spec:
  doses.csv is "what was given"; a split CAR-T bag, two platelet units on one day), so identical
  rows are all kept, with a warning naming them: delete one if it is a copy, or tell them apart
  with an extra column such as ``bag_id`` (session 34; they were dropped as duplicates before).
* **Conflicts** — two observations of the same subject, parameter, analyte and specimen at the same
  time with different values: an error naming the rows, since cartlab cannot tell which is right.
  Vital signs and bedside neurological scores (dictionary groups ``vital`` and ``neuro``) are
  exempt: several readings a day are normal there, and the engines use the day's worst value.
  Rows known to the day only (a whole-number ``day``, a ``datetime`` without a clock time) are not at
  "the same time": two labs drawn the same day are both measurements (spec: observations.csv holds
  "every measured value"), so they are read, with a warning; each engine takes the day's value its
  documented ``daily_value`` rule gives (session 32; an error before).
"""

from __future__ import annotations

import polars as pl

from cartlab.io.clock import is_timed
from cartlab.io.dictionary import load_dictionary
from cartlab.io.errors import Issue
from cartlab.model import PROVENANCE_COLUMNS, TABLES

#: parameter groups (params_v1.yaml ``group``) whose repeated values at one time are not a conflict
REPEATED_GROUPS = ("vital", "neuro")
#: what makes two observations "the same measurement slot"
OBSERVATION_KEY = ("subject_id", "param", "analyte", "specimen", "day")
MAX_CONFLICTS = 25
#: tables whose rows are administrations: identical rows are several administrations, all kept
ADMINISTRATIONS = {"doses": "day", "interventions": "start_day"}


def _data_columns(frame: pl.DataFrame, table: str) -> list[str]:
    return [c for c in TABLES[table] if c in frame.columns and c not in PROVENANCE_COLUMNS
            and not c.startswith("orig_")]


def drop_duplicates(frame: pl.DataFrame, table: str, fname: str, issues: list[Issue],
                    also: tuple[str, ...] = (), skip_rows: frozenset[int] = frozenset()) -> pl.DataFrame:
    """``frame`` without exact duplicate rows (a warning per file) and with conflicts reported as errors.

    ``also``: further columns of ``frame`` that must be equal too for two rows to be exact duplicates
    (the SDTM reader's fingerprint of the source record, so that two different records that map to
    the same canonical row are not taken for one).
    ``skip_rows``: rows of ``fname`` already reported as errors (no day, an unknown unit): the read fails,
    so they are neither dropped as duplicates nor compared for conflicts (a "dropped, every engine sees
    it once" warning beside the error would say the study was read).
    """
    if frame.height < 2 or "src_row" not in frame.columns:
        return frame
    cols = _data_columns(frame, table) + [c for c in also if c in frame.columns]
    if table in ADMINISTRATIONS:
        _identical_administrations(frame, table, fname, cols, issues)
        return frame
    bad = pl.col("src_row").is_in(sorted(skip_rows)) if skip_rows else pl.lit(False)
    first = pl.struct(cols).is_first_distinct() | bad
    dropped = frame.filter(~first)
    if dropped.height:
        keeper = (frame.with_columns(pl.struct(cols).alias("__k"))
                  .group_by("__k", maintain_order=True).agg(pl.col("src_row").first().alias("__first")))
        pairs = (dropped.with_columns(pl.struct(cols).alias("__k")).join(keeper, on="__k", how="left")
                 .select("src_row", "__first"))
        examples = "; ".join(f"row {r} repeats row {f}" for r, f in pairs.head(5).iter_rows())
        issues.append(Issue(
            fname, None,
            f"{dropped.height} exact duplicate row(s) dropped (equal once units are converted; the first copy "
            f"is kept, every engine sees it once): {examples}{' ...' if pairs.height > 5 else ''}",
            sorted(dropped["src_row"].to_list()), severity="warning",
        ))
        frame = frame.filter(first)
    if table == "observations":
        _conflicts(frame.filter(~bad), fname, issues)
    return frame


def _identical_administrations(frame: pl.DataFrame, table: str, fname: str, cols: list[str],
                               issues: list[Issue]) -> None:
    """A warning per group of identical rows of doses/interventions: each is read as an administration."""
    day = ADMINISTRATIONS[table]
    what = "agent" if table == "doses" else "category"
    groups = (frame.with_columns(pl.struct(cols).alias("__k"))
              .group_by("__k", maintain_order=True)
              .agg(pl.col("src_row").sort(), pl.col("subject_id").first(), pl.col(day).first().alias("__day"),
                   pl.col(what).first().alias("__what"))
              .filter(pl.col("src_row").list.len() > 1))
    for i, (rows, sid, d, name) in enumerate(groups.select("src_row", "subject_id", "__day", "__what").iter_rows()):
        if i == MAX_CONFLICTS:
            rest = groups.slice(i)
            issues.append(Issue(fname, None, f"{rest.height} more groups of identical administrations, each row "
                                "read as one administration", sorted(r for rs in rest["src_row"].to_list() for r in rs),
                                severity="warning"))
            break
        on = f" on day {d:g}" if d is not None else ""
        issues.append(Issue(
            fname, None,
            f"{len(rows)} identical administrations{on} ({name or 'no ' + what}, subject {sid!r}) read as "
            f"{len(rows)}: delete one if it is a copy, or add a distinguishing column such as bag_id", rows, severity="warning"))


def _conflicts(obs: pl.DataFrame, fname: str, issues: list[Issue]) -> None:
    repeated = [p.code for p in load_dictionary().params.values() if p.group in REPEATED_GROUPS]
    key = list(OBSERVATION_KEY)
    timed = is_timed("day", "datetime" if "datetime" in obs.columns else None)
    groups = (
        obs.filter(pl.col("day").is_not_null() & ~pl.col("param").is_in(repeated))
        .group_by(key)
        .agg(
            pl.col("src_row").sort(),
            pl.struct("value", "value_text").n_unique().alias("__n"),
            timed.any().alias("__timed"),
        )
        .filter(pl.col("__n") > 1)
        .sort(pl.col("src_row").list.first())
    )
    untimed = groups.filter(~pl.col("__timed"))
    if untimed.height:  # known to the day only: two measurements of that day, both read
        rows = sorted(r for rs in untimed["src_row"].to_list() for r in rs)
        ex = untimed.row(0, named=True)
        what = ex["param"] + (f" {ex['analyte']}" if ex["analyte"] else "")
        issues.append(Issue(
            fname, "value",
            f"{untimed.height} parameter-day(s) with several different values and no time of day (e.g. {what} of "
            f"subject {ex['subject_id']!r} on day {ex['day']:g}, rows {', '.join(map(str, ex['src_row']))}): all "
            "are read, and each engine takes the day's value its daily_value rule gives (the lowest count for "
            "ICAHT); where the engine wants the last value (CAR-HEMATOTOX, EASIX with daily_value last) the "
            "values have no order, so it scores each and gives the range they leave (see "
            "docs/derivation-conventions.md); give each a time (datetime, or a fractional day) to order them", rows, severity="warning"))
    groups = groups.filter(pl.col("__timed"))
    for i, g in enumerate(groups.iter_rows(named=True)):
        if i == MAX_CONFLICTS:
            rest = groups.slice(i)
            issues.append(Issue(fname, "value", f"{rest.height} more conflicting measurements",
                                sorted(r for rs in rest["src_row"].to_list() for r in rs)))
            break
        rows = g["src_row"]
        what = g["param"] + (f" {g['analyte']}" if g["analyte"] else "") + (f" ({g['specimen']})" if g["specimen"] else "")
        issues.append(Issue(
            fname, "value",
            f"conflicting values: {what} of subject {g['subject_id']!r} on day {g['day']:g} is given "
            f"{len(rows)} times with different values (rows {', '.join(map(str, rows))}); keep the right one, "
            "or give each measurement its own time (datetime, or a fractional day)",
            rows,
        ))
