"""Partial and missing FHIR times that still state a fact (review38 FHIR A1, A2, B1-B4, C1), by the
rules of the SDTM reader (``cartlab.io.sdtm.partial``, whose helpers are reused):

* an event (Condition.onset[x], Procedure.performed[x]) dated only to a month or year (``2024-06``;
  R4 dateTime allows "a date, date-time or partial date"): option ``partial_event_dates`` (default
  ``impute``): the first day of the period, not before day 0 unless the period lies wholly before it;
* a death (Patient.deceasedDateTime, or a death Condition/Procedure) with a partial date: option
  ``partial_death_dates`` (default ``impute``): the first day of the period, not before the subject's
  last dated record when that record falls in the period (the ADaM convention, admiral ``min_dates``);
* ``Patient.deceasedBoolean`` true without a date: a warning, no day invented;
* a MedicationAdministration or a Procedure of an intervention ``in-progress`` without an end ("The administration has started but has
  not yet completed"; Period: "If the end element is missing, it means that the period is ongoing"):
  option ``ongoing_interventions`` (default ``last_record``): it runs to the subject's last dated record;
* mixed UTC offsets: one zone's daylight-saving changes are not warned about
  (``course_checks.daylight_saving_only``, as for a study folder and SDTM).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from datetime import date, datetime

import polars as pl

from cartlab.io.course_checks import ABSENT_FILE_MEANS, daylight_saving_only
from cartlab.io.sdtm.dates import period_bounds
from cartlab.io.sdtm.partial import PARTIAL_OPTIONS, last_record_day

__all__ = ["ONGOING_OPTIONS", "PARTIAL_OPTIONS", "UNKNOWN_INDICATION_OPTIONS", "absent_in_fhir", "check_options", "deaths", "is_partial",
           "mixed_offsets", "ongoing_ends", "partial_event", "warn_partial_events"]

#: ``ongoing_interventions``: an in-progress MedicationAdministration without an end runs to the subject's
#: last dated record (``last_record``, the SDTM reader's rule for an ongoing CM record) or is read as a
#: single administration at its start (``start_only``, the reader's behaviour before session 38)
ONGOING_OPTIONS = ("last_record", "start_only")
#: ``unknown_indication``: an intervention whose reasonCode text is not in the indication table is read with
#: the indication empty (``count``: the study format counts an intervention "whose indication/attribution is
#: empty" toward CRS/ICANS) or not read (``drop``, the reader's behaviour before session 46; warned about)
UNKNOWN_INDICATION_OPTIONS = ("count", "drop")
DEFAULTS = {"partial_death_dates": "impute", "partial_event_dates": "impute", "ongoing_interventions": "last_record",
            "unknown_indication": "count"}
_PARTIAL = re.compile(r"^\d{4}(-\d{2})?$")


def check_options(opts: dict) -> None:
    from cartlab.errors import InputError

    for k, v in opts.items():
        allowed = {"ongoing_interventions": ONGOING_OPTIONS,
                   "unknown_indication": UNKNOWN_INDICATION_OPTIONS}.get(k, PARTIAL_OPTIONS)
        if v not in allowed:
            raise InputError(f"{k} must be one of {', '.join(allowed)}, not {v!r}")


def is_partial(text: str | None) -> bool:
    """A FHIR partial date (YYYY or YYYY-MM): a period of days, not a day."""
    return bool(text) and bool(_PARTIAL.fullmatch(str(text).strip()))


def bounds(text: str) -> tuple[date, date]:
    """The first and last day of a partial date's period (``sdtm.dates.period_bounds``, reused)."""
    first, last = period_bounds(pl.lit(str(text).strip()))
    a, b = pl.select(first.alias("a"), last.alias("b")).row(0)
    return a.date(), b.date()


def _element(r: dict, prefix: str) -> str:
    return f"{prefix}Period.start" if r.get(f"{prefix}Period") else f"{prefix}DateTime"


