"""ADaM datasets from one :class:`cartlab.analyze.Analysis` (its tables, never the engines re-run).

Conventions (docs/interop/adam.md):

* **Two days.** ``ADY``/``ASTDY``/``AENDY`` are CDISC study days without a day 0 (day 1 = infusion
  day: ``floor(d) + 1`` for ``d >= 0``, ``floor(d)`` before; admiral ``derive_var_ady``);
  ``ARELDY``/``ASTRLDY``/``AENRLDY``/``STARTRDY`` keep cartlab's infusion-relative day (day 0 =
  infusion, fractions kept).
* **Dates** are SAS numbers (days, or seconds for ``*DTM``, since 1960-01-01) and exist only when the
  subject has an ``infusion_date``/``infusion_datetime``: ``ADT = TRTSDT + floor(ARELDY)``. The seed
  and synthetic studies have days only, so their dates are empty.
* ``USUBJID`` = cartlab ``subject_id`` (the key of every analysis table).
* **Provenance.** ``DATASRC`` carries the study rows' ``source`` label (paper, reconstructed,
  synthetic, simulated ...) of every record: the row itself (ADVS) or the rows in its evidence;
  ADSL has the subject's labels and ``NMEASFL`` (Y when any of its rows was not measured).
"""

from __future__ import annotations

import datetime as _dt

import polars as pl

from cartlab.errors import EngineError, InputError
from cartlab.io.clock import parse_wall_clock
from cartlab.io.dictionary import load_dictionary
from cartlab.model import NOT_MEASURED_SOURCES
from cartlab.provenance import evidence_ref

__all__ = ["BUILDERS", "build_available", "build_datasets", "cdisc_day", "evidence_text"]

_EPOCH = _dt.date(1960, 1, 1)
_EPOCH_DT = _dt.datetime(1960, 1, 1)
EVIDENCE_MAX = 200


def cdisc_day(day: pl.Expr) -> pl.Expr:
    """CDISC study day (no day 0) of an infusion-relative day: 0 -> 1, 14 -> 15, -1 -> -1, 2.5 -> 3."""
    d = day.floor()
    return pl.when(d >= 0).then(d + 1).otherwise(d).cast(pl.Int64)


def evidence_text(refs: pl.Expr) -> pl.Expr:
    """A ``list[str]`` of ``file:row`` references as one text of at most 200 characters: joined by
    ``"; "``; a longer list keeps whole references and ends ``" (+N more)"``."""
    joined = refs.list.join("; ")
    return pl.when(joined.str.len_chars() <= EVIDENCE_MAX).then(joined).otherwise(
        refs.map_elements(_cut_refs, return_dtype=pl.String))


def _cut_refs(refs) -> str:
    refs = [r for r in refs if r is not None]
    for k in range(len(refs), -1, -1):
        text = "; ".join(refs[:k]) + f" (+{len(refs) - k} more)"
        if len(text) <= EVIDENCE_MAX:
            return text
    return f"(+{len(refs)} more)"  # pragma: no cover - a single reference is never 190 characters


def _label(col: str = "source") -> pl.Expr:
    """A ``source`` label in lower case, null when blank."""
    s = pl.col(col).cast(pl.String).str.strip_chars().str.to_lowercase()
    return pl.when(s == "").then(None).otherwise(s)


def _sources(study) -> pl.DataFrame:
    """``_ref`` ("file:row"), ``subject_id`` and ``_src`` (the source label) of every study row."""
    parts = [t.select(evidence_ref().alias("_ref"), pl.col("subject_id").cast(pl.String), _label().alias("_src"))
             for t in study.tables().values() if {"src_file", "src_row", "source", "subject_id"} <= set(t.columns)]
    schema = {"_ref": pl.String, "subject_id": pl.String, "_src": pl.String}
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


def _datasrc(frame: pl.DataFrame, evidence: str, study) -> pl.Series:
    """DATASRC of each row of ``frame``: the distinct source labels of its evidence rows, sorted and
    joined by "; " (null when none of them carries a label)."""
    lookup = _sources(study).drop_nulls(["_ref", "_src"]).unique("_ref", keep="first").select("_ref", "_src")
    f = frame.select(pl.col(evidence).cast(pl.List(pl.String)).alias("_ref")).with_row_index("_i")
    got = (f.explode("_ref").join(lookup, on="_ref", how="inner")
           .group_by("_i").agg(pl.col("_src").unique().sort().str.join("; ").alias("DATASRC")))
    return f.select("_i").join(got, on="_i", how="left", maintain_order="left")["DATASRC"]


