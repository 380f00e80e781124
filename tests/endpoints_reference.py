"""The row-loop ADTTE derivation and response rate as they were before issue 14 (commit 45b3ff1), kept as oracles.

tests/test_adtte_vectorised.py checks that the vectorised :func:`cartlab.response.endpoints.derive_adtte`
and :func:`~cartlab.response.endpoints.response_rate` give identical frames, warnings and errors. The
code below is the old implementation verbatim (only its imports changed); do not "fix" it here.
Exception, marked "session 29": CIR's competing event is CNSR 2 (audit /work/notes/audit_diffsurv).
Session 30 (fuzz audit, marked "session 30"): contradictory input raises InputError (a ValueError)
with the file named, as the engine now does.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from cartlab.errors import CartlabWarning, InputError
from cartlab.model import Study
from cartlab.provenance import EVIDENCE, unique_refs
from cartlab.response.endpoints import (
    ADTTE_SCHEMA,
    PARAMCDS,
    EndpointOptions,
    _by_cols,
    _check_level,
    _partitions,
    clopper_pearson,
    endpoint_definitions,
)


def _rule_text(rule_id: str, **fields: Any) -> str:
    rules = {r["id"]: r for r in endpoint_definitions()["rules"]}
    if rule_id not in rules:
        raise KeyError(f"rule {rule_id!r} is not in endpoints.yaml")
    return rules[rule_id]["text"].format(**fields)


def _ref(file: Any, row: Any) -> str | None:
    if file is None or row is None:
        return None
    return f"{file}:{int(row)}"


def _uniq(refs: Iterable[str | None]) -> list[str]:
    return unique_refs(refs)


def _ref_span(refs: list[str]) -> str:
    """One ref as it is; consecutive rows of one file as "file:first-last, n rows"; else joined by ", "."""
    if len(refs) == 1:
        return refs[0]
    split = [r.rsplit(":", 1) for r in refs]
    if all(len(p) == 2 and p[1].isdigit() for p in split) and len({p[0] for p in split}) == 1:
        nums = sorted(int(p[1]) for p in split)
        if nums == list(range(nums[0], nums[0] + len(nums))):
            return f"{split[0][0]}:{nums[0]}-{nums[-1]}, {len(nums)} rows"
    return ", ".join(refs)


def _fmt_day(d: float) -> str:
    return f"{d:g}"


def _responses_by_subject(responses: pl.DataFrame | None, ids: list[str]) -> dict[str, list[dict]]:
    """Per subject: response rows {category, day, refs}, sorted by day (rows without a day last)."""
    if responses is None:
        return {}
    need = ("subject_id", "best_response", "best_response_day")
    missing = [c for c in need if c not in responses.columns]
    if missing:
        raise ValueError(f"responses frame lacks column(s) {missing} (needs {list(need)}; optional evidence)")
    unknown = sorted(set(responses["subject_id"].drop_nulls().to_list()) - set(ids))
    if unknown:
        raise ValueError(f"responses name subject(s) not in the study: {unknown}")
    has_ev = "evidence" in responses.columns
    has_src = "src_file" in responses.columns and "src_row" in responses.columns
    out: dict[str, list[dict]] = {}
    for r in responses.iter_rows(named=True):
        if r["subject_id"] is None:
            continue
        refs = list(r["evidence"] or []) if has_ev else ([_ref(r["src_file"], r["src_row"])] if has_src else [])
        day = r["best_response_day"]
        out.setdefault(r["subject_id"], []).append(
            {"category": r["best_response"], "day": None if day is None else float(day), "refs": _uniq(refs)})
    for rows in out.values():
        rows.sort(key=lambda x: (x["day"] is None, x["day"] if x["day"] is not None else 0.0))
    return out


def _other_days(study: Study) -> dict[str, list[tuple[float, str | None, str]]]:
    """Per subject: (day, ref, table) of its latest observation, dose, intervention and event rows."""
    specs = (("observations", "day"), ("doses", "day"), ("interventions", "start_day"),
             ("interventions", "end_day"), ("events", "day"))
    parts = [
        study.table(table).select(
            "subject_id", pl.col(col).cast(pl.Float64).alias("day"),
            pl.concat_str(pl.col("src_file"), pl.lit(":"), pl.col("src_row").cast(pl.String)).alias("ref"),
            pl.lit(table).alias("table"),
        ).filter(pl.col("day").is_not_null())
        for table, col in specs
    ]
    rows = pl.concat(parts)
    latest = rows.filter(pl.col("day") == pl.col("day").max().over("subject_id")).unique(maintain_order=True)
    out: dict[str, list[tuple[float, str | None, str]]] = {}
    for sid, day, ref, table in latest.iter_rows():
        out.setdefault(sid, []).append((float(day), ref, table))
    return out


@dataclass
class _Subject:
    sid: str
    fu: tuple[float, str | None] | None  # last_followup_day, ref
    events: list[dict]  # day >= 0, sorted
    responses: list[dict]  # all response rows
    usable: list[dict]  # response rows not after the censoring day
    censor: dict | None  # first active censoring event
    other: list[tuple[float, str | None, str]]
    dose_ref: str | None = None  # session 39 B4: the first CAR-T doses.csv row (day 0)

    def first(self, kinds: Iterable[str], after: float | None = None, strict: bool = False) -> dict | None:
        """The earliest event of ``kinds`` (after ``after``), with the refs of all such rows that day."""
        kinds = set(kinds)
        hits = [e for e in self.events if e["event"] in kinds
                and (after is None or (e["day"] > after if strict else e["day"] >= after))]
        if not hits:
            return None
        day = hits[0]["day"]
        same = [e for e in hits if e["day"] == day]
        return {"day": day, "event": same[0]["event"], "refs": _uniq(e["ref"] for e in same),
                "src": same[0].get("src", "events")}

    def last_alive(self, missing_followup: str) -> dict | None:
        """Last day known alive: last_followup_day, non-death events, response assessments."""
        cands: list[tuple[float, str | None, str, str]] = []
        if self.fu is not None:
            cands.append((self.fu[0], self.fu[1], f"last_followup_day {_fmt_day(self.fu[0])}", "subjects"))
        for e in self.events:
            if e["event"] != "death":
                cands.append((e["day"], e["ref"], f"{e['event']} on day {_fmt_day(e['day'])}", "events"))
        for r in self.responses:
            if r["day"] is not None:
                for ref in r["refs"] or [None]:
                    cands.append((r["day"], ref, f"response {r['category']} on day {_fmt_day(r['day'])}", "responses"))
        if self.fu is None and missing_followup == "last_observation":
            for day, ref, table in self.other:
                cands.append((day, ref, f"last {table} row, day {_fmt_day(day)}", table))
        if not cands:
            return None
        day = max(c[0] for c in cands)
        top = [c for c in cands if c[0] == day]
        # one phrase per fact, its refs together (review 37 C4)
        parts = []
        for text in dict.fromkeys(c[2] for c in top):
            refs = list(dict.fromkeys(c[1] for c in top if c[2] == text and c[1]))
            parts.append(text + (f" ({_ref_span(refs)})" if refs else ""))
        how = "; ".join(parts)
        return {"day": day, "refs": _uniq(c[1] for c in top), "how": how, "srcdom": top[0][3],
                "no_followup": self.fu is None}


def _subjects(study: Study, responses: dict[str, list[dict]], opts: EndpointOptions,
              relapses: pl.DataFrame | None = None) -> list[_Subject]:
    ids = _study_ids(study)
    fu: dict[str, tuple[float, str | None]] = {}
    for r in study.subjects.iter_rows(named=True):
        if r["last_followup_day"] is not None:
            fu[r["subject_id"]] = (float(r["last_followup_day"]), _ref(r["src_file"], r["src_row"]))
    ev = (study.events.filter(pl.col("day").is_not_null() & (pl.col("day") >= 0) & pl.col("event").is_not_null())
          .sort(["day", "src_row"], nulls_last=True))
    events: dict[str, list[dict]] = {}
    for r in ev.iter_rows(named=True):
        events.setdefault(r["subject_id"], []).append(
            {"day": float(r["day"]), "event": r["event"], "ref": _ref(r["src_file"], r["src_row"]), "src": "events"})
    if relapses is not None:  # relapse derived from the data (e.g. cartlab.response.marrow.relapse)
        for r in relapses.filter(pl.col("relapse_day").is_not_null()).iter_rows(named=True):
            refs = list(r.get("evidence") or []) or [None]
            events.setdefault(r["subject_id"], []).extend(
                # session 39 B2: the table of the row the relapse was derived from (file stem), else "relapses"
                {"day": float(r["relapse_day"]), "event": "relapse", "ref": ref,
                 "src": ref.rsplit(".csv:", 1)[0] if ref and ".csv:" in ref else "relapses"} for ref in refs)
        for evs in events.values():
            evs.sort(key=lambda e: e["day"])
    censor_kinds = [k for k, on in (("allo_hsct", opts.censor_at_allo_hsct), ("new_therapy", opts.censor_at_new_therapy)) if on]
    other = _other_days(study) if opts.missing_followup == "last_observation" else {}
    from cartlab.kinetics.agents import is_car_t_agent

    doses: dict[str, tuple[float, int, str]] = {}
    for r in study.doses.iter_rows(named=True):
        if r["day"] is not None and is_car_t_agent(r["agent"]):
            key = (float(r["day"]), r["src_row"], _ref(r["src_file"], r["src_row"]))
            doses[r["subject_id"]] = min(doses.get(r["subject_id"], key), key)
    out = []
    for sid in ids:
        s = _Subject(sid, fu.get(sid), events.get(sid, []), responses.get(sid, []), [], None, other.get(sid, []),
                     doses[sid][2] if sid in doses else None)
        s.censor = s.first(censor_kinds) if censor_kinds else None
        cday = s.censor["day"] if s.censor else None
        if not any(p != "OS" for p in opts.censor_params):  # session 34: only when a response parameter is censored
            cday = None
        s.usable = [r for r in s.responses if cday is None or r["day"] is None or r["day"] <= cday]
        out.append(s)
    return out


def _study_ids(study: Study) -> list[str]:
    ids = list(study.subjects["subject_id"].to_list())
    seen = set(ids)
    for sid in study.events["subject_id"].unique(maintain_order=True).to_list():
        if sid is not None and sid not in seen:
            seen.add(sid)
            ids.append(sid)
    return ids


_CENSOR_DESC = {"allo_hsct": "ALLOGENEIC HSCT", "new_therapy": "NEW ANTICANCER THERAPY"}


def _event_desc(event: str) -> str:
    return {"death": "DEATH", "relapse": "RELAPSE",
            "extramedullary_disease": "RELAPSE (EXTRAMEDULLARY DISEASE)"}.get(event, f"RELAPSE ({event.upper()})")


def _assessments(rows: list[dict]) -> str:
    if not rows:
        return "no response assessment"
    return ", ".join(f"{r['category'] or 'empty'}" + (f" on day {_fmt_day(r['day'])}" if r["day"] is not None else "")
                     for r in rows)


class _Missing(Exception):
    pass


def _close(s: _Subject, origin: float, event: dict | None, what: str, opts: EndpointOptions,
           censor: bool = True, last_assessed: bool = False) -> dict:
    """Event, or censoring at the censoring event / last known alive, for a clock started at ``origin``.

    ``event``: {day, code, rule, reason, refs, desc, srcdom} or None. Session 34: ``censor`` = the
    parameter is in ``censor_params``; ``last_assessed`` = EFS censored at the last evaluable
    response assessment (ELN 2022 Table 9).
    """
    c = s.censor if censor else None
    if event is not None and (c is None or event["day"] <= c["day"]):
        # session 29: a competing event (CIR death, EVENT 2) is CNSR 2 (as the ADaM export)
        return {"ADY": event["day"], "CNSR": 2 if event["code"] == 2 else 0, "EVENT": event["code"], "EVNTDESC": event["desc"], "CNSDTDSC": None,
                "SRCDOM": event["srcdom"], "rule": event["rule"], "reason": event["reason"], "evidence": event["refs"]}
    if c is not None:
        if c["day"] < origin:  # pragma: no cover - responses after the censoring day are dropped
            raise ValueError(f"subject {s.sid}: censoring day {c['day']:g} before the clock start {origin:g}")
        rule = f"censor.{c['event']}"
        word = {"allo_hsct": "HSCT", "new_therapy": "new therapy"}[c["event"]]
        # session 41 (review 41 F4): EFS censored at HSCT / new therapy on the last response assessment on
        # or before it, as duration of response; the other parameters on the event's day
        rows = sorted((r for r in s.usable if last_assessed and r["day"] is not None and r["day"] <= c["day"]
                       and r["category"] not in (None, "") and r["category"] not in opts.not_evaluable_categories),
                      key=lambda r: r["day"])
        if rows:
            day = rows[-1]["day"]
            top = [r for r in rows if r["day"] == day]
            how = ", ".join(_uniq(f"{r['category']} on day {_fmt_day(day)}" for r in top))
            at = (f"censored on day {_fmt_day(day)}, the last response assessment on or before {word} ({how}), as "
                  "duration of response (EFS is censored on the date last assessed for response, ELN 2022 Table 9)")
            return {"ADY": day, "CNSR": 1, "EVENT": 0, "EVNTDESC": None, "CNSDTDSC": _CENSOR_DESC[c["event"]],
                    "SRCDOM": "responses", "rule": rule, "reason": _rule_text(rule, what=what, day=c["day"], at=at),
                    "evidence": _uniq([ref for r in top for ref in r["refs"]] + c["refs"])}
        at = f"censored at {word}, on its day (" + ("no response assessment on or before it" if last_assessed else
                                                    "this parameter is censored when last known alive, not at a "
                                                    "response assessment") + ")"
        return {"ADY": c["day"], "CNSR": 1, "EVENT": 0, "EVNTDESC": None, "CNSDTDSC": _CENSOR_DESC[c["event"]],
                "SRCDOM": "events", "rule": rule, "reason": _rule_text(rule, what=what, day=c["day"], at=at),
                "evidence": c["refs"]}
    alive = s.last_alive(opts.missing_followup)
    if alive is None:
        raise _Missing(s.sid)
    if alive["day"] < origin:
        raise InputError(f"subject {s.sid}: last known alive on day {alive['day']:g} (subjects.csv "  # session 30
                         f"last_followup_day), before the clock start {origin:g}: check last_followup_day")
    if last_assessed:  # session 34
        rows = sorted((r for r in s.usable if r["day"] is not None and r["category"] not in (None, "")
                       and r["category"] not in opts.not_evaluable_categories), key=lambda r: r["day"])
        if rows:
            day = rows[-1]["day"]
            top = [r for r in rows if r["day"] == day]
            how = ", ".join(_uniq(f"{r['category']} on day {_fmt_day(day)}" for r in top))
            return {"ADY": day, "CNSR": 1, "EVENT": 0, "EVNTDESC": None, "CNSDTDSC": "LAST RESPONSE ASSESSMENT",
                    "SRCDOM": "responses", "rule": "censor.last_assessment",
                    "reason": _rule_text("censor.last_assessment", what=what, day=day, how=how,
                                         alive=f"{_fmt_day(alive['day'])} ({alive['how']})"),
                    "evidence": _uniq(ref for r in top for ref in r["refs"])}
    rule = "censor.last_record" if alive["no_followup"] else "censor.last_alive"
    return {"ADY": alive["day"], "CNSR": 1, "EVENT": 0, "EVNTDESC": None,
            "CNSDTDSC": "LAST RECORDED ROW (NO LAST_FOLLOWUP_DAY)" if alive["no_followup"] else "LAST KNOWN ALIVE",
            "SRCDOM": alive["srcdom"], "rule": rule,
            "reason": _rule_text(rule, what=what, day=alive["day"], how=alive["how"]),
            "evidence": alive["refs"]}


def _death_or_relapse(s: _Subject, origin: float, rem: dict, prefix: str, opts: EndpointOptions,
                      competing: bool = False) -> dict | None:
    """The first relapse on or after the remission day, or death."""
    relapse = s.first(opts.relapse_events, after=rem["day"])
    death = s.first(["death"], after=None)
    if death is not None and death["day"] < rem["day"]:
        raise InputError(f"subject {s.sid}: death on day {death['day']:g} (events.csv) before the remission "  # session 30
                         f"on day {rem['day']:g}")
    rem_txt = f"{rem['category']} on day {_fmt_day(rem['day'])}"
    cands = []
    if relapse is not None:
        rule = f"{prefix}.relapse"
        cands.append((relapse["day"], 0, {"code": 1, "rule": rule, "desc": _event_desc(relapse["event"]),
                                          "reason": _rule_text(rule, remission=rem_txt, event=relapse["event"],
                                                               day=relapse["day"]),
                                          "refs": relapse["refs"], "day": relapse["day"],
                                          "srcdom": relapse["src"]}))
    if death is not None:
        rule = f"{prefix}.death_without_relapse" if competing else f"{prefix}.death"
        cands.append((death["day"], 1, {"code": 2 if competing else 1, "rule": rule,
                                        "desc": "DEATH WITHOUT RELAPSE" if competing else "DEATH",
                                        "reason": _rule_text(rule, remission=rem_txt, day=death["day"]),
                                        "refs": death["refs"], "day": death["day"], "srcdom": "events"}))
    if not cands:
        return None
    ev = min(cands, key=lambda c: (c[0], c[1]))[2]
    ev["refs"] = _uniq(rem["refs"] + ev["refs"])
    return ev


def _remission(rows: list[dict], opts: EndpointOptions, sid: str, landmark: float | None = None) -> dict | None:
    rem = [r for r in rows if r["category"] in opts.remission_categories]
    for r in rem:
        if r["day"] is None:
            raise InputError(f"subject {sid}: remission response {r['category']!r} without best_response_day")  # s30
    rem = [r for r in rem if landmark is None or r["day"] <= landmark]
    return min(rem, key=lambda r: r["day"]) if rem else None


def _params_rows(s: _Subject, params: tuple[str, ...], opts: EndpointOptions) -> list[dict]:
    defs = endpoint_definitions()["params"]
    out = []

    def row(paramcd: str, start: float | None, body: dict | None, anl: bool = True) -> None:
        base = {"subject_id": s.sid, "PARAMCD": paramcd, "PARAM": defs[paramcd]["param"], "ANLFL": "Y" if anl else None,
                "STARTDY": start, "AVALU": "DAYS"}
        if body is None:
            body = {}
        r = {**base, **body}
        if anl:
            r["AVAL"] = r["ADY"] - start
        out.append(r)

    for paramcd in params:
        if paramcd == "OS":
            d = s.first(["death"])
            ev = None if d is None else {"day": d["day"], "code": 1, "rule": "os.death", "desc": "DEATH",
                                         "reason": _rule_text("os.death", day=d["day"]), "refs": d["refs"],
                                         "srcdom": "events"}
            row("OS", 0.0, _close(s, 0.0, ev, "death", opts, censor="OS" in opts.censor_params))
        elif paramcd == "EFS":
            lm = opts.efs_landmark_day
            lm_txt = "the end of follow-up" if lm is None else f"day {_fmt_day(float(lm))}"
            rem = _remission(s.usable, opts, s.sid, None if lm is None else float(lm))
            if rem is not None:
                ev = _death_or_relapse(s, 0.0, rem, "efs", opts)
                body = _close(s, 0.0, ev, "relapse or death", opts, censor="EFS" in opts.censor_params,
                              last_assessed=opts.efs_censor != "last_known_alive")
                body["evidence"] = _uniq(rem["refs"] + body["evidence"])
                row("EFS", 0.0, body)
                continue
            evaluable = [r for r in s.usable if r["category"] not in (None, "")  # session 34: "" is no assessment
                         and r["category"] not in opts.not_evaluable_categories]
            death = s.first(["death"])
            # session 39 B4: a record dated day 0 takes its date from the first CAR-T dose row (else ADSL/TRTSDT)
            dose = [s.dose_ref] if s.dose_ref else []
            day0_dom = "doses" if s.dose_ref else "ADSL"
            usable_refs = [ref for r in s.usable for ref in r["refs"]]
            alive = s.last_alive(opts.missing_followup)
            # session 39 B1: evaluable, no remission, alive and last known alive before the landmark
            short = (evaluable and death is None and lm is not None and alive is not None
                     and alive["day"] < float(lm) and opts.efs_short_followup == "not_evaluable")
            if evaluable and not short:
                body = {"ADY": 0.0, "CNSR": 0, "EVENT": 1, "EVNTDESC": "TREATMENT FAILURE", "CNSDTDSC": None,
                        "SRCDOM": day0_dom, "rule": "efs.treatment_failure",
                        "reason": _rule_text("efs.treatment_failure", landmark=lm_txt,
                                             assessments=_assessments(evaluable)),
                        "evidence": _uniq(dose + [ref for r in evaluable for ref in r["refs"]])}
            elif short:
                body = {"ADY": 0.0, "CNSR": 1, "EVENT": 0, "EVNTDESC": None,
                        "CNSDTDSC": "NOT EVALUABLE FOR RESPONSE", "SRCDOM": day0_dom,
                        "rule": "efs.followup_before_landmark",
                        "reason": _rule_text("efs.followup_before_landmark", assessments=_assessments(evaluable),
                                             day=alive["day"], how=alive["how"], landmark=lm_txt),
                        "evidence": _uniq(dose + [ref for r in evaluable for ref in r["refs"]] + alive["refs"])}
            elif death is not None and (lm is None or death["day"] <= float(lm)):
                body = {"ADY": 0.0, "CNSR": 0, "EVENT": 1, "EVNTDESC": "TREATMENT FAILURE", "CNSDTDSC": None,
                        "SRCDOM": day0_dom, "rule": "efs.death_without_assessment",
                        "reason": _rule_text("efs.death_without_assessment", day=death["day"], landmark=lm_txt,
                                             assessments=_assessments(s.usable)),  # session 39 B3
                        "evidence": _uniq(dose + death["refs"] + usable_refs)}
            elif death is not None and ("EFS" not in opts.censor_params or s.censor is None
                                        or death["day"] <= s.censor["day"]):
                # session 34: not evaluable by the landmark, death after it (ELN: only patients alive are censored)
                txt = dict(day=death["day"], landmark=lm_txt, assessments=_assessments(s.usable))
                refs = _uniq(usable_refs + death["refs"])
                if opts.efs_ne_death_after_landmark == "event":
                    body = {"ADY": death["day"], "CNSR": 0, "EVENT": 1, "EVNTDESC": "DEATH", "CNSDTDSC": None,
                            "SRCDOM": "events", "rule": "efs.death_not_evaluable",
                            "reason": _rule_text("efs.death_not_evaluable", **txt), "evidence": refs}
                else:
                    body = {"ADY": 0.0, "CNSR": 1, "EVENT": 0, "EVNTDESC": None,
                            "CNSDTDSC": "NOT EVALUABLE FOR RESPONSE", "SRCDOM": day0_dom,
                            "rule": "efs.not_evaluable_died_after_landmark",
                            "reason": _rule_text("efs.not_evaluable_died_after_landmark", **txt),
                            "evidence": _uniq(dose + refs)}
            else:
                body = {"ADY": 0.0, "CNSR": 1, "EVENT": 0, "EVNTDESC": None,
                        "CNSDTDSC": "NOT EVALUABLE FOR RESPONSE", "SRCDOM": day0_dom,
                        "rule": "efs.not_evaluable",
                        "reason": _rule_text("efs.not_evaluable", landmark=lm_txt,
                                             assessments=_assessments(s.usable)),
                        "evidence": _uniq(dose + usable_refs)}
            # session 41 (review 41 F6): a relapse recorded without a CR/CRh/CRi by the landmark before it is named
            any_rl = s.first(opts.relapse_events)
            if any_rl is not None:
                body["reason"] += (f"; {any_rl['event']} on day {_fmt_day(any_rl['day'])} ({', '.join(any_rl['refs'])}) "
                                   f"not counted: no CR/CRh/CRi by {lm_txt} before it")
                body["evidence"] = _uniq(body["evidence"] + any_rl["refs"])
            row("EFS", 0.0, body)
        else:  # RFS, LFS, CIR: subjects achieving remission
            rem = _remission(s.usable, opts, s.sid)
            if rem is None:
                row(paramcd, None, {"ADY": None, "AVAL": None, "CNSR": None, "EVENT": None, "EVNTDESC": None,
                                    "CNSDTDSC": None, "SRCDOM": None, "rule": "not_in_remission",
                                    "reason": _rule_text("not_in_remission", paramcd=paramcd,
                                                         assessments=_assessments(s.usable)),
                                    "evidence": _uniq(ref for r in s.usable for ref in r["refs"])}, anl=False)
                continue
            origin = 0.0 if paramcd == "LFS" else rem["day"]
            prefix = paramcd.lower()
            ev = _death_or_relapse(s, origin, rem, prefix, opts, competing=paramcd == "CIR")
            body = _close(s, origin, ev, "relapse or death", opts, censor=paramcd in opts.censor_params)
            body["evidence"] = _uniq(rem["refs"] + body["evidence"])
            row(paramcd, origin, body)
    return out


def derive_adtte(study: Study, options: EndpointOptions | None = None,
                 responses: pl.DataFrame | None = None, relapses: pl.DataFrame | None = None) -> pl.DataFrame:
    """ADaM-style ADTTE: one row per subject and parameter (OS, EFS, RFS, LFS, CIR), ELN 2022 Table 9.

    ``responses``: subject_id, best_response, best_response_day (and optionally ``evidence``, a list of
    ``"<file>:<row>"``), one row per subject or per assessment - e.g. the best-response engine's
    output. Without it only OS is derived (EFS, RFS, LFS and CIR need the response).
    ``relapses``: subject_id, relapse_day (and ``evidence``), relapses derived from the data (marrow
    blasts, circulating blasts, EMD: :func:`cartlab.response.marrow.relapse`), counted as relapse
    events in addition to the ``relapse_events`` of events.csv.

    Definitions (module docstring and ``criteria/endpoints.yaml``): OS = death from any cause; EFS =
    treatment failure (no CR/CRh/CRi by ``efs_landmark_day``: event at day 0 when evaluable or dead
    before the landmark without assessment, censored at day 0 when alive and not evaluable), relapse
    or death; RFS = relapse or death from the first remission day; LFS = the same from day 0; CIR =
    relapse (EVENT 1) with death without relapse competing (EVENT 2), from the remission day. Censoring
    on the day last known alive (``last_followup_day`` or a later event or assessment), or at HSCT /
    new therapy when those options are on. RFS/LFS/CIR rows of subjects never in remission have
    ``ANLFL`` empty, empty ``AVAL``/``CNSR`` and say why.

    Columns: :data:`ADTTE_SCHEMA` (``CNSR`` 0 = event, 1 = censored; ``EVENT`` 0 = censored, 1 =
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
    resp = _responses_by_subject(responses, _study_ids(study))
    rows: list[dict] = []
    missing: list[str] = []
    subjects = _subjects(study, resp, opts, relapses)
    # session 39 A1: with population "infused", a subject without a CAR-T dose row (when any subject has
    # one: else the doses are unknown and day 0 is the infusion) has no record counted
    recorded = any(s.dose_ref for s in subjects)
    uninfused = [s.sid for s in subjects if opts.population == "infused" and recorded and not s.dose_ref]
    defs = endpoint_definitions()["params"]
    for s in subjects:
        if s.sid in uninfused:
            rows += [{"subject_id": s.sid, "PARAMCD": p, "PARAM": defs[p]["param"], "AVALU": "DAYS",
                      "rule": "not_infused", "reason": _rule_text("not_infused", paramcd=p), "evidence": []}
                     for p in params]
            continue
        try:
            rows += _params_rows(s, params, opts)
        except _Missing:
            missing.append(s.sid)
    if missing:
        if opts.missing_followup == "error":
            raise ValueError(
                f"subject(s) {missing}: no last_followup_day and no event or response assessment to censor at; "
                "give subjects.last_followup_day, or drop --strict (EndpointOptions(missing_followup="
                "'last_observation')) to censor at the subject's last recorded row")
        raise ValueError(f"subject(s) {missing}: no last_followup_day and no row at all to censor at; give "
                         "subjects.last_followup_day")
    if "EFS" in params and opts.efs_landmark_day is None and any(
            r["PARAMCD"] == "EFS" and r["ANLFL"] == "Y" for r in rows):  # session 34
        warnings.warn(CartlabWarning(
            "EFS was derived without a landmark (EndpointOptions.efs_landmark_day unset): treatment failure "
            "is judged by the end of follow-up, so a CR/CRh/CRi on any day avoids it and every death without "
            "a response assessment, on any day, is treatment failure at day 0 (ADTTE rules efs.*). ELN 2022 "
            "Table 9 asks for a pre-defined landmark; set the protocol's, e.g. "
            "--set endpoints.efs_landmark_day=28"), stacklevel=2)
    # session 41 (review 41 F6): subjects with a relapse recorded and never a CR/CRh/CRi
    lone = [s for s in subjects if s.sid not in uninfused and s.first(opts.relapse_events) is not None
            and _remission(s.usable, opts, s.sid) is None
            and any(r["subject_id"] == s.sid and r.get("ANLFL") == "Y" for r in rows)]
    if "EFS" in params and lone:
        labels = []
        for s in lone:
            rl = s.first(opts.relapse_events)
            labels.append(f"{s.sid} (day {rl['day']:g}, {', '.join(rl['refs'])})")
        warnings.warn(CartlabWarning(
            f"{len(lone)} subject(s) have a relapse recorded but no CR/CRh/CRi before it: the relapse is no EFS, "
            "RFS, LFS or CIR event (ELN 2022 counts relapse from CR/CRh/CRi) - are the remission marrows missing from "
            f"the data? {', '.join(labels[:20])}{f' (+{len(labels) - 20} more)' if len(labels) > 20 else ''}"),
            stacklevel=2)
    censored = sorted({r["subject_id"] for r in rows if r.get("rule") == "censor.last_record"})
    if censored:
        warnings.warn(CartlabWarning(
            f"{len(censored)} subject(s) have no last_followup_day and were censored at their last recorded row "
            f"(ADTTE rule censor.last_record): {', '.join(censored[:20])}{' ...' if len(censored) > 20 else ''}"),
            stacklevel=2)
    if uninfused:  # last, as adtte.py warns (its batched runs keep the whole study's order)
        warnings.warn(CartlabWarning(
            f"{len(uninfused)} subject(s) have no CAR-T dose in doses.csv (other subjects have one): no day 0 to "
            "count from, so their OS, EFS, RFS, LFS and CIR are not counted (ADTTE rule not_infused; option "
            "endpoints.population=infused, the reading of best_response.rate_population): "
            f"{', '.join(uninfused[:20])}{' ...' if len(uninfused) > 20 else ''}"), stacklevel=2)
    for r in rows:
        r["STUDYID"] = study.study_id
    if not rows:
        return pl.DataFrame(schema=ADTTE_SCHEMA)
    return pl.DataFrame(rows, schema=ADTTE_SCHEMA)


def response_rate(
    frame: pl.DataFrame,
    responders: Iterable[str],
    column: str = "best_response",
    level: float = 0.95,
    by: str | Sequence[str] | None = None,
) -> pl.DataFrame:
    """Response rate with its exact (Clopper-Pearson) confidence interval, overall or per group.

    ``frame`` has one row per subject (e.g. the output of the best-response engine); every row is in
    the denominator (intention to treat: ``NE`` and empty responses count as non-responders), a row is
    a responder when ``column`` is in ``responders`` (e.g. ``{"CR", "CRh", "CRi"}`` for the ELN 2022
    composite complete remission rate, or ``{"CR", "CRi", "MLFS", "PR"}`` for an ORR).

    Columns: the ``by`` columns, ``n``, ``n_responders``, ``rate``, ``ci_low``, ``ci_high``, ``level``,
    ``method`` ("Clopper-Pearson exact"), ``responders`` (the categories counted as response),
    ``category_counts`` (e.g. ``"CR=2, NR=1, (missing)=1"``), ``rule``, ``reason`` and ``evidence``
    (the responders' ``evidence`` when the frame has that column). An empty frame without ``by``
    gives one row with n = 0 and empty rate and interval.
    """
    level = _check_level(level)
    if isinstance(responders, str):
        responders = {responders}
    resp = sorted(set(responders))
    if not resp:
        raise ValueError("responders must name at least one response category")
    if column not in frame.columns:
        raise ValueError(f"column {column!r} not in the frame (columns: {frame.columns})")
    cols = _by_cols(by)
    has_ev = "evidence" in frame.columns
    rows = []
    parts = _partitions(frame, cols)
    if not cols and frame.height == 0:
        parts = [({}, frame)]
    for key, sub in parts:
        if "subject_id" in sub.columns and sub["subject_id"].is_duplicated().any():
            dup = sorted(set(sub.filter(pl.col("subject_id").is_duplicated())["subject_id"].to_list()))
            raise ValueError(f"response_rate expects one row per subject; repeated: {dup}")
        values = sub[column].to_list()
        n = len(values)
        k = sum(1 for v in values if v in resp)
        counts = Counter("(missing)" if v is None else str(v) for v in values)
        order = sorted(counts, key=lambda c: (c == "(missing)", -counts[c], c))
        ev: list[str] = []
        if has_ev:
            for v, refs in zip(values, sub["evidence"].to_list()):
                if v in resp:
                    ev += [r for r in (refs or []) if r is not None and r not in ev]
        if n:
            lo, hi = clopper_pearson(k, n, level)
            rate = k / n
            reason = (f"{k} of {n} subjects with {column} in {{{', '.join(resp)}}} -> rate {rate:.4g}, "
                      f"{level:.0%} Clopper-Pearson exact CI {lo:.4g}-{hi:.4g}")
        else:
            lo = hi = rate = None
            reason = "no subjects -> rate not estimable"
        rows.append({**key, "n": n, "n_responders": k, "rate": rate, "ci_low": lo, "ci_high": hi, "level": level,
                     "method": "Clopper-Pearson exact", "responders": resp,
                     "category_counts": ", ".join(f"{c}={counts[c]}" for c in order),
                     "rule": "response_rate.clopper_pearson", "reason": reason, "evidence": ev})
    schema = {**{c: frame.schema[c] for c in cols}, "n": pl.Int64, "n_responders": pl.Int64, "rate": pl.Float64,
              "ci_low": pl.Float64, "ci_high": pl.Float64, "level": pl.Float64, "method": pl.String,
              "responders": pl.List(pl.String), "category_counts": pl.String, "rule": pl.String,
              "reason": pl.String, "evidence": EVIDENCE}
    return pl.DataFrame(rows, schema=schema)
