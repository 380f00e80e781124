"""ADTTE (ELN 2022 Table 9) derived with polars expressions over one row per subject.

The parameters, populations, conventions and options are documented in
:mod:`cartlab.response.endpoints` (which re-exports this module's public names) and, as data, in
``criteria/endpoints.yaml`` (every rule id with its ``reason`` template and citation). Each fact a
subject's rows rest on - follow-up, the first censoring event, death, the first remission (with and
without the EFS landmark), the first relapse after it, the last day known alive and the response
assessments - is one column of a per-subject frame; each parameter is then a set of ``when/then``
expressions over it. Contradictions (a remission without a day, death before remission, last known
alive before the clock start) and subjects with nothing to censor at raise as the row-by-row
derivation did: the first subject, in order, that stops on one.
"""

from __future__ import annotations

import math
import string
from collections.abc import Iterable, Mapping
from typing import Any

import polars as pl

from cartlab.errors import failing_subjects
from cartlab.io.absent_files import EVENTS_NOT_GIVEN, events_absent
from cartlab.model import Study
from cartlab.provenance import EVIDENCE, evidence_ref
from cartlab.response.adtte_population import day_expr as _day
from cartlab.response.adtte_population import (
    dose_refs,
    not_infused,
    open_remission,
    possible_relapse,
    str_list,
    warn_not_infused,
)
from cartlab.response.adtte_population import fmt_g as _g
from cartlab.response.adtte_warnings import warn_derived
from cartlab.response.endpoint_options import PARAMCDS, EndpointOptions, endpoint_definitions
from cartlab.response.last_assessment import blood_samples, last_disease_assessment, last_marrow, reason_expr

__all__ = ["ADTTE_SCHEMA", "PARAMCDS", "EndpointOptions", "derive_adtte", "endpoint_definitions"]

#: Columns of :func:`derive_adtte`.
ADTTE_SCHEMA: dict[str, pl.DataType] = {
    "STUDYID": pl.String,
    "subject_id": pl.String,
    "PARAMCD": pl.String,
    "PARAM": pl.String,
    "ANLFL": pl.String,  # "Y" = in the parameter's population (AVAL/CNSR given); null = not defined
    "STARTDY": pl.Float64,  # day the clock starts (day scale: 0 = first CAR-T infusion)
    "ADY": pl.Float64,  # day of the event or censoring
    "AVAL": pl.Float64,  # ADY - STARTDY, days
    "AVALU": pl.String,
    "CNSR": pl.Int64,  # 0 = event, 1 = censored, 2 = competing event (CIR: death without relapse)
    "EVENT": pl.Int64,  # 0 = censored, 1 = event (CIR: 1 = relapse, 2 = death without relapse)
    "EVNTDESC": pl.String,
    "CNSDTDSC": pl.String,
    "SRCDOM": pl.String,  # table of the row that fixed ADY: subjects, events, responses, ...
    "rule": pl.String,
    "reason": pl.String,
    "evidence": EVIDENCE,
}


_SID = "subject_id"
_NO_REFS = pl.lit([], dtype=EVIDENCE)
_CENSOR_DESC = {"allo_hsct": "ALLOGENEIC HSCT", "new_therapy": "NEW ANTICANCER THERAPY"}
_EVENT_DESC = {"death": "DEATH", "relapse": "RELAPSE", "extramedullary_disease": "RELAPSE (EXTRAMEDULLARY DISEASE)",
               "relapse_undetermined": "POSSIBLE RELAPSE (MARROW NOT SETTLED; OPTION)"}
#: the event kind of a marrow that could be a relapse, counted as one with undetermined_relapse="event"
_POSSIBLE = "relapse_undetermined"
_CENSOR_WORD = {"allo_hsct": "HSCT", "new_therapy": "new therapy"}


def _text(rule_id: str, **fields: pl.Expr | str) -> pl.Expr:
    """The ``reason`` template of a rule of ``endpoints.yaml`` filled with expressions (``{day:g}``
    formats a number as Python's ``format(day, "g")``)."""
    rules = {r["id"]: r for r in endpoint_definitions()["rules"]}
    if rule_id not in rules:
        raise KeyError(f"rule {rule_id!r} is not in endpoints.yaml")
    parts: list[pl.Expr] = []
    for literal, name, spec, _ in string.Formatter().parse(rules[rule_id]["text"]):
        if literal:
            parts.append(pl.lit(literal))
        if name is not None:
            value = fields[name]
            value = pl.lit(value) if isinstance(value, str) else value
            if spec == "g":
                value = _g(value)
            elif spec:
                raise ValueError(f"rule {rule_id!r}: format {spec!r} is not supported")
            parts.append(value)
    return pl.concat_str(parts)


def _uniq(*lists: pl.Expr) -> pl.Expr:
    """The references of non-null list expressions in first-seen order, each once."""
    return pl.concat_list(list(lists)).list.drop_nulls().list.unique(maintain_order=True)


# ---------------------------------------------------------------------------------------------
# the rows a subject's endpoints rest on


def _responses(responses: pl.DataFrame | None, ids: list[str], calendar: bool = False) -> pl.DataFrame:
    """Response rows (``category``, ``day``, ``refs``, ``could_be``, ``missing``: the better categories
    and the missing inputs of an assessment that is not settled, when the frame has ``could_be`` /
    ``missing_inputs``), ``_r`` = their order within the subject (by day, rows without a day last,
    else as given)."""
    lst = pl.List(pl.String)
    schema = {_SID: pl.String, "category": pl.String, "day": pl.Float64, "refs": EVIDENCE, "could_be": lst,
              "missing": lst}
    if responses is None:
        return pl.DataFrame(schema=schema).with_row_index("_r")
    need = ("subject_id", "best_response", "best_response_day")
    missing = [c for c in need if c not in responses.columns]
    if missing:
        raise ValueError(f"responses frame lacks column(s) {missing} (needs {list(need)}; optional evidence)")
    unknown = sorted(set(responses["subject_id"].drop_nulls().to_list()) - set(ids))
    if unknown:
        raise ValueError(f"responses name subject(s) not in the study: {unknown}")
    if "evidence" in responses.columns:
        refs = pl.col("evidence").fill_null(_NO_REFS)
    elif "src_file" in responses.columns and "src_row" in responses.columns:
        refs = pl.concat_list(evidence_ref("src_file", "_src_row")).list.drop_nulls()
    else:
        refs = _NO_REFS
    f = responses.filter(pl.col(_SID).is_not_null()).with_row_index("_i")
    if "src_row" in f.columns:
        f = f.with_columns(pl.col("src_row").cast(pl.Int64).alias("_src_row"))
    return (f.select(_SID, "_i", pl.col("best_response").cast(pl.String).alias("category"),
                     _day(pl.col("best_response_day"), calendar).alias("day"),
                     refs.cast(EVIDENCE).list.drop_nulls().list.unique(maintain_order=True).alias("refs"),
                     str_list(f, "could_be").alias("could_be"), str_list(f, "missing_inputs").alias("missing"))
            .sort(_SID, "day", "_i", nulls_last=True).drop("_i").with_row_index("_r"))


