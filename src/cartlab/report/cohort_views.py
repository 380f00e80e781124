"""Every cohort view as a :class:`~cartlab.report.cohort_base.CohortView`: the data functions
(:mod:`cartlab.report.cohort_data`) drawn by a renderer module (:mod:`cartlab.report.cohort_mpl` for
the static report, :mod:`cartlab.report.cohort_plotly` for the dashboard), with one title and caption
per view. A view that cannot be drawn carries ``unavailable`` = the reason (the missing table and
why); the others still render.
"""

from __future__ import annotations

import polars as pl

from cartlab.report import cohort_data as cd
from cartlab.report.cohort_base import (
    CohortView,
    ViewUnavailable,
    auc_name,
    pct_half_up,
    provenance_note,
    safety_subjects,
    selected_ids,
)
from cartlab.report.cohort_style import CROSS_SCALE_CITATION, EVENTS_BAND_TEXT

__all__ = ["VIEW_KEYS", "view_specs"]

#: the grade tables' percent column, named by its denominator (the bars beside them: % of all subjects)
PCT_OF_EVALUABLE = "% of evaluable"


def _grade_table(counts: pl.DataFrame) -> pl.DataFrame:
    """A grade distribution as the page shows it: its percent named by its denominator, to one decimal
    (the report and the dashboard print it alike: "41.0", "5.1")."""
    if "pct" not in counts.columns:
        return counts
    pct = (pl.when(pl.col("pct").is_not_null()).then(pct_half_up(pl.col("n"), pl.col("n_evaluable")))
           if {"n", "n_evaluable"} <= set(counts.columns) else pl.col("pct").round(1))  # a half away from zero
    return counts.with_columns(pct.alias("pct")).rename({"pct": PCT_OF_EVALUABLE})


def _caption(text: str, notes=(), prov: str = "") -> str:
    return " ".join([text, *[n.rstrip(".") + "." for n in notes if n], prov]).strip()


def _view(key: str, title: str, build) -> CohortView:
    try:
        caption, figure, table, *data = build()
    except ViewUnavailable as exc:
        return CohortView(key, title, "", None, None, exc.reason)
    return CohortView(key, title, caption, figure, table, data=data[0] if data else {})


def _exposure_notes(d) -> list[str]:
    """Why an outcome's rows have fewer subjects (exposure_response ``n_excluded`` / ``excluded``, once
    per outcome) and how many exposures of 0 are drawn at the floor of the log axis."""
    notes = []
    st = d.stats
    if st.width and {"outcome", "n_excluded", "excluded"} <= set(st.columns):
        for outcome, n, why in st.select("outcome", "n_excluded", "excluded").unique(maintain_order=True).iter_rows():
            if n:
                notes.append(f"{outcome} rows: {n} subject(s) excluded, {why}")
    pts = d.points
    for col, name in (("car_cmax", "Cmax"), ("car_auc_0_28", auc_name(getattr(d, "window", (0.0, 28.0))))):
        if col in pts.columns:
            z = pts.filter(pl.col(col) == 0)
            if z.height:
                notes.append(f"{z.height} subject(s) with {name} 0 (no expansion: "
                             f"{', '.join(z['subject_id'].head(10).to_list())}) drawn at the floor of the log axis (▼)")
    return notes


def _course_notes(analysis, ids, endpoints: bool = True) -> list[str]:
    """What the survival, swimmer and relapse views cannot show (review 39 B2/B9): the subjects with no
    CAR-T dose (ADTTE rule ``not_infused``: no day 0 to count from; option ``endpoints.population``)
    and an events.csv not given (no death, HSCT or new therapy is known: none is counted, and relapses come
    only from the marrows, so OS, EFS and LFS are the most favourable reading, not an observation, and the
    relapse incidence has no competing death; missing is not negative; review 41 diff1 F7)."""
    from cartlab.report.warnings_block import absent_file

    notes = []
    if endpoints and analysis.has("adtte"):
        adtte = analysis.table("adtte")
        if "rule" in adtte.columns:
            ni = adtte.filter(pl.col("rule") == "not_infused")["subject_id"].unique(maintain_order=True)
            if ids is not None:
                ni = ni.filter(ni.is_in(list(ids)))
            if ni.len():
                try:
                    pop = analysis.options.endpoint_options().population
                except AttributeError:
                    pop = "infused"
                shown = ni.head(10).to_list()
                notes.append(f"Not infused (no CAR-T dose in doses.csv, no day 0 to count from; option "
                             f"endpoints.population={pop}): {', '.join(shown)}"
                             f"{f' and {ni.len() - 10} more' if ni.len() > 10 else ''} not counted")
        notes.extend(_open_readings(adtte, ids))
    if absent_file(analysis.study, "events.csv"):
        notes.append("events.csv not given: no death, HSCT or new therapy is known, so none is counted, and "
                     "relapses come only from the marrows (one recorded only in events.csv cannot show): OS, EFS "
                     "and LFS are the most favourable reading, not an observation; the cumulative incidence of "
                     "relapse has no competing death (deaths unknown)")
    return notes


