"""Response at each marrow assessment: ELN 2022 for AML, CR/CRi/NR for ALL, with MRD and relapse.

The criteria are data (``criteria/eln2022_aml.yaml``, ``criteria/all_car_t.yaml``; see the comment
at the top of either for the rule language and the features). This module computes the features of
each assessment from the canonical frames and evaluates the ordered categories; it holds no
threshold of its own. Every assessment carries ``rule`` (the category's id), ``reason`` (the
features and why no better category holds), ``missing_inputs`` (what was not measured),
``could_be`` (better categories that missing inputs leave open: never a silent guess) and
``evidence`` (the ``"<file>:<row>"`` of every row used).

Public API
----------
* :class:`ResponseOptions` — every documented choice; ``None`` = the criteria table's default.
* :func:`marrow_response` — one row per post-infusion marrow assessment of every AML/ALL subject.
* :func:`eln2022_response` / :func:`all_response` — the same restricted to one criteria table.
* :func:`relapse` — hematologic relapse and MRD relapse after response, per subject.
* :func:`criteria_for_disease` — which criteria table applies to a disease.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import polars as pl

from cartlab._deprecated import renamed
from cartlab.criteria import (
    CriteriaTable,
    Range,
    Rule,
    decision,
    load_raw,
    load_table,
    render,
)
from cartlab.criteria.model import Leaf, leaves
from cartlab.model import Study
from cartlab.provenance import EVIDENCE, row_ref
from cartlab.response.infusion_evidence import marrow_infused, reinfusions
from cartlab.response.marrow_inputs import (
    baseline_interval,
    baseline_note,
    choice_notes,
    pb_only_relapse,
    pick_baseline,
)
from cartlab.response.marrow_options import (
    PACKAGE,
    RESPONSE_TABLES,
    ResponseOptions,
    missing_count_open,
    open_categories,
    resolve_for_study,
)
from cartlab.response.mrd_status import (  # noqa: F401  (re-exported: relapse_episodes, best)
    MOLECULAR_MRD_PARAMS,
    _mrd,
    _mrd_lloq,
    _pick_mrd,
    molecular_on_day,
    mrd_below_note,
    mrd_reason,
    mrd_shown,
    mrd_status_text,
    mrd_text,
)

__all__ = [
    "CATEGORY_RANK",
    "categorise_assessments",
    "RESPONSE_TABLES",
    "ResponseOptions",
    "derive_all_response",
    "criteria_for_disease",
    "derive_eln2022_response",
    "derive_marrow_response",
]

#: best-response ranking (study-format v1: CR > CRh > CRi > MLFS > PR > NR > NE);
#: ``relapse`` (ELN 2022 Table 7, a marrow after a response meeting the relapse criteria) ranks below PR
CATEGORY_RANK = {"CR": 0, "CRh": 1, "CRi": 2, "MLFS": 3, "PR": 4, "relapse": 5, "NR": 6, "NE": 7}


def _table(name: str) -> dict[str, Any]:
    return load_raw(name, PACKAGE)


def _rules(name: str) -> CriteriaTable:
    return load_table(name, PACKAGE)


def criteria_for_disease(disease: str | None) -> str | None:
    """The response table whose ``diseases`` list the disease (case-insensitive), else None."""
    if disease is None:
        return None
    d = str(disease).strip().upper()
    for name in RESPONSE_TABLES:
        if d in {x.upper() for x in _table(name)["diseases"]}:
            return name
    return None


# ---------------------------------------------------------------------------------------------
# features


def _fmt(x: Any) -> str:
    if x is None:
        return "missing"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _nearest(rows: list[dict[str, Any]], day: float, window: float) -> dict[str, Any] | None:
    """The row on the marrow's calendar day, else the nearest within the window (ties: earlier)."""
    best = None
    for r in rows:
        dist = abs(math.floor(r["day"]) - math.floor(day))
        if dist > window:
            continue
        key = (dist, r["day"])
        if best is None or key < best[0]:
            best = (key, r)
    return None if best is None else best[1]


#: the comparison signs of a censored result (observations ``censor``)
_CENSOR_OPS = ("<", "<=", ">", ">=")


@dataclass
class _SubjectData:
    obs: dict[str, list[dict[str, Any]]]
    emd: list[dict[str, Any]]
    plt_tx: list[tuple[float, float]]
    events: list[dict[str, Any]]
    #: platelet and RBC transfusions: (category, start day, end day, row ref)
    tx: list[tuple[str, float, float, str | None]] = None  # type: ignore[assignment]


