"""Who received the CAR-T (review 39 A1): a dose row, or the CAR-T measured after day 0.

Study-format v1 "Time": day 0 is the first CAR-T infusion. A CAR transgene (CARCOPY) or CAR+ cells
(CARCELL) quantified after day 0 is direct evidence of an infusion, so a subject with such a value but
no CAR-T row in doses.csv has an infusion *not recorded*, not "not infused" (missing is not negative).

Option ``infusion_evidence`` (``BestResponseOptions``, read by the endpoint population too):

* ``dose_or_kinetics`` (default): a dose row, or else a quantifiable CARCOPY/CARCELL after day 0
  (a number, not a censored ``<x`` and not below the row's ``lloq``: spec "Cellular kinetics", BLQ);
  such a subject is counted as infused on day 0 (its reason says so; rule rows ``response.not_infused``
  and ``not_infused`` name the option).
* ``dose``: a dose row only (the reading before session 39).

One function, :func:`infused_subjects`, decides it for the marrow assessments, the best response and
the time-to-event population. It is ONE option of an analysis, ``best_response.infusion_evidence``
(review 39 diff1 B3 / diff2 B1): the analysis passes it to the marrow assessments
(``ResponseOptions.infusion_evidence``, :func:`marrow_infused`: with ``dose`` a subject without a dose
row has no marrow_response row, as before session 39) and to the endpoints; setting
``response.infusion_evidence`` or ``endpoints.infusion_evidence`` to another value is refused
(:func:`check_one_option`).
"""

from __future__ import annotations

import warnings

import polars as pl

from cartlab.errors import SubjectsWarning

__all__ = ["EVIDENCE_DOC", "INFUSION_EVIDENCE", "check_one_option", "infused_subjects", "kinetics_note",
           "marrow_infused", "one_option_response", "reinfusions", "warn_kinetics_infused"]

#: the values of option ``infusion_evidence`` (default first)
INFUSION_EVIDENCE = ("dose_or_kinetics", "dose")
_CAR = ("CARCOPY", "CARCELL")
#: ResponseOptions.infusion_evidence's description
EVIDENCE_DOC = ("who is infused (marrow assessments after a CAR-T): 'dose_or_kinetics' (a dose row, or a "
                "quantifiable CARCOPY/CARCELL after day 0) or 'dose' (a dose row only); in an analysis it is "
                "best_response.infusion_evidence")


def _first_car_quantified(study) -> dict[str, tuple[float, str, str | None]]:
    """Per subject, the first quantifiable CARCOPY/CARCELL after day 0: (day, param, row ref)."""
    o = study.observations
    need = {"subject_id", "day", "param", "value"}
    if o.height == 0 or not need <= set(o.columns):
        return {}
    q = (pl.col("param").is_in(list(_CAR)) & pl.col("day").is_not_null() & (pl.col("day") > 0)
         & pl.col("value").is_not_null() & (pl.col("value") > 0))
    if "lloq" in o.columns:  # below the LLOQ is not quantifiable (spec "Cellular kinetics": BLQ)
        q = q & (pl.col("lloq").is_null() | (pl.col("value") >= pl.col("lloq")))
    if "value_text" in o.columns:  # a censored "<x" is not a quantified value
        q = q & ~pl.col("value_text").fill_null("").str.strip_chars().str.starts_with("<")
    cols = [c for c in ("subject_id", "day", "param", "src_file", "src_row") if c in o.columns]
    hit = o.filter(q).select(cols).sort("subject_id", "day").unique("subject_id", keep="first", maintain_order=True)
    out = {}
    for r in hit.iter_rows(named=True):
        ref = (f"{r['src_file']}:{int(r['src_row'])}" if r.get("src_file") is not None and r.get("src_row") is not None
               else None)
        out[r["subject_id"]] = (float(r["day"]), r["param"], ref)
    return out


def kinetics_note(day: float, param: str, ref: str | None) -> str:
    """The reason's words for a subject counted as infused from its CAR-T measurement."""
    return (f"no CAR-T dose recorded; CAR-T measured on day {day:g} ({param}"
            + (f", {ref}" if ref else "") + "): counted as infused (option infusion_evidence)")


def infused_subjects(study, evidence: str = "dose_or_kinetics") -> tuple[set[str] | None, str, dict[str, str]]:
    """(the infused subjects, or None when the doses are unknown; why; subject -> note for each subject
    counted as infused only from its CAR-T measurement).

    ``None`` as in :func:`cartlab.response.marrow_inputs.infusion_status` (doses.csv not given, or no
    CAR-T row for any subject: everyone is infused on day 0, spec "Time"). Otherwise the subjects with a
    CAR-T dose and, with ``evidence="dose_or_kinetics"``, those with a quantifiable CARCOPY/CARCELL
    after day 0 (the note names the day, the parameter and the row)."""
    from cartlab.response.marrow_inputs import infusion_status

    if evidence not in INFUSION_EVIDENCE:
        raise ValueError(f"infusion_evidence must be one of {INFUSION_EVIDENCE}, got {evidence!r}")
    given, why = infusion_status(study)
    if given is None or evidence == "dose":
        return given, why, {}
    notes = {sid: kinetics_note(*v) for sid, v in _first_car_quantified(study).items()
             if sid not in given and sid in set(study.subject_ids)}
    return given | set(notes), why, notes


