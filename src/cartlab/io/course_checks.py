"""Checks of a study folder's course as a whole (after every file is read): what a missing optional
file means, records dated after a death, date-times with different UTC offsets in one subject, and a
last_followup_day that contradicts the subject's rows. They warn; they never stop a read."""

from __future__ import annotations

import functools
import zoneinfo
from datetime import datetime, timedelta, timezone

import polars as pl

from cartlab.io.clock import OFFSET, has_clock_time
from cartlab.io.errors import Issue

__all__ = ["ABSENT_FILE_MEANS", "ABSENT_FILE_TEMPLATES", "MIXED_OFFSETS", "followup_day_checks", "mixed_utc_offsets", "records_after_death",
           "unknown_dose_agents"]

#: what an analysis reads as not given when a course (observations) comes without these files, with the
#: files named as ``{interventions}`` / ``{events}`` (review 39 diff2 C1: a Parquet study is told
#: interventions.parquet; :func:`cartlab.io.absent_files.absent_file_means` fills them in)
ABSENT_FILE_TEMPLATES = {
    "doses": "no CAR-T, lymphodepletion or bridging dose is recorded (kinetics per dose, the protocol's dose "
             "checks and the twin's dosing have no doses; a protocol's planned administrations of a subject "
             "without any dose row are not checkable rather than missed; the lymphodepletion day is unknown, so "
             "CAR-HEMATOTOX is a range over the candidate baselines of days -14 to -1 and the pre-lymphodepletion "
             "EASIX is not computed, option absent_doses=unknown)",
    "interventions": "no vasopressor, oxygen, tocilizumab, corticosteroid or transfusion is known: ASTCT CRS "
                     "(days one could raise are a range up to grade 4, crs_grade_astct_max), T-ICAHT (counts "
                     "after one below 20 are open) and platelet recovery (not evaluable from the day as measured) "
                     "read them as unknown and name {interventions} (options crs.absent_interventions / "
                     "t_icaht.absent_interventions / count_recovery.absent_interventions = unknown; none_given "
                     "reads the file as empty); the older CRS scales follow crs_legacy.absent_interventions (default: "
                     "follow crs.absent_interventions; days one could "
                     "raise are a range up to grade 4, naming {interventions}); ICANS takes none as given; a study "
                     "imported into the DuckDB store keeps this; an empty file with its header says none was given",
    # review 39 B8: what each engine does (session 39: ICANS reads them as unknown); the FHIR reader
    # keeps the words before " (ICANS events" (io/fhir/_partial.py)
    "events": "no death, relapse, HSCT, new therapy, seizure, cerebral edema or infection is recorded (ICANS events: "
              "not known, so every graded ICANS day is a range up to grade 4 naming {events}, option "
              "icans.absent_events=unknown; the survival endpoints count none of them, "
              "so OS, EFS and LFS are the most favourable reading, and their reasons say {events} was not given; "
              "ASTCT CRS fever attribution: an infection unknown, so a fever day's lower grade is 0 (grade_min, "
              "crs_grade_astct_min, option crs.absent_events=unknown); late ICAHT / T-ICAHT: the window's end "
              "unknown, the late grade that of the window to day 100 / last follow-up, the shortest window's "
              "grade named as its lower end (options icaht.absent_events / t_icaht.absent_events=unknown); "
              "best response and duration of response count every assessment, a new therapy or HSCT being "
              "unknown, and their reasons say so); "
              "an empty file with its header says none happened",
}

#: :data:`ABSENT_FILE_TEMPLATES` of a CSV study (the words ``cartlab analyze`` prints for one)
ABSENT_FILE_MEANS = {name: text.format(interventions="interventions.csv", events="events.csv")
                     for name, text in ABSENT_FILE_TEMPLATES.items()}