def _by_subject(study: Study, near: float | None = None,
                params: tuple[str, ...] = ("BMBLAST", "BMCELL", "PBBLAST", "NEUT", "PLAT", "MRDFCM",
                                           *MOLECULAR_MRD_PARAMS)
                ) -> dict[str, _SubjectData]:
    """Each subject's marrow-related rows (``params``), events and platelet transfusions. With
    ``near``, only the counts (NEUT, PLAT) within that many calendar days of a post-infusion marrow
    are kept (the only ones an assessment reads)."""
    # a censored result ("<1e-4", "<5", ">20": value empty, censor and censor_limit) is a measurement,
    # read as a bound (spec "observations": value_text "a censored result such as `<50`"): never dropped
    censored = (pl.col("value").is_null() & pl.col("censor").is_in(list(_CENSOR_OPS))
                & pl.col("censor_limit").is_not_null())
    obs = study.observations.filter(pl.col("param").is_in(list(params)) & pl.col("day").is_not_null()
                                    & (pl.col("value").is_not_null() | censored))
    if near is not None:
        counts = pl.col("param").is_in(["NEUT", "PLAT"])
        marrows = (obs.filter((pl.col("param") == "BMBLAST") & (pl.col("day") > 0))
                   .select("subject_id", pl.col("day").floor().alias("_md")).unique())
        used = (obs.with_row_index("_i").filter(counts).join(marrows, on="subject_id")
                .filter((pl.col("day").floor() - pl.col("_md")).abs() <= near)["_i"].unique())
        obs = obs.with_row_index("_i").filter(~counts | pl.col("_i").is_in(used.implode())).drop("_i")
    lloq = pl.col("lloq") if "lloq" in obs.columns else pl.lit(None, dtype=pl.Float64).alias("lloq")
    extra = [pl.col(c).cast(pl.String) if c in obs.columns else pl.lit(None, dtype=pl.String).alias(c)
             for c in ("analyte", "unit")]  # named by the molecular MRD note (review 41 F4)
    obs = obs.select("subject_id", "day", "param", "value", "censor", "censor_limit", "specimen", lloq, *extra,
                     "src_file", "src_row").sort(
        # two values of one day without a time: in value order (file order must not decide), then file order
        "subject_id", "day", "value", "censor_limit", "src_row", nulls_last=True)
    out: dict[str, _SubjectData] = defaultdict(lambda: _SubjectData(defaultdict(list), [], [], [], []))
    for r in obs.iter_rows(named=True):
        out[r["subject_id"]].obs[r["param"]].append(r)
    ev = study.events.filter(pl.col("day").is_not_null()).sort("subject_id", "day")
    for r in ev.iter_rows(named=True):
        out[r["subject_id"]].events.append(r)
        if r["event"] == "extramedullary_disease":
            out[r["subject_id"]].emd.append(r)
    # spec "Derivation conventions": an intervention covers every day from start_day to end_day inclusive
    iv = study.interventions.filter(pl.col("category").is_in(["platelet_transfusion", "rbc_transfusion"])
                                    & pl.col("start_day").is_not_null())
    for r in iv.iter_rows(named=True):
        end = r["start_day"] if r.get("end_day") is None else max(r["end_day"], r["start_day"])
        if r["category"] == "platelet_transfusion":
            out[r["subject_id"]].plt_tx.append((float(r["start_day"]), float(end)))
        out[r["subject_id"]].tx.append((r["category"], float(r["start_day"]), float(end), row_ref(r)))
    return out


def _infusion_moments(study: Study) -> dict[str, float]:
    """Per subject, the day of the first CAR-T infusion on day 0 (its clock time when known, e.g. 0.583
    for 14:00; spec "subjects.csv": infusion_datetime; else 0). Only a marrow after this moment is a
    response to the CAR-T; one drawn on day 0 before it is neither that nor (spec "Response": the last
    one before day 0) the pre-treatment marrow."""
    from cartlab.kinetics.agents import car_t_infusions

    inf = car_t_infusions(study).filter((pl.col("day") >= 0) & (pl.col("day") < 1))
    return dict(inf.group_by("subject_id").agg(pl.col("day").min()).iter_rows())


#: the numeric features, read as intervals (a censored result is a bound; a measured value a point):
#: the observation param behind each (for the reason) and the largest value a percentage can take
_NUMERIC = {"bm_blast_pct": "BMBLAST", "pb_blast_pct": "PBBLAST", "anc": "NEUT", "plt": "PLAT",
            "bm_cellularity_pct": "BMCELL", "blast_reduction_pct": None}
_PERCENT = {"BMBLAST", "PBBLAST", "BMCELL"}


def _interval(r: dict[str, Any] | None) -> tuple[float | None, float | None, bool, bool]:
    """(lo, hi, lo_open, hi_open) of a row's value: a point for a number, the bound's side for a
    censored result (``<5``: [0, 5); ``>=20`` %: [20, 100]; a count ``>2``: (2, unbounded)), all
    None for no row. Values are never negative."""
    if r is None:
        return None, None, False, False
    if r["value"] is not None:
        return float(r["value"]), float(r["value"]), False, False
    op, lim = r["censor"], float(r["censor_limit"])
    if op in ("<", "<="):
        return 0.0, lim, False, op == "<"
    cap = max(100.0, lim) if r.get("param") in _PERCENT else None
    return lim, cap, op == ">", False


def _shown(r: dict[str, Any] | None) -> str:
    """A row's value as written: the number, or the censored result (``<=5``)."""
    if r is None:
        return "missing"
    return _fmt(r["value"]) if r["value"] is not None else f"{r['censor']}{r['censor_limit']:g}"


def _reduction(bm: tuple, pre: tuple) -> tuple[float | None, float | None]:
    """The interval of 100 * (pre - bm) / pre over the bm and pre intervals (closed, so never narrower
    than the truth). A pre-treatment 0% gives 0 when the marrow is 0% and -inf (a rise) otherwise."""
    (b_lo, b_hi), (p_lo, p_hi) = bm[:2], pre[:2]
    if None in (b_lo, b_hi, p_lo):
        return None, None

    def red(b: float, p: float | None) -> float | None:
        if p is None:  # unbounded pre-treatment value: the reduction tends to 100%
            return 100.0
        if p > 0:
            return 100.0 * (p - b) / p
        return 0.0 if b <= 0 else -math.inf

    lo = red(b_hi, p_lo)
    hi = red(b_lo, p_hi)
    if p_lo == 0 and p_hi != 0 and b_hi > 0:  # the pre-treatment value may be tiny: no lower bound
        lo = None
    return lo, hi


