"""Checks and rules of the SDTM interventions (CM, EX) and of partial dates that are no silent loss.

* :func:`warn_partial`: a record with a partial --DTC that is not placed on a day is named on screen
  (review40 A2/B9); a CRS-relevant intervention (vasopressor, oxygen, tocilizumab, corticosteroid) says
  that the CRS grade of that period may be higher (ASTCT 2019: these set or mask the grade).
* :func:`o2_flow`: an oxygen CMDOSE in any volume-per-time unit is a flow in L/min (pint; review40_crs B4).
* :func:`warn_oxygen`: an oxygen record without a device of the study format is not read (the study
  format requires ``o2_device`` for oxygen) and is named, with what it means for CRS (review40_crs A1).
* :func:`expand_ex`: an EX record over EXSTDTC..EXENDTC with a known EXDOSFRQ is one dose per
  administration day (SDTMIG 3.4 EX; review40 A4).
"""

from __future__ import annotations

import polars as pl

from cartlab.io.sdtm.common import PARTIAL, Ctx, _key
from cartlab.io.sdtm.files import ROW, DomainFile
from cartlab.units import conversion, parse_unit

#: interventions whose absence can lower a CRS grade (ASTCT 2019: vasopressor -> 3, oxygen -> 2-4;
#: tocilizumab / corticosteroid: the fever may be masked)
CRS_RELEVANT = ("vasopressor", "oxygen", "tocilizumab", "corticosteroid")
CRS_NOTE = ("the CRS grade of that period may be higher than printed (ASTCT 2019: a vasopressor is grade 3, "
            "oxygen grade 2 to 4, tocilizumab or a corticosteroid may mask the fever)")


def _at(dfile: DomainFile, df: pl.DataFrame) -> list[str]:
    seq = df.select(_key(dfile.col(f"{dfile.domain}SEQ")).alias("s"))["s"].to_list()
    return [f"USUBJID {u}, {dfile.domain}SEQ {q}" if q is not None else f"USUBJID {u}, record {r}"
            for u, q, r in zip(df["USUBJID"].cast(pl.String).to_list(), seq, df[ROW].to_list(), strict=True)]


def warn_partial(dfile: DomainFile, df: pl.DataFrame, ctx: Ctx, dtc: str, label: pl.Expr,
                 crs: pl.Expr | None = None) -> None:
    """One warning per file naming the records not read because ``dtc`` is partial (``__reason`` is
    :data:`PARTIAL`): record, ``label`` (param or treatment), the date as given and the CLI flag;
    ``crs`` marks the CRS-relevant ones, which add :data:`CRS_NOTE`. A warning is kept in the study."""
    from cartlab.io.sdtm.reader import SdtmIssue

    bad = df.filter(pl.col("__reason") == PARTIAL.format(dtc=dtc)).with_columns(
        label.cast(pl.String).alias("__lbl"), dfile.text(dtc).alias("__dtc"),
        (crs if crs is not None else pl.lit(False)).fill_null(False).alias("__crs"))
    if not bad.height:
        return
    what = [f"{at} ({lbl}) {dtc} '{d}'" for at, lbl, d in zip(_at(dfile, bad), bad["__lbl"].to_list(),
                                                             bad["__dtc"].to_list(), strict=True)]
    n_crs = int(bad["__crs"].sum())
    crs_txt = (f"; {n_crs} of them CRS-relevant ({', '.join(CRS_RELEVANT)}): {CRS_NOTE}" if n_crs else "")
    ctx.warnings.append(SdtmIssue(
        dfile.name, dtc, f"{bad.height:,} {dfile.domain} record(s) with a partial {dtc} not placed on a day, not read: "
        f"{'; '.join(what[:10])}{' ...' if len(what) > 10 else ''}{crs_txt} (--partial-dates impute places a start "
        "on the first day of its month or year, an end on the last)", bad[ROW].to_list(), "warning"))