def partial_event(rd, e, sid: str, code: str, row: dict, text: str, prefix: str) -> None:
    """An event row whose time is a partial date (B2): a death waits for :func:`deaths`; else placed on
    the first day of the period, not before day 0 unless the period lies wholly before it (option
    ``partial_event_dates`` = impute, SDTM ``impute_event_starts``), or reported (drop)."""
    el = f"{e.res['resourceType']}/{e.res.get('id')}'s {_element(e.res, prefix)}"
    if row.get("event") == "death":
        rd.partial_death_events.append((e, sid, text, el, code, row))
        return
    if sid not in rd.anchor:
        return rd.skip(e, code, rd.no_anchor.get(sid, "no day 0: the subject has no CAR-T MedicationAdministration"))
    rd.partial_events[sid].append(el)
    if rd.options["partial_event_dates"] == "drop":
        return rd.skip(e, code, f"partial date {text!r} not placed on a day (option partial_event_dates = drop): "
                                "the event happened but is on no day")
    first, last = bounds(text)
    d0 = rd.anchor[sid].date()
    at = d0 if first < d0 <= last else first  # the infusion month: not before day 0
    day = float((at - d0).days)
    row.update(day=day, datetime=None, source_note=(
        f"{el} partial ('{text}'): day {day:g} imputed, the first day of the period not before day 0 "
        "(option partial_event_dates = impute)"))
    rd.add("events", e, row, code, f"partial date {text!r}: day {day:g} imputed (partial_event_dates = impute)")


def warn_partial_events(rd) -> list[str]:
    opt = rd.options["partial_event_dates"]
    out = []
    for sid, els in rd.partial_events.items():
        what = ("placed on the first day of the period, not before day 0 (option partial_event_dates = impute; drop "
                "leaves them out): the day is imputed, see the event's source_note" if opt == "impute" else
                "not read (option partial_event_dates = drop): the event happened but is on no day")
        out.append(f"subject {sid}: {len(els)} event(s) with a partial date ({'; '.join(els[:5])}) {what}")
    return out


def _last_known_alive(rd) -> dict[str, float]:
    """The day of each subject's last dated record (``sdtm.partial.last_record_day``, reused)."""
    tables: dict[str, list[pl.DataFrame]] = {}
    for name, cols in (("observations", ("day",)), ("doses", ("day",)), ("interventions", ("start_day", "end_day")),
                       ("events", ("day", "event"))):
        rows = rd.rows.get(name) or []
        if rows:
            data = {"subject_id": [r["subject_id"] for r in rows]}
            for c in cols:
                data[c] = [r.get(c) for r in rows]
            sch = {c: (pl.String if c in ("subject_id", "event") else pl.Float64) for c in data}
            tables[name] = [pl.DataFrame(data, schema=sch)]
    return dict(last_record_day(tables).iter_rows())


def deaths(rd) -> list[str]:
    """Patient.deceased[x] as a death event, and partial death dates (A1, B1). Returns the warnings."""
    warnings: list[str] = []
    lka = _last_known_alive(rd)
    dated = {row["subject_id"] for row in rd.rows["events"] if row.get("event") == "death" and row.get("day") is not None}
    cands: dict[str, list] = defaultdict(list)  # sid -> (e, text, element, code, row) partial death dates
    for e, sid, text, el, code, row in rd.partial_death_events:
        cands[sid].append((e, text, el, code, row))
    for ref, (sid, e) in list(rd.patients.items()):
        r = e.res
        if not ref.startswith("Patient/"):
            continue
        if sid in dated:
            from cartlab.io.fhir._checks import check_death

            dead = sorted(((row, w) for row, w in zip(rd.rows["events"], rd.where["events"])
                           if row.get("event") == "death" and row["subject_id"] == sid), key=lambda x: x[0]["day"])
            text = r.get("deceasedDateTime")  # the death event carries it: the two must agree
            check_death(e, r, None if is_partial(text) else rd.day(e, sid, text, None)[0], *dead[0])
            continue
        text = r.get("deceasedDateTime")
        if text and is_partial(text):
            cands[sid].insert(0, (e, text, f"Patient/{r.get('id')}'s deceasedDateTime", "deceasedDateTime",
                                  {"subject_id": sid, "event": "death"}))
        elif text:
            day, dt = rd.day(e, sid, text, None)
            if day is None:
                rd.skip(e, "deceasedDateTime", dt)
            else:
                rd.add("events", e, {"subject_id": sid, "day": day, "datetime": dt, "event": "death"}, "deceasedDateTime")
                dated.add(sid)
        elif r.get("deceasedBoolean") and not cands.get(sid):
            rd.skip(e, "deceasedBoolean", "death without a date cannot be placed on a day")
            rd.undated_deaths.add(sid)
            warnings.append(f"subject {sid}: Patient.deceasedBoolean is true but no date is given: the death is on "
                            "no day and no day is invented (OS is censored at the last day known alive although "
                            "the subject died); give Patient.deceasedDateTime")
    for sid, items in cands.items():
        for k, (e, text, el, code, row) in enumerate(items):
            if sid in dated or k:  # a dated death, or an earlier-listed partial one, wins
                rd.skip(e, code, f"partial death date {text!r} not used: the subject's death is dated by another "
                                 "resource")
                continue
            warnings.append(_partial_death(rd, e, sid, text, el, code, row, lka.get(sid)))
    return [w for w in warnings if w]


