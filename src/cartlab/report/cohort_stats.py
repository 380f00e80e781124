"""Cohort views as data, part 2: survival, relapse incidence, toxicity summary, response rates,
protocol deviations (see :mod:`cartlab.report.cohort_data` for the conventions).

The cohort statistics come from the analysis's tables (``km``, ``cumulative_incidence``,
``response_rates``, computed once with the analysis's options). They are recomputed, with the same
functions and defaults the analysis used (``km_estimate``, ``cumulative_incidence``, ``orr``),
only when a table lacks what a view needs: a subset of the subjects (the dashboard's filters), or a
parameter the ``km`` table does not hold (RFS). The notes say when that happened.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

import polars as pl

from cartlab.report.cohort_base import (
    ViewUnavailable,
    fmt_n_pct,
    nice_ticks,
    optional,
    require,
    safety_subjects,
    selected_ids,
    subjects_of,
    subset,
    worst_grade_counts,
)

__all__ = [
    "Deviations",
    "IncidenceData",
    "Rates",
    "SurvivalData",
    "at_risk_table",
    "deviation_summary",
    "median_words",
    "relapse_incidence_data",
    "response_rate_table",
    "survival_data",
    "assumed_clause_notes",
    "toxicity_counts",
    "toxicity_summary",
]

ENDPOINT_NAMES = {"OS": "Overall survival", "EFS": "Event-free survival", "RFS": "Relapse-free survival",
                  "LFS": "Leukemia-free survival"}


def at_risk_table(steps: pl.DataFrame, days: list[float], by: str = "PARAMCD") -> pl.DataFrame:
    """Numbers at risk at ``days`` from an estimator's step table (``time``, ``n_at_risk`` per ``by``).

    The step table holds every distinct AVAL (events and censorings), each with the subjects whose
    AVAL >= that time; so at day d the number at risk (AVAL >= d) is the ``n_at_risk`` of the first
    step at or after d, and 0 when no step is at or after d."""
    keys = steps.select(by).unique(maintain_order=True)
    grid = keys.join(pl.DataFrame({"time": [float(d) for d in days]}, schema={"time": pl.Float64}), how="cross")
    s = steps.select(by, pl.col("time").cast(pl.Float64), "n_at_risk").sort(by, "time")
    out = grid.sort(by, "time").join_asof(s, on="time", by=by, strategy="forward", check_sortedness=False)
    return out.select(by, "time", pl.col("n_at_risk").fill_null(0).cast(pl.Int64))


@dataclass(frozen=True)
class SurvivalData:
    """Kaplan-Meier ``steps`` (``PARAMCD``, ``time``, ``survival``, ``ci_low``, ``ci_high``,
    ``n_at_risk``, ``n_events``, ``n_censored``), ``at_risk`` (``PARAMCD``, ``time``, ``n_at_risk``
    at the chosen days), ``source`` per endpoint ("km table" or "estimated here from adtte") and
    ``medians`` (:func:`cartlab.response.endpoints.median_survival` per endpoint: ``n``,
    ``n_events``, ``median`` with its 95% CI)."""

    steps: pl.DataFrame
    at_risk: pl.DataFrame
    source: dict
    notes: tuple[str, ...] = ()
    medians: pl.DataFrame | None = None

    def table(self) -> pl.DataFrame:
        """One row per endpoint: subjects, events, median (95% CI; empty = not reached) and the
        number at risk at each day of ``at_risk`` (``at_risk_day_<d>``)."""
        wide = self.at_risk.with_columns(pl.format("at_risk_day_{}", pl.col("time").map_elements(
            lambda t: f"{t:g}", return_dtype=pl.String)).alias("_c")).pivot(
            "_c", index="PARAMCD", values="n_at_risk", sort_columns=False)
        if self.medians is None or self.medians.is_empty():
            return wide
        m = self.medians.select("PARAMCD", "n", "n_events", "median", "median_ci_low", "median_ci_high")
        return m.join(wide, on="PARAMCD", how="left", maintain_order="left")

    def shown_table(self) -> pl.DataFrame:
        """:meth:`table` as the pages show it: the median and its CI bounds as text, an empty one
        worded as km_median.csv's ``reason`` words it ("not reached": the curve or band stays above 0.5
        while defined to the end; "not estimable": the band ends where S = 0 before reaching 0.5)."""
        t = self.table()
        if self.medians is None or self.medians.is_empty() or "median" not in t.columns:
            return t
        words = {p: median_words(r) for p, r in zip(self.medians["PARAMCD"].to_list(),
                                                     self.medians["reason"].to_list())}
        cols = ("median", "median_ci_low", "median_ci_high")
        shown = [[(f"{v:g}" if v is not None else words.get(p, (EMPTY_BOUND,) * 3)[i])
                  for p, v in zip(t["PARAMCD"].to_list(), t[c].to_list())] for i, c in enumerate(cols)]
        return t.with_columns([pl.Series(c, vals, pl.String) for c, vals in zip(cols, shown)])


#: an empty median bound whose reason could not be read (never a made-up word)
EMPTY_BOUND = "—"
_MEDIAN_REASON = re.compile(r"median (not reached|\S+ days), \d+% CI (not reached|not estimable|\S+) - "
                            r"(not reached|not estimable|\S+)$")


def median_words(reason: str | None) -> tuple[str, str, str]:
    """How km_median's ``reason`` words the median and its two CI bounds ("not reached" / "not
    estimable" where empty; the number otherwise); "—" for each part it does not state."""
    m = _MEDIAN_REASON.search(str(reason or ""))
    if not m:
        return (EMPTY_BOUND,) * 3
    med = m.group(1)
    return ("not reached" if med == "not reached" else med.removesuffix(" days"), m.group(2), m.group(3))


