"""What every SDTM domain mapper shares: the context, SUPP-- qualifiers, placing --DTC on days,
and the per-record status (mapped, or skipped with a reason) that the mapping report counts."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import polars as pl

from cartlab.io.clock import day_number
from cartlab.io.dictionary import Dictionary
from cartlab.io.sdtm.dates import parse_dtc
from cartlab.io.sdtm.files import RAW_QVAL, ROW, DomainFile
from cartlab.io.sdtm.mapping import SdtmMapping

#: the error of a --DTC that is no date (or no date that exists: 2021-13, 2021-02-30)
BAD_DTC = "not an ISO 8601 date that exists (YYYY-MM-DD[Thh:mm[:ss]] or a partial YYYY[-MM]; month 01-12)"
#: canonical columns a SUPP-- qualifier may fill that are numbers
NUMERIC_SUPP = {"orig_lloq", "o2_flow_lpm", "fio2", "weight_kg", "height_cm", "last_followup_day"}


@dataclass
class Ctx:
    mapping: SdtmMapping
    dictionary: Dictionary
    partial_dates: str
    #: subject_id, __anchor (Datetime: midnight of the day-0 date), __nominal (bool)
    anchors: pl.DataFrame
    subjects: pl.Series
    #: warnings of the mappers (``cartlab.io.errors.Issue``), added to Study.warnings
    warnings: list = field(default_factory=list)
    #: an event (AE, CE, PR, RS ...) with a partial start date: ``impute`` (the first day of its period,
    #: not before day 0 unless the period lies wholly before it) or ``drop`` (review38 A3)
    partial_event_dates: str = "impute"
    #: a death with a partial date: ``impute`` (first day of the period, not before the last record) or ``drop``
    partial_death_dates: str = "impute"
    #: a record with --DY and no --DTC date is placed from --DY (SDTMIG: no study day 0) when True (review38 B3)
    study_day_fallback: bool = False
    #: a CMINDC in neither indications table: "count" (indication empty, counted) or "other" (review46 #2)
    unknown_indication: str = "count"


def status(df: pl.DataFrame, code: pl.Expr, target: pl.Expr, reason: pl.Expr) -> pl.DataFrame:
    """Per record: ``code`` (test code or term), ``target`` (canonical table[:param]) and
    ``reason`` (null = mapped)."""
    return df.select(
        pl.col(ROW), code.cast(pl.String).alias("code"), target.cast(pl.String).alias("target"),
        reason.cast(pl.String).alias("reason"),
    )


def first_reason(*pairs: tuple[pl.Expr, str | pl.Expr]) -> pl.Expr:
    """The reason of the first condition that holds (null when none: the record is mapped)."""
    e = None
    for cond, why in pairs:
        why = pl.lit(why) if isinstance(why, str) else why
        e = pl.when(cond).then(why) if e is None else e.when(cond).then(why)
    return e.otherwise(pl.lit(None, dtype=pl.String))


# ---------------------------------------------------------------------------------------------
# SUPP--


def _key(e: pl.Expr) -> pl.Expr:
    """IDVARVAL / --SEQ as a comparable text ("1", "1.0" and 1.0 are the same key)."""
    f = e.cast(pl.String).cast(pl.Float64, strict=False)
    return pl.when(f.is_not_null() & (f == f.round(0))).then(f.cast(pl.Int64, strict=False).cast(pl.String)).otherwise(
        e.cast(pl.String))


def _supp_keys(parent: DomainFile, s: pl.DataFrame) -> pl.DataFrame:
    """``s`` (one row per SUPP-- record) joined to its parent records: one row per (SUPP record,
    parent record ``__prow``), ``__prow`` null with ``__unres`` (why) when none is found.

    SDTMIG 8.4/8.3: IDVAR "identifies the related record(s). Examples include --SEQ and --GRPID"; the
    variables in IDVAR "may have values that are unique for: Each observation within a domain. Groups
    of observations within a domain". So a value of --GRPID (or of any IDVAR other than --SEQ: --REFID,
    --SPID, --LNKID ...) names every parent record of the subject that has it; --SEQ is unique per
    subject and a blank IDVAR names the subject's one record (SUPPDM): a value that matches several
    parent records there is a data error, not attached."""
    dom = parent.domain
    p = parent.df
    sid = pl.col("USUBJID").cast(pl.String).alias("__sid")
    parts = []
    for idvar in s["__idvar"].unique(maintain_order=True).to_list():
        rows = s.filter(pl.col("__idvar").eq_missing(pl.lit(idvar, dtype=pl.String)))
        var = None if idvar is None else idvar.strip().upper()
        if var is not None and var not in p.columns:
            parts.append(rows.with_columns(pl.lit(None, dtype=pl.Int64).alias("__prow"), pl.lit(
                f"IDVAR {var} is not a variable of {dom}: parent record not found").alias("__unres")))
            continue
        key = pl.lit(None, dtype=pl.String) if var is None else _key(parent.text(var))
        kf = p.select(pl.col(ROW).cast(pl.Int64).alias("__prow"), sid, key.alias("__idval"))
        if var is not None:  # a parent record without a value of IDVAR is named by no IDVARVAL
            kf = kf.filter(pl.col("__idval").is_not_null())
        kf = kf.with_columns(pl.len().over("__sid", "__idval").alias("__nmatch"))
        j = rows.join(kf, on=["__sid", "__idval"], how="left", nulls_equal=True)
        unique_key = var is None or var == f"{dom}SEQ"
        j = j.with_columns(
            pl.when(pl.col("__prow").is_null()).then(pl.lit(f"parent {dom} record not found (USUBJID/IDVAR/IDVARVAL)"))
            .when(pl.lit(unique_key) & (pl.col("__nmatch") > 1))
            .then(pl.lit(f"IDVAR {var or 'empty'} names several {dom} records of the subject (it must name one): "
                         "not attached"))
            .alias("__unres"))
        # an ambiguous unique key attaches to no record: one row per SUPP record, no parent
        j = j.with_columns(pl.when(pl.col("__unres").is_null()).then(pl.col("__prow")).alias("__prow"))
        parts.append(j.drop("__nmatch").unique([ROW, "__prow"], keep="first", maintain_order=True))
    return pl.concat(parts, how="vertical_relaxed").sort(ROW, "__prow", nulls_last=True)


def _warn_unresolved(parent: DomainFile, supp: DomainFile, s: pl.DataFrame, warnings: list | None) -> None:
    """One warning per SUPP-- file naming the domain, IDVAR and IDVARVAL of the records not attached."""
    if warnings is None:
        return
    from cartlab.io.sdtm.reader import SdtmIssue

    bad = s.filter(pl.col("__unres").is_not_null()).unique(ROW, keep="first", maintain_order=True)
    if bad.height == 0:
        return
    keys = bad.group_by("__idvar", "__idval", "__unres", maintain_order=True).agg(
        pl.col("__sid").unique(maintain_order=True))
    what = [f"IDVAR {iv or 'empty'}, IDVARVAL {val or 'empty'} (USUBJID {', '.join(map(str, sids[:3]))}"
            f"{' ...' if len(sids) > 3 else ''}): {why}" for iv, val, why, sids in keys.rows()[:10]]
    more = f"; and {keys.height - 10} more" if keys.height > 10 else ""
    warnings.append(SdtmIssue(
        supp.name, "IDVAR", f"{bad.height:,} {supp.domain} record(s) not attached to any {parent.domain} record: "
        f"{'; '.join(what)}{more} (counted in the mapping report; SDTMIG: IDVAR/IDVARVAL name the parent "
        "record(s), e.g. --SEQ or --GRPID)", bad[ROW].to_list(), "warning"))


def attach_supp(parent: DomainFile, supp: DomainFile | None, mapping: SdtmMapping,
                warnings: list | None = None) -> pl.DataFrame | None:
    """Qualifier columns ``__q_<canonical>`` (and ``__q_extra`` JSON of unknown QNAMs) joined to
    ``parent.df``; returns the SUPP file's per-record status (None without a SUPP file). A record
    keyed on a group (--GRPID ...) qualifies every parent record of the group (:func:`_supp_keys`);
    ``warnings`` gets one warning naming the records not attached."""
    if supp is None:
        return None
    supp.require("USUBJID", "QNAM", "QVAL")
    s = supp.df.select(
        pl.col(ROW), pl.col("USUBJID").cast(pl.String).alias("__sid"), supp.col("IDVAR").cast(pl.String).alias("__idvar"),
        _key(supp.col("IDVARVAL")).alias("__idval"), pl.col("QNAM").cast(pl.String).str.to_uppercase().alias("__qnam"),
        supp.text("QVAL").alias("__qval"),
        pl.coalesce(supp.col(RAW_QVAL), supp.text("QVAL")).alias("__qraw"),
    )
    p = parent.df
    s = _supp_keys(parent, s).with_columns(pl.col("__prow").cast(p.schema[ROW]))
    _warn_unresolved(parent, supp, s, warnings)
    # split values: QNAM, QNAM1, QNAM2 ... of a known QNAM are one value, joined in order
    base = s["__qnam"].str.replace(r"\d$", "")
    known = set(mapping.supp)
    s = s.with_columns(
        pl.when(~pl.col("__qnam").is_in(list(known)) & base.is_in(list(known))).then(base).otherwise(pl.col("__qnam"))
        .alias("__qbase"),
        pl.when(~pl.col("__qnam").is_in(list(known)) & base.is_in(list(known)))
        .then(pl.col("__qnam").str.slice(-1).cast(pl.Int64, strict=False)).otherwise(0).alias("__part"),
    )
    # a QNAM given twice for one parent record (e.g. by its --SEQ and by its --GRPID): neither record
    # is used, for any of its parents
    dup = (s.filter(pl.col("__prow").is_not_null())
           .with_columns(pl.struct("__prow", "__qnam").is_duplicated().alias("__dup"))
           .group_by(ROW).agg(pl.col("__dup").any()))
    s = s.join(dup, on=ROW, how="left").sort(ROW, "__prow", nulls_last=True)
    one = s.unique(ROW, keep="first", maintain_order=True)
    st = status(
        one, pl.col("__qnam"), pl.lit(f"{parent.domain}:") + pl.col("__qbase"),
        first_reason(
            (pl.col("__unres").is_not_null(), pl.col("__unres")),
            (pl.col("__dup").fill_null(False), "qualifier given twice for the same record"),
        ),
    )
    ok = s.filter(pl.col("__prow").is_not_null() & ~pl.col("__dup").fill_null(False))
    # the parts as given, joined; only the ends of the whole value are stripped (a split may fall on
    # a space, which belongs to the text)
    vals = (ok.sort("__prow", "__qbase", "__part")
            .group_by("__prow", "__qbase", maintain_order=True).agg(pl.col("__qraw").fill_null("").str.join(""))
            .with_columns(pl.col("__qraw").str.strip_chars().replace("", None).alias("__qval")))
    wide = {}
    for qbase, canon in mapping.supp.items():
        part = vals.filter(pl.col("__qbase") == qbase).select(pl.col("__prow"), pl.col("__qval").alias(f"__q_{canon}"))
        if part.height:
            wide[canon] = part
    unknown = vals.filter(~pl.col("__qbase").is_in(list(known)))
    out = p.select(pl.col(ROW).alias("__prow"))
    for canon, part in wide.items():
        out = out.join(part, on="__prow", how="left")
    if unknown.height:
        j = unknown.group_by("__prow", maintain_order=True).agg(pl.col("__qbase"), pl.col("__qval"))
        j = j.with_columns(pl.struct("__qbase", "__qval").map_elements(
            lambda r: json.dumps(dict(zip(r["__qbase"], r["__qval"], strict=True))), return_dtype=pl.String
        ).alias("__q_unknown")).select("__prow", "__q_unknown")
        out = out.join(j, on="__prow", how="left")
    parent.df = p.join(out.rename({"__prow": ROW}), on=ROW, how="left").sort(ROW)
    return st


def supp_col(dfile: DomainFile, canon: str) -> pl.Expr:
    e = dfile.col(f"__q_{canon}")
    return e.cast(pl.Float64, strict=False) if canon in NUMERIC_SUPP else e


def extra_json(dfile: DomainFile) -> pl.Expr:
    """``extra``: the EXTRA qualifier merged with unknown QNAMs (JSON object text)."""
    if not dfile.has("__q_unknown"):
        return dfile.col("__q_extra").alias("extra")

    def merge(r: dict) -> str | None:
        d = json.loads(r["a"]) if r["a"] else {}
        d.update(json.loads(r["b"]) if r["b"] else {})
        return json.dumps(d) if d else None

    return pl.struct(dfile.col("__q_extra").alias("a"), pl.col("__q_unknown").alias("b")).map_elements(
        merge, return_dtype=pl.String).alias("extra")


# ---------------------------------------------------------------------------------------------
# time


def place(dfile: DomainFile, ctx: Ctx, dtc_var: str, prefix: str = "", end: bool = False,
          partial_rule: bool = False, date_only: bool = False) -> None:
    """Add ``{prefix}__day``, ``{prefix}__datetime``, ``{prefix}__dstatus`` (ok / imputed / partial /
    missing / noanchor) for ``dtc_var``; an invalid --DTC is an InputError naming the record.
    ``partial_rule``: a partial ``dtc_var`` is read by a rule of its own (events and deaths,
    :mod:`cartlab.io.sdtm.partial`), so the --DY warning does not count it as not read. ``date_only``: a
    complete date without a clock time is the row's ``datetime`` too (findings; review40 B1), else only a
    --DTC with a time is (an intervention's or event's date alone never reads as a midnight time)."""
    df = dfile.df
    if "__anchor" not in df.columns:
        df = df.join(ctx.anchors, left_on=pl.col("USUBJID").cast(pl.String), right_on="subject_id", how="left")
        df = df.drop("subject_id", strict=False).sort(ROW)
    parsed = parse_dtc(dfile.col(dtc_var), ctx.partial_dates, end=end)
    df = df.with_columns(parsed.alias("__p"))
    dfile.df = df
    dfile.fail(pl.col("__p").struct.field("status") == "invalid", dtc_var, BAD_DTC)
    p = pl.col("__p")
    st = p.struct.field("status")
    dfile.df = df.with_columns(
        pl.when(pl.col("__anchor").is_null() & st.is_in(["ok", "imputed"])).then(pl.lit("noanchor")).otherwise(st)
        .alias(f"{prefix}__dstatus"),
        day_number(p.struct.field("dt"), pl.col("__anchor")).alias(f"{prefix}__day"),  # from the day-0 midnight
        # study format: "datetime (ISO 8601)", a date alone included (review40 B1: a finding's date-only
        # datetime survives the SDTM round trip)
        pl.when((p.struct.field("has_time") | date_only) & ~pl.col("__nominal").fill_null(False) & (st == "ok"))
        .then(dfile.col(dtc_var).cast(pl.String).str.strip_chars()).otherwise(None).alias(f"{prefix}__datetime"),
    ).drop("__p")
    _study_day(dfile, ctx, dtc_var, prefix, partial_rule)


#: source_note of a record placed from --DY (option study_day_fallback)
FROM_DY = "day from {dy} {n} (no date in {dtc}; SDTMIG: no study day 0, day 1 = RFSTDTC = the infusion)"
#: the same, for a record whose --DTC is partial (review38 diff2 B7)
FROM_DY_PARTIAL = ("day from {dy} {n} (partial date '{p}' in {dtc}; SDTMIG: no study day 0, day 1 = RFSTDTC = the "
                   "infusion)")


#: the same, with a complete DM.RFSTDTC (review40 B4)
FROM_DY_RFST = ("day from {dy} {n} (no date in {dtc}; SDTMIG: no study day 0, day 1 = DM.RFSTDTC {r}, counted to the "
                "CAR-T day 0)")


def _study_day(dfile: DomainFile, ctx: Ctx, dtc_var: str, prefix: str, partial_rule: bool = False) -> None:
    """--DY for a record whose --DTC has no date (a de-identified SDTM keeps --DY, strips --DTC).

    SDTMIG 4.4.4: "--DY = (date portion of --DTC) - (date portion of RFSTDTC) + 1 if --DTC is on or after
    RFSTDTC; ... - (date portion of RFSTDTC) if --DTC precedes RFSTDTC", so "there is no study day 0".
    With ``ctx.study_day_fallback`` (off by default; it asserts that RFSTDTC, the --DY reference, is the day
    of the first CAR-T infusion) day = --DY - 1 for --DY >= 1 and --DY for --DY <= -1; --DY 0 is an error
    naming the record. Off: one warning per file counts the records not read (review38 B3); with
    ``partial_rule`` a record whose --DTC is partial is left to that rule (placed or warned about there)
    and not counted (review38 diff2 B7). On: --DY places a partial-date record too, and says so."""
    dy = dtc_var[:-3] + "DY" if dtc_var.endswith("DTC") else None
    if dy is None or not dfile.has(dy):
        return
    col = f"{prefix}__dstatus"
    n_dy = dfile.number(dy)
    # (a partial --DTC with a --DY: the date is not complete either)
    cand = (pl.col(col).is_in(["missing", "noanchor", "partial"]) & n_dy.is_not_null()
            & ~dfile.col(dtc_var).cast(pl.String).fill_null("").str.contains(r"^\d{4}-\d{2}-\d{2}"))
    df = dfile.df
    n = int(df.select(cand.sum()).item() or 0)
    if not n:
        return
    from cartlab.io.sdtm.reader import SdtmIssue

    if not ctx.study_day_fallback:
        if partial_rule:
            cand = cand & (pl.col(col) != "partial")
            n = int(df.select(cand.sum()).item() or 0)
            if not n:
                return
        rows = df.filter(cand)[ROW].to_list()
        ctx.warnings.append(SdtmIssue(dfile.name, dy, f"{n:,} record(s) with {dy} but no date in {dtc_var} were not "
                                      f"read (not placed on a day; option study_day_fallback places them from {dy}, "
                                      "SDTMIG: no study day 0)", rows, "warning"))
        return
    rows = df.filter(cand)[ROW].to_list()
    dfile.fail(cand & (n_dy == 0), dy, f"{dy} is 0: SDTMIG has no study day 0 (day 1 is RFSTDTC)")
    dfile.fail(cand & (n_dy != n_dy.round(0)), dy, f"{dy} is not a whole number of days")
    # review40 B4: --DY counts from RFSTDTC; a complete RFSTDTC on another day than day 0 (often the
    # lymphodepletion) shifts the day by their difference; without RFSTDTC it is taken as the infusion day
    rfst = pl.col("__rfst") if "__rfst" in df.columns else pl.lit(None, dtype=pl.Datetime("us"))
    shift = ((rfst - pl.col("__anchor")).dt.total_days()).cast(pl.Float64)
    day = pl.when(n_dy >= 1).then(n_dy - 1).otherwise(n_dy) + shift.fill_null(0.0)
    dfile.df = df.with_columns(
        pl.when(cand).then(day).otherwise(pl.col(f"{prefix}__day")).alias(f"{prefix}__day"),
        pl.when(cand).then(pl.lit("ok")).otherwise(pl.col(col)).alias(col),
        pl.when(cand & (pl.col(col) == "partial")).then(pl.format(
            FROM_DY_PARTIAL.replace("{dy}", dy).replace("{dtc}", dtc_var).replace("{n}", "{}").replace("{p}", "{}"),
            n_dy.cast(pl.Int64), dfile.col(dtc_var).cast(pl.String)))
        .when(cand & shift.is_not_null()).then(pl.format(
            FROM_DY_RFST.replace("{dy}", dy).replace("{dtc}", dtc_var).replace("{n}", "{}").replace("{r}", "{}"),
            n_dy.cast(pl.Int64), rfst.dt.strftime("%Y-%m-%d")))
        .when(cand).then(pl.format(FROM_DY.replace("{dy}", dy).replace("{dtc}", dtc_var).replace("{n}", "{}"),
                                   n_dy.cast(pl.Int64))).alias(f"{prefix}__dynote"),
    )
    ctx.warnings.append(SdtmIssue(dfile.name, dy, f"{n:,} record(s) with no (or a partial) date in {dtc_var} placed "
                                  f"from {dy} "
                                  "(option study_day_fallback: day 1 = DM.RFSTDTC, so day = RFSTDTC + (--DY - 1 from day "
                                  "1, --DY before it) counted from the CAR-T day 0; a subject without a complete RFSTDTC "
                                  "takes it as the infusion day)", rows, "warning"))


#: the mapping report's reason of a record with a partial date (the CLI flag and the Python option; review40 B9)
PARTIAL = "partial date in {dtc}: not placed on a day (--partial-dates impute / option partial_dates='impute')"


def time_reason(prefix: str, dtc_var: str) -> list[tuple[pl.Expr, str | pl.Expr]]:
    s = pl.col(f"{prefix}__dstatus")
    return [
        (s == "missing", f"no date ({dtc_var} empty)"),
        (s == "partial", PARTIAL.format(dtc=dtc_var)),
        (s == "noanchor", pl.lit("subject has no day 0 (") + pl.col("__noanchor").fill_null(
            "no CAR-T exposure in EX, no RFXSTDTC in DM") + pl.lit(")")),
    ]


def imputed_note(dates: list[tuple[str, str]], dfile: DomainFile) -> pl.Expr:
    """source_note with a remark appended for each date that was imputed from a partial one;
    ``dates`` are the (prefix, --DTC variable) pairs placed by :func:`place` (a start and an end)."""
    remarks = [
        pl.when(pl.col(f"{prefix}__dstatus") == "imputed")
        .then(pl.lit(f"{dtc_var} imputed from the partial date '") + dfile.col(dtc_var) + pl.lit("'"))
        for prefix, dtc_var in dates
    ]
    remarks += [pl.col(f"{prefix}__dynote") for prefix, _ in dates if f"{prefix}__dynote" in dfile.df.columns]
    remarks += [pl.col(f"{prefix}__pnote") for prefix, _ in dates if f"{prefix}__pnote" in dfile.df.columns]
    note = pl.concat_str([supp_col(dfile, "source_note"), *remarks], separator="; ", ignore_nulls=True)
    return note.replace("", None).alias("source_note")


def provenance(dfile: DomainFile) -> list[pl.Expr]:
    return [
        pl.lit(dfile.name).alias("src_file"),
        pl.lit(dfile.sha256).alias("src_sha256"),
        pl.col(ROW).alias("src_row"),
    ]