def warn_kinetics_infused(notes: dict[str, str], where: str) -> None:
    """One warning naming the subjects counted as infused without a CAR-T dose row."""
    if notes:
        warnings.warn(SubjectsWarning(
            f"{len(notes)} subject(s) have no CAR-T dose in doses.csv but a quantifiable CARCOPY/CARCELL after "
            "day 0: counted as infused on day 0, the infusion not recorded (option infusion_evidence="
            "dose_or_kinetics; 'dose' leaves them out); add the dose row: {subjects}", sorted(notes), where),
            stacklevel=3)


def marrow_infused(study, options) -> set[str] | None:
    """The subjects whose marrows are assessed (:func:`infused_subjects` with the response options'
    ``infusion_evidence``); ``None``: the doses are unknown, everyone is infused on day 0 (spec "Time")."""
    return infused_subjects(study, getattr(options, "infusion_evidence", None) or "dose_or_kinetics")[0]


def check_one_option(best: str, **others: str | None) -> None:
    """Refuse ``response.infusion_evidence`` / ``endpoints.infusion_evidence`` set apart from
    ``best_response.infusion_evidence`` (one decision: review 39 diff2 B1); ``others``: engine -> value
    set (None: not set)."""
    from cartlab.errors import InputError

    bad = [f"{k}.infusion_evidence={v!r}" for k, v in others.items() if v is not None and v != best]
    if bad:
        raise InputError(f"{', '.join(bad)}: who is infused is one option of the analysis, set it as "
                         f"best_response.infusion_evidence (now {best!r}); it applies to the marrow "
                         "assessments, the best response and the endpoints alike")


def one_option_response(analysis_options):
    """For ``AnalysisOptions``: refuse ``response``/``endpoints`` ``infusion_evidence`` set apart from
    ``best_response.infusion_evidence`` (from the settings; options built in Python: a value other than
    the default) and give the response options carrying it, or None when they already do."""
    from dataclasses import replace

    from cartlab.response.marrow import ResponseOptions

    o = analysis_options
    best = getattr(o.best_response, "infusion_evidence", INFUSION_EVIDENCE[0])
    set_ = {k: v.get("infusion_evidence") for k, v in (o.settings or {}).items()
            if k in ("response", "endpoints") and isinstance(v, dict)}
    for k in ("response", "endpoints"):
        v = getattr(getattr(o, k), "infusion_evidence", None)
        set_.setdefault(k, v if v not in (None, INFUSION_EVIDENCE[0]) else None)
    check_one_option(best, **set_)
    response = o.response or ResponseOptions()
    return None if response.infusion_evidence == best else replace(response, infusion_evidence=best)


def reinfusions(study, gap_days: float | None = None) -> dict[str, list[tuple[float, str | None]]]:
    """Per subject, the CAR-T re-infusions: (day, row ref) of each CAR-T dose more than ``gap_days``
    after the previous CAR-T dose (review 41 F7). ``gap_days``: the analysis's
    ``kinetics.split_dose_gap_days`` (None: its default, 7; session 42: an analysis passes its own).
    The fractions of a split dose a few days apart are one administration, not a re-infusion, as the
    kinetics engine reads them (its profile ends at the same gap); the option
    ``best_response.reinfusion`` decides whether assessments after a re-infusion count."""
    from cartlab.kinetics.agents import car_t_infusions, split_dose_gap_expr
    from cartlab.kinetics.car import CarKineticsOptions
    from cartlab.provenance import row_ref

    gap = float(CarKineticsOptions.split_dose_gap_days if gap_days is None else gap_days)
    inf = car_t_infusions(study)
    if inf.height == 0:
        return {}
    # a product with a labelled split dose (obe-cel: Day 1 and Day 10 +/- 2, up to Day 21) keeps its
    # fractions one administration, as the kinetics engine reads them (session 45, review 45 kinetics F1)
    agent = pl.col("agent") if "agent" in inf.columns else pl.lit(None, dtype=pl.String)
    inf = inf.with_columns(split_dose_gap_expr(agent, gap).alias("_max_gap"))
    out: dict[str, list[tuple[float, str | None]]] = {}
    previous: dict[str, float] = {}
    for r in inf.sort("subject_id", "day").iter_rows(named=True):
        sid, day = r["subject_id"], float(r["day"])
        if sid in previous and day - previous[sid] > r["_max_gap"]:
            out.setdefault(sid, []).append((day, row_ref(r)))
        previous[sid] = day
    return out
