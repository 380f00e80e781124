"""SDTM DM, EX/EC, CM and the event domains (AE, CE, DS, DD, PR, RS) -> canonical tables."""

from __future__ import annotations

import json

import polars as pl

from cartlab.io.schema import O2_DEVICES
from cartlab.io.sdtm import common as sc
from cartlab.io.sdtm import subjects as subj
from cartlab.io.sdtm.dates import parse_dtc
from cartlab.io.sdtm.files import ROW, DomainFile
from cartlab.io.sdtm.intervention_rules import CRS_RELEVANT, expand_ex, o2_flow, warn_oxygen, warn_partial
from cartlab.io.sdtm.mapping import SdtmMapping
from cartlab.io.sdtm.partial import ONGOING, impute_event_starts
from cartlab.io.sdtm.terms import indication, warn_indications, warn_unread
from cartlab.io.study_folder import dose_unit
from cartlab.kinetics.agents import car_t_agent_expr
from cartlab.units import UnitError, parse_unit


def upper(dfile: DomainFile, var: str) -> pl.Expr:
    return dfile.text(var).str.to_uppercase().str.replace_all(r"\s+", " ").str.strip_chars()


# ---------------------------------------------------------------------------------------------
# day 0


def exposure_reason(ex: DomainFile, agent: pl.Expr) -> pl.Expr:
    """Why an EX/EC record is no exposure (null: it is one). SDTMIG EC: ECMOOD "SCHEDULED" records
    are intended doses, "PERFORMED" ones actual doses (an empty --MOOD, as in EX, is an actual one);
    "ECOCCUR value of "N" indicates a dose was not taken, not given, or missed"; --STAT NOT DONE is
    a question not answered; "Dose amount variables ... must not be set to zero (0) as an
    alternative method for indicating doses not taken": a CAR-T dose of 0 (``agent`` recognised as a
    CAR-T) is no exposure. A dose 0 of another treatment (PLACEBO 0 mg, as in the CDISC pilot) is
    kept as it is."""
    dom = ex.domain
    mood = upper(ex, f"{dom}MOOD")
    return sc.first_reason(
        (mood.is_not_null() & (mood != "") & (mood != "PERFORMED"),
         pl.lit(f"{dom}MOOD ") + mood + pl.lit(": not an exposure (SDTMIG EC: only PERFORMED records are doses given)")),
        (upper(ex, f"{dom}OCCUR") == "N", f"not given ({dom}OCCUR = N)"),
        (upper(ex, f"{dom}STAT") == "NOT DONE", f"not done ({dom}STAT)"),
        ((ex.number(f"{dom}DOSE") == 0) & car_t_agent_expr(agent),
         f"{dom}DOSE 0 of a CAR-T: not an exposure (SDTMIG: a dose is not set to 0 to mean not given)"),
    )


#: the reason of a record of a subject whose CAR-T exposure has no complete date (``__noanchor``)
NO_CART_DATE = "the CAR-T exposure's {var} is {what} ({text}): day 0 cannot be placed (DM.RFXSTDTC is not used)"


#: the reason of a subject whose partial CAR-T date may fall on or before its first dated CAR-T exposure
PARTIAL_BEFORE = ("the CAR-T exposure's {var} is partial ({what}), and may fall on or before the first fully "
                  "dated CAR-T exposure (record {row}, {dtc}): day 0 cannot be placed")