def _events(study: Study, relapses: pl.DataFrame | None, calendar: bool = False,
            possible: bool = False) -> pl.DataFrame:
    """Events from day 0 on (and the derived ``relapses``, at any day): ``day``, ``event``, ``ref``;
    ``_e`` = their order within the subject (by day; events.csv rows by row, before derived relapses).
    ``possible``: a marrow that could be a relapse (``relapse_possible_day``) is an event too, of kind
    ``relapse_undetermined`` (option undetermined_relapse="event")."""
    ev = (study.events.filter(pl.col("day").is_not_null() & (pl.col("day") >= 0) & pl.col("event").is_not_null())
          .sort(["day", "src_row"], nulls_last=True).with_row_index("_i")
          .select(_SID, _day(pl.col("day"), calendar), pl.col("event").cast(pl.String),
                  evidence_ref().alias("ref"), pl.lit("events").alias("src"), pl.lit(0).alias("_g"), "_i"))
    if relapses is not None:  # relapse derived from the data (e.g. cartlab.response.marrow.relapse)
        r = relapses.filter(pl.col("relapse_day").is_not_null())
        refs = (pl.when(pl.col("evidence").list.len() > 0).then(pl.col("evidence"))
                if "evidence" in r.columns else pl.lit(None))
        derived = (r.select(_SID, _day(pl.col("relapse_day"), calendar).alias("day"),
                            refs.fill_null(pl.lit([None], dtype=EVIDENCE)).cast(EVIDENCE).alias("ref"))
                   .explode("ref").with_row_index("_i")
                   .select(_SID, "day", pl.lit("relapse").alias("event"), "ref",
                           # the table of the row it was derived from (a marrow: observations), review s39 B2
                           pl.col("ref").str.extract(r"^(.*?)\.csv:\d+$").fill_null("relapses").alias("src"),
                           pl.lit(1).alias("_g"), "_i"))
        ev = pl.concat([ev, derived])
        if possible and "relapse_possible_day" in relapses.columns:
            p = relapses.filter(pl.col("relapse_possible_day").is_not_null())
            prefs = (pl.col("relapse_possible_evidence") if "relapse_possible_evidence" in p.columns
                     else pl.lit([None], dtype=EVIDENCE))
            extra = (p.select(_SID, _day(pl.col("relapse_possible_day"), calendar).alias("day"),
                              pl.when(prefs.list.len() > 0).then(prefs).otherwise(pl.lit([None], dtype=EVIDENCE))
                              .cast(EVIDENCE).alias("ref"))
                     .unique([_SID, "day"], keep="first", maintain_order=True).explode("ref").with_row_index("_i")
                     .select(_SID, "day", pl.lit(_POSSIBLE).alias("event"), "ref",
                             pl.col("ref").str.extract(r"^(.*?)\.csv:\d+$").fill_null("relapses").alias("src"),
                             pl.lit(2).alias("_g"), "_i"))
            ev = pl.concat([ev, extra])
    return ev.sort(_SID, "day", "_g", "_i").drop("_g", "_i").with_row_index("_e")


