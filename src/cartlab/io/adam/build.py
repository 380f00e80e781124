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
* **Treatment.** One period: ADSL TRT01P (the stated arm, else ``<target> CAR-T``, else empty),
  TRT01A (= TRT01P when a CAR-T dose row exists, option adam.trt01a; io/adam/exposure.py), TRTEDT (date of the last CAR-T dose row); every
  record-level dataset carries them as TRTP / TRTA (ADaMIG BDS: at least one treatment variable).
* **Terms and units as data** (``adam_terms.yaml``): ADAE AEDECOD/AEBODSYS of the reported term,
  ADPP parameter units; a term or parameter not listed stays uncoded / unitless.
* **Provenance.** ``DATASRC`` carries the study rows' ``source`` label (paper, reconstructed,
  synthetic, simulated ...) of every record: the row itself (ADVS) or the rows in its evidence;
  ADSL has the subject's labels and ``NMEASFL`` (Y when any of its rows was not measured).
"""

from __future__ import annotations

import datetime as _dt
import functools
from importlib import resources

import polars as pl

from cartlab.errors import EngineError, InputError
from cartlab.io.adam.adex import adex  # its own import of this module is inside the function (no cycle)
from cartlab.io.adam.exposure import ADAM_SIG_DIGITS, adam_options, change, exposure
from cartlab.io.clock import parse_wall_clock
from cartlab.io.dictionary import load_dictionary
from cartlab.model import NOT_MEASURED_SOURCES
from cartlab.provenance import evidence_ref

__all__ = ["BUILDERS", "ae_terms", "build_available", "build_datasets", "cdisc_day", "evidence_text", "iso_duration",
           "pp_units"]

_EPOCH = _dt.date(1960, 1, 1)
_EPOCH_DT = _dt.datetime(1960, 1, 1)
EVIDENCE_MAX = 200


@functools.cache
def _terms() -> dict:
    from cartlab._yaml import load_yaml

    raw = load_yaml(resources.files("cartlab.io.adam").joinpath("adam_terms.yaml").read_text(encoding="utf-8"))
    for i, row in enumerate(raw.get("ae_terms") or [], 1):
        missing = [k for k in ("aeterm", "aedecod", "aebodsys", "cite", "status") if not row.get(k)]
        if missing or row["status"] not in ("verified", "unverified"):  # pragma: no cover - shipped data
            raise InputError(f"adam_terms.yaml: ae_terms row {i}: missing {missing} or bad status")
    return raw


def ae_terms() -> pl.DataFrame:
    """``adam_terms.yaml`` ae_terms: ``_term`` (AETERM) -> ``_decod`` (MedDRA PT), ``_bodsys`` (SOC)."""
    rows = _terms().get("ae_terms") or []
    return pl.DataFrame({"_term": [r["aeterm"] for r in rows], "_decod": [r["aedecod"] for r in rows],
                         "_bodsys": [r["aebodsys"] for r in rows]},
                        schema={"_term": pl.String, "_decod": pl.String, "_bodsys": pl.String})


def pp_units() -> dict[str, str]:
    """``adam_terms.yaml`` pp_units: PPTESTCD -> unit template (``{c}`` = concentration unit)."""
    return {str(k): str(v) for k, v in (_terms().get("pp_units") or {}).items()}


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


def _treatments(study, dates: pl.DataFrame, options=None) -> pl.DataFrame:
    """``dates`` with the subject's treatments: TRT01P (:func:`_planned_arm`), TRT01A (agent of the
    earliest CAR-T dose row) and TRTEDT = TRTSDT + floor(day of the last CAR-T dose row): the last
    fraction of a split dose (days 0 and 2: TRTSDT + 2); empty without an infusion date or a CAR-T
    dose row (ADaMIG ADSL: TRTEDT, "Date of Last Exposure to Treatment")."""
    from cartlab.kinetics.agents import car_t_agent_expr

    car = (study.doses.filter(car_t_agent_expr(pl.col("agent"))).sort(["subject_id", "day"], nulls_last=True)
           .group_by("subject_id", maintain_order=True)
           .agg(pl.col("agent").first().alias("TRT01A"), pl.col("day").max().alias("_lastday"))
           .rename({"subject_id": "USUBJID"}))
    plan = study.subjects.select(pl.col("subject_id").cast(pl.String).alias("USUBJID"), _planned_arm().alias("TRT01P"))
    f = dates.join(plan, on="USUBJID", how="left").join(car, on="USUBJID", how="left")
    f = f.with_columns((pl.col("TRTSDT") + pl.col("_lastday").floor().cast(pl.Int64)).alias("TRTEDT")).drop("_lastday")
    # TRT01A in TRT01P's terms, no exposure dates for a subject not infused, SAFFL (review s38 A1/B1/B2)
    return exposure(study, f, adam_options(options))


def _with_trt(frame: pl.DataFrame, dates: pl.DataFrame) -> pl.DataFrame:
    """TRTP = ADSL.TRT01P and TRTA = ADSL.TRT01A on every record of the subject (one period: the
    record-level treatment is the subject's; ADaMIG BDS: TRTP/TRTA "must match at least one value" of
    ADSL TRTxxP/TRTxxA)."""
    trt = dates.select("USUBJID", pl.col("TRT01P").alias("TRTP"), pl.col("TRT01A").alias("TRTA"))
    return frame.join(trt, on="USUBJID", how="left", maintain_order="left")


def _with_dates(frame: pl.DataFrame, dates: pl.DataFrame, **targets: str) -> pl.DataFrame:
    """Add ``<target> = TRTSDT + floor(<relative day column>)`` for each target=column."""
    anchor = "_anchor" if "_anchor" in dates.columns else "TRTSDT"  # the day-0 date (TRTSDT unless not infused)
    f = frame.join(dates.select("USUBJID", pl.col(anchor).alias("_d0")), on="USUBJID", how="left", maintain_order="left")
    f = f.with_columns(
        (pl.col("_d0") + pl.col(src).floor().cast(pl.Int64)).alias(tgt) for tgt, src in targets.items()
    ).drop("_d0")
    return _with_trt(f, dates)


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
    study = analysis.study
    s = study.subjects
    ev = study.events
    dead = ev.filter(pl.col("event") == "death").select("subject_id").unique().with_columns(pl.lit("Y").alias("DTHFL"))
    ss = analysis.subject_summary()
    summ = ss.select(
        "subject_id", pl.col("crs_grade_astct").alias("CRSGRMX"), pl.col("crs_onset_day").alias("CRSONRDY"),
        pl.col("icans_grade_astct").alias("ICNSGRMX"), pl.col("icaht_early_grade").alias("ICAHTEGR"),
        pl.col("icaht_late_grade").alias("ICAHTLGR"),
        # the highest grade the data leave possible and whether the grade is a range (review s36 A2:
        # CRSGRMX 2 for an ASTCT 2-5 read as a definite 2; missing is not negative)
        *[e for grade, col, up, fl in _ADSL_RANGES for e in _range_vars(ss, grade, col, up, fl)
          if e.meta.output_name() != "CRSGRFL"], *_crs_lower(ss))  # CRSGRFL: also the lower bound
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
        pl.col("disease").alias("DISEASE"), pl.col("target").alias("TARGET"),
        pl.col("weight_kg").alias("WEIGHTBL"), pl.col("height_cm").alias("HEIGHTBL"),
        pl.lit("Y").alias("ITTFL"), pl.col("last_followup_day").alias("LSTFURDY"), "subject_id",
    )
    for other in (dead, summ, best, _baseline_scores(analysis)):
        f = f.join(other, on="subject_id", how="left", maintain_order="left")
    f = f.join(dates, on="USUBJID", how="left", maintain_order="left")
    f = f.join(_subject_sources(study), on="USUBJID", how="left", maintain_order="left")
    return f.with_columns(pl.when(pl.col("_nm").fill_null(False)).then(pl.lit("Y")).otherwise(pl.lit("N")).alias("NMEASFL"))


def _baseline_scores(analysis) -> pl.DataFrame:
    """ADSL pre-lymphodepletion scores (session 37, review s37 B4): CAR-HEMATOTOX score, its range,
    range flag and risk group; EASIX and m-EASIX at timepoint pre_ld. Empty columns when the engine
    did not run (build_available says why)."""
    schema = {"subject_id": pl.String, "HTXSCBL": pl.Int64, "HTXSCLO": pl.Int64, "HTXSCUP": pl.Int64,
              "HTXSCFL": pl.String, "HTXGR1": pl.String, "EASIXBL": pl.Float64, "MEASIXBL": pl.Float64}
    f = pl.DataFrame({"subject_id": analysis.study.subjects["subject_id"]})
    if analysis.has("car_hematotox"):
        h = analysis.table("car_hematotox")
        lo, hi = pl.col("hematotox_score_min"), pl.col("hematotox_score_max")
        f = f.join(h.select("subject_id", pl.col("hematotox_score").alias("HTXSCBL"), lo.alias("HTXSCLO"),
                            hi.alias("HTXSCUP"),
                            pl.when(lo.is_null() | hi.is_null()).then(None).when(lo < hi).then(pl.lit("Y"))
                            .otherwise(pl.lit("N")).alias("HTXSCFL"),
                            pl.col("hematotox_risk").str.to_uppercase().alias("HTXGR1")),
                   on="subject_id", how="left", maintain_order="left")
    if analysis.has("easix"):
        e = analysis.table("easix")
        if "timepoint" in e.columns:
            e = e.filter(pl.col("timepoint") == "pre_ld")
        f = f.join(e.select("subject_id", pl.col("easix").alias("EASIXBL"), pl.col("m_easix").alias("MEASIXBL"))
                   .unique("subject_id", keep="first"), on="subject_id", how="left", maintain_order="left")
    return f.with_columns(*[pl.lit(None, dtype=t).alias(c) for c, t in schema.items() if c not in f.columns]
                          ).select(list(schema)).cast(schema)


#: ADSL grade, its subject_summary upper-bound column, the upper-bound and the range-flag variables
_ADSL_RANGES = (("crs_grade_astct", "crs_grade_astct_max", "CRSGRUP", "CRSGRFL"),
                ("icans_grade_astct", "icans_grade_astct_max", "ICNGRUP", "ICNGRFL"),
                ("icaht_early_grade", "icaht_early_grade_max", "ICAHTEUP", "ICAEGRFL"),
                ("icaht_late_grade", "icaht_late_grade_max", "ICAHTLUP", "ICALGRFL"))


def _range_flag(grade: pl.Expr, upper: pl.Expr) -> pl.Expr:
    """"Y" when the grade is a range (the highest possible above it, or no grade with a highest
    possible), "N" when the grade is definite (upper = grade), empty when neither is known."""
    return (pl.when(upper.is_null()).then(None).when(grade.is_null() | (upper > grade)).then(pl.lit("Y"))
            .otherwise(pl.lit("N")))


def _range_vars(summary: pl.DataFrame, grade: str, col: str, up: str, fl: str) -> list[pl.Expr]:
    """The upper-bound variable (``col``; empty when the summary has no such column: not known) and
    its range flag, for one ADSL grade."""
    upper = pl.col(col).cast(pl.Int64) if col in summary.columns else pl.lit(None, dtype=pl.Int64)
    return [upper.alias(up), _range_flag(pl.col(grade), upper).alias(fl)]


def _crs_lower(summary: pl.DataFrame) -> list[pl.Expr]:
    """``CRSGRLO``, the lowest CRS grade the data leave possible (``crs_grade_astct_min``: below
    CRSGRMX only when events.csv was not given and a fever could be an infection's; = CRSGRMX
    otherwise), and ``CRSGRFL`` "Y" also when it is below CRSGRMX (the grade is a range downwards)."""
    g = pl.col("crs_grade_astct")
    lo = (pl.coalesce(pl.col("crs_grade_astct_min"), g) if "crs_grade_astct_min" in summary.columns else g
          ).cast(pl.Int64)
    up = pl.col("crs_grade_astct_max").cast(pl.Int64) if "crs_grade_astct_max" in summary.columns else pl.lit(None)
    return [lo.alias("CRSGRLO"),
            pl.when(lo.is_not_null() & g.is_not_null() & (lo < g)).then(pl.lit("Y"))
            .otherwise(_range_flag(g, up)).alias("CRSGRFL")]


def _sig_digits(text: pl.Expr) -> pl.Expr:
    """Significant digits of the number in a censored source text ("<50" -> 2, "<0.050" -> 2, "<1.5e3"
    -> 2): its digits without the exponent, the decimal point and the leading zeros; null when none."""
    mant = text.str.replace_all(r"[<>=\s]", "").str.replace(r"[eE].*$", "").str.replace_all(r"[^0-9]", "")
    n = mant.str.strip_chars_start("0").str.len_chars()
    return pl.when(n > 0).then(n)


def _censored_avalc(study) -> pl.DataFrame:
    """``_ref`` (file:row) and ``_avalc`` of every censored observation (value empty, censor < <= > >=):
    the censor and its bound in the canonical unit (AVALU), rounded to the source's significant digits
    (at most 6, cartlab.grading.censored.censored_text): "<50" /mm3 -> "<0.05" (10^9/L)."""
    obs = study.observations
    if not {"censor", "censor_limit"} <= set(obs.columns):
        return pl.DataFrame(schema={"_ref": pl.String, "_avalc": pl.String})
    src = pl.col("value_text").cast(pl.String) if "value_text" in obs.columns else pl.lit(None, dtype=pl.String)
    digits = pl.min_horizontal(pl.coalesce(_sig_digits(src), pl.lit(6)), pl.lit(6))
    lim = pl.col("censor_limit").cast(pl.Float64)
    c = obs.filter(pl.col("value").is_null() & pl.col("censor").is_in(["<", "<=", ">", ">="]) & lim.is_not_null())
    c = c.with_columns(digits.alias("_n"))
    txt = pl.lit(None, dtype=pl.String)  # round_sig_figs takes one digit count: one branch per count
    for n in range(6, 0, -1):
        txt = pl.when(pl.col("_n") == n).then(lim.round_sig_figs(n).cast(pl.String).str.replace(r"\.0$", "")
                                              ).otherwise(txt)
    return c.select(evidence_ref().alias("_ref"), pl.concat_str(pl.col("censor"), txt).alias("_avalc")
                    ).drop_nulls("_ref").unique("_ref", keep="first")


def adlb(analysis, dates: pl.DataFrame, opts=None) -> pl.DataFrame:
    """The ``adlb`` table's CTCAE-graded records, then (option adam.adlb_params=all, default; review 40
    B2) the ungraded lab observations (io/adam/adlb_ungraded.py: grades empty, REASON says why)."""
    t = analysis.table("adlb")
    if adam_options(opts, analysis).adlb_params == "all":
        from cartlab.io.adam.adlb_ungraded import ungraded_rows

        t = pl.concat([t, ungraded_rows(analysis, t, _params())])
    t = t.join(_params(), left_on="param", right_on="_code", how="left", maintain_order="left")
    t = t.with_columns(_datasrc(t, "evidence", analysis.study).alias("DATASRC")).with_row_index("_wr")
    # the record's own row is the first of its evidence (grading.ctcae): its censored result is AVALC (review s38 A2)
    t = t.with_columns(pl.col("evidence").cast(pl.List(pl.String)).list.first().alias("_ref")).join(
        _censored_avalc(analysis.study), on="_ref", how="left", maintain_order="left")
    f = t.select(
        pl.lit(analysis.study.study_id).alias("STUDYID"), pl.col("subject_id").alias("USUBJID"),
        pl.col("param").alias("PARAMCD"), _param_label("AVALU").alias("PARAM"), pl.col("_group").alias("PARCAT1"),
        "AVAL", pl.when(pl.col("AVAL").is_null()).then(pl.col("_avalc")).alias("AVALC"),
        "AVALU", pl.col("DTYPE").cast(pl.String).alias("DTYPE"), cdisc_day(pl.col("day")).alias("ADY"),
        pl.col("day").alias("ARELDY"), "ABLFL", "BASE", change(pl.col("AVAL"), pl.col("BASE")).alias("CHG"),
        # adlb.PCHG's formula from the rounded CHG (review s38 B3: 3.6 -> 4.5 is 25, not 24.999999999999996)
        pl.when(pl.col("BASE").is_not_null() & (pl.col("BASE") != 0) & pl.col("PCHG").is_not_null())
        .then(change(pl.col("AVAL"), pl.col("BASE")) / pl.col("BASE") * 100).otherwise(pl.col("PCHG")).alias("PCHG"),
        "ANRLO", "ANRHI", "BNRIND",
        "ATOXDSCL", _grade_text("ATOXGRL").alias("ATOXGRL"), "ATOXDSCH", _grade_text("ATOXGRH").alias("ATOXGRH"),
        _grade_text("ATOXGR").alias("ATOXGR"), pl.col("ATOXGR").alias("ATOXGRN"),
        _grade_text("BTOXGR").alias("BTOXGR"),
        *_adlb_ranges(t), *_worst_flags(t),
        pl.col("rule").cast(pl.String).alias("RULE"),
        pl.col("rule_status").cast(pl.String).alias("RULESTAT"), pl.col("grade_reason").cast(pl.String).alias("REASON"),
        "DATASRC", evidence_text(pl.col("evidence")).alias("EVIDENCE"),
    )
    return _with_dates(f, dates, ADT="ARELDY")


#: ADLB: per direction the grade, its analysis-table upper bound, the ADaM upper-bound and range-flag names
_ADLB_RANGES = (("ATOXGRL", "ATOXGRL_MAX", "ATOXGLUP", "ATOXLRFL"), ("ATOXGRH", "ATOXGRH_MAX", "ATOXGHUP", "ATOXHRFL"))


def _adlb_ranges(t: pl.DataFrame) -> list[pl.Expr]:
    """ATOXGLUP/ATOXGHUP (the highest grade the data leave possible, ADAE's ATOXGRUP per direction:
    the grade itself when settled) and ATOXLRFL/ATOXHRFL (Y: a range, N: settled), review 37 R37-4;
    empty where the direction has no grade and no bound (no term, or not gradable)."""
    out = []
    for grade, col, up, fl in _ADLB_RANGES:
        g = pl.col(grade).cast(pl.Int64)
        upper = (pl.coalesce(pl.col(col).cast(pl.Int64), g) if col in t.columns else g)
        out += [upper.alias(up), _range_flag(g, upper).alias(fl)]
    return out


def _worst_flags(t: pl.DataFrame) -> list[pl.Expr]:
    """WGRLOFL/WGRHIFL: "Y" on the record with the worst (highest) ATOXGRL/ATOXGRH per subject and
    parameter among the post-baseline records (``post_baseline``: after the baseline window; the
    ABLFL record is BTOXGR, not a worst grade), the first such record (day, then source order) on
    ties; grade-0 records can be flagged (the worst is 0); rows without a grade never are. The
    convention of pharmaverse tern/teal ("Laboratory test results with highest grade post-baseline",
    ``worst_flag_low = "WGRLOFL"``), review 37 R37-4 / R37-9."""
    post = (pl.col("post_baseline").fill_null(False) if "post_baseline" in t.columns
            else (pl.col("day").floor() > 0).fill_null(False))
    out = []
    for d, name in (("L", "WGRLOFL"), ("H", "WGRHIFL")):
        g = pl.col(f"ATOXGR{d}").cast(pl.Int64)
        ok = post & g.is_not_null()
        key = pl.when(ok).then(g)
        worst = key.max().over("subject_id", "param")
        first_day = pl.when(ok & (g == worst)).then(pl.col("day")).min().over("subject_id", "param")
        row = pl.col("_wr")  # source order (adlb() numbers the rows before any window)
        first_row = pl.when(ok & (g == worst) & (pl.col("day") == first_day)).then(row).min().over("subject_id", "param")
        out.append(pl.when(ok & (g == worst) & (pl.col("day") == first_day) & (row == first_row))
                   .then(pl.lit("Y")).otherwise(None).alias(name))
    return out


def advs(analysis, dates: pl.DataFrame) -> pl.DataFrame:
    """Vital signs (dictionary group ``vital``) from the study's observations, baseline by the
    analysis' CTCAE baseline options (the rule ADLB uses)."""
    from cartlab.grading.ctcae_options import CtcaeOptions

    opts = analysis.options.ctcae or CtcaeOptions()
    params = _params().filter(pl.col("_group") == "vital")
    obs = analysis.study.observations
    from cartlab.io.adam.adlb_ungraded import with_adlb_baseline

    f = (obs.with_row_index("_obs").filter(pl.col("param").is_in(params["_code"].implode()))
         .join(params, left_on="param", right_on="_code", how="left")
         .sort(["subject_id", "param", "day", "_obs"], nulls_last=True))
    f, before = with_adlb_baseline(f, analysis, opts)  # the ADLB rule (review 37 R37-8): calendar day, baseline_day0
    out = f.select(
        pl.lit(analysis.study.study_id).alias("STUDYID"), pl.col("subject_id").alias("USUBJID"),
        pl.col("param").alias("PARAMCD"), _param_label("unit").alias("PARAM"), pl.col("value").alias("AVAL"),
        pl.col("unit").alias("AVALU"), cdisc_day(pl.col("day")).alias("ADY"), pl.col("day").alias("ARELDY"),
        pl.when(pl.col("_obs") == pl.col("_bobs")).then(pl.lit("Y")).otherwise(None).alias("ABLFL"),
        "BASE", change(pl.col("value"), pl.col("BASE")).alias("CHG"),
        pl.when(pl.col("BASE").is_not_null() & (pl.col("BASE") != 0))
        .then(change(pl.col("value"), pl.col("BASE")) / pl.col("BASE") * 100).otherwise(None).alias("PCHG"),
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


def adae(analysis, dates: pl.DataFrame, opts=None) -> pl.DataFrame:
    """CRS / ICANS / ICAHT episodes (OCCDS). AEDECOD / AEBODSYS from the term table
    (``adam_terms.yaml``: MedDRA PT and primary SOC of the reported term; empty where the term is
    not coded there); TRTEMFL "Y" when the episode starts on or after the day of the first CAR-T
    infusion (ASTRLDY >= 0, no end window), "N" before it, empty when the start is unknown."""
    t = _table(analysis, "adae_toxicity", "EVIDENCE")
    if "_exposed" in dates.columns:
        t = t.join(dates.select("USUBJID", "_exposed"), on="USUBJID", how="left", maintain_order="left")
    else:
        t = t.with_columns(pl.lit(None, dtype=pl.Boolean).alias("_exposed"))
    t = t.join(ae_terms(), left_on="AETERM", right_on="_term", how="left", maintain_order="left")
    from cartlab.io.adam.adae import end_range, episode_bounds, lower_note, open_end

    t = t.join(episode_bounds(analysis, t), on=["USUBJID", "AESEQ"], how="left", maintain_order="left")
    if "AEOUT" not in t.columns:  # a table stored before session 40
        t = t.with_columns(pl.lit(None, dtype=pl.String).alias("AEOUT"))
    # the end of an episode (io/adam/adae.py, review 40 A1/B1/B3): a bounded end is a range (ADURNUP,
    # AENRGFL); one not seen resolved has no end day, date or duration (option adam.aeout_unobserved)
    t = lower_note(open_end(end_range(analysis, t), adam_options(opts, analysis).aeout_unobserved))
    f = t.select(
        pl.lit(analysis.study.study_id).alias("STUDYID"), "USUBJID", "AESEQ", "AETERM",
        pl.col("_decod").alias("AEDECOD"), pl.col("_bodsys").alias("AEBODSYS"),
        cdisc_day(pl.col("ASTDY")).alias("ASTDY"), cdisc_day(pl.col("AENDY")).alias("AENDY"),
        pl.col("ASTDY").cast(pl.Float64).alias("ASTRLDY"), pl.col("AENDY").cast(pl.Float64).alias("AENRLDY"),
        # a subject not infused (review s38 B2: other subjects have a CAR-T dose row, it has none) has no
        # treatment-emergent episode: TRTEMFL empty
        pl.when(pl.col("_exposed").eq(False).fill_null(False)).then(None)
        .when(pl.col("ASTDY") >= 0).then(pl.lit("Y")).when(pl.col("ASTDY") < 0).then(pl.lit("N"))
        .otherwise(None).alias("TRTEMFL"),
        "ADURN", "ADURU", "ADURNUP", "AENRGFL", "AEOUT", _grade_text("ATOXGR").alias("ATOXGR"), pl.col("ATOXGR").alias("ATOXGRN"), "ATOXGRS",
        "ATOXGRUP", "ATOXGRLO",  # ATOXRGFL: also the lower bound (events.csv not given), as ADSL CRSGRFL
        pl.when(pl.col("ATOXGRLO") < pl.col("ATOXGR")).then(pl.lit("Y"))
        .otherwise(_range_flag(pl.col("ATOXGR"), pl.col("ATOXGRUP"))).alias("ATOXRGFL"),
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
    # a parameter not defined for a subject (RFS/LFS/CIR never in remission, no response criteria, a
    # death before day 0) has no AVAL/CNSR: no ADTTE record (CDISC BDS-TTE: "CNSR is required for
    # time-to-event parameters"; admiral derive_param_tte emits a record only with an event or a
    # censoring source). cartlab's own adtte.csv keeps those rows with their rule and reason.
    t = _table(analysis, "adtte", "evidence").filter(pl.col("CNSR").is_not_null())
    from cartlab.io.adam.srcrec import source_record

    t = source_record(t, analysis.study)  # SRCVAR/SRCSEQ, the deciding row first in EVIDENCE (review s38 B4)
    f = t.select(
        pl.lit(analysis.study.study_id).alias("STUDYID"), pl.col("subject_id").alias("USUBJID"), "PARAMCD", "PARAM",
        pl.col("ANLFL").alias("ANL01FL"), "AVAL", "AVALU",
        # a competing event (CIR: death without relapse, EVENT 2) is CNSR 2, not 0: ADaM has no EVENT
        # variable, and CNSR 0 would make it a relapse for anyone reading CNSR as the event indicator
        pl.when(pl.col("EVENT") == 2).then(pl.lit(2, dtype=pl.Int64)).otherwise(pl.col("CNSR")).alias("CNSR"),
        pl.col("STARTDY").alias("STARTRDY"),
        cdisc_day(pl.col("ADY")).alias("ADY"), pl.col("ADY").alias("ARELDY"),
        # EVNTDESC is the "Event or Censoring Description" (ADaM BDS-TTE; admiral censor_source rows
        # set it too): a censored row describes its censoring there as in CNSDTDSC
        pl.when(pl.col("EVNTDESC").is_null() & (pl.col("CNSR") == 1)).then(pl.col("CNSDTDSC"))
        .otherwise(pl.col("EVNTDESC")).alias("EVNTDESC"), "CNSDTDSC",
        pl.coalesce(pl.col("_srcdom"), pl.col("SRCDOM")).alias("SRCDOM"),
        # a record dated day 0 without a CAR-T dose row (doses unknown): the treatment start of ADSL, as
        # admiral's censor_source(dataset_name = "adsl", date = TRTSDT) names it (review s39 B4)
        pl.when(pl.col("_srcdom").is_null() & (pl.col("SRCDOM") == "ADSL")).then(pl.lit("TRTSDT"))
        .otherwise(pl.col("SRCVAR")).alias("SRCVAR"), "SRCSEQ",
        *_rule_cols("rule", "rule_status", "reason", "evidence"),
    )
    return _with_dates(f, dates, STARTDT="STARTRDY", ADT="ARELDY")


def _lloq(study) -> pl.DataFrame:
    """``_ref`` (file:row) and ``_lloq`` (the censoring bound, else the row's LLOQ) of every observation."""
    obs = study.observations
    cols = [c for c in ("censor_limit", "lloq") if c in obs.columns]
    limit = pl.coalesce([pl.col(c).cast(pl.Float64) for c in cols]) if cols else pl.lit(None, dtype=pl.Float64)
    return obs.select(evidence_ref().alias("_ref"), limit.alias("_lloq")).drop_nulls("_ref").unique("_ref", keep="first")


def _blq_text(bound: pl.Expr) -> pl.Expr:
    """AVALC of a sample below the LLOQ whose result was a number: "<" and the bound in AVALU, as a
    censored result is written (ADLB REASON, cartlab.grading.hemato_common.censored_text: "<50");
    "BLQ" when no bound is known (a measured 0)."""
    b = bound.round_sig_figs(6).cast(pl.String).str.replace(r"\.0$", "")
    return pl.when(bound.is_not_null()).then(pl.lit("<") + b).otherwise(pl.lit("BLQ"))


def adpc(analysis, dates: pl.DataFrame) -> pl.DataFrame:
    """Cellular kinetics samples (BDS). PARAM = dictionary label and AVALU ("CAR transgene copies by
    qPCR in blood (copies/ug gDNA)"); AVALC of a BLQ sample is never empty (:func:`_blq_text`)."""
    t = _table(analysis, "adpc", "EVIDENCE")
    t = t.join(_params(), left_on="PARAMCD", right_on="_code", how="left", maintain_order="left")
    first_ref = pl.col("EVIDENCE").cast(pl.List(pl.String)).list.first()
    t = t.with_columns(first_ref.alias("_ref")).join(_lloq(analysis.study), on="_ref", how="left",
                                                     maintain_order="left")
    f = t.select(
        pl.lit(analysis.study.study_id).alias("STUDYID"), "USUBJID", "PARAMCD",
        pl.when(pl.col("_label").is_not_null()).then(_param_label("AVALU")).otherwise(
            pl.format("{} ({})", pl.col("PARAMCD"), pl.col("AVALU"))).alias("PARAM"),
        "AVAL", "AVALU",
        pl.when(pl.col("AVALC").is_null() & (pl.col("BLQFL") == "Y")).then(_blq_text(pl.col("_lloq")))
        .otherwise(pl.col("AVALC")).alias("AVALC"), "BLQFL",
        cdisc_day(pl.col("ADY")).alias("ADY"), pl.col("ADY").alias("ARELDY"), "AFRLT", "ARRLT", "NFRLT",
        # the unit of the relative times: cartlab's day axis, not the ADNCA hours (review s38 C1)
        pl.lit("DAYS").alias("FRLTU"), pl.lit("DAYS").alias("RRLTU"), "DTYPE",
        "DATASRC", evidence_text(pl.col("EVIDENCE")).alias("EVIDENCE"),
    )
    return _with_dates(f, dates, ADT="ARELDY")


def iso_duration(days: pl.Expr) -> pl.Expr:
    """An ISO 8601 duration of a number of days (SDTM/ADaM PPSTINT, PPENINT): 0 -> ``P0D``, 28 ->
    ``P28D``, 0.5 -> ``PT12H``, 1.25 -> ``P1DT6H``, 1/48 -> ``PT30M``, -7 -> ``-P7D``; rounded to the
    second; null stays null."""
    sec = (days.abs() * 86400).round(0).cast(pl.Int64)
    d, r = sec // 86400, sec % 86400
    h, m, s = r // 3600, (r % 3600) // 60, r % 60
    part = lambda n, unit: pl.when(n > 0).then(n.cast(pl.String) + pl.lit(unit)).otherwise(pl.lit(""))  # noqa: E731
    date_part = pl.when((d > 0) | (r == 0)).then(d.cast(pl.String) + pl.lit("D")).otherwise(pl.lit(""))
    time_part = pl.when(r > 0).then(pl.lit("T") + part(h, "H") + part(m, "M") + part(s, "S")).otherwise(pl.lit(""))
    sign = pl.when(days < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    return pl.when(days.is_null()).then(None).otherwise(sign + pl.lit("P") + date_part + time_part)


def _pp_unit(unit: pl.Expr) -> pl.Expr:
    """The unit of an ADPP parameter (``adam_terms.yaml`` pp_units: ``{c}`` = the concentration unit of
    the analyte, time in days); null for a unitless one (R2ADJ, LAMZNPT)."""
    units = pp_units()
    tmpl = pl.col("PPTESTCD").replace_strict(units, default=None, return_dtype=pl.String)
    needs = tmpl.str.contains("{c}", literal=True)
    return (pl.when(tmpl.is_null() | (needs & unit.is_null())).then(None)
            .otherwise(tmpl.str.replace_all("{c}", unit.fill_null(""), literal=True)))


def adpp(analysis, dates: pl.DataFrame) -> pl.DataFrame:
    """Cellular kinetics parameters (BDS). PARAM = the PK parameter name and its unit ("Max Conc
    (copies/ug gDNA)", "AUC All (days*copies/ug gDNA)"; unitless: the name alone); PPSTINT /
    PPENINT as ISO 8601 durations from the infusion ("P0D", "P28D")."""
    t = _table(analysis, "adpp", "EVIDENCE")
    unit = (analysis.table("adpc").group_by("USUBJID", "PARAMCD").agg(pl.col("AVALU").drop_nulls().first().alias("_unit"))
            if analysis.has("adpc") else pl.DataFrame(schema={"USUBJID": pl.String, "PARAMCD": pl.String, "_unit": pl.String}))
    t = t.join(unit, on=["USUBJID", "PARAMCD"], how="left", maintain_order="left").with_columns(
        _pp_unit(pl.col("_unit")).alias("_ppu"))
    f = t.select(
        pl.lit(analysis.study.study_id).alias("STUDYID"), "USUBJID", pl.col("PPTESTCD").alias("PARAMCD"),
        pl.when(pl.col("_ppu").is_not_null()).then(pl.format("{} ({})", pl.col("PPTEST"), pl.col("_ppu")))
        .otherwise(pl.col("PPTEST")).alias("PARAM"), pl.col("PARAMCD").alias("PARCAT1"), "AVAL",
        # a parameter the NCA could not estimate (no terminal phase: LAMZ, LAMZHL, AUCIFO ...) is "NE",
        # never a record with neither AVAL nor AVALC (review s38; car_kinetics.csv reason says why)
        pl.when(pl.col("AVAL").is_null()).then(pl.lit("NE")).alias("AVALC"),
        pl.col("_ppu").alias("AVALU"),  # the parameter's unit as a variable, not only in PARAM (review s38 C1)
        iso_duration(pl.col("PPSTINT").cast(pl.Float64, strict=False)).alias("PPSTINT"),
        iso_duration(pl.col("PPENINT").cast(pl.Float64, strict=False)).alias("PPENINT"), "METHOD",
        "DATASRC", evidence_text(pl.col("EVIDENCE")).alias("EVIDENCE"),
    )
    return _with_trt(f, dates)


#: dataset name -> builder(analysis, dates) -> frame (columns named as in adam_spec.yaml)
BUILDERS = {"ADSL": adsl, "ADLB": adlb, "ADVS": advs, "ADAE": adae, "ADRS": adrs, "ADTTE": adtte,
            "ADPC": adpc, "ADPP": adpp, "ADEX": adex}


#: the builders that take the export options (adam.aeout_unobserved, adam.adlb_params)
_WITH_OPTIONS = ("ADAE", "ADLB")


#: analysis tables a dataset uses only in part: without one, the dataset is written with these variables empty
PARTS = {"ADSL": (("best_response", "BOR, BORCRIT, BORRDY, MRDNEGFL"),)}


def build_datasets(analysis, names: list[str] | None = None) -> dict[str, pl.DataFrame]:
    """The raw ADaM frames (before the spec's types, ASCII and length rules) of ``names`` (all); an
    :class:`EngineError` when an analysis table one of them needs is not available."""
    return build_available(analysis, names, strict=True)[0]


def build_available(analysis, names: list[str] | None = None, *, strict: bool = False, options=None
                    ) -> tuple[dict[str, pl.DataFrame], dict[str, str], list[str]]:
    """The raw frames of the datasets that can be built, ``{dataset: why not}`` for the others (an
    analysis table they need could not be derived) and notes on datasets built with variables left
    empty (:data:`PARTS`). ``strict``: the first of these is an :class:`EngineError` instead."""
    opts = adam_options(options, analysis)
    dates = _treatments(analysis.study, _study_dates(analysis.study), opts)
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
            frames[n] = (BUILDERS[n](analysis, dates, opts) if n in _WITH_OPTIONS else BUILDERS[n](analysis, dates))
        except EngineError as exc:  # an analysis table the dataset is built from could not be derived
            if strict:
                raise
            not_built[n] = str(exc)
            continue
        frames[n] = _round_derived(frames[n])
        notes += _param_notes(n, frames[n]) + _saffl_notes(n, frames[n], opts, dates)
    return frames, not_built, notes


#: numbers the export (or the engine behind it) computes by arithmetic: rounded to ADAM_SIG_DIGITS
#: (review s38 B3); ADTTE AVAL is a difference of days too
_ROUNDED = ("CHG", "PCHG", "ARELDY", "ASTRLDY", "AENRLDY", "STARTRDY", "AFRLT", "ARRLT", "NFRLT", "BORRDY",
            "CRSONRDY")


def _round_derived(frame: pl.DataFrame) -> pl.DataFrame:
    from cartlab.criteria.signif import signif

    cols = [c for c in (*_ROUNDED, *(("AVAL",) if "CNSR" in frame.columns else ()))
            if c in frame.columns and frame.schema[c].is_float()]
    return frame.with_columns(signif(pl.col(c), ADAM_SIG_DIGITS).alias(c) for c in cols) if cols else frame


def _saffl_notes(name: str, frame: pl.DataFrame, opts, dates: pl.DataFrame | None = None) -> list[str]:
    """ADSL: the subjects without a CAR-T dose row, whose SAFFL is blank or N (option adam.saffl_unknown,
    for subjects known not infused); with the doses unknown for the study SAFFL is blank whatever the
    option (review38 diff2 B4)."""
    if name != "ADSL" or "SAFFL" not in frame.columns:
        return []
    unknown: set[str] = set()
    if dates is not None and "_exposed" in dates.columns:
        unknown = set(dates.filter(pl.col("_exposed").is_null())["USUBJID"].to_list())
    f = frame.filter(pl.col("SAFFL").is_null() | (pl.col("SAFFL") == "N"))
    ids = [i for i in f["USUBJID"].to_list() if i not in unknown]
    blank = [i for i in f["USUBJID"].to_list() if i in unknown]

    def shown(xs):
        return ", ".join(xs[:20]) + (f" (+{len(xs) - 20} more)" if len(xs) > 20 else "")

    out = []
    if ids:
        what = ("N (adam.saffl_unknown=N)" if opts.saffl_unknown == "N"
                else "empty (adam.saffl_unknown=blank; Pinnacle 21 AD0005 rejects a null SAFFL: set "
                     "adam.saffl_unknown=N)")
        out.append(f"ADSL: SAFFL {what} for {len(ids)} subject(s) without a CAR-T dose row: {shown(ids)}")
    if blank:
        out.append(f"ADSL: SAFFL empty for {len(blank)} subject(s) whose CAR-T doses are unknown (no doses.csv, or no "
                   f"CAR-T row for any subject: taken as infused on day 0, so not N whatever adam.saffl_unknown "
                   f"says): {shown(blank)}")
    return out


def _param_notes(name: str, frame: pl.DataFrame) -> list[str]:
    """One note when a PARAMCD has more than one PARAM (ADaMIG BDS: PARAM unique, one-to-one with
    PARAMCD), e.g. the ADPP of a cohort that mixes CARCOPY (copies/ug gDNA) and CARCELL (cells/uL)."""
    if not {"PARAMCD", "PARAM"} <= set(frame.columns):
        return []
    many = (frame.group_by("PARAMCD").agg(pl.col("PARAM").drop_nulls().unique().sort())
            .filter(pl.col("PARAM").list.len() > 1).sort("PARAMCD"))
    if not many.height:
        return []
    code, params = many.row(0)
    return [f"{name}: PARAMCD {', '.join(many['PARAMCD'])} each have more than one PARAM (e.g. {code}: "
            f"{'; '.join(params)}): the records differ by analyte or unit (PARCAT1 / AVALU); the ADaMIG wants "
            "one PARAM per PARAMCD, so analyse them apart"]