_KM_COLS = ["PARAMCD", "time", "survival", "ci_low", "ci_high", "n_at_risk", "n_events", "n_censored"]


def survival_data(analysis, subject_ids=None, endpoints=("OS", "EFS", "RFS", "LFS"), at=None) -> SurvivalData:
    """Kaplan-Meier curves of ``endpoints`` (ELN 2022 Table 9 definitions, ``adtte``) with numbers at
    risk at ``at`` (default: a round step, at most 8 days). From the ``km`` table when it holds the
    endpoint for the whole study; otherwise ``km_estimate`` on the selected ``adtte`` rows (the
    analysis's estimator, 95% log(-log) CI)."""
    from cartlab.response.endpoints import km_estimate, median_survival

    view = "Kaplan-Meier"
    ids = selected_ids(analysis, subject_ids, view)
    adtte = subset(require(analysis, "adtte", view), ids)
    km = optional(analysis, "km")
    parts, notes, source, medians = [], [], {}, []
    for p in endpoints:
        analysable = adtte.filter((pl.col("PARAMCD") == p) & (pl.col("ANLFL") == "Y"))
        if analysable.height:
            medians.append(median_survival(analysable, p))
        have = km is not None and ids is None and km.filter(pl.col("PARAMCD") == p).height > 0
        if have:
            parts.append(km.filter(pl.col("PARAMCD") == p).select(_KM_COLS))
            source[p] = "km table"
            continue
        rows = adtte.filter((pl.col("PARAMCD") == p) & (pl.col("ANLFL") == "Y"))
        if rows.height == 0:
            pop = f" (population: subjects reaching {remission_label(analysis)})" if p in ("RFS", "LFS") else ""
            notes.append(f"{p}: no analysable subject{pop}")
            continue
        parts.append(km_estimate(rows, p).select(_KM_COLS))
        source[p] = "estimated here from adtte"
        why = "for the selected subjects" if ids is not None else "(not in the km table)"
        notes.append(f"{p}: Kaplan-Meier estimated {why} from table 'adtte' with the analysis's estimator")
    if not parts:
        raise ViewUnavailable(f"{view}: no analysable subject for {', '.join(endpoints)} in table 'adtte'", ("adtte",))
    steps = pl.concat(parts)
    days = nice_ticks(float(steps["time"].max() or 0.0), at)
    return SurvivalData(steps, at_risk_table(steps, days), source, tuple(notes),
                        pl.concat(medians) if medians else None)


@dataclass(frozen=True)
class IncidenceData:
    """Aalen-Johansen ``curves`` (``event`` = relapse / death without relapse, ``time``, ``cif``,
    ``ci_low``, ``ci_high``, ``n_at_risk``) and ``at_risk`` at the chosen days."""

    curves: pl.DataFrame
    at_risk: pl.DataFrame
    source: str
    notes: tuple[str, ...] = ()
    #: the remission categories of the analysis (``endpoints.remission_categories``) as the axis names them
    remission: str = "CR/CRh/CRi"

    def table(self) -> pl.DataFrame:
        """The page's table (review 47 #6): one row per day of ``at_risk`` (days since the remission):
        the number at risk and each event's cumulative incidence with its 95% CI, the step holding on
        that day (the last estimate at or before it), in percent to one decimal."""
        if self.at_risk.is_empty():
            return pl.DataFrame(schema={"day": pl.Float64, "n_at_risk": pl.Int64})
        days = self.at_risk.select(pl.col("time").cast(pl.Float64).alias("day"), "n_at_risk").sort("day")
        out = days
        for event, label in (("relapse", "relapse"), ("death without relapse", "death without relapse")):
            c = self.curves.filter(pl.col("event") == event).select(
                pl.col("time").cast(pl.Float64).alias("day"), "cif", "ci_low", "ci_high").sort("day")
            if c.is_empty():
                continue
            pct = [(100 * pl.col(k)).round(1).alias(f"{label} {w}") for k, w in
                   (("cif", "% (CIF)"), ("ci_low", "95% CI low"), ("ci_high", "95% CI high"))]
            last = c["day"].max()  # past the last time of the curve the estimate is not defined
            out = (out.join_asof(c, on="day", strategy="backward")
                   .with_columns(pl.when(pl.col("day") <= last).then(p).otherwise(None) for p in pct)
                   .drop("cif", "ci_low", "ci_high"))
        return out


