"""The MRD status of a marrow (moved out of :mod:`cartlab.response.marrow` in session 41, which
re-exports these names): which MRDFCM of the marrow day is read (:func:`_pick_mrd`), its status
against the criteria table's threshold (:func:`_mrd`), how the reason writes it
(:func:`mrd_status_text`, :func:`mrd_reason`), and the molecular MRD markers of the marrow day
(:func:`molecular_on_day`; option ``mrd_molecular``, review 41 F4).

MRD status is flow cytometry (MRDFCM) only: the study format has no NGS MRD parameter
(docs/derivation-conventions.md). ELN 2022 Table 7 allows "MRD below a defined threshold for a
genetic marker by qPCR, or by MFC"; with ``mrd_molecular`` "name" (default) a molecular result of
the marrow day above 0 is named in the reason, with "not_negative" it leaves a flow-negative marrow's
MRD status undetermined, with "molecular_first" a marker of an ELN 2021 D2 subgroup (NPM1, CBF, APL
fusions) measured that day decides the MRD status (rule ``eln2022.MRD_molecular``; review 47 F2).
"""

from __future__ import annotations

import re
from typing import Any

from cartlab.provenance import row_ref

__all__ = ["MOLECULAR_MRD_PARAMS", "molecular_first_rows", "molecular_on_day", "mrd_below_note", "mrd_reason", "mrd_shown", "mrd_status_text",
           "mrd_text"]

#: molecular params that are MRD markers when quantified in the marrow (ELN 2022 Table 7 "CR without
#: MRD": "MRD below a defined threshold for a genetic marker by qPCR, or by MFC"); cartlab.response.molecular
MOLECULAR_MRD_PARAMS = ("MOLVAF", "MOLAR", "FISHPCT", "FUSION")


def _pick_mrd(rows: list[dict[str, Any]], opts: dict[str, Any]
              ) -> tuple[dict[str, Any] | None, list[dict[str, Any]], list[dict[str, Any]]]:
    """The MRDFCM of the marrow's calendar day (spec: MRD "at the best-response marrow"): the
    bone-marrow specimen's when one is marked BM, else one without a specimen (counted as marrow);
    another specimen (PB) only with the option ``mrd_specimen`` "any" (ELIANA: MRD-negative "by flow
    cytometry in BM", research note §4.2). Of several, the status must agree: the highest result is
    then reported; when they disagree the status is undetermined (None, and all of them are
    returned). Never the file's row order. Returns (row, pool, the day's results not used)."""
    spec = [str(r.get("specimen") or "").strip().upper() for r in rows]
    bm = [r for r, s in zip(rows, spec) if s == "BM"]
    pool = bm or [r for r, s in zip(rows, spec) if s == ""]
    if not pool and opts.get("mrd_specimen", "BM") == "any":
        pool = rows
    other = [r for r in rows if not any(r is x for x in pool)]
    if not pool:
        return None, [], other
    if len(pool) == 1:
        return pool[0], pool, other
    status = {_mrd(r, opts)[1] for r in pool}
    if len(status) > 1:
        return None, pool, other
    return max(pool, key=lambda r: (r["value"] if r["value"] is not None else float(r["censor_limit"]),
                                    r["value"] is not None)), pool, other



def _mrd_lloq(mrd_row: dict[str, Any]) -> float | None:
    """The row's LLOQ when its value is below it (0 included: undetectable at that LLOQ), else None:
    such a value is known only as "< LLOQ" (spec "Cellular kinetics", BLQ: "a value below ``lloq``")."""
    v, lloq = mrd_row.get("value"), mrd_row.get("lloq")
    return float(lloq) if v is not None and lloq is not None and lloq > 0 and v < lloq else None