def _subject_sources(study) -> pl.DataFrame:
    """USUBJID, DATASRC (every label of the subject's rows) and NMEASFL (Y: any row not measured)."""
    src = _sources(study).drop_nulls("_src")
    return src.group_by("subject_id").agg(
        pl.col("_src").unique().sort().str.join("; ").alias("DATASRC"),
        pl.col("_src").is_in(list(NOT_MEASURED_SOURCES)).any().alias("_nm"),
    ).select(pl.col("subject_id").alias("USUBJID"), "DATASRC", "_nm")


def _flag(col: str) -> pl.Expr:
    """Boolean -> Y / N, null stays null (not assessed is not negative)."""
    return pl.when(pl.col(col)).then(pl.lit("Y")).when(pl.col(col).not_()).then(pl.lit("N")).otherwise(None)


def _grade_text(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.Int64).cast(pl.String)


def _study_dates(study) -> pl.DataFrame:
    """USUBJID, TRTSDT (SAS date), TRTSDTM (SAS datetime) from the subjects' infusion date/datetime."""
    s = study.subjects
    for c in ("infusion_date", "infusion_datetime"):
        if c not in s.columns:
            s = s.with_columns(pl.lit(None, dtype=pl.String).alias(c))
    rows = []
    for i, (sid, d, dtm) in enumerate(s.select("subject_id", "infusion_date", "infusion_datetime").iter_rows(), 1):
        date = when = None
        try:
            if dtm:
                when = parse_wall_clock(str(dtm))  # the clock as written (cartlab.io.clock)
            if d:
                date = _dt.date.fromisoformat(str(d)[:10])
            elif when is not None:
                date = when.date()
        except ValueError as exc:
            raise InputError(f"subjects: row {i} (subject {sid}): infusion date {d or dtm!r} is not an ISO 8601 "
                             f"date: {exc}") from None
        rows.append((sid, None if date is None else (date - _EPOCH).days,
                     None if when is None else (when - _EPOCH_DT).total_seconds()))
    return pl.DataFrame(rows, schema={"USUBJID": pl.String, "TRTSDT": pl.Int64, "TRTSDTM": pl.Float64}, orient="row")


def _with_dates(frame: pl.DataFrame, dates: pl.DataFrame, **targets: str) -> pl.DataFrame:
    """Add ``<target> = TRTSDT + floor(<relative day column>)`` for each target=column."""
    f = frame.join(dates.select("USUBJID", "TRTSDT"), on="USUBJID", how="left", maintain_order="left")
    return f.with_columns(
        (pl.col("TRTSDT") + pl.col(src).floor().cast(pl.Int64)).alias(tgt) for tgt, src in targets.items()
    ).drop("TRTSDT")


def _params() -> pl.DataFrame:
    d = load_dictionary()
    return pl.DataFrame({"_code": d.codes(), "_label": [d[c].label for c in d.codes()],
                         "_group": [d[c].group for c in d.codes()]})


def _param_label(unit: str) -> pl.Expr:
    return pl.when(pl.col(unit).is_not_null() & (pl.col(unit) != "")).then(
        pl.format("{} ({})", pl.col("_label"), pl.col(unit))).otherwise(pl.col("_label"))


def _stated(key: str) -> pl.Expr:
    """A subject attribute the study states outside the canonical columns: the ``key`` of
    subjects.extra (a study folder's extra column such as ``site``; the SDTM reader puts DM.SITEID,
    DM.RACE and DM.ARM there as ``site``, ``race``, ``arm``); null when not stated or blank."""
    if key not in _EXTRA_KEYS:  # pragma: no cover - a programming error
        raise ValueError(key)
    v = pl.col("extra").cast(pl.String).str.json_path_match(f"$.{key}").str.strip_chars()
    return pl.when(v != "").then(v).otherwise(None)


_EXTRA_KEYS = ("site", "race", "arm")


def _planned_arm() -> pl.Expr:
    """ARM / TRT01P: the arm the study states (extra ``arm``: SDTM DM.ARM or a study-folder ``arm``
    column); else, when subjects.target names the product's target antigen, ``<target> CAR-T``; else
    empty (no planned treatment is invented from the doses given: those are TRT01A)."""
    target = pl.col("target").cast(pl.String).str.strip_chars()
    from_target = pl.when(target.is_not_null() & (target != "")).then(target + pl.lit(" CAR-T"))
    return pl.coalesce(_stated("arm"), from_target)


