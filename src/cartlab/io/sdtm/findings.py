"""SDTM findings (LB, VS, PC, QS, and any domain with --TESTCD) -> canonical observations.

* param: --TESTCD through the mapping's ``tests`` table, else the test code itself when it is a
  code of the parameter dictionary; anything else is counted as unmapped.
* value: --STRESN (else a number written in --STRESC) in --STRESU converted to the param's
  canonical unit (cartlab.units, pint); --STNRLO/--STNRHI -> lln/uln and --LLOQ -> lloq in the
  same unit; a result given only as text (--STRESC, e.g. ``<50`` or a level of consciousness) ->
  value_text (censored results parsed).
* orig_*: --ORRES/--ORRESU/--ORNRLO/--ORNRHI when --ORRES is a number (or there is no numeric
  result) and --ORRESU converts to the param's unit; otherwise the standard result as given.
* an unknown unit for a mapped param is an InputError naming the record (the unit can be given a
  spelling in the mapping's ``units`` table).
"""

from __future__ import annotations

import polars as pl

from cartlab.errors import InputError
from cartlab.io.dictionary import Dictionary
from cartlab.io.sdtm.common import (
    Ctx,
    _key,
    extra_json,
    first_reason,
    imputed_note,
    place,
    provenance,
    status,
    supp_col,
    time_reason,
)
from cartlab.io.sdtm.files import ROW, DomainFile
from cartlab.io.sdtm.intervention_rules import warn_partial
from cartlab.io.sdtm.mapping import norm
from cartlab.io.value_text import BLQ_WORDS, CENSORED
from cartlab.units import UnitError

_CENSORED = CENSORED.pattern  # the study folder's censored result ("<50"), one definition
#: a number written out in --STRESC (1.2, -0.5, .5, 1.2E-5): no comparator, no text, no inf/nan
_NUMBER = r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"
SIG_DIGITS = 12


#: the parameter dictionary's group of blood counts (params_v1.yaml ``group``): counts and blasts of
#: peripheral blood, read only from a blood specimen
BLOOD_GROUP = "hematology"


def blood_counts(d: Dictionary) -> list[str]:
    """The params of the dictionary's :data:`BLOOD_GROUP` (WBC, NEUT, LYM, MONO, HGB, PLAT, PBBLAST in
    params_v1.yaml): a result of one in a --SPEC that is not blood is not that blood count."""
    return [code for code, p in d.params.items() if p.group == BLOOD_GROUP]


def _param_map(dfile: DomainFile, ctx: Ctx) -> tuple[dict[str, str | None], dict[str, str]]:
    """test code -> param (None = explicitly unmapped), and the reasons of explicit skips."""
    dom = dfile.domain
    params: dict[str, str | None] = {}
    reasons: dict[str, str] = {}
    for code in dfile.df.select(pl.col(f"{dom}TESTCD").cast(pl.String)).unique().to_series().drop_nulls().to_list():
        entry = ctx.mapping.test(dom, code)
        key = norm(code)
        if entry is not None:
            params[key] = entry.get("param")
            if entry.get("param") is None:
                reasons[key] = entry.get("reason") or "mapped to no param by the mapping file"
            elif entry["param"] not in ctx.dictionary:
                raise InputError(f"mapping: {dom} test code {code} maps to {entry['param']!r}, which is not "
                                 "in the parameter dictionary")
        elif key in ctx.dictionary:
            params[key] = key
        else:
            params[key] = None
    return params, reasons


def _conversions(ctx: Ctx, pairs: pl.DataFrame) -> dict[tuple[str, str], tuple[float, float] | str]:
    """(param, unit as mapped) -> (scale, offset), or the error text."""
    out: dict[tuple[str, str], tuple[float, float] | str] = {}
    for param, unit in pairs.iter_rows():
        try:
            c = ctx.dictionary[param].conversion_from(unit)
            out[(param, unit)] = (c.scale, c.offset)
        except UnitError as exc:
            out[(param, unit)] = str(exc)
    return out


def _conv_cols(df: pl.DataFrame, conv: dict, unit_col: str, prefix: str) -> pl.DataFrame:
    rows = [(p, u, v[0], v[1]) for (p, u), v in conv.items() if not isinstance(v, str)]
    table = pl.DataFrame(rows, schema={"__param": pl.String, unit_col: pl.String, f"{prefix}scale": pl.Float64,
                                       f"{prefix}offset": pl.Float64}, orient="row")
    return df.join(table, on=["__param", unit_col], how="left").sort(ROW)


#: marrow params read only from a bone-marrow specimen (or an empty --SPEC); BMBLAST from blood is PBBLAST
MARROW_ONLY = ("BMBLAST", "BMCELL")
UNMAPPED = "test code not in the mapping nor the parameter dictionary"


