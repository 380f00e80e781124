"""CAR-HEMATOTOX and EASIX when doses.csv is not given (review 39 A2).

The CAR-HEMATOTOX score is "calculated before lymphodepleting chemotherapy" (de Boer et al., Blood
Adv 2025, doi:10.1182/bloodadvances.2025016689; Rejeski, Blood 2021;138:2499: "baseline"). Without
doses.csv the first lymphodepletion day is unknown, not "none given": taking the last value before
day 0 reads the post-fludarabine/cyclophosphamide nadir. With option ``absent_doses=unknown``
(default) the score is computed with the baseline on or before each candidate first lymphodepletion
day of ``lymphodepletion_window`` (days -14 to -1 by default) and reported as the range over them
(rule ``baseline.absent_doses``); EASIX, which has no range columns, is not computed at the
pre-lymphodepletion timepoint and names ``doses.csv (not given)`` in ``missing``.
"""

from __future__ import annotations

import math

import polars as pl

__all__ = ["DOSES_NOT_GIVEN", "car_hematotox_unknown_ld", "easix_unknown_ld"]

DOSES_NOT_GIVEN = "doses.csv (not given)"
_SID = "subject_id"


def _spans(days: list[int], scores: list[tuple[int, int]]) -> str:
    """'day -14 to -6: score 0; day -5 to -1: score 1' (consecutive candidate days of one score)."""
    out: list[str] = []
    start = 0
    for i in range(1, len(days) + 1):
        if i == len(days) or scores[i] != scores[start]:
            lo, hi = scores[start]
            sc = f"{lo}" if lo == hi else f"{lo}-{hi}"
            d = f"day {days[start]}" if i - 1 == start else f"days {days[start]} to {days[i - 1]}"
            out.append(f"on or before {d}: score {sc}")
            start = i
    return "; ".join(out)


def car_hematotox_unknown_ld(study, options, opts: dict) -> pl.DataFrame:
    """The CAR-HEMATOTOX frame over every candidate first lymphodepletion day (whole days of
    ``lymphodepletion_window``): ``hematotox_score_min``/``_max`` the range over them, the risk group
    when the range stays in one, item columns kept where every candidate agrees."""
    from cartlab.grading.common import load_criteria
    from cartlab.grading.hematotox import derive_car_hematotox

    w = opts["lymphodepletion_window"]
    days = list(range(math.ceil(float(w[0])), math.floor(float(w[1])) + 1))
    frames = _every_candidate(study, options, days)
    if not frames or frames[0].is_empty():
        return frames[0] if frames else derive_car_hematotox(study, options, _ld_day=float(w[1]))
    base = frames[-1]
    groups = sorted(load_criteria(options.criteria)["risk_groups"], key=lambda g: -int(g["min_score"]))
    labels = {g["id"]: g["label"] for g in groups}

    def group(score: int) -> str:
        return next(g["id"] for g in groups if score >= int(g["min_score"]))

    keep = [c for c in base.columns if c.endswith(("_value", "_value_unit", "_day", "_points", "_1e9_l", "_per_ul",
                                                  "_g_dl", "_mg_dl", "_ng_ml")) and c != "baseline_day"]
    rows = []
    per = [f.to_dicts() for f in frames]
    for i, r in enumerate(base.to_dicts()):
        cands = [p[i] for p in per]
        scores = [(c["hematotox_score_min"], c["hematotox_score_max"]) for c in cands]
        lo, hi = min(s[0] for s in scores), max(s[1] for s in scores)
        risk = group(lo) if group(lo) == group(hi) else None
        out = dict(r)
        for c in keep:  # an item column is kept only where every candidate baseline agrees
            if any(c2[c] != r[c] for c2 in cands):
                out[c] = None
        # an item missing only on the early candidates (before its first value) is not missing for the
        # subject: the unknown lymphodepletion day is (review 39 diff1 C2); the reason names the days
        every = [m for m in (cands[0]["hematotox_missing"] or []) if all(m in (c["hematotox_missing"] or []) for c in cands)]
        some = {m: max(d for d, c in zip(days, cands) if m in (c["hematotox_missing"] or []))
                for c in cands for m in (c["hematotox_missing"] or []) if m not in every}
        missing = every + ([DOSES_NOT_GIVEN] if (lo != hi or some) and DOSES_NOT_GIVEN not in every else [])
        partly = "".join(f"; {', '.join(m for m in some if some[m] == d)} "
                         f"{'has' if list(some.values()).count(d) == 1 else 'have'} no value on or before day {d}"
                         for d in dict.fromkeys(some.values()))
        out.update({
            "hematotox_score": lo if lo == hi else None, "hematotox_score_min": lo, "hematotox_score_max": hi,
            "hematotox_risk": labels[risk] if risk else None,
            "hematotox_risk_depends_on_boundary": any(c["hematotox_risk_depends_on_boundary"] for c in cands),
            "hematotox_missing": missing, "baseline_day": None, "baseline_rule": "baseline.absent_doses",
            "rule": f"{risk or 'car_hematotox.undetermined'}; baseline.absent_doses",
            "reason": (f"baseline unknown: doses.csv not given, so the first lymphodepletion day is unknown (any day "
                       f"{days[0]} to {days[-1]}; option absent_doses=unknown, rule baseline.absent_doses): "
                       + _spans(days, scores) + f" -> score {lo}" + ("" if lo == hi else f"-{hi}") + ", "
                       + (f"{labels[risk]} risk" if risk else "risk group undetermined: the candidate baselines "
                          "span more than one group")
                       + partly + f". Latest candidate ({cands[-1]['reason']})"),
            "evidence": list(dict.fromkeys(e for c in cands for e in (c["evidence"] or []))),
        })
        rows.append(out)
    return pl.DataFrame(rows, schema=base.schema, orient="row")