def adsl(analysis, dates: pl.DataFrame) -> pl.DataFrame:
    from cartlab.kinetics.agents import car_t_agent_expr

    study = analysis.study
    s = study.subjects
    car = (study.doses.filter(car_t_agent_expr(pl.col("agent"))).sort(["subject_id", "day"], nulls_last=True)
           .group_by("subject_id", maintain_order=True).first().select("subject_id", pl.col("agent").alias("TRT01A")))
    ev = study.events
    dead = ev.filter(pl.col("event") == "death").select("subject_id").unique().with_columns(pl.lit("Y").alias("DTHFL"))
    summ = analysis.subject_summary().select(
        "subject_id", pl.col("crs_grade_astct").alias("CRSGRMX"), pl.col("crs_onset_day").alias("CRSONRDY"),
        pl.col("icans_grade_astct").alias("ICNSGRMX"), pl.col("icaht_early_grade").alias("ICAHTEGR"),
        pl.col("icaht_late_grade").alias("ICAHTLGR"))
    best = (analysis.table("best_response") if analysis.has("best_response")  # else empty: build_available says why
            else pl.DataFrame(schema={"subject_id": pl.String, "best_response": pl.String, "criteria": pl.String,
                                      "best_response_day": pl.Float64, "mrd_negative": pl.Boolean})).select(
        "subject_id", pl.col("best_response").alias("BOR"), pl.col("criteria").alias("BORCRIT"),
        pl.col("best_response_day").alias("BORRDY"), _flag("mrd_negative").alias("MRDNEGFL"))
    f = s.select(
        pl.lit(study.study_id).alias("STUDYID"), pl.col("subject_id").alias("USUBJID"),
        pl.col("subject_id").alias("SUBJID"), _stated("site").alias("SITEID"), pl.col("age_years").alias("AGE"),
        pl.when(pl.col("age_years").is_not_null()).then(pl.lit("YEARS")).otherwise(None).alias("AGEU"),
        pl.col("sex").alias("SEX"), _stated("race").alias("RACE"), _planned_arm().alias("ARM"),
        _planned_arm().alias("TRT01P"), pl.col("disease").alias("DISEASE"), pl.col("target").alias("TARGET"),
        pl.col("weight_kg").alias("WEIGHTBL"), pl.col("height_cm").alias("HEIGHTBL"),
        pl.lit("Y").alias("ITTFL"), pl.col("last_followup_day").alias("LSTFURDY"), "subject_id",
    )
    for other in (car, dead, summ, best):
        f = f.join(other, on="subject_id", how="left", maintain_order="left")
    f = f.join(dates, on="USUBJID", how="left", maintain_order="left")
    f = f.join(_subject_sources(study), on="USUBJID", how="left", maintain_order="left")
    return f.with_columns(pl.when(pl.col("TRT01A").is_not_null()).then(pl.lit("Y")).otherwise(None).alias("SAFFL"),
                          pl.when(pl.col("_nm").fill_null(False)).then(pl.lit("Y")).otherwise(pl.lit("N")).alias("NMEASFL"))


def adlb(analysis, dates: pl.DataFrame) -> pl.DataFrame:
    t = analysis.table("adlb").join(_params(), left_on="param", right_on="_code", how="left", maintain_order="left")
    t = t.with_columns(_datasrc(t, "evidence", analysis.study).alias("DATASRC"))
    f = t.select(
        pl.lit(analysis.study.study_id).alias("STUDYID"), pl.col("subject_id").alias("USUBJID"),
        pl.col("param").alias("PARAMCD"), _param_label("AVALU").alias("PARAM"), pl.col("_group").alias("PARCAT1"),
        "AVAL", "AVALU", pl.col("DTYPE").cast(pl.String).alias("DTYPE"), cdisc_day(pl.col("day")).alias("ADY"),
        pl.col("day").alias("ARELDY"), "ABLFL", "BASE", (pl.col("AVAL") - pl.col("BASE")).alias("CHG"), "PCHG", "ANRLO", "ANRHI", "BNRIND",
        "ATOXDSCL", _grade_text("ATOXGRL").alias("ATOXGRL"), "ATOXDSCH", _grade_text("ATOXGRH").alias("ATOXGRH"),
        _grade_text("ATOXGR").alias("ATOXGR"), pl.col("ATOXGR").alias("ATOXGRN"),
        _grade_text("BTOXGR").alias("BTOXGR"), pl.col("rule").cast(pl.String).alias("RULE"),
        pl.col("rule_status").cast(pl.String).alias("RULESTAT"), pl.col("grade_reason").cast(pl.String).alias("REASON"),
        "DATASRC", evidence_text(pl.col("evidence")).alias("EVIDENCE"),
    )
    return _with_dates(f, dates, ADT="ARELDY")


