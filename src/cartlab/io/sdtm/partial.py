"""Partial and missing dates that still state a fact (review38 A1-A3): a death, an event or the end of
an intervention whose --DTC is partial (``2021-07``) is never dropped in silence.

* events (AE, CE, PR, RS ...) with a partial start (option ``partial_event_dates``, default ``impute``):
  the first day of the period, not before day 0 unless the period lies wholly before it;
* deaths with a partial DS.DSSTDTC / DM.DTHDTC or --STDTC of a death record of another event domain
  (CE CEDECOD = DEATH; option ``partial_death_dates``, default ``impute``): the
  first day of the period, not before the subject's last dated record (last known alive): the ADaM
  convention for a partial death date (see docs/interop/sdtm.md "Partial dates");
* a death flagged (DM.DTHFL = Y, AE.AESDTH = Y or AEOUT = FATAL) without any date: a warning, no day
  invented;
* an intervention with CMENRTPT / CMENRF = ONGOING or AFTER and no complete CMENDTC: continuing to DM.RFPENDTC
  (else to the subject's last dated record).
"""

from __future__ import annotations

import polars as pl

from cartlab.io.clock import day_number
from cartlab.io.sdtm.dates import period_bounds
from cartlab.io.sdtm.files import ROW, DomainFile

PARTIAL_OPTIONS = ("impute", "drop")
#: values of CMENRTPT / CMENRF that say the medication went on past the reference point (SDTMIG 4.4.7)
ONGOING = ("ONGOING", "AFTER", "CONTINUING")


def _issue(file: str, var: str, msg: str, rows: list[int]):
    from cartlab.io.sdtm.reader import SdtmIssue

    return SdtmIssue(file, var, msg, rows, "warning")


def _rows(rows: list[int]) -> str:
    return ", ".join(map(str, rows[:10])) + (f" and {len(rows) - 10} more" if len(rows) > 10 else "")


# ---------------------------------------------------------------------------------------------
# A3: events


def impute_event_starts(dfile: DomainFile, dtc: str, event_col: str, option: str, warnings: list) -> None:
    """Place an event whose --STDTC is partial on the first day of its period, or on day 0 when the
    period contains day 0 (an event of the infusion month is not read as before the infusion); a period
    wholly before day 0 keeps its first day. Deaths are left to :func:`partial_deaths`. Adds a note
    ``__pnote`` and one warning per file naming the records. ``option`` ``drop``: left partial (not mapped),
    with a warning."""
    df = dfile.df
    st = pl.col("__dstatus")
    cand = (st.is_in(["partial", "imputed"]) & pl.col("__anchor").is_not_null()
            & (pl.col(event_col).fill_null("") != "death") & pl.col(event_col).is_not_null())
    first, last = period_bounds(dfile.col(dtc))
    cand = cand & first.is_not_null()
    rows = df.filter(cand)[ROW].to_list()
    if not rows:
        return
    if option == "drop":
        df = df.with_columns(pl.when(cand).then(pl.lit("partial")).otherwise(st).alias("__dstatus"))
        dfile.df = df
        warnings.append(_issue(dfile.name, dtc, f"{len(rows):,} event record(s) with a partial {dtc} not read (option "
                               "partial_event_dates = drop): the event happened but is on no day", rows))
        return
    a = pl.col("__anchor")
    at = pl.when(first >= a).then(first).when(last < a).then(first).otherwise(a)
    day = day_number(at, a)
    note = pl.format(f"{dtc} partial ('{{}}'): day {{}} imputed, the first day of the period not before day 0 "
                     "(option partial_event_dates)", dfile.col(dtc), day.round(0).cast(pl.Int64))
    dfile.df = df.with_columns(
        pl.when(cand).then(day).otherwise(pl.col("__day")).alias("__day"),
        pl.when(cand).then(None).otherwise(pl.col("__datetime")).alias("__datetime"),
        pl.when(cand).then(pl.lit("ok")).otherwise(st).alias("__dstatus"),
        pl.when(cand).then(note).alias("__pnote"),
    )
    warnings.append(_issue(dfile.name, dtc, f"{len(rows):,} event record(s) with a partial {dtc} placed on the first "
                           "day of the period, not before day 0 (option partial_event_dates = impute; drop leaves them "
                           "out): the day is imputed, see the event's source_note", rows))


# ---------------------------------------------------------------------------------------------
# A1: deaths


