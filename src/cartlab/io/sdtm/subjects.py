"""Subject columns of the SDTM reader that need more than one DM variable (review 46 #4, #5, #7).

* :func:`age`: ``age_years`` = the completed years on day 0 from a complete DM.BRTHDTC (the FHIR
  reader's rule from Patient.birthDate; the study format's ``age_years`` is the age at infusion), else
  DM.AGE / AGEU (``age_units``), which SDTMIG defines at the sponsor's reference date: the
  ``source_note`` says so. An AGEU outside ``age_units`` leaves the age empty, with a warning.
* :func:`sex`: DM.SEX through the mapping's ``sex`` table, else the study folder's vocabulary (F, M,
  U in any case; female, male, unknown); any other value is left empty with a warning.
* :func:`vs_body_size`: ``weight_kg`` / ``height_cm`` not given in SUPPDM from the VS WEIGHT / HEIGHT
  observations: the last measurement up to day 0, else the first after it (the FHIR reader's rule).
"""

from __future__ import annotations

import polars as pl

from cartlab.io.schema import SEX, SEX_SYNONYMS, vocab_key, vocab_key_expr
from cartlab.io.sdtm import common as sc
from cartlab.io.sdtm.dates import parse_dtc
from cartlab.io.sdtm.files import ROW, DomainFile

#: source_note of an age from DM.BRTHDTC
AGE_FROM_BIRTH = "age_years: completed years on day 0 from DM.BRTHDTC"
#: source_note of an age from DM.AGE of a third-party DM (not write_sdtm's, whose AGE is the age at infusion)
AGE_FROM_AGE = ("age_years from DM.AGE {} {}: the age at the sponsor's reference date (SDTMIG DM), not "
                "necessarily at infusion; a complete DM.BRTHDTC gives the age on day 0")


def _upper(dm: DomainFile, var: str) -> pl.Expr:
    return dm.text(var).str.to_uppercase().str.replace_all(r"\s+", " ").str.strip_chars()


def age(dm: DomainFile, ctx: sc.Ctx) -> tuple[pl.Expr, pl.Expr]:
    """(``age_years``, its note). Needs ``__anchor`` and ``__nominal`` in ``dm.df``.

    A nominal calendar (write_sdtm's placeholder day 0) has no real day 0: BRTHDTC is not used there.
    SUPPDM DAY0DTC marks write_sdtm's DM, whose AGE is the study's ``age_years`` (at infusion): no note."""
    b = parse_dtc(dm.col("BRTHDTC"))
    dm.fail((b.struct.field("status") == "invalid") & dm.col("BRTHDTC").is_not_null(), "BRTHDTC", sc.BAD_DTC)
    bd = b.struct.field("dt").dt.date()
    d0 = pl.col("__anchor").dt.date()
    complete = (b.struct.field("status") == "ok") & dm.text("BRTHDTC").str.contains(r"^\s*\d{4}-\d{2}-\d{2}")
    usable = complete.fill_null(False) & d0.is_not_null() & ~pl.col("__nominal").fill_null(False)
    years = (d0.dt.year() - bd.dt.year()
             - ((d0.dt.month() * 100 + d0.dt.day()) < (bd.dt.month() * 100 + bd.dt.day())).cast(pl.Int32))
    ageu = _upper(dm, "AGEU").replace("", None).fill_null("YEARS")
    from_age = dm.number("AGE") / ageu.replace_strict(ctx.mapping.age_units, default=None, return_dtype=pl.Float64)
    value = pl.when(usable).then(years.cast(pl.Float64)).otherwise(from_age)
    written_by_cartlab = dm.col("__q_day0_date").is_not_null() if "__q_day0_date" in dm.df.columns else pl.lit(False)
    note = (pl.when(usable).then(pl.lit(AGE_FROM_BIRTH))
            .when(from_age.is_not_null() & ~written_by_cartlab)
            .then(pl.format(AGE_FROM_AGE, dm.text("AGE"), ageu)))
    return value, note


def warn_age_units(dm: DomainFile, ctx: sc.Ctx, age_years: pl.Expr) -> None:
    """One warning naming the DM records whose AGE is given with an AGEU outside ``age_units`` (and no
    complete BRTHDTC): their age is left empty."""
    from cartlab.io.sdtm.reader import SdtmIssue

    ageu = _upper(dm, "AGEU").replace("", None)
    bad = dm.df.filter(age_years.is_null() & dm.number("AGE").is_not_null() & ageu.is_not_null()
                       & ~ageu.is_in(list(ctx.mapping.age_units))).select(
        pl.col("USUBJID").cast(pl.String), dm.text("AGE").alias("a"), dm.text("AGEU").alias("u"), pl.col(ROW))
    if not bad.height:
        return
    what = "; ".join(f"USUBJID {s}: AGE {a} AGEU {u!r}" for s, a, u, _ in bad.rows()[:10])
    ctx.warnings.append(SdtmIssue(
        dm.name, "AGEU", f"{bad.height:,} DM record(s) with an AGEU not in the age_units table "
        f"({', '.join(ctx.mapping.age_units)}): {what}{' ...' if bad.height > 10 else ''}; age_years left empty "
        "(map the unit in age_units of a mapping file, or give DM.BRTHDTC)", bad[ROW].to_list(), "warning"))