def _marrow_specimen(dfile: DomainFile, df: pl.DataFrame, ctx: Ctx, v: dict) -> pl.DataFrame:
    """BMBLAST measured in blood (--SPEC a PB spelling) is the blood blast percentage PBBLAST of the
    parameter dictionary (SDTMIG LB: --SPEC "Defines the type of specimen used for a measurement": the
    same test in two specimens is two measurements); a warning counts them (review38 B1). Another
    non-marrow specimen is refused in ``base_reason``."""
    from cartlab.io.sdtm.reader import SdtmIssue

    spec = dfile.col(v["SPEC"]).cast(pl.String).str.to_uppercase().str.strip_chars()
    pb = (pl.col("__param") == "BMBLAST") & (spec.replace_strict(ctx.mapping.specimens, default=None,
                                                                  return_dtype=pl.String) == "PB").fill_null(False)
    rows = df.filter(pb)[ROW].to_list()
    if not rows or "PBBLAST" not in ctx.dictionary:
        return df
    ctx.warnings.append(SdtmIssue(dfile.name, v["SPEC"], f"{len(rows):,} blast record(s) mapped to BMBLAST were measured "
                                  f"in blood ({v['SPEC']}): read as PBBLAST (blasts in peripheral blood), not as marrow "
                                  "blasts", rows, "warning"))
    return df.with_columns(pl.when(pb).then(pl.lit("PBBLAST")).otherwise(pl.col("__param")).alias("__param"))


def _warn_unmapped(dfile: DomainFile, df: pl.DataFrame, ctx: Ctx) -> None:
    """One warning per file naming the test codes not read and how often each was seen (as the FHIR
    reader's ``unmapped_codes``, review38 B2): an unmapped IL-6 or ANC code leaves grades not evaluable."""
    from cartlab.io.sdtm.reader import SdtmIssue

    bad = df.filter(pl.col("__pre") == UNMAPPED)
    if not bad.height:
        return
    counts = bad.group_by("__code").agg(pl.len()).sort(["len", "__code"], descending=[True, False])
    codes = ", ".join(f"{c} ({n})" for c, n in counts.rows()[:10]) + (" ..." if counts.height > 10 else "")
    ctx.warnings.append(SdtmIssue(dfile.name, f"{dfile.domain}TESTCD", f"{bad.height:,} {dfile.domain} record(s) with a "
                                  f"test code not in the mapping nor the parameter dictionary were not read: {codes}; "
                                  "add the code to the tests table of a mapping file if it is a cartlab param",
                                  bad[ROW].to_list(), "warning"))


#: the mapping report's reason for a text result of a numeric param that is no number
NOT_NUMERIC = ("not numeric: {stresc} is neither a number nor a censored value (<x, <=x, >x, >=x) "
               "of a numeric param (e.g. a decimal comma '0,2', or 'BLQ'); the value is missing")


def _not_numeric(text_params: dict) -> pl.Expr:
    """A record of a numeric param whose only result is a text that is no number and not censored
    (SDTMIG: --STRESN is --STRESC "copied in numeric format"; '0,2' or 'BLQ' gives no number)."""
    return (pl.col("__param").is_not_null() & ~pl.col("__param").is_in(list(text_params))
            & pl.col("__stresn").is_null() & pl.col("__vtext").is_not_null() & pl.col("censor").is_null())


def _warn_not_numeric(dfile: DomainFile, df: pl.DataFrame, ctx: Ctx, v: dict, reason: str) -> None:
    """One warning per record skipped as not numeric, naming domain, USUBJID, --SEQ, record and text."""
    from cartlab.io.sdtm.reader import SdtmIssue

    dom = dfile.domain
    seq = _key(dfile.col(f"{dom}SEQ"))  # 3.0 (XPT numbers) is written 3
    bad = df.filter(pl.col("__pre") == reason).select(
        pl.col(ROW), pl.col("USUBJID").cast(pl.String), seq.alias("__seq"), pl.col("__param"), pl.col("__vtext"))
    for row, usubjid, sq, param, text in bad.iter_rows():
        at = f"{dom}SEQ {sq}" if sq is not None else f"record {row}"
        ctx.warnings.append(SdtmIssue(
            dfile.name, v["STRESC"],
            f"{dom} USUBJID {usubjid}, {at}: {v['STRESC']} {text!r} is neither a number nor a censored value "
            f"(<x): not numeric, the {param} record is not mapped (counted in the mapping report; give a number "
            f"with a decimal point in {v['STRESN']}, or a censored '<limit')", [row], "warning"))