def advs(analysis, dates: pl.DataFrame) -> pl.DataFrame:
    """Vital signs (dictionary group ``vital``) from the study's observations, baseline by the
    analysis' CTCAE baseline options (the rule ADLB uses)."""
    from cartlab.grading.ctcae_options import CtcaeOptions

    opts = analysis.options.ctcae or CtcaeOptions()
    params = _params().filter(pl.col("_group") == "vital")
    obs = analysis.study.observations
    f = (obs.with_row_index("_obs").filter(pl.col("param").is_in(params["_code"].implode()))
         .join(params, left_on="param", right_on="_code", how="left")
         .sort(["subject_id", "param", "day", "_obs"], nulls_last=True))
    before = pl.col("day") <= opts.baseline_day if opts.baseline_inclusive else pl.col("day") < opts.baseline_day
    base = (f.filter(before & pl.col("value").is_not_null()).group_by(["subject_id", "param"], maintain_order=True)
            .last().select("subject_id", "param", pl.col("value").alias("BASE"), pl.col("_obs").alias("_bobs")))
    f = f.join(base, on=["subject_id", "param"], how="left", maintain_order="left")
    out = f.select(
        pl.lit(analysis.study.study_id).alias("STUDYID"), pl.col("subject_id").alias("USUBJID"),
        pl.col("param").alias("PARAMCD"), _param_label("unit").alias("PARAM"), pl.col("value").alias("AVAL"),
        pl.col("unit").alias("AVALU"), cdisc_day(pl.col("day")).alias("ADY"), pl.col("day").alias("ARELDY"),
        pl.when(pl.col("_obs") == pl.col("_bobs")).then(pl.lit("Y")).otherwise(None).alias("ABLFL"),
        "BASE", (pl.col("value") - pl.col("BASE")).alias("CHG"),
        pl.when(pl.col("BASE").is_not_null() & (pl.col("BASE") != 0))
        .then((pl.col("value") - pl.col("BASE")) / pl.col("BASE") * 100).otherwise(None).alias("PCHG"),
        _label().alias("DATASRC"), evidence_ref().alias("EVIDENCE"),
    )
    return _with_dates(out, dates, ADT="ARELDY")


def _rule_cols(rule: str, status: str, reason: str, evidence: str) -> list[pl.Expr]:
    return [pl.col(rule).cast(pl.String).alias("RULE"), pl.col(status).cast(pl.String).alias("RULESTAT"),
            pl.col(reason).cast(pl.String).alias("REASON"), "DATASRC", evidence_text(pl.col(evidence)).alias("EVIDENCE")]


def _table(analysis, name: str, evidence: str) -> pl.DataFrame:
    """An analysis table with DATASRC from its ``evidence`` column."""
    t = analysis.table(name)
    return t.with_columns(_datasrc(t, evidence, analysis.study).alias("DATASRC"))


def adae(analysis, dates: pl.DataFrame) -> pl.DataFrame:
    t = _table(analysis, "adae_toxicity", "EVIDENCE")
    f = t.select(
        pl.lit(analysis.study.study_id).alias("STUDYID"), "USUBJID", "AESEQ", "AETERM",
        cdisc_day(pl.col("ASTDY")).alias("ASTDY"), cdisc_day(pl.col("AENDY")).alias("AENDY"),
        pl.col("ASTDY").cast(pl.Float64).alias("ASTRLDY"), pl.col("AENDY").cast(pl.Float64).alias("AENRLDY"),
        "ADURN", "ADURU", _grade_text("ATOXGR").alias("ATOXGR"), pl.col("ATOXGR").alias("ATOXGRN"), "ATOXGRS",
        *_rule_cols("RULE", "RULESTAT", "REASON", "EVIDENCE"),
    )
    return _with_dates(f, dates, ASTDT="ASTRLDY", AENDT="AENRLDY")


def adrs(analysis, dates: pl.DataFrame) -> pl.DataFrame:
    t = _table(analysis, "adrs", "EVIDENCE")
    f = t.select(
        pl.lit(analysis.study.study_id).alias("STUDYID"), "USUBJID", "PARAMCD", "PARAM", "AVALC",
        cdisc_day(pl.col("ADY")).alias("ADY"), pl.col("ADY").alias("ARELDY"), "CRIT", "RSSCAT",
        _flag("MRDNEG").alias("MRDNEGFL"), *_rule_cols("RULE", "RULESTAT", "REASON", "EVIDENCE"),
    )
    return _with_dates(f, dates, ADT="ARELDY")


