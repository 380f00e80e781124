"""Which CAR kinetic rows make one subject's blood profile: specimen and analyte (review s38 A1, A2).

Spec (study-format v1, parameter dictionary): CARCOPY is "CAR transgene by qPCR in blood", CARCELL
"CAR+ cells by flow in blood"; ``observations.csv`` ``specimen`` (PB, BM, CSF ...) and ``analyte``
("qualifier for molecular params"). Marrow and blood levels are different matrices, and two assays
(e.g. a CD19 and a CD22 CAR construct) are two analytes: neither is one concentration-time curve
(NCA is per analyte and matrix; PKNCA, CDISC PC one PCTESTCD per analyte and PCSPEC).

* ``specimen`` (kinetics option, default ``"PB"``): only rows of that specimen; a row with an empty
  specimen counts as PB (the spec's "in blood"). Other rows are left out, named in a warning (counts)
  and in the subject's reason; ``"all"`` keeps every row (cartlab before session 38).
* ``analyte`` (default None): a subject whose chosen param has rows of two or more distinct non-empty
  analytes is not evaluable (rule ``car_kinetics.multiple_analytes``), unless the option names one
  (then only its rows; a subject with none of its rows is not evaluable, naming the analytes it has,
  and a warning says when no subject has the analyte). Rows with an empty analyte beside ONE named analyte are that analyte (the
  reason says so); a subject with no named analyte is one curve, as before.
"""

from __future__ import annotations

import math
import warnings

import polars as pl

from cartlab.errors import SubjectsWarning
from cartlab.provenance import EVIDENCE, evidence_ref

__all__ = ["select_specimen", "select_analyte", "excluded_rows", "not_evaluable_rows"]


def _blank(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.String).str.strip_chars().fill_null("") == ""