def _warn_stresn_stresc(dfile: DomainFile, df: pl.DataFrame, ctx: Ctx, v: dict) -> None:
    """One warning per record mapped whose --STRESN is not --STRESC "copied in numeric format"
    (SDTMIG): a censored --STRESC with a --STRESN (read as censored) or two different numbers (the
    --STRESN is read)."""
    from cartlab.io.sdtm.reader import SdtmIssue

    dom = dfile.domain
    seq = _key(dfile.col(f"{dom}SEQ"))
    bad = df.filter(pl.col("__pre").is_null() & (pl.col("__cens_n") | pl.col("__disagree"))).select(
        pl.col(ROW), pl.col("USUBJID").cast(pl.String), seq.alias("__seq"), pl.col("__param"),
        dfile.text(v["STRESN"]).alias("__n"), dfile.text(v["STRESC"]).alias("__c"), pl.col("__cens_n"))
    for row, usubjid, sq, param, n, c, cens in bad.iter_rows():
        at = f"{dom}SEQ {sq}" if sq is not None else f"record {row}"
        if cens:
            what = (f"{v['STRESN']} {n} contradicts the censored {v['STRESC']} {c!r}: read as censored "
                    f"({c.strip()}), {v['STRESN']} not used (a censored result has no exact number)")
        else:
            what = f"{v['STRESN']} {n} differs from {v['STRESC']} {c!r}: {v['STRESN']} {n} is read"
        ctx.warnings.append(SdtmIssue(
            dfile.name, v["STRESN"], f"{dom} USUBJID {usubjid}, {at} ({param}): {what} (SDTMIG: {v['STRESN']} is "
            f"{v['STRESC']} copied in numeric format)", [row], "warning"))


def _seq_at(dfile: DomainFile, df: pl.DataFrame) -> list[str]:
    """'USUBJID x, --SEQ n' (else 'record n') of each row of ``df``."""
    seq = df.select(_key(dfile.col(f"{dfile.domain}SEQ")).alias("s"))["s"].to_list()
    return [f"USUBJID {u}, {dfile.domain}SEQ {q}" if q is not None else f"USUBJID {u}, record {r}"
            for u, q, r in zip(df["USUBJID"].cast(pl.String).to_list(), seq, df[ROW].to_list(), strict=True)]


def _warn_orres_censored(dfile: DomainFile, df: pl.DataFrame, ctx: Ctx, v: dict) -> None:
    """One warning per file naming the records whose --ORRES is censored ("<50") while --STRESC/--STRESN
    give an exact number (review40 A1): read as censored, the exact number not used (a result below the
    LLOQ has no exact number; SDTMIG: --STRESC is "copied or derived from --ORRES")."""
    from cartlab.io.sdtm.reader import SdtmIssue

    bad = df.filter(pl.col("__pre").is_null() & pl.col("__orcens"))
    if not bad.height:
        return
    what = [f"{at} ({p}): {v['ORRES']} {o!r}, {v['STRESN']}/{v['STRESC']} {n:g}" for at, p, o, n in zip(
        _seq_at(dfile, bad), bad["__param"].to_list(), bad.select(dfile.text(v["ORRES"]).alias("o"))["o"].to_list(),
        bad["__st_exact"].to_list(), strict=True)]
    ctx.warnings.append(SdtmIssue(
        dfile.name, v["ORRES"], f"{bad.height:,} {dfile.domain} record(s) with a censored {v['ORRES']} but an exact "
        f"{v['STRESN']}/{v['STRESC']}: read as censored at the {v['ORRES']} limit (converted from {v['ORRESU']}; "
        f"the exact number is not used, a censored result has none): {'; '.join(what[:10])}"
        f"{' ...' if len(what) > 10 else ''}", bad[ROW].to_list(), "warning"))


def _warn_or_range(dfile: DomainFile, df: pl.DataFrame, ctx: Ctx, v: dict) -> None:
    """One warning per file counting the records whose empty --STNRLO/--STNRHI were taken from
    --ORNRLO/--ORNRHI converted from --ORRESU (review40 B6)."""
    from cartlab.io.sdtm.reader import SdtmIssue

    rows = df.filter(pl.col("__pre").is_null() & pl.col("__or_range"))[ROW].to_list()
    if rows:
        ctx.warnings.append(SdtmIssue(
            dfile.name, v["ORNRHI"], f"{len(rows):,} {dfile.domain} record(s) with {v['STNRLO']}/{v['STNRHI']} empty: "
            f"the reference range is {v['ORNRLO']}/{v['ORNRHI']} converted from {v['ORRESU']} (SDTMIG: the same range "
            "given for the original result)", rows, "warning"))