#: the study folder's sex vocabulary (cartlab.io.schema: F, M, U and the synonyms; case, spaces do not matter)
_SEX_WORDS = {**{vocab_key(v): v for v in SEX}, **{vocab_key(k): v for k, v in SEX_SYNONYMS}}


def sex(dm: DomainFile, ctx: sc.Ctx) -> pl.Expr:
    """DM.SEX -> F / M / U: the mapping's ``sex`` table, else the study folder's vocabulary."""
    return pl.coalesce(_upper(dm, "SEX").replace_strict(ctx.mapping.sex, default=None, return_dtype=pl.String),
                       vocab_key_expr(dm.text("SEX")).replace_strict(_SEX_WORDS, default=None, return_dtype=pl.String))


def warn_sex(dm: DomainFile, ctx: sc.Ctx) -> None:
    """One warning naming the DM records whose SEX is neither in the ``sex`` table nor the study folder's
    vocabulary: sex left empty."""
    from cartlab.io.sdtm.reader import SdtmIssue

    given = dm.text("SEX").str.strip_chars().replace("", None)
    bad = dm.df.filter(given.is_not_null() & sex(dm, ctx).is_null()).select(
        pl.col("USUBJID").cast(pl.String), dm.text("SEX").alias("s"), pl.col(ROW))
    if not bad.height:
        return
    what = "; ".join(f"USUBJID {u}: SEX {s!r}" for u, s, _ in bad.rows()[:10])
    ctx.warnings.append(SdtmIssue(
        dm.name, "SEX", f"{bad.height:,} DM record(s) with a SEX that is not F, M or U (CDISC SEX; the sex table of the "
        f"mapping, or female/male/unknown): {what}{' ...' if bad.height > 10 else ''}; sex left empty (map it in "
        "the sex table of a mapping file)", bad[ROW].to_list(), "warning"))


#: source_note of a weight / height taken from VS
BODY_NOTE = "{col} from {file} record {row} ({param}, day {day:g})"


def vs_body_size(subjects: pl.DataFrame, observations: list[pl.DataFrame]) -> pl.DataFrame:
    """``weight_kg`` / ``height_cm`` left empty by SUPPDM, from the WEIGHT / HEIGHT observations (in kg / cm,
    the dictionary's units, as read): the last measurement up to the end of day 0, else the first after it
    (the FHIR reader's rule); the source_note names the record."""
    frames = [o.filter(pl.col("param").is_in(["WEIGHT", "HEIGHT"]) & pl.col("value").is_not_null()
                       & pl.col("day").is_not_null()).select("subject_id", "param", "day", "value", "src_file", "src_row")
              for o in observations if o.height and "param" in o.columns]
    obs = pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()
    if not obs.height or not subjects.height:
        return subjects
    i = pl.int_range(pl.len()).over("subject_id", "param")
    # per subject and param: the last row with day < 1 (up to the end of day 0), else the first after it
    picks = (obs.sort("subject_id", "param", "day", "src_row")
             .with_columns(pl.when(pl.col("day") < 1).then(-i).otherwise(i + 2**40).alias("_rank"))
             .sort("subject_id", "param", "_rank").unique(["subject_id", "param"], keep="first", maintain_order=True))
    out = subjects
    for param, col in (("WEIGHT", "weight_kg"), ("HEIGHT", "height_cm")):
        pick = picks.filter(pl.col("param") == param)
        notes = {r["subject_id"]: BODY_NOTE.format(col=col, file=r["src_file"], row=r["src_row"], param=param,
                                                   day=r["day"]) for r in pick.iter_rows(named=True)}
        pick = pick.select("subject_id", pl.col("value").alias("_v"),
                           pl.col("subject_id").replace_strict(notes, default=None, return_dtype=pl.String).alias("_n"))
        out = out.join(pick, on="subject_id", how="left", maintain_order="left")
        filled = pl.col(col).is_null() & pl.col("_v").is_not_null()
        out = out.with_columns(
            pl.when(filled).then(pl.col("_v")).otherwise(pl.col(col)).cast(subjects.schema[col]).alias(col),
            pl.when(filled).then(pl.concat_str("source_note", "_n", separator="; ", ignore_nulls=True))
            .otherwise(pl.col("source_note")).alias("source_note")).drop("_v", "_n")
    return out.select(subjects.columns)