def _partial_before(given: pl.DataFrame, cart: pl.DataFrame, var: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(first dated CAR-T per subject without the subjects that lose day 0, their ``__noanchor``).

    A given CAR-T exposure whose --STDTC is partial (``2021-05``: the period 2021-05-01 .. 05-31;
    ``2021`` or ``2021---15``: the year; no year: any time) may be the first infusion when its period
    starts on or before the date of the first fully dated CAR-T exposure: day 0 is then unknown, as
    the FHIR reader rules (session 34). A period wholly after that date changes nothing."""
    dtc = pl.col("__dtc").str.strip_chars()
    year = dtc.str.extract(r"^(\d{4})", 1).cast(pl.Int32, strict=False)
    month = dtc.str.extract(r"^\d{4}-(\d{2})", 1).cast(pl.Int32, strict=False).fill_null(1)
    start = pl.date(year, month, 1)
    hit = given.filter(pl.col("__st") == "partial").join(cart, on="subject_id", how="inner", suffix="_first").filter(
        year.is_null() | (start <= pl.col("__ex_first").dt.date()))
    before = hit.sort("subject_id", ROW).group_by("subject_id", maintain_order=True).agg(
        pl.format(PARTIAL_BEFORE.replace("{var}", var).replace("{what}", "{}").replace("{row}", "{}")
                  .replace("{dtc}", "{}"),
                  pl.format("{}, record {}", pl.col("__dtc"), pl.col(ROW)).str.join("; "),
                  pl.col("__exrow").first(), pl.col("__exdtc").first()).alias("__noanchor"))
    return cart.filter(~pl.col("subject_id").is_in(before["subject_id"].implode())), before


def anchors(dm: DomainFile, ex: DomainFile | None, ex_agents: dict[str, str] | None = None) -> pl.DataFrame:
    """Per subject: day 0 = the date of the first CAR-T exposure in EX (or EC; else SUPPDM DAY0DTC, the
    day 0 write_sdtm states; else DM.RFXSTDTC), at
    midnight; ``__nominal`` when SUPPDM NOMANCH = Y (write_sdtm's placeholder calendar). The
    treatment name is read through the mapping's ``ex_agents``, as the doses are (a sponsor code for
    the CAR-T product anchors day 0 too). Only exposures anchor (:func:`exposure_reason`: not a
    SCHEDULED, not-given, not-done or zero dose). ``__infdtm``: the --STDTC text of that first CAR-T
    exposure when it gives a clock time (subjects.infusion_datetime, as the FHIR reader sets it from
    the first CAR-T MedicationAdministration); null when the first exposure is dated without a time.

    A subject whose CAR-T exposures all have a partial or empty --STDTC gets no day 0 (``__noanchor``
    says why): DM.RFXSTDTC is the first exposure to *any* study treatment, often the
    lymphodepletion, and would shift every day silently (missing is not negative). Neither does a
    subject with a partial CAR-T date whose period can include or precede the first fully dated
    CAR-T exposure (:func:`_partial_before`)."""
    rfx = parse_dtc(dm.col("RFXSTDTC"))
    dm.fail(rfx.struct.field("status") == "invalid", "RFXSTDTC", sc.BAD_DTC)
    rfst = parse_dtc(dm.col("RFSTDTC"))  # the --DY reference (SDTMIG 4.4.4), read by study_day_fallback
    # SUPPDM DAY0DTC (write_sdtm: the date of the first CAR-T infusion, = its DM.RFSTDTC) comes before
    # RFXSTDTC, which write_sdtm writes as the first exposure to any treatment (SDTMIG)
    d0 = parse_dtc(dm.col("__q_day0_date"))
    dm.fail((d0.struct.field("status") == "invalid") & dm.col("__q_day0_date").is_not_null(), "SUPPDM DAY0DTC", sc.BAD_DTC)
    dmf = dm.df.select(
        pl.col("USUBJID").cast(pl.String).alias("subject_id"),
        pl.when(d0.struct.field("status") == "ok").then(d0.struct.field("dt").dt.truncate("1d")).alias("__day0"),
        pl.when(rfx.struct.field("status") == "ok").then(rfx.struct.field("dt").dt.truncate("1d")).alias("__rfx"),
        pl.when(rfst.struct.field("status") == "ok").then(rfst.struct.field("dt").dt.truncate("1d")).alias("__rfst"),
        (dm.col("__q_nominal_anchor").cast(pl.String).str.to_uppercase() == "Y").fill_null(False).alias("__nominal"),
    )
    dom = ex.domain if ex is not None else "EX"
    if ex is not None and ex.has(f"{dom}TRT") and ex.has(f"{dom}STDTC"):
        p = parse_dtc(ex.col(f"{dom}STDTC"))
        agent = upper(ex, f"{dom}TRT").replace_strict(ex_agents or {}, default=ex.text(f"{dom}TRT"),
                                                      return_dtype=pl.String)
        ok = p.struct.field("status") == "ok"
        given = ex.df.filter(car_t_agent_expr(agent) & exposure_reason(ex, agent).is_null()).select(
            pl.col("USUBJID").cast(pl.String).alias("subject_id"),
            pl.when(ok).then(p.struct.field("dt").dt.truncate("1d")).alias("__ex"),
            pl.when(ok).then(p.struct.field("dt")).alias("__exdt"),
            pl.when(ok & p.struct.field("has_time")).then(ex.text(f"{dom}STDTC")).alias("__extext"),
            p.struct.field("status").alias("__st"), ex.text(f"{dom}STDTC").alias("__dtc"), pl.col(ROW),
        )
        cart = given.filter(pl.col("__exdt").is_not_null())
        # the first CAR-T exposure (earliest date and time; a date without a time counts as its midnight)
        cart = cart.sort("subject_id", "__exdt", pl.col("__extext").is_null(), maintain_order=True).group_by(
            "subject_id", maintain_order=True).first().select(
            "subject_id", "__ex", pl.col("__extext").alias("__infdtm"), pl.col(ROW).alias("__exrow"),
            pl.col("__dtc").alias("__exdtc"))
        undated = given.filter(~pl.col("subject_id").is_in(cart["subject_id"].implode())).group_by(
            "subject_id", maintain_order=True).agg(
            pl.format(NO_CART_DATE.replace("{var}", f"{dom}STDTC").replace("{what}", "{}").replace("{text}", "{}"),
                      pl.when(pl.col("__st").first() == "missing").then(pl.lit("empty")).otherwise(pl.lit("partial")),
                      pl.col("__dtc").fill_null("").str.join(", ")).alias("__noanchor"))
        cart, before = _partial_before(given, cart, f"{dom}STDTC")
        undated = pl.concat([undated, before], how="vertical_relaxed")
        dmf = dmf.join(cart.drop("__exrow", "__exdtc"), on="subject_id", how="left").join(
            undated, on="subject_id", how="left")
    else:
        dmf = dmf.with_columns(pl.lit(None, dtype=pl.Datetime("us")).alias("__ex"),
                               pl.lit(None, dtype=pl.String).alias("__infdtm"),
                               pl.lit(None, dtype=pl.String).alias("__noanchor"))
    fallback = pl.col("__ex").is_null() & pl.col("__noanchor").is_null()
    from_rfx = fallback & pl.col("__day0").is_null() & pl.col("__rfx").is_not_null()
    return dmf.select("subject_id",
                      pl.coalesce("__ex", pl.when(fallback).then(pl.coalesce("__day0", "__rfx"))).alias("__anchor"),
                      "__nominal",
                      pl.when(pl.col("__ex").is_not_null() & ~pl.col("__nominal")).then(pl.col("__infdtm"))
                      .alias("__infdtm"),
                      pl.when(from_rfx).then(pl.lit("RFXSTDTC")).alias("__anchor_from"),
                      "__noanchor", pl.col("__rfx").alias("__rfxdate"), "__rfst")


def rfxstdtc_anchor_warnings(anc: pl.DataFrame, ex: DomainFile | None,
                             ex_agents: dict[str, str] | None = None) -> list[tuple[str, str, list[int]]]:
    """Warnings about day 0 (subject, message, EX record numbers):

    * a subject whose day 0 is DM.RFXSTDTC although EX/EC has records for them, none a CAR-T
      exposure: either no treatment name is recognised as a CAR-T (a code such as CTL019 needs
      ``ex_agents``) or the CAR-T records are no exposures (:func:`exposure_reason`). SDTMIG's
      RFXSTDTC is the first exposure to any study treatment (often the lymphodepletion), so this
      would shift every study day by the lead time without a word;
    * a subject left without day 0 because the CAR-T exposure's date is partial or empty, or because a
      partial CAR-T date may fall on or before the first fully dated one (the warning names its record)."""
    if ex is None or "__anchor_from" not in anc.columns:
        return []
    dom = ex.domain
    if not ex.has(f"{dom}TRT"):
        return []
    out = []
    agent = upper(ex, f"{dom}TRT").replace_strict(ex_agents or {}, default=ex.text(f"{dom}TRT"), return_dtype=pl.String)
    recs = ex.df.select(pl.col("USUBJID").cast(pl.String).alias("subject_id"), ex.text(f"{dom}TRT").alias("trt"),
                        car_t_agent_expr(agent).fill_null(False).alias("__cart"), exposure_reason(ex, agent).alias("__why"),
                        pl.col(ROW))
    nodate = anc.filter(pl.col("__noanchor").is_not_null()).select("subject_id", "__noanchor", "__rfxdate")
    for sid, why, rfx in nodate.iter_rows():
        rows = recs.filter((pl.col("subject_id") == sid) & pl.col("__cart") & pl.col("__why").is_null())[ROW].to_list()
        rfx_txt = f" (DM.RFXSTDTC {rfx:%Y-%m-%d} is the first exposure to any study treatment, often the " \
                  "lymphodepletion, and is not used)" if rfx is not None and "may fall on or before" not in why else ""
        out.append((sid, f"USUBJID {sid}: {why.split(': day 0')[0]}, so the subject has no day 0{rfx_txt}: none of "
                         "the subject's dated records can be placed on a day (counted as not mapped in the mapping "
                         f"report); give the complete date of the CAR-T infusion in {dom}STDTC", sorted(rows)))
    via = anc.filter(pl.col("__anchor_from") == "RFXSTDTC").select("subject_id", "__anchor")
    if via.height == 0:
        return out
    recs = recs.join(via, on="subject_id", how="inner")
    # (the CAR-T was recognised but gave no exposure, the warning's cause) -> (subjects, records)
    by_names: dict[tuple[bool, str], tuple[list[str], list[int]]] = {}
    for (sid,), g in recs.group_by("subject_id", maintain_order=True):
        cart = g.filter(pl.col("__cart"))
        if cart.height:  # recognised as CAR-T, but no exposure (scheduled, not given, not done, dose 0)
            why = "; ".join(sorted(set(cart["__why"].drop_nulls().to_list())))
            key = (True, f"the CAR-T records of {dom} are no exposures ({why})")
        else:
            key = (False, f"no {dom}TRT is recognised as a CAR-T ({', '.join(sorted({str(t) for t in g['trt'].drop_nulls()}))})")
        ids, rows = by_names.setdefault(key, ([], []))
        ids.append(f"{sid} ({g['__anchor'][0]:%Y-%m-%d})")
        rows.extend(g[ROW].to_list())
    for (recognised, cause), (ids, rows) in by_names.items():
        who = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        head = (f"{cause}, so day 0 is DM.RFXSTDTC (the first exposure to any study treatment, often "
                "the lymphodepletion) for USUBJID " + who)
        tail = (": check that the CAR-T was given, or every study day is shifted" if recognised else
                ": if the CAR-T is one of these, name it in the mapping's ex_agents (e.g. 'ex_agents: "
                "{CTL019: CAR-T}'), or every study day is shifted")
        out.append((who, head + tail, sorted(rows)))
    return out


# ---------------------------------------------------------------------------------------------
# DM


def map_dm(dm: DomainFile, ctx: sc.Ctx) -> tuple[pl.DataFrame, pl.DataFrame]:
    dm.check_numbers("AGE")
    dm.fail(pl.col("USUBJID").is_null(), "USUBJID", "USUBJID is empty")
    dm.fail(pl.col("USUBJID").is_duplicated(), "USUBJID", "a subject is given twice in DM")
    sc.place(dm, ctx, "RFPENDTC", prefix="end")
    # review46 #4, #7: age on day 0 from BRTHDTC, else AGE/AGEU (noted); SEX as the study folder reads it
    age_years, age_note = subj.age(dm, ctx)
    subj.warn_age_units(dm, ctx, age_years)
    subj.warn_sex(dm, ctx)
    df = dm.df
    out = df.select(
        pl.col("USUBJID").cast(pl.String).alias("subject_id"),
        subj.sex(dm, ctx).alias("sex"),
        age_years.alias("age_years"),
        sc.supp_col(dm, "weight_kg").alias("weight_kg"),
        sc.supp_col(dm, "height_cm").alias("height_cm"),
        sc.supp_col(dm, "disease").alias("disease"),
        sc.supp_col(dm, "target").alias("target"),
        pl.when(~pl.col("__nominal").fill_null(False)).then(pl.col("__anchor").dt.strftime("%Y-%m-%d")).alias("infusion_date"),
        # SUPPDM INFDTM (write_sdtm's) wins; else the clock time of the first CAR-T exposure in EX
        sc.supp_col(dm, "infusion_datetime").fill_null(pl.col("__infdtm")).alias("infusion_datetime"),
        sc.supp_col(dm, "last_followup_day").fill_null(pl.when(pl.col("end__dstatus") == "ok").then(pl.col("end__day")))
        .alias("last_followup_day"),
        sc.supp_col(dm, "source").alias("source"),
        pl.concat_str([sc.supp_col(dm, "source_note"), age_note], separator="; ", ignore_nulls=True)
        .replace("", None).alias("source_note"),
        _dm_extra(dm),
        *sc.provenance(dm),
    )
    return out, sc.status(df, pl.lit("DM"), pl.lit("subjects"), pl.lit(None, dtype=pl.String))


#: DM variables with no canonical subjects column, kept in subjects.extra (the ADaM ADSL writes
#: them as SITEID, RACE, ARM; write_sdtm writes DM.COUNTRY back); a SUPPDM EXTRA key of the same name wins
DM_EXTRA = {"SITEID": "site", "RACE": "race", "ARM": "arm", "COUNTRY": "country"}


def _dm_extra(dm: DomainFile) -> pl.Expr:
    """``extra`` of a DM record: the SUPPDM EXTRA / unknown QNAM JSON, with DM.SITEID, DM.RACE and
    DM.ARM added as ``site``, ``race``, ``arm`` when given."""
    present = {var: key for var, key in DM_EXTRA.items() if dm.has(var)}
    base = sc.extra_json(dm)
    if not present:
        return base

    def merge(r: dict) -> str | None:
        d = {key: r[var] for var, key in present.items() if r[var] is not None}
        d.update(json.loads(r["__x"]) if r["__x"] else {})
        return json.dumps(d) if d else None

    return pl.struct(base.alias("__x"), *[dm.text(var).alias(var) for var in present]).map_elements(
        merge, return_dtype=pl.String).alias("extra")


def dm_deaths(dm: DomainFile, ctx: sc.Ctx, have_death: set[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Death events from DM.DTHDTC, for subjects without a death event from DS/CE (or a DD mapping of the user)."""
    if not dm.has("DTHDTC"):
        return pl.DataFrame(), pl.DataFrame()
    sc.place(dm, ctx, "DTHDTC", prefix="dth")
    df = dm.df.filter(pl.col("DTHDTC").is_not_null())
    dfile = DomainFile(dm.domain, dm.path, dm.fmt, dm.sha256, df)
    reason = sc.first_reason(
        (pl.col("USUBJID").cast(pl.String).is_in(list(have_death)), "death already given by DS/DD/CE"),
        (pl.col("dth__dstatus").is_in(["partial", "imputed"]) & pl.col("__anchor").is_not_null(),
         "partial date in DTHDTC: read by option partial_death_dates (see the warning)"),
        *sc.time_reason("dth", "DTHDTC"),
    )
    df = df.with_columns(reason.alias("__reason"))
    out = df.filter(pl.col("__reason").is_null()).select(
        pl.col("USUBJID").cast(pl.String).alias("subject_id"), pl.col("dth__day").alias("day"),
        pl.col("dth__datetime").alias("datetime"), pl.lit("death").alias("event"),
        pl.lit("DM.DTHDTC").alias("detail"), *sc.provenance(dfile),
    )
    # DM records are counted once (as subjects); the DTHDTC rows are an extra mapping, reported apart
    return out, sc.status(df, pl.lit("DTHDTC"), pl.lit("events:death"), pl.col("__reason"))


# ---------------------------------------------------------------------------------------------
# EX / EC


def map_ex(ex: DomainFile, ctx: sc.Ctx) -> tuple[pl.DataFrame, pl.DataFrame]:
    dom = ex.domain
    ex.require("USUBJID", f"{dom}TRT")
    ex.check_numbers(f"{dom}DOSE")
    sc.place(ex, ctx, f"{dom}STDTC")
    sc.place(ex, ctx, f"{dom}ENDTC", prefix="e", end=True)  # review40 A4: a constant-dosing period
    units = ex.df.select(ex.text(f"{dom}DOSU")).unique().to_series().drop_nulls().to_list()
    scale, canon = {}, {}
    for u in units:
        try:
            canon[u], scale[u] = dose_unit(ctx.mapping.unit(u))
        except UnitError:
            pass
    trt = ex.text(f"{dom}TRT")
    agent = upper(ex, f"{dom}TRT").replace_strict(ctx.mapping.ex_agents, default=trt, return_dtype=pl.String)
    dose = ex.number(f"{dom}DOSE")
    u = ex.text(f"{dom}DOSU")
    df = ex.df.with_columns(agent.alias("__agent"), sc.first_reason(
        (pl.col("USUBJID").is_null() | ~pl.col("USUBJID").cast(pl.String).is_in(ctx.subjects.implode()), "subject not in DM"),
        (trt.is_null(), f"{dom}TRT empty"),
        (exposure_reason(ex, agent).is_not_null(), exposure_reason(ex, agent)),
        (dose.is_null(), f"no dose ({dom}DOSE empty)"),
        (u.is_null() | ~u.is_in(list(scale)), pl.lit(f"{dom}DOSU '") + u.fill_null("") +
         pl.lit("' is not a dose unit (cells/kg, cells, mg/m2, mg, mg/kg)")),
        *sc.time_reason("", f"{dom}STDTC"),
    ).alias("__reason"))
    out = df.filter(pl.col("__reason").is_null()).select(
        pl.col("USUBJID").cast(pl.String).alias("subject_id"), pl.col("__day").alias("day"),
        pl.col("__datetime").alias("datetime"), pl.col("__agent").alias("agent"),
        (dose * u.replace_strict(scale, default=None, return_dtype=pl.Float64)).round_sig_figs(12).alias("dose"),
        u.replace_strict(canon, default=None, return_dtype=pl.String).alias("unit"),
        dose.alias("orig_dose"), ctx.mapping.unit_expr(u).alias("orig_unit"),  # a spelling cartlab reads
        sc.supp_col(ex, "source").alias("source"), sc.imputed_note([("", f"{dom}STDTC")], ex), sc.extra_json(ex),
        *sc.provenance(ex),
        pl.when(pl.col("e__dstatus") == "ok").then(pl.col("e__day")).alias("__eday"),
        upper(ex, f"{dom}DOSFRQ").alias("__frq"), ex.text(f"{dom}ENDTC").alias("__edtc"),
        ex.text(f"{dom}STDTC").alias("__sdtc"), car_t_agent_expr(pl.col("__agent")).fill_null(False).alias("__car_t"),
    )
    out = expand_ex(ex, out, ctx)
    _warn_zero_dose(ex, df, ctx)
    warn_partial(ex, df, ctx, f"{dom}STDTC", pl.col("__agent"))
    code = pl.when(car_t_agent_expr(pl.col("__agent"))).then(pl.lit("CAR-T")).otherwise(pl.col("__agent"))
    return out, sc.status(df, code, pl.lit("doses"), pl.col("__reason"))


def _warn_zero_dose(ex: DomainFile, df: pl.DataFrame, ctx: sc.Ctx) -> None:
    """One warning naming the records with --DOSE 0 (SDTMIG EC: a dose is not set to 0 to mean a dose
    not taken; such a record is no exposure and never day 0)."""
    from cartlab.io.sdtm.reader import SdtmIssue

    dom = ex.domain
    zero = df.filter(pl.col("__reason").str.starts_with(f"{dom}DOSE 0")).select(
        pl.col(ROW), pl.col("USUBJID").cast(pl.String), ex.text(f"{dom}TRT").alias("__trt"))
    if zero.height:
        what = ", ".join(f"USUBJID {u} {t}" for u, t in zero.select("USUBJID", "__trt").unique(maintain_order=True).rows()[:10])
        ctx.warnings.append(SdtmIssue(ex.name, f"{dom}DOSE", f"{zero.height:,} CAR-T {dom} record(s) with {dom}DOSE 0 ({what}): "
                                      "not an exposure, not a dose and never day 0 (SDTMIG: a dose is not set to 0 to "
                                      "mean not given; leave the record out or use --OCCUR = N)",
                                      zero[ROW].to_list(), "warning"))


# ---------------------------------------------------------------------------------------------
# CM


def _term_table(m: SdtmMapping, terms: list[str], routes: list[str | None]) -> dict:
    """(term, route) -> (category, agent, o2_device) of the first matching cm_terms entry."""
    out = {}
    for t in terms:
        for r in routes:
            for e in m.cm_terms:
                if e["term"] == t and (r is None or r not in e["exclude_routes"]):
                    out[(t, r)] = (e["category"], e.get("agent"), e.get("o2_device"))
                    break
    return out


def not_occurred(dfile: DomainFile, verb: str) -> list[tuple[pl.Expr, str]]:
    """The reasons of a CM / event record that states no occurrence: --OCCUR = N (SDTMIG: --PRESP
    and --OCCUR "indicate whether the intervention ... was pre-specified and whether it occurred";
    CEOCCUR "indicate[s] whether or not a clinical event occurred") or --STAT = NOT DONE (the
    question was not asked or not answered). An empty --OCCUR is the usual, unsolicited record: it
    occurred."""
    dom = dfile.domain
    return [(upper(dfile, f"{dom}OCCUR") == "N", f"not {verb} ({dom}OCCUR = N)"),
            (upper(dfile, f"{dom}STAT") == "NOT DONE", f"not done ({dom}STAT)")]


#: the mapping report's reason of a CM record whose term no table names
CM_UNMAPPED = "CM term not in the intervention mapping (cm_terms / cm_categories, or its CMROUTE is excluded)"


def map_cm(cm: DomainFile, ctx: sc.Ctx) -> tuple[pl.DataFrame, pl.DataFrame]:
    m = ctx.mapping
    cm.require("USUBJID", "CMTRT")
    cm.check_numbers("CMDOSE")
    sc.place(cm, ctx, "CMSTDTC", prefix="s")
    sc.place(cm, ctx, "CMENDTC", prefix="e", end=True)
    df = cm.df
    route = upper(cm, "CMROUTE")
    terms = set()
    for var in ("CMDECOD", "CMTRT"):
        terms |= set(df.select(upper(cm, var)).to_series().drop_nulls().to_list())
    routes = df.select(route).to_series().unique().to_list()
    table = _term_table(m, sorted(terms), routes)
    keys = [f"{t}\x1f{r}" for t, r in table]

    def look(var: str, i: int) -> pl.Expr:
        k = upper(cm, var) + pl.lit("\x1f") + route.fill_null("None")
        vals = {kk: v[i] for kk, v in zip(keys, table.values(), strict=True)}
        return k.replace_strict(vals, default=None, return_dtype=pl.String)

    cat_direct = upper(cm, "CMCAT").replace_strict(m.cm_categories, default=None, return_dtype=pl.String)
    category = pl.coalesce(cat_direct, look("CMDECOD", 0), look("CMTRT", 0))
    # SUPPCM AGENT (write_sdtm: the agent exactly as in the study) wins; NOAGENT Y: the study had none
    # (CMTRT, required, then holds the category)
    no_agent = (sc.supp_col(cm, "no_agent").cast(pl.String).str.strip_chars().str.to_uppercase() == "Y").fill_null(False)
    agent = pl.when(no_agent).then(pl.lit(None, dtype=pl.String)).otherwise(pl.coalesce(
        sc.supp_col(cm, "agent").cast(pl.String), look("CMDECOD", 1), look("CMTRT", 1), cm.text("CMTRT")))
    # each variable is looked up on its own and the first device found wins (review46 #1): the usual
    # oxygen record has CMDOSFRM GAS (a dosage form) and CMROUTE RESPIRATORY (INHALATION), which are no
    # devices; the device is then in CMTRT (HIGH FLOW NASAL CANNULA), which must still be tried
    device_text = pl.coalesce(*[upper(cm, v).replace_strict(m.o2_devices, default=None, return_dtype=pl.String)
                                for v in ("CMDOSFRM", "CMROUTE", "CMTRT")])
    # SUPPCM O2DEV: a study-format code (nasal_cannula, any case) or a term of the o2_devices mapping
    # (NASAL CANNULA), read like CMDOSFRM/CMROUTE; any other value is not guessed (the record is not
    # mapped, with the value in the reason)
    supp_dev = sc.supp_col(cm, "o2_device").cast(pl.String).str.strip_chars()
    supp_up = supp_dev.str.to_uppercase()
    codes = {c.upper(): c for c in O2_DEVICES}
    supp_norm = pl.coalesce(supp_up.replace_strict(codes, default=None, return_dtype=pl.String),
                            supp_up.str.replace_all(r"[\s-]+", "_").replace_strict(codes, default=None, return_dtype=pl.String),
                            supp_up.replace_strict(m.o2_devices, default=None, return_dtype=pl.String))
    device = pl.coalesce(supp_norm, look("CMDECOD", 2), look("CMTRT", 2), device_text)
    unit_raw = cm.text("CMDOSU")
    unit = m.unit_expr(unit_raw)
    okunits = []
    for (u,) in df.select(unit_raw).unique().drop_nulls().iter_rows():
        try:
            parse_unit(m.unit(u))
            okunits.append(u)
        except UnitError:
            pass
    df = df.with_columns(category.alias("__cat"), agent.alias("__agent"), device.alias("__dev"),
                         supp_dev.alias("__dev_given"), supp_norm.alias("__dev_norm"))
    reason = sc.first_reason(
        (pl.col("USUBJID").is_null() | ~pl.col("USUBJID").cast(pl.String).is_in(ctx.subjects.implode()), "subject not in DM"),
        *not_occurred(cm, "given"),
        (pl.col("__cat").is_null(), CM_UNMAPPED),
        (pl.col("__dev_given").is_not_null() & (pl.col("__dev_given") != "") & pl.col("__dev_norm").is_null(),
         pl.format("SUPPCM O2DEV '{}' is not an oxygen device of the study format ({}) nor of the o2_devices "
                   "mapping", pl.col("__dev_given"), pl.lit(", ".join(O2_DEVICES)))),
        ((pl.col("__cat") == "oxygen") & pl.col("__dev").is_null(), "oxygen without a device (o2_device is required)"),
        *sc.time_reason("s", "CMSTDTC"),
        ((pl.col("e__dstatus") == "ok") & (pl.col("e__day") < pl.col("s__day")), "CMENDTC before CMSTDTC"),
    )
    df = df.with_columns(reason.alias("__reason"))
    # CMENRTPT / CMENRF ONGOING or AFTER with no complete CMENDTC: continuing (end set by the reader,
    # partial.ongoing_ends); a partial CMENDTC otherwise: a missing end (study format: "A missing end means a
    # single administration at the start time"), never a dropped record (review38 A2)
    rel = [(v, upper(cm, v)) for v in ("CMENRTPT", "CMENRF") if cm.has(v)]
    ongoing_var = pl.coalesce([pl.when(e.is_in(list(ONGOING))).then(pl.lit(v)) for v, e in rel]) if rel else pl.lit(None, dtype=pl.String)
    ongoing_val = pl.coalesce([pl.when(e.is_in(list(ONGOING))).then(e) for _, e in rel]) if rel else pl.lit(None, dtype=pl.String)
    df = df.with_columns(ongoing_var.alias("__ongoing_var"), ongoing_val.alias("__ongoing_val"))
    ongoing = pl.col("__ongoing_var").is_not_null() & pl.col("e__dstatus").is_in(["missing", "partial"])
    end_partial = (pl.col("e__dstatus") == "partial") & ~ongoing
    df = df.with_columns(pl.when(end_partial).then(
        pl.lit("CMENDTC partial ('") + cm.col("CMENDTC").cast(pl.String)
        + pl.lit("'): end unknown, read as a missing end (a single administration at the start)")).alias("e__pnote"))
    cm.df = df
    _warn_cm_ends(cm, df, end_partial, ongoing, ctx)
    is_o2 = pl.col("__cat") == "oxygen"
    flow, flow_units = o2_flow(cm, ctx, unit_raw)  # review40_crs B4: mL/min, L/h ... converted with pint
    flow_from_dose = is_o2 & unit_raw.is_in(list(flow_units))
    dose_ok = unit_raw.is_in(okunits) & ~flow_from_dose & ~is_o2
    warn_oxygen(cm, df, ctx, unit_raw, flow_units)
    warn_partial(cm, df, ctx, "CMSTDTC", pl.format("{} {}", pl.col("__cat").fill_null("?"), pl.col("__agent").fill_null("")),
                 pl.col("__cat").is_in(list(CRS_RELEVANT)))
    # CMINDC: the indications table, then its prefixes; another text by option unknown_indication (review46 #2)
    indc, indc_note = indication(cm, ctx)
    warn_indications(cm, df, ctx)
    warn_unread(cm, df, ctx, CM_UNMAPPED, ["CMDECOD", "CMTRT"], "drug or therapy term (CMDECOD, else CMTRT)",
                "cm_terms (or cm_categories)")
    out = df.filter(pl.col("__reason").is_null()).select(
        pl.col("USUBJID").cast(pl.String).alias("subject_id"),
        pl.col("s__day").alias("start_day"),
        pl.when(pl.col("e__dstatus").is_in(["ok", "imputed"])).then(pl.col("e__day")).alias("end_day"),
        pl.col("s__datetime").alias("start_datetime"), pl.col("e__datetime").alias("end_datetime"),
        pl.col("__cat").alias("category"), pl.col("__agent").alias("agent"),
        pl.when(dose_ok).then(cm.number("CMDOSE")).alias("dose"),
        pl.when(dose_ok).then(unit).alias("dose_unit"),
        pl.when(is_o2).then(pl.col("__dev")).alias("o2_device"),
        sc.supp_col(cm, "o2_flow_lpm").fill_null(pl.when(flow_from_dose).then(flow)).alias("o2_flow_lpm"),
        sc.supp_col(cm, "fio2").alias("fio2"),
        indc.alias("indication"),
        sc.supp_col(cm, "source").alias("source"),
        pl.concat_str([sc.imputed_note([("s", "CMSTDTC"), ("e", "CMENDTC")], cm), indc_note], separator="; ",
                      ignore_nulls=True).replace("", None).alias("source_note"),
        sc.extra_json(cm), *sc.provenance(cm), ongoing.alias("__ongoing"), "__ongoing_var", "__ongoing_val",
    )
    code = pl.coalesce(upper(cm, "CMDECOD"), upper(cm, "CMTRT"))
    return out, sc.status(df, code, pl.lit("interventions:") + pl.col("__cat").fill_null(""), pl.col("__reason"))


def _warn_cm_ends(cm: DomainFile, df: pl.DataFrame, end_partial: pl.Expr, ongoing: pl.Expr, ctx: sc.Ctx) -> None:
    """One warning per kind naming the CM records mapped with a partial CMENDTC (read as a missing end)
    or continuing (CMENRTPT / CMENRF ONGOING or AFTER)."""
    from cartlab.io.sdtm.reader import SdtmIssue

    live = df.filter(pl.col("__reason").is_null())
    part = live.filter(end_partial)[ROW].to_list()
    if part:
        ctx.warnings.append(SdtmIssue(cm.name, "CMENDTC", f"{len(part):,} CM record(s) with a partial CMENDTC: the end "
                                      "is unknown, read as a missing end (study format: a single administration at "
                                      "the start; the option partial_dates = impute takes the period's last day)",
                                      part, "warning"))
    cont = live.filter(ongoing)[ROW].to_list()
    if cont:
        ctx.warnings.append(SdtmIssue(cm.name, "CMENRTPT", f"{len(cont):,} CM record(s) ongoing (CMENRTPT/CMENRF "
                                      "ONGOING or AFTER) without a complete CMENDTC: continuing to DM.RFPENDTC, else "
                                      "to the subject's last record (the source_note says which)", cont, "warning"))


# ---------------------------------------------------------------------------------------------
# events

EVENT_DATES = {"AE": "AESTDTC", "CE": "CESTDTC", "DS": "DSSTDTC", "DD": "DDDTC", "PR": "PRSTDTC", "RS": "RSDTC",
               "MH": "MHSTDTC"}
TOPIC = {"AE": "AETERM", "CE": "CETERM", "DS": "DSTERM", "DD": "DDTESTCD", "PR": "PRTRT", "RS": "RSTESTCD"}


#: event domains whose terms outside the events table are named in a warning (RS has its own, DD is
#: no event source)
UNREAD_WARNED = ("AE", "CE", "PR", "DS")


def map_events(dfile: DomainFile, ctx: sc.Ctx) -> tuple[pl.DataFrame, pl.DataFrame]:
    dom = dfile.domain
    m = ctx.mapping
    dfile.require("USUBJID")
    dtc = EVENT_DATES.get(dom, f"{dom}DTC")
    if dom == "CE" and not dfile.has("CESTDTC"):
        dtc = "CEDTC"
    sc.place(dfile, ctx, dtc, partial_rule=True)  # a partial date: impute_event_starts / partial_deaths read it
    event = None
    for e in m.events:
        if dom not in e["domains"]:
            continue
        cond = upper(dfile, f"{dom}{e['field']}") == e["term"]
        event = pl.when(cond).then(pl.lit(e["event"])) if event is None else event.when(cond).then(pl.lit(e["event"]))
    event = pl.lit(None, dtype=pl.String) if event is None else event.otherwise(pl.lit(None, dtype=pl.String))
    dfile.df = dfile.df.with_columns(event.alias("__event"))
    impute_event_starts(dfile, dtc, "__event", ctx.partial_event_dates, ctx.warnings)
    df = dfile.df
    reason = sc.first_reason(
        (pl.col("USUBJID").is_null() | ~pl.col("USUBJID").cast(pl.String).is_in(ctx.subjects.implode()), "subject not in DM"),
        *not_occurred(dfile, "occurred"),
        (pl.col("__event").is_null(), f"{dom} term not in the event mapping"),
        ((pl.col("__event") == "death") & pl.col("__dstatus").is_in(["partial", "imputed"])
         & pl.col("__anchor").is_not_null(),
         f"partial death date in {dtc}: read by option partial_death_dates (see the warning)"),
        *sc.time_reason("", dtc),
    )
    df = df.with_columns(reason.alias("__reason"))
    if dom == "RS":
        _warn_rs_unread(dfile, df, ctx)
    elif dom in UNREAD_WARNED:  # review46 #3: an unmapped HSCT or oedema term is named, not silently dropped
        var = {"PR": "TRT"}.get(dom, "TERM")
        warn_unread(dfile, df, ctx, f"{dom} term not in the event mapping", [f"{dom}DECOD", f"{dom}{var}"],
                    f"term ({dom}DECOD, else {dom}{var})", "events")
    term = dfile.text(TOPIC.get(dom, f"{dom}TERM"))
    if dom == "RS" and dfile.has("RSORRES"):  # the result as given (CR, PD ...), not the test code (review38 B4)
        term = pl.coalesce(dfile.text("RSORRES"), dfile.text("RSSTRESC"), term)
    detail = pl.when(upper(dfile, TOPIC.get(dom, f"{dom}TERM")).is_in([e["term"] for e in m.events])
                     | (term.str.to_lowercase() == pl.col("__event"))).then(None).otherwise(term)
    out = df.filter(pl.col("__reason").is_null()).select(
        pl.col("USUBJID").cast(pl.String).alias("subject_id"), pl.col("__day").alias("day"),
        pl.col("__datetime").alias("datetime"), pl.col("__event").alias("event"),
        sc.supp_col(dfile, "detail").fill_null(detail).alias("detail"),
        upper(dfile, "__q_attribution").replace_strict(m.attributions, default=None, return_dtype=pl.String)
        .alias("attribution"),
        sc.supp_col(dfile, "source").alias("source"), sc.imputed_note([("", dtc)], dfile), sc.extra_json(dfile),
        *sc.provenance(dfile),
    )
    code = pl.coalesce(upper(dfile, f"{dom}DECOD"), upper(dfile, TOPIC.get(dom, f"{dom}TERM")))
    return out, sc.status(df, code, pl.lit("events:") + pl.col("__event").fill_null(""), pl.col("__reason"))


def _warn_rs_unread(dfile: DomainFile, df: pl.DataFrame, ctx: sc.Ctx) -> None:
    """One warning counting the RS results not read, per RSSTRESC (CR, PR, SD, PD, NE ...): only a
    result the mapping's events table names (RELAPSE) is an event; the study format has no progression
    event and the best response is derived from the counts and marrow, not from RS (review38 B4)."""
    from cartlab.io.sdtm.reader import SdtmIssue

    res = pl.coalesce(upper(dfile, "RSSTRESC"), upper(dfile, "RSORRES")).fill_null("(empty)")
    bad = df.filter(pl.col("__reason") == "RS term not in the event mapping").select(res.alias("__r"), pl.col(ROW))
    if not bad.height:
        return
    counts = bad.group_by("__r").agg(pl.len(), pl.col(ROW).min()).sort("len", "__r", descending=[True, False])
    what = ", ".join(f"{r} ({n})" for r, n, _ in counts.rows()[:10])
    ctx.warnings.append(SdtmIssue(dfile.name, "RSSTRESC", f"{bad.height:,} RS result(s) not read: {what}; only "
                                  "RSSTRESC = RELAPSE (events table of the mapping) is an event; progression (PD) is "
                                  "no event of the study format: give it as RELAPSE, or map it in a mapping file, if it "
                                  "is a relapse", bad[ROW].to_list(), "warning"))


def unmapped(dfile: DomainFile, why: str) -> pl.DataFrame:
    code = pl.lit(dfile.domain)
    for var in (f"{dfile.domain}TESTCD", f"{dfile.domain}TERM", f"{dfile.domain}TRT", f"{dfile.domain}DECOD"):
        if dfile.has(var):
            code = dfile.text(var)
            break
    return sc.status(dfile.df, code, pl.lit(""), pl.lit(why))
