"""The warnings :func:`cartlab.response.adtte.derive_adtte` gives about the rows it derived (moved out of
adtte.py, review 41 diff1 F8/10: one module per concern, none much over 800 lines): a death before day 0,
rows after last_followup_day, EFS without a landmark, a relapse without remission (review 41 F6), an
assessment just after the EFS landmark when evaluability is judged by it (review 41 diff1 F1), subjects
censored at their last recorded row. Each is one warning naming the subjects."""

from __future__ import annotations

import warnings

import polars as pl

from cartlab.errors import CartlabWarning, SubjectsWarning
from cartlab.model import Study
from cartlab.response.adtte_population import day_expr as _day
from cartlab.response.adtte_population import warn_relapse_without_remission
from cartlab.response.endpoint_options import EndpointOptions

__all__ = ["VISIT_WINDOW_DAYS", "warn_assessed_after_landmark", "warn_derived", "warn_rows_after_followup"]

_SID = "subject_id"


def warn_derived(f: pl.DataFrame, rows: pl.DataFrame, study: Study, opts: EndpointOptions, params: tuple[str, ...],
                 responses: pl.DataFrame | None) -> None:
    """Every warning about the derived ``rows`` (``f``: the per-subject frame), in the order analyze shows them."""
    pre = f.filter(pl.col("pdeath_day").is_not_null())[_SID].to_list()
    if pre:
        warnings.warn(SubjectsWarning(
            f"{len(pre)} subject(s) have a death recorded before day 0 (the first CAR-T infusion): their OS, EFS "
            "and the other time-to-event endpoints are not evaluable (ADTTE rule death_before_origin): {subjects}; "
            "check the death day and the infusion day", pre, "adtte.csv (rule death_before_origin)"), stacklevel=3)
    warn_rows_after_followup(f, study, opts)
    if "EFS" in params and opts.efs_landmark_day is None and rows.filter(
            (pl.col("PARAMCD") == "EFS") & (pl.col("ANLFL") == "Y")).height:
        warnings.warn(CartlabWarning(
            "EFS was derived without a landmark (EndpointOptions.efs_landmark_day unset): treatment failure "
            "is judged by the end of follow-up, so a CR/CRh/CRi on any day avoids it and every death without "
            "a response assessment, on any day, is treatment failure at day 0 (ADTTE rules efs.*). ELN 2022 "
            "Table 9 asks for a pre-defined landmark; set the protocol's, e.g. "
            "--set endpoints.efs_landmark_day=28"), stacklevel=3)
    warn_relapse_without_remission(f, rows, params)  # review 41 F6
    warn_assessed_after_landmark(responses, rows, opts)  # review 41 diff1 F1: the visit-window trap
    censored = sorted(set(rows.filter(pl.col("rule") == "censor.last_record")[_SID].to_list()))
    if censored:
        warnings.warn(SubjectsWarning(
            f"{len(censored)} subject(s) have no last_followup_day and were censored at their last recorded row "
            "(ADTTE rule censor.last_record): {subjects}", censored, "adtte.csv (rule censor.last_record)"),
            stacklevel=3)


def warn_rows_after_followup(f: pl.DataFrame, study: Study, opts: EndpointOptions) -> None:
    """One warning naming the subjects with a dated row (not death) after their last_followup_day."""
    from cartlab.response.adtte import last_recorded_rows

    fu = f.filter(pl.col("fu_day").is_not_null()).select(_SID, "_order", "fu_day")
    if fu.is_empty():
        return
    last = last_recorded_rows(study, fu[_SID].to_list(), alive_only=True).with_columns(
        _day(pl.col("day"), opts.calendar_days))
    late = (last.join(fu, on=_SID).filter(pl.col("day") > pl.col("fu_day")).sort("_order", "table")
            .group_by(_SID, maintain_order=True).agg(pl.col("day").first(), pl.col("ref").first(), pl.col("fu_day").first()))
    if late.is_empty():
        return
    labels = [f"{r[_SID]} (day {r['day']:g}, {r['ref']}; last_followup_day {r['fu_day']:g})"
              for r in late.iter_rows(named=True)]
    used = ("the later row is used as the day last known alive (EndpointOptions.last_alive_sources='all_tables')"
            if opts.last_alive_sources == "all_tables" else
            "these rows are not used (last_alive_sources='followup_day'): check last_followup_day")
    warnings.warn(SubjectsWarning(
        f"{late.height} subject(s) have a dated row after their last_followup_day (the last day known alive "
        f"and followed): {{subjects}}; {used}", late[_SID].to_list(), "adtte.csv (column reason)", labels=labels),
        stacklevel=4)


#: how many days after the EFS landmark an assessment is named as possibly the landmark's visit (a
#: protocol's "day 28" marrow is taken in a window): a warning only, no result depends on it
VISIT_WINDOW_DAYS = 7


def warn_assessed_after_landmark(responses: pl.DataFrame | None, rows: pl.DataFrame, opts: EndpointOptions) -> None:
    """Review 41 diff1 F1: when EFS evaluability is judged by the landmark (``efs_evaluable_by="landmark"``),
    one warning naming the counted EFS subjects without an evaluable assessment by the landmark but with one
    within :data:`VISIT_WINDOW_DAYS` days after it (the landmark visit taken a few days late?): they are
    not evaluable for EFS (censored at day 0), as best response calls them NE."""
    lm = opts.efs_landmark_day
    if (responses is None or lm is None or opts.efs_evaluable_by != "landmark" or responses.is_empty()
            or not {"best_response", "best_response_day"} <= set(responses.columns)):
        return
    counted = rows.filter((pl.col("PARAMCD") == "EFS") & (pl.col("ANLFL") == "Y"))[_SID].unique().to_list()
    cat, day = pl.col("best_response"), pl.col("best_response_day").cast(pl.Float64, strict=False).floor()
    ev = responses.filter(cat.is_not_null() & (cat != "") & ~cat.is_in(list(opts.not_evaluable_categories))
                          & day.is_not_null() & pl.col(_SID).is_in(counted)).with_columns(day.alias("_d"))
    by_lm = set(ev.filter(pl.col("_d") <= float(lm))[_SID].to_list())
    late = (ev.filter((pl.col("_d") > float(lm)) & (pl.col("_d") <= float(lm) + VISIT_WINDOW_DAYS)
                      & ~pl.col(_SID).is_in(list(by_lm)))
            .sort(_SID, "_d").unique(_SID, keep="first", maintain_order=True))
    if late.height:
        warnings.warn(SubjectsWarning(
            f"{late.height} subject(s) have no evaluable response assessment by the EFS landmark (day {float(lm):g}) "
            f"but one within {VISIT_WINDOW_DAYS} days after it: not evaluable for EFS (censored at day 0; "
            "efs_evaluable_by='landmark'), as best response calls them - was the landmark visit taken late? Set the "
            "landmark to the visit window's end if so: {subjects}", late[_SID].to_list(), "adtte.csv (EFS reason)",
            labels=[f"{r[_SID]} ({r['best_response']} on day {r['_d']:g})" for r in late.iter_rows(named=True)]),
            stacklevel=4)
