"""``write_sdtm(study, folder)``: a Study as SDTM-like domains (CSV or SAS XPT v5), so that
``read_sdtm`` gives the same canonical rows back (docs/interop/sdtm.md, "Round trip").

DM (+ SUPPDM; SITEID, RACE, COUNTRY and the arms from the subject's ``extra`` and target, see
:func:`dm_arms`), EX, CM, LB / VS / QS / PC (by the param's group), DS (deaths) and CE (other events),
each with a SUPP-- domain for what SDTM has no variable for (provenance label and note, ``extra``
JSON, oxygen device and flow, attribution, the original LLOQ). --STRESN/--STRESU are the canonical
value and unit, --ORRES/--ORRESU the values as first given. Subjects without a calendar anchor
(``infusion_date``) get a nominal one (``anchor_date``, flagged in SUPPDM NOMANCH = Y): their --DTC
are placeholders that carry the day, and read_sdtm leaves their dates empty again.
"""

from __future__ import annotations

import warnings
from datetime import date
from pathlib import Path

import polars as pl

from cartlab.errors import CartlabWarning, InputError
from cartlab.io.atomic import atomic_folder
from cartlab.io.dictionary import load_dictionary
from cartlab.io.sdtm.dates import US_PER_DAY
from cartlab.io.sdtm.mapping import load_mapping
from cartlab.model import PROVENANCE_COLUMNS, Study

_MAX_TEXT = 200  # XPT v5 character values
_DOMAIN_OF_GROUP = {"vital": "VS", "neuro": "QS", "kinetics": "PC"}
_LABELS = {"STUDYID": "Study Identifier", "DOMAIN": "Domain Abbreviation", "USUBJID": "Unique Subject Identifier",
           "RDOMAIN": "Related Domain Abbreviation", "IDVAR": "Identifying Variable",
           "IDVARVAL": "Identifying Variable Value", "QNAM": "Qualifier Variable Name",
           "QLABEL": "Qualifier Variable Label", "QVAL": "Data Value", "QORIG": "Origin",
           # DM (SDTMIG 3.4 labels)
           "SUBJID": "Subject Identifier for the Study", "RFXSTDTC": "Date/Time of First Study Treatment",
           "RFSTDTC": "Subject Reference Start Date/Time",
           "SITEID": "Study Site Identifier", "AGE": "Age", "AGEU": "Age Units", "SEX": "Sex", "RACE": "Race",
           "ARMCD": "Planned Arm Code", "ARM": "Description of Planned Arm", "ACTARMCD": "Actual Arm Code",
           "ACTARM": "Description of Actual Arm", "ARMNRS": "Reason Arm and/or Actual Arm is Null",
           "COUNTRY": "Country", "RFPENDTC": "Date/Time of End of Participation", "DTHDTC": "Date/Time of Death",
           "DTHFL": "Subject Death Flag", "DSCAT": "Category for Disposition Event"}


def _num_text(e: pl.Expr) -> pl.Expr:
    """A number as the shortest text that reads back to the same float."""
    return e.cast(pl.String)


def _censored_stresc() -> pl.Expr:
    """A censored result's --STRESC in --STRESU: the text as given when its bound is already the
    standard one ("<50"), else the comparator and the converted bound."""
    given = pl.col("value_text").str.extract(r"([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$", 1).cast(
        pl.Float64, strict=False)
    bound = _num_text(pl.col("censor_limit")).str.replace(r"\.0$", "")
    return (pl.when(pl.col("censor").is_null() | pl.col("censor_limit").is_null()).then(None)
            .when(given == pl.col("censor_limit")).then(pl.col("value_text"))
            .otherwise(pl.concat_str(pl.col("censor"), bound)))


def _dtc(day: pl.Expr, given: pl.Expr) -> pl.Expr:
    """--DTC: the row's datetime when the subject's calendar is real and it has one, else the
    anchor + day (date only for whole days, else to the microsecond)."""
    us = (day * US_PER_DAY).round(0).cast(pl.Int64)
    dt = pl.col("__anchor") + pl.duration(microseconds=us)
    whole = (us % US_PER_DAY) == 0
    frac = (us % 1_000_000) != 0
    text = (pl.when(whole).then(dt.dt.strftime("%Y-%m-%d"))
            .when(frac).then(dt.dt.strftime("%Y-%m-%dT%H:%M:%S%.6f"))
            .otherwise(dt.dt.strftime("%Y-%m-%dT%H:%M:%S")))
    return pl.when(given.is_not_null() & ~pl.col("__nominal")).then(given).otherwise(text)