def records_after_death(frames: dict[str, pl.DataFrame], row: str) -> list[Issue]:
    """Warnings for records dated after the subject's death (a calendar day later than the first
    `death` event), and a last_followup_day after it: likely a wrong day or subject."""
    ev = frames.get("events")
    if ev is None or "event" not in ev.columns:
        return []
    deaths = (ev.filter((pl.col("event") == "death") & pl.col("day").is_not_null())
              .group_by("subject_id").agg(pl.col("day").min().floor().alias("__death")))
    if deaths.is_empty():
        return []
    out = []
    for name, col in (("observations", "day"), ("doses", "day"), ("interventions", "start_day"), ("events", "day"),
                      ("subjects", "last_followup_day")):
        df = frames.get(name)
        if df is None or col not in df.columns:
            continue
        late = (df.join(deaths, on="subject_id", how="inner").filter(pl.col(col).floor() > pl.col("__death"))
                .group_by("subject_id", "__death", maintain_order=True).agg(pl.col(row).sort()))
        for sid, death, rows in late.iter_rows():
            what = "its last_followup_day is" if name == "subjects" else f"{len(rows)} row(s) are dated"
            out.append(Issue(_name(df, name), col, f"subject {sid!r}: {what} after its death on day {death:g} "
                             f"({_name(ev, 'events')}): check the day or the subject", rows, severity="warning"))
    return out


#: (file, column) of each date-time of the study folder format v1
DATETIME_COLUMNS = (("subjects", "infusion_datetime"), ("observations", "datetime"), ("doses", "datetime"),
                    ("interventions", "start_datetime"), ("interventions", "end_datetime"), ("events", "datetime"))
#: (file, day column) of the dated rows that show a subject followed (a death is not: it may come after
#: the last day the subject was followed)
DATED_ROWS = (("observations", "day"), ("doses", "day"), ("interventions", "start_day"),
              ("interventions", "end_day"), ("events", "day"))


#: the words of the mixed-offsets warning (a reader with its own such warning, FHIR, can leave this one out)
MIXED_OFFSETS = "its date-times carry different UTC offsets"


def _offset(col: str) -> pl.Expr:
    """The UTC offset written at the end of a date-time, as +hh:mm (Z is +00:00); null without one."""
    e = pl.col(col).str.strip_chars().str.replace(" ", "T").str.extract(OFFSET, 2)
    digits = e.str.replace(":", "")
    mm = pl.when(digits.str.len_chars() > 3).then(digits.str.slice(3, 2)).otherwise(pl.lit("00"))
    return pl.when(e == "Z").then(pl.lit("+00:00")).otherwise(digits.str.slice(0, 3) + ":" + mm)


#: how a date-time with a clock time but no UTC offset is named in the mixed-offsets warning
NO_OFFSET = "no offset"


def _minutes(offset: str) -> int:
    sign = -1 if offset.startswith("-") else 1
    return sign * (int(offset[1:3]) * 60 + int(offset[4:6]))


def _local(col: str) -> pl.Expr:
    """The date-time as written on the site's clock (its offset dropped), to the minute."""
    return (pl.col(col).str.strip_chars().str.replace(" ", "T").str.slice(0, 16)
            .str.to_datetime("%Y-%m-%dT%H:%M", strict=False))


@functools.lru_cache(maxsize=1)
def _zones() -> tuple[zoneinfo.ZoneInfo, ...]:
    """Every IANA time zone of the tz database (the ``tzdata`` package, else the system's)."""
    out = []
    for name in sorted(zoneinfo.available_timezones()):
        try:
            out.append(zoneinfo.ZoneInfo(name))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # pragma: no cover - a broken tz file
            continue
    return tuple(out)


def _zone_has(zone: zoneinfo.ZoneInfo, local: datetime, minutes: int) -> bool:
    """Whether ``zone`` is ``minutes`` from UTC at the instant written as ``local`` with that offset."""
    instant = (local - timedelta(minutes=minutes)).replace(tzinfo=timezone.utc)
    off = instant.astimezone(zone).utcoffset()
    return off is not None and off == timedelta(minutes=minutes)


def daylight_saving_only(stamps: pl.DataFrame) -> bool:
    """Whether one subject's offsets are one time zone's clock (review 45 F4: by the tz database, not by
    month): some IANA zone has, at the instant of each stamp next to an offset change (and of the first
    and last stamp), the offset written there. A site mixing its local time with UTC, or a change on a
    date no zone changes on (+00:00 to +01:00 on 1 March), is not. ``stamps``: ``__local``, ``__offset``."""
    rows = stamps.drop_nulls("__local").sort("__local").select("__local", "__offset").rows()
    if len(rows) < 2 or len(rows) < stamps.height:
        return False
    points = {rows[0], rows[-1]}
    for (t0, o0), (t1, o1) in zip(rows, rows[1:]):
        if o0 != o1:
            points |= {(t0, o0), (t1, o1)}
    if any(o == NO_OFFSET for _, o in points):
        return False
    checks = [(t, _minutes(o)) for t, o in sorted(points)]
    return any(all(_zone_has(z, t, m) for t, m in checks) for z in _zones())