def last_record_day(tables: dict[str, list[pl.DataFrame]]) -> pl.DataFrame:
    """subject_id, ``__lka``: the latest day of the subject's dated records (observations, doses,
    interventions start/end, events other than death): the day last known alive."""
    parts = []
    for name, cols in (("observations", ("day",)), ("doses", ("day",)), ("interventions", ("start_day", "end_day")),
                       ("events", ("day",))):
        for f in tables.get(name, []):
            if not f.height:
                continue
            if name == "events":
                f = f.filter(pl.col("event") != "death")
            for c in cols:
                if c in f.columns:
                    parts.append(f.select("subject_id", pl.col(c).cast(pl.Float64).alias("__lka")))
    if not parts:
        return pl.DataFrame(schema={"subject_id": pl.String, "__lka": pl.Float64})
    return pl.concat(parts).drop_nulls().group_by("subject_id").agg(pl.col("__lka").max())


def _candidates(dfile: DomainFile, dtc: str, status_col: str, is_death: pl.Expr) -> pl.DataFrame:
    df = dfile.df
    if status_col not in df.columns or not dfile.has(dtc):
        return pl.DataFrame()
    first, last = period_bounds(dfile.col(dtc))
    return df.filter(is_death & pl.col(status_col).is_in(["partial", "imputed"]) & pl.col("__anchor").is_not_null()
                     & first.is_not_null()).select(
        pl.col("USUBJID").cast(pl.String).alias("subject_id"), pl.col(ROW).alias("src_row"),
        dfile.col(dtc).cast(pl.String).alias("__text"), first.alias("__first"), last.alias("__last"),
        pl.col("__anchor"), pl.lit(dfile.name).alias("src_file"), pl.lit(dfile.sha256).alias("src_sha256"),
        pl.lit(dtc).alias("__var"))


def partial_deaths(sources: list[tuple[DomainFile, str, str, pl.Expr]], have_death: set[str],
                   lka: pl.DataFrame, option: str, warnings: list) -> tuple[pl.DataFrame, set[str]]:
    """Death events of subjects with no dated death whose DS.DSSTDTC, the --STDTC of another event
    domain's death record (CE) or DM.DTHDTC is partial.

    ``sources``: (file, --DTC, status column, death condition), in order of preference (DS, the other event
    domains, then DM). ``impute`` (default): the first day of the period, not before the subject's last
    dated record (last known alive) when that record falls in the period (a later record is ignored, as
    admiral's ``min_dates``, and warned about); the detail says it was imputed
    and from which record, and a warning names the record. ``drop``: no event, a warning that OS is
    censored at last known alive although the subject died. Also returns the subjects warned about."""
    parts = [c for f, dtc, col, cond in sources if (c := _candidates(f, dtc, col, cond)).height]
    if not parts:
        return pl.DataFrame(), set()
    c = (pl.concat(parts, how="vertical_relaxed").with_row_index("__order")
         .filter(~pl.col("subject_id").is_in(sorted(have_death)))
         .sort("__order").group_by("subject_id", maintain_order=True).first())
    if c.is_empty():
        return pl.DataFrame(), set()
    seen = set(c["subject_id"].to_list())
    if option == "drop":
        for r in c.iter_rows(named=True):
            warnings.append(_issue(r["src_file"], r["__var"], f"USUBJID {r['subject_id']}: the death date "
                                   f"{r['__var']} '{r['__text']}' is partial and not read (option partial_death_dates "
                                   "= drop): OS is censored at the last day known alive although the subject died",
                                   [r["src_row"]]))
        return pl.DataFrame(), seen
    c = c.join(lka, on="subject_id", how="left").with_columns(
        day_number(pl.col("__first"), pl.col("__anchor")).alias("__d1"),
        day_number(pl.col("__last"), pl.col("__anchor")).alias("__d2"))
    # admiral derive_vars_dt(min_dates=): "the imputed date is not before any of the specified dates ... Only
    # dates which are in the range of possible dates of the dtc value are considered"
    lka_in = pl.col("__lka").floor()
    c = c.with_columns(pl.when(lka_in.is_not_null() & (lka_in <= pl.col("__d2")))
                       .then(pl.max_horizontal("__d1", lka_in)).otherwise(pl.col("__d1")).alias("day"))
    out = c.select(
        "subject_id", pl.col("day"), pl.lit(None, dtype=pl.String).alias("datetime"), pl.lit("death").alias("event"),
        pl.format("death date imputed from the partial {} '{}' ({}, record {}): day {}, the first day of the period "
                  "not before the last record (option partial_death_dates)", pl.col("__var"), pl.col("__text"),
                  pl.col("src_file"), pl.col("src_row"), pl.col("day").cast(pl.Int64)).alias("detail"),
        pl.lit(None, dtype=pl.String).alias("attribution"), pl.lit(None, dtype=pl.String).alias("source"),
        pl.lit("death date imputed (partial_death_dates = impute)").alias("source_note"),
        pl.lit(None, dtype=pl.String).alias("extra"), "src_file", "src_sha256", "src_row")
    for r in c.iter_rows(named=True):
        late = (f" (the subject has records after the period, up to day {r['__lka']:g}: check the date)"
                if r["__lka"] is not None and r["__lka"] >= r["__d2"] + 1 else "")  # a record on the last day is in it
        warnings.append(_issue(r["src_file"], r["__var"], f"USUBJID {r['subject_id']}: the death date {r['__var']} "
                               f"'{r['__text']}' is partial: the death is placed on day {r['day']:g}, the first day of "
                               f"the period not before the last record (option partial_death_dates = impute; drop "
                               f"leaves it out){late}", [r["src_row"]]))
    return out, seen