def remission_label(analysis) -> str:
    """The analysis's remission categories joined with "/" ("CR/CRh/CRi" by default; "CR" with
    ``endpoints.remission_categories=[CR]``), as the response-rate endpoint is named (review 37 B3)."""
    opts = getattr(analysis, "options", None)
    cats = opts.endpoint_options().remission_categories if opts is not None else None
    return "/".join(cats) if cats else "CR/CRh/CRi"


def _cir_why() -> pl.Expr:
    """The part of an adtte CIR ``reason`` that says why the subject is not in the CIR population
    ("subjects.disease is empty: ..." from rule no_response_criteria; "no CR/CRh/CRi (NR on day 31)")."""
    return (pl.col("reason").fill_null("not defined (no reason given)").str.split(" -> ").list.first()
            .str.strip_prefix("CIR rests on response assessments, and "))


def _no_cir_population(analysis, ids: list[str] | None) -> str:
    """Why the CIR population (adtte CIR rows with ANLFL=Y) is empty, from the CIR rows' ``rule`` and
    ``reason`` (review 37 A3): "no subject reached CR/CRh/CRi" only when responses were assessed
    (rule not_in_remission with assessment rows as evidence); subjects without an assessed response
    (no response criteria, no assessment) make it not evaluable and are counted by reason."""
    if not analysis.has("adtte"):
        return "not evaluable: table 'adtte' was not derived"
    cir = subset(analysis.table("adtte"), ids).filter(pl.col("PARAMCD") == "CIR")
    if cir.height == 0:
        return "not evaluable: table 'adtte' has no CIR row"
    ev = pl.col("evidence")
    has_ev = (ev.list.len() > 0) if isinstance(cir.schema["evidence"], pl.List) else (ev.fill_null("") != "")
    assessed = (pl.col("rule") == "not_in_remission") & has_ev.fill_null(False)
    n_assessed = cir.filter(assessed).height
    other = cir.filter(~assessed).with_columns(_cir_why().alias("why"))
    groups = other.group_by("why", maintain_order=True).len()
    why = "; ".join(f"{n} subject{'' if n == 1 else 's'}: {w}" for w, n in groups.iter_rows())
    if n_assessed == 0:
        return f"not evaluable: no subject has an assessed response ({why}; the CIR rows of table 'adtte')"
    tail = f"; not evaluable: {why}" if why else ""
    return (f"no subject reached {remission_label(analysis)} ({n_assessed} subject{'' if n_assessed == 1 else 's'} with an "
            f"assessed response{tail}; the CIR rows of table 'adtte')")


def relapse_incidence_data(analysis, subject_ids=None, at=None) -> IncidenceData:
    """Cumulative incidence of relapse with death without relapse as competing event (ELN 2022
    Table 9; Aalen-Johansen) from the ``cumulative_incidence`` table, or for a subset from the
    selected ``adtte`` CIR rows with ``cumulative_incidence`` (the analysis's estimator)."""
    from cartlab.response.endpoints import cumulative_incidence

    view = "cumulative incidence of relapse"
    ids = selected_ids(analysis, subject_ids, view)
    cols = ["event", "time", "cif", "ci_low", "ci_high", "n_at_risk", "n_events"]
    if ids is None:
        cif = require(analysis, "cumulative_incidence", view)
        source = "cumulative_incidence table"
    else:
        adtte = subset(require(analysis, "adtte", view), ids)
        cir = adtte.filter((pl.col("PARAMCD") == "CIR") & (pl.col("ANLFL") == "Y"))
        cif = (pl.concat([cumulative_incidence(cir, code).with_columns(pl.lit(what).alias("event"))
                          for code, what in ((1, "relapse"), (2, "death without relapse"))], how="diagonal_relaxed")
               if cir.height else pl.DataFrame(schema={c: pl.Float64 for c in cols} | {"event": pl.String}))
        source = "estimated here from adtte (selected subjects)"
    if cif.height == 0:
        raise ViewUnavailable(f"{view}: {_no_cir_population(analysis, ids)}", ("cumulative_incidence",))
    curves = cif.select(cols)
    days = nice_ticks(float(curves["time"].max() or 0.0), at)
    risk = at_risk_table(curves.filter(pl.col("event") == "relapse").rename({"event": "PARAMCD"}), days)
    return IncidenceData(curves, risk.rename({"PARAMCD": "event"}), source, remission=remission_label(analysis))