def _name(df: pl.DataFrame, name: str) -> str:
    """The name of the file a table was read from (its rows' ``src_file``: observations.parquet for a
    Parquet study, review 39 B1), else ``name.csv``."""
    if "src_file" in df.columns and df.height and df["src_file"][0] is not None:
        return str(df["src_file"][0])
    return f"{name}.csv"


def _num(x: float) -> str:
    """A day as a short number: 3, 6.4167."""
    return f"{round(float(x), 4):g}"


def _file(df: pl.DataFrame, name: str) -> pl.Expr:
    """The file a row was read from (its provenance), else ``name.csv``."""
    return pl.col("src_file") if "src_file" in df.columns else pl.lit(f"{name}.csv")


def mixed_utc_offsets(frames: dict[str, pl.DataFrame], row: str) -> list[Issue]:
    """A warning per subject (and file) whose date-times carry two or more different UTC offsets
    (review 37 B4). The documented rule is kept: an offset is not applied, each date-time is read on
    the site's clock as written (``cartlab.io.clock``); with several offsets that clock is not one
    zone, so a day (or before/after the infusion) may be off by the offsets' difference. Offsets that
    are one zone's daylight-saving changes (:func:`daylight_saving_only`) are that clock, and are not
    warned about. A date-time with a clock time and no offset counts as its own convention
    (:data:`NO_OFFSET`, review 39 B5): a subject whose stamps all carry ``Z`` is not warned, one that
    mixes ``Z`` and local stamps is (no daylight-saving exemption then)."""
    parts = []
    for name, col in DATETIME_COLUMNS:
        df = frames.get(name)
        if df is None or col not in df.columns or df.is_empty():
            continue
        # a date-time with a clock time but no offset is its own convention (review 39 B5: 09:30Z and a naive
        # 10:00 infusion_datetime); a date alone carries no offset and is left out
        off = pl.when(has_clock_time(pl.col(col))).then(pl.coalesce(_offset(col), pl.lit(NO_OFFSET)))
        parts.append(df.select(pl.col("subject_id"), _file(df, name).alias("__file"), pl.col(row),
                               off.alias("__offset"), _local(col).alias("__local")).drop_nulls("__offset"))
    if not parts:
        return []
    stamps = pl.concat(parts)
    mixed = stamps.group_by("subject_id").agg(pl.col("__offset").n_unique().alias("__n")).filter(pl.col("__n") > 1)
    if mixed.is_empty():
        return []
    stamps = stamps.join(mixed.select("subject_id"), on="subject_id", how="semi")
    out = []
    for (sid,), sub in stamps.group_by("subject_id", maintain_order=True):
        if NO_OFFSET not in sub["__offset"] and daylight_saving_only(sub):
            continue
        seen = (sub.group_by("__offset", "__file", maintain_order=True).agg(pl.col(row).sort())
                .sort("__offset"))
        where = "; ".join(f"{off} in {f} row{'s' if len(rows) > 1 else ''} {', '.join(map(str, rows))}"
                          for off, f, rows in seen.iter_rows())
        for f, rows in sub.group_by("__file", maintain_order=True).agg(pl.col(row).sort()).iter_rows():
            out.append(Issue(f, None, f"subject {sid!r}: {MIXED_OFFSETS} ({where}); "
                             "offsets are not applied (each date-time is read as the site's clock as written), so "
                             "a day, or before/after the infusion, may be off by the offsets' difference: write "
                             "every date-time in the site's local time", rows, severity="warning"))
    return out