def adtte(analysis, dates: pl.DataFrame) -> pl.DataFrame:
    t = _table(analysis, "adtte", "evidence")
    f = t.select(
        pl.lit(analysis.study.study_id).alias("STUDYID"), pl.col("subject_id").alias("USUBJID"), "PARAMCD", "PARAM",
        pl.col("ANLFL").alias("ANL01FL"), "AVAL", "AVALU",
        # a competing event (CIR: death without relapse, EVENT 2) is CNSR 2, not 0: ADaM has no EVENT
        # variable, and CNSR 0 would make it a relapse for anyone reading CNSR as the event indicator
        pl.when(pl.col("EVENT") == 2).then(pl.lit(2, dtype=pl.Int64)).otherwise(pl.col("CNSR")).alias("CNSR"),
        pl.col("STARTDY").alias("STARTRDY"),
        cdisc_day(pl.col("ADY")).alias("ADY"), pl.col("ADY").alias("ARELDY"), "EVNTDESC", "CNSDTDSC", "SRCDOM",
        *_rule_cols("rule", "rule_status", "reason", "evidence"),
    )
    return _with_dates(f, dates, STARTDT="STARTRDY", ADT="ARELDY")


def adpc(analysis, dates: pl.DataFrame) -> pl.DataFrame:
    t = _table(analysis, "adpc", "EVIDENCE")
    f = t.select(
        pl.lit(analysis.study.study_id).alias("STUDYID"), "USUBJID", "PARAMCD", "AVAL", "AVALU", "AVALC", "BLQFL",
        cdisc_day(pl.col("ADY")).alias("ADY"), pl.col("ADY").alias("ARELDY"), "AFRLT", "ARRLT", "NFRLT", "DTYPE",
        "DATASRC", evidence_text(pl.col("EVIDENCE")).alias("EVIDENCE"),
    )
    return _with_dates(f, dates, ADT="ARELDY")


def adpp(analysis, dates: pl.DataFrame) -> pl.DataFrame:
    t = _table(analysis, "adpp", "EVIDENCE")
    return t.select(
        pl.lit(analysis.study.study_id).alias("STUDYID"), "USUBJID", pl.col("PPTESTCD").alias("PARAMCD"),
        pl.col("PPTEST").alias("PARAM"), pl.col("PARAMCD").alias("PARCAT1"), "AVAL", "PPSTINT", "PPENINT", "METHOD",
        "DATASRC", evidence_text(pl.col("EVIDENCE")).alias("EVIDENCE"),
    )


#: dataset name -> builder(analysis, dates) -> frame (columns named as in adam_spec.yaml)
BUILDERS = {"ADSL": adsl, "ADLB": adlb, "ADVS": advs, "ADAE": adae, "ADRS": adrs, "ADTTE": adtte,
            "ADPC": adpc, "ADPP": adpp}


#: analysis tables a dataset uses only in part: without one, the dataset is written with these variables empty
PARTS = {"ADSL": (("best_response", "BOR, BORCRIT, BORRDY, MRDNEGFL"),)}


def build_datasets(analysis, names: list[str] | None = None) -> dict[str, pl.DataFrame]:
    """The raw ADaM frames (before the spec's types, ASCII and length rules) of ``names`` (all); an
    :class:`EngineError` when an analysis table one of them needs is not available."""
    return build_available(analysis, names, strict=True)[0]


def build_available(analysis, names: list[str] | None = None, *, strict: bool = False
                    ) -> tuple[dict[str, pl.DataFrame], dict[str, str], list[str]]:
    """The raw frames of the datasets that can be built, ``{dataset: why not}`` for the others (an
    analysis table they need could not be derived) and notes on datasets built with variables left
    empty (:data:`PARTS`). ``strict``: the first of these is an :class:`EngineError` instead."""
    dates = _study_dates(analysis.study)
    frames: dict[str, pl.DataFrame] = {}
    not_built: dict[str, str] = {}
    notes: list[str] = []
    for n in names or list(BUILDERS):
        for table, variables in PARTS.get(n, ()):
            if not analysis.has(table):
                why = next((s.reason for s in analysis.skipped if table in s.tables), "it could not be derived")
                if strict:
                    raise EngineError(f"{n}: table {table!r} is not available: {why}")
                notes.append(f"{n}: {variables} left empty (table {table!r} is not available: {why})")
        try:
            frames[n] = BUILDERS[n](analysis, dates)
        except EngineError as exc:  # an analysis table the dataset is built from could not be derived
            if strict:
                raise
            not_built[n] = str(exc)
    return frames, not_built, notes