# ------------------------------------------------------------------------------------------------
# toxicity summary (ADaM-style: subjects by worst grade per term and scale)


CRS_TERM = "Cytokine release syndrome"
ICANS_TERM = "Immune effector cell-associated neurotoxicity syndrome"
ICAHT_EARLY = "Immune effector cell-associated hematotoxicity, early (days 0-30)"
ICAHT_LATE = "Immune effector cell-associated hematotoxicity, late (after day 30)"
T_EARLY = "Immune effector cell-associated thrombocytopenia, early (days 0-30)"
T_LATE = "Immune effector cell-associated thrombocytopenia, late (after day 30)"

#: (table, column, term, scale) of the per-subject worst grades
SUMMARY_GRADES = (
    ("crs_summary", "crs_grade_astct", CRS_TERM, "ASTCT 2019"),
    ("icans_summary", "icans_grade_astct", ICANS_TERM, "ASTCT 2019"),
    ("icaht", "icaht_early_grade", ICAHT_EARLY, "EHA/EBMT 2023 ICAHT"),
    ("icaht", "icaht_late_grade", ICAHT_LATE, "EHA/EBMT 2023 ICAHT"),
    ("t_icaht", "t_icaht_early_grade", T_EARLY, "T-ICAHT 2025"),
    ("t_icaht", "t_icaht_late_grade", T_LATE, "T-ICAHT 2025"),
    ("crs_cross_scale", "crs_grade_lee2014", CRS_TERM, "Lee 2014"),
    ("crs_cross_scale", "crs_grade_penn", CRS_TERM, "Penn"),
    ("crs_cross_scale", "crs_grade_cartox", CRS_TERM, "CARTOX"),
    ("crs_cross_scale", "crs_grade_mskcc", CRS_TERM, "MSKCC"),
)


def _adae_term() -> pl.Expr:
    t = pl.col("AETERM").fill_null("")
    return (pl.when(t.str.starts_with("Cytokine release")).then(pl.lit(CRS_TERM))
            .when(t.str.starts_with("Immune effector cell-associated neurotoxicity")).then(pl.lit(ICANS_TERM))
            .when(t.str.contains("hematotoxicity, early")).then(pl.lit(ICAHT_EARLY))
            .when(t.str.contains("hematotoxicity, late")).then(pl.lit(ICAHT_LATE))
            .otherwise(t))


def _adae_scale() -> pl.Expr:
    s = pl.col("ATOXGRS").fill_null("")
    return pl.when(s.str.starts_with("EHA/EBMT")).then(pl.lit("EHA/EBMT 2023 ICAHT")).otherwise(s)


def _lower_upper(t: pl.DataFrame, col: str) -> tuple[pl.Expr, pl.Expr]:
    """The grade of ``col`` as its lower bound and its upper bound. A grade that is a range (an input
    missing) is ``<col>`` = its lower grade with ``<col>_max`` (ASTCT, ICAHT), or, on the older CRS
    scales, ``<col>`` empty with ``<col>_min`` / ``<col>_max``: the range counts at its lower grade."""
    lo = pl.col(col).cast(pl.Int64)
    if f"{col}_min" in t.columns:
        lo = pl.coalesce(lo, pl.col(f"{col}_min").cast(pl.Int64))
    hi = pl.col(f"{col}_max").cast(pl.Int64) if f"{col}_max" in t.columns else pl.lit(None, pl.Int64)
    return lo, hi