def _partial_death(rd, e, sid, text, el, code, row, lka) -> str | None:
    if sid not in rd.anchor:
        rd.skip(e, code, rd.no_anchor.get(sid, "no day 0: the subject has no CAR-T MedicationAdministration"))
        return None
    rd.undated_deaths.add(sid)
    if rd.options["partial_death_dates"] == "drop":
        rd.skip(e, code, f"partial death date {text!r} not placed (option partial_death_dates = drop)")
        return (f"subject {sid}: the death date {el} '{text}' is partial and not read (option partial_death_dates = "
                "drop): OS is censored at the last day known alive although the subject died")
    first, last = bounds(text)
    d0 = rd.anchor[sid].date()
    d1, d2 = (first - d0).days, (last - d0).days
    # admiral derive_vars_dt(min_dates=): not before the last known alive day, when it is in the period
    alive = math.floor(lka) if lka is not None else None
    day = float(max(d1, alive) if alive is not None and alive <= d2 else d1)
    late = (f" (the subject has records after the period, up to day {lka:g}: check the date)"
            if lka is not None and lka > d2 + 1 else "")
    row = {**row, "day": day, "datetime": None, "source_note": (
        f"death date imputed from the partial {el} '{text}': day {day:g}, the first day of the period not before "
        "the last record (option partial_death_dates = impute)")}
    rd.add("events", e, row, code, f"partial death date {text!r}: day {day:g} imputed (partial_death_dates = impute)")
    rd.undated_deaths.discard(sid)
    return (f"subject {sid}: the death date {el} '{text}' is partial: the death is placed on day {day:g}, the first "
            f"day of the period not before the last record (option partial_death_dates = impute; drop leaves it "
            f"out){late}")


def ongoing_ends(rd) -> list[str]:
    """End each in-progress administration without an end (A2) on the subject's last dated record
    (``last_record``, floored to its day as SDTM ``ongoing_ends``; never before its start), or leave it a
    single administration (``start_only``); the source_note says which. One warning counting them."""
    if not rd.ongoing:
        return []
    lka = _last_known_alive(rd)
    opt = rd.options["ongoing_interventions"]
    for row, el in rd.ongoing:
        if opt == "last_record":
            end = max(float(math.floor(lka.get(row["subject_id"], row["start_day"]))), row["start_day"])
            row["end_day"], row["end_datetime"] = end, None
            why = (f"ongoing ({el}): end_day set to the subject's last record (day {end:g}; "
                   "option ongoing_interventions = last_record)")
        else:
            why = (f"ongoing ({el}): read as a single administration at its start (option "
                   "ongoing_interventions = start_only)")
        row["source_note"] = "; ".join(x for x in (row.get("source_note"), why) if x)
    subs = sorted({row["subject_id"] for row, _ in rd.ongoing})
    what = ("run to each subject's last dated record (option ongoing_interventions = last_record; start_only reads "
            "them as single administrations at their start)" if opt == "last_record" else
            "read as single administrations at their start (option ongoing_interventions = start_only): an "
            "intervention still running after its start is not seen on the later days")
    kinds = sorted({el.split(" ")[0] for _, el in rd.ongoing})  # MedicationAdministration, Procedure
    ends = {"MedicationAdministration": "effectivePeriod.end", "Procedure": "performedPeriod.end"}
    return [f"{len(rd.ongoing)} {' or '.join(k + '(s)' for k in kinds)} in progress without an "
            f"{' / '.join(ends.get(k, 'end') for k in kinds)} (subjects "
            f"{', '.join(subs[:10])}{' ...' if len(subs) > 10 else ''}) {what}; see their source_note"]