_COPY = "\x1f"  # joins a subject id and a candidate day in the id of the subject's copy


def _every_candidate(study, options, days: list[int]) -> list[pl.DataFrame]:
    """``derive_car_hematotox(study, options, _ld_day=d)`` for each of ``days``, in one run (session
    43; one run per day took ~0.5 s each, most of it fixed cost): every subject is copied once per
    candidate day, under the id ``subject_id + "\\x1f" + day``, each copy scored on its own day, and the
    result split back into one frame per day with the ids restored."""
    from cartlab.grading.common import load_criteria
    from cartlab.grading.hematotox import derive_car_hematotox
    from cartlab.model import Study

    ids = study.subject_ids
    if not days or not ids or any(_COPY in s for s in ids):
        return [derive_car_hematotox(study, options, _ld_day=float(d)) for d in days]
    cand = pl.DataFrame({"_cand": [str(d) for d in days]})

    def copies(df: pl.DataFrame) -> pl.DataFrame:
        return df.join(cand, how="cross").with_columns(
            pl.concat_str(pl.col(_SID), pl.lit(_COPY), pl.col("_cand")).alias(_SID)).drop("_cand")

    # only what the score reads is copied (the subjects and its items' observations): 14 copies of a
    # large study's every row would not fit in memory; doses.csv is not given (the reason we are here)
    params = [i["param"] for i in load_criteria(options.criteria)["items"]]
    every = Study(study_id=study.study_id, sources=study.sources, warnings=study.warnings, absent=study.absent,
                  doses_recorded=study.car_t_doses_recorded(), reader_options=dict(study.reader_options),
                  subjects=copies(study.subjects.filter(pl.col(_SID).is_in(ids))
                                  .vstack(_extra_subjects(study, ids))),
                  observations=copies(study.observations.filter(pl.col("param").is_in(params))))
    out = derive_car_hematotox(every, options, _ld_day={f"{s}{_COPY}{d}": float(d) for s in ids for d in days})
    parts = out.with_columns(pl.col(_SID).str.split_exact(_COPY, 1).struct.rename_fields([_SID, "_cand"])
                             .alias("_split")).drop(_SID).unnest("_split")
    return [parts.filter(pl.col("_cand") == str(d)).drop("_cand").select(out.columns) for d in days]


def _extra_subjects(study, ids: list[str]) -> pl.DataFrame:
    """Rows of ``study.subjects``'s schema for the subjects found only in its other tables (a study built
    in Python; ``Study.subject_ids``), so that every subject keeps its copies and its place."""
    listed = set(study.subjects[_SID].to_list())
    extra = [s for s in ids if s not in listed]
    return pl.DataFrame({_SID: extra}, schema={_SID: study.subjects.schema[_SID]}).with_columns(
        pl.lit(None, dtype=t).alias(c) for c, t in study.subjects.schema.items() if c != _SID
    ).select(study.subjects.columns)


def easix_unknown_ld(f: pl.DataFrame, schema: dict, opts: dict) -> pl.DataFrame:
    """EASIX at the pre-lymphodepletion timepoint with doses.csv not given: not computed (the timepoint
    is unknown and EASIX has no range columns), ``missing`` names ``doses.csv (not given)``."""
    w = opts["lymphodepletion_window"]
    why = (f"not computed: doses.csv not given, so the pre-lymphodepletion timepoint is unknown (the first "
           f"lymphodepletion dose could be on any day {float(w[0]):g} to {float(w[1]):g}; option absent_doses=unknown; "
           "--set easix.absent_doses=before_day0 takes the last values before day 0, after lymphodepletion)")
    out = f.select(_SID, "_order", "timepoint").with_columns(
        pl.lit(None, dtype=pl.Float64).alias("day"),
        pl.lit([DOSES_NOT_GIVEN], dtype=pl.List(pl.String)).alias("missing"),
        pl.lit(None, dtype=pl.String).alias("rule"), pl.lit(why).alias("reason"),
        # review 40 B1: the rule that left the timepoint unknown (its row: car_hematotox_2021.yaml)
        pl.lit("baseline.absent_doses").alias("baseline_rule"))
    for c, t in schema.items():
        if c not in out.columns:
            out = out.with_columns(pl.lit(None, dtype=t).alias(c))
    return out.sort("_order").select(list(schema)).cast(schema).with_columns(
        pl.col("evidence").fill_null(pl.lit([], dtype=schema["evidence"])))