def toxicity_long(analysis, ids: list[str] | None, include_labs: bool = True) -> tuple[pl.DataFrame, list[str]]:
    """``subject_id``, ``term``, ``scale``, ``grade`` (null = not evaluable; a range at its lower
    grade), ``grade_max`` (the upper grade of a range, else null or the grade) and ``reason`` (CTCAE
    lab terms graded on more than one parameter, e.g. Hypocalcemia on CACORR and CAION: which one
    decided; else null) for every selected subject and term, and notes naming tables that were not
    available. The subjects are the safety population (:func:`cohort_base.safety_subjects`: the infused
    set by default; a note names those left out)."""
    everyone, notes = safety_subjects(analysis, ids)
    parts: list[pl.DataFrame] = []
    for name, col, term, scale in SUMMARY_GRADES:
        t = optional(analysis, name)
        if t is None or col not in t.columns:
            note = f"table '{name}' not available: {term} ({scale}) not shown"
            notes.append(note)
            continue
        lo, hi = _lower_upper(t, col)
        parts.append(subset(t, ids).select("subject_id", pl.lit(term).alias("term"), pl.lit(scale).alias("scale"),
                                           lo.alias("grade"), hi.alias("grade_max")))
    adae = optional(analysis, "adae_toxicity")
    if adae is None:
        notes.append("table 'adae_toxicity' not available: grades from the summary tables only")
    else:
        parts.append(subset(adae, ids).select(pl.col("USUBJID").alias("subject_id"), _adae_term().alias("term"),
                                              _adae_scale().alias("scale"), pl.col("ATOXGR").cast(pl.Int64).alias("grade"),
                                              pl.lit(None, pl.Int64).alias("grade_max")))
    if include_labs:
        adlb = optional(analysis, "adlb")
        if adlb is None:
            notes.append("table 'adlb' not available: CTCAE lab toxicities not shown")
        else:
            # each direction its own term (ATOXDSCL/ATOXGRL, ATOXDSCH/ATOXGRH; ATOXGR is signed)
            # a grade a missing input leaves open (ATOXGR<d>_MAX: e.g. no ULN) counts at its lower grade
            # with the highest upper bound of the subject's rows as grade_max ("2–4", could be higher)
            # after the baseline record (review 37 R37-9): the baseline is BTOXGR, not a toxicity

            # per CTCAE term (review 39 R39-3): admiral's "Hypocalcemia (Ionized)" rows count under the one
            # CTCAE v5.0 term Hypocalcemia (the worse of corrected and ionized calcium; option
            # ctcae.calcium_summary, default merged), the reason naming the variant that decided
            from cartlab.grading.ctcae_summary import lab_term_worst
            from cartlab.report.subject_blocks import post_baseline

            labs = subset(adlb, ids)
            labs = labs.filter(post_baseline(labs))
            ctcae_opts = getattr(getattr(analysis, "options", None), "ctcae", None)
            worst = lab_term_worst(labs, getattr(ctcae_opts, "calcium_summary", None) or "merged")
            parts.append(worst.select("subject_id", "term", pl.lit("CTCAE v5.0 (labs)").alias("scale"), "grade",
                                      "grade_max", "reason"))
    if not parts:
        return pl.DataFrame(schema={"subject_id": pl.String, "term": pl.String, "scale": pl.String,
                                    "grade": pl.Int64, "grade_max": pl.Int64, "reason": pl.String}), notes
    long = pl.concat([p if "reason" in p.columns else p.with_columns(pl.lit(None, pl.String).alias("reason"))
                      for p in parts])
    terms = long.select("term", "scale").unique(maintain_order=True)
    full = (terms.join(everyone, how="cross")
            .join(long, on=["term", "scale", "subject_id"], how="left", maintain_order="left"))
    return full, notes


def toxicity_counts(analysis, subject_ids=None, include_labs: bool = True) -> pl.DataFrame:
    """Subjects by worst grade per term and scale (:func:`~cartlab.report.cohort_base.worst_grade_counts`)
    over the selected subjects: CRS and ICANS (ASTCT 2019, with ``adae_toxicity`` episodes), ICAHT
    and T-ICAHT early/late, CRS on the Lee 2014 / Penn / CARTOX / MSKCC scales, and CTCAE v5 lab
    terms on or after day 0 (``include_labs``)."""
    view = "toxicity summary"
    ids = selected_ids(analysis, subject_ids, view)
    long, notes = toxicity_long(analysis, ids, include_labs)
    if long.height == 0:
        raise ViewUnavailable(f"{view}: no grading table is available ({'; '.join(notes)})",
                              ("crs_summary", "icans_summary", "icaht", "adae_toxicity"))
    counts = worst_grade_counts(long.drop("grade_max", "reason"), 5)
    # a subject whose worst grade is the lower end of a range (an input missing) could be higher
    per = long.group_by("term", "scale", "subject_id").agg(pl.col("grade").max(), pl.col("grade_max").max())
    higher = (per.filter(pl.col("grade").is_not_null() & (pl.col("grade_max") > pl.col("grade")))
              .group_by("term", "scale").agg(pl.len().cast(pl.Int64).alias("n_could_be_higher")))
    return (counts.join(higher, on=["term", "scale"], how="left", maintain_order="left")
            .with_columns(pl.col("n_could_be_higher").fill_null(0)))


#: the criteria table (``grading/criteria/<name>.yaml``) of each summary scale, for its grade levels
SCALE_TABLES = {"EHA/EBMT 2023 ICAHT": "icaht_2023", "T-ICAHT 2025": "t_icaht_2025", "Lee 2014": "crs_lee2014",
                "Penn": "crs_penn", "CARTOX": "crs_cartox", "MSKCC": "crs_mskcc",
                ("ASTCT 2019", CRS_TERM): "astct_crs_2019", ("ASTCT 2019", ICANS_TERM): "astct_icans_2019"}
#: the scale of the CTCAE lab terms (graded per term by ``ctcae_v5.yaml``)
CTCAE_LABS = "CTCAE v5.0 (labs)"