def _efs_censoring(analysis) -> str:
    """How EFS is censored beside the others (review 47 #2): ELN 2022 Table 9 censors a subject in
    remission without relapse or death "on the date they were last assessed for response" (EFS) but OS
    and RFS "on the date they were last known to be alive", so with follow-up past the last marrow the
    EFS curve has fewer subjects at risk, and falls further at a later relapse or death, than RFS/LFS."""
    try:
        how = analysis.options.endpoint_options().efs_censor
    except AttributeError:
        how = "last_disease_assessment"
    if how == "last_known_alive":
        return ("Censoring: every endpoint at the day last known alive (EFS too: option "
                "endpoints.efs_censor=last_known_alive, not ELN 2022's reading).")
    if how == "last_response_assessment":
        return ("Censoring (ELN 2022 Table 9): EFS without an event at the last response assessment (the marrow "
                "only: option endpoints.efs_censor=last_response_assessment), OS, RFS and LFS at the day last known "
                "alive; with follow-up after the last marrow, fewer subjects are at risk for EFS and a later relapse "
                "or death weighs more in it.")
    return ("Censoring (ELN 2022 Table 9): EFS without an event at the last response assessment - the last marrow, "
            "or a later blood sample without circulating blasts, which the relapse rule reads (ELN 2022 Table 7) - "
            "OS, RFS and LFS at the day last known alive (option endpoints.efs_censor).")


#: ADTTE censoring rules a missing input leaves open (review 41 F1/F2), in the survival views' words
_OPEN_RULES = {
    "efs.remission_undetermined": "with an assessment by the landmark that could be CR/CRh/CRi for want of an input "
                                  "(rule efs.remission_undetermined): EFS censored at day 0 as not evaluable by the "
                                  "landmark, not a treatment failure (option endpoints.efs_open_remission)",
    "censor.relapse_undetermined": "with a marrow after the remission that could be a relapse for want of an input "
                                   "(rule censor.relapse_undetermined): censored at the last assessment that settles no "
                                   "relapse (option endpoints.undetermined_relapse)",
}


def _open_readings(adtte: pl.DataFrame, ids) -> list[str]:
    """The survival views' notes on subjects whose endpoint a missing input leaves open (session 42,
    fix41_endpoints left item): how many, which parameters, the first ids; the curves count them censored."""
    if "rule" not in adtte.columns or "PARAMCD" not in adtte.columns:
        return []
    notes = []
    for rule, words in _OPEN_RULES.items():
        f = adtte.filter(pl.col("rule") == rule)
        if ids is not None:
            f = f.filter(pl.col("subject_id").is_in(list(ids)))
        if f.height == 0:
            continue
        sids = f["subject_id"].unique(maintain_order=True)
        params = ", ".join(f["PARAMCD"].unique(maintain_order=True).to_list())
        shown = ", ".join(sids.head(10).to_list()) + (f" and {sids.len() - 10} more" if sids.len() > 10 else "")
        notes.append(f"{sids.len()} subject(s) {words}; {params}: {shown}")
    return notes