def _features(sd: _SubjectData, marrow: dict[str, Any], pre: dict[str, Any] | None,
              opts: dict[str, Any], pre_group: list[dict[str, Any]] | None = None
              ) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Features of one assessment, the rows behind each (for the reason) and the evidence. Each
    numeric feature is also given as an interval (``<k>_lo``, ``<k>_hi``, ``<k>_lo_open``,
    ``<k>_hi_open``): a censored result is a bound that settles a comparison only when every value
    it allows does (spec "observations": value_text "a censored result such as `<50`")."""
    d, w = marrow["day"], float(opts["count_window_days"])
    used: dict[str, Any] = {"BMBLAST": marrow}
    day_rows = {p: [r for r in sd.obs.get(p, []) if math.floor(r["day"]) == math.floor(d)] for p in ("BMCELL", "MRDFCM")}
    cell = day_rows["BMCELL"][-1] if day_rows["BMCELL"] else None
    mrd, mrd_rows, mrd_other = _pick_mrd(day_rows["MRDFCM"], opts)
    anc = _nearest(sd.obs.get("NEUT", []), d, w)
    free = opts.get("platelet_transfusion_free_days")
    plats = sd.obs.get("PLAT", [])
    if free is not None:  # calendar days from the transfusion's first day to free days after its last
        plats = [r for r in plats if not any(math.floor(s) <= math.floor(r["day"]) <= math.floor(e) + float(free)
                                             for s, e in sd.plt_tx)]
    plt = _nearest(plats, d, w)
    pb = _nearest(sd.obs.get("PBBLAST", []), d, w)
    dd, before = math.floor(d), []
    if opts["emd_window"] == "since_infusion":  # calendar days, as the count window (spec "Days are calendar days")
        emd_rows = [e for e in sd.emd if 0 <= e["day"] and math.floor(e["day"]) <= dd + w]
    else:
        emd_rows = [e for e in sd.emd if abs(math.floor(e["day"]) - dd) <= w]
        # review 45 F4: an EMD event after the infusion but before the assessment window is not absence
        # of EMD (the format has no "EMD resolved" record): the marrow's EMD status is unknown, as with
        # emd_window_days
        before = [e for e in sd.emd if 0 <= e["day"] and math.floor(e["day"]) < dd - w]
    # review 45 F4: an EMD event before the infusion (before or after the pre-treatment marrow: neither
    # shows that EMD resolved) is named; option pre_infusion_emd=unknown reads it as not known to have
    # resolved (EMD unknown), ignore (default) leaves the category as before
    pre_inf = [e for e in sd.emd if e["day"] < 0 and not any(e is x for x in emd_rows)]
    # option emd_window_days (review 41 F5): an EMD event more than N days before the marrow does not
    # show EMD at it; with only such events the marrow's EMD status is unknown (NE could be CR/CRi)
    age = opts.get("emd_window_days")
    recent = emd_rows if age is None else [e for e in emd_rows if dd - math.floor(e["day"]) <= float(age)]
    used["EMD"], used["EMD_STALE"] = emd_rows, [e for e in emd_rows if not any(e is x for x in recent)]
    used["EMD_BEFORE"], used["EMD_PRE"], used["EMD_PRE_HOW"] = before, pre_inf, opts.get("pre_infusion_emd", "ignore")
    open_emd = bool(emd_rows or before or (pre_inf and used["EMD_PRE_HOW"] == "unknown"))
    day_mol = [r for p in MOLECULAR_MRD_PARAMS for r in sd.obs.get(p, []) if math.floor(r["day"]) == math.floor(d)]
    used["MOLECULAR"], used["MOLECULAR_DAY"] = molecular_on_day(day_mol, opts), day_mol
    used.update({"BMCELL": cell, "MRDFCM": mrd, "MRDFCM_all": mrd_rows, "MRDFCM_other": mrd_other, "NEUT": anc, "PLAT": plt, "PBBLAST": pb,
                 "PRE": pre})
    assume_pb = pb is None and opts["missing_pb_blasts"] == "assume_absent"
    iv = {"bm_blast_pct": _interval({**marrow, "param": "BMBLAST"}),
          "pb_blast_pct": (0.0, 0.0, False, False) if assume_pb else _interval(None if pb is None else {**pb, "param": "PBBLAST"}),
          "anc": _interval(anc), "plt": _interval(plt),
          "bm_cellularity_pct": _interval(None if cell is None else {**cell, "param": "BMCELL"})}
    pre_group = pre_group or ([] if pre is None else [pre])
    pre_iv = baseline_interval(pre_group, pre, opts, _interval)  # option same_day_baseline (review 38 A1)
    red = _reduction(iv["bm_blast_pct"], pre_iv) if pre is not None else (None, None)
    iv["blast_reduction_pct"] = (red[0], red[1], False, False)
    c_lo, c_hi, _, c_hi_open = iv["bm_cellularity_pct"]
    min_cell = float(opts["min_cellularity_pct"])
    assume_cell = cell is None and opts["missing_cellularity"] == "assume_adequate"
    not_aplastic = ((True if assume_cell else None) if cell is None else True if c_lo >= min_cell
                    else False if (c_hi < min_cell or (c_hi == min_cell and c_hi_open)) else None)
    feats: dict[str, Any] = {k: (v[0] if v[0] is not None and v[0] == v[1] and not (v[2] or v[3]) else None)
                             for k, v in iv.items()}
    feats.update({"pb_blast_assumed": assume_pb, "emd": True if recent else (None if open_emd else False),
                  "not_aplastic": not_aplastic,
                  "cellularity_assumed": assume_cell})
    # transfusions in the count window are named (ELIANA/CIBMTR ask for transfusion independence;
    # ELN 2022's footnote on it was not retrieved): excluded only with platelet_transfusion_free_days
    lo_d, hi_d = math.floor(d) - w, math.floor(d) + w
    tx_rows = [t for t in sd.tx if math.floor(t[1]) <= hi_d and math.floor(t[2]) >= lo_d]
    used["TX"] = [(kind, s_, e_) for kind, s_, e_, _ in tx_rows]
    for k, (lo, hi, lo_open, hi_open) in iv.items():
        feats.update({f"{k}_lo": lo, f"{k}_hi": hi, f"{k}_lo_open": lo_open, f"{k}_hi_open": hi_open})
    used["BMCELL_all"], used["PRE_GROUP"] = day_rows["BMCELL"], pre_group
    notes, note_refs = choice_notes(sd.obs, used, d, _shown, plats)
    used["NOTES"] = baseline_note(pre_group, pre, opts, _shown, sd.events) + notes
    evidence = [x for x in (row_ref(r) for k, r in used.items()
                            if k not in ("MRDFCM_all", "MRDFCM_other", "TX", "BMCELL_all", "PRE_GROUP", "NOTES", "EMD",
                         "EMD_STALE", "EMD_BEFORE", "EMD_PRE", "EMD_PRE_HOW", "MOLECULAR", "MOLECULAR_DAY")
                            and r is not None) if x]
    evidence += [x for x in map(row_ref, pre_group) if x] + note_refs
    evidence += [x for x in (row_ref(r) for r in mrd_rows + mrd_other) if x]
    evidence += [x for x in (row_ref(e) for e in emd_rows + before + pre_inf) if x]  # every EMD event the reason names
    evidence += [ref for *_, ref in tx_rows if ref]  # the transfusions the reason names (interventions.csv)
    return feats, used, list(dict.fromkeys(evidence))


_FEATURE_LABEL = {
    "bm_blast_pct": "marrow blasts (BMBLAST)",
    "pb_blast_pct": "peripheral blasts (PBBLAST within the count window)",
    "anc": "ANC (NEUT within the count window)",
    "plt": "platelets (PLAT within the count window)",
    "blast_reduction_pct": "pre-treatment marrow blasts (for the % reduction)",
    "bm_cellularity_pct": "marrow cellularity (BMCELL)",
    "not_aplastic": "marrow cellularity (BMCELL)",
    "same_day_bm_blast": "one marrow blast reading (the BMBLAST readings of the day disagree)",
    "pb_blast_confirm": "a second PBBLAST sample with blasts >= 7 days apart (relapse by blood, ELN 2022)",
    "emd": "extramedullary disease status at the marrow (an earlier EMD event is not known to have resolved)",
}


def _emd_text(feats: dict[str, Any], used: dict[str, Any]) -> str:
    """``EMD yes (extramedullary_disease on day 3, events.csv:2)``: the EMD status and the events behind
    it (review 41 F5); an event older than ``emd_window_days`` is named as not showing EMD at the marrow."""
    rows, stale = used.get("EMD") or [], used.get("EMD_STALE") or []
    before, pre, how = used.get("EMD_BEFORE") or [], used.get("EMD_PRE") or [], used.get("EMD_PRE_HOW", "ignore")

    def ev(e: dict[str, Any]) -> str:
        return f"{e['event']} on day {e['day']:g}" + (f", {row_ref(e)}" if row_ref(e) else "")

    if rows or before or (pre and how == "unknown"):
        fresh = [e for e in rows if not any(e is x for x in stale)]
        out = f"EMD {_fmt(feats['emd']) if feats['emd'] is not None else 'unknown'}"
        if fresh:
            out += f" ({'; '.join(ev(e) for e in fresh)})"
        if stale:
            out += (f" ({'; '.join(ev(e) for e in stale)}: more than emd_window_days before the marrow, "
                    "not known to be current)")
        if before:  # review 45 F4
            out += (f" ({'; '.join(ev(e) for e in before)}: before the assessment window (option "
                    "emd_window=assessment_day), not known to have resolved)")
    else:
        out = "EMD no (no extramedullary_disease event in the EMD window)"
    if pre:  # review 45 F4: never silent
        note = f"{'; '.join(ev(e) for e in pre)}: before the infusion, " + (
            "not known to have resolved (option pre_infusion_emd=unknown)" if how == "unknown" else
            "not read at post-infusion marrows (option pre_infusion_emd=ignore; the study format has no "
            "record that EMD resolved)")
        out = out[:-1] + f"; {note})" if out.startswith("EMD no (") else out + f" ({note})"
    return out


def _describe(feats: dict[str, Any], used: dict[str, Any]) -> str:
    def at(p: str) -> str:
        r = used.get(p)
        return "" if r is None else f" (day {r['day']:g})"

    pb = used.get("PBBLAST")
    pb = ("PBBLAST missing, assumed 0 (option missing_pb_blasts=assume_absent)" if feats.get("pb_blast_assumed")
          else f"PBBLAST {_shown(pb)}{'%' if pb is not None else ''}{at('PBBLAST')}")
    parts = [f"BMBLAST {_shown(used['BMBLAST'])}%", pb,
             f"ANC {_shown(used.get('NEUT'))}{at('NEUT')}", f"PLT {_shown(used.get('PLAT'))}{at('PLAT')}",
             _emd_text(feats, used)]
    if used.get("BMCELL") is not None:
        parts.append(f"cellularity {_shown(used['BMCELL'])}%")
    pre = used.get("PRE")
    red, lo, hi = feats["blast_reduction_pct"], feats["blast_reduction_pct_lo"], feats["blast_reduction_pct_hi"]
    if pre is not None and red is not None and math.isinf(red):
        parts.append(f"no blast reduction from a pre-treatment {_shown(pre)}%")
    elif pre is not None and red is not None:
        parts.append(f"blast reduction {_fmt(red)}% from {_shown(pre)}%")
    elif pre is not None:
        span = ("between " + ("-inf" if lo is None else _fmt(lo)) + "% and " + ("?" if hi is None else _fmt(hi)) + "%")
        group = used.get("PRE_GROUP") or []
        why = ("the pre-treatment readings of that day differ" if len(group) > 1 else "a censored value is a bound")
        parts.append(f"blast reduction {span} from {'/'.join(_shown(r) for r in group) if len(group) > 1 else _shown(pre)}%"
                     f" ({why})")
    return ", ".join(parts)


_FEATURES = {"bm_blast_pct": pl.Float64, "pb_blast_pct": pl.Float64, "pb_blast_assumed": pl.Boolean,
             "emd": pl.Boolean, "anc": pl.Float64, "plt": pl.Float64, "bm_cellularity_pct": pl.Float64,
             "not_aplastic": pl.Boolean, "blast_reduction_pct": pl.Float64}
#: the interval columns of the numeric features (optional input of categorise_assessments)
_RANGE_COLUMNS = {f"{k}_{end}": (pl.Float64 if end in ("lo", "hi") else pl.Boolean)
                  for k in _NUMERIC for end in ("lo", "hi", "lo_open", "hi_open")}


def _range_frame(features: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, Range]]:
    """The features frame with each numeric feature as an interval (``<k>__lo`` ... columns; a plain
    value is a point) and the criteria bindings that read them (``cartlab.criteria.Range``)."""
    cols, bindings = [], {}
    for k, t in _FEATURES.items():
        cols.append((pl.col(k) if k in features.columns else pl.lit(None)).cast(t).alias(k))
    for k in _NUMERIC:
        point = pl.col(k) if k in features.columns else pl.lit(None, dtype=pl.Float64)
        for end in ("lo", "hi"):
            given = f"{k}_{end}" in features.columns
            c = pl.col(f"{k}_{end}") if given else point
            cols.append(c.cast(pl.Float64).alias(f"{k}__{end}"))
        for end in ("lo_open", "hi_open"):
            c = pl.col(f"{k}_{end}") if f"{k}_{end}" in features.columns else pl.lit(False)
            cols.append(c.cast(pl.Boolean).fill_null(False).alias(f"{k}__{end}"))
        bindings[k] = Range(f"{k}__lo", f"{k}__hi", f"{k}__lo_open", f"{k}__hi_open")
    return features.select(cols), bindings


def categorise_assessments(table: CriteriaTable, opts: dict[str, Any], features: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, str]]:
    """The category of each assessment (one row of ``features`` each; columns as ``_FEATURES``, a
    missing column is a missing input; a numeric feature may instead be given as an interval,
    ``<k>_lo``/``<k>_hi``/``<k>_lo_open``/``<k>_hi_open``, for a censored result) by the table's
    ``categories``: the first whose conditions all hold; when that is the catch-all (no conditions)
    while a better category is still possible for want of an input (or a bound that does not settle
    a comparison), the table's ``unresolved`` (NE). Returns the frame ``a_category``, ``a_rule``,
    ``a_possible`` (categories still possible), ``a_unmet``, ``a_missing``, and the rules' texts."""
    frame, bindings = _range_frame(features)
    categories = decision(table, "categories", opts, bindings=bindings, schema=frame.schema)
    catch_all = [r.id for r in categories.rules if not r.when]
    if not catch_all:
        raise ValueError("the criteria table has no catch-all category (a category with no conditions)")
    texts = {r.id: render(r, opts) for r in categories.rules}
    out = categories.apply(frame, "a", "rule", "category", "possible", "missing", "unmet")
    if "unresolved" in (table.model_extra or {}):
        unresolved = Rule.model_validate(table.extra("unresolved"))
        texts[unresolved.id] = render(unresolved, opts)
        ne = pl.col("a_rule").is_in(catch_all) & (pl.col("a_possible").list.len() > 0)
        out = out.with_columns(pl.when(ne).then(pl.lit(unresolved.id)).otherwise(pl.col("a_rule")).alias("a_rule"),
                               pl.when(ne).then(pl.lit(unresolved.label)).otherwise(pl.col("a_category")).alias("a_category"))
    return out.select("a_category", "a_rule", "a_possible", "a_unmet", "a_missing"), texts