@functools.lru_cache(maxsize=1)
def _grade_levels() -> tuple[dict, dict]:
    """Grade levels each scale defines, read from the criteria tables: the grades of its rules
    (``rule_sets``), and per CTCAE lab term the grades its CTCAE text gives (``terms[].ctcae``:
    ``grade_n`` not "-"; CTCAE v5.0: "Grade 5 (Death) is not appropriate for some AEs")."""
    from cartlab.criteria import load_table

    scales = {}
    for key, name in SCALE_TABLES.items():
        try:
            t = load_table(name)
        except Exception:  # noqa: BLE001 - a table that cannot be read: every grade shown
            continue
        scales[key] = {r.grade for rules in t.rule_sets.values() for r in rules if getattr(r, "grade", None) is not None}
    terms: dict[str, set] = {}
    try:
        for e in load_table("ctcae_v5").extra("terms") or []:
            g = {int(k.split("_")[1]) for k, v in (e.get("ctcae") or {}).items()
                 if k.startswith("grade_") and str(v).strip() not in ("-", "")}
            terms.setdefault(str(e.get("term", "")).strip().lower(), set()).update(g)
    except Exception:  # noqa: BLE001
        pass
    return scales, terms


def grade_levels(term: str, scale: str) -> set[int] | None:
    """The grades >= 1 the scale defines for ``term`` (None = unknown: every grade 1-5 shown)."""
    scales, terms = _grade_levels()
    if scale == CTCAE_LABS:
        return terms.get(str(term).strip().lower())
    return scales.get((scale, term), scales.get(scale))


#: a grade the scale does not define (e.g. grade 5 of ICAHT or of a CTCAE lab term)
NOT_ON_SCALE = "—"


def assumed_clause_notes(analysis, subject_ids=None) -> list[str]:
    """The CTCAE lab terms whose grades in the selected subjects' post-baseline rows assume a clinical
    clause the lab does not record (admiral's worst case, e.g. Hypokalemia grade 2 "symptomatic"), read
    from the rows' reasons ("assuming ... (option ctcae.<name>=true)"): the cohort table's counts rest
    on that assumption, so its caption says so (review 47 #4)."""
    from cartlab.grading.ctcae_clauses import CLAUSES, TERMS
    from cartlab.report.subject_blocks import post_baseline

    adlb = optional(analysis, "adlb")
    if adlb is None or "grade_reason" not in adlb.columns:
        return []
    safety, _ = safety_subjects(analysis, selected_ids(analysis, subject_ids, "toxicity summary"))
    labs = adlb.filter(pl.col("subject_id").is_in(safety["subject_id"].to_list()))
    labs = labs.filter(post_baseline(labs))
    notes = []
    for option, what in CLAUSES.items():
        n = labs.filter(pl.col("grade_reason").cast(pl.String).str.contains(f"(option ctcae.{option}=true)", literal=True)
                        )["subject_id"].n_unique()
        if n:
            notes.append(f"{' / '.join(TERMS[option])}: {n} subject(s) graded assuming {what}, admiral's worst case "
                         f"(option ctcae.{option}=true; false grades without it, ctcae.clinical_clauses=range "
                         "gives both as a range)")
    return notes


def toxicity_summary(analysis, subject_ids=None, include_labs: bool = True) -> pl.DataFrame:
    """The ADaM-style display table: ``Term``, ``Scale``, ``N evaluable`` (the denominator),
    ``Not evaluable`` (counted apart: missing is not grade 0), ``Any grade n (%)``,
    ``Grade >=3 n (%)`` and ``Grade 1 n (%)`` .. ``Grade 5 n (%)`` (percent of N evaluable; "—" for a
    grade the scale does not define, read from its criteria table: ICAHT and T-ICAHT stop at 4, and
    so do the CTCAE lab terms), and ``Could be higher n``: subjects whose grade is a range, counted
    at its lower grade."""
    c = toxicity_counts(analysis, subject_ids, include_labs)
    rows = []
    for r in c.iter_rows(named=True):  # one row per term and scale (never per subject)
        levels = grade_levels(r["term"], r["scale"])
        rows.append({"Term": r["term"], "Scale": r["scale"], "N evaluable": r["n_evaluable"],
                     "Not evaluable": r["n_not_evaluable"], "Any grade n (%)": fmt_n_pct(r["n_any"], r["n_evaluable"]),
                     "Grade >=3 n (%)": fmt_n_pct(r["n_ge3"], r["n_evaluable"]),
                     **{f"Grade {g} n (%)": (fmt_n_pct(r[f"grade_{g}"], r["n_evaluable"])
                                              if levels is None or g in levels or r[f"grade_{g}"] else NOT_ON_SCALE)
                        for g in range(1, 6)},
                     "Could be higher n": r["n_could_be_higher"]})
    schema = {"Term": pl.String, "Scale": pl.String, "N evaluable": pl.Int64, "Not evaluable": pl.Int64,
              "Any grade n (%)": pl.String, "Grade >=3 n (%)": pl.String,
              **{f"Grade {g} n (%)": pl.String for g in range(1, 6)}, "Could be higher n": pl.Int64}
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)