def _mrd(mrd_row: dict[str, Any] | None, opts: dict[str, Any]) -> tuple[float | None, bool | None, bool | None]:
    """(value, negative, detectable) of the marrow day's MRDFCM. A censored result (``<L``, no value)
    is negative when every value below ``L`` is below the threshold, else undetermined (None); it is
    never detectable. A value below its row's ``lloq`` (0 included) is the bound ``<lloq``: negative
    when the LLOQ is at or below the threshold, else undetermined (the assay cannot see the
    threshold; research note §4.1 "test/sensitivity must be reported"); detectable when above 0.
    A ``>L`` result is positive when every value above ``L`` is at or above the threshold
    (detectable), else undetermined. A quantified value below the threshold is negative (spec
    "Response": "detectable values below the threshold count as negative"). A value of 0 without an
    ``lloq`` (an assay of unknown sensitivity): negative with ``mrd_zero_without_lloq`` "negative" (the
    default; the reason says the sensitivity is not given), undetermined with "not_evaluable" (adult
    ALL MRD terminology, PMC8824253 Table 1: "MRD-negative with insufficient sensitivity")."""
    if mrd_row is None:
        return None, None, None
    v, thr, inclusive = mrd_row["value"], float(opts["mrd_threshold"]), bool(opts["mrd_threshold_inclusive"])
    lloq = _mrd_lloq(mrd_row)
    if lloq is not None:  # every value is < lloq
        return v, (True if lloq <= thr else None), v > 0
    if v is None:
        lim, op = float(mrd_row["censor_limit"]), mrd_row["censor"]
        if op in (">", ">="):
            # ">L": every value is > L; ">=L": every value is >= L
            sure = lim >= thr if (op == ">" or not inclusive) else lim > thr
            return None, (False if sure else None), True
        # "<L": every value is < L; "<=L": every value is <= L
        sure = lim <= thr if (op == "<" or inclusive) else lim < thr
        return None, (True if sure else None), False
    if v == 0 and opts.get("mrd_zero_without_lloq", "negative") == "not_evaluable":
        return v, None, False  # undetectable by an assay of unknown sensitivity (option mrd_zero_without_lloq)
    neg = v <= thr if inclusive else v < thr
    return v, neg, v > 0


def _mrd_value_text(r: dict[str, Any]) -> str:
    lloq = _mrd_lloq(r)
    if lloq is None:
        return mrd_text(r["value"], r["censor"], r["censor_limit"])
    return (f"undetectable (0) at its LLOQ {lloq:g}" if not r["value"] else
            f"{r['value']:.3g} below its LLOQ {lloq:g} (not quantifiable)")


def _mrd_specimen(r: dict[str, Any]) -> str:
    return str(r.get("specimen") or "").strip().upper() or "specimen not given"


def mrd_shown(r: dict[str, Any]) -> str:
    """An MRDFCM row as read, with its specimen: ``0.0005 below its LLOQ 0.002 (not quantifiable) (BM)``."""
    return f"{_mrd_value_text(r)} ({_mrd_specimen(r)})"


def mrd_status_text(r: dict[str, Any], opts: dict[str, Any], rule_id: str | None = None) -> str:
    """``MRDFCM <value> ...: negative|positive|not evaluable`` naming the threshold, the LLOQ (a value
    below it is only ``<LLOQ``), the MRD rule id and the specimen (the marrow's reason)."""
    v, neg, det = _mrd(r, opts)
    thr = float(opts["mrd_threshold"])
    below, above = ("<=", ">") if opts["mrd_threshold_inclusive"] else ("<", ">=")
    lloq = _mrd_lloq(r)
    tag = f" [{rule_id}]" if rule_id else ""
    spec = f" ({'specimen ' if _mrd_specimen(r) != 'specimen not given' else ''}{_mrd_specimen(r)})"
    if lloq is not None:
        why = (f"read as <{lloq:g} {below} {thr:g}: negative{tag}" if neg else
               f"read as <{lloq:g}: MRD status not evaluable, the LLOQ {lloq:g} is above the threshold {thr:g} "
               "(assay not sensitive enough)")
        return f"MRDFCM {_mrd_value_text(r)} {why}{spec}"
    if v == 0 and r.get("lloq") is None:  # review 41 F9: undetectable, assay sensitivity unknown
        how = opts.get("mrd_zero_without_lloq", "negative")
        return (f"MRDFCM 0 {below} {thr:g}: negative{tag}" if neg else "MRDFCM 0: MRD status not evaluable") + (
            f" (undetectable, assay sensitivity (lloq) not given: option mrd_zero_without_lloq={how}){spec}")
    if v is not None:
        # the table's own wording for a detectable value below the threshold (review 41 F13: an ALL
        # subject is not told about an AML document)
        low = (f" (detectable, low level); {opts.get('_mrd_low_note') or 'the flags carry the threshold reading'}"
               if neg and det else "")
        return (f"MRDFCM {v:.3g} {below if neg else above} {thr:g}: "
                f"{'negative' if neg else 'positive'}{low}{tag if neg else ''}{spec}")
    up = r["censor"] in (">", ">=")
    return (f"MRDFCM {mrd_text(None, r['censor'], r['censor_limit'])} ({'above' if up else 'below'} the assay limit): "
            + ("positive" if neg is False else f"negative{tag}" if neg else
               f"MRD status not evaluable: the limit does not settle the threshold {thr:g}") + spec)


