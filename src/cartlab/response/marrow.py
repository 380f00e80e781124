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
from typing import Any, Literal

import polars as pl
from pydantic import Field

from cartlab._deprecated import renamed
from cartlab.criteria import (
    CriteriaOptions,
    CriteriaTable,
    Rule,
    decision,
    load_raw,
    load_table,
    render,
)
from cartlab.criteria.model import Leaf, leaves
from cartlab.model import Study
from cartlab.provenance import EVIDENCE, row_ref

__all__ = [
    "CATEGORY_RANK",
    "categorise_assessments",
    "RESPONSE_TABLES",
    "ResponseOptions",
    "derive_all_response",
    "criteria_for_disease",
    "derive_eln2022_response",
    "derive_marrow_response",
    "derive_relapse",
]

PACKAGE = "cartlab.response"
#: the shipped response criteria tables
RESPONSE_TABLES = ("eln2022_aml", "all_car_t")
#: best-response ranking (study-format v1: CR > CRh > CRi > MLFS > PR > NR > NE)
CATEGORY_RANK = {"CR": 0, "CRh": 1, "CRi": 2, "MLFS": 3, "PR": 4, "NR": 5, "NE": 6}
class ResponseOptions(CriteriaOptions):
    """Options of the response criteria; ``None`` takes the criteria table's default (AML: ELN 2022,
    ALL: ELIANA; each documented by its comment in the table's ``defaults``, rendered below). An
    option the chosen table does not have (``use_crh`` for ALL) is refused.

    ``cri_min_recovered_counts`` 0 makes CRi "either count may be short"; ``missing_pb_blasts``
    "not_evaluable" makes a marrow that would be CR/CRh/CRi/MLFS but has no PBBLAST within the
    count window NE, naming the categories still possible, "assume_absent" reads the missing value
    as no circulating blasts (and the reason says so).
    """

    criteria_package = "cartlab.response"
    tables = RESPONSE_TABLES

    count_window_days: int | None = None
    emd_window: Literal["since_infusion", "assessment_day"] | None = None
    platelet_transfusion_free_days: int | None = None
    min_cellularity_pct: int | float | None = None
    cri_min_recovered_counts: int | None = None
    use_crh: bool | None = None
    mrd_threshold: int | float | None = None
    mrd_threshold_inclusive: bool | None = None
    missing_pb_blasts: Literal["not_evaluable", "assume_absent"] | None = None
    pre_treatment_before_day: float = Field(default=0.0, description="the pre-treatment marrow is the last "
                                            "BMBLAST before this day")
    criteria: str | None = Field(default=None, description="force one table (eln2022_aml, all_car_t) for every "
                                 "subject instead of choosing it by disease")

    def resolved(self, table: str | dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        """The table's defaults overlaid with the options set here (the table is chosen per subject)."""
        return super().resolved(table)


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


@dataclass
class _SubjectData:
    obs: dict[str, list[dict[str, Any]]]
    emd: list[dict[str, Any]]
    plt_tx: list[float]
    events: list[dict[str, Any]]


def _by_subject(study: Study, near: float | None = None,
                params: tuple[str, ...] = ("BMBLAST", "BMCELL", "PBBLAST", "NEUT", "PLAT", "MRDFCM")
                ) -> dict[str, _SubjectData]:
    """Each subject's marrow-related rows (``params``), events and platelet transfusions. With
    ``near``, only the counts (NEUT, PLAT) within that many calendar days of a post-infusion marrow
    are kept (the only ones an assessment reads)."""
    # a censored MRD result ("<1e-4": value empty, censor "<", censor_limit 1e-4) is a measurement
    censored_mrd = ((pl.col("param") == "MRDFCM") & pl.col("value").is_null()
                    & pl.col("censor").is_in(["<", "<="]) & pl.col("censor_limit").is_not_null())
    obs = study.observations.filter(pl.col("param").is_in(list(params)) & pl.col("day").is_not_null()
                                    & (pl.col("value").is_not_null() | censored_mrd))
    if near is not None:
        counts = pl.col("param").is_in(["NEUT", "PLAT"])
        marrows = (obs.filter((pl.col("param") == "BMBLAST") & (pl.col("day") > 0))
                   .select("subject_id", pl.col("day").floor().alias("_md")).unique())
        used = (obs.with_row_index("_i").filter(counts).join(marrows, on="subject_id")
                .filter((pl.col("day").floor() - pl.col("_md")).abs() <= near)["_i"].unique())
        obs = obs.with_row_index("_i").filter(~counts | pl.col("_i").is_in(used.implode())).drop("_i")
    obs = obs.select("subject_id", "day", "param", "value", "censor", "censor_limit", "src_file", "src_row").sort(
        "subject_id", "day", "src_row", nulls_last=True)
    out: dict[str, _SubjectData] = defaultdict(lambda: _SubjectData(defaultdict(list), [], [], []))
    for r in obs.iter_rows(named=True):
        out[r["subject_id"]].obs[r["param"]].append(r)
    ev = study.events.filter(pl.col("day").is_not_null()).sort("subject_id", "day")
    for r in ev.iter_rows(named=True):
        out[r["subject_id"]].events.append(r)
        if r["event"] == "extramedullary_disease":
            out[r["subject_id"]].emd.append(r)
    iv = study.interventions.filter((pl.col("category") == "platelet_transfusion") & pl.col("start_day").is_not_null())
    for r in iv.iter_rows(named=True):
        out[r["subject_id"]].plt_tx.append(float(r["start_day"]))
    return out


def _features(sd: _SubjectData, marrow: dict[str, Any], pre: dict[str, Any] | None,
              opts: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Features of one assessment, the rows behind each (for the reason) and the evidence."""
    d, w = marrow["day"], float(opts["count_window_days"])
    used: dict[str, Any] = {"BMBLAST": marrow}
    day_rows = {p: [r for r in sd.obs.get(p, []) if math.floor(r["day"]) == math.floor(d)] for p in ("BMCELL", "MRDFCM")}
    cell = day_rows["BMCELL"][-1] if day_rows["BMCELL"] else None
    mrd = day_rows["MRDFCM"][-1] if day_rows["MRDFCM"] else None
    anc = _nearest(sd.obs.get("NEUT", []), d, w)
    free = opts.get("platelet_transfusion_free_days")
    plats = sd.obs.get("PLAT", [])
    if free is not None:
        plats = [r for r in plats if not any(0 <= r["day"] - t <= float(free) for t in sd.plt_tx)]
    plt = _nearest(plats, d, w)
    pb = _nearest(sd.obs.get("PBBLAST", []), d, w)
    if opts["emd_window"] == "since_infusion":  # calendar days, as the count window (spec "Days are calendar days")
        emd_rows = [e for e in sd.emd if 0 <= e["day"] and math.floor(e["day"]) <= math.floor(d) + w]
    else:
        emd_rows = [e for e in sd.emd if abs(math.floor(e["day"]) - math.floor(d)) <= w]
    used.update({"BMCELL": cell, "MRDFCM": mrd, "NEUT": anc, "PLAT": plt, "PBBLAST": pb, "PRE": pre})
    bm = marrow["value"]
    red = None
    if pre is not None and pre["value"] > 0:
        red = 100.0 * (pre["value"] - bm) / pre["value"]
    elif pre is not None:  # measured 0%: no reduction is possible (blasts above 0 are a rise): not missing
        red = 0.0 if bm <= 0 else -math.inf
    assume_pb = pb is None and opts["missing_pb_blasts"] == "assume_absent"
    feats = {
        "bm_blast_pct": bm,
        "pb_blast_pct": 0.0 if assume_pb else (None if pb is None else pb["value"]),
        "pb_blast_assumed": assume_pb,
        "emd": bool(emd_rows),
        "anc": None if anc is None else anc["value"],
        "plt": None if plt is None else plt["value"],
        "bm_cellularity_pct": None if cell is None else cell["value"],
        "not_aplastic": True if cell is None else cell["value"] >= float(opts["min_cellularity_pct"]),
        "blast_reduction_pct": red,
    }
    evidence = [x for x in (row_ref(r) for r in used.values() if r is not None) if x]
    evidence += [x for x in (row_ref(e) for e in emd_rows) if x]
    return feats, used, list(dict.fromkeys(evidence))


_FEATURE_LABEL = {
    "bm_blast_pct": "marrow blasts (BMBLAST)",
    "pb_blast_pct": "peripheral blasts (PBBLAST within the count window)",
    "anc": "ANC (NEUT within the count window)",
    "plt": "platelets (PLAT within the count window)",
    "blast_reduction_pct": "pre-treatment marrow blasts (for the % reduction)",
    "bm_cellularity_pct": "marrow cellularity (BMCELL)",
}


def _describe(feats: dict[str, Any], used: dict[str, Any]) -> str:
    def at(p: str) -> str:
        r = used.get(p)
        return "" if r is None else f" (day {r['day']:g})"

    pb = ("PBBLAST missing, assumed 0 (option missing_pb_blasts=assume_absent)" if feats.get("pb_blast_assumed")
          else f"PBBLAST {_fmt(feats['pb_blast_pct'])}{'%' if feats['pb_blast_pct'] is not None else ''}{at('PBBLAST')}")
    parts = [f"BMBLAST {_fmt(feats['bm_blast_pct'])}%", pb,
             f"ANC {_fmt(feats['anc'])}{at('NEUT')}", f"PLT {_fmt(feats['plt'])}{at('PLAT')}",
             f"EMD {_fmt(feats['emd'])}"]
    if feats["bm_cellularity_pct"] is not None:
        parts.append(f"cellularity {_fmt(feats['bm_cellularity_pct'])}%")
    if feats["blast_reduction_pct"] is not None and math.isinf(feats["blast_reduction_pct"]):
        parts.append(f"no blast reduction from a pre-treatment {_fmt(used['PRE']['value'])}%")
    elif feats["blast_reduction_pct"] is not None:
        parts.append(f"blast reduction {_fmt(feats['blast_reduction_pct'])}% from {_fmt(used['PRE']['value'])}%")
    return ", ".join(parts)


_FEATURES = {"bm_blast_pct": pl.Float64, "pb_blast_pct": pl.Float64, "pb_blast_assumed": pl.Boolean,
             "emd": pl.Boolean, "anc": pl.Float64, "plt": pl.Float64, "bm_cellularity_pct": pl.Float64,
             "not_aplastic": pl.Boolean, "blast_reduction_pct": pl.Float64}


def categorise_assessments(table: CriteriaTable, opts: dict[str, Any], features: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, str]]:
    """The category of each assessment (one row of ``features`` each; columns as ``_FEATURES``, a
    missing column is a missing input) by the table's ``categories``: the first whose conditions all
    hold; when that is the catch-all (no conditions) while a better category is still possible for
    want of an input, the table's ``unresolved`` (NE). Returns the frame ``a_category``, ``a_rule``,
    ``a_possible`` (categories still possible), ``a_unmet``, ``a_missing``, and the rules' texts."""
    categories = decision(table, "categories", opts, schema=_FEATURES)
    catch_all = [r.id for r in categories.rules if not r.when]
    if not catch_all:
        raise ValueError("the criteria table has no catch-all category (a category with no conditions)")
    texts = {r.id: render(r, opts) for r in categories.rules}
    frame = features.select([(pl.col(k) if k in features.columns else pl.lit(None)).cast(t).alias(k)
                             for k, t in _FEATURES.items()])
    out = categories.apply(frame, "a", "rule", "category", "possible", "missing", "unmet")
    if "unresolved" in (table.model_extra or {}):
        unresolved = Rule.model_validate(table.extra("unresolved"))
        texts[unresolved.id] = render(unresolved, opts)
        ne = pl.col("a_rule").is_in(catch_all) & (pl.col("a_possible").list.len() > 0)
        out = out.with_columns(pl.when(ne).then(pl.lit(unresolved.id)).otherwise(pl.col("a_rule")).alias("a_rule"),
                               pl.when(ne).then(pl.lit(unresolved.label)).otherwise(pl.col("a_category")).alias("a_category"))
    return out.select("a_category", "a_rule", "a_possible", "a_unmet", "a_missing"), texts


def _assess(table: CriteriaTable, opts: dict[str, Any], feats: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`categorise_assessments` of row dicts, as dicts (``could_be``, ``failed``, ``missing``)."""
    out, texts = categorise_assessments(table, opts, pl.DataFrame(feats, schema=_FEATURES))
    return [{"category": r["a_category"], "rule": r["a_rule"], "text": texts[r["a_rule"]], "could_be": r["a_possible"],
             "failed": r["a_unmet"], "missing": r["a_missing"]}
            for r in out.select("a_category", "a_rule", "a_possible", "a_unmet", "a_missing").iter_rows(named=True)]


_SCHEMA = {
    "subject_id": pl.String, "disease": pl.String, "criteria": pl.String, "day": pl.Float64,
    "category": pl.String, "category_mrd": pl.String, "rule": pl.String, "reason": pl.String,
    "could_be": pl.List(pl.String), "missing_inputs": pl.List(pl.String),
    "bm_blast_pct": pl.Float64, "pb_blast_pct": pl.Float64, "anc": pl.Float64, "anc_day": pl.Float64,
    "plt": pl.Float64, "plt_day": pl.Float64, "emd": pl.Boolean, "bm_cellularity_pct": pl.Float64,
    "pre_bm_blast_pct": pl.Float64, "pre_bm_day": pl.Float64, "blast_reduction_pct": pl.Float64,
    "mrd_fcm": pl.Float64, "mrd_threshold": pl.Float64, "mrd_negative": pl.Boolean,
    "mrd_detectable": pl.Boolean, "evidence": EVIDENCE,
}


def _mrd(mrd_row: dict[str, Any] | None, opts: dict[str, Any]) -> tuple[float | None, bool | None, bool | None]:
    """(value, negative, detectable) of the marrow day's MRDFCM. A censored result (``<L``, no value)
    is negative when every value below ``L`` is below the threshold, else undetermined (None); it is
    never detectable."""
    if mrd_row is None:
        return None, None, None
    v, thr, inclusive = mrd_row["value"], float(opts["mrd_threshold"]), bool(opts["mrd_threshold_inclusive"])
    if v is None:
        lim, op = float(mrd_row["censor_limit"]), mrd_row["censor"]
        # "<L": every value is < L; "<=L": every value is <= L
        sure = lim <= thr if (op == "<" or inclusive) else lim < thr
        return None, (True if sure else None), False
    neg = v <= thr if inclusive else v < thr
    return v, neg, v > 0


def mrd_text(value: float | None, censor: str | None = None, limit: float | None = None) -> str:
    """``2.5e-04`` style text of an MRD result, or ``<0.0001`` for a censored one."""
    return f"{value:.3g}" if value is not None else f"{censor or '<'}{limit:g}"


def derive_marrow_response(study: Study, options: ResponseOptions | None = None) -> pl.DataFrame:
    """Response at every post-infusion marrow assessment (BMBLAST with day > 0) of AML/ALL subjects.

    The table is chosen by ``subjects.disease`` (``criteria_for_disease``) unless
    ``options.criteria`` forces one; subjects of other diseases are skipped. The pre-treatment
    marrow is the last BMBLAST before day 0. ``category_mrd`` adds ``_MRD-`` to CR/CRh/CRi when
    MRDFCM on the marrow day is below the threshold (ELN 2022 "CR without MRD"; ALL MRD-negative).
    """
    options = options or ResponseOptions()
    if options.criteria is not None and options.criteria not in RESPONSE_TABLES:
        raise ValueError(f"unknown response criteria {options.criteria!r}; choose one of {RESPONSE_TABLES}")
    names = {options.criteria} if options.criteria else {criteria_for_disease(d) for d in study.subjects["disease"]}
    resolved = {n: options.resolved(_table(n)) for n in RESPONSE_TABLES if n in names}
    data = _by_subject(study, near=max((float(o["count_window_days"]) for o in resolved.values()), default=0.0))
    found: dict[str, list[tuple]] = defaultdict(list)  # table -> (subject, marrow, pre, feats, used, evidence)
    for subj in study.subjects.select("subject_id", "disease").iter_rows(named=True):
        name = options.criteria or criteria_for_disease(subj["disease"])
        if name is None:
            continue
        opts = resolved[name]
        sd = data.get(subj["subject_id"])
        if sd is None:
            continue
        marrows = sd.obs.get("BMBLAST", [])
        before = [m for m in marrows if m["day"] < opts["pre_treatment_before_day"]]
        pre = before[-1] if before else None
        for m in marrows:
            if m["day"] <= 0:
                continue
            found[name].append((subj, m, pre, *_features(sd, m, pre, opts)))
    rows = []
    for name, items in found.items():
        opts, standard = resolved[name], _table(name)["standard"]
        for (subj, m, pre, feats, used, evidence), a in zip(items, _assess(_rules(name), opts, [x[3] for x in items])):
            rows.append(_assessment_row(subj, m, pre, feats, used, evidence, a, opts, standard))
    order = {sid: i for i, sid in enumerate(study.subjects["subject_id"].to_list())}
    rows.sort(key=lambda r: order[r["subject_id"]])  # subjects in study order, each subject's marrows in day order
    return pl.DataFrame(rows, schema=_SCHEMA, orient="row") if rows else pl.DataFrame(schema=_SCHEMA)


def _assessment_row(subj: dict, m: dict, pre: dict | None, feats: dict, used: dict, evidence: list[str],
                    a: dict[str, Any], opts: dict[str, Any], standard: str) -> dict[str, Any]:
    mrd_v, mrd_neg, mrd_det = _mrd(used["MRDFCM"], opts)
    cat_mrd = f"{a['category']}_MRD-" if a["category"] in ("CR", "CRh", "CRi") and mrd_neg else a["category"]
    reason = f"day {m['day']:g}: {_describe(feats, used)} -> {a['text']}"
    if a["failed"]:
        reason += " | not " + ", ".join(a["failed"])
    if a["could_be"]:
        reason += (f" | could be {', '.join(a['could_be'])}: missing "
                   + ", ".join(_FEATURE_LABEL.get(x, x) for x in a["missing"]))
    if mrd_v is not None:
        below, above = ("<=", ">") if opts["mrd_threshold_inclusive"] else ("<", ">=")
        reason += (f" | MRDFCM {mrd_v:.3g} {below if mrd_neg else above} "
                   f"{opts['mrd_threshold']:g}: {'negative' if mrd_neg else 'positive'}"
                   f"{' (detectable, low level)' if mrd_neg and mrd_det else ''}")
    elif used["MRDFCM"] is not None:
        r = used["MRDFCM"]
        reason += (f" | MRDFCM {mrd_text(None, r['censor'], r['censor_limit'])} (below the assay limit): "
                   + ("negative" if mrd_neg else
                      f"MRD status not evaluable: the limit is not below the threshold {opts['mrd_threshold']:g}"))
    return {
        "subject_id": subj["subject_id"], "disease": subj["disease"], "criteria": standard,
        "day": float(m["day"]), "category": a["category"], "category_mrd": cat_mrd, "rule": a["rule"],
        "reason": reason, "could_be": a["could_be"],
        "missing_inputs": [_FEATURE_LABEL.get(x, x) for x in a["missing"]] if a["could_be"] else [],
        "bm_blast_pct": feats["bm_blast_pct"], "pb_blast_pct": feats["pb_blast_pct"],
        "anc": feats["anc"], "anc_day": None if used["NEUT"] is None else used["NEUT"]["day"],
        "plt": feats["plt"], "plt_day": None if used["PLAT"] is None else used["PLAT"]["day"],
        "emd": feats["emd"], "bm_cellularity_pct": feats["bm_cellularity_pct"],
        "pre_bm_blast_pct": None if pre is None else pre["value"],
        "pre_bm_day": None if pre is None else pre["day"],
        # a rise from 0% has no percentage (-inf for the rule): empty in the table, the reason says it
        "blast_reduction_pct": None if feats["blast_reduction_pct"] == -math.inf else feats["blast_reduction_pct"],
        "mrd_fcm": mrd_v, "mrd_threshold": float(opts["mrd_threshold"]), "mrd_negative": mrd_neg,
        "mrd_detectable": mrd_det, "evidence": evidence,
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


# ---------------------------------------------------------------------------------------------
# relapse


def _relapse_rule(a: pl.DataFrame, names: list[str | None], resolved: dict[str, dict[str, Any]]) -> pl.Expr:
    """Per assessment, the first rule of its table's ``relapse`` rule set that holds (else null)."""
    table = pl.Series(names, dtype=pl.String)
    out = pl.lit(None, dtype=pl.String)
    for name, opts in resolved.items():
        rules = decision(_rules(name), "relapse", opts, schema=a.schema)
        out = pl.when(pl.lit(table) == name).then(rules.rule()).otherwise(out)
    return out


_RELAPSE_SCHEMA = {
    "subject_id": pl.String, "episode": pl.Int64, "response_day": pl.Float64, "response_category": pl.String,
    "relapse_day": pl.Float64, "relapse_rule": pl.String, "relapse_reason": pl.String,
    "mrd_relapse_day": pl.Float64, "mrd_relapse_reason": pl.String, "evidence": EVIDENCE,
}


def _first_relapse(recs: list[dict], sd, after: float, rel: dict, rules: dict, prefix: str):
    """The first relapse after day ``after``: (day, rule id, reason, evidence) or None."""
    cands: list[tuple[float, str, str, list[str]]] = []
    emd_events = "extramedullary_disease" in rel["relapse_events"]
    for r in recs:
        if r["day"] <= after or r["_relapse_rule"] is None:
            continue
        rule = rules[r["_relapse_rule"]]
        if emd_events and {x.feature for c in rule.when for x in leaves(c) if isinstance(x, Leaf)} == {"emd"}:
            # relapse only by the EMD in the marrow's window: the EMD event itself is the relapse, on its
            # own day (below), not on a marrow day that may come before any evidence of it
            continue
        cands.append((r["day"], rule.id, f"day {r['day']:g}: {rule.text} ({rule.citation})", r["evidence"]))
        break  # the assessments are in day order: later ones cannot come first
    if sd is not None:
        pbs = [x for x in sd.obs.get("PBBLAST", []) if x["day"] > after and x["value"] > 0]
        need, gap = int(rel["pb_blast_samples"]), float(rel["pb_blast_min_days_apart"])
        for i, x in enumerate(pbs):
            earlier = [y for y in pbs[:i] if x["day"] - y["day"] >= gap]
            if len(earlier) + 1 >= need:
                refs = [z for z in (row_ref(earlier[0]), row_ref(x)) if z]
                cands.append((x["day"], f"{prefix}.pb_blasts",
                              (f"day {x['day']:g}: circulating blasts in {need} samples >= {gap:g} days apart "
                               f"(days {earlier[0]['day']:g} and {x['day']:g})"), refs))
                break
        for e in sd.events:
            if e["event"] in rel["relapse_events"] and e["day"] > after:
                what = "relapse" if e["event"] == "relapse" else e["event"].replace("_", " ")
                cands.append((e["day"], f"{prefix}.event", f"day {e['day']:g}: {what} recorded in events.csv",
                              [z for z in [row_ref(e)] if z]))
                break
    return min(cands, key=lambda c: c[0]) if cands else None


def _mrd_relapse(recs: list[dict], sd, start: float, stop: float | None, thr: float):
    """Conversion to MRD positivity: after the first MRD-negative assessment in [start, stop), the
    first later MRDFCM >= ``thr`` (day, reason, evidence), or Nones."""
    neg = next((r for r in recs if r["mrd_negative"] is True and r["day"] >= start
                and (stop is None or r["day"] < stop)), None)
    if neg is None or sd is None:
        return None, None, []
    for x in sd.obs.get("MRDFCM", []):
        if x["day"] > neg["day"] and x["value"] is not None and x["value"] >= thr:
            return (x["day"], f"MRD negative on day {neg['day']:g}, MRDFCM {x['value']:.3g} >= {thr:g} on day {x['day']:g}",
                    [z for z in [row_ref(x)] if z])
    return None, None, []


def derive_relapse(study: Study, assessments: pl.DataFrame | None = None,
            options: ResponseOptions | None = None) -> pl.DataFrame:
    """Hematologic relapse and MRD relapse after a response, one row per response episode.

    Relapse (criteria table ``relapse:``, ELN 2022 Table 7): the first later assessment with marrow
    blasts >= 5% or new EMD, the second of >= 2 PBBLAST > 0 samples >= 7 days apart after the
    response, or a recorded ``relapse`` or ``extramedullary_disease`` event - whichever comes first.
    Episode 1 starts at the first response (``after_categories``); a response after a relapse starts
    the next episode, whose relapse is looked for after it (a relapse after a second remission is
    not lost). MRD relapse: after an MRD-negative assessment of the episode, the first later MRDFCM
    at or above the threshold (conversion to MRD positivity; ELN MRD WP 2021).
    """
    options = options or ResponseOptions()
    a = assessments if assessments is not None else derive_marrow_response(study, options)
    a = a.sort("subject_id", "day")
    names = [options.criteria or criteria_for_disease(d) for d in a["disease"].to_list()]
    resolved = {n: options.resolved(_table(n)) for n in dict.fromkeys(names) if n is not None}
    a = a.with_columns(_relapse_rule(a, names, resolved).alias("_relapse_rule"))
    data = _by_subject(study, params=("PBBLAST", "MRDFCM"))  # what relapse reads besides the assessments
    rows = []
    for sid, part in a.partition_by("subject_id", as_dict=True, maintain_order=True).items():
        sid = sid[0]
        name = options.criteria or criteria_for_disease(part["disease"][0])
        table = _table(name)
        rel, rule_set = table["relapse"], _rules(name).rule_set("relapse")
        rules = {r.id: r for r in rule_set}
        prefix = rule_set[0].id.rsplit(".", 1)[0]  # e.g. eln2022.relapse: the table's relapse rule ids
        thr = float(resolved[name]["mrd_threshold"])
        recs = part.to_dicts()
        sd = data.get(sid)
        start = next((r for r in recs if r["category"] in rel["after_categories"]), None)
        episode = 0
        while start is not None:
            episode += 1
            best = _first_relapse(recs, sd, start["day"], rel, rules, prefix)
            mrd_day, mrd_reason, mrd_ev = _mrd_relapse(recs, sd, start["day"], None if best is None else best[0], thr)
            rows.append({
                "subject_id": sid, "episode": episode, "response_day": start["day"],
                "response_category": start["category"],
                "relapse_day": None if best is None else best[0], "relapse_rule": None if best is None else best[1],
                "relapse_reason": "no relapse after the response" if best is None else best[2],
                "mrd_relapse_day": mrd_day, "mrd_relapse_reason": mrd_reason,
                "evidence": list(dict.fromkeys((best[3] if best else []) + mrd_ev)),
            })
            start = None if best is None else next(
                (r for r in recs if r["day"] > best[0] and r["category"] in rel["after_categories"]), None)
    return pl.DataFrame(rows, schema=_RELAPSE_SCHEMA, orient="row") if rows else pl.DataFrame(schema=_RELAPSE_SCHEMA)


#: the 0.2 names of the engines (derive_* since 0.3) still import, with a DeprecationWarning
__getattr__ = renamed(__name__, "all_response", "eln2022_response", "marrow_response", "relapse")