def _with_anchor(df: pl.DataFrame, anchors: pl.DataFrame) -> pl.DataFrame:
    return df.join(anchors, on="subject_id", how="left", maintain_order="left")


def _head(df: pl.DataFrame, study_id: str, dom: str) -> list[pl.Expr]:
    return [pl.lit(study_id).alias("STUDYID"), pl.lit(dom).alias("DOMAIN"), pl.col("subject_id").alias("USUBJID"),
            pl.int_range(1, df.height + 1, dtype=pl.Int64).alias(f"{dom}SEQ")]  # SDTMIG: --SEQ is an integer


def _supp(df: pl.DataFrame, study_id: str, dom: str, quals: dict[str, pl.Expr], by_seq: bool = True) -> pl.DataFrame:
    """SUPP-- records (one per non-empty qualifier; text over 200 characters split over QNAM,
    QNAM1, QNAM2 ...)."""
    parts = []
    seq = pl.int_range(1, df.height + 1, dtype=pl.Int64).cast(pl.String)
    for qnam, expr in quals.items():
        part = df.select(pl.col("subject_id").alias("USUBJID"), seq.alias("IDVARVAL"), expr.cast(pl.String).alias("QVAL"))
        part = part.filter(pl.col("QVAL").is_not_null())
        if part.height == 0:
            continue
        n = int(part.select(pl.col("QVAL").str.len_chars().max()).item() or 0)
        for k in range(max(1, -(-n // _MAX_TEXT))):
            chunk = part.select("USUBJID", "IDVARVAL", pl.col("QVAL").str.slice(k * _MAX_TEXT, _MAX_TEXT))
            chunk = chunk.filter(pl.col("QVAL") != "") if k else chunk
            parts.append(chunk.with_columns(pl.lit(qnam if k == 0 else f"{qnam}{k}").alias("QNAM")))
    if not parts:
        return pl.DataFrame()
    out = pl.concat(parts).with_columns(pl.col("IDVARVAL").cast(pl.Int64)).sort("USUBJID", "IDVARVAL", "QNAM")
    return out.select(
        pl.lit(study_id).alias("STUDYID"), pl.lit(dom).alias("RDOMAIN"), "USUBJID",
        pl.lit(f"{dom}SEQ" if by_seq else None, dtype=pl.String).alias("IDVAR"),
        (pl.col("IDVARVAL").cast(pl.String) if by_seq else pl.lit(None, dtype=pl.String)).alias("IDVARVAL"),
        "QNAM", pl.col("QNAM").alias("QLABEL"), "QVAL", pl.lit("CRF").alias("QORIG"),
    )


def _common_quals(df: pl.DataFrame) -> dict[str, pl.Expr]:
    return {"SOURCE": pl.col("source"), "SRCNOTE": pl.col("source_note"), "EXTRA": pl.col("extra")}


def _findings(obs: pl.DataFrame, study_id: str, dom: str, spec_out: dict) -> tuple[pl.DataFrame, pl.DataFrame]:
    d = load_dictionary()
    labels = {k: p.label[:40] for k, p in d.params.items()}
    df = obs
    has_num = pl.col("value").is_not_null()
    out = df.select(
        *_head(df, study_id, dom),
        pl.col("param").alias(f"{dom}TESTCD"),
        pl.col("param").replace_strict(labels, default=pl.col("param")).alias(f"{dom}TEST"),
        pl.col("analyte").alias(f"{dom}TSTDTL"),
        pl.coalesce(_num_text(pl.col("orig_value")), pl.col("value_text")).alias(f"{dom}ORRES"),
        pl.col("orig_unit").alias(f"{dom}ORRESU"),
        _num_text(pl.col("orig_lln")).alias(f"{dom}ORNRLO"),
        _num_text(pl.col("orig_uln")).alias(f"{dom}ORNRHI"),
        # a censored result in the standard unit: "<" and the converted bound ("<0.05" in 10^9/L is
        # "<50" in cells/uL; "BLQ" with an lloq of 50 is "<50"), as STRESU says
        pl.coalesce(_censored_stresc(), pl.col("value_text"), _num_text(pl.col("value"))).alias(f"{dom}STRESC"),
        pl.col("value").alias(f"{dom}STRESN"),
        pl.col("unit").replace("", None).alias(f"{dom}STRESU"),
        pl.col("lln").alias(f"{dom}STNRLO"),
        pl.col("uln").alias(f"{dom}STNRHI"),
        pl.col("lloq").alias(f"{dom}LLOQ"),
        pl.col("specimen").replace_strict(spec_out, default=pl.col("specimen")).alias(f"{dom}SPEC"),
        _dtc(pl.col("day"), pl.col("datetime")).alias(f"{dom}DTC"),
    )
    quals = {"VALTEXT": pl.when(has_num).then(pl.col("value_text")),
             "ORLLOQ": pl.when(pl.col("orig_lloq") != pl.col("lloq")).then(_num_text(pl.col("orig_lloq"))),
             **_common_quals(df)}
    return out, _supp(df, study_id, dom, quals)


def _events(ev: pl.DataFrame, study_id: str, dom: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    term = pl.coalesce(pl.col("detail"), pl.col("event").str.to_uppercase() if dom == "DS" else pl.col("event"))
    out = ev.select(
        *_head(ev, study_id, dom),
        term.alias(f"{dom}TERM"),
        pl.col("event").str.to_uppercase().alias(f"{dom}DECOD"),
        *([pl.lit("DISPOSITION EVENT").alias("DSCAT")] if dom == "DS" else []),  # SDTMIG DS: DSCAT (Exp)
        _dtc(pl.col("day"), pl.col("datetime")).alias(f"{dom}STDTC"),
    )
    return out, _supp(ev, study_id, dom, {"ATTRIB": pl.col("attribution"), **_common_quals(ev)})


#: ARMNRS when neither an arm nor a target is stated (SDTMIG 3.4 DM: ARMNRS "Reason Arm and/or Actual Arm
#: is Null", codelist ARMNULRS; a null ARMCD needs a reason). The study folder cannot say why: the DM
#: writer warns whenever it writes this
ARM_NOT_STATED = "NOT ASSIGNED"


def _extra_key(key: str) -> pl.Expr:
    """The value of ``key`` in the subject's ``extra`` JSON (a study-folder column such as ``site``,
    or what read_sdtm kept from DM.SITEID / RACE / ARM); null when absent or blank."""
    v = pl.col("extra").cast(pl.String).str.json_path_match(f"$.{key}").str.strip_chars()
    return pl.when(v != "").then(v).otherwise(None)


def _treated(study: Study) -> pl.DataFrame:
    """subject_id and ``__treated`` (True: the subject has a CAR-T dose row)."""
    from cartlab.kinetics.agents import car_t_agent_expr

    return (study.doses.filter(car_t_agent_expr(pl.col("agent"))).select("subject_id").unique()
            .with_columns(pl.lit(True).alias("__treated")))


def dm_arms() -> list[pl.Expr]:
    """DM ARMCD, ARM, ACTARMCD, ACTARM, ARMNRS (SDTMIG 3.4 DM) of a subjects frame with ``extra``,
    ``target`` and ``__treated``.

    ARM: the arm the study states (``extra`` arm: a study-folder column or a DM.ARM read by
    read_sdtm), else ``<target> CAR-T`` (the product's target antigen: "CD19 CAR-T"), the rule of the
    ADaM ADSL.ARM; ARMCD: ARM in upper case, letters and digits only, at most 20 characters
    ("CD19CART"). ACTARM / ACTARMCD = ARM / ARMCD when the subject has a CAR-T dose row, else empty
    (no dose recorded is not "not treated"). ARMNRS = :data:`ARM_NOT_STATED` when ARM is empty."""
    target = pl.col("target").cast(pl.String).str.strip_chars()
    arm = pl.coalesce(_extra_key("arm"), pl.when(target.is_not_null() & (target != "")).then(target + pl.lit(" CAR-T")))
    code = arm.str.to_uppercase().str.replace_all(r"[^A-Z0-9]", "").str.slice(0, 20)
    code = pl.when(code != "").then(code)
    treated = pl.col("__treated")
    return [code.alias("ARMCD"), arm.alias("ARM"), pl.when(treated).then(code).alias("ACTARMCD"),
            pl.when(treated).then(arm).alias("ACTARM"),
            pl.when(arm.is_null()).then(pl.lit(ARM_NOT_STATED)).alias("ARMNRS")]


def _warn_dm(dm: pl.DataFrame) -> None:
    """One warning naming the DM variables SDTMIG 3.4 requires or expects that are empty, and why."""
    n = dm.height
    parts = []
    for var, why in (("SITEID", "no site stated (subjects column 'site' / DM.SITEID); SDTMIG 3.4 DM: SITEID is Req"),
                     ("COUNTRY", "no country stated (subjects column 'country'); SDTMIG 3.4 DM: COUNTRY is Req")):
        k = dm[var].null_count()
        if k:
            parts.append(f"{var} empty for {k} of {n} subject(s): {why}")
    k = dm["ARM"].null_count()
    if k:
        parts.append(f"ARM/ARMCD empty for {k} of {n} subject(s) (no arm and no target stated): ARMNRS written as "
                     f"{ARM_NOT_STATED!r} because SDTMIG 3.4 needs a reason, though the study does not say the "
                     "subject was unassigned")
    k = (dm["ARM"].is_not_null() & dm["ACTARM"].is_null()).sum()
    if k:
        parts.append(f"ACTARM/ACTARMCD empty for {k} of {n} subject(s): no CAR-T dose row (not read as 'not treated')")
    codes = dm.drop_nulls("ARMCD").group_by("ARMCD").agg(pl.col("ARM").unique()).filter(pl.col("ARM").list.len() > 1)
    for code, arms in codes.iter_rows():
        parts.append(f"ARMCD {code} stands for {len(arms)} arms ({'; '.join(sorted(arms))}): state distinct arms")
    if parts:
        warnings.warn("write_sdtm DM: " + "; ".join(parts), CartlabWarning, stacklevel=3)


def sdtm_frames(study: Study, anchor_date: str = "2000-01-01") -> dict[str, pl.DataFrame]:
    """The SDTM-like domains of ``study`` (domain name -> frame), as :func:`write_sdtm` writes them."""
    try:
        nominal = date.fromisoformat(anchor_date)
    except ValueError as exc:
        raise InputError(f"anchor_date must be an ISO date (YYYY-MM-DD), not {anchor_date!r}") from exc
    m = load_mapping()
    sid = study.study_id
    subj = study.subjects
    real = pl.coalesce(pl.col("infusion_date"), pl.col("infusion_datetime").str.slice(0, 10)).str.to_date(
        "%Y-%m-%d", strict=False)
    anchors = subj.select(
        "subject_id", pl.coalesce(real, pl.lit(nominal)).cast(pl.Datetime("us")).alias("__anchor"),
        real.is_null().alias("__nominal"),
    )
    # subjects found only in other tables get a nominal anchor too
    others = [t["subject_id"] for t in (study.doses, study.observations, study.interventions, study.events)]
    extra_ids = pl.concat(others).unique(maintain_order=True) if others else pl.Series([], dtype=pl.String)
    extra_ids = extra_ids.filter(~extra_ids.is_in(subj["subject_id"].implode()))
    if extra_ids.len():
        raise InputError(f"subjects {extra_ids.head(5).to_list()} are not in the subjects table; SDTM needs them in DM")
    out: dict[str, pl.DataFrame] = {}
    s = _with_anchor(subj, anchors)
    s = s.join(_treated(study), on="subject_id", how="left").with_columns(pl.col("__treated").fill_null(False))
    # SDTMIG DM: RFXSTDTC is the first exposure to any study treatment (the earliest EXSTDTC: often the
    # lymphodepletion); RFSTDTC, the sponsor-defined reference start, is cartlab's day 0 (the first CAR-T
    # infusion), also in SUPPDM DAY0DTC, which read_sdtm uses when EX has no CAR-T exposure
    if study.doses.height:
        first_ex = _with_anchor(study.doses, anchors).select(
            "subject_id", _dtc(pl.col("day"), pl.col("datetime")).alias("__exdtc")).group_by("subject_id").agg(
            pl.col("__exdtc").min().alias("__rfx"))  # ISO 8601 text: the earliest sorts first
        s = s.join(first_ex, on="subject_id", how="left", maintain_order="left")
    else:
        s = s.with_columns(pl.lit(None, dtype=pl.String).alias("__rfx"))
    s = s.with_columns(pl.col("__anchor").dt.strftime("%Y-%m-%d").alias("__day0"))
    # SDTMIG DM: DTHFL / DTHDTC (Exp) state a death in DM too (the CDISC all-cause death example: DS, AE
    # "and DTHFL and DTHDTC ... in DM"); the first death event of the subject (review38 C2)
    dth = study.events.filter((pl.col("event") == "death") & pl.col("day").is_not_null()).sort("subject_id", "day")
    dth = dth.group_by("subject_id", maintain_order=True).first().select(
        "subject_id", pl.col("day").alias("__dthday"), pl.col("datetime").alias("__dthdt"))
    s = s.join(dth, on="subject_id", how="left", maintain_order="left")
    out["DM"] = s.select(
        pl.lit(sid).alias("STUDYID"), pl.lit("DM").alias("DOMAIN"), pl.col("subject_id").alias("USUBJID"),
        pl.col("subject_id").alias("SUBJID"), pl.col("__day0").alias("RFSTDTC"), pl.col("__rfx").alias("RFXSTDTC"),
        # RFPENDTC: the end of participation, the last day followed (SUPPDM LFUPDY keeps the exact day)
        pl.when(pl.col("last_followup_day").is_not_null()).then(
            _dtc(pl.col("last_followup_day").cast(pl.Float64), pl.lit(None, dtype=pl.String))).alias("RFPENDTC"),
        pl.when(pl.col("__dthday").is_not_null()).then(_dtc(pl.col("__dthday"), pl.col("__dthdt"))).alias("DTHDTC"),
        pl.when(pl.col("__dthday").is_not_null()).then(pl.lit("Y")).alias("DTHFL"),
        _extra_key("site").alias("SITEID"),
        pl.col("age_years").alias("AGE"), pl.when(pl.col("age_years").is_not_null()).then(pl.lit("YEARS")).alias("AGEU"),
        pl.col("sex").alias("SEX"), _extra_key("race").alias("RACE"), *dm_arms(), _extra_key("country").alias("COUNTRY"),
    )
    _warn_dm(out["DM"])
    out["SUPPDM"] = _supp(s, sid, "DM", {
        "WEIGHTKG": _num_text(pl.col("weight_kg")), "HEIGHTCM": _num_text(pl.col("height_cm")),
        "DISEASE": pl.col("disease"), "TARGET": pl.col("target"),
        "LFUPDY": _num_text(pl.col("last_followup_day")), "INFDTM": pl.col("infusion_datetime"),
        "NOMANCH": pl.when(pl.col("__nominal")).then(pl.lit("Y")), "DAY0DTC": pl.col("__day0"),
        **_common_quals(s)}, by_seq=False)
    if study.doses.height:
        back = {}
        for k, v in m.ex_agents.items():
            back.setdefault(v, k)
        d = _with_anchor(study.doses, anchors)
        out["EX"] = d.select(
            *_head(d, sid, "EX"), pl.col("agent").replace_strict(back, default=pl.col("agent")).alias("EXTRT"),
            pl.col("orig_dose").alias("EXDOSE"), pl.col("orig_unit").alias("EXDOSU"),
            _dtc(pl.col("day"), pl.col("datetime")).alias("EXSTDTC"),
        )
        out["SUPPEX"] = _supp(d, sid, "EX", _common_quals(d))
    if study.interventions.height:
        c = _with_anchor(study.interventions, anchors)
        out["CM"] = c.select(
            *_head(c, sid, "CM"), pl.coalesce(pl.col("agent"), pl.col("category")).alias("CMTRT"),
            pl.col("category").str.to_uppercase().alias("CMCAT"), pl.col("indication").alias("CMINDC"),
            pl.col("dose").alias("CMDOSE"), pl.col("dose_unit").alias("CMDOSU"),
            _dtc(pl.col("start_day"), pl.col("start_datetime")).alias("CMSTDTC"),
            pl.when(pl.col("end_day").is_not_null()).then(_dtc(pl.col("end_day"), pl.col("end_datetime"))).alias("CMENDTC"),
        )
        out["SUPPCM"] = _supp(c, sid, "CM", {
            "O2DEV": pl.col("o2_device"), "O2FLOW": _num_text(pl.col("o2_flow_lpm")), "FIO2": _num_text(pl.col("fio2")),
            "AGENT": pl.col("agent"), "NOAGENT": pl.when(pl.col("agent").is_null()).then(pl.lit("Y")),
            **_common_quals(c)})
    obs = _with_anchor(study.observations, anchors)
    groups = {k: p.group for k, p in load_dictionary().params.items()}
    obs = obs.with_columns(pl.col("param").replace_strict(groups, default="").replace_strict(
        _DOMAIN_OF_GROUP, default="LB").alias("__dom"))
    for dom in ("LB", "VS", "QS", "PC"):
        part = obs.filter(pl.col("__dom") == dom)
        if part.height:
            out[dom], out[f"SUPP{dom}"] = _findings(part, sid, dom, m.specimen_out)
    ev = _with_anchor(study.events, anchors)
    for dom, sel in (("DS", pl.col("event") == "death"), ("CE", pl.col("event") != "death")):
        part = ev.filter(sel)
        if part.height:
            out[dom], out[f"SUPP{dom}"] = _events(part, sid, dom)
    return {k: v for k, v in out.items() if v.width}


def _write_xpt(df: pl.DataFrame, path: Path, dom: str) -> None:
    import pyreadstat

    pdf = df.to_pandas()
    labels = [_LABELS.get(c, c)[:40] for c in df.columns]
    pyreadstat.write_xport(pdf, str(path), table_name=dom, file_format_version=5, column_labels=labels)


#: XPT v5 text is ASCII (the transport format has no encoding field; a SAS session reads bytes in its own
#: encoding): these characters are spelled in ASCII, then accents are dropped (NFKD, combining marks
#: removed: é -> e, ü -> u); any other non-ASCII character is an error naming the row and column
ASCII_SPELLING = ((r"°\s*([CF])\b", "$1"), ("°", " deg"), ("[µμ]", "u"), ("≥", ">="), ("≤", "<="),
                  ("[—–−]", "-"), ("[‘’]", "'"), ("[“”]", '"'), ("×", "x"), ("\u00a0", " "))


def ascii_study(study: Study) -> Study:
    """``study`` with its text in ASCII for XPT v5 (:data:`ASCII_SPELLING`); a warning names each table
    and column changed and its rows; a character with no ASCII spelling is an InputError."""
    import dataclasses

    from cartlab.model import TABLES

    changed, tables = [], {}
    for t in TABLES:
        df = study.table(t)
        cols = [c for c, dt in df.schema.items() if dt == pl.String and c not in PROVENANCE_COLUMNS]
        exprs = []
        for c in cols:
            e = pl.col(c)
            for pat, rep in ASCII_SPELLING:
                e = e.str.replace_all(pat, rep)
            exprs.append(e.str.normalize("NFKD").str.replace_all(r"\p{M}", "").alias(c))
        new = df.with_columns(exprs) if exprs else df
        for c in cols:
            rows = (pl.int_range(1, df.height + 1, eager=True).filter(df[c].ne_missing(new[c]))).to_list()
            if rows:
                changed.append(f"{t}.{c} rows {', '.join(map(str, rows[:5]))}{' ...' if len(rows) > 5 else ''}")
            bad = new.with_row_index("__i", 1).filter(pl.col(c).str.contains(r"[^\x00-\x7F]"))
            if bad.height:
                i, v = bad["__i"][0], bad[c][0]
                ch = next(x for x in v if ord(x) > 127)
                raise InputError(f"{t} row {i}, column {c}: {df[c][i - 1]!r} has a character with no ASCII spelling "
                                 f"({ch!r}, U+{ord(ch):04X}); SAS V5 transport (XPT) text is ASCII: write CSV, or "
                                 "replace the character")
        tables[t] = new
    if changed:
        warnings.warn("write_sdtm xpt: text spelled in ASCII (XPT v5 has no encoding; docs/interop/sdtm.md): "
                      + "; ".join(changed), CartlabWarning, stacklevel=3)
    return dataclasses.replace(study, **tables)


def write_sdtm(study: Study, folder: str | Path, fmt: str = "csv", *, anchor_date: str = "2000-01-01") -> Path:
    """Write ``study`` as SDTM-like domain files (``fmt`` = ``csv`` or ``xpt``) into ``folder``;
    nothing is written unless every file is complete. CSV is UTF-8; XPT text is ASCII
    (:func:`ascii_study`), so the 200-character limit is also 200 bytes. Returns the folder."""
    if fmt not in ("csv", "xpt"):
        raise InputError(f"fmt must be 'csv' or 'xpt', not {fmt!r}")
    frames = sdtm_frames(ascii_study(study) if fmt == "xpt" else study, anchor_date)
    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        for dom, df in frames.items():
            path = tmp / f"{dom.lower()}.{fmt}"
            if fmt == "csv":
                df.write_csv(path)
            else:
                _write_xpt(df, path, dom)
    return folder