def mixed_offsets(rd) -> list[str]:
    """A warning (and a mapping-report row on the Patient) for each subject whose times carry different
    UTC offsets: days use each time's clock as written (cartlab.io.clock), so a server that stored some
    times in Z and others in local time puts them on days up to the offsets' difference apart. Offsets
    that are one zone's daylight-saving changes are that clock and are not warned about
    (``course_checks.daylight_saving_only``, the study folder's and SDTM's rule)."""
    out = []
    for ref, (sid, e) in rd.patients.items():
        stamps = sorted(rd.offsets.get(sid, ()), key=lambda x: x[1])
        offs = sorted({o for o, _ in stamps})
        if len(offs) < 2 or any(o[1] == sid for o in out):
            continue
        frame = pl.DataFrame({"__local": [t for _, t in stamps],
                              "__offset": ["+00:00" if o == "Z" else o for o, _ in stamps]},
                             schema={"__local": pl.Datetime("us"), "__offset": pl.String})
        if daylight_saving_only(frame):
            continue
        msg = (f"subject {sid}: times carry different UTC offsets ({', '.join(offs)}); each day uses its "
               "own time's clock as written (offset not applied), so times are up to the offsets' "
               "difference apart on the day axis (one zone's daylight-saving changes are not warned about)")
        rd.skip(e, "UTC offsets", msg)
        out.append((msg, sid))
    return [m for m, _ in out]


def offset_stamp(off: str, dt: datetime) -> tuple[str, datetime]:
    """(offset, local time to the minute) of one placed time, for :func:`mixed_offsets`."""
    return off, dt.replace(second=0, microsecond=0, tzinfo=None)


#: the resources a study-folder table is read from (what "not given" means for a FHIR input)
_FHIR_SOURCES = {"doses": "MedicationAdministration of a CAR-T or lymphodepletion drug",
                 "interventions": "MedicationAdministration or Procedure of an intervention",
                 "events": "Condition, Procedure or Patient.deceased[x] of an event"}


def absent_in_fhir(w, name: str, dead_no_day: set, dropped: set = frozenset()):
    """The study folder's "file not given" warning in FHIR's words (an empty file's header is no
    advice for a Bundle). A Bundle without a table's resources reads as none given (C1): the study
    folder's "their reasons say 'events.csv not given'" does not apply. ``dead_no_day``: subjects whose
    Patient.deceased[x] says they died on no day (their own warning says so); ``dropped``: subjects with
    an event left out by ``partial_event_dates = drop``."""
    from pathlib import Path

    table = Path(w.file).stem
    if table not in ABSENT_FILE_MEANS or not w.message.startswith("not given:"):
        return w
    given = ("none is taken as given (a Bundle without these resources reads as none given, unlike a study "
             "folder without the file)")
    if table == "events":
        what = (ABSENT_FILE_MEANS["events"].split(" (ICANS events")[0]
                + " (a Bundle without these resources reads as none given, unlike a study folder without the file)")
        if dead_no_day:
            what = what.replace("no death, ", "no dated death, ") + (
                f"; subject(s) {', '.join(sorted(dead_no_day))} died on no day (see the Patient.deceased[x] warning)")
            src = "Condition or Procedure of an event, and no Patient.deceased[x] with a day,"
            return type(w)(name, None, f"no {src} was read (table events): {what}", [], w.severity)
        if dropped:
            what += (f"; subject(s) {', '.join(sorted(dropped))} have event(s) with a partial date on no day (option "
                     "partial_event_dates = drop)")
    else:
        what = given if table == "interventions" else ABSENT_FILE_MEANS[table].split("; an empty file")[0]
    return type(w)(name, None, f"no {_FHIR_SOURCES[table]} was read (table {table}): {what}", [], w.severity)