def _first(ev: pl.DataFrame, kinds: Iterable[str], name: str, after: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per subject: the earliest event of ``kinds`` (on or after ``after``'s ``_after`` day when given):
    ``<name>_day``, ``<name>_event`` and ``<name>_refs`` (the rows of all such events that day)."""
    hits = ev.filter(pl.col("event").is_in(list(kinds)))
    if after is not None:
        hits = hits.join(after, on=_SID, how="inner").filter(pl.col("day") >= pl.col("_after"))
    hits = hits.sort("_e").filter(pl.col("day") == pl.col("day").min().over(_SID))
    return hits.group_by(_SID, maintain_order=True).agg(
        pl.col("day").first().alias(f"{name}_day"), pl.col("event").first().alias(f"{name}_event"),
        pl.col("src").first().alias(f"{name}_src"), pl.col("ref").drop_nulls().unique(maintain_order=True).alias(f"{name}_refs"))


def last_recorded_rows(study: Study, sids: list[str], alive_only: bool = False) -> pl.DataFrame:
    """Per subject of ``sids``: its rows (``day``, ``ref``, ``table``) on its latest day over the
    observations, doses, interventions (start and end) and events (``alive_only``: not death rows -
    the rows that show the subject alive on their day, EndpointOptions.last_alive_sources)."""
    specs = (("observations", "day"), ("doses", "day"), ("interventions", "start_day"),
             ("interventions", "end_day"), ("events", "day"))
    parts = []
    for k, (table, col) in enumerate(specs):
        # the columns first: filtering every column of a large table costs several times more
        t = study.table(table)
        if alive_only and table == "events":
            t = t.filter(pl.col("event").is_null() | (pl.col("event") != "death"))
        t = (t.select(_SID, pl.col(col).cast(pl.Float64).alias("day"), "src_file", "src_row")
             .filter(pl.col(_SID).is_in(sids) & pl.col("day").is_not_null()))
        parts.append(t.filter(pl.col("day") == pl.col("day").max().over(_SID)).with_row_index("_i").select(
            _SID, "day", evidence_ref().alias("ref"), pl.lit(table).alias("table"), pl.lit(k).alias("_k"), "_i"))
    rows = pl.concat(parts).filter(pl.col("day") == pl.col("day").max().over(_SID))
    return (rows.sort("_k", "_i").unique([_SID, "day", "ref", "table"], keep="first", maintain_order=True)
            .drop("_k", "_i"))


def _last_alive(f: pl.DataFrame, ev: pl.DataFrame, resp: pl.DataFrame, study: Study,
                opts: EndpointOptions) -> pl.DataFrame:
    """Per subject, the last day known alive (``a_day``) - the latest of last_followup_day, non-death
    events and response assessments, and the last dated row of any table (``last_alive_sources=
    "all_tables"``; "followup_day": only without a follow-up day) -
    with ``a_refs``, ``a_how`` and ``a_src`` (the table of the first candidate that day)."""

    def cand(frame: pl.DataFrame, k: int, text: pl.Expr, src: pl.Expr | str) -> pl.DataFrame:
        return frame.with_row_index("_i").select(
            _SID, "day", "ref", text.alias("text"), (pl.lit(src) if isinstance(src, str) else src).alias("src"),
            pl.lit(k).alias("_k"), "_i")

    fu = f.filter(pl.col("fu_day").is_not_null()).select(_SID, pl.col("fu_day").alias("day"), pl.col("fu_ref").alias("ref"))
    events = ev.filter(pl.col("event") != "death").sort("_e")
    rows = resp.filter(pl.col("day").is_not_null()).sort("_r").with_columns(
        pl.when(pl.col("refs").list.len() > 0).then(pl.col("refs")).otherwise(pl.lit([None], dtype=EVIDENCE))
        .alias("ref")).explode("ref")
    parts = [
        cand(fu, 0, pl.format("last_followup_day {}", _g(pl.col("day"))), "subjects"),
        cand(events, 1, pl.format("{} on day {}", "event", _g(pl.col("day"))), "events"),
        cand(rows, 2, pl.format("response {} on day {}", pl.col("category").fill_null(pl.lit("None")), _g(pl.col("day"))),
             "responses"),
    ]
    no_fu = f.filter(pl.col("fu_day").is_null())[_SID].to_list()
    if opts.missing_followup == "last_observation" and no_fu:
        last = last_recorded_rows(study, no_fu).with_columns(_day(pl.col("day"), opts.calendar_days))
        parts.append(cand(last, 3, pl.format("last {} row, day {}", "table", _g(pl.col("day"))), pl.col("table")))
    with_fu = f.filter(pl.col("fu_day").is_not_null())[_SID].to_list()
    if opts.last_alive_sources == "all_tables" and with_fu:
        # spec: last_followup_day is the "last day the subject was known alive and followed"; a dated
        # row after it (a lab drawn, a dose given) shows the subject alive later (ELN 2022 Table 9:
        # censored "on the date they were last known to be alive")
        last = last_recorded_rows(study, with_fu, alive_only=True).with_columns(_day(pl.col("day"), opts.calendar_days))
        parts.append(cand(last, 4, pl.format("last {} row, day {}", "table", _g(pl.col("day"))), pl.col("table")))
    c = pl.concat(parts).sort(_SID, "_k", "_i").filter(pl.col("day") == pl.col("day").max().over(_SID))
    # rows of any table count only when they are later than last_followup_day, events and assessments:
    # on the same day these name the day (not every lab drawn that day)
    c = c.filter((pl.col("_k") < 4) | (pl.col("_k").min().over(_SID) == 4))
    # one phrase per fact: the rows of one table on the day are named together, "last observations row,
    # day 60 (observations.csv:20028-20034, 7 rows)", not the same words once per row (review 37 C4)
    phrases = c.group_by(_SID, "text", maintain_order=True).agg(
        pl.col("ref").filter(pl.col("ref").is_not_null() & (pl.col("ref") != "")).unique(maintain_order=True))
    how = pl.concat_str(pl.col("text"), pl.when(pl.col("ref").list.len() > 0)
                        .then(pl.format(" ({})", _ref_span(pl.col("ref")))).otherwise(pl.lit("")))
    told = phrases.group_by(_SID, maintain_order=True).agg(how.str.join("; ").alias("a_how"))
    return c.group_by(_SID, maintain_order=True).agg(
        pl.col("day").first().alias("a_day"), pl.col("ref").drop_nulls().unique(maintain_order=True).alias("a_refs"),
        pl.col("src").first().alias("a_src")).join(told, on=_SID, how="left", maintain_order="left").select(
        _SID, "a_day", "a_refs", "a_how", "a_src")


def _ref_span(refs: pl.Expr) -> pl.Expr:
    """Source refs (``file:row``) in a few words: one ref as it is; the consecutive rows of one file as
    "file:first-last, n rows"; else every ref, joined by ", " (review 37 C4)."""
    parts = refs.list.eval(pl.element().str.extract(r"^(.*):(\d+)$", 1))
    nums = refs.list.eval(pl.element().str.extract(r"^(.*):(\d+)$", 2).cast(pl.Int64, strict=False))
    n = refs.list.len()
    one_file = (parts.list.eval(pl.element().is_not_null().all()).list.first()
                & (parts.list.n_unique() == 1))
    run = (nums.list.max() - nums.list.min() + 1) == n
    return (pl.when(n == 1).then(refs.list.first())
            .when(one_file & run).then(pl.format("{}:{}-{}, {} rows", parts.list.first(), nums.list.min(),
                                                  nums.list.max(), n))
            .otherwise(refs.list.join(", ")))


def _assessments(rows: pl.DataFrame, name: str) -> pl.DataFrame:
    """Per subject: ``<name>_n``, ``<name>_txt`` (the assessments in a sentence) and ``<name>_refs``."""
    one = pl.concat_str(
        pl.when(pl.col("category").is_null() | (pl.col("category") == "")).then(pl.lit("empty"))
        .otherwise(pl.col("category")),
        pl.when(pl.col("day").is_not_null()).then(pl.format(" on day {}", _g(pl.col("day")))).otherwise(pl.lit("")))
    return rows.sort("_r").with_columns(one.alias("_one")).group_by(_SID, maintain_order=True).agg(
        pl.len().alias(f"{name}_n"), pl.col("_one").str.join(", ").alias(f"{name}_txt"),
        pl.col("refs").explode().drop_nulls().unique(maintain_order=True).alias(f"{name}_refs"))


def _remission(rows: pl.DataFrame, name: str, landmark: float | None = None) -> pl.DataFrame:
    """Per subject: the first remission (``<name>_day``, ``<name>_cat``, ``<name>_refs``), on or
    before ``landmark`` when given."""
    if landmark is not None:
        rows = rows.filter(pl.col("day") <= landmark)
    return rows.filter(pl.col("day").is_not_null()).sort("day", "_r").group_by(_SID, maintain_order=True).agg(
        pl.col("day").first().alias(f"{name}_day"), pl.col("category").first().alias(f"{name}_cat"),
        pl.col("refs").first().alias(f"{name}_refs"))


def _death_before_origin(study: Study, calendar: bool) -> pl.DataFrame:
    """Per subject whose first death row (any day) is before day 0: ``pdeath_day``, ``pdeath_ref``."""
    d = (study.events.filter((pl.col("event") == "death") & pl.col("day").is_not_null())
         .sort("day", "src_row").unique(_SID, keep="first", maintain_order=True))
    return d.filter(pl.col("day") < 0).select(_SID, _day(pl.col("day"), calendar).alias("pdeath_day"),
                                               evidence_ref().alias("pdeath_ref"))


def _subjects(study: Study, resp: pl.DataFrame, opts: EndpointOptions, relapses: pl.DataFrame | None,
              resp_censor: pl.DataFrame | None = None, blood: pl.DataFrame | None = None) -> pl.DataFrame:
    """One row per subject with every fact its ADTTE rows need (see the column prefixes below).
    ``resp_censor``: the assessments that fix the last response assessment (EFS censoring) and count
    as days known alive (default ``resp``; :func:`derive_adtte` ``censoring_responses``); ``blood``: the
    PBBLAST samples the relapse rule reads (:func:`~cartlab.response.last_assessment.blood_samples`),
    which with ``efs_censor="last_disease_assessment"`` can set the EFS censoring day (review 48 F1)."""
    resp_censor = resp if resp_censor is None else resp_censor
    ids = study.subject_ids
    f = pl.DataFrame({_SID: ids, "_order": range(len(ids))}, schema={_SID: pl.String, "_order": pl.Int64})
    fu = (study.subjects.filter(pl.col("last_followup_day").is_not_null())
          .unique(_SID, keep="last", maintain_order=True)
          .select(_SID, _day(pl.col("last_followup_day"), opts.calendar_days).alias("fu_day"),
                  evidence_ref().alias("fu_ref")))
    ev = _events(study, relapses, opts.calendar_days, possible=opts.undetermined_relapse == "event")
    censor_kinds = [k for k, on in (("allo_hsct", opts.censor_at_allo_hsct),
                                    ("new_therapy", opts.censor_at_new_therapy)) if on]
    f = f.join(fu, on=_SID, how="left").join(_first(ev, censor_kinds, "c"), on=_SID, how="left")
    # response assessments after the censoring day are not the CAR-T's (when a response-based
    # parameter is censored there)
    cut = pl.col("c_day").is_null() | pl.col("day").is_null() | (pl.col("day") <= pl.col("c_day"))
    cuts = any(p != "OS" for p in opts.censor_params)
    if not cuts:
        cut = pl.lit(True)
    usable = resp.join(f.select(_SID, "c_day"), on=_SID, how="left").filter(cut)
    # an empty response is no assessment (missing is not negative), as null is
    is_eval = (pl.col("category").is_not_null() & (pl.col("category") != "")
               & ~pl.col("category").is_in(list(opts.not_evaluable_categories)))
    evaluable = usable.filter(is_eval)
    # the last response assessment (EFS censoring) from every assessment, also those after the end of
    # the best-response window (an allo-HSCT does not censor, ELN 2022), unless censored there
    evaluable_c = resp_censor.join(f.select(_SID, "c_day"), on=_SID, how="left").filter(cut).filter(is_eval)
    lm = opts.efs_landmark_day
    evaluable_lm = evaluable if lm is None else evaluable.filter(pl.col("day") <= float(lm))
    rem_rows = usable.filter(pl.col("category").is_in(list(opts.remission_categories)))
    undated = rem_rows.filter(pl.col("day").is_null()).sort("_r").group_by(_SID).agg(
        pl.col("category").first().alias("undated_cat"))
    f = (f.join(_remission(rem_rows, "rem"), on=_SID, how="left")
         .join(_remission(rem_rows, "remefs", None if lm is None else float(lm)), on=_SID, how="left")
         .join(undated, on=_SID, how="left")
         .join(_first(ev, ["death"], "death"), on=_SID, how="left")
         .join(_assessments(usable, "use"), on=_SID, how="left")
         .join(_assessments(evaluable, "eval"), on=_SID, how="left")
         .join(_assessments(evaluable_lm, "evlm"), on=_SID, how="left")
         .join(last_marrow(evaluable_c), on=_SID, how="left")
         .join(_death_before_origin(study, opts.calendar_days), on=_SID, how="left")
         .join(dose_refs(study), on=_SID, how="left"))
    kinds = [*opts.relapse_events, *([_POSSIBLE] if opts.undetermined_relapse == "event" else [])]
    for rem in ("rem", "remefs"):
        after = f.filter(pl.col(f"{rem}_day").is_not_null()).select(_SID, pl.col(f"{rem}_day").alias("_after"))
        f = f.join(_first(ev, kinds, f"{rem}rl", after), on=_SID, how="left")
        f = f.join(possible_relapse(relapses, resp_censor, after, f"{rem}pu", opts), on=_SID, how="left")
    # review 41 F1: assessments that could be a remission for want of an input (any day; by the landmark)
    open_rows = usable.filter(pl.col("day").is_not_null() & ~pl.col("category").is_in(list(opts.remission_categories))
                              & (pl.col("could_be").list.set_intersection(list(opts.remission_categories)).list.len() > 0))
    f = (f.join(open_remission(open_rows, "op", opts), on=_SID, how="left")
         .join(open_remission(open_rows if lm is None else open_rows.filter(pl.col("day") <= float(lm)), "oplm", opts),
               on=_SID, how="left")
         # review 41 F6: the first relapse recorded at all (not counted by EFS without a remission before it)
         .join(_first(ev.filter(pl.col("event") != _POSSIBLE), opts.relapse_events, "anyrl"), on=_SID, how="left"))
    f = f.join(_last_alive(f, ev.filter(pl.col("event") != _POSSIBLE), resp_censor, study, opts), on=_SID, how="left")
    f = last_disease_assessment(f, blood, opts, cuts)  # the EFS censoring day: marrow or blood (review 48 F1)
    return f.with_columns(pl.col(c).fill_null(0) for c in ("use_n", "eval_n", "evlm_n")).sort("_order")


# ---------------------------------------------------------------------------------------------
# the rows of one parameter


def _close(origin: pl.Expr, ev: dict[str, pl.Expr] | None, what: str, opts: EndpointOptions,
           censor: bool = True, last_assessed: bool = False, rem: str | None = None) -> tuple[dict[str, pl.Expr], pl.Expr]:
    """Event, or censoring at the censoring event (when ``censor``: the parameter is in
    ``censor_params``; with ``last_assessed`` on the last response assessment on or before it, as
    duration of response, review 41 F4) / at the last assessment that settled no relapse before a
    marrow that could be one (``rem``: the remission's columns ``<rem>pu_*``, option
    undetermined_relapse, review 41 F2) / last known alive (``last_assessed``: the last response
    assessment on or before it, ELN 2022 EFS), for a clock started at ``origin``: the row's columns
    and its outcome (null; "missing": nothing to censor at; "alive_before_origin")."""
    c, a = (pl.col("c_day") if censor else pl.lit(None, dtype=pl.Float64)), pl.col("a_day")
    p = pl.col(f"{rem}pu_day") if rem is not None else pl.lit(None, dtype=pl.Float64)
    # a relapse or death after a marrow that could be a relapse is an event on its documented day; only a
    # competing death (CIR) is not: a relapse may have come first, so CIR is censored before that marrow
    use_ev = ((ev["has"] & (c.is_null() | (ev["day"] <= c)) & (p.is_null() | (ev["day"] <= p) | (ev["code"] != 2)))
              if ev else pl.lit(False))
    use_c = ~use_ev & c.is_not_null() & (p.is_null() | (c <= p))
    use_u = ~use_ev & ~use_c & p.is_not_null()
    use_a = ~use_ev & ~use_c & ~use_u & a.is_not_null()
    no_fu = pl.col("fu_day").is_null()
    # at HSCT / new therapy: the parameter censored on the last (disease or response) assessment on or
    # before it (EFS, efs_censor) or on the event's day (RFS/LFS/CIR/OS: censored when last known alive,
    # ELN 2022 Table 9); ld_*: the assessment, a marrow or a blood sample (review 48 F1)
    ld, blood = pl.col("ld_day"), pl.col("ld_blood").fill_null(False)
    c_la = (ld.is_not_null() & (ld <= c)) if last_assessed else pl.lit(False)
    c_day = pl.when(c_la).then(ld).otherwise(c)
    c_reason = pl.lit(None, dtype=pl.String)
    for kind in ("allo_hsct", "new_therapy"):
        word = _CENSOR_WORD[kind]
        at = (pl.when(c_la).then(pl.format(f"censored on day {{}}, the last {{}} on or before {word} "
                                           "({}), as duration of response (EFS is censored on the date last assessed "
                                           "for response, ELN 2022 Table 9)", _g(ld), pl.when(blood).then(pl.lit(
                                               "disease assessment")).otherwise(pl.lit("response assessment")),
                                           pl.col("ld_how")))
              .otherwise(pl.lit(f"censored at {word}, on its day (" + (
                  "no response assessment on or before it" if last_assessed else
                  "this parameter is censored when last known alive, not at a response assessment") + ")")))
        c_reason = pl.when(pl.col("c_event") == kind).then(_text(f"censor.{kind}", what=what, day=c, at=at)).otherwise(c_reason)
    a_reason = (pl.when(no_fu).then(_text("censor.last_record", what=what, day=a, how=pl.col("a_how")))
                .otherwise(_text("censor.last_alive", what=what, day=a, how=pl.col("a_how"))))

    u_reason = (_text("censor.relapse_undetermined", what=what, day=pl.col(f"{rem}pu_set_day"),
                      how=pl.col(f"{rem}pu_set_how"), why=pl.col(f"{rem}pu_why"))
                if rem is not None else pl.lit(None, dtype=pl.String))
    u_refs = _uniq(pl.col(f"{rem}pu_set_refs"), pl.col(f"{rem}pu_refs")) if rem is not None else _NO_REFS
    u_day = pl.col(f"{rem}pu_set_day") if rem is not None else pl.lit(None, dtype=pl.Float64)

    def pick(e: Any, cen: Any, alive: Any, und: Any = None) -> pl.Expr:
        und = alive if und is None else und
        return pl.when(use_ev).then(e).when(use_c).then(cen).when(use_u).then(und).when(use_a).then(alive)

    none = pl.lit(None)
    a_cnsdtdsc = pl.when(no_fu).then(pl.lit("LAST RECORDED ROW (NO LAST_FOLLOWUP_DAY)")).otherwise(pl.lit("LAST KNOWN ALIVE"))
    a_rule = pl.when(no_fu).then(pl.lit("censor.last_record")).otherwise(pl.lit("censor.last_alive"))
    a_day, a_src, a_refs = a, pl.col("a_src"), pl.col("a_refs")
    if last_assessed:  # the last response (or disease) assessment, on or before the day last known alive
        la = ld.is_not_null()
        a_day = pl.when(la).then(ld).otherwise(a)
        a_reason = pl.when(la).then(reason_expr(_text, what, pl.concat_str(_g(a), pl.lit(" ("), pl.col("a_how"),
                                                                           pl.lit(")")))).otherwise(a_reason)
        a_cnsdtdsc = (pl.when(la & blood).then(pl.lit("LAST DISEASE ASSESSMENT (BLOOD)"))
                      .when(la).then(pl.lit("LAST RESPONSE ASSESSMENT")).otherwise(a_cnsdtdsc))
        a_rule = (pl.when(la & blood).then(pl.lit("censor.last_blood_assessment"))
                  .when(la).then(pl.lit("censor.last_assessment")).otherwise(a_rule))
        a_src = pl.when(la & blood).then(pl.lit("observations")).when(la).then(pl.lit("responses")).otherwise(a_src)
        a_refs = pl.when(la).then(pl.col("ld_refs")).otherwise(a_refs)
    cols = {
        "ADY": pick(ev["day"] if ev else none, c_day, a_day, u_day),
        # a competing event (CIR: death without relapse, EVENT 2) is CNSR 2, as in the ADaM export:
        # CNSR 0 would read as the event of interest (a relapse) for anyone using CNSR as the indicator
        "CNSR": pick(pl.when(ev["code"] == 2).then(2).otherwise(0) if ev else 0, 1, 1),
        "EVENT": pick(ev["code"] if ev else none, 0, 0),
        "EVNTDESC": pick(ev["desc"] if ev else none, none, none),
        "CNSDTDSC": pick(none, pl.col("c_event").replace_strict(_CENSOR_DESC, default=None, return_dtype=pl.String),
                         a_cnsdtdsc, pl.lit("LAST ASSESSMENT BEFORE A POSSIBLE RELAPSE")),
        "SRCDOM": pick(ev["srcdom"] if ev else none, pl.when(c_la & blood).then(pl.lit("observations"))
                       .when(c_la).then(pl.lit("responses")).otherwise(pl.lit("events")),
                       a_src, pl.lit("responses")),
        "rule": pick(ev["rule"] if ev else none, pl.format("censor.{}", "c_event"), a_rule,
                     pl.lit("censor.relapse_undetermined")),
        "reason": pick(none if not ev else ev["reason"] if rem is None else pl.concat_str(ev["reason"], pl.when(
            p.is_not_null() & (ev["day"] > p)).then(pl.format("; {}: the event is dated on its documented day", pl.col(
                f"{rem}pu_why"))).otherwise(pl.lit(""))), c_reason, a_reason, u_reason),
        "evidence": pick(ev["refs"] if ev else none,
                         pl.when(c_la).then(_uniq(pl.col("ld_refs"), pl.col("c_refs"))).otherwise(pl.col("c_refs")),
                         a_refs, u_refs),
    }
    outcome = (pl.when(use_ev | use_c | use_u).then(None).when(a.is_null()).then(pl.lit("missing"))
               .when(a_day < origin).then(pl.lit("alive_before_origin")))
    return cols, outcome


def _death_or_relapse(rem: str, prefix: str, opts: EndpointOptions, competing: bool = False) -> dict[str, pl.Expr]:
    """The first relapse on or after the remission day (``<rem>_day``), or death."""
    rl, death = pl.col(f"{rem}rl_day"), pl.col("death_day")
    pick_rl = rl.is_not_null() & (death.is_null() | (rl <= death))
    remission = pl.concat_str(pl.col(f"{rem}_cat"), pl.lit(" on day "), _g(pl.col(f"{rem}_day")))
    d_rule = f"{prefix}.death_without_relapse" if competing else f"{prefix}.death"
    event = pl.col(f"{rem}rl_event")
    return {
        "has": rl.is_not_null() | death.is_not_null(),
        "day": pl.when(pick_rl).then(rl).otherwise(death),
        "code": pl.when(pick_rl).then(1).otherwise(2 if competing else 1),
        "rule": pl.when(pick_rl).then(pl.lit(f"{prefix}.relapse")).otherwise(pl.lit(d_rule)),
        "desc": pl.when(pick_rl).then(event.replace_strict(_EVENT_DESC, default=pl.format(
            "RELAPSE ({})", event.str.to_uppercase()), return_dtype=pl.String))
        .otherwise(pl.lit("DEATH WITHOUT RELAPSE" if competing else "DEATH")),
        "reason": pl.when(pick_rl).then(_text(f"{prefix}.relapse", remission=remission, day=rl, event=event.replace(
            _POSSIBLE, "a possible relapse (a marrow that could be one; option undetermined_relapse='event')")))
        .otherwise(_text(d_rule, remission=remission, day=death)),
        "refs": _uniq(pl.col(f"{rem}_refs"), pl.when(pick_rl).then(pl.col(f"{rem}rl_refs")).otherwise(pl.col("death_refs"))),
        "srcdom": pl.when(pick_rl).then(pl.col(f"{rem}rl_src")).otherwise(pl.lit("events")),
        # a death before the remission contradicts it
        "error": death.is_not_null() & (death < pl.col(f"{rem}_day")),
    }


def _param(f: pl.DataFrame, paramcd: str, opts: EndpointOptions, landmark_source: str | None = None) -> pl.DataFrame:
    """The rows of one parameter, with ``_outcome`` (null, or why the subject cannot be derived)."""
    undated = pl.col("undated_cat").is_not_null()
    lm = opts.efs_landmark_day
    if paramcd == "OS":
        death = pl.col("death_day")
        ev = {"has": death.is_not_null(), "day": death, "code": pl.lit(1), "rule": pl.lit("os.death"),
              "desc": pl.lit("DEATH"), "reason": _text("os.death", day=death), "refs": pl.col("death_refs"),
              "srcdom": pl.lit("events")}
        cols, outcome = _close(pl.lit(0.0), ev, "death", opts, censor="OS" in opts.censor_params)
        return _rows(f, paramcd, pl.lit(0.0), cols, outcome)
    if paramcd == "EFS":
        lm_txt = "the end of follow-up" if lm is None else f"day {float(lm):g}"
        if lm is not None and landmark_source:  # review 41 F3: say where it came from (diff1 F8: not an option)
            lm_txt += f" ({landmark_source}; endpoints.efs_landmark_day unset)"
        ev = _death_or_relapse("remefs", "efs", opts)
        censor = "EFS" in opts.censor_params
        cols, outcome = _close(pl.lit(0.0), ev, "relapse or death", opts, censor=censor,
                               last_assessed=opts.efs_censor != "last_known_alive", rem="remefs")
        cols["evidence"] = _uniq(pl.col("remefs_refs"), cols["evidence"])
        rem = pl.col("remefs_day").is_not_null()
        death = pl.col("death_day")
        by_lm = opts.efs_evaluable_by == "landmark" and lm is not None
        failed = pl.col("evlm_n" if by_lm else "eval_n") > 0
        ev_txt = pl.col("evlm_txt") if by_lm else pl.col("eval_txt")
        if by_lm:  # only the assessments by the landmark make the subject evaluable
            ev_txt = pl.concat_str(ev_txt, pl.lit(" by the landmark, option efs_evaluable_by='landmark'"))
        died = death.is_not_null() & (pl.lit(True) if lm is None else death <= float(lm))
        # review 41 F1: evaluable without remission by the landmark, but an assessment by it could be
        # CR/CRh/CRi for want of an input: remission by the landmark undetermined (missing is not
        # negative), alive by the landmark -> not evaluable by it (option efs_open_remission)
        open_lm = pl.col("oplm_txt").is_not_null()
        undet = failed & open_lm & ~died & pl.lit(opts.efs_open_remission == "not_evaluable")
        failed = failed & ~undet
        # not evaluable by the landmark, then dead after it (before any censoring at HSCT / new therapy)
        late = death.is_not_null() & ~died & ~failed
        if censor:
            late = late & (pl.col("c_day").is_null() | (death <= pl.col("c_day")))
        late_ev = late & pl.lit(opts.efs_ne_death_after_landmark == "event")
        late_cn = late & pl.lit(opts.efs_ne_death_after_landmark == "censor")
        ne_txt = pl.col("use_txt").fill_null(pl.lit("no response assessment"))
        # evaluable without remission, alive, last seen before the landmark: remission by the landmark
        # unknown (review s39 B1, option efs_short_followup; missing is not negative)
        short = (failed & death.is_null() & (pl.col("a_day") < float(lm))
                 & pl.lit(opts.efs_short_followup == "not_evaluable")) if lm is not None else pl.lit(False)
        failed = failed & ~short
        event = failed | died | late_ev
        # a record dated day 0 takes its date from the first CAR-T dose row (review s39 B4; admiral:
        # ADSL/TRTSDT "TREATMENT START" when there is no dose row)
        dose = pl.concat_list(pl.col("dose_ref")).list.drop_nulls().cast(EVIDENCE)
        use = pl.col("use_refs").fill_null(_NO_REFS)
        other = {
            "ADY": pl.when(late_ev).then(death).otherwise(pl.lit(0.0)), "CNSR": pl.when(event).then(0).otherwise(1),
            "EVENT": pl.when(event).then(1).otherwise(0),
            "EVNTDESC": pl.when(failed | died).then(pl.lit("TREATMENT FAILURE")).when(late_ev).then(pl.lit("DEATH")),
            "CNSDTDSC": pl.when(~event).then(pl.lit("NOT EVALUABLE FOR RESPONSE")),
            "SRCDOM": pl.when(late_ev).then(pl.lit("events")).when(pl.col("dose_ref").is_not_null())
            .then(pl.lit("doses")).otherwise(pl.lit("ADSL")),
            "rule": pl.when(failed).then(pl.lit("efs.treatment_failure")).when(short)
            .then(pl.lit("efs.followup_before_landmark")).when(died)
            .then(pl.lit("efs.death_without_assessment")).when(late_ev).then(pl.lit("efs.death_not_evaluable"))
            .when(late_cn).then(pl.lit("efs.not_evaluable_died_after_landmark"))
            .when(undet).then(pl.lit("efs.remission_undetermined")).otherwise(pl.lit("efs.not_evaluable")),
            "reason": pl.when(failed).then(_text("efs.treatment_failure", landmark=lm_txt, assessments=ev_txt))
            .when(short).then(_text("efs.followup_before_landmark", assessments=ev_txt, day=pl.col("a_day"),
                                    how=pl.col("a_how").fill_null(pl.lit("")), landmark=lm_txt))
            .when(died).then(_text("efs.death_without_assessment", day=death, landmark=lm_txt, assessments=ne_txt))
            .when(late_ev).then(_text("efs.death_not_evaluable", day=death, landmark=lm_txt, assessments=ne_txt))
            .when(late_cn).then(_text("efs.not_evaluable_died_after_landmark", day=death, landmark=lm_txt,
                                      assessments=ne_txt))
            .when(undet).then(_text("efs.remission_undetermined", landmark=lm_txt, assessments=ev_txt,
                                    open=pl.col("oplm_txt")))
            .otherwise(_text("efs.not_evaluable", landmark=lm_txt, assessments=ne_txt)),
            "evidence": pl.when(failed).then(_uniq(dose, pl.col("evlm_refs" if by_lm else "eval_refs")))
            .when(short).then(_uniq(dose, pl.col("eval_refs"), pl.col("a_refs").fill_null(_NO_REFS)))
            .when(died).then(_uniq(dose, pl.col("death_refs"), use))
            .when(late_ev).then(_uniq(use, pl.col("death_refs")))
            .when(late_cn).then(_uniq(dose, use, pl.col("death_refs")))
            .when(undet).then(_uniq(dose, pl.col("eval_refs"), pl.col("oplm_refs")))
            .otherwise(_uniq(dose, use)),
        }
        # the open remission a treatment failure did not count (efs_open_remission="failure"), and a
        # relapse recorded without a CR/CRh/CRi by the landmark before it (review 41 F1, F6): named
        any_rl = pl.col("anyrl_day").is_not_null()
        notes = pl.concat_str(
            pl.when(failed & open_lm).then(pl.format("; {}: not counted as remission (option efs_open_remission="
                                                     "'failure')", pl.col("oplm_txt"))).otherwise(pl.lit("")),
            pl.when(any_rl).then(pl.format("; {} on day {} ({}) not counted: no CR/CRh/CRi by {} before it",
                                           pl.col("anyrl_event"), _g(pl.col("anyrl_day")),
                                           pl.col("anyrl_refs").list.join(", "), pl.lit(lm_txt))).otherwise(pl.lit("")))
        other["reason"] = pl.concat_str(other["reason"], notes)
        other["evidence"] = _uniq(other["evidence"],
                                  pl.when(failed & open_lm).then(pl.col("oplm_refs")).otherwise(_NO_REFS),
                                  pl.when(any_rl).then(pl.col("anyrl_refs")).otherwise(_NO_REFS))
        cols = {k: pl.when(rem).then(v).otherwise(other[k]) for k, v in cols.items()}
        outcome = (pl.when(undated).then(pl.lit("undated_remission")).when(rem & ev["error"])
                   .then(pl.lit("death_before_remission")).when(rem).then(outcome))
        return _rows(f, paramcd, pl.lit(0.0), cols, outcome)
    # RFS, LFS, CIR: subjects achieving remission
    rem = pl.col("rem_day").is_not_null()
    origin = pl.lit(0.0) if paramcd == "LFS" else pl.col("rem_day")
    ev = _death_or_relapse("rem", paramcd.lower(), opts, competing=paramcd == "CIR")
    cols, outcome = _close(origin, ev, "relapse or death", opts, censor=paramcd in opts.censor_params, rem="rem")
    cols["evidence"] = _uniq(pl.col("rem_refs"), cols["evidence"])
    out = {k: pl.when(rem).then(v) for k, v in cols.items()}
    out["rule"] = out["rule"].otherwise(pl.lit("not_in_remission"))
    # review 41 F1: an assessment that could be CR/CRh/CRi for want of an input is named
    op = pl.col("op_txt").is_not_null()
    out["reason"] = out["reason"].otherwise(pl.concat_str(_text(
        "not_in_remission", paramcd=paramcd, assessments=pl.col("use_txt").fill_null(pl.lit("no response assessment"))),
        pl.when(op).then(pl.format("; {}: remission not established, not counted", pl.col("op_txt"))).otherwise(pl.lit(""))))
    out["evidence"] = out["evidence"].otherwise(_uniq(pl.col("use_refs").fill_null(_NO_REFS),
                                                      pl.when(op).then(pl.col("op_refs")).otherwise(_NO_REFS)))
    outcome = (pl.when(undated).then(pl.lit("undated_remission")).when(rem & ev["error"])
               .then(pl.lit("death_before_remission")).when(rem).then(outcome))
    return _rows(f, paramcd, pl.when(rem).then(origin), out, outcome, anl=rem)


def _rows(f: pl.DataFrame, paramcd: str, start: pl.Expr, cols: dict[str, pl.Expr], outcome: pl.Expr,
          anl: pl.Expr | None = None) -> pl.DataFrame:
    anl = pl.lit(True) if anl is None else anl
    defs = endpoint_definitions()["params"]
    return f.select(
        _SID, "_order", pl.lit(PARAMCDS.index(paramcd)).alias("_p"), pl.lit(paramcd).alias("PARAMCD"),
        pl.lit(defs[paramcd]["param"]).alias("PARAM"), pl.when(anl).then(pl.lit("Y")).alias("ANLFL"),
        start.cast(pl.Float64).alias("STARTDY"), *[v.alias(k) for k, v in cols.items()],
        pl.when(anl).then(cols["ADY"] - start).alias("AVAL"), pl.lit("DAYS").alias("AVALU"),
        outcome.alias("_outcome"),
    ).cast({k: ADTTE_SCHEMA[k] for k in ("ADY", "AVAL", "CNSR", "EVENT", "EVNTDESC", "CNSDTDSC", "SRCDOM", "evidence")})


def _raise_first_error(rows: pl.DataFrame, f: pl.DataFrame, opts: EndpointOptions) -> None:
    """Raise what the derivation of the subjects stops at, as a row-by-row derivation would: the
    first subject (in order) whose first stopping parameter has a contradiction raises it; else
    every subject with nothing to censor at is named."""
    stops = rows.filter(pl.col("_outcome").is_not_null()).sort("_order", "_p").group_by(
        "_order", maintain_order=True).first()
    if stops.is_empty():
        return
    errors = stops.filter(pl.col("_outcome") != "missing")
    if errors.height:
        r = errors.row(0, named=True)
        s = f.filter(pl.col("_order") == r["_order"]).row(0, named=True)
        sid, why = r[_SID], r["_outcome"]
        # contradictory input (not a failure of the engine): an InputError, worded without a type name
        from cartlab.errors import InputError

        if why == "undated_remission":
            raise _alone(sid, InputError(
                f"subject {sid}: remission response {s['undated_cat']!r} without best_response_day"))
        rem = "remefs_day" if r["PARAMCD"] == "EFS" else "rem_day"
        if why == "death_before_remission":
            raise _alone(sid, InputError(
                f"subject {sid}: death on day {s['death_day']:g} (events.csv) before the remission on day {s[rem]:g}"))
        origin = 0.0 if r["PARAMCD"] in ("OS", "EFS", "LFS") else s[rem]
        la = s.get("ld_day") if r["PARAMCD"] == "EFS" and opts.efs_censor != "last_known_alive" else None
        if la is not None and la < origin <= (s["a_day"] if s["a_day"] is not None else -math.inf):
            raise _alone(sid, InputError(
                f"subject {sid}: EFS censored at the last response assessment, on day {la:g}, "
                f"before the clock start {origin:g}: check the response assessments' days"))
        hows = (s["a_how"] or "").split("; ")
        s = {**s, "a_how": hows[0] + (f" and {len(hows) - 1} more row(s) that day" if len(hows) > 1 else "")}
        if s["a_src"] == "subjects":
            raise _alone(sid, InputError(
                f"subject {sid}: last known alive on day {s['a_day']:g} from {s['a_how']}, before "
                f"the clock start {origin:g}: check last_followup_day"))
        raise _alone(sid, InputError(
            f"subject {sid}: last known alive on day {s['a_day']:g} from {s['a_how']}, before the clock "
            f"start {origin:g}: no row on or after day {origin:g}"
            + (" (the CAR-T infusion) - was the subject infused? " if origin == 0 else "; ")
            + "give last_followup_day"))
    missing = stops[_SID].to_list()
    # each of them alone stops at the same thing: an analysis leaves them out without bisecting (s43)
    raise failing_subjects(_nothing_to_censor_at(missing, opts), missing,
                           lambda sid: _nothing_to_censor_at([sid], opts))


def _alone(sid: str, exc: Exception) -> Exception:
    """``exc``, which only ``sid`` causes and which ``sid`` alone gives too (s43: no bisection)."""
    return failing_subjects(exc, [sid], lambda _sid: exc)


def _nothing_to_censor_at(missing: list[str], opts: EndpointOptions) -> ValueError:
    if opts.missing_followup == "error":
        return ValueError(
            f"subject(s) {missing}: no last_followup_day and no event or response assessment to censor at; "
            "give subjects.last_followup_day, or drop --strict (EndpointOptions(missing_followup="
            "'last_observation')) to censor at the subject's last recorded row")
    return ValueError(f"subject(s) {missing}: no last_followup_day and no row at all to censor at; give "
                      "subjects.last_followup_day")


def _without_criteria(rows: pl.DataFrame, no_criteria: Mapping[str, str]) -> pl.DataFrame:
    """The response-based parameters of subjects without response criteria: not defined, and why."""
    hit = pl.col(_SID).is_in(list(no_criteria)) & (pl.col("PARAMCD") != "OS")
    why = pl.col(_SID).replace_strict(dict(no_criteria), default=None, return_dtype=pl.String)
    blank = ("ANLFL", "STARTDY", "ADY", "AVAL", "CNSR", "EVENT", "EVNTDESC", "CNSDTDSC", "SRCDOM", "_outcome")
    return rows.with_columns(
        *[pl.when(hit).then(None).otherwise(pl.col(c)).alias(c) for c in blank],
        pl.when(hit).then(pl.lit("no_response_criteria")).otherwise(pl.col("rule")).alias("rule"),
        pl.when(hit).then(_text("no_response_criteria", paramcd=pl.col("PARAMCD"), why=why))
        .otherwise(pl.col("reason")).alias("reason"),
        pl.when(hit).then(_NO_REFS).otherwise(pl.col("evidence")).alias("evidence"),
    )


def _died_before_origin(rows: pl.DataFrame, f: pl.DataFrame) -> pl.DataFrame:
    """Every parameter of a subject whose death is recorded before day 0: not evaluable (ANLFL,
    AVAL, CNSR empty), rule ``death_before_origin`` naming the death row - never "alive" (B1, s37)."""
    pre = f.filter(pl.col("pdeath_day").is_not_null()).select(_SID, "pdeath_day", "pdeath_ref")
    if pre.is_empty():
        return rows
    rows = rows.join(pre, on=_SID, how="left")
    hit = pl.col("pdeath_day").is_not_null()
    blank = ("ANLFL", "STARTDY", "ADY", "AVAL", "CNSR", "EVENT", "EVNTDESC", "CNSDTDSC", "SRCDOM", "_outcome")
    return rows.with_columns(
        *[pl.when(hit).then(None).otherwise(pl.col(c)).alias(c) for c in blank],
        pl.when(hit).then(pl.lit("death_before_origin")).otherwise(pl.col("rule")).alias("rule"),
        pl.when(hit).then(_text("death_before_origin", paramcd=pl.col("PARAMCD"), day=pl.col("pdeath_day"),
                                ref=pl.col("pdeath_ref").fill_null(pl.lit("events.csv"))))
        .otherwise(pl.col("reason")).alias("reason"),
        pl.when(hit).then(pl.concat_list(pl.col("pdeath_ref")).list.drop_nulls().cast(EVIDENCE))
        .otherwise(pl.col("evidence")).alias("evidence"),
    ).drop("pdeath_day", "pdeath_ref")


def derive_adtte(study: Study, options: EndpointOptions | None = None,
                 responses: pl.DataFrame | None = None, relapses: pl.DataFrame | None = None,
                 no_criteria: Mapping[str, str] | None = None,
                 censoring_responses: pl.DataFrame | None = None, landmark_source: str | None = None,
                 response_criteria: str | None = None) -> pl.DataFrame:
    """ADaM-style ADTTE: one row per subject and parameter (OS, EFS, RFS, LFS, CIR), ELN 2022 Table 9.

    ``responses``: subject_id, best_response, best_response_day (and optionally ``evidence``, a list of
    ``"<file>:<row>"``), one row per subject or per assessment - e.g. the best-response engine's
    output. Without it only OS is derived (EFS, RFS, LFS and CIR need the response).
    ``relapses``: subject_id, relapse_day (and ``evidence``), relapses derived from the data (marrow
    blasts, circulating blasts, EMD: :func:`cartlab.response.marrow.relapse`), counted as relapse
    events in addition to the ``relapse_events`` of events.csv.

    Definitions (:mod:`cartlab.response.endpoints` and ``criteria/endpoints.yaml``): OS = death from
    any cause; EFS = treatment failure (no CR/CRh/CRi by ``efs_landmark_day``: event at day 0 when
    evaluable or dead before the landmark without assessment, censored at day 0 when alive and not
    evaluable), relapse or death; RFS = relapse or death from the first remission day; LFS = the same
    from day 0; CIR = relapse (EVENT 1) with death without relapse competing (EVENT 2), from the
    remission day. Censoring on the day last known alive (``last_followup_day`` or a later event or
    assessment) - for EFS on the day of the last disease assessment (ELN; ``efs_censor``: the last
    marrow, or a later PBBLAST sample the relapse rule reads as no circulating blasts) - or at
    HSCT / new therapy when those options are on (the parameters of ``censor_params``). A subject not
    evaluable by the landmark who dies after it: an EFS event on the death day
    (``efs_ne_death_after_landmark``). Without ``efs_landmark_day`` a CartlabWarning says EFS has no
    landmark. RFS/LFS/CIR rows of subjects
    never in remission have ``ANLFL`` empty, empty ``AVAL``/``CNSR`` and say why.
    ``censoring_responses``: the same columns as ``responses``, every assessment including those
    ``responses`` leaves out after the end of the best-response window (allo-HSCT, new therapy): they
    fix the EFS censoring day (the last response assessment) and count as days known alive, while
    ``responses`` alone gives the remission and treatment failure (ELN 2022 does not censor at HSCT;
    default: ``responses``). A subject whose death is recorded before day 0 has every parameter not
    evaluable (rule ``death_before_origin``), with a warning naming it.
    A subject without a CAR-T dose row while the study records doses has no record counted (rule
    ``not_infused``, option ``population``, a warning names it); an EFS subject evaluable without
    remission but last known alive before the landmark is censored at day 0 (rule
    ``efs.followup_before_landmark``, option ``efs_short_followup``). Review s39.
    ``landmark_source``: where ``efs_landmark_day`` came from when not from ``endpoints.efs_landmark_day``
    (e.g. "best_response.landmark_day", :func:`~cartlab.response.endpoint_options.landmark_inherited`),
    named in the EFS reasons; derived by the analysis, not an option (review 41 diff1 F8).
    ``response_criteria``: the response table the relapses were derived by (``ResponseOptions.criteria``;
    None = each subject's by its disease): whether its relapse rule reads blood blasts, and so whether a
    blood sample can set the EFS censoring day (review 48 F1).
    ``no_criteria``: subject -> why it has no response criteria (e.g. a lymphoma: cartlab has no
    criteria for it yet); its EFS, RFS, LFS and CIR rows are not defined (``ANLFL`` empty, rule
    ``no_response_criteria``) rather than "not evaluable for response"; OS is unaffected.

    Columns: :data:`ADTTE_SCHEMA` (``CNSR`` 0 = event, 1 = censored, 2 = competing event; ``EVENT`` 0 = censored, 1 =
    event, for CIR 1 = relapse, 2 = death without relapse). Raises ``ValueError`` naming every subject
    that needs censoring but has no ``last_followup_day`` and no event or assessment (see
    ``EndpointOptions.missing_followup``).
    """
    opts = options or EndpointOptions()
    params = opts.params if opts.params is not None else (("OS",) if responses is None else PARAMCDS)
    params = tuple(p for p in PARAMCDS if p in params)
    if responses is None and any(p != "OS" for p in params):
        raise ValueError(f"parameters {[p for p in params if p != 'OS']} need a responses frame "
                         "(subject_id, best_response, best_response_day)")
    resp = _responses(responses, study.subject_ids, opts.calendar_days)
    resp_c = None if censoring_responses is None else _responses(censoring_responses, study.subject_ids,
                                                                  opts.calendar_days)
    # review 48 F1: blood samples the relapse rule reads can set the EFS censoring day (efs_censor)
    blood = (blood_samples(study, response_criteria)
             if "EFS" in params and opts.efs_censor == "last_disease_assessment" else None)
    f = _subjects(study, resp, opts, relapses, resp_c, blood)
    if f.is_empty() or not params:
        return pl.DataFrame(schema=ADTTE_SCHEMA)
    rows = pl.concat([_param(f, p, opts, landmark_source) for p in params]).sort("_order", "_p")
    if no_criteria:
        rows = _without_criteria(rows, no_criteria)
    rows = _died_before_origin(rows, f)
    rows, uninfused = not_infused(rows, study, opts.population, _text, opts.infusion_evidence)  # review s39 A1
    _raise_first_error(rows, f, opts)
    warn_derived(f, rows, study, opts, params, responses)  # death before day 0, follow-up, landmark, ...
    # last: a batch of not-infused subjects only has no other warning, so a batched run's merged warnings
    # keep the whole study's order when this one comes after the others (tests/test_analyze_batched.py)
    warn_not_infused(uninfused)
    if events_absent(study):  # review 37 B1: a censoring reads "no event" from a file not given: say so
        rows = rows.with_columns(pl.when(pl.col("CNSR") == 1).then(pl.concat_str(
            "reason", pl.lit("; "), pl.when(pl.col("PARAMCD") == "OS").then(pl.lit(EVENTS_NOT_GIVEN.format("death")))
            .otherwise(pl.lit(EVENTS_NOT_GIVEN.format("death, relapse, allo-HSCT or new therapy")))))
            .otherwise(pl.col("reason")).alias("reason"))
    return rows.with_columns(pl.lit(study.study_id, dtype=pl.String).alias("STUDYID")).select(
        list(ADTTE_SCHEMA)).cast(ADTTE_SCHEMA)