def view_specs(analysis, subject_ids, renderer) -> list[CohortView]:
    """Every cohort view, built from the data functions and drawn by ``renderer`` (an object with
    the figure functions of this module or of :mod:`cartlab.report.cohort_plotly`)."""
    try:
        ids = selected_ids(analysis, subject_ids, "cohort")
        prov = provenance_note(analysis, ids)
    except ViewUnavailable:
        prov = ""
    R = renderer
    sel = subject_ids
    events = cd.events_not_given(analysis.study)

    def banded(fig):
        """The figure with the events-not-given band inside the image (review 41 F6)."""
        band = getattr(R, "events_band", None)
        return band(fig, EVENTS_BAND_TEXT.format(events=events)) if events and band and fig is not None else fig

    def _ids(sel):
        return None if sel is None else set(sel)

    def swimmer():
        d = cd.swimmer_data(analysis, sel)
        return (_caption("Each bar runs from the CAR-T infusion (day 0) to death or the last day the subject was "
                         "known alive (ADTTE OS, ELN 2022 Table 9); sorted by follow-up.",
                         [*d.notes, *_course_notes(analysis, _ids(sel))], prov),
                banded(R.swimmer_figure(d)), None, {"bars": d.bars, "markers": d.markers})

    def grades():
        d = cd.grade_distribution(analysis, sel)
        hi = {t: n for t, n in d.counts.filter(pl.col("grade").is_not_null()).group_by("term", maintain_order=True)
              .agg(pl.col("n_could_be_higher").sum()).iter_rows() if n}  # subjects per term (one grade each)
        extra = ([", ".join(f"{t}: {n} subject(s)" for t, n in hi.items())
                  + " could have a higher grade had a missing input been recorded"] if hi else [])
        return (_caption("Subjects by worst ASTCT 2019 grade (Lee DW et al., BBMT 2019;25:625); not evaluable = "
                         "no data to grade, counted apart. Bars: % of all subjects (not evaluable included); "
                         f"table: n, and {PCT_OF_EVALUABLE} = % of n_evaluable.", [*d.notes, *extra], prov),
                R.grade_figure(d.counts, "term"), _grade_table(d.counts.drop("scale")), {"": d.counts})

    def cross():
        d = cd.cross_scale_table(analysis, sel)
        hi = d.grades.filter(pl.col("grade").is_not_null())
        hi = {s: n for s, n in hi.group_by("scale", maintain_order=True).agg(pl.col("n_could_be_higher").sum()).iter_rows() if n}
        extra = ([("a grade that is a range (an input missing) counts at its lower grade (* in the bars): "
                   + ", ".join(f"{s} {n}" for s, n in hi.items()) + " subject(s) could be higher")] if hi else [])
        return (_caption(f"CRS grade of the same subjects on five scales (bars: % of all subjects); the table "
                         f"compares each pair ({CROSS_SCALE_CITATION}).", [*d.notes, *extra], prov),
                R.grade_figure(d.grades, "scale"), d.pairwise, {"": d.grades, "pairwise": d.pairwise})

    def icaht():
        d = cd.icaht_distribution(analysis, sel)
        hi = {t: n for t, n in d.counts.filter(pl.col("grade").is_not_null()).group_by("term", maintain_order=True)
              .agg(pl.col("n_could_be_higher").sum()).iter_rows() if n}  # per term: early and late apart
        extra = ([", ".join(f"{t}: {n} subject(s)" for t, n in hi.items())
                  + " could have a higher grade (days of the window without a count are not counted)"] if hi else [])
        return (_caption("Subjects by early and late ICAHT grade (Rejeski K et al., Blood 2023;142:865) and "
                         "T-ICAHT grade (Rejeski K et al., Blood 2025); not evaluable counted apart. Bars: % of all "
                         f"subjects (not evaluable included); table: {PCT_OF_EVALUABLE} = % of n_evaluable.",
                         [*d.notes, *extra], prov),
                R.grade_figure(d.counts, "term"), _grade_table(d.counts), {"": d.counts})

    def recovery():
        d = cd.count_recovery_data(analysis, sel)
        return (_caption("Crude cumulative share recovered among every subject whose counts fell below the threshold "
                         "(recovered, not reached, censored and not evaluable; not a competing-risk estimate). A not "
                         "evaluable subject (recovery day in a range) or one censored before recovering (follow-up "
                         "ended) stays in the denominator: the solid line counts it at its latest possible day (never, "
                         "if open-ended), the dashed line at its earliest; the shaded band between them holds every "
                         "completion of the missing days.", d.notes, prov),
                R.recovery_figure(d), None, {"": d.curve, "subjects": d.subjects})

    def expansion():
        d = cd.expansion_data(analysis, sel)
        extra = [f"{d.n_without} of {d.n_subjects} selected subject(s) without CAR-T copies"] if d.n_without else []
        return (_caption("CAR transgene copies in peripheral blood (qPCR), one line per subject.",
                         [*d.notes, *extra], prov), R.expansion_figure(d), None, {"": d.points})

    def exposure():
        d = cd.exposure_outcome_data(analysis, sel)
        table = d.stats.select([c for c in ("param", "unit", "exposure", "outcome", "n", "n_event", "n_excluded", "median_event",
                                            "median_no_event", "mann_whitney_p", "or_per_10fold", "or_ci_low",
                                            "or_ci_high", "logit_note")
                                if c in d.stats.columns]) if d.stats.width else None
        return (_caption(f"Cmax and {auc_name(d.window)} (PKNCA conventions; column car_auc_0_28) by best response; "
                         "table: Mann-Whitney test and "
                         "logistic regression per 10-fold exposure; n_excluded = subjects left out of that "
                         "outcome's row.", [*d.notes, *_exposure_notes(d)], prov), R.exposure_figure(d), table,
                {"": d.points, "stats": d.stats})

    def cytokine():
        d = cd.cytokine_matrix(analysis, sel)
        return (_caption(f"Daily maximum {d.param} per subject (rows, highest peak first).", d.notes, prov),
                R.cytokine_figure(d), None, {"": d.cells})

    def survival():
        d = cd.survival_data(analysis, sel)
        return (_caption("Kaplan-Meier estimates (ELN 2022 Table 9 endpoints) with 95% log(-log) CIs; table: "
                         "median (days; 95% CI by inversion of the log(-log) band; not reached = the curve or band stays "
                         "above 0.5, not estimable = the band ends where the estimate reaches 0 first, as in "
                         "km_median.csv) and number at risk = subjects with time >= the day (RFS and CIR count days since the "
                         "remission, OS, EFS and LFS since the infusion). " + _efs_censoring(analysis),
                         [*d.notes, *_course_notes(analysis, _ids(sel))], prov),
                banded(R.survival_figure(d)), d.shown_table(), {"": d.steps, "at_risk": d.at_risk, "medians": d.table()})

    def incidence():
        d = cd.relapse_incidence_data(analysis, sel)
        return (_caption("Cumulative incidence of relapse with death without relapse as competing event "
                         "(Aalen-Johansen), from the first remission; table: on each day since the remission, the "
                         "subjects at risk and each cumulative incidence (%, the estimate holding that day) with its "
                         "95% CI.",
                         [*d.notes, *_course_notes(analysis, _ids(sel))], prov), banded(R.incidence_figure(d)),
                d.table(), {"": d.curves, "at_risk": d.at_risk})

    def toxicity():
        t = cd.toxicity_summary(analysis, sel)
        return (_caption("Subjects by worst grade per term and scale; N = subjects evaluable for the term, "
                         "not evaluable counted separately (missing is not grade 0); CTCAE lab terms from day 0 on. "
                         "A grade that is a range (an input missing, e.g. Penn 1-2) counts at its lower grade: the "
                         "counts are at least these; Could be higher n = subjects whose grade could be higher. "
                         "— = a grade the scale does not define (read from its criteria table: ICAHT and T-ICAHT "
                         "grade 0-4; CTCAE lab terms are graded from the value up to grade 4, and some lack lower "
                         "grades, e.g. Leukocytosis grades 3-4 only).",
                         [*safety_subjects(analysis, _ids(sel))[1], *cd.assumed_clause_notes(analysis, sel)], prov),
                None, t, {"": t})

    def rates():
        d = cd.response_rate_table(analysis, sel)
        return (_caption("Best-response rates with exact two-sided 95% CIs (Clopper CJ, Pearson ES. Biometrika "
                         "1934;26:404); NE and not assessed count as non-response (ELN 2022, intention to treat). "
                         "n_could_be_responders = subjects counted as non-responders whose best response could "
                         "reach the rate's categories for want of an input (e.g. an NE that could be CR/CRi): "
                         "the rate is then at least the rate shown, up to rate_max (response_rates.csv reason "
                         "names them and the missing input).", d.notes, prov),
                R.rates_figure(d.table), d.table, {"": d.table})

    def deviations():
        d = cd.deviation_summary(analysis, sel)
        unchecked = ""
        if d.n_not_checkable:
            items = "; ".join(f"{i}: {s}" for i, s in d.not_checkable.select("item", "subjects").iter_rows())
            unchecked = (f" Could not be checked against the plan (an input missing; not counted as deviations): "
                         f"{d.n_not_checkable} subject(s) ({items}).")
        return (f"Protocol {d.protocol}: {d.n_with} of {d.n_selected} subject(s) with at least one deviation."
                f"{unchecked} n_deviations = planned doses or scheduled assessment days missed or off plan (a "
                "missed-monitoring row of protocol_deviations.csv counts each of its missed days); n_rows = rows "
                "of protocol_deviations.csv.", None, d.summary,
                {"": d.summary, "not_checkable": d.not_checkable})

    specs = [("swimmer", "Swimmer plot", swimmer), ("crs_icans_grades", "CRS and ICANS grades", grades),
             ("crs_cross_scale", "CRS across grading scales", cross), ("icaht", "ICAHT and T-ICAHT grades", icaht),
             ("count_recovery", "Count recovery", recovery), ("expansion", "CAR-T expansion", expansion),
             ("exposure", "Exposure and outcome", exposure), ("cytokines", "Cytokine heat map (IL-6)", cytokine),
             ("survival", "Survival (Kaplan-Meier)", survival),
             ("relapse_incidence", "Cumulative incidence of relapse", incidence),
             ("toxicity", "Toxicity summary", toxicity), ("response_rates", "Response rates", rates),
             ("deviations", "Protocol deviations", deviations)]
    return [_view(k, t, b) for k, t, b in specs]



#: the views in display order
VIEW_KEYS = ("swimmer", "crs_icans_grades", "crs_cross_scale", "icaht", "count_recovery", "expansion", "exposure",
             "cytokines", "survival", "relapse_incidence", "toxicity", "response_rates", "deviations")