def mrd_below_note(category: str, qualifies: tuple[str, ...] | list[str], standard: str | None = None) -> str:
    """The note on a marrow whose MRDFCM is below the threshold but whose category the standard's MRD
    qualifier does not apply to (an MLFS, a PR: review 45 F5). ``mrd_negative`` stays true (the spec's
    threshold reading); the text never calls the marrow "MRD negative"."""
    q = "/".join(qualifies)
    return (f"MRD below the threshold at this {category} marrow (mrd_negative is that threshold reading): not "
            f"'MRD negative' by {standard or 'the response criteria'}, whose '{q} without MRD' qualifies {q} only")


def mrd_text(value: float | None, censor: str | None = None, limit: float | None = None) -> str:
    """``2.5e-04`` style text of an MRD result, or ``<0.0001`` for a censored one."""
    return f"{value:.3g}" if value is not None else f"{censor or '<'}{limit:g}"



def _molecular_positive(r: dict[str, Any]) -> bool:
    """A molecular result that shows the marker: a value above 0 and not below its ``lloq``, or a
    ``>x`` / ``>=x`` bound above 0."""
    v, lloq = r.get("value"), r.get("lloq")
    if v is not None:
        return v > 0 and not (lloq is not None and lloq > 0 and v < lloq)
    return r.get("censor") in (">", ">=") and (r.get("censor_limit") or 0) > 0


def molecular_on_day(rows: list[dict[str, Any]], opts: dict[str, Any]) -> list[dict[str, Any]]:
    """The molecular results (:data:`MOLECULAR_MRD_PARAMS`) of the marrow day that show their marker,
    of the specimens the MRD status reads (BM or none; any with ``mrd_specimen`` "any")."""
    keep = ("BM", "") if opts.get("mrd_specimen", "BM") == "BM" else None
    return [r for r in rows if _molecular_positive(r)
            and (keep is None or str(r.get("specimen") or "").strip().upper() in keep)]


def _molecular_shown(r: dict[str, Any]) -> str:
    v = f"{r['value']:g}" if r.get("value") is not None else f"{r['censor']}{r['censor_limit']:g}"
    unit = "" if not r.get("unit") else r["unit"] if r["unit"] == "%" else f" {r['unit']}"
    name = " ".join(x for x in (r["param"], r.get("analyte")) if x)
    return f"{name} {v}{unit} ({row_ref(r) or 'row not given'})"


def _analyte(x: Any) -> str:
    """A marker name compared across spellings: upper case, '-', '/', '_', ' ' and '::' read alike."""
    return re.sub(r"\s*(::|[-/_\s])\s*", "::", str(x or "").strip().upper())


def molecular_first_rows(rows: list[dict[str, Any]], opts: dict[str, Any], spec: dict[str, Any] | None
                         ) -> list[dict[str, Any]]:
    """The marrow day's results of an ELN 2021 D2 marker (the table's ``mrd_molecular_first``: params
    and markers) of the specimens the MRD status reads (BM or none; any with ``mrd_specimen`` "any")."""
    if not spec:
        return []
    keep = ("BM", "") if opts.get("mrd_specimen", "BM") == "BM" else None
    markers = {_analyte(m) for m in spec.get("markers") or ()}
    return [r for r in rows if r.get("param") in (spec.get("params") or ()) and _analyte(r.get("analyte")) in markers
            and (keep is None or str(r.get("specimen") or "").strip().upper() in keep)]


def _molecular_negative(r: dict[str, Any], opts: dict[str, Any]) -> bool | None:
    """A D2 marker's MRD status (option mrd_molecular=molecular_first, review 47 F2): False = positive
    (quantified above 0 and not below its lloq, or a ``>x`` bound above 0); True = negative (below its
    lloq, a ``<x`` result, or 0 with an lloq; 0 without one as ``mrd_zero_without_lloq`` reads it);
    None = not settled."""
    if _molecular_positive(r):
        return False
    v, lloq = r.get("value"), r.get("lloq")
    if v is None:
        return True if r.get("censor") in ("<", "<=") else None
    if v == 0 and not lloq:
        return True if opts.get("mrd_zero_without_lloq", "negative") == "negative" else None
    return True