def select_specimen(obs: pl.DataFrame, specimen: str, warn: bool = False) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``obs`` without the rows of other specimens, and per subject the note on what was left out
    (``subject_id``, ``_spec_note``: "2 BM row(s) left out (kinetics.specimen=PB)")."""
    empty = pl.DataFrame(schema={"subject_id": pl.String, "_spec_note": pl.String})
    if specimen.lower() == "all" or "specimen" not in obs.columns:
        return obs, empty
    spec = pl.col("specimen").cast(pl.String).str.strip_chars()
    same = spec.str.to_uppercase() == specimen.upper()
    keep = same.fill_null(False) | (_blank("specimen") & pl.lit(specimen.upper() == "PB"))
    out, gone = obs.filter(keep), obs.filter(~keep)
    if gone.height == 0:
        return out, empty
    per = (gone.group_by("subject_id", spec.alias("_s")).agg(pl.len().alias("_n"))
           .sort("subject_id", "_s").group_by("subject_id", maintain_order=True)
           .agg(pl.format("{} {}", pl.col("_n"), pl.col("_s")).str.join(", ").alias("_what")))
    notes = per.select("subject_id", pl.format(
        "{} row(s) left out (not blood, kinetics.specimen={})", pl.col("_what"), pl.lit(specimen)).alias("_spec_note"))
    if warn:
        counts = gone.group_by(spec.alias("_s")).agg(pl.len()).sort("_s")
        what = ", ".join(f"{n} {s}" for s, n in counts.rows())
        warnings.warn(SubjectsWarning(
            f"{gone.height} CARCOPY/CARCELL row(s) of another specimen than {specimen} ({what}) are left out of the "
            f"blood kinetics (spec: CARCOPY/CARCELL 'in blood'; a row without a specimen counts as PB); "
            "--set kinetics.specimen=all keeps them: {subjects}",
            notes["subject_id"].to_list(), "car_kinetics.csv (reason)"), stacklevel=3)
    return out, notes


def select_analyte(obs: pl.DataFrame, analyte: str | None, warn: bool = False) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """``obs`` (one param per subject already chosen) reduced to one analyte per subject.

    Returns the kept rows, the per-subject notes (``_an_note``: rows without an analyte taken as the
    subject's one named analyte) and the not-evaluable subjects (``subject_id``, ``param``, ``unit``,
    ``evidence``, ``not_evaluable``) with two or more named analytes and no ``analyte`` option."""
    none = pl.DataFrame(schema={"subject_id": pl.String, "param": pl.String, "unit": pl.String,
                                "evidence": pl.List(pl.String), "not_evaluable": pl.String})
    notes0 = pl.DataFrame(schema={"subject_id": pl.String, "_an_note": pl.String})
    if "analyte" not in obs.columns:
        return obs, notes0, none
    an = pl.col("analyte").cast(pl.String).str.strip_chars()
    named = obs.filter(~_blank("analyte")).group_by("subject_id").agg(an.unique().sort().alias("_names"))
    obs = obs.join(named, on="subject_id", how="left").with_columns(pl.col("_names").fill_null([]))
    n = pl.col("_names").list.len()
    if analyte is None:
        multi = obs.filter(n >= 2)
        bad = multi.sort("subject_id", "day").group_by("subject_id", maintain_order=True).agg(
            pl.col("param").first(), pl.col("unit").first(), evidence_ref().drop_nulls().alias("evidence"),
            pl.col("_names").first())
        bad = bad.select("subject_id", "param", "unit", "evidence", pl.format(
            "{} {} analytes ({}): one curve per analyte (choose one with --set kinetics.analyte=NAME)",
            pl.when(pl.col("_names").list.len() == 2).then(pl.lit("two")).otherwise(pl.lit("several")),
            pl.col("param"), pl.col("_names").list.join(", ")).alias("not_evaluable"))
        kept = obs.filter(n < 2)
        if bad.height and warn:
            warnings.warn(SubjectsWarning(
                f"{bad.height} subject(s) have CAR rows of two or more analytes (observations.csv analyte): one curve "
                "per analyte, so their kinetics are not evaluable; --set kinetics.analyte=NAME chooses one: {subjects}",
                bad["subject_id"].to_list(), "car_kinetics.csv (reason)"), stacklevel=4)
        note_of = pl.col("_names").list.first()
    else:
        # the option's analyte; a row without one belongs to it when it is the subject's only named analyte,
        # or when the subject names none (a single-analyte study that leaves the column empty)
        kept = obs.filter((an == analyte).fill_null(False)
                          | (_blank("analyte") & ((n == 0) | ((n == 1) & pl.col("_names").list.contains(analyte)))))
        # a subject with CAR rows but none of the option's analyte: not evaluable, naming the analytes it
        # has (missing is not negative; review 38 diff1 F5), not left out of car_kinetics.csv
        has = kept["subject_id"].unique().implode()
        bad = (obs.filter(~pl.col("subject_id").is_in(has)).sort("subject_id", "day")
               .group_by("subject_id", maintain_order=True)
               .agg(pl.col("param").first(), pl.col("unit").first(), evidence_ref().drop_nulls().alias("evidence"),
                    pl.len().alias("_n"), an.filter(~_blank("analyte")).unique().sort().str.join(", ").alias("_o")))
        bad = bad.select("subject_id", "param", "unit", "evidence", pl.format(
            "no {} CAR sample: {} {} row(s) of analyte {} left out (kinetics.analyte={})", pl.lit(analyte),
            "_n", "param", pl.when(pl.col("_o") == "").then(pl.lit("(none)")).otherwise(pl.col("_o")),
            pl.lit(analyte)).alias("not_evaluable"))
        if warn and obs.height and kept.height == 0:
            present = sorted(set(obs.filter(~_blank("analyte"))["analyte"].cast(pl.String).str.strip_chars()))
            params = ", ".join(sorted(set(obs["param"])))
            warnings.warn(SubjectsWarning(
                f"no {params} rows of analyte {analyte}; analytes present: {', '.join(present) or '(none named)'} "
                f"(option kinetics.analyte={analyte}): the kinetics of these subjects are not evaluable: {{subjects}}",
                bad["subject_id"].to_list(), "car_kinetics.csv (reason)"), stacklevel=4)
        note_of = pl.lit(analyte)
    notes = kept.filter(_blank("analyte") & (n >= 1)).group_by("subject_id", maintain_order=True).agg(
        pl.len().alias("_n"), note_of.first().alias("_a"), pl.col("param").first()).select(
        "subject_id", pl.format("{} {} row(s) without an analyte taken as {} (the subject's only named analyte)",
                                "_n", "param", "_a").alias("_an_note"))
    if analyte is not None:  # the rows of the other analytes, named in the reason
        other = obs.filter(~_blank("analyte") & (an != analyte)).group_by("subject_id").agg(
            pl.len().alias("_n"), an.unique().sort().str.join(", ").alias("_o"))
        other = other.select("subject_id", pl.format("{} row(s) of analyte {} left out (kinetics.analyte={})",
                                                     "_n", "_o", pl.lit(analyte)).alias("_o_note"))
        notes = notes.join(other, on="subject_id", how="full", coalesce=True).select(
            "subject_id", pl.concat_str(pl.col("_an_note"), pl.col("_o_note"), separator="; ", ignore_nulls=True)
            .alias("_an_note"))
    return kept.drop("_names"), notes, bad.cast(none.schema)


def excluded_rows(excluded: pl.DataFrame, options) -> pl.DataFrame:
    """The rows of the subjects not evaluable for the specimen/analyte rules (review s38 A1, A2): every
    NCA value empty (missing, not 0), the rule, and the reason naming the analytes or specimens."""
    code = (pl.when(pl.col("rule") != "car_kinetics.multiple_analytes").then(pl.lit("no_blood_sample"))
            .when(pl.lit(options.analyte is not None)).then(pl.lit("no_analyte_sample"))
            .otherwise(pl.lit("multiple_analytes")))
    return excluded.select(
        "subject_id", pl.lit(0.0).alias("start"), pl.lit(math.inf).alias("end"),
        pl.concat_list(pl.format("{}: {}", code, pl.col("not_evaluable"))).alias("warnings"),
        "param", "unit", pl.col("evidence").cast(EVIDENCE), pl.lit(False).alias("zero_imputed"),
        pl.format("not evaluable: {}", pl.col("not_evaluable")).alias("auc_window_basis"),
        pl.lit(options.method).alias("method"), "rule",
        pl.format("{} NCA not evaluable: {}", pl.col("param"), pl.col("not_evaluable")).alias("reason"),
        "not_evaluable",
    )


def not_evaluable_rows(same: pl.DataFrame, meta: pl.DataFrame, options) -> pl.DataFrame:
    """The rows of the subjects with two samples at one time: every NCA value empty, and why."""
    fix = ("NCA needs one concentration per time (PKNCA: sample times must be unique and increasing), and "
           "which sample came later is unknown; give each its time of day (a datetime, or a fractional day)")
    return same.join(meta, on="subject_id", how="left").select(
        "subject_id", pl.lit(0.0).alias("start"), pl.lit(math.inf).alias("end"),
        pl.col("_n_blq").alias("n_blq"),
        pl.concat_list(pl.format("duplicate_time: {}: {}", pl.col("not_evaluable"), pl.lit(fix))).alias("warnings"),
        "param", "unit", "evidence", "zero_imputed",
        pl.format("not evaluable: {}", pl.col("not_evaluable")).alias("auc_window_basis"),
        pl.lit(options.method).alias("method"),
        pl.lit("car_kinetics.duplicate_time").alias("rule"),
        pl.format("{} NCA not evaluable: {}; {}", pl.col("param"), pl.col("not_evaluable"), pl.lit(fix)).alias("reason"),
        "not_evaluable",
    )