# ------------------------------------------------------------------------------------------------
# response rates


@dataclass(frozen=True)
class Rates:
    """``table``: ``endpoint``, ``criteria`` ("all" or the criteria set), ``n``, ``n_responders``,
    ``rate``, ``ci_low``, ``ci_high``, ``level``, ``method``, ``category_counts``;
    ``n_no_criteria``: selected subjects without response criteria (not in any denominator)."""

    table: pl.DataFrame
    n_no_criteria: int
    notes: tuple[str, ...] = ()


_RATE_COLS = ["endpoint", "criteria", "n", "n_responders", "rate", "ci_low", "ci_high", "level", "method",
              "category_counts", "n_could_be_responders", "rate_max",
              # session 38 (review 39 B2): the rate over the evaluable subjects and the not infused
              "n_not_evaluable", "n_evaluable", "rate_evaluable", "ci_low_evaluable", "ci_high_evaluable",
              "n_not_infused"]
#: the columns an analysis older than a release may lack: empty, never 0 (not known)
_RATE_TYPES = {"n_could_be_responders": pl.Int64, "rate_max": pl.Float64, "n_not_evaluable": pl.Int64,
               "n_evaluable": pl.Int64, "rate_evaluable": pl.Float64, "ci_low_evaluable": pl.Float64,
               "ci_high_evaluable": pl.Float64, "n_not_infused": pl.Int64}


def response_rate_table(analysis, subject_ids=None) -> Rates:
    """ORR and CR/CRh/CRi rate with exact two-sided 95% Clopper-Pearson CIs (Clopper CJ, Pearson ES.
    Biometrika 1934;26:404-413), overall and per criteria set. Denominator: every subject with
    response criteria and, with ``best_response.rate_population=infused`` (the default), a CAR-T dose
    (intention to treat: NE / not assessed count as non-response); ``n_evaluable`` /
    ``rate_evaluable`` (+ CI) leave the NE out, ``n_not_infused`` counts the subjects with no CAR-T
    dose (session 38). From the ``response_rates`` table; for a subset recomputed with ``orr`` (the
    analysis's function). ``notes`` add up the denominator and name the not infused (review 39 B2)."""
    from cartlab.response.best import orr, rate_definitions
    from cartlab.response.endpoints import clopper_pearson

    view = "response rates"
    ids = selected_ids(analysis, subject_ids, view)
    best = subset(require(analysis, "best_response", view), ids)
    n_none = best.filter(pl.col("criteria").is_null()).height
    if ids is None:
        rates = require(analysis, "response_rates", view)
    else:
        o = analysis.options  # the analysis's own categories, never the defaults
        frames = [orr(best, cats, by=by, population=o.best_response_options().rate_population)
                  .with_columns(pl.lit(name).alias("endpoint"))
                  for name, cats in rate_definitions(o.best_response_options().orr_categories,
                                                     o.endpoint_options().remission_categories)
                  for by in (None, "criteria")]
        rates = pl.concat(frames, how="diagonal_relaxed")
    if "criteria" not in rates.columns:
        rates = rates.with_columns(pl.lit(None, pl.String).alias("criteria"))
    rates = rates.with_columns(pl.col("criteria").fill_null("all"))
    # an analysis written before review 37 B10 has no could-be columns: empty, never 0 (not known)
    rates = rates.with_columns([pl.lit(None, t).alias(c) for c, t in _RATE_TYPES.items() if c not in rates.columns])
    if not rates["method"].fill_null("").str.contains("Clopper-Pearson").all():  # exact CI not in the table
        ci = [clopper_pearson(k, n) if n else (None, None) for k, n in zip(rates["n_responders"], rates["n"])]
        rates = rates.with_columns(pl.Series("ci_low", [c[0] for c in ci], pl.Float64),
                                   pl.Series("ci_high", [c[1] for c in ci], pl.Float64),
                                   pl.lit("Clopper-Pearson exact").alias("method"))
    return Rates(rates.select(_RATE_COLS), n_none, tuple(_rate_notes(analysis, best, n_none, rates)))


