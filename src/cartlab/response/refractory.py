"""Refractory disease at the response landmark (review 47 F6; rule ``response.refractory``).

ELN 2022 (Döhner et al., Blood 2022;140:1345; view-large/12166960): "Refractory disease: No CR, CRh,
or CRi at the response landmark". best_response.csv ``refractory`` is derived only when
``best_response.landmark_day`` is set: true when an assessment counted up to the landmark is
evaluable (not NE) and none is CR/CRh/CRi; false when one is; empty when nothing is evaluable by
then or an assessment could be CR/CRh/CRi for want of an input (spec "Response": a missing input
never yields a definitive negative).
"""

from __future__ import annotations

from typing import Any

from cartlab.criteria import load_raw

__all__ = ["REFRACTORY_RULE", "refractory"]

REFRACTORY_RULE = "response.refractory"


def refractory(window: list[dict[str, Any]], landmark_day: float | None) -> tuple[bool | None, str | None]:
    """(refractory, the reason's note) of the assessments counted up to the landmark (``window``:
    best_response's, after end events and the landmark); (None, None) without a landmark."""
    if landmark_day is None:
        return None, None
    cats = tuple(load_raw("response_rules", "cartlab.response")["refractory"]["categories"])
    names = "/".join(cats)
    by = f"by the landmark day {landmark_day:g}"
    rem = [r for r in window if r["category"] in cats]
    if rem:
        return False, f"not refractory: {rem[0]['category']} on day {rem[0]['day']:g} {by} ({REFRACTORY_RULE})"
    open_ = [r for r in window if set(r.get("could_be") or []) & set(cats)]
    if open_:
        r = open_[0]
        return None, (f"refractory undetermined: {r['category']} on day {r['day']:g} could be "
                      f"{', '.join(c for c in r['could_be'] if c in cats)} (missing "
                      f"{', '.join(r.get('missing_inputs') or []) or 'an input'}) {by} ({REFRACTORY_RULE})")
    evaluable = [r for r in window if r["category"] not in (None, "", "NE")]
    if not evaluable:
        return None, f"refractory undetermined: no evaluable assessment {by} ({REFRACTORY_RULE})"
    shown = ", ".join(f"{r['category']} on day {r['day']:g}" for r in evaluable)
    return True, (f"refractory disease: no {names} {by} ({shown}; ELN 2022 'No CR, CRh, or CRi at the response "
                  f"landmark'; {REFRACTORY_RULE})")