def _molecular_first(used: dict[str, Any], opts: dict[str, Any]) -> tuple[str, bool | None, str | None] | None:
    """The MRD part, status and rule when a D2 marker measured that day decides it (else None)."""
    spec = opts.get("_mrd_molecular_first")
    rows = molecular_first_rows(used.get("MOLECULAR_DAY") or [], opts, spec)
    if not rows:
        return None
    used["MOLECULAR_D2"] = rows  # their rows go to the evidence
    st = [_molecular_negative(r, opts) for r in rows]
    neg = False if False in st else True if all(x is True for x in st) else None
    word = {False: "positive", True: "negative", None: "undetermined (a result does not settle it)"}[neg]
    tag = f" [{spec['id']}]" if neg is not None else ""
    text = (" | MRD by molecular marker (option mrd_molecular=molecular_first; ELN 2021 MRD D2 subgroup, qPCR): "
            + ", ".join(_molecular_shown(r) + ("" if r.get("lloq") is None else f" LLOQ {r['lloq']:g}") for r in rows)
            + f": {word}{tag}; MRDFCM not read for the MRD status")
    return text, neg, (spec["id"] if neg is not None else None)


def mrd_reason(used: dict[str, Any], opts: dict[str, Any], neg: bool | None, rule_id: str | None,
               molecular: list[dict[str, Any]]) -> tuple[str, bool | None, str | None]:
    """The marrow reason's MRD part (starting " | "), the MRD status after the option
    ``mrd_molecular`` ("not_negative": a molecular marker shown that day leaves a flow-negative
    status undetermined; "molecular_first": an ELN 2021 D2 marker measured that day decides it) and
    the MRD rule that decided it when not the flow rule (else None)."""
    how = opts.get("mrd_molecular", "name")
    first = _molecular_first(used, opts) if how == "molecular_first" else None
    if first is not None:  # review 47 F2: the D2 marker decides; the flow reading is still shown
        d2 = used.get("MOLECULAR_D2") or []
        molecular = [r for r in molecular if not any(r is x for x in d2)]
    out = ""
    pool = used.get("MRDFCM_all") or []
    other = used.get("MRDFCM_other") or []
    if used["MRDFCM"] is None and pool:
        out += (" | MRDFCM on the marrow day disagree on the MRD status ("
                + ", ".join(mrd_shown(r) for r in pool) + "): MRD status undetermined")
    elif used["MRDFCM"] is not None:
        out += " | " + mrd_status_text(used["MRDFCM"], opts, rule_id)
    if len(pool) > 1 and used["MRDFCM"] is not None:
        out += f" (the highest of {len(pool)} MRDFCM results that day, all with the same status)"
    if other:
        out += (" | MRDFCM " + ", ".join(mrd_shown(r) for r in other) + " not used for the marrow's MRD status"
                + (": MRD status not evaluable" if not pool else "")
                + f" (option mrd_specimen={opts.get('mrd_specimen', 'BM')}: BM, or a row without a specimen)")
    if first is not None:
        out += first[0]
        neg = first[1]
    if molecular:  # review 41 F4: a molecular MRD marker the same day is named, never silent
        shown = ", ".join(_molecular_shown(r) for r in molecular)
        if how == "not_negative" and neg is True:
            neg = None
            out += (f" | molecular marker(s) detected the same day: {shown}: MRD status undetermined, could be "
                    "MRD-positive (option mrd_molecular=not_negative; ELN 2022 Table 7 reads MRD by qPCR or MFC)")
        else:
            out += (f" | molecular marker(s) detected the same day: {shown}: not read for the MRD status "
                    f"(option mrd_molecular={how}; ELN 2022 Table 7 reads MRD by qPCR or MFC)")
    if first is not None:
        return out, neg, first[2]
    if (used["MRDFCM"] is not None or pool or other or molecular) and not (molecular and how == "not_negative"):
        out += " | MRD status is flow (MRDFCM) only; molecular markers are in molecular_response.csv"
    return out, neg, None