def o2_flow(cm: DomainFile, ctx: Ctx, unit_raw: pl.Expr) -> tuple[pl.Expr, set[str]]:
    """(the oxygen flow in L/min from CMDOSE/CMDOSU, the CMDOSU spellings that are a flow): any unit pint
    reads as a volume per time (L/min, mL/min, L/h) is converted (project rule: units via pint;
    review40_crs B4); a spelling in the mapping's units table is read as mapped."""
    scale: dict[str, float] = {}
    for (u,) in cm.df.select(unit_raw.alias("u")).unique().drop_nulls().iter_rows():
        spelled = ctx.mapping.unit(u)
        if spelled.strip().lower().replace(" ", "") == "lpm":
            spelled = "L/min"
        try:
            parse_unit(spelled)
            c = conversion(spelled, "L/min")
        except Exception:  # UnitError, or pint's dimensionality errors: not a flow
            continue
        if c.offset == 0:
            scale[u] = c.scale
    flow = (cm.number("CMDOSE") * unit_raw.replace_strict(scale, default=None, return_dtype=pl.Float64))
    return flow.round_sig_figs(12), set(scale)


def warn_oxygen(cm: DomainFile, df: pl.DataFrame, ctx: Ctx, unit_raw: pl.Expr, flow_units: set[str]) -> None:
    """Warnings naming the oxygen records (category oxygen) that are not read for want of a device of the
    study format (the study format requires ``o2_device`` for oxygen and has no "unknown" device), and the
    oxygen records read whose CMDOSE unit is not a flow: the CRS grade of that day may be higher."""
    from cartlab.io.sdtm.reader import SdtmIssue

    o2 = df.filter((pl.col("__cat") == "oxygen") & pl.col("__reason").is_not_null()
                   & (pl.col("__reason").str.starts_with("SUPPCM O2DEV") | pl.col("__reason").str.starts_with("oxygen without")))
    if o2.height:
        given = o2.select(pl.when(pl.col("__dev_given").fill_null("") != "").then(pl.format("device '{}'", pl.col("__dev_given")))
                          .otherwise(pl.format("no device (CMTRT '{}')", cm.text("CMTRT"))).alias("g"))["g"].to_list()
        what = [f"{at}: {g}" for at, g in zip(_at(cm, o2), given, strict=True)]
        ctx.warnings.append(SdtmIssue(
            cm.name, "SUPPCM O2DEV", f"{o2.height:,} CM oxygen record(s) without a device cartlab knows (the study "
            f"format requires o2_device for oxygen), not read: {'; '.join(what[:10])}{' ...' if len(what) > 10 else ''}; "
            "oxygen was given, so the CRS grade of that day may be higher than printed (ASTCT 2019: any oxygen "
            "support is grade 2 to 4); give SUPPCM O2DEV as a study-format device or map the term in o2_devices",
            o2[ROW].to_list(), "warning"))
    bad = df.filter((pl.col("__cat") == "oxygen") & pl.col("__reason").is_null() & cm.number("CMDOSE").is_not_null()
                    & ~unit_raw.fill_null("").is_in(list(flow_units)) & supp_flow_missing(cm))
    if bad.height:
        what = [f"{at}: CMDOSE {d} {u!r}" for at, d, u in zip(
            _at(cm, bad), bad.select(cm.text("CMDOSE").alias("d"))["d"].to_list(),
            bad.select(unit_raw.alias("u"))["u"].to_list(), strict=True)]
        ctx.warnings.append(SdtmIssue(
            cm.name, "CMDOSU", f"{bad.height:,} CM oxygen record(s) whose CMDOSU is not a flow (volume per time): "
            f"o2_flow_lpm left empty: {'; '.join(what[:10])}{' ...' if len(what) > 10 else ''}; the CRS grade of a "
            "nasal-cannula day may then be a range (flow not known)", bad[ROW].to_list(), "warning"))


def supp_flow_missing(cm: DomainFile) -> pl.Expr:
    """No SUPPCM O2FLOW on the record (write_sdtm's flow, which wins over CMDOSE)."""
    return cm.col("__q_o2_flow_lpm").is_null()


#: source_note of an EX row expanded from a constant-dosing record
EXPANDED = "{dom} record {row} expanded: {frq} {start}..{end}"