def undated_deaths(dm: DomainFile, ae: DomainFile | None, have_death: set[str], warnings: list) -> None:
    """A warning per subject flagged dead (DM.DTHFL = Y; AE.AESDTH = Y or AEOUT = FATAL) with no death
    event: SDTMIG DM: DTHFL "Should be populated even when the death date is unknown": the death is
    known, its day is not, and no day is invented."""
    flagged: dict[str, tuple[str, str, list[int]]] = {}
    if dm.has("DTHFL"):
        d = dm.df.filter(dm.text("DTHFL").str.to_uppercase() == "Y").select(pl.col("USUBJID").cast(pl.String), ROW)
        for sid, row in d.iter_rows():
            flagged.setdefault(sid, (dm.name, "DTHFL = Y", [row]))
    if ae is not None and (ae.has("AESDTH") or ae.has("AEOUT")):
        cond = (ae.text("AESDTH").str.to_uppercase() == "Y").fill_null(False) | (
            ae.text("AEOUT").str.to_uppercase() == "FATAL").fill_null(False)
        d = ae.df.filter(cond).group_by(pl.col("USUBJID").cast(pl.String), maintain_order=True).agg(pl.col(ROW))
        for sid, rows in d.iter_rows():
            flagged.setdefault(sid, (ae.name, "AESDTH = Y / AEOUT = FATAL", rows))
    for sid, (file, what, rows) in flagged.items():
        if sid in have_death:
            continue
        var = "DTHFL" if file == dm.name else "AESDTH"
        warnings.append(_issue(file, var, f"USUBJID {sid}: died ({what}) but no death date is given (DM.DTHDTC, DS "
                               "DEATH): OS will be censored at the last day known alive although the subject died; "
                               "give DTHDTC", rows))


# ---------------------------------------------------------------------------------------------
# A2: interventions still going on


def ongoing_ends(frames: list[pl.DataFrame], subjects: pl.DataFrame, lka: pl.DataFrame) -> list[pl.DataFrame]:
    """End an intervention marked ``__ongoing`` (CMENRTPT/CMENRF ONGOING or AFTER, no complete CMENDTC)
    on DM.RFPENDTC (``__rfpen``, the end of participation) or, without it, on the subject's last dated
    record; the source_note says which."""
    out = []
    for f in frames:
        if "__ongoing" not in f.columns:
            out.append(f)
            continue
        f = f.join(subjects, on="subject_id", how="left").join(lka, on="subject_id", how="left")
        on = pl.col("__ongoing").fill_null(False)
        end = pl.coalesce("__rfpen", pl.col("__lka").floor())
        end = pl.max_horizontal(end, pl.col("start_day"))
        why = pl.when(pl.col("__rfpen").is_not_null()).then(
            pl.format("{} {}: continuing, end_day set to DM.RFPENDTC (day {})", pl.col("__ongoing_var"),
                      pl.col("__ongoing_val"), end)).otherwise(
            pl.format("{} {}: continuing, end_day set to the subject's last record (day {}; no DM.RFPENDTC)",
                      pl.col("__ongoing_var"), pl.col("__ongoing_val"), end))
        f = f.with_columns(
            pl.when(on).then(end).otherwise(pl.col("end_day")).alias("end_day"),
            pl.when(on).then(None).otherwise(pl.col("end_datetime")).alias("end_datetime"),
            pl.when(on).then(pl.concat_str([pl.col("source_note"), why], separator="; ", ignore_nulls=True))
            .otherwise(pl.col("source_note")).alias("source_note"))
        out.append(f.drop("__ongoing", "__ongoing_var", "__ongoing_val", "__rfpen", "__lka"))
    return out