def _relapse_marrow(table: CriteriaTable, opts: dict[str, Any], features: pl.DataFrame) -> pl.DataFrame:
    """Per assessment, the marrow relapse rule that holds (``r_rule``) and whether one is possible
    (``r_possible``: a bound or a missing input leaves it open). A rule on extramedullary disease
    alone is left to the EMD event (as :func:`derive_relapse`), when EMD events are relapse events."""
    frame, bindings = _range_frame(features)
    rules = decision(table, "relapse", opts, bindings=bindings, schema=frame.schema)
    marrow_ids = [r.id for r in rules.rules if not _emd_only(r)]
    out = rules.apply(frame, "r", "rule", "possible")
    return out.select(pl.when(pl.col("r_rule").is_in(marrow_ids)).then(pl.col("r_rule")).alias("r_rule"),
                      pl.col("r_possible").list.eval(pl.element().filter(pl.element().is_in(marrow_ids)))
                      .list.len().gt(0).alias("r_possible"))


def _emd_only(rule: Rule) -> bool:
    return {x.feature for c in rule.when for x in leaves(c) if isinstance(x, Leaf)} == {"emd"}


def _assess(table: CriteriaTable, opts: dict[str, Any], feats: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`categorise_assessments` of row dicts, as dicts (``could_be``, ``failed``, ``missing``),
    with the marrow relapse rule of each (``relapse_rule``, ``relapse_possible``)."""
    frame = pl.DataFrame(feats, schema={**_FEATURES, **_RANGE_COLUMNS})
    out, texts = categorise_assessments(table, opts, frame)
    rel = _relapse_marrow(table, opts, frame)
    rel_text = {r.id: (render(r, opts), r.citation) for r in table.rule_set("relapse")}
    return [{"category": r["a_category"], "rule": r["a_rule"], "text": texts[r["a_rule"]], "could_be": r["a_possible"],
             "failed": r["a_unmet"], "missing": r["a_missing"], "relapse_rule": x["r_rule"],
             "relapse_possible": x["r_possible"], "relapse_text": rel_text}
            for r, x in zip(out.iter_rows(named=True), rel.iter_rows(named=True))]


_SCHEMA = {
    "subject_id": pl.String, "disease": pl.String, "criteria": pl.String, "day": pl.Float64,
    "category": pl.String, "category_mrd": pl.String, "rule": pl.String, "reason": pl.String,
    "could_be": pl.List(pl.String), "missing_inputs": pl.List(pl.String),
    "bm_blast_pct": pl.Float64, "pb_blast_pct": pl.Float64, "anc": pl.Float64, "anc_day": pl.Float64,
    "plt": pl.Float64, "plt_day": pl.Float64, "emd": pl.Boolean, "bm_cellularity_pct": pl.Float64,
    "pre_bm_blast_pct": pl.Float64, "pre_bm_day": pl.Float64, "blast_reduction_pct": pl.Float64,
    "mrd_fcm": pl.Float64, "mrd_threshold": pl.Float64, "mrd_negative": pl.Boolean,
    "mrd_detectable": pl.Boolean, "mrd_rule": pl.String, "evidence": EVIDENCE,
}



def derive_marrow_response(study: Study, options: ResponseOptions | None = None,
                           split_dose_gap_days: float | None = None) -> pl.DataFrame:
    """Response at every post-infusion marrow assessment (BMBLAST after the first CAR-T infusion) of
    AML/ALL subjects.

    The table is chosen by ``subjects.disease`` (``criteria_for_disease``) unless
    ``options.criteria`` forces one; subjects of other diseases are skipped. A marrow counts when
    it is after the infusion moment (its clock time on day 0 when known: a marrow at 09:00 before a
    14:00 infusion is not a response). The pre-treatment marrow is the last BMBLAST before day 0
    (spec "Response"). ``category_mrd`` adds ``_MRD-`` to CR/CRh/CRi when the marrow day's MRDFCM
    (bone marrow specimen, or none given; option ``mrd_specimen``) is below the threshold (ELN 2022
    "CR without MRD"; ALL MRD-negative; a value below its LLOQ is "< LLOQ"; rule ``mrd_rule``). After a response (the option ``relapse_after``), a marrow meeting a
    marrow relapse rule (ELN 2022 Table 7: BM blasts >= 5%) is category ``relapse``.
    ``split_dose_gap_days``: a CAR-T dose more than this after the previous one is a re-infusion, named
    in the reasons of later marrows (the analysis's ``kinetics.split_dose_gap_days``; None its default, 7).
    """
    options = options or ResponseOptions()
    if options.criteria is not None and options.criteria not in RESPONSE_TABLES:
        raise ValueError(f"unknown response criteria {options.criteria!r}; choose one of {RESPONSE_TABLES}")
    table_of = {s: options.criteria or criteria_for_disease(d) for s, d in study.subjects.select("subject_id", "disease").iter_rows()}
    resolved = resolve_for_study(options, table_of)  # an option one table lacks: not used there, one warning (review 40 B1)
    data = _by_subject(study, near=max((float(o["count_window_days"]) for o in resolved.values()), default=0.0))
    infused = _infusion_moments(study)
    further = reinfusions(study, split_dose_gap_days)  # review 41 F7: a further CAR-T dose before a marrow is named
    given = marrow_infused(study, options)  # None: doses unknown (spec "Time"); option infusion_evidence
    found: dict[str, list[tuple]] = defaultdict(list)  # table -> (subject, marrow, pre, feats, used, evidence)
    for subj in study.subjects.select("subject_id", "disease").iter_rows(named=True):
        name = options.criteria or criteria_for_disease(subj["disease"])
        if name is None:
            continue
        opts = resolved[name]
        sd = data.get(subj["subject_id"])
        if sd is None:
            continue
        if given is not None and subj["subject_id"] not in given:
            continue  # no CAR-T dose: no marrow is a response to it (rule response.not_infused, best.py)
        marrows = sd.obs.get("BMBLAST", [])
        before = [m for m in marrows if m["day"] < opts["pre_treatment_before_day"]]
        pre, pre_group = pick_baseline(before, opts, _reading_key)  # option same_day_baseline
        at = max(0.0, float(infused.get(subj["subject_id"], 0.0)))
        days: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for m in marrows:
            if m["day"] > at:  # only after the first CAR-T infusion: a response to it
                days[math.floor(m["day"])].append(m)
        for group in days.values():  # one assessment per marrow day (option same_day_marrow)
            m = max(group, key=_reading_key)
            feats, used, evidence = _features(sd, m, pre, opts, pre_group)
            used["SAME_DAY"] = group
            used["REINFUSED"] = [(day, ref) for day, ref in further.get(subj["subject_id"], []) if day < m["day"]]
            evidence = list(dict.fromkeys(evidence + [x for x in map(row_ref, group) if x]))
            low = min(group, key=_reading_key)
            alt = (_features(sd, low, pre, opts, pre_group)[0] if opts["same_day_marrow"] == "not_evaluable"
                   and _reading_key(low) != _reading_key(m) else None)
            found[name].append((subj, m, pre, feats, used, evidence, alt))
    rows = []
    for name, items in found.items():
        opts, table = resolved[name], _table(name)
        after = set(opts["relapse_after"])
        assessed = [missing_count_open(table, opts, _open(table, a))  # option missing_count (review 47 F3)
                    for a in _reassess(table, _rules(name), opts, [x[3] for x in items])]
        alts = iter(_assess(_rules(name), opts, [x[6] for x in items if x[6] is not None]))
        remission: dict[str, float] = {}  # subject -> day of its first response (relapse_after)
        # the items are in day order per subject: a relapse needs a response on an earlier assessment
        for (subj, m, pre, feats, used, evidence, alt), a in zip(items, assessed):
            sid = subj["subject_id"]
            if alt is not None:
                a = _same_day_split(a, next(alts), table, used)
            if sid in remission:
                a = _as_relapse({**a, "unresolved_id": table["unresolved"]["id"]}, remission[sid], after, feats, used)
            if a["category"] in after and sid not in remission:
                remission[sid] = m["day"]
            rows.append(_assessment_row(subj, m, pre, feats, used, evidence, a,
                                        {**opts, "_mrd_rule": (table.get("mrd") or {}).get("id"),
                                         "_mrd_low_note": (table.get("mrd") or {}).get("detectable_below_threshold"),
                                         "_mrd_qualifies": tuple((table.get("mrd") or {}).get("qualifies") or ()),
                                         "_mrd_molecular_first": table.get("mrd_molecular_first"),
                                         "_reads_cellularity": _reads(table, "not_aplastic")},
                                        table["standard"]))
    order = {sid: i for i, sid in enumerate(study.subjects["subject_id"].to_list())}
    rows.sort(key=lambda r: order[r["subject_id"]])  # subjects in study order, each subject's marrows in day order
    return pl.DataFrame(rows, schema=_SCHEMA, orient="row") if rows else pl.DataFrame(schema=_SCHEMA)


def _reads(table: dict[str, Any], feature: str) -> frozenset[str]:
    """The ids of the table's category rows with a condition on ``feature`` (the rows that hold only
    when it is read: MLFS, ALL CR/CRi read ``not_aplastic``)."""
    def has(c: Any) -> bool:
        if isinstance(c, dict):
            return c.get("feature") == feature or any(has(v) for v in c.values())
        return isinstance(c, list) and any(has(x) for x in c)

    return frozenset(r["id"] for r in table["rule_sets"]["categories"] if has(r.get("when") or []))


def _reassess(table: dict[str, Any], rules: CriteriaTable, opts: dict[str, Any],
              feats: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`_assess`, and for an assessment whose "not evaluable" rule row names a feature to
    ``reassess`` (``not_evaluable_open``; all.NE.aplastic: ``not_aplastic``), the categories still
    possible with that feature unknown and the inputs they miss besides it (review 45 F1: an aplastic
    ALL marrow could be the CR or CRi its counts allow, not any category)."""
    out = _assess(rules, opts, feats)
    redo = [(i, f) for i, (a, f) in enumerate(zip(out, feats))
            if ((table.get("not_evaluable_open") or {}).get(a["rule"]) or {}).get("reassess")]
    if not redo:
        return out
    again = _assess(rules, opts, [{**f, table["not_evaluable_open"][out[i]["rule"]]["reassess"]: None} for i, f in redo])
    for (i, _), b in zip(redo, again):
        feature = table["not_evaluable_open"][out[i]["rule"]]["reassess"]
        could = [c for c in dict.fromkeys([b["category"], *b["could_be"]]) if CATEGORY_RANK.get(c, 99) < CATEGORY_RANK["NR"]]
        out[i] = {**out[i], "could_be": could, "missing": [m for m in b["missing"] if m != feature]}
    return out


def _open(table: dict[str, Any], a: dict[str, Any]) -> dict[str, Any]:
    """A "not evaluable" rule row's open categories and missing input (eln2022.NE.aplastic: could be MLFS),
    added to what the row's own missing inputs leave open (review 45 F2: an aplastic marrow without counts
    could also be CR/CRh/CRi, missing ANC and platelets); such a row still possible is no better category
    (a missing BMCELL leaves MLFS open, not "NE")."""
    found = open_categories(table, a["rule"])
    a = {**a, "could_be": [c for c in a["could_be"] if c != "NE"]}
    if found is None:
        return a
    could = set(a["could_be"]) | set(found[0])
    return {**a, "could_be": sorted(could, key=lambda c: CATEGORY_RANK.get(c, len(CATEGORY_RANK))),
            "missing": list(dict.fromkeys([*(a.get("missing") or []), *found[1]]))}


def _reading_key(r: dict[str, Any]) -> tuple[float, float]:
    """Order of BMBLAST readings: by the highest value a reading allows, then its lowest."""
    lo, hi, _, _ = _interval({**r, "param": "BMBLAST"})
    return (math.inf if hi is None else hi, lo)


def _same_day_split(a: dict[str, Any], low: dict[str, Any], table: dict[str, Any], used: dict[str, Any]) -> dict[str, Any]:
    """Option same_day_marrow=not_evaluable: the highest reading's assessment ``a``, or NE (the
    table's ``unresolved`` rule) when the lowest reading gives a better category."""
    if CATEGORY_RANK[low["category"]] >= CATEGORY_RANK[a["category"]]:
        return a
    used["SAME_DAY_SPLIT"] = True
    un = table["unresolved"]
    better = [c for c in dict.fromkeys([low["category"], *a["could_be"]]) if CATEGORY_RANK.get(c, 99) < CATEGORY_RANK["NR"]]
    return {**a, "category": un["category"], "rule": un["id"], "text": un["text"], "could_be": better, "failed": [],
            "missing": ["same_day_bm_blast"], "relapse_rule": None, "relapse_possible": a["relapse_rule"] is not None
            or a["relapse_possible"]}


def _as_relapse(a: dict[str, Any], since: float, after: set[str], feats: dict[str, Any] | None = None,
                used: dict[str, Any] | None = None) -> dict[str, Any]:
    """An assessment after a response: ``relapse`` when a marrow relapse rule holds (ELN 2022 Table 7,
    hematologic relapse after CR, CRh, CRi); when a bound or a missing input leaves it open, the
    result is NE with ``relapse`` among the categories still possible. A marrow with < 5% blasts
    but circulating blasts (NR by the categories) is not a definite NR after a remission: relapse by
    blood needs a second sample (ELN 2022: "at least 2 peripheral blood samples at least one week
    apart"), so NE "could be relapse" naming the missing confirming sample (review 38 B8)."""
    pb_only = pb_only_relapse(a, since, feats or {}, used or {}, _shown)  # review 38 B8
    if pb_only is not None:
        return pb_only
    if a["relapse_rule"] is not None:
        text, citation = a["relapse_text"][a["relapse_rule"]]
        return {**a, "category": "relapse", "rule": a["relapse_rule"], "could_be": [], "failed": [], "missing": [],
                "text": f"relapse after the response on day {since:g}: {text} ({citation})"}
    if a["relapse_possible"] and a["category"] not in after:
        could = [c for c in a["could_be"] if c in after] + ["relapse"]
        return {**a, "could_be": could, "missing": list(dict.fromkeys(a["missing"] + ["bm_blast_pct"]))}
    return a


def _context_text(used: dict[str, Any], opts: dict[str, Any]) -> str:
    """The reason's note on transfusions in the count window and on several BMBLAST of the day."""
    out = ""
    tx = used.get("TX") or []
    if tx:
        free = opts.get("platelet_transfusion_free_days")
        how = ("platelet counts within that many days of a platelet transfusion not used (option "
               f"platelet_transfusion_free_days={free:g})" if free is not None else
               "counts not excluded: option platelet_transfusion_free_days unset")
        days = ", ".join(f"{k.replace('_', ' ')} on day {a:g}" + (f"-{b:g}" if b != a else "") for k, a, b in tx)
        out += f" | {days} within the count window ({how})"
    same = used.get("SAME_DAY") or []
    if len(same) > 1:
        rows = ", ".join(f"{_shown(r)}% ({row_ref(r) or 'row not given'})" for r in same)
        pick = ("the highest used (option same_day_marrow=highest)" if opts["same_day_marrow"] == "highest"
                else "they give different categories: not evaluable (option same_day_marrow=not_evaluable)"
                if used.get("SAME_DAY_SPLIT") else "all give the same category (option same_day_marrow=not_evaluable)")
        out += f" | {len(same)} BMBLAST readings on the marrow day: {rows}: {pick}"
    return out + (used.get("NOTES") or "")


def _assessment_row(subj: dict, m: dict, pre: dict | None, feats: dict, used: dict, evidence: list[str],
                    a: dict[str, Any], opts: dict[str, Any], standard: str) -> dict[str, Any]:
    mrd_v, mrd_neg, mrd_det = _mrd(used["MRDFCM"], opts)
    reason = f"day {m['day']:g}: {_describe(feats, used)} -> {a['text']}"
    if a["failed"]:
        reason += " | not " + ", ".join(a["failed"])
    if a["could_be"]:
        reason += (f" | could be {', '.join(a['could_be'])}: missing "
                   + ", ".join(dict.fromkeys(_FEATURE_LABEL.get(x, x) for x in a["missing"])))
        if any(v is None and r is not None for v, r in ((feats["bm_blast_pct"], used["BMBLAST"]),
                                                        (feats["anc"], used["NEUT"]), (feats["plt"], used["PLAT"]),
                                                        (feats["pb_blast_pct"], used["PBBLAST"]))):
            reason += " (a censored result is only a bound)"
    if a["rule"] in opts.get("_reads_cellularity", ()) and feats.get("cellularity_assumed"):  # MLFS; ALL CR/CRi (review 45 F1)
        reason += " | cellularity not given: assumed not aplastic (option missing_cellularity=assume_adequate)"
    reason += _context_text(used, opts)
    mrd_rule = opts.get("_mrd_rule") if mrd_neg is not None else None  # the threshold rule decided it
    molecular = used.get("MOLECULAR") or []
    text, mrd_neg, by_marker = mrd_reason(used, opts, mrd_neg, mrd_rule, molecular)  # option mrd_molecular (review 41 F4)
    reason += text
    mrd_rule = by_marker or mrd_rule  # mrd_molecular=molecular_first: the marker's rule (review 47 F2)
    molecular = molecular + (used.get("MOLECULAR_D2") or [])
    if mrd_neg is None:
        mrd_rule = None
    qualifies = opts.get("_mrd_qualifies") or ("CR", "CRh", "CRi")
    cat_mrd = f"{a['category']}_MRD-" if a["category"] in qualifies and mrd_neg else a["category"]
    if mrd_neg and a["category"] not in qualifies:  # review 45 F5: the threshold reading is not "MRD negative"
        reason += f" | {mrd_below_note(a['category'], qualifies, standard)}"
    evidence = list(dict.fromkeys(evidence + [x for x in map(row_ref, molecular) if x]))
    if used.get("REINFUSED"):  # review 41 F7: a further CAR-T dose before this marrow is named
        reason += (" | after a further CAR-T infusion: " + ", ".join(
            f"day {d:g}" + (f" ({ref})" if ref else "") for d, ref in used["REINFUSED"])
            + " (the days count from the first infusion; best_response.reinfusion decides whether it counts)")
        evidence = list(dict.fromkeys(evidence + [ref for _, ref in used["REINFUSED"] if ref]))
    return {
        "subject_id": subj["subject_id"], "disease": subj["disease"], "criteria": standard,
        "day": float(m["day"]), "category": a["category"], "category_mrd": cat_mrd, "rule": a["rule"],
        "reason": reason, "could_be": a["could_be"],
        "missing_inputs": list(dict.fromkeys(_FEATURE_LABEL.get(x, x) for x in a["missing"])) if a["could_be"] else [],
        "bm_blast_pct": feats["bm_blast_pct"], "pb_blast_pct": feats["pb_blast_pct"],
        "anc": feats["anc"], "anc_day": None if used["NEUT"] is None else used["NEUT"]["day"],
        "plt": feats["plt"], "plt_day": None if used["PLAT"] is None else used["PLAT"]["day"],
        "emd": feats["emd"], "bm_cellularity_pct": feats["bm_cellularity_pct"],
        "pre_bm_blast_pct": None if pre is None else pre["value"],
        "pre_bm_day": None if pre is None else pre["day"],
        # a rise from 0% has no percentage (-inf for the rule): empty in the table, the reason says it
        "blast_reduction_pct": None if feats["blast_reduction_pct"] == -math.inf else feats["blast_reduction_pct"],
        "mrd_fcm": mrd_v, "mrd_threshold": float(opts["mrd_threshold"]), "mrd_negative": mrd_neg,
        "mrd_detectable": mrd_det, "mrd_rule": mrd_rule, "evidence": evidence,
    }


def derive_eln2022_response(study: Study, options: ResponseOptions | None = None) -> pl.DataFrame:
    """ELN 2022 AML response at each marrow assessment (Döhner 2022, Table 7), AML subjects only."""
    return _only(study, options, "eln2022_aml")


def derive_all_response(study: Study, options: ResponseOptions | None = None) -> pl.DataFrame:
    """ALL CR/CRi/NR at each marrow assessment (ELIANA definitions), ALL/LBL subjects only."""
    return _only(study, options, "all_car_t")


def _only(study: Study, options: ResponseOptions | None, name: str) -> pl.DataFrame:
    out = derive_marrow_response(study, options)
    diseases = {d.upper() for d in _table(name)["diseases"]}
    forced = options is not None and options.criteria is not None
    return out if forced else out.filter(pl.col("disease").str.to_uppercase().is_in(list(diseases)))


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
_renamed = renamed(__name__, "all_response", "eln2022_response", "marrow_response", "relapse")


def __getattr__(name: str):
    """``derive_relapse`` lives in :mod:`cartlab.response.relapse_episodes`, which imports this module:
    it is loaded on first use here (no import cycle); the 0.2 names resolve with a warning."""
    if name == "derive_relapse":
        from cartlab.response.relapse_episodes import derive_relapse

        return derive_relapse
    return _renamed(name)