def _warn_not_done(dfile: DomainFile, ctx: Ctx, v: dict) -> None:
    """One warning naming each record with --STAT NOT DONE and a result (review40 B2; SDTMIG --STAT: "Used to
    indicate exam not done. Should be null if a result exists"): the sender said not done, so it is not read."""
    from cartlab.io.sdtm.reader import SdtmIssue

    nd = (dfile.col(v["STAT"]).cast(pl.String).str.to_uppercase().str.strip_chars() == "NOT DONE").fill_null(False)
    given = [dfile.text(v[k]).str.strip_chars().fill_null("") != "" for k in ("STRESN", "STRESC", "ORRES")]
    bad = dfile.df.filter(nd & (given[0] | given[1] | given[2]))
    if not bad.height:
        return
    res = bad.select(pl.coalesce(dfile.text(v["STRESN"]), dfile.text(v["STRESC"]), dfile.text(v["ORRES"])).alias("r"))
    what = [f"{at}: {v['STAT']} NOT DONE but result {r!r}" for at, r in zip(_seq_at(dfile, bad), res["r"].to_list(),
                                                                         strict=True)]
    ctx.warnings.append(SdtmIssue(
        dfile.name, v["STAT"], f"{bad.height:,} {dfile.domain} record(s) not done with a result given: not read "
        f"(SDTMIG: {v['STAT']} is null if a result exists; correct {v['STAT']} or remove the result): "
        f"{'; '.join(what[:10])}{' ...' if len(what) > 10 else ''}", bad[ROW].to_list(), "warning"))


#: the mapping report's reason of a record mapped from its original result (no standard result given)
FROM_ORRES = "mapped: result from {orres}/{orresu} ({stresc} and {stresn} empty)"


def _orres_fallback(dfile: DomainFile, ctx: Ctx, v: dict) -> None:
    """A record with --STRESN and --STRESC empty but --ORRES given (against SDTMIG, where --STRESC is
    the result "copied or derived from --ORRES in a standard format"; common in legacy conversions) is
    read from --ORRES in --ORRESU (and --ORNRLO/--ORNRHI when --STNRLO/--STNRHI are empty), converted
    with pint like any standard result: the standard variables are filled from the original ones,
    ``__from_or`` marks the record (source_note, mapping report), and one warning per file counts them."""
    from cartlab.io.sdtm.reader import SdtmIssue

    empty = [dfile.text(v[k]).str.strip_chars().fill_null("") == "" for k in ("STRESN", "STRESC", "ORRES")]
    not_done = (dfile.col(v["STAT"]).cast(pl.String).str.to_uppercase() == "NOT DONE").fill_null(False)
    orr = empty[0] & empty[1] & ~empty[2] & ~not_done
    df = dfile.df.with_columns(orr.alias("__from_or"))
    n = int(df["__from_or"].sum())
    if not n:
        dfile.df = df
        return
    dfile.df = df
    fill = [pl.when(pl.col("__from_or")).then(dfile.text(v["ORRES"])).otherwise(dfile.text(v["STRESC"])).alias(v["STRESC"]),
            pl.when(pl.col("__from_or")).then(dfile.text(v["ORRESU"])).otherwise(dfile.text(v["STRESU"])).alias(v["STRESU"])]
    for st, orig in (("STNRLO", "ORNRLO"), ("STNRHI", "ORNRHI")):
        fill.append(pl.when(pl.col("__from_or") & dfile.number(v[st]).is_null()).then(dfile.number(v[orig]))
                    .otherwise(dfile.number(v[st])).alias(v[st]))
    dfile.df = df.with_columns(fill)
    rows = dfile.df.filter(pl.col("__from_or"))[ROW].to_list()
    ctx.warnings.append(SdtmIssue(
        dfile.name, v["ORRES"], f"{n} {dfile.domain} record(s) with {v['STRESN']} and {v['STRESC']} empty read from "
        f"{v['ORRES']} in {v['ORRESU']} (SDTMIG: {v['STRESC']} is the result \"copied or derived from {v['ORRES']} "
        f"in a standard format\"); records {', '.join(map(str, rows[:10]))}{' ...' if n > 10 else ''}",
        rows, "warning"))