def followup_day_checks(frames: dict[str, pl.DataFrame], row: str) -> list[Issue]:
    """Warnings for a ``last_followup_day`` that contradicts the subject's rows (review 37 B7):
    before day 0 (spec "Time": the infusion day is day 0), or before the calendar day of a later dated
    row of the subject (death excepted). The time-to-event endpoints then take the later row as the
    day last known alive (``EndpointOptions.last_alive_sources='all_tables'``, the default)."""
    sub = frames.get("subjects")
    if sub is None or "last_followup_day" not in sub.columns:
        return []
    fu = sub.filter(pl.col("last_followup_day").is_not_null()).select("subject_id", pl.col("last_followup_day").alias("__fu"), pl.col(row).alias("__fu_row"))
    out = []
    # review 39 C1: a row after a recorded death is warned by records_after_death; it is not also "the day
    # last known alive" (the endpoints count the death), so it is left out here
    ev = frames.get("events")
    deaths = (ev.filter((pl.col("event") == "death") & pl.col("day").is_not_null())
              .group_by("subject_id").agg(pl.col("day").min().floor().alias("__death"))
              if ev is not None and {"event", "day", "subject_id"} <= set(ev.columns) else None)
    for sid, day, r in fu.filter(pl.col("__fu") < 0).iter_rows():
        out.append(Issue(_name(sub, "subjects"), "last_followup_day", f"subject {sid!r}: last_followup_day {day:g} is before "
                         "day 0, the infusion day (spec \"Time\"): check the day", [r], severity="warning"))
    for name, col in DATED_ROWS:
        df = frames.get(name)
        if df is None or col not in df.columns or fu.is_empty():
            continue
        if name == "events" and "event" in df.columns:
            df = df.filter(pl.col("event") != "death")
        if deaths is not None and not deaths.is_empty():
            df = (df.join(deaths, on="subject_id", how="left")
                  .filter(pl.col("__death").is_null() | (pl.col(col).floor() <= pl.col("__death"))).drop("__death"))
        late = (df.join(fu, on="subject_id", how="inner").filter(pl.col(col).floor() > pl.col("__fu"))
                .group_by("subject_id", "__fu", "__fu_row", maintain_order=True)
                .agg(pl.col(row).sort(), pl.col(col).min().alias("__lo"), pl.col(col).max().alias("__hi")))
        for sid, day, r, rows, lo, hi in late.iter_rows():
            span = f"day {_num(lo)}" if lo == hi else f"days {_num(lo)}-{_num(hi)}"
            out.append(Issue(_name(df, name), col, f"subject {sid!r}: dated after its last_followup_day {day:g} "
                             f"({_name(sub, 'subjects')} row {r}), on {span}: the time-to-event endpoints take the latest "
                             "such row as the day last known alive; check last_followup_day", rows,
                             severity="warning"))
    return out


def unknown_dose_agents(frames: dict[str, pl.DataFrame], row: str) -> list[Issue]:
    """Warnings for dose rows within days -14 to -1 whose agent is neither a lymphodepletion agent of
    the alias table (grading/ld_agents.yaml: "fludarabine phosphate", "Cytoxan", ...) nor CAR-T
    (session 38, review s38 A1): CAR-HEMATOTOX and EASIX do not read them as lymphodepletion."""
    from cartlab.grading.ld_agents import unknown_dose_agents as _unknown  # lazy: grading imports io

    doses = frames.get("doses")
    if doses is None or not {"agent", "day", "subject_id"} <= set(doses.columns):
        return []
    bad = (_unknown(doses).group_by("subject_id", pl.col("agent").cast(pl.String).str.strip_chars(), maintain_order=True)
           .agg(pl.col(row).sort(), pl.col("day").min().alias("_lo"), pl.col("day").max().alias("_hi")))
    out = []
    for sid, agent, rows, lo, hi in bad.iter_rows():
        days = f"day {_num(lo)}" if lo == hi else f"days {_num(lo)} to {_num(hi)}"
        out.append(Issue(_name(doses, "doses"), "agent", f"subject {sid!r}: agent {agent!r} on {days} is not a known "
                         "lymphodepletion agent (grading/ld_agents.yaml) nor CAR-T: CAR-HEMATOTOX and EASIX do not "
                         "read it as lymphodepletion (their baseline reason names it); if it is one, spell it as in "
                         "the table or add it to the option lymphodepletion_agents", rows, severity="warning"))
    return out