def expand_ex(ex: DomainFile, out: pl.DataFrame, ctx: Ctx) -> pl.DataFrame:
    """An EX record with complete EXSTDTC and EXENDTC on a later day is one dose per administration day when
    EXDOSFRQ is in the mapping's ``dose_frequencies`` (SDTMIG 3.4 EX: a record may summarise a period of
    constant dosing; the total is EXDOSE x the administrations): days start, start + every_days, ... up to the
    end day; ``per_day`` > 1 sums the day's doses (EXDOSE x per_day). Another EXDOSFRQ (or none) keeps the one
    row on EXSTDTC, with a warning naming the record. ``out`` has the private columns ``__eday``, ``__frq``,
    ``__edtc``, ``__sdtc``, ``__car_t``; they are dropped."""
    from cartlab.io.sdtm.reader import SdtmIssue

    dom = ex.domain
    priv = ["__eday", "__frq", "__edtc", "__sdtc", "__car_t"]
    span = (pl.col("__eday").is_not_null() & pl.col("day").is_not_null()
            & (pl.col("__eday").floor() > pl.col("day").floor()))
    freqs = ctx.mapping.dose_frequencies
    known = span & pl.col("__frq").is_in(list(freqs)) & ~pl.col("__car_t")
    unknown = out.filter(span & ~known)
    if unknown.height:
        what = [f"{dom} record {r} (USUBJID {u}, {a}): {dom}ENDTC {e} not used, {dom}DOSFRQ "
                f"{f if f else '(empty)'}{' (a CAR-T: a split infusion needs one record per bag)' if c else ''}"
                for r, u, a, e, f, c in unknown.select("src_row", "subject_id", "agent", "__edtc", "__frq",
                                                       "__car_t").iter_rows()]
        ctx.warnings.append(SdtmIssue(
            ex.name, f"{dom}DOSFRQ", f"{unknown.height:,} {dom} record(s) over several days read as one dose on "
            f"{dom}STDTC: {'; '.join(what[:10])}{' ...' if len(what) > 10 else ''} (known frequencies: "
            f"{', '.join(freqs)}; give one record per administration or a known {dom}DOSFRQ)",
            unknown["src_row"].to_list(), "warning"))
    if not out.filter(known).height:
        return out.drop(priv)
    rest = out.filter(~known)
    exp = out.filter(known).with_columns(
        pl.col("__frq").replace_strict({k: int(v.get("every_days", 1)) for k, v in freqs.items()},
                                       return_dtype=pl.Int64).alias("__every"),
        pl.col("__frq").replace_strict({k: int(v.get("per_day", 1)) for k, v in freqs.items()},
                                       return_dtype=pl.Int64).alias("__per"),
    ).with_columns(pl.int_ranges(0, pl.col("__eday").floor().cast(pl.Int64) - pl.col("day").floor().cast(pl.Int64) + 1,
                                 pl.col("__every")).alias("__k")).explode("__k")
    note = pl.format(EXPANDED.replace("{dom}", dom).replace("{row}", "{}").replace("{frq}", "{}")
                     .replace("{start}", "{}").replace("{end}", "{}"), pl.col("src_row"), pl.col("__frq"),
                     pl.col("__sdtc"), pl.col("__edtc"))
    note = pl.when(pl.col("__per") > 1).then(pl.format("{} ({} administrations of {} {} a day, summed)", note,
                                                        pl.col("__per"), pl.col("orig_dose"), pl.col("orig_unit"))
                                             ).otherwise(note)
    exp = exp.with_columns(
        pl.when(pl.col("__k") == 0).then(pl.col("day")).otherwise(pl.col("day").floor() + pl.col("__k")).alias("day"),
        pl.when(pl.col("__k") == 0).then(pl.col("datetime")).otherwise(None).alias("datetime"),
        (pl.col("dose") * pl.col("__per")).alias("dose"),
        (pl.col("orig_dose") * pl.col("__per")).alias("orig_dose"),
        pl.concat_str([pl.col("source_note"), note], separator="; ", ignore_nulls=True).alias("source_note"),
    ).drop("__every", "__per", "__k")
    return pl.concat([rest, exp], how="vertical_relaxed").sort("src_row", "day").drop(priv)