def map_findings(dfile: DomainFile, ctx: Ctx) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(canonical observations, per-record status) of one findings domain."""
    dom = dfile.domain
    dfile.require("USUBJID", f"{dom}TESTCD")
    v = {s: f"{dom}{s}" for s in ("TESTCD", "STRESN", "STRESC", "STRESU", "ORRES", "ORRESU", "ORNRLO", "ORNRHI",
                                   "STNRLO", "STNRHI", "LLOQ", "SPEC", "STAT", "REASND", "TSTDTL", "DTC")}
    dfile.check_numbers(v["STRESN"], v["STNRLO"], v["STNRHI"], v["LLOQ"])
    _orres_fallback(dfile, ctx, v)
    _warn_not_done(dfile, ctx, v)
    params, skip_reasons = _param_map(dfile, ctx)
    m = ctx.mapping
    d = ctx.dictionary
    code = dfile.col(v["TESTCD"]).cast(pl.String).str.to_uppercase().str.strip_chars()
    # SDTMIG: --STRESN is --STRESC "copied in numeric format"; a number given only in --STRESC is
    # the numeric result all the same (a censored "<2" or a text result stays text)
    # a censored --STRESC (">5000") wins over a --STRESN filled against the IG (5000): the result has
    # no exact number, so it stays censored (a warning names the record)
    stresc = dfile.text(v["STRESC"])
    censored_c = stresc.str.contains(_CENSORED).fill_null(False)
    stresc_num = pl.when(stresc.str.contains(_NUMBER)).then(stresc.cast(pl.Float64, strict=False))
    # review40 A1: a censored --ORRES ("<50") next to an exact --STRESC/--STRESN (50, or 0): the result has
    # no exact number (a sponsor substituted the LLOQ or 0), so the censor of --ORRES wins (warned)
    orcens = (dfile.text(v["ORRES"]).str.strip_chars().str.contains(_CENSORED).fill_null(False) & ~censored_c
              & pl.coalesce(dfile.number(v["STRESN"]), stresc_num).is_not_null()
              & supp_col(dfile, "value_text").is_null())
    stresn = pl.when(censored_c | orcens).then(None).otherwise(pl.coalesce(dfile.number(v["STRESN"]), stresc_num))
    df = dfile.df.with_columns(
        code.alias("__code"),
        code.replace_strict(params, default=None, return_dtype=pl.String).alias("__param"),
        stresn.alias("__stresn"),
        (censored_c & dfile.number(v["STRESN"]).is_not_null()).alias("__cens_n"),
        orcens.alias("__orcens"),
        pl.coalesce(dfile.number(v["STRESN"]), stresc_num).alias("__st_exact"),
        ((dfile.number(v["STRESN"]) - stresc_num).abs()
         > 1e-9 * pl.max_horizontal(dfile.number(v["STRESN"]).abs(), stresc_num.abs())).fill_null(False).alias("__disagree"),
        supp_col(dfile, "value_text").fill_null(pl.when(orcens).then(dfile.text(v["ORRES"]).str.strip_chars())
                                                .when(stresn.is_null()).then(stresc)).alias("__vtext"),
        m.unit_expr(dfile.text(v["STRESU"])).fill_null("").alias("__stu"),
        m.unit_expr(dfile.text(v["ORRESU"])).fill_null("").alias("__oru"),
    )
    df = _marrow_specimen(dfile, df, ctx, v)
    cens = pl.col("__vtext").str.extract_groups(_CENSORED)
    # "BLQ" (BQL, BLOQ, <LLOQ ...) with a --LLOQ is "<LLOQ", as the study-folder reader reads it
    # (io/value_text.py); without --LLOQ its bound is unknown: not numeric, reported (session 33)
    blq = (pl.col("__vtext").str.strip_chars().str.to_lowercase().str.replace_all(r"\s+", " ").is_in(BLQ_WORDS)
           & dfile.number(v["LLOQ"]).is_not_null())
    df = df.with_columns(
        pl.when(blq).then(pl.lit("<")).otherwise(cens.struct.field("1").replace({"≤": "<=", "≥": ">="})).alias("censor"),
        pl.when(blq).then(dfile.number(v["LLOQ"])).otherwise(cens.struct.field("2").cast(pl.Float64, strict=False))
        .alias("__climit"),
    )
    dfile.df = df
    place(dfile, ctx, v["DTC"], date_only=True)
    df = dfile.df
    text_params = {p.code: list(p.text_values) for p in d.params.values() if p.text_values}
    has_result = pl.col("__stresn").is_not_null() | pl.col("__vtext").is_not_null()
    not_numeric = NOT_NUMERIC.format(stresc=v["STRESC"])
    spec_raw = dfile.col(v["SPEC"]).cast(pl.String).str.to_uppercase().str.strip_chars().fill_null("")
    base_reason = [
        (pl.col("USUBJID").is_null(), "USUBJID empty"),
        (~pl.col("USUBJID").cast(pl.String).is_in(ctx.subjects.implode()), "subject not in DM"),
        (pl.col("__code").is_null(), f"{v['TESTCD']} empty"),
        (pl.col("__param").is_null() & pl.col("__code").is_in(list(skip_reasons)),
         pl.col("__code").replace_strict(skip_reasons, default=None, return_dtype=pl.String)),
        (pl.col("__param").is_null(), UNMAPPED),
        (dfile.col(v["STAT"]).cast(pl.String).str.to_uppercase() == "NOT DONE",
         pl.when(dfile.text(v["REASND"]).str.strip_chars().fill_null("") != "")
         .then(pl.format(f"not done ({v['STAT']}; {v['REASND']} {{}})", dfile.text(v["REASND"]).str.strip_chars()))
         .otherwise(pl.lit(f"not done ({v['STAT']})"))),
        (~has_result, f"no result ({v['STRESN']} and {v['STRESC']} empty)"),
        # a blood count measured in another specimen (a CSF or urine WBC) is not the blood count the
        # engines grade: not read, and never a reason to stop the import (session 33, review33 A6/B2)
        (pl.col("__param").is_in(list(MARROW_ONLY)) & (spec_raw != "")
         & (spec_raw.replace_strict(m.specimens, default=None, return_dtype=pl.String).fill_null("?") != "BM"),
         pl.format("specimen {} is not bone marrow: not read as {} (a marrow result)", spec_raw, pl.col("__param"))),
        (pl.col("__param").is_in(blood_counts(d)) & (spec_raw != "")
         & (spec_raw.replace_strict(m.specimens, default=None, return_dtype=pl.String).fill_null("?") != "PB"),
         pl.format("specimen {} is not blood: not read as {} (a blood count)", spec_raw, pl.col("__param"))),
        *[((pl.col("__param") == p) & pl.col("__vtext").is_not_null() & ~pl.col("__vtext").is_in(vals),
           f"{p} result is not one of {', '.join(vals)}") for p, vals in text_params.items()],
        (_not_numeric(text_params), not_numeric),
        *time_reason("", v["DTC"]),
    ]
    df = df.with_columns(first_reason(*base_reason).alias("__pre"))
    _warn_not_numeric(dfile, df, ctx, v, not_numeric)
    _warn_stresn_stresc(dfile, df, ctx, v)
    # unit conversion of the rows still mapped: standard unit (required), original unit (optional)
    needs_unit = (pl.col("__stresn").is_not_null() | pl.col("__climit").is_not_null()
                  | dfile.col(v["STNRLO"]).is_not_null() | dfile.col(v["STNRHI"]).is_not_null())
    live = df.filter(pl.col("__pre").is_null())
    st_conv = _conversions(ctx, live.filter(needs_unit | (pl.col("__stu") != "")).select("__param", "__stu").unique())
    for (param, unit), c in st_conv.items():
        if isinstance(c, str):
            dfile.df = df
            dfile.fail(pl.col("__pre").is_null() & (pl.col("__param") == param) & (pl.col("__stu") == unit)
                       & pl.col("__from_or"), v["ORRESU"], f"{c} (param {param}; the result is read from "
                       f"{v['ORRES']}, {v['STRESC']} being empty); add the spelling to the mapping's units table")
            if unit == "":  # review38 C1: no spelling to add
                dfile.fail(pl.col("__pre").is_null() & (pl.col("__param") == param) & (pl.col("__stu") == unit),
                           v["STRESU"], f"{v['STRESU']} is empty: give the unit of {v['STRESN']} "
                           f"({c.split(', got')[0]}; param {param})")
            dfile.fail(pl.col("__pre").is_null() & (pl.col("__param") == param) & (pl.col("__stu") == unit),
                       v["STRESU"], f"{c} (param {param}); add the spelling to the mapping's units table")
    or_conv = _conversions(ctx, live.filter(dfile.col(v["ORRES"]).is_not_null() | (pl.col("__oru") != ""))
                           .select("__param", "__oru").unique())
    # --ORRESU as given (IU/L, copies/µg) is kept in orig_unit when cartlab converts it itself; a spelling
    # only the mapping's units table knows is kept as mapped (review36 B3)
    df = df.with_columns(dfile.text(v["ORRESU"]).str.strip_chars().fill_null("").alias("__oru_raw"))
    raw_ok = {k for k, c in _conversions(ctx, df.filter(pl.col("__param").is_not_null() & (pl.col("__oru_raw") != ""))
                                         .select("__param", "__oru_raw").unique()).items() if not isinstance(c, str)}
    df = df.with_columns(pl.concat_str("__param", "__oru_raw", separator="\x1f")
                         .is_in([f"{p}\x1f{u}" for p, u in raw_ok]).fill_null(False).alias("__raw_ok"))
    df = _conv_cols(df, st_conv, "__stu", "__s")
    df = _conv_cols(df, or_conv, "__oru", "__o")
    df = df.with_columns(pl.col("__sscale").fill_null(pl.when(~needs_unit).then(1.0)),
                         pl.col("__soffset").fill_null(pl.when(~needs_unit).then(0.0)))

    def canon(e: pl.Expr) -> pl.Expr:
        return (e * pl.col("__sscale") + pl.col("__soffset")).round_sig_figs(SIG_DIGITS)

    def from_orig(e: pl.Expr) -> pl.Expr:  # a number in --ORRESU -> the param's unit
        return (e * pl.col("__oscale") + pl.col("__ooffset")).round_sig_figs(SIG_DIGITS)

    def to_orig(e: pl.Expr) -> pl.Expr:  # a number in --STRESU -> --ORRESU (review40 A3/B8: the export's unit)
        return ((e * pl.col("__sscale") + pl.col("__soffset") - pl.col("__ooffset")) / pl.col("__oscale")
                ).round_sig_figs(SIG_DIGITS)

    orres = dfile.number(v["ORRES"]) if dfile.has(v["ORRES"]) else pl.lit(None, dtype=pl.Float64)
    # a censored --STRESC whose --ORRES is censored the same way ("<0.5" mg/dL, "<5" mg/L): the text and
    # unit as first given are --ORRES/--ORRESU (the censor and limit stay those of --STRESC)
    or_cens = dfile.text(v["ORRES"]).str.extract_groups(_CENSORED)
    same_cens = (pl.col("__climit").is_not_null() & pl.col("__oscale").is_not_null()
                 & (or_cens.struct.field("1").replace({"≤": "<=", "≥": ">="}) == pl.col("censor"))
                 & supp_col(dfile, "value_text").is_null()).fill_null(False)
    # (a spelling that differs from the mapped one only in case, G/DL for g/dL, takes the mapped one)
    oru = pl.when(pl.col("__raw_ok") & (pl.col("__oru_raw").str.to_lowercase() != pl.col("__oru").str.to_lowercase())
                  ).then(pl.col("__oru_raw")).otherwise(pl.col("__oru"))
    use_or = pl.col("__oscale").is_not_null() & (orres.is_not_null() | pl.col("__stresn").is_null()) & (
        dfile.col(v["ORRES"]).is_not_null() | (pl.col("__oru") != "")) & (
        # a censored text result is read from --STRESC, so its unit is --STRESU (not --ORRESU)
        orres.is_not_null() | pl.col("__climit").is_null())
    units = {k: p.unit for k, p in d.params.items()}
    lo = pl.col("__param").replace_strict({k: p.plausible[0] for k, p in d.params.items() if p.plausible}, default=None,
                                          return_dtype=pl.Float64)
    hi = pl.col("__param").replace_strict({k: p.plausible[1] for k, p in d.params.items() if p.plausible}, default=None,
                                          return_dtype=pl.Float64)
    ints = [k for k, p in d.params.items() if p.integer]
    df = df.with_columns(canon(pl.col("__stresn")).alias("value"))
    # review40 B6: an empty --STNRLO/--STNRHI is the --ORNRLO/--ORNRHI range converted from --ORRESU (SDTMIG:
    # the same reference range, given for --ORRES); review40 A1: the bound of a censored --ORRES
    or_range = [(dfile.number(v[st]).is_null() & dfile.number(v[orr]).is_not_null() & pl.col("__oscale").is_not_null()
                 & ~pl.col("__from_or")) for st, orr in (("STNRLO", "ORNRLO"), ("STNRHI", "ORNRHI"))]
    df = df.with_columns((or_range[0] | or_range[1]).fill_null(False).alias("__or_range"),
                         (pl.col("__orcens") & pl.col("__oscale").is_not_null()).alias("__orcens_u"))
    dfile.df = df
    _warn_orres_censored(dfile, df, ctx, v)
    _warn_or_range(dfile, df, ctx, v)
    reason = pl.coalesce(pl.col("__pre"), first_reason(
        (pl.col("value").is_not_null() & lo.is_not_null() & ((pl.col("value") < lo) | (pl.col("value") > hi)),
         pl.lit("value outside the plausible range of ") + pl.col("__param") + pl.lit(" (wrong unit?)")),
        (pl.col("__param").is_in(ints) & pl.col("value").is_not_null() & (pl.col("value") % 1 != 0),
         "non-integer value of an integer score"),
    ))
    df = df.with_columns(reason.alias("__reason"))
    warn_partial(dfile, df, ctx, v["DTC"], pl.col("__param").fill_null(pl.col("__code")))
    sp = dfile.col(v["SPEC"]).cast(pl.String).str.to_uppercase().str.strip_chars()
    out = df.filter(pl.col("__reason").is_null()).select(
        pl.col("USUBJID").cast(pl.String).alias("subject_id"),
        pl.col("__day").alias("day"),
        pl.col("__datetime").alias("datetime"),
        pl.col("__param").alias("param"),
        supp_col(dfile, "analyte").fill_null(dfile.text(v["TSTDTL"])).alias("analyte"),
        pl.col("value"),
        pl.when(same_cens | pl.col("__orcens_u")).then(dfile.text(v["ORRES"]).str.strip_chars())
        .when(pl.col("__orcens")).then(pl.concat_str(pl.col("censor"), pl.coalesce(
            dfile.text(v["STRESC"]).str.strip_chars(), pl.col("__st_exact").cast(pl.String))))
        .otherwise(pl.col("__vtext")).alias("value_text"),
        pl.col("__param").replace_strict(units, default=None, return_dtype=pl.String).alias("unit"),
        pl.coalesce(canon(dfile.number(v["STNRLO"])), from_orig(dfile.number(v["ORNRLO"]))).alias("lln"),
        pl.coalesce(canon(dfile.number(v["STNRHI"])), from_orig(dfile.number(v["ORNRHI"]))).alias("uln"),
        canon(dfile.number(v["LLOQ"])).alias("lloq"),
        pl.col("censor"),
        pl.when(pl.col("__orcens_u")).then(from_orig(pl.col("__climit")))
        .when(pl.col("__orcens")).then(canon(pl.col("__st_exact")))
        .otherwise(canon(pl.col("__climit"))).alias("censor_limit"),
        sp.replace_strict(m.specimens, default=None, return_dtype=pl.String).alias("specimen"),
        pl.when(use_or).then(orres).otherwise(pl.col("__stresn")).alias("orig_value"),
        pl.when(use_or | same_cens | pl.col("__orcens_u")).then(oru).otherwise(pl.col("__stu")).replace("", None)
        .alias("orig_unit"),
        # review40 B8/A3: a range or LLOQ given only in --STRESU is converted to --ORRESU next to --ORRES (also for
        # a censored --ORRES read with its own unit, review 40 diff2 A1: orig_unit is --ORRESU there)
        pl.when(use_or | pl.col("__orcens_u")).then(pl.coalesce(dfile.number(v["ORNRLO"]), to_orig(dfile.number(v["STNRLO"]))))
        .otherwise(pl.coalesce(dfile.number(v["STNRLO"]), pl.when(pl.col("__or_range")).then(
            (from_orig(dfile.number(v["ORNRLO"])) - pl.col("__soffset")) / pl.col("__sscale")))).alias("orig_lln"),
        pl.when(use_or | pl.col("__orcens_u")).then(pl.coalesce(dfile.number(v["ORNRHI"]), to_orig(dfile.number(v["STNRHI"]))))
        .otherwise(pl.coalesce(dfile.number(v["STNRHI"]), pl.when(pl.col("__or_range")).then(
            (from_orig(dfile.number(v["ORNRHI"])) - pl.col("__soffset")) / pl.col("__sscale")))).alias("orig_uln"),
        supp_col(dfile, "orig_lloq").fill_null(pl.when(use_or | pl.col("__orcens_u"))
                                              .then(to_orig(dfile.number(v["LLOQ"])))
                                              .otherwise(dfile.number(v["LLOQ"]))).alias("orig_lloq"),
        supp_col(dfile, "source").alias("source"),
        pl.concat_str([imputed_note([("", v["DTC"])], dfile),
                       pl.when(pl.col("__from_or")).then(pl.lit(f"result read from {v['ORRES']}/{v['ORRESU']}: "
                                                                  f"{v['STRESC']} empty")),
                       pl.when(pl.col("__orcens")).then(pl.format(f"{v['ORRES']} '{{}}' is censored: {v['STRESN']} {{}} "
                                                                  "not used", dfile.text(v["ORRES"]).str.strip_chars(),
                                                                  pl.col("__st_exact"))),
                       pl.when(pl.col("__or_range")).then(pl.lit(f"range from {v['ORNRLO']}/{v['ORNRHI']} "
                                                                 f"({v['STNRLO']}/{v['STNRHI']} empty)"))],
                      separator="; ", ignore_nulls=True).replace("", None).alias("source_note"),
        extra_json(dfile),
        *provenance(dfile),
    )
    _warn_unmapped(dfile, df, ctx)
    from_or = FROM_ORRES.format(orres=v["ORRES"], orresu=v["ORRESU"], stresc=v["STRESC"], stresn=v["STRESN"])
    reason = pl.when(pl.col("__reason").is_null() & pl.col("__from_or")).then(pl.lit(from_or)).otherwise(pl.col("__reason"))
    st = status(df, pl.col("__code"), pl.lit("observations:") + pl.col("__param").fill_null(""), reason)
    return out, st