def _rate_notes(analysis, best: pl.DataFrame, n_none: int, rates: pl.DataFrame) -> list[str]:
    """The denominator in words, adding up (review 39 B2): "10 subject(s): 1 without response criteria
    (...) and 1 not infused (no CAR-T dose in doses.csv: SYN-0010; option
    best_response.rate_population=infused) are in no denominator: n = 8"."""
    try:
        population = analysis.options.best_response_options().rate_population
    except AttributeError:  # an analysis without the option: the default
        population = "infused"
    ni = (best.filter((pl.col("rule") == "response.not_infused") & pl.col("criteria").is_not_null())["subject_id"]
          .to_list() if "rule" in best.columns else [])
    out = []
    if n_none:
        out.append(f"{n_none} subject(s) without response criteria (e.g. lymphoma: no lymphoma criteria yet)")
    if ni and population == "infused":
        out.append(f"{len(ni)} not infused (no CAR-T dose in doses.csv, rule response.not_infused: {', '.join(ni[:10])}"
                   f"{' and more' if len(ni) > 10 else ''}; option best_response.rate_population=infused)")
    first = rates.filter(pl.col("criteria") == "all").head(1)
    n_all = first["n"][0] if first.height else None
    notes = []
    if out:
        notes.append(f"Of {best.height} subject(s), " + " and ".join(out) + " are in no denominator"
                     + (f": n = {n_all}" if n_all is not None else ""))
    if ni and population != "infused":
        notes.append(f"{len(ni)} subject(s) not infused (no CAR-T dose in doses.csv: {', '.join(ni[:10])}) count "
                     f"as non-responders (option best_response.rate_population={population})")
    if first.height and first["n_evaluable"][0] is not None:
        notes.append(f"n_evaluable = n - n_not_evaluable (NE); rate_evaluable = responders / n_evaluable "
                     f"({first['n_evaluable'][0]} for ORR, all criteria)")
    return notes


# ------------------------------------------------------------------------------------------------
# protocol deviations


@dataclass(frozen=True)
class Deviations:
    """``summary``: ``category``, ``item``, ``n_deviations`` (one per planned dose or scheduled
    assessment day missed or off plan: a missed-monitoring row counts its missed days, any other
    row 1), ``n_rows`` (rows of ``protocol_deviations.csv``), ``n_subjects``, ``subjects`` (first
    ten, then "(+N more)"); ``n_with`` of ``n_selected`` subjects have at least one deviation.
    ``not_checkable`` (``item``, ``n_subjects``, ``subjects``): rows the plan could not be checked
    against (an input missing): not deviations, counted apart; ``n_not_checkable`` subjects."""

    protocol: str
    summary: pl.DataFrame
    n_selected: int
    n_with: int
    not_checkable: pl.DataFrame = field(default_factory=pl.DataFrame)
    n_not_checkable: int = 0


#: the category of a row the plan could not be checked against (not a deviation)
NOT_CHECKABLE = "not_checkable"


def _first_ten(col: str = "subject_id") -> list[pl.Expr]:
    return [pl.col(col).n_unique().cast(pl.Int64).alias("n_subjects"),
            pl.col(col).unique(maintain_order=True).head(10).str.join(", ").alias("subjects")]


def _more() -> pl.Expr:
    return (pl.when(pl.col("n_subjects") > 10)  # the first ten, and how many more
            .then(pl.format("{} (+{} more)", pl.col("subjects"), pl.col("n_subjects") - 10))
            .otherwise(pl.col("subjects")).alias("subjects"))


def deviation_summary(analysis, subject_ids=None) -> Deviations:
    """Protocol deviations (``protocol_deviations``: missed monitoring, dose or schedule deviations)
    by category and item; only when the analysis was given a protocol. ``not_checkable`` rows (the
    dose or day is not evaluable) are not deviations: counted apart (missing is not a deviation)."""
    view = "protocol deviations"
    ids = selected_ids(analysis, subject_ids, view)
    dev = subset(require(analysis, "protocol_deviations", view), ids)
    nc = dev.filter(pl.col("category") == NOT_CHECKABLE)
    dev = dev.filter(pl.col("category") != NOT_CHECKABLE)
    n_days = (pl.when((pl.col("category") == "missed_monitoring") & (pl.col("days").list.len() > 0))
              .then(pl.col("days").list.len()).otherwise(1)) if "days" in dev.columns else pl.lit(1)
    summary = (dev.group_by("category", "item", maintain_order=True)
               .agg(n_days.sum().cast(pl.Int64).alias("n_deviations"), pl.len().cast(pl.Int64).alias("n_rows"),
                    *_first_ten())
               .with_columns(_more())
               .sort(["n_subjects", "category", "item"], descending=[True, False, False]))
    unchecked = (nc.group_by("item", maintain_order=True).agg(*_first_ten()).with_columns(_more())
                 .sort(["n_subjects", "item"], descending=[True, False]))
    return Deviations(analysis.protocol.id, summary, subjects_of(analysis, ids).height,
                      dev["subject_id"].n_unique(), unchecked, nc["subject_id"].n_unique())
